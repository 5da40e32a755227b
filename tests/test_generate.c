/*
 * test_generate.c — proves em_session_generate on the tiny HF fixture packed with the test tokenizers
 * (vocab 512 model; SentencePiece 500 and BPE 504 tokenizers, so ids 500..511 are vocabulary padding):
 *   - greedy generation equals a hand-written loop (encode, prefill, argmax over the tokenizer's ids,
 *     decode), and every event's text is whole, valid UTF-8 that adds up to the tokens' bytes;
 *   - ids the tokenizer lacks are never generated (300 tokens at temperature 3, both tokenizers);
 *   - a seed replays the same text; another seed does not; the default seed repeats run to run;
 *   - a stop string ends generation before it (the callback never sees it), a stop token after it, a
 *     callback's stop gives EM_ERR_ABORTED with every seen token consumed;
 *   - generating 24 tokens equals generating 10 then continuing with an empty prompt for 14;
 *   - BOS only on an empty session, max_tokens 0 only prefills, stats are filled;
 *   - nothing is allocated inside the token loop (malloc interposed; not under ASan, which owns malloc);
 *   - errors: no tokenizer in the blob, empty prompt before any logits, bad options.
 *
 *   test_generate TINY_SPM.emb TINY_BPE.emb TINY_NONE.emb
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"
#include "testutil.h"
#include "tokenizer.h"

// ---- malloc interposition: counts allocations while g_counting (not under ASan) -----------------------------
#if !defined(__SANITIZE_ADDRESS__)
#define EM_COUNT_MALLOC 1
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static volatile int g_counting = 0, g_allocs = 0;
void *malloc(size_t n) { if (g_counting) g_allocs++; return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { if (g_counting) g_allocs++; return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { if (g_counting) g_allocs++; return __libc_realloc(p, n); }
#endif

#define MAXTOK 400

typedef struct rec {
    int32_t ids[MAXTOK];
    char text[MAXTOK * 64];
    size_t text_len;
    int n, stop_at, bad_utf8;
    em_session *s;
} rec;

static int valid_utf8(const char *s, size_t n) {
    size_t l;
    for (size_t i = 0; i < n; i += l)
        if (em_utf8_next((const uint8_t *)s + i, n - i, &l) != 1) return 0;
    return 1;
}

static int on_token(const em_token_event *ev, void *user) {
    rec *r = user;
#ifdef EM_COUNT_MALLOC
    if (ev->index == 0) g_counting = 1; /* from the first token to the end of the call */
#endif
    if (r->n < MAXTOK) r->ids[r->n++] = ev->token;
    if (!valid_utf8(ev->text, ev->text_len)) r->bad_utf8++;
    if (r->text_len + ev->text_len < sizeof r->text) {
        memcpy(r->text + r->text_len, ev->text, ev->text_len);
        r->text_len += ev->text_len;
    }
    return r->stop_at >= 0 && (int)ev->index == r->stop_at;
}

static em_session *new_session(em_model *m) {
    em_session *s = NULL;
    CHECK_STATUS(em_session_create(m, NULL, &s), EM_OK);
    return s;
}

static em_status gen(em_session *s, const char *prompt, const em_generate_options *o, rec *r, em_generate_stats *st) {
    memset(r, 0, sizeof *r);
    r->stop_at = -1;
    r->s = s;
    em_status rc = em_session_generate(s, prompt, o, on_token, r, st);
#ifdef EM_COUNT_MALLOC
    g_counting = 0;
#endif
    return rc;
}

