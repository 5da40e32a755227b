/*
 * linear.cu — y[n_tok, n_out] = x[n_tok, n_in] W^T on the GPU: the GEMV that decode spends most of its
 * time in (in_proj, out_proj, the MLP and the LM head). Twin: em_ref_linear (kernels/ref/linear_ref.c),
 * test and benchmark: tests/test_linear_cuda.c (`test_linear_cuda --perf` prints GB/s and % of the
 * measured read bandwidth).
 *
 * Why this shape: at batch 1 a token costs at least (weight bytes) / (memory bandwidth) (DESIGN.md
 * principle 5). For in_proj of Mamba-2 8B, 18560 x 4096 bf16 = 152 MB, that is ~50 us at 3 TB/s, while the
 * arithmetic is 76 MFLOP, nothing. So the kernel is judged only by how close it streams W to the
 * bandwidth roofline; x (16 KB) and y are noise.
 *
 * Version history (each line: what changed, and why):
 *   v1 BF16 GEMV for a group of NT <= 8 tokens (NT a template parameter, so the accumulators
 *      acc[NT][RPW] stay in registers). A block is 4 warps; each warp owns RPW consecutive rows. Each lane
 *      loads 16 bytes (uint4 = 8 bf16) of each of its rows per step, U steps ahead (RPW * U = 8 independent
 *      16-byte loads in flight per lane), coalesced: a warp reads 512 contiguous bytes of a row.
 *      W is loaded with ld.global.nc.L1::no_allocate (read once: never let it evict x from L1). x is read
 *      as float4 through L1 (__ldg) and reused in registers across the warp's RPW rows; it is not staged in
 *      shared memory: NT * n_in * 4 bytes (128 KB at NT = 8, n_in = 4096) would cap occupancy, and x is
 *      L1/L2-resident anyway (llama.cpp's mul_mat_vec makes the same choice). fp32 FMA accumulation, one
 *      xor-shuffle butterfly per (token, row) at the end. n_tok > 8 is a host loop over groups of 8 (W is
 *      re-read per group: prefill belongs to a tensor-core GEMM, not to this kernel).
 *      Fallback em_linear_generic<T>: warp per row, scalar coalesced loads, any alignment and any n_in,
 *      for F32 weights and for bf16 that breaks the vector path's conditions (W or x not 16-byte aligned,
 *      x_stride % 4 != 0, or n_in % 8 != 0: then the rows themselves start at 2-byte offsets, so a per-row
 *      "vector body + scalar tail" is not possible; the packer pads n_in to a multiple of 8 for this).
 *      H100, median of 50: in_proj 81% of the measured read bandwidth, out_proj 64%, head 96%.
 *   v1.1 (this file) RPW 4 -> 2 for NT <= 2 (EM_LIN_RPW_SMALL): twice the blocks (out_proj 256 -> 512 on 132 SMs), so
 *      more loads in flight and a finer last wave. in_proj 81 -> 90%, out_proj 64 -> 77%, head 96 -> 98%
 *      (RPW 1: 88%, 77%, 97%). The rest is 4-7 us per call whatever the size: a fixed cost (launch,
 *      ramp, last wave), not the stream rate; whether CUDA graphs hide it is not measured yet.
 *   v2 (planned, decided by --perf): NT 3..8 (70% at NT 5): stage x in shared memory to take the x
 *      re-reads off L1; split-K for short-and-wide shapes like out_proj (4096 rows).
 *
 * Build: part of the library with -DEM_CUDA=ON. Standalone, with the resource report (registers, spills):
 *   nvcc -O3 -std=c++17 -arch=sm_90 -Xptxas -v -Iinclude -Ikernels -Iruntime -Iplatform \
 *        -c kernels/linear.cu -o /tmp/linear.o
 * Resource report for sm_90 (nvcc 13.0): docs/gpu.md.
 */
#ifndef EM_HAVE_CUDA
#define EM_HAVE_CUDA 1 /* a .cu file is a CUDA build by definition (the standalone command defines nothing) */
#endif

/* C headers first: util.h is included inside extern "C" below, and their own guards then keep the C++
 * standard library's overloads out of that block. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cuda_runtime.h>

#include <type_traits>

#include "cuda_ops.h"
extern "C" {
#include "util.h" /* em_fail; a C header without its own extern "C" */
}

// ---- launch geometry ---------------------------------------------------------------------------------

