/*
 * test_ref_ops.c — proves the float32 C twins in kernels/ref/ (linear, rmsnorm, gated norm, embed, argmax,
 * conv1d, ssm) against independent formulations written here in double precision, with straightforward loops
 * arranged differently from the twins: the conv reads an explicitly materialised left-padded input, the scan is
 * checked against its closed form h_t = exp(A sum dt) h_0 + sum_s exp(A sum_{s<r<=t} dt_r) dt_s x_s B_s.
 * Every case is one line of a table naming the model shape or edge case it stands for (STYLE.md lesson 8);
 * inputs are fresh seeded random values, outputs are poisoned with NaN first, and results are checked by max
 * error relative to max |ref| (1e-5 for fp32). Recurrent ops are also checked chained: one multi-token call
 * must equal single-token calls through the state (bit-exact for conv, 1e-6 for ssm).
 *
 *   ctest -L unit                              # runs it (label unit)
 *   build-ref/tests/test_ref_ops               # the same, directly
 *   build-ref/tests/test_ref_ops --perf [T]    # times em_ref_linear, 4096x4096 BF16, 1 token: ms and GB/s
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ops.h"
#include "testutil.h"
#include "util.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define TOL_F32 1e-5   /* fp32 twin vs double truth, relative to max |ref| */
#define TOL_CHAIN 1e-6 /* ssm: one multi-token call vs chained single steps */
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

// ---- helpers ------------------------------------------------------------------------------------------

static float *fbuf(size_t n) {
    float *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) abort();
    return p;
}
static double *dbuf(size_t n) {
    double *p = calloc(n ? n : 1, sizeof *p);
    if (!p) abort();
    return p;
}
static float *fdup(const float *src, size_t n) {
    float *p = fbuf(n);
    memcpy(p, src, n * sizeof *p);
    return p;
}
/* uniform in [lo, hi) */
static float uniform_in(em_rng *r, float lo, float hi) {
    return lo + (hi - lo) * 0.5f * (em_rng_uniform(r, 1.0f) + 1.0f);
}

/* dst[rows, cols] (dense) = the leading cols of each row of src (row stride `stride`) */
static void gather(float *dst, const float *src, size_t rows, size_t cols, size_t stride) {
    for (size_t i = 0; i < rows; i++) memcpy(dst + i * cols, src + i * stride, cols * sizeof *dst);
}
/* the op must never write past `cols` in a strided row: those elements were poisoned and must still be NaN */
static void check_pad(const char *label, const float *buf, size_t rows, size_t cols, size_t stride) {
    size_t bad = 0;
    for (size_t i = 0; i < rows; i++)
        for (size_t j = cols; j < stride; j++) bad += !isnan(buf[i * stride + j]);
    CHECK_MSG(bad == 0, "%s: %zu elements written in the row padding", label, bad);
}
static double silu_d(double v) { return v / (1.0 + exp(-v)); }
static double softplus_d(double v) { return v > 20.0 ? v : log1p(exp(v)); }

// ---- linear -------------------------------------------------------------------------------------------

typedef struct lin_case {
    uint32_t n_tok, n_in, n_out, x_stride, y_stride;
    em_dtype dtype;
} lin_case;

static const lin_case lin_cases[] = {
    { .n_tok = 1,  .n_in = 64,   .n_out = 328,  .dtype = EM_DTYPE_BF16 }, // tiny fixture in_proj, decode
    { .n_tok = 40, .n_in = 64,   .n_out = 328,  .dtype = EM_DTYPE_BF16 }, // tiny fixture in_proj, prompt
    { .n_tok = 3,  .n_in = 128,  .n_out = 64,   .dtype = EM_DTYPE_F32  }, // tiny fixture out_proj, f32 weights
    { .n_tok = 1,  .n_in = 256,  .n_out = 392,  .dtype = EM_DTYPE_BF16 }, // 8B-like scaled (H8 P16 N32 G2) in_proj
    { .n_tok = 40, .n_in = 128,  .n_out = 256,  .dtype = EM_DTYPE_BF16 }, // 8B-like scaled out_proj, prompt
    { .n_tok = 1,  .n_in = 64,   .n_out = 1000, .dtype = EM_DTYPE_BF16 }, // lm_head, 1000-word vocab
    { .n_tok = 5,  .n_in = 1100, .n_out = 7,    .dtype = EM_DTYPE_BF16 }, // 3 chunks, n_in%8 tail, partial row block
    { .n_tok = 5,  .n_in = 1100, .n_out = 7,    .dtype = EM_DTYPE_F32  }, // same, f32 weights
    { .n_tok = 2,  .n_in = 3,    .n_out = 1,    .dtype = EM_DTYPE_F32  }, // tail only, one output
    { .n_tok = 3,  .n_in = 64,   .n_out = 328,  .x_stride = 69, .y_stride = 331, .dtype = EM_DTYPE_BF16 }, // strides
    { .n_tok = 2,  .n_in = 4096, .n_out = 33,   .dtype = EM_DTYPE_BF16 }, // 8B d_model rows, 8 chunks
};

