/*
 * test_gemm_cuda.c — em_cuda_gemm (kernels/gemm.cu, cuBLASLt BF16 GEMM for prompts) against its float32 C twin
 * em_ref_linear on the same bf16 weights, one case per line of a table named after the model shapes. Fresh seeded
 * random inputs; y and the workspace poisoned with NaN before every run; y's row padding must stay NaN. Two checks
 * per case:
 *   - against the twin on the fp32 x: max relative error <= 1e-2 (the bf16 limit: the GEMM rounds x to bf16,
 *     ~2e-3 per element, so ~1e-3 on the outputs; the real figure is printed);
 *   - against the twin on bf16-rounded x: <= 1e-4 (both sides then multiply identical values with fp32
 *     accumulation: only the summation order differs, ~1e-6), which proves the layout, transposes, strides and
 *     the conversion kernel exactly, not just "close".
 * One case is also queued inside a stream capture with a fresh handle (the heuristic query happens during the
 * capture) and replayed as a graph.
 * INT8 weights (the dequantize-a-slab-then-GEMM path, issue 10): the same two checks against em_ref_linear's I8
 * path on fp32 x (<= 1e-2) and, exactly (<= 1e-4), against the BF16 twin on bf16(x) and W' = bf16(q * scale) — what
 * the dequantization kernel writes — on 8B and bundled shapes; slabs cut at 64-row multiples (a workspace with room
 * for only 64 or 128 rows forces many slabs and a short last one); n_in not a multiple of 16 (the scalar kernel);
 * a misaligned int8 W.
 *
 * Without a CUDA device it prints "SKIP test_gemm_cuda: no CUDA device" and exits 77 (ctest: Skipped).
 *   build/tests/test_gemm_cuda          # check
 *   build/tests/test_gemm_cuda --perf   # + times the 8B in_proj, out_proj (512 and 8192 tokens) and head, with
 *                                       #   the other prefill ops of a layer, and estimates pp512 / pp8192 tok/s
 *                                       #   of the 56-layer Mamba-2 8B from the parts
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "cuda_ops.h"
#include "cuda_rt.h"
#include "gpu_test.h"
#include "ops.h"
#include "testutil.h"
#include "util.h"

#ifndef EM_HAVE_CUDA
#error "test_gemm_cuda is built only with CUDA (tests/prefill.cmake)"
#endif

#define TOL_BF16 1e-2
#define TOL_EXACT 1e-4
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

typedef struct gemm_case {
    uint32_t n_out, n_in, n_tok;
    uint32_t x_pad, y_pad; /* x_stride = n_in + x_pad, y_stride = n_out + y_pad (0: dense) */
    uint32_t x_off, w_off; /* elements the device x / W pointers are shifted by (misaligned) */
    int capture;           /* also run inside a stream capture with a fresh handle */
    const char *what;
} gemm_case;

