/*
 * test_argmax_cuda.c — em_cuda_argmax (kernels/argmax.cu) against its C twin em_ref_argmax: the index must be
 * EXACTLY the twin's (the lowest index on a tie, NaN never taken, 0 when all are NaN or n == 0). One case per
 * line of a table named after vocabularies and the edge cases of the comparison; every case runs on each path
 * the device has: the cluster of 8 blocks (sm_90+) and the one-block path (em_cuda_argmax_path). The result
 * word is poisoned (0x7fffffff) before every run.
 *
 * Without a CUDA device it prints "SKIP test_argmax_cuda: no CUDA device" and exits 77 (ctest: Skipped).
 *   build/tests/test_argmax_cuda [--perf]
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
#error "test_argmax_cuda is built only with CUDA (tests/gpu.cmake)"
#endif

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

/* What is planted in the random logits (uniform in [-10, 10)). */
typedef enum am_plant {
    PLANT_NONE,       /* random values only */
    PLANT_TIES,       /* the max (20.0) at 5 indices spread over the slices of different blocks and the tail */
    PLANT_NAN_MAX,    /* NaN at the true max's index and a few more; the max is elsewhere */
    PLANT_ALL_NAN,    /* every value NaN: 0 */
    PLANT_ALL_NEGINF, /* every value -inf: 0 (the first of equals) */
    PLANT_TWO_INF,    /* +inf at two indices: the lower */
    PLANT_ZEROS,      /* all negative except -0.0 then +0.0: the first zero (equal to the twin's '>') */
    PLANT_EQUAL,      /* every value 1.5: 0 */
    PLANT_LAST,       /* the max at n - 1 */
} am_plant;

typedef struct am_case {
    uint32_t n;
    am_plant plant;
    uint32_t x_off; /* floats the device x pointer is shifted by (1: misaligned -> scalar loads) */
    int perf;
    const char *what;
} am_case;

static const am_case cases[] = {
    { 256000, PLANT_NONE, .perf = 1, .what = "vocab 256000 (Mamba-2 8B SentencePiece)" },
    { 50288, PLANT_NONE, .perf = 1, .what = "vocab 50288 (GPT-NeoX)" },
    { 512, PLANT_NONE, .what = "tiny fixture vocab 512" },
    { 256000, PLANT_TIES, .what = "ties across blocks: the lowest index" },
    { 50289, PLANT_TIES, .what = "ties, n % 4 == 1 (tail element)" },
    { 256000, PLANT_NAN_MAX, .what = "NaN never wins" },
    { 1000, PLANT_ALL_NAN, .what = "all NaN: 0" },
    { 1000, PLANT_ALL_NEGINF, .what = "all -inf: 0" },
    { 70001, PLANT_TWO_INF, .what = "+inf twice: the lower" },
    { 333, PLANT_ZEROS, .what = "-0.0 before +0.0: equal, the first" },
    { 4099, PLANT_EQUAL, .what = "all equal: 0" },
    { 256001, PLANT_LAST, .what = "the max at n - 1" },
    { 256000, PLANT_TIES, .x_off = 1, .what = "x misaligned: scalar loads, ties" },
    { 7, PLANT_NONE, .what = "n 7 (< one float4 per block)" },
    { 1, PLANT_NONE, .what = "n 1" },
    { 0, PLANT_NONE, .what = "n 0: 0" },
};

static void plant(const am_case *c, em_rng *rng, float *x) {
    const uint32_t n = c->n;
    for (uint32_t i = 0; i < n; i++) x[i] = em_rng_uniform(rng, 10.0f);
    switch (c->plant) {
    case PLANT_NONE: break;
    case PLANT_TIES: {
        /* a later tie first, so that the lowest is not simply the first written */
        const uint32_t at[] = { n - 1, n / 2 + 3, n / 3 + 1, n / 8 + 2, n / 5 };
        for (size_t k = 0; k < LEN(at); k++) x[at[k]] = 20.0f;
        break;
    }
    case PLANT_NAN_MAX: {
        uint32_t best = em_ref_argmax(x, n);
        x[best] = NAN;
        x[0] = NAN;
        x[n - 1] = -NAN;
        x[n / 2] = NAN;
        break;
    }
    case PLANT_ALL_NAN:
        for (uint32_t i = 0; i < n; i++) x[i] = NAN;
        break;
    case PLANT_ALL_NEGINF:
        for (uint32_t i = 0; i < n; i++) x[i] = -INFINITY;
        break;
    case PLANT_TWO_INF:
        x[n - 5] = INFINITY;
        x[n / 3] = INFINITY;
        break;
    case PLANT_ZEROS:
        for (uint32_t i = 0; i < n; i++) x[i] = -1.0f - fabsf(x[i]);
        x[n / 4] = -0.0f;
        x[n / 2] = 0.0f;
        break;
    case PLANT_EQUAL:
        for (uint32_t i = 0; i < n; i++) x[i] = 1.5f;
        break;
    case PLANT_LAST: x[n - 1] = 11.0f; break;
    }
}

