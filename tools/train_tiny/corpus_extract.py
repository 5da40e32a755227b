#!/usr/bin/env python3
"""Turn the unpacked Debian packages into plain-text documents (stdlib only).

Called by build_corpus.sh; writes one gzipped JSON-lines file, one document per
line: {"src": <source>, "id": <name>, "paras": [<paragraph>, ...]}.
Each paragraph is one line of prose: no markup, no code blocks, single spaces.

    corpus_extract.py OUT.jsonl.gz --pkgroot DIR --dumps DIR
"""
import argparse
import glob
import gzip
import html
import html.parser
import json
import os
import re
import sys
import unicodedata
import zlib

# ---------------------------------------------------------------- cleaning

_QUOTES = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"',
    "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u200b": "",
    "\u00ad": "", "\ufeff": "", "\u00b6": "",
})


def norm(s):
    """NFC, ASCII quotes, collapse whitespace. The corpus stays UTF-8 otherwise."""
    s = unicodedata.normalize("NFC", s).translate(_QUOTES)
    s = "".join(ch for ch in s if ch in "\t\n" or unicodedata.category(ch)[0] != "C")
    return re.sub(r"\s+", " ", s).strip()


_END = re.compile(r"""[.!?]["')\]]*$""")


def prose_ok(p, code_chars=0, min_len=40):
    """Heuristic: a paragraph of English prose (not code, not a heading, not a list of names)."""
    if len(p) < min_len or len(p.split()) < 6:
        return False
    if not _END.search(p):
        return False
    if code_chars > 0.25 * len(p):
        return False
    letters = sum(ch.isalpha() or ch == " " for ch in p)
    if letters < 0.80 * len(p):
        return False
    if re.search(r"[{}<>=\\|]{1}.*[{}<>=\\|]", p) and sum(p.count(c) for c in "{}<>=\\|") > 4:
        return False
    if "http://" in p or "https://" in p or "www." in p:
        return False
    return True


# ------------------------------------------------------------------- HTML

SKIP_TAGS = {"script", "style", "pre", "nav", "header", "footer", "table", "svg", "button", "form",
             "textarea", "select", "noscript", "head", "title"}
SKIP_CLASSES = ("sphinxsidebar", "related", "navheader", "navfooter", "toc", "footer", "headerlink",
                "highlight", "literal-block", "doctest", "navigation", "sidebar", "nav-", "breadcrumb",
                "admonition-title", "versionmodified", "footnote", "citation", "rubric", "menu",
                "chapter-nav", "playground", "codehilite", "example-wrap")
CODE_TAGS = {"code", "tt", "kbd", "samp", "var"}
VOID = {"br", "img", "hr", "meta", "link", "input", "wbr", "area", "base", "col", "embed", "source", "track"}


class ProseParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack = []          # (tag, skip, is_code)
        self.skip = 0
        self.in_p = 0
        self.code = 0            # number of open code elements
        self.buf = []
        self.code_chars = 0
        self.paras = []

    def handle_starttag(self, tag, attrs):
        if tag in VOID:
            if tag == "br" and self.in_p:
                self.buf.append(" ")
            return
        cls = dict(attrs).get("class") or ""
        skip = tag in SKIP_TAGS or any(c in cls for c in SKIP_CLASSES)
        is_code = tag in CODE_TAGS or (tag == "span" and "pre" in cls.split())
        if tag == "p" and self.in_p:  # unclosed <p>: flush
            self._flush()
        self.stack.append((tag, skip, is_code))
        self.skip += skip
        self.code += is_code
        if tag == "p" and not self.skip:
            self.in_p = 1
            self.buf, self.code_chars = [], 0

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        # pop to the matching tag (tolerate sloppy HTML)
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                for t, s, c in self.stack[i:]:
                    self.skip -= s
                    self.code -= c
                    if t == "p" and self.in_p:
                        self._flush()
                del self.stack[i:]
                break

    def handle_data(self, data):
        if self.in_p and not self.skip:
            self.buf.append(data)
            if self.code:
                self.code_chars += len(data.strip())

    def _flush(self):
        p = norm("".join(self.buf))
        if prose_ok(p, self.code_chars):
            self.paras.append(p)
        self.in_p = 0
        self.buf, self.code_chars = [], 0


