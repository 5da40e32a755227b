/*
 * test_linear_i8_cuda.c — em_cuda_linear_i8 (kernels/linear_i8.cu, INT8 weights per output channel) against
 * its float32 C twin em_ref_linear (w_dtype EM_DTYPE_I8) on the same int8 values and scales, one case per line
 * of a table named after the model shapes (STYLE.md lesson 8). Fresh seeded random inputs: q uniform over the
 * whole [-127, 127], positive scales of varied size, one zero row (scale 0) per case. The device output is
 * poisoned with NaN (0xff bytes) before every run, so an unwritten element fails; the row padding of strided
 * outputs must stay NaN; a second run must give the same bits (deterministic).
 *
 * Tolerance: both sides multiply the same int8 values by the same fp32 x and accumulate in fp32; the scale is
 * applied once per row to the finished sum on both. What differs is only the summation order (8 partial sums
 * per 512-weight chunk on the CPU, per lane / butterfly / split-K on the GPU), a relative error of order
 * sqrt(n_in) * 2^-24 of the sum of |terms| (~1e-6 of max |y| for these shapes, as test_linear_cuda measures for
 * bf16). So the limit is 1e-4, not bf16's 1e-2: a wrong byte, a lost chunk or a misplaced scale is >= 1e-3.
 * Every case prints its real figure. The one-token cases with n_in a multiple of 1024 (<= 16384) also run
 * linear_i8.cu v3 (x-stationary, the one-token default) the same way, whatever the default is, and --perf times it.
 *
 * Without a CUDA device it prints "SKIP test_linear_i8_cuda: no CUDA device" and exits 77 (ctest: Skipped).
 *
 *   ctest -L gpu --output-on-failure            # label gpu; built only with -DEM_CUDA=ON
 *   build-gpu/tests/test_linear_i8_cuda --perf  # + times the 8B shapes in a CUDA graph: us | GB/s | % of the read
 *                                               #   bandwidth measured in the same run (em_cuda_read_bandwidth)
 *   build-gpu/tests/test_linear_i8_cuda --sweep # + checks and times every variant linear_i8.cu was built with
 *                                               #   (all of them only with -DEM_LIN_I8_SWEEP)
 * --perf rotates among enough weight copies to stream >= 4x the L2 per round, so no launch reads W from L2.
 * Bytes counted: W (n_out * n_in) + scales (4 n_out) + x + y.
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
#error "test_linear_i8_cuda is built only with CUDA (tests/int8.cmake)"
#endif

#define TOL_I8 1e-4 /* summation order only (see the top of this file); the real figure is printed per case */
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

typedef struct i8_case {
    uint32_t n_out, n_in, n_tok;
    uint32_t x_pad, y_pad; /* x_stride = n_in + x_pad, y_stride = n_out + y_pad (0: dense) */
    uint32_t x_off;        /* elements the device x pointer is shifted by (4: misaligned -> fallback) */
    int perf;              /* timed by --perf */
    const char *what;
} i8_case;

