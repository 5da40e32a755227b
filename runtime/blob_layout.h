/*
 * blob_layout.h — the byte offsets of blob format v1 (docs/blob-format.md): header fields, tensor-record
 * fields and config slots. One definition for the reader (blob.c) and the writer (blob_write.c), so the two
 * cannot drift apart. Internal.
 */
#ifndef EM_BLOB_LAYOUT_H
#define EM_BLOB_LAYOUT_H

#include "blob.h"

/* Header: 256 bytes, little-endian. */
enum {
    EM_H_MAGIC = 0,          /* 8  "EMBLOB\0\1" */
    EM_H_VERSION = 8,        /* u32 */
    EM_H_HEADER_SIZE = 12,   /* u32 = 256 */
    EM_H_FLAGS = 16,         /* u32 EM_BLOB_FLAG_* */
    EM_H_RESERVED0 = 20,     /* u32 zero */
    EM_H_FILE_SIZE = 24,     /* u64 */
    EM_H_CONFIG_OFF = 32,    /* u64, u64 size at +8 */
    EM_H_TOKENIZER_OFF = 48, /* u64, u64 */
    EM_H_TABLE_OFF = 64,     /* u64, u64 */
    EM_H_DATA_OFF = 80,      /* u64, u64 */
    EM_H_TENSOR_COUNT = 96,  /* u32 */
    EM_H_RESERVED1 = 100,    /* u32 zero */
    EM_H_CONTENT_ID = 104,   /* 16 bytes, XXH128 canonical (big-endian) */
    EM_H_CONFIG_SUM = 120,   /* u64 XXH3-64 */
    EM_H_TOKENIZER_SUM = 128,
    EM_H_TABLE_SUM = 136,
    EM_H_RESERVED2 = 144,    /* 104 bytes zero, up to 248 */
    EM_H_HEADER_SUM = 248    /* u64 XXH3-64 of bytes [0, 248) */
};

/* Tensor record: 192 bytes. */
enum {
    EM_T_NAME = 0,           /* char[96], NUL-terminated and NUL-padded */
    EM_T_DTYPE = 96,         /* u32 em_dtype */
    EM_T_NDIMS = 100,        /* u32 */
    EM_T_SHAPE = 104,        /* u64[4], slowest-first, unused = 0 */
    EM_T_LAYOUT = 136,       /* u32 em_layout */
    EM_T_QUANT = 140,        /* u32 em_quant */
    EM_T_SCALE_INDEX = 144,  /* i32 */
    EM_T_SHARD_RANK = 148,   /* u16 */
    EM_T_SHARD_COUNT = 150,  /* u16 */
    EM_T_OFFSET = 152,       /* u64, from the data section start */
    EM_T_SIZE = 160,         /* u64 */
    EM_T_CHECKSUM = 168,     /* u64 XXH3-64 */
    EM_T_RESERVED = 176      /* 16 bytes zero */
};

/* Config slots: one per EM_CONFIG_FIELDS entry, in order. */
enum {
#define EM_X_SLOT(T, name) EM_CFG_SLOT_##name,
    EM_CONFIG_FIELDS(EM_X_SLOT)
#undef EM_X_SLOT
    EM_CFG_N_FIELDS
};
enum {
#define EM_X_STR(name) EM_CFG_STR_##name,
    EM_CONFIG_STRINGS(EM_X_STR)
#undef EM_X_STR
    EM_CFG_N_STRINGS
};
_Static_assert(EM_CFG_N_FIELDS <= EM_CONFIG_STRING_SLOT0, "config fields run into the string slots");
_Static_assert(EM_CONFIG_STRING_SLOT0 + 2 * EM_CFG_N_STRINGS <= EM_BLOB_CONFIG_FIXED / 4, "config block too small");

#endif /* EM_BLOB_LAYOUT_H */
