/*
 * test_pack.c — em-pack end to end through its library (tools/pack/pack.h): pack tiny checkpoints written
 * here from C (and the committed fixtures tests/data/mamba2_tiny, nemotronh_mmm when present) with
 * --dtype f32 and bf16, open the blob (checksums verified) and check every tensor bit for bit against the
 * source under the documented conversion (docs/em-pack.md): bf16 = round-to-nearest-even of the f32
 * value, A = (float)-exp((double)A_log), conv1d [C, 1, K] -> [C, K] (same element order).
 * Also: sharded == single file, tokenizer and chat template stored, and the errors (wrong shape, missing
 * tensor, integer dtype) name file and tensor and leave no output file.
 *
 * Run: ctest -R test_pack$ (label blob), or build/tests/test_pack from the tests/ directory.
 */
#include <math.h>

#include "blob.h"
#include "pack.h"
#include "test_pack_common.c"

// ---- the documented mapping, written out independently of pack.c --------------------------------------

/* HF name of a blob tensor (prefix: "backbone." or "model."; emb: "embeddings" or "embedding"). */
static void hf_name_of(const char *blob_name, const char *prefix, const char *emb, char *out, size_t cap) {
    static const char *const map[][2] = {
        {"norm", "norm.weight"}, {"in_proj", "mixer.in_proj.weight"}, {"conv_w", "mixer.conv1d.weight"},
        {"conv_b", "mixer.conv1d.bias"}, {"dt_bias", "mixer.dt_bias"}, {"A", "mixer.A_log"}, {"D", "mixer.D"},
        {"gnorm", "mixer.norm.weight"}, {"out_proj", "mixer.out_proj.weight"}, {"wq", "mixer.q_proj.weight"},
        {"wk", "mixer.k_proj.weight"}, {"wv", "mixer.v_proj.weight"}, {"wo", "mixer.o_proj.weight"},
        {"up", "mixer.up_proj.weight"}, {"down", "mixer.down_proj.weight"},
    };
    unsigned layer;
    char field[64];
    out[0] = 0;
    if (!strcmp(blob_name, "embd")) snprintf(out, cap, "%s%s.weight", prefix, emb);
    else if (!strcmp(blob_name, "norm_f")) snprintf(out, cap, "%snorm_f.weight", prefix);
    else if (!strcmp(blob_name, "head")) snprintf(out, cap, "lm_head.weight");
    else if (sscanf(blob_name, "l%u.%63s", &layer, field) == 2)
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (!strcmp(field, map[i][0])) snprintf(out, cap, "%slayers.%u.%s", prefix, layer, map[i][1]);
}

static int is_matrix(const char *blob_name) {
    const char *f = strchr(blob_name, '.');
    f = f ? f + 1 : blob_name;
    static const char *const m[] = {"embd", "head", "in_proj", "out_proj", "wq", "wk", "wv", "wo", "up", "down"};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) if (!strcmp(f, m[i])) return 1;
    return 0;
}

static float src_value(const em_st_tensor *s, uint64_t i) {
    switch (s->dtype) {
    case EM_ST_F32: { float f; memcpy(&f, s->data + 4 * i, 4); return f; }
    case EM_ST_BF16: return em_bf16_to_f32(em_ld16(s->data + 2 * i));
    case EM_ST_F16: return em_f16_to_f32(em_ld16(s->data + 2 * i));
    case EM_ST_F64: { double d; memcpy(&d, s->data + 8 * i, 8); return (float)d; }
    default: return NAN;
    }
}

