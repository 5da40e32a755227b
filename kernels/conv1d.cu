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
 *   v1 (this file) thread per channel, KMAX = 4 (every Mamba) or 16 (the twin's limit), fp32 FMA, silu with
 *      expf (the twin's function, not __expf). x is read with plain loads: y may alias x (cuda_ops.h).
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
    if (a->K <= 4) {
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
