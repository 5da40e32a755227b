/*
 * test_tok_stream.c — proves the UTF-8 rules every text path shares (runtime/tokenizer.c):
 *   - invalid bytes become U+FFFD per maximal invalid subpart, exactly as Python's
 *     bytes.decode("utf-8", "replace") does (the expected outputs below were printed by Python 3.11);
 *   - the streaming decoder, fed any bytes split anywhere, emits only whole valid characters per push
 *     (a character is never split across two callbacks) and, with the final flush, exactly the sanitized
 *     whole (random byte strings biased towards multi-byte sequences, random split points);
 *   - streamed token by token through a real byte-level BPE tokenizer (emoji and CJK are split into byte
 *     tokens there), the text equals the tokenizer's whole-sequence decode.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "tokenizer.h"

static int all_valid(const char *s, size_t n) {
    size_t l;
    for (size_t i = 0; i < n; i += l)
        if (em_utf8_next((const uint8_t *)s + i, n - i, &l) != 1) return 0;
    return 1;
}

int main(void) {
    static const struct { const char *in; size_t n; const char *want; } cases[] = {
        { "\xff", 1, "\xEF\xBF\xBD" },
        { "abc\x80" "def", 7, "abc\xEF\xBF\xBD" "def" },
        { "\xc3", 1, "\xEF\xBF\xBD" },
        { "\xc3(", 2, "\xEF\xBF\xBD(" },
        { "\xe2\x82", 2, "\xEF\xBF\xBD" },                      /* a truncated 3-byte sequence: ONE U+FFFD */
        { "\xe2\x82(", 3, "\xEF\xBF\xBD(" },
        { "\xed\xa0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" }, /* a surrogate: three */
        { "\xc0\x80", 2, "\xEF\xBF\xBD\xEF\xBF\xBD" },         /* overlong */
        { "\xe0\x80\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" },
        { "\xf4\x90\x80\x80", 4, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" }, /* above U+10FFFF */
        { "\xf0\x9f\x98", 3, "\xEF\xBF\xBD" },
        { "\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80" },
        { "\xf5\x80", 2, "\xEF\xBF\xBD\xEF\xBF\xBD" },
        { "\xe0\xa0", 2, "\xEF\xBF\xBD" },
        { "\xf0\x90\x80", 3, "\xEF\xBF\xBD" },
        { "\xef\xbf\xbf", 3, "\xef\xbf\xbf" },
        { "a\xf1\x80\x80\xe1\x80\xc2" "b", 8, "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "b" },
        { "", 0, "" },
        { "a\0b", 3, "a\0b" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = 0;
        char *s = em_utf8_sanitize(cases[i].in, cases[i].n, &n);
        size_t wn = i == sizeof cases / sizeof cases[0] - 1 ? 3 : strlen(cases[i].want);
        CHECK_MSG(s && n == wn && !memcmp(s, cases[i].want, n), "case %zu: %zu bytes, want %zu", i, n, wn);
        /* streamed one byte at a time: the same text */
        em_utf8_stream st = { { 0 }, 0 };
        char out[64];
        size_t o = 0;
        for (size_t k = 0; k < cases[i].n; k++)
            o += em_utf8_stream_push(&st, (const uint8_t *)cases[i].in + k, 1, out + o);
        o += em_utf8_stream_flush(&st, out + o);
        CHECK_MSG(o == wn && !memcmp(out, cases[i].want, o), "case %zu streamed byte by byte", i);
        free(s);
    }

    /* random bytes, random splits */
    em_rng r;
    em_rng_seed(&r, 11);
    static const uint8_t pool[] = {'a',  ' ',  0x80, 0x9f, 0xa0, 0xbf, 0xc2, 0xc3, 0xdf,
                                   0xe0, 0xe2, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff};
    uint8_t buf[300];
    char out[2048];
    for (int trial = 0; trial < 3000; trial++) {
        size_t n = em_rng_u32(&r) % 40;
        for (size_t i = 0; i < n; i++) {
            uint32_t x = em_rng_u32(&r);
            buf[i] = x % 3 == 0 ? (uint8_t)(0x80 | (x >> 8) % 64) : pool[(x >> 8) % sizeof pool];
        }
        size_t want_n = 0;
        char *want = em_utf8_sanitize((const char *)buf, n, &want_n);
        em_utf8_stream st = { { 0 }, 0 };
        size_t o = 0;
        for (size_t at = 0; at < n;) {
            size_t k = 1 + em_rng_u32(&r) % 5;
            if (k > n - at) k = n - at;
            size_t w = em_utf8_stream_push(&st, buf + at, k, out + o);
            CHECK_MSG(w <= EM_UTF8_STREAM_OUT(k), "push of %zu bytes wrote %zu", k, w);
            CHECK_MSG(all_valid(out + o, w), "trial %d: a push emitted an invalid or partial character", trial);
            o += w;
            at += k;
        }
        o += em_utf8_stream_flush(&st, out + o);
        CHECK_MSG(o == want_n && !memcmp(out, want, o), "trial %d: stream != sanitize of the whole", trial);
        free(want);
    }

    /* token by token through byte-level BPE */
    em_tokenizer *tok = NULL;
    CHECK_STATUS(em_tokenizer_create_from_file(em_test_data("tokenizer/bpe_tokenizer.json"), &tok), EM_OK);
    static const char *texts[] = {"😀👍🏽 中文文本 한국어 naïve", "👩\u200d💻 and 🇫🇷", "ｆｕｌｌ∀x∈ℝ: x²≥0",
                                  "plain ascii"};
    for (size_t i = 0; tok && i < sizeof texts / sizeof texts[0]; i++) {
        int32_t ids[256];
        size_t n = 0, dl = 0;
        CHECK_STATUS(em_tokenizer_encode(tok, texts[i], strlen(texts[i]), 0, ids, 256, &n), EM_OK);
        char whole[1024];
        CHECK_STATUS(em_tokenizer_decode(tok, ids, n, 0, whole, sizeof whole, &dl), EM_OK);
        em_utf8_stream st = { { 0 }, 0 };
        size_t o = 0, split_tokens = 0;
        for (size_t k = 0; k < n; k++) {
            const char *b;
            size_t bl;
            CHECK_STATUS(em_tokenizer_token_bytes(tok, ids[k], &b, &bl), EM_OK);
            if (!all_valid(b, bl)) split_tokens++;
            size_t w = em_utf8_stream_push(&st, (const uint8_t *)b, bl, out + o);
            CHECK(all_valid(out + o, w));
            o += w;
        }
        CHECK(st.n_pend == 0);
        CHECK_MSG(o == dl && !memcmp(out, whole, o), "text %zu: streamed != decoded", i);
        if (i == 0) CHECK_MSG(split_tokens > 0, "the test text should split characters across tokens");
    }
    em_tokenizer_free(tok);
    return em_test_finish("test_tok_stream");
}
