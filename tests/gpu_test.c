/* gpu_test.c — see gpu_test.h. */
#include "gpu_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "testutil.h"
#include "util.h"

/* tests/gpu_bw.cu: one read-only pass over `bytes` of buf; returns the launch's cudaError_t. */
int em_test_read_pass(const void *buf, size_t bytes, unsigned *sink, int sm_count, void *stream);

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

void *em_xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of host memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// ---- device buffers ---------------------------------------------------------------------------------------------

void *em_gpu_dup(const void *host, size_t bytes) {
    void *d = NULL;
    em_status st = em_cuda_malloc(&d, bytes ? bytes : 16);
    if (st == EM_OK && bytes) st = em_cuda_memcpy(d, host, bytes);
    CHECK_MSG(st == EM_OK, "device copy of %zu bytes: %s (%s)", bytes, em_status_str(st), em_last_error());
    if (st != EM_OK) {
        em_cuda_free(d);
        return NULL;
    }
    return d;
}

void *em_gpu_poisoned(size_t bytes) {
    void *d = NULL;
    em_status st = em_cuda_malloc(&d, bytes ? bytes : 16);
    if (st == EM_OK) st = em_cuda_memset(d, 0xff, bytes ? bytes : 16);
    CHECK_MSG(st == EM_OK, "poisoned device buffer of %zu bytes: %s (%s)", bytes, em_status_str(st), em_last_error());
    if (st != EM_OK) {
        em_cuda_free(d);
        return NULL;
    }
    return d;
}

int em_gpu_fetch(void *host, const void *dev, size_t bytes) {
    if (!bytes) return 1;
    const em_status st = em_cuda_memcpy(host, dev, bytes);
    CHECK_MSG(st == EM_OK, "copy back of %zu bytes: %s (%s)", bytes, em_status_str(st), em_last_error());
    return st == EM_OK;
}

double em_gpu_check_rows(const char *label, const float *got, const float *ref, size_t rows, size_t cols, size_t stride,
                         int pad_nan, double tol) {
    if (!stride) stride = cols;
    const size_t n = rows * cols;
    float *g = em_xmalloc(n * sizeof *g), *r = em_xmalloc(n * sizeof *r);
    size_t pad_written = 0;
    for (size_t i = 0; i < rows; i++) {
        memcpy(g + i * cols, got + i * stride, cols * sizeof *g);
        memcpy(r + i * cols, ref + i * stride, cols * sizeof *r);
        for (size_t j = cols; pad_nan && j < stride; j++) pad_written += !isnan(got[i * stride + j]);
    }
    const double err = n ? em_max_rel_err(g, r, n, NULL) : 0.0;
    if (n) em_check_close(label, g, r, n, tol);
    CHECK_MSG(pad_written == 0, "%s: %zu elements written in the row padding", label, pad_written);
    free(g);
    free(r);
    return err;
}

// ---- bandwidth references -----------------------------------------------------------------------------------------

/* Median over `reps` of one operation: kind 0 = read pass over `bytes` of buf, 1 = copy of `bytes` from buf to
 * buf + bytes. */
