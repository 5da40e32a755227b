/*
 * gpu_bw.cu — the roofline reference of the GPU benchmarks: a read-only XOR reduction over a large device
 * buffer, with the same 16-byte non-coherent, no-L1-allocate loads that the bandwidth-bound kernels use.
 * Its rate is the most a kernel that only reads (a GEMV streaming its weights) can reach on this card, so
 * `--perf` tables print "% of read bandwidth" against it rather than against the datasheet figure.
 * Test code only (linked into the gpu tests, not the library). Used by test_linear_cuda.c.
 */
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime.h>

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

/* Queues one pass over `bytes` (a multiple of 16; the rest is ignored) of buf, 16-byte aligned, on
 * `stream`, with a persistent grid of 8 blocks per SM. @return the cudaError_t of the launch (0 = ok). */
extern "C" int em_test_read_pass(const void *buf, size_t bytes, unsigned *sink, int sm_count, void *stream) {
    const int blocks = (sm_count > 0 ? sm_count : 132) * 8;
    em_bw_read_kernel<<<blocks, EM_BW_THREADS, 0, (cudaStream_t)stream>>>((const uint4 *)buf, bytes / 16, sink,
                                                                           0x9e3779b9u);
    return (int)cudaGetLastError();
}
