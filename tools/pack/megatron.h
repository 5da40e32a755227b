/*
 * megatron.h — Megatron-LM Mamba-2 / Mamba-2-Hybrid checkpoints for em-pack: megatron_args.json ->
 * em_blob_config, and the Megatron state-dict name map (docs/em-pack.md "Megatron-LM checkpoints").
 *
 * Why: the released checkpoints (nvidia/mamba2-8b-3t-4k, mamba2-hybrid-8b-3t-4k) are Megatron state dicts,
 * not HF ones: other key names, a fused GQA qkv matrix, and a config made of launch arguments (the layer
 * pattern from --hybrid-attention-ratio / --hybrid-mlp-ratio through the allocation in runtime/pattern.h).
 * How: tools/pack/megatron_to_safetensors.py turns the torch pickle into model.safetensors plus
 * megatron_args.json (the args below); this file reads that JSON, and pack.c resolves names through
 * em_megatron_names, with the qkv split as a row gather (EM_XF_QKV_*).
 */
#ifndef EM_PACK_MEGATRON_H
#define EM_PACK_MEGATRON_H

#include <stddef.h>

#include "hfconfig.h"

#define EM_MEGATRON_ARGS_FILE "megatron_args.json"

/* How a blob tensor is made from its source (pack.c streams these). */
typedef enum em_pack_xf {
    EM_XF_COPY = 0,     /* value as is (dtype converted) */
    EM_XF_NEG_EXP = 1,  /* A = -exp(A_log), in double, rounded once to f32 */
    EM_XF_QKV_Q = 2,    /* rows of the query heads out of Megatron's grouped linear_qkv (see below) */
    EM_XF_QKV_K = 3,
    EM_XF_QKV_V = 4
} em_pack_xf;

/* One blob tensor's source name(s): kind 'g' global or an em_layer_kind, tensors.h field, source name with
 * one %u for the layer ('|' separates accepted spellings, first preferred; a leading '=' means no model
 * prefix), and the transform. */
typedef struct em_pack_name { char kind; const char *field; const char *src; em_pack_xf xf; } em_pack_name;

/* The Megatron map (models.md §5); n entries. */
extern const em_pack_name em_megatron_names[];
extern const size_t em_megatron_n_names;

/** The source row of blob row r of wq / wk / wv (xf EM_XF_QKV_*) in Megatron's linear_qkv weight
 *  [(nh + 2 ng) hd, d]: viewed as [ng, nh/ng + 2, hd, d], group g holds query heads g*(nh/ng) .. +nh/ng-1,
 *  then k_g, then v_g (Megatron SelfAttention.get_query_key_value_tensors). */
uint64_t em_megatron_qkv_row(em_pack_xf xf, uint64_t r, uint32_t n_head, uint32_t n_kv_head, uint32_t head_dim);

/** Parses megatron_args.json text (len bytes); label names it in messages. vocab_rows: rows of
 *  embedding.word_embeddings.weight (0: take padded_vocab_size from the JSON). out->family = EM_HF_MEGATRON.
 *  @return EM_OK; EM_ERR_FORMAT (bad JSON, missing or inconsistent field: named); EM_ERR_UNSUPPORTED
 *  (tensor/pipeline parallel size > 1, biases, LayerNorm, rotary/learned position embeddings, an 'E' layer). */
em_status em_megatron_config_parse(const char *text, size_t len, const char *label, uint64_t vocab_rows,
                                   em_hf_config *out);

/** Reads path and parses it (the model name is the directory's name). */
em_status em_megatron_config_load(const char *path, uint64_t vocab_rows, em_hf_config *out);

#endif /* EM_PACK_MEGATRON_H */
