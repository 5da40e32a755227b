/*
 * test_ref_attn_mlp.c — the attention and MLP twins (kernels/ref/attention_ref.c, mlp_ref.c) against
 * independent double-precision forms, case by case (STYLE.md lesson 8):
 *   attention: the whole sequence's softmax(q k^T * scale) v, causal, GQA (query head h -> KV head
 *     h / (Hq/Hkv)), RoPE rotate-half on a fraction of the dims with angles in double; the twin is fed the same
 *     sequence chunk by chunk through its KV cache (prefill chunks and decode steps), with padded row strides;
 *     its outputs, and the K/V it leaves in the cache, must match; the cache past the written rows must be
 *     untouched; the chunking must not change a bit.
 *   MLP: down(act(up(x))) with GELU (erf), relu2 and SiLU, f32 and bf16 weights.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "ops.h"
#include "testutil.h"
#include "util.h"

// ---- attention ------------------------------------------------------------------------------------------

typedef struct attn_case {
    const char *name;
    uint32_t Hq, Hkv, hd, n;   /* heads, KV heads, head dim, sequence length */
    uint32_t chunk;            /* tokens per call (1 = decode steps) */
    uint32_t rope_dims;        /* 0 = no position embedding */
    float rope_base;
    uint32_t pad;              /* extra elements per token row of q, k/v and out (strides) */
} attn_case;

static const attn_case attn_cases[] = {
    { "hybrid 8B heads (32/8 x 128), one chunk", 32, 8, 128, 40, 40, 0, 0.0f, 0 },
    { "hybrid 8B heads, decode steps", 32, 8, 128, 12, 1, 0, 0.0f, 0 },
    { "gelu fixture (4/2 x 16), chunk 16", 4, 2, 16, 40, 16, 0, 0.0f, 3 },
    { "relu2 fixture (6/2 x 24), chunk 7", 6, 2, 24, 40, 7, 0, 0.0f, 0 },
    { "MHA 4/4, odd head dim 13", 4, 4, 13, 20, 5, 0, 0.0f, 1 },
    { "MQA 8/1, 150 tokens (3 key blocks)", 8, 1, 16, 150, 64, 0, 0.0f, 0 },
    { "single head, decode across a key block", 1, 1, 8, 130, 1, 0, 0.0f, 0 },
    { "RoPE half of 32 dims, base 1e4, chunk 9", 4, 4, 32, 50, 9, 16, 10000.0f, 2 },
    { "RoPE all dims, base 500, GQA", 4, 2, 16, 30, 30, 16, 500.0f, 0 },
    { "Transformer baseline (32 x 128, RoPE 64)", 32, 32, 128, 16, 16, 64, 10000.0f, 0 },
    { "RoPE at positions up to 1100", 2, 1, 16, 1100, 256, 8, 10000.0f, 0 },
};

/* rotate-half in double at absolute position p, on dims [0, rd) of one head */
static void rope_d(double *x, uint32_t rd, double base, uint64_t p) {
    for (uint32_t i = 0; i < rd / 2; i++) {
        double th = (double)p * pow(base, -2.0 * i / rd);
        double x1 = x[i], x2 = x[i + rd / 2];
        x[i] = x1 * cos(th) - x2 * sin(th);
        x[i + rd / 2] = x2 * cos(th) + x1 * sin(th);
    }
}

