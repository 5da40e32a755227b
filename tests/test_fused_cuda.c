/*
 * test_fused_cuda.c — the fused decode step's kernels (em_cuda_norm_linear, em_cuda_ssm with z and sumsq,
 * em_cuda_gated_linear: kernels/linear.cu, kernels/ssm.cu) against their float32 C twins (kernels/ref/fused_ref.c,
 * em_ref_ssm), one Mamba-2 layer at a time on fresh seeded random weights (BF16) and states, several decode steps
 * in a row on one stream, as the executor queues them (with the programmatic-dependent-launch flags where the case
 * says so: a kernel that read its input before its predecessor finished would show here). Every output is poisoned
 * (NaN) before each step; proj, y, the per-head sums of squares, the residual stream, the conv and SSM states and
 * the head's logits are compared by max relative error <= 1e-4 (both sides use the same BF16 weights and fp32
 * arithmetic: only summation order and rsqrt vs 1/sqrt differ, measured ~1e-6; each case prints its figure).
 * tests/test_ref_fused.c proves separately that the fused twins equal the six-op step.
 * Without a CUDA device: "SKIP test_fused_cuda: no CUDA device", exit 77.
 *   test_fused_cuda --perf   # + one 8B layer in a graph: the fused layer vs the six-op layer, and each kernel alone
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

typedef struct fcase { uint32_t d, H, P, N, G, K, vocab, steps, pdl; const char *what; } fcase;

static const fcase cases[] = {
    { 4096, 128, 64, 128, 8, 4, 50288, 3, 1, "Mamba-2 8B layer + head, PDL" },
    { 4096, 128, 64, 128, 8, 4, 50288, 2, 0, "Mamba-2 8B layer + head, plain launches" },
    { 64, 8, 16, 16, 2, 4, 300, 3, 1, "tiny fixture (d 64, P 16, N 16), PDL" },
    { 192, 6, 64, 64, 2, 4, 4096, 3, 1, "bundled model (d 192, P 64, N 64), PDL" },
    { 2560, 80, 64, 128, 1, 4, 50288, 2, 1, "Mamba-2 2.7B (G 1), PDL" },
};

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

static double cmp(const char *what, const char *name, const float *dev, const float *ref, size_t n, float *host) {
    if (!em_gpu_fetch(host, dev, n * sizeof(float))) return INFINITY;
    size_t w = 0;
    const double e = em_max_rel_err(host, ref, n, &w);
    CHECK_MSG(e <= TOL, "%s: %s: max rel err %.3g (worst [%zu]: got %.7g ref %.7g)", what, name, e, w, (double)host[w],
              (double)ref[w]);
    return e;
}

static void run_case(const fcase *c, em_rng *r) {
    const uint32_t d = c->d, H = c->H, P = c->P, N = c->N, G = c->G, K = c->K, V = c->vocab;
    const uint32_t di = H * P, GN = G * N, cd = di + 2 * GN, dip = 2 * di + 2 * GN + H, group = di / G;
    const size_t n_conv = (size_t)cd * (K - 1), n_ssm = (size_t)H * P * N;
    /* host: weights, states, x */
    float *norm_w = rnd(r, d, 0.2f, 1.0f), *conv_w = rnd(r, (size_t)cd * K, 0.5f, 0.0f), *conv_b = rnd(r, cd, 0.1f, 0.0f);
    float *A = rnd(r, H, 0.5f, -1.0f), *D = rnd(r, H, 0.5f, 1.0f), *dt_bias = rnd(r, H, 1.0f, -2.0f);
    float *gnorm_w = rnd(r, di, 0.2f, 1.0f), *norm_f = rnd(r, d, 0.2f, 1.0f);
    uint16_t *in_proj = rnd_bf16(r, (size_t)dip * d, 1.0f / sqrtf((float)d));
    uint16_t *out_proj = rnd_bf16(r, (size_t)d * di, 1.0f / sqrtf((float)di));
    uint16_t *head = rnd_bf16(r, (size_t)V * d, 1.0f / sqrtf((float)d));
    float *conv_s = rnd(r, n_conv, 1.0f, 0.0f), *ssm_s = rnd(r, n_ssm, 1.0f, 0.0f), *x = rnd(r, d, 1.0f, 0.0f);
    float *proj = em_xmalloc(dip * 4), *y = em_xmalloc(di * 4), *sumsq = em_xmalloc(H * 4), *logits = em_xmalloc((size_t)V * 4);
    float *host = em_xmalloc(((size_t)V > n_ssm ? (size_t)V : n_ssm) * 4);
    /* device copies */
    float *d_norm_w = em_gpu_dup(norm_w, d * 4), *d_conv_w = em_gpu_dup(conv_w, (size_t)cd * K * 4);
    float *d_conv_b = em_gpu_dup(conv_b, cd * 4), *d_A = em_gpu_dup(A, H * 4), *d_D = em_gpu_dup(D, H * 4);
    float *d_dt_bias = em_gpu_dup(dt_bias, H * 4), *d_gnorm_w = em_gpu_dup(gnorm_w, di * 4);
    float *d_norm_f = em_gpu_dup(norm_f, d * 4);
    void *d_in = em_gpu_dup(in_proj, (size_t)dip * d * 2), *d_out = em_gpu_dup(out_proj, (size_t)d * di * 2);
    void *d_head = em_gpu_dup(head, (size_t)V * d * 2);
    float *d_conv_s = em_gpu_dup(conv_s, n_conv * 4), *d_ssm_s = em_gpu_dup(ssm_s, n_ssm * 4), *d_x = em_gpu_dup(x, d * 4);
    float *d_proj = em_gpu_poisoned(dip * 4), *d_y = em_gpu_poisoned(di * 4), *d_sumsq = em_gpu_poisoned(H * 4);
    float *d_logits = em_gpu_poisoned((size_t)V * 4);
    cudaStream_t st = NULL;
    CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking) == cudaSuccess);
    if (!d_norm_w || !d_conv_w || !d_conv_b || !d_A || !d_D || !d_dt_bias || !d_gnorm_w || !d_norm_f || !d_in ||
        !d_out || !d_head || !d_conv_s || !d_ssm_s || !d_x || !d_proj || !d_y || !d_sumsq || !d_logits || !st) {
        CHECK_MSG(0, "%s: device setup failed: %s", c->what, em_last_error());
        return;
    }
    const uint32_t wf = c->pdl ? EM_LINEAR_W_CONST : 0;
    double worst = 0;
    for (uint32_t step = 0; step < c->steps; step++) {
        /* the twin: one token through the layer, then the head */
        em_norm_linear_args in = { .x = x, .norm_w = norm_w, .eps = 1e-5f, .w = in_proj, .w_dtype = EM_DTYPE_BF16,
                                   .y = proj, .n_in = d, .n_out = dip, .conv_off = di, .conv_dim = cd, .K = K,
                                   .conv_state = conv_s, .conv_w = conv_w, .conv_b = conv_b, .flags = wf };
        em_ssm_args sa = { .x = proj + di, .dt = proj + di + cd, .B = proj + 2 * di, .C = proj + 2 * di + GN, .A = A,
                           .D = D, .dt_bias = dt_bias, .state = ssm_s, .y = y, .n_tok = 1, .H = H, .P = P, .N = N,
                           .G = G, .dt_min = 0.0f, .dt_max = INFINITY, .z = proj, .sumsq = sumsq,
                           .flags = c->pdl ? EM_SSM_STATE_OWN : 0 };
        em_gated_linear_args out = { .y = y, .sumsq = sumsq, .norm_w = gnorm_w, .group = group, .P = P, .eps = 1e-5f,
                                     .w = out_proj, .w_dtype = EM_DTYPE_BF16, .x = x, .n_in = di, .n_out = d,
                                     .flags = wf };
        em_norm_linear_args hd = { .x = x, .norm_w = norm_f, .eps = 1e-5f, .w = head, .w_dtype = EM_DTYPE_BF16,
                                   .y = logits, .n_in = d, .n_out = V, .flags = wf };
        em_ref_norm_linear(&in);
        em_ref_ssm(&sa);
        em_ref_gated_linear(&out);
        em_ref_norm_linear(&hd);
        /* the kernels: the same args with device pointers, outputs poisoned first */
        const size_t nan_bytes[] = { dip * 4, di * 4, H * 4, (size_t)V * 4 };
        float *const nan_bufs[] = { d_proj, d_y, d_sumsq, d_logits };
        for (int k = 0; k < 4; k++) CHECK(cudaMemsetAsync(nan_bufs[k], 0xff, nan_bytes[k], st) == cudaSuccess);
        in.x = d_x; in.norm_w = d_norm_w; in.w = d_in; in.y = d_proj; in.conv_state = d_conv_s; in.conv_w = d_conv_w;
        in.conv_b = d_conv_b;
        sa.x = d_proj + di; sa.dt = d_proj + di + cd; sa.B = d_proj + 2 * di; sa.C = d_proj + 2 * di + GN; sa.A = d_A;
        sa.D = d_D; sa.dt_bias = d_dt_bias; sa.state = d_ssm_s; sa.y = d_y; sa.z = d_proj; sa.sumsq = d_sumsq;
        out.y = d_y; out.sumsq = d_sumsq; out.norm_w = d_gnorm_w; out.w = d_out; out.x = d_x;
        hd.x = d_x; hd.norm_w = d_norm_f; hd.w = d_head; hd.y = d_logits;
        CHECK(em_cuda_norm_linear_supported(&in) && em_cuda_ssm_supported(&sa) && em_cuda_gated_linear_supported(&out) &&
              em_cuda_norm_linear_supported(&hd));
        em_status s = em_cuda_norm_linear(&in, st);
        if (s == EM_OK) s = em_cuda_ssm(&sa, st);
        if (s == EM_OK) s = em_cuda_gated_linear(&out, st);
        if (s == EM_OK) s = em_cuda_norm_linear(&hd, st);
        if (s == EM_OK) s = em_cuda_sync(st);
        CHECK_MSG(s == EM_OK, "%s: step %u: %s: %s", c->what, step, em_status_str(s), em_last_error());
        if (s != EM_OK) break;
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
    printf("  %-46s %u steps: worst max rel err %.2e (limit %.0e)\n", c->what, c->steps, worst, TOL);
    cudaStreamDestroy(st);
    void *const dev[] = { d_norm_w, d_conv_w, d_conv_b, d_A, d_D, d_dt_bias, d_gnorm_w, d_norm_f, d_in, d_out, d_head,
                          d_conv_s, d_ssm_s, d_x, d_proj, d_y, d_sumsq, d_logits };
    for (size_t k = 0; k < LEN(dev); k++) em_cuda_free(dev[k]);
    void *const hst[] = { norm_w, conv_w, conv_b, A, D, dt_bias, gnorm_w, norm_f, in_proj, out_proj, head, conv_s,
                          ssm_s, x, proj, y, sumsq, logits, host };
    for (size_t k = 0; k < LEN(hst); k++) free(hst[k]);
}

