/*
 * test_pattern.c — the hybrid layer pattern (runtime/pattern.c):
 *   - the allocation algorithm (paper Appendix A = Megatron _allocate_auto) reproduces every pattern of
 *     issue 5's table exactly, the released Mamba-2-Hybrid 8B's included, with its layer indices (models.md 2);
 *   - Python's round-half-to-even counts, edge ratios (0, 1), and a sweep: every output has n layers and the
 *     rounded counts;
 *   - Megatron's override rule; parsing from strings and NemotronH layers_block_type lists;
 *   - bad inputs get named statuses and messages.
 */
#include <stdio.h>
#include <string.h>

#include "pattern.h"
#include "testutil.h"

static const struct {
    uint32_t n;
    double attn, mlp;
    const char *want;
} table[] = {
    /* issue 5 (the paper's Table 11, TLC / ATT / MLP) */
    { 24, 0.00, 0.00, "MMMMMMMMMMMMMMMMMMMMMMMM" },
    { 24, 0.08, 0.00, "MMMMMMM*MMMMMMMM*MMMMMMM" },
    { 24, 0.17, 0.00, "MMMM*MMMM*MMMM*MMMM*MMMM" },
    { 24, 0.08, 0.30, "MM-MM-M*M-MMM-MM*-MM-MM-" },
    { 24, 0.08, 0.50, "M-M-M--*M-M-M-M-*M--M-M-" },
    { 24, 0.50, 0.50, "-*-*-*-*-*-**-*-*-*-*-*-" },
    { 48, 0.08, 0.50, "M-M-M--M-*M-M-M-M--*M-M-M-M-*M--M-M-M-*M-M--M-M-" },
    { 56, 0.08, 0.50, "M-M-M--M-M*-M-M-M-M--M*-M-M-M-M-M*--M-M-M-M-M*-M--M-M-M-" }, /* released hybrid 8B */
    /* the golden fixtures (tools/goldens/make_goldens.py allocates them with the same algorithm) */
    { 10, 0.20, 0.40, "M-M*-M*-M-" },
    { 12, 0.25, 0.40, "M-*M--*M-*M-" },
    /* edges */
    { 1, 0.0, 0.0, "M" },
    { 1, 1.0, 0.0, "*" },
    { 1, 0.0, 1.0, "-" },
    { 4, 1.0, 0.0, "****" },
    { 4, 0.0, 1.0, "----" },
};

/* Python round(): half to even */
static uint32_t py_round(double v) {
    double f = (double)(uint64_t)v, d = v - f;
    if (d > 0.5 || (d == 0.5 && ((uint64_t)f & 1))) f += 1.0;
    return (uint32_t)f;
}

static void test_table(void) {
    char out[EM_PATTERN_MAX_LAYERS + 1];
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        memset(out, '?', sizeof out);
        CHECK_STATUS(em_pattern_allocate(table[i].n, table[i].attn, table[i].mlp, out, sizeof out), EM_OK);
        CHECK_MSG(!strcmp(out, table[i].want), "%u/%.2f/%.2f: got %s, want %s", table[i].n, table[i].attn,
                  table[i].mlp, out, table[i].want);
    }
    /* the released hybrid: 24 M, 4 *, 28 -, attention at 10, 22, 33, 45 (models.md section 2) */
    CHECK_STATUS(em_pattern_allocate(56, 0.08, 0.5, out, sizeof out), EM_OK);
    em_pattern_counts c = em_pattern_count(out);
    CHECK(c.n_mamba == 24 && c.n_attn == 4 && c.n_mlp == 28);
    CHECK(out[10] == '*' && out[22] == '*' && out[33] == '*' && out[45] == '*');
    /* the buffer may be exactly n + 1 */
    char small[25];
    CHECK_STATUS(em_pattern_allocate(24, 0.08, 0.5, small, sizeof small), EM_OK);
    CHECK(!strcmp(small, "M-M-M--*M-M-M-M-*M--M-M-"));
}

/* Python's round-half-to-even decides counts: 10 * 0.25 = 2.5 -> 2 attention layers (not 3), 6 * 0.25 = 1.5
 * -> 2 MLP layers; 14 * 0.25 = 3.5 -> 4. */
