/*
 * model.c — em_model_open: map the blob, check that its config describes a model this build can run, and
 * bind every weight the config needs (runtime/tensors.h) with its dtype and shape checked. The blob is
 * untrusted: blob.c has already bounds-checked every byte range; here the config's dims are checked for
 * consistency and each tensor against the shape the config implies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda_exec.h"
#include "cuda_rt.h"
#include "model.h"
#include "ops.h"
#include "util.h"

EM_API em_model_options em_model_default_options(void) {
    em_model_options o;
    memset(&o, 0, sizeof o);
    o.backend = EM_BACKEND_AUTO;
    o.device = 0;
    o.verify_data = 0;
    o.n_threads = 0;
    return o;
}

// ---- config checks ----------------------------------------------------------------------------------

/* Dims are bounded so that every derived size (products of two or three of them) fits comfortably in
 * 64 bits and every per-row loop index in 32. */
#define EM_DIM_MAX (1u << 24)

static em_status check_dim(const char *name, uint32_t v, int may_be_zero) {
    if ((!may_be_zero && v == 0) || v > EM_DIM_MAX)
        return em_fail(EM_ERR_BLOB_CONFIG, "model config: %s = %u is out of range (1..%u)", name, v, EM_DIM_MAX);
    return EM_OK;
}

/* Attention and MLP layers (hybrid): the dims the executor and its KV plan derive sizes from. */
static em_status check_hybrid(const em_model *m) {
    const em_blob_config *c = &m->cfg;
    if (m->n_attn) {
        EM_TRY(check_dim("attn_n_head", c->attn_n_head, 0));
        EM_TRY(check_dim("attn_n_kv_head", c->attn_n_kv_head, 0));
        EM_TRY(check_dim("attn_head_dim", c->attn_head_dim, 0));
        if (c->attn_n_head % c->attn_n_kv_head)
            return em_fail(EM_ERR_BLOB_CONFIG, "model config: attn_n_head %u is not a multiple of attn_n_kv_head %u",
                           c->attn_n_head, c->attn_n_kv_head);
        if (c->attn_head_dim > EM_ATTN_MAX_HEAD_DIM)
            return em_fail(EM_ERR_UNSUPPORTED, "model config: attn_head_dim %u is over the %u this build supports",
                           c->attn_head_dim, EM_ATTN_MAX_HEAD_DIM);
        if ((uint64_t)c->attn_n_head * c->attn_head_dim > EM_DIM_MAX)
            return em_fail(EM_ERR_BLOB_CONFIG, "model config: attn_n_head %u * attn_head_dim %u is out of range",
                           c->attn_n_head, c->attn_head_dim);
        if (!(c->rope_fraction >= 0.0f && c->rope_fraction <= 1.0f))
            return em_fail(EM_ERR_BLOB_CONFIG, "model config: rope_fraction %g is out of range [0, 1]",
                           (double)c->rope_fraction);
        /* rotated dims = int(head_dim * fraction), as Megatron's RotaryEmbedding; rotate-half needs them even */
        uint32_t rope_dims = (uint32_t)(c->rope_fraction * (float)c->attn_head_dim);
        if (rope_dims % 2)
            return em_fail(EM_ERR_BLOB_CONFIG, "model config: rope_fraction %g of head_dim %u gives %u rotated dims "
                           "(must be even)", (double)c->rope_fraction, c->attn_head_dim, rope_dims);
        if (rope_dims && !(c->rope_base > 0.0f && c->rope_base < INFINITY))
            return em_fail(EM_ERR_BLOB_CONFIG, "model config: rope_base %g is out of range (> 0, finite)",
                           (double)c->rope_base);
    }
    if (m->n_mlp) {
        EM_TRY(check_dim("d_ff", c->d_ff, 0));
        if (c->mlp_act != EM_ACT_GELU && c->mlp_act != EM_ACT_RELU2 && c->mlp_act != EM_ACT_SILU)
            return em_fail(c->mlp_act == EM_ACT_NONE ? EM_ERR_BLOB_CONFIG : EM_ERR_UNSUPPORTED,
                           "model config: mlp_act %u is not one of 1 GELU, 2 relu2, 3 SiLU", c->mlp_act);
    }
    return EM_OK;
}

