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
 * Order of work (what the CUDA kernels are compared with, not what they must copy): per (token, group of up to
 * ATT_HEADS query heads of one KV head), keys in blocks of ATT_BLOCK at absolute positions 0, 64, ...; one
 * online-softmax rescale per block. Each (token, head) is computed by one thread in a fixed order, so the result
 * does not depend on the thread count or on how a prompt was cut into chunks (bit for bit).
 */
#include <math.h>
#include <stdint.h>

#include "ops.h"
#include "util.h"

#ifdef EM_HAVE_OPENMP
#include <omp.h>
#endif

#define ATT_BLOCK 64           /* keys per softmax block */
#define ATT_HEADS 8            /* query heads of one KV group done together */
#define ATT_MIN_PAR (1u << 16) /* below this many multiply-adds one thread is faster than a fork/join */

// ---- helpers ------------------------------------------------------------------------------------------

/* dst[i] = f32(src[i]) for one bf16 cache row of one head */
static void widen(float *restrict dst, const uint16_t *restrict src, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) dst[i] = em_bf16_to_f32(src[i]);
}

/* sum_i a[i] * b[i], 8 partial sums in a fixed order */
static float dot8(const float *restrict a, const float *restrict b, uint32_t n) {
    float s[8] = {0};
    const uint32_t n8 = n & ~7u;
    for (uint32_t i = 0; i < n8; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
    float tail = 0.0f;
    for (uint32_t i = n8; i < n; i++) tail += a[i] * b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail;
}

/* cos/sin of the rotary angles of absolute position p (as attention_ref.c: double, rounded once) */
static void rope_angles(uint64_t p, uint32_t rope_dims, float base, float *cs, float *sn) {
    const uint32_t half = rope_dims / 2;
    for (uint32_t i = 0; i < half; i++) {
        const double th = (double)p * pow((double)base, -2.0 * (double)i / (double)rope_dims);
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

// ---- nh query heads of one KV head, one token: keys [0, n_keys) of the bf16 cache -------------------------------

static void attend_heads_bf16(const float *q, uint32_t nh, const uint16_t *kc, const uint16_t *vc, size_t crow,
                              uint32_t hd, uint32_t n_keys, float scale, float *out) {
    float acc[ATT_HEADS][EM_ATTN_MAX_HEAD_DIM]; /* [nh, hd] running sum of p_j * v_j, scaled to the running max */
    float sc[ATT_HEADS][ATT_BLOCK];             /* the block's scores */
    float row[EM_ATTN_MAX_HEAD_DIM];            /* one K or V row widened to f32 */
    float m[ATT_HEADS], l[ATT_HEADS];
    for (uint32_t h = 0; h < nh; h++) {
        for (uint32_t i = 0; i < hd; i++) acc[h][i] = 0.0f;
        m[h] = -INFINITY;
        l[h] = 0.0f;
    }
    for (uint32_t j0 = 0; j0 < n_keys; j0 += ATT_BLOCK) {
        const uint32_t nb = n_keys - j0 < ATT_BLOCK ? n_keys - j0 : ATT_BLOCK;
        for (uint32_t j = 0; j < nb; j++) {
            widen(row, kc + (size_t)(j0 + j) * crow, hd);
            for (uint32_t h = 0; h < nh; h++) sc[h][j] = dot8(q + (size_t)h * hd, row, hd) * scale;
        }
        for (uint32_t h = 0; h < nh; h++) {
            float bm = -INFINITY;
            for (uint32_t j = 0; j < nb; j++) bm = sc[h][j] > bm ? sc[h][j] : bm;
            if (bm > m[h]) { /* rescale what the earlier blocks summed (by 0 on the first block) */
                const float c = expf(m[h] - bm);
                l[h] *= c;
                for (uint32_t i = 0; i < hd; i++) acc[h][i] *= c;
                m[h] = bm;
            }
            for (uint32_t j = 0; j < nb; j++) {
                sc[h][j] = expf(sc[h][j] - m[h]);
                l[h] += sc[h][j];
            }
        }
        for (uint32_t j = 0; j < nb; j++) {
            widen(row, vc + (size_t)(j0 + j) * crow, hd);
            for (uint32_t h = 0; h < nh; h++) {
                const float p = sc[h][j];
                float *ah = acc[h];
                for (uint32_t i = 0; i < hd; i++) ah[i] += p * row[i];
            }
        }
    }
    for (uint32_t h = 0; h < nh; h++) {
        const float inv = 1.0f / l[h]; /* l >= 1: the max's own term is exp(0) */
        for (uint32_t i = 0; i < hd; i++) out[(size_t)h * hd + i] = acc[h][i] * inv;
    }
}

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
    const uint32_t rep = Hq / Hkv, half = a->rope_dims / 2;

    /* 1. RoPE on q (in place) and on the new keys; k and v rounded to bf16 into cache rows [pos, pos + n_tok) */
    for (uint32_t t = 0; t < nt; t++) {
        const uint64_t p = (uint64_t)a->pos + t;
        uint16_t *kc = a->k_cache + p * crow, *vc = a->v_cache + p * crow;
        const float *k = a->k + t * kvs, *v = a->v + t * kvs;
        float cs[EM_ATTN_MAX_HEAD_DIM / 2], sn[EM_ATTN_MAX_HEAD_DIM / 2], kr[EM_ATTN_MAX_HEAD_DIM];
        if (half) {
            rope_angles(p, a->rope_dims, a->rope_base, cs, sn);
            for (uint32_t h = 0; h < Hq; h++) rope_apply(a->q + t * qs + (size_t)h * hd, half, cs, sn);
        }
        for (uint32_t g = 0; g < Hkv; g++) {
            for (uint32_t i = 0; i < hd; i++) kr[i] = k[(size_t)g * hd + i];
            if (half) rope_apply(kr, half, cs, sn);
            for (uint32_t i = 0; i < hd; i++) {
                kc[(size_t)g * hd + i] = em_f32_to_bf16(kr[i]);
                vc[(size_t)g * hd + i] = em_f32_to_bf16(v[(size_t)g * hd + i]);
            }
        }
    }

    /* 2. every (token, group of up to ATT_HEADS query heads of one KV head): causal over rows [0, pos + t] */
    const uint32_t n_sub = (rep + ATT_HEADS - 1) / ATT_HEADS;
    const int64_t n_tasks = (int64_t)nt * Hkv * n_sub;
#ifdef EM_HAVE_OPENMP
    const uint64_t work = (uint64_t)nt * Hq * ((uint64_t)a->pos + nt) * hd;
    const int nth = a->n_threads > 0 ? a->n_threads : omp_get_num_procs();
#pragma omp parallel for schedule(dynamic, 1) num_threads(nth) if (work >= ATT_MIN_PAR)
#endif
    for (int64_t idx = 0; idx < n_tasks; idx++) {
        const uint32_t t = (uint32_t)(idx / ((int64_t)Hkv * n_sub));
        const uint32_t g = (uint32_t)(idx / n_sub % Hkv), r0 = (uint32_t)(idx % n_sub) * ATT_HEADS;
        const uint32_t nh = rep - r0 < ATT_HEADS ? rep - r0 : ATT_HEADS, h0 = g * rep + r0;
        attend_heads_bf16(a->q + t * qs + (size_t)h0 * hd, nh, a->k_cache + (size_t)g * hd,
                          a->v_cache + (size_t)g * hd, crow, hd, a->pos + t + 1, a->scale,
                          a->out + t * os + (size_t)h0 * hd);
    }
}
