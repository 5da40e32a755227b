/*
 * test_aux_fused_cuda.c — the two kernel forms with which the hybrid's attention and MLP layers join the fused
 * decode step (issue 9; runtime/cuda_exec.c queue_aux_fused), against their float32 twins on fresh random inputs:
 *
 *  - em_cuda_linear with EM_LINEAR_ADD, y += W x (the MLP's down and the attention's o projection adding into the
 *    residual stream, which makes the rmsnorm kernels around the layer unnecessary), on every GEMV path it can
 *    take: BF16 vector kernel (1 and 3 tokens), BF16 and F32 generic kernels, INT8 x-stationary (v3), INT8 v1
 *    (3 tokens) and the INT8 generic kernel; plain launches and EM_LINEAR_W_CONST (PDL). y is read, so it is not
 *    poisoned: both sides start from the same random y, and a kernel that overwrote y instead of adding to it
 *    is off by |y| (~1, far past the limit). The twin em_ref_linear honours ADD.
 *  - em_cuda_norm_linear with an activation epilogue (GELU, relu^2, SiLU: the MLP's up projection behind its
 *    RMSNorm), BF16 and INT8, output poisoned first; twin em_ref_norm_linear (rmsnorm, linear, em_ref_act).
 *  - the refusals: an activation together with the conv epilogue, an activation past SiLU, em_cuda_gemm with ADD.
 *
 * Both sides accumulate in f32 from identical weights (int8 widened exactly, the row scale applied once to the
 * finished sum), so only the summation order differs: the limit is 1e-4 of max |ref| (as test_linear_i8_cuda), and
 * every case prints its real figure. Without a CUDA device: "SKIP test_aux_fused_cuda: no CUDA device", exit 77.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "cuda_ops.h"
#include "gpu_test.h"
#include "ops.h"
#include "testutil.h"
#include "util.h"

#define TOL 1e-4
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

typedef struct add_case {
    uint32_t n_out, n_in, n_tok;
    em_dtype dt;
    const char *what;
} add_case;

static const add_case add_cases[] = {
    { 4096, 16384, 1, EM_DTYPE_BF16, "BF16 hybrid 8B MLP down (vector kernel)" },
    { 4096, 4096, 1, EM_DTYPE_BF16, "BF16 hybrid 8B attention o (vector kernel)" },
    { 1000, 4096, 3, EM_DTYPE_BF16, "BF16 3 tokens (vector kernel, NT 3)" },
    { 100, 1001, 2, EM_DTYPE_BF16, "BF16 n_in % 8 != 0 (generic kernel)" },
    { 64, 200, 1, EM_DTYPE_F32, "F32 (generic kernel)" },
    { 4096, 16384, 1, EM_DTYPE_I8, "INT8 hybrid 8B MLP down (x-stationary)" },
    { 4096, 4096, 1, EM_DTYPE_I8, "INT8 hybrid 8B attention o (x-stationary)" },
    { 1000, 20480, 1, EM_DTYPE_I8, "INT8 n_in 20480 > 16384 (v1)" },
    { 1000, 4096, 3, EM_DTYPE_I8, "INT8 3 tokens (v1, NT 3)" },
    { 100, 1000, 2, EM_DTYPE_I8, "INT8 n_in % 16 != 0 (generic kernel)" },
};

typedef struct act_case {
    uint32_t n_out, n_in, act;
    em_dtype dt;
    const char *what;
} act_case;

static const act_case act_cases[] = {
    { 16384, 4096, EM_ACT_GELU, EM_DTYPE_BF16, "BF16 hybrid 8B MLP up, GELU" },
    { 16384, 4096, EM_ACT_RELU2, EM_DTYPE_BF16, "BF16 hybrid 8B MLP up, relu^2" },
    { 16384, 4096, EM_ACT_SILU, EM_DTYPE_BF16, "BF16 hybrid 8B MLP up, SiLU" },
    { 768, 192, EM_ACT_GELU, EM_DTYPE_BF16, "BF16 bundled hybrid MLP up (d 192), GELU" },
    { 16384, 4096, EM_ACT_GELU, EM_DTYPE_I8, "INT8 hybrid 8B MLP up, GELU (x-stationary)" },
    { 16384, 4096, EM_ACT_RELU2, EM_DTYPE_I8, "INT8 hybrid 8B MLP up, relu^2 (x-stationary)" },
    { 16384, 4096, EM_ACT_SILU, EM_DTYPE_I8, "INT8 hybrid 8B MLP up, SiLU (x-stationary)" },
    { 768, 192, EM_ACT_GELU, EM_DTYPE_I8, "INT8 bundled hybrid MLP up (d 192), GELU (v1)" },
};

/* Random weights of dtype dt, [rows, cols]: values up to `amp`; INT8 with per-row scales amp / 127 * [0.5, 1.5]
 * (*scale), else *scale = NULL. */