static const gemm_case cases[] = {
    // Mamba-2 8B (d_model 4096, d_inner 8192, d_in_proj 18560), prompt chunks (fewer tokens where the twin is slow)
    { 18560, 4096, 1, .what = "8B in_proj, 1 token" },
    { 18560, 4096, 129, .what = "8B in_proj, 129" },
    { 4096, 8192, 127, .what = "8B out_proj, 127" },
    { 4096, 8192, 128, .capture = 1, .what = "8B out_proj, 128 (also captured)" },
    { 256000, 4096, 1, .what = "8B head (vocab 256000), last position" },
    // the bundled models/mamba2 (d_model 192, d_inner 384, d_in_proj 1030, vocab 4096)
    { 1030, 192, 1, .what = "models/mamba2 in_proj, 1" },
    { 1030, 192, 127, .what = "models/mamba2 in_proj, 127" },
    { 1030, 192, 128, .what = "models/mamba2 in_proj, 128" },
    { 1030, 192, 129, .what = "models/mamba2 in_proj, 129" },
    { 1030, 192, 1000, .what = "models/mamba2 in_proj, 1000" },
    { 192, 384, 1000, .what = "models/mamba2 out_proj, 1000" },
    { 4096, 192, 1, .what = "models/mamba2 head" },
    // the tiny fixture (d_model 64, d_in_proj 324, vocab 512)
    { 324, 64, 1, .what = "tiny in_proj, 1" },
    { 324, 64, 127, .what = "tiny in_proj, 127" },
    { 324, 64, 128, .what = "tiny in_proj, 128" },
    { 324, 64, 129, .what = "tiny in_proj, 129" },
    { 324, 64, 1000, .capture = 1, .what = "tiny in_proj, 1000 (also captured)" },
    { 64, 128, 1000, .what = "tiny out_proj, 1000" },
    // layouts: strides (the executor's y inside a wider row), misaligned pointers, odd sizes
    { 333, 512, 37, 4, 5, .what = "strided x and y" },
    { 300, 256, 20, 1, 3, .what = "x_stride % 4 != 0 (scalar conversion)" },
    { 257, 1024, 9, 0, 0, 1, .what = "x misaligned" },
    { 257, 1024, 9, 0, 1, 0, 1, .what = "W misaligned (2-byte), y_stride odd" },
    { 77, 4100, 33, .what = "n_in 4100 (rows 8-byte aligned)" },
    { 5, 3, 7, .what = "n_in 3" },
    { 5, 0, 2, .what = "n_in 0: y = 0, written" },
};

// ---- one case ----------------------------------------------------------------------------------------------

