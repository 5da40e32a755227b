/*
 * test_quant.c — the INT8 per-output-channel quantizer (quant/quant.h) against its definition, computed here
 * independently in double:
 *   - round trip: for random rows of several magnitudes (f32 and bf16 input), scale == max|w| / 127 and every
 *     |w - q * scale| <= scale / 2 (plus one f32 rounding of the product), q in [-127, 127], and q equal to
 *     the double-precision round-half-away of w / scale wherever that quotient is not within 1e-4 of a tie;
 *   - exactness: rows whose values are integer multiples k * s of a power-of-two step s (|k| <= 127, one
 *     element at +-127 s) give back exactly k and scale s; -w gives -q (symmetry); ties round away from 0;
 *   - zero rows: scale 0 and q all 0, so q * scale is exactly 0; a row of denormals stays finite;
 *   - refusals: NaN, +Inf and -Inf anywhere in a row (f32 and bf16) give EM_ERR_FORMAT with a message naming
 *     the element ("element 5 is nan"), and the matrix form names the row too;
 *   - em_dequant_i8_row is q * scale.
 * Run: ctest -R test_quant (label unit).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "testutil.h"
#include "util.h"

#define COLS 1000

/* double reference: round half away from zero */
static double round_away(double v) { return v < 0 ? -floor(-v + 0.5) : floor(v + 0.5); }

static void check_row(const char *what, const float *w, uint32_t n, const int8_t *q, float scale) {
    double amax = 0;
    for (uint32_t k = 0; k < n; k++) amax = fmax(amax, fabs((double)w[k]));
    const float want_scale = (float)amax / 127.0f;
    CHECK_MSG(scale == want_scale, "%s: scale %.9g, want max|w|/127 = %.9g", what, (double)scale, (double)want_scale);
    int bad_bound = 0, bad_q = 0;
    for (uint32_t k = 0; k < n; k++) {
        CHECK(q[k] >= -127 && q[k] <= 127);
        const double err = fabs((double)w[k] - (double)q[k] * (double)scale);
        /* scale / 2 from the rounding, plus the f32 rounding of w / scale (<= 2^-24 relative of 127) */
        if (err > (double)scale * (0.5 + 1e-5)) {
            if (bad_bound++ < 3)
                fprintf(stderr, "%s: element %u: w %.9g q %d scale %.9g error %.3g > scale/2\n", what, k,
                        (double)w[k], q[k], (double)scale, err);
        }
        const double t = (double)w[k] / (double)scale;
        if (fabs(fabs(t - trunc(t)) - 0.5) > 1e-4 && (double)q[k] != round_away(t)) bad_q++;
    }
    CHECK_MSG(bad_bound == 0, "%s: %d elements with error above scale/2", what, bad_bound);
    CHECK_MSG(bad_q == 0, "%s: %d elements whose q is not round-half-away(w / scale)", what, bad_q);
}

static void test_round_trip(void) {
    em_rng r;
    em_rng_seed(&r, 10);
    static float w[COLS], back[COLS];
    static uint16_t wb[COLS];
    static int8_t q[COLS];
    const float mags[] = {1e-6f, 0.02f, 1.0f, 3e4f};
    for (size_t m = 0; m < sizeof mags / sizeof mags[0]; m++) {
        for (int rep = 0; rep < 4; rep++) {
            em_fill_uniform(&r, w, COLS, mags[m]);
            if (rep == 1) w[17] = 40.0f * mags[m]; /* one outlier: the rest of the row gets coarse steps */
            char what[64];
            float scale = -1;
            snprintf(what, sizeof what, "f32 row, magnitude %g, rep %d", (double)mags[m], rep);
            CHECK_STATUS(em_quant_i8_row_f32(w, COLS, q, &scale), EM_OK);
            check_row(what, w, COLS, q, scale);
            em_dequant_i8_row(q, scale, COLS, back);
            for (int k = 0; k < COLS; k++) CHECK(back[k] == (float)q[k] * scale);
            /* bf16 input: the same rule on the widened values */
            for (int k = 0; k < COLS; k++) {
                wb[k] = em_f32_to_bf16(w[k]);
                w[k] = em_bf16_to_f32(wb[k]);
            }
            snprintf(what, sizeof what, "bf16 row, magnitude %g, rep %d", (double)mags[m], rep);
            CHECK_STATUS(em_quant_i8_row_bf16(wb, COLS, q, &scale), EM_OK);
            check_row(what, w, COLS, q, scale);
        }
    }
}