static void test_linear(em_rng *rng) {
    for (size_t ci = 0; ci < LEN(lin_cases); ci++) {
        const lin_case *c = &lin_cases[ci];
        const size_t xs = c->x_stride ? c->x_stride : c->n_in, ys = c->y_stride ? c->y_stride : c->n_out;
        const size_t nw = (size_t)c->n_out * c->n_in;
        char label[160];
        snprintf(label, sizeof label, "linear[%zu] n_tok=%u n_in=%u n_out=%u %s xs=%zu ys=%zu", ci, c->n_tok, c->n_in,
                 c->n_out, c->dtype == EM_DTYPE_BF16 ? "bf16" : "f32", xs, ys);

        float *wf = fbuf(nw), *x = fbuf(c->n_tok * xs), *y = fbuf(c->n_tok * ys), *y1 = fbuf(c->n_tok * ys);
        uint16_t *wb = malloc(nw * sizeof *wb);
        float *got = fbuf((size_t)c->n_tok * c->n_out), *ref = fbuf((size_t)c->n_tok * c->n_out);
        if (!wb) abort();
        em_fill_uniform(rng, wf, nw, 1.0f);
        em_fill_uniform(rng, x, c->n_tok * xs, 1.0f);
        if (c->dtype == EM_DTYPE_BF16) /* the truth uses the rounded weights the op actually sees */
            for (size_t i = 0; i < nw; i++) { wb[i] = em_f32_to_bf16(wf[i]); wf[i] = em_bf16_to_f32(wb[i]); }

        // truth: one double dot per output, tokens outermost
        for (uint32_t t = 0; t < c->n_tok; t++)
            for (uint32_t r = 0; r < c->n_out; r++) {
                double s = 0;
                for (uint32_t i = 0; i < c->n_in; i++) s += (double)wf[(size_t)r * c->n_in + i] * x[t * xs + i];
                ref[(size_t)t * c->n_out + r] = (float)s;
            }

        em_linear_args a = { .w = c->dtype == EM_DTYPE_BF16 ? (const void *)wb : (const void *)wf,
                             .w_dtype = c->dtype, .x = x, .y = y, .n_tok = c->n_tok, .n_in = c->n_in,
                             .n_out = c->n_out, .x_stride = c->x_stride, .y_stride = c->y_stride };
        em_poison(y, c->n_tok * ys);
        em_ref_linear(&a);
        gather(got, y, c->n_tok, c->n_out, ys);
        em_check_close(label, got, ref, (size_t)c->n_tok * c->n_out, TOL_F32);
        check_pad(label, y, c->n_tok, c->n_out, ys);

        // one thread must give the same bits as all cores (each output has one owner and a fixed order)
        em_ref_set_threads(1);
        em_poison(y1, c->n_tok * ys);
        a.y = y1;
        em_ref_linear(&a);
        em_ref_set_threads(0);
        for (uint32_t t = 0; t < c->n_tok; t++)
            CHECK_MSG(!memcmp(y + t * ys, y1 + t * ys, c->n_out * sizeof(float)), "%s: 1 thread != all threads", label);
        free(wf); free(wb); free(x); free(y); free(y1); free(got); free(ref);
    }
}

// ---- rmsnorm ------------------------------------------------------------------------------------------

typedef struct rms_case {
    uint32_t n_tok, d;
    int delta; /* 1: fused residual add */
} rms_case;

static const rms_case rms_cases[] = {
    { .n_tok = 1,  .d = 64,   .delta = 0 }, // tiny fixture, first layer's norm (no residual yet)
    { .n_tok = 40, .d = 64,   .delta = 1 }, // tiny fixture prompt, residual add fused
    { .n_tok = 1,  .d = 64,   .delta = 1 }, // tiny fixture decode step, residual add fused
    { .n_tok = 3,  .d = 4096, .delta = 1 }, // Mamba-2 8B d_model
    { .n_tok = 2,  .d = 13,   .delta = 1 }, // d % 8 tail
    { .n_tok = 2,  .d = 13,   .delta = 0 }, // d % 8 tail, no residual
};

