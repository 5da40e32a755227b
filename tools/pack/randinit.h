/*
 * randinit.h — seeded random weights for em-pack --random-init: blobs of any shape (up to the 8B models)
 * for planner, loader and bandwidth work without a checkpoint.
 *
 * Why counter-based: element i of tensor t is a pure function of (seed, t, i), so the content does not
 * depend on the chunk size, and chunks could be generated on several threads; the generator is a
 * splitmix64 finaliser over a counter (two 32-bit draws per 64-bit hash), ~1 ns per element.
 */
#ifndef EM_PACK_RANDINIT_H
#define EM_PACK_RANDINIT_H

#include <stddef.h>
#include <stdint.h>

#include "edgemamba.h"

typedef enum em_ri_kind {
    EM_RI_CONST = 0,    /* every element a */
    EM_RI_UNIFORM = 1,  /* uniform in [a, b) */
    EM_RI_DT_BIAS = 2,  /* softplus^-1(dt), dt log-uniform in [a, b] */
} em_ri_kind;

typedef struct em_ri_rule { em_ri_kind kind; float a, b; } em_ri_rule;

/** The distribution for one tensor: field is its tensors.h name ("in_proj", "A", ...), shape its blob
 *  shape (fan_in = shape[1] for matrices), d_conv the conv kernel width. */
em_ri_rule em_ri_rule_for(const char *field, uint32_t n_dims, const uint64_t *shape, uint32_t d_conv);

/** The key of tensor number index under seed. */
uint64_t em_ri_key(uint64_t seed, uint32_t index);

/** Writes elements [first, first + n) of the tensor keyed key to out, as f32 or bf16 (dt). first must be
 *  even (chunks start on pairs: each 64-bit hash yields elements 2k and 2k+1). */
void em_ri_fill(const em_ri_rule *r, uint64_t key, uint64_t first, size_t n, em_dtype dt, void *out);

#endif /* EM_PACK_RANDINIT_H */
