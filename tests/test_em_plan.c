/*
 * test_em_plan.c — proves em-plan's answers (tools/em-plan.c, compiled in with its main() left out) on a
 * packed fixture, against numbers this test computes on its own from the HF config.json the blob was packed
 * from (not from the blob or the library):
 *   - weight bytes: every tensor of the HF model written out (matrices at the pack dtype, the small vectors
 *     in f32), and from them the bytes read per decode step (docs/benchmarks.md's formula: weights minus the
 *     embedding table plus one row, SSM + conv state read and written, KV at full context);
 *   - each profile's datasheet bandwidth (this test's own table: 68, 102, 204.8, 273, 3352, 4800 GB/s) and
 *     read efficiency, the ceiling (bandwidth / bytes) and the projection (roofline x efficiency x ceiling),
 *     at batch 1 and at batch 4 with --roofline 0.5;
 *   - the KV cache is the CUDA backend's (bf16: 2 bytes an element; the device profiles run that backend, not
 *     this host's f32 CPU one);
 *   - fits: every profile holds a tiny model at 4096 context; two sessions at a 16M-token context, whose KV
 *     caches (2 x 2 layers x 16M x 2 heads x 16 x 2 B x 2 = 8.6 GB) no longer fit the Orin Nano 8GB (5.2 GB
 *     usable) but fit the Orin NX 16GB and up; --meminfo with a small and a large fake MemAvailable says no and yes;
 *   - max context (the hybrid): at most (usable - weights - staging) / KV per token, at least that less 256 MB
 *     for the session's fixed part (activations, 32 MiB of cuBLASLt workspace; a few MB for the fixtures), capped
 *     at the options' 16M; em-plan at that context fits and one token more does not (when under the cap); a
 *     model without attention layers fits any context (the cap);
 *   - bad options and a missing blob fail with a message, not a wrong table.
 * Sizes are compared to within 256 bytes (em_plan aligns its regions to 64 bytes), speeds to within the
 * relative error that allows (256 B / bytes per step, 8e-4 for the 318 KB steps of the tiny Mamba-2).
 *
 *   test_em_plan BLOB.emb CONFIG.json MATRIX_DTYPE_BYTES WORK_DIR
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

int em_plan_tool_main(int argc, char **argv, FILE *out);

// ---- the independent arithmetic ---------------------------------------------------------------------------

typedef struct hf_model {
    double weights, embd, embd_row, state, kv_per_token; /* bytes; kv per context token, all attention layers */
    int n_mamba, n_attn, n_mlp;
} hf_model;

static int geti(const cJSON *o, const char *k, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valueint : dflt;
}

static int read_hf(const char *path, double mb, hf_model *m) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    cJSON *c = cJSON_Parse(text);
    if (!c) return 0;
    memset(m, 0, sizeof *m);
    const double d = geti(c, "hidden_size", 0), V = geti(c, "vocab_size", 0), K = geti(c, "conv_kernel", 4);
    const int nemotron = cJSON_GetObjectItemCaseSensitive(c, "layers_block_type") != NULL;
    const double H = nemotron ? geti(c, "mamba_num_heads", 0) : geti(c, "num_heads", 0);
    const double P = nemotron ? geti(c, "mamba_head_dim", 0) : geti(c, "head_dim", 0);
    const double N = nemotron ? geti(c, "ssm_state_size", 0) : geti(c, "state_size", 0);
    const double G = geti(c, "n_groups", 1), di = H * P, conv_dim = di + 2 * G * N;
    const int conv_bias = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "use_conv_bias"));
    const int tied = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "tie_word_embeddings"));
    if (nemotron) {
        const cJSON *t;
        cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(c, "layers_block_type")) {
            if (!strcmp(t->valuestring, "mamba") || !strcmp(t->valuestring, "linear_attention")) m->n_mamba++;
            else if (!strcmp(t->valuestring, "full_attention") || !strcmp(t->valuestring, "attention")) m->n_attn++;
            else if (!strcmp(t->valuestring, "mlp")) m->n_mlp++;
        }
    } else {
        m->n_mamba = geti(c, "num_hidden_layers", 0);
    }
    const double nh = geti(c, "num_attention_heads", 0), nkv = geti(c, "num_key_value_heads", 0);
    const double hd = geti(c, "head_dim", 0), dff = geti(c, "intermediate_size", 0);
    /* Mamba-2 mixer: in_proj [2*di + 2GN + H, d], out_proj [d, di] at the pack dtype; f32: norm d, conv weight
     * [conv_dim, K] (+ bias), dt_bias, A, D [H], gated-norm weight [di] */
    const double mamba = mb * ((2 * di + 2 * G * N + H) * d + d * di) +
                         4 * (d + conv_dim * K + (conv_bias ? conv_dim : 0) + 3 * H + di);
    const double attn = mb * (2 * nh * hd * d + 2 * nkv * hd * d) + 4 * d; /* q, o; k, v; norm */
    const double mlp = mb * (2 * dff * d) + 4 * d;                         /* up, down; norm */
    m->embd = mb * V * d;
    m->embd_row = mb * d;
    m->weights = m->embd + (tied ? 0 : mb * V * d) + 4 * d + m->n_mamba * mamba + m->n_attn * attn + m->n_mlp * mlp;
    m->state = m->n_mamba * 4 * (H * P * N + conv_dim * (K - 1));
    m->kv_per_token = m->n_attn * 2 * nkv * hd * 2; /* bf16 K and V: the CUDA backend's cache */
    cJSON_Delete(c);
    return 1;
}