/* Every blob tensor equals its source after the conversion; returns how many tensors were compared. */
static uint32_t verify_blob(const char *label, const em_blob *b, const em_st *st, const char *prefix, const char *emb,
                            em_dtype pack_dt) {
    uint32_t checked = 0;
    for (uint32_t k = 0; k < b->n_tensors; k++) {
        const em_blob_tensor *t = &b->tensors[k];
        char hf[256];
        hf_name_of(t->name, prefix, emb, hf, sizeof hf);
        const em_st_tensor *s = em_st_find(st, hf);
        CHECK_MSG(s != NULL, "%s: blob tensor %s: source %s not found", label, t->name, hf);
        if (!s) continue;
        em_dtype want = is_matrix(t->name) ? pack_dt : EM_DTYPE_F32;
        CHECK_MSG(t->dtype == (uint32_t)want, "%s: %s dtype %s, want %s", label, t->name, em_dtype_name(t->dtype),
                  em_dtype_name(want));
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) n *= t->shape[d];
        CHECK_MSG(n == s->n_elems, "%s: %s has %llu elements, source %llu", label, t->name, (unsigned long long)n,
                  (unsigned long long)s->n_elems);
        if (!strcmp(strchr(t->name, '.') ? strchr(t->name, '.') + 1 : "", "conv_w"))
            CHECK_MSG(t->n_dims == 2 && s->n_dims == 3 && t->shape[0] == s->shape[0] && t->shape[1] == s->shape[2],
                      "%s: %s conv reshape", label, t->name);
        if (n != s->n_elems || t->dtype != (uint32_t)want) continue;
        int is_a = strlen(t->name) > 2 && !strcmp(t->name + strlen(t->name) - 2, ".A");
        const uint8_t *data = b->data + t->offset;
        uint64_t bad = 0, first_bad = 0;
        for (uint64_t i = 0; i < n; i++) {
            float v = src_value(s, i);
            if (is_a) v = (float)(-exp((double)v));
            int ok;
            if (t->dtype == EM_DTYPE_BF16) ok = em_ld16(data + 2 * i) == em_f32_to_bf16(v);
            else { float g; memcpy(&g, data + 4 * i, 4); ok = !memcmp(&g, &v, 4); }
            if (!ok && !bad++) first_bad = i;
        }
        CHECK_MSG(bad == 0, "%s: %s: %llu of %llu elements differ (first at %llu)", label, t->name,
                  (unsigned long long)bad, (unsigned long long)n, (unsigned long long)first_bad);
        checked++;
    }
    return checked;
}

/* Packs src with dtype, opens the result (hashing all tensors) and verifies it against src. */
static void pack_and_verify(const char *label, const char *src, const char *out, em_dtype dt, const char *prefix,
                            const char *emb, uint32_t want_tensors, em_blob *keep) {
    em_pack_options o = em_pack_default_options();
    o.dtype = dt;
    em_pack_stats stats;
    CHECK_STATUS(em_pack_checkpoint(src, out, &o, &stats), EM_OK);
    CHECK_MSG(stats.n_tensors == want_tensors, "%s: %u tensors, want %u", label, stats.n_tensors, want_tensors);
    em_blob b;
    memset(&b, 0, sizeof b);
    em_blob_open_options bo = {1};
    CHECK_STATUS(em_blob_open_file(out, &bo, &b), EM_OK);
    em_st *st = NULL;
    CHECK_STATUS(em_st_open(src, &st), EM_OK);
    if (b.n_tensors && st) {
        uint32_t n = verify_blob(label, &b, st, prefix, emb, dt);
        CHECK_MSG(n == want_tensors, "%s: verified %u of %u tensors", label, n, want_tensors);
    }
    em_st_close(st);
    if (keep) *keep = b;
    else em_blob_close(&b);
}

#define TOK_JSON "{\"model\": {\"type\": \"BPE\"}}"

// ---- cases -----------------------------------------------------------------------------------------------

