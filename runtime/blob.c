/*
 * blob.c — the blob format v1 reader: validates an untrusted .emb file (mapped, or a caller buffer) and decodes
 * its header, config and tensor table into an em_blob.
 *
 * Why: the blob is the whole deployment, and it comes from outside. Every offset, size, count and string is
 * bounds- and overflow-checked before it is used, so that no input crashes or reads out of bounds; each
 * failure gets its own EM_ERR_BLOB_* status and a message naming the values found and expected.
 * The byte layout is docs/blob-format.md; blob.h is its C form. The writer is blob_write.c.
 *
 * How it checks, in order (each step trusts only what the steps before it proved):
 *   1. header: size >= 8, magic, size >= 256, version, header checksum, header size, flags, reserved zeros;
 *   2. sections: file size field vs the real size, each section inside the file, in order and not overlapping,
 *      data 4096-aligned, zero padding between sections, section checksums, content id;
 *   3. config: fixed slots, string (offset, length) pairs, value sanity (em_blob_config);
 *   4. table: each record (name, dtype, dims, size, enums, shard, reserved, offset), then duplicate names and
 *      overlapping tensors over sorted copies, then the INT8 scale links (em_check_scales), then (verify_data)
 *      every tensor's XXH3-64.
 * Tests: tests/test_blob_roundtrip.c, tests/test_blob_corrupt.c (ctest -L blob).
 */
#include "blob.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "blob_layout.h"
#include "util.h"

// ---- on-disk layout (docs/blob-format.md) ---------------------------------------------------------------------------

/* Header, tensor record and config slot offsets: runtime/blob_layout.h. */


/* Sanity limit for config dims: no model dim is this large; it also keeps tensors.h's u32 products small. */
#define EM_CFG_DIM_MAX (1u << 24)

// ---- small helpers --------------------------------------------------------------------------------------------------

size_t em_dtype_size(uint32_t dtype) {
    switch (dtype) {
    case EM_DTYPE_F32: return 4;
    case EM_DTYPE_BF16: return 2;
    case EM_DTYPE_F16: return 2;
    case EM_DTYPE_I8: return 1;
    case EM_DTYPE_I32: return 4;
    }
    return 0;
}

const char *em_dtype_name(uint32_t dtype) {
    switch (dtype) {
    case EM_DTYPE_F32: return "f32";
    case EM_DTYPE_BF16: return "bf16";
    case EM_DTYPE_F16: return "f16";
    case EM_DTYPE_I8: return "i8";
    case EM_DTYPE_I32: return "i32";
    }
    return "?";
}

