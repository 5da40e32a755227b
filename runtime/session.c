/*
 * session.c — planning, the session arena, and the executor of the layer pattern on the CPU backend.
 *
 * Memory (principle 1 of DESIGN.md): em_plan computes every region from the model dims and the options;
 * em_session_create allocates them as ONE block (or carves the caller's buffer) and nothing is allocated
 * after that. The block, 64-byte aligned regions, in order:
 *
 *   +----------------+-----------------------------+----------------------------+------------------------+
 *   | em_session     | conv state [n_m2, C, K-1]   | ssm state [n_m2, H, P, N]  | workspace (below)      |
 *   +----------------+-----------------------------+----------------------------+------------------------+
 *   workspace, T = max_prefill_chunk rows:  x [T, d] residual | xn [T, d] normed | proj [T, d_in_proj] |
 *   xbc [T, conv_dim] conv out | y [T, d_inner] | delta [T, d] layer out | logits [vocab] last position
 *   hybrid (0 bytes without such layers): between state and workspace the KV cache, K [n_attn, ctx, Hkv, hd]
 *   then V (ctx = max_context); after the workspace q [T, Hq*hd] | k, v [T, Hkv*hd] | att [T, Hq*hd] | ff [T, d_ff]
 *   attention layer: q, k, v = xn wq^T, wk^T, wv^T; att = causal GQA softmax over KV rows [0, pos+t]; delta = att wo^T
 *   MLP layer:       ff = act(xn up^T); delta = ff down^T
 *
 * The data path of one chunk of nt <= T tokens (decode is nt = 1 through the same code):
 *   x = embd[tok]                                                          x     [nt, d]
 *   per Mamba-2 layer:  x += delta; xn = rmsnorm(x) * norm                 (fused, delta of previous layer)
 *                       proj = xn in_proj^T            -> z | xBC | dt     proj  [nt, 2*d_inner + 2GN + H]
 *                       xbc = silu(conv1d(xBC, state) + b)                 xbc   [nt, d_inner + 2GN]
 *                       y = ssm(x=xbc[:, :d_inner], B, C, dt, state)       y     [nt, H, P]
 *                       y = gnorm * groupRMS(y * silu(z))
 *                       delta = y out_proj^T                               delta [nt, d]
 *   x += delta; xn = rmsnorm(x) * norm_f; logits = xn head^T (last row, or every row into the caller's buffer)
 */
#include <stdlib.h>
#include <string.h>

#include "cuda_exec.h"
#include "dev_plan.h"
#include "model.h"
#include "ops.h"
#include "session.h"
#include "util.h"

#define EM_CPU_DEFAULT_CHUNK 64u
#define EM_CUDA_DEFAULT_CHUNK 512u
#define EM_MAX_CHUNK 65536u
#define EM_ALIGN 64u

EM_API em_session_options em_session_default_options(void) {
    em_session_options o;
    memset(&o, 0, sizeof o);
    o.max_context = 4096;
    o.max_batch = 1;
    o.max_prefill_chunk = 0; /* backend default */
    return o;
}

// ---- layout: the one function that both plans and carves ----------------------------------------------

typedef struct em_layout_plan {
    size_t off_conv, off_ssm, off_x, off_xn, off_proj, off_xbc, off_y, off_delta, off_logits, total;
    size_t state_bytes, workspace_bytes;
    size_t off_kc, off_vc, off_q, off_k, off_v, off_att, off_ff, kv_bytes; /* hybrid layers */
    size_t off_sampler; /* generation: the sampler's rows (sampler.c) */
} em_layout_plan;

static size_t take(size_t *cursor, size_t bytes) {
    size_t at = (*cursor + EM_ALIGN - 1) & ~(size_t)(EM_ALIGN - 1);
    *cursor = at + bytes;
    return at;
}

