/*
 * linear_i8.cu — y[n_tok, n_out] = x[n_tok, n_in] (W_q^T) * scale on the GPU, for INT8 weights stored per
 * output channel (issue 10, quant/quant.h: W[r][k] ~= q[r][k] * scale[r], q in [-127, 127]): the W8A16 GEMV
 * of decode. Twin: em_ref_linear with w_dtype EM_DTYPE_I8 (kernels/ref/linear_ref.c); test and benchmark:
 * tests/test_linear_i8_cuda.c (`--perf` prints GB/s and % of the read bandwidth measured in the same run,
 * `--sweep` checks and times every variant). em_cuda_linear (kernels/linear.cu) dispatches I8 weights here.
 *
 * Why: decode is bound by reading the weights (DESIGN.md principle 5); int8 halves the bytes of every matrix,
 * so the GEMV must stream them as close to the read bandwidth as the BF16 GEMV does (linear.cu v2) while doing
 * twice the arithmetic per byte: 16 weights per 16-byte load instead of 8.
 *
 * Version history (each line: what changed, and why):
 *   v1 (this file) The BF16 GEMV v2's design (linear.cu: read its history first), with 16 int8 weights per
 *      16-byte load. A block is NW warps; KS warps share a group of RPW consecutive rows (in-block split-K:
 *      warp k of a group takes the row's 16-byte chunks k*32 + lane, + 32*KS, ...; partial sums meet in
 *      shared memory and are added in a fixed order: deterministic, no scratch). Each lane issues RPW * U
 *      16-byte loads per batch (ld.global.nc.L1::no_allocate: W is read once and must not evict x from L1),
 *      and two batches live in registers (wa, wb), the next one loaded before the current one is used, so up
 *      to 2 * RPW * U loads are in flight per lane. x is read as float4 through L1 (__ldg), 4 float4 per
 *      chunk and token, reused across the warp's RPW rows (at RPW 2 the L1 traffic for x is 2x the W bytes:
 *      well under the L1 bandwidth). fp32 FMA accumulation; the row's scale is applied once, to the finished
 *      sum (y = (x . q_row) * scale[row]: the twin's order of operations), one xor-shuffle butterfly per
 *      (token, row).
 *      Dequantization in registers without I2F: I2F (int -> float) runs at a quarter of the FMA rate or less,
 *      and at the read roofline an H100 SM must retire ~15 weights a clock. Instead each 32-bit word is biased
 *      once (w ^ 0x80808080: byte k becomes q_k + 128, in [1, 255]), each byte is moved by PRMT into the
 *      mantissa of 2^23 (0x4B0000uu as a float is exactly 8388608 + u), and one FADD of -(2^23 + 128) gives
 *      q_k exactly: PRMT + FADD + FFMA per weight, all full-rate ALU/FMA instructions.
 *      Variants (em_i8_pick): NT 1: RPW 2, U 4, KS 1 when the grid fits in one wave of resident blocks, or the
 *      row is short (out_proj: every warp streams 2 whole rows); else RPW 2, U 2, KS 2 (4 rows = 16 KB a block
 *      at n_in 4096: small blocks let the block scheduler balance the last wave, as KS 4 did for bf16's 8 KB
 *      rows; in_proj, head). NT 2: RPW 2, U 2, KS 2. NT 3..8: RPW 4, U 2, KS 1 (KS 2 when the KS 1 grid fits
 *      in one wave). Programmatic dependent launch with EM_LINEAR_W_CONST as linear.cu v2 (W's first batch
 *      before the grid-dependency wait, x after it).
 *      Not measured on a GPU yet (written on a machine without one): the resource report for sm_90 is in
 *      docs/int8.md; `test_linear_i8_cuda --perf` / `--sweep` give the figures this line must record.
 *      Fallback em_linear_i8_generic: warp per row, byte loads, any n_in and alignment (n_in % 16 != 0, W or
 *      x not 16-byte aligned, x_stride % 4 != 0).
 *
 * Build: part of the library with -DEM_CUDA=ON. Standalone, with the resource report (registers, spills):
 *   nvcc -O3 -std=c++17 -arch=sm_90 -Xptxas -v -Iinclude -Ikernels -Iruntime -Iplatform \
 *        -c kernels/linear_i8.cu -o /tmp/linear_i8.o
 * Tuning build (every variant in em_i8_variants, for test_linear_i8_cuda --sweep): add -DEM_LIN_I8_SWEEP.
 */
