/*
 * blob_write.c — the streaming blob format v1 writer (em_blob_writer_*, declared in blob.h), used by em-pack and
 * the tests.
 *
 * Why streaming: an 8B checkpoint does not fit in memory twice. The caller declares every tensor first, so the
 * writer can lay the whole file out before the first data byte; then the tensors' bytes arrive in declaration
 * order, in pieces of any size, and go straight to the file while their XXH3-64 is computed. The table and the
 * header, which hold those checksums, are written last by seeking back.
 *
 * How: the file is written as path + ".tmp" and renamed over path by em_blob_writer_finish, so a reader never
 * sees a half-written blob; any error (or em_blob_writer_abort) removes the temporary file.
 *   declare:  set_config, set_tokenizer, add_tensor (any order, repeated set_* replace)
 *   stream:   write ... (the first write, or finish, fixes the layout; declaring after that is EM_ERR_BAD_STATE)
 *   finish:   table, config, tokenizer, header with all checksums; fsync; rename
 * The byte layout is docs/blob-format.md; the offsets below must match blob.c (the round-trip test checks it).
 */
#include "blob.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "blob_layout.h"
#include "util.h"

// ---- on-disk layout (docs/blob-format.md) ---------------------------------------------------------------------------

/* Header, tensor record and config slot offsets: runtime/blob_layout.h. */

#define EM_SECTION_ALIGN 8u /* config, tokenizer and table start on 8-byte boundaries (the reader needs none) */

struct em_blob_writer {
    char *path, *tmp_path;
    FILE *f;
    int have_config;
    em_blob_config config;          /* strings point into str[] */
    char *str[EM_CFG_N_STRINGS];    /* owned copies of the config strings */
    uint8_t *tokenizer;             /* owned copy */
    uint64_t tokenizer_size;
    em_blob_tensor *tensors;        /* [n], cap allocated; offset and size computed at add, checksum at write */
    uint32_t n, cap;
    uint64_t data_size;             /* end of the last declared tensor (data section size) */
    /* layout, fixed by the first write or finish */
    int frozen;
    uint64_t config_size, tok_off, table_off, data_off;
    /* streaming state */
    uint32_t cur;                   /* tensor receiving bytes */
    uint64_t cur_done;              /* its bytes written so far */
    uint64_t pos;                   /* data-section bytes written, padding included */
    XXH3_state_t *hs;               /* XXH3-64 of tensor cur */
    em_status err;                  /* sticky: after a failure only finish (which cleans up) or abort help */
};

// ---- helpers --------------------------------------------------------------------------------------------------------

static int em_align_up(uint64_t x, uint64_t a, uint64_t *r) {
    uint64_t t;
    if (!em_add_u64(x, a - 1, &t)) return 0;
    *r = t / a * a;
    return 1;
}

static em_status em_w_io(em_blob_writer *w, const char *what) {
    w->err = em_fail(EM_ERR_IO, "blob writer: %s: %s failed: %s", w->tmp_path, what, strerror(errno));
    return w->err;
}

static em_status em_w_put(em_blob_writer *w, const void *p, uint64_t n) {
    if (n && fwrite(p, 1, (size_t)n, w->f) != (size_t)n) return em_w_io(w, "write");
    return EM_OK;
}

static em_status em_w_zeros(em_blob_writer *w, uint64_t n) {
    static const uint8_t zeros[4096];
    while (n) {
        uint64_t k = n < sizeof zeros ? n : sizeof zeros;
        EM_TRY(em_w_put(w, zeros, k));
        n -= k;
    }
    return EM_OK;
}

static void em_w_free(em_blob_writer *w) {
    if (!w) return;
    if (w->f) fclose(w->f);
    for (int i = 0; i < EM_CFG_N_STRINGS; i++) free(w->str[i]);
    free(w->tokenizer);
    free(w->tensors);
    if (w->hs) XXH3_freeState(w->hs);
    free(w->path);
    free(w->tmp_path);
    free(w);
}

