/*
 * test_int8_cosine.c — INT8 weights keep a random model's output (issue 10's truth: "on a random 8B shape,
 * last-position logits cosine similarity >= 0.999 vs BF16"). A random model (em-pack --random-init) is packed
 * as BF16 and as INT8 (which is exactly the BF16 blob requantized: test_int8_blob), both run the same random
 * prompt, and the cosine similarity of their last-position logits (in double) must be >= the limit (0.999).
 * Also printed: top-1 agreement, max |diff| / max |BF16 logit|, and (CPU default mode) the cosine of BF16 and
 * INT8 against an F32 blob of the same values, for scale.
 *
 * Default (ctest, label unit, CPU): two random shapes, d_model 1024, 4 layers: a Mamba-2 (16 heads of 128,
 * d_state 128, 8 groups, vocab 8192) and a NemotronH hybrid "M*-M" (GQA 16/4, d_ff 4096, relu2), 32 tokens.
 *
 * The 8B check on the GPU machine (CUDA backend; needs the INT8 wiring of runtime/cuda_exec.c, docs/int8.md):
 *   test_int8_cosine --config tools/configs/mamba2-8b-v50288.json --backend cuda --dir /path/with/40GB
 * packs <dir>/cos_bf16_s<seed>.emb (16 GB) and cos_int8_s<seed>.emb (8 GB) once (reused when present), then
 * loads each in turn (one at a time on the device). Options: --tokens N (32), --seed S (1), --min C (0.999),
 * --backend cpu|cuda (cpu), --no-f32 (skip the F32 reference blobs; sanitizer builds pass it with --tokens 8),
 * --f32 (with --config: also an F32 blob, 4 bytes a parameter, for the BF16-vs-F32 scale).
 * Without a device, --backend cuda SKIPs (exit 77).
 */
#include <math.h>
#include <time.h>

#include "pack.h"
#include "test_pack_common.c"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *small_mamba2 =
    "{\"model_type\": \"mamba2\", \"hidden_size\": 1024, \"num_hidden_layers\": 4, \"vocab_size\": 8192,\n"
    " \"state_size\": 128, \"num_heads\": 16, \"head_dim\": 128, \"n_groups\": 8, \"expand\": 2, \"conv_kernel\": 4,\n"
    " \"use_conv_bias\": true, \"tie_word_embeddings\": false, \"time_step_limit\": [0.0, Infinity]}";

static const char *small_hybrid =
    "{\"model_type\": \"nemotron_h\", \"hidden_size\": 1024, \"vocab_size\": 8192, \"ssm_state_size\": 128,\n"
    " \"mamba_num_heads\": 16, \"mamba_head_dim\": 128, \"n_groups\": 8, \"num_attention_heads\": 16,\n"
    " \"num_key_value_heads\": 4, \"head_dim\": 64, \"intermediate_size\": 4096, \"mlp_hidden_act\": \"relu2\",\n"
    " \"hybrid_override_pattern\": \"M*-M\", \"use_conv_bias\": true, \"tie_word_embeddings\": false}";

typedef struct opts {
    const char *config, *dir;
    em_backend backend;
    uint32_t n_tok;
    uint64_t seed;
    double min_cos;
    int no_f32, f32; /* --no-f32: no F32 blobs in the default mode; --f32: F32 blobs with --config too */
} opts;

/* Last-position logits of the prompt under blob (malloc'd [vocab]); NULL on failure (recorded). */
static float *last_logits(const char *blob, const opts *o, const int32_t *tok, uint32_t *vocab) {
    em_model_options mo = em_model_default_options();
    mo.backend = o->backend;
    em_model *m = NULL;
    double t0 = now_s();
    em_status st = em_model_open(blob, &mo, &m);
    if (st == EM_ERR_NO_DEVICE && o->backend == EM_BACKEND_CUDA) em_test_skip("test_int8_cosine", "no CUDA device");
    CHECK_STATUS(st, EM_OK);
    if (!m) return NULL;
    em_model_info info;
    em_model_get_info(m, &info);
    *vocab = info.vocab_size;
    const double t_load = now_s() - t0;
    em_session *s = NULL;
    CHECK_STATUS(em_session_create(m, NULL, &s), EM_OK);
    float *l = malloc(sizeof(float) * info.vocab_size);
    if (s && l) {
        em_poison(l, info.vocab_size);
        t0 = now_s();
        st = em_session_prefill(s, tok, o->n_tok, EM_LOGITS_LAST, l);
        CHECK_MSG(st == EM_OK, "%s: prefill: %s (%s)", blob, em_status_str(st), em_last_error());
        printf("  %s: load %.2f s, prefill of %u tokens %.3f s (%s backend)\n", blob, t_load, o->n_tok, now_s() - t0,
               info.backend == EM_BACKEND_CUDA ? "CUDA" : "CPU");
        if (st != EM_OK) { free(l); l = NULL; }
    } else {
        free(l);
        l = NULL;
    }
    em_session_free(s);
    em_model_close(m);
    return l;
}

typedef struct cmp { double cos, rel_max; int top1_same; } cmp;

static cmp compare(const float *a, const float *b, uint32_t n) {
    double ab = 0, aa = 0, bb = 0, dmax = 0, bmax = 0;
    uint32_t ia = 0, ib = 0;
    for (uint32_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
        dmax = fmax(dmax, fabs((double)a[i] - b[i]));
        bmax = fmax(bmax, fabs((double)b[i]));
        if (a[i] > a[ia]) ia = i;
        if (b[i] > b[ib]) ib = i;
    }
    cmp c = { ab / sqrt(aa * bb), bmax > 0 ? dmax / bmax : INFINITY, ia == ib };
    if (!(aa > 0 && bb > 0)) c.cos = NAN;
    return c;
}

