/*
 * fuzz_models.h — the tiny hybrid model the snapshot target restores into, shared with the seed generator
 * (fuzz/seedgen.c) so that the committed snapshot seeds carry this model's content id. Pattern "M*-": one
 * layer of each kind, so a snapshot has every section (conv, SSM, KV, logits, sampler).
 * Changing anything here changes the content id: run fuzz/make_seeds.sh again.
 */
#ifndef EM_FUZZ_MODELS_H
#define EM_FUZZ_MODELS_H

#include <math.h>

#include "tinyblob.h"

static inline em_tiny_spec em_fuzz_snap_spec(void) {
    em_tiny_spec s = em_tiny_default();
    s.pattern = "M*-";
    s.d_model = 16;
    s.vocab = 48;
    s.d_state = 8;
    s.n_head = 2;
    s.head_dim = 8;
    s.n_group = 1;
    s.d_conv = 4;
    s.attn_n_head = 2;
    s.attn_n_kv_head = 1;
    s.attn_head_dim = 8;
    s.d_ff = 24;
    s.mlp_act = EM_ACT_RELU2;
    s.rope_fraction = 0.5f;
    s.rope_base = 10000.0f;
    s.seed = 11;
    return s;
}

/* The session the target restores into: 24 positions of KV, chunks of 4. */
static inline em_session_options em_fuzz_snap_session(void) {
    em_session_options o = em_session_default_options();
    o.max_context = 24;
    o.max_prefill_chunk = 4;
    return o;
}

#endif /* EM_FUZZ_MODELS_H */
