/*
 * pack.c — see pack.h. Three steps, each finished before the next starts:
 *   1. plan:    walk runtime/tensors.h (globals, then each layer's table by its layer_pattern kind) into a
 *               list of blob tensors, each with its dtype (matrices: the pack dtype; small: f32) and shape;
 *   2. resolve: (checkpoint) find every tensor's HF source, check its shape and dtype, and list the
 *               checkpoint tensors nobody asked for; nothing is written before all of this passes;
 *   3. stream:  declare every tensor to the blob writer, then convert and write them in order, through
 *               two fixed chunk buffers (8 MB), so memory stays flat for any model size.
 *
 * INT8 (--dtype int8, --requantize; issue 10, docs/int8.md): every 2-D matrix but the embedding becomes an i8
 * tensor (EM_QUANT_INT8_ROW, quant/quant.h) followed in the table by its scales, "<name>.scale", F32 [rows].
 * The matrix is streamed row by row (a row is quantized as a whole: its scale needs its max), the scales are
 * kept (4 bytes a row) and written as the next tensor. The embedding stays BF16 (a gather of one row per token
 * reads 8 KB, not worth quantizing; em_ref_embed takes no int8); with tied embeddings the head is the
 * embedding, so it stays BF16 too. Random INT8 blobs quantize the BF16 random values, so `--random-init C
 * --dtype int8` is byte for byte `--random-init C` followed by `--requantize` (tests/test_int8_pack.c).
 */
#include "pack.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "blob.h"
#include "hfconfig.h"
#include "megatron.h"
#include "quant.h"
#include "randinit.h"
#include "safetensors.h"
#include "tensors.h"
#include "util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "em-pack copies little-endian tensor bytes as they are: a big-endian host needs byte swaps here"
#endif

#define PACK_CHUNK (1u << 20)              /* elements per conversion chunk (even: see em_ri_fill) */
#define PACK_TOKENIZER_MAX (512ull << 20)  /* a tokenizer file larger than this is not a tokenizer */

typedef em_pack_xf pack_xform;   /* megatron.h: copy, A = -exp(A_log), Megatron qkv row gathers */
#define XF_COPY EM_XF_COPY
#define XF_NEG_EXP EM_XF_NEG_EXP

/* What a plan item is: a plain tensor, an int8-row matrix, or the scales of the int8 item just before it. */
typedef enum pack_role { PACK_ROLE_PLAIN = 0, PACK_ROLE_I8 = 1, PACK_ROLE_SCALE = 2 } pack_role;

typedef struct pack_item {
    em_blob_tensor t;            /* as declared to the writer */
    pack_role role;
    uint32_t ri_index;           /* the item's index without the scale items (= its index in a bf16 plan): the
                                    random-init key, so an int8 random blob holds the bf16 one's values */
    char kind;                   /* 'g' global, else the em_layer_kind */
    uint32_t layer;              /* layer index (kind != 'g') */
    const char *field;           /* tensors.h field name */
    uint64_t n_elems;
    const em_st_tensor *src;     /* checkpoint source (NULL for random init) */
    pack_xform xf;
} pack_item;

typedef struct pack_plan {
    pack_item *items;
    uint32_t n, cap;
    uint32_t n_plain;            /* items that are not scales */
    uint64_t data_bytes;
    uint64_t max_i8_rows;        /* the largest int8 matrix's rows (the scale buffer) */
} pack_plan;

static double pack_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

em_pack_options em_pack_default_options(void) {
    em_pack_options o;
    memset(&o, 0, sizeof o);
    o.dtype = EM_DTYPE_BF16;
    return o;
}

// ---- 1. plan: the tensors.h tables --------------------------------------------------------------------

static em_status plan_push(pack_plan *p, em_dtype dt, char kind, uint32_t layer, const char *field, pack_role role,
                           uint32_t nd, uint64_t d0, uint64_t d1) {
    if (p->n == p->cap) {
        uint32_t cap = p->cap ? 2 * p->cap : 64;
        pack_item *it = realloc(p->items, cap * sizeof *it);
        if (!it) return em_fail(EM_ERR_OUT_OF_MEMORY, "em-pack: out of memory");
        p->items = it;
        p->cap = cap;
    }
    pack_item *it = &p->items[p->n];
    memset(it, 0, sizeof *it);
    const char *suffix = role == PACK_ROLE_SCALE ? ".scale" : "";
    if (kind == 'g') snprintf(it->t.name, sizeof it->t.name, "%s%s", field, suffix);
    else snprintf(it->t.name, sizeof it->t.name, "l%u.%s%s", layer, field, suffix);
    it->t.dtype = (uint32_t)dt;
    it->t.n_dims = nd;
    it->t.shape[0] = d0;
    if (nd > 1) it->t.shape[1] = d1;
    it->t.layout = EM_LAYOUT_ROW_MAJOR;
    it->t.quant = role == PACK_ROLE_I8 ? EM_QUANT_INT8_ROW : EM_QUANT_NONE;
    it->t.scale_index = role == PACK_ROLE_I8 ? (int32_t)(p->n + 1) : -1; /* its scales come next */
    it->t.shard_rank = 0;
    it->t.shard_count = 1;
    it->role = role;
    it->ri_index = role == PACK_ROLE_SCALE ? UINT32_MAX : p->n_plain;
    it->kind = kind;
    it->layer = layer;
    it->field = field;
    uint64_t size;
    if (!d0 || (nd > 1 && !d1) || !em_mul_u64(d0, nd > 1 ? d1 : 1, &it->n_elems) ||
        !em_mul_u64(it->n_elems, em_dtype_size(it->t.dtype), &size) || !em_add_u64(p->data_bytes, size, &p->data_bytes))
        return em_fail(EM_ERR_FORMAT, "em-pack: tensor %s: shape [%llu, %llu] is empty or too large", it->t.name,
                       (unsigned long long)d0, (unsigned long long)d1);
    /* an int8 row is quantized whole in one chunk buffer (one spare element: random chunks start on pairs) */
    if (role == PACK_ROLE_I8 && d1 > PACK_CHUNK - 1)
        return em_fail(EM_ERR_UNSUPPORTED, "em-pack: tensor %s: rows of %llu elements are longer than int8 packing "
                       "takes (%u)", it->t.name, (unsigned long long)d1, PACK_CHUNK - 1);
    if (role == PACK_ROLE_I8 && d0 > p->max_i8_rows) p->max_i8_rows = d0;
    if (role != PACK_ROLE_SCALE) p->n_plain++;
    p->n++;
    return EM_OK;
}

