#!/usr/bin/env bash
# scripts/chat-reset-bench.sh — what em-chat's /reset costs against prefilling its system prompt (issue 11),
# measured by em-chat itself (/stats): one process with the snapshot (/reset restores it), one without
# (--no-snapshot: /reset prefills the system prompt again, so the warm prefill is timed as well as the first).
# Each process does N resets; the fastest is reported. Prints one markdown row per blob.
#
#   scripts/chat-reset-bench.sh EM_CHAT BACKEND BLOB... (env: N=10, SYSTEM=examples/system-prompt.txt)
set -uo pipefail
chat=$1 backend=$2; shift 2
n=${N:-10}
sys=${SYSTEM:-$(dirname "$0")/../examples/system-prompt.txt}
cmds() { for _ in $(seq "$n"); do echo /reset; done; echo /stats; echo /quit; }
field() { grep -ao "$1" <<<"$2" | head -1 | grep -o '[0-9.]*' | tail -1; }
echo "| blob | backend | system prompt tokens | snapshot bytes | first prefill ms | warm prefill ms (fastest of $n) | restore ms (fastest of $n) | prefill / restore |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for blob in "$@"; do
    a=$(cmds | "$chat" -m "$blob" --backend "$backend" --system-file "$sys" 2>&1 | grep -a '^\[system prompt')
    b=$(cmds | "$chat" -m "$blob" --backend "$backend" --system-file "$sys" --no-snapshot 2>&1 | grep -a '^\[system prompt')
    if [ -z "$a" ] || [ -z "$b" ]; then echo "| $(basename "$blob") | $backend | em-chat failed: ${a:-?} ${b:-?} |"; continue; fi
    tok=$(field 'system prompt: [0-9]* tokens' "$a")
    snap=$(field 'snapshot [0-9]* bytes' "$a")
    first=$(field 'prefilled in [0-9.]* ms' "$a")
    restore=$(field 'fastest of [0-9]*: [0-9.]* ms' "$a")
    warm=$(field 'fastest of [0-9]*: [0-9.]* ms' "$b")
    ratio=$(awk -v w="$warm" -v r="$restore" 'BEGIN { if (r > 0) printf "%.0fx", w / r; else print "?" }')
    echo "| $(basename "$blob") | $backend | $tok | $snap | $first | $warm | $restore | $ratio |"
done
