/*
 * test_pack_megatron.c — em-pack on Megatron-LM checkpoints (tools/pack/megatron.[ch], docs/em-pack.md
 * "Megatron-LM checkpoints"): a tiny hybrid state dict with Megatron's key names (GQA: 4 heads in 2 query
 * groups, fused linear_qkv) plus megatron_args.json, both written here from C (no Python), is packed in f32
 * and bf16; every blob tensor is compared with the re-arrangement computed here independently of pack.c
 * (the qkv split by walking the [groups, heads/groups + 2, head_dim, d] view block by block; A = -exp(A_log);
 * conv1d [C, 1, K] -> [C, K]), and the config with the layer pattern of the allocation (runtime/pattern.h),
 * GELU vs squared ReLU, the per-group gated norm and no position embedding. Also: an explicit
 * hybrid_override_pattern, a pure Mamba-2 stack with a tied head, main-branch's fused Mamba norm name,
 * Transformer Engine `_extra_state` entries ignored, and TP > 1 refused (file named, no output left).
 *
 * Run: ctest -R test_pack_megatron (label blob).
 */
#include <math.h>

#include "blob.h"
#include "pack.h"
#include "pattern.h"
#include "test_pack_common.c"

/* dims: d 32, Mamba N 16, P 16, G 2, expand 2 -> d_inner 64, 4 heads, conv 128, in_proj 196;
 * attention 4 heads, 2 groups, head_dim 8 -> qkv rows (4 + 2*2) * 8 = 64; ffn 48; vocab 96 */
#define MG_D 32
#define MG_V 96
#define MG_N 16
#define MG_P 16
#define MG_G 2
#define MG_DI 64
#define MG_H (MG_DI / MG_P)
#define MG_CONV (MG_DI + 2 * MG_G * MG_N)
#define MG_INPROJ (2 * MG_DI + 2 * MG_G * MG_N + MG_H)
#define MG_NH 4
#define MG_NG 2
#define MG_HD 8
#define MG_QKV ((MG_NH + 2 * MG_NG) * MG_HD)
#define MG_FF 48

static const char *mg_args_hybrid =
    "{\"num_layers\": 8, \"hidden_size\": 32, \"num_attention_heads\": 4, \"group_query_attention\": true,\n"
    " \"num_query_groups\": 2, \"kv_channels\": 8, \"ffn_hidden_size\": 48, \"hybrid_attention_ratio\": 0.25,\n"
    " \"hybrid_mlp_ratio\": 0.25, \"seq_length\": 4096, \"norm_epsilon\": 1e-05, \"squared_relu\": false,\n"
    " \"padded_vocab_size\": 96, \"mamba_state_dim\": 16, \"mamba_head_dim\": 16, \"mamba_num_groups\": 2,\n"
    " \"mamba_d_conv\": 4, \"mamba_expand\": 2, \"tensor_model_parallel_size\": 1,\n"
    " \"pipeline_model_parallel_size\": 1, \"untie_embeddings_and_output_weights\": true,\n"
    " \"position_embedding_type\": \"none\", \"normalization\": \"RMSNorm\", \"add_bias_linear\": false}\n";

/* Writes the layers of pattern under Megatron names (layer 0's Mamba norm in main-branch spelling when
 * main_norm), the globals (output_layer unless tied) and one _extra_state entry, into dir. */
