/*
 * hfconfig.h — HF config.json -> em_blob_config, for Mamba2ForCausalLM (model_type "mamba2") and
 * NemotronHForCausalLM (model_type "nemotron_h"). Used by em-pack for real checkpoints and --random-init.
 *
 * Why a separate step: the config decides every shape em-pack checks and every name it looks up, and the
 * two families differ in ways that change the numbers (HF Mamba2 normalises the gated RMSNorm over all of
 * d_inner, NemotronH per group), so the mapping is written once, here, field by field.
 * How: cJSON over the file's text after bare Infinity/-Infinity/NaN tokens (Python's json.dumps writes them;
 * JSON has no such tokens) are rewritten to numbers cJSON reads. Missing optional fields take the HF
 * defaults of transformers 5.x; the structural dims (hidden size, layers, vocab, state, heads) are required.
 */
#ifndef EM_PACK_HFCONFIG_H
#define EM_PACK_HFCONFIG_H

#include <stddef.h>

#include "blob.h"

typedef enum em_hf_family { EM_HF_MAMBA2 = 1, EM_HF_NEMOTRON_H = 2, EM_HF_MEGATRON = 3 /* megatron.h */ } em_hf_family;

typedef struct em_hf_config {
    em_hf_family family;
    em_blob_config cfg;                    /* every numeric field; string fields unset (em_hf_blob_config) */
    char pattern[EM_BLOB_MAX_LAYERS + 1];  /* layer_pattern, NUL-terminated: M Mamba-2, * attention, - MLP */
    char name[128];                        /* model name (the checkpoint directory's name) */
} em_hf_config;

/** Parses config.json text (len bytes, need not be terminated); label names it in messages.
 *  @return EM_OK; EM_ERR_FORMAT for bad JSON, a missing required field or an inconsistent value (the field
 *  and the values are named); EM_ERR_UNSUPPORTED for a model_type or feature edgemamba does not run
 *  (use_bias, MoE layers, an unknown activation). */
em_status em_hf_config_parse(const char *text, size_t len, const char *label, em_hf_config *out);

/** Reads and parses a config.json file (name = the name of the directory holding it). */
em_status em_hf_config_load(const char *path, em_hf_config *out);

/** @return h->cfg with its strings (layer_pattern, name; chat_template empty) pointing into *h. */
em_blob_config em_hf_blob_config(const em_hf_config *h);

#endif /* EM_PACK_HFCONFIG_H */
