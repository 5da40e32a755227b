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
 *  accumulated. n_tok == 0 or n_out == 0 queues nothing. @return as the launchers above. */
em_status em_cuda_linear(const em_linear_args *a, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* EM_HAVE_CUDA */

#endif /* EM_CUDA_OPS_H */