static int em_all_zero(const uint8_t *p, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

static float em_ldf32(const uint8_t *p) { uint32_t u = em_ld32(p); float f; memcpy(&f, &u, 4); return f; }
static int32_t em_ldi32(const uint8_t *p) { uint32_t u = em_ld32(p); int32_t i; memcpy(&i, &u, 4); return i; }

static const char *em_section_names[4] = {"config", "tokenizer", "table", "data"};

// ---- header and sections --------------------------------------------------------------------------------------------

/* Section extents as read from the header, in file order. */
typedef struct em_sections { uint64_t off[4], size[4]; } em_sections;
enum { EM_SEC_CONFIG = 0, EM_SEC_TOKENIZER = 1, EM_SEC_TABLE = 2, EM_SEC_DATA = 3 };

/* Step 1-2: the header's own fields, then the section extents it declares. On success every section lies inside
 * [0, size), in order, without overlap, the gaps between them are zero, and the table size matches the count. */
static em_status em_check_header(const uint8_t *b, uint64_t size, em_blob *blob, em_sections *s) {
    if (size < 8) return em_fail(EM_ERR_BLOB_TRUNCATED, "blob: file is %llu bytes, shorter than the 8-byte magic",
                                 (unsigned long long)size);
    if (memcmp(b, EM_BLOB_MAGIC, 8) != 0)
        return em_fail(EM_ERR_BLOB_MAGIC, "blob: bad magic %02x %02x %02x %02x %02x %02x %02x %02x "
                       "(want \"EMBLOB\\0\\1\"): not an edgemamba blob",
                       b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]);
    if (size < EM_BLOB_HEADER_SIZE)
        return em_fail(EM_ERR_BLOB_TRUNCATED, "blob: file is %llu bytes, shorter than the %u-byte header",
                       (unsigned long long)size, EM_BLOB_HEADER_SIZE);
    /* The version comes before the checksum: another version may lay its header out differently. */
    uint32_t version = em_ld32(b + EM_H_VERSION);
    if (version != EM_BLOB_VERSION)
        return em_fail(EM_ERR_BLOB_VERSION, "blob: format version %u, this library reads version %u", version,
                       EM_BLOB_VERSION);
    uint64_t want = em_ld64(b + EM_H_HEADER_SUM), got = XXH3_64bits(b, EM_H_HEADER_SUM);
    if (got != want && !EM_FUZZ_SKIP_SUMS)
        return em_fail(EM_ERR_BLOB_CHECKSUM, "blob: header checksum %016llx, stored %016llx",
                       (unsigned long long)got, (unsigned long long)want);
    uint32_t hsize = em_ld32(b + EM_H_HEADER_SIZE);
    if (hsize != EM_BLOB_HEADER_SIZE)
        return em_fail(EM_ERR_BLOB_CORRUPT, "blob: header size %u, want %u", hsize, EM_BLOB_HEADER_SIZE);
    uint32_t flags = em_ld32(b + EM_H_FLAGS);
    if (flags & ~EM_BLOB_FLAG_SHARDED)
        return em_fail(EM_ERR_BLOB_CORRUPT, "blob: unknown header flags 0x%x (known: 0x%x)", flags,
                       EM_BLOB_FLAG_SHARDED);
    if (em_ld32(b + EM_H_RESERVED0) || em_ld32(b + EM_H_RESERVED1) ||
        !em_all_zero(b + EM_H_RESERVED2, EM_H_HEADER_SUM - EM_H_RESERVED2))
        return em_fail(EM_ERR_BLOB_CORRUPT, "blob: reserved header bytes are not zero");

    /* File size: shorter than the header says is truncation; longer means trailing bytes nobody accounts for. */
    uint64_t fsize = em_ld64(b + EM_H_FILE_SIZE);
    if (fsize > size)
        return em_fail(EM_ERR_BLOB_TRUNCATED, "blob: file is %llu bytes, its header says %llu",
                       (unsigned long long)size, (unsigned long long)fsize);
    if (fsize < size)
        return em_fail(EM_ERR_BLOB_CORRUPT, "blob: file is %llu bytes, its header says %llu (trailing bytes)",
                       (unsigned long long)size, (unsigned long long)fsize);

    /* Sections: inside the file, then in order (header, config, tokenizer, table, data) without overlap. */
    uint64_t prev_end = EM_BLOB_HEADER_SIZE;
    const char *prev = "header";
    for (int i = 0; i < 4; i++) {
        s->off[i] = em_ld64(b + EM_H_CONFIG_OFF + 16 * i);
        s->size[i] = em_ld64(b + EM_H_CONFIG_OFF + 16 * i + 8);
        uint64_t end;
        if (!em_add_u64(s->off[i], s->size[i], &end) || end > size)
            return em_fail(EM_ERR_BLOB_BOUNDS, "blob: %s section at offset %llu + size %llu passes the end of the "
                           "file (%llu bytes)", em_section_names[i], (unsigned long long)s->off[i],
                           (unsigned long long)s->size[i], (unsigned long long)size);
        if (s->off[i] < prev_end)
            return em_fail(EM_ERR_BLOB_OVERLAP, "blob: %s section starts at %llu, before the end of the %s (%llu); "
                           "v1 sections are header, config, tokenizer, table, data, in that order",
                           em_section_names[i], (unsigned long long)s->off[i], prev, (unsigned long long)prev_end);
        if (i == EM_SEC_DATA && s->off[i] % EM_BLOB_ALIGN)
            return em_fail(EM_ERR_BLOB_CORRUPT, "blob: data section offset %llu is not a multiple of %u",
                           (unsigned long long)s->off[i], EM_BLOB_ALIGN);
        /* The bytes between two sections are padding: zero, so that no byte before the data goes unchecked
         * (a writer leaves at most EM_BLOB_ALIGN - 1 of them, before the data section). */
        if (!em_all_zero(b + prev_end, s->off[i] - prev_end))
            return em_fail(EM_ERR_BLOB_CORRUPT, "blob: nonzero padding in [%llu, %llu) before the %s section",
                           (unsigned long long)prev_end, (unsigned long long)s->off[i], em_section_names[i]);
        prev_end = end;
        prev = em_section_names[i];
    }
    if (prev_end != size)
        return em_fail(EM_ERR_BLOB_CORRUPT, "blob: data section ends at %llu, the file at %llu (trailing bytes)",
                       (unsigned long long)prev_end, (unsigned long long)size);

    /* Tensor count against the table size (the count is multiplied only after this bound). */
    uint32_t n = em_ld32(b + EM_H_TENSOR_COUNT);
    if (n > EM_BLOB_MAX_TENSORS)
        return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor count %u exceeds the limit %u", n, EM_BLOB_MAX_TENSORS);
    if ((uint64_t)n * EM_BLOB_TENSOR_RECORD != s->size[EM_SEC_TABLE])
        return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor count %u needs a %llu-byte table, the table section is "
                       "%llu bytes", n, (unsigned long long)n * EM_BLOB_TENSOR_RECORD,
                       (unsigned long long)s->size[EM_SEC_TABLE]);

    blob->version = version;
    blob->flags = flags;
    blob->n_tensors = n;
    return EM_OK;
}