/* out [n, Hq, hd] in double from dense q [n, Hq, hd], k, v [n, Hkv, hd] */
static void attn_ref_double(const attn_case *c, const float *q, const float *k, const float *v, double *out,
                            double *kr) {
    const uint32_t n = c->n, Hq = c->Hq, Hkv = c->Hkv, hd = c->hd, rep = Hq / Hkv;
    double *qr = malloc(sizeof(double) * hd), *sc = malloc(sizeof(double) * n);
    for (uint32_t j = 0; j < n; j++) /* keys after RoPE */
        for (uint32_t g = 0; g < Hkv; g++) {
            double *kk = kr + ((size_t)j * Hkv + g) * hd;
            for (uint32_t i = 0; i < hd; i++) kk[i] = k[((size_t)j * Hkv + g) * hd + i];
            rope_d(kk, c->rope_dims, c->rope_base, j);
        }
    const double scale = 1.0 / sqrt((double)hd);
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t h = 0; h < Hq; h++) {
            const uint32_t g = h / rep;
            for (uint32_t i = 0; i < hd; i++) qr[i] = q[((size_t)t * Hq + h) * hd + i];
            rope_d(qr, c->rope_dims, c->rope_base, t);
            double mx = -INFINITY, sum = 0;
            for (uint32_t j = 0; j <= t; j++) {
                double s = 0;
                for (uint32_t i = 0; i < hd; i++) s += qr[i] * kr[((size_t)j * Hkv + g) * hd + i];
                sc[j] = s * scale;
                if (sc[j] > mx) mx = sc[j];
            }
            for (uint32_t j = 0; j <= t; j++) { sc[j] = exp(sc[j] - mx); sum += sc[j]; }
            double *o = out + ((size_t)t * Hq + h) * hd;
            for (uint32_t i = 0; i < hd; i++) o[i] = 0;
            for (uint32_t j = 0; j <= t; j++)
                for (uint32_t i = 0; i < hd; i++) o[i] += sc[j] / sum * v[((size_t)j * Hkv + g) * hd + i];
        }
    free(qr);
    free(sc);
}

/* Runs the twin over the sequence in chunks; returns the outputs [n, Hq, hd] (dense) and leaves the cache. */
static float *attn_run(const attn_case *c, uint32_t chunk, const float *q, const float *k, const float *v,
                       float *kc, float *vc, uint32_t max_ctx) {
    const uint32_t Hq = c->Hq, Hkv = c->Hkv, hd = c->hd, dq = Hq * hd, dkv = Hkv * hd;
    const uint32_t qs = dq + c->pad, kvs = dkv + c->pad, os = dq + c->pad;
    float *out = malloc(sizeof(float) * c->n * dq);
    float *qb = malloc(sizeof(float) * chunk * qs), *kb = malloc(sizeof(float) * chunk * kvs);
    float *vb = malloc(sizeof(float) * chunk * kvs), *ob = malloc(sizeof(float) * chunk * os);
    for (uint32_t p = 0; p < c->n; p += chunk) {
        const uint32_t nt = c->n - p < chunk ? c->n - p : chunk;
        em_poison(qb, (size_t)chunk * qs);
        em_poison(ob, (size_t)chunk * os);
        for (uint32_t t = 0; t < nt; t++) {
            memcpy(qb + (size_t)t * qs, q + (size_t)(p + t) * dq, sizeof(float) * dq);
            memcpy(kb + (size_t)t * kvs, k + (size_t)(p + t) * dkv, sizeof(float) * dkv);
            memcpy(vb + (size_t)t * kvs, v + (size_t)(p + t) * dkv, sizeof(float) * dkv);
        }
        em_attn_args a = { .q = qb, .k = kb, .v = vb, .k_cache = kc, .v_cache = vc, .out = ob, .n_tok = nt,
                           .n_head = Hq, .n_kv_head = Hkv, .head_dim = hd, .pos = p, .max_ctx = max_ctx,
                           .q_stride = qs, .kv_stride = kvs, .out_stride = os, .rope_dims = c->rope_dims,
                           .rope_base = c->rope_base, .scale = (float)(1.0 / sqrt((double)hd)) };
        em_ref_attention(&a);
        for (uint32_t t = 0; t < nt; t++) memcpy(out + (size_t)(p + t) * dq, ob + (size_t)t * os, sizeof(float) * dq);
    }
    free(qb); free(kb); free(vb); free(ob);
    return out;
}

static void to_float(const double *d, float *f, size_t n) { for (size_t i = 0; i < n; i++) f[i] = (float)d[i]; }

