/*
 * test_int8_ref.c — the float32 twins' INT8 path (issue 10): em_ref_linear with w_dtype EM_DTYPE_I8 and
 * per-row w_scale, and em_ref_mlp with up_scale / down_scale, against a double-precision evaluation of the
 * definition y[t][r] = (sum_k x[t][k] q[r][k]) * scale[r] (an independent loop, not the twin's blocking).
 * Shapes cover the twin's 4-row blocks and 512-wide chunks with remainders, strided x / y (the padding must
 * stay NaN), n_tok 1 (decode) to 9, a zero row (scale 0) and rows of +-127. The error is fp32 accumulation
 * against double, so the limit is 1e-5 relative to max |ref|; each case prints its figure.
 * Run: ctest -R test_int8_ref (label unit).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h"
#include "ops.h"
#include "quant.h"
#include "testutil.h"

#define TOL 1e-5

typedef struct lcase { uint32_t n_out, n_in, n_tok, x_pad, y_pad; const char *what; } lcase;
static const lcase cases[] = {
    { 37,  1000, 1, 0, 0, "decode, odd rows, two chunks with a remainder" },
    { 64,  512,  3, 5, 3, "one whole chunk, strided x and y" },
    { 130, 1536, 9, 0, 7, "three chunks, n_tok 9" },
    { 5,   7,    2, 1, 0, "tiny rows (scalar tails only)" },
};

static double ref_dot_i8(const float *x, const int8_t *q, uint32_t n) {
    double s = 0;
    for (uint32_t k = 0; k < n; k++) s += (double)x[k] * (double)q[k];
    return s;
}

static void test_linear(void) {
    em_rng r;
    em_rng_seed(&r, 1010);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const lcase *L = &cases[c];
        const uint32_t xs = L->n_in + L->x_pad, ys = L->n_out + L->y_pad;
        float *wf = malloc(sizeof(float) * L->n_out * L->n_in), *sc = malloc(sizeof(float) * L->n_out);
        int8_t *q = malloc((size_t)L->n_out * L->n_in);
        float *x = malloc(sizeof(float) * L->n_tok * xs), *y = malloc(sizeof(float) * L->n_tok * ys);
        float *ref = malloc(sizeof(float) * L->n_tok * L->n_out), *got = malloc(sizeof(float) * L->n_tok * L->n_out);
        em_fill_uniform(&r, wf, (size_t)L->n_out * L->n_in, 0.05f);
        for (uint32_t k = 0; k < L->n_in; k++) wf[k] = 0.0f;                        /* row 0: zero (scale 0) */
        if (L->n_out > 2) for (uint32_t k = 0; k < L->n_in; k++) wf[2 * L->n_in + k] = k % 2 ? 1.0f : -1.0f; /* +-127 */
        CHECK_STATUS(em_quant_i8_f32(wf, L->n_out, L->n_in, q, sc), EM_OK);
        em_fill_uniform(&r, x, (size_t)L->n_tok * xs, 1.0f);
        em_poison(y, (size_t)L->n_tok * ys);
        em_linear_args a = { .w = q, .w_dtype = EM_DTYPE_I8, .w_scale = sc, .x = x, .y = y, .n_tok = L->n_tok,
                             .n_in = L->n_in, .n_out = L->n_out, .x_stride = L->x_pad ? xs : 0,
                             .y_stride = L->y_pad ? ys : 0 };
        em_ref_linear(&a);
        int pad_written = 0;
        for (uint32_t t = 0; t < L->n_tok; t++) {
            for (uint32_t o = 0; o < L->n_out; o++) {
                ref[t * L->n_out + o] = (float)(ref_dot_i8(x + (size_t)t * xs, q + (size_t)o * L->n_in, L->n_in) *
                                                (double)sc[o]);
                got[t * L->n_out + o] = y[(size_t)t * ys + o];
            }
            for (uint32_t o = L->n_out; o < ys; o++) pad_written += !isnan(y[(size_t)t * ys + o]);
        }
        char label[160];
        snprintf(label, sizeof label, "linear i8 %ux%u n_tok %u (%s)", L->n_out, L->n_in, L->n_tok, L->what);
        const double err = em_max_rel_err(got, ref, (size_t)L->n_tok * L->n_out, NULL);
        em_check_close(label, got, ref, (size_t)L->n_tok * L->n_out, TOL);
        CHECK_MSG(pad_written == 0, "%s: %d padding elements written", label, pad_written);
        CHECK_MSG(got[0] == 0.0f, "%s: the zero row gave %g", label, (double)got[0]);
        printf("%-80s max rel err %.2e (tol %.0e)\n", label, err, TOL);
        free(wf); free(sc); free(q); free(x); free(y); free(ref); free(got);
    }
}

