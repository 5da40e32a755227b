/*
 * attention.cu — causal grouped-query attention over a BF16 KV cache on the GPU (issue 9): the hybrid's attention
 * layers, decode (one token: flash-decoding, split over the context) and prefill (a prompt chunk: flash-attention
 * tiles on the tensor cores). Twin: em_ref_attention_bf16 (kernels/ref/attention_bf16_ref.c; em_attn_dev_args in
 * ops.h). Test and benchmark: tests/test_attention_cuda.c (`--perf`: decode at 512, 4K and 32K tokens of context on
 * the hybrid 8B shape, GB/s of KV bytes against the read bandwidth measured in the same run; prefill 512 tokens at
 * 0, 4096 and 32256, SIMT against tensor cores). docs/hybrid-cuda.md.
 *
 * Why this shape: at batch 1 a decode step of an attention layer reads its whole K and V cache once. For the
 * hybrid 8B (8 KV heads x 128, bf16) that is 4 KiB a token of context: 128 MiB at 32K, ~40 us at 3.3 TB/s per
 * layer, against 32 heads x 2 x 128 FMA per key (nothing). So decode is judged by how close it streams the cache
 * at the read bandwidth, and it needs the whole GPU busy even though there are only 8 KV heads: the context is
 * split across blocks (flash-decoding) and the partial softmaxes are merged after.
 *
 * Kernels (each call queues 2 or 3 of them, in stream order; nothing is allocated, nothing synchronises):
 *   em_attn_append_kernel    one block per new token: RoPE on q (in place) and on k, then k and v rounded to bf16
 *                            (nearest even, as em_f32_to_bf16) into cache row pos + t. It runs first, so the
 *                            attention kernels that follow on the stream see the new rows (the token attends to
 *                            itself). The angles are formed in double exactly as the twins form them, and the
 *                            rotation is done with __fmul_rn/__fadd_rn (no FMA contraction), so the rows written
 *                            are the twin's bit for bit (the test counts the inexact ones).
 *   em_attn_decode_kernel<D, REP>   (n_tok == 1) grid (S splits, n_kv_head, rep / REP): a block takes rows
 *                            [s L, s L + L) of one KV head's cache for REP of its query heads together (GQA: each
 *                            K/V row is read once for all of them). A group of D/8 lanes owns a key row, each
 *                            lane 16 bytes (8 bf16) of it: a warp instruction reads 512 contiguous-by-row bytes,
 *                            ld.global.nc.L1::no_allocate (the cache is read once a step). Each group takes T = 4
 *                            rows per iteration and issues their 2T K/V loads before any use (8 x 16 B in flight a
 *                            lane). Scores: 8-element partial dots, a segmented xor-shuffle over the D/8 lanes.
 *                            Online softmax per group in the log2 domain (q pre-scaled by scale * log2 e, exp2f),
 *                            one rescale per 4 rows; the block's groups are merged in shared memory in a fixed
 *                            order and the block writes (max, sum, unnormalised output) per query head to the
 *                            workspace, or, when S == 1, the normalised output directly.
 *   em_attn_combine_kernel   (S > 1) one block per query head, a thread per dim: the S partials merged in split
 *                            order (deterministic: no atomics; the result depends only on S, which depends on
 *                            the context length and the device's SM count and occupancy).
 *   em_attn_prefill_tc_kernel<D, LDSM>  (n_tok > 1, the default where it applies: head_dim 64 or 128, sm_80+)
 *                            flash-attention-2 on the tensor cores: mma.sync.aligned.m16n8k16 bf16 x bf16 -> f32
 *                            (inline PTX; fragment layouts written out above the kernel). Query rows as the SIMT
 *                            kernel's (below): r = t rep + i of one KV head. Block: 4 warps x 16 rows = 64 rows
 *                            (16 tokens of the 8B's rep 4) of one KV head; key tiles of 64 rows. Each warp holds its
 *                            Q rows as bf16 A fragments for the whole kernel (q * scale * log2 e, rounded once), its
 *                            16 x 64 score tile and its 16 x D output in f32 registers. K and V tiles go to shared
 *                            memory by cp.async (16 B, L2 only) into rows padded to D + 8 bf16 (ldmatrix
 *                            conflict-free); one buffer each, overlapped FA2-style: V(j) streams in under S = Q K(j)^T
 *                            and the softmax, K(j + 1) under O += P V(j); two __syncthreads a tile. K fragments by
 *                            ldmatrix.x4, V fragments by ldmatrix.x4.trans (LDSM = false: plain shared loads, the
 *                            test's check of that addressing). Online softmax in the log2 domain per row, the row's
 *                            64 scores spread over a lane quad (2 shuffles for the max); P rounded to bf16 for the
 *                            P V MMA, the row sum l kept from the f32 p. Causal mask only in tiles the diagonal
 *                            crosses; a warp skips tiles past its last row's keys; rows past the block's last key
 *                            are zero-filled in shared memory, never read from the cache.
 *                            Precision: bf16 q and bf16 P against the twin (f32 q, f32 P), measured with a CPU model
 *                            of exactly this rounding on the test's inputs: max rel err 1.9e-3 .. 3.1e-3 (q split
 *                            into bf16 hi + lo would give 1.1e-3 .. 1.7e-3, P's rounding then dominating, for 1.5x
 *                            the MMAs and 32 more registers: not taken; the test's limit is 1e-2).
 *   em_attn_prefill_kernel<D> (path 2; the fallback where the tensor-core kernel does not apply) flash-attention
 *                            tiles on fp32 SIMT. Query rows of one KV head are (token, head-of-the-group) pairs,
 *                            r = t rep + i, so a block of 16 rows shares each K/V tile across its GQA heads. K/V tiles of 32 keys
 *                            widened to f32 in shared memory (K padded to D + 1 floats a row: the lane-per-key dot
 *                            reads are conflict-free); a warp holds 4 query rows, lane j scores key j, the online
 *                            softmax is per row (warp max), the lanes own D / 32 output dims each and take p_j by
 *                            shuffle. Keys [0, pos + t] for row t (causal over the cache and the chunk).
 *
 * Split choice (decode): S = min(one wave of resident blocks / (n_kv_head * rep / REP), ceil(ctx / 64), 256),
 * then L = ceil(ctx / S) rounded up to 64 rows and S = ceil(ctx / L): every block streams the same number of rows
 * and all of them are resident at once (8B at 32K on an H100: S 64, 512 rows a block). The kernel works L out again
 * from the context it reads and gridDim.x (the same L), so that with em_attn_dev_args.pos_dev (the position in
 * device memory, for a decode step captured once in a CUDA graph) the launch is sized for max_ctx and only the
 * position changes between replays: the splits past the context find no rows and leave an empty partial.
 *
 * Version history (each line: what changed, and why):
 *   v1 the kernels above but the tensor-core prefill; prefill on fp32 SIMT. H100: hybrid 8B prefill at a 32768-token
 *      prompt 10470 tok/s against llama.cpp's 17697 (0.59x) because the SIMT prefill uses no tensor cores (issue 9).
 *   v2 (this file) em_attn_prefill_tc_kernel, the default for n_tok > 1: bf16 mma.sync flash-attention-2. Written
 *      without a GPU; its index logic was run in a host emulation (128 threads a block, the warp collectives
 *      emulated from the PTX ISA) against a double reference. H100 (fifth session): every prefill case of
 *      test_attention_cuda passes on paths 2, 3 and 4; 512 tokens after 0 / 4096 / 32256 take 32.5 / 168.7 /
 *      1078.9 us (66 / 216 / 253 TFLOP/s), 5.6x / 12.8x / 14.3x the SIMT kernel; the hybrid 8B's pp32768 went from
 *      10470 to 26007 tok/s (1.43x llama.cpp). docs/hybrid-cuda.md keeps the figures.
 *   Paths (em_cuda_attention_path, tests): 0 by n_tok, 1 decode, 2 SIMT prefill, 3 tensor-core prefill, 4 the same
 *      with plain shared loads in place of ldmatrix.
 *
 * Build: part of the library with -DEM_CUDA=ON. Standalone, with the resource report (registers, spills):
 *   nvcc -O3 -std=c++17 -arch=sm_90 -Xptxas -v -Iinclude -Ikernels -Iruntime -Iplatform \
 *        -c kernels/attention.cu -o /tmp/attention.o
 * Resource report for sm_90 (nvcc 13.0): docs/hybrid-cuda.md.
 */
