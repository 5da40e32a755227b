/*
 * gpu_test.h — what the kernel tests of the Mamba-2 step (tests/test_<op>_cuda.c) share: device setup with
 * the SKIP convention, device buffers, row-wise comparison against the twin with a check that row padding
 * stayed poisoned, and the --perf timers (single launches and launches inside a CUDA graph) with the
 * bandwidth references measured in the same run (tests/gpu_bw.cu). Test code only; built with CUDA only.
 */
#ifndef EM_GPU_TEST_H
#define EM_GPU_TEST_H

#include <stddef.h>
#include <stdint.h>

#include "cuda_rt.h"
#include "edgemamba.h"

#define EM_GPU_PERF_WARMUP 5
#define EM_GPU_PERF_REPS 50      /* single launches, one event pair each: median */
#define EM_GPU_GRAPH_LAUNCHES 100 /* launches captured in one graph */
#define EM_GPU_GRAPH_REPS 20      /* graph replays: median per launch */

typedef struct em_gpu_env {
    em_cuda_info info;
    int perf;         /* --perf given */
    double read_gbps; /* --perf: read-only pass over 2 GiB (the roofline of a kernel that only reads) */
    double copy_gbps; /* --perf: 1 GiB device-to-device cudaMemcpy, bytes read + written */
} em_gpu_env;

/** Parses --perf, SKIPs (exit 77, "SKIP <name>: no CUDA device") without a device, prints the device line
 *  and, with --perf, measures and prints the bandwidth references. Exits 1 if a device query fails. */
void em_gpu_test_init(const char *name, int argc, char **argv, em_gpu_env *env);

/* Host allocation that exits on failure (tests only). */
void *em_xmalloc(size_t bytes);

/** Device copy of `bytes` of host memory (bytes == 0: a 16-byte allocation). NULL after a recorded failure. */
void *em_gpu_dup(const void *host, size_t bytes);
/** Device allocation filled with 0xff bytes (NaN as floats: the poison). NULL after a recorded failure. */
void *em_gpu_poisoned(size_t bytes);
/** Copies device memory back; 0 after a recorded failure. */
int em_gpu_fetch(void *host, const void *dev, size_t bytes);

/** Compares `rows` rows of `cols` floats (row stride `stride`, 0 = cols) of got against ref by max relative
 *  error (em_max_rel_err over the dense part). With pad_nan, the padding of got ([cols, stride) of each row)
 *  must still be NaN. Records a failure above tol (first pairs and worst index printed). @return the error. */
double em_gpu_check_rows(const char *label, const float *got, const float *ref, size_t rows, size_t cols, size_t stride,
                         int pad_nan, double tol);

/* ---- --perf ------------------------------------------------------------------------------------------------ */

/** One launch of the op under test on `stream`; i counts the launches (rotate buffers with it). */
typedef em_status (*em_gpu_launch_fn)(void *ctx, int i, void *stream);

typedef struct em_gpu_timing {
    double launch_us; /* median of EM_GPU_PERF_REPS single launches, an event pair around each */
    double graph_us;  /* per launch, inside a graph of EM_GPU_GRAPH_LAUNCHES launches (median of replays):
                         launch gaps as the executor's graph sees them */
} em_gpu_timing;

/** Times f both ways on a stream of its own. @return EM_OK or the failure (recorded in em_last_error). */
em_status em_gpu_time(em_gpu_launch_fn f, void *ctx, em_gpu_timing *t);

/* Rows of the --perf table, printed at the end by em_gpu_perf_print: GB/s and % from the graph time. */
void em_gpu_perf_add(const char *what, const em_gpu_timing *t, double bytes);
void em_gpu_perf_print(const em_gpu_env *env);

#endif /* EM_GPU_TEST_H */
