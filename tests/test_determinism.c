/*
 * test_determinism.c — CPU determinism (issue 11): a fixed seed gives identical tokens run to run and across
 * thread counts, with real sampling (temperature, top-k, top-p, min-p, repetition penalty).
 *
 * Proves, on a tiny random Mamba-2 + attention + MLP hybrid (tests/tinyblob.c):
 *   1. in one process, fresh sessions with the same seed generate the same tokens, and the last logits are
 *      bit-identical; a session reset and reseeded repeats them too;
 *   2. the same across em_model_options.n_threads = 1, 2, 3 (the matrix products and attention split their
 *      rows over threads; each output is still computed by one thread in one order, so nothing may change);
 *   3. run to run: two child processes (fresh address space and allocator state) print the same tokens as
 *      the parent, so nothing depends on addresses or uninitialized memory;
 *   4. the test can fail: other seeds give other token sequences (the sampler really draws).
 * Usage: test_determinism            (the test)
 *        test_determinism --child S  (prints the tokens of seed S, one line; used by the test itself)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "edgemamba.h"
#include "testutil.h"
#include "tinyblob.h"

#define N_GEN 48u
#define VOCAB 512u

#define N_PROMPT 40u
static int32_t PROMPT[N_PROMPT]; /* filled in main: (37 i + 5) mod VOCAB */

typedef struct run_out { em_test_tokens t; float logits[VOCAB]; } run_out;
_Static_assert(N_GEN <= EM_TEST_MAX_TOKENS, "the collector keeps EM_TEST_MAX_TOKENS ids");
#define on_token em_test_collect

static em_generate_options gen_opts(uint64_t seed) {
    em_generate_options o = em_generate_default_options();
    o.max_tokens = N_GEN;
    o.stop_at_eos = 0;
    o.sampler.temperature = 0.8f;
    o.sampler.top_k = 40;
    o.sampler.top_p = 0.9f;
    o.sampler.min_p = 0.02f;
    o.sampler.repeat_penalty = 1.1f;
    o.sampler.seed = seed;
    return o;
}

static const char *write_model(char *path, size_t cap) {
    snprintf(path, cap, "/tmp/em-determinism-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) { perror("mkstemp"); exit(1); }
    close(fd);
    em_tiny_spec spec = em_tiny_default();
    spec.pattern = "M*-M*-";
    /* big enough that the CPU twins really split the work over threads: a matrix product goes parallel at
     * 2^16 multiply-adds (kernels/ref/linear_ref.c), attention too (attention_ref.c); in_proj is 128 x 584 per
     * token, the head 128 x 512, a 16-token chunk of attention over 40 positions ~2^18 */
    spec.d_model = 128;
    spec.vocab = VOCAB;
    spec.d_state = 16;
    spec.n_head = 8;
    spec.head_dim = 32;
    spec.n_group = 2;
    spec.attn_n_head = 8;
    spec.attn_n_kv_head = 2;
    spec.attn_head_dim = 32;
    spec.d_ff = 256;
    spec.mlp_act = 1; /* GELU */
    spec.rope_fraction = 0.5f;
    spec.rope_base = 10000.0f;
    spec.seed = 77;
    if (em_tiny_write(path, &spec) != EM_OK) { fprintf(stderr, "write: %s\n", em_last_error()); exit(1); }
    return path;
}

static em_model *open_model(const char *path, int n_threads) {
    em_model_options mo = em_model_default_options();
    mo.backend = EM_BACKEND_CPU;
    mo.n_threads = n_threads;
    em_model *m = NULL;
    CHECK_STATUS(em_model_open(path, &mo, &m), EM_OK);
    if (!m) exit(1);
    return m;
}

/* PROMPT through a fresh session (chunks of 16, so prefill is chunked), then N_GEN sampled tokens. */
static void run(em_model *m, uint64_t seed, run_out *out) {
    memset(out, 0, sizeof *out);
    em_session_options so = em_session_default_options();
    so.max_context = 128;
    so.max_prefill_chunk = 16; /* the 40-token prompt in 3 chunks */
    em_session *s = NULL;
    CHECK_STATUS(em_session_create(m, &so, &s), EM_OK);
    if (!s) return;
    em_generate_options go = gen_opts(seed);
    CHECK_STATUS(em_session_generate_tokens(s, PROMPT, N_PROMPT, &go, on_token, &out->t, NULL), EM_OK);
    CHECK(out->t.n == N_GEN);
    /* the logits after the last token, bit for bit */
    CHECK_STATUS(em_session_prefill(s, &out->t.tok[N_GEN - 1], 1, EM_LOGITS_LAST, out->logits), EM_OK);
    /* reset + the same seed repeats the tokens in the same session */
    em_test_tokens again = { .n = 0 };
    CHECK_STATUS(em_session_reset(s), EM_OK);
    CHECK_STATUS(em_session_generate_tokens(s, PROMPT, N_PROMPT, &go, on_token, &again, NULL), EM_OK);
    CHECK_MSG(again.n == N_GEN && !memcmp(again.tok, out->t.tok, sizeof(int32_t) * N_GEN),
              "seed %llu: a reset session does not repeat its tokens", (unsigned long long)seed);
    em_session_free(s);
}

static int first_diff(const int32_t *a, const int32_t *b, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) if (a[i] != b[i]) return (int)i;
    return -1;
}

