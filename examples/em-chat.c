/*
 * em-chat — an offline assistant REPL on one blob: type a message, the answer streams back. The session's
 * recurrent state carries the conversation, so each turn costs only its own tokens.
 *
 *   em-chat -m model.emb [--system "You are ..." | --system-file FILE] [--template plain|chatml|FILE] [--temp 0.7 ...]
 *
 * Input: one line per message; a line ending with '\' continues on the next line. Commands:
 *   /reset        back to the system prompt (its snapshot is restored: no prefill)
 *   /save FILE    the conversation's state to a snapshot file;  /load FILE  back from one
 *   /stats        the last answer's speed, the position, the session's memory, and what the system prompt cost
 *                 to prefill against what /reset costs to restore its snapshot (wall time, this process)
 *   /help, /quit  (end of input quits too)
 * Ctrl-C stops the current answer, not the program (a flag the token callback reads). When a hybrid
 * model's planned context is full, em-chat says so and offers /reset.
 *
 * Templates (docs/tokenizers.md): the blob's HF chat template is Jinja, which em-chat recognizes rather
 * than runs: a ChatML template (<|im_start|>) becomes the built-in "chatml"; anything else, or none (a base
 * model), the built-in "plain" ("User: ...\nAssistant:"), with a note. --template FILE reads key=value
 * lines: system, user (with {} for the text), stop (repeatable), stop_token, close (after a cut answer),
 * next (after a finished one); \n and \t escapes.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "edgemamba.h"

#define MAX_STOPS 4

typedef struct chat_template {
    char name[64];
    char system[512];     /* {} = the system prompt */
    char user[512];       /* {} = the message; ends where the answer starts */
    char stop[MAX_STOPS][64];
    int n_stop;
    char stop_token[64];  /* a special token that ends an answer (ChatML <|im_end|>) */
    char close[64];       /* appended before the next turn when an answer was cut (Ctrl-C, -n) */
    char next[64];        /* appended before the next turn when an answer ended on stop_token */
    int parse_special;
} chat_template;

static const chat_template TEMPLATE_PLAIN = {
    .name = "plain", .system = "{}\n", .user = "\nUser: {}\nAssistant:", .stop = { "\nUser:" }, .n_stop = 1,
    .close = "\n", .parse_special = 0,
};
static const chat_template TEMPLATE_CHATML = {
    .name = "chatml", .system = "<|im_start|>system\n{}<|im_end|>\n",
    .user = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n", .stop_token = "<|im_end|>",
    .close = "<|im_end|>\n", .next = "\n", .parse_special = 1,
};

static volatile sig_atomic_t g_interrupt = 0;
static void on_sigint(int sig) { (void)sig; g_interrupt = 1; }

// ---- small string helpers ------------------------------------------------------------------------------------

typedef struct sbuf { char *p; size_t n, cap; } sbuf;

static int sb_add(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t nc = (b->n + n + 1) * 2;
        char *np = realloc(b->p, nc);
        if (!np) return -1;
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}
static int sb_str(sbuf *b, const char *s) { return sb_add(b, s, strlen(s)); }

/* pattern with each {} replaced by text */
static int sb_fill(sbuf *b, const char *pattern, const char *text) {
    for (const char *p = pattern; *p; p++) {
        if (p[0] == '{' && p[1] == '}') { if (sb_str(b, text)) return -1; p++; }
        else if (sb_add(b, p, 1)) return -1;
    }
    return 0;
}

static void unescape(char *dst, size_t cap, const char *src) {
    size_t k = 0;
    for (const char *p = src; *p && k + 1 < cap; p++) {
        if (*p == '\\' && p[1] == 'n') { dst[k++] = '\n'; p++; }
        else if (*p == '\\' && p[1] == 't') { dst[k++] = '\t'; p++; }
        else if (*p == '\\' && p[1] == '\\') { dst[k++] = '\\'; p++; }
        else dst[k++] = *p;
    }
    dst[k] = 0;
}

