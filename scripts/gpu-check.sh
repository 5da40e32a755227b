#!/usr/bin/env bash
# scripts/gpu-check.sh — the one script to run on the GPU machine (H100/H200, CUDA 13, cmake; no network), from
# the repo root. Builds edgemamba with the CUDA kernels, runs the gpu tests and the whole suite, then the gpu
# tests' --perf modes, and prints a summary table last. docs/gpu.md has the whole procedure.
#
#   here:   scripts/gpu-prepare.sh                    # once: Debian packages of xxhash/cjson/pkgconf -> .carry/debs
#   there:  scripts/gpu-check.sh [--no-perf]          # run with carry [".carry/debs"]
# Logs: $EM_GPU_BUILD/gpu-check-logs/<stage>.log; with $OUT set, also $OUT/gpu-check-summary.txt and
# $OUT/gpu-check-logs.tar.gz (two files: the device tool brings back only a few).
#
# Stages (each with a time budget, so that one hang cannot eat the run's 10 minutes):
#   deps       unpack .carry/debs into .carry/prefix (dpkg-deb -x; no root) and point pkg-config/cmake at it
#   configure  cmake -DEM_CUDA=ON -DEM_CUDA_ARCHITECTURES=90 into $EM_GPU_BUILD (default build-gpu)
#   build      all cores
#   ctest-gpu  ctest -L gpu --output-on-failure; a gpu test that SKIPs on a machine with a GPU is a failure
#   ctest-all  the whole suite
#   perf       every gpu test binary (tests/test_*_cuda) with --perf
# Environment: EM_GPU_BUILD (build folder), EM_GPU_ARCH (default 90), EM_GPU_CMAKE_ARGS (extra configure args),
#   EM_GPU_DEADLINE (seconds, default 560: stages are cut to fit, so that the summary prints inside a 600 s run).
# Exit status: 0 if every stage that ran passed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
root=$PWD
build=${EM_GPU_BUILD:-build-gpu}
arch=${EM_GPU_ARCH:-90}
jobs=$(nproc 2>/dev/null || echo 4)
deadline=${EM_GPU_DEADLINE:-560}
perf=1
[ "${1:-}" = "--no-perf" ] && perf=0
logs=$build/gpu-check-logs
rm -rf "$logs"
mkdir -p "$logs"

declare -a sum_name sum_status sum_secs
record() { sum_name+=("$1"); sum_status+=("$2"); sum_secs+=("$3"); }
failed=0

# stage NAME BUDGET_S COMMAND...: runs COMMAND with output to $logs/NAME.log (and the terminal), records the result.
# BUDGET_S 0: no time limit, and COMMAND may be a shell function (timeout runs only programs).
stage() {
    local name=$1 budget=$2; shift 2
    local t0=$SECONDS rc left=$((deadline - SECONDS))
    if [ "$left" -lt 15 ]; then record "$name" "not run (out of time)" 0; failed=1; return 1; fi
    [ "$budget" -gt "$left" ] && budget=$left
    if [ "$budget" -gt 0 ]; then echo "== $name (budget ${budget}s)"; else echo "== $name"; fi
    if [ "$budget" -gt 0 ]; then timeout --foreground "$budget" "$@" 2>&1 | tee "$logs/$name.log"
    else "$@" 2>&1 | tee "$logs/$name.log"
    fi
    rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 0 ]; then record "$name" ok $((SECONDS - t0))
    elif [ "$rc" -eq 124 ]; then record "$name" "TIMEOUT" $((SECONDS - t0)); failed=1
    else record "$name" "FAIL (rc $rc)" $((SECONDS - t0)); failed=1
    fi
    return "$rc"
}

# ---- environment ------------------------------------------------------------------------------------------------
command -v nvcc >/dev/null || [ ! -x /usr/local/cuda/bin/nvcc ] || export PATH=/usr/local/cuda/bin:$PATH
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
have_gpu=0
[ -n "$gpu_name" ] && have_gpu=1
{
    echo "date: $(date -u +%FT%TZ)  host: $(uname -srm)"
    # shellcheck disable=SC1091
    [ -r /etc/os-release ] && . /etc/os-release && echo "os: ${PRETTY_NAME:-?}"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem \
        --format=csv,noheader 2>/dev/null ||
        echo "nvidia-smi: not available"
    nvcc --version 2>&1 | tail -1
    cmake --version 2>&1 | head -1
    cc --version 2>&1 | head -1
    echo "commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?') (+ working tree)"
} 2>&1 | tee "$logs/env.log"

