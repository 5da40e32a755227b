/*
 * fuzz_snapshot.c — the snapshot reader (runtime/snapshot.c, em_session_restore) on arbitrary bytes, into a
 * session of the tiny hybrid of fuzz_models.h (written to a temporary file once).
 *
 * Proves: no input crashes, over-reads or hangs em_session_restore; a refusal is EM_ERR_SNAPSHOT_CORRUPT or
 * EM_ERR_SNAPSHOT_MISMATCH with a message and leaves the session exactly as it was (its own snapshot is
 * byte-identical before and after); an accepted snapshot gives a session that can sample (repetition penalty
 * over the restored window, the restored generator), decode, snapshot and restore again without leaving its
 * memory. In fuzz builds the checksums are skipped, so restored bytes are really arbitrary.
 * Seeds: fuzz/corpus/snapshot/ (fuzz/seedgen.c: snapshots of this model in several states).
 */
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "fuzz_models.h"

static em_model *g_model;
static em_session *g_sess;
static uint8_t *g_before, *g_after;
static size_t g_cap;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    char path[] = "/tmp/em-fuzz-snapshot-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) { perror("mkstemp"); abort(); }
    close(fd);
    em_tiny_spec spec = em_fuzz_snap_spec();
    em_model_options mo = em_model_default_options();
    mo.backend = EM_BACKEND_CPU;
    mo.n_threads = 1;
    em_session_options so = em_fuzz_snap_session();
    if (em_tiny_write(path, &spec) != EM_OK || em_model_open(path, &mo, &g_model) != EM_OK ||
        em_session_create(g_model, &so, &g_sess) != EM_OK) {
        fprintf(stderr, "fuzz_snapshot: cannot make the model: %s\n", em_last_error());
        abort();
    }
    unlink(path); /* mapped: the model keeps the bytes */
    /* the largest snapshot of this session: full KV and logits */
    int32_t toks[24];
    for (int i = 0; i < 24; i++) toks[i] = i;
    FUZZ_CHECK(em_session_prefill(g_sess, toks, 24, EM_LOGITS_LAST, NULL) == EM_OK);
    FUZZ_CHECK(em_session_snapshot(g_sess, NULL, 0, &g_cap) == EM_OK);
    g_before = malloc(g_cap);
    g_after = malloc(g_cap);
    FUZZ_CHECK(g_before && g_after);
    return 0;
}

static size_t snap(uint8_t *buf) {
    size_t n = 0;
    FUZZ_CHECK(em_session_snapshot(g_sess, buf, g_cap, &n) == EM_OK);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_sess) LLVMFuzzerInitialize(NULL, NULL);
    /* a known state: three tokens in, logits present */
    FUZZ_CHECK(em_session_reset(g_sess) == EM_OK);
    const int32_t toks[3] = { 1, 2, 3 };
    FUZZ_CHECK(em_session_prefill(g_sess, toks, 3, EM_LOGITS_LAST, NULL) == EM_OK);
    size_t n_before = snap(g_before);

    em_status s = em_session_restore(g_sess, size ? data : (const uint8_t *)"", size);
    if (s != EM_OK) {
        fuzz_check_failure(s);
        FUZZ_CHECK(s == EM_ERR_SNAPSHOT_CORRUPT || s == EM_ERR_SNAPSHOT_MISMATCH);
        size_t n_after = snap(g_after); /* refused: nothing changed */
        FUZZ_CHECK(n_after == n_before && !memcmp(g_before, g_after, n_before));
        return 0;
    }
    uint64_t pos = 0;
    FUZZ_CHECK(em_session_position(g_sess, &pos) == EM_OK && pos <= em_fuzz_snap_session().max_context);
    em_sampler_options so = em_sampler_default_options();
    so.temperature = 0.9f;
    so.top_k = 8;
    so.top_p = 0.95f;
    so.repeat_penalty = 1.3f;
    int32_t t = -1;
    s = em_session_sample(g_sess, &so, &t, NULL);
    if (s == EM_OK) FUZZ_CHECK(t >= 0 && t < 48);
    else FUZZ_CHECK(s == EM_ERR_BAD_STATE); /* a snapshot without logits */
    s = em_session_decode(g_sess, 5, NULL);
    FUZZ_CHECK(s == EM_OK || s == EM_ERR_BAD_STATE || s == EM_ERR_CONTEXT_FULL);
    size_t n = snap(g_after); /* the session's own snapshot of what it now holds restores */
    FUZZ_CHECK(em_session_restore(g_sess, g_after, n) == EM_OK);
    return 0;
}
