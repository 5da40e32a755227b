/*
 * tinyblob.h — writes a small random Mamba-2 or hybrid blob from C, straight through the blob writer and the
 * tensors.h table, so that runtime tests need neither Python nor em-pack. Weights are seeded and of
 * realistic scale (the SSM state and the conv state matter).
 */
#ifndef EM_TINYBLOB_H
#define EM_TINYBLOB_H

#include "blob.h"

typedef struct em_tiny_spec {
    uint32_t n_layer, d_model, vocab, d_state, n_head, head_dim, n_group, d_conv;
    uint32_t gated_norm_group; /* 0 = d_inner */
    em_dtype matrix_dtype;     /* F32 or BF16 */
    int tied;
    uint64_t seed;
    /* hybrids: NULL = n_layer Mamba-2 layers; else the layer pattern (M, *, -), which sets n_layer, and the
     * Mamba dims above are used only when it has an 'M' */
    const char *pattern;
    uint32_t attn_n_head, attn_n_kv_head, attn_head_dim; /* attention layers */
    uint32_t d_ff, mlp_act;                              /* MLP layers (em_mlp_act) */
    float rope_fraction, rope_base;
} em_tiny_spec;

/* The fixture-like default: d_model 64, 3 layers, vocab 512, N 16, H 8, P 16, G 2, K 4, f32. */
em_tiny_spec em_tiny_default(void);
em_status em_tiny_write(const char *path, const em_tiny_spec *spec);

#endif
