/*
 * randinit.c — see randinit.h. Scales follow the HF initialisers where they exist (embedding std 0.02,
 * Mamba-2 A in [1, 16], dt log-uniform in [1e-3, 1e-1] through inverse softplus, D = 1, norms 1) and
 * std 1/sqrt(fan_in) for every other matrix, so activations keep their size through the layers and the
 * runtime sees realistic magnitudes. Uniform draws are used throughout (std s -> [-s*sqrt(3), s*sqrt(3)).
 */
#include "randinit.h"

#include <math.h>
#include <string.h>

#include "util.h"

#define RI_GOLDEN 0x9E3779B97F4A7C15ull

// ---- generator ---------------------------------------------------------------------------------------

/* splitmix64's finaliser: a bijective 64-bit mix; consecutive counters give independent-looking words. */
static inline uint64_t ri_mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t em_ri_key(uint64_t seed, uint32_t index) {
    return ri_mix(ri_mix(seed + RI_GOLDEN) ^ ((uint64_t)index * 0xD1B54A32D192ED03ull + 1u));
}

/* u in [0, 1) from the top 24 bits of a 32-bit draw (exact in f32). */
static inline float ri_unit(uint32_t u) { return (float)(u >> 8) * (1.0f / 16777216.0f); }

// ---- rules ------------------------------------------------------------------------------------------------

em_ri_rule em_ri_rule_for(const char *field, uint32_t n_dims, const uint64_t *shape, uint32_t d_conv) {
    em_ri_rule r = {EM_RI_CONST, 1.0f, 0.0f};
    const float sqrt3 = 1.7320508f;
    if (!strcmp(field, "norm") || !strcmp(field, "norm_f") || !strcmp(field, "gnorm") || !strcmp(field, "D"))
        return r;                                                    /* 1 */
    if (!strcmp(field, "A")) { r.kind = EM_RI_UNIFORM; r.a = -16.0f; r.b = -1.0f; return r; }
    if (!strcmp(field, "dt_bias")) { r.kind = EM_RI_DT_BIAS; r.a = 1e-3f; r.b = 1e-1f; return r; }
    if (!strcmp(field, "conv_w")) {                                  /* PyTorch Conv1d: fan_in = K */
        float a = 1.0f / sqrtf((float)(d_conv ? d_conv : 1));
        r.kind = EM_RI_UNIFORM; r.a = -a; r.b = a; return r;
    }
    if (!strcmp(field, "conv_b")) { r.kind = EM_RI_UNIFORM; r.a = -0.02f; r.b = 0.02f; return r; }
    if (!strcmp(field, "embd")) { r.kind = EM_RI_UNIFORM; r.a = -0.02f * sqrt3; r.b = 0.02f * sqrt3; return r; }
    /* every other matrix [out, in]: std 1/sqrt(in) */
    float fan_in = n_dims >= 2 && shape[1] ? (float)shape[1] : 1.0f;
    float a = sqrt3 / sqrtf(fan_in);
    r.kind = EM_RI_UNIFORM; r.a = -a; r.b = a;
    return r;
}

// ---- fill ----------------------------------------------------------------------------------------------------

/* dt = exp(U[log lo, log hi]) floored at 1e-4 (HF time_step_floor); bias = dt + log(-expm1(-dt)), the
 * inverse of softplus, so that softplus(bias) == dt at the first step. */
static inline float ri_dt_bias(float u, float lo, float hi) {
    double dt = exp(log((double)lo) + (double)u * (log((double)hi) - log((double)lo)));
    if (dt < 1e-4) dt = 1e-4;
    return (float)(dt + log(-expm1(-dt)));
}

void em_ri_fill(const em_ri_rule *r, uint64_t key, uint64_t first, size_t n, em_dtype dt, void *out) {
    EM_ASSERT((first & 1u) == 0);
    float *of = dt == EM_DTYPE_F32 ? (float *)out : NULL;
    uint16_t *ob = dt == EM_DTYPE_BF16 ? (uint16_t *)out : NULL;
    EM_ASSERT(of || ob);
    if (r->kind == EM_RI_CONST) {
        uint16_t h = em_f32_to_bf16(r->a);
        for (size_t i = 0; i < n; i++) { if (of) of[i] = r->a; else ob[i] = h; }
        return;
    }
    const float lo = r->a, span = r->b - r->a;
    uint64_t ctr = key + (first >> 1) * RI_GOLDEN;
    size_t i = 0;
    if (r->kind == EM_RI_UNIFORM && ob) {
        /* The hot loop of an 8B random blob: two bf16 per hash, no branches. */
        for (; i + 2 <= n; i += 2, ctr += RI_GOLDEN) {
            uint64_t z = ri_mix(ctr);
            ob[i] = em_f32_to_bf16(lo + span * ri_unit((uint32_t)z));
            ob[i + 1] = em_f32_to_bf16(lo + span * ri_unit((uint32_t)(z >> 32)));
        }
    } else if (r->kind == EM_RI_UNIFORM) {
        for (; i + 2 <= n; i += 2, ctr += RI_GOLDEN) {
            uint64_t z = ri_mix(ctr);
            of[i] = lo + span * ri_unit((uint32_t)z);
            of[i + 1] = lo + span * ri_unit((uint32_t)(z >> 32));
        }
    }
    /* The tail element (odd n) and the dt_bias rule (small tensors): element by element. */
    for (; i < n; i++) {
        uint64_t z = ri_mix(key + ((first + i) >> 1) * RI_GOLDEN);
        uint32_t u32 = ((first + i) & 1u) ? (uint32_t)(z >> 32) : (uint32_t)z;
        float u = ri_unit(u32);
        float v = r->kind == EM_RI_DT_BIAS ? ri_dt_bias(u, r->a, r->b) : lo + span * u;
        if (of) of[i] = v; else ob[i] = em_f32_to_bf16(v);
    }
}
