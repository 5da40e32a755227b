/*
 * test_blob_corrupt.c — proves that the blob reader rejects damaged input with the specific status and a message,
 * and never crashes or reads out of bounds (run it under -DEM_SANITIZE=address,undefined: every image is opened
 * from a heap buffer of exactly its size, so one byte read past the end is an ASan report):
 *   (a) truncation at every length of the first 4 KiB and at sampled lengths through the file -> TRUNCATED;
 *   (b) every byte of the header, config, tokenizer and table flipped (xor 0xFF) -> an error (MAGIC, VERSION,
 *       CHECKSUM, or CORRUPT for section padding); every data byte flipped -> CHECKSUM with verify_data=1 when it
 *       lies in a tensor, accepted with verify_data=0 (data is hashed only on request);
 *   (c) a table of crafted files whose checksums are recomputed after the damage, so that it reaches the parsers:
 *       one line per case with the exact status it must get.
 * The header/record offsets are written here from docs/blob-format.md, independently of runtime/blob.c.
 *
 * Run: ctest -L blob (or ./test_blob_corrupt [-v] from the build directory; -v prints every case's message).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "blob.h"
#include "testutil.h"
#include "util.h"

// ---- the format, from docs/blob-format.md ---------------------------------------------------------------------------

enum { /* header fields (byte offsets) */
    H_MAGIC = 0, H_VERSION = 8, H_HEADER_SIZE = 12, H_FLAGS = 16, H_RESERVED0 = 20, H_FILE_SIZE = 24,
    H_CONFIG_OFF = 32, H_CONFIG_SIZE = 40, H_TOK_OFF = 48, H_TOK_SIZE = 56, H_TABLE_OFF = 64, H_TABLE_SIZE = 72,
    H_DATA_OFF = 80, H_DATA_SIZE = 88, H_COUNT = 96, H_RESERVED1 = 100, H_CONTENT_ID = 104, H_CONFIG_SUM = 120,
    H_TOK_SUM = 128, H_TABLE_SUM = 136, H_RESERVED2 = 144, H_SUM = 248
};
enum { /* tensor record fields */
    R_NAME = 0, R_DTYPE = 96, R_NDIMS = 100, R_SHAPE = 104, R_LAYOUT = 136, R_QUANT = 140, R_SCALE = 144,
    R_SHARD_RANK = 148, R_SHARD_COUNT = 150, R_OFFSET = 152, R_SIZE = 160, R_CHECKSUM = 168, R_RESERVED = 176
};
enum { /* config slots, in EM_CONFIG_FIELDS order; byte offset = 4 * slot */
#define SLOT(T, name) S_##name,
    EM_CONFIG_FIELDS(SLOT)
#undef SLOT
    S_N_FIELDS
};
_Static_assert(S_tokenizer_kind == 30 && S_N_FIELDS == 31, "config slots moved: update docs/blob-format.md");
#define S_PATTERN_OFF (EM_CONFIG_STRING_SLOT0 + 0) /* (offset, length) of layer_pattern */
#define S_PATTERN_LEN (EM_CONFIG_STRING_SLOT0 + 1)
#define S_TEMPLATE_LEN (EM_CONFIG_STRING_SLOT0 + 3)

// ---- the blob under attack ------------------------------------------------------------------------------------------

typedef struct tdef { const char *name; em_dtype dtype; uint32_t n_dims; uint64_t shape[4]; int scale; } tdef;
static const tdef TENSORS[] = {
    {"embd",             EM_DTYPE_BF16, 2, {32, 16}, -1},   /* #0 1 KiB at data offset 0 */
    {"norm_f",           EM_DTYPE_F32,  1, {16}, -1},       /* #1 64 B at 4096 */
    {"l0.in_proj",       EM_DTYPE_I8,   2, {8, 16}, 3},     /* #2 int8 rows, scales in #3 */
    {"l0.in_proj.scale", EM_DTYPE_F32,  1, {8}, -1},        /* #3 */
    {"l0.cube",          EM_DTYPE_F32,  3, {2, 3, 4}, -1},  /* #4 3-D */
    {"l1.big",           EM_DTYPE_F32,  2, {2, 1500}, -1},  /* #5 12000 B over three pages, last */
};
#define N_TENSORS 6u

static const char PATTERN[] = "MM";
static const char TEMPLATE[] = "{prompt}";
static const char NAME[] = "corrupt-me";