static void run_case(const gemm_case *c, em_rng *rng, void *h) {
    char label[200];
    snprintf(label, sizeof label, "%s [n_out %u, n_in %u, n_tok %u]", c->what, c->n_out, c->n_in, c->n_tok);
    const uint32_t xs = c->n_in + c->x_pad, ys = c->n_out + c->y_pad;
    const size_t n_w = (size_t)c->n_out * c->n_in, n_x = (size_t)c->n_tok * xs, n_y = (size_t)c->n_tok * ys;
    uint16_t *w = em_xmalloc(n_w * 2 + 2);
    float *x = em_xmalloc(n_x * 4 + 4), *xr = em_xmalloc(n_x * 4 + 4);
    float *y_ref = em_xmalloc(n_y * 4), *y_ex = em_xmalloc(n_y * 4), *y_got = em_xmalloc(n_y * 4);
    for (size_t i = 0; i < n_w; i++) w[i] = em_f32_to_bf16(em_rng_uniform(rng, 0.05f));
    em_fill_uniform(rng, x, n_x, 1.0f);
    for (size_t i = 0; i < n_x; i++) xr[i] = em_bf16_to_f32(em_f32_to_bf16(x[i])); /* what the GEMM multiplies */
    em_linear_args ra = { .w = w, .w_dtype = EM_DTYPE_BF16, .x = x, .y = y_ref, .n_tok = c->n_tok, .n_in = c->n_in,
                          .n_out = c->n_out, .x_stride = c->x_pad ? xs : 0, .y_stride = c->y_pad ? ys : 0 };
    em_ref_linear(&ra);
    em_linear_args rx = ra;
    rx.x = xr;
    rx.y = y_ex;
    em_ref_linear(&rx);

    const size_t ws_bytes = em_cuda_gemm_workspace_bytes(c->n_tok, c->n_in);
    uint16_t *d_w_alloc = em_gpu_poisoned((n_w + c->w_off) * 2 + 2); /* W copied below, shifted by w_off */
    float *d_x_alloc = em_gpu_poisoned((n_x + c->x_off) * 4 + 4);
    float *d_y = em_gpu_poisoned(n_y * 4);
    void *d_ws = em_gpu_poisoned(ws_bytes);
    int ok = d_w_alloc && d_x_alloc && d_y && d_ws;
    uint16_t *d_w = d_w_alloc ? d_w_alloc + c->w_off : NULL;
    float *d_x = d_x_alloc ? d_x_alloc + c->x_off : NULL;
    ok = ok && em_cuda_memcpy(d_w, w, n_w * 2) == EM_OK && em_cuda_memcpy(d_x, x, n_x * 4) == EM_OK;
    em_linear_args ga = ra;
    ga.w = d_w;
    ga.x = d_x;
    ga.y = d_y;
    CHECK(em_cuda_gemm_supported(&ga));
    em_status st = ok ? em_cuda_gemm(h, &ga, d_ws, ws_bytes, NULL) : EM_ERR_DEVICE;
    if (st == EM_OK) st = em_cuda_sync(NULL);
    CHECK_MSG(st == EM_OK, "%s: %s (%s)", label, em_status_str(st), em_last_error());
    double err = INFINITY, err_ex = INFINITY, err_cap = 0.0;
    if (st == EM_OK && em_gpu_fetch(y_got, d_y, n_y * 4)) {
        err = em_gpu_check_rows(label, y_got, y_ref, c->n_tok, c->n_out, ys, 1, TOL_BF16);
        char l2[230];
        snprintf(l2, sizeof l2, "%s vs twin on bf16(x)", label);
        err_ex = em_gpu_check_rows(l2, y_got, y_ex, c->n_tok, c->n_out, ys, 1, TOL_EXACT);
    }
    if (c->capture && st == EM_OK) { /* a fresh handle: the heuristic query runs during the capture */
        void *h2 = NULL;
        cudaStream_t s = NULL;
        cudaGraph_t g = NULL;
        cudaGraphExec_t ge = NULL;
        err_cap = INFINITY;
        st = em_cuda_gemm_create(&h2);
        if (st == EM_OK) st = em_cuda_memset(d_y, 0xff, n_y * 4);
        cudaError_t e = st == EM_OK ? cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) : cudaErrorUnknown;
        if (e == cudaSuccess) e = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
        if (e == cudaSuccess) {
            st = em_cuda_gemm(h2, &ga, d_ws, ws_bytes, s);
            e = cudaStreamEndCapture(s, &g);
        }
        if (e == cudaSuccess && st == EM_OK) e = cudaGraphInstantiate(&ge, g, 0);
        if (e == cudaSuccess && st == EM_OK) e = cudaGraphLaunch(ge, s);
        if (e == cudaSuccess && st == EM_OK) e = cudaStreamSynchronize(s);
        CHECK_MSG(e == cudaSuccess && st == EM_OK, "%s: captured run: %s / %s (%s)", label, cudaGetErrorString(e),
                  em_status_str(st), em_last_error());
        if (e == cudaSuccess && st == EM_OK && em_gpu_fetch(y_got, d_y, n_y * 4)) {
            char l3[230];
            snprintf(l3, sizeof l3, "%s, captured", label);
            err_cap = em_gpu_check_rows(l3, y_got, y_ex, c->n_tok, c->n_out, ys, 1, TOL_EXACT);
        }
        if (ge) cudaGraphExecDestroy(ge);
        if (g) cudaGraphDestroy(g);
        if (s) cudaStreamDestroy(s);
        em_cuda_gemm_destroy(h2);
    }
    printf("  %-44s %6u x %5u, n_tok %4u: rel err %.2e (vs bf16(x) twin %.2e)%s %s\n", c->what, c->n_out, c->n_in,
           c->n_tok, err, err_ex, c->capture ? (err_cap <= TOL_EXACT ? ", captured ok" : ", captured FAIL") : "",
           err <= TOL_BF16 && err_ex <= TOL_EXACT && err_cap <= TOL_EXACT ? "ok" : "FAIL");
    em_cuda_free(d_w_alloc), em_cuda_free(d_x_alloc), em_cuda_free(d_y), em_cuda_free(d_ws);
    free(w), free(x), free(xr), free(y_ref), free(y_ex), free(y_got);
}