#ifndef EM_HAVE_CUDA
#define EM_HAVE_CUDA 1 /* a .cu file is a CUDA build by definition (the standalone command defines nothing) */
#endif

/* C headers first: util.h is included inside extern "C" below (see linear.cu). */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cuda_runtime.h>

#include <atomic>
#include <type_traits>

#include "cuda_ops.h"
#include "gemv_common.cuh" /* em_env_once */
#include "workspace.h"
extern "C" {
#include "util.h" /* em_fail */
}

// ---- launch geometry ---------------------------------------------------------------------------------

#define EM_ATTN_WARPS 4                     /* warps per block, every kernel but combine */
#define EM_ATTN_THREADS (EM_ATTN_WARPS * 32)
#define EM_ATTN_T 4                         /* decode: key rows per lane group per iteration */
/* EM_ATTN_UNIT (rows per split are a multiple of it), EM_ATTN_MAX_SPLITS, em_attn_splits_max: kernels/workspace.h */
#define EM_ATTN_PF_R 4                      /* prefill: query rows per warp */
#define EM_ATTN_PF_BQ (EM_ATTN_WARPS * EM_ATTN_PF_R) /* prefill: query rows per block */
#define EM_ATTN_PF_BK 32                    /* prefill: keys per tile (one per lane) */
#define EM_ATTN_MAX_DEVICES 64
#define EM_LOG2E 1.4426950408889634f

/* The kernels' arguments, resolved from em_attn_dev_args by the launcher (strides explicit). */
struct em_attn_kp {
    float *q;             /* [n_tok, Hq, D], row stride qs */
    const float *k, *v;   /* [n_tok, Hkv, D], row stride kvs */
    uint16_t *kc, *vc;    /* [max_ctx, Hkv, D] bf16 */
    float *out;           /* [n_tok, Hq, D], row stride os */
    uint32_t n_tok, Hq, Hkv, D, rep, pos;
    const uint32_t *pos_dev; /* when set, the position is *pos_dev (read at run time: graph replay), not pos */
    uint32_t qs, kvs, os;
    uint32_t rope_dims;
    float rope_base;
    float scale_log2;     /* scale * log2(e): scores in the log2 domain */
};

// ---- device helpers ----------------------------------------------------------------------------------

/* 16 bytes of the cache, read once a step: non-coherent path, no L1 allocation (see linear.cu). Rows written by
 * the append kernel earlier on the stream are visible: the nc path is only stale within one kernel. */
static __device__ __forceinline__ uint4 em_attn_ld(const uint16_t *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

static __device__ __forceinline__ float em_attn_lo(uint32_t u) { return __uint_as_float(u << 16); }
static __device__ __forceinline__ float em_attn_hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }

/* the 8 floats of a 16-byte bf16 chunk, in memory order */
static __device__ __forceinline__ void em_attn_unpack(uint4 w, float (&f)[8]) {
    f[0] = em_attn_lo(w.x); f[1] = em_attn_hi(w.x);
    f[2] = em_attn_lo(w.y); f[3] = em_attn_hi(w.y);
    f[4] = em_attn_lo(w.z); f[5] = em_attn_hi(w.z);
    f[6] = em_attn_lo(w.w); f[7] = em_attn_hi(w.w);
}

/* f32 -> bf16 bits, nearest even, NaN kept quiet: em_f32_to_bf16 (runtime/util.h) exactly */
static __device__ __forceinline__ uint16_t em_attn_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static __device__ __forceinline__ uint32_t em_attn_pos(const em_attn_kp &p) { return p.pos_dev ? *p.pos_dev : p.pos; }

static __device__ __forceinline__ float em_attn_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
static __device__ __forceinline__ float em_attn_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// ---- append: RoPE, and the new rows into the cache ---------------------------------------------------------

__global__ void __launch_bounds__(256) em_attn_append_kernel(const em_attn_kp p) {
    __shared__ float cs[EM_ATTN_MAX_HEAD_DIM / 2], sn[EM_ATTN_MAX_HEAD_DIM / 2];
    const uint32_t t = blockIdx.x, half = p.rope_dims / 2, D = p.D;
    const uint64_t ap = (uint64_t)em_attn_pos(p) + t;
    /* the angles as the twins form them: double, rounded once to f32 */
    for (uint32_t i = threadIdx.x; i < half; i += blockDim.x) {
        const double th = (double)ap * pow((double)p.rope_base, -2.0 * (double)i / (double)p.rope_dims);
        cs[i] = (float)cos(th);
        sn[i] = (float)sin(th);
    }
    __syncthreads();
    if (half) { /* q, in place: one thread per (head, pair) */
        float *q = p.q + (size_t)t * p.qs;
        for (uint32_t idx = threadIdx.x; idx < p.Hq * half; idx += blockDim.x) {
            const uint32_t h = idx / half, i = idx % half;
            float *x = q + (size_t)h * D;
            const float x1 = x[i], x2 = x[i + half];
            x[i] = __fsub_rn(__fmul_rn(x1, cs[i]), __fmul_rn(x2, sn[i]));
            x[i + half] = __fadd_rn(__fmul_rn(x2, cs[i]), __fmul_rn(x1, sn[i]));
        }
    }
    const float *k = p.k + (size_t)t * p.kvs, *v = p.v + (size_t)t * p.kvs;
    const size_t row = (size_t)ap * p.Hkv * D;
    for (uint32_t idx = threadIdx.x; idx < p.Hkv * D; idx += blockDim.x) {
        const uint32_t g = idx / D, d = idx % D;
        const float *kh = k + (size_t)g * D;
        float kv = kh[d];
        if (d < half) kv = __fsub_rn(__fmul_rn(kh[d], cs[d]), __fmul_rn(kh[d + half], sn[d]));
        else if (d < 2 * half) kv = __fadd_rn(__fmul_rn(kh[d], cs[d - half]), __fmul_rn(kh[d - half], sn[d - half]));
        p.kc[row + idx] = em_attn_bf16(kv);
        p.vc[row + idx] = em_attn_bf16(v[idx]);
    }
}

// ---- decode: split-K over the context ----------------------------------------------------------------------