static em_status write_blob(const char *path) {
    em_blob_config c;
    memset(&c, 0, sizeof c);
    c.arch = EM_ARCH_MAMBA2;
    c.n_layer = 2;
    c.d_model = 16;
    c.vocab_size = 32;
    c.d_state = 8;
    c.d_conv = 4;
    c.ssm_n_head = 2;
    c.ssm_head_dim = 8;
    c.ssm_n_group = 1;
    c.d_inner = 16;
    c.gated_norm_group = 16;
    c.norm_eps = 1e-5f;
    c.dt_limit_max = INFINITY;
    c.bos_id = c.eos_id = c.pad_id = c.unk_id = -1;
    c.tokenizer_kind = EM_TOK_BPE;
    c.layer_pattern = (em_blob_string){PATTERN, 2};
    c.chat_template = (em_blob_string){TEMPLATE, (uint32_t)strlen(TEMPLATE)};
    c.name = (em_blob_string){NAME, (uint32_t)strlen(NAME)};
    uint8_t tok[100];
    for (int i = 0; i < 100; i++) tok[i] = (uint8_t)(255 - i);

    em_blob_writer *w = NULL;
    EM_TRY(em_blob_writer_open(path, &w));
    em_status s = em_blob_writer_set_config(w, &c);
    if (s == EM_OK) s = em_blob_writer_set_tokenizer(w, tok, sizeof tok);
    for (uint32_t i = 0; s == EM_OK && i < N_TENSORS; i++) {
        em_blob_tensor t;
        memset(&t, 0, sizeof t);
        snprintf(t.name, sizeof t.name, "%s", TENSORS[i].name);
        t.dtype = TENSORS[i].dtype;
        t.n_dims = TENSORS[i].n_dims;
        memcpy(t.shape, TENSORS[i].shape, sizeof t.shape);
        t.quant = TENSORS[i].scale >= 0 ? EM_QUANT_INT8_ROW : EM_QUANT_NONE;
        t.scale_index = TENSORS[i].scale;
        t.shard_count = 1;
        s = em_blob_writer_add_tensor(w, &t, NULL);
    }
    em_rng r;
    em_rng_seed(&r, 7);
    for (uint32_t i = 0; s == EM_OK && i < N_TENSORS; i++) {
        uint64_t n = em_dtype_size(TENSORS[i].dtype);
        for (uint32_t d = 0; d < TENSORS[i].n_dims; d++) n *= TENSORS[i].shape[d];
        uint8_t *b = malloc(n);
        for (uint64_t k = 0; k < n; k++) b[k] = (uint8_t)(em_rng_u32(&r) | 1u); /* no zero bytes: flips show */
        s = em_blob_writer_write(w, b, n);
        free(b);
    }
    if (s != EM_OK) {
        em_blob_writer_abort(w);
        return s;
    }
    return em_blob_writer_finish(w);
}

// ---- helpers --------------------------------------------------------------------------------------------------------

static int g_verbose = 0;

/* Opens an exact-size heap copy of image[0, n) (so ASan sees any read past the end); returns the status. */
static em_status open_copy(const uint8_t *image, uint64_t n, int verify) {
    uint8_t *b = malloc(n ? n : 1);
    memcpy(b, image, n);
    em_blob_open_options o = {.verify_data = verify};
    em_blob blob;
    em_clear_error();
    em_status s = em_blob_open_memory(n ? b : NULL, n, &o, &blob);
    if (s == EM_OK) em_blob_close(&blob);
    free(b);
    return s;
}

/* Is [off, off+size) inside an image of n bytes? */
static int inside(uint64_t off, uint64_t size, uint64_t n) { return off <= n && size <= n - off; }

/* Recomputes what a careful attacker would: the section checksums and content id (when the header's section
 * extents still point inside the image), then the header checksum. level 1: header checksum only. */
static void rehash(uint8_t *b, uint64_t n, int level) {
    if (n < EM_BLOB_HEADER_SIZE) return;
    if (level >= 2) {
        static const int sec[3][3] = {{H_CONFIG_OFF, H_CONFIG_SIZE, H_CONFIG_SUM}, {H_TOK_OFF, H_TOK_SIZE, H_TOK_SUM},
                                      {H_TABLE_OFF, H_TABLE_SIZE, H_TABLE_SUM}};
        for (int i = 0; i < 3; i++) {
            uint64_t off = em_ld64(b + sec[i][0]), size = em_ld64(b + sec[i][1]);
            if (inside(off, size, n)) em_st64(b + sec[i][2], XXH3_64bits(b + off, (size_t)size));
        }
        uint64_t co = em_ld64(b + H_CONFIG_OFF), cs = em_ld64(b + H_CONFIG_SIZE);
        uint64_t to = em_ld64(b + H_TABLE_OFF), ts = em_ld64(b + H_TABLE_SIZE);
        if (inside(co, cs, n) && inside(to, ts, n)) {
            XXH3_state_t *st = XXH3_createState();
            XXH3_128bits_reset(st);
            XXH3_128bits_update(st, b + co, (size_t)cs);
            XXH3_128bits_update(st, b + to, (size_t)ts);
            XXH128_canonical_t id;
            XXH128_canonicalFromHash(&id, XXH3_128bits_digest(st));
            XXH3_freeState(st);
            memcpy(b + H_CONTENT_ID, id.digest, 16);
        }
    }
    if (level >= 1) em_st64(b + H_SUM, XXH3_64bits(b, H_SUM));
}