static void test_rmsnorm(em_rng *rng) {
    for (size_t ci = 0; ci < LEN(rms_cases); ci++) {
        const rms_case *c = &rms_cases[ci];
        const size_t n = (size_t)c->n_tok * c->d;
        char label[96];
        snprintf(label, sizeof label, "rmsnorm[%zu] n_tok=%u d=%u delta=%d", ci, c->n_tok, c->d, c->delta);
        float *x = fbuf(n), *dl = fbuf(n), *w = fbuf(c->d), *y = fbuf(n), *ref = fbuf(n);
        em_fill_uniform(rng, x, n, 2.0f);
        em_fill_uniform(rng, dl, n, 1.0f);
        for (uint32_t i = 0; i < c->d; i++) w[i] = 1.0f + em_rng_uniform(rng, 0.5f);
        float *x0 = fdup(x, n);

        // truth: residual sum in double, then mean of squares, then w * x / sqrt(ms + eps)
        const double eps = 1e-5;
        for (uint32_t t = 0; t < c->n_tok; t++) {
            double ms = 0;
            for (uint32_t i = 0; i < c->d; i++) {
                double v = (double)x0[t * c->d + i] + (c->delta ? dl[t * c->d + i] : 0.0);
                ms += v * v;
            }
            ms /= c->d;
            for (uint32_t i = 0; i < c->d; i++) {
                double v = (double)x0[t * c->d + i] + (c->delta ? dl[t * c->d + i] : 0.0);
                ref[t * c->d + i] = (float)(w[i] * v / sqrt(ms + eps));
            }
        }

        em_rmsnorm_args a = { .x = x, .delta = c->delta ? dl : NULL, .w = w, .y = y, .n_tok = c->n_tok, .d = c->d,
                              .eps = 1e-5f };
        em_poison(y, n);
        em_ref_rmsnorm(&a);
        em_check_close(label, y, ref, n, TOL_F32);
        // the residual stream is updated in place by exactly one fp32 add (or left alone)
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) {
            float want = c->delta ? x0[i] + dl[i] : x0[i];
            bad += memcmp(&x[i], &want, sizeof want) != 0;
        }
        CHECK_MSG(bad == 0, "%s: residual x wrong in %zu places", label, bad);
        free(x); free(x0); free(dl); free(w); free(y); free(ref);
    }
}

// ---- gated norm ---------------------------------------------------------------------------------------

typedef struct gn_case {
    uint32_t n_tok, d, group;
    uint32_t y_stride, z_stride, out_stride;
    int alias; /* 1: out = y (in place) */
} gn_case;

static const gn_case gn_cases[] = {
    { .n_tok = 1,  .d = 128,  .group = 128 },  // tiny fixture decode, HF MambaRMSNormGated (one group)
    { .n_tok = 40, .d = 128,  .group = 64 },   // tiny fixture prompt, Megatron group = d_inner / G (G=2)
    { .n_tok = 1,  .d = 8192, .group = 1024 }, // Mamba-2 8B: 8 groups of 1024
    { .n_tok = 1,  .d = 8192, .group = 8192 }, // Mamba-2 8B as HF computes it (one group)
    { .n_tok = 3,  .d = 128,  .group = 64, .z_stride = 328, .out_stride = 130 }, // z read inside the in_proj row
    { .n_tok = 3,  .d = 128,  .group = 64, .y_stride = 131, .out_stride = 131, .alias = 1 }, // in place, strided
    { .n_tok = 2,  .d = 39,   .group = 13 },   // group % 8 tail
};

static void test_gated_norm(em_rng *rng) {
    for (size_t ci = 0; ci < LEN(gn_cases); ci++) {
        const gn_case *c = &gn_cases[ci];
        const size_t ys = c->y_stride ? c->y_stride : c->d, zs = c->z_stride ? c->z_stride : c->d;
        const size_t os = c->out_stride ? c->out_stride : c->d, n = (size_t)c->n_tok * c->d;
        char label[128];
        snprintf(label, sizeof label, "gated_norm[%zu] n_tok=%u d=%u group=%u ys=%zu zs=%zu os=%zu alias=%d", ci,
                 c->n_tok, c->d, c->group, ys, zs, os, c->alias);
        float *y = fbuf(c->n_tok * ys), *z = fbuf(c->n_tok * zs), *w = fbuf(c->d), *ref = fbuf(n), *got = fbuf(n);
        float *out = c->alias ? y : fbuf(c->n_tok * os);
        em_fill_uniform(rng, y, c->n_tok * ys, 2.0f);
        em_fill_uniform(rng, z, c->n_tok * zs, 4.0f);
        for (uint32_t i = 0; i < c->d; i++) w[i] = 1.0f + em_rng_uniform(rng, 0.5f);

        // truth: gate each channel, then one RMS per block of `group` channels
        for (uint32_t t = 0; t < c->n_tok; t++)
            for (uint32_t g0 = 0; g0 < c->d; g0 += c->group) {
                double ms = 0;
                for (uint32_t i = g0; i < g0 + c->group; i++) {
                    double gv = y[t * ys + i] * silu_d(z[t * zs + i]);
                    ms += gv * gv;
                }
                ms /= c->group;
                for (uint32_t i = g0; i < g0 + c->group; i++)
                    ref[t * c->d + i] = (float)(w[i] * (y[t * ys + i] * silu_d(z[t * zs + i])) / sqrt(ms + 1e-5));
            }

        if (c->alias) { /* poison only the padding, the data is the input */
            for (uint32_t t = 0; t < c->n_tok; t++) em_poison(y + t * ys + c->d, ys - c->d);
        } else {
            em_poison(out, c->n_tok * os);
        }
        em_gated_norm_args a = { .y = y, .z = z, .w = w, .out = out, .n_tok = c->n_tok, .d = c->d, .group = c->group,
                                 .y_stride = c->y_stride, .z_stride = c->z_stride, .out_stride = c->out_stride,
                                 .eps = 1e-5f };
        em_ref_gated_norm(&a);
        gather(got, out, c->n_tok, c->d, os);
        em_check_close(label, got, ref, n, TOL_F32);
        check_pad(label, out, c->n_tok, c->d, os);
        if (!c->alias) free(out);
        free(y); free(z); free(w); free(ref); free(got);
    }
}

