/*
 * model.h — the loaded model (weights bound from the blob through the tensors.h table) and the session
 * (state + workspace carved from one arena). Internal.
 */
#ifndef EM_MODEL_H
#define EM_MODEL_H

#include <stdatomic.h>

#include "blob.h"
#include "tensors.h"

/* A weight as the kernels see it: a pointer (into the mapped blob on the CPU) and its dtype; for an I8 matrix
 * (EM_QUANT_INT8_ROW, issue 10) also its per-output-channel scales (the blob's F32 [rows] scale tensor), else
 * scale is NULL. Pass p, dt and scale to em_linear_args.w / w_dtype / w_scale. */
typedef struct em_wref { const void *p; em_dtype dt; const float *scale; } em_wref;

#define EM_X_WREF(field, wclass, present, nd, d0, d1) em_wref field;
typedef struct em_mamba2_w { EM_MAMBA2_TENSORS(EM_X_WREF) } em_mamba2_w;
typedef struct em_attn_w { EM_ATTN_TENSORS(EM_X_WREF) } em_attn_w;
typedef struct em_mlp_w { EM_MLP_TENSORS(EM_X_WREF) } em_mlp_w;

typedef struct em_layer {
    em_layer_kind kind;
    uint32_t slot;          /* index among the layers of its kind (state / KV slot) */
    union { em_mamba2_w m2; em_attn_w attn; em_mlp_w mlp; } w;
} em_layer;

struct em_model {
    em_blob blob;
    em_blob_config cfg;     /* a copy; strings point into the blob */
    em_backend backend;
    int n_threads;
    struct { EM_GLOBAL_TENSORS(EM_X_WREF) } g; /* embd, norm_f, head (head = embd when tied) */
    em_layer *layers;       /* [n_layer] */
    uint32_t n_mamba2, n_attn, n_mlp;
    uint64_t n_params;
    atomic_int n_sessions;  /* sessions alive: close refuses to pull weights from under them */
    void *cuda;             /* em_cuda_model (cuda_exec.c) when backend == EM_BACKEND_CUDA, else NULL */
};

/* Derived dims used by the executor and the planner. */
typedef struct em_dims {
    uint32_t d, vocab, H, P, N, G, K, d_inner, conv_dim, d_in_proj;
} em_dims;

static inline em_dims em_model_dims(const em_model *m) {
    const em_blob_config *c = &m->cfg;
    em_dims d = { c->d_model, c->vocab_size, c->ssm_n_head, c->ssm_head_dim, c->d_state, c->ssm_n_group, c->d_conv,
                  c->d_inner, 0, 0 };
    if (m->n_mamba2) { d.conv_dim = em_m2_conv_dim(c); d.d_in_proj = em_m2_in_proj_dim(c); }
    return d;
}

#endif /* EM_MODEL_H */