static em_status time_bw(int kind, char *buf, size_t bytes, unsigned *sink, int sms, int reps, double *ms_out) {
    cudaEvent_t a, b;
    double ms[16];
    EM_CUDA_CHECK(cudaEventCreate(&a));
    EM_CUDA_CHECK(cudaEventCreate(&b));
    em_status st = EM_OK;
    for (int i = -2; i < reps && st == EM_OK; i++) { /* i < 0: warm-up */
        cudaError_t e = cudaEventRecord(a, NULL);
        if (e == cudaSuccess)
            e = kind == 0 ? (cudaError_t)em_test_read_pass(buf, bytes, sink, sms, NULL)
                          : cudaMemcpyAsync(buf + bytes, buf, bytes, cudaMemcpyDeviceToDevice, NULL);
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

static em_status measure_bw(int sms, em_gpu_env *env) {
    const size_t gib = (size_t)1 << 30;
    char *buf = NULL;
    unsigned *sink = NULL;
    EM_TRY(em_cuda_malloc((void **)&buf, 2 * gib));
    em_status st = em_cuda_malloc((void **)&sink, sizeof *sink);
    if (st == EM_OK) st = em_cuda_memset(buf, 0x5a, 2 * gib); /* never time on zeros */
    if (st == EM_OK) st = em_cuda_memset(sink, 0, sizeof *sink);
    double ms = 0;
    if (st == EM_OK) st = time_bw(0, buf, 2 * gib, sink, sms, 10, &ms);
    if (st == EM_OK) env->read_gbps = 2.0 * gib / (ms * 1e-3) / 1e9;
    if (st == EM_OK) st = time_bw(1, buf, gib, sink, sms, 10, &ms);
    if (st == EM_OK) env->copy_gbps = 2.0 * gib / (ms * 1e-3) / 1e9;
    em_cuda_free(sink);
    em_cuda_free(buf);
    return st;
}

void em_gpu_test_init(const char *name, int argc, char **argv, em_gpu_env *env) {
    memset(env, 0, sizeof *env);
    env->perf = argc > 1 && strcmp(argv[1], "--perf") == 0;
    int n_dev = 0;
    em_status st = em_cuda_available(&n_dev);
    if (st != EM_OK || n_dev == 0) {
        fprintf(stderr, "note: %s\n", em_last_error());
        em_test_skip(name, "no CUDA device");
    }
    st = em_cuda_device_info(0, &env->info);
    if (st != EM_OK) {
        fprintf(stderr, "em_cuda_device_info: %s (%s)\n", em_status_str(st), em_last_error());
        exit(1);
    }
    const em_cuda_info *i = &env->info;
    printf("device 0: %s, sm_%d%d, %d SMs, %.1f GiB (%.1f free), L2 %.0f MB, datasheet %.0f GB/s\n", i->name,
           i->cc_major, i->cc_minor, i->sm_count, i->mem_total / 1073741824.0, i->mem_free / 1073741824.0,
           i->l2_bytes / 1e6, i->peak_gbps);
    if (env->perf) {
        st = measure_bw(i->sm_count, env);
        CHECK_MSG(st == EM_OK, "bandwidth references: %s (%s)", em_status_str(st), em_last_error());
        printf("measured: read-only pass %.0f GB/s (roofline), D2D cudaMemcpy %.0f GB/s (read + write)\n",
               env->read_gbps, env->copy_gbps);
    }
}

// ---- timers --------------------------------------------------------------------------------------------------------

em_status em_gpu_time(em_gpu_launch_fn f, void *ctx, em_gpu_timing *t) {
    cudaStream_t s = NULL;
    cudaEvent_t ev[EM_GPU_PERF_REPS + 1];
    double ms[EM_GPU_PERF_REPS];
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    int n_ev = 0;
    em_status st = EM_OK;
    cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    for (; e == cudaSuccess && n_ev <= EM_GPU_PERF_REPS; n_ev++) e = cudaEventCreate(&ev[n_ev]);
    if (e != cudaSuccess) {
        st = em_cuda_fail(e, "cudaStreamCreate/cudaEventCreate", __FILE__, __LINE__);
        if (n_ev > 0) n_ev--; /* the failed one was not created */
        goto done;
    }

    /* single launches: warm-up, then an event before each and one after the last */
    for (int i = 0; i < EM_GPU_PERF_WARMUP && st == EM_OK; i++) st = f(ctx, i, s);
    for (int i = 0; i < EM_GPU_PERF_REPS && st == EM_OK; i++) {
        e = cudaEventRecord(ev[i], s);
        if (e != cudaSuccess) st = em_cuda_fail(e, "cudaEventRecord", __FILE__, __LINE__);
        if (st == EM_OK) st = f(ctx, EM_GPU_PERF_WARMUP + i, s);
    }
    if (st != EM_OK) goto done;
    e = cudaEventRecord(ev[EM_GPU_PERF_REPS], s);
    if (e == cudaSuccess) e = cudaEventSynchronize(ev[EM_GPU_PERF_REPS]);
    for (int i = 0; i < EM_GPU_PERF_REPS && e == cudaSuccess; i++) {
        float f_ms = 0;
        e = cudaEventElapsedTime(&f_ms, ev[i], ev[i + 1]);
        ms[i] = f_ms;
    }
    if (e != cudaSuccess) {
        st = em_cuda_fail(e, "cudaEvent* around single launches", __FILE__, __LINE__);
        goto done;
    }
    qsort(ms, EM_GPU_PERF_REPS, sizeof ms[0], cmp_double);
    t->launch_us = 1e3 * ms[EM_GPU_PERF_REPS / 2];

    /* a graph of EM_GPU_GRAPH_LAUNCHES launches, replayed */
    e = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        st = em_cuda_fail(e, "cudaStreamBeginCapture", __FILE__, __LINE__);
        goto done;
    }
    for (int i = 0; i < EM_GPU_GRAPH_LAUNCHES && st == EM_OK; i++) st = f(ctx, i, s);
    e = cudaStreamEndCapture(s, &g); /* always ends the capture, even after a failed launch */
    if (st != EM_OK) goto done;
    if (e == cudaSuccess) e = cudaGraphInstantiate(&ge, g, 0);
    for (int i = 0; i < 3 && e == cudaSuccess; i++) e = cudaGraphLaunch(ge, s);
    for (int i = 0; i < EM_GPU_GRAPH_REPS && e == cudaSuccess; i++) {
        e = cudaEventRecord(ev[i], s);
        if (e == cudaSuccess) e = cudaGraphLaunch(ge, s);
    }
    if (e == cudaSuccess) e = cudaEventRecord(ev[EM_GPU_GRAPH_REPS], s);
    if (e == cudaSuccess) e = cudaEventSynchronize(ev[EM_GPU_GRAPH_REPS]);
    for (int i = 0; i < EM_GPU_GRAPH_REPS && e == cudaSuccess; i++) {
        float f_ms = 0;
        e = cudaEventElapsedTime(&f_ms, ev[i], ev[i + 1]);
        ms[i] = f_ms;
    }
    if (e != cudaSuccess) {
        st = em_cuda_fail(e, "graph capture/replay", __FILE__, __LINE__);
        goto done;
    }
    qsort(ms, EM_GPU_GRAPH_REPS, sizeof ms[0], cmp_double);
    t->graph_us = 1e3 * ms[EM_GPU_GRAPH_REPS / 2] / EM_GPU_GRAPH_LAUNCHES;

done:
    if (ge) cudaGraphExecDestroy(ge);
    if (g) cudaGraphDestroy(g);
    for (int i = 0; i < n_ev; i++) cudaEventDestroy(ev[i]);
    if (s) {
        cudaStreamSynchronize(s);
        cudaStreamDestroy(s);
    }
    return st;
}

// ---- the --perf table -----------------------------------------------------------------------------------------------

typedef struct perf_row {
    char what[96];
    em_gpu_timing t;
    double bytes;
} perf_row;
static perf_row g_rows[64];
static int g_n_rows;

void em_gpu_perf_add(const char *what, const em_gpu_timing *t, double bytes) {
    if (g_n_rows >= (int)LEN(g_rows)) return;
    perf_row *r = &g_rows[g_n_rows++];
    snprintf(r->what, sizeof r->what, "%s", what);
    r->t = *t;
    r->bytes = bytes;
}

void em_gpu_perf_print(const em_gpu_env *env) {
    if (!g_n_rows) return;
    printf("\n%-52s | %9s | %9s | %7s | %6s | %6s\n", "op, shape (bytes: the fewest the op must move)", "us/launch",
           "us/graph", "GB/s", "% read", "% copy");
    for (int i = 0; i < g_n_rows; i++) {
        const perf_row *r = &g_rows[i];
        const double gbps = r->t.graph_us > 0 ? r->bytes / (r->t.graph_us * 1e-6) / 1e9 : 0.0;
        printf("%-52.52s | %9.2f | %9.2f | %7.0f | %5.1f%% | %5.1f%%\n", r->what, r->t.launch_us, r->t.graph_us, gbps,
               env->read_gbps > 0 ? 100.0 * gbps / env->read_gbps : 0.0,
               env->copy_gbps > 0 ? 100.0 * gbps / env->copy_gbps : 0.0);
    }
    printf("(us/launch: median of %d single launches, an event pair around each; us/graph: per launch inside a graph "
           "of %d, median of %d replays; GB/s and %% from us/graph)\n",
           EM_GPU_PERF_REPS, EM_GPU_GRAPH_LAUNCHES, EM_GPU_GRAPH_REPS);
}