// ---- embed --------------------------------------------------------------------------------------------

static void test_embed(em_rng *rng) {
    enum { VOCAB = 50, D = 64, NT = 6 };
    static const int32_t tok[NT] = { 0, 49, 7, 7, 13, 0 }; /* first and last rows, repeats */
    static const em_dtype dts[] = { EM_DTYPE_F32, EM_DTYPE_BF16, EM_DTYPE_F16 };
    float tf[VOCAB * D], want_tab[VOCAB * D], out[NT * D], want[NT * D];
    uint16_t th[VOCAB * D];
    for (size_t di = 0; di < LEN(dts); di++) {
        // tables whose values are known exactly: k/64 (exact in bf16) and f16 bits decoded by ldexp
        for (size_t i = 0; i < VOCAB * D; i++) {
            if (dts[di] == EM_DTYPE_F16) {
                uint32_t u = em_rng_u32(rng), e = 1 + u % 29, m = (u >> 8) & 0x3ff, s = (u >> 20) & 1;
                th[i] = (uint16_t)(s << 15 | e << 10 | m);
                want_tab[i] = (float)((s ? -1.0 : 1.0) * ldexp(1.0 + m / 1024.0, (int)e - 15));
            } else {
                want_tab[i] = (float)((int)(em_rng_u32(rng) % 257) - 128) / 64.0f;
                tf[i] = want_tab[i];
                th[i] = em_f32_to_bf16(tf[i]);
            }
        }
        for (int t = 0; t < NT; t++) memcpy(want + t * D, want_tab + (size_t)tok[t] * D, D * sizeof(float));
        em_embed_args a = { .table = dts[di] == EM_DTYPE_F32 ? (const void *)tf : (const void *)th, .dtype = dts[di],
                            .tok = tok, .out = out, .n_tok = NT, .d = D };
        em_poison(out, NT * D);
        em_ref_embed(&a);
        char label[48];
        snprintf(label, sizeof label, "embed dtype=%d", (int)dts[di]);
        em_check_close(label, out, want, NT * D, 0.0); /* widening is exact */
    }
}

// ---- argmax -------------------------------------------------------------------------------------------

typedef struct am_case {
    float v[6];
    uint32_t n, want;
} am_case;

static const am_case am_cases[] = {
    { { 1, 3, 2 }, 3, 1 },                        // plain maximum
    { { 3, 1, 3 }, 3, 0 },                        // tie: lowest index
    { { NAN, 1, 2 }, 3, 2 },                      // leading NaN never wins
    { { 1, NAN, 0.5f }, 3, 0 },                   // NaN in the middle blocks nothing
    { { 0.5f, NAN, 1 }, 3, 2 },                   // a value after a NaN still wins
    { { -INFINITY, -INFINITY }, 2, 0 },           // all -inf: the first
    { { NAN, -INFINITY, NAN }, 3, 1 },            // -inf is the only number
    { { NAN, NAN }, 2, 0 },                       // all NaN: 0 by convention
    { { 5 }, 1, 0 },                              // one logit
    { { 1, 2, INFINITY, INFINITY, NAN }, 5, 2 },  // +inf tie
    { { -0.0f, 0.0f }, 2, 0 },                    // -0 == +0 is a tie
    { { -3, -2, -2.5f, -7 }, 4, 1 },              // all negative
};

