/*
 * test_linear_cuda.c — em_cuda_linear (kernels/linear.cu) against its float32 C twin em_ref_linear on the
 * same bf16 (or f32) weights, one case per line of a table named after the model shapes (STYLE.md lesson 8).
 * Fresh seeded random inputs; the device output is poisoned with NaN (0xff bytes) before every run, so an
 * unwritten element fails; the row padding of strided outputs must stay NaN. Both sides accumulate in fp32
 * from identical weights, so the max error relative to max |ref| is ~1e-6 (summation order only); the
 * limit is the bf16 one, 1e-2, and every case prints its real figure.
 *
 * Without a CUDA device it prints "SKIP test_linear_cuda: no CUDA device" and exits 77 (ctest: Skipped).
 *
 *   ctest -L gpu --output-on-failure         # label gpu; built only with -DEM_CUDA=ON
 *   build-gpu/tests/test_linear_cuda         # the same, directly
 *   build-gpu/tests/test_linear_cuda --perf  # + times the big shapes: us | GB/s | % of read and copy bandwidth
 *
 * --perf measures its own references in the same run: a 1 GiB device-to-device cudaMemcpy (bytes read +
 * written) and a read-only reduction over a 2 GiB buffer (tests/gpu_bw.cu; the roofline a weight-streaming
 * GEMV is judged against). Each shape is timed with cudaEvents around each of 50 launches after 5 warm-ups
 * (median reported), rotating among enough weight copies to stream >= 4x the L2, so no run reads W from L2.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_ops.h"
#include "cuda_rt.h"
#include "ops.h"
#include "testutil.h"
#include "util.h"

#ifndef EM_HAVE_CUDA
#error "test_linear_cuda is built only with CUDA (tests/gpu.cmake)"
#endif

#define TOL_BF16 1e-2   /* bf16 limit; the real figure (~1e-6) is printed per case */
#define PERF_WARMUP 5
#define PERF_REPS 50
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

/* tests/gpu_bw.cu: one read-only pass over `bytes` of buf; returns the launch's cudaError_t. */
int em_test_read_pass(const void *buf, size_t bytes, unsigned *sink, int sm_count, void *stream);

// ---- the cases -----------------------------------------------------------------------------------------

typedef struct lin_case {
    uint32_t n_out, n_in, n_tok;
    em_dtype dtype;
    uint32_t x_pad, y_pad; /* x_stride = n_in + x_pad, y_stride = n_out + y_pad (0 pad: stride 0 = dense) */
    uint32_t x_off, w_off; /* elements the device x / w pointers are shifted by (misaligned: fallback path) */
    int perf;              /* timed by --perf */
    const char *what;
} lin_case;

