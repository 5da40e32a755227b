/*
 * conv1d.cu — Mamba's causal depthwise conv1d with a rolling state on the GPU:
 *   y[t][c] = silu?(b[c] + sum_{k<K} w[c][k] * in[t-K+1+k][c]),  in[-j] from state[c] (the last K-1 inputs)
 * and state[c] = the last K-1 inputs afterwards. One call serves the decode step (n_tok = 1) and a prompt
 * (n_tok tokens, sequential). Twin: em_ref_conv1d (kernels/ref/conv1d_ref.c); test and benchmark:
 * tests/test_conv1d_cuda.c.
 *
 * Why this shape: the op is tiny (Mamba-2 8B: conv_dim 10240 channels, K = 4: 160 KB of w, 120 KB of state,
 * 40 KB in and out per token), so it is judged by latency, not bandwidth. A thread per channel, as the twin:
 * the K-wide window slides over the tokens in registers, and all loads of a channel (state, w, b, x) are
 * independent, so a decode step is about one memory latency. The window is kept aligned to the END of a
 * KMAX-slot register array (slot KMAX-1 = the newest input), so every register index is a compile-time
 * constant for any run-time K <= KMAX (run-time K only guards; see linear.cu's generic kernel for why).
 *
 * Version history:
 *   v1 thread per channel, KMAX = 4 (every Mamba) or 16 (the twin's limit), fp32 FMA, silu with
 *      expf (the twin's function, not __expf). x is read with plain loads: y may alias x (cuda_ops.h).
 *   v2 prompts (n_tok >= 16, y apart from x): a token-parallel kernel (thread per channel and token row, the
 *      state read for taps before the chunk, rolled by one thread a channel after a block barrier); the
 *      sequential kernel took 239 us for the 8B shape's 512-token chunk (docs/prefill.md). Decode keeps v1.
 *
 * Build: part of the library with -DEM_CUDA=ON. Standalone, with the resource report:
 *   nvcc -O3 -std=c++17 -arch=sm_90 -Xptxas -v -Iinclude -Ikernels -Iruntime -Iplatform \
 *        -c kernels/conv1d.cu -o /tmp/conv1d.o
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

#define EM_CONV_THREADS 128
#define EM_CONV_MAX_K 16 /* the twin's CONV_MAX_K */

/* silu(v) = v * sigmoid(v), as em_silu_f (ops.h) computes it */
static __device__ __forceinline__ float em_conv_silu(float v) { return v / (1.0f + expf(-v)); }

/* Grid: ceil(C / EM_CONV_THREADS) blocks. Live window slots: [KMAX - K, KMAX). */
template <int KMAX>
__global__ void __launch_bounds__(EM_CONV_THREADS)
em_conv1d_kernel(const float *x,              /* [n_tok, C], row stride xs */
                 float *__restrict__ state,   /* [C, K-1], oldest first */
                 const float *__restrict__ w, /* [C, K] */
                 const float *__restrict__ b, /* [C] or NULL */
                 float *y,                    /* [n_tok, C], row stride ys */
                 uint32_t n_tok, uint32_t C, uint32_t K, uint32_t xs, uint32_t ys, int silu) {
    const uint32_t c = blockIdx.x * EM_CONV_THREADS + threadIdx.x;
    if (c >= C) return;
    const int off = KMAX - (int)K; /* first live slot */
    float *st = state + (size_t)c * (K - 1);
    const float *wc = w + (size_t)c * K;

    float win[KMAX], wk[KMAX];
#pragma unroll
    for (int j = 0; j < KMAX; j++) {
        wk[j] = j >= off ? wc[j - off] : 0.0f;
        win[j] = j >= off && j < KMAX - 1 ? st[j - off] : 0.0f;
    }
    const float bias = b ? b[c] : 0.0f;

#pragma unroll 2
    for (uint32_t t = 0; t < n_tok; t++) {
        win[KMAX - 1] = x[(size_t)t * xs + c];
        float acc = bias; /* the twin's order: bias, then k = 0 .. K-1 */
#pragma unroll
        for (int j = 0; j < KMAX; j++)
            if (j >= off) acc = fmaf(wk[j], win[j], acc);
        y[(size_t)t * ys + c] = silu ? em_conv_silu(acc) : acc;
#pragma unroll
        for (int j = 0; j < KMAX - 1; j++) win[j] = win[j + 1]; /* slide: drop the oldest */
    }
    /* the live slots but the newest now hold the last K-1 inputs (older state kept when n_tok < K-1) */
#pragma unroll
    for (int j = 0; j < KMAX - 1; j++)
        if (j >= off) st[j - off] = win[j];
}

// ---- prompts: token-parallel ---------------------------------------------------------------------------

/* A prefill chunk: one thread per (channel, token), 32 channels x 8 token rows a block, looping over the chunk's
 * tokens; a tap before the chunk reads the state. All of a channel's readers are in one block, so after a barrier
 * one thread rolls that channel's state. The sequential kernel above walks 512 tokens one after another per channel
 * (239 us for the 8B shape's 10240 channels, docs/prefill.md); this one reads x K times from L1/L2 instead.
 * y must not overlap x (a token's output would overwrite a later token's input); the launcher checks. */
