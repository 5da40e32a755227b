/*
 * gemm.cu — the prompt-side linear op on the GPU through cuBLASLt (issue 8): y[n_tok, n_out] = x[n_tok, n_in] W^T
 * with em_linear_args' semantics (em_cuda_linear in kernels/linear.cu is the decode GEMV; em_ref_linear the twin).
 * For in_proj, out_proj and the head over a prompt chunk, where W is re-read per token group by a GEMV but read
 * once by a GEMM: at 512 tokens the 8B in_proj is 78 GFLOP, tensor-core work.
 *
 * How: x (fp32, strided) is converted to a dense bf16 copy in the caller's workspace by a small kernel, then one
 * cublasLtMatmul computes bf16 x bf16 -> fp32 (CUBLAS_COMPUTE_32F, alpha 1, beta 0: y written, never accumulated).
 * cuBLASLt is column-major, so the row-major product is computed as its transpose:
 *   y^T [n_out, n_tok] (col-major, ld y_stride) = op_T(W: col-major [n_in, n_out], ld n_in) * xb (col-major
 *   [n_in, n_tok], ld n_in)                                                     ("TN", the layout Hopper prefers)
 * The algorithm of each shape (n_out, n_tok, n_in, strides, alignments) is chosen once by
 * cublasLtMatmulAlgoGetHeuristic and kept, with its descriptors, in a fixed table inside the handle
 * (EM_GEMM_CACHE entries, replaced round-robin): the descriptors live in cuBLASLt's opaque structs initialised in
 * place (cublasLt*Init), so after em_cuda_gemm_create nothing is allocated. A shape seen for the first time costs
 * one host-side heuristic query (tens of microseconds; no device work, no synchronisation), so a call is safe
 * inside a stream capture; em_cuda_gemm_prepare runs the query ahead of time.
 *
 * Workspace (the caller's, em_cuda_gemm_workspace_bytes; 256-byte aligned): cuBLASLt's [EM_GEMM_LT_WS] | xb bf16
 * [n_tok, n_in]. One handle serves one stream at a time (the table and the workspace are not shared safely between
 * concurrent calls).
 *
 * INT8 weights (W8A16, issue 10; em_cuda_gemm_i8_workspace_bytes): the workspace also holds a bf16 slab of
 * EM_GEMM_I8_SLAB bytes. W is taken a slab of rows at a time: a kernel dequantizes rows [r0, r0 + R) into it
 * (bf16(q * scale), the row's scale applied before rounding), then one cublasLtMatmul writes y's columns
 * [r0, r0 + R). x is converted once per call. So the prompt path reads each int8 weight once per call instead of
 * once per 8 tokens (em_cuda_linear_i8's GEMV), for 32 MiB of workspace; the slab stays in L2 (50 MB on the
 * H100) between the two kernels. Against em_ref_linear's I8 path ((x . q) * scale in fp32) the differences are x
 * and q * scale rounded to bf16: ~2^-9 relative per element, held to 1e-2 like the BF16 GEMM. The alternative the
 * issue names (a cuBLASLt INT8 GEMM on int8 activations with per-token scales) changes the arithmetic (W8A8);
 * it is not built.
 *
 * Version history:
 *   v1 (this file) cuBLASLt heuristic's first choice, 32 MiB of library workspace, x converted per call. H100, with
 *      the conversion: 8B in_proj 512 x 18560 x 4096 124 us (630 TFLOP/s), out_proj 512 x 4096 x 8192 57 us
 *      (602 TFLOP/s); at 8192 tokens 1861 us (669) and 753 us (730). The head of one position is a GEMV: 736 us
 *      here vs 657 us for em_cuda_linear: for n_tok 1 the GEMV is the better choice.
 *
 * Build: part of the library with -DEM_CUDA=ON (linked with CUDA::cublasLt). Test and benchmark:
 *   tests/test_gemm_cuda.c (`--perf`: the 8B in_proj / out_proj / head at 512 and 8192 tokens, us and TFLOP/s).
 */
#ifndef EM_HAVE_CUDA
#define EM_HAVE_CUDA 1
#endif

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "cuda_ops.h"
#include "workspace.h"
extern "C" {
#include "util.h" /* em_fail */
}

