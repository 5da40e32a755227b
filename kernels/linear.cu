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
 *   v1.1 RPW 4 -> 2 for NT <= 2: twice the blocks (out_proj 256 -> 512 on 132 SMs), so more loads in
 *      flight and a finer last wave. in_proj 81 -> 90%, out_proj 64 -> 77%, head 96 -> 98%
 *      (RPW 1: 88%, 77%, 97%). The rest is 4-7 us per call whatever the size: a fixed cost (launch,
 *      ramp, last wave), not the stream rate; whether CUDA graphs hide it is not measured yet.
 *   v2 (this file) What the SASS of v1.1 showed (nvdisasm): ptxas did not keep "RPW * U loads, then the
 *      FMAs". It reused each W register as soon as its FMAs were done, so the loop issued 4 loads, waited
 *      for the first, then issued the rest: about half a batch in flight and two memory latencies per
 *      iteration. Now two batches live in registers (wa, wb): the next batch is loaded, behind its own
 *      branch, before the current one is used, so up to 2 * RPW * U loads are in flight (SASS: 8 LDG.NA
 *      then the FMAs of the other batch). In-block split-K (KS warps share a row group, partial sums added
 *      in shared memory in a fixed order: deterministic, no scratch) sets the block size independently of
 *      the row length. The variant is chosen per call from the shape and the occupancy (em_lin_pick):
 *      NT 1: RPW 2, U 4; KS 1 when that grid fits in one wave of resident blocks (out_proj: every warp
 *      streams 2 whole rows and all finish together), else KS 4 (2 rows, 16 KB, a block: the block
 *      scheduler balances the last wave; in_proj, head). NT 2: RPW 2, U 2, KS 2. NT 3..8: RPW 4 (x read
 *      from L1 once per 4 rows), U 2; KS 2 when the KS 1 grid fits in one wave (too few warps otherwise).
 *      Programmatic dependent launch with EM_LINEAR_W_CONST (opt-in): the block triggers its dependents at
 *      entry and waits on the grid dependency before the first x load.
 *      H100 (test_linear_cuda --sweep, 2 runs, both within 0.5 us), us single launch / in a graph / behind
 *      the rmsnorm or gated_norm that writes x (what the decode step sees), v1.1 -> v2:
 *      in_proj 55.0 / 52.4 / 52.6 -> 53.3 / 50.4 / 50.5 (98.5% of the read pass in the chain);
 *      out_proj 29.3 / 26.4 / 26.3 -> 27.1 / 23.7 / 24.2 (90.7%); head 137.8 / 134.9 / 135.0 ->
 *      134.6 / 131.7 / 131.6 (102%: the GEMV outruns the 2 GiB read pass it is judged by);
 *      NT 2 in_proj / out_proj 53.2 / 28.2 -> 51.7 / 23.9 (graph); NT 5 66.0 / 30.6 -> 57.1 / 28.6;
 *      NT 8 88.2 / 46.3 -> 76.6 / 42.6. Tried and left: U 8 or RPW 4 at NT 1 (168 registers, fewer
 *      warps: no gain or worse), 8-warp blocks (same), L2 evict_first policy and L2::256B prefetch
 *      (within 0.2 us), a single register buffer (the v1.1 schedule). The GEMV-to-GEMV graph with
 *      W_CONST shows what PDL across the whole step could give (in_proj 49.8, head 131.1, out_proj 22.5
 *      to 23.0 with more blocks), but behind a kernel that does not trigger early it gives nothing
 *      (chain +/- 0.1 us), and a single-wave GEMV whose dependent starts early (out_proj KS 1 followed by
 *      a GEMV) loses 2 us to the unevenly placed early blocks.
 *   v2.1 (fifth session) Two epilogues for the hybrid's attention and MLP layers in the fused decode step
 *      (runtime/cuda_exec.c queue_aux_fused): EM_LINEAR_ADD (y += W x, in the vector and generic kernels: the
 *      output projection adds into the residual stream) and norm_linear's activation (em_act_rt on rows outside
 *      the conv range: the MLP's up projection behind its RMSNorm). An MLP layer is 2 kernels instead of 5, an
 *      attention layer 5-6 instead of 8-9. A uniform branch in the store; registers unchanged (no spills).
 *      tests/test_aux_fused_cuda.c checks both against the twins.
 *
 * Build: part of the library with -DEM_CUDA=ON. Standalone, with the resource report (registers, spills):
 *   nvcc -O3 -std=c++17 -arch=sm_90 -Xptxas -v -Iinclude -Ikernels -Iruntime -Iplatform \
 *        -c kernels/linear.cu -o /tmp/linear.o
 * Tuning build (every variant in em_lin_variants, for test_linear_cuda --sweep): add -DEM_LIN_SWEEP
 * (cmake -DCMAKE_CUDA_FLAGS=-DEM_LIN_SWEEP in a build folder of its own).
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
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime.h>

#include <atomic>

#include "cuda_ops.h"
#include "gemv_common.cuh" /* em_pdl_wait / em_pdl_trigger, em_warp_sum, em_group_scales, em_act_rt */
extern "C" {
#include "blob.h" /* em_mlp_act */
#include "util.h" /* em_fail; a C header without its own extern "C" */
}

// ---- launch geometry ---------------------------------------------------------------------------------

#define EM_LIN_MAX_NT 8      /* tokens per launch of the vector kernel */
#define EM_LIN_GEN_WARPS 4   /* the fallback's warps per block */
#define EM_LIN_MAX_DEVICES 64

