/*
 * megatron.c — see megatron.h. megatron_args.json holds Megatron-LM's argparse names (written by
 * tools/pack/megatron_to_safetensors.py from the checkpoint's pickled `args`):
 *   num_layers->n_layer, hidden_size->d_model, num_attention_heads->attn_n_head,
 *   num_query_groups (group_query_attention; else = heads)->attn_n_kv_head, kv_channels (hidden/heads)->attn_head_dim,
 *   ffn_hidden_size (4*hidden)->d_ff, squared_relu (false: GELU, true: RELU2)->mlp_act,
 *   hybrid_override_pattern, else hybrid_attention_ratio / hybrid_mlp_ratio through em_pattern_megatron,
 *   seq_length->max_context, norm_epsilon (1e-5)->norm_eps, padded_vocab_size (= embedding rows)->vocab_size,
 *   mamba_state_dim (128)->d_state, mamba_head_dim (64)->ssm_head_dim, mamba_num_groups (8)->ssm_n_group,
 *   mamba_d_conv (4)->d_conv, mamba_expand (2): d_inner = expand*hidden, heads = d_inner/head_dim,
 *   fp32_residual_connection (false)->EM_CFG_RESIDUAL_FP32, untie_embeddings_and_output_weights (true).
 * Fixed by Megatron's Mamba mixer (models.md §3): conv bias, chunk 128, no dt clamp, gated norm per group of
 * d_inner / ngroups channels; no position embedding (rope_fraction 0).
 */
#include "megatron.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pattern.h"
#include "safetensors.h"
#include "tensors.h"
#include "util.h"

#define MG_DIM_MAX (1u << 24)

const em_pack_name em_megatron_names[] = {
    {'g', "embd", "embedding.word_embeddings.weight", EM_XF_COPY},
    {'g', "norm_f", "decoder.final_norm.weight", EM_XF_COPY},
    {'g', "head", "output_layer.weight", EM_XF_COPY},
    /* ML@df61e60 (the released checkpoints) / current main (norm fused into in_proj) */
    {'M', "norm", "decoder.layers.%u.norm.weight|decoder.layers.%u.mixer.in_proj.layer_norm_weight", EM_XF_COPY},
    {'M', "in_proj", "decoder.layers.%u.mixer.in_proj.weight", EM_XF_COPY},
    {'M', "conv_w", "decoder.layers.%u.mixer.conv1d.weight", EM_XF_COPY},
    {'M', "conv_b", "decoder.layers.%u.mixer.conv1d.bias", EM_XF_COPY},
    {'M', "dt_bias", "decoder.layers.%u.mixer.dt_bias", EM_XF_COPY},
    {'M', "A", "decoder.layers.%u.mixer.A_log", EM_XF_NEG_EXP},
    {'M', "D", "decoder.layers.%u.mixer.D", EM_XF_COPY},
    {'M', "gnorm", "decoder.layers.%u.mixer.norm.weight", EM_XF_COPY},
    {'M', "out_proj", "decoder.layers.%u.mixer.out_proj.weight", EM_XF_COPY},
    {'*', "norm", "decoder.layers.%u.self_attention.linear_qkv.layer_norm_weight", EM_XF_COPY},
    {'*', "wq", "decoder.layers.%u.self_attention.linear_qkv.weight", EM_XF_QKV_Q},
    {'*', "wk", "decoder.layers.%u.self_attention.linear_qkv.weight", EM_XF_QKV_K},
    {'*', "wv", "decoder.layers.%u.self_attention.linear_qkv.weight", EM_XF_QKV_V},
    {'*', "wo", "decoder.layers.%u.self_attention.linear_proj.weight", EM_XF_COPY},
    {'-', "norm", "decoder.layers.%u.mlp.linear_fc1.layer_norm_weight", EM_XF_COPY},
    {'-', "up", "decoder.layers.%u.mlp.linear_fc1.weight", EM_XF_COPY},
    {'-', "down", "decoder.layers.%u.mlp.linear_fc2.weight", EM_XF_COPY},
};
const size_t em_megatron_n_names = sizeof em_megatron_names / sizeof em_megatron_names[0];

uint64_t em_megatron_qkv_row(em_pack_xf xf, uint64_t r, uint32_t n_head, uint32_t n_kv_head, uint32_t head_dim) {
    uint64_t q_per = n_head / n_kv_head, per_group = q_per + 2, j = r % head_dim, h = r / head_dim;
    switch (xf) {
    case EM_XF_QKV_Q: return ((h / q_per) * per_group + h % q_per) * head_dim + j;
    case EM_XF_QKV_K: return (h * per_group + q_per) * head_dim + j;
    case EM_XF_QKV_V: return (h * per_group + q_per + 1) * head_dim + j;
    default: return r;
    }
}

