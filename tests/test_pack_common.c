/*
 * test_pack_common.c — helpers shared by the em-pack tests (test_pack*.c), #included by each of them (it is
 * not a test and has no main): temporary directories, small files, and tiny HF checkpoints written from C
 * (the tests must not need Python). Every function is static and may go unused in a given test.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"
#include "stwrite.h"
#include "testutil.h"
#include "util.h"

#define TP_UNUSED __attribute__((unused))

/* snprintf into an array, exiting on truncation (a test path that does not fit is a broken test). */
TP_UNUSED static void tp_fmt_check(int k, size_t cap, int line) {
    if (k < 0 || (size_t)k >= cap) { fprintf(stderr, "test_pack: string too long (line %d)\n", line); exit(1); }
}
#define tp_fmt(buf, ...) tp_fmt_check(snprintf(buf, sizeof buf, __VA_ARGS__), sizeof buf, __LINE__)

// ---- files -------------------------------------------------------------------------------------------

/* A fresh directory under $TMPDIR (or /tmp); static buffer per call site is the caller's copy. */
TP_UNUSED static void tp_mkdtemp(char *out, size_t cap, const char *tag) {
    const char *t = getenv("TMPDIR");
    snprintf(out, cap, "%s/em_%s_XXXXXX", t && *t ? t : "/tmp", tag);
    if (!mkdtemp(out)) { perror("mkdtemp"); exit(1); }
}