/* A vector-path variant: NT tokens, RPW rows per warp, U 16-byte loads per row in a batch (RPW * U loads a
 * batch, two batches in flight), KS warps sharing a row group (in-block split-K: warp k of a group takes the
 * row's 512-byte chunks k, k + KS, ...; the KS partial sums meet in shared memory and are added in a fixed
 * order, so the result is deterministic and no scratch is needed), NW warps per block. */

// ---- device helpers ----------------------------------------------------------------------------------

/* 16 bytes of W, read once: the non-coherent path without L1 allocation, so W streams past L1 and x
 * (re-read by every warp) stays there. volatile: the first batch stays above the grid-dependency wait in the
 * PTX, and the loads of a batch go out together, in the order written. (L2 hints, an evict_first policy or
 * the 256-byte prefetch, changed nothing measurable: docs/gpu.md, v2.) */
static __device__ __forceinline__ uint4 em_ld_stream(const uint4 *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
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

static __device__ __forceinline__ float em_w_to_f32(float w) { return w; }
static __device__ __forceinline__ float em_w_to_f32(uint16_t w) { return __uint_as_float((uint32_t)w << 16); }

/* One batch: RPW rows x U 16-byte chunks of W, chunk u of row r at wr[r] + v + VS * u. */
template <int RPW, int U, uint32_t VS>
static __device__ __forceinline__ void em_lin_load(uint4 (&dst)[RPW][U], const uint4 *const (&wr)[RPW], uint32_t v) {
#pragma unroll
    for (int r = 0; r < RPW; r++)
#pragma unroll
        for (int u = 0; u < U; u++) dst[r][u] = em_ld_stream(wr[r] + v + VS * u);
}

/* The fused decode-step modes (em_cuda_norm_linear, em_cuda_gated_linear; NT 1 only). MODE 0: plain GEMV.
 * MODE 1 (norm_linear): x chunks are multiplied by the RMSNorm weight and their squares summed (every element of x
 * is read exactly once per row group, by one lane of the group's KS warps, so the group gets sum(x^2) for free);
 * the row's sum is scaled by rsqrt(mean(x^2) + eps) at the end; rows in the conv range go through the conv1d
 * (+bias, SiLU, state roll) before the store. MODE 2 (gated_linear): x chunks are y * norm_w * rstd(group), the
 * group scales worked out once per block from the ssm's per-head sums of squares; the row's sum is added to the
 * residual stream. */
struct em_lin_fuse {
    const float *nw;                 /* [n_in] norm weight (MODE 1, 2) */
    float eps;
    float *conv_state;               /* MODE 1 conv epilogue: [conv_dim, K-1] */
    const float *conv_w, *conv_b;    /* [conv_dim, K], [conv_dim] or NULL */
    uint32_t conv_off, conv_dim, K;
    const float *sumsq;              /* MODE 2: [n_in / P] */
    uint32_t vpg, hpg, n_groups;     /* MODE 2: 16-byte vectors (8 weights) a group, heads a group, groups */
    float inv_group;                 /* 1 / group (MODE 2), 1 / n_in (MODE 1) */
    int trigger_late;                /* PDL: let dependents launch after the main loop instead of at entry */
    int add;                         /* MODE 0: y += the sum (EM_LINEAR_ADD) instead of y = the sum */
    uint32_t act;                    /* MODE 1 without conv: em_mlp_act applied to each row on the way out */
};
#define EM_LIN_MAX_GROUPS 64
#define EM_LIN_MAX_HEADS 256 /* MODE 2: per-head sums a block stages in shared memory */

/* x chunk vv (8 floats) as the GEMV sees it: MODE 0 x itself; MODE 1 x * nw (ss += x^2); MODE 2 y * nw * sc[group]. */
template <int MODE>
static __device__ __forceinline__ void em_lin_x8(const float *__restrict__ x, uint32_t vv, const em_lin_fuse &f,
                                                 const float *sc, float &ss, float4 &a, float4 &b) {
    const float4 *xp = reinterpret_cast<const float4 *>(x) + 2 * vv;
    a = __ldg(xp);
    b = __ldg(xp + 1);
    if constexpr (MODE == 1) {
        ss = fmaf(a.x, a.x, ss); ss = fmaf(a.y, a.y, ss); ss = fmaf(a.z, a.z, ss); ss = fmaf(a.w, a.w, ss);
        ss = fmaf(b.x, b.x, ss); ss = fmaf(b.y, b.y, ss); ss = fmaf(b.z, b.z, ss); ss = fmaf(b.w, b.w, ss);
    }
    if constexpr (MODE != 0) {
        const float4 *np = reinterpret_cast<const float4 *>(f.nw) + 2 * vv;
        const float4 na = __ldg(np), nb = __ldg(np + 1);
        float k = 1.0f;
        if constexpr (MODE == 2) k = sc[vv / f.vpg];
        a.x *= na.x * k; a.y *= na.y * k; a.z *= na.z * k; a.w *= na.w * k;
        b.x *= nb.x * k; b.y *= nb.y * k; b.z *= nb.z * k; b.w *= nb.w * k;
    }
}

/* acc[t][r] += the batch's chunks . x[t] (x read through L1, reused across the RPW rows). */
template <int NT, int RPW, int U, uint32_t VS, int MODE>
static __device__ __forceinline__ void em_lin_fma(float (&acc)[NT][RPW], const uint4 (&wv)[RPW][U],
                                                  const float *__restrict__ x, uint32_t x_stride, uint32_t v,
                                                  const em_lin_fuse &f, const float *sc, float &ss) {
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float4 a, b;
            em_lin_x8<MODE>(x + (size_t)t * x_stride, v + VS * u, f, sc, ss, a, b);
#pragma unroll
            for (int r = 0; r < RPW; r++) acc[t][r] = em_dot8(acc[t][r], wv[r][u], a, b);
        }
}