static void test_mamba2(const char *tmp) {
    char dir[4200], out[4300];
    tp_fmt(dir, "%s/m2", tmp);
    mkdir(dir, 0700);
    tp_make_mamba2(dir, -1, 11);
    tp_write_text(dir, "tokenizer.json", TOK_JSON);
    tp_write_text(dir, "tokenizer_config.json", "{\"chat_template\": \"{{ messages }}\"}");
    tp_fmt(out, "%s/m2_f32.emb", tmp);
    em_blob b;
    pack_and_verify("mamba2 f32", dir, out, EM_DTYPE_F32, "backbone.", "embeddings", 3 + 2 * 9, &b);
    const em_blob_config *c = &b.config;
    CHECK(c->arch == EM_ARCH_MAMBA2 && c->n_layer == 2 && c->d_model == TP_D && c->vocab_size == TP_V);
    CHECK(c->d_state == TP_N && c->ssm_n_head == TP_H && c->ssm_head_dim == TP_P && c->ssm_n_group == TP_G);
    CHECK(c->d_inner == TP_DI && c->d_conv == 4 && c->gated_norm_group == TP_DI / TP_G);
    CHECK(c->flags == (EM_CFG_CONV_BIAS | EM_CFG_RESIDUAL_FP32));
    CHECK(c->layer_pattern.len == 2 && !memcmp(c->layer_pattern.ptr, "MM", 2));
    CHECK(c->name.len == 2 && !memcmp(c->name.ptr, "m2", 2));
    CHECK(c->tokenizer_kind == EM_TOK_BPE && b.tokenizer_size == strlen(TOK_JSON) &&
          !memcmp(b.tokenizer, TOK_JSON, strlen(TOK_JSON)));
    CHECK(c->chat_template.len == 14 && !memcmp(c->chat_template.ptr, "{{ messages }}", 14));
    CHECK(isinf(c->dt_limit_max) && c->dt_limit_min == 0.0f && c->eos_id == 2 && c->bos_id == 0);
    em_blob_close(&b);

    tp_fmt(out, "%s/m2_bf16.emb", tmp);
    pack_and_verify("mamba2 bf16", dir, out, EM_DTYPE_BF16, "backbone.", "embeddings", 3 + 2 * 9, NULL);

    /* The same tensors split over two shards + an index: identical blob tensors. */
    char sdir[4200], p[4400];
    tp_fmt(sdir, "%s/m2s", tmp);
    mkdir(sdir, 0700);
    tp_fmt(p, "%s/model.safetensors", dir);
    em_st *st = NULL;
    CHECK_STATUS(em_st_open(p, &st), EM_OK);
    if (st) {
        size_t n = em_st_count(st), half = n / 2;
        em_st_wtensor w[64];
        char index[8192];
        size_t o = (size_t)snprintf(index, sizeof index, "{\"metadata\": {}, \"weight_map\": {");
        for (size_t i = 0; i < n && i < 64; i++) {
            const em_st_tensor *t = em_st_at(st, i);
            memset(&w[i], 0, sizeof w[i]);
            w[i].name = t->name;
            w[i].dtype = t->dtype;
            w[i].n_dims = t->n_dims;
            memcpy(w[i].shape, t->shape, sizeof t->shape);
            w[i].data = t->data;
            o += (size_t)snprintf(index + o, sizeof index - o, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"",
                                  i ? ", " : "", t->name, i < half ? 1 : 2);
        }
        snprintf(index + o, sizeof index - o, "}}");
        tp_fmt(p, "%s/model-00001-of-00002.safetensors", sdir);
        CHECK_STATUS(em_st_write(p, w, half), EM_OK);
        tp_fmt(p, "%s/model-00002-of-00002.safetensors", sdir);
        CHECK_STATUS(em_st_write(p, w + half, n - half), EM_OK);
        tp_write_text(sdir, "model.safetensors.index.json", index);
        tp_write_text(sdir, "config.json", tp_mamba2_config);
        em_st_close(st);
        char out2[4300];
        tp_fmt(out2, "%s/m2s_bf16.emb", tmp);
        em_blob b1, b2;
        pack_and_verify("mamba2 sharded", sdir, out2, EM_DTYPE_BF16, "backbone.", "embeddings", 3 + 2 * 9, &b2);
        memset(&b1, 0, sizeof b1);
        CHECK_STATUS(em_blob_open_file(out, NULL, &b1), EM_OK);
        CHECK(b1.n_tensors == b2.n_tensors);
        for (uint32_t i = 0; i < b1.n_tensors && i < b2.n_tensors; i++)
            CHECK_MSG(b1.tensors[i].checksum == b2.tensors[i].checksum &&
                      !strcmp(b1.tensors[i].name, b2.tensors[i].name), "sharded tensor %s differs", b2.tensors[i].name);
        em_blob_close(&b1);
        em_blob_close(&b2);
    }
}

