/*
 * tokenizer_bpe.c — byte-level BPE from an HF tokenizer.json (GPT-2 / GPT-NeoX / Llama-3 style), in C on
 * two well-kept libraries: libutf8proc for Unicode normalization and libpcre2 for the pre-tokenizer regex.
 * No hand-written Unicode tables; no Python at run time.
 *
 * The pipeline is HF tokenizers' own (tokenizer/mod.rs, added_vocabulary.rs, models/bpe/word.rs), step
 * for step, because the goldens (tools/goldens/make_bpe_goldens.py) demand the same ids:
 *   1. added tokens that are not "normalized" are cut out of the raw text (leftmost-longest match; special
 *      ones only with parse_special; lstrip/rstrip/single_word as HF);
 *   2. each remaining piece is normalized (NFC, NFKC, NFD, NFKD or a sequence of them), then the
 *      "normalized" added tokens are cut out of it (their content normalized the same way);
 *   3. each remaining piece is pre-tokenized: ByteLevel's regex (below) or a Split regex from the file,
 *      isolated matches and the gaps between them, empties dropped;
 *   4. each word is BPE-merged over its bytes: the adjacent pair of lowest merge rank first (the leftmost
 *      on a tie), with a heap, as HF's Word::merge_all does (so a 10 000-space word is O(n log n)).
 * Byte-level: the vocabulary's strings use GPT-2's byte-to-unicode alphabet; this file converts every
 * vocabulary string to raw bytes at load, so words are looked up as bytes and no mapping runs per token.
 *
 * The ByteLevel regex is GPT-2's:  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * HF runs it with Oniguruma, whose \s is Unicode's White_Space property; PCRE2's \s (with UCP) is not the
 * same set (it also matches U+180E), so every \s and \S is written as \p{White_Space} / \P{White_Space},
 * here and in Split patterns read from the file.
 */
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>
#include <utf8proc.h>
#include <xxhash.h>

#include "tokenizer.h"
#include "util.h"

#define BPE_MAX_STEPS 8
#define BYTELEVEL_REGEX "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

// ---- hash maps: bytes -> id, and (id, id) -> (rank, id) -------------------------------------------------

typedef struct str_slot { uint64_t h; uint32_t off, len; int32_t id; } str_slot; /* id -1: empty */
typedef struct merge_slot { uint64_t key; uint32_t rank; int32_t id; } merge_slot;

typedef struct added_tok {
    int32_t id;
    char *content;              /* as written (non-normalized set) or normalized (normalized set) */
    uint32_t len;
    uint8_t special, normalized, lstrip, rstrip, single_word;
} added_tok;

typedef struct pre_step { pcre2_code *re; int remove; } pre_step; /* remove: behavior "Removed" */

struct em_bpe {
    uint32_t vocab;             /* largest id + 1 */
    /* raw-bytes vocabulary lookup */
    str_slot *slots;
    uint32_t mask;
    char *keys;                 /* key bytes of every slot */
    size_t keys_len;
    /* every id's decoded bytes (HF's ByteLevel decoder rule) and flags */
    uint32_t *dec_off;          /* [vocab + 1] */
    uint8_t *dec;
    uint8_t *flags;             /* [vocab] EM_PIECE_* */
    /* merges */
    merge_slot *merges;
    uint32_t mmask;
    int32_t byte_id[256];       /* the vocabulary id of each single byte, -1 if absent */
    int32_t unk;                /* -1: none (an unknown byte is dropped, as HF does) */
    int fuse_unk, ignore_merges;
    /* normalizer: utf8proc option bits, 0 = none */
    int norm;
    /* pre-tokenizer */
    int prefix_space;           /* ByteLevel add_prefix_space */
    pre_step steps[BPE_MAX_STEPS];
    uint32_t n_steps;
    /* added tokens, by the text they are matched in */
    added_tok *added;           /* [n_added]: the non-normalized ones first, then the normalized */
    uint32_t n_added, n_raw_added;
};

static uint64_t hash_bytes(const void *p, size_t n) { return XXH3_64bits(p, n) | 1u; }
static uint64_t hash_pair(uint64_t k) { k *= 0x9E3779B97F4A7C15ull; return k ^ (k >> 29); }

static int32_t lookup(const struct em_bpe *b, const void *p, size_t n) {
    uint64_t h = hash_bytes(p, n);
    for (uint32_t i = (uint32_t)h & b->mask;; i = (i + 1) & b->mask) {
        const str_slot *s = &b->slots[i];
        if (s->id < 0) return -1;
        if (s->h == h && s->len == n && !memcmp(b->keys + s->off, p, n)) return s->id;
    }
}

