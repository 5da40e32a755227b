/*
 * cuda_exec.c — the CUDA backend of the executor (see cuda_exec.h).
 *
 * Memory (DESIGN.md principle 1): at open, ONE device allocation holds the blob's whole data section,
 * copied in one cudaMemcpy (tensors keep their 4096-aligned offsets, so a device pointer is the base plus
 * the tensor's offset: no per-tensor work at load). At session create, ONE device allocation holds, in
 * 256-byte aligned regions:
 *
 *   conv state [n_m2, conv_dim, K-1] | ssm state [n_m2, H, P, N] (fp32) | pos (u32)             <- state
 *   KV cache [n_attn] x (K, V) [max_context, n_kv_head, head_dim] bf16                          <- kv (hybrids)
 *   x [T, d] | xn [T, d] | proj [T, d_in_proj] | xbc [T, conv_dim] | y [T, d_inner] | delta [T, d] | sumsq [H]
 *   logits [vocab] | tok [T] int32 | next [1] int32 | gemm_ws | ssd_ws                      <- workspace
 *   qkv [T, (Hq + 2 Hkv) hd] | att [T, Hq hd] | ff [T, d_ff] | attn_ws                       <- (hybrids)
 *
 * Hybrids (attention and MLP layers, issue 9; docs/hybrid-cuda.md): attention runs kernels/attention.cu over the
 * bf16 KV cache, the MLP kernels/mlp.cu; in the captured decode step the attention kernels read the position from
 * the device word `pos` (advanced at the end of each replay, set after each prefill), so one graph serves every
 * position. An attention or MLP layer in the fused step adds its output into the residual stream itself (the fused
 * Mamba layers read x whole).
 *
 * plus a pinned host int32 pair for the token going in and the greedy id coming out. Nothing is allocated
 * after create: prefill and decode only queue kernels on the session's stream.
 *
 * Decode: the step for one token (embed, per layer rmsnorm+residual / in_proj / conv / ssm / gated norm /
 * out_proj, final norm, head, argmax, next -> tok) is captured once as a CUDA graph at create and replayed
 * per token. The greedy id it leaves in `next` is also copied into `tok`, so a greedy loop needs no host
 * data in between; a caller-given token is copied into `tok` before the replay. Only 4 bytes come back.
 *
 * The step's kernels per Mamba-2 layer (docs/gpu.md, "the fused step"): where the weights are BF16 and the shapes
 * fit (em_cuda_norm_linear_supported, ...), three: norm_linear (RMSNorm -> in_proj -> conv1d), the ssm with the gate
 * and the group norm's sums of squares, gated_linear (group RMSNorm -> out_proj -> residual add), each launched as
 * a programmatic dependent of the one before (sm_90+: it streams its weights or loads its state while that one
 * finishes). Otherwise six: rmsnorm(+residual) / in_proj / conv1d / ssm / gated norm / out_proj. EM_STEP_MODE=
 * unfused | fused-nopdl (environment, read at create) picks the older forms, for measurement.
 *
 * Prefill runs chunks of up to T tokens (the planned max_prefill_chunk): per layer rmsnorm, in_proj as a cuBLASLt
 * GEMM (kernels/gemm.cu) when the chunk has more than EM_GEMM_MIN_TOK tokens, conv1d, the chunked SSD scan
 * (kernels/ssd.cu) when it has at least EM_SSD_MIN_TOK, the gated norm and out_proj as a GEMM; shorter chunks take
 * the decode kernels. The GEMM's cuBLASLt workspace and bf16 copy of x and the SSD's chunk states are regions of
 * the session's one block, sized for T at create: a prompt of any length runs in that fixed memory, chunk by chunk.
 * INT8 weights take the GEMM too by default, dequantized into a 32 MiB bf16 slab of the GEMM workspace; with
 * EM_I8_PREFILL=gemv (environment, read at create) they take the INT8 GEMV over groups of 8 tokens instead.
 */
#include "cuda_exec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dev_plan.h"
#include "session.h"
#include "util.h"

const char *const em_cuda_op_names[EM_OP_COUNT] = { "embed", "rmsnorm+residual", "in_proj gemv", "conv1d", "ssm scan",
                                                    "gated norm", "out_proj gemv", "head gemv", "argmax",
                                                    "attention", "mlp up gemv", "mlp down gemv" };

#ifndef EM_HAVE_CUDA

int em_cuda_model_supported(const em_model *m) { (void)m; return 0; }
em_status em_cuda_model_load(em_model *m, const char *path, int device) {
    (void)m; (void)path; (void)device;
    return em_fail(EM_ERR_NO_DEVICE, "this build of edgemamba has no CUDA backend (configure with -DEM_CUDA=ON)");
}
void em_cuda_model_free(em_model *m) { (void)m; }
em_status em_cuda_plan(const em_model *m, uint32_t T, uint32_t max_context, em_plan_report *r) {
    (void)m; (void)T; (void)max_context; (void)r;
    return em_fail(EM_ERR_NO_DEVICE, "no CUDA backend in this build");
}
em_status em_cuda_session_create(struct em_session *s) { (void)s; return em_fail(EM_ERR_NO_DEVICE, "no CUDA backend"); }
void em_cuda_session_free(struct em_session *s) { (void)s; }
em_status em_cuda_session_reset(struct em_session *s) { (void)s; return em_fail(EM_ERR_NO_DEVICE, "no CUDA backend"); }
em_status em_cuda_session_prefill(struct em_session *s, const int32_t *tok, size_t n, em_logits_mode mode, float *logits) {
    (void)s; (void)tok; (void)n; (void)mode; (void)logits;
    return em_fail(EM_ERR_NO_DEVICE, "no CUDA backend");
}
em_status em_cuda_session_decode(struct em_session *s, int32_t tok, float *logits) {
    (void)s; (void)tok; (void)logits;
    return em_fail(EM_ERR_NO_DEVICE, "no CUDA backend");
}
em_status em_cuda_session_argmax(struct em_session *s, int32_t *tok) { (void)s; (void)tok; return em_fail(EM_ERR_NO_DEVICE, "no CUDA backend"); }
em_status em_cuda_session_logits(struct em_session *s, float *dst) { (void)s; (void)dst; return em_fail(EM_ERR_NO_DEVICE, "no CUDA backend"); }
em_status em_cuda_session_profile(struct em_session *s, int steps, double ms[EM_OP_COUNT], double *graph_ms) {
    (void)s; (void)steps; (void)ms; (void)graph_ms;
    return em_fail(EM_ERR_NO_DEVICE, "no CUDA backend");
}
const char *em_cuda_session_step_name(const struct em_session *s) { (void)s; return "cpu"; }
em_status em_cuda_session_state_get(struct em_session *s, int part, uint32_t layer, uint64_t off, void *dst, uint64_t n) {
    (void)s; (void)part; (void)layer; (void)off; (void)dst; (void)n;
    return em_fail(EM_ERR_NO_DEVICE, "no CUDA backend");
}
em_status em_cuda_session_state_put(struct em_session *s, int part, uint32_t layer, uint64_t off, const void *src,
                                    uint64_t n) {
    (void)s; (void)part; (void)layer; (void)off; (void)src; (void)n;
    return em_fail(EM_ERR_NO_DEVICE, "no CUDA backend");
}
em_status em_cuda_session_restored(struct em_session *s, int have_logits) {
    (void)s; (void)have_logits;
    return em_fail(EM_ERR_NO_DEVICE, "no CUDA backend");
}

#else /* EM_HAVE_CUDA */

#include <cuda_runtime_api.h>

#include <sys/mman.h>
#include <unistd.h>

#include "cuda_ops.h"
#include "cuda_rt.h"
#include "device_policy.h"

typedef struct em_cuda_model {
    int device;
    uint8_t *data;                              /* the blob's data section on the device */
    size_t bytes;
    struct { EM_GLOBAL_TENSORS(EM_X_WREF) } g;  /* device pointers */
    em_layer *layers;                           /* [n_layer], device pointers */
    size_t lib_bytes;                           /* device memory cuBLASLt keeps once loaded (measured at load) */
    int integrated;                             /* the GPU shares DRAM with the CPU (a Jetson) */
} em_cuda_model;

