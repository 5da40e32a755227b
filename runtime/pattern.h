/*
 * pattern.h — the hybrid layer pattern: one character per layer, M = Mamba-2, * = self-attention, - = MLP
 * (runtime/tensors.h em_layer_kind). Three ways to get one:
 *   - an explicit string ("M-M*-", Megatron's --hybrid-layer-pattern, NemotronH's hybrid_override_pattern);
 *   - NemotronH's config.json list `layers_block_type` ("mamba" / "linear_attention", "attention" /
 *     "full_attention", "mlp");
 *   - Megatron's ratios (--hybrid-attention-ratio, --hybrid-mlp-ratio) through the allocation algorithm of
 *     the paper's Appendix A (Algorithm 1), which is Megatron-LM's `_allocate_auto`
 *     (megatron/core/ssm/mamba_hybrid_layer_allocation.py), bit for bit: see pattern.c.
 * Internal (em-pack, the Megatron reader, tests); every function writes a NUL-terminated pattern into the
 * caller's buffer and allocates nothing.
 */
#ifndef EM_PATTERN_H
#define EM_PATTERN_H

#include <stddef.h>
#include <stdint.h>

#include "edgemamba.h"

/* Most layers a pattern may have (the blob's limit, EM_BLOB_MAX_LAYERS). */
#define EM_PATTERN_MAX_LAYERS 1023u

typedef struct em_pattern_counts { uint32_t n_mamba, n_attn, n_mlp; } em_pattern_counts;

/** Algorithm 1 of the paper's Appendix A (= Megatron `_allocate_auto`): attention layers first, spaced so
 *  the runs of Mamba layers between them are as equal as possible; then MLP layers spread over the
 *  remaining Mamba slots, biased towards the end. Counts are round-half-to-even of n_layer * ratio, as
 *  Python's round() does.
 *  @param out  receives n_layer chars + NUL; cap >= n_layer + 1.
 *  @return EM_OK; EM_ERR_INVALID_ARG for n_layer outside 1..EM_PATTERN_MAX_LAYERS, a ratio that is not in
 *  [0, 1], ratios summing to more than 1 (Megatron's asserts), or cap too small. */
em_status em_pattern_allocate(uint32_t n_layer, double attn_ratio, double mlp_ratio, char *out, size_t cap);

/** Megatron's allocate_layers(): the auto pattern from the ratios, or override (non-NULL) in its place.
 *  As in Megatron, an override must have n_layer layers and, when either ratio is non-zero, the same number
 *  of each kind as the auto pattern. @return as em_pattern_allocate and em_pattern_parse. */
em_status em_pattern_megatron(uint32_t n_layer, double attn_ratio, double mlp_ratio, const char *override_pattern,
                              char *out, size_t cap);

/** Validates an explicit pattern string (only 'M', '*', '-'; at least one layer) and copies it to out.
 *  @return EM_OK; EM_ERR_INVALID_ARG (NULL, cap too small); EM_ERR_FORMAT for an empty pattern, too many
 *  layers or an unknown character (position and character named); EM_ERR_UNSUPPORTED for NemotronH's
 *  'E' (mixture of experts). */
em_status em_pattern_parse(const char *pattern, char *out, size_t cap);

/** The pattern of a NemotronH `layers_block_type` list of n names.
 *  @return EM_OK; EM_ERR_INVALID_ARG; EM_ERR_FORMAT (empty list, unknown name: index named);
 *  EM_ERR_UNSUPPORTED for "moe". */
em_status em_pattern_from_block_types(const char *const *types, uint32_t n, char *out, size_t cap);

/** Counts each kind in a valid pattern. */
em_pattern_counts em_pattern_count(const char *pattern);

#endif /* EM_PATTERN_H */