/* Names are printable ASCII without spaces (the reader's rule), 1..95 bytes. */
static em_status em_w_check_name(const char *name) {
    size_t len = strnlen(name, EM_BLOB_NAME_MAX);
    if (len == 0) return em_fail(EM_ERR_INVALID_ARG, "blob writer: empty tensor name");
    if (len >= EM_BLOB_NAME_MAX)
        return em_fail(EM_ERR_INVALID_ARG, "blob writer: tensor name '%.40s...' is %zu+ bytes, the limit is %u",
                       name, len, EM_BLOB_NAME_MAX - 1);
    for (size_t k = 0; k < len; k++)
        if ((uint8_t)name[k] <= 0x20 || (uint8_t)name[k] >= 0x7f)
            return em_fail(EM_ERR_INVALID_ARG, "blob writer: tensor name '%s': byte %zu is 0x%02x, want printable "
                           "ASCII without spaces", name, k, (unsigned)(uint8_t)name[k]);
    return EM_OK;
}

// ---- declare --------------------------------------------------------------------------------------------------------

em_status em_blob_writer_open(const char *path, em_blob_writer **out) {
    if (!out) return em_fail(EM_ERR_INVALID_ARG, "blob writer: NULL out");
    *out = NULL;
    if (!path || !*path) return em_fail(EM_ERR_INVALID_ARG, "blob writer: empty path");
    em_blob_writer *w = calloc(1, sizeof *w);
    if (!w) return em_fail(EM_ERR_OUT_OF_MEMORY, "blob writer: cannot allocate the writer");
    size_t len = strlen(path);
    w->path = malloc(len + 1);
    w->tmp_path = malloc(len + 5);
    w->hs = XXH3_createState();
    if (!w->path || !w->tmp_path || !w->hs) {
        em_w_free(w);
        return em_fail(EM_ERR_OUT_OF_MEMORY, "blob writer: cannot allocate the writer");
    }
    memcpy(w->path, path, len + 1);
    memcpy(w->tmp_path, path, len);
    memcpy(w->tmp_path + len, ".tmp", 5);
    w->f = fopen(w->tmp_path, "wb");
    if (!w->f) {
        em_status s = em_fail(EM_ERR_IO, "blob writer: cannot create %s: %s", w->tmp_path, strerror(errno));
        em_w_free(w);
        return s;
    }
    *out = w;
    return EM_OK;
}

em_status em_blob_writer_set_config(em_blob_writer *w, const em_blob_config *config) {
    if (!w || !config) return em_fail(EM_ERR_INVALID_ARG, "blob writer: NULL writer or config");
    if (w->frozen) return em_fail(EM_ERR_BAD_STATE, "blob writer: set_config after the data started");
    const em_blob_string *src[EM_CFG_N_STRINGS];
    static const char *names[EM_CFG_N_STRINGS] = {
#define EM_X_SNAME(name) #name,
        EM_CONFIG_STRINGS(EM_X_SNAME)
#undef EM_X_SNAME
    };
    int k = 0;
#define EM_X_SRC(name) src[k++] = &config->name;
    EM_CONFIG_STRINGS(EM_X_SRC)
#undef EM_X_SRC
    char *copy[EM_CFG_N_STRINGS] = {0};
    for (k = 0; k < EM_CFG_N_STRINGS; k++) {
        em_status s = EM_OK;
        if (src[k]->len > EM_BLOB_MAX_STRING)
            s = em_fail(EM_ERR_INVALID_ARG, "blob writer: config string %s is %u bytes, the limit is %u", names[k],
                        src[k]->len, EM_BLOB_MAX_STRING);
        else if (src[k]->len && !src[k]->ptr)
            s = em_fail(EM_ERR_INVALID_ARG, "blob writer: config string %s: NULL pointer, length %u", names[k],
                        src[k]->len);
        else if (!(copy[k] = malloc(src[k]->len + 1u)))
            s = em_fail(EM_ERR_OUT_OF_MEMORY, "blob writer: cannot copy config string %s", names[k]);
        if (s != EM_OK) {
            for (int j = 0; j < k; j++) free(copy[j]);
            return s;
        }
        if (src[k]->len) memcpy(copy[k], src[k]->ptr, src[k]->len);
        copy[k][src[k]->len] = 0;
    }
    w->config = *config;
    em_blob_string *dst[EM_CFG_N_STRINGS];
    k = 0;
#define EM_X_DST(name) dst[k++] = &w->config.name;
    EM_CONFIG_STRINGS(EM_X_DST)
#undef EM_X_DST
    for (k = 0; k < EM_CFG_N_STRINGS; k++) {
        free(w->str[k]);
        w->str[k] = copy[k];
        dst[k]->ptr = copy[k];
    }
    w->have_config = 1;
    return EM_OK;
}

