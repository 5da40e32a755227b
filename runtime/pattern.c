/*
 * pattern.c — the hybrid layer pattern (see pattern.h): the allocation algorithm of the paper's Appendix A,
 * Megatron's override rule, and parsing from a string or a NemotronH layers_block_type list.
 *
 * Why the allocation is in C: a Megatron checkpoint stores the two ratios (its args), not the pattern, and
 * the released hybrid 8B was trained with --hybrid-attention-ratio 0.08 --hybrid-mlp-ratio 0.5; the
 * executor needs the exact pattern those produce. The algorithm below is a line-for-line transcription of
 * Megatron-LM's `_allocate_auto` (ML@df61e60, megatron/core/ssm/mamba_hybrid_layer_allocation.py), which is
 * Algorithm 1 of the paper. Two details decide the output bit for bit:
 *   - counts are Python's round(): round half to EVEN on the double product (round(24 * 0.5) = 12,
 *     round(2.5) = 2), done here by round_half_even();
 *   - x is a double that is decremented and compared with 0.5 in exactly Python's order, so every
 *     intermediate value is the same IEEE double (x86-64 and aarch64 evaluate double in double; no
 *     contraction is possible in x += r / x -= 1).
 * With these, the algorithm as the paper prints it gives every pattern of the table (the paper's
 * Table 11 is garbled in our text copy; tests/test_pattern.c checks all eight, including the released
 * 56-layer hybrid). No variant was needed; see docs/hybrid.md.
 */
#include "pattern.h"

#include <math.h>
#include <string.h>

#include "tensors.h"
#include "util.h"

// ---- helpers ------------------------------------------------------------------------------------------

/* Python 3 round(v) for a finite v >= 0: nearest integer, ties to even. */
static double round_half_even(double v) {
    double f = floor(v), diff = v - f;
    if (diff > 0.5) return f + 1.0;
    if (diff < 0.5) return f;
    return fmod(f, 2.0) == 0.0 ? f : f + 1.0;
}

static int valid_ratio(double r) { return r >= 0.0 && r <= 1.0; } /* false for NaN */

em_pattern_counts em_pattern_count(const char *p) {
    em_pattern_counts c = {0, 0, 0};
    for (; p && *p; p++) {
        if (*p == EM_LAYER_MAMBA2) c.n_mamba++;
        else if (*p == EM_LAYER_ATTN) c.n_attn++;
        else if (*p == EM_LAYER_MLP) c.n_mlp++;
    }
    return c;
}

// ---- Algorithm 1 (Megatron _allocate_auto) ----------------------------------------------------------------

em_status em_pattern_allocate(uint32_t n_layer, double attn_ratio, double mlp_ratio, char *out, size_t cap) {
    if (!out) return em_fail(EM_ERR_INVALID_ARG, "em_pattern_allocate: out must not be NULL");
    if (n_layer == 0 || n_layer > EM_PATTERN_MAX_LAYERS)
        return em_fail(EM_ERR_INVALID_ARG, "hybrid pattern: %u layers is out of range (1..%u)", n_layer,
                       EM_PATTERN_MAX_LAYERS);
    if (cap < (size_t)n_layer + 1)
        return em_fail(EM_ERR_INVALID_ARG, "hybrid pattern: a buffer of %zu bytes cannot hold %u layers", cap, n_layer);
    if (!valid_ratio(attn_ratio) || !valid_ratio(mlp_ratio))
        return em_fail(EM_ERR_INVALID_ARG, "hybrid pattern: ratios must be in [0, 1] (attention %g, MLP %g)", attn_ratio,
                       mlp_ratio);
    if (attn_ratio + mlp_ratio > 1.0)
        return em_fail(EM_ERR_INVALID_ARG, "hybrid pattern: attention ratio %g + MLP ratio %g is more than 1",
                       attn_ratio, mlp_ratio);
    const double total = (double)n_layer;

    /* 1. attention: runs of Mamba between (and around) the attention layers as equal as possible */
    const double attn_count = round_half_even(total * attn_ratio);
    double mamba_count = total - attn_count;
    const double sections = attn_count + 1.0;
    const double section_len = mamba_count / sections;
    memset(out, EM_LAYER_MAMBA2, n_layer);
    out[n_layer] = 0;
    double x = section_len;
    for (uint32_t l = 0; l < n_layer; l++) {
        if (x < 0.5) {
            out[l] = EM_LAYER_ATTN;
            x += section_len;
        } else {
            x -= 1.0;
        }
    }

    /* 2. MLP: spread over the Mamba slots, never replacing attention; the bias away from the start keeps a
     *    Mamba layer first and an MLP layer last */
    const double mlp_count = round_half_even(total * mlp_ratio);
    if (mlp_count > 0.0) {
        mamba_count -= mlp_count;
        const double mamba_to_mlp = mamba_count / mlp_count;
        x = mamba_to_mlp;
        for (uint32_t l = 0; l < n_layer; l++) {
            if (out[l] != EM_LAYER_MAMBA2) continue;
            if (x < 0.5) {
                out[l] = EM_LAYER_MLP;
                x += mamba_to_mlp;
            } else {
                x -= 1.0;
            }
        }
    }
    return EM_OK;
}

// ---- explicit patterns ------------------------------------------------------------------------------------

