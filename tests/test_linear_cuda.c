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
 *   build-gpu/tests/test_linear_cuda --sweep # + checks and times every vector-path variant linear.cu was built
 *                                            #   with (all of them only with -DEM_LIN_SWEEP; tuning runs)
 *
 * --perf measures its own references in the same run: a 1 GiB device-to-device cudaMemcpy (bytes read +
 * written) and a read-only reduction over a 2 GiB buffer (tests/gpu_bw.cu; the roofline a weight-streaming
 * GEMV is judged against). Each shape is timed with cudaEvents around each of 50 launches after 5 warm-ups
 * (median reported), rotating among enough weight copies to stream >= 4x the L2, so no run reads W from L2;
 * then per launch inside a CUDA graph of 20 launches (median of 10 replays: the launch gaps the executor's graph
 * sees), without and with EM_LINEAR_W_CONST (programmatic dependent launch: each GEMV may start while the one
 * before it finishes); and for the n_tok 1 decode shapes, the GEMV behind the small kernel that writes its x in
 * the decode step (rmsnorm before in_proj and the head, gated_norm before out_proj), pair time minus the small
 * kernel alone, without and with the flag.
 *
 * Every bf16 vector-path case is also run behind an rmsnorm that writes its x (x poisoned first) with
 * EM_LINEAR_W_CONST, on a stream and inside a graph, and checked against rmsnorm's and linear's twins: the
 * GEMV must read x only after the kernel before it has completed.
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
#define GRAPH_LAUNCHES 20 /* launches captured in one graph */
#define GRAPH_REPS 10     /* graph replays timed: median per launch */
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
    { .n_out = 4096,  .n_in = 8192, .n_tok = 2, .dtype = BF16, .perf = 1, .what = "out_proj, 2 sequences" },
    { .n_out = 18560, .n_in = 4096, .n_tok = 5, .dtype = BF16, .perf = 1, .what = "in_proj, 5 sequences" },
    { .n_out = 4096,  .n_in = 8192, .n_tok = 5, .dtype = BF16, .perf = 1, .what = "out_proj, 5 sequences" },
    { .n_out = 18560, .n_in = 4096, .n_tok = 3, .dtype = BF16, .perf = 1, .what = "in_proj, 3 sequences" },
    { .n_out = 18560, .n_in = 4096, .n_tok = 8, .dtype = BF16, .perf = 1, .what = "in_proj, 8 sequences" },
    { .n_out = 4096,  .n_in = 8192, .n_tok = 8, .dtype = BF16, .perf = 1, .what = "out_proj, 8 sequences" },
    { .n_out = 4096,  .n_in = 8192, .n_tok = 40, .dtype = BF16, .perf = 1, .what = "out_proj, 40 tokens (5 x 8)" },
    { .n_out = 2003,  .n_in = 4096, .n_tok = 3, .dtype = BF16, .what = "2003 rows, NT 3" },
    { .n_out = 2003,  .n_in = 4096, .n_tok = 4, .dtype = BF16, .what = "2003 rows, NT 4" },
    { .n_out = 2003,  .n_in = 4096, .n_tok = 6, .dtype = BF16, .what = "2003 rows, NT 6" },
    { .n_out = 2003,  .n_in = 4096, .n_tok = 7, .dtype = BF16, .what = "2003 rows, NT 7" },
    { .n_out = 2003,  .n_in = 4096, .n_tok = 8, .dtype = BF16, .what = "2003 rows, NT 8" },
    { .n_out = 324,   .n_in = 64,   .n_tok = 1, .dtype = BF16, .what = "tiny fixture, decode (324 % 16 rows)" },
    { .n_out = 324,   .n_in = 64,   .n_tok = 2, .dtype = BF16, .what = "tiny fixture, NT 2" },
    { .n_out = 324,   .n_in = 64,   .n_tok = 3, .dtype = BF16, .what = "tiny fixture, NT 3" },
    { .n_out = 324,   .n_in = 64,   .n_tok = 4, .dtype = BF16, .what = "tiny fixture, NT 4" },
    { .n_out = 324,   .n_in = 64,   .n_tok = 5, .dtype = BF16, .what = "tiny fixture, NT 5" },
    { .n_out = 324,   .n_in = 64,   .n_tok = 6, .dtype = BF16, .what = "tiny fixture, NT 6" },
    { .n_out = 324,   .n_in = 64,   .n_tok = 7, .dtype = BF16, .what = "tiny fixture, NT 7" },
    { .n_out = 324,   .n_in = 64,   .n_tok = 8, .dtype = BF16, .what = "tiny fixture, NT 8" },
    { .n_out = 324,   .n_in = 64,   .n_tok = 40, .dtype = BF16, .what = "tiny fixture, prompt of 40" },
    // edges of the vector path: main loop + remainder, split-K groups past n_out, strides, each fallback
    { .n_out = 1000,  .n_in = 4104, .n_tok = 2, .dtype = BF16, .what = "n_in / 8 = 513 vectors: remainder loop" },
    { .n_out = 1001,  .n_in = 8200, .n_tok = 1, .dtype = BF16, .what = "n_in / 8 = 1025, 1001 rows" },
    { .n_out = 999,   .n_in = 8200, .n_tok = 5, .dtype = BF16, .what = "n_in / 8 = 1025, NT 5" },
    { .n_out = 3,     .n_in = 8192, .n_tok = 1, .dtype = BF16, .what = "3 rows: groups past n_out" },
    { .n_out = 5,     .n_in = 2048, .n_tok = 2, .dtype = BF16, .what = "5 rows, NT 2" },
    { .n_out = 333,   .n_in = 512,  .n_tok = 3, .dtype = BF16, .x_pad = 4, .y_pad = 5, .what = "strided x, y" },
    { .n_out = 333,   .n_in = 4096, .n_tok = 1, .dtype = BF16, .x_pad = 4, .y_pad = 5, .what = "strided x, y, NT 1" },
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

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof v[0], cmp_double);
    return v[n / 2];
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

