/*
 * blob.h — the edgemamba blob (.emb), format v1: in-memory form, reader and writer.
 *
 * Why: one prepacked file is the whole deployment (weights laid out as the kernels read them, config,
 * tokenizer). The runtime maps it and validates it as untrusted input; em-pack writes it.
 * The byte layout is specified in docs/blob-format.md; this header is its C form. Internal: not
 * installed, shared by runtime/, tools/ and tests/.
 *
 * On disk everything is little-endian and decoded field by field (never by casting a struct), so the
 * reader is independent of host alignment and padding.
 */
#ifndef EM_BLOB_H
#define EM_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "edgemamba.h"

#define EM_BLOB_MAGIC "EMBLOB\x00\x01"   /* 8 bytes */
#define EM_BLOB_VERSION 1u
#define EM_BLOB_HEADER_SIZE 256u         /* bytes; the last 8 hold the header checksum */
#define EM_BLOB_CONFIG_FIXED 256u        /* bytes of the config section's fixed block (64 slots of 4 B) */
#define EM_BLOB_TENSOR_RECORD 192u       /* bytes per tensor-table record */
#define EM_BLOB_NAME_MAX 96u             /* bytes of a tensor name field, NUL included */
#define EM_BLOB_ALIGN 4096u              /* tensor data alignment (file offsets) */
#define EM_BLOB_MAX_DIMS 4u
#define EM_BLOB_MAX_TENSORS 65536u       /* a table with more records is corrupt */
#define EM_BLOB_MAX_LAYERS 1023u
#define EM_BLOB_MAX_STRING (1u << 20)    /* longest config string (chat template) */

/* header flags */
#define EM_BLOB_FLAG_SHARDED 0x1u        /* tensors carry shard_rank/shard_count != 0/1 */

/* config flags */
#define EM_CFG_TIED_EMBEDDINGS 0x1u      /* no "head" tensor: the output head is "embd" */
#define EM_CFG_RESIDUAL_FP32 0x2u        /* informative: the reference kept the residual in fp32 */
#define EM_CFG_CONV_BIAS 0x4u            /* Mamba conv1d has a bias */
#define EM_CFG_PROJ_BIAS 0x8u            /* in_proj/out_proj carry biases (Mamba-1 use_bias) */

typedef enum em_norm_kind { EM_NORM_RMS = 0, EM_NORM_LAYER_1P = 1 } em_norm_kind;
typedef enum em_mlp_act { EM_ACT_NONE = 0, EM_ACT_GELU = 1, EM_ACT_RELU2 = 2, EM_ACT_SILU = 3 } em_mlp_act;
typedef enum em_tokenizer_kind { EM_TOK_NONE = 0, EM_TOK_SPM = 1, EM_TOK_BPE = 2 } em_tokenizer_kind;
typedef enum em_layout { EM_LAYOUT_ROW_MAJOR = 0 } em_layout;
typedef enum em_quant { EM_QUANT_NONE = 0, EM_QUANT_INT8_ROW = 1 } em_quant;

/*
 * The config's fixed block, one X per 4-byte slot, in slot order (slot i at byte 4*i of the config
 * section). T is u32, i32 or f32. Slots past the list are reserved and must be zero.
 * The strings follow as (offset, length) pairs in slots 48..53, offsets relative to the config section.
 * Appending a field at the end of the list is a compatible change; reordering never is.
 */
#define EM_CONFIG_FIELDS(X)                                                                        \
    X(u32, arch)              /* em_arch */                                                        \
    X(u32, n_layer)                                                                                \
    X(u32, d_model)                                                                                \
    X(u32, vocab_size)        /* rows of embd / head (may include padding) */                      \
    X(u32, d_state)           /* Mamba: N */                                                       \
    X(u32, d_conv)            /* Mamba: conv kernel width (4) */                                   \
    X(u32, ssm_n_head)        /* Mamba-2: heads H */                                               \
    X(u32, ssm_head_dim)      /* Mamba-2: P */                                                     \
    X(u32, ssm_n_group)       /* Mamba-2: B/C groups G */                                          \
    X(u32, d_inner)           /* Mamba: H*P (Mamba-2) or expand*d_model (Mamba-1) */               \
    X(u32, ssm_chunk)         /* the checkpoint's SSD chunk size (informative) */                  \
    X(u32, dt_rank)           /* Mamba-1 */                                                        \
    X(u32, attn_n_head)                                                                            \
    X(u32, attn_n_kv_head)                                                                         \
    X(u32, attn_head_dim)                                                                          \
    X(f32, rope_fraction)     /* 0: no position embedding; 0.5: rotate-half on dims [0, hd/2) */   \
    X(f32, rope_base)                                                                              \
    X(u32, d_ff)              /* MLP hidden size */                                                \
    X(u32, mlp_act)           /* em_mlp_act */                                                     \
    X(f32, norm_eps)                                                                               \
    X(u32, norm_kind)         /* em_norm_kind */                                                   \
    X(u32, gated_norm_group)  /* channels per group of the Mamba-2 gated RMSNorm (d_inner = one) */\
    X(u32, flags)             /* EM_CFG_* */                                                       \
    X(f32, dt_limit_min)      /* dt clamp after softplus: [min, max]; (0, +inf) = none */          \
    X(f32, dt_limit_max)                                                                           \
    X(i32, bos_id)            /* -1: none */                                                       \
    X(i32, eos_id)                                                                                 \
    X(i32, pad_id)                                                                                 \
    X(i32, unk_id)                                                                                 \
    X(u32, max_context)       /* trained context; 0 unknown */                                     \
    X(u32, tokenizer_kind)    /* em_tokenizer_kind of the tokenizer section */