static void test_rounding(void) {
    char out[64];
    CHECK_STATUS(em_pattern_allocate(10, 0.25, 0.0, out, sizeof out), EM_OK);
    CHECK_MSG(em_pattern_count(out).n_attn == 2, "10 x 0.25: %s", out);
    CHECK_STATUS(em_pattern_allocate(6, 0.0, 0.25, out, sizeof out), EM_OK);
    CHECK_MSG(em_pattern_count(out).n_mlp == 2, "6 x 0.25: %s", out);
    CHECK_STATUS(em_pattern_allocate(14, 0.25, 0.0, out, sizeof out), EM_OK);
    CHECK_MSG(em_pattern_count(out).n_attn == 4, "14 x 0.25: %s", out);

    /* a sweep: every output is a pattern of n layers with the rounded counts (when they fit) */
    char big[EM_PATTERN_MAX_LAYERS + 1];
    int bad = 0;
    for (uint32_t n = 1; n <= 96 && !bad; n++) {
        for (int ai = 0; ai <= 20; ai++) {
            for (int mi = 0; mi + ai <= 20; mi++) {
                double a = ai * 0.05, m = mi * 0.05;
                if (a + m > 1.0) continue; /* 0.05 steps are inexact: the sum may round above 1 */
                if (em_pattern_allocate(n, a, m, big, sizeof big) != EM_OK) { bad = 1; break; }
                em_pattern_counts c = em_pattern_count(big);
                uint32_t na = py_round(n * a), nm = py_round(n * m);
                int fits = na + nm <= n;
                if (strlen(big) != n || c.n_mamba + c.n_attn + c.n_mlp != n || c.n_attn != na ||
                    (fits && c.n_mlp != nm)) {
                    fprintf(stderr, "FAIL sweep %u/%.2f/%.2f: %s\n", n, a, m, big);
                    bad = 1;
                    break;
                }
            }
        }
    }
    CHECK(!bad);
}

static void test_megatron_override(void) {
    char out[64];
    /* no override: the allocated pattern */
    CHECK_STATUS(em_pattern_megatron(24, 0.08, 0.5, NULL, out, sizeof out), EM_OK);
    CHECK(!strcmp(out, "M-M-M--*M-M-M-M-*M--M-M-"));
    /* an override with the same counts replaces it */
    CHECK_STATUS(em_pattern_megatron(24, 0.08, 0.5, "*M-M-M--M-M-M-M-*M--M-M-", out, sizeof out), EM_OK);
    CHECK(!strcmp(out, "*M-M-M--M-M-M-M-*M--M-M-"));
    /* ratios 0: any override of the right length */
    CHECK_STATUS(em_pattern_megatron(3, 0.0, 0.0, "M*-", out, sizeof out), EM_OK);
    CHECK(!strcmp(out, "M*-"));
    /* counts differ from the ratios' (Megatron raises), wrong length, bad char */
    CHECK_STATUS(em_pattern_megatron(24, 0.08, 0.5, "MMMMMMMMMMMMMMMMMMMMMMMM", out, sizeof out), EM_ERR_FORMAT);
    CHECK(strstr(em_last_error(), "24/0/0") && strstr(em_last_error(), "10/2/12"));
    CHECK_STATUS(em_pattern_megatron(4, 0.0, 0.0, "M*-", out, sizeof out), EM_ERR_FORMAT);
    CHECK(strstr(em_last_error(), "3 layers") != NULL);
    CHECK_STATUS(em_pattern_megatron(3, 0.0, 0.0, "M?-", out, sizeof out), EM_ERR_FORMAT);
}