static void test_exact(void) {
    static float w[COLS];
    static int8_t q[COLS], qn[COLS];
    em_rng r;
    em_rng_seed(&r, 11);
    const float steps[] = {1.0f, 0.0078125f, 0x1p-20f, 64.0f};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        int k_of[COLS];
        for (int k = 0; k < COLS; k++) {
            k_of[k] = (int)(em_rng_u32(&r) % 255) - 127;
            w[k] = (float)k_of[k] * steps[i];
        }
        k_of[3] = -127; /* the max: the scale comes back exactly as the step */
        w[3] = -127.0f * steps[i];
        float s = 0;
        CHECK_STATUS(em_quant_i8_row_f32(w, COLS, q, &s), EM_OK);
        CHECK_MSG(s == steps[i], "step %g: scale %.9g", (double)steps[i], (double)s);
        int bad = 0;
        for (int k = 0; k < COLS; k++) bad += q[k] != k_of[k] || (float)q[k] * s != w[k];
        CHECK_MSG(bad == 0, "step %g: %d representable values did not come back exactly", (double)steps[i], bad);
        for (int k = 0; k < COLS; k++) w[k] = -w[k];
        CHECK_STATUS(em_quant_i8_row_f32(w, COLS, qn, &s), EM_OK);
        for (int k = 0; k < COLS; k++) bad += qn[k] != -q[k];
        CHECK_MSG(bad == 0, "step %g: -w did not give -q", (double)steps[i]);
    }
    /* ties: scale 1 (max 127), values k + 0.5 round away from zero */
    float t[6] = {127.0f, 0.5f, -0.5f, 2.5f, -2.5f, 126.5f};
    int8_t qt[6];
    float s = 0;
    CHECK_STATUS(em_quant_i8_row_f32(t, 6, qt, &s), EM_OK);
    CHECK(s == 1.0f && qt[0] == 127 && qt[1] == 1 && qt[2] == -1 && qt[3] == 3 && qt[4] == -3 && qt[5] == 127);
}

static void test_zero_rows(void) {
    float w[64] = {0};
    int8_t q[64];
    memset(q, 0x55, sizeof q);
    float s = -1;
    CHECK_STATUS(em_quant_i8_row_f32(w, 64, q, &s), EM_OK);
    int nz = 0;
    for (int k = 0; k < 64; k++) nz += q[k] != 0;
    CHECK_MSG(s == 0.0f && nz == 0, "zero row: scale %g, %d nonzero q", (double)s, nz);
    w[5] = -0.0f;
    uint16_t wb[64] = {0};
    wb[9] = 0x8000; /* bf16 -0 */
    CHECK_STATUS(em_quant_i8_row_bf16(wb, 64, q, &s), EM_OK);
    CHECK(s == 0.0f);
    /* the matrix form: a zero row between two others keeps its own scale 0 */
    float m[3][8];
    for (int k = 0; k < 8; k++) { m[0][k] = (float)k; m[1][k] = 0; m[2][k] = -(float)k * 0.5f; }
    int8_t qm[3][8];
    float sc[3];
    CHECK_STATUS(em_quant_i8_f32(&m[0][0], 3, 8, &qm[0][0], sc), EM_OK);
    CHECK(sc[0] == 7.0f / 127.0f && sc[1] == 0.0f && sc[2] == 3.5f / 127.0f);
    /* denormal rows: finite scale, finite results */
    float d[4] = {1e-40f, -3e-41f, 0, 2e-39f};
    CHECK_STATUS(em_quant_i8_row_f32(d, 4, q, &s), EM_OK);
    CHECK(isfinite(s) && q[3] == 127);
    float back[4];
    em_dequant_i8_row(q, s, 4, back);
    for (int k = 0; k < 4; k++) CHECK(isfinite(back[k]));
}

static void test_refusals(void) {
    float w[16];
    uint16_t wb[16];
    int8_t q[16];
    float s;
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    const char *names[3] = {"nan", "+inf", "-inf"};
    for (int b = 0; b < 3; b++) {
        for (int k = 0; k < 16; k++) w[k] = 0.25f * (float)k;
        w[5] = bad[b];
        CHECK_STATUS(em_quant_i8_row_f32(w, 16, q, &s), EM_ERR_FORMAT);
        char want[64];
        snprintf(want, sizeof want, "element 5 is %s", names[b]);
        CHECK_MSG(strstr(em_last_error(), want) != NULL, "message '%s' lacks '%s'", em_last_error(), want);
        for (int k = 0; k < 16; k++) wb[k] = em_f32_to_bf16(w[k]);
        CHECK_STATUS(em_quant_i8_row_bf16(wb, 16, q, &s), EM_ERR_FORMAT);
        CHECK_MSG(strstr(em_last_error(), want) != NULL, "bf16: message '%s' lacks '%s'", em_last_error(), want);
    }
    float m[2][16];
    for (int k = 0; k < 16; k++) { m[0][k] = 1; m[1][k] = 2; }
    m[1][7] = NAN;
    int8_t qm[2][16];
    float sc[2];
    CHECK_STATUS(em_quant_i8_f32(&m[0][0], 2, 16, &qm[0][0], sc), EM_ERR_FORMAT);
    CHECK_MSG(strstr(em_last_error(), "row 1") && strstr(em_last_error(), "element 7"), "message: %s",
              em_last_error());
}

int main(void) {
    test_round_trip();
    test_exact();
    test_zero_rows();
    test_refusals();
    return em_test_finish("test_quant");
}
