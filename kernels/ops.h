/*
 * ops.h — the op families of edgemamba: one args struct per family, shared by the float32 C twin
 * (em_ref_<op>, kernels/ref/<op>_ref.c) and the CUDA launcher (em_cuda_<op>, kernels/<op>.cu), so both
 * are called the same way and tested against each other (STYLE.md lessons 6, 7).
 *
 * Conventions: shapes slowest-first in the comments; every stride counts elements (floats or weights),
 * never bytes; a stride of 0 means "dense" (the row length). Weights are row-major [out, in].
 */
#ifndef EM_OPS_H
#define EM_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "edgemamba.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum em_silu { EM_SILU_OFF = 0, EM_SILU_ON = 1 } em_silu;

/* ---- linear: y = x W^T --------------------------------------------------------------------------- */
typedef struct em_linear_args {
    const void *w;        /* [n_out, n_in], w_dtype (F32, BF16, or I8 with w_scale) */
    em_dtype w_dtype;
    const float *w_scale; /* [n_out] per-output-channel scales when w_dtype is I8: y = (x . w_row) * w_scale[row]
                             (issue 10, quant/); NULL otherwise */
    const float *x;       /* [n_tok, n_in], row stride x_stride */
    float *y;             /* [n_tok, n_out], row stride y_stride (written, never accumulated) */
    uint32_t n_tok, n_in, n_out;
    uint32_t x_stride, y_stride;
    uint32_t flags;       /* EM_LINEAR_*; 0 (the default) = none. The twin ignores them. */
} em_linear_args;
/* flags: W is not written by the kernel queued just before this call on the same stream (model weights
 * are constant), so the CUDA launcher may start as that kernel's programmatic dependent (sm_90+): its blocks
 * begin streaming W while that kernel finishes, and read x / write y only after it has completed. */
#define EM_LINEAR_W_CONST 1u

/* ---- RMSNorm with the residual add fused ------------------------------------------------------------ */
typedef struct em_rmsnorm_args {
    float *x;             /* [n_tok, d] residual stream; when delta != NULL, x += delta first (in place) */
    const float *delta;   /* [n_tok, d] or NULL */
    const float *w;       /* [d] */
    float *y;             /* [n_tok, d] = x / sqrt(mean(x^2) + eps) * w */
    uint32_t n_tok, d;
    float eps;
} em_rmsnorm_args;

/* ---- causal depthwise conv1d with rolling state (Mamba, kernel K) ---------------------------------- */
typedef struct em_conv1d_args {
    const float *x;       /* [n_tok, C], row stride x_stride */
    float *state;         /* [C, K-1] the previous K-1 inputs per channel, oldest first; updated */
    const float *w;       /* [C, K] (w[c][K-1] multiplies the newest input) */
    const float *b;       /* [C] or NULL */
    float *y;             /* [n_tok, C], row stride y_stride: silu?(b + sum_k w[c][k] * in[t-K+1+k][c]) */
    uint32_t n_tok, C, K;
    uint32_t x_stride, y_stride;
    em_silu silu;
} em_conv1d_args;

/* ---- Mamba-2 selective state space (one scan over n_tok tokens, sequential) ------------------------ */
typedef struct em_ssm_args {
    const float *x;       /* [n_tok, H, P], row stride x_stride (per token) */
    const float *dt;      /* [n_tok, H] raw dt (before dt_bias and softplus), row stride dt_stride */
    const float *B;       /* [n_tok, G, N], row stride bc_stride */
    const float *C;       /* [n_tok, G, N], row stride bc_stride */
    const float *A;       /* [H] (negative: A = -exp(A_log)) */
    const float *D;       /* [H] */
    const float *dt_bias; /* [H] */
    float *state;         /* [H, P, N] fp32, updated in place */
    float *y;             /* [n_tok, H, P], row stride y_stride */
    uint32_t n_tok, H, P, N, G; /* head h reads group h / (H / G) */
    uint32_t x_stride, dt_stride, bc_stride, y_stride;
    float dt_min, dt_max; /* clamp of dt after softplus; (0, +inf) = none */
} em_ssm_args;

/* ---- gated RMSNorm: out = w * groupRMSNorm(y * silu(z)) ----------------------------------------- */
typedef struct em_gated_norm_args {
    const float *y;       /* [n_tok, d], row stride y_stride */
    const float *z;       /* [n_tok, d], row stride z_stride */
    const float *w;       /* [d] */
    float *out;           /* [n_tok, d], row stride out_stride; may alias y */
    uint32_t n_tok, d, group; /* RMS over each contiguous block of `group` channels (d = one group) */
    uint32_t y_stride, z_stride, out_stride;
    float eps;
} em_gated_norm_args;