/* Inserts unless present (the first id for a byte string wins). */
static void insert(struct em_bpe *b, const void *p, size_t n, int32_t id, uint32_t key_off) {
    uint64_t h = hash_bytes(p, n);
    for (uint32_t i = (uint32_t)h & b->mask;; i = (i + 1) & b->mask) {
        str_slot *s = &b->slots[i];
        if (s->id < 0) { s->h = h; s->off = key_off; s->len = (uint32_t)n; s->id = id; return; }
        if (s->h == h && s->len == n && !memcmp(b->keys + s->off, p, n)) return;
    }
}

static const merge_slot *merge_find(const struct em_bpe *b, int32_t x, int32_t y) {
    uint64_t key = ((uint64_t)(uint32_t)x << 32) | (uint32_t)y;
    for (uint32_t i = (uint32_t)hash_pair(key) & b->mmask;; i = (i + 1) & b->mmask) {
        const merge_slot *s = &b->merges[i];
        if (s->id < 0) return NULL;
        if (s->key == key) return s;
    }
}

static uint32_t pow2_above(size_t n) { uint32_t m = 16; while (m < 2 * n + 16) m <<= 1; return m; }

// ---- byte-level alphabet ----------------------------------------------------------------------------------

/* GPT-2's bytes_to_unicode(): printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves, the
 * other 68 bytes for U+0100.. in byte order. uc_to_byte inverts it (-1: not in the alphabet). */
static void byte_alphabet(int16_t uc_to_byte[324]) {
    for (int i = 0; i < 324; i++) uc_to_byte[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        uc_to_byte[printable ? b : 256 + n++] = (int16_t)b;
    }
}

/* A vocabulary string to the bytes it stands for: every character must be in the alphabet (returns the
 * byte count), else -1 (the string is used as its own UTF-8, as HF's decoder does). */
static long to_raw(const int16_t *uc_to_byte, const char *s, size_t n, uint8_t *out) {
    size_t i = 0, k = 0;
    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (l <= 0 || cp < 0 || cp >= 324 || uc_to_byte[cp] < 0) return -1;
        out[k++] = (uint8_t)uc_to_byte[cp];
        i += (size_t)l;
    }
    return (long)k;
}

// ---- normalization and regex helpers -----------------------------------------------------------------------

/* Normalizes s[0..n) with utf8proc (options b->norm); malloc'd result or NULL. */
static char *normalize(int norm, const char *s, size_t n, size_t *out_n) {
    if (!norm || n == 0) {
        char *c = malloc(n + 1);
        if (!c) return NULL;
        memcpy(c, s, n);
        c[n] = 0;
        *out_n = n;
        return c;
    }
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst, (utf8proc_option_t)norm);
    if (r < 0) { free(dst); return NULL; }
    *out_n = (size_t)r;
    return (char *)dst;
}

/* \s -> \p{White_Space}, \S -> \P{White_Space} (Oniguruma's meaning); other escapes are copied as they are. */
static char *onig_to_pcre(const char *p, size_t n) {
    char *o = malloc(n * 8 + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\\' && i + 1 < n) {
            if (p[i + 1] == 's' || p[i + 1] == 'S') {
                const char *r = p[i + 1] == 's' ? "\\p{White_Space}" : "\\P{White_Space}";
                memcpy(o + k, r, strlen(r));
                k += strlen(r);
            } else {
                o[k++] = p[i];
                o[k++] = p[i + 1];
            }
            i++;
        } else {
            o[k++] = p[i];
        }
    }
    o[k] = 0;
    return o;
}

static em_status compile_regex(const char *onig, size_t n, pcre2_code **out) {
    char *pat = onig_to_pcre(onig, n);
    if (!pat) return em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer.json: out of memory");
    int err = 0;
    PCRE2_SIZE at = 0;
    *out = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err,
                         &at, NULL);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        em_status s =
            em_fail(EM_ERR_TOKENIZER, "tokenizer.json: pre-tokenizer regex \"%.80s\" does not compile at %zu: %s", pat,
                    (size_t)at, (const char *)msg);
        free(pat);
        return s;
    }
    free(pat);
    (void)pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); /* an optimization: without JIT it still matches */
    return EM_OK;
}

