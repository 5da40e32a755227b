/*
 * ssd.cu — the Mamba-2 SSD chunked scan on the GPU, for prompts (issue 8): the same result as the sequential
 * selective scan (em_cuda_ssm, kernels/ssm.cu) over n_tok tokens from the state in `state`, with the final state
 * left there as decode expects it, but computed as matrix products over chunks of Q tokens so that a prompt costs
 * a few tensor-core GEMMs instead of n_tok dependent steps. Twin: em_ref_ssd (kernels/ref/ssd_ref.c), which writes
 * the same formulas one chunk at a time; test and benchmark: tests/test_ssd_cuda.c (`--perf` times the 8B shape at
 * 512 and 8192 tokens for chunk 64, 128 and 256). docs/prefill.md has the algorithm and the numbers.
 *
 * For head h (group g = h / (H / G)), chunk c (tokens c*Q .. c*Q+Q-1), positions i, s inside the chunk:
 *   dt[i]  = clamp(softplus(dt_raw + dt_bias)),  cum[i] = sum_{j<=i} dt[j] A[h]        (kernel 0, fp32)
 *   CB[s][i] = C[i] . B[s]  per (chunk, group), the lower triangle's 64x64 tiles      (kernel 1, GEMM K = N)
 *   S_loc[p][n] = sum_s exp(cum[Q-1] - cum[s]) dt[s] x[s][p] B[s][n]                  (kernel 2, GEMM K = Q)
 *   S_in[0] = state;  S_in[c+1] = exp(cum_c[Q-1]) S_in[c] + S_loc[c];  state = S_in[n_chunks]  (kernel 3, fp32)
 *   y[i][p] = sum_{s<=i} exp(cum[i]-cum[s]) CB[s][i] dt[s] x[s][p]                     (kernel 4, GEMM K = 64..Q
 *           + exp(cum[i]) sum_n C[i][n] S_in[c][p][n] + D[h] x[i][p]                   then K = N, one accumulator)
 * Padded positions past n_tok have dt = 0 (so cum keeps its last value, and they add nothing) and zero inputs.
 *
 * Version history (H100, Mamba-2 8B layer H 128 P 64 N 128 G 8, 512 tokens, chunk 128; `test_ssd_cuda --perf`):
 *   v1 Tensor cores through wmma in TF32 (m16n16k8, fp32 accumulate) for kernels 1, 2 and 4: every GEMM is a 64x64
 *      block tile, 8 warps of 16x32, K in steps of 32 staged in shared memory; operands are loaded from global
 *      memory in their natural (coalesced) order and the wmma fragment layout (row/col major) is chosen to match,
 *      so no transposes. The decay masks and scales are applied while staging (the causal mask by select, never by
 *      multiplying: the CB tiles above the diagonal are never written). The dt/cum scan and the state pass are fp32.
 *      TF32 keeps 10 mantissa bits: ~3e-4 relative measured against the twin (the tests hold it to the bf16 limit
 *      1e-2; the GEMMs around it take bf16 activations anyway). 309 us, of which ~100 us the dt/cum kernel (one
 *      thread per (head, chunk), sequential).
 *   v1.1 dt/cum as a block scan per (chunk, head) (6 us); the state pass loads chunk c+1 before storing chunk c:
 *      202 us.
 *   v1.2 the next K stage is loaded into registers while the current one is multiplied (one stage ahead); the
 *      output kernel keeps the chunk's cum/dt in shared memory and masks with __expf; at most 128 registers (2 blocks
 *      per SM); operands rounded to TF32 once when staged instead of per fragment load: 162 us. Tried and reverted:
 *      K steps of 64 (the output kernel spills: 229 us). ncu on v1.1: 25% occupancy (registers), ~7 cycles per
 *      issued instruction, compute 52% / L1 51% / DRAM 15% of peak: instruction-issue and latency bound, not
 *      bandwidth or tensor bound.
 *   v1.3 (this file) staging addresses strength-reduced (a base pointer and a constant stride per element instead
 *      of 64-bit index arithmetic per element): 148 us (graph 141; dt 6, C.B^T 8, chunk states 44, pass 14,
 *      outputs 81); 8192 tokens 2219 us.
 *      Next: bf16 mma.sync with ldmatrix (4x the work per instruction of TF32 wmma), cp.async stages, and fusing
 *      chunk states + pass + outputs so that the 4 MB-per-chunk states never go through DRAM (docs/prefill.md).
 *
 * Workspace (the caller's, planned once by em_cuda_ssd_workspace_bytes; 256-byte aligned regions):
 *   dt [H, Lp] | cum [H, Lp] | CB [n_chunks, G, Q, Q] | states [n_chunks, H, P, N]      Lp = n_chunks * Q
 * No allocation, no host synchronisation, no host reads of device memory: safe inside a stream capture.
 *
 * Build: part of the library with -DEM_CUDA=ON. Standalone, with the resource report (registers, spills):
 *   nvcc -O3 -std=c++17 -arch=sm_90 -Xptxas -v -Iinclude -Ikernels -Iruntime -Iplatform \
 *        -c kernels/ssd.cu -o /tmp/ssd.o
 */