/* variant < 0: em_cuda_linear's own choice; else that vector-path variant. */
static em_status launch_gemv(const em_linear_args *a, int variant, void *stream) {
    return variant < 0 ? em_cuda_linear(a, stream) : em_cuda_linear_variant(a, stream, variant);
}

/* The small kernel that writes the GEMV's x in the decode step (--perf chains): kind 1 rmsnorm, 2 gated_norm. */
typedef struct prelude {
    int kind;
    em_rmsnorm_args rn;
    em_gated_norm_args gn;
} prelude;

static em_status launch_prelude(const prelude *p, void *stream) {
    if (!p || p->kind == 0) return EM_OK;
    return p->kind == 1 ? em_cuda_rmsnorm(&p->rn, stream) : em_cuda_gated_norm(&p->gn, stream);
}

// ---- timers (--perf) -------------------------------------------------------------------------------------

/* Median time of PERF_REPS single launches (after PERF_WARMUP), an event pair around each, rotating through
 * n_args argument sets (the weight copies). */
static em_status time_launches(const em_linear_args *args, int n_args, int variant, cudaStream_t s, double *us) {
    cudaEvent_t ev[PERF_REPS + 1];
    double ms[PERF_REPS];
    int n_ev = 0;
    em_status st = EM_OK;
    cudaError_t e = cudaSuccess;
    for (; n_ev <= PERF_REPS && e == cudaSuccess; n_ev++) e = cudaEventCreate(&ev[n_ev]);
    if (e != cudaSuccess) n_ev--; /* the failed one was not created */
    for (int i = 0; i < PERF_WARMUP && e == cudaSuccess && st == EM_OK; i++)
        st = launch_gemv(&args[i % n_args], variant, s);
    for (int i = 0; i < PERF_REPS && e == cudaSuccess && st == EM_OK; i++) {
        e = cudaEventRecord(ev[i], s);
        if (e == cudaSuccess) st = launch_gemv(&args[i % n_args], variant, s);
    }
    if (e == cudaSuccess && st == EM_OK) e = cudaEventRecord(ev[PERF_REPS], s);
    if (e == cudaSuccess && st == EM_OK) e = cudaEventSynchronize(ev[PERF_REPS]);
    for (int i = 0; i < PERF_REPS && e == cudaSuccess && st == EM_OK; i++) {
        float f = 0;
        e = cudaEventElapsedTime(&f, ev[i], ev[i + 1]);
        ms[i] = f;
    }
    if (e != cudaSuccess && st == EM_OK) st = em_cuda_fail(e, "cudaEvent* around em_cuda_linear", __FILE__, __LINE__);
    for (int i = 0; i < n_ev; i++) cudaEventDestroy(ev[i]);
    if (st != EM_OK) return st;
    *us = 1e3 * median(ms, PERF_REPS);
    return EM_OK;
}

