/*
 * attention_core.h — the parts the two attention twins share (included by attention_ref.c, f32 KV cache, and
 * attention_bf16_ref.c, bf16 KV cache; not a public header): the fixed-order dot product, RoPE, and the blocked
 * online softmax over one GQA group (attend_group). The cache element type is the only difference, so
 * the row reader em_att_row takes a flag: for f32 it returns the row itself, for bf16 it widens the row
 * (exactly) into a stack buffer. The flag is the same for a whole call (a predictable branch per row of
 * head_dim values; a function pointer would not be propagated through the OpenMP region).
 *
 * Why a blocked online softmax: the CPU backend must not allocate, and a score row is up to max_context long.
 * Keys are taken in blocks of EM_ATT_BLOCK (at absolute positions 0, 64, 128, ...): the block's scores sit on
 * the stack, the running max and sum are rescaled once per block (flash-attention's recurrence). Each
 * (token, head) output is computed by one thread in a fixed order over absolute key blocks, so the result does
 * not depend on the thread count or on how a prompt was cut into chunks (bit for bit).
 * Why heads go in groups: the cache is token-major ([ctx, n_kv_head, head_dim]), so one head's keys sit a row
 * apart; the query heads that share a KV head read each K/V row once together. Per head the arithmetic and its
 * order are exactly those of a one-head loop, so grouping changes no bit.
 */
#ifndef EM_REF_ATTENTION_CORE_H
#define EM_REF_ATTENTION_CORE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "ops.h"
#include "util.h"

#ifdef EM_HAVE_OPENMP
#include <omp.h>
#endif

#define EM_ATT_BLOCK 64           /* keys per softmax block (stack scores) */
#define EM_ATT_HEADS 8            /* query heads of one KV group done together (stack: 8 x head_dim accumulators) */
#define EM_ATT_MIN_PAR (1u << 16) /* below this many multiply-adds one thread is faster than a fork/join */