#ifndef EM_HAVE_CUDA
#define EM_HAVE_CUDA 1 /* a .cu file is a CUDA build by definition (the standalone command defines nothing) */
#endif

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

#include <cuda_runtime.h>
#include <mma.h>

#include "cuda_ops.h"
#include "workspace.h"
extern "C" {
#include "util.h" /* em_fail */
}

using namespace nvcuda;

// ---- geometry ------------------------------------------------------------------------------------------

#define SSD_THREADS 256 /* 8 warps: 4 (rows of 16) x 2 (columns of 32) over a 64 x 64 tile */
#define SSD_T 64        /* block tile, both dimensions */
#define SSD_BK 32       /* K staged per step (64 measured slower: the output kernel spills) */
#define SSD_LDK 36      /* leading dimension of a [64][BK] stage (+4: rows 16-byte aligned, banks spread) */
#define SSD_LDT 68      /* leading dimension of a [BK][64] stage and of the [64][64] output tile */
#define SSD_R (SSD_T * SSD_BK / SSD_THREADS) /* elements of a stage each thread loads, per operand */
/* Staging maps: a [BK][64] stage (k-major) gives thread tid the column m = tid % 64 and the rows tid / 64 + KSTEP r;
 * a [64][BK] stage gives it the column kk = tid % BK and the rows tid / BK + MSTEP r. Each thread's addresses are
 * then a base pointer plus a constant stride per r (the staging was most of the issued instructions, ncu). */
#define SSD_KSTEP (SSD_THREADS / SSD_T)
#define SSD_MSTEP (SSD_THREADS / SSD_BK)

/* The kernels' arguments, resolved by the launcher (strides explicit, workspace carved). */
struct em_ssd_kp {
    const float *x, *dt, *B, *C, *A, *D, *dt_bias;
    float *state, *y;
    uint32_t n_tok, H, P, N, G, hpg; /* hpg = heads per group */
    uint32_t xs, dts, bcs, ys;
    float dt_min, dt_max;
    int clamp;
    uint32_t Q, nc, Lp;              /* chunk, chunks, padded tokens */
    float *dtv, *cum;                /* [H, Lp] */
    float *cb;                       /* [nc, G, Q, Q]: cb[c][g][s][i] = C[i] . B[s] (s <= i tiles only) */
    float *st;                       /* [nc, H, P, N]: chunk states, then (after the pass) the states entering */
};

static __host__ __device__ __forceinline__ size_t ssd_align(size_t b) { return (b + 255) & ~(size_t)255; }

// ---- the tile GEMM ------------------------------------------------------------------------------------

/* Round to TF32 (10 mantissa bits, nearest) once, when an operand is staged: every fragment load of it is then
 * exact, and the wmma fragments need no per-load conversion (the conversions were ~a quarter of the issued
 * instructions, ncu 2026-11-23). */
static __device__ __forceinline__ float ssd_tf32(float v) { return wmma::__float_to_tf32(v); }

typedef wmma::fragment<wmma::accumulator, 16, 16, 8, float> ssd_acc;

/* acc[j] += A[wm*16 .. +16][0 .. BK) * B[0 .. BK)[wn*32 + j*16 .. +16] from the staged tiles.
 * LA row_major: sA[m][k] (ld SSD_LDK); col_major: sA[k][m] (ld SSD_LDT). LB row_major: sB[k][n] (ld SSD_LDT);
 * col_major: sB[n][k] (ld SSD_LDK). */
