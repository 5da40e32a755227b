/*
 * test_blob_roundtrip.c — proves that what em_blob_writer writes, em_blob_open_memory and em_blob_open_file read
 * back exactly: every config field and string, the tokenizer bytes, every tensor's record and bytes, with
 * verify_data on and off; that tensor data sits 4096-aligned in the file with zero padding between tensors; that
 * em_blob_find finds each name; that the content id is stable across identical writes (the files are byte-identical)
 * and changes with one config field or one data byte; and that the writer refuses bad declarations with a message
 * and leaves no file behind.
 *
 * Run: ctest -L blob (or ./test_blob_roundtrip from the build directory). Writes scratch files under $EM_BUILD_DIR
 * (else /tmp) and removes them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "blob.h"
#include "testutil.h"
#include "util.h"

// ---- the model written: a 2-layer Mamba-2 with made-up tensors of every dtype and rank ------------------------------

typedef struct tdef {
    const char *name;
    em_dtype dtype;
    uint32_t n_dims;
    uint64_t shape[EM_BLOB_MAX_DIMS];
    const char *scale;  /* INT8_ROW: name of the scale tensor, else NULL */
} tdef;

static const tdef TENSORS[] = {
    {"embd",             EM_DTYPE_BF16, 2, {256, 64}, NULL},          /* 32 KiB: 8 pages, written in pieces */
    {"norm_f",           EM_DTYPE_F32,  1, {64}, NULL},               /* 1-D, 256 B then 3840 B of zero padding */
    {"l0.norm",          EM_DTYPE_F32,  1, {64}, NULL},
    {"l0.in_proj",       EM_DTYPE_BF16, 2, {292, 64}, NULL},          /* 37376 B: ends mid-page */
    {"l0.conv_w",        EM_DTYPE_F32,  2, {160, 4}, NULL},
    {"l0.A",             EM_DTYPE_F32,  1, {4}, NULL},                /* 16 B */
    {"l1.in_proj",       EM_DTYPE_I8,   2, {292, 64}, "l1.in_proj.scale"}, /* int8 rows, scale declared after */
    {"l1.in_proj.scale", EM_DTYPE_F32,  1, {292}, NULL},
    {"l1.cube",          EM_DTYPE_F32,  3, {3, 5, 7}, NULL},          /* 3-D, 420 B */
    {"l1.page",          EM_DTYPE_F32,  2, {16, 64}, NULL},           /* exactly 4096 B: no padding after it */
    {"l1.out_proj",      EM_DTYPE_BF16, 2, {64, 128}, NULL},          /* 16 KiB, last: the file ends with it */
};
#define N_TENSORS (sizeof TENSORS / sizeof TENSORS[0])

static uint8_t *g_bytes[N_TENSORS]; /* each tensor's bytes, as written */
static uint64_t g_size[N_TENSORS];
static uint8_t g_tokenizer[1000];

static const char PATTERN[] = "MM";
static const char TEMPLATE[] = "<|user|>\n{prompt}<|end|>\n<|assistant|>\n";
static const char NAME[] = "roundtrip-2L";

static em_blob_config make_config(void) {
    em_blob_config c;
    memset(&c, 0, sizeof c);
    c.arch = EM_ARCH_MAMBA2;
    c.n_layer = 2;
    c.d_model = 64;
    c.vocab_size = 256;
    c.d_state = 16;
    c.d_conv = 4;
    c.ssm_n_head = 4;
    c.ssm_head_dim = 32;
    c.ssm_n_group = 1;
    c.d_inner = 128;
    c.ssm_chunk = 256;
    c.norm_eps = 1e-5f;
    c.norm_kind = EM_NORM_RMS;
    c.gated_norm_group = 128;
    c.flags = EM_CFG_CONV_BIAS;
    c.dt_limit_min = 0.0f;
    c.dt_limit_max = INFINITY;
    c.bos_id = 1;
    c.eos_id = 2;
    c.pad_id = 0;
    c.unk_id = -1;
    c.max_context = 2048;
    c.tokenizer_kind = EM_TOK_SPM;
    c.layer_pattern = (em_blob_string){PATTERN, (uint32_t)strlen(PATTERN)};
    c.chat_template = (em_blob_string){TEMPLATE, (uint32_t)strlen(TEMPLATE)};
    c.name = (em_blob_string){NAME, (uint32_t)strlen(NAME)};
    return c;
}