static void test_argmax(em_rng *rng) {
    for (size_t ci = 0; ci < LEN(am_cases); ci++) {
        uint32_t got = em_ref_argmax(am_cases[ci].v, am_cases[ci].n);
        CHECK_MSG(got == am_cases[ci].want, "argmax[%zu] = %u, want %u", ci, got, am_cases[ci].want);
    }
    // a 32000-word vocab of random logits with the maximum planted twice
    enum { V = 32000 };
    float *x = fbuf(V);
    em_fill_uniform(rng, x, V, 10.0f);
    x[12345] = 11.0f;
    x[23456] = 11.0f;
    x[100] = NAN;
    CHECK_MSG(em_ref_argmax(x, V) == 12345, "argmax vocab = %u, want 12345", em_ref_argmax(x, V));
    free(x);
}

// ---- conv1d -------------------------------------------------------------------------------------------

typedef struct conv_case {
    uint32_t n_tok, C, K, x_stride, y_stride;
    int bias, silu, fresh, alias; /* fresh: zero state (new session); alias: y = x */
} conv_case;

static const conv_case conv_cases[] = {
    { .n_tok = 1,  .C = 192, .K = 4, .bias = 1, .silu = 1, .fresh = 1 }, // tiny fixture (conv_dim 192), first token
    { .n_tok = 3,  .C = 192, .K = 4, .bias = 1, .silu = 1 },             // n_tok = K-1: state fully replaced
    { .n_tok = 2,  .C = 192, .K = 4, .bias = 1, .silu = 1 },             // n_tok < K-1: old state survives in part
    { .n_tok = 40, .C = 192, .K = 4, .bias = 1, .silu = 1, .fresh = 1 }, // tiny fixture prompt, fresh session
    { .n_tok = 40, .C = 256, .K = 4, .bias = 1, .silu = 1 },             // 8B-like scaled (H8 P16 N32 G2), prompt
    { .n_tok = 1,  .C = 256, .K = 4, .bias = 1, .silu = 1 },             // 8B-like scaled, decode step
    { .n_tok = 5,  .C = 192, .K = 4, .bias = 0, .silu = 0 },             // no bias, no SiLU
    { .n_tok = 5,  .C = 192, .K = 4, .bias = 0, .silu = 1 },             // SiLU without bias
    { .n_tok = 7,  .C = 33,  .K = 2, .bias = 1, .silu = 0 },             // K = 2, bias without SiLU
    { .n_tok = 6,  .C = 192, .K = 4, .x_stride = 328, .y_stride = 200, .bias = 1, .silu = 1 }, // xBC in in_proj row
    { .n_tok = 6,  .C = 192, .K = 4, .x_stride = 197, .y_stride = 197, .bias = 1, .silu = 1, .alias = 1 }, // in place
};