static em_status check_config(em_model *m) {
    const em_blob_config *c = &m->cfg;
    if (c->arch != EM_ARCH_MAMBA2 && c->arch != EM_ARCH_HYBRID)
        return em_fail(EM_ERR_UNSUPPORTED, "model config: architecture %u is not supported by this build "
                       "(supported: 1 Mamba-2, 2 hybrid)", c->arch);
    EM_TRY(check_dim("n_layer", c->n_layer, 0));
    EM_TRY(check_dim("d_model", c->d_model, 0));
    EM_TRY(check_dim("vocab_size", c->vocab_size, 0));
    if (c->layer_pattern.len != c->n_layer)
        return em_fail(EM_ERR_BLOB_CONFIG, "model config: layer pattern has %u chars for %u layers", c->layer_pattern.len,
                       c->n_layer);
    m->n_mamba2 = m->n_attn = m->n_mlp = 0;
    for (uint32_t i = 0; i < c->n_layer; i++) {
        char k = c->layer_pattern.ptr[i];
        if (k == EM_LAYER_MAMBA2) m->n_mamba2++;
        else if (k == EM_LAYER_ATTN) m->n_attn++;
        else if (k == EM_LAYER_MLP) m->n_mlp++;
        else if (k == EM_LAYER_MAMBA1)
            return em_fail(EM_ERR_UNSUPPORTED, "model config: layer %u is Mamba-1, not supported by this build", i);
        else return em_fail(EM_ERR_BLOB_CONFIG, "model config: layer %u has unknown kind '%c'", i, k);
    }
    if (c->arch == EM_ARCH_MAMBA2 && (m->n_attn || m->n_mlp))
        return em_fail(EM_ERR_BLOB_CONFIG, "model config: arch Mamba-2 but the pattern has attention/MLP layers");
    EM_TRY(check_hybrid(m)); /* attention and MLP dims, when the pattern has such layers */
    if (!(c->norm_eps > 0.0f && c->norm_eps < 1.0f))
        return em_fail(EM_ERR_BLOB_CONFIG, "model config: norm_eps %g is out of range (0, 1)", (double)c->norm_eps);
    if (c->norm_kind != EM_NORM_RMS)
        return em_fail(EM_ERR_UNSUPPORTED, "model config: norm kind %u is not supported", c->norm_kind);
    if (m->n_mamba2) {
        EM_TRY(check_dim("d_state", c->d_state, 0));
        EM_TRY(check_dim("ssm_n_head", c->ssm_n_head, 0));
        EM_TRY(check_dim("ssm_head_dim", c->ssm_head_dim, 0));
        EM_TRY(check_dim("ssm_n_group", c->ssm_n_group, 0));
        EM_TRY(check_dim("gated_norm_group", c->gated_norm_group, 0));
        if (c->d_conv < 1 || c->d_conv > 16)
            return em_fail(EM_ERR_BLOB_CONFIG, "model config: d_conv %u is out of range (1..16)", c->d_conv);
        if ((uint64_t)c->ssm_n_head * c->ssm_head_dim != c->d_inner)
            return em_fail(EM_ERR_BLOB_CONFIG, "model config: d_inner %u != ssm_n_head %u * ssm_head_dim %u", c->d_inner,
                           c->ssm_n_head, c->ssm_head_dim);
        if (c->ssm_n_head % c->ssm_n_group)
            return em_fail(EM_ERR_BLOB_CONFIG, "model config: ssm_n_head %u is not a multiple of ssm_n_group %u",
                           c->ssm_n_head, c->ssm_n_group);
        if (c->d_inner % c->gated_norm_group)
            return em_fail(EM_ERR_BLOB_CONFIG, "model config: gated_norm_group %u does not divide d_inner %u",
                           c->gated_norm_group, c->d_inner);
        uint64_t inproj = 2ull * c->d_inner + 2ull * c->ssm_n_group * c->d_state + c->ssm_n_head;
        if (inproj > EM_DIM_MAX)
            return em_fail(EM_ERR_BLOB_CONFIG, "model config: in_proj width %llu is out of range",
                           (unsigned long long)inproj);
        if (!(c->dt_limit_min >= 0.0f) || !(c->dt_limit_max > c->dt_limit_min))
            return em_fail(EM_ERR_BLOB_CONFIG, "model config: dt limits [%g, %g] are not a valid range",
                           (double)c->dt_limit_min, (double)c->dt_limit_max);
    }
    return EM_OK;
}

