/*
 * attention.cu — causal grouped-query attention over a BF16 KV cache on the GPU (issue 9): the hybrid's attention
 * layers, decode (one token: flash-decoding, split over the context) and prefill (a prompt chunk: flash-attention
 * tiles). Twin: em_ref_attention_bf16 (kernels/ref/attention_bf16_ref.c; em_attn_dev_args in ops.h). Test and
 * benchmark: tests/test_attention_cuda.c (`--perf`: decode at 512, 4K and 32K tokens of context on the hybrid 8B
 * shape, GB/s of KV bytes against the read bandwidth measured in the same run). docs/hybrid-cuda.md.
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
 *   em_attn_prefill_kernel<D> (n_tok > 1) flash-attention tiles on fp32 SIMT (no tensor cores yet: correctness
 *                            first). Query rows of one KV head are (token, head-of-the-group) pairs, r = t rep + i,
 *                            so a block of 16 rows shares each K/V tile across its GQA heads. K/V tiles of 32 keys
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
 *   v1 (this file) the kernels above. Not measured yet on a GPU (written without one): test_attention_cuda --perf
 *      prints the figures; docs/hybrid-cuda.md will keep them.
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
} em_attn_dev;
static em_attn_dev em_attn_devs[EM_ATTN_MAX_DEVICES];

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

extern "C" em_status em_cuda_attention_path(const em_attn_dev_args *a, void *ws, size_t ws_bytes, void *stream,
                                            int path) {
    if (!a) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_attention: args is NULL");
    if (!em_cuda_attention_supported(a))
        return em_fail(EM_ERR_INVALID_ARG, "em_cuda_attention: unsupported arguments (n_tok %u, pos %u, max_ctx %u, "
                       "heads %u/%u, head_dim %u (64 or 128), rope_dims %u, strides %u/%u/%u, caches 16-byte aligned: %s)",
                       a->n_tok, a->pos, a->max_ctx, a->n_head, a->n_kv_head, a->head_dim, a->rope_dims, a->q_stride,
                       a->kv_stride, a->out_stride,
                       ((uintptr_t)a->k_cache | (uintptr_t)a->v_cache) % 16 == 0 ? "yes" : "no");
    if (path < 0 || path > 2 || (path == 1 && a->n_tok != 1))
        return em_fail(EM_ERR_INVALID_ARG, "em_cuda_attention_path: path %d cannot take n_tok %u", path, a->n_tok);
    if (a->n_tok == 0) return EM_OK;
    const int decode = path == 1 || (path == 0 && a->n_tok == 1);
    const uint32_t D = a->head_dim, Hq = a->n_head, Hkv = a->n_kv_head, rep = Hq / Hkv;
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
