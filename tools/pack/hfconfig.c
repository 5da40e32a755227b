/*
 * hfconfig.c — see hfconfig.h. One parser per family, both ending in the same consistency checks
 * (hf_check), so that a config em-pack accepts is one the runtime's config check accepts too.
 *
 * Field map (HF name -> em_blob_config field):
 *   mamba2:     hidden_size->d_model, num_hidden_layers->n_layer, vocab_size, state_size->d_state,
 *               conv_kernel->d_conv, num_heads->ssm_n_head, head_dim->ssm_head_dim, n_groups->ssm_n_group,
 *               chunk_size->ssm_chunk, layer_norm_epsilon->norm_eps, time_step_limit->dt_limit_{min,max}
 *   nemotron_h: the same with ssm_state_size, mamba_num_heads, mamba_head_dim (legacy mamba_* aliases too),
 *               plus num_attention_heads, num_key_value_heads, head_dim, intermediate_size->d_ff,
 *               mlp_hidden_act->mlp_act, layers_block_type / hybrid_override_pattern->layer_pattern
 */
#include "hfconfig.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pattern.h"
#include "safetensors.h"
#include "tensors.h"
#include "util.h"

#define HF_DIM_MAX (1u << 24)   /* any single dim above this is a damaged config, not a model */

typedef struct hf_ctx { const cJSON *root; const char *label; } hf_ctx;

/*
 * Python's json.dumps writes float('inf') as the bare token Infinity (time_step_limit = [0.0, Infinity] in
 * configs saved by transformers 4.x); cJSON rejects it. Rewrite Infinity / -Infinity to 1e999 (which
 * strtod turns into inf) and NaN to null, outside strings only. Returns a new terminated buffer.
 */
static char *hf_sanitize(const char *text, size_t len) {
    char *o = malloc(len + len / 2 + 16);
    if (!o) return NULL;
    size_t j = 0;
    int in_str = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (in_str) {
            o[j++] = ch;
            if (ch == '\\' && i + 1 < len) o[j++] = text[++i];
            else if (ch == '"') in_str = 0;
            continue;
        }
        if (ch == '"') { in_str = 1; o[j++] = ch; continue; }
        if (len - i >= 8 && !memcmp(text + i, "Infinity", 8)) { memcpy(o + j, "1e999", 5); j += 5; i += 7; continue; }
        if (len - i >= 3 && !memcmp(text + i, "NaN", 3)) { memcpy(o + j, "null", 4); j += 4; i += 2; continue; }
        o[j++] = ch;
    }
    o[j] = 0;
    return o;
}

// ---- typed field access ---------------------------------------------------------------------------------

/* The item for key, else for alias (legacy name), else NULL. JSON null counts as missing. */
static const cJSON *hf_get(const hf_ctx *x, const char *key, const char *alias) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(x->root, key);
    if ((!v || cJSON_IsNull(v)) && alias) v = cJSON_GetObjectItemCaseSensitive(x->root, alias);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* A positive integer dim; required ones fail when missing, others take def. */
static em_status hf_dim(const hf_ctx *x, const char *key, const char *alias, int required, uint32_t def,
                        uint32_t *out) {
    const cJSON *v = hf_get(x, key, alias);
    if (!v) {
        if (required) return em_fail(EM_ERR_FORMAT, "%s: required field \"%s\" is missing", x->label, key);
        *out = def;
        return EM_OK;
    }
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1.0;
    if (!(d >= 1.0 && d <= HF_DIM_MAX) || d != floor(d))
        return em_fail(EM_ERR_FORMAT, "%s: field \"%s\" must be an integer in [1, %u]", x->label, key, HF_DIM_MAX);
    *out = (uint32_t)d;
    return EM_OK;
}

static em_status hf_bool(const hf_ctx *x, const char *key, const char *alias, int def, int *out) {
    const cJSON *v = hf_get(x, key, alias);
    if (!v) { *out = def; return EM_OK; }
    if (!cJSON_IsBool(v)) return em_fail(EM_ERR_FORMAT, "%s: field \"%s\" must be true or false", x->label, key);
    *out = cJSON_IsTrue(v);
    return EM_OK;
}

static em_status hf_num(const hf_ctx *x, const char *key, const char *alias, double def, double *out) {
    const cJSON *v = hf_get(x, key, alias);
    if (!v) { *out = def; return EM_OK; }
    if (!cJSON_IsNumber(v)) return em_fail(EM_ERR_FORMAT, "%s: field \"%s\" must be a number", x->label, key);
    *out = v->valuedouble;
    return EM_OK;
}