// ---- tensor binding -----------------------------------------------------------------------------------

/* Finds `name`, checks shape and dtype (matrix: F32, BF16, or I8 with its scales; small: F32), and fills *w.
 * The embedding is read row by row by em_ref_embed, which takes no I8: em-pack keeps it BF16 in INT8 blobs. */
static em_status bind(em_model *m, const char *name, em_wclass wclass, uint32_t nd, uint64_t d0, uint64_t d1,
                      em_wref *w) {
    int i = em_blob_find(&m->blob, name);
    if (i < 0) return em_fail(EM_ERR_BLOB_TENSOR, "blob: tensor '%s' is missing (the config needs it)", name);
    const em_blob_tensor *t = &m->blob.tensors[i];
    if (t->n_dims != nd || t->shape[0] != d0 || (nd > 1 && t->shape[1] != d1))
        return em_fail(EM_ERR_BLOB_TENSOR, "blob: tensor '%s' has shape [%llu%s%llu], expected [%llu%s%llu]", name,
                       (unsigned long long)t->shape[0], t->n_dims > 1 ? ", " : "",
                       t->n_dims > 1 ? (unsigned long long)t->shape[1] : 0ull, (unsigned long long)d0,
                       nd > 1 ? ", " : "", nd > 1 ? (unsigned long long)d1 : 0ull);
    const int is_embd = !strcmp(name, "embd");
    const int i8_ok = wclass == EM_WCLASS_MATRIX && nd == 2 && !is_embd;
    int ok = wclass == EM_WCLASS_SMALL ? t->dtype == EM_DTYPE_F32
                                       : (t->dtype == EM_DTYPE_F32 || t->dtype == EM_DTYPE_BF16 ||
                                          (t->dtype == EM_DTYPE_I8 && i8_ok));
    if (!ok)
        return em_fail(t->dtype == EM_DTYPE_I8 ? EM_ERR_UNSUPPORTED : EM_ERR_BLOB_TENSOR,
                       "blob: tensor '%s' has dtype %s, which this build cannot use here (%s)", name,
                       em_dtype_name(t->dtype), wclass == EM_WCLASS_SMALL ? "f32 expected"
                                                : is_embd ? "f32 or bf16 expected: the embedding is not quantized"
                                                          : "f32, bf16 or int8-row expected");
    /* I8 comes with EM_QUANT_INT8_ROW and a scale tensor the reader has checked (F32 [rows], unquantized) */
    const int quant_ok = t->dtype == EM_DTYPE_I8 ? t->quant == EM_QUANT_INT8_ROW : t->quant == EM_QUANT_NONE;
    if (!quant_ok || t->layout != EM_LAYOUT_ROW_MAJOR || t->shard_count != 1)
        return em_fail(EM_ERR_UNSUPPORTED, "blob: tensor '%s' (%s, quant %u) is tiled, sharded or quantized in a way "
                       "this build does not run", name, em_dtype_name(t->dtype), t->quant);
    w->p = m->blob.data + t->offset;
    w->dt = (em_dtype)t->dtype;
    w->scale = NULL;
    if (t->dtype == EM_DTYPE_I8) {
        const em_blob_tensor *sc = &m->blob.tensors[t->scale_index];
        if (sc->dtype != EM_DTYPE_F32 || sc->n_dims != 1 || sc->shape[0] != d0) /* blob.c proved it: belt and braces */
            return em_fail(EM_ERR_BLOB_TENSOR, "blob: tensor '%s': its scale tensor '%s' is not f32 [%llu]", name,
                           sc->name, (unsigned long long)d0);
        w->scale = (const float *)(const void *)(m->blob.data + sc->offset); /* 4096-aligned */
    }
    m->n_params += d0 * (nd > 1 ? d1 : 1);
    return EM_OK;
}