/* Runs this program as a child printing seed's tokens; compares them with want. */
static void check_child(const char *self, uint64_t seed, const run_out *want) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "'%s' --child %llu", self, (unsigned long long)seed);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL);
    if (!p) return;
    int32_t got[N_GEN];
    uint32_t n = 0;
    while (n < N_GEN && fscanf(p, "%d", &got[n]) == 1) n++;
    int rc = pclose(p);
    CHECK_MSG(rc == 0 && n == N_GEN, "child for seed %llu: exit %d, %u tokens", (unsigned long long)seed, rc, n);
    int d = first_diff(got, want->t.tok, N_GEN);
    CHECK_MSG(n == N_GEN && d < 0, "seed %llu: another process generated other tokens (first difference at %d)",
              (unsigned long long)seed, d);
}

int main(int argc, char **argv) {
    char path[64];
    for (uint32_t i = 0; i < N_PROMPT; i++) PROMPT[i] = (int32_t)((37 * i + 5) % VOCAB);
    static const uint64_t seeds[3] = { 1, 42, 0xDEADBEEFull };
    if (argc == 3 && !strcmp(argv[1], "--child")) {
        em_model *m = open_model(write_model(path, sizeof path), 0);
        run_out r;
        run(m, strtoull(argv[2], NULL, 10), &r);
        for (uint32_t i = 0; i < r.t.n && i < N_GEN; i++) printf("%d ", r.t.tok[i]);
        printf("\n");
        em_model_close(m);
        unlink(path);
        return em_test_failures ? 1 : 0;
    }
    write_model(path, sizeof path);

    /* 1 and 2: per seed, the single-thread run is the reference for every other thread count */
    static const int threads[3] = { 1, 2, 3 };
    run_out ref[3], r;
    for (int ti = 0; ti < 3; ti++) {
        em_model *m = open_model(path, threads[ti]);
        for (int si = 0; si < 3; si++) {
            run(m, seeds[si], ti == 0 ? &ref[si] : &r);
            if (ti == 0) {
                run(m, seeds[si], &r); /* the same model, a second fresh session */
            }
            int d = first_diff(r.t.tok, ref[si].t.tok, N_GEN);
            CHECK_MSG(d < 0, "seed %llu, %d threads: tokens differ from 1 thread (first at %d: %d vs %d)",
                      (unsigned long long)seeds[si], threads[ti], d, d < 0 ? 0 : r.t.tok[d],
                      d < 0 ? 0 : ref[si].t.tok[d]);
            CHECK_MSG(!memcmp(r.logits, ref[si].logits, sizeof r.logits),
                      "seed %llu, %d threads: the last logits are not bit-identical to 1 thread's",
                      (unsigned long long)seeds[si], threads[ti]);
        }
        em_model_close(m);
    }
    /* 3: run to run, in other processes (with the default thread count) */
    const char *self = "/proc/self/exe";
    char exe[4096];
    ssize_t l = readlink(self, exe, sizeof exe - 1);
    if (l > 0) { exe[l] = 0; self = exe; }
    for (int si = 0; si < 3; si += 2) check_child(self, seeds[si], &ref[si]);
    check_child(self, seeds[0], &ref[0]);
    /* 4: other seeds, other tokens (else the comparisons above prove nothing about sampling) */
    CHECK_MSG(first_diff(ref[0].t.tok, ref[1].t.tok, N_GEN) >= 0 && first_diff(ref[1].t.tok, ref[2].t.tok, N_GEN) >= 0,
              "different seeds gave the same tokens: the sampler does not draw");
    int distinct = 0;
    for (uint32_t i = 1; i < N_GEN; i++) distinct += ref[0].t.tok[i] != ref[0].t.tok[i - 1];
    CHECK_MSG(distinct > (int)(N_GEN / 4), "seed 1 generates a near-constant sequence (%d changes)", distinct);
    printf("determinism: %u tokens x 3 seeds identical over 1-3 threads, 2 sessions and 3 processes\n", N_GEN);
    unlink(path);
    return em_test_finish("test_determinism");
}
