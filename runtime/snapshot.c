/*
 * snapshot.c — session state snapshots: to a caller buffer or a file, and back. DESIGN.md principle 8:
 * a system prompt is prefilled once and every conversation starts from its snapshot.
 *
 * Format v1 (little-endian; docs/tokenizers.md, "Snapshots", is the spec):
 *
 *   +--------------------+------------------------------+----------+-------------------------------------+
 *   | header (128 bytes) | section table (32 B/section) | XXH3 (8) | sections, each at a 64-aligned offset |
 *   +--------------------+------------------------------+----------+-------------------------------------+
 *   header: "EMSNAP\0\1", version, header size, total size, the blob's content id, n_past, n_sections,
 *           flags (logits present), the session dims it needs, reserved zeros, XXH3-64 of bytes [0, 120)
 *   table:  id, 0, offset, size, XXH3-64 of the section's bytes
 *   sections: CONV f32 [n_m2, conv_dim, K-1] | SSM f32 [n_m2, H, P, N] |
 *             KV (attention layers only) f32 K [n_attn, n_past, kv_dim] then V [n_attn, n_past, kv_dim] |
 *             LOGITS f32 [vocab] (when the session has logits) | SAMPLER (generator, window, UTF-8 carry)
 *
 * The KV section holds only the used prefix of each layer's cache (n_past rows of max_context), so a
 * snapshot's size follows the conversation, not the plan, and restores into a session planned with any
 * max_context that holds it. Restore checks everything (magic, version, checksums, bounds, content id,
 * dims) before it writes a byte: a rejected snapshot leaves the session as it was. Neither direction
 * allocates (the file is written with write(2) and read through mmap).
 *
 * CUDA sessions: the same format. The states are staged through the stack in 64 KB chunks (cuda_exec.c copies
 * them synchronously); the device keeps K and V in bf16, written here widened to f32 (exact), and a restore rounds
 * f32 rows to bf16 as the device rounds every new row (exact for a CUDA snapshot; a CPU snapshot's rows are
 * rounded), so snapshots move between the backends. A device copy that fails half-way through a restore resets
 * the session (EM_ERR_DEVICE): it never keeps half a state.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include "cuda_exec.h"
#include "session.h"
#include "util.h"

#define SNAP_MAGIC "EMSNAP\x00\x01"
#define SNAP_VERSION 1u
#define SNAP_HEADER 128u
#define SNAP_ENTRY 32u
#define SNAP_MAX_SECTIONS 5u
#define SNAP_SAMPLER_BYTES (32u + 16u + 4u * EM_SAMPLER_MAX_RECENT)

enum { SNAP_CONV = 1, SNAP_SSM = 2, SNAP_KV = 3, SNAP_LOGITS = 4, SNAP_SAMPLER = 5 };
enum { H_VERSION = 8, H_HEADER_SIZE = 12, H_TOTAL = 16, H_CONTENT_ID = 24, H_N_PAST = 40, H_N_SECTIONS = 48,
       H_FLAGS = 52, H_DIMS = 56 /* 9 x u32: n_m2, conv_dim, K, H, P, N, vocab, n_attn, kv_dim */, H_SUM = 120 };
#define SNAP_N_DIMS 9u
#define SNAP_FLAG_LOGITS 0x1u

// ---- what a session holds --------------------------------------------------------------------------------

typedef struct snap_layout {
    uint32_t dims[SNAP_N_DIMS];
    uint32_t n;                                /* sections */
    uint32_t id[SNAP_MAX_SECTIONS];
    uint64_t off[SNAP_MAX_SECTIONS], size[SNAP_MAX_SECTIONS];
    uint64_t total;
} snap_layout;

static uint64_t align64(uint64_t x) { return (x + 63) & ~(uint64_t)63; }

static void session_dims(const em_session *s, uint32_t dims[SNAP_N_DIMS]) {
    const em_model *m = s->model;
    const em_dims d = s->dim;
    uint32_t v[SNAP_N_DIMS] = { m->n_mamba2, d.conv_dim, d.K, d.H, d.P, d.N, d.vocab, m->n_attn,
                                m->n_attn ? m->cfg.attn_n_kv_head * m->cfg.attn_head_dim : 0 };
    memcpy(dims, v, sizeof v);
}

