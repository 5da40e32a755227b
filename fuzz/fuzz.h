/*
 * fuzz.h — what the fuzz targets (fuzz/fuzz_*.c) share: the libFuzzer entry points, the source tree's path
 * (for the tokenizer fixtures) and the tiny model the snapshot target and the seed generator both use.
 *
 * Each target is one LLVMFuzzerTestOneInput. It builds two ways (tests/fuzz.cmake):
 *   - with clang -fsanitize=fuzzer,address,undefined and -DEM_FUZZING (checksums skipped) in build/fuzz:
 *     scripts/stages/20-fuzz.sh runs each for a bounded time;
 *   - with the normal compiler and fuzz/replay.c as main(): ctest (label fuzz) replays fuzz/corpus/<target>/
 *     in the normal and the ASan+UBSan builds, so every committed input stays a regression test.
 */
#ifndef EM_FUZZ_H
#define EM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "edgemamba.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The repository root (compile definition EM_FUZZ_SOURCE_DIR), for fixtures. */
#ifndef EM_FUZZ_SOURCE_DIR
#define EM_FUZZ_SOURCE_DIR "."
#endif

/* A broken invariant: print it and abort, so that the fuzzer (and the replay test) reports a crash. */
#define FUZZ_CHECK(cond) do { if (!(cond)) { fprintf(stderr, "fuzz invariant failed %s:%d: %s (%s)\n", \
    __FILE__, __LINE__, #cond, em_last_error()); abort(); } } while (0)

/* Is every status a named one and every failure explained? (em_status_str names it; em_last_error says why) */
static inline void fuzz_check_failure(em_status s) {
    const char *m = em_last_error();
    FUZZ_CHECK(s != EM_OK && m && m[0]);
}

#endif /* EM_FUZZ_H */