static void layout(const em_model *m, uint32_t T, uint32_t ctx, em_layout_plan *p) {
    em_dims d = em_model_dims(m);
    size_t f = sizeof(float), c = 0;
    take(&c, sizeof(struct em_session));
    size_t s0 = c;
    p->off_conv = take(&c, f * m->n_mamba2 * d.conv_dim * (d.K - 1));
    p->off_ssm = take(&c, f * m->n_mamba2 * d.H * d.P * d.N);
    p->state_bytes = c - s0;
    const em_blob_config *cf = &m->cfg;
    const size_t dq = m->n_attn ? (size_t)cf->attn_n_head * cf->attn_head_dim : 0;
    const size_t dkv = m->n_attn ? (size_t)cf->attn_n_kv_head * cf->attn_head_dim : 0;
    const size_t dff = m->n_mlp ? cf->d_ff : 0;
    size_t k0 = c;
    p->off_kc = take(&c, f * m->n_attn * ctx * dkv);
    p->off_vc = take(&c, f * m->n_attn * ctx * dkv);
    p->kv_bytes = c - k0;
    size_t w0 = c;
    p->off_x = take(&c, f * T * d.d);
    p->off_xn = take(&c, f * T * d.d);
    p->off_proj = take(&c, f * T * d.d_in_proj);
    p->off_xbc = take(&c, f * T * d.conv_dim);
    p->off_y = take(&c, f * T * d.d_inner);
    p->off_delta = take(&c, f * T * d.d);
    p->off_logits = take(&c, f * d.vocab);
    p->off_q = take(&c, f * T * dq);
    p->off_k = take(&c, f * T * dkv);
    p->off_v = take(&c, f * T * dkv);
    p->off_att = take(&c, f * T * dq);
    p->off_ff = take(&c, f * T * dff);
    p->off_sampler = take(&c, em_sampler_region_bytes(d.vocab));
    p->workspace_bytes = c - w0;
    p->total = (c + EM_ALIGN - 1) & ~(size_t)(EM_ALIGN - 1);
}

static em_status check_options(const em_model *m, const em_session_options *o, uint32_t *T) {
    if (o->max_batch != 1)
        return em_fail(o->max_batch == 0 ? EM_ERR_INVALID_ARG : EM_ERR_UNSUPPORTED,
                       "session options: max_batch %u (only 1 is supported in this version)", o->max_batch);
    if (o->max_prefill_chunk > EM_MAX_CHUNK)
        return em_fail(EM_ERR_INVALID_ARG, "session options: max_prefill_chunk %u is over %u", o->max_prefill_chunk,
                       EM_MAX_CHUNK);
    if (o->max_context == 0 || o->max_context > EM_MAX_CONTEXT_OPTION)
        return em_fail(EM_ERR_INVALID_ARG, "session options: max_context %u is out of range (1..%u)", o->max_context,
                       EM_MAX_CONTEXT_OPTION);
    *T = o->max_prefill_chunk ? o->max_prefill_chunk
                              : (m->backend == EM_BACKEND_CUDA ? EM_CUDA_DEFAULT_CHUNK : EM_CPU_DEFAULT_CHUNK);
    return EM_OK;
}

/* The session's bytes at max_context ctx (prefill chunk T) on the model's backend, less what does not depend on
 * the layout (the CUDA libraries' resident code: the caller adds it back). */
static size_t session_bytes_at(const em_model *m, uint32_t T, uint32_t ctx) {
    if (m->backend == EM_BACKEND_CUDA) {
        em_dev_layout l;
        em_dev_layout_compute(m, T, ctx, &l);
        return l.total;
    }
    em_layout_plan p;
    layout(m, T, ctx, &p);
    return p.total;
}

/* em_plan_report.max_context_fit: fixed + the session's bytes at a context (em_context_fit's need) */
typedef struct fit_need { const em_model *m; uint32_t T; size_t fixed; } fit_need;
static double fit_need_at(const void *user, uint32_t ctx) {
    const fit_need *f = user;
    return (double)(f->fixed + session_bytes_at(f->m, f->T, ctx));
}

static uint32_t max_context_fit(const em_model *m, uint32_t T, size_t fixed, size_t available) {
    const fit_need f = { m, T, fixed };
    return available ? em_context_fit(fit_need_at, &f, EM_MAX_CONTEXT_OPTION, (double)available) : 0;
}

