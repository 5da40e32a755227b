/*
 * test_attention_cuda.c — em_cuda_attention (kernels/attention.cu: split-K decode, flash-attention prefill, over a
 * BF16 KV cache) against its float32 C twin em_ref_attention_bf16 (kernels/ref/attention_bf16_ref.c, itself proven
 * against em_ref_attention by tests/test_attention_bf16_ref.c). Shapes: the bundled hybrid (models/README.md: 4 query
 * heads, 2 KV heads, head_dim 64, d_model 192), the hybrid 8B (32 / 8 heads x 128, d_model 4096), and odd GQA ratios.
 * Decode at contexts 1, 2, 511, 4096 and 32768; prefill chunks of 1, 7, 63, 65, 128, 129 and 500 tokens at positions
 * 0, 1000, 4096 and 8191, each on the three prefill kernels (the tensor-core one, the default for n_tok > 1; the fp32
 * SIMT one; the tensor-core one with plain shared loads in place of ldmatrix, which isolates a wrong ldmatrix
 * addressing from a wrong MMA fragment layout); RoPE off (the hybrids) and on (full and partial rotation). Fresh
 * seeded random inputs per case; out and the workspace are poisoned (NaN) before the run, and so are the cache rows
 * past pos + n_tok (a read past the causal end poisons the output). Per case it checks, and prints the measured figures:
 *   - out against the twin, max relative error <= 1e-2 (decode and the SIMT prefill sum in another order, fp32:
 *     expect ~1e-6; the tensor-core prefill rounds q * scale * log2 e and P to bf16: a CPU model of that rounding
 *     gives 1.9e-3 .. 3.1e-3 on these shapes);
 *     out's row padding still NaN in the strided cases;
 *   - q rotated in place as the twin rotates it (<= 1e-6);
 *   - the new cache rows equal the twin's bf16 rows (<= 1 bf16 ulp; the count of inexact ones printed, expect 0),
 *     every other cache row unchanged bit for bit;
 *   - decode run twice gives the same bits (deterministic split-K combine).
 * The launcher's refusals are checked without a launch.
 *
 * Without a CUDA device it prints "SKIP test_attention_cuda: no CUDA device" and exits 77 (ctest: Skipped).
 *   build/tests/test_attention_cuda          # check
 *   build/tests/test_attention_cuda --perf   # + decode on the hybrid 8B shape at context 512, 4K, 32K (us, GB/s of
 *                                            #   K+V bytes, % of the read bandwidth measured in the same run), and
 *                                            #   prefill 512 at 0, 4096 and 32256 on the SIMT and the tensor-core
 *                                            #   kernels (us, TFLOP/s of causal attention, the ratio)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "cuda_ops.h"
#include "cuda_rt.h"
#include "gpu_test.h"
#include "ops.h"
#include "testutil.h"
#include "util.h"

#ifndef EM_HAVE_CUDA
#error "test_attention_cuda is built only with CUDA (tests/hybrid_cuda.cmake)"
#endif

#define TOL 1e-2
#define LEN(a) (sizeof(a) / sizeof((a)[0]))
#define POISON_BF16 0xffffu /* a NaN */

typedef struct attn_case {
    uint32_t Hq, Hkv, hd;
    uint32_t pos, n_tok;
    uint32_t rope_dims; /* 0 = off */
    int path;           /* em_cuda_attention_path: 0 by n_tok, 2 = the prefill kernels for any n_tok (a prefill case
                           runs on each: tensor-core, SIMT, tensor-core with plain shared loads) */
    int fused;          /* q, k, v inside one row [n_tok, (Hq + 2 Hkv) hd] (the executor's qkv projection); out padded */
    int twice;          /* run again and require the same bits */
    const char *what;
    int dev_pos;        /* the position from device memory (em_attn_dev_args.pos_dev), as a captured decode step */
    uint32_t slack;     /* cache rows past pos + n_tok (poisoned); 0 = 4 */
} attn_case;

/* shapes */
#define SMALL 4, 2, 64   /* the bundled hybrid (models/README.md) */
#define H8B 32, 8, 128   /* hybrid 8B */