/* Section checksums (config, tokenizer, table) and the content id over config + table. */
static em_status em_check_sums(const uint8_t *b, const em_sections *s, em_blob *blob) {
    static const int hdr_at[3] = {EM_H_CONFIG_SUM, EM_H_TOKENIZER_SUM, EM_H_TABLE_SUM};
    for (int i = 0; i < 3; i++) {
        uint64_t want = em_ld64(b + hdr_at[i]), got = XXH3_64bits(b + s->off[i], (size_t)s->size[i]);
        if (got != want && !EM_FUZZ_SKIP_SUMS)
            return em_fail(EM_ERR_BLOB_CHECKSUM, "blob: %s section checksum %016llx, stored %016llx",
                           em_section_names[i], (unsigned long long)got, (unsigned long long)want);
    }
    XXH3_state_t *st = XXH3_createState();
    if (!st) return em_fail(EM_ERR_OUT_OF_MEMORY, "blob: cannot allocate a hash state");
    XXH3_128bits_reset(st);
    XXH3_128bits_update(st, b + s->off[EM_SEC_CONFIG], (size_t)s->size[EM_SEC_CONFIG]);
    XXH3_128bits_update(st, b + s->off[EM_SEC_TABLE], (size_t)s->size[EM_SEC_TABLE]);
    XXH128_canonical_t id;
    XXH128_canonicalFromHash(&id, XXH3_128bits_digest(st));
    XXH3_freeState(st);
    if (memcmp(id.digest, b + EM_H_CONTENT_ID, 16) != 0 && !EM_FUZZ_SKIP_SUMS)
        return em_fail(EM_ERR_BLOB_CHECKSUM, "blob: content id does not match the config and table sections");
    memcpy(blob->content_id, id.digest, 16);
    return EM_OK;
}

// ---- config ---------------------------------------------------------------------------------------------------------

static uint32_t em_cfg_u32(const uint8_t *p) { return em_ld32(p); }
static int32_t em_cfg_i32(const uint8_t *p) { return em_ldi32(p); }
static float em_cfg_f32(const uint8_t *p) { return em_ldf32(p); }

/* Which layer kinds each arch may use (layer_pattern characters). */
static const char *em_arch_kinds(uint32_t arch) {
    switch (arch) {
    case EM_ARCH_MAMBA2: return "M";
    case EM_ARCH_HYBRID: return "M*-";
    case EM_ARCH_MAMBA1: return "m";
    case EM_ARCH_TRANSFORMER: return "*-";
    }
    return NULL;
}

/* One "dim must be in [1, EM_CFG_DIM_MAX]" check with the field's name in the message. */
#define EM_NEED_DIM(c, field, why)                                                                          \
    do {                                                                                                    \
        if ((c)->field == 0 || (c)->field > EM_CFG_DIM_MAX)                                                 \
            return em_fail(EM_ERR_BLOB_CONFIG, "blob: config " #field " = %u, want 1..%u (%s)", (c)->field, \
                           EM_CFG_DIM_MAX, why);                                                            \
    } while (0)