static int load_template_file(const char *path, chat_template *t) {
    FILE *f = fopen(path, "r");
    if (!f) { fprintf(stderr, "em-chat: --template %s: %s\n", path, strerror(errno)); return -1; }
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "file %.50s", path);
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *eq = strchr(line, '=');
        if (!eq || line[0] == '#') continue;
        *eq = 0;
        const char *k = line, *v = eq + 1;
        if (!strcmp(k, "system")) unescape(t->system, sizeof t->system, v);
        else if (!strcmp(k, "user")) unescape(t->user, sizeof t->user, v);
        else if (!strcmp(k, "stop") && t->n_stop < MAX_STOPS) unescape(t->stop[t->n_stop++], sizeof t->stop[0], v);
        else if (!strcmp(k, "stop_token")) unescape(t->stop_token, sizeof t->stop_token, v);
        else if (!strcmp(k, "close")) unescape(t->close, sizeof t->close, v);
        else if (!strcmp(k, "next")) unescape(t->next, sizeof t->next, v);
        else if (!strcmp(k, "parse_special")) t->parse_special = atoi(v);
        else fprintf(stderr, "em-chat: --template %s: unknown key '%s' ignored\n", path, k);
    }
    fclose(f);
    if (!strstr(t->user, "{}")) { fprintf(stderr, "em-chat: --template %s: 'user' needs {}\n", path); return -1; }
    return 0;
}

/* --system-file: the whole file as text (at most 1 MiB: a system prompt, not a corpus), one trailing newline
 * dropped. NUL bytes are refused (the prompt is a C string). Returns 0, or -1 with a message. */
static int read_text_file(const char *path, char **out) {
    enum { MAX_SYSTEM = 1 << 20 };
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "em-chat: --system-file %s: %s\n", path, strerror(errno)); return -1; }
    char *b = malloc(MAX_SYSTEM + 1);
    size_t n = b ? fread(b, 1, MAX_SYSTEM + 1, f) : 0;
    int bad = !b ? 1 : ferror(f) ? 2 : n > MAX_SYSTEM ? 3 : memchr(b, 0, n) ? 4 : 0;
    fclose(f);
    if (bad) {
        static const char *why[] = { "", "out of memory", "read failed", "longer than 1 MiB", "holds a NUL byte" };
        fprintf(stderr, "em-chat: --system-file %s: %s\n", path, why[bad]);
        free(b);
        return -1;
    }
    if (n && b[n - 1] == '\n') n--;
    if (n && b[n - 1] == '\r') n--;
    b[n] = 0;
    *out = b;
    return 0;
}

/* Reads one message: lines ending with '\' continue. Returns 1 with text in *b, 0 at end of input,
 * -1 when Ctrl-C interrupted the read (nothing read). */
static int read_message(sbuf *b, int interactive) {
    b->n = 0;
    if (b->p) b->p[0] = 0;
    char line[4096];
    int cont = 0;
    for (;;) {
        if (interactive) { fputs(cont ? "... " : "> ", stdout); fflush(stdout); }
        if (!fgets(line, sizeof line, stdin)) {
            if (ferror(stdin) && errno == EINTR) { clearerr(stdin); return -1; }
            return b->n ? 1 : 0;
        }
        size_t l = strlen(line);
        int nl = l && line[l - 1] == '\n';
        if (nl) line[--l] = 0;
        if (l && line[l - 1] == '\r') line[--l] = 0;
        if (!nl && !feof(stdin)) { if (sb_add(b, line, l)) return 0; cont = 1; continue; } /* a long line */
        if (l && line[l - 1] == '\\') {
            line[l - 1] = 0;
            if (sb_add(b, line, l - 1) || sb_str(b, "\n")) return 0;
            cont = 1;
            continue;
        }
        if (sb_add(b, line, l)) return 0;
        return 1;
    }
}

// ---- the REPL -------------------------------------------------------------------------------------------------

typedef struct chat {
    em_model *model;
    em_session *s;
    const em_tokenizer *tok;
    chat_template t;
    em_generate_options go;
    const char *stops[MAX_STOPS];
    int32_t stop_tok;
    void *base;              /* the snapshot after the system prompt: /reset restores it */
    size_t base_size;
    char *system_text;       /* the filled system turn: re-prefilled by /reset where snapshots are unsupported */
    const char *pending;     /* text to put before the next turn (closing the last answer) */
    int after_stop_string;   /* the last answer ended on a stop string that the next turn begins with */
    em_generate_stats last;
    em_plan_report plan;
    uint32_t ctx;            /* the planned max_context */
    int answered;
    uint32_t system_tokens;  /* the system turn's ids, and what prefilling them took (ms, wall) */
    double system_ms;
    double reset_ms, reset_best_ms; /* the last /reset and the fastest (ms, wall); 0 before the first */
    unsigned n_resets;
} chat;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int on_token(const em_token_event *ev, void *user) {
    (void)user;
    if (ev->text_len) {
        fwrite(ev->text, 1, ev->text_len, stdout);
        fflush(stdout);
    }
    return g_interrupt != 0;
}

static void report(const char *what, em_status st) {
    fprintf(stdout, "[%s: %s: %s]\n", what, em_status_str(st), em_last_error());
}

