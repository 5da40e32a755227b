/*
 * dev_plan.c — see dev_plan.h. Moved out of cuda_exec.c so that it builds without CUDA: the sizes come from
 * kernels/workspace.c, the same functions the launchers check their workspaces against.
 */
#include "dev_plan.h"

#include <stdlib.h>
#include <string.h>

#include "workspace.h"

/* INT8 weights in prompt chunks: by default (EM_I8_PREFILL unset, empty or "gemm") W is dequantized a 32 MiB slab
 * at a time into bf16 for the cuBLASLt GEMM (kernels/gemm.cu; W read once a chunk: 15555 tok/s at pp512 on the
 * Mamba-2 8B shape, H100, fourth session); EM_I8_PREFILL=gemv, or any other value, keeps the INT8 GEMV over groups
 * of 8 tokens (W read every 8 tokens: 938 tok/s) and plans no slab (32 MiB less device memory). docs/int8.md.
 * Read when a session is planned; the slab is planned only when the model has INT8 weights. */
static int i8_prefill_gemm(const em_model *m) {
    const char *e = getenv("EM_I8_PREFILL");
    if (e && e[0] && strcmp(e, "gemm") != 0) return 0;
    for (uint32_t i = 0; i < m->blob.n_tensors; i++)
        if (m->blob.tensors[i].dtype == EM_DTYPE_I8) return 1;
    return 0;
}

static size_t dtake(size_t *c, size_t bytes) {
    size_t at = (*c + EM_DEV_ALIGN - 1) & ~(size_t)(EM_DEV_ALIGN - 1);
    *c = at + bytes;
    return at;
}

void em_dev_layout_compute(const em_model *m, uint32_t T, uint32_t max_ctx, em_dev_layout *l) {
    em_dims d = em_model_dims(m);
    const em_blob_config *cf = &m->cfg;
    size_t f = sizeof(float), c = 0;
    const size_t dq = (size_t)cf->attn_n_head * cf->attn_head_dim, dkv = (size_t)cf->attn_n_kv_head * cf->attn_head_dim;
    l->conv = dtake(&c, f * m->n_mamba2 * d.conv_dim * (d.K - 1));
    l->ssm = dtake(&c, f * m->n_mamba2 * d.H * d.P * d.N);
    l->pos = dtake(&c, sizeof(uint32_t));
    l->state_bytes = c; /* zeroed by reset: the states and the position */
    l->kv_bytes = m->n_attn ? 2 * sizeof(uint16_t) * m->n_attn * (size_t)max_ctx * dkv : 0;
    l->kv = l->kv_bytes ? dtake(&c, l->kv_bytes) : 0;
    l->x = dtake(&c, f * T * d.d);
    l->xn = dtake(&c, f * T * d.d);
    l->proj = dtake(&c, f * T * d.d_in_proj);
    l->xbc = dtake(&c, f * T * d.conv_dim);
    l->y = dtake(&c, f * T * d.d_inner);
    l->delta = dtake(&c, f * T * d.d);
    l->sumsq = dtake(&c, f * d.H);
    l->logits = dtake(&c, f * d.vocab);
    l->tok = dtake(&c, sizeof(int32_t) * T);
    l->next = dtake(&c, sizeof(int32_t));
    size_t max_in = d.d > d.d_inner ? d.d : d.d_inner; /* the widest GEMM input: d, d_inner, d_ff, Hq hd */
    if (m->n_mlp && cf->d_ff > max_in) max_in = cf->d_ff;
    if (m->n_attn && dq > max_in) max_in = dq;
    l->gemm_i8 = i8_prefill_gemm(m);
    l->gemm_ws_bytes = T <= EM_GEMM_MIN_TOK ? 0
                       : l->gemm_i8        ? em_cuda_gemm_i8_workspace_bytes(T, (uint32_t)max_in)
                                           : em_cuda_gemm_workspace_bytes(T, (uint32_t)max_in);
    l->gemm_ws = l->gemm_ws_bytes ? dtake(&c, l->gemm_ws_bytes) : 0;
    l->ssd_ws_bytes = T >= EM_SSD_MIN_TOK ? em_cuda_ssd_workspace_bytes(T, d.H, d.P, d.N, d.G, 0) : 0;
    l->ssd_ws = l->ssd_ws_bytes ? dtake(&c, l->ssd_ws_bytes) : 0;
    l->qkv = m->n_attn ? dtake(&c, f * T * (dq + 2 * dkv)) : 0;
    l->att = m->n_attn ? dtake(&c, f * T * dq) : 0;
    l->ff = m->n_mlp ? dtake(&c, f * T * cf->d_ff) : 0;
    l->attn_ws_bytes = m->n_attn ? em_cuda_attention_workspace_bytes(max_ctx, cf->attn_n_head, cf->attn_head_dim) : 0;
    l->attn_ws = l->attn_ws_bytes ? dtake(&c, l->attn_ws_bytes) : 0;
    l->total = (c + EM_DEV_ALIGN - 1) & ~(size_t)(EM_DEV_ALIGN - 1);
}


uint32_t em_context_fit(em_context_need_fn need, const void *user, uint32_t cap, double budget) {
    if (cap < 1 || need(user, 1) > budget) return 0;
    if (need(user, cap) <= budget) return cap;
    uint32_t lo = 1, hi = cap; /* lo fits, hi does not */
    while (hi - lo > 1) {
        const uint32_t mid = lo + (hi - lo) / 2;
        if (need(user, mid) <= budget) lo = mid;
        else hi = mid;
    }
    return lo;
}
