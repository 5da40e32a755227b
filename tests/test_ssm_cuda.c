/*
 * test_ssm_cuda.c — em_cuda_ssm (kernels/ssm.cu) against its float32 C twin em_ref_ssm, one case per line of
 * a table named after model shapes (STYLE.md lesson 8). Fresh seeded random inputs and a random initial
 * state; y poisoned with NaN before every run (padding of a strided y must stay NaN); y AND the updated
 * state are compared by max relative error (limit 1e-5: both sides are fp32, only the summation order
 * over n and FMA contraction differ; each case prints its real figures).
 *
 * The "exec" layout is the executor's (runtime/cuda_exec.c): x, B and C inside one conv row of width
 * conv_dim = H*P + 2*G*N (x_stride = bc_stride = conv_dim), dt inside an in_proj row of width
 * d_in_proj = 2*H*P + 2*G*N + H (z | xBC | dt).
 *
 * Without a CUDA device it prints "SKIP test_ssm_cuda: no CUDA device" and exits 77 (ctest: Skipped).
 *   build/tests/test_ssm_cuda           # check
 *   build/tests/test_ssm_cuda --perf    # + times the big shapes: each vector variant (rows per lane 1, 2,
 *                                       #   4) and the generic path, rotating >= 4x L2 of state buffers
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_ops.h"
#include "cuda_rt.h"
#include "gpu_test.h"
#include "ops.h"
#include "testutil.h"
#include "util.h"

#ifndef EM_HAVE_CUDA
#error "test_ssm_cuda is built only with CUDA (tests/gpu.cmake)"
#endif

#define TOL 1e-5
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

typedef enum ssm_layout { DENSE = 0, EXEC = 1, ALIAS = 2 /* dense, y == x */ } ssm_layout;

typedef struct ssm_case {
    uint32_t H, P, N, G, n_tok;
    ssm_layout layout;
    uint32_t y_pad;     /* y_stride = H*P + y_pad (0: stride 0 = dense) */
    int clamp;          /* dt limits (0.001, 0.1); else (0, inf) = none */
    uint32_t state_off; /* floats the device state pointer is shifted by (1: misaligned -> generic path) */
    int path;           /* em_cuda_ssm_path: 0 auto, -1 generic, 1/2/4 vector rows per lane */
    int perf;           /* --perf: time every path of this shape */
    const char *what;
} ssm_case;

static const ssm_case cases[] = {
    // Mamba-2 8B (d_inner 8192: H 128, P 64, N 128, G 8), the executor's strides
    { 128, 64, 128, 8, 1, EXEC, .perf = 1, .what = "Mamba-2 8B, decode step" },
    { 128, 64, 128, 8, 3, EXEC, .what = "Mamba-2 8B, 3 tokens" },
    { 128, 64, 128, 8, 40, EXEC, .perf = 1, .what = "Mamba-2 8B, prompt of 40 (sequential)" },
    { 128, 64, 128, 8, 1, EXEC, .path = 1, .what = "Mamba-2 8B, decode, 1 row per lane" },
    { 128, 64, 128, 8, 3, EXEC, .path = 4, .what = "Mamba-2 8B, 3 tokens, 4 rows per lane" },
    { 128, 64, 128, 8, 2, EXEC, .path = -1, .what = "Mamba-2 8B, 2 tokens, generic path" },
    { 128, 64, 128, 8, 1, EXEC, .clamp = 1, .what = "Mamba-2 8B, decode, dt clamped" },
    // other Mamba-2 sizes (HF state-spaces/mamba2-*: P 64, N 128, G 1)
    { 80, 64, 128, 1, 1, EXEC, .what = "Mamba-2 2.7B, decode" },
    { 24, 64, 128, 1, 5, EXEC, .what = "Mamba-2 130M, 5 tokens" },
    // the tiny fixture (tests/data/mamba2_tiny: d_model 64, H 8, P 16, N 16, G 2)
    { 8, 16, 16, 2, 1, EXEC, .what = "tiny fixture, decode" },
    { 8, 16, 16, 2, 3, EXEC, .what = "tiny fixture, 3 tokens" },
    { 8, 16, 16, 2, 40, EXEC, .what = "tiny fixture, prompt of 40" },
    { 8, 16, 16, 2, 3, EXEC, .clamp = 1, .what = "tiny fixture, dt clamped" },
    { 8, 16, 16, 2, 3, EXEC, .path = -1, .what = "tiny fixture, generic path" },
    // every vector shape, partial warps, strides, odd sizes
    { 4, 8, 32, 1, 3, DENSE, .what = "N 32, dense" },
    { 6, 33, 64, 3, 5, DENSE, .y_pad = 3, .what = "N 64, P 33 (partial warp), strided y" },
    { 4, 64, 256, 2, 2, DENSE, .what = "N 256 (2 float4 a lane)" },
    { 4, 64, 256, 2, 2, DENSE, .path = 4, .what = "N 256, 4 rows per lane" },
    { 5, 3, 16, 5, 4, DENSE, .path = 4, .what = "N 16, P 3 < rows per warp" },
    { 6, 7, 20, 3, 3, EXEC, .what = "N 20: generic (exec layout, B unaligned)" },
    { 3, 5, 45, 1, 2, DENSE, .y_pad = 1, .what = "N 45 > 32: generic, two lanes' strides" },
    { 16, 64, 128, 2, 2, DENSE, .state_off = 1, .what = "state misaligned: generic" },
    { 8, 16, 16, 2, 3, ALIAS, .what = "y == x (in place), vector" },
    { 6, 7, 20, 3, 3, ALIAS, .what = "y == x (in place), generic" },
};

