/*
 * em-generate — one-shot generation from a blob: prefill a prompt, decode greedily, print the token ids.
 * Until the tokenizer lands the prompt is given as token ids (--ids 1,2,3); ids go to stdout, stats to
 * stderr.
 *
 *   em-generate -m model.emb --ids 5,17,42 -n 16 [--threads N] [--chunk T] [--json]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgemamba.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void usage(FILE *f) {
    fprintf(f, "usage: em-generate -m MODEL.emb --ids ID,ID,... [-n N_NEW] [--threads N] [--chunk T] [--json]\n"
               "  -m, --model FILE   the blob (em-pack output)\n"
               "  --ids LIST         the prompt as comma-separated token ids\n"
               "  -n N               tokens to generate (default 16)\n"
               "  --threads N        CPU threads (default: all cores)\n"
               "  --chunk T          max tokens per prefill step (default: backend's)\n"
               "  --json             print one JSON object instead of plain ids\n");
}

/* Parses "1,2,3" into a malloc'd array; returns count or -1 with a message. */
static long parse_ids(const char *s, int32_t **out) {
    size_t cap = 16, n = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return -1;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX) {
            fprintf(stderr, "em-generate: --ids: '%s' is not a list of non-negative integers\n", s);
            free(v);
            return -1;
        }
        if (n == cap) {
            int32_t *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) { free(v); return -1; }
            v = nv;
        }
        v[n++] = (int32_t)x;
        p = end;
        if (*p == ',') p++;
        else if (*p) {
            fprintf(stderr, "em-generate: --ids: unexpected '%c' in '%s'\n", *p, s);
            free(v);
            return -1;
        }
    }
    *out = v;
    return (long)n;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *ids_arg = NULL;
    long n_new = 16;
    int json = 0, threads = 0;
    unsigned chunk = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_next = i + 1 < argc;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has_next) model_path = argv[++i];
        else if (!strcmp(a, "--ids") && has_next) ids_arg = argv[++i];
        else if (!strcmp(a, "-n") && has_next) n_new = strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--threads") && has_next) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--chunk") && has_next) chunk = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--version")) { printf("em-generate (edgemamba %s)\n", em_version()); return 0; }
        else { fprintf(stderr, "em-generate: unknown or incomplete argument '%s'\n", a); usage(stderr); return 2; }
    }
    if (!model_path || !ids_arg) { usage(stderr); return 2; }
    if (n_new < 0 || n_new > 1000000) { fprintf(stderr, "em-generate: -n %ld is out of range\n", n_new); return 2; }

    int32_t *prompt = NULL;
    long n_prompt = parse_ids(ids_arg, &prompt);
    if (n_prompt <= 0) {
        if (n_prompt == 0) fprintf(stderr, "em-generate: --ids is empty\n");
        free(prompt);
        return 2;
    }

    int rc = 1;
    em_model *model = NULL;
    em_session *s = NULL;
    em_model_options mo = em_model_default_options();
    mo.n_threads = threads;
    em_status st = em_model_open(model_path, &mo, &model);
    if (st != EM_OK) { fprintf(stderr, "em-generate: %s: %s\n", em_status_str(st), em_last_error()); goto done; }
    em_session_options so = em_session_default_options();
    so.max_prefill_chunk = chunk;
    em_plan_report plan;
    if ((st = em_plan(model, &so, &plan)) != EM_OK || (st = em_session_create(model, &so, &s)) != EM_OK) {
        fprintf(stderr, "em-generate: %s: %s\n", em_status_str(st), em_last_error());
        goto done;
    }

    double t0 = now_s();
    if ((st = em_session_prefill(s, prompt, (size_t)n_prompt, EM_LOGITS_LAST, NULL)) != EM_OK) {
        fprintf(stderr, "em-generate: prefill: %s: %s\n", em_status_str(st), em_last_error());
        goto done;
    }
    double t1 = now_s();
    if (json) printf("{\"prompt_tokens\":%ld,\"ids\":[", n_prompt);
    for (long i = 0; i < n_new; i++) {
        int32_t tok;
        if ((st = em_session_argmax(s, &tok)) != EM_OK) break;
        printf(json ? "%s%d" : "%s%d", i ? (json ? "," : " ") : "", tok);
        fflush(stdout);
        if (i + 1 < n_new && (st = em_session_decode(s, tok, NULL)) != EM_OK) break;
    }
    double t2 = now_s();
    if (st != EM_OK) { fprintf(stderr, "\nem-generate: decode: %s: %s\n", em_status_str(st), em_last_error()); goto done; }
    double pf = (t1 - t0) > 0 ? n_prompt / (t1 - t0) : 0, dec = n_new > 1 ? (t2 - t1) * 1e3 / (double)(n_new - 1) : 0;
    if (json)
        printf("],\"prefill_tok_s\":%.1f,\"decode_ms_per_token\":%.3f,\"session_bytes\":%zu}\n", pf, dec,
               plan.session_bytes);
    else printf("\n");
    fflush(stdout);
    fprintf(stderr, "em-generate: prompt %ld tokens, prefill %.1f tok/s; %ld new, decode %.3f ms/token; session %zu bytes\n",
            n_prompt, pf, n_new, dec, plan.session_bytes);
    rc = 0;
done:
    em_session_free(s);
    em_model_close(model);
    free(prompt);
    return rc;
}
