/*
 * conv1d_ref.c — float32 C twin of Mamba's causal depthwise conv1d with a rolling state (em_conv1d_args in
 * kernels/ops.h). One function serves the prompt (n_tok tokens) and the decode step (n_tok = 1), so a prompt
 * followed by steps gives the same bits as one call over all tokens. Reference for kernels/conv1d.cu and the
 * CPU backend; tested by tests/test_ref_ops.c.
 *
 * Mirrors HF Mamba2Mixer.torch_forward with a cache:
 *   hidden_states_B_C = torch.cat([conv_state, xBC], dim=-1)           # left-pad with the K-1 cached inputs
 *   out = act(conv1d(padded)[..., K-1:] (+ bias))                        # causal, groups = channels
 *   conv_state = padded[..., -(K-1):]                                    # roll: keep the last K-1 inputs
 * i.e. y[t][c] = silu?(b[c] + sum_{k<K} w[c][k] * in[t-K+1+k][c]) with in[-j] taken from the state (zeros for a
 * fresh state). The decode step is causal_conv1d_update: roll the state by one, append x, dot with w.
 *
 * Why per channel: a K-wide window per channel (K = 4 in every Mamba) slides over the tokens in registers and
 * the state is just its last K-1 values, which makes the call alias-safe (y may be x) and the state update exact
 * when n_tok < K-1 (part of the old state survives).
 */
#include <stdint.h>

#include "ops.h"
#include "util.h"

#define CONV_MAX_K 16 /* window held on the stack; Mamba uses K = 4 */

void em_ref_conv1d(const em_conv1d_args *a) {
    const uint32_t K = a->K, C = a->C, n_tok = a->n_tok;
    EM_ASSERT(K >= 1 && K <= CONV_MAX_K);
    const size_t xs = a->x_stride ? a->x_stride : C; /* elements per token row of x */
    const size_t ys = a->y_stride ? a->y_stride : C; /* elements per token row of y */
    EM_ASSERT(xs >= C && ys >= C);

    for (uint32_t c = 0; c < C; c++) {
        const float *w = a->w + (size_t)c * K;        /* [K], w[K-1] multiplies the newest input */
        float *st = a->state + (size_t)c * (K - 1);   /* [K-1], oldest first */
        const float bias = a->b ? a->b[c] : 0.0f;
        float win[CONV_MAX_K];                        /* in[t-K+1 .. t][c], oldest first */
        for (uint32_t k = 0; k + 1 < K; k++) win[k] = st[k];

        for (uint32_t t = 0; t < n_tok; t++) {
            win[K - 1] = a->x[t * xs + c];
            float acc = bias;
            for (uint32_t k = 0; k < K; k++) acc += w[k] * win[k];
            a->y[t * ys + c] = a->silu == EM_SILU_ON ? em_silu_f(acc) : acc;
            for (uint32_t k = 0; k + 1 < K; k++) win[k] = win[k + 1]; /* slide: drop the oldest */
        }
        // the window now holds the last K-1 inputs (older state kept when n_tok < K-1): that is the new state
        for (uint32_t k = 0; k + 1 < K; k++) st[k] = win[k];
    }
}