/* One tensors.h entry: small tensors are f32; matrices take the pack dtype, except that int8 applies to 2-D
 * matrices other than the embedding (which stays bf16, see the top of this file). */
static em_status plan_add(pack_plan *p, em_dtype pack_dt, char kind, uint32_t layer, const char *field,
                          em_wclass wc, uint32_t nd, uint64_t d0, uint64_t d1) {
    em_dtype dt = wc == EM_WCLASS_MATRIX ? pack_dt : EM_DTYPE_F32;
    const int i8 = dt == EM_DTYPE_I8 && nd == 2 && strcmp(field, "embd") != 0;
    if (dt == EM_DTYPE_I8 && !i8) dt = EM_DTYPE_BF16;
    EM_TRY(plan_push(p, dt, kind, layer, field, i8 ? PACK_ROLE_I8 : PACK_ROLE_PLAIN, nd, d0, d1));
    if (i8) EM_TRY(plan_push(p, EM_DTYPE_F32, kind, layer, field, PACK_ROLE_SCALE, 1, d0, 0));
    return EM_OK;
}

/* One X per tensor of a table; c, p, dt, kind and layer are in scope where it expands. */
#define PACK_X_ADD(field, wclass, present, nd, d0, d1)                                                         \
    if (present) {                                                                                              \
        em_status s_ = plan_add(p, dt, kind, layer, #field, wclass, nd, (uint64_t)(d0), (uint64_t)(d1));        \
        if (s_ != EM_OK) return s_;                                                                             \
    }

static em_status plan_build(pack_plan *p, const em_blob_config *c, em_dtype dt) {
    char kind = 'g';
    uint32_t layer = 0;
    EM_GLOBAL_TENSORS(PACK_X_ADD)
    for (layer = 0; layer < c->n_layer; layer++) {
        kind = c->layer_pattern.ptr[layer];
        switch (kind) {
        case EM_LAYER_MAMBA2: EM_MAMBA2_TENSORS(PACK_X_ADD) break;
        case EM_LAYER_ATTN: EM_ATTN_TENSORS(PACK_X_ADD) break;
        case EM_LAYER_MLP: EM_MLP_TENSORS(PACK_X_ADD) break;
        default:
            return em_fail(EM_ERR_UNSUPPORTED, "em-pack: layer %u has kind '%c', which em-pack cannot pack", layer,
                           kind);
        }
    }
    return EM_OK;
}

// ---- 2. resolve: HF names -------------------------------------------------------------------------------

/*
 * HF name of each blob tensor, after the model prefix ("backbone." or "model."); '|' separates accepted
 * spellings (first preferred), a leading '=' means no prefix. This is a name map, not a second tensor
 * list: plan_build decides which tensors exist; a field missing here is an internal error.
 */
static const em_pack_name hf_names[] = {
    {'g', "embd", "embeddings.weight|embedding.weight", XF_COPY},
    {'g', "norm_f", "norm_f.weight", XF_COPY},
    {'g', "head", "=lm_head.weight", XF_COPY},
    {'M', "norm", "layers.%u.norm.weight", XF_COPY},
    {'M', "in_proj", "layers.%u.mixer.in_proj.weight", XF_COPY},
    {'M', "conv_w", "layers.%u.mixer.conv1d.weight", XF_COPY},     /* [C, 1, K] -> [C, K]: same bytes */
    {'M', "conv_b", "layers.%u.mixer.conv1d.bias", XF_COPY},
    {'M', "dt_bias", "layers.%u.mixer.dt_bias", XF_COPY},
    {'M', "A", "layers.%u.mixer.A_log", XF_NEG_EXP},
    {'M', "D", "layers.%u.mixer.D", XF_COPY},
    {'M', "gnorm", "layers.%u.mixer.norm.weight", XF_COPY},
    {'M', "out_proj", "layers.%u.mixer.out_proj.weight", XF_COPY},
    {'*', "norm", "layers.%u.norm.weight", XF_COPY},
    {'*', "wq", "layers.%u.mixer.q_proj.weight", XF_COPY},
    {'*', "wk", "layers.%u.mixer.k_proj.weight", XF_COPY},
    {'*', "wv", "layers.%u.mixer.v_proj.weight", XF_COPY},
    {'*', "wo", "layers.%u.mixer.o_proj.weight", XF_COPY},
    {'-', "norm", "layers.%u.norm.weight", XF_COPY},
    {'-', "up", "layers.%u.mixer.up_proj.weight", XF_COPY},
    {'-', "down", "layers.%u.mixer.down_proj.weight", XF_COPY},
};

/* Finds the source of it among prefixes x spellings; *tried gets the preferred name for messages. */
static const em_st_tensor *resolve_one(const em_st *st, const pack_item *it, const em_pack_name *names,
                                       size_t n_names, const char *const *prefixes, pack_xform *xf, char *tried,
                                       size_t cap) {
    const char *pat = NULL;
    tried[0] = 0;
    for (size_t i = 0; i < n_names; i++)
        if (names[i].kind == it->kind && !strcmp(names[i].field, it->field)) {
            pat = names[i].src;
            *xf = names[i].xf;
        }
    if (!pat) return NULL;
    int no_prefix = pat[0] == '=';
    if (no_prefix) pat++;
    tried[0] = 0;
    for (int pi = 0; prefixes[pi]; pi++) {
        const char *alt = pat;
        while (*alt) {
            const char *bar = strchr(alt, '|');
            size_t len = bar ? (size_t)(bar - alt) : strlen(alt);
            char fmt[128], name[256];
            snprintf(fmt, sizeof fmt, "%.*s", (int)len, alt);
            char suffix[200];
            snprintf(suffix, sizeof suffix, fmt, it->layer);   /* fmt is one of the literals above */
            snprintf(name, sizeof name, "%s%s", no_prefix ? "" : prefixes[pi], suffix);
            if (!tried[0]) snprintf(tried, cap, "%s", name);
            const em_st_tensor *t = em_st_find(st, name);
            if (t) return t;
            alt = bar ? bar + 1 : alt + len;
        }
        if (no_prefix) break;
    }
    return NULL;
}

/* Rows of Megatron's fused linear_qkv weight: (heads + 2 kv heads) * head_dim. */
static uint64_t qkv_rows(const em_blob_config *c) {
    return (uint64_t)(c->attn_n_head + 2u * c->attn_n_kv_head) * c->attn_head_dim;
}

/* The source shape each blob tensor accepts: the blob shape, except conv1d weights stored [C, 1, K] and
 * Megatron's wq / wk / wv, which come out of the fused qkv matrix [qkv_rows, d]. */
static int shape_ok(const pack_item *it, const em_st_tensor *s, const em_blob_config *c) {
    const uint64_t *b = it->t.shape;
    if (it->xf >= EM_XF_QKV_Q)
        return s->n_dims == 2 && s->shape[0] == qkv_rows(c) && s->shape[1] == b[1];
    if (!strcmp(it->field, "conv_w") && s->n_dims == 3)
        return s->shape[0] == b[0] && s->shape[1] == 1 && s->shape[2] == b[1];
    if (s->n_dims != it->t.n_dims) return 0;
    for (uint32_t d = 0; d < s->n_dims; d++) if (s->shape[d] != b[d]) return 0;
    return 1;
}

static em_status plan_resolve(pack_plan *p, const em_st *st, em_hf_family fam, const em_blob_config *c,
                              uint32_t *n_unused) {
    static const char *const pfx_mamba2[] = {"backbone.", "model.", "", NULL};
    static const char *const pfx_nemo[] = {"model.", "backbone.", "", NULL};
    static const char *const pfx_megatron[] = {"", NULL};
    const char *const *prefixes = fam == EM_HF_NEMOTRON_H ? pfx_nemo : fam == EM_HF_MEGATRON ? pfx_megatron
                                                                                           : pfx_mamba2;
    const em_pack_name *names = fam == EM_HF_MEGATRON ? em_megatron_names : hf_names;
    size_t n_names = fam == EM_HF_MEGATRON ? em_megatron_n_names : sizeof hf_names / sizeof hf_names[0];
    size_t n_src = em_st_count(st);
    unsigned char *used = calloc(n_src ? n_src : 1, 1);
    if (!used) return em_fail(EM_ERR_OUT_OF_MEMORY, "em-pack: out of memory");

    em_status s = EM_OK;
    for (uint32_t i = 0; i < p->n && s == EM_OK; i++) {
        pack_item *it = &p->items[i];
        if (it->role == PACK_ROLE_SCALE) continue; /* made from the matrix before it */
        char tried[256];
        const em_st_tensor *src = resolve_one(st, it, names, n_names, prefixes, &it->xf, tried, sizeof tried);
        if (!tried[0]) {
            s = em_fail(EM_ERR_INTERNAL, "em-pack: no HF name for blob tensor %s (kind '%c')", it->t.name, it->kind);
        } else if (!src) {
            s = em_fail(EM_ERR_NOT_FOUND, "checkpoint has no tensor %s (needed for blob tensor %s)", tried, it->t.name);
        } else if (!shape_ok(it, src, c)) {
            char got[160], want[160];
            int conv = !strcmp(it->field, "conv_w"), qkv = it->xf >= EM_XF_QKV_Q;
            uint64_t w[3] = {qkv ? qkv_rows(c) : it->t.shape[0], 1, it->t.shape[1]};
            if (qkv) w[1] = it->t.shape[1];
            s = em_fail(EM_ERR_FORMAT, "%s: tensor %s has shape %s, expected %s", src->file, src->name,
                        em_st_shape_str(src->shape, src->n_dims, got, sizeof got),
                        conv ? em_st_shape_str(w, 3, want, sizeof want)
                        : qkv ? em_st_shape_str(w, 2, want, sizeof want)
                             : em_st_shape_str(it->t.shape, it->t.n_dims, want, sizeof want));
        } else if (src->dtype != EM_ST_F32 && src->dtype != EM_ST_BF16 && src->dtype != EM_ST_F16 &&
                   src->dtype != EM_ST_F64) {
            s = em_fail(EM_ERR_FORMAT, "%s: tensor %s has dtype %s, expected a float type (F32, BF16, F16, F64)",
                        src->file, src->name, em_st_dtype_name(src->dtype));
        } else {
            it->src = src;
            used[em_st_index(st, src)] = 1;
        }
    }
    /* A tied head needs no lm_head, but a checkpoint that still carries it is not "unknown". */
    const em_st_tensor *lm = em_st_find(st, fam == EM_HF_MEGATRON ? "output_layer.weight" : "lm_head.weight");
    if (lm) used[em_st_index(st, lm)] = 1;

    /* Tensors nobody asked for: a warning that lists them (a sign of a config/checkpoint mismatch). */
    uint32_t n_un = 0;
    char list[600] = "";
    size_t o = 0;
    for (size_t i = 0; i < n_src && s == EM_OK; i++) {
        if (used[i]) continue;
        size_t nl = strlen(em_st_at(st, i)->name);   /* Transformer Engine metadata, not a weight */
        if (nl >= 13 && !strcmp(em_st_at(st, i)->name + nl - 13, "._extra_state")) continue;
        if (n_un < 8 && o < sizeof list)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", n_un ? ", " : "", em_st_at(st, i)->name);
        n_un++;
    }
    if (n_un)
        EM_LOG_W("em-pack: %u checkpoint tensor%s not packed (unknown to this model): %s%s", n_un, n_un > 1 ? "s" : "",
                 list, n_un > 8 ? ", ..." : "");
    *n_unused = n_un;
    free(used);
    return s;
}

// ---- 3. stream -------------------------------------------------------------------------------------------

typedef struct pack_stream {
    em_blob_writer *w;
    float *fbuf;                /* [PACK_CHUNK] f32 staging */
    void *obuf;                 /* [PACK_CHUNK] output elements (f32, bf16 or int8) */
    float *scales;              /* [plan max_i8_rows]: the scales of the int8 matrix being written, written next */
    uint64_t done, total;
    const em_pack_options *o;
} pack_stream;

static em_status stream_write(pack_stream *ps, const pack_item *it, const void *bytes, uint64_t size) {
    em_status s = em_blob_writer_write(ps->w, bytes, size);
    if (s != EM_OK) {
        char msg[512];   /* copied: em_fail writes the buffer em_last_error() returns */
        snprintf(msg, sizeof msg, "%s", em_last_error());
        return em_fail(s, "writing tensor %s: %s", it->t.name, msg);
    }
    ps->done += size;
    if (ps->o->progress) ps->o->progress(ps->done, ps->total, ps->o->progress_user);
    return EM_OK;
}

/* Source elements [off, off+n) of s as f32 (exact for F32/BF16/F16; F64 rounds). */
static void load_f32(const em_st_tensor *s, uint64_t off, size_t n, float *dst) {
    const uint8_t *b = s->data;
    switch (s->dtype) {
    case EM_ST_F32: memcpy(dst, b + off * 4, n * 4); break;
    case EM_ST_BF16: for (size_t i = 0; i < n; i++) dst[i] = em_bf16_to_f32(em_ld16(b + (off + i) * 2)); break;
    case EM_ST_F16: for (size_t i = 0; i < n; i++) dst[i] = em_f16_to_f32(em_ld16(b + (off + i) * 2)); break;
    case EM_ST_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            uint64_t u = em_ld64(b + (off + i) * 8);
            memcpy(&d, &u, 8);
            dst[i] = (float)d;
        }
        break;
    default: EM_ASSERT(0 && "dtype checked in plan_resolve");
    }
}