/* Unicode's White_Space property (PropList.txt; Rust's char::is_whitespace, used by HF's lstrip/rstrip). */
static int is_white_space(utf8proc_int32_t c) {
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* HF's single_word test: a letter, a digit or '_' adjacent to the match means it is inside a word. */
static int is_word_char(utf8proc_int32_t c) {
    if (c == '_') return 1;
    utf8proc_category_t k = utf8proc_category(c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) ||
           (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

/* The code point that ends at s[end) / starts at s[at] (valid UTF-8). */
static utf8proc_int32_t cp_before(const char *s, size_t end, size_t *start) {
    size_t i = end;
    do i--; while (i > 0 && ((uint8_t)s[i] & 0xC0) == 0x80);
    utf8proc_int32_t c = -1;
    utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(end - i), &c);
    *start = i;
    return c;
}
static utf8proc_int32_t cp_at(const char *s, size_t n, size_t at, size_t *len) {
    utf8proc_int32_t c = -1;
    utf8proc_ssize_t l = utf8proc_iterate((const utf8proc_uint8_t *)s + at, (utf8proc_ssize_t)(n - at), &c);
    *len = l > 0 ? (size_t)l : 1;
    return c;
}

// ---- loading ----------------------------------------------------------------------------------------------

static int json_int(const cJSON *x, int32_t *v) {
    if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble > 16777216.0 ||
        x->valuedouble != (double)(int32_t)x->valuedouble)
        return 0;
    *v = (int32_t)x->valuedouble;
    return 1;
}
static int json_true(const cJSON *o, const char *key) { return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key)); }
static const char *json_str(const cJSON *o, const char *key) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static em_status load_normalizer(struct em_bpe *b, const cJSON *n) {
    if (!n || cJSON_IsNull(n)) return EM_OK;
    const char *type = json_str(n, "type");
    if (!type) return em_fail(EM_ERR_TOKENIZER, "tokenizer.json: normalizer has no type");
    if (!strcmp(type, "Sequence")) {
        const cJSON *x;
        cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(n, "normalizers")) EM_TRY(load_normalizer(b, x));
        return EM_OK;
    }
    int bits = UTF8PROC_STABLE;
    if (!strcmp(type, "NFC")) bits |= UTF8PROC_COMPOSE;
    else if (!strcmp(type, "NFKC")) bits |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    else if (!strcmp(type, "NFD")) bits |= UTF8PROC_DECOMPOSE;
    else if (!strcmp(type, "NFKD")) bits |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    else
        return em_fail(EM_ERR_TOKENIZER,
                       "tokenizer.json: normalizer \"%s\" is not supported (NFC, NFKC, NFD, NFKD, Sequence)", type);
    if (b->norm && b->norm != bits)
        return em_fail(EM_ERR_TOKENIZER,
                       "tokenizer.json: a sequence of different Unicode normal forms is not supported");
    b->norm = bits;
    return EM_OK;
}

static em_status load_pretokenizer(struct em_bpe *b, const cJSON *p, int *byte_level) {
    if (!p || cJSON_IsNull(p)) return EM_OK;
    const char *type = json_str(p, "type");
    if (!type) return em_fail(EM_ERR_TOKENIZER, "tokenizer.json: pre_tokenizer has no type");
    if (!strcmp(type, "Sequence")) {
        const cJSON *x;
        cJSON_ArrayForEach(x, cJSON_GetObjectItemCaseSensitive(p, "pretokenizers"))
            EM_TRY(load_pretokenizer(b, x, byte_level));
        return EM_OK;
    }
    if (b->n_steps == BPE_MAX_STEPS)
        return em_fail(EM_ERR_TOKENIZER, "tokenizer.json: more than %d pre-tokenizer steps", BPE_MAX_STEPS);
    pre_step *st = &b->steps[b->n_steps];
    if (!strcmp(type, "ByteLevel")) {
        *byte_level = 1;
        if (json_true(p, "add_prefix_space")) {
            if (b->n_steps)
                return em_fail(EM_ERR_TOKENIZER,
                               "tokenizer.json: ByteLevel add_prefix_space after a Split is not supported");
            b->prefix_space = 1;
        }
        const cJSON *ur = cJSON_GetObjectItemCaseSensitive(p, "use_regex");
        if (ur && !cJSON_IsTrue(ur)) return EM_OK; /* a byte-level mapping only: nothing to split */
        EM_TRY(compile_regex(BYTELEVEL_REGEX, strlen(BYTELEVEL_REGEX), &st->re));
        b->n_steps++;
        return EM_OK;
    }
    if (!strcmp(type, "Split")) {
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(p, "pattern");
        const char *rx = json_str(pat, "Regex"), *lit = json_str(pat, "String");
        const char *beh = json_str(p, "behavior");
        if (json_true(p, "invert"))
            return em_fail(EM_ERR_TOKENIZER, "tokenizer.json: Split with invert is not supported");
        if (!beh || (strcmp(beh, "Isolated") && strcmp(beh, "Removed")))
            return em_fail(EM_ERR_TOKENIZER,
                           "tokenizer.json: Split behavior \"%s\" is not supported (Isolated, Removed)",
                           beh ? beh : "(none)");
        st->remove = !strcmp(beh, "Removed");
        if (rx) {
            EM_TRY(compile_regex(rx, strlen(rx), &st->re));
        } else if (lit) { /* a literal: quote it with \Q...\E */
            size_t l = strlen(lit);
            char *q = malloc(l + 5);
            if (!q) return em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer.json: out of memory");
            memcpy(q, "\\Q", 2);
            memcpy(q + 2, lit, l);
            memcpy(q + 2 + l, "\\E", 3);
            em_status s = strstr(lit, "\\E") ? em_fail(EM_ERR_TOKENIZER, "tokenizer.json: Split string contains \\E")
                                             : compile_regex(q, l + 4, &st->re);
            free(q);
            EM_TRY(s);
        } else {
            return em_fail(EM_ERR_TOKENIZER, "tokenizer.json: Split without a Regex or String pattern");
        }
        b->n_steps++;
        return EM_OK;
    }
    return em_fail(EM_ERR_TOKENIZER,
                   "tokenizer.json: pre-tokenizer \"%s\" is not supported (ByteLevel, Split, Sequence)", type);
}

