#!/usr/bin/env python3
"""Make the byte-level BPE test tokenizer and its golden ids for edgemamba's C tokenizer.

WHAT IT MAKES (under tests/data/tokenizer/, see the README.md there):
  bpe_tokenizer.json  a GPT-NeoX-style byte-level BPE tokenizer trained with HF `tokenizers` on
                      tests/data/tokenizer/train.txt: NFC normalizer; ByteLevel pre-tokenizer
                      (add_prefix_space false, use_regex true: the GPT-2/NeoX regex with \\p{L}/\\p{N}
                      classes and the lookahead \\s+(?!\\S)); BPE model (merges by rank, no unk, no
                      byte fallback); ByteLevel post-processor and decoder; added tokens:
                      <|endoftext|> and <|padding|> (special, from the trainer), <|im_start|> and
                      <|im_end|> (special), [MASK] (special, lstrip), and a 4-space token (not
                      special, normalized: like GPT-NeoX's whitespace-run tokens).
                      Vocabulary < 512 so that the tiny model fixture (vocab 512) can run with it.
  bpe_goldens.json    for >= 200 strings: the input bytes (hex), the ids HF gives (special tokens in
                      the text parsed, HF's default), the ids with special tokens NOT parsed
                      (`encode_special_tokens = True`), and HF's decode of the ids (hex).

INVALID UTF-8: a Python str cannot hold invalid UTF-8, so an input with invalid bytes is given to HF as
bytes.decode("utf-8", errors="replace") (one U+FFFD per maximal invalid subpart, Unicode's recommended
practice). The C tokenizer receives the raw bytes and must make the same replacement itself.

HOW TO RUN (from the repository root, CPU, a few seconds, deterministic):
  python3 tools/goldens/make_bpe_goldens.py
Needs: tokenizers (pip install tokenizers). Run with tokenizers 0.23.3 (the version is stored in the
goldens file). Re-running with the same version reproduces both files byte for byte.
"""

import json
import os
import random
import sys
import unicodedata

import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DATA = os.path.join(REPO, "tests", "data", "tokenizer")
TRAIN = os.path.join(DATA, "train.txt")
OUT_TOK = os.path.join(DATA, "bpe_tokenizer.json")
OUT_GOLD = os.path.join(DATA, "bpe_goldens.json")

VOCAB = 500  # trainer vocabulary (bytes + merges + trainer specials); added tokens come on top


