/*
 * seedgen.c — writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/) from C, so that they are
 * reproducible and need no Python: valid inputs of each format, small, in the states that reach the most code.
 * fuzz/make_seeds.sh builds and runs it (and copies the fixture files that are seeds as they are). Blob seeds are
 * named *.blob, not *.emb, which .gitignore excludes.
 *
 *   build/cpu/tests/fuzz_seedgen fuzz/corpus
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blob.h"
#include "fuzz_models.h"
#include "stwrite.h"

static const char *g_root;
static int g_failed;

static void put_file(const char *target, const char *name, const void *p, size_t n) {
    char dir[4096], path[4200];
    snprintf(dir, sizeof dir, "%s/%s", g_root, target);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) { fprintf(stderr, "seedgen: cannot write %s\n", path); g_failed = 1; }
    if (f) fclose(f);
}

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long l = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)l + 1);
    if (b && fread(b, 1, (size_t)l, f) != (size_t)l) { free(b); b = NULL; }
    fclose(f);
    *n = (size_t)l;
    return b;
}

static void check(em_status s, const char *what) {
    if (s != EM_OK) { fprintf(stderr, "seedgen: %s: %s\n", what, em_last_error()); g_failed = 1; }
}

// ---- blob -------------------------------------------------------------------------------------------------

static void copy_blob(const char *tmp, const char *name) {
    size_t n = 0;
    uint8_t *b = read_all(tmp, &n);
    if (!b) { fprintf(stderr, "seedgen: cannot read %s\n", tmp); g_failed = 1; return; }
    put_file("blob", name, b, n);
    free(b);
}

static void blobs(void) {
    char tmp[] = "/tmp/em-seedgen-XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0) { g_failed = 1; return; }
    close(fd);
    /* one Mamba-2 layer, tied embeddings, bf16 matrices: the smallest model the loader runs */
    em_tiny_spec m2 = em_tiny_default();
    m2.n_layer = 1; m2.d_model = 8; m2.vocab = 16; m2.d_state = 4; m2.n_head = 2; m2.head_dim = 4; m2.n_group = 1;
    m2.tied = 1; m2.matrix_dtype = EM_DTYPE_BF16;
    check(em_tiny_write(tmp, &m2), "mamba2 blob");
    copy_blob(tmp, "mamba2_1layer_bf16.blob");
    /* the snapshot target's hybrid: attention and MLP layers too */
    em_tiny_spec hy = em_fuzz_snap_spec();
    check(em_tiny_write(tmp, &hy), "hybrid blob");
    copy_blob(tmp, "hybrid_attn_mlp.blob");
    /* no tensors, a tokenizer section: the header, config and section checks without 4 KB of padding each */
    em_blob b;
    check(em_blob_open_file(tmp, NULL, &b), "reopen");
    em_blob_config c = b.config;
    c.tokenizer_kind = EM_TOK_BPE;
    static const char tj[] = "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]}}";
    char tmp2[] = "/tmp/em-seedgen2-XXXXXX";
    fd = mkstemp(tmp2);
    if (fd >= 0) close(fd);
    em_blob_writer *w = NULL;
    check(em_blob_writer_open(tmp2, &w), "writer");
    if (w) {
        check(em_blob_writer_set_config(w, &c), "config");
        check(em_blob_writer_set_tokenizer(w, tj, sizeof tj - 1), "tokenizer");
        check(em_blob_writer_finish(w), "finish");
        copy_blob(tmp2, "no_tensors_tokenizer.blob");
    }
    em_blob_close(&b);
    unlink(tmp);
    unlink(tmp2);
}

// ---- safetensors --------------------------------------------------------------------------------------------

static void safetensors(void) {
    float f[12];
    for (int i = 0; i < 12; i++) f[i] = (float)i * 0.5f - 2.0f;
    uint16_t h[6] = { 0x3f80, 0xbf80, 0x0000, 0x7f80, 0x4000, 0x3c00 };
    int64_t q[2] = { -1, 1 };
    double d[1] = { 3.25 };
    em_st_wtensor ts[] = {
        { .name = "backbone.embeddings.weight", .dtype = EM_ST_F32, .n_dims = 2, .shape = { 4, 3 }, .data = f },
        { .name = "backbone.norm_f.weight", .dtype = EM_ST_BF16, .n_dims = 1, .shape = { 6 }, .data = h },
        { .name = "a.f16", .dtype = EM_ST_F16, .n_dims = 3, .shape = { 1, 2, 3 }, .data = h },
        { .name = "i64", .dtype = EM_ST_I64, .n_dims = 1, .shape = { 2 }, .data = q },
        { .name = "scalar", .dtype = EM_ST_F64, .n_dims = 0, .shape = { 0 }, .data = d },
        { .name = "empty", .dtype = EM_ST_F32, .n_dims = 2, .shape = { 0, 5 }, .data = f },
    };
    struct { const char *name; size_t first, n; } sets[] = {
        { "all_dtypes.safetensors", 0, 6 }, { "one_tensor.safetensors", 0, 1 }, { "none.safetensors", 0, 0 },
        { "scalar.safetensors", 4, 1 } };
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) {
        uint8_t *buf = NULL;
        uint64_t n = 0;
        check(em_st_serialize(ts + sets[i].first, sets[i].n, &buf, &n), sets[i].name);
        if (buf) put_file("safetensors", sets[i].name, buf, (size_t)n);
        free(buf);
    }
    /* with a __metadata__ entry, as HF writes it */
    static const char meta[] = "{\"__metadata__\":{\"format\":\"pt\"},\"x\":{\"dtype\":\"F32\",\"shape\":[2],"
                               "\"data_offsets\":[0,8]}}";
    uint8_t buf[256];
    uint64_t hl = sizeof meta - 1;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(hl >> (8 * i));
    memcpy(buf + 8, meta, hl);
    memcpy(buf + 8 + hl, f, 8);
    put_file("safetensors", "metadata.safetensors", buf, 8 + hl + 8);
}

