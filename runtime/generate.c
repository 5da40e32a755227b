/*
 * generate.c — streaming generation: prompt -> prefill -> (sample, stream text, decode) per token, in the
 * session's fixed memory. Also the session's text state (its tokenizer, loaded on first use) and the
 * generation hooks session.c calls on free and reset.
 *
 * The token loop allocates nothing: a token's text comes from the tokenizer's per-id byte table through
 * the streaming UTF-8 decoder (tokenizer.h) into one buffer sized at tokenizer load for the longest token
 * plus the longest stop string; sampling uses the arena's sampler rows. Only encoding the prompt allocates
 * (the tokenizer libraries do), before the loop.
 *
 * Stop strings are matched on the text, across token boundaries: text that could be the start of a stop
 * string is held back until it cannot be (or until the last event), so a stop string never reaches the
 * callback. Every picked token is consumed (decoded) before the call returns: the state always holds
 * everything the caller saw, and a following call, a snapshot or a chat turn continues from it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "session.h"
#include "tokenizer.h"
#include "util.h"

/* sampler.c */
em_status em_sampler_check(const em_sampler_options *o);
em_status em_sampler_pick(struct em_session *s, const em_sampler_options *o, uint32_t n_valid, int32_t *token,
                          float *logprob);
void em_sampler_reset(struct em_session *s);
void em_sampler_push(struct em_session *s, int32_t tok);

struct em_gen_text {
    em_tokenizer *tok;
    char *buf;          /* [cap] text of the current token: held-back text, then the new bytes */
    size_t cap;
};

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// ---- session hooks and the session's tokenizer ---------------------------------------------------------------

void em_gen_session_free(struct em_session *s) {
    if (!s->text) return;
    em_tokenizer_free(s->text->tok);
    free(s->text->buf);
    free(s->text);
    s->text = NULL;
}

void em_gen_session_reset(struct em_session *s) {
    em_sampler_reset(s);
    s->n_utf8_pend = 0;
}

EM_API em_status em_session_tokenizer(em_session *s, const em_tokenizer **tok) {
    if (!s || !tok) return em_fail(EM_ERR_INVALID_ARG, "em_session_tokenizer: NULL argument");
    if (!s->text) {
        em_tokenizer *t = NULL;
        EM_TRY(em_tokenizer_create(s->model, &t));
        struct em_gen_text *g = calloc(1, sizeof *g);
        size_t cap = EM_GENERATE_MAX_STOP_BYTES + EM_UTF8_STREAM_OUT(t->max_bytes) + 16;
        char *buf = malloc(cap);
        if (!g || !buf) {
            free(g);
            free(buf);
            em_tokenizer_free(t);
            return em_fail(EM_ERR_OUT_OF_MEMORY, "em_session_tokenizer: out of memory");
        }
        g->tok = t;
        g->buf = buf;
        g->cap = cap;
        s->text = g;
    }
    *tok = s->text->tok;
    return EM_OK;
}

EM_API em_generate_options em_generate_default_options(void) {
    em_generate_options o;
    memset(&o, 0, sizeof o);
    o.sampler = em_sampler_default_options();
    o.max_tokens = 128;
    o.flags = EM_TOKENIZE_PARSE_SPECIAL;
    o.stop_at_eos = 1;
    o.logprobs = 0;
    return o;
}

// ---- stop strings -------------------------------------------------------------------------------------------

/* The earliest complete stop string in t[0..n): its start, or n when there is none. */
static size_t find_stop(const em_generate_options *o, const char *t, size_t n) {
    size_t at = n;
    for (uint32_t i = 0; i < o->n_stop_strings; i++) {
        const char *hit = memmem(t, n, o->stop_strings[i], strlen(o->stop_strings[i]));
        if (hit && (size_t)(hit - t) < at) at = (size_t)(hit - t);
    }
    return at;
}

/* How many bytes at the end of t[0..n) are a proper prefix of some stop string (they must wait). */
static size_t holdback(const em_generate_options *o, const char *t, size_t n) {
    size_t hold = 0;
    for (uint32_t i = 0; i < o->n_stop_strings; i++) {
        const char *ss = o->stop_strings[i];
        size_t l = strlen(ss);
        for (size_t h = (l - 1 < n ? l - 1 : n); h > hold; h--)
            if (t[n - h] == ss[0] && !memcmp(t + n - h, ss, h)) { hold = h; break; }
    }
    return hold;
}