EM_API em_status em_plan(const em_model *m, const em_session_options *opts, em_plan_report *r) {
    if (!m || !r) return em_fail(EM_ERR_INVALID_ARG, "em_plan: model and report must not be NULL");
    em_session_options o = opts ? *opts : em_session_default_options();
    uint32_t T = 0;
    EM_TRY(check_options(m, &o, &T));
    em_layout_plan p;
    layout(m, T, o.max_context, &p);
    memset(r, 0, sizeof *r);
    for (uint32_t i = 0; i < m->blob.n_tensors; i++) r->weight_bytes += m->blob.tensors[i].size;
    if (m->backend == EM_BACKEND_CUDA) { /* the session lives on the device: its own layout (cuda_exec.c) */
        EM_TRY(em_cuda_plan(m, T, o.max_context, r));
        if (o.memory_limit && o.memory_limit < r->available_bytes) r->available_bytes = o.memory_limit;
        r->max_prefill_chunk = T;
        r->backend = m->backend;
        const size_t fixed = r->session_bytes - session_bytes_at(m, T, o.max_context); /* the libraries' code */
        r->max_context_fit = max_context_fit(m, T, fixed, r->available_bytes);
        if (r->session_bytes > r->available_bytes)
            return em_fail(EM_ERR_PLAN_TOO_LARGE, "em_plan: the session needs %zu bytes of device memory, %zu are free",
                           r->session_bytes, r->available_bytes);
        return EM_OK;
    }
    r->state_bytes = p.state_bytes;
    r->kv_bytes = p.kv_bytes; /* f32 K and V of the attention layers, max_context positions */
    r->workspace_bytes = p.workspace_bytes;
    r->library_bytes = 0;
    r->session_bytes = p.total;
    r->available_bytes = em_host_mem_available();
    if (o.memory_limit && (!r->available_bytes || o.memory_limit < r->available_bytes))
        r->available_bytes = o.memory_limit; /* the caller's budget for this session */
    r->max_prefill_chunk = T;
    r->backend = m->backend;
    r->max_context_fit = max_context_fit(m, T, 0, r->available_bytes);
    if (r->available_bytes && r->session_bytes > r->available_bytes)
        return em_fail(EM_ERR_PLAN_TOO_LARGE, "em_plan: the session needs %zu bytes, %zu are available",
                       r->session_bytes, r->available_bytes);
    return EM_OK;
}

// ---- create / free ----------------------------------------------------------------------------------------

static em_status create_in(em_model *m, const em_session_options *o, void *block, size_t size, int owns,
                           em_session **out) {
    uint32_t T = 0;
    EM_TRY(check_options(m, o, &T));
    em_layout_plan p;
    layout(m, T, o->max_context, &p);
    if (size < p.total)
        return em_fail(EM_ERR_BUFFER_TOO_SMALL, "session buffer: %zu bytes given, %zu needed", size, p.total);
    uint8_t *b = block;
    memset(b, 0, p.total); /* zero state: a fresh sequence */
    em_session *s = (em_session *)b;
    s->model = m;
    s->dim = em_model_dims(m);
    s->T = T;
    s->conv_state = (float *)(b + p.off_conv);
    s->ssm_state = (float *)(b + p.off_ssm);
    s->x = (float *)(b + p.off_x);
    s->xn = (float *)(b + p.off_xn);
    s->proj = (float *)(b + p.off_proj);
    s->xbc = (float *)(b + p.off_xbc);
    s->y = (float *)(b + p.off_y);
    s->delta = (float *)(b + p.off_delta);
    s->logits = (float *)(b + p.off_logits);
    s->k_cache = (float *)(b + p.off_kc);
    s->v_cache = (float *)(b + p.off_vc);
    s->max_context = o->max_context;
    s->q = (float *)(b + p.off_q);
    s->k = (float *)(b + p.off_k);
    s->v = (float *)(b + p.off_v);
    s->att = (float *)(b + p.off_att);
    s->ff = (float *)(b + p.off_ff);
    em_sampler_bind(s, b + p.off_sampler);
    s->owns_block = owns;
    s->block_size = p.total;
    atomic_fetch_add(&m->n_sessions, 1);
    *out = s;
    return EM_OK;
}