/* NemotronH hybrid "M*-" with model.* names, the "embedding" spelling and no lm_head (-> tied). */
static void test_nemotron_hybrid(const char *tmp) {
    char dir[4200], out[4300], p[4400];
    tp_fmt(dir, "%s/nh", tmp);
    mkdir(dir, 0700);
    tp_ckpt c;
    memset(&c, 0, sizeof c);
    em_rng_seed(&c.rng, 5);
    tp_add(&c, "model.embedding.weight", EM_ST_BF16, 2, TP_V, TP_D, 0, 1.0f);
    tp_add_mamba_layer(&c, "model.", 0, 0);
    tp_add(&c, "model.layers.1.norm.weight", EM_ST_F32, 1, TP_D, 0, 0, 1.0f);
    tp_add(&c, "model.layers.1.mixer.q_proj.weight", EM_ST_F32, 2, 16, TP_D, 0, 0.3f);
    tp_add(&c, "model.layers.1.mixer.k_proj.weight", EM_ST_BF16, 2, 8, TP_D, 0, 0.3f);
    tp_add(&c, "model.layers.1.mixer.v_proj.weight", EM_ST_F16, 2, 8, TP_D, 0, 0.3f);
    tp_add(&c, "model.layers.1.mixer.o_proj.weight", EM_ST_F32, 2, TP_D, 16, 0, 0.3f);
    tp_add(&c, "model.layers.2.norm.weight", EM_ST_F32, 1, TP_D, 0, 0, 1.0f);
    tp_add(&c, "model.layers.2.mixer.up_proj.weight", EM_ST_F32, 2, 24, TP_D, 0, 0.3f);
    tp_add(&c, "model.layers.2.mixer.down_proj.weight", EM_ST_F32, 2, TP_D, 24, 0, 0.3f);
    tp_add(&c, "model.norm_f.weight", EM_ST_F32, 1, TP_D, 0, 0, 1.0f);
    tp_fmt(p, "%s/model.safetensors", dir);
    CHECK_STATUS(em_st_write(p, c.t, c.n), EM_OK);
    tp_free(&c);
    tp_write_text(dir, "config.json",
        "{\"model_type\": \"nemotron_h\", \"hidden_size\": 16, \"vocab_size\": 40, \"ssm_state_size\": 8,\n"
        " \"mamba_num_heads\": 4, \"mamba_head_dim\": 8, \"n_groups\": 2, \"expand\": 2, \"conv_kernel\": 4,\n"
        " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 4, \"intermediate_size\": 24,\n"
        " \"mlp_hidden_act\": \"relu2\", \"layers_block_type\": [\"linear_attention\", \"full_attention\", \"mlp\"],\n"
        " \"tie_word_embeddings\": false, \"layer_norm_epsilon\": 1e-6, \"time_step_limit\": [0.0, Infinity]}");
    tp_fmt(out, "%s/nh_bf16.emb", tmp);
    em_blob b;
    pack_and_verify("nemotron_h hybrid", dir, out, EM_DTYPE_BF16, "model.", "embedding", 2 + 9 + 5 + 3, &b);
    const em_blob_config *cf = &b.config;
    CHECK(cf->arch == EM_ARCH_HYBRID && cf->n_layer == 3 && !memcmp(cf->layer_pattern.ptr, "M*-", 3));
    CHECK(cf->flags & EM_CFG_TIED_EMBEDDINGS);
    CHECK(em_blob_find(&b, "head") < 0);
    CHECK(cf->attn_n_head == 4 && cf->attn_n_kv_head == 2 && cf->attn_head_dim == 4 && cf->d_ff == 24);
    CHECK(cf->mlp_act == EM_ACT_RELU2 && cf->gated_norm_group == TP_DI / TP_G && cf->norm_eps == 1e-6f);
    CHECK(cf->tokenizer_kind == EM_TOK_NONE && b.tokenizer_size == 0);
    em_blob_close(&b);
}

