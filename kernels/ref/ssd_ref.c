/*
 * ssd_ref.c — float32 C twin of the Mamba-2 SSD chunked scan (em_ssd_args in kernels/ops.h): the prompt form of
 * the selective state space scan whose sequential twin is em_ref_ssm (kernels/ref/ssm_ref.c). The CUDA kernels
 * (kernels/ssd.cu) compute exactly these formulas, in phases over all chunks at once; this twin walks the chunks
 * in order, so it needs no workspace. Tested by tests/test_ssd_ref.c against em_ref_ssm (an independent,
 * token-by-token formulation); docs/prefill.md has the derivation.
 *
 * For head h (B/C group g = h / (H / G)) and a chunk of tokens c0 .. c0+L-1 (L <= chunk), with i, s the
 * positions inside the chunk:
 *   dt[i]  = clamp(softplus(dt_raw[c0+i][h] + dt_bias[h]))          as em_ref_ssm (same functions)
 *   cum[i] = sum_{j <= i} dt[j] * A[h]                               cumulative log-decay (<= 0, decreasing)
 *   intra  y[i][p] = sum_{s <= i} exp(cum[i] - cum[s]) * (C[i] . B[s]) * dt[s] * x[s][p]
 *   inter  y[i][p] += exp(cum[i]) * sum_n S_in[p][n] * C[i][n]        S_in: the state entering the chunk
 *          y[i][p] += D[h] * x[i][p]
 *   chunk state    S_loc[p][n] = sum_s exp(cum[L-1] - cum[s]) * dt[s] * x[s][p] * B[s][n]
 *   the pass       S_out = exp(cum[L-1]) * S_in + S_loc                  (S_out enters the next chunk)
 * Unrolling em_ref_ssm's S_t = exp(dt_t A) S_{t-1} + dt_t x_t B_t^T over the chunk gives the same sums, since
 * prod_{s < j <= i} exp(dt_j A) = exp(cum[i] - cum[s]): equal up to rounding (the products of exps become one
 * exp of a difference of sums). This mirrors ssd_minimal_discrete in state-spaces/mamba (mamba_ssm/modules/
 * ssd_minimal.py: segsum, the four steps) and mamba_chunk_scan_combined, with the state passed in and out.
 */
#include <math.h>
#include <stdint.h>

#include "ops.h"
#include "util.h"

#ifdef EM_HAVE_OPENMP
#include <omp.h>
#endif

/* One head over all chunks: the head's state and outputs are independent of every other head. */
static void ssd_head(const em_ssd_args *a, uint32_t h, uint32_t Q, size_t xs, size_t dts, size_t bcs, size_t ys,
                     int clamp) {
    const uint32_t P = a->P, N = a->N, g = h / (a->H / a->G);
    float *S = a->state + (size_t)h * P * N; /* [P, N] */
    const float Ah = a->A[h], Dh = a->D[h], bias = a->dt_bias[h];
    float dtv[EM_SSD_MAX_CHUNK], cum[EM_SSD_MAX_CHUNK], w[EM_SSD_MAX_CHUNK];

    for (uint32_t c0 = 0; c0 < a->n_tok; c0 += Q) {
        const uint32_t L = a->n_tok - c0 < Q ? a->n_tok - c0 : Q;
        // 1. dt and the cumulative log-decay of the chunk
        float run = 0.0f;
        for (uint32_t i = 0; i < L; i++) {
            float d = em_softplus_f(a->dt[(c0 + i) * dts + h] + bias);
            if (clamp) d = fminf(fmaxf(d, a->dt_min), a->dt_max);
            dtv[i] = d;
            run += d * Ah;
            cum[i] = run;
        }
        // 2. outputs: intra-chunk (decay-masked C.B^T applied to dt x), inter-chunk (C . S_in), D x
        for (uint32_t i = 0; i < L; i++) {
            const float *Ci = a->C + (c0 + i) * bcs + (size_t)g * N; /* [N] */
            for (uint32_t s = 0; s <= i; s++) {
                const float *Bs = a->B + (c0 + s) * bcs + (size_t)g * N; /* [N] */
                float cb = 0.0f;
                for (uint32_t n = 0; n < N; n++) cb += Ci[n] * Bs[n];
                w[s] = expf(cum[i] - cum[s]) * cb * dtv[s];
            }
            const float ec = expf(cum[i]);
            const float *xi = a->x + (c0 + i) * xs + (size_t)h * P; /* [P] */
            float *yi = a->y + (c0 + i) * ys + (size_t)h * P;       /* [P] */
            for (uint32_t p = 0; p < P; p++) {
                float intra = 0.0f;
                for (uint32_t s = 0; s <= i; s++) intra += w[s] * a->x[(c0 + s) * xs + (size_t)h * P + p];
                const float *Sp = S + (size_t)p * N;
                float inter = 0.0f;
                for (uint32_t n = 0; n < N; n++) inter += Sp[n] * Ci[n];
                yi[p] = intra + ec * inter + Dh * xi[p];
            }
        }
        // 3. the chunk's own state and the pass: S = exp(cum[L-1]) S + sum_s exp(cum[L-1] - cum[s]) dt[s] x[s] B[s]^T
        for (uint32_t s = 0; s < L; s++) w[s] = expf(cum[L - 1] - cum[s]) * dtv[s];
        const float decay = expf(cum[L - 1]);
        for (uint32_t p = 0; p < P; p++) {
            float *Sp = S + (size_t)p * N;
            for (uint32_t n = 0; n < N; n++) {
                float loc = 0.0f;
                for (uint32_t s = 0; s < L; s++)
                    loc += w[s] * a->x[(c0 + s) * xs + (size_t)h * P + p] * a->B[(c0 + s) * bcs + (size_t)g * N + n];
                Sp[n] = decay * Sp[n] + loc;
            }
        }
    }
}

void em_ref_ssd(const em_ssd_args *a) {
    const uint32_t H = a->H, P = a->P, N = a->N, G = a->G;
    const uint32_t Q = a->chunk ? a->chunk : EM_SSD_CHUNK;
    EM_ASSERT(G > 0 && H % G == 0);
    EM_ASSERT(Q >= 1 && Q <= EM_SSD_MAX_CHUNK);
    EM_ASSERT(a->dt_max > 0.0f && a->dt_min <= a->dt_max); /* catches an args struct left zeroed */
    const size_t xs = a->x_stride ? a->x_stride : (size_t)H * P;
    const size_t dts = a->dt_stride ? a->dt_stride : H;
    const size_t bcs = a->bc_stride ? a->bc_stride : (size_t)G * N;
    const size_t ys = a->y_stride ? a->y_stride : (size_t)H * P;
    EM_ASSERT(xs >= (size_t)H * P && ys >= (size_t)H * P && dts >= H && bcs >= (size_t)G * N);
    const int clamp = !(a->dt_min == 0.0f && isinf(a->dt_max)); /* (0, +inf) = no clamp, as em_ref_ssm */
    if (a->n_tok == 0) return;

#ifdef EM_HAVE_OPENMP /* heads are independent; each is computed by one thread in a fixed order */
    const int par = (uint64_t)a->n_tok * H * P * N >= (1u << 20);
#pragma omp parallel for schedule(static) if (par)
#endif
    for (int64_t h = 0; h < (int64_t)H; h++) ssd_head(a, (uint32_t)h, Q, xs, dts, bcs, ys, clamp);
}
