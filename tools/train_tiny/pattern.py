#!/usr/bin/env python3
"""Hybrid layer allocation (arXiv 2406.07887, Appendix A, Algorithm 1).

Same as Megatron-LM `_allocate_auto` in megatron/core/ssm/mamba_hybrid_layer_allocation.py.
Symbols: M = Mamba-2, * = self-attention, - = MLP.
Note: Python's round() is round-half-to-even; Megatron uses the same builtin.

    python3 tools/train_tiny/pattern.py 16 0.17 0.5    # print one pattern
    python3 tools/train_tiny/pattern.py --check         # verify the reference examples
"""
import sys

MAMBA, ATTENTION, MLP = "M", "*", "-"


def allocate(total, attention_ratio, mlp_ratio):
    attention_count = round(total * attention_ratio)
    mamba_count = total - attention_count
    sections = attention_count + 1
    section_len = mamba_count / sections
    layers = [MAMBA] * total
    x = section_len
    for l in range(total):
        if x < 0.5:
            layers[l] = ATTENTION
            x += section_len
        else:
            x -= 1
    mlp_count = round(total * mlp_ratio)
    if mlp_count > 0:
        mamba_count -= mlp_count
        ratio = mamba_count / mlp_count
        x = ratio
        for l in range(total):
            if layers[l] == MAMBA:
                if x < 0.5:
                    layers[l] = MLP
                    x += ratio
                else:
                    x -= 1
    return "".join(layers)


EXAMPLES = [
    (24, 0.08, 0.50, "M-M-M--*M-M-M-M-*M--M-M-"),
    (56, 0.08, 0.50, "M-M-M--M-M*-M-M-M-M--M*-M-M-M-M-M*--M-M-M-M-M*-M--M-M-M-"),
    (24, 0.17, 0.00, "MMMM*MMMM*MMMM*MMMM*MMMM"),
    (24, 0.50, 0.50, "-*-*-*-*-*-**-*-*-*-*-*-"),
    (48, 0.08, 0.50, "M-M-M--M-*M-M-M-M--*M-M-M-M-*M--M-M-M-*M-M--M-M-"),
    (24, 0.08, 0.30, "MM-MM-M*M-MMM-MM*-MM-MM-"),
    (24, 0.08, 0.00, "MMMMMMM*MMMMMMMM*MMMMMMM"),
]


def check():
    ok = True
    for n, a, m, want in EXAMPLES:
        got = allocate(n, a, m)
        status = "ok" if got == want else "MISMATCH"
        ok &= got == want
        print(f"{n:3d} {a:.2f} {m:.2f} {got} {status}")
    return ok


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--check":
        sys.exit(0 if check() else 1)
    n, a, m = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    print(allocate(n, a, m))