static void test_conv1d(em_rng *rng) {
    for (size_t ci = 0; ci < LEN(conv_cases); ci++) {
        const conv_case *c = &conv_cases[ci];
        const uint32_t C = c->C, K = c->K, T = c->n_tok;
        const size_t xs = c->x_stride ? c->x_stride : C, ys = c->y_stride ? c->y_stride : C;
        const size_t ns = (size_t)C * (K - 1);
        char label[128];
        snprintf(label, sizeof label, "conv1d[%zu] n_tok=%u C=%u K=%u xs=%zu ys=%zu bias=%d silu=%d fresh=%d alias=%d",
                 ci, T, C, K, xs, ys, c->bias, c->silu, c->fresh, c->alias);

        float *x0 = fbuf(T * xs), *w = fbuf((size_t)C * K), *b = fbuf(C), *st0 = fbuf(ns);
        float *ref = fbuf((size_t)T * C), *ref_st = fbuf(ns), *got = fbuf((size_t)T * C);
        em_fill_uniform(rng, x0, T * xs, 2.0f);
        em_fill_uniform(rng, w, (size_t)C * K, 0.5f);
        em_fill_uniform(rng, b, C, 0.5f);
        em_fill_uniform(rng, st0, ns, 2.0f);
        if (c->fresh) memset(st0, 0, ns * sizeof *st0);

        // truth: materialise the left-padded input pad[K-1+T][C] = [state^T ; x], then a plain causal dot
        const size_t np = K - 1 + T;
        double *pad = dbuf(np * C);
        for (uint32_t ch = 0; ch < C; ch++) {
            for (uint32_t j = 0; j + 1 < K; j++) pad[(size_t)j * C + ch] = st0[(size_t)ch * (K - 1) + j];
            for (uint32_t t = 0; t < T; t++) pad[(size_t)(K - 1 + t) * C + ch] = x0[t * xs + ch];
        }
        for (uint32_t t = 0; t < T; t++)
            for (uint32_t ch = 0; ch < C; ch++) {
                double s = c->bias ? b[ch] : 0.0;
                for (uint32_t k = 0; k < K; k++) s += (double)w[(size_t)ch * K + k] * pad[(size_t)(t + k) * C + ch];
                ref[(size_t)t * C + ch] = (float)(c->silu ? silu_d(s) : s);
            }
        for (uint32_t ch = 0; ch < C; ch++) /* new state: the last K-1 rows of pad */
            for (uint32_t j = 0; j + 1 < K; j++)
                ref_st[(size_t)ch * (K - 1) + j] = (float)pad[(size_t)(T + j) * C + ch];

        // run 0: one call over all tokens; run 1: single steps; run 2: prompt of T-1, then one decode step
        float *y_full = NULL, *st_full = NULL;
        for (int run = 0; run < 3; run++) {
            if (run == 2 && T < 2) break;
            float *x = fdup(x0, T * xs), *st = fdup(st0, ns);
            float *y = c->alias ? x : fbuf(T * ys);
            if (c->alias) {
                for (uint32_t t = 0; t < T; t++) em_poison(x + t * xs + C, xs - C);
            } else {
                em_poison(y, T * ys);
            }
            em_conv1d_args a = { .state = st, .w = w, .b = c->bias ? b : NULL, .C = C, .K = K,
                                 .x_stride = c->x_stride, .y_stride = c->y_stride,
                                 .silu = c->silu ? EM_SILU_ON : EM_SILU_OFF };
            const uint32_t first = run == 0 ? T : run == 1 ? 1 : T - 1; /* tokens in the first call */
            for (uint32_t t0 = 0; t0 < T; t0 += (t0 == 0 ? first : 1)) {
                a.x = x + t0 * xs;
                a.y = y + t0 * ys;
                a.n_tok = t0 == 0 ? first : 1;
                em_ref_conv1d(&a);
            }
            if (run == 0) {
                gather(got, y, T, C, ys);
                em_check_close(label, got, ref, (size_t)T * C, TOL_F32);
                check_pad(label, y, T, C, ys);
                em_check_close(label, st, ref_st, ns, 0.0); /* the state is copied inputs: exact */
                y_full = y;
                st_full = st;
                if (c->alias) x = NULL; /* kept as y_full */
            } else {
                size_t bad = 0;
                for (uint32_t t = 0; t < T; t++) bad += memcmp(y + t * ys, y_full + t * ys, C * sizeof(float)) != 0;
                CHECK_MSG(bad == 0 && !memcmp(st, st_full, ns * sizeof(float)),
                          "%s: chained run %d differs from one call (%zu token rows)", label, run, bad);
                if (!c->alias) free(y);
                free(st);
            }
            free(x);
        }
        free(y_full); /* run 0's y (its x buffer when aliased) */
        free(st_full);
        free(pad); free(x0); free(w); free(b); free(st0); free(ref); free(ref_st); free(got);
    }
}

// ---- ssm ----------------------------------------------------------------------------------------------

typedef struct ssm_case {
    uint32_t n_tok, H, P, N, G;
    int fresh;  /* zero state (new session) */
    int packed; /* x,B,C inside one conv-output row; dt inside the in_proj row; y rows padded */
    int clamp;  /* dt limit (1e-3, 0.1) instead of (0, inf) */
    int big_dt; /* dt_bias ~ 21: softplus above its threshold 20 */
} ssm_case;

static const ssm_case ssm_cases[] = {
    { .n_tok = 1,  .H = 8, .P = 16, .N = 16, .G = 2, .fresh = 1 }, // tiny fixture, first token
    { .n_tok = 3,  .H = 8, .P = 16, .N = 16, .G = 2 },             // tiny fixture, short prompt on a state
    { .n_tok = 40, .H = 8, .P = 16, .N = 16, .G = 2, .fresh = 1 }, // tiny fixture prompt
    { .n_tok = 40, .H = 8, .P = 16, .N = 32, .G = 2 },             // 8B-like scaled (8B: H128 P64 N128 G8)
    { .n_tok = 1,  .H = 8, .P = 16, .N = 32, .G = 2 },             // 8B-like scaled, decode step
    { .n_tok = 6,  .H = 4, .P = 8,  .N = 16, .G = 1 },             // n_groups = 1 (HF mamba2-130m style)
    { .n_tok = 5,  .H = 4, .P = 8,  .N = 8,  .G = 4 },             // one group per head
    { .n_tok = 7,  .H = 8, .P = 16, .N = 16, .G = 2, .packed = 1 }, // executor layout: strided x/B/C/dt/y
    { .n_tok = 9,  .H = 8, .P = 16, .N = 16, .G = 2, .clamp = 1 },  // time_step_limit set: clamp
    { .n_tok = 4,  .H = 4, .P = 8,  .N = 16, .G = 2, .big_dt = 1 }, // softplus threshold branch
};