/* The datasheet bandwidths (GB/s) and read efficiencies this test expects of each profile. */
static const struct { const char *name; int integrated; double gbps, eff, usable; } WANT[] = {
    { "orin-nano-8gb", 1, 68.0, 156.0 / 204.8, 5.2e9 },
    { "orin-nano-8gb-super", 1, 102.0, 156.0 / 204.8, 5.2e9 },
    { "orin-nx-16gb", 1, 102.0, 156.0 / 204.8, 16.0 * 1073741824 - (8.0 * 1073741824 - 5.2e9) },
    { "agx-orin-32gb", 1, 204.8, 156.0 / 204.8, 32.0 * 1073741824 - (8.0 * 1073741824 - 5.2e9) },
    { "agx-orin-64gb", 1, 204.8, 156.0 / 204.8, 64.0 * 1073741824 - (8.0 * 1073741824 - 5.2e9) },
    { "thor-128gb", 1, 273.0, 156.0 / 204.8, 122e9 },
    { "h100-80gb", 0, 3352.0, 3052.0 / 3352.0, 79.0 * 1073741824 },
    { "h200-141gb", 0, 4800.0, 3052.0 / 3352.0, 141e9 - 1073741824 },
};
#define N_WANT (sizeof WANT / sizeof WANT[0])

// ---- running the tool ---------------------------------------------------------------------------------------

typedef struct row {
    char name[64];
    int integrated, fits;
    double mem, usable, need, gbps, eff, roofline, step, ceiling, projected, max_ctx;
} row;

/* Runs em-plan with args (NULL-terminated) into a file, parses its TSV. @return rows read, -1 on a bad exit. */
static int run(const char *dir, const char **args, row *rows, int max_rows, int *rc) {
    char path[4096];
    snprintf(path, sizeof path, "%s/em_plan_out.tsv", dir);
    FILE *f = fopen(path, "w+");
    if (!f) return -1;
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"em-plan";
    for (int i = 0; args[i] && argc < 31; i++) argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    *rc = em_plan_tool_main(argc, argv, f);
    rewind(f);
    char line[1024];
    int n = 0;
    if (!fgets(line, sizeof line, f)) { fclose(f); return 0; } /* header */
    while (n < max_rows && fgets(line, sizeof line, f)) {
        row *r = &rows[n];
        r->max_ctx = -1;
        if (sscanf(line, "%63s %d %lf %lf %lf %d %lf %lf %lf %lf %lf %lf %lf", r->name, &r->integrated, &r->mem, &r->usable,
                   &r->need, &r->fits, &r->gbps, &r->eff, &r->roofline, &r->step, &r->ceiling, &r->projected,
                   &r->max_ctx) >= 12)
            n++;
    }
    fclose(f);
    return n;
}

static int near(double got, double want, double rel) { return fabs(got - want) <= rel * fabs(want) + 1e-12; }

