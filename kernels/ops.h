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
#include <string.h> /* memset in em_ssd_as_ssm */

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
    float *y;             /* [n_tok, n_out], row stride y_stride (written; added to with EM_LINEAR_ADD) */
    uint32_t n_tok, n_in, n_out;
    uint32_t x_stride, y_stride;
    uint32_t flags;       /* EM_LINEAR_*; 0 (the default) = none. The twin honours EM_LINEAR_ADD only. */
} em_linear_args;
/* flags: W is not written by the kernel queued just before this call on the same stream (model weights
 * are constant), so the CUDA launcher may start as that kernel's programmatic dependent (sm_90+): its blocks
 * begin streaming W while that kernel finishes, and read x / write y only after it has completed. */
#define EM_LINEAR_W_CONST 1u
/* y += W x instead of y = W x (the residual add of a hybrid's MLP / attention output in the decode step; the twin
 * honours it; on CUDA the GEMV paths do, em_cuda_gemm refuses it). y must not overlap x. */
#define EM_LINEAR_ADD 2u

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
    /* Optional, for the fused decode step (NULL = off): the gate and the group norm's sums of squares.
     * z set: y = (C.h + D x) * silu(z) (the gated norm's gate, folded in); sumsq set: sumsq[t * H + h] = the sum over
     * the head's P outputs of y^2 (after the gate), which em_gated_linear_args turns into the group RMS. */
    const float *z;       /* [n_tok, H, P], row stride z_stride */
    uint32_t z_stride;
    float *sumsq;         /* [n_tok, H] */
    uint32_t flags;       /* EM_SSM_*; 0 = none. The twin ignores them. */
} em_ssm_args;
/* flags: the kernel queued just before this one on the stream writes neither the state nor A, D, dt_bias (in the
 * decode step it is in_proj), so the CUDA launcher may start as its programmatic dependent (sm_90+): blocks load
 * their state while it finishes, and read x, dt, B, C, z only after it has completed. */
#define EM_SSM_STATE_OWN 1u

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
    const void *up;       /* [d_ff, d], up_dtype (F32, BF16, or I8 with up_scale) */
    em_dtype up_dtype;
    const void *down;     /* [d, d_ff], down_dtype (F32, BF16, or I8 with down_scale) */
    em_dtype down_dtype;
    const float *up_scale;   /* [d_ff] per-row scales when up_dtype is I8 (as em_linear_args.w_scale); else NULL */
    const float *down_scale; /* [d] per-row scales when down_dtype is I8; else NULL */
    const float *x;       /* [n_tok, d] */
    float *h;             /* [n_tok, d_ff] workspace (holds act(up(x)) afterwards) */
    float *y;             /* [n_tok, d] (written) */
    uint32_t n_tok, d, d_ff;
    uint32_t act;         /* em_mlp_act (runtime/blob.h): EM_ACT_GELU (exact erf), EM_ACT_RELU2 (relu(x)^2),
                             EM_ACT_SILU */
} em_mlp_args;

/* ---- the Mamba-2 decode step's fused ops (one token; kernels/linear.cu, twins kernels/ref/fused_ref.c) ------- *
 * A decode step of a Mamba-2 layer is three kernels: norm_linear (RMSNorm -> in_proj -> conv1d on the xBC rows),
 * the ssm with z and sumsq set (gate and the group norm's sums of squares), and gated_linear (group RMSNorm ->
 * out_proj -> residual add). They compute what rmsnorm, linear, conv1d, ssm, gated_norm, linear and the residual
 * add compute, in that order (tests/test_ref_fused.c proves it on the twins), with 3 launches instead of 6 and
 * no intermediate written twice. */