template <typename LA, typename LB>
static __device__ __forceinline__ void ssd_mma(ssd_acc acc[2], const float *sA, const float *sB, int wm, int wn) {
    constexpr bool a_row = std::is_same<LA, wmma::row_major>::value;
    constexpr bool b_row = std::is_same<LB, wmma::row_major>::value;
#pragma unroll
    for (int kk = 0; kk < SSD_BK; kk += 8) {
        wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, LA> a;
        const float *pa = a_row ? sA + (wm * 16) * SSD_LDK + kk : sA + kk * SSD_LDT + wm * 16;
        wmma::load_matrix_sync(a, pa, a_row ? SSD_LDK : SSD_LDT); /* staged already rounded to tf32 */
#pragma unroll
        for (int j = 0; j < 2; j++) {
            wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, LB> b;
            const int n0 = wn * 32 + j * 16;
            const float *pb = b_row ? sB + kk * SSD_LDT + n0 : sB + n0 * SSD_LDK + kk;
            wmma::load_matrix_sync(b, pb, b_row ? SSD_LDT : SSD_LDK);
            wmma::mma_sync(acc[j], a, b, acc[j]);
        }
    }
}

/* The shared memory of one tile GEMM: two stages (A, B) and the output tile. 32-byte aligned (wmma). */
struct ssd_smem {
    __align__(32) float a[SSD_T * SSD_LDK];  /* >= SSD_BK * SSD_LDT */
    __align__(32) float b[SSD_T * SSD_LDK];
    __align__(32) float c[SSD_T * SSD_LDT];
    float v0[EM_SSD_MAX_CHUNK], v1[SSD_T];   /* per-kernel vectors (weights, decays) */
    float cum[EM_SSD_MAX_CHUNK], dt[EM_SSD_MAX_CHUNK]; /* the chunk's cum and dt (kernel 4) */
};
static_assert(SSD_T * SSD_LDK >= SSD_BK * SSD_LDT, "stage buffer too small");

static __device__ __forceinline__ void ssd_acc_zero(ssd_acc acc[2]) {
    wmma::fill_fragment(acc[0], 0.0f);
    wmma::fill_fragment(acc[1], 0.0f);
}

/* Output tile to shared memory: c[m][n], ld SSD_LDT. */
static __device__ __forceinline__ void ssd_acc_store(ssd_acc acc[2], float *c, int wm, int wn) {
    wmma::store_matrix_sync(c + (wm * 16) * SSD_LDT + wn * 32, acc[0], SSD_LDT, wmma::mem_row_major);
    wmma::store_matrix_sync(c + (wm * 16) * SSD_LDT + wn * 32 + 16, acc[1], SSD_LDT, wmma::mem_row_major);
}

// ---- kernel 0: dt and the cumulative log-decay per chunk ------------------------------------------------

/* Grid (nc, H), EM_SSD_MAX_CHUNK threads: thread i of block (c, h) takes token c*Q + i (i < Q). dt as em_ref_ssd
 * computes it (expf/log1pf, not the fast intrinsics), then an inclusive scan of dt * A over the chunk: warp
 * shuffles, then the warps' totals. (The sum's order differs from the twin's sequential one: a few ulp of |cum|.) */
__global__ void __launch_bounds__(EM_SSD_MAX_CHUNK) em_ssd_dt(const em_ssd_kp k) {
    __shared__ float wsum[EM_SSD_MAX_CHUNK / 32];
    const uint32_t c = blockIdx.x, h = blockIdx.y, i = threadIdx.x, lane = i & 31, warp = i >> 5;
    const uint32_t t = c * k.Q + i;
    float d = 0.0f;
    if (i < k.Q && t < k.n_tok) {
        const float v = k.dt[(size_t)t * k.dts + h] + k.dt_bias[h];
        d = v > 20.0f ? v : log1pf(expf(v));
        if (k.clamp) d = fminf(fmaxf(d, k.dt_min), k.dt_max);
    }
    float run = d * k.A[h];
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) { /* inclusive scan inside the warp */
        const float u = __shfl_up_sync(0xffffffffu, run, o);
        if (lane >= (uint32_t)o) run += u;
    }
    if (lane == 31) wsum[warp] = run;
    __syncthreads();
    for (uint32_t w = 0; w < warp; w++) run += wsum[w]; /* the earlier warps' totals */
    if (i < k.Q) {
        k.dtv[(size_t)h * k.Lp + t] = d;
        k.cum[(size_t)h * k.Lp + t] = run;
    }
}

// ---- kernel 1: CB[s][i] = C[i] . B[s], per (chunk, group), tiles on and below the diagonal ---------------

