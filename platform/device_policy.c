/*
 * device_policy.c — the weight-path decision (discrete copy, unified read-and-drop, zero-copy) from device
 * attributes, and the query that fills those attributes from CUDA. The decision is plain C with no device
 * calls, so tests/test_device_policy.c checks it on fake Orin/Thor/H100 attribute sets; the reader that the
 * unified path uses is in weights_read.c. Header: device_policy.h (why each path exists).
 */
#include "device_policy.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

#ifdef EM_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "cuda_rt.h"
#endif

em_weight_policy_options em_weight_policy_default_options(void) {
    em_weight_policy_options o;
    memset(&o, 0, sizeof o);
    o.request = EM_WEIGHTS_AUTO;
    o.chunk_bytes = EM_WEIGHT_CHUNK_DEFAULT;
    const char *env = getenv("EM_WEIGHT_PATH");
    if (env && *env) {
        em_weight_request r = EM_WEIGHTS_AUTO;
        if (em_weight_request_parse(env, &r) == EM_OK)
            o.request = r;
        else
            EM_LOG_W("EM_WEIGHT_PATH=%s is not auto|copy|read-drop|zero-copy: ignored", env);
    }
    return o;
}

em_status em_weight_request_parse(const char *text, em_weight_request *out) {
    static const struct { const char *name; em_weight_request r; } names[] = {
        { "auto", EM_WEIGHTS_AUTO }, { "copy", EM_WEIGHTS_WANT_COPY },
        { "read-drop", EM_WEIGHTS_WANT_READ_DROP }, { "zero-copy", EM_WEIGHTS_WANT_ZERO_COPY },
    };
    if (!text || !out) return em_fail(EM_ERR_INVALID_ARG, "weight path: NULL argument");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(text, names[i].name) == 0) { *out = names[i].r; return EM_OK; }
    return em_fail(EM_ERR_INVALID_ARG, "weight path '%s': expected auto, copy, read-drop or zero-copy", text);
}

const char *em_weight_path_name(em_weight_path path) {
    switch (path) {
    case EM_WEIGHTS_DEVICE_COPY: return "device-copy";
    case EM_WEIGHTS_UNIFIED_READ_DROP: return "unified-read-drop";
    case EM_WEIGHTS_ZERO_COPY: return "zero-copy";
    }
    return "unknown";
}

// ---- the decision ------------------------------------------------------------------------------------------

/* Peak bytes of the weights in the shared DRAM of an integrated GPU while loading (page cache included):
 * DEVICE_COPY reads the mapped file (all its pages enter the cache) into a device buffer of the same size;
 * READ_DROP holds the device buffer plus at most one chunk of cached pages (dropped behind each read);
 * ZERO_COPY's weights are the cached pages themselves. */
static uint64_t peak_dram(em_weight_path p, uint64_t blob, uint64_t chunk) {
    switch (p) {
    case EM_WEIGHTS_DEVICE_COPY: return 2 * blob;
    case EM_WEIGHTS_UNIFIED_READ_DROP: return blob + (chunk < blob ? chunk : blob);
    case EM_WEIGHTS_ZERO_COPY: return blob;
    }
    return 0;
}

