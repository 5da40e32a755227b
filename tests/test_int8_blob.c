/*
 * test_int8_blob.c — the blob's INT8 fields and the packer's int8 paths (issue 10; docs/blob-format.md,
 * "INT8 weights"):
 *   1. writer: an int8-row tensor with its F32 [rows] scale tensor round-trips through the reader (quant,
 *      scale_index, bytes); the writer refuses i8 without a quant kind, and a scale tensor that is not an
 *      unquantized f32 [rows] (wrong dtype, length, rank);
 *   2. reader: a valid INT8 image, patched field by field and resealed (checksums recomputed, so only the
 *      new check can catch it), is refused with EM_ERR_BLOB_CORRUPT and a message naming the tensor: scale
 *      of the wrong length, 2-D scale, non-f32 scale, i8 without quant, int8-row on a 3-D tensor;
 *   3. em-pack --dtype int8 from a checkpoint (f32 and bf16 sources): every 2-D matrix but the embedding is
 *      i8 + "<name>.scale"; checked against the definition computed here from the checkpoint's values
 *      (scale = max|row| / 127, |w - q scale| <= scale / 2); small tensors and the bf16 embedding as in the
 *      bf16 blob; a NaN in a matrix is refused naming the checkpoint tensor and the blob tensor;
 *   4. em_pack_random with int8 is byte for byte em_pack_random (bf16) followed by em_pack_requantize, and
 *      --requantize refuses an int8 blob; a tied config keeps the (bf16) embedding as the head;
 *   5. em_model_open binds every i8 matrix with its scale pointer (the scale tensor's bytes), the embedding
 *      as bf16, and runs a prefill on the CPU backend;
 *   6. (given the em-pack executable) the CLI: --random-init --dtype int8, --requantize, --info showing the
 *      int8-row scale links and the bytes per dtype; --requantize with --dtype bf16 and of an int8 blob fail.
 * Run: ctest -R test_int8_blob (label blob), or test_int8_blob [EM_PACK].
 */
#include <math.h>
#include <sys/wait.h>
#include <xxhash.h>

#include "blob.h"
#include "blob_layout.h"
#include "model.h"
#include "pack.h"
#include "stwrite.h"
#include "test_pack_common.c"

// ---- 1. writer ---------------------------------------------------------------------------------------------

static em_blob_config tiny_config(void) {
    em_blob_config c;
    memset(&c, 0, sizeof c);
    c.arch = EM_ARCH_MAMBA2;
    c.n_layer = 1;
    c.d_model = 16;
    c.vocab_size = 32;
    c.d_state = 4; c.d_conv = 4; c.ssm_n_head = 2; c.ssm_head_dim = 8; c.ssm_n_group = 1; c.d_inner = 16;
    c.gated_norm_group = 16;
    c.norm_eps = 1e-5f;
    c.dt_limit_max = INFINITY;
    c.bos_id = c.eos_id = c.pad_id = c.unk_id = -1;
    c.layer_pattern.ptr = "M";
    c.layer_pattern.len = 1;
    return c;
}

typedef struct wt { const char *name; em_dtype dt; uint32_t nd; uint64_t d0, d1; int quant; int scale; } wt;

/* Writes the tensors (random bytes) to path. @return the writer's status (finish or the first failure). */
static em_status write_blob(const char *path, const wt *t, int n) {
    em_blob_writer *w = NULL;
    EM_TRY(em_blob_writer_open(path, &w));
    em_blob_config c = tiny_config();
    em_status s = em_blob_writer_set_config(w, &c);
    for (int i = 0; i < n && s == EM_OK; i++) {
        em_blob_tensor d;
        memset(&d, 0, sizeof d);
        snprintf(d.name, sizeof d.name, "%s", t[i].name);
        d.dtype = t[i].dt;
        d.n_dims = t[i].nd;
        d.shape[0] = t[i].d0;
        d.shape[1] = t[i].d1;
        d.quant = (uint32_t)t[i].quant;
        d.scale_index = t[i].scale;
        d.shard_count = 1;
        s = em_blob_writer_add_tensor(w, &d, NULL);
    }
    for (int i = 0; i < n && s == EM_OK; i++) {
        size_t bytes = (size_t)(t[i].d0 * (t[i].nd > 1 ? t[i].d1 : 1) * em_dtype_size(t[i].dt));
        uint8_t *b = malloc(bytes);
        for (size_t k = 0; k < bytes; k++) b[k] = (uint8_t)(k * 37 + (size_t)i);
        if (t[i].dt == EM_DTYPE_F32) /* finite floats */
            for (size_t k = 0; k < bytes / 4; k++) { float f = 0.001f * (float)(k + 1); memcpy(b + 4 * k, &f, 4); }
        s = em_blob_writer_write(w, b, bytes);
        free(b);
    }
    if (s == EM_OK) return em_blob_writer_finish(w);
    em_blob_writer_abort(w);
    return s;
}