#define EM_LIN_WARPS 4                      /* warps per block: small blocks = a fine-grained last wave */
#define EM_LIN_THREADS (EM_LIN_WARPS * 32)
#define EM_LIN_MAX_NT 8                     /* tokens per launch of the vector kernel */

/* Rows per warp and 16-byte loads per row ahead, per token-group size: RPW * U = 8 loads in flight per
 * lane. EM_LIN_RPW_SMALL (rows per warp for NT <= 2: 1, 2 or 4) is a tuning knob, 2 by measurement (v1.1;
 * docs/gpu.md). NT > 2 stays at 2 rows so that acc[NT][RPW] + the loaded W fit in ~80 registers. */
#ifndef EM_LIN_RPW_SMALL
#define EM_LIN_RPW_SMALL 2
#endif
template <int NT> struct em_lin_cfg {
    static constexpr int RPW = NT <= 2 ? EM_LIN_RPW_SMALL : 2;
    static constexpr int U = 8 / RPW;
};

// ---- device helpers ----------------------------------------------------------------------------------

/* 16 bytes of W, read once: the non-coherent path without L1 allocation, so W streams past L1 and x
 * (re-read by every warp) stays there. */
static __device__ __forceinline__ uint4 em_ld_stream(const uint4 *p) {
    uint4 v;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p));
    return v;
}

/* bf16 is the top half of an f32: element 2i is the low half of word i (little-endian), 2i+1 the high. */
static __device__ __forceinline__ float em_bf16_lo(uint32_t u) { return __uint_as_float(u << 16); }
static __device__ __forceinline__ float em_bf16_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }

/* acc + dot(8 bf16 of w, x[0..8) given as two float4). */
static __device__ __forceinline__ float em_dot8(float acc, uint4 w, float4 a, float4 b) {
    acc = fmaf(em_bf16_lo(w.x), a.x, acc);
    acc = fmaf(em_bf16_hi(w.x), a.y, acc);
    acc = fmaf(em_bf16_lo(w.y), a.z, acc);
    acc = fmaf(em_bf16_hi(w.y), a.w, acc);
    acc = fmaf(em_bf16_lo(w.z), b.x, acc);
    acc = fmaf(em_bf16_hi(w.z), b.y, acc);
    acc = fmaf(em_bf16_lo(w.w), b.z, acc);
    acc = fmaf(em_bf16_hi(w.w), b.w, acc);
    return acc;
}

/* Sum over the warp, left in every lane. */
static __device__ __forceinline__ float em_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float em_w_to_f32(float w) { return w; }
static __device__ __forceinline__ float em_w_to_f32(uint16_t w) { return __uint_as_float((uint32_t)w << 16); }

// ---- v1: bf16 vector GEMV, NT tokens -----------------------------------------------------------------

/* Preconditions (checked by the launcher): w and x 16-byte aligned, n_in % 8 == 0, x_stride % 4 == 0.
 * Grid: ceil(n_out / (EM_LIN_WARPS * RPW)) blocks of EM_LIN_THREADS. */
