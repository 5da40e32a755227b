/*
 * test_mlp_cuda.c — em_cuda_mlp (kernels/mlp.cu: GEMV up -> activation -> GEMV down) and its prompt form
 * em_cuda_mlp_gemm (cuBLASLt GEMMs around the same activation) against the float32 C twin em_ref_mlp
 * (kernels/ref/mlp_ref.c, proven against a double-precision form by tests/test_ref_attn_mlp.c). Shapes: the bundled
 * hybrid (d 192, d_ff 768, models/README.md) and the hybrid 8B (d 4096, d_ff 16384); GELU (exact erf), relu^2 and
 * SiLU; BF16, F32 and INT8 (per-row scales) weights; 1 to 7 tokens through the GEMV, 33 to 128 through the GEMM.
 * Fresh seeded random inputs per case; h (the workspace) and y are poisoned (NaN) first; y AND h (which holds
 * act(up(x)) afterwards, by contract) are compared with the twin by max relative error, limit 1e-2 (GEMV: fp32
 * accumulation in another order, ~1e-6; GEMM: x and h rounded to bf16, ~3e-3); each case prints its figures.
 *
 * Without a CUDA device it prints "SKIP test_mlp_cuda: no CUDA device" and exits 77 (ctest: Skipped).
 *   build/tests/test_mlp_cuda          # check
 *   build/tests/test_mlp_cuda --perf   # + the 8B MLP at 1 token (GEMV; GB/s of weight bytes, % of the read bandwidth
 *                                      #   measured in the same run) and at 512 tokens (GEMM; TFLOP/s)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "cuda_ops.h"
#include "cuda_rt.h"
#include "gpu_test.h"
#include "ops.h"
#include "testutil.h"
#include "util.h"

#ifndef EM_HAVE_CUDA
#error "test_mlp_cuda is built only with CUDA (tests/hybrid_cuda.cmake)"
#endif

#define TOL 1e-2
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

typedef struct mlp_case {
    uint32_t d, d_ff, act, n_tok;
    em_dtype dtype; /* both projections */
    int gemm;       /* em_cuda_mlp_gemm instead of em_cuda_mlp */
    const char *what;
} mlp_case;

static const mlp_case cases[] = {
    { 192, 768, EM_ACT_GELU, 1, EM_DTYPE_BF16, 0, "bundled hybrid, decode, GELU" },
    { 192, 768, EM_ACT_GELU, 2, EM_DTYPE_BF16, 0, "bundled hybrid, 2 tokens" },
    { 192, 768, EM_ACT_GELU, 7, EM_DTYPE_BF16, 0, "bundled hybrid, 7 tokens" },
    { 192, 768, EM_ACT_RELU2, 1, EM_DTYPE_BF16, 0, "bundled shape, relu2" },
    { 192, 768, EM_ACT_SILU, 3, EM_DTYPE_BF16, 0, "bundled shape, SiLU, 3 tokens" },
    { 192, 768, EM_ACT_GELU, 1, EM_DTYPE_F32, 0, "bundled shape, f32 weights" },
    { 192, 768, EM_ACT_GELU, 1, EM_DTYPE_I8, 0, "bundled shape, int8 weights" },
    { 4096, 16384, EM_ACT_GELU, 1, EM_DTYPE_BF16, 0, "hybrid 8B, decode" },
    { 4096, 16384, EM_ACT_RELU2, 3, EM_DTYPE_BF16, 0, "hybrid 8B shape, relu2, 3 tokens" },
    { 4096, 16384, EM_ACT_GELU, 1, EM_DTYPE_I8, 0, "hybrid 8B, int8 weights" },
    { 192, 768, EM_ACT_GELU, 128, EM_DTYPE_BF16, 1, "bundled hybrid, chunk 128, GEMM" },
    { 192, 768, EM_ACT_RELU2, 33, EM_DTYPE_BF16, 1, "bundled shape, relu2, 33, GEMM" },
    { 4096, 16384, EM_ACT_GELU, 64, EM_DTYPE_BF16, 1, "hybrid 8B, chunk 64, GEMM" },
    { 192, 768, EM_ACT_GELU, 33, EM_DTYPE_I8, 1, "bundled shape, int8, 33, GEMM (slabs)" },
    { 4096, 16384, EM_ACT_GELU, 40, EM_DTYPE_I8, 1, "hybrid 8B, int8, chunk 40, GEMM (slabs)" },
};