/* MODE 1's conv window of one row, loaded at kernel entry by the lane that will store the row (the conv state, its
 * weights and bias are not written by the kernel before, so they load before the grid-dependency wait, and their
 * latency hides behind the whole GEMV instead of ending it). */
#define EM_LIN_CONV_MAXK 4 /* Mamba's d_conv; the fused step takes 2 <= K <= 4 */
struct em_lin_conv {
    bool on;
    float st[EM_LIN_CONV_MAXK - 1], w[EM_LIN_CONV_MAXK], b;
};

static __device__ __forceinline__ void em_lin_conv_load(em_lin_conv &cv, uint32_t row, const em_lin_fuse &f) {
    const uint32_t c = row - f.conv_off; /* unsigned: rows before the conv range wrap past conv_dim */
    cv.on = c < f.conv_dim;
    if (!cv.on) return;
    const float *cw = f.conv_w + (size_t)c * f.K;
    const float *st = f.conv_state + (size_t)c * (f.K - 1);
#pragma unroll
    for (uint32_t k = 0; k < EM_LIN_CONV_MAXK; k++) {
        cv.w[k] = k < f.K ? __ldg(cw + k) : 0.0f;
        if (k + 1 < EM_LIN_CONV_MAXK) cv.st[k] = k + 1 < f.K ? st[k] : 0.0f;
    }
    cv.b = f.conv_b ? __ldg(f.conv_b + c) : 0.0f;
}

/* The store of row `row`'s sum s (token t): the plain store, or the fused epilogues. */
template <int MODE>
static __device__ __forceinline__ void em_lin_store(float *__restrict__ y, uint32_t t, uint32_t y_stride,
                                                    uint32_t row, float s, const em_lin_fuse &f, const em_lin_conv &cv) {
    if constexpr (MODE == 2) {
        y[row] += s; /* the residual stream: this lane owns the row */
    } else {
        if constexpr (MODE == 1) {
            if (cv.on) {
                /* em_ref_conv1d for one token: acc = b + sum_k w[k] * window[k], window = (state, s); the state
                 * moves one slot older and s becomes its newest entry */
                const uint32_t c = row - f.conv_off;
                float *st = f.conv_state + (size_t)c * (f.K - 1);
                float acc = cv.b;
#pragma unroll
                for (uint32_t k = 0; k + 1 < EM_LIN_CONV_MAXK; k++)
                    if (k + 1 < f.K) {
                        acc += cv.w[k] * cv.st[k];
                        if (k > 0) st[k - 1] = cv.st[k];
                    }
                float wl = 0.0f; /* w[K-1], picked with constant indices (a register array stays in registers) */
#pragma unroll
                for (uint32_t k = 0; k < EM_LIN_CONV_MAXK; k++)
                    if (k + 1 == f.K) wl = cv.w[k];
                acc += wl * s;
                st[f.K - 2] = s;
                s = acc / (1.0f + expf(-acc)); /* silu, as em_silu_f */
            } else if (f.act) {
                s = em_act_rt(f.act, s); /* the MLP's up projection */
            }
        }
        float *yp = y + (size_t)t * y_stride + row;
        if (MODE == 0 && f.add) *yp += s;
        else *yp = s;
    }
}

// ---- v2: bf16 vector GEMV, NT tokens -----------------------------------------------------------------

/* Preconditions (checked by the launcher): w and x 16-byte aligned, n_in % 8 == 0, x_stride % 4 == 0.
 * Grid: ceil(n_out / (NW / KS * RPW)) blocks of NW * 32 threads. */
