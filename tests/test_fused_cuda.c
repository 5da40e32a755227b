/*
 * test_fused_cuda.c — the fused decode step's kernels (em_cuda_norm_linear, em_cuda_ssm with z and sumsq,
 * em_cuda_gated_linear: kernels/linear.cu, kernels/ssm.cu; with INT8 weights kernels/linear_i8.cu) against their
 * float32 C twins (kernels/ref/fused_ref.c, em_ref_ssm), one Mamba-2 layer at a time on fresh seeded random weights
 * (BF16, or INT8 per output channel: q uniform over [-127, 127] and per-row scales) and states, several decode steps
 * in a row on one stream, as the executor queues them (with the programmatic-dependent-launch flags where the case
 * says so: a kernel that read its input before its predecessor finished would show here). Every output is poisoned
 * (NaN) before each step; proj, y, the per-head sums of squares, the residual stream, the conv and SSM states and
 * the head's logits are compared by max relative error <= 1e-4 (both sides use the same BF16 weights and fp32
 * arithmetic: only summation order and rsqrt vs 1/sqrt differ, measured ~1e-6; each case prints its figure).
 * The INT8 cases keep 1e-4 for the same reason: twin and kernel take the same int8 values and the same fp32 scales
 * (no quantization happens in the test: the error of int8 itself is docs/int8.md's accuracy tables), the kernel
 * dequantizes q exactly (PRMT + FADD) and multiplies the finished row sum by the scale as the twin does, so again
 * only the summation order differs; a wrong byte, chunk, group scale or row scale is >= 1e-3.
 * The INT8 cases whose widths are multiples of 1024 (the 8B layer) run again with linear_i8.cu v3 (x-stationary,
 * the default since the fifth session; EM_I8_XS=off gives v1) in all three ops, whatever the default is.
 * tests/test_ref_fused.c proves separately that the fused twins equal the six-op step (BF16 and INT8).
 * Without a CUDA device: "SKIP test_fused_cuda: no CUDA device", exit 77.
 *   test_fused_cuda --perf   # + one 8B layer in a graph: the fused layer vs the six-op layer, and each kernel alone,
 *                            #   BF16 and INT8 (ideal: weight bytes (+ scales) + the SSM state read and written)
 *   test_fused_cuda --sweep  # --perf, then every NT 1 variant of linear_i8.cu (all of them with -DEM_LIN_I8_SWEEP)
 *                            #   as the INT8 norm_linear (in_proj) and gated_linear (out_proj): checked on the 8B
 *                            #   layer against the twins, then timed; EM_I8_NORM_VARIANT / EM_I8_GATED_VARIANT = the
 *                            #   index printed make the executor use one (tuning)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "cuda_ops.h"
#include "gpu_test.h"
#include "ops.h"
#include "testutil.h"
#include "util.h"

#ifndef EM_HAVE_CUDA
#error "test_fused_cuda is built only with CUDA (tests/gpu.cmake)"
#endif

#define TOL 1e-4
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

typedef struct fcase { uint32_t d, H, P, N, G, K, vocab, steps, pdl; em_dtype wdt; const char *what; } fcase;

static const fcase cases[] = {
    { 4096, 128, 64, 128, 8, 4, 50288, 3, 1, EM_DTYPE_BF16, "Mamba-2 8B layer + head, PDL" },
    { 4096, 128, 64, 128, 8, 4, 50288, 2, 0, EM_DTYPE_BF16, "Mamba-2 8B layer + head, plain launches" },
    { 64, 8, 16, 16, 2, 4, 300, 3, 1, EM_DTYPE_BF16, "tiny fixture (d 64, P 16, N 16), PDL" },
    { 192, 6, 64, 64, 2, 4, 4096, 3, 1, EM_DTYPE_BF16, "bundled model (d 192, P 64, N 64), PDL" },
    { 2560, 80, 64, 128, 1, 4, 50288, 2, 1, EM_DTYPE_BF16, "Mamba-2 2.7B (G 1), PDL" },
    /* INT8 weights (issue 10): in_proj, out_proj and the head int8 with per-row scales */
    { 4096, 128, 64, 128, 8, 4, 50288, 3, 1, EM_DTYPE_I8, "INT8 8B layer + head, PDL" },
    { 4096, 128, 64, 128, 8, 4, 50288, 2, 0, EM_DTYPE_I8, "INT8 8B layer + head, plain launches" },
    { 64, 8, 16, 16, 2, 4, 300, 3, 1, EM_DTYPE_I8, "INT8 tiny fixture (d 64, group 64), PDL" },
    { 192, 6, 64, 64, 2, 4, 4096, 3, 1, EM_DTYPE_I8, "INT8 bundled model (d 192, group 192), PDL" },
    { 2560, 80, 64, 128, 1, 4, 50288, 2, 1, EM_DTYPE_I8, "INT8 2.7B (G 1), PDL" },
};
#define CASE_I8_8B 5 /* the case --sweep re-runs with every INT8 variant */

