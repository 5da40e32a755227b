/*
 * test_hybrid.c — the executor's hybrid invariants (attention '*' and MLP '-' layers, issue 5) on seeded random
 * hybrid blobs written here from C through the blob writer and the tensors.h table (no Python, no em-pack);
 * HF agreement is test_golden's job (the NemotronH hybrid fixtures). It proves:
 *   - the result does not depend on how a prompt is chunked (chunk 1, 5, 16, 40 vs 64, bit for bit): prefill
 *     chunks attend over the KV cache plus the chunk, causally;
 *   - prefill(1) + decode steps == prefill(n) at every position, and a prompt split in two prefills == one;
 *   - the context limit: a prefill or decode that would pass the planned KV (max_context) gets
 *     EM_ERR_CONTEXT_FULL with a message, runs nothing, and the session stays usable (state and logits as they
 *     were; decode up to the limit; reset; a shorter prompt); pure Mamba-2 models have no limit;
 *   - the plan: kv_bytes = 2 * 4 * n_attn * max_context * n_kv_head * head_dim, and it scales with max_context;
 *     a session in the caller's buffer behaves the same; max_context_fit under a memory_limit is the last context
 *     whose plan fits (that context plans EM_OK, one more EM_ERR_PLAN_TOO_LARGE; within the KV arithmetic's
 *     bound), the option limit for a pure Mamba-2 model, 0 when nothing fits;
 *   - variants: a pattern from the allocation algorithm, attention first, no Mamba layer at all, RoPE on,
 *     relu2 / GELU / SiLU, bf16 matrices with tied embeddings;
 *   - configs the executor cannot run are refused with named statuses.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blob.h"
#include "edgemamba.h"
#include "pattern.h"
#include "tensors.h"
#include "testutil.h"
#include "tinyblob.h"
#include "util.h"

#define NTOK 40

// ---- a random hybrid blob ---------------------------------------------------------------------------------

typedef struct hyb_spec {
    const char *pattern;
    uint32_t d_model, vocab;
    uint32_t n_head, n_kv_head, head_dim; /* attention */
    uint32_t d_ff, act;                   /* MLP */
    float rope_fraction, rope_base;
    em_dtype matrix_dtype;
    int tied;
    uint64_t seed;
} hyb_spec;

static hyb_spec hyb_default(void) {
    hyb_spec s = { .pattern = "M-M*-M*-M-", .d_model = 64, .vocab = 512, .n_head = 4, .n_kv_head = 2,
                   .head_dim = 16, .d_ff = 128, .act = EM_ACT_GELU, .rope_fraction = 0.0f, .rope_base = 0.0f,
                   .matrix_dtype = EM_DTYPE_F32, .tied = 0, .seed = 3 };
    return s;
}

/* The blob itself: the shared random-blob writer (tests/tinyblob.c), with the fixtures' Mamba-2 dims
 * (N 16, H 8 x P 16, G 2, K 4, gated-norm group 64) for the 'M' layers. */
static em_status hyb_write(const char *path, const hyb_spec *sp) {
    em_tiny_spec t = em_tiny_default();
    t.pattern = sp->pattern;
    t.gated_norm_group = 64;
    t.d_model = sp->d_model;
    t.vocab = sp->vocab;
    t.attn_n_head = sp->n_head;
    t.attn_n_kv_head = sp->n_kv_head;
    t.attn_head_dim = sp->head_dim;
    t.d_ff = sp->d_ff;
    t.mlp_act = sp->act;
    t.rope_fraction = sp->rope_fraction;
    t.rope_base = sp->rope_base;
    t.matrix_dtype = sp->matrix_dtype;
    t.tied = sp->tied;
    t.seed = sp->seed;
    return em_tiny_write(path, &t);
}

// ---- helpers ---------------------------------------------------------------------------------------------

static char g_path[256];
static int32_t g_tok[NTOK + 16];