/* Grid (T(T+1)/2 tile pairs, G, nc) with T = Q / 64. Rows m = s (B row-major), columns n = i (C as a col-major
 * B operand: C[i][k] is contiguous in k). Tiles with s > i are never computed nor read. */
__global__ void __launch_bounds__(SSD_THREADS, 2) em_ssd_cb(const em_ssd_kp k) {
    __shared__ ssd_smem sm;
    const int tid = threadIdx.x, warp = tid >> 5, wm = warp & 3, wn = warp >> 2;
    uint32_t pair = blockIdx.x, ti = 0;
    while (pair > ti) { pair -= ti + 1; ti++; }
    const uint32_t si = pair, g = blockIdx.y, c = blockIdx.z;
    const uint32_t s0 = c * k.Q + si * SSD_T, i0 = c * k.Q + ti * SSD_T; /* token indices */
    ssd_acc acc[2];
    ssd_acc_zero(acc);
    float ra[SSD_R], rb[SSD_R]; /* the next stage, loaded while the current one is multiplied */
    const int kk = tid % SSD_BK, mq = tid / SSD_BK; /* rows mq + MSTEP r */
    const size_t mstep = (size_t)SSD_MSTEP * k.bcs;
    auto fetch = [&](uint32_t k0) {
        const bool kin = k0 + kk < k.N;
        const float *bp = k.B + (size_t)(s0 + mq) * k.bcs + (size_t)g * k.N + k0 + kk;
        const float *cp = k.C + (size_t)(i0 + mq) * k.bcs + (size_t)g * k.N + k0 + kk;
#pragma unroll
        for (int r = 0; r < SSD_R; r++, bp += mstep, cp += mstep) {
            ra[r] = kin && s0 + mq + SSD_MSTEP * r < k.n_tok ? *bp : 0.0f;
            rb[r] = kin && i0 + mq + SSD_MSTEP * r < k.n_tok ? *cp : 0.0f;
        }
    };
    fetch(0);
    for (uint32_t k0 = 0; k0 < k.N; k0 += SSD_BK) {
#pragma unroll
        for (int r = 0; r < SSD_R; r++) {
            sm.a[(mq + SSD_MSTEP * r) * SSD_LDK + kk] = ssd_tf32(ra[r]);
            sm.b[(mq + SSD_MSTEP * r) * SSD_LDK + kk] = ssd_tf32(rb[r]);
        }
        __syncthreads();
        if (k0 + SSD_BK < k.N) fetch(k0 + SSD_BK);
        ssd_mma<wmma::row_major, wmma::col_major>(acc, sm.a, sm.b, wm, wn);
        __syncthreads();
    }
    ssd_acc_store(acc, sm.c, wm, wn);
    __syncthreads();
    float *out = k.cb + ((size_t)(c * k.G + g) * k.Q + si * SSD_T) * k.Q + ti * SSD_T;
    for (int r = 0; r < SSD_T * SSD_T / SSD_THREADS; r++) {
        const int idx = tid + r * SSD_THREADS, m = idx / SSD_T, n = idx % SSD_T;
        out[(size_t)m * k.Q + n] = sm.c[m * SSD_LDT + n];
    }
}

// ---- kernel 2: each chunk's own state (from zero) ----------------------------------------------------

/* Grid (ceil(P/64) * ceil(N/64), H, nc). S_loc[p][n] = sum_s w[s] x[s][p] B[s][n], w[s] = exp(cum[Q-1] - cum[s]) dt[s].
 * A operand x^T staged k-major (x[s][p] contiguous in p: col-major A), B operand B[s][n] row-major. */