static void mg_make(const char *dir, const char *pattern, int main_norm, int tied, uint64_t seed) {
    tp_ckpt c;
    memset(&c, 0, sizeof c);
    em_rng_seed(&c.rng, seed);
    char n[200];
    tp_add(&c, "embedding.word_embeddings.weight", EM_ST_BF16, 2, MG_V, MG_D, 0, 1.0f);
    for (int i = 0; pattern[i]; i++) {
#define MG_NAME(suffix) (tp_fmt(n, "decoder.layers.%d.%s", i, suffix), n)
        if (pattern[i] == 'M') {
            tp_add(&c, MG_NAME(main_norm && i == 0 ? "mixer.in_proj.layer_norm_weight" : "norm.weight"), EM_ST_BF16, 1,
                   MG_D, 0, 0, 1.5f);
            tp_add(&c, MG_NAME("mixer.in_proj.weight"), EM_ST_F32, 2, MG_INPROJ, MG_D, 0, 0.3f);
            tp_add(&c, MG_NAME("mixer.conv1d.weight"), EM_ST_F32, 3, MG_CONV, 1, 4, 0.5f);
            tp_add(&c, MG_NAME("mixer.conv1d.bias"), EM_ST_BF16, 1, MG_CONV, 0, 0, 0.1f);
            tp_add(&c, MG_NAME("mixer.dt_bias"), EM_ST_F32, 1, MG_H, 0, 0, 2.0f);
            tp_add(&c, MG_NAME("mixer.A_log"), EM_ST_F32, 1, MG_H, 0, 0, 2.0f);
            tp_add(&c, MG_NAME("mixer.D"), EM_ST_BF16, 1, MG_H, 0, 0, 1.0f);
            tp_add(&c, MG_NAME("mixer.norm.weight"), EM_ST_F32, 1, MG_DI, 0, 0, 1.0f);
            tp_add(&c, MG_NAME("mixer.out_proj.weight"), EM_ST_BF16, 2, MG_D, MG_DI, 0, 0.2f);
        } else if (pattern[i] == '*') {
            tp_add(&c, MG_NAME("self_attention.linear_qkv.layer_norm_weight"), EM_ST_F32, 1, MG_D, 0, 0, 1.5f);
            tp_add(&c, MG_NAME("self_attention.linear_qkv.weight"), EM_ST_F32, 2, MG_QKV, MG_D, 0, 0.4f);
            tp_add(&c, MG_NAME("self_attention.linear_proj.weight"), EM_ST_BF16, 2, MG_D, MG_NH * MG_HD, 0, 0.3f);
        } else {
            tp_add(&c, MG_NAME("mlp.linear_fc1.layer_norm_weight"), EM_ST_BF16, 1, MG_D, 0, 0, 1.5f);
            tp_add(&c, MG_NAME("mlp.linear_fc1.weight"), EM_ST_F32, 2, MG_FF, MG_D, 0, 0.3f);
            tp_add(&c, MG_NAME("mlp.linear_fc2.weight"), EM_ST_F32, 2, MG_D, MG_FF, 0, 0.3f);
            tp_add(&c, MG_NAME("mlp.linear_fc1._extra_state"), EM_ST_I32, 1, 3, 0, 0, 0.0f);
        }
#undef MG_NAME
    }
    tp_add(&c, "decoder.final_norm.weight", EM_ST_F32, 1, MG_D, 0, 0, 1.0f);
    if (!tied) tp_add(&c, "output_layer.weight", EM_ST_BF16, 2, MG_V, MG_D, 0, 0.5f);
    char p[4300];
    tp_fmt(p, "%s/model.safetensors", dir);
    em_status s = em_st_write(p, c.t, c.n);
    if (s != EM_OK) { fprintf(stderr, "%s\n", em_last_error()); exit(1); }
    tp_free(&c);
}

static float mg_val(const em_st_tensor *s, uint64_t i) {
    if (s->dtype == EM_ST_BF16) return em_bf16_to_f32(em_ld16(s->data + 2 * i));
    float f;
    memcpy(&f, s->data + 4 * i, 4);
    return f;
}

