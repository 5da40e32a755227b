/*
 * ssm_ref.c — float32 C twin of the Mamba-2 selective state space scan (em_ssm_args in kernels/ops.h), run
 * sequentially over the tokens: the prompt (n_tok tokens) and the decode step (n_tok = 1) are the same call, and
 * the state carries over between calls. Reference for the CUDA step and chunked (SSD) prefill kernels and the
 * CPU backend; tested by tests/test_ref_ops.c against the closed form and against chained single steps.
 *
 * Mirrors mamba_ssm v2.0.3 selective_state_update (ops/triton/selective_state_update.py), one token at a time,
 * for head h reading B/C group g = h / (H / G) (`repeat(B, "b g n -> b (g h) n")`):
 *   dt  = softplus(dt_raw[h] + dt_bias[h])      # threshold 20 (torch F.softplus)
 *   dt  = clamp(dt, dt_min, dt_max)             # HF torch path, only when time_step_limit != (0, inf)
 *   dA  = exp(dt * A[h])                        # A = -exp(A_log) < 0, so 0 < dA < 1
 *   S[h][p][n] = S[h][p][n] * dA + dt * x[h][p] * B[g][n]
 *   y[h][p]    = sum_n S[h][p][n] * C[g][n] + D[h] * x[h][p]
 * mamba_chunk_scan_combined (the prefill path) computes the same recurrence in chunks: equal up to rounding.
 */
#include <math.h>
#include <stdint.h>

#include "ops.h"
#include "util.h"

void em_ref_ssm(const em_ssm_args *a) {
    const uint32_t H = a->H, P = a->P, N = a->N, G = a->G;
    EM_ASSERT(G > 0 && H % G == 0);
    EM_ASSERT(a->dt_max > 0.0f && a->dt_min <= a->dt_max); /* catches an args struct left zeroed */
    const uint32_t heads_per_group = H / G;
    const size_t xs = a->x_stride ? a->x_stride : (size_t)H * P;   /* per token row of x */
    const size_t dts = a->dt_stride ? a->dt_stride : H;            /* per token row of dt */
    const size_t bcs = a->bc_stride ? a->bc_stride : (size_t)G * N; /* per token row of B and of C */
    const size_t ys = a->y_stride ? a->y_stride : (size_t)H * P;   /* per token row of y */
    const size_t zs = a->z_stride ? a->z_stride : (size_t)H * P;   /* per token row of z (gate, optional) */
    EM_ASSERT(xs >= (size_t)H * P && ys >= (size_t)H * P && dts >= H && bcs >= (size_t)G * N);
    /* (0, +inf) is torch's "no limit": skip the clamp entirely, as HF does */
    const int clamp = !(a->dt_min == 0.0f && isinf(a->dt_max));

    for (uint32_t t = 0; t < a->n_tok; t++) {
        for (uint32_t h = 0; h < H; h++) {
            const uint32_t g = h / heads_per_group;
            const float *x = a->x + t * xs + (size_t)h * P;  /* [P] */
            const float *B = a->B + t * bcs + (size_t)g * N; /* [N] */
            const float *Cv = a->C + t * bcs + (size_t)g * N; /* [N] */
            float *y = a->y + t * ys + (size_t)h * P;        /* [P] */
            float *S = a->state + (size_t)h * P * N;         /* [P, N] */

            float dt = em_softplus_f(a->dt[t * dts + h] + a->dt_bias[h]);
            if (clamp) dt = fminf(fmaxf(dt, a->dt_min), a->dt_max);
            const float dA = expf(dt * a->A[h]);

            const float *z = a->z ? a->z + t * zs + (size_t)h * P : NULL; /* [P] gate or NULL */
            float sq = 0.0f;
            for (uint32_t p = 0; p < P; p++) {
                const float dtx = dt * x[p]; /* dt * x, shared by the N state columns of this row */
                float *Sp = S + (size_t)p * N;
                float acc = 0.0f;
                for (uint32_t n = 0; n < N; n++) {
                    Sp[n] = Sp[n] * dA + dtx * B[n];
                    acc += Sp[n] * Cv[n];
                }
                float out = acc + a->D[h] * x[p];
                if (z) out *= em_silu_f(z[p]);
                sq += out * out;
                y[p] = out;
            }
            if (a->sumsq) a->sumsq[(size_t)t * H + h] = sq;
        }
    }
}