/* Per launch inside a graph of GRAPH_LAUNCHES launches (median of GRAPH_REPS replays): each launch is the
 * prelude (if any), then (with gemv) the GEMV on args[i % n_args] with `flags`. */
static em_status time_graph(const em_linear_args *args, int n_args, int variant, uint32_t flags, const prelude *pre,
                            int gemv, cudaStream_t s, double *us) {
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    cudaEvent_t ev[GRAPH_REPS + 1];
    double ms[GRAPH_REPS];
    int n_ev = 0;
    em_status st = EM_OK;
    cudaError_t e = cudaSuccess;
    for (; n_ev <= GRAPH_REPS && e == cudaSuccess; n_ev++) e = cudaEventCreate(&ev[n_ev]);
    if (e != cudaSuccess) {
        n_ev--;
        st = em_cuda_fail(e, "cudaEventCreate", __FILE__, __LINE__);
        goto done;
    }
    e = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        st = em_cuda_fail(e, "cudaStreamBeginCapture", __FILE__, __LINE__);
        goto done;
    }
    for (int i = 0; i < GRAPH_LAUNCHES && st == EM_OK; i++) {
        st = launch_prelude(pre, s);
        if (st == EM_OK && gemv) {
            em_linear_args a = args[i % n_args];
            a.flags = flags;
            st = launch_gemv(&a, variant, s);
        }
    }
    e = cudaStreamEndCapture(s, &g); /* always ends the capture, even after a failed launch */
    if (st != EM_OK) goto done;
    if (e == cudaSuccess) e = cudaGraphInstantiate(&ge, g, 0);
    for (int i = 0; i < 3 && e == cudaSuccess; i++) e = cudaGraphLaunch(ge, s);
    for (int i = 0; i < GRAPH_REPS && e == cudaSuccess; i++) {
        e = cudaEventRecord(ev[i], s);
        if (e == cudaSuccess) e = cudaGraphLaunch(ge, s);
    }
    if (e == cudaSuccess) e = cudaEventRecord(ev[GRAPH_REPS], s);
    if (e == cudaSuccess) e = cudaEventSynchronize(ev[GRAPH_REPS]);
    for (int i = 0; i < GRAPH_REPS && e == cudaSuccess; i++) {
        float f = 0;
        e = cudaEventElapsedTime(&f, ev[i], ev[i + 1]);
        ms[i] = f;
    }
    if (e != cudaSuccess) st = em_cuda_fail(e, "graph of em_cuda_linear", __FILE__, __LINE__);
    else *us = 1e3 * median(ms, GRAPH_REPS) / GRAPH_LAUNCHES;
done:
    if (ge) cudaGraphExecDestroy(ge);
    if (g) cudaGraphDestroy(g);
    for (int i = 0; i < n_ev; i++) cudaEventDestroy(ev[i]);
    return st;
}

typedef struct perf_fig {
    double launch, graph, graph_pdl; /* us per GEMV: single launches; in a graph, without / with W_CONST */
    double chain, chain_pdl;         /* us per GEMV behind its prelude (pair minus prelude alone); 0 = none */
} perf_fig;

static em_status time_all(const em_linear_args *args, int n_args, int variant, const prelude *pre, double pre_us,
                          cudaStream_t s, perf_fig *f) {
    memset(f, 0, sizeof *f);
    EM_TRY(time_launches(args, n_args, variant, s, &f->launch));
    EM_TRY(time_graph(args, n_args, variant, 0, NULL, 1, s, &f->graph));
    EM_TRY(time_graph(args, n_args, variant, EM_LINEAR_W_CONST, NULL, 1, s, &f->graph_pdl));
    if (pre && pre->kind) {
        double us = 0;
        EM_TRY(time_graph(args, n_args, variant, 0, pre, 1, s, &us));
        f->chain = us - pre_us;
        EM_TRY(time_graph(args, n_args, variant, EM_LINEAR_W_CONST, pre, 1, s, &us));
        f->chain_pdl = us - pre_us;
    }
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
    *ms_out = median(ms, reps);
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
    perf_fig f;
    double bytes;
} perf_row;