static void test_parse(void) {
    char out[16];
    CHECK_STATUS(em_pattern_parse("M-M*-", out, sizeof out), EM_OK);
    CHECK(!strcmp(out, "M-M*-"));
    em_pattern_counts c = em_pattern_count(out);
    CHECK(c.n_mamba == 2 && c.n_attn == 1 && c.n_mlp == 2);
    static const struct { const char *in; em_status want; const char *msg; } bad[] = {
        { "", EM_ERR_FORMAT, "empty" },
        { "M+M", EM_ERR_FORMAT, "'-'" },          /* the paper's '+' for MLP: told what to write */
        { "MME", EM_ERR_UNSUPPORTED, "layer 2" }, /* NemotronH mixture of experts */
        { "M m", EM_ERR_FORMAT, "layer 1" },
        { "Mm", EM_ERR_FORMAT, "'m'" },           /* Mamba-1 is not a hybrid layer kind */
        { "M\x01", EM_ERR_FORMAT, "0x01" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_STATUS(em_pattern_parse(bad[i].in, out, sizeof out), bad[i].want);
        CHECK_MSG(strstr(em_last_error(), bad[i].msg) != NULL, "'%s': message '%s' lacks '%s'", bad[i].in,
                  em_last_error(), bad[i].msg);
    }
    CHECK_STATUS(em_pattern_parse("MMMMMMMMMMMMMMMMMMMM", out, sizeof out), EM_ERR_INVALID_ARG); /* cap 16 */
    CHECK_STATUS(em_pattern_parse(NULL, out, sizeof out), EM_ERR_INVALID_ARG);
    static char huge[EM_PATTERN_MAX_LAYERS + 2];
    memset(huge, 'M', EM_PATTERN_MAX_LAYERS + 1);
    static char hout[EM_PATTERN_MAX_LAYERS + 8];
    CHECK_STATUS(em_pattern_parse(huge, hout, sizeof hout), EM_ERR_FORMAT);
    huge[EM_PATTERN_MAX_LAYERS] = 0;
    CHECK_STATUS(em_pattern_parse(huge, hout, sizeof hout), EM_OK);
}

static void test_block_types(void) {
    char out[16];
    /* transformers 5.x spelling and the legacy one */
    const char *new_names[] = { "linear_attention", "mlp", "linear_attention", "full_attention", "mlp" };
    CHECK_STATUS(em_pattern_from_block_types(new_names, 5, out, sizeof out), EM_OK);
    CHECK(!strcmp(out, "M-M*-"));
    const char *old_names[] = { "mamba", "attention", "mlp" };
    CHECK_STATUS(em_pattern_from_block_types(old_names, 3, out, sizeof out), EM_OK);
    CHECK(!strcmp(out, "M*-"));
    const char *moe[] = { "mamba", "moe" };
    CHECK_STATUS(em_pattern_from_block_types(moe, 2, out, sizeof out), EM_ERR_UNSUPPORTED);
    CHECK(strstr(em_last_error(), "[1]") != NULL);
    const char *unknown[] = { "mamba", "mamba", "conv" };
    CHECK_STATUS(em_pattern_from_block_types(unknown, 3, out, sizeof out), EM_ERR_FORMAT);
    CHECK(strstr(em_last_error(), "[2]") && strstr(em_last_error(), "\"conv\""));
    const char *with_null[] = { "mamba", NULL };
    CHECK_STATUS(em_pattern_from_block_types(with_null, 2, out, sizeof out), EM_ERR_FORMAT);
    CHECK_STATUS(em_pattern_from_block_types(new_names, 0, out, sizeof out), EM_ERR_FORMAT);
    CHECK_STATUS(em_pattern_from_block_types(new_names, 5, out, 5), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_pattern_from_block_types(NULL, 5, out, sizeof out), EM_ERR_INVALID_ARG);
}

static void test_bad_allocation_args(void) {
    char out[64];
    CHECK_STATUS(em_pattern_allocate(0, 0.0, 0.0, out, sizeof out), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_pattern_allocate(EM_PATTERN_MAX_LAYERS + 1, 0.0, 0.0, out, sizeof out), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_pattern_allocate(24, -0.1, 0.0, out, sizeof out), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_pattern_allocate(24, 0.0, 1.5, out, sizeof out), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_pattern_allocate(24, 0.0 / 0.0, 0.0, out, sizeof out), EM_ERR_INVALID_ARG); /* NaN */
    CHECK_STATUS(em_pattern_allocate(24, 0.6, 0.5, out, sizeof out), EM_ERR_INVALID_ARG);
    CHECK(strstr(em_last_error(), "more than 1") != NULL);
    CHECK_STATUS(em_pattern_allocate(24, 0.08, 0.5, out, 24), EM_ERR_INVALID_ARG); /* no room for the NUL */
    CHECK_STATUS(em_pattern_allocate(24, 0.08, 0.5, NULL, 64), EM_ERR_INVALID_ARG);
}

int main(void) {
    test_table();
    test_rounding();
    test_megatron_override();
    test_parse();
    test_block_types();
    test_bad_allocation_args();
    return em_test_finish("test_pattern");
}