em_status em_blob_writer_set_tokenizer(em_blob_writer *w, const void *bytes, uint64_t size) {
    if (!w || (size && !bytes)) return em_fail(EM_ERR_INVALID_ARG, "blob writer: NULL writer or tokenizer bytes");
    if (w->frozen) return em_fail(EM_ERR_BAD_STATE, "blob writer: set_tokenizer after the data started");
    if (size > SIZE_MAX) return em_fail(EM_ERR_INVALID_ARG, "blob writer: tokenizer of %llu bytes",
                                        (unsigned long long)size);
    uint8_t *copy = NULL;
    if (size) {
        copy = malloc((size_t)size);
        if (!copy) return em_fail(EM_ERR_OUT_OF_MEMORY, "blob writer: cannot copy a %llu-byte tokenizer",
                                  (unsigned long long)size);
        memcpy(copy, bytes, (size_t)size);
    }
    free(w->tokenizer);
    w->tokenizer = copy;
    w->tokenizer_size = size;
    return EM_OK;
}

em_status em_blob_writer_add_tensor(em_blob_writer *w, const em_blob_tensor *t, uint32_t *index) {
    if (!w || !t) return em_fail(EM_ERR_INVALID_ARG, "blob writer: NULL writer or tensor");
    if (w->frozen) return em_fail(EM_ERR_BAD_STATE, "blob writer: add_tensor after the data started");
    if (w->n >= EM_BLOB_MAX_TENSORS)
        return em_fail(EM_ERR_INVALID_ARG, "blob writer: more than %u tensors", EM_BLOB_MAX_TENSORS);
    EM_TRY(em_w_check_name(t->name));
    const char *nm = t->name;
    size_t esize = em_dtype_size(t->dtype);
    if (!esize) return em_fail(EM_ERR_INVALID_ARG, "blob writer: tensor '%s': unknown dtype %u", nm, t->dtype);
    if (t->n_dims == 0 || t->n_dims > EM_BLOB_MAX_DIMS)
        return em_fail(EM_ERR_INVALID_ARG, "blob writer: tensor '%s': n_dims %u, want 1..%u", nm, t->n_dims,
                       EM_BLOB_MAX_DIMS);
    uint64_t size = esize;
    for (uint32_t d = 0; d < EM_BLOB_MAX_DIMS; d++) {
        if (d < t->n_dims && (t->shape[d] == 0 || !em_mul_u64(size, t->shape[d], &size)))
            return em_fail(EM_ERR_INVALID_ARG, "blob writer: tensor '%s': dim %u is %llu (zero, or the byte size "
                           "overflows 64 bits)", nm, d, (unsigned long long)t->shape[d]);
        if (d >= t->n_dims && t->shape[d] != 0)
            return em_fail(EM_ERR_INVALID_ARG, "blob writer: tensor '%s': unused dim %u is %llu, want 0", nm, d,
                           (unsigned long long)t->shape[d]);
    }
    if (t->layout != EM_LAYOUT_ROW_MAJOR)
        return em_fail(EM_ERR_INVALID_ARG, "blob writer: tensor '%s': unknown layout %u", nm, t->layout);
    int quant_ok = 0; /* none: no scale; int8-row: an i8 tensor with another tensor as its scale */
    if (t->quant == EM_QUANT_NONE) quant_ok = t->scale_index == -1 && t->dtype != EM_DTYPE_I8;
    else if (t->quant == EM_QUANT_INT8_ROW)
        quant_ok = t->dtype == EM_DTYPE_I8 && t->scale_index >= 0 && (uint32_t)t->scale_index != w->n;
    if (!quant_ok)
        return em_fail(EM_ERR_INVALID_ARG, "blob writer: tensor '%s': quant %u with dtype %s and scale_index %d "
                       "(none: not i8, -1; int8-row: i8 and another tensor's index)", nm, t->quant,
                       em_dtype_name(t->dtype), t->scale_index);
    if (t->shard_count == 0 || t->shard_rank >= t->shard_count)
        return em_fail(EM_ERR_INVALID_ARG, "blob writer: tensor '%s': shard %u of %u, want rank < count", nm,
                       t->shard_rank, t->shard_count);
    /* place it: the next EM_BLOB_ALIGN boundary after the previous tensor */
    uint64_t off, end;
    if (!em_align_up(w->data_size, EM_BLOB_ALIGN, &off) || !em_add_u64(off, size, &end))
        return em_fail(EM_ERR_INVALID_ARG, "blob writer: tensor '%s': the data section passes 2^64 bytes", nm);
    if (w->n == w->cap) {
        uint32_t cap = w->cap ? 2 * w->cap : 64;
        em_blob_tensor *p = realloc(w->tensors, (size_t)cap * sizeof *p);
        if (!p) return em_fail(EM_ERR_OUT_OF_MEMORY, "blob writer: cannot grow the table to %u tensors", cap);
        w->tensors = p;
        w->cap = cap;
    }
    em_blob_tensor *r = &w->tensors[w->n];
    *r = *t;
    memset(r->name, 0, sizeof r->name); /* NUL-padded on disk, whatever followed the caller's NUL */
    memcpy(r->name, t->name, strlen(t->name));
    r->offset = off;
    r->size = size;
    r->checksum = 0;
    w->data_size = end;
    if (index) *index = w->n;
    w->n++;
    return EM_OK;
}