#define MAX_ROWS 512
static perf_row g_rows[MAX_ROWS]; /* the --perf table: default rows, then (--sweep) one per timed variant */
static int g_variant_of[MAX_ROWS]; /* -1 = em_cuda_linear's choice */
static int g_n_rows;

/* Poisons y, runs (default or variant), copies y back and compares with y_ref. @return the max error (INFINITY
 * on a failure, which is recorded). */
static double check_run(const char *label, const lin_case *c, const em_linear_args *ga, int variant, const float *y_ref,
                        float *y_got, size_t ys, float *y_dev) {
    const size_t n_y = c->n_tok * ys;
    em_status st = em_cuda_memset(y_dev, 0xff, n_y * sizeof(float)); /* NaN poison */
    if (st == EM_OK) st = launch_gemv(ga, variant, NULL);
    if (st == EM_OK) st = em_cuda_sync(NULL);
    if (st == EM_OK) st = em_cuda_memcpy(y_got, y_dev, n_y * sizeof *y_got);
    CHECK_MSG(st == EM_OK, "%s: %s (%s)", label, em_status_str(st), em_last_error());
    if (st != EM_OK) return INFINITY;
    /* Compare the dense n_out columns of every token; the padding must still be NaN. */
    const size_t n = c->n_tok * (size_t)c->n_out;
    float *g = xmalloc(n * sizeof *g), *r = xmalloc(n * sizeof *r);
    size_t pad_written = 0;
    for (size_t t = 0; t < c->n_tok; t++) {
        memcpy(g + t * c->n_out, y_got + t * ys, c->n_out * sizeof *g);
        memcpy(r + t * c->n_out, y_ref + t * ys, c->n_out * sizeof *r);
        for (size_t j = c->n_out; j < ys; j++) pad_written += !isnan(y_got[t * ys + j]);
    }
    const double err = em_max_rel_err(g, r, n, NULL);
    em_check_close(label, g, r, n, TOL_BF16);
    CHECK_MSG(pad_written == 0, "%s: %zu elements written in the row padding", label, pad_written);
    free(g);
    free(r);
    return err;
}

/* The GEMV behind an rmsnorm that writes its x (dense x only), with EM_LINEAR_W_CONST: on the stream, then
 * inside a graph (memset poison -> rmsnorm -> GEMV). Checked against the twins of both. @return the max error. */