#define EM_GEMM_CACHE 64                /* shapes remembered per handle */
/* EM_GEMM_LT_WS (cuBLASLt's workspace), EM_GEMM_I8_SLAB, EM_GEMM_I8_ROWS: kernels/workspace.h */

// ---- the handle ---------------------------------------------------------------------------------------

/* One remembered shape: its key, its descriptors (initialised in place) and the chosen algorithm. */
struct em_gemm_entry {
    int valid;
    uint32_t m, n, k, ldc;                 /* n_out, n_tok, n_in, y_stride */
    uint32_t al_a, al_b, al_c;             /* byte alignments assumed for W, xb, y */
    cublasLtMatmulDescOpaque_t op;
    cublasLtMatrixLayoutOpaque_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
    size_t algo_ws;
};

struct em_gemm {
    cublasLtHandle_t lt;
    em_gemm_entry e[EM_GEMM_CACHE];
    int next;                              /* round-robin slot for a new shape when the table is full */
};

static em_status lt_fail(cublasStatus_t s, const char *call, const char *what) {
    return em_fail(EM_ERR_DEVICE, "em_cuda_gemm: %s failed (%s): %s", call, cublasLtGetStatusName(s), what);
}
#define LT_TRY(call, what)                                                                                     \
    do {                                                                                                       \
        const cublasStatus_t lt_s_ = (call);                                                                   \
        if (lt_s_ != CUBLAS_STATUS_SUCCESS) return lt_fail(lt_s_, #call, what);                               \
    } while (0)

extern "C" em_status em_cuda_gemm_create(void **h) {
    if (!h) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_gemm_create: h is NULL");
    *h = NULL;
    em_gemm *g = (em_gemm *)calloc(1, sizeof *g);
    if (!g) return em_fail(EM_ERR_OUT_OF_MEMORY, "em_cuda_gemm_create: out of host memory");
    const cublasStatus_t s = cublasLtCreate(&g->lt);
    if (s != CUBLAS_STATUS_SUCCESS) {
        free(g);
        return lt_fail(s, "cublasLtCreate", "creating the cuBLASLt handle");
    }
    *h = g;
    return EM_OK;
}

extern "C" void em_cuda_gemm_destroy(void *h) {
    em_gemm *g = (em_gemm *)h;
    if (!g) return;
    cublasLtDestroy(g->lt);
    free(g);
}

/* em_cuda_gemm_workspace_bytes, em_cuda_gemm_i8_workspace_bytes: kernels/workspace.c */

// ---- x to bf16 ---------------------------------------------------------------------------------------

/* xb[t][i] = bf16(x[t * xs + i]) (round to nearest even), dense [n_tok, n_in]. VEC: 4 floats a thread (x 16-byte
 * aligned, xs and n_in multiples of 4). */
template <bool VEC>
__global__ void __launch_bounds__(256) em_gemm_to_bf16(const float *x, __nv_bfloat16 *xb, uint32_t n_tok,
                                                        uint32_t n_in, uint32_t xs) {
    const size_t per = VEC ? n_in / 4 : n_in, total = (size_t)n_tok * per;
    for (size_t e = (size_t)blockIdx.x * 256 + threadIdx.x; e < total; e += (size_t)gridDim.x * 256) {
        const size_t t = e / per, i = e % per;
        if (VEC) {
            const float4 v = *reinterpret_cast<const float4 *>(x + t * xs + 4 * i);
            __nv_bfloat162 *o = reinterpret_cast<__nv_bfloat162 *>(xb + t * n_in + 4 * i);
            o[0] = __floats2bfloat162_rn(v.x, v.y);
            o[1] = __floats2bfloat162_rn(v.z, v.w);
        } else {
            xb[t * n_in + i] = __float2bfloat16_rn(x[t * xs + i]);
        }
    }
}

/* wb[r][i] = bf16(q[r][i] * scale[r]) for rows [0, rows) of an int8 [*, n_in] matrix (q and scale at the slab's first
 * row), dense [rows, n_in]. VEC: 16 int8 a thread (q 16-byte aligned, n_in a multiple of 16; wb is 256-aligned). */
template <bool VEC>
__global__ void __launch_bounds__(256) em_gemm_dequant_i8(const int8_t *q, const float *scale, __nv_bfloat16 *wb,
                                                           uint32_t rows, uint32_t n_in) {
    const size_t per = VEC ? n_in / 16 : n_in, total = (size_t)rows * per;
    for (size_t e = (size_t)blockIdx.x * 256 + threadIdx.x; e < total; e += (size_t)gridDim.x * 256) {
        const size_t r = e / per, i = e % per;
        const float sc = scale[r];
        if (VEC) {
            const int4 v = *reinterpret_cast<const int4 *>(q + r * n_in + 16 * i);
            const int w[4] = { v.x, v.y, v.z, v.w };
            __nv_bfloat162 o[8];
            for (int k = 0; k < 4; k++) {
                const float b0 = (float)(int8_t)(w[k] & 0xff), b1 = (float)(int8_t)((w[k] >> 8) & 0xff);
                const float b2 = (float)(int8_t)((w[k] >> 16) & 0xff), b3 = (float)(int8_t)((w[k] >> 24) & 0xff);
                o[2 * k] = __floats2bfloat162_rn(b0 * sc, b1 * sc);
                o[2 * k + 1] = __floats2bfloat162_rn(b2 * sc, b3 * sc);
            }
            uint4 *dst = reinterpret_cast<uint4 *>(wb + r * n_in + 16 * i);
            dst[0] = *reinterpret_cast<const uint4 *>(&o[0]);
            dst[1] = *reinterpret_cast<const uint4 *>(&o[4]);
        } else {
            wb[r * n_in + i] = __float2bfloat16_rn((float)q[r * n_in + i] * sc);
        }
    }
}

/* y rows = 0 (n_in == 0: the empty sum, as the twin writes it). */
__global__ void __launch_bounds__(256) em_gemm_zero(float *y, uint32_t n_tok, uint32_t n_out, uint32_t ys) {
    const size_t total = (size_t)n_tok * n_out;
    for (size_t e = (size_t)blockIdx.x * 256 + threadIdx.x; e < total; e += (size_t)gridDim.x * 256)
        y[(e / n_out) * ys + e % n_out] = 0.0f;
}

// ---- shapes and algorithms ------------------------------------------------------------------------------

/* The largest power of two <= 256 dividing both the address and the row pitch (bytes). */
static uint32_t align_of(const void *p, size_t pitch) {
    const uintptr_t v = (uintptr_t)p | (uintptr_t)pitch | 256u;
    return (uint32_t)(v & (~v + 1));
}

extern "C" int em_cuda_gemm_supported(const em_linear_args *a) {
    if (!a || !a->x || !a->y || (!a->w && a->n_in && a->n_out)) return 0;
    if (a->w_dtype != EM_DTYPE_BF16 && !(a->w_dtype == EM_DTYPE_I8 && a->w_scale)) return 0;
    if (a->x_stride && a->x_stride < a->n_in) return 0;
    if (a->y_stride && a->y_stride < a->n_out) return 0;
    if (a->n_out > INT32_MAX || a->n_tok > INT32_MAX || a->n_in > INT32_MAX) return 0;
    return (a->flags & EM_LINEAR_ADD) == 0; /* y += W x: the GEMVs only (the decode step's residual add) */
}

/* The table entry for a's shape (found, or made with one heuristic query). */
static em_status gemm_entry_for(em_gemm *g, const em_linear_args *a, const void *xb, em_gemm_entry **out) {
    const uint32_t m = a->n_out, n = a->n_tok, k = a->n_in;
    const uint32_t ldc = a->y_stride ? a->y_stride : a->n_out;
    const uint32_t al_a = align_of(a->w, (size_t)k * 2), al_b = align_of(xb, (size_t)k * 2);
    const uint32_t al_c = align_of(a->y, (size_t)ldc * 4);
    for (int i = 0; i < EM_GEMM_CACHE; i++) {
        em_gemm_entry *e = &g->e[i];
        if (e->valid && e->m == m && e->n == n && e->k == k && e->ldc == ldc && e->al_a == al_a && e->al_b == al_b &&
            e->al_c == al_c) {
            *out = e;
            return EM_OK;
        }
    }
    int slot = -1;
    for (int i = 0; i < EM_GEMM_CACHE && slot < 0; i++)
        if (!g->e[i].valid) slot = i;
    if (slot < 0) {
        slot = g->next;
        g->next = (g->next + 1) % EM_GEMM_CACHE;
    }
    em_gemm_entry *e = &g->e[slot];
    e->valid = 0;
    e->m = m; e->n = n; e->k = k; e->ldc = ldc; e->al_a = al_a; e->al_b = al_b; e->al_c = al_c;
    char what[160];
    snprintf(what, sizeof what, "n_out %u, n_tok %u, n_in %u, y_stride %u, alignments W %u xb %u y %u", m, n, k, ldc,
             al_a, al_b, al_c);

    cublasLtMatmulDesc_t op = &e->op;
    LT_TRY(cublasLtMatmulDescInit(op, CUBLAS_COMPUTE_32F, CUDA_R_32F), what);
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), what);
    LT_TRY(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), what);
    LT_TRY(cublasLtMatrixLayoutInit(&e->la, CUDA_R_16BF, k, m, k), what);   /* W: col-major [n_in, n_out] */
    LT_TRY(cublasLtMatrixLayoutInit(&e->lb, CUDA_R_16BF, k, n, k), what);   /* xb: col-major [n_in, n_tok] */
    LT_TRY(cublasLtMatrixLayoutInit(&e->lc, CUDA_R_32F, m, n, ldc), what);  /* y^T: col-major [n_out, n_tok] */

    cublasLtMatmulPreferenceOpaque_t pref_store;
    cublasLtMatmulPreference_t pref = &pref_store;
    LT_TRY(cublasLtMatmulPreferenceInit(pref), what);
    const size_t ws = EM_GEMM_LT_WS;
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws), what);
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a),
           what);
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b),
           what);
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c),
           what);
    LT_TRY(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c),
           what);
    cublasLtMatmulHeuristicResult_t res;
    memset(&res, 0, sizeof res);
    int found = 0;
    LT_TRY(cublasLtMatmulAlgoGetHeuristic(g->lt, op, &e->la, &e->lb, &e->lc, &e->lc, pref, 1, &res, &found), what);
    if (found < 1 || res.state != CUBLAS_STATUS_SUCCESS)
        return em_fail(EM_ERR_UNSUPPORTED, "em_cuda_gemm: cuBLASLt has no algorithm for %s", what);
    e->algo = res.algo;
    e->algo_ws = res.workspaceSize;
    e->valid = 1;
    *out = e;
    return EM_OK;
}