static em_status em_check_config_values(const em_blob_config *c, uint64_t tokenizer_size) {
    const char *kinds = em_arch_kinds(c->arch);
    if (!kinds) return em_fail(EM_ERR_BLOB_CONFIG, "blob: config arch %u is unknown (want 1..4)", c->arch);
    if (c->n_layer == 0 || c->n_layer > EM_BLOB_MAX_LAYERS)
        return em_fail(EM_ERR_BLOB_CONFIG, "blob: config n_layer = %u, want 1..%u", c->n_layer, EM_BLOB_MAX_LAYERS);
    if (c->layer_pattern.len != c->n_layer)
        return em_fail(EM_ERR_BLOB_CONFIG, "blob: layer_pattern has %u characters, n_layer is %u",
                       c->layer_pattern.len, c->n_layer);
    static const char all_kinds[] = "M*-m";
    int has[4] = {0, 0, 0, 0}; /* which kinds occur, in all_kinds order */
    for (uint32_t i = 0; i < c->layer_pattern.len; i++) {
        char ch = c->layer_pattern.ptr[i];
        const char *k = strchr(all_kinds, ch);
        if (ch == 0 || !k)
            return em_fail(EM_ERR_BLOB_CONFIG, "blob: layer_pattern character %u is 0x%02x, want one of \"M*-m\"",
                           i, (unsigned)(uint8_t)ch);
        if (!strchr(kinds, ch))
            return em_fail(EM_ERR_BLOB_CONFIG, "blob: layer %u is '%c', which arch %u does not have (only \"%s\")", i,
                           ch, c->arch, kinds);
        has[k - all_kinds] = 1;
    }
    EM_NEED_DIM(c, d_model, "model width");
    EM_NEED_DIM(c, vocab_size, "vocabulary");
    if (has[0]) { /* Mamba-2 */
        EM_NEED_DIM(c, d_state, "Mamba-2 layers");
        EM_NEED_DIM(c, d_conv, "Mamba-2 layers");
        EM_NEED_DIM(c, ssm_n_head, "Mamba-2 layers");
        EM_NEED_DIM(c, ssm_head_dim, "Mamba-2 layers");
        EM_NEED_DIM(c, ssm_n_group, "Mamba-2 layers");
        EM_NEED_DIM(c, d_inner, "Mamba-2 layers");
        EM_NEED_DIM(c, gated_norm_group, "Mamba-2 layers");
        if ((uint64_t)c->ssm_n_head * c->ssm_head_dim != c->d_inner)
            return em_fail(EM_ERR_BLOB_CONFIG, "blob: config d_inner = %u, want ssm_n_head * ssm_head_dim = %u * %u",
                           c->d_inner, c->ssm_n_head, c->ssm_head_dim);
        if (c->ssm_n_head % c->ssm_n_group)
            return em_fail(EM_ERR_BLOB_CONFIG, "blob: config ssm_n_head %u is not a multiple of ssm_n_group %u",
                           c->ssm_n_head, c->ssm_n_group);
        if (c->d_inner % c->gated_norm_group)
            return em_fail(EM_ERR_BLOB_CONFIG, "blob: config d_inner %u is not a multiple of gated_norm_group %u",
                           c->d_inner, c->gated_norm_group);
        if ((uint64_t)c->ssm_n_group * c->d_state > EM_CFG_DIM_MAX)
            return em_fail(EM_ERR_BLOB_CONFIG, "blob: config ssm_n_group * d_state = %u * %u is absurd (> %u)",
                           c->ssm_n_group, c->d_state, EM_CFG_DIM_MAX);
    }
    if (has[3]) { /* Mamba-1 */
        EM_NEED_DIM(c, d_state, "Mamba-1 layers");
        EM_NEED_DIM(c, d_conv, "Mamba-1 layers");
        EM_NEED_DIM(c, d_inner, "Mamba-1 layers");
        EM_NEED_DIM(c, dt_rank, "Mamba-1 layers");
    }
    if (has[1]) { /* attention */
        EM_NEED_DIM(c, attn_n_head, "attention layers");
        EM_NEED_DIM(c, attn_n_kv_head, "attention layers");
        EM_NEED_DIM(c, attn_head_dim, "attention layers");
        if (c->attn_n_head % c->attn_n_kv_head)
            return em_fail(EM_ERR_BLOB_CONFIG, "blob: config attn_n_head %u is not a multiple of attn_n_kv_head %u",
                           c->attn_n_head, c->attn_n_kv_head);
        if ((uint64_t)c->attn_n_head * c->attn_head_dim > EM_CFG_DIM_MAX)
            return em_fail(EM_ERR_BLOB_CONFIG, "blob: config attn_n_head * attn_head_dim = %u * %u is absurd (> %u)",
                           c->attn_n_head, c->attn_head_dim, EM_CFG_DIM_MAX);
        if (!(c->rope_fraction >= 0.0f && c->rope_fraction <= 1.0f))
            return em_fail(EM_ERR_BLOB_CONFIG, "blob: config rope_fraction = %g, want [0, 1]",
                           (double)c->rope_fraction);
        if (c->rope_fraction > 0.0f && !(isfinite(c->rope_base) && c->rope_base > 0.0f))
            return em_fail(EM_ERR_BLOB_CONFIG, "blob: config rope_base = %g, want finite and > 0",
                           (double)c->rope_base);
    }
    if (has[2]) { /* MLP */
        EM_NEED_DIM(c, d_ff, "MLP layers");
        if (c->mlp_act == EM_ACT_NONE)
            return em_fail(EM_ERR_BLOB_CONFIG, "blob: config mlp_act is none, but the pattern has MLP layers");
    }
    if (c->mlp_act > EM_ACT_SILU) return em_fail(EM_ERR_BLOB_CONFIG, "blob: config mlp_act %u is unknown", c->mlp_act);
    if (c->norm_kind > EM_NORM_LAYER_1P)
        return em_fail(EM_ERR_BLOB_CONFIG, "blob: config norm_kind %u is unknown", c->norm_kind);
    if (!(isfinite(c->norm_eps) && c->norm_eps > 0.0f))
        return em_fail(EM_ERR_BLOB_CONFIG, "blob: config norm_eps = %g, want finite and > 0", (double)c->norm_eps);
    if (!(c->dt_limit_min >= 0.0f && c->dt_limit_max >= c->dt_limit_min) || isinf(c->dt_limit_min))
        return em_fail(EM_ERR_BLOB_CONFIG, "blob: config dt limits [%g, %g], want 0 <= min <= max, min finite",
                       (double)c->dt_limit_min, (double)c->dt_limit_max);
    const uint32_t known_flags = EM_CFG_TIED_EMBEDDINGS | EM_CFG_RESIDUAL_FP32 | EM_CFG_CONV_BIAS | EM_CFG_PROJ_BIAS;
    if (c->flags & ~known_flags)
        return em_fail(EM_ERR_BLOB_CONFIG, "blob: config flags 0x%x has unknown bits (known: 0x%x)", c->flags,
                       known_flags);
    const struct { const char *name; int32_t id; } ids[4] = {
        {"bos_id", c->bos_id}, {"eos_id", c->eos_id}, {"pad_id", c->pad_id}, {"unk_id", c->unk_id}};
    for (int i = 0; i < 4; i++)
        if (ids[i].id < -1 || (ids[i].id >= 0 && (uint32_t)ids[i].id >= c->vocab_size))
            return em_fail(EM_ERR_BLOB_CONFIG, "blob: config %s = %d, want -1 or [0, vocab_size %u)", ids[i].name,
                           ids[i].id, c->vocab_size);
    if (c->tokenizer_kind > EM_TOK_BPE)
        return em_fail(EM_ERR_BLOB_CONFIG, "blob: config tokenizer_kind %u is unknown", c->tokenizer_kind);
    if ((c->tokenizer_kind == EM_TOK_NONE) != (tokenizer_size == 0))
        return em_fail(EM_ERR_BLOB_CONFIG, "blob: config tokenizer_kind %u with a %llu-byte tokenizer section "
                       "(kind none <=> empty section)", c->tokenizer_kind, (unsigned long long)tokenizer_size);
    return EM_OK;
}

