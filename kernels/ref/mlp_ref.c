/*
 * mlp_ref.c — float32 C twin of the MLP op (em_mlp_args in kernels/ops.h): y = down(act(up(x))), the hybrid's
 * MLP layer. The two projections are em_ref_linear (so bf16 and int8 weights are widened exactly, int8 rows
 * take their up_scale / down_scale, and each product is accumulated in f32); the activation runs in place on the [n_tok, d_ff] workspace. Tested by
 * tests/test_ref_attn_mlp.c against a double-precision form.
 *
 * What it mirrors:
 *   HF NemotronHMLP:   down_proj(ACT2FN[mlp_hidden_act](up_proj(x))), no gate, no bias
 *   Megatron MLP:      linear_fc2(gelu(linear_fc1(x))) with --disable-bias-linear (models.md section 4)
 * Activations:
 *   EM_ACT_GELU   exact GELU: x/2 (1 + erf(x / sqrt 2)), torch F.gelu(approximate="none") / HF "gelu"
 *   EM_ACT_RELU2  squared ReLU: relu(x)^2, HF ReLUSquaredActivation ("relu2"), Megatron squared_relu
 *   EM_ACT_SILU   x sigmoid(x), HF "silu" (non-gated)
 */
#include <math.h>
#include <stdint.h>

#include "blob.h"
#include "ops.h"
#include "util.h"

static inline float gelu_f(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752440f)); }
static inline float relu2_f(float v) { return v > 0.0f ? v * v : 0.0f; }

void em_ref_act(float *h, size_t n, uint32_t act) {
    switch (act) {
    case EM_ACT_NONE: break;
    case EM_ACT_GELU: for (size_t i = 0; i < n; i++) h[i] = gelu_f(h[i]); break;
    case EM_ACT_RELU2: for (size_t i = 0; i < n; i++) h[i] = relu2_f(h[i]); break;
    default: for (size_t i = 0; i < n; i++) h[i] = em_silu_f(h[i]); break;
    }
}

void em_ref_mlp(const em_mlp_args *a) {
    EM_ASSERT(a->act == EM_ACT_GELU || a->act == EM_ACT_RELU2 || a->act == EM_ACT_SILU);
    const uint32_t nt = a->n_tok, d = a->d, ff = a->d_ff;
    /* h [nt, ff] = x up^T */
    em_linear_args up = { .w = a->up, .w_dtype = a->up_dtype, .w_scale = a->up_scale, .x = a->x, .y = a->h, .n_tok = nt, .n_in = d,
                          .n_out = ff, .x_stride = d, .y_stride = ff };
    em_ref_linear(&up);
    /* h = act(h), in place */
    em_ref_act(a->h, (size_t)nt * ff, a->act);
    /* y [nt, d] = h down^T */
    em_linear_args dn = { .w = a->down, .w_dtype = a->down_dtype, .w_scale = a->down_scale, .x = a->h, .y = a->y, .n_tok = nt, .n_in = ff,
                          .n_out = d, .x_stride = ff, .y_stride = d };
    em_ref_linear(&dn);
}
