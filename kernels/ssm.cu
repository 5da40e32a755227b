/*
 * ssm.cu — the Mamba-2 selective state update on the GPU: for each token and head h (B/C group
 * g = h / (H / G)),
 *   dt = clamp(softplus(dt_raw[h] + dt_bias[h])),  dA = exp(dt * A[h])
 *   S[h][p][n] = S[h][p][n] * dA + dt * x[h][p] * B[g][n]
 *   y[h][p]    = sum_n S[h][p][n] * C[g][n] + D[h] * x[h][p]
 * with the fp32 state [H, P, N] updated in place. Twin: em_ref_ssm (kernels/ref/ssm_ref.c); test and
 * benchmark: tests/test_ssm_cuda.c (`test_ssm_cuda --perf`: GB/s of the state traffic, % of the read and
 * copy bandwidth measured in the same run).
 *
 * Why this shape: at decode the op is nothing but the state going through the SM and back: for Mamba-2 8B
 * 128 x 64 x 128 x 4 B = 4.19 MB read and 4.19 MB written per layer (~2.8 us at 3 TB/s), 56 times a token,
 * against ~0.3 MFLOP. So the kernel is judged by how close it streams the state at the copy bandwidth.
 *
 * Version history:
 *   v1 Vector path, em_ssm_vec<LPR, VPL, RL>: one state row (one p, N floats) is held by LPR
 *      lanes, VPL float4 each (N = 4 * LPR * VPL: N 16 -> 4 lanes a row, 128 -> 32 lanes, 256 -> 32 lanes x 2),
 *      so a warp instruction covers 32 / LPR whole rows = 512 contiguous bytes: 16-byte, coalesced loads and
 *      stores. Each lane holds RL rows (RL * VPL float4 of state in registers), all loaded before the first
 *      is used. A warp owns RL * 32 / LPR consecutive rows of ONE head, so dt, A, D, dt_bias, B and C are
 *      warp-uniform: dt's softplus/clamp and exp(dt A) are computed once per token per warp, B and C are one
 *      float4 per lane (from L1/L2: the group's B/C row is shared by H / G heads). The reduction over n is a
 *      segmented xor-shuffle over the LPR lanes of a row; D * x is folded into the store. Blocks of 4 warps,
 *      H * ceil(P / rows per warp) warps in all: 8B at RL 2 is 1024 blocks (RL 4: 512), one wave, the whole state in
 *      flight at once. The state is loaded and stored with the streaming hint (ld/st.global.cs): it is not
 *      read again until the same layer's next token, 235 MB of other state later.
 *      Several tokens (prompts, until the chunked SSD prefill exists) run sequentially inside the kernel with
 *      the state in registers: read once, written once per call; the next token's x/dt/B/C are loaded while
 *      the current one is computed (a one-deep software pipeline).
 *      Generic path, em_ssm_generic: any N, any alignment. A warp per state row, lanes striding over n with
 *      scalar loads, the state read and written in global memory per token.
 *      RL (EM_SSM_RL) is chosen by `test_ssm_cuda --perf`, which times RL 1, 2 and 4 (em_cuda_ssm_path).
 *      H100, 8B decode, per launch inside a CUDA graph: RL 1 5.17 us, RL 2 4.96, RL 4 4.96 (57% of the copy
 *      bandwidth for the state read + written; ~1.5 us of it is the fixed cost every kernel pays in a graph);
 *      40 tokens: 53.9, 36.8 and 29.4 us. docs/gpu.md has the table.
 *   v1.1 (this file) EM_SSM_RL 2 -> 4 by those figures (same decode time, 20% less for 40 tokens).
 *
 * Build: part of the library with -DEM_CUDA=ON. Standalone, with the resource report (registers, spills):
 *   nvcc -O3 -std=c++17 -arch=sm_90 -Xptxas -v -Iinclude -Ikernels -Iruntime -Iplatform \
 *        -c kernels/ssm.cu -o /tmp/ssm.o
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

#include "cuda_ops.h"
#include "gemv_common.cuh" /* em_pdl_wait / em_pdl_trigger */
extern "C" {
#include "util.h" /* em_fail */
}

