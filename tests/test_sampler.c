/*
 * test_sampler.c — proves the CPU sampler (runtime/sampler.c, the twin the device sampler will be held to)
 * on logit rows written straight into a session:
 *   - greedy is the argmax with the lowest id on a tie, and draws no random number;
 *   - temperature sampling follows softmax(x / T) (20 000 draws, each frequency within 4.5 sigma);
 *   - top-k, top-p (also a 500-token nucleus, past the 64-candidate first guess) and min-p keep exactly the
 *     tokens they should, with the renormalized frequencies;
 *   - the repetition penalty divides positive and multiplies negative logits, once per distinct id, only
 *     inside repeat_last_n;
 *   - a seed replays the same tokens, another seed does not; log-probabilities are exact;
 *   - NaN and -inf logits are never picked; bad options are EM_ERR_INVALID_ARG, no logits EM_ERR_BAD_STATE.
 * It prints the time of one top-p draw over a 32 000-id row (information, not a check).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "session.h"
#include "testutil.h"
#include "tinyblob.h"

#define V 1000
#define DRAWS 20000

static void set_row(em_session *s, const float *head, int n_head, float rest) {
    for (uint32_t i = 0; i < s->dim.vocab; i++) s->logits[i] = i < (uint32_t)n_head ? head[i] : rest;
    s->have_logits = 1;
}

/* Draws DRAWS tokens and checks their frequencies against p[0..n) (the rest must never appear). */
static void check_freq(em_session *s, const em_sampler_options *o, const double *p, int n, const char *what) {
    static int count[V];
    memset(count, 0, sizeof count);
    for (int i = 0; i < DRAWS; i++) {
        int32_t t = -1;
        CHECK_STATUS(em_session_sample(s, o, &t, NULL), EM_OK);
        if (t >= 0 && t < V) count[t]++;
    }
    for (int i = 0; i < V; i++) {
        double want = i < n ? p[i] : 0.0, f = (double)count[i] / DRAWS;
        double tol = 4.5 * sqrt(want * (1 - want) / DRAWS) + 1e-9;
        if (want == 0.0) CHECK_MSG(count[i] == 0, "%s: id %d drawn %d times, it must never be", what, i, count[i]);
        else CHECK_MSG(fabs(f - want) <= tol, "%s: id %d frequency %.4f, want %.4f +- %.4f", what, i, f, want, tol);
    }
}

static void softmax(const float *x, int n, double inv_t, double *p) {
    double mx = -1e300, z = 0;
    for (int i = 0; i < n; i++) if (x[i] > mx) mx = x[i];
    for (int i = 0; i < n; i++) z += (p[i] = exp((x[i] - mx) * inv_t));
    for (int i = 0; i < n; i++) p[i] /= z;
}

