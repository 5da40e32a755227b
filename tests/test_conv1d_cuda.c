/*
 * test_conv1d_cuda.c — em_cuda_conv1d (kernels/conv1d.cu) against its float32 C twin em_ref_conv1d, one case
 * per line of a table named after model shapes (STYLE.md lesson 8). Fresh seeded random inputs and a random
 * initial state; y poisoned with NaN before every run (padding of a strided y must stay NaN); y AND the
 * rolled state are compared by max relative error (limit 1e-5; fp32 both sides, FMA the only difference).
 *
 * The "exec" layout is the executor's: x = the xBC part of an in_proj row (offset d_inner, x_stride
 * d_in_proj = 2*d_inner + 2*G*N + H), y dense rows of conv_dim = d_inner + 2*G*N.
 *
 * Without a CUDA device it prints "SKIP test_conv1d_cuda: no CUDA device" and exits 77 (ctest: Skipped).
 *   build/tests/test_conv1d_cuda [--perf]
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
#error "test_conv1d_cuda is built only with CUDA (tests/gpu.cmake)"
#endif

#define TOL 1e-5
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

typedef struct conv_case {
    uint32_t C, K, n_tok;
    uint32_t x_off, x_stride; /* x = row buffer + x_off, row stride x_stride (0: dense, no offset) */
    uint32_t y_pad;           /* y_stride = C + y_pad (0: dense) */
    int no_bias, no_silu;
    int alias;                /* y == x (same stride) */
    int perf;
    const char *what;
} conv_case;

/* Mamba-2 8B: d_inner 8192, G 8, N 128, H 128 -> conv_dim 10240, d_in_proj 18560; tiny: 128, 2, 16, 8 -> 192, 328 */
#define B8_X .x_off = 8192, .x_stride = 18560
#define TINY_X .x_off = 128, .x_stride = 328
static const conv_case cases[] = {
    { 10240, 4, 1, B8_X, .perf = 1, .what = "Mamba-2 8B, decode step" },
    { 10240, 4, 2, B8_X, .what = "Mamba-2 8B, 2 tokens (< K-1: old state survives)" },
    { 10240, 4, 3, B8_X, .what = "Mamba-2 8B, 3 tokens (= K-1)" },
    { 10240, 4, 40, B8_X, .perf = 1, .what = "Mamba-2 8B, prompt of 40" },
    { 192, 4, 1, TINY_X, .what = "tiny fixture, decode" },
    { 192, 4, 3, TINY_X, .what = "tiny fixture, 3 tokens" },
    { 192, 4, 40, TINY_X, .what = "tiny fixture, prompt of 40" },
    { 1000, 4, 5, .y_pad = 3, .no_bias = 1, .what = "no bias, strided y, C % 128 != 0" },
    { 77, 4, 6, .no_silu = 1, .what = "silu off" },
    { 300, 2, 3, .what = "K 2" },
    { 300, 3, 1, .what = "K 3" },
    { 300, 1, 4, .what = "K 1 (no state)" },
    { 257, 7, 9, .what = "K 7 (KMAX 16 kernel)" },
    { 130, 16, 20, .x_off = 5, .x_stride = 141, .what = "K 16, odd x stride and offset" },
    { 192, 4, 3, .alias = 1, .what = "y == x (in place)" },
    /* n_tok >= 16 with y apart from x: the token-parallel prompt kernel */
    { 10240, 4, 512, B8_X, .perf = 1, .what = "Mamba-2 8B, prompt of 512 (token-parallel)" },
    { 10240, 4, 16, B8_X, .what = "Mamba-2 8B, 16 tokens (token-parallel, smallest)" },
    { 1000, 4, 33, .y_pad = 3, .no_bias = 1, .what = "token-parallel, no bias, strided y" },
    { 257, 7, 17, .what = "token-parallel, K 7 (KMAX 16 kernel)" },
    { 192, 4, 40, .alias = 1, .what = "y == x, 40 tokens (stays sequential)" },
};

typedef struct conv_perf_ctx {
    em_conv1d_args a;
} conv_perf_ctx;

static em_status launch_conv(void *ctx, int i, void *stream) {
    (void)i; /* the state is a few hundred KB: L2-resident in the executor too, no rotation */
    return em_cuda_conv1d(&((conv_perf_ctx *)ctx)->a, stream);
}