/* Bytes of section id for dims and n_past (0: absent). */
static uint64_t section_bytes(uint32_t id, const uint32_t *dm, uint64_t n_past, int logits) {
    const uint64_t f = sizeof(float);
    switch (id) {
    case SNAP_CONV: return f * dm[0] * dm[1] * (dm[2] ? dm[2] - 1 : 0);
    case SNAP_SSM: return f * dm[0] * dm[3] * dm[4] * dm[5];
    case SNAP_KV: return dm[7] ? 2 * f * dm[7] * n_past * dm[8] : 0;
    case SNAP_LOGITS: return logits ? f * dm[6] : 0;
    case SNAP_SAMPLER: return SNAP_SAMPLER_BYTES;
    default: return 0;
    }
}

static void plan(const uint32_t *dims, uint64_t n_past, int logits, snap_layout *L) {
    memset(L, 0, sizeof *L);
    memcpy(L->dims, dims, sizeof L->dims);
    for (uint32_t id = SNAP_CONV; id <= SNAP_SAMPLER; id++) {
        uint64_t b = section_bytes(id, dims, n_past, logits);
        if (!b && (id == SNAP_KV || id == SNAP_LOGITS)) continue; /* optional sections */
        L->id[L->n] = id;
        L->size[L->n] = b;
        L->n++;
    }
    uint64_t at = align64(SNAP_HEADER + SNAP_ENTRY * L->n + 8);
    for (uint32_t i = 0; i < L->n; i++) {
        L->off[i] = at;
        at = align64(at + L->size[i]);
    }
    L->total = at;
}

/* The sampler section: rng[4] u64 | n_recent u32 | recent_head u32 | utf8_pend[4] | n_utf8_pend u32 |
 * recent[EM_SAMPLER_MAX_RECENT] i32. */
static void sampler_bytes(const em_session *s, uint8_t out[SNAP_SAMPLER_BYTES]) {
    memset(out, 0, SNAP_SAMPLER_BYTES);
    for (int i = 0; i < 4; i++) em_st64(out + 8 * i, s->rng[i]);
    em_st32(out + 32, s->n_recent);
    em_st32(out + 36, s->recent_head);
    memcpy(out + 40, s->utf8_pend, 4);
    em_st32(out + 44, s->n_utf8_pend);
    for (uint32_t i = 0; i < EM_SAMPLER_MAX_RECENT && s->recent; i++) em_st32(out + 48 + 4 * i, (uint32_t)s->recent[i]);
}

// ---- writing: one routine for the buffer and the file -----------------------------------------------------

typedef struct sink { uint8_t *buf; int fd; uint64_t at; em_status st; const char *path; } sink;

static void put(sink *k, const void *p, uint64_t n) {
    if (k->st != EM_OK || !n) return;
    if (k->buf) {
        memcpy(k->buf + k->at, p, n);
    } else {
        const uint8_t *c = p;
        for (uint64_t done = 0; done < n;) {
            ssize_t w = write(k->fd, c + done, n - done);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) { k->st = em_fail(EM_ERR_IO, "%s: write failed: %s", k->path, strerror(errno)); return; }
            done += (uint64_t)w;
        }
    }
    k->at += n;
}

static void pad_to(sink *k, uint64_t at) {
    static const uint8_t zero[64];
    while (k->st == EM_OK && k->at < at) put(k, zero, at - k->at < 64 ? at - k->at : 64);
}

/* A receiver of the bytes of a section, one contiguous range at a time. */
typedef void (*range_fn)(void *ctx, const void *p, uint64_t n);
/* CUDA sessions: bytes [off, off + n) of a device part as host ranges, staged through the stack. */
#define SNAP_CUDA_CHUNK 65536u
static em_status cuda_ranges(em_session *s, int part, uint32_t layer, uint64_t off, uint64_t n, range_fn fn,
                             void *ctx) {
    uint8_t buf[SNAP_CUDA_CHUNK];
    for (uint64_t at = 0; at < n;) {
        const uint64_t k = n - at < SNAP_CUDA_CHUNK ? n - at : SNAP_CUDA_CHUNK;
        EM_TRY(em_cuda_session_state_get(s, part, layer, off + at, buf, k));
        fn(ctx, buf, k);
        at += k;
    }
    return EM_OK;
}