def train():
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, min_frequency=2, show_progress=False,
                                  special_tokens=["<|endoftext|>", "<|padding|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([TRAIN], trainer)
    tok.add_special_tokens([AddedToken("<|im_start|>", special=True, normalized=False),
                            AddedToken("<|im_end|>", special=True, normalized=False),
                            AddedToken("[MASK]", special=True, lstrip=True, normalized=False)])
    tok.add_tokens([AddedToken("    ", special=False, normalized=True)])
    assert tok.get_vocab_size() < 512, tok.get_vocab_size()
    return tok


def strings():
    """The test strings, as bytes. Hand-picked cases first, then seeded random mixes."""
    s = []
    add = lambda x: s.append(x.encode("utf-8") if isinstance(x, str) else x)
    # empty, single characters, ASCII
    for x in ["", " ", "a", "A", ".", "\n", "\t", "Hello", "Hello world", "Hello, world!", "hello   world",
              "The quick brown fox jumps over the lazy dog.", "UPPER lower MiXeD", "snake_case_name camelCaseName",
              "e-mail: someone@example.com, url: https://example.com/a/b?c=d&e=f#g", "a.b.c...d!!!e???",
              "(parens) [brackets] {braces} <angles>", "x=1;y=2;z=x+y*3/4-5%6", "#include <stdio.h>",
              "int main(void) { return 0; }", "    indented code", "def f(x):\n    return x * 2\n"]:
        add(x)
    # contractions (the regex's 's|'t|'re|'ve|'m|'ll|'d, lower case only) and quotes
    for x in ["it's", "don't", "we're", "I've", "I'm", "you'll", "he'd", "IT'S", "DON'T", "'s", "'", "''",
              "rock 'n' roll", "the dogs' bones", "“smart quotes”", "‘single’", "«guillemets»"]:
        add(x)
    # composed and decomposed accents (NFC must compose the decomposed forms)
    for x in ["café", "cafe\u0301", "naïve", "nai\u0308ve", "Å", "A\u030a", "\u212b", "é\u0301", "e\u0301\u0302",
              "e\u0302\u0301", "ñ", "n\u0303", "Ñandú", "N\u0303andu\u0301", "Äpfel Öl Übung", "A\u0308pfel O\u0308l U\u0308bung",
              "Tiếng Việt", "Tie\u0302\u0301ng Vie\u0323\u0302t", "ﬁ ligature", "Ⅻ", "ｆｕｌｌｗｉｄｔｈ",
              "\u1100\u1161\u11a8", "한국어", "\u0915\u093c", "ḍ\u0307", "q\u0307\u0323", "\u00c7a va", "C\u0327a va",
              "crème brûlée", "cre\u0300me bru\u0302le\u0301e", "Zürich", "Zu\u0308rich", "résumé façade coöperate"]:
        add(x)
    # scripts
    for x in ["你好，世界！", "中文文本测试", "日本語のテキスト", "カタカナ ひらがな 漢字", "안녕하세요 세계", "Привет, мир!",
              "Съешь же ещё этих мягких французских булок", "Καλημέρα κόσμε", "שלום עולם", "مرحبا بالعالم",
              "नमस्ते दुनिया", "สวัสดีชาวโลก", "Ελληνικά και English", "混合 text 和 English", "ｈｅｌｌｏ１２３",
              "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟙𝟚𝟛", "ℕ ℤ ℚ ℝ ℂ", "ⓐⓑⓒ", "∀x∈ℝ: x²≥0"]:
        add(x)
    # emoji: plain, skin tones, ZWJ sequences, flags, keycaps, variation selectors
    for x in ["😀", "😀😃😄", "👍🏽", "👩\u200d💻", "👨\u200d👩\u200d👧\u200d👦", "🇫🇷🇯🇵", "1️⃣", "❤️", "❤", "☕ and 🍕",
              "🚀 launch", "emoji😀inside", " 🎉 ", "🏳️\u200d🌈", "✨✨✨"]:
        add(x)
    # whitespace runs (the lookahead \s+(?!\S) leaves the last space to the next word)
    for x in ["a  b", "a   b", "a    b", "a     b", "a        b", "  leading", "trailing  ", "   ", "    ", "     ",
              " " * 17, " " * 100, "\t\t", "a\t\tb", "\n\n\n", "a\nb", "a\n\nb", " \n ", "a \n b", "a\r\nb", "\r\n\r\n",
              "x \t y", "line1\nline2\n", "\v\f", "end with newline\n", "    four", "        eight", "a    ", "\u00a0",
              "a\u00a0b", "a\u00a0\u00a0b", "a\u3000b", "a\u2028b", "a\u2029b", "a\u0085b", "a\u200bb", "a\ufeffb",
              "a\u202fb", "a\u2003\u2003b", "a\u180eb", "a \u00a0b", "a\u00a0 b", "\u3000\u3000x"]:
        add(x)
    # digits (\p{N}: includes other scripts' digits, superscripts, roman numerals)
    for x in ["0", "7", "42", "123", "1234", "12345678901234567890", "3.14159", "1,000,000", "-17", "+5", "1e-5",
              "2024-06-30", "12:45:07", "v1.2.3", "٣٤٥", "१२३", "²³", "½", "Ⅻ", "１２３", "a1b2c3", "x86_64",
              "$19.99", "€5,50", "100%", "#1", "0x1F", "1st 2nd 3rd"]:
        add(x)
    # special and added tokens in the text
    for x in ["<|endoftext|>", "a<|endoftext|>b", "<|endoftext|><|endoftext|>", "<|endoftext", "<|endoftext|",
              "endoftext|>", "< |endoftext|>", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
              "<|im_start|><|im_end|>", "text [MASK] text", "text[MASK]", "  [MASK]", "[MASK]", "<|padding|>",
              "x    y", "xx        yy", "<|endoftext|>    ", "    <|endoftext|>"]:
        add(x)
    # control characters and invalid UTF-8 (bytes)
    for x in [b"\x00", b"a\x00b", b"\x1b[31mred\x1b[0m", b"\x7f", b"\xff", b"abc\x80def", b"\xc3", b"\xc3(",
              b"\xe2\x82", b"\xe2\x82(", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80",
              b"\xf4\x90\x80\x80", b"\xf5\x80", b"\xf0\x9f\x98", b"\xf0\x9f\x98 ok", b"\xfe\xff", b"\x80\x80\x80",
              b"caf\xe9", b"ok\xf0\x9f\x98\x80ok\xf0\x9f", b"\xef\xbf\xbd", b"a\xe2\x80\xa8b\xc2\xa0c",
              b"\xf0\x90\x80", b"\xf0\x80\x80\x80", b"\xe1\x80", b"\xdf"]:
        add(x)
    # long inputs
    add("a" * 1000)
    add("ab" * 500)
    add(" ".join(["word"] * 300))
    add("The small model keeps a fixed state. " * 40)
    add("😀" * 64)
    add("1234567890" * 30)
    # seeded random mixes of the character classes above
    pool = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"()-_/\\\n\t") + \
        list("éèêëàâäôöûüçñßøåæœÅÉ") + ["e\u0301", "a\u0308", "o\u0302", "\u0301", "\u0308"] + \
        list("你好世界中文日本語カタカナ한국어") + list("ΑΒΓαβγПривет") + ["😀", "👍🏽", "🇫🇷", "❤️", "\u00a0", "\u3000"] + \
        ["  ", "   ", "    ", "<|endoftext|>", "'s", "'ll", "123", "٣"]
    rng = random.Random(4)
    for i in range(120):
        n = rng.randint(1, 40)
        add("".join(rng.choice(pool) for _ in range(n)))
    return s