static void turn(chat *c, const char *msg) {
    sbuf in = { 0 };
    if (c->pending) sb_str(&in, c->pending);
    const char *user = c->t.user;
    if (c->after_stop_string && c->t.n_stop && !strncmp(user, c->t.stop[0], strlen(c->t.stop[0])))
        user += strlen(c->t.stop[0]); /* the model already wrote the start of this turn */
    sb_fill(&in, user, msg);
    g_interrupt = 0;
    em_generate_stats st;
    em_status rc = em_session_generate(c->s, in.p, &c->go, on_token, c, &st);
    free(in.p);
    c->last = st;
    c->answered = 1;
    c->after_stop_string = 0;
    c->pending = c->t.close;
    if (rc == EM_ERR_ABORTED) {
        fputs("\n[stopped]\n", stdout);
    } else if (rc == EM_ERR_CONTEXT_FULL) {
        fprintf(stdout, "\n[the context is full: this session planned %u tokens of attention cache. Type /reset to "
                        "start again from the system prompt.]\n", c->ctx);
        c->pending = NULL;
    } else if (rc != EM_OK) {
        fputc('\n', stdout);
        report("error", rc);
    } else {
        if (st.stop == EM_STOP_TOKEN || st.stop == EM_STOP_EOS) c->pending = c->t.next;
        if (st.stop == EM_STOP_STRING) { c->pending = NULL; c->after_stop_string = 1; }
        fputc('\n', stdout);
    }
    g_interrupt = 0;
    fflush(stdout);
}

/* Consumes the system turn (no answer); records its length and wall time. */
static em_status prefill_system(chat *c) {
    if (!c->system_text) return EM_OK;
    em_generate_options g0 = c->go;
    g0.max_tokens = 0;
    em_generate_stats gs;
    const double t0 = now_ms();
    em_status st = em_session_generate(c->s, c->system_text, &g0, NULL, NULL, &gs);
    if (!c->system_tokens) { /* the first (em-chat's start); a /reset without a snapshot times its own */
        c->system_ms = now_ms() - t0;
        c->system_tokens = gs.prompt_tokens;
    }
    return st;
}

/* /reset: the system prompt's snapshot back (or, without one, its prefill again); timed. */
static em_status reset_to_system(chat *c) {
    const double t0 = now_ms();
    em_status st;
    if (c->base) st = em_session_restore(c->s, c->base, c->base_size);
    else if ((st = em_session_reset(c->s)) == EM_OK) st = prefill_system(c);
    if (st != EM_OK) return st;
    c->reset_ms = now_ms() - t0;
    if (!c->n_resets++ || c->reset_ms < c->reset_best_ms) c->reset_best_ms = c->reset_ms;
    return EM_OK;
}

static void stats(chat *c) {
    uint64_t pos = 0;
    em_session_position(c->s, &pos);
    if (c->system_text) {
        printf("[system prompt: %u tokens, prefilled in %.3f ms; ", c->system_tokens, c->system_ms);
        if (c->base) printf("snapshot %zu bytes", c->base_size);
        else printf("no snapshot: /reset prefills it again");
        if (c->n_resets) printf("; /reset took %.3f ms (fastest of %u: %.3f ms)", c->reset_ms, c->n_resets,
                                c->reset_best_ms);
        printf("]\n");
    }
    if (c->answered)
        printf("[stats: last turn %u prompt tokens at %.1f tok/s, %u generated at %.1f tok/s; position %" PRIu64
               " tokens; session %zu bytes (state %zu, kv %zu, workspace %zu); template %s]\n",
               c->last.prompt_tokens, c->last.prefill_tokens_per_s, c->last.generated_tokens,
               c->last.decode_tokens_per_s, pos, c->plan.session_bytes, c->plan.state_bytes, c->plan.kv_bytes,
               c->plan.workspace_bytes, c->t.name);
    else
        printf("[stats: no answer yet; position %" PRIu64
               " tokens; session %zu bytes (state %zu, kv %zu, workspace %zu); "
               "template %s]\n",
               pos, c->plan.session_bytes, c->plan.state_bytes, c->plan.kv_bytes, c->plan.workspace_bytes, c->t.name);
}