EM_API em_status em_session_create(em_model *m, const em_session_options *opts, em_session **out) {
    if (out) *out = NULL;
    if (!m || !out) return em_fail(EM_ERR_INVALID_ARG, "em_session_create: model and out must not be NULL");
    em_session_options o = opts ? *opts : em_session_default_options();
    em_plan_report r;
    EM_TRY(em_plan(m, &o, &r));
    if (m->backend == EM_BACKEND_CUDA) {
        /* host side: the struct, one logits row and the sampler's rows (the sampler's CPU twin runs on the
         * row the device sends when a caller asks for more than greedy); state and workspace on the device */
        em_dims d = em_model_dims(m);
        size_t c = 0, off_logits, off_sampler;
        take(&c, sizeof(em_session));
        off_logits = take(&c, sizeof(float) * d.vocab);
        off_sampler = take(&c, em_sampler_region_bytes(d.vocab));
        uint8_t *hb = NULL;
        if (posix_memalign((void **)&hb, 64, c) != 0 || !hb)
            return em_fail(EM_ERR_OUT_OF_MEMORY, "em_session_create: cannot allocate %zu host bytes", c);
        memset(hb, 0, c);
        em_session *s = (em_session *)hb;
        s->model = m;
        s->dim = d;
        s->T = r.max_prefill_chunk;
        s->max_context = o.max_context; /* the device KV cache's rows (hybrids) */
        s->owns_block = 1;
        s->logits = (float *)(hb + off_logits);
        em_sampler_bind(s, hb + off_sampler);
        em_status st = em_cuda_session_create(s);
        if (st != EM_OK) { free(s); return st; }
        atomic_fetch_add(&m->n_sessions, 1);
        *out = s;
        em_clear_error();
        return EM_OK;
    }
    void *block = NULL;
    if (posix_memalign(&block, 4096, r.session_bytes) != 0 || !block)
        return em_fail(EM_ERR_OUT_OF_MEMORY, "em_session_create: cannot allocate %zu bytes", r.session_bytes);
    em_status s = create_in(m, &o, block, r.session_bytes, 1, out);
    if (s != EM_OK) free(block);
    else em_clear_error();
    return s;
}

EM_API em_status em_session_create_static(em_model *m, const em_session_options *opts, void *buffer, size_t size,
                                          em_session **out) {
    if (out) *out = NULL;
    if (!m || !buffer || !out)
        return em_fail(EM_ERR_INVALID_ARG, "em_session_create_static: model, buffer and out must not be NULL");
    if ((uintptr_t)buffer % _Alignof(max_align_t))
        return em_fail(EM_ERR_INVALID_ARG, "em_session_create_static: buffer must be aligned to %zu bytes",
                       _Alignof(max_align_t));
    if (m->backend != EM_BACKEND_CPU)
        return em_fail(EM_ERR_UNSUPPORTED, "em_session_create_static: only the CPU backend carves caller memory");
    em_session_options o = opts ? *opts : em_session_default_options();
    return create_in(m, &o, buffer, size, 0, out);
}

EM_API void em_session_free(em_session *s) {
    if (!s) return;
    atomic_fetch_sub(&s->model->n_sessions, 1);
    em_gen_session_free(s);
    em_cuda_session_free(s);
    if (s->owns_block) free(s);
}

EM_API em_status em_session_reset(em_session *s) {
    if (!s) return em_fail(EM_ERR_INVALID_ARG, "em_session_reset: NULL session");
    em_gen_session_reset(s);
    s->n_past = 0;
    s->have_logits = 0;
    if (s->cuda) return em_cuda_session_reset(s);
    em_dims d = s->dim;
    memset(s->conv_state, 0, sizeof(float) * s->model->n_mamba2 * d.conv_dim * (d.K - 1));
    memset(s->ssm_state, 0, sizeof(float) * s->model->n_mamba2 * d.H * d.P * d.N);
    s->n_past = 0;
    s->have_logits = 0;
    return EM_OK;
}

// ---- the executor ---------------------------------------------------------------------------------------

static void linear(const em_wref *w, const float *x, float *y, uint32_t nt, uint32_t n_in, uint32_t n_out,
                   uint32_t x_stride, uint32_t y_stride) {
    em_linear_args a = { .w = w->p, .w_dtype = w->dt, .w_scale = w->scale, .x = x, .y = y, .n_tok = nt, .n_in = n_in, .n_out = n_out,
                         .x_stride = x_stride, .y_stride = y_stride };
    em_ref_linear(&a);
}

