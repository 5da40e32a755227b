/*
 * testutil.h — the small harness every test uses: checks that print what failed, seeded random inputs,
 * poisoning, relative-error comparison that reports the worst index, and the SKIP convention.
 */
#ifndef EM_TESTUTIL_H
#define EM_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "edgemamba.h"

extern int em_test_failures;

#define CHECK(cond) do { if (!(cond)) { em_test_failures++; \
    fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_MSG(cond, ...) do { if (!(cond)) { em_test_failures++; \
    fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); fprintf(stderr, __VA_ARGS__); \
    fputc('\n', stderr); } } while (0)
/* Status check: prints both statuses and em_last_error() on mismatch. */
#define CHECK_STATUS(expr, want) do { em_status s_ = (expr); if (s_ != (want)) { em_test_failures++; \
    fprintf(stderr, "FAIL %s:%d: %s = %s, want %s (%s)\n", __FILE__, __LINE__, #expr, em_status_str(s_), \
            em_status_str(want), em_last_error()); } } while (0)

/* Prints "N passed, M failed" style summary and returns the process exit code. */
int em_test_finish(const char *name);
/* Exits with 77 (ctest SKIP) after printing "SKIP <name>: <why>". */
void em_test_skip(const char *name, const char *why);

/* Deterministic xorshift generator; uniform in [-scale, scale). */
typedef struct em_rng { uint64_t s; } em_rng;
void em_rng_seed(em_rng *r, uint64_t seed);
uint32_t em_rng_u32(em_rng *r);
float em_rng_uniform(em_rng *r, float scale);
void em_fill_uniform(em_rng *r, float *x, size_t n, float scale);
/* Fills with NaN so that unwritten outputs fail every comparison. */
void em_poison(float *x, size_t n);

/* max|got - ref| / max|ref| over n values; *worst gets the index of the largest |got - ref|.
 * NaN anywhere in got gives +inf. */
double em_max_rel_err(const float *got, const float *ref, size_t n, size_t *worst);
/* Checks em_max_rel_err <= tol; on failure prints label, the first 5 pairs and the worst index. */
int em_check_close(const char *label, const float *got, const float *ref, size_t n, double tol);

/* The token ids a generate call streams (em_token_callback): the first EM_TEST_MAX_TOKENS kept, n counts all;
 * with stop_at > 0 the callback asks to stop once n reaches it. */
#define EM_TEST_MAX_TOKENS 64
typedef struct em_test_tokens { int32_t tok[EM_TEST_MAX_TOKENS]; uint32_t n, stop_at; } em_test_tokens;
int em_test_collect(const em_token_event *ev, void *user); /* user: em_test_tokens */

/* Path of a file under tests/data (from $EM_TEST_DATA, else "data/"); static buffer. */
const char *em_test_data(const char *rel);

#endif