int main(void) {
    char path[256];
    snprintf(path, sizeof path, "/tmp/em_test_sampler_%d.emb", (int)getpid());
    em_tiny_spec spec = em_tiny_default();
    spec.vocab = V;
    CHECK_STATUS(em_tiny_write(path, &spec), EM_OK);
    em_model_options mo = em_model_default_options();
    mo.backend = EM_BACKEND_CPU;
    em_model *m = NULL;
    CHECK_STATUS(em_model_open(path, &mo, &m), EM_OK);
    em_session *s = NULL;
    if (m) CHECK_STATUS(em_session_create(m, NULL, &s), EM_OK);
    if (!s) { em_model_close(m); remove(path); return em_test_finish("test_sampler"); }

    em_sampler_options o = em_sampler_default_options();
    int32_t t = -1;
    float lp = 0;
    CHECK_STATUS(em_session_sample(s, &o, &t, NULL), EM_ERR_BAD_STATE); /* no logits yet */

    /* greedy: the lowest id among equal maxima; no draw */
    const float tie[6] = { 0.5f, 3.0f, -2.0f, 3.0f, 1.0f, 3.0f };
    set_row(s, tie, 6, -5.0f);
    uint64_t rng0[4];
    memcpy(rng0, s->rng, sizeof rng0);
    CHECK_STATUS(em_session_sample(s, &o, &t, &lp), EM_OK);
    CHECK(t == 1);
    CHECK(!memcmp(rng0, s->rng, sizeof rng0));
    double pt[V];
    softmax(tie, 6, 1.0, pt);
    { /* greedy log-probability: log softmax over the whole row (994 entries of -5 too) */
        double z = 0;
        for (int i = 0; i < V; i++) z += exp((i < 6 ? tie[i] : -5.0) - 3.0);
        CHECK_MSG(fabs(lp - (-log(z))) < 1e-5, "greedy logprob %f want %f", lp, -log(z));
    }

    /* temperature 1 and 0.5 */
    const float row[5] = { 2.0f, 1.0f, 0.5f, 0.0f, -1.0f };
    double p[V];
    o.temperature = 1.0f;
    set_row(s, row, 5, -1e30f);
    softmax(row, 5, 1.0, p);
    check_freq(s, &o, p, 5, "T=1");
    o.temperature = 0.5f;
    softmax(row, 5, 2.0, p);
    check_freq(s, &o, p, 5, "T=0.5");

    /* top-k 2 */
    o.temperature = 1.0f;
    o.top_k = 2;
    softmax(row, 2, 1.0, p);
    check_freq(s, &o, p, 2, "top_k=2");
    o.top_k = 0;
    /* top-p 0.7: softmax = .563 .207 .126 .076 .028 -> the first two reach .77 */
    o.top_p = 0.7f;
    check_freq(s, &o, p, 2, "top_p=0.7");
    o.top_p = 0.6f; /* .563 < .6: still two */
    check_freq(s, &o, p, 2, "top_p=0.6");
    o.top_p = 0.5f; /* the first alone */
    p[0] = 1.0;
    check_freq(s, &o, p, 1, "top_p=0.5");
    o.top_p = 1.0f;
    /* min-p 0.3: p/p_max = 1 .37 .22 .14 .05 -> the first two */
    o.min_p = 0.3f;
    softmax(row, 2, 1.0, p);
    check_freq(s, &o, p, 2, "min_p=0.3");
    o.min_p = 0.2f; /* three */
    softmax(row, 3, 1.0, p);
    check_freq(s, &o, p, 3, "min_p=0.2");
    o.min_p = 0.0f;
    /* top-k 4, then top-p over the renormalized four (.579 .213 .129 .078): 0.75 keeps two, 0.8 three */
    o.top_k = 4;
    o.top_p = 0.75f;
    softmax(row, 2, 1.0, p);
    check_freq(s, &o, p, 2, "top_k=4 top_p=0.75");
    o.top_p = 0.8f;
    softmax(row, 3, 1.0, p);
    check_freq(s, &o, p, 3, "top_k=4 top_p=0.8");
    o.top_k = 0;
    o.top_p = 1.0f;

    /* a 500-token nucleus: 1000 equal logits, top_p 0.5 keeps ids 0..499 (ties go to the lower id) */
    o.top_p = 0.5f;
    set_row(s, NULL, 0, 0.0f);
    for (int i = 0; i < 500; i++) p[i] = 1.0 / 500;
    check_freq(s, &o, p, 500, "top_p=0.5 over 1000 equal");
    o.top_p = 1.0f;

    /* log-probabilities */
    set_row(s, row, 5, -1e30f);
    o.top_k = 2;
    for (int i = 0; i < 50; i++) {
        CHECK_STATUS(em_session_sample(s, &o, &t, &lp), EM_OK);
        double want = t == 0 ? row[0] - log(exp(row[0]) + exp(row[1])) : row[1] - log(exp(row[0]) + exp(row[1]));
        CHECK_MSG(t <= 1 && fabs(lp - want) < 1e-5, "top_k logprob of %d: %f want %f", t, lp, want);
    }
    o.top_k = 0;

    /* NaN and -inf are never picked */
    const float bad[4] = { NAN, -INFINITY, 0.0f, 0.1f };
    set_row(s, bad, 4, -1e30f);
    for (int i = 0; i < 2000; i++) {
        CHECK_STATUS(em_session_sample(s, &o, &t, NULL), EM_OK);
        CHECK_MSG(t == 2 || t == 3, "picked %d", t);
    }
    o.temperature = 0;
    CHECK_STATUS(em_session_sample(s, &o, &t, NULL), EM_OK);
    CHECK(t == 3);

    /* repetition penalty (greedy): once per distinct id, inside the window only */
    CHECK_STATUS(em_session_reset(s), EM_OK); /* empties the window */
    float rp[V];
    for (int i = 0; i < V; i++) rp[i] = -3.0f;
    rp[7] = 1.0f;
    rp[9] = 0.4f;
    set_row(s, rp, V, 0);
    em_sampler_options g = em_sampler_default_options();
    for (int i = 0; i < 3; i++) { /* picks 7 three times: 7 is in the window three times */
        CHECK_STATUS(em_session_sample(s, &g, &t, NULL), EM_OK);
        CHECK(t == 7);
    }
    g.repeat_penalty = 2.0f; /* 1.0 / 2 = 0.5 > 0.4 (three times would be 0.125) */
    CHECK_STATUS(em_session_sample(s, &g, &t, NULL), EM_OK);
    CHECK_MSG(t == 7, "penalty applied more than once per distinct id (picked %d)", t);
    g.repeat_penalty = 3.0f; /* 0.33 < 0.4 */
    CHECK_STATUS(em_session_sample(s, &g, &t, NULL), EM_OK);
    CHECK(t == 9);
    g.repeat_last_n = 1; /* the window is now [9]: 7 is outside and wins again */
    CHECK_STATUS(em_session_sample(s, &g, &t, NULL), EM_OK);
    CHECK_MSG(t == 7, "a token outside repeat_last_n was penalized (picked %d)", t);
    CHECK_STATUS(em_session_reset(s), EM_OK);
    for (int i = 0; i < V; i++) rp[i] = -3.0f;
    rp[3] = -1.0f; /* negative logits are multiplied: -1 * 2 = -2 < -1.5 */
    rp[4] = -1.5f;
    set_row(s, rp, V, 0);
    g = em_sampler_default_options();
    CHECK_STATUS(em_session_sample(s, &g, &t, NULL), EM_OK);
    CHECK(t == 3);
    g.repeat_penalty = 2.0f;
    CHECK_STATUS(em_session_sample(s, &g, &t, NULL), EM_OK);
    CHECK(t == 4);

    /* seeds replay */
    o = em_sampler_default_options();
    o.temperature = 0.9f;
    o.top_p = 0.95f;
    float wide[V];
    em_rng r;
    em_rng_seed(&r, 3);
    for (int i = 0; i < V; i++) wide[i] = em_rng_uniform(&r, 4.0f);
    int32_t a[100], b[100], c[100];
    set_row(s, wide, V, 0);
    CHECK_STATUS(em_session_set_seed(s, 42), EM_OK);
    for (int i = 0; i < 100; i++) em_session_sample(s, &o, &a[i], NULL);
    CHECK_STATUS(em_session_set_seed(s, 42), EM_OK);
    for (int i = 0; i < 100; i++) em_session_sample(s, &o, &b[i], NULL);
    CHECK_STATUS(em_session_set_seed(s, 43), EM_OK);
    for (int i = 0; i < 100; i++) em_session_sample(s, &o, &c[i], NULL);
    CHECK(!memcmp(a, b, sizeof a));
    CHECK(memcmp(a, c, sizeof a) != 0);

    /* bad options */
    em_sampler_options x = em_sampler_default_options();
    x.temperature = NAN;
    CHECK_STATUS(em_session_sample(s, &x, &t, NULL), EM_ERR_INVALID_ARG);
    x = em_sampler_default_options(); x.top_p = 1.5f;
    CHECK_STATUS(em_session_sample(s, &x, &t, NULL), EM_ERR_INVALID_ARG);
    x = em_sampler_default_options(); x.min_p = -0.1f;
    CHECK_STATUS(em_session_sample(s, &x, &t, NULL), EM_ERR_INVALID_ARG);
    x = em_sampler_default_options(); x.repeat_penalty = 0;
    CHECK_STATUS(em_session_sample(s, &x, &t, NULL), EM_ERR_INVALID_ARG);
    x = em_sampler_default_options(); x.repeat_last_n = EM_SAMPLER_MAX_RECENT + 1;
    CHECK_STATUS(em_session_sample(s, &x, &t, NULL), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_session_sample(NULL, &x, &t, NULL), EM_ERR_INVALID_ARG);
    em_session_free(s);
    em_model_close(m);
    remove(path);

    /* information: one top-p draw over a 32 000-id row */
    spec.vocab = 32000;
    CHECK_STATUS(em_tiny_write(path, &spec), EM_OK);
    m = NULL;
    s = NULL;
    CHECK_STATUS(em_model_open(path, &mo, &m), EM_OK);
    if (m) CHECK_STATUS(em_session_create(m, NULL, &s), EM_OK);
    if (s) {
        for (uint32_t i = 0; i < 32000; i++) s->logits[i] = em_rng_uniform(&r, 8.0f);
        s->have_logits = 1;
        o = em_sampler_default_options();
        o.temperature = 0.8f;
        o.top_p = 0.9f;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int i = 0; i < 50; i++) CHECK_STATUS(em_session_sample(s, &o, &t, NULL), EM_OK);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("test_sampler: top-p 0.9 over 32000 ids: %.1f us per draw\n",
               ((double)(t1.tv_sec - t0.tv_sec) * 1e6 + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-3) / 50);
    }
    em_session_free(s);
    em_model_close(m);
    remove(path);
    return em_test_finish("test_sampler");
}