static double load_f64(const em_st_tensor *s, uint64_t i) {
    if (s->dtype == EM_ST_F64) { double d; uint64_t u = em_ld64(s->data + i * 8); memcpy(&d, &u, 8); return d; }
    float f;
    load_f32(s, i, 1, &f);
    return (double)f;
}

/* fbuf[0, n) converted to the item's dtype and written. */
static em_status stream_flush(pack_stream *ps, const pack_item *it, size_t n) {
    if (it->t.dtype == EM_DTYPE_F32) return stream_write(ps, it, ps->fbuf, (uint64_t)n * 4);
    uint16_t *ob = ps->obuf;
    for (size_t i = 0; i < n; i++) ob[i] = em_f32_to_bf16(ps->fbuf[i]);   /* round to nearest even */
    return stream_write(ps, it, ob, (uint64_t)n * 2);
}

/* Megatron wq / wk / wv: each blob row is one row of the fused qkv matrix (em_megatron_qkv_row), gathered
 * through fbuf (rows longer than a chunk go in pieces). */
static em_status stream_qkv_tensor(pack_stream *ps, const pack_item *it, const em_blob_config *c) {
    const em_st_tensor *s = it->src;
    uint64_t rows = it->t.shape[0], cols = it->t.shape[1];
    size_t fill = 0;
    for (uint64_t r = 0; r < rows; r++) {
        uint64_t src_off = em_megatron_qkv_row(it->xf, r, c->attn_n_head, c->attn_n_kv_head, c->attn_head_dim) * cols;
        for (uint64_t col = 0; col < cols;) {
            size_t n = (size_t)(cols - col < PACK_CHUNK - fill ? cols - col : PACK_CHUNK - fill);
            load_f32(s, src_off + col, n, ps->fbuf + fill);
            fill += n;
            col += n;
            if (fill == PACK_CHUNK) { EM_TRY(stream_flush(ps, it, fill)); fill = 0; }
        }
    }
    return fill ? stream_flush(ps, it, fill) : EM_OK;
}