static void *rand_w(em_rng *r, em_dtype dt, uint32_t rows, uint32_t cols, float amp, float **scale) {
    const size_t n = (size_t)rows * cols;
    *scale = NULL;
    if (dt == EM_DTYPE_F32) {
        float *w = em_xmalloc(n * sizeof *w);
        em_fill_uniform(r, w, n, amp);
        return w;
    }
    if (dt == EM_DTYPE_BF16) {
        uint16_t *w = em_xmalloc(n * sizeof *w);
        for (size_t i = 0; i < n; i++) w[i] = em_f32_to_bf16(em_rng_uniform(r, amp));
        return w;
    }
    int8_t *q = em_xmalloc(n);
    for (size_t i = 0; i < n; i++) q[i] = (int8_t)((int)(em_rng_u32(r) % 255) - 127);
    float *s = em_xmalloc(rows * sizeof *s);
    for (uint32_t i = 0; i < rows; i++) s[i] = amp / 127.0f * (1.0f + 0.5f * em_rng_uniform(r, 1.0f));
    *scale = s;
    return q;
}

static size_t w_bytes(em_dtype dt, uint32_t rows, uint32_t cols) {
    return (size_t)rows * cols * (dt == EM_DTYPE_F32 ? 4 : dt == EM_DTYPE_BF16 ? 2 : 1);
}

static void run_add(const add_case *c, em_rng *r, uint32_t flags) {
    float *scale;
    void *w = rand_w(r, c->dt, c->n_out, c->n_in, 1.0f / sqrtf((float)c->n_in), &scale);
    const size_t nx = (size_t)c->n_tok * c->n_in, ny = (size_t)c->n_tok * c->n_out;
    float *x = em_xmalloc(nx * 4), *y0 = em_xmalloc(ny * 4), *ref = em_xmalloc(ny * 4), *got = em_xmalloc(ny * 4);
    em_fill_uniform(r, x, nx, 1.0f);
    em_fill_uniform(r, y0, ny, 1.0f);
    memcpy(ref, y0, ny * 4);
    em_linear_args a = { .w = w, .w_dtype = c->dt, .w_scale = scale, .x = x, .y = ref, .n_tok = c->n_tok,
                         .n_in = c->n_in, .n_out = c->n_out, .flags = EM_LINEAR_ADD };
    em_ref_linear(&a);
    void *dw = em_gpu_dup(w, w_bytes(c->dt, c->n_out, c->n_in));
    float *ds = scale ? em_gpu_dup(scale, c->n_out * 4) : NULL, *dx = em_gpu_dup(x, nx * 4), *dy = em_gpu_dup(y0, ny * 4);
    double e = INFINITY;
    if (dw && dx && dy && (!scale || ds)) {
        a.w = dw; a.w_scale = ds; a.x = dx; a.y = dy; a.flags = EM_LINEAR_ADD | flags;
        CHECK(em_cuda_linear_supported(&a));
        em_status s = em_cuda_linear(&a, NULL);
        if (s == EM_OK) s = em_cuda_sync(NULL);
        CHECK_MSG(s == EM_OK, "%s: %s", c->what, em_last_error());
        if (s == EM_OK && em_gpu_fetch(got, dy, ny * 4)) e = em_max_rel_err(got, ref, ny, NULL);
    }
    CHECK_MSG(e <= TOL, "%s%s: y += W x: max rel err %.3g", c->what, flags ? " (PDL)" : "", e);
    printf("  add  %-46s %-5s max rel err %.2e  %s\n", c->what, flags ? "PDL" : "plain", e, e <= TOL ? "ok" : "FAIL");
    void *const dev[] = { dw, ds, dx, dy };
    for (size_t k = 0; k < LEN(dev); k++) if (dev[k]) em_cuda_free(dev[k]);
    free(w); free(scale); free(x); free(y0); free(ref); free(got);
}