/* The two strings of a merge: "a b" (older files) or ["a", "b"]. */
static int merge_strings(const cJSON *m, const char **a, size_t *la, const char **bb, size_t *lb) {
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' ')) return 0;
        *a = s; *la = (size_t)(sp - s); *bb = sp + 1; *lb = strlen(sp + 1);
        return 1;
    }
    if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
        *a = m->child->valuestring; *la = strlen(*a);
        *bb = m->child->next->valuestring; *lb = strlen(*bb);
        return 1;
    }
    return 0;
}

static em_status load_model(struct em_bpe *b, const cJSON *model, const cJSON *added) {
    const char *type = json_str(model, "type");
    if (type && strcmp(type, "BPE"))
        return em_fail(EM_ERR_TOKENIZER,
                       "tokenizer.json: model \"%s\" is not BPE (a SentencePiece model loads from its .model)", type);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges))
        return em_fail(EM_ERR_TOKENIZER, "tokenizer.json: model needs a \"vocab\" object and a \"merges\" array");
    if (json_true(model, "byte_fallback"))
        return em_fail(EM_ERR_TOKENIZER,
                       "tokenizer.json: byte_fallback BPE (SentencePiece-style) is not supported; pack the .model");
    const char *cs = json_str(model, "continuing_subword_prefix"), *ew = json_str(model, "end_of_word_suffix");
    if ((cs && *cs) || (ew && *ew))
        return em_fail(EM_ERR_TOKENIZER,
                       "tokenizer.json: continuing_subword_prefix / end_of_word_suffix are not supported");
    const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (dropout && cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        EM_LOG_W("tokenizer.json: BPE dropout %.3f is ignored (inference is deterministic)", dropout->valuedouble);
    b->ignore_merges = json_true(model, "ignore_merges");
    b->fuse_unk = json_true(model, "fuse_unk");

    /* sizes: every id, every key */
    size_t n_vocab = 0, key_bytes = 0;
    uint32_t max_id = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, vocab) {
        int32_t id;
        if (!x->string || !json_int(x, &id))
            return em_fail(EM_ERR_TOKENIZER, "tokenizer.json: vocab entry \"%.40s\" has no valid id",
                           x->string ? x->string : "");
        if ((uint32_t)id + 1 > max_id) max_id = (uint32_t)id + 1;
        key_bytes += strlen(x->string) + 1;
        n_vocab++;
    }
    cJSON_ArrayForEach(x, added) {
        int32_t id;
        const char *c = json_str(x, "content");
        if (!c || !*c || !json_int(cJSON_GetObjectItemCaseSensitive(x, "id"), &id))
            return em_fail(EM_ERR_TOKENIZER, "tokenizer.json: an added token lacks a content or an id");
        if ((uint32_t)id + 1 > max_id) max_id = (uint32_t)id + 1;
        key_bytes += strlen(c) + 1;
        n_vocab++;
        b->n_added++;
    }
    if (!max_id) return em_fail(EM_ERR_TOKENIZER, "tokenizer.json: empty vocabulary");
    b->vocab = max_id;
    b->mask = pow2_above(n_vocab) - 1;
    b->slots = malloc(sizeof(str_slot) * (b->mask + 1));
    b->keys = malloc(key_bytes + 1);
    b->dec_off = calloc(b->vocab + 1, sizeof(uint32_t));
    uint32_t *dlen = calloc(b->vocab, sizeof(uint32_t)), *dsrc = calloc(b->vocab, sizeof(uint32_t));
    b->flags = malloc(b->vocab);
    b->added = calloc(b->n_added ? b->n_added : 1, sizeof(added_tok));
    if (!b->slots || !b->keys || !b->dec_off || !dlen || !dsrc || !b->flags || !b->added) {
        free(dlen); free(dsrc);
        return em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer.json: out of memory for %zu tokens", n_vocab);
    }
    for (uint32_t i = 0; i <= b->mask; i++) b->slots[i].id = -1;
    memset(b->flags, EM_PIECE_UNUSED, b->vocab);

    /* every string as its bytes: raw bytes for alphabet strings (inserted for lookup), else its UTF-8. The
     * decoded bytes of an id come from its vocab string, or its added-token content when it has no vocab
     * entry (HF: added_vocabulary first for ids it holds, same decoder rule). */
    int16_t uc_to_byte[324];
    byte_alphabet(uc_to_byte);
    size_t at = 0;
    uint32_t n_added_seen = 0;
    for (int pass = 0; pass < 2; pass++) {
        const cJSON *list = pass == 0 ? added : vocab;
        cJSON_ArrayForEach(x, list) {
            const char *s = pass == 0 ? json_str(x, "content") : x->string;
            int32_t id = 0;
            json_int(pass == 0 ? cJSON_GetObjectItemCaseSensitive(x, "id") : x, &id);
            size_t n = strlen(s);
            long r = to_raw(uc_to_byte, s, n, (uint8_t *)b->keys + at);
            size_t kl = r >= 0 ? (size_t)r : n;
            if (r < 0) memcpy(b->keys + at, s, n);
            if (pass == 1 && r >= 0) insert(b, b->keys + at, kl, id, (uint32_t)at);
            if (b->flags[id] & EM_PIECE_UNUSED) { /* first definition of the id's bytes wins: added tokens */
                b->flags[id] = 0;
                dsrc[id] = (uint32_t)at;
                dlen[id] = (uint32_t)kl;
            }
            if (pass == 0) {
                added_tok *t = &b->added[n_added_seen++];
                t->id = id;
                t->special = (uint8_t)json_true(x, "special");
                t->normalized = (uint8_t)json_true(x, "normalized");
                t->lstrip = (uint8_t)json_true(x, "lstrip");
                t->rstrip = (uint8_t)json_true(x, "rstrip");
                t->single_word = (uint8_t)json_true(x, "single_word");
                t->content = strdup(s);
                t->len = (uint32_t)n;
                if (!t->content) {
                    free(dlen);
                    free(dsrc);
                    return em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer.json: out of memory");
                }
                if (t->special) b->flags[id] |= EM_PIECE_SPECIAL;
            }
            at += kl;
        }
    }
    b->keys_len = at;
    /* the decoded-bytes table, in id order */
    size_t total = 0;
    for (uint32_t id = 0; id < b->vocab; id++) total += dlen[id];
    b->dec = malloc(total + 1);
    if (!b->dec) { free(dlen); free(dsrc); return em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer.json: out of memory"); }
    uint32_t o = 0;
    for (uint32_t id = 0; id < b->vocab; id++) {
        b->dec_off[id] = o;
        memcpy(b->dec + o, b->keys + dsrc[id], dlen[id]);
        o += dlen[id];
    }
    b->dec_off[b->vocab] = o;
    free(dlen);
    free(dsrc);

    for (int c = 0; c < 256; c++) {
        uint8_t byte = (uint8_t)c;
        b->byte_id[c] = lookup(b, &byte, 1);
    }
    b->unk = -1;
    const char *unk = json_str(model, "unk_token");
    if (unk) {
        uint8_t tmp[1024];
        long r = strlen(unk) < 256 ? to_raw(uc_to_byte, unk, strlen(unk), tmp) : -1;
        b->unk = r >= 0 ? lookup(b, tmp, (size_t)r) : -1;
    }

    /* merges: (left id, right id) -> (rank, merged id) */
    size_t n_merges = (size_t)cJSON_GetArraySize(merges);
    b->mmask = pow2_above(n_merges) - 1;
    b->merges = malloc(sizeof(merge_slot) * (b->mmask + 1));
    uint8_t *buf = malloc(4096);
    if (!b->merges || !buf) {
        free(buf);
        return em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer.json: out of memory for merges");
    }
    for (uint32_t i = 0; i <= b->mmask; i++) b->merges[i].id = -1;
    uint32_t rank = 0;
    em_status s = EM_OK;
    cJSON_ArrayForEach(x, merges) {
        const char *a, *c;
        size_t la, lc;
        if (!merge_strings(x, &a, &la, &c, &lc) || la + lc > 2000) {
            s = em_fail(EM_ERR_TOKENIZER, "tokenizer.json: merge %u is not \"a b\" or [\"a\", \"b\"]", rank);
            break;
        }
        long ra = to_raw(uc_to_byte, a, la, buf), rc = ra >= 0 ? to_raw(uc_to_byte, c, lc, buf + ra) : -1;
        int32_t ia = ra >= 0 ? lookup(b, buf, (size_t)ra) : -1, ic = rc >= 0 ? lookup(b, buf + ra, (size_t)rc) : -1;
        int32_t im = rc >= 0 ? lookup(b, buf, (size_t)(ra + rc)) : -1;
        if (ia < 0 || ic < 0 || im < 0) {
            s = em_fail(EM_ERR_TOKENIZER,
                        "tokenizer.json: merge %u (\"%.*s\" \"%.*s\") uses a token not in the vocabulary", rank,
                        (int)la, a, (int)lc, c);
            break;
        }
        uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ic;
        for (uint32_t i = (uint32_t)hash_pair(key) & b->mmask;; i = (i + 1) & b->mmask) {
            merge_slot *m = &b->merges[i];
            if (m->id < 0) { m->key = key; m->rank = rank; m->id = im; break; }
            if (m->key == key) break; /* a repeated merge keeps its first rank, as HF's map does */
        }
        rank++;
    }
    free(buf);
    return s;
}

