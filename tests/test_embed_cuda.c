/*
 * test_embed_cuda.c — em_cuda_embed (kernels/embed.cu) against its C twin em_ref_embed, one case per line of a
 * table named after model shapes (STYLE.md lesson 8). Fresh seeded random tables (every dtype) and token ids
 * (always including 0 and vocab - 1) read from device memory; out poisoned with NaN before every run. The
 * widening is exact, so the limit is 0: the outputs must equal the twin's bit for bit.
 *
 * Without a CUDA device it prints "SKIP test_embed_cuda: no CUDA device" and exits 77 (ctest: Skipped).
 *   build/tests/test_embed_cuda [--perf]
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_ops.h"
#include "cuda_rt.h"
#include "gpu_test.h"
#include "ops.h"
#include "testutil.h"
#include "util.h"

#ifndef EM_HAVE_CUDA
#error "test_embed_cuda is built only with CUDA (tests/gpu.cmake)"
#endif

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

typedef struct embed_case {
    uint32_t vocab, d, n_tok;
    em_dtype dtype;
    uint32_t table_off; /* elements the device table pointer is shifted by (misaligned -> generic kernel) */
    int perf;
    const char *what;
} embed_case;

#define BF16 EM_DTYPE_BF16
#define F16 EM_DTYPE_F16
#define F32 EM_DTYPE_F32
static const embed_case cases[] = {
    { 50288, 4096, 1, BF16, .perf = 1, .what = "Mamba-2 8B (vocab 50288), decode" },
    { 50288, 4096, 40, BF16, .perf = 1, .what = "Mamba-2 8B, prompt of 40" },
    { 512, 64, 1, F32, .what = "tiny fixture (f32), decode" },
    { 512, 64, 3, F32, .what = "tiny fixture (f32), 3 tokens" },
    { 512, 64, 3, BF16, .what = "tiny fixture, bf16" },
    { 1000, 96, 5, F16, .what = "f16 table" },
    { 300, 63, 4, BF16, .what = "d 63: generic kernel" },
    { 300, 4097, 2, F32, .what = "f32 d 4097: generic kernel" },
    { 300, 64, 3, BF16, .table_off = 1, .what = "table misaligned: generic kernel" },
    { 37, 8, 70000, F16, .what = "70000 tokens: grid.y loop" },
};

typedef struct embed_perf_ctx {
    em_embed_args a;
} embed_perf_ctx;

static em_status launch_embed(void *ctx, int i, void *stream) {
    (void)i;
    return em_cuda_embed(&((embed_perf_ctx *)ctx)->a, stream);
}

/* A random finite value of the dtype, as its bits. */
static void fill_table(em_rng *rng, void *t, em_dtype dt, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const float v = em_rng_uniform(rng, 1.0f);
        if (dt == F32) ((float *)t)[i] = v;
        else if (dt == BF16) ((uint16_t *)t)[i] = em_f32_to_bf16(v);
        else { /* f16: sign, exponent 1..30 (no inf/NaN, subnormals excluded too), mantissa */
            const uint32_t r = em_rng_u32(rng);
            ((uint16_t *)t)[i] = (uint16_t)((r & 0x8000u) | ((1u + (r >> 16) % 30u) << 10) | (r & 0x3ffu));
        }
    }
}

