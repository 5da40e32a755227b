#!/usr/bin/env python3
"""megatron_vs_hf.py: cross-check of em-pack's Megatron key mapping against its HF NemotronH mapping.

Builds a tiny random NemotronH (transformers) hybrid with GQA, saves it as an HF checkpoint, rewrites the
same weights under Megatron-LM names (models.md §5, §8: fused GQA linear_qkv in the
[groups, heads/groups + 2, head_dim, d] layout, norms fused as layer_norm_weight) into a torch pickle shaped
like release/mp_rank_00/model_optim_rng.pt (args Namespace + model), converts that with
tools/pack/megatron_to_safetensors.py, packs both with em-pack, and checks that the two blobs hold the same
tensors (name, dtype, shape, XXH3-64 of the bytes, from `em-pack --info`).

Usage: python3 tools/goldens/megatron_vs_hf.py BUILD_DIR   (BUILD_DIR/tools/em-pack must exist)
Needs torch, transformers (5.x), safetensors. Not part of CI (ctest needs no Python: test_pack_megatron
covers the mapping from C); exit status 0 when the blobs agree.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def tensors_of(em_pack, blob):
    out = subprocess.run([em_pack, "--info", blob], check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines():
        m = re.match(r"\s+\d+\s+(\S+)\s+(\S+)\s+(\[.*?\])\s+\d+\s+\d+\s+([0-9a-f]{16})$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3), m.group(4))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build_dir")
    a = ap.parse_args()
    em_pack = os.path.join(a.build_dir, "tools", "em-pack")
    import argparse as ap_mod
    import torch
    from transformers import NemotronHConfig, NemotronHForCausalLM

    torch.manual_seed(0)
    pattern = "M*-M-*M"
    nh, ng, hd, d = 4, 2, 8, 32
    cfg = NemotronHConfig(vocab_size=96, hidden_size=d, hybrid_override_pattern=pattern,
                          num_hidden_layers=len(pattern), num_attention_heads=nh, num_key_value_heads=ng,
                          head_dim=hd, intermediate_size=48, mlp_hidden_act="gelu", ssm_state_size=16,
                          mamba_num_heads=4, mamba_head_dim=16, n_groups=2, conv_kernel=4, expand=2,
                          tie_word_embeddings=False, residual_in_fp32=False, layer_norm_epsilon=1e-5)
    model = NemotronHForCausalLM(cfg).eval()
    with torch.no_grad():   # random, non-trivial norms / A_log / D / biases
        for n, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if n.endswith("norm.weight") else 0.0))
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def g(name):
        for pre in ("model.", "backbone."):
            if pre + name in sd:
                return sd[pre + name]
        return sd[name]

    meg = {"embedding.word_embeddings.weight": g("embeddings.weight"), "decoder.final_norm.weight": g("norm_f.weight"),
           "output_layer.weight": sd["lm_head.weight"]}
    for i, kind in enumerate(pattern):
        L, M = f"layers.{i}.", f"decoder.layers.{i}."
        if kind == "M":
            meg[M + "norm.weight"] = g(L + "norm.weight")
            for t in ("in_proj.weight", "conv1d.weight", "conv1d.bias", "dt_bias", "A_log", "D", "norm.weight",
                      "out_proj.weight"):
                meg[M + "mixer." + t] = g(L + "mixer." + t)
        elif kind == "*":
            q = g(L + "mixer.q_proj.weight").view(ng, nh // ng, hd, d)
            k = g(L + "mixer.k_proj.weight").view(ng, 1, hd, d)
            v = g(L + "mixer.v_proj.weight").view(ng, 1, hd, d)
            meg[M + "self_attention.linear_qkv.weight"] = torch.cat([q, k, v], 1).reshape(-1, d).contiguous()
            meg[M + "self_attention.linear_qkv.layer_norm_weight"] = g(L + "norm.weight")
            meg[M + "self_attention.linear_proj.weight"] = g(L + "mixer.o_proj.weight")
            meg[M + "self_attention.linear_qkv._extra_state"] = None
        else:
            meg[M + "mlp.linear_fc1.layer_norm_weight"] = g(L + "norm.weight")
            meg[M + "mlp.linear_fc1.weight"] = g(L + "mixer.up_proj.weight")
            meg[M + "mlp.linear_fc2.weight"] = g(L + "mixer.down_proj.weight")
    args = ap_mod.Namespace(num_layers=len(pattern), hidden_size=d, num_attention_heads=nh, group_query_attention=True,
                            num_query_groups=ng, kv_channels=hd, ffn_hidden_size=48, hybrid_attention_ratio=0.0,
                            hybrid_mlp_ratio=0.0, hybrid_override_pattern=pattern, seq_length=4096,
                            norm_epsilon=1e-5, squared_relu=False, mamba_state_dim=16, mamba_head_dim=16,
                            mamba_num_groups=2, tensor_model_parallel_size=1, position_embedding_type="none",
                            untie_embeddings_and_output_weights=True)

    with tempfile.TemporaryDirectory() as tmp:
        hf_dir, meg_dir, conv_dir = (os.path.join(tmp, x) for x in ("hf", "meg", "conv"))
        model.save_pretrained(hf_dir)
        os.makedirs(os.path.join(meg_dir, "release", "mp_rank_00"))
        torch.save({"args": args, "checkpoint_version": 3.0, "iteration": 0, "model": meg},
                   os.path.join(meg_dir, "release", "mp_rank_00", "model_optim_rng.pt"))
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "pack", "megatron_to_safetensors.py"), meg_dir,
                        conv_dir], check=True)
        blobs = {}
        for tag, src in (("hf", hf_dir), ("megatron", conv_dir)):
            out = os.path.join(tmp, tag + ".emb")
            subprocess.run([em_pack, src, "-o", out, "--dtype", "f32", "--no-tokenizer"], check=True)
            blobs[tag] = tensors_of(em_pack, out)
        h, m = blobs["hf"], blobs["megatron"]
        bad = [n for n in sorted(set(h) | set(m)) if h.get(n) != m.get(n)]
        print(f"{len(h)} tensors (HF), {len(m)} (Megatron); {len(bad)} differ: {bad[:8]}")
        return 1 if bad or not h else 0


if __name__ == "__main__":
    sys.exit(main())