/* What the fused launchers refuse: shapes the fused forms cannot take go to the six-op step instead. */
static void check_refusals(void) {
    em_gated_linear_args g = { .group = 100, .P = 50, .n_in = 200, .n_out = 8, .w_dtype = EM_DTYPE_BF16 };
    CHECK(!em_cuda_gated_linear_supported(&g)); /* NULL pointers, group % 8 != 0 */
    CHECK(em_cuda_gated_linear(&g, NULL) == EM_ERR_INVALID_ARG);
    em_norm_linear_args n = { .n_in = 12, .n_out = 8, .w_dtype = EM_DTYPE_F32 };
    CHECK(!em_cuda_norm_linear_supported(&n));
    CHECK(em_cuda_norm_linear(&n, NULL) == EM_ERR_INVALID_ARG);
}

/* ---- --perf: one 8B layer in a graph, fused vs the six-op layer, and each fused kernel alone -------------------- */
#define PERF_LAYERS 8 /* distinct layers cycled through: 1.8 GB of weights, far past L2 */

typedef struct perf_ctx {
    uint32_t d, H, P, N, G, K, dip, di, cd;
    void *in_w[PERF_LAYERS], *out_w[PERF_LAYERS];
    float *norm_w, *conv_w, *conv_b, *A, *D, *dt_bias, *gnorm_w; /* shared by the layers (small) */
    float *conv_s[PERF_LAYERS], *ssm_s[PERF_LAYERS];
    float *x, *xn, *proj, *xbc, *y, *delta, *sumsq;
    int which; /* 0 fused layer, 1 six-op layer, 2 norm_linear, 3 ssm, 4 gated_linear, 5 plain in_proj, 6 plain out_proj */
} perf_ctx;

