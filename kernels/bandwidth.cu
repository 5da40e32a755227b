/*
 * bandwidth.cu — the roofline reference: a read-only XOR reduction over a large device buffer, with the same
 * 16-byte non-coherent, no-L1-allocate loads that the bandwidth-bound kernels use. Its rate is the most a
 * kernel that only reads (a GEMV streaming its weights) can reach on this card, so em-bench and the gpu
 * tests' --perf tables report "% of read bandwidth" against it, measured in the same run, rather than
 * against the datasheet figure.
 *
 *   nvcc -O3 -arch=sm_90 -c kernels/bandwidth.cu -Iinclude -Iruntime -Ikernels
 */
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime.h>

#include "cuda_ops.h"

#define EM_BW_THREADS 256
#define EM_BW_UNROLL 4 /* independent 16-byte loads in flight per thread */

static __device__ __forceinline__ uint4 em_bw_ld(const uint4 *p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

/* Grid-stride over n uint4; the XOR of everything read is "used" by a store that never happens in
 * practice (acc == magic), which keeps the compiler from dropping the loads. */
__global__ void __launch_bounds__(EM_BW_THREADS) em_bw_read_kernel(const uint4 *__restrict__ p, size_t n,
                                                                    unsigned *sink, unsigned magic) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    unsigned acc = 0;
    for (; i + (EM_BW_UNROLL - 1) * stride < n; i += EM_BW_UNROLL * stride) {
        uint4 v[EM_BW_UNROLL];
#pragma unroll
        for (int u = 0; u < EM_BW_UNROLL; u++) v[u] = em_bw_ld(p + i + u * stride);
#pragma unroll
        for (int u = 0; u < EM_BW_UNROLL; u++) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (; i < n; i += stride) {
        const uint4 v = em_bw_ld(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == magic) atomicAdd(sink, 1u);
}

extern "C" int em_cuda_read_pass(const void *buf, size_t bytes, unsigned *sink, int sm_count, void *stream) {
    const int blocks = (sm_count > 0 ? sm_count : 132) * 8;
    em_bw_read_kernel<<<blocks, EM_BW_THREADS, 0, (cudaStream_t)stream>>>((const uint4 *)buf, bytes / 16, sink,
                                                                           0x9e3779b9u);
    return (int)cudaGetLastError();
}

/* Allocates `bytes` (a benchmark tool's one-off, never on a decode path), fills it, times `reps` passes
 * with events after one warm-up, frees it, and returns the median rate in GB/s (1e9 bytes/s). */
extern "C" em_status em_cuda_read_bandwidth(size_t bytes, int reps, double *gbps) {
    void *buf = NULL;
    unsigned *sink = NULL;
    cudaEvent_t a = NULL, b = NULL;
    double times[64];
    int dev = 0, sms = 132;
    if (!gbps || reps < 1 || reps > 64 || bytes < (1u << 20)) return EM_ERR_INVALID_ARG;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    cudaError_t e = cudaMalloc(&buf, bytes);
    if (e == cudaSuccess) e = cudaMalloc((void **)&sink, sizeof(unsigned));
    if (e == cudaSuccess) e = cudaMemset(buf, 0x5a, bytes);
    if (e == cudaSuccess) e = cudaEventCreate(&a);
    if (e == cudaSuccess) e = cudaEventCreate(&b);
    for (int r = -1; e == cudaSuccess && r < reps; r++) {
        cudaEventRecord(a, 0);
        e = (cudaError_t)em_cuda_read_pass(buf, bytes, sink, sms, 0);
        cudaEventRecord(b, 0);
        if (e == cudaSuccess) e = cudaEventSynchronize(b);
        float ms = 0;
        if (e == cudaSuccess && r >= 0) { cudaEventElapsedTime(&ms, a, b); times[r] = ms; }
    }
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
    cudaFree(sink);
    cudaFree(buf);
    if (e != cudaSuccess) return EM_ERR_DEVICE;
    for (int i = 1; i < reps; i++) /* insertion sort: reps is small */
        for (int j = i; j > 0 && times[j] < times[j - 1]; j--) { double t = times[j]; times[j] = times[j - 1]; times[j - 1] = t; }
    *gbps = (double)bytes / (times[reps / 2] * 1e-3) / 1e9;
    return EM_OK;
}