static const wt good[] = {
    {"embd", EM_DTYPE_BF16, 2, 32, 16, EM_QUANT_NONE, -1},
    {"l0.in_proj", EM_DTYPE_I8, 2, 8, 16, EM_QUANT_INT8_ROW, 2},
    {"l0.in_proj.scale", EM_DTYPE_F32, 1, 8, 0, EM_QUANT_NONE, -1},
    {"l0.cube", EM_DTYPE_F32, 1, 8, 0, EM_QUANT_NONE, -1},
};

static void test_writer(const char *dir) {
    char p[4200];
    tp_fmt(p, "%s/w.emb", dir);
    CHECK_STATUS(write_blob(p, good, 4), EM_OK);
    em_blob b;
    em_blob_open_options bo = {1};
    CHECK_STATUS(em_blob_open_file(p, &bo, &b), EM_OK);
    if (b.n_tensors == 4) {
        CHECK(b.tensors[1].dtype == EM_DTYPE_I8 && b.tensors[1].quant == EM_QUANT_INT8_ROW &&
              b.tensors[1].scale_index == 2);
        CHECK(b.tensors[2].quant == EM_QUANT_NONE && b.tensors[2].scale_index == -1);
    }
    em_blob_close(&b);
    /* refusals: i8 unquantized (at add_tensor), then bad scale tensors (at the first write: the table is known) */
    wt bad[4];
    memcpy(bad, good, sizeof bad);
    bad[1].quant = EM_QUANT_NONE;
    bad[1].scale = -1;
    CHECK_STATUS(write_blob(p, bad, 4), EM_ERR_INVALID_ARG);
    CHECK_MSG(strstr(em_last_error(), "l0.in_proj"), "message: %s", em_last_error());
    const struct { em_dtype dt; uint32_t nd; uint64_t d0, d1; const char *why; } scales[] = {
        {EM_DTYPE_BF16, 1, 8, 0, "bf16 scales"}, {EM_DTYPE_F32, 1, 7, 0, "7 scales for 8 rows"},
        {EM_DTYPE_F32, 2, 8, 1, "2-D scales"}, {EM_DTYPE_I32, 1, 8, 0, "i32 scales"}};
    tp_fmt(p, "%s/w_bad.emb", dir); /* a refused blob leaves no file */
    for (size_t i = 0; i < sizeof scales / sizeof scales[0]; i++) {
        memcpy(bad, good, sizeof bad);
        bad[2].dt = scales[i].dt;
        bad[2].nd = scales[i].nd;
        bad[2].d0 = scales[i].d0;
        bad[2].d1 = scales[i].d1;
        em_status s = write_blob(p, bad, 4);
        CHECK_MSG(s == EM_ERR_INVALID_ARG && strstr(em_last_error(), "l0.in_proj.scale"), "%s: %s (%s)", scales[i].why,
                  em_status_str(s), em_last_error());
        CHECK(!tp_exists(p));
    }
}

// ---- 2. reader -------------------------------------------------------------------------------------------------