/* MLP with both projections int8: h = act(up x), y = down h; the reference in double with the same act. */
static void test_mlp(void) {
    em_rng r;
    em_rng_seed(&r, 1011);
    const uint32_t d = 96, ff = 200, nt = 3;
    float *up = malloc(sizeof(float) * ff * d), *dn = malloc(sizeof(float) * d * ff);
    int8_t *qu = malloc((size_t)ff * d), *qd = malloc((size_t)d * ff);
    float *su = malloc(sizeof(float) * ff), *sd = malloc(sizeof(float) * d);
    float *x = malloc(sizeof(float) * nt * d), *h = malloc(sizeof(float) * nt * ff), *y = malloc(sizeof(float) * nt * d);
    float *ref = malloc(sizeof(float) * nt * d);
    double *hr = malloc(sizeof(double) * ff);
    em_fill_uniform(&r, up, (size_t)ff * d, 0.1f);
    em_fill_uniform(&r, dn, (size_t)d * ff, 0.07f);
    em_fill_uniform(&r, x, (size_t)nt * d, 1.0f);
    CHECK_STATUS(em_quant_i8_f32(up, ff, d, qu, su), EM_OK);
    CHECK_STATUS(em_quant_i8_f32(dn, d, ff, qd, sd), EM_OK);
    const uint32_t acts[3] = {EM_ACT_GELU, EM_ACT_RELU2, EM_ACT_SILU};
    for (int ai = 0; ai < 3; ai++) {
        em_poison(y, (size_t)nt * d);
        em_mlp_args a = { .up = qu, .up_dtype = EM_DTYPE_I8, .up_scale = su, .down = qd, .down_dtype = EM_DTYPE_I8,
                          .down_scale = sd, .x = x, .h = h, .y = y, .n_tok = nt, .d = d, .d_ff = ff, .act = acts[ai] };
        em_ref_mlp(&a);
        for (uint32_t t = 0; t < nt; t++) {
            for (uint32_t j = 0; j < ff; j++) {
                double v = ref_dot_i8(x + (size_t)t * d, qu + (size_t)j * d, d) * su[j];
                hr[j] = acts[ai] == EM_ACT_GELU ? 0.5 * v * (1 + erf(v / sqrt(2.0)))
                        : acts[ai] == EM_ACT_RELU2 ? (v > 0 ? v * v : 0)
                                                   : v / (1 + exp(-v));
            }
            for (uint32_t o = 0; o < d; o++) {
                double s = 0;
                for (uint32_t j = 0; j < ff; j++) s += hr[j] * (double)qd[(size_t)o * ff + j];
                ref[t * d + o] = (float)(s * sd[o]);
            }
        }
        char label[64];
        snprintf(label, sizeof label, "mlp i8, act %u", acts[ai]);
        const double err = em_max_rel_err(y, ref, (size_t)nt * d, NULL);
        em_check_close(label, y, ref, (size_t)nt * d, TOL);
        printf("%-80s max rel err %.2e (tol %.0e)\n", label, err, TOL);
    }
    free(up); free(dn); free(qu); free(qd); free(su); free(sd); free(x); free(h); free(y); free(ref); free(hr);
}

int main(void) {
    test_linear();
    test_mlp();
    return em_test_finish("test_int8_ref");
}