#ifndef EM_HAVE_CUDA
#define EM_HAVE_CUDA 1 /* a .cu file is a CUDA build by definition (the standalone command defines nothing) */
#endif

/* C headers first: util.h is included inside extern "C" below. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cuda_runtime.h>

#include <atomic>

#include "cuda_ops.h"
extern "C" {
#include "util.h" /* em_fail; a C header without its own extern "C" */
}

// ---- launch geometry ---------------------------------------------------------------------------------

#define EM_I8_MAX_NT 8       /* tokens per launch of the vector kernel */
#define EM_I8_GEN_WARPS 4    /* the fallback's warps per block */
#define EM_I8_MAX_DEVICES 64
#define EM_I8_PER_VEC 16u    /* int8 weights per 16-byte load */

// ---- device helpers ----------------------------------------------------------------------------------

/* 16 bytes of W, read once (see linear.cu v2: volatile keeps the batch's loads together and the first batch
 * above the grid-dependency wait). */
static __device__ __forceinline__ uint4 em_i8_ld_stream(const uint4 *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

/* Programmatic dependent launch (sm_90+), as in linear.cu: wait before reading x, trigger at entry. */
static __device__ __forceinline__ void em_i8_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
static __device__ __forceinline__ void em_i8_pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

/* Byte K of a biased word (byte = q + 128) as the float q, exactly: PRMT puts the byte in the low mantissa
 * bits of 2^23 (selector nibbles: byte K of b, then bytes 1..3 of 0x4B000000), FADD removes 2^23 + 128. */
template <int K>
static __device__ __forceinline__ float em_i8_byte(uint32_t biased) {
    return __uint_as_float(__byte_perm(biased, 0x4B000000u, 0x7650u | K)) - 8388736.0f;
}

/* acc + dot(4 int8 of word u, x[0..4) as a float4) */
static __device__ __forceinline__ float em_i8_dot4(float acc, uint32_t u, float4 a) {
    const uint32_t b = u ^ 0x80808080u;
    acc = fmaf(em_i8_byte<0>(b), a.x, acc);
    acc = fmaf(em_i8_byte<1>(b), a.y, acc);
    acc = fmaf(em_i8_byte<2>(b), a.z, acc);
    acc = fmaf(em_i8_byte<3>(b), a.w, acc);
    return acc;
}

/* acc + dot(16 int8 of w, x[0..16) given as four float4), in element order */
static __device__ __forceinline__ float em_i8_dot16(float acc, uint4 w, float4 a, float4 b, float4 c, float4 d) {
    acc = em_i8_dot4(acc, w.x, a);
    acc = em_i8_dot4(acc, w.y, b);
    acc = em_i8_dot4(acc, w.z, c);
    acc = em_i8_dot4(acc, w.w, d);
    return acc;
}

/* Sum over the warp, left in every lane. */
static __device__ __forceinline__ float em_i8_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* One batch: RPW rows x U 16-byte chunks, chunk u of row r at wr[r] + v + VS * u. */
template <int RPW, int U, uint32_t VS>
static __device__ __forceinline__ void em_i8_load(uint4 (&dst)[RPW][U], const uint4 *const (&wr)[RPW], uint32_t v) {
#pragma unroll
    for (int r = 0; r < RPW; r++)
#pragma unroll
        for (int u = 0; u < U; u++) dst[r][u] = em_i8_ld_stream(wr[r] + v + VS * u);
}

/* acc[t][r] += the batch's chunks . x[t] (x: 4 float4 per chunk through L1, reused across the RPW rows). */
template <int NT, int RPW, int U, uint32_t VS>
static __device__ __forceinline__ void em_i8_fma(float (&acc)[NT][RPW], const uint4 (&wv)[RPW][U],
                                                 const float *__restrict__ x, uint32_t x_stride, uint32_t v) {
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const float4 *xp = reinterpret_cast<const float4 *>(x + (size_t)t * x_stride) + 4 * (v + VS * u);
            const float4 a = __ldg(xp), b = __ldg(xp + 1), c = __ldg(xp + 2), d = __ldg(xp + 3);
#pragma unroll
            for (int r = 0; r < RPW; r++) acc[t][r] = em_i8_dot16(acc[t][r], wv[r][u], a, b, c, d);
        }
}

