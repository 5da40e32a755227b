/*
 * linear_ref.c — float32 C twin of the linear op (em_linear_args in kernels/ops.h): y = x W^T with W row-major
 * [n_out, n_in] in F32, BF16, or I8 with one f32 scale per row (issue 10, quant/quant.h: y[t][r] =
 * (x[t] . q[r]) * w_scale[r], the scale applied once per row after the dot, as the CUDA INT8 GEMV does).
 * It is both the reference the CUDA GEMV/GEMM are tested against and the CPU backend's matrix product
 * (in_proj, out_proj, MLP, lm_head). Tested by tests/test_ref_ops.c (I8: tests/test_int8_ref.c); timed by
 * `test_ref_ops --perf` (4096x4096 BF16, one token).
 *
 * Mirrors torch.nn.functional.linear(x, weight) == x @ weight.T, bias-free as every Mamba-2 projection is.
 * BF16 weights are widened exactly (bf16 is the top half of an f32), I8 weights too (int8 -> f32 is exact);
 * every product is accumulated in f32.
 *
 * Why this loop order: at decode (n_tok = 1) the op is bound by reading W, so W is streamed exactly once.
 * Rows are split across threads (OpenMP, static schedule); a thread takes a block of 4 rows, widens one chunk
 * of them into a small stack buffer, and dots that chunk with every token while it sits in L1. Each output is
 * computed by one thread in a fixed order, so the result does not depend on the thread count.
 */
#include <stdatomic.h>
#include <stdint.h>

#include "ops.h"
#include "util.h"

#ifdef EM_HAVE_OPENMP
#include <omp.h>
#endif

#define LIN_CHUNK 512          /* weights widened per step: 4 rows x 2 KiB of stack, stays in L1 */
#define LIN_ROWS 4             /* rows per block: each x chunk loaded once is used for 4 outputs */
#define LIN_MIN_PAR (1u << 16) /* below this many multiply-adds one thread is faster than a fork/join */

static atomic_int g_threads; /* 0 = all cores; atomic because sessions may run on several host threads */

// ---- threads ----------------------------------------------------------------------------------------

void em_ref_set_threads(int n) { atomic_store_explicit(&g_threads, n > 0 ? n : 0, memory_order_relaxed); }

#ifdef EM_HAVE_OPENMP
static int linear_threads(void) {
    int n = atomic_load_explicit(&g_threads, memory_order_relaxed);
    /* omp_get_num_procs() counts the online cores this process may run on (it honours the affinity mask,
     * so a container pinned to 4 cores does not get 64 oversubscribed threads) */
    return n > 0 ? n : omp_get_num_procs();
}
#endif

// ---- dot products -------------------------------------------------------------------------------------
// Eight independent partial sums per row: the compiler can keep them in SIMD lanes without reassociating
// (no -ffast-math needed), and the summation order is fixed, so dot1 and dot4 give the same bits for a row.
// The loops run to n8 = n rounded down to 8, then a scalar tail: GCC 12 at -O2 (its "very cheap" cost model)
// vectorises this form, but not `for (; i + 8 <= n; i += 8)` followed by a tail on the same i.

