#!/usr/bin/env python3
"""Golden outputs of the bundled tiny models (models/hybrid, models/mamba2), made by HF transformers.

WHAT IT WRITES: models/<arch>/golden.safetensors for arch in hybrid, mamba2 (batch 1, float32 math on
an exact float32 upcast of the bundled bf16 weights: from_pretrained(models/<arch>, dtype=float32)).

GOLDEN KEYS
  heldout_ids        I32 [N]       models/heldout.txt tokenized with the Python sentencepiece library from
                                   models/tokenizer.model: encode(whole file, newline at the end included),
                                   no BOS (training text has none: tools/train_tiny/train.py), N = 2014
  heldout_nll        F64 [N-1]     heldout_nll[t] = -log softmax(logits[t])[heldout_ids[t+1]], from ONE HF
                                   forward pass (use_cache=False) over all N ids; logits f32, log-softmax
                                   in float64. Perplexity = exp(mean(heldout_nll)).
  heldout_logits     F32 [R, V]    full logits rows of that pass at positions heldout_logits_pos (V = 4096)
  heldout_logits_pos I32 [R]       0, 127, 128, 1023, N-2 (chunk edges of HF's SSD scan and the end)
  prompt_len         I32 [P]       ids per prompt (P = 3 prompts, the lines of models/prompts.txt)
  prompt_ids         I32 [P, L]    each prompt's ids (encoded like heldout_ids, no BOS), padded with -1 to
                                   L = max prompt_len
  prompt_logits      F32 [P, V]    logits at each prompt's last position (HF prefill, use_cache=True)
  greedy_ids         I32 [P, G]    G = 32 greedy tokens per prompt through HF's cached decode path
                                   (greedy_ids[p, 0] = argmax prompt_logits[p]; greedy_ids[p, i+1] = argmax
                                   of the cached step fed greedy_ids[p, i]); EOS is not special (never hit)
  greedy_top2_ids    I32 [P, G, 2] the two largest logits' ids of the row that chose greedy_ids[p, i]
  greedy_top2_logits F32 [P, G, 2] and their values (margin = [..,0] - [..,1])
  The header's __metadata__ holds, as strings, the versions, the prompts' text, the perplexity and the sha256
  of the weights, tokenizer and held-out text. The file is written by save_deterministic() (sorted header),
  not safetensors.save_file, whose metadata order changes from run to run.

CHECKS (the script fails loudly otherwise)
  - transformers' Mamba2 normalises the gated output per group (>= 5.23); NemotronH/Mamba2 dt clamps are
    no-ops (NemotronH clamps at time_step_min in prefill only: the bundled config has 0.0; Mamba2 uses
    time_step_limit = (0, inf));
  - HF's prefill and its cached decode agree: one full forward (use_cache=False) over prompt ++ greedy_ids
    vs the prefill's last row and every cached step, max|diff| <= 1e-4 * max|logit|; generate()
    (do_sample=False) gives the same ids and logits as the manual cached loop;
  - the held-out perplexity agrees with metrics.json's (measured on the H100 in training) within 0.1 %;
  - no EOS among greedy ids; every greedy top1-top2 margin >= 1e-3 (so a backend within 1e-4 relative
    cannot flip a choice);
  - the prompts do not occur in the training documents (when .carry/corpus/docs.jsonl.gz is present).

HOW TO RUN (repository root; CPU, ~20 s, deterministic: run it twice and compare sha256):
  python3 tools/goldens/make_model_goldens.py                # writes models/<arch>/golden.safetensors
  python3 tools/goldens/make_model_goldens.py --out /tmp/g   # writes /tmp/g/<arch>/golden.safetensors
Made with Python 3.11, torch 2.15.0 (CPU), transformers 5.23.0, sentencepiece 0.2.x, safetensors 0.8.0,
no mamba_ssm / causal_conv1d (HF's pure-torch Mamba-2 path). tests/test_model_golden.c reads the files.
"""

import argparse
import gzip
import hashlib
import importlib.util
import inspect
import json
import math
import os
import sys

import torch

import safetensors
import sentencepiece as spm
import transformers
from transformers import Mamba2ForCausalLM, NemotronHForCausalLM

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODELS = os.path.join(REPO, "models")
ARCHS = {"hybrid": NemotronHForCausalLM, "mamba2": Mamba2ForCausalLM}
N_GREEDY = 32
REL_TOL = 1e-4
MIN_MARGIN = 1e-3
PPL_TOL = 1e-3