static const char *PROMPT = "The state space model keeps";

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: test_generate SPM.emb BPE.emb NONE.emb\n"); return 2; }
    em_model_options mo = em_model_default_options();
    mo.backend = EM_BACKEND_CPU;
    em_model *m = NULL, *mb = NULL, *mn = NULL;
    CHECK_STATUS(em_model_open(argv[1], &mo, &m), EM_OK);
    CHECK_STATUS(em_model_open(argv[2], &mo, &mb), EM_OK);
    CHECK_STATUS(em_model_open(argv[3], &mo, &mn), EM_OK);
    if (!m || !mb || !mn) return em_test_finish("test_generate");
    static rec A, B, C;
    em_generate_stats st;
    em_generate_options o = em_generate_default_options();
    o.max_tokens = 24;
    o.stop_at_eos = 0;

    /* greedy == the hand-written loop */
    em_session *s = new_session(m);
    CHECK_STATUS(gen(s, PROMPT, &o, &A, &st), EM_OK);
    CHECK(A.n == 24 && st.generated_tokens == 24 && st.stop == EM_STOP_MAX_TOKENS && A.bad_utf8 == 0);
    CHECK(st.prompt_tokens > 3 && st.prefill_tokens_per_s > 0 && st.decode_tokens_per_s > 0 && st.session_bytes > 0);
#ifdef EM_COUNT_MALLOC
    CHECK_MSG(g_allocs == 0, "%d allocations inside the token loop", g_allocs);
    g_counting = 1; /* the interposition itself works */
    void *volatile probe = malloc(16);
    g_counting = 0;
    free(probe);
    CHECK_MSG(g_allocs == 1, "malloc interposition is not counting (%d)", g_allocs);
    g_allocs = 0;