typedef struct em_cuda_session {
    void *block;                                /* the one device allocation */
    size_t block_bytes;
    float *conv_state, *ssm_state;
    float *x, *xn, *proj, *xbc, *y, *delta, *sumsq, *logits;
    int fused;                                  /* decode step: 0 the six-kernel layer, 1 fused, 2 fused + PDL */
    int aux_fused;                              /* fused step: attention / MLP layers as norm_linear + GEMV with
                                                   the residual add (queue_aux_fused); 0 with EM_AUX_FUSED=0 */
    void *gemm;                                 /* cuBLASLt handle (em_cuda_gemm_create), NULL when T <= EM_GEMM_MIN_TOK */
    void *gemm_ws, *ssd_ws;                     /* prefill workspaces in the block (NULL: not planned) */
    uint32_t *pos;                              /* device: the KV position the captured step attends at */
    uint16_t *kv;                               /* [n_attn][K, V][max_context, Hkv, hd] bf16 (hybrids) */
    float *qkv, *att, *ff;
    void *attn_ws;
    size_t attn_ws_bytes;
    size_t gemm_ws_bytes, ssd_ws_bytes;
    int gemm_i8;                                /* INT8 weights take the GEMM in prompt chunks (i8_prefill_gemm:
                                                   the default; 0 with EM_I8_PREFILL=gemv) */
    int32_t *tok, *next;                        /* device */
    int32_t *pinned;                            /* host, page-locked: [0] token in, [1] greedy id out,
                                                   [2] the KV position after a prefill (hybrids) */
    int next_on_host;                           /* pinned[1] holds the last step's greedy id (copied with the
                                                   step, before its one sync: argmax needs no second sync) */
    cudaStream_t stream;
    cudaGraphExec_t step;                       /* the captured decode step */
    size_t state_bytes;
    /* profiling only (em_cuda_session_profile): an event after every queued kernel */
    cudaEvent_t *prof_ev;
    uint8_t *prof_op;
    int prof_n, prof_cap;
} em_cuda_session;


/* After each queued kernel: record an event when profiling (never inside a graph capture). */
#define EM_MARK(cs, op)                                                                                        \
    do {                                                                                                       \
        if ((cs)->prof_ev && (cs)->prof_n < (cs)->prof_cap) {                                                 \
            cudaEventRecord((cs)->prof_ev[(cs)->prof_n], (cs)->stream);                                        \
            (cs)->prof_op[(cs)->prof_n++] = (uint8_t)(op);                                                     \
        }                                                                                                      \
    } while (0)

// ---- model -------------------------------------------------------------------------------------------------

int em_cuda_model_supported(const em_model *m) {
    const em_blob_config *c = &m->cfg;
    if (m->n_attn && c->attn_head_dim != 64 && c->attn_head_dim != 128) return 0; /* kernels/attention.cu */
    if (m->n_mlp && c->mlp_act != EM_ACT_GELU && c->mlp_act != EM_ACT_RELU2 && c->mlp_act != EM_ACT_SILU) return 0;
    for (uint32_t i = 0; i < c->n_layer; i++) {
        const int k = m->layers[i].kind;
        if (k != EM_LAYER_MAMBA2 && k != EM_LAYER_ATTN && k != EM_LAYER_MLP) return 0;
    }
    return 1;
}

/* host pointer into the mapped blob -> the same tensor on the device */
static em_wref to_dev(const em_model *m, const em_cuda_model *cm, em_wref w) {
    em_wref d = { .p = NULL, .dt = w.dt };
    if (w.p) d.p = cm->data + ((const uint8_t *)w.p - m->blob.data);
    if (w.scale) d.scale = (const float *)(cm->data + ((const uint8_t *)w.scale - m->blob.data)); /* INT8 scales */
    return d;
}

/* Copies a staged chunk of the blob to the device (em_weights_read_drop's callback; synchronous, so the staging
 * buffer can be refilled when it returns). */
static em_status copy_h2d(void *dst, const void *src, size_t bytes, void *user) {
    (void)user;
    return em_cuda_memcpy(dst, src, bytes);
}

/* The blob's data section into cm->data by the path platform/device_policy chose (docs/jetson.md): DEVICE_COPY,
 * one cudaMemcpy from the mapping (discrete GPUs); UNIFIED_READ_DROP, read through a pinned staging buffer with
 * the file's pages dropped behind it, so that on a Jetson the weights are not held twice in the shared DRAM
 * (integrated GPUs, or EM_WEIGHT_PATH=read-drop anywhere). ZERO_COPY is refused until it is measured. */
static em_status load_weights(em_model *m, const char *path, em_cuda_model *cm, const em_device_attrs *a) {
    em_weight_policy_options wo = em_weight_policy_default_options(); /* $EM_WEIGHT_PATH */
    em_weight_decision d;
    EM_TRY(em_weight_path_choose(a, cm->bytes, &wo, &d));
    em_log(EM_LOG_INFO, "weights: %s (%s)", em_weight_path_name(d.path), d.reason);
    if (d.path == EM_WEIGHTS_DEVICE_COPY) return em_cuda_memcpy(cm->data, m->blob.data, cm->bytes); /* the one copy */
    if (d.path != EM_WEIGHTS_UNIFIED_READ_DROP)
        return em_fail(EM_ERR_UNSUPPORTED, "weights: %s is not wired into the executor yet (unmeasured on a Jetson); "
                       "EM_WEIGHT_PATH=read-drop or copy", em_weight_path_name(d.path));
    if (!path) return em_fail(EM_ERR_INVALID_ARG, "weights: read-drop needs the blob's path");
    /* pages of the blob's own mapping that were touched (the header, a verify_data hash) stay mapped and cannot be
     * dropped: unmap them from this process first (a private read-only mapping: later reads fault them back) */
    const long pg = sysconf(_SC_PAGESIZE);
    const uintptr_t lo = (uintptr_t)m->blob.data & ~(uintptr_t)(pg - 1);
    madvise((void *)lo, (size_t)((uintptr_t)m->blob.data + cm->bytes - lo), MADV_DONTNEED);
    void *staging = NULL;
    cudaError_t e = cudaHostAlloc(&staging, (size_t)d.chunk_bytes, cudaHostAllocDefault);
    if (e != cudaSuccess) return em_cuda_fail(e, "cudaHostAlloc (weights' staging buffer)", __FILE__, __LINE__);
    em_read_drop_stats st;
    em_status s = em_weights_read_drop(path, (uint64_t)(m->blob.data - m->blob.base), cm->bytes, cm->data, staging,
                                       (size_t)d.chunk_bytes, copy_h2d, NULL, &st);
    cudaFreeHost(staging); /* at open: the no-allocation rule starts at session create */
    if (s == EM_OK)
        em_log(EM_LOG_INFO, "weights: %.1f MB read in %llu chunks in %.2f s, %.1f MB of page cache dropped%s",
               (double)st.bytes / 1e6, (unsigned long long)st.chunks, st.seconds, (double)st.dropped_bytes / 1e6,
               st.drop_failed ? " (some fadvise calls failed)" : "");
    return s;
}