/* Recomputes the table checksum, the content id and the header checksum after a table edit. */
static void reseal(uint8_t *img) {
    const uint64_t cfg_off = em_ld64(img + EM_H_CONFIG_OFF), cfg_size = em_ld64(img + EM_H_CONFIG_OFF + 8);
    const uint64_t tab_off = em_ld64(img + EM_H_TABLE_OFF), tab_size = em_ld64(img + EM_H_TABLE_OFF + 8);
    uint64_t h = XXH3_64bits(img + tab_off, (size_t)tab_size);
    for (int i = 0; i < 8; i++) img[EM_H_TABLE_SUM + i] = (uint8_t)(h >> (8 * i));
    XXH3_state_t *st = XXH3_createState();
    XXH3_128bits_reset(st);
    XXH3_128bits_update(st, img + cfg_off, (size_t)cfg_size);
    XXH3_128bits_update(st, img + tab_off, (size_t)tab_size);
    XXH128_canonical_t id;
    XXH128_canonicalFromHash(&id, XXH3_128bits_digest(st));
    XXH3_freeState(st);
    memcpy(img + EM_H_CONTENT_ID, id.digest, 16);
    h = XXH3_64bits(img, EM_H_HEADER_SUM);
    for (int i = 0; i < 8; i++) img[EM_H_HEADER_SUM + i] = (uint8_t)(h >> (8 * i));
}

static void st32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void st64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

static void test_reader(const char *dir) {
    char p[4200];
    tp_fmt(p, "%s/r.emb", dir);
    CHECK_STATUS(write_blob(p, good, 4), EM_OK);
    FILE *f = fopen(p, "rb");
    if (!f) { CHECK(0); return; }
    fseek(f, 0, SEEK_END);
    const size_t n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *pristine = malloc(n), *img = malloc(n);
    CHECK(fread(pristine, 1, n, f) == n);
    fclose(f);
    const uint64_t tab = em_ld64(pristine + EM_H_TABLE_OFF);
    uint8_t *r1 = NULL, *r2 = NULL; /* records of the i8 matrix and its scales (in the copy) */
    for (int c = 0; c < 6; c++) {
        memcpy(img, pristine, n);
        r1 = img + tab + 1 * EM_BLOB_TENSOR_RECORD;
        r2 = img + tab + 2 * EM_BLOB_TENSOR_RECORD;
        const char *what = "", *want = "";
        switch (c) {
        case 0: what = "pristine"; break;
        case 1: what = "4 scales for 8 rows"; want = "l0.in_proj"; st64(r2 + EM_T_SHAPE, 4);
                st64(r2 + EM_T_SIZE, 16); break;
        case 2: what = "2-D scales [2, 4]"; want = "l0.in_proj"; st32(r2 + EM_T_NDIMS, 2); st64(r2 + EM_T_SHAPE, 2);
                st64(r2 + EM_T_SHAPE + 8, 4); break;
        case 3: what = "i32 scales"; want = "l0.in_proj"; st32(r2 + EM_T_DTYPE, EM_DTYPE_I32); break;
        case 4: what = "i8 without a quant kind"; want = "l0.in_proj"; st32(r1 + EM_T_QUANT, EM_QUANT_NONE);
                st32(r1 + EM_T_SCALE_INDEX, 0xffffffffu); break;
        case 5: what = "int8-row on a 3-D [2, 4, 16]"; want = "l0.in_proj"; st32(r1 + EM_T_NDIMS, 3);
                st64(r1 + EM_T_SHAPE, 2); st64(r1 + EM_T_SHAPE + 8, 4); st64(r1 + EM_T_SHAPE + 16, 16); break;
        }
        reseal(img);
        em_blob b;
        em_status s = em_blob_open_memory(img, n, NULL, &b);
        if (c == 0) {
            CHECK_MSG(s == EM_OK, "pristine image: %s", em_last_error());
            em_blob_close(&b);
            continue;
        }
        CHECK_MSG(s == EM_ERR_BLOB_CORRUPT && strstr(em_last_error(), want), "%s: %s (%s)", what, em_status_str(s),
                  em_last_error());
        if (s == EM_OK) em_blob_close(&b);
        else printf("refused as wanted, %s: %s\n", what, em_last_error());
    }
    free(pristine);
    free(img);
}

// ---- 3. packing a checkpoint as int8 ----------------------------------------------------------------------------