typedef struct em_norm_linear_args {
    const float *x;       /* [n_in] the residual stream (read only) */
    const float *norm_w;  /* [n_in] RMSNorm weight */
    float eps;
    const void *w;        /* [n_out, n_in] BF16 (CUDA: 16-byte aligned, n_in % 8 == 0) or I8 (n_in % 16 == 0) */
    em_dtype w_dtype;
    const float *w_scale; /* [n_out] per-row scales when w_dtype is I8 (as em_linear_args.w_scale); else NULL */
    float *y;             /* [n_out] = W (rmsnorm(x) * norm_w), then rows [conv_off, conv_off + conv_dim) replaced
                             by silu(conv_b + conv over (conv_state, that row's value)), the state rolled */
    uint32_t n_in, n_out;
    uint32_t conv_off, conv_dim, K; /* conv_dim 0: no conv (the output head behind the final norm) */
    float *conv_state;    /* [conv_dim, K-1] oldest first, as em_conv1d_args */
    const float *conv_w;  /* [conv_dim, K] */
    const float *conv_b;  /* [conv_dim] or NULL */
    uint32_t flags;       /* EM_LINEAR_W_CONST: as em_linear_args */
    uint32_t act;         /* em_mlp_act applied to every row on the way out (EM_ACT_NONE: none; the MLP's up
                             projection); only with conv_dim 0 */
} em_norm_linear_args;

typedef struct em_gated_linear_args {
    const float *y;       /* [n_in] the gated ssm output y * silu(z) */
    const float *sumsq;   /* [n_in / P] per head: sum of y^2 over its P channels (em_ssm_args.sumsq) */
    const float *norm_w;  /* [n_in] the gated norm's weight */
    uint32_t group, P;    /* RMS over each `group` channels (whole heads: group % P == 0; CUDA: group % 8 == 0,
                             n_in / group <= 64) */
    float eps;
    const void *w;        /* [n_out, n_in] BF16, or I8 (CUDA: n_in % 16 == 0, group % 16 == 0) */
    em_dtype w_dtype;
    const float *w_scale; /* [n_out] per-row scales when w_dtype is I8 (as em_linear_args.w_scale); else NULL */
    float *x;             /* [n_out] the residual stream: x += W (y * rstd(group) * norm_w) */
    uint32_t n_in, n_out;
    uint32_t flags;       /* EM_LINEAR_W_CONST */
} em_gated_linear_args;

/* ---- Mamba-2 SSD: the chunked form of em_ssm_args' scan, for prompts (issue 8; docs/prefill.md) -------- *
 * Same inputs and result as em_ref_ssm over the same n_tok tokens from the same state (equal up to rounding),
 * computed in chunks of `chunk` tokens (Mamba-2 paper, section 6: "SSD algorithm"): per chunk the cumulative
 * log-decay, the intra-chunk output (C.B^T masked by decay) x, the chunk's own state, then a sequential pass
 * of states across chunks and the inter-chunk output C . state. The final state is left in `state`, exactly
 * where and as decode (em_ssm_args) expects it. y must not overlap x, B, C, dt or the state. */
typedef struct em_ssd_args {
    const float *x;       /* [n_tok, H, P], row stride x_stride (per token) */
    const float *dt;      /* [n_tok, H] raw dt (before dt_bias and softplus), row stride dt_stride */
    const float *B;       /* [n_tok, G, N], row stride bc_stride */
    const float *C;       /* [n_tok, G, N], row stride bc_stride */
    const float *A;       /* [H] (negative: A = -exp(A_log)) */
    const float *D;       /* [H] */
    const float *dt_bias; /* [H] */
    float *state;         /* [H, P, N] fp32: the state before the first token in, after the last token out */
    float *y;             /* [n_tok, H, P], row stride y_stride */
    uint32_t n_tok, H, P, N, G; /* head h reads group h / (H / G) */
    uint32_t x_stride, dt_stride, bc_stride, y_stride;
    float dt_min, dt_max; /* clamp of dt after softplus; (0, +inf) = none */
    uint32_t chunk;       /* tokens per chunk: 64, 128 or 256 on CUDA; any >= 1 in the twin; 0 = EM_SSD_CHUNK */
} em_ssd_args;
#define EM_SSD_CHUNK 128u     /* the default chunk (Megatron's and the 8B checkpoints' chunk_size) */
#define EM_SSD_MAX_CHUNK 256u