/* Expected contents of blob tensor name (f32), computed from the Megatron state dict; NULL when unknown. */
static float *mg_expected(const em_st *st, const char *name, uint64_t *n_out) {
    char src[200], field[64];
    unsigned l;
    int qkv = -1, neg_exp = 0;
    if (!strcmp(name, "embd")) tp_fmt(src, "embedding.word_embeddings.weight");
    else if (!strcmp(name, "norm_f")) tp_fmt(src, "decoder.final_norm.weight");
    else if (!strcmp(name, "head")) tp_fmt(src, "output_layer.weight");
    else if (sscanf(name, "l%u.%63s", &l, field) == 2) {
        static const char *const map[][2] = {
            {"in_proj", "mixer.in_proj.weight"}, {"conv_w", "mixer.conv1d.weight"}, {"conv_b", "mixer.conv1d.bias"},
            {"dt_bias", "mixer.dt_bias"}, {"A", "mixer.A_log"}, {"D", "mixer.D"}, {"gnorm", "mixer.norm.weight"},
            {"out_proj", "mixer.out_proj.weight"}, {"wo", "self_attention.linear_proj.weight"},
            {"up", "mlp.linear_fc1.weight"}, {"down", "mlp.linear_fc2.weight"},
        };
        src[0] = 0;
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (!strcmp(field, map[i][0])) tp_fmt(src, "decoder.layers.%u.%s", l, map[i][1]);
        if (!strcmp(field, "A")) neg_exp = 1;
        if (!strcmp(field, "wq") || !strcmp(field, "wk") || !strcmp(field, "wv")) {
            qkv = field[1] == 'q' ? 0 : field[1] == 'k' ? 1 : 2;
            tp_fmt(src, "decoder.layers.%u.self_attention.linear_qkv.weight", l);
        }
        if (!strcmp(field, "norm")) {   /* whichever of the layer's norm names exists */
            static const char *const norms[] = {"norm.weight", "mixer.in_proj.layer_norm_weight",
                                                "self_attention.linear_qkv.layer_norm_weight",
                                                "mlp.linear_fc1.layer_norm_weight"};
            for (size_t i = 0; i < 4; i++) {
                tp_fmt(src, "decoder.layers.%u.%s", l, norms[i]);
                if (em_st_find(st, src)) break;
            }
        }
    } else return NULL;
    const em_st_tensor *s = em_st_find(st, src);
    if (!s) return NULL;
    if (qkv < 0) {
        float *e = malloc(s->n_elems * sizeof *e);
        for (uint64_t i = 0; i < s->n_elems; i++)
            e[i] = neg_exp ? (float)(-exp((double)mg_val(s, i))) : mg_val(s, i);
        *n_out = s->n_elems;
        return e;
    }
    /* W.view(ng, nh/ng + 2, hd, d): block (g, slot) is query head g*(nh/ng) + slot for slot < nh/ng, then k_g,
     * then v_g. Walk the source in storage order and drop each block where it belongs. */
    const int per = MG_NH / MG_NG;
    uint64_t rows = qkv == 0 ? MG_NH * MG_HD : MG_NG * MG_HD;
    float *e = malloc(rows * MG_D * sizeof *e);
    for (int i = 0; i < (int)(rows * MG_D); i++) e[i] = NAN;
    uint64_t src_row = 0;
    for (int g = 0; g < MG_NG; g++)
        for (int slot = 0; slot < per + 2; slot++)
            for (int j = 0; j < MG_HD; j++, src_row++) {
                int kind = slot < per ? 0 : slot == per ? 1 : 2;
                if (kind != qkv) continue;
                uint64_t dst_row = kind == 0 ? (uint64_t)((g * per + slot) * MG_HD + j) : (uint64_t)(g * MG_HD + j);
                for (int c = 0; c < MG_D; c++) e[dst_row * MG_D + c] = mg_val(s, src_row * MG_D + c);
            }
    *n_out = rows * MG_D;
    return e;
}

/* Packs dir with dt (expecting want tensors and no unused ones), opens the blob (checksums verified) and
 * compares every tensor with mg_expected. */
static void mg_pack_verify(const char *label, const char *dir, const char *out, em_dtype dt, uint32_t want,
                           em_blob *keep) {
    em_pack_options o = em_pack_default_options();
    o.dtype = dt;
    o.no_tokenizer = 1;
    em_pack_stats stats;
    memset(&stats, 0, sizeof stats);
    CHECK_STATUS(em_pack_checkpoint(dir, out, &o, &stats), EM_OK);
    CHECK_MSG(stats.n_tensors == want && stats.n_unused == 0, "%s: %u tensors (want %u), %u unused", label,
              stats.n_tensors, want, stats.n_unused);
    em_blob b;
    memset(&b, 0, sizeof b);
    em_blob_open_options bo = {1};
    CHECK_STATUS(em_blob_open_file(out, &bo, &b), EM_OK);
    em_st *st = NULL;
    CHECK_STATUS(em_st_open(dir, &st), EM_OK);
    for (uint32_t k = 0; k < b.n_tensors && st; k++) {
        const em_blob_tensor *t = &b.tensors[k];
        uint64_t n = 0, tn = 1;
        float *e = mg_expected(st, t->name, &n);
        CHECK_MSG(e != NULL, "%s: no source for blob tensor %s", label, t->name);
        if (!e) continue;
        for (uint32_t d = 0; d < t->n_dims; d++) tn *= t->shape[d];
        CHECK_MSG(tn == n, "%s: %s has %llu elements, expected %llu", label, t->name, (unsigned long long)tn,
                  (unsigned long long)n);
        uint64_t bad = 0, first = 0;
        for (uint64_t i = 0; i < n && tn == n; i++) {
            int ok;
            if (t->dtype == EM_DTYPE_BF16) ok = em_ld16(b.data + t->offset + 2 * i) == em_f32_to_bf16(e[i]);
            else { float g; memcpy(&g, b.data + t->offset + 4 * i, 4); ok = !memcmp(&g, &e[i], 4); }
            if (!ok && !bad++) first = i;
        }
        CHECK_MSG(bad == 0, "%s: %s: %llu of %llu elements differ (first at %llu)", label, t->name,
                  (unsigned long long)bad, (unsigned long long)n, (unsigned long long)first);
        free(e);
    }
    em_st_close(st);
    if (keep) *keep = b;
    else em_blob_close(&b);
}