/* Decodes the config section [p, p+size) into *c; strings point into the section. */
static em_status em_decode_config(const uint8_t *p, uint64_t size, uint64_t tokenizer_size, em_blob_config *c) {
    if (size < EM_BLOB_CONFIG_FIXED)
        return em_fail(EM_ERR_BLOB_CONFIG, "blob: config section is %llu bytes, shorter than its %u-byte fixed block",
                       (unsigned long long)size, EM_BLOB_CONFIG_FIXED);
    /* slot i of the fixed block is field i of EM_CONFIG_FIELDS: the X-macro is the one list of slots */
    uint32_t slot = 0;
#define EM_X_DECODE(T, name) c->name = em_cfg_##T(p + 4u * slot++);
    EM_CONFIG_FIELDS(EM_X_DECODE)
#undef EM_X_DECODE
    /* reserved slots: between the fields and the string pairs, and after the pairs */
    for (uint32_t i = EM_CFG_N_FIELDS; i < EM_BLOB_CONFIG_FIXED / 4; i++) {
        if (i == EM_CONFIG_STRING_SLOT0) i += 2 * EM_CFG_N_STRINGS;
        if (i < EM_BLOB_CONFIG_FIXED / 4 && em_ld32(p + 4u * i))
            return em_fail(EM_ERR_BLOB_CONFIG, "blob: config slot %u is reserved but holds 0x%08x (a newer writer's "
                           "field?)", i, em_ld32(p + 4u * i));
    }
    /* strings: (offset, length) pairs, offsets relative to the section, bytes after the fixed block */
    em_blob_string *strs[EM_CFG_N_STRINGS];
    static const char *str_names[EM_CFG_N_STRINGS] = {
#define EM_X_SNAME(name) #name,
        EM_CONFIG_STRINGS(EM_X_SNAME)
#undef EM_X_SNAME
    };
    {
        int k = 0;
#define EM_X_SPTR(name) strs[k++] = &c->name;
        EM_CONFIG_STRINGS(EM_X_SPTR)
#undef EM_X_SPTR
    }
    for (uint32_t k = 0; k < EM_CFG_N_STRINGS; k++) {
        const uint8_t *pair = p + 4u * (EM_CONFIG_STRING_SLOT0 + 2u * k);
        uint32_t off = em_ld32(pair), len = em_ld32(pair + 4);
        if (len > EM_BLOB_MAX_STRING)
            return em_fail(EM_ERR_BLOB_CONFIG, "blob: config string %s is %u bytes, longer than the limit %u",
                           str_names[k], len, EM_BLOB_MAX_STRING);
        if (off < EM_BLOB_CONFIG_FIXED || (uint64_t)off + len > size)
            return em_fail(EM_ERR_BLOB_CONFIG, "blob: config string %s at offset %u + length %u is outside the "
                           "string area [%u, %llu) of the config section", str_names[k], off, len,
                           EM_BLOB_CONFIG_FIXED, (unsigned long long)size);
        if (memchr(p + off, 0, len))
            return em_fail(EM_ERR_BLOB_CONFIG, "blob: config string %s contains a NUL byte", str_names[k]);
        strs[k]->ptr = (const char *)(p + off);
        strs[k]->len = len;
    }
    return em_check_config_values(c, tokenizer_size);
}

// ---- tensor table ---------------------------------------------------------------------------------------------------