static void poke(uint8_t *p, uint32_t width, uint64_t v) {
    if (width == 1) p[0] = (uint8_t)v;
    else if (width == 2) em_st16(p, (uint16_t)v);
    else if (width == 4) em_st32(p, (uint32_t)v);
    else em_st64(p, v);
}

/* Section extents of the pristine image, for the flips. */
static uint64_t sec_off(const uint8_t *b, int h) { return em_ld64(b + h); }

// ---- (c) crafted damage ---------------------------------------------------------------------------------------------

/* Damage that is more than one poke: each gets the image, its size and capacity, returns the new size. */
static uint8_t *rec(uint8_t *b, uint32_t i) {
    return b + em_ld64(b + H_TABLE_OFF) + (uint64_t)i * EM_BLOB_TENSOR_RECORD;
}
static uint8_t *cfg(uint8_t *b) { return b + em_ld64(b + H_CONFIG_OFF); }

static uint64_t f_unterminated(uint8_t *b, uint64_t n) { memset(rec(b, 1) + R_NAME, 'a', EM_BLOB_NAME_MAX); return n; }
static uint64_t f_duplicate(uint8_t *b, uint64_t n) {
    memcpy(rec(b, 4) + R_NAME, rec(b, 1) + R_NAME, EM_BLOB_NAME_MAX);
    return n;
}
static uint64_t f_not_padded(uint8_t *b, uint64_t n) { rec(b, 1)[R_NAME + 90] = 'z'; return n; }
static uint8_t *pattern(uint8_t *b) { return cfg(b) + em_ld32(cfg(b) + 4 * S_PATTERN_OFF); }
static uint64_t f_pattern_char(uint8_t *b, uint64_t n) { pattern(b)[1] = 'X'; return n; }
static uint64_t f_pattern_attn(uint8_t *b, uint64_t n) { pattern(b)[1] = '*'; return n; }
static uint64_t f_string_nul(uint8_t *b, uint64_t n) { pattern(b)[0] = 0; return n; }
static uint64_t f_trailing(uint8_t *b, uint64_t n) { b[n] = 0; return n + 1; }
static uint64_t f_file_shorter(uint8_t *b, uint64_t n) { return n - 1; }
static uint64_t f_table_pad(uint8_t *b, uint64_t n) {   /* a byte in the gap between the table and the data */
    b[em_ld64(b + H_DATA_OFF) - 1] = 1;
    return n;
}
static uint64_t f_data_misaligned(uint8_t *b, uint64_t n) { /* data starts 8 bytes later, still ends at the end */
    em_st64(b + H_DATA_OFF, em_ld64(b + H_DATA_OFF) + 8);
    em_st64(b + H_DATA_SIZE, em_ld64(b + H_DATA_SIZE) - 8);
    return n;
}
static uint64_t f_sharded_noflag(uint8_t *b, uint64_t n) {
    em_st16(rec(b, 1) + R_SHARD_RANK, 1);
    em_st16(rec(b, 1) + R_SHARD_COUNT, 2);
    return n;
}
static uint64_t f_sharded_flag(uint8_t *b, uint64_t n) { /* the same with the flag: valid */
    f_sharded_noflag(b, n);
    em_st32(b + H_FLAGS, EM_BLOB_FLAG_SHARDED);
    return n;
}
static uint64_t f_data_byte(uint8_t *b, uint64_t n) { b[em_ld64(b + H_DATA_OFF) + 4096 + 3] ^= 0x40; return n; }

typedef enum where { W_HDR, W_HXOR, W_CFG, W_REC, W_FN } where;

typedef struct ccase {
    const char *what;
    where w;
    uint32_t rec;        /* W_REC: record index */
    uint32_t at, width;  /* byte offset in the header / config section / record, and 1, 2, 4 or 8 */
    uint64_t value;
    uint64_t (*fn)(uint8_t *b, uint64_t n); /* W_FN */
    int rehash;          /* 0: leave checksums stale; 1: header checksum; 2: everything (damage reaches parsers) */
    int verify;          /* verify_data */
    em_status want;
} ccase;