static double check_pdl(const char *label, const lin_case *c, const em_linear_args *ga, const void *w_host,
                        em_rng *rng) {
    const size_t n_x = (size_t)c->n_tok * c->n_in, n_y = (size_t)c->n_tok * c->n_out;
    float *res = xmalloc((n_x ? n_x : 1) * sizeof *res), *nw = xmalloc((c->n_in ? c->n_in : 1) * sizeof *nw);
    float *xn = xmalloc((n_x ? n_x : 1) * sizeof *xn), *y_ref = xmalloc(n_y * sizeof *y_ref),
          *y_got = xmalloc(n_y * sizeof *y_got);
    em_fill_uniform(rng, res, n_x, 1.0f);
    for (uint32_t i = 0; i < c->n_in; i++) nw[i] = 1.0f + em_rng_uniform(rng, 0.5f);
    em_rmsnorm_args rr = { .x = res, .w = nw, .y = xn, .n_tok = c->n_tok, .d = c->n_in, .eps = 1e-5f };
    em_ref_rmsnorm(&rr);
    em_linear_args la = *ga;
    la.w = w_host;
    la.x = xn;
    la.y = y_ref;
    la.x_stride = la.y_stride = 0;
    em_ref_linear(&la);

    float *d_res = NULL, *d_nw = NULL, *d_y = NULL;
    cudaStream_t s = NULL;
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    double worst = 0;
    em_status st = em_cuda_malloc((void **)&d_res, n_x * sizeof(float) + 16);
    if (st == EM_OK) st = em_cuda_malloc((void **)&d_nw, c->n_in * sizeof(float) + 16);
    if (st == EM_OK) st = em_cuda_malloc((void **)&d_y, n_y * sizeof(float));
    if (st == EM_OK) st = em_cuda_memcpy(d_res, res, n_x * sizeof(float));
    if (st == EM_OK) st = em_cuda_memcpy(d_nw, nw, c->n_in * sizeof(float));
    if (st == EM_OK) {
        const cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
        if (e != cudaSuccess) st = em_cuda_fail(e, "cudaStreamCreate", __FILE__, __LINE__);
    }
    em_rmsnorm_args dr = { .x = d_res, .w = d_nw, .y = (float *)ga->x, .n_tok = c->n_tok, .d = c->n_in, .eps = 1e-5f };
    em_linear_args dl = *ga;
    dl.y = d_y;
    dl.x_stride = dl.y_stride = 0;
    dl.flags = EM_LINEAR_W_CONST;
    for (int mode = 0; mode < 2 && st == EM_OK; mode++) { /* 0: on the stream, 1: inside a graph */
        st = em_cuda_memset(d_y, 0xff, n_y * sizeof(float));
        if (st == EM_OK && mode == 1) {
            cudaError_t e = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
            if (e != cudaSuccess) st = em_cuda_fail(e, "cudaStreamBeginCapture", __FILE__, __LINE__);
        }
        if (st == EM_OK) {
            const cudaError_t e = cudaMemsetAsync((void *)ga->x, 0xff, n_x * sizeof(float), s); /* poison x */
            if (e != cudaSuccess) st = em_cuda_fail(e, "cudaMemsetAsync", __FILE__, __LINE__);
        }
        if (st == EM_OK) st = em_cuda_rmsnorm(&dr, s);
        if (st == EM_OK) st = em_cuda_linear(&dl, s);
        if (mode == 1) {
            const cudaError_t e = cudaStreamEndCapture(s, &g);
            if (st == EM_OK && e != cudaSuccess) st = em_cuda_fail(e, "cudaStreamEndCapture", __FILE__, __LINE__);
            if (st == EM_OK) {
                cudaError_t e2 = cudaGraphInstantiate(&ge, g, 0);
                if (e2 == cudaSuccess) e2 = cudaGraphLaunch(ge, s);
                if (e2 != cudaSuccess) st = em_cuda_fail(e2, "graph rmsnorm -> linear", __FILE__, __LINE__);
            }
        }
        if (st == EM_OK) st = em_cuda_sync(s);
        if (st == EM_OK) st = em_cuda_memcpy(y_got, d_y, n_y * sizeof(float));
        if (st == EM_OK) {
            const double err = em_max_rel_err(y_got, y_ref, n_y, NULL);
            char l2[300];
            snprintf(l2, sizeof l2, "%.200s, behind rmsnorm with W_CONST (%s)", label, mode ? "graph" : "stream");
            em_check_close(l2, y_got, y_ref, n_y, TOL_BF16);
            if (!(err <= worst)) worst = err;
        }
    }
    CHECK_MSG(st == EM_OK, "%s: rmsnorm -> linear with W_CONST: %s (%s)", label, em_status_str(st), em_last_error());
    if (st != EM_OK) worst = INFINITY;
    if (ge) cudaGraphExecDestroy(ge);
    if (g) cudaGraphDestroy(g);
    if (s) cudaStreamDestroy(s);
    em_cuda_free(d_res);
    em_cuda_free(d_nw);
    em_cuda_free(d_y);
    free(res);
    free(nw);
    free(xn);
    free(y_ref);
    free(y_got);
    return worst;
}