#define BF16 EM_DTYPE_BF16
#define F32 EM_DTYPE_F32
static const lin_case cases[] = {
    // Mamba-2 8B (d_model 4096, d_inner 8192, 128 heads, G 8, N 128), decode: the weight-streaming shapes
    { .n_out = 18560, .n_in = 4096, .n_tok = 1, .dtype = BF16, .perf = 1, .what = "in_proj, decode" },
    { .n_out = 4096,  .n_in = 8192, .n_tok = 1, .dtype = BF16, .perf = 1, .what = "out_proj, decode" },
    { .n_out = 50288, .n_in = 4096, .n_tok = 1, .dtype = BF16, .perf = 1, .what = "LM head (vocab 50288)" },
    // token groups: every NT instantiation of the vector kernel, and n_tok > 8 (host loop over groups)
    { .n_out = 18560, .n_in = 4096, .n_tok = 2, .dtype = BF16, .perf = 1, .what = "in_proj, 2 sequences" },
    { .n_out = 18560, .n_in = 4096, .n_tok = 5, .dtype = BF16, .perf = 1, .what = "in_proj, 5 sequences" },
    { .n_out = 4096,  .n_in = 8192, .n_tok = 40, .dtype = BF16, .perf = 1, .what = "out_proj, 40 tokens (5 x 8)" },
    { .n_out = 324,   .n_in = 64,   .n_tok = 1, .dtype = BF16, .what = "tiny fixture, decode (324 % 16 rows)" },
    { .n_out = 324,   .n_in = 64,   .n_tok = 3, .dtype = BF16, .what = "tiny fixture, NT 3" },
    { .n_out = 324,   .n_in = 64,   .n_tok = 4, .dtype = BF16, .what = "tiny fixture, NT 4" },
    { .n_out = 324,   .n_in = 64,   .n_tok = 6, .dtype = BF16, .what = "tiny fixture, NT 6" },
    { .n_out = 324,   .n_in = 64,   .n_tok = 7, .dtype = BF16, .what = "tiny fixture, NT 7" },
    { .n_out = 324,   .n_in = 64,   .n_tok = 8, .dtype = BF16, .what = "tiny fixture, NT 8" },
    { .n_out = 324,   .n_in = 64,   .n_tok = 40, .dtype = BF16, .what = "tiny fixture, prompt of 40" },
    // edges of the vector path: main loop + remainder, strides, and each fallback condition
    { .n_out = 1000,  .n_in = 4104, .n_tok = 2, .dtype = BF16, .what = "n_in / 8 = 513 vectors: remainder loop" },
    { .n_out = 333,   .n_in = 512,  .n_tok = 3, .dtype = BF16, .x_pad = 4, .y_pad = 5, .what = "strided x, y" },
    { .n_out = 4096,  .n_in = 4100, .n_tok = 1, .dtype = BF16, .what = "odd n_in 4100: fallback (rows unaligned)" },
    { .n_out = 77,    .n_in = 4100, .n_tok = 9, .dtype = BF16, .what = "odd n_in, 9 tokens: fallback groups" },
    { .n_out = 257,   .n_in = 1024, .n_tok = 2, .dtype = BF16, .x_off = 1, .what = "x misaligned: fallback" },
    { .n_out = 257,   .n_in = 1024, .n_tok = 1, .dtype = BF16, .w_off = 1, .what = "W misaligned: fallback" },
    { .n_out = 256,   .n_in = 512,  .n_tok = 1, .dtype = BF16, .x_pad = 1, .what = "x_stride % 4 != 0: fallback" },
    { .n_out = 4096,  .n_in = 4096, .n_tok = 1, .dtype = F32,  .what = "f32 weights: simple path" },
    { .n_out = 130,   .n_in = 33,   .n_tok = 11, .dtype = F32, .x_pad = 3, .y_pad = 2, .what = "f32, odd, strided" },
    { .n_out = 5,     .n_in = 0,    .n_tok = 2, .dtype = BF16, .what = "n_in 0: y = 0, written" },
};

// ---- helpers ---------------------------------------------------------------------------------------------

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "out of host memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The device buffers of one case; w_dev[0] is the checked copy, w_dev[1..] are copies for --perf. */
typedef struct lin_dev {
    void *w_alloc[8];
    int n_w;
    float *x_alloc, *y_alloc;
} lin_dev;

static void lin_dev_free(lin_dev *d) {
    for (int i = 0; i < d->n_w; i++) em_cuda_free(d->w_alloc[i]);
    em_cuda_free(d->x_alloc);
    em_cuda_free(d->y_alloc);
    memset(d, 0, sizeof *d);
}

/* Median time of PERF_REPS launches of em_cuda_linear (after PERF_WARMUP), an event between each two,
 * rotating through n_args argument sets (the weight copies). */
static em_status time_linear(const em_linear_args *args, int n_args, double *median_us) {
    cudaEvent_t ev[PERF_REPS + 1];
    double ms[PERF_REPS];
    int n_ev = 0;
    em_status st = EM_OK;
    cudaError_t e = cudaSuccess;
    for (; n_ev <= PERF_REPS && e == cudaSuccess; n_ev++) e = cudaEventCreate(&ev[n_ev]);
    if (e != cudaSuccess) n_ev--; /* the failed one was not created */
    for (int i = 0; i < PERF_WARMUP && e == cudaSuccess && st == EM_OK; i++)
        st = em_cuda_linear(&args[i % n_args], NULL);
    for (int i = 0; i < PERF_REPS && e == cudaSuccess && st == EM_OK; i++) {
        e = cudaEventRecord(ev[i], NULL);
        if (e == cudaSuccess) st = em_cuda_linear(&args[i % n_args], NULL);
    }
    if (e == cudaSuccess && st == EM_OK) e = cudaEventRecord(ev[PERF_REPS], NULL);
    if (e == cudaSuccess && st == EM_OK) e = cudaEventSynchronize(ev[PERF_REPS]);
    for (int i = 0; i < PERF_REPS && e == cudaSuccess && st == EM_OK; i++) {
        float f = 0;
        e = cudaEventElapsedTime(&f, ev[i], ev[i + 1]);
        ms[i] = f;
    }
    if (e != cudaSuccess && st == EM_OK) st = em_cuda_fail(e, "cudaEvent* around em_cuda_linear", __FILE__, __LINE__);
    for (int i = 0; i < n_ev; i++) cudaEventDestroy(ev[i]);
    if (st != EM_OK) return st;
    qsort(ms, PERF_REPS, sizeof ms[0], cmp_double);
    *median_us = 1e3 * ms[PERF_REPS / 2];
    return EM_OK;
}

