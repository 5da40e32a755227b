/*
 * fuzz_hfconfig.c — em-pack's config.json parser (tools/pack/hfconfig.c: Mamba2ForCausalLM and NemotronH) on
 * arbitrary text.
 *
 * Proves: no input crashes, over-reads (the text is not NUL-terminated), leaks or hangs em_hf_config_parse;
 * a refusal is a named status with a message; an accepted config has a NUL-terminated layer pattern of n_layer
 * characters drawn from "M*-" and non-zero structural dims. Seeds: fuzz/corpus/hfconfig/ (the fixtures'
 * config.json files and variants, make_seeds.sh).
 */
#include <string.h>

#include "fuzz.h"
#include "hfconfig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    em_hf_config h;
    em_status s = em_hf_config_parse((const char *)data, size, "fuzz/config.json", &h);
    if (s != EM_OK) {
        fuzz_check_failure(s);
        return 0;
    }
    size_t plen = strnlen(h.pattern, sizeof h.pattern);
    FUZZ_CHECK(plen < sizeof h.pattern);
    FUZZ_CHECK(plen == h.cfg.n_layer && plen > 0);
    FUZZ_CHECK(strspn(h.pattern, "M*-") == plen);
    FUZZ_CHECK(h.cfg.d_model > 0 && h.cfg.vocab_size > 0);
    FUZZ_CHECK(strnlen(h.name, sizeof h.name) < sizeof h.name);
    em_blob_config c = em_hf_blob_config(&h);
    FUZZ_CHECK(c.layer_pattern.len == h.cfg.n_layer);
    return 0;
}
