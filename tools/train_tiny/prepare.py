#!/usr/bin/env python3
"""Split the extracted documents and pre-tokenize them (called by build_corpus.sh).

    prepare.py split  DOCS.jsonl.gz WORKDIR          -> WORKDIR/spm_input.txt, WORKDIR/splits.json
    prepare.py encode DOCS.jsonl.gz WORKDIR TOKENIZER OUTDIR HELDOUT
          -> OUTDIR/train.bin, OUTDIR/val.bin (uint16 little-endian token ids), OUTDIR/meta.json, HELDOUT

A document is its paragraphs joined with "\n"; the token stream is encode(document) + [eos] for each
document, documents in a fixed shuffled order (no BOS, like Megatron's GPT data: EOD after each document).
Split, by document: ~1% of every source's bytes is validation; two documents (one novel chapter, one
technical page) are held out of both and give the golden-test text models/heldout.txt.
"""
import gzip
import json
import os
import random
import sys
import zlib

import numpy as np

VAL_FRACTION = 0.01
HELDOUT_TOKENS = 2000


def load(path):
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            yield json.loads(line)


def key(d):
    return f"{d['src']}/{d['id']}"


def h(s):
    return zlib.crc32(s.encode("utf-8"))


def doc_text(d):
    return "\n".join(d["paras"])


def split(docs_path, work):
    docs = list(load(docs_path))
    size = {key(d): len(doc_text(d).encode()) for d in docs}
    # held out for the golden test: one novel chapter and one technical page, chosen by hash
    novel = min((d for d in docs if d["src"] == "austen" and size[key(d)] > 10000), key=lambda d: h(key(d)))
    tech = min((d for d in docs if d["src"] == "python" and 4000 < size[key(d)] < 30000
                and "library/" in d["id"]), key=lambda d: h(key(d)))
    heldout = [key(novel), key(tech)]
    val = []
    by_src = {}
    for d in docs:
        if key(d) not in heldout:
            by_src.setdefault(d["src"], []).append(d)
    for src, ds in by_src.items():
        total = sum(size[key(d)] for d in ds)
        acc = 0
        for d in sorted(ds, key=lambda d: h(key(d))):
            if acc >= VAL_FRACTION * total:
                break
            val.append(key(d))
            acc += size[key(d)]
    hold = set(heldout) | set(val)
    n = 0
    with open(os.path.join(work, "spm_input.txt"), "w", encoding="utf-8") as out:
        for d in docs:
            if key(d) in hold:
                continue
            for p in d["paras"]:
                out.write(p + "\n")
                n += 1
    with open(os.path.join(work, "splits.json"), "w") as fh:
        json.dump({"heldout": heldout, "val": sorted(val)}, fh, indent=1)
    print(f"split: {len(docs)} docs, {len(val)} val, heldout {heldout}, {n} training paragraphs for spm")


def encode(docs_path, work, tok_path, outdir, heldout_path):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=tok_path)
    eos = sp.eos_id()
    assert sp.get_piece_size() < 65536
    with open(os.path.join(work, "splits.json")) as fh:
        splits = json.load(fh)
    val_keys, held_keys = set(splits["val"]), splits["heldout"]
    docs = list(load(docs_path))
    rng = random.Random(1234)
    rng.shuffle(docs)
    streams = {"train": [], "val": []}
    nbytes = {"train": 0, "val": 0}
    src_tokens = {}
    roundtrip_fail = 0
    held = {}
    for d in docs:
        text = doc_text(d)
        ids = sp.encode(text)
        if sp.decode(ids) != text:
            roundtrip_fail += 1
        k = key(d)
        if k in held_keys:
            held[k] = d
            continue
        part = "val" if k in val_keys else "train"
        streams[part].append(np.asarray(ids + [eos], dtype=np.uint16))
        nbytes[part] += len(text.encode()) + 1
        if part == "train":
            src_tokens[d["src"]] = src_tokens.get(d["src"], 0) + len(ids) + 1
    os.makedirs(outdir, exist_ok=True)
    meta = {"tokenizer": os.path.basename(tok_path), "vocab_size": sp.get_piece_size(), "eos_id": eos,
            "bos_id": sp.bos_id(), "pad_id": sp.pad_id(), "unk_id": sp.unk_id(), "dtype": "uint16",
            "format": "raw little-endian token ids; documents = encode(paragraphs joined by \\n) + [eos]",
            "roundtrip_failures": roundtrip_fail, "train_tokens_by_source": src_tokens}
    for part, arrs in streams.items():
        a = np.concatenate(arrs)
        a.astype("<u2").tofile(os.path.join(outdir, f"{part}.bin"))
        meta[f"{part}_tokens"] = int(a.size)
        meta[f"{part}_bytes"] = nbytes[part]
        meta[f"{part}_docs"] = len(arrs)
        print(f"{part}: {len(arrs)} docs, {a.size:,d} tokens, {nbytes[part]:,d} bytes, "
              f"{nbytes[part] / a.size:.2f} bytes/token")
    # golden-test text: ~1500 tokens of the novel chapter + the rest from the technical page
    parts, total = [], 0
    for k, budget in ((held_keys[0], 1500), (held_keys[1], HELDOUT_TOKENS)):
        paras = []
        for p in held[k]["paras"]:
            n = len(sp.encode(p)) + 1
            if total + n > budget and paras:
                break
            paras.append(p)
            total += n
        parts.append("\n".join(paras))
    text = "\n\n".join(parts) + "\n"
    with open(heldout_path, "w", encoding="utf-8") as fh:
        fh.write(text)
    ht = sp.encode(text)
    assert sp.decode(ht) == text, "heldout round trip"
    meta["heldout"] = {"docs": held_keys, "tokens": len(ht), "bytes": len(text.encode())}
    with open(os.path.join(outdir, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    print(f"heldout: {len(ht)} tokens from {held_keys}; round-trip failures over all docs: {roundtrip_fail}")


if __name__ == "__main__":
    if sys.argv[1] == "split":
        split(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "encode":
        encode(*sys.argv[2:7])
    else:
        sys.exit(__doc__)