static em_status perf_launch(void *ctx, int i, void *st) {
    perf_ctx *p = ctx;
    const int l = i % PERF_LAYERS;
    const uint32_t GN = p->G * p->N, group = p->di / p->G;
    em_norm_linear_args in = { .x = p->x, .norm_w = p->norm_w, .eps = 1e-5f, .w = p->in_w[l], .w_dtype = EM_DTYPE_BF16,
                               .y = p->proj, .n_in = p->d, .n_out = p->dip, .conv_off = p->di, .conv_dim = p->cd,
                               .K = p->K, .conv_state = p->conv_s[l], .conv_w = p->conv_w, .conv_b = p->conv_b,
                               .flags = EM_LINEAR_W_CONST };
    em_ssm_args sa = { .x = p->proj + p->di, .dt = p->proj + p->di + p->cd, .B = p->proj + 2 * p->di,
                       .C = p->proj + 2 * p->di + GN, .A = p->A, .D = p->D, .dt_bias = p->dt_bias, .state = p->ssm_s[l],
                       .y = p->y, .n_tok = 1, .H = p->H, .P = p->P, .N = p->N, .G = p->G, .dt_min = 0.0f,
                       .dt_max = INFINITY, .z = p->proj, .sumsq = p->sumsq, .flags = EM_SSM_STATE_OWN };
    em_gated_linear_args out = { .y = p->y, .sumsq = p->sumsq, .norm_w = p->gnorm_w, .group = group, .P = p->P,
                                 .eps = 1e-5f, .w = p->out_w[l], .w_dtype = EM_DTYPE_BF16, .x = p->x, .n_in = p->di,
                                 .n_out = p->d, .flags = EM_LINEAR_W_CONST };
    em_linear_args lin = { .w = p->in_w[l], .w_dtype = EM_DTYPE_BF16, .x = p->xn, .y = p->proj, .n_tok = 1,
                           .n_in = p->d, .n_out = p->dip };
    em_linear_args lout = { .w = p->out_w[l], .w_dtype = EM_DTYPE_BF16, .x = p->y, .y = p->delta, .n_tok = 1,
                            .n_in = p->di, .n_out = p->d };
    switch (p->which) {
    case 0:
        EM_TRY(em_cuda_norm_linear(&in, st));
        EM_TRY(em_cuda_ssm(&sa, st));
        return em_cuda_gated_linear(&out, st);
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
    case 2: return em_cuda_norm_linear(&in, st);
    case 3: return em_cuda_ssm(&sa, st);
    case 4: return em_cuda_gated_linear(&out, st);
    case 5: lin.flags = EM_LINEAR_W_CONST; return em_cuda_linear(&lin, st);
    default: lout.flags = EM_LINEAR_W_CONST; return em_cuda_linear(&lout, st);
    }
}