em_status em_cuda_model_load(em_model *m, const char *path, int device) {
    int n = 0;
    EM_TRY(em_cuda_available(&n));
    if (n == 0) return em_fail(EM_ERR_NO_DEVICE, "no CUDA device: %s", em_last_error());
    if (device >= n) return em_fail(EM_ERR_INVALID_ARG, "CUDA device %d asked for, %d present", device, n);
    if (!em_cuda_model_supported(m))
        return em_fail(EM_ERR_UNSUPPORTED, "the CUDA executor runs Mamba-2, attention (head_dim 64 or 128) and MLP "
                       "(GELU, relu^2, SiLU) layers; this model has another kind: use the CPU backend");
    EM_TRY(em_cuda_set_device(device));
    em_cuda_model *cm = calloc(1, sizeof *cm);
    if (!cm) return em_fail(EM_ERR_OUT_OF_MEMORY, "out of memory");
    cm->device = device;
    cm->bytes = m->blob.data_size;
    cm->layers = calloc(m->cfg.n_layer, sizeof *cm->layers);
    em_device_attrs attrs;
    em_status s = cm->layers ? em_device_attrs_query(device, &attrs) : em_fail(EM_ERR_OUT_OF_MEMORY, "out of memory");
    if (s == EM_OK) {
        cm->integrated = attrs.integrated;
        s = em_cuda_malloc((void **)&cm->data, cm->bytes);
    }
    if (s == EM_OK) s = load_weights(m, path, cm, &attrs);
    if (s != EM_OK) {
        em_cuda_free(cm->data);
        free(cm->layers);
        free(cm);
        return s;
    }
    /* cuBLASLt (the prompt GEMMs): load it now, with a probe handle, and measure what it keeps on the device
     * (~380 MB of kernels under CUDA_MODULE_LOADING=EAGER on an H100), so that em_plan can count it */
    {
        size_t f0 = 0, f1 = 0, total = 0;
        void *probe = NULL;
        if (cudaMemGetInfo(&f0, &total) == cudaSuccess && em_cuda_gemm_create(&probe) == EM_OK &&
            cudaMemGetInfo(&f1, &total) == cudaSuccess && f1 < f0)
            cm->lib_bytes = f0 - f1;
        em_cuda_gemm_destroy(probe);
        cudaGetLastError();
    }
#define EM_X_DEV_G(field, ...) cm->g.field = to_dev(m, cm, m->g.field);
    EM_GLOBAL_TENSORS(EM_X_DEV_G)
    for (uint32_t i = 0; i < m->cfg.n_layer; i++) {
        const em_layer *L = &m->layers[i];
        em_layer *D = &cm->layers[i];
        *D = *L;
#define EM_X_DEV_M2(field, ...) D->w.m2.field = to_dev(m, cm, L->w.m2.field);
#define EM_X_DEV_AT(field, ...) D->w.attn.field = to_dev(m, cm, L->w.attn.field);
#define EM_X_DEV_MLP(field, ...) D->w.mlp.field = to_dev(m, cm, L->w.mlp.field);
        if (L->kind == EM_LAYER_MAMBA2) { EM_MAMBA2_TENSORS(EM_X_DEV_M2) }
        else if (L->kind == EM_LAYER_ATTN) { EM_ATTN_TENSORS(EM_X_DEV_AT) }
        else if (L->kind == EM_LAYER_MLP) { EM_MLP_TENSORS(EM_X_DEV_MLP) }
    }
    m->cuda = cm;
    return EM_OK;
}

void em_cuda_model_free(em_model *m) {
    em_cuda_model *cm = m ? m->cuda : NULL;
    if (!cm) return;
    em_cuda_free(cm->data);
    free(cm->layers);
    free(cm);
    m->cuda = NULL;
}

// ---- plan: the layout is runtime/dev_plan.c's (also used without a device) ------------------------------


em_status em_cuda_plan(const em_model *m, uint32_t T, uint32_t max_context, em_plan_report *r) {
    em_dev_layout l;
    em_dev_layout_compute(m, T, max_context, &l);
    r->state_bytes = l.state_bytes;
    r->workspace_bytes = l.total - l.state_bytes;
    /* cuBLASLt's workspace and the bf16 copy of x (in the block), and what the library keeps resident (measured
     * at load; outside the block, so session_bytes counts it while the block does not) */
    const em_cuda_model *cmp = m->cuda;
    r->library_bytes = l.gemm_ws_bytes + cmp->lib_bytes;
    r->workspace_bytes -= l.gemm_ws_bytes + l.kv_bytes;
    r->kv_bytes = l.kv_bytes; /* bf16 K and V of the attention layers, max_context positions */
    r->session_bytes = l.total + cmp->lib_bytes;
    em_cuda_info info;
    const em_cuda_model *cm = m->cuda;
    EM_TRY(em_cuda_device_info(cm->device, &info));
    /* the library is already resident: counted once, in the plan. On an integrated GPU what can be allocated is
     * MemAvailable (cudaMemGetInfo reports MemFree, blind to the reclaimable page cache; docs/jetson.md) */
    size_t avail = info.mem_free;
    if (cm->integrated) {
        const size_t host = em_host_mem_available();
        if (host) avail = host;
    }
    r->available_bytes = avail + cm->lib_bytes;
    return EM_OK;
}

// ---- the step ------------------------------------------------------------------------------------------------

static em_status queue_aux_layer(em_session *s, const em_layer *L, uint32_t nt, uint32_t pos, const uint32_t *pos_dev);

/* The fused layer's three ops for layer L (one token), pointers into the session's workspace. */
typedef struct em_fused_layer {
    em_norm_linear_args in;
    em_ssm_args ssm;
    em_gated_linear_args out;
} em_fused_layer;

static void fused_layer_args(const em_session *s, const em_layer *L, uint32_t pdl, em_fused_layer *f) {
    const em_blob_config *c = &s->model->cfg;
    const em_cuda_session *cs = s->cuda;
    const em_mamba2_w *w = &L->w.m2;
    const em_dims d = s->dim;
    const uint32_t GN = d.G * d.N;
    float *xbc = cs->proj + d.d_inner; /* [x | B | C] after the conv, in place in proj */
    f->in = (em_norm_linear_args){ .x = cs->x, .norm_w = w->norm.p, .eps = c->norm_eps, .w = w->in_proj.p,
                                   .w_dtype = w->in_proj.dt, .w_scale = w->in_proj.scale, .y = cs->proj, .n_in = d.d, .n_out = d.d_in_proj,
                                   .conv_off = d.d_inner, .conv_dim = d.conv_dim, .K = d.K,
                                   .conv_state = cs->conv_state + (size_t)L->slot * d.conv_dim * (d.K - 1),
                                   .conv_w = w->conv_w.p, .conv_b = w->conv_b.p,
                                   .flags = pdl ? EM_LINEAR_W_CONST : 0 };
    f->ssm = (em_ssm_args){ .x = xbc, .dt = cs->proj + d.d_inner + d.conv_dim, .B = xbc + d.d_inner,
                            .C = xbc + d.d_inner + GN, .A = w->A.p, .D = w->D.p, .dt_bias = w->dt_bias.p,
                            .state = cs->ssm_state + (size_t)L->slot * d.H * d.P * d.N, .y = cs->y, .n_tok = 1,
                            .H = d.H, .P = d.P, .N = d.N, .G = d.G, .dt_min = c->dt_limit_min,
                            .dt_max = c->dt_limit_max, .z = cs->proj, .sumsq = cs->sumsq,
                            .flags = pdl ? EM_SSM_STATE_OWN : 0 };
    f->out = (em_gated_linear_args){ .y = cs->y, .sumsq = cs->sumsq, .norm_w = w->gnorm.p,
                                     .group = c->gated_norm_group, .P = d.P, .eps = c->norm_eps, .w = w->out_proj.p,
                                     .w_dtype = w->out_proj.dt, .w_scale = w->out_proj.scale, .x = cs->x,
                                     .n_in = d.d_inner, .n_out = d.d,
                                     .flags = pdl ? EM_LINEAR_W_CONST : 0 };
}

/* The final norm + head as one norm_linear (no conv). */
static em_norm_linear_args head_args(const em_session *s, uint32_t pdl) {
    const em_cuda_model *cm = s->model->cuda;
    const em_cuda_session *cs = s->cuda;
    return (em_norm_linear_args){ .x = cs->x, .norm_w = cm->g.norm_f.p, .eps = s->model->cfg.norm_eps,
                                  .w = cm->g.head.p, .w_dtype = cm->g.head.dt, .w_scale = cm->g.head.scale,
                                  .y = cs->logits, .n_in = s->dim.d,
                                  .n_out = s->dim.vocab, .flags = pdl ? EM_LINEAR_W_CONST : 0 };
}

/* Which decode step this session can run: every layer and the head must take the fused ops (BF16 weights, the
 * shapes of cuda_ops.h), and EM_STEP_MODE may ask for an older form. */
