/*
 * test_pack_random.c — em-pack --random-init through its library (em_pack_random): a small Mamba-2 and a
 * small NemotronH hybrid config give valid blobs with the requested dims, every tensor of the tensors.h
 * tables in the right dtype, the documented distributions (A in [-16, -1], softplus(dt_bias) in
 * [1e-3, 1e-1], D and norms 1, matrices std 1/sqrt(fan_in), embedding std 0.02), the same bytes for the
 * same seed and different bytes for another; and the generator gives the same values however the range is
 * chunked.
 *
 * Run: ctest -R test_pack_random (label blob).
 */
#include <math.h>

#include "blob.h"
#include "pack.h"
#include "randinit.h"
#include "tensors.h"
#include "test_pack_common.c"

static float elem(const em_blob *b, const em_blob_tensor *t, uint64_t i) {
    const uint8_t *p = b->data + t->offset;
    if (t->dtype == EM_DTYPE_BF16) return em_bf16_to_f32(em_ld16(p + 2 * i));
    float f;
    memcpy(&f, p + 4 * i, 4);
    return f;
}

/* min, max, mean and std of a blob tensor. */
static void stats(const em_blob *b, const char *name, double *mn, double *mx, double *mean, double *sd) {
    int k = em_blob_find(b, name);
    CHECK_MSG(k >= 0, "tensor %s missing", name);
    *mn = INFINITY; *mx = -INFINITY; *mean = 0; *sd = 0;
    if (k < 0) return;
    const em_blob_tensor *t = &b->tensors[k];
    uint64_t n = t->size / em_dtype_size(t->dtype);
    double s = 0, s2 = 0;
    for (uint64_t i = 0; i < n; i++) {
        double v = elem(b, t, i);
        if (v < *mn) *mn = v;
        if (v > *mx) *mx = v;
        s += v;
        s2 += v * v;
    }
    *mean = s / (double)n;
    *sd = sqrt(fmax(0.0, s2 / (double)n - *mean * *mean));
}

static const char *mamba2_cfg =
    "{\"model_type\": \"mamba2\", \"hidden_size\": 64, \"num_hidden_layers\": 3, \"vocab_size\": 300,\n"
    " \"state_size\": 16, \"num_heads\": 8, \"head_dim\": 16, \"n_groups\": 2, \"expand\": 2, \"conv_kernel\": 4,\n"
    " \"time_step_limit\": [0.0, Infinity]}";

static const char *hybrid_cfg =
    "{\"model_type\": \"nemotron_h\", \"hidden_size\": 64, \"vocab_size\": 300, \"ssm_state_size\": 16,\n"
    " \"mamba_num_heads\": 8, \"mamba_head_dim\": 16, \"n_groups\": 2, \"num_attention_heads\": 4,\n"
    " \"num_key_value_heads\": 2, \"head_dim\": 16, \"intermediate_size\": 96, \"mlp_hidden_act\": \"relu2\",\n"
    " \"hybrid_override_pattern\": \"M*-M\", \"use_conv_bias\": false, \"tie_word_embeddings\": true}";

