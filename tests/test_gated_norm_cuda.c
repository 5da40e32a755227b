/*
 * test_gated_norm_cuda.c — em_cuda_gated_norm (kernels/norm.cu: out = w * groupRMSNorm(y * silu(z))) against
 * its float32 C twin em_ref_gated_norm, one case per line of a table named after model shapes (STYLE.md
 * lesson 8). Fresh seeded random inputs; out poisoned with NaN before every run (unless it is y itself, as in
 * the executor); compared by max relative error (limit 1e-5).
 *
 * The "exec" layout is the executor's: y dense [n_tok, d_inner], z = the first d_inner of an in_proj row
 * (z_stride d_in_proj), out = y (in place).
 *
 * Without a CUDA device it prints "SKIP test_gated_norm_cuda: no CUDA device" and exits 77 (ctest: Skipped).
 *   build/tests/test_gated_norm_cuda [--perf]
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
#error "test_gated_norm_cuda is built only with CUDA (tests/gpu.cmake)"
#endif

#define TOL 1e-5
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

typedef struct gn_case {
    uint32_t d, group, n_tok;
    uint32_t z_stride;     /* z inside a wider row (the in_proj row); 0 = dense */
    int in_place;          /* out = y, same stride (the executor) */
    uint32_t y_pad, o_pad; /* y_stride = d + y_pad, out_stride = d + o_pad (0: dense) */
    uint32_t y_off;        /* floats the device y pointer is shifted by (1: misaligned -> scalar kernel) */
    int perf;
    const char *what;
} gn_case;

static const gn_case cases[] = {
    // Mamba-2 8B: d_inner 8192, in_proj row 18560; Megatron groups (G 8: 1024) and HF's one group (8192)
    { 8192, 1024, 1, 18560, .in_place = 1, .perf = 1, .what = "Mamba-2 8B, decode, 8 groups (Megatron)" },
    { 8192, 8192, 1, 18560, .in_place = 1, .perf = 1, .what = "Mamba-2 8B, decode, one group (HF)" },
    { 8192, 1024, 40, 18560, .in_place = 1, .perf = 1, .what = "Mamba-2 8B, prompt of 40" },
    { 8192, 1024, 3, .what = "Mamba-2 8B, 3 tokens, separate out" },
    // tiny fixture: d_inner 128, G 2, in_proj row 328
    { 128, 64, 1, 328, .in_place = 1, .what = "tiny fixture, decode, 2 groups" },
    { 128, 128, 3, 328, .in_place = 1, .what = "tiny fixture, 3 tokens, one group" },
    // strides, scalar kernel, long groups
    { 96, 32, 4, 101, .y_pad = 4, .o_pad = 8, .what = "strided y, z, out" },
    { 90, 30, 3, .what = "group 30 (% 4 != 0): scalar kernel" },
    { 256, 64, 2, .y_off = 1, .in_place = 1, .what = "y misaligned, in place: scalar kernel" },
    { 20000, 20000, 2, .in_place = 1, .what = "group 20000: beyond the register cache" },
    { 5000, 5000, 1, .y_off = 1, .in_place = 1, .what = "group 5000 scalar, in place, beyond the cache" },
};

typedef struct gn_perf_ctx {
    em_gated_norm_args a;
} gn_perf_ctx;

static em_status launch_gn(void *ctx, int i, void *stream) {
    (void)i; /* activations: L2-resident in the executor too */
    return em_cuda_gated_norm(&((gn_perf_ctx *)ctx)->a, stream);
}

