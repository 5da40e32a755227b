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
    memset(&pr, 0, sizeof pr);
    memset(&info, 0, sizeof info);
    int ok = strcmp(em_version(), "") != 0 && em_version_number() == EM_VERSION_NUMBER && mo.backend == EM_BACKEND_AUTO &&
             so.max_batch == 1 && lm == EM_LOGITS_LAST && dt == EM_DTYPE_BF16 && arch == EM_ARCH_HYBRID && lv == EM_LOG_WARN;
    printf("test_header_c: %s\n", ok ? "1 passed, 0 failed" : "0 passed, 1 failed");
    return ok ? 0 : 1;
}