typedef struct mg_ctx { const cJSON *root; const char *label; } mg_ctx;

static const cJSON *mg_get(const mg_ctx *x, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(x->root, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static em_status mg_dim(const mg_ctx *x, const char *key, int required, uint32_t def, uint32_t *out) {
    const cJSON *v = mg_get(x, key);
    if (!v) {
        if (required) return em_fail(EM_ERR_FORMAT, "%s: required field \"%s\" is missing", x->label, key);
        *out = def;
        return EM_OK;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1.0;
    if (!(d >= 1.0 && d <= MG_DIM_MAX) || d != floor(d))
        return em_fail(EM_ERR_FORMAT, "%s: field \"%s\" must be an integer in [1, %u]", x->label, key, MG_DIM_MAX);
    *out = (uint32_t)d;
    return EM_OK;
}

static em_status mg_num(const mg_ctx *x, const char *key, double def, double *out) {
    const cJSON *v = mg_get(x, key);
    if (!v) { *out = def; return EM_OK; }
    if (!cJSON_IsNumber(v)) return em_fail(EM_ERR_FORMAT, "%s: field \"%s\" must be a number", x->label, key);
    *out = v->valuedouble;
    return EM_OK;
}

static em_status mg_bool(const mg_ctx *x, const char *key, int def, int *out) {
    const cJSON *v = mg_get(x, key);
    if (!v) { *out = def; return EM_OK; }
    if (!cJSON_IsBool(v)) return em_fail(EM_ERR_FORMAT, "%s: field \"%s\" must be true or false", x->label, key);
    *out = cJSON_IsTrue(v);
    return EM_OK;
}

static const char *mg_str(const mg_ctx *x, const char *key) {
    const cJSON *v = mg_get(x, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static em_status mg_parse(const mg_ctx *x, uint64_t vocab_rows, em_hf_config *h) {
    em_blob_config *c = &h->cfg;
    uint32_t tp = 1, pp = 1;
    EM_TRY(mg_dim(x, "tensor_model_parallel_size", 0, 1, &tp));
    EM_TRY(mg_dim(x, "pipeline_model_parallel_size", 0, 1, &pp));
    if (tp > 1 || pp > 1)
        return em_fail(EM_ERR_UNSUPPORTED, "%s: tensor_model_parallel_size %u, pipeline_model_parallel_size %u: "
                       "only unsharded (TP = PP = 1) Megatron checkpoints are supported; merge the shards first "
                       "(Megatron-LM tools/checkpoint/hybrid_conversion.py --target-tp-size 1)", x->label, tp, pp);
    int bias = 0, tied = 0, resid = 0, sqrelu = 0, l1p = 0;
    EM_TRY(mg_bool(x, "add_bias_linear", 0, &bias));
    if (bias) return em_fail(EM_ERR_UNSUPPORTED, "%s: add_bias_linear = true (linear biases) is not supported", x->label);
    const char *norm = mg_str(x, "normalization");
    if (norm && strcmp(norm, "RMSNorm"))
        return em_fail(EM_ERR_UNSUPPORTED, "%s: normalization \"%.32s\" is not supported (RMSNorm)", x->label, norm);
    EM_TRY(mg_bool(x, "apply_layernorm_1p", 0, &l1p));
    if (l1p) return em_fail(EM_ERR_UNSUPPORTED, "%s: apply_layernorm_1p is not supported with RMSNorm", x->label);
    const char *pos = mg_str(x, "position_embedding_type");
    if (pos && strcmp(pos, "none"))
        return em_fail(EM_ERR_UNSUPPORTED, "%s: position_embedding_type \"%.32s\" is not supported for a Mamba "
                       "stack (none)", x->label, pos);

    EM_TRY(mg_dim(x, "num_layers", 1, 0, &c->n_layer));
    if (c->n_layer > EM_BLOB_MAX_LAYERS)
        return em_fail(EM_ERR_FORMAT, "%s: num_layers %u is more than %u", x->label, c->n_layer, EM_BLOB_MAX_LAYERS);
    EM_TRY(mg_dim(x, "hidden_size", 1, 0, &c->d_model));
    if (vocab_rows) {
        if (vocab_rows > MG_DIM_MAX)
            return em_fail(EM_ERR_FORMAT, "%s: %llu embedding rows is too many", x->label, (unsigned long long)vocab_rows);
        c->vocab_size = (uint32_t)vocab_rows;
        uint32_t pv = 0;
        EM_TRY(mg_dim(x, "padded_vocab_size", 0, c->vocab_size, &pv));
        if (pv != c->vocab_size)
            EM_LOG_W("%s: padded_vocab_size %u ignored: the embedding has %u rows", x->label, pv, c->vocab_size);
    } else {
        EM_TRY(mg_dim(x, "padded_vocab_size", 1, 0, &c->vocab_size));
    }

    /* the pattern: an explicit one, else the allocation from the ratios (Megatron allocate_layers) */
    double ra = 0.0, rm = 0.0, eps = 1e-5;
    EM_TRY(mg_num(x, "hybrid_attention_ratio", 0.0, &ra));
    EM_TRY(mg_num(x, "hybrid_mlp_ratio", 0.0, &rm));
    const char *ovr = mg_str(x, "hybrid_override_pattern");
    if (!ovr) ovr = mg_str(x, "hybrid_layer_pattern");   /* current main's name */
    if (ovr && !ovr[0]) ovr = NULL;
    em_status s = em_pattern_megatron(c->n_layer, ra, rm, ovr, h->pattern, sizeof h->pattern);
    if (s != EM_OK) {
        char msg[400];
        snprintf(msg, sizeof msg, "%s", em_last_error());
        return em_fail(s == EM_ERR_INVALID_ARG ? EM_ERR_FORMAT : s, "%s: layer pattern (num_layers %u, "
                       "hybrid_attention_ratio %g, hybrid_mlp_ratio %g%s%s): %s", x->label, c->n_layer, ra, rm,
                       ovr ? ", hybrid_override_pattern " : "", ovr ? ovr : "", msg);
    }
    int has_a = strchr(h->pattern, EM_LAYER_ATTN) != NULL, has_f = strchr(h->pattern, EM_LAYER_MLP) != NULL;
    int has_m = strchr(h->pattern, EM_LAYER_MAMBA2) != NULL;
    c->arch = has_a || has_f ? EM_ARCH_HYBRID : EM_ARCH_MAMBA2;

    EM_TRY(mg_num(x, "norm_epsilon", 1e-5, &eps));
    if (!(eps > 0.0 && eps < 1.0))
        return em_fail(EM_ERR_FORMAT, "%s: norm_epsilon %g is out of range (0, 1)", x->label, eps);
    c->norm_eps = (float)eps;
    c->norm_kind = EM_NORM_RMS;
    EM_TRY(mg_bool(x, "untie_embeddings_and_output_weights", 1, &tied));
    tied = !tied;
    EM_TRY(mg_bool(x, "fp32_residual_connection", 0, &resid));
    c->flags |= (tied ? EM_CFG_TIED_EMBEDDINGS : 0u) | (resid ? EM_CFG_RESIDUAL_FP32 : 0u);
    c->bos_id = c->eos_id = c->pad_id = c->unk_id = -1;   /* the SentencePiece model carries them */
    uint32_t seq = 0;
    EM_TRY(mg_dim(x, "seq_length", 0, 0, &seq));
    c->max_context = seq;

    if (has_m) {
        uint32_t expand = 2;
        EM_TRY(mg_dim(x, "mamba_state_dim", 0, 128, &c->d_state));
        EM_TRY(mg_dim(x, "mamba_head_dim", 0, 64, &c->ssm_head_dim));
        EM_TRY(mg_dim(x, "mamba_num_groups", 0, 8, &c->ssm_n_group));
        EM_TRY(mg_dim(x, "mamba_d_conv", 0, 4, &c->d_conv));
        EM_TRY(mg_dim(x, "mamba_expand", 0, 2, &expand));
        uint64_t d_inner = (uint64_t)expand * c->d_model;
        if (d_inner > MG_DIM_MAX || d_inner % c->ssm_head_dim)
            return em_fail(EM_ERR_FORMAT, "%s: d_inner = mamba_expand %u * hidden_size %u is not a multiple of "
                           "mamba_head_dim %u (or too large)", x->label, expand, c->d_model, c->ssm_head_dim);
        c->d_inner = (uint32_t)d_inner;
        c->ssm_n_head = c->d_inner / c->ssm_head_dim;
        if (c->ssm_n_head % c->ssm_n_group)
            return em_fail(EM_ERR_FORMAT, "%s: %u Mamba heads are not a multiple of mamba_num_groups %u", x->label,
                           c->ssm_n_head, c->ssm_n_group);
        if (c->d_conv > 16) return em_fail(EM_ERR_FORMAT, "%s: mamba_d_conv %u is out of range (1..16)", x->label,
                                           c->d_conv);
        if (2ull * d_inner + 2ull * c->ssm_n_group * c->d_state + c->ssm_n_head > MG_DIM_MAX)
            return em_fail(EM_ERR_FORMAT, "%s: in_proj width is too large", x->label);
        c->ssm_chunk = 128;
        c->flags |= EM_CFG_CONV_BIAS;
        c->gated_norm_group = c->d_inner / c->ssm_n_group;   /* RMSNormGated(group_size = d_inner / ngroups) */
        c->dt_limit_min = 0.0f;
        c->dt_limit_max = INFINITY;
    }
    if (has_a) {
        int gqa = 0;
        EM_TRY(mg_dim(x, "num_attention_heads", 1, 0, &c->attn_n_head));
        EM_TRY(mg_bool(x, "group_query_attention", mg_get(x, "num_query_groups") != NULL, &gqa));
        c->attn_n_kv_head = c->attn_n_head;
        if (gqa) EM_TRY(mg_dim(x, "num_query_groups", 0, c->attn_n_head, &c->attn_n_kv_head));
        EM_TRY(mg_dim(x, "kv_channels", 0, c->d_model / c->attn_n_head ? c->d_model / c->attn_n_head : 1,
                      &c->attn_head_dim));
        if (c->attn_n_head % c->attn_n_kv_head)
            return em_fail(EM_ERR_FORMAT, "%s: num_attention_heads %u is not a multiple of num_query_groups %u",
                           x->label, c->attn_n_head, c->attn_n_kv_head);
        if ((uint64_t)(c->attn_n_head + 2u * c->attn_n_kv_head) * c->attn_head_dim > MG_DIM_MAX)
            return em_fail(EM_ERR_FORMAT, "%s: attention heads * kv_channels is too large", x->label);
        c->rope_fraction = 0.0f;   /* position_embedding_type none */
    }
    if (has_f) {
        EM_TRY(mg_dim(x, "ffn_hidden_size", 0, 4u * c->d_model, &c->d_ff));
        int swiglu = 0;
        EM_TRY(mg_bool(x, "swiglu", 0, &swiglu));
        if (swiglu) return em_fail(EM_ERR_UNSUPPORTED, "%s: swiglu (gated MLP) is not supported", x->label);
        EM_TRY(mg_bool(x, "squared_relu", 0, &sqrelu));
        c->mlp_act = sqrelu ? EM_ACT_RELU2 : EM_ACT_GELU;   /* Megatron's default is exact (erf) GELU */
    }
    return EM_OK;
}

em_status em_megatron_config_parse(const char *text, size_t len, const char *label, uint64_t vocab_rows,
                                   em_hf_config *out) {
    if (!text || !out) return em_fail(EM_ERR_INVALID_ARG, "em_megatron_config_parse: NULL argument");
    if (!label) label = EM_MEGATRON_ARGS_FILE;
    memset(out, 0, sizeof *out);
    cJSON *root = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return em_fail(EM_ERR_FORMAT, "%s: not a JSON object", label);
    }
    mg_ctx x = {root, label};
    out->family = EM_HF_MEGATRON;
    em_status s = mg_parse(&x, vocab_rows, out);
    cJSON_Delete(root);
    if (s != EM_OK) memset(out, 0, sizeof *out);
    return s;
}

em_status em_megatron_config_load(const char *path, uint64_t vocab_rows, em_hf_config *out) {
    char *text;
    size_t len;
    EM_TRY(em_pack_read_file(path, 16u << 20, &text, &len));
    em_status s = em_megatron_config_parse(text, len, path, vocab_rows, out);
    free(text);
    if (s != EM_OK) return s;
    /* name: the directory holding the file */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else snprintf(dir, sizeof dir, ".");
    while ((slash = strrchr(dir, '/')) && slash[1] == 0 && slash != dir) *slash = 0;
    const char *base = strrchr(dir, '/');
    base = base ? base + 1 : dir;
    char cwd[4096];
    if ((!strcmp(base, ".") || !base[0]) && realpath(dir, cwd)) {
        const char *b = strrchr(cwd, '/');
        snprintf(out->name, sizeof out->name, "%.120s", b ? b + 1 : cwd);
    } else {
        snprintf(out->name, sizeof out->name, "%.120s", base);
    }
    return EM_OK;
}
