/*
 * test_rmsnorm_cuda.c — em_cuda_rmsnorm (kernels/norm.cu: residual add + RMSNorm) against its float32 C twin
 * em_ref_rmsnorm, one case per line of a table named after model shapes (STYLE.md lesson 8). Fresh seeded
 * random inputs; y poisoned with NaN before every run; y AND the updated residual x are compared by max
 * relative error (limit 1e-5; only the order of the sum of squares differs).
 *
 * Without a CUDA device it prints "SKIP test_rmsnorm_cuda: no CUDA device" and exits 77 (ctest: Skipped).
 *   build/tests/test_rmsnorm_cuda [--perf]
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
#error "test_rmsnorm_cuda is built only with CUDA (tests/gpu.cmake)"
#endif

#define TOL 1e-5
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

typedef struct rms_case {
    uint32_t d, n_tok;
    int no_delta; /* the first layer's norm: no residual add */
    uint32_t x_off; /* floats the device x pointer is shifted by (1: misaligned -> scalar kernel) */
    int perf;
    const char *what;
} rms_case;

static const rms_case cases[] = {
    { 4096, 1, .perf = 1, .what = "Mamba-2 8B, decode (residual add + norm)" },
    { 4096, 1, .no_delta = 1, .perf = 1, .what = "Mamba-2 8B, first layer (no delta)" },
    { 4096, 40, .perf = 1, .what = "Mamba-2 8B, prompt of 40" },
    { 2560, 3, .what = "Mamba-2 2.7B, 3 tokens" },
    { 64, 1, .what = "tiny fixture, decode" },
    { 64, 3, .no_delta = 1, .what = "tiny fixture, 3 tokens, no delta" },
    { 4097, 2, .what = "d 4097: scalar kernel" },
    { 100, 5, .x_off = 1, .what = "x misaligned: scalar kernel" },
    { 20000, 2, .what = "d 20000: beyond the register cache" },
    { 5000, 1, .x_off = 1, .what = "d 5000 scalar: beyond the register cache" },
    { 3, 4, .what = "d 3" },
};

typedef struct rms_perf_ctx {
    em_rmsnorm_args a;
} rms_perf_ctx;

static em_status launch_rms(void *ctx, int i, void *stream) {
    (void)i; /* activations: L2-resident in the executor too; x drifts by delta each launch, harmlessly */
    return em_cuda_rmsnorm(&((rms_perf_ctx *)ctx)->a, stream);
}

static void run_case(const rms_case *c, em_rng *rng, const em_gpu_env *env) {
    char label[160];
    snprintf(label, sizeof label, "%s [d %u, n_tok %u]", c->what, c->d, c->n_tok);
    const size_t n = (size_t)c->n_tok * c->d;
    float *x0 = em_xmalloc(n * 4), *x_ref = em_xmalloc(n * 4), *x_got = em_xmalloc(n * 4);
    float *delta = em_xmalloc(n * 4), *w = em_xmalloc(c->d * 4), *y_ref = em_xmalloc(n * 4), *y_got = em_xmalloc(n * 4);
    em_fill_uniform(rng, x0, n, 2.0f);
    em_fill_uniform(rng, delta, n, 1.0f);
    for (uint32_t i = 0; i < c->d; i++) w[i] = 1.0f + em_rng_uniform(rng, 0.5f);
    memcpy(x_ref, x0, n * 4);
    em_poison(y_ref, n);
    em_rmsnorm_args ra = { .x = x_ref, .delta = c->no_delta ? NULL : delta, .w = w, .y = y_ref, .n_tok = c->n_tok,
                           .d = c->d, .eps = 1e-5f };
    em_ref_rmsnorm(&ra);

    float *d_x_alloc = em_gpu_poisoned((n + c->x_off) * 4);
    float *d_x = d_x_alloc ? d_x_alloc + c->x_off : NULL;
    float *d_delta = em_gpu_dup(delta, n * 4), *d_w = em_gpu_dup(w, c->d * 4), *d_y = em_gpu_poisoned(n * 4);
    int ok = d_x && d_delta && d_w && d_y && em_cuda_memcpy(d_x, x0, n * 4) == EM_OK;
    em_rmsnorm_args ga = ra;
    ga.x = d_x;
    ga.delta = c->no_delta ? NULL : d_delta;
    ga.w = d_w;
    ga.y = d_y;
    em_status st = ok ? em_cuda_rmsnorm(&ga, NULL) : EM_ERR_DEVICE;
    if (st == EM_OK) st = em_cuda_sync(NULL);
    CHECK_MSG(st == EM_OK, "%s: %s (%s)", label, em_status_str(st), em_last_error());
    double err_y = INFINITY, err_x = INFINITY;
    if (st == EM_OK && em_gpu_fetch(y_got, d_y, n * 4) && em_gpu_fetch(x_got, d_x, n * 4)) {
        err_y = em_gpu_check_rows(label, y_got, y_ref, c->n_tok, c->d, 0, 0, TOL);
        err_x = em_gpu_check_rows(label, x_got, x_ref, c->n_tok, c->d, 0, 0, TOL);
    }
    printf("  %-44s d %5u n_tok %2u: rel err y %.2e, x %.2e %s\n", c->what, c->d, c->n_tok, err_y, err_x,
           err_y <= TOL && err_x <= TOL ? "ok" : "FAIL");

    if (env->perf && c->perf && st == EM_OK) {
        rms_perf_ctx ctx = { .a = ga };
        em_gpu_timing t = {0};
        st = em_gpu_time(launch_rms, &ctx, &t);
        CHECK_MSG(st == EM_OK, "%s: timing: %s (%s)", label, em_status_str(st), em_last_error());
        char what[96];
        snprintf(what, sizeof what, "rmsnorm d %u n_tok %u%s", c->d, c->n_tok, c->no_delta ? ", no delta" : "");
        /* x read (+ delta read, x written), w read, y written */
        const double bytes = 4.0 * ((double)n * (c->no_delta ? 2 : 4) + c->d);
        if (st == EM_OK) em_gpu_perf_add(what, &t, bytes);
    }

    em_cuda_free(d_x_alloc);
    em_cuda_free(d_delta);
    em_cuda_free(d_w);
    em_cuda_free(d_y);
    free(x0);
    free(x_ref);
    free(x_got);
    free(delta);
    free(w);
    free(y_ref);
    free(y_got);
}

static void check_refusals(void) {
    float f = 0;
    const em_rmsnorm_args good = { .x = &f, .w = &f, .y = &f, .n_tok = 1, .d = 1, .eps = 1e-5f };
    CHECK(em_cuda_rmsnorm_supported(&good));
    em_rmsnorm_args a = good;
    a.w = NULL;
    CHECK_STATUS(em_cuda_rmsnorm(&a, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.n_tok = 0;
    CHECK_STATUS(em_cuda_rmsnorm(&a, NULL), EM_OK);
    CHECK_STATUS(em_cuda_rmsnorm(NULL, NULL), EM_ERR_INVALID_ARG);
}

int main(int argc, char **argv) {
    em_gpu_env env;
    em_gpu_test_init("test_rmsnorm_cuda", argc, argv, &env);
    check_refusals();
    em_rng rng;
    em_rng_seed(&rng, 20240625);
    for (size_t i = 0; i < LEN(cases); i++) run_case(&cases[i], &rng, &env);
    if (env.perf) em_gpu_perf_print(&env);
    return em_test_finish("test_rmsnorm_cuda");
}