/* --sweep: the linear_i8.cu variant the INT8 fused ops run (-1: the launchers' own pick) */
static int g_variant = -1;

static float *rnd(em_rng *r, size_t n, float scale, float off) {
    float *x = em_xmalloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = off + em_rng_uniform(r, scale);
    return x;
}
static uint16_t *rnd_bf16(em_rng *r, size_t n, float scale) {
    uint16_t *w = em_xmalloc(n * sizeof *w);
    for (size_t i = 0; i < n; i++) w[i] = em_f32_to_bf16(em_rng_uniform(r, scale));
    return w;
}
/* A [rows, cols] weight with values up to `scale`: BF16 (*sc = NULL), or INT8 q uniform over [-127, 127] with
 * per-row scales (scale / 127) * [0.5, 1.5] in *sc (one row of scale 0: its output must come out 0 * sum). */
static void *rnd_w(em_rng *r, em_dtype dt, uint32_t rows, uint32_t cols, float scale, float **sc) {
    if (dt != EM_DTYPE_I8) {
        *sc = NULL;
        return rnd_bf16(r, (size_t)rows * cols, scale);
    }
    int8_t *q = em_xmalloc((size_t)rows * cols);
    for (size_t i = 0; i < (size_t)rows * cols; i++) q[i] = (int8_t)((int)(em_rng_u32(r) % 255) - 127);
    *sc = rnd(r, rows, 0.5f * scale / 127.0f, scale / 127.0f);
    (*sc)[rows / 3] = 0.0f;
    return q;
}
static size_t wbytes(em_dtype dt, uint32_t rows, uint32_t cols) {
    return (size_t)rows * cols * (dt == EM_DTYPE_I8 ? 1 : 2);
}

/* The fused GEMVs as the executor calls them, or (--sweep, INT8) one variant of linear_i8.cu. */
static em_status norm_linear(const em_norm_linear_args *a, void *st, int variant) {
    return a->w_dtype == EM_DTYPE_I8 && variant >= 0 ? em_cuda_norm_linear_i8_variant(a, st, variant)
                                                     : em_cuda_norm_linear(a, st);
}
static em_status gated_linear(const em_gated_linear_args *a, void *st, int variant) {
    return a->w_dtype == EM_DTYPE_I8 && variant >= 0 ? em_cuda_gated_linear_i8_variant(a, st, variant)
                                                     : em_cuda_gated_linear(a, st);
}

static double cmp(const char *what, const char *name, const float *dev, const float *ref, size_t n, float *host) {
    if (!em_gpu_fetch(host, dev, n * sizeof(float))) return INFINITY;
    size_t w = 0;
    const double e = em_max_rel_err(host, ref, n, &w);
    CHECK_MSG(e <= TOL, "%s: %s: max rel err %.3g (worst [%zu]: got %.7g ref %.7g)", what, name, e, w, (double)host[w],
              (double)ref[w]);
    return e;
}

