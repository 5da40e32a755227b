/*
 * test_snapshot.c — proves state snapshots (runtime/snapshot.c):
 *   - continuation is exact: 40 sampled tokens (temperature, top-k, top-p, repetition penalty, seed) in one
 *     session equal 15 tokens, a snapshot, a NEW session (another prefill chunk), a restore and 25 more —
 *     the same ids, bit-identical logits and the same text (a character split at the snapshot included);
 *     through a caller buffer (size query first) and through a file;
 *   - a snapshot from another blob or of other dims is EM_ERR_SNAPSHOT_MISMATCH, and so is a newer version;
 *     a truncated, bit-flipped (header, table, every section) or random one is EM_ERR_SNAPSHOT_CORRUPT;
 *     after every refusal the session is byte for byte what it was (its own snapshot is unchanged);
 *   - a snapshot without logits restores a session that must prefill before generating;
 *   - hybrid models (when the NemotronH hybrid fixture is given): the KV section holds only the used
 *     prefix, continuation is exact into a session with a different max_context, and a session whose
 *     max_context cannot hold the snapshot refuses it unchanged.
 *
 *   test_snapshot TINY_SPM.emb TINY_BPE.emb TINY_NONE.emb [HYBRID.emb]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <xxhash.h>

#include "session.h"
#include "testutil.h"
#include "tinyblob.h"
#include "util.h"

#define N 40
#define K 15
#define V 512

typedef struct rec {
    int32_t ids[N];
    float logits[N][V];
    char text[N * 64];
    size_t text_len;
    int n;
    em_session *s;
} rec;

static int on_token(const em_token_event *ev, void *user) {
    rec *r = user;
    if (r->n < N) {
        r->ids[r->n] = ev->token;
        memcpy(r->logits[r->n], r->s->logits, sizeof(float) * V); /* the row this token was drawn from */
        r->n++;
    }
    memcpy(r->text + r->text_len, ev->text, ev->text_len);
    r->text_len += ev->text_len;
    return 0;
}

static em_session *new_session(em_model *m, uint32_t chunk, uint32_t ctx) {
    em_session_options so = em_session_default_options();
    so.max_prefill_chunk = chunk;
    if (ctx) so.max_context = ctx;
    em_session *s = NULL;
    CHECK_STATUS(em_session_create(m, &so, &s), EM_OK);
    return s;
}

/* The session's own snapshot, malloc'd: compared before and after a refused restore. */
static uint8_t *snap(em_session *s, size_t *n) {
    CHECK_STATUS(em_session_snapshot(s, NULL, 0, n), EM_OK);
    uint8_t *b = malloc(*n);
    CHECK_STATUS(em_session_snapshot(s, b, *n, n), EM_OK);
    return b;
}

static void expect_refused(em_session *s, const uint8_t *buf, size_t n, em_status want, const char *what) {
    size_t n0, n1;
    uint8_t *before = snap(s, &n0);
    em_status got = em_session_restore(s, buf, n);
    CHECK_MSG(got == want, "%s: %s, want %s (%s)", what, em_status_str(got), em_status_str(want), em_last_error());
    uint8_t *after = snap(s, &n1);
    CHECK_MSG(n0 == n1 && !memcmp(before, after, n0), "%s: a refused restore changed the session", what);
    free(before);
    free(after);
}