static const i8_case cases[] = {
    // Mamba-2 8B (d_model 4096, d_inner 8192, 128 heads, G 8, N 128), decode: the weight-streaming shapes
    { .n_out = 18560,  .n_in = 4096, .n_tok = 1, .perf = 1, .what = "in_proj, decode" },
    { .n_out = 4096,   .n_in = 8192, .n_tok = 1, .perf = 1, .what = "out_proj, decode" },
    { .n_out = 50288,  .n_in = 4096, .n_tok = 1, .perf = 1, .what = "LM head (vocab 50288)" },
    { .n_out = 256000, .n_in = 4096, .n_tok = 1, .perf = 1, .what = "LM head (vocab 256000)" },
    // hybrid 8B: attention qkv (GQA 32/8, head 128) and o, MLP up / down (d_ff 16384)
    { .n_out = 6144,   .n_in = 4096, .n_tok = 1, .what = "hybrid attention qkv" },
    { .n_out = 4096,   .n_in = 16384, .n_tok = 1, .what = "hybrid MLP down" },
    // token groups: every NT instantiation, and n_tok > 8 (host loop over groups)
    { .n_out = 4096,   .n_in = 4096, .n_tok = 2, .perf = 1, .what = "2 sequences" },
    { .n_out = 4096,   .n_in = 4096, .n_tok = 3, .what = "3 sequences" },
    { .n_out = 2048,   .n_in = 4096, .n_tok = 4, .what = "4 sequences" },
    { .n_out = 2048,   .n_in = 8192, .n_tok = 5, .what = "5 sequences" },
    { .n_out = 1000,   .n_in = 4096, .n_tok = 6, .what = "6 sequences, n_out not a multiple of 8" },
    { .n_out = 1030,   .n_in = 1024, .n_tok = 7, .what = "7 sequences" },
    { .n_out = 4096,   .n_in = 4096, .n_tok = 8, .perf = 1, .what = "8 sequences" },
    { .n_out = 777,    .n_in = 2048, .n_tok = 11, .what = "n_tok 11: groups of 8 + 3" },
    // v3 x-stationary (NT 1, n_in a multiple of 1024 up to 16384): one warp a block, odd n_out (a short last
    // group), fewer rows than one group, more blocks than row groups
    { .n_out = 1001,   .n_in = 1024, .n_tok = 1, .what = "x-stationary: 1 warp a block, n_out odd" },
    { .n_out = 3,      .n_in = 2048, .n_tok = 1, .what = "x-stationary: 3 rows (less than a group)" },
    { .n_out = 530,    .n_in = 3072, .n_tok = 1, .what = "x-stationary: 3 warps a block, 530 rows" },
    // edges: short rows (remainder loop only), strides, the fallback
    { .n_out = 1030,   .n_in = 192, .n_tok = 1, .what = "bundled model in_proj (192 wide)" },
    { .n_out = 333,    .n_in = 4096, .n_tok = 3, .x_pad = 4, .y_pad = 5, .what = "strided x and y" },
    { .n_out = 100,    .n_in = 1000, .n_tok = 2, .what = "n_in % 16 != 0: fallback" },
    { .n_out = 100,    .n_in = 512, .n_tok = 1, .x_off = 1, .what = "x not 16-byte aligned: fallback" },
};

/* The host side of one case. */
typedef struct i8_host {
    int8_t *q;
    float *scale, *x, *ref, *got, *got2;
    uint32_t xs, ys;
} i8_host;

static void make_host(const i8_case *c, em_rng *r, i8_host *h) {
    h->xs = c->n_in + c->x_pad;
    h->ys = c->n_out + c->y_pad;
    const size_t nw = (size_t)c->n_out * c->n_in;
    h->q = em_xmalloc(nw);
    for (size_t i = 0; i < nw; i++) h->q[i] = (int8_t)((int)(em_rng_u32(r) % 255) - 127);
    h->scale = em_xmalloc(sizeof(float) * c->n_out);
    for (uint32_t o = 0; o < c->n_out; o++) h->scale[o] = (0.5f + 0.5f * (em_rng_uniform(r, 1.0f) + 1.0f)) * 1e-3f;
    h->scale[c->n_out / 2] = 0.0f; /* a zero row: its output must be exactly 0 */
    h->x = em_xmalloc(sizeof(float) * ((size_t)c->n_tok * h->xs + c->x_off));
    em_fill_uniform(r, h->x, (size_t)c->n_tok * h->xs + c->x_off, 1.0f);
    h->ref = em_xmalloc(sizeof(float) * (size_t)c->n_tok * h->ys);
    h->got = em_xmalloc(sizeof(float) * (size_t)c->n_tok * h->ys);
    h->got2 = em_xmalloc(sizeof(float) * (size_t)c->n_tok * h->ys);
    em_poison(h->ref, (size_t)c->n_tok * h->ys);
    em_linear_args a = { .w = h->q, .w_dtype = EM_DTYPE_I8, .w_scale = h->scale, .x = h->x + c->x_off, .y = h->ref,
                         .n_tok = c->n_tok, .n_in = c->n_in, .n_out = c->n_out, .x_stride = c->x_pad ? h->xs : 0,
                         .y_stride = c->y_pad ? h->ys : 0 };
    em_ref_linear(&a);
}

static void free_host(i8_host *h) {
    free(h->q); free(h->scale); free(h->x); free(h->ref); free(h->got); free(h->got2);
}