/* Errors: the message names the file and the tensor; no output (or temporary) file is left behind. */
static void test_errors(const char *tmp) {
    char dir[4200], out[4300], tmpout[4400], p[4400];
    tp_fmt(dir, "%s/bad", tmp);
    mkdir(dir, 0700);
    tp_fmt(out, "%s/bad.emb", tmp);
    tp_fmt(tmpout, "%s.tmp", out);

    /* (c) a wrong shape */
    tp_make_mamba2(dir, 1, 3);
    CHECK_STATUS(em_pack_checkpoint(dir, out, NULL, NULL), EM_ERR_FORMAT);
    const char *want = "/model.safetensors: tensor backbone.layers.1.mixer.in_proj.weight has shape [10, 16], "
                       "expected [100, 16]";
    CHECK_MSG(strstr(em_last_error(), want) != NULL, "message: %s", em_last_error());
    CHECK(!tp_exists(out) && !tp_exists(tmpout));

    /* a missing tensor, and a tensor of an integer dtype */
    tp_ckpt c;
    memset(&c, 0, sizeof c);
    em_rng_seed(&c.rng, 9);
    tp_add(&c, "backbone.embeddings.weight", EM_ST_F32, 2, TP_V, TP_D, 0, 1.0f);
    tp_add_mamba_layer(&c, "backbone.", 0, 0);
    tp_add_mamba_layer(&c, "backbone.", 1, 0);
    tp_add(&c, "backbone.norm_f.weight", EM_ST_F32, 1, TP_D, 0, 0, 1.0f);
    tp_fmt(p, "%s/model.safetensors", dir);
    CHECK_STATUS(em_st_write(p, c.t, c.n - 1), EM_OK);           /* without norm_f */
    CHECK_STATUS(em_pack_checkpoint(dir, out, NULL, NULL), EM_ERR_NOT_FOUND);
    CHECK_MSG(strstr(em_last_error(), "backbone.norm_f.weight") != NULL, "message: %s", em_last_error());
    CHECK(!tp_exists(out) && !tp_exists(tmpout));
    for (size_t i = 0; i < c.n; i++)
        if (!strcmp(c.t[i].name, "backbone.layers.1.mixer.dt_bias")) c.t[i].dtype = EM_ST_I32;   /* F32: same size */
    CHECK_STATUS(em_st_write(p, c.t, c.n), EM_OK);
    CHECK_STATUS(em_pack_checkpoint(dir, out, NULL, NULL), EM_ERR_FORMAT);
    CHECK_MSG(strstr(em_last_error(), "backbone.layers.1.mixer.dt_bias has dtype I32") != NULL, "message: %s",
              em_last_error());
    tp_free(&c);

    /* an unsupported feature, a missing config, a bad dtype option */
    tp_write_text(dir, "config.json", "{\"model_type\": \"mamba2\", \"hidden_size\": 16, \"num_hidden_layers\": 2, "
                  "\"vocab_size\": 40, \"state_size\": 8, \"num_heads\": 4, \"head_dim\": 8, \"n_groups\": 2, "
                  "\"use_bias\": true}");
    CHECK_STATUS(em_pack_checkpoint(dir, out, NULL, NULL), EM_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(em_last_error(), "use_bias") != NULL, "message: %s", em_last_error());
    tp_fmt(p, "%s/config.json", dir);
    unlink(p);
    CHECK_STATUS(em_pack_checkpoint(dir, out, NULL, NULL), EM_ERR_NOT_FOUND);
    CHECK_MSG(strstr(em_last_error(), "config.json") != NULL, "message: %s", em_last_error());
    em_pack_options o = em_pack_default_options();
    o.dtype = EM_DTYPE_I32; /* not a pack dtype (bf16, f32, i8 are) */
    CHECK_STATUS(em_pack_checkpoint(dir, out, &o, NULL), EM_ERR_INVALID_ARG);
    CHECK(!tp_exists(out) && !tp_exists(tmpout));
}

