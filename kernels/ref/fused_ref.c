/*
 * fused_ref.c — float32 C twins of the decode step's fused ops (kernels/ops.h: em_norm_linear_args,
 * em_gated_linear_args), written as the composition of the single-op twins they replace, so that the fused CUDA
 * kernels are checked against exactly what the unfused step computes (tests/test_ref_fused.c proves the
 * composition equals the unfused chain; tests/test_fused_cuda.c compares the kernels with these twins).
 * Weights: BF16, F32 or I8 with per-row scales (w_scale): em_ref_linear takes all three, so the INT8 fused kernels
 * (kernels/linear_i8.cu) have the same twins.
 * Scratch: the twins allocate their temporaries (they are the test-side truth, never on a decode path).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blob.h" /* em_mlp_act */
#include "ops.h"
#include "util.h"

void em_ref_norm_linear(const em_norm_linear_args *a) {
    float *xn = malloc(sizeof(float) * a->n_in), *x = malloc(sizeof(float) * a->n_in);
    EM_ASSERT(xn && x);
    memcpy(x, a->x, sizeof(float) * a->n_in); /* rmsnorm's x is in/out: the fused op never writes it */
    em_rmsnorm_args na = { .x = x, .delta = NULL, .w = a->norm_w, .y = xn, .n_tok = 1, .d = a->n_in, .eps = a->eps };
    em_ref_rmsnorm(&na);
    em_linear_args la = { .w = a->w, .w_dtype = a->w_dtype, .w_scale = a->w_scale, .x = xn, .y = a->y, .n_tok = 1,
                          .n_in = a->n_in, .n_out = a->n_out };
    em_ref_linear(&la);
    EM_ASSERT(a->act == EM_ACT_NONE || a->conv_dim == 0);
    em_ref_act(a->y, a->n_out, a->act);
    if (a->conv_dim) {
        EM_ASSERT(a->conv_off + a->conv_dim <= a->n_out);
        /* y may alias x with the same stride in em_ref_conv1d: the conv is applied in place */
        em_conv1d_args ca = { .x = a->y + a->conv_off, .state = a->conv_state, .w = a->conv_w, .b = a->conv_b,
                              .y = a->y + a->conv_off, .n_tok = 1, .C = a->conv_dim, .K = a->K, .silu = EM_SILU_ON };
        em_ref_conv1d(&ca);
    }
    free(xn);
    free(x);
}

void em_ref_gated_linear(const em_gated_linear_args *a) {
    EM_ASSERT(a->group > 0 && a->P > 0 && a->group % a->P == 0 && a->n_in % a->group == 0);
    float *xg = malloc(sizeof(float) * a->n_in), *d = malloc(sizeof(float) * a->n_out);
    EM_ASSERT(xg && d);
    const uint32_t hpg = a->group / a->P; /* heads per norm group */
    for (uint32_t g = 0; g < a->n_in / a->group; g++) {
        float ss = 0.0f;
        for (uint32_t h = 0; h < hpg; h++) ss += a->sumsq[g * hpg + h];
        const float rstd = 1.0f / sqrtf(ss / (float)a->group + a->eps);
        for (uint32_t i = g * a->group; i < (g + 1) * a->group; i++) xg[i] = a->norm_w[i] * (a->y[i] * rstd);
    }
    em_linear_args la = { .w = a->w, .w_dtype = a->w_dtype, .w_scale = a->w_scale, .x = xg, .y = d, .n_tok = 1,
                          .n_in = a->n_in, .n_out = a->n_out };
    em_ref_linear(&la);
    for (uint32_t i = 0; i < a->n_out; i++) a->x[i] += d[i];
    free(xg);
    free(d);
}
