/*
 * tok_fuzz.h — the body the two tokenizer targets share (fuzz_tok_spm.c, fuzz_tok_bpe.c): one loaded
 * tokenizer, arbitrary bytes in.
 *
 * Input: byte 0 picks the operation and its flags, the rest is its argument.
 *   op 0, 1 (encode):  the rest is text (any bytes: invalid UTF-8, NULs, special-token text). Checks: the size
 *                      query and the real call agree, every id is in [0, vocab), a one-short buffer gets
 *                      EM_ERR_BUFFER_TOO_SMALL, and decoding the ids gives valid, NUL-terminated UTF-8.
 *   op 2 (decode):     the rest is little-endian int32 ids, any value. Checks: an id outside [0, vocab) gets
 *                      EM_ERR_TOKEN_RANGE; otherwise the text is valid UTF-8; each id's streamed bytes pass
 *                      through the fixed-memory UTF-8 stream decoder within its documented bound.
 *   op 3 (find):       the rest, up to its first NUL, is looked up; a found id is in range.
 */
#ifndef EM_TOK_FUZZ_H
#define EM_TOK_FUZZ_H

#include <string.h>

#include "fuzz.h"
#include "tokenizer.h"

static inline void tok_fuzz_valid_utf8(const char *s, size_t n) {
    size_t i = 0, l;
    while (i < n) {
        FUZZ_CHECK(em_utf8_next((const uint8_t *)s + i, n - i, &l) == 1);
        i += l;
    }
}

/* Decodes ids and checks the text; returns it (malloc'd) with its length, or NULL on a refusal. */
static inline char *tok_fuzz_decode(const em_tokenizer *tok, const int32_t *ids, size_t n, uint32_t flags, size_t *len) {
    size_t need = 0;
    em_status s = em_tokenizer_decode(tok, ids, n, flags, NULL, 0, &need);
    if (s != EM_OK) {
        fuzz_check_failure(s);
        FUZZ_CHECK(s == EM_ERR_TOKEN_RANGE);
        return NULL;
    }
    char *text = malloc(need + 1);
    FUZZ_CHECK(text);
    size_t got = 0;
    if (need) FUZZ_CHECK(em_tokenizer_decode(tok, ids, n, flags, text, need, &got) == EM_ERR_BUFFER_TOO_SMALL);
    FUZZ_CHECK(em_tokenizer_decode(tok, ids, n, flags, text, need + 1, &got) == EM_OK);
    FUZZ_CHECK(got == need && text[got] == 0);
    tok_fuzz_valid_utf8(text, got);
    *len = got;
    return text;
}

static inline void tok_fuzz_one(const em_tokenizer *tok, const uint8_t *data, size_t size) {
    if (size == 0) return;
    em_tokenizer_info info;
    FUZZ_CHECK(em_tokenizer_get_info(tok, &info) == EM_OK);
    const uint8_t op = data[0] & 3, fl = (uint8_t)((data[0] >> 2) & 3);
    const uint8_t *arg = data + 1;
    const size_t n_arg = size - 1;
    if (op <= 1) {
        const char *text = (const char *)arg;
        size_t n = 0;
        em_status s = em_tokenizer_encode(tok, n_arg ? text : NULL, n_arg, fl, NULL, 0, &n);
        if (s != EM_OK) { fuzz_check_failure(s); return; }
        int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
        FUZZ_CHECK(ids);
        size_t n2 = 0;
        if (n) FUZZ_CHECK(em_tokenizer_encode(tok, text, n_arg, fl, ids, n - 1, &n2) == EM_ERR_BUFFER_TOO_SMALL);
        FUZZ_CHECK(em_tokenizer_encode(tok, n_arg ? text : NULL, n_arg, fl, ids, n, &n2) == EM_OK && n2 == n);
        for (size_t i = 0; i < n; i++) FUZZ_CHECK(ids[i] >= 0 && (uint32_t)ids[i] < info.vocab_size);
        size_t len = 0;
        char *back = tok_fuzz_decode(tok, ids, n, 0, &len);
        FUZZ_CHECK(back); /* ids the encoder made always decode */
        free(back);
        free(ids);
    } else if (op == 2) {
        size_t n = n_arg / 4;
        int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
        FUZZ_CHECK(ids);
        int in_range = 1;
        for (size_t i = 0; i < n; i++) {
            uint32_t u = (uint32_t)arg[4 * i] | ((uint32_t)arg[4 * i + 1] << 8) | ((uint32_t)arg[4 * i + 2] << 16) |
                         ((uint32_t)arg[4 * i + 3] << 24);
            /* flag bit 1 folds the ids into range, so that most inputs decode */
            ids[i] = (fl & 2) ? (int32_t)(u % info.vocab_size) : (int32_t)u;
            if (ids[i] < 0 || (uint32_t)ids[i] >= info.vocab_size) in_range = 0;
        }
        size_t len = 0;
        char *text = tok_fuzz_decode(tok, ids, n, fl & 1 ? EM_DETOKENIZE_SKIP_SPECIAL : 0, &len);
        FUZZ_CHECK((text != NULL) == in_range);
        free(text);
        /* streaming: token by token through the UTF-8 stream decoder, in fixed memory */
        em_utf8_stream st;
        memset(&st, 0, sizeof st);
        for (size_t i = 0; i < n; i++) {
            const char *b = NULL;
            size_t bl = 0;
            em_status s = em_tokenizer_token_bytes(tok, ids[i], &b, &bl);
            if (s != EM_OK) { fuzz_check_failure(s); FUZZ_CHECK(s == EM_ERR_TOKEN_RANGE); continue; }
            FUZZ_CHECK(bl <= info.max_token_bytes);
            char *out = malloc(EM_UTF8_STREAM_OUT(bl));
            FUZZ_CHECK(out);
            size_t o = em_utf8_stream_push(&st, (const uint8_t *)b, bl, out);
            FUZZ_CHECK(o <= EM_UTF8_STREAM_OUT(bl));
            tok_fuzz_valid_utf8(out, o);
            free(out);
        }
        char tail[4];
        size_t o = em_utf8_stream_flush(&st, tail);
        FUZZ_CHECK(o <= 3);
        tok_fuzz_valid_utf8(tail, o);
        free(ids);
    } else {
        size_t n = strnlen((const char *)arg, n_arg);
        char *text = malloc(n + 1);
        FUZZ_CHECK(text);
        memcpy(text, arg, n);
        text[n] = 0;
        int32_t id = -1;
        em_status s = em_tokenizer_find(tok, text, &id);
        if (s == EM_OK) FUZZ_CHECK(id >= 0 && (uint32_t)id < info.vocab_size);
        else FUZZ_CHECK(s == EM_ERR_NOT_FOUND || s == EM_ERR_INVALID_ARG);
        free(text);
    }
}

/* Loads the fixture at EM_FUZZ_SOURCE_DIR/rel once (aborts if it is missing: the target would test nothing). */
static inline em_tokenizer *tok_fuzz_load(const char *rel) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", EM_FUZZ_SOURCE_DIR, rel);
    em_tokenizer *t = NULL;
    if (em_tokenizer_create_from_file(path, &t) != EM_OK) {
        fprintf(stderr, "fuzz: cannot load %s: %s\n", path, em_last_error());
        abort();
    }
    return t;
}

#endif /* EM_TOK_FUZZ_H */
