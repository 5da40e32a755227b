/*
 * mlp.cu — the hybrid's MLP layer on the GPU (issue 9): y = down(act(up(x))), no gate, no bias, act exact-erf GELU,
 * relu^2 or SiLU. Twin: em_ref_mlp (kernels/ref/mlp_ref.c; em_mlp_args in ops.h). Test and benchmark:
 * tests/test_mlp_cuda.c (`--perf`: the hybrid 8B MLP, 4096 -> 16384 -> 4096, decode and a prompt chunk, GB/s of
 * weight bytes against the read bandwidth measured in the same run). docs/hybrid-cuda.md.
 *
 * Why this shape: at decode the layer is two weight streams (8B: 2 x 128 MiB of bf16), so it is exactly two
 * em_cuda_linear GEMVs (kernels/linear.cu, already at the roofline) with a tiny elementwise kernel between them;
 * nothing here is worth fusing until measurements say so. The activation kernel lets its dependent start early
 * (programmatic dependent launch: griddepcontrol.launch_dependents at entry) and the down GEMV is launched with
 * EM_LINEAR_W_CONST, so on sm_90 the down projection starts streaming W while the activation runs; it reads h only
 * after the activation grid has completed (griddepcontrol.wait in the GEMV).
 * For prompt chunks (em_cuda_mlp_gemm) the projections are cuBLASLt GEMMs (em_cuda_gemm, kernels/gemm.cu) around the
 * same activation kernel: the weights are read once per chunk instead of once per 8 tokens.
 *
 * Version history (each line: what changed, and why):
 *   v1 (this file) GEMV -> activation -> GEMV (decode, any n_tok), GEMM -> activation -> GEMM (prompts). Not
 *      measured yet on a GPU (written without one): test_mlp_cuda --perf prints the figures.
 *
 * Build: part of the library with -DEM_CUDA=ON. Standalone, with the resource report:
 *   nvcc -O3 -std=c++17 -arch=sm_90 -Xptxas -v -Iinclude -Ikernels -Iruntime -Iplatform -c kernels/mlp.cu -o /tmp/mlp.o
 */
#ifndef EM_HAVE_CUDA
#define EM_HAVE_CUDA 1 /* a .cu file is a CUDA build by definition (the standalone command defines nothing) */
#endif

/* C headers first: util.h and blob.h are included inside extern "C" below (see linear.cu). */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cuda_runtime.h>

#include "cuda_ops.h"
#include "gemv_common.cuh" /* em_act_f */
extern "C" {
#include "blob.h" /* em_mlp_act */
#include "util.h" /* em_fail */
}

#define EM_MLP_THREADS 256
#define EM_MLP_MAX_BLOCKS 4096u /* grid-stride beyond this */

// ---- the activation ----------------------------------------------------------------------------------------

/* em_ref_act's formulas (em_act_f, gemv_common.cuh), numbered as em_mlp_act */
static_assert(EM_ACT_GELU == 1 && EM_ACT_RELU2 == 2 && EM_ACT_SILU == 3, "em_act_f numbers the activations so");

template <int ACT> __global__ void __launch_bounds__(EM_MLP_THREADS) em_mlp_act_kernel(float *__restrict__ h, size_t n) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); /* the down GEMV may start streaming W */
#endif
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (((uintptr_t)h & 15) == 0) { /* float4 body, scalar tail */
        float4 *h4 = reinterpret_cast<float4 *>(h);
        const size_t n4 = n / 4;
        for (size_t j = i; j < n4; j += stride) {
            float4 v = h4[j];
            v.x = em_act_f<ACT>(v.x);
            v.y = em_act_f<ACT>(v.y);
            v.z = em_act_f<ACT>(v.z);
            v.w = em_act_f<ACT>(v.w);
            h4[j] = v;
        }
        i += n4 * 4;
    }
    for (; i < n; i += stride) h[i] = em_act_f<ACT>(h[i]);
}

extern "C" em_status em_cuda_mlp_act(float *h, size_t n, uint32_t act, void *stream) {
    if (act != EM_ACT_GELU && act != EM_ACT_RELU2 && act != EM_ACT_SILU)
        return em_fail(EM_ERR_INVALID_ARG, "em_cuda_mlp_act: activation %u is not GELU, relu2 or SiLU", act);
    if (n == 0) return EM_OK;
    if (!h) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_mlp_act: h is NULL");
    const size_t per = (size_t)EM_MLP_THREADS * 4;
    size_t blocks = (n + per - 1) / per;
    blocks = blocks > EM_MLP_MAX_BLOCKS ? EM_MLP_MAX_BLOCKS : blocks;
    cudaStream_t s = (cudaStream_t)stream;
    switch (act) {
    case EM_ACT_GELU: em_mlp_act_kernel<EM_ACT_GELU><<<(unsigned)blocks, EM_MLP_THREADS, 0, s>>>(h, n); break;
    case EM_ACT_RELU2: em_mlp_act_kernel<EM_ACT_RELU2><<<(unsigned)blocks, EM_MLP_THREADS, 0, s>>>(h, n); break;
    default: em_mlp_act_kernel<EM_ACT_SILU><<<(unsigned)blocks, EM_MLP_THREADS, 0, s>>>(h, n); break;
    }
    const cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess) return EM_OK;
    return em_fail(EM_ERR_DEVICE, "em_cuda_mlp_act: launch (n %zu, act %u) failed: %s: %s", n, act, cudaGetErrorName(e),
                   cudaGetErrorString(e));
}