static int pick_step_mode(const em_session *s) {
    const char *e = getenv("EM_STEP_MODE");
    if (e && strcmp(e, "unfused") == 0) return 0;
    const int want = e && strcmp(e, "fused-nopdl") == 0 ? 1 : 2;
    const em_cuda_model *cm = s->model->cuda;
    const em_norm_linear_args h = head_args(s, 0);
    if (!em_cuda_norm_linear_supported(&h)) return 0;
    /* INT8 weights: the fused step wins with the x-stationary GEMV (linear_i8.cu v3: 8B on the H100, fifth session,
     * docs/int8.md) but loses with v1's fused forms (4.47 vs 3.69 ms a token: their x * norm-weight chunks cost 8x
     * the weight bytes in L1 traffic), so it is taken only where v3 takes both GEMVs of every Mamba layer.
     * EM_STEP_MODE=fused-i8 takes the fused step anyway. */
    int i8 = 0; /* every Mamba layer has the same shapes: one question for all of them */
    for (uint32_t i = 0; i < s->model->cfg.n_layer; i++)
        i8 |= cm->layers[i].kind == EM_LAYER_MAMBA2 && cm->layers[i].w.m2.in_proj.dt == EM_DTYPE_I8;
    if (i8 && !(e && strcmp(e, "fused-i8") == 0) &&
        (!em_cuda_fused_i8_fast(0, s->dim.d_in_proj, s->dim.d) || !em_cuda_fused_i8_fast(1, s->dim.d, s->dim.d_inner)))
        return 0;
    for (uint32_t i = 0; i < s->model->cfg.n_layer; i++) {
        if (cm->layers[i].kind != EM_LAYER_MAMBA2) continue; /* attention / MLP layers: the same kernels either way */
        em_fused_layer f;
        fused_layer_args(s, &cm->layers[i], 0, &f);
        if (!em_cuda_norm_linear_supported(&f.in) || !em_cuda_ssm_supported(&f.ssm) ||
            !em_cuda_gated_linear_supported(&f.out))
            return 0;
    }
    return want;
}

/* The attention of layer L over nt tokens whose q | k | v rows are in cs->qkv, at position pos (or the device word
 * pos_dev), into cs->att; the new K, V rows go into the layer's bf16 cache. */
static em_attn_dev_args attn_dev_args(const em_session *s, const em_layer *L, uint32_t nt, uint32_t pos,
                                      const uint32_t *pos_dev) {
    const em_blob_config *c = &s->model->cfg;
    const em_cuda_session *cs = s->cuda;
    const uint32_t Hq = c->attn_n_head, Hkv = c->attn_n_kv_head, hd = c->attn_head_dim;
    const uint32_t dq = Hq * hd, dkv = Hkv * hd, row = dq + 2 * dkv; /* qkv row: q | k | v */
    const size_t layer_kv = (size_t)s->max_context * dkv; /* one layer's K (or V) cache, in bf16 elements */
    uint16_t *kc = cs->kv + (size_t)L->slot * 2 * layer_kv;
    return (em_attn_dev_args){ .q = cs->qkv, .k = cs->qkv + dq, .v = cs->qkv + dq + dkv, .k_cache = kc,
                               .v_cache = kc + layer_kv, .out = cs->att, .n_tok = nt, .n_head = Hq, .n_kv_head = Hkv,
                               .head_dim = hd, .pos = pos, .max_ctx = s->max_context, .q_stride = row,
                               .kv_stride = row, .out_stride = dq,
                               .rope_dims = (uint32_t)(c->rope_fraction * (float)hd), .rope_base = c->rope_base,
                               .scale = (float)(1.0 / sqrt((double)hd)), .pos_dev = pos_dev };
}

/* An attention or MLP layer in the fused step: the RMSNorm is the prologue of each input projection (norm_linear;
 * the MLP's activation its epilogue) and the output projection adds into the residual stream x (EM_LINEAR_ADD), so
 * the layer needs no rmsnorm kernels: MLP 2 kernels instead of 5, attention 5 or 6 instead of 8 or 9. */
static void aux_fused_args(const em_session *s, const em_layer *L, uint32_t pdl, em_norm_linear_args in[3],
                           em_linear_args *out) {
    const em_blob_config *c = &s->model->cfg;
    const em_cuda_session *cs = s->cuda;
    const uint32_t d = s->dim.d, wf = pdl ? EM_LINEAR_W_CONST : 0;
    const em_norm_linear_args base = { .x = cs->x, .norm_w = L->w.m2.norm.p, .eps = c->norm_eps, .n_in = d,
                                       .flags = wf };
    for (int k = 0; k < 3; k++) in[k] = base;
    if (L->kind == EM_LAYER_MLP) {
        const em_mlp_w *w = &L->w.mlp;
        in[0].w = w->up.p; in[0].w_dtype = w->up.dt; in[0].w_scale = w->up.scale; in[0].y = cs->ff;
        in[0].n_out = c->d_ff; in[0].act = c->mlp_act;
        *out = (em_linear_args){ .w = w->down.p, .w_dtype = w->down.dt, .w_scale = w->down.scale, .x = cs->ff,
                                 .y = cs->x, .n_tok = 1, .n_in = c->d_ff, .n_out = d, .flags = EM_LINEAR_ADD | wf };
        return;
    }
    const em_attn_w *w = &L->w.attn;
    const uint32_t dq = c->attn_n_head * c->attn_head_dim, dkv = c->attn_n_kv_head * c->attn_head_dim;
    in[0].w = w->wq.p; in[0].w_dtype = w->wq.dt; in[0].w_scale = w->wq.scale; in[0].y = cs->qkv; in[0].n_out = dq;
    in[1].w = w->wk.p; in[1].w_dtype = w->wk.dt; in[1].w_scale = w->wk.scale; in[1].y = cs->qkv + dq;
    in[1].n_out = dkv;
    in[2].w = w->wv.p; in[2].w_dtype = w->wv.dt; in[2].w_scale = w->wv.scale; in[2].y = cs->qkv + dq + dkv;
    in[2].n_out = dkv;
    *out = (em_linear_args){ .w = w->wo.p, .w_dtype = w->wo.dt, .w_scale = w->wo.scale, .x = cs->att, .y = cs->x,
                             .n_tok = 1, .n_in = dq, .n_out = d, .flags = EM_LINEAR_ADD | wf };
}

/* Whether every attention and MLP layer takes the fused form (session create; EM_AUX_FUSED=0: none does, A/B). */
static int pick_aux_fused(const em_session *s) {
    const char *e = getenv("EM_AUX_FUSED");
    if (e && strcmp(e, "0") == 0) return 0;
    const em_cuda_model *cm = s->model->cuda;
    for (uint32_t i = 0; i < s->model->cfg.n_layer; i++) {
        const em_layer *L = &cm->layers[i];
        if (L->kind == EM_LAYER_MAMBA2) continue;
        em_norm_linear_args in[3];
        em_linear_args out;
        aux_fused_args(s, L, 0, in, &out);
        const int n_in = L->kind == EM_LAYER_MLP ? 1 : 3;
        for (int k = 0; k < n_in; k++)
            if (!em_cuda_norm_linear_supported(&in[k])) return 0;
        if (!em_cuda_linear_supported(&out)) return 0;
    }
    return 1;
}

static em_status queue_aux_fused(em_session *s, const em_layer *L, uint32_t pdl) {
    em_cuda_session *cs = s->cuda;
    void *st = cs->stream;
    em_norm_linear_args in[3];
    em_linear_args out;
    aux_fused_args(s, L, pdl, in, &out);
    if (L->kind == EM_LAYER_MLP) {
        EM_TRY(em_cuda_norm_linear(&in[0], st));
        EM_MARK(cs, EM_OP_MLP_UP);
        EM_TRY(em_cuda_linear(&out, st));
        EM_MARK(cs, EM_OP_MLP_DOWN);
        return EM_OK;
    }
    for (int k = 0; k < 3; k++) EM_TRY(em_cuda_norm_linear(&in[k], st));
    EM_MARK(cs, EM_OP_IN_PROJ);
    const em_attn_dev_args aa = attn_dev_args(s, L, 1, 0, cs->pos);
    EM_TRY(em_cuda_attention(&aa, cs->attn_ws, cs->attn_ws_bytes, st));
    EM_MARK(cs, EM_OP_ATTN);
    EM_TRY(em_cuda_linear(&out, st));
    EM_MARK(cs, EM_OP_OUT_PROJ);
    return EM_OK;
}