__global__ void __launch_bounds__(SSD_THREADS, 2) em_ssd_states(const em_ssd_kp k) {
    __shared__ ssd_smem sm;
    const int tid = threadIdx.x, warp = tid >> 5, wm = warp & 3, wn = warp >> 2;
    const uint32_t PT = (k.P + SSD_T - 1) / SSD_T;
    const uint32_t p0 = (blockIdx.x % PT) * SSD_T, n0 = (blockIdx.x / PT) * SSD_T;
    const uint32_t h = blockIdx.y, c = blockIdx.z, g = h / k.hpg, t0 = c * k.Q;
    const float *cum = k.cum + (size_t)h * k.Lp + t0, *dtv = k.dtv + (size_t)h * k.Lp + t0;
    const float cl = cum[k.Q - 1];
    for (uint32_t s = tid; s < k.Q; s += SSD_THREADS) sm.v0[s] = expf(cl - cum[s]) * dtv[s]; /* 0 past n_tok */
    __syncthreads();
    ssd_acc acc[2];
    ssd_acc_zero(acc);
    float ra[SSD_R], rb[SSD_R]; /* the next stage, loaded while the current one is multiplied */
    const int m = tid % SSD_T, kq = tid / SSD_T; /* column m, rows kq + KSTEP r */
    const bool pin = p0 + m < k.P, nin = n0 + m < k.N;
    const size_t xstep = (size_t)SSD_KSTEP * k.xs, bstep = (size_t)SSD_KSTEP * k.bcs;
    auto fetch = [&](uint32_t k0) {
        const uint32_t t = t0 + k0 + kq;
        const float *xp = k.x + (size_t)t * k.xs + (size_t)h * k.P + p0 + m;
        const float *bp = k.B + (size_t)t * k.bcs + (size_t)g * k.N + n0 + m;
#pragma unroll
        for (int r = 0; r < SSD_R; r++, xp += xstep, bp += bstep) {
            const bool tin = t + SSD_KSTEP * r < k.n_tok;
            ra[r] = tin && pin ? *xp : 0.0f;
            rb[r] = tin && nin ? *bp : 0.0f;
        }
    };
    fetch(0);
    for (uint32_t k0 = 0; k0 < k.Q; k0 += SSD_BK) {
#pragma unroll
        for (int r = 0; r < SSD_R; r++) {
            const int kk = kq + SSD_KSTEP * r;
            sm.a[kk * SSD_LDT + m] = ssd_tf32(ra[r] * sm.v0[k0 + kk]);
            sm.b[kk * SSD_LDT + m] = ssd_tf32(rb[r]);
        }
        __syncthreads();
        if (k0 + SSD_BK < k.Q) fetch(k0 + SSD_BK);
        ssd_mma<wmma::col_major, wmma::row_major>(acc, sm.a, sm.b, wm, wn);
        __syncthreads();
    }
    ssd_acc_store(acc, sm.c, wm, wn);
    __syncthreads();
    float *out = k.st + ((size_t)c * k.H + h) * k.P * k.N;
    for (int r = 0; r < SSD_T * SSD_T / SSD_THREADS; r++) {
        const int idx = tid + r * SSD_THREADS, m = idx / SSD_T, n = idx % SSD_T;
        if (p0 + m < k.P && n0 + n < k.N) out[(size_t)(p0 + m) * k.N + n0 + n] = sm.c[m * SSD_LDT + n];
    }
}

// ---- kernel 3: the sequential pass over chunks (fp32) ---------------------------------------------------

/* One thread per state element: S_in[0] = state; S_in[c+1] = exp(cum_c[Q-1]) S_in[c] + S_loc[c]. st[c] is
 * replaced by S_in[c] (what kernel 4 reads); the final state goes back to `state`. */
__global__ void __launch_bounds__(256) em_ssd_pass(const em_ssd_kp k) {
    const size_t per_head = (size_t)k.P * k.N, total = per_head * k.H;
    const size_t e = (size_t)blockIdx.x * 256 + threadIdx.x;
    if (e >= total) return;
    const uint32_t h = (uint32_t)(e / per_head);
    const float *cl = k.cum + (size_t)h * k.Lp + k.Q - 1;
    float carry = k.state[e];
    float loc = k.st[e], dec = expf(cl[0]);
    for (uint32_t c = 0; c < k.nc; c++) {
        /* the next chunk's values are loaded before this chunk's store: the loop is a chain of stores, not of
         * round trips to memory (the compiler cannot prove st[c + 1] and st[c] apart) */
        float loc_n = 0.0f, dec_n = 1.0f;
        if (c + 1 < k.nc) {
            loc_n = __ldcs(k.st + (size_t)(c + 1) * total + e);
            dec_n = expf(cl[(size_t)(c + 1) * k.Q]);
        }
        __stcs(k.st + (size_t)c * total + e, carry);
        carry = dec * carry + loc;
        loc = loc_n;
        dec = dec_n;
    }
    k.state[e] = carry;
}

// ---- kernel 4: the outputs -------------------------------------------------------------------------------