static em_model *open_spec(const hyb_spec *sp) {
    CHECK_STATUS(hyb_write(g_path, sp), EM_OK);
    em_model *m = NULL;
    em_model_options mo = em_model_default_options();
    mo.backend = EM_BACKEND_CPU;
    CHECK_STATUS(em_model_open(g_path, &mo, &m), EM_OK);
    return m;
}

/* prefill(n) with ALL logits in one session with the given chunk and context */
static float *prefill_all(em_model *m, uint32_t chunk, uint32_t ctx, const int32_t *tok, uint32_t n, uint32_t V) {
    em_session_options so = em_session_default_options();
    so.max_prefill_chunk = chunk;
    so.max_context = ctx;
    em_session *s = NULL;
    CHECK_STATUS(em_session_create(m, &so, &s), EM_OK);
    float *out = malloc(sizeof(float) * n * V);
    em_poison(out, (size_t)n * V);
    if (s) CHECK_STATUS(em_session_prefill(s, tok, n, EM_LOGITS_ALL, out), EM_OK);
    em_session_free(s);
    return out;
}

/* The invariants every hybrid variant must keep: chunking, prefill == decode, split prompt. */
static void check_invariants(em_model *m, const char *name) {
    em_model_info info;
    CHECK_STATUS(em_model_get_info(m, &info), EM_OK);
    const uint32_t V = info.vocab_size;
    char label[160];
    float *ref = prefill_all(m, 64, 4096, g_tok, NTOK, V);
    static const uint32_t chunks[] = { 1, 5, 16, 40 };
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        float *got = prefill_all(m, chunks[c], NTOK, g_tok, NTOK, V); /* max_context exactly the prompt */
        snprintf(label, sizeof label, "%s: chunk %u vs 64", name, chunks[c]);
        em_check_close(label, got, ref, (size_t)NTOK * V, 0.0);
        free(got);
    }
    /* prefill(1) then decode == prefill(n), position by position */
    em_session *s = NULL;
    CHECK_STATUS(em_session_create(m, NULL, &s), EM_OK);
    if (!s) { free(ref); return; }
    float *row = malloc(sizeof(float) * V);
    CHECK_STATUS(em_session_prefill(s, g_tok, 1, EM_LOGITS_LAST, row), EM_OK);
    snprintf(label, sizeof label, "%s: position 0", name);
    em_check_close(label, row, ref, V, 1e-5);
    for (int i = 1; i < NTOK; i++) {
        em_poison(row, V);
        CHECK_STATUS(em_session_decode(s, g_tok[i], row), EM_OK);
        snprintf(label, sizeof label, "%s: decode position %d", name, i);
        em_check_close(label, row, ref + (size_t)i * V, V, 1e-5);
    }
    /* a prompt in two prefills (17 + 23, chunk 16: the second starts mid-chunk over a cache) == one */
    em_session_free(s);
    em_session_options so = em_session_default_options();
    so.max_prefill_chunk = 16;
    CHECK_STATUS(em_session_create(m, &so, &s), EM_OK);
    float *two = malloc(sizeof(float) * NTOK * V);
    CHECK_STATUS(em_session_prefill(s, g_tok, 17, EM_LOGITS_ALL, two), EM_OK);
    CHECK_STATUS(em_session_prefill(s, g_tok + 17, NTOK - 17, EM_LOGITS_ALL, two + (size_t)17 * V), EM_OK);
    snprintf(label, sizeof label, "%s: 17 + 23 vs 40", name);
    em_check_close(label, two, ref, (size_t)NTOK * V, 0.0);
    float lo = ref[0], hi = ref[0];
    for (uint32_t i = 0; i < V; i++) { lo = fminf(lo, ref[i]); hi = fmaxf(hi, ref[i]); }
    CHECK_MSG(hi - lo > 1.0f, "%s: logits nearly flat (range %g)", name, (double)(hi - lo));
    em_session_free(s);
    free(two);
    free(row);
    free(ref);
}

