/*
 * test_pack_safetensors.c — the safetensors reader (tools/pack/safetensors.h) on valid files (single, sharded,
 * every dtype, a scalar, iteration order) and on malformed ones: each case in the table below must give
 * EM_ERR_FORMAT with a message naming the file (and the tensor, where there is one). Then 3000 random
 * corruptions of a valid file must each give EM_OK or EM_ERR_FORMAT, never a crash (run it under ASan).
 *
 * Run: ctest -R test_pack_safetensors (label blob).
 */
#include "test_pack_common.c"

/* A file from a header text and a data area of data_size bytes (filled with 0x3c). */
static uint8_t *make_file(const char *header, uint64_t hlen_override, size_t data_size, uint64_t *size) {
    size_t h = strlen(header);
    *size = 8 + h + data_size;
    uint8_t *b = malloc((size_t)*size);
    em_st64(b, hlen_override ? hlen_override : h);
    memcpy(b + 8, header, h);
    memset(b + 8 + h, 0x3c, data_size);
    return b;
}

// ---- valid files ----------------------------------------------------------------------------------------

static void test_valid(void) {
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t bf[4] = {0x3f80, 0x4000, 0x4040, 0x4080};
    uint16_t h1 = 0x3c00;             /* 1.0 in f16: a scalar (shape []) */
    double d2[2] = {0.5, -0.25};
    int64_t i3[3] = {7, 8, 9};
    em_st_wtensor w[5] = {
        {"z.last", EM_ST_F32, 2, {2, 3}, a},
        {"a.first", EM_ST_BF16, 1, {4}, bf},
        {"m.scalar", EM_ST_F16, 0, {0}, &h1},
        {"m.f64", EM_ST_F64, 1, {2}, d2},
        {"m.i64", EM_ST_I64, 1, {3}, i3},
    };
    uint8_t *buf;
    uint64_t size;
    CHECK_STATUS(em_st_serialize(w, 5, &buf, &size), EM_OK);
    em_st *st = NULL;
    CHECK_STATUS(em_st_open_memory(buf, size, "valid.safetensors", &st), EM_OK);
    if (st) {
        CHECK(em_st_count(st) == 5);
        /* iteration is in name order */
        CHECK(!strcmp(em_st_at(st, 0)->name, "a.first") && !strcmp(em_st_at(st, 4)->name, "z.last"));
        CHECK(em_st_at(st, 5) == NULL);
        const em_st_tensor *t = em_st_find(st, "z.last");
        CHECK(t && t->dtype == EM_ST_F32 && t->n_dims == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->n_elems == 6);
        CHECK(t && t->size == 24 && !memcmp(t->data, a, 24) && !strcmp(t->file, "valid.safetensors"));
        CHECK(t && em_st_index(st, t) == 4);
        t = em_st_find(st, "m.scalar");
        CHECK(t && t->n_dims == 0 && t->n_elems == 1 && t->size == 2 && em_f16_to_f32(em_ld16(t->data)) == 1.0f);
        t = em_st_find(st, "a.first");
        CHECK(t && t->dtype == EM_ST_BF16 && em_bf16_to_f32(em_ld16(t->data + 6)) == 4.0f);
        CHECK(em_st_find(st, "m.i64") && em_st_find(st, "m.i64")->size == 24);
        CHECK(em_st_find(st, "nope") == NULL && em_st_find(st, "") == NULL);
        em_st_close(st);
    }
    free(buf);

    /* An empty checkpoint ("{}") is valid and has no tensors; so is a zero-sized tensor. */
    uint64_t n;
    uint8_t *e = make_file("{}      ", 0, 0, &n);
    CHECK_STATUS(em_st_open_memory(e, n, "empty", &st), EM_OK);
    CHECK(st && em_st_count(st) == 0);
    em_st_close(st);
    free(e);
    e = make_file("{\"z\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[0,0]}}", 0, 0, &n);
    CHECK_STATUS(em_st_open_memory(e, n, "zero", &st), EM_OK);
    CHECK(st && em_st_find(st, "z") && em_st_find(st, "z")->n_elems == 0);
    em_st_close(st);
    free(e);
}

// ---- malformed headers -----------------------------------------------------------------------------------

typedef struct bad_case {
    const char *what;         /* what the case stands for */
    const char *header;       /* header text */
    uint64_t hlen;            /* 0: the header's length; else this value is stored as the length */
    size_t data;              /* data area bytes */
    const char *msg;          /* a piece the message must contain (besides the file label) */
} bad_case;