static void run_case(const embed_case *c, em_rng *rng, const em_gpu_env *env) {
    char label[160];
    snprintf(label, sizeof label, "%s [vocab %u, d %u, n_tok %u]", c->what, c->vocab, c->d, c->n_tok);
    const size_t esz = c->dtype == F32 ? 4 : 2, n_tab = (size_t)c->vocab * c->d, n_out = (size_t)c->n_tok * c->d;
    void *tab = em_xmalloc(n_tab * esz);
    int32_t *tok = em_xmalloc(c->n_tok * sizeof *tok);
    float *o_ref = em_xmalloc(n_out * 4), *o_got = em_xmalloc(n_out * 4);
    fill_table(rng, tab, c->dtype, n_tab);
    for (uint32_t t = 0; t < c->n_tok; t++) tok[t] = (int32_t)(em_rng_u32(rng) % c->vocab);
    tok[0] = (int32_t)c->vocab - 1;
    if (c->n_tok > 1) tok[1] = 0;
    em_poison(o_ref, n_out);
    em_embed_args ra = { .table = tab, .dtype = c->dtype, .tok = tok, .out = o_ref, .n_tok = c->n_tok, .d = c->d };
    em_ref_embed(&ra);

    char *d_tab_alloc = NULL;
    em_status st = em_cuda_malloc((void **)&d_tab_alloc, (n_tab + c->table_off) * esz);
    void *d_tab = d_tab_alloc ? d_tab_alloc + c->table_off * esz : NULL;
    if (st == EM_OK) st = em_cuda_memcpy(d_tab, tab, n_tab * esz);
    int32_t *d_tok = em_gpu_dup(tok, c->n_tok * sizeof *tok);
    float *d_out = em_gpu_poisoned(n_out * 4);
    em_embed_args ga = ra;
    ga.table = d_tab;
    ga.tok = d_tok;
    ga.out = d_out;
    if (st == EM_OK && !(d_tok && d_out)) st = EM_ERR_DEVICE;
    if (st == EM_OK) st = em_cuda_embed(&ga, NULL);
    if (st == EM_OK) st = em_cuda_sync(NULL);
    CHECK_MSG(st == EM_OK, "%s: %s (%s)", label, em_status_str(st), em_last_error());
    size_t diff = n_out;
    if (st == EM_OK && em_gpu_fetch(o_got, d_out, n_out * 4)) {
        diff = 0;
        for (size_t i = 0; i < n_out; i++) diff += memcmp(&o_got[i], &o_ref[i], 4) != 0;
        CHECK_MSG(diff == 0, "%s: %zu of %zu outputs differ from the twin's bits", label, diff, n_out);
    }
    printf("  %-40s vocab %5u d %4u n_tok %5u %s: %zu differ %s\n", c->what, c->vocab, c->d, c->n_tok,
           c->dtype == F32 ? "f32 " : c->dtype == BF16 ? "bf16" : "f16 ", diff, diff ? "FAIL" : "ok");

    if (env->perf && c->perf && st == EM_OK) {
        embed_perf_ctx ctx = { .a = ga };
        em_gpu_timing t = {0};
        st = em_gpu_time(launch_embed, &ctx, &t);
        CHECK_MSG(st == EM_OK, "%s: timing: %s (%s)", label, em_status_str(st), em_last_error());
        char what[96];
        snprintf(what, sizeof what, "embed %s d %u n_tok %u", c->dtype == BF16 ? "bf16" : "f32", c->d, c->n_tok);
        const double bytes = (double)c->n_tok * c->d * (esz + 4);
        if (st == EM_OK) em_gpu_perf_add(what, &t, bytes);
    }

    em_cuda_free(d_tab_alloc);
    em_cuda_free(d_tok);
    em_cuda_free(d_out);
    free(tab);
    free(tok);
    free(o_ref);
    free(o_got);
}

static void check_refusals(void) {
    float f = 0;
    int32_t tk = 0;
    const em_embed_args good = { .table = &f, .dtype = F32, .tok = &tk, .out = &f, .n_tok = 1, .d = 1 };
    CHECK(em_cuda_embed_supported(&good));
    em_embed_args a = good;
    a.dtype = EM_DTYPE_I8;
    CHECK_STATUS(em_cuda_embed(&a, NULL), EM_ERR_UNSUPPORTED);
    a = good;
    a.tok = NULL;
    CHECK_STATUS(em_cuda_embed(&a, NULL), EM_ERR_INVALID_ARG);
    a = good;
    a.n_tok = 0;
    CHECK_STATUS(em_cuda_embed(&a, NULL), EM_OK);
    CHECK_STATUS(em_cuda_embed(NULL, NULL), EM_ERR_INVALID_ARG);
}

int main(int argc, char **argv) {
    em_gpu_env env;
    em_gpu_test_init("test_embed_cuda", argc, argv, &env);
    check_refusals();
    em_rng rng;
    em_rng_seed(&rng, 20240627);
    for (size_t i = 0; i < LEN(cases); i++) run_case(&cases[i], &rng, &env);
    if (env.perf) em_gpu_perf_print(&env);
    return em_test_finish("test_embed_cuda");
}