/* Checks case c (and with sweep every variant for its n_tok); with perf and c->perf, also times it. */
static void run_case(const lin_case *c, em_rng *rng, int perf, int sweep, size_t l2_bytes) {
    char dims[64], label[200];
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
    CHECK_MSG(st == EM_OK, "%s: %s (%s)", label, em_status_str(st), em_last_error());
    /* Same shape and strides as the twin's call; only the pointers move to the device. */
    em_linear_args ga = ra;
    ga.w = dw;
    ga.x = dx;
    ga.y = d.y_alloc;
    const int def = em_cuda_linear_default_variant(&ga);
    double err = INFINITY;
    if (st == EM_OK) err = check_run(label, c, &ga, -1, y_ref, y_got, ys, d.y_alloc);
    char path[80] = "fallback";
    if (def >= 0) {
        em_linear_variant vi;
        em_cuda_linear_variant_info(def, &vi);
        snprintf(path, sizeof path, "%s", vi.name);
    }
    printf("  %-40s %-30s %-26s max rel err %.2e %s\n", c->what, dims, path, err, err <= TOL_BF16 ? "ok" : "FAIL");

    /* The vector path behind the kernel that writes x, with W_CONST (PDL on sm_90). */
    if (st == EM_OK && def >= 0 && !c->x_pad && !c->y_pad && !c->x_off && !c->w_off && c->n_in > 0) {
        const double e2 = check_pdl(label, c, &ga, w, rng);
        printf("  %-40s %-30s %-26s max rel err %.2e %s\n", "  behind rmsnorm, W_CONST", "", "", e2,
               e2 <= TOL_BF16 ? "ok" : "FAIL");
        if (!(e2 <= err)) err = e2;
        if (st == EM_OK) st = em_cuda_memcpy(dx, x, n_x * sizeof *x); /* check_pdl overwrote x */
    }

    /* --sweep: every variant for this n_tok on the same inputs. */
    const int n_var = em_cuda_linear_variant_info(-1, NULL);
    if (sweep && st == EM_OK && def >= 0 && c->n_tok <= 8) {
        int n_checked = 0;
        double worst = 0;
        for (int v = 0; v < n_var; v++) {
            em_linear_variant vi;
            em_cuda_linear_variant_info(v, &vi);
            if ((uint32_t)vi.nt != c->n_tok) continue;
            char l2[300];
            snprintf(l2, sizeof l2, "%.200s, variant %.60s", label, vi.name);
            const double e = check_run(l2, c, &ga, v, y_ref, y_got, ys, d.y_alloc);
            n_checked++;
            if (!(e <= worst)) worst = e;
        }
        printf("  %-40s %-30s %-26s max rel err %.2e %s\n", "  all variants", "", "", worst,
               worst <= TOL_BF16 ? "ok" : "FAIL");
        (void)n_checked;
    }

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
        /* The decode step's small kernel before this GEMV (n_tok 1 shapes): rmsnorm (d = n_in) before in_proj
         * and the head, gated_norm (8 groups) before out_proj; it writes the GEMV's x. */
        prelude pre = {0};
        float *p_a = NULL, *p_b = NULL, *p_w = NULL;
        if (c->n_tok == 1 && st == EM_OK) {
            st = em_cuda_malloc((void **)&p_a, c->n_in * sizeof(float));
            if (st == EM_OK) st = em_cuda_malloc((void **)&p_b, c->n_in * sizeof(float));
            if (st == EM_OK) st = em_cuda_malloc((void **)&p_w, c->n_in * sizeof(float));
            float *tmp = xmalloc(c->n_in * sizeof *tmp);
            for (int k = 0; k < 3 && st == EM_OK; k++) {
                em_fill_uniform(rng, tmp, c->n_in, 1.0f);
                st = em_cuda_memcpy(k == 0 ? p_a : k == 1 ? p_b : p_w, tmp, c->n_in * sizeof *tmp);
            }
            free(tmp);
            if (c->n_in == 8192) {
                pre.kind = 2;
                pre.gn = (em_gated_norm_args){ .y = p_a, .z = p_b, .w = p_w, .out = dx, .n_tok = 1, .d = c->n_in,
                                               .group = c->n_in / 8, .eps = 1e-5f };
            } else {
                pre.kind = 1;
                pre.rn = (em_rmsnorm_args){ .x = p_a, .w = p_w, .y = dx, .n_tok = 1, .d = c->n_in, .eps = 1e-5f };
            }
        }
        cudaStream_t s = NULL;
        if (st == EM_OK) {
            const cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
            if (e != cudaSuccess) st = em_cuda_fail(e, "cudaStreamCreate", __FILE__, __LINE__);
        }
        double pre_us = 0;
        if (st == EM_OK && pre.kind) st = time_graph(pa, copies, -1, 0, &pre, 0, s, &pre_us);
        /* The fewest bytes the op must move: W once, x read, y written. n_tok > 8 re-reads W per group
         * of 8, so its GB/s is "effective" (what one pass over W would need to match the time). */
        const double bytes = (double)w_bytes + 4.0 * c->n_tok * ((double)c->n_in + c->n_out);
        for (int v = -1; v < (sweep ? n_var : 0) && st == EM_OK && g_n_rows < MAX_ROWS; v++) {
            if (v >= 0) {
                em_linear_variant vi;
                em_cuda_linear_variant_info(v, &vi);
                if ((uint32_t)vi.nt != c->n_tok) continue;
            }
            perf_row *row = &g_rows[g_n_rows];
            st = time_all(pa, copies, v, &pre, pre_us, s, &row->f);
            row->c = c;
            row->bytes = bytes;
            g_variant_of[g_n_rows++] = v < 0 ? -1 - def : v; /* default rows: -1 - (its variant) */
        }
        if (pre.kind) printf("  (prelude %s alone: %.2f us per launch in a graph)\n",
                             pre.kind == 1 ? "rmsnorm" : "gated_norm", pre_us);
        CHECK_MSG(st == EM_OK, "%s: timing: %s (%s)", label, em_status_str(st), em_last_error());
        if (s) cudaStreamDestroy(s);
        em_cuda_free(p_a);
        em_cuda_free(p_b);
        em_cuda_free(p_w);
    }
    lin_dev_free(&d);
    free(w);
    free(x);
    free(y_ref);
    free(y_got);
}