/* One Mamba-2 layer over nt tokens: reads s->xn, writes s->delta. */
static void mamba2_layer(em_session *s, const em_layer *L, uint32_t nt) {
    const em_model *m = s->model;
    const em_blob_config *c = &m->cfg;
    const em_mamba2_w *w = &L->w.m2;
    em_dims d = s->dim;
    const uint32_t GN = d.G * d.N;
    float *conv_state = s->conv_state + (size_t)L->slot * d.conv_dim * (d.K - 1);
    float *ssm_state = s->ssm_state + (size_t)L->slot * d.H * d.P * d.N;

    /* proj [nt, d_in_proj] = z [d_inner] | xBC [conv_dim] | dt [H] */
    linear(&w->in_proj, s->xn, s->proj, nt, d.d, d.d_in_proj, d.d, d.d_in_proj);

    em_conv1d_args ca = { .x = s->proj + d.d_inner, .state = conv_state, .w = w->conv_w.p,
                          .b = w->conv_b.p, .y = s->xbc, .n_tok = nt, .C = d.conv_dim, .K = d.K,
                          .x_stride = d.d_in_proj, .y_stride = d.conv_dim, .silu = EM_SILU_ON };
    em_ref_conv1d(&ca);

    em_ssm_args sa = { .x = s->xbc, .dt = s->proj + d.d_inner + d.conv_dim, .B = s->xbc + d.d_inner,
                       .C = s->xbc + d.d_inner + GN, .A = w->A.p, .D = w->D.p, .dt_bias = w->dt_bias.p,
                       .state = ssm_state, .y = s->y, .n_tok = nt, .H = d.H, .P = d.P, .N = d.N, .G = d.G,
                       .x_stride = d.conv_dim, .dt_stride = d.d_in_proj, .bc_stride = d.conv_dim,
                       .y_stride = d.d_inner, .dt_min = c->dt_limit_min, .dt_max = c->dt_limit_max };
    em_ref_ssm(&sa);

    em_gated_norm_args ga = { .y = s->y, .z = s->proj, .w = w->gnorm.p, .out = s->y, .n_tok = nt, .d = d.d_inner,
                              .group = c->gated_norm_group, .y_stride = d.d_inner, .z_stride = d.d_in_proj,
                              .out_stride = d.d_inner, .eps = c->norm_eps };
    em_ref_gated_norm(&ga);

    linear(&w->out_proj, s->y, s->delta, nt, d.d_inner, d.d, d.d_inner, d.d);
}

/* One attention layer over nt tokens at positions [n_past, n_past + nt): reads s->xn, appends to the layer's
 * KV cache, writes s->delta. */
static void attn_layer(em_session *s, const em_layer *L, uint32_t nt) {
    const em_model *m = s->model;
    const em_blob_config *c = &m->cfg;
    const em_attn_w *w = &L->w.attn;
    const uint32_t d = s->dim.d, Hq = c->attn_n_head, Hkv = c->attn_n_kv_head, hd = c->attn_head_dim;
    const uint32_t dq = Hq * hd, dkv = Hkv * hd;
    const size_t layer_kv = (size_t)s->max_context * dkv; /* one layer's K (or V) cache */

    linear(&w->wq, s->xn, s->q, nt, d, dq, d, dq); /* q [nt, Hq, hd] */
    linear(&w->wk, s->xn, s->k, nt, d, dkv, d, dkv); /* k [nt, Hkv, hd] */
    linear(&w->wv, s->xn, s->v, nt, d, dkv, d, dkv); /* v [nt, Hkv, hd] */
    em_attn_args aa = { .q = s->q, .k = s->k, .v = s->v, .k_cache = s->k_cache + L->slot * layer_kv,
                        .v_cache = s->v_cache + L->slot * layer_kv, .out = s->att, .n_tok = nt, .n_head = Hq,
                        .n_kv_head = Hkv, .head_dim = hd, .pos = (uint32_t)s->n_past, .max_ctx = s->max_context,
                        .q_stride = dq, .kv_stride = dkv, .out_stride = dq,
                        /* int(head_dim * fraction), as model.c checked it (Megatron's rotary dim) */
                        .rope_dims = (uint32_t)(c->rope_fraction * (float)hd), .rope_base = c->rope_base,
                        .scale = (float)(1.0 / sqrt((double)hd)), /* HF head_dim**-0.5, rounded once */
                        .n_threads = m->n_threads };
    em_ref_attention(&aa);
    linear(&w->wo, s->att, s->delta, nt, dq, d, dq, d); /* delta [nt, d] */
}

