/*
 * attention_ref.c — float32 C twin of the attention op (em_attn_args in kernels/ops.h): causal grouped-query
 * attention over a KV cache, with an optional rotary position embedding. It is the reference for the CUDA
 * attention kernels and the CPU backend's attention layer. Tested by tests/test_ref_attn_mlp.c against a
 * double-precision softmax(QK^T)V over the whole sequence, fed chunk by chunk.
 *
 * What it mirrors:
 *   HF NemotronHAttention with eager_attention_forward (transformers 5.23), per token t and query head h:
 *     key_states = repeat_kv(k, n_head / n_kv_head)         -> query head h reads KV head h / (n_head/n_kv)
 *     attn = softmax(q @ key_states^T * scaling + causal_mask, dim=-1, dtype=float32) @ value_states
 *   Megatron's TEDotProductAttention in the hybrid (ML@df61e60, mamba_layer_specs.py) computes the same: no
 *   position embedding, scale 1/sqrt(kv_channels), query groups in the same order (models.md section 4).
 *   RoPE (rope_dims > 0; off for the hybrids, on for the Transformer baseline): rotate-half, not
 *   interleaved, on dims [0, rope_dims) of every head, as HF apply_rotary_pos_emb / Megatron
 *   apply_rotary_pos_emb with rotary_percent = rope_dims / head_dim:
 *     inv_freq[i] = base^(-2i / rope_dims), i < rope_dims/2;  theta = pos * inv_freq[i]
 *     x'[i] = x[i] cos(theta) - x[i + rope_dims/2] sin(theta);  x'[i + rope_dims/2] = x[i + half] cos + x[i] sin
 *   The angle is formed and its cos/sin taken in double, then rounded to f32 once: HF and Megatron form it in
 *   f32 (pos * inv_freq), which loses ~pos * 2^-24 radians at large positions; the twin keeps the exact value.
 *
 * The blocked online softmax over one GQA group (why blocks, why groups of heads) and the RoPE helpers are
 * shared with the bf16-cache twin: kernels/ref/attention_core.h. At the hybrid 8B's 32/8 heads, reading each
 * K/V row once per group cut one layer's decode step at position 4095 (32 MiB of K and V) from 74 ms to 24 ms
 * on one core of the 2-core dev host, small next to streaming the 8B's 17 GB of bf16 weights for the same token.
 */
#include <math.h>
#include <stdint.h>

#include "ops.h"
#include "util.h"

#include "attention_core.h"

// ---- the op -------------------------------------------------------------------------------------------

void em_ref_attention(const em_attn_args *a) {
    const uint32_t nt = a->n_tok, Hq = a->n_head, Hkv = a->n_kv_head, hd = a->head_dim;
    EM_ASSERT(Hq > 0 && Hkv > 0 && Hq % Hkv == 0 && hd > 0 && hd <= EM_ATTN_MAX_HEAD_DIM);
    EM_ASSERT((uint64_t)a->pos + nt <= a->max_ctx);
    EM_ASSERT(a->rope_dims % 2 == 0 && a->rope_dims <= hd);
    const size_t qs = a->q_stride ? a->q_stride : (size_t)Hq * hd;    /* elements per token row of q */
    const size_t kvs = a->kv_stride ? a->kv_stride : (size_t)Hkv * hd; /* ... of k and v */
    const size_t os = a->out_stride ? a->out_stride : (size_t)Hq * hd; /* ... of out */
    const size_t crow = (size_t)Hkv * hd;                              /* one cache row: all KV heads */
    const uint32_t half = a->rope_dims / 2;

    /* 1. position embedding on q, and the new keys/values appended to the cache (k rotated first) */
    for (uint32_t t = 0; t < nt; t++) {
        const uint64_t p = (uint64_t)a->pos + t;
        float *kc = a->k_cache + p * crow, *vc = a->v_cache + p * crow; /* [Hkv, hd] */
        const float *k = a->k + t * kvs, *v = a->v + t * kvs;
        for (size_t i = 0; i < crow; i++) { kc[i] = k[i]; vc[i] = v[i]; }
        if (half) {
            float cs[EM_ATTN_MAX_HEAD_DIM / 2], sn[EM_ATTN_MAX_HEAD_DIM / 2];
            em_att_rope_angles(p, a->rope_dims, a->rope_base, cs, sn);
            for (uint32_t g = 0; g < Hkv; g++) em_att_rope_apply(kc + (size_t)g * hd, half, cs, sn);
            for (uint32_t h = 0; h < Hq; h++) em_att_rope_apply(a->q + t * qs + (size_t)h * hd, half, cs, sn);
        }
    }

    /* 2. softmax(q K^T * scale) V for every token and head, causal */
    em_att_all_groups(a->q, qs, a->k_cache, a->v_cache, 0, nt, a->pos, Hq, Hkv, hd, a->scale, a->out, os,
                      a->n_threads);
}