static inline float hsum8(const float s[8]) {
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* sum_i w[i] * x[i] over n values */
static float dot1(const float *restrict w, const float *restrict x, uint32_t n) {
    float s[8] = {0};
    const uint32_t n8 = n & ~7u;
    for (uint32_t i = 0; i < n8; i += 8)
        for (int k = 0; k < 8; k++) s[k] += w[i + k] * x[i + k];
    float tail = 0.0f;
    for (uint32_t i = n8; i < n; i++) tail += w[i] * x[i];
    return hsum8(s) + tail;
}

/* out[j] = sum_i w_j[i] * x[i] for 4 rows: one pass over x serves all four */
static void dot4(const float *restrict w0, const float *restrict w1, const float *restrict w2,
                 const float *restrict w3, const float *restrict x, uint32_t n, float out[4]) {
    float s0[8] = {0}, s1[8] = {0}, s2[8] = {0}, s3[8] = {0};
    const uint32_t n8 = n & ~7u;
    for (uint32_t i = 0; i < n8; i += 8) {
        for (int k = 0; k < 8; k++) {
            float xv = x[i + k];
            s0[k] += w0[i + k] * xv;
            s1[k] += w1[i + k] * xv;
            s2[k] += w2[i + k] * xv;
            s3[k] += w3[i + k] * xv;
        }
    }
    float t0 = 0.0f, t1 = 0.0f, t2 = 0.0f, t3 = 0.0f;
    for (uint32_t i = n8; i < n; i++) {
        t0 += w0[i] * x[i];
        t1 += w1[i] * x[i];
        t2 += w2[i] * x[i];
        t3 += w3[i] * x[i];
    }
    out[0] = hsum8(s0) + t0;
    out[1] = hsum8(s1) + t1;
    out[2] = hsum8(s2) + t2;
    out[3] = hsum8(s3) + t3;
}

/* dst[i] = f32(src[i]) for n int8 values (exact), in blocks of 8 */
static void widen_i8(float *restrict dst, const int8_t *restrict src, uint32_t n) {
    const uint32_t n8 = n & ~7u;
    for (uint32_t i = 0; i < n8; i += 8)
        for (int k = 0; k < 8; k++) dst[i + k] = (float)src[i + k];
    for (uint32_t i = n8; i < n; i++) dst[i] = (float)src[i];
}

/* dst[i] = f32(src[i]) for n values, in blocks of 8 like the dots (vectorised at -O2) */
static void widen_bf16(float *restrict dst, const uint16_t *restrict src, uint32_t n) {
    const uint32_t n8 = n & ~7u;
    for (uint32_t i = 0; i < n8; i += 8)
        for (int k = 0; k < 8; k++) dst[i + k] = em_bf16_to_f32(src[i + k]);
    for (uint32_t i = n8; i < n; i++) dst[i] = em_bf16_to_f32(src[i]);
}

// ---- the op -------------------------------------------------------------------------------------------

/* wr[j] = chunk [k0, k0 + len) of row r0 + j (j < nr) as f32: widened into buf[j] (bf16, int8: exact) or, for f32
 * weights, the row itself. */
static void chunk_rows(const float *wr[LIN_ROWS], float buf[LIN_ROWS][LIN_CHUNK], const float *wf, const uint16_t *wb,
                       const int8_t *wq, uint32_t r0, uint32_t nr, uint32_t n_in, uint32_t k0, uint32_t len) {
    for (uint32_t j = 0; j < nr; j++) {
        if (wb) {
            widen_bf16(buf[j], wb + (size_t)(r0 + j) * n_in + k0, len);
            wr[j] = buf[j];
        } else if (wq) {
            widen_i8(buf[j], wq + (size_t)(r0 + j) * n_in + k0, len);
            wr[j] = buf[j];
        } else {
            wr[j] = wf + (size_t)(r0 + j) * n_in + k0;
        }
    }
}

void em_ref_linear(const em_linear_args *a) {
    EM_ASSERT(a->w_dtype == EM_DTYPE_F32 || a->w_dtype == EM_DTYPE_BF16 ||
              (a->w_dtype == EM_DTYPE_I8 && a->w_scale != NULL));
    const uint32_t n_tok = a->n_tok, n_in = a->n_in, n_out = a->n_out;
    const size_t xs = a->x_stride ? a->x_stride : n_in;  /* elements per token row of x */
    const size_t ys = a->y_stride ? a->y_stride : n_out; /* elements per token row of y */
    EM_ASSERT(xs >= n_in && ys >= n_out);
    const float *x = a->x;                                                           /* [n_tok, n_in] */
    float *y = a->y;                                                                 /* [n_tok, n_out] */
    const float *wf = a->w_dtype == EM_DTYPE_F32 ? (const float *)a->w : NULL;       /* [n_out, n_in] */
    const uint16_t *wb = a->w_dtype == EM_DTYPE_BF16 ? (const uint16_t *)a->w : NULL; /* [n_out, n_in] */
    const int8_t *wq = a->w_dtype == EM_DTYPE_I8 ? (const int8_t *)a->w : NULL;       /* [n_out, n_in] */
    const float *sc = wq ? a->w_scale : NULL;                                          /* [n_out] */

    const int add = (a->flags & EM_LINEAR_ADD) != 0;
    if (n_in == 0) { /* empty sum: 0 written (or added) */
        for (uint32_t t = 0; t < n_tok; t++)
            for (uint32_t r = 0; r < n_out; r++) y[t * ys + r] = add ? y[t * ys + r] + 0.0f : 0.0f;
        return;
    }
    const int64_t n_blk = ((int64_t)n_out + LIN_ROWS - 1) / LIN_ROWS;
    if (add) { /* y += W x: each row's sum formed exactly as below (chunk by chunk, scaled once), then added */
        for (int64_t blk = 0; blk < n_blk; blk++) {
            const uint32_t r0 = (uint32_t)blk * LIN_ROWS;
            const uint32_t nr = n_out - r0 < LIN_ROWS ? n_out - r0 : LIN_ROWS;
            float buf[LIN_ROWS][LIN_CHUNK];
            const float *wr[LIN_ROWS];
            for (uint32_t t = 0; t < n_tok; t++) {
                float acc[LIN_ROWS] = { 0.0f };
                for (uint32_t k0 = 0; k0 < n_in; k0 += LIN_CHUNK) {
                    const uint32_t len = n_in - k0 < LIN_CHUNK ? n_in - k0 : LIN_CHUNK;
                    chunk_rows(wr, buf, wf, wb, wq, r0, nr, n_in, k0, len);
                    float d[LIN_ROWS];
                    if (nr == LIN_ROWS) dot4(wr[0], wr[1], wr[2], wr[3], x + t * xs + k0, len, d);
                    else for (uint32_t j = 0; j < nr; j++) d[j] = dot1(wr[j], x + t * xs + k0, len);
                    for (uint32_t j = 0; j < nr; j++) acc[j] = k0 == 0 ? d[j] : acc[j] + d[j];
                }
                for (uint32_t j = 0; j < nr; j++) y[t * ys + r0 + j] += sc ? acc[j] * sc[r0 + j] : acc[j];
            }
        }
        return;
    }

#ifdef EM_HAVE_OPENMP /* without OpenMP the same loop runs on the calling thread */
    const int par = (uint64_t)n_tok * n_in * n_out >= LIN_MIN_PAR;
    const int nth = linear_threads();
#pragma omp parallel for schedule(static) num_threads(nth) if (par)
#endif
    for (int64_t blk = 0; blk < n_blk; blk++) {
        const uint32_t r0 = (uint32_t)blk * LIN_ROWS;
        const uint32_t nr = n_out - r0 < LIN_ROWS ? n_out - r0 : LIN_ROWS; /* rows in this block: 1..4 */
        float buf[LIN_ROWS][LIN_CHUNK]; /* widened bf16 chunk of the block's rows */
        const float *wr[LIN_ROWS];      /* the chunk of each row, f32 */
        for (uint32_t k0 = 0; k0 < n_in; k0 += LIN_CHUNK) {
            const uint32_t len = n_in - k0 < LIN_CHUNK ? n_in - k0 : LIN_CHUNK;
            chunk_rows(wr, buf, wf, wb, wq, r0, nr, n_in, k0, len);
            // the chunk is in L1 now: use it for every token before moving on (W is read once)
            for (uint32_t t = 0; t < n_tok; t++) {
                const float *xt = x + t * xs + k0;
                float *yt = y + t * ys + r0;
                float d[LIN_ROWS];
                if (nr == LIN_ROWS) {
                    dot4(wr[0], wr[1], wr[2], wr[3], xt, len, d);
                } else {
                    for (uint32_t j = 0; j < nr; j++) d[j] = dot1(wr[j], xt, len);
                }
                /* the first chunk writes, later chunks add: y is never read before this call wrote it */
                for (uint32_t j = 0; j < nr; j++) yt[j] = k0 == 0 ? d[j] : yt[j] + d[j];
            }
        }
        if (sc) /* I8: the row's scale, once, on the finished dot */
            for (uint32_t t = 0; t < n_tok; t++)
                for (uint32_t j = 0; j < nr; j++) y[t * ys + r0 + j] *= sc[r0 + j];
    }
}