template <int D, int REP>
__global__ void __launch_bounds__(EM_ATTN_THREADS) em_attn_decode_kernel(const em_attn_kp p, float *__restrict__ ws_ml,
                                                                        float *__restrict__ ws_acc) {
    constexpr int LPR = D / 8;                 /* lanes a key row */
    constexpr int GPW = 32 / LPR;              /* row groups a warp */
    constexpr int NG = EM_ATTN_WARPS * GPW;    /* row groups a block */
    constexpr int T = EM_ATTN_T;
    __shared__ float sm_m[NG][REP], sm_l[NG][REP];
    __shared__ __align__(16) float sm_acc[NG][REP][D];

    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint32_t sub = lane % LPR, grp = warp * GPW + lane / LPR;
    const uint32_t s = blockIdx.x, g = blockIdx.y, h0 = g * p.rep + blockIdx.z * REP;
    /* rows a split: ceil(ctx / S) rounded up to EM_ATTN_UNIT (the launcher's L when it chose S for this ctx; with
     * pos_dev, S was chosen for max_ctx and the splits past the context are empty) */
    const uint32_t n_keys = em_attn_pos(p) + 1, S = gridDim.x;
    const uint32_t L = ((n_keys + S - 1) / S + EM_ATTN_UNIT - 1) / EM_ATTN_UNIT * EM_ATTN_UNIT;
    const uint32_t j_begin = min(s * L, n_keys), j_end = min(j_begin + L, n_keys); /* j_begin == j_end: empty */

    float q[REP][8];
#pragma unroll
    for (int r = 0; r < REP; r++)
#pragma unroll
        for (int e = 0; e < 8; e++) q[r][e] = p.q[(size_t)(h0 + r) * D + sub * 8 + e] * p.scale_log2;

    float m[REP], l[REP], acc[REP][8];
#pragma unroll
    for (int r = 0; r < REP; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; e++) acc[r][e] = 0.0f;
    }

    const size_t rs = (size_t)p.Hkv * D; /* elements from one cache row to the next */
    const uint16_t *kb = p.kc + (size_t)g * D + sub * 8, *vb = p.vc + (size_t)g * D + sub * 8;
    for (uint32_t j0 = j_begin; j0 < j_end; j0 += NG * T) {
        uint4 kt[T], vt[T];
        bool ok[T];
#pragma unroll
        for (int t = 0; t < T; t++) { /* all 2T loads first; rows past the slice re-read its last row, unused */
            uint32_t j = j0 + t * NG + grp;
            ok[t] = j < j_end;
            j = ok[t] ? j : j_end - 1;
            kt[t] = em_attn_ld(kb + j * rs);
            vt[t] = em_attn_ld(vb + j * rs);
        }
        float sc[T][REP];
#pragma unroll
        for (int t = 0; t < T; t++) {
            float kf[8];
            em_attn_unpack(kt[t], kf);
#pragma unroll
            for (int r = 0; r < REP; r++) {
                float a = 0.0f;
#pragma unroll
                for (int e = 0; e < 8; e++) a = fmaf(q[r][e], kf[e], a);
                sc[t][r] = a;
            }
        }
#pragma unroll
        for (int o = LPR / 2; o > 0; o >>= 1) /* segmented: xor below LPR stays inside the row's lanes */
#pragma unroll
            for (int t = 0; t < T; t++)
#pragma unroll
                for (int r = 0; r < REP; r++) sc[t][r] += __shfl_xor_sync(0xffffffffu, sc[t][r], o);
        float vf[T][8];
#pragma unroll
        for (int t = 0; t < T; t++) em_attn_unpack(vt[t], vf[t]);
#pragma unroll
        for (int r = 0; r < REP; r++) {
            float mt = -INFINITY;
#pragma unroll
            for (int t = 0; t < T; t++) mt = ok[t] ? fmaxf(mt, sc[t][r]) : mt;
            const float mn = fmaxf(m[r], mt);
            if (mn == -INFINITY) continue; /* no row of this group yet (group-uniform) */
            const float c = exp2f(m[r] - mn); /* 0 on the group's first rows (m = -inf) */
            float pt[T], ps = 0.0f;
#pragma unroll
            for (int t = 0; t < T; t++) {
                pt[t] = ok[t] ? exp2f(sc[t][r] - mn) : 0.0f;
                ps += pt[t];
            }
            l[r] = fmaf(l[r], c, ps);
#pragma unroll
            for (int e = 0; e < 8; e++) {
                float a = acc[r][e] * c;
#pragma unroll
                for (int t = 0; t < T; t++) a = fmaf(pt[t], vf[t][e], a);
                acc[r][e] = a;
            }
            m[r] = mn;
        }
    }

    /* the block's groups merged in a fixed order */
#pragma unroll
    for (int r = 0; r < REP; r++) {
#pragma unroll
        for (int e = 0; e < 8; e++) sm_acc[grp][r][sub * 8 + e] = acc[r][e];
        if (sub == 0) {
            sm_m[grp][r] = m[r];
            sm_l[grp][r] = l[r];
        }
    }
    __syncthreads();
    const bool direct = gridDim.x == 1;
    for (uint32_t idx = threadIdx.x; idx < (uint32_t)(REP * D); idx += EM_ATTN_THREADS) {
        const uint32_t r = idx / D, d = idx % D, h = h0 + r;
        float M = -INFINITY;
#pragma unroll
        for (int i = 0; i < NG; i++) M = fmaxf(M, sm_m[i][r]);
        float Ls = 0.0f, A = 0.0f;
#pragma unroll
        for (int i = 0; i < NG; i++) {
            const float mi = sm_m[i][r];
            const float w = mi == -INFINITY ? 0.0f : exp2f(mi - M); /* a group with no row of the slice */
            Ls = fmaf(sm_l[i][r], w, Ls);
            A = fmaf(sm_acc[i][r][d], w, A);
        }
        if (direct) {
            p.out[(size_t)h * D + d] = A / Ls;
        } else {
            ws_acc[((size_t)s * p.Hq + h) * D + d] = A;
            if (d == 0) {
                ws_ml[((size_t)s * p.Hq + h) * 2] = M;
                ws_ml[((size_t)s * p.Hq + h) * 2 + 1] = Ls;
            }
        }
    }
}

/* out[h][d] = sum_s acc_s[h][d] 2^(m_s - M) / sum_s l_s 2^(m_s - M), splits in order. Block = D threads. An empty
 * split (past the context, pos_dev launches only) left m = -inf, l = 0, acc = 0 and weighs 0; split 0 never is. */
__global__ void em_attn_combine_kernel(const em_attn_kp p, uint32_t S, const float *__restrict__ ws_ml,
                                       const float *__restrict__ ws_acc) {
    const uint32_t h = blockIdx.x, d = threadIdx.x, D = p.D;
    float M = -INFINITY;
    for (uint32_t s = 0; s < S; s++) M = fmaxf(M, ws_ml[((size_t)s * p.Hq + h) * 2]);
    float Ls = 0.0f, A = 0.0f;
    for (uint32_t s = 0; s < S; s++) {
        const size_t i = (size_t)s * p.Hq + h;
        const float mi = ws_ml[i * 2];
        const float w = mi == -INFINITY ? 0.0f : exp2f(mi - M);
        Ls = fmaf(ws_ml[i * 2 + 1], w, Ls);
        A = fmaf(ws_acc[i * D + d], w, A);
    }
    p.out[(size_t)h * D + d] = A / Ls;
}

// ---- prefill: flash-attention tiles, fp32 SIMT ----------------------------------------------------------------

