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
 *   v1 The BF16 GEMV v2's design (linear.cu: read its history first), with 16 int8 weights per
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
 *      H100 (the lead's run, in a graph): in_proj 18560 x 4096 30.33 us (82 % of the read bandwidth), out_proj
 *      4096 x 8192 18.51 us (59 %), head 50288 x 4096 71.7 us (94 %).
 *   v2 (this file) The decode step's fused ops with INT8 weights: em_cuda_norm_linear_i8 (RMSNorm prologue, conv1d
 *      epilogue: MODE 1) and em_cuda_gated_linear_i8 (gated group-RMSNorm prologue, residual add: MODE 2), the same
 *      kernel with linear.cu's MODE 1 / 2 on this file's geometry (16 weights a chunk: x and the norm weight are 4
 *      float4 a chunk; MODE 2's group of chunk v is a multiply-high by ceil(2^32 / (group / 16)), exact for
 *      n_in <= 2^20, since group / 16 is not always a power of two: 12 for the bundled model), so the INT8 decode
 *      step runs 3 kernels a layer instead of 6. em_cuda_norm_linear / em_cuda_gated_linear (linear.cu) dispatch
 *      I8 here. linear.cu's lessons kept: the store lane loads its conv window, and now its row scale (NT 1), before
 *      the grid-dependency wait (constant inputs; at NT > 1 the scale is read at the store: one register more spilled
 *      NT 7, 8 at KS 2); MODE 2 loads the per-head sums in one parallel round trip and sums each group in shared
 *      memory in a fixed order; PDL with EM_LINEAR_W_CONST, the first weight batch issued before the wait. The scale
 *      multiplies the finished row sum (MODE 1: times the rsqrt). Geometry: em_i8_pick's NT 1 choice for both ops
 *      (in_proj and head: rpw2 u2 ks2; out_proj: rpw2 u4 ks1); EM_I8_NORM_VARIANT / EM_I8_GATED_VARIANT override it
 *      (tuning). For out_proj (59 % as a plain GEMV: 8 KB rows, a warp streams 2 rows in 4 batches, so ramp and
 *      tail weigh more than for bf16's 16 KB rows) the sweep build adds 16 NT 1 variants with fused forms: in-block
 *      split-K (2, 4, 8 warps a row), 8-warp blocks, RPW 1 / 4, U 8 (more loads in flight); template parameter MB
 *      (minimum blocks of __launch_bounds__) only where ptxas's own register target spilled. test_fused_cuda --sweep
 *      checks each against the twins on the 8B layer and times it. Not measured on a GPU yet.
 *   v3 em_linear_i8_xs, x-stationary, one token (MODE 0 / 1 / 2): KS = n_in / 1024 warps a block; lane l of warp k
 *      holds x's chunks k * 32 + l and that + 32 * KS (32 floats, already multiplied by the norm weight and group
 *      scale in MODE 1 / 2) in registers for the whole kernel, and dots them with the same chunks of every row of the
 *      block's range, 4 rows (r4) or 2 (r2) a group, two groups of W in flight; each row's warp sum goes to shared
 *      memory, the KS warps' partials are added in order after one barrier. The grid is the blocks that fit on the
 *      device at once, each with an equal share of the rows. Why: ncu on the H100 (fourth session) showed v1 bound by
 *      the L1 traffic of x (fp32, re-read for every row group: "Mem Busy" 79 % with DRAM at 45 % for the fused
 *      norm_linear) and by occupancy (30 %), not by DRAM. H100, test_linear_i8_cuda --perf (graph): in_proj 28.23 us
 *      (94.4 % of the read bandwidth; v1 83.2 %), out_proj 13.44 us (87.5 %; v1 59.6 %); test_fused_cuda --perf:
 *      INT8 fused layer 48.66 us (79.3 %; v1 50.6 %), norm_linear 27.26 us (91.3 %), gated_linear 13.91 us (79.0 %);
 *      em-bench 8B INT8 2.864 ms a token with the fused step (78.6 % of the roofline; v1 six-op 3.706 ms, 60.9 %),
 *      2.842 ms with r2 (scripts/int8-decode-ab.sh). Those runs launched v3 with PDL (trigger at entry, W's first
 *      group before the wait), and test_fused_cuda's "INT8 8B layer + head, PDL" case then failed (max rel err 0.63)
 *      while the same kernels passed with plain launches. v3 had read x with ld.global.nc, the non-coherent L1 path,
 *      whose contract is data that does not change during the kernel's lifetime; under PDL that lifetime overlaps
 *      the writer of x. v3 now reads x with ld.global.cg (L2 only; x is read once a block, so L1 never helped).
 *   v3.1 (fifth session) With the cg reads, v3 launched with PDL passed test_fused_cuda three runs out of three and
 *      test_linear_i8_cuda (H100). Measured in one run (scripts/int8-decode-ab.sh, 8B INT8, em-bench): fused step
 *      with v3 and PDL 3.106 ms a token, v3 without PDL 3.473 (PDL is worth 0.37 ms: 3 kernel boundaries a layer),
 *      v1 six-op 3.689. (The fourth session's 2.864 ms with v3 + PDL was not reproduced: the draft it measured
 *      was not committed as measured.) So v3 with PDL and the fused step are the defaults (EM_I8_XS=off gives v1;
 *      EM_I8_XS_PDL=0 plain launches), 4 rows a group (r4; a second run: r4 3.121, r2 3.201 ms a token). Tried in
 *      that run and left: the first two groups of W before the wait instead of one (3.121 vs 3.106 ms, and r4's
 *      MODE 2 spilled), and a smaller grid leaving room on each SM for the next kernel's blocks under PDL
 *      (EM_I8_XS_FILL=75: 3.300 ms, 50: 3.792 ms; kept as a tuning switch): fewer blocks stream less than the
 *      overlap gains. Nor do 2 or 4 waves of shorter blocks, whose exits are staggered (EM_I8_XS_FILL=200 / 400,
 *      a later run: 3.176 / 3.363 ms against 3.109 for one wave). What is left between v3 and the roofline is per kernel: in a graph of 100 launches of one
 *      kernel with PDL, in_proj's norm_linear runs at 79 % and out_proj's gated_linear at 66 % of the read pass.
 *      EM_LINEAR_ADD and norm_linear's activation epilogue as linear.cu v2.1, in v1, v3 and the generic kernel.
 *      Conditions: NT 1, n_in % 1024 == 0 and n_in <= 16384 (x chunks a lane fixed at 2; 4 spilled at the 128
 *      registers that 512-thread blocks allow), partial sums <= 48 KB; else v1. No spills (sm_90, nvcc 13.0): r4
 *      128 registers in all three modes, r2 90 / 96 / 98.
 *
 * Build: part of the library with -DEM_CUDA=ON. Standalone, with the resource report (registers, spills):
 *   nvcc -O3 -std=c++17 -arch=sm_90 -Xptxas -v -Iinclude -Ikernels -Iruntime -Iplatform \
 *        -c kernels/linear_i8.cu -o /tmp/linear_i8.o
 * Tuning build (every variant in em_i8_variants, for test_linear_i8_cuda --sweep and test_fused_cuda --sweep): add
 * -DEM_LIN_I8_SWEEP (cmake -DCMAKE_CUDA_FLAGS=-DEM_LIN_I8_SWEEP in a build folder of its own).
 * Resource report for sm_90 (nvcc 13.0), every kernel of both builds: docs/int8.md.
 */