# ---- deps: the carried Debian packages --------------------------------------------------------------------------
# shellcheck disable=SC2317  # deps is called through stage
deps() {
    local debs=$root/.carry/debs prefix=$root/.carry/prefix
    if ! ls "$debs"/*.deb >/dev/null 2>&1; then
        echo "no .carry/debs: using the system's libxxhash/libcjson/pkg-config (run scripts/gpu-prepare.sh here first)"
        return 0
    fi
    rm -rf "$prefix"
    mkdir -p "$prefix"
    local d
    for d in "$debs"/*.deb; do
        if command -v dpkg-deb >/dev/null; then
            dpkg-deb -x "$d" "$prefix" || { echo "cannot unpack $d"; return 1; }
        else # a .deb is an ar archive holding data.tar.{xz,zst,gz}; GNU tar picks the decompressor itself
            local tmp
            tmp=$(mktemp -d)
            if ! (cd "$tmp" && ar x "$d" && tar -xf "$tmp"/data.tar.* -C "$prefix"); then
                echo "cannot unpack $d"; return 1
            fi
            rm -rf "$tmp"
        fi
        echo "unpacked $(basename "$d")"
    done
    # The .pc files say prefix=/usr (libcjson.pc names /usr paths outright): rewrite every /usr variable.
    find "$prefix" -name '*.pc' -exec sed -i -E "s#^([A-Za-z_]+)=/usr#\1=$prefix/usr#" {} +
    find "$prefix" -name '*.pc' -exec grep -H -E '^[a-z_]+=' {} +
}
stage deps 0 deps
prefix=$root/.carry/prefix
cmake_extra=()
if [ -d "$prefix/usr" ]; then
    multi=$prefix/usr/lib/x86_64-linux-gnu
    export PKG_CONFIG_PATH=$multi/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
    export CMAKE_PREFIX_PATH=$prefix/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
    export LD_LIBRARY_PATH=$multi${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    # Prefer the carried pkgconf: it is known to read these .pc files; the system's is used only if ours will not run.
    if [ -x "$prefix/usr/bin/pkgconf" ] && "$prefix/usr/bin/pkgconf" --version >/dev/null 2>&1; then
        cmake_extra+=("-DPKG_CONFIG_EXECUTABLE=$prefix/usr/bin/pkgconf")
    fi
fi

# ---- configure, build -------------------------------------------------------------------------------------------
gen=()
command -v ninja >/dev/null && [ ! -f "$build/CMakeCache.txt" ] && gen=(-G Ninja)
# shellcheck disable=SC2086  # EM_GPU_CMAKE_ARGS is a list of arguments
stage configure 120 cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DEM_CUDA=ON \
    -DEM_CUDA_ARCHITECTURES="$arch" "${cmake_extra[@]}" ${EM_GPU_CMAKE_ARGS:-} &&
stage build 300 cmake --build "$build" -j "$jobs"
built=$?

# ---- tests ------------------------------------------------------------------------------------------------------
if [ "$built" -eq 0 ]; then
    stage ctest-gpu 120 ctest --test-dir "$build" -L gpu --output-on-failure
    # ctest counts a Skipped test as passed; on a machine with a GPU a gpu test must run, not skip.
    if [ "$have_gpu" -eq 1 ] && grep -q 'Skipped' "$logs/ctest-gpu.log"; then
        record "ctest-gpu: none skipped" "FAIL (skipped on a GPU machine)" 0; failed=1
    elif [ "$have_gpu" -eq 0 ]; then
        record "ctest-gpu: none skipped" "n/a (no GPU here)" 0
    fi
    stage ctest-all 240 ctest --test-dir "$build" -j "$jobs" --output-on-failure
    if [ "$perf" -eq 1 ] && [ "$have_gpu" -eq 1 ]; then
        for t in "$build"/tests/test_*_cuda; do
            [ -x "$t" ] || continue
            stage "perf-$(basename "$t")" 180 "$t" --perf
        done
    fi
fi

# ---- summary (last, so that it is what the reply's tail shows) ---------------------------------------------------
cp -f "$build/CMakeCache.txt" "$logs/" 2>/dev/null
[ -f "$build/Testing/Temporary/LastTest.log" ] && cp -f "$build/Testing/Temporary/LastTest.log" "$logs/"
# The table printed last (what the device tool's reply tail shows).
summary() {
    echo "== gpu-check summary: ${gpu_name:-no GPU}; logs in $logs${OUT:+ and \$OUT/gpu-check-logs.tar.gz}"
    printf '%-28s | %-34s | %5s\n' stage status s
    for i in "${!sum_name[@]}"; do
        printf '%-28s | %-34s | %5s\n' "${sum_name[$i]}" "${sum_status[$i]}" "${sum_secs[$i]}"
    done
    for f in "$logs"/ctest-gpu.log "$logs"/ctest-all.log; do
        [ -f "$f" ] || continue
        grep -E 'tests passed|tests failed|Skipped|\*\*\*Failed|Timeout' "$f" | sed "s#^#$(basename "$f" .log): #"
    done
    for f in "$logs"/perf-*.log; do
        [ -f "$f" ] || continue
        echo "-- $(basename "$f" .log)"
        grep -E '^measured:|^device 0:| \| ' "$f"
    done
}
echo
summary | tee "$logs/summary.txt"
if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    cp -f "$logs/summary.txt" "$OUT/gpu-check-summary.txt"
    tar -czf "$OUT/gpu-check-logs.tar.gz" -C "$build" gpu-check-logs
fi
exit "$failed"
