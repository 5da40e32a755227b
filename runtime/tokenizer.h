/*
 * tokenizer.h — the tokenizer front (tokenizer.c) and its two back ends: SentencePiece through the C++
 * shim (spm_shim.cc, Debian's libsentencepiece) and byte-level BPE from an HF tokenizer.json
 * (tokenizer_bpe.c, on libutf8proc and libpcre2). Internal: not installed; the public API is the
 * "text" section of edgemamba.h.
 *
 * Why a front: both back ends reduce to the same two things the runtime needs in the token loop, computed
 * once at load so that the loop allocates nothing:
 *   - a table of every id's bytes (what the id prints: SentencePiece's "▁" is a space, <0xNN> is one byte,
 *     byte-level BPE's mapped characters are bytes again; control and special tokens print nothing), which
 *     the streaming UTF-8 decoder below turns into whole characters;
 *   - the list of special tokens, for EM_TOKENIZE_PARSE_SPECIAL.
 * Encoding text may allocate (the libraries do); it happens outside the token loop.
 */
#ifndef EM_TOKENIZER_H
#define EM_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "edgemamba.h"

/* per-id flags in em_tokenizer.flags */
#define EM_PIECE_SPECIAL 0x1u   /* control / special token: prints nothing while streaming */
#define EM_PIECE_UNUSED 0x2u    /* an id the tokenizer never produces (SentencePiece "unused", BPE holes) */

struct em_spm;  /* spm_shim.cc */
struct em_bpe;  /* tokenizer_bpe.c */

struct em_tokenizer {
    em_tokenizer_type type;
    uint32_t vocab;             /* ids are [0, vocab) */
    int32_t bos, eos, unk, pad; /* -1: none */
    uint32_t *off;              /* [vocab + 1] offsets of each id's bytes in bytes */
    uint8_t *bytes;             /* every id's bytes, concatenated */
    uint8_t *flags;             /* [vocab] EM_PIECE_* */
    uint32_t max_bytes;         /* longest entry of the table */
    int32_t *special;           /* [n_special] SentencePiece control and unknown ids (EM_TOKENIZE_PARSE_SPECIAL) */
    uint32_t n_special;
    struct em_spm *spm;
    struct em_bpe *bpe;
};

// ---- UTF-8 ------------------------------------------------------------------------------------------

/* Classifies the bytes at s[0..n) (n >= 1): returns 1 for a valid character of *len bytes; 0 for an
 * invalid sequence whose maximal subpart (Unicode 15 §3.9, "U+FFFD substitution of maximal subparts",
 * what Python's and Rust's lossy decoders do) is *len bytes; -1 when s[0..n) is a proper prefix of a
 * valid character (more bytes may complete it; *len = n). */
int em_utf8_next(const uint8_t *s, size_t n, size_t *len);

/* Valid UTF-8 copy of s[0..n) with each maximal invalid subpart replaced by U+FFFD (malloc'd, NUL-
 * terminated; *out_n excludes the NUL). NULL on allocation failure. */
char *em_utf8_sanitize(const char *s, size_t n, size_t *out_n);

/* Streaming decoder in fixed memory: bytes go in token by token, whole characters come out; a character
 * split across tokens is held (at most 3 bytes) until it completes; invalid bytes come out as U+FFFD. */
typedef struct em_utf8_stream { uint8_t pend[4]; uint8_t n_pend; } em_utf8_stream;
#define EM_UTF8_STREAM_OUT(n) (3u * ((n) + 4u)) /* out bytes enough for a push of n bytes */
/* Pushes in[0..n) and writes the completed text to out (room for EM_UTF8_STREAM_OUT(n)); returns bytes written. */
size_t em_utf8_stream_push(em_utf8_stream *st, const uint8_t *in, size_t n, char *out);
/* Ends the stream: a held partial character comes out as U+FFFD (out: room for 3 bytes); returns bytes written. */
size_t em_utf8_stream_flush(em_utf8_stream *st, char *out);

// ---- front (tokenizer.c) ------------------------------------------------------------------------------