/* An int8-row matrix: each row (a Megatron qkv row gathered like stream_qkv_tensor's) loaded as f32 into fbuf,
 * quantized into obuf, its scale kept in ps->scales for the scale tensor that follows. */
static em_status stream_i8_tensor(pack_stream *ps, const pack_item *it, const em_blob_config *c) {
    const em_st_tensor *s = it->src;
    const uint64_t rows = it->t.shape[0], cols = it->t.shape[1];
    int8_t *ob = ps->obuf;
    const size_t cap = (size_t)PACK_CHUNK * sizeof(float); /* obuf bytes */
    size_t fill = 0;
    for (uint64_t r = 0; r < rows; r++) {
        const uint64_t src_row = it->xf >= EM_XF_QKV_Q ? em_megatron_qkv_row(it->xf, r, c->attn_n_head,
                                                                              c->attn_n_kv_head, c->attn_head_dim)
                                                       : r;
        load_f32(s, src_row * cols, (size_t)cols, ps->fbuf); /* cols < PACK_CHUNK (plan_push) */
        if (fill + cols > cap) {
            EM_TRY(stream_write(ps, it, ob, fill));
            fill = 0;
        }
        em_status st = em_quant_i8_row_f32(ps->fbuf, (uint32_t)cols, ob + fill, &ps->scales[r]);
        if (st != EM_OK) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s", em_last_error());
            return em_fail(st, "%s: tensor %s (blob tensor %s), row %llu: %s", s->file, s->name, it->t.name,
                           (unsigned long long)src_row, msg);
        }
        fill += cols;
    }
    return fill ? stream_write(ps, it, ob, fill) : EM_OK;
}