// ---- layout and data ------------------------------------------------------------------------------------------------

static int em_cmp_name(const void *a, const void *b) {
    return strcmp((*(const em_blob_tensor *const *)a)->name, (*(const em_blob_tensor *const *)b)->name);
}

/* Fixes the layout (header | config | tokenizer | table | pad | data) and writes zeros up to the data section;
 * the real header, config, tokenizer and table overwrite them in finish. */
static em_status em_w_freeze(em_blob_writer *w) {
    if (!w->have_config) return em_fail(EM_ERR_BAD_STATE, "blob writer: no config set before the data");
    for (uint32_t i = 0; i < w->n; i++) {
        const em_blob_tensor *t = &w->tensors[i];
        if (t->scale_index >= 0 && (uint32_t)t->scale_index >= w->n)
            return em_fail(EM_ERR_INVALID_ARG, "blob writer: tensor '%s': scale_index %d, but only %u tensors", t->name,
                           t->scale_index, w->n);
        /* the reader's em_check_scales, here too: a writer never produces a blob its reader refuses */
        if (t->quant == EM_QUANT_INT8_ROW) {
            const em_blob_tensor *sc = &w->tensors[t->scale_index];
            if (t->n_dims != 2 || sc->dtype != EM_DTYPE_F32 || sc->n_dims != 1 || sc->shape[0] != t->shape[0] ||
                sc->quant != EM_QUANT_NONE)
                return em_fail(EM_ERR_INVALID_ARG, "blob writer: tensor '%s': int8-row needs a 2-d i8 tensor and an "
                               "unquantized f32 [%llu] scale tensor; '%s' is %s %u-d [%llu]", t->name,
                               (unsigned long long)t->shape[0], sc->name, em_dtype_name(sc->dtype), sc->n_dims,
                               (unsigned long long)sc->shape[0]);
        }
    }
    if (w->n > 1) { /* duplicate names, over a sorted copy */
        const em_blob_tensor **p = malloc((size_t)w->n * sizeof *p);
        if (!p) return em_fail(EM_ERR_OUT_OF_MEMORY, "blob writer: cannot sort %u names", w->n);
        for (uint32_t i = 0; i < w->n; i++) p[i] = &w->tensors[i];
        qsort(p, w->n, sizeof *p, em_cmp_name);
        em_status s = EM_OK;
        for (uint32_t i = 1; i < w->n && s == EM_OK; i++)
            if (!strcmp(p[i - 1]->name, p[i]->name))
                s = em_fail(EM_ERR_INVALID_ARG, "blob writer: tensor name '%s' declared twice", p[i]->name);
        free(p);
        EM_TRY(s);
    }
    /* config: the fixed block, then the strings back to back (each <= 1 MiB, so no overflow here) */
    w->config_size = EM_BLOB_CONFIG_FIXED;
#define EM_X_LEN(name) w->config_size += w->config.name.len;
    EM_CONFIG_STRINGS(EM_X_LEN)
#undef EM_X_LEN
    uint64_t tok_end, table_end;
    if (!em_align_up(EM_BLOB_HEADER_SIZE + w->config_size, EM_SECTION_ALIGN, &w->tok_off) ||
        !em_add_u64(w->tok_off, w->tokenizer_size, &tok_end) ||
        !em_align_up(tok_end, EM_SECTION_ALIGN, &w->table_off) ||
        !em_add_u64(w->table_off, (uint64_t)w->n * EM_BLOB_TENSOR_RECORD, &table_end) ||
        !em_align_up(table_end, EM_BLOB_ALIGN, &w->data_off) || !em_add_u64(w->data_off, w->data_size, &tok_end))
        return em_fail(EM_ERR_INVALID_ARG, "blob writer: the file would pass 2^64 bytes");
    w->frozen = 1;
    w->cur = 0;
    w->cur_done = 0;
    w->pos = 0;
    XXH3_64bits_reset(w->hs);
    return em_w_zeros(w, w->data_off);
}