static em_status check_options(const em_generate_options *o) {
    EM_TRY(em_sampler_check(&o->sampler));
    if (o->n_stop_strings > EM_GENERATE_MAX_STOP || (o->n_stop_strings && !o->stop_strings))
        return em_fail(EM_ERR_INVALID_ARG, "generate: %u stop strings (at most %u, and stop_strings must be set)",
                       o->n_stop_strings, EM_GENERATE_MAX_STOP);
    for (uint32_t i = 0; i < o->n_stop_strings; i++) {
        size_t l = o->stop_strings[i] ? strlen(o->stop_strings[i]) : 0;
        if (l == 0 || l > EM_GENERATE_MAX_STOP_BYTES)
            return em_fail(EM_ERR_INVALID_ARG, "generate: stop string %u has %zu bytes (1..%u)", i, l,
                           EM_GENERATE_MAX_STOP_BYTES);
    }
    if (o->n_stop_tokens > EM_GENERATE_MAX_STOP || (o->n_stop_tokens && !o->stop_tokens))
        return em_fail(EM_ERR_INVALID_ARG, "generate: %u stop tokens (at most %u, and stop_tokens must be set)",
                       o->n_stop_tokens, EM_GENERATE_MAX_STOP);
    if (o->flags & ~(EM_TOKENIZE_ADD_BOS | EM_TOKENIZE_PARSE_SPECIAL))
        return em_fail(EM_ERR_INVALID_ARG, "generate: unknown prompt flags 0x%x", o->flags);
    return EM_OK;
}

// ---- the loop ---------------------------------------------------------------------------------------------------

static em_status run(em_session *s, const int32_t *ids, size_t n, const em_generate_options *o, em_token_callback cb,
                     void *user, em_generate_stats *st) {
    const em_tokenizer *tok = s->text ? s->text->tok : NULL;
    char *buf = s->text ? s->text->buf : NULL;
    st->prompt_tokens = (uint32_t)(n > UINT32_MAX ? UINT32_MAX : n);

    double t0 = now_s();
    if (n) {
        em_status ps = em_session_prefill(s, ids, n, EM_LOGITS_LAST, NULL);
        st->prefill_seconds = now_s() - t0;
        if (ps != EM_OK) { st->stop = EM_STOP_ERROR; return ps; }
        for (size_t i = n > EM_SAMPLER_MAX_RECENT ? n - EM_SAMPLER_MAX_RECENT : 0; i < n; i++)
            em_sampler_push(s, ids[i]);
    } else if (!s->have_logits) {
        st->stop = EM_STOP_ERROR;
        return em_fail(EM_ERR_BAD_STATE,
                       "generate: an empty prompt continues from the last logits, and there are none");
    }
    if (o->sampler.seed) em_session_set_seed(s, o->sampler.seed);

    const int32_t eos = tok ? tok->eos : s->model->cfg.eos_id;
    const uint32_t n_valid = tok && tok->vocab < s->dim.vocab ? tok->vocab : s->dim.vocab;
    em_utf8_stream u8;
    memcpy(u8.pend, s->utf8_pend, 4);
    u8.n_pend = s->n_utf8_pend;
    size_t held = 0; /* bytes at the start of buf still waiting (a possible stop-string start) */
    em_status status = EM_OK;
    double busy = 0;

    for (uint32_t i = 0; i < o->max_tokens; i++) {
        /* hybrid: no room for another token. Refused before the pick, so that every token picked (and shown to
         * the callback, and counted) is also consumed: the state holds every token the caller saw. */
        if (s->model->n_attn && s->n_past >= s->max_context) {
            status = em_fail(EM_ERR_CONTEXT_FULL, "generate: context full: the session holds %llu tokens, the "
                             "max_context planned for the KV cache (every generated token was consumed; reset the "
                             "session, or create it with a larger em_session_options.max_context)",
                             (unsigned long long)s->n_past);
            st->stop = EM_STOP_ERROR;
            break;
        }
        double ta = now_s();
        int32_t t;
        float lp = 0;
        status = em_sampler_pick(s, &o->sampler, n_valid, &t, o->logprobs ? &lp : NULL);
        busy += now_s() - ta;
        if (status != EM_OK) { st->stop = EM_STOP_ERROR; break; }

        em_stop_reason end = EM_STOP_NONE;
        if (o->stop_at_eos && t == eos) end = EM_STOP_EOS;
        for (uint32_t k = 0; k < o->n_stop_tokens && !end; k++) if (t == o->stop_tokens[k]) end = EM_STOP_TOKEN;

        size_t emit = 0;
        if (buf) {
            size_t nb, total = held;
            /* (an id past the tokenizer can only come from the device's greedy pick, which sees every id) */
            if ((uint32_t)t < tok->vocab && !(tok->flags[t] & (EM_PIECE_SPECIAL | EM_PIECE_UNUSED))) {
                const uint8_t *bytes = em_tok_bytes(tok, t, &nb);
                total += em_utf8_stream_push(&u8, bytes, nb, buf + held);
            }
            if (end) total += em_utf8_stream_flush(&u8, buf + total); /* the text is complete */
            size_t cut = find_stop(o, buf, total);
            if (cut < total) { emit = cut; end = EM_STOP_STRING; u8.n_pend = 0; }
            else if (end || i + 1 == o->max_tokens) emit = total; /* the last event takes what was held */
            else emit = total - holdback(o, buf, total);
            held = total - emit;
        }
        if (!end && i + 1 == o->max_tokens) end = EM_STOP_MAX_TOKENS;

        em_token_event ev = { .text = buf ? buf : "", .text_len = emit, .token = t, .logprob = lp, .index = i };
        int stop_cb = cb ? cb(&ev, user) : 0;
        if (buf && held) memmove(buf, buf + emit, held);
        st->generated_tokens = i + 1;

        double tb = now_s();
        status = em_session_decode(s, t, NULL); /* consumed in every case: the state holds what was seen */
        busy += now_s() - tb;
        if (status != EM_OK) { st->stop = EM_STOP_ERROR; break; }
        if (stop_cb) {
            st->stop = EM_STOP_CALLBACK;
            status = em_fail(EM_ERR_ABORTED, "generate: stopped by the callback");
            break;
        }
        if (end) { st->stop = end; break; }
    }
    if (o->max_tokens == 0) st->stop = EM_STOP_MAX_TOKENS;
    memcpy(s->utf8_pend, u8.pend, 4);
    s->n_utf8_pend = u8.n_pend;
    st->decode_seconds = busy;
    return status;
}

