/*
 * workspace.c — the CUDA launchers' workspace sizes (declared in kernels/cuda_ops.h; why here: workspace.h).
 * Compiled in every build: these functions touch no device.
 */
#include "workspace.h"

#include "ops.h" /* EM_SSD_CHUNK, EM_SSD_MAX_CHUNK */

size_t em_cuda_gemm_workspace_bytes(uint32_t max_tok, uint32_t max_n_in) {
    return 256 /* alignment slack */ + EM_GEMM_LT_WS + em_ws_align((size_t)max_tok * max_n_in * 2);
}

/* The slab for rows of n_in: EM_GEMM_I8_SLAB, or EM_GEMM_I8_ROWS rows if those are more (n_in > 256K). */
size_t em_cuda_gemm_i8_workspace_bytes(uint32_t max_tok, uint32_t max_n_in) {
    const size_t min_rows = (size_t)EM_GEMM_I8_ROWS * max_n_in * 2;
    return em_cuda_gemm_workspace_bytes(max_tok, max_n_in) + (min_rows > EM_GEMM_I8_SLAB ? min_rows : EM_GEMM_I8_SLAB);
}

size_t em_cuda_ssd_workspace_bytes(uint32_t max_tok, uint32_t H, uint32_t P, uint32_t N, uint32_t G, uint32_t chunk) {
    const uint32_t Q = chunk ? chunk : EM_SSD_CHUNK;
    if (Q % EM_SSD_TILE != 0 || Q > EM_SSD_MAX_CHUNK) return 0;
    const size_t nc = ((size_t)max_tok + Q - 1) / Q, Lp = nc * Q;
    return 256 /* alignment slack for the caller's pointer */ + 2 * em_ws_align((size_t)H * Lp * 4) +
           em_ws_align(nc * G * Q * Q * 4) + em_ws_align(nc * H * P * (size_t)N * 4);
}

size_t em_cuda_attention_workspace_bytes(uint32_t max_ctx, uint32_t n_head, uint32_t head_dim) {
    return (size_t)em_attn_splits_max(max_ctx) * n_head * ((size_t)head_dim + 2) * sizeof(float) + 256;
}