/* One MLP layer over nt tokens: delta = down(act(up(xn))). */
static void mlp_layer(em_session *s, const em_layer *L, uint32_t nt) {
    const em_blob_config *c = &s->model->cfg;
    const em_mlp_w *w = &L->w.mlp;
    em_mlp_args ma = { .up = w->up.p, .up_dtype = w->up.dt, .down = w->down.p, .down_dtype = w->down.dt,
                       .up_scale = w->up.scale, .down_scale = w->down.scale,
                       .x = s->xn, .h = s->ff, .y = s->delta, .n_tok = nt, .d = s->dim.d, .d_ff = c->d_ff,
                       .act = c->mlp_act };
    em_ref_mlp(&ma);
}

/* Runs nt <= T tokens; logits per mode: LAST -> s->logits (+ copy), ALL -> out rows [nt, vocab]. */
static void forward_chunk(em_session *s, const int32_t *tok, uint32_t nt, int want_last, float *all_out) {
    const em_model *m = s->model;
    const em_blob_config *c = &m->cfg;
    em_dims d = s->dim;

    em_embed_args ea = { .table = m->g.embd.p, .dtype = m->g.embd.dt, .tok = tok, .out = s->x, .n_tok = nt,
                         .d = d.d };
    em_ref_embed(&ea);

    const float *delta = NULL; /* the previous layer's output, added into x by the next norm */
    for (uint32_t i = 0; i < c->n_layer; i++) {
        const em_layer *L = &m->layers[i];
        /* every layer kind's weights begin with its input norm (tensors.h), so w.m2.norm is each one's norm */
        em_rmsnorm_args na = { .x = s->x, .delta = delta, .w = L->w.m2.norm.p, .y = s->xn, .n_tok = nt, .d = d.d,
                               .eps = c->norm_eps };
        em_ref_rmsnorm(&na);
        switch (L->kind) {
        case EM_LAYER_MAMBA2: mamba2_layer(s, L, nt); break;
        case EM_LAYER_ATTN: attn_layer(s, L, nt); break;
        case EM_LAYER_MLP: mlp_layer(s, L, nt); break;
        default: EM_ASSERT(!"layer kind passed em_model_open's checks but has no executor");
        }
        delta = s->delta;
    }
    em_rmsnorm_args fa = { .x = s->x, .delta = delta, .w = m->g.norm_f.p, .y = s->xn, .n_tok = nt, .d = d.d,
                           .eps = c->norm_eps };
    em_ref_rmsnorm(&fa);

    if (all_out) linear(&m->g.head, s->xn, all_out, nt, d.d, d.vocab, d.d, d.vocab);
    if (want_last) {
        if (all_out) memcpy(s->logits, all_out + (size_t)(nt - 1) * d.vocab, sizeof(float) * d.vocab);
        else linear(&m->g.head, s->xn + (size_t)(nt - 1) * d.d, s->logits, 1, d.d, d.vocab, d.d, d.vocab);
        s->have_logits = 1;
    }
}

/* Attention layers: the planned KV cache must hold n more positions. Checked before any state changes, so a
 * refused call leaves the session as it was. Pure Mamba models have fixed state and no limit. */
static em_status check_context(const em_session *s, uint64_t n) {
    if (s->model->n_attn == 0 || s->n_past + n <= s->max_context) return EM_OK;
    return em_fail(EM_ERR_CONTEXT_FULL, "context full: %llu tokens in the session + %llu new would pass the "
                   "max_context %u planned for the KV cache (nothing was run; reset the session, or create it with "
                   "a larger em_session_options.max_context)", (unsigned long long)s->n_past, (unsigned long long)n,
                   s->max_context);
}