static const attn_case cases[] = {
    // decode (n_tok 1) at context 1, 2, 511, 4096, 32768 (pos = context - 1), RoPE off and on
    { SMALL, 0, 1, 0, 0, 0, 0, .what = "bundled, decode ctx 1" },
    { SMALL, 1, 1, 0, 0, 0, 0, .what = "bundled, decode ctx 2" },
    { SMALL, 510, 1, 0, 0, 0, 0, .what = "bundled, decode ctx 511" },
    { SMALL, 4095, 1, 0, 0, 0, 0, .what = "bundled, decode ctx 4096" },
    { SMALL, 32767, 1, 0, 0, 0, 0, .what = "bundled, decode ctx 32768" },
    { SMALL, 0, 1, 64, 0, 0, 0, .what = "bundled, decode ctx 1, RoPE" },
    { SMALL, 1, 1, 64, 0, 0, 0, .what = "bundled, decode ctx 2, RoPE" },
    { SMALL, 510, 1, 64, 0, 0, 0, .what = "bundled, decode ctx 511, RoPE" },
    { SMALL, 4095, 1, 64, 0, 0, 0, .what = "bundled, decode ctx 4096, RoPE" },
    { SMALL, 32767, 1, 64, 0, 0, 0, .what = "bundled, decode ctx 32768, RoPE" },
    { H8B, 0, 1, 0, 0, 0, 0, .what = "8B, decode ctx 1" },
    { H8B, 1, 1, 0, 0, 0, 0, .what = "8B, decode ctx 2" },
    { H8B, 510, 1, 0, 0, 0, 0, .what = "8B, decode ctx 511" },
    { H8B, 4095, 1, 0, 0, 0, 1, .what = "8B, decode ctx 4096, run twice" },
    { H8B, 32767, 1, 0, 0, 0, 0, .what = "8B, decode ctx 32768" },
    { H8B, 0, 1, 128, 0, 0, 0, .what = "8B, decode ctx 1, RoPE" },
    { H8B, 1, 1, 128, 0, 0, 0, .what = "8B, decode ctx 2, RoPE" },
    { H8B, 510, 1, 128, 0, 0, 0, .what = "8B, decode ctx 511, RoPE" },
    { H8B, 4095, 1, 128, 0, 0, 0, .what = "8B, decode ctx 4096, RoPE" },
    { H8B, 32767, 1, 128, 0, 0, 0, .what = "8B, decode ctx 32768, RoPE" },
    { H8B, 1000, 1, 0, 0, 1, 0, .what = "8B, decode at 1000, fused qkv rows" },
    // prefill chunks of 1 (the prefill kernel forced), 7, 128 at positions 0 and 1000, RoPE off and on
    { SMALL, 0, 1, 0, 2, 0, 0, .what = "bundled, prefill kernel, 1 at 0" },
    { SMALL, 1000, 1, 0, 2, 0, 0, .what = "bundled, prefill kernel, 1 at 1000" },
    { SMALL, 0, 7, 0, 0, 0, 0, .what = "bundled, chunk 7 at 0" },
    { SMALL, 1000, 7, 0, 0, 0, 0, .what = "bundled, chunk 7 at 1000" },
    { SMALL, 0, 128, 0, 0, 0, 0, .what = "bundled, chunk 128 at 0" },
    { SMALL, 1000, 128, 0, 0, 0, 0, .what = "bundled, chunk 128 at 1000" },
    { SMALL, 0, 1, 64, 2, 0, 0, .what = "bundled, prefill kernel, 1 at 0, RoPE" },
    { SMALL, 1000, 1, 64, 2, 0, 0, .what = "bundled, prefill kernel, 1 at 1000, RoPE" },
    { SMALL, 0, 7, 64, 0, 0, 0, .what = "bundled, chunk 7 at 0, RoPE" },
    { SMALL, 1000, 7, 64, 0, 0, 0, .what = "bundled, chunk 7 at 1000, RoPE" },
    { SMALL, 0, 128, 64, 0, 0, 0, .what = "bundled, chunk 128 at 0, RoPE" },
    { SMALL, 1000, 128, 64, 0, 0, 0, .what = "bundled, chunk 128 at 1000, RoPE" },
    { H8B, 0, 1, 0, 2, 0, 0, .what = "8B, prefill kernel, 1 at 0" },
    { H8B, 1000, 1, 0, 2, 0, 0, .what = "8B, prefill kernel, 1 at 1000" },
    { H8B, 0, 7, 0, 0, 0, 0, .what = "8B, chunk 7 at 0" },
    { H8B, 1000, 7, 0, 0, 0, 0, .what = "8B, chunk 7 at 1000" },
    { H8B, 0, 128, 0, 0, 0, 0, .what = "8B, chunk 128 at 0" },
    { H8B, 1000, 128, 0, 0, 0, 0, .what = "8B, chunk 128 at 1000" },
    { H8B, 0, 1, 128, 2, 0, 0, .what = "8B, prefill kernel, 1 at 0, RoPE" },
    { H8B, 1000, 1, 128, 2, 0, 0, .what = "8B, prefill kernel, 1 at 1000, RoPE" },
    { H8B, 0, 7, 128, 0, 0, 0, .what = "8B, chunk 7 at 0, RoPE" },
    { H8B, 1000, 7, 128, 0, 0, 0, .what = "8B, chunk 7 at 1000, RoPE" },
    { H8B, 0, 128, 128, 0, 0, 0, .what = "8B, chunk 128 at 0, RoPE" },
    { H8B, 1000, 128, 128, 0, 0, 0, .what = "8B, chunk 128 at 1000, RoPE" },
    { H8B, 1000, 37, 0, 0, 1, 0, .what = "8B, chunk 37 at 1000, fused qkv rows" },
    // other GQA ratios and partial rotation: rep 3 (REP 1 x 3 head chunks), rep 8 (REP 8), rep 1, rope on half the dims
    { 12, 4, 128, 2999, 1, 0, 0, 0, 0, .what = "rep 3, decode ctx 3000" },
    { 12, 4, 128, 300, 19, 0, 0, 0, 0, .what = "rep 3, chunk 19 at 300" },
    { 16, 2, 64, 5000, 1, 32, 0, 0, 0, .what = "rep 8, decode ctx 5001, RoPE on 32 of 64" },
    { 16, 2, 64, 77, 50, 32, 0, 1, 0, .what = "rep 8, chunk 50 at 77, RoPE 32/64, fused" },
    { 8, 8, 128, 1500, 1, 0, 0, 0, 0, .what = "rep 1 (MHA), decode ctx 1501" },
    { 8, 8, 128, 64, 65, 0, 0, 0, 0, .what = "rep 1 (MHA), chunk 65 at 64" },
    // the tensor-core prefill's edges: chunks that are not multiples of its 64-row / 64-key tiles (1, 7, 63, 65, 129,
    // 500), positions 0, 1000 and long ones (4096, 8191: many key tiles, the causal edge mid-tile), the 8B (rep 4) and
    // the bundled (rep 2) shapes, RoPE off and on (every prefill case runs on the SIMT and tensor-core kernels)
    { H8B, 0, 63, 0, 0, 0, 0, .what = "8B, chunk 63 at 0" },
    { H8B, 0, 65, 128, 0, 0, 0, .what = "8B, chunk 65 at 0, RoPE" },
    { H8B, 1000, 129, 0, 0, 0, 0, .what = "8B, chunk 129 at 1000" },
    { H8B, 0, 500, 0, 0, 0, 0, .what = "8B, chunk 500 at 0" },
    { H8B, 1000, 500, 128, 0, 0, 0, .what = "8B, chunk 500 at 1000, RoPE" },
    { H8B, 4096, 65, 0, 0, 0, 0, .what = "8B, chunk 65 at 4096" },
    { H8B, 8191, 63, 128, 0, 0, 0, .what = "8B, chunk 63 at 8191, RoPE" },
    { H8B, 8191, 129, 0, 0, 0, 0, .what = "8B, chunk 129 at 8191" },
    { H8B, 8191, 1, 0, 2, 0, 0, .what = "8B, prefill kernels, 1 at 8191" },
    { SMALL, 0, 63, 0, 0, 0, 0, .what = "bundled, chunk 63 at 0" },
    { SMALL, 0, 65, 64, 0, 0, 0, .what = "bundled, chunk 65 at 0, RoPE" },
    { SMALL, 1000, 129, 64, 0, 0, 0, .what = "bundled, chunk 129 at 1000, RoPE" },
    { SMALL, 1000, 500, 0, 0, 0, 0, .what = "bundled, chunk 500 at 1000" },
    { SMALL, 4096, 7, 0, 0, 0, 0, .what = "bundled, chunk 7 at 4096" },
    { SMALL, 8191, 500, 64, 0, 0, 0, .what = "bundled, chunk 500 at 8191, RoPE" },
    { SMALL, 8191, 1, 64, 2, 0, 0, .what = "bundled, prefill kernels, 1 at 8191, RoPE" },
    { 16, 2, 64, 4000, 33, 0, 0, 1, 0, .what = "rep 8, chunk 33 at 4000, fused" },
    // the position read on the device (pos_dev): decode sized for max_ctx, the splits past the context empty
    { H8B, 1000, 1, 0, 0, 0, 0, .what = "8B, decode ctx 1001, pos_dev, max_ctx 32005", .dev_pos = 1, .slack = 31004 },
    { SMALL, 5, 1, 64, 0, 0, 0, .what = "bundled, decode ctx 6, pos_dev, RoPE", .dev_pos = 1, .slack = 4000 },
    { H8B, 1000, 7, 128, 0, 0, 0, .what = "8B, chunk 7 at 1000, pos_dev, RoPE", .dev_pos = 1 },
};

