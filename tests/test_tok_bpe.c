/*
 * test_tok_bpe.c — proves the C byte-level BPE tokenizer gives HF tokenizers' ids exactly: for every case
 * of tests/data/tokenizer/bpe_goldens.json (>= 200 strings: unicode, composed and decomposed accents,
 * emoji, CJK, whitespace runs, digits, special tokens in the text, invalid UTF-8 as raw bytes; made by
 * tools/goldens/make_bpe_goldens.py with HF `tokenizers`) the ids with special tokens parsed (HF's
 * default) and without (HF's encode_special_tokens), and HF's decode of the ids, byte for byte.
 * Also: the size query and EM_ERR_BUFFER_TOO_SMALL contract, find(), a token table that never exceeds
 * the vocabulary, and unsupported tokenizer.json variants refused with EM_ERR_TOKENIZER (never a crash).
 *
 *   test_tok_bpe   (reads $EM_TEST_DATA/tokenizer/)
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "edgemamba.h"
#include "testutil.h"

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) { free(b); b = NULL; }
    fclose(f);
    if (b) { b[sz] = 0; *n = (size_t)sz; }
    return b;
}

static size_t unhex(const char *h, char *out) {
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (char)v;
    }
    return n;
}

static void print_ids(const char *label, const int32_t *v, size_t n) {
    fprintf(stderr, "    %s (%zu):", label, n);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", v[i]);
    fprintf(stderr, n > 40 ? " ...\n" : "\n");
}

static int g_shown = 0;

/* Encodes text with flags and compares with the golden array; prints the first few mismatches. */
static void check_ids(const em_tokenizer *tok, const char *text, size_t len, uint32_t flags, const cJSON *want,
                      int idx, const char *what) {
    size_t n = 0;
    CHECK_STATUS(em_tokenizer_encode(tok, text, len, flags, NULL, 0, &n), EM_OK);
    int32_t *got = malloc((n + 1) * sizeof *got);
    CHECK_STATUS(em_tokenizer_encode(tok, text, len, flags, got, n, &n), EM_OK);
    size_t wn = (size_t)cJSON_GetArraySize(want);
    int ok = wn == n;
    for (size_t i = 0; ok && i < n; i++) ok = cJSON_GetArrayItem(want, (int)i)->valueint == got[i];
    if (!ok) {
        em_test_failures++;
        if (g_shown++ < 8) {
            fprintf(stderr, "FAIL case %d (%s): text \"%.*s\" (%zu bytes)\n", idx, what, (int)(len < 80 ? len : 80),
                    text, len);
            int32_t *w = malloc((wn + 1) * sizeof *w);
            for (size_t i = 0; i < wn; i++) w[i] = cJSON_GetArrayItem(want, (int)i)->valueint;
            print_ids("want", w, wn);
            print_ids("got ", got, n);
            free(w);
        }
    }
    free(got);
}