static void run_case(const gn_case *c, em_rng *rng, const em_gpu_env *env) {
    char label[160];
    snprintf(label, sizeof label, "%s [d %u, group %u, n_tok %u]", c->what, c->d, c->group, c->n_tok);
    const uint32_t d = c->d, nt = c->n_tok;
    const uint32_t ys_arg = c->y_pad ? d + c->y_pad : 0, zs_arg = c->z_stride;
    const uint32_t os_arg = c->in_place ? ys_arg : c->o_pad ? d + c->o_pad : 0;
    const size_t ys = ys_arg ? ys_arg : d, zs = zs_arg ? zs_arg : d, os = os_arg ? os_arg : d;
    const size_t n_y = nt * ys, n_z = nt * zs, n_o = nt * os;

    float *y = em_xmalloc(n_y * 4), *z = em_xmalloc(n_z * 4), *w = em_xmalloc(d * 4);
    float *o_ref = em_xmalloc((c->in_place ? n_y : n_o) * 4), *o_got = em_xmalloc((c->in_place ? n_y : n_o) * 4);
    em_fill_uniform(rng, y, n_y, 1.0f);
    em_fill_uniform(rng, z, n_z, 3.0f);
    for (uint32_t i = 0; i < d; i++) w[i] = 1.0f + em_rng_uniform(rng, 0.5f);
    em_gated_norm_args ra = { .y = y, .z = z, .w = w, .out = o_ref, .n_tok = nt, .d = d, .group = c->group,
                              .y_stride = ys_arg, .z_stride = zs_arg, .out_stride = os_arg, .eps = 1e-5f };
    if (c->in_place) { /* the twin in place on a copy of y */
        memcpy(o_ref, y, n_y * 4);
        ra.y = o_ref;
    } else {
        em_poison(o_ref, n_o);
    }
    em_ref_gated_norm(&ra);

    float *d_y_alloc = em_gpu_poisoned((n_y + c->y_off) * 4);
    float *d_y = d_y_alloc ? d_y_alloc + c->y_off : NULL;
    float *d_z = em_gpu_dup(z, n_z * 4), *d_w = em_gpu_dup(w, d * 4);
    float *d_o = c->in_place ? d_y : em_gpu_poisoned(n_o * 4);
    const int ok = d_y && d_z && d_w && d_o && em_cuda_memcpy(d_y, y, n_y * 4) == EM_OK;
    em_gated_norm_args ga = ra;
    ga.y = d_y;
    ga.z = d_z;
    ga.w = d_w;
    ga.out = d_o;
    em_status st = ok ? em_cuda_gated_norm(&ga, NULL) : EM_ERR_DEVICE;
    if (st == EM_OK) st = em_cuda_sync(NULL);
    CHECK_MSG(st == EM_OK, "%s: %s (%s)", label, em_status_str(st), em_last_error());
    double err = INFINITY;
    if (st == EM_OK && em_gpu_fetch(o_got, d_o, (c->in_place ? n_y : n_o) * 4))
        err = em_gpu_check_rows(label, o_got, o_ref, nt, d, c->in_place ? ys : os, !c->in_place, TOL);
    printf("  %-48s d %5u group %5u n_tok %2u: rel err %.2e %s\n", c->what, d, c->group, nt, err,
           err <= TOL ? "ok" : "FAIL");

    if (env->perf && c->perf && st == EM_OK) {
        gn_perf_ctx ctx = { .a = ga };
        em_gpu_timing t = {0};
        st = em_gpu_time(launch_gn, &ctx, &t);
        CHECK_MSG(st == EM_OK, "%s: timing: %s (%s)", label, em_status_str(st), em_last_error());
        char what[96];
        snprintf(what, sizeof what, "gated_norm d %u group %u n_tok %u", d, c->group, nt);
        const double bytes = 4.0 * (3.0 * nt * d + d); /* y, z read, out written, w read */
        if (st == EM_OK) em_gpu_perf_add(what, &t, bytes);
    }

    em_cuda_free(d_y_alloc);
    em_cuda_free(d_z);
    em_cuda_free(d_w);
    if (!c->in_place) em_cuda_free(d_o);
    free(y);
    free(z);
    free(w);
    free(o_ref);
    free(o_got);
}

static void check_refusals(void) {
    float f = 0;
    const em_gated_norm_args good = { .y = &f, .z = &f, .w = &f, .out = &f, .n_tok = 1, .d = 4, .group = 2,
                                      .eps = 1e-5f };
    CHECK(em_cuda_gated_norm_supported(&good));
    em_gated_norm_args a = good;
    a.group = 3; /* d % group != 0 */
    CHECK_STATUS(em_cuda_gated_norm(&a, NULL), EM_ERR_INVALID_ARG);
    a.group = 0;
    CHECK_STATUS(em_cuda_gated_norm(&a, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.z_stride = 3;
    CHECK_STATUS(em_cuda_gated_norm(&a, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.n_tok = 0;
    CHECK_STATUS(em_cuda_gated_norm(&a, NULL), EM_OK);
    CHECK_STATUS(em_cuda_gated_norm(NULL, NULL), EM_ERR_INVALID_ARG);
}

int main(int argc, char **argv) {
    em_gpu_env env;
    em_gpu_test_init("test_gated_norm_cuda", argc, argv, &env);
    check_refusals();
    em_rng rng;
    em_rng_seed(&rng, 20240626);
    for (size_t i = 0; i < LEN(cases); i++) run_case(&cases[i], &rng, &env);
    if (env.perf) em_gpu_perf_print(&env);
    return em_test_finish("test_gated_norm_cuda");
}