static void fill_bf16(em_rng *r, uint16_t *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = em_f32_to_bf16(em_rng_uniform(r, scale));
}

static uint32_t ulps(uint16_t a, uint16_t b) {
    if ((a ^ b) & 0x8000u) return (a & 0x7fffu) == 0 && (b & 0x7fffu) == 0 ? 0 : 0xffffu;
    return a > b ? (uint32_t)(a - b) : (uint32_t)(b - a);
}

// ---- one case -------------------------------------------------------------------------------------------------

static const char *path_name(int path, uint32_t nt, int dev_pos) {
    switch (path) {
    case 0: return nt == 1 ? (dev_pos ? "dec/dev" : "decode") : "pf-tc"; /* the default: tensor cores for n_tok > 1 */
    case 1: return "decode";
    case 2: return "pf-simt";
    case 3: return "pf-tc";
    default: return "pf-tc/ld"; /* tensor cores, fragments by plain shared loads */
    }
}

/* One run of the device on a case's inputs (fresh copies) on `path`, checked against the twin's results (ra: the
 * twin's arguments, whose sizes and strides the device copies; in_ref: q after the twin's RoPE). */
static void run_device(const attn_case *c, int path, const em_attn_dev_args *ra, const float *in, size_t off_k,
                       size_t off_v, const uint16_t *kc0, const uint16_t *vc0, const float *out_ref,
                       const float *in_ref, const uint16_t *kc_ref, const uint16_t *vc_ref) {
    const uint32_t Hq = c->Hq, Hkv = c->Hkv, hd = c->hd, nt = c->n_tok, pos = c->pos, max_ctx = ra->max_ctx;
    const size_t crow = (size_t)Hkv * hd, ncache = (size_t)max_ctx * crow, qrow = (size_t)Hq * hd;
    const size_t qs = ra->q_stride, os = ra->out_stride, n_in = (size_t)nt * (qrow + 2 * crow);

    const size_t ws_bytes = em_cuda_attention_workspace_bytes(max_ctx, Hq, hd);
    float *d_in = em_gpu_dup(in, n_in * 4), *d_out = em_gpu_poisoned((size_t)nt * os * 4);
    uint16_t *d_kc = em_gpu_dup(kc0, ncache * 2), *d_vc = em_gpu_dup(vc0, ncache * 2);
    void *d_ws = em_gpu_poisoned(ws_bytes);
    const int ok = d_in && d_out && d_kc && d_vc && d_ws;
    em_attn_dev_args ga = *ra;
    ga.q = d_in;
    ga.k = d_in + off_k;
    ga.v = d_in + off_v;
    ga.k_cache = d_kc;
    ga.v_cache = d_vc;
    ga.out = d_out;
    uint32_t *d_pos = c->dev_pos ? em_gpu_dup(&pos, sizeof pos) : NULL;
    if (c->dev_pos) {
        ga.pos_dev = d_pos;
        ga.pos = 0; /* ignored: a wrong value here must change nothing */
    }
    char label[200];
    snprintf(label, sizeof label, "%s [Hq %u Hkv %u hd %u, pos %u, n_tok %u, rope %u, path %d]", c->what, Hq, Hkv, hd,
             pos, nt, c->rope_dims, path);
    CHECK_MSG(em_cuda_attention_supported(&ga), "%s: not supported", label);
    const int splits = nt == 1 && path < 2 ? em_cuda_attention_splits(&ga) : 0;
    em_status st = ok && (!c->dev_pos || d_pos) ? em_cuda_attention_path(&ga, d_ws, ws_bytes, NULL, path) : EM_ERR_DEVICE;
    if (st == EM_OK) st = em_cuda_sync(NULL);
    CHECK_MSG(st == EM_OK, "%s: %s (%s)", label, em_status_str(st), em_last_error());

    float *out = em_xmalloc((size_t)nt * os * 4), *in_got = em_xmalloc(n_in * 4);
    uint16_t *kc = em_xmalloc(ncache * 2), *vc = em_xmalloc(ncache * 2);
    double err = INFINITY, err_q = INFINITY;
    size_t far = 0, inexact = 0, moved = 0;
    int same = -1; /* -1: not asked */
    if (st == EM_OK && em_gpu_fetch(out, d_out, (size_t)nt * os * 4) && em_gpu_fetch(in_got, d_in, n_in * 4) &&
        em_gpu_fetch(kc, d_kc, ncache * 2) && em_gpu_fetch(vc, d_vc, ncache * 2)) {
        err = em_gpu_check_rows(label, out, out_ref, nt, qrow, os, 1, TOL);
        err_q = 0;
        for (size_t t = 0; t < nt; t++) {
            const double e = em_max_rel_err(in_got + t * qs, in_ref + t * qs, qrow, NULL);
            err_q = e > err_q ? e : err_q;
        }
        CHECK_MSG(err_q <= 1e-6, "%s: q after RoPE differs from the twin's: %.3g", label, err_q);
        for (size_t r = 0; r < max_ctx; r++)
            for (size_t i = 0; i < crow; i++) {
                const size_t j = r * crow + i;
                if (r >= pos && r < pos + nt) {
                    const uint32_t dk = ulps(kc[j], kc_ref[j]), dv = ulps(vc[j], vc_ref[j]);
                    inexact += (dk != 0) + (dv != 0);
                    far += (dk > 1) + (dv > 1);
                } else {
                    moved += kc[j] != kc0[j] || vc[j] != vc0[j];
                }
            }
        CHECK_MSG(far == 0, "%s: %zu new cache values more than 1 bf16 ulp from the twin's", label, far);
        CHECK_MSG(moved == 0, "%s: %zu cache values changed outside rows [pos, pos + n_tok)", label, moved);
        if (c->twice) { /* RoPE off in these cases: q is unchanged, the same call again */
            float *out2 = em_xmalloc((size_t)nt * os * 4);
            st = em_cuda_attention_path(&ga, d_ws, ws_bytes, NULL, path);
            if (st == EM_OK) st = em_cuda_sync(NULL);
            CHECK_MSG(st == EM_OK, "%s, second run: %s (%s)", label, em_status_str(st), em_last_error());
            same = st == EM_OK && em_gpu_fetch(out2, d_out, (size_t)nt * os * 4) &&
                   memcmp(out2, out, (size_t)nt * os * 4) == 0;
            CHECK_MSG(same, "%s: a second run gave other bits", label);
            free(out2);
        }
    }
    printf("  %-46s %2u/%u x %3u pos %5u n_tok %3u rope %3u %-8s splits %2d: rel err %.2e, q %.1e, new cache rows "
           "%zu inexact%s %s\n", c->what, Hq, Hkv, hd, pos, nt, c->rope_dims,
           path_name(path, nt, c->dev_pos), splits, err, err_q, inexact,
           same < 0 ? "" : same ? ", rerun same bits" : ", RERUN DIFFERS",
           err <= TOL && far == 0 && moved == 0 && err_q <= 1e-6 && same != 0 ? "ok" : "FAIL");

    em_cuda_free(d_in), em_cuda_free(d_out), em_cuda_free(d_kc), em_cuda_free(d_vc), em_cuda_free(d_ws);
    em_cuda_free(d_pos);
    free(out), free(in_got), free(kc), free(vc);
}

