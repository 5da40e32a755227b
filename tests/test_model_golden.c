/*
 * test_model_golden.c — proves that the CPU backend runs the bundled trained models (models/hybrid: a
 * NemotronH Mamba-2-Hybrid; models/mamba2: a Mamba2ForCausalLM) as HF transformers does, end to end from
 * the blob em-pack made of models/<arch>/ (bf16 weights, f32 math, the SentencePiece tokenizer inside):
 *   - tokenizer: the blob's tokenizer encodes models/heldout.txt and each line of models/prompts.txt to
 *     exactly the ids the Python sentencepiece library gave (no BOS);
 *   - perplexity: one prefill of the 2014 held-out ids with EM_LOGITS_ALL (the session chunks it), log-softmax
 *     in double; exp(mean NLL) within PPL_TOL (relative) of HF's; the per-token NLL and the full logits rows
 *     HF stored (positions 0, 127, 128, 1023, N-2) are reported and the rows checked against LOGIT_TOL;
 *   - prompts: the logits at each prompt's last position within LOGIT_TOL (max|got - ref| / max|ref|);
 *   - greedy: 32 tokens per prompt through the decode path, ids identical to HF's cached decode (the first
 *     divergence is reported with both backends' top-2 ids and logits).
 * Goldens: tools/goldens/make_model_goldens.py (keys in its docstring and in models/README.md).
 *
 *   test_model_golden BLOB.emb GOLDEN.safetensors HELDOUT.txt PROMPTS.txt [PPL_TOL [LOGIT_TOL [N_HELDOUT [cpu|cuda]]]]
 *   (cuda: the same checks on the CUDA executor, SKIP without a device; its prompt path rounds activations to bf16
 *   for the GEMMs, so tests/model.cmake gives it the bf16 logit bound)
 *   (defaults 0.005, 1e-4 and 0 = all ids; sanitizer builds pass a prefix, e.g. 256: the model is causal, so
 *   the NLL of a prefix is the prefix of HF's NLL and the comparison stays exact)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_rt.h"
#include "edgemamba.h"
#include "safetensors.h"
#include "testutil.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A golden tensor copied into an aligned heap array (safetensors data is only byte-aligned). */
static void *load(const em_st *st, const char *name, em_st_dtype dt, uint32_t nd, uint64_t *shape) {
    const em_st_tensor *t = em_st_find(st, name);
    if (!t || t->dtype != dt || t->n_dims != nd) {
        fprintf(stderr, "golden file: tensor %s missing or of the wrong dtype/rank\n", name);
        exit(1);
    }
    void *p = malloc(t->size ? t->size : 1);
    if (!p) exit(1);
    memcpy(p, t->data, t->size);
    for (uint32_t i = 0; i < nd; i++) shape[i] = t->shape[i];
    return p;
}