def main():
    tok = train()
    tok.save(OUT_TOK, pretty=False)
    tok = Tokenizer.from_file(OUT_TOK)  # what the C code reads
    cases = []
    for b in strings():
        text = b.decode("utf-8", errors="replace")
        tok.encode_special_tokens = False
        ids = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = True
        ids_plain = tok.encode(text, add_special_tokens=False).ids
        dec = tok.decode(ids, skip_special_tokens=False)
        cases.append({"text_hex": b.hex(), "ids": ids, "ids_no_special": ids_plain, "decoded_hex": dec.encode("utf-8").hex()})
    n_nfc = sum(1 for c in cases if unicodedata.normalize("NFC", bytes.fromhex(c["text_hex"]).decode("utf-8", "replace"))
                != bytes.fromhex(c["text_hex"]).decode("utf-8", "replace"))
    doc = {"generator": "tools/goldens/make_bpe_goldens.py", "tokenizers_version": tokenizers.__version__,
           "tokenizer": "bpe_tokenizer.json", "vocab_size": tok.get_vocab_size(), "n_cases": len(cases),
           "n_cases_changed_by_nfc": n_nfc, "cases": cases}
    with open(OUT_GOLD, "w", encoding="utf-8") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"{OUT_TOK}: vocab {tok.get_vocab_size()}, {os.path.getsize(OUT_TOK)} bytes")
    print(f"{OUT_GOLD}: {len(cases)} cases ({n_nfc} changed by NFC), {os.path.getsize(OUT_GOLD)} bytes")
    if len(cases) < 200:
        sys.exit("fewer than 200 cases")


if __name__ == "__main__":
    main()