/* Decodes and checks record i on its own (everything but duplicates, overlaps and data checksums). */
static em_status em_decode_tensor(const uint8_t *r, uint32_t i, uint32_t n, uint32_t blob_flags, uint64_t data_size,
                                  em_blob_tensor *t) {
    /* name: NUL inside the field, not empty, printable ASCII without spaces, zero-padded after the NUL */
    const uint8_t *nul = memchr(r + EM_T_NAME, 0, EM_BLOB_NAME_MAX);
    if (!nul) return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor #%u: name has no NUL in its %u-byte field", i,
                             EM_BLOB_NAME_MAX);
    size_t len = (size_t)(nul - (r + EM_T_NAME));
    if (len == 0) return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor #%u: empty name", i);
    for (size_t k = 0; k < len; k++)
        if (r[EM_T_NAME + k] <= 0x20 || r[EM_T_NAME + k] >= 0x7f)
            return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor #%u: name byte %zu is 0x%02x, want printable ASCII", i, k,
                           r[EM_T_NAME + k]);
    if (!em_all_zero(nul, EM_BLOB_NAME_MAX - len))
        return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor #%u: name is not NUL-padded", i);
    memcpy(t->name, r + EM_T_NAME, EM_BLOB_NAME_MAX);
    const char *nm = t->name; /* safe to print from here on */

    /* decode every field first, then check them in dependency order (dtype and dims before the size product) */
    t->dtype = em_ld32(r + EM_T_DTYPE);
    t->n_dims = em_ld32(r + EM_T_NDIMS);
    for (uint32_t d = 0; d < EM_BLOB_MAX_DIMS; d++) t->shape[d] = em_ld64(r + EM_T_SHAPE + 8 * d);
    t->layout = em_ld32(r + EM_T_LAYOUT);
    t->quant = em_ld32(r + EM_T_QUANT);
    t->scale_index = em_ldi32(r + EM_T_SCALE_INDEX);
    t->shard_rank = em_ld16(r + EM_T_SHARD_RANK);
    t->shard_count = em_ld16(r + EM_T_SHARD_COUNT);
    t->offset = em_ld64(r + EM_T_OFFSET);
    t->size = em_ld64(r + EM_T_SIZE);
    t->checksum = em_ld64(r + EM_T_CHECKSUM);

    size_t esize = em_dtype_size(t->dtype);
    if (!esize) return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor '%s': unknown dtype %u", nm, t->dtype);
    if (t->n_dims == 0 || t->n_dims > EM_BLOB_MAX_DIMS)
        return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor '%s': n_dims %u, want 1..%u", nm, t->n_dims,
                       EM_BLOB_MAX_DIMS);
    uint64_t bytes = esize;
    for (uint32_t d = 0; d < EM_BLOB_MAX_DIMS; d++) {
        if (d < t->n_dims && t->shape[d] == 0)
            return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor '%s': dim %u is 0", nm, d);
        if (d >= t->n_dims && t->shape[d] != 0)
            return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor '%s': unused dim %u is %llu, want 0", nm, d,
                           (unsigned long long)t->shape[d]);
        if (d < t->n_dims && !em_mul_u64(bytes, t->shape[d], &bytes))
            return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor '%s': shape product * %zu bytes overflows 64 bits at "
                           "dim %u (%llu)", nm, esize, d, (unsigned long long)t->shape[d]);
    }
    if (bytes != t->size)
        return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor '%s': size %llu, but its %s shape needs %llu bytes", nm,
                       (unsigned long long)t->size, em_dtype_name(t->dtype), (unsigned long long)bytes);
    /* enums: a v1 reader refuses values it does not know rather than guess at their meaning */
    if (t->layout != EM_LAYOUT_ROW_MAJOR)
        return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor '%s': unknown layout %u", nm, t->layout);
    if (t->quant == EM_QUANT_NONE) {
        if (t->dtype == EM_DTYPE_I8) /* v1 has no raw int8 tensors: i8 data means nothing without its scales */
            return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor '%s': i8 without a quant kind (want int8-row, %u)", nm,
                           EM_QUANT_INT8_ROW);
        if (t->scale_index != -1)
            return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor '%s': unquantized but scale_index %d (want -1)", nm,
                           t->scale_index);
    } else if (t->quant == EM_QUANT_INT8_ROW) {
        if (t->dtype != EM_DTYPE_I8)
            return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor '%s': int8-row quant on a %s tensor", nm,
                           em_dtype_name(t->dtype));
        if (t->scale_index < 0 || (uint32_t)t->scale_index >= n || (uint32_t)t->scale_index == i)
            return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor '%s': scale_index %d, want another tensor in [0, %u)",
                           nm, t->scale_index, n);
    } else {
        return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor '%s': unknown quant %u", nm, t->quant);
    }
    if (t->shard_count == 0 || t->shard_rank >= t->shard_count)
        return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor '%s': shard %u of %u, want rank < count", nm, t->shard_rank,
                       t->shard_count);
    if (t->shard_count != 1 && !(blob_flags & EM_BLOB_FLAG_SHARDED))
        return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor '%s': shard count %u, but the header has no sharded flag",
                       nm, t->shard_count);
    if (!em_all_zero(r + EM_T_RESERVED, EM_BLOB_TENSOR_RECORD - EM_T_RESERVED))
        return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor '%s': reserved record bytes are not zero", nm);
    /* placement: aligned for the kernels' vector loads and for page-granular mapping, then inside the data */
    if (t->offset % EM_BLOB_ALIGN)
        return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor '%s': offset %llu is not a multiple of %u", nm,
                       (unsigned long long)t->offset, EM_BLOB_ALIGN);
    uint64_t end;
    if (!em_add_u64(t->offset, t->size, &end) || end > data_size)
        return em_fail(EM_ERR_BLOB_BOUNDS, "blob: tensor '%s': offset %llu + size %llu passes the data section "
                       "(%llu bytes)", nm, (unsigned long long)t->offset, (unsigned long long)t->size,
                       (unsigned long long)data_size);
    return EM_OK;
}