static const char *act_name(uint32_t a) { return a == EM_ACT_GELU ? "gelu" : a == EM_ACT_RELU2 ? "relu2" : "silu"; }
static size_t dtype_bytes(em_dtype t) { return t == EM_DTYPE_F32 ? 4 : t == EM_DTYPE_BF16 ? 2 : 1; }

/* Random weights [n_out, n_in] of the dtype, about 1/sqrt(n_in) in size (so that up(x) is O(1)); scales for I8. */
static void *make_weights(em_rng *r, em_dtype t, uint32_t n_out, uint32_t n_in, float **scale) {
    const size_t n = (size_t)n_out * n_in;
    const float s = 1.0f / sqrtf((float)n_in);
    void *w = em_xmalloc(n * dtype_bytes(t));
    *scale = NULL;
    if (t == EM_DTYPE_F32) {
        em_fill_uniform(r, w, n, 1.7f * s);
    } else if (t == EM_DTYPE_BF16) {
        uint16_t *b = w;
        for (size_t i = 0; i < n; i++) b[i] = em_f32_to_bf16(em_rng_uniform(r, 1.7f * s));
    } else {
        int8_t *q = w;
        for (size_t i = 0; i < n; i++) q[i] = (int8_t)((int)(em_rng_u32(r) % 255u) - 127);
        *scale = em_xmalloc(n_out * sizeof(float));
        for (uint32_t i = 0; i < n_out; i++) (*scale)[i] = (1.0f + em_rng_uniform(r, 0.5f)) * 1.7f * s / 127.0f;
    }
    return w;
}