#endif
    const em_tokenizer *tok = NULL;
    CHECK_STATUS(em_session_tokenizer(s, &tok), EM_OK);
    uint64_t pos = 0;
    CHECK_STATUS(em_session_position(s, &pos), EM_OK);
    CHECK(pos == st.prompt_tokens + 24); /* every generated token was consumed */
    {
        int32_t ids[64];
        size_t n = 0;
        CHECK_STATUS(em_tokenizer_encode(tok, PROMPT, strlen(PROMPT), EM_TOKENIZE_PARSE_SPECIAL, ids, 64, &n), EM_OK);
        CHECK(n == st.prompt_tokens);
        em_session *h = new_session(m);
        float *lg = malloc(sizeof(float) * 512);
        CHECK_STATUS(em_session_prefill(h, ids, n, EM_LOGITS_LAST, lg), EM_OK);
        char bytes[MAXTOK * 64];
        size_t nb = 0;
        for (int i = 0; i < 24; i++) {
            int32_t best = 0;
            for (int32_t k = 1; k < 500; k++) if (lg[k] > lg[best]) best = k; /* over the tokenizer's ids */
            CHECK_MSG(A.ids[i] == best, "token %d: generate %d, hand loop %d", i, A.ids[i], best);
            const char *b;
            size_t bl;
            em_tokenizer_token_bytes(tok, best, &b, &bl);
            memcpy(bytes + nb, b, bl);
            nb += bl;
            CHECK_STATUS(em_session_decode(h, best, lg), EM_OK);
        }
        size_t wn = 0;
        char *want = em_utf8_sanitize(bytes, nb - s->n_utf8_pend, &wn); /* a split last character waits */
        CHECK_MSG(wn == A.text_len && !memcmp(want, A.text, wn), "events' text (%zu bytes) != the tokens' bytes (%zu)",
                  A.text_len, wn);
        free(want);
        free(lg);
        em_session_free(h);
    }
    printf("test_generate: greedy text: \"%.*s\"\n", (int)(A.text_len < 120 ? A.text_len : 120), A.text);

    /* continuation: 10 + 14 == 24 */
    em_session *s2 = new_session(m);
    em_generate_options o10 = o;
    o10.max_tokens = 10;
    CHECK_STATUS(gen(s2, PROMPT, &o10, &B, &st), EM_OK);
    o10.max_tokens = 14;
    CHECK_STATUS(gen(s2, "", &o10, &C, &st), EM_OK);
    CHECK(st.prompt_tokens == 0 && C.n == 14);
    CHECK(!memcmp(B.ids, A.ids, 10 * sizeof(int32_t)) && !memcmp(C.ids, A.ids + 10, 14 * sizeof(int32_t)));
    em_session_free(s2);

    /* stop string: cut before it */
    if (A.text_len > 12) {
        size_t k = A.text_len / 2;
        while (k < A.text_len && ((unsigned char)A.text[k] & 0xC0) == 0x80) k++;
        size_t l = 1;
        while (k + l < A.text_len && l < 3) l++;
        while (k + l < A.text_len && ((unsigned char)A.text[k + l] & 0xC0) == 0x80) l++;
        char stop[16] = "";
        memcpy(stop, A.text + k, l);
        const char *first = memmem(A.text, A.text_len, stop, l); /* the text may hold NUL bytes */
        size_t want = first ? (size_t)(first - A.text) : 0;
        const char *stops[2] = { "\x01never there", stop };
        em_generate_options os = o;
        os.stop_strings = stops;
        os.n_stop_strings = 2;
        em_session *s3 = new_session(m);
        CHECK_STATUS(gen(s3, PROMPT, &os, &B, &st), EM_OK);
        CHECK_MSG(st.stop == EM_STOP_STRING && B.text_len == want && !memcmp(B.text, A.text, want),
                  "stop string \"%s\": stop %d, %zu bytes, want %zu", stop, (int)st.stop, B.text_len, want);
        os.n_stop_strings = 1; /* one that never appears: the whole text, nothing held back at the end */
        CHECK_STATUS(em_session_reset(s3), EM_OK);
        CHECK_STATUS(gen(s3, PROMPT, &os, &B, &st), EM_OK);
        CHECK(st.stop == EM_STOP_MAX_TOKENS && B.text_len == A.text_len && !memcmp(B.text, A.text, A.text_len));
        em_session_free(s3);
    }

    /* stop token; callback stop */
    {
        em_generate_options ot = o;
        int32_t stop_tok = A.ids[5];
        int first = 0;
        while (A.ids[first] != stop_tok) first++;
        ot.stop_tokens = &stop_tok;
        ot.n_stop_tokens = 1;
        em_session *s4 = new_session(m);
        CHECK_STATUS(gen(s4, PROMPT, &ot, &B, &st), EM_OK);
        CHECK(st.stop == EM_STOP_TOKEN && B.n == first + 1 && B.ids[first] == stop_tok);
        CHECK_STATUS(em_session_reset(s4), EM_OK);
        memset(&B, 0, sizeof B);
        B.stop_at = 3;
        CHECK_STATUS(em_session_generate(s4, PROMPT, &o, on_token, &B, &st), EM_ERR_ABORTED);
        CHECK(st.stop == EM_STOP_CALLBACK && st.generated_tokens == 4 && B.n == 4);
        CHECK_STATUS(em_session_position(s4, &pos), EM_OK);
        CHECK(pos == st.prompt_tokens + 4);
        em_session_free(s4);
    }

    /* sampling: seeds replay, padding ids never come out */
    {
        em_generate_options os = o;
        os.sampler.temperature = 0.8f;
        os.sampler.top_p = 0.9f;
        os.sampler.seed = 5;
        em_session *x = new_session(m), *y = new_session(m);
        CHECK_STATUS(gen(x, PROMPT, &os, &B, &st), EM_OK);
        CHECK_STATUS(gen(y, PROMPT, &os, &C, &st), EM_OK);
        CHECK(B.n == 24 && !memcmp(B.ids, C.ids, sizeof B.ids) && B.text_len == C.text_len);
        os.sampler.seed = 6;
        CHECK_STATUS(em_session_reset(y), EM_OK);
        CHECK_STATUS(gen(y, PROMPT, &os, &C, &st), EM_OK);
        CHECK(memcmp(B.ids, C.ids, sizeof B.ids) != 0);
        os.sampler.seed = 0; /* default: fresh sessions start from the same state */
        CHECK_STATUS(em_session_reset(x), EM_OK);
        CHECK_STATUS(em_session_reset(y), EM_OK);
        CHECK_STATUS(gen(x, PROMPT, &os, &B, &st), EM_OK);
        CHECK_STATUS(gen(y, PROMPT, &os, &C, &st), EM_OK);
        CHECK(!memcmp(B.ids, C.ids, sizeof B.ids));
        em_model *ms[2] = { m, mb };
        for (int k = 0; k < 2; k++) {
            em_session *z = new_session(ms[k]);
            em_generate_options hot = o;
            hot.max_tokens = 300;
            hot.sampler.temperature = 3.0f;
            hot.sampler.seed = 9;
            CHECK_STATUS(gen(z, PROMPT, &hot, &B, &st), EM_OK);
            const uint32_t lim = k == 0 ? 500 : 504;
            int over = 0;
            for (int i = 0; i < B.n; i++) over += (uint32_t)B.ids[i] >= lim;
            CHECK_MSG(B.n == 300 && over == 0, "%s: %d of %d ids >= the tokenizer's %u", k ? "bpe" : "spm", over, B.n,
                      lim);
            CHECK_MSG(B.bad_utf8 == 0, "%s: an event's text was not valid UTF-8", k ? "bpe" : "spm");
            em_session_free(z);
        }
        em_session_free(x);
        em_session_free(y);
    }

    /* BOS only on an empty session; max_tokens 0 only prefills */
    {
        em_session *z = new_session(m);
        em_generate_options ob = o;
        ob.flags |= EM_TOKENIZE_ADD_BOS;
        ob.max_tokens = 0;
        CHECK_STATUS(gen(z, PROMPT, &ob, &B, &st), EM_OK);
        CHECK(B.n == 0 && st.stop == EM_STOP_MAX_TOKENS);
        uint32_t with_bos = st.prompt_tokens;
        CHECK_STATUS(gen(z, PROMPT, &ob, &B, &st), EM_OK);
        CHECK(st.prompt_tokens + 1 == with_bos);
        CHECK_STATUS(em_session_position(z, &pos), EM_OK);
        CHECK(pos == 2ull * with_bos - 1);
        em_session_free(z);
    }

    /* the BPE blob generates valid text too */
    {
        em_session *z = new_session(mb);
        CHECK_STATUS(gen(z, "Hello, 世界", &o, &B, &st), EM_OK);
        CHECK(B.n == 24 && B.bad_utf8 == 0);
        em_session_free(z);
    }

    /* errors */
    {
        em_session *z = new_session(mn);
        CHECK_STATUS(gen(z, PROMPT, &o, &B, &st), EM_ERR_TOKENIZER);
        const em_tokenizer *none = NULL;
        CHECK_STATUS(em_session_tokenizer(z, &none), EM_ERR_TOKENIZER);
        int32_t ids[3] = { 5, 17, 42 };
        memset(&B, 0, sizeof B);
        B.stop_at = -1;
        CHECK_STATUS(em_session_generate_tokens(z, ids, 3, &o, on_token, &B, &st), EM_OK);
        CHECK(B.n == 24 && B.text_len == 0);
        em_session_free(z);
        z = new_session(m);
        CHECK_STATUS(gen(z, "", &o, &B, &st), EM_ERR_BAD_STATE);
        CHECK_STATUS(gen(z, NULL, &o, &B, &st), EM_ERR_BAD_STATE);
        em_generate_options ob = o;
        const char *many[9] = { "a", "b", "c", "d", "e", "f", "g", "h", "i" };
        ob.stop_strings = many;
        ob.n_stop_strings = 9;
        CHECK_STATUS(gen(z, PROMPT, &ob, &B, &st), EM_ERR_INVALID_ARG);
        const char *empty[1] = { "" };
        ob.stop_strings = empty;
        ob.n_stop_strings = 1;
        CHECK_STATUS(gen(z, PROMPT, &ob, &B, &st), EM_ERR_INVALID_ARG);
        ob = o;
        ob.flags = 0x100;
        CHECK_STATUS(gen(z, PROMPT, &ob, &B, &st), EM_ERR_INVALID_ARG);
        ob = o;
        ob.sampler.top_p = 2.0f;
        CHECK_STATUS(gen(z, PROMPT, &ob, &B, &st), EM_ERR_INVALID_ARG);
        CHECK_STATUS(em_session_position(z, &pos), EM_OK);
        CHECK(pos == 0); /* refused before anything ran */
        CHECK_STATUS(em_session_generate(NULL, PROMPT, &o, NULL, NULL, NULL), EM_ERR_INVALID_ARG);
        em_session_free(z);
    }
    em_session_free(s);
    em_model_close(m);
    em_model_close(mb);
    em_model_close(mn);
    return em_test_finish("test_generate");
}
