/*
 * test_ref_fused.c — proves that the fused decode step (kernels/ops.h: norm_linear -> ssm with z and sumsq ->
 * gated_linear, the twins kernels/ref/fused_ref.c and em_ref_ssm's z / sumsq) computes what the six-op step of
 * the executor computes (rmsnorm with the residual add -> linear -> conv1d -> ssm -> gated_norm -> linear), on the
 * float32 twins: random layers, 3 layers x 4 tokens, each token run through every layer both ways; the residual
 * stream, the conv and SSM states and the head's logits must agree to fp32 rounding (1e-5 relative: the two forms
 * differ only in where the norm scale multiplies and in the order of a few sums).
 * Weights: BF16, and INT8 per output channel (issue 10: in_proj, out_proj and the head as int8 with w_scale, both
 * forms given the same int8 values and scales; this proves the fused twins pass w_scale through to em_ref_linear,
 * so that tests/test_fused_cuda.c's INT8 cases compare the INT8 fused kernels with the six-op step's arithmetic).
 * Shapes: the tiny fixture's (d 64, H 8, P 16, N 16, G 2) and the bundled model's (d 192, H 6, P 64, N 64, G 2).
 * Also the hybrid MLP layer's fused form (norm_linear with the activation epilogue, the down projection adding into
 * the residual stream with EM_LINEAR_ADD) against rmsnorm -> em_ref_mlp -> residual add, BF16 and INT8.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h" /* em_mlp_act */
#include "ops.h"
#include "testutil.h"
#include "util.h"

#define TOL 1e-5
#define N_LAYER 3
#define N_STEP 4

static void *em_xmalloc_t(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    return p;
}

typedef struct shape { uint32_t d, H, P, N, G, K, vocab; em_dtype wdt; const char *what; } shape;

typedef struct layer {
    float *norm_w, *conv_w, *conv_b, *A, *D, *dt_bias, *gnorm_w;
    void *in_proj, *out_proj;
    float *in_s, *out_s; /* per-row scales (INT8), else NULL */
} layer;