/* @return the worst max rel error of the case (INFINITY if it could not run) */
static double run_case(const fcase *c, em_rng *r) {
    const uint32_t d = c->d, H = c->H, P = c->P, N = c->N, G = c->G, K = c->K, V = c->vocab;
    const em_dtype dt = c->wdt;
    const uint32_t di = H * P, GN = G * N, cd = di + 2 * GN, dip = 2 * di + 2 * GN + H, group = di / G;
    const size_t n_conv = (size_t)cd * (K - 1), n_ssm = (size_t)H * P * N;
    /* host: weights, states, x */
    float *norm_w = rnd(r, d, 0.2f, 1.0f), *conv_w = rnd(r, (size_t)cd * K, 0.5f, 0.0f), *conv_b = rnd(r, cd, 0.1f, 0.0f);
    float *A = rnd(r, H, 0.5f, -1.0f), *D = rnd(r, H, 0.5f, 1.0f), *dt_bias = rnd(r, H, 1.0f, -2.0f);
    float *gnorm_w = rnd(r, di, 0.2f, 1.0f), *norm_f = rnd(r, d, 0.2f, 1.0f);
    float *in_s, *out_s, *head_s;
    void *in_proj = rnd_w(r, dt, dip, d, 1.0f / sqrtf((float)d), &in_s);
    void *out_proj = rnd_w(r, dt, d, di, 1.0f / sqrtf((float)di), &out_s);
    void *head = rnd_w(r, dt, V, d, 1.0f / sqrtf((float)d), &head_s);
    float *conv_s = rnd(r, n_conv, 1.0f, 0.0f), *ssm_s = rnd(r, n_ssm, 1.0f, 0.0f), *x = rnd(r, d, 1.0f, 0.0f);
    float *proj = em_xmalloc(dip * 4), *y = em_xmalloc(di * 4), *sumsq = em_xmalloc(H * 4), *logits = em_xmalloc((size_t)V * 4);
    float *host = em_xmalloc(((size_t)V > n_ssm ? (size_t)V : n_ssm) * 4);
    /* device copies */
    float *d_norm_w = em_gpu_dup(norm_w, d * 4), *d_conv_w = em_gpu_dup(conv_w, (size_t)cd * K * 4);
    float *d_conv_b = em_gpu_dup(conv_b, cd * 4), *d_A = em_gpu_dup(A, H * 4), *d_D = em_gpu_dup(D, H * 4);
    float *d_dt_bias = em_gpu_dup(dt_bias, H * 4), *d_gnorm_w = em_gpu_dup(gnorm_w, di * 4);
    float *d_norm_f = em_gpu_dup(norm_f, d * 4);
    void *d_in = em_gpu_dup(in_proj, wbytes(dt, dip, d)), *d_out = em_gpu_dup(out_proj, wbytes(dt, d, di));
    void *d_head = em_gpu_dup(head, wbytes(dt, V, d));
    const int i8 = dt == EM_DTYPE_I8;
    float *d_in_s = i8 ? em_gpu_dup(in_s, dip * 4) : NULL, *d_out_s = i8 ? em_gpu_dup(out_s, d * 4) : NULL;
    float *d_head_s = i8 ? em_gpu_dup(head_s, (size_t)V * 4) : NULL;
    float *d_conv_s = em_gpu_dup(conv_s, n_conv * 4), *d_ssm_s = em_gpu_dup(ssm_s, n_ssm * 4), *d_x = em_gpu_dup(x, d * 4);
    float *d_proj = em_gpu_poisoned(dip * 4), *d_y = em_gpu_poisoned(di * 4), *d_sumsq = em_gpu_poisoned(H * 4);
    float *d_logits = em_gpu_poisoned((size_t)V * 4);
    cudaStream_t st = NULL;
    CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking) == cudaSuccess);
    if (!d_norm_w || !d_conv_w || !d_conv_b || !d_A || !d_D || !d_dt_bias || !d_gnorm_w || !d_norm_f || !d_in ||
        !d_out || !d_head || !d_conv_s || !d_ssm_s || !d_x || !d_proj || !d_y || !d_sumsq || !d_logits || !st ||
        (i8 && (!d_in_s || !d_out_s || !d_head_s))) {
        CHECK_MSG(0, "%s: device setup failed: %s", c->what, em_last_error());
        return INFINITY;
    }
    const uint32_t wf = c->pdl ? EM_LINEAR_W_CONST : 0;
    double worst = 0;
    for (uint32_t step = 0; step < c->steps; step++) {
        /* the twin: one token through the layer, then the head */
        em_norm_linear_args in = { .x = x, .norm_w = norm_w, .eps = 1e-5f, .w = in_proj, .w_dtype = dt,
                                   .w_scale = in_s, .y = proj, .n_in = d, .n_out = dip, .conv_off = di,
                                   .conv_dim = cd, .K = K, .conv_state = conv_s, .conv_w = conv_w, .conv_b = conv_b,
                                   .flags = wf };
        em_ssm_args sa = { .x = proj + di, .dt = proj + di + cd, .B = proj + 2 * di, .C = proj + 2 * di + GN, .A = A,
                           .D = D, .dt_bias = dt_bias, .state = ssm_s, .y = y, .n_tok = 1, .H = H, .P = P, .N = N,
                           .G = G, .dt_min = 0.0f, .dt_max = INFINITY, .z = proj, .sumsq = sumsq,
                           .flags = c->pdl ? EM_SSM_STATE_OWN : 0 };
        em_gated_linear_args out = { .y = y, .sumsq = sumsq, .norm_w = gnorm_w, .group = group, .P = P, .eps = 1e-5f,
                                     .w = out_proj, .w_dtype = dt, .w_scale = out_s, .x = x, .n_in = di,
                                     .n_out = d, .flags = wf };
        em_norm_linear_args hd = { .x = x, .norm_w = norm_f, .eps = 1e-5f, .w = head, .w_dtype = dt,
                                   .w_scale = head_s, .y = logits, .n_in = d, .n_out = V, .flags = wf };
        em_ref_norm_linear(&in);
        em_ref_ssm(&sa);
        em_ref_gated_linear(&out);
        em_ref_norm_linear(&hd);
        /* the kernels: the same args with device pointers, outputs poisoned first */
        const size_t nan_bytes[] = { dip * 4, di * 4, H * 4, (size_t)V * 4 };
        float *const nan_bufs[] = { d_proj, d_y, d_sumsq, d_logits };
        for (int k = 0; k < 4; k++) CHECK(cudaMemsetAsync(nan_bufs[k], 0xff, nan_bytes[k], st) == cudaSuccess);
        in.x = d_x; in.norm_w = d_norm_w; in.w = d_in; in.y = d_proj; in.conv_state = d_conv_s; in.conv_w = d_conv_w;
        in.conv_b = d_conv_b; in.w_scale = d_in_s;
        sa.x = d_proj + di; sa.dt = d_proj + di + cd; sa.B = d_proj + 2 * di; sa.C = d_proj + 2 * di + GN; sa.A = d_A;
        sa.D = d_D; sa.dt_bias = d_dt_bias; sa.state = d_ssm_s; sa.y = d_y; sa.z = d_proj; sa.sumsq = d_sumsq;
        out.y = d_y; out.sumsq = d_sumsq; out.norm_w = d_gnorm_w; out.w = d_out; out.x = d_x; out.w_scale = d_out_s;
        hd.x = d_x; hd.norm_w = d_norm_f; hd.w = d_head; hd.y = d_logits; hd.w_scale = d_head_s;
        CHECK(em_cuda_norm_linear_supported(&in) && em_cuda_ssm_supported(&sa) && em_cuda_gated_linear_supported(&out) &&
              em_cuda_norm_linear_supported(&hd));
        em_status s = norm_linear(&in, st, g_variant);
        if (s == EM_OK) s = em_cuda_ssm(&sa, st);
        if (s == EM_OK) s = gated_linear(&out, st, g_variant);
        if (s == EM_OK) s = norm_linear(&hd, st, g_variant);
        if (s == EM_OK) s = em_cuda_sync(st);
        CHECK_MSG(s == EM_OK, "%s: step %u: %s: %s", c->what, step, em_status_str(s), em_last_error());
        if (s != EM_OK) {
            worst = INFINITY;
            break;
        }
        double e[7] = {
            cmp(c->what, "proj (z | conv(xBC) | dt)", d_proj, proj, dip, host),
            cmp(c->what, "y (gated)", d_y, y, di, host),
            cmp(c->what, "per-head sum of y^2", d_sumsq, sumsq, H, host),
            cmp(c->what, "residual stream", d_x, x, d, host),
            cmp(c->what, "conv state", d_conv_s, conv_s, n_conv, host),
            cmp(c->what, "ssm state", d_ssm_s, ssm_s, n_ssm, host),
            cmp(c->what, "head logits", d_logits, logits, V, host),
        };
        for (int k = 0; k < 7; k++) if (e[k] > worst) worst = e[k];
        x[step % d] += 0.5f; /* a different token next step: nudge the residual stream on both sides */
        CHECK(cudaMemcpy(d_x, x, d * 4, cudaMemcpyHostToDevice) == cudaSuccess);
    }
    if (g_variant < 0) printf("  %-46s %u steps: worst max rel err %.2e (limit %.0e)\n", c->what, c->steps, worst, TOL);
    cudaStreamDestroy(st);
    void *const dev[] = { d_norm_w, d_conv_w, d_conv_b, d_A, d_D, d_dt_bias, d_gnorm_w, d_norm_f, d_in, d_out, d_head,
                          d_conv_s, d_ssm_s, d_x, d_proj, d_y, d_sumsq, d_logits, d_in_s, d_out_s, d_head_s };
    for (size_t k = 0; k < LEN(dev); k++) if (dev[k]) em_cuda_free(dev[k]);
    void *const hst[] = { norm_w, conv_w, conv_b, A, D, dt_bias, gnorm_w, norm_f, in_proj, out_proj, head, conv_s,
                          ssm_s, x, proj, y, sumsq, logits, host, in_s, out_s, head_s };
    for (size_t k = 0; k < LEN(hst); k++) free(hst[k]);
    return worst;
}