// ---- v1: int8 vector GEMV, NT tokens -----------------------------------------------------------------

/* Preconditions (checked by the launcher): w and x 16-byte aligned, n_in % 16 == 0, x_stride % 4 == 0.
 * Grid: ceil(n_out / (NW / KS * RPW)) blocks of NW * 32 threads. */
template <int NT, int RPW, int U, int KS, int NW>
__global__ void __launch_bounds__(NW * 32)
em_linear_i8_vec(const uint4 *__restrict__ w,      /* [n_out, n_in / 16] (16 int8 per uint4) */
                 const float *__restrict__ scale,  /* [n_out] */
                 const float *__restrict__ x,      /* [NT, n_in], row stride x_stride */
                 float *__restrict__ y,            /* [NT, n_out], row stride y_stride */
                 uint32_t n_in, uint32_t n_out, uint32_t x_stride, uint32_t y_stride) {
    static_assert(NW % KS == 0 && NT * RPW <= 32, "a group's KS warps in one block; one store lane per sum");
    constexpr int GROUPS = NW / KS;   /* row groups per block */
    constexpr uint32_t VS = 32u * KS; /* a lane's stride (in 16-byte vectors) between its chunks of a row */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int ks = warp % KS, g = warp / KS;
    const uint32_t row0 = (blockIdx.x * GROUPS + g) * RPW;
    /* A group past n_out (last block only) loads nothing but still meets the block barrier and the wait. */
    const uint32_t nv = row0 < n_out ? n_in / EM_I8_PER_VEC : 0;

    em_i8_pdl_trigger();

    /* Rows past n_out (last group only) re-read the last row: no per-row branch in the loop; not stored. */
    const uint4 *wr[RPW];
#pragma unroll
    for (int r = 0; r < RPW; r++) wr[r] = w + (size_t)min(row0 + r, n_out - 1) * (n_in / EM_I8_PER_VEC);
    const uint4 *const(&wrc)[RPW] = wr;

    float acc[NT][RPW];
#pragma unroll
    for (int t = 0; t < NT; t++)
#pragma unroll
        for (int r = 0; r < RPW; r++) acc[t][r] = 0.0f;

    /* Two batches in registers, each next batch issued (behind its own branch) before the current one is
     * used: linear.cu v2 explains why one buffer leaves only half a batch in flight. */
    uint32_t v = (uint32_t)ks * 32u + lane;
    uint4 wa[RPW][U], wb[RPW][U];
    bool full = v + VS * (U - 1) < nv;
    if (full) em_i8_load<RPW, U, VS>(wa, wrc, v);
    em_i8_pdl_wait();
    while (full) {
        uint32_t vn = v + VS * U;
        bool next = vn + VS * (U - 1) < nv;
        if (next) em_i8_load<RPW, U, VS>(wb, wrc, vn);
        em_i8_fma<NT, RPW, U, VS>(acc, wa, x, x_stride, v);
        v = vn;
        if (!next) break;
        vn = v + VS * U;
        next = vn + VS * (U - 1) < nv;
        if (next) em_i8_load<RPW, U, VS>(wa, wrc, vn);
        em_i8_fma<NT, RPW, U, VS>(acc, wb, x, x_stride, v);
        v = vn;
        full = next;
    }
    /* Remainder: fewer than U chunks left for this lane; one at a time. */
    for (; v < nv; v += VS) {
        uint4 w1[RPW];
#pragma unroll
        for (int r = 0; r < RPW; r++) w1[r] = em_i8_ld_stream(wr[r] + v);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const float4 *xp = reinterpret_cast<const float4 *>(x + (size_t)t * x_stride) + 4 * v;
            const float4 a = __ldg(xp), b = __ldg(xp + 1), c = __ldg(xp + 2), d = __ldg(xp + 3);
#pragma unroll
            for (int r = 0; r < RPW; r++) acc[t][r] = em_i8_dot16(acc[t][r], w1[r], a, b, c, d);
        }
    }

    /* Lane t * RPW + r owns (t, r): the NT * RPW <= 32 stores of a warp go out in one instruction; the scale
     * multiplies the finished sum, once. */
    if constexpr (KS == 1) {
#pragma unroll
        for (int t = 0; t < NT; t++)
#pragma unroll
            for (int r = 0; r < RPW; r++) {
                const float s = em_i8_warp_sum(acc[t][r]);
                if (lane == t * RPW + r && row0 + r < n_out)
                    y[(size_t)t * y_stride + row0 + r] = s * __ldg(scale + row0 + r);
            }
    } else {
        __shared__ float part[KS][GROUPS][NT * RPW];
#pragma unroll
        for (int t = 0; t < NT; t++)
#pragma unroll
            for (int r = 0; r < RPW; r++) {
                const float s = em_i8_warp_sum(acc[t][r]);
                if (lane == t * RPW + r) part[ks][g][t * RPW + r] = s;
            }
        __syncthreads();
        if (ks == 0 && lane < NT * RPW) {
            float s = part[0][g][lane];
#pragma unroll
            for (int k = 1; k < KS; k++) s += part[k][g][lane]; /* fixed order: deterministic */
            const uint32_t t = (uint32_t)lane / RPW, r = (uint32_t)lane % RPW;
            if (row0 + r < n_out) y[(size_t)t * y_stride + row0 + r] = s * __ldg(scale + row0 + r);
        }
    }
}

