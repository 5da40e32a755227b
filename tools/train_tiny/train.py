#!/usr/bin/env python3
"""Train the tiny models bundled in models/ with Hugging Face transformers' own classes + plain PyTorch.

    python3 tools/train_tiny/train.py --arch hybrid --minutes 7 --out OUT/hybrid
    python3 tools/train_tiny/train.py --arch mamba2 --minutes 7 --out OUT/mamba2
    python3 tools/train_tiny/train.py --arch hybrid --smoke --out /tmp/smoke    # CPU, ~20 steps

--arch hybrid: NemotronHForCausalLM laid out like the Mamba-2-Hybrid of arXiv 2406.07887 in miniature
               (Mamba-2 + GQA attention without position embedding + GELU MLP, pattern from the paper's
               allocation algorithm, untied embeddings, residual in the model dtype).
--arch mamba2: Mamba2ForCausalLM of similar size.

Data: .carry/corpus/{train,val}.bin (uint16 ids, see build_corpus.sh). No network is needed.
Schedule: linear warm-up then cosine to 10% of the peak LR, defined over the fraction of the wall-clock
budget (--minutes) that has elapsed, so the cosine always ends at the time limit; --steps N makes it
step-based (deterministic) instead.
Output dir: model.safetensors (bf16, see models/README.md), config.json, generation_config.json,
tokenizer.model, metrics.json.  SIGTERM/SIGINT stop the training loop early and still save.
"""
import argparse
import importlib.util
import inspect
import json
import math
import os
import shutil
import signal
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from pattern import allocate  # noqa: E402

T0 = time.time()


def log(*a):
    print(f"[{time.time() - T0:7.1f}s]", *a, flush=True)


# --------------------------------------------------------------------------- model configs

HYBRID = dict(layers=14, attention_ratio=0.17, mlp_ratio=0.5, hidden=192, ffn=768,
              attn_heads=4, kv_heads=2, attn_head_dim=64,
              mamba_head_dim=64, state=64, groups=2, expand=2, conv=4, chunk=128)
MAMBA2 = dict(layers=10, hidden=192, mamba_head_dim=64, state=64, groups=2, expand=2, conv=4, chunk=128)


def special_ids(tok):
    return dict(pad_token_id=tok.pad_id(), bos_token_id=tok.bos_id(), eos_token_id=tok.eos_id())


def build_model(arch, vocab, ids):
    import transformers
    if arch == "hybrid":
        h = HYBRID
        pattern = allocate(h["layers"], h["attention_ratio"], h["mlp_ratio"])
        inner = h["expand"] * h["hidden"]
        cfg = transformers.NemotronHConfig(
            vocab_size=vocab, hidden_size=h["hidden"], hybrid_override_pattern=pattern,
            num_attention_heads=h["attn_heads"], num_key_value_heads=h["kv_heads"], head_dim=h["attn_head_dim"],
            attention_bias=False, intermediate_size=h["ffn"], mlp_hidden_act="gelu", mlp_bias=False,
            ssm_state_size=h["state"], mamba_num_heads=inner // h["mamba_head_dim"],
            mamba_head_dim=h["mamba_head_dim"], n_groups=h["groups"], conv_kernel=h["conv"], expand=h["expand"],
            use_conv_bias=True, mamba_proj_bias=False, chunk_size=h["chunk"], mamba_hidden_act="silu",
            time_step_min=0.001, time_step_max=0.1, time_step_floor=1e-4, time_step_limit=(0.0, float("inf")),
            layer_norm_epsilon=1e-5, residual_in_fp32=False, tie_word_embeddings=False, use_bias=False,
            initializer_range=0.02, rescale_prenorm_residual=True, max_position_embeddings=4096,
            num_logits_to_keep=1, **ids)
        assert cfg.hybrid_override_pattern == pattern, (cfg.hybrid_override_pattern, pattern)
        model = transformers.NemotronHForCausalLM(cfg)
        # HF NemotronH clamps dt to [time_step_min, inf) in its chunked (prefill/training) path but not in
        # its one-token decode path; Megatron clamps nowhere. time_step_min is only an init parameter
        # (dt_bias was initialised above), so set it to 0: the clamp becomes a no-op everywhere, now and
        # after reloading, and the trained model means the same thing in every code path.
        model.config.time_step_min = 0.0
        for m in model.modules():
            if hasattr(m, "time_step_limit") and hasattr(m, "A_log"):
                m.time_step_limit = (0.0, float("inf"))
    elif arch == "mamba2":
        h = MAMBA2
        inner = h["expand"] * h["hidden"]
        cfg = transformers.Mamba2Config(
            vocab_size=vocab, hidden_size=h["hidden"], num_hidden_layers=h["layers"],
            num_heads=inner // h["mamba_head_dim"], head_dim=h["mamba_head_dim"], state_size=h["state"],
            n_groups=h["groups"], expand=h["expand"], conv_kernel=h["conv"], chunk_size=h["chunk"],
            use_bias=False, use_conv_bias=True, hidden_act="silu", rms_norm=True, layer_norm_epsilon=1e-5,
            time_step_min=0.001, time_step_max=0.1, time_step_floor=1e-4, time_step_limit=(0.0, float("inf")),
            residual_in_fp32=False, tie_word_embeddings=False, initializer_range=0.02,
            rescale_prenorm_residual=True, **ids)
        model = transformers.Mamba2ForCausalLM(cfg)
        pattern = "M" * h["layers"]
    else:
        raise SystemExit(f"unknown arch {arch}")
    # rescale_prenorm_residual only matters for the initialisation just done. transformers 5.17's Mamba2
    # applies it again (p /= sqrt(n_layers), unguarded) to out_proj weights it has just loaded, so a saved
    # config with True would reload different weights there. Save False.
    model.config.rescale_prenorm_residual = False
    return model, pattern


