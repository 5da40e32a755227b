/*
 * test_api.c — proves the public API's contracts that need no model: every function refuses NULL and
 * out-of-range arguments with a named status and a message, every status has a distinct name, a missing
 * file is an I/O error naming the path, and the log callback receives what the library logs.
 */
#include <string.h>

#include "edgemamba.h"
#include "testutil.h"

static int n_logged;
static void sink(em_log_level level, const char *msg, void *user) {
    (void)level; (void)msg;
    (*(int *)user)++;
}

int main(void) {
    /* status names: distinct, never NULL, unknown values still named */
    static const em_status all[] = { EM_OK, EM_ERR_INVALID_ARG, EM_ERR_UNSUPPORTED, EM_ERR_BAD_STATE,
        EM_ERR_TOKEN_RANGE, EM_ERR_ABORTED, EM_ERR_BUFFER_TOO_SMALL, EM_ERR_INTERNAL, EM_ERR_IO, EM_ERR_NOT_FOUND,
        EM_ERR_FORMAT, EM_ERR_BLOB_MAGIC, EM_ERR_BLOB_VERSION, EM_ERR_BLOB_TRUNCATED, EM_ERR_BLOB_CHECKSUM,
        EM_ERR_BLOB_BOUNDS, EM_ERR_BLOB_OVERLAP, EM_ERR_BLOB_CORRUPT, EM_ERR_BLOB_CONFIG, EM_ERR_BLOB_TENSOR,
        EM_ERR_OUT_OF_MEMORY, EM_ERR_PLAN_TOO_LARGE, EM_ERR_CONTEXT_FULL, EM_ERR_DEVICE, EM_ERR_NO_DEVICE,
        EM_ERR_TOKENIZER, EM_ERR_SNAPSHOT_MISMATCH, EM_ERR_SNAPSHOT_CORRUPT };
    size_t n = sizeof all / sizeof all[0];
    for (size_t i = 0; i < n; i++) {
        CHECK(em_status_str(all[i]) != NULL);
        for (size_t j = 0; j < i; j++) CHECK_MSG(strcmp(em_status_str(all[i]), em_status_str(all[j])) != 0, "%d vs %d", all[i], all[j]);
    }
    CHECK(strstr(em_status_str((em_status)-999), "unknown") != NULL);

    /* version */
    CHECK(em_version_number() == EM_VERSION_NUMBER);

    /* NULL arguments */
    em_model *m = (em_model *)0x1;
    CHECK_STATUS(em_model_open(NULL, NULL, &m), EM_ERR_INVALID_ARG);
    CHECK(m == NULL);
    CHECK(strlen(em_last_error()) > 0);
    CHECK_STATUS(em_model_open("x.emb", NULL, NULL), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_model_get_info(NULL, NULL), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_plan(NULL, NULL, NULL), EM_ERR_INVALID_ARG);
    em_session *s = (em_session *)0x1;
    CHECK_STATUS(em_session_create(NULL, NULL, &s), EM_ERR_INVALID_ARG);
    CHECK(s == NULL);
    CHECK_STATUS(em_session_create_static(NULL, NULL, NULL, 0, &s), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_session_prefill(NULL, NULL, 0, EM_LOGITS_LAST, NULL), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_session_decode(NULL, 0, NULL), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_session_argmax(NULL, NULL), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_session_reset(NULL), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_session_position(NULL, NULL), EM_ERR_INVALID_ARG);
    em_session_free(NULL);
    em_model_close(NULL);

    /* options out of range */
    em_model_options mo = em_model_default_options();
    mo.n_threads = -3;
    CHECK_STATUS(em_model_open("x.emb", &mo, &m), EM_ERR_INVALID_ARG);

    /* a missing file names its path */
    em_status st = em_model_open("/nonexistent/dir/model.emb", NULL, &m);
    CHECK_MSG(st == EM_ERR_IO || st == EM_ERR_NOT_FOUND, "got %s", em_status_str(st));
    CHECK_MSG(strstr(em_last_error(), "/nonexistent/dir/model.emb") != NULL, "message: %s", em_last_error());

    /* the log callback sees library logs at or above its level */
    n_logged = 0;
    em_log_set(sink, &n_logged, EM_LOG_DEBUG);
    (void)em_model_open(NULL, NULL, &m); /* failures are logged at DEBUG */
    CHECK(n_logged > 0);
    em_log_set(NULL, NULL, EM_LOG_WARN);

    return em_test_finish("test_api");
}