template <int D>
__global__ void __launch_bounds__(EM_ATTN_THREADS) em_attn_prefill_kernel(const em_attn_kp p) {
    constexpr int R = EM_ATTN_PF_R, BQ = EM_ATTN_PF_BQ, BK = EM_ATTN_PF_BK, E = D / 32, C8 = D / 8;
    __shared__ __align__(16) float Qs[BQ][D];
    __shared__ float Ks[BK][D + 1];
    __shared__ __align__(16) float Vs[BK][D];

    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const uint32_t g = blockIdx.y, r0 = blockIdx.x * BQ, rep = p.rep;
    const uint32_t n_rows = p.n_tok * rep; /* query rows of this KV head: r = t * rep + i */

    for (uint32_t idx = threadIdx.x; idx < (uint32_t)(BQ * D); idx += EM_ATTN_THREADS) {
        const uint32_t i = idx / D, d = idx % D, r = min(r0 + i, n_rows - 1);
        const uint32_t t = r / rep, h = g * rep + r % rep;
        Qs[i][d] = p.q[(size_t)t * p.qs + (size_t)h * D + d] * p.scale_log2;
    }
    const uint32_t pos = em_attn_pos(p);
    const uint32_t kmax = pos + (min(r0 + BQ, n_rows) - 1) / rep + 1; /* keys any row of the block sees */
    uint32_t last[R]; /* row i sees keys [0, last[i]] */
    float m[R], l[R], acc[R][E];
#pragma unroll
    for (int i = 0; i < R; i++) {
        last[i] = pos + min(r0 + warp * R + i, n_rows - 1) / rep;
        m[i] = -INFINITY;
        l[i] = 0.0f;
#pragma unroll
        for (int e = 0; e < E; e++) acc[i][e] = 0.0f;
    }

    const size_t rs = (size_t)p.Hkv * D;
    for (uint32_t j0 = 0; j0 < kmax; j0 += BK) {
        __syncthreads(); /* the previous tile is consumed (and, the first time, Qs is written) */
        for (uint32_t idx = threadIdx.x; idx < (uint32_t)(BK * C8); idx += EM_ATTN_THREADS) {
            const uint32_t jj = idx / C8, c = idx % C8, j = j0 + jj;
            float kf[8], vf[8];
            if (j < kmax) { /* rows past the block's last key are never read (they may not be written yet) */
                const size_t o = (size_t)j * rs + (size_t)g * D + c * 8;
                em_attn_unpack(__ldg(reinterpret_cast<const uint4 *>(p.kc + o)), kf);
                em_attn_unpack(__ldg(reinterpret_cast<const uint4 *>(p.vc + o)), vf);
            } else {
#pragma unroll
                for (int e = 0; e < 8; e++) kf[e] = vf[e] = 0.0f;
            }
#pragma unroll
            for (int e = 0; e < 8; e++) Ks[jj][c * 8 + e] = kf[e];
            *reinterpret_cast<float4 *>(&Vs[jj][c * 8]) = make_float4(vf[0], vf[1], vf[2], vf[3]);
            *reinterpret_cast<float4 *>(&Vs[jj][c * 8 + 4]) = make_float4(vf[4], vf[5], vf[6], vf[7]);
        }
        __syncthreads();

        /* lane = key j0 + lane: scores of the warp's R rows */
        float s[R];
#pragma unroll
        for (int i = 0; i < R; i++) s[i] = 0.0f;
#pragma unroll 8
        for (int d = 0; d < D; d += 4) {
            const float k0 = Ks[lane][d], k1 = Ks[lane][d + 1], k2 = Ks[lane][d + 2], k3 = Ks[lane][d + 3];
#pragma unroll
            for (int i = 0; i < R; i++) {
                const float4 qv = *reinterpret_cast<const float4 *>(&Qs[warp * R + i][d]);
                s[i] = fmaf(qv.x, k0, s[i]);
                s[i] = fmaf(qv.y, k1, s[i]);
                s[i] = fmaf(qv.z, k2, s[i]);
                s[i] = fmaf(qv.w, k3, s[i]);
            }
        }
        const uint32_t j = j0 + lane;
        float pr[R];
#pragma unroll
        for (int i = 0; i < R; i++) {
            const float sv = j <= last[i] ? s[i] : -INFINITY;
            const float mn = fmaxf(m[i], em_attn_warp_max(sv)); /* finite: key 0 is in every row's first tile */
            const float c = exp2f(m[i] - mn);
            pr[i] = exp2f(sv - mn);
            l[i] = fmaf(l[i], c, pr[i]); /* per-lane partial sum, added over the warp at the end */
#pragma unroll
            for (int e = 0; e < E; e++) acc[i][e] *= c;
            m[i] = mn;
        }
#pragma unroll 4
        for (int jj = 0; jj < BK; jj++) {
            float vv[E];
#pragma unroll
            for (int e = 0; e < E; e++) vv[e] = Vs[jj][lane + 32 * e];
#pragma unroll
            for (int i = 0; i < R; i++) {
                const float pj = __shfl_sync(0xffffffffu, pr[i], jj);
#pragma unroll
                for (int e = 0; e < E; e++) acc[i][e] = fmaf(pj, vv[e], acc[i][e]);
            }
        }
    }
#pragma unroll
    for (int i = 0; i < R; i++) {
        const float ls = em_attn_warp_sum(l[i]);
        const uint32_t r = r0 + warp * R + i;
        if (r >= n_rows) continue;
        const uint32_t t = r / rep, h = g * rep + r % rep;
        float *o = p.out + (size_t)t * p.os + (size_t)h * D;
#pragma unroll
        for (int e = 0; e < E; e++) o[lane + 32 * e] = acc[i][e] / ls;
    }
}

// ---- prefill: flash-attention on the tensor cores (mma.sync m16n8k16, bf16 in, fp32 accumulate) ----------------

/* The tensor-core prefill (v2; see the top comment for the why). Fragment layouts of mma.sync.aligned.m16n8k16.row.col
 * .f32.bf16.bf16.f32 (PTX ISA, "Matrix fragments for mma.m16n8k16 with floating point type"), with gi = lane / 4 and
 * ti = lane % 4; a 32-bit register holds two bf16, the lower-indexed element in the low half:
 *   A (16 x 16, row-major): a[0] = (row gi,     cols 2ti, 2ti+1)   a[1] = (row gi + 8, cols 2ti, 2ti+1)
 *                           a[2] = (row gi, cols 2ti+8, 2ti+9)     a[3] = (row gi + 8, cols 2ti+8, 2ti+9)
 *   B (16 x 8, "col"):      b[0] = (rows k 2ti, 2ti+1; col n gi)   b[1] = (rows k 2ti+8, 2ti+9; col n gi)
 *   C (16 x 8, f32):        c[0], c[1] = (row gi, cols 2ti, 2ti+1) c[2], c[3] = (row gi + 8, cols 2ti, 2ti+1)
 * S = Q K^T: A = Q (query rows x dims), B[k = dim][n = key] = K[key][dim]: b[0] is the two dims 2ti, 2ti+1 of key
 * row gi, one 32-bit word of the K tile as it lies in shared memory ([key][dim]).
 * O = P V: A = P (query rows x keys) is the S accumulator of two adjacent 8-key tiles re-packed to bf16 (c[0], c[1]
 * of tile 2kp -> a[0]; c[2], c[3] -> a[1]; tile 2kp + 1 -> a[2], a[3]), B[k = key][n = dim] = V[key][dim]: b[0] is
 * dim gi of keys 2ti, 2ti+1, a column pair of the V tile: ldmatrix .trans gives exactly that.
 * ldmatrix.x4 (LDSM): lane l gives the address of row l % 8 of 8x8 matrix l / 8 (16 bytes) and receives register m
 * = matrix m's (row gi, cols 2ti, 2ti+1); with .trans, matrix m's (rows 2ti, 2ti+1; col gi). LDSM = false loads the
 * same registers with plain shared-memory loads straight from the layouts above (a check of the ldmatrix
 * addressing: test path 4; a little slower). */

