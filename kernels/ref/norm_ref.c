/*
 * norm_ref.c — float32 C twins of the small per-token ops (kernels/ops.h): RMSNorm with the residual add fused,
 * the Mamba-2 gated group RMSNorm, the embedding lookup and argmax. Reference for the CUDA kernels and the CPU
 * backend's implementation; tested by tests/test_ref_ops.c.
 *
 * What each mirrors:
 *   rmsnorm     HF Mamba2RMSNorm / te RMSNorm, all in fp32:
 *                 variance = hidden_states.pow(2).mean(-1, keepdim=True)
 *                 hidden_states = hidden_states * torch.rsqrt(variance + eps); return weight * hidden_states
 *               preceded by the layer's residual add `x = x + mixer(...)` (fused: x += delta, in place).
 *   gated_norm  mamba_ssm/ops/triton/layernorm_gated.py rms_norm_ref(norm_before_gate=False, group_size):
 *                 x = x * F.silu(z); rstd = 1 / sqrt(mean(x_group^2) + eps); out = (x_group * rstd) * weight
 *               group = d gives HF's MambaRMSNormGated (one group over d_inner), group = d/G Megatron's.
 *   embed       nn.Embedding: out[t] = table[tok[t]], widened to f32 exactly.
 *   argmax      torch.argmax over finite/inf values (lowest index on a tie); NaN never wins, unlike torch
 *               (where NaN is the max): greedy decoding then never emits a token from a NaN logit.
 */
#include <math.h>
#include <stdint.h>

#include "ops.h"
#include "util.h"

// ---- helpers ------------------------------------------------------------------------------------------

/* sum of squares with 8 partial sums: vectorisable without -ffast-math, fixed order (deterministic) */
static float sumsq8(const float *x, uint32_t n) {
    float s[8] = {0};
    const uint32_t n8 = n & ~7u; /* this loop shape vectorises at -O2 (see linear_ref.c) */
    for (uint32_t i = 0; i < n8; i += 8)
        for (int k = 0; k < 8; k++) s[k] += x[i + k] * x[i + k];
    float tail = 0.0f;
    for (uint32_t i = n8; i < n; i++) tail += x[i] * x[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail;
}

// ---- RMSNorm (+ residual) -----------------------------------------------------------------------------

void em_ref_rmsnorm(const em_rmsnorm_args *a) {
    const uint32_t d = a->d;
    if (d == 0) return;
    for (uint32_t t = 0; t < a->n_tok; t++) {
        float *x = a->x + (size_t)t * d;                                /* [d] residual, updated */
        const float *dl = a->delta ? a->delta + (size_t)t * d : NULL;   /* [d] or NULL */
        float *y = a->y + (size_t)t * d;                                /* [d] */
        if (dl)
            for (uint32_t i = 0; i < d; i++) x[i] += dl[i];
        const float rstd = 1.0f / sqrtf(sumsq8(x, d) / (float)d + a->eps);
        /* (x * rstd) first, then * w: HF's order (the weight multiplies the normalised value) */
        for (uint32_t i = 0; i < d; i++) y[i] = a->w[i] * (x[i] * rstd);
    }
}

// ---- gated group RMSNorm ------------------------------------------------------------------------------

void em_ref_gated_norm(const em_gated_norm_args *a) {
    const uint32_t d = a->d, gs = a->group;
    EM_ASSERT(gs > 0 && d % gs == 0);
    const size_t ys = a->y_stride ? a->y_stride : d;
    const size_t zs = a->z_stride ? a->z_stride : d;
    const size_t os = a->out_stride ? a->out_stride : d;
    for (uint32_t t = 0; t < a->n_tok; t++) {
        const float *y = a->y + t * ys; /* [d] */
        const float *z = a->z + t * zs; /* [d] */
        float *out = a->out + t * os;   /* [d]; may be y itself: y[i] is read before out[i] is written */
        for (uint32_t g0 = 0; g0 < d; g0 += gs) {
            // pass 1: the gated value g = y * silu(z), parked in out; pass 2: scale it in place
            for (uint32_t i = g0; i < g0 + gs; i++) out[i] = y[i] * em_silu_f(z[i]);
            const float rstd = 1.0f / sqrtf(sumsq8(out + g0, gs) / (float)gs + a->eps);
            for (uint32_t i = g0; i < g0 + gs; i++) out[i] = a->w[i] * (out[i] * rstd);
        }
    }
}

// ---- embedding ----------------------------------------------------------------------------------------

void em_ref_embed(const em_embed_args *a) {
    const size_t d = a->d;
    for (uint32_t t = 0; t < a->n_tok; t++) {
        const size_t row = (size_t)a->tok[t] * d; /* tok in [0, vocab): checked by the caller */
        float *out = a->out + t * d;              /* [d] */
        switch (a->dtype) {
        case EM_DTYPE_F32: {
            const float *src = (const float *)a->table + row;
            for (size_t i = 0; i < d; i++) out[i] = src[i];
            break;
        }
        case EM_DTYPE_BF16: {
            const uint16_t *src = (const uint16_t *)a->table + row;
            for (size_t i = 0; i < d; i++) out[i] = em_bf16_to_f32(src[i]);
            break;
        }
        case EM_DTYPE_F16: {
            const uint16_t *src = (const uint16_t *)a->table + row;
            for (size_t i = 0; i < d; i++) out[i] = em_f16_to_f32(src[i]);
            break;
        }
        default:
            EM_ASSERT(!"embedding table dtype must be F32, BF16 or F16");
        }
    }
}

// ---- argmax -------------------------------------------------------------------------------------------

uint32_t em_ref_argmax(const float *x, uint32_t n) {
    /* strict '>' keeps the lowest index on a tie; a NaN compares false both ways, so it is never taken and
     * never blocks a later value. All-NaN (or n = 0) returns 0. */
    uint32_t best = 0;
    int have = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (isnan(x[i])) continue;
        if (!have || x[i] > x[best]) {
            best = i;
            have = 1;
        }
    }
    return best;
}