template <int NT, int RPW, int U, int KS, int NW, int MODE = 0>
__global__ void __launch_bounds__(NW * 32)
em_linear_bf16_vec(const uint4 *__restrict__ w,   /* [n_out, n_in / 8] (8 bf16 per uint4) */
                   const float *__restrict__ x,   /* [NT, n_in], row stride x_stride */
                   float *__restrict__ y,         /* [NT, n_out], row stride y_stride */
                   uint32_t n_in, uint32_t n_out, uint32_t x_stride, uint32_t y_stride, const em_lin_fuse f) {
    static_assert(NW % KS == 0 && NT * RPW <= 32, "a group's KS warps in one block; one store lane per sum");
    static_assert(MODE == 0 || NT == 1, "the fused modes are for the decode step (one token)");
    constexpr int GROUPS = NW / KS;   /* row groups per block */
    constexpr uint32_t VS = 32u * KS; /* a lane's stride (in 16-byte vectors) between its chunks of a row */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int ks = warp % KS, g = warp / KS;
    const uint32_t row0 = (blockIdx.x * GROUPS + g) * RPW;
    /* A group past n_out (last block only) loads nothing but still meets the block barrier and the wait. */
    const uint32_t nv = row0 < n_out ? n_in / 8 : 0;

    if (MODE == 0 || !f.trigger_late) em_pdl_trigger();

    /* Rows past n_out (last group only) re-read the last row, so that the loop has no per-row branch; their
     * results are not stored. */
    const uint4 *wr[RPW];
#pragma unroll
    for (int r = 0; r < RPW; r++) wr[r] = w + (size_t)min(row0 + r, n_out - 1) * (n_in / 8);
    const uint4 *const(&wrc)[RPW] = wr;

    float acc[NT][RPW];
#pragma unroll
    for (int t = 0; t < NT; t++)
#pragma unroll
        for (int r = 0; r < RPW; r++) acc[t][r] = 0.0f;

    /* Lane `lane` of split ks takes vectors ks * 32 + lane + j * VS of each row, U of them per row in a
     * batch. Two batches in registers (wa, wb): the next batch's RPW * U loads are issued before the current
     * one is used, each behind its own branch, so that the compiler can neither sink them below the FMAs nor
     * reuse the registers of the batch in use (with one buffer it reloads each register right after its
     * FMAs, and only half a batch is in flight). The first batch (W only: never written by the preceding
     * kernel) is issued before the grid-dependency wait, x after it. */
    uint32_t v = (uint32_t)ks * 32u + lane;
    uint4 wa[RPW][U], wb[RPW][U];
    bool full = v + VS * (U - 1) < nv;
    if (full) em_lin_load<RPW, U, VS>(wa, wrc, v);
    /* MODE 1: the store lane of row row0 + lane (ks 0) fetches that row's conv window now */
    em_lin_conv cv;
    cv.on = false;
    if constexpr (MODE == 1)
        if (ks == 0 && lane < RPW && row0 + lane < n_out) em_lin_conv_load(cv, row0 + lane, f);
    em_pdl_wait();

    /* MODE 2: the group scales rstd(g) = rsqrt(sum of the group's per-head sums of squares / group + eps), once a
     * block, each group's heads added in order (deterministic). Read after the wait: the ssm wrote them. */
    __shared__ float sc[MODE == 2 ? EM_LIN_MAX_GROUPS : 1];
    __shared__ float heads[MODE == 2 ? EM_LIN_MAX_HEADS : 1];
    if constexpr (MODE == 2) em_group_scales(sc, heads, f.sumsq, f.n_groups, f.hpg, f.inv_group, f.eps);
    float ss = 0.0f; /* MODE 1: this lane's part of sum(x^2) */

    while (full) {
        uint32_t vn = v + VS * U;
        bool next = vn + VS * (U - 1) < nv;
        if (next) em_lin_load<RPW, U, VS>(wb, wrc, vn);
        em_lin_fma<NT, RPW, U, VS, MODE>(acc, wa, x, x_stride, v, f, sc, ss);
        v = vn;
        if (!next) break;
        vn = v + VS * U;
        next = vn + VS * (U - 1) < nv;
        if (next) em_lin_load<RPW, U, VS>(wa, wrc, vn);
        em_lin_fma<NT, RPW, U, VS, MODE>(acc, wb, x, x_stride, v, f, sc, ss);
        v = vn;
        full = next;
    }
    /* Remainder: fewer than U chunks were left for this lane; one at a time. */
    for (; v < nv; v += VS) {
        uint4 w1[RPW][1];
#pragma unroll
        for (int r = 0; r < RPW; r++) w1[r][0] = em_ld_stream(wr[r] + v);
        em_lin_fma<NT, RPW, 1, VS, MODE>(acc, w1, x, x_stride, v, f, sc, ss);
    }
    if (MODE != 0 && f.trigger_late) em_pdl_trigger();

    /* Every lane ends with every sum of its warp; lane t * RPW + r owns (t, r), so the NT * RPW <= 32 stores
     * of a warp go out in one instruction. */
    if constexpr (KS == 1) {
        float rs = 1.0f; /* MODE 1: rsqrt(mean(x^2) + eps) from the warp's sum */
        if constexpr (MODE == 1) rs = rsqrtf(em_warp_sum(ss) * f.inv_group + f.eps);
#pragma unroll
        for (int t = 0; t < NT; t++)
#pragma unroll
            for (int r = 0; r < RPW; r++) {
                const float s = em_warp_sum(acc[t][r]);
                if (lane == t * RPW + r && row0 + r < n_out) em_lin_store<MODE>(y, t, y_stride, row0 + r, s * rs, f, cv);
            }
    } else {
        __shared__ float part[KS][GROUPS][NT * RPW + (MODE == 1)]; /* MODE 1: the last slot holds sum(x^2) */
        if constexpr (MODE == 1) {
            const float sw = em_warp_sum(ss);
            if (lane == 0) part[ks][g][NT * RPW] = sw;
        }
#pragma unroll
        for (int t = 0; t < NT; t++)
#pragma unroll
            for (int r = 0; r < RPW; r++) {
                const float s = em_warp_sum(acc[t][r]);
                if (lane == t * RPW + r) part[ks][g][t * RPW + r] = s;
            }
        __syncthreads();
        if (ks == 0 && lane < NT * RPW) {
            float s = part[0][g][lane];
#pragma unroll
            for (int k = 1; k < KS; k++) s += part[k][g][lane]; /* fixed order: deterministic */
            if constexpr (MODE == 1) {
                float sx = part[0][g][NT * RPW];
#pragma unroll
                for (int k = 1; k < KS; k++) sx += part[k][g][NT * RPW];
                s *= rsqrtf(sx * f.inv_group + f.eps);
            }
            const uint32_t t = (uint32_t)lane / RPW, r = (uint32_t)lane % RPW;
            if (row0 + r < n_out) em_lin_store<MODE>(y, t, y_stride, row0 + r, s, f, cv);
        }
    }
}


// ---- fallback: any dtype layout, any alignment, any n_tok --------------------------------------------

/* Warp per row; lane k reads elements k, k + 32, ... (coalesced, but 2 or 4 bytes a lane). Tokens in
 * groups of 8 held in registers; the row is re-read per group (from L1/L2: a row is <= a few tens of KB).
 * T: float (F32 weights) or uint16_t (bf16 bits). Launched without PDL (no grid-dependency wait needed). */
