/*
 * pack.h — em-pack's engine: an HF checkpoint (safetensors + config.json [+ tokenizer]) or a config alone
 * (random weights) -> an edgemamba blob (.emb), streamed through the blob writer (runtime/blob.h).
 *
 * Why a library: the em-pack executable is a thin CLI over these calls, and the tests drive them directly.
 * How: the config becomes an em_blob_config (hfconfig.h); the tensor list comes from runtime/tensors.h
 * (globals, then each layer's table by its kind in layer_pattern); every tensor is looked up, shape-checked
 * and declared before the first data byte is written, then converted chunk by chunk (a few MB of buffers,
 * never a whole converted model in memory). Conversions are documented in docs/em-pack.md.
 */
#ifndef EM_PACK_PACK_H
#define EM_PACK_PACK_H

#include <stdint.h>

#include "edgemamba.h"

/* Called as bytes are written: done of total tensor-data bytes. */
typedef void (*em_pack_progress_fn)(uint64_t done, uint64_t total, void *user);

/* The checkpoint's naming and config: auto (default) is Megatron when megatron_args.json lies beside the
 * safetensors, else HF (config.json). */
typedef enum em_pack_format { EM_PACK_FORMAT_AUTO = 0, EM_PACK_FORMAT_HF = 1, EM_PACK_FORMAT_MEGATRON = 2 } em_pack_format;

typedef struct em_pack_options {
    em_dtype dtype;               /* matrices: EM_DTYPE_BF16 (default), EM_DTYPE_F32, or EM_DTYPE_I8 (int8 per
                                     output channel with f32 scales, docs/int8.md; the embedding stays bf16);
                                     small tensors are f32 */
    const char *tokenizer;        /* a tokenizer file (.model: SentencePiece, .json: BPE); NULL (default): the
                                     tokenizer.model or tokenizer.json beside config.json, if any */
    int no_tokenizer;             /* 1: store none even if one is found (default 0) */
    uint64_t seed;                /* em_pack_random: PRNG seed (default 0) */
    em_pack_format format;        /* em_pack_checkpoint: EM_PACK_FORMAT_AUTO (default) */
    em_pack_progress_fn progress; /* NULL (default): none */
    void *progress_user;
} em_pack_options;

typedef struct em_pack_stats {
    uint32_t n_tensors;           /* tensors in the blob */
    uint64_t data_bytes;          /* tensor bytes written */
    uint64_t file_bytes;          /* size of the finished file */
    uint32_t n_unused;            /* checkpoint tensors that were not packed (listed in a warning) */
    double seconds;               /* wall time of the whole call */
} em_pack_stats;

/** @return the defaults described field by field above. */
em_pack_options em_pack_default_options(void);

/** Packs a checkpoint: src is a directory holding config.json and model.safetensors (or a sharded index),
 *  or a .safetensors / .index.json file with config.json beside it. A Megatron-LM checkpoint (opts->format,
 *  or megatron_args.json beside the safetensors: tools/pack/megatron_to_safetensors.py writes both) is read
 *  with megatron_args.json in place of config.json and Megatron's names (megatron.h). stats may be NULL.
 *  @return EM_OK; EM_ERR_NOT_FOUND (a file, or a tensor the config needs: its HF name is in the message);
 *  EM_ERR_FORMAT (malformed file, a tensor with the wrong shape or a non-float dtype: file and tensor named);
 *  EM_ERR_UNSUPPORTED (a model feature edgemamba does not run, a tensor-parallel Megatron checkpoint); EM_ERR_IO. On failure no output file is left. */
em_status em_pack_checkpoint(const char *src, const char *out_path, const em_pack_options *opts,
                             em_pack_stats *stats);

/** Writes a blob of random weights with realistic scales for an HF config.json (mamba2 or nemotron_h),
 *  deterministic for a given opts->seed (and independent of chunking). Statuses as em_pack_checkpoint. */
em_status em_pack_random(const char *config_path, const char *out_path, const em_pack_options *opts,
                         em_pack_stats *stats);

/** --requantize: reads a bf16 or f32 blob (every checksum verified) and writes the same model with every 2-D
 *  matrix but the embedding as int8 per output channel (its scales as "<name>.scale", docs/int8.md); config,
 *  tokenizer and small tensors are copied. opts->dtype is ignored. Statuses as em_pack_checkpoint, and
 *  EM_ERR_INVALID_ARG for a blob that is already int8; errors name the tensor. */
em_status em_pack_requantize(const char *blob_path, const char *out_path, const em_pack_options *opts,
                             em_pack_stats *stats);

#endif /* EM_PACK_PACK_H */