/* --perf: launch i of a rotation over n_copies weight copies */
typedef struct i8_perf_ctx {
    em_linear_args a;
    const void *w[16];
    int n_copies;
    int variant; /* -1: em_cuda_linear_i8's pick */
} i8_perf_ctx;

static em_status launch_i8(void *ctx, int i, void *stream) {
    i8_perf_ctx *c = ctx;
    em_linear_args a = c->a;
    a.w = c->w[i % c->n_copies];
    return c->variant < 0 ? em_cuda_linear_i8(&a, stream) : em_cuda_linear_i8_variant(&a, stream, c->variant);
}

/* Runs the case through `variant` (-1: the default launcher) twice, checks against the twin and determinism. */
/* linear_i8.cu v3 (x-stationary) variants take one token with n_in a multiple of 1024 up to 16384 */
static int xs_takes(const em_linear_variant *v, const i8_case *c) {
    return v->k_split == 0 && c->n_tok == 1 && c->n_in % 1024 == 0 && c->n_in <= 16384 && c->x_off == 0;
}

static double run_check(const i8_case *c, const i8_host *h, const em_linear_args *ga, float *dy, int variant,
                        const char *label) {
    const size_t ybytes = sizeof(float) * (size_t)c->n_tok * h->ys;
    double err = INFINITY;
    for (int rep = 0; rep < 2; rep++) {
        CHECK_STATUS(em_cuda_memset(dy, 0xff, ybytes), EM_OK);
        em_status st = variant < 0 ? em_cuda_linear_i8(ga, NULL) : em_cuda_linear_i8_variant(ga, NULL, variant);
        CHECK_MSG(st == EM_OK, "%s: launch: %s (%s)", label, em_status_str(st), em_last_error());
        st = em_cuda_sync(NULL);
        CHECK_MSG(st == EM_OK, "%s: run: %s (%s)", label, em_status_str(st), em_last_error());
        if (st != EM_OK) return INFINITY;
        if (!em_gpu_fetch(rep ? h->got2 : h->got, dy, ybytes)) return INFINITY;
    }
    err = em_gpu_check_rows(label, h->got, h->ref, c->n_tok, c->n_out, h->ys, 1, TOL_I8);
    CHECK_MSG(memcmp(h->got, h->got2, ybytes) == 0, "%s: two runs differ (not deterministic)", label);
    int zero_ok = 1;
    for (uint32_t t = 0; t < c->n_tok; t++) zero_ok &= h->got[(size_t)t * h->ys + c->n_out / 2] == 0.0f;
    CHECK_MSG(zero_ok, "%s: the zero-scale row is not exactly 0", label);
    return err;
}