static void run_case(const mlp_case *c, em_rng *rng, void *gemm) {
    const uint32_t d = c->d, ff = c->d_ff, nt = c->n_tok;
    float *up_s = NULL, *dn_s = NULL;
    void *up = make_weights(rng, c->dtype, ff, d, &up_s), *dn = make_weights(rng, c->dtype, d, ff, &dn_s);
    const size_t wb = dtype_bytes(c->dtype);
    float *x = em_xmalloc((size_t)nt * d * 4), *h_ref = em_xmalloc((size_t)nt * ff * 4);
    float *y_ref = em_xmalloc((size_t)nt * d * 4), *h = em_xmalloc((size_t)nt * ff * 4), *y = em_xmalloc((size_t)nt * d * 4);
    em_fill_uniform(rng, x, (size_t)nt * d, 1.0f);
    em_poison(h_ref, (size_t)nt * ff);
    em_poison(y_ref, (size_t)nt * d);
    em_mlp_args ra = { .up = up, .up_dtype = c->dtype, .down = dn, .down_dtype = c->dtype, .up_scale = up_s,
                       .down_scale = dn_s, .x = x, .h = h_ref, .y = y_ref, .n_tok = nt, .d = d, .d_ff = ff,
                       .act = c->act };
    em_ref_mlp(&ra);

    void *d_up = em_gpu_dup(up, (size_t)ff * d * wb), *d_dn = em_gpu_dup(dn, (size_t)d * ff * wb);
    float *d_ups = up_s ? em_gpu_dup(up_s, ff * 4) : NULL, *d_dns = dn_s ? em_gpu_dup(dn_s, d * 4) : NULL;
    float *d_x = em_gpu_dup(x, (size_t)nt * d * 4), *d_h = em_gpu_poisoned((size_t)nt * ff * 4);
    float *d_y = em_gpu_poisoned((size_t)nt * d * 4);
    size_t ws_bytes = !c->gemm                 ? 0
                      : c->dtype == EM_DTYPE_I8 ? em_cuda_gemm_i8_workspace_bytes(nt, ff > d ? ff : d)
                                                : em_cuda_gemm_workspace_bytes(nt, ff > d ? ff : d);
    void *d_ws = c->gemm ? em_gpu_poisoned(ws_bytes) : NULL;
    const int ok = d_up && d_dn && d_x && d_h && d_y && (!up_s || (d_ups && d_dns)) && (!c->gemm || d_ws);
    em_mlp_args ga = ra;
    ga.up = d_up;
    ga.down = d_dn;
    ga.up_scale = d_ups;
    ga.down_scale = d_dns;
    ga.x = d_x;
    ga.h = d_h;
    ga.y = d_y;
    char label[160];
    snprintf(label, sizeof label, "%s [d %u d_ff %u %s n_tok %u]", c->what, d, ff, act_name(c->act), nt);
    if (!c->gemm) CHECK_MSG(em_cuda_mlp_supported(&ga), "%s: not supported", label);
    em_status st = !ok ? EM_ERR_DEVICE : c->gemm ? em_cuda_mlp_gemm(gemm, &ga, d_ws, ws_bytes, NULL) : em_cuda_mlp(&ga, NULL);
    if (st == EM_OK) st = em_cuda_sync(NULL);
    CHECK_MSG(st == EM_OK, "%s: %s (%s)", label, em_status_str(st), em_last_error());
    double ey = INFINITY, eh = INFINITY;
    if (st == EM_OK && em_gpu_fetch(y, d_y, (size_t)nt * d * 4) && em_gpu_fetch(h, d_h, (size_t)nt * ff * 4)) {
        ey = em_gpu_check_rows(label, y, y_ref, nt, d, 0, 0, TOL);
        eh = em_gpu_check_rows(label, h, h_ref, nt, ff, 0, 0, TOL);
    }
    printf("  %-36s d %4u d_ff %5u %-5s %-4s n_tok %3u %s: rel err y %.2e, h %.2e %s\n", c->what, d, ff,
           act_name(c->act), c->dtype == EM_DTYPE_BF16 ? "bf16" : c->dtype == EM_DTYPE_F32 ? "f32" : "i8", nt,
           c->gemm ? "GEMM" : "GEMV", ey, eh, ey <= TOL && eh <= TOL ? "ok" : "FAIL");
    em_cuda_free(d_up), em_cuda_free(d_dn), em_cuda_free(d_ups), em_cuda_free(d_dns), em_cuda_free(d_x);
    em_cuda_free(d_h), em_cuda_free(d_y), em_cuda_free(d_ws);
    free(up), free(dn), free(up_s), free(dn_s), free(x), free(h_ref), free(y_ref), free(h), free(y);
}