/* Added tokens: the ones matched in the raw text first, the normalized ones after (content normalized). */
static em_status order_added(struct em_bpe *b) {
    added_tok *sorted = calloc(b->n_added ? b->n_added : 1, sizeof *sorted);
    if (!sorted) return em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer.json: out of memory");
    uint32_t k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t i = 0; i < b->n_added; i++)
            if (b->added[i].normalized == pass) sorted[k++] = b->added[i];
    free(b->added);
    b->added = sorted;
    b->n_raw_added = 0;
    while (b->n_raw_added < b->n_added && !b->added[b->n_raw_added].normalized) b->n_raw_added++;
    for (uint32_t i = b->n_raw_added; i < b->n_added; i++) {
        added_tok *t = &b->added[i];
        size_t nl;
        char *n = normalize(b->norm, t->content, t->len, &nl);
        if (!n) return em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer.json: out of memory");
        free(t->content);
        t->content = n;
        t->len = (uint32_t)nl;
    }
    return EM_OK;
}

em_status em_bpe_load(const char *json, size_t len, struct em_bpe **out) {
    *out = NULL;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) return em_fail(EM_ERR_TOKENIZER, "tokenizer.json: not valid JSON (near byte %zu)",
                              cJSON_GetErrorPtr() ? (size_t)(cJSON_GetErrorPtr() - json) : (size_t)0);
    struct em_bpe *b = calloc(1, sizeof *b);
    if (!b) { cJSON_Delete(root); return em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer.json: out of memory"); }
    em_status s = EM_OK;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsObject(model)) s = em_fail(EM_ERR_TOKENIZER, "tokenizer.json: no \"model\" object");
    if (s == EM_OK && added && !cJSON_IsArray(added) && !cJSON_IsNull(added))
        s = em_fail(EM_ERR_TOKENIZER, "tokenizer.json: \"added_tokens\" is not an array");
    if (s == EM_OK) s = load_normalizer(b, cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
    int byte_level = 0;
    if (s == EM_OK) s = load_pretokenizer(b, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), &byte_level);
    if (s == EM_OK && !byte_level)
        s = em_fail(EM_ERR_TOKENIZER,
                    "tokenizer.json: only byte-level BPE is supported (no ByteLevel pre-tokenizer found)");
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    const char *dtype = dec ? json_str(dec, "type") : NULL;
    if (s == EM_OK && dtype && strcmp(dtype, "ByteLevel"))
        s = em_fail(EM_ERR_TOKENIZER, "tokenizer.json: decoder \"%s\" is not supported (ByteLevel)", dtype);
    if (s == EM_OK) s = load_model(b, model, cJSON_IsArray(added) ? added : NULL);
    if (s == EM_OK) s = order_added(b);
    cJSON_Delete(root);
    if (s != EM_OK) { em_bpe_free(b); return s; }
    *out = b;
    return EM_OK;
}

