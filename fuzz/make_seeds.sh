#!/usr/bin/env bash
# fuzz/make_seeds.sh — (re)writes the committed seed corpora fuzz/corpus/<target>/: the generated ones
# (fuzz/seedgen.c: blobs, safetensors, tokenizer inputs, snapshots of fuzz_models.h's model) and copies of
# fixture files that are seeds as they are (config.json files, the test tokenizer.json). Files named crash-*
# (inputs that crashed a target before its fix) are kept.
# Usage: fuzz/make_seeds.sh [BUILD_DIR]   (default build/cpu; it builds the fuzz_seedgen target there)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build/cpu}
cmake --build "$B" --target fuzz_seedgen -j2 >/dev/null
# regenerate everything but the inputs that once crashed a target (crash-*: regression tests, kept)
find fuzz/corpus -type f ! -name 'crash-*' -delete 2>/dev/null || true
mkdir -p fuzz/corpus/hfconfig fuzz/corpus/tok_json
"$B"/tests/fuzz_seedgen fuzz/corpus
for d in tests/data/*/ models/*/; do
  [ -f "$d/config.json" ] && cp "$d/config.json" "fuzz/corpus/hfconfig/$(basename "$d").json"
done
# variants the parser must also handle: Python's bare Infinity / NaN tokens, and a truncated file
sed 's/{ *"__float__": *"Infinity" *}/Infinity/' tests/data/mamba2_tiny/config.json |
  tr -d '\n' | sed 's/\[ *0.0, *Infinity *\]/[0.0, Infinity]/' > fuzz/corpus/hfconfig/bare_infinity.json
head -c 300 tests/data/nemotronh_hybrid_gelu/config.json > fuzz/corpus/hfconfig/truncated.json
cp tests/data/tokenizer/bpe_tokenizer.json fuzz/corpus/tok_json/test_bpe.json
python3 - <<'PY' 2>/dev/null || true
import json
d = json.load(open("tests/data/tokenizer/bpe_tokenizer.json"))
# the smallest variants: no added tokens; no normalizer; NFKC
d2 = dict(d); d2["added_tokens"] = []; d2["normalizer"] = None
json.dump(d2, open("fuzz/corpus/tok_json/no_added_no_norm.json", "w"))
d3 = dict(d); d3["normalizer"] = {"type": "NFKC"}
json.dump(d3, open("fuzz/corpus/tok_json/nfkc.json", "w"))
PY
du -sh fuzz/corpus; for t in fuzz/corpus/*/; do echo "$(basename "$t"): $(ls "$t" | wc -l) files, $(du -sk "$t" | cut -f1) KB"; done