template <int NT>
__global__ void __launch_bounds__(EM_LIN_THREADS)
em_linear_bf16_vec(const uint4 *__restrict__ w,   /* [n_out, n_in / 8] (8 bf16 per uint4) */
                   const float *__restrict__ x,   /* [NT, n_in], row stride x_stride */
                   float *__restrict__ y,         /* [NT, n_out], row stride y_stride */
                   uint32_t n_in, uint32_t n_out, uint32_t x_stride, uint32_t y_stride) {
    constexpr int RPW = em_lin_cfg<NT>::RPW, U = em_lin_cfg<NT>::U;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint32_t row0 = (blockIdx.x * EM_LIN_WARPS + warp) * RPW;
    if (row0 >= n_out) return; /* whole warps leave together: no block barrier below */
    const uint32_t nv = n_in / 8;

    /* Rows past n_out (last warp only) re-read the last row, so that the loop has no per-row branch;
     * their results are not stored. */
    const uint4 *wr[RPW];
#pragma unroll
    for (int r = 0; r < RPW; r++) wr[r] = w + (size_t)min(row0 + r, n_out - 1) * nv;

    float acc[NT][RPW];
#pragma unroll
    for (int t = 0; t < NT; t++)
#pragma unroll
        for (int r = 0; r < RPW; r++) acc[t][r] = 0.0f;

    /* Lane `lane` takes vectors lane, lane + 32, ... of each row. Main loop: U of them per row, all
     * RPW * U loads issued before the first is used. */
    uint32_t v = lane;
    for (; v + 32 * (U - 1) < nv; v += 32 * U) {
        uint4 wv[RPW][U];
#pragma unroll
        for (int r = 0; r < RPW; r++)
#pragma unroll
            for (int u = 0; u < U; u++) wv[r][u] = em_ld_stream(wr[r] + v + 32 * u);
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int t = 0; t < NT; t++) {
                const float4 *xp = reinterpret_cast<const float4 *>(x + (size_t)t * x_stride) + 2 * (v + 32 * u);
                const float4 a = __ldg(xp), b = __ldg(xp + 1);
#pragma unroll
                for (int r = 0; r < RPW; r++) acc[t][r] = em_dot8(acc[t][r], wv[r][u], a, b);
            }
    }
    /* Remainder: fewer than 32 * U vectors were left for this warp; one at a time. */
    for (; v < nv; v += 32) {
        uint4 wv[RPW];
#pragma unroll
        for (int r = 0; r < RPW; r++) wv[r] = em_ld_stream(wr[r] + v);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const float4 *xp = reinterpret_cast<const float4 *>(x + (size_t)t * x_stride) + 2 * v;
            const float4 a = __ldg(xp), b = __ldg(xp + 1);
#pragma unroll
            for (int r = 0; r < RPW; r++) acc[t][r] = em_dot8(acc[t][r], wv[r], a, b);
        }
    }

    /* Every lane ends with every sum; lane t * RPW + r stores (t, r), so the NT * RPW <= 32 stores of a
     * warp go out in one instruction. */
#pragma unroll
    for (int t = 0; t < NT; t++)
#pragma unroll
        for (int r = 0; r < RPW; r++) {
            const float s = em_warp_sum(acc[t][r]);
            if (lane == t * RPW + r && row0 + r < n_out) y[(size_t)t * y_stride + row0 + r] = s;
        }
}

// ---- fallback: any dtype layout, any alignment, any n_tok --------------------------------------------

/* Warp per row; lane k reads elements k, k + 32, ... (coalesced, but 2 or 4 bytes a lane). Tokens in
 * groups of 8 held in registers; the row is re-read per group (from L1/L2: a row is <= a few tens of KB).
 * T: float (F32 weights) or uint16_t (bf16 bits). */
template <typename T>
__global__ void __launch_bounds__(EM_LIN_THREADS)
em_linear_generic(const T *__restrict__ w,       /* [n_out, n_in] */
                  const float *__restrict__ x,   /* [n_tok, n_in], row stride x_stride */
                  float *__restrict__ y,         /* [n_tok, n_out], row stride y_stride */
                  uint32_t n_tok, uint32_t n_in, uint32_t n_out, uint32_t x_stride, uint32_t y_stride) {
    const int lane = threadIdx.x & 31;
    const uint32_t row = blockIdx.x * EM_LIN_WARPS + (threadIdx.x >> 5);
    if (row >= n_out) return;
    const T *wr = w + (size_t)row * n_in;

    for (uint32_t t0 = 0; t0 < n_tok; t0 += EM_LIN_MAX_NT) {
        const uint32_t nt = min(n_tok - t0, (uint32_t)EM_LIN_MAX_NT);
        const float *xg = x + (size_t)t0 * x_stride;
        float acc[EM_LIN_MAX_NT];
#pragma unroll
        for (int t = 0; t < EM_LIN_MAX_NT; t++) acc[t] = 0.0f;
#pragma unroll 4
        for (uint32_t k = lane; k < n_in; k += 32) {
            const float wk = em_w_to_f32(__ldg(wr + k));
            /* Compile-time t with a run-time guard: acc stays in registers (a run-time bound on the
             * loop would index acc dynamically and move it to local memory). */
#pragma unroll
            for (int t = 0; t < EM_LIN_MAX_NT; t++)
                if ((uint32_t)t < nt) acc[t] = fmaf(wk, __ldg(xg + (size_t)t * x_stride + k), acc[t]);
        }
#pragma unroll
        for (int t = 0; t < EM_LIN_MAX_NT; t++) {
            const float s = em_warp_sum(acc[t]);
            if ((uint32_t)t < nt && lane == 0) y[(size_t)(t0 + t) * y_stride + row] = s;
        }
    }
}

