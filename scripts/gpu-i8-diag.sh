#!/usr/bin/env bash
# scripts/gpu-i8-diag.sh — one device call that checks and times the INT8 decode step's forms (issue 10) and the
# hybrid's decode kernels (issue 9): build, ctest -L gpu (the defaults: v3 x-stationary GEMV with PDL, the INT8
# fused step, the tensor-core attention prefill), the fused layer's kernels under each v3 grid fill, the attention and
# MLP kernels' --perf, scripts/int8-decode-ab.sh (em-bench, 8B INT8, every form in one run) and a per-kernel breakdown.
# usage (device): run(command="bash scripts/gpu-i8-diag.sh", carry=[".carry/debs"]); logs come back in $OUT.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
O=${OUT:-/tmp/i8diag}; mkdir -p "$O"
exec > >(tee "$O/i8diag.log") 2>&1
T0=$(date +%s)
el() { echo "[$(( $(date +%s) - T0 )) s] == $*"; }
el build; EM_GPU_DEADLINE=${EM_DIAG_BUILD_S:-45} scripts/gpu-check.sh --no-perf > "$O/build.log" 2>&1; tail -12 "$O/build.log"
export LD_LIBRARY_PATH=$PWD/.carry/prefix/usr/lib/x86_64-linux-gnu
B=build-gpu/tests
el "ctest -L gpu"; timeout 170 ctest --test-dir build-gpu -L gpu -j 2 --output-on-failure > "$O/ctest-gpu.log" 2>&1
grep -E 'tests passed|FAIL|Failed|\*\*\*' "$O/ctest-gpu.log" | head -20
el "test_attention_cuda (twin check, both prefill kernels) + --perf"; timeout 90 $B/test_attention_cuda --perf > "$O/attn.log" 2>&1
grep -v ' ok$' "$O/attn.log" | tail -30
el "test_mlp_cuda --perf"; timeout 60 $B/test_mlp_cuda --perf 2>&1 | tail -8
for fill in 100 75 50; do
  el "test_fused_cuda --perf, EM_I8_XS_FILL=$fill"
  EM_I8_XS_FILL=$fill timeout 60 $B/test_fused_cuda --perf 2>&1 | grep -E 'INT8 .*(layer|norm_linear|gated_linear|plain)|fused layer|passed' | tail -9
done
el "test_linear_i8_cuda --perf"; timeout 60 $B/test_linear_i8_cuda --perf 2>&1 | tail -13
for m in hybrid mamba2; do
  for ab in 1 0; do
    el "bundled $m, EM_AUX_FUSED=$ab"; EM_AUX_FUSED=$ab timeout 30 build-gpu/examples/em-bench -m build-gpu/models/$m.emb -p 64 -n 128 -r 5 2>&1 | grep -E 'decode|step'
  done
done
el "int8-decode-ab"; EM_BENCH_TMP=/dev/shm/emb timeout 240 scripts/int8-decode-ab.sh 2>&1 | grep -v '^{'
blob=/dev/shm/emb/mamba2-8b-v50288-int8.emb
el "breakdown (defaults)"; timeout 60 build-gpu/examples/em-bench -m $blob -p 16 -n 32 -r 1 --breakdown 2>&1 | tail -14
el end
