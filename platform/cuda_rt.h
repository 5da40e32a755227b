/*
 * cuda_rt.h — the small layer through which the runtime talks to the CUDA runtime API: is there a device,
 * what is it, and status-returning allocation, copy and sync calls. C11; no CUDA types in the signatures
 * (streams travel as void *, a cudaStream_t; NULL is the legacy default stream), so that C callers and the
 * CPU build need no CUDA headers.
 *
 * Why: STYLE.md lesson 3. Every CUDA failure becomes EM_ERR_DEVICE (EM_ERR_OUT_OF_MEMORY for a failed
 * allocation) with the call's text, file:line and cudaGetErrorString in em_last_error(); nothing exits.
 *
 * Builds: with EM_HAVE_CUDA every function calls the runtime API. Without it the same functions exist,
 * em_cuda_available reports 0 devices and the others return EM_ERR_NO_DEVICE, so the runtime can ask
 * "is there a GPU?" without an #ifdef. EM_CUDA_CHECK exists only where cuda_runtime_api.h does.
 *
 *   int n = 0;
 *   EM_TRY(em_cuda_available(&n));            // EM_OK with n == 0 when there is no driver or device
 *   if (n > 0) {
 *       em_cuda_info info;
 *       EM_TRY(em_cuda_device_info(0, &info)); // name, SMs, memory, compute capability, L2
 *       float *d = NULL;
 *       EM_TRY(em_cuda_malloc((void **)&d, bytes));
 *       EM_TRY(em_cuda_memcpy(d, host, bytes)); // direction from the pointers (unified addressing)
 *       em_cuda_free(d);
 *   }
 *
 * Named cuda_rt.h, not cuda.h: platform/ is on every target's include path ahead of the toolkit, and
 * toolkit headers (cudaTypedefs.h, nvtx3, cub's driver launcher, NCCL's device headers) #include <cuda.h>;
 * a platform/cuda.h would shadow the driver API header for them (seen: cudaTypedefs.h stops compiling).
 *
 * Thread safety: as the CUDA runtime's; em_cuda_device_info leaves the calling thread's current device as
 * it found it.
 */
#ifndef EM_PLATFORM_CUDA_RT_H
#define EM_PLATFORM_CUDA_RT_H

#include <stddef.h>

#include "edgemamba.h"

#ifdef EM_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* What a device is, read once at open (the planner sizes from it, em-bench prints it). */
typedef struct em_cuda_info {
    char name[256];          /* "NVIDIA H100 80GB HBM3" */
    int device;              /* ordinal */
    int cc_major, cc_minor;  /* compute capability: 9.0 Hopper, 8.7 Orin, 11.0 Thor */
    int sm_count;            /* multiprocessors */
    int integrated;          /* 1: shares DRAM with the CPU (Jetson) */
    size_t mem_total;        /* bytes of device memory */
    size_t mem_free;         /* bytes free when asked (creates the device's primary context) */
    size_t l2_bytes;         /* L2 cache size */
    size_t smem_block_optin; /* the most shared memory one block may opt in to (cudaFuncSetAttribute) */
    double peak_gbps;        /* 2 * memory clock * bus width: the datasheet bandwidth; 0 if unknown */
} em_cuda_info;

/** Counts CUDA devices. A missing driver, a driver too old for this runtime, or no device is not an
 *  error: *n_devices = 0 and the reason is left in em_last_error(). Never aborts.
 *  @return EM_OK; EM_ERR_INVALID_ARG on NULL; EM_ERR_DEVICE for any other failure of the query. */
em_status em_cuda_available(int *n_devices);

/** Fills *info for device `device`. @return EM_OK; EM_ERR_INVALID_ARG on NULL or a bad ordinal;
 *  EM_ERR_NO_DEVICE without CUDA; EM_ERR_DEVICE if a query fails. */
em_status em_cuda_device_info(int device, em_cuda_info *info);

/** Makes `device` current for this thread. @return EM_OK, EM_ERR_NO_DEVICE or EM_ERR_DEVICE. */
em_status em_cuda_set_device(int device);

/** cudaMalloc. *ptr is NULL on failure. bytes == 0 gives *ptr = NULL and EM_OK.
 *  @return EM_OK; EM_ERR_INVALID_ARG; EM_ERR_OUT_OF_MEMORY (bytes asked and free named); EM_ERR_DEVICE. */
em_status em_cuda_malloc(void **ptr, size_t bytes);
/** cudaFree; NULL is a no-op. Errors are logged, not returned (it runs on cleanup paths). */
void em_cuda_free(void *ptr);

/** Synchronous copy of `bytes`, in the direction the pointers say (cudaMemcpyDefault: host or device,
 *  any mix). @return EM_OK, EM_ERR_INVALID_ARG, EM_ERR_NO_DEVICE or EM_ERR_DEVICE. */
em_status em_cuda_memcpy(void *dst, const void *src, size_t bytes);
/** As em_cuda_memcpy, queued on `stream` (a cudaStream_t; NULL = default stream). */
em_status em_cuda_memcpy_async(void *dst, const void *src, size_t bytes, void *stream);
/** Sets `bytes` device bytes to `value` (0xff over floats writes NaN: the tests' poison).
 *  @return as em_cuda_memcpy. */
em_status em_cuda_memset(void *dst, int value, size_t bytes);
/** Waits for `stream` (NULL: the whole device), and reports any error a kernel raised meanwhile.
 *  @return EM_OK, EM_ERR_NO_DEVICE or EM_ERR_DEVICE. */
em_status em_cuda_sync(void *stream);

#ifdef EM_HAVE_CUDA
/** Records a failed CUDA call as EM_ERR_DEVICE (EM_ERR_OUT_OF_MEMORY for cudaErrorMemoryAllocation) with
 *  "file:line: call: cudaErrorName: description" in em_last_error(), clears the runtime's (non-sticky) last
 *  error so that later checks do not report it again, and returns the status. Used by EM_CUDA_CHECK. */
em_status em_cuda_fail(cudaError_t err, const char *call, const char *file, int line);

/* Runs a CUDA runtime call; on failure returns its status from the enclosing function (which must return
 * em_status). Never exits (unlike llm.c's cudaCheck).   EM_CUDA_CHECK(cudaMemsetAsync(p, 0, n, s)); */
#define EM_CUDA_CHECK(expr)                                                                               \
    do {                                                                                                  \
        cudaError_t em_cuda_e_ = (expr);                                                                  \
        if (em_cuda_e_ != cudaSuccess) return em_cuda_fail(em_cuda_e_, #expr, __FILE__, __LINE__);        \
    } while (0)
#endif

#ifdef __cplusplus
}
#endif

#endif /* EM_PLATFORM_CUDA_RT_H */
