/*
 * test_golden.c — proves that the CPU backend computes what HF transformers computes: a blob packed by
 * em-pack from an HF fixture (tests/data/<fixture>/) is run on the golden prompt and its logits are compared
 * with HF's (tools/goldens/make_goldens.py wrote them; tests/data/README.md defines every key):
 *   - prefill: the logits at every one of the 40 prompt positions, max|got - ref| / max|ref| <= tol per position
 *     (the worst position and value are printed on failure);
 *   - decode: 16 greedy steps through the recurrent path; each step's logits within tol, and the greedy ids
 *     identical to HF's.
 *
 *   test_golden BLOB.emb GOLDEN.safetensors TOL [cpu|cuda]   (cuda: on the CUDA executor; SKIP without a device)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgemamba.h"
#include "cuda_rt.h"
#include "safetensors.h"
#include "testutil.h"

static const em_st_tensor *need(const em_st *st, const char *name, em_st_dtype dt, uint32_t nd) {
    const em_st_tensor *t = em_st_find(st, name);
    if (!t || t->dtype != dt || t->n_dims != nd) {
        fprintf(stderr, "golden file: tensor %s missing or of the wrong dtype/rank\n", name);
        exit(1);
    }
    return t;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: test_golden BLOB.emb GOLDEN.safetensors TOL [cpu|cuda]\n");
        return 2;
    }
    em_model_options mo = em_model_default_options();
    mo.backend = EM_BACKEND_CPU;
    if (argc == 5 && !strcmp(argv[4], "cuda")) {
        int n_dev = 0;
        if (em_cuda_available(&n_dev) != EM_OK || n_dev == 0) em_test_skip("test_golden cuda", "no CUDA device");
        mo.backend = EM_BACKEND_CUDA;
    }
    const char *blob = argv[1], *golden = argv[2];
    double tol = atof(argv[3]);
    char label[256];

    em_st *g = NULL;
    CHECK_STATUS(em_st_open(golden, &g), EM_OK);
    if (!g) return em_test_finish("test_golden");
    const em_st_tensor *t_prompt = need(g, "prompt_ids", EM_ST_I32, 1);
    const em_st_tensor *t_pl = need(g, "prefill_logits", EM_ST_F32, 2);
    const em_st_tensor *t_ids = need(g, "decode_ids", EM_ST_I32, 1);
    const em_st_tensor *t_dl = need(g, "decode_logits", EM_ST_F32, 2);
    const uint32_t n_prompt = (uint32_t)t_prompt->shape[0], n_dec = (uint32_t)t_ids->shape[0];
    const uint32_t V = (uint32_t)t_pl->shape[1];
    /* safetensors data is only byte-aligned: copy into aligned arrays */
    int32_t *prompt = malloc(t_prompt->size), *ids = malloc(t_ids->size);
    float *pl = malloc(t_pl->size), *dl = malloc(t_dl->size);
    memcpy(prompt, t_prompt->data, t_prompt->size);
    memcpy(ids, t_ids->data, t_ids->size);
    memcpy(pl, t_pl->data, t_pl->size);
    memcpy(dl, t_dl->data, t_dl->size);
    CHECK(t_pl->shape[0] == n_prompt && t_dl->shape[0] == n_dec && t_dl->shape[1] == V);

    em_model *m = NULL;
    CHECK_STATUS(em_model_open(blob, &mo, &m), EM_OK);
    if (!m) return em_test_finish("test_golden");
    em_model_info info;
    em_model_get_info(m, &info);
    CHECK_MSG(info.vocab_size == V, "blob vocab %u, golden vocab %u", info.vocab_size, V);

    /* prefill: every position (chunk 16, so the 40-token prompt also crosses chunk boundaries) */
    em_session_options so = em_session_default_options();
    so.max_prefill_chunk = 16;
    em_session *s = NULL;
    CHECK_STATUS(em_session_create(m, &so, &s), EM_OK);
    float *got = malloc(sizeof(float) * n_prompt * V);
    em_poison(got, (size_t)n_prompt * V);
    CHECK_STATUS(em_session_prefill(s, prompt, n_prompt, EM_LOGITS_ALL, got), EM_OK);
    double worst = 0;
    uint32_t worst_pos = 0;
    for (uint32_t p = 0; p < n_prompt; p++) {
        double e = em_max_rel_err(got + (size_t)p * V, pl + (size_t)p * V, V, NULL);
        if (e > worst) { worst = e; worst_pos = p; }
    }
    snprintf(label, sizeof label, "%s prefill position %u (worst)", blob, worst_pos);
    em_check_close(label, got + (size_t)worst_pos * V, pl + (size_t)worst_pos * V, V, tol);
    printf("backend: %s\n", info.backend == EM_BACKEND_CUDA ? "CUDA" : "CPU");
    printf("prefill: %u positions, worst max rel err %.3g at position %u (tol %.1g)\n", n_prompt, worst, worst_pos, tol);

    /* decode: greedy, step by step, logits and ids */
    int32_t tok = -1;
    CHECK_STATUS(em_session_argmax(s, &tok), EM_OK);
    float *row = malloc(sizeof(float) * V);
    double worst_dec = 0;
    int ids_equal = 1;
    for (uint32_t i = 0; i < n_dec; i++) {
        if (tok != ids[i]) {
            ids_equal = 0;
            fprintf(stderr, "FAIL greedy id %u: got %d, HF %d\n", i, tok, ids[i]);
            tok = ids[i]; /* continue on HF's path so the logits comparison stays meaningful */
        }
        em_poison(row, V);
        CHECK_STATUS(em_session_decode(s, ids[i], row), EM_OK);
        double e = em_max_rel_err(row, dl + (size_t)i * V, V, NULL);
        if (e > worst_dec) worst_dec = e;
        snprintf(label, sizeof label, "%s decode step %u", blob, i);
        em_check_close(label, row, dl + (size_t)i * V, V, tol);
        CHECK_STATUS(em_session_argmax(s, &tok), EM_OK);
    }
    CHECK(ids_equal);
    printf("decode: %u greedy steps, ids %s HF's, worst max rel err %.3g\n", n_dec, ids_equal ? "equal to" : "DIFFER from",
           worst_dec);

    free(row);
    free(got);
    em_session_free(s);
    em_model_close(m);
    free(prompt); free(ids); free(pl); free(dl);
    em_st_close(g);
    return em_test_finish("test_golden");
}
