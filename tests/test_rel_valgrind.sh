#!/usr/bin/env bash
# test_rel_valgrind.sh — valgrind memcheck of em-generate on the bundled model (issue 11; docs/reliability.md).
# Proves: a whole text generation (blob open, tokenizer load, plan, session, chunked prefill, sampling with
# temperature / top-p / repetition penalty, streaming, teardown) with 2 OpenMP threads has 0 memcheck errors
# (invalid reads/writes, uses of uninitialized values, bad frees) and 0 bytes definitely or indirectly lost.
# "Possibly lost" and "still reachable" blocks are not counted: they are the OpenMP runtime's thread stacks and
# pools and SentencePiece's static tables, alive until exit by design (the log lists them). No suppressions.
# SKIPs (exit 77) without valgrind.
# Usage: test_rel_valgrind.sh EM_GENERATE MODEL.emb
set -uo pipefail
gen=$1 model=$2
if ! command -v valgrind >/dev/null; then echo "SKIP test_rel_valgrind: valgrind is not installed"; exit 77; fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# --errors-for-leak-kinds makes definite and indirect leaks errors, so --error-exitcode reports them too
valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
  --show-leak-kinds=definite,indirect --num-callers=30 --log-file="$log" \
  "$gen" -m "$model" -p "It is a truth universally acknowledged, that" -n 12 --temp 0.7 --top-p 0.9 \
  --repeat-penalty 1.1 --seed 3 --threads 2
rc=$?
sed -n '/HEAP SUMMARY/,$p' "$log"
errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$log" | tail -1)
definite=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tail -1)
indirect=$(sed -n 's/.*indirectly lost: \([0-9,]*\) bytes.*/\1/p' "$log" | tail -1)
echo "valgrind: exit $rc, ${errors:-?} errors, ${definite:-0} bytes definitely lost, ${indirect:-0} indirectly lost"
if [ "$rc" -ne 0 ] || [ "${errors:-1}" != 0 ] || [ "${definite:-0}" != 0 ] || [ "${indirect:-0}" != 0 ]; then
  echo "FAIL test_rel_valgrind (the whole log follows)"; cat "$log"; exit 1
fi
echo "test_rel_valgrind: 1 passed, 0 failed"
