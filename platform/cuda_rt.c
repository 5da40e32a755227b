/*
 * cuda_rt.c — the CUDA runtime layer declared in cuda_rt.h: device discovery, device info, and status-returning
 * allocation / copy / sync. Plain C11 against cuda_runtime_api.h (no kernels here: those live in
 * kernels/<op>.cu). Without EM_HAVE_CUDA the same functions are stubs that say "no device", so the CPU build
 * links the same symbols and the runtime needs no #ifdef around "is there a GPU?".
 */
#include "cuda_rt.h"

#include <stdio.h>

#include "util.h"

#ifdef EM_HAVE_CUDA

/* ---- errors ------------------------------------------------------------------------------------------ */
em_status em_cuda_fail(cudaError_t err, const char *call, const char *file, int line) {
    /* Non-sticky errors (a bad argument, an allocation failure) stay in the runtime's last-error slot;
     * reading it here means the next launch check reports its own error, not this one. */
    (void)cudaGetLastError();
    em_status st = err == cudaErrorMemoryAllocation ? EM_ERR_OUT_OF_MEMORY : EM_ERR_DEVICE;
    return em_fail(st, "%s:%d: %s: %s: %s", file, line, call, cudaGetErrorName(err), cudaGetErrorString(err));
}

/* ---- discovery ---------------------------------------------------------------------------------------- */
em_status em_cuda_available(int *n_devices) {
    if (!n_devices) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_available: n_devices is NULL");
    *n_devices = 0;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    switch (e) {
    case cudaSuccess:
        *n_devices = n;
        if (n == 0) em_fail(EM_OK, "cudaGetDeviceCount: 0 devices");
        return EM_OK;
    /* "absent", not "broken": no device, no libcuda, a driver older than this runtime, or a device
     * the driver will not initialise here (containers without the GPU passed through). */
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInitializationError:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
    case cudaErrorDevicesUnavailable:
    case cudaErrorNotPermitted:
    case cudaErrorNotSupported:
        (void)cudaGetLastError();
        em_fail(EM_OK, "cudaGetDeviceCount: %s: %s", cudaGetErrorName(e), cudaGetErrorString(e));
        return EM_OK;
    default:
        return em_cuda_fail(e, "cudaGetDeviceCount(&n)", __FILE__, __LINE__);
    }
}

/* The runtime keeps a current device per host thread; a session pins its thread to its device once. */
em_status em_cuda_set_device(int device) {
    EM_CUDA_CHECK(cudaSetDevice(device));
    return EM_OK;
}

/* One device attribute, failing with the call text like every other query. */
static em_status em_cuda_attr(int *v, enum cudaDeviceAttr attr, int device) {
    EM_CUDA_CHECK(cudaDeviceGetAttribute(v, attr, device));
    return EM_OK;
}

em_status em_cuda_device_info(int device, em_cuda_info *info) {
    if (!info) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_device_info: info is NULL");
    memset(info, 0, sizeof *info);
    int n = 0;
    EM_TRY(em_cuda_available(&n));
    if (device < 0 || device >= n)
        return em_fail(n ? EM_ERR_INVALID_ARG : EM_ERR_NO_DEVICE, "em_cuda_device_info: device %d of %d", device, n);

    /* cudaGetDeviceProperties only for the name: CUDA 13 dropped several cudaDeviceProp fields, while
     * the attribute enum is stable across 11..13. */
    struct cudaDeviceProp p;
    EM_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    snprintf(info->name, sizeof info->name, "%s", p.name);
    info->device = device;
    info->mem_total = p.totalGlobalMem;

    int v = 0, clock_khz = 0, bus_bits = 0;
    EM_TRY(em_cuda_attr(&info->cc_major, cudaDevAttrComputeCapabilityMajor, device));
    EM_TRY(em_cuda_attr(&info->cc_minor, cudaDevAttrComputeCapabilityMinor, device));
    EM_TRY(em_cuda_attr(&info->sm_count, cudaDevAttrMultiProcessorCount, device));
    EM_TRY(em_cuda_attr(&info->integrated, cudaDevAttrIntegrated, device));
    EM_TRY(em_cuda_attr(&v, cudaDevAttrL2CacheSize, device));
    info->l2_bytes = (size_t)v;
    EM_TRY(em_cuda_attr(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    info->smem_block_optin = (size_t)v;
    /* Not every platform reports these (0 then): the peak is informational, the measured copy rate rules. */
    if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, device) != cudaSuccess) clock_khz = 0;
    if (cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, device) != cudaSuccess) bus_bits = 0;
    (void)cudaGetLastError();
    info->peak_gbps = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9; /* DDR: two transfers a clock */

    /* Free memory needs the device current; put the caller's current device back afterwards. */
    int prev = 0;
    EM_CUDA_CHECK(cudaGetDevice(&prev));
    EM_CUDA_CHECK(cudaSetDevice(device));
    size_t free_b = 0, total_b = 0;
    cudaError_t e = cudaMemGetInfo(&free_b, &total_b);
    cudaError_t e2 = cudaSetDevice(prev);
    if (e != cudaSuccess) return em_cuda_fail(e, "cudaMemGetInfo(&free_b, &total_b)", __FILE__, __LINE__);
    if (e2 != cudaSuccess) return em_cuda_fail(e2, "cudaSetDevice(prev)", __FILE__, __LINE__);
    info->mem_free = free_b;
    return EM_OK;
}

