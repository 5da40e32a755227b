/*
 * test_ssd_cuda.c — em_cuda_ssd (kernels/ssd.cu, the chunked SSD scan for prompts) against its float32 C twin
 * em_ref_ssd (kernels/ref/ssd_ref.c, itself proven equal to the sequential em_ref_ssm by tests/test_ssd_ref.c), one
 * case per line of a table named after model shapes. Fresh seeded random inputs and a random NONZERO initial state;
 * y AND the workspace are poisoned with NaN before every run (an unwritten output, or a read of workspace nobody
 * wrote, fails); y's row padding must stay NaN; y and the final state are compared by max relative error against
 * the twin, limit 1e-2 (the kernels multiply in TF32: ~3e-4 measured on an H100; each case prints its real figures),
 * and the state
 * also against em_ref_ssm, the sequential form decode continues from.
 *
 * The "exec" layout is the executor's (runtime/cuda_exec.c): x, B, C inside one conv row of width
 * conv_dim = H*P + 2*G*N, dt inside an in_proj row of width d_in_proj = 2*H*P + 2*G*N + H.
 *
 * Without a CUDA device it prints "SKIP test_ssd_cuda: no CUDA device" and exits 77 (ctest: Skipped).
 *   build/tests/test_ssd_cuda           # check
 *   build/tests/test_ssd_cuda --perf    # + times the 8B shape (H 128, P 64, N 128, G 8) at 512 and 8192 tokens
 *                                       #   for chunk 64, 128 and 256: us per layer, TFLOP/s, GB/s
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
#error "test_ssd_cuda is built only with CUDA (tests/prefill.cmake)"
#endif

#define TOL 1e-2
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

typedef struct ssd_case {
    uint32_t H, P, N, G, n_tok, chunk;
    int exec;        /* the executor's strided layout, else dense buffers */
    uint32_t y_pad;  /* y_stride = H*P + y_pad */
    int clamp;       /* dt limits (0.001, 0.1) */
    int split;       /* run as two calls (n_tok/3+1, rest): the state carries over between prompt chunks */
    const char *what;
} ssd_case;

static const ssd_case cases[] = {
    // Mamba-2 8B (d_model 4096: H 128, P 64, N 128, G 8), the executor's strides
    { 128, 64, 128, 8, 1, 128, 1, .what = "Mamba-2 8B, 1 token" },
    { 128, 64, 128, 8, 127, 128, 1, .what = "Mamba-2 8B, 127 (one partial chunk)" },
    { 128, 64, 128, 8, 128, 128, 1, .what = "Mamba-2 8B, 128 (one full chunk)" },
    { 128, 64, 128, 8, 129, 128, 1, .what = "Mamba-2 8B, 129 (second chunk of 1)" },
    { 128, 64, 128, 8, 1000, 128, 1, .what = "Mamba-2 8B, 1000 tokens" },
    { 128, 64, 128, 8, 300, 64, 1, .what = "Mamba-2 8B, 300, chunk 64" },
    { 128, 64, 128, 8, 300, 256, 1, .what = "Mamba-2 8B, 300, chunk 256" },
    { 128, 64, 128, 8, 513, 128, 1, .split = 1, .what = "Mamba-2 8B, 513 in two calls" },
    // the bundled trained model (models/mamba2: H 6, P 64, N 64, G 2) and the tiny fixture (H 8, P 16, N 16, G 2)
    { 6, 64, 64, 2, 1, 128, 1, .what = "models/mamba2, 1 token" },
    { 6, 64, 64, 2, 127, 128, 1, .what = "models/mamba2, 127" },
    { 6, 64, 64, 2, 128, 128, 1, .what = "models/mamba2, 128" },
    { 6, 64, 64, 2, 129, 128, 1, .what = "models/mamba2, 129" },
    { 6, 64, 64, 2, 1000, 128, 1, .what = "models/mamba2, 1000" },
    { 6, 64, 64, 2, 1000, 256, 1, .clamp = 1, .what = "models/mamba2, 1000, chunk 256, dt clamped" },
    { 8, 16, 16, 2, 1, 64, 1, .what = "tiny fixture, 1 token, chunk 64" },
    { 8, 16, 16, 2, 127, 128, 1, .what = "tiny fixture, 127" },
    { 8, 16, 16, 2, 129, 128, 1, .what = "tiny fixture, 129" },
    { 8, 16, 16, 2, 1000, 64, 1, .split = 1, .what = "tiny fixture, 1000, chunk 64, two calls" },
    // other Mamba-2 sizes and odd shapes (partial tiles in P and N, strided y, dense layout)
    { 80, 64, 128, 1, 200, 128, 1, .what = "Mamba-2 2.7B (G 1), 200" },
    { 6, 33, 20, 3, 150, 64, 0, .y_pad = 3, .what = "P 33, N 20 (partial tiles), strided y, dense" },
    { 4, 130, 72, 2, 70, 64, 0, .what = "P 130, N 72: 3 x 2 output tiles" },
};