/* Checks blob tensor `name` (i8 + scales) against the definition applied to the source rows src[rows][cols]. */
static void check_i8_tensor(const em_blob *b, const char *name, const float *src, uint64_t rows, uint64_t cols) {
    int i = em_blob_find(b, name);
    char sname[128];
    snprintf(sname, sizeof sname, "%s.scale", name);
    int si = em_blob_find(b, sname);
    CHECK_MSG(i >= 0 && si >= 0, "%s / %s missing", name, sname);
    if (i < 0 || si < 0) return;
    const em_blob_tensor *t = &b->tensors[i], *st = &b->tensors[si];
    CHECK(t->dtype == EM_DTYPE_I8 && t->quant == EM_QUANT_INT8_ROW && t->scale_index == si);
    CHECK(t->shape[0] == rows && t->shape[1] == cols && st->dtype == EM_DTYPE_F32 && st->shape[0] == rows);
    const int8_t *q = (const int8_t *)(b->data + t->offset);
    int bad = 0;
    for (uint64_t r = 0; r < rows; r++) {
        float sc;
        memcpy(&sc, b->data + st->offset + 4 * r, 4);
        double amax = 0;
        for (uint64_t k = 0; k < cols; k++) amax = fmax(amax, fabs((double)src[r * cols + k]));
        if (sc != (float)amax / 127.0f) bad++;
        for (uint64_t k = 0; k < cols; k++)
            if (fabs((double)src[r * cols + k] - (double)q[r * cols + k] * sc) > 0.50001 * sc) bad++;
    }
    CHECK_MSG(bad == 0, "%s: %d scales or values off the definition", name, bad);
}

/* The f32 values of checkpoint tensor `name` (F32 or BF16 in the tp_ckpt). */
static float *ckpt_f32(const tp_ckpt *c, const char *name, uint64_t *n_out) {
    for (size_t i = 0; i < c->n; i++) {
        if (strcmp(c->t[i].name, name)) continue;
        uint64_t n = 1;
        for (uint32_t d = 0; d < c->t[i].n_dims; d++) n *= c->t[i].shape[d];
        float *f = malloc(n * 4);
        for (uint64_t k = 0; k < n; k++)
            f[k] = c->t[i].dtype == EM_ST_F32 ? ((const float *)c->t[i].data)[k]
                                              : em_bf16_to_f32(((const uint16_t *)c->t[i].data)[k]);
        *n_out = n;
        return f;
    }
    return NULL;
}

static void make_ckpt(tp_ckpt *c, uint64_t seed) {
    memset(c, 0, sizeof *c);
    em_rng_seed(&c->rng, seed);
    tp_add(c, "backbone.embeddings.weight", EM_ST_F32, 2, TP_V, TP_D, 0, 1.0f);
    for (int i = 0; i < 2; i++) tp_add_mamba_layer(c, "backbone.", i, 0);
    tp_add(c, "backbone.norm_f.weight", EM_ST_F32, 1, TP_D, 0, 0, 1.0f);
    tp_add(c, "lm_head.weight", EM_ST_F32, 2, TP_V, TP_D, 0, 0.5f);
}