// ---- INT8 weights ------------------------------------------------------------------------------------------------

typedef struct gemm_i8_case {
    uint32_t n_out, n_in, n_tok;
    uint32_t slab_rows; /* 0: the planned workspace (em_cuda_gemm_i8_workspace_bytes); else room for this many rows */
    uint32_t w_off;     /* bytes the device int8 W is shifted by */
    uint32_t y_pad;
    const char *what;
} gemm_i8_case;

static const gemm_i8_case i8_cases[] = {
    { 18560, 4096, 129, .what = "8B in_proj, 129 (slabs of 4096 rows + 2176)" },
    { 4096, 8192, 128, .what = "8B out_proj, 128 (2 slabs of 2048)" },
    { 4096, 16384, 33, .what = "hybrid 8B MLP down, 33 (4 slabs of 1024)" },
    { 1030, 192, 200, .what = "models/mamba2 in_proj, 200 (one slab)" },
    { 1030, 192, 200, 64, .what = "same, room for 64 rows (17 slabs, last 6)" },
    { 1030, 192, 9, 128, 0, 7, .what = "room for 128 rows, y strided" },
    { 300, 100, 17, .what = "n_in 100 (scalar dequantization)" },
    { 257, 1024, 9, 0, 3, .what = "int8 W misaligned by 3 bytes" },
    { 50, 64, 12, .what = "fewer rows than a slab multiple" },
};

