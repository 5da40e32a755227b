/*
 * safetensors.h — a reader for HF safetensors checkpoints: one file, or a sharded directory
 * (model.safetensors.index.json + its shards). Used by em-pack, its tests and fuzz targets.
 *
 * Why: em-pack must read multi-GB checkpoints without copying them, and treat them as untrusted input.
 * How: every file is mmapped read-only; the 8-byte little-endian header length and the JSON header are
 * validated (length bounds, known dtype, shape product * dtype size == data length, data_offsets inside the
 * data area, no two tensors sharing bytes, no duplicate names, all arithmetic overflow-checked); tensors are
 * then sorted by name for lookup. Tensor data pointers point into the mapping (never decoded here).
 *
 *   em_st *st;
 *   if (em_st_open("ckpt/", &st) != EM_OK) fprintf(stderr, "%s\n", em_last_error());
 *   const em_st_tensor *t = em_st_find(st, "lm_head.weight");     // NULL when absent
 *   for (size_t i = 0; i < em_st_count(st); i++) puts(em_st_at(st, i)->name);
 *   em_st_close(st);
 *
 * Errors are EM_ERR_IO / EM_ERR_NOT_FOUND (files) or EM_ERR_FORMAT (malformed), with a message that names
 * the file and, where there is one, the tensor. Not thread-safe per handle; separate handles are independent.
 */
#ifndef EM_PACK_SAFETENSORS_H
#define EM_PACK_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "edgemamba.h"

#define EM_ST_MAX_DIMS 8u                       /* more dims than this is rejected as malformed */
#define EM_ST_MAX_HEADER (100ull << 20)         /* the safetensors spec's header limit (100 MiB) */

typedef enum em_st_dtype {
    EM_ST_F32 = 0, EM_ST_BF16 = 1, EM_ST_F16 = 2, EM_ST_F64 = 3, EM_ST_I32 = 4, EM_ST_I64 = 5
} em_st_dtype;

typedef struct em_st_tensor {
    const char *name;              /* NUL-terminated; owned by the em_st */
    const char *file;              /* path of the file holding it (for messages); owned by the em_st */
    em_st_dtype dtype;
    uint32_t n_dims;               /* 0 (scalar) .. EM_ST_MAX_DIMS */
    uint64_t shape[EM_ST_MAX_DIMS];/* slowest-first */
    uint64_t n_elems;              /* product of shape (1 for a scalar) */
    const uint8_t *data;           /* little-endian elements, inside the file's mapping */
    uint64_t size;                 /* bytes = n_elems * em_st_dtype_size(dtype) */
} em_st_tensor;

typedef struct em_st em_st;

/** Opens a checkpoint: a .safetensors file, a model.safetensors.index.json, or a directory holding either
 *  (the index is preferred). @return EM_OK; EM_ERR_NOT_FOUND / EM_ERR_IO for missing or unreadable files;
 *  EM_ERR_FORMAT for a malformed header or index; EM_ERR_OUT_OF_MEMORY. On failure *out is NULL. */
em_status em_st_open(const char *path, em_st **out);

/** Parses a whole safetensors file held in memory (not copied: it must outlive the handle). label names it
 *  in messages. Same validation and statuses as em_st_open. For tests and fuzzing. */
em_status em_st_open_memory(const void *bytes, uint64_t size, const char *label, em_st **out);

/** Releases the handle and its mappings. Safe on NULL. */
void em_st_close(em_st *st);

/** @return the tensor with this exact name, or NULL. */
const em_st_tensor *em_st_find(const em_st *st, const char *name);

/** Iteration in name order: tensors 0 .. em_st_count - 1. */
size_t em_st_count(const em_st *st);
const em_st_tensor *em_st_at(const em_st *st, size_t i);

/** @return the position of t (a pointer from em_st_find / em_st_at) in name order. */
size_t em_st_index(const em_st *st, const em_st_tensor *t);

/** @return bytes per element (0 for a value outside the enum), and the safetensors name ("F32", ...). */
size_t em_st_dtype_size(em_st_dtype dt);
const char *em_st_dtype_name(em_st_dtype dt);

/** Reads a whole (small) file into a NUL-terminated heap buffer (free it); max bytes at most. Shared by the
 *  pack library (index.json, config.json, tokenizer files).
 *  @return EM_OK, EM_ERR_NOT_FOUND, EM_ERR_IO, EM_ERR_FORMAT (larger than max), EM_ERR_OUT_OF_MEMORY. */
em_status em_pack_read_file(const char *path, uint64_t max, char **out, size_t *len);

/** Formats a shape as "[a, b, c]" into buf (truncated to cap). @return buf. */
char *em_st_shape_str(const uint64_t *shape, uint32_t n_dims, char *buf, size_t cap);

#endif /* EM_PACK_SAFETENSORS_H */