static void test_mamba2(const char *dir) {
    char cfg[4200], out1[4200], out2[4200], out3[4200], out4[4200];
    tp_write_text(dir, "config.json", mamba2_cfg);
    tp_fmt(cfg, "%s/config.json", dir);
    tp_fmt(out1, "%s/r1.emb", dir);
    tp_fmt(out2, "%s/r2.emb", dir);
    tp_fmt(out3, "%s/r3.emb", dir);
    tp_fmt(out4, "%s/r4.emb", dir);
    em_pack_options o = em_pack_default_options();
    o.seed = 7;
    em_pack_stats st;
    CHECK_STATUS(em_pack_random(cfg, out1, &o, &st), EM_OK);
    CHECK_STATUS(em_pack_random(cfg, out2, &o, NULL), EM_OK);
    o.seed = 8;
    CHECK_STATUS(em_pack_random(cfg, out3, &o, NULL), EM_OK);
    o.seed = 7;
    o.dtype = EM_DTYPE_F32;
    CHECK_STATUS(em_pack_random(cfg, out4, &o, NULL), EM_OK);

    em_blob a, b, c, d;
    memset(&a, 0, sizeof a); memset(&b, 0, sizeof b); memset(&c, 0, sizeof c); memset(&d, 0, sizeof d);
    em_blob_open_options vo = {1};
    CHECK_STATUS(em_blob_open_file(out1, &vo, &a), EM_OK);
    CHECK_STATUS(em_blob_open_file(out2, &vo, &b), EM_OK);
    CHECK_STATUS(em_blob_open_file(out3, &vo, &c), EM_OK);
    CHECK_STATUS(em_blob_open_file(out4, &vo, &d), EM_OK);
    if (!a.n_tensors || !b.n_tensors || !c.n_tensors || !d.n_tensors) return;

    /* dims and the full table */
    const em_blob_config *k = &a.config;
    CHECK(k->arch == EM_ARCH_MAMBA2 && k->n_layer == 3 && k->d_model == 64 && k->vocab_size == 300);
    CHECK(k->d_state == 16 && k->ssm_n_head == 8 && k->ssm_head_dim == 16 && k->ssm_n_group == 2 && k->d_inner == 128);
    CHECK(k->tokenizer_kind == EM_TOK_NONE && a.tokenizer_size == 0);
    CHECK(k->name.len > 7 && !memcmp(k->name.ptr, "random-", 7));
    CHECK(a.n_tensors == 3 + 3 * 9 && st.n_tensors == a.n_tensors);
    int i = em_blob_find(&a, "l2.in_proj");
    CHECK(i >= 0 && a.tensors[i].shape[0] == 328 && a.tensors[i].shape[1] == 64 && a.tensors[i].dtype == EM_DTYPE_BF16);
    i = em_blob_find(&a, "l1.conv_w");
    CHECK(i >= 0 && a.tensors[i].shape[0] == 192 && a.tensors[i].shape[1] == 4 && a.tensors[i].dtype == EM_DTYPE_F32);
    i = em_blob_find(&d, "l2.in_proj");
    CHECK(i >= 0 && d.tensors[i].dtype == EM_DTYPE_F32);

    /* deterministic for a seed; another seed differs; same values in f32 and bf16 (up to the rounding) */
    CHECK(!memcmp(a.content_id, b.content_id, 16));
    for (uint32_t t = 0; t < a.n_tensors; t++) {
        CHECK_MSG(a.tensors[t].checksum == b.tensors[t].checksum, "seed 7 twice: %s differs", a.tensors[t].name);
        const em_blob_tensor *ta = &a.tensors[t], *td = &d.tensors[t];
        uint64_t n = ta->size / em_dtype_size(ta->dtype), bad = 0;
        for (uint64_t e = 0; e < n; e++) {
            float fd = elem(&d, td, e);
            float want = ta->dtype == EM_DTYPE_BF16 ? em_bf16_to_f32(em_f32_to_bf16(fd)) : fd;
            if (elem(&a, ta, e) != want) bad++;
        }
        CHECK_MSG(bad == 0, "bf16 vs f32 blob: %s has %llu values that are not the rounded f32", ta->name,
                  (unsigned long long)bad);
    }
    i = em_blob_find(&a, "l0.in_proj");
    CHECK(i >= 0 && a.tensors[i].checksum != c.tensors[i].checksum);

    /* distributions */
    double mn, mx, mean, sd;
    stats(&a, "l1.A", &mn, &mx, &mean, &sd);
    CHECK_MSG(mn >= -16.0 && mx <= -1.0 && mx - mn > 1.0, "A in [%g, %g]", mn, mx);
    stats(&a, "l0.D", &mn, &mx, &mean, &sd);
    CHECK(mn == 1.0 && mx == 1.0);
    stats(&a, "l2.gnorm", &mn, &mx, &mean, &sd);
    CHECK(mn == 1.0 && mx == 1.0);
    stats(&a, "norm_f", &mn, &mx, &mean, &sd);
    CHECK(mn == 1.0 && mx == 1.0);
    i = em_blob_find(&d, "l0.dt_bias");
    for (uint32_t h = 0; i >= 0 && h < 8; h++) {
        double dt = log1p(exp((double)elem(&d, &d.tensors[i], h)));   /* softplus */
        CHECK_MSG(dt >= 0.99e-3 && dt <= 1.01e-1, "softplus(dt_bias[%u]) = %g", h, dt);
    }
    stats(&d, "l0.in_proj", &mn, &mx, &mean, &sd);   /* 328 x 64 values, std 1/8 */
    CHECK_MSG(fabs(sd - 0.125) < 0.125 * 0.05 && fabs(mean) < 0.01, "in_proj std %g mean %g", sd, mean);
    stats(&d, "l0.out_proj", &mn, &mx, &mean, &sd);  /* fan_in 128 */
    CHECK_MSG(fabs(sd - 1.0 / sqrt(128.0)) < 0.05 / sqrt(128.0), "out_proj std %g", sd);
    stats(&d, "embd", &mn, &mx, &mean, &sd);
    CHECK_MSG(fabs(sd - 0.02) < 0.001 && mx <= 0.02 * sqrt(3.0) && mn >= -0.02 * sqrt(3.0), "embd std %g", sd);
    stats(&d, "l0.conv_w", &mn, &mx, &mean, &sd);
    CHECK(mn >= -0.5 && mx <= 0.5 && sd > 0.2);
    stats(&d, "l0.conv_b", &mn, &mx, &mean, &sd);
    CHECK(mn >= -0.02 && mx <= 0.02);
    em_blob_close(&a); em_blob_close(&b); em_blob_close(&c); em_blob_close(&d);
    unlink(out1); unlink(out2); unlink(out3); unlink(out4);
}