int main(void) {
    em_tokenizer *tok = NULL;
    CHECK_STATUS(em_tokenizer_create_from_file(em_test_data("tokenizer/bpe_tokenizer.json"), &tok), EM_OK);
    if (!tok) return em_test_finish("test_tok_bpe");
    em_tokenizer_info info;
    CHECK_STATUS(em_tokenizer_get_info(tok, &info), EM_OK);
    CHECK(info.type == EM_TOKENIZER_BPE && info.vocab_size == 504 && info.max_token_bytes > 0);

    size_t gl = 0;
    char *gj = read_all(em_test_data("tokenizer/bpe_goldens.json"), &gl);
    CHECK(gj != NULL);
    cJSON *root = gj ? cJSON_ParseWithLength(gj, gl) : NULL;
    CHECK(root != NULL);
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(root, "cases");
    int n_cases = cJSON_GetArraySize(cases);
    CHECK_MSG(n_cases >= 200, "%d cases", n_cases);
    CHECK((int)info.vocab_size == cJSON_GetObjectItemCaseSensitive(root, "vocab_size")->valueint);
    char *text = malloc(1 << 16), *want_dec = malloc(1 << 16), *dec = malloc(1 << 16);
    int idx = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        size_t len = unhex(cJSON_GetObjectItemCaseSensitive(c, "text_hex")->valuestring, text);
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(c, "ids");
        check_ids(tok, text, len, EM_TOKENIZE_PARSE_SPECIAL, ids, idx, "special tokens parsed");
        check_ids(tok, text, len, 0, cJSON_GetObjectItemCaseSensitive(c, "ids_no_special"), idx,
                  "special tokens as text");
        /* decode: HF's bytes, and the output is always valid UTF-8 */
        size_t wdl = unhex(cJSON_GetObjectItemCaseSensitive(c, "decoded_hex")->valuestring, want_dec);
        size_t n = (size_t)cJSON_GetArraySize(ids), dl = 0;
        int32_t *v = malloc((n + 1) * sizeof *v);
        for (size_t i = 0; i < n; i++) v[i] = cJSON_GetArrayItem(ids, (int)i)->valueint;
        CHECK_STATUS(em_tokenizer_decode(tok, v, n, 0, dec, 1 << 16, &dl), EM_OK);
        CHECK_MSG(dl == wdl && !memcmp(dec, want_dec, dl), "case %d: decode differs (%zu vs %zu bytes)", idx, dl, wdl);
        CHECK(dec[dl] == 0);
        free(v);
        idx++;
    }
    printf("test_tok_bpe: %d golden cases compared (ids with and without special tokens, decode)\n", idx);

    /* size query and a buffer too small */
    const char *hello = "Hello world, 你好 😀";
    size_t n = 0, m = 0;
    CHECK_STATUS(em_tokenizer_encode(tok, hello, strlen(hello), 0, NULL, 0, &n), EM_OK);
    CHECK(n > 2);
    int32_t small[2] = { -7, -7 };
    CHECK_STATUS(em_tokenizer_encode(tok, hello, strlen(hello), 0, small, 2, &m), EM_ERR_BUFFER_TOO_SMALL);
    CHECK(m == n && small[0] == -7 && small[1] == -7);
    int32_t ids[64];
    CHECK_STATUS(em_tokenizer_encode(tok, hello, strlen(hello), 0, ids, 64, &n), EM_OK);
    size_t dl = 0;
    CHECK_STATUS(em_tokenizer_decode(tok, ids, n, 0, NULL, 0, &dl), EM_OK);
    CHECK(dl == strlen(hello));
    char tiny[4];
    CHECK_STATUS(em_tokenizer_decode(tok, ids, n, 0, tiny, sizeof tiny, &dl), EM_ERR_BUFFER_TOO_SMALL);
    CHECK_STATUS(em_tokenizer_decode(tok, ids, n, 0, dec, dl, &dl), EM_ERR_BUFFER_TOO_SMALL); /* no room for the NUL */
    CHECK_STATUS(em_tokenizer_decode(tok, ids, n, 0, dec, dl + 1, &dl), EM_OK);
    CHECK(!strcmp(dec, hello));
    int32_t bad = 504;
    CHECK_STATUS(em_tokenizer_decode(tok, &bad, 1, 0, dec, 100, &dl), EM_ERR_TOKEN_RANGE);
    CHECK_STATUS(em_tokenizer_encode(tok, NULL, 3, 0, ids, 64, &n), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_tokenizer_encode(tok, NULL, 0, 0, ids, 64, &n), EM_OK);
    CHECK(n == 0);
    CHECK_STATUS(em_tokenizer_encode(tok, "x", 1, 0x80, ids, 64, &n), EM_ERR_INVALID_ARG);

    /* special tokens: skipped on request, found by content, print nothing when streamed */
    int32_t eot = -1, im_end = -1, sp4 = -1, none = -1;
    CHECK_STATUS(em_tokenizer_find(tok, "<|endoftext|>", &eot), EM_OK);
    CHECK_STATUS(em_tokenizer_find(tok, "<|im_end|>", &im_end), EM_OK);
    CHECK_STATUS(em_tokenizer_find(tok, "    ", &sp4), EM_OK);
    CHECK_STATUS(em_tokenizer_find(tok, "no such token text", &none), EM_ERR_NOT_FOUND);
    CHECK(eot == 0 && im_end == 501 && sp4 == 503);
    int32_t seq[3] = { ids[0], eot, ids[1] };
    CHECK_STATUS(em_tokenizer_decode(tok, seq, 3, EM_DETOKENIZE_SKIP_SPECIAL, dec, 1 << 16, &dl), EM_OK);
    CHECK(!strstr(dec, "<|endoftext|>"));
    CHECK_STATUS(em_tokenizer_decode(tok, seq, 3, 0, dec, 1 << 16, &dl), EM_OK);
    CHECK(strstr(dec, "<|endoftext|>") != NULL);
    const char *tb;
    size_t tl;
    CHECK_STATUS(em_tokenizer_token_bytes(tok, im_end, &tb, &tl), EM_OK);
    CHECK(tl == 0);
    CHECK_STATUS(em_tokenizer_token_bytes(tok, sp4, &tb, &tl), EM_OK);
    CHECK(tl == 4 && !memcmp(tb, "    ", 4));
    CHECK_STATUS(em_tokenizer_token_bytes(tok, 504, &tb, &tl), EM_ERR_TOKEN_RANGE);
    em_tokenizer_free(tok);

    /* a long input of one repeated byte (one 20000-byte word: the heap keeps BPE at O(n log n)) */
    CHECK_STATUS(em_tokenizer_create_from_file(em_test_data("tokenizer/bpe_tokenizer.json"), &tok), EM_OK);
    char *longs = malloc(20001);
    memset(longs, ' ', 20000);
    CHECK_STATUS(em_tokenizer_encode(tok, longs, 20000, 0, NULL, 0, &n), EM_OK);
    CHECK(n > 0 && n < 20000);
    free(longs);
    em_tokenizer_free(tok);

    /* refused variants: a clear EM_ERR_TOKENIZER, never a crash */
    static const char *bad_json[] = {
        "{",                                                                        /* not JSON */
        "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}",                      /* not BPE */
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",  /* no ByteLevel */
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, "
        "\"merges\": [\"a b\"]}}",                                                  /* merge of unknown tokens */
        "{\"pre_tokenizer\": {\"type\": \"Metaspace\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}",
        "{\"normalizer\": {\"type\": \"Lowercase\"}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": "
        "{\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
        "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}, "
        "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}",   /* a regex that does not compile */
        "{\"pre_tokenizer\": {\"type\": \"ByteLevel\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -3}, "
        "\"merges\": []}}",                                                         /* a negative id */
    };
    char path[256];
    snprintf(path, sizeof path, "/tmp/em_test_tok_bad_%d.json", (int)getpid());
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
        FILE *f = fopen(path, "wb");
        fputs(bad_json[i], f);
        fclose(f);
        em_tokenizer *t = (em_tokenizer *)&n;
        CHECK_STATUS(em_tokenizer_create_from_file(path, &t), EM_ERR_TOKENIZER);
        CHECK(t == NULL);
        CHECK(strlen(em_last_error()) > 0);
    }
    remove(path);
    CHECK_STATUS(em_tokenizer_create_from_file("/nonexistent/tokenizer.json", &tok), EM_ERR_NOT_FOUND);

    free(text);
    free(want_dec);
    free(dec);
    cJSON_Delete(root);
    free(gj);
    return em_test_finish("test_tok_bpe");
}
