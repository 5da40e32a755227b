/*
 * norm.cu — the two per-token norms of the Mamba-2 step on the GPU:
 *   rmsnorm     x += delta (the residual add, in place, when delta is set); y = w * (x * rsqrt(mean(x^2) + eps))
 *   gated_norm  g = y * silu(z); out = w * (g * rsqrt(mean_group(g^2) + eps)), per contiguous group of channels
 * Twins: em_ref_rmsnorm, em_ref_gated_norm (kernels/ref/norm_ref.c); tests and benchmarks:
 * tests/test_rmsnorm_cuda.c, tests/test_gated_norm_cuda.c.
 *
 * Why this shape: at decode both are a few tens of KB that the previous kernel just wrote (L2-resident), so
 * they are judged by latency: one launch, one block per row (a token for rmsnorm, a (token, group) for the
 * gated norm: Mamba-2 8B's 8 groups of 1024 give 8 blocks), every load of a thread issued before the first
 * is used, the row kept in registers between the sum of squares and the scaling (EM_NORM_CACHE vectors per
 * thread; a longer row re-reads the rest), one block reduction (warp xor-shuffles, then one shared-memory
 * exchange). The residual add is fused into the norm that follows it, so the residual stream is read and
 * written once per layer.
 *
 * Version history:
 *   v1 block per row, float4 loads when the pointers are 16-byte aligned and the row lengths and strides are
 *      multiples of 4 (always, for the executor's buffers), else the same kernel on scalars. Threads per
 *      block: ceil(row vectors / EM_NORM_CACHE) rounded up to a warp, at most 1024: 8B rmsnorm (d 4096) is
 *      256 threads x 4 float4. H100, in a CUDA graph: rmsnorm 2.7 us, gated norm 4.0 us (8B decode).
 *   v1.1 (this file) the SASS of v1 showed the gated norm waiting for vector u's loads (its silu) before
 *      issuing vector u + 1's, and w loaded only after the block reduction: up to 5 memory latencies in a
 *      row. Now every load of the cached vectors (x/delta/w, y/z/w) is issued first, then the arithmetic:
 *      one latency before the reduction, none after. Stores written as one st.global.v4 (NVVM had split
 *      the gated norm's into scalars). 3 x EM_NORM_CACHE float4 stay live, so blocks are capped at 512
 *      threads (128 registers); 8B rows still fit the cache (rmsnorm 256 threads, gated 64 or 512).
 *      Checked against the twins (CPU emulation of the kernels); H100 timing pending.
 *
 * Build: part of the library with -DEM_CUDA=ON. Standalone, with the resource report:
 *   nvcc -O3 -std=c++17 -arch=sm_90 -Xptxas -v -Iinclude -Ikernels -Iruntime -Iplatform \
 *        -c kernels/norm.cu -o /tmp/norm.o
 */
#ifndef EM_HAVE_CUDA
#define EM_HAVE_CUDA 1 /* a .cu file is a CUDA build by definition (the standalone command defines nothing) */
#endif

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cuda_runtime.h>

#include "cuda_ops.h"
extern "C" {
#include "util.h" /* em_fail */
}

#define EM_NORM_MAX_THREADS 512 /* 128 registers a thread: 3 x EM_NORM_CACHE float4 live across the loads */
#define EM_NORM_CACHE 4 /* vectors of the row a thread keeps in registers between the two passes */

// ---- device helpers ----------------------------------------------------------------------------------

/* V floats: float4 (V = 4, 16-byte aligned) or float (V = 1). */
template <int V> struct em_vec;
template <> struct em_vec<4> {
    float4 v;
    static __device__ __forceinline__ em_vec ld(const float *p) { return {*reinterpret_cast<const float4 *>(p)}; }
    /* one 16-byte store, written out: from a plain float4 assignment NVVM emitted 4 scalar stores in the
     * gated norm (seen in its SASS, nvcc 13.0) */
    __device__ __forceinline__ void st(float *p) const {
#ifdef __CUDA_ARCH__
        asm volatile("st.global.v4.f32 [%0], {%1, %2, %3, %4};" ::"l"(p), "f"(v.x), "f"(v.y), "f"(v.z), "f"(v.w)
                     : "memory");
#else
        *reinterpret_cast<float4 *>(p) = v;
#endif
    }
    /* i is a compile-time constant after unrolling: the select folds away, v stays in registers */
    __device__ __forceinline__ float &operator[](int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }
    __device__ __forceinline__ float operator[](int i) const { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }
};
template <> struct em_vec<1> {
    float v;
    static __device__ __forceinline__ em_vec ld(const float *p) { return {*p}; }
    __device__ __forceinline__ void st(float *p) const { *p = v; }
    __device__ __forceinline__ float &operator[](int) { return v; }
    __device__ __forceinline__ float operator[](int) const { return v; }
};