// ---- fallback: any n_in, any alignment, any n_tok ------------------------------------------------------

/* Warp per row; lane k reads bytes k, k + 32, ... (coalesced, 1 byte a lane). Tokens in groups of 8 in
 * registers; the row is re-read per group (from L1/L2). Launched without PDL. */
__global__ void __launch_bounds__(EM_I8_GEN_WARPS * 32)
em_linear_i8_generic(const int8_t *__restrict__ w,   /* [n_out, n_in] */
                     const float *__restrict__ scale, /* [n_out] */
                     const float *__restrict__ x,     /* [n_tok, n_in], row stride x_stride */
                     float *__restrict__ y,           /* [n_tok, n_out], row stride y_stride */
                     uint32_t n_tok, uint32_t n_in, uint32_t n_out, uint32_t x_stride, uint32_t y_stride) {
    const int lane = threadIdx.x & 31;
    const uint32_t row = blockIdx.x * EM_I8_GEN_WARPS + (threadIdx.x >> 5);
    if (row >= n_out) return;
    const int8_t *wr = w + (size_t)row * n_in;
    const float sc = __ldg(scale + row);
    for (uint32_t t0 = 0; t0 < n_tok; t0 += EM_I8_MAX_NT) {
        const uint32_t nt = min(n_tok - t0, (uint32_t)EM_I8_MAX_NT);
        const float *xg = x + (size_t)t0 * x_stride;
        float acc[EM_I8_MAX_NT];
#pragma unroll
        for (int t = 0; t < EM_I8_MAX_NT; t++) acc[t] = 0.0f;
#pragma unroll 4
        for (uint32_t k = lane; k < n_in; k += 32) {
            const float wk = (float)__ldg(wr + k);
            /* compile-time t with a run-time guard: acc stays in registers */
#pragma unroll
            for (int t = 0; t < EM_I8_MAX_NT; t++)
                if ((uint32_t)t < nt) acc[t] = fmaf(wk, __ldg(xg + (size_t)t * x_stride + k), acc[t]);
        }
#pragma unroll
        for (int t = 0; t < EM_I8_MAX_NT; t++) {
            const float s = em_i8_warp_sum(acc[t]);
            if ((uint32_t)t < nt && lane == 0) y[(size_t)(t0 + t) * y_stride + row] = s * sc;
        }
    }
}

// ---- the variant table ---------------------------------------------------------------------------------

typedef void (*em_i8_kernel)(const uint4 *, const float *, const float *, float *, uint32_t, uint32_t, uint32_t,
                             uint32_t);

typedef struct em_i8_variant {
    int nt, rpw, u, ks, nw;
    em_i8_kernel k;
    const char *name;
} em_i8_variant;