static void test_hybrid(const char *dir) {
    char cfg[4200], out[4200];
    tp_write_text(dir, "config.json", hybrid_cfg);
    tp_fmt(cfg, "%s/config.json", dir);
    tp_fmt(out, "%s/h.emb", dir);
    CHECK_STATUS(em_pack_random(cfg, out, NULL, NULL), EM_OK);
    em_blob b;
    memset(&b, 0, sizeof b);
    em_blob_open_options vo = {1};
    CHECK_STATUS(em_blob_open_file(out, &vo, &b), EM_OK);
    const em_blob_config *c = &b.config;
    CHECK(c->arch == EM_ARCH_HYBRID && c->n_layer == 4 && !memcmp(c->layer_pattern.ptr, "M*-M", 4));
    CHECK((c->flags & EM_CFG_TIED_EMBEDDINGS) && !(c->flags & EM_CFG_CONV_BIAS));
    /* no head (tied), no conv_b (use_conv_bias false): 2 globals + 2 x 8 Mamba + 5 attention + 3 MLP */
    CHECK_MSG(b.n_tensors == 2 + 2 * 8 + 5 + 3, "%u tensors", b.n_tensors);
    CHECK(em_blob_find(&b, "head") < 0 && em_blob_find(&b, "l0.conv_b") < 0);
    int i = em_blob_find(&b, "l1.wk");
    CHECK(i >= 0 && b.tensors[i].shape[0] == 32 && b.tensors[i].shape[1] == 64);
    i = em_blob_find(&b, "l2.down");
    CHECK(i >= 0 && b.tensors[i].shape[0] == 64 && b.tensors[i].shape[1] == 96);
    double mn, mx, mean, sd;
    stats(&b, "l2.down", &mn, &mx, &mean, &sd);   /* fan_in 96 */
    CHECK_MSG(fabs(sd - 1.0 / sqrt(96.0)) < 0.06 / sqrt(96.0), "down std %g", sd);
    em_blob_close(&b);
    unlink(out);

    /* errors: a config that is not one, and a bad output path (no file is left) */
    tp_write_text(dir, "bad.json", "{\"model_type\": \"mamba2\"}");
    tp_fmt(cfg, "%s/bad.json", dir);
    CHECK_STATUS(em_pack_random(cfg, out, NULL, NULL), EM_ERR_FORMAT);
    CHECK(!tp_exists(out));
    tp_fmt(cfg, "%s/config.json", dir);
    CHECK(em_pack_random(cfg, "/nonexistent-dir/x.emb", NULL, NULL) != EM_OK);
}

/* The generator: chunking does not change values; every rule stays in its range. */
static void test_generator(void) {
    enum { N = 10001 };
    static float whole[N], parts[N];
    uint64_t shape[2] = {100, 100};
    const char *fields[] = {"in_proj", "dt_bias", "A", "embd", "norm"};
    for (size_t f = 0; f < 5; f++) {
        em_ri_rule r = em_ri_rule_for(fields[f], 2, shape, 4);
        uint64_t key = em_ri_key(3, (uint32_t)f);
        em_ri_fill(&r, key, 0, N, EM_DTYPE_F32, whole);
        em_ri_fill(&r, key, 0, 4096, EM_DTYPE_F32, parts);
        em_ri_fill(&r, key, 4096, 2, EM_DTYPE_F32, parts + 4096);
        em_ri_fill(&r, key, 4098, N - 4098, EM_DTYPE_F32, parts + 4098);
        CHECK_MSG(!memcmp(whole, parts, sizeof whole), "%s: chunked values differ", fields[f]);
    }
    CHECK(em_ri_key(3, 0) != em_ri_key(3, 1) && em_ri_key(3, 0) != em_ri_key(4, 0));
}

int main(void) {
    char dir[4096];
    tp_mkdtemp(dir, sizeof dir, "rand");
    test_mamba2(dir);
    test_hybrid(dir);
    test_generator();
    tp_rm_rf(dir);
    return em_test_finish("test_pack_random");
}