static em_status bind_all(em_model *m) {
    const em_blob_config *c = &m->cfg;
    char name[EM_BLOB_NAME_MAX];
#define EM_X_BIND_G(field, wclass, present, nd, d0, d1)                                                       \
    if (present) EM_TRY(bind(m, #field, wclass, nd, d0, d1, &m->g.field));
    EM_GLOBAL_TENSORS(EM_X_BIND_G)
    if (c->flags & EM_CFG_TIED_EMBEDDINGS) m->g.head = m->g.embd;
    /* per layer, by kind */
    uint32_t slots[128] = {0};
    for (uint32_t i = 0; i < c->n_layer; i++) {
        em_layer *L = &m->layers[i];
        L->kind = (em_layer_kind)c->layer_pattern.ptr[i];
        L->slot = slots[(unsigned char)L->kind & 127]++;
#define EM_X_BIND_L(sub, field, wclass, present, nd, d0, d1)                                                  \
    if (present) {                                                                                            \
        snprintf(name, sizeof name, "l%u.%s", i, #field);                                                     \
        EM_TRY(bind(m, name, wclass, nd, d0, d1, &L->w.sub.field));                                           \
    }
#define EM_X_BIND_M2(...) EM_X_BIND_L(m2, __VA_ARGS__)
#define EM_X_BIND_ATTN(...) EM_X_BIND_L(attn, __VA_ARGS__)
#define EM_X_BIND_MLP(...) EM_X_BIND_L(mlp, __VA_ARGS__)
        switch (L->kind) {
        case EM_LAYER_MAMBA2: EM_MAMBA2_TENSORS(EM_X_BIND_M2) break;
        case EM_LAYER_ATTN: EM_ATTN_TENSORS(EM_X_BIND_ATTN) break;
        case EM_LAYER_MLP: EM_MLP_TENSORS(EM_X_BIND_MLP) break;
        default: return em_fail(EM_ERR_INTERNAL, "layer %u: kind '%c' passed the config check", i, L->kind);
        }
    }
    return EM_OK;
}

// ---- public -------------------------------------------------------------------------------------------

EM_API em_status em_model_open(const char *path, const em_model_options *opts, em_model **out) {
    if (out) *out = NULL;
    if (!path || !out) return em_fail(EM_ERR_INVALID_ARG, "em_model_open: path and out must not be NULL");
    em_model_options o = opts ? *opts : em_model_default_options();
    if (o.backend < EM_BACKEND_AUTO || o.backend > EM_BACKEND_CUDA || o.n_threads < 0 || o.n_threads > 4096 ||
        o.device < 0)
        return em_fail(EM_ERR_INVALID_ARG, "em_model_open: options out of range (backend %d, n_threads %d, device %d)",
                       (int)o.backend, o.n_threads, o.device);
    em_model *m = calloc(1, sizeof *m);
    if (!m) return em_fail(EM_ERR_OUT_OF_MEMORY, "em_model_open: out of memory");
    em_blob_open_options bo = { .verify_data = o.verify_data };
    em_status s = em_blob_open_file(path, &bo, &m->blob);
    if (s != EM_OK) { free(m); return s; }
    m->cfg = m->blob.config;
    m->backend = EM_BACKEND_CPU;
    m->n_threads = o.n_threads > 0 ? o.n_threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (m->n_threads < 1) m->n_threads = 1;
    s = check_config(m);
    if (s == EM_OK) {
        m->layers = calloc(m->cfg.n_layer, sizeof *m->layers);
        s = m->layers ? bind_all(m) : em_fail(EM_ERR_OUT_OF_MEMORY, "em_model_open: out of memory");
    }
    /* backend: CUDA when asked for; AUTO takes CUDA when a device is present and the executor runs the model */
    if (s == EM_OK && o.backend != EM_BACKEND_CPU) {
        int n_dev = 0;
        int want = o.backend == EM_BACKEND_CUDA ||
                   (em_cuda_model_supported(m) && em_cuda_available(&n_dev) == EM_OK && n_dev > o.device);
        if (want) {
            s = em_cuda_model_load(m, path, o.device);
            if (s == EM_OK) m->backend = EM_BACKEND_CUDA;
        }
    }
    if (s != EM_OK) {
        em_blob_close(&m->blob);
        free(m->layers);
        free(m);
        return s;
    }
    em_ref_set_threads(m->n_threads);
    atomic_init(&m->n_sessions, 0);
    EM_LOG_I("model %s: %u layers, d_model %u, vocab %u, %llu params, %s backend", path, m->cfg.n_layer,
             m->cfg.d_model, m->cfg.vocab_size, (unsigned long long)m->n_params,
             m->backend == EM_BACKEND_CUDA ? "CUDA" : "CPU");
    em_clear_error();
    *out = m;
    return EM_OK;
}

EM_API void em_model_close(em_model *m) {
    if (!m) return;
    if (atomic_load(&m->n_sessions) != 0)
        EM_LOG_E("em_model_close: %d sessions are still alive; closing anyway (their use is now undefined)",
                 atomic_load(&m->n_sessions));
    em_cuda_model_free(m);
    em_blob_close(&m->blob);
    free(m->layers);
    free(m);
}

static void copy_str(char *dst, size_t cap, em_blob_string s) {
    size_t n = s.len < cap - 1 ? s.len : cap - 1;
    if (n) memcpy(dst, s.ptr, n);
    dst[n] = 0;
}

EM_API em_status em_model_get_info(const em_model *m, em_model_info *info) {
    if (!m || !info) return em_fail(EM_ERR_INVALID_ARG, "em_model_get_info: NULL argument");
    const em_blob_config *c = &m->cfg;
    memset(info, 0, sizeof *info);
    info->arch = (em_arch)c->arch;
    info->backend = m->backend;
    info->n_layer = c->n_layer;
    info->d_model = c->d_model;
    info->vocab_size = c->vocab_size;
    info->d_state = c->d_state;
    info->ssm_n_head = c->ssm_n_head;
    info->ssm_head_dim = c->ssm_head_dim;
    info->ssm_n_group = c->ssm_n_group;
    info->d_inner = c->d_inner;
    info->d_conv = c->d_conv;
    info->attn_n_head = c->attn_n_head;
    info->attn_n_kv_head = c->attn_n_kv_head;
    info->attn_head_dim = c->attn_head_dim;
    info->d_ff = c->d_ff;
    info->max_context = c->max_context;
    info->bos_id = c->bos_id;
    info->eos_id = c->eos_id;
    info->n_params = m->n_params;
    for (uint32_t i = 0; i < m->blob.n_tensors; i++) info->weight_bytes += m->blob.tensors[i].size;
    memcpy(info->content_id, m->blob.content_id, 16);
    copy_str(info->layer_pattern, sizeof info->layer_pattern, c->layer_pattern);
    copy_str(info->name, sizeof info->name, c->name);
    return EM_OK;
}