// ---- bandwidth references (--perf) ----------------------------------------------------------------------

typedef struct bw_ref {
    double read_gbps; /* read-only reduction over 2 GiB: the roofline of a weight-streaming kernel */
    double copy_gbps; /* 1 GiB device-to-device cudaMemcpy, bytes read + written */
} bw_ref;

/* Median over `reps` of one timed operation: kind 0 = read pass over `bytes` of buf, 1 = copy of `bytes`
 * from buf to buf + bytes. */
static em_status time_bw(int kind, char *buf, size_t bytes, unsigned *sink, int sms, int reps, double *ms_out) {
    cudaEvent_t a, b;
    double ms[16];
    EM_CUDA_CHECK(cudaEventCreate(&a));
    EM_CUDA_CHECK(cudaEventCreate(&b));
    em_status st = EM_OK;
    for (int i = -2; i < reps && st == EM_OK; i++) { /* i < 0: warm-up */
        cudaError_t e = cudaEventRecord(a, NULL);
        if (e == cudaSuccess) {
            e = kind == 0 ? (cudaError_t)em_test_read_pass(buf, bytes, sink, sms, NULL)
                          : cudaMemcpyAsync(buf + bytes, buf, bytes, cudaMemcpyDeviceToDevice, NULL);
        }
        if (e == cudaSuccess) e = cudaEventRecord(b, NULL);
        if (e == cudaSuccess) e = cudaEventSynchronize(b);
        float f = 0;
        if (e == cudaSuccess) e = cudaEventElapsedTime(&f, a, b);
        if (e != cudaSuccess) st = em_cuda_fail(e, kind == 0 ? "read pass" : "cudaMemcpyAsync D2D", __FILE__, __LINE__);
        if (i >= 0) ms[i] = f;
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    if (st != EM_OK) return st;
    qsort(ms, (size_t)reps, sizeof ms[0], cmp_double);
    *ms_out = ms[reps / 2];
    return EM_OK;
}

static em_status measure_bw(int sms, bw_ref *bw) {
    const size_t gib = (size_t)1 << 30;
    char *buf = NULL;
    unsigned *sink = NULL;
    EM_TRY(em_cuda_malloc((void **)&buf, 2 * gib));
    em_status st = em_cuda_malloc((void **)&sink, sizeof *sink);
    /* Any non-zero pattern (never time on zeros, even when only reading). */
    if (st == EM_OK) st = em_cuda_memset(buf, 0x5a, 2 * gib);
    if (st == EM_OK) st = em_cuda_memset(sink, 0, sizeof *sink);
    double ms = 0;
    if (st == EM_OK) st = time_bw(0, buf, 2 * gib, sink, sms, 10, &ms);
    if (st == EM_OK) bw->read_gbps = 2.0 * gib / (ms * 1e-3) / 1e9;
    if (st == EM_OK) st = time_bw(1, buf, gib, sink, sms, 10, &ms);
    if (st == EM_OK) bw->copy_gbps = 2.0 * gib / (ms * 1e-3) / 1e9;
    em_cuda_free(sink);
    em_cuda_free(buf);
    return st;
}

// ---- one case ---------------------------------------------------------------------------------------------

typedef struct perf_row {
    const lin_case *c;
    double us, gbps;
} perf_row;

/* Checks case c; with perf != 0 and c->perf, also times it into *row (row->us stays 0 otherwise). */
static void run_case(const lin_case *c, em_rng *rng, int perf, size_t l2_bytes, perf_row *row) {
    char dims[64], label[160];
    snprintf(dims, sizeof dims, "[%ux%u %s, n_tok %u]", c->n_out, c->n_in, c->dtype == EM_DTYPE_BF16 ? "bf16" : "f32",
             c->n_tok);
    snprintf(label, sizeof label, "%s %s", c->what, dims);
    const size_t xs = c->x_pad ? c->n_in + c->x_pad : c->n_in, ys = c->y_pad ? c->n_out + c->y_pad : c->n_out;
    const size_t esz = c->dtype == EM_DTYPE_BF16 ? 2 : 4;
    const size_t n_w = (size_t)c->n_out * c->n_in, n_x = c->n_tok * xs, n_y = c->n_tok * ys;

    /* Host side: weights already rounded to bf16, so that both sides multiply the same numbers. */
    void *w = xmalloc(n_w * esz);
    float *x = xmalloc(n_x * sizeof *x), *y_ref = xmalloc(n_y * sizeof *y_ref), *y_got = xmalloc(n_y * sizeof *y_got);
    /* |y| ~ 1 whatever n_in (uniform W of scale 1/sqrt(n_in), x in [-1, 1)): relative errors compare. */
    const float w_scale = 1.0f / sqrtf((float)(c->n_in ? c->n_in : 1));
    for (size_t i = 0; i < n_w; i++) {
        const float v = em_rng_uniform(rng, w_scale);
        if (c->dtype == EM_DTYPE_BF16) ((uint16_t *)w)[i] = em_f32_to_bf16(v);
        else ((float *)w)[i] = v;
    }
    em_fill_uniform(rng, x, n_x, 1.0f);
    em_poison(y_ref, n_y);
    em_linear_args ra = { .w = w, .w_dtype = c->dtype, .x = x, .y = y_ref, .n_tok = c->n_tok, .n_in = c->n_in,
                          .n_out = c->n_out, .x_stride = c->x_pad ? (uint32_t)xs : 0,
                          .y_stride = c->y_pad ? (uint32_t)ys : 0 };
    em_ref_linear(&ra);

    /* Device side: 16 extra bytes per buffer so that the shifted (misaligned) pointers stay in bounds. */
    lin_dev d = {0};
    em_status st = em_cuda_malloc(&d.w_alloc[0], n_w * esz + 16);
    d.n_w = st == EM_OK;
    if (st == EM_OK) st = em_cuda_malloc((void **)&d.x_alloc, n_x * sizeof(float) + 16);
    if (st == EM_OK) st = em_cuda_malloc((void **)&d.y_alloc, n_y * sizeof(float));
    void *dw = d.w_alloc[0] ? (char *)d.w_alloc[0] + c->w_off * esz : NULL;
    float *dx = d.x_alloc ? d.x_alloc + c->x_off : NULL;
    if (st == EM_OK) st = em_cuda_memcpy(dw, w, n_w * esz);
    if (st == EM_OK) st = em_cuda_memcpy(dx, x, n_x * sizeof *x);
    if (st == EM_OK) st = em_cuda_memset(d.y_alloc, 0xff, n_y * sizeof(float)); /* NaN poison */
    /* Same shape and strides as the twin's call; only the pointers move to the device. */
    em_linear_args ga = ra;
    ga.w = dw;
    ga.x = dx;
    ga.y = d.y_alloc;
    if (st == EM_OK) st = em_cuda_linear(&ga, NULL);
    if (st == EM_OK) st = em_cuda_sync(NULL);
    if (st == EM_OK) st = em_cuda_memcpy(y_got, d.y_alloc, n_y * sizeof *y_got);
    CHECK_MSG(st == EM_OK, "%s: %s (%s)", label, em_status_str(st), em_last_error());

    double err = INFINITY;
    if (st == EM_OK) {
        /* Compare the dense n_out columns of every token; the padding must still be NaN. */
        const size_t n = c->n_tok * (size_t)c->n_out;
        float *g = xmalloc(n * sizeof *g), *r = xmalloc(n * sizeof *r);
        size_t pad_written = 0;
        for (size_t t = 0; t < c->n_tok; t++) {
            memcpy(g + t * c->n_out, y_got + t * ys, c->n_out * sizeof *g);
            memcpy(r + t * c->n_out, y_ref + t * ys, c->n_out * sizeof *r);
            for (size_t j = c->n_out; j < ys; j++) pad_written += !isnan(y_got[t * ys + j]);
        }
        err = em_max_rel_err(g, r, n, NULL);
        em_check_close(label, g, r, n, TOL_BF16);
        CHECK_MSG(pad_written == 0, "%s: %zu elements written in the row padding", label, pad_written);
        free(g);
        free(r);
    }
    printf("  %-42s %-28s max rel err %.2e %s\n", c->what, dims, err,
           err <= TOL_BF16 ? "ok" : "FAIL");

    /* --perf: enough copies of W to stream >= 4x the L2 per rotation, so every timed launch reads W from
     * DRAM (copies of the same data: only the addresses matter to the cache). */
    if (perf && c->perf && st == EM_OK && err <= TOL_BF16) {
        const size_t w_bytes = n_w * esz;
        int copies = (int)((4 * l2_bytes + w_bytes - 1) / w_bytes);
        if (copies < 2) copies = 2;
        if (copies > (int)LEN(d.w_alloc)) copies = (int)LEN(d.w_alloc);
        em_linear_args pa[LEN(d.w_alloc)];
        pa[0] = ga;
        for (int i = 1; i < copies && st == EM_OK; i++) {
            st = em_cuda_malloc(&d.w_alloc[i], w_bytes);
            if (st == EM_OK) d.n_w = i + 1;
            if (st == EM_OK) st = em_cuda_memcpy(d.w_alloc[i], dw, w_bytes);
            pa[i] = ga;
            pa[i].w = d.w_alloc[i];
        }
        if (st == EM_OK) st = time_linear(pa, copies, &row->us);
        CHECK_MSG(st == EM_OK, "%s: timing: %s (%s)", label, em_status_str(st), em_last_error());
        /* The fewest bytes the op must move: W once, x read, y written. n_tok > 8 re-reads W per group
         * of 8, so its GB/s is "effective" (what one pass over W would need to match the time). */
        const double bytes = (double)w_bytes + 4.0 * c->n_tok * ((double)c->n_in + c->n_out);
        if (st == EM_OK) row->gbps = bytes / (row->us * 1e-6) / 1e9;
    }
    row->c = c;
    lin_dev_free(&d);
    free(w);
    free(x);
    free(y_ref);
    free(y_got);
}

// ---- main ---------------------------------------------------------------------------------------------------

int main(int argc, char **argv) {
    const int perf = argc > 1 && strcmp(argv[1], "--perf") == 0; /* --perf: check, then time */
    int n_dev = 0;
    em_status st = em_cuda_available(&n_dev);
    if (st != EM_OK || n_dev == 0) {
        fprintf(stderr, "note: %s\n", em_last_error());
        em_test_skip("test_linear_cuda", "no CUDA device");
    }
    em_cuda_info info;
    st = em_cuda_device_info(0, &info);
    if (st != EM_OK) {
        fprintf(stderr, "em_cuda_device_info: %s (%s)\n", em_status_str(st), em_last_error());
        return 1;
    }
    printf("device 0: %s, sm_%d%d, %d SMs, %.1f GiB (%.1f free), L2 %.0f MB, datasheet %.0f GB/s\n", info.name,
           info.cc_major, info.cc_minor, info.sm_count, info.mem_total / 1073741824.0, info.mem_free / 1073741824.0,
           info.l2_bytes / 1e6, info.peak_gbps);

    bw_ref bw = {0};
    if (perf) {
        st = measure_bw(info.sm_count, &bw);
        CHECK_MSG(st == EM_OK, "bandwidth references: %s (%s)", em_status_str(st), em_last_error());
        printf("measured: read-only pass %.0f GB/s (roofline), D2D cudaMemcpy %.0f GB/s (read + write)\n",
               bw.read_gbps, bw.copy_gbps);
    }

    /* One seeded stream through all cases: each case draws fresh values, and a failure reproduces. */
    em_rng rng;
    em_rng_seed(&rng, 20240611);
    perf_row rows[LEN(cases)];
    memset(rows, 0, sizeof rows);
    for (size_t i = 0; i < LEN(cases); i++) run_case(&cases[i], &rng, perf, info.l2_bytes, &rows[i]);

    if (perf) {
        printf("\n%-40s | %8s | %7s | %6s | %6s\n", "shape (n_out x n_in, n_tok)", "us", "GB/s", "% read", "% copy");
        for (size_t i = 0; i < LEN(cases); i++) {
            if (!rows[i].us) continue;
            char shape[96];
            snprintf(shape, sizeof shape, "%s %ux%u, %u", rows[i].c->what, rows[i].c->n_out, rows[i].c->n_in,
                     rows[i].c->n_tok);
            printf("%-40.40s | %8.1f | %7.0f | %5.1f%% | %5.1f%%\n", shape, rows[i].us, rows[i].gbps,
                   bw.read_gbps > 0 ? 100.0 * rows[i].gbps / bw.read_gbps : 0.0,
                   bw.copy_gbps > 0 ? 100.0 * rows[i].gbps / bw.copy_gbps : 0.0);
        }
    }
    return em_test_finish("test_linear_cuda");
}