static int find_def(const char *name) {
    for (size_t i = 0; i < N_TENSORS; i++)
        if (!strcmp(TENSORS[i].name, name)) return (int)i;
    return -1;
}

static void make_data(uint64_t seed) {
    em_rng r;
    em_rng_seed(&r, seed);
    for (size_t i = 0; i < N_TENSORS; i++) {
        const tdef *d = &TENSORS[i];
        uint64_t n = em_dtype_size(d->dtype);
        for (uint32_t k = 0; k < d->n_dims; k++) n *= d->shape[k];
        g_size[i] = n;
        free(g_bytes[i]);
        g_bytes[i] = malloc(n);
        for (uint64_t k = 0; k < n; k++) g_bytes[i][k] = (uint8_t)em_rng_u32(&r);
    }
    for (size_t k = 0; k < sizeof g_tokenizer; k++) g_tokenizer[k] = (uint8_t)(k * 7u); /* zeros included */
}

// ---- writing and reading files --------------------------------------------------------------------------------------

/* Writes the blob: the first 6 tensors in random-size pieces, the rest in one call that spans tensors. */
static em_status write_blob(const char *path, const em_blob_config *cfg, uint64_t split_seed) {
    em_blob_writer *w = NULL;
    EM_TRY(em_blob_writer_open(path, &w));
    em_status s = em_blob_writer_set_config(w, cfg);
    if (s == EM_OK) s = em_blob_writer_set_tokenizer(w, g_tokenizer, sizeof g_tokenizer);
    for (size_t i = 0; s == EM_OK && i < N_TENSORS; i++) {
        em_blob_tensor t;
        memset(&t, 0xAB, sizeof t); /* garbage in offset/size/checksum and after the name: the writer ignores them */
        snprintf(t.name, sizeof t.name, "%s", TENSORS[i].name);
        t.dtype = TENSORS[i].dtype;
        t.n_dims = TENSORS[i].n_dims;
        memcpy(t.shape, TENSORS[i].shape, sizeof t.shape);
        t.layout = EM_LAYOUT_ROW_MAJOR;
        t.quant = TENSORS[i].scale ? EM_QUANT_INT8_ROW : EM_QUANT_NONE;
        t.scale_index = TENSORS[i].scale ? find_def(TENSORS[i].scale) : -1;
        t.shard_rank = 0;
        t.shard_count = 1;
        uint32_t idx = 99;
        s = em_blob_writer_add_tensor(w, &t, &idx);
        CHECK(s != EM_OK || idx == i);
    }
    em_rng r;
    em_rng_seed(&r, split_seed);
    size_t i = 0;
    for (; s == EM_OK && i < 6; i++) {
        uint64_t done = 0;
        while (s == EM_OK && done < g_size[i]) {
            uint64_t k = 1 + em_rng_u32(&r) % (g_size[i] - done);
            s = em_blob_writer_write(w, g_bytes[i] + done, k);
            done += k;
        }
    }
    uint64_t rest = 0;
    for (size_t j = i; j < N_TENSORS; j++) rest += g_size[j];
    uint8_t *cat = malloc(rest);
    for (uint64_t at = 0; i < N_TENSORS; at += g_size[i], i++) memcpy(cat + at, g_bytes[i], g_size[i]);
    if (s == EM_OK) s = em_blob_writer_write(w, cat, rest);
    free(cat);
    if (s != EM_OK) {
        em_blob_writer_abort(w);
        return s;
    }
    return em_blob_writer_finish(w);
}