int main(int argc, char **argv) {
    em_gpu_env env;
    const int sweep = argc > 1 && !strcmp(argv[1], "--sweep");
    em_gpu_test_init("test_linear_i8_cuda", sweep ? 1 : argc, argv, &env);
    env.perf |= sweep;
    if (env.perf) {
        double gbps = 0;
        em_status st = em_cuda_read_bandwidth((size_t)2 << 30, 10, &gbps);
        CHECK_MSG(st == EM_OK, "em_cuda_read_bandwidth: %s", em_last_error());
        if (st == EM_OK) {
            printf("em_cuda_read_bandwidth (kernels/bandwidth.cu, 2 GiB, median of 10): %.0f GB/s: the %% read column\n",
                   gbps);
            env.read_gbps = gbps;
        }
    }
    em_linear_variant vinfo;
    const int n_var = em_cuda_linear_i8_variant_info(-1, &vinfo);
    for (int i = 0; i < n_var; i++) {
        em_cuda_linear_i8_variant_info(i, &vinfo);
        printf("variant %2d %-26s %3d registers, %d bytes local, %d blocks/SM\n", i, vinfo.name, vinfo.regs,
               vinfo.local_bytes, vinfo.blocks_per_sm);
        CHECK_MSG(vinfo.local_bytes == 0, "variant %s spills (%d bytes of local memory)", vinfo.name, vinfo.local_bytes);
    }

    em_rng r;
    em_rng_seed(&r, 0x1810);
    for (size_t ci = 0; ci < LEN(cases); ci++) {
        const i8_case *c = &cases[ci];
        i8_host h;
        make_host(c, &r, &h);
        const size_t nw = (size_t)c->n_out * c->n_in;
        int8_t *dq = em_gpu_dup(h.q, nw);
        float *ds = em_gpu_dup(h.scale, sizeof(float) * c->n_out);
        float *dx = em_gpu_dup(h.x, sizeof(float) * ((size_t)c->n_tok * h.xs + c->x_off));
        float *dy = em_gpu_poisoned(sizeof(float) * (size_t)c->n_tok * h.ys);
        if (!dq || !ds || !dx || !dy) break;
        em_linear_args ga = { .w = dq, .w_dtype = EM_DTYPE_I8, .w_scale = ds, .x = dx + c->x_off, .y = dy,
                              .n_tok = c->n_tok, .n_in = c->n_in, .n_out = c->n_out,
                              .x_stride = c->x_pad ? h.xs : 0, .y_stride = c->y_pad ? h.ys : 0 };
        CHECK(em_cuda_linear_i8_supported(&ga));
        const int vdef = em_cuda_linear_i8_default_variant(&ga);
        char label[200];
        snprintf(label, sizeof label, "%ux%u n_tok %u (%s)", c->n_out, c->n_in, c->n_tok, c->what);
        const double err = run_check(c, &h, &ga, dy, -1, label);
        if (vdef >= 0) em_cuda_linear_i8_variant_info(vdef, &vinfo);
        printf("%-64s %-24s max rel err %.2e (tol %.0e)\n", label, vdef >= 0 ? vinfo.name : "fallback", err, TOL_I8);

        /* --sweep: every other variant of this n_tok, checked (and timed below with --perf shapes); v3 (x-stationary,
         * the one-token default: k_split 0 in the variant info) on every one-token case it takes, always */
        for (int v = 0; v < n_var; v++) {
            em_cuda_linear_i8_variant_info(v, &vinfo);
            if (v == vdef || vinfo.nt != (int)c->n_tok || vdef < 0) continue;
            if (!xs_takes(&vinfo, c) && (vinfo.k_split == 0 || !sweep)) continue;
            char vl[260];
            snprintf(vl, sizeof vl, "%s [%s]", label, vinfo.name);
            const double e2 = run_check(c, &h, &ga, dy, v, vl);
            printf("  sweep %-56s max rel err %.2e\n", vinfo.name, e2);
        }

        if (env.perf && c->perf) {
            /* enough copies to stream >= 4x the L2 per rotation */
            int copies = (int)((4.0 * env.info.l2_bytes) / (double)nw) + 1;
            if (copies > 16) copies = 16;
            i8_perf_ctx ctx = { .a = ga, .n_copies = copies, .variant = -1 };
            ctx.w[0] = dq;
            for (int k = 1; k < copies; k++) ctx.w[k] = em_gpu_dup(h.q, nw);
            const double bytes = (double)nw + 4.0 * c->n_out + 4.0 * c->n_tok * (c->n_in + c->n_out);
            for (int v = -1; v < n_var; v++) {
                if (v >= 0) {
                    em_cuda_linear_i8_variant_info(v, &vinfo);
                    if (v == vdef || vinfo.nt != (int)c->n_tok || vdef < 0) continue;
                    if (!xs_takes(&vinfo, c) && (vinfo.k_split == 0 || !sweep)) continue;
                }
                ctx.variant = v;
                em_gpu_timing t;
                em_status st = em_gpu_time(launch_i8, &ctx, &t);
                CHECK_MSG(st == EM_OK, "%s: timing: %s", label, em_last_error());
                char what[120];
                snprintf(what, sizeof what, "i8 %ux%u nt%u %s%s", c->n_out, c->n_in, c->n_tok,
                         v < 0 ? c->what : vinfo.name, v < 0 || !sweep ? "" : " (sweep)");
                if (st == EM_OK) em_gpu_perf_add(what, &t, bytes);
            }
            for (int k = 1; k < copies; k++) em_cuda_free((void *)ctx.w[k]);
        }
        em_cuda_free(dq);
        em_cuda_free(ds);
        em_cuda_free(dx);
        em_cuda_free(dy);
        free_host(&h);
    }
    if (env.perf) em_gpu_perf_print(&env);
    return em_test_finish("test_linear_i8_cuda");
}