#define EM_I8_V(NT, RPW, U, KS, NW)                                                                           \
    { NT, RPW, U, KS, NW, em_linear_i8_vec<NT, RPW, U, KS, NW>, "i8 nt" #NT " rpw" #RPW " u" #U " ks" #KS " w" #NW }

/* The defaults first (em_i8_pick: indices fixed below); the rest only in tuning builds (-DEM_LIN_I8_SWEEP). */
enum { EM_I8_V1_ONE_WAVE = 0, EM_I8_V1_WAVES = 1, EM_I8_V2 = 2, EM_I8_V3_WAVES = 3, EM_I8_V3_ONE_WAVE = 9 };
static const em_i8_variant em_i8_variants[] = {
    EM_I8_V(1, 2, 4, 1, 4), /* 0: NT 1, one wave or short rows (out_proj) */
    EM_I8_V(1, 2, 2, 2, 4), /* 1: NT 1, several waves: 4 rows (16 KB at n_in 4096) a block (in_proj, head) */
    EM_I8_V(2, 2, 2, 2, 4), /* 2: NT 2 */
    EM_I8_V(3, 4, 2, 1, 4), /* 3..8: NT 3..8, several waves */
    EM_I8_V(4, 4, 2, 1, 4),
    EM_I8_V(5, 4, 2, 1, 4),
    EM_I8_V(6, 4, 2, 1, 4),
    EM_I8_V(7, 4, 2, 1, 4),
    EM_I8_V(8, 4, 2, 1, 4),
    EM_I8_V(3, 4, 2, 2, 4), /* 9..14: NT 3..8, the KS 1 grid fits in one wave: twice the warps */
    EM_I8_V(4, 4, 2, 2, 4),
    EM_I8_V(5, 4, 2, 2, 4),
    EM_I8_V(6, 4, 2, 2, 4),
    EM_I8_V(7, 4, 2, 2, 4),
    EM_I8_V(8, 4, 2, 2, 4),
#ifdef EM_LIN_I8_SWEEP
    EM_I8_V(1, 1, 4, 2, 4),
    EM_I8_V(1, 2, 4, 2, 4),
    EM_I8_V(1, 1, 4, 4, 4),
    EM_I8_V(1, 2, 2, 4, 4),
    EM_I8_V(1, 4, 2, 1, 4),
    EM_I8_V(1, 2, 8, 1, 4),
    EM_I8_V(1, 2, 4, 1, 8),
    EM_I8_V(2, 2, 4, 1, 4),
    EM_I8_V(8, 2, 2, 1, 4),
#endif
};
#define EM_I8_N_VARIANTS ((int)(sizeof em_i8_variants / sizeof em_i8_variants[0]))

/* Per device: SM count and each variant's resident blocks per SM, worked out once (host queries only, safe
 * inside a stream capture), as linear.cu's em_lin_dev_info. */
typedef struct em_i8_dev {
    std::atomic<int> ready;
    std::atomic<int> sms, cc_major;
    std::atomic<int> bps[EM_I8_N_VARIANTS];
} em_i8_dev;
static em_i8_dev em_i8_devs[EM_I8_MAX_DEVICES];

static const em_i8_dev *em_i8_dev_info(void) {
    static em_i8_dev none; /* all zero: unknown device */
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= EM_I8_MAX_DEVICES) {
        cudaGetLastError();
        return &none;
    }
    em_i8_dev *d = &em_i8_devs[dev];
    if (d->ready.load(std::memory_order_acquire)) return d;
    int sms = 0, major = 0, regs = 0, threads = 0, blocks = 0;
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&regs, cudaDevAttrMaxRegistersPerMultiprocessor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&threads, cudaDevAttrMaxThreadsPerMultiProcessor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&blocks, cudaDevAttrMaxBlocksPerMultiprocessor, dev) != cudaSuccess) {
        cudaGetLastError();
        return &none;
    }
    for (int i = 0; i < EM_I8_N_VARIANTS; i++) {
        const em_i8_variant *V = &em_i8_variants[i];
        cudaFuncAttributes fa;
        int b = 0;
        if (cudaFuncGetAttributes(&fa, (const void *)V->k) == cudaSuccess) {
            const int per_warp = (fa.numRegs + 7) / 8 * 8 * 32; /* registers are allocated per warp, 256 at a time */
            b = blocks;
            if (per_warp > 0 && regs / (V->nw * per_warp) < b) b = regs / (V->nw * per_warp);
            if (threads / (V->nw * 32) < b) b = threads / (V->nw * 32);
        } else {
            cudaGetLastError();
        }
        d->bps[i].store(b, std::memory_order_relaxed);
    }
    d->sms.store(sms, std::memory_order_relaxed);
    d->cc_major.store(major, std::memory_order_relaxed);
    d->ready.store(1, std::memory_order_release);
    return d;
}