void em_bpe_free(struct em_bpe *b) {
    if (!b) return;
    free(b->slots);
    free(b->keys);
    free(b->dec_off);
    free(b->dec);
    free(b->flags);
    free(b->merges);
    for (uint32_t i = 0; i < b->n_steps; i++) pcre2_code_free(b->steps[i].re);
    /* added is NULL when load_model failed between counting the added tokens and allocating them */
    for (uint32_t i = 0; b->added && i < b->n_added; i++) free(b->added[i].content);
    free(b->added);
    free(b);
}

uint32_t em_bpe_vocab(const struct em_bpe *b) { return b->vocab; }
size_t em_bpe_table_bytes(const struct em_bpe *b) { return b->dec_off[b->vocab]; }
void em_bpe_fill_table(const struct em_bpe *b, uint32_t *off, uint8_t *bytes, uint8_t *flags) {
    memcpy(off, b->dec_off, sizeof(uint32_t) * (b->vocab + 1));
    memcpy(bytes, b->dec, b->dec_off[b->vocab]);
    memcpy(flags, b->flags, b->vocab);
}

int32_t em_bpe_find(const struct em_bpe *b, const char *text, size_t len) {
    for (uint32_t i = 0; i < b->n_added; i++)
        if (b->added[i].len == len && !memcmp(b->added[i].content, text, len)) return b->added[i].id;
    return len ? lookup(b, text, len) : -1;
}

// ---- encoding ----------------------------------------------------------------------------------------------

typedef struct heap_item { uint32_t rank, pos; int32_t id; } heap_item;

typedef struct enc {
    const struct em_bpe *b;
    int parse_special;
    int32_t *ids;
    size_t n, cap;
    /* word scratch, grown to the longest word */
    int32_t *sym;               /* symbol id */
    int32_t *prev, *next;
    uint32_t *len;              /* bytes of the symbol, 0 = merged away */
    heap_item *heap;
    size_t wcap;
    pcre2_match_data *md;
    em_status st;
} enc;