// ---- main ---------------------------------------------------------------------------------------------------

static void print_perf(const bw_ref *bw) {
    printf("\nus per GEMV; %% of the read bandwidth (%.0f GB/s) in brackets. launch: single launches with an event "
           "pair each; graph: %d in a graph; +pdl: with EM_LINEAR_W_CONST; chain: behind its prelude, pair minus "
           "prelude\n", bw->read_gbps, GRAPH_LAUNCHES);
    printf("%-30s | %-26s | %4s %3s | %14s | %14s | %14s | %14s | %14s\n", "shape (n_out x n_in, n_tok)", "variant",
           "regs", "b/SM", "launch", "graph", "graph+pdl", "chain", "chain+pdl");
    for (int i = 0; i < g_n_rows; i++) {
        const perf_row *r = &g_rows[i];
        const int v = g_variant_of[i] < 0 ? -1 - g_variant_of[i] : g_variant_of[i];
        em_linear_variant vi;
        memset(&vi, 0, sizeof vi);
        vi.name = "fallback";
        if (v >= 0) em_cuda_linear_variant_info(v, &vi);
        char shape[96], name[64];
        snprintf(shape, sizeof shape, "%s %ux%u, %u", r->c->what, r->c->n_out, r->c->n_in, r->c->n_tok);
        snprintf(name, sizeof name, "%s%s", g_variant_of[i] < 0 ? "= " : "  ", vi.name);
        const double t[5] = { r->f.launch, r->f.graph, r->f.graph_pdl, r->f.chain, r->f.chain_pdl };
        printf("%-30.30s | %-26s | %4d %3d", shape, name, vi.regs, vi.blocks_per_sm);
        for (int k = 0; k < 5; k++) {
            if (t[k] > 0) printf(" | %6.1f (%4.1f%%)", t[k], 100.0 * r->bytes / (t[k] * 1e-6) / 1e9 / bw->read_gbps);
            else printf(" | %14s", "-");
        }
        printf("\n");
    }
}

int main(int argc, char **argv) {
    int perf = 0, sweep = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--perf") == 0) perf = 1; /* check, then time */
        else if (strcmp(argv[i], "--sweep") == 0) perf = sweep = 1; /* + every variant */
    }
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
    const int n_var = em_cuda_linear_variant_info(-1, NULL);
    for (int v = 0; v < n_var; v++) {
        em_linear_variant vi;
        em_cuda_linear_variant_info(v, &vi);
        CHECK_MSG(vi.local_bytes == 0, "variant %s uses %d bytes of local memory", vi.name, vi.local_bytes);
    }

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
    for (size_t i = 0; i < LEN(cases); i++) run_case(&cases[i], &rng, perf, sweep, info.l2_bytes);

    if (perf) print_perf(&bw);
    if (perf) { /* the read reference again: drift over the run */
        bw_ref bw2 = {0};
        st = measure_bw(info.sm_count, &bw2);
        if (st == EM_OK) printf("read-only pass again at the end: %.0f GB/s\n", bw2.read_gbps);
    }
    return em_test_finish("test_linear_cuda");
}