/* ---- embedding: out[t] = table[tok[t]] as f32 ------------------------------------------------------- */
typedef struct em_embed_args {
    const void *table;    /* [vocab, d], dtype */
    em_dtype dtype;
    const int32_t *tok;   /* [n_tok], each in [0, vocab) (checked by the caller) */
    float *out;           /* [n_tok, d] */
    uint32_t n_tok, d;
} em_embed_args;

/* ---- attention: causal, GQA, over a KV cache, optional RoPE (hybrid; Transformer baseline) ----------- *
 * For each new token t (absolute position pos + t) and query head h, with KV head g = h / (n_head/n_kv_head)
 * (HF repeat_kv order): out[t,h] = sum_j softmax_j(scale * q[t,h] . K[j,g]) V[j,g] over j in [0, pos + t].
 * The new tokens' k and v are first written to cache rows [pos, pos + n_tok), so one call serves a prefill
 * chunk (cache + chunk, causal) and a decode step (n_tok = 1) alike. */
typedef struct em_attn_args {
    float *q;             /* [n_tok, n_head, head_dim], row stride q_stride; RoPE (if on) is applied in place */
    const float *k;       /* [n_tok, n_kv_head, head_dim], row stride kv_stride: the new tokens' keys */
    const float *v;       /* [n_tok, n_kv_head, head_dim], row stride kv_stride: their values */
    float *k_cache;       /* [max_ctx, n_kv_head, head_dim]: rows [0, pos) are read, [pos, pos+n_tok) written (k
                             after RoPE) */
    float *v_cache;       /* [max_ctx, n_kv_head, head_dim]: the same for v */
    float *out;           /* [n_tok, n_head, head_dim], row stride out_stride */
    uint32_t n_tok, n_head, n_kv_head, head_dim; /* n_head % n_kv_head == 0; head_dim <= EM_ATTN_MAX_HEAD_DIM */
    uint32_t pos;         /* tokens already in the cache = absolute position of the first new token */
    uint32_t max_ctx;     /* cache rows; pos + n_tok <= max_ctx */
    uint32_t q_stride, kv_stride, out_stride;
    uint32_t rope_dims;   /* 0: no position embedding; else even, <= head_dim: rotate-half on dims [0, rope_dims) */
    float rope_base;      /* theta_i = pos * rope_base^(-2i / rope_dims) */
    float scale;          /* 1/sqrt(head_dim) for the models we run */
    int n_threads;        /* CPU twin: threads over (token, head) pairs; 0 = all cores */
} em_attn_args;
#define EM_ATTN_MAX_HEAD_DIM 1024u

/* ---- MLP: y = down(act(up(x))), no gate, no bias (hybrid MLP layers) --------------------------------- */
typedef struct em_mlp_args {
    const void *up;       /* [d_ff, d], up_dtype (F32 or BF16) */
    em_dtype up_dtype;
    const void *down;     /* [d, d_ff], down_dtype */
    em_dtype down_dtype;
    const float *x;       /* [n_tok, d] */
    float *h;             /* [n_tok, d_ff] workspace (holds act(up(x)) afterwards) */
    float *y;             /* [n_tok, d] (written) */
    uint32_t n_tok, d, d_ff;
    uint32_t act;         /* em_mlp_act (runtime/blob.h): EM_ACT_GELU (exact erf), EM_ACT_RELU2 (relu(x)^2),
                             EM_ACT_SILU */
} em_mlp_args;

/* ---- float32 C twins (kernels/ref/) ----------------------------------------------------------------- */
void em_ref_linear(const em_linear_args *a);
void em_ref_rmsnorm(const em_rmsnorm_args *a);
void em_ref_conv1d(const em_conv1d_args *a);
void em_ref_ssm(const em_ssm_args *a);
void em_ref_gated_norm(const em_gated_norm_args *a);
void em_ref_embed(const em_embed_args *a);
void em_ref_attention(const em_attn_args *a);
void em_ref_mlp(const em_mlp_args *a);
/** @return the index of the largest of x[0..n) (the lowest on a tie; NaN never wins). */
uint32_t em_ref_argmax(const float *x, uint32_t n);
/** Threads for em_ref_linear (0 = all cores). */
void em_ref_set_threads(int n);

/* scalar helpers, shared by the twins and the executor */
static inline float em_silu_f(float v);
static inline float em_softplus_f(float v);

#ifdef __cplusplus
}
#endif

#include <math.h>
/* silu(v) = v * sigmoid(v) */
static inline float em_silu_f(float v) { return v / (1.0f + expf(-v)); }
/* softplus with torch's threshold 20: above it softplus(v) == v in float */
static inline float em_softplus_f(float v) { return v > 20.0f ? v : log1pf(expf(v)); }

#endif /* EM_OPS_H */