static const char *hf_str(const hf_ctx *x, const char *key, const char *def) {
    const cJSON *v = hf_get(x, key, NULL);
    return cJSON_IsString(v) ? v->valuestring : def;
}

/* Token ids: an integer, a list (the first is taken: eos_token_id may list several), or null/missing = -1. */
static em_status hf_token(const hf_ctx *x, const char *key, int32_t *out) {
    const cJSON *v = hf_get(x, key, NULL);
    if (cJSON_IsArray(v)) v = v->child;
    if (!v || cJSON_IsNull(v)) { *out = -1; return EM_OK; }
    double d = cJSON_IsNumber(v) ? v->valuedouble : -2.0;
    if (!(d >= 0.0 && d < 2147483647.0) || d != floor(d))
        return em_fail(EM_ERR_FORMAT, "%s: field \"%s\" must be a token id (non-negative integer)", x->label, key);
    *out = (int32_t)d;
    return EM_OK;
}

/* time_step_limit: [min, max]; a missing or non-numeric max (Infinity, {"__float__": "Infinity"}) is +inf. */
static em_status hf_dt_limit(const hf_ctx *x, em_blob_config *c) {
    const cJSON *v = hf_get(x, "time_step_limit", "mamba_dt_limit");
    c->dt_limit_min = 0.0f;
    c->dt_limit_max = INFINITY;
    if (!v) return EM_OK;
    if (!cJSON_IsArray(v)) return em_fail(EM_ERR_FORMAT, "%s: field \"time_step_limit\" must be [min, max]", x->label);
    const cJSON *mn = v->child, *mx = mn ? mn->next : NULL;
    if (cJSON_IsNumber(mn)) c->dt_limit_min = (float)mn->valuedouble;
    if (cJSON_IsNumber(mx) && !isnan(mx->valuedouble)) c->dt_limit_max = (float)mx->valuedouble;
    if (!(c->dt_limit_min >= 0.0f) || !(c->dt_limit_max > c->dt_limit_min))
        return em_fail(EM_ERR_FORMAT, "%s: time_step_limit [%g, %g] is not a range 0 <= min < max", x->label,
                       (double)c->dt_limit_min, (double)c->dt_limit_max);
    return EM_OK;
}

/* Fields every family shares. */
static em_status hf_common(const hf_ctx *x, em_blob_config *c, double eps_def, int resid_def) {
    int tie = 0, resid = 0;
    double eps = 0.0;
    EM_TRY(hf_dim(x, "hidden_size", NULL, 1, 0, &c->d_model));
    EM_TRY(hf_dim(x, "vocab_size", NULL, 1, 0, &c->vocab_size));
    EM_TRY(hf_num(x, "layer_norm_epsilon", "rms_norm_eps", eps_def, &eps));
    if (!(eps > 0.0 && eps < 1.0))
        return em_fail(EM_ERR_FORMAT, "%s: layer_norm_epsilon %g is out of range (0, 1)", x->label, eps);
    c->norm_eps = (float)eps;
    c->norm_kind = EM_NORM_RMS;
    EM_TRY(hf_bool(x, "tie_word_embeddings", NULL, 0, &tie));
    EM_TRY(hf_bool(x, "residual_in_fp32", NULL, resid_def, &resid));
    c->flags |= (tie ? EM_CFG_TIED_EMBEDDINGS : 0u) | (resid ? EM_CFG_RESIDUAL_FP32 : 0u);
    EM_TRY(hf_token(x, "bos_token_id", &c->bos_id));
    EM_TRY(hf_token(x, "eos_token_id", &c->eos_id));
    EM_TRY(hf_token(x, "pad_token_id", &c->pad_id));
    c->unk_id = -1;
    double maxpos = 0.0;
    EM_TRY(hf_num(x, "max_position_embeddings", NULL, 0.0, &maxpos));
    c->max_context = maxpos >= 1.0 && maxpos <= 4294967295.0 ? (uint32_t)maxpos : 0u;
    return EM_OK;
}