// ---- launchers -----------------------------------------------------------------------------------------

/* f(std::integral_constant<int, nt>) for nt in 1..EM_LIN_MAX_NT: one switch for all instantiations
 * (STYLE.md lesson 11), none copy-pasted. */
template <int N = 1, typename F> static void em_with_nt(int nt, F &&f) {
    if constexpr (N <= EM_LIN_MAX_NT) {
        if (nt == N) f(std::integral_constant<int, N>{});
        else em_with_nt<N + 1>(nt, f);
    }
}

static int em_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

extern "C" int em_cuda_linear_supported(const em_linear_args *a) {
    if (!a || !a->w || !a->x || !a->y) return 0;
    if (a->w_dtype != EM_DTYPE_BF16 && a->w_dtype != EM_DTYPE_F32) return 0;
    if (a->x_stride != 0 && a->x_stride < a->n_in) return 0;
    if (a->y_stride != 0 && a->y_stride < a->n_out) return 0;
    return 1;
}

static em_status em_linear_launched(const char *kernel, const em_linear_args *a) {
    const cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return EM_OK;
    return em_fail(EM_ERR_DEVICE, "em_cuda_linear: launch of %s (n_tok %u, n_in %u, n_out %u) failed: %s: %s",
                   kernel, a->n_tok, a->n_in, a->n_out, cudaGetErrorName(e), cudaGetErrorString(e));
}

extern "C" em_status em_cuda_linear(const em_linear_args *a, void *stream) {
    if (!a) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_linear: args is NULL");
    if (a->n_tok == 0 || a->n_out == 0) return EM_OK;
    if (!em_cuda_linear_supported(a))
        return em_fail(a->w_dtype == EM_DTYPE_BF16 || a->w_dtype == EM_DTYPE_F32 ? EM_ERR_INVALID_ARG
                                                                                   : EM_ERR_UNSUPPORTED,
                       "em_cuda_linear: unsupported arguments (w_dtype %d, n_in %u, n_out %u, x_stride %u, "
                       "y_stride %u, pointers %s)", (int)a->w_dtype, a->n_in, a->n_out, a->x_stride, a->y_stride,
                       a->w && a->x && a->y ? "set" : "NULL");

    cudaStream_t s = (cudaStream_t)stream;
    const uint32_t xs = a->x_stride ? a->x_stride : a->n_in, ys = a->y_stride ? a->y_stride : a->n_out;

    const int vec = a->w_dtype == EM_DTYPE_BF16 && a->n_in % 8 == 0 && xs % 4 == 0 && em_aligned16(a->w) &&
                    em_aligned16(a->x);
    if (!vec) {
        const unsigned blocks = (a->n_out + EM_LIN_WARPS - 1) / EM_LIN_WARPS;
        if (a->w_dtype == EM_DTYPE_F32) {
            em_linear_generic<float><<<blocks, EM_LIN_THREADS, 0, s>>>(
                (const float *)a->w, a->x, a->y, a->n_tok, a->n_in, a->n_out, xs, ys);
            return em_linear_launched("em_linear_generic<float>", a);
        }
        em_linear_generic<uint16_t><<<blocks, EM_LIN_THREADS, 0, s>>>(
            (const uint16_t *)a->w, a->x, a->y, a->n_tok, a->n_in, a->n_out, xs, ys);
        return em_linear_launched("em_linear_generic<bf16>", a);
    }

    /* Vector path: one launch per group of up to 8 tokens. */
    em_status st = EM_OK;
    for (uint32_t t0 = 0; t0 < a->n_tok && st == EM_OK; t0 += EM_LIN_MAX_NT) {
        const int nt = (int)min(a->n_tok - t0, (uint32_t)EM_LIN_MAX_NT);
        const float *x = a->x + (size_t)t0 * xs;
        float *y = a->y + (size_t)t0 * ys;
        em_with_nt(nt, [&](auto NT) {
            constexpr int rows_per_block = EM_LIN_WARPS * em_lin_cfg<NT>::RPW;
            const unsigned blocks = (a->n_out + rows_per_block - 1) / rows_per_block;
            em_linear_bf16_vec<NT><<<blocks, EM_LIN_THREADS, 0, s>>>((const uint4 *)a->w, x, y, a->n_in, a->n_out,
                                                                     xs, ys);
            st = em_linear_launched("em_linear_bf16_vec", a);
        });
    }
    return st;
}