static uint32_t mg_count(const char *pattern, int tied) {
    em_pattern_counts k = em_pattern_count(pattern);
    return (tied ? 2 : 3) + 9 * k.n_mamba + 5 * k.n_attn + 3 * k.n_mlp;
}

static void test_hybrid_ratios(const char *tmp) {
    char pattern[16], dir[4200], out[4300];
    CHECK_STATUS(em_pattern_allocate(8, 0.25, 0.25, pattern, sizeof pattern), EM_OK);
    em_pattern_counts k = em_pattern_count(pattern);
    CHECK_MSG(k.n_mamba == 4 && k.n_attn == 2 && k.n_mlp == 2, "allocation %s", pattern);
    tp_fmt(dir, "%s/hy", tmp);
    mkdir(dir, 0700);
    mg_make(dir, pattern, 1, 0, 21);
    tp_write_text(dir, "megatron_args.json", mg_args_hybrid);
    for (int bf = 0; bf < 2; bf++) {
        em_dtype dt = bf ? EM_DTYPE_BF16 : EM_DTYPE_F32;
        tp_fmt(out, "%s/hy_%s.emb", tmp, em_dtype_name(dt));
        em_blob b;
        mg_pack_verify(bf ? "hybrid bf16" : "hybrid f32", dir, out, dt, mg_count(pattern, 0), &b);
        const em_blob_config *c = &b.config;
        CHECK(c->layer_pattern.len == 8 && !memcmp(c->layer_pattern.ptr, pattern, 8));
        CHECK(c->arch == EM_ARCH_HYBRID && c->n_layer == 8 && c->d_model == MG_D && c->vocab_size == MG_V);
        CHECK(c->d_state == MG_N && c->ssm_n_head == MG_H && c->ssm_head_dim == MG_P && c->ssm_n_group == MG_G);
        CHECK(c->d_inner == MG_DI && c->d_conv == 4 && c->ssm_chunk == 128);
        CHECK(c->gated_norm_group == MG_DI / MG_G);              /* Megatron: per group */
        CHECK(c->attn_n_head == MG_NH && c->attn_n_kv_head == MG_NG && c->attn_head_dim == MG_HD);
        CHECK(c->rope_fraction == 0.0f && c->d_ff == MG_FF && c->mlp_act == EM_ACT_GELU);
        CHECK(c->norm_kind == EM_NORM_RMS && c->norm_eps == 1e-5f && c->max_context == 4096);
        CHECK(c->flags == EM_CFG_CONV_BIAS);                     /* untied, bf16 residual */
        CHECK(c->dt_limit_min == 0.0f && isinf(c->dt_limit_max));
        CHECK(c->name.len == 2 && !memcmp(c->name.ptr, "hy", 2));
        em_blob_close(&b);
    }
    tp_rm_rf(dir);
}

static void test_override_relu2(const char *tmp) {
    char dir[4200], out[4300];
    tp_fmt(dir, "%s/ov", tmp);
    mkdir(dir, 0700);
    mg_make(dir, "M*-M", 0, 0, 22);
    tp_write_text(dir, "megatron_args.json",
                  "{\"num_layers\": 4, \"hidden_size\": 32, \"num_attention_heads\": 4, \"num_query_groups\": 2,\n"
                  " \"group_query_attention\": true, \"kv_channels\": 8, \"ffn_hidden_size\": 48,\n"
                  " \"hybrid_attention_ratio\": 0.0, \"hybrid_mlp_ratio\": 0.0, \"hybrid_override_pattern\": \"M*-M\",\n"
                  " \"squared_relu\": true, \"padded_vocab_size\": 96, \"mamba_state_dim\": 16,\n"
                  " \"mamba_head_dim\": 16, \"mamba_num_groups\": 2}\n");
    tp_fmt(out, "%s/ov.emb", tmp);
    em_blob b;
    mg_pack_verify("override", dir, out, EM_DTYPE_F32, mg_count("M*-M", 0), &b);
    CHECK(b.config.layer_pattern.len == 4 && !memcmp(b.config.layer_pattern.ptr, "M*-M", 4));
    CHECK(b.config.mlp_act == EM_ACT_RELU2 && b.config.arch == EM_ARCH_HYBRID);
    em_blob_close(&b);
    tp_rm_rf(dir);
}