static em_status stream_checkpoint_tensor(pack_stream *ps, const pack_item *it, const em_blob_config *c) {
    const em_st_tensor *s = it->src;
    if (it->role == PACK_ROLE_I8) return stream_i8_tensor(ps, it, c);
    if (it->role == PACK_ROLE_SCALE) return stream_write(ps, it, ps->scales, it->n_elems * sizeof(float));
    if (it->xf >= EM_XF_QKV_Q) return stream_qkv_tensor(ps, it, c);
    int same = it->xf == XF_COPY && ((s->dtype == EM_ST_F32 && it->t.dtype == EM_DTYPE_F32) ||
                                     (s->dtype == EM_ST_BF16 && it->t.dtype == EM_DTYPE_BF16));
    size_t esz = em_dtype_size(it->t.dtype);
    for (uint64_t off = 0; off < it->n_elems; off += PACK_CHUNK) {
        size_t n = (size_t)(it->n_elems - off < PACK_CHUNK ? it->n_elems - off : PACK_CHUNK);
        if (same) {   /* already in the blob's dtype: straight from the mapping */
            EM_TRY(stream_write(ps, it, s->data + off * esz, (uint64_t)n * esz));
            continue;
        }
        if (it->xf == XF_NEG_EXP) {
            /* A = -exp(A_log) once here, in double, so the runtime never takes exp of a constant per token
             * and every backend starts from the same correctly rounded f32 (HF: -torch.exp(A_log.float())). */
            for (size_t i = 0; i < n; i++) ps->fbuf[i] = (float)(-exp(load_f64(s, off + i)));
        } else {
            load_f32(s, off, n, ps->fbuf);
        }
        if (it->t.dtype == EM_DTYPE_F32) {
            EM_TRY(stream_write(ps, it, ps->fbuf, (uint64_t)n * 4));
        } else {
            uint16_t *ob = ps->obuf;
            for (size_t i = 0; i < n; i++) ob[i] = em_f32_to_bf16(ps->fbuf[i]);   /* round to nearest even */
            EM_TRY(stream_write(ps, it, ob, (uint64_t)n * 2));
        }
    }
    return EM_OK;
}

/*
 * Random weights are produced as fast as one core can hash (~0.8 GB/s of bf16) and written as fast as the
 * disk takes them; done one after the other, an 8B blob pays both. So a helper thread generates chunk k+1
 * while this thread writes chunk k (two buffers), and the total is close to the slower of the two.
 */
/* One chunk of one tensor: which item and element range (int8 items: whole rows). */
typedef struct ri_chunk { uint32_t item; uint64_t off; size_t n; } ri_chunk;

/* Chunk c's output bytes into buf (PACK_CHUNK floats of room): random values in the item's dtype; for an int8
 * item, the bf16-rounded random values of whole rows quantized (their scales into scales[row]); for a scale
 * item, the scales its matrix left (the chunks are produced in order, so they are all there). */
static void ri_produce(const pack_plan *p, const ri_chunk *c, uint64_t seed, uint32_t d_conv, float *scales,
                       void *buf) {
    const pack_item *it = &p->items[c->item];
    if (it->role == PACK_ROLE_SCALE) {
        memcpy(buf, scales + c->off, c->n * sizeof(float));
        return;
    }
    const em_ri_rule rule = em_ri_rule_for(it->field, it->t.n_dims, it->t.shape, d_conv);
    const uint64_t key = em_ri_key(seed, it->ri_index);
    if (it->role == PACK_ROLE_PLAIN) {
        em_ri_fill(&rule, key, c->off, c->n, (em_dtype)it->t.dtype, buf);
        return;
    }
    /* int8: em_ri_fill starts on an even element; a chunk of whole rows may start on an odd one */
    float *f = buf;
    const size_t shift = (size_t)(c->off & 1u);
    em_ri_fill(&rule, key, c->off - shift, c->n + shift, EM_DTYPE_F32, f);
    if (shift) memmove(f, f + 1, c->n * sizeof(float));
    const uint32_t cols = (uint32_t)it->t.shape[1];
    const uint64_t row0 = c->off / cols;
    int8_t *q = buf; /* row j's int8 go to bytes [j * cols, (j + 1) * cols): never past the f32 not yet read */
    for (size_t j = 0; j < c->n / cols; j++) {
        float *row = f + j * cols;
        for (uint32_t k = 0; k < cols; k++) /* the bf16 blob's values */
            row[k] = em_bf16_to_f32(em_f32_to_bf16(row[k]));
        (void)em_quant_i8_row_f32(row, cols, q + j * cols, &scales[row0 + j]); /* random values are finite */
    }
}

/*
 * Random weights are produced as fast as one core can hash (~0.8 GB/s of bf16) and written as fast as the
 * disk takes them; done one after the other, an 8B blob pays both. So a helper thread generates chunk k+1
 * while this thread writes chunk k (two buffers), and the total is close to the slower of the two.
 */
typedef struct ri_worker {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    const pack_plan *p;
    ri_chunk c;
    uint64_t seed;
    uint32_t d_conv;
    float *scales;
    void *buf;
    int busy, quit;
} ri_worker;

static void *ri_worker_main(void *arg) {
    ri_worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->busy && !w->quit) pthread_cond_wait(&w->cv, &w->mu);
        if (w->quit) break;
        pthread_mutex_unlock(&w->mu);
        ri_produce(w->p, &w->c, w->seed, w->d_conv, w->scales, w->buf);
        pthread_mutex_lock(&w->mu);
        w->busy = 0;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static int ri_next(const pack_plan *p, ri_chunk *c) {
    c->off += c->n;
    while (c->item < p->n && c->off >= p->items[c->item].n_elems) { c->item++; c->off = 0; }
    if (c->item >= p->n) return 0;
    const pack_item *it = &p->items[c->item];
    uint64_t left = it->n_elems - c->off, most = PACK_CHUNK;
    if (it->role == PACK_ROLE_I8) most = (PACK_CHUNK - 1) / it->t.shape[1] * it->t.shape[1]; /* whole rows */
    c->n = (size_t)(left < most ? left : most);
    return 1;
}

