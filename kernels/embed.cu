/*
 * embed.cu — the embedding lookup on the GPU: out[t] = f32(table[tok[t]]) for an F32, BF16 or F16 table,
 * the token ids read on the device (so that a token sampled on the device feeds the next step without
 * crossing to the host). Twin: em_ref_embed (kernels/ref/norm_ref.c); test and benchmark:
 * tests/test_embed_cuda.c.
 *
 * Why this shape: one row of d values per token (8B: 8 KB of bf16), a copy with a widening: 16-byte loads
 * and stores, a thread per 16 bytes of the row (8B: 512 threads over 2 blocks), tokens on grid.y.
 * Widening is exact for all three dtypes (bf16 is the top half of an f32; f16 -> f32 is exact), so the
 * result equals the twin's bit for bit.
 *
 * Version history:
 *   v1 (this file) vector path (table and out 16-byte aligned, d % 8 == 0 for 16-bit tables, % 4 for f32);
 *      else one element a thread. tok is not range-checked on the device (the caller checks, as for the twin).
 *
 * Build: part of the library with -DEM_CUDA=ON. Standalone, with the resource report:
 *   nvcc -O3 -std=c++17 -arch=sm_90 -Xptxas -v -Iinclude -Ikernels -Iruntime -Iplatform \
 *        -c kernels/embed.cu -o /tmp/embed.o
 */
#ifndef EM_HAVE_CUDA
#define EM_HAVE_CUDA 1 /* a .cu file is a CUDA build by definition (the standalone command defines nothing) */
#endif

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda_ops.h"
extern "C" {
#include "util.h" /* em_fail */
}

#define EM_EMBED_THREADS 256
#define EM_EMBED_MAX_GRID_Y 65535u /* tokens beyond it loop over grid.y */

/* One element of each dtype, widened exactly. */
static __device__ __forceinline__ float em_widen(float v) { return v; }
struct em_bf16_t { uint16_t u; };
struct em_f16_t { uint16_t u; };
static __device__ __forceinline__ float em_widen(em_bf16_t v) { return __uint_as_float((uint32_t)v.u << 16); }
static __device__ __forceinline__ float em_widen(em_f16_t v) { return __half2float(__ushort_as_half(v.u)); }

/* Two 16-bit values packed in a word: element 2i is the low half (little-endian). */
template <typename T> static __device__ __forceinline__ float2 em_widen2(uint32_t w) {
    return make_float2(em_widen(T{(uint16_t)(w & 0xffffu)}), em_widen(T{(uint16_t)(w >> 16)}));
}

/* Vector path: a thread per 16 bytes of the table row. T = float (4 per thread) or a 16-bit type (8).
 * Grid: (ceil(d / per thread / EM_EMBED_THREADS), min(n_tok, 65535)). */
template <typename T>
__global__ void __launch_bounds__(EM_EMBED_THREADS)
em_embed_vec(const uint4 *__restrict__ table, /* [vocab, d], 16 bytes = 16 / sizeof(T) elements per uint4 */
             const int32_t *__restrict__ tok, float *__restrict__ out, uint32_t n_tok, uint32_t d) {
    constexpr uint32_t E = 16 / sizeof(T); /* elements per uint4 */
    const uint32_t i = blockIdx.x * EM_EMBED_THREADS + threadIdx.x, nv = d / E;
    if (i >= nv) return;
    for (uint32_t t = blockIdx.y; t < n_tok; t += gridDim.y) {
        const uint4 v = __ldg(table + (size_t)tok[t] * nv + i);
        float4 *o = reinterpret_cast<float4 *>(out + (size_t)t * d) + (size_t)i * (E / 4);
        if constexpr (E == 4) {
            o[0] = make_float4(__uint_as_float(v.x), __uint_as_float(v.y), __uint_as_float(v.z), __uint_as_float(v.w));
        } else {
            const float2 a = em_widen2<T>(v.x), b = em_widen2<T>(v.y), c = em_widen2<T>(v.z), e = em_widen2<T>(v.w);
            o[0] = make_float4(a.x, a.y, b.x, b.y);
            o[1] = make_float4(c.x, c.y, e.x, e.y);
        }
    }
}

/* Any alignment, any d: a thread per element. */
template <typename T>
__global__ void __launch_bounds__(EM_EMBED_THREADS)
em_embed_generic(const T *__restrict__ table, const int32_t *__restrict__ tok, float *__restrict__ out, uint32_t n_tok,
                 uint32_t d) {
    const uint32_t i = blockIdx.x * EM_EMBED_THREADS + threadIdx.x;
    if (i >= d) return;
    for (uint32_t t = blockIdx.y; t < n_tok; t += gridDim.y)
        out[(size_t)t * d + i] = em_widen(table[(size_t)tok[t] * d + i]);
}

// ---- launcher ------------------------------------------------------------------------------------------

extern "C" int em_cuda_embed_supported(const em_embed_args *a) {
    if (!a || !a->table || !a->tok || !a->out) return 0;
    return a->dtype == EM_DTYPE_F32 || a->dtype == EM_DTYPE_BF16 || a->dtype == EM_DTYPE_F16;
}

template <typename T> static const char *em_embed_launch(const em_embed_args *a, cudaStream_t s) {
    constexpr uint32_t E = 16 / sizeof(T);
    const unsigned gy = a->n_tok < EM_EMBED_MAX_GRID_Y ? a->n_tok : EM_EMBED_MAX_GRID_Y;
    const int vec = a->d % E == 0 && ((uintptr_t)a->table & 15u) == 0 && ((uintptr_t)a->out & 15u) == 0;
    if (vec) {
        const dim3 grid((a->d / E + EM_EMBED_THREADS - 1) / EM_EMBED_THREADS, gy);
        em_embed_vec<T><<<grid, EM_EMBED_THREADS, 0, s>>>((const uint4 *)a->table, a->tok, a->out, a->n_tok, a->d);
        return "em_embed_vec";
    }
    const dim3 grid((a->d + EM_EMBED_THREADS - 1) / EM_EMBED_THREADS, gy);
    em_embed_generic<T><<<grid, EM_EMBED_THREADS, 0, s>>>((const T *)a->table, a->tok, a->out, a->n_tok, a->d);
    return "em_embed_generic";
}

extern "C" em_status em_cuda_embed(const em_embed_args *a, void *stream) {
    if (!a) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_embed: args is NULL");
    if (!em_cuda_embed_supported(a))
        return em_fail(a && a->table && a->tok && a->out ? EM_ERR_UNSUPPORTED : EM_ERR_INVALID_ARG,
                       "em_cuda_embed: unsupported arguments (dtype %d: F32, BF16 or F16; pointers %s)", (int)a->dtype,
                       a->table && a->tok && a->out ? "set" : "NULL");
    if (a->n_tok == 0 || a->d == 0) return EM_OK;
    cudaStream_t s = (cudaStream_t)stream;
    const char *kernel = a->dtype == EM_DTYPE_F32    ? em_embed_launch<float>(a, s)
                         : a->dtype == EM_DTYPE_BF16 ? em_embed_launch<em_bf16_t>(a, s)
                                                     : em_embed_launch<em_f16_t>(a, s);
    const cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return EM_OK;
    return em_fail(EM_ERR_DEVICE, "em_cuda_embed: launch of %s (dtype %d, n_tok %u, d %u) failed: %s: %s", kernel,
                   (int)a->dtype, a->n_tok, a->d, cudaGetErrorName(e), cudaGetErrorString(e));
}