/* One token through the fused step (the greedy id into next and tok). */
static em_status queue_fused_step(em_session *s) {
    const em_model *m = s->model;
    const em_cuda_model *cm = m->cuda;
    em_cuda_session *cs = s->cuda;
    void *st = cs->stream;
    const uint32_t pdl = cs->fused == 2;
    em_embed_args ea = { .table = cm->g.embd.p, .dtype = cm->g.embd.dt, .tok = cs->tok, .out = cs->x, .n_tok = 1,
                         .d = s->dim.d };
    EM_TRY(em_cuda_embed(&ea, st));
    EM_MARK(cs, EM_OP_EMBED);
    for (uint32_t i = 0; i < m->cfg.n_layer; i++) {
        const em_layer *L = &cm->layers[i];
        if (L->kind != EM_LAYER_MAMBA2 && cs->aux_fused) {
            EM_TRY(queue_aux_fused(s, L, pdl));
            continue;
        }
        if (L->kind != EM_LAYER_MAMBA2) { /* norm, the layer, then x += delta (the fused layers read x whole) */
            em_rmsnorm_args na = { .x = cs->x, .w = L->w.m2.norm.p, .y = cs->xn, .n_tok = 1, .d = s->dim.d,
                                   .eps = m->cfg.norm_eps };
            EM_TRY(em_cuda_rmsnorm(&na, st));
            EM_TRY(queue_aux_layer(s, L, 1, 0, cs->pos));
            EM_MARK(cs, EM_OP_OUT_PROJ);
            na.delta = cs->delta; /* the residual add, as rmsnorm's first half (its y is not used) */
            EM_TRY(em_cuda_rmsnorm(&na, st));
            EM_MARK(cs, EM_OP_NORM);
            continue;
        }
        em_fused_layer f;
        fused_layer_args(s, L, pdl, &f);
        EM_TRY(em_cuda_norm_linear(&f.in, st));
        EM_MARK(cs, EM_OP_IN_PROJ);
        EM_TRY(em_cuda_ssm(&f.ssm, st));
        EM_MARK(cs, EM_OP_SSM);
        EM_TRY(em_cuda_gated_linear(&f.out, st));
        EM_MARK(cs, EM_OP_OUT_PROJ);
    }
    const em_norm_linear_args h = head_args(s, pdl);
    EM_TRY(em_cuda_norm_linear(&h, st));
    EM_MARK(cs, EM_OP_HEAD);
    EM_TRY(em_cuda_argmax(cs->logits, s->dim.vocab, cs->next, st));
    EM_CUDA_CHECK(cudaMemcpyAsync(cs->tok, cs->next, sizeof(int32_t), cudaMemcpyDeviceToDevice, st));
    EM_MARK(cs, EM_OP_ARGMAX);
    return EM_OK;
}

/* A linear over a prefill chunk: the cuBLASLt GEMM for more than EM_GEMM_MIN_TOK tokens where it takes the
 * arguments (BF16 weights; INT8 weights dequantized a slab at a time, the default: EM_I8_PREFILL=gemv keeps the
 * INT8 GEMV), else the GEMV. */
/* Whether the session's GEMM takes a (INT8 weights only with the slab planned: dev_plan.c, i8_prefill_gemm). */
static int gemm_takes(const em_cuda_session *cs, const em_linear_args *a) {
    return cs->gemm && (a->w_dtype != EM_DTYPE_I8 || cs->gemm_i8) && em_cuda_gemm_supported(a);
}

static em_status prefill_linear(em_cuda_session *cs, const em_linear_args *a, void *st) {
    if (a->n_tok > EM_GEMM_MIN_TOK && gemm_takes(cs, a))
        return em_cuda_gemm(cs->gemm, a, cs->gemm_ws, cs->gemm_ws_bytes, st);
    return em_cuda_linear(a, st);
}

/* An attention or MLP layer over nt tokens (after its rmsnorm into xn), its output into delta. Attention at position
 * `pos`, or at the device word pos_dev (the captured step); the new tokens' K, V go into the layer's bf16 cache. */
static em_status queue_aux_layer(em_session *s, const em_layer *L, uint32_t nt, uint32_t pos, const uint32_t *pos_dev) {
    const em_blob_config *c = &s->model->cfg;
    em_cuda_session *cs = s->cuda;
    void *st = cs->stream;
    const uint32_t d = s->dim.d;
    if (L->kind == EM_LAYER_MLP) {
        const em_mlp_w *w = &L->w.mlp;
        em_mlp_args ma = { .up = w->up.p, .up_dtype = w->up.dt, .down = w->down.p, .down_dtype = w->down.dt,
                           .up_scale = w->up.scale, .down_scale = w->down.scale, .x = cs->xn, .h = cs->ff,
                           .y = cs->delta, .n_tok = nt, .d = d, .d_ff = c->d_ff, .act = c->mlp_act };
        const int up_gemm = w->up.dt == EM_DTYPE_BF16 || (w->up.dt == EM_DTYPE_I8 && cs->gemm_i8);
        const int down_gemm = w->down.dt == EM_DTYPE_BF16 || (w->down.dt == EM_DTYPE_I8 && cs->gemm_i8);
        if (nt > EM_GEMM_MIN_TOK && cs->gemm && up_gemm && down_gemm)
            return em_cuda_mlp_gemm(cs->gemm, &ma, cs->gemm_ws, cs->gemm_ws_bytes, st);
        return em_cuda_mlp(&ma, st);
    }
    const em_attn_w *w = &L->w.attn;
    const uint32_t Hq = c->attn_n_head, Hkv = c->attn_n_kv_head, hd = c->attn_head_dim;
    const uint32_t dq = Hq * hd, dkv = Hkv * hd, row = dq + 2 * dkv; /* qkv row: q | k | v */
    em_linear_args lq = { .w = w->wq.p, .w_dtype = w->wq.dt, .w_scale = w->wq.scale, .x = cs->xn, .y = cs->qkv,
                          .n_tok = nt, .n_in = d, .n_out = dq, .x_stride = d, .y_stride = row };
    em_linear_args lk = lq, lv = lq;
    lk.w = w->wk.p; lk.w_dtype = w->wk.dt; lk.w_scale = w->wk.scale; lk.y = cs->qkv + dq; lk.n_out = dkv;
    lv.w = w->wv.p; lv.w_dtype = w->wv.dt; lv.w_scale = w->wv.scale; lv.y = cs->qkv + dq + dkv; lv.n_out = dkv;
    EM_TRY(prefill_linear(cs, &lq, st));
    EM_TRY(prefill_linear(cs, &lk, st));
    EM_TRY(prefill_linear(cs, &lv, st));
    const em_attn_dev_args aa = attn_dev_args(s, L, nt, pos, pos_dev);
    EM_TRY(em_cuda_attention(&aa, cs->attn_ws, cs->attn_ws_bytes, st));
    em_linear_args lo = { .w = w->wo.p, .w_dtype = w->wo.dt, .w_scale = w->wo.scale, .x = cs->att, .y = cs->delta,
                          .n_tok = nt, .n_in = dq, .n_out = d, .x_stride = dq, .y_stride = d };
    return prefill_linear(cs, &lo, st);
}

/* Queues nt tokens (already in cs->tok) through the model. Logits: want_last -> cs->logits from the last
 * row; all_rows -> head over every row, one row at a time into host `all_out` (tests, perplexity). */