static int exists(const char *p) { return access(p, F_OK) == 0; }

/* Packs config (a path) as bf16 / int8 [/ f32] in dir, runs the prompt, checks the cosine. */
static void run_case(const char *label, const char *config, const char *dir, const opts *o, int with_f32) {
    char b16[4300], i8[4300], f32[4300];
    tp_fmt(b16, "%s/cos_bf16_s%llu.emb", dir, (unsigned long long)o->seed);
    tp_fmt(i8, "%s/cos_int8_s%llu.emb", dir, (unsigned long long)o->seed);
    tp_fmt(f32, "%s/cos_f32_s%llu.emb", dir, (unsigned long long)o->seed);
    em_pack_options po = em_pack_default_options();
    po.seed = o->seed;
    em_pack_stats ps;
    const struct { const char *path; em_dtype dt; int want; } packs[3] = {
        {b16, EM_DTYPE_BF16, 1}, {i8, EM_DTYPE_I8, 1}, {f32, EM_DTYPE_F32, with_f32}};
    for (int k = 0; k < 3; k++) {
        if (!packs[k].want || (o->dir && exists(packs[k].path))) continue; /* --dir: reuse what is there */
        po.dtype = packs[k].dt;
        memset(&ps, 0, sizeof ps);
        em_status st = em_pack_random(config, packs[k].path, &po, &ps);
        CHECK_MSG(st == EM_OK, "%s: packing %s: %s", label, packs[k].path, em_last_error());
        if (st != EM_OK) return;
        printf("  packed %s: %.1f MB in %.1f s\n", packs[k].path, (double)ps.data_bytes / 1e6, ps.seconds);
    }
    /* the prompt: seeded ids over the vocabulary (read back from the first model) */
    uint32_t V = 0;
    int32_t *tok = malloc(sizeof(int32_t) * o->n_tok);
    em_model *m = NULL;
    em_model_options mo = em_model_default_options();
    mo.backend = EM_BACKEND_CPU; /* only the vocabulary size: no device copy */
    CHECK_STATUS(em_model_open(b16, &mo, &m), EM_OK);
    if (!m) { free(tok); return; }
    em_model_info info;
    em_model_get_info(m, &info);
    em_model_close(m);
    em_rng r;
    em_rng_seed(&r, o->seed * 7919 + 1);
    for (uint32_t t = 0; t < o->n_tok; t++) tok[t] = (int32_t)(em_rng_u32(&r) % info.vocab_size);

    float *lb = last_logits(b16, o, tok, &V), *lq = lb ? last_logits(i8, o, tok, &V) : NULL;
    float *lf = with_f32 && lq ? last_logits(f32, o, tok, &V) : NULL;
    if (lb && lq) {
        cmp c = compare(lq, lb, V);
        printf("%s: INT8 vs BF16 last-position logits (vocab %u, %u tokens): cosine %.6f (min %.3f), top-1 %s, "
               "max |diff| / max |logit| %.3g\n", label, V, o->n_tok, c.cos, o->min_cos, c.top1_same ? "same" : "DIFFERS",
               c.rel_max);
        CHECK_MSG(c.cos >= o->min_cos, "%s: cosine %.6f < %.4f", label, c.cos, o->min_cos);
        if (lf) {
            cmp cb = compare(lb, lf, V), cq = compare(lq, lf, V);
            printf("%s: for scale, against F32 weights: BF16 cosine %.6f, INT8 cosine %.6f\n", label, cb.cos, cq.cos);
        }
    }
    free(lb);
    free(lq);
    free(lf);
    free(tok);
}

int main(int argc, char **argv) {
    opts o = { NULL, NULL, EM_BACKEND_CPU, 32, 1, 0.999, 0, 0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--config") && v) { o.config = v; i++; }
        else if (!strcmp(a, "--dir") && v) { o.dir = v; i++; }
        else if (!strcmp(a, "--backend") && v) { o.backend = !strcmp(v, "cuda") ? EM_BACKEND_CUDA : EM_BACKEND_CPU; i++; }
        else if (!strcmp(a, "--tokens") && v) { o.n_tok = (uint32_t)atoi(v); i++; }
        else if (!strcmp(a, "--seed") && v) { o.seed = strtoull(v, NULL, 0); i++; }
        else if (!strcmp(a, "--min") && v) { o.min_cos = atof(v); i++; }
        else if (!strcmp(a, "--no-f32")) o.no_f32 = 1;
        else if (!strcmp(a, "--f32")) o.f32 = 1;
        else {
            fprintf(stderr, "usage: test_int8_cosine [--config CONFIG.json] [--backend cpu|cuda] [--dir DIR] "
                            "[--tokens N] [--seed S] [--min C] [--no-f32 | --f32]\n");
            return 2;
        }
    }
    if (o.n_tok < 1) o.n_tok = 1;
    char tmp[4096];
    tp_mkdtemp(tmp, sizeof tmp, "int8cos");
    if (o.config) {
        run_case(o.config, o.config, o.dir ? o.dir : tmp, &o, o.f32);
    } else {
        char p[4200];
        tp_write_text(tmp, "mamba2.json", small_mamba2);
        tp_fmt(p, "%s/mamba2.json", tmp);
        run_case("random Mamba-2 d1024 x4", p, tmp, &o, !o.no_f32);
        tp_write_text(tmp, "hybrid.json", small_hybrid);
        tp_fmt(p, "%s/hybrid.json", tmp);
        char sub[4300];
        tp_fmt(sub, "%s/h", tmp);
        mkdir(sub, 0755);
        run_case("random hybrid M*-M d1024", p, sub, &o, !o.no_f32);
    }
    tp_rm_rf(tmp);
    return em_test_finish("test_int8_cosine");
}