static const bad_case bad_cases[] = {
    {"length past the end", "{}", 100, 0, "runs past the end"},
    {"length 2^63", "{}", 1ull << 63, 0, "runs past the end"},
    {"length below 2", "{}", 1, 0, "out of range"},
    {"not JSON", "{\"a\": ", 0, 0, "not valid JSON"},
    {"JSON array", "[1, 2]", 0, 0, "not a JSON object"},
    {"garbage after JSON", "{} xx", 0, 0, "trailing bytes"},
    {"entry not an object", "{\"t\": 3}", 0, 0, "tensor t: entry is not a JSON object"},
    {"missing data_offsets", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 0, 4, "tensor t: needs"},
    {"unknown dtype", "{\"t\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 0, 1,
     "tensor t: unknown or unsupported dtype \"F8_E4M3\""},
    {"offsets past the data", "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 0, 4,
     "tensor t: data_offsets [0, 8] run past the data area (4 bytes)"},
    {"offsets not ordered", "{\"t\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 0, 8,
     "tensor t: data_offsets [8, 4] are not ordered"},
    {"offsets overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 0, 12, "overlap"},
    {"same range twice", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 4, "overlap"},
    {"shape/size mismatch", "{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 0, 8,
     "tensor t: F32 [3] needs 12 bytes but data_offsets hold 8"},
    {"shape product overflow", "{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],"
     "\"data_offsets\":[0,4]}}", 0, 4, "tensor t: shape product overflows"},
    {"byte size overflow", "{\"t\":{\"dtype\":\"F64\",\"shape\":[4294967296,536870912],"
     "\"data_offsets\":[0,4]}}", 0, 4, "tensor t: byte size overflows"},
    {"negative dim", "{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 0, 4,
     "tensor t: shape[0] is not a non-negative integer"},
    {"fractional offset", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.5,4]}}", 0, 4,
     "tensor t: data_offsets must be two non-negative integers"},
    {"three offsets", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 0, 8,
     "data_offsets must be two"},
    {"nine dims", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 0, 4,
     "tensor t: 9 dims"},
    {"duplicate name", "{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 0, 8, "tensor t appears twice"},
    {"metadata not an object", "{\"__metadata__\": 5}", 0, 0, "__metadata__"},
    {"empty name", "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 0, 4, "empty name"},
};

static void test_malformed(void) {
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *c = &bad_cases[i];
        uint64_t size;
        uint8_t *b = make_file(c->header, c->hlen, c->data, &size);
        em_st *st = (em_st *)1;
        em_status s = em_st_open_memory(b, size, "bad.safetensors", &st);
        CHECK_MSG(s == EM_ERR_FORMAT, "case '%s': status %s (%s)", c->what, em_status_str(s), em_last_error());
        CHECK_MSG(st == NULL, "case '%s': handle not cleared", c->what);
        CHECK_MSG(strstr(em_last_error(), "bad.safetensors") && strstr(em_last_error(), c->msg),
                  "case '%s': message \"%s\" lacks \"%s\"", c->what, em_last_error(), c->msg);
        free(b);
    }
    /* Shorter than the length field itself. */
    em_st *st;
    CHECK_STATUS(em_st_open_memory("abc", 3, "tiny", &st), EM_ERR_FORMAT);
    CHECK(strstr(em_last_error(), "tiny") != NULL);
}

// ---- files and shards ----------------------------------------------------------------------------------------

