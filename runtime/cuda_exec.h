/*
 * cuda_exec.h — the CUDA backend of the executor: weights copied to the device once at open, each session's
 * state and workspace in one device allocation made at create, the decode step captured as a CUDA graph at
 * create and replayed per token. The session API (session.c) dispatches here when the model's backend is
 * CUDA. Internal.
 *
 * Without EM_HAVE_CUDA the functions exist and em_cuda_model_load returns EM_ERR_NO_DEVICE, so no other
 * function is ever reached.
 */
#ifndef EM_CUDA_EXEC_H
#define EM_CUDA_EXEC_H

#include "edgemamba.h"
#include "model.h"

struct em_session;

/** 1 if the CUDA executor runs this model's layer kinds (pure Mamba-2 today), else 0. */
int em_cuda_model_supported(const em_model *m);
/** Copies the blob's data section to device `device` in one copy and binds device pointers. */
em_status em_cuda_model_load(em_model *m, const char *path, int device);
void em_cuda_model_free(em_model *m);
/** Fills the device side of a plan: state, workspace, library bytes, available = device free memory. */
em_status em_cuda_plan(const em_model *m, uint32_t T, uint32_t max_context, em_plan_report *r);
/** Allocates the session's device block, creates its stream and captures the decode graph. */
em_status em_cuda_session_create(struct em_session *s);
void em_cuda_session_free(struct em_session *s);
em_status em_cuda_session_reset(struct em_session *s);
em_status em_cuda_session_prefill(struct em_session *s, const int32_t *tok, size_t n, em_logits_mode mode, float *logits);
em_status em_cuda_session_decode(struct em_session *s, int32_t tok, float *logits);
/* Op classes of the decode step, for the per-kernel time breakdown. */
typedef enum em_cuda_op {
    EM_OP_EMBED, EM_OP_NORM, EM_OP_IN_PROJ, EM_OP_CONV, EM_OP_SSM, EM_OP_GATED_NORM, EM_OP_OUT_PROJ, EM_OP_HEAD,
    EM_OP_ARGMAX, EM_OP_ATTN, EM_OP_MLP_UP, EM_OP_MLP_DOWN, EM_OP_COUNT
} em_cuda_op;
extern const char *const em_cuda_op_names[EM_OP_COUNT];

/** Where a decode step's time goes: runs `steps` decode steps eagerly (not from the graph) with an event after
 *  every kernel and sums the GPU time per op class into ms[] (per step); then times `steps` replays of the
 *  graph into *graph_ms (per step). A benchmark call (em-bench --breakdown): it creates and destroys events,
 *  and it advances the session's state. */
em_status em_cuda_session_profile(struct em_session *s, int steps, double ms[EM_OP_COUNT], double *graph_ms);
/** The decode step this session runs ("fused+pdl", "fused" or "unfused"; "cpu" for a CPU session), for reports.
 *  In the fused step in_proj gemv includes the RMSNorm and the conv1d, ssm scan the gate, out_proj gemv the gated
 *  norm and the residual add, head gemv the final norm. */
const char *em_cuda_session_step_name(const struct em_session *s);

/* Snapshots of CUDA sessions (runtime/snapshot.c): synchronous copies between the session's device state and host
 * memory, in the snapshot's layouts. part: EM_CUDA_PART_CONV / _SSM (byte offset `off` into the [n_m2, ...] f32
 * arrays), _K / _V (attention slot `layer`: f32 bytes from row 0 of its cache, widened from / rounded to the
 * device's bf16), _LOGITS (the last logits row). No allocation. @return EM_OK or EM_ERR_DEVICE. */
enum { EM_CUDA_PART_CONV = 0, EM_CUDA_PART_SSM = 1, EM_CUDA_PART_K = 2, EM_CUDA_PART_V = 3, EM_CUDA_PART_LOGITS = 4 };
em_status em_cuda_session_state_get(struct em_session *s, int part, uint32_t layer, uint64_t off, void *dst, uint64_t n);
em_status em_cuda_session_state_put(struct em_session *s, int part, uint32_t layer, uint64_t off, const void *src,
                                    uint64_t n);
/** After a restore: the attention position word to s->n_past, and the greedy id of the restored logits. */
em_status em_cuda_session_restored(struct em_session *s, int have_logits);

/** Copies the last logits row ([vocab] floats) from the device to dst (host), for the sampler's CPU twin. */
em_status em_cuda_session_logits(struct em_session *s, float *dst);

/** The greedy id computed on the device by the last step (only 4 bytes cross to the host). */
em_status em_cuda_session_argmax(struct em_session *s, int32_t *tok);

#endif /* EM_CUDA_EXEC_H */