// ---- tests -------------------------------------------------------------------------------------------------

/* the hybrid layers are run: their settings change the logits */
static void test_layers_matter(void) {
    hyb_spec sp = hyb_default();
    em_model *m = open_spec(&sp);
    if (!m) return;
    float *a = prefill_all(m, 64, 64, g_tok, NTOK, sp.vocab);
    em_model_close(m);
    /* the same seed gives the same weights: another activation must change the logits (the MLP layers run),
     * and RoPE must change them everywhere but at position 0 (the attention layers run and see positions) */
    sp.act = EM_ACT_RELU2;
    m = open_spec(&sp);
    if (!m) { free(a); return; }
    float *b = prefill_all(m, 64, 64, g_tok, NTOK, sp.vocab);
    em_model_close(m);
    sp.act = EM_ACT_GELU;
    sp.rope_fraction = 0.5f;
    sp.rope_base = 10000.0f;
    m = open_spec(&sp);
    if (!m) { free(a); free(b); return; }
    float *c = prefill_all(m, 64, 64, g_tok, NTOK, sp.vocab);
    em_model_close(m);
    double dab = 0, dac = 0, dac0 = 0;
    for (size_t i = 0; i < (size_t)NTOK * sp.vocab; i++) {
        dab = fmax(dab, fabs(a[i] - b[i]));
        dac = fmax(dac, fabs(a[i] - c[i]));
    }
    for (size_t i = 0; i < sp.vocab; i++) dac0 = fmax(dac0, fabs(a[i] - c[i])); /* position 0: RoPE is identity */
    CHECK_MSG(dab > 1e-2, "MLP activation has no effect (%g)", dab);
    CHECK_MSG(dac > 1e-2, "RoPE has no effect (%g)", dac);
    CHECK_MSG(dac0 < 1e-5, "RoPE changes position 0 (%g)", dac0);
    free(a); free(b); free(c);
}

static void test_default(void) {
    hyb_spec sp = hyb_default();
    em_model *m = open_spec(&sp);
    if (!m) return;
    em_model_info info;
    CHECK_STATUS(em_model_get_info(m, &info), EM_OK);
    CHECK(info.arch == EM_ARCH_HYBRID && !strcmp(info.layer_pattern, "M-M*-M*-M-"));
    CHECK(info.attn_n_head == 4 && info.attn_n_kv_head == 2 && info.attn_head_dim == 16 && info.d_ff == 128);
    check_invariants(m, "M-M*-M*-M- gelu");
    em_model_close(m);
}