/* The Mamba-2 mixer fields; names differ per family (mamba2 name, nemotron_h name, legacy alias). */
static em_status hf_mamba(const hf_ctx *x, em_blob_config *c, int nemo) {
    int conv_bias = 1, bias = 0;
    EM_TRY(hf_dim(x, nemo ? "ssm_state_size" : "state_size", nemo ? "mamba_d_state" : NULL, 1, 0, &c->d_state));
    EM_TRY(hf_dim(x, nemo ? "mamba_num_heads" : "num_heads", NULL, 1, 0, &c->ssm_n_head));
    EM_TRY(hf_dim(x, nemo ? "mamba_head_dim" : "head_dim", NULL, 1, 0, &c->ssm_head_dim));
    EM_TRY(hf_dim(x, "n_groups", nemo ? "mamba_n_groups" : NULL, 0, 8, &c->ssm_n_group));
    EM_TRY(hf_dim(x, "conv_kernel", nemo ? "mamba_d_conv" : NULL, 0, 4, &c->d_conv));
    EM_TRY(hf_dim(x, "chunk_size", nemo ? "mamba_chunk_size" : NULL, 0, nemo ? 128 : 256, &c->ssm_chunk));
    EM_TRY(hf_bool(x, "use_conv_bias", nemo ? "mamba_conv_bias" : NULL, 1, &conv_bias));
    c->flags |= conv_bias ? EM_CFG_CONV_BIAS : 0u;
    EM_TRY(hf_bool(x, "use_bias", NULL, 0, &bias));
    if (bias)
        return em_fail(EM_ERR_UNSUPPORTED, "%s: use_bias = true (in_proj/out_proj biases) is not supported for "
                       "Mamba-2", x->label);
    if (nemo) {
        EM_TRY(hf_bool(x, "mamba_proj_bias", NULL, 0, &bias));
        if (bias) return em_fail(EM_ERR_UNSUPPORTED, "%s: mamba_proj_bias = true is not supported", x->label);
    }
    const char *act = hf_str(x, nemo ? "mamba_hidden_act" : "hidden_act", "silu");
    if (strcmp(act, "silu") && strcmp(act, "swish"))
        return em_fail(EM_ERR_UNSUPPORTED, "%s: Mamba activation \"%s\" is not supported (only silu)", x->label, act);
    uint64_t d_inner = (uint64_t)c->ssm_n_head * c->ssm_head_dim;
    if (d_inner > HF_DIM_MAX)
        return em_fail(EM_ERR_FORMAT, "%s: heads %u * head_dim %u is too large", x->label, c->ssm_n_head,
                       c->ssm_head_dim);
    c->d_inner = (uint32_t)d_inner;
    double expand = 2.0;
    EM_TRY(hf_num(x, "expand", nemo ? "mamba_expand" : NULL, 2.0, &expand));
    /* HF Mamba2 sizes its layers by expand * hidden_size and num_heads by itself: they must agree. NemotronH
     * sizes everything from heads * head_dim and only carries expand along (Nemotron-Nano-9B-v2: they differ). */
    if (!nemo && fabs(expand * c->d_model - (double)d_inner) > 0.5)
        return em_fail(EM_ERR_FORMAT, "%s: expand %g * hidden_size %u = %g but num_heads %u * head_dim %u = %llu",
                       x->label, expand, c->d_model, expand * c->d_model, c->ssm_n_head, c->ssm_head_dim,
                       (unsigned long long)d_inner);
    if (c->ssm_n_head % c->ssm_n_group)
        return em_fail(EM_ERR_FORMAT, "%s: %u Mamba heads are not a multiple of n_groups %u", x->label, c->ssm_n_head,
                       c->ssm_n_group);
    if (c->d_conv > 16)
        return em_fail(EM_ERR_FORMAT, "%s: conv_kernel %u is out of range (1..16)", x->label, c->d_conv);
    /* Both families normalise y * silu(z) per group of d_inner / n_groups channels: NemotronH through
     * Zamba2RMSNormGated(group_size = intermediate // n_groups), and HF Mamba2 since transformers PR #40861
     * (MambaRMSNormGated(group_size = intermediate_size // n_groups), transformers 5.x), matching mamba_ssm
     * and Megatron. Older transformers (4.x) normalised HF Mamba2 over all of d_inner: see docs/em-pack.md. */
    c->gated_norm_group = c->d_inner / c->ssm_n_group;
    uint64_t in_proj = 2ull * d_inner + 2ull * c->ssm_n_group * c->d_state + c->ssm_n_head;
    if (in_proj > HF_DIM_MAX) return em_fail(EM_ERR_FORMAT, "%s: in_proj width %llu is too large", x->label,
                                             (unsigned long long)in_proj);
    return hf_dt_limit(x, c);
}

// ---- families ---------------------------------------------------------------------------------------------

