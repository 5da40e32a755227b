/*
 * cuda_ops.h — the CUDA launchers of the op families (kernels/<op>.cu), one per em_ref_<op> twin in ops.h,
 * taking the same args struct (STYLE.md lesson 6). C-compatible: the stream travels as void * (a
 * cudaStream_t; NULL = the legacy default stream) so that C callers need no CUDA headers.
 *
 * Declared only when EM_HAVE_CUDA (the CPU build has no such symbols; a caller that names one there
 * fails to compile instead of failing at run time). Every launcher only queues work: it returns EM_OK
 * once the kernel is launched, EM_ERR_INVALID_ARG / EM_ERR_UNSUPPORTED for arguments it cannot take,
 * EM_ERR_DEVICE (message in em_last_error()) if the launch fails. Errors raised while the kernel runs
 * surface at the next synchronisation (em_cuda_sync in platform/cuda_rt.h).
 */
#ifndef EM_CUDA_OPS_H
#define EM_CUDA_OPS_H

#include "ops.h"

#ifdef EM_HAVE_CUDA

#ifdef __cplusplus
extern "C" {
#endif

/* ---- linear: y = x W^T (kernels/linear.cu) ---------------------------------------------------------- */
/** @return 1 if em_cuda_linear takes these arguments (w_dtype BF16 or F32, pointers set, strides at least
 *  the row length), else 0. Any n_tok, n_in, n_out and alignment: misaligned or n_in % 8 != 0 bf16
 *  weights take a slower path. The planner calls this at load; the launcher checks it again. */
int em_cuda_linear_supported(const em_linear_args *a);
/** Queues y[n_tok, n_out] = x[n_tok, n_in] W^T on `stream` (device pointers). y is written, never
 *  accumulated; deterministic (no atomics, fixed summation order for a given shape and device). No scratch,
 *  no allocation, no host synchronisation: safe inside a stream capture (its first call on a device makes
 *  host-only attribute queries, as em_cuda_argmax does). flags & EM_LINEAR_W_CONST: launched as a programmatic
 *  dependent of the previous kernel on the stream (sm_90+; W must not be written by that kernel).
 *  n_tok == 0 or n_out == 0 queues nothing. @return as the launchers above. */
em_status em_cuda_linear(const em_linear_args *a, void *stream);

/* ---- the Mamba-2 step's small ops ------------------------------------------------------------------------
 * Each takes the twin's args struct with DEVICE pointers (strides in elements, 0 = dense, as ops.h says).
 * em_cuda_<op>_supported is the one statement of what a launcher takes (STYLE.md lesson 10): the planner
 * calls it at load, the launcher again (a false there is EM_ERR_INVALID_ARG; EM_ERR_UNSUPPORTED for an
 * embedding dtype other than F32/BF16/F16). Any size and any alignment
 * is taken; 16-byte aligned pointers with strides % 4 == 0 take the vector paths (docs/gpu.md). None of
 * them allocates, synchronises or reads device memory from the host: all are safe inside stream capture.
 * n_tok == 0 queues nothing. */

/* embedding (kernels/embed.cu): out[t] = f32(table[tok[t]]); tok is read on the device and NOT range
 * checked there (the caller checks, as for the twin). */
int em_cuda_embed_supported(const em_embed_args *a);   /* dtype F32, BF16 or F16; pointers set */
em_status em_cuda_embed(const em_embed_args *a, void *stream);

/* residual add + RMSNorm (kernels/norm.cu): x += delta (if set), y = w * x * rsqrt(mean(x^2) + eps);
 * x, delta, y dense [n_tok, d]; y must not overlap x or delta. One block per token. */
int em_cuda_rmsnorm_supported(const em_rmsnorm_args *a);
em_status em_cuda_rmsnorm(const em_rmsnorm_args *a, void *stream);

/* gated group RMSNorm (kernels/norm.cu): out = w * groupRMSNorm(y * silu(z)); out may alias y (same
 * stride); z must not overlap out. group > 0 and d % group == 0. One block per (token, group). */
int em_cuda_gated_norm_supported(const em_gated_norm_args *a);
em_status em_cuda_gated_norm(const em_gated_norm_args *a, void *stream);

/* causal depthwise conv1d + rolling state (kernels/conv1d.cu): 1 <= K <= 16; thread per channel,
 * sequential over n_tok (decode: n_tok = 1). y must not overlap state, w or b (y may alias x with the
 * same stride: each channel reads its x before writing its y). */
int em_cuda_conv1d_supported(const em_conv1d_args *a);
em_status em_cuda_conv1d(const em_conv1d_args *a, void *stream);

/* Mamba-2 selective state update (kernels/ssm.cu), sequential over n_tok with the state in registers:
 * the state is read once and written once per call whatever n_tok. G > 0, H % G == 0, dt_min <= dt_max,
 * dt_max > 0. y must not overlap the state (y == x with the same stride is fine). Fast path: N in
 * {16, 32, 64, 128, 256}, state/B/C 16-byte aligned, bc_stride % 4 == 0; else a warp-per-row path. */
int em_cuda_ssm_supported(const em_ssm_args *a);
em_status em_cuda_ssm(const em_ssm_args *a, void *stream);

/* greedy argmax (kernels/argmax.cu): *out_dev = the index of the largest of x[0..n) (device pointers),
 * the lowest index on a tie, NaN never taken, 0 when all are NaN or n == 0: em_ref_argmax exactly. One
 * launch: on sm_90+ one cluster of 8 blocks (distributed shared memory, no global scratch, so concurrent
 * calls on other streams are safe); elsewhere one block. */
em_status em_cuda_argmax(const float *x, uint32_t n, int32_t *out_dev, void *stream);

/* ---- test and tuning hooks (tests/test_*_cuda.c --perf): not for the executor ---------------------------- */
/** em_cuda_ssm on a chosen path: 0 = what em_cuda_ssm picks, -1 = the warp-per-row path, 1/2/4 = the
 *  vector path with that many state rows per lane (EM_ERR_UNSUPPORTED where the vector path cannot run). */
em_status em_cuda_ssm_path(const em_ssm_args *a, void *stream, int path);
/** em_cuda_argmax with `blocks` = 1 (the one-block path) or 8 (the cluster: EM_ERR_UNSUPPORTED before
 *  sm_90); 0 = what em_cuda_argmax picks. */
em_status em_cuda_argmax_path(const float *x, uint32_t n, int32_t *out_dev, void *stream, int blocks);

/** The BF16 vector path's variants (kernels/linear.cu: the defaults, plus alternatives in -DEM_LIN_SWEEP
 *  builds), for tests/test_linear_cuda.c --sweep. */
typedef struct em_linear_variant {
    int nt;            /* tokens per launch it takes (exactly) */
    int rows_per_warp, loads_per_row, k_split, warps;
    int regs, local_bytes, blocks_per_sm; /* registers and local memory (runtime), resident blocks per SM */
    const char *name;
} em_linear_variant;
/** @return the number of variants; fills *out for 0 <= i < that number (host queries only). */
int em_cuda_linear_variant_info(int i, em_linear_variant *out);
/** @return the variant em_cuda_linear takes for these arguments' first token group, -1 for the fallback. */
int em_cuda_linear_default_variant(const em_linear_args *a);
/** em_cuda_linear on variant i; EM_ERR_UNSUPPORTED unless its nt == n_tok and the vector path applies. */
em_status em_cuda_linear_variant(const em_linear_args *a, void *stream, int i);

/* ---- the roofline reference (kernels/bandwidth.cu) ------------------------------------------------------ */
/** Queues one read-only pass over `bytes` (16-byte aligned buffer) with 8 blocks per SM.
 *  @return the launch's cudaError_t (0 = ok). */
int em_cuda_read_pass(const void *buf, size_t bytes, unsigned *sink, int sm_count, void *stream);
/** Measures the device's read bandwidth (GB/s, median of reps passes over a fresh `bytes` buffer, which it
 *  allocates and frees: a benchmark tool's call, never on a decode path). @return EM_OK or EM_ERR_DEVICE. */
em_status em_cuda_read_bandwidth(size_t bytes, int reps, double *gbps);

#ifdef __cplusplus
}
#endif

#endif /* EM_HAVE_CUDA */

#endif /* EM_CUDA_OPS_H */