static void emit(enc *e, int32_t id) {
    if (e->st != EM_OK) return;
    if (e->n == e->cap) {
        size_t nc = e->cap ? e->cap * 2 : 64;
        int32_t *v = realloc(e->ids, nc * sizeof *v);
        if (!v) { e->st = em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory"); return; }
        e->ids = v;
        e->cap = nc;
    }
    e->ids[e->n++] = id;
}

static int heap_less(const heap_item *a, const heap_item *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}
static void heap_push(heap_item *h, size_t *n, heap_item x) {
    size_t i = (*n)++;
    while (i && heap_less(&x, &h[(i - 1) / 2])) { h[i] = h[(i - 1) / 2]; i = (i - 1) / 2; }
    h[i] = x;
}
static heap_item heap_pop(heap_item *h, size_t *n) {
    heap_item top = h[0], x = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    if (*n) h[i] = x;
    return top;
}

/* One pre-tokenized word (bytes) -> ids. */
static void bpe_word(enc *e, const uint8_t *w, size_t n) {
    const struct em_bpe *b = e->b;
    if (b->ignore_merges) {
        int32_t id = lookup(b, w, n);
        if (id >= 0) { emit(e, id); return; }
    }
    if (n > e->wcap) {
        size_t c = n * 2;
        free(e->sym); free(e->prev); free(e->next); free(e->len); free(e->heap);
        e->sym = malloc(c * sizeof(int32_t));
        e->prev = malloc(c * sizeof(int32_t));
        e->next = malloc(c * sizeof(int32_t));
        e->len = malloc(c * sizeof(uint32_t));
        e->heap = malloc(3 * c * sizeof(heap_item)); /* n-1 pairs + 2 per merge <= 3n */
        e->wcap = c;
        if (!e->sym || !e->prev || !e->next || !e->len || !e->heap) {
            e->wcap = 0;
            e->st = em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory for a %zu-byte word", n);
            return;
        }
    }
    /* symbols: one per byte (a byte the vocabulary lacks becomes unk, or is dropped as HF does) */
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = b->byte_id[w[i]];
        if (id < 0) {
            if (b->unk < 0) continue;
            if (b->fuse_unk && m && e->sym[m - 1] == b->unk) { e->len[m - 1]++; continue; }
            id = b->unk;
        }
        e->sym[m] = id;
        e->len[m] = 1;
        e->prev[m] = (int32_t)m - 1;
        e->next[m] = (int32_t)m + 1;
        m++;
    }
    if (!m) return;
    e->next[m - 1] = -1;
    size_t hn = 0;
    for (size_t i = 0; i + 1 < m; i++) {
        const merge_slot *ms = merge_find(b, e->sym[i], e->sym[i + 1]);
        if (ms) heap_push(e->heap, &hn, (heap_item){ ms->rank, (uint32_t)i, ms->id });
    }
    while (hn) {
        heap_item top = heap_pop(e->heap, &hn);
        uint32_t p = top.pos;
        if (!e->len[p] || e->next[p] < 0) continue;           /* merged away, or the last symbol */
        int32_t q = e->next[p];
        const merge_slot *ms = merge_find(b, e->sym[p], e->sym[q]);
        if (!ms || ms->id != top.id) continue;                /* a stale entry */
        e->sym[p] = top.id;                                   /* merge q into p */
        e->len[p] += e->len[q];
        e->len[q] = 0;
        e->next[p] = e->next[q];
        if (e->next[q] >= 0) e->prev[e->next[q]] = (int32_t)p;
        if (e->prev[p] >= 0) {
            const merge_slot *l = merge_find(b, e->sym[e->prev[p]], e->sym[p]);
            if (l) heap_push(e->heap, &hn, (heap_item){ l->rank, (uint32_t)e->prev[p], l->id });
        }
        if (e->next[p] >= 0) {
            const merge_slot *r = merge_find(b, e->sym[p], e->sym[e->next[p]]);
            if (r) heap_push(e->heap, &hn, (heap_item){ r->rank, p, r->id });
        }
    }
    for (int32_t i = 0; i >= 0; i = e->next[i]) emit(e, e->sym[i]);
}