// ---- one case -------------------------------------------------------------------------------------------------

typedef struct ssd_host {
    float *xbc, *dt, *A, *D, *dtb, *state0;
    size_t n_xbc, n_dt;
    uint32_t xs, dts, bcs;
    size_t off_B, off_C, off_dt;
} ssd_host;

/* Random inputs in the case's layout (model-like ranges: A = -exp(A_log), A_log in [0, log 16); dt after softplus
 * ~0.001 .. 0.1; x, B, C, dt_raw in [-1, 1); the state in [-1, 1)). */
static void make_inputs(ssd_host *in, uint32_t H, uint32_t P, uint32_t N, uint32_t G, uint32_t nt, int exec,
                        em_rng *rng) {
    const uint32_t HP = H * P, GN = G * N, conv_dim = HP + 2 * GN, d_in_proj = 2 * HP + 2 * GN + H;
    memset(in, 0, sizeof *in);
    if (exec) {
        in->n_xbc = (size_t)nt * conv_dim;
        in->n_dt = (size_t)nt * d_in_proj;
        in->xs = in->bcs = conv_dim;
        in->dts = d_in_proj;
        in->off_B = HP;
        in->off_C = HP + GN;
        in->off_dt = HP + conv_dim;
    } else {
        in->n_xbc = (size_t)nt * (HP + 2 * GN);
        in->n_dt = (size_t)nt * H;
        in->off_B = (size_t)nt * HP;
        in->off_C = in->off_B + (size_t)nt * GN;
    }
    in->xbc = em_xmalloc(in->n_xbc * 4);
    in->dt = em_xmalloc(in->n_dt * 4);
    in->A = em_xmalloc(H * 4);
    in->D = em_xmalloc(H * 4);
    in->dtb = em_xmalloc(H * 4);
    in->state0 = em_xmalloc((size_t)HP * N * 4);
    em_fill_uniform(rng, in->xbc, in->n_xbc, 1.0f);
    em_fill_uniform(rng, in->dt, in->n_dt, 1.0f);
    for (uint32_t h = 0; h < H; h++) {
        in->A[h] = -expf((em_rng_uniform(rng, 0.5f) + 0.5f) * logf(16.0f));
        in->D[h] = em_rng_uniform(rng, 1.0f);
        in->dtb[h] = -4.5f + em_rng_uniform(rng, 1.5f);
    }
    em_fill_uniform(rng, in->state0, (size_t)HP * N, 1.0f);
}

static void free_inputs(ssd_host *in) {
    free(in->xbc), free(in->dt), free(in->A), free(in->D), free(in->dtb), free(in->state0);
}

/* em_cuda_ssd over [0, n1) then [n1, n_tok) (n1 = n_tok when not split). */
static em_status run_gpu(const em_ssd_args *ga, uint32_t xs, uint32_t dts, uint32_t bcs, uint32_t ys, int split,
                         void *ws, size_t ws_bytes) {
    if (!split) return em_cuda_ssd(ga, ws, ws_bytes, NULL);
    em_ssd_args a1 = *ga, a2 = *ga;
    const uint32_t n1 = ga->n_tok / 3 + 1;
    a1.n_tok = n1;
    a2.n_tok = ga->n_tok - n1;
    a2.x += (size_t)n1 * xs;
    a2.B += (size_t)n1 * bcs;
    a2.C += (size_t)n1 * bcs;
    a2.dt += (size_t)n1 * dts;
    a2.y += (size_t)n1 * ys;
    EM_TRY(em_cuda_ssd(&a1, ws, ws_bytes, NULL));
    return em_cuda_ssd(&a2, ws, ws_bytes, NULL);
}