static em_status generate(em_session *s, const int32_t *ids, size_t n, const em_generate_options *opts,
                          em_token_callback cb, void *user, em_generate_stats *stats) {
    em_generate_stats local;
    em_generate_stats *st = stats ? stats : &local;
    memset(st, 0, sizeof *st);
    st->session_bytes = s->block_size;
    em_generate_options o = opts ? *opts : em_generate_default_options();
    em_status r = check_options(&o);
    if (r == EM_OK) r = run(s, ids, n, &o, cb, user, st);
    if (st->prefill_seconds > 0) st->prefill_tokens_per_s = st->prompt_tokens / st->prefill_seconds;
    if (st->decode_seconds > 0) st->decode_tokens_per_s = st->generated_tokens / st->decode_seconds;
    if (r == EM_OK) em_clear_error();
    return r;
}

EM_API em_status em_session_generate_tokens(em_session *s, const int32_t *ids, size_t n, const em_generate_options *o,
                                            em_token_callback cb, void *user, em_generate_stats *stats) {
    if (stats) memset(stats, 0, sizeof *stats);
    if (!s || (!ids && n))
        return em_fail(EM_ERR_INVALID_ARG, "em_session_generate_tokens: NULL session, or NULL ids with n > 0");
    if (!s->text && s->model->cfg.tokenizer_kind != EM_TOK_NONE && s->model->blob.tokenizer_size) {
        const em_tokenizer *t; /* text events when the blob has a tokenizer */
        EM_TRY(em_session_tokenizer(s, &t));
    }
    return generate(s, ids, n, o, cb, user, stats);
}

EM_API em_status em_session_generate(em_session *s, const char *prompt, const em_generate_options *opts,
                                     em_token_callback cb, void *user, em_generate_stats *stats) {
    if (stats) memset(stats, 0, sizeof *stats);
    if (!s) return em_fail(EM_ERR_INVALID_ARG, "em_session_generate: NULL session");
    em_generate_options o = opts ? *opts : em_generate_default_options();
    EM_TRY(check_options(&o));
    const em_tokenizer *t = NULL;
    EM_TRY(em_session_tokenizer(s, &t));
    uint32_t flags = o.flags & EM_TOKENIZE_PARSE_SPECIAL;
    if ((o.flags & EM_TOKENIZE_ADD_BOS) && s->n_past == 0) flags |= EM_TOKENIZE_ADD_BOS;
    int32_t *ids = NULL;
    size_t n = 0;
    size_t len = prompt ? strlen(prompt) : 0;
    if (len || (flags & EM_TOKENIZE_ADD_BOS)) EM_TRY(em_tokenizer_encode_alloc(t, prompt, len, flags, &ids, &n));
    em_status r = generate(s, ids, n, &o, cb, user, stats);
    free(ids);
    return r;
}
