/*
 * em-generate — one-shot generation from a blob: encode a text prompt with the blob's tokenizer, prefill,
 * sample and stream the text to stdout as it comes (whole UTF-8 characters only); stats go to stderr.
 * --ids gives the prompt as token ids instead (no tokenizer needed) and prints the generated ids.
 *
 *   em-generate -m model.emb -p "Once upon a time" -n 128 --temp 0.7 --top-p 0.9 --seed 1
 *   em-generate -m model.emb --ids 5,17,42 -n 16 [--json]
 *
 * Without --seed, sampling (--temp > 0) takes a seed from the clock and reports it on stderr (and in
 * --json), so any run can be repeated; greedy decoding (the default) needs none.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "edgemamba.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: em-generate -m MODEL.emb (-p PROMPT | --ids ID,ID,...) [options]\n"
            "  -m, --model FILE        the blob (em-pack output)\n"
            "  -p, --prompt TEXT       the prompt as text (the blob's tokenizer encodes it)\n"
            "  --ids LIST              the prompt as comma-separated token ids; prints ids, not text\n"
            "  -n N                    tokens to generate (default 16)\n"
            "  --temp T                temperature; 0 = greedy (default 0)\n"
            "  --top-k K               keep the K most likely tokens (0 = off)\n"
            "  --top-p P               nucleus: the fewest tokens with probability >= P (1 = off)\n"
            "  --min-p P               drop tokens below P * p(most likely) (0 = off)\n"
            "  --repeat-penalty R      penalize the last --repeat-last-n tokens (1 = off)\n"
            "  --repeat-last-n N       the penalty's window (default 64)\n"
            "  --seed S                sampler seed (default: from the clock, reported)\n"
            "  --stop TEXT             stop before TEXT (may be given up to 8 times)\n"
            "  --no-eos                do not stop at the end-of-sequence token\n"
            "  --bos                   put the BOS token before the prompt\n"
            "  --logprobs              report each token's log-probability (with --json)\n"
            "  --threads N             CPU threads (default: all cores)\n"
            "  --chunk T               max tokens per prefill step (default: backend's)\n"
            "  --json                  print one JSON object instead of the plain text / ids\n");
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

// ---- output -----------------------------------------------------------------------------------------------

typedef struct out_state {
    int json, ids_mode, logprobs;
    char *text;          /* --json: the text so far */
    size_t text_len, text_cap;
    int32_t *ids;        /* --json / --ids: the ids so far */
    float *lps;
    size_t n, cap;
    int oom;
} out_state;

static int on_token(const em_token_event *ev, void *user) {
    out_state *o = user;
    if (o->json || o->ids_mode) {
        if (o->n == o->cap) {
            size_t nc = o->cap ? o->cap * 2 : 64;
            int32_t *ni = realloc(o->ids, nc * sizeof *ni);
            float *nl = ni ? realloc(o->lps, nc * sizeof *nl) : NULL;
            if (ni) o->ids = ni;
            if (nl) o->lps = nl;
            if (!ni || !nl) { o->oom = 1; return 1; }
            o->cap = nc;
        }
        o->ids[o->n] = ev->token;
        o->lps[o->n] = ev->logprob;
        o->n++;
    }
    if (o->json) {
        if (o->text_len + ev->text_len + 1 > o->text_cap) {
            size_t nc = (o->text_len + ev->text_len + 1) * 2;
            char *nt = realloc(o->text, nc);
            if (!nt) { o->oom = 1; return 1; }
            o->text = nt;
            o->text_cap = nc;
        }
        memcpy(o->text + o->text_len, ev->text, ev->text_len);
        o->text_len += ev->text_len;
    } else if (o->ids_mode) {
        printf("%s%d", ev->index ? " " : "", ev->token);
        fflush(stdout);
    } else if (ev->text_len) {
        fwrite(ev->text, 1, ev->text_len, stdout);
        fflush(stdout);
    }
    return 0;
}