/* The workspace's regions for a (checked against ws_bytes): cuBLASLt's, the bf16 x and, for INT8 weights, the slab
 * (*slab_rows: rows of W it holds, a multiple of EM_GEMM_I8_ROWS or all of n_out). */
static em_status gemm_carve(const em_linear_args *a, void *ws, size_t ws_bytes, void **lt_ws, __nv_bfloat16 **xb,
                            __nv_bfloat16 **slab, uint32_t *slab_rows) {
    const size_t base_need = em_cuda_gemm_workspace_bytes(a->n_tok, a->n_in);
    const int i8 = a->w_dtype == EM_DTYPE_I8;
    const size_t row_bytes = (size_t)a->n_in * 2;
    const uint32_t min_rows = a->n_out < EM_GEMM_I8_ROWS ? a->n_out : EM_GEMM_I8_ROWS;
    const size_t need = base_need + (i8 ? (size_t)min_rows * row_bytes : 0);
    if (!ws || ws_bytes < need)
        return em_fail(EM_ERR_INVALID_ARG, "em_cuda_gemm: workspace of %zu bytes (%s) for n_tok %u x n_in %u%s, %zu "
                       "needed", ws_bytes, ws ? "set" : "NULL", a->n_tok, a->n_in,
                       i8 ? " (INT8: em_cuda_gemm_i8_workspace_bytes)" : "", need);
    uint8_t *base = (uint8_t *)(((uintptr_t)ws + 255) & ~(uintptr_t)255);
    *lt_ws = base;
    *xb = (__nv_bfloat16 *)(base + EM_GEMM_LT_WS);
    *slab = NULL;
    *slab_rows = 0;
    if (i8) {
        const size_t off = base_need - 256; /* past xb, 256-aligned */
        const size_t avail = ws_bytes - (size_t)(base - (uint8_t *)ws) - off;
        uint64_t rows = row_bytes ? avail / row_bytes : a->n_out;
        if (rows >= a->n_out) rows = a->n_out;
        else rows -= rows % EM_GEMM_I8_ROWS; /* >= min_rows: checked above */
        *slab = (__nv_bfloat16 *)(base + off);
        *slab_rows = (uint32_t)rows;
    }
    return EM_OK;
}