static uint16_t *rand_bf16(em_rng *r, size_t n, float scale) {
    uint16_t *w = em_xmalloc_t(n * sizeof *w);
    for (size_t i = 0; i < n; i++) w[i] = em_f32_to_bf16(em_rng_uniform(r, scale));
    return w;
}
static float *rand_f32(em_rng *r, size_t n, float scale, float offset) {
    float *x = em_xmalloc_t(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = offset + em_rng_uniform(r, scale);
    return x;
}
/* A [rows, cols] weight of dtype dt with values of magnitude up to `scale`: BF16 (*w_scale = NULL), or INT8 q
 * uniform over [-127, 127] with per-row scales (scale / 127) * [0.5, 1.5] in *w_scale. */
static void *rand_w(em_rng *r, em_dtype dt, uint32_t rows, uint32_t cols, float scale, float **w_scale) {
    if (dt != EM_DTYPE_I8) {
        *w_scale = NULL;
        return rand_bf16(r, (size_t)rows * cols, scale);
    }
    int8_t *q = em_xmalloc_t((size_t)rows * cols);
    for (size_t i = 0; i < (size_t)rows * cols; i++) q[i] = (int8_t)((int)(em_rng_u32(r) % 255) - 127);
    *w_scale = rand_f32(r, rows, 0.5f * scale / 127.0f, scale / 127.0f);
    return q;
}

static void run_shape(const shape *S, uint64_t seed) {
    em_rng r;
    em_rng_seed(&r, seed);
    const uint32_t d = S->d, H = S->H, P = S->P, N = S->N, G = S->G, K = S->K;
    const uint32_t di = H * P, GN = G * N, conv_dim = di + 2 * GN, dip = 2 * di + 2 * GN + H, group = di / G;
    layer L[N_LAYER];
    for (int l = 0; l < N_LAYER; l++) {
        L[l].norm_w = rand_f32(&r, d, 0.2f, 1.0f);
        L[l].in_proj = rand_w(&r, S->wdt, dip, d, 1.0f / sqrtf((float)d), &L[l].in_s);
        L[l].conv_w = rand_f32(&r, (size_t)conv_dim * K, 0.5f, 0.0f);
        L[l].conv_b = rand_f32(&r, conv_dim, 0.1f, 0.0f);
        L[l].A = rand_f32(&r, H, 0.5f, -1.0f); /* in [-1.5, -0.5] */
        L[l].D = rand_f32(&r, H, 0.5f, 1.0f);
        L[l].dt_bias = rand_f32(&r, H, 1.0f, -2.0f);
        L[l].gnorm_w = rand_f32(&r, di, 0.2f, 1.0f);
        L[l].out_proj = rand_w(&r, S->wdt, d, di, 1.0f / sqrtf((float)di), &L[l].out_s);
    }
    float *norm_f = rand_f32(&r, d, 0.2f, 1.0f);
    float *head_s = NULL;
    void *head = rand_w(&r, S->wdt, S->vocab, d, 1.0f / sqrtf((float)d), &head_s);

    /* two copies of the state: [u]nfused and [f]used */
    const size_t conv_n = (size_t)N_LAYER * conv_dim * (K - 1), ssm_n = (size_t)N_LAYER * H * P * N;
    float *conv_u = rand_f32(&r, conv_n, 1.0f, 0.0f), *ssm_u = rand_f32(&r, ssm_n, 1.0f, 0.0f);
    float *conv_f = em_xmalloc_t(conv_n * 4), *ssm_f = em_xmalloc_t(ssm_n * 4);
    memcpy(conv_f, conv_u, conv_n * 4);
    memcpy(ssm_f, ssm_u, ssm_n * 4);
    float *x_u = em_xmalloc_t(d * 4), *x_f = em_xmalloc_t(d * 4), *xn = em_xmalloc_t(d * 4), *delta = em_xmalloc_t(d * 4);
    float *proj_u = em_xmalloc_t(dip * 4), *proj_f = em_xmalloc_t(dip * 4), *xbc = em_xmalloc_t(conv_dim * 4);
    float *y_u = em_xmalloc_t(di * 4), *y_f = em_xmalloc_t(di * 4), *sumsq = em_xmalloc_t(H * 4);
    float *lg_u = em_xmalloc_t((size_t)S->vocab * 4), *lg_f = em_xmalloc_t((size_t)S->vocab * 4);
    double worst = 0;

    for (int t = 0; t < N_STEP; t++) {
        em_fill_uniform(&r, x_u, d, 1.0f); /* a fresh embedding row */
        memcpy(x_f, x_u, d * 4);
        const float *dl = NULL;
        for (int l = 0; l < N_LAYER; l++) {
            float *cs_u = conv_u + (size_t)l * conv_dim * (K - 1), *cs_f = conv_f + (size_t)l * conv_dim * (K - 1);
            float *ss_u = ssm_u + (size_t)l * H * P * N, *ss_f = ssm_f + (size_t)l * H * P * N;
            /* unfused: the executor's six ops (the residual add deferred into the next rmsnorm) */
            em_rmsnorm_args na = { .x = x_u, .delta = dl, .w = L[l].norm_w, .y = xn, .n_tok = 1, .d = d, .eps = 1e-5f };
            em_ref_rmsnorm(&na);
            em_linear_args in = { .w = L[l].in_proj, .w_dtype = S->wdt, .w_scale = L[l].in_s, .x = xn, .y = proj_u,
                                  .n_tok = 1, .n_in = d, .n_out = dip };
            em_ref_linear(&in);
            em_conv1d_args ca = { .x = proj_u + di, .state = cs_u, .w = L[l].conv_w, .b = L[l].conv_b, .y = xbc,
                                  .n_tok = 1, .C = conv_dim, .K = K, .silu = EM_SILU_ON };
            em_ref_conv1d(&ca);
            em_ssm_args sa = { .x = xbc, .dt = proj_u + di + conv_dim, .B = xbc + di, .C = xbc + di + GN, .A = L[l].A,
                               .D = L[l].D, .dt_bias = L[l].dt_bias, .state = ss_u, .y = y_u, .n_tok = 1, .H = H,
                               .P = P, .N = N, .G = G, .dt_min = 0.0f, .dt_max = INFINITY };
            em_ref_ssm(&sa);
            em_gated_norm_args ga = { .y = y_u, .z = proj_u, .w = L[l].gnorm_w, .out = y_u, .n_tok = 1, .d = di,
                                      .group = group, .eps = 1e-5f };
            em_ref_gated_norm(&ga);
            em_linear_args out = { .w = L[l].out_proj, .w_dtype = S->wdt, .w_scale = L[l].out_s, .x = y_u,
                                   .y = delta, .n_tok = 1, .n_in = di, .n_out = d };
            em_ref_linear(&out);
            dl = delta;
            /* fused: three ops */
            em_norm_linear_args fi = { .x = x_f, .norm_w = L[l].norm_w, .eps = 1e-5f, .w = L[l].in_proj,
                                       .w_dtype = S->wdt, .w_scale = L[l].in_s, .y = proj_f, .n_in = d,
                                       .n_out = dip, .conv_off = di, .conv_dim = conv_dim, .K = K, .conv_state = cs_f, .conv_w = L[l].conv_w,
                                       .conv_b = L[l].conv_b };
            em_ref_norm_linear(&fi);
            em_ssm_args fs = { .x = proj_f + di, .dt = proj_f + di + conv_dim, .B = proj_f + 2 * di,
                               .C = proj_f + 2 * di + GN, .A = L[l].A, .D = L[l].D, .dt_bias = L[l].dt_bias, .state = ss_f,
                               .y = y_f, .n_tok = 1, .H = H, .P = P, .N = N, .G = G, .dt_min = 0.0f, .dt_max = INFINITY,
                               .z = proj_f, .sumsq = sumsq };
            em_ref_ssm(&fs);
            em_gated_linear_args fo = { .y = y_f, .sumsq = sumsq, .norm_w = L[l].gnorm_w, .group = group, .P = P,
                                        .eps = 1e-5f, .w = L[l].out_proj, .w_dtype = S->wdt, .w_scale = L[l].out_s,
                                        .x = x_f, .n_in = di, .n_out = d };
            em_ref_gated_linear(&fo);
            double e = em_max_rel_err(cs_f, cs_u, (size_t)conv_dim * (K - 1), NULL);
            if (e > worst) worst = e;
            CHECK_MSG(e <= TOL, "%s: step %d layer %d conv state: %.3g", S->what, t, l, e);
            e = em_max_rel_err(ss_f, ss_u, (size_t)H * P * N, NULL);
            if (e > worst) worst = e;
            CHECK_MSG(e <= TOL, "%s: step %d layer %d ssm state: %.3g", S->what, t, l, e);
        }
        /* the last residual add, then the head behind the final norm, both ways */
        em_rmsnorm_args fa = { .x = x_u, .delta = dl, .w = norm_f, .y = xn, .n_tok = 1, .d = d, .eps = 1e-5f };
        em_ref_rmsnorm(&fa);
        em_linear_args hl = { .w = head, .w_dtype = S->wdt, .w_scale = head_s, .x = xn, .y = lg_u, .n_tok = 1,
                              .n_in = d, .n_out = S->vocab };
        em_ref_linear(&hl);
        em_norm_linear_args fh = { .x = x_f, .norm_w = norm_f, .eps = 1e-5f, .w = head, .w_dtype = S->wdt,
                                   .w_scale = head_s, .y = lg_f, .n_in = d, .n_out = S->vocab };
        em_ref_norm_linear(&fh);
        double e = em_max_rel_err(x_f, x_u, d, NULL);
        if (e > worst) worst = e;
        CHECK_MSG(e <= TOL, "%s: step %d residual stream: %.3g", S->what, t, e);
        e = em_max_rel_err(lg_f, lg_u, S->vocab, NULL);
        if (e > worst) worst = e;
        CHECK_MSG(e <= TOL, "%s: step %d logits: %.3g", S->what, t, e);
    }
    printf("  %-40s %d layers x %d tokens: worst max rel err %.2e (limit %.0e)\n", S->what, N_LAYER, N_STEP, worst, TOL);

    for (int l = 0; l < N_LAYER; l++) {
        free(L[l].norm_w); free(L[l].in_proj); free(L[l].conv_w); free(L[l].conv_b); free(L[l].A); free(L[l].D);
        free(L[l].dt_bias); free(L[l].gnorm_w); free(L[l].out_proj); free(L[l].in_s); free(L[l].out_s);
    }
    free(norm_f); free(head); free(head_s);
    free(conv_u); free(ssm_u); free(conv_f); free(ssm_f); free(x_u); free(x_f); free(xn);
    free(delta); free(proj_u); free(proj_f); free(xbc); free(y_u); free(y_f); free(sumsq); free(lg_u); free(lg_f);
}

/* The hybrid's MLP layer in the fused decode step (runtime/cuda_exec.c queue_aux_fused: norm_linear with the
 * activation as its epilogue, then the down projection with EM_LINEAR_ADD into the residual stream) against the
 * prompt path's form (rmsnorm -> em_ref_mlp into delta -> x += delta), N_STEP tokens through one layer. */
static void run_mlp_aux(uint32_t d, uint32_t ff, uint32_t act, em_dtype dt, uint64_t seed, const char *what) {
    em_rng r;
    em_rng_seed(&r, seed);
    float *up_s, *down_s;
    void *up = rand_w(&r, dt, ff, d, 1.0f / sqrtf((float)d), &up_s);
    void *down = rand_w(&r, dt, d, ff, 1.0f / sqrtf((float)ff), &down_s);
    float *nw = rand_f32(&r, d, 0.2f, 1.0f), *x6 = rand_f32(&r, d, 1.0f, 0.0f), *xf = em_xmalloc_t(d * 4);
    float *xn = em_xmalloc_t(d * 4), *h = em_xmalloc_t(ff * 4), *delta = em_xmalloc_t(d * 4);
    memcpy(xf, x6, d * 4);
    double worst = 0;
    for (int step = 0; step < N_STEP; step++) {
        em_rmsnorm_args na = { .x = x6, .w = nw, .y = xn, .n_tok = 1, .d = d, .eps = 1e-5f };
        em_ref_rmsnorm(&na);
        em_mlp_args ma = { .up = up, .up_dtype = dt, .down = down, .down_dtype = dt, .up_scale = up_s,
                           .down_scale = down_s, .x = xn, .h = h, .y = delta, .n_tok = 1, .d = d, .d_ff = ff,
                           .act = act };
        em_ref_mlp(&ma);
        for (uint32_t i = 0; i < d; i++) x6[i] += delta[i];
        em_norm_linear_args in = { .x = xf, .norm_w = nw, .eps = 1e-5f, .w = up, .w_dtype = dt, .w_scale = up_s,
                                   .y = h, .n_in = d, .n_out = ff, .act = act };
        em_ref_norm_linear(&in);
        em_linear_args dn = { .w = down, .w_dtype = dt, .w_scale = down_s, .x = h, .y = xf, .n_tok = 1, .n_in = ff,
                              .n_out = d, .flags = EM_LINEAR_ADD };
        em_ref_linear(&dn);
        const double e = em_max_rel_err(xf, x6, d, NULL);
        if (e > worst) worst = e;
        x6[step] += 0.5f; /* a different token next step, on both sides */
        xf[step] += 0.5f;
    }
    CHECK_MSG(worst <= TOL, "%s: fused MLP layer vs rmsnorm + mlp + residual: max rel err %.3g", what, worst);
    printf("  %-52s %d steps: worst max rel err %.2e\n", what, N_STEP, worst);
    free(up); free(down); free(up_s); free(down_s); free(nw); free(x6); free(xf); free(xn); free(h); free(delta);
}

int main(void) {
    run_mlp_aux(192, 768, EM_ACT_GELU, EM_DTYPE_BF16, 77, "hybrid MLP (d 192, ff 768), GELU, BF16");
    run_mlp_aux(192, 768, EM_ACT_RELU2, EM_DTYPE_BF16, 78, "hybrid MLP (d 192, ff 768), relu^2, BF16");
    run_mlp_aux(192, 768, EM_ACT_SILU, EM_DTYPE_I8, 79, "hybrid MLP (d 192, ff 768), SiLU, INT8");
    run_mlp_aux(64, 200, EM_ACT_GELU, EM_DTYPE_I8, 80, "hybrid MLP (d 64, ff 200), GELU, INT8");
    static const shape shapes[] = {
        { 64, 8, 16, 16, 2, 4, 300, EM_DTYPE_BF16, "tiny fixture (d 64, P 16, N 16)" },
        { 192, 6, 64, 64, 2, 4, 4096, EM_DTYPE_BF16, "bundled model (d 192, P 64, N 64)" },
        { 64, 8, 16, 16, 2, 4, 300, EM_DTYPE_I8, "tiny fixture, INT8 weights" },
        { 192, 6, 64, 64, 2, 4, 4096, EM_DTYPE_I8, "bundled model, INT8 weights" },
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) run_shape(&shapes[i], 1000 + i);
    return em_test_finish("test_ref_fused");
}