static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot open %s\n", path); exit(1); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "cannot read %s\n", path); exit(1); }
    b[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Encodes text with the blob's tokenizer and compares with ref. @return 1 when equal. */
static int ids_equal(const em_tokenizer *tok, const char *what, const char *text, size_t len, const int32_t *ref,
                     size_t n_ref) {
    size_t n = 0;
    CHECK_STATUS(em_tokenizer_encode(tok, text, len, 0, NULL, 0, &n), EM_OK);
    int32_t *ids = malloc(sizeof(int32_t) * (n ? n : 1));
    CHECK_STATUS(em_tokenizer_encode(tok, text, len, 0, ids, n, &n), EM_OK);
    size_t i = 0;
    while (i < n && i < n_ref && ids[i] == ref[i]) i++;
    int ok = n == n_ref && i == n;
    if (!ok)
        fprintf(stderr, "FAIL tokenizer, %s: %zu ids (Python sentencepiece: %zu), first difference at %zu: %d vs %d\n",
                what, n, n_ref, i, i < n ? ids[i] : -1, i < n_ref ? ref[i] : -1);
    free(ids);
    return ok;
}

static void top2(const float *row, uint32_t V, int32_t *id, float *val) {
    id[0] = id[1] = -1;
    val[0] = val[1] = -INFINITY;
    for (uint32_t v = 0; v < V; v++) {
        if (row[v] > val[0]) { val[1] = val[0]; id[1] = id[0]; val[0] = row[v]; id[0] = (int32_t)v; }
        else if (row[v] > val[1]) { val[1] = row[v]; id[1] = (int32_t)v; }
    }
}

/* -log softmax(row)[target], in double */
static double nll_of(const float *row, uint32_t V, int32_t target) {
    double mx = row[0];
    for (uint32_t v = 1; v < V; v++) if (row[v] > mx) mx = row[v];
    double s = 0;
    for (uint32_t v = 0; v < V; v++) s += exp((double)row[v] - mx);
    return mx + log(s) - (double)row[target];
}

int main(int argc, char **argv) {
    if (argc < 5 || argc > 9) {
        fprintf(stderr, "usage: test_model_golden BLOB.emb GOLDEN.safetensors HELDOUT.txt PROMPTS.txt "
                        "[PPL_TOL [LOGIT_TOL [N_HELDOUT [cpu|cuda]]]]\n");
        return 2;
    }
    const char *blob = argv[1];
    const double ppl_tol = argc > 5 ? atof(argv[5]) : 0.005, logit_tol = argc > 6 ? atof(argv[6]) : 1e-4;
    const long n_heldout_arg = argc > 7 ? atol(argv[7]) : 0;
    const double t0 = now_s();

    em_st *g = NULL;
    CHECK_STATUS(em_st_open(argv[2], &g), EM_OK);
    if (!g) return em_test_finish("test_model_golden");
    uint64_t sh[3];
    int32_t *held = load(g, "heldout_ids", EM_ST_I32, 1, sh);
    const uint32_t N = (uint32_t)sh[0];
    double *hnll = load(g, "heldout_nll", EM_ST_F64, 1, sh);
    CHECK(sh[0] == N - 1);
    float *hrows = load(g, "heldout_logits", EM_ST_F32, 2, sh);
    const uint32_t R = (uint32_t)sh[0], V = (uint32_t)sh[1];
    int32_t *hpos = load(g, "heldout_logits_pos", EM_ST_I32, 1, sh);
    CHECK(sh[0] == R);
    int32_t *plen = load(g, "prompt_len", EM_ST_I32, 1, sh);
    const uint32_t P = (uint32_t)sh[0];
    int32_t *pids = load(g, "prompt_ids", EM_ST_I32, 2, sh);
    const uint32_t L = (uint32_t)sh[1];
    CHECK(sh[0] == P);
    float *plog = load(g, "prompt_logits", EM_ST_F32, 2, sh);
    CHECK(sh[0] == P && sh[1] == V);
    int32_t *gids = load(g, "greedy_ids", EM_ST_I32, 2, sh);
    const uint32_t G = (uint32_t)sh[1];
    CHECK(sh[0] == P);
    int32_t *gt2i = load(g, "greedy_top2_ids", EM_ST_I32, 3, sh);
    float *gt2v = load(g, "greedy_top2_logits", EM_ST_F32, 3, sh);
    CHECK(sh[0] == P && sh[1] == G && sh[2] == 2);
    em_st_close(g);

    em_model_options mo = em_model_default_options();
    const int cuda = argc > 8 && !strcmp(argv[8], "cuda");
    const char *bk = cuda ? "CUDA" : "CPU";
    mo.backend = cuda ? EM_BACKEND_CUDA : EM_BACKEND_CPU;
    if (cuda) {
        int n_dev = 0;
        if (em_cuda_available(&n_dev) != EM_OK || n_dev == 0) em_test_skip("test_model_golden cuda", "no CUDA device");
    }
    em_model *m = NULL;
    CHECK_STATUS(em_model_open(blob, &mo, &m), EM_OK);
    if (!m) return em_test_finish("test_model_golden");
    em_model_info info;
    em_model_get_info(m, &info);
    CHECK_MSG(info.vocab_size == V, "blob vocab %u, golden vocab %u", info.vocab_size, V);
    printf("%s: %s, pattern %s, %.3f M params, %s backend\n", blob, info.name, info.layer_pattern,
           (double)info.n_params / 1e6, bk);

    /* 1. tokenizer: the ids the goldens were made from */
    em_tokenizer *tok = NULL;
    CHECK_STATUS(em_tokenizer_create(m, &tok), EM_OK);
    if (tok) {
        size_t len = 0, plines_len = 0;
        char *text = read_text(argv[3], &len);
        int ok = ids_equal(tok, argv[3], text, len, held, N);
        free(text);
        char *lines = read_text(argv[4], &plines_len), *line = lines;
        for (uint32_t p = 0; p < P; p++) {
            char *nl = strchr(line, '\n');
            size_t ll = nl ? (size_t)(nl - line) : strlen(line);
            char what[64];
            snprintf(what, sizeof what, "prompt %u", p);
            ok &= ids_equal(tok, what, line, ll, pids + (size_t)p * L, (size_t)plen[p]);
            line = nl ? nl + 1 : line + ll;
        }
        free(lines);
        CHECK(ok);
        printf("tokenizer: held-out text (%u ids) and %u prompts encode to the Python sentencepiece ids: %s\n", N, P,
               ok ? "yes" : "NO");
        em_tokenizer_free(tok);
    }
    const double t_tok = now_s() - t0;

    /* 2. perplexity over the held-out ids (or their first n): one prefill call, every position's logits */
    const uint32_t n = n_heldout_arg >= 2 && (uint64_t)n_heldout_arg < N ? (uint32_t)n_heldout_arg : N;
    em_session_options so = em_session_default_options();
    if (so.max_context < N) so.max_context = N;
    em_plan_report plan;
    CHECK_STATUS(em_plan(m, &so, &plan), EM_OK);
    em_session *s = NULL;
    CHECK_STATUS(em_session_create(m, &so, &s), EM_OK);
    if (!s) { em_model_close(m); return em_test_finish("test_model_golden"); }
    float *all = malloc(sizeof(float) * (size_t)n * V);
    em_poison(all, (size_t)n * V);
    double t1 = now_s();
    CHECK_STATUS(em_session_prefill(s, held, n, EM_LOGITS_ALL, all), EM_OK);
    double t_prefill = now_s() - t1;
    double sum = 0, sum_ref = 0, worst_nll = 0;
    uint32_t worst_t = 0;
    for (uint32_t t = 0; t + 1 < n; t++) {
        double e = nll_of(all + (size_t)t * V, V, held[t + 1]);
        sum += e;
        sum_ref += hnll[t];
        if (!(fabs(e - hnll[t]) <= worst_nll)) { worst_nll = fabs(e - hnll[t]); worst_t = t; }
    }
    const double ppl = exp(sum / (n - 1)), ppl_ref = exp(sum_ref / (n - 1));
    const double ppl_rel = fabs(ppl / ppl_ref - 1);
    CHECK_MSG(ppl_rel <= ppl_tol, "perplexity %.6f vs HF %.6f: relative difference %.3g > %.3g", ppl, ppl_ref, ppl_rel,
              ppl_tol);
    printf("perplexity over %u held-out ids%s: %s %.6f, HF %.6f, relative difference %.2e (tol %.1g); "
           "max |NLL diff| %.2e at position %u; prefill %.2f s (%.0f tok/s, chunk %u)\n",
           n, n < N ? " (a prefix: sanitizer build)" : "", bk, ppl, ppl_ref, ppl_rel, ppl_tol, worst_nll, worst_t,
           t_prefill, n / t_prefill, plan.max_prefill_chunk);
    double worst_row = 0;
    uint32_t n_rows = 0;
    for (uint32_t r = 0; r < R; r++) {
        CHECK(hpos[r] >= 0 && (uint32_t)hpos[r] < N);
        if (hpos[r] < 0 || (uint32_t)hpos[r] >= n) continue;
        char label[128];
        snprintf(label, sizeof label, "held-out logits at position %d", hpos[r]);
        const float *got = all + (size_t)hpos[r] * V, *ref = hrows + (size_t)r * V;
        double e = em_max_rel_err(got, ref, V, NULL);
        if (!(e <= worst_row)) worst_row = e;
        em_check_close(label, got, ref, V, logit_tol);
        n_rows++;
    }
    printf("held-out logits rows (%u positions < %u): worst max rel err %.2e (tol %.1g)\n", n_rows, n, worst_row,
           logit_tol);
    free(all);

    /* 3. prompts: last-position logits, then greedy decode */
    const double t2 = now_s();
    float *row = malloc(sizeof(float) * V);
    for (uint32_t p = 0; p < P; p++) {
        CHECK_STATUS(em_session_reset(s), EM_OK);
        const int32_t *ids = pids + (size_t)p * L;
        em_poison(row, V);
        CHECK_STATUS(em_session_prefill(s, ids, (size_t)plen[p], EM_LOGITS_LAST, row), EM_OK);
        char label[128];
        snprintf(label, sizeof label, "prompt %u last-position logits", p);
        double e = em_max_rel_err(row, plog + (size_t)p * V, V, NULL);
        em_check_close(label, row, plog + (size_t)p * V, V, logit_tol);
        int32_t tok_id = -1, diverged = -1;
        int32_t c2i[2] = {-1, -1};
        float c2v[2] = {0, 0};
        double min_margin = INFINITY;
        for (uint32_t i = 0; i < G; i++) {
            top2(row, V, c2i, c2v);
            if (c2v[0] - c2v[1] < min_margin) min_margin = c2v[0] - c2v[1];
            CHECK_STATUS(em_session_argmax(s, &tok_id), EM_OK);
            const int32_t want = gids[(size_t)p * G + i];
            if (tok_id != want) {
                const int32_t *h2i = gt2i + ((size_t)p * G + i) * 2;
                const float *h2v = gt2v + ((size_t)p * G + i) * 2;
                fprintf(stderr,
                        "FAIL prompt %u: greedy token %u differs: CPU %d (top-2 %d %.6f, %d %.6f: margin %.3g), "
                        "HF %d (top-2 %d %.6f, %d %.6f: margin %.3g)\n",
                        p, i, tok_id, c2i[0], c2v[0], c2i[1], c2v[1], c2v[0] - c2v[1], want, h2i[0], h2v[0], h2i[1],
                        h2v[1], h2v[0] - h2v[1]);
                diverged = (int32_t)i;
                break;
            }
            if (i + 1 < G) CHECK_STATUS(em_session_decode(s, tok_id, row), EM_OK);
        }
        CHECK(diverged < 0);
        printf("prompt %u (%d ids): last-position logits max rel err %.2e (tol %.1g); greedy %u tokens %s HF's "
               "(smallest top1-top2 margin on the CPU %.4f)\n",
               p, plen[p], e, logit_tol, G, diverged < 0 ? "identical to" : "DIFFER from", min_margin);
    }
    free(row);
    const double t_prompts = now_s() - t2;
    em_session_free(s);
    em_model_close(m);
    free(held); free(hnll); free(hrows); free(hpos); free(plen); free(pids); free(plog); free(gids); free(gt2i);
    free(gt2v);
    printf("time: %.2f s in all (goldens, model and tokenizer %.2f s, held-out prefill %.2f s, prompts and greedy "
           "%.2f s)\n", now_s() - t0, t_tok, t_prefill, t_prompts);
    return em_test_finish("test_model_golden");
}