static em_status gemm_check(const em_linear_args *a) {
    if (!em_cuda_gemm_supported(a))
        return em_fail(a && a->w_dtype != EM_DTYPE_BF16 && !(a->w_dtype == EM_DTYPE_I8 && a->w_scale)
                           ? EM_ERR_UNSUPPORTED
                           : EM_ERR_INVALID_ARG,
                       "em_cuda_gemm: unsupported arguments (w_dtype %d: BF16, or I8 with scales; n_out %u, n_in %u, n_tok %u, "
                       "strides x %u y %u; pointers %s)", a ? (int)a->w_dtype : -1, a ? a->n_out : 0,
                       a ? a->n_in : 0, a ? a->n_tok : 0, a ? a->x_stride : 0, a ? a->y_stride : 0,
                       a && a->x && a->y && a->w ? "set" : "NULL");
    return EM_OK;
}

/* a with W replaced by the bf16 slab holding rows [r0, r0 + rows) of an INT8 W, and y by its columns there. */
static em_linear_args slab_args(const em_linear_args *a, const __nv_bfloat16 *slab, uint32_t r0, uint32_t rows) {
    em_linear_args b = *a;
    b.w = slab;
    b.w_dtype = EM_DTYPE_BF16;
    b.w_scale = NULL;
    b.n_out = rows;
    b.y = a->y + r0;
    b.y_stride = a->y_stride ? a->y_stride : a->n_out;
    return b;
}