// ---- one case -------------------------------------------------------------------------------------------------

/* Rotated state buffers and the args that use them, for --perf. */
typedef struct ssm_perf_ctx {
    em_ssm_args a;
    float **states;
    int n_states, path;
} ssm_perf_ctx;

static em_status launch_ssm(void *ctx, int i, void *stream) {
    ssm_perf_ctx *c = ctx;
    em_ssm_args a = c->a;
    a.state = c->states[i % c->n_states];
    return em_cuda_ssm_path(&a, stream, c->path);
}

static void time_paths(const ssm_case *c, const em_ssm_args *ga, size_t state_bytes, size_t l2_bytes) {
    /* enough state copies that one rotation streams >= 4x the L2: every timed launch reads its state from DRAM */
    int n = (int)((4 * l2_bytes + state_bytes - 1) / state_bytes);
    if (n < 2) n = 2;
    if (n > 256) n = 256;
    float **states = em_xmalloc(sizeof *states * (size_t)n);
    int made = 0;
    em_status st = EM_OK;
    for (; made < n && st == EM_OK; made++) {
        states[made] = NULL;
        st = em_cuda_malloc((void **)&states[made], state_bytes);
        if (st == EM_OK) st = em_cuda_memcpy(states[made], ga->state, state_bytes); /* finite values */
    }
    CHECK_MSG(st == EM_OK, "%s: state copies: %s (%s)", c->what, em_status_str(st), em_last_error());
    const uint32_t HP = c->H * c->P, GN = c->G * c->N;
    /* the fewest bytes: state read + written, x, dt, B, C read, y written */
    const double bytes = 2.0 * state_bytes + 4.0 * c->n_tok * (2.0 * HP + c->H + 2.0 * GN);
    static const int paths[] = { 0, 1, 2, 4, -1 }; /* 0: what em_cuda_ssm picks */
    for (size_t p = 0; p < LEN(paths) && st == EM_OK; p++) {
        ssm_perf_ctx ctx = { .a = *ga, .states = states, .n_states = made, .path = paths[p] };
        em_gpu_timing t = {0};
        st = em_gpu_time(launch_ssm, &ctx, &t);
        CHECK_MSG(st == EM_OK, "%s: timing path %d: %s (%s)", c->what, paths[p], em_status_str(st), em_last_error());
        char what[96];
        static const char *names[] = { "em_cuda_ssm (default)", "vector, RL 1", "vector, RL 2", "vector, RL 4",
                                       "generic" };
        snprintf(what, sizeof what, "ssm %ux%ux%u n_tok %u, %s", c->H, c->P, c->N, c->n_tok, names[p]);
        if (st == EM_OK) em_gpu_perf_add(what, &t, bytes);
    }
    for (int i = 0; i < made; i++) em_cuda_free(states[i]);
    free(states);
}