static void test_attention(void) {
    em_rng r;
    em_rng_seed(&r, 11);
    for (size_t ci = 0; ci < sizeof attn_cases / sizeof attn_cases[0]; ci++) {
        const attn_case *c = &attn_cases[ci];
        const uint32_t n = c->n, dq = c->Hq * c->hd, dkv = c->Hkv * c->hd, max_ctx = n + 5;
        float *q = malloc(sizeof(float) * n * dq), *k = malloc(sizeof(float) * n * dkv);
        float *v = malloc(sizeof(float) * n * dkv);
        /* scores of std ~2 after scaling: softmax neither flat nor one-hot */
        em_fill_uniform(&r, q, (size_t)n * dq, 2.5f);
        em_fill_uniform(&r, k, (size_t)n * dkv, 2.5f);
        em_fill_uniform(&r, v, (size_t)n * dkv, 1.0f);
        double *ref = malloc(sizeof(double) * n * dq), *kref = malloc(sizeof(double) * n * dkv);
        attn_ref_double(c, q, k, v, ref, kref);
        float *reff = malloc(sizeof(float) * n * dq), *kreff = malloc(sizeof(float) * n * dkv);
        to_float(ref, reff, (size_t)n * dq);
        to_float(kref, kreff, (size_t)n * dkv);

        float *kc = malloc(sizeof(float) * max_ctx * dkv), *vc = malloc(sizeof(float) * max_ctx * dkv);
        em_poison(kc, (size_t)max_ctx * dkv);
        em_poison(vc, (size_t)max_ctx * dkv);
        float *got = attn_run(c, c->chunk, q, k, v, kc, vc, max_ctx);
        char label[160];
        snprintf(label, sizeof label, "attention %s: output", c->name);
        em_check_close(label, got, reff, (size_t)n * dq, 1e-5);
        snprintf(label, sizeof label, "attention %s: K cache", c->name);
        em_check_close(label, kc, kreff, (size_t)n * dkv, c->rope_dims ? 1e-6 : 0.0);
        snprintf(label, sizeof label, "attention %s: V cache", c->name);
        em_check_close(label, vc, v, (size_t)n * dkv, 0.0);
        int untouched = 1; /* rows [n, max_ctx) are never written */
        for (size_t i = (size_t)n * dkv; i < (size_t)max_ctx * dkv; i++) untouched &= isnan(kc[i]) && isnan(vc[i]);
        CHECK_MSG(untouched, "%s: the cache past row %u was written", c->name, n);

        /* chunking changes no bit: the whole sequence at once (a fresh cache) */
        float *kc2 = malloc(sizeof(float) * max_ctx * dkv), *vc2 = malloc(sizeof(float) * max_ctx * dkv);
        float *once = attn_run(c, n, q, k, v, kc2, vc2, max_ctx);
        snprintf(label, sizeof label, "attention %s: chunk %u vs one call", c->name, c->chunk);
        em_check_close(label, got, once, (size_t)n * dq, 0.0);

        /* not trivial: the outputs differ from a uniform average over the keys somewhere */
        double spread = 0;
        for (size_t i = 0; i < (size_t)n * dq; i++) spread = fmax(spread, fabs(ref[i]));
        CHECK_MSG(spread > 0.1, "%s: outputs too small (%g)", c->name, spread);

        free(q); free(k); free(v); free(ref); free(kref); free(reff); free(kreff);
        free(kc); free(vc); free(got); free(kc2); free(vc2); free(once);
    }
}

// ---- MLP -------------------------------------------------------------------------------------------------

typedef struct mlp_case {
    const char *name;
    uint32_t n_tok, d, ff, act;
    em_dtype dt;
} mlp_case;

static const mlp_case mlp_cases[] = {
    { "gelu fixture (64 -> 128), prefill", 40, 64, 128, EM_ACT_GELU, EM_DTYPE_F32 },
    { "relu2 fixture (64 -> 192), decode", 1, 64, 192, EM_ACT_RELU2, EM_DTYPE_F32 },
    { "gelu bf16 weights, 512 -> 2048", 3, 512, 2048, EM_ACT_GELU, EM_DTYPE_BF16 },
    { "relu2 bf16 weights, odd dims 37 -> 101", 5, 37, 101, EM_ACT_RELU2, EM_DTYPE_BF16 },
    { "silu (non-gated), 64 -> 96", 4, 64, 96, EM_ACT_SILU, EM_DTYPE_F32 },
};

static double act_d(uint32_t act, double x) {
    switch (act) {
    case EM_ACT_GELU: return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case EM_ACT_RELU2: return x > 0 ? x * x : 0.0;
    default: return x / (1.0 + exp(-x));
    }
}