extern "C" em_status em_cuda_gemm_prepare(void *h, const em_linear_args *a, void *ws, size_t ws_bytes) {
    if (!h || !a) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_gemm_prepare: handle or args is NULL");
    EM_TRY(gemm_check(a));
    if (a->n_tok == 0 || a->n_out == 0 || a->n_in == 0) return EM_OK;
    void *lt_ws = NULL;
    __nv_bfloat16 *xb = NULL, *slab = NULL;
    uint32_t slab_rows = 0;
    EM_TRY(gemm_carve(a, ws, ws_bytes, &lt_ws, &xb, &slab, &slab_rows));
    em_gemm_entry *e = NULL;
    if (!slab) return gemm_entry_for((em_gemm *)h, a, xb, &e);
    /* INT8: the full slab's shape and the last, shorter one's */
    em_linear_args b = slab_args(a, slab, 0, slab_rows);
    EM_TRY(gemm_entry_for((em_gemm *)h, &b, xb, &e));
    const uint32_t tail = a->n_out % slab_rows;
    if (!tail) return EM_OK;
    b = slab_args(a, slab, a->n_out - tail, tail);
    return gemm_entry_for((em_gemm *)h, &b, xb, &e);
}

/* One cublasLtMatmul: y = xb W^T for b's shape (W bf16). */
static em_status lt_matmul(em_gemm *g, const em_linear_args *b, const __nv_bfloat16 *xb, void *lt_ws, cudaStream_t s) {
    em_gemm_entry *e = NULL;
    EM_TRY(gemm_entry_for(g, b, xb, &e));
    const float alpha = 1.0f, beta = 0.0f;
    const cublasStatus_t st = cublasLtMatmul(g->lt, &e->op, &alpha, b->w, &e->la, xb, &e->lb, &beta, b->y, &e->lc,
                                             b->y, &e->lc, &e->algo, lt_ws, EM_GEMM_LT_WS, s);
    if (st != CUBLAS_STATUS_SUCCESS)
        return em_fail(EM_ERR_DEVICE, "em_cuda_gemm: cublasLtMatmul failed (%s) for n_out %u, n_tok %u, n_in %u",
                       cublasLtGetStatusName(st), b->n_out, b->n_tok, b->n_in);
    return EM_OK;
}