static em_status hf_mamba2(const hf_ctx *x, em_hf_config *h) {
    em_blob_config *c = &h->cfg;
    EM_TRY(hf_common(x, c, 1e-5, 1));
    EM_TRY(hf_dim(x, "num_hidden_layers", NULL, 1, 0, &c->n_layer));
    if (c->n_layer > EM_BLOB_MAX_LAYERS)
        return em_fail(EM_ERR_FORMAT, "%s: num_hidden_layers %u is more than %u", x->label, c->n_layer,
                       EM_BLOB_MAX_LAYERS);
    EM_TRY(hf_mamba(x, c, 0));
    c->arch = EM_ARCH_MAMBA2;
    memset(h->pattern, EM_LAYER_MAMBA2, c->n_layer);
    h->pattern[c->n_layer] = 0;
    return EM_OK;
}

/* Layer kinds from layers_block_type (transformers 5.x: "linear_attention" = Mamba, "full_attention",
 * "mlp", "moe"; legacy "mamba", "attention") or from hybrid_override_pattern ("M*-E" characters). */
static em_status hf_nemotron_pattern(const hf_ctx *x, em_hf_config *h) {
    const cJSON *list = hf_get(x, "layers_block_type", NULL);
    const cJSON *pat = hf_get(x, "hybrid_override_pattern", NULL);
    uint32_t n = 0;
    em_status st;
    if (cJSON_IsArray(list)) { /* the names and their meaning live in runtime/pattern.c */
        const char *types[EM_BLOB_MAX_LAYERS];
        for (const cJSON *e = list->child; e; e = e->next, n++) {
            if (n >= EM_BLOB_MAX_LAYERS)
                return em_fail(EM_ERR_FORMAT, "%s: more than %u layers", x->label, EM_BLOB_MAX_LAYERS);
            types[n] = cJSON_IsString(e) ? e->valuestring : "";
        }
        st = em_pattern_from_block_types(types, n, h->pattern, sizeof h->pattern);
    } else if (cJSON_IsString(pat)) {
        st = em_pattern_parse(pat->valuestring, h->pattern, sizeof h->pattern);
        n = st == EM_OK ? (uint32_t)strlen(h->pattern) : 0;
    } else {
        return em_fail(EM_ERR_FORMAT, "%s: needs \"layers_block_type\" (a list) or \"hybrid_override_pattern\"",
                       x->label);
    }
    if (st != EM_OK) { /* name the file in front of the pattern's own message */
        char why[512];
        snprintf(why, sizeof why, "%s", em_last_error());
        return em_fail(st, "%s: %s", x->label, why);
    }
    if (n == 0) return em_fail(EM_ERR_FORMAT, "%s: the layer pattern is empty", x->label);
    h->pattern[n] = 0;
    h->cfg.n_layer = n;
    double nl = 0.0;
    EM_TRY(hf_num(x, "num_hidden_layers", NULL, n, &nl));
    if (nl != n) EM_LOG_W("%s: num_hidden_layers %g ignored: the layer pattern has %u layers", x->label, nl, n);
    return EM_OK;
}