/* What the fused launchers refuse: shapes the fused forms cannot take go to the six-op step instead. */
static void check_refusals(void) {
    em_gated_linear_args g = { .group = 100, .P = 50, .n_in = 200, .n_out = 8, .w_dtype = EM_DTYPE_BF16 };
    CHECK(!em_cuda_gated_linear_supported(&g)); /* NULL pointers, group % 8 != 0 */
    CHECK(em_cuda_gated_linear(&g, NULL) == EM_ERR_INVALID_ARG);
    em_norm_linear_args n = { .n_in = 12, .n_out = 8, .w_dtype = EM_DTYPE_F32 };
    CHECK(!em_cuda_norm_linear_supported(&n));
    CHECK(em_cuda_norm_linear(&n, NULL) == EM_ERR_INVALID_ARG);
    /* INT8: the shapes are fine, but no w_scale (norm_linear), or group % 16 != 0 (gated_linear: 8 int8 weights
     * are half a chunk); 16-byte aligned fake pointers, never dereferenced since the launchers refuse first */
    float *fake = (float *)(uintptr_t)0x100000;
    em_norm_linear_args n8 = { .x = fake, .norm_w = fake, .w = fake, .w_dtype = EM_DTYPE_I8, .y = fake, .n_in = 64,
                               .n_out = 8 };
    CHECK(!em_cuda_norm_linear_supported(&n8));
    CHECK(em_cuda_norm_linear(&n8, NULL) == EM_ERR_INVALID_ARG);
    n8.w_scale = fake;
    CHECK(em_cuda_norm_linear_supported(&n8)); /* the same with its scales: taken */
    n8.n_in = 72;                              /* n_in % 16 != 0 */
    CHECK(!em_cuda_norm_linear_supported(&n8));
    em_gated_linear_args g8 = { .y = fake, .sumsq = fake, .norm_w = fake, .group = 8, .P = 8, .w = fake,
                                .w_dtype = EM_DTYPE_I8, .w_scale = fake, .x = fake, .n_in = 64, .n_out = 8 };
    CHECK(!em_cuda_gated_linear_supported(&g8));
    CHECK(em_cuda_gated_linear(&g8, NULL) == EM_ERR_INVALID_ARG);
    g8.group = 16;
    CHECK(em_cuda_gated_linear_supported(&g8));
}