static void run_case_i8(const gemm_i8_case *c, em_rng *rng, void *h) {
    char label[200];
    snprintf(label, sizeof label, "INT8 %s [n_out %u, n_in %u, n_tok %u]", c->what, c->n_out, c->n_in, c->n_tok);
    const uint32_t ys = c->n_out + c->y_pad;
    const size_t n_w = (size_t)c->n_out * c->n_in, n_x = (size_t)c->n_tok * c->n_in, n_y = (size_t)c->n_tok * ys;
    int8_t *q = em_xmalloc(n_w + 1);
    float *sc = em_xmalloc(sizeof(float) * c->n_out);
    uint16_t *wd = em_xmalloc(n_w * 2 + 2); /* bf16(q * scale): the slab's values */
    float *x = em_xmalloc(n_x * 4 + 4), *xr = em_xmalloc(n_x * 4 + 4);
    float *y_ref = em_xmalloc(n_y * 4), *y_ex = em_xmalloc(n_y * 4), *y_got = em_xmalloc(n_y * 4);
    for (uint32_t r = 0; r < c->n_out; r++) {
        sc[r] = (0.5f + 0.5f * (em_rng_uniform(rng, 1.0f) + 1.0f)) * 0.05f / 127.0f;
        for (uint32_t k = 0; k < c->n_in; k++) {
            const size_t i = (size_t)r * c->n_in + k;
            q[i] = (int8_t)((int)(em_rng_u32(rng) % 255u) - 127);
            wd[i] = em_f32_to_bf16((float)q[i] * sc[r]);
        }
    }
    em_fill_uniform(rng, x, n_x, 1.0f);
    for (size_t i = 0; i < n_x; i++) xr[i] = em_bf16_to_f32(em_f32_to_bf16(x[i]));
    em_linear_args ra = { .w = q, .w_dtype = EM_DTYPE_I8, .w_scale = sc, .x = x, .y = y_ref, .n_tok = c->n_tok,
                          .n_in = c->n_in, .n_out = c->n_out, .y_stride = c->y_pad ? ys : 0 };
    em_ref_linear(&ra);
    em_linear_args rx = ra;
    rx.w = wd;
    rx.w_dtype = EM_DTYPE_BF16;
    rx.w_scale = NULL;
    rx.x = xr;
    rx.y = y_ex;
    em_ref_linear(&rx);

    const size_t ws_bytes = c->slab_rows ? em_cuda_gemm_workspace_bytes(c->n_tok, c->n_in) + (size_t)c->slab_rows *
                                               c->n_in * 2
                                         : em_cuda_gemm_i8_workspace_bytes(c->n_tok, c->n_in);
    int8_t *d_q_alloc = em_gpu_poisoned(n_w + c->w_off + 1);
    float *d_sc = em_gpu_dup(sc, sizeof(float) * c->n_out);
    float *d_x = em_gpu_dup(x, n_x * 4);
    float *d_y = em_gpu_poisoned(n_y * 4);
    void *d_ws = em_gpu_poisoned(ws_bytes);
    int8_t *d_q = d_q_alloc ? d_q_alloc + c->w_off : NULL;
    int ok = d_q_alloc && d_sc && d_x && d_y && d_ws && em_cuda_memcpy(d_q, q, n_w) == EM_OK;
    em_linear_args ga = ra;
    ga.w = d_q;
    ga.w_scale = d_sc;
    ga.x = d_x;
    ga.y = d_y;
    CHECK(em_cuda_gemm_supported(&ga));
    em_status st = ok ? em_cuda_gemm(h, &ga, d_ws, ws_bytes, NULL) : EM_ERR_DEVICE;
    if (st == EM_OK) st = em_cuda_sync(NULL);
    CHECK_MSG(st == EM_OK, "%s: %s (%s)", label, em_status_str(st), em_last_error());
    double err = INFINITY, err_ex = INFINITY;
    if (st == EM_OK && em_gpu_fetch(y_got, d_y, n_y * 4)) {
        err = em_gpu_check_rows(label, y_got, y_ref, c->n_tok, c->n_out, ys, 1, TOL_BF16);
        char l2[260];
        snprintf(l2, sizeof l2, "%s vs bf16 twin on bf16(x), bf16(q*s)", label);
        err_ex = em_gpu_check_rows(l2, y_got, y_ex, c->n_tok, c->n_out, ys, 1, TOL_EXACT);
    }
    printf("  INT8 %-49s %6u x %5u, n_tok %4u: rel err %.2e (vs bf16 twin %.2e) %s\n", c->what, c->n_out, c->n_in,
           c->n_tok, err, err_ex, err <= TOL_BF16 && err_ex <= TOL_EXACT ? "ok" : "FAIL");
    em_cuda_free(d_q_alloc), em_cuda_free(d_sc), em_cuda_free(d_x), em_cuda_free(d_y), em_cuda_free(d_ws);
    free(q), free(sc), free(wd), free(x), free(xr), free(y_ref), free(y_ex), free(y_got);
}

static void check_refusals(void *h) {
    float f = 0;
    char ws[64];
    em_linear_args a = { .w = &f, .w_dtype = EM_DTYPE_F32, .x = &f, .y = &f, .n_tok = 1, .n_in = 1, .n_out = 1 };
    CHECK(!em_cuda_gemm_supported(&a));
    CHECK_STATUS(em_cuda_gemm(h, &a, ws, sizeof ws, NULL), EM_ERR_UNSUPPORTED); /* F32 weights: em_cuda_linear */
    a.w_dtype = EM_DTYPE_I8; /* INT8 without scales */
    CHECK(!em_cuda_gemm_supported(&a));
    CHECK_STATUS(em_cuda_gemm(h, &a, ws, sizeof ws, NULL), EM_ERR_UNSUPPORTED);
    a.w_scale = &f;
    CHECK(em_cuda_gemm_supported(&a));
    CHECK_STATUS(em_cuda_gemm(h, &a, ws, sizeof ws, NULL), EM_ERR_INVALID_ARG); /* no room for the slab */
    a.w_scale = NULL;
    a.w_dtype = EM_DTYPE_BF16;
    CHECK_STATUS(em_cuda_gemm(h, &a, ws, sizeof ws, NULL), EM_ERR_INVALID_ARG); /* workspace too small */
    a.x_stride = 0;
    a.y = NULL;
    CHECK_STATUS(em_cuda_gemm(h, &a, ws, sizeof ws, NULL), EM_ERR_INVALID_ARG);
    a.y = &f;
    a.n_tok = 0;
    CHECK_STATUS(em_cuda_gemm(h, &a, NULL, 0, NULL), EM_OK); /* nothing to do */
    CHECK_STATUS(em_cuda_gemm(NULL, &a, ws, sizeof ws, NULL), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_cuda_gemm_create(NULL), EM_ERR_INVALID_ARG);
    em_cuda_gemm_destroy(NULL);
}