static __device__ __forceinline__ float em_norm_silu(float v) { return v / (1.0f + expf(-v)); }

static __device__ __forceinline__ float em_norm_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over the block, returned to every thread. One call per kernel (red is not reset). */
static __device__ __forceinline__ float em_norm_block_sum(float v, float *red /* [32] shared */) {
    v = em_norm_warp_sum(v);
    const int lane = threadIdx.x & 31, nw = (blockDim.x + 31) >> 5;
    if (lane == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    return em_norm_warp_sum(lane < nw ? red[lane] : 0.0f); /* every warp sums the partials itself */
}

// ---- rmsnorm (+ residual) ------------------------------------------------------------------------------

/* Block per token (grid n_tok). V = 4: x, delta, w, y 16-byte aligned and d % 4 == 0. */
template <int V>
__global__ void __launch_bounds__(EM_NORM_MAX_THREADS)
em_rmsnorm_kernel(float *x,                       /* [n_tok, d] residual; += delta */
                  const float *__restrict__ delta, /* [n_tok, d] or NULL */
                  const float *__restrict__ w,     /* [d] */
                  float *__restrict__ y,           /* [n_tok, d] */
                  uint32_t d, float eps) {
    __shared__ float red[32];
    const size_t row = (size_t)blockIdx.x * d;
    float *xr = x + row;
    const float *dr = delta ? delta + row : NULL;
    float *yr = y + row;
    const uint32_t nv = d / V, T = blockDim.x;

    /* pass 1: x (+= delta), sum of squares. The first EM_NORM_CACHE vectors of each thread stay in registers
     * with their w. All loads first, then the arithmetic: one memory latency for the lot (interleaved, the
     * SASS waited on vector u before loading vector u + 1), and w's latency before the reduction, not after. */
    em_vec<V> c[EM_NORM_CACHE], dc[EM_NORM_CACHE], wc[EM_NORM_CACHE];
#pragma unroll
    for (int u = 0; u < EM_NORM_CACHE; u++) {
        const uint32_t i = threadIdx.x + u * T;
        if (i < nv) {
            c[u] = em_vec<V>::ld(xr + (size_t)i * V);
            if (dr) dc[u] = em_vec<V>::ld(dr + (size_t)i * V);
            wc[u] = em_vec<V>::ld(w + (size_t)i * V);
        }
    }
    float ss = 0.0f;
#pragma unroll
    for (int u = 0; u < EM_NORM_CACHE; u++) {
        const uint32_t i = threadIdx.x + u * T;
        if (i < nv) {
            if (dr) {
#pragma unroll
                for (int e = 0; e < V; e++) c[u][e] += dc[u][e];
                c[u].st(xr + (size_t)i * V);
            }
#pragma unroll
            for (int e = 0; e < V; e++) ss += c[u][e] * c[u][e];
        }
    }
    for (uint32_t i = threadIdx.x + EM_NORM_CACHE * T; i < nv; i += T) { /* rows longer than the cache */
        em_vec<V> v = em_vec<V>::ld(xr + (size_t)i * V);
        if (dr) {
            em_vec<V> dv = em_vec<V>::ld(dr + (size_t)i * V);
#pragma unroll
            for (int e = 0; e < V; e++) v[e] += dv[e];
            v.st(xr + (size_t)i * V);
        }
#pragma unroll
        for (int e = 0; e < V; e++) ss += v[e] * v[e];
    }
    ss = em_norm_block_sum(ss, red);
    const float rstd = 1.0f / sqrtf(ss / (float)d + eps); /* the twin's expression */

    /* pass 2: y = w * (x * rstd), HF's order */
#pragma unroll
    for (int u = 0; u < EM_NORM_CACHE; u++) {
        const uint32_t i = threadIdx.x + u * T;
        if (i < nv) {
#pragma unroll
            for (int e = 0; e < V; e++) wc[u][e] = wc[u][e] * (c[u][e] * rstd);
            wc[u].st(yr + (size_t)i * V);
        }
    }
    for (uint32_t i = threadIdx.x + EM_NORM_CACHE * T; i < nv; i += T) {
        em_vec<V> v = em_vec<V>::ld(xr + (size_t)i * V); /* this thread's own write of pass 1 */
        em_vec<V> wv = em_vec<V>::ld(w + (size_t)i * V);
#pragma unroll
        for (int e = 0; e < V; e++) wv[e] = wv[e] * (v[e] * rstd);
        wv.st(yr + (size_t)i * V);
    }
}

// ---- gated group RMSNorm ---------------------------------------------------------------------------------

/* Block per (token, group): grid n_tok * (d / gs). V = 4: y, z, out, w 16-byte aligned, gs and the three
 * strides multiples of 4. out may be y (same stride): every element is read and written by one thread, the
 * read first. */
template <int V>
__global__ void __launch_bounds__(EM_NORM_MAX_THREADS)
em_gated_norm_kernel(const float *y,                /* [n_tok, d], row stride ys */
                     const float *__restrict__ z,   /* [n_tok, d], row stride zs */
                     const float *__restrict__ w,   /* [d] */
                     float *out,                    /* [n_tok, d], row stride os */
                     uint32_t d, uint32_t gs, uint32_t ys, uint32_t zs, uint32_t os, float eps) {
    __shared__ float red[32];
    const uint32_t n_groups = d / gs;
    const uint32_t t = blockIdx.x / n_groups, g0 = (blockIdx.x % n_groups) * gs; /* first channel of the group */
    const float *yr = y + (size_t)t * ys + g0;
    const float *zr = z + (size_t)t * zs + g0;
    const float *wr = w + g0;
    float *orow = out + (size_t)t * os + g0;
    const uint32_t nv = gs / V, T = blockDim.x;

    /* pass 1: g = y * silu(z) and its sum of squares; as in rmsnorm, every load (y, z, w) of the cached
     * vectors first, then the arithmetic */
    em_vec<V> c[EM_NORM_CACHE], zc[EM_NORM_CACHE], wc[EM_NORM_CACHE];
#pragma unroll
    for (int u = 0; u < EM_NORM_CACHE; u++) {
        const uint32_t i = threadIdx.x + u * T;
        if (i < nv) {
            c[u] = em_vec<V>::ld(yr + (size_t)i * V);
            zc[u] = em_vec<V>::ld(zr + (size_t)i * V);
            wc[u] = em_vec<V>::ld(wr + (size_t)i * V);
        }
    }
    float ss = 0.0f;
#pragma unroll
    for (int u = 0; u < EM_NORM_CACHE; u++) {
        const uint32_t i = threadIdx.x + u * T;
        if (i < nv) {
#pragma unroll
            for (int e = 0; e < V; e++) {
                c[u][e] = c[u][e] * em_norm_silu(zc[u][e]);
                ss += c[u][e] * c[u][e];
            }
        }
    }
    for (uint32_t i = threadIdx.x + EM_NORM_CACHE * T; i < nv; i += T) {
        em_vec<V> v = em_vec<V>::ld(yr + (size_t)i * V), zv = em_vec<V>::ld(zr + (size_t)i * V);
#pragma unroll
        for (int e = 0; e < V; e++) {
            const float gv = v[e] * em_norm_silu(zv[e]);
            ss += gv * gv;
        }
    }
    ss = em_norm_block_sum(ss, red);
    const float rstd = 1.0f / sqrtf(ss / (float)gs + eps);

#pragma unroll
    for (int u = 0; u < EM_NORM_CACHE; u++) {
        const uint32_t i = threadIdx.x + u * T;
        if (i < nv) {
#pragma unroll
            for (int e = 0; e < V; e++) wc[u][e] = wc[u][e] * (c[u][e] * rstd);
            wc[u].st(orow + (size_t)i * V);
        }
    }
    for (uint32_t i = threadIdx.x + EM_NORM_CACHE * T; i < nv; i += T) {
        /* recomputed from y and z: with out == y, element i is still y[i] until this thread writes it */
        em_vec<V> v = em_vec<V>::ld(yr + (size_t)i * V), zv = em_vec<V>::ld(zr + (size_t)i * V);
        em_vec<V> wv = em_vec<V>::ld(wr + (size_t)i * V);
#pragma unroll
        for (int e = 0; e < V; e++) wv[e] = wv[e] * ((v[e] * em_norm_silu(zv[e])) * rstd);
        wv.st(orow + (size_t)i * V);
    }
}

// ---- launchers -----------------------------------------------------------------------------------------

static int em_norm_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* Threads for a row of nv vectors: EM_NORM_CACHE vectors each, whole warps, at most EM_NORM_MAX_THREADS. */
static unsigned em_norm_threads(uint32_t nv) {
    uint32_t t = (nv + EM_NORM_CACHE - 1) / EM_NORM_CACHE;
    t = (t + 31) / 32 * 32;
    return t < 32 ? 32 : t > EM_NORM_MAX_THREADS ? EM_NORM_MAX_THREADS : t;
}

static em_status em_norm_launched(const char *op, const char *kernel, uint32_t n_tok, uint32_t d) {
    const cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return EM_OK;
    return em_fail(EM_ERR_DEVICE, "%s: launch of %s (n_tok %u, d %u) failed: %s: %s", op, kernel, n_tok, d,
                   cudaGetErrorName(e), cudaGetErrorString(e));
}

extern "C" int em_cuda_rmsnorm_supported(const em_rmsnorm_args *a) {
    if (!a || !a->x || !a->w || !a->y) return 0;
    if (a->n_tok > 0x7fffffffu) return 0; /* grid.x */
    return 1;
}

extern "C" em_status em_cuda_rmsnorm(const em_rmsnorm_args *a, void *stream) {
    if (!a) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_rmsnorm: args is NULL");
    if (!em_cuda_rmsnorm_supported(a))
        return em_fail(EM_ERR_INVALID_ARG, "em_cuda_rmsnorm: unsupported arguments (n_tok %u, d %u, pointers %s)",
                       a->n_tok, a->d, a->x && a->w && a->y ? "set" : "NULL");
    if (a->n_tok == 0 || a->d == 0) return EM_OK;
    cudaStream_t s = (cudaStream_t)stream;
    const int vec = a->d % 4 == 0 && em_norm_aligned16(a->x) && em_norm_aligned16(a->w) && em_norm_aligned16(a->y) &&
                    (!a->delta || em_norm_aligned16(a->delta));
    if (vec) {
        em_rmsnorm_kernel<4><<<a->n_tok, em_norm_threads(a->d / 4), 0, s>>>(a->x, a->delta, a->w, a->y, a->d, a->eps);
        return em_norm_launched("em_cuda_rmsnorm", "em_rmsnorm_kernel<4>", a->n_tok, a->d);
    }
    em_rmsnorm_kernel<1><<<a->n_tok, em_norm_threads(a->d), 0, s>>>(a->x, a->delta, a->w, a->y, a->d, a->eps);
    return em_norm_launched("em_cuda_rmsnorm", "em_rmsnorm_kernel<1>", a->n_tok, a->d);
}

extern "C" int em_cuda_gated_norm_supported(const em_gated_norm_args *a) {
    if (!a || !a->y || !a->z || !a->w || !a->out) return 0;
    if (a->group == 0 || a->d % a->group != 0) return 0;
    if (a->y_stride && a->y_stride < a->d) return 0;
    if (a->z_stride && a->z_stride < a->d) return 0;
    if (a->out_stride && a->out_stride < a->d) return 0;
    if ((uint64_t)a->n_tok * (a->d / a->group) > 0x7fffffffu) return 0; /* grid.x */
    return 1;
}

extern "C" em_status em_cuda_gated_norm(const em_gated_norm_args *a, void *stream) {
    if (!a) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_gated_norm: args is NULL");
    if (!em_cuda_gated_norm_supported(a))
        return em_fail(EM_ERR_INVALID_ARG,
                       "em_cuda_gated_norm: unsupported arguments (n_tok %u, d %u, group %u, strides y %u z %u out %u, "
                       "pointers %s)", a->n_tok, a->d, a->group, a->y_stride, a->z_stride, a->out_stride,
                       a->y && a->z && a->w && a->out ? "set" : "NULL");
    if (a->n_tok == 0 || a->d == 0) return EM_OK;
    const uint32_t ys = a->y_stride ? a->y_stride : a->d, zs = a->z_stride ? a->z_stride : a->d,
                   os = a->out_stride ? a->out_stride : a->d;
    const unsigned blocks = a->n_tok * (a->d / a->group);
    cudaStream_t s = (cudaStream_t)stream;
    const int vec = a->group % 4 == 0 && ys % 4 == 0 && zs % 4 == 0 && os % 4 == 0 && em_norm_aligned16(a->y) &&
                    em_norm_aligned16(a->z) && em_norm_aligned16(a->w) && em_norm_aligned16(a->out);
    if (vec) {
        em_gated_norm_kernel<4><<<blocks, em_norm_threads(a->group / 4), 0, s>>>(a->y, a->z, a->w, a->out, a->d,
                                                                                  a->group, ys, zs, os, a->eps);
        return em_norm_launched("em_cuda_gated_norm", "em_gated_norm_kernel<4>", a->n_tok, a->d);
    }
    em_gated_norm_kernel<1><<<blocks, em_norm_threads(a->group), 0, s>>>(a->y, a->z, a->w, a->out, a->d, a->group, ys,
                                                                          zs, os, a->eps);
    return em_norm_launched("em_cuda_gated_norm", "em_gated_norm_kernel<1>", a->n_tok, a->d);
}