static uint8_t *read_all(const char *path, uint64_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    if (fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
    *size = (uint64_t)n;
    return b;
}

static int file_exists(const char *path) { struct stat st; return stat(path, &st) == 0; }

// ---- checks ---------------------------------------------------------------------------------------------------------

/* Every field of an opened blob against what was written. */
static void check_blob(const char *label, const em_blob *b, const em_blob_config *cfg, uint64_t file_size) {
    CHECK_MSG(b->version == EM_BLOB_VERSION && b->flags == 0, "%s: version %u flags %u", label, b->version, b->flags);
    CHECK_MSG(b->file_size == file_size, "%s: file_size %llu, want %llu", label, (unsigned long long)b->file_size,
              (unsigned long long)file_size);
    /* config: every X-macro field, compared as bytes (so INFINITY and -1 compare exactly) */
#define CHECK_FIELD(T, name) \
    CHECK_MSG(!memcmp(&b->config.name, &cfg->name, 4), "%s: config field %s differs", label, #name);
    EM_CONFIG_FIELDS(CHECK_FIELD)
#undef CHECK_FIELD
#define CHECK_STR(name)                                                                                       \
    CHECK_MSG(b->config.name.len == cfg->name.len && !memcmp(b->config.name.ptr, cfg->name.ptr, cfg->name.len), \
              "%s: config string %s is '%.*s', want '%.*s'", label, #name, (int)b->config.name.len,            \
              b->config.name.ptr ? b->config.name.ptr : "", (int)cfg->name.len, cfg->name.ptr);
    EM_CONFIG_STRINGS(CHECK_STR)
#undef CHECK_STR
    CHECK(b->tokenizer_size == sizeof g_tokenizer && !memcmp(b->tokenizer, g_tokenizer, sizeof g_tokenizer));
    CHECK_MSG((uint64_t)(b->data - b->base) % EM_BLOB_ALIGN == 0, "%s: data section at %lld", label,
              (long long)(b->data - b->base));
    CHECK_MSG(b->n_tensors == N_TENSORS, "%s: %u tensors", label, b->n_tensors);
    if (b->n_tensors != N_TENSORS) return;
    uint64_t prev_end = 0;
    for (size_t i = 0; i < N_TENSORS; i++) {
        const em_blob_tensor *t = &b->tensors[i];
        const tdef *d = &TENSORS[i];
        CHECK_MSG(!strcmp(t->name, d->name), "%s: tensor %zu is '%s', want '%s'", label, i, t->name, d->name);
        CHECK_MSG(t->dtype == (uint32_t)d->dtype && t->n_dims == d->n_dims &&
                  !memcmp(t->shape, d->shape, sizeof t->shape), "%s: tensor '%s': dtype/shape differ", label, d->name);
        CHECK(t->layout == EM_LAYOUT_ROW_MAJOR && t->shard_rank == 0 && t->shard_count == 1);
        CHECK(t->quant == (d->scale ? (uint32_t)EM_QUANT_INT8_ROW : (uint32_t)EM_QUANT_NONE));
        CHECK(t->scale_index == (d->scale ? find_def(d->scale) : -1));
        CHECK_MSG(t->size == g_size[i], "%s: tensor '%s': size %llu, want %llu", label, d->name,
                  (unsigned long long)t->size, (unsigned long long)g_size[i]);
        CHECK(t->checksum == XXH3_64bits(g_bytes[i], g_size[i]));
        uint64_t file_off = (uint64_t)(b->data - b->base) + t->offset;
        CHECK_MSG(file_off % EM_BLOB_ALIGN == 0, "%s: tensor '%s' at file offset %llu", label, d->name,
                  (unsigned long long)file_off);
        CHECK_MSG(t->offset >= prev_end, "%s: tensor '%s' out of declaration order", label, d->name);
        CHECK_MSG(t->size == g_size[i] && !memcmp(b->data + t->offset, g_bytes[i], g_size[i]),
                  "%s: tensor '%s': bytes differ", label, d->name);
        /* zero padding from the end of the previous tensor up to this one */
        for (uint64_t k = prev_end; k < t->offset; k++)
            if (b->data[k]) {
                CHECK_MSG(0, "%s: nonzero padding byte at data offset %llu", label, (unsigned long long)k);
                break;
            }
        prev_end = t->offset + t->size;
        CHECK(em_blob_find(b, d->name) == (int)i);
    }
    CHECK_MSG(prev_end == b->data_size, "%s: data section %llu bytes, last tensor ends at %llu", label,
              (unsigned long long)b->data_size, (unsigned long long)prev_end);
    CHECK(em_blob_find(b, "l9.nope") == -1);
    CHECK(em_blob_find(b, "") == -1);
    CHECK(em_blob_find(b, NULL) == -1);
}

/* Writer misuse: each call fails with the status asked and a message, and no file (or .tmp) is left. */
static void check_writer_errors(const char *path) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    em_blob_config cfg = make_config();
    em_blob_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "w");
    t.dtype = EM_DTYPE_F32;
    t.n_dims = 1;
    t.shape[0] = 4;
    t.scale_index = -1;
    t.shard_count = 1;
    em_blob_writer *w = NULL;
    remove(path);

    CHECK_STATUS(em_blob_writer_open(path, &w), EM_OK);
    CHECK(file_exists(tmp));
    em_blob_tensor bad = t;
    memset(bad.name, 'x', sizeof bad.name - 1); /* 95 chars: the longest allowed */
    bad.name[sizeof bad.name - 1] = 0;
    CHECK_STATUS(em_blob_writer_add_tensor(w, &bad, NULL), EM_OK);
    bad.name[sizeof bad.name - 1] = 'x';        /* 96 chars, no NUL */
    CHECK_STATUS(em_blob_writer_add_tensor(w, &bad, NULL), EM_ERR_INVALID_ARG);
    CHECK(em_last_error()[0] != 0);
    bad = t; bad.name[0] = 0;
    CHECK_STATUS(em_blob_writer_add_tensor(w, &bad, NULL), EM_ERR_INVALID_ARG);
    bad = t; snprintf(bad.name, sizeof bad.name, "has space");
    CHECK_STATUS(em_blob_writer_add_tensor(w, &bad, NULL), EM_ERR_INVALID_ARG);
    bad = t; bad.dtype = 9;
    CHECK_STATUS(em_blob_writer_add_tensor(w, &bad, NULL), EM_ERR_INVALID_ARG);
    bad = t; bad.n_dims = 0;
    CHECK_STATUS(em_blob_writer_add_tensor(w, &bad, NULL), EM_ERR_INVALID_ARG);
    bad = t; bad.n_dims = 5;
    CHECK_STATUS(em_blob_writer_add_tensor(w, &bad, NULL), EM_ERR_INVALID_ARG);
    bad = t; bad.shape[0] = 0;
    CHECK_STATUS(em_blob_writer_add_tensor(w, &bad, NULL), EM_ERR_INVALID_ARG);
    bad = t; bad.n_dims = 3; bad.shape[1] = bad.shape[2] = 1ull << 32; /* 4 * 4 * 2^64 bytes */
    CHECK_STATUS(em_blob_writer_add_tensor(w, &bad, NULL), EM_ERR_INVALID_ARG);
    bad = t; bad.shape[2] = 3;                                    /* unused dim not zero */
    CHECK_STATUS(em_blob_writer_add_tensor(w, &bad, NULL), EM_ERR_INVALID_ARG);
    bad = t; bad.quant = EM_QUANT_INT8_ROW;                       /* f32 tensor with int8 quant */
    CHECK_STATUS(em_blob_writer_add_tensor(w, &bad, NULL), EM_ERR_INVALID_ARG);
    bad = t; bad.shard_count = 0;
    CHECK_STATUS(em_blob_writer_add_tensor(w, &bad, NULL), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_blob_writer_write(w, "abcd", 4), EM_ERR_BAD_STATE); /* no config yet */
    CHECK_STATUS(em_blob_writer_set_config(w, &cfg), EM_OK);
    CHECK_STATUS(em_blob_writer_add_tensor(w, &t, NULL), EM_OK);
    CHECK_STATUS(em_blob_writer_write(w, "abcd", 4), EM_OK);            /* part of the 95-char tensor */
    CHECK_STATUS(em_blob_writer_add_tensor(w, &t, NULL), EM_ERR_BAD_STATE);
    CHECK_STATUS(em_blob_writer_set_config(w, &cfg), EM_ERR_BAD_STATE);
    CHECK_STATUS(em_blob_writer_finish(w), EM_ERR_BAD_STATE);            /* 12 of 16 + 16 bytes missing */
    CHECK(em_last_error()[0] != 0);
    CHECK(!file_exists(tmp) && !file_exists(path));

    /* duplicate names are found when the layout is fixed (first write) */
    CHECK_STATUS(em_blob_writer_open(path, &w), EM_OK);
    CHECK_STATUS(em_blob_writer_set_config(w, &cfg), EM_OK);
    CHECK_STATUS(em_blob_writer_add_tensor(w, &t, NULL), EM_OK);
    CHECK_STATUS(em_blob_writer_add_tensor(w, &t, NULL), EM_OK);
    CHECK_STATUS(em_blob_writer_write(w, "abcd", 4), EM_ERR_INVALID_ARG);
    em_blob_writer_abort(w);
    CHECK(!file_exists(tmp) && !file_exists(path));

    /* more bytes than declared */
    CHECK_STATUS(em_blob_writer_open(path, &w), EM_OK);
    CHECK_STATUS(em_blob_writer_set_config(w, &cfg), EM_OK);
    CHECK_STATUS(em_blob_writer_add_tensor(w, &t, NULL), EM_OK);
    CHECK_STATUS(em_blob_writer_write(w, "0123456789abcdefXY", 18), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_blob_writer_finish(w), EM_ERR_INVALID_ARG);          /* the error sticks */
    CHECK(!file_exists(tmp) && !file_exists(path));

    /* a blob with no tensors and no tokenizer is valid; the data section is empty */
    em_blob_config c0 = cfg;
    c0.tokenizer_kind = EM_TOK_NONE;
    CHECK_STATUS(em_blob_writer_open(path, &w), EM_OK);
    CHECK_STATUS(em_blob_writer_set_config(w, &c0), EM_OK);
    CHECK_STATUS(em_blob_writer_finish(w), EM_OK);
    em_blob b;
    CHECK_STATUS(em_blob_open_file(path, NULL, &b), EM_OK);
    CHECK(b.n_tensors == 0 && b.tensors == NULL && b.data_size == 0 && b.tokenizer_size == 0);
    CHECK(b.file_size % EM_BLOB_ALIGN == 0);
    CHECK(em_blob_find(&b, "w") == -1);
    em_blob_close(&b);
    em_blob_close(&b); /* zeroed by the first close: safe */
    remove(path);

    CHECK_STATUS(em_blob_writer_open(NULL, &w), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_blob_writer_open("/nonexistent-dir/x.emb", &w), EM_ERR_IO);
    CHECK(w == NULL);
    CHECK_STATUS(em_blob_open_file("/nonexistent-dir/x.emb", NULL, &b), EM_ERR_NOT_FOUND);
    CHECK_STATUS(em_blob_open_memory(NULL, 0, NULL, &b), EM_ERR_BLOB_TRUNCATED);
    CHECK_STATUS(em_blob_open_memory(NULL, 10, NULL, &b), EM_ERR_INVALID_ARG);
}