/* ---- --perf: one 8B layer in a graph, fused vs the six-op layer, and each fused kernel alone -------------------- */
#define PERF_LAYERS 8 /* distinct layers cycled through: 1.8 GB of weights (BF16), 0.9 GB (INT8), far past L2 */

typedef struct perf_ctx {
    uint32_t d, H, P, N, G, K, dip, di, cd;
    void *in_w[PERF_LAYERS], *out_w[PERF_LAYERS];   /* BF16 */
    void *in_w8[PERF_LAYERS], *out_w8[PERF_LAYERS]; /* INT8 */
    float *in_s, *out_s;                            /* INT8 per-row scales (shared by the layers) */
    float *norm_w, *conv_w, *conv_b, *A, *D, *dt_bias, *gnorm_w; /* shared by the layers (small) */
    float *conv_s[PERF_LAYERS], *ssm_s[PERF_LAYERS];
    float *x, *xn, *proj, *xbc, *y, *delta, *sumsq;
    int which; /* 0 fused layer, 1 six-op layer, 2 norm_linear, 3 ssm, 4 gated_linear, 5 plain in_proj, 6 plain out_proj */
    int i8;    /* INT8 weights */
    int variant; /* INT8, --sweep: the linear_i8.cu variant of norm_linear / gated_linear (-1: the launchers' pick) */
} perf_ctx;