typedef struct am_perf_ctx {
    const float *x;
    uint32_t n;
    int32_t *out;
    int blocks;
} am_perf_ctx;

static em_status launch_argmax(void *ctx, int i, void *stream) {
    (void)i; /* the logits sit in L2 in the executor too (the head just wrote them) */
    const am_perf_ctx *c = ctx;
    return em_cuda_argmax_path(c->x, c->n, c->out, stream, c->blocks);
}

static void run_case(const am_case *c, em_rng *rng, const em_gpu_env *env, int have_cluster) {
    float *x = em_xmalloc((size_t)c->n * 4);
    plant(c, rng, x);
    const int32_t want = (int32_t)em_ref_argmax(x, c->n);

    float *d_alloc = em_gpu_poisoned(((size_t)c->n + c->x_off) * 4);
    float *d_x = d_alloc ? d_alloc + c->x_off : NULL;
    int32_t *d_out = NULL;
    em_status st = d_x ? em_cuda_memcpy(d_x, x, (size_t)c->n * 4) : EM_ERR_DEVICE;
    if (st == EM_OK) st = em_cuda_malloc((void **)&d_out, sizeof *d_out);

    static const int paths[] = { 0, 1, 8 }; /* auto, one block, cluster */
    int32_t got[LEN(paths)];
    for (size_t p = 0; p < LEN(paths); p++) {
        got[p] = -1;
        if (paths[p] == 8 && !have_cluster) continue;
        const int32_t poison = 0x7fffffff;
        em_status s2 = st;
        if (s2 == EM_OK) s2 = em_cuda_memcpy(d_out, &poison, sizeof poison);
        if (s2 == EM_OK) s2 = em_cuda_argmax_path(d_x, c->n, d_out, NULL, paths[p]);
        if (s2 == EM_OK) s2 = em_cuda_sync(NULL);
        if (s2 == EM_OK) s2 = em_cuda_memcpy(&got[p], d_out, sizeof got[p]);
        CHECK_MSG(s2 == EM_OK, "%s (path %d): %s (%s)", c->what, paths[p], em_status_str(s2), em_last_error());
        CHECK_MSG(s2 != EM_OK || got[p] == want, "%s [n %u] (path %d): got %d, want %d (x[got] %g, x[want] %g)",
                  c->what, c->n, paths[p], got[p], want,
                  got[p] >= 0 && (uint32_t)got[p] < c->n ? (double)x[got[p]] : NAN,
                  c->n ? (double)x[want] : NAN);
    }
    const int pass = got[0] == want && got[1] == want && (!have_cluster || got[2] == want);
    printf("  %-44s n %6u: want %6d, got auto %6d, 1 block %6d, cluster %6d %s\n", c->what, c->n, want, got[0], got[1],
           got[2], pass ? "ok" : "FAIL");

    if (env->perf && c->perf && st == EM_OK && pass) {
        for (size_t p = 0; p < 2; p++) { /* auto (the cluster here), one block */
            am_perf_ctx ctx = { .x = d_x, .n = c->n, .out = d_out, .blocks = paths[p] };
            em_gpu_timing t = {0};
            const em_status s2 = em_gpu_time(launch_argmax, &ctx, &t);
            CHECK_MSG(s2 == EM_OK, "%s: timing: %s (%s)", c->what, em_status_str(s2), em_last_error());
            char what[96];
            snprintf(what, sizeof what, "argmax n %u, %s", c->n,
                     paths[p] == 1 ? "one block" : have_cluster ? "cluster of 8 (default)" : "default");
            if (s2 == EM_OK) em_gpu_perf_add(what, &t, 4.0 * c->n);
        }
    }
    em_cuda_free(d_alloc);
    em_cuda_free(d_out);
    free(x);
}

int main(int argc, char **argv) {
    em_gpu_env env;
    em_gpu_test_init("test_argmax_cuda", argc, argv, &env);
    /* refusals: NULL result, NULL x with n > 0, a bad path */
    float f = 0;
    int32_t o = 0;
    CHECK_STATUS(em_cuda_argmax(&f, 1, NULL, NULL), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_cuda_argmax(NULL, 1, &o, NULL), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_cuda_argmax_path(&f, 1, &o, NULL, 3), EM_ERR_INVALID_ARG);
    /* the cluster path exists from sm_90 on; on older devices the cluster call must refuse */
    const int have_cluster = env.info.cc_major >= 9;
    if (!have_cluster) CHECK_STATUS(em_cuda_argmax_path(&f, 1, &o, NULL, 8), EM_ERR_UNSUPPORTED);
    printf("cluster path: %s\n", have_cluster ? "yes (sm_90+)" : "no (before sm_90): one block");

    em_rng rng;
    em_rng_seed(&rng, 20240628);
    for (size_t i = 0; i < LEN(cases); i++) run_case(&cases[i], &rng, &env, have_cluster);
    if (env.perf) em_gpu_perf_print(&env);
    return em_test_finish("test_argmax_cuda");
}
