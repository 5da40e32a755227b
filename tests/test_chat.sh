#!/usr/bin/env bash
# test_chat.sh — drives em-chat through a pipe (and em-generate from the command line) on the tiny fixture
# packed with the SentencePiece test tokenizer. It proves:
#   - a scripted session runs to /quit with exit 0: /stats, messages, a message continued with '\', /save,
#     /reset (back to the system prompt's position), /load, /load of a missing and of a damaged file (an
#     error line, the conversation goes on), an unknown command, /help; and the same script with the same
#     seed prints the same transcript;
#   - /stats reports the system prompt's tokens and prefill time and, after /reset, the restore's time;
#     --system-file gives the same transcript as --system with the file's text; a missing file or one with a
#     NUL byte is refused, naming the problem;
#   - the continued line is part of its turn (that turn's prompt holds more tokens than the first line alone);
#   - Ctrl-C (SIGINT) stops a running answer, not the program, which then takes the next command;
#   - a hybrid model whose planned context fills up says so and offers /reset, which then works
#     (when the hybrid fixture is given);
#   - em-generate: text output repeats with a seed, --json, --ids on a blob without a tokenizer, and a text
#     prompt on that blob fails with EM_ERR_TOKENIZER.
# em-chat runs with --backend cpu (CI has no GPU; CUDA sessions' snapshots are tests/test_snapshot_cuda.c's).
#
#   test_chat.sh EM_CHAT EM_GENERATE TINY_SPM.emb TINY_NONE.emb WORK_DIR [HYBRID_SPM.emb]
set -u
CHAT=$1 GEN=$2 BLOB=$3 NOTOK=$4 DIR=$5 HYB=${6:-}
fail=0
has() { # has TEXT NEEDLE WHAT
  if ! grep -qF -- "$2" <<<"$1"; then echo "FAIL: $3: no '$2' in:"; echo "$1" | head -40; fail=1; fi
}
mkdir -p "$DIR"
echo "garbage, not a snapshot" >"$DIR/garbage.snap"
rm -f "$DIR/chat.snap"

script() {
  printf '%s\n' "/stats" "Hello there" "first line \\" "second line" "/stats" "/save $DIR/chat.snap" "/reset" "/stats" \
    "/load $DIR/chat.snap" "/load /nonexistent/x.snap" "/load $DIR/garbage.snap" "Tell me more" "/bogus" "/help" "/quit"
}
# (the tiny random model writes any bytes, NUL included: transcripts go through files and `tr -d '\0'`)
script | "$CHAT" --backend cpu -m "$BLOB" --system "You are a helpful assistant." -n 12 --seed 1 >"$DIR/chat1.out" 2>"$DIR/chat.err"
rc=$?
out=$(tr -d '\0' <"$DIR/chat1.out")
[ $rc -eq 0 ] || { echo "FAIL: em-chat exited $rc"; cat "$DIR/chat.err"; fail=1; }
has "$out" "[stats: no answer yet; position" "stats at start"
has "$out" "[saved to $DIR/chat.snap]" "save"
has "$out" "[reset to the system prompt]" "reset"
has "$out" "[loaded $DIR/chat.snap]" "load"
has "$out" "EM_ERR_NOT_FOUND" "load of a missing file"
has "$out" "EM_ERR_SNAPSHOT_CORRUPT" "load of a damaged file"
has "$out" "[unknown command /bogus" "unknown command"
has "$out" "[commands:" "help"
[ -s "$DIR/chat.snap" ] || { echo "FAIL: no snapshot file"; fail=1; }
pos0=$(grep -o 'no answer yet; position [0-9]*' <<<"$out" | head -1 | grep -o '[0-9]*$')
pos_reset=$(grep -A2 -F '[reset to the system prompt]' <<<"$out" | grep -o 'position [0-9]*' | head -1 | grep -o '[0-9]*$')
if [ -z "$pos0" ] || [ "$pos0" = 0 ] || [ "$pos0" != "$pos_reset" ]; then
  echo "FAIL: /reset should return to the system prompt's position ($pos0), got '$pos_reset'"; fail=1
fi
script | "$CHAT" --backend cpu -m "$BLOB" --system "You are a helpful assistant." -n 12 --seed 1 >"$DIR/chat2.out" 2>/dev/null
if ! cmp -s <(grep -av '^\[stats\|^\[system prompt' "$DIR/chat1.out") <(grep -av '^\[stats\|^\[system prompt' "$DIR/chat2.out"); then
  echo "FAIL: the same script and seed gave another transcript (timings aside)"; fail=1
fi

# /stats reports the system prompt's prefill and each /reset's restore; --system-file is the same prompt as
# --system with the file's text (one trailing newline dropped: same transcript); bad files are refused by name
has "$out" "[system prompt: " "the system prompt's cost in /stats"
has "$out" "/reset took " "the restore's time in /stats after /reset"
printf 'You are a helpful assistant.\n' >"$DIR/system.txt"
script | "$CHAT" --backend cpu -m "$BLOB" --system-file "$DIR/system.txt" -n 12 --seed 1 >"$DIR/chat3.out" 2>/dev/null
if ! cmp -s <(grep -av '^\[stats\|^\[system prompt' "$DIR/chat1.out") <(grep -av '^\[stats\|^\[system prompt' "$DIR/chat3.out"); then
  echo "FAIL: --system-file should give the transcript of --system with the file's text"; fail=1