// ---- --perf: the parts of a Mamba-2 8B prefill layer ----------------------------------------------------------------

typedef struct op_ctx {
    void *h;
    em_linear_args lin;
    em_ssd_args ssd;
    em_rmsnorm_args rms;
    em_conv1d_args conv;
    em_gated_norm_args gn;
    void *ws;
    size_t ws_bytes;
    int kind; /* 0 gemm, 1 gemv (em_cuda_linear), 2 ssd, 3 rmsnorm, 4 conv1d, 5 gated norm */
} op_ctx;

static em_status launch_op(void *ctx, int i, void *stream) {
    (void)i;
    op_ctx *c = ctx;
    switch (c->kind) {
    case 0: return em_cuda_gemm(c->h, &c->lin, c->ws, c->ws_bytes, stream);
    case 1: return em_cuda_linear(&c->lin, stream);
    case 2: return em_cuda_ssd(&c->ssd, c->ws, c->ws_bytes, stream);
    case 3: return em_cuda_rmsnorm(&c->rms, stream);
    case 4: return em_cuda_conv1d(&c->conv, stream);
    default: return em_cuda_gated_norm(&c->gn, stream);
    }
}

static double time_op(op_ctx *c, const char *what, double flop, double bytes) {
    em_gpu_timing t = {0};
    const em_status st = em_gpu_time(launch_op, c, &t);
    CHECK_MSG(st == EM_OK, "perf %s: %s (%s)", what, em_status_str(st), em_last_error());
    if (st != EM_OK) return NAN;
    printf("  %-40s %10.1f us (graph %10.1f)", what, t.launch_us, t.graph_us);
    if (flop > 0) printf(", %7.1f TFLOP/s", flop / (t.launch_us * 1e-6) / 1e12);
    if (bytes > 0) printf(", %6.0f GB/s", bytes / (t.launch_us * 1e-6) / 1e9);
    printf("\n");
    em_gpu_perf_add(what, &t, bytes);
    return t.graph_us; /* what a captured prefill would see */
}

static void *dev_random(em_rng *rng, size_t n_floats, float scale) {
    float *hbuf = em_xmalloc(n_floats * 4);
    em_fill_uniform(rng, hbuf, n_floats, scale);
    void *d = em_gpu_dup(hbuf, n_floats * 4);
    free(hbuf);
    return d;
}

