/*
 * device_policy.h — where the weights go on a given GPU, decided as pure C from the device's attributes, and
 * the chunked "read into device memory, drop the file's pages" reader that the unified-memory path uses.
 * Internal (not installed). No CUDA types: the attributes are plain ints, so the decision table is tested on
 * the CPU with fake attribute sets (tests/test_device_policy.c: Orin Nano/NX/AGX, Thor, H100) and the
 * reader with a memcpy callback.
 *
 * Why (DESIGN.md principle 2, ../shared/reference/edge.md): on a discrete GPU the blob is mapped and copied
 * once into device memory (DEVICE_COPY). On a Jetson the GPU and the CPU share one DRAM: after that same
 * copy the file's pages stay in the page cache, so an 8B INT8 model (8 GB) is held twice in a 16 GB Orin NX
 * until the kernel evicts them, and cudaMemGetInfo (MemFree) shows no room for the session. So on an
 * integrated GPU the default is UNIFIED_READ_DROP: read the blob in bounded chunks into the device buffer and
 * posix_fadvise(DONTNEED) each chunk behind the read. ZERO_COPY (kernels read the mapped file: host-registered
 * on Orin, where the iGPU reads it uncached; the raw pointer on Thor, which has pageable-memory access) holds
 * the weights once with no copy at all, but its speed is unmeasured: it is chosen only when asked for.
 *
 *   em_device_attrs a;                       // em_device_attrs_query(dev, &a) with CUDA, or filled by hand
 *   em_weight_policy_options o = em_weight_policy_default_options();   // request from $EM_WEIGHT_PATH
 *   em_weight_decision d;
 *   EM_TRY(em_weight_path_choose(&a, blob_bytes, &o, &d));  // d.path, d.zero_copy, d.chunk_bytes, d.reason
 *
 *   // UNIFIED_READ_DROP, for each tensor data region [off, off + len) of the blob:
 *   EM_TRY(em_weights_read_drop(path, off, len, dev_ptr, staging, d.chunk_bytes, copy_h2d, stream, &st));
 *
 * Thread safety: every function is reentrant; the reader uses only its arguments.
 */
#ifndef EM_PLATFORM_DEVICE_POLICY_H
#define EM_PLATFORM_DEVICE_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "edgemamba.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the decision ------------------------------------------------------------------------------------ */

typedef enum em_weight_path {
    EM_WEIGHTS_DEVICE_COPY = 0,       /* cudaMalloc + one copy from the mapped blob (discrete GPUs; what exists) */
    EM_WEIGHTS_UNIFIED_READ_DROP = 1, /* cudaMalloc + chunked read into it, page cache dropped behind (iGPU) */
    EM_WEIGHTS_ZERO_COPY = 2          /* kernels read the file's pages in place (iGPU, on request only) */
} em_weight_path;

typedef enum em_zero_copy_kind {
    EM_ZERO_COPY_NONE = 0,
    EM_ZERO_COPY_PAGEABLE = 1,        /* pageableMemoryAccess (Thor, CUDA 13): the mmap pointer itself */
    EM_ZERO_COPY_HOST_REGISTER = 2    /* cudaHostRegister(mmap, ReadOnly|Mapped) + cudaHostGetDevicePointer
                                         (Orin: I/O-coherent Tegra, CC >= 7.2; uncached for the iGPU) */
} em_zero_copy_kind;

typedef enum em_weight_request {
    EM_WEIGHTS_AUTO = 0,              /* discrete: DEVICE_COPY; integrated: UNIFIED_READ_DROP */
    EM_WEIGHTS_WANT_COPY = 1,         /* DEVICE_COPY anywhere */
    EM_WEIGHTS_WANT_READ_DROP = 2,    /* UNIFIED_READ_DROP anywhere (also useful on a discrete GPU: no page cache) */
    EM_WEIGHTS_WANT_ZERO_COPY = 3     /* ZERO_COPY, if the device can (else EM_ERR_UNSUPPORTED) */
} em_weight_request;

/* What the runtime reads from the device once (cudaDeviceGetAttribute / cudaDeviceProp names in brackets). */
typedef struct em_device_attrs {
    int integrated;                   /* [cudaDevAttrIntegrated] 1: the GPU shares DRAM with the CPU */
    int can_map_host_memory;          /* [cudaDevAttrCanMapHostMemory] */
    int pageable_memory_access;       /* [cudaDevAttrPageableMemoryAccess] kernels may read malloc/mmap memory */
    int concurrent_managed_access;    /* [cudaDevAttrConcurrentManagedAccess] */
    int host_register_supported;      /* [cudaDevAttrHostRegisterSupported] */
    int cc_major, cc_minor;           /* [cudaDevAttrComputeCapabilityMajor/Minor] 8.7 Orin, 11.0 Thor, 9.0 H100 */
    uint64_t total_mem;               /* [totalGlobalMem] bytes; on an iGPU this is the shared DRAM */
    uint64_t host_mem_available;      /* /proc/meminfo MemAvailable, bytes (0: unknown). On an iGPU this, not
                                         cudaMemGetInfo (which reports MemFree), is what can be allocated */
} em_device_attrs;