em_status em_blob_writer_write(em_blob_writer *w, const void *bytes, uint64_t size) {
    if (!w || (size && !bytes)) return em_fail(EM_ERR_INVALID_ARG, "blob writer: NULL writer or bytes");
    if (w->err) return em_fail(w->err, "blob writer: %s: an earlier error stopped this writer", w->tmp_path);
    if (!w->frozen) EM_TRY(em_w_freeze(w)); /* fails before writing (fixable), or with a sticky I/O error */
    const uint8_t *p = bytes;
    while (size) {
        if (w->cur >= w->n)
            return w->err = em_fail(EM_ERR_INVALID_ARG, "blob writer: %llu bytes more than the %u declared tensors "
                                    "hold", (unsigned long long)size, w->n);
        em_blob_tensor *t = &w->tensors[w->cur];
        if (w->cur_done == 0 && w->pos < t->offset) { /* zero padding up to the tensor's aligned offset */
            EM_TRY(em_w_zeros(w, t->offset - w->pos));
            w->pos = t->offset;
        }
        uint64_t k = t->size - w->cur_done;
        if (k > size) k = size;
        EM_TRY(em_w_put(w, p, k));
        XXH3_64bits_update(w->hs, p, (size_t)k);
        p += k;
        size -= k;
        w->cur_done += k;
        w->pos += k;
        if (w->cur_done == t->size) { /* tensor complete */
            t->checksum = XXH3_64bits_digest(w->hs);
            XXH3_64bits_reset(w->hs);
            w->cur++;
            w->cur_done = 0;
        }
    }
    return EM_OK;
}

// ---- finish ---------------------------------------------------------------------------------------------------------