static void run_act(const act_case *c, em_rng *r, uint32_t flags) {
    float *scale;
    void *w = rand_w(r, c->dt, c->n_out, c->n_in, 1.0f / sqrtf((float)c->n_in), &scale);
    float *x = em_xmalloc(c->n_in * 4), *nw = em_xmalloc(c->n_in * 4), *ref = em_xmalloc(c->n_out * 4);
    float *got = em_xmalloc(c->n_out * 4);
    em_fill_uniform(r, x, c->n_in, 2.0f); /* values past +-1: GELU's and SiLU's curved parts, relu^2's zeros */
    for (uint32_t i = 0; i < c->n_in; i++) nw[i] = 1.0f + em_rng_uniform(r, 0.2f);
    em_poison(ref, c->n_out);
    em_norm_linear_args a = { .x = x, .norm_w = nw, .eps = 1e-5f, .w = w, .w_dtype = c->dt, .w_scale = scale,
                              .y = ref, .n_in = c->n_in, .n_out = c->n_out, .act = c->act };
    em_ref_norm_linear(&a);
    void *dw = em_gpu_dup(w, w_bytes(c->dt, c->n_out, c->n_in));
    float *ds = scale ? em_gpu_dup(scale, c->n_out * 4) : NULL, *dx = em_gpu_dup(x, c->n_in * 4);
    float *dn = em_gpu_dup(nw, c->n_in * 4), *dy = em_gpu_poisoned(c->n_out * 4);
    double e = INFINITY;
    if (dw && dx && dn && dy && (!scale || ds)) {
        a.w = dw; a.w_scale = ds; a.x = dx; a.norm_w = dn; a.y = dy; a.flags = flags;
        CHECK(em_cuda_norm_linear_supported(&a));
        em_status s = em_cuda_norm_linear(&a, NULL);
        if (s == EM_OK) s = em_cuda_sync(NULL);
        CHECK_MSG(s == EM_OK, "%s: %s", c->what, em_last_error());
        if (s == EM_OK && em_gpu_fetch(got, dy, c->n_out * 4)) e = em_max_rel_err(got, ref, c->n_out, NULL);
    }
    CHECK_MSG(e <= TOL, "%s%s: norm_linear with activation: max rel err %.3g", c->what, flags ? " (PDL)" : "", e);
    printf("  act  %-46s %-5s max rel err %.2e  %s\n", c->what, flags ? "PDL" : "plain", e, e <= TOL ? "ok" : "FAIL");
    void *const dev[] = { dw, ds, dx, dn, dy };
    for (size_t k = 0; k < LEN(dev); k++) if (dev[k]) em_cuda_free(dev[k]);
    free(w); free(scale); free(x); free(nw); free(ref); free(got);
}

/* What the launchers refuse (16-byte aligned fake pointers: never dereferenced, the checks come first). */
static void check_refusals(void) {
    float *fake = (float *)(uintptr_t)0x100000;
    em_norm_linear_args n = { .x = fake, .norm_w = fake, .w = fake, .w_dtype = EM_DTYPE_BF16, .y = fake, .n_in = 64,
                              .n_out = 64, .act = EM_ACT_GELU };
    CHECK(em_cuda_norm_linear_supported(&n)); /* an activation alone: taken */
    n.act = EM_ACT_SILU + 1;
    CHECK(!em_cuda_norm_linear_supported(&n));
    CHECK(em_cuda_norm_linear(&n, NULL) == EM_ERR_INVALID_ARG);
    n.act = EM_ACT_GELU; /* with the conv epilogue */
    n.conv_state = fake; n.conv_w = fake; n.conv_off = 0; n.conv_dim = 32; n.K = 4;
    CHECK(!em_cuda_norm_linear_supported(&n));
    n.w_dtype = EM_DTYPE_I8; n.w_scale = fake;
    CHECK(!em_cuda_norm_linear_supported(&n));
    CHECK(em_cuda_norm_linear(&n, NULL) == EM_ERR_INVALID_ARG);
    n.act = EM_ACT_NONE;
    CHECK(em_cuda_norm_linear_supported(&n)); /* the Mamba in_proj form stays */
    em_linear_args g = { .w = fake, .w_dtype = EM_DTYPE_BF16, .x = fake, .y = fake, .n_tok = 64, .n_in = 64,
                         .n_out = 64 };
    CHECK(em_cuda_gemm_supported(&g));
    g.flags = EM_LINEAR_ADD;
    CHECK(!em_cuda_gemm_supported(&g)); /* y += W x is the GEMVs' only */
}

int main(int argc, char **argv) {
    em_gpu_env env;
    em_gpu_test_init("test_aux_fused_cuda", argc, argv, &env);
    em_rng rng;
    em_rng_seed(&rng, 20261123u);
    check_refusals();
    for (size_t i = 0; i < LEN(add_cases); i++) {
        run_add(&add_cases[i], &rng, 0);
        run_add(&add_cases[i], &rng, EM_LINEAR_W_CONST);
    }
    for (size_t i = 0; i < LEN(act_cases); i++) {
        run_act(&act_cases[i], &rng, 0);
        run_act(&act_cases[i], &rng, EM_LINEAR_W_CONST);
    }
    return em_test_finish("test_aux_fused_cuda");
}