static void perf_prefill(void *h, uint32_t T, em_rng *rng) {
    const uint32_t d = 4096, di = 8192, H = 128, P = 64, N = 128, G = 8, dip = 18560, conv_dim = 10240, V = 256000;
    printf("\n--perf: Mamba-2 8B prefill parts at %u tokens (us: median of single launches; estimate from graph us)\n",
           T);
    /* bf16 weights: random values (the time does not depend on them, but never on zeros) */
    uint16_t *hw = em_xmalloc((size_t)dip * d * 2);
    for (size_t i = 0; i < (size_t)dip * d; i++) hw[i] = em_f32_to_bf16(em_rng_uniform(rng, 0.02f));
    void *w_in = em_gpu_dup(hw, (size_t)dip * d * 2), *w_out = em_gpu_dup(hw, (size_t)d * di * 2);
    free(hw);
    void *w_head = NULL;
    em_cuda_malloc(&w_head, (size_t)V * d * 2);
    if (w_head) em_cuda_memset(w_head, 0x3c, (size_t)V * d * 2); /* bf16 0x3c3c ~ 0.0115 everywhere */
    float *x = dev_random(rng, (size_t)T * d, 1.0f), *xn = dev_random(rng, (size_t)T * d, 1.0f);
    float *proj = dev_random(rng, (size_t)T * dip, 1.0f), *xbc = dev_random(rng, (size_t)T * conv_dim, 1.0f);
    float *y = dev_random(rng, (size_t)T * di, 1.0f), *delta = dev_random(rng, (size_t)T * d, 1.0f);
    float *nw = dev_random(rng, di, 1.0f), *cw = dev_random(rng, (size_t)conv_dim * 4, 0.5f);
    float *cs = dev_random(rng, (size_t)conv_dim * 3, 1.0f), *st = dev_random(rng, (size_t)H * P * N, 1.0f);
    float *logits = NULL;
    em_cuda_malloc((void **)&logits, (size_t)V * 4);
    float hA[128], hD[128], hb[128];
    for (int i = 0; i < 128; i++) hA[i] = -1.0f - (float)(i % 16), hD[i] = 1.0f, hb[i] = -4.0f;
    float *A = em_gpu_dup(hA, sizeof hA), *Dv = em_gpu_dup(hD, sizeof hD), *db = em_gpu_dup(hb, sizeof hb);
    const size_t gws = em_cuda_gemm_workspace_bytes(T, di);
    const size_t sws = em_cuda_ssd_workspace_bytes(T, H, P, N, G, 0);
    void *ws = NULL;
    em_cuda_malloc(&ws, gws > sws ? gws : sws);
    if (!w_in || !w_out || !w_head || !x || !xn || !proj || !xbc || !y || !delta || !nw || !cw || !cs || !st ||
        !logits || !A || !Dv || !db || !ws) {
        CHECK_MSG(0, "perf buffers: %s", em_last_error());
        return;
    }
    op_ctx c;
    memset(&c, 0, sizeof c);
    c.h = h;
    c.ws = ws;
    c.ws_bytes = gws > sws ? gws : sws;
    char what[96];
    double us_layer = 0, us;

    c.kind = 3;
    c.rms = (em_rmsnorm_args){ .x = x, .delta = delta, .w = nw, .y = xn, .n_tok = T, .d = d, .eps = 1e-5f };
    snprintf(what, sizeof what, "rmsnorm + residual %u x %u", T, d);
    us_layer += time_op(&c, what, 0, 4.0 * T * d * 4);

    c.kind = 0;
    c.lin = (em_linear_args){ .w = w_in, .w_dtype = EM_DTYPE_BF16, .x = xn, .y = proj, .n_tok = T, .n_in = d,
                              .n_out = dip };
    snprintf(what, sizeof what, "in_proj GEMM %u x %u x %u", T, dip, d);
    us_layer += time_op(&c, what, 2.0 * T * dip * d, 0);

    c.kind = 4;
    c.conv = (em_conv1d_args){ .x = proj + di, .state = cs, .w = cw, .b = nw, .y = xbc, .n_tok = T, .C = conv_dim,
                               .K = 4, .x_stride = dip, .y_stride = conv_dim, .silu = EM_SILU_ON };
    snprintf(what, sizeof what, "conv1d %u x %u", T, conv_dim);
    us_layer += time_op(&c, what, 0, 2.0 * T * conv_dim * 4);

    c.kind = 2;
    c.ssd = (em_ssd_args){ .x = xbc, .dt = proj + di + conv_dim, .B = xbc + di, .C = xbc + di + G * N, .A = A,
                           .D = Dv, .dt_bias = db, .state = st, .y = y, .n_tok = T, .H = H, .P = P, .N = N, .G = G,
                           .x_stride = conv_dim, .dt_stride = dip, .bc_stride = conv_dim, .dt_min = 0,
                           .dt_max = INFINITY, .chunk = 0 };
    snprintf(what, sizeof what, "ssd (chunk %u) %u tokens", EM_SSD_CHUNK, T);
    us_layer += time_op(&c, what, 2.0 * T * (2.0 * H * P * N + 64.0 * H * P + 64.0 * G * N), 0);

    c.kind = 5;
    c.gn = (em_gated_norm_args){ .y = y, .z = proj, .w = nw, .out = y, .n_tok = T, .d = di, .group = 1024,
                                 .z_stride = dip, .eps = 1e-5f };
    snprintf(what, sizeof what, "gated norm %u x %u", T, di);
    us_layer += time_op(&c, what, 0, 3.0 * T * di * 4);

    c.kind = 0;
    c.lin = (em_linear_args){ .w = w_out, .w_dtype = EM_DTYPE_BF16, .x = y, .y = delta, .n_tok = T, .n_in = di,
                              .n_out = d };
    snprintf(what, sizeof what, "out_proj GEMM %u x %u x %u", T, d, di);
    us_layer += time_op(&c, what, 2.0 * T * d * di, 0);

    c.kind = 1; /* the head of the last position: the decode GEMV, as the executor runs it */
    c.lin = (em_linear_args){ .w = w_head, .w_dtype = EM_DTYPE_BF16, .x = xn, .y = logits, .n_tok = 1, .n_in = d,
                              .n_out = V };
    us = time_op(&c, "head GEMV 1 x 256000 x 4096", 0, 2.0 * V * d);
    c.kind = 0; /* and through cuBLASLt, for comparison */
    time_op(&c, "head GEMM (cuBLASLt) 1 x 256000 x 4096", 2.0 * V * d, 2.0 * V * d);

    const double total_us = 56.0 * us_layer + us;
    printf("  estimate pp%u, Mamba-2 8B (56 layers, from the parts above, graph us): %.2f ms per layer group of 6 "
           "ops x 56 = %.2f ms + head %.1f us -> %.0f tok/s (goal >= 17000 at pp512; llama.cpp 11543)\n",
           T, us_layer / 1e3, 56.0 * us_layer / 1e3, us, T / (total_us * 1e-6));

    em_cuda_free(w_in), em_cuda_free(w_out), em_cuda_free(w_head), em_cuda_free(x), em_cuda_free(xn);
    em_cuda_free(proj), em_cuda_free(xbc), em_cuda_free(y), em_cuda_free(delta), em_cuda_free(nw), em_cuda_free(cw);
    em_cuda_free(cs), em_cuda_free(st), em_cuda_free(logits), em_cuda_free(A), em_cuda_free(Dv), em_cuda_free(db);
    em_cuda_free(ws);
}

int main(int argc, char **argv) {
    em_gpu_env env;
    em_gpu_test_init("test_gemm_cuda", argc, argv, &env);
    void *h = NULL;
    const em_status st = em_cuda_gemm_create(&h);
    CHECK_MSG(st == EM_OK, "em_cuda_gemm_create: %s (%s)", em_status_str(st), em_last_error());
    if (st != EM_OK) return em_test_finish("test_gemm_cuda");
    check_refusals(h);
    em_rng rng;
    em_rng_seed(&rng, 8);
    for (size_t i = 0; i < LEN(cases); i++) run_case(&cases[i], &rng, h);
    for (size_t i = 0; i < LEN(i8_cases); i++) run_case_i8(&i8_cases[i], &rng, h);
    if (env.perf) {
        perf_prefill(h, 512, &rng);
        perf_prefill(h, 8192, &rng);
        em_gpu_perf_print(&env);
    }
    em_cuda_gemm_destroy(h);
    return em_test_finish("test_gemm_cuda");
}
