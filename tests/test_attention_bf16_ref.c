/*
 * test_attention_bf16_ref.c — the bf16-cache attention twin em_ref_attention_bf16 (kernels/ref/attention_bf16_ref.c)
 * against the f32 twin em_ref_attention (kernels/ref/attention_ref.c, itself proven against a double-precision
 * softmax by tests/test_ref_attn_mlp.c). What it proves, per case (a table of model shapes):
 *   1. exact inputs: with k/v already bf16-representable, the old cache rows the same values in both caches and
 *      RoPE off, the two twins agree to f32 rounding (limit 1e-6 relative; they sum in the same order, so the
 *      figure printed is normally 0): the bf16 twin's attention arithmetic is the f32 twin's.
 *   2. arbitrary k/v, RoPE on and off: the rows written are bf16(the f32 twin's rows) (<= 1 bf16 ulp, the count
 *      of inexact ones printed), the rotated q equal, untouched rows unchanged, and the outputs differ only by the
 *      effect of rounding k/v to bf16: limit 1e-2 relative (the measured figure is printed; rounding is <= 2^-9
 *      per element).
 *   3. chunk invariance: a prompt of n tokens in one call equals n calls of one token, bit for bit (outputs and
 *      cache), as the CUDA executor's decode after prefill relies on.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "testutil.h"
#include "util.h"

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

typedef struct bcase {
    uint32_t Hq, Hkv, hd, pos, n_tok, rope_dims;
    int strided; /* q, k, v inside one fused row [n_tok, (Hq + 2 Hkv) hd]; out rows padded by 5 */
    const char *what;
} bcase;

static const bcase cases[] = {
    { 4, 2, 64, 0, 1, 0, 0, "bundled hybrid (4/2 x 64), first token" },
    { 4, 2, 64, 100, 1, 0, 0, "bundled hybrid, decode at 100" },
    { 4, 2, 64, 0, 37, 0, 1, "bundled hybrid, prompt of 37, fused qkv rows" },
    { 4, 2, 64, 70, 9, 64, 0, "bundled hybrid, chunk 9 at 70, RoPE" },
    { 32, 8, 128, 300, 1, 0, 0, "hybrid 8B (32/8 x 128), decode at 300" },
    { 32, 8, 128, 129, 5, 128, 1, "hybrid 8B, chunk 5 at 129, RoPE, fused rows" },
    { 6, 2, 40, 50, 3, 20, 0, "odd: rep 3, head_dim 40, partial RoPE" },
};

static void fill_bf16(em_rng *r, uint16_t *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = em_f32_to_bf16(em_rng_uniform(r, scale));
}

/* |a - b| in bf16 ulps (same sign and finite assumed; anything else counts as far) */
static uint32_t ulps(uint16_t a, uint16_t b) {
    if ((a ^ b) & 0x8000u) return (a & 0x7fffu) == 0 && (b & 0x7fffu) == 0 ? 0 : 0xffffu;
    return a > b ? (uint32_t)(a - b) : (uint32_t)(b - a);
}

