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
 * Why a blocked online softmax: the CPU backend must not allocate, and a score row is up to max_context
 * long. Keys are taken in blocks of ATT_BLOCK (at absolute positions 0, 64, 128, ...): the block's scores sit
 * on the stack, the running max and sum are rescaled once per block (flash-attention's recurrence). Each
 * (token, head) output is computed by one thread in a fixed order over absolute key blocks, so the result
 * does not depend on the thread count or on how a prompt was cut into chunks (bit for bit).
 * Why heads go in groups: the cache is token-major ([ctx, n_kv_head, head_dim]: a token appends one row and a
 * prefix of the sequence is one contiguous range, for snapshots), so one head's keys sit a row apart; the query
 * heads that share a KV head read each K/V row once together (attend_heads). At the hybrid 8B's 32/8 heads that
 * cut one layer's decode step at position 4095 (32 MiB of K and V) from 74 ms to 24 ms on one core of the
 * 2-core dev host, small next to streaming the 8B's 17 GB of bf16 weights for the same token.
 */
#include <math.h>
#include <stdint.h>

#include "ops.h"
#include "util.h"

#ifdef EM_HAVE_OPENMP
#include <omp.h>
#endif

#define ATT_BLOCK 64           /* keys per softmax block (stack scores) */
#define ATT_HEADS 8            /* query heads of one KV group done together (stack: 8 x head_dim accumulators) */
#define ATT_MIN_PAR (1u << 16) /* below this many multiply-adds one thread is faster than a fork/join */

// ---- helpers ------------------------------------------------------------------------------------------

/* sum_i a[i] * b[i], 8 partial sums (vectorised at -O2 without reassociation; fixed order) */
static float dot8(const float *restrict a, const float *restrict b, uint32_t n) {
    float s[8] = {0};
    const uint32_t n8 = n & ~7u;
    for (uint32_t i = 0; i < n8; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
    float tail = 0.0f;
    for (uint32_t i = n8; i < n; i++) tail += a[i] * b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail;
}

/* cos/sin of the rotary angles of absolute position p: cs[i], sn[i] for i < half */
static void rope_angles(uint64_t p, uint32_t rope_dims, float base, float *cs, float *sn) {
    const uint32_t half = rope_dims / 2;
    for (uint32_t i = 0; i < half; i++) {
        double inv_freq = pow((double)base, -2.0 * (double)i / (double)rope_dims);
        double th = (double)p * inv_freq;
        cs[i] = (float)cos(th);
        sn[i] = (float)sin(th);
    }
}

/* rotate-half on dims [0, 2*half) of one head vector x (in place) */
static void rope_apply(float *x, uint32_t half, const float *cs, const float *sn) {
    for (uint32_t i = 0; i < half; i++) {
        const float x1 = x[i], x2 = x[i + half];
        x[i] = x1 * cs[i] - x2 * sn[i];
        x[i + half] = x2 * cs[i] + x1 * sn[i];
    }
}

/* y[i] += a * x[i] and y[i] *= a over n values, in the loop shape GCC vectorises at -O2 (see linear_ref.c) */
static void axpy8(float *restrict y, float a, const float *restrict x, uint32_t n) {
    const uint32_t n8 = n & ~7u;
    for (uint32_t i = 0; i < n8; i += 8)
        for (int k = 0; k < 8; k++) y[i + k] += a * x[i + k];
    for (uint32_t i = n8; i < n; i++) y[i] += a * x[i];
}
static void scale8(float *y, float a, uint32_t n) {
    const uint32_t n8 = n & ~7u;
    for (uint32_t i = 0; i < n8; i += 8)
        for (int k = 0; k < 8; k++) y[i + k] *= a;
    for (uint32_t i = n8; i < n; i++) y[i] *= a;
}

// ---- nh query heads of one KV group, one token: softmax(q K^T * scale) V over keys [0, n_keys) -----------
// The heads of a GQA group read the same keys and values: each K and V row is loaded once for all of them
// (4x less cache traffic for the hybrid 8B's 32/8 heads). Per head the arithmetic and its order are exactly
// those of a one-head loop, so grouping changes no bit.

static void attend_heads(const float *q, uint32_t nh, const float *kc, const float *vc, size_t crow, uint32_t hd,
                         uint32_t n_keys, float scale, float *out) {
    float acc[ATT_HEADS][EM_ATTN_MAX_HEAD_DIM]; /* [nh, hd] running sum of p_j * v_j, scaled to the running max */
    float sc[ATT_HEADS][ATT_BLOCK];             /* the block's scores, per head */
    float m[ATT_HEADS], l[ATT_HEADS];           /* running max, running sum of exp(score - m) */
    for (uint32_t h = 0; h < nh; h++) {
        for (uint32_t i = 0; i < hd; i++) acc[h][i] = 0.0f;
        m[h] = -INFINITY;
        l[h] = 0.0f;
    }
    for (uint32_t j0 = 0; j0 < n_keys; j0 += ATT_BLOCK) {
        const uint32_t nb = n_keys - j0 < ATT_BLOCK ? n_keys - j0 : ATT_BLOCK;
        for (uint32_t j = 0; j < nb; j++) {
            const float *k = kc + (size_t)(j0 + j) * crow; /* [hd] */
            /* HF: (q @ k^T) * scaling, in that order */
            for (uint32_t h = 0; h < nh; h++) sc[h][j] = dot8(q + (size_t)h * hd, k, hd) * scale;
        }
        for (uint32_t h = 0; h < nh; h++) {
            float bm = -INFINITY;
            for (uint32_t j = 0; j < nb; j++) bm = sc[h][j] > bm ? sc[h][j] : bm;
            if (bm > m[h]) { /* rescale what the earlier blocks summed (by 0 on the first block) */
                const float c = expf(m[h] - bm);
                l[h] *= c;
                scale8(acc[h], c, hd);
                m[h] = bm;
            }
            for (uint32_t j = 0; j < nb; j++) {
                sc[h][j] = expf(sc[h][j] - m[h]);
                l[h] += sc[h][j];
            }
        }
        for (uint32_t j = 0; j < nb; j++) {
            const float *v = vc + (size_t)(j0 + j) * crow; /* [hd] */
            for (uint32_t h = 0; h < nh; h++) axpy8(acc[h], sc[h][j], v, hd);
        }
    }
    for (uint32_t h = 0; h < nh; h++) {
        const float inv = 1.0f / l[h]; /* l >= 1: the max's own term is exp(0) */
        for (uint32_t i = 0; i < hd; i++) out[(size_t)h * hd + i] = acc[h][i] * inv;
    }
}

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
    const uint32_t rep = Hq / Hkv, half = a->rope_dims / 2;

    /* 1. position embedding on q, and the new keys/values appended to the cache (k rotated first) */
    for (uint32_t t = 0; t < nt; t++) {
        const uint64_t p = (uint64_t)a->pos + t;
        float *kc = a->k_cache + p * crow, *vc = a->v_cache + p * crow; /* [Hkv, hd] */
        const float *k = a->k + t * kvs, *v = a->v + t * kvs;
        for (size_t i = 0; i < crow; i++) { kc[i] = k[i]; vc[i] = v[i]; }
        if (half) {
            float cs[EM_ATTN_MAX_HEAD_DIM / 2], sn[EM_ATTN_MAX_HEAD_DIM / 2];
            rope_angles(p, a->rope_dims, a->rope_base, cs, sn);
            for (uint32_t g = 0; g < Hkv; g++) rope_apply(kc + (size_t)g * hd, half, cs, sn);
            for (uint32_t h = 0; h < Hq; h++) rope_apply(a->q + t * qs + (size_t)h * hd, half, cs, sn);
        }
    }

    /* 2. every (token, group of up to ATT_HEADS query heads of one KV head): causal over cache rows [0, pos + t].
     *    Query head h = g * rep + r reads KV head g (HF repeat_kv order). */
    const uint32_t n_sub = (rep + ATT_HEADS - 1) / ATT_HEADS; /* head batches per KV head */
    const int64_t n_tasks = (int64_t)nt * Hkv * n_sub;
#ifdef EM_HAVE_OPENMP /* without OpenMP the same loop runs on the calling thread */
    const uint64_t work = (uint64_t)nt * Hq * ((uint64_t)a->pos + nt) * hd;
    const int nth = a->n_threads > 0 ? a->n_threads : omp_get_num_procs();
#pragma omp parallel for schedule(static) num_threads(nth) if (work >= ATT_MIN_PAR)
#endif
    for (int64_t idx = 0; idx < n_tasks; idx++) {
        const uint32_t t = (uint32_t)(idx / ((int64_t)Hkv * n_sub));
        const uint32_t g = (uint32_t)(idx / n_sub % Hkv), r0 = (uint32_t)(idx % n_sub) * ATT_HEADS;
        const uint32_t nh = rep - r0 < ATT_HEADS ? rep - r0 : ATT_HEADS, h0 = g * rep + r0;
        attend_heads(a->q + t * qs + (size_t)h0 * hd, nh, a->k_cache + (size_t)g * hd, a->v_cache + (size_t)g * hd,
                     crow, hd, a->pos + t + 1, a->scale, a->out + t * os + (size_t)h0 * hd);
    }
}