static void test_context_limit(void) {
    hyb_spec sp = hyb_default();
    em_model *m = open_spec(&sp);
    if (!m) return;
    const uint32_t V = sp.vocab, CTX = 50;
    float *ref = prefill_all(m, 64, 4096, g_tok, NTOK + 10, V); /* positions 0..49 */
    em_session_options so = em_session_default_options();
    so.max_context = CTX;
    so.max_prefill_chunk = 16;
    em_session *s = NULL;
    CHECK_STATUS(em_session_create(m, &so, &s), EM_OK);
    if (!s) { free(ref); em_model_close(m); return; }
    float *row = malloc(sizeof(float) * V), *before = malloc(sizeof(float) * V);
    int32_t t_before = -1, t_after = -2;
    uint64_t pos = 0;

    /* a prompt longer than the context: refused, nothing run, still empty */
    int32_t *long_prompt = malloc(sizeof(int32_t) * (CTX + 1));
    for (uint32_t i = 0; i <= CTX; i++) long_prompt[i] = g_tok[i % NTOK];
    CHECK_STATUS(em_session_prefill(s, long_prompt, CTX + 1, EM_LOGITS_LAST, row), EM_ERR_CONTEXT_FULL);
    CHECK_MSG(strstr(em_last_error(), "max_context 50") != NULL, "message: %s", em_last_error());
    CHECK_STATUS(em_session_position(s, &pos), EM_OK);
    CHECK(pos == 0);
    CHECK_STATUS(em_session_decode(s, g_tok[0], row), EM_ERR_BAD_STATE); /* still empty */

    /* 40 fit; 11 more do not (nothing run: same logits, same position); 10 decode steps fill it exactly */
    CHECK_STATUS(em_session_prefill(s, g_tok, NTOK, EM_LOGITS_LAST, before), EM_OK);
    CHECK_STATUS(em_session_argmax(s, &t_before), EM_OK);
    CHECK_STATUS(em_session_prefill(s, g_tok + NTOK, 11, EM_LOGITS_LAST, row), EM_ERR_CONTEXT_FULL);
    CHECK_STATUS(em_session_position(s, &pos), EM_OK);
    CHECK(pos == NTOK);
    CHECK_STATUS(em_session_argmax(s, &t_after), EM_OK); /* the last logits survive a refused call */
    CHECK(t_after == t_before);
    for (uint32_t i = NTOK; i < CTX; i++) {
        em_poison(row, V);
        CHECK_STATUS(em_session_decode(s, g_tok[i], row), EM_OK);
        char label[64];
        snprintf(label, sizeof label, "decode %u after a refused prefill", i);
        em_check_close(label, row, ref + (size_t)i * V, V, 1e-5);
    }
    CHECK_STATUS(em_session_decode(s, g_tok[0], row), EM_ERR_CONTEXT_FULL);
    CHECK(strstr(em_last_error(), "50 tokens in the session + 1 new") != NULL);
    CHECK_STATUS(em_session_position(s, &pos), EM_OK);
    CHECK(pos == CTX);
    /* reset: the whole context again, equal to a fresh session */
    CHECK_STATUS(em_session_reset(s), EM_OK);
    float *again = malloc(sizeof(float) * CTX * V);
    CHECK_STATUS(em_session_prefill(s, long_prompt, CTX, EM_LOGITS_ALL, again), EM_OK);
    float *fresh = prefill_all(m, 16, CTX, long_prompt, CTX, V);
    em_check_close("full context after reset", again, fresh, (size_t)CTX * V, 0.0);
    em_session_free(s);

    /* a pure Mamba-2 model has no limit: max_context 1, a 40-token prompt and decode steps run */
    em_tiny_spec ts = em_tiny_default();
    CHECK_STATUS(em_tiny_write(g_path, &ts), EM_OK);
    em_model *mm = NULL;
    CHECK_STATUS(em_model_open(g_path, NULL, &mm), EM_OK);
    if (mm) {
        so = em_session_default_options();
        so.max_context = 1;
        em_plan_report pr;
        CHECK_STATUS(em_plan(mm, &so, &pr), EM_OK);
        CHECK(pr.kv_bytes == 0);
        so.memory_limit = pr.session_bytes; /* no KV cache: any context fits a budget that holds the session */
        CHECK_STATUS(em_plan(mm, &so, &pr), EM_OK);
        CHECK_MSG(pr.max_context_fit == 1u << 24, "pure Mamba-2: max_context_fit %u", pr.max_context_fit);
        so.memory_limit = 0;
        CHECK_STATUS(em_session_create(mm, &so, &s), EM_OK);
        if (s) {
            CHECK_STATUS(em_session_prefill(s, g_tok, NTOK, EM_LOGITS_LAST, NULL), EM_OK);
            CHECK_STATUS(em_session_decode(s, g_tok[0], NULL), EM_OK);
            em_session_free(s);
        }
        em_model_close(mm);
    }
    free(long_prompt); free(row); free(before); free(again); free(fresh); free(ref);
    em_model_close(m);
}