// ---- the layer -----------------------------------------------------------------------------------------------

/* The two projections as em_linear_args (dense rows). */
static void em_mlp_linears(const em_mlp_args *a, em_linear_args *up, em_linear_args *down) {
    memset(up, 0, sizeof *up);
    memset(down, 0, sizeof *down);
    up->w = a->up;
    up->w_dtype = a->up_dtype;
    up->w_scale = a->up_scale;
    up->x = a->x;
    up->y = a->h;
    up->n_tok = a->n_tok;
    up->n_in = a->d;
    up->n_out = a->d_ff;
    down->w = a->down;
    down->w_dtype = a->down_dtype;
    down->w_scale = a->down_scale;
    down->x = a->h;
    down->y = a->y;
    down->n_tok = a->n_tok;
    down->n_in = a->d_ff;
    down->n_out = a->d;
    down->flags = EM_LINEAR_W_CONST; /* behind the activation kernel, which writes only h */
}

extern "C" int em_cuda_mlp_supported(const em_mlp_args *a) {
    if (!a || !a->x || !a->h || !a->y || !a->up || !a->down) return 0;
    if (a->act != EM_ACT_GELU && a->act != EM_ACT_RELU2 && a->act != EM_ACT_SILU) return 0;
    if (a->d == 0 || a->d_ff == 0) return 0;
    em_linear_args up, down;
    em_mlp_linears(a, &up, &down);
    return em_cuda_linear_supported(&up) && em_cuda_linear_supported(&down); /* I8 goes to linear_i8.cu */
}

extern "C" em_status em_cuda_mlp(const em_mlp_args *a, void *stream) {
    if (!a) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_mlp: args is NULL");
    if (!em_cuda_mlp_supported(a))
        return em_fail(EM_ERR_INVALID_ARG, "em_cuda_mlp: unsupported arguments (n_tok %u, d %u, d_ff %u, act %u, dtypes "
                       "%d/%d, pointers %s)", a->n_tok, a->d, a->d_ff, a->act, (int)a->up_dtype, (int)a->down_dtype,
                       a->x && a->h && a->y && a->up && a->down ? "set" : "NULL");
    if (a->n_tok == 0) return EM_OK;
    em_linear_args up, down;
    em_mlp_linears(a, &up, &down);
    EM_TRY(em_cuda_linear(&up, stream));
    EM_TRY(em_cuda_mlp_act(a->h, (size_t)a->n_tok * a->d_ff, a->act, stream));
    return em_cuda_linear(&down, stream);
}

extern "C" em_status em_cuda_mlp_gemm(void *gemm, const em_mlp_args *a, void *ws, size_t ws_bytes, void *stream) {
    if (!a) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_mlp_gemm: args is NULL");
    if (!gemm || !a->x || !a->h || !a->y || !a->up || !a->down || a->d == 0 || a->d_ff == 0 ||
        (a->act != EM_ACT_GELU && a->act != EM_ACT_RELU2 && a->act != EM_ACT_SILU))
        return em_fail(EM_ERR_INVALID_ARG, "em_cuda_mlp_gemm: unsupported arguments (n_tok %u, d %u, d_ff %u, act %u, "
                       "handle and pointers %s)", a->n_tok, a->d, a->d_ff, a->act,
                       gemm && a->x && a->h && a->y && a->up && a->down ? "set" : "NULL");
    const int up_ok = a->up_dtype == EM_DTYPE_BF16 || (a->up_dtype == EM_DTYPE_I8 && a->up_scale);
    const int down_ok = a->down_dtype == EM_DTYPE_BF16 || (a->down_dtype == EM_DTYPE_I8 && a->down_scale);
    if (!up_ok || !down_ok)
        return em_fail(EM_ERR_UNSUPPORTED, "em_cuda_mlp_gemm: BF16 weights, or I8 with scales (got %d/%d): use "
                       "em_cuda_mlp", (int)a->up_dtype, (int)a->down_dtype);
    if (a->n_tok == 0) return EM_OK;
    em_linear_args up, down;
    em_mlp_linears(a, &up, &down);
    down.flags = 0;
    EM_TRY(em_cuda_gemm(gemm, &up, ws, ws_bytes, stream));
    EM_TRY(em_cuda_mlp_act(a->h, (size_t)a->n_tok * a->d_ff, a->act, stream));
    return em_cuda_gemm(gemm, &down, ws, ws_bytes, stream);
}