static em_status perf_launch(void *ctx, int i, void *st) {
    perf_ctx *p = ctx;
    const int l = i % PERF_LAYERS;
    const uint32_t GN = p->G * p->N, group = p->di / p->G;
    const em_dtype dt = p->i8 ? EM_DTYPE_I8 : EM_DTYPE_BF16;
    void *in_w = p->i8 ? p->in_w8[l] : p->in_w[l], *out_w = p->i8 ? p->out_w8[l] : p->out_w[l];
    const float *in_s = p->i8 ? p->in_s : NULL, *out_s = p->i8 ? p->out_s : NULL;
    em_norm_linear_args in = { .x = p->x, .norm_w = p->norm_w, .eps = 1e-5f, .w = in_w, .w_dtype = dt,
                               .w_scale = in_s, .y = p->proj, .n_in = p->d, .n_out = p->dip, .conv_off = p->di,
                               .conv_dim = p->cd, .K = p->K, .conv_state = p->conv_s[l], .conv_w = p->conv_w,
                               .conv_b = p->conv_b, .flags = EM_LINEAR_W_CONST };
    em_ssm_args sa = { .x = p->proj + p->di, .dt = p->proj + p->di + p->cd, .B = p->proj + 2 * p->di,
                       .C = p->proj + 2 * p->di + GN, .A = p->A, .D = p->D, .dt_bias = p->dt_bias, .state = p->ssm_s[l],
                       .y = p->y, .n_tok = 1, .H = p->H, .P = p->P, .N = p->N, .G = p->G, .dt_min = 0.0f,
                       .dt_max = INFINITY, .z = p->proj, .sumsq = p->sumsq, .flags = EM_SSM_STATE_OWN };
    em_gated_linear_args out = { .y = p->y, .sumsq = p->sumsq, .norm_w = p->gnorm_w, .group = group, .P = p->P,
                                 .eps = 1e-5f, .w = out_w, .w_dtype = dt, .w_scale = out_s, .x = p->x, .n_in = p->di,
                                 .n_out = p->d, .flags = EM_LINEAR_W_CONST };
    em_linear_args lin = { .w = in_w, .w_dtype = dt, .w_scale = in_s, .x = p->xn, .y = p->proj, .n_tok = 1,
                           .n_in = p->d, .n_out = p->dip };
    em_linear_args lout = { .w = out_w, .w_dtype = dt, .w_scale = out_s, .x = p->y, .y = p->delta, .n_tok = 1,
                            .n_in = p->di, .n_out = p->d };
    switch (p->which) {
    case 0:
        EM_TRY(norm_linear(&in, st, p->variant));
        EM_TRY(em_cuda_ssm(&sa, st));
        return gated_linear(&out, st, p->variant);
    case 1: {
        em_rmsnorm_args na = { .x = p->x, .delta = p->delta, .w = p->norm_w, .y = p->xn, .n_tok = 1, .d = p->d, .eps = 1e-5f };
        EM_TRY(em_cuda_rmsnorm(&na, st));
        EM_TRY(em_cuda_linear(&lin, st));
        em_conv1d_args ca = { .x = p->proj + p->di, .state = p->conv_s[l], .w = p->conv_w, .b = p->conv_b, .y = p->xbc,
                              .n_tok = 1, .C = p->cd, .K = p->K, .x_stride = p->dip, .y_stride = p->cd, .silu = EM_SILU_ON };
        EM_TRY(em_cuda_conv1d(&ca, st));
        em_ssm_args s6 = sa;
        s6.x = p->xbc; s6.B = p->xbc + p->di; s6.C = p->xbc + p->di + GN; s6.z = NULL; s6.sumsq = NULL; s6.flags = 0;
        s6.x_stride = p->cd; s6.bc_stride = p->cd;
        EM_TRY(em_cuda_ssm(&s6, st));
        em_gated_norm_args ga = { .y = p->y, .z = p->proj, .w = p->gnorm_w, .out = p->y, .n_tok = 1, .d = p->di,
                                  .group = group, .eps = 1e-5f };
        EM_TRY(em_cuda_gated_norm(&ga, st));
        return em_cuda_linear(&lout, st);
    }
    case 2: return norm_linear(&in, st, p->variant);
    case 3: return em_cuda_ssm(&sa, st);
    case 4: return gated_linear(&out, st, p->variant);
    case 5: lin.flags = EM_LINEAR_W_CONST; return em_cuda_linear(&lin, st);
    default: lout.flags = EM_LINEAR_W_CONST; return em_cuda_linear(&lout, st);
    }
}

/* One timed line: ideal = bytes / the measured read bandwidth. */
static void perf_line(perf_ctx *p, const em_gpu_env *env, const char *name, double bytes) {
    em_gpu_timing t;
    em_status st = em_gpu_time(perf_launch, p, &t);
    CHECK_MSG(st == EM_OK, "--perf %s: %s", name, em_last_error());
    if (st != EM_OK) return;
    const double ideal_us = bytes / (env->read_gbps * 1e3);
    printf("  %-40s single %7.2f us  graph %7.2f us  ideal %6.2f us  %5.1f %%\n", name, t.launch_us, t.graph_us,
           ideal_us, 100.0 * ideal_us / t.graph_us);
}