#define EM_ATTN_TC_WARPS 4                         /* warps per block */
#define EM_ATTN_TC_THREADS (EM_ATTN_TC_WARPS * 32)
#define EM_ATTN_TC_BQ (EM_ATTN_TC_WARPS * 16)      /* query rows per block: one m16 tile a warp */
#define EM_ATTN_TC_BK 64                           /* keys per tile */
#define EM_ATTN_TC_PAD 8                           /* bf16 past D in a shared row: rows 16 bytes apart mod 128 B */
#ifndef EM_ATTN_TC_DEFAULT /* 1: path 0 takes the tensor-core prefill where it applies; build with
                              -DEM_ATTN_TC_DEFAULT=0 (CMAKE_CUDA_FLAGS) to make the SIMT kernel the default again */
#define EM_ATTN_TC_DEFAULT 1
#endif

/* two f32 -> one bf16x2 word, nearest even: lo in the low half (cvt.rn.bf16x2.f32 d, a, b puts a in the HIGH half) */
static __device__ __forceinline__ uint32_t em_attn_bf16x2(float lo, float hi) {
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

/* c += a b, one m16n8k16 bf16 MMA with f32 accumulators */
static __device__ __forceinline__ void em_attn_mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

static __device__ __forceinline__ void em_attn_ldsm4(uint32_t (&r)[4], const uint16_t *s) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"((uint32_t)__cvta_generic_to_shared(s))
                 : "memory");
}
static __device__ __forceinline__ void em_attn_ldsm4_t(uint32_t (&r)[4], const uint16_t *s) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"((uint32_t)__cvta_generic_to_shared(s))
                 : "memory");
}

/* 16 bytes global -> shared without a register round trip (L2 only: the tile is shared through shared memory) */
static __device__ __forceinline__ void em_attn_cp16(uint16_t *s, const uint16_t *g) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"((uint32_t)__cvta_generic_to_shared(s)), "l"(g)
                 : "memory");
}
static __device__ __forceinline__ void em_attn_cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
static __device__ __forceinline__ void em_attn_cp_wait_all() { asm volatile("cp.async.wait_group 0;" ::: "memory"); }

/* One BK x D tile of a KV head's cache (rows j0 ..) into shared memory [BK][D + PAD]: rows < kmax by cp.async, the
 * rest zero (never read from the cache: they may not be written yet; zero V keeps 0 * V finite). */
template <int D>
static __device__ __forceinline__ void em_attn_tc_tile(uint16_t *s, const uint16_t *cache, size_t rs, uint32_t j0,
                                                       uint32_t kmax) {
    constexpr int C8 = D / 8, LD = D + EM_ATTN_TC_PAD, IT = EM_ATTN_TC_BK * C8 / EM_ATTN_TC_THREADS;
    static_assert(IT * EM_ATTN_TC_THREADS == EM_ATTN_TC_BK * C8, "16-byte chunks a thread: whole");
#pragma unroll
    for (int it = 0; it < IT; it++) {
        const int i = (int)threadIdx.x + it * EM_ATTN_TC_THREADS, jj = i / C8, c = i % C8;
        uint16_t *dst = s + jj * LD + c * 8;
        if (j0 + jj < kmax) em_attn_cp16(dst, cache + (size_t)(j0 + jj) * rs + c * 8);
        else *reinterpret_cast<uint4 *>(dst) = make_uint4(0u, 0u, 0u, 0u);
    }
}