static void check_profiles(const char *what, const row *rows, int n, const hf_model *m, double batch, double context,
                           double roofline) {
    CHECK_MSG(n == (int)N_WANT, "%s: %d rows, want %d", what, n, (int)N_WANT);
    const double step = m->weights - m->embd + batch * (m->embd_row + 2 * m->state + m->kv_per_token * context);
    for (int i = 0; i < n && i < (int)N_WANT; i++) {
        const row *r = &rows[i];
        CHECK_MSG(!strcmp(r->name, WANT[i].name), "%s: row %d is %s, want %s", what, i, r->name, WANT[i].name);
        CHECK_MSG(r->integrated == WANT[i].integrated, "%s: %s integrated %d", what, r->name, r->integrated);
        CHECK_MSG(near(r->gbps, WANT[i].gbps, 1e-9), "%s: %s bandwidth %.1f, want %.1f", what, r->name, r->gbps, WANT[i].gbps);
        CHECK_MSG(near(r->eff, WANT[i].eff, 1e-3), "%s: %s efficiency %.4f, want %.4f", what, r->name, r->eff, WANT[i].eff);
        CHECK_MSG(near(r->usable, WANT[i].usable, 1e-9), "%s: %s usable %.0f, want %.0f", what, r->name, r->usable,
                  WANT[i].usable);
        CHECK_MSG(fabs(r->step - step) <= 256, "%s: %s bytes per step %.0f, want %.0f", what, r->name, r->step, step);
        const double ceiling = batch * WANT[i].gbps * 1e9 / step, tol = 256 / step + 1e-5; /* the 256 B above */
        CHECK_MSG(near(r->ceiling, ceiling, tol), "%s: %s ceiling %.6g tok/s, want %.6g", what, r->name, r->ceiling, ceiling);
        const double projected = roofline * WANT[i].eff * ceiling;
        CHECK_MSG(near(r->projected, projected, tol), "%s: %s projected %.6g tok/s, want %.6g", what, r->name,
                  r->projected, projected);
        CHECK_MSG(r->need >= m->weights, "%s: %s needs %.0f, less than the weights %.0f", what, r->name, r->need, m->weights);
    }
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: test_em_plan BLOB CONFIG.json MATRIX_DTYPE_BYTES WORK_DIR\n"); return 2; }
    const char *blob = argv[1], *dir = argv[4];
    hf_model m;
    if (!read_hf(argv[2], atof(argv[3]), &m)) { fprintf(stderr, "cannot read %s\n", argv[2]); return 1; }
    printf("%s: %d Mamba-2, %d attention, %d MLP layers; weights %.0f B, state %.0f B, KV %.0f B/token (from config.json)\n",
           argv[2], m.n_mamba, m.n_attn, m.n_mlp, m.weights, m.state, m.kv_per_token);
    row rows[16];
    int rc = 0, n;

    /* batch 1, context 4096: every profile, H100-measured roofline */
    n = run(dir, (const char *[]){ "-m", blob, "--tsv", NULL }, rows, 16, &rc);
    CHECK(rc == 0);
    check_profiles("batch 1", rows, n, &m, 1, 4096, 0.892);
    for (int i = 0; i < n; i++) {
        CHECK_MSG(rows[i].fits == 1, "%s: a tiny model does not fit (needs %.0f of %.0f)", rows[i].name, rows[i].need,
                  rows[i].usable);
        CHECK(near(rows[i].roofline, 0.892, 1e-9)); /* docs/benchmarks.md, fused step */
        if (i == 0) printf("  orin-nano-8gb: %.0f B/step, ceiling %.1f tok/s, projected %.1f tok/s\n", rows[i].step,
                           rows[i].ceiling, rows[i].projected);
    }
    /* integrated profiles add the 16 MiB staging chunk of the read-and-drop path, discrete ones do not */
    if (n == (int)N_WANT) CHECK(fabs((rows[0].need - rows[6].need) - 16777216.0) < 1);

    /* batch 4 (four sessions on one model), roofline 0.5 */
    n = run(dir, (const char *[]){ "-m", blob, "-b", "4", "--roofline", "0.5", "--tsv", NULL }, rows, 16, &rc);
    CHECK(rc == 0);
    check_profiles("batch 4", rows, n, &m, 4, 4096, 0.5);

    /* one profile */
    n = run(dir, (const char *[]){ "-m", blob, "-d", "thor-128gb", "--tsv", NULL }, rows, 16, &rc);
    CHECK(rc == 0 && n == 1 && !strcmp(rows[0].name, "thor-128gb"));

    if (m.n_attn > 0) { /* the longest context, two sessions: KV of 8.6 GB for the hybrid fixture */
        const double ctx = 16777216.0;
        n = run(dir, (const char *[]){ "-m", blob, "-c", "16777216", "-b", "2", "--tsv", NULL }, rows, 16, &rc);
        CHECK(rc == 0);
        check_profiles("context 16M, batch 2", rows, n, &m, 2, ctx, 0.892);
        const double kv = 2 * m.kv_per_token * ctx;
        for (int i = 0; i < n && i < (int)N_WANT; i++) {
            const int want = m.weights + kv < WANT[i].usable; /* the workspace (MBs) is far from every margin */
            CHECK_MSG(rows[i].fits == want, "%s at 16M context: fits %d, want %d (needs %.0f, KV alone %.0f, usable %.0f)",
                      rows[i].name, rows[i].fits, want, rows[i].need, kv, WANT[i].usable);
            CHECK(rows[i].need >= m.weights + kv);
        }
        CHECK(n > 2 && rows[0].fits == 0 && rows[2].fits == 1); /* Nano 8GB no, NX 16GB yes */
    }

    /* max context per profile, two sessions */
    n = run(dir, (const char *[]){ "-m", blob, "-b", "2", "--tsv", NULL }, rows, 16, &rc);
    CHECK(rc == 0 && n == (int)N_WANT);
    for (int i = 0; i < n && i < (int)N_WANT; i++) {
        const double cap = 16777216.0, staging = WANT[i].integrated ? 16777216.0 : 0;
        if (m.n_attn == 0) {
            CHECK_MSG(rows[i].max_ctx == cap, "%s: max context %.0f for a model without attention, want %.0f",
                      rows[i].name, rows[i].max_ctx, cap);
            continue;
        }
        const double room = WANT[i].usable - m.weights - staging, hi = room / (2 * m.kv_per_token);
        const double lo = (room - 2 * 256e6) / (2 * m.kv_per_token);
        const double want_hi = hi < cap ? hi : cap, want_lo = lo < cap ? lo : cap;
        CHECK_MSG(rows[i].max_ctx <= want_hi + 1 && rows[i].max_ctx >= want_lo,
                  "%s: max context %.0f outside [%.0f, %.0f]", rows[i].name, rows[i].max_ctx, want_lo, want_hi);
        if (i == 0) printf("  orin-nano-8gb, 2 sessions: max context %.0f tokens (bounds %.0f..%.0f)\n", rows[i].max_ctx,
                           want_lo, want_hi);
        if (rows[i].max_ctx >= cap) continue;
        char c0[32], c1[32];
        snprintf(c0, sizeof c0, "%.0f", rows[i].max_ctx);
        snprintf(c1, sizeof c1, "%.0f", rows[i].max_ctx + 1);
        row one[2];
        int n1 = run(dir, (const char *[]){ "-m", blob, "-b", "2", "-c", c0, "-d", rows[i].name, "--tsv", NULL }, one, 2,
                     &rc);
        CHECK_MSG(n1 == 1 && one[0].fits == 1, "%s: em-plan -c %s (its max context) does not fit", rows[i].name, c0);
        n1 = run(dir, (const char *[]){ "-m", blob, "-b", "2", "-c", c1, "-d", rows[i].name, "--tsv", NULL }, one, 2,
                 &rc);
        CHECK_MSG(n1 == 1 && one[0].fits == 0, "%s: em-plan -c %s (one past its max context) fits", rows[i].name, c1);
    }

    /* live: a fake /proc/meminfo */
    char mi[4096];
    snprintf(mi, sizeof mi, "%s/em_plan_meminfo", dir);
    for (int big = 0; big < 2; big++) {
        FILE *f = fopen(mi, "w");
        if (!f) { CHECK(0); break; }
        fprintf(f, "MemTotal:       %s kB\nMemFree:          1000 kB\nMemAvailable:   %s kB\n",
                big ? "67108864" : "8192", big ? "62914560" : "1024");
        fclose(f);
        n = run(dir, (const char *[]){ "-m", blob, "-d", "agx-orin-64gb", "--meminfo", mi, "--tsv", NULL }, rows, 16, &rc);
        CHECK(rc == 0 && n == 2);
        if (n == 2) {
            CHECK(!strcmp(rows[1].name, "live"));
            CHECK(near(rows[1].usable, big ? 62914560.0 * 1024 : 1024.0 * 1024, 1e-12));
            CHECK(rows[1].fits == big);
            CHECK(near(rows[1].need, rows[0].need, 1e-12)); /* the same plan as the integrated profile */
        }
    }

    /* failures */
    n = run(dir, (const char *[]){ "-m", blob, "-d", "orin-nano-4gb", NULL }, rows, 16, &rc);
    CHECK(rc == 2);
    n = run(dir, (const char *[]){ "-m", blob, "--roofline", "1.5", NULL }, rows, 16, &rc);
    CHECK(rc == 2);
    n = run(dir, (const char *[]){ "-m", blob, "-c", "0", NULL }, rows, 16, &rc);
    CHECK(rc == 2);
    n = run(dir, (const char *[]){ "-m", "/nonexistent/model.emb", NULL }, rows, 16, &rc);
    CHECK(rc == 1);
    n = run(dir, (const char *[]){ "--list", NULL }, rows, 16, &rc);
    CHECK(rc == 0);
    return em_test_finish("test_em_plan");
}