static void json_string(const char *s, size_t n) {
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c); /* the text is valid UTF-8: the library guarantees it */
    }
    putchar('"');
}

static const char *stop_name(em_stop_reason r) {
    switch (r) {
    case EM_STOP_MAX_TOKENS: return "max_tokens";
    case EM_STOP_EOS: return "eos";
    case EM_STOP_TOKEN: return "stop_token";
    case EM_STOP_STRING: return "stop_string";
    case EM_STOP_CALLBACK: return "callback";
    case EM_STOP_ERROR: return "error";
    default: return "none";
    }
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *ids_arg = NULL, *prompt = NULL;
    const char *stops[EM_GENERATE_MAX_STOP];
    uint32_t n_stops = 0;
    long n_new = 16;
    int json = 0, threads = 0, have_seed = 0;
    unsigned chunk = 0;
    em_generate_options go = em_generate_default_options();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_next = i + 1 < argc;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has_next) model_path = argv[++i];
        else if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && has_next) prompt = argv[++i];
        else if (!strcmp(a, "--ids") && has_next) ids_arg = argv[++i];
        else if (!strcmp(a, "-n") && has_next) n_new = strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--temp") && has_next) go.sampler.temperature = strtof(argv[++i], NULL);
        else if (!strcmp(a, "--top-k") && has_next) go.sampler.top_k = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--top-p") && has_next) go.sampler.top_p = strtof(argv[++i], NULL);
        else if (!strcmp(a, "--min-p") && has_next) go.sampler.min_p = strtof(argv[++i], NULL);
        else if (!strcmp(a, "--repeat-penalty") && has_next) go.sampler.repeat_penalty = strtof(argv[++i], NULL);
        else if (!strcmp(a, "--repeat-last-n") && has_next)
            go.sampler.repeat_last_n = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--seed") && has_next) { go.sampler.seed = strtoull(argv[++i], NULL, 10); have_seed = 1; }
        else if (!strcmp(a, "--stop") && has_next) {
            if (n_stops == EM_GENERATE_MAX_STOP) {
                fprintf(stderr, "em-generate: at most %u --stop\n", EM_GENERATE_MAX_STOP);
                return 2;
            }
            stops[n_stops++] = argv[++i];
        }
        else if (!strcmp(a, "--no-eos")) go.stop_at_eos = 0;
        else if (!strcmp(a, "--bos")) go.flags |= EM_TOKENIZE_ADD_BOS;
        else if (!strcmp(a, "--logprobs")) go.logprobs = 1;
        else if (!strcmp(a, "--threads") && has_next) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--chunk") && has_next) chunk = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--version")) { printf("em-generate (edgemamba %s)\n", em_version()); return 0; }
        else { fprintf(stderr, "em-generate: unknown or incomplete argument '%s'\n", a); usage(stderr); return 2; }
    }
    if (!model_path || (!ids_arg == !prompt)) {
        if (ids_arg && prompt) fprintf(stderr, "em-generate: give -p or --ids, not both\n");
        usage(stderr);
        return 2;
    }
    if (n_new < 0 || n_new > 1000000) { fprintf(stderr, "em-generate: -n %ld is out of range\n", n_new); return 2; }
    go.max_tokens = (uint32_t)n_new;
    go.stop_strings = stops;
    go.n_stop_strings = n_stops;
    if (!have_seed && go.sampler.temperature > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        go.sampler.seed = ((uint64_t)ts.tv_sec * 1000003u) ^ (uint64_t)ts.tv_nsec;
        if (!go.sampler.seed) go.sampler.seed = 1;
    }

    int32_t *prompt_ids = NULL;
    long n_prompt = 0;
    if (ids_arg) {
        n_prompt = parse_ids(ids_arg, &prompt_ids);
        if (n_prompt <= 0) {
            if (n_prompt == 0) fprintf(stderr, "em-generate: --ids is empty\n");
            free(prompt_ids);
            return 2;
        }
    }

    int rc = 1;
    em_model *model = NULL;
    em_session *s = NULL;
    out_state out;
    memset(&out, 0, sizeof out);
    out.json = json;
    out.ids_mode = ids_arg != NULL;
    out.logprobs = go.logprobs;
    em_model_options mo = em_model_default_options();
    mo.n_threads = threads;
    em_status st = em_model_open(model_path, &mo, &model);
    if (st != EM_OK) { fprintf(stderr, "em-generate: %s: %s\n", em_status_str(st), em_last_error()); goto done; }
    em_session_options so = em_session_default_options();
    so.max_prefill_chunk = chunk;
    if ((st = em_session_create(model, &so, &s)) != EM_OK) {
        fprintf(stderr, "em-generate: %s: %s\n", em_status_str(st), em_last_error());
        goto done;
    }

    em_generate_stats gs;
    if (ids_arg) st = em_session_generate_tokens(s, prompt_ids, (size_t)n_prompt, &go, on_token, &out, &gs);
    else st = em_session_generate(s, prompt, &go, on_token, &out, &gs);
    if (out.oom) { fprintf(stderr, "\nem-generate: out of memory collecting the output\n"); goto done; }
    if (st != EM_OK && st != EM_ERR_ABORTED) {
        fprintf(stderr, "\nem-generate: %s: %s\n", em_status_str(st), em_last_error());
        if (st == EM_ERR_CONTEXT_FULL)
            fprintf(stderr, "em-generate: the planned context is full after %u new tokens\n", gs.generated_tokens);
        if (gs.generated_tokens == 0) goto done;
    }
    if (json) {
        printf("{\"prompt_tokens\":%u,\"generated_tokens\":%u,", gs.prompt_tokens, gs.generated_tokens);
        if (!ids_arg) {
            printf("\"text\":");
            json_string(out.text ? out.text : "", out.text_len);
            putchar(',');
        }
        printf("\"ids\":[");
        for (size_t i = 0; i < out.n; i++) printf("%s%d", i ? "," : "", out.ids[i]);
        printf("]");
        if (go.logprobs) {
            printf(",\"logprobs\":[");
            for (size_t i = 0; i < out.n; i++) printf("%s%.6g", i ? "," : "", (double)out.lps[i]);
            printf("]");
        }
        printf(",\"stop\":\"%s\",\"seed\":%" PRIu64 ",\"prefill_tok_s\":%.1f,\"decode_tok_s\":%.1f,"
               "\"decode_ms_per_token\":%.3f,\"session_bytes\":%zu}\n",
               stop_name(gs.stop), go.sampler.seed, gs.prefill_tokens_per_s, gs.decode_tokens_per_s,
               gs.decode_tokens_per_s > 0 ? 1e3 / gs.decode_tokens_per_s : 0.0, gs.session_bytes);
    } else {
        printf("\n");
    }
    fflush(stdout);
    fprintf(stderr,
            "em-generate: prompt %u tokens, prefill %.1f tok/s; %u new, decode %.1f tok/s (%.3f ms/token); stop: %s; "
            "session %zu bytes",
            gs.prompt_tokens, gs.prefill_tokens_per_s, gs.generated_tokens, gs.decode_tokens_per_s,
            gs.decode_tokens_per_s > 0 ? 1e3 / gs.decode_tokens_per_s : 0.0, stop_name(gs.stop), gs.session_bytes);
    if (go.sampler.temperature > 0) fprintf(stderr, "; seed %" PRIu64, go.sampler.seed);
    fprintf(stderr, "\n");
    rc = st == EM_OK || st == EM_ERR_ABORTED ? 0 : 1;
done:
    em_session_free(s);
    em_model_close(model);
    free(prompt_ids);
    free(out.text);
    free(out.ids);
    free(out.lps);
    return rc;
}
