/*
 * sampler.c — the CPU twin of the token sampler: one float row of logits in, one token id out, in the
 * session's own memory (the arena's "sampler" region: a [vocab] float work row and a [vocab] id row).
 * The device sampler (CUDA issue) will be tested against em_ref_sample, as every kernel is against its twin.
 *
 * The pipeline (HF's LogitsProcessor order; llama.cpp's is the same for these):
 *   work = logits[0..n)                                    (ids >= n are never picked: vocabulary padding)
 *   repetition penalty, once per distinct id in the window (CTRL, arXiv:1909.05858 / HF
 *     RepetitionPenaltyLogitsProcessor): x > 0 ? x / penalty : x * penalty
 *   greedy (temperature <= 0): the largest, lowest id on a tie — stop here, no random draw
 *   x /= temperature; top-k by value; softmax over the survivors; top-p: the fewest most likely whose
 *   probabilities reach top_p; min-p: drop p < min_p * p_max; one uniform draw over what is left.
 *
 * Determinism: candidates are ordered by (probability descending, id ascending) — a total order, so the
 * selection and the walk do not depend on the sorting algorithm; with no truncation the walk is in id
 * order. Sums are in double. One draw of xoshiro256** per sampled token: a seed replays exactly.
 * Cost: O(n) per token, plus a sort of the top-p nucleus only (top-p grows a partial selection 64, 512,
 * ... until it holds top_p of the mass, instead of sorting the 256K-entry vocabulary).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_exec.h"
#include "session.h"
#include "util.h"

#define EM_SAMPLER_DEFAULT_SEED 0x5EEDull

typedef struct em_sample_args {
    const float *logits;          /* [n] the row to sample from */
    uint32_t n;                   /* ids [0, n) */
    const em_sampler_options *opt;
    const int32_t *recent;        /* [n_recent] the penalty window (any order; duplicates allowed) */
    uint32_t n_recent;
    uint64_t *rng;                /* [4] xoshiro256** state; advanced by one draw when not greedy */
    float *work;                  /* [n] scratch */
    int32_t *idx;                 /* [n] scratch */
    int32_t *token;               /* out */
    float *logprob;               /* out, may be NULL */
} em_sample_args;

void em_ref_sample(const em_sample_args *a);

// ---- generator: xoshiro256** (Blackman & Vigna), seeded through splitmix64 -----------------------------------

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

static void seed_rng(uint64_t s[4], uint64_t seed) {
    for (int i = 0; i < 4; i++) { /* splitmix64: never an all-zero state */
        uint64_t z = (seed += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        s[i] = z ^ (z >> 31);
    }
}

/* Uniform in [0, 1) with 53 random bits. */
static double uniform01(uint64_t s[4]) { return (double)(xoshiro_next(s) >> 11) * 0x1.0p-53; }

// ---- ordering helpers ---------------------------------------------------------------------------------------

/* a before b: larger value first, lower id on a tie; NaN never wins (it is made -inf before). */
static int before(const float *v, int32_t a, int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); }

/* Partial selection: afterwards idx[0..k) holds the k first of idx[0..m) by `before` (unordered). */
static void select_top(const float *v, int32_t *idx, uint32_t m, uint32_t k) {
    uint32_t lo = 0, hi = m; /* the k-th lies in [lo, hi) */
    while (hi - lo > 1) {
        /* median of three as the pivot, moved to hi-1 */
        uint32_t mid = lo + (hi - lo) / 2;
        int32_t a = idx[lo], b = idx[mid], c = idx[hi - 1];
        int32_t p = before(v, a, b) ? (before(v, b, c) ? b : (before(v, a, c) ? c : a))
                                    : (before(v, a, c) ? a : (before(v, b, c) ? c : b));
        uint32_t store = lo;
        for (uint32_t i = lo; i < hi; i++) if (idx[i] == p) { idx[i] = idx[hi - 1]; idx[hi - 1] = p; break; }
        for (uint32_t i = lo; i < hi - 1; i++)
            if (before(v, idx[i], p)) { int32_t t = idx[i]; idx[i] = idx[store]; idx[store] = t; store++; }
        idx[hi - 1] = idx[store];
        idx[store] = p;
        if (store == k || store + 1 == k) return; /* [0, store] are the store+1 first */
        if (store > k) hi = store;
        else lo = store + 1;
    }
}