static void run_perf(const em_gpu_env *env, int sweep) {
    perf_ctx p = { .d = 4096, .H = 128, .P = 64, .N = 128, .G = 8, .K = 4, .variant = -1 };
    p.di = p.H * p.P;
    p.cd = p.di + 2 * p.G * p.N;
    p.dip = 2 * p.di + 2 * p.G * p.N + p.H;
    int ok = 1;
    /* constant weights (a memset pattern): a GEMV's speed does not depend on the values; 0x3c.. = 0.0115 (bf16),
     * 60 (int8, with scales 0.0115) */
    for (int l = 0; l < PERF_LAYERS; l++) {
        ok &= em_cuda_malloc(&p.in_w[l], (size_t)p.dip * p.d * 2) == EM_OK;
        ok &= em_cuda_malloc(&p.out_w[l], (size_t)p.d * p.di * 2) == EM_OK;
        ok &= em_cuda_malloc(&p.in_w8[l], (size_t)p.dip * p.d) == EM_OK;
        ok &= em_cuda_malloc(&p.out_w8[l], (size_t)p.d * p.di) == EM_OK;
        ok &= em_cuda_malloc((void **)&p.conv_s[l], (size_t)p.cd * (p.K - 1) * 4) == EM_OK;
        ok &= em_cuda_malloc((void **)&p.ssm_s[l], (size_t)p.H * p.P * p.N * 4) == EM_OK;
        if (!ok) break;
        cudaMemset(p.in_w[l], 0x3c, (size_t)p.dip * p.d * 2);
        cudaMemset(p.out_w[l], 0x3c, (size_t)p.d * p.di * 2);
        cudaMemset(p.in_w8[l], 0x3c, (size_t)p.dip * p.d);
        cudaMemset(p.out_w8[l], 0x3c, (size_t)p.d * p.di);
        cudaMemset(p.conv_s[l], 0x3c, (size_t)p.cd * (p.K - 1) * 4);
        cudaMemset(p.ssm_s[l], 0x3c, (size_t)p.H * p.P * p.N * 4);
    }
    float **small[] = { &p.norm_w, &p.conv_w, &p.conv_b, &p.A, &p.D, &p.dt_bias, &p.gnorm_w, &p.x, &p.xn, &p.proj, &p.xbc,
                        &p.y, &p.delta, &p.sumsq, &p.in_s, &p.out_s };
    for (size_t k = 0; ok && k < LEN(small); k++) {
        ok &= em_cuda_malloc((void **)small[k], (size_t)p.dip * 4 * 4) == EM_OK; /* generous: every one fits */
        if (ok) cudaMemset(*small[k], small[k] == &p.A ? 0xbc : 0x3c, (size_t)p.dip * 4 * 4);
    }
    CHECK_MSG(ok && cudaDeviceSynchronize() == cudaSuccess, "--perf setup: %s", em_last_error());
    if (!ok) return;
    const double in_b = (double)p.dip * p.d * 2, out_b = (double)p.d * p.di * 2, st_b = 2.0 * p.H * p.P * p.N * 4;
    const double in_b8 = (double)p.dip * p.d + 4.0 * p.dip, out_b8 = (double)p.d * p.di + 4.0 * p.d;
    static const char *names[] = { "fused layer (3 kernels, PDL)", "six-op layer (as before)", "norm_linear (in_proj)",
                                   "ssm + gate + sumsq", "gated_linear (out_proj)", "plain in_proj GEMV (W_CONST)",
                                   "plain out_proj GEMV (W_CONST)" };
    printf("--perf: Mamba-2 8B layer, %d layers cycled, in a graph of %d launches (us per launch; %% of the %.0f GB/s "
           "read pass)\n", PERF_LAYERS, EM_GPU_GRAPH_LAUNCHES, env->read_gbps);
    for (int i8 = 0; i8 < 2; i8++) {
        const double b_in = i8 ? in_b8 : in_b, b_out = i8 ? out_b8 : out_b;
        const double bytes[] = { b_in + b_out + st_b, b_in + b_out + st_b, b_in, st_b, b_out, b_in, b_out };
        p.i8 = i8;
        for (int w = 0; w < 7; w++) {
            if (i8 && w == 3) continue; /* the ssm is the same kernel */
            char name[80];
            snprintf(name, sizeof name, "%s%s", i8 ? "INT8 " : "", names[w]);
            p.which = w;
            perf_line(&p, env, name, bytes[w]);
        }
    }
    if (sweep) {
        /* every NT 1 variant of linear_i8.cu as the INT8 fused GEMVs (checked on the 8B layer in main first) */
        p.i8 = 1;
        printf("--sweep: INT8 fused GEMVs per linear_i8.cu variant (defaults: norm_linear in_proj %d, gated_linear "
               "out_proj %d)\n", em_cuda_fused_i8_default_variant(0, p.dip, p.d),
               em_cuda_fused_i8_default_variant(1, p.d, p.di));
        em_linear_variant vi;
        const int n_var = em_cuda_linear_i8_variant_info(-1, &vi);
        for (int v = 0; v < n_var; v++) {
            em_cuda_linear_i8_variant_info(v, &vi);
            if (vi.nt != 1) continue;
            p.variant = v;
            const int which[] = { 2, 4, 0 };
            const double bytes[] = { in_b8, out_b8, in_b8 + out_b8 + st_b };
            static const char *what[] = { "norm_linear", "gated_linear", "layer" };
            for (int k = 0; k < 3; k++) {
                char name[80];
                snprintf(name, sizeof name, "%2d %s %s", v, vi.name + 3, what[k]);
                p.which = which[k];
                perf_line(&p, env, name, bytes[k]);
            }
        }
        p.variant = -1;
    }
    for (int l = 0; l < PERF_LAYERS; l++) {
        em_cuda_free(p.in_w[l]); em_cuda_free(p.out_w[l]); em_cuda_free(p.in_w8[l]); em_cuda_free(p.out_w8[l]);
        em_cuda_free(p.conv_s[l]); em_cuda_free(p.ssm_s[l]);
    }
    for (size_t k = 0; k < LEN(small); k++) em_cuda_free(*small[k]);
}