static void run_case(const ssd_case *c, em_rng *rng) {
    char label[200];
    snprintf(label, sizeof label, "%s [H %u P %u N %u G %u, n_tok %u, chunk %u]", c->what, c->H, c->P, c->N, c->G,
             c->n_tok, c->chunk);
    const uint32_t H = c->H, P = c->P, N = c->N, G = c->G, nt = c->n_tok, HP = H * P;
    const size_t n_state = (size_t)HP * N;
    ssd_host in;
    make_inputs(&in, H, P, N, G, nt, c->exec, rng);
    const uint32_t ys = c->y_pad ? HP + c->y_pad : 0, ys_eff = ys ? ys : HP;
    const size_t n_y = (size_t)nt * ys_eff;
    float *s_ref = em_xmalloc(n_state * 4), *s_seq = em_xmalloc(n_state * 4), *s_got = em_xmalloc(n_state * 4);
    float *y_ref = em_xmalloc(n_y * 4), *y_seq = em_xmalloc(n_y * 4), *y_got = em_xmalloc(n_y * 4);
    memcpy(s_ref, in.state0, n_state * 4);
    memcpy(s_seq, in.state0, n_state * 4);
    em_poison(y_ref, n_y);
    em_poison(y_seq, n_y);

    em_ssd_args ra = { .x = in.xbc, .dt = in.dt + in.off_dt, .B = in.xbc + in.off_B, .C = in.xbc + in.off_C,
                       .A = in.A, .D = in.D, .dt_bias = in.dtb, .state = s_ref, .y = y_ref, .n_tok = nt, .H = H,
                       .P = P, .N = N, .G = G, .x_stride = in.xs, .dt_stride = in.dts, .bc_stride = in.bcs,
                       .y_stride = ys, .dt_min = c->clamp ? 0.001f : 0.0f, .dt_max = c->clamp ? 0.1f : INFINITY,
                       .chunk = c->chunk };
    em_ref_ssd(&ra);
    em_ssm_args sa = em_ssd_as_ssm(&ra);
    sa.state = s_seq;
    sa.y = y_seq;
    em_ref_ssm(&sa);

    /* device: same layout; y and the workspace poisoned (NaN) */
    const size_t ws_bytes = em_cuda_ssd_workspace_bytes(nt, H, P, N, G, c->chunk);
    CHECK_MSG(ws_bytes > 0, "%s: no workspace size", label);
    float *d_xbc = em_gpu_dup(in.xbc, in.n_xbc * 4), *d_dt = em_gpu_dup(in.dt, in.n_dt * 4);
    float *d_A = em_gpu_dup(in.A, H * 4), *d_D = em_gpu_dup(in.D, H * 4), *d_dtb = em_gpu_dup(in.dtb, H * 4);
    float *d_state = em_gpu_dup(in.state0, n_state * 4), *d_y = em_gpu_poisoned(n_y * 4);
    void *d_ws = em_gpu_poisoned(ws_bytes);
    const int ok = d_xbc && d_dt && d_A && d_D && d_dtb && d_state && d_y && d_ws;
    em_ssd_args ga = ra;
    ga.x = d_xbc;
    ga.dt = d_dt + in.off_dt;
    ga.B = d_xbc + in.off_B;
    ga.C = d_xbc + in.off_C;
    ga.A = d_A;
    ga.D = d_D;
    ga.dt_bias = d_dtb;
    ga.state = d_state;
    ga.y = d_y;
    const uint32_t xs_eff = in.xs ? in.xs : HP, dts_eff = in.dts ? in.dts : H, bcs_eff = in.bcs ? in.bcs : G * N;
    em_status st = ok ? run_gpu(&ga, xs_eff, dts_eff, bcs_eff, ys_eff, c->split, d_ws, ws_bytes) : EM_ERR_DEVICE;
    if (st == EM_OK) st = em_cuda_sync(NULL);
    CHECK_MSG(st == EM_OK, "%s: %s (%s)", label, em_status_str(st), em_last_error());
    double err_y = INFINITY, err_s = INFINITY, err_seq = INFINITY;
    if (st == EM_OK && em_gpu_fetch(y_got, d_y, n_y * 4) && em_gpu_fetch(s_got, d_state, n_state * 4)) {
        err_y = em_gpu_check_rows(label, y_got, y_ref, nt, HP, ys_eff, 1, TOL);
        err_s = em_gpu_check_rows(label, s_got, s_ref, 1, n_state, 0, 0, TOL);
        err_seq = em_gpu_check_rows(label, s_got, s_seq, 1, n_state, 0, 0, TOL);
    }
    printf("  %-46s H %3u P %3u N %3u G %u n_tok %4u Q %3u: rel err y %.2e, state %.2e (vs sequential %.2e) %s\n",
           c->what, H, P, N, G, nt, c->chunk, err_y, err_s, err_seq,
           err_y <= TOL && err_s <= TOL && err_seq <= TOL ? "ok" : "FAIL");

    em_cuda_free(d_xbc), em_cuda_free(d_dt), em_cuda_free(d_A), em_cuda_free(d_D), em_cuda_free(d_dtb);
    em_cuda_free(d_state), em_cuda_free(d_y), em_cuda_free(d_ws);
    free_inputs(&in);
    free(s_ref), free(s_seq), free(s_got), free(y_ref), free(y_seq), free(y_got);
}