static void run_perf(const em_gpu_env *env) {
    perf_ctx p = { .d = 4096, .H = 128, .P = 64, .N = 128, .G = 8, .K = 4 };
    p.di = p.H * p.P;
    p.cd = p.di + 2 * p.G * p.N;
    p.dip = 2 * p.di + 2 * p.G * p.N + p.H;
    int ok = 1;
    /* constant weights (a memset pattern): a GEMV's speed does not depend on the values; 0x3c.. = 0.0115 */
    for (int l = 0; l < PERF_LAYERS; l++) {
        ok &= em_cuda_malloc(&p.in_w[l], (size_t)p.dip * p.d * 2) == EM_OK;
        ok &= em_cuda_malloc(&p.out_w[l], (size_t)p.d * p.di * 2) == EM_OK;
        ok &= em_cuda_malloc((void **)&p.conv_s[l], (size_t)p.cd * (p.K - 1) * 4) == EM_OK;
        ok &= em_cuda_malloc((void **)&p.ssm_s[l], (size_t)p.H * p.P * p.N * 4) == EM_OK;
        if (!ok) break;
        cudaMemset(p.in_w[l], 0x3c, (size_t)p.dip * p.d * 2);
        cudaMemset(p.out_w[l], 0x3c, (size_t)p.d * p.di * 2);
        cudaMemset(p.conv_s[l], 0x3c, (size_t)p.cd * (p.K - 1) * 4);
        cudaMemset(p.ssm_s[l], 0x3c, (size_t)p.H * p.P * p.N * 4);
    }
    float **small[] = { &p.norm_w, &p.conv_w, &p.conv_b, &p.A, &p.D, &p.dt_bias, &p.gnorm_w, &p.x, &p.xn, &p.proj, &p.xbc,
                        &p.y, &p.delta, &p.sumsq };
    for (size_t k = 0; ok && k < LEN(small); k++) {
        ok &= em_cuda_malloc((void **)small[k], (size_t)p.dip * 4 * 4) == EM_OK; /* generous: every one fits */
        if (ok) cudaMemset(*small[k], small[k] == &p.A ? 0xbc : 0x3c, (size_t)p.dip * 4 * 4);
    }
    CHECK_MSG(ok && cudaDeviceSynchronize() == cudaSuccess, "--perf setup: %s", em_last_error());
    if (!ok) return;
    const double in_b = (double)p.dip * p.d * 2, out_b = (double)p.d * p.di * 2, st_b = 2.0 * p.H * p.P * p.N * 4;
    static const char *names[] = { "fused layer (3 kernels, PDL)", "six-op layer (as before)", "norm_linear (in_proj)",
                                   "ssm + gate + sumsq", "gated_linear (out_proj)", "plain in_proj GEMV (W_CONST)",
                                   "plain out_proj GEMV (W_CONST)" };
    const double bytes[] = { in_b + out_b + st_b, in_b + out_b + st_b, in_b, st_b, out_b, in_b, out_b };
    printf("--perf: Mamba-2 8B layer, %d layers cycled, in a graph of %d launches (us per launch; %% of the %.0f GB/s "
           "read pass)\n", PERF_LAYERS, EM_GPU_GRAPH_LAUNCHES, env->read_gbps);
    for (int w = 0; w < 7; w++) {
        p.which = w;
        em_gpu_timing t;
        em_status st = em_gpu_time(perf_launch, &p, &t);
        CHECK_MSG(st == EM_OK, "--perf %s: %s", names[w], em_last_error());
        if (st != EM_OK) break;
        const double ideal_us = bytes[w] / (env->read_gbps * 1e3);
        printf("  %-34s single %7.2f us  graph %7.2f us  ideal %6.2f us  %5.1f %%\n", names[w], t.launch_us, t.graph_us,
               ideal_us, 100.0 * ideal_us / t.graph_us);
    }
    for (int l = 0; l < PERF_LAYERS; l++) {
        em_cuda_free(p.in_w[l]); em_cuda_free(p.out_w[l]); em_cuda_free(p.conv_s[l]); em_cuda_free(p.ssm_s[l]);
    }
    for (size_t k = 0; k < LEN(small); k++) em_cuda_free(*small[k]);
}

int main(int argc, char **argv) {
    em_gpu_env env;
    em_gpu_test_init("test_fused_cuda", argc, argv, &env);
    check_refusals();
    em_rng rng;
    em_rng_seed(&rng, 20261123);
    for (size_t i = 0; i < LEN(cases); i++) run_case(&cases[i], &rng);
    if (env.perf) run_perf(&env);
    return em_test_finish("test_fused_cuda");
}