/* random weights in the case's dtype; *wd gets the exact values as doubles */
static void *make_w(em_rng *r, em_dtype dt, size_t n, float scale, double *wd) {
    float *f = malloc(sizeof(float) * n);
    em_fill_uniform(r, f, n, scale);
    if (dt == EM_DTYPE_F32) {
        for (size_t i = 0; i < n; i++) wd[i] = f[i];
        return f;
    }
    uint16_t *b = malloc(sizeof(uint16_t) * n);
    for (size_t i = 0; i < n; i++) { b[i] = em_f32_to_bf16(f[i]); wd[i] = em_bf16_to_f32(b[i]); }
    free(f);
    return b;
}

static void test_mlp(void) {
    em_rng r;
    em_rng_seed(&r, 12);
    for (size_t ci = 0; ci < sizeof mlp_cases / sizeof mlp_cases[0]; ci++) {
        const mlp_case *c = &mlp_cases[ci];
        const size_t nt = c->n_tok, d = c->d, ff = c->ff;
        double *ud = malloc(sizeof(double) * ff * d), *dd = malloc(sizeof(double) * d * ff);
        void *up = make_w(&r, c->dt, ff * d, 1.7f / sqrtf((float)d), ud);
        void *down = make_w(&r, c->dt, d * ff, 1.7f / sqrtf((float)ff), dd);
        float *x = malloc(sizeof(float) * nt * d), *h = malloc(sizeof(float) * nt * ff);
        float *y = malloc(sizeof(float) * nt * d), *ref = malloc(sizeof(float) * nt * d);
        em_fill_uniform(&r, x, nt * d, 1.7f);
        double *hd = malloc(sizeof(double) * ff);
        for (size_t t = 0; t < nt; t++) {
            for (size_t o = 0; o < ff; o++) {
                double s = 0;
                for (size_t i = 0; i < d; i++) s += ud[o * d + i] * x[t * d + i];
                hd[o] = act_d(c->act, s);
            }
            for (size_t o = 0; o < d; o++) {
                double s = 0;
                for (size_t i = 0; i < ff; i++) s += dd[o * ff + i] * hd[i];
                ref[t * d + o] = (float)s;
            }
        }
        em_poison(h, nt * ff);
        em_poison(y, nt * d);
        em_mlp_args a = { .up = up, .up_dtype = c->dt, .down = down, .down_dtype = c->dt, .x = x, .h = h, .y = y,
                          .n_tok = (uint32_t)nt, .d = (uint32_t)d, .d_ff = (uint32_t)ff, .act = c->act };
        em_ref_mlp(&a);
        char label[128];
        snprintf(label, sizeof label, "mlp %s", c->name);
        em_check_close(label, y, ref, nt * d, 1e-5);
        free(ud); free(dd); free(up); free(down); free(x); free(h); free(y); free(ref); free(hd);
    }
    /* the activations at a few exact points (GELU(0) = 0, GELU(1) = 0.8413447, relu2(-2) = 0, relu2(3) = 9) */
    float one = 1.0f, w1 = 1.0f, xin[4] = { 0.0f, 1.0f, -2.0f, 3.0f }, hh[4], yy[4];
    const float gelu_want[4] = { 0.0f, 0.84134475f, -0.04550026f, 2.99595031f }, relu2_want[4] = { 0, 1, 0, 9 };
    for (int act = EM_ACT_GELU; act <= EM_ACT_RELU2; act++) {
        em_mlp_args a = { .up = &w1, .up_dtype = EM_DTYPE_F32, .down = &one, .down_dtype = EM_DTYPE_F32, .x = xin,
                          .h = hh, .y = yy, .n_tok = 4, .d = 1, .d_ff = 1, .act = (uint32_t)act };
        em_ref_mlp(&a);
        const float *want = act == EM_ACT_GELU ? gelu_want : relu2_want;
        em_check_close(act == EM_ACT_GELU ? "gelu points" : "relu2 points", yy, want, 4, 1e-6);
    }
}

int main(void) {
    test_attention();
    test_mlp();
    return em_test_finish("test_ref_attn_mlp");
}