#define HDR(at, wd, v, rh, want) W_HDR, 0, at, wd, v, NULL, rh, 0, want
#define HXOR(at, want)           W_HXOR, 0, at, 1, 0xFF, NULL, 1, 0, want   /* flip a header byte, re-sum it */
#define CFG(slot, v, want)       W_CFG, 0, 4 * (slot), 4, v, NULL, 2, 0, want
#define REC(i, at, wd, v, want)  W_REC, i, at, wd, v, NULL, 2, 0, want
#define RECV(i, at, wd, v, want) W_REC, i, at, wd, v, NULL, 2, 1, want   /* with verify_data=1 */
#define FN(f, verify, want)      W_FN, 0, 0, 0, 0, f, 2, verify, want

static const ccase CASES[] = {
    /* header */
    {"bad magic",                          HDR(H_MAGIC, 1, 'X', 0, EM_ERR_BLOB_MAGIC)},
    {"magic of a later format (\\0\\2)",   HDR(H_MAGIC + 7, 1, 2, 1, EM_ERR_BLOB_MAGIC)},
    {"version 2",                          HDR(H_VERSION, 4, 2, 1, EM_ERR_BLOB_VERSION)},
    {"version 0, stale checksum",          HDR(H_VERSION, 4, 0, 0, EM_ERR_BLOB_VERSION)},
    {"header byte, stale checksum",        HDR(H_FLAGS, 4, 1, 0, EM_ERR_BLOB_CHECKSUM)},
    {"header size 512",                    HDR(H_HEADER_SIZE, 4, 512, 1, EM_ERR_BLOB_CORRUPT)},
    {"unknown header flag",                HDR(H_FLAGS, 4, 0x80, 1, EM_ERR_BLOB_CORRUPT)},
    {"reserved header u32 at 20",          HDR(H_RESERVED0, 4, 1, 1, EM_ERR_BLOB_CORRUPT)},
    {"reserved header byte at 200",        HDR(200, 1, 1, 1, EM_ERR_BLOB_CORRUPT)},
    {"image 1 byte short of its file size",   FN(f_file_shorter, 0, EM_ERR_BLOB_TRUNCATED)},
    {"a byte past the stated file size",   FN(f_trailing, 0, EM_ERR_BLOB_CORRUPT)},
    {"tensor count 0xFFFFFFFF",            HDR(H_COUNT, 4, 0xFFFFFFFFu, 2, EM_ERR_BLOB_CORRUPT)},
    {"tensor count 65537",                 HDR(H_COUNT, 4, EM_BLOB_MAX_TENSORS + 1, 2, EM_ERR_BLOB_CORRUPT)},
    {"tensor count past the table (7)",    HDR(H_COUNT, 4, N_TENSORS + 1, 2, EM_ERR_BLOB_CORRUPT)},
    {"tensor count short of the table (5)", HDR(H_COUNT, 4, N_TENSORS - 1, 2, EM_ERR_BLOB_CORRUPT)},
    {"content id byte",                    HXOR(H_CONTENT_ID + 5, EM_ERR_BLOB_CHECKSUM)},
    {"config checksum byte",               HXOR(H_CONFIG_SUM, EM_ERR_BLOB_CHECKSUM)},
    {"tokenizer checksum byte",            HXOR(H_TOK_SUM, EM_ERR_BLOB_CHECKSUM)},
    {"table checksum byte",                HXOR(H_TABLE_SUM, EM_ERR_BLOB_CHECKSUM)},
    /* sections */
    {"table offset past the end",          HDR(H_TABLE_OFF, 8, 1u << 30, 2, EM_ERR_BLOB_BOUNDS)},
    {"data offset past the end",           HDR(H_DATA_OFF, 8, 1u << 30, 2, EM_ERR_BLOB_BOUNDS)},
    {"config size 2^64-1 (end overflows)", HDR(H_CONFIG_SIZE, 8, UINT64_MAX, 2, EM_ERR_BLOB_BOUNDS)},
    {"tokenizer size past the end",        HDR(H_TOK_SIZE, 8, 1u << 30, 2, EM_ERR_BLOB_BOUNDS)},
    {"tokenizer overlaps config",          HDR(H_TOK_OFF, 8, 256, 2, EM_ERR_BLOB_OVERLAP)},
    {"config overlaps the header",         HDR(H_CONFIG_OFF, 8, 128, 2, EM_ERR_BLOB_OVERLAP)},
    {"table before tokenizer",             HDR(H_TABLE_OFF, 8, 256, 2, EM_ERR_BLOB_OVERLAP)},
    {"data offset misaligned",             FN(f_data_misaligned, 0, EM_ERR_BLOB_CORRUPT)},
    {"nonzero padding before data",        FN(f_table_pad, 0, EM_ERR_BLOB_CORRUPT)},
    /* tensor records */
    {"offset past the data section",       REC(0, R_OFFSET, 8, 1u << 20, EM_ERR_BLOB_BOUNDS)},
    {"last tensor one page later",         REC(5, R_OFFSET, 8, 5 * 4096 + 4096, EM_ERR_BLOB_BOUNDS)},
    {"offset + size overflows u64",        REC(5, R_OFFSET, 8, UINT64_MAX - 4095, EM_ERR_BLOB_BOUNDS)},
    {"tensors #0 and #1 overlap",          REC(1, R_OFFSET, 8, 0, EM_ERR_BLOB_OVERLAP)},
    {"tensors #4 and #5 overlap",          REC(5, R_OFFSET, 8, 4 * 4096, EM_ERR_BLOB_OVERLAP)},
    {"offset misaligned (4096 + 16)",      REC(1, R_OFFSET, 8, 4096 + 16, EM_ERR_BLOB_CORRUPT)},
    {"dims product overflows (2^62 f32)",  REC(5, R_SHAPE, 8, 1ull << 62, EM_ERR_BLOB_CORRUPT)},
    {"dims product overflows (dim 1)",     REC(5, R_SHAPE + 8, 8, 1ull << 63, EM_ERR_BLOB_CORRUPT)},
    {"size != product(shape) * 4",         REC(1, R_SIZE, 8, 60, EM_ERR_BLOB_CORRUPT)},
    {"n_dims 0",                           REC(1, R_NDIMS, 4, 0, EM_ERR_BLOB_CORRUPT)},
    {"n_dims 5",                           REC(1, R_NDIMS, 4, 5, EM_ERR_BLOB_CORRUPT)},
    {"n_dims 0xFFFFFFFF",                  REC(1, R_NDIMS, 4, 0xFFFFFFFFu, EM_ERR_BLOB_CORRUPT)},
    {"a used dim is 0",                    REC(4, R_SHAPE + 16, 8, 0, EM_ERR_BLOB_CORRUPT)},
    {"an unused dim is not 0",             REC(1, R_SHAPE + 24, 8, 1, EM_ERR_BLOB_CORRUPT)},
    {"unknown dtype 99",                   REC(1, R_DTYPE, 4, 99, EM_ERR_BLOB_CORRUPT)},
    {"dtype f32 -> bf16 (size mismatch)",  REC(1, R_DTYPE, 4, EM_DTYPE_BF16, EM_ERR_BLOB_CORRUPT)},
    {"unterminated name",                  FN(f_unterminated, 0, EM_ERR_BLOB_CORRUPT)},
    {"empty name",                         REC(1, R_NAME, 1, 0, EM_ERR_BLOB_CORRUPT)},
    {"name with a space",                  REC(1, R_NAME + 2, 1, ' ', EM_ERR_BLOB_CORRUPT)},
    {"name with byte 0xC3",                REC(1, R_NAME + 2, 1, 0xC3, EM_ERR_BLOB_CORRUPT)},
    {"name not NUL-padded",                FN(f_not_padded, 0, EM_ERR_BLOB_CORRUPT)},
    {"duplicate name",                     FN(f_duplicate, 0, EM_ERR_BLOB_CORRUPT)},
    {"unknown layout",                     REC(1, R_LAYOUT, 4, 1, EM_ERR_BLOB_CORRUPT)},
    {"unknown quant",                      REC(2, R_QUANT, 4, 7, EM_ERR_BLOB_CORRUPT)},
    {"scale_index out of range",           REC(2, R_SCALE, 4, N_TENSORS, EM_ERR_BLOB_CORRUPT)},
    {"scale_index -2",                     REC(2, R_SCALE, 4, 0xFFFFFFFEu, EM_ERR_BLOB_CORRUPT)},
    {"scale_index pointing at itself",     REC(2, R_SCALE, 4, 2, EM_ERR_BLOB_CORRUPT)},
    {"scale_index on an unquantized",      REC(1, R_SCALE, 4, 3, EM_ERR_BLOB_CORRUPT)},
    {"int8-row quant on an f32 tensor",    REC(1, R_QUANT, 4, EM_QUANT_INT8_ROW, EM_ERR_BLOB_CORRUPT)},
    {"shard_count 0",                      REC(1, R_SHARD_COUNT, 2, 0, EM_ERR_BLOB_CORRUPT)},
    {"shard rank 1 of 1",                  REC(1, R_SHARD_RANK, 2, 1, EM_ERR_BLOB_CORRUPT)},
    {"shard 1 of 2, no sharded flag",      FN(f_sharded_noflag, 0, EM_ERR_BLOB_CORRUPT)},
    {"shard 1 of 2 with the flag (valid)", FN(f_sharded_flag, 0, EM_OK)},
    {"reserved record byte",               REC(3, R_RESERVED + 15, 1, 1, EM_ERR_BLOB_CORRUPT)},
    {"tensor checksum, verify_data=1",     RECV(1, R_CHECKSUM, 8, 12345, EM_ERR_BLOB_CHECKSUM)},
    {"tensor checksum, verify_data=0",     REC(1, R_CHECKSUM, 8, 12345, EM_OK)},
    {"data byte, verify_data=1",           FN(f_data_byte, 1, EM_ERR_BLOB_CHECKSUM)},
    {"data byte, verify_data=0 (accepted)", FN(f_data_byte, 0, EM_OK)},
    /* config */
    {"arch 9",                             CFG(S_arch, 9, EM_ERR_BLOB_CONFIG)},
    {"arch hybrid is fine ('M' layers)",   CFG(S_arch, EM_ARCH_HYBRID, EM_OK)},
    {"arch Mamba-1 with 'M' layers",       CFG(S_arch, EM_ARCH_MAMBA1, EM_ERR_BLOB_CONFIG)},
    {"n_layer 0",                          CFG(S_n_layer, 0, EM_ERR_BLOB_CONFIG)},
    {"n_layer 1024",                       CFG(S_n_layer, EM_BLOB_MAX_LAYERS + 1, EM_ERR_BLOB_CONFIG)},
    {"n_layer 3 for pattern \"MM\"",       CFG(S_n_layer, 3, EM_ERR_BLOB_CONFIG)},
    {"d_model 0",                          CFG(S_d_model, 0, EM_ERR_BLOB_CONFIG)},
    {"vocab_size 0",                       CFG(S_vocab_size, 0, EM_ERR_BLOB_CONFIG)},
    {"d_model 2^31",                       CFG(S_d_model, 1u << 31, EM_ERR_BLOB_CONFIG)},
    {"d_state 0 with Mamba-2 layers",      CFG(S_d_state, 0, EM_ERR_BLOB_CONFIG)},
    {"d_inner != n_head * head_dim",       CFG(S_d_inner, 17, EM_ERR_BLOB_CONFIG)},
    {"norm_eps NaN",                       CFG(S_norm_eps, 0x7FC00000u, EM_ERR_BLOB_CONFIG)},
    {"norm_eps +inf",                      CFG(S_norm_eps, 0x7F800000u, EM_ERR_BLOB_CONFIG)},
    {"norm_eps -1",                        CFG(S_norm_eps, 0xBF800000u, EM_ERR_BLOB_CONFIG)},
    {"eos_id = vocab_size",                CFG(S_eos_id, 32, EM_ERR_BLOB_CONFIG)},
    {"tokenizer kind none, 100 bytes",     CFG(S_tokenizer_kind, EM_TOK_NONE, EM_ERR_BLOB_CONFIG)},
    {"unknown config flag",                CFG(S_flags, 0x100, EM_ERR_BLOB_CONFIG)},
    {"reserved config slot 40",            CFG(40, 1, EM_ERR_BLOB_CONFIG)},
    {"reserved config slot 63",            CFG(63, 1, EM_ERR_BLOB_CONFIG)},
    {"pattern string offset out of bounds", CFG(S_PATTERN_OFF, 0xFFFFFF00u, EM_ERR_BLOB_CONFIG)},
    {"pattern string inside the fixed block", CFG(S_PATTERN_OFF, 8, EM_ERR_BLOB_CONFIG)},
    {"template length past the section",   CFG(S_TEMPLATE_LEN, 4000, EM_ERR_BLOB_CONFIG)},
    {"template length 0xFFFFFFFF",         CFG(S_TEMPLATE_LEN, 0xFFFFFFFFu, EM_ERR_BLOB_CONFIG)},
    {"pattern length 1 (!= n_layer)",      CFG(S_PATTERN_LEN, 1, EM_ERR_BLOB_CONFIG)},
    {"pattern with a bad char 'X'",        FN(f_pattern_char, 0, EM_ERR_BLOB_CONFIG)},
    {"pattern '*' in a Mamba-2 arch",      FN(f_pattern_attn, 0, EM_ERR_BLOB_CONFIG)},
    {"NUL inside a config string",         FN(f_string_nul, 0, EM_ERR_BLOB_CONFIG)},
};
#define N_CASES (sizeof CASES / sizeof CASES[0])