fi
sys_tok=$(grep -ao 'system prompt: [0-9]* tokens' "$DIR/chat1.out" | head -1)
[ -n "$sys_tok" ] && grep -aqF "$sys_tok" "$DIR/chat3.out" || { echo "FAIL: --system-file token count differs"; fail=1; }
err=$(echo /quit | "$CHAT" --backend cpu -m "$BLOB" --system-file "$DIR/no-such-file.txt" 2>&1 >/dev/null)
[ $? -ne 0 ] || { echo "FAIL: a missing --system-file should fail"; fail=1; }
has "$err" "no-such-file.txt" "a missing --system-file is named"
printf 'a\0b' >"$DIR/nul.txt"
err=$(echo /quit | "$CHAT" --backend cpu -m "$BLOB" --system-file "$DIR/nul.txt" 2>&1 >/dev/null)
[ $? -ne 0 ] || { echo "FAIL: a --system-file with a NUL byte should fail"; fail=1; }
has "$err" "NUL byte" "a --system-file with a NUL byte"

# the continued line belongs to its turn
one=$(printf '%s\n' "first line" "/stats" "/quit" | "$CHAT" --backend cpu -m "$BLOB" -n 2 --seed 1 2>/dev/null | tr -d '\0' | grep -o 'last turn [0-9]*' | grep -o '[0-9]*$')
two=$(printf '%s\n' "first line \\" "second line" "/stats" "/quit" | "$CHAT" --backend cpu -m "$BLOB" -n 2 --seed 1 2>/dev/null | tr -d '\0' | grep -o 'last turn [0-9]*' | grep -o '[0-9]*$')
if [ -z "$one" ] || [ -z "$two" ] || [ "$two" -le "$one" ]; then
  echo "FAIL: a line ending with \\ should continue the message ($one vs $two prompt tokens)"; fail=1
fi

# Ctrl-C stops the answer, not the program (a template without stop strings, no eos: the answer runs until stopped)
printf 'user={}\\n\nclose=\\n\n' >"$DIR/endless.tpl"
rm -f "$DIR/chat.fifo"
mkfifo "$DIR/chat.fifo"
"$CHAT" --backend cpu -m "$BLOB" --template "$DIR/endless.tpl" --no-eos -n 4000000 --seed 2 <"$DIR/chat.fifo" >"$DIR/int.out" 2>&1 &
pid=$!
exec 3>"$DIR/chat.fifo"
echo "Tell me a very long story" >&3
sleep 2
kill -INT $pid
sleep 1
echo "/stats" >&3
echo "/quit" >&3
exec 3>&-
wait $pid
rc=$?
[ $rc -eq 0 ] || { echo "FAIL: em-chat after Ctrl-C exited $rc"; fail=1; }
int_out=$(tr -d '\0' <"$DIR/int.out")
has "$int_out" "[stopped]" "Ctrl-C stops the answer"
has "$int_out" "[stats: last turn" "a command after Ctrl-C"
rm -f "$DIR/chat.fifo"

# a hybrid's context fills up: em-chat says so, /reset recovers
if [ -n "$HYB" ]; then
  out=$(printf '%s\n' "Tell me a long story about the sea and the ships" "/reset" "hi" "/stats" "/quit" |
        "$CHAT" --backend cpu -m "$HYB" --ctx 40 --no-eos -n 100 --seed 1 2>&1 | tr -d '\0')
  has "$out" "[the context is full: this session planned 40 tokens" "context full"
  has "$out" "[reset to the system prompt]" "reset after context full"
  has "$out" "[stats: last turn" "a turn after the reset"
fi

# em-generate
"$GEN" -m "$BLOB" -p "Hello world" -n 20 --temp 0.8 --top-p 0.9 --seed 3 --no-eos >"$DIR/gen1.out" 2>/dev/null
rc=$?
"$GEN" -m "$BLOB" -p "Hello world" -n 20 --temp 0.8 --top-p 0.9 --seed 3 --no-eos >"$DIR/gen2.out" 2>/dev/null
[ $rc -eq 0 ] && [ -s "$DIR/gen1.out" ] && cmp -s "$DIR/gen1.out" "$DIR/gen2.out" ||
  { echo "FAIL: em-generate -p with --seed should repeat"; fail=1; }
js=$("$GEN" -m "$BLOB" -p "Hello" -n 8 --json --no-eos --logprobs 2>/dev/null | tr -d '\0')
has "$js" '{"prompt_tokens":' "em-generate --json"
has "$js" '"text":"' "em-generate --json text"
has "$js" '"stop":"max_tokens"' "em-generate --json stop"
has "$js" '"logprobs":[' "em-generate --json logprobs"
ids=$("$GEN" -m "$NOTOK" --ids 1,2,3 -n 5 --no-eos 2>/dev/null)
[ "$(wc -w <<<"$ids")" -eq 5 ] || { echo "FAIL: em-generate --ids printed '$ids'"; fail=1; }
err=$("$GEN" -m "$NOTOK" -p "hi" -n 5 2>&1 >/dev/null)
rc=$?
[ $rc -ne 0 ] || { echo "FAIL: em-generate -p on a blob without a tokenizer should fail"; fail=1; }
has "$err" "EM_ERR_TOKENIZER" "em-generate without a tokenizer"

if [ $fail -eq 0 ]; then echo "test_chat: 1 passed, 0 failed"; else echo "test_chat: 0 passed, 1 failed"; fi
exit $fail
