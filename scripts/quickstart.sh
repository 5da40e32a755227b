#!/usr/bin/env bash
# scripts/quickstart.sh — README's first command: install the build dependencies (Debian), build, pack
# the bundled model (models/hybrid) and continue an English prompt with it.
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
# The embedded default: a 5.3 M-parameter Mamba-2-Hybrid trained by the project (models/README.md), with its
# SentencePiece tokenizer, packed into one blob. On a machine with a GPU the hybrid still runs on the CPU: the
# CUDA executor runs pure Mamba-2 models so far (models/mamba2 is the pure variant).
[ -f $B/tiny-hybrid.emb ] || $B/tools/em-pack models/hybrid -o $B/tiny-hybrid.emb
prompt="It is a truth universally acknowledged, that"
echo "quickstart: the bundled model continues \"$prompt\" (temperature 0.7, top-p 0.9, seed 3):"
echo
$B/examples/em-generate -m $B/tiny-hybrid.emb -p "$prompt" -n 48 --temp 0.7 --top-p 0.9 --repeat-penalty 1.1 --seed 3
echo
echo "quickstart: chat with it:  $B/examples/em-chat -m $B/tiny-hybrid.emb"
echo "            greedy:        $B/examples/em-generate -m $B/tiny-hybrid.emb -p \"The function returns\" -n 64"