/* Sorts idx[0..m) by `before` (heap sort: in place, no recursion, O(m log m)). */
static void sort_ids(const float *v, int32_t *idx, uint32_t m) {
    for (uint32_t start = m / 2; start-- > 0;) { /* heapify: the first in order at the root */
        for (uint32_t r = start;;) {
            uint32_t c = 2 * r + 1;
            if (c >= m) break;
            if (c + 1 < m && before(v, idx[c + 1], idx[c])) c++;
            if (!before(v, idx[c], idx[r])) break;
            int32_t t = idx[r]; idx[r] = idx[c]; idx[c] = t;
            r = c;
        }
    }
    for (uint32_t end = m; end-- > 1;) {
        int32_t t = idx[0]; idx[0] = idx[end]; idx[end] = t;
        for (uint32_t r = 0;;) {
            uint32_t c = 2 * r + 1;
            if (c >= end) break;
            if (c + 1 < end && before(v, idx[c + 1], idx[c])) c++;
            if (!before(v, idx[c], idx[r])) break;
            int32_t u = idx[r]; idx[r] = idx[c]; idx[c] = u;
            r = c;
        }
    }
    /* moving each root to the end left idx in reverse order */
    for (uint32_t i = 0; i < m / 2; i++) { int32_t t = idx[i]; idx[i] = idx[m - 1 - i]; idx[m - 1 - i] = t; }
}

// ---- the twin ---------------------------------------------------------------------------------------------

void em_ref_sample(const em_sample_args *a) {
    const em_sampler_options *o = a->opt;
    const uint32_t n = a->n;
    float *w = a->work;
    int32_t *idx = a->idx;
    for (uint32_t i = 0; i < n; i++) w[i] = isnan(a->logits[i]) ? -INFINITY : a->logits[i];

    if (o->repeat_penalty != 1.0f && a->n_recent) { /* once per distinct id: idx marks the ones done */
        for (uint32_t i = 0; i < a->n_recent; i++)
            if (a->recent[i] >= 0 && (uint32_t)a->recent[i] < n) idx[a->recent[i]] = 0;
        for (uint32_t i = 0; i < a->n_recent; i++) {
            int32_t t = a->recent[i];
            if (t < 0 || (uint32_t)t >= n || idx[t]) continue;
            idx[t] = 1;
            w[t] = w[t] > 0 ? w[t] / o->repeat_penalty : w[t] * o->repeat_penalty;
        }
    }

    int32_t best = 0;
    for (uint32_t i = 1; i < n; i++) if (w[i] > w[best]) best = (int32_t)i;
    if (!(o->temperature > 0) || !isfinite(w[best])) { /* greedy (also when every logit is -inf) */
        *a->token = best;
        if (a->logprob) {
            double z = 0;
            for (uint32_t i = 0; i < n; i++) z += exp((double)w[i] - (double)w[best]);
            *a->logprob = isfinite(w[best]) ? (float)-log(z) : 0.0f;
        }
        return;
    }

    /* temperature, and the candidates: all ids in id order, or the top k */
    const float inv_t = 1.0f / o->temperature;
    for (uint32_t i = 0; i < n; i++) w[i] *= inv_t;
    uint32_t m = n;
    for (uint32_t i = 0; i < n; i++) idx[i] = (int32_t)i;
    int sorted = 0;
    if (o->top_k > 0 && o->top_k < n) {
        select_top(w, idx, n, o->top_k);
        m = o->top_k;
        sort_ids(w, idx, m);
        sorted = 1;
    }
    /* softmax over the candidates: w[id] becomes exp(x - max) */
    const float vmax = w[best]; /* the best survives every truncation, with w = 1 */
    double z = 0;
    for (uint32_t i = 0; i < m; i++) { w[idx[i]] = expf(w[idx[i]] - vmax); z += w[idx[i]]; }

    if (o->top_p < 1.0f) { /* grow a sorted prefix until it holds top_p of the mass */
        const double target = (double)o->top_p * z;
        uint32_t k = m < 64 ? m : 64;
        for (;;) {
            if (!sorted) { select_top(w, idx, m, k); sort_ids(w, idx, k); }
            double cum = 0;
            uint32_t cut = 0;
            for (uint32_t i = 0; i < k && !cut; i++) {
                cum += w[idx[i]];
                if (cum >= target) cut = i + 1;
            }
            if (cut || k == m) { m = cut ? cut : m; break; }
            k = k > m / 8 ? m : k * 8;
        }
    }
    if (o->min_p > 0.0f) { /* p / p_max = w / w[best] (w[best] = 1) */
        uint32_t k = 0;
        for (uint32_t i = 0; i < m; i++) if (w[idx[i]] >= o->min_p) idx[k++] = idx[i];
        m = k; /* the best (1 >= min_p) always stays */
    }
    double sum = 0;
    for (uint32_t i = 0; i < m; i++) sum += w[idx[i]];
    const double u = uniform01(a->rng) * sum;
    double cum = 0;
    int32_t pick = idx[m - 1];
    for (uint32_t i = 0; i < m; i++) {
        cum += w[idx[i]];
        if (u < cum) { pick = idx[i]; break; }
    }
    *a->token = pick;
    if (a->logprob) *a->logprob = (float)log((double)w[pick] / sum);
}

// ---- the session side -----------------------------------------------------------------------------------------

size_t em_sampler_region_bytes(uint32_t vocab) {
    return sizeof(float) * vocab + sizeof(int32_t) * vocab + sizeof(int32_t) * EM_SAMPLER_MAX_RECENT + 128;
}