static void run_case(const ssm_case *c, em_rng *rng, const em_gpu_env *env) {
    char label[160];
    snprintf(label, sizeof label, "%s [H %u P %u N %u G %u, n_tok %u]", c->what, c->H, c->P, c->N, c->G, c->n_tok);
    const uint32_t H = c->H, P = c->P, N = c->N, G = c->G, nt = c->n_tok, HP = H * P, GN = G * N;
    const size_t n_state = (size_t)HP * N;

    /* Host inputs in the case's layout. EXEC: conv rows [nt, conv_dim] = x | B | C and in_proj rows
     * [nt, d_in_proj] = z | xBC | dt (only dt is read here). DENSE/ALIAS: one dense buffer per input. */
    const uint32_t conv_dim = HP + 2 * GN, d_in_proj = 2 * HP + 2 * GN + H;
    size_t n_xbc, n_dt;
    uint32_t xs = 0, dts = 0, bcs = 0;
    size_t off_x = 0, off_B, off_C, off_dt = 0;
    if (c->layout == EXEC) {
        n_xbc = (size_t)nt * conv_dim;
        n_dt = (size_t)nt * d_in_proj;
        xs = bcs = conv_dim;
        dts = d_in_proj;
        off_B = HP;
        off_C = HP + GN;
        off_dt = HP + conv_dim;
    } else { /* x [nt, HP], then B [nt, GN], then C [nt, GN] in one buffer (dense strides) */
        n_xbc = (size_t)nt * (HP + 2 * GN);
        n_dt = (size_t)nt * H;
        off_B = (size_t)nt * HP;
        off_C = off_B + (size_t)nt * GN;
    }
    const uint32_t ys = c->layout == ALIAS ? 0 : c->y_pad ? HP + c->y_pad : 0;
    const size_t ys_eff = ys ? ys : HP, n_y = (size_t)nt * ys_eff;

    float *xbc = em_xmalloc(n_xbc * 4), *dt = em_xmalloc(n_dt * 4);
    float *A = em_xmalloc(H * 4), *D = em_xmalloc(H * 4), *dtb = em_xmalloc(H * 4);
    float *state0 = em_xmalloc(n_state * 4), *state_ref = em_xmalloc(n_state * 4), *state_got = em_xmalloc(n_state * 4);
    float *y_ref = em_xmalloc(n_y * 4), *y_got = em_xmalloc(n_y * 4);
    em_fill_uniform(rng, xbc, n_xbc, 1.0f);
    em_fill_uniform(rng, dt, n_dt, 1.0f);
    for (uint32_t h = 0; h < H; h++) {
        A[h] = -expf(logf(1.0f) + (em_rng_uniform(rng, 0.5f) + 0.5f) * logf(16.0f)); /* A_log in [0, log 16) */
        D[h] = em_rng_uniform(rng, 1.0f);
        dtb[h] = -2.5f + em_rng_uniform(rng, 1.5f); /* softplus(dt) around 0.01 .. 0.5 */
    }
    em_fill_uniform(rng, state0, n_state, 1.0f);
    memcpy(state_ref, state0, n_state * 4);
    em_poison(y_ref, n_y);

    em_ssm_args ra = { .x = xbc + off_x, .dt = dt + off_dt, .B = xbc + off_B, .C = xbc + off_C, .A = A, .D = D,
                       .dt_bias = dtb, .state = state_ref, .y = y_ref, .n_tok = nt, .H = H, .P = P, .N = N, .G = G,
                       .x_stride = xs, .dt_stride = dts, .bc_stride = bcs, .y_stride = ys,
                       .dt_min = c->clamp ? 0.001f : 0.0f, .dt_max = c->clamp ? 0.1f : INFINITY };
    float *xbc_ref = NULL;
    if (c->layout == ALIAS) { /* the twin in place too, on its own copy of x */
        xbc_ref = em_xmalloc(n_xbc * 4);
        memcpy(xbc_ref, xbc, n_xbc * 4);
        ra.x = xbc_ref;
        ra.B = xbc_ref + off_B;
        ra.C = xbc_ref + off_C;
        ra.y = xbc_ref;
    }
    em_ref_ssm(&ra);

    /* device: same layout; y poisoned; the state shifted by state_off floats when asked */
    float *d_xbc = em_gpu_dup(xbc, n_xbc * 4), *d_dt = em_gpu_dup(dt, n_dt * 4);
    float *d_A = em_gpu_dup(A, H * 4), *d_D = em_gpu_dup(D, H * 4), *d_dtb = em_gpu_dup(dtb, H * 4);
    float *d_state_alloc = em_gpu_poisoned((n_state + c->state_off) * 4);
    float *d_state = d_state_alloc ? d_state_alloc + c->state_off : NULL;
    float *d_y = c->layout == ALIAS ? d_xbc : em_gpu_poisoned(n_y * 4);
    int ok = d_xbc && d_dt && d_A && d_D && d_dtb && d_state && d_y;
    ok = ok && em_cuda_memcpy(d_state, state0, n_state * 4) == EM_OK;
    em_ssm_args ga = ra;
    ga.x = d_xbc + off_x;
    ga.dt = d_dt + off_dt;
    ga.B = d_xbc + off_B;
    ga.C = d_xbc + off_C;
    ga.A = d_A;
    ga.D = d_D;
    ga.dt_bias = d_dtb;
    ga.state = d_state;
    ga.y = d_y;
    em_status st = ok ? em_cuda_ssm_path(&ga, NULL, c->path) : EM_ERR_DEVICE;
    if (st == EM_OK) st = em_cuda_sync(NULL);
    CHECK_MSG(st == EM_OK, "%s: %s (%s)", label, em_status_str(st), em_last_error());
    double err_y = INFINITY, err_s = INFINITY;
    if (st == EM_OK && em_gpu_fetch(y_got, d_y, n_y * 4) && em_gpu_fetch(state_got, d_state, n_state * 4)) {
        const float *yr = c->layout == ALIAS ? xbc_ref : y_ref;
        err_y = em_gpu_check_rows(label, y_got, yr, nt, HP, ys_eff, c->layout != ALIAS, TOL);
        err_s = em_gpu_check_rows(label, state_got, state_ref, 1, n_state, 0, 0, TOL);
    }
    printf("  %-44s H %3u P %2u N %3u G %u n_tok %2u: rel err y %.2e, state %.2e %s\n", c->what, H, P, N, G, nt, err_y,
           err_s, err_y <= TOL && err_s <= TOL ? "ok" : "FAIL");

    if (env->perf && c->perf && st == EM_OK && err_y <= TOL && err_s <= TOL)
        time_paths(c, &ga, n_state * 4, env->info.l2_bytes);

    em_cuda_free(d_xbc);
    em_cuda_free(d_dt);
    em_cuda_free(d_A);
    em_cuda_free(d_D);
    em_cuda_free(d_dtb);
    em_cuda_free(d_state_alloc);
    if (c->layout != ALIAS) em_cuda_free(d_y);
    free(xbc);
    free(xbc_ref);
    free(dt);
    free(A);
    free(D);
    free(dtb);
    free(state0);
    free(state_ref);
    free(state_got);
    free(y_ref);
    free(y_got);
}