template <int D, bool LDSM>
__global__ void __launch_bounds__(EM_ATTN_TC_THREADS) em_attn_prefill_tc_kernel(const em_attn_kp p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    constexpr int BQ = EM_ATTN_TC_BQ, BK = EM_ATTN_TC_BK, LD = D + EM_ATTN_TC_PAD;
    constexpr int KS = D / 16; /* k-steps of S = Q K^T (dims) */
    constexpr int NS = BK / 8; /* 8-key column tiles of S */
    constexpr int KP = BK / 16; /* k-steps of O = P V (keys) */
    constexpr int NO = D / 8;  /* 8-dim column tiles of O */
    static_assert(KS % 2 == 0 && NO % 2 == 0, "ldmatrix.x4 takes two k-steps of K, two dim tiles of V");
    __shared__ __align__(16) uint16_t Ks[BK * LD];
    __shared__ __align__(16) uint16_t Vs[BK * LD];

    const uint32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gi = lane >> 2, ti = lane & 3;
    const uint32_t g = blockIdx.y, rep = p.rep, n_rows = p.n_tok * rep; /* rows of this KV head: r = t rep + i */
    const uint32_t r0 = blockIdx.x * BQ, rw = r0 + warp * 16;           /* the block's and the warp's first row */
    const uint32_t pos = em_attn_pos(p);
    const uint32_t kmax = pos + (min(r0 + BQ, n_rows) - 1) / rep + 1;  /* keys any row of the block sees */
    const bool active = rw < n_rows;                                    /* warp-uniform */
    const uint32_t w_first = pos + min(rw, n_rows - 1) / rep;           /* the warp's rows see keys [0, w_first] .. */
    const uint32_t w_last = pos + min(rw + 15, n_rows - 1) / rep;       /* .. [0, w_last] */
    const uint32_t ra = rw + gi, rb = rw + gi + 8;                      /* this thread's two rows */
    const uint32_t ca = min(ra, n_rows - 1), cb = min(rb, n_rows - 1);  /* clamped (rows past the end: not written) */
    const uint32_t last_a = pos + ca / rep, last_b = pos + cb / rep;

    /* Q (q * scale * log2 e, rounded to bf16) as A fragments, held for the whole kernel */
    uint32_t qf[KS][4];
    {
        const float *qa = p.q + (size_t)(ca / rep) * p.qs + (size_t)(g * rep + ca % rep) * D + 2 * ti;
        const float *qb = p.q + (size_t)(cb / rep) * p.qs + (size_t)(g * rep + cb % rep) * D + 2 * ti;
        const float sl = p.scale_log2;
#pragma unroll
        for (int kk = 0; kk < KS; kk++) {
            const int d = 16 * kk;
            qf[kk][0] = em_attn_bf16x2(qa[d] * sl, qa[d + 1] * sl);
            qf[kk][1] = em_attn_bf16x2(qb[d] * sl, qb[d + 1] * sl);
            qf[kk][2] = em_attn_bf16x2(qa[d + 8] * sl, qa[d + 9] * sl);
            qf[kk][3] = em_attn_bf16x2(qb[d + 8] * sl, qb[d + 9] * sl);
        }
    }
    float o[NO][4];
#pragma unroll
    for (int n = 0; n < NO; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m_a = -INFINITY, m_b = -INFINITY, l_a = 0.0f, l_b = 0.0f; /* running max (log2 domain), partial sums */

    const size_t rs = (size_t)p.Hkv * D;
    const uint16_t *kc = p.kc + (size_t)g * D, *vc = p.vc + (size_t)g * D;
    em_attn_tc_tile<D>(Ks, kc, rs, 0, kmax);
    em_attn_cp_commit();
    for (uint32_t j0 = 0; j0 < kmax; j0 += BK) {
        em_attn_cp_wait_all(); /* this thread's K rows landed ... */
        __syncthreads();       /* ... everyone's; and every warp is done with the previous V tile */
        em_attn_tc_tile<D>(Vs, vc, rs, j0, kmax);
        em_attn_cp_commit();
        const bool work = active && j0 <= w_last; /* warp-uniform: some row of the warp sees a key of the tile */
        uint32_t pf[KP][4];                        /* P as bf16 A fragments */
        if (work) {
            float s[NS][4];
#pragma unroll
            for (int n = 0; n < NS; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < KS; kk += 2) {
#pragma unroll
                for (int n = 0; n < NS; n++) {
                    uint32_t b[4];
                    if (LDSM) { /* matrices: (keys 8n.., dims 16kk + 0/8/16/24 ..) = b0, b1 of kk, b0, b1 of kk + 1 */
                        em_attn_ldsm4(b, Ks + (8 * n + (lane & 7)) * LD + 16 * kk + 8 * (lane >> 3));
                    } else {
                        const uint16_t *kr = Ks + (8 * n + gi) * LD + 16 * kk + 2 * ti;
                        b[0] = *reinterpret_cast<const uint32_t *>(kr);
                        b[1] = *reinterpret_cast<const uint32_t *>(kr + 8);
                        b[2] = *reinterpret_cast<const uint32_t *>(kr + 16);
                        b[3] = *reinterpret_cast<const uint32_t *>(kr + 24);
                    }
                    em_attn_mma(s[n], qf[kk], b[0], b[1]);
                    em_attn_mma(s[n], qf[kk + 1], b[2], b[3]);
                }
            }
            if (j0 + BK - 1 > w_first) { /* the causal edge crosses this tile for some row of the warp */
#pragma unroll
                for (int n = 0; n < NS; n++) {
                    const uint32_t j = j0 + 8 * n + 2 * ti;
                    s[n][0] = j <= last_a ? s[n][0] : -INFINITY;
                    s[n][1] = j + 1 <= last_a ? s[n][1] : -INFINITY;
                    s[n][2] = j <= last_b ? s[n][2] : -INFINITY;
                    s[n][3] = j + 1 <= last_b ? s[n][3] : -INFINITY;
                }
            }
            float mx_a = -INFINITY, mx_b = -INFINITY;
#pragma unroll
            for (int n = 0; n < NS; n++) {
                mx_a = fmaxf(mx_a, fmaxf(s[n][0], s[n][1]));
                mx_b = fmaxf(mx_b, fmaxf(s[n][2], s[n][3]));
            }
            /* the row's 64 scores sit in the 4 lanes of a quad */
            mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 1));
            mx_a = fmaxf(mx_a, __shfl_xor_sync(0xffffffffu, mx_a, 2));
            mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 1));
            mx_b = fmaxf(mx_b, __shfl_xor_sync(0xffffffffu, mx_b, 2));
            /* finite: key 0 is in every row's first tile, and a row's max only grows */
            const float mn_a = fmaxf(m_a, mx_a), mn_b = fmaxf(m_b, mx_b);
            const float c_a = exp2f(m_a - mn_a), c_b = exp2f(m_b - mn_b); /* 0 on the first tile (m = -inf) */
            m_a = mn_a;
            m_b = mn_b;
            float ps_a = 0.0f, ps_b = 0.0f;
#pragma unroll
            for (int n = 0; n < NS; n++) {
                s[n][0] = exp2f(s[n][0] - mn_a);
                s[n][1] = exp2f(s[n][1] - mn_a);
                s[n][2] = exp2f(s[n][2] - mn_b);
                s[n][3] = exp2f(s[n][3] - mn_b);
                ps_a += s[n][0] + s[n][1];
                ps_b += s[n][2] + s[n][3];
            }
            l_a = fmaf(l_a, c_a, ps_a); /* this lane's part of the row sum (f32 p), added over the quad at the end */
            l_b = fmaf(l_b, c_b, ps_b);
#pragma unroll
            for (int n = 0; n < NO; n++) {
                o[n][0] *= c_a;
                o[n][1] *= c_a;
                o[n][2] *= c_b;
                o[n][3] *= c_b;
            }
#pragma unroll
            for (int kp = 0; kp < KP; kp++) {
                pf[kp][0] = em_attn_bf16x2(s[2 * kp][0], s[2 * kp][1]);
                pf[kp][1] = em_attn_bf16x2(s[2 * kp][2], s[2 * kp][3]);
                pf[kp][2] = em_attn_bf16x2(s[2 * kp + 1][0], s[2 * kp + 1][1]);
                pf[kp][3] = em_attn_bf16x2(s[2 * kp + 1][2], s[2 * kp + 1][3]);
            }
        }
        em_attn_cp_wait_all(); /* this thread's V rows landed ... */
        __syncthreads();       /* ... everyone's; and every warp is done with the K tile */
        if (j0 + BK < kmax) {  /* the next K tile streams in under P V */
            em_attn_tc_tile<D>(Ks, kc, rs, j0 + BK, kmax);
            em_attn_cp_commit();
        }
        if (work) {
#pragma unroll
            for (int kp = 0; kp < KP; kp++) {
#pragma unroll
                for (int n = 0; n < NO; n += 2) {
                    uint32_t b[4];
                    if (LDSM) { /* matrices: (keys 16kp + 0/8 .., dims 8n ..), then dims 8(n + 1) .. */
                        em_attn_ldsm4_t(b, Vs + (16 * kp + (lane & 15)) * LD + 8 * n + 8 * (lane >> 4));
                    } else {
                        const uint16_t *vr = Vs + (16 * kp + 2 * ti) * LD + 8 * n + gi;
                        b[0] = (uint32_t)vr[0] | (uint32_t)vr[LD] << 16;
                        b[1] = (uint32_t)vr[8 * LD] | (uint32_t)vr[9 * LD] << 16;
                        b[2] = (uint32_t)vr[8] | (uint32_t)vr[LD + 8] << 16;
                        b[3] = (uint32_t)vr[8 * LD + 8] | (uint32_t)vr[9 * LD + 8] << 16;
                    }
                    em_attn_mma(o[n], pf[kp], b[0], b[1]);
                    em_attn_mma(o[n + 1], pf[kp], b[2], b[3]);
                }
            }
        }
    }
    if (!active) return;
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 1);
    l_a += __shfl_xor_sync(0xffffffffu, l_a, 2);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 1);
    l_b += __shfl_xor_sync(0xffffffffu, l_b, 2);
    const float ia = 1.0f / l_a, ib = 1.0f / l_b; /* >= 1: the max's own term is 1 */
    if (ra < n_rows) {
        float *out = p.out + (size_t)(ra / rep) * p.os + (size_t)(g * rep + ra % rep) * D + 2 * ti;
#pragma unroll
        for (int n = 0; n < NO; n++) {
            out[8 * n] = o[n][0] * ia;
            out[8 * n + 1] = o[n][1] * ia;
        }
    }
    if (rb < n_rows) {
        float *out = p.out + (size_t)(rb / rep) * p.os + (size_t)(g * rep + rb % rep) * D + 2 * ti;
#pragma unroll
        for (int n = 0; n < NO; n++) {
            out[8 * n] = o[n][2] * ib;
            out[8 * n + 1] = o[n][3] * ib;
        }
    }