/* Visits the bytes of section id as a list of contiguous ranges (KV rows are strided in the session). */
static em_status section_ranges(em_session *s, uint32_t id, const uint8_t *sampler, range_fn fn, void *ctx) {
    const uint32_t *dm;
    uint32_t dims[SNAP_N_DIMS];
    session_dims(s, dims);
    dm = dims;
    const int cuda = s->cuda != NULL;
    switch (id) {
    case SNAP_CONV:
        if (cuda) return cuda_ranges(s, EM_CUDA_PART_CONV, 0, 0, section_bytes(SNAP_CONV, dm, 0, 0), fn, ctx);
        fn(ctx, s->conv_state, section_bytes(SNAP_CONV, dm, 0, 0));
        break;
    case SNAP_SSM:
        if (cuda) return cuda_ranges(s, EM_CUDA_PART_SSM, 0, 0, section_bytes(SNAP_SSM, dm, 0, 0), fn, ctx);
        fn(ctx, s->ssm_state, section_bytes(SNAP_SSM, dm, 0, 0));
        break;
    case SNAP_KV: {
        const uint64_t row = sizeof(float) * dm[8], layer = row * s->max_context;
        for (int kv = 0; kv < 2; kv++)
            for (uint32_t l = 0; l < dm[7]; l++) {
                if (cuda)
                    EM_TRY(cuda_ranges(s, kv ? EM_CUDA_PART_V : EM_CUDA_PART_K, l, 0, row * s->n_past, fn, ctx));
                else
                    fn(ctx, (const uint8_t *)(kv ? s->v_cache : s->k_cache) + l * layer, row * s->n_past);
            }
        break;
    }
    case SNAP_LOGITS:
        if (cuda) return cuda_ranges(s, EM_CUDA_PART_LOGITS, 0, 0, sizeof(float) * dm[6], fn, ctx);
        fn(ctx, s->logits, sizeof(float) * dm[6]);
        break;
    case SNAP_SAMPLER: fn(ctx, sampler, SNAP_SAMPLER_BYTES); break;
    default: break;
    }
    return EM_OK;
}

static void hash_range(void *ctx, const void *p, uint64_t n) { XXH3_64bits_update((XXH3_state_t *)ctx, p, n); }
static void put_range(void *ctx, const void *p, uint64_t n) { put((sink *)ctx, p, n); }

static em_status check_session(const em_session *s, const char *fn) {
    uint32_t dims[SNAP_N_DIMS];
    session_dims(s, dims);
    if (dims[7] && s->n_past > s->max_context)
        return em_fail(EM_ERR_INTERNAL, "%s: n_past %llu exceeds the KV cache", fn, (unsigned long long)s->n_past);
    return EM_OK;
}

static em_status write_snapshot(em_session *s, sink *k) {
    uint32_t dims[SNAP_N_DIMS];
    session_dims(s, dims);
    snap_layout L;
    plan(dims, s->n_past, s->have_logits, &L);
    uint8_t sampler[SNAP_SAMPLER_BYTES];
    sampler_bytes(s, sampler);

    uint8_t head[SNAP_HEADER + SNAP_ENTRY * SNAP_MAX_SECTIONS + 8];
    memset(head, 0, sizeof head);
    memcpy(head, SNAP_MAGIC, 8);
    em_st32(head + H_VERSION, SNAP_VERSION);
    em_st32(head + H_HEADER_SIZE, SNAP_HEADER);
    em_st64(head + H_TOTAL, L.total);
    memcpy(head + H_CONTENT_ID, s->model->blob.content_id, 16);
    em_st64(head + H_N_PAST, s->n_past);
    em_st32(head + H_N_SECTIONS, L.n);
    em_st32(head + H_FLAGS, s->have_logits ? SNAP_FLAG_LOGITS : 0);
    for (uint32_t i = 0; i < SNAP_N_DIMS; i++) em_st32(head + H_DIMS + 4 * i, dims[i]);
    em_st64(head + H_SUM, XXH3_64bits(head, H_SUM));
    for (uint32_t i = 0; i < L.n; i++) {
        uint8_t *e = head + SNAP_HEADER + SNAP_ENTRY * i;
        XXH3_state_t hs;
        XXH3_64bits_reset(&hs);
        EM_TRY(section_ranges(s, L.id[i], sampler, hash_range, &hs));
        em_st32(e, L.id[i]);
        em_st64(e + 8, L.off[i]);
        em_st64(e + 16, L.size[i]);
        em_st64(e + 24, XXH3_64bits_digest(&hs));
    }
    const size_t table_end = SNAP_HEADER + SNAP_ENTRY * L.n;
    em_st64(head + table_end, XXH3_64bits(head + SNAP_HEADER, SNAP_ENTRY * L.n));
    put(k, head, table_end + 8);
    for (uint32_t i = 0; i < L.n; i++) {
        pad_to(k, L.off[i]);
        EM_TRY(section_ranges(s, L.id[i], sampler, put_range, k));
    }
    pad_to(k, L.total);
    return k->st;
}

