#!/usr/bin/env bash
# scripts/int8-decode-ab.sh — the INT8 decode step's forms side by side in one run (issue 10), on the GPU machine
# after scripts/gpu-check.sh has built build-gpu: one random INT8 blob of the Mamba-2 8B shape, then em-bench with
#   default      (fifth session on)                      v3 x-stationary GEMVs (4 rows a group) with PDL, fused step
#   xs-r2        EM_I8_XS=r2                             the same with 2 rows a group
#   xs-nopdl     EM_I8_XS_PDL=0                          v3 launched without PDL
#   fill75       EM_I8_XS_FILL=75                        v3's grid at 3/4 of the blocks that fit (room for the next kernel)
#   fill50       EM_I8_XS_FILL=50                        ... at 1/2
#   fill200      EM_I8_XS_FILL=200                       ... 2 waves of blocks half as tall (staggered exits)
#   fill400      EM_I8_XS_FILL=400                       ... 4 waves
#   xs-sixop     EM_STEP_MODE=unfused                    v3 GEMVs in the six-op step
#   v1-sixop     EM_I8_XS=off                            v1 GEMVs, six kernels a layer (the default before)
#   v1-fused     EM_I8_XS=off EM_STEP_MODE=fused-i8      v1's fused forms
# usage: scripts/int8-decode-ab.sh [VOCAB]   (default 50288); JSON lines to $OUT/int8-ab.jsonl when $OUT is set.
#        EM_AB_ONLY="default fill200": only those labels.
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
    [ -z "${EM_AB_ONLY:-}" ] || [[ " $EM_AB_ONLY " == *" $label "* ]] || return 0
    echo "== $label: $* em-bench -m $(basename "$blob") -p 512 -n 128 -r 3"
    env "$@" "$B/examples/em-bench" -m "$blob" -p 512 -n 128 -r 3 --json |
        sed "s/^{/{\"label\":\"$label\",\"commit\":\"$commit\",/" | tee -a "$out/int8-ab.jsonl"
}
run default
run xs-r2 EM_I8_XS=r2
run xs-nopdl EM_I8_XS_PDL=0
run fill75 EM_I8_XS_FILL=75
run fill50 EM_I8_XS_FILL=50
run fill200 EM_I8_XS_FILL=200
run fill400 EM_I8_XS_FILL=400
run xs-sixop EM_STEP_MODE=unfused
run v1-sixop EM_I8_XS=off
run v1-fused EM_I8_XS=off EM_STEP_MODE=fused-i8
python3 - "$out/int8-ab.jsonl" <<'PY' || true
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"{r['label']:12s} {r['decode_ms_per_token']:.3f} ms/token  {100*r['roofline_fraction']:.1f} % of "
          f"{r['roofline_ms']:.3f} ms  step {r['step']}  prefill {r['prefill_tok_s']:.0f} tok/s")
PY