/* INT8 (issue 10, docs/blob-format.md "INT8 weights"): every int8-row tensor is a 2-D [rows, cols] i8 matrix
 * whose scale_index names an unquantized F32 [rows] tensor (one scale per output channel). Runs after every
 * record is decoded, so the scale tensor's own fields are already proved. The scale values are not read here
 * (that would touch the data at open): a NaN scale gives NaN outputs, as a NaN weight would. */
static em_status em_check_scales(const em_blob_tensor *t, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        if (t[i].quant != EM_QUANT_INT8_ROW) continue;
        const em_blob_tensor *w = &t[i], *sc = &t[w->scale_index]; /* index range proved by em_decode_tensor */
        if (w->n_dims != 2)
            return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor '%s': int8-row quant on a %u-d tensor (want 2-d "
                           "[rows, cols])", w->name, w->n_dims);
        if (sc->dtype != EM_DTYPE_F32 || sc->n_dims != 1 || sc->shape[0] != w->shape[0] ||
            sc->quant != EM_QUANT_NONE)
            return em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor '%s': its scale tensor '%s' (#%d) is %s %u-d [%llu]%s, "
                           "want an unquantized f32 [%llu] (one scale per row)", w->name, sc->name, w->scale_index,
                           em_dtype_name(sc->dtype), sc->n_dims, (unsigned long long)sc->shape[0],
                           sc->quant != EM_QUANT_NONE ? " and quantized" : "", (unsigned long long)w->shape[0]);
    }
    return EM_OK;
}

static int em_cmp_name(const void *a, const void *b) {
    return strcmp((*(const em_blob_tensor *const *)a)->name, (*(const em_blob_tensor *const *)b)->name);
}
static int em_cmp_offset(const void *a, const void *b) {
    uint64_t x = (*(const em_blob_tensor *const *)a)->offset, y = (*(const em_blob_tensor *const *)b)->offset;
    return (x > y) - (x < y);
}

/* Duplicate names and overlapping extents, over a sorted array of pointers (n log n, no quadratic pass). */
static em_status em_check_table_sets(em_blob_tensor *t, uint32_t n) {
    if (n < 2) return EM_OK;
    const em_blob_tensor **p = malloc((size_t)n * sizeof *p);
    if (!p) return em_fail(EM_ERR_OUT_OF_MEMORY, "blob: cannot allocate %u pointers to sort the table", n);
    for (uint32_t i = 0; i < n; i++) p[i] = &t[i];
    em_status s = EM_OK;
    qsort(p, n, sizeof *p, em_cmp_name);
    for (uint32_t i = 1; i < n && s == EM_OK; i++)
        if (!strcmp(p[i - 1]->name, p[i]->name))
            s = em_fail(EM_ERR_BLOB_CORRUPT, "blob: tensor name '%s' appears twice (#%u and #%u)", p[i]->name,
                        (unsigned)(p[i - 1] - t), (unsigned)(p[i] - t));
    if (s == EM_OK) {
        qsort(p, n, sizeof *p, em_cmp_offset);
        /* sizes are > 0 and offset + size did not overflow (em_decode_tensor) */
        for (uint32_t i = 1; i < n && s == EM_OK; i++)
            if (p[i - 1]->offset + p[i - 1]->size > p[i]->offset)
                s = em_fail(EM_ERR_BLOB_OVERLAP, "blob: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) share bytes",
                            p[i - 1]->name, (unsigned long long)p[i - 1]->offset,
                            (unsigned long long)(p[i - 1]->offset + p[i - 1]->size), p[i]->name,
                            (unsigned long long)p[i]->offset, (unsigned long long)(p[i]->offset + p[i]->size));
    }
    free(p);
    return s;
}

// ---- public ---------------------------------------------------------------------------------------------------------

