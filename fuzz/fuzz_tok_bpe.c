/*
 * fuzz_tok_bpe.c — the byte-level BPE tokenizer (runtime/tokenizer_bpe.c) on the test tokenizer.json
 * (tests/data/tokenizer/bpe_tokenizer.json: NFC normalizer, ByteLevel pre-tokenizer with the GPT-2 regex,
 * added tokens). tok_fuzz.h's checks, plus one the byte-level scheme allows: with special-token parsing off,
 * decoding the ids of any text gives back that text after the front's lossy UTF-8 repair and NFC.
 * Seeds: fuzz/corpus/tok_bpe/ (make_seeds.sh).
 */
#include <utf8proc.h>

#include "tok_fuzz.h"

static em_tokenizer *g_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    g_tok = tok_fuzz_load("tests/data/tokenizer/bpe_tokenizer.json");
    return 0;
}

/* decode(encode(text)) == NFC(sanitize(text)) for plain text (no special-token parsing, no BOS). */
static void round_trip(const uint8_t *text, size_t len) {
    size_t clean_n = 0;
    char *clean = em_utf8_sanitize((const char *)text, len, &clean_n);
    FUZZ_CHECK(clean);
    if (memchr(clean, 0, clean_n)) { free(clean); return; } /* utf8proc_NFC reads a C string */
    char *nfc = (char *)utf8proc_NFC((const utf8proc_uint8_t *)clean);
    free(clean);
    if (!nfc) return;
    int32_t *ids = NULL;
    size_t n = 0, out_n = 0;
    if (em_tokenizer_encode_alloc(g_tok, (const char *)text, len, 0, &ids, &n) == EM_OK) {
        char *back = tok_fuzz_decode(g_tok, ids, n, 0, &out_n);
        FUZZ_CHECK(back);
        if (out_n != strlen(nfc) || memcmp(back, nfc, out_n)) {
            fprintf(stderr, "round trip: %zu bytes in (NFC), %zu bytes back\n", strlen(nfc), out_n);
            FUZZ_CHECK(!"BPE decode(encode(text)) != NFC(text)");
        }
        free(back);
    }
    free(ids);
    free(nfc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_tok) LLVMFuzzerInitialize(NULL, NULL);
    tok_fuzz_one(g_tok, data, size);
    if (size && (data[0] & 3) == 1) round_trip(data + 1, size - 1);
    return 0;
}