static void test_files(void) {
    char dir[4096], p[4200];
    tp_mkdtemp(dir, sizeof dir, "st");
    float a[4] = {1, 2, 3, 4}, b[2] = {5, 6};
    em_st_wtensor w1[1] = {{"x.a", EM_ST_F32, 1, {4}, a}};
    em_st_wtensor w2[1] = {{"x.b", EM_ST_F32, 2, {1, 2}, b}};
    tp_fmt(p, "%s/s1.safetensors", dir);
    CHECK_STATUS(em_st_write(p, w1, 1), EM_OK);
    tp_fmt(p, "%s/s2.safetensors", dir);
    CHECK_STATUS(em_st_write(p, w2, 1), EM_OK);

    em_st *st = NULL;
    CHECK_STATUS(em_st_open(dir, &st), EM_ERR_NOT_FOUND);               /* neither name present */
    CHECK(strstr(em_last_error(), "model.safetensors") != NULL);
    CHECK_STATUS(em_st_open("/nonexistent/x.safetensors", &st), EM_ERR_NOT_FOUND);
    CHECK(strstr(em_last_error(), "/nonexistent/x.safetensors") != NULL);

    /* a sharded directory */
    tp_write_text(dir, "model.safetensors.index.json",
                  "{\"metadata\": {\"total_size\": 24}, \"weight_map\": {\"x.a\": \"s1.safetensors\", "
                  "\"x.b\": \"s2.safetensors\"}}");
    CHECK_STATUS(em_st_open(dir, &st), EM_OK);
    if (st) {
        CHECK(em_st_count(st) == 2);
        const em_st_tensor *t = em_st_find(st, "x.b");
        CHECK(t && t->shape[1] == 2 && !memcmp(t->data, b, 8) && strstr(t->file, "s2.safetensors"));
        t = em_st_find(st, "x.a");
        CHECK(t && !memcmp(t->data, a, 16) && strstr(t->file, "s1.safetensors"));
        em_st_close(st);
    }
    tp_fmt(p, "%s/model.safetensors.index.json", dir);
    CHECK_STATUS(em_st_open(p, &st), EM_OK);                             /* the index file itself */
    em_st_close(st);

    /* the index names the wrong shard; a path outside the directory; a shard that does not exist */
    tp_write_text(dir, "model.safetensors.index.json",
                  "{\"weight_map\": {\"x.a\": \"s2.safetensors\", \"x.b\": \"s2.safetensors\"}}");
    CHECK_STATUS(em_st_open(dir, &st), EM_ERR_FORMAT);
    CHECK(strstr(em_last_error(), "tensor x.a is mapped to s2.safetensors") != NULL);
    tp_write_text(dir, "model.safetensors.index.json", "{\"weight_map\": {\"x.a\": \"../s1.safetensors\"}}");
    CHECK_STATUS(em_st_open(dir, &st), EM_ERR_FORMAT);
    CHECK(strstr(em_last_error(), "plain file name") != NULL);
    tp_write_text(dir, "model.safetensors.index.json", "{\"weight_map\": {\"x.a\": \"s9.safetensors\"}}");
    CHECK_STATUS(em_st_open(dir, &st), EM_ERR_NOT_FOUND);
    CHECK(strstr(em_last_error(), "s9.safetensors") != NULL);
    tp_write_text(dir, "model.safetensors.index.json", "{\"weight_map\": 3}");
    CHECK_STATUS(em_st_open(dir, &st), EM_ERR_FORMAT);
    tp_write_text(dir, "model.safetensors.index.json", "{\"weight_map\": {\"x.a\": \"s1.safetensors\",");
    CHECK_STATUS(em_st_open(dir, &st), EM_ERR_FORMAT);
    /* the same tensor in two shards */
    em_st_wtensor w3[1] = {{"x.a", EM_ST_F32, 1, {2}, b}};
    tp_fmt(p, "%s/s3.safetensors", dir);
    CHECK_STATUS(em_st_write(p, w3, 1), EM_OK);
    tp_write_text(dir, "model.safetensors.index.json",
                  "{\"weight_map\": {\"x.a\": \"s1.safetensors\", \"x.c\": \"s3.safetensors\"}}");
    CHECK_STATUS(em_st_open(dir, &st), EM_ERR_FORMAT);
    CHECK(strstr(em_last_error(), "appears twice") != NULL);
    /* a truncated single file on disk */
    tp_fmt(p, "%s/s1.safetensors", dir);
    CHECK(truncate(p, 20) == 0);
    CHECK_STATUS(em_st_open(p, &st), EM_ERR_FORMAT);
    CHECK(strstr(em_last_error(), "s1.safetensors") != NULL);
    tp_rm_rf(dir);
}

// ---- random corruption -----------------------------------------------------------------------------------------

static void test_corruption(void) {
    float a[8] = {0}, c[3] = {0};
    uint16_t b[5] = {0};
    em_st_wtensor w[3] = {
        {"layer.a", EM_ST_F32, 2, {2, 4}, a}, {"layer.b", EM_ST_BF16, 1, {5}, b}, {"layer.c", EM_ST_F32, 1, {3}, c}};
    uint8_t *good;
    uint64_t size;
    CHECK_STATUS(em_st_serialize(w, 3, &good, &size), EM_OK);
    uint8_t *buf = malloc((size_t)size);
    em_rng r;
    em_rng_seed(&r, 77);
    int ok = 0, fmt = 0, other = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, good, (size_t)size);
        int flips = 1 + (int)(em_rng_u32(&r) % 4);
        for (int k = 0; k < flips; k++) {
            /* mostly the header (that is where the structure is), sometimes the length field */
            uint64_t at = em_rng_u32(&r) % 8 == 0 ? em_rng_u32(&r) % 8 : 8 + em_rng_u32(&r) % (size - 8);
            buf[at] = (uint8_t)em_rng_u32(&r);
        }
        uint64_t len = size - (em_rng_u32(&r) % 16 == 0 ? em_rng_u32(&r) % size : 0);   /* some truncated */
        em_st *st = NULL;
        em_status s = em_st_open_memory(buf, len, "fuzz", &st);
        if (s == EM_OK) {
            ok++;
            /* whatever was accepted lies inside the buffer */
            for (size_t i = 0; i < em_st_count(st); i++) {
                const em_st_tensor *t = em_st_at(st, i);
                CHECK(t->data >= buf && t->data + t->size <= buf + len);
            }
            em_st_close(st);
        } else if (s == EM_ERR_FORMAT) {
            fmt++;
        } else {
            other++;
        }
    }
    CHECK_MSG(other == 0, "%d corruptions gave a status other than OK/FORMAT", other);
    CHECK(fmt > 1000);
    printf("  corruption: %d accepted, %d rejected\n", ok, fmt);
    free(buf);
    free(good);
}

int main(void) {
    test_valid();
    test_malformed();
    test_files();
    test_corruption();
    return em_test_finish("test_pack_safetensors");
}