static em_status stream_random_all(pack_stream *ps, const pack_plan *p, const em_blob_config *cfg) {
    void *buf[2] = {ps->fbuf, ps->obuf};   /* both PACK_CHUNK * 4 bytes */
    ri_worker w;
    memset(&w, 0, sizeof w);
    int threaded = pthread_mutex_init(&w.mu, NULL) == 0;
    if (threaded && pthread_cond_init(&w.cv, NULL) != 0) { pthread_mutex_destroy(&w.mu); threaded = 0; }
    if (threaded && pthread_create(&w.th, NULL, ri_worker_main, &w) != 0) {
        pthread_cond_destroy(&w.cv);
        pthread_mutex_destroy(&w.mu);
        threaded = 0;
    }

    em_status s = EM_OK;
    ri_chunk cur = {0, 0, 0}, nxt;
    int have = ri_next(p, &cur), b = 0;
    if (have) ri_produce(p, &cur, ps->o->seed, cfg->d_conv, ps->scales, buf[0]); /* the first chunk, here */
    while (have && s == EM_OK) {
        nxt = cur;
        int more = ri_next(p, &nxt);
        if (more) {   /* generate the next chunk into the other buffer, on the helper if there is one */
            if (threaded) {
                pthread_mutex_lock(&w.mu);
                w.p = p; w.c = nxt; w.seed = ps->o->seed; w.d_conv = cfg->d_conv; w.scales = ps->scales;
                w.buf = buf[b ^ 1]; w.busy = 1;
                pthread_cond_broadcast(&w.cv);
                pthread_mutex_unlock(&w.mu);
            } else {
                ri_produce(p, &nxt, ps->o->seed, cfg->d_conv, ps->scales, buf[b ^ 1]);
            }
        }
        const pack_item *it = &p->items[cur.item];
        s = stream_write(ps, it, buf[b], (uint64_t)cur.n * em_dtype_size(it->t.dtype));
        if (threaded) {   /* the helper must be done with buf[b ^ 1] before it is written or reused */
            pthread_mutex_lock(&w.mu);
            while (w.busy) pthread_cond_wait(&w.cv, &w.mu);
            pthread_mutex_unlock(&w.mu);
        }
        cur = nxt;
        have = more;
        b ^= 1;
    }
    if (threaded) {
        pthread_mutex_lock(&w.mu);
        w.quit = 1;
        pthread_cond_broadcast(&w.cv);
        pthread_mutex_unlock(&w.mu);
        pthread_join(w.th, NULL);
        pthread_cond_destroy(&w.cv);
        pthread_mutex_destroy(&w.mu);
    }
    return s;
}

/* Declares everything, then streams it; the writer is finished on success and aborted (file removed) on
 * any failure. */
static em_status stream_all(const pack_plan *p, const em_blob_config *cfg, const void *tok, uint64_t tok_size,
                            const char *out_path, const em_pack_options *o, int random) {
    pack_stream ps;
    memset(&ps, 0, sizeof ps);
    ps.o = o;
    ps.total = p->data_bytes;
    ps.fbuf = malloc(PACK_CHUNK * sizeof(float));
    ps.obuf = malloc(PACK_CHUNK * sizeof(float));
    ps.scales = malloc((size_t)(p->max_i8_rows ? p->max_i8_rows : 1) * sizeof(float));
    if (!ps.fbuf || !ps.obuf || !ps.scales) {
        free(ps.fbuf);
        free(ps.obuf);
        free(ps.scales);
        return em_fail(EM_ERR_OUT_OF_MEMORY, "em-pack: out of memory");
    }
    em_status s = em_blob_writer_open(out_path, &ps.w);
    if (s == EM_OK) s = em_blob_writer_set_config(ps.w, cfg);
    if (s == EM_OK && tok_size) s = em_blob_writer_set_tokenizer(ps.w, tok, tok_size);
    for (uint32_t i = 0; i < p->n && s == EM_OK; i++) s = em_blob_writer_add_tensor(ps.w, &p->items[i].t, NULL);
    if (s == EM_OK && random) s = stream_random_all(&ps, p, cfg);
    for (uint32_t i = 0; i < p->n && s == EM_OK && !random; i++) s = stream_checkpoint_tensor(&ps, &p->items[i], cfg);
    if (s == EM_OK) s = em_blob_writer_finish(ps.w);
    else if (ps.w) em_blob_writer_abort(ps.w);
    free(ps.fbuf);
    free(ps.obuf);
    free(ps.scales);
    return s;
}

// ---- tokenizer and chat template --------------------------------------------------------------------------

typedef struct pack_extras {
    char *tok;                  /* tokenizer file bytes */
    size_t tok_size;
    em_tokenizer_kind tok_kind;
    char *chat_template;        /* NUL-terminated, or NULL */
} pack_extras;

static int file_exists(const char *path) { struct stat sb; return stat(path, &sb) == 0 && S_ISREG(sb.st_mode); }

/* SentencePiece models are protobuf; HF tokenizers are JSON: the extension decides, else the first byte. */
static em_tokenizer_kind tok_kind_of(const char *path, const char *bytes, size_t n) {
    size_t l = strlen(path);
    if (l >= 6 && !strcmp(path + l - 6, ".model")) return EM_TOK_SPM;
    if (l >= 5 && !strcmp(path + l - 5, ".json")) return EM_TOK_BPE;
    for (size_t i = 0; i < n; i++) {
        if (bytes[i] == ' ' || bytes[i] == '\n' || bytes[i] == '\r' || bytes[i] == '\t') continue;
        return bytes[i] == '{' ? EM_TOK_BPE : EM_TOK_SPM;
    }
    return EM_TOK_SPM;
}

static em_status load_extras(const char *dir, const em_pack_options *o, pack_extras *x) {
    char path[4200];
    const char *tok = o->tokenizer;
    if (!tok && !o->no_tokenizer && dir) {
        /* SentencePiece first: a tokenizer.json converted from a .model is not byte-level BPE. */
        snprintf(path, sizeof path, "%s/tokenizer.model", dir);
        if (!file_exists(path)) snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        if (file_exists(path)) tok = path;
    }
    if (tok && !o->no_tokenizer) {
        EM_TRY(em_pack_read_file(tok, PACK_TOKENIZER_MAX, &x->tok, &x->tok_size));
        if (x->tok_size == 0) return em_fail(EM_ERR_FORMAT, "%s: tokenizer file is empty", tok);
        x->tok_kind = tok_kind_of(tok, x->tok, x->tok_size);
        EM_LOG_I("em-pack: tokenizer %s (%zu bytes, %s)", tok, x->tok_size, x->tok_kind == EM_TOK_SPM ? "spm" : "bpe");
    }
    if (!dir) return EM_OK;
    /* Chat template: chat_template.jinja (transformers 5), else tokenizer_config.json's "chat_template". */
    char *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    if (file_exists(path) && em_pack_read_file(path, EM_BLOB_MAX_STRING, &text, &len) == EM_OK) {
        x->chat_template = text;
        return EM_OK;
    }
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (file_exists(path) && em_pack_read_file(path, 64u << 20, &text, &len) == EM_OK) {
        cJSON *root = cJSON_ParseWithLength(text, len);
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
        if (cJSON_IsString(ct) && strlen(ct->valuestring) <= EM_BLOB_MAX_STRING)
            x->chat_template = strdup(ct->valuestring);
        else if (ct) EM_LOG_W("em-pack: %s: chat_template is not a single string of at most 1 MiB: not stored", path);
        cJSON_Delete(root);
        free(text);
    }
    em_clear_error();   /* a missing or broken optional file is not an error */
    return EM_OK;
}