/** The em_ssm_args view of the same scan (what em_ref_ssm / em_cuda_ssm take). */
static inline em_ssm_args em_ssd_as_ssm(const em_ssd_args *a) {
    em_ssm_args s;
    memset(&s, 0, sizeof s); /* the fused-decode extras (z, sumsq, flags) stay off */
    s.x = a->x; s.dt = a->dt; s.B = a->B; s.C = a->C; s.A = a->A; s.D = a->D; s.dt_bias = a->dt_bias;
    s.state = a->state; s.y = a->y; s.n_tok = a->n_tok; s.H = a->H; s.P = a->P; s.N = a->N; s.G = a->G;
    s.x_stride = a->x_stride; s.dt_stride = a->dt_stride; s.bc_stride = a->bc_stride; s.y_stride = a->y_stride;
    s.dt_min = a->dt_min; s.dt_max = a->dt_max;
    return s;
}
/** The float32 C twin of the chunked algorithm (kernels/ref/ssd_ref.c); allocates nothing. */
void em_ref_ssd(const em_ssd_args *a);

/* ---- attention over a BF16 KV cache: the CUDA executor's form (issue 9; docs/hybrid-cuda.md) ------------------ *
 * em_attn_args with the cache in bf16 (the device keeps K and V as bf16: half the bytes a decode step streams).
 * Same semantics, computed in f32, except that the new tokens' k (after RoPE) and v are rounded to bf16
 * (nearest even) when they are written to cache rows [pos, pos + n_tok), and every key and value is read back
 * from the bf16 cache. Twin: em_ref_attention_bf16 (kernels/ref/attention_bf16_ref.c); CUDA: em_cuda_attention
 * (kernels/attention.cu), which takes these args with DEVICE pointers and a workspace (cuda_ops.h). */
typedef struct em_attn_dev_args {
    float *q;             /* [n_tok, n_head, head_dim], row stride q_stride; RoPE (if on) is applied in place */
    const float *k;       /* [n_tok, n_kv_head, head_dim], row stride kv_stride: the new tokens' keys (f32) */
    const float *v;       /* [n_tok, n_kv_head, head_dim], row stride kv_stride: their values (f32) */
    uint16_t *k_cache;    /* [max_ctx, n_kv_head, head_dim] bf16 bits: rows [0, pos) read, [pos, pos+n_tok) written */
    uint16_t *v_cache;    /* [max_ctx, n_kv_head, head_dim] bf16 bits: the same for v */
    float *out;           /* [n_tok, n_head, head_dim], row stride out_stride (written) */
    uint32_t n_tok, n_head, n_kv_head, head_dim; /* n_head % n_kv_head == 0 (CUDA: head_dim 64 or 128) */
    uint32_t pos;         /* tokens already in the cache = absolute position of the first new token */
    uint32_t max_ctx;     /* cache rows; pos + n_tok <= max_ctx */
    uint32_t q_stride, kv_stride, out_stride; /* elements; 0 = dense */
    uint32_t rope_dims;   /* 0: none; else even, <= head_dim: rotate-half on dims [0, rope_dims), as em_attn_args */
    float rope_base;
    float scale;          /* 1/sqrt(head_dim) for the models we run */
    int n_threads;        /* twin only: threads over (token, head group); 0 = all cores */
    const uint32_t *pos_dev; /* CUDA only (the twin ignores it): when set, the kernels read the position from this
                             device word at run time and `pos` is ignored, so one captured CUDA graph serves every
                             decode step; the caller guarantees *pos_dev + n_tok <= max_ctx */
} em_attn_dev_args;
/** The float32 C twin over the bf16 cache (allocates nothing). */
void em_ref_attention_bf16(const em_attn_dev_args *a);

/* ---- float32 C twins (kernels/ref/) ----------------------------------------------------------------- */
void em_ref_linear(const em_linear_args *a);
void em_ref_rmsnorm(const em_rmsnorm_args *a);
void em_ref_conv1d(const em_conv1d_args *a);
void em_ref_ssm(const em_ssm_args *a);
void em_ref_gated_norm(const em_gated_norm_args *a);
void em_ref_embed(const em_embed_args *a);
void em_ref_attention(const em_attn_args *a);
void em_ref_mlp(const em_mlp_args *a);
/** h[i] = act(h[i]) for i < n, act an em_mlp_act (EM_ACT_NONE: unchanged): the MLP's activation, shared by the twins. */
void em_ref_act(float *h, size_t n, uint32_t act);
void em_ref_norm_linear(const em_norm_linear_args *a);
void em_ref_gated_linear(const em_gated_linear_args *a);
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