static void run_case(const conv_case *c, em_rng *rng, const em_gpu_env *env) {
    char label[160];
    snprintf(label, sizeof label, "%s [C %u, K %u, n_tok %u]", c->what, c->C, c->K, c->n_tok);
    const uint32_t C = c->C, K = c->K, nt = c->n_tok;
    const size_t xs = c->x_stride ? c->x_stride : C;
    const size_t n_x = (size_t)nt * xs + c->x_off; /* the whole row buffer */
    const uint32_t ys_arg = c->alias ? c->x_stride : c->y_pad ? C + c->y_pad : 0;
    const size_t ys = ys_arg ? ys_arg : C, n_y = (size_t)nt * ys;
    const size_t n_st = (size_t)C * (K - 1), n_w = (size_t)C * K;

    float *x = em_xmalloc(n_x * 4), *w = em_xmalloc(n_w * 4), *b = em_xmalloc(C * 4);
    float *st0 = em_xmalloc((n_st + 1) * 4), *st_ref = em_xmalloc((n_st + 1) * 4), *st_got = em_xmalloc((n_st + 1) * 4);
    float *y_ref = em_xmalloc((c->alias ? n_x : n_y) * 4), *y_got = em_xmalloc((c->alias ? n_x : n_y) * 4);
    em_fill_uniform(rng, x, n_x, 1.0f);
    em_fill_uniform(rng, w, n_w, 0.5f);
    em_fill_uniform(rng, b, C, 0.5f);
    em_fill_uniform(rng, st0, n_st, 1.0f);
    memcpy(st_ref, st0, n_st * 4);
    em_conv1d_args ra = { .x = x + c->x_off, .state = st_ref, .w = w, .b = c->no_bias ? NULL : b, .y = y_ref,
                          .n_tok = nt, .C = C, .K = K, .x_stride = c->x_stride, .y_stride = ys_arg,
                          .silu = c->no_silu ? EM_SILU_OFF : EM_SILU_ON };
    if (c->alias) { /* the twin in place on its own copy */
        memcpy(y_ref, x, n_x * 4);
        ra.x = y_ref + c->x_off;
        ra.y = y_ref + c->x_off;
    } else {
        em_poison(y_ref, n_y);
    }
    em_ref_conv1d(&ra);

    float *d_x = em_gpu_dup(x, n_x * 4), *d_w = em_gpu_dup(w, n_w * 4), *d_b = em_gpu_dup(b, C * 4);
    float *d_st = em_gpu_dup(st0, n_st * 4);
    float *d_y = c->alias ? d_x : em_gpu_poisoned(n_y * 4);
    em_conv1d_args ga = ra;
    ga.x = d_x ? d_x + c->x_off : NULL;
    ga.state = d_st;
    ga.w = d_w;
    ga.b = c->no_bias ? NULL : d_b;
    ga.y = c->alias && d_x ? d_x + c->x_off : d_y;
    const int ok = d_x && d_w && d_b && d_st && d_y;
    em_status st = ok ? em_cuda_conv1d(&ga, NULL) : EM_ERR_DEVICE;
    if (st == EM_OK) st = em_cuda_sync(NULL);
    CHECK_MSG(st == EM_OK, "%s: %s (%s)", label, em_status_str(st), em_last_error());
    double err_y = INFINITY, err_s = INFINITY;
    if (st == EM_OK && em_gpu_fetch(y_got, c->alias ? d_x : d_y, (c->alias ? n_x : n_y) * 4) &&
        em_gpu_fetch(st_got, d_st, n_st * 4)) {
        if (c->alias) /* the whole row buffer: outputs and the untouched rest of each row */
            err_y = em_gpu_check_rows(label, y_got, y_ref, 1, n_x, 0, 0, TOL);
        else
            err_y = em_gpu_check_rows(label, y_got, y_ref, nt, C, ys, 1, TOL);
        err_s = em_gpu_check_rows(label, st_got, st_ref, 1, n_st, 0, 0, TOL);
    }
    printf("  %-48s C %5u K %2u n_tok %3u: rel err y %.2e, state %.2e %s\n", c->what, C, K, nt, err_y, err_s,
           err_y <= TOL && err_s <= TOL ? "ok" : "FAIL");

    if (env->perf && c->perf && st == EM_OK) {
        conv_perf_ctx ctx = { .a = ga };
        em_gpu_timing t = {0};
        st = em_gpu_time(launch_conv, &ctx, &t);
        CHECK_MSG(st == EM_OK, "%s: timing: %s (%s)", label, em_status_str(st), em_last_error());
        char what[96];
        snprintf(what, sizeof what, "conv1d C %u K %u n_tok %u", C, K, nt);
        /* x read, y written, w + b read, state read + written */
        const double bytes = 4.0 * (2.0 * nt * C + n_w + C + 2.0 * n_st);
        if (st == EM_OK) em_gpu_perf_add(what, &t, bytes);
    }

    em_cuda_free(d_x);
    em_cuda_free(d_w);
    em_cuda_free(d_b);
    em_cuda_free(d_st);
    if (!c->alias) em_cuda_free(d_y);
    free(x);
    free(w);
    free(b);
    free(st0);
    free(st_ref);
    free(st_got);
    free(y_ref);
    free(y_got);
}

static void check_refusals(void) {
    float f = 0;
    const em_conv1d_args good = { .x = &f, .state = &f, .w = &f, .y = &f, .n_tok = 1, .C = 1, .K = 4,
                                  .silu = EM_SILU_ON };
    CHECK(em_cuda_conv1d_supported(&good));
    em_conv1d_args a = good;
    a.K = 17;
    CHECK_STATUS(em_cuda_conv1d(&a, NULL), EM_ERR_INVALID_ARG);
    a.K = 0;
    CHECK_STATUS(em_cuda_conv1d(&a, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.state = NULL;
    CHECK_STATUS(em_cuda_conv1d(&a, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.C = 8;
    a.y_stride = 7;
    CHECK_STATUS(em_cuda_conv1d(&a, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.n_tok = 0;
    CHECK_STATUS(em_cuda_conv1d(&a, NULL), EM_OK);
    CHECK_STATUS(em_cuda_conv1d(NULL, NULL), EM_ERR_INVALID_ARG);
}

int main(int argc, char **argv) {
    em_gpu_env env;
    em_gpu_test_init("test_conv1d_cuda", argc, argv, &env);
    check_refusals();
    em_rng rng;
    em_rng_seed(&rng, 20240624);
    for (size_t i = 0; i < LEN(cases); i++) run_case(&cases[i], &rng, &env);
    if (env.perf) em_gpu_perf_print(&env);
    return em_test_finish("test_conv1d_cuda");
}