FAILURES = []


def fail(msg):
    FAILURES.append(msg)
    print("FAIL: " + msg)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


ST_DTYPE = {torch.float32: "F32", torch.float64: "F64", torch.int32: "I32"}


def save_deterministic(tensors, path, metadata):
    """A safetensors file written byte for byte the same on every run: safetensors' own save_file orders the
    __metadata__ keys by a hash map (a different order, and different bytes, on every run). Here the header
    is JSON with sorted keys, tensors in name order, data offsets in that order, the header padded with
    spaces to a multiple of 8 (as safetensors does). Read back and compared with safe_open."""
    header = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, off = [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        b = t.numpy().tobytes()
        header[name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, sort_keys=False, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)
    with safetensors.safe_open(path, "pt") as f:
        assert f.metadata() == metadata and sorted(f.keys()) == sorted(tensors)
        for name in tensors:
            assert torch.equal(f.get_tensor(name), tensors[name]), name


def load_model(arch):
    d = os.path.join(MODELS, arch)
    kw = {"attn_implementation": "eager"} if arch == "hybrid" else {}
    m = ARCHS[arch].from_pretrained(d, dtype=torch.float32, **kw).eval()
    # the weights are the exact f32 upcast of the bundled bf16 tensors
    with safetensors.safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
        sd = m.state_dict()
        for k in f.keys():
            t = f.get_tensor(k)
            mk = k if k in sd else k.replace("backbone.", "model.", 1)
            if t.dtype != torch.bfloat16 or not torch.equal(sd[mk], t.float()):
                fail(f"{arch}: {k} is not the f32 upcast of a bf16 tensor")
    return m


def check_numerics_setup(arch, m):
    from transformers.models.mamba2 import modeling_mamba2 as mm
    if arch == "mamba2":
        if "group_size" not in inspect.signature(mm.MambaRMSNormGated.__init__).parameters:
            fail("this transformers normalises Mamba2's gated output over all of d_inner; the model was "
                 "trained per group (tools/train_tiny/train.py:ensure_grouped_mamba2_norm)")
        mixers = [b.mixer for b in m.backbone.layers]
    else:
        mixers = [b.mixer for b in m.model.layers if hasattr(b.mixer, "in_proj")]
    for mx in mixers:
        gs = getattr(mx.norm, "group_size", None)
        if gs != mx.intermediate_size // mx.n_groups:
            fail(f"{arch}: gated norm group {gs}, want {mx.intermediate_size // mx.n_groups}")
        if tuple(mx.time_step_limit) != (0.0, float("inf")):
            fail(f"{arch}: dt clamp {mx.time_step_limit} is not a no-op")
    return len(mixers)


def encode(tok, text):
    return tok.encode(text)  # plain ids: no BOS, no EOS (as train.py encodes heldout.txt and its prompts)


@torch.no_grad()
def heldout(m, ids):
    x = torch.tensor(ids, dtype=torch.long)[None]
    logits = m(input_ids=x, use_cache=False).logits[0].float()      # [N, V]
    lp = torch.log_softmax(logits.double(), dim=-1)
    nll = -lp[:-1].gather(1, x[0, 1:, None]).squeeze(1)               # [N-1]
    n = len(ids)
    pos = torch.tensor([0, 127, 128, 1023, n - 2], dtype=torch.int32)
    return nll.contiguous(), logits[pos.long()].contiguous(), pos


def top2(row):
    v, i = torch.topk(row, 2)
    return i.to(torch.int32), v.float()


@torch.no_grad()
def prompt_goldens(arch, m, ids, eos):
    """Prefill + N_GREEDY cached greedy steps (manual loop), cross-checked with generate() and with one
    full forward over prompt ++ greedy ids."""
    x = torch.tensor(ids, dtype=torch.long)[None]
    ckw = "cache_params" if arch == "mamba2" else "past_key_values"
    out = m(input_ids=x, use_cache=True)
    cache = out.cache_params if arch == "mamba2" else out.past_key_values
    rows = [out.logits[0, -1].float().clone()]
    toks = []
    n = len(ids)
    for i in range(N_GREEDY):
        t = int(rows[-1].argmax())
        toks.append(t)
        if i == N_GREEDY - 1:
            break
        kw = {ckw: cache}
        if arch == "mamba2":
            kw["cache_position"] = torch.tensor([n + i])
        out = m(input_ids=torch.tensor([[t]]), use_cache=True, **kw)
        cache = out.cache_params if arch == "mamba2" else out.past_key_values
        rows.append(out.logits[0, -1].float().clone())
    rows = torch.stack(rows)                                          # [G, V]: the rows that chose toks
    greedy = torch.tensor(toks)
    info = {}
    # prefill vs cached decode: one full forward over prompt ++ greedy[:-1]
    full = m(input_ids=torch.cat([x[0], greedy[:-1]])[None], use_cache=False).logits[0, n - 1:].float()
    scale = rows.abs().max().item()
    info["full_vs_cached"] = (full - rows).abs().max().item()
    if not info["full_vs_cached"] <= REL_TOL * scale:
        fail(f"{arch}: full forward vs prefill/cached decode max|diff| {info['full_vs_cached']:.3e} > {REL_TOL} x {scale:.2f}")
    # generate() (HF's own cached decode loop) must give the same ids and logits
    gen = m.generate(input_ids=x, do_sample=False, max_new_tokens=N_GREEDY, output_logits=True,
                     return_dict_in_generate=True, pad_token_id=3)
    gids = gen.sequences[0, n:]
    gl = torch.stack([r[0].float() for r in gen.logits])
    info["generate_ids_equal"] = bool(torch.equal(gids, greedy))
    info["generate_vs_loop"] = (gl - rows).abs().max().item() if gl.shape == rows.shape else float("inf")
    if not info["generate_ids_equal"] or not info["generate_vs_loop"] <= REL_TOL * scale:
        fail(f"{arch}: generate() disagrees with the cached loop (ids equal {info['generate_ids_equal']}, "
             f"max|diff| {info['generate_vs_loop']:.3e})")
    if eos in toks:
        fail(f"{arch}: EOS among the greedy ids")
    t2 = [top2(r) for r in rows]
    t2i = torch.stack([a for a, _ in t2])
    t2v = torch.stack([b for _, b in t2])
    info["min_margin"] = float((t2v[:, 0] - t2v[:, 1]).min())
    if info["min_margin"] < MIN_MARGIN:
        fail(f"{arch}: greedy top1-top2 margin {info['min_margin']:.2e} < {MIN_MARGIN}")
    info["max_abs_logit"] = scale
    return rows[0].contiguous(), greedy.to(torch.int32), t2i, t2v, info


def check_prompts_unseen(prompts):
    path = os.path.join(REPO, ".carry", "corpus", "docs.jsonl.gz")
    if not os.path.exists(path):
        return "not checked (.carry/corpus/docs.jsonl.gz absent)"
    held = set()
    with open(os.path.join(REPO, ".carry", "corpus", "meta.json")) as f:
        held = set(json.load(f)["heldout"]["docs"])
    n = 0
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if f"{d['src']}/{d['id']}" in held:
                continue
            n += 1
            text = "\n".join(d["paras"])
            for p in prompts:
                if p in text:
                    fail(f"prompt {p!r} occurs in training/validation document {d['src']}/{d['id']}")
    return f"none of the prompts occurs in the {n} training/validation documents"


def main():
    ap = argparse.ArgumentParser(description="Goldens of the bundled models (see the module docstring).")
    ap.add_argument("--out", default=MODELS, help="folder that receives <arch>/golden.safetensors (default models/)")
    ap.add_argument("--arch", nargs="+", choices=sorted(ARCHS), default=sorted(ARCHS))
    args = ap.parse_args()
    for mod in ("mamba_ssm", "causal_conv1d"):
        if importlib.util.find_spec(mod) is not None:
            sys.exit(f"{mod} is installed: HF would use its kernels, not the torch path these goldens document")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()

    tok = spm.SentencePieceProcessor(model_file=os.path.join(MODELS, "tokenizer.model"))
    with open(os.path.join(MODELS, "heldout.txt"), encoding="utf-8") as f:
        held_text = f.read()
    with open(os.path.join(MODELS, "prompts.txt"), encoding="utf-8") as f:
        prompts = [ln.rstrip("\n") for ln in f if ln.strip()]
    held_ids = encode(tok, held_text)
    p_ids = [encode(tok, p) for p in prompts]
    unseen = check_prompts_unseen(prompts)
    L = max(len(p) for p in p_ids)
    pid = torch.full((len(prompts), L), -1, dtype=torch.int32)
    for i, p in enumerate(p_ids):
        pid[i, :len(p)] = torch.tensor(p, dtype=torch.int32)
    versions = {"python": sys.version.split()[0], "torch": torch.__version__,
                "transformers": transformers.__version__, "sentencepiece": spm.__version__,
                "safetensors": safetensors.__version__}
    print(" ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"heldout.txt: {len(held_ids)} ids; prompts: {[len(p) for p in p_ids]} ids; {unseen}")

    summary = {}
    for arch in args.arch:
        m = load_model(arch)
        n_mixers = check_numerics_setup(arch, m)
        eos = m.config.eos_token_id
        nll, hrows, hpos = heldout(m, held_ids)
        mean = float(nll.mean())
        ppl = math.exp(mean)
        with open(os.path.join(MODELS, arch, "metrics.json")) as f:
            ref = json.load(f)
        ppl_train = ref["heldout_ppl"]
        if ref["heldout_tokens"] != len(held_ids) or abs(ppl / ppl_train - 1) > PPL_TOL:
            fail(f"{arch}: held-out ppl {ppl:.5f} ({len(held_ids)} ids) vs training's {ppl_train:.5f} "
                 f"({ref['heldout_tokens']} ids)")
        P = len(prompts)
        plog = torch.zeros(P, hrows.shape[1])
        gids = torch.zeros(P, N_GREEDY, dtype=torch.int32)
        t2i = torch.zeros(P, N_GREEDY, 2, dtype=torch.int32)
        t2v = torch.zeros(P, N_GREEDY, 2)
        infos = []
        for i, ids in enumerate(p_ids):
            plog[i], gids[i], t2i[i], t2v[i], info = prompt_goldens(arch, m, ids, eos)
            info["text"] = tok.decode(ids + gids[i].tolist())
            infos.append(info)
        gold = {
            "heldout_ids": torch.tensor(held_ids, dtype=torch.int32), "heldout_nll": nll,
            "heldout_logits": hrows, "heldout_logits_pos": hpos,
            "prompt_len": torch.tensor([len(p) for p in p_ids], dtype=torch.int32), "prompt_ids": pid,
            "prompt_logits": plog.contiguous(), "greedy_ids": gids,
            "greedy_top2_ids": t2i.contiguous(), "greedy_top2_logits": t2v.contiguous(),
        }
        meta = {
            "arch": arch, "class": type(m).__name__, "versions": json.dumps(versions, sort_keys=True),
            "prompts": json.dumps(prompts), "heldout_mean_nll": repr(mean), "heldout_ppl": repr(ppl),
            "heldout_ppl_training_h100": repr(ppl_train),
            "model_sha256": sha256(os.path.join(MODELS, arch, "model.safetensors")),
            "tokenizer_sha256": sha256(os.path.join(MODELS, "tokenizer.model")),
            "heldout_sha256": sha256(os.path.join(MODELS, "heldout.txt")),
        }
        od = os.path.join(os.path.abspath(args.out), arch)
        os.makedirs(od, exist_ok=True)
        path = os.path.join(od, "golden.safetensors")
        save_deterministic(gold, path, meta)
        summary[arch] = (path, ppl, ppl_train, infos)
        print(f"\n== {arch} ({type(m).__name__}, {sum(p.numel() for p in m.parameters())} params, {n_mixers} Mamba-2 mixers)")
        print(f"   held-out: {len(held_ids)} ids, mean NLL {mean:.6f}, ppl {ppl:.5f} (training, H100: {ppl_train:.5f})")
        for i, info in enumerate(infos):
            print(f"   prompt {i}: {len(p_ids[i])} ids; full vs cached {info['full_vs_cached']:.2e}, generate() ids equal "
                  f"{info['generate_ids_equal']} (max|diff| {info['generate_vs_loop']:.2e}); min top1-top2 margin "
                  f"{info['min_margin']:.4f}; max|logit| {info['max_abs_logit']:.2f}")
            print(f"     greedy ids: {' '.join(str(int(t)) for t in gids[i])}")
            print(f"     text: {info['text']!r}")
        print(f"   {path}: {os.path.getsize(path)} bytes, sha256 {sha256(path)}")
    if FAILURES:
        print(f"\n{len(FAILURES)} CHECK(S) FAILED:")
        for msg in FAILURES:
            print("  " + msg)
        sys.exit(1)
    print("\nall checks passed")


if __name__ == "__main__":
    main()