/* The whole validation; fills *blob as it goes (the caller zeroes it again on failure). */
static em_status em_blob_parse(const uint8_t *b, uint64_t size, int verify_data, em_blob *blob) {
    em_sections s;
    EM_TRY(em_check_header(b, size, blob, &s));
    EM_TRY(em_check_sums(b, &s, blob));
    EM_TRY(em_decode_config(b + s.off[EM_SEC_CONFIG], s.size[EM_SEC_CONFIG], s.size[EM_SEC_TOKENIZER],
                            &blob->config));
    blob->base = b;
    blob->file_size = size;
    blob->tokenizer = b + s.off[EM_SEC_TOKENIZER];
    blob->tokenizer_size = s.size[EM_SEC_TOKENIZER];
    blob->data = b + s.off[EM_SEC_DATA];
    blob->data_size = s.size[EM_SEC_DATA];

    /* the table: n <= EM_BLOB_MAX_TENSORS and n * 192 == table size were proved by em_check_header */
    uint32_t n = blob->n_tensors;
    if (n == 0) return EM_OK;
    blob->tensors = calloc(n, sizeof *blob->tensors);
    if (!blob->tensors)
        return em_fail(EM_ERR_OUT_OF_MEMORY, "blob: cannot allocate the table of %u tensors", n);
    const uint8_t *table = b + s.off[EM_SEC_TABLE];
    for (uint32_t i = 0; i < n; i++)
        EM_TRY(em_decode_tensor(table + (uint64_t)i * EM_BLOB_TENSOR_RECORD, i, n, blob->flags, blob->data_size,
                                &blob->tensors[i]));
    EM_TRY(em_check_table_sets(blob->tensors, n));
    EM_TRY(em_check_scales(blob->tensors, n));
    if (verify_data) { /* O(weights): off by default, so that opening a mapped 16 GB blob touches only its front */
        for (uint32_t i = 0; i < n; i++) {
            const em_blob_tensor *t = &blob->tensors[i];
            uint64_t got = XXH3_64bits(blob->data + t->offset, (size_t)t->size);
            if (got != t->checksum && !EM_FUZZ_SKIP_SUMS)
                return em_fail(EM_ERR_BLOB_CHECKSUM, "blob: tensor '%s': data checksum %016llx, stored %016llx",
                               t->name, (unsigned long long)got, (unsigned long long)t->checksum);
        }
    }
    return EM_OK;
}

em_status em_blob_open_memory(const void *base, uint64_t size, const em_blob_open_options *opts, em_blob *blob) {
    if (!blob) return em_fail(EM_ERR_INVALID_ARG, "blob: NULL blob");
    memset(blob, 0, sizeof *blob);
    if (!base && size) return em_fail(EM_ERR_INVALID_ARG, "blob: NULL base with size %llu", (unsigned long long)size);
    if (size > SIZE_MAX) /* 32-bit hosts: a size this process cannot address */
        return em_fail(EM_ERR_BLOB_BOUNDS, "blob: %llu bytes do not fit this address space", (unsigned long long)size);
    em_status s = em_blob_parse(base ? base : (const void *)"", size, opts ? opts->verify_data : 0, blob);
    if (s != EM_OK) {
        free(blob->tensors);
        memset(blob, 0, sizeof *blob);
        return s;
    }
    em_clear_error();
    return EM_OK;
}

/* Prefixes the current error message with the file path (the message buffer is reused by em_fail). */
static em_status em_fail_path(em_status s, const char *path) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", em_last_error());
    return em_fail(s, "%s: %s", path, msg);
}

em_status em_blob_open_file(const char *path, const em_blob_open_options *opts, em_blob *blob) {
    if (!blob) return em_fail(EM_ERR_INVALID_ARG, "blob: NULL blob");
    memset(blob, 0, sizeof *blob);
    if (!path) return em_fail(EM_ERR_INVALID_ARG, "blob: NULL path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return em_fail(errno == ENOENT ? EM_ERR_NOT_FOUND : EM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return em_fail(EM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return em_fail(EM_ERR_IO, "%s: not a regular file", path);
    }
    uint64_t size = (uint64_t)st.st_size;
    if (size < 8) { /* mmap cannot map 0 bytes; anything this short is truncated anyway */
        close(fd);
        return em_fail(EM_ERR_BLOB_TRUNCATED, "%s: file is %llu bytes, shorter than the 8-byte magic", path,
                       (unsigned long long)size);
    }
    if (size > SIZE_MAX) {
        close(fd);
        return em_fail(EM_ERR_BLOB_BOUNDS, "%s: %llu bytes do not fit this address space", path,
                       (unsigned long long)size);
    }
    /* Read-only private mapping: the file is never written through it. (A file truncated by someone else while
     * mapped raises SIGBUS; that is mmap's contract, not a parsing hole.) */
    void *m = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) return em_fail(EM_ERR_IO, "%s: cannot map %llu bytes: %s", path, (unsigned long long)size,
                                        strerror(e));
    em_status s = em_blob_open_memory(m, size, opts, blob);
    if (s != EM_OK) {
        munmap(m, (size_t)size);
        return em_fail_path(s, path);
    }
    blob->mapping = m;
    return EM_OK;
}

void em_blob_close(em_blob *blob) {
    if (!blob) return;
    free(blob->tensors);
    if (blob->mapping) munmap(blob->mapping, (size_t)blob->file_size);
    memset(blob, 0, sizeof *blob);
}

int em_blob_find(const em_blob *blob, const char *name) {
    /* Linear: a model has a few hundred tensors and the loader looks each up once. */
    if (!blob || !name) return -1;
    for (uint32_t i = 0; i < blob->n_tensors; i++)
        if (!strcmp(blob->tensors[i].name, name)) return (int)i;
    return -1;
}
