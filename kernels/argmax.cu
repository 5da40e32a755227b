/*
 * argmax.cu — greedy sampling on the GPU: the index of the largest logit, written to device memory, so
 * that in the generation loop only a token id crosses to the host (or none: the embedding reads it on the
 * device). Twin: em_ref_argmax (kernels/ref/norm_ref.c), matched exactly: the lowest index on a tie, NaN
 * never taken, 0 when all are NaN or n == 0. Test and benchmark: tests/test_argmax_cuda.c.
 *
 * Why this shape: the logits (vocab 256000: 1 MB) were just written by the LM head and sit in L2; one block
 * alone reads L2 at one SM's rate (~100 GB/s: ~10 us for 1 MB), so the work is spread over 8 SMs, and one
 * launch must still give the answer. A grid-wide reduction would need a global scratch word (a 64-bit
 * atomicMax target, reset by the last block), and a global scratch shared by every caller races when two
 * sessions sample on two streams at once. A thread block CLUSTER (sm_90) has no such state: its 8 blocks
 * reduce their slices, then block 0 reads the other 7 results from their shared memory (distributed
 * shared memory) and writes the index.
 *
 * The comparison is one unsigned 64-bit max: key = (ordered bits of the value) << 32 | ~index, where the
 * ordered bits map floats to unsigned integers monotonically (negative: all bits flipped; positive: the
 * sign bit set). A larger value wins; on equal values the larger ~index, i.e. the lower index, wins. NaN
 * gets key 0, below every other key (the ordered bits of -inf are 0x007fffff), so it never wins; all-NaN
 * leaves 0, read back as index 0. -0.0 is keyed as +0.0: the twin's `>` sees them as equal.
 *
 * Version history:
 *   v1 (this file) one cluster of 8 blocks x 1024 threads on sm_90+ (cudaLaunchKernelEx with a cluster
 *      dimension), float4 loads with 4 in flight per thread; one block of 1024 threads elsewhere (Orin
 *      sm_87) or when the kernel binary for this device predates sm_90. The path is decided once per device
 *      (cached), from the device's cluster-launch attribute and the kernel binary's version.
 *
 * Build: part of the library with -DEM_CUDA=ON. Standalone, with the resource report:
 *   nvcc -O3 -std=c++17 -arch=sm_90 -Xptxas -v -Iinclude -Ikernels -Iruntime -Iplatform \
 *        -c kernels/argmax.cu -o /tmp/argmax.o
 */
#ifndef EM_HAVE_CUDA
#define EM_HAVE_CUDA 1 /* a .cu file is a CUDA build by definition (the standalone command defines nothing) */
#endif

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <atomic>

#include "cuda_ops.h"
extern "C" {
#include "util.h" /* em_fail */
}

#define EM_ARGMAX_THREADS 1024
#define EM_ARGMAX_CLUSTER 8 /* the portable cluster size on sm_90 */
#define EM_ARGMAX_UNROLL 4  /* float4 loads in flight per thread */
#define EM_ARGMAX_MAX_DEVICES 64

typedef unsigned long long em_key; /* (ordered value bits) << 32 | ~index; 0 = nothing (NaN or empty) */

// ---- device helpers ----------------------------------------------------------------------------------

static __device__ __forceinline__ em_key em_argmax_key(float v, uint32_t i) {
    if (isnan(v)) return 0;
    uint32_t u = __float_as_uint(v == 0.0f ? 0.0f : v); /* -0 -> +0 */
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((em_key)u << 32) | (uint32_t)~i;
}

static __device__ __forceinline__ em_key em_key_max(em_key a, em_key b) { return a > b ? a : b; }