def html_docs(src, root, include, exclude):
    files = []
    for pat in include:
        files += glob.glob(os.path.join(root, pat), recursive=True)
    files = sorted(set(files))
    ex = re.compile(exclude) if exclude else None
    for f in files:
        rel = os.path.relpath(f, root)
        if ex and ex.search(rel):
            continue
        opener = gzip.open if f.endswith(".gz") else open
        with opener(f, "rt", encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        # Sphinx / mdBook / rustdoc: parse only the main body when it is marked.
        for marker in ('role="main"', "<main", 'id="content"', 'class="body"'):
            i = text.find(marker)
            if i >= 0:
                text = text[text.rfind("<", 0, i):]
                break
        p = ProseParser()
        try:
            p.feed(text)
            p.close()
        except Exception as e:  # pragma: no cover
            print(f"warn: {f}: {e}", file=sys.stderr)
        paras = dedup_in_doc(p.paras)
        if paras:
            yield {"src": src, "id": rel, "paras": paras}


def dedup_in_doc(paras):
    seen, out = set(), []
    for p in paras:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


# ------------------------------------------------------------ plain books

def blocks(text):
    """Split on blank lines; join each block's lines with single spaces."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for b in re.split(r"\n\s*\n", text):
        yield b


def austen_docs(dump_dir):
    titles = {"sensesensibility": "Sense and Sensibility", "prideprejudice": "Pride and Prejudice",
              "mansfieldpark": "Mansfield Park", "emma": "Emma", "northangerabbey": "Northanger Abbey",
              "persuasion": "Persuasion"}
    chap = re.compile(r"^(CHAPTER|Chapter|VOLUME|Volume)\b[\s\w.]*$|^[IVXLC]+\.?$")
    for key in titles:
        with open(os.path.join(dump_dir, f"austen_{key}.txt"), encoding="utf-8") as fh:
            text = fh.read()
        n, paras = 0, []
        for b in blocks(text):
            p = norm(b)
            if not p:
                continue
            if chap.match(p):
                if paras:
                    yield {"src": "austen", "id": f"{key}/{n:03d}", "paras": paras}
                    n, paras = n + 1, []
                continue
            p = re.sub(r"_([^_]+)_", r"\1", p).replace("_", "")
            if len(p) >= 2 and not p.isupper():
                paras.append(p)
        if paras:
            yield {"src": "austen", "id": f"{key}/{n:03d}", "paras": paras}


def mobydick_docs(dump_dir):
    with open(os.path.join(dump_dir, "mobydick.txt"), encoding="utf-8") as fh:
        text = fh.read().replace("\r\n", "\n")
    a = text.find("*** START OF")
    a = text.find("\n", a) + 1 if a >= 0 else 0
    b = text.find("*** END OF")
    b = b if b >= 0 else text.find("End of Project Gutenberg")
    text = text[a:b if b >= 0 else None]
    chap = re.compile(r"^(CHAPTER \d+|Epilogue|ETYMOLOGY|EXTRACTS)\b", re.I)
    n, paras = 0, []
    for blk in blocks(text):
        p = norm(blk)
        if not p:
            continue
        if chap.match(p):
            if paras:
                yield {"src": "mobydick", "id": f"{n:03d}", "paras": paras}
                n, paras = n + 1, []
            continue
        if p.isupper() or len(p) < 2:
            continue
        paras.append(p)
    if paras:
        yield {"src": "mobydick", "id": f"{n:03d}", "paras": paras}


def kjv_docs(path):
    """`bible` output: 'Book N' header lines, then '  V text' verses (wrapped). One chapter = one document,
    one verse = one paragraph."""
    with open(path, encoding="latin-1") as fh:
        lines = fh.read().split("\n")
    head = re.compile(r"^([1-3] )?[A-Z][A-Za-z ]+ \d+$")
    verse = re.compile(r"^\s+\d+ (.*)$")
    doc, paras, cur = None, [], None
    for line in lines:
        if head.match(line):
            if cur:
                paras.append(norm(cur))
            if doc and paras:
                yield {"src": "kjv", "id": doc, "paras": paras}
            doc, paras, cur = line.strip(), [], None
            continue
        m = verse.match(line)
        if m:
            if cur:
                paras.append(norm(cur))
            cur = m.group(1)
        elif line.strip() and cur is not None:
            cur += " " + line.strip()
    if cur:
        paras.append(norm(cur))
    if doc and paras:
        yield {"src": "kjv", "id": doc, "paras": paras}


# ------------------------------------------------------------ dictd files

def dictd_entries(dict_dz, index):
    data = gzip.open(dict_dz, "rb").read()
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def dec(s):
        v = 0
        for ch in s:
            v = v * 64 + b64.index(ch)
        return v

    seen = set()
    for line in open(index, encoding="utf-8", errors="replace"):
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database") or parts[0].startswith("00database"):
            continue
        off, ln = dec(parts[1]), dec(parts[2])
        if (off, ln) in seen:
            continue
        seen.add((off, ln))
        yield parts[0], off, data[off:off + ln].decode("utf-8", errors="replace")


def devil_docs(pkgroot):
    d = os.path.join(pkgroot, "dict-devil/usr/share/dictd")
    ents = sorted(dictd_entries(os.path.join(d, "devil.dict.dz"), os.path.join(d, "devil.index")),
                  key=lambda e: e[1])
    # one document per initial letter
    groups = {}
    for head, _, body in ents:
        text = " ".join(body.split())
        text = re.sub(r"_([^_]+)_", r"\1", text)
        p = norm(text)
        if len(p) > 20:
            groups.setdefault(head[:1].upper(), []).append(p)
    for k in sorted(groups):
        yield {"src": "devil", "id": k, "paras": groups[k]}


def jargon_docs(pkgroot):
    d = os.path.join(pkgroot, "dict-jargon/usr/share/dictd")
    ents = sorted(dictd_entries(os.path.join(d, "jargon.dict.dz"), os.path.join(d, "jargon.index")),
                  key=lambda e: e[1])
    groups = {}
    for head, _, body in ents:
        lines = body.replace("\r", "").split("\n")
        title = lines[0].strip()
        paras = []
        for b in re.split(r"\n\s*\n", "\n".join(lines[1:])):
            p = b.replace("{\n", "{").replace("\n", " ")
            p = re.sub(r"\{\s*([^}]*?)\s*\}", r"\1", p)
            p = norm(p)
            if not p or re.fullmatch(r"/[^/]*/,? ?[a-z.,/ ]*\.?|[a-z]+\.|\[[^\]]*\]", p):
                continue  # pronunciation / part-of-speech / bare date line
            if prose_ok(p, min_len=30):
                paras.append(p)
        if paras:
            paras[0] = f"{title}: {paras[0]}"
            groups.setdefault(title[:1].upper() if title[:1].isalpha() else "#", []).extend(paras)
    for k in sorted(groups):
        yield {"src": "jargon", "id": k, "paras": groups[k]}


# ------------------------------------------------------------------- main

HTML_SOURCES = [
    # (source, package dir, html root, include globs, exclude regex)
    ("python", "python3.11-doc", "usr/share/doc/python3.11/html",
     ["**/*.html"], r"^(_|genindex|py-modindex|search|contents|whatsnew/changelog|library/2to3|download|bugs|copyright|license)"),
    ("django", "python-django-doc", "usr/share/doc/python-django-doc/html",
     ["**/*.html"], r"^(_|genindex|py-modindex|search|contents|releases/|internals/deprecation)"),
    ("sphinx", "sphinx-doc", "usr/share/doc/sphinx-doc/html",
     ["**/*.html"], r"^(_|genindex|py-modindex|search|contents|changes)"),
    ("postgresql", "postgresql-doc-15", "usr/share/doc/postgresql-doc-15/html",
     ["**/*.html"], r"^(release-|bookindex|biblio|errcodes|sql-keywords)"),
    ("rust", "rust-doc", "usr/share/doc/rust-doc/html",
     ["book/**/*.html", "reference/**/*.html", "nomicon/**/*.html", "edition-guide/**/*.html",
      "rust-by-example/**/*.html", "embedded-book/**/*.html", "rustc/**/*.html", "rustdoc/**/*.html"],
     r"(print\.html|404\.html|toc\.html)$"),
    ("erlang", "erlang-doc", "usr/share/doc/erlang-doc",
     ["**/*.html"], r"(^|/)(wx-|jinterface-|pdf/|js/)|(index|release_notes|notes)\.html$"),
    ("nodejs", "nodejs-doc", "usr/share/doc/nodejs/api",
     ["*.html"], r"^(index|all)\.html$"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--pkgroot", required=True, help="dir with one unpacked dir per package")
    ap.add_argument("--dumps", required=True, help="dir with austen_*.txt, mobydick.txt, kjv.txt")
    args = ap.parse_args()

    gens = [
        austen_docs(args.dumps),
        mobydick_docs(args.dumps),
        kjv_docs(os.path.join(args.dumps, "kjv.txt")),
        devil_docs(args.pkgroot),
        jargon_docs(args.pkgroot),
    ]
    for src, pkg, root, inc, exc in HTML_SOURCES:
        gens.append(html_docs(src, os.path.join(args.pkgroot, pkg, root), inc, exc))

    stats = {}
    seen_para = set()
    with gzip.open(args.out, "wt", encoding="utf-8", compresslevel=9) as out:
        for g in gens:
            for doc in g:
                # global paragraph de-duplication (docs repeat boilerplate across pages)
                paras = []
                for p in doc["paras"]:
                    h = zlib.crc32(p.encode()) ^ (len(p) << 32)
                    if h in seen_para:
                        continue
                    seen_para.add(h)
                    paras.append(p)
                if not paras:
                    continue
                doc["paras"] = paras
                out.write(json.dumps(doc, ensure_ascii=False) + "\n")
                s = stats.setdefault(doc["src"], [0, 0, 0])
                s[0] += 1
                s[1] += len(paras)
                s[2] += sum(len(p.encode()) + 1 for p in paras)
    tot = 0
    for k, (d, p, b) in stats.items():
        print(f"{k:12s} docs {d:6d} paras {p:7d} bytes {b:10,d}")
        tot += b
    print(f"{'total':12s} bytes {tot:,d}")


if __name__ == "__main__":
    main()
