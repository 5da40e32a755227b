#!/usr/bin/env bash
# scripts/test.sh — the whole test suite, as CI runs it (README's second command).
# Stages, each with a time budget (seconds) so a hang fails fast instead of eating CI's 90 minutes:
#   1. build the CPU preset (-Werror) and run every ctest label; gpu tests SKIP visibly without a GPU
#   2. build the ASan+UBSan preset and run the CPU suite under it (blob corruption matrix included)
#   3. where nvcc is installed: build the CUDA preset (proves the kernels compile) and run the gpu label,
#      which runs on a GPU and SKIPs visibly ("SKIP ...: no CUDA device") without one
#   4. scripts/stages/*.sh (fuzzing, the aarch64 cross build under qemu, packaging, ...)
# Usage: scripts/test.sh [--fast]   (--fast: stage 1 only)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

stage() { # stage NAME BUDGET_S COMMAND...
  local name=$1 budget=$2; shift 2
  echo "== stage: $name (budget ${budget}s)"
  local t0=$SECONDS
  if ! timeout --foreground "$budget" "$@"; then
    echo "== stage FAILED: $name ($((SECONDS - t0))s)"; exit 1
  fi
  echo "== stage ok: $name ($((SECONDS - t0))s)"
}

stage "configure+build cpu" 900 bash -c "cmake --preset cpu >/dev/null && cmake --build --preset cpu -j $jobs"
stage "ctest cpu (all labels)" 900 ctest --preset cpu -j "$jobs"
if [ "${1:-}" != "--fast" ]; then
  stage "configure+build asan" 900 bash -c "cmake --preset asan >/dev/null && cmake --build --preset asan -j $jobs"
  stage "ctest asan+ubsan (cpu labels)" 1200 env ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --preset asan -j "$jobs"
fi
if [ "${1:-}" != "--fast" ] && { command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; }; then
  export PATH=$PATH:/usr/local/cuda/bin
  stage "configure+build cuda" 1200 bash -c "cmake --preset cuda >/dev/null && cmake --build --preset cuda -j $jobs"
  stage "ctest gpu label" 600 ctest --preset cuda -L gpu --output-on-failure -V
fi
# 4. the areas' own stages: scripts/stages/*.sh in name order, each run with the budget its "# budget: N"
#    line gives (default 600 s). A stage that cannot run here prints a SKIP line and exits 0.
if [ "${1:-}" != "--fast" ]; then
  for f in scripts/stages/*.sh; do
    [ -e "$f" ] || continue
    budget=$(sed -n 's/^# budget: *\([0-9][0-9]*\).*/\1/p' "$f" | head -1)
    stage "$(basename "$f" .sh)" "${budget:-600}" bash "$f"
  done
fi
echo "== all stages passed"
