/*
 * stwrite.h — a minimal safetensors writer, so that tests and fuzz seeds can make checkpoints from C
 * (the tests must not need Python). Writes what the official library writes: u64 header length, the JSON
 * header padded with spaces to a multiple of 8, then the tensors back to back in the order given.
 */
#ifndef EM_PACK_STWRITE_H
#define EM_PACK_STWRITE_H

#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"

typedef struct em_st_wtensor {
    const char *name;              /* plain ASCII without '"' or '\\' (not escaped) */
    em_st_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[EM_ST_MAX_DIMS];
    const void *data;              /* product(shape) little-endian elements of dtype */
} em_st_wtensor;

/** Serialises n tensors into a new heap buffer (*out, free it) of *size bytes. */
em_status em_st_serialize(const em_st_wtensor *t, size_t n, uint8_t **out, uint64_t *size);

/** Writes n tensors to path as a .safetensors file. */
em_status em_st_write(const char *path, const em_st_wtensor *t, size_t n);

#endif /* EM_PACK_STWRITE_H */