#ifndef EM_HAVE_CUDA
#define EM_HAVE_CUDA 1 /* a .cu file is a CUDA build by definition (the standalone command defines nothing) */
#endif

/* C headers first: util.h is included inside extern "C" below. */
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

/* One batch: RPW rows x U 16-byte chunks, chunk u of row r at wr[r] + v + VS * u. */
template <int RPW, int U, uint32_t VS>
static __device__ __forceinline__ void em_i8_load(uint4 (&dst)[RPW][U], const uint4 *const (&wr)[RPW], uint32_t v) {
#pragma unroll
    for (int r = 0; r < RPW; r++)
#pragma unroll
        for (int u = 0; u < U; u++) dst[r][u] = em_i8_ld_stream(wr[r] + v + VS * u);
}

/* The decode step's fused modes (em_cuda_norm_linear_i8, em_cuda_gated_linear_i8; NT 1 only), as linear.cu's
 * em_lin_fuse on this file's geometry (16 weights a chunk). MODE 0: plain GEMV. MODE 1 (norm_linear): x chunks
 * are multiplied by the RMSNorm weight and their squares summed (every element of x is read once per row group,
 * by one lane of the group's KS warps, so the group gets sum(x^2) for free); the row's sum is scaled by
 * rsqrt(mean(x^2) + eps) and the row's int8 scale at the end; rows in the conv range go through the conv1d
 * (+bias, SiLU, state roll) before the store. MODE 2 (gated_linear): x chunks are y * norm_w * rstd(group), the
 * group scales worked out once per block from the ssm's per-head sums of squares; the row's scaled sum is added
 * to the residual stream. */
struct em_i8_fuse {
    const float *nw;                 /* [n_in] norm weight (MODE 1, 2) */
    float eps;
    float *conv_state;               /* MODE 1 conv epilogue: [conv_dim, K-1] */
    const float *conv_w, *conv_b;    /* [conv_dim, K], [conv_dim] or NULL */
    uint32_t conv_off, conv_dim, K;
    const float *sumsq;              /* MODE 2: [n_in / P] */
    uint32_t vpg_magic;              /* MODE 2: chunk -> group is __umulhi(chunk, magic) (magic 0: a chunk a group) */
    uint32_t hpg, n_groups;          /* MODE 2: heads a group, groups */
    float inv_group;                 /* 1 / group (MODE 2), 1 / n_in (MODE 1) */
    int trigger_late;                /* PDL: let dependents launch after the main loop instead of at entry */
    int xs_pdl;                      /* v3 launched with PDL (the default): dependents triggered at entry */
    int add;                         /* MODE 0: y += the row's result (EM_LINEAR_ADD) instead of y = it */
    uint32_t act;                    /* MODE 1 without conv: em_mlp_act applied to each row on the way out */
};
#define EM_I8_MAX_GROUPS 64
#define EM_I8_MAX_HEADS 256 /* MODE 2: per-head sums a block stages in shared memory */
#define EM_I8_CONV_MAXK 4   /* Mamba's d_conv; the fused step takes 2 <= K <= 4 */

/* x chunk vv (16 floats, 4 float4) as the GEMV sees it: MODE 0 x itself; MODE 1 x * nw (ss += x^2); MODE 2
 * y * nw * sc[group]. The group of chunk vv is vv / (group / 16), by a multiply-high with the precomputed
 * ceil(2^32 / d): exact for vv * d <= 2^32 (the launcher's n_in <= 2^20 guarantees it), and no integer division
 * in the loop. CG: x through L2 only (ld.global.cg), never through the SM's non-coherent L1 path (v3: x is read
 * once, so L1 gains nothing, and x is what the preceding kernel wrote). */
template <int MODE, bool CG = false>
static __device__ __forceinline__ void em_i8_x16(const float *__restrict__ x, uint32_t vv, const em_i8_fuse &f,
                                                 const float *sc, float &ss, float4 (&xv)[4]) {
    const float4 *xp = reinterpret_cast<const float4 *>(x) + 4 * vv;
#pragma unroll
    for (int i = 0; i < 4; i++) xv[i] = CG ? __ldcg(xp + i) : __ldg(xp + i);
    if constexpr (MODE == 1) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            ss = fmaf(xv[i].x, xv[i].x, ss); ss = fmaf(xv[i].y, xv[i].y, ss);
            ss = fmaf(xv[i].z, xv[i].z, ss); ss = fmaf(xv[i].w, xv[i].w, ss);
        }
    }
    if constexpr (MODE != 0) {
        const float4 *np = reinterpret_cast<const float4 *>(f.nw) + 4 * vv;
        float k = 1.0f;
        if constexpr (MODE == 2) k = sc[f.vpg_magic ? __umulhi(vv, f.vpg_magic) : vv];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float4 n = __ldg(np + i);
            xv[i].x *= n.x * k; xv[i].y *= n.y * k; xv[i].z *= n.z * k; xv[i].w *= n.w * k;
        }
    }
}

/* acc[t][r] += the batch's chunks . x[t] (x: 4 float4 per chunk through L1, reused across the RPW rows). */
template <int NT, int RPW, int U, uint32_t VS, int MODE>
static __device__ __forceinline__ void em_i8_fma(float (&acc)[NT][RPW], const uint4 (&wv)[RPW][U],
                                                 const float *__restrict__ x, uint32_t x_stride, uint32_t v,
                                                 const em_i8_fuse &f, const float *sc, float &ss) {
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float4 xv[4];
            em_i8_x16<MODE>(x + (size_t)t * x_stride, v + VS * u, f, sc, ss, xv);
#pragma unroll
            for (int r = 0; r < RPW; r++) acc[t][r] = em_i8_dot16(acc[t][r], wv[r][u], xv[0], xv[1], xv[2], xv[3]);
        }
}

