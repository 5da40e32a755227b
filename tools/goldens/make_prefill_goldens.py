#!/usr/bin/env python3
"""Prefill goldens of the bundled pure Mamba-2 (models/mamba2), made by HF transformers (issue 8).

WHAT IT WRITES: tests/data/prefill/mamba2_prefill.safetensors (batch 1, float32 math on the exact float32 upcast of
the bundled bf16 weights: from_pretrained(models/mamba2, dtype=float32), as tools/goldens/make_model_goldens.py).
Read by tests/test_prefill_golden.c.

GOLDEN KEYS (L in LENGTHS = 1, 127, 128, 129, 1000, 5000: both sides of HF's and our chunk edges, and prompts longer
than the test's planned prefill chunk of 256, which must run chunk by chunk)
  ids                 I32 [5001]          models/heldout.txt encoded with the Python sentencepiece library from
                                          models/tokenizer.model (no BOS), repeated end to end up to 5001 ids; prompt
                                          L is ids[:L], and ids[L] is the token decoded after it
  lengths             I32 [6]             LENGTHS
  logits_L            F32 [V]             HF prefill (use_cache=True) of ids[:L]: the last position's logits (V 4096)
  next_logits_L       F32 [V]             then ONE cached decode step fed ids[L]: its logits (depend on the final conv
                                          and SSM states of the prefill: an indirect state check for backends whose
                                          state cannot be read)
  conv_sample_L       F32 [ceil(n/CS)]    the final conv state, ours [n_layer, conv_dim, K-1] = HF's
                                          cache.get_conv_state(l)[0, :, 1:] (HF keeps K columns, the oldest first;
                                          we keep the last K-1), flattened (n = 10*640*3), elements 0, CS, 2CS, ...
  ssm_sample_L        F32 [ceil(n/SS)]    the final SSM state [n_layer, H, P, N] (HF get_recurrent_state(l)[0],
                                          n = 10*6*64*64), elements 0, SS, 2SS, ...
  conv_norm_L         F64 [n_layer]       per layer: sqrt(sum of squares) of the whole conv state (float64)
  ssm_norm_L          F64 [n_layer]       per layer: the same for the SSM state
  conv_stride, ssm_stride  I32 [1]        CS = 7, SS = 61 (co-prime with the tensors' inner sizes: the samples fall on
                                          every layer, head, row and column)
Full tensors would be ~1.1 MB per prompt; this keeps the file at ~380 KB and still checks every layer: the samples
element by element, the norms for the whole of each layer.

CHECKS (the script fails loudly otherwise)
  - HF's chunked prefill and HF's token-by-token cached decode give the same final states and last logits
    (L = 129 and 1000: max|diff| <= 1e-4 * max|ref|): the goldens mean "the recurrence", whichever path made them;
  - Mamba2's gated norm is per group and its dt limit is (0, inf) (as make_model_goldens.py checks).

HOW TO RUN (repository root; CPU, ~7 min on 2 busy cores (the 5000-token torch prefill and the two HF decode
loops dominate); the bytes are deterministic by construction (save_deterministic), not re-checked by a second run):
  python3 tools/goldens/make_prefill_goldens.py             # writes tests/data/prefill/mamba2_prefill.safetensors
  python3 tools/goldens/make_prefill_goldens.py --out DIR   # writes DIR/mamba2_prefill.safetensors
Made with Python 3.11, torch 2.15.0 (CPU), transformers 5.23.0, sentencepiece 0.2.x, safetensors 0.8.0, no mamba_ssm /
causal_conv1d (HF's pure-torch Mamba-2 path, chunk_size 128 from the config).
"""

import argparse
import hashlib
import importlib.util
import math
import os
import sys

import torch

import sentencepiece as spm
import transformers
from transformers import Mamba2ForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
MODEL = os.path.join(REPO, "models", "mamba2")
LENGTHS = [1, 127, 128, 129, 1000, 5000]
CONV_STRIDE = 7
SSM_STRIDE = 61
REL_TOL = 1e-4