static em_status queue_forward(em_session *s, uint32_t nt, int want_last, int argmax, uint32_t pos,
                               const uint32_t *pos_dev) {
    const em_model *m = s->model;
    const em_cuda_model *cm = m->cuda;
    em_cuda_session *cs = s->cuda;
    const em_blob_config *c = &m->cfg;
    em_dims d = s->dim;
    void *st = cs->stream;
    const uint32_t GN = d.G * d.N;

    em_embed_args ea = { .table = cm->g.embd.p, .dtype = cm->g.embd.dt, .tok = cs->tok, .out = cs->x, .n_tok = nt,
                         .d = d.d };
    EM_TRY(em_cuda_embed(&ea, st));
    EM_MARK(cs, EM_OP_EMBED);
    const float *delta = NULL;
    for (uint32_t i = 0; i < c->n_layer; i++) {
        const em_layer *L = &cm->layers[i];
        const em_mamba2_w *w = &L->w.m2;
        em_rmsnorm_args na = { .x = cs->x, .delta = delta, .w = w->norm.p, .y = cs->xn, .n_tok = nt, .d = d.d,
                               .eps = c->norm_eps };
        EM_TRY(em_cuda_rmsnorm(&na, st));
        EM_MARK(cs, EM_OP_NORM);
        if (L->kind != EM_LAYER_MAMBA2) { /* every kind's weights begin with its norm (tensors.h): w->norm above */
            EM_TRY(queue_aux_layer(s, L, nt, pos, pos_dev));
            EM_MARK(cs, EM_OP_OUT_PROJ);
            delta = cs->delta;
            continue;
        }
        float *conv_state = cs->conv_state + (size_t)L->slot * d.conv_dim * (d.K - 1);
        float *ssm_state = cs->ssm_state + (size_t)L->slot * d.H * d.P * d.N;
        em_linear_args in = { .w = w->in_proj.p, .w_dtype = w->in_proj.dt, .w_scale = w->in_proj.scale, .x = cs->xn,
                              .y = cs->proj, .n_tok = nt,
                              .n_in = d.d, .n_out = d.d_in_proj, .x_stride = d.d, .y_stride = d.d_in_proj };
        EM_TRY(prefill_linear(cs, &in, st));
        EM_MARK(cs, EM_OP_IN_PROJ);
        em_conv1d_args ca = { .x = cs->proj + d.d_inner, .state = conv_state, .w = w->conv_w.p, .b = w->conv_b.p,
                              .y = cs->xbc, .n_tok = nt, .C = d.conv_dim, .K = d.K, .x_stride = d.d_in_proj,
                              .y_stride = d.conv_dim, .silu = EM_SILU_ON };
        EM_TRY(em_cuda_conv1d(&ca, st));
        EM_MARK(cs, EM_OP_CONV);
        em_ssm_args sa = { .x = cs->xbc, .dt = cs->proj + d.d_inner + d.conv_dim, .B = cs->xbc + d.d_inner,
                           .C = cs->xbc + d.d_inner + GN, .A = w->A.p, .D = w->D.p, .dt_bias = w->dt_bias.p,
                           .state = ssm_state, .y = cs->y, .n_tok = nt, .H = d.H, .P = d.P, .N = d.N, .G = d.G,
                           .x_stride = d.conv_dim, .dt_stride = d.d_in_proj, .bc_stride = d.conv_dim,
                           .y_stride = d.d_inner, .dt_min = c->dt_limit_min, .dt_max = c->dt_limit_max };
        em_ssd_args da = { .x = sa.x, .dt = sa.dt, .B = sa.B, .C = sa.C, .A = sa.A, .D = sa.D, .dt_bias = sa.dt_bias,
                           .state = sa.state, .y = sa.y, .n_tok = nt, .H = d.H, .P = d.P, .N = d.N, .G = d.G,
                           .x_stride = sa.x_stride, .dt_stride = sa.dt_stride, .bc_stride = sa.bc_stride,
                           .y_stride = sa.y_stride, .dt_min = sa.dt_min, .dt_max = sa.dt_max };
        if (nt >= EM_SSD_MIN_TOK && cs->ssd_ws && em_cuda_ssd_supported(&da))
            EM_TRY(em_cuda_ssd(&da, cs->ssd_ws, cs->ssd_ws_bytes, st));
        else
            EM_TRY(em_cuda_ssm(&sa, st));
        EM_MARK(cs, EM_OP_SSM);
        em_gated_norm_args ga = { .y = cs->y, .z = cs->proj, .w = w->gnorm.p, .out = cs->y, .n_tok = nt, .d = d.d_inner,
                                  .group = c->gated_norm_group, .y_stride = d.d_inner, .z_stride = d.d_in_proj,
                                  .out_stride = d.d_inner, .eps = c->norm_eps };
        EM_TRY(em_cuda_gated_norm(&ga, st));
        EM_MARK(cs, EM_OP_GATED_NORM);
        em_linear_args out = { .w = w->out_proj.p, .w_dtype = w->out_proj.dt, .w_scale = w->out_proj.scale, .x = cs->y,
                               .y = cs->delta, .n_tok = nt,
                               .n_in = d.d_inner, .n_out = d.d, .x_stride = d.d_inner, .y_stride = d.d };
        EM_TRY(prefill_linear(cs, &out, st));
        EM_MARK(cs, EM_OP_OUT_PROJ);
        delta = cs->delta;
    }
    em_rmsnorm_args fa = { .x = cs->x, .delta = delta, .w = cm->g.norm_f.p, .y = cs->xn, .n_tok = nt, .d = d.d,
                           .eps = c->norm_eps };
    EM_TRY(em_cuda_rmsnorm(&fa, st));
    EM_MARK(cs, EM_OP_NORM);
    if (want_last) {
        em_linear_args h = { .w = cm->g.head.p, .w_dtype = cm->g.head.dt, .w_scale = cm->g.head.scale,
                             .x = cs->xn + (size_t)(nt - 1) * d.d,
                             .y = cs->logits, .n_tok = 1, .n_in = d.d, .n_out = d.vocab, .x_stride = d.d,
                             .y_stride = d.vocab };
        EM_TRY(em_cuda_linear(&h, st));
        EM_MARK(cs, EM_OP_HEAD);
        if (argmax) {
            EM_TRY(em_cuda_argmax(cs->logits, d.vocab, cs->next, st));
            EM_CUDA_CHECK(cudaMemcpyAsync(cs->tok, cs->next, sizeof(int32_t), cudaMemcpyDeviceToDevice, st));
            EM_MARK(cs, EM_OP_ARGMAX);
        }
    }
    return EM_OK;
}

// ---- session --------------------------------------------------------------------------------------------------

/* One decode step as the graph holds it: the layers, the greedy id, and the KV position moved on. */
static em_status queue_step(em_session *s) {
    em_cuda_session *cs = s->cuda;
    EM_TRY(cs->fused ? queue_fused_step(s) : queue_forward(s, 1, 1, 1, 0, cs->pos));
    if (s->model->n_attn) EM_TRY(em_cuda_attention_pos_add(cs->pos, 1, cs->stream));
    return EM_OK;
}

static em_status capture_step(em_session *s) {
    em_cuda_session *cs = s->cuda;
    cudaGraph_t g = NULL;
    EM_CUDA_CHECK(cudaStreamBeginCapture(cs->stream, cudaStreamCaptureModeThreadLocal));
    em_status st = queue_step(s);
    cudaError_t e = cudaStreamEndCapture(cs->stream, &g);
    if (st != EM_OK) { if (g) cudaGraphDestroy(g); return st; }
    if (e != cudaSuccess) return em_cuda_fail(e, "cudaStreamEndCapture", __FILE__, __LINE__);
    e = cudaGraphInstantiate(&cs->step, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) return em_cuda_fail(e, "cudaGraphInstantiate", __FILE__, __LINE__);
    /* upload now so that the first replay costs what every replay costs */
    EM_CUDA_CHECK(cudaGraphUpload(cs->step, cs->stream));
    return em_cuda_sync(cs->stream);
}