/* MODE 1's conv window of one row, loaded at kernel entry by the thread that will store the row (v1: before the
 * grid-dependency wait; the conv state, weights and bias are not written by the kernel before), so that their
 * latency hides behind the GEMV instead of ending it (linear.cu's lesson). */
struct em_i8_conv {
    bool on;
    float st[EM_I8_CONV_MAXK - 1], w[EM_I8_CONV_MAXK], b;
};

static __device__ __forceinline__ void em_i8_conv_load(em_i8_conv &cv, uint32_t row, const em_i8_fuse &f) {
    const uint32_t c = row - f.conv_off; /* unsigned: rows before the conv range wrap past conv_dim */
    cv.on = c < f.conv_dim;
    if (!cv.on) return;
    const float *cw = f.conv_w + (size_t)c * f.K;
    const float *st = f.conv_state + (size_t)c * (f.K - 1);
#pragma unroll
    for (uint32_t k = 0; k < EM_I8_CONV_MAXK; k++) {
        cv.w[k] = k < f.K ? __ldg(cw + k) : 0.0f;
        if (k + 1 < EM_I8_CONV_MAXK) cv.st[k] = k + 1 < f.K ? st[k] : 0.0f;
    }
    cv.b = f.conv_b ? __ldg(f.conv_b + c) : 0.0f;
}

/* The store of row `row`'s finished (scaled) sum s for token t: the plain store, or the fused epilogues (as
 * linear.cu's em_lin_store). */
