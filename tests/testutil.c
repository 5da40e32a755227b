/* testutil.c — see testutil.h. */
#include "testutil.h"

#include <math.h>
#include <string.h>

int em_test_failures = 0;

int em_test_finish(const char *name) {
    if (em_test_failures) {
        printf("%s: 0 passed, 1 failed (%d checks failed)\n", name, em_test_failures);
        return 1;
    }
    printf("%s: 1 passed, 0 failed\n", name);
    return 0;
}

void em_test_skip(const char *name, const char *why) {
    printf("SKIP %s: %s\n", name, why);
    fflush(stdout);
    exit(77);
}

void em_rng_seed(em_rng *r, uint64_t seed) { r->s = seed * 0x9E3779B97F4A7C15ull + 0x1234567ull; if (!r->s) r->s = 1; }
uint32_t em_rng_u32(em_rng *r) {
    uint64_t x = r->s; x ^= x << 13; x ^= x >> 7; x ^= x << 17; r->s = x;
    return (uint32_t)(x >> 32);
}
float em_rng_uniform(em_rng *r, float scale) { return scale * (2.0f * ((float)em_rng_u32(r) / 4294967296.0f) - 1.0f); }
void em_fill_uniform(em_rng *r, float *x, size_t n, float scale) { for (size_t i = 0; i < n; i++) x[i] = em_rng_uniform(r, scale); }
void em_poison(float *x, size_t n) { for (size_t i = 0; i < n; i++) x[i] = NAN; }

double em_max_rel_err(const float *got, const float *ref, size_t n, size_t *worst) {
    double maxref = 0, maxdiff = 0; size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (isnan(got[i]) || isnan(d)) { if (worst) *worst = i; return INFINITY; }
        if (fabs((double)ref[i]) > maxref) maxref = fabs((double)ref[i]);
        if (d > maxdiff) { maxdiff = d; w = i; }
    }
    if (worst) *worst = w;
    if (maxref == 0) return maxdiff;
    return maxdiff / maxref;
}

int em_check_close(const char *label, const float *got, const float *ref, size_t n, double tol) {
    size_t w = 0;
    double e = em_max_rel_err(got, ref, n, &w);
    if (e <= tol) return 1;
    em_test_failures++;
    fprintf(stderr, "FAIL %s: max rel err %.3g > %.3g (n=%zu, worst index %zu: got %.7g ref %.7g)\n", label, e, tol, n, w,
            (double)got[w], (double)ref[w]);
    for (size_t i = 0; i < n && i < 5; i++) fprintf(stderr, "  [%zu] got %.7g ref %.7g\n", i, (double)got[i], (double)ref[i]);
    return 0;
}

const char *em_test_data(const char *rel) {
    static char buf[4096];
    const char *d = getenv("EM_TEST_DATA");
    snprintf(buf, sizeof buf, "%s/%s", d && *d ? d : "data", rel);
    return buf;
}

int em_test_collect(const em_token_event *ev, void *user) {
    em_test_tokens *c = user;
    if (c->n < EM_TEST_MAX_TOKENS) c->tok[c->n] = ev->token;
    c->n++;
    return c->stop_at && c->n >= c->stop_at;
}
