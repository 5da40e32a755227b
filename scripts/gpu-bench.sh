#!/usr/bin/env bash
# scripts/gpu-bench.sh — the decode/prefill benchmarks of docs/benchmarks.md, on the GPU machine, after
# scripts/gpu-check.sh has built build-gpu (same carry: .carry/debs). Writes random-init blobs of the Mamba-2
# 8B shape to local disk (never into the repo), runs em-bench on them and on the bundled tiny model, and
# prints one line per model last. With $OUT set, the JSON lines go to $OUT/bench.jsonl.
#
#   scripts/gpu-bench.sh [VOCABS...]     (default: 50288 256000)
# EM_BENCH_MODES="fused-nopdl unfused late" (environment): also run the first vocab's blob with those decode-step
# forms (EM_STEP_MODE / EM_PDL_TRIGGER, runtime/cuda_exec.c), side by side in the same run.
# EM_BENCH_INT8=1: also each vocab's INT8 blob (em-pack --random-init --dtype int8), its prompt both ways
#   (the default: dequantized slabs + cuBLASLt, at pp512 and pp4096; and EM_I8_PREFILL=gemv: the INT8 GEMV).
# EM_BENCH_HYBRID=1: the hybrid 8B shape (tools/configs/hybrid-8b-v256000.json) at EM_BENCH_HYBRID_CTX contexts.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
B=${EM_GPU_BUILD:-build-gpu}
tmp=${EM_BENCH_TMP:-/tmp/em-bench}
mkdir -p "$tmp"
out=${OUT:-$tmp}
vocabs=("$@")
[ ${#vocabs[@]} -eq 0 ] && vocabs=(50288 256000)
export CUDA_MODULE_LOADING=EAGER # every kernel loaded at context creation: memory after create is all there is
[ -n "${LD_LIBRARY_PATH:-}" ] || export LD_LIBRARY_PATH=$PWD/.carry/prefix/usr/lib/x86_64-linux-gnu
commit=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
echo "== gpu-bench: commit $commit (+ working tree), $(date -u +%FT%TZ), $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
: > "$out/bench.jsonl"

bench() { # bench LABEL BLOB ARGS...
    local label=$1 blob=$2; shift 2
    echo "== em-bench $label: em-bench -m $(basename "$blob") $*"
    "$B/examples/em-bench" -m "$blob" "$@" --json | sed "s/^{/{\"label\":\"$label\",\"commit\":\"$commit\",/" |
        tee -a "$out/bench.jsonl"
}

# the bundled tiny Mamba-2 (real weights)
if [ -f models/mamba2/model.safetensors ]; then
    "$B/tools/em-pack" models/mamba2 -o "$tmp/tiny-mamba2.emb" >/dev/null && bench tiny-mamba2 "$tmp/tiny-mamba2.emb" -p 512 -n 128 -r 5 --breakdown
fi
if [ -f models/hybrid/model.safetensors ]; then # the bundled hybrid: attention + MLP layers on the device
    "$B/tools/em-pack" models/hybrid -o "$tmp/tiny-hybrid.emb" >/dev/null && bench tiny-hybrid "$tmp/tiny-hybrid.emb" -p 512 -n 128 -r 5
fi
# em-chat's system prompt: /reset (snapshot restore) against its prefill, on the device (issue 11)
chat_blobs=()
for m in tiny-mamba2 tiny-hybrid; do [ -f "$tmp/$m.emb" ] && chat_blobs+=("$tmp/$m.emb"); done
if [ ${#chat_blobs[@]} -gt 0 ]; then
    echo "== chat-reset-bench (cuda): em-chat --system-file examples/system-prompt.txt, 10 x /reset"
    scripts/chat-reset-bench.sh "$B/examples/em-chat" cuda "${chat_blobs[@]}" | tee "$out/chat-reset.md"
fi
if [ -n "${EM_BENCH_HYBRID:-}" ]; then # the hybrid 8B shape (issue 9) at contexts 512, 4K and 32K
    blob=$tmp/hybrid-8b-v256000.emb
    [ -f "$blob" ] || "$B/tools/em-pack" --random-init tools/configs/hybrid-8b-v256000.json -o "$blob" | tail -1
    for ctx in ${EM_BENCH_HYBRID_CTX:-512 4096 32768}; do
        bench "hybrid-8b-ctx$ctx" "$blob" -p "$ctx" -n 64 -r 3
    done
    rm -f "$blob"
fi
for v in "${vocabs[@]}"; do
    blob=$tmp/mamba2-8b-v$v.emb
    t0=$SECONDS
    [ -f "$blob" ] || "$B/tools/em-pack" --random-init "tools/configs/mamba2-8b-v$v.json" -o "$blob" | tail -1
    echo "   (random-init: $((SECONDS - t0)) s)"
    # -r 7: (7 + 1 warm-up) x 128 = 1024 decode steps, over which device memory must not grow (issue 7)
    bench "mamba2-8b-v$v" "$blob" -p 512 -n 128 -r 7 --breakdown
    if [ "$v" = "${vocabs[0]}" ]; then
        for mode in ${EM_BENCH_MODES:-}; do
            case $mode in
            late) EM_PDL_TRIGGER=late bench "mamba2-8b-v$v-late" "$blob" -p 512 -n 128 -r 5 ;;
            ks1) EM_GATED_KS1=1 bench "mamba2-8b-v$v-ks1" "$blob" -p 512 -n 128 -r 5 ;;
            *) EM_STEP_MODE=$mode bench "mamba2-8b-v$v-$mode" "$blob" -p 512 -n 128 -r 5 ;;
            esac
        done
    fi
    rm -f "$blob"
    if [ -n "${EM_BENCH_INT8:-}" ]; then # the INT8 (W8A16) blob of the same shape (issue 10)
        blob=$tmp/mamba2-8b-v$v-int8.emb
        [ -f "$blob" ] || "$B/tools/em-pack" --random-init "tools/configs/mamba2-8b-v$v.json" --dtype int8 -o "$blob" | tail -1
        bench "mamba2-8b-v$v-int8" "$blob" -p 512 -n 128 -r 5 --breakdown
        # the prompt path for INT8 weights: the default above (dequantized slabs + cuBLASLt), at 4096 tokens too,
        # and the older INT8 GEMV over groups of 8 tokens (EM_I8_PREFILL=gemv)
        bench "mamba2-8b-v$v-int8-pp4k" "$blob" -p 4096 -n 16 -r 3
        EM_I8_PREFILL=gemv bench "mamba2-8b-v$v-int8-gemv" "$blob" -p 512 -n 16 -r 3
        rm -f "$blob"
    fi
done
echo "== summary (decode ms/token, % of roofline, prefill tok/s)"
python3 - "$out/bench.jsonl" <<'PY' 2>/dev/null || cat "$out/bench.jsonl"
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "breakdown_of" in r:
        ops = {k: v for k, v in r.items() if k not in ("label", "commit", "breakdown_of", "graph_ms", "eager_ms")}
        print(f"{'':18s} breakdown (eager {r['eager_ms']:.3f} ms, graph {r['graph_ms']:.3f} ms): " +
              ", ".join(f"{k} {v:.3f}" for k, v in ops.items()))
        continue
    print(f"{r['label']:18s} {r['decode_ms_per_token']:8.3f} ms/token  {100*r['roofline_fraction']:5.1f} % of {r['roofline_ms']:.3f} ms "
          f"({r['bytes_per_token']/1e9:.2f} GB at {r['read_gbps']:.0f} GB/s)  prefill {r['prefill_tok_s']:9.1f} tok/s  "
          f"mem {r['device_bytes_in_use']/1e9:.3f} GB vs plan {r['plan_bytes']/1e9:.3f} GB  step {r.get('step', '?')}  "
          f"grown {r.get('device_bytes_grown', 0):.0f} B after {r.get('decode_steps', 0)} steps")
PY