/* sum_i a[i] * b[i], 8 partial sums (vectorised at -O2 without reassociation; fixed order) */
static inline float em_att_dot8(const float *restrict a, const float *restrict b, uint32_t n) {
    float s[8] = {0};
    const uint32_t n8 = n & ~7u;
    for (uint32_t i = 0; i < n8; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
    float tail = 0.0f;
    for (uint32_t i = n8; i < n; i++) tail += a[i] * b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail;
}

/* cos/sin of the rotary angles of absolute position p: cs[i], sn[i] for i < rope_dims / 2. The angle is formed
 * and its cos/sin taken in double, then rounded to f32 once (attention_ref.c says why). */
static inline void em_att_rope_angles(uint64_t p, uint32_t rope_dims, float base, float *cs, float *sn) {
    const uint32_t half = rope_dims / 2;
    for (uint32_t i = 0; i < half; i++) {
        const double th = (double)p * pow((double)base, -2.0 * (double)i / (double)rope_dims);
        cs[i] = (float)cos(th);
        sn[i] = (float)sin(th);
    }
}

/* rotate-half on dims [0, 2*half) of one head vector x (in place) */
static inline void em_att_rope_apply(float *x, uint32_t half, const float *cs, const float *sn) {
    for (uint32_t i = 0; i < half; i++) {
        const float x1 = x[i], x2 = x[i + half];
        x[i] = x1 * cs[i] - x2 * sn[i];
        x[i + half] = x2 * cs[i] + x1 * sn[i];
    }
}

/* y[i] += a * x[i] and y[i] *= a over n values, in the loop shape GCC vectorises at -O2 (see linear_ref.c) */
static inline void em_att_axpy8(float *restrict y, float a, const float *restrict x, uint32_t n) {
    const uint32_t n8 = n & ~7u;
    for (uint32_t i = 0; i < n8; i += 8)
        for (int k = 0; k < 8; k++) y[i + k] += a * x[i + k];
    for (uint32_t i = n8; i < n; i++) y[i] += a * x[i];
}
static inline void em_att_scale8(float *y, float a, uint32_t n) {
    const uint32_t n8 = n & ~7u;
    for (uint32_t i = 0; i < n8; i += 8)
        for (int k = 0; k < 8; k++) y[i + k] *= a;
    for (uint32_t i = n8; i < n; i++) y[i] *= a;
}

/* Row j of one KV head's cache as f32 (cache: that head's first element; crow: elements per cache row): the
 * f32 row itself, or the bf16 row widened exactly into tmp[hd]. */
static inline const float *em_att_row(const void *cache, size_t j, size_t crow, uint32_t hd, int bf16, float *tmp) {
    if (!bf16) return (const float *)cache + j * crow;
    const uint16_t *r = (const uint16_t *)cache + j * crow;
    for (uint32_t i = 0; i < hd; i++) tmp[i] = em_bf16_to_f32(r[i]);
    return tmp;
}

/* nh query heads of one KV head, one token: out[h] = softmax(q[h] K^T * scale) V over keys [0, n_keys).
 * HF's order: (q @ k^T) * scaling. */
static inline void em_att_attend_group(const float *q, uint32_t nh, const void *kc, const void *vc, size_t crow,
                                       uint32_t hd, uint32_t n_keys, float scale, float *out, int bf16) {
    float acc[EM_ATT_HEADS][EM_ATTN_MAX_HEAD_DIM]; /* [nh, hd] running sum of p_j * v_j, scaled to the running max */
    float sc[EM_ATT_HEADS][EM_ATT_BLOCK];          /* the block's scores, per head */
    float tmp[EM_ATTN_MAX_HEAD_DIM];               /* a widened row (bf16 caches) */
    float m[EM_ATT_HEADS], l[EM_ATT_HEADS];        /* running max, running sum of exp(score - m) */
    for (uint32_t h = 0; h < nh; h++) {
        for (uint32_t i = 0; i < hd; i++) acc[h][i] = 0.0f;
        m[h] = -INFINITY;
        l[h] = 0.0f;
    }
    for (uint32_t j0 = 0; j0 < n_keys; j0 += EM_ATT_BLOCK) {
        const uint32_t nb = n_keys - j0 < EM_ATT_BLOCK ? n_keys - j0 : EM_ATT_BLOCK;
        for (uint32_t j = 0; j < nb; j++) {
            const float *k = em_att_row(kc, j0 + j, crow, hd, bf16, tmp);
            for (uint32_t h = 0; h < nh; h++) sc[h][j] = em_att_dot8(q + (size_t)h * hd, k, hd) * scale;
        }
        for (uint32_t h = 0; h < nh; h++) {
            float bm = -INFINITY;
            for (uint32_t j = 0; j < nb; j++) bm = sc[h][j] > bm ? sc[h][j] : bm;
            if (bm > m[h]) { /* rescale what the earlier blocks summed (by 0 on the first block) */
                const float c = expf(m[h] - bm);
                l[h] *= c;
                em_att_scale8(acc[h], c, hd);
                m[h] = bm;
            }
            for (uint32_t j = 0; j < nb; j++) {
                sc[h][j] = expf(sc[h][j] - m[h]);
                l[h] += sc[h][j];
            }
        }
        for (uint32_t j = 0; j < nb; j++) {
            const float *v = em_att_row(vc, j0 + j, crow, hd, bf16, tmp);
            for (uint32_t h = 0; h < nh; h++) em_att_axpy8(acc[h], sc[h][j], v, hd);
        }
    }
    for (uint32_t h = 0; h < nh; h++) {
        const float inv = 1.0f / l[h]; /* l >= 1: the max's own term is exp(0) */
        for (uint32_t i = 0; i < hd; i++) out[(size_t)h * hd + i] = acc[h][i] * inv;
    }
}

/* Step 2 of both twins: every (token, group of up to EM_ATT_HEADS query heads of one KV head), causal over
 * cache rows [0, pos + t]. Query head h = g * rep + r reads KV head g (HF repeat_kv order). k_cache / v_cache:
 * the caches' first elements (bf16: uint16_t, else float); qs, os: elements per token row of q and out. */
static inline void em_att_all_groups(float *q, size_t qs, const void *k_cache, const void *v_cache, int bf16,
                                     uint32_t nt, uint32_t pos, uint32_t Hq, uint32_t Hkv, uint32_t hd, float scale,
                                     float *out, size_t os, int n_threads) {
    const size_t elem = bf16 ? sizeof(uint16_t) : sizeof(float);
    const size_t crow = (size_t)Hkv * hd; /* one cache row: all KV heads */
    const uint32_t rep = Hq / Hkv;
    const uint32_t n_sub = (rep + EM_ATT_HEADS - 1) / EM_ATT_HEADS; /* head batches per KV head */
    const int64_t n_tasks = (int64_t)nt * Hkv * n_sub;
#ifdef EM_HAVE_OPENMP /* without OpenMP the same loop runs on the calling thread */
    const uint64_t work = (uint64_t)nt * Hq * ((uint64_t)pos + nt) * hd;
    const int nth = n_threads > 0 ? n_threads : omp_get_num_procs();
#pragma omp parallel for schedule(static) num_threads(nth) if (work >= EM_ATT_MIN_PAR)
#else
    (void)n_threads;
#endif
    for (int64_t idx = 0; idx < n_tasks; idx++) {
        const uint32_t t = (uint32_t)(idx / ((int64_t)Hkv * n_sub));
        const uint32_t g = (uint32_t)(idx / n_sub % Hkv), r0 = (uint32_t)(idx % n_sub) * EM_ATT_HEADS;
        const uint32_t nh = rep - r0 < EM_ATT_HEADS ? rep - r0 : EM_ATT_HEADS, h0 = g * rep + r0;
        em_att_attend_group(q + t * qs + (size_t)h0 * hd, nh, (const char *)k_cache + (size_t)g * hd * elem,
                            (const char *)v_cache + (size_t)g * hd * elem, crow, hd, pos + t + 1, scale,
                            out + t * os + (size_t)h0 * hd, bf16);
    }
}

#endif /* EM_REF_ATTENTION_CORE_H */