EM_API em_status em_session_snapshot(em_session *s, void *buf, size_t cap, size_t *size) {
    if (!s || !size) return em_fail(EM_ERR_INVALID_ARG, "em_session_snapshot: session and size must not be NULL");
    EM_TRY(check_session(s, "em_session_snapshot"));
    uint32_t dims[SNAP_N_DIMS];
    session_dims(s, dims);
    snap_layout L;
    plan(dims, s->n_past, s->have_logits, &L);
    *size = (size_t)L.total;
    if (!buf) return EM_OK;
    if (cap < L.total)
        return em_fail(EM_ERR_BUFFER_TOO_SMALL, "em_session_snapshot: %llu bytes needed, cap is %zu",
                       (unsigned long long)L.total, cap);
    sink k = { .buf = buf, .fd = -1, .st = EM_OK };
    EM_TRY(write_snapshot(s, &k));
    em_clear_error();
    return EM_OK;
}

EM_API em_status em_session_snapshot_file(em_session *s, const char *path) {
    if (!s || !path) return em_fail(EM_ERR_INVALID_ARG, "em_session_snapshot_file: session and path must not be NULL");
    EM_TRY(check_session(s, "em_session_snapshot_file"));
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return em_fail(EM_ERR_INVALID_ARG, "em_session_snapshot_file: path is too long");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return em_fail(EM_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    sink k = { .buf = NULL, .fd = fd, .st = EM_OK, .path = tmp };
    em_status st = write_snapshot(s, &k);
    if (st == EM_OK && fsync(fd) != 0) st = em_fail(EM_ERR_IO, "%s: fsync failed: %s", tmp, strerror(errno));
    if (close(fd) != 0 && st == EM_OK) st = em_fail(EM_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (st == EM_OK && rename(tmp, path) != 0)
        st = em_fail(EM_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    if (st != EM_OK) unlink(tmp);
    else em_clear_error();
    return st;
}

// ---- restoring -------------------------------------------------------------------------------------------

/* Every check, no writes. On EM_OK, L holds the sections (id order as in the file). */
static em_status validate(const em_session *s, const uint8_t *b, size_t size, uint64_t *n_past, int *logits,
                          snap_layout *L) {
    if (size < SNAP_HEADER || memcmp(b, SNAP_MAGIC, 8))
        return em_fail(EM_ERR_SNAPSHOT_CORRUPT,
                       "snapshot: not an edgemamba snapshot (%zu bytes, bad magic or too short)", size);
    if (em_ld64(b + H_SUM) != XXH3_64bits(b, H_SUM) && !EM_FUZZ_SKIP_SUMS)
        return em_fail(EM_ERR_SNAPSHOT_CORRUPT, "snapshot: header checksum mismatch");
    uint32_t version = em_ld32(b + H_VERSION);
    if (version != SNAP_VERSION)
        return em_fail(EM_ERR_SNAPSHOT_MISMATCH, "snapshot: format version %u, this library reads %u", version,
                       SNAP_VERSION);
    uint64_t total = em_ld64(b + H_TOTAL);
    uint32_t n_sec = em_ld32(b + H_N_SECTIONS), flags = em_ld32(b + H_FLAGS);
    if (em_ld32(b + H_HEADER_SIZE) != SNAP_HEADER || n_sec == 0 || n_sec > SNAP_MAX_SECTIONS ||
        (flags & ~SNAP_FLAG_LOGITS))
        return em_fail(EM_ERR_SNAPSHOT_CORRUPT, "snapshot: malformed header (header size %u, %u sections, flags 0x%x)",
                       em_ld32(b + H_HEADER_SIZE), n_sec, flags);
    for (uint32_t i = H_DIMS + 4 * SNAP_N_DIMS; i < H_SUM; i++)
        if (b[i]) return em_fail(EM_ERR_SNAPSHOT_CORRUPT, "snapshot: reserved header byte %u is not zero", i);
    if (total != size)
        return em_fail(EM_ERR_SNAPSHOT_CORRUPT, "snapshot: %zu bytes, the header says %llu (truncated or padded)", size,
                       (unsigned long long)total);
    if (memcmp(b + H_CONTENT_ID, s->model->blob.content_id, 16))
        return em_fail(EM_ERR_SNAPSHOT_MISMATCH, "snapshot: made with another model (blob content id differs)");
    uint32_t dims[SNAP_N_DIMS], want[SNAP_N_DIMS];
    session_dims(s, want);
    static const char *names[SNAP_N_DIMS] = { "mamba layers", "conv_dim", "d_conv", "ssm heads", "head_dim", "d_state",
                                              "vocab", "attention layers", "kv dim" };
    for (uint32_t i = 0; i < SNAP_N_DIMS; i++) {
        dims[i] = em_ld32(b + H_DIMS + 4 * i);
        if (dims[i] != want[i])
            return em_fail(EM_ERR_SNAPSHOT_MISMATCH, "snapshot: %s is %u, this session has %u", names[i], dims[i],
                           want[i]);
    }
    *n_past = em_ld64(b + H_N_PAST);
    *logits = (flags & SNAP_FLAG_LOGITS) != 0;
    if (dims[7] && *n_past > s->max_context)
        return em_fail(EM_ERR_SNAPSHOT_MISMATCH,
                       "snapshot: holds %llu positions of KV, this session planned max_context %u",
                       (unsigned long long)*n_past, s->max_context);
    if (*n_past > ((uint64_t)1 << 48)) return em_fail(EM_ERR_SNAPSHOT_CORRUPT, "snapshot: absurd position %llu",
                                                      (unsigned long long)*n_past);
    /* the table: exactly the sections this state needs, in order, in bounds, each checksummed */
    snap_layout want_L;
    plan(dims, *n_past, *logits, &want_L);
    const uint64_t table_end = SNAP_HEADER + (uint64_t)SNAP_ENTRY * n_sec;
    if (size < table_end + 8) return em_fail(EM_ERR_SNAPSHOT_CORRUPT, "snapshot: truncated section table");
    if (em_ld64(b + table_end) != XXH3_64bits(b + SNAP_HEADER, SNAP_ENTRY * n_sec) && !EM_FUZZ_SKIP_SUMS)
        return em_fail(EM_ERR_SNAPSHOT_CORRUPT, "snapshot: section table checksum mismatch");
    if (n_sec != want_L.n || total != want_L.total)
        return em_fail(EM_ERR_SNAPSHOT_CORRUPT, "snapshot: %u sections / %llu bytes, the state needs %u / %llu", n_sec,
                       (unsigned long long)total, want_L.n, (unsigned long long)want_L.total);
    for (uint32_t i = 0; i < n_sec; i++) {
        const uint8_t *e = b + SNAP_HEADER + SNAP_ENTRY * i;
        uint32_t id = em_ld32(e);
        uint64_t off = em_ld64(e + 8), sz = em_ld64(e + 16);
        if (id != want_L.id[i] || em_ld32(e + 4) || off != want_L.off[i] || sz != want_L.size[i] || off > size ||
            sz > size - off)
            return em_fail(EM_ERR_SNAPSHOT_CORRUPT,
                           "snapshot: section %u (id %u, offset %llu, %llu bytes) is not where the "
                           "format puts it",
                           i, id, (unsigned long long)off, (unsigned long long)sz);
        if (XXH3_64bits(b + off, sz) != em_ld64(e + 24) && !EM_FUZZ_SKIP_SUMS)
            return em_fail(EM_ERR_SNAPSHOT_CORRUPT, "snapshot: section %u (id %u) checksum mismatch", i, id);
    }
    const uint8_t *smp = b + want_L.off[want_L.n - 1]; /* SAMPLER is last */
    if (em_ld32(smp + 32) > EM_SAMPLER_MAX_RECENT || em_ld32(smp + 36) >= EM_SAMPLER_MAX_RECENT ||
        em_ld32(smp + 44) > 3)
        return em_fail(EM_ERR_SNAPSHOT_CORRUPT, "snapshot: sampler section out of range");
    *L = want_L;
    return EM_OK;
}

/* The sampler section back into the session (sampler_bytes' layout). */
static void restore_sampler(em_session *s, const uint8_t *p) {
    for (int k = 0; k < 4; k++) s->rng[k] = em_ld64(p + 8 * k);
    s->n_recent = em_ld32(p + 32);
    s->recent_head = em_ld32(p + 36);
    memcpy(s->utf8_pend, p + 40, 4);
    s->n_utf8_pend = (uint8_t)em_ld32(p + 44);
    for (uint32_t k = 0; k < EM_SAMPLER_MAX_RECENT && s->recent; k++) s->recent[k] = (int32_t)em_ld32(p + 48 + 4 * k);
}

/* The device half of em_session_restore (validated snapshot): states, KV rows and logits to the device, the
 * sampler as on the CPU. A failed device copy resets the session and returns the failure. */
static em_status restore_cuda(em_session *s, const uint8_t *b, uint64_t n_past, int logits, const snap_layout *L) {
    em_status st = EM_OK;
    for (uint32_t i = 0; i < L->n && st == EM_OK; i++) {
        const uint8_t *p = b + L->off[i];
        switch (L->id[i]) {
        case SNAP_CONV: st = em_cuda_session_state_put(s, EM_CUDA_PART_CONV, 0, 0, p, L->size[i]); break;
        case SNAP_SSM: st = em_cuda_session_state_put(s, EM_CUDA_PART_SSM, 0, 0, p, L->size[i]); break;
        case SNAP_KV: {
            const uint64_t used = sizeof(float) * L->dims[8] * n_past;
            for (int kv = 0; kv < 2 && st == EM_OK; kv++)
                for (uint32_t l = 0; l < L->dims[7] && st == EM_OK; l++, p += used)
                    st = em_cuda_session_state_put(s, kv ? EM_CUDA_PART_V : EM_CUDA_PART_K, l, 0, p, used);
            break;
        }
        case SNAP_LOGITS:
            memcpy(s->logits, p, L->size[i]);
            st = em_cuda_session_state_put(s, EM_CUDA_PART_LOGITS, 0, 0, p, L->size[i]);
            break;
        case SNAP_SAMPLER:
            restore_sampler(s, p);
            break;
        default: break;
        }
    }
    if (st == EM_OK) {
        s->n_past = n_past;
        s->have_logits = logits;
        st = em_cuda_session_restored(s, logits);
    }
    if (st != EM_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", em_last_error());
        em_session_reset(s);
        return em_fail(st, "em_session_restore: %s (the session was reset)", why);
    }
    em_clear_error();
    return EM_OK;
}

EM_API em_status em_session_restore(em_session *s, const void *buf, size_t size) {
    if (!s || !buf) return em_fail(EM_ERR_INVALID_ARG, "em_session_restore: session and buf must not be NULL");
    EM_TRY(check_session(s, "em_session_restore"));
    const uint8_t *b = buf;
    uint64_t n_past = 0;
    int logits = 0;
    snap_layout L;
    memset(&L, 0, sizeof L);
    EM_TRY(validate(s, b, size, &n_past, &logits, &L));
    /* nothing was written so far; from here on nothing can fail (but a device copy: see restore_cuda) */
    if (s->cuda) return restore_cuda(s, b, n_past, logits, &L);
    for (uint32_t i = 0; i < L.n; i++) {
        const uint8_t *p = b + L.off[i];
        switch (L.id[i]) {
        case SNAP_CONV: memcpy(s->conv_state, p, L.size[i]); break;
        case SNAP_SSM: memcpy(s->ssm_state, p, L.size[i]); break;
        case SNAP_KV: {
            const uint64_t row = sizeof(float) * L.dims[8], used = row * n_past, layer = row * s->max_context;
            for (int kv = 0; kv < 2; kv++)
                for (uint32_t l = 0; l < L.dims[7]; l++, p += used)
                    memcpy((uint8_t *)(kv ? s->v_cache : s->k_cache) + l * layer, p, used);
            break;
        }
        case SNAP_LOGITS: memcpy(s->logits, p, L.size[i]); break;
        case SNAP_SAMPLER:
            restore_sampler(s, p);
            break;
        default: break;
        }
    }
    s->n_past = n_past;
    s->have_logits = logits;
    em_clear_error();
    return EM_OK;
}

EM_API em_status em_session_restore_file(em_session *s, const char *path) {
    if (!s || !path) return em_fail(EM_ERR_INVALID_ARG, "em_session_restore_file: session and path must not be NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return em_fail(errno == ENOENT ? EM_ERR_NOT_FOUND : EM_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return em_fail(EM_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)sb.st_size;
    if (n < SNAP_HEADER) {
        close(fd);
        return em_fail(EM_ERR_SNAPSHOT_CORRUPT, "%s: %zu bytes is too short for a snapshot", path, n);
    }
    void *map = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return em_fail(EM_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
    em_status st = em_session_restore(s, map, n);
    munmap(map, n);
    return st;
}