static uint32_t em_i8_blocks(int vi, uint32_t n_out) {
    const em_i8_variant *V = &em_i8_variants[vi];
    const uint32_t rows_per_block = (uint32_t)(V->nw / V->ks * V->rpw);
    return (n_out + rows_per_block - 1) / rows_per_block;
}

static int em_i8_one_wave(const em_i8_dev *d, int vi, uint32_t n_out) {
    const long slots = (long)d->sms.load(std::memory_order_relaxed) * d->bps[vi].load(std::memory_order_relaxed);
    return slots > 0 && (long)em_i8_blocks(vi, n_out) <= slots;
}

/* The variant for a group of nt tokens (see the history: v1). A KS 2 / U 2 warp needs 32 * 2 * 2 * 2 chunks a
 * row (n_in >= 4096) for two batches; shorter rows take the whole-row variant. */
static int em_i8_pick(int nt, uint32_t n_out, uint32_t n_in) {
    const em_i8_dev *d = em_i8_dev_info();
    const uint32_t nv = n_in / EM_I8_PER_VEC;
    if (nt == 1)
        return em_i8_one_wave(d, EM_I8_V1_ONE_WAVE, n_out) || nv < 32u * 2 * 2 * 2 ? EM_I8_V1_ONE_WAVE
                                                                                  : EM_I8_V1_WAVES;
    if (nt == 2) return EM_I8_V2;
    return (em_i8_one_wave(d, EM_I8_V3_WAVES + nt - 3, n_out) && nv >= 32u * 2 * 2 ? EM_I8_V3_ONE_WAVE
                                                                                  : EM_I8_V3_WAVES) +
           nt - 3;
}

// ---- launchers -----------------------------------------------------------------------------------------

static int em_i8_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

extern "C" int em_cuda_linear_i8_supported(const em_linear_args *a) {
    if (!a || !a->w || !a->x || !a->y || !a->w_scale) return 0;
    if (a->w_dtype != EM_DTYPE_I8) return 0;
    if (a->x_stride != 0 && a->x_stride < a->n_in) return 0;
    if (a->y_stride != 0 && a->y_stride < a->n_out) return 0;
    return 1;
}

static em_status em_i8_launched(const char *kernel, const em_linear_args *a, cudaError_t e) {
    if (e == cudaSuccess) e = cudaGetLastError();
    else cudaGetLastError(); /* clear it */
    if (e == cudaSuccess) return EM_OK;
    return em_fail(EM_ERR_DEVICE, "em_cuda_linear_i8: launch of %s (n_tok %u, n_in %u, n_out %u) failed: %s: %s",
                   kernel, a->n_tok, a->n_in, a->n_out, cudaGetErrorName(e), cudaGetErrorString(e));
}

static em_status em_i8_launch(int vi, const em_linear_args *a, const float *x, float *y, uint32_t xs, uint32_t ys,
                              cudaStream_t s) {
    const em_i8_variant *V = &em_i8_variants[vi];
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(em_i8_blocks(vi, a->n_out));
    cfg.blockDim = dim3((unsigned)V->nw * 32u);
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    if ((a->flags & EM_LINEAR_W_CONST) && em_i8_dev_info()->cc_major.load(std::memory_order_relaxed) >= 9) {
        attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
    }
    const cudaError_t e =
        cudaLaunchKernelEx(&cfg, V->k, (const uint4 *)a->w, a->w_scale, x, y, a->n_in, a->n_out, xs, ys);
    return em_i8_launched(V->name, a, e);
}

static em_status em_i8_check(const em_linear_args *a) {
    if (!a) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_linear_i8: args is NULL");
    if (!em_cuda_linear_i8_supported(a))
        return em_fail(a->w_dtype == EM_DTYPE_I8 ? EM_ERR_INVALID_ARG : EM_ERR_UNSUPPORTED,
                       "em_cuda_linear_i8: unsupported arguments (w_dtype %d, want I8 with w_scale; n_in %u, n_out %u, "
                       "x_stride %u, y_stride %u, pointers %s, scale %s)", (int)a->w_dtype, a->n_in, a->n_out,
                       a->x_stride, a->y_stride, a->w && a->x && a->y ? "set" : "NULL", a->w_scale ? "set" : "NULL");
    return EM_OK;
}