typedef struct em_weight_policy_options {
    em_weight_request request;        /* default AUTO, or $EM_WEIGHT_PATH (auto|copy|read-drop|zero-copy) */
    uint64_t chunk_bytes;             /* staging buffer of UNIFIED_READ_DROP (default 16 MiB; 64 KiB..1 GiB) */
} em_weight_policy_options;

typedef struct em_weight_decision {
    em_weight_path path;
    em_zero_copy_kind zero_copy;      /* how, when path is ZERO_COPY; else NONE */
    uint64_t chunk_bytes;             /* staging buffer for UNIFIED_READ_DROP (0 otherwise) */
    uint64_t peak_dram_bytes;         /* integrated only: the weights' peak in the shared DRAM while loading,
                                         page cache counted (DEVICE_COPY 2x blob, READ_DROP blob + chunk,
                                         ZERO_COPY blob); 0 on a discrete GPU (the copy is in HBM) */
    const char *reason;               /* static text: why this path (for logs and em-plan) */
} em_weight_decision;

#define EM_WEIGHT_CHUNK_DEFAULT (16ull << 20)
#define EM_WEIGHT_CHUNK_MIN (64ull << 10)
#define EM_WEIGHT_CHUNK_MAX (1ull << 30)

/** @return request AUTO (or $EM_WEIGHT_PATH when set and valid; an invalid value is logged and ignored) and
 *  chunk_bytes EM_WEIGHT_CHUNK_DEFAULT. */
em_weight_policy_options em_weight_policy_default_options(void);

/** Parses "auto", "copy", "read-drop" or "zero-copy". @return EM_OK or EM_ERR_INVALID_ARG (named). */
em_status em_weight_request_parse(const char *text, em_weight_request *out);

/** @return a static name: "device-copy", "unified-read-drop", "zero-copy". */
const char *em_weight_path_name(em_weight_path path);

/** Chooses the weight path for a blob of blob_bytes on a device with attributes *attrs.
 *  Rules: WANT_COPY and WANT_READ_DROP are obeyed on any device; WANT_ZERO_COPY needs an integrated GPU with
 *  pageable-memory access (the raw pointer) or with mapped host memory and host registration (CC >= 7.2); AUTO
 *  picks UNIFIED_READ_DROP on an integrated GPU and DEVICE_COPY on a discrete one.
 *  @param opts NULL for defaults.
 *  @return EM_OK; EM_ERR_INVALID_ARG (NULL attrs/out, blob_bytes 0, chunk out of range);
 *  EM_ERR_UNSUPPORTED (zero-copy asked for where the device cannot do it; the message says which attribute). */
em_status em_weight_path_choose(const em_device_attrs *attrs, uint64_t blob_bytes,
                                const em_weight_policy_options *opts, em_weight_decision *out);

/** Fills *attrs from CUDA device `device` (and MemAvailable). @return EM_OK; EM_ERR_NO_DEVICE in a build
 *  without CUDA; EM_ERR_DEVICE if a query fails. */
em_status em_device_attrs_query(int device, em_device_attrs *attrs);

/* ---- the chunked reader of UNIFIED_READ_DROP ------------------------------------------------------------ */

/** Copies bytes from the staging buffer (host) to dst (device, or host in tests). Called once per chunk, in
 *  file order, with bytes <= the staging size. The staging buffer is reused as soon as it returns, so an
 *  asynchronous copy must be complete (or the caller passes a synchronous one). @return EM_OK or a status. */
typedef em_status (*em_copy_fn)(void *dst, const void *src, size_t bytes, void *user);

typedef struct em_read_drop_stats {
    uint64_t bytes;                   /* bytes delivered to dst */
    uint64_t chunks;                  /* copy callbacks made */
    uint64_t dropped_bytes;           /* bytes of the file given to posix_fadvise(DONTNEED) */
    int drop_failed;                  /* 1 if an fadvise call failed (logged; the load itself went on) */
    double seconds;                   /* wall time of the whole call */
} em_read_drop_stats;

/** Reads [offset, offset + length) of the file at path into dst through copy(), staging_bytes at a time,
 *  and drops the file's pages behind each chunk with posix_fadvise(POSIX_FADV_DONTNEED) (whole pages: a page
 *  shared with the next chunk is dropped once that chunk is read; the range's last page at the end).
 *  Allocates nothing. Pages that are mapped by a process (e.g. the blob's own mmap, if its tensors were
 *  touched) are not dropped by the kernel: unmap or madvise(MADV_DONTNEED) them first.
 *  @param staging  [staging_bytes] host buffer (pinned memory makes the device copy faster).
 *  @param stats    NULL, or filled (also on failure, with what was done).
 *  @return EM_OK; EM_ERR_INVALID_ARG (NULL pointer with length > 0, staging_bytes 0); EM_ERR_NOT_FOUND /
 *  EM_ERR_IO (open or read failed, errno text in the message); EM_ERR_BLOB_TRUNCATED (the file ends inside
 *  the range); or the status copy() returned (the read stops there). */
em_status em_weights_read_drop(const char *path, uint64_t offset, uint64_t length, void *dst, void *staging,
                               size_t staging_bytes, em_copy_fn copy, void *user, em_read_drop_stats *stats);

#ifdef __cplusplus
}
#endif

#endif /* EM_PLATFORM_DEVICE_POLICY_H */