/* Grid (T * ceil(P/64), H, nc), T = Q / 64: rows m = the 64 tokens i of tile ti, columns n = 64 of P.
 * Segment 1 (K = s over the tiles 0 .. ti, causal): A[i][s] = (s <= i) ? CB[s][i] exp(cum[i]-cum[s]) dt[s] : 0,
 * staged k-major from CB[s][i] (contiguous in i: col-major A); B[s][p] = x[s][p] row-major.
 * Segment 2 (K = n over N): A[i][n] = exp(cum[i]) C[i][n] row-major; B[n][p] = S_in[p][n] (contiguous in n:
 * col-major B). Then y = acc + D x. */
__global__ void __launch_bounds__(SSD_THREADS, 2) em_ssd_out(const em_ssd_kp k) {
    __shared__ ssd_smem sm;
    const int tid = threadIdx.x, warp = tid >> 5, wm = warp & 3, wn = warp >> 2;
    const uint32_t T = k.Q / SSD_T;
    const uint32_t ti = blockIdx.x % T, p0 = (blockIdx.x / T) * SSD_T;
    const uint32_t h = blockIdx.y, c = blockIdx.z, g = h / k.hpg;
    const uint32_t t0 = c * k.Q, i0 = ti * SSD_T; /* chunk start (token); tile start (in the chunk) */
    const float *cum = k.cum + (size_t)h * k.Lp + t0, *dtv = k.dtv + (size_t)h * k.Lp + t0;
    if (tid < SSD_T) {
        sm.v1[tid] = cum[i0 + tid];             /* cum[i] of the tile's rows */
        sm.v0[tid] = expf(cum[i0 + tid]);       /* exp(cum[i]) */
    }
    for (uint32_t j = tid; j < i0 + SSD_T; j += SSD_THREADS) { /* cum[s], dt[s] of the columns */
        sm.cum[j] = cum[j];
        sm.dt[j] = dtv[j];
    }
    __syncthreads();
    ssd_acc acc[2];
    ssd_acc_zero(acc);
    const float *cb = k.cb + (size_t)(c * k.G + g) * k.Q * k.Q;
    /* segment 1; the stage after the current one is loaded (cb, cum[s], dt[s], x) while it is multiplied */
    float rc[SSD_R], rx[SSD_R];
    const uint32_t K1 = i0 + SSD_T;
    const int m1 = tid % SSD_T, kq = tid / SSD_T; /* column m1 (token i = i0 + m1), rows kq + KSTEP r (tokens s) */
    const uint32_t i1 = i0 + m1;
    const bool iin = t0 + i1 < k.n_tok, pin = p0 + m1 < k.P;
    const size_t xstep = (size_t)SSD_KSTEP * k.xs, cstep = (size_t)SSD_KSTEP * k.Q;
    auto fetch1 = [&](uint32_t k0) {
        const uint32_t s = k0 + kq; /* in the chunk */
        const float *cp = cb + (size_t)s * k.Q + i1;
        const float *xp = k.x + (size_t)(t0 + s) * k.xs + (size_t)h * k.P + p0 + m1;
#pragma unroll
        for (int r = 0; r < SSD_R; r++, cp += cstep, xp += xstep) {
            const uint32_t sr = s + SSD_KSTEP * r;
            rc[r] = sr <= i1 && iin ? *cp : 0.0f;
            rx[r] = t0 + sr < k.n_tok && pin ? *xp : 0.0f;
        }
    };
    fetch1(0);
    for (uint32_t k0 = 0; k0 < K1; k0 += SSD_BK) {
#pragma unroll
        for (int r = 0; r < SSD_R; r++) {
            const int kk = kq + SSD_KSTEP * r, m = m1;
            const uint32_t s = k0 + kk, i = i1;
            /* select, never multiply, for the mask: cb above the diagonal is garbage (unwritten workspace) */
            sm.a[kk * SSD_LDT + m] = ssd_tf32(s <= i ? rc[r] * __expf(sm.v1[m] - sm.cum[s]) * sm.dt[s] : 0.0f);
            sm.b[kk * SSD_LDT + m] = ssd_tf32(rx[r]);
        }
        __syncthreads();
        if (k0 + SSD_BK < K1) fetch1(k0 + SSD_BK);
        ssd_mma<wmma::col_major, wmma::row_major>(acc, sm.a, sm.b, wm, wn);
        __syncthreads();
    }
    /* segment 2 */
    const float *S = k.st + ((size_t)c * k.H + h) * k.P * k.N; /* S_in[c] [P, N] */
    const int kk2 = tid % SSD_BK, mq = tid / SSD_BK; /* column kk2, rows mq + MSTEP r */
    const size_t tstep = (size_t)SSD_MSTEP * k.bcs, pstep = (size_t)SSD_MSTEP * k.N;
    auto fetch2 = [&](uint32_t k0) {
        const bool kin = k0 + kk2 < k.N;
        const uint32_t t = t0 + i0 + mq;
        const float *cp = k.C + (size_t)t * k.bcs + (size_t)g * k.N + k0 + kk2;
        const float *sp = S + (size_t)(p0 + mq) * k.N + k0 + kk2;
#pragma unroll
        for (int r = 0; r < SSD_R; r++, cp += tstep, sp += pstep) {
            rc[r] = kin && t + SSD_MSTEP * r < k.n_tok ? *cp : 0.0f;
            rx[r] = kin && p0 + mq + SSD_MSTEP * r < k.P ? *sp : 0.0f;
        }
    };
    fetch2(0);
    for (uint32_t k0 = 0; k0 < k.N; k0 += SSD_BK) {
#pragma unroll
        for (int r = 0; r < SSD_R; r++) {
            const int m = mq + SSD_MSTEP * r;
            sm.a[m * SSD_LDK + kk2] = ssd_tf32(rc[r] * sm.v0[m]);
            sm.b[m * SSD_LDK + kk2] = ssd_tf32(rx[r]);
        }
        __syncthreads();
        if (k0 + SSD_BK < k.N) fetch2(k0 + SSD_BK);
        ssd_mma<wmma::row_major, wmma::col_major>(acc, sm.a, sm.b, wm, wn);
        __syncthreads();
    }
    ssd_acc_store(acc, sm.c, wm, wn);
    __syncthreads();
    const float Dh = k.D[h];
    for (int r = 0; r < SSD_T * SSD_T / SSD_THREADS; r++) {
        const int idx = tid + r * SSD_THREADS, m = idx / SSD_T, n = idx % SSD_T;
        const uint32_t t = t0 + i0 + m, p = p0 + n;
        if (t < k.n_tok && p < k.P) {
            const size_t hp = (size_t)h * k.P + p;
            k.y[(size_t)t * k.ys + hp] = sm.c[m * SSD_LDT + n] + Dh * k.x[(size_t)t * k.xs + hp];
        }
    }
}