/* The launcher's argument checks: each must refuse without launching. */
static void check_refusals(void) {
    float f = 0;
    static char ws[1 << 16]; /* host memory: never touched (every call here is refused or has nothing to do) */
    const em_ssd_args good = { .x = &f, .dt = &f, .B = &f, .C = &f, .A = &f, .D = &f, .dt_bias = &f, .state = &f,
                               .y = &f, .n_tok = 1, .H = 4, .P = 1, .N = 1, .G = 2, .dt_min = 0,
                               .dt_max = INFINITY, .chunk = 64 };
    CHECK(em_cuda_ssd_supported(&good));
    CHECK(em_cuda_ssd_workspace_bytes(1, 4, 1, 1, 2, 64) <= sizeof ws);
    em_ssd_args a = good;
    a.G = 3; /* H % G != 0 */
    CHECK_STATUS(em_cuda_ssd(&a, ws, sizeof ws, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.chunk = 100; /* not 64/128/256 */
    CHECK_STATUS(em_cuda_ssd(&a, ws, sizeof ws, NULL), EM_ERR_INVALID_ARG);
    CHECK(em_cuda_ssd_workspace_bytes(10, 4, 1, 1, 2, 100) == 0);
    a = good;
    a.dt_max = 0; /* a zeroed struct */
    CHECK_STATUS(em_cuda_ssd(&a, ws, sizeof ws, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.state = NULL;
    CHECK_STATUS(em_cuda_ssd(&a, ws, sizeof ws, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.bc_stride = 1; /* < G * N */
    CHECK_STATUS(em_cuda_ssd(&a, ws, sizeof ws, NULL), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_cuda_ssd(&good, ws, 16, NULL), EM_ERR_INVALID_ARG);   /* workspace too small */
    CHECK_STATUS(em_cuda_ssd(&good, NULL, 1 << 20, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.n_tok = 0; /* nothing to do: OK without a launch */
    CHECK_STATUS(em_cuda_ssd(&a, NULL, 0, NULL), EM_OK);
    CHECK_STATUS(em_cuda_ssd(NULL, ws, sizeof ws, NULL), EM_ERR_INVALID_ARG);
}

// ---- --perf ---------------------------------------------------------------------------------------------------

typedef struct ssd_perf_ctx {
    em_ssd_args a;
    void *ws;
    size_t ws_bytes;
    int phase; /* em_cuda_ssd_phase: -1 = all */
} ssd_perf_ctx;

static em_status launch_ssd(void *ctx, int i, void *stream) {
    (void)i;
    ssd_perf_ctx *c = ctx;
    return em_cuda_ssd_phase(&c->a, c->ws, c->ws_bytes, stream, c->phase);
}

/* The 8B shape at n_tok tokens for chunk 64, 128, 256: the state is advanced by every launch (values stay bounded:
 * the decay < 1 and the inputs are O(1)). */
static void perf_8b(uint32_t nt, em_rng *rng) {
    const uint32_t H = 128, P = 64, N = 128, G = 8, HP = H * P, GN = G * N;
    ssd_host in;
    make_inputs(&in, H, P, N, G, nt, 1, rng);
    float *d_xbc = em_gpu_dup(in.xbc, in.n_xbc * 4), *d_dt = em_gpu_dup(in.dt, in.n_dt * 4);
    float *d_A = em_gpu_dup(in.A, H * 4), *d_D = em_gpu_dup(in.D, H * 4), *d_dtb = em_gpu_dup(in.dtb, H * 4);
    float *d_state = em_gpu_dup(in.state0, (size_t)HP * N * 4), *d_y = em_gpu_poisoned((size_t)nt * HP * 4);
    static const uint32_t chunks[] = { 64, 128, 256 };
    for (size_t i = 0; i < LEN(chunks) && d_y; i++) {
        const uint32_t Q = chunks[i];
        ssd_perf_ctx ctx;
        ctx.ws_bytes = em_cuda_ssd_workspace_bytes(nt, H, P, N, G, Q);
        ctx.ws = em_gpu_poisoned(ctx.ws_bytes);
        if (!ctx.ws) break;
        ctx.a = (em_ssd_args){ .x = d_xbc, .dt = d_dt + in.off_dt, .B = d_xbc + in.off_B, .C = d_xbc + in.off_C,
                               .A = d_A, .D = d_D, .dt_bias = d_dtb, .state = d_state, .y = d_y, .n_tok = nt,
                               .H = H, .P = P, .N = N, .G = G, .x_stride = in.xs, .dt_stride = in.dts,
                               .bc_stride = in.bcs, .dt_min = 0.0f, .dt_max = INFINITY, .chunk = Q };
        ctx.phase = -1;
        em_gpu_timing t = {0};
        const em_status st = em_gpu_time(launch_ssd, &ctx, &t);
        CHECK_MSG(st == EM_OK, "perf ssd n_tok %u chunk %u: %s (%s)", nt, Q, em_status_str(st), em_last_error());
        /* the useful FLOPs (causal half of the intra-chunk products) and the fewest bytes */
        const double flop = 2.0 * nt * (2.0 * HP * N + (Q / 2.0) * HP + (Q / 2.0) * GN);
        const double bytes = 4.0 * ((double)nt * (2.0 * HP + 2.0 * GN + H) + 2.0 * HP * N);
        printf("  ssd 8B n_tok %5u chunk %3u: %9.1f us/layer (graph %9.1f), %6.1f TFLOP/s, %6.0f GB/s, %7.0f tok/s "
               "per layer, workspace %.1f MB\n", nt, Q, t.launch_us, t.graph_us, flop / (t.launch_us * 1e-6) / 1e12,
               bytes / (t.launch_us * 1e-6) / 1e9, nt / (t.launch_us * 1e-6), ctx.ws_bytes / 1e6);
        char what[96];
        snprintf(what, sizeof what, "ssd 8B n_tok %u chunk %u", nt, Q);
        if (st == EM_OK) em_gpu_perf_add(what, &t, bytes);
        /* where the time goes: each kernel alone (its inputs are what the full run left in the workspace) */
        static const char *phases[] = { "dt/cum", "C.B^T", "chunk states", "state pass", "outputs" };
        printf("    per kernel:");
        for (int ph = 0; ph < 5 && st == EM_OK; ph++) {
            ctx.phase = ph;
            em_gpu_timing tp = {0};
            const em_status sp = em_gpu_time(launch_ssd, &ctx, &tp);
            CHECK_MSG(sp == EM_OK, "perf ssd phase %d: %s (%s)", ph, em_status_str(sp), em_last_error());
            printf(" %s %.1f us%s", phases[ph], tp.launch_us, ph < 4 ? "," : "\n");
        }
        em_cuda_free(ctx.ws);
    }
    em_cuda_free(d_xbc), em_cuda_free(d_dt), em_cuda_free(d_A), em_cuda_free(d_D), em_cuda_free(d_dtb);
    em_cuda_free(d_state), em_cuda_free(d_y);
    free_inputs(&in);
}

int main(int argc, char **argv) {
    em_gpu_env env;
    em_gpu_test_init("test_ssd_cuda", argc, argv, &env);
    check_refusals();
    em_rng rng;
    em_rng_seed(&rng, 20261123);
    for (size_t i = 0; i < LEN(cases); i++) run_case(&cases[i], &rng);
    if (env.perf) {
        printf("\n--perf: the chunked scan alone, Mamba-2 8B layer shape (us: median of single launches)\n");
        perf_8b(512, &rng);
        perf_8b(8192, &rng);
        em_gpu_perf_print(&env);
    }
    return em_test_finish("test_ssd_cuda");
}