static void run_case(const attn_case *c, em_rng *rng) {
    const uint32_t Hq = c->Hq, Hkv = c->Hkv, hd = c->hd, nt = c->n_tok, pos = c->pos;
    const uint32_t max_ctx = pos + nt + (c->slack ? c->slack : 4); /* poisoned rows past the end */
    const size_t crow = (size_t)Hkv * hd, ncache = (size_t)max_ctx * crow, qrow = (size_t)Hq * hd;
    const size_t fused = qrow + 2 * crow;
    const size_t qs = c->fused ? fused : qrow, kvs = c->fused ? fused : crow, os = qrow + (c->fused ? 8 : 0);
    /* inputs: one buffer; fused: [nt, fused] rows holding q | k | v; else q [nt, qrow] | k [nt, crow] | v [nt, crow] */
    const size_t n_in = (size_t)nt * fused;
    float *in = em_xmalloc(n_in * 4);
    em_fill_uniform(rng, in, n_in, 1.0f);
    for (size_t t = 0; t < nt; t++) /* q a little larger: peakier softmax than uniform k alone gives */
        for (size_t i = 0; i < qrow; i++) in[t * qs + i] *= 3.0f;
    const size_t off_k = c->fused ? qrow : (size_t)nt * qrow, off_v = c->fused ? qrow + crow : off_k + (size_t)nt * crow;
    uint16_t *kc0 = em_xmalloc(ncache * 2), *vc0 = em_xmalloc(ncache * 2);
    fill_bf16(rng, kc0, (size_t)pos * crow, 1.0f);
    fill_bf16(rng, vc0, (size_t)pos * crow, 1.0f);
    for (size_t i = (size_t)pos * crow; i < ncache; i++) kc0[i] = vc0[i] = POISON_BF16;

    /* the twin */
    float *in_ref = em_xmalloc(n_in * 4), *out_ref = em_xmalloc((size_t)nt * os * 4);
    uint16_t *kc_ref = em_xmalloc(ncache * 2), *vc_ref = em_xmalloc(ncache * 2);
    memcpy(in_ref, in, n_in * 4);
    memcpy(kc_ref, kc0, ncache * 2);
    memcpy(vc_ref, vc0, ncache * 2);
    em_poison(out_ref, (size_t)nt * os);
    em_attn_dev_args ra = { .q = in_ref, .k = in_ref + off_k, .v = in_ref + off_v, .k_cache = kc_ref,
                            .v_cache = vc_ref, .out = out_ref, .n_tok = nt, .n_head = Hq, .n_kv_head = Hkv,
                            .head_dim = hd, .pos = pos, .max_ctx = max_ctx, .q_stride = (uint32_t)qs,
                            .kv_stride = (uint32_t)kvs, .out_stride = (uint32_t)os, .rope_dims = c->rope_dims,
                            .rope_base = 10000.0f, .scale = 1.0f / sqrtf((float)hd) };
    em_ref_attention_bf16(&ra);

    /* the device: decode cases once (path as given); prefill cases (n_tok > 1, or the prefill kernels forced) once
     * per prefill kernel: the fp32 SIMT one (2), the tensor-core one (3: what path 0 picks), and the tensor-core one
     * with its fragments loaded by plain shared loads (4: a check of its ldmatrix addressing) */
    const int prefill = c->path >= 2 || (c->path == 0 && nt > 1);
    const int paths[3] = { c->path == 0 ? 0 : 3, 2, 4 }; /* 0 with n_tok > 1: the default, the tensor-core kernel */
    for (int pi = 0; pi < (prefill ? 3 : 1); pi++)
        run_device(c, paths[pi], &ra, in, off_k, off_v, kc0, vc0, out_ref, in_ref, kc_ref, vc_ref);
    free(in), free(kc0), free(vc0), free(in_ref), free(out_ref), free(kc_ref), free(vc_ref);
}

