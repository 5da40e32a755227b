/*
 * test_ssd_ref.c — proves that the chunked SSD twin em_ref_ssd (kernels/ref/ssd_ref.c) computes the Mamba-2 scan:
 * its outputs y and its final state equal those of em_ref_ssm (kernels/ref/ssm_ref.c), the independent
 * token-by-token recurrence, over the same tokens from the same NONZERO initial state, for prompt lengths on both
 * sides of the chunk edges (1, 2, 63, 64, 65, 127, 128, 129, 300), chunk sizes 64, 128, 256 and odd ones, the
 * model shapes and strided layouts. Also: n_tok 0 touches nothing; two calls (prompt split in two) equal one.
 *
 * Bound, max relative error (max|got - ref| / max|ref|) <= 2e-5 for y and for the state. Both sides are fp32 over
 * identical inputs; they differ in (a) the decay: em_ref_ssm multiplies up to `chunk` factors exp(dt A) (one
 * rounding each, so ~chunk/2 ulp of relative error on the oldest terms), the twin takes exp of a difference of
 * cumulative sums cum[i] - cum[s], whose rounding is ~ulp(|cum|) absolute in the exponent: |cum| stays below
 * ~50 with these inputs (dt <= 0.5 after softplus, |A| <= 16, but terms with cum[i] - cum[s] < -17 weigh < 4e-8
 * and do not count), so ~50 * 6e-8 = 3e-6 relative; (b) summation order over n, s and p (a few ulp times the
 * sqrt of the term count, cancellation among random-sign terms amplifying it a few times). 2e-5 is ~7x the worst
 * measured, 3.0e-6 (printed per case) and still far below what any algorithmic slip gives (a wrong mask, a missing
 * decay or a stale state is O(1e-2 .. 1)).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "testutil.h"

#define TOL 2e-5
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

typedef struct ssd_case {
    uint32_t H, P, N, G, chunk;
    uint32_t pad;   /* extra elements per row of x|B|C, dt and y (strided layouts) */
    int big_dt;     /* dt_bias such that softplus gives dt up to ~0.5 (fast decay), else 0.001..0.1 (models) */
    int clamp;      /* dt limits (0.001, 0.1) */
    const char *what;
} ssd_case;

static const ssd_case cases[] = {
    { 8, 16, 16, 2, 64, 0, 0, 0, "tiny fixture shape (tests/data/mamba2_tiny), chunk 64" },
    { 8, 16, 16, 2, 128, 3, 1, 0, "tiny fixture shape, chunk 128, strided, fast decay" },
    { 6, 64, 64, 2, 128, 0, 0, 0, "bundled models/mamba2 shape, chunk 128" },
    { 6, 64, 64, 2, 256, 0, 1, 1, "models/mamba2 shape, chunk 256, dt clamped" },
    { 16, 64, 128, 2, 64, 5, 0, 0, "8B head shape (P 64, N 128), 16 heads, chunk 64, strided" },
    { 3, 5, 7, 1, 7, 1, 1, 0, "odd sizes, chunk 7" },
    { 4, 8, 16, 4, 1, 0, 0, 0, "chunk 1 (every token its own chunk)" },
};
static const uint32_t lengths[] = { 1, 2, 63, 64, 65, 127, 128, 129, 300 };

