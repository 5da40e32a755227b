/*
 * test_snapshot_cuda.c — snapshots and determinism of CUDA sessions (issue 11's GPU part), on a bundled trained
 * model (models/mamba2 or models/hybrid, packed by tests/model.cmake):
 *   - CUDA -> CUDA: prefill a 300-token prompt, snapshot, greedy-decode 16 tokens; a second CUDA session restored
 *     from the snapshot decodes the same 16 ids with bit-identical logits (the device state, widened bf16 K/V
 *     included, goes through the snapshot exactly);
 *   - CUDA -> CPU and CPU -> CUDA: a snapshot taken on one backend restores on the other (the KV rows are converted
 *     f32 <-> bf16); the continuations' logits agree within the bf16 bound (2e-2, the CUDA prompt path's) and the
 *     greedy ids agree (a divergence is reported with its margin);
 *   - a corrupted snapshot is refused with EM_ERR_SNAPSHOT_CORRUPT and the CUDA session keeps its state;
 *   - determinism: sampled generation (temperature 0.8, top-p 0.95, seed 1234) gives the same ids in two CUDA
 *     sessions and twice in one after a reset;
 *   - restore time vs the prompt's prefill time (printed: docs/benchmarks.md).
 * Without a CUDA device: "SKIP test_snapshot_cuda: no CUDA device", exit 77.
 *   test_snapshot_cuda MODEL.emb
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_rt.h"
#include "edgemamba.h"
#include "testutil.h"

#define NP 300
#define ND 16

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Greedy-decodes ND tokens from the session's state: ids and each step's logits ([ND, V]). */
static void continue_greedy(em_session *s, uint32_t V, int32_t *ids, float *logits) {
    int32_t t = 0;
    CHECK_STATUS(em_session_argmax(s, &t), EM_OK);
    for (int i = 0; i < ND; i++) {
        ids[i] = t;
        CHECK_STATUS(em_session_decode(s, t, logits + (size_t)i * V), EM_OK);
        CHECK_STATUS(em_session_argmax(s, &t), EM_OK);
    }
}

static em_session *session(em_model *m) {
    em_session_options so = em_session_default_options();
    so.max_context = 1024;
    em_session *s = NULL;
    CHECK_STATUS(em_session_create(m, &so, &s), EM_OK);
    return s;
}

static void compare_ids(const char *what, const int32_t *a, const int32_t *b, const float *la, uint32_t V) {
    for (int i = 0; i < ND; i++)
        if (a[i] != b[i]) {
            /* the margin at the divergence on side a: a near-tie flips between backends, a real bug does not */
            const float *row = la + (size_t)(i ? i - 1 : 0) * V;
            float b1 = -1e30f, b2 = -1e30f;
            for (uint32_t v = 0; v < V; v++) {
                if (row[v] > b1) { b2 = b1; b1 = row[v]; }
                else if (row[v] > b2) b2 = row[v];
            }
            CHECK_MSG(0, "%s: greedy ids differ at step %d (%d vs %d; top-2 margin %.4g)", what, i, a[i], b[i],
                      (double)(b1 - b2));
            return;
        }
    printf("  %s: %d greedy ids equal\n", what, ND);
}

