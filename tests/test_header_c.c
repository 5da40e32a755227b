/*
 * test_header_c.c — proves that the public header is plain C99: it is compiled with -std=c99 -pedantic
 * -Werror (tests/api.cmake) and uses every type it declares, so a C++-ism or a C11-only construct in
 * edgemamba.h breaks the build. Links against the shared library as an application would.
 */
#include "edgemamba.h"

#include <stdio.h>
#include <string.h>

int main(void) {
    em_model_options mo = em_model_default_options();
    em_session_options so = em_session_default_options();
    em_plan_report pr;
    em_model_info info;
    em_logits_mode lm = EM_LOGITS_LAST;
    em_dtype dt = EM_DTYPE_BF16;
    em_arch arch = EM_ARCH_HYBRID;
    em_log_level lv = EM_LOG_WARN;
    /* text section: tokenizers, sampler, generation, snapshots */
    em_tokenizer_info ti;
    em_tokenizer_type tt = EM_TOKENIZER_BPE;
    em_sampler_options sp = em_sampler_default_options();
    em_generate_options go = em_generate_default_options();
    em_generate_stats gs;
    em_token_event ev;
    em_stop_reason why = EM_STOP_STRING;
    em_token_callback cb = NULL;
    em_tokenizer *tok = NULL;
    memset(&pr, 0, sizeof pr);
    memset(&info, 0, sizeof info);
    memset(&ti, 0, sizeof ti);
    memset(&gs, 0, sizeof gs);
    memset(&ev, 0, sizeof ev);
    int ok = strcmp(em_version(), "") != 0 && em_version_number() == EM_VERSION_NUMBER && mo.backend == EM_BACKEND_AUTO &&
             so.max_batch == 1 && lm == EM_LOGITS_LAST && dt == EM_DTYPE_BF16 && arch == EM_ARCH_HYBRID && lv == EM_LOG_WARN;
    ok = ok && tt == EM_TOKENIZER_BPE && sp.temperature == 0.0f && sp.top_p == 1.0f && go.max_tokens > 0 &&
         go.flags == EM_TOKENIZE_PARSE_SPECIAL && why == EM_STOP_STRING && cb == NULL && ti.vocab_size == 0 &&
         EM_SAMPLER_MAX_RECENT > 0 && EM_GENERATE_MAX_STOP > 0 && EM_DETOKENIZE_SKIP_SPECIAL == 0x1u &&
         em_tokenizer_create_from_file("/nonexistent/tokenizer.model", &tok) == EM_ERR_NOT_FOUND && tok == NULL &&
         em_session_snapshot(NULL, NULL, 0, NULL) == EM_ERR_INVALID_ARG;
    printf("test_header_c: %s\n", ok ? "1 passed, 0 failed" : "0 passed, 1 failed");
    return ok ? 0 : 1;
}