template <int MODE>
static __device__ __forceinline__ void em_i8_store(float *__restrict__ y, uint32_t t, uint32_t y_stride, uint32_t row,
                                                   float s, const em_i8_fuse &f, const em_i8_conv &cv) {
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
                for (uint32_t k = 0; k + 1 < EM_I8_CONV_MAXK; k++)
                    if (k + 1 < f.K) {
                        acc += cv.w[k] * cv.st[k];
                        if (k > 0) st[k - 1] = cv.st[k];
                    }
                float wl = 0.0f; /* w[K-1], picked with constant indices (the array stays in registers) */
#pragma unroll
                for (uint32_t k = 0; k < EM_I8_CONV_MAXK; k++)
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

// ---- v2: int8 vector GEMV, NT tokens, and the fused modes (NT 1) ----------------------------------

/* Preconditions (checked by the launcher): w and x 16-byte aligned, n_in % 16 == 0, x_stride % 4 == 0; MODE 1, 2:
 * NT 1, norm_w 16-byte aligned (and the fused launchers' shape rules). Grid: ceil(n_out / (NW / KS * RPW)) blocks
 * of NW * 32 threads. MODE 2: x is the gated ssm output, y the residual stream (y[row] += the row's result). */
template <int NT, int RPW, int U, int KS, int NW, int MODE = 0, int MB = 0>
__global__ void __launch_bounds__(NW * 32, MB)
em_linear_i8_vec(const uint4 *__restrict__ w,      /* [n_out, n_in / 16] (16 int8 per uint4) */
                 const float *__restrict__ scale,  /* [n_out] */
                 const float *__restrict__ x,      /* [NT, n_in], row stride x_stride */
                 float *__restrict__ y,            /* [NT, n_out], row stride y_stride */
                 uint32_t n_in, uint32_t n_out, uint32_t x_stride, uint32_t y_stride, const em_i8_fuse f) {
    static_assert(NW % KS == 0 && NT * RPW <= 32, "a group's KS warps in one block; one store lane per sum");
    static_assert(MODE == 0 || NT == 1, "the fused modes are for the decode step (one token)");
    constexpr int GROUPS = NW / KS;   /* row groups per block */
    constexpr uint32_t VS = 32u * KS; /* a lane's stride (in 16-byte vectors) between its chunks of a row */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int ks = warp % KS, g = warp / KS;
    const uint32_t row0 = (blockIdx.x * GROUPS + g) * RPW;
    /* A group past n_out (last block only) loads nothing but still meets the block barrier and the wait. */
    const uint32_t nv = row0 < n_out ? n_in / EM_I8_PER_VEC : 0;

    if (MODE == 0 || !f.trigger_late) em_pdl_trigger();

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
     * used: linear.cu v2 explains why one buffer leaves only half a batch in flight. The first batch (W only:
     * never written by the preceding kernel) goes out before the grid-dependency wait, x after it. */
    uint32_t v = (uint32_t)ks * 32u + lane;
    uint4 wa[RPW][U], wb[RPW][U];
    bool full = v + VS * (U - 1) < nv;
    if (full) em_i8_load<RPW, U, VS>(wa, wrc, v);
    /* The store lane of (t, r) is lane t * RPW + r (of split 0): at NT 1 it fetches its row's scale now, and in
     * MODE 1 that row's conv window (constant inputs, so before the wait: their latency hides behind the GEMV).
     * NT > 1 loads the scale at the store (one register more spills NT 7, 8 at KS 2). */
    const bool store_lane = (KS == 1 || ks == 0) && lane < NT * RPW;
    const uint32_t srow = row0 + (uint32_t)lane % RPW;
    float rsc = 0.0f;
    if (NT == 1 && store_lane && srow < n_out) rsc = __ldg(scale + srow);
    em_i8_conv cv;
    cv.on = false;
    if constexpr (MODE == 1)
        if (store_lane && srow < n_out) em_i8_conv_load(cv, srow, f);
    em_pdl_wait();

    /* MODE 2: the group scales rstd(g) = rsqrt(sum of the group's per-head sums of squares / group + eps), once a
     * block: all threads load the per-head sums at once (one memory round trip), then one thread a group adds
     * its heads in order from shared memory (deterministic). Read after the wait: the ssm wrote them. */
    __shared__ float sc[MODE == 2 ? EM_I8_MAX_GROUPS : 1];
    __shared__ float heads[MODE == 2 ? EM_I8_MAX_HEADS : 1];
    if constexpr (MODE == 2) em_group_scales(sc, heads, f.sumsq, f.n_groups, f.hpg, f.inv_group, f.eps);
    float ss = 0.0f; /* MODE 1: this lane's part of sum(x^2) */

    while (full) {
        uint32_t vn = v + VS * U;
        bool next = vn + VS * (U - 1) < nv;
        if (next) em_i8_load<RPW, U, VS>(wb, wrc, vn);
        em_i8_fma<NT, RPW, U, VS, MODE>(acc, wa, x, x_stride, v, f, sc, ss);
        v = vn;
        if (!next) break;
        vn = v + VS * U;
        next = vn + VS * (U - 1) < nv;
        if (next) em_i8_load<RPW, U, VS>(wa, wrc, vn);
        em_i8_fma<NT, RPW, U, VS, MODE>(acc, wb, x, x_stride, v, f, sc, ss);
        v = vn;
        full = next;
    }
    /* Remainder: fewer than U chunks left for this lane; one at a time. */
    for (; v < nv; v += VS) {
        uint4 w1[RPW][1];
#pragma unroll
        for (int r = 0; r < RPW; r++) w1[r][0] = em_i8_ld_stream(wr[r] + v);
        em_i8_fma<NT, RPW, 1, VS, MODE>(acc, w1, x, x_stride, v, f, sc, ss);
    }
    if (MODE != 0 && f.trigger_late) em_pdl_trigger();

    /* Lane t * RPW + r owns (t, r): the NT * RPW <= 32 stores of a warp go out in one instruction; the row scale
     * (and MODE 1's rsqrt) multiplies the finished sum, once. */
    if constexpr (KS == 1) {
        float rs = 1.0f; /* MODE 1: rsqrt(mean(x^2) + eps) from the warp's sum */
        if constexpr (MODE == 1) rs = rsqrtf(em_warp_sum(ss) * f.inv_group + f.eps);
#pragma unroll
        for (int t = 0; t < NT; t++)
#pragma unroll
            for (int r = 0; r < RPW; r++) {
                const float s = em_warp_sum(acc[t][r]);
                if (lane == t * RPW + r && row0 + r < n_out) {
                    const float k = NT == 1 ? rsc : __ldg(scale + row0 + r);
                    em_i8_store<MODE>(y, t, y_stride, row0 + r, MODE == 1 ? s * rs * k : s * k, f, cv);
                }
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
            if (row0 + r < n_out)
                em_i8_store<MODE>(y, t, y_stride, row0 + r, s * (NT == 1 ? rsc : __ldg(scale + row0 + r)), f, cv);
        }
    }
}

// ---- v3: x-stationary one-token GEMV (the decode step) -----------------------------------------------------

/* Row group gi's R x XC chunks of this lane: row r0 + gi * R + r (rows past n_out re-read the last row, never
 * stored), chunk c0 + j * cs. */
template <int R, int XC>
static __device__ __forceinline__ void em_i8_xs_load(uint4 (&dst)[R][XC], const uint4 *__restrict__ w, uint32_t nv,
                                                     uint32_t n_out, uint32_t row, uint32_t c0, uint32_t cs) {
#pragma unroll
    for (int r = 0; r < R; r++) {
        const uint4 *wr = w + (size_t)min(row + (uint32_t)r, n_out - 1) * nv + c0;
#pragma unroll
        for (int j = 0; j < XC; j++) dst[r][j] = em_i8_ld_stream(wr + (uint32_t)j * cs);
    }
}

/* One row group: each of the R rows' dot with the lane's x slice, summed over the warp; lane r writes row r's
 * partial sum of this warp's slice to part[gl + r] (gl: the group's first row in the block). */
template <int R, int XC>
static __device__ __forceinline__ void em_i8_xs_group(const uint4 (&wv)[R][XC], const float4 (&xq)[XC][4],
                                                      float *part, uint32_t gl, int lane) {
#pragma unroll
    for (int r = 0; r < R; r++) {
        float acc = 0.0f;
#pragma unroll
        for (int j = 0; j < XC; j++) acc = em_i8_dot16(acc, wv[r][j], xq[j][0], xq[j][1], xq[j][2], xq[j][3]);
        acc = em_warp_sum(acc);
        if (lane == r) part[gl + (uint32_t)r] = acc;
    }
}

/* NT 1 only. Block: KS = n_in / (16 * 32 * XC) warps (the launcher's rule: 1 <= KS <= 16); warp k's lane l holds
 * x's chunks c = k * 32 + l + j * 32 * KS (j < XC: 16 * XC floats) in registers for the whole kernel and dots them
 * with the same chunks of every row of the block's range: ceil(ceil(n_out / R) / gridDim.x) groups of R rows.
 * Partial sums: dynamic shared memory [KS][rows of the block] (+ [KS] sums of x^2 in MODE 1), added in warp order
 * after the one barrier (deterministic), then scaled and stored / put through the epilogue by one thread a row. */
template <int XC, int R, int MODE>
__global__ void __launch_bounds__(512)
em_linear_i8_xs(const uint4 *__restrict__ w, const float *__restrict__ scale, const float *__restrict__ x,
                float *__restrict__ y, uint32_t n_in, uint32_t n_out, uint32_t x_stride, uint32_t y_stride,
                const em_i8_fuse f) {
    (void)x_stride;
    extern __shared__ float xs_part[];
    const uint32_t KS = blockDim.x >> 5, ks = threadIdx.x >> 5;
    const int lane = threadIdx.x & 31;
    const uint32_t nv = n_in / EM_I8_PER_VEC, cs = 32u * KS, c0 = ks * 32u + (uint32_t)lane;
    const uint32_t gpb = ((n_out + R - 1) / R + gridDim.x - 1) / gridDim.x, rpb = gpb * R;
    const uint32_t r0 = blockIdx.x * rpb;
    const uint32_t nrows = r0 < n_out ? min(rpb, n_out - r0) : 0u;
    const uint32_t ng = (nrows + R - 1) / R;
    float *part = xs_part + (size_t)ks * rpb;

    /* Launched with PDL (the default; EM_I8_XS_PDL=0 launches it plainly): dependents may launch at once. */
    if (f.xs_pdl) em_pdl_trigger();
    /* W's first group before the grid-dependency wait (never written by the kernel before: with PDL it streams while
     * the preceding kernel finishes), and this thread's first row's scale (constant). Issuing the first two groups
     * there measured no better (3.121 vs 3.106 ms a token, r4) and made r4's MODE 2 spill. */
    uint4 wa[R][XC], wb[R][XC];
    if (ng > 0) em_i8_xs_load<R, XC>(wa, w, nv, n_out, r0, c0, cs);
    float rsc = 0.0f;
    em_i8_conv cv;
    cv.on = false;
    if (threadIdx.x < nrows) rsc = __ldg(scale + r0 + threadIdx.x);
    em_pdl_wait();
    /* MODE 1's conv window, after the wait: under PDL the kernel before may still be running (v1 loads it earlier) */
    if constexpr (MODE == 1)
        if (threadIdx.x < nrows) em_i8_conv_load(cv, r0 + threadIdx.x, f);

    __shared__ float sc[MODE == 2 ? EM_I8_MAX_GROUPS : 1];
    __shared__ float heads[MODE == 2 ? EM_I8_MAX_HEADS : 1];
    if constexpr (MODE == 2) em_group_scales(sc, heads, f.sumsq, f.n_groups, f.hpg, f.inv_group, f.eps);

    /* The lane's x slice as the GEMV sees it (em_i8_x16: MODE 1 x * norm weight and sum(x^2); MODE 2 the gated
     * norm's y * norm weight * group scale), once for all the block's rows. */
    float4 xq[XC][4];
    float ss = 0.0f;
#pragma unroll
    for (int j = 0; j < XC; j++) em_i8_x16<MODE, true>(x, c0 + (uint32_t)j * cs, f, sc, ss, xq[j]);

    /* Two groups in registers, the next issued before the current one is used (as v1). */
    for (uint32_t gi = 0; gi < ng; gi += 2) {
        if (gi + 1 < ng) em_i8_xs_load<R, XC>(wb, w, nv, n_out, r0 + (gi + 1) * R, c0, cs);
        em_i8_xs_group<R, XC>(wa, xq, part, gi * R, lane);
        if (gi + 1 >= ng) break;
        if (gi + 2 < ng) em_i8_xs_load<R, XC>(wa, w, nv, n_out, r0 + (gi + 2) * R, c0, cs);
        em_i8_xs_group<R, XC>(wb, xq, part, (gi + 1) * R, lane);
    }
    if constexpr (MODE == 1) {
        const float sw = em_warp_sum(ss);
        if (lane == 0) xs_part[(size_t)KS * rpb + ks] = sw;
    }
    __syncthreads();
    float rs = 1.0f; /* MODE 1: rsqrt(mean(x^2) + eps), the warps' sums added in order */
    if constexpr (MODE == 1) {
        float sx = 0.0f;
        for (uint32_t k = 0; k < KS; k++) sx += xs_part[(size_t)KS * rpb + k];
        rs = rsqrtf(sx * f.inv_group + f.eps);
    }
    for (uint32_t i = threadIdx.x; i < nrows; i += blockDim.x) {
        float s = 0.0f;
        for (uint32_t k = 0; k < KS; k++) s += xs_part[(size_t)k * rpb + i]; /* fixed order: deterministic */
        const uint32_t row = r0 + i;
        const bool first = i == threadIdx.x;
        if (!first) {
            rsc = __ldg(scale + row);
            if constexpr (MODE == 1) em_i8_conv_load(cv, row, f);
        }
        em_i8_store<MODE>(y, 0, y_stride, row, MODE == 1 ? s * rs * rsc : s * rsc, f, cv);
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
                     uint32_t n_tok, uint32_t n_in, uint32_t n_out, uint32_t x_stride, uint32_t y_stride, int add) {
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
            const float s = em_warp_sum(acc[t]);
            if ((uint32_t)t < nt && lane == 0) {
                float *yp = y + (size_t)(t0 + t) * y_stride + row;
                *yp = add ? *yp + s * sc : s * sc;
            }
        }
    }
}