static int32_t g_ids[2][64];
static int g_n[2];
static int record(const em_token_event *e, void *user) {
    int k = *(int *)user;
    if (g_n[k] < 64) g_ids[k][g_n[k]++] = e->token;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: test_snapshot_cuda MODEL.emb\n"); return 2; }
    int n_dev = 0;
    if (em_cuda_available(&n_dev) != EM_OK || n_dev == 0) em_test_skip("test_snapshot_cuda", "no CUDA device");
    em_model_options mo = em_model_default_options();
    mo.backend = EM_BACKEND_CUDA;
    em_model *mc = NULL, *mh = NULL;
    CHECK_STATUS(em_model_open(argv[1], &mo, &mc), EM_OK);
    mo.backend = EM_BACKEND_CPU;
    CHECK_STATUS(em_model_open(argv[1], &mo, &mh), EM_OK);
    if (!mc || !mh) return em_test_finish("test_snapshot_cuda");
    em_model_info info;
    em_model_get_info(mc, &info);
    const uint32_t V = info.vocab_size;
    printf("%s: pattern %s, vocab %u\n", argv[1], info.layer_pattern, V);

    int32_t prompt[NP];
    em_rng r;
    em_rng_seed(&r, 11);
    for (int i = 0; i < NP; i++) prompt[i] = (int32_t)(4 + em_rng_u32(&r) % (V - 4));
    float *l1 = malloc(sizeof(float) * ND * V), *l2 = malloc(sizeof(float) * ND * V), *l3 = malloc(sizeof(float) * ND * V);
    int32_t id1[ND], id2[ND], id3[ND];

    /* CUDA -> CUDA, exact */
    em_session *a = session(mc), *b = session(mc), *h = session(mh);
    if (!a || !b || !h) return em_test_finish("test_snapshot_cuda");
    double t0 = now_s();
    CHECK_STATUS(em_session_prefill(a, prompt, NP, EM_LOGITS_LAST, NULL), EM_OK);
    const double t_prefill = now_s() - t0;
    size_t size = 0;
    CHECK_STATUS(em_session_snapshot(a, NULL, 0, &size), EM_OK);
    uint8_t *snap = malloc(size), *bad = malloc(size);
    CHECK_STATUS(em_session_snapshot(a, snap, size, &size), EM_OK);
    continue_greedy(a, V, id1, l1);
    t0 = now_s();
    CHECK_STATUS(em_session_restore(b, snap, size), EM_OK);
    const double t_restore = now_s() - t0;
    continue_greedy(b, V, id2, l2);
    compare_ids("CUDA -> CUDA", id1, id2, l1, V);
    CHECK_MSG(!memcmp(l1, l2, sizeof(float) * ND * V), "CUDA -> CUDA: continuation logits are not bit-identical");
    printf("  CUDA -> CUDA: %zu-byte snapshot, logits of %d steps bit-identical; prefill of %d tokens %.3f ms, "
           "restore %.3f ms\n", size, ND, NP, 1e3 * t_prefill, 1e3 * t_restore);

    /* CUDA -> CPU */
    CHECK_STATUS(em_session_restore(h, snap, size), EM_OK);
    continue_greedy(h, V, id3, l3);
    compare_ids("CUDA -> CPU", id1, id3, l1, V);
    em_check_close("CUDA -> CPU continuation logits", l3, l1, (size_t)ND * V, 2e-2);

    /* CPU -> CUDA */
    CHECK_STATUS(em_session_reset(h), EM_OK);
    CHECK_STATUS(em_session_prefill(h, prompt, NP, EM_LOGITS_LAST, NULL), EM_OK);
    size_t hsize = 0;
    CHECK_STATUS(em_session_snapshot(h, NULL, 0, &hsize), EM_OK);
    uint8_t *hsnap = malloc(hsize);
    CHECK_STATUS(em_session_snapshot(h, hsnap, hsize, &hsize), EM_OK);
    CHECK_STATUS(em_session_restore(b, hsnap, hsize), EM_OK);
    continue_greedy(b, V, id2, l2);
    compare_ids("CPU -> CUDA", id1, id2, l1, V);
    em_check_close("CPU -> CUDA continuation logits", l2, l1, (size_t)ND * V, 2e-2);

    /* a corrupted snapshot: refused, the session unchanged (its continuation is still a's) */
    CHECK_STATUS(em_session_restore(b, snap, size), EM_OK);
    memcpy(bad, snap, size);
    bad[size / 2] ^= 0x40;
    CHECK_STATUS(em_session_restore(b, bad, size), EM_ERR_SNAPSHOT_CORRUPT);
    continue_greedy(b, V, id2, l2);
    CHECK_MSG(!memcmp(l1, l2, sizeof(float) * ND * V), "after a refused restore the CUDA session's state changed");
    printf("  corrupted snapshot refused, the CUDA session kept its state\n");

    /* determinism of sampled generation on the device */
    em_generate_options go = em_generate_default_options();
    go.sampler.temperature = 0.8f;
    go.sampler.top_p = 0.95f;
    go.sampler.seed = 1234;
    go.max_tokens = 32;
    go.stop_at_eos = 0;
    int k0 = 0, k1 = 1;
    CHECK_STATUS(em_session_reset(a), EM_OK);
    CHECK_STATUS(em_session_reset(b), EM_OK);
    CHECK_STATUS(em_session_generate_tokens(a, prompt, 40, &go, record, &k0, NULL), EM_OK);
    CHECK_STATUS(em_session_generate_tokens(b, prompt, 40, &go, record, &k1, NULL), EM_OK);
    CHECK_MSG(g_n[0] == 32 && g_n[1] == 32 && !memcmp(g_ids[0], g_ids[1], sizeof(int32_t) * 32),
              "seeded sampling differs between two CUDA sessions (%d, %d tokens)", g_n[0], g_n[1]);
    g_n[1] = 0;
    CHECK_STATUS(em_session_reset(a), EM_OK);
    CHECK_STATUS(em_session_generate_tokens(a, prompt, 40, &go, record, &k1, NULL), EM_OK);
    CHECK_MSG(g_n[1] == 32 && !memcmp(g_ids[0], g_ids[1], sizeof(int32_t) * 32),
              "seeded sampling differs after a reset of the same CUDA session");
    printf("  seeded sampling (T 0.8, top-p 0.95): 32 ids identical across sessions and after reset\n");

    em_session_free(a);
    em_session_free(b);
    em_session_free(h);
    em_model_close(mc);
    em_model_close(mh);
    free(l1); free(l2); free(l3); free(snap); free(bad); free(hsnap);
    return em_test_finish("test_snapshot_cuda");
}