/* Splits s[0..n) with the pre-tokenizer step k onward; words reach bpe_word. */
static void pretokenize(enc *e, const char *s, size_t n, uint32_t k) {
    if (!n || e->st != EM_OK) return;
    if (k == e->b->n_steps) { bpe_word(e, (const uint8_t *)s, n); return; }
    const pre_step *st = &e->b->steps[k];
    size_t at = 0, prev = 0;
    while (at <= n) {
        int rc = pcre2_match(st->re, (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK, e->md, NULL);
        if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) /* e.g. the JIT's stack on a huge whitespace run: interpret */
            rc = pcre2_match(st->re, (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, e->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(rc, msg, sizeof msg);
            e->st = em_fail(EM_ERR_TOKENIZER, "tokenizer: the pre-tokenizer regex failed on a %zu-byte piece: %s", n,
                            (const char *)msg);
            return;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t ms = ov[0], me = ov[1];
        if (ms > prev) pretokenize(e, s + prev, ms - prev, k + 1);
        if (me > ms && !st->remove) pretokenize(e, s + ms, me - ms, k + 1);
        prev = me;
        if (me == ms) { /* an empty match: step over one character */
            if (me >= n) break;
            size_t l = 1;
            while (me + l < n && ((uint8_t)s[me + l] & 0xC0) == 0x80) l++;
            at = me + l;
        } else {
            at = me;
        }
    }
    if (prev < n) pretokenize(e, s + prev, n - prev, k + 1);
}

static void encode_words(enc *e, const char *s, size_t n) {
    if (!n) return;
    if (e->b->prefix_space && s[0] != ' ') {
        char *p = malloc(n + 1);
        if (!p) { e->st = em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory"); return; }
        p[0] = ' ';
        memcpy(p + 1, s, n);
        pretokenize(e, p, n + 1, 0);
        free(p);
    } else {
        pretokenize(e, s, n, 0);
    }
}

/* Cuts the added tokens [lo, hi) out of s[0..n) (HF's find_matches: leftmost-longest, non-overlapping;
 * a special token with parse_special off, or a single_word token inside a word, is passed over as
 * text); the text between them goes to text_fn. */
static void split_added(enc *e, const char *s, size_t n, uint32_t lo, uint32_t hi,
                        void (*text_fn)(enc *, const char *, size_t)) {
    const struct em_bpe *b = e->b;
    size_t start_offset = 0, i = 0;
    while (i < n && e->st == EM_OK) {
        const added_tok *best = NULL;
        for (uint32_t k = lo; k < hi; k++) {
            const added_tok *t = &b->added[k];
            if (t->len <= n - i && (!best || t->len > best->len) && t->content[0] == s[i] &&
                !memcmp(s + i, t->content, t->len))
                best = t;
        }
        if (!best) { i++; continue; }
        size_t start = i, stop = i + best->len;
        i = stop; /* the matcher resumes after the match whether it is used or not */
        if (best->special && !e->parse_special) continue;
        if (best->single_word) {
            size_t l, st0;
            int before = start > 0 && is_word_char(cp_before(s, start, &st0));
            int after = stop < n && is_word_char(cp_at(s, n, stop, &l));
            if (before || after) continue;
        }
        if (best->lstrip) {
            size_t ns = start, st0;
            while (ns > 0 && is_white_space(cp_before(s, ns, &st0))) ns = st0;
            start = ns > start_offset ? ns : start_offset;
        }
        if (best->rstrip) {
            size_t l;
            while (stop < n && is_white_space(cp_at(s, n, stop, &l))) stop += l;
            i = stop;
        }
        if (start_offset < start) text_fn(e, s + start_offset, start - start_offset);
        emit(e, best->id);
        start_offset = stop;
    }
    if (start_offset < n && e->st == EM_OK) text_fn(e, s + start_offset, n - start_offset);
}

static void normalized_text(enc *e, const char *s, size_t n) { encode_words(e, s, n); }

static void raw_text(enc *e, const char *s, size_t n) {
    size_t nl = 0;
    char *norm = normalize(e->b->norm, s, n, &nl);
    if (!norm) { e->st = em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer: normalization failed"); return; }
    split_added(e, norm, nl, e->b->n_raw_added, e->b->n_added, normalized_text);
    free(norm);
}

em_status em_bpe_encode(const struct em_bpe *b, const char *text, size_t len, int parse_special, int32_t **ids,
                        size_t *n) {
    *ids = NULL;
    *n = 0;
    enc e;
    memset(&e, 0, sizeof e);
    e.b = b;
    e.parse_special = parse_special;
    e.st = EM_OK;
    if (b->n_steps) {
        e.md = pcre2_match_data_create_from_pattern(b->steps[0].re, NULL);
        for (uint32_t k = 1; e.md && k < b->n_steps; k++) { /* one match data big enough for every step */
            pcre2_match_data *m2 = pcre2_match_data_create_from_pattern(b->steps[k].re, NULL);
            if (m2 && pcre2_get_ovector_count(m2) > pcre2_get_ovector_count(e.md)) {
                pcre2_match_data_free(e.md);
                e.md = m2;
            } else pcre2_match_data_free(m2);
        }
        if (!e.md) return em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    }
    split_added(&e, text, len, 0, b->n_raw_added, raw_text);
    pcre2_match_data_free(e.md);
    free(e.sym); free(e.prev); free(e.next); free(e.len); free(e.heap);
    if (e.st != EM_OK) { free(e.ids); return e.st; }
    *ids = e.n ? e.ids : NULL;
    if (!e.n) free(e.ids);
    *n = e.n;
    return EM_OK;
}