/* ---- memory ------------------------------------------------------------------------------------------- */
em_status em_cuda_malloc(void **ptr, size_t bytes) {
    if (!ptr) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_malloc: ptr is NULL");
    *ptr = NULL;
    if (bytes == 0) return EM_OK; /* an empty plan region: no allocation, and nothing to free */
    /* Only at open/create (DESIGN.md principle 1): the token loop never reaches this. */
    cudaError_t e = cudaMalloc(ptr, bytes);
    if (e == cudaSuccess) return EM_OK;
    *ptr = NULL;
    if (e == cudaErrorMemoryAllocation) {
        /* The planner's contract: name the bytes asked for and the bytes available. */
        (void)cudaGetLastError();
        size_t free_b = 0, total_b = 0;
        if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) (void)cudaGetLastError();
        return em_fail(EM_ERR_OUT_OF_MEMORY, "cudaMalloc(%zu bytes) failed: %zu of %zu bytes free", bytes, free_b,
                       total_b);
    }
    return em_cuda_fail(e, "cudaMalloc(ptr, bytes)", __FILE__, __LINE__);
}

void em_cuda_free(void *ptr) {
    if (!ptr) return; /* free paths run on half-built objects */
    cudaError_t e = cudaFree(ptr);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        EM_LOG_W("cudaFree(%p): %s: %s", ptr, cudaGetErrorName(e), cudaGetErrorString(e));
    }
}

/* cudaMemcpyDefault: with unified virtual addressing (every 64-bit platform CUDA 13 supports) the runtime
 * tells host from device pointers itself, so one call covers H2D, D2H and D2D and a wrong direction cannot
 * be passed. Pageable host memory makes the copy synchronous (staged through a pinned buffer). */
em_status em_cuda_memcpy(void *dst, const void *src, size_t bytes) {
    if (bytes && (!dst || !src)) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_memcpy: NULL pointer");
    if (!bytes) return EM_OK;
    EM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
    return EM_OK;
}

em_status em_cuda_memcpy_async(void *dst, const void *src, size_t bytes, void *stream) {
    if (bytes && (!dst || !src)) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_memcpy_async: NULL pointer");
    if (!bytes) return EM_OK;
    EM_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, (cudaStream_t)stream));
    return EM_OK;
}

em_status em_cuda_memset(void *dst, int value, size_t bytes) {
    if (bytes && !dst) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_memset: NULL pointer");
    if (!bytes) return EM_OK;
    EM_CUDA_CHECK(cudaMemset(dst, value, bytes));
    return EM_OK;
}

/* Kernel faults (an illegal address, a trap) are reported by the next synchronising call, not by the
 * launch: this is where a decode step learns that its kernels failed. */
em_status em_cuda_sync(void *stream) {
    if (stream) EM_CUDA_CHECK(cudaStreamSynchronize((cudaStream_t)stream));
    else EM_CUDA_CHECK(cudaDeviceSynchronize());
    return EM_OK;
}

#else /* !EM_HAVE_CUDA: the CPU build. Same symbols, "no device". ------------------------------------- */

static em_status em_cuda_absent(const char *fn) {
    return em_fail(EM_ERR_NO_DEVICE, "%s: this build of edgemamba has no CUDA (configure with -DEM_CUDA=ON)", fn);
}

em_status em_cuda_available(int *n_devices) {
    if (!n_devices) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_available: n_devices is NULL");
    *n_devices = 0;
    em_fail(EM_OK, "em_cuda_available: this build of edgemamba has no CUDA");
    return EM_OK;
}
em_status em_cuda_device_info(int device, em_cuda_info *info) {
    if (info) memset(info, 0, sizeof *info);
    return em_cuda_absent("em_cuda_device_info");
}
/* The runtime keeps a current device per host thread; a session pins its thread to its device once. */
em_status em_cuda_set_device(int device) { return em_cuda_absent("em_cuda_set_device"); }
em_status em_cuda_malloc(void **ptr, size_t bytes) {
    if (ptr) *ptr = NULL;
    return em_cuda_absent("em_cuda_malloc");
}
void em_cuda_free(void *ptr) { (void)ptr; }
/* cudaMemcpyDefault: with unified virtual addressing (every 64-bit platform CUDA 13 supports) the runtime
 * tells host from device pointers itself, so one call covers H2D, D2H and D2D and a wrong direction cannot
 * be passed. Pageable host memory makes the copy synchronous (staged through a pinned buffer). */
em_status em_cuda_memcpy(void *dst, const void *src, size_t bytes) { return em_cuda_absent("em_cuda_memcpy"); }
em_status em_cuda_memcpy_async(void *dst, const void *src, size_t bytes, void *stream) {
    return em_cuda_absent("em_cuda_memcpy_async");
}
em_status em_cuda_memset(void *dst, int value, size_t bytes) { return em_cuda_absent("em_cuda_memset"); }
/* Kernel faults (an illegal address, a trap) are reported by the next synchronising call, not by the
 * launch: this is where a decode step learns that its kernels failed. */
em_status em_cuda_sync(void *stream) { return em_cuda_absent("em_cuda_sync"); }

#endif /* EM_HAVE_CUDA */