#define EM_CONFIG_STRINGS(X)                                                                       \
    X(layer_pattern)          /* n_layer chars: M Mamba-2, * attention, - MLP, m Mamba-1 */        \
    X(chat_template)          /* may be empty: a plain default is used */                          \
    X(name)                   /* model name, for --info and logs */

#define EM_CONFIG_STRING_SLOT0 48u  /* first (offset, length) slot pair */

typedef struct em_blob_string { const char *ptr; uint32_t len; } em_blob_string; /* not NUL-terminated */

typedef struct em_blob_config {
#define EM_X_FIELD_u32(name) uint32_t name;
#define EM_X_FIELD_i32(name) int32_t name;
#define EM_X_FIELD_f32(name) float name;
#define EM_X_FIELD(T, name) EM_X_FIELD_##T(name)
    EM_CONFIG_FIELDS(EM_X_FIELD)
#define EM_X_STRING(name) em_blob_string name;
    EM_CONFIG_STRINGS(EM_X_STRING)
#undef EM_X_STRING
} em_blob_config;

typedef struct em_blob_tensor {
    char name[EM_BLOB_NAME_MAX];   /* NUL-terminated inside the field */
    uint32_t dtype;                /* em_dtype */
    uint32_t n_dims;               /* 1..EM_BLOB_MAX_DIMS */
    uint64_t shape[EM_BLOB_MAX_DIMS]; /* slowest-first; unused dims are 0 */
    uint32_t layout;               /* em_layout */
    uint32_t quant;                /* em_quant */
    int32_t scale_index;           /* table index of the scale tensor, or -1 */
    uint16_t shard_rank, shard_count; /* 0, 1 for an unsharded tensor */
    uint64_t offset;               /* from the start of the data section; multiple of EM_BLOB_ALIGN */
    uint64_t size;                 /* bytes = product(shape) * dtype size */
    uint64_t checksum;             /* XXH3-64 of the tensor's bytes */
} em_blob_tensor;

/* A validated, read-only view of a blob in memory (mapped file or caller buffer). */
typedef struct em_blob {
    const uint8_t *base;           /* the whole file */
    uint64_t file_size;
    uint32_t version;
    uint32_t flags;
    em_blob_config config;
    const uint8_t *tokenizer;      /* tokenizer section bytes (kind in config.tokenizer_kind) */
    uint64_t tokenizer_size;
    uint32_t n_tensors;
    em_blob_tensor *tensors;       /* [n_tensors], decoded (owned by the em_blob) */
    const uint8_t *data;           /* data section start */
    uint64_t data_size;
    uint8_t content_id[16];        /* XXH3-128 of config section + table section */
    void *mapping;                 /* munmap target when the blob owns a mapping, else NULL */
} em_blob;

typedef struct em_blob_open_options {
    int verify_data;               /* hash every tensor's bytes */
} em_blob_open_options;

/** Validates bytes [base, base+size) as a blob and fills *blob (tensors table allocated; free with
 *  em_blob_close). The bytes are not copied and must outlive the blob.
 *  @return EM_OK or the specific EM_ERR_BLOB_* with a message in em_last_error(); never crashes on any
 *  input. */
em_status em_blob_open_memory(const void *base, uint64_t size, const em_blob_open_options *opts, em_blob *blob);

/** Maps a file read-only and validates it as em_blob_open_memory does. */
em_status em_blob_open_file(const char *path, const em_blob_open_options *opts, em_blob *blob);

/** Releases what em_blob_open_* allocated or mapped. Safe on a zeroed blob. */
void em_blob_close(em_blob *blob);

/** @return the index of the tensor with this name, or -1. */
int em_blob_find(const em_blob *blob, const char *name);

/** @return bytes of one element of dtype (0 for an unknown dtype). */
size_t em_dtype_size(uint32_t dtype);
/** @return "f32", "bf16", ... or "?". */
const char *em_dtype_name(uint32_t dtype);

/* ---- writer (em-pack, tests) -------------------------------------------------------------------- */

/*
 * Streaming writer: the caller declares every tensor first (name, dtype, shape), then the writer lays
 * out the file (header, config, tokenizer, table, 4096-aligned data) and the caller supplies each
 * tensor's bytes in declaration order. Checksums are computed as the bytes go by; the table and header
 * are written last (the file is seekable).
 */
typedef struct em_blob_writer em_blob_writer;

em_status em_blob_writer_open(const char *path, em_blob_writer **out);
/** Copies the config (strings included). */
em_status em_blob_writer_set_config(em_blob_writer *w, const em_blob_config *config);
/** Copies the tokenizer section bytes (kind also goes in config.tokenizer_kind). */
em_status em_blob_writer_set_tokenizer(em_blob_writer *w, const void *bytes, uint64_t size);
/** Declares the next tensor; returns its table index in *index (may be NULL). The fields offset, size and
 *  checksum of t are ignored (computed by the writer). */
em_status em_blob_writer_add_tensor(em_blob_writer *w, const em_blob_tensor *t, uint32_t *index);
/** Writes tensor data, in declaration order; a tensor's bytes may come in several calls. */
em_status em_blob_writer_write(em_blob_writer *w, const void *bytes, uint64_t size);
/** Finishes the file (table, header, checksums) and frees the writer. On error the partial file is removed. */
em_status em_blob_writer_finish(em_blob_writer *w);
/** Abandons the file (removed) and frees the writer. */
void em_blob_writer_abort(em_blob_writer *w);

#endif /* EM_BLOB_H */