static void check_refusals(void) {
    static float f[16];
    static uint16_t w[16];
    const em_mlp_args good = { .up = w, .up_dtype = EM_DTYPE_BF16, .down = w, .down_dtype = EM_DTYPE_BF16, .x = f,
                               .h = f, .y = f, .n_tok = 1, .d = 2, .d_ff = 4, .act = EM_ACT_GELU };
    CHECK(em_cuda_mlp_supported(&good));
    em_mlp_args a = good;
    a.act = EM_ACT_NONE;
    CHECK_STATUS(em_cuda_mlp(&a, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.h = NULL;
    CHECK_STATUS(em_cuda_mlp(&a, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.up_dtype = EM_DTYPE_I8; /* no up_scale */
    CHECK_STATUS(em_cuda_mlp(&a, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.n_tok = 0;
    CHECK_STATUS(em_cuda_mlp(&a, NULL), EM_OK);
    CHECK_STATUS(em_cuda_mlp(NULL, NULL), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_cuda_mlp_act(f, 4, EM_ACT_NONE, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.up_dtype = a.down_dtype = EM_DTYPE_F32;
    CHECK_STATUS(em_cuda_mlp_gemm((void *)f, &a, NULL, 0, NULL), EM_ERR_UNSUPPORTED);
}

// ---- --perf ---------------------------------------------------------------------------------------------------

typedef struct mlp_perf_ctx {
    em_mlp_args a;
    void *gemm, *ws;
    size_t ws_bytes;
} mlp_perf_ctx;

static em_status launch_mlp(void *ctx, int i, void *stream) {
    (void)i;
    mlp_perf_ctx *c = ctx;
    return c->gemm ? em_cuda_mlp_gemm(c->gemm, &c->a, c->ws, c->ws_bytes, stream) : em_cuda_mlp(&c->a, stream);
}

/* Hybrid 8B MLP (4096 -> 16384 -> 4096, GELU, bf16): 256 MiB of weights, larger than L2 (no rotation needed). */
static void perf_8b(uint32_t nt, void *gemm, em_rng *rng) {
    const uint32_t d = 4096, ff = 16384;
    const size_t nw = (size_t)d * ff;
    uint16_t *w = em_xmalloc(nw * 2);
    for (size_t i = 0; i < nw; i++) w[i] = em_f32_to_bf16(em_rng_uniform(rng, 0.02f));
    float *x = em_xmalloc((size_t)nt * d * 4);
    em_fill_uniform(rng, x, (size_t)nt * d, 1.0f);
    mlp_perf_ctx c;
    memset(&c, 0, sizeof c);
    void *d_up = em_gpu_dup(w, nw * 2), *d_dn = em_gpu_dup(w, nw * 2);
    float *d_x = em_gpu_dup(x, (size_t)nt * d * 4), *d_h = em_gpu_poisoned((size_t)nt * ff * 4);
    float *d_y = em_gpu_poisoned((size_t)nt * d * 4);
    if (nt > 1) {
        c.gemm = gemm;
        c.ws_bytes = em_cuda_gemm_workspace_bytes(nt, ff);
        c.ws = em_gpu_poisoned(c.ws_bytes);
    }
    if (d_up && d_dn && d_x && d_h && d_y && (nt == 1 || c.ws)) {
        c.a = (em_mlp_args){ .up = d_up, .up_dtype = EM_DTYPE_BF16, .down = d_dn, .down_dtype = EM_DTYPE_BF16,
                             .x = d_x, .h = d_h, .y = d_y, .n_tok = nt, .d = d, .d_ff = ff, .act = EM_ACT_GELU };
        em_gpu_timing t = {0};
        const em_status st = em_gpu_time(launch_mlp, &c, &t);
        CHECK_MSG(st == EM_OK, "perf mlp n_tok %u: %s (%s)", nt, em_status_str(st), em_last_error());
        const double bytes = 2.0 * nw * 2, flop = 4.0 * nw * nt;
        char what[96];
        snprintf(what, sizeof what, "mlp 8B n_tok %u (%s)", nt, nt == 1 ? "GEMV" : "GEMM");
        printf("  %-32s %9.2f us (graph %9.2f us), %6.0f GB/s of weights, %6.2f TFLOP/s\n", what, t.launch_us,
               t.graph_us, bytes / (t.graph_us * 1e-6) / 1e9, flop / (t.launch_us * 1e-6) / 1e12);
        if (st == EM_OK && nt == 1) em_gpu_perf_add(what, &t, bytes);
    }
    em_cuda_free(d_up), em_cuda_free(d_dn), em_cuda_free(d_x), em_cuda_free(d_h), em_cuda_free(d_y), em_cuda_free(c.ws);
    free(w), free(x);
}

int main(int argc, char **argv) {
    em_gpu_env env;
    em_gpu_test_init("test_mlp_cuda", argc, argv, &env);
    check_refusals();
    void *gemm = NULL;
    const em_status st = em_cuda_gemm_create(&gemm);
    CHECK_MSG(st == EM_OK, "em_cuda_gemm_create: %s (%s)", em_status_str(st), em_last_error());
    em_rng rng;
    em_rng_seed(&rng, 20261123);
    for (size_t i = 0; i < LEN(cases); i++)
        if (!cases[i].gemm || gemm) run_case(&cases[i], &rng, gemm);
    if (env.perf && gemm) {
        printf("\n--perf: the hybrid 8B MLP (4096 -> 16384 -> 4096, GELU, bf16 weights); us: median of single launches\n");
        perf_8b(1, gemm, &rng);
        perf_8b(512, gemm, &rng);
        em_gpu_perf_print(&env);
    }
    em_cuda_gemm_destroy(gemm);
    return em_test_finish("test_mlp_cuda");
}
