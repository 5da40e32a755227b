#!/usr/bin/env bash
# Train the tiny bundled models on one GPU (no network needed). Run from the repository root:
#
#   tools/train_tiny/run_gpu.sh hybrid     # NemotronH hybrid only   (~8 min wall with MINUTES=7)
#   tools/train_tiny/run_gpu.sh mamba2     # pure Mamba-2 only       (~8 min wall with MINUTES=7)
#   tools/train_tiny/run_gpu.sh [all]      # hybrid, then mamba2     (~16-17 min wall with MINUTES=7)
#
# Needs, carried in the working tree: .carry/corpus/{train,val}.bin (tools/train_tiny/build_corpus.sh),
# models/tokenizer.model, models/heldout.txt. Python with torch (CUDA), transformers 5.x, sentencepiece,
# safetensors, numpy.
# Env: MINUTES (training minutes per model, default 7), OUT (default ./out/train_tiny),
#      BATCH (default 64), SEQ (default 512), LR (default 2e-3), EXTRA (more train.py flags).
# Writes, per model, exactly 4 files into $OUT/<arch>/: model.safetensors (bf16), config.json,
# metrics.json, train.log. The full save (plus tokenizer.model, generation_config.json) stays in
# ${WORKDIR:-/tmp/train_tiny}/<arch>.
set -uo pipefail

cd "$(dirname "$0")/../.."
MODE=${1:-all}
MINUTES=${MINUTES:-7}
OUT=${OUT:-$PWD/out/train_tiny}
WORKDIR=${WORKDIR:-/tmp/train_tiny}
BATCH=${BATCH:-64}
SEQ=${SEQ:-512}
LR=${LR:-2e-3}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

case "$MODE" in
  all) ARCHS="hybrid mamba2" ;;
  hybrid|mamba2) ARCHS=$MODE ;;
  *) echo "usage: $0 [hybrid|mamba2|all]" >&2; exit 2 ;;
esac

for f in .carry/corpus/train.bin .carry/corpus/val.bin models/tokenizer.model models/heldout.txt; do
  [ -f "$f" ] || { echo "missing $f (carry .carry/corpus; run tools/train_tiny/build_corpus.sh)" >&2; exit 1; }
done
mkdir -p "$OUT" "$WORKDIR"
echo "== $(date -u +%FT%TZ) run_gpu.sh $MODE: MINUTES=$MINUTES BATCH=$BATCH SEQ=$SEQ LR=$LR OUT=$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
python3 -c "import torch, transformers, sentencepiece, safetensors, numpy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), '| transformers', transformers.__version__, '| sentencepiece', sentencepiece.__version__)" || exit 1

rc_all=0
for arch in $ARCHS; do
  mkdir -p "$OUT/$arch"
  log="$OUT/$arch/train.log"
  echo "== training $arch for $MINUTES min -> $OUT/$arch (log $log)"
  # Hard stop well after the budget: TERM makes train.py save what it has; KILL 60 s later.
  limit=$(python3 -c "print(int($MINUTES*60 + 240))")
  timeout -s TERM -k 60 "$limit" python3 -u tools/train_tiny/train.py --arch "$arch" --minutes "$MINUTES" \
      --batch "$BATCH" --seq-len "$SEQ" --lr "$LR" --out "$WORKDIR/$arch" ${EXTRA:-} 2>&1 \
    | grep --line-buffered -v 'is falling back to its reference PyTorch implementation' | tee "$log"
  rc=${PIPESTATUS[0]}
  for f in model.safetensors config.json metrics.json; do
    if [ -f "$WORKDIR/$arch/$f" ]; then cp "$WORKDIR/$arch/$f" "$OUT/$arch/$f"; chmod 644 "$OUT/$arch/$f"; fi
  done
  echo "== $arch exit code $rc" | tee -a "$log"
  [ "$rc" = 0 ] || rc_all=$rc
done

echo "== summary"
for arch in $ARCHS; do
  ls -l "$OUT/$arch" 2>/dev/null
  python3 - "$OUT/$arch/metrics.json" <<'EOF' || true
import json, sys
m = json.load(open(sys.argv[1]))
print(f"{m['arch']}: {m['pattern']} params {m['params_total']:,d} | steps {m['steps']} tokens {m['tokens_seen']/1e6:.1f}M "
      f"({m['epochs']:.1f} epochs, {m['tokens_per_s']/1e3:.0f}k tok/s) | train loss {m['final_train_loss']:.3f} "
      f"| val loss {m['val_loss']:.4f} ppl {m['val_ppl']:.2f} (master {m['val_loss_master_weights']:.4f}) "
      f"| unigram ppl {m['unigram_val_ppl']:.1f} | heldout ppl {m['heldout_ppl']:.2f} | wall {m['total_wall_s']:.0f}s")
for s in m["samples"]:
    print(f"  {s['prompt']!r} -> greedy {s['greedy'][:160]!r}")
EOF
done
( cd "$OUT" && sha256sum */model.safetensors 2>/dev/null ) || true
exit $rc_all