# --------------------------------------------------------------------------- HF torch-path patches

def grouped_gated_norm_forward(self, hidden_states, gate=None):
    """mamba_ssm RMSNormGated(norm_before_gate=False, group_size=d_inner/ngroups), as Megatron and
    transformers >= 5.2x's Mamba2 compute it: y = w * groupRMS(x * silu(z))."""
    input_dtype = hidden_states.dtype
    hidden_states = hidden_states.to(torch.float32)
    if gate is not None:
        hidden_states = hidden_states * F.silu(gate.to(torch.float32))
    *prefix, last = hidden_states.shape
    g = hidden_states.view(*prefix, last // self.group_size, self.group_size)
    g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
    return self.weight * g.view(*prefix, last).to(input_dtype)


def ensure_grouped_mamba2_norm(model):
    """transformers <= 5.17's Mamba2 normalises the gated output over the whole d_inner (not per group);
    newer versions and Megatron/mamba_ssm normalise per group. Train (and evaluate) with the grouped
    form so the model means the same as the 8B models' mixer. Returns True if a patch was needed."""
    from transformers.models.mamba2 import modeling_mamba2 as mm
    native = "group_size" in inspect.signature(mm.MambaRMSNormGated.__init__).parameters
    for m in model.modules():
        if isinstance(m, mm.Mamba2Mixer):
            gs = m.intermediate_size // m.n_groups
            if native:
                assert m.norm.group_size == gs
            else:
                m.norm.group_size = gs
    if not native:
        mm.MambaRMSNormGated.forward = grouped_gated_norm_forward
    return not native


def _segsum(x):
    T = x.size(-1)
    x = x[..., None].expand(*x.size(), T)
    x = x.masked_fill(~torch.tril(torch.ones(T, T, device=x.device, dtype=torch.bool), diagonal=-1), 0)
    x = torch.cumsum(x, dim=-2)
    return x.masked_fill(~torch.tril(torch.ones(T, T, device=x.device, dtype=torch.bool), diagonal=0), -torch.inf)


def _chunks(t, pad, chunk):
    if pad:
        t = F.pad(t, (0, 0, 0, 0, 0, pad) if t.dim() == 4 else (0, 0, 0, pad))
    return t.reshape(t.shape[0], -1, chunk, *t.shape[2:])


def ssd_chunk_scan(hidden_states, dt, A, B, C, chunk_size, D=None, dt_bias=None, initial_states=None,
                   dt_softplus=False, dt_limit=(0.0, float("inf")), return_final_states=False, **kwargs):
    """Same math as transformers' torch `mamba2_chunk_scan` (SSD, chunked), written with einsums
    (as transformers 5.23 does) instead of broadcast-multiply-sum, which in 5.17 materialises
    (b, c, l, s, h, n)-sized temporaries. Only speed differs."""
    b, L, H, P = hidden_states.shape
    G = B.shape[2]
    dt = dt.float()  # (under bf16 autocast dt arrives in bf16; the mamba_ssm kernels work on it in fp32)
    if dt_bias is not None:
        dt = dt + dt_bias.to(dt.dtype)
    if dt_softplus:
        dt = F.softplus(dt)
    dt = torch.clamp(dt, min=dt_limit[0], max=dt_limit[1])
    x = hidden_states.float()
    B = B.float().repeat_interleave(H // G, dim=2)
    C = C.float().repeat_interleave(H // G, dim=2)
    pad = (chunk_size - L % chunk_size) % chunk_size
    D_res = None
    if D is not None:
        D_res = D[..., None] * (F.pad(x, (0, 0, 0, 0, 0, pad)) if pad else x)
    x = x * dt[..., None].float()
    A = A.to(x.dtype) * dt.float()
    x, A, B, C = [_chunks(t, pad, chunk_size) for t in (x, A, B, C)]
    A = A.permute(0, 3, 1, 2)                      # b h c l
    A_cum = torch.cumsum(A, dim=-1)
    Lmat = torch.exp(_segsum(A))                   # b h c l s
    Gm = torch.einsum("bclhn,bcshn->bclsh", C, B)
    M = Gm * Lmat.permute(0, 2, 3, 4, 1)
    Y_diag = torch.einsum("bclsh,bcshp->bclhp", M, x)
    decay_states = torch.exp(A_cum[:, :, :, -1:] - A_cum)
    B_decay = B * decay_states.permute(0, -2, -1, 1)[..., None]
    states = torch.einsum("bclhn,bclhp->bchpn", B_decay, x)
    prev = (initial_states[:, None].to(dtype=states.dtype, device=states.device)
            if initial_states is not None else torch.zeros_like(states[:, :1]))
    states = torch.cat([prev, states], dim=1)
    decay_chunk = torch.exp(_segsum(F.pad(A_cum[:, :, :, -1], (1, 0)))).transpose(1, 3)
    new_states = torch.einsum("bzch,bzhpn->bchpn", decay_chunk, states)
    states, final_state = new_states[:, :-1], new_states[:, -1]
    Y_off = torch.einsum("bclhn,bchpn->bclhp", C, states) * torch.exp(A_cum).permute(0, 2, 3, 1)[..., None]
    y = (Y_diag + Y_off).reshape(b, -1, H, P)
    if D_res is not None:
        y = y + D_res
    if pad:
        y = y[:, :L]
    y = y.contiguous()
    return (y, final_state) if return_final_states else y


def install_fast_scan():
    """Swap in ssd_chunk_scan for the torch fallback of both model files, after checking on random
    inputs that it gives the same numbers. Skipped when the mamba_ssm kernels are installed."""
    if importlib.util.find_spec("mamba_ssm") is not None:
        log("mamba_ssm is installed: transformers uses its kernels; not patching the torch scan")
        return []
    from transformers.models.mamba2 import modeling_mamba2
    from transformers.models.nemotron_h import modeling_nemotron_h
    done = []
    g = torch.Generator().manual_seed(0)
    for mod in (modeling_nemotron_h, modeling_mamba2):
        ref = getattr(mod, "mamba2_chunk_scan", None)
        if ref is None:
            continue
        b, L, H, P, G, N, ch = 2, 50, 4, 8, 2, 6, 16
        args = (torch.randn(b, L, H, P, generator=g), torch.randn(b, L, H, generator=g),
                -torch.rand(H, generator=g) * 3, torch.randn(b, L, G, N, generator=g),
                torch.randn(b, L, G, N, generator=g))
        kw = dict(chunk_size=ch, D=torch.randn(H, generator=g), dt_bias=torch.randn(H, generator=g),
                  dt_softplus=True, return_final_states=True, initial_states=torch.randn(b, H, P, N, generator=g))
        y0, s0 = ref(*args, **kw)
        y1, s1 = ssd_chunk_scan(*args, **kw)
        err = max((y0 - y1).abs().max().item(), (s0 - s1).abs().max().item())
        if err > 1e-4 * max(1.0, y0.abs().max().item()):
            log(f"WARNING: fast scan differs from {mod.__name__} by {err:g}; keeping the library scan")
            continue
        mod.mamba2_chunk_scan = ssd_chunk_scan
        done.append(mod.__name__.split(".")[-1])
    log(f"fast SSD scan installed in {done}")
    return done


# --------------------------------------------------------------------------- data / eval

def load_bin(path):
    return torch.from_numpy(np.fromfile(path, dtype="<u2").astype(np.int64))


def windows(data, T, limit=None):
    n = (data.numel() - 1) // T
    if limit:
        n = min(n, limit)
    idx = torch.arange(n)[:, None] * T + torch.arange(T + 1)[None, :]
    return data[idx]  # (n, T+1)


@torch.no_grad()
def evaluate(model, win, batch, device, autocast):
    model.eval()
    tot, cnt = 0.0, 0
    for i in range(0, win.shape[0], batch):
        w = win[i:i + batch].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(input_ids=w[:, :-1], use_cache=False).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1), reduction="sum")
        tot += loss.item()
        cnt += w[:, 1:].numel()
    model.train()
    return tot / cnt


def unigram_loss(train, val_targets, vocab):
    counts = torch.bincount(train, minlength=vocab).double() + 1.0
    logp = torch.log(counts / counts.sum())
    return float(-logp[val_targets].mean())


# --------------------------------------------------------------------------- generation

PROMPTS = [
    "It is a truth universally acknowledged, that",
    "The function returns",
    "In the beginning",
]


@torch.no_grad()
def samples(model, tok, device, n_new, seed):
    out = []
    model.eval()
    for p in PROMPTS:
        ids = torch.tensor([tok.encode(p)], device=device)
        greedy = model.generate(ids, max_new_tokens=n_new, do_sample=False, use_cache=True,
                                output_logits=True, return_dict_in_generate=True,
                                pad_token_id=tok.pad_id(), eos_token_id=tok.eos_id())
        seq = greedy.sequences
        # the cached (recurrent) decode must agree with a full forward pass over the same tokens
        full = model(input_ids=seq, use_cache=False).logits[0, ids.shape[1] - 1:-1].float()
        step = torch.stack([lg[0].float() for lg in greedy.logits])[: full.shape[0]]
        diff = (full - step).abs().max().item()
        torch.manual_seed(seed + len(out))
        sampled = model.generate(ids, max_new_tokens=n_new, do_sample=True, temperature=0.8, top_k=40,
                                 use_cache=True, pad_token_id=tok.pad_id(), eos_token_id=tok.eos_id())

        def cont(s):  # decode the whole sequence so the first new piece keeps its leading space
            text = tok.decode(s[0].tolist())
            return text[len(p):] if text.startswith(p) else " [" + text + "]"
        g, s = cont(seq), cont(sampled)
        out.append({"prompt": p, "greedy": g, "sampled": s, "cache_vs_full_max_abs_logit_diff": diff})
        log(f"PROMPT  {p!r}\n  greedy : {p}{g}\n  sampled: {p}{s}\n  (cached decode vs full forward: max |dlogit| {diff:.2e})")
    return out


# --------------------------------------------------------------------------- main

def count_params(model):
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings().weight.numel()
    return total, total - emb - head


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=["hybrid", "mamba2"], required=True)
    ap.add_argument("--data", default=os.path.join(ROOT, ".carry/corpus"))
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "models/tokenizer.model"))
    ap.add_argument("--heldout", default=os.path.join(ROOT, "models/heldout.txt"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=7.0, help="training wall-clock budget")
    ap.add_argument("--steps", type=int, default=0, help="fixed step count (step-based schedule)")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup-frac", type=float, default=0.04)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--log-every-s", type=float, default=30.0)
    ap.add_argument("--eval-every-s", type=float, default=90.0)
    ap.add_argument("--gen-tokens", type=int, default=48)
    ap.add_argument("--no-fast-scan", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--smoke", action="store_true", help="CPU end-to-end check: 20 steps, small batch")
    args = ap.parse_args()
    if args.smoke:
        args.steps = args.steps or 20
        args.batch, args.seq_len = 4, 128
        args.gen_tokens = 16
        args.eval_every_s = 1e9

    import sentencepiece as spm
    import transformers

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    os.makedirs(args.out, exist_ok=True)
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if cuda else ""))

    tok = spm.SentencePieceProcessor(model_file=args.tokenizer)
    vocab = tok.get_piece_size()
    train = load_bin(os.path.join(args.data, "train.bin"))
    val = load_bin(os.path.join(args.data, "val.bin"))
    assert int(train.max()) < vocab and int(val.max()) < vocab
    log(f"data: train {train.numel():,d} tokens, val {val.numel():,d} tokens, vocab {vocab}")

    model, pattern = build_model(args.arch, vocab, special_ids(tok))
    patched_norm = ensure_grouped_mamba2_norm(model) if args.arch == "mamba2" else False
    fast = [] if args.no_fast_scan else install_fast_scan()
    n_total, n_body = count_params(model)
    log(f"{args.arch}: pattern {pattern} ({len(pattern)} layers), params {n_total:,d} "
        f"({n_body:,d} without embeddings/head); grouped-norm patch: {patched_norm}")
    model.to(device).train()

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8, **({"fused": True} if cuda else {}))

    data = train.to(device)
    T, Bsz = args.seq_len, args.batch
    offs = torch.arange(T + 1, device=device)
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    val_win = windows(val, T)
    quick_win = val_win[torch.randperm(val_win.shape[0], generator=torch.Generator().manual_seed(0))[:32]]
    if args.smoke:
        val_win = val_win[:8]
        quick_win = val_win[:4]

    stop = {"why": None}

    def on_signal(sig, frame):
        if stop["why"] is None:
            stop["why"] = signal.Signals(sig).name
            log(f"got {stop['why']}: stopping after this step and saving")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    budget = args.minutes * 60.0

    def lr_at(progress):
        if progress < args.warmup_frac:
            return args.lr * max(progress / args.warmup_frac, 0.01)
        q = min(1.0, (progress - args.warmup_frac) / max(1e-9, 1.0 - args.warmup_frac))
        return args.lr * (args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * q)))

    log(f"training: batch {Bsz} x seq {T} = {Bsz * T} tokens/step, peak lr {args.lr}, "
        + (f"{args.steps} steps" if args.steps else f"{args.minutes} min budget"))
    step, tokens, ema, losses = 0, 0, None, []
    t_start = time.time()
    last_log = last_eval = t_start
    history = []
    while True:
        now = time.time()
        elapsed = now - t_start
        progress = step / args.steps if args.steps else elapsed / budget
        if progress >= 1.0 or stop["why"]:
            break
        lr = lr_at(progress)
        for gparam in opt.param_groups:
            gparam["lr"] = lr
        ix = torch.randint(0, data.numel() - T - 1, (Bsz,), generator=gen).to(device)
        batch = data[ix[:, None] + offs]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            logits = model(input_ids=batch[:, :-1], use_cache=False).logits
        loss = F.cross_entropy(logits.float().reshape(-1, vocab), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += Bsz * T
        if step % 10 == 0 or args.smoke or step < 10:
            lv = loss.item()
            if not math.isfinite(lv):
                log(f"non-finite loss at step {step}; stopping")
                stop["why"] = "nan"
                break
            ema = lv if ema is None else 0.9 * ema + 0.1 * lv
            losses.append(lv)
        now = time.time()
        if now - last_log >= args.log_every_s or args.smoke or step == 1:
            last_log = now
            el = now - t_start
            log(f"step {step:6d} | tok {tokens / 1e6:8.2f}M | loss {loss.item():.4f} (ema {ema if ema else float('nan'):.4f})"
                f" | lr {lr:.2e} | gnorm {float(gnorm):.2f} | {tokens / max(el, 1e-9) / 1e3:.1f}k tok/s | {el:.0f}s")
        if now - last_eval >= args.eval_every_s:
            last_eval = now
            vl = evaluate(model, quick_win, Bsz, device, cuda)
            history.append({"step": step, "tokens": tokens, "s": round(now - t_start, 1), "val_loss_quick": vl})
            log(f"  quick val loss {vl:.4f} (ppl {math.exp(vl):.1f}) on {quick_win.shape[0]} windows")
    train_s = time.time() - t_start
    log(f"training stopped ({stop['why'] or 'budget reached'}) after {step} steps, {tokens:,d} tokens, {train_s:.0f}s")

    # ---- evaluation, bf16 rounding, save, reload check
    final_train = float(np.mean(losses[-20:])) if losses else float("nan")
    val_master = evaluate(model, val_win, Bsz, device, cuda)
    log(f"val loss (fp32 master weights, {'bf16 autocast' if cuda else 'fp32'}): {val_master:.4f}")
    model.to(torch.bfloat16)
    tmp = args.out + ".save"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    cfgp = os.path.join(tmp, "config.json")
    with open(cfgp) as fh:
        cfgj = json.load(fh)
    if args.arch == "hybrid":
        # transformers 5.x writes only `layers_block_type`; keep the pattern string readable too.
        # Both keys are accepted (and ignored in favour of layers_block_type) when reloading.
        cfgj["hybrid_override_pattern"] = pattern
        cfgj["num_hidden_layers"] = len(pattern)
    with open(cfgp, "w") as fh:
        json.dump(cfgj, fh, indent=2, sort_keys=True)
        fh.write("\n")
    for f in os.listdir(tmp):
        shutil.copy2(os.path.join(tmp, f), os.path.join(args.out, f))
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copy2(args.tokenizer, os.path.join(args.out, "tokenizer.model"))
    sd_bf16 = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    del model, opt
    if cuda:
        torch.cuda.empty_cache()

    if cuda:  # plain fp32 (no TF32) for the numbers recorded about the saved weights
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    cls = transformers.NemotronHForCausalLM if args.arch == "hybrid" else transformers.Mamba2ForCausalLM
    model = cls.from_pretrained(args.out, dtype=torch.float32).to(device)
    if args.arch == "mamba2":
        ensure_grouped_mamba2_norm(model)
    got = getattr(model.config, "hybrid_override_pattern", None) if args.arch == "hybrid" else "M" * model.config.num_hidden_layers
    assert got == pattern, f"reloaded pattern {got} != {pattern}"
    sd2 = model.state_dict()
    assert set(sd2) == set(sd_bf16), set(sd2) ^ set(sd_bf16)
    assert all(torch.equal(sd2[k].cpu(), sd_bf16[k].float()) for k in sd_bf16), "reloaded weights differ"
    log(f"reloaded {args.out} (fp32 upcast of the saved bf16 weights): pattern {got}, {len(sd2)} tensors match")

    val_saved = evaluate(model, val_win, Bsz, device, False)
    val_t = val_win[:, 1:].reshape(-1)
    uni = unigram_loss(train, val_t, vocab)
    held = torch.tensor(tok.encode(open(args.heldout, encoding="utf-8").read()), dtype=torch.int64)
    held_loss = evaluate(model, held[None, :], 1, device, False)
    log(f"val loss (saved bf16 weights, fp32 compute): {val_saved:.4f}  ppl {math.exp(val_saved):.2f}"
        f"  | unigram ppl {math.exp(uni):.1f} | heldout.txt ({held.numel()} tokens) ppl {math.exp(held_loss):.2f}")
    gens = samples(model, tok, device, args.gen_tokens, args.seed)

    metrics = {
        "arch": args.arch, "class": cls.__name__, "pattern": pattern, "layers": len(pattern),
        "params_total": n_total, "params_without_embeddings": n_body,
        "config": HYBRID if args.arch == "hybrid" else MAMBA2,
        "vocab_size": vocab, "seq_len": T, "batch": Bsz, "tokens_per_step": Bsz * T,
        "steps": step, "tokens_seen": tokens, "epochs": tokens / train.numel(),
        "train_tokens": train.numel(), "val_tokens": int(val_t.numel()),
        "train_wall_s": round(train_s, 1), "tokens_per_s": round(tokens / max(train_s, 1e-9)),
        "stop_reason": stop["why"] or ("steps" if args.steps else "time budget"),
        "lr_peak": args.lr, "lr_min": args.lr * args.min_lr_frac, "warmup_frac": args.warmup_frac,
        "weight_decay": args.wd, "betas": [0.9, 0.95], "grad_clip": 1.0, "seed": args.seed,
        "final_train_loss": final_train,
        "val_loss_master_weights": val_master,
        "val_loss": val_saved, "val_ppl": math.exp(val_saved),
        "unigram_val_loss": uni, "unigram_val_ppl": math.exp(uni),
        "heldout_tokens": held.numel(), "heldout_loss": held_loss, "heldout_ppl": math.exp(held_loss),
        "weights_dtype": "bfloat16", "quick_val_history": history, "samples": gens,
        "patches": {"fast_ssd_scan": fast, "grouped_mamba2_norm_patch": patched_norm},
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": sys.version.split()[0],
                     "device": torch.cuda.get_device_name(device) if cuda else "cpu"},
        "total_wall_s": round(time.time() - T0, 1),
    }
    with open(os.path.join(args.out, "metrics.json"), "w") as fh:
        json.dump(metrics, fh, indent=1)
    log(f"SUMMARY {args.arch}: params {n_total:,d}, steps {step}, tokens {tokens / 1e6:.1f}M "
        f"({metrics['epochs']:.1f} epochs), train loss {final_train:.3f}, val loss {val_saved:.4f} "
        f"(ppl {math.exp(val_saved):.2f}; unigram {math.exp(uni):.1f}), {metrics['tokens_per_s'] / 1e3:.0f}k tok/s, "
        f"wall {metrics['total_wall_s']:.0f}s")


if __name__ == "__main__":
    main()