/* Ratios absent: all Mamba; no output_layer: tied head; --format megatron on the .safetensors path. */
static void test_pure_mamba_tied(const char *tmp) {
    char dir[4200], out[4300], file[4300];
    tp_fmt(dir, "%s/pm", tmp);
    mkdir(dir, 0700);
    mg_make(dir, "MMM", 0, 1, 23);
    tp_write_text(dir, "megatron_args.json",
                  "{\"num_layers\": 3, \"hidden_size\": 32, \"num_attention_heads\": 4, \"seq_length\": 128,\n"
                  " \"untie_embeddings_and_output_weights\": false, \"mamba_state_dim\": 16, \"mamba_head_dim\": 16,\n"
                  " \"mamba_num_groups\": 2}\n");
    tp_fmt(out, "%s/pm.emb", tmp);
    em_blob b;
    mg_pack_verify("pure mamba", dir, out, EM_DTYPE_BF16, mg_count("MMM", 1), &b);
    CHECK(b.config.arch == EM_ARCH_MAMBA2 && b.config.n_layer == 3 && (b.config.flags & EM_CFG_TIED_EMBEDDINGS));
    CHECK(b.config.vocab_size == MG_V && b.config.max_context == 128);
    em_blob_close(&b);
    em_pack_options o = em_pack_default_options();
    o.format = EM_PACK_FORMAT_MEGATRON;
    tp_fmt(file, "%s/model.safetensors", dir);
    tp_fmt(out, "%s/pm2.emb", tmp);
    CHECK_STATUS(em_pack_checkpoint(file, out, &o, NULL), EM_OK);
    unlink(out);
    tp_rm_rf(dir);
}

static void test_errors(const char *tmp) {
    char dir[4200], out[4300];
    tp_fmt(dir, "%s/tp", tmp);
    mkdir(dir, 0700);
    mg_make(dir, "MM", 0, 0, 24);
    tp_write_text(dir, "megatron_args.json",
                  "{\"num_layers\": 2, \"hidden_size\": 32, \"tensor_model_parallel_size\": 2,\n"
                  " \"mamba_state_dim\": 16, \"mamba_head_dim\": 16, \"mamba_num_groups\": 2}\n");
    tp_fmt(out, "%s/tp.emb", tmp);
    CHECK_STATUS(em_pack_checkpoint(dir, out, NULL, NULL), EM_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(em_last_error(), "megatron_args.json") && strstr(em_last_error(), "tensor_model_parallel_size 2"),
              "message: %s", em_last_error());
    CHECK(!tp_exists(out));
    /* a wrong qkv shape is named with the expected fused shape */
    tp_write_text(dir, "megatron_args.json",
                  "{\"num_layers\": 2, \"hidden_size\": 32, \"num_attention_heads\": 2, \"kv_channels\": 8,\n"
                  " \"hybrid_override_pattern\": \"M*\", \"mamba_state_dim\": 16, \"mamba_head_dim\": 16,\n"
                  " \"mamba_num_groups\": 2}\n");
    CHECK_STATUS(em_pack_checkpoint(dir, out, NULL, NULL), EM_ERR_NOT_FOUND);   /* layer 1 is Mamba in the file */
    CHECK_MSG(strstr(em_last_error(), "decoder.layers.1.self_attention.linear_qkv.layer_norm_weight"), "message: %s",
              em_last_error());
    CHECK(!tp_exists(out));
    tp_rm_rf(dir);
    tp_fmt(dir, "%s/qk", tmp);
    mkdir(dir, 0700);
    mg_make(dir, "M*", 0, 0, 25);
    tp_write_text(dir, "megatron_args.json",   /* MHA (no groups): qkv would be 96 rows, the file has 64 */
                  "{\"num_layers\": 2, \"hidden_size\": 32, \"num_attention_heads\": 4, \"kv_channels\": 8,\n"
                  " \"hybrid_override_pattern\": \"M*\", \"mamba_state_dim\": 16, \"mamba_head_dim\": 16,\n"
                  " \"mamba_num_groups\": 2}\n");
    CHECK_STATUS(em_pack_checkpoint(dir, out, NULL, NULL), EM_ERR_FORMAT);
    CHECK_MSG(strstr(em_last_error(), "linear_qkv.weight has shape [64, 32], expected [96, 32]"), "message: %s",
              em_last_error());
    CHECK(!tp_exists(out));
    tp_rm_rf(dir);
}

int main(void) {
    char tmp[4096];
    tp_mkdtemp(tmp, sizeof tmp, "packmeg");
    test_hybrid_ratios(tmp);
    test_override_relu2(tmp);
    test_pure_mamba_tied(tmp);
    test_errors(tmp);
    tp_rm_rf(tmp);
    return em_test_finish("test_pack_megatron");
}