// ---- tokenizers -------------------------------------------------------------------------------------------

/* op byte (tok_fuzz.h): bits 0-1 op (0/1 encode, 2 decode, 3 find), bits 2-3 flags */
static void tok_seed(const char *target, const char *name, uint8_t op, const void *arg, size_t n) {
    uint8_t *b = malloc(n + 1);
    b[0] = op;
    memcpy(b + 1, arg, n);
    put_file(target, name, b, n + 1);
    free(b);
}

static void tokenizers(void) {
    static const char *texts[] = {
        "It is a truth universally acknowledged, that a single man in possession of a good fortune",
        "caf\xc3\xa9 na\xc3\xafve \xe2\x82\xac 100 \xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87\n\ttabs  and   spaces",
        "<|endoftext|><|im_start|>user\nhi<|im_end|></s><s>[MASK]",
        "bad \xff\xfe \xc3 \xe2\x82 \xed\xa0\x80 \xf4\x90\x80\x80 bytes",
        "    int main(void) { return 0; }\n",
        "e\xcc\x81 A\xcc\x8a \xef\xac\x81 \xe2\x84\xab", /* combining marks, ligature, Angstrom: NFC / NFKC */
    };
    static const char *names[] = { "enc_english", "enc_unicode", "enc_special", "enc_invalid", "enc_code",
                                   "enc_normalize" };
    const char *targets[2] = { "tok_spm", "tok_bpe" };
    for (int t = 0; t < 2; t++) {
        for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
            char nm[64];
            snprintf(nm, sizeof nm, "%s_plain", names[i]);
            tok_seed(targets[t], nm, 1, texts[i], strlen(texts[i]));
            snprintf(nm, sizeof nm, "%s_bos_special", names[i]);
            tok_seed(targets[t], nm, 0 | (3 << 2), texts[i], strlen(texts[i]));
        }
        int32_t ids[16];
        for (int i = 0; i < 16; i++) ids[i] = i * 31 + 3;
        tok_seed(targets[t], "dec_in_range", 2 | (2 << 2), ids, sizeof ids);
        int32_t bad[3] = { 5, -1, 1 << 30 };
        tok_seed(targets[t], "dec_out_of_range", 2, bad, sizeof bad);
        int32_t low[8] = { 0, 1, 2, 3, 4, 5, 6, 7 }; /* control and byte pieces */
        tok_seed(targets[t], "dec_low_ids_skip_special", 2 | (1 << 2), low, sizeof low);
        tok_seed(targets[t], "find_eos", 3, "</s>", 4);
        tok_seed(targets[t], "find_special", 3, "<|endoftext|>", 13);
        tok_seed(targets[t], "find_word", 3, " the", 4);
    }
}

// ---- snapshots --------------------------------------------------------------------------------------------

static void snap_seed(em_session *s, const char *name) {
    size_t n = 0;
    check(em_session_snapshot(s, NULL, 0, &n), "snapshot size");
    uint8_t *b = malloc(n);
    check(em_session_snapshot(s, b, n, &n), "snapshot");
    put_file("snapshot", name, b, n);
    free(b);
}

static void snapshots(void) {
    char tmp[] = "/tmp/em-seedgen-snap-XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0) { g_failed = 1; return; }
    close(fd);
    em_tiny_spec spec = em_fuzz_snap_spec();
    em_model_options mo = em_model_default_options();
    mo.backend = EM_BACKEND_CPU;
    mo.n_threads = 1;
    em_session_options so = em_fuzz_snap_session();
    em_model *m = NULL;
    em_session *s = NULL;
    check(em_tiny_write(tmp, &spec), "snapshot model");
    check(em_model_open(tmp, &mo, &m), "open");
    if (m) check(em_session_create(m, &so, &s), "session");
    unlink(tmp);
    if (!s) return;
    snap_seed(s, "fresh");
    const int32_t toks[5] = { 1, 7, 9, 40, 2 };
    check(em_session_prefill(s, toks, 5, EM_LOGITS_NONE, NULL), "prefill");
    snap_seed(s, "prefill5_no_logits");
    check(em_session_prefill(s, toks, 3, EM_LOGITS_LAST, NULL), "prefill");
    snap_seed(s, "prefill8_logits");
    em_generate_options go = em_generate_default_options();
    go.max_tokens = 6;
    go.sampler.temperature = 0.8f;
    go.sampler.repeat_penalty = 1.2f;
    go.sampler.seed = 5;
    check(em_session_generate_tokens(s, toks, 2, &go, NULL, NULL, NULL), "generate");
    snap_seed(s, "generated_sampler_window");
    em_session_free(s);
    em_model_close(m);
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s CORPUS_ROOT\n", argv[0]); return 2; }
    g_root = argv[1];
    mkdir(g_root, 0755);
    blobs();
    safetensors();
    tokenizers();
    snapshots();
    if (g_failed) return 1;
    printf("seedgen: seeds written under %s\n", g_root);
    return 0;
}
