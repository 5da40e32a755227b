/*
 * dev_plan.h — the CUDA backend's session layout (one device block: states, KV cache, workspaces; the picture is
 * at the top of runtime/cuda_exec.c) as arithmetic on the model's config, compiled in every build. The executor
 * allocates by it (em_cuda_plan, em_cuda_session_create); em-plan projects a device's memory by it on a host
 * without one. Internal: not installed.
 */
#ifndef EM_DEV_PLAN_H
#define EM_DEV_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define EM_DEV_ALIGN 256u /* every region of the block starts 256-aligned */

/* Prefill chunks of more than EM_GEMM_MIN_TOK tokens run in_proj / out_proj as cuBLASLt GEMMs (the GEMV re-reads
 * the weights every 8 tokens), chunks of at least EM_SSD_MIN_TOK the chunked SSD scan (the sequential scan costs
 * ~0.7 us a token on the 8B shape; the SSD scan's five launches a fixed few us). docs/prefill.md. */
#define EM_GEMM_MIN_TOK 8u
#define EM_SSD_MIN_TOK 32u

/* Byte offsets of the regions in the block and their sizes (0 / absent: not planned). */
typedef struct em_dev_layout {
    size_t conv, ssm, x, xn, proj, xbc, y, delta, sumsq, logits, tok, next, total, state_bytes;
    size_t gemm_ws, gemm_ws_bytes, ssd_ws, ssd_ws_bytes;
    size_t pos, kv, kv_bytes, qkv, att, ff, attn_ws, attn_ws_bytes;
    int gemm_i8; /* the GEMM workspace holds the INT8 slab (INT8 weights, unless EM_I8_PREFILL=gemv) */
} em_dev_layout;

/** The layout of a session with prefill chunk T and max_ctx tokens of KV (hybrids) on the CUDA backend; reads
 *  EM_I8_PREFILL (see i8_prefill_gemm in dev_plan.c: INT8 weights take the GEMM by default, =gemv the GEMV). Pure
 *  arithmetic: no device is touched. */
void em_dev_layout_compute(const em_model *m, uint32_t T, uint32_t max_ctx, em_dev_layout *l);

/** The largest context in [1, cap] whose need(user, context) <= budget, by binary search (need grows with the
 *  context); 0 when not even 1 fits. Serves em_plan_report.max_context_fit and em-plan's max context column. */
typedef double (*em_context_need_fn)(const void *user, uint32_t context);
uint32_t em_context_fit(em_context_need_fn need, const void *user, uint32_t cap, double budget);

#endif /* EM_DEV_PLAN_H */