static void test_pack_checkpoint(const char *dir) {
    tp_ckpt c;
    make_ckpt(&c, 77);
    char p[4200], ob[4300], oi[4300];
    tp_fmt(p, "%s/model.safetensors", dir);
    CHECK_STATUS(em_st_write(p, c.t, c.n), EM_OK);
    tp_write_text(dir, "config.json", tp_mamba2_config);
    tp_fmt(ob, "%s/ck_bf16.emb", dir);
    tp_fmt(oi, "%s/ck_i8.emb", dir);
    em_pack_options o = em_pack_default_options();
    CHECK_STATUS(em_pack_checkpoint(dir, ob, &o, NULL), EM_OK);
    o.dtype = EM_DTYPE_I8;
    CHECK_STATUS(em_pack_checkpoint(dir, oi, &o, NULL), EM_OK);
    em_blob bb, bi;
    em_blob_open_options bo = {1};
    CHECK_STATUS(em_blob_open_file(ob, &bo, &bb), EM_OK);
    CHECK_STATUS(em_blob_open_file(oi, &bo, &bi), EM_OK);
    /* 2 layers x (in_proj, out_proj) + head: 5 matrices, 5 scale tensors more than the bf16 blob */
    CHECK_MSG(bi.n_tensors == bb.n_tensors + 5, "int8 blob has %u tensors, bf16 %u", bi.n_tensors, bb.n_tensors);
    for (uint32_t i = 0; i < bb.n_tensors; i++) {
        const em_blob_tensor *t = &bb.tensors[i];
        int j = em_blob_find(&bi, t->name);
        CHECK_MSG(j >= 0, "%s missing from the int8 blob", t->name);
        if (j < 0) continue;
        const em_blob_tensor *u = &bi.tensors[j];
        if (t->n_dims == 2 && strcmp(t->name, "embd") && strcmp(t->name + strlen(t->name) - 6, "conv_w")) {
            CHECK_MSG(u->dtype == EM_DTYPE_I8, "%s: %s, want i8", u->name, em_dtype_name(u->dtype));
        } else { /* small tensors and the embedding: the very bytes of the bf16 blob */
            CHECK_MSG(u->dtype == t->dtype && u->size == t->size && u->checksum == t->checksum, "%s differs", t->name);
        }
    }
    uint64_t n;
    float *w = ckpt_f32(&c, "backbone.layers.1.mixer.in_proj.weight", &n); /* f32 source */
    check_i8_tensor(&bi, "l1.in_proj", w, TP_INPROJ, TP_D);
    free(w);
    w = ckpt_f32(&c, "backbone.layers.0.mixer.out_proj.weight", &n); /* bf16 source */
    check_i8_tensor(&bi, "l0.out_proj", w, TP_D, TP_DI);
    free(w);
    w = ckpt_f32(&c, "lm_head.weight", &n);
    check_i8_tensor(&bi, "head", w, TP_V, TP_D);
    free(w);
    em_blob_close(&bb);
    em_blob_close(&bi);

    /* a NaN in layer 1's out_proj: refused, naming both tensors; the bf16 pack still takes it */
    for (size_t i = 0; i < c.n; i++)
        if (!strcmp(c.t[i].name, "backbone.layers.1.mixer.out_proj.weight")) ((uint16_t *)c.mem[i])[37] = 0x7fc0;
    CHECK_STATUS(em_st_write(p, c.t, c.n), EM_OK);
    tp_fmt(oi, "%s/ck_nan_i8.emb", dir);
    CHECK_STATUS(em_pack_checkpoint(dir, oi, &o, NULL), EM_ERR_FORMAT);
    CHECK_MSG(strstr(em_last_error(), "backbone.layers.1.mixer.out_proj.weight") && strstr(em_last_error(), "l1.out_proj")
              && strstr(em_last_error(), "nan"), "message: %s", em_last_error());
    printf("NaN refused: %s\n", em_last_error());
    CHECK(!tp_exists(oi));
    tp_free(&c);
}

// ---- 4. random int8 == requantized random bf16 -----------------------------------------------------------------

static const char *hybrid_cfg =
    "{\"model_type\": \"nemotron_h\", \"hidden_size\": 64, \"vocab_size\": 300, \"ssm_state_size\": 16,\n"
    " \"mamba_num_heads\": 8, \"mamba_head_dim\": 16, \"n_groups\": 2, \"num_attention_heads\": 4,\n"
    " \"num_key_value_heads\": 2, \"head_dim\": 16, \"intermediate_size\": 96, \"mlp_hidden_act\": \"relu2\",\n"
    " \"hybrid_override_pattern\": \"M*-M\", \"use_conv_bias\": false, \"tie_word_embeddings\": %s}";

static void same_blobs(const char *a, const char *b) {
    em_blob x, y;
    em_blob_open_options bo = {1};
    CHECK_STATUS(em_blob_open_file(a, &bo, &x), EM_OK);
    CHECK_STATUS(em_blob_open_file(b, &bo, &y), EM_OK);
    CHECK(x.n_tensors == y.n_tensors && x.n_tensors > 0);
    for (uint32_t i = 0; i < x.n_tensors && i < y.n_tensors; i++) {
        const em_blob_tensor *s = &x.tensors[i], *t = &y.tensors[i];
        CHECK_MSG(!strcmp(s->name, t->name) && s->dtype == t->dtype && s->size == t->size &&
                  s->quant == t->quant && s->scale_index == t->scale_index &&
                  !memcmp(x.data + s->offset, y.data + t->offset, s->size),
                  "tensor #%u %s / %s differs", i, s->name, t->name);
    }
    em_blob_close(&x);
    em_blob_close(&y);
}