/** Loads a tokenizer from the bytes of a tokenizer.model (EM_TOKENIZER_SPM) or tokenizer.json
 *  (EM_TOKENIZER_BPE). The bytes are not kept. @return EM_OK or EM_ERR_TOKENIZER / EM_ERR_OUT_OF_MEMORY. */
em_status em_tokenizer_create_memory(em_tokenizer_type type, const void *data, size_t size, em_tokenizer **out);

/** Encodes into a malloc'd array (*ids; free() it; NULL when *n == 0). */
em_status em_tokenizer_encode_alloc(const em_tokenizer *tok, const char *text, size_t len, uint32_t flags,
                                    int32_t **ids, size_t *n);

/** The bytes id prints while streaming (see the table above); id must be in [0, vocab). */
static inline const uint8_t *em_tok_bytes(const em_tokenizer *t, int32_t id, size_t *n) {
    *n = t->off[id + 1] - t->off[id];
    return t->bytes + t->off[id];
}

// ---- SentencePiece shim (spm_shim.cc): a C interface over sentencepiece::SentencePieceProcessor -------

typedef enum em_spm_kind { EM_SPM_NORMAL = 0, EM_SPM_UNKNOWN = 1, EM_SPM_CONTROL = 2, EM_SPM_USER = 3,
                           EM_SPM_BYTE = 4, EM_SPM_UNUSED = 5 } em_spm_kind;

/* Every function returns 0 on success; on failure -1 with a message in err (err_cap bytes). */
int em_spm_load(const void *data, size_t size, struct em_spm **out, char *err, size_t err_cap);
void em_spm_free(struct em_spm *spm);
int em_spm_size(const struct em_spm *spm);                /* pieces */
/* Special ids, -1 if none: which = 'b' bos, 'e' eos, 'u' unk, 'p' pad. */
int em_spm_special_id(const struct em_spm *spm, char which);
/* The piece of id as stored ("▁the", "<0x0A>", "</s>"), NUL-terminated, owned by the model; its kind. */
const char *em_spm_piece(const struct em_spm *spm, int id, size_t *len, em_spm_kind *kind);
/* -1 if the piece is not in the vocabulary (not the unk id, unlike PieceToId). */
int em_spm_find(const struct em_spm *spm, const char *piece, size_t len);
/* Encodes text (SentencePiece's own normalization) to a malloc'd array of *n ids (NULL when *n == 0). */
int em_spm_encode(const struct em_spm *spm, const char *text, size_t len, int32_t **ids, size_t *n,
                  char *err, size_t err_cap);
/* Decodes ids as SentencePiece does (control ids dropped, leading dummy space removed) to a malloc'd,
 * NUL-terminated string of *len bytes. */
int em_spm_decode(const struct em_spm *spm, const int32_t *ids, size_t n, char **text, size_t *len,
                  char *err, size_t err_cap);

// ---- byte-level BPE (tokenizer_bpe.c) -----------------------------------------------------------------

/** Parses an HF tokenizer.json (byte-level BPE; the supported subset is in docs/tokenizers.md). */
em_status em_bpe_load(const char *json, size_t len, struct em_bpe **out);
void em_bpe_free(struct em_bpe *bpe);
/** Number of ids (largest id + 1, added tokens included). */
uint32_t em_bpe_vocab(const struct em_bpe *bpe);
/** Fills bytes[off[id]..off[id+1]) and flags for every id: the caller sizes the arrays with
 *  em_bpe_table_bytes(). */
size_t em_bpe_table_bytes(const struct em_bpe *bpe);
void em_bpe_fill_table(const struct em_bpe *bpe, uint32_t *off, uint8_t *bytes, uint8_t *flags);
/** Encodes valid UTF-8 (the front sanitizes first) to a malloc'd array. parse_special: special added
 *  tokens in the text become their ids (HF's default); non-special added tokens always do. */
em_status em_bpe_encode(const struct em_bpe *bpe, const char *text, size_t len, int parse_special, int32_t **ids,
                        size_t *n);
/** The id of an added token with this content, or of the vocabulary token whose bytes are text; -1. */
int32_t em_bpe_find(const struct em_bpe *bpe, const char *text, size_t len);

#endif /* EM_TOKENIZER_H */