// ---- the variant table ---------------------------------------------------------------------------------

typedef void (*em_i8_kernel)(const uint4 *, const float *, const float *, float *, uint32_t, uint32_t, uint32_t,
                             uint32_t, const em_i8_fuse);

/* k: the plain GEMV (MODE 0); k1, k2: the same geometry with MODE 1 / MODE 2 (NT 1 variants only, else NULL). */
typedef struct em_i8_variant {
    int nt, rpw, u, ks, nw;
    em_i8_kernel k, k1, k2;
    const char *name;
    int xc; /* v3 x-stationary (em_linear_i8_xs): x chunks a lane holds (rpw: rows a group; ks, nw: from n_in) */
} em_i8_variant;

#define EM_I8_V(NT, RPW, U, KS, NW)                                                                           \
    { NT, RPW, U, KS, NW, em_linear_i8_vec<NT, RPW, U, KS, NW>, NULL, NULL,                                   \
      "i8 nt" #NT " rpw" #RPW " u" #U " ks" #KS " w" #NW, 0 }
#define EM_I8_VFM(RPW, U, KS, NW, M0, M1, M2)                                                                 \
    { 1, RPW, U, KS, NW, em_linear_i8_vec<1, RPW, U, KS, NW, 0, M0>, em_linear_i8_vec<1, RPW, U, KS, NW, 1, M1>,  \
      em_linear_i8_vec<1, RPW, U, KS, NW, 2, M2>, "i8 nt1 rpw" #RPW " u" #U " ks" #KS " w" #NW, 0 }
#define EM_I8_VF(RPW, U, KS, NW) EM_I8_VFM(RPW, U, KS, NW, 0, 0, 0)
#define EM_I8_VXS(XC, R)                                                                                      \
    { 1, R, XC, 0, 0, em_linear_i8_xs<XC, R, 0>, em_linear_i8_xs<XC, R, 1>, em_linear_i8_xs<XC, R, 2>,          \
      "i8 nt1 x-stationary xc" #XC " r" #R, XC }

/* The defaults first (em_i8_pick: indices fixed below); the rest only in tuning builds (-DEM_LIN_I8_SWEEP: every
 * NT 1 variant there also has its fused forms, for test_fused_cuda --sweep and EM_I8_NORM_VARIANT /
 * EM_I8_GATED_VARIANT). */
enum { EM_I8_V1_ONE_WAVE = 0, EM_I8_V1_WAVES = 1, EM_I8_V2 = 2, EM_I8_V3_WAVES = 3, EM_I8_V3_ONE_WAVE = 9,
       EM_I8_XS2_R4 = 15, EM_I8_XS2_R2 = 16 };
static const em_i8_variant em_i8_variants[] = {
    EM_I8_VF(2, 4, 1, 4),   /* 0: NT 1, one wave or short rows (out_proj) */
    EM_I8_VF(2, 2, 2, 4),   /* 1: NT 1, several waves: 4 rows (16 KB at n_in 4096) a block (in_proj, head) */
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
    EM_I8_VXS(2, 4),        /* 15, 16: NT 1, x-stationary (v3): n_in a multiple of 1024, at most 16384 */
    EM_I8_VXS(2, 2),
#ifdef EM_LIN_I8_SWEEP
    /* NT 1, for out_proj (4096 x 8192: 512 chunks a row, few rows) and the rest. EM_I8_VFM's last three numbers are
     * the minimum resident blocks (__launch_bounds__) of MODE 0, 1, 2: where ptxas's own register target spilled
     * 4 to 20 bytes (sm_90, nvcc 13.0), a bound that lets it take the registers it needs (docs/int8.md). */
    EM_I8_VF(1, 4, 2, 4),                /* in-block split-K: 2 warps a row, twice the warps of the default */
    EM_I8_VF(2, 4, 2, 4),
    EM_I8_VFM(1, 4, 4, 4, 0, 0, 4),      /* 4 warps a row: 1 row a block */
    EM_I8_VF(2, 2, 4, 4),
    EM_I8_VF(4, 2, 1, 4),                /* x read once per 4 rows */
    EM_I8_VFM(2, 8, 1, 4, 0, 0, 2),      /* more loads in flight: 2 x 16 a lane */
    EM_I8_VFM(2, 4, 1, 8, 0, 1, 0),      /* 8-warp blocks */
    EM_I8_VF(1, 4, 1, 4),                /* a row a warp: twice the warps, x read per row */
    EM_I8_VFM(1, 8, 1, 4, 0, 0, 3),
    EM_I8_VFM(1, 8, 2, 4, 0, 0, 3),      /* split-K with 8 loads a batch */
    EM_I8_VF(2, 4, 2, 8),                /* split-K in 8-warp blocks */
    EM_I8_VF(1, 4, 2, 8),
    EM_I8_VFM(2, 2, 2, 8, 0, 2, 2),
    EM_I8_VFM(1, 2, 8, 8, 4, 0, 0),      /* 8 warps a row */
    EM_I8_VFM(2, 2, 1, 4, 0, 0, 5),      /* fewer registers, more resident warps */
    EM_I8_VFM(2, 2, 1, 8, 0, 0, 2),
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
    /* v3 (em_i8_xs_config): resident blocks a SM + 1 (0: not asked yet) for [r4, r2][MODE][KS], filled on first use
     * so that a launch, the pick before it and the executor's step choice ask the occupancy calculator once */
    mutable std::atomic<int> xs_bps[2][3][17];
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
        if (V->xc) { /* v3: the block size follows n_in (em_i8_xs_config) */
        } else if (cudaFuncGetAttributes(&fa, (const void *)V->k) == cudaSuccess) {
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

static int em_i8_xs_fill(void);

/* v3's launch geometry (em_linear_i8_xs) for the kernel of `mode`: KS = n_in / (16 * 32 * xc) warps a block
 * (1..16), as many blocks as fit on the device at once (each with an equal share of ceil(n_out / R) row groups, the
 * kernel's own formula), and the partial sums' shared memory. 0 if the variant cannot take the shape. Host queries
 * only (safe inside a stream capture). */
static int em_i8_xs_config(int vi, int mode, uint32_t n_in, uint32_t n_out, cudaLaunchConfig_t *cfg) {
    const em_i8_variant *V = &em_i8_variants[vi];
    const uint32_t nv = n_in / EM_I8_PER_VEC, per = 32u * (uint32_t)V->xc;
    if (!V->xc || n_in % EM_I8_PER_VEC || n_out == 0 || nv % per) return 0;
    const uint32_t ks = nv / per;
    if (ks < 1 || ks > 16) return 0;
    const em_i8_kernel k = mode == 1 ? V->k1 : mode == 2 ? V->k2 : V->k;
    const em_i8_dev *d = em_i8_dev_info();
    std::atomic<int> *cached = &d->xs_bps[vi == EM_I8_XS2_R2][mode][ks];
    int bps = cached->load(std::memory_order_relaxed) - 1;
    if (bps < 0) {
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&bps, k, (int)(ks * 32u), 0) != cudaSuccess) {
            cudaGetLastError();
            bps = 0;
        }
        cached->store(bps + 1, std::memory_order_relaxed);
    }
    const long sms = d->sms.load(std::memory_order_relaxed);
    if (bps < 1 || sms < 1) bps = 1;
    const uint32_t groups = (n_out + (uint32_t)V->rpw - 1) / (uint32_t)V->rpw;
    const long slots = max(1L, (sms > 0 ? sms : 1) * bps * em_i8_xs_fill() / 100);
    const uint32_t g0 = (uint32_t)min((long)groups, slots);
    const uint32_t gpb0 = (groups + g0 - 1) / g0, grid = (groups + gpb0 - 1) / gpb0;
    const uint32_t rpb = (groups + grid - 1) / grid * (uint32_t)V->rpw; /* the kernel's rows a block */
    const size_t smem = sizeof(float) * ((size_t)ks * rpb + ks);
    if (smem > 48u * 1024u) return 0;
    cfg->gridDim = dim3(grid);
    cfg->blockDim = dim3(ks * 32u);
    cfg->dynamicSmemBytes = smem;
    return 1;
}

/* EM_I8_XS (read once; A/B and tuning): unset, "on" or "r4": one-token GEMVs that v3 takes go to it with 4 rows a
 * group (the default since the fifth session: scripts/int8-decode-ab.sh, 3.121 vs 3.201 ms a token for r2); "r2":
 * 2 rows a group; "off": v1's geometries. Anything else: the default. @return 0 off, 1 r4, 2 r2 */
static int em_i8_xs_mode(void) {
    static const char *const values[] = { "off", "on", "r4", "r2" };
    static const int mode[] = { 1, 0, 1, 1, 2 };
    static std::atomic<int> cache{-1};
    return mode[em_env_once("EM_I8_XS", values, 4, &cache)];
}

/* EM_I8_XS_PDL (read once): v3 is launched with PDL when the caller allows it (EM_LINEAR_W_CONST), triggering its
 * dependents at entry; "0" launches it plainly (A/B). */
static int em_i8_xs_pdl(void) {
    static const char *const values[] = { "0" };
    static std::atomic<int> cache{-1};
    return em_env_once("EM_I8_XS_PDL", values, 1, &cache) == 0;
}

/* EM_I8_XS_FILL (read once; tuning): v3's grid as a share of the blocks that fit at once: "75" or "50" (percent)
 * leave room on each SM for the next kernel's blocks to start under PDL and stream their first W groups; "200" or
 * "400" make 2 or 4 waves of smaller blocks, whose staggered exits let the next kernel's blocks start on some SMs
 * while others still stream; unset: one wave of all of them. @return the percentage */
static int em_i8_xs_fill(void) {
    static const char *const values[] = { "75", "50", "200", "400" };
    static const int pct[] = { 100, 75, 50, 200, 400 };
    static std::atomic<int> cache{-1};
    return pct[em_env_once("EM_I8_XS_FILL", values, 4, &cache)];
}

/* The v3 variant for one token (-1: none takes n_in / n_out): 2 x chunks a lane, so n_in a multiple of 1024 up to
 * 16384 (KS 1..16 warps a block; 4 chunks a lane spilled at 128 registers and would add only n_in 16384..32768). */
static int em_i8_xs_pick(uint32_t n_out, uint32_t n_in) {
    const int m = em_i8_xs_mode();
    if (m == 0) return -1;
    cudaLaunchConfig_t cfg = {};
    const int xs2 = m == 2 ? EM_I8_XS2_R2 : EM_I8_XS2_R4;
    return em_i8_xs_config(xs2, 0, n_in, n_out, &cfg) ? xs2 : -1;
}

/* The variant for a group of nt tokens (see the history: v1, v3). A KS 2 / U 2 warp needs 32 * 2 * 2 * 2 chunks a
 * row (n_in >= 4096) for two batches; shorter rows take the whole-row variant. */
static int em_i8_pick_v1(int nt, uint32_t n_out, uint32_t n_in) {
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

static int em_i8_pick(int nt, uint32_t n_out, uint32_t n_in) {
    const int xs = nt == 1 ? em_i8_xs_pick(n_out, n_in) : -1;
    return xs >= 0 ? xs : em_i8_pick_v1(nt, n_out, n_in);
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
    if (V->xc) {
        if (!em_i8_xs_config(vi, 0, a->n_in, a->n_out, &cfg))
            return em_fail(EM_ERR_UNSUPPORTED, "em_cuda_linear_i8: %s cannot take n_in %u, n_out %u", V->name,
                           a->n_in, a->n_out);
    } else {
        cfg.gridDim = dim3(em_i8_blocks(vi, a->n_out));
        cfg.blockDim = dim3((unsigned)V->nw * 32u);
    }
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    const int pdl = (a->flags & EM_LINEAR_W_CONST) && (!V->xc || em_i8_xs_pdl()) &&
                    em_i8_dev_info()->cc_major.load(std::memory_order_relaxed) >= 9;
    if (pdl) {
        attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
    }
    em_i8_fuse none = {};
    none.xs_pdl = V->xc && pdl;
    none.add = (a->flags & EM_LINEAR_ADD) != 0;
    const cudaError_t e =
        cudaLaunchKernelEx(&cfg, V->k, (const uint4 *)a->w, a->w_scale, x, y, a->n_in, a->n_out, xs, ys, none);
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
                                                                     a->n_tok, a->n_in, a->n_out, xs, ys,
                                                                     (a->flags & EM_LINEAR_ADD) != 0);
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

// ---- the decode step's fused ops with INT8 weights (ops.h: em_norm_linear_args, em_gated_linear_args) ----------

/* Tuning: EM_I8_NORM_VARIANT / EM_I8_GATED_VARIANT = an index of em_i8_variants with fused forms (NT 1; the list
 * test_fused_cuda --sweep prints) overrides the fused op's pick; anything else (or unset) is ignored. Read once. */
static int em_i8_env_variant(const char *name, std::atomic<int> *cache) {
    int v = cache->load(std::memory_order_relaxed);
    if (v == -2) {
        const char *e = getenv(name);
        char *end = NULL;
        const long l = e && *e ? strtol(e, &end, 10) : -1;
        v = end && *end == '\0' && l >= 0 && l < EM_I8_N_VARIANTS && em_i8_variants[l].k1 ? (int)l : -1;
        cache->store(v, std::memory_order_relaxed);
    }
    return v;
}

static em_status em_i8_fused_launch(int vi, int mode, const void *w, const float *scale, const float *x, float *y,
                                    uint32_t n_in, uint32_t n_out, uint32_t flags, const em_i8_fuse &f,
                                    cudaStream_t s, const char *name) {
    const em_i8_variant *V = &em_i8_variants[vi];
    const em_i8_kernel k = mode == 1 ? V->k1 : V->k2;
    if (!k) return em_fail(EM_ERR_UNSUPPORTED, "%s: variant %d (%s) has no fused form", name, vi, V->name);
    cudaLaunchConfig_t cfg = {};
    if (V->xc) {
        if (!em_i8_xs_config(vi, mode, n_in, n_out, &cfg)) /* (the pick checked mode 0's geometry) */
            return em_i8_fused_launch(em_i8_pick_v1(1, n_out, n_in), mode, w, scale, x, y, n_in, n_out, flags, f, s,
                                      name);
    } else {
        cfg.gridDim = dim3(em_i8_blocks(vi, n_out));
        cfg.blockDim = dim3((unsigned)V->nw * 32u);
    }
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    const int pdl = (flags & EM_LINEAR_W_CONST) && (!V->xc || em_i8_xs_pdl()) &&
                    em_i8_dev_info()->cc_major.load(std::memory_order_relaxed) >= 9;
    em_i8_fuse fx = f;
    fx.xs_pdl = V->xc && pdl;
    if (pdl) {
        attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
    }
    cudaError_t e = cudaLaunchKernelEx(&cfg, k, (const uint4 *)w, scale, x, y, n_in, n_out, n_in, n_out, fx);
    if (e == cudaSuccess) e = cudaGetLastError();
    else cudaGetLastError();
    if (e == cudaSuccess) return EM_OK;
    return em_fail(EM_ERR_DEVICE, "%s: launch of %s (n_in %u, n_out %u) failed: %s: %s", name, V->name, n_in, n_out,
                   cudaGetErrorName(e), cudaGetErrorString(e));
}

/* The int8 vector path's conditions for a fused op: w and x 16-byte aligned, n_in % 16 == 0 and n_in <= 2^20 (rows
 * as em-pack writes them; also what keeps MODE 2's chunk -> group multiply-high exact). */
static int em_i8_fused_vec_ok(const void *w, const float *scale, const float *x, uint32_t n_in, em_dtype dt) {
    return dt == EM_DTYPE_I8 && w && scale && x && n_in % EM_I8_PER_VEC == 0 && n_in <= (1u << 20) &&
           em_i8_aligned16(w) && em_i8_aligned16(x);
}

extern "C" int em_cuda_norm_linear_i8_supported(const em_norm_linear_args *a) {
    if (!a || !a->y || !a->norm_w || !em_i8_aligned16(a->norm_w) || a->n_out == 0) return 0;
    if (!em_i8_fused_vec_ok(a->w, a->w_scale, a->x, a->n_in, a->w_dtype)) return 0;
    if (a->conv_dim) {
        if (!a->conv_state || !a->conv_w || a->K < 2 || a->K > EM_I8_CONV_MAXK) return 0;
        if ((uint64_t)a->conv_off + a->conv_dim > a->n_out) return 0;
    }
    return a->act <= EM_ACT_SILU && (a->act == EM_ACT_NONE || a->conv_dim == 0);
}

static em_status em_i8_norm_linear_run(const em_norm_linear_args *a, void *stream, int vi) {
    em_i8_fuse f = {};
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
    return em_i8_fused_launch(vi, 1, a->w, a->w_scale, a->x, a->y, a->n_in, a->n_out, a->flags, f,
                              (cudaStream_t)stream, "em_cuda_norm_linear_i8");
}

static em_status em_i8_norm_linear_refused(void) {
    return em_fail(EM_ERR_INVALID_ARG, "em_cuda_norm_linear_i8: unsupported arguments (I8 weights with w_scale, "
                   "16-byte aligned w / x / norm_w, n_in %% 16 == 0 and <= 2^20, conv rows inside n_out and "
                   "2 <= K <= %d, an activation only without conv are needed)", EM_I8_CONV_MAXK);
}

extern "C" em_status em_cuda_norm_linear_i8(const em_norm_linear_args *a, void *stream) {
    if (!em_cuda_norm_linear_i8_supported(a)) return em_i8_norm_linear_refused();
    static std::atomic<int> env{-2};
    const int ev = em_i8_env_variant("EM_I8_NORM_VARIANT", &env);
    return em_i8_norm_linear_run(a, stream, ev >= 0 ? ev : em_i8_pick(1, a->n_out, a->n_in));
}

extern "C" int em_cuda_gated_linear_i8_supported(const em_gated_linear_args *a) {
    if (!a || !a->x || !a->sumsq || !a->norm_w || !em_i8_aligned16(a->norm_w) || a->n_out == 0) return 0;
    if (!em_i8_fused_vec_ok(a->w, a->w_scale, a->y, a->n_in, a->w_dtype)) return 0;
    if (a->group == 0 || a->P == 0 || a->group % EM_I8_PER_VEC != 0 || a->group % a->P != 0 || a->n_in % a->group != 0)
        return 0;
    return a->n_in / a->group <= EM_I8_MAX_GROUPS && a->n_in / a->P <= EM_I8_MAX_HEADS;
}

static em_status em_i8_gated_linear_run(const em_gated_linear_args *a, void *stream, int vi) {
    em_i8_fuse f = {};
    f.nw = a->norm_w;
    f.eps = a->eps;
    f.sumsq = a->sumsq;
    const uint32_t vpg = a->group / EM_I8_PER_VEC; /* 16-weight chunks a group */
    f.vpg_magic = vpg > 1 ? (uint32_t)((((uint64_t)1 << 32) + vpg - 1) / vpg) : 0u;
    f.hpg = a->group / a->P;
    f.n_groups = a->n_in / a->group;
    f.inv_group = 1.0f / (float)a->group;
    f.trigger_late = em_pdl_trigger_late();
    return em_i8_fused_launch(vi, 2, a->w, a->w_scale, a->y, a->x, a->n_in, a->n_out, a->flags, f,
                              (cudaStream_t)stream, "em_cuda_gated_linear_i8");
}

static em_status em_i8_gated_linear_refused(void) {
    return em_fail(EM_ERR_INVALID_ARG, "em_cuda_gated_linear_i8: unsupported arguments (I8 weights with w_scale, "
                   "16-byte aligned w / y / norm_w, n_in %% 16 == 0 and <= 2^20, group %% 16 == 0, group %% P == 0, "
                   "at most %d groups and %d heads)", EM_I8_MAX_GROUPS, EM_I8_MAX_HEADS);
}

/* Default geometry: em_cuda_linear_i8's NT 1 pick (out_proj of the 8B shape: the one-wave rpw2 u4 ks1). Whether
 * the several-waves geometry wins here as it did for bf16's gated_linear is for test_fused_cuda --sweep to say. */
extern "C" em_status em_cuda_gated_linear_i8(const em_gated_linear_args *a, void *stream) {
    if (!em_cuda_gated_linear_i8_supported(a)) return em_i8_gated_linear_refused();
    static std::atomic<int> env{-2};
    const int ev = em_i8_env_variant("EM_I8_GATED_VARIANT", &env);
    return em_i8_gated_linear_run(a, stream, ev >= 0 ? ev : em_i8_pick(1, a->n_out, a->n_in));
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

extern "C" int em_cuda_fused_i8_default_variant(int gated, uint32_t n_out, uint32_t n_in) {
    static std::atomic<int> env_n{-2}, env_g{-2};
    const int ev = gated ? em_i8_env_variant("EM_I8_GATED_VARIANT", &env_g)
                         : em_i8_env_variant("EM_I8_NORM_VARIANT", &env_n);
    return ev >= 0 ? ev : em_i8_pick(1, n_out, n_in);
}

extern "C" int em_cuda_fused_i8_fast(int gated, uint32_t n_out, uint32_t n_in) {
    const int v = em_cuda_fused_i8_default_variant(gated, n_out, n_in);
    return v >= 0 && v < EM_I8_N_VARIANTS && em_i8_variants[v].xc != 0;
}

static int em_i8_fused_variant_ok(int i) { return i >= 0 && i < EM_I8_N_VARIANTS && em_i8_variants[i].k1; }

extern "C" em_status em_cuda_norm_linear_i8_variant(const em_norm_linear_args *a, void *stream, int i) {
    if (!em_cuda_norm_linear_i8_supported(a)) return em_i8_norm_linear_refused();
    if (!em_i8_fused_variant_ok(i))
        return em_fail(EM_ERR_UNSUPPORTED, "em_cuda_norm_linear_i8_variant: variant %d has no fused form", i);
    return em_i8_norm_linear_run(a, stream, i);
}

extern "C" em_status em_cuda_gated_linear_i8_variant(const em_gated_linear_args *a, void *stream, int i) {
    if (!em_cuda_gated_linear_i8_supported(a)) return em_i8_gated_linear_refused();
    if (!em_i8_fused_variant_ok(i))
        return em_fail(EM_ERR_UNSUPPORTED, "em_cuda_gated_linear_i8_variant: variant %d has no fused form", i);
    return em_i8_gated_linear_run(a, stream, i);
}
