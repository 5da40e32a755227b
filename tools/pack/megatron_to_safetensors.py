#!/usr/bin/env python3
"""megatron_to_safetensors.py: a Megatron-LM Mamba-2 / Mamba-2-Hybrid checkpoint (torch pickle) ->
model.safetensors + megatron_args.json, the input em-pack reads (docs/em-pack.md, "Megatron-LM checkpoints").

The released checkpoints (nvidia/mamba2-8b-3t-4k, nvidia/mamba2-hybrid-8b-3t-4k) are
`release/mp_rank_00/model_optim_rng.pt`: a torch.save pickle of a dict with `args` (argparse.Namespace) and
`model` (the state dict). em-pack is C and reads no pickles, so this script (the only part that needs torch)
loads it with weights_only=False (the pickle holds a Namespace: load only checkpoints you trust), takes
['model'], drops Transformer Engine `*._extra_state` entries, and writes:
  OUT/model.safetensors     the tensors, names and dtypes unchanged
  OUT/megatron_args.json    the args em-pack needs; Mamba defaults (d_state 128, headdim 64, ngroups 8,
                            d_conv 4, expand 2) where the args lack them; padded_vocab_size = embedding rows
  OUT/tokenizer.model       a copy of --tokenizer, or of args.tokenizer_model when that file exists
Then: em-pack OUT -o model.emb

Usage: python3 tools/pack/megatron_to_safetensors.py CKPT OUT_DIR [--tokenizer FILE.model]
CKPT is the .pt file, or a directory holding release/mp_rank_00/model_optim_rng.pt (or mp_rank_00/...).
Only TP = PP = 1 checkpoints (mp_rank_00 alone) pack; em-pack refuses others (merge them first with
Megatron-LM tools/checkpoint/hybrid_conversion.py --target-tp-size 1).
Needs: torch, safetensors (pip install torch safetensors).
"""
import argparse
import json
import os
import shutil
import sys

# argparse name -> default when the checkpoint's args lack it (Mamba: Megatron's Mamba mixer defaults).
ARGS = {
    "num_layers": None, "hidden_size": None, "num_attention_heads": None, "num_query_groups": None,
    "group_query_attention": False, "kv_channels": None, "ffn_hidden_size": None,
    "hybrid_attention_ratio": 0.0, "hybrid_mlp_ratio": 0.0, "hybrid_override_pattern": None,
    "seq_length": None, "max_position_embeddings": None, "norm_epsilon": 1e-5, "squared_relu": False,
    "swiglu": False, "normalization": "RMSNorm", "apply_layernorm_1p": False, "add_bias_linear": False,
    "position_embedding_type": "none", "untie_embeddings_and_output_weights": True,
    "fp32_residual_connection": False, "tensor_model_parallel_size": 1, "pipeline_model_parallel_size": 1,
    "mamba_state_dim": 128, "mamba_head_dim": 64, "mamba_num_groups": 8, "mamba_d_conv": 4, "mamba_expand": 2,
    "tokenizer_type": None, "tokenizer_model": None,
}
EMBED = "embedding.word_embeddings.weight"


def find_pt(path):
    if os.path.isfile(path):
        return path
    for sub in ("release/mp_rank_00/model_optim_rng.pt", "mp_rank_00/model_optim_rng.pt", "model_optim_rng.pt"):
        p = os.path.join(path, sub)
        if os.path.isfile(p):
            return p
    sys.exit(f"{path}: no model_optim_rng.pt (release/mp_rank_00/ or mp_rank_00/)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("out_dir")
    ap.add_argument("--tokenizer", help="SentencePiece .model to copy as OUT/tokenizer.model")
    a = ap.parse_args()
    import torch
    from safetensors.torch import save_file

    pt = find_pt(a.ckpt)
    ck = torch.load(pt, map_location="cpu", weights_only=False)
    sd = ck["model"] if isinstance(ck, dict) and "model" in ck else ck
    ns = vars(ck.get("args")) if isinstance(ck, dict) and ck.get("args") is not None else {}
    tensors = {k: v.contiguous() for k, v in sd.items() if not k.endswith("._extra_state") and torch.is_tensor(v)}
    dropped = [k for k in sd if k not in tensors]
    if EMBED not in tensors:
        sys.exit(f"{pt}: no {EMBED}: not a Megatron GPT/Mamba state dict")

    args = {}
    for k, default in ARGS.items():
        v = ns.get(k, default)
        if v is None and default is None and k not in ns:
            continue
        args[k] = v
    args["padded_vocab_size"] = int(tensors[EMBED].shape[0])
    if args.get("hybrid_override_pattern") in ("", None):
        args.pop("hybrid_override_pattern", None)
    if not args.get("group_query_attention"):
        args.pop("num_query_groups", None)
    args["source"] = os.path.abspath(pt)

    os.makedirs(a.out_dir, exist_ok=True)
    save_file(tensors, os.path.join(a.out_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(a.out_dir, "megatron_args.json"), "w") as f:
        json.dump(args, f, indent=1, sort_keys=True)
        f.write("\n")
    tok = a.tokenizer or args.get("tokenizer_model")
    if tok and os.path.isfile(tok):
        shutil.copyfile(tok, os.path.join(a.out_dir, "tokenizer.model"))
    elif tok:
        print(f"note: tokenizer {tok} not found: pass --tokenizer (or em-pack --tokenizer)", file=sys.stderr)
    print(f"{a.out_dir}: {len(tensors)} tensors ({len(dropped)} non-tensor / _extra_state entries dropped), "
          f"megatron_args.json", file=sys.stderr)


if __name__ == "__main__":
    main()
