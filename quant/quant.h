/*
 * quant.h — weight quantization, shared by the packer (tools/pack: em-pack --dtype int8, --requantize) and
 * the tests (tests/test_quant.c, tests/test_int8*.c). Internal: not installed.
 *
 * INT8 per output channel ("int8-row", EM_QUANT_INT8_ROW in the blob), symmetric, one f32 scale per row of a
 * row-major [n_out, n_in] weight:
 *
 *     scale[r] = max_k |w[r][k]| / 127                  (f32; a row of zeros gets scale 0)
 *     q[r][k]  = round_half_away(w[r][k] / scale[r])    clamped to [-127, 127] (-128 is never produced)
 *     w'[r][k] = q[r][k] * scale[r]                     (what the kernels compute with: y = (x . q_row) * scale)
 *
 * so |w - w'| <= scale / 2 per element (plus one f32 rounding), values that are integer multiples of the
 * scale come back exactly, and a zero row stays exactly zero (scale 0, q 0: the product is 0 for any finite x).
 * Symmetric and without -128 so that -w quantizes to -q and the kernels need no zero point.
 * NaN or Inf in a weight is refused (EM_ERR_FORMAT, message naming row and column): a blob never carries
 * a scale that would turn a whole row into NaN.
 */
#ifndef EM_QUANT_H
#define EM_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "edgemamba.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EM_QUANT_I8_MAX 127 /* symmetric range [-127, 127] */

/** Quantizes one row of n f32 values into q[n] and *scale (see above).
 *  @return EM_OK, or EM_ERR_FORMAT for a NaN/Inf element (message: "element K is nan"), q/scale unspecified. */
em_status em_quant_i8_row_f32(const float *w, uint32_t n, int8_t *q, float *scale);
/** The same for a row of bf16 bits (widened exactly first). */
em_status em_quant_i8_row_bf16(const uint16_t *w, uint32_t n, int8_t *q, float *scale);

/** A whole [rows, cols] f32 matrix: q[rows, cols], scales[rows]. Errors name the row. */
em_status em_quant_i8_f32(const float *w, uint64_t rows, uint32_t cols, int8_t *q, float *scales);
/** A whole [rows, cols] bf16 matrix. */
em_status em_quant_i8_bf16(const uint16_t *w, uint64_t rows, uint32_t cols, int8_t *q, float *scales);

/** out[k] = q[k] * scale, k < n (the dequantized row the kernels effectively use). */
void em_dequant_i8_row(const int8_t *q, float scale, uint32_t n, float *out);

#ifdef __cplusplus
}
#endif

#endif /* EM_QUANT_H */
