/*
 * stwrite.c — see stwrite.h. Small by design: the header is built with snprintf into a growing buffer.
 */
#include "stwrite.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* A growing string: p[0..n) holds the text; oom latches the first allocation failure. */
typedef struct sbuf { char *p; size_t n, cap; int oom; } sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) EM_PRINTF(2, 3);
static void sb_printf(sbuf *b, const char *fmt, ...) {
    /* Try in the space left; when the text does not fit, grow to at least twice what it needs and retry. */
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = 1; return; }
        if (b->p && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t cap = (b->cap + (size_t)k + 1) * 2;
        char *np = realloc(b->p, cap);
        if (!np) { b->oom = 1; return; }
        b->p = np;
        b->cap = cap;
    }
}

em_status em_st_serialize(const em_st_wtensor *t, size_t n, uint8_t **out, uint64_t *size) {
    sbuf h = {0};
    uint64_t off = 0;
    /* The header: {"__metadata__": ..., "name": {"dtype", "shape", "data_offsets"}, ...}, tensors back to back. */
    sb_printf(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = 0; i < n; i++) {
        uint64_t cnt = 1, bytes;
        for (uint32_t d = 0; d < t[i].n_dims; d++) cnt *= t[i].shape[d];
        bytes = cnt * em_st_dtype_size(t[i].dtype);
        sb_printf(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t[i].name, em_st_dtype_name(t[i].dtype));
        for (uint32_t d = 0; d < t[i].n_dims; d++)
            sb_printf(&h, "%s%llu", d ? "," : "", (unsigned long long)t[i].shape[d]);
        sb_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + bytes));
        off += bytes;
    }
    sb_printf(&h, "}");
    while (!h.oom && h.n % 8) sb_printf(&h, " ");   /* the data area starts 8-aligned */
    if (h.oom) { free(h.p); return em_fail(EM_ERR_OUT_OF_MEMORY, "safetensors writer: out of memory"); }

    /* The file: u64 LE header length, header, then each tensor's bytes in the order given. */
    uint64_t total = 8 + h.n + off;
    uint8_t *buf = malloc((size_t)total);
    if (!buf) { free(h.p); return em_fail(EM_ERR_OUT_OF_MEMORY, "safetensors writer: out of memory"); }
    em_st64(buf, h.n);
    memcpy(buf + 8, h.p, h.n);
    uint8_t *d = buf + 8 + h.n;
    for (size_t i = 0; i < n; i++) {
        uint64_t cnt = 1;
        for (uint32_t k = 0; k < t[i].n_dims; k++) cnt *= t[i].shape[k];
        size_t bytes = (size_t)(cnt * em_st_dtype_size(t[i].dtype));
        if (bytes) memcpy(d, t[i].data, bytes);
        d += bytes;
    }
    free(h.p);
    *out = buf;
    *size = total;
    return EM_OK;
}

em_status em_st_write(const char *path, const em_st_wtensor *t, size_t n) {
    uint8_t *buf;
    uint64_t size;
    EM_TRY(em_st_serialize(t, n, &buf, &size));
    FILE *f = fopen(path, "wb");
    if (!f) { free(buf); return em_fail(EM_ERR_IO, "%s: cannot create: %s", path, strerror(errno)); }
    size_t w = fwrite(buf, 1, (size_t)size, f);
    int bad = fclose(f) != 0 || w != size;
    free(buf);
    return bad ? em_fail(EM_ERR_IO, "%s: write failed", path) : EM_OK;
}