static void test_plan(void) {
    hyb_spec sp = hyb_default();
    em_model *m = open_spec(&sp);
    if (!m) return;
    em_session_options so = em_session_default_options();
    em_plan_report a, b;
    so.max_context = 1000;
    CHECK_STATUS(em_plan(m, &so, &a), EM_OK);
    so.max_context = 3000;
    CHECK_STATUS(em_plan(m, &so, &b), EM_OK);
    const size_t per_pos = 2u * sizeof(float) * 2 /* n_attn */ * sp.n_kv_head * sp.head_dim;
    CHECK_MSG(a.kv_bytes >= 1000 * per_pos && a.kv_bytes < 1000 * per_pos + 128, "kv %zu, want %zu", a.kv_bytes,
              1000 * per_pos);
    CHECK(b.kv_bytes - a.kv_bytes == 2000 * per_pos);
    CHECK(b.session_bytes - a.session_bytes == b.kv_bytes - a.kv_bytes);
    CHECK(a.state_bytes == b.state_bytes && a.workspace_bytes == b.workspace_bytes);
    CHECK(a.session_bytes >= a.state_bytes + a.kv_bytes + a.workspace_bytes);
    /* the longest context a memory budget holds: 10 MB (the KV grows by per_pos a token) */
    so.max_context = 1000;
    so.memory_limit = 10u << 20;
    CHECK_STATUS(em_plan(m, &so, &a), EM_OK);
    const size_t fixed = a.session_bytes - a.kv_bytes; /* what does not grow with the context */
    const double want = (double)(so.memory_limit - fixed) / (double)per_pos;
    CHECK_MSG(a.max_context_fit <= want && a.max_context_fit + 1 >= want - 2, "max_context_fit %u, want ~%.1f",
              a.max_context_fit, want);
    so.max_context = a.max_context_fit;
    CHECK_STATUS(em_plan(m, &so, &b), EM_OK);
    so.max_context = a.max_context_fit + 1;
    CHECK_STATUS(em_plan(m, &so, &b), EM_ERR_PLAN_TOO_LARGE);
    CHECK(b.max_context_fit == a.max_context_fit); /* reported on a plan that does not fit too */
    so.memory_limit = fixed / 2; /* not even one token */
    CHECK_STATUS(em_plan(m, &so, &b), EM_ERR_PLAN_TOO_LARGE);
    CHECK(b.max_context_fit == 0);
    so.memory_limit = 0;
    /* a session in the caller's buffer: exactly session_bytes, the same logits */
    so.max_context = NTOK;
    CHECK_STATUS(em_plan(m, &so, &a), EM_OK);
    void *buf = NULL;
    CHECK(posix_memalign(&buf, 64, a.session_bytes) == 0);
    em_session *s = NULL;
    CHECK_STATUS(em_session_create_static(m, &so, buf, a.session_bytes - 1, &s), EM_ERR_BUFFER_TOO_SMALL);
    CHECK_STATUS(em_session_create_static(m, &so, buf, a.session_bytes, &s), EM_OK);
    if (s) {
        float *got = malloc(sizeof(float) * NTOK * sp.vocab);
        CHECK_STATUS(em_session_prefill(s, g_tok, NTOK, EM_LOGITS_ALL, got), EM_OK);
        float *ref = prefill_all(m, 0, 4096, g_tok, NTOK, sp.vocab);
        em_check_close("static hybrid session", got, ref, (size_t)NTOK * sp.vocab, 0.0);
        CHECK_STATUS(em_session_decode(s, g_tok[0], NULL), EM_ERR_CONTEXT_FULL);
        em_session_free(s);
        free(got);
        free(ref);
    }
    free(buf);
    em_model_close(m);
}