static void test_ssm(em_rng *rng) {
    for (size_t ci = 0; ci < LEN(ssm_cases); ci++) {
        const ssm_case *c = &ssm_cases[ci];
        const uint32_t T = c->n_tok, H = c->H, P = c->P, N = c->N, G = c->G, hpg = H / G;
        const size_t HP = (size_t)H * P, GN = (size_t)G * N, ns = HP * N;
        // layout: packed = the executor's (x|B|C in a conv row, dt at the end of the in_proj row z|xBC|dt)
        const size_t xbc = HP + 2 * GN;
        const size_t xs = c->packed ? xbc : HP, bcs = c->packed ? xbc : GN;
        const size_t dts = c->packed ? 2 * HP + 2 * GN + H : H, ys = c->packed ? HP + 7 : HP;
        char label[160];
        snprintf(label, sizeof label, "ssm[%zu] n_tok=%u H=%u P=%u N=%u G=%u fresh=%d packed=%d clamp=%d big_dt=%d", ci,
                 T, H, P, N, G, c->fresh, c->packed, c->clamp, c->big_dt);

        float *xrow = fbuf(T * xs), *Brow = c->packed ? NULL : fbuf(T * bcs), *Crow = c->packed ? NULL : fbuf(T * bcs);
        float *dtrow = fbuf(T * dts), *A = fbuf(H), *D = fbuf(H), *dtb = fbuf(H), *st0 = fbuf(ns);
        em_fill_uniform(rng, xrow, T * xs, 1.0f);
        if (!c->packed) {
            em_fill_uniform(rng, Brow, T * bcs, 1.0f);
            em_fill_uniform(rng, Crow, T * bcs, 1.0f);
        }
        em_fill_uniform(rng, dtrow, T * dts, 1.0f);
        for (uint32_t h = 0; h < H; h++) {
            A[h] = -expf(uniform_in(rng, 0.0f, logf(16.0f))); /* HF init: A in [-16, -1] */
            D[h] = em_rng_uniform(rng, 1.0f);
            dtb[h] = c->big_dt ? uniform_in(rng, 21.0f, 22.0f) : uniform_in(rng, -4.0f, -1.0f);
        }
        em_fill_uniform(rng, st0, ns, 1.0f);
        if (c->fresh) memset(st0, 0, ns * sizeof *st0);
        const float *xp = xrow;                                 /* [T, H, P] stride xs */
        const float *Bp = c->packed ? xrow + HP : Brow;         /* [T, G, N] stride bcs */
        const float *Cp = c->packed ? xrow + HP + GN : Crow;    /* [T, G, N] stride bcs */
        const float *dtp = c->packed ? dtrow + 2 * HP + 2 * GN : dtrow; /* [T, H] stride dts */
        const float dt_min = c->clamp ? 1e-3f : 0.0f, dt_max = c->clamp ? 0.1f : INFINITY;

        // truth: closed form with cumulative log-decay L[t] = A * sum_{s<=t} dt_s
        //   h_t = exp(L[t]) h_0 + sum_{s<=t} exp(L[t] - L[s]) dt_s x_s B_s ;  y_t = C_t . h_t + D x_t
        float *ref = fbuf((size_t)T * HP), *ref_st = fbuf(ns);
        double *dtd = dbuf((size_t)T * H), *L = dbuf((size_t)T * H);
        for (uint32_t h = 0; h < H; h++) {
            double cum = 0;
            for (uint32_t t = 0; t < T; t++) {
                double v = softplus_d((double)dtp[t * dts + h] + dtb[h]);
                if (c->clamp) v = v < dt_min ? dt_min : v > dt_max ? dt_max : v;
                dtd[(size_t)t * H + h] = v;
                cum += v * A[h];
                L[(size_t)t * H + h] = cum;
            }
        }
        for (uint32_t t = 0; t < T; t++)
            for (uint32_t h = 0; h < H; h++) {
                const uint32_t g = h / hpg;
                const double Lt = L[(size_t)t * H + h];
                for (uint32_t p = 0; p < P; p++) {
                    const size_t hp = (size_t)h * P + p; /* channel within a token row of x and y */
                    double yv = 0;
                    for (uint32_t n = 0; n < N; n++) {
                        const size_t gn = (size_t)g * N + n; /* column within a token row of B and C */
                        double hv = exp(Lt) * st0[hp * N + n];
                        for (uint32_t s = 0; s <= t; s++)
                            hv += exp(Lt - L[(size_t)s * H + h]) * dtd[(size_t)s * H + h] * xp[s * xs + hp] *
                                  Bp[s * bcs + gn];
                        yv += hv * Cp[t * bcs + gn];
                        if (t == T - 1) ref_st[hp * N + n] = (float)hv;
                    }
                    ref[(size_t)t * HP + hp] = (float)(yv + (double)D[h] * xp[t * xs + hp]);
                }
            }

        // run 0: one call; run 1: single steps; run 2: prompt of T-1, then one decode step
        float *got = fbuf((size_t)T * HP), *y_full = fbuf(T * ys), *st_full = NULL;
        for (int run = 0; run < 3; run++) {
            if (run == 2 && T < 2) break;
            float *st = fdup(st0, ns), *y = run == 0 ? y_full : fbuf(T * ys);
            em_poison(y, T * ys);
            em_ssm_args a = { .A = A, .D = D, .dt_bias = dtb, .state = st, .H = H, .P = P, .N = N, .G = G,
                              .x_stride = (uint32_t)xs, .dt_stride = (uint32_t)dts, .bc_stride = (uint32_t)bcs,
                              .y_stride = (uint32_t)ys, .dt_min = dt_min, .dt_max = dt_max };
            const uint32_t first = run == 0 ? T : run == 1 ? 1 : T - 1;
            for (uint32_t t0 = 0; t0 < T; t0 += (t0 == 0 ? first : 1)) {
                a.x = xp + t0 * xs;
                a.dt = dtp + t0 * dts;
                a.B = Bp + t0 * bcs;
                a.C = Cp + t0 * bcs;
                a.y = y + t0 * ys;
                a.n_tok = t0 == 0 ? first : 1;
                em_ref_ssm(&a);
            }
            if (run == 0) {
                gather(got, y, T, HP, ys);
                em_check_close(label, got, ref, (size_t)T * HP, TOL_F32);
                check_pad(label, y, T, HP, ys);
                em_check_close(label, st, ref_st, ns, TOL_F32);
                st_full = st;
            } else {
                float *chain = fbuf((size_t)T * HP), *full = fbuf((size_t)T * HP);
                gather(chain, y, T, HP, ys);
                gather(full, y_full, T, HP, ys);
                char l2[200];
                snprintf(l2, sizeof l2, "%s chained run %d", label, run);
                em_check_close(l2, chain, full, (size_t)T * HP, TOL_CHAIN);
                em_check_close(l2, st, st_full, ns, TOL_CHAIN);
                free(chain); free(full); free(y); free(st);
            }
        }
        free(got); free(y_full); free(st_full); free(ref); free(ref_st); free(dtd); free(L);
        free(xrow); free(Brow); free(Crow); free(dtrow); free(A); free(D); free(dtb); free(st0);
    }
}