static void free_extras(pack_extras *x) { free(x->tok); free(x->chat_template); memset(x, 0, sizeof *x); }

// ---- public -------------------------------------------------------------------------------------------------

static void finish_stats(em_pack_stats *st, const pack_plan *p, const char *out_path, double t0, uint32_t n_unused) {
    if (!st) return;
    struct stat sb;
    st->n_tensors = p->n;
    st->data_bytes = p->data_bytes;
    st->file_bytes = stat(out_path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    st->n_unused = n_unused;
    st->seconds = pack_now() - t0;
}

/* src -> (directory holding config.json). Returns a heap string. */
static char *source_dir(const char *src) {
    struct stat sb;
    if (stat(src, &sb) == 0 && S_ISDIR(sb.st_mode)) return strdup(src);
    const char *slash = strrchr(src, '/');
    if (!slash) return strdup(".");
    size_t n = (size_t)(slash - src);
    char *d = malloc(n + 2);
    if (d) { memcpy(d, src, n ? n : 1); d[n ? n : 1] = 0; }
    return d;
}

em_status em_pack_checkpoint(const char *src, const char *out_path, const em_pack_options *opts, em_pack_stats *stats) {
    if (!src || !out_path) return em_fail(EM_ERR_INVALID_ARG, "em_pack_checkpoint: NULL path");
    em_pack_options o = opts ? *opts : em_pack_default_options();
    if (o.dtype != EM_DTYPE_BF16 && o.dtype != EM_DTYPE_F32 && o.dtype != EM_DTYPE_I8)
        return em_fail(EM_ERR_INVALID_ARG, "em-pack: dtype %s is not a pack dtype (bf16, f32, i8)",
                       em_dtype_name(o.dtype));
    double t0 = pack_now();
    struct stat sb;
    if (stat(src, &sb) != 0) return em_fail(EM_ERR_NOT_FOUND, "%s: no such file or directory", src);
    char *dir = source_dir(src);
    if (!dir) return em_fail(EM_ERR_OUT_OF_MEMORY, "em-pack: out of memory");
    char cfg_path[4200];
    snprintf(cfg_path, sizeof cfg_path, "%s/" EM_MEGATRON_ARGS_FILE, dir);
    int megatron = o.format == EM_PACK_FORMAT_MEGATRON ||
                   (o.format == EM_PACK_FORMAT_AUTO && stat(cfg_path, &sb) == 0 && S_ISREG(sb.st_mode));
    if (!megatron) snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);

    em_hf_config *h = calloc(1, sizeof *h);
    em_st *st = NULL;
    pack_plan p = {0};
    pack_extras x = {0};
    uint32_t n_unused = 0;
    em_status s = h ? EM_OK : em_fail(EM_ERR_OUT_OF_MEMORY, "em-pack: out of memory");
    const char *head_name = megatron ? "output_layer.weight" : "lm_head.weight";
    if (s == EM_OK && !megatron) {
        s = em_hf_config_load(cfg_path, h);
        if (s == EM_OK) s = em_st_open(src, &st);
    } else if (s == EM_OK) {
        /* Megatron: the vocabulary is the embedding's rows (the padded vocab), so the tensors come first. */
        s = em_st_open(src, &st);
        const em_st_tensor *e = s == EM_OK ? em_st_find(st, em_megatron_names[0].src) : NULL;
        if (s == EM_OK && (!e || e->n_dims != 2))
            s = em_fail(EM_ERR_NOT_FOUND, "%s: no 2-d tensor %s: not a Megatron checkpoint", src,
                        em_megatron_names[0].src);
        if (s == EM_OK) s = em_megatron_config_load(cfg_path, e->shape[0], h);
    }
    if (s == EM_OK && !(h->cfg.flags & EM_CFG_TIED_EMBEDDINGS) && !em_st_find(st, head_name)) {
        /* HF drops lm_head from checkpoints whose head is tied, whatever the config says. */
        EM_LOG_I("em-pack: %s has no %s: the output head is tied to the embedding", src, head_name);
        h->cfg.flags |= EM_CFG_TIED_EMBEDDINGS;
    }
    if (s == EM_OK) s = load_extras(dir, &o, &x);
    em_blob_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (s == EM_OK) {
        cfg = em_hf_blob_config(h);
        cfg.tokenizer_kind = x.tok ? (uint32_t)x.tok_kind : (uint32_t)EM_TOK_NONE;
        if (x.chat_template) {
            cfg.chat_template.ptr = x.chat_template;
            cfg.chat_template.len = (uint32_t)strlen(x.chat_template);
        }
        s = plan_build(&p, &cfg, o.dtype);
    }
    if (s == EM_OK) s = plan_resolve(&p, st, h->family, &cfg, &n_unused);
    if (s == EM_OK) s = stream_all(&p, &cfg, x.tok, x.tok_size, out_path, &o, 0);
    if (s == EM_OK) finish_stats(stats, &p, out_path, t0, n_unused);
    free(p.items);
    free_extras(&x);
    em_st_close(st);
    free(h);
    free(dir);
    return s;
}