void em_sampler_bind(struct em_session *s, void *region) {
    uint8_t *p = region;
    const size_t v = s->dim.vocab;
    s->sample_p = (float *)p;
    s->sample_idx = (int32_t *)(p + sizeof(float) * v);
    s->recent = (int32_t *)(p + (sizeof(float) + sizeof(int32_t)) * v);
    s->n_recent = s->recent_head = 0;
    seed_rng(s->rng, EM_SAMPLER_DEFAULT_SEED);
}

/* Shared by em_session_reset (generate.c) and restore: a fresh sampler. */
void em_sampler_reset(struct em_session *s) {
    s->n_recent = s->recent_head = 0;
    seed_rng(s->rng, EM_SAMPLER_DEFAULT_SEED);
}

void em_sampler_push(struct em_session *s, int32_t tok) {
    if (!s->recent) return;
    s->recent[s->recent_head] = tok;
    s->recent_head = (s->recent_head + 1) % EM_SAMPLER_MAX_RECENT;
    if (s->n_recent < EM_SAMPLER_MAX_RECENT) s->n_recent++;
}

EM_API em_sampler_options em_sampler_default_options(void) {
    em_sampler_options o;
    memset(&o, 0, sizeof o);
    o.temperature = 0.0f;
    o.top_k = 0;
    o.top_p = 1.0f;
    o.min_p = 0.0f;
    o.repeat_penalty = 1.0f;
    o.repeat_last_n = 64;
    o.seed = 0;
    return o;
}

em_status em_sampler_check(const em_sampler_options *o) {
    if (isnan(o->temperature) || isinf(o->temperature))
        return em_fail(EM_ERR_INVALID_ARG, "sampler: temperature %g is not a finite number", (double)o->temperature);
    if (!(o->top_p >= 0.0f && o->top_p <= 1.0f))
        return em_fail(EM_ERR_INVALID_ARG, "sampler: top_p %g is outside [0, 1]", (double)o->top_p);
    if (!(o->min_p >= 0.0f && o->min_p <= 1.0f))
        return em_fail(EM_ERR_INVALID_ARG, "sampler: min_p %g is outside [0, 1]", (double)o->min_p);
    if (!(o->repeat_penalty > 0.0f) || isinf(o->repeat_penalty))
        return em_fail(EM_ERR_INVALID_ARG, "sampler: repeat_penalty %g must be > 0 (1 = off)",
                       (double)o->repeat_penalty);
    if (o->repeat_last_n > EM_SAMPLER_MAX_RECENT)
        return em_fail(EM_ERR_INVALID_ARG, "sampler: repeat_last_n %u is over %u", o->repeat_last_n,
                       EM_SAMPLER_MAX_RECENT);
    return EM_OK;
}

/* Samples over ids [0, n_valid) and records the pick in the window. */
em_status em_sampler_pick(struct em_session *s, const em_sampler_options *o, uint32_t n_valid, int32_t *token,
                          float *logprob) {
    if (!s->have_logits) return em_fail(EM_ERR_BAD_STATE, "sampler: no logits yet (prefill or decode first)");
    if (s->cuda) {
        /* Greedy without log-probabilities runs on the device: only the id crosses to the host. Anything else
         * brings the logits row over and runs the CPU twin below (a device sampler is future work). */
        if (o->temperature <= 0 && o->repeat_penalty == 1.0f && !logprob) {
            EM_TRY(em_session_argmax(s, token));
            em_sampler_push(s, *token);
            return EM_OK;
        }
        EM_TRY(em_cuda_session_logits(s, s->logits));
    }
    /* the window: the newest repeat_last_n entries of the ring (which ids, not their order, matters) */
    uint32_t k = o->repeat_last_n < s->n_recent ? o->repeat_last_n : s->n_recent;
    int32_t window[EM_SAMPLER_MAX_RECENT];
    for (uint32_t i = 0; i < k; i++)
        window[i] = s->recent[(s->recent_head + EM_SAMPLER_MAX_RECENT - 1 - i) % EM_SAMPLER_MAX_RECENT];
    em_sample_args a = { .logits = s->logits, .n = n_valid, .opt = o, .recent = window, .n_recent = k,
                         .rng = s->rng, .work = s->sample_p, .idx = s->sample_idx, .token = token, .logprob = logprob };
    em_ref_sample(&a);
    em_sampler_push(s, *token);
    return EM_OK;
}

EM_API em_status em_session_sample(em_session *s, const em_sampler_options *opts, int32_t *token, float *logprob) {
    if (!s || !opts || !token) return em_fail(EM_ERR_INVALID_ARG, "em_session_sample: NULL argument");
    EM_TRY(em_sampler_check(opts));
    return em_sampler_pick(s, opts, s->dim.vocab, token, logprob);
}

EM_API em_status em_session_set_seed(em_session *s, uint64_t seed) {
    if (!s) return em_fail(EM_ERR_INVALID_ARG, "em_session_set_seed: NULL session");
    seed_rng(s->rng, seed);
    return EM_OK;
}
