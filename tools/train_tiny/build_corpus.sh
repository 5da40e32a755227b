#!/usr/bin/env bash
# Build the training corpus, the tokenizer and the pre-tokenized data for the tiny models.
#
#   tools/train_tiny/build_corpus.sh            # everything (needs root for apt, network for Debian)
#   KEEP_TOKENIZER=1 tools/train_tiny/build_corpus.sh   # reuse models/tokenizer.model, re-encode only
#
# Inputs: Debian 12 packages, fetched with `apt-get download` and unpacked with `dpkg-deb -x` (nothing
# is installed from them). Tools: spm_train (Debian `sentencepiece`), Rscript (Debian `r-base-core`,
# only to read the two R data sets), python3 with numpy and the sentencepiece module.
# Outputs:
#   .carry/corpus/docs.jsonl.gz   the cleaned documents (not committed; .carry is git-ignored)
#   .carry/corpus/train.bin       uint16 token ids, training split
#   .carry/corpus/val.bin         uint16 token ids, validation split (~1% of each source)
#   .carry/corpus/meta.json       token counts, special ids, held-out doc names
#   .carry/corpus/packages.txt    the exact Debian package versions used
#   models/tokenizer.model        SentencePiece BPE, 4096 pieces (committed)
#   models/heldout.txt            ~2000-token held-out text for golden tests (committed)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=${WORK:-/tmp/edgemamba-train-tiny}
OUTDIR=${CORPUS_DIR:-$ROOT/.carry/corpus}
TOK=$ROOT/models/tokenizer.model
HELDOUT=$ROOT/models/heldout.txt

# Every package is read from its unpacked .deb; licences are in each package's copyright file
# (models/README.md lists them). bible-kjv only provides the `bible` program that reads the KJV data.
PKGS=(
  r-cran-janeaustenr  # Jane Austen's six novels (public domain text; package MIT)
  r-cran-tokenizers   # ships Moby Dick (public domain text; package MIT)
  bible-kjv-text      # King James Version (public domain text)
  bible-kjv           # the `bible` reader program (GPL-2+, used as a tool only)
  dict-devil          # The Devil's Dictionary, Ambrose Bierce (public domain)
  dict-jargon         # The Jargon File 4.4.7 (public domain)
  python3.11-doc      # Python documentation (PSF-2.0)
  python-django-doc   # Django documentation (BSD-3-Clause)
  sphinx-doc          # Sphinx documentation (BSD-2-Clause)
  postgresql-doc-15   # PostgreSQL documentation (PostgreSQL licence, BSD-like)
  rust-doc            # Rust books: book, reference, nomicon, ... (MIT or Apache-2.0)
  erlang-doc          # Erlang/OTP documentation (Apache-2.0)
  nodejs-doc          # Node.js API documentation (MIT)
)

need() { command -v "$1" >/dev/null 2>&1; }
if ! need spm_train || ! need Rscript || ! need dpkg-deb; then
  echo "== installing tools (sentencepiece, r-base-core) with apt"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends sentencepiece r-base-core
fi
python3 -c "import sentencepiece, numpy" 2>/dev/null || python3 -m pip install -q sentencepiece numpy

mkdir -p "$WORK/debs" "$WORK/pkg" "$WORK/dumps" "$OUTDIR"

echo "== fetching ${#PKGS[@]} Debian packages into $WORK/debs"
( cd "$WORK/debs" && apt-get download "${PKGS[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true )
: > "$OUTDIR/packages.txt"
for p in "${PKGS[@]}"; do
  deb=$(ls -t "$WORK"/debs/"${p}"_*.deb | head -1)
  [ -d "$WORK/pkg/$p" ] || dpkg-deb -x "$deb" "$WORK/pkg/$p"
  echo "$p $(dpkg-deb -f "$deb" Version)" >> "$OUTDIR/packages.txt"
done
cat "$OUTDIR/packages.txt"

echo "== dumping the R data sets and the KJV text"
Rscript -e '
  args <- commandArgs(TRUE); pkg <- args[1]; out <- args[2]
  e <- new.env(); lazyLoad(file.path(pkg, "r-cran-janeaustenr/usr/lib/R/site-library/janeaustenr/data/Rdata"), envir = e)
  for (k in ls(e)) writeLines(enc2utf8(get(k, e)), file.path(out, paste0("austen_", k, ".txt")), useBytes = TRUE)
  e2 <- new.env(); lazyLoad(file.path(pkg, "r-cran-tokenizers/usr/lib/R/site-library/tokenizers/data/Rdata"), envir = e2)
  writeLines(enc2utf8(get("mobydick", e2)), file.path(out, "mobydick.txt"), useBytes = TRUE)
' "$WORK/pkg" "$WORK/dumps" >/dev/null
( cd "$WORK" && "$WORK/pkg/bible-kjv/usr/bin/bible" -p "$WORK/pkg/bible-kjv-text/usr/lib" 'gen1:1-rev22:21' \
    > "$WORK/dumps/kjv.txt" )

echo "== extracting prose"
python3 "$HERE/corpus_extract.py" "$OUTDIR/docs.jsonl.gz" --pkgroot "$WORK/pkg" --dumps "$WORK/dumps"

echo "== splitting"
python3 "$HERE/prepare.py" split "$OUTDIR/docs.jsonl.gz" "$WORK"

if [ "${KEEP_TOKENIZER:-0}" = 1 ] && [ -f "$TOK" ]; then
  echo "== keeping $TOK"
else
  echo "== training the tokenizer"
  # The exact command (documented in models/README.md):
  spm_train --input="$WORK/spm_input.txt" --model_prefix="$WORK/tokenizer" \
    --model_type=bpe --vocab_size=4096 --character_coverage=0.9999 --byte_fallback=true \
    --normalization_rule_name=identity --remove_extra_whitespaces=false --add_dummy_prefix=true \
    --split_digits=true --max_sentence_length=16384 \
    --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=3 \
    --num_threads=2 --random_seed=1234 --minloglevel=1
  mkdir -p "$ROOT/models"
  cp "$WORK/tokenizer.model" "$TOK"
fi

echo "== encoding"
python3 "$HERE/prepare.py" encode "$OUTDIR/docs.jsonl.gz" "$WORK" "$TOK" "$OUTDIR" "$HELDOUT"

echo "== done"
ls -l "$OUTDIR" "$TOK" "$HELDOUT"
du -sh "$OUTDIR"
sha256sum "$OUTDIR"/train.bin "$OUTDIR"/val.bin "$TOK" "$HELDOUT"