static em_status check_tokens(const em_session *s, const int32_t *tok, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (tok[i] < 0 || (uint32_t)tok[i] >= s->dim.vocab)
            return em_fail(EM_ERR_TOKEN_RANGE, "token %zu has id %d, outside [0, %u)", i, tok[i], s->dim.vocab);
    return EM_OK;
}

EM_API em_status em_session_prefill(em_session *s, const int32_t *tokens, size_t n, em_logits_mode mode,
                                    float *logits) {
    if (!s || !tokens || n == 0)
        return em_fail(EM_ERR_INVALID_ARG, "em_session_prefill: session and tokens must not be NULL, n_tokens >= 1");
    if (mode != EM_LOGITS_NONE && mode != EM_LOGITS_LAST && mode != EM_LOGITS_ALL)
        return em_fail(EM_ERR_INVALID_ARG, "em_session_prefill: logits mode %d is not one of NONE, LAST, ALL", (int)mode);
    if (mode == EM_LOGITS_ALL && !logits)
        return em_fail(EM_ERR_INVALID_ARG, "em_session_prefill: EM_LOGITS_ALL needs a [n_tokens, vocab] buffer");
    if (n > ((size_t)1 << 40)) return em_fail(EM_ERR_INVALID_ARG, "em_session_prefill: n_tokens %zu is absurd", n);
    EM_TRY(check_tokens(s, tokens, n)); /* before any state changes */
    EM_TRY(check_context(s, n));
    s->have_logits = 0;
    if (s->cuda) {
        EM_TRY(em_cuda_session_prefill(s, tokens, n, mode, logits));
        s->n_past += n;
        s->have_logits = mode != EM_LOGITS_NONE;
        em_clear_error();
        return EM_OK;
    }
    for (size_t at = 0; at < n; at += s->T) {
        uint32_t nt = (uint32_t)(n - at < s->T ? n - at : s->T);
        int last_chunk = at + nt == n;
        float *all = mode == EM_LOGITS_ALL ? logits + at * s->dim.vocab : NULL;
        forward_chunk(s, tokens + at, nt, last_chunk && mode != EM_LOGITS_NONE, all);
        s->n_past += nt; /* per chunk: the next chunk's attention starts at this position */
    }
    if (mode == EM_LOGITS_LAST && logits) memcpy(logits, s->logits, sizeof(float) * s->dim.vocab);
    em_clear_error();
    return EM_OK;
}

EM_API em_status em_session_decode(em_session *s, int32_t token, float *logits) {
    if (!s) return em_fail(EM_ERR_INVALID_ARG, "em_session_decode: NULL session");
    if (s->n_past == 0)
        return em_fail(EM_ERR_BAD_STATE, "em_session_decode: call em_session_prefill first (the session is empty)");
    EM_TRY(check_tokens(s, &token, 1));
    EM_TRY(check_context(s, 1));
    if (s->cuda) {
        EM_TRY(em_cuda_session_decode(s, token, logits));
        s->n_past += 1;
        s->have_logits = 1;
        return EM_OK;
    }
    forward_chunk(s, &token, 1, 1, NULL);
    s->n_past += 1;
    if (logits) memcpy(logits, s->logits, sizeof(float) * s->dim.vocab);
    return EM_OK;
}

EM_API em_status em_session_argmax(em_session *s, int32_t *token) {
    if (!s || !token) return em_fail(EM_ERR_INVALID_ARG, "em_session_argmax: NULL argument");
    if (!s->have_logits)
        return em_fail(EM_ERR_BAD_STATE, "em_session_argmax: no logits yet (prefill with EM_LOGITS_LAST, or decode)");
    if (s->cuda) return em_cuda_session_argmax(s, token);
    *token = (int32_t)em_ref_argmax(s->logits, s->dim.vocab);
    return EM_OK;
}

EM_API em_status em_session_position(const em_session *s, uint64_t *n) {
    if (!s || !n) return em_fail(EM_ERR_INVALID_ARG, "em_session_position: NULL argument");
    *n = s->n_past;
    return EM_OK;
}