/* Applies case c to a copy of the pristine image and opens it; returns 1 if the status is the one wanted. */
static int run_case(const ccase *c, const uint8_t *image, uint64_t n, uint8_t *work) {
    memcpy(work, image, n);
    uint8_t *base = c->w == W_HDR ? work : c->w == W_CFG ? cfg(work) : c->w == W_REC ? rec(work, c->rec) : NULL;
    uint64_t m = n;
    if (c->w == W_HXOR) work[c->at] ^= (uint8_t)c->value;
    else if (base) poke(base + c->at, c->width, c->value);
    else m = c->fn(work, n);
    rehash(work, m, c->rehash);
    em_status s = open_copy(work, m, c->verify);
    const char *msg = em_last_error();
    int ok = s == c->want && (s == EM_OK || msg[0] != 0);
    if (!ok || g_verbose)
        fprintf(ok ? stdout : stderr, "%s %-40s -> %s\n     %s\n", ok ? "ok  " : "FAIL", c->what, em_status_str(s),
                msg);
    if (!ok) {
        em_test_failures++;
        fprintf(stderr, "     want %s; message: '%s'\n", em_status_str(c->want), msg);
    }
    return ok;
}

// ---- main -----------------------------------------------------------------------------------------------------------

int main(int argc, char **argv) {
    g_verbose = argc > 1 && !strcmp(argv[1], "-v");
    const char *dir = getenv("EM_BUILD_DIR");
    if (!dir || !*dir) dir = "/tmp";
    char path[4096];
    snprintf(path, sizeof path, "%s/test_blob_corrupt.%d.emb", dir, (int)getpid());
    CHECK_STATUS(write_blob(path), EM_OK);
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "cannot read %s\n", path); return 1; }
    fseek(f, 0, SEEK_END);
    uint64_t n = (uint64_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *image = malloc(n);
    CHECK(fread(image, 1, n, f) == n);
    fclose(f);
    CHECK_STATUS(open_copy(image, n, 1), EM_OK);

    const uint64_t data_off = sec_off(image, H_DATA_OFF);
    int counts[100] = {0}; /* by -status */

    /* (a) truncation: every length of the first 4 KiB, then every 97th, then the last few */
    uint64_t n_trunc = 0;
    for (uint64_t len = 0; len < n; len = len < 4096 ? len + 1 : (len + 97 < n - 8 ? len + 97 : len + 1)) {
        for (int verify = 0; verify <= 1; verify++) {
            em_status s = open_copy(image, len, verify);
            n_trunc++;
            if (s != EM_ERR_BLOB_TRUNCATED || !em_last_error()[0]) {
                em_test_failures++;
                fprintf(stderr, "FAIL truncated to %llu bytes (verify %d): %s (%s)\n", (unsigned long long)len, verify,
                        em_status_str(s), em_last_error());
            }
        }
    }
    /* ... and through the file door, at a few lengths */
    static const uint64_t file_cuts[] = {0, 3, 8, 255, 256, 4095, 4096, 4097};
    for (size_t i = 0; i < sizeof file_cuts / sizeof file_cuts[0]; i++) {
        FILE *o = fopen(path, "wb");
        fwrite(image, 1, file_cuts[i], o);
        fclose(o);
        em_blob b;
        CHECK_STATUS(em_blob_open_file(path, NULL, &b), EM_ERR_BLOB_TRUNCATED);
        CHECK(strstr(em_last_error(), path) != NULL); /* the file door names the file */
    }
    remove(path);

    /* (b) flips: every byte before the data (header, config, tokenizer, table, padding) must fail */
    uint8_t *work = malloc(n + 4096);
    for (uint64_t i = 0; i < data_off; i++) {
        image[i] ^= 0xFF;
        em_status s = open_copy(image, n, 0);
        image[i] ^= 0xFF;
        int in_section = i < EM_BLOB_HEADER_SIZE;
        for (int k = 0; k < 3; k++) /* config, tokenizer, table: H_CONFIG_OFF + 16 k */
            in_section |= i >= sec_off(image, H_CONFIG_OFF + 16 * k) &&
                          i - sec_off(image, H_CONFIG_OFF + 16 * k) < sec_off(image, H_CONFIG_SIZE + 16 * k);
        em_status want = i < 8 ? EM_ERR_BLOB_MAGIC : i < 12 ? EM_ERR_BLOB_VERSION
                       : in_section ? EM_ERR_BLOB_CHECKSUM
                       : EM_ERR_BLOB_CORRUPT; /* zero padding between sections */
        if (s < 0 && s > -100) counts[-s]++;
        if (s != want || !em_last_error()[0]) {
            em_test_failures++;
            fprintf(stderr, "FAIL flip of byte %llu: %s, want %s (%s)\n", (unsigned long long)i, em_status_str(s),
                    em_status_str(want), em_last_error());
        }
    }
    /* ... every data byte: caught by verify_data=1 inside a tensor, never looked at with verify_data=0 */
    uint64_t caught = 0, padding = 0;
    em_blob pristine;
    CHECK_STATUS(em_blob_open_memory(image, n, NULL, &pristine), EM_OK);
    for (uint64_t i = data_off; i < n; i++) {
        uint64_t d = i - data_off;
        int in_tensor = 0;
        for (uint32_t t = 0; t < pristine.n_tensors; t++)
            in_tensor |= d >= pristine.tensors[t].offset && d < pristine.tensors[t].offset + pristine.tensors[t].size;
        image[i] ^= 0xFF;
        em_status s1 = open_copy(image, n, 1), s0 = open_copy(image, n, 0);
        image[i] ^= 0xFF;
        if (s1 != (in_tensor ? EM_ERR_BLOB_CHECKSUM : EM_OK) || s0 != EM_OK) {
            em_test_failures++;
            fprintf(stderr, "FAIL flip of data byte %llu (%s): verify_data=1 %s, verify_data=0 %s\n",
                    (unsigned long long)d, in_tensor ? "tensor" : "padding", em_status_str(s1), em_status_str(s0));
        }
        caught += s1 == EM_ERR_BLOB_CHECKSUM;
        padding += !in_tensor;
    }
    em_blob_close(&pristine);

    /* (c) crafted files */
    uint32_t passed = 0;
    for (size_t i = 0; i < N_CASES; i++) passed += (uint32_t)run_case(&CASES[i], image, n, work);

    /* (d) random damage that reaches the parsers: 1-4 random bytes of the header, config or table set to random
     * values (biased to 0, 0xFF and small numbers), checksums recomputed. Any status may come back, but never a
     * crash or an out-of-bounds read, and an accepted blob keeps the reader's promises. */
    em_rng r;
    em_rng_seed(&r, 2024);
    uint32_t accepted = 0;
    const uint32_t n_random = 20000;
    uint8_t *exact = malloc(n); /* exactly n bytes: ASan sees a read past the end */
    for (uint32_t it = 0; it < n_random; it++) {
        memcpy(exact, image, n);
        uint32_t k = 1 + em_rng_u32(&r) % 4;
        for (uint32_t j = 0; j < k; j++) {
            uint32_t at = em_rng_u32(&r) % (uint32_t)data_off, v = em_rng_u32(&r);
            exact[at] = (uint8_t)(v % 3 == 0 ? 0 : v % 3 == 1 ? 0xFF : v >> 8);
        }
        rehash(exact, n, 2);
        em_blob b;
        em_status s = em_blob_open_memory(exact, n, NULL, &b);
        if (s != EM_OK) {
            if (s > EM_ERR_BLOB_MAGIC || s < EM_ERR_BLOB_CONFIG || !em_last_error()[0]) {
                em_test_failures++;
                fprintf(stderr, "FAIL random damage %u: %s (%s)\n", it, em_status_str(s), em_last_error());
            }
            continue;
        }
        accepted++;
        for (uint32_t t = 0; t < b.n_tensors; t++)
            CHECK(b.tensors[t].offset + b.tensors[t].size <= b.data_size && b.tensors[t].size > 0 &&
                  memchr(b.tensors[t].name, 0, EM_BLOB_NAME_MAX) != NULL);
        CHECK(b.config.layer_pattern.len == b.config.n_layer);
        em_blob_close(&b);
    }
    free(exact);

    /* one crafted file through the file door: same status, the path in the message */
    {
        memcpy(work, image, n);
        em_st32(rec(work, 2) + R_NDIMS, 0);
        rehash(work, n, 2);
        FILE *o = fopen(path, "wb");
        fwrite(work, 1, n, o);
        fclose(o);
        em_blob b;
        CHECK_STATUS(em_blob_open_file(path, NULL, &b), EM_ERR_BLOB_CORRUPT);
        CHECK(strstr(em_last_error(), "l0.in_proj") != NULL && strstr(em_last_error(), path) != NULL);
        remove(path);
    }

    printf("test_blob_corrupt: %llu truncations; %llu flips before the data (checksum %d, corrupt %d, magic %d, "
           "version %d); %llu data flips (%llu caught with verify_data, %llu in padding); %u/%zu crafted cases; "
           "%u random damages (%u accepted)\n",
           (unsigned long long)n_trunc, (unsigned long long)data_off, counts[-EM_ERR_BLOB_CHECKSUM],
           counts[-EM_ERR_BLOB_CORRUPT], counts[-EM_ERR_BLOB_MAGIC], counts[-EM_ERR_BLOB_VERSION],
           (unsigned long long)(n - data_off), (unsigned long long)caught, (unsigned long long)padding, passed,
           N_CASES, n_random, accepted);
    free(work);
    free(image);
    return em_test_finish("test_blob_corrupt");
}