/* The executor's use: one decode step (attention, then pos_dev += 1) captured once in a CUDA graph and replayed for
 * consecutive positions p0, p0 + 1, ... with fresh q/k/v each step; each step's output against the twin at that
 * position, and the whole cache at the end (the rows never written keep their random contents on both sides). */
static void check_graph(uint32_t Hq, uint32_t Hkv, uint32_t hd, uint32_t max_ctx, uint32_t p0, int steps,
                        uint32_t rope, em_rng *rng) {
    const size_t crow = (size_t)Hkv * hd, ncache = (size_t)max_ctx * crow, qrow = (size_t)Hq * hd;
    const size_t n_in = qrow + 2 * crow;
    float *in = em_xmalloc(n_in * 4), *out = em_xmalloc(qrow * 4), *out_ref = em_xmalloc(qrow * 4);
    uint16_t *kc_ref = em_xmalloc(ncache * 2), *vc_ref = em_xmalloc(ncache * 2);
    uint16_t *kc = em_xmalloc(ncache * 2), *vc = em_xmalloc(ncache * 2);
    fill_bf16(rng, kc_ref, ncache, 1.0f);
    fill_bf16(rng, vc_ref, ncache, 1.0f);
    const size_t ws_bytes = em_cuda_attention_workspace_bytes(max_ctx, Hq, hd);
    float *d_in = em_gpu_poisoned(n_in * 4), *d_out = em_gpu_poisoned(qrow * 4);
    uint16_t *d_kc = em_gpu_dup(kc_ref, ncache * 2), *d_vc = em_gpu_dup(vc_ref, ncache * 2);
    uint32_t *d_pos = em_gpu_dup(&p0, sizeof p0);
    void *d_ws = em_gpu_poisoned(ws_bytes);
    char label[160];
    snprintf(label, sizeof label, "graph replay %u/%u x %u, max_ctx %u, positions %u..%u, rope %u", Hq, Hkv, hd,
             max_ctx, p0, p0 + steps - 1, rope);
    em_attn_dev_args ga = { .q = d_in, .k = d_in + qrow, .v = d_in + qrow + crow, .k_cache = d_kc, .v_cache = d_vc,
                            .out = d_out, .n_tok = 1, .n_head = Hq, .n_kv_head = Hkv, .head_dim = hd,
                            .max_ctx = max_ctx, .rope_dims = rope, .rope_base = 10000.0f,
                            .scale = 1.0f / sqrtf((float)hd), .pos_dev = d_pos };
    cudaStream_t s = NULL;
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    em_status st = d_in && d_out && d_kc && d_vc && d_pos && d_ws ? EM_OK : EM_ERR_DEVICE;
    if (st == EM_OK && cudaStreamCreate(&s) != cudaSuccess) st = em_fail(EM_ERR_DEVICE, "cudaStreamCreate");
    if (st == EM_OK && cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) != cudaSuccess)
        st = em_fail(EM_ERR_DEVICE, "cudaStreamBeginCapture");
    if (st == EM_OK) {
        st = em_cuda_attention(&ga, d_ws, ws_bytes, s);
        if (st == EM_OK) st = em_cuda_attention_pos_add(d_pos, 1, s);
        const cudaError_t e = cudaStreamEndCapture(s, &g);
        if (st == EM_OK && e != cudaSuccess) st = em_fail(EM_ERR_DEVICE, "cudaStreamEndCapture: %s", cudaGetErrorString(e));
    }
    if (st == EM_OK && cudaGraphInstantiate(&ge, g, 0) != cudaSuccess) st = em_fail(EM_ERR_DEVICE, "cudaGraphInstantiate");
    CHECK_MSG(st == EM_OK, "%s: capture: %s (%s)", label, em_status_str(st), em_last_error());
    double worst = 0;
    for (int i = 0; i < steps && st == EM_OK; i++) {
        em_fill_uniform(rng, in, n_in, 1.0f);
        for (size_t j = 0; j < qrow; j++) in[j] *= 3.0f;
        st = em_cuda_memcpy(d_in, in, n_in * 4);
        if (st == EM_OK && cudaGraphLaunch(ge, s) != cudaSuccess) st = em_fail(EM_ERR_DEVICE, "cudaGraphLaunch");
        if (st == EM_OK) st = em_cuda_sync(s);
        CHECK_MSG(st == EM_OK, "%s, step %d: %s (%s)", label, i, em_status_str(st), em_last_error());
        if (st != EM_OK || !em_gpu_fetch(out, d_out, qrow * 4)) break;
        em_poison(out_ref, qrow);
        em_attn_dev_args ra = ga;
        ra.q = in;
        ra.k = in + qrow;
        ra.v = in + qrow + crow;
        ra.k_cache = kc_ref;
        ra.v_cache = vc_ref;
        ra.out = out_ref;
        ra.pos = p0 + (uint32_t)i;
        ra.pos_dev = NULL;
        em_ref_attention_bf16(&ra);
        const double e = em_gpu_check_rows(label, out, out_ref, 1, qrow, 0, 0, TOL);
        worst = e > worst ? e : worst;
    }
    size_t far = 0;
    uint32_t pos_end = 0;
    if (st == EM_OK && em_gpu_fetch(kc, d_kc, ncache * 2) && em_gpu_fetch(vc, d_vc, ncache * 2) &&
        em_gpu_fetch(&pos_end, d_pos, sizeof pos_end)) {
        for (size_t j = 0; j < ncache; j++) far += (ulps(kc[j], kc_ref[j]) > 1) + (ulps(vc[j], vc_ref[j]) > 1);
        CHECK_MSG(far == 0, "%s: %zu cache values differ from the twin's cache", label, far);
        CHECK_MSG(pos_end == p0 + (uint32_t)steps, "%s: the position ended at %u, want %u", label, pos_end,
                  p0 + (uint32_t)steps);
    } else {
        far = (size_t)-1;
    }
    ga.pos = 0;
    printf("  %-72s splits %2d: worst rel err %.2e, cache %s %s\n", label, em_cuda_attention_splits(&ga), worst,
           far == 0 ? "same" : "DIFFERS", st == EM_OK && far == 0 && worst <= TOL ? "ok" : "FAIL");
    if (ge) cudaGraphExecDestroy(ge);
    if (g) cudaGraphDestroy(g);
    if (s) cudaStreamDestroy(s);
    em_cuda_free(d_in), em_cuda_free(d_out), em_cuda_free(d_kc), em_cuda_free(d_vc), em_cuda_free(d_pos);
    em_cuda_free(d_ws);
    free(in), free(out), free(out_ref), free(kc_ref), free(vc_ref), free(kc), free(vc);
}

