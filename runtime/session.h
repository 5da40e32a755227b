/*
 * session.h — the session's internal layout, shared by the files that implement the session API
 * (session.c: plan, arena, executor; and the generation, sampler and snapshot files that build on it).
 * Internal: not installed.
 */
#ifndef EM_SESSION_H
#define EM_SESSION_H

#include "model.h"

#define EM_MAX_CONTEXT_OPTION (1u << 24) /* em_session_options.max_context: 1..this */

struct em_session {
    em_model *model;
    em_dims dim;
    uint32_t T;             /* max tokens per prefill step */
    float *conv_state;      /* [n_m2, conv_dim, K-1] */
    float *ssm_state;       /* [n_m2, H, P, N] */
    float *x, *xn, *proj, *xbc, *y, *delta, *logits;
    uint64_t n_past;        /* tokens consumed since create/reset */
    int have_logits;        /* logits hold the last position's values */
    int owns_block;         /* 0 for em_session_create_static */
    size_t block_size;
    /* Hybrid layers (attention '*' and MLP '-'; docs/hybrid.md). KV cache rows [0, n_past) of each attention
     * layer are valid; with attention layers n_past never passes max_context (EM_ERR_CONTEXT_FULL). */
    float *k_cache, *v_cache; /* [n_attn, max_context, n_kv_head, head_dim] each, f32 (K after RoPE, if any) */
    uint32_t max_context;     /* positions planned in the KV cache (em_session_options.max_context) */
    float *q, *k, *v, *att;   /* workspace: [T, n_head*hd], [T, n_kv_head*hd] x 2, [T, n_head*hd] attention out */
    float *ff;                /* workspace: [T, d_ff] MLP hidden */
    void *cuda;             /* em_cuda_session (cuda_exec.c) on the CUDA backend: state and workspace live
                               there, and the host regions above are not allocated */
    /* Generation (sampler.c, generate.c, snapshot.c). The sampler rows are the arena's "sampler" region
     * (layout(), workspace; NULL on the CUDA backend); the tokenizer is loaded on the first text call. */
    float *sample_p;          /* [vocab] sampler work row */
    int32_t *sample_idx;      /* [vocab] candidate ids */
    int32_t *recent;          /* [EM_SAMPLER_MAX_RECENT] ring of the last tokens (repetition penalty) */
    uint32_t n_recent, recent_head; /* tokens in the ring; next write position */
    uint64_t rng[4];          /* xoshiro256** state of the sampler */
    uint8_t utf8_pend[4];     /* streaming decoder: the start of a character split across tokens */
    uint8_t n_utf8_pend;
    struct em_gen_text *text; /* tokenizer + stream buffer (generate.c); NULL until the first text call */
};

/* Generation hooks, called by session.c: the sampler region's size and carving (sampler.c); freeing and
 * resetting the generation state with the session (generate.c). */
size_t em_sampler_region_bytes(uint32_t vocab);
void em_sampler_bind(struct em_session *s, void *region);
void em_gen_session_free(struct em_session *s);
void em_gen_session_reset(struct em_session *s);

#endif /* EM_SESSION_H */