static void em_w_encode_config(const em_blob_writer *w, uint8_t *p) {
    const em_blob_config *c = &w->config;
    memset(p, 0, EM_BLOB_CONFIG_FIXED);
    uint32_t slot = 0;
    uint32_t u;
#define EM_X_ENC_u32(name) em_st32(p + 4u * slot++, c->name);
#define EM_X_ENC_i32(name) memcpy(&u, &c->name, 4); em_st32(p + 4u * slot++, u);
#define EM_X_ENC_f32(name) memcpy(&u, &c->name, 4); em_st32(p + 4u * slot++, u);
#define EM_X_ENC(T, name) EM_X_ENC_##T(name)
    EM_CONFIG_FIELDS(EM_X_ENC)
#undef EM_X_ENC
#undef EM_X_ENC_u32
#undef EM_X_ENC_i32
#undef EM_X_ENC_f32
    (void)u;
    uint32_t at = EM_BLOB_CONFIG_FIXED, k = 0;
#define EM_X_STRS(name)                                                              \
    em_st32(p + 4u * (EM_CONFIG_STRING_SLOT0 + 2u * k), at);                         \
    em_st32(p + 4u * (EM_CONFIG_STRING_SLOT0 + 2u * k) + 4, c->name.len);            \
    if (c->name.len) memcpy(p + at, c->name.ptr, c->name.len);                       \
    at += c->name.len;                                                               \
    k++;
    EM_CONFIG_STRINGS(EM_X_STRS)
#undef EM_X_STRS
}

static void em_w_encode_tensor(const em_blob_tensor *t, uint8_t *r) {
    memset(r, 0, EM_BLOB_TENSOR_RECORD); /* name padding and the reserved tail */
    memcpy(r + EM_T_NAME, t->name, EM_BLOB_NAME_MAX);
    em_st32(r + EM_T_DTYPE, t->dtype);
    em_st32(r + EM_T_NDIMS, t->n_dims);
    for (uint32_t d = 0; d < EM_BLOB_MAX_DIMS; d++) em_st64(r + EM_T_SHAPE + 8 * d, t->shape[d]);
    em_st32(r + EM_T_LAYOUT, t->layout);
    em_st32(r + EM_T_QUANT, t->quant);
    em_st32(r + EM_T_SCALE_INDEX, (uint32_t)t->scale_index);
    em_st16(r + EM_T_SHARD_RANK, t->shard_rank);
    em_st16(r + EM_T_SHARD_COUNT, t->shard_count);
    em_st64(r + EM_T_OFFSET, t->offset);
    em_st64(r + EM_T_SIZE, t->size);
    em_st64(r + EM_T_CHECKSUM, t->checksum);
}