#define EM_CONV_PAR_CH 32
#define EM_CONV_PAR_ROWS 8
#define EM_CONV_PAR_MIN_TOK 16 /* below this the sequential kernel */
template <int KMAX>
__global__ void __launch_bounds__(EM_CONV_PAR_CH *EM_CONV_PAR_ROWS)
em_conv1d_par_kernel(const float *__restrict__ x, float *__restrict__ state, const float *__restrict__ w,
                     const float *__restrict__ b, float *__restrict__ y, uint32_t n_tok, uint32_t C, uint32_t K,
                     uint32_t xs, uint32_t ys, int silu) {
    const uint32_t c = blockIdx.x * EM_CONV_PAR_CH + threadIdx.x % EM_CONV_PAR_CH;
    const uint32_t row = threadIdx.x / EM_CONV_PAR_CH;
    const bool live = c < C; /* no early return: every thread meets the barrier */
    float *st = state + (size_t)(live ? c : 0) * (K - 1);
    float wk[KMAX];
#pragma unroll
    for (int j = 0; j < KMAX; j++) wk[j] = live && (uint32_t)j < K ? w[(size_t)c * K + j] : 0.0f;
    const float bias = live && b ? b[c] : 0.0f;
    for (uint32_t t = row; live && t < n_tok; t += EM_CONV_PAR_ROWS) {
        float acc = bias; /* the twin's order: bias, then k = 0 .. K-1 (input t - K + 1 + k) */
#pragma unroll
        for (int j = 0; j < KMAX; j++) {
            if ((uint32_t)j >= K) break;
            const long src = (long)t - (long)(K - 1) + j;
            const float v = src >= 0 ? x[(size_t)src * xs + c] : st[src + (long)(K - 1)];
            acc = fmaf(wk[j], v, acc);
        }
        y[(size_t)t * ys + c] = silu ? em_conv_silu(acc) : acc;
    }
    __syncthreads(); /* every reader of this block's channels' state is done */
    if (live && row == 0)
        for (uint32_t k = 0; k + 1 < K; k++) { /* new slot k = input n_tok - (K-1) + k; reads only higher old slots */
            const long src = (long)n_tok - (long)(K - 1) + k;
            st[k] = src >= 0 ? x[(size_t)src * xs + c] : st[src + (long)(K - 1)];
        }
}

// ---- launcher ------------------------------------------------------------------------------------------

extern "C" int em_cuda_conv1d_supported(const em_conv1d_args *a) {
    if (!a || !a->x || !a->w || !a->y || (a->K > 1 && !a->state)) return 0;
    if (a->K < 1 || a->K > EM_CONV_MAX_K) return 0;
    if (a->silu != EM_SILU_OFF && a->silu != EM_SILU_ON) return 0;
    if (a->x_stride && a->x_stride < a->C) return 0;
    if (a->y_stride && a->y_stride < a->C) return 0;
    return 1;
}

extern "C" em_status em_cuda_conv1d(const em_conv1d_args *a, void *stream) {
    if (!a) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_conv1d: args is NULL");
    if (!em_cuda_conv1d_supported(a))
        return em_fail(EM_ERR_INVALID_ARG,
                       "em_cuda_conv1d: unsupported arguments (C %u, K %u (1..%d), x_stride %u, y_stride %u, silu %d, "
                       "pointers %s)", a->C, a->K, EM_CONV_MAX_K, a->x_stride, a->y_stride, (int)a->silu,
                       a->x && a->w && a->y && (a->K <= 1 || a->state) ? "set" : "NULL");
    if (a->n_tok == 0 || a->C == 0) return EM_OK;
    const uint32_t xs = a->x_stride ? a->x_stride : a->C, ys = a->y_stride ? a->y_stride : a->C;
    const unsigned blocks = (a->C + EM_CONV_THREADS - 1) / EM_CONV_THREADS;
    cudaStream_t s = (cudaStream_t)stream;
    const int silu = a->silu == EM_SILU_ON;
    const char *kernel;
    /* x and y as byte ranges: the token-parallel path needs them apart */
    const uintptr_t x0 = (uintptr_t)a->x, x1 = x0 + ((size_t)(a->n_tok - 1) * xs + a->C) * sizeof(float);
    const uintptr_t y0 = (uintptr_t)a->y, y1 = y0 + ((size_t)(a->n_tok - 1) * ys + a->C) * sizeof(float);
    if (a->n_tok >= EM_CONV_PAR_MIN_TOK && (x1 <= y0 || y1 <= x0) && a->K > 1) {
        const unsigned pblocks = (a->C + EM_CONV_PAR_CH - 1) / EM_CONV_PAR_CH;
        if (a->K <= 4) {
            em_conv1d_par_kernel<4><<<pblocks, EM_CONV_PAR_CH * EM_CONV_PAR_ROWS, 0, s>>>(
                a->x, a->state, a->w, a->b, a->y, a->n_tok, a->C, a->K, xs, ys, silu);
            kernel = "em_conv1d_par_kernel<4>";
        } else {
            em_conv1d_par_kernel<EM_CONV_MAX_K><<<pblocks, EM_CONV_PAR_CH * EM_CONV_PAR_ROWS, 0, s>>>(
                a->x, a->state, a->w, a->b, a->y, a->n_tok, a->C, a->K, xs, ys, silu);
            kernel = "em_conv1d_par_kernel<16>";
        }
    } else if (a->K <= 4) {
        em_conv1d_kernel<4><<<blocks, EM_CONV_THREADS, 0, s>>>(a->x, a->state, a->w, a->b, a->y, a->n_tok, a->C, a->K,
                                                               xs, ys, silu);
        kernel = "em_conv1d_kernel<4>";
    } else {
        em_conv1d_kernel<EM_CONV_MAX_K><<<blocks, EM_CONV_THREADS, 0, s>>>(a->x, a->state, a->w, a->b, a->y, a->n_tok,
                                                                           a->C, a->K, xs, ys, silu);
        kernel = "em_conv1d_kernel<16>";
    }
    const cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return EM_OK;
    return em_fail(EM_ERR_DEVICE, "em_cuda_conv1d: launch of %s (n_tok %u, C %u, K %u) failed: %s: %s", kernel,
                   a->n_tok, a->C, a->K, cudaGetErrorName(e), cudaGetErrorString(e));
}