em_status em_pack_random(const char *config_path, const char *out_path, const em_pack_options *opts,
                         em_pack_stats *stats) {
    if (!config_path || !out_path) return em_fail(EM_ERR_INVALID_ARG, "em_pack_random: NULL path");
    em_pack_options o = opts ? *opts : em_pack_default_options();
    if (o.dtype != EM_DTYPE_BF16 && o.dtype != EM_DTYPE_F32 && o.dtype != EM_DTYPE_I8)
        return em_fail(EM_ERR_INVALID_ARG, "em-pack: dtype %s is not a pack dtype (bf16, f32, i8)",
                       em_dtype_name(o.dtype));
    double t0 = pack_now();
    em_hf_config *h = calloc(1, sizeof *h);
    pack_plan p = {0};
    pack_extras x = {0};
    em_status s = h ? em_hf_config_load(config_path, h) : em_fail(EM_ERR_OUT_OF_MEMORY, "em-pack: out of memory");
    o.no_tokenizer = o.tokenizer ? 0 : 1;   /* a random model takes a tokenizer only when one is named */
    if (s == EM_OK) s = load_extras(NULL, &o, &x);
    em_blob_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (s == EM_OK) {
        char name[sizeof h->name];
        snprintf(name, sizeof name, "%s", h->name);
        snprintf(h->name, sizeof h->name, "random-%.80s-seed%llu", name[0] ? name : "model",
                 (unsigned long long)o.seed);
        cfg = em_hf_blob_config(h);
        cfg.tokenizer_kind = x.tok ? (uint32_t)x.tok_kind : (uint32_t)EM_TOK_NONE;
        s = plan_build(&p, &cfg, o.dtype);
    }
    if (s == EM_OK) s = stream_all(&p, &cfg, x.tok, x.tok_size, out_path, &o, 1);
    if (s == EM_OK) finish_stats(stats, &p, out_path, t0, 0);
    free(p.items);
    free_extras(&x);
    free(h);
    return s;
}

/* --requantize: the blob's tensors become the sources of an int8 plan built from its own config. Each blob
 * tensor is presented as a safetensors tensor (em_st_tensor over the mapped bytes), so the checkpoint stream
 * (load_f32, the same-dtype copy) does the rest. */
em_status em_pack_requantize(const char *blob_path, const char *out_path, const em_pack_options *opts,
                             em_pack_stats *stats) {
    if (!blob_path || !out_path) return em_fail(EM_ERR_INVALID_ARG, "em_pack_requantize: NULL path");
    em_pack_options o = opts ? *opts : em_pack_default_options();
    o.dtype = EM_DTYPE_I8;
    double t0 = pack_now();
    em_blob b;
    em_blob_open_options bo = {1}; /* every checksum: the input is read whole anyway */
    EM_TRY(em_blob_open_file(blob_path, &bo, &b));
    pack_plan p = {0};
    em_st_tensor *src = NULL;
    uint32_t n_unused = 0;
    em_status s = EM_OK;
    if (b.flags & EM_BLOB_FLAG_SHARDED)
        s = em_fail(EM_ERR_UNSUPPORTED, "%s: a sharded blob cannot be requantized (pack the checkpoint instead)",
                    blob_path);
    if (s == EM_OK) s = plan_build(&p, &b.config, EM_DTYPE_I8);
    if (s == EM_OK && !(src = calloc(p.n ? p.n : 1, sizeof *src)))
        s = em_fail(EM_ERR_OUT_OF_MEMORY, "em-pack: out of memory");
    for (uint32_t i = 0; i < p.n && s == EM_OK; i++) {
        pack_item *it = &p.items[i];
        if (it->role == PACK_ROLE_SCALE) continue;
        int bi = em_blob_find(&b, it->t.name);
        if (bi < 0) {
            s = em_fail(EM_ERR_NOT_FOUND, "%s: no tensor %s (its config needs it)", blob_path, it->t.name);
            break;
        }
        const em_blob_tensor *t = &b.tensors[bi];
        if (t->dtype == EM_DTYPE_I8) {
            s = em_fail(EM_ERR_INVALID_ARG, "%s: tensor %s is already int8: --requantize takes a bf16 or f32 blob",
                        blob_path, t->name);
            break;
        }
        if (t->dtype != EM_DTYPE_F32 && t->dtype != EM_DTYPE_BF16) {
            s = em_fail(EM_ERR_FORMAT, "%s: tensor %s has dtype %s (want f32 or bf16)", blob_path, t->name,
                        em_dtype_name(t->dtype));
            break;
        }
        int same = t->n_dims == it->t.n_dims;
        for (uint32_t d = 0; d < t->n_dims && same; d++) same = t->shape[d] == it->t.shape[d];
        if (!same) {
            char got[160], want[160];
            s = em_fail(EM_ERR_FORMAT, "%s: tensor %s has shape %s, its config says %s", blob_path, t->name,
                        em_st_shape_str(t->shape, t->n_dims, got, sizeof got),
                        em_st_shape_str(it->t.shape, it->t.n_dims, want, sizeof want));
            break;
        }
        em_st_tensor *st = &src[i];
        st->name = t->name;
        st->file = blob_path;
        st->dtype = t->dtype == EM_DTYPE_F32 ? EM_ST_F32 : EM_ST_BF16;
        st->n_dims = t->n_dims;
        for (uint32_t d = 0; d < t->n_dims; d++) st->shape[d] = t->shape[d];
        st->n_elems = it->n_elems;
        st->data = b.data + t->offset;
        st->size = t->size;
        it->src = st;
        it->xf = XF_COPY; /* a blob holds A itself, and wq / wk / wv already split */
    }
    if (s == EM_OK) {
        /* every plan item found its own tensor (names are unique): the rest were not taken */
        n_unused = b.n_tensors > p.n_plain ? b.n_tensors - p.n_plain : 0;
        if (n_unused)
            EM_LOG_W("em-pack: %s: %u tensor%s not in the model's table were not copied", blob_path, n_unused,
                     n_unused > 1 ? "s" : "");
    }
    if (s == EM_OK) s = stream_all(&p, &b.config, b.tokenizer, b.tokenizer_size, out_path, &o, 0);
    if (s == EM_OK) finish_stats(stats, &p, out_path, t0, n_unused);
    free(src);
    free(p.items);
    em_blob_close(&b);
    return s;
}