em_status em_cuda_session_create(em_session *s) {
    const em_model *m = s->model;
    const em_cuda_model *cm = m->cuda;
    EM_TRY(em_cuda_set_device(cm->device));
    em_cuda_session *cs = calloc(1, sizeof *cs);
    if (!cs) return em_fail(EM_ERR_OUT_OF_MEMORY, "out of memory");
    s->cuda = cs;
    em_dev_layout l;
    em_dev_layout_compute(m, s->T, s->max_context, &l);
    em_status st = em_cuda_malloc(&cs->block, l.total);
    if (st != EM_OK) { em_cuda_session_free(s); return st; }
    uint8_t *b = cs->block;
    cs->block_bytes = l.total;
    cs->state_bytes = l.state_bytes;
    cs->conv_state = (float *)(b + l.conv);
    cs->ssm_state = (float *)(b + l.ssm);
    cs->x = (float *)(b + l.x);
    cs->xn = (float *)(b + l.xn);
    cs->proj = (float *)(b + l.proj);
    cs->xbc = (float *)(b + l.xbc);
    cs->y = (float *)(b + l.y);
    cs->delta = (float *)(b + l.delta);
    cs->sumsq = (float *)(b + l.sumsq);
    cs->pos = (uint32_t *)(b + l.pos);
    cs->kv = l.kv_bytes ? (uint16_t *)(b + l.kv) : NULL;
    cs->qkv = m->n_attn ? (float *)(b + l.qkv) : NULL;
    cs->att = m->n_attn ? (float *)(b + l.att) : NULL;
    cs->ff = m->n_mlp ? (float *)(b + l.ff) : NULL;
    cs->attn_ws = l.attn_ws_bytes ? b + l.attn_ws : NULL;
    cs->attn_ws_bytes = l.attn_ws_bytes;
    cs->gemm_ws = l.gemm_ws_bytes ? b + l.gemm_ws : NULL;
    cs->gemm_ws_bytes = l.gemm_ws_bytes;
    cs->gemm_i8 = l.gemm_i8;
    cs->ssd_ws = l.ssd_ws_bytes ? b + l.ssd_ws : NULL;
    cs->ssd_ws_bytes = l.ssd_ws_bytes;
    if (cs->gemm_ws && (st = em_cuda_gemm_create(&cs->gemm)) != EM_OK) goto fail;
    cs->logits = (float *)(b + l.logits);
    cs->tok = (int32_t *)(b + l.tok);
    cs->next = (int32_t *)(b + l.next);
    cudaError_t e = cudaMallocHost((void **)&cs->pinned, 4 * sizeof(int32_t)); /* token, greedy id, position */
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&cs->stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) { st = em_cuda_fail(e, "cudaMallocHost/cudaStreamCreate", __FILE__, __LINE__); goto fail; }
    if ((st = em_cuda_session_reset(s)) != EM_OK) goto fail;
    cs->fused = pick_step_mode(s);
    cs->aux_fused = cs->fused && s->model->n_attn + s->model->n_mlp > 0 && pick_aux_fused(s);
    em_log(EM_LOG_INFO, "CUDA decode step: %s%s", cs->fused == 2 ? "fused, programmatic dependent launch"
                                                   : cs->fused == 1 ? "fused" : "unfused (six kernels a layer)",
           cs->aux_fused ? "; attention / MLP layers fused" : "");
    /* The capture queues nothing (it records); the state stays zero until the first replay. */
    if ((st = capture_step(s)) != EM_OK) goto fail;
    /* cuBLASLt's heuristic for the planned chunk's shapes now, not in the first prefill */
    if (cs->gemm) {
        const em_dims d = s->dim;
        const em_layer *L0 = &cm->layers[0];
        for (uint32_t i = 0; i < m->cfg.n_layer; i++)
            if (cm->layers[i].kind == EM_LAYER_MAMBA2) { L0 = &cm->layers[i]; break; }
        em_linear_args in = { .w = L0->w.m2.in_proj.p, .w_dtype = L0->w.m2.in_proj.dt,
                              .w_scale = L0->w.m2.in_proj.scale, .x = cs->xn, .y = cs->proj,
                              .n_tok = s->T, .n_in = d.d, .n_out = d.d_in_proj, .x_stride = d.d, .y_stride = d.d_in_proj };
        em_linear_args out = { .w = L0->w.m2.out_proj.p, .w_dtype = L0->w.m2.out_proj.dt,
                               .w_scale = L0->w.m2.out_proj.scale, .x = cs->y, .y = cs->delta,
                               .n_tok = s->T, .n_in = d.d_inner, .n_out = d.d, .x_stride = d.d_inner, .y_stride = d.d };
        if (gemm_takes(cs, &in) && (st = em_cuda_gemm_prepare(cs->gemm, &in, cs->gemm_ws, cs->gemm_ws_bytes)) != EM_OK)
            goto fail;
        if (gemm_takes(cs, &out) && (st = em_cuda_gemm_prepare(cs->gemm, &out, cs->gemm_ws, cs->gemm_ws_bytes)) != EM_OK)
            goto fail;
    }
    return EM_OK;
fail:
    em_cuda_session_free(s);
    return st;
}

void em_cuda_session_free(em_session *s) {
    em_cuda_session *cs = s ? s->cuda : NULL;
    if (!cs) return;
    if (cs->stream) cudaStreamSynchronize(cs->stream);
    if (cs->step) cudaGraphExecDestroy(cs->step);
    if (cs->stream) cudaStreamDestroy(cs->stream);
    if (cs->pinned) cudaFreeHost(cs->pinned);
    em_cuda_gemm_destroy(cs->gemm);
    em_cuda_free(cs->block);
    free(cs);
    s->cuda = NULL;
}

em_status em_cuda_session_reset(em_session *s) {
    em_cuda_session *cs = s->cuda;
    cs->next_on_host = 0;
    EM_CUDA_CHECK(cudaMemsetAsync(cs->block, 0, cs->state_bytes, cs->stream));
    return em_cuda_sync(cs->stream);
}

em_status em_cuda_session_prefill(em_session *s, const int32_t *tok, size_t n, em_logits_mode mode, float *logits) {
    em_cuda_session *cs = s->cuda;
    const uint32_t V = s->dim.vocab;
    for (size_t at = 0; at < n; at += s->T) {
        uint32_t nt = (uint32_t)(n - at < s->T ? n - at : s->T);
        int last = at + nt == n;
        EM_CUDA_CHECK(cudaMemcpyAsync(cs->tok, tok + at, sizeof(int32_t) * nt, cudaMemcpyHostToDevice, cs->stream));
        EM_TRY(queue_forward(s, nt, last && mode == EM_LOGITS_LAST, last && mode == EM_LOGITS_LAST,
                             (uint32_t)(s->n_past + at), NULL));
        if (mode == EM_LOGITS_ALL) { /* the head over every row, one row at a time, straight to the caller */
            const em_cuda_model *cm = s->model->cuda;
            for (uint32_t r = 0; r < nt; r++) {
                em_linear_args h = { .w = cm->g.head.p, .w_dtype = cm->g.head.dt, .w_scale = cm->g.head.scale,
                                     .x = cs->xn + (size_t)r * s->dim.d,
                                     .y = cs->logits, .n_tok = 1, .n_in = s->dim.d, .n_out = V, .x_stride = s->dim.d,
                                     .y_stride = V };
                EM_TRY(em_cuda_linear(&h, cs->stream));
                EM_CUDA_CHECK(cudaMemcpyAsync(logits + (at + r) * V, cs->logits, sizeof(float) * V,
                                              cudaMemcpyDeviceToHost, cs->stream));
            }
            if (last) { /* the last row stays in cs->logits: argmax for em_session_argmax */
                EM_TRY(em_cuda_argmax(cs->logits, V, cs->next, cs->stream));
                EM_CUDA_CHECK(cudaMemcpyAsync(cs->tok, cs->next, sizeof(int32_t), cudaMemcpyDeviceToDevice, cs->stream));
            }
        }
    }
    if (mode == EM_LOGITS_LAST && logits)
        EM_CUDA_CHECK(cudaMemcpyAsync(logits, cs->logits, sizeof(float) * V, cudaMemcpyDeviceToHost, cs->stream));
    if (s->model->n_attn) { /* the captured step attends at the device word: where this prefill leaves the cache */
        cs->pinned[2] = (int32_t)(s->n_past + n);
        EM_CUDA_CHECK(cudaMemcpyAsync(cs->pos, &cs->pinned[2], sizeof(uint32_t), cudaMemcpyHostToDevice, cs->stream));
    }
    cs->next_on_host = 0;
    if (mode != EM_LOGITS_NONE)
        EM_CUDA_CHECK(cudaMemcpyAsync(&cs->pinned[1], cs->next, sizeof(int32_t), cudaMemcpyDeviceToHost, cs->stream));
    EM_TRY(em_cuda_sync(cs->stream));
    cs->next_on_host = mode != EM_LOGITS_NONE;
    return EM_OK;
}

em_status em_cuda_session_decode(em_session *s, int32_t tok, float *logits) {
    em_cuda_session *cs = s->cuda;
    cs->pinned[0] = tok;
    EM_CUDA_CHECK(cudaMemcpyAsync(cs->tok, cs->pinned, sizeof(int32_t), cudaMemcpyHostToDevice, cs->stream));
    EM_CUDA_CHECK(cudaGraphLaunch(cs->step, cs->stream));
    if (logits)
        EM_CUDA_CHECK(cudaMemcpyAsync(logits, cs->logits, sizeof(float) * s->dim.vocab, cudaMemcpyDeviceToHost,
                                      cs->stream));
    cs->next_on_host = 0;
    EM_CUDA_CHECK(cudaMemcpyAsync(&cs->pinned[1], cs->next, sizeof(int32_t), cudaMemcpyDeviceToHost, cs->stream));
    EM_TRY(em_cuda_sync(cs->stream));
    cs->next_on_host = 1;
    return EM_OK;
}