static void run_case(const bcase *c, em_rng *rng) {
    const uint32_t Hq = c->Hq, Hkv = c->Hkv, hd = c->hd, nt = c->n_tok, pos = c->pos;
    const uint32_t max_ctx = pos + nt + 3; /* 3 rows past the end that must stay untouched */
    const size_t crow = (size_t)Hkv * hd, ncache = (size_t)max_ctx * crow;
    const size_t fused = (size_t)(Hq + 2 * Hkv) * hd;
    const size_t qs = c->strided ? fused : (size_t)Hq * hd, kvs = c->strided ? fused : crow;
    const size_t os = (size_t)Hq * hd + (c->strided ? 5 : 0);
    const size_t n_in = (size_t)nt * (c->strided ? fused : (size_t)Hq * hd);
    float *qkv = xmalloc(((size_t)nt * fused + n_in) * 4); /* q [, k, v] rows; dense k and v after */
    em_fill_uniform(rng, qkv, (size_t)nt * fused + n_in, 2.0f);
    float *q0 = qkv, *k0, *v0;
    if (c->strided) {
        k0 = qkv + (size_t)Hq * hd;
        v0 = k0 + crow;
    } else {
        k0 = qkv + (size_t)nt * Hq * hd;
        v0 = k0 + (size_t)nt * crow;
    }
    uint16_t *kb = xmalloc(ncache * 2), *vb = xmalloc(ncache * 2);
    float *kf = xmalloc(ncache * 4), *vf = xmalloc(ncache * 4);
    float *qa = xmalloc(n_in * 4), *qb = xmalloc(n_in * 4);
    float *oa = xmalloc((size_t)nt * os * 4), *ob = xmalloc((size_t)nt * os * 4);
    float *kx = xmalloc((size_t)nt * kvs * 4), *vx = xmalloc((size_t)nt * kvs * 4);
    char label[160];

    for (int exact = 1; exact >= 0; exact--) {
        for (int rope = 0; rope <= (exact ? 0 : 1); rope++) {
            const uint32_t rd = rope ? (c->rope_dims ? c->rope_dims : hd) : 0;
            snprintf(label, sizeof label, "%s [%s, rope_dims %u]", c->what, exact ? "bf16-exact k/v" : "f32 k/v", rd);
            fill_bf16(rng, kb, ncache, 1.0f);
            fill_bf16(rng, vb, ncache, 1.0f);
            for (size_t i = 0; i < ncache; i++) kf[i] = em_bf16_to_f32(kb[i]), vf[i] = em_bf16_to_f32(vb[i]);
            for (size_t t = 0; t < nt; t++)
                for (size_t i = 0; i < crow; i++) {
                    float k = k0[t * kvs + i], v = v0[t * kvs + i];
                    if (exact) k = em_bf16_to_f32(em_f32_to_bf16(k)), v = em_bf16_to_f32(em_f32_to_bf16(v));
                    kx[t * kvs + i] = k;
                    vx[t * kvs + i] = v;
                }
            memcpy(qa, q0, n_in * 4);
            memcpy(qb, q0, n_in * 4);
            em_poison(oa, (size_t)nt * os);
            em_poison(ob, (size_t)nt * os);
            em_attn_args fa = { .q = qa, .k = kx, .v = vx, .k_cache = kf, .v_cache = vf, .out = oa, .n_tok = nt,
                                .n_head = Hq, .n_kv_head = Hkv, .head_dim = hd, .pos = pos, .max_ctx = max_ctx,
                                .q_stride = (uint32_t)qs, .kv_stride = (uint32_t)kvs, .out_stride = (uint32_t)os,
                                .rope_dims = rd, .rope_base = 10000.0f, .scale = 1.0f / sqrtf((float)hd) };
            em_attn_dev_args ba = { .q = qb, .k = kx, .v = vx, .k_cache = kb, .v_cache = vb, .out = ob, .n_tok = nt,
                                    .n_head = Hq, .n_kv_head = Hkv, .head_dim = hd, .pos = pos, .max_ctx = max_ctx,
                                    .q_stride = (uint32_t)qs, .kv_stride = (uint32_t)kvs,
                                    .out_stride = (uint32_t)os, .rope_dims = rd, .rope_base = 10000.0f,
                                    .scale = 1.0f / sqrtf((float)hd) };
            em_ref_attention(&fa);
            em_ref_attention_bf16(&ba);

            /* cache: rows outside [pos, pos + nt) untouched, the new rows bf16(f32 twin's rows) within 1 ulp */
            size_t far = 0, inexact = 0, moved = 0;
            for (size_t r = 0; r < max_ctx; r++)
                for (size_t i = 0; i < crow; i++) {
                    const size_t j = r * crow + i;
                    if (r >= pos && r < pos + nt) {
                        const uint32_t dk = ulps(kb[j], em_f32_to_bf16(kf[j])), dv = ulps(vb[j], em_f32_to_bf16(vf[j]));
                        inexact += (dk != 0) + (dv != 0);
                        far += (dk > 1) + (dv > 1);
                    } else {
                        moved += em_bf16_to_f32(kb[j]) != kf[j] || em_bf16_to_f32(vb[j]) != vf[j];
                    }
                }
            CHECK_MSG(far == 0, "%s: %zu cache values more than 1 bf16 ulp from bf16(f32 twin)", label, far);
            CHECK_MSG(moved == 0, "%s: %zu cache values changed outside the new rows", label, moved);
            /* q rotated in place the same way */
            double eq = 0;
            for (size_t t = 0; t < nt; t++) {
                const double e = em_max_rel_err(qb + t * qs, qa + t * qs, (size_t)Hq * hd, NULL);
                eq = e > eq ? e : eq;
            }
            CHECK_MSG(eq <= 1e-6, "%s: rotated q differs (%.3g)", label, eq);
            /* outputs (row padding stays NaN) */
            double eo = 0;
            size_t pad = 0;
            for (size_t t = 0; t < nt; t++) {
                const double e = em_max_rel_err(ob + t * os, oa + t * os, (size_t)Hq * hd, NULL);
                eo = e > eo ? e : eo;
                for (size_t i = (size_t)Hq * hd; i < os; i++) pad += !isnan(ob[t * os + i]);
            }
            const double tol = exact ? 1e-6 : 1e-2;
            CHECK_MSG(eo <= tol, "%s: out max rel err %.3g > %.3g", label, eo, tol);
            CHECK_MSG(pad == 0, "%s: %zu values written in out's row padding", label, pad);
            printf("  %-58s out rel err %.2e (limit %.0e), q %.1e, cache rows: %zu of %zu inexact by 1 ulp\n",
                   label, eo, tol, eq, inexact, (size_t)nt * crow * 2);
        }
    }

    /* 3. the same tokens one at a time: bit-identical outputs and cache (RoPE on when the case has it) */
    {
        const uint32_t rd = c->rope_dims;
        uint16_t *kb2 = xmalloc(ncache * 2), *vb2 = xmalloc(ncache * 2);
        fill_bf16(rng, kb, ncache, 1.0f);
        fill_bf16(rng, vb, ncache, 1.0f);
        memcpy(kb2, kb, ncache * 2);
        memcpy(vb2, vb, ncache * 2);
        memcpy(qa, q0, n_in * 4);
        memcpy(qb, q0, n_in * 4);
        em_attn_dev_args one = { .q = qa, .k = k0, .v = v0, .k_cache = kb, .v_cache = vb, .out = oa, .n_tok = nt,
                                 .n_head = Hq, .n_kv_head = Hkv, .head_dim = hd, .pos = pos, .max_ctx = max_ctx,
                                 .q_stride = (uint32_t)qs, .kv_stride = (uint32_t)kvs, .out_stride = (uint32_t)os,
                                 .rope_dims = rd, .rope_base = 500000.0f, .scale = 0.125f, .n_threads = 2 };
        em_ref_attention_bf16(&one);
        for (uint32_t t = 0; t < nt; t++) {
            em_attn_dev_args s = one;
            s.q = qb + t * qs;
            s.k = k0 + t * kvs;
            s.v = v0 + t * kvs;
            s.k_cache = kb2;
            s.v_cache = vb2;
            s.out = ob + t * os;
            s.n_tok = 1;
            s.pos = pos + t;
            s.n_threads = 1;
            em_ref_attention_bf16(&s);
        }
        int same = memcmp(kb, kb2, ncache * 2) == 0 && memcmp(vb, vb2, ncache * 2) == 0;
        for (size_t t = 0; t < nt && same; t++) same = memcmp(oa + t * os, ob + t * os, (size_t)Hq * hd * 4) == 0;
        CHECK_MSG(same, "%s: one call of %u tokens differs from %u calls of one", c->what, nt, nt);
        printf("  %-58s %u tokens in one call == one at a time: %s\n", c->what, nt, same ? "bit for bit" : "DIFFERS");
        free(kb2), free(vb2);
    }
    free(qkv), free(kb), free(vb), free(kf), free(vf), free(qa), free(qb), free(oa), free(ob), free(kx), free(vx);
}

int main(void) {
    em_rng rng;
    em_rng_seed(&rng, 9009);
    for (size_t i = 0; i < LEN(cases); i++) run_case(&cases[i], &rng);
    return em_test_finish("test_attention_bf16_ref");
}