#else
    (void)p; /* bf16 mma.sync needs sm_80: the launcher never picks this kernel below (em_attn_tc_device) */
#endif
}

// ---- dispatch ------------------------------------------------------------------------------------------------

/* f(integral_constant<D>, integral_constant<REP>) for the supported head dims and REP in {1, 2, 4, 8}. */
template <typename F> static void em_attn_dispatch(uint32_t D, uint32_t REP, F &&f) {
    auto with_rep = [&](auto dc) {
        switch (REP) {
        case 8: f(dc, std::integral_constant<int, 8>{}); break;
        case 4: f(dc, std::integral_constant<int, 4>{}); break;
        case 2: f(dc, std::integral_constant<int, 2>{}); break;
        default: f(dc, std::integral_constant<int, 1>{}); break;
        }
    };
    if (D == 64) with_rep(std::integral_constant<int, 64>{});
    else with_rep(std::integral_constant<int, 128>{});
}

static uint32_t em_attn_rep_block(uint32_t rep) { return rep % 8 == 0 ? 8 : rep % 4 == 0 ? 4 : rep % 2 == 0 ? 2 : 1; }

/* Per device: SM count and the decode kernels' resident blocks per SM, from host-only queries made once (they
 * queue nothing, so a first call inside a stream capture is fine, as linear.cu's); 0 = unknown. Index: D 64 / 128
 * x REP 1, 2, 4, 8. */
typedef struct em_attn_dev {
    std::atomic<int> sms;
    std::atomic<int> bps[8];
    std::atomic<int> cc_major; /* compute capability major (0 = not asked yet, -1 = unknown) */
} em_attn_dev;
static em_attn_dev em_attn_devs[EM_ATTN_MAX_DEVICES];

/* 1 if the current device runs the tensor-core prefill (bf16 mma.sync: sm_80 and later). Host-only query, once. */
static int em_attn_tc_device(void) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= EM_ATTN_MAX_DEVICES) {
        cudaGetLastError();
        return 0;
    }
    em_attn_dev *di = &em_attn_devs[dev];
    int cc = di->cc_major.load(std::memory_order_relaxed);
    if (cc == 0) {
        if (cudaDeviceGetAttribute(&cc, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess || cc <= 0) {
            cudaGetLastError();
            cc = -1;
        }
        di->cc_major.store(cc, std::memory_order_relaxed);
    }
    return cc >= 8;
}

/* The tensor-core prefill takes these head dims (the SIMT kernel stays the fallback for others). */
static int em_attn_tc_head_dim(uint32_t D) { return D == 64 || D == 128; }

static int em_attn_rep_index(uint32_t rb) { return rb == 8 ? 3 : rb == 4 ? 2 : rb == 2 ? 1 : 0; }

/* One wave of resident decode blocks on the current device (a guess of 132 SMs x 4 when the queries fail). */
static uint32_t em_attn_wave(uint32_t D, uint32_t rb) {
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= EM_ATTN_MAX_DEVICES) {
        cudaGetLastError();
        return 132 * 4;
    }
    em_attn_dev *di = &em_attn_devs[dev];
    const int ix = (D == 64 ? 0 : 4) + em_attn_rep_index(rb);
    int sms = di->sms.load(std::memory_order_relaxed), bps = di->bps[ix].load(std::memory_order_relaxed);
    if (sms <= 0) {
        if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms <= 0) {
            cudaGetLastError();
            sms = 132;
        }
        di->sms.store(sms, std::memory_order_relaxed);
    }
    if (bps <= 0) {
        em_attn_dispatch(D, rb, [&](auto dc, auto rc) {
            if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&bps, em_attn_decode_kernel<decltype(dc)::value, decltype(rc)::value>,
                                                              EM_ATTN_THREADS, 0) != cudaSuccess) {
                cudaGetLastError();
                bps = 0;
            }
        });
        if (bps <= 0) bps = 4;
        di->bps[ix].store(bps, std::memory_order_relaxed);
    }
    return (uint32_t)sms * (uint32_t)bps;
}

// ---- launchers --------------------------------------------------------------------------------------------------

static em_status em_attn_launched(const char *kernel, const em_attn_dev_args *a) {
    const cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return EM_OK;
    return em_fail(EM_ERR_DEVICE, "em_cuda_attention: launch of %s (n_tok %u, pos %u, heads %u/%u, head_dim %u) failed: "
                   "%s: %s", kernel, a->n_tok, a->pos, a->n_head, a->n_kv_head, a->head_dim, cudaGetErrorName(e),
                   cudaGetErrorString(e));
}

/* Decode's split count: about one wave of resident blocks, at most one split per EM_ATTN_UNIT rows of the context
 * (max_ctx when the position is read on the device), then as few as give the same rows a split. */
static uint32_t em_attn_split_count(const em_attn_dev_args *a) {
    const uint32_t rep = a->n_head / a->n_kv_head, rb = em_attn_rep_block(rep), nz = rep / rb;
    const uint32_t ctx = a->pos_dev ? a->max_ctx : a->pos + 1;
    uint32_t S = em_attn_wave(a->head_dim, rb) / (a->n_kv_head * nz);
    const uint32_t smax = em_attn_splits_max(ctx);
    S = S < 1 ? 1 : S > smax ? smax : S;
    const uint32_t L = ((ctx + S - 1) / S + EM_ATTN_UNIT - 1) / EM_ATTN_UNIT * EM_ATTN_UNIT;
    return (ctx + L - 1) / L;
}

/* em_cuda_attention_workspace_bytes: kernels/workspace.c */

extern "C" int em_cuda_attention_supported(const em_attn_dev_args *a) {
    if (!a || !a->q || !a->k || !a->v || !a->k_cache || !a->v_cache || !a->out) return 0;
    if (a->head_dim != 64 && a->head_dim != 128) return 0;
    if (a->n_head == 0 || a->n_kv_head == 0 || a->n_head % a->n_kv_head != 0) return 0;
    if (a->n_head > 65535 || a->n_kv_head > 65535) return 0; /* grid y / z, and the combine's grid */
    if ((uint64_t)(a->pos_dev ? 0 : a->pos) + a->n_tok > a->max_ctx) return 0; /* pos_dev: the caller's promise */
    if ((uint64_t)a->n_tok * a->n_head > 0x7fffffffu) return 0;
    if (a->rope_dims % 2 != 0 || a->rope_dims > a->head_dim) return 0;
    if (a->rope_dims && !(a->rope_base > 0.0f && isfinite(a->rope_base))) return 0;
    if (!isfinite(a->scale)) return 0;
    const uint32_t qrow = a->n_head * a->head_dim, kvrow = a->n_kv_head * a->head_dim;
    if (a->q_stride && a->q_stride < qrow) return 0;
    if (a->kv_stride && a->kv_stride < kvrow) return 0;
    if (a->out_stride && a->out_stride < qrow) return 0;
    if (((uintptr_t)a->k_cache | (uintptr_t)a->v_cache) % 16 != 0) return 0; /* 16-byte cache loads */
    return 1;
}