em_status em_cuda_session_profile(em_session *s, int steps, double ms[EM_OP_COUNT], double *graph_ms) {
    em_cuda_session *cs = s->cuda;
    const int per_step = 4 + 6 * (int)s->model->cfg.n_layer + 4;
    /* every step below moves the state on (and, for hybrids, the KV position: keep it inside the cache) */
    if (s->model->n_attn && s->n_past + 2 * (uint64_t)steps + 1 > s->max_context)
        return em_fail(EM_ERR_CONTEXT_FULL, "profile: %d steps past position %llu do not fit max_context %u", 2 * steps,
                       (unsigned long long)s->n_past, s->max_context);
    em_status st = EM_OK;
    cudaEvent_t start = NULL, stop = NULL;
    for (int k = 0; k < EM_OP_COUNT; k++) ms[k] = 0;
    cs->next_on_host = 0; /* the steps below move the state on without bringing the id over */
    cs->prof_cap = per_step;
    cs->prof_ev = calloc((size_t)per_step, sizeof *cs->prof_ev);
    cs->prof_op = calloc((size_t)per_step, 1);
    if (!cs->prof_ev || !cs->prof_op) { st = em_fail(EM_ERR_OUT_OF_MEMORY, "profile: out of memory"); goto done; }
    for (int i = 0; i < per_step; i++)
        if (cudaEventCreate(&cs->prof_ev[i]) != cudaSuccess) { st = em_fail(EM_ERR_DEVICE, "profile: cudaEventCreate"); goto done; }
    if (cudaEventCreate(&start) != cudaSuccess || cudaEventCreate(&stop) != cudaSuccess) {
        st = em_fail(EM_ERR_DEVICE, "profile: cudaEventCreate");
        goto done;
    }
    for (int k = 0; k < steps && st == EM_OK; k++) {
        cs->prof_n = 0;
        cudaEventRecord(start, cs->stream);
        if ((st = queue_step(s)) != EM_OK ||
            (st = em_cuda_sync(cs->stream)) != EM_OK)
            break;
        cudaEvent_t prev = start;
        for (int i = 0; i < cs->prof_n; i++) {
            float t = 0;
            cudaEventElapsedTime(&t, prev, cs->prof_ev[i]);
            ms[cs->prof_op[i]] += t / steps;
            prev = cs->prof_ev[i];
        }
    }
    if (st == EM_OK) { /* the graph, for comparison: replays back to back */
        cudaEventRecord(start, cs->stream);
        for (int k = 0; k < steps; k++) cudaGraphLaunch(cs->step, cs->stream);
        cudaEventRecord(stop, cs->stream);
        if ((st = em_cuda_sync(cs->stream)) == EM_OK) {
            float t = 0;
            cudaEventElapsedTime(&t, start, stop);
            *graph_ms = t / steps;
        }
    }
done:
    for (int i = 0; cs->prof_ev && i < per_step; i++)
        if (cs->prof_ev[i]) cudaEventDestroy(cs->prof_ev[i]);
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    free(cs->prof_ev);
    free(cs->prof_op);
    cs->prof_ev = NULL;
    cs->prof_op = NULL;
    cs->prof_n = cs->prof_cap = 0;
    return st;
}

const char *em_cuda_session_step_name(const struct em_session *s) {
    const em_cuda_session *cs = s ? s->cuda : NULL;
    if (!cs) return "cpu";
    return cs->fused == 2 ? "fused+pdl" : cs->fused == 1 ? "fused" : "unfused";
}

/* ---- snapshots ---------------------------------------------------------------------------------------------- */

#define EM_SNAP_STAGE 8192u /* bf16 <-> f32 staging, elements (on the stack: 16 KB + 32 KB) */

/* Device address of `part` at byte offset off (f32 parts) or bf16 element offset (K, V). */
static void *state_addr(em_session *s, int part, uint32_t layer, uint64_t off) {
    em_cuda_session *cs = s->cuda;
    const em_blob_config *c = &s->model->cfg;
    const size_t layer_kv = (size_t)s->max_context * c->attn_n_kv_head * c->attn_head_dim;
    switch (part) {
    case EM_CUDA_PART_CONV: return (uint8_t *)cs->conv_state + off;
    case EM_CUDA_PART_SSM: return (uint8_t *)cs->ssm_state + off;
    case EM_CUDA_PART_K: return cs->kv + (size_t)layer * 2 * layer_kv + off;
    case EM_CUDA_PART_V: return cs->kv + (size_t)layer * 2 * layer_kv + layer_kv + off;
    default: return (uint8_t *)cs->logits + off;
    }
}

em_status em_cuda_session_state_get(em_session *s, int part, uint32_t layer, uint64_t off, void *dst, uint64_t n) {
    if (part != EM_CUDA_PART_K && part != EM_CUDA_PART_V) {
        EM_CUDA_CHECK(cudaMemcpy(dst, state_addr(s, part, layer, off), n, cudaMemcpyDeviceToHost));
        return EM_OK;
    }
    uint16_t stage[EM_SNAP_STAGE];
    float *out = dst;
    for (uint64_t i = 0, e = off / sizeof(float); i < n / sizeof(float);) { /* f32 bytes -> bf16 elements */
        const uint64_t k = n / sizeof(float) - i < EM_SNAP_STAGE ? n / sizeof(float) - i : EM_SNAP_STAGE;
        EM_CUDA_CHECK(cudaMemcpy(stage, state_addr(s, part, layer, e + i), k * 2, cudaMemcpyDeviceToHost));
        for (uint64_t j = 0; j < k; j++) out[i + j] = em_bf16_to_f32(stage[j]); /* exact */
        i += k;
    }
    return EM_OK;
}

em_status em_cuda_session_state_put(em_session *s, int part, uint32_t layer, uint64_t off, const void *src,
                                    uint64_t n) {
    if (part != EM_CUDA_PART_K && part != EM_CUDA_PART_V) {
        EM_CUDA_CHECK(cudaMemcpy(state_addr(s, part, layer, off), src, n, cudaMemcpyHostToDevice));
        return EM_OK;
    }
    uint16_t stage[EM_SNAP_STAGE];
    const float *in = src;
    for (uint64_t i = 0, e = off / sizeof(float); i < n / sizeof(float);) {
        const uint64_t k = n / sizeof(float) - i < EM_SNAP_STAGE ? n / sizeof(float) - i : EM_SNAP_STAGE;
        /* a CUDA snapshot holds bf16 values widened: rounding them back is exact; a CPU one's f32 rows are
         * rounded as the device rounds every new row */
        for (uint64_t j = 0; j < k; j++) stage[j] = em_f32_to_bf16(in[i + j]);
        EM_CUDA_CHECK(cudaMemcpy(state_addr(s, part, layer, e + i), stage, k * 2, cudaMemcpyHostToDevice));
        i += k;
    }
    return EM_OK;
}

em_status em_cuda_session_restored(em_session *s, int have_logits) {
    em_cuda_session *cs = s->cuda;
    cs->pinned[2] = (int32_t)s->n_past;
    EM_CUDA_CHECK(cudaMemcpyAsync(cs->pos, &cs->pinned[2], sizeof(uint32_t), cudaMemcpyHostToDevice, cs->stream));
    cs->next_on_host = 0;
    if (have_logits) {
        EM_TRY(em_cuda_argmax(cs->logits, s->dim.vocab, cs->next, cs->stream));
        EM_CUDA_CHECK(cudaMemcpyAsync(cs->tok, cs->next, sizeof(int32_t), cudaMemcpyDeviceToDevice, cs->stream));
    }
    return em_cuda_sync(cs->stream);
}

em_status em_cuda_session_logits(em_session *s, float *dst) {
    em_cuda_session *cs = s->cuda;
    EM_CUDA_CHECK(cudaMemcpyAsync(dst, cs->logits, sizeof(float) * s->dim.vocab, cudaMemcpyDeviceToHost, cs->stream));
    return em_cuda_sync(cs->stream);
}

em_status em_cuda_session_argmax(em_session *s, int32_t *tok) {
    em_cuda_session *cs = s->cuda;
    if (cs->next_on_host) { /* the usual case: decode/prefill already brought it over */
        *tok = cs->pinned[1];
        return EM_OK;
    }
    EM_CUDA_CHECK(cudaMemcpyAsync(&cs->pinned[1], cs->next, sizeof(int32_t), cudaMemcpyDeviceToHost, cs->stream));
    EM_TRY(em_cuda_sync(cs->stream));
    *tok = cs->pinned[1];
    return EM_OK;
}

#endif /* EM_HAVE_CUDA */