em_status em_pattern_parse(const char *p, char *out, size_t cap) {
    if (!p || !out) return em_fail(EM_ERR_INVALID_ARG, "em_pattern_parse: NULL argument");
    size_t n = 0;
    for (; p[n]; n++) {
        char ch = p[n];
        if (n >= EM_PATTERN_MAX_LAYERS)
            return em_fail(EM_ERR_FORMAT, "hybrid pattern: more than %u layers", EM_PATTERN_MAX_LAYERS);
        if (ch == EM_LAYER_MAMBA2 || ch == EM_LAYER_ATTN || ch == EM_LAYER_MLP) continue;
        if (ch == 'E')
            return em_fail(EM_ERR_UNSUPPORTED, "hybrid pattern: layer %zu is a mixture-of-experts layer ('E'), not "
                           "supported", n);
        if (ch == '+')  /* the paper's tables write MLP as '+'; Megatron and NemotronH use '-' */
            return em_fail(EM_ERR_FORMAT, "hybrid pattern: layer %zu is '+': write MLP layers as '-'", n);
        if ((unsigned char)ch >= 0x20 && (unsigned char)ch < 0x7f)
            return em_fail(EM_ERR_FORMAT, "hybrid pattern: layer %zu is '%c', not one of M (Mamba-2), * (attention), "
                           "- (MLP)", n, ch);
        return em_fail(EM_ERR_FORMAT, "hybrid pattern: layer %zu is byte 0x%02x, not one of M * -", n,
                       (unsigned)(unsigned char)ch);
    }
    if (n == 0) return em_fail(EM_ERR_FORMAT, "hybrid pattern: the pattern is empty");
    if (cap < n + 1)
        return em_fail(EM_ERR_INVALID_ARG, "hybrid pattern: a buffer of %zu bytes cannot hold %zu layers", cap, n);
    memcpy(out, p, n + 1);
    return EM_OK;
}

em_status em_pattern_from_block_types(const char *const *types, uint32_t n, char *out, size_t cap) {
    if (!types || !out) return em_fail(EM_ERR_INVALID_ARG, "em_pattern_from_block_types: NULL argument");
    if (n == 0) return em_fail(EM_ERR_FORMAT, "layers_block_type: the list is empty");
    if (n > EM_PATTERN_MAX_LAYERS)
        return em_fail(EM_ERR_FORMAT, "layers_block_type: %u layers, more than %u", n, EM_PATTERN_MAX_LAYERS);
    if (cap < (size_t)n + 1)
        return em_fail(EM_ERR_INVALID_ARG, "layers_block_type: a buffer of %zu bytes cannot hold %u layers", cap, n);
    for (uint32_t i = 0; i < n; i++) {
        const char *s = types[i] ? types[i] : "";
        /* transformers 5.x writes "linear_attention" for Mamba and "full_attention" for attention; older
         * NemotronH configs "mamba" and "attention" */
        if (!strcmp(s, "mamba") || !strcmp(s, "linear_attention")) out[i] = EM_LAYER_MAMBA2;
        else if (!strcmp(s, "attention") || !strcmp(s, "full_attention")) out[i] = EM_LAYER_ATTN;
        else if (!strcmp(s, "mlp")) out[i] = EM_LAYER_MLP;
        else if (!strcmp(s, "moe"))
            return em_fail(EM_ERR_UNSUPPORTED, "layers_block_type[%u]: layer %u is \"moe\" (mixture of experts), not "
                           "supported", i, i);
        else
            return em_fail(EM_ERR_FORMAT, "layers_block_type[%u] = \"%.32s\" is not one of mamba / linear_attention, "
                           "attention / full_attention, mlp", i, s);
    }
    out[n] = 0;
    return EM_OK;
}

// ---- Megatron allocate_layers ---------------------------------------------------------------------------

em_status em_pattern_megatron(uint32_t n_layer, double attn_ratio, double mlp_ratio, const char *override_pattern,
                              char *out, size_t cap) {
    EM_TRY(em_pattern_allocate(n_layer, attn_ratio, mlp_ratio, out, cap));
    if (!override_pattern) return EM_OK;
    /* Megatron: _allocate_override checks the length; with a non-zero ratio the counts must match the auto
     * pattern (else ValueError); otherwise the override wins (it logs a warning when they differ). */
    size_t len = strlen(override_pattern);
    if (len != n_layer)
        return em_fail(EM_ERR_FORMAT, "hybrid override pattern has %zu layers, the model %u", len, n_layer);
    char tmp[EM_PATTERN_MAX_LAYERS + 1];
    EM_TRY(em_pattern_parse(override_pattern, tmp, sizeof tmp));
    if (attn_ratio > 0.0 || mlp_ratio > 0.0) {
        em_pattern_counts a = em_pattern_count(out), b = em_pattern_count(tmp);
        if (a.n_mamba != b.n_mamba || a.n_attn != b.n_attn || a.n_mlp != b.n_mlp)
            return em_fail(EM_ERR_FORMAT, "hybrid override pattern has %u/%u/%u Mamba/attention/MLP layers, the "
                           "ratios give %u/%u/%u (Megatron requires equal counts)", b.n_mamba, b.n_attn, b.n_mlp,
                           a.n_mamba, a.n_attn, a.n_mlp);
    }
    if (strcmp(out, tmp)) EM_LOG_I("hybrid pattern: override %s replaces the allocated %s", tmp, out);
    memcpy(out, tmp, (size_t)n_layer + 1);
    return EM_OK;
}