// ---- launch geometry ---------------------------------------------------------------------------------

#define EM_SSM_WARPS 4 /* warps per block */
#define EM_SSM_THREADS (EM_SSM_WARPS * 32)
#ifndef EM_SSM_RL
#define EM_SSM_RL 4 /* state rows per lane on the vector path: 1, 2 or 4 (tuning knob, docs/gpu.md) */
#endif

/* The kernels' arguments, resolved from em_ssm_args by the launcher (strides made explicit). */
struct em_ssm_kp {
    const float *x;       /* [n_tok, H, P], row stride xs */
    const float *dt;      /* [n_tok, H], row stride dts */
    const float *B, *C;   /* [n_tok, G, N], row stride bcs */
    const float *A, *D, *dt_bias; /* [H] */
    float *state;         /* [H, P, N] */
    float *y;             /* [n_tok, H, P], row stride ys */
    uint32_t n_tok, H, P, N, heads_per_group;
    uint32_t xs, dts, bcs, ys;
    float dt_min, dt_max;
    int clamp;            /* 0: (dt_min, dt_max) = (0, inf), torch's "no limit": no clamp at all */
    uint32_t warps_per_head; /* vector path: ceil(P / rows per warp) */
    const float *z;       /* [n_tok, H, P], row stride zs, or NULL: the gate y *= silu(z) */
    uint32_t zs;
    float *sumsq;         /* [n_tok, H] or NULL: per head sum of y^2 (head-per-block launch) */
};
#define EM_SSM_MAX_HEAD_WARPS 16 /* the head-per-block launch (z / sumsq): a head's warps in one block */

// ---- device helpers ----------------------------------------------------------------------------------

/* softplus (torch threshold 20) of dt_raw + dt_bias, then the clamp: em_ref_ssm's order and functions
 * (expf/log1pf, not the fast intrinsics: the twin is the truth). */
static __device__ __forceinline__ float em_ssm_dt(float raw, float bias, const em_ssm_kp &k) {
    const float v = raw + bias;
    float dt = v > 20.0f ? v : log1pf(expf(v));
    if (k.clamp) dt = fminf(fmaxf(dt, k.dt_min), k.dt_max);
    return dt;
}