// ---- main -----------------------------------------------------------------------------------------------------------

int main(void) {
    const char *dir = getenv("EM_BUILD_DIR");
    if (!dir || !*dir) dir = "/tmp";
    char path[4096], path2[4096], path3[4096];
    snprintf(path, sizeof path, "%s/test_blob_roundtrip.%d.emb", dir, (int)getpid());
    snprintf(path2, sizeof path2, "%s/test_blob_roundtrip.%d.2.emb", dir, (int)getpid());
    snprintf(path3, sizeof path3, "%s/test_blob_roundtrip.%d.3.emb", dir, (int)getpid());

    /* dtype table */
    CHECK(em_dtype_size(EM_DTYPE_F32) == 4 && em_dtype_size(EM_DTYPE_BF16) == 2 && em_dtype_size(EM_DTYPE_F16) == 2);
    CHECK(em_dtype_size(EM_DTYPE_I8) == 1 && em_dtype_size(EM_DTYPE_I32) == 4 && em_dtype_size(5) == 0);
    CHECK(!strcmp(em_dtype_name(EM_DTYPE_BF16), "bf16") && !strcmp(em_dtype_name(EM_DTYPE_I8), "i8"));
    CHECK(!strcmp(em_dtype_name(77), "?"));

    make_data(42);
    em_blob_config cfg = make_config();
    CHECK_STATUS(write_blob(path, &cfg, 1), EM_OK);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(!file_exists(tmp));
    uint64_t size = 0;
    uint8_t *bytes = read_all(path, &size);
    CHECK(bytes && size > 0);

    /* the same blob through all four doors */
    for (int verify = 0; verify <= 1; verify++) {
        em_blob_open_options o = {.verify_data = verify};
        em_blob b;
        char label[64];
        snprintf(label, sizeof label, "memory, verify_data=%d", verify);
        CHECK_STATUS(em_blob_open_memory(bytes, size, &o, &b), EM_OK);
        CHECK(b.mapping == NULL && b.base == bytes);
        check_blob(label, &b, &cfg, size);
        em_blob_close(&b);
        snprintf(label, sizeof label, "file, verify_data=%d", verify);
        CHECK_STATUS(em_blob_open_file(path, &o, &b), EM_OK);
        CHECK(b.mapping != NULL && b.base != NULL);
        CHECK(em_last_error()[0] == 0);
        check_blob(label, &b, &cfg, size);
        em_blob_close(&b);
    }

    /* content id: identical writes (data split differently) give identical files; one field or byte changes it */
    uint8_t id1[16], id2[16], id3[16], id4[16];
    em_blob b;
    CHECK_STATUS(em_blob_open_memory(bytes, size, NULL, &b), EM_OK);
    memcpy(id1, b.content_id, 16);
    em_blob_close(&b);
    CHECK_STATUS(write_blob(path2, &cfg, 2), EM_OK);
    uint64_t size2 = 0;
    uint8_t *bytes2 = read_all(path2, &size2);
    CHECK(size2 == size && bytes2 && !memcmp(bytes, bytes2, size));
    CHECK_STATUS(em_blob_open_file(path2, NULL, &b), EM_OK);
    memcpy(id2, b.content_id, 16);
    em_blob_close(&b);
    CHECK(!memcmp(id1, id2, 16));
    em_blob_config cfg3 = cfg;
    cfg3.norm_eps = 1e-6f;
    CHECK_STATUS(write_blob(path3, &cfg3, 1), EM_OK);
    CHECK_STATUS(em_blob_open_file(path3, NULL, &b), EM_OK);
    memcpy(id3, b.content_id, 16);
    CHECK(b.config.norm_eps == 1e-6f);
    em_blob_close(&b);
    CHECK(memcmp(id1, id3, 16) != 0);
    g_bytes[3][100] ^= 1; /* one data byte: the table's checksum, hence the id, changes */
    CHECK_STATUS(write_blob(path3, &cfg, 1), EM_OK);
    CHECK_STATUS(em_blob_open_file(path3, NULL, &b), EM_OK);
    memcpy(id4, b.content_id, 16);
    em_blob_close(&b);
    CHECK(memcmp(id1, id4, 16) != 0);
    /* the id is XXH3-128 of config + table, big-endian canonical (docs/blob-format.md) */
    {
        uint64_t cfg_off = em_ld64(bytes + 32), cfg_size = em_ld64(bytes + 40);
        uint64_t tab_off = em_ld64(bytes + 64), tab_size = em_ld64(bytes + 72);
        uint8_t *cat = malloc(cfg_size + tab_size);
        memcpy(cat, bytes + cfg_off, cfg_size);
        memcpy(cat + cfg_size, bytes + tab_off, tab_size);
        XXH128_canonical_t c;
        XXH128_canonicalFromHash(&c, XXH3_128bits(cat, cfg_size + tab_size));
        CHECK(!memcmp(c.digest, id1, 16) && !memcmp(bytes + 104, id1, 16));
        free(cat);
    }

    check_writer_errors(path3);

    remove(path);
    remove(path2);
    remove(path3);
    free(bytes);
    free(bytes2);
    for (size_t i = 0; i < N_TENSORS; i++) free(g_bytes[i]);
    return em_test_finish("test_blob_roundtrip");
}