/* EM_ATTN_TC=0 (read once; A/B without a rebuild): prompts take the SIMT prefill kernel, as -DEM_ATTN_TC_DEFAULT=0. */
static int em_attn_tc_off(void) {
    static const char *const values[] = { "0" };
    static std::atomic<int> cache{-1};
    return em_env_once("EM_ATTN_TC", values, 1, &cache);
}

extern "C" em_status em_cuda_attention_path(const em_attn_dev_args *a, void *ws, size_t ws_bytes, void *stream,
                                            int path) {
    if (!a) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_attention: args is NULL");
    if (!em_cuda_attention_supported(a))
        return em_fail(EM_ERR_INVALID_ARG, "em_cuda_attention: unsupported arguments (n_tok %u, pos %u, max_ctx %u, "
                       "heads %u/%u, head_dim %u (64 or 128), rope_dims %u, strides %u/%u/%u, caches 16-byte aligned: %s)",
                       a->n_tok, a->pos, a->max_ctx, a->n_head, a->n_kv_head, a->head_dim, a->rope_dims, a->q_stride,
                       a->kv_stride, a->out_stride,
                       ((uintptr_t)a->k_cache | (uintptr_t)a->v_cache) % 16 == 0 ? "yes" : "no");
    if (path < 0 || path > 4 || (path == 1 && a->n_tok != 1))
        return em_fail(EM_ERR_INVALID_ARG, "em_cuda_attention_path: path %d cannot take n_tok %u", path, a->n_tok);
    const uint32_t D = a->head_dim, Hq = a->n_head, Hkv = a->n_kv_head, rep = Hq / Hkv;
    if (path >= 3 && !(em_attn_tc_head_dim(D) && em_attn_tc_device()))
        return em_fail(EM_ERR_INVALID_ARG, "em_cuda_attention_path: path %d (tensor-core prefill) needs head_dim 64 or "
                       "128 (got %u) and a device of compute capability 8.0 or later", path, D);
    if (a->n_tok == 0) return EM_OK;
    const int decode = path == 1 || (path == 0 && a->n_tok == 1);
    if (decode && (!ws || ws_bytes < em_cuda_attention_workspace_bytes(a->max_ctx, Hq, D)))
        return em_fail(EM_ERR_INVALID_ARG, "em_cuda_attention: decode needs a workspace of %zu bytes (max_ctx %u), got "
                       "%zu%s", em_cuda_attention_workspace_bytes(a->max_ctx, Hq, D), a->max_ctx, ws_bytes,
                       ws ? "" : " (NULL)");

    em_attn_kp p;
    p.q = a->q;
    p.k = a->k;
    p.v = a->v;
    p.kc = a->k_cache;
    p.vc = a->v_cache;
    p.out = a->out;
    p.n_tok = a->n_tok;
    p.Hq = Hq;
    p.Hkv = Hkv;
    p.D = D;
    p.rep = rep;
    p.pos = a->pos;
    p.pos_dev = a->pos_dev;
    p.qs = a->q_stride ? a->q_stride : Hq * D;
    p.kvs = a->kv_stride ? a->kv_stride : Hkv * D;
    p.os = a->out_stride ? a->out_stride : Hq * D;
    p.rope_dims = a->rope_dims;
    p.rope_base = a->rope_base;
    p.scale_log2 = a->scale * EM_LOG2E;
    cudaStream_t s = (cudaStream_t)stream;

    /* 1. RoPE and the new rows (stream order makes them visible to the attention kernels below) */
    em_attn_append_kernel<<<a->n_tok, 256, 0, s>>>(p);
    EM_TRY(em_attn_launched("em_attn_append_kernel", a));

    if (!decode) {
        /* the tensor-core kernel where it applies (forced by 3, 4), else the fp32 SIMT one (forced by 2) */
        const int tc = path >= 3 || (path == 0 && EM_ATTN_TC_DEFAULT && !em_attn_tc_off() && em_attn_tc_head_dim(D) &&
                                     em_attn_tc_device());
        if (tc) {
            const dim3 grid((a->n_tok * rep + EM_ATTN_TC_BQ - 1) / EM_ATTN_TC_BQ, Hkv);
            if (path == 4) {
                if (D == 64) em_attn_prefill_tc_kernel<64, false><<<grid, EM_ATTN_TC_THREADS, 0, s>>>(p);
                else em_attn_prefill_tc_kernel<128, false><<<grid, EM_ATTN_TC_THREADS, 0, s>>>(p);
            } else {
                if (D == 64) em_attn_prefill_tc_kernel<64, true><<<grid, EM_ATTN_TC_THREADS, 0, s>>>(p);
                else em_attn_prefill_tc_kernel<128, true><<<grid, EM_ATTN_TC_THREADS, 0, s>>>(p);
            }
            return em_attn_launched("em_attn_prefill_tc_kernel", a);
        }
        const dim3 grid((a->n_tok * rep + EM_ATTN_PF_BQ - 1) / EM_ATTN_PF_BQ, Hkv);
        if (D == 64) em_attn_prefill_kernel<64><<<grid, EM_ATTN_THREADS, 0, s>>>(p);
        else em_attn_prefill_kernel<128><<<grid, EM_ATTN_THREADS, 0, s>>>(p);
        return em_attn_launched("em_attn_prefill_kernel", a);
    }

    /* 2. decode: S splits (the kernel works out their rows), about one wave of resident blocks */
    const uint32_t rb = em_attn_rep_block(rep), nz = rep / rb, S = em_attn_split_count(a);
    float *ws_ml = reinterpret_cast<float *>(((uintptr_t)ws + 15) & ~(uintptr_t)15);
    float *ws_acc = ws_ml + (size_t)S * Hq * 2;
    const dim3 grid(S, Hkv, nz);
    em_attn_dispatch(D, rb, [&](auto dc, auto rc) {
        em_attn_decode_kernel<decltype(dc)::value, decltype(rc)::value><<<grid, EM_ATTN_THREADS, 0, s>>>(p, ws_ml, ws_acc);
    });
    EM_TRY(em_attn_launched("em_attn_decode_kernel", a));
    if (S == 1) return EM_OK; /* the one block per head wrote the output */
    em_attn_combine_kernel<<<Hq, D, 0, s>>>(p, S, ws_ml, ws_acc);
    return em_attn_launched("em_attn_combine_kernel", a);
}

extern "C" em_status em_cuda_attention(const em_attn_dev_args *a, void *ws, size_t ws_bytes, void *stream) {
    return em_cuda_attention_path(a, ws, ws_bytes, stream, 0);
}

extern "C" int em_cuda_attention_splits(const em_attn_dev_args *a) {
    if (!a || !em_cuda_attention_supported(a) || a->n_tok != 1) return 0;
    return (int)em_attn_split_count(a);
}

__global__ void em_attn_pos_add_kernel(uint32_t *pos, uint32_t n) { *pos += n; }

extern "C" em_status em_cuda_attention_pos_add(uint32_t *pos_dev, uint32_t n, void *stream) {
    if (!pos_dev) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_attention_pos_add: pos_dev is NULL");
    em_attn_pos_add_kernel<<<1, 1, 0, (cudaStream_t)stream>>>(pos_dev, n);
    const cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return EM_OK;
    return em_fail(EM_ERR_DEVICE, "em_cuda_attention_pos_add: launch failed: %s: %s", cudaGetErrorName(e),
                   cudaGetErrorString(e));
}