static int em_i8_vec_ok(const em_linear_args *a, uint32_t xs) {
    return a->n_in % EM_I8_PER_VEC == 0 && xs % 4 == 0 && em_i8_aligned16(a->w) && em_i8_aligned16(a->x);
}

extern "C" em_status em_cuda_linear_i8(const em_linear_args *a, void *stream) {
    if (a && (a->n_tok == 0 || a->n_out == 0)) return EM_OK;
    EM_TRY(em_i8_check(a));
    cudaStream_t s = (cudaStream_t)stream;
    const uint32_t xs = a->x_stride ? a->x_stride : a->n_in, ys = a->y_stride ? a->y_stride : a->n_out;
    if (!em_i8_vec_ok(a, xs)) {
        const unsigned blocks = (a->n_out + EM_I8_GEN_WARPS - 1) / EM_I8_GEN_WARPS;
        em_linear_i8_generic<<<blocks, EM_I8_GEN_WARPS * 32, 0, s>>>((const int8_t *)a->w, a->w_scale, a->x, a->y,
                                                                     a->n_tok, a->n_in, a->n_out, xs, ys);
        return em_i8_launched("em_linear_i8_generic", a, cudaSuccess);
    }
    /* Vector path: one launch per group of up to 8 tokens. */
    em_status st = EM_OK;
    for (uint32_t t0 = 0; t0 < a->n_tok && st == EM_OK; t0 += EM_I8_MAX_NT) {
        const int nt = (int)min(a->n_tok - t0, (uint32_t)EM_I8_MAX_NT);
        st = em_i8_launch(em_i8_pick(nt, a->n_out, a->n_in), a, a->x + (size_t)t0 * xs, a->y + (size_t)t0 * ys, xs,
                          ys, s);
    }
    return st;
}

// ---- test and tuning hooks ------------------------------------------------------------------------------

extern "C" int em_cuda_linear_i8_variant_info(int i, em_linear_variant *out) {
    if (i < 0 || i >= EM_I8_N_VARIANTS || !out) return EM_I8_N_VARIANTS;
    const em_i8_variant *V = &em_i8_variants[i];
    memset(out, 0, sizeof *out);
    out->nt = V->nt;
    out->rows_per_warp = V->rpw;
    out->loads_per_row = V->u;
    out->k_split = V->ks;
    out->warps = V->nw;
    out->name = V->name;
    cudaFuncAttributes fa;
    if (cudaFuncGetAttributes(&fa, (const void *)V->k) == cudaSuccess) {
        out->regs = fa.numRegs;
        out->local_bytes = (int)fa.localSizeBytes;
    } else {
        cudaGetLastError();
    }
    out->blocks_per_sm = em_i8_dev_info()->bps[i].load(std::memory_order_relaxed);
    return EM_I8_N_VARIANTS;
}

extern "C" int em_cuda_linear_i8_default_variant(const em_linear_args *a) {
    if (!a || a->n_tok == 0 || !em_cuda_linear_i8_supported(a)) return -1;
    const uint32_t xs = a->x_stride ? a->x_stride : a->n_in;
    if (!em_i8_vec_ok(a, xs)) return -1;
    return em_i8_pick((int)min(a->n_tok, (uint32_t)EM_I8_MAX_NT), a->n_out, a->n_in);
}

extern "C" em_status em_cuda_linear_i8_variant(const em_linear_args *a, void *stream, int i) {
    if (a && (a->n_tok == 0 || a->n_out == 0)) return EM_OK;
    EM_TRY(em_i8_check(a));
    const uint32_t xs = a->x_stride ? a->x_stride : a->n_in, ys = a->y_stride ? a->y_stride : a->n_out;
    if (i < 0 || i >= EM_I8_N_VARIANTS || (uint32_t)em_i8_variants[i].nt != a->n_tok || !em_i8_vec_ok(a, xs))
        return em_fail(EM_ERR_UNSUPPORTED, "em_cuda_linear_i8_variant: variant %d cannot take n_tok %u here", i,
                       a->n_tok);
    return em_i8_launch(i, a, a->x, a->y, xs, ys, (cudaStream_t)stream);
}