static em_status launch_check(const char *what) {
    const cudaError_t ce = cudaGetLastError();
    if (ce == cudaSuccess) return EM_OK;
    return em_fail(EM_ERR_DEVICE, "em_cuda_gemm: launch of %s failed: %s: %s", what, cudaGetErrorName(ce),
                   cudaGetErrorString(ce));
}

extern "C" em_status em_cuda_gemm(void *h, const em_linear_args *a, void *ws, size_t ws_bytes, void *stream) {
    if (!h || !a) return em_fail(EM_ERR_INVALID_ARG, "em_cuda_gemm: handle or args is NULL");
    EM_TRY(gemm_check(a));
    if (a->n_tok == 0 || a->n_out == 0) return EM_OK;
    em_gemm *g = (em_gemm *)h;
    cudaStream_t s = (cudaStream_t)stream;
    const uint32_t ys = a->y_stride ? a->y_stride : a->n_out, xs = a->x_stride ? a->x_stride : a->n_in;
    if (a->n_in == 0) {
        em_gemm_zero<<<256, 256, 0, s>>>(a->y, a->n_tok, a->n_out, ys);
        return launch_check("the zero fill");
    }
    void *lt_ws = NULL;
    __nv_bfloat16 *xb = NULL, *slab = NULL;
    uint32_t slab_rows = 0;
    EM_TRY(gemm_carve(a, ws, ws_bytes, &lt_ws, &xb, &slab, &slab_rows));

    const bool vec = ((uintptr_t)a->x & 15u) == 0 && xs % 4 == 0 && a->n_in % 4 == 0;
    const size_t items = (size_t)a->n_tok * (vec ? a->n_in / 4 : a->n_in);
    const unsigned blocks = (unsigned)(items / 256 + 1 < 4096 ? items / 256 + 1 : 4096);
    if (vec) em_gemm_to_bf16<true><<<blocks, 256, 0, s>>>(a->x, xb, a->n_tok, a->n_in, xs);
    else em_gemm_to_bf16<false><<<blocks, 256, 0, s>>>(a->x, xb, a->n_tok, a->n_in, xs);
    EM_TRY(launch_check("the bf16 conversion"));
    if (!slab) return lt_matmul(g, a, xb, lt_ws, s);

    /* INT8: a slab of rows at a time, dequantized then multiplied (stream order keeps the slab's reuse safe) */
    const int8_t *q = (const int8_t *)a->w;
    const bool qvec = ((uintptr_t)q & 15u) == 0 && a->n_in % 16 == 0;
    for (uint32_t r0 = 0; r0 < a->n_out; r0 += slab_rows) {
        const uint32_t rows = a->n_out - r0 < slab_rows ? a->n_out - r0 : slab_rows;
        const size_t dq_items = (size_t)rows * (qvec ? a->n_in / 16 : a->n_in);
        const unsigned dq_blocks = (unsigned)(dq_items / 256 + 1 < 8192 ? dq_items / 256 + 1 : 8192);
        const int8_t *qr = q + (size_t)r0 * a->n_in;
        if (qvec) em_gemm_dequant_i8<true><<<dq_blocks, 256, 0, s>>>(qr, a->w_scale + r0, slab, rows, a->n_in);
        else em_gemm_dequant_i8<false><<<dq_blocks, 256, 0, s>>>(qr, a->w_scale + r0, slab, rows, a->n_in);
        EM_TRY(launch_check("the INT8 dequantization"));
        const em_linear_args b = slab_args(a, slab, r0, rows);
        EM_TRY(lt_matmul(g, &b, xb, lt_ws, s));
    }
    return EM_OK;
}