template <typename T>
__global__ void __launch_bounds__(EM_LIN_GEN_WARPS * 32)
em_linear_generic(const T *__restrict__ w,       /* [n_out, n_in] */
                  const float *__restrict__ x,   /* [n_tok, n_in], row stride x_stride */
                  float *__restrict__ y,         /* [n_tok, n_out], row stride y_stride */
                  uint32_t n_tok, uint32_t n_in, uint32_t n_out, uint32_t x_stride, uint32_t y_stride, int add) {
    const int lane = threadIdx.x & 31;
    const uint32_t row = blockIdx.x * EM_LIN_GEN_WARPS + (threadIdx.x >> 5);
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
            if ((uint32_t)t < nt && lane == 0) {
                float *yp = y + (size_t)(t0 + t) * y_stride + row;
                *yp = add ? *yp + s : s;
            }
        }
    }
}

// ---- the variant table ---------------------------------------------------------------------------------

typedef void (*em_lin_kernel)(const uint4 *, const float *, float *, uint32_t, uint32_t, uint32_t, uint32_t,
                              const em_lin_fuse);

typedef struct em_lin_variant {
    int nt, rpw, u, ks, nw;
    em_lin_kernel k;
    const char *name;
} em_lin_variant;

#define EM_LIN_V(NT, RPW, U, KS, NW)                                                                          \
    { NT, RPW, U, KS, NW, em_linear_bf16_vec<NT, RPW, U, KS, NW>, "nt" #NT " rpw" #RPW " u" #U " ks" #KS " w" #NW }

/* The defaults come first (em_lin_pick: indices fixed below); what follows them is instantiated only in the
 * tuning builds (-DEM_LIN_SWEEP, test_linear_cuda --sweep). */
enum { EM_LIN_V1_ONE_WAVE = 0, EM_LIN_V1_WAVES = 1, EM_LIN_V2 = 2, EM_LIN_V3_WAVES = 3, EM_LIN_V3_ONE_WAVE = 9 };
static const em_lin_variant em_lin_variants[] = {
    EM_LIN_V(1, 2, 4, 1, 4), /* 0: NT 1, the grid fits in one wave (out_proj) */
    EM_LIN_V(1, 2, 4, 4, 4), /* 1: NT 1, several waves: 2 rows (16 KB at n_in 4096) a block (in_proj, head) */
    EM_LIN_V(2, 2, 2, 2, 4), /* 2: NT 2 */
    EM_LIN_V(3, 4, 2, 1, 4), /* 3..8: NT 3..8, several waves */
    EM_LIN_V(4, 4, 2, 1, 4),
    EM_LIN_V(5, 4, 2, 1, 4),
    EM_LIN_V(6, 4, 2, 1, 4),
    EM_LIN_V(7, 4, 2, 1, 4),
    EM_LIN_V(8, 4, 2, 1, 4),
    EM_LIN_V(3, 4, 2, 2, 4), /* 9..14: NT 3..8, the KS 1 grid fits in one wave: twice the warps */
    EM_LIN_V(4, 4, 2, 2, 4),
    EM_LIN_V(5, 4, 2, 2, 4),
    EM_LIN_V(6, 4, 2, 2, 4),
    EM_LIN_V(7, 4, 2, 2, 4),
    EM_LIN_V(8, 4, 2, 2, 4),
#ifdef EM_LIN_SWEEP
    EM_LIN_V(1, 1, 4, 4, 4),
    EM_LIN_V(1, 1, 4, 1, 4),
    EM_LIN_V(1, 2, 4, 1, 8),
    EM_LIN_V(1, 1, 8, 4, 4),
    EM_LIN_V(2, 2, 4, 1, 4),
    EM_LIN_V(2, 4, 2, 1, 4),
    EM_LIN_V(3, 2, 2, 2, 4),
    EM_LIN_V(5, 2, 2, 1, 4),
    EM_LIN_V(8, 2, 2, 1, 4),
    EM_LIN_V(8, 4, 2, 4, 4),
#endif
};
#define EM_LIN_N_VARIANTS ((int)(sizeof em_lin_variants / sizeof em_lin_variants[0]))

/* Per device: SM count and each variant's resident blocks per SM, worked out once on the first call from
 * cudaFuncGetAttributes and device attributes (host queries that queue nothing, as argmax's: they are also
 * made inside the executor's stream capture, where its first em_cuda_linear call happens); 0 until known. */
typedef struct em_lin_dev {
    std::atomic<int> ready; /* 0 unknown, 1 filled */
    std::atomic<int> sms, cc_major;
    std::atomic<int> bps[EM_LIN_N_VARIANTS];
} em_lin_dev;
static em_lin_dev em_lin_devs[EM_LIN_MAX_DEVICES];

static const em_lin_dev *em_lin_dev_info(void) {
    static em_lin_dev none; /* all zero: unknown device */
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= EM_LIN_MAX_DEVICES) {
        cudaGetLastError();
        return &none;
    }
    em_lin_dev *d = &em_lin_devs[dev];
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
    for (int i = 0; i < EM_LIN_N_VARIANTS; i++) {
        const em_lin_variant *V = &em_lin_variants[i];
        cudaFuncAttributes fa;
        int b = 0;
        if (cudaFuncGetAttributes(&fa, (const void *)V->k) == cudaSuccess) {
            /* registers are allocated per warp in units of 256 (8 a thread); shared memory (<= 512 B) never
             * limits these kernels */
            const int per_warp = (fa.numRegs + 7) / 8 * 8 * 32;
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
    d->ready.store(1, std::memory_order_release); /* two threads racing here store the same values */
    return d;
}

static uint32_t em_lin_blocks(int vi, uint32_t n_out) {
    const em_lin_variant *V = &em_lin_variants[vi];
    const uint32_t rows_per_block = (uint32_t)(V->nw / V->ks * V->rpw);
    return (n_out + rows_per_block - 1) / rows_per_block;
}

/* Does variant vi's grid for n_out rows fit in one wave of resident blocks? (Unknown occupancy: no.) */
static int em_lin_one_wave(const em_lin_dev *d, int vi, uint32_t n_out) {
    const long slots = (long)d->sms.load(std::memory_order_relaxed) * d->bps[vi].load(std::memory_order_relaxed);
    return slots > 0 && (long)em_lin_blocks(vi, n_out) <= slots;
}

/* The variant em_cuda_linear takes for a group of nt tokens (index into em_lin_variants). Measured on the H100
 * (docs/gpu.md, v2): NT 1 single-wave grids (out_proj) are best whole-row per warp (KS 1: every warp streams
 * 2 rows end to end, all finish together); grids of several waves are best in small blocks (KS 4: 2 rows a
 * block, so the block scheduler balances the last wave; in_proj, head), as long as a warp still gets a full
 * batch (32 * KS * U 16-byte vectors a row). NT 3..8 is the other way round: with ~170 registers a thread a
 * single-wave KS 1 grid has too few warps, so KS 2 doubles them. */
static int em_lin_pick(int nt, uint32_t n_out, uint32_t n_in) {
    const em_lin_dev *d = em_lin_dev_info();
    const uint32_t nv = n_in / 8;
    if (nt == 1)
        return em_lin_one_wave(d, EM_LIN_V1_ONE_WAVE, n_out) || nv < 32u * 4 * 4 ? EM_LIN_V1_ONE_WAVE
                                                                                 : EM_LIN_V1_WAVES;
    if (nt == 2) return EM_LIN_V2;
    return (em_lin_one_wave(d, EM_LIN_V3_WAVES + nt - 3, n_out) && nv >= 32u * 2 * 2 ? EM_LIN_V3_ONE_WAVE
                                                                                     : EM_LIN_V3_WAVES) +
           nt - 3;
}

// ---- launchers -----------------------------------------------------------------------------------------

static int em_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

extern "C" int em_cuda_linear_supported(const em_linear_args *a) {
    if (a && a->w_dtype == EM_DTYPE_I8) return em_cuda_linear_i8_supported(a); /* kernels/linear_i8.cu */
    if (!a || !a->w || !a->x || !a->y) return 0;
    if (a->w_dtype != EM_DTYPE_BF16 && a->w_dtype != EM_DTYPE_F32) return 0;
    if (a->x_stride != 0 && a->x_stride < a->n_in) return 0;
    if (a->y_stride != 0 && a->y_stride < a->n_out) return 0;
    return 1;
}

static em_status em_linear_launched(const char *kernel, const em_linear_args *a, cudaError_t e) {
    if (e == cudaSuccess) e = cudaGetLastError();
    else cudaGetLastError(); /* clear it */
    if (e == cudaSuccess) return EM_OK;
    return em_fail(EM_ERR_DEVICE, "em_cuda_linear: launch of %s (n_tok %u, n_in %u, n_out %u) failed: %s: %s",
                   kernel, a->n_tok, a->n_in, a->n_out, cudaGetErrorName(e), cudaGetErrorString(e));
}

/* One launch of variant `vi` for nt == em_lin_variants[vi].nt tokens of x / y. */
static em_status em_lin_launch(int vi, const em_linear_args *a, const float *x, float *y, uint32_t xs, uint32_t ys,
                               cudaStream_t s) {
    const em_lin_variant *V = &em_lin_variants[vi];
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(em_lin_blocks(vi, a->n_out));
    cfg.blockDim = dim3((unsigned)V->nw * 32u);
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    if ((a->flags & EM_LINEAR_W_CONST) && em_lin_dev_info()->cc_major.load(std::memory_order_relaxed) >= 9) {
        attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
    }
    em_lin_fuse none = {};
    none.add = (a->flags & EM_LINEAR_ADD) != 0;
    const cudaError_t e = cudaLaunchKernelEx(&cfg, V->k, (const uint4 *)a->w, x, y, a->n_in, a->n_out, xs, ys, none);
    return em_linear_launched(V->name, a, e);
}

static em_status em_lin_check(const em_linear_args *a) {
    if (!a) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_linear: args is NULL");
    if (!em_cuda_linear_supported(a))
        return em_fail(a->w_dtype == EM_DTYPE_BF16 || a->w_dtype == EM_DTYPE_F32 ? EM_ERR_INVALID_ARG
                                                                                   : EM_ERR_UNSUPPORTED,
                       "em_cuda_linear: unsupported arguments (w_dtype %d, n_in %u, n_out %u, x_stride %u, "
                       "y_stride %u, pointers %s)", (int)a->w_dtype, a->n_in, a->n_out, a->x_stride, a->y_stride,
                       a->w && a->x && a->y ? "set" : "NULL");
    return EM_OK;
}

static int em_lin_vec_ok(const em_linear_args *a, uint32_t xs) {
    return a->w_dtype == EM_DTYPE_BF16 && a->n_in % 8 == 0 && xs % 4 == 0 && em_aligned16(a->w) &&
           em_aligned16(a->x);
}

extern "C" em_status em_cuda_linear(const em_linear_args *a, void *stream) {
    if (a && a->w_dtype == EM_DTYPE_I8) return em_cuda_linear_i8(a, stream); /* W8A16: kernels/linear_i8.cu */
    if (a && (a->n_tok == 0 || a->n_out == 0)) return EM_OK;
    EM_TRY(em_lin_check(a));

    cudaStream_t s = (cudaStream_t)stream;
    const uint32_t xs = a->x_stride ? a->x_stride : a->n_in, ys = a->y_stride ? a->y_stride : a->n_out;

    const int add = (a->flags & EM_LINEAR_ADD) != 0;
    if (!em_lin_vec_ok(a, xs)) {
        const unsigned blocks = (a->n_out + EM_LIN_GEN_WARPS - 1) / EM_LIN_GEN_WARPS;
        if (a->w_dtype == EM_DTYPE_F32) {
            em_linear_generic<float><<<blocks, EM_LIN_GEN_WARPS * 32, 0, s>>>(
                (const float *)a->w, a->x, a->y, a->n_tok, a->n_in, a->n_out, xs, ys, add);
            return em_linear_launched("em_linear_generic<float>", a, cudaSuccess);
        }
        em_linear_generic<uint16_t><<<blocks, EM_LIN_GEN_WARPS * 32, 0, s>>>(
            (const uint16_t *)a->w, a->x, a->y, a->n_tok, a->n_in, a->n_out, xs, ys, add);
        return em_linear_launched("em_linear_generic<bf16>", a, cudaSuccess);
    }

    /* Vector path: one launch per group of up to 8 tokens. */
    em_status st = EM_OK;
    for (uint32_t t0 = 0; t0 < a->n_tok && st == EM_OK; t0 += EM_LIN_MAX_NT) {
        const int nt = (int)min(a->n_tok - t0, (uint32_t)EM_LIN_MAX_NT);
        st = em_lin_launch(em_lin_pick(nt, a->n_out, a->n_in), a, a->x + (size_t)t0 * xs, a->y + (size_t)t0 * ys, xs,
                           ys, s);
    }
    return st;
}

// ---- the decode step's fused ops (ops.h: em_norm_linear_args, em_gated_linear_args) -----------------------

/* The fused kernels run the NT 1 defaults' geometry (em_lin_pick's variants 0 and 1) with MODE 1 or 2. */
template <int MODE> static em_lin_kernel em_lin_fused_kernel(int vi) {
    return vi == EM_LIN_V1_ONE_WAVE ? em_linear_bf16_vec<1, 2, 4, 1, 4, MODE> : em_linear_bf16_vec<1, 2, 4, 4, 4, MODE>;
}

static em_status em_lin_fused_launch(em_lin_kernel k, int vi, const void *w, const float *x, float *y, uint32_t n_in,
                                     uint32_t n_out, uint32_t flags, const em_lin_fuse &f, cudaStream_t s,
                                     const char *name) {
    const em_lin_variant *V = &em_lin_variants[vi];
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(em_lin_blocks(vi, n_out));
    cfg.blockDim = dim3((unsigned)V->nw * 32u);
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    if ((flags & EM_LINEAR_W_CONST) && em_lin_dev_info()->cc_major.load(std::memory_order_relaxed) >= 9) {
        attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
    }
    cudaError_t e = cudaLaunchKernelEx(&cfg, k, (const uint4 *)w, x, y, n_in, n_out, n_in, n_out, f);
    if (e == cudaSuccess) e = cudaGetLastError();
    else cudaGetLastError();
    if (e == cudaSuccess) return EM_OK;
    return em_fail(EM_ERR_DEVICE, "%s: launch (n_in %u, n_out %u) failed: %s: %s", name, n_in, n_out,
                   cudaGetErrorName(e), cudaGetErrorString(e));
}

static int em_lin_bf16_vec_ok(const void *w, const float *x, uint32_t n_in, em_dtype dt) {
    return dt == EM_DTYPE_BF16 && w && x && n_in % 8 == 0 && em_aligned16(w) && em_aligned16(x);
}

extern "C" int em_cuda_norm_linear_supported(const em_norm_linear_args *a) {
    if (a && a->w_dtype == EM_DTYPE_I8) return em_cuda_norm_linear_i8_supported(a); /* kernels/linear_i8.cu */
    if (!a || !a->y || !a->norm_w || !em_aligned16(a->norm_w) || a->n_out == 0) return 0;
    if (!em_lin_bf16_vec_ok(a->w, a->x, a->n_in, a->w_dtype)) return 0;
    if (a->conv_dim) {
        if (!a->conv_state || !a->conv_w || a->K < 2 || a->K > EM_LIN_CONV_MAXK) return 0;
        if ((uint64_t)a->conv_off + a->conv_dim > a->n_out) return 0;
    }
    return a->act <= EM_ACT_SILU && (a->act == EM_ACT_NONE || a->conv_dim == 0);
}

extern "C" em_status em_cuda_norm_linear(const em_norm_linear_args *a, void *stream) {
    if (a && a->w_dtype == EM_DTYPE_I8) return em_cuda_norm_linear_i8(a, stream); /* kernels/linear_i8.cu */
    if (!em_cuda_norm_linear_supported(a))
        return em_fail(EM_ERR_INVALID_ARG, "em_cuda_norm_linear: unsupported arguments (BF16 weights, 16-byte aligned "
                       "w / x / norm_w, n_in %% 8 == 0, conv rows inside n_out and 2 <= K <= %d, an activation "
                       "only without conv are needed)", EM_LIN_CONV_MAXK);
    em_lin_fuse f = {};
    f.nw = a->norm_w;
    f.eps = a->eps;
    f.conv_state = a->conv_state;
    f.conv_w = a->conv_w;
    f.conv_b = a->conv_b;
    f.conv_off = a->conv_off;
    f.conv_dim = a->conv_dim;
    f.K = a->K;
    f.act = a->act;
    f.inv_group = 1.0f / (float)a->n_in;
    f.trigger_late = em_pdl_trigger_late();
    const int vi = em_lin_pick(1, a->n_out, a->n_in);
    return em_lin_fused_launch(em_lin_fused_kernel<1>(vi), vi, a->w, a->x, a->y, a->n_in, a->n_out, a->flags, f,
                               (cudaStream_t)stream, "em_cuda_norm_linear");
}

extern "C" int em_cuda_gated_linear_supported(const em_gated_linear_args *a) {
    if (a && a->w_dtype == EM_DTYPE_I8) return em_cuda_gated_linear_i8_supported(a); /* kernels/linear_i8.cu */
    if (!a || !a->x || !a->sumsq || !a->norm_w || !em_aligned16(a->norm_w) || a->n_out == 0) return 0;
    if (!em_lin_bf16_vec_ok(a->w, a->y, a->n_in, a->w_dtype)) return 0;
    if (a->group == 0 || a->P == 0 || a->group % 8 != 0 || a->group % a->P != 0 || a->n_in % a->group != 0) return 0;
    return a->n_in / a->group <= EM_LIN_MAX_GROUPS && a->n_in / a->P <= EM_LIN_MAX_HEADS;
}

extern "C" em_status em_cuda_gated_linear(const em_gated_linear_args *a, void *stream) {
    if (a && a->w_dtype == EM_DTYPE_I8) return em_cuda_gated_linear_i8(a, stream); /* kernels/linear_i8.cu */
    if (!em_cuda_gated_linear_supported(a))
        return em_fail(EM_ERR_INVALID_ARG, "em_cuda_gated_linear: unsupported arguments (BF16 weights, 16-byte aligned "
                       "w / y / norm_w, n_in %% 8 == 0, group %% 8 == 0, group %% P == 0, at most %d groups and %d heads)",
                       EM_LIN_MAX_GROUPS, EM_LIN_MAX_HEADS);
    em_lin_fuse f = {};
    f.nw = a->norm_w;
    f.eps = a->eps;
    f.sumsq = a->sumsq;
    f.vpg = a->group / 8;
    f.hpg = a->group / a->P;
    f.n_groups = a->n_in / a->group;
    f.inv_group = 1.0f / (float)a->group;
    f.trigger_late = em_pdl_trigger_late();
    /* The several-waves geometry (KS 4: 2 rows a block) even where one wave would hold the grid: measured on the
     * H100 for out_proj of the 8B shape, 25.3 us vs 26.2 us a launch in a graph and 4.842 vs 4.939 ms a token
     * (docs/gpu.md, "the fused step"). EM_GATED_KS1=1 picks em_cuda_linear's choice instead (tuning). */
    static const char *const one[] = { "1" };
    static std::atomic<int> ks1{-1};
    const int k1 = em_env_once("EM_GATED_KS1", one, 1, &ks1);
    const int vi = k1 || a->n_in / 8 < 32u * 4 * 4 ? em_lin_pick(1, a->n_out, a->n_in) : EM_LIN_V1_WAVES;
    return em_lin_fused_launch(em_lin_fused_kernel<2>(vi), vi, a->w, a->y, a->x, a->n_in, a->n_out, a->flags, f,
                               (cudaStream_t)stream, "em_cuda_gated_linear");
}

// ---- test and tuning hooks ------------------------------------------------------------------------------

extern "C" int em_cuda_linear_variant_info(int i, em_linear_variant *out) {
    if (i < 0 || i >= EM_LIN_N_VARIANTS || !out) return EM_LIN_N_VARIANTS;
    const em_lin_variant *V = &em_lin_variants[i];
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
    out->blocks_per_sm = em_lin_dev_info()->bps[i].load(std::memory_order_relaxed);
    return EM_LIN_N_VARIANTS;
}

extern "C" int em_cuda_linear_default_variant(const em_linear_args *a) {
    if (!a || a->n_tok == 0 || !em_cuda_linear_supported(a)) return -1;
    const uint32_t xs = a->x_stride ? a->x_stride : a->n_in;
    if (!em_lin_vec_ok(a, xs)) return -1;
    return em_lin_pick((int)min(a->n_tok, (uint32_t)EM_LIN_MAX_NT), a->n_out, a->n_in);
}

extern "C" em_status em_cuda_linear_variant(const em_linear_args *a, void *stream, int i) {
    if (a && (a->n_tok == 0 || a->n_out == 0)) return EM_OK;
    EM_TRY(em_lin_check(a));
    const uint32_t xs = a->x_stride ? a->x_stride : a->n_in, ys = a->y_stride ? a->y_stride : a->n_out;
    if (i < 0 || i >= EM_LIN_N_VARIANTS || (uint32_t)em_lin_variants[i].nt != a->n_tok || !em_lin_vec_ok(a, xs))
        return em_fail(EM_ERR_UNSUPPORTED, "em_cuda_linear_variant: variant %d cannot take n_tok %u here", i,
                       a->n_tok);
    return em_lin_launch(i, a, a->x, a->y, xs, ys, (cudaStream_t)stream);
}