static __device__ __forceinline__ em_key em_warp_max(em_key v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = em_key_max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

static __device__ __forceinline__ int32_t em_key_index(em_key k) { return k ? (int32_t)~(uint32_t)k : 0; }

// ---- the kernel ----------------------------------------------------------------------------------------

/* CL = 1: the whole of x in this one block. CL > 1: launched as ONE cluster of CL blocks (grid = CL), block
 * r reducing slice r (a multiple of 4 elements, so that each slice of an aligned x stays aligned). */
template <int CL>
__global__ void __launch_bounds__(EM_ARGMAX_THREADS) em_argmax_kernel(const float *__restrict__ x, uint32_t n,
                                                                       int32_t *__restrict__ out) {
    __shared__ em_key red[32];
    __shared__ em_key block_best; /* read by block 0 of the cluster */
    const uint32_t T = blockDim.x, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint64_t per = (((uint64_t)n + CL - 1) / CL + 3) & ~(uint64_t)3; /* slice length */
    const uint32_t lo = (uint32_t)min((uint64_t)n, blockIdx.x * per), hi = (uint32_t)min((uint64_t)n, lo + per);

    em_key best = 0;
    uint64_t tail = lo; /* first element the scalar loop takes */
    if (((uintptr_t)x & 15u) == 0) {
        const float4 *xv = reinterpret_cast<const float4 *>(x + lo);
        const uint32_t nv = (hi - lo) / 4;
        uint32_t j = threadIdx.x;
        for (; j + (EM_ARGMAX_UNROLL - 1) * T < nv; j += EM_ARGMAX_UNROLL * T) {
            float4 v[EM_ARGMAX_UNROLL];
#pragma unroll
            for (int u = 0; u < EM_ARGMAX_UNROLL; u++) v[u] = __ldg(xv + j + u * T);
#pragma unroll
            for (int u = 0; u < EM_ARGMAX_UNROLL; u++) {
                const uint32_t i = lo + 4 * (j + u * T);
                best = em_key_max(best, em_argmax_key(v[u].x, i));
                best = em_key_max(best, em_argmax_key(v[u].y, i + 1));
                best = em_key_max(best, em_argmax_key(v[u].z, i + 2));
                best = em_key_max(best, em_argmax_key(v[u].w, i + 3));
            }
        }
        for (; j < nv; j += T) {
            const float4 v = __ldg(xv + j);
            const uint32_t i = lo + 4 * j;
            best = em_key_max(best, em_argmax_key(v.x, i));
            best = em_key_max(best, em_argmax_key(v.y, i + 1));
            best = em_key_max(best, em_argmax_key(v.z, i + 2));
            best = em_key_max(best, em_argmax_key(v.w, i + 3));
        }
        tail = lo + 4 * (uint64_t)nv;
    }
    for (uint64_t i = tail + threadIdx.x; i < hi; i += T) best = em_key_max(best, em_argmax_key(__ldg(x + i), (uint32_t)i));

    best = em_warp_max(best);
    if (lane == 0) red[warp] = best;
    __syncthreads();
    best = em_warp_max(lane < (T + 31) / 32 ? red[lane] : 0); /* every warp: the block's best */

    if constexpr (CL == 1) {
        if (threadIdx.x == 0) *out = em_key_index(best);
    } else {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        namespace cg = cooperative_groups;
        cg::cluster_group cluster = cg::this_cluster();
        if (threadIdx.x == 0) block_best = best;
        cluster.sync(); /* every block's block_best is written and visible cluster-wide */
        if (cluster.block_rank() == 0 && warp == 0) {
            em_key v = lane < CL ? *cluster.map_shared_rank(&block_best, lane) : 0;
            v = em_warp_max(v);
            if (lane == 0) *out = em_key_index(v);
        }
        cluster.sync(); /* no block may exit (freeing its shared memory) before block 0 has read it */
#else
        (void)block_best;
        __trap(); /* never launched: the launcher takes the cluster path only for sm_90+ binaries */
#endif
    }
}

// ---- launchers -----------------------------------------------------------------------------------------

/* Does the current device run the cluster kernel? Decided once per device: the device supports cluster
 * launch and the binary loaded for it is sm_90+ code (not an older arch's PTX JIT-compiled). */
static int em_argmax_cluster_ok(void) {
    static std::atomic<int> cache[EM_ARGMAX_MAX_DEVICES]; /* 0 unknown, 1 no, 2 yes */
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    if (dev >= 0 && dev < EM_ARGMAX_MAX_DEVICES) {
        const int c = cache[dev].load(std::memory_order_relaxed);
        if (c) return c == 2;
    }
    int cl = 0;
    cudaFuncAttributes fa;
    const int ok = cudaDeviceGetAttribute(&cl, cudaDevAttrClusterLaunch, dev) == cudaSuccess && cl &&
                   cudaFuncGetAttributes(&fa, em_argmax_kernel<EM_ARGMAX_CLUSTER>) == cudaSuccess &&
                   fa.binaryVersion >= 90;
    (void)cudaGetLastError(); /* a failed query must not surface as the next launch's error */
    if (dev >= 0 && dev < EM_ARGMAX_MAX_DEVICES) cache[dev].store(ok ? 2 : 1, std::memory_order_relaxed);
    return ok;
}

extern "C" em_status em_cuda_argmax_path(const float *x, uint32_t n, int32_t *out_dev, void *stream, int blocks) {
    if (!out_dev || (!x && n > 0))
        return em_fail(EM_ERR_INVALID_ARG, "em_cuda_argmax: %s is NULL", out_dev ? "x" : "out_dev");
    if (blocks != 0 && blocks != 1 && blocks != EM_ARGMAX_CLUSTER)
        return em_fail(EM_ERR_INVALID_ARG, "em_cuda_argmax_path: blocks %d (0, 1 or %d)", blocks, EM_ARGMAX_CLUSTER);
    cudaStream_t s = (cudaStream_t)stream;
    const int cluster = blocks == 1 ? 0 : em_argmax_cluster_ok();
    if (blocks == EM_ARGMAX_CLUSTER && !cluster)
        return em_fail(EM_ERR_UNSUPPORTED, "em_cuda_argmax_path: no cluster launch on this device (sm_90+ needed)");
    cudaError_t e;
    if (cluster) {
        cudaLaunchConfig_t cfg = {};
        cudaLaunchAttribute attr[1] = {};
        attr[0].id = cudaLaunchAttributeClusterDimension;
        attr[0].val.clusterDim.x = EM_ARGMAX_CLUSTER;
        attr[0].val.clusterDim.y = 1;
        attr[0].val.clusterDim.z = 1;
        cfg.gridDim = dim3(EM_ARGMAX_CLUSTER);
        cfg.blockDim = dim3(EM_ARGMAX_THREADS);
        cfg.dynamicSmemBytes = 0;
        cfg.stream = s;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
        e = cudaLaunchKernelEx(&cfg, em_argmax_kernel<EM_ARGMAX_CLUSTER>, x, n, out_dev);
        if (e == cudaSuccess) e = cudaGetLastError();
    } else {
        em_argmax_kernel<1><<<1, EM_ARGMAX_THREADS, 0, s>>>(x, n, out_dev);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) return EM_OK;
    (void)cudaGetLastError();
    return em_fail(EM_ERR_DEVICE, "em_cuda_argmax: launch of em_argmax_kernel<%d> (n %u) failed: %s: %s",
                   cluster ? EM_ARGMAX_CLUSTER : 1, n, cudaGetErrorName(e), cudaGetErrorString(e));
}

extern "C" em_status em_cuda_argmax(const float *x, uint32_t n, int32_t *out_dev, void *stream) {
    return em_cuda_argmax_path(x, n, out_dev, stream, 0);
}