/* Removes a directory and the files in it (one level: the tests make flat directories). */
TP_UNUSED static void tp_rm_rf(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[4096];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            tp_fmt(p, "%s/%s", dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

TP_UNUSED static void tp_write(const char *dir, const char *name, const void *bytes, size_t n) {
    char p[4096];
    tp_fmt(p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(bytes, 1, n, f) != n) { perror(p); exit(1); }
    fclose(f);
}

TP_UNUSED static void tp_write_text(const char *dir, const char *name, const char *text) {
    tp_write(dir, name, text, strlen(text));
}

TP_UNUSED static int tp_exists(const char *path) { return access(path, F_OK) == 0; }

// ---- checkpoints ----------------------------------------------------------------------------------------

typedef struct tp_ckpt {
    em_st_wtensor t[128];
    void *mem[128];
    size_t n;
    em_rng rng;
} tp_ckpt;

/* A random normal-range IEEE half (exponent 10..17: |x| in [2^-5, 8)). */
static uint16_t tp_rand_f16(em_rng *r) {
    uint32_t u = em_rng_u32(r);
    return (uint16_t)(((u & 1u) << 15) | ((10u + (u >> 1) % 8u) << 10) | ((u >> 8) & 0x3ffu));
}

/* Adds a tensor of random values (|x| < scale for float dtypes) to the checkpoint. */
TP_UNUSED static void tp_add(tp_ckpt *c, const char *name, em_st_dtype dt, uint32_t nd, uint64_t d0, uint64_t d1,
                             uint64_t d2, float scale) {
    EM_ASSERT(c->n < 128);
    em_st_wtensor *t = &c->t[c->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->dtype = dt;
    t->n_dims = nd;
    uint64_t dims[3] = {d0, d1, d2}, n = 1;
    for (uint32_t i = 0; i < nd; i++) { t->shape[i] = dims[i]; n *= dims[i]; }
    void *m = malloc(n * em_st_dtype_size(dt) + 1);
    for (uint64_t i = 0; i < n; i++) {
        float v = em_rng_uniform(&c->rng, scale);
        switch (dt) {
        case EM_ST_F32: ((float *)m)[i] = v; break;
        case EM_ST_BF16: ((uint16_t *)m)[i] = em_f32_to_bf16(v); break;
        case EM_ST_F16: ((uint16_t *)m)[i] = tp_rand_f16(&c->rng); break;
        case EM_ST_F64: ((double *)m)[i] = (double)v * 1.0000001; break;
        case EM_ST_I32: ((int32_t *)m)[i] = (int32_t)i; break;
        case EM_ST_I64: ((int64_t *)m)[i] = (int64_t)i; break;
        }
    }
    t->data = m;
    c->mem[c->n++] = m;
}

TP_UNUSED static void tp_free(tp_ckpt *c) {
    for (size_t i = 0; i < c->n; i++) { free((void *)c->t[i].name); free(c->mem[i]); }
    c->n = 0;
}

/* Tiny Mamba-2 dims: d 16, 2 layers, vocab 40, N 8, H 4, P 8, G 2 -> d_inner 32, conv 64, in_proj 100. */
#define TP_D 16
#define TP_V 40
#define TP_N 8
#define TP_H 4
#define TP_P 8
#define TP_G 2
#define TP_DI (TP_H * TP_P)
#define TP_CONV (TP_DI + 2 * TP_G * TP_N)
#define TP_INPROJ (2 * TP_DI + 2 * TP_G * TP_N + TP_H)

TP_UNUSED static const char *tp_mamba2_config =
    "{\"architectures\": [\"Mamba2ForCausalLM\"], \"model_type\": \"mamba2\", \"hidden_size\": 16,\n"
    " \"num_hidden_layers\": 2, \"vocab_size\": 40, \"state_size\": 8, \"num_heads\": 4, \"head_dim\": 8,\n"
    " \"n_groups\": 2, \"expand\": 2, \"conv_kernel\": 4, \"chunk_size\": 16, \"layer_norm_epsilon\": 1e-05,\n"
    " \"use_conv_bias\": true, \"use_bias\": false, \"tie_word_embeddings\": false, \"residual_in_fp32\": true,\n"
    " \"time_step_limit\": [0.0, {\"__float__\": \"Infinity\"}], \"bos_token_id\": 0, \"eos_token_id\": 2,\n"
    " \"pad_token_id\": 1}\n";

/* The Mamba-2 mixer tensors of layer i under prefix ("backbone."), sources in mixed dtypes; bad_inproj
 * gives layer i's in_proj 10 rows instead of 100. */
TP_UNUSED static void tp_add_mamba_layer(tp_ckpt *c, const char *prefix, int i, int bad_inproj) {
    char n[160];
#define TP_NAME(suffix) (tp_fmt(n, "%slayers.%d.%s", prefix, i, suffix), n)
    tp_add(c, TP_NAME("norm.weight"), EM_ST_BF16, 1, TP_D, 0, 0, 1.5f);
    tp_add(c, TP_NAME("mixer.in_proj.weight"), EM_ST_F32, 2, bad_inproj ? 10 : TP_INPROJ, TP_D, 0, 0.3f);
    tp_add(c, TP_NAME("mixer.conv1d.weight"), EM_ST_F32, 3, TP_CONV, 1, 4, 0.5f);
    tp_add(c, TP_NAME("mixer.conv1d.bias"), EM_ST_F16, 1, TP_CONV, 0, 0, 0.1f);
    tp_add(c, TP_NAME("mixer.dt_bias"), EM_ST_F32, 1, TP_H, 0, 0, 2.0f);
    tp_add(c, TP_NAME("mixer.A_log"), EM_ST_F32, 1, TP_H, 0, 0, 2.0f);
    tp_add(c, TP_NAME("mixer.D"), EM_ST_BF16, 1, TP_H, 0, 0, 1.0f);
    tp_add(c, TP_NAME("mixer.norm.weight"), EM_ST_F64, 1, TP_DI, 0, 0, 1.0f);
    tp_add(c, TP_NAME("mixer.out_proj.weight"), EM_ST_BF16, 2, TP_D, TP_DI, 0, 0.2f);
#undef TP_NAME
}

/* A whole tiny Mamba2ForCausalLM checkpoint (2 layers) in dir/model.safetensors + config.json. */
TP_UNUSED static void tp_make_mamba2(const char *dir, int bad_layer, uint64_t seed) {
    tp_ckpt c;
    memset(&c, 0, sizeof c);
    em_rng_seed(&c.rng, seed);
    tp_add(&c, "backbone.embeddings.weight", EM_ST_F16, 2, TP_V, TP_D, 0, 1.0f);
    for (int i = 0; i < 2; i++) tp_add_mamba_layer(&c, "backbone.", i, i == bad_layer);
    tp_add(&c, "backbone.norm_f.weight", EM_ST_F32, 1, TP_D, 0, 0, 1.0f);
    tp_add(&c, "lm_head.weight", EM_ST_F32, 2, TP_V, TP_D, 0, 0.5f);
    char p[4096];
    tp_fmt(p, "%s/model.safetensors", dir);
    em_status s = em_st_write(p, c.t, c.n);
    if (s != EM_OK) { fprintf(stderr, "%s\n", em_last_error()); exit(1); }
    tp_write_text(dir, "config.json", tp_mamba2_config);
    tp_free(&c);
}