static void compare(const rec *full, const rec *a, const rec *b, const char *what) {
    CHECK_MSG(a->n == K && b->n == N - K, "%s: %d + %d tokens", what, a->n, b->n);
    CHECK_MSG(!memcmp(full->ids, a->ids, K * sizeof(int32_t)) &&
                  !memcmp(full->ids + K, b->ids, (N - K) * sizeof(int32_t)),
              "%s: ids differ after restore", what);
    CHECK_MSG(!memcmp(full->logits[K], b->logits[0], sizeof(float) * (size_t)(N - K) * V),
              "%s: logits not bit-identical", what);
    CHECK_MSG(a->text_len + b->text_len == full->text_len && !memcmp(full->text, a->text, a->text_len) &&
              !memcmp(full->text + a->text_len, b->text, b->text_len), "%s: text differs", what);
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: test_snapshot SPM.emb BPE.emb NONE.emb [HYBRID.emb]\n"); return 2; }
    em_model_options mo = em_model_default_options();
    mo.backend = EM_BACKEND_CPU;
    em_model *m = NULL, *mb = NULL;
    CHECK_STATUS(em_model_open(argv[1], &mo, &m), EM_OK);
    CHECK_STATUS(em_model_open(argv[2], &mo, &mb), EM_OK);
    if (!m || !mb) return em_test_finish("test_snapshot");
    static rec full, a, b;
    em_generate_options o = em_generate_default_options();
    o.max_tokens = N;
    o.stop_at_eos = 0;
    o.sampler.temperature = 0.9f;
    o.sampler.top_k = 50;
    o.sampler.top_p = 0.95f;
    o.sampler.repeat_penalty = 1.1f;
    o.sampler.seed = 7;
    const char *prompt = "Snapshots keep the state: 状态 😀";

    /* uninterrupted */
    em_session *s = new_session(m, 0, 0);
    full.s = s;
    CHECK_STATUS(em_session_generate(s, prompt, &o, on_token, &full, NULL), EM_OK);
    CHECK(full.n == N);

    /* K tokens, snapshot to a buffer, a new session, restore, the rest */
    em_session *s1 = new_session(m, 0, 0);
    a.s = s1;
    o.max_tokens = K;
    CHECK_STATUS(em_session_generate(s1, prompt, &o, on_token, &a, NULL), EM_OK);
    size_t need = 0, got = 0;
    CHECK_STATUS(em_session_snapshot(s1, NULL, 0, &need), EM_OK);
    uint8_t *buf = malloc(need);
    CHECK_STATUS(em_session_snapshot(s1, buf, need - 1, &got), EM_ERR_BUFFER_TOO_SMALL);
    CHECK(got == need);
    CHECK_STATUS(em_session_snapshot(s1, buf, need, &got), EM_OK);
    CHECK(got == need);
    em_session *s2 = new_session(m, 7, 0); /* another prefill chunk: restore needs only the same blob */
    CHECK_STATUS(em_session_restore(s2, buf, need), EM_OK);
    uint64_t p1 = 0, p2 = 0;
    em_session_position(s1, &p1);
    em_session_position(s2, &p2);
    CHECK(p1 == p2 && p1 > K);
    b.s = s2;
    o.max_tokens = N - K;
    o.sampler.seed = 0; /* continue the restored generator */
    CHECK_STATUS(em_session_generate(s2, "", &o, on_token, &b, NULL), EM_OK);
    compare(&full, &a, &b, "buffer");

    /* through a file */
    char path[256];
    snprintf(path, sizeof path, "/tmp/em_test_snapshot_%d.snap", (int)getpid());
    CHECK_STATUS(em_session_snapshot_file(s1, path), EM_OK);
    em_session *s3 = new_session(m, 0, 0);
    CHECK_STATUS(em_session_restore_file(s3, path), EM_OK);
    memset(&b, 0, sizeof b);
    b.s = s3;
    CHECK_STATUS(em_session_generate(s3, "", &o, on_token, &b, NULL), EM_OK);
    compare(&full, &a, &b, "file");
    CHECK_STATUS(em_session_restore_file(s3, "/nonexistent/x.snap"), EM_ERR_NOT_FOUND);
    FILE *f = fopen(path, "wb");
    fputs("short", f);
    fclose(f);
    CHECK_STATUS(em_session_restore_file(s3, path), EM_ERR_SNAPSHOT_CORRUPT);
    remove(path);

    /* refusals leave the session as it was */
    em_session *t = new_session(m, 0, 0);
    CHECK_STATUS(em_session_prefill(t, (const int32_t[]){ 5, 6, 7 }, 3, EM_LOGITS_LAST, NULL), EM_OK);
    expect_refused(t, buf, need - 1, EM_ERR_SNAPSHOT_CORRUPT, "truncated by one byte");
    expect_refused(t, buf, need / 2, EM_ERR_SNAPSHOT_CORRUPT, "half");
    expect_refused(t, buf, 127, EM_ERR_SNAPSHOT_CORRUPT, "shorter than the header");
    expect_refused(t, buf, 0, EM_ERR_SNAPSHOT_CORRUPT, "empty");
    uint8_t *bad = malloc(need + 64);
    memcpy(bad, buf, need);
    memset(bad + need, 0, 64);
    expect_refused(t, bad, need + 64, EM_ERR_SNAPSHOT_CORRUPT, "padded");
    /* flips: header fields, table, the table checksum, first/middle/last byte of every section */
    size_t offs[64], n_offs = 0;
    const size_t hdr_offs[] = { 0, 8, 16, 24, 39, 40, 48, 52, 56, 90, 119, 120, 127, 128, 140, 150 };
    for (size_t i = 0; i < sizeof hdr_offs / sizeof hdr_offs[0]; i++) offs[n_offs++] = hdr_offs[i];
    uint32_t n_sec = em_ld32(buf + 48);
    CHECK(n_sec == 4); /* conv, ssm, logits, sampler: no KV for a pure Mamba-2 model */
    offs[n_offs++] = 128 + 32 * n_sec + 3; /* the table checksum */
    for (uint32_t i = 0; i < n_sec && i < 5; i++) {
        uint64_t off = em_ld64(buf + 128 + 32 * i + 8), sz = em_ld64(buf + 128 + 32 * i + 16);
        offs[n_offs++] = off;
        offs[n_offs++] = off + sz / 2;
        offs[n_offs++] = off + sz - 1;
    }
    for (size_t i = 0; i < n_offs; i++) {
        memcpy(bad, buf, need);
        bad[offs[i]] ^= 0x10;
        char what[64];
        snprintf(what, sizeof what, "byte %zu flipped", offs[i]);
        expect_refused(t, bad, need, EM_ERR_SNAPSHOT_CORRUPT, what);
    }
    em_rng r;
    em_rng_seed(&r, 1);
    for (size_t i = 0; i < need; i++) bad[i] = (uint8_t)em_rng_u32(&r);
    expect_refused(t, bad, need, EM_ERR_SNAPSHOT_CORRUPT, "random bytes");
    /* a newer version, with a valid header checksum */
    memcpy(bad, buf, need);
    em_st32(bad + 8, 2);
    em_st64(bad + 120, XXH3_64bits(bad, 120));
    expect_refused(t, bad, need, EM_ERR_SNAPSHOT_MISMATCH, "version 2");
    free(bad);

    /* another blob: same dims, another content id (the BPE-packed fixture); other dims (a tiny blob) */
    em_session *sb = new_session(mb, 0, 0);
    CHECK_STATUS(em_session_prefill(sb, (const int32_t[]){ 1, 2 }, 2, EM_LOGITS_LAST, NULL), EM_OK);
    expect_refused(sb, buf, need, EM_ERR_SNAPSHOT_MISMATCH, "another blob");
    char tpath[256];
    snprintf(tpath, sizeof tpath, "/tmp/em_test_snapshot_%d.emb", (int)getpid());
    em_tiny_spec spec = em_tiny_default();
    spec.d_state = 8;
    CHECK_STATUS(em_tiny_write(tpath, &spec), EM_OK);
    em_model *mt = NULL;
    CHECK_STATUS(em_model_open(tpath, &mo, &mt), EM_OK);
    if (mt) {
        em_session *st = new_session(mt, 0, 0);
        expect_refused(st, buf, need, EM_ERR_SNAPSHOT_MISMATCH, "other dims");
        em_session_free(st);
        em_model_close(mt);
    }
    remove(tpath);

    /* a snapshot without logits: smaller; the restored session must prefill first */
    em_session *fresh = new_session(m, 0, 0);
    size_t nf = 0;
    uint8_t *fb = snap(fresh, &nf);
    CHECK(nf + sizeof(float) * V <= need);
    CHECK_STATUS(em_session_restore(t, fb, nf), EM_OK);
    CHECK_STATUS(em_session_position(t, &p1), EM_OK);
    CHECK(p1 == 0);
    CHECK_STATUS(em_session_generate(t, "", &o, NULL, NULL, NULL), EM_ERR_BAD_STATE);
    free(fb);
    em_session_free(fresh);
    CHECK_STATUS(em_session_restore(NULL, buf, need), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_session_restore(t, NULL, need), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_session_snapshot(t, buf, need, NULL), EM_ERR_INVALID_ARG);
    free(buf);

    /* hybrid: the KV prefix */
    if (argc > 4) {
        em_model *mh = NULL;
        CHECK_STATUS(em_model_open(argv[4], &mo, &mh), EM_OK);
        em_model_info info;
        if (mh && em_model_get_info(mh, &info) == EM_OK && strchr(info.layer_pattern, '*')) {
            int32_t prompt_ids[20];
            for (int i = 0; i < 20; i++) prompt_ids[i] = (int32_t)((i * 37 + 11) % 512);
            em_generate_options oh = o;
            oh.max_tokens = N;
            oh.sampler.seed = 3;
            em_session *h = new_session(mh, 0, 64);
            memset(&full, 0, sizeof full);
            full.s = h;
            CHECK_STATUS(em_session_generate_tokens(h, prompt_ids, 20, &oh, on_token, &full, NULL), EM_OK);
            em_session *h1 = new_session(mh, 0, 64);
            memset(&a, 0, sizeof a);
            a.s = h1;
            oh.max_tokens = K;
            CHECK_STATUS(em_session_generate_tokens(h1, prompt_ids, 20, &oh, on_token, &a, NULL), EM_OK);
            size_t nh = 0, nh_short = 0;
            uint8_t *hb = snap(h1, &nh);
            CHECK(em_ld32(hb + 48) == 5); /* conv, ssm, kv, logits, sampler */
            em_session *h0 = new_session(mh, 0, 64);
            CHECK_STATUS(em_session_prefill(h0, prompt_ids, 10, EM_LOGITS_LAST, NULL), EM_OK);
            uint8_t *hs = snap(h0, &nh_short);
            const size_t kv_row = 2 * sizeof(float) * info.attn_n_kv_head * info.attn_head_dim;
            size_t n_attn = 0;
            for (const char *c = info.layer_pattern; *c; c++) n_attn += *c == '*';
            CHECK_MSG(nh - nh_short >= (20 + K - 10) * n_attn * kv_row - 64 &&
                      nh - nh_short <= (20 + K - 10) * n_attn * kv_row + 64,
                      "the KV section should grow with the tokens used (%zu vs %zu bytes)", nh, nh_short);
            em_session *h2 = new_session(mh, 5, 62); /* another chunk and max_context (35 + 25 positions) */
            CHECK_STATUS(em_session_restore(h2, hb, nh), EM_OK);
            memset(&b, 0, sizeof b);
            b.s = h2;
            oh.max_tokens = N - K;
            oh.sampler.seed = 0;
            CHECK_STATUS(em_session_generate_tokens(h2, NULL, 0, &oh, on_token, &b, NULL), EM_OK);
            CHECK_MSG(!memcmp(full.ids + K, b.ids, (N - K) * sizeof(int32_t)) &&
                      !memcmp(full.logits[K], b.logits[0], sizeof(float) * (size_t)(N - K) * V),
                      "hybrid: continuation after restore differs");
            em_session *h3 = new_session(mh, 0, 16); /* 35 positions do not fit in 16 */
            expect_refused(h3, hb, nh, EM_ERR_SNAPSHOT_MISMATCH, "hybrid: max_context too small");
            em_session_free(h3);
            em_session_free(h2);
            em_session_free(h0);
            em_session_free(h1);
            em_session_free(h);
            free(hb);
            free(hs);
            printf("test_snapshot: hybrid %s: KV prefix snapshot and exact continuation checked\n", info.layer_pattern);
        } else {
            printf("test_snapshot: %s is not a hybrid with attention layers: KV part not checked\n", argv[4]);
        }
        em_model_close(mh);
    }

    em_session_free(t);
    em_session_free(sb);
    em_session_free(s);
    em_session_free(s1);
    em_session_free(s2);
    em_session_free(s3);
    em_model_close(m);
    em_model_close(mb);
    return em_test_finish("test_snapshot");
}
