/*
 * tokenizer.c — the tokenizer front: loads the blob's tokenizer section through one of the two back ends
 * (SentencePiece shim, byte-level BPE), builds the per-id byte table the streaming decoder reads, and
 * implements the public em_tokenizer_* API, plus the UTF-8 helpers everything text-related shares.
 *
 * Invalid UTF-8: input text is made valid before any back end sees it, one U+FFFD per maximal invalid
 * subpart (what Python's bytes.decode(errors="replace") and Rust's from_utf8_lossy do, so the BPE goldens
 * made by HF from Python strings apply to raw bytes). Output text: the same rule, so no caller ever
 * receives invalid UTF-8 and nothing crashes on bytes a model makes up.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "tokenizer.h"
#include "util.h"

#define EM_TOKENIZER_FILE_MAX (512ull << 20) /* larger than this is not a tokenizer (em-pack's limit too) */

// ---- UTF-8 ----------------------------------------------------------------------------------------------

int em_utf8_next(const uint8_t *s, size_t n, size_t *len) {
    uint8_t c = s[0];
    if (c < 0x80) { *len = 1; return 1; }
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF; /* the allowed range of the second byte (Unicode Table 3-7) */
    if (c >= 0xC2 && c <= 0xDF) need = 2;
    else if (c >= 0xE0 && c <= 0xEF) { need = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { need = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else { *len = 1; return 0; } /* 80..C1, F5..FF never start a character */
    for (size_t i = 1; i < need; i++) {
        if (i >= n) { *len = n; return -1; }
        uint8_t b = s[i];
        int ok = i == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
        if (!ok) { *len = i; return 0; } /* the maximal subpart is what was valid so far */
    }
    *len = need;
    return 1;
}

char *em_utf8_sanitize(const char *s, size_t n, size_t *out_n) {
    const uint8_t *u = (const uint8_t *)s;
    size_t bad = 0, i = 0, l;
    while (i < n) {
        int r = em_utf8_next(u + i, n - i, &l);
        if (r != 1) bad++;
        i += l;
    }
    char *o = malloc(n + 2 * bad + 1); /* each bad subpart (>= 1 byte) becomes 3 bytes */
    if (!o) return NULL;
    size_t k = 0;
    for (i = 0; i < n;) {
        int r = em_utf8_next(u + i, n - i, &l);
        if (r == 1) memcpy(o + k, u + i, l), k += l;
        else memcpy(o + k, "\xEF\xBF\xBD", 3), k += 3;
        i += l;
    }
    o[k] = 0;
    *out_n = k;
    return o;
}

size_t em_utf8_stream_push(em_utf8_stream *st, const uint8_t *in, size_t n, char *out) {
    /* The stream is pend[0..np) followed by in[0..n); a character may straddle the two. */
    const size_t np = st->n_pend, total = np + n;
    size_t o = 0, j = 0, l;
    uint8_t win[8];
    while (j < total) {
        const uint8_t *p;
        size_t avail;
        if (j < np) { /* the window crosses pend and in: copy at most 4 bytes of it */
            avail = 0;
            for (size_t k = j; k < total && avail < 4; k++) win[avail++] = k < np ? st->pend[k] : in[k - np];
            p = win;
        } else {
            p = in + (j - np);
            avail = total - j;
        }
        int r = em_utf8_next(p, avail, &l);
        if (r == 1) { memcpy(out + o, p, l); o += l; }
        else if (r == 0) { memcpy(out + o, "\xEF\xBF\xBD", 3); o += 3; }
        else { /* an incomplete character at the end: keep it (l <= 3 bytes) */
            uint8_t keep[4];
            memcpy(keep, p, l);
            memcpy(st->pend, keep, l);
            st->n_pend = (uint8_t)l;
            return o;
        }
        j += l;
    }
    st->n_pend = 0;
    return o;
}

size_t em_utf8_stream_flush(em_utf8_stream *st, char *out) {
    if (!st->n_pend) return 0;
    st->n_pend = 0;
    memcpy(out, "\xEF\xBF\xBD", 3);
    return 3;
}

// ---- loading --------------------------------------------------------------------------------------------

/* SentencePiece: what each piece prints. "▁" (U+2581) is a space; <0xNN> is one byte; the unknown piece
 * prints " ⁇ " as spm's Decode does; control and unused pieces print nothing. */
static em_status spm_table(em_tokenizer *t) {
    size_t total = 0, len;
    em_spm_kind kind;
    for (uint32_t id = 0; id < t->vocab; id++) {
        (void)em_spm_piece(t->spm, (int)id, &len, &kind);
        total += len + 8;
    }
    t->off = malloc(sizeof(uint32_t) * (t->vocab + 1));
    t->bytes = malloc(total + 1);
    t->flags = calloc(t->vocab, 1);
    t->special = malloc(sizeof(int32_t) * t->vocab);
    if (!t->off || !t->bytes || !t->flags || !t->special || total > UINT32_MAX)
        return em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer: cannot allocate the piece table (%zu bytes)", total);
    uint32_t at = 0;
    for (uint32_t id = 0; id < t->vocab; id++) {
        const char *p = em_spm_piece(t->spm, (int)id, &len, &kind);
        t->off[id] = at;
        uint8_t *o = t->bytes + at;
        size_t k = 0;
        switch (kind) {
        case EM_SPM_CONTROL:
            t->flags[id] = EM_PIECE_SPECIAL;
            if (len) t->special[t->n_special++] = (int32_t)id;
            break;
        case EM_SPM_UNUSED: t->flags[id] = EM_PIECE_UNUSED; break;
        case EM_SPM_UNKNOWN:
            memcpy(o, " \xE2\x81\x87 ", 5);
            k = 5;
            if (len) t->special[t->n_special++] = (int32_t)id;
            break;
        case EM_SPM_BYTE: {
            unsigned v = 0;
            if (len == 6 && sscanf(p, "<0x%2X>", &v) == 1) o[k++] = (uint8_t)v;
            break;
        }
        default:
            for (size_t i = 0; i < len;) {
                if (i + 3 <= len && !memcmp(p + i, "\xE2\x96\x81", 3)) { o[k++] = ' '; i += 3; }
                else o[k++] = (uint8_t)p[i++];
            }
        }
        at += (uint32_t)k;
        if (k > t->max_bytes) t->max_bytes = (uint32_t)k;
    }
    t->off[t->vocab] = at;
    return EM_OK;
}

static em_status bpe_table(em_tokenizer *t) {
    size_t total = em_bpe_table_bytes(t->bpe);
    t->off = malloc(sizeof(uint32_t) * (t->vocab + 1));
    t->bytes = malloc(total + 1);
    t->flags = calloc(t->vocab, 1);
    if (!t->off || !t->bytes || !t->flags || total > UINT32_MAX)
        return em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer: cannot allocate the token table (%zu bytes)", total);
    em_bpe_fill_table(t->bpe, t->off, t->bytes, t->flags);
    for (uint32_t id = 0; id < t->vocab; id++)
        if (t->off[id + 1] - t->off[id] > t->max_bytes) t->max_bytes = t->off[id + 1] - t->off[id];
    return EM_OK;
}

em_status em_tokenizer_create_memory(em_tokenizer_type type, const void *data, size_t size, em_tokenizer **out) {
    *out = NULL;
    if (!data || !size) return em_fail(EM_ERR_TOKENIZER, "tokenizer: no tokenizer bytes");
    em_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    t->type = type;
    t->bos = t->eos = t->unk = t->pad = -1;
    em_status s = EM_OK;
    if (type == EM_TOKENIZER_SPM) {
        char err[512] = "";
        if (em_spm_load(data, size, &t->spm, err, sizeof err) != 0) {
            s = em_fail(EM_ERR_TOKENIZER, "tokenizer: %s", err);
        } else {
            t->vocab = (uint32_t)em_spm_size(t->spm);
            t->bos = em_spm_special_id(t->spm, 'b');
            t->eos = em_spm_special_id(t->spm, 'e');
            t->unk = em_spm_special_id(t->spm, 'u');
            t->pad = em_spm_special_id(t->spm, 'p');
            s = spm_table(t);
        }
    } else if (type == EM_TOKENIZER_BPE) {
        s = em_bpe_load(data, size, &t->bpe);
        if (s == EM_OK) {
            t->vocab = em_bpe_vocab(t->bpe);
            s = bpe_table(t);
        }
    } else {
        s = em_fail(EM_ERR_TOKENIZER, "tokenizer: unknown tokenizer kind %d", (int)type);
    }
    if (s != EM_OK) {
        em_tokenizer_free(t);
        return s;
    }
    *out = t;
    return EM_OK;
}

EM_API em_status em_tokenizer_create(const em_model *model, em_tokenizer **out) {
    if (out) *out = NULL;
    if (!model || !out) return em_fail(EM_ERR_INVALID_ARG, "em_tokenizer_create: model and out must not be NULL");
    const em_blob *b = &model->blob;
    uint32_t kind = model->cfg.tokenizer_kind;
    if (kind == EM_TOK_NONE || !b->tokenizer || !b->tokenizer_size)
        return em_fail(EM_ERR_TOKENIZER, "the model \"%.*s\" has no tokenizer (pack it with em-pack --tokenizer FILE)",
                       (int)model->cfg.name.len, model->cfg.name.ptr ? model->cfg.name.ptr : "");
    if (kind != EM_TOK_SPM && kind != EM_TOK_BPE)
        return em_fail(EM_ERR_TOKENIZER, "the blob's tokenizer kind %u is unknown", kind);
    em_tokenizer *t = NULL;
    EM_TRY(em_tokenizer_create_memory(kind == EM_TOK_SPM ? EM_TOKENIZER_SPM : EM_TOKENIZER_BPE, b->tokenizer,
                                      (size_t)b->tokenizer_size, &t));
    /* The config's special ids win: they are what the model was trained with. */
    if (model->cfg.bos_id >= 0 && (uint32_t)model->cfg.bos_id < t->vocab) t->bos = model->cfg.bos_id;
    if (model->cfg.eos_id >= 0 && (uint32_t)model->cfg.eos_id < t->vocab) t->eos = model->cfg.eos_id;
    if (model->cfg.pad_id >= 0 && (uint32_t)model->cfg.pad_id < t->vocab) t->pad = model->cfg.pad_id;
    *out = t;
    em_clear_error();
    return EM_OK;
}

EM_API em_status em_model_get_chat_template(const em_model *model, const char **text, size_t *len) {
    if (!model || !text || !len) return em_fail(EM_ERR_INVALID_ARG, "em_model_get_chat_template: NULL argument");
    *text = model->cfg.chat_template.ptr ? model->cfg.chat_template.ptr : "";
    *len = model->cfg.chat_template.ptr ? model->cfg.chat_template.len : 0;
    return EM_OK;
}

EM_API em_status em_tokenizer_create_from_file(const char *path, em_tokenizer **out) {
    if (out) *out = NULL;
    if (!path || !out) return em_fail(EM_ERR_INVALID_ARG, "em_tokenizer_create_from_file: NULL argument");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return em_fail(errno == ENOENT ? EM_ERR_NOT_FOUND : EM_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > EM_TOKENIZER_FILE_MAX) {
        close(fd);
        return em_fail(EM_ERR_IO, "%s: not a regular file of at most %llu bytes", path,
                       (unsigned long long)EM_TOKENIZER_FILE_MAX);
    }
    size_t n = (size_t)sb.st_size, got = 0;
    char *buf = malloc(n + 1);
    if (!buf) { close(fd); return em_fail(EM_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes", path, n); }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { free(buf); close(fd); return em_fail(EM_ERR_IO, "%s: read failed", path); }
        got += (size_t)r;
    }
    close(fd);
    /* the same rule as em-pack: the extension decides, else the first non-blank byte ('{' is JSON) */
    size_t pl = strlen(path);
    em_tokenizer_type type = EM_TOKENIZER_SPM;
    if (pl >= 5 && !strcmp(path + pl - 5, ".json")) type = EM_TOKENIZER_BPE;
    else if (!(pl >= 6 && !strcmp(path + pl - 6, ".model")))
        for (size_t i = 0; i < n; i++) {
            if (buf[i] == ' ' || buf[i] == '\n' || buf[i] == '\r' || buf[i] == '\t') continue;
            if (buf[i] == '{') type = EM_TOKENIZER_BPE;
            break;
        }
    em_status s = em_tokenizer_create_memory(type, buf, n, out);
    free(buf);
    if (s == EM_OK) em_clear_error();
    return s;
}

EM_API void em_tokenizer_free(em_tokenizer *t) {
    if (!t) return;
    if (t->spm) em_spm_free(t->spm);
    if (t->bpe) em_bpe_free(t->bpe);
    free(t->off);
    free(t->bytes);
    free(t->flags);
    free(t->special);
    free(t);
}

EM_API em_status em_tokenizer_get_info(const em_tokenizer *t, em_tokenizer_info *info) {
    if (!t || !info) return em_fail(EM_ERR_INVALID_ARG, "em_tokenizer_get_info: NULL argument");
    memset(info, 0, sizeof *info);
    info->type = t->type;
    info->vocab_size = t->vocab;
    info->bos_id = t->bos;
    info->eos_id = t->eos;
    info->unk_id = t->unk;
    info->pad_id = t->pad;
    info->max_token_bytes = t->max_bytes;
    return EM_OK;
}

// ---- encode ---------------------------------------------------------------------------------------------

/* SentencePiece with PARSE_SPECIAL: the control pieces ("<s>", "</s>", ...) and the unknown piece written
 * in the text are cut out and become their ids; the text between them is encoded by the library, each
 * segment with SentencePiece's dummy prefix (docs/tokenizers.md). The leftmost, then longest, piece wins. */
static em_status spm_encode_special(const em_tokenizer *t, const char *text, size_t len, int32_t **ids,
                                    size_t *n) {
    size_t cap = 0, cnt = 0, seg = 0, i = 0;
    int32_t *v = NULL;
    char err[512] = "";
    em_status s = EM_OK;
    while (i <= len) {
        int32_t best = -1;
        size_t best_len = 0;
        for (uint32_t k = 0; k < t->n_special && i < len; k++) {
            size_t pl;
            em_spm_kind kind;
            const char *p = em_spm_piece(t->spm, (int)t->special[k], &pl, &kind);
            if (pl > best_len && pl <= len - i && p[0] == text[i] && !memcmp(text + i, p, pl)) {
                best = t->special[k];
                best_len = pl;
            }
        }
        if (best < 0 && i < len) { i++; continue; }
        /* flush the segment [seg, i), then the special id */
        int32_t *sv = NULL;
        size_t sn = 0;
        if (i > seg && em_spm_encode(t->spm, text + seg, i - seg, &sv, &sn, err, sizeof err) != 0) {
            s = em_fail(EM_ERR_TOKENIZER, "tokenizer: %s", err);
            break;
        }
        if (cnt + sn + 1 > cap) {
            size_t nc = (cnt + sn + 1) * 2;
            int32_t *nv = realloc(v, nc * sizeof *v);
            if (!nv) { free(sv); s = em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory"); break; }
            v = nv;
            cap = nc;
        }
        if (sn) memcpy(v + cnt, sv, sn * sizeof *v);
        cnt += sn;
        free(sv);
        if (best < 0) break; /* i == len */
        v[cnt++] = best;
        i += best_len;
        seg = i;
    }
    if (s != EM_OK) { free(v); return s; }
    if (!cnt) { free(v); v = NULL; }
    *ids = v;
    *n = cnt;
    return EM_OK;
}

em_status em_tokenizer_encode_alloc(const em_tokenizer *t, const char *text, size_t len, uint32_t flags,
                                    int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    size_t clen = 0;
    char *clean = em_utf8_sanitize(text ? text : "", text ? len : 0, &clen);
    if (!clean) return em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    int32_t *v = NULL;
    size_t cnt = 0;
    em_status s = EM_OK;
    if (t->type == EM_TOKENIZER_SPM) {
        char err[512] = "";
        if (flags & EM_TOKENIZE_PARSE_SPECIAL) s = spm_encode_special(t, clean, clen, &v, &cnt);
        else if (em_spm_encode(t->spm, clean, clen, &v, &cnt, err, sizeof err) != 0)
            s = em_fail(EM_ERR_TOKENIZER, "tokenizer: %s", err);
    } else {
        s = em_bpe_encode(t->bpe, clean, clen, (flags & EM_TOKENIZE_PARSE_SPECIAL) != 0, &v, &cnt);
    }
    free(clean);
    if (s != EM_OK) return s;
    if ((flags & EM_TOKENIZE_ADD_BOS) && t->bos >= 0) {
        int32_t *nv = realloc(v, (cnt + 1) * sizeof *nv);
        if (!nv) { free(v); return em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory"); }
        memmove(nv + 1, nv, cnt * sizeof *nv);
        nv[0] = t->bos;
        v = nv;
        cnt++;
    }
    *ids = v;
    *n = cnt;
    return EM_OK;
}

EM_API em_status em_tokenizer_encode(const em_tokenizer *t, const char *text, size_t len, uint32_t flags,
                                     int32_t *ids, size_t cap, size_t *n_ids) {
    if (!t || !n_ids || (!text && len))
        return em_fail(EM_ERR_INVALID_ARG,
                       "em_tokenizer_encode: tok and n_ids must not be NULL, text only if len is 0");
    if (flags & ~(EM_TOKENIZE_ADD_BOS | EM_TOKENIZE_PARSE_SPECIAL))
        return em_fail(EM_ERR_INVALID_ARG, "em_tokenizer_encode: unknown flags 0x%x", flags);
    int32_t *v = NULL;
    size_t n = 0;
    EM_TRY(em_tokenizer_encode_alloc(t, text, len, flags, &v, &n));
    *n_ids = n;
    em_status s = EM_OK;
    if (ids && cap < n) s = em_fail(EM_ERR_BUFFER_TOO_SMALL, "em_tokenizer_encode: %zu ids needed, cap is %zu", n, cap);
    else if (ids && n) memcpy(ids, v, n * sizeof *v);
    free(v);
    if (s == EM_OK) em_clear_error();
    return s;
}

// ---- decode ---------------------------------------------------------------------------------------------

EM_API em_status em_tokenizer_decode(const em_tokenizer *t, const int32_t *ids, size_t n, uint32_t flags, char *text,
                                     size_t cap, size_t *len) {
    if (!t || !len || (!ids && n))
        return em_fail(EM_ERR_INVALID_ARG, "em_tokenizer_decode: tok and len must not be NULL, ids only if n is 0");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= t->vocab)
            return em_fail(EM_ERR_TOKEN_RANGE, "em_tokenizer_decode: id %d at %zu is outside [0, %u)", ids[i], i,
                           t->vocab);
    char *out = NULL;
    size_t olen = 0;
    if (t->type == EM_TOKENIZER_SPM) {
        char err[512] = "", *raw = NULL;
        size_t rlen = 0;
        if (em_spm_decode(t->spm, ids, n, &raw, &rlen, err, sizeof err) != 0)
            return em_fail(EM_ERR_TOKENIZER, "tokenizer: %s", err);
        out = em_utf8_sanitize(raw, rlen, &olen); /* byte pieces can make invalid UTF-8 */
        free(raw);
    } else {
        /* HF's ByteLevel decoder: every token's bytes concatenated, then a lossy UTF-8 conversion */
        size_t total = 0, l;
        for (size_t i = 0; i < n; i++) total += t->off[ids[i] + 1] - t->off[ids[i]];
        char *raw = malloc(total + 1);
        if (!raw) return em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            if ((flags & EM_DETOKENIZE_SKIP_SPECIAL) && (t->flags[ids[i]] & EM_PIECE_SPECIAL)) continue;
            const uint8_t *p = em_tok_bytes(t, ids[i], &l);
            memcpy(raw + k, p, l);
            k += l;
        }
        out = em_utf8_sanitize(raw, k, &olen);
        free(raw);
    }
    if (!out) return em_fail(EM_ERR_OUT_OF_MEMORY, "tokenizer: out of memory");
    *len = olen;
    em_status s = EM_OK;
    if (text && cap < olen + 1)
        s = em_fail(EM_ERR_BUFFER_TOO_SMALL, "em_tokenizer_decode: %zu bytes needed (NUL included), cap is %zu",
                    olen + 1, cap);
    else if (text) memcpy(text, out, olen + 1);
    free(out);
    if (s == EM_OK) em_clear_error();
    return s;
}

EM_API em_status em_tokenizer_token_bytes(const em_tokenizer *t, int32_t id, const char **bytes, size_t *len) {
    if (!t || !bytes || !len) return em_fail(EM_ERR_INVALID_ARG, "em_tokenizer_token_bytes: NULL argument");
    if (id < 0 || (uint32_t)id >= t->vocab)
        return em_fail(EM_ERR_TOKEN_RANGE, "em_tokenizer_token_bytes: id %d is outside [0, %u)", id, t->vocab);
    *bytes = (const char *)em_tok_bytes(t, id, len);
    if (t->flags[id] & (EM_PIECE_SPECIAL | EM_PIECE_UNUSED)) *len = 0; /* streams as nothing */
    return EM_OK;
}

EM_API em_status em_tokenizer_find(const em_tokenizer *t, const char *text, int32_t *id) {
    if (!t || !text || !id) return em_fail(EM_ERR_INVALID_ARG, "em_tokenizer_find: NULL argument");
    size_t len = strlen(text);
    int32_t r = -1;
    if (t->type == EM_TOKENIZER_SPM) {
        r = em_spm_find(t->spm, text, len); /* the piece as stored ("</s>", "▁the") */
        for (uint32_t i = 0; r < 0 && i < t->vocab; i++) { /* else by what it prints (" the") */
            size_t l;
            const uint8_t *p = em_tok_bytes(t, (int32_t)i, &l);
            if (l == len && len && !memcmp(p, text, len) && !(t->flags[i] & (EM_PIECE_SPECIAL | EM_PIECE_UNUSED)))
                r = (int32_t)i;
        }
    } else {
        r = em_bpe_find(t->bpe, text, len);
    }
    if (r < 0) return em_fail(EM_ERR_NOT_FOUND, "tokenizer: no token has the text \"%.64s\"", text);
    *id = r;
    return EM_OK;
}
