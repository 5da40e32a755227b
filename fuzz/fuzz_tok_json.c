/*
 * fuzz_tok_json.c — the tokenizer.json loader (runtime/tokenizer_bpe.c through em_tokenizer_create_memory):
 * the bytes a blob's tokenizer section holds, arbitrary. Proves: no input crashes, over-reads, leaks or hangs
 * the loader; a refusal is a named status with a message; a tokenizer it accepts encodes and decodes a fixed
 * text with every id in range. Seeds: fuzz/corpus/tok_json/ (the test tokenizer.json and variants).
 */
#include "tok_fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    em_tokenizer *t = NULL;
    em_status s = em_tokenizer_create_memory(EM_TOKENIZER_BPE, size ? data : (const uint8_t *)"", size, &t);
    if (s != EM_OK) {
        fuzz_check_failure(s);
        FUZZ_CHECK(t == NULL);
        return 0;
    }
    static const uint8_t probe[] = "\x01Hello, world! <|endoftext|> caf\xc3\xa9 \xff 123\n";
    tok_fuzz_one(t, probe, sizeof probe - 1);
    em_tokenizer_info info;
    FUZZ_CHECK(em_tokenizer_get_info(t, &info) == EM_OK);
    int32_t ids[3] = { 0, (int32_t)(info.vocab_size / 2), (int32_t)info.vocab_size - 1 };
    size_t len = 0;
    char *text = tok_fuzz_decode(t, ids, 3, 0, &len);
    FUZZ_CHECK(text);
    free(text);
    em_tokenizer_free(t);
    return 0;
}