static void usage(FILE *f) {
    fprintf(f, "usage: em-chat -m MODEL.emb [options]\n"
               "  --system TEXT        the system prompt (prefilled once; /reset comes back to it)\n"
               "  --system-file FILE   the system prompt from a file (UTF-8; one trailing newline dropped)\n"
               "  --template NAME      plain | chatml | FILE (default: from the blob, else plain)\n"
               "  -n N                 at most N tokens per answer (default 256)\n"
               "  --temp T --top-k K --top-p P --min-p P --repeat-penalty R --seed S   sampling (default: temp 0.7,\n"
               "                       top-p 0.9, repeat-penalty 1.1)\n"
               "  --ctx N              tokens of attention cache to plan (hybrid models; default 4096)\n"
               "  --bos                put the BOS token first\n"
               "  --no-snapshot        keep no snapshot of the system prompt: /reset prefills it again (saves the\n"
               "                       snapshot's host memory; /stats then compares a warm prefill with the first)\n"
               "  --no-eos             do not end answers at the end-of-sequence token\n"
               "  --threads N          CPU threads\n"
               "  --backend B          auto (default: CUDA when a device runs the model), cpu or cuda\n");
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *system = NULL, *system_file = NULL, *template_arg = NULL;
    char *system_buf = NULL;
    unsigned ctx = 0;
    int threads = 0, bos = 0, no_snapshot = 0;
    em_backend backend = EM_BACKEND_AUTO;
    chat c;
    memset(&c, 0, sizeof c);
    c.go = em_generate_default_options();
    c.go.max_tokens = 256;
    c.go.sampler.temperature = 0.7f;
    c.go.sampler.top_p = 0.9f;
    c.go.sampler.repeat_penalty = 1.1f;
    uint64_t seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int nx = i + 1 < argc;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && nx) model_path = argv[++i];
        else if (!strcmp(a, "--system") && nx) system = argv[++i];
        else if (!strcmp(a, "--system-file") && nx) system_file = argv[++i];
        else if (!strcmp(a, "--template") && nx) template_arg = argv[++i];
        else if (!strcmp(a, "-n") && nx) c.go.max_tokens = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--temp") && nx) c.go.sampler.temperature = strtof(argv[++i], NULL);
        else if (!strcmp(a, "--top-k") && nx) c.go.sampler.top_k = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--top-p") && nx) c.go.sampler.top_p = strtof(argv[++i], NULL);
        else if (!strcmp(a, "--min-p") && nx) c.go.sampler.min_p = strtof(argv[++i], NULL);
        else if (!strcmp(a, "--repeat-penalty") && nx) c.go.sampler.repeat_penalty = strtof(argv[++i], NULL);
        else if (!strcmp(a, "--seed") && nx) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(a, "--ctx") && nx) ctx = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--threads") && nx) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--backend") && nx) {
            const char *b = argv[++i];
            backend = !strcmp(b, "cpu") ? EM_BACKEND_CPU : !strcmp(b, "cuda") ? EM_BACKEND_CUDA : EM_BACKEND_AUTO;
        }
        else if (!strcmp(a, "--bos")) bos = 1;
        else if (!strcmp(a, "--no-snapshot")) no_snapshot = 1;
        else if (!strcmp(a, "--no-eos")) c.go.stop_at_eos = 0;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else { fprintf(stderr, "em-chat: unknown or incomplete argument '%s'\n", a); usage(stderr); return 2; }
    }
    if (!model_path) { usage(stderr); return 2; }
    if (system && system_file) { fprintf(stderr, "em-chat: --system and --system-file: give one\n"); return 2; }
    if (system_file) {
        if (read_text_file(system_file, &system_buf)) return 2;
        system = system_buf;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: Ctrl-C at the prompt interrupts the read */
    sigaction(SIGINT, &sa, NULL);

    int rc = 1;
    em_model_options mo = em_model_default_options();
    mo.n_threads = threads;
    mo.backend = backend;
    em_status st = em_model_open(model_path, &mo, &c.model);
    if (st != EM_OK) { fprintf(stderr, "em-chat: %s: %s\n", em_status_str(st), em_last_error()); return 1; }
    em_session_options so = em_session_default_options();
    if (ctx) so.max_context = ctx;
    c.ctx = so.max_context;
    if ((st = em_plan(c.model, &so, &c.plan)) != EM_OK || (st = em_session_create(c.model, &so, &c.s)) != EM_OK ||
        (st = em_session_tokenizer(c.s, &c.tok)) != EM_OK) {
        fprintf(stderr, "em-chat: %s: %s\n", em_status_str(st), em_last_error());
        goto done;
    }

    /* the template: --template, else the blob's (recognized), else plain */
    const char *tpl;
    size_t tpl_len = 0;
    em_model_get_chat_template(c.model, &tpl, &tpl_len);
    if (template_arg && !strcmp(template_arg, "plain")) c.t = TEMPLATE_PLAIN;
    else if (template_arg && !strcmp(template_arg, "chatml")) c.t = TEMPLATE_CHATML;
    else if (template_arg) { if (load_template_file(template_arg, &c.t)) goto done; }
    else if (tpl_len && memmem(tpl, tpl_len, "<|im_start|>", 12)) c.t = TEMPLATE_CHATML;
    else {
        c.t = TEMPLATE_PLAIN;
        if (tpl_len) fprintf(stderr, "em-chat: the blob's chat template is not one em-chat recognizes; using \"plain\" "
                                     "(--template chatml|FILE to choose)\n");
    }
    for (int i = 0; i < c.t.n_stop; i++) c.stops[i] = c.t.stop[i];
    c.go.stop_strings = c.stops;
    c.go.n_stop_strings = (uint32_t)c.t.n_stop;
    if (c.t.stop_token[0]) {
        if (em_tokenizer_find(c.tok, c.t.stop_token, &c.stop_tok) == EM_OK) {
            c.go.stop_tokens = &c.stop_tok;
            c.go.n_stop_tokens = 1;
        } else {
            fprintf(stderr, "em-chat: the tokenizer has no token \"%s\"; answers end at eos or -n\n", c.t.stop_token);
        }
    }
    c.go.flags = (c.t.parse_special ? EM_TOKENIZE_PARSE_SPECIAL : 0) | (bos ? EM_TOKENIZE_ADD_BOS : 0);

    /* the system prompt, once; its snapshot is the /reset point */
    if (system && *system) {
        sbuf sys = { 0 };
        sb_fill(&sys, c.t.system, system);
        c.system_text = sys.p;
        if ((st = prefill_system(&c)) != EM_OK) {
            fprintf(stderr, "em-chat: system prompt: %s: %s\n", em_status_str(st), em_last_error());
            goto done;
        }
    }
    if (seed) em_session_set_seed(c.s, seed);
    st = no_snapshot ? EM_OK : em_session_snapshot(c.s, NULL, 0, &c.base_size);
    if (!no_snapshot && st == EM_OK && (c.base = malloc(c.base_size)) != NULL)
        st = em_session_snapshot(c.s, c.base, c.base_size, &c.base_size);
    if (!no_snapshot && (st != EM_OK || !c.base)) { /* e.g. no memory for it: /reset prefills the system prompt again */
        fprintf(stderr, "em-chat: no snapshot of the system prompt (%s: %s); /reset will prefill it again\n",
                em_status_str(st), em_last_error());
        free(c.base);
        c.base = NULL;
    }
    int interactive = isatty(0);
    fprintf(stderr, "em-chat: %s; template %s; /help for commands, Ctrl-C stops an answer\n", model_path, c.t.name);

    sbuf msg = { 0 };
    for (;;) {
        int r = read_message(&msg, interactive);
        if (r < 0) { g_interrupt = 0; fputs("\n[Ctrl-C: /quit leaves]\n", stdout); continue; }
        if (r == 0) break;
        char *m = msg.p;
        while (*m == ' ' || *m == '\t') m++;
        if (!*m) continue;
        if (m[0] != '/') { turn(&c, m); continue; }
        char *arg = strchr(m, ' ');
        if (arg) { *arg++ = 0; while (*arg == ' ') arg++; }
        if (!strcmp(m, "/quit") || !strcmp(m, "/exit")) break;
        else if (!strcmp(m, "/help"))
            puts("[commands: /reset, /save FILE, /load FILE, /stats, /quit; end a line with \\ to continue it]");
        else if (!strcmp(m, "/stats")) stats(&c);
        else if (!strcmp(m, "/reset")) {
            if ((st = reset_to_system(&c)) == EM_OK) { c.pending = NULL; c.after_stop_string = 0; puts("[reset to the system prompt]"); }
            else report("reset failed", st);
        } else if (!strcmp(m, "/save") && arg && *arg) {
            st = em_session_snapshot_file(c.s, arg);
            if (st == EM_OK) printf("[saved to %s]\n", arg);
            else report("save failed", st);
        } else if (!strcmp(m, "/load") && arg && *arg) {
            st = em_session_restore_file(c.s, arg);
            if (st == EM_OK) { c.pending = c.t.close; c.after_stop_string = 0; printf("[loaded %s]\n", arg); }
            else report("load failed (the conversation is unchanged)", st);
        } else {
            printf("[unknown command %s; /help]\n", m);
        }
        fflush(stdout);
    }
    free(msg.p);
    rc = 0;
done:
    free(c.base);
    free(c.system_text);
    free(system_buf);
    em_session_free(c.s);
    em_model_close(c.model);
    return rc;
}
