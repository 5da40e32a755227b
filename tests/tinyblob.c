/* tinyblob.c — see tinyblob.h. */
#include "tinyblob.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensors.h"
#include "testutil.h"
#include "util.h"

em_tiny_spec em_tiny_default(void) {
    em_tiny_spec s = { .n_layer = 3, .d_model = 64, .vocab = 512, .d_state = 16, .n_head = 8, .head_dim = 16,
                       .n_group = 2, .d_conv = 4, .gated_norm_group = 0, .matrix_dtype = EM_DTYPE_F32, .tied = 0,
                       .seed = 1 };
    return s;
}

/* Values for one tensor, by name: the scale decides whether the model's dynamics are non-trivial. */
static void fill(em_rng *r, const char *field, float *v, uint64_t n, uint64_t fan_in) {
    if (!strcmp(field, "norm") || !strcmp(field, "norm_f") || !strcmp(field, "gnorm") || !strcmp(field, "D"))
        for (uint64_t i = 0; i < n; i++) v[i] = 1.0f + em_rng_uniform(r, 0.2f);
    else if (!strcmp(field, "A"))
        for (uint64_t i = 0; i < n; i++) v[i] = -(1.0f + 3.5f * (em_rng_uniform(r, 1.0f) + 1.0f));
    else if (!strcmp(field, "dt_bias"))
        for (uint64_t i = 0; i < n; i++) v[i] = -3.0f + em_rng_uniform(r, 2.0f);
    else if (!strcmp(field, "embd"))
        for (uint64_t i = 0; i < n; i++) v[i] = em_rng_uniform(r, 1.7f);
    else
        for (uint64_t i = 0; i < n; i++) v[i] = em_rng_uniform(r, 1.7f / sqrtf((float)fan_in));
}

em_status em_tiny_write(const char *path, const em_tiny_spec *sp) {
    char pattern[EM_BLOB_MAX_LAYERS + 1];
    if (sp->pattern) {
        snprintf(pattern, sizeof pattern, "%s", sp->pattern);
    } else {
        memset(pattern, 'M', sp->n_layer);
        pattern[sp->n_layer] = 0;
    }
    const uint32_t n_layer = (uint32_t)strlen(pattern);
    const int has_m = strchr(pattern, 'M') != NULL, all_m = strspn(pattern, "M") == n_layer;
    em_blob_config cfg;
    memset(&cfg, 0, sizeof cfg);
    const em_blob_config *c = &cfg; /* the tensors.h expressions read `c` */
    cfg.arch = all_m ? EM_ARCH_MAMBA2 : EM_ARCH_HYBRID;
    cfg.n_layer = n_layer;
    cfg.d_model = sp->d_model;
    cfg.vocab_size = sp->vocab;
    if (has_m) {
        cfg.d_state = sp->d_state;
        cfg.d_conv = sp->d_conv;
        cfg.ssm_n_head = sp->n_head;
        cfg.ssm_head_dim = sp->head_dim;
        cfg.ssm_n_group = sp->n_group;
        cfg.d_inner = sp->n_head * sp->head_dim;
        cfg.ssm_chunk = 16;
        cfg.gated_norm_group = sp->gated_norm_group ? sp->gated_norm_group : cfg.d_inner;
    }
    cfg.attn_n_head = sp->attn_n_head;
    cfg.attn_n_kv_head = sp->attn_n_kv_head;
    cfg.attn_head_dim = sp->attn_head_dim;
    cfg.rope_fraction = sp->rope_fraction;
    cfg.rope_base = sp->rope_base;
    cfg.d_ff = sp->d_ff;
    cfg.mlp_act = sp->mlp_act;
    cfg.norm_eps = 1e-5f;
    cfg.norm_kind = EM_NORM_RMS;
    cfg.flags = EM_CFG_CONV_BIAS | (sp->tied ? EM_CFG_TIED_EMBEDDINGS : 0);
    cfg.dt_limit_min = 0.0f;
    cfg.dt_limit_max = INFINITY;
    cfg.bos_id = cfg.eos_id = cfg.pad_id = cfg.unk_id = -1;
    cfg.layer_pattern.ptr = pattern;
    cfg.layer_pattern.len = n_layer;
    cfg.name.ptr = all_m ? "tiny-random" : "hybrid-random";
    cfg.name.len = (uint32_t)strlen(cfg.name.ptr);

    em_blob_writer *w = NULL;
    EM_TRY(em_blob_writer_open(path, &w));
    em_status s = em_blob_writer_set_config(w, c);
    /* Declare, then write, in the same order: the table order. */
    typedef struct { char name[EM_BLOB_NAME_MAX]; const char *kind; uint64_t d0, d1; uint32_t nd; em_dtype dt; } decl;
    decl *ds = calloc(3 + 9u * n_layer, sizeof *ds);
    uint32_t nds = 0;
#define EM_X_DECL(field, wclass, present, nd_, d0_, d1_)                                                   \
    do {                                                                                                    \
        if (!(present)) break;                                                                              \
        decl *d = &ds[nds++];                                                                               \
        snprintf(d->name, sizeof d->name, "%s%s", prefix, #field);                                          \
        d->kind = #field; d->nd = nd_; d->d0 = d0_; d->d1 = (nd_) > 1 ? (d1_) : 0;                        \
        d->dt = (wclass) == EM_WCLASS_MATRIX ? sp->matrix_dtype : EM_DTYPE_F32;                              \
    } while (0);
    {
        const char *prefix = "";
        EM_GLOBAL_TENSORS(EM_X_DECL)
    }
    for (uint32_t i = 0; i < n_layer; i++) {
        char prefix[16];
        snprintf(prefix, sizeof prefix, "l%u.", i);
        switch (pattern[i]) {
        case 'M': EM_MAMBA2_TENSORS(EM_X_DECL) break;
        case '*': EM_ATTN_TENSORS(EM_X_DECL) break;
        default: EM_MLP_TENSORS(EM_X_DECL) break;
        }
    }
    for (uint32_t i = 0; s == EM_OK && i < nds; i++) {
        em_blob_tensor t;
        memset(&t, 0, sizeof t);
        snprintf(t.name, sizeof t.name, "%s", ds[i].name);
        t.dtype = ds[i].dt;
        t.n_dims = ds[i].nd;
        t.shape[0] = ds[i].d0;
        t.shape[1] = ds[i].d1;
        t.scale_index = -1;
        t.shard_count = 1;
        s = em_blob_writer_add_tensor(w, &t, NULL);
    }
    em_rng r;
    em_rng_seed(&r, sp->seed);
    for (uint32_t i = 0; s == EM_OK && i < nds; i++) {
        uint64_t n = ds[i].d0 * (ds[i].nd > 1 ? ds[i].d1 : 1), fan_in = ds[i].nd > 1 ? ds[i].d1 : 1;
        float *v = malloc(n * sizeof *v);
        fill(&r, ds[i].kind, v, n, fan_in);
        if (ds[i].dt == EM_DTYPE_BF16) {
            uint16_t *h = malloc(n * sizeof *h);
            for (uint64_t k = 0; k < n; k++) h[k] = em_f32_to_bf16(v[k]);
            s = em_blob_writer_write(w, h, n * sizeof *h);
            free(h);
        } else {
            s = em_blob_writer_write(w, v, n * sizeof *v);
        }
        free(v);
    }
    free(ds);
    if (s != EM_OK) { em_blob_writer_abort(w); return s; }
    return em_blob_writer_finish(w);
}