def load_helpers():
    """save_deterministic, load_model and check_numerics_setup from make_model_goldens.py (one implementation)."""
    spec = importlib.util.spec_from_file_location("mmg", os.path.join(HERE, "make_model_goldens.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def states(cache, n_layer):
    conv = torch.stack([cache.get_conv_state(l)[0, :, 1:].float() for l in range(n_layer)])  # [L, conv_dim, K-1]
    ssm = torch.stack([cache.get_recurrent_state(l)[0].float() for l in range(n_layer)])      # [L, H, P, N]
    return conv.clone(), ssm.clone()


def rel(a, b):
    return (a - b).abs().max().item() / max(b.abs().max().item(), 1e-30)


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "prefill"))
    args = ap.parse_args()
    mmg = load_helpers()
    m = mmg.load_model("mamba2")
    mmg.check_numerics_setup("mamba2", m)
    n_layer = m.config.num_hidden_layers

    sp = spm.SentencePieceProcessor(model_file=os.path.join(REPO, "models", "tokenizer.model"))
    with open(os.path.join(REPO, "models", "heldout.txt"), encoding="utf-8") as f:
        base = sp.encode(f.read())
    n_ids = max(LENGTHS) + 1
    ids = (base * (n_ids // len(base) + 1))[:n_ids]
    ids_t = torch.tensor(ids, dtype=torch.long)

    tensors = {
        "ids": torch.tensor(ids, dtype=torch.int32),
        "lengths": torch.tensor(LENGTHS, dtype=torch.int32),
        "conv_stride": torch.tensor([CONV_STRIDE], dtype=torch.int32),
        "ssm_stride": torch.tensor([SSM_STRIDE], dtype=torch.int32),
    }
    info = []
    for L in LENGTHS:
        out = m(input_ids=ids_t[:L][None], use_cache=True)
        logits = out.logits[0, -1].float().clone()
        conv, ssm = states(out.cache_params, n_layer)
        step = m(input_ids=ids_t[L:L + 1][None], use_cache=True, cache_params=out.cache_params,
                 cache_position=torch.tensor([L]))
        nxt = step.logits[0, -1].float().clone()
        tensors[f"logits_{L}"] = logits
        tensors[f"next_logits_{L}"] = nxt
        tensors[f"conv_sample_{L}"] = conv.flatten()[::CONV_STRIDE].contiguous()
        tensors[f"ssm_sample_{L}"] = ssm.flatten()[::SSM_STRIDE].contiguous()
        tensors[f"conv_norm_{L}"] = conv.double().pow(2).sum(dim=(1, 2)).sqrt().contiguous()
        tensors[f"ssm_norm_{L}"] = ssm.double().pow(2).sum(dim=(1, 2, 3)).sqrt().contiguous()
        info.append(f"L={L}: max|logit| {logits.abs().max().item():.3f}, |ssm| {ssm.norm().item():.3f}, "
                    f"|conv| {conv.norm().item():.3f}")
        print(info[-1])
        if L in (129, 1000):  # HF's own two paths must agree
            o1 = m(input_ids=ids_t[:1][None], use_cache=True)
            cache = o1.cache_params
            row = o1.logits[0, -1]
            for t in range(1, L):
                o = m(input_ids=ids_t[t:t + 1][None], use_cache=True, cache_params=cache,
                      cache_position=torch.tensor([t]))
                cache, row = o.cache_params, o.logits[0, -1]
            c2, s2 = states(cache, n_layer)
            e = max(rel(row.float(), logits), rel(c2, conv), rel(s2, ssm))
            print(f"  HF prefill vs HF token-by-token decode, L={L}: max rel diff {e:.2e}")
            if not e <= REL_TOL:
                mmg.fail(f"HF prefill vs its decode loop at L={L}: {e:.3e} > {REL_TOL}")

    meta = {
        "what": "edgemamba prefill goldens of models/mamba2 (tools/goldens/make_prefill_goldens.py)",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "weights_sha256": hashlib.sha256(open(os.path.join(MODEL, "model.safetensors"), "rb").read()).hexdigest(),
        "lengths": ",".join(map(str, LENGTHS)),
        "summary": "; ".join(info),
    }
    if mmg.FAILURES:
        print(f"{len(mmg.FAILURES)} check(s) failed; nothing written")
        sys.exit(1)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "mamba2_prefill.safetensors")
    mmg.save_deterministic(tensors, path, meta)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