/* The launcher's argument checks: each must refuse (or do nothing) without launching. */
static void check_refusals(void) {
    static float f[16];
    static uint16_t cache[64] __attribute__((aligned(16)));
    static char ws[1 << 16] __attribute__((aligned(16))); /* host memory: never touched */
    const em_attn_dev_args good = { .q = f, .k = f, .v = f, .k_cache = cache, .v_cache = cache, .out = f, .n_tok = 1,
                                    .n_head = 4, .n_kv_head = 2, .head_dim = 64, .pos = 0, .max_ctx = 4,
                                    .scale = 0.125f };
    CHECK(em_cuda_attention_supported(&good));
    CHECK(em_cuda_attention_workspace_bytes(4, 4, 64) <= sizeof ws);
    em_attn_dev_args a = good;
    a.head_dim = 96; /* not 64 or 128 */
    CHECK_STATUS(em_cuda_attention(&a, ws, sizeof ws, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.n_kv_head = 3; /* 4 % 3 != 0 */
    CHECK_STATUS(em_cuda_attention(&a, ws, sizeof ws, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.pos = 4; /* pos + n_tok > max_ctx */
    CHECK_STATUS(em_cuda_attention(&a, ws, sizeof ws, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.k_cache = cache + 1; /* not 16-byte aligned */
    CHECK_STATUS(em_cuda_attention(&a, ws, sizeof ws, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.rope_dims = 3; /* odd */
    CHECK_STATUS(em_cuda_attention(&a, ws, sizeof ws, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.q_stride = 10; /* < n_head * head_dim */
    CHECK_STATUS(em_cuda_attention(&a, ws, sizeof ws, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.v = NULL;
    CHECK_STATUS(em_cuda_attention(&a, ws, sizeof ws, NULL), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_cuda_attention(&good, NULL, 0, NULL), EM_ERR_INVALID_ARG); /* decode without a workspace */
    CHECK_STATUS(em_cuda_attention(&good, ws, 16, NULL), EM_ERR_INVALID_ARG);  /* too small */
    a = good;
    a.n_tok = 2;
    CHECK_STATUS(em_cuda_attention_path(&a, ws, sizeof ws, NULL, 1), EM_ERR_INVALID_ARG); /* decode path, 2 tokens */
    CHECK_STATUS(em_cuda_attention_path(&a, ws, sizeof ws, NULL, 5), EM_ERR_INVALID_ARG); /* no such path */
    CHECK_STATUS(em_cuda_attention_path(&a, ws, sizeof ws, NULL, -1), EM_ERR_INVALID_ARG);
    a.n_tok = 0; /* nothing to do: OK without a launch */
    CHECK_STATUS(em_cuda_attention(&a, NULL, 0, NULL), EM_OK);
    CHECK_STATUS(em_cuda_attention(NULL, ws, sizeof ws, NULL), EM_ERR_INVALID_ARG);
}

// ---- --perf ---------------------------------------------------------------------------------------------------

typedef struct attn_perf_ctx {
    em_attn_dev_args a;
    uint16_t *kc[128], *vc[128]; /* cache copies, rotated so that L2 never holds the one read */
    int n_copies;
    void *ws;
    size_t ws_bytes;
    int path; /* em_cuda_attention_path */
} attn_perf_ctx;

static em_status launch_attn(void *ctx, int i, void *stream) {
    attn_perf_ctx *c = ctx;
    em_attn_dev_args a = c->a;
    a.k_cache = c->kc[i % c->n_copies];
    a.v_cache = c->vc[i % c->n_copies];
    return em_cuda_attention_path(&a, c->ws, c->ws_bytes, stream, c->path);
}

/* Median of PERF_PF_REPS single launches (after 2 warm-ups), an event pair around each, on the default stream. */
#define PERF_PF_REPS 11
static em_status time_launches(attn_perf_ctx *c, double *us) {
    cudaEvent_t ev[2 * PERF_PF_REPS];
    double ms[PERF_PF_REPS];
    int n_ev = 0;
    em_status st = EM_OK;
    cudaError_t e = cudaSuccess;
    for (; n_ev < 2 * PERF_PF_REPS && e == cudaSuccess; n_ev++) e = cudaEventCreate(&ev[n_ev]);
    if (e != cudaSuccess) n_ev--;
    for (int i = 0; i < 2 && st == EM_OK && e == cudaSuccess; i++) st = launch_attn(c, i, NULL);
    for (int i = 0; i < PERF_PF_REPS && st == EM_OK && e == cudaSuccess; i++) {
        e = cudaEventRecord(ev[2 * i], NULL);
        if (e == cudaSuccess) st = launch_attn(c, i, NULL);
        if (e == cudaSuccess && st == EM_OK) e = cudaEventRecord(ev[2 * i + 1], NULL);
    }
    if (e == cudaSuccess && st == EM_OK) e = cudaDeviceSynchronize();
    for (int i = 0; i < PERF_PF_REPS && e == cudaSuccess && st == EM_OK; i++) {
        float f = 0;
        e = cudaEventElapsedTime(&f, ev[2 * i], ev[2 * i + 1]);
        ms[i] = f;
    }
    for (int i = 0; i < n_ev; i++) cudaEventDestroy(ev[i]);
    if (st != EM_OK) return st;
    if (e != cudaSuccess) return em_fail(EM_ERR_DEVICE, "time_launches: %s", cudaGetErrorString(e));
    for (int i = 1; i < PERF_PF_REPS; i++) /* insertion sort: the median */
        for (int j = i; j > 0 && ms[j] < ms[j - 1]; j--) {
            const double x = ms[j];
            ms[j] = ms[j - 1];
            ms[j - 1] = x;
        }
    *us = 1e3 * ms[PERF_PF_REPS / 2];
    return EM_OK;
}

/* Hybrid 8B shape, RoPE off (the hybrids have none): n_tok tokens at pos, caches of max_ctx rows, on `path`
 * (em_cuda_attention_path: 0 by n_tok, 2 the SIMT prefill, 3 the tensor-core prefill). @return the launch us. */
static double perf_case(uint32_t pos, uint32_t nt, int path, em_rng *rng) {
    double us = 0;
    const uint32_t Hq = 32, Hkv = 8, hd = 128, max_ctx = pos + nt;
    const size_t crow = (size_t)Hkv * hd, cache_bytes = (size_t)max_ctx * crow * 2, qrow = (size_t)Hq * hd;
    attn_perf_ctx c;
    memset(&c, 0, sizeof c);
    c.path = path;
    c.n_copies = (int)((((size_t)256 << 20) + 2 * cache_bytes - 1) / (2 * cache_bytes)); /* >= 256 MiB in all */
    c.n_copies = c.n_copies < 1 ? 1 : c.n_copies > 128 ? 128 : c.n_copies;
    float *in = em_xmalloc((size_t)nt * (qrow + 2 * crow) * 4);
    em_fill_uniform(rng, in, (size_t)nt * (qrow + 2 * crow), 1.0f);
    float *d_in = em_gpu_dup(in, (size_t)nt * (qrow + 2 * crow) * 4), *d_out = em_gpu_poisoned((size_t)nt * qrow * 4);
    int ok = d_in && d_out;
    for (int i = 0; i < c.n_copies && ok; i++) {
        ok = em_cuda_malloc((void **)&c.kc[i], cache_bytes) == EM_OK && em_cuda_malloc((void **)&c.vc[i], cache_bytes) == EM_OK &&
             em_cuda_memset(c.kc[i], 0x3d, cache_bytes) == EM_OK && em_cuda_memset(c.vc[i], 0xbe, cache_bytes) == EM_OK;
    }
    c.ws_bytes = em_cuda_attention_workspace_bytes(max_ctx, Hq, hd);
    c.ws = em_gpu_poisoned(c.ws_bytes);
    CHECK_MSG(ok && c.ws, "perf: device buffers (%d cache copies of %zu bytes): %s", c.n_copies, cache_bytes,
              em_last_error());
    if (ok && c.ws) {
        c.a = (em_attn_dev_args){ .q = d_in, .k = d_in + (size_t)nt * qrow, .v = d_in + (size_t)nt * (qrow + crow),
                                  .k_cache = c.kc[0], .v_cache = c.vc[0], .out = d_out, .n_tok = nt, .n_head = Hq,
                                  .n_kv_head = Hkv, .head_dim = hd, .pos = pos, .max_ctx = max_ctx,
                                  .scale = 1.0f / sqrtf((float)hd) };
        em_gpu_timing t = {0};
        /* prefill: single launches only (the SIMT kernel at 32K takes tens of ms: no graph of 100 of them) */
        const em_status st = nt == 1 ? em_gpu_time(launch_attn, &c, &t) : time_launches(&c, &t.launch_us);
        CHECK_MSG(st == EM_OK, "perf attention pos %u n_tok %u path %d: %s (%s)", pos, nt, path, em_status_str(st),
                  em_last_error());
        char what[96];
        if (nt == 1) {
            const double bytes = 2.0 * (pos + 1) * crow * 2; /* K and V rows [0, pos] */
            snprintf(what, sizeof what, "attn decode 8B ctx %u (%d splits)", pos + 1, em_cuda_attention_splits(&c.a));
            if (st == EM_OK) em_gpu_perf_add(what, &t, bytes);
            printf("  %-40s %8.2f us (graph %8.2f us), %6.0f GB/s of K+V (%.1f MB, %d copies rotated)\n", what,
                   t.launch_us, t.graph_us, bytes / (t.graph_us * 1e-6) / 1e9, bytes / 1e6, c.n_copies);
        } else {
            double keys = 0; /* causal (query, key) pairs of one head */
            for (uint32_t i = 0; i < nt; i++) keys += pos + i + 1.0;
            const double flop = 4.0 * Hq * hd * keys;
            snprintf(what, sizeof what, "attn prefill 8B %u tokens at %u", nt, pos);
            printf("  %-40s %10.2f us, %7.2f TFLOP/s (%s)\n", what, t.launch_us, flop / (t.launch_us * 1e-6) / 1e12,
                   path == 2 ? "fp32 SIMT" : "tensor cores, bf16 mma.sync");
            us = st == EM_OK ? t.launch_us : 0;
        }
    }
    for (int i = 0; i < c.n_copies; i++) em_cuda_free(c.kc[i]), em_cuda_free(c.vc[i]);
    em_cuda_free(d_in), em_cuda_free(d_out), em_cuda_free(c.ws);
    free(in);
    return us;
}

/* The prefill kernels side by side: SIMT, then tensor cores, and the ratio. */
static void perf_prefill(uint32_t pos, uint32_t nt, em_rng *rng) {
    const double simt = perf_case(pos, nt, 2, rng), tc = perf_case(pos, nt, 3, rng);
    if (simt > 0 && tc > 0) printf("  %-40s %10.2fx faster on tensor cores\n", "", simt / tc);
}

int main(int argc, char **argv) {
    em_gpu_env env;
    em_gpu_test_init("test_attention_cuda", argc, argv, &env);
    check_refusals();
    em_rng rng;
    em_rng_seed(&rng, 20261123);
    for (size_t i = 0; i < LEN(cases); i++) run_case(&cases[i], &rng);
    check_graph(4, 2, 64, 2048, 60, 8, 64, &rng);       /* bundled shape, RoPE, across a 64-row split boundary */
    check_graph(32, 8, 128, 32768, 1020, 6, 0, &rng);   /* 8B, sized for 32K: most splits empty */
    if (env.perf) {
        printf("\n--perf: attention alone, hybrid 8B layer shape (32/8 heads x 128, bf16 KV cache, RoPE off); us: median "
               "of single launches; GB/s from the graph time\n");
        perf_case(511, 1, 0, &rng);
        perf_case(4095, 1, 0, &rng);
        perf_case(32767, 1, 0, &rng);
        perf_prefill(0, 512, &rng);
        perf_prefill(4096, 512, &rng);
        perf_prefill(32256, 512, &rng);
        em_gpu_perf_print(&env);
    }
    return em_test_finish("test_attention_cuda");
}