/* Everything after the data: the front of the file, checksums, flush, rename. */
static em_status em_w_finish(em_blob_writer *w) {
    if (w->err) return em_fail(w->err, "blob writer: %s: an earlier error stopped this writer", w->tmp_path);
    if (!w->frozen) EM_TRY(em_w_freeze(w));
    if (w->cur < w->n)
        return em_fail(EM_ERR_BAD_STATE, "blob writer: tensor '%s' got %llu of its %llu bytes (%u of %u tensors "
                       "complete)", w->tensors[w->cur].name, (unsigned long long)w->cur_done,
                       (unsigned long long)w->tensors[w->cur].size, w->cur, w->n);
    uint64_t table_size = (uint64_t)w->n * EM_BLOB_TENSOR_RECORD;
    if (w->config_size > SIZE_MAX || table_size > SIZE_MAX)
        return em_fail(EM_ERR_INVALID_ARG, "blob writer: sections too large for this address space");
    uint8_t *cfg = malloc((size_t)w->config_size), *tab = malloc((size_t)table_size + 1);
    XXH3_state_t *st = XXH3_createState();
    if (!cfg || !tab || !st) {
        free(cfg);
        free(tab);
        if (st) XXH3_freeState(st);
        return em_fail(EM_ERR_OUT_OF_MEMORY, "blob writer: cannot allocate the config and table");
    }
    em_w_encode_config(w, cfg);
    int sharded = 0;
    for (uint32_t i = 0; i < w->n; i++) {
        em_w_encode_tensor(&w->tensors[i], tab + (size_t)i * EM_BLOB_TENSOR_RECORD);
        sharded |= w->tensors[i].shard_count != 1;
    }

    /* header: 256 bytes, reserved zeros, checksum of [0, 248) last */
    uint8_t h[EM_BLOB_HEADER_SIZE];
    memset(h, 0, sizeof h);
    memcpy(h + EM_H_MAGIC, EM_BLOB_MAGIC, 8);
    em_st32(h + EM_H_VERSION, EM_BLOB_VERSION);
    em_st32(h + EM_H_HEADER_SIZE, EM_BLOB_HEADER_SIZE);
    em_st32(h + EM_H_FLAGS, sharded ? EM_BLOB_FLAG_SHARDED : 0u);
    em_st64(h + EM_H_FILE_SIZE, w->data_off + w->data_size);
    const uint64_t sec[4][2] = {{EM_BLOB_HEADER_SIZE, w->config_size}, {w->tok_off, w->tokenizer_size},
                                {w->table_off, table_size}, {w->data_off, w->data_size}};
    for (int i = 0; i < 4; i++) {
        em_st64(h + EM_H_CONFIG_OFF + 16 * i, sec[i][0]);
        em_st64(h + EM_H_CONFIG_OFF + 16 * i + 8, sec[i][1]);
    }
    em_st32(h + EM_H_TENSOR_COUNT, w->n);
    XXH3_128bits_reset(st); /* content id: config section, then table section */
    XXH3_128bits_update(st, cfg, (size_t)w->config_size);
    XXH3_128bits_update(st, tab, (size_t)table_size);
    XXH128_canonical_t id;
    XXH128_canonicalFromHash(&id, XXH3_128bits_digest(st));
    XXH3_freeState(st);
    memcpy(h + EM_H_CONTENT_ID, id.digest, 16);
    em_st64(h + EM_H_CONFIG_SUM, XXH3_64bits(cfg, (size_t)w->config_size));
    em_st64(h + EM_H_TOKENIZER_SUM, XXH3_64bits(w->tokenizer, (size_t)w->tokenizer_size));
    em_st64(h + EM_H_TABLE_SUM, XXH3_64bits(tab, (size_t)table_size));
    em_st64(h + EM_H_HEADER_SUM, XXH3_64bits(h, EM_H_HEADER_SUM));

    /* the front of the file; the gaps between sections are already zero */
    em_status s = EM_OK;
    if (fseeko(w->f, 0, SEEK_SET) != 0) s = em_w_io(w, "seek");
    if (s == EM_OK) s = em_w_put(w, h, sizeof h);
    if (s == EM_OK) s = em_w_put(w, cfg, w->config_size);
    if (s == EM_OK && fseeko(w->f, (off_t)w->tok_off, SEEK_SET) != 0) s = em_w_io(w, "seek");
    if (s == EM_OK) s = em_w_put(w, w->tokenizer, w->tokenizer_size);
    if (s == EM_OK && fseeko(w->f, (off_t)w->table_off, SEEK_SET) != 0) s = em_w_io(w, "seek");
    if (s == EM_OK) s = em_w_put(w, tab, table_size);
    free(cfg);
    free(tab);
    EM_TRY(s);
    if (fflush(w->f) != 0) return em_w_io(w, "flush");
    if (fsync(fileno(w->f)) != 0) return em_w_io(w, "fsync");
    FILE *f = w->f;
    w->f = NULL;
    if (fclose(f) != 0) return em_w_io(w, "close");
    if (rename(w->tmp_path, w->path) != 0) {
        em_status e = em_fail(EM_ERR_IO, "blob writer: cannot rename %s to %s: %s", w->tmp_path, w->path,
                              strerror(errno));
        return e;
    }
    return EM_OK;
}

em_status em_blob_writer_finish(em_blob_writer *w) {
    if (!w) return em_fail(EM_ERR_INVALID_ARG, "blob writer: NULL writer");
    em_status s = em_w_finish(w);
    if (s != EM_OK) {
        if (w->f) {
            fclose(w->f);
            w->f = NULL;
        }
        remove(w->tmp_path);
    }
    em_w_free(w);
    return s;
}

void em_blob_writer_abort(em_blob_writer *w) {
    if (!w) return;
    if (w->f) {
        fclose(w->f);
        w->f = NULL;
    }
    remove(w->tmp_path);
    em_w_free(w);
}
