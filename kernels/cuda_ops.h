/*
 * cuda_ops.h — the CUDA launchers of the op families (kernels/<op>.cu), one per em_ref_<op> twin in ops.h,
 * taking the same args struct (STYLE.md lesson 6). C-compatible: the stream travels as void * (a
 * cudaStream_t; NULL = the legacy default stream) so that C callers need no CUDA headers.
 *
 * Declared only when EM_HAVE_CUDA (the CPU build has no such symbols; a caller that names one there
 * fails to compile instead of failing at run time). Every launcher only queues work: it returns EM_OK
 * once the kernel is launched, EM_ERR_INVALID_ARG / EM_ERR_UNSUPPORTED for arguments it cannot take,
 * EM_ERR_DEVICE (message in em_last_error()) if the launch fails. Errors raised while the kernel runs
 * surface at the next synchronisation (em_cuda_sync in platform/cuda_rt.h).
 */
#ifndef EM_CUDA_OPS_H
#define EM_CUDA_OPS_H

#include "ops.h"

#include "workspace.h" /* the launchers' workspace sizes: declared in every build */

#ifdef EM_HAVE_CUDA

#ifdef __cplusplus
extern "C" {
#endif

/* ---- linear: y = x W^T (kernels/linear.cu) ---------------------------------------------------------- */
/** @return 1 if em_cuda_linear takes these arguments (w_dtype BF16 or F32, pointers set, strides at least
 *  the row length), else 0. Any n_tok, n_in, n_out and alignment: misaligned or n_in % 8 != 0 bf16
 *  weights take a slower path. The planner calls this at load; the launcher checks it again. */
int em_cuda_linear_supported(const em_linear_args *a);
/** Queues y[n_tok, n_out] = x[n_tok, n_in] W^T on `stream` (device pointers). y is written, never
 *  accumulated; deterministic (no atomics, fixed summation order for a given shape and device). No scratch,
 *  no allocation, no host synchronisation: safe inside a stream capture (its first call on a device makes
 *  host-only attribute queries, as em_cuda_argmax does). flags & EM_LINEAR_W_CONST: launched as a programmatic
 *  dependent of the previous kernel on the stream (sm_90+; W must not be written by that kernel).
 *  n_tok == 0 or n_out == 0 queues nothing. @return as the launchers above. */
em_status em_cuda_linear(const em_linear_args *a, void *stream);

/* ---- linear with INT8 weights per output channel (kernels/linear_i8.cu; issue 10, docs/int8.md) ----------
 * y = (x . q_row) * w_scale[row] for w_dtype EM_DTYPE_I8 with w_scale [n_out] (device pointers), the twin's
 * em_ref_linear I8 path. Same contract as em_cuda_linear: written never accumulated, deterministic, no
 * allocation or sync (capture-safe), EM_LINEAR_W_CONST honoured, n_tok == 0 or n_out == 0 queues nothing.
 * Any shape and alignment; the vector path (16 weights a load) needs W and x 16-byte aligned, n_in % 16 == 0,
 * x_stride % 4 == 0. em_cuda_linear dispatches I8 weights here. */
/** @return 1 if w_dtype is I8, w, w_scale, x, y are set and the strides are at least the row lengths. */
int em_cuda_linear_i8_supported(const em_linear_args *a);
em_status em_cuda_linear_i8(const em_linear_args *a, void *stream);
/* tests/test_linear_i8_cuda.c --sweep: as em_cuda_linear_variant_info / _default_variant / _variant below */
struct em_linear_variant; /* the test hooks' variant description, defined below */
int em_cuda_linear_i8_variant_info(int i, struct em_linear_variant *out);
int em_cuda_linear_i8_default_variant(const em_linear_args *a);
em_status em_cuda_linear_i8_variant(const em_linear_args *a, void *stream, int i);

/* ---- the decode step's fused GEMVs (kernels/linear.cu; ops.h says what they compute) -------------------------
 * One token. norm_linear: RMSNorm prologue (the norm's sum of squares is taken from the x chunks the GEMV reads
 * anyway) and the conv1d epilogue on the xBC rows; gated_linear: the gated group RMSNorm prologue (group scales from
 * the ssm's per-head sums of squares) and the residual add. Both stream W like em_cuda_linear's NT 1 variants and
 * honour EM_LINEAR_W_CONST the same way. Deterministic; no allocation, no sync, safe in a stream capture. */
int em_cuda_norm_linear_supported(const em_norm_linear_args *a);
em_status em_cuda_norm_linear(const em_norm_linear_args *a, void *stream);
int em_cuda_gated_linear_supported(const em_gated_linear_args *a);
em_status em_cuda_gated_linear(const em_gated_linear_args *a, void *stream);
/* The same with INT8 weights (w_dtype EM_DTYPE_I8 + w_scale; kernels/linear_i8.cu, docs/int8.md "The fused step
 * with INT8 weights"): em_cuda_norm_linear / em_cuda_gated_linear (and their _supported) dispatch I8 here. The
 * vector path's rules: w and x (gated: y) 16-byte aligned, n_in % 16 == 0 and <= 2^20; gated: group % 16 == 0. */
int em_cuda_norm_linear_i8_supported(const em_norm_linear_args *a);
em_status em_cuda_norm_linear_i8(const em_norm_linear_args *a, void *stream);
int em_cuda_gated_linear_i8_supported(const em_gated_linear_args *a);
em_status em_cuda_gated_linear_i8(const em_gated_linear_args *a, void *stream);
/* tests/test_fused_cuda.c --sweep: run a fused op with variant i of em_cuda_linear_i8_variant_info (an NT 1 variant;
 * EM_ERR_UNSUPPORTED otherwise), and the variant the launcher picks (gated 0: norm_linear, 1: gated_linear). */
em_status em_cuda_norm_linear_i8_variant(const em_norm_linear_args *a, void *stream, int i);
em_status em_cuda_gated_linear_i8_variant(const em_gated_linear_args *a, void *stream, int i);
int em_cuda_fused_i8_default_variant(int gated, uint32_t n_out, uint32_t n_in);
/* 1 when that default is the x-stationary kernel (v3), the form with which the INT8 fused step beats the six-op
 * step; the executor takes the fused step for INT8 layers only then (runtime/cuda_exec.c pick_step_mode). */
int em_cuda_fused_i8_fast(int gated, uint32_t n_out, uint32_t n_in);

/* ---- the Mamba-2 step's small ops ------------------------------------------------------------------------
 * Each takes the twin's args struct with DEVICE pointers (strides in elements, 0 = dense, as ops.h says).
 * em_cuda_<op>_supported is the one statement of what a launcher takes (STYLE.md lesson 10): the planner
 * calls it at load, the launcher again (a false there is EM_ERR_INVALID_ARG; EM_ERR_UNSUPPORTED for an
 * embedding dtype other than F32/BF16/F16). Any size and any alignment
 * is taken; 16-byte aligned pointers with strides % 4 == 0 take the vector paths (docs/gpu.md). None of
 * them allocates, synchronises or reads device memory from the host: all are safe inside stream capture.
 * n_tok == 0 queues nothing. */

/* embedding (kernels/embed.cu): out[t] = f32(table[tok[t]]); tok is read on the device and NOT range
 * checked there (the caller checks, as for the twin). */
int em_cuda_embed_supported(const em_embed_args *a);   /* dtype F32, BF16 or F16; pointers set */
em_status em_cuda_embed(const em_embed_args *a, void *stream);

/* residual add + RMSNorm (kernels/norm.cu): x += delta (if set), y = w * x * rsqrt(mean(x^2) + eps);
 * x, delta, y dense [n_tok, d]; y must not overlap x or delta. One block per token. */
int em_cuda_rmsnorm_supported(const em_rmsnorm_args *a);
em_status em_cuda_rmsnorm(const em_rmsnorm_args *a, void *stream);

/* gated group RMSNorm (kernels/norm.cu): out = w * groupRMSNorm(y * silu(z)); out may alias y (same
 * stride); z must not overlap out. group > 0 and d % group == 0. One block per (token, group). */
int em_cuda_gated_norm_supported(const em_gated_norm_args *a);
em_status em_cuda_gated_norm(const em_gated_norm_args *a, void *stream);

/* causal depthwise conv1d + rolling state (kernels/conv1d.cu): 1 <= K <= 16; thread per channel,
 * sequential over n_tok (decode: n_tok = 1). y must not overlap state, w or b (y may alias x with the
 * same stride: each channel reads its x before writing its y). */
int em_cuda_conv1d_supported(const em_conv1d_args *a);
em_status em_cuda_conv1d(const em_conv1d_args *a, void *stream);

/* Mamba-2 selective state update (kernels/ssm.cu), sequential over n_tok with the state in registers:
 * the state is read once and written once per call whatever n_tok. G > 0, H % G == 0, dt_min <= dt_max,
 * dt_max > 0. y must not overlap the state (y == x with the same stride is fine). Fast path: N in
 * {16, 32, 64, 128, 256}, state/B/C 16-byte aligned, bc_stride % 4 == 0; else a warp-per-row path. */
/* z / sumsq (the fused step's gate and sums of squares) need the vector path and P <= 32 * rows per warp (a head's
 * rows in one block of at most 32 warps); flags & EM_SSM_STATE_OWN: launched as a programmatic dependent (sm_90+). */
int em_cuda_ssm_supported(const em_ssm_args *a);
em_status em_cuda_ssm(const em_ssm_args *a, void *stream);

/* greedy argmax (kernels/argmax.cu): *out_dev = the index of the largest of x[0..n) (device pointers),
 * the lowest index on a tie, NaN never taken, 0 when all are NaN or n == 0: em_ref_argmax exactly. One
 * launch: on sm_90+ one cluster of 8 blocks (distributed shared memory, no global scratch, so concurrent
 * calls on other streams are safe); elsewhere one block. */
em_status em_cuda_argmax(const float *x, uint32_t n, int32_t *out_dev, void *stream);

/* ---- prefill: the SSD chunked scan (kernels/ssd.cu) and cuBLASLt GEMMs (kernels/gemm.cu); issue 8 ----------
 * Both run in the caller's workspace (planned once, at session create, from the sizes below) and never allocate,
 * synchronise or read device memory from the host: safe inside a stream capture. docs/prefill.md. */

/** Workspace em_cuda_ssd needs for prompts of up to max_tok tokens with these dims and chunk (0 = EM_SSD_CHUNK);
 *  0 for a chunk it does not take. Includes 256 bytes of alignment slack (any workspace pointer is fine).
 *  8B shape (H 128, P 64, N 128, G 8), chunk 128: ~19.4 MB at 512 tokens, ~310 MB at 8192 (the chunk states,
 *  n_tok / chunk x 4.2 MB, dominate). */
/*  size_t em_cuda_ssd_workspace_bytes(max_tok, H, P, N, G, chunk): declared in kernels/workspace.h */
/** @return 1 if em_cuda_ssd takes these arguments: pointers set, G > 0, H % G == 0, H <= 65535, chunk 0/64/128/256,
 *  dt_min <= dt_max, dt_max > 0, strides at least the row lengths. Any P, N, n_tok, alignment. */
int em_cuda_ssd_supported(const em_ssd_args *a);
/** Queues the chunked SSD scan (device pointers): y[n_tok, H, P] and the state advanced by n_tok tokens, equal to
 *  em_cuda_ssm / em_ref_ssm on the same tokens within TF32 rounding (~1e-3 relative; tests hold it to 1e-2 against
 *  em_ref_ssd). The state is read at the start and written at the end (in place, [H, P, N] fp32 as decode keeps
 *  it). y must not overlap x, B, C, dt or the state (unlike em_cuda_ssm, y == x is NOT allowed: a token's output
 *  is written while later tokens' blocks still read x). 5 launches. n_tok == 0 queues nothing.
 *  @return EM_OK; EM_ERR_INVALID_ARG (unsupported, or ws_bytes < em_cuda_ssd_workspace_bytes(n_tok, ...));
 *  EM_ERR_DEVICE if a launch fails. */
em_status em_cuda_ssd(const em_ssd_args *a, void *workspace, size_t ws_bytes, void *stream);
/** Tuning hook (test_ssd_cuda --perf): only kernel `phase` of em_cuda_ssd (0 dt/cum, 1 C.B^T, 2 chunk states,
 *  3 state pass, 4 outputs; -1 = all, = em_cuda_ssd). A phase alone reads what the earlier ones left in the
 *  workspace: timing only. */
em_status em_cuda_ssd_phase(const em_ssd_args *a, void *workspace, size_t ws_bytes, void *stream, int phase);

/** A cuBLASLt handle plus a fixed table of per-shape algorithms (host memory, allocated here once).
 *  @return EM_OK, EM_ERR_OUT_OF_MEMORY, EM_ERR_DEVICE. One handle per stream/session (not thread-safe). */
em_status em_cuda_gemm_create(void **h);
void em_cuda_gemm_destroy(void *h); /* NULL is a no-op */
/** Workspace em_cuda_gemm needs for n_tok <= max_tok and n_in <= max_n_in: 32 MiB for cuBLASLt + the bf16 copy of
 *  x (max_tok * max_n_in * 2 bytes) + 256 bytes of alignment slack. */
/*  size_t em_cuda_gemm_workspace_bytes(max_tok, max_n_in): declared in kernels/workspace.h */
/** The same for INT8 weights: + a 32 MiB bf16 slab that W's rows are dequantized into, a slab at a time (at least 64
 *  rows of max_n_in). */
/*  size_t em_cuda_gemm_i8_workspace_bytes(max_tok, max_n_in): declared in kernels/workspace.h */
/** @return 1 if em_cuda_gemm takes these arguments: w_dtype BF16, or I8 with w_scale (else the launcher says
 *  EM_ERR_UNSUPPORTED: use em_cuda_linear), x, y (and W when n_in, n_out > 0) set, strides at least the row lengths.
 *  Any alignment. */
int em_cuda_gemm_supported(const em_linear_args *a);
/** Queues y[n_tok, n_out] = bf16(x)[n_tok, n_in] W^T (fp32 accumulate and output; y written, never accumulated;
 *  flags ignored) on `stream`: a conversion kernel (x -> bf16 in the workspace) and one cublasLtMatmul. The first
 *  call with a shape (n_out, n_tok, n_in, y_stride, pointer alignments) asks cuBLASLt's heuristic (host only) and
 *  remembers the algorithm (64 shapes, then round-robin replacement). x rounded to bf16 is the only difference from
 *  em_ref_linear (~4e-3 relative at most per element; tests hold it to 1e-2). INT8 W (ws_bytes from
 *  em_cuda_gemm_i8_workspace_bytes): per slab of rows, a dequantization kernel (bf16(q * scale)) and one
 *  cublasLtMatmul; the only other difference from the twin is q * scale rounded to bf16. n_tok == 0 or n_out == 0
 *  queues nothing. @return EM_OK; EM_ERR_INVALID_ARG (incl. ws_bytes too small); EM_ERR_UNSUPPORTED (neither BF16
 *  nor I8 with scales, or no cuBLASLt algorithm); EM_ERR_DEVICE. */
em_status em_cuda_gemm(void *h, const em_linear_args *a, void *ws, size_t ws_bytes, void *stream);
/** Runs the heuristic query for a's shape now (e.g. at session create for the planned chunk and the head), so that
 *  em_cuda_gemm with that shape does no host-side search. Queues nothing. @return as em_cuda_gemm. */
em_status em_cuda_gemm_prepare(void *h, const em_linear_args *a, void *ws, size_t ws_bytes);

/* ---- the hybrid's attention and MLP layers (kernels/attention.cu, kernels/mlp.cu; issue 9, docs/hybrid-cuda.md) ----
 * Attention takes em_attn_dev_args (ops.h) with DEVICE pointers: the KV cache in bf16, q/k/v/out f32. Like the launchers
 * above: no allocation, no synchronisation, no device reads from the host (host-only attribute queries on a device's
 * first call): safe inside a stream capture. Deterministic for a given shape and device. */
/** Workspace em_cuda_attention needs for decode (n_tok == 1) with a cache of max_ctx rows: the split-K partials,
 *  min(256, ceil(max_ctx / 64)) x n_head x (head_dim + 2) floats + 256 bytes of alignment slack (hybrid 8B, 32 heads
 *  x 128, any max_ctx >= 16K: 4.3 MB). Prefill needs none. Plan it once; layers share it (stream order). */
/*  size_t em_cuda_attention_workspace_bytes(max_ctx, n_head, head_dim): declared in kernels/workspace.h */
/** @return 1 if em_cuda_attention takes these arguments: pointers set, head_dim 64 or 128, n_head % n_kv_head == 0,
 *  pos + n_tok <= max_ctx (n_tok <= max_ctx with pos_dev), rope_dims even and <= head_dim (rope_base > 0 when on), finite scale, strides 0 or at least
 *  the row lengths, k_cache and v_cache 16-byte aligned. q, k, v, out: any alignment. */
int em_cuda_attention_supported(const em_attn_dev_args *a);
/** Queues the attention of n_tok new tokens at positions [pos, pos + n_tok) (em_ref_attention_bf16's result within
 *  fp32 rounding): RoPE on q (in place) and k, k and v rounded to bf16 into cache rows [pos, pos + n_tok), then
 *  n_tok == 1: split-K decode (2 or 3 kernels; needs ws, ws_bytes >= em_cuda_attention_workspace_bytes(max_ctx,
 *  n_head, head_dim)); n_tok > 1: causal flash-attention prefill over rows [0, pos + t] (2 kernels; ws unused, may be
 *  NULL; on sm_80+ on the tensor cores, q * scale and P rounded to bf16: ~3e-3 relative to the twin). out must not
 *  overlap q, k, v or the cache; k/v may share rows with q (a fused qkv row). n_tok == 0 queues
 *  nothing. @return EM_OK; EM_ERR_INVALID_ARG (unsupported, or workspace missing/too small); EM_ERR_DEVICE. */
em_status em_cuda_attention(const em_attn_dev_args *a, void *ws, size_t ws_bytes, void *stream);
/** For a captured decode step (a->pos_dev set): queues *pos_dev += n (one thread), so the graph advances its own
 *  position. Decode launches with pos_dev take the split count of max_ctx (empty splits past the context cost a
 *  block's start each), so the launch does not depend on the position. @return EM_OK, EM_ERR_INVALID_ARG, EM_ERR_DEVICE. */
em_status em_cuda_attention_pos_add(uint32_t *pos_dev, uint32_t n, void *stream);
/** MLP y = down(act(up(x))) (em_ref_mlp's result): em_cuda_linear up (x -> h), the activation in place on h,
 *  em_cuda_linear down (h -> y, launched with EM_LINEAR_W_CONST behind the activation). Weights BF16, F32 or I8 (with
 *  up_scale / down_scale), device pointers; h is the [n_tok, d_ff] workspace. Any n_tok (the GEMV takes up to 8 tokens
 *  a weight pass: for prompt chunks use em_cuda_mlp_gemm). @return as em_cuda_linear; EM_ERR_INVALID_ARG for an act
 *  other than EM_ACT_GELU / RELU2 / SILU or missing pointers. */
int em_cuda_mlp_supported(const em_mlp_args *a);
em_status em_cuda_mlp(const em_mlp_args *a, void *stream);
/** h[i] = act(h[i]) for i < n in place (em_ref_mlp's activations: exact-erf GELU, relu^2, SiLU). */
em_status em_cuda_mlp_act(float *h, size_t n, uint32_t act, void *stream);
/** The prompt form: em_cuda_gemm up, em_cuda_mlp_act, em_cuda_gemm down, with the cuBLASLt handle and workspace of
 *  em_cuda_gemm (ws_bytes >= em_cuda_gemm_workspace_bytes(n_tok, max(d, d_ff)), or the _i8_ form for INT8 weights).
 *  BF16 weights, or I8 with up_scale / down_scale (x and h rounded to bf16 on the way in, as em_cuda_gemm does:
 *  ~1e-3 relative). @return as em_cuda_gemm. */
em_status em_cuda_mlp_gemm(void *gemm, const em_mlp_args *a, void *ws, size_t ws_bytes, void *stream);
/** Test hooks: em_cuda_attention on a chosen path (0 = by n_tok, 1 = split-K decode (n_tok must be 1), 2 = the fp32
 *  SIMT prefill kernel for any n_tok (ws unused), 3 = the tensor-core prefill kernel (what 0 takes for n_tok > 1 on
 *  sm_80+), 4 = the same with plain shared loads for ldmatrix; 3 and 4: EM_ERR_INVALID_ARG below sm_80), and the
 *  number of splits decode takes for these arguments. */
em_status em_cuda_attention_path(const em_attn_dev_args *a, void *ws, size_t ws_bytes, void *stream, int path);
int em_cuda_attention_splits(const em_attn_dev_args *a);

/* ---- test and tuning hooks (tests/test_*_cuda.c --perf): not for the executor ---------------------------- */
/** em_cuda_ssm on a chosen path: 0 = what em_cuda_ssm picks, -1 = the warp-per-row path, 1/2/4 = the
 *  vector path with that many state rows per lane (EM_ERR_UNSUPPORTED where the vector path cannot run). */
em_status em_cuda_ssm_path(const em_ssm_args *a, void *stream, int path);
/** em_cuda_argmax with `blocks` = 1 (the one-block path) or 8 (the cluster: EM_ERR_UNSUPPORTED before
 *  sm_90); 0 = what em_cuda_argmax picks. */
em_status em_cuda_argmax_path(const float *x, uint32_t n, int32_t *out_dev, void *stream, int blocks);

/** The BF16 vector path's variants (kernels/linear.cu: the defaults, plus alternatives in -DEM_LIN_SWEEP
 *  builds), for tests/test_linear_cuda.c --sweep. */
typedef struct em_linear_variant {
    int nt;            /* tokens per launch it takes (exactly) */
    int rows_per_warp, loads_per_row, k_split, warps;
    int regs, local_bytes, blocks_per_sm; /* registers and local memory (runtime), resident blocks per SM */
    const char *name;
} em_linear_variant;
/** @return the number of variants; fills *out for 0 <= i < that number (host queries only). */
int em_cuda_linear_variant_info(int i, em_linear_variant *out);
/** @return the variant em_cuda_linear takes for these arguments' first token group, -1 for the fallback. */
int em_cuda_linear_default_variant(const em_linear_args *a);
/** em_cuda_linear on variant i; EM_ERR_UNSUPPORTED unless its nt == n_tok and the vector path applies. */
em_status em_cuda_linear_variant(const em_linear_args *a, void *stream, int i);

/* ---- the roofline reference (kernels/bandwidth.cu) ------------------------------------------------------ */
/** Queues one read-only pass over `bytes` (16-byte aligned buffer) with 8 blocks per SM.
 *  @return the launch's cudaError_t (0 = ok). */
int em_cuda_read_pass(const void *buf, size_t bytes, unsigned *sink, int sm_count, void *stream);
/** Measures the device's read bandwidth (GB/s, median of reps passes over a fresh `bytes` buffer, which it
 *  allocates and frees: a benchmark tool's call, never on a decode path). @return EM_OK or EM_ERR_DEVICE. */
em_status em_cuda_read_bandwidth(size_t bytes, int reps, double *gbps);

#ifdef __cplusplus
}
#endif

#endif /* EM_HAVE_CUDA */

#endif /* EM_CUDA_OPS_H */