em_status em_weight_path_choose(const em_device_attrs *a, uint64_t blob_bytes, const em_weight_policy_options *opts,
                                em_weight_decision *out) {
    if (!a || !out) return em_fail(EM_ERR_INVALID_ARG, "em_weight_path_choose: attrs and out must not be NULL");
    memset(out, 0, sizeof *out);
    if (blob_bytes == 0) return em_fail(EM_ERR_INVALID_ARG, "em_weight_path_choose: the blob has no weight bytes");
    em_weight_policy_options o = opts ? *opts : em_weight_policy_default_options();
    if (o.chunk_bytes < EM_WEIGHT_CHUNK_MIN || o.chunk_bytes > EM_WEIGHT_CHUNK_MAX)
        return em_fail(EM_ERR_INVALID_ARG, "weight path: chunk of %llu bytes is outside [%llu, %llu]",
                       (unsigned long long)o.chunk_bytes, EM_WEIGHT_CHUNK_MIN, EM_WEIGHT_CHUNK_MAX);

    em_weight_path p = EM_WEIGHTS_DEVICE_COPY;
    switch (o.request) {
    case EM_WEIGHTS_AUTO:
        p = a->integrated ? EM_WEIGHTS_UNIFIED_READ_DROP : EM_WEIGHTS_DEVICE_COPY;
        out->reason = a->integrated
                          ? "integrated GPU: one copy in the shared DRAM (read into device memory, page cache dropped)"
                          : "discrete GPU: one copy of the mapped blob into device memory";
        break;
    case EM_WEIGHTS_WANT_COPY:
        p = EM_WEIGHTS_DEVICE_COPY;
        out->reason = a->integrated ? "asked for: device copy (the file's pages stay cached beside the copy)"
                                    : "asked for: device copy";
        break;
    case EM_WEIGHTS_WANT_READ_DROP:
        p = EM_WEIGHTS_UNIFIED_READ_DROP;
        out->reason = "asked for: chunked read into device memory, page cache dropped";
        break;
    case EM_WEIGHTS_WANT_ZERO_COPY:
        /* A discrete GPU would read the weights over PCIe on every token: 20-60x below its own DRAM. */
        if (!a->integrated)
            return em_fail(EM_ERR_UNSUPPORTED, "weight path zero-copy: the GPU is discrete (cudaDevAttrIntegrated 0); "
                           "its kernels would read the weights over the bus on every token");
        p = EM_WEIGHTS_ZERO_COPY;
        if (a->pageable_memory_access) {
            out->zero_copy = EM_ZERO_COPY_PAGEABLE;
            out->reason = "asked for: zero-copy, kernels read the mapped blob (pageable memory access)";
        } else if (a->can_map_host_memory && a->host_register_supported &&
                   (a->cc_major > 7 || (a->cc_major == 7 && a->cc_minor >= 2))) {
            out->zero_copy = EM_ZERO_COPY_HOST_REGISTER;
            out->reason = "asked for: zero-copy, the mapped blob host-registered (read uncached by the iGPU)";
        } else {
            return em_fail(EM_ERR_UNSUPPORTED, "weight path zero-copy: device %d.%d has no pageable memory access and "
                           "cannot register host memory (canMapHostMemory %d, hostRegisterSupported %d; needs CC >= 7.2)",
                           a->cc_major, a->cc_minor, a->can_map_host_memory, a->host_register_supported);
        }
        break;
    default:
        return em_fail(EM_ERR_INVALID_ARG, "weight path: request %d is not an em_weight_request", (int)o.request);
    }
    out->path = p;
    out->chunk_bytes = p == EM_WEIGHTS_UNIFIED_READ_DROP ? o.chunk_bytes : 0;
    out->peak_dram_bytes = a->integrated ? peak_dram(p, blob_bytes, o.chunk_bytes) : 0;
    return EM_OK;
}

// ---- attributes from CUDA ----------------------------------------------------------------------------------

em_status em_device_attrs_query(int device, em_device_attrs *attrs) {
    if (!attrs) return em_fail(EM_ERR_INVALID_ARG, "em_device_attrs_query: attrs must not be NULL");
    memset(attrs, 0, sizeof *attrs);
#ifdef EM_HAVE_CUDA
    static const struct { enum cudaDeviceAttr attr; size_t off; } q[] = {
        { cudaDevAttrIntegrated, offsetof(em_device_attrs, integrated) },
        { cudaDevAttrCanMapHostMemory, offsetof(em_device_attrs, can_map_host_memory) },
        { cudaDevAttrPageableMemoryAccess, offsetof(em_device_attrs, pageable_memory_access) },
        { cudaDevAttrConcurrentManagedAccess, offsetof(em_device_attrs, concurrent_managed_access) },
        { cudaDevAttrHostRegisterSupported, offsetof(em_device_attrs, host_register_supported) },
        { cudaDevAttrComputeCapabilityMajor, offsetof(em_device_attrs, cc_major) },
        { cudaDevAttrComputeCapabilityMinor, offsetof(em_device_attrs, cc_minor) },
    };
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        int v = 0;
        EM_CUDA_CHECK(cudaDeviceGetAttribute(&v, q[i].attr, device));
        memcpy((char *)attrs + q[i].off, &v, sizeof v);
    }
    struct cudaDeviceProp prop;
    EM_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
    attrs->total_mem = prop.totalGlobalMem;
    attrs->host_mem_available = em_host_mem_available();
    return EM_OK;
#else
    (void)device;
    return em_fail(EM_ERR_NO_DEVICE, "em_device_attrs_query: this build has no CUDA");
#endif
}
