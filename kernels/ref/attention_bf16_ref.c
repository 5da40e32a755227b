/*
 * attention_bf16_ref.c — float32 C twin of attention over a BF16 KV cache (em_attn_dev_args in kernels/ops.h), the
 * form the CUDA executor runs (kernels/attention.cu, em_cuda_attention). It computes what em_ref_attention
 * (kernels/ref/attention_ref.c) computes, with one difference that is the point of it: the cache holds bf16.
 *   1. For each new token t (absolute position p = pos + t): q[t] gets RoPE in place (rope_dims > 0), and the
 *      new k (after RoPE) and v are ROUNDED TO BF16 (nearest even, em_f32_to_bf16) into cache row p.
 *   2. out[t, h] = sum_j softmax_j(scale * q[t,h] . K[j,g]) V[j,g] over j in [0, p], g = h / (n_head / n_kv_head),
 *      every K[j] and V[j] widened exactly from the bf16 cache (the token's own row too).
 * So the only difference from em_ref_attention is bf16 rounding of k/v (<= 2^-9 relative per element), which
 * tests/test_attention_bf16_ref.c bounds; fed bf16-representable k/v without RoPE the two agree to f32 rounding.
 * RoPE is formed exactly as in attention_ref.c (angle and cos/sin in double, rounded once to f32; rotate-half).
 *
 * Order of work (what the CUDA kernels are compared with, not what they must copy): attention_ref.c's, from the
 * same code (kernels/ref/attention_core.h): per (token, group of up to EM_ATT_HEADS query heads of one KV head),
 * keys in blocks of EM_ATT_BLOCK at absolute positions 0, 64, ...; one online-softmax rescale per block. Each
 * (token, head) is computed by one thread in a fixed order, so the result does not depend on the thread count
 * or on how a prompt was cut into chunks (bit for bit).
 */
#include <math.h>
#include <stdint.h>

#include "ops.h"
#include "util.h"

#include "attention_core.h"

/* row j of one KV head's bf16 cache, widened exactly to f32 */
// ---- the op -------------------------------------------------------------------------------------------

void em_ref_attention_bf16(const em_attn_dev_args *a) {
    const uint32_t nt = a->n_tok, Hq = a->n_head, Hkv = a->n_kv_head, hd = a->head_dim;
    EM_ASSERT(Hq > 0 && Hkv > 0 && Hq % Hkv == 0 && hd > 0 && hd <= EM_ATTN_MAX_HEAD_DIM);
    EM_ASSERT((uint64_t)a->pos + nt <= a->max_ctx);
    EM_ASSERT(a->rope_dims % 2 == 0 && a->rope_dims <= hd);
    const size_t qs = a->q_stride ? a->q_stride : (size_t)Hq * hd;
    const size_t kvs = a->kv_stride ? a->kv_stride : (size_t)Hkv * hd;
    const size_t os = a->out_stride ? a->out_stride : (size_t)Hq * hd;
    const size_t crow = (size_t)Hkv * hd; /* one cache row: all KV heads */
    const uint32_t half = a->rope_dims / 2;

    /* 1. RoPE on q (in place) and on the new keys; k and v rounded to bf16 into cache rows [pos, pos + n_tok) */
    for (uint32_t t = 0; t < nt; t++) {
        const uint64_t p = (uint64_t)a->pos + t;
        uint16_t *kc = a->k_cache + p * crow, *vc = a->v_cache + p * crow;
        const float *k = a->k + t * kvs, *v = a->v + t * kvs;
        float cs[EM_ATTN_MAX_HEAD_DIM / 2], sn[EM_ATTN_MAX_HEAD_DIM / 2], kr[EM_ATTN_MAX_HEAD_DIM];
        if (half) {
            em_att_rope_angles(p, a->rope_dims, a->rope_base, cs, sn);
            for (uint32_t h = 0; h < Hq; h++) em_att_rope_apply(a->q + t * qs + (size_t)h * hd, half, cs, sn);
        }
        for (uint32_t g = 0; g < Hkv; g++) {
            for (uint32_t i = 0; i < hd; i++) kr[i] = k[(size_t)g * hd + i];
            if (half) em_att_rope_apply(kr, half, cs, sn);
            for (uint32_t i = 0; i < hd; i++) {
                kc[(size_t)g * hd + i] = em_f32_to_bf16(kr[i]);
                vc[(size_t)g * hd + i] = em_f32_to_bf16(v[(size_t)g * hd + i]);
            }
        }
    }

    /* 2. softmax(q K^T * scale) V for every token and head, causal, every K/V row widened from bf16 */
    em_att_all_groups(a->q, qs, a->k_cache, a->v_cache, 1, nt, a->pos, Hq, Hkv, hd, a->scale, a->out,
                      os, a->n_threads);
}
