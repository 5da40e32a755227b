#!/usr/bin/env bash
# scripts/stages/20-fuzz.sh — CI stage: build the fuzz targets (fuzz/fuzz_*.c) with clang's libFuzzer, ASan and
# UBSan in build/fuzz, and run each for a bounded time from its committed seed corpus (fuzz/corpus/<target>/).
# Any crash, sanitizer report, leak, timeout (an input running > 10 s) or out-of-memory fails the stage; the
# input that did it is kept in build/fuzz/crashes/<target>/ (add it to fuzz/corpus/<target>/ with the fix, so
# the replay tests of label `fuzz` keep it). Prints the executions each target reached (docs/reliability.md).
# In this build -DEM_FUZZING skips the blob and snapshot checksums (runtime/util.h) so that mutations reach the
# parsers behind them. Without clang or its fuzzer runtime it prints a SKIP line and exits 0.
#   EM_FUZZ_SECONDS=N   seconds per target (default 35; 7 targets)
#   EM_FUZZ_TARGETS="blob snapshot"   a subset
# budget: 420
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${EM_FUZZ_SECONDS:-35}
targets=${EM_FUZZ_TARGETS:-"blob safetensors hfconfig tok_spm tok_bpe tok_json snapshot"}
B=build/fuzz

if ! command -v clang >/dev/null || ! command -v clang++ >/dev/null; then
  echo "SKIP 20-fuzz: clang is not installed (scripts/deps-debian-reliability.txt lists it)"; exit 0
fi
probe=$(mktemp -d)
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return 0; }\n' > "$probe/p.c"
if ! clang -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" 2>/dev/null; then
  rm -rf "$probe"; echo "SKIP 20-fuzz: clang has no libFuzzer runtime (Debian: libclang-rt-dev)"; exit 0
fi
rm -rf "$probe"

t0=$SECONDS
cmake -S . -B "$B" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DEM_CUDA=OFF -DEM_OPENMP=OFF -DEM_WERROR=OFF -DEM_FUZZ_ENGINE=libfuzzer \
  -DEM_SANITIZE=fuzzer-no-link,address,undefined -DCMAKE_C_FLAGS=-DEM_FUZZING -DCMAKE_CXX_FLAGS=-DEM_FUZZING >/dev/null
build_targets=""
for t in $targets; do build_targets="$build_targets --target fuzz_$t"; done
cmake --build "$B" -j "$(nproc 2>/dev/null || echo 2)" $build_targets >"$B/build.log" 2>&1 ||
  { tail -40 "$B/build.log"; echo "20-fuzz: the fuzz build failed"; exit 1; }
echo "20-fuzz: built in $((SECONDS - t0)) s; ${secs} s per target"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=""
printf '%-12s %12s %10s %8s  %s\n' target executions exec/s corpus result
for t in $targets; do
  work="$B/work/$t" crashes="$B/crashes/$t"
  rm -rf "$work"; mkdir -p "$work" "$crashes"
  log="$B/fuzz_$t.log"
  rc=0
  # new inputs go to the scratch corpus (first dir); the committed corpus is only read
  "$B/tests/fuzz_$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$crashes/" "$work" "fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  ncorp=$(ls "$work" | wc -l)
  if [ "$rc" -ne 0 ]; then
    failed="$failed $t"
    printf '%-12s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${eps:-?}" "$ncorp" "FAILED (rc $rc)"
    grep -m1 -E "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|fuzz invariant failed" "$log" || true
    tail -25 "$log"
  else
    printf '%-12s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${eps:-?}" "$ncorp" ok
  fi
done
echo "20-fuzz: done in $((SECONDS - t0)) s"
if [ -n "$failed" ]; then
  echo "20-fuzz: FAILED:$failed (inputs in $B/crashes/, logs in $B/fuzz_<target>.log)"; exit 1
fi