static em_status hf_nemotron_h(const hf_ctx *x, em_hf_config *h) {
    em_blob_config *c = &h->cfg;
    EM_TRY(hf_common(x, c, 1e-5, 0));
    EM_TRY(hf_nemotron_pattern(x, h));
    int has_m = strchr(h->pattern, EM_LAYER_MAMBA2) != NULL, has_a = strchr(h->pattern, EM_LAYER_ATTN) != NULL;
    int has_f = strchr(h->pattern, EM_LAYER_MLP) != NULL, bias = 0;
    c->arch = has_a || has_f ? EM_ARCH_HYBRID : EM_ARCH_MAMBA2;
    if (has_m) EM_TRY(hf_mamba(x, c, 1));
    if (has_a) {
        EM_TRY(hf_dim(x, "num_attention_heads", NULL, 1, 0, &c->attn_n_head));
        EM_TRY(hf_dim(x, "num_key_value_heads", NULL, 0, c->attn_n_head, &c->attn_n_kv_head));
        EM_TRY(hf_dim(x, "head_dim", "attention_head_dim", 0, c->d_model / c->attn_n_head, &c->attn_head_dim));
        if (c->attn_n_head % c->attn_n_kv_head)
            return em_fail(EM_ERR_FORMAT, "%s: num_attention_heads %u is not a multiple of num_key_value_heads %u",
                           x->label, c->attn_n_head, c->attn_n_kv_head);
        if ((uint64_t)c->attn_n_head * c->attn_head_dim > HF_DIM_MAX)
            return em_fail(EM_ERR_FORMAT, "%s: attention heads * head_dim is too large", x->label);
        EM_TRY(hf_bool(x, "attention_bias", NULL, 0, &bias));
        if (bias) return em_fail(EM_ERR_UNSUPPORTED, "%s: attention_bias = true is not supported", x->label);
        c->rope_fraction = 0.0f;   /* NemotronH applies no rotary embedding in its forward pass */
    }
    if (has_f) {
        EM_TRY(hf_dim(x, "intermediate_size", NULL, 1, 0, &c->d_ff));
        EM_TRY(hf_bool(x, "mlp_bias", NULL, 0, &bias));
        if (bias) return em_fail(EM_ERR_UNSUPPORTED, "%s: mlp_bias = true is not supported", x->label);
        const char *act = hf_str(x, "mlp_hidden_act", "relu2");
        if (!strcmp(act, "relu2")) c->mlp_act = EM_ACT_RELU2;
        else if (!strcmp(act, "silu") || !strcmp(act, "swish")) c->mlp_act = EM_ACT_SILU;
        else if (!strncmp(act, "gelu", 4)) {
            c->mlp_act = EM_ACT_GELU;
            if (strcmp(act, "gelu"))   /* gelu_new, gelu_pytorch_tanh, ...: the tanh approximation */
                EM_LOG_W("%s: mlp_hidden_act \"%s\" stored as GELU (the runtime computes the exact erf GELU)",
                         x->label, act);
        } else {
            return em_fail(EM_ERR_UNSUPPORTED, "%s: mlp_hidden_act \"%s\" is not supported (relu2, gelu, silu)",
                           x->label, act);
        }
    }
    return EM_OK;
}

// ---- public ------------------------------------------------------------------------------------------------

em_status em_hf_config_parse(const char *text, size_t len, const char *label, em_hf_config *out) {
    if (!text || !out) return em_fail(EM_ERR_INVALID_ARG, "em_hf_config_parse: NULL argument");
    if (!label) label = "config.json";
    memset(out, 0, sizeof *out);
    char *clean = hf_sanitize(text, len);
    if (!clean) return em_fail(EM_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    cJSON *root = cJSON_Parse(clean);
    free(clean);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return em_fail(EM_ERR_FORMAT, "%s: not a JSON object", label);
    }
    hf_ctx x = {root, label};
    em_status s;
    const char *mt = hf_str(&x, "model_type", "");
    if (!strcmp(mt, "mamba2")) {
        out->family = EM_HF_MAMBA2;
        s = hf_mamba2(&x, out);
    } else if (!strcmp(mt, "nemotron_h")) {
        out->family = EM_HF_NEMOTRON_H;
        s = hf_nemotron_h(&x, out);
    } else {
        s = em_fail(mt[0] ? EM_ERR_UNSUPPORTED : EM_ERR_FORMAT, "%s: model_type \"%.64s\" is not supported (mamba2, "
                    "nemotron_h)", label, mt);
    }
    cJSON_Delete(root);
    if (s != EM_OK) memset(out, 0, sizeof *out);
    return s;
}

em_status em_hf_config_load(const char *path, em_hf_config *out) {
    char *text;
    size_t len;
    EM_TRY(em_pack_read_file(path, 16u << 20, &text, &len));
    em_status s = em_hf_config_parse(text, len, path, out);
    free(text);
    if (s != EM_OK) return s;
    /* The model's name: the directory holding config.json ("." when it is the current one). */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else snprintf(dir, sizeof dir, ".");
    while ((slash = strrchr(dir, '/')) && slash[1] == 0 && slash != dir) *slash = 0;  /* trailing '/' */
    const char *base = strrchr(dir, '/');
    base = base ? base + 1 : dir;
    if (!strcmp(base, ".") || !base[0]) {
        char cwd[4096];
        if (realpath(dir, cwd)) {
            const char *b = strrchr(cwd, '/');
            snprintf(out->name, sizeof out->name, "%.120s", b ? b + 1 : cwd);
        }
    } else {
        snprintf(out->name, sizeof out->name, "%.120s", base);
    }
    return EM_OK;
}

em_blob_config em_hf_blob_config(const em_hf_config *h) {
    em_blob_config c = h->cfg;
    c.layer_pattern.ptr = h->pattern;
    c.layer_pattern.len = (uint32_t)strlen(h->pattern);
    c.name.ptr = h->name;
    c.name.len = (uint32_t)strlen(h->name);
    c.chat_template.ptr = "";
    c.chat_template.len = 0;
    return c;
}