// ---- launcher --------------------------------------------------------------------------------------------

static uint32_t ssd_chunk(uint32_t chunk) { return chunk ? chunk : EM_SSD_CHUNK; }

/* em_cuda_ssd_workspace_bytes: kernels/workspace.c (the same regions as ssd_carve below) */
static_assert(SSD_T == EM_SSD_TILE, "kernels/workspace.h's tile is this file's");

extern "C" int em_cuda_ssd_supported(const em_ssd_args *a) {
    if (!a || !a->x || !a->dt || !a->B || !a->C || !a->A || !a->D || !a->dt_bias || !a->state || !a->y) return 0;
    if (a->G == 0 || a->H == 0 || a->H % a->G != 0 || a->P == 0 || a->N == 0) return 0;
    if (!(a->dt_max > 0.0f && a->dt_min <= a->dt_max)) return 0; /* also catches NaN and a zeroed struct */
    const uint32_t Q = ssd_chunk(a->chunk);
    if (Q != 64 && Q != 128 && Q != 256) return 0;
    if ((uint64_t)a->H * a->P > UINT32_MAX || (uint64_t)a->G * a->N > UINT32_MAX || a->H > 65535) return 0;
    const uint64_t hp = (uint64_t)a->H * a->P, gn = (uint64_t)a->G * a->N;
    if (a->x_stride && a->x_stride < hp) return 0;
    if (a->y_stride && a->y_stride < hp) return 0;
    if (a->dt_stride && a->dt_stride < a->H) return 0;
    if (a->bc_stride && a->bc_stride < gn) return 0;
    if (((uint64_t)a->n_tok + Q - 1) / Q > 65535) return 0; /* grid.z */
    return 1;
}