int main(int argc, char **argv) {
    em_gpu_env env;
    const int sweep = argc > 1 && !strcmp(argv[1], "--sweep");
    char *perf_argv[] = { argv[0], (char *)"--perf", NULL };
    em_gpu_test_init("test_fused_cuda", sweep ? 2 : argc, sweep ? perf_argv : argv, &env);
    check_refusals();
    em_rng rng;
    em_rng_seed(&rng, 20261123);
    for (size_t i = 0; i < LEN(cases); i++) run_case(&cases[i], &rng);
    {
        /* linear_i8.cu v3 (x-stationary, the default; k_split 0 in the variant info) through every INT8
         * case whose widths it takes (d and d_inner multiples of 1024), with the case's own launch flags */
        em_linear_variant vi;
        const int n_var = em_cuda_linear_i8_variant_info(-1, &vi);
        for (int v = 0; v < n_var; v++) {
            em_cuda_linear_i8_variant_info(v, &vi);
            if (vi.nt != 1 || vi.k_split != 0) continue;
            for (size_t i = 0; i < LEN(cases); i++) {
                if (cases[i].wdt != EM_DTYPE_I8 || cases[i].d % 1024 || cases[i].H * cases[i].P % 1024) continue;
                g_variant = v;
                const double e = run_case(&cases[i], &rng);
                printf("  %-46s %s: worst max rel err %.2e (limit %.0e)\n", cases[i].what, vi.name, e, TOL);
            }
        }
        g_variant = -1;
    }
    if (sweep) {
        /* every NT 1 INT8 variant (registers printed: no spills allowed) through the 8B layer + head vs the twins */
        em_linear_variant vi;
        const int n_var = em_cuda_linear_i8_variant_info(-1, &vi);
        fcase c = cases[CASE_I8_8B];
        c.steps = 1;
        for (int v = 0; v < n_var; v++) {
            em_cuda_linear_i8_variant_info(v, &vi);
            if (vi.nt != 1) continue;
            CHECK_MSG(vi.local_bytes == 0, "variant %s spills (%d bytes of local memory)", vi.name, vi.local_bytes);
            g_variant = v;
            em_rng_seed(&rng, 20261123 + (uint64_t)v);
            const double e = run_case(&c, &rng);
            printf("  sweep %2d %-28s (%3d registers in MODE 0) INT8 8B layer + head: max rel err %.2e\n", v, vi.name,
                   vi.regs, e);
        }
        g_variant = -1;
    }
    if (env.perf) run_perf(&env, sweep);
    return em_test_finish("test_fused_cuda");
}
