/*
 * fuzz_tok_spm.c — the SentencePiece tokenizer through the C++ shim (runtime/spm_shim.cc, runtime/tokenizer.c):
 * arbitrary bytes to encode, arbitrary ids to decode, arbitrary pieces to find, on the bundled model's
 * tokenizer (models/tokenizer.model, 4096 pieces with byte fallback). The checks are tok_fuzz.h's.
 * Seeds: fuzz/corpus/tok_spm/ (make_seeds.sh).
 */
#include "tok_fuzz.h"

static em_tokenizer *g_tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    g_tok = tok_fuzz_load("models/tokenizer.model");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_tok) LLVMFuzzerInitialize(NULL, NULL);
    tok_fuzz_one(g_tok, data, size);
    return 0;
}
