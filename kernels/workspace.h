/*
 * workspace.h — the workspace sizes of the CUDA launchers (kernels/gemm.cu, ssd.cu, attention.cu) as pure
 * arithmetic on shapes, and the constants they follow from. Compiled in every build (kernels/workspace.c), with
 * or without CUDA, so that a planner without a device — em-plan on a development host, runtime/dev_plan.c —
 * gets the same numbers as the executor that allocates them. The kernels include this header for the constants
 * (one definition: a size and the launcher that carves it cannot disagree). kernels/cuda_ops.h includes this
 * header; its launchers' comments say what each size holds.
 */
#ifndef EM_KERNELS_WORKSPACE_H
#define EM_KERNELS_WORKSPACE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EM_GEMM_LT_WS ((size_t)32 << 20)   /* cuBLASLt's workspace: NVIDIA's recommendation for Hopper */
#define EM_GEMM_I8_SLAB ((size_t)32 << 20) /* INT8 weights: the bf16 slab of dequantized rows */
#define EM_GEMM_I8_ROWS 64u                /* slabs are a multiple of this many rows (but the last) */
#define EM_SSD_TILE 64u                    /* the chunked SSD kernels' block tile: a chunk is a multiple of it */
#define EM_ATTN_UNIT 64u                   /* attention decode: rows per split are a multiple of this */
#define EM_ATTN_MAX_SPLITS 256u            /* attention decode: the workspace is sized for this many splits */

/* Attention decode's most splits for a context of ctx rows: one per EM_ATTN_UNIT rows, 1..EM_ATTN_MAX_SPLITS. */
static inline uint32_t em_attn_splits_max(uint32_t ctx) {
    const uint32_t units = (uint32_t)(((uint64_t)ctx + EM_ATTN_UNIT - 1) / EM_ATTN_UNIT);
    return units < 1 ? 1 : units > EM_ATTN_MAX_SPLITS ? EM_ATTN_MAX_SPLITS : units;
}

/* b rounded up to 256 bytes (every workspace region starts 256-aligned) */
static inline size_t em_ws_align(size_t b) { return (b + 255) & ~(size_t)255; }

/* The sizes; each launcher's contract (kernels/cuda_ops.h) says what it carves from them. */
size_t em_cuda_gemm_workspace_bytes(uint32_t max_tok, uint32_t max_n_in);
size_t em_cuda_gemm_i8_workspace_bytes(uint32_t max_tok, uint32_t max_n_in);
size_t em_cuda_ssd_workspace_bytes(uint32_t max_tok, uint32_t H, uint32_t P, uint32_t N, uint32_t G, uint32_t chunk);
size_t em_cuda_attention_workspace_bytes(uint32_t max_ctx, uint32_t n_head, uint32_t head_dim);

#ifdef __cplusplus
}
#endif

#endif /* EM_KERNELS_WORKSPACE_H */