/* Sum over aligned groups of W lanes (W a power of two <= 32), left in every lane of the group. */
template <int W> static __device__ __forceinline__ float em_seg_sum(float v) {
#pragma unroll
    for (int o = W / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* s = s * dA + dtx * b, acc += s * c for the 4 state columns of one float4. */
static __device__ __forceinline__ float em_ssm_upd4(float4 &s, float dA, float dtx, float4 b, float4 c, float acc) {
    s.x = s.x * dA + dtx * b.x;
    s.y = s.y * dA + dtx * b.y;
    s.z = s.z * dA + dtx * b.z;
    s.w = s.w * dA + dtx * b.w;
    acc += s.x * c.x;
    acc += s.y * c.y;
    acc += s.z * c.z;
    acc += s.w * c.w;
    return acc;
}

// ---- v1: vector path ---------------------------------------------------------------------------------

/* One token's inputs for one lane: x of its RL rows, the head's raw dt, its VPL float4 of B and C. */
template <int RL, int VPL> struct em_ssm_in {
    float x[RL];
    float z[RL];
    float dt;
    float4 b[VPL], c[VPL];
};

/* Preconditions (launcher): N == 4 * LPR * VPL; state, B, C 16-byte aligned; bcs % 4 == 0.
 * Grid: ceil(H * warps_per_head / EM_SSM_WARPS) blocks of EM_SSM_THREADS; with z or sumsq (the fused decode
 * step), H blocks of warps_per_head warps: a block is one head, so its sum of y^2 is a block reduction (fixed
 * order, no atomics). Programmatic dependent launch (EM_SSM_STATE_OWN): the state (not written by the kernel
 * before) is loaded before the grid-dependency wait, x / dt / B / C / z after it. */
template <int LPR, int VPL, int RL>
__global__ void __launch_bounds__(EM_SSM_MAX_HEAD_WARPS * 32) em_ssm_vec(const em_ssm_kp k) {
    constexpr int SUB = 32 / LPR; /* rows covered by one warp instruction */
    constexpr int RPW = RL * SUB; /* rows per warp */
    constexpr int N4 = LPR * VPL; /* float4 per state row */
    const int lane = threadIdx.x & 31, sub = lane / LPR, q = lane % LPR, warp = threadIdx.x >> 5;
    const uint32_t wid = blockIdx.x * (blockDim.x >> 5) + warp;
    em_pdl_trigger(); /* the dependent (out_proj) only streams its weights until we complete */
    if (wid >= k.H * k.warps_per_head) return; /* whole warps leave together: the shuffles below see 32 lanes;
                                                  never taken in the head-per-block launch */
    const uint32_t h = wid / k.warps_per_head, g = h / k.heads_per_group;
    const uint32_t p0 = (wid % k.warps_per_head) * RPW + sub; /* this lane's first row; row i is p0 + i * SUB */

    bool ok[RL]; /* rows past P (last warp of a head when P % RPW != 0): computed on zeros, never stored */
#pragma unroll
    for (int i = 0; i < RL; i++) ok[i] = p0 + i * SUB < k.P;

    /* Lane q of a row holds float4 q, q + LPR, ... of it: each instruction reads SUB whole rows. */
    float4 *S = reinterpret_cast<float4 *>(k.state) + ((size_t)h * k.P + p0) * N4 + q;
    float4 s[RL][VPL];
#pragma unroll
    for (int i = 0; i < RL; i++)
#pragma unroll
        for (int v = 0; v < VPL; v++)
            s[i][v] = ok[i] ? __ldcs(S + (size_t)i * SUB * N4 + v * LPR) : make_float4(0.f, 0.f, 0.f, 0.f);

    const float Ah = k.A[h], Dh = k.D[h], bias = k.dt_bias[h];
    em_pdl_wait(); /* x, dt, B, C, z come from the kernel before */
    const float *xh = k.x + (size_t)h * k.P + p0;
    const float *zh = k.z ? k.z + (size_t)h * k.P + p0 : nullptr;
    const float *dth = k.dt + h;
    const float4 *Bg = reinterpret_cast<const float4 *>(k.B + (size_t)g * k.N) + q;
    const float4 *Cg = reinterpret_cast<const float4 *>(k.C + (size_t)g * k.N) + q;
    float *yh = k.y + (size_t)h * k.P + p0;

    /* Plain loads for x (not .nc): y may be x itself (cuda_ops.h), written by this kernel. */
    auto load = [&](uint32_t t, em_ssm_in<RL, VPL> &in) {
#pragma unroll
        for (int i = 0; i < RL; i++) in.x[i] = ok[i] ? xh[(size_t)t * k.xs + i * SUB] : 0.0f;
#pragma unroll
        for (int i = 0; i < RL; i++) in.z[i] = zh && ok[i] ? zh[(size_t)t * k.zs + i * SUB] : 0.0f;
        in.dt = dth[(size_t)t * k.dts];
        const size_t bc = (size_t)t * (k.bcs / 4);
#pragma unroll
        for (int v = 0; v < VPL; v++) {
            in.b[v] = Bg[bc + v * LPR];
            in.c[v] = Cg[bc + v * LPR];
        }
    };

    em_ssm_in<RL, VPL> nxt;
    load(0, nxt);
    for (uint32_t t = 0; t < k.n_tok; t++) {
        const em_ssm_in<RL, VPL> cur = nxt;
        if (t + 1 < k.n_tok) load(t + 1, nxt); /* in flight while token t is computed */
        const float dt = em_ssm_dt(cur.dt, bias, k);
        const float dA = expf(dt * Ah);
        float sq = 0.0f; /* sum of y^2 over this lane's rows (lanes q == 0) */
#pragma unroll
        for (int i = 0; i < RL; i++) {
            const float dtx = dt * cur.x[i];
            float acc = 0.0f;
#pragma unroll
            for (int v = 0; v < VPL; v++) acc = em_ssm_upd4(s[i][v], dA, dtx, cur.b[v], cur.c[v], acc);
            acc = em_seg_sum<LPR>(acc);
            float out = acc + Dh * cur.x[i];
            if (zh) out *= cur.z[i] / (1.0f + expf(-cur.z[i])); /* * silu(z), as the twin */
            if (q == 0 && ok[i]) {
                yh[(size_t)t * k.ys + i * SUB] = out;
                sq += out * out;
            }
        }
        if (k.sumsq) { /* the head's sum: warps in order through shared memory */
            __shared__ float part[EM_SSM_MAX_HEAD_WARPS];
            sq = em_seg_sum<32>(sq);
            if (lane == 0) part[warp] = sq;
            __syncthreads();
            if (threadIdx.x == 0) {
                float tot = 0.0f;
                for (uint32_t w = 0; w < (blockDim.x >> 5); w++) tot += part[w];
                k.sumsq[(size_t)t * k.H + h] = tot;
            }
            __syncthreads(); /* part is reused by the next token */
        }
    }

#pragma unroll
    for (int i = 0; i < RL; i++)
#pragma unroll
        for (int v = 0; v < VPL; v++)
            if (ok[i]) __stcs(S + (size_t)i * SUB * N4 + v * LPR, s[i][v]);
}

// ---- generic path: any N, any alignment --------------------------------------------------------------

/* A warp per state row (h, p); lanes stride over n. The row is read and written in global memory once per
 * token (each element by the same lane every token, so no barrier is needed).
 * Grid: ceil(H * P / EM_SSM_WARPS) blocks of EM_SSM_THREADS. */
__global__ void __launch_bounds__(EM_SSM_THREADS) em_ssm_generic(const em_ssm_kp k) {
    const int lane = threadIdx.x & 31;
    const uint32_t row = blockIdx.x * EM_SSM_WARPS + (threadIdx.x >> 5); /* h * P + p */
    if (row >= k.H * k.P) return;
    const uint32_t h = row / k.P, p = row % k.P, g = h / k.heads_per_group;
    float *S = k.state + (size_t)row * k.N; /* [N] */
    const float Ah = k.A[h], Dh = k.D[h], bias = k.dt_bias[h];
    for (uint32_t t = 0; t < k.n_tok; t++) {
        const float dt = em_ssm_dt(k.dt[(size_t)t * k.dts + h], bias, k);
        const float dA = expf(dt * Ah);
        const float xv = k.x[(size_t)t * k.xs + (size_t)h * k.P + p];
        const float dtx = dt * xv;
        const float *Bt = k.B + (size_t)t * k.bcs + (size_t)g * k.N;
        const float *Ct = k.C + (size_t)t * k.bcs + (size_t)g * k.N;
        float acc = 0.0f;
        for (uint32_t n = lane; n < k.N; n += 32) {
            const float sv = S[n] * dA + dtx * Bt[n];
            S[n] = sv;
            acc += sv * Ct[n];
        }
        acc = em_seg_sum<32>(acc); /* every lane has read x before lane 0 writes y (y may be x) */
        if (lane == 0) k.y[(size_t)t * k.ys + (size_t)h * k.P + p] = acc + Dh * xv;
    }
}

// ---- launchers -----------------------------------------------------------------------------------------

template <int LPR_, int VPL_, int RL_> struct em_ssm_cfg {
    static constexpr int LPR = LPR_, VPL = VPL_, RL = RL_;
};

/* f(em_ssm_cfg<LPR, VPL, RL>) for the vector shape of N and rows per lane rl: the one switch over the
 * instantiations (STYLE.md lesson 11). @return 0 if (N, rl) has no instantiation. */
template <int LPR, int VPL, typename F> static int em_ssm_with_rl(int rl, F &f) {
    switch (rl) {
    case 1: f(em_ssm_cfg<LPR, VPL, 1>{}); return 1;
    case 2: f(em_ssm_cfg<LPR, VPL, 2>{}); return 1;
    case 4: f(em_ssm_cfg<LPR, VPL, 4>{}); return 1;
    default: return 0;
    }
}
template <typename F> static int em_ssm_with_cfg(uint32_t N, int rl, F &&f) {
    switch (N) { /* N = 4 * LPR * VPL */
    case 16: return em_ssm_with_rl<4, 1>(rl, f);
    case 32: return em_ssm_with_rl<8, 1>(rl, f);
    case 64: return em_ssm_with_rl<16, 1>(rl, f);
    case 128: return em_ssm_with_rl<32, 1>(rl, f);
    case 256: return em_ssm_with_rl<32, 2>(rl, f);
    default: return 0;
    }
}

static int em_ssm_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

static int em_ssm_vec_ok(const em_ssm_args *a) {
    const uint32_t bcs = a->bc_stride ? a->bc_stride : a->G * a->N;
    return em_ssm_aligned16(a->state) && em_ssm_aligned16(a->B) && em_ssm_aligned16(a->C) && bcs % 4 == 0 &&
           (a->N == 16 || a->N == 32 || a->N == 64 || a->N == 128 || a->N == 256);
}

/* Rows a warp holds on the vector path at EM_SSM_RL rows a lane: RL * 32 / LPR (LPR = min(N / 4, 32)). */
static uint32_t em_ssm_rows_per_warp(uint32_t N) { return EM_SSM_RL * (32u / (N / 4 < 32 ? N / 4 : 32)); }

/* Can the head-per-block launch (z / sumsq) take these arguments? */
static int em_ssm_head_block_ok(const em_ssm_args *a) {
    if (!em_ssm_vec_ok(a)) return 0;
    const uint32_t rpw = em_ssm_rows_per_warp(a->N);
    return (a->P + rpw - 1) / rpw <= EM_SSM_MAX_HEAD_WARPS;
}

extern "C" int em_cuda_ssm_supported(const em_ssm_args *a) {
    if (!a || !a->x || !a->dt || !a->B || !a->C || !a->A || !a->D || !a->dt_bias || !a->state || !a->y) return 0;
    if (a->G == 0 || a->H % a->G != 0) return 0;
    if (!(a->dt_max > 0.0f && a->dt_min <= a->dt_max)) return 0; /* also catches NaN and a zeroed struct */
    if ((uint64_t)a->H * a->P > UINT32_MAX || (uint64_t)a->G * a->N > UINT32_MAX) return 0;
    const uint64_t hp = (uint64_t)a->H * a->P, gn = (uint64_t)a->G * a->N;
    if ((a->z || a->sumsq) && !em_ssm_head_block_ok(a)) return 0;
    if (a->z_stride && a->z_stride < hp) return 0;
    if (a->x_stride && a->x_stride < hp) return 0;
    if (a->y_stride && a->y_stride < hp) return 0;
    if (a->dt_stride && a->dt_stride < a->H) return 0;
    if (a->bc_stride && a->bc_stride < gn) return 0;
    return 1;
}

static em_status em_ssm_launched(const char *kernel, const em_ssm_args *a) {
    const cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return EM_OK;
    return em_fail(EM_ERR_DEVICE, "em_cuda_ssm: launch of %s (n_tok %u, H %u, P %u, N %u, G %u) failed: %s: %s", kernel,
                   a->n_tok, a->H, a->P, a->N, a->G, cudaGetErrorName(e), cudaGetErrorString(e));
}

extern "C" em_status em_cuda_ssm_path(const em_ssm_args *a, void *stream, int path) {
    if (!a) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_ssm: args is NULL");
    if (!em_cuda_ssm_supported(a))
        return em_fail(EM_ERR_INVALID_ARG,
                       "em_cuda_ssm: unsupported arguments (H %u, P %u, N %u, G %u, strides x %u dt %u bc %u y %u, "
                       "dt limits (%g, %g), pointers %s)", a->H, a->P, a->N, a->G, a->x_stride, a->dt_stride,
                       a->bc_stride, a->y_stride, (double)a->dt_min, (double)a->dt_max,
                       a->x && a->dt && a->B && a->C && a->A && a->D && a->dt_bias && a->state && a->y ? "set"
                                                                                                   : "NULL");
    if (a->n_tok == 0 || a->H == 0 || a->P == 0) return EM_OK;

    em_ssm_kp k;
    k.x = a->x; k.dt = a->dt; k.B = a->B; k.C = a->C; k.A = a->A; k.D = a->D; k.dt_bias = a->dt_bias;
    k.state = a->state; k.y = a->y;
    k.n_tok = a->n_tok; k.H = a->H; k.P = a->P; k.N = a->N; k.heads_per_group = a->H / a->G;
    k.xs = a->x_stride ? a->x_stride : a->H * a->P;
    k.dts = a->dt_stride ? a->dt_stride : a->H;
    k.bcs = a->bc_stride ? a->bc_stride : a->G * a->N;
    k.ys = a->y_stride ? a->y_stride : a->H * a->P;
    k.dt_min = a->dt_min; k.dt_max = a->dt_max;
    k.clamp = !(a->dt_min == 0.0f && isinf(a->dt_max));
    k.warps_per_head = 0;
    k.z = a->z;
    k.zs = a->z_stride ? a->z_stride : a->H * a->P;
    k.sumsq = a->sumsq;
    cudaStream_t s = (cudaStream_t)stream;

    const int vec_ok = em_ssm_vec_ok(a);
    const int head_blocks = a->z || a->sumsq; /* supported() has checked that this launch can take them */
    const int rl = path == 0 || head_blocks ? EM_SSM_RL : path;
    em_status st = EM_OK;
    if (path >= 0 && vec_ok &&
        em_ssm_with_cfg(a->N, rl, [&](auto cfg) {
            using C = decltype(cfg);
            constexpr uint32_t rows_per_warp = C::RL * (32 / C::LPR);
            k.warps_per_head = (a->P + rows_per_warp - 1) / rows_per_warp;
            cudaLaunchConfig_t lc = {};
            lc.gridDim = dim3(head_blocks ? a->H
                                          : (unsigned)(((uint64_t)a->H * k.warps_per_head + EM_SSM_WARPS - 1) /
                                                       EM_SSM_WARPS));
            lc.blockDim = dim3(head_blocks ? k.warps_per_head * 32u : EM_SSM_THREADS);
            lc.stream = s;
            cudaLaunchAttribute attr[1];
            if (a->flags & EM_SSM_STATE_OWN) {
                int dev = 0, major = 0;
                if (cudaGetDevice(&dev) == cudaSuccess &&
                    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major >= 9) {
                    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
                    attr[0].val.programmaticStreamSerializationAllowed = 1;
                    lc.attrs = attr;
                    lc.numAttrs = 1;
                }
                cudaGetLastError();
            }
            cudaLaunchKernelEx(&lc, em_ssm_vec<C::LPR, C::VPL, C::RL>, k);
            st = em_ssm_launched("em_ssm_vec", a);
        }))
        return st;
    if (head_blocks)
        return em_fail(EM_ERR_INVALID_ARG, "em_cuda_ssm: z / sumsq need the vector path (no instantiation for N %u)",
                       a->N);
    if (path > 0)
        return em_fail(EM_ERR_UNSUPPORTED, "em_cuda_ssm_path: no vector path for N %u, %d rows per lane, %s", a->N,
                       path, vec_ok ? "aligned" : "misaligned state/B/C or bc_stride % 4 != 0");

    const unsigned blocks = (unsigned)(((uint64_t)a->H * a->P + EM_SSM_WARPS - 1) / EM_SSM_WARPS);
    em_ssm_generic<<<blocks, EM_SSM_THREADS, 0, s>>>(k);
    return em_ssm_launched("em_ssm_generic", a);
}

extern "C" em_status em_cuda_ssm(const em_ssm_args *a, void *stream) { return em_cuda_ssm_path(a, stream, 0); }