/* The launcher's argument checks: one line each, all must refuse without launching. */
static void check_refusals(void) {
    float f = 0;
    const em_ssm_args good = { .x = &f, .dt = &f, .B = &f, .C = &f, .A = &f, .D = &f, .dt_bias = &f, .state = &f,
                               .y = &f, .n_tok = 1, .H = 4, .P = 1, .N = 1, .G = 2, .dt_min = 0, .dt_max = INFINITY };
    CHECK(em_cuda_ssm_supported(&good));
    em_ssm_args a = good;
    a.G = 3; /* H % G != 0 */
    CHECK_STATUS(em_cuda_ssm(&a, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.dt_max = 0; /* a zeroed struct */
    CHECK_STATUS(em_cuda_ssm(&a, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.x_stride = 3; /* < H * P */
    CHECK_STATUS(em_cuda_ssm(&a, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.state = NULL;
    CHECK_STATUS(em_cuda_ssm(&a, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.n_tok = 0; /* nothing to do: OK without a launch (the host pointers are never touched) */
    CHECK_STATUS(em_cuda_ssm(&a, NULL), EM_OK);
    CHECK_STATUS(em_cuda_ssm_path(&good, NULL, 2), EM_ERR_UNSUPPORTED); /* N 1 has no vector shape */
    CHECK_STATUS(em_cuda_ssm(NULL, NULL), EM_ERR_INVALID_ARG);
}

int main(int argc, char **argv) {
    em_gpu_env env;
    em_gpu_test_init("test_ssm_cuda", argc, argv, &env);
    check_refusals();
    em_rng rng;
    em_rng_seed(&rng, 20240623);
    for (size_t i = 0; i < LEN(cases); i++) run_case(&cases[i], &rng, &env);
    if (env.perf) em_gpu_perf_print(&env);
    return em_test_finish("test_ssm_cuda");
}
