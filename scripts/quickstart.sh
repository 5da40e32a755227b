#!/usr/bin/env bash
# scripts/quickstart.sh — README's first command: install the build dependencies (Debian), build, pack
# the model and generate with it. Until the bundled model and the tokenizer land, the model is the tiny
# HF test fixture (tests/data/mamba2_tiny) and the prompt is token ids.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
for p in $(cat scripts/deps-debian.txt); do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  echo "quickstart: installing ${missing[*]}"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "quickstart: building (log: build/quickstart-build.log)"
mkdir -p build
if ! { cmake --preset cpu && cmake --build --preset cpu -j "$(nproc)"; } >build/quickstart-build.log 2>&1; then
  tail -30 build/quickstart-build.log; echo "quickstart: the build failed (whole log above)"; exit 1
fi
B=build/cpu
[ -f $B/mamba2_tiny.emb ] || $B/tools/em-pack tests/data/mamba2_tiny -o $B/mamba2_tiny.emb --dtype f32
echo "quickstart: greedy continuation of a 5-token prompt (token ids; text comes with the tokenizer):"
$B/examples/em-generate -m $B/mamba2_tiny.emb --ids 1,2,3,4,5 -n 16
