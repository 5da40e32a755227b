/*
 * fuzz_safetensors.c — em-pack's safetensors reader (tools/pack/safetensors.c) on arbitrary bytes.
 *
 * Proves: no input crashes, over-reads, leaks or hangs em_st_open_memory; a refusal is a named status with a
 * message; an accepted file's tensors lie inside the input, have size = elements * dtype size, are found by
 * name and are listed in strictly increasing name order. Seeds: fuzz/corpus/safetensors/ (make_seeds.sh).
 */
#include <string.h>

#include "fuzz.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    em_st *st = NULL;
    em_status s = em_st_open_memory(size ? data : (const uint8_t *)"", size, "fuzz", &st);
    if (s != EM_OK) {
        fuzz_check_failure(s);
        FUZZ_CHECK(st == NULL);
        return 0;
    }
    size_t n = em_st_count(st);
    for (size_t i = 0; i < n; i++) {
        const em_st_tensor *t = em_st_at(st, i);
        FUZZ_CHECK(t && t->name);
        FUZZ_CHECK(t->size == t->n_elems * em_st_dtype_size(t->dtype));
        FUZZ_CHECK(t->size == 0 || (t->data >= data && t->data + t->size <= data + size));
        FUZZ_CHECK(em_st_find(st, t->name) == t && em_st_index(st, t) == i);
        if (i) FUZZ_CHECK(strcmp(em_st_at(st, i - 1)->name, t->name) < 0);
        char buf[256];
        em_st_shape_str(t->shape, t->n_dims, buf, sizeof buf);
    }
    em_st_close(st);
    return 0;
}