/* 3-wide rows and 400001 of them: int8 chunks are whole rows (349525 of 3 = an odd 1048575 elements), so the
 * head's second chunk starts on an odd element, which em_ri_fill cannot start on (pack.c ri_produce shifts). */
static const char *odd_cfg =
    "{\"model_type\": \"mamba2\", \"hidden_size\": 3, \"num_hidden_layers\": 1, \"vocab_size\": 400001,\n"
    " \"state_size\": 4, \"num_heads\": 3, \"head_dim\": 2, \"n_groups\": 1, \"expand\": 2, \"conv_kernel\": 4,\n"
    " \"tie_word_embeddings\": false, \"time_step_limit\": [0.0, Infinity]}";

static void test_random_odd(const char *dir) {
    char cp[4200], b16[4300], i8[4300], rq[4300];
    tp_write_text(dir, "odd.json", odd_cfg);
    tp_fmt(cp, "%s/odd.json", dir);
    tp_fmt(b16, "%s/odd_bf16.emb", dir);
    tp_fmt(i8, "%s/odd_i8.emb", dir);
    tp_fmt(rq, "%s/odd_rq.emb", dir);
    em_pack_options o = em_pack_default_options();
    o.seed = 3;
    CHECK_STATUS(em_pack_random(cp, b16, &o, NULL), EM_OK);
    o.dtype = EM_DTYPE_I8;
    CHECK_STATUS(em_pack_random(cp, i8, &o, NULL), EM_OK);
    CHECK_STATUS(em_pack_requantize(b16, rq, NULL, NULL), EM_OK);
    same_blobs(i8, rq);
}

static void test_random(const char *dir) {
    test_random_odd(dir);
    for (int tied = 0; tied < 2; tied++) {
        char cfg[1024], cp[4200], b16[4300], i8[4300], rq[4300];
        snprintf(cfg, sizeof cfg, hybrid_cfg, tied ? "true" : "false");
        tp_write_text(dir, "rand.json", cfg);
        tp_fmt(cp, "%s/rand.json", dir);
        tp_fmt(b16, "%s/rand_bf16.emb", dir);
        tp_fmt(i8, "%s/rand_i8.emb", dir);
        tp_fmt(rq, "%s/rand_rq.emb", dir);
        em_pack_options o = em_pack_default_options();
        o.seed = 5;
        CHECK_STATUS(em_pack_random(cp, b16, &o, NULL), EM_OK);
        o.dtype = EM_DTYPE_I8;
        CHECK_STATUS(em_pack_random(cp, i8, &o, NULL), EM_OK);
        CHECK_STATUS(em_pack_requantize(b16, rq, NULL, NULL), EM_OK);
        same_blobs(i8, rq);
        CHECK_STATUS(em_pack_requantize(i8, rq, NULL, NULL), EM_ERR_INVALID_ARG);
        CHECK_MSG(strstr(em_last_error(), "already int8"), "message: %s", em_last_error());

        /* 5. the model binds the scales and runs */
        em_model_options mo = em_model_default_options();
        mo.backend = EM_BACKEND_CPU;
        em_model *m = NULL;
        CHECK_STATUS(em_model_open(i8, &mo, &m), EM_OK);
        if (!m) continue;
        CHECK(m->g.embd.dt == EM_DTYPE_BF16 && m->g.embd.scale == NULL);
        if (tied) CHECK(m->g.head.p == m->g.embd.p && m->g.head.dt == EM_DTYPE_BF16);
        else CHECK(m->g.head.dt == EM_DTYPE_I8 && m->g.head.scale != NULL);
        int si = em_blob_find(&m->blob, "l0.in_proj.scale"), mi = em_blob_find(&m->blob, "l2.up.scale");
        CHECK(si >= 0 && mi >= 0);
        if (si >= 0 && mi >= 0) {
            CHECK(m->layers[0].w.m2.in_proj.dt == EM_DTYPE_I8 &&
                  (const void *)m->layers[0].w.m2.in_proj.scale == m->blob.data + m->blob.tensors[si].offset);
            CHECK(m->layers[2].w.mlp.up.dt == EM_DTYPE_I8 &&
                  (const void *)m->layers[2].w.mlp.up.scale == m->blob.data + m->blob.tensors[mi].offset);
            CHECK(m->layers[1].w.attn.wq.dt == EM_DTYPE_I8 && m->layers[1].w.attn.wq.scale != NULL);
            CHECK(m->layers[0].w.m2.conv_w.dt == EM_DTYPE_F32 && m->layers[0].w.m2.conv_w.scale == NULL);
        }
        em_session *s = NULL;
        CHECK_STATUS(em_session_create(m, NULL, &s), EM_OK);
        int32_t toks[5] = {1, 7, 99, 3, 250};
        float *logits = malloc(sizeof(float) * 300);
        em_poison(logits, 300);
        if (s) CHECK_STATUS(em_session_prefill(s, toks, 5, EM_LOGITS_LAST, logits), EM_OK);
        int finite = 1;
        for (int v = 0; v < 300; v++) finite &= isfinite(logits[v]) != 0;
        CHECK_MSG(s == NULL || finite, "int8 model (tied %d): non-finite logits", tied);
        free(logits);
        em_session_free(s);
        em_model_close(m);
    }
}