static double run(const ssd_case *c, uint32_t nt, em_rng *rng, int split) {
    const uint32_t H = c->H, P = c->P, N = c->N, G = c->G, HP = H * P, GN = G * N;
    const uint32_t xs = HP + 2 * GN + c->pad, dts = H + c->pad, ys = HP + c->pad; /* x | B | C in one row */
    const size_t ns = (size_t)HP * N;
    float *xbc = malloc(sizeof(float) * (size_t)nt * xs + 4), *dt = malloc(sizeof(float) * (size_t)nt * dts + 4);
    float *A = malloc(H * 4), *D = malloc(H * 4), *dtb = malloc(H * 4);
    float *s_ref = malloc(ns * 4), *s_got = malloc(ns * 4);
    float *y_ref = malloc(sizeof(float) * (size_t)nt * ys + 4), *y_got = malloc(sizeof(float) * (size_t)nt * ys + 4);
    em_fill_uniform(rng, xbc, (size_t)nt * xs, 1.0f);
    em_fill_uniform(rng, dt, (size_t)nt * dts, 1.0f);
    for (uint32_t h = 0; h < H; h++) {
        A[h] = -expf((em_rng_uniform(rng, 0.5f) + 0.5f) * logf(16.0f)); /* -exp(A_log), A_log in [0, log 16) */
        D[h] = em_rng_uniform(rng, 1.0f);
        /* softplus(raw + bias), raw in [-1, 1): bias -5.5 +- 1.5 -> dt ~ 0.001 .. 0.05; big: -1.5 +- 1 -> ~0.1 .. 0.5 */
        dtb[h] = c->big_dt ? -1.5f + em_rng_uniform(rng, 1.0f) : -5.5f + em_rng_uniform(rng, 1.5f);
    }
    em_fill_uniform(rng, s_ref, ns, 1.0f); /* a nonzero state, as after an earlier prompt */
    memcpy(s_got, s_ref, ns * 4);
    em_poison(y_ref, (size_t)nt * ys);
    em_poison(y_got, (size_t)nt * ys);

    em_ssd_args a = { .x = xbc, .dt = dt, .B = xbc + HP, .C = xbc + HP + GN, .A = A, .D = D, .dt_bias = dtb,
                      .state = s_got, .y = y_got, .n_tok = nt, .H = H, .P = P, .N = N, .G = G, .x_stride = xs,
                      .dt_stride = dts, .bc_stride = xs, .y_stride = ys, .dt_min = c->clamp ? 0.001f : 0.0f,
                      .dt_max = c->clamp ? 0.1f : INFINITY, .chunk = c->chunk };
    em_ssm_args r = em_ssd_as_ssm(&a);
    r.state = s_ref;
    r.y = y_ref;
    em_ref_ssm(&r);
    if (split && nt >= 2) { /* the prompt in two calls: the state carries over, as prompt chunks do */
        em_ssd_args a2 = a;
        const uint32_t n1 = nt / 3 + 1;
        a.n_tok = n1;
        em_ref_ssd(&a);
        a2.n_tok = nt - n1;
        a2.x += (size_t)n1 * xs;
        a2.B += (size_t)n1 * xs;
        a2.C += (size_t)n1 * xs;
        a2.dt += (size_t)n1 * dts;
        a2.y += (size_t)n1 * ys;
        em_ref_ssd(&a2);
    } else {
        em_ref_ssd(&a);
    }

    /* y: the dense part compared, the padding must still be NaN (never written) */
    float *yg = malloc(sizeof(float) * (size_t)nt * HP), *yr = malloc(sizeof(float) * (size_t)nt * HP);
    size_t pad_written = 0;
    for (uint32_t t = 0; t < nt; t++) {
        memcpy(yg + (size_t)t * HP, y_got + (size_t)t * ys, HP * 4);
        memcpy(yr + (size_t)t * HP, y_ref + (size_t)t * ys, HP * 4);
        for (uint32_t j = HP; j < ys; j++) pad_written += !isnan(y_got[(size_t)t * ys + j]);
    }
    char label[200];
    snprintf(label, sizeof label, "%s, n_tok %u%s", c->what, nt, split ? " (two calls)" : "");
    const double ey = em_max_rel_err(yg, yr, (size_t)nt * HP, NULL), es = em_max_rel_err(s_got, s_ref, ns, NULL);
    em_check_close(label, yg, yr, (size_t)nt * HP, TOL);
    char ls[220];
    snprintf(ls, sizeof ls, "%s: final state", label);
    em_check_close(ls, s_got, s_ref, ns, TOL);
    CHECK_MSG(pad_written == 0, "%s: %zu elements written in y's row padding", label, pad_written);
    free(xbc), free(dt), free(A), free(D), free(dtb), free(s_ref), free(s_got), free(y_ref), free(y_got);
    free(yg), free(yr);
    return ey > es ? ey : es;
}

int main(void) {
    em_rng rng;
    em_rng_seed(&rng, 8080);
    double worst = 0.0;
    for (size_t i = 0; i < LEN(cases); i++) {
        double cw = 0.0;
        for (size_t j = 0; j < LEN(lengths); j++) {
            const double e = run(&cases[i], lengths[j], &rng, 0);
            cw = e > cw ? e : cw;
        }
        const double e = run(&cases[i], 300, &rng, 1);
        cw = e > cw ? e : cw;
        printf("  %-62s H %2u P %2u N %3u G %u chunk %3u: worst rel err (y, state) over n_tok 1..300 %.2e\n",
               cases[i].what, cases[i].H, cases[i].P, cases[i].N, cases[i].G, cases[i].chunk, cw);
        worst = cw > worst ? cw : worst;
    }
    printf("worst %.2e (limit %.0e)\n", worst, TOL);

    /* n_tok 0: nothing read, nothing written (NULL inputs are never touched) */
    float st[4] = { 1, 2, 3, 4 }, A1 = -1.0f, D1 = 0.0f, b1 = 0.0f;
    em_ssd_args z = { .A = &A1, .D = &D1, .dt_bias = &b1, .state = st, .n_tok = 0, .H = 1, .P = 2, .N = 2, .G = 1,
                      .dt_max = INFINITY };
    em_ref_ssd(&z);
    CHECK(st[0] == 1 && st[1] == 2 && st[2] == 3 && st[3] == 4);
    return em_test_finish("test_ssd_ref");
}