static void test_variants(void) {
    char pattern[64];
    /* a pattern from the paper's allocation algorithm, relu2, 6/2 heads of 24 (n_head * hd != d_model) */
    CHECK_STATUS(em_pattern_allocate(12, 0.25, 0.4, pattern, sizeof pattern), EM_OK);
    CHECK(!strcmp(pattern, "M-*M--*M-*M-"));
    hyb_spec sp = hyb_default();
    sp.pattern = pattern;
    sp.n_head = 6; sp.n_kv_head = 2; sp.head_dim = 24; sp.d_ff = 192; sp.act = EM_ACT_RELU2; sp.seed = 5;
    em_model *m = open_spec(&sp);
    if (m) { check_invariants(m, "M-*M--*M-*M- relu2"); em_model_close(m); }

    /* attention first, MQA, SiLU MLP */
    sp = hyb_default();
    sp.pattern = "*M-*M";
    sp.n_kv_head = 1; sp.act = EM_ACT_SILU; sp.seed = 6;
    if ((m = open_spec(&sp))) { check_invariants(m, "*M-*M mqa silu"); em_model_close(m); }

    /* no Mamba layer at all, RoPE on half the head dims (the Transformer baseline's attention) */
    sp = hyb_default();
    sp.pattern = "*-*-";
    sp.n_kv_head = 4; sp.rope_fraction = 0.5f; sp.rope_base = 10000.0f; sp.seed = 7;
    if ((m = open_spec(&sp))) {
        em_plan_report pr;
        CHECK_STATUS(em_plan(m, NULL, &pr), EM_OK);
        CHECK(pr.state_bytes < 128); /* alignment only: no SSM or conv state */
        check_invariants(m, "*-*- rope");
        em_model_close(m);
    }

    /* bf16 matrices, tied embeddings, RoPE on a hybrid */
    sp = hyb_default();
    sp.matrix_dtype = EM_DTYPE_BF16; sp.tied = 1; sp.rope_fraction = 0.25f; sp.rope_base = 500.0f; sp.seed = 8;
    if ((m = open_spec(&sp))) { check_invariants(m, "bf16 tied rope"); em_model_close(m); }
}

static void test_refused_configs(void) {
    em_model *m = NULL;
    hyb_spec sp = hyb_default();
    /* RoPE on an odd number of dims: int(16 * 0.1875) = 3 */
    sp.rope_fraction = 0.1875f; sp.rope_base = 10000.0f;
    CHECK_STATUS(hyb_write(g_path, &sp), EM_OK);
    CHECK_STATUS(em_model_open(g_path, NULL, &m), EM_ERR_BLOB_CONFIG);
    CHECK(strstr(em_last_error(), "3 rotated dims") != NULL);
    /* a head dim past what the twin supports */
    sp = hyb_default();
    sp.pattern = "M*"; sp.n_head = 1; sp.n_kv_head = 1; sp.head_dim = 2048;
    CHECK_STATUS(hyb_write(g_path, &sp), EM_OK);
    CHECK_STATUS(em_model_open(g_path, NULL, &m), EM_ERR_UNSUPPORTED);
    CHECK(strstr(em_last_error(), "attn_head_dim 2048") != NULL);
    /* GQA heads that do not divide, an MLP without an activation (the blob reader refuses both) */
    sp = hyb_default();
    sp.n_head = 3;
    CHECK_STATUS(hyb_write(g_path, &sp), EM_OK);
    CHECK_STATUS(em_model_open(g_path, NULL, &m), EM_ERR_BLOB_CONFIG);
    sp = hyb_default();
    sp.act = EM_ACT_NONE;
    CHECK_STATUS(hyb_write(g_path, &sp), EM_OK);
    CHECK_STATUS(em_model_open(g_path, NULL, &m), EM_ERR_BLOB_CONFIG);
    CHECK(m == NULL);
}

int main(void) {
    snprintf(g_path, sizeof g_path, "/tmp/em_test_hybrid_%d.emb", (int)getpid());
    em_rng r;
    em_rng_seed(&r, 9);
    for (int i = 0; i < NTOK + 16; i++) g_tok[i] = (int32_t)(em_rng_u32(&r) % 512);
    test_default();
    test_layers_matter();
    test_context_limit();
    test_plan();
    test_variants();
    test_refused_configs();
    unlink(g_path);
    return em_test_finish("test_hybrid");
}
