/*
 * fuzz_blob.c — the blob reader (runtime/blob.c) and the model loader (runtime/model.c) on arbitrary bytes.
 *
 * Proves: no input crashes, reads out of bounds, leaks or hangs em_blob_open_memory; every refusal is a named
 * status with a message; a blob the reader accepts has every tensor inside its data section. An accepted blob
 * then goes through em_model_open (config checks and tensor binding, from a memfd) and, when that accepts it
 * too, a session runs two tokens on it: whatever dims a blob declares, the executor stays inside its plan.
 * In fuzz builds (-DEM_FUZZING) the checksums are skipped so that mutations reach the parsers behind them.
 * Seeds: fuzz/corpus/blob/ (fuzz/make_seeds.sh).
 */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "blob.h"
#include "fuzz.h"

/* em_model_open takes a path: hand it the bytes through an anonymous memory file. */
static void fuzz_model(const uint8_t *data, size_t size) {
    int fd = memfd_create("em-fuzz-blob", MFD_CLOEXEC);
    if (fd < 0) return;
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) { close(fd); return; }
        done += (size_t)w;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    em_model_options mo = em_model_default_options();
    mo.backend = EM_BACKEND_CPU;
    mo.n_threads = 1;
    mo.verify_data = (size & 1) != 0; /* both paths */
    em_model *m = NULL;
    em_status s = em_model_open(path, &mo, &m);
    close(fd); /* the model keeps its own mapping */
    if (s != EM_OK) { fuzz_check_failure(s); FUZZ_CHECK(m == NULL); return; }
    em_model_info info;
    FUZZ_CHECK(em_model_get_info(m, &info) == EM_OK);
    em_session_options so = em_session_default_options();
    so.max_context = 4;
    so.max_prefill_chunk = 2;
    em_plan_report plan;
    em_session *sess = NULL;
    /* a declared session far larger than the weights is refused by the plan, not allocated */
    if (em_plan(m, &so, &plan) == EM_OK && plan.session_bytes < (64u << 20) &&
        em_session_create(m, &so, &sess) == EM_OK) {
        int32_t toks[2] = { 0, (int32_t)(info.vocab_size - 1) };
        FUZZ_CHECK(em_session_prefill(sess, toks, 2, EM_LOGITS_LAST, NULL) == EM_OK);
        int32_t t = -1;
        FUZZ_CHECK(em_session_argmax(sess, &t) == EM_OK && t >= 0 && (uint32_t)t < info.vocab_size);
        FUZZ_CHECK(em_session_decode(sess, t, NULL) == EM_OK);
        em_session_free(sess);
    }
    em_model_close(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    em_blob b;
    em_blob_open_options o = { .verify_data = 1 };
    em_status s = em_blob_open_memory(size ? data : NULL, size, &o, &b);
    if (s != EM_OK) {
        fuzz_check_failure(s);
        return 0;
    }
    FUZZ_CHECK(b.file_size == size && b.data >= data && b.data + b.data_size <= data + size);
    for (uint32_t i = 0; i < b.n_tensors; i++) {
        const em_blob_tensor *t = &b.tensors[i];
        FUZZ_CHECK(t->offset + t->size <= b.data_size);
        FUZZ_CHECK(em_blob_find(&b, t->name) >= 0);
    }
    em_blob_close(&b);
    fuzz_model(data, size);
    return 0;
}
