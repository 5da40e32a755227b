/*
 * quant.c — see quant.h. Plain loops: the packer quantizes a few GB once, at pack time, at ~1 GB/s a core,
 * and the tests need the exact rule more than speed.
 *
 * Rounding: w / scale is one correctly rounded f32 division, then roundf (half away from zero, C99), so the
 * result depends on nothing but the two f32 inputs: every host and every compiler gives the same int8 bytes.
 * The division (not a multiplication by 127 / max) keeps "w = k * scale gives q = k" exact.
 */
#include "quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/* max |w| over the row; refuses NaN and +-Inf (named by column). */
static em_status row_absmax(const float *w, uint32_t n, float *amax) {
    float m = 0.0f;
    for (uint32_t k = 0; k < n; k++) {
        const float a = fabsf(w[k]);
        if (!(a <= 3.4028234663852886e38f)) /* NaN fails every comparison; Inf is above FLT_MAX */
            return em_fail(EM_ERR_FORMAT, "quant: element %u is %s (int8 quantization needs finite weights)", k,
                           isnan(w[k]) ? "nan" : w[k] > 0 ? "+inf" : "-inf");
        if (a > m) m = a;
    }
    *amax = m;
    return EM_OK;
}

em_status em_quant_i8_row_f32(const float *w, uint32_t n, int8_t *q, float *scale) {
    float amax = 0.0f;
    EM_TRY(row_absmax(w, n, &amax));
    const float s = amax / (float)EM_QUANT_I8_MAX;
    *scale = s;
    if (s == 0.0f) { /* a zero row (or one below 127 * the smallest subnormal): all zeros, exact product 0 */
        memset(q, 0, n);
        return EM_OK;
    }
    for (uint32_t k = 0; k < n; k++) {
        float v = roundf(w[k] / s);
        if (v > (float)EM_QUANT_I8_MAX) v = (float)EM_QUANT_I8_MAX; /* |w| <= amax: only by rounding, and */
        if (v < -(float)EM_QUANT_I8_MAX) v = -(float)EM_QUANT_I8_MAX; /* only when s is subnormal */
        q[k] = (int8_t)v;
    }
    return EM_OK;
}

em_status em_quant_i8_row_bf16(const uint16_t *w, uint32_t n, int8_t *q, float *scale) {
    /* bf16 -> f32 is exact, so this is the f32 rule on the widened values, without a row-sized buffer */
    float amax = 0.0f;
    for (uint32_t k = 0; k < n; k++) {
        const float v = em_bf16_to_f32(w[k]), a = fabsf(v);
        if (!(a <= 3.4028234663852886e38f))
            return em_fail(EM_ERR_FORMAT, "quant: element %u is %s (int8 quantization needs finite weights)", k,
                           isnan(v) ? "nan" : v > 0 ? "+inf" : "-inf");
        if (a > amax) amax = a;
    }
    const float s = amax / (float)EM_QUANT_I8_MAX;
    *scale = s;
    if (s == 0.0f) {
        memset(q, 0, n);
        return EM_OK;
    }
    for (uint32_t k = 0; k < n; k++) {
        float v = roundf(em_bf16_to_f32(w[k]) / s);
        if (v > (float)EM_QUANT_I8_MAX) v = (float)EM_QUANT_I8_MAX;
        if (v < -(float)EM_QUANT_I8_MAX) v = -(float)EM_QUANT_I8_MAX;
        q[k] = (int8_t)v;
    }
    return EM_OK;
}

/* Prefixes the row to the row function's message. */
static em_status fail_row(em_status s, uint64_t r) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", em_last_error());
    return em_fail(s, "row %llu: %s", (unsigned long long)r, msg);
}

em_status em_quant_i8_f32(const float *w, uint64_t rows, uint32_t cols, int8_t *q, float *scales) {
    for (uint64_t r = 0; r < rows; r++) {
        em_status s = em_quant_i8_row_f32(w + r * cols, cols, q + r * cols, &scales[r]);
        if (s != EM_OK) return fail_row(s, r);
    }
    return EM_OK;
}

em_status em_quant_i8_bf16(const uint16_t *w, uint64_t rows, uint32_t cols, int8_t *q, float *scales) {
    for (uint64_t r = 0; r < rows; r++) {
        em_status s = em_quant_i8_row_bf16(w + r * cols, cols, q + r * cols, &scales[r]);
        if (s != EM_OK) return fail_row(s, r);
    }
    return EM_OK;
}

void em_dequant_i8_row(const int8_t *q, float scale, uint32_t n, float *out) {
    for (uint32_t k = 0; k < n; k++) out[k] = (float)q[k] * scale;
}