extern "C" em_status em_cuda_ssd_phase(const em_ssd_args *a, void *workspace, size_t ws_bytes, void *stream,
                                      int phase) {
    if (!a) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_ssd: args is NULL");
    if (!em_cuda_ssd_supported(a))
        return em_fail(EM_ERR_INVALID_ARG,
                       "em_cuda_ssd: unsupported arguments (H %u, P %u, N %u, G %u, chunk %u, n_tok %u, strides x %u "
                       "dt %u bc %u y %u, dt limits (%g, %g), pointers %s)", a->H, a->P, a->N, a->G, a->chunk,
                       a->n_tok, a->x_stride, a->dt_stride, a->bc_stride, a->y_stride, (double)a->dt_min,
                       (double)a->dt_max,
                       a->x && a->dt && a->B && a->C && a->A && a->D && a->dt_bias && a->state && a->y ? "set"
                                                                                                   : "NULL");
    if (a->n_tok == 0) return EM_OK;
    const size_t need = em_cuda_ssd_workspace_bytes(a->n_tok, a->H, a->P, a->N, a->G, a->chunk);
    if (!workspace || ws_bytes < need)
        return em_fail(EM_ERR_INVALID_ARG, "em_cuda_ssd: workspace of %zu bytes (%s) for %u tokens, %zu needed", ws_bytes,
                       workspace ? "set" : "NULL", a->n_tok, need);

    em_ssd_kp k;
    k.x = a->x; k.dt = a->dt; k.B = a->B; k.C = a->C; k.A = a->A; k.D = a->D; k.dt_bias = a->dt_bias;
    k.state = a->state; k.y = a->y;
    k.n_tok = a->n_tok; k.H = a->H; k.P = a->P; k.N = a->N; k.G = a->G; k.hpg = a->H / a->G;
    k.xs = a->x_stride ? a->x_stride : a->H * a->P;
    k.dts = a->dt_stride ? a->dt_stride : a->H;
    k.bcs = a->bc_stride ? a->bc_stride : a->G * a->N;
    k.ys = a->y_stride ? a->y_stride : a->H * a->P;
    k.dt_min = a->dt_min; k.dt_max = a->dt_max;
    k.clamp = !(a->dt_min == 0.0f && isinf(a->dt_max));
    k.Q = ssd_chunk(a->chunk);
    k.nc = (a->n_tok + k.Q - 1) / k.Q;
    k.Lp = k.nc * k.Q;
    uint8_t *w = (uint8_t *)(((uintptr_t)workspace + 255) & ~(uintptr_t)255);
    k.dtv = (float *)w; w += ssd_align((size_t)k.H * k.Lp * 4);
    k.cum = (float *)w; w += ssd_align((size_t)k.H * k.Lp * 4);
    k.cb = (float *)w; w += ssd_align((size_t)k.nc * k.G * k.Q * k.Q * 4);
    k.st = (float *)w;

    cudaStream_t s = (cudaStream_t)stream;
    const uint32_t T = k.Q / SSD_T, PT = (k.P + SSD_T - 1) / SSD_T, NT = (k.N + SSD_T - 1) / SSD_T;
    const char *what = "em_ssd_dt";
    cudaError_t e = cudaSuccess;
    if (phase < 0 || phase == 0) {
        em_ssd_dt<<<dim3(k.nc, k.H), EM_SSD_MAX_CHUNK, 0, s>>>(k);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess && (phase < 0 || phase == 1)) {
        what = "em_ssd_cb";
        em_ssd_cb<<<dim3(T * (T + 1) / 2, k.G, k.nc), SSD_THREADS, 0, s>>>(k);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess && (phase < 0 || phase == 2)) {
        what = "em_ssd_states";
        em_ssd_states<<<dim3(PT * NT, k.H, k.nc), SSD_THREADS, 0, s>>>(k);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess && (phase < 0 || phase == 3)) {
        what = "em_ssd_pass";
        const size_t total = (size_t)k.H * k.P * k.N;
        em_ssd_pass<<<(unsigned)((total + 255) / 256), 256, 0, s>>>(k);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess && (phase < 0 || phase == 4)) {
        what = "em_ssd_out";
        em_ssd_out<<<dim3(T * PT, k.H, k.nc), SSD_THREADS, 0, s>>>(k);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) return EM_OK;
    return em_fail(EM_ERR_DEVICE, "em_cuda_ssd: launch of %s (n_tok %u, H %u, P %u, N %u, G %u, chunk %u) failed: %s: %s",
                   what, a->n_tok, a->H, a->P, a->N, a->G, k.Q, cudaGetErrorName(e), cudaGetErrorString(e));
}

extern "C" em_status em_cuda_ssd(const em_ssd_args *a, void *workspace, size_t ws_bytes, void *stream) {
    return em_cuda_ssd_phase(a, workspace, ws_bytes, stream, -1);
}