/* An unknown extra tensor packs, with a warning and n_unused counted. */
static void test_extra_tensor(const char *tmp) {
    char dir[4200], out[4300], p[4400];
    tp_fmt(dir, "%s/extra", tmp);
    mkdir(dir, 0700);
    tp_ckpt c;
    memset(&c, 0, sizeof c);
    em_rng_seed(&c.rng, 21);
    tp_add(&c, "backbone.embeddings.weight", EM_ST_F32, 2, TP_V, TP_D, 0, 1.0f);
    tp_add_mamba_layer(&c, "backbone.", 0, 0);
    tp_add_mamba_layer(&c, "backbone.", 1, 0);
    tp_add(&c, "backbone.norm_f.weight", EM_ST_F32, 1, TP_D, 0, 0, 1.0f);
    tp_add(&c, "backbone.layers.0.mixer.surprise", EM_ST_F32, 1, 3, 0, 0, 1.0f);
    tp_fmt(p, "%s/model.safetensors", dir);
    CHECK_STATUS(em_st_write(p, c.t, c.n), EM_OK);
    tp_free(&c);
    tp_write_text(dir, "config.json", tp_mamba2_config);
    tp_fmt(out, "%s/extra.emb", tmp);
    em_pack_stats stats;
    em_log_set(NULL, NULL, EM_LOG_ERROR);   /* the expected warning would only clutter the test log */
    CHECK_STATUS(em_pack_checkpoint(p, out, NULL, &stats), EM_OK);
    em_log_set(NULL, NULL, EM_LOG_WARN);
    CHECK(stats.n_unused == 1 && stats.n_tensors == 2 + 2 * 9);   /* no lm_head: tied */
}

/* The committed HF fixtures, when the golden generator has produced them. */
static void test_fixtures(const char *tmp) {
    static const char *const fx[] = {"mamba2_tiny", "nemotronh_mmm"};
    for (size_t i = 0; i < 2; i++) {
        char dir[4096], cfg[4200], out[4300], label[128];
        tp_fmt(dir, "%s", em_test_data(fx[i]));
        tp_fmt(cfg, "%s/config.json", dir);
        if (!tp_exists(cfg)) { printf("  (fixture %s absent: skipped)\n", fx[i]); continue; }
        for (int k = 0; k < 2; k++) {
            em_dtype dt = k ? EM_DTYPE_BF16 : EM_DTYPE_F32;
            tp_fmt(out, "%s/%s_%s.emb", tmp, fx[i], em_dtype_name(dt));
            tp_fmt(label, "%s %s", fx[i], em_dtype_name(dt));
            em_blob b;
            pack_and_verify(label, dir, out, dt, "backbone.", "embeddings", 3 + 3 * 9, &b);
            CHECK(b.config.arch == EM_ARCH_MAMBA2 && b.config.n_layer == 3 && b.config.gated_norm_group == 64);
            CHECK(b.config.d_inner == 128 && b.config.ssm_n_group == 2 && b.config.vocab_size == 512);
            em_blob_close(&b);
        }
    }
}

int main(void) {
    char tmp[4096];
    tp_mkdtemp(tmp, sizeof tmp, "pack");
    test_mamba2(tmp);
    test_nemotron_hybrid(tmp);
    test_errors(tmp);
    test_extra_tensor(tmp);
    test_fixtures(tmp);
    /* sub-directories first, then the top */
    static const char *const subs[] = {"m2", "m2s", "nh", "bad", "extra"};
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        char d[4200];
        tp_fmt(d, "%s/%s", tmp, subs[i]);
        tp_rm_rf(d);
    }
    tp_rm_rf(tmp);
    return em_test_finish("test_pack");
}
