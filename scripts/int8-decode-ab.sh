#!/usr/bin/env bash
# scripts/int8-decode-ab.sh — the INT8 decode step's forms side by side in one run (issue 10), on the GPU machine
# after scripts/gpu-check.sh has built build-gpu: one random INT8 blob of the Mamba-2 8B shape, then em-bench with
#   v1-sixop    (the default)                          kernels/linear_i8.cu v1 GEMVs, six kernels a layer (PDL)
#   xs-sixop    EM_I8_XS=on                            v3 x-stationary GEMVs (launched without PDL), six kernels
#   xs-fused    EM_I8_XS=on EM_STEP_MODE=fused-i8      v3 in the fused step (norm_linear / ssm / gated_linear)
#   xs-r2-fused EM_I8_XS=r2 EM_STEP_MODE=fused-i8      the same with 2 rows a group
#   v1-fused    EM_STEP_MODE=fused-i8                  v1's fused forms
#   xs-pdl-fused EM_I8_XS=on EM_I8_XS_PDL=1 EM_STEP_MODE=fused-i8   v3 with PDL, the form that failed test_fused_cuda
#               (timing only: its correctness is the open question; docs/int8.md)
# usage: scripts/int8-decode-ab.sh [VOCAB]   (default 50288); JSON lines to $OUT/int8-ab.jsonl when $OUT is set.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
B=${EM_GPU_BUILD:-build-gpu}
v=${1:-50288}
tmp=${EM_BENCH_TMP:-/tmp/em-bench}
out=${OUT:-$tmp}
mkdir -p "$tmp" "$out"
[ -n "${LD_LIBRARY_PATH:-}" ] || export LD_LIBRARY_PATH=$PWD/.carry/prefix/usr/lib/x86_64-linux-gnu
commit=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
blob=$tmp/mamba2-8b-v$v-int8.emb
[ -f "$blob" ] || "$B/tools/em-pack" --random-init "tools/configs/mamba2-8b-v$v.json" --dtype int8 -o "$blob" | tail -1
: > "$out/int8-ab.jsonl"
run() { # run LABEL ENV...
    local label=$1; shift
    echo "== $label: $* em-bench -m $(basename "$blob") -p 512 -n 128 -r 3"
    env "$@" "$B/examples/em-bench" -m "$blob" -p 512 -n 128 -r 3 --json |
        sed "s/^{/{\"label\":\"$label\",\"commit\":\"$commit\",/" | tee -a "$out/int8-ab.jsonl"
}
run v1-sixop EM_I8_XS=off
run xs-sixop EM_I8_XS=on
run xs-fused EM_I8_XS=on EM_STEP_MODE=fused-i8
run xs-r2-fused EM_I8_XS=r2 EM_STEP_MODE=fused-i8
run v1-fused EM_STEP_MODE=fused-i8
run xs-pdl-fused EM_I8_XS=on EM_I8_XS_PDL=1 EM_STEP_MODE=fused-i8
python3 - "$out/int8-ab.jsonl" <<'PY' || true
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"{r['label']:12s} {r['decode_ms_per_token']:.3f} ms/token  {100*r['roofline_fraction']:.1f} % of "
          f"{r['roofline_ms']:.3f} ms  step {r['step']}  prefill {r['prefill_tok_s']:.0f} tok/s")
PY