// ---- 6. the CLI ---------------------------------------------------------------------------------------------------

/* Runs cmd (stdout into out, up to cap bytes); @return its exit status. */
static int run_cmd(const char *cmd, char *out, size_t cap) {
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    char sink[256];
    while (fread(sink, 1, sizeof sink, f) > 0) {} /* drain the rest, so the child never blocks on a full pipe */
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(const char *dir, const char *em_pack) {
    char cp[4200], b16[4300], i8[4300], rq[4300], cmd[20000];
    static char out[1 << 16];
    char cfg[1024];
    snprintf(cfg, sizeof cfg, hybrid_cfg, "false");
    tp_write_text(dir, "cli.json", cfg);
    tp_fmt(cp, "%s/cli.json", dir);
    tp_fmt(b16, "%s/cli_bf16.emb", dir);
    tp_fmt(i8, "%s/cli_i8.emb", dir);
    tp_fmt(rq, "%s/cli_rq.emb", dir);
    snprintf(cmd, sizeof cmd, "'%s' --random-init '%s' -o '%s' --seed 9 --dtype int8 2>&1", em_pack, cp, i8);
    CHECK_MSG(run_cmd(cmd, out, sizeof out) == 0, "%s: %s", cmd, out);
    snprintf(cmd, sizeof cmd, "'%s' --random-init '%s' -o '%s' --seed 9 2>&1 && '%s' --requantize '%s' -o '%s' 2>&1",
             em_pack, cp, b16, em_pack, b16, rq);
    CHECK_MSG(run_cmd(cmd, out, sizeof out) == 0, "%s: %s", cmd, out);
    same_blobs(i8, rq);
    snprintf(cmd, sizeof cmd, "'%s' --info '%s' --verify", em_pack, i8);
    CHECK(run_cmd(cmd, out, sizeof out) == 0);
    CHECK_MSG(strstr(out, "l0.in_proj.scale in [") && strstr(out, "int8-row, scales #") && strstr(out, "bytes by dtype") &&
              strstr(out, " i8 "), "--info output lacks the int8 columns: %.2000s", out);
    snprintf(cmd, sizeof cmd, "'%s' --requantize '%s' -o '%s' --dtype bf16 2>&1", em_pack, b16, rq);
    CHECK_MSG(run_cmd(cmd, out, sizeof out) == 1 && strstr(out, "--requantize writes int8"), "%s: %s", cmd, out);
    snprintf(cmd, sizeof cmd, "'%s' --requantize '%s' -o '%s' 2>&1", em_pack, i8, rq);
    CHECK_MSG(run_cmd(cmd, out, sizeof out) == 1 && strstr(out, "already int8"), "%s: %s", cmd, out);
}

int main(int argc, char **argv) {
    char dir[4096];
    tp_mkdtemp(dir, sizeof dir, "int8blob");
    test_writer(dir);
    test_reader(dir);
    test_pack_checkpoint(dir);
    test_random(dir);
    if (argc > 1) test_cli(dir, argv[1]);
    tp_rm_rf(dir);
    return em_test_finish("test_int8_blob");
}