// ---- --perf: em_ref_linear, 4096x4096 BF16, one token -------------------------------------------------

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int run_perf(int threads) {
    enum { NI = 4096, NO = 4096, REPS = 20 };
    const size_t flush_n = (size_t)256 << 20; /* > the last-level cache: each call streams W from DRAM */
    uint16_t *w = malloc((size_t)NO * NI * sizeof *w);
    float *x = fbuf(NI), *y = fbuf(NO);
    unsigned char *flush = malloc(flush_n);
    if (!w || !flush) abort();
    em_rng rng;
    em_rng_seed(&rng, 7);
    for (size_t i = 0; i < (size_t)NO * NI; i++) w[i] = em_f32_to_bf16(em_rng_uniform(&rng, 1.0f));
    em_fill_uniform(&rng, x, NI, 1.0f);
    const double bytes = (double)NO * NI * 2 + NI * 4.0 + NO * 4.0; /* W + x + y: the decode roofline's bytes */
    em_linear_args a = { .w = w, .w_dtype = EM_DTYPE_BF16, .x = x, .y = y, .n_tok = 1, .n_in = NI, .n_out = NO };

    int counts[2] = { 1, threads };
    for (int k = 0; k < 2; k++) {
        em_ref_set_threads(counts[k]);
        em_ref_linear(&a); /* warm up: thread pool, page faults */
        double best = 1e30, sum = 0;
        for (int r = 0; r < REPS; r++) {
            memset(flush, r, flush_n);
            double t0 = now_s();
            em_ref_linear(&a);
            double dt = now_s() - t0;
            best = dt < best ? dt : best;
            sum += dt;
        }
        int shown = counts[k];
#ifdef _OPENMP
        if (shown == 0) shown = omp_get_num_procs();
#endif
        printf("em_ref_linear 4096x4096 bf16, 1 token, %2d thread(s) | best %.3f ms | mean %.3f ms | %.2f GB/s\n",
               shown, best * 1e3, sum / REPS * 1e3, bytes / best * 1e-9);
    }
    em_ref_set_threads(0);
    free(w); free(x); free(y); free(flush);
    return 0;
}

// ---- main ---------------------------------------------------------------------------------------------

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--perf")) return run_perf(argc > 2 ? atoi(argv[2]) : 0);
    em_rng rng;
    em_rng_seed(&rng, 20240611);
    test_linear(&rng);
    test_rmsnorm(&rng);
    test_gated_norm(&rng);
    test_embed(&rng);
    test_argmax(&rng);
    test_conv1d(&rng);
    test_ssm(&rng);
    return em_test_finish("test_ref_ops");
}
