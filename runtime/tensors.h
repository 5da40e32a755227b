/*
 * tensors.h — the one table of every tensor a model has: its name in the blob, its shape as a function
 * of the config, and whether it follows the packing dtype (matrices: bf16 / f32 / int8) or stays f32
 * (small vectors: norms, conv, A, D, dt_bias). em-pack writes from it, the loader binds pointers from it,
 * the planner sums bytes from it and error messages take names from it (STYLE.md lesson 5).
 *
 * Blob names: global tensors by their bare name ("embd"), per-layer tensors as "l<i>.<name>" ("l3.in_proj").
 * Layout: every matrix is row-major [out, in] (y = W x reads row r for output r); see docs/blob-format.md.
 */
#ifndef EM_TENSORS_H
#define EM_TENSORS_H

#include <stdint.h>

#include "blob.h"

typedef enum em_wclass {
    EM_WCLASS_MATRIX = 0, /* takes the pack dtype */
    EM_WCLASS_SMALL = 1   /* always f32 */
} em_wclass;

/* Derived Mamba-2 dims. */
static inline uint32_t em_m2_conv_dim(const em_blob_config *c) { return c->d_inner + 2u * c->ssm_n_group * c->d_state; }
static inline uint32_t em_m2_in_proj_dim(const em_blob_config *c) { return 2u * c->d_inner + 2u * c->ssm_n_group * c->d_state + c->ssm_n_head; }

/*
 * X(field, wclass, present, n_dims, d0, d1)
 *   field    struct field and blob name suffix
 *   present  expression of c (const em_blob_config *): 0 when the tensor is absent for this config
 *   d0, d1   shape, slowest-first (d1 unused when n_dims == 1)
 */
#define EM_GLOBAL_TENSORS(X)                                                                        \
    X(embd,   EM_WCLASS_MATRIX, 1, 2, c->vocab_size, c->d_model)   /* token embedding [vocab, d] */ \
    X(norm_f, EM_WCLASS_SMALL,  1, 1, c->d_model, 0)               /* final RMSNorm weight */       \
    X(head,   EM_WCLASS_MATRIX, !(c->flags & EM_CFG_TIED_EMBEDDINGS), 2, c->vocab_size, c->d_model)

/* Mamba-2 layer: out = x + out_proj(gnorm(ssm(conv(in_proj(norm(x)))) * silu(z))) */
#define EM_MAMBA2_TENSORS(X)                                                                        \
    X(norm,     EM_WCLASS_SMALL,  1, 1, c->d_model, 0)                                              \
    X(in_proj,  EM_WCLASS_MATRIX, 1, 2, em_m2_in_proj_dim(c), c->d_model) /* rows z|x|B|C|dt */     \
    X(conv_w,   EM_WCLASS_SMALL,  1, 2, em_m2_conv_dim(c), c->d_conv)    /* over x|B|C only */      \
    X(conv_b,   EM_WCLASS_SMALL,  (c->flags & EM_CFG_CONV_BIAS) != 0, 1, em_m2_conv_dim(c), 0)      \
    X(dt_bias,  EM_WCLASS_SMALL,  1, 1, c->ssm_n_head, 0)                                           \
    X(A,        EM_WCLASS_SMALL,  1, 1, c->ssm_n_head, 0)   /* A = -exp(A_log), computed at pack */ \
    X(D,        EM_WCLASS_SMALL,  1, 1, c->ssm_n_head, 0)                                           \
    X(gnorm,    EM_WCLASS_SMALL,  1, 1, c->d_inner, 0)      /* gated RMSNorm weight */              \
    X(out_proj, EM_WCLASS_MATRIX, 1, 2, c->d_model, c->d_inner)

/* Attention layer (hybrid): out = x + wo(attn(wq, wk, wv applied to norm(x))) */
#define EM_ATTN_TENSORS(X)                                                                          \
    X(norm, EM_WCLASS_SMALL,  1, 1, c->d_model, 0)                                                  \
    X(wq,   EM_WCLASS_MATRIX, 1, 2, c->attn_n_head * c->attn_head_dim, c->d_model)                  \
    X(wk,   EM_WCLASS_MATRIX, 1, 2, c->attn_n_kv_head * c->attn_head_dim, c->d_model)               \
    X(wv,   EM_WCLASS_MATRIX, 1, 2, c->attn_n_kv_head * c->attn_head_dim, c->d_model)               \
    X(wo,   EM_WCLASS_MATRIX, 1, 2, c->d_model, c->attn_n_head * c->attn_head_dim)

/* MLP layer (hybrid): out = x + down(act(up(norm(x)))) */
#define EM_MLP_TENSORS(X)                                                                           \
    X(norm, EM_WCLASS_SMALL,  1, 1, c->d_model, 0)                                                  \
    X(up,   EM_WCLASS_MATRIX, 1, 2, c->d_ff, c->d_model)                                            \
    X(down, EM_WCLASS_MATRIX, 1, 2, c->d_model, c->d_ff)

/* Layer kinds, as written in the config's layer_pattern. */
typedef enum em_layer_kind {
    EM_LAYER_MAMBA2 = 'M',
    EM_LAYER_ATTN = '*',
    EM_LAYER_MLP = '-',
    EM_LAYER_MAMBA1 = 'm'
} em_layer_kind;

#endif /* EM_TENSORS_H */
