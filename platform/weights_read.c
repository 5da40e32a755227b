/*
 * weights_read.c — the reader of the UNIFIED_READ_DROP weight path (device_policy.h): a file range is read
 * into a caller-given staging buffer one chunk at a time, handed to a copy callback (cudaMemcpy to device
 * memory in the runtime, memcpy in tests/test_device_policy.c), and the file's pages behind it are dropped
 * from the page cache with posix_fadvise(DONTNEED). On a Jetson that keeps one copy of the weights in the
 * shared DRAM instead of two (device buffer + cached file), with at most one chunk of cache in flight.
 *
 * Granularity: the kernel drops only what lies wholly inside the range it is given, and the page cache holds
 * files in folios of up to PMD size (2 MiB with 4 KiB pages: 512 pages) — a folio cut by a chunk boundary
 * would be skipped by both chunks' calls and stay cached (seen on Linux 6.18: ~45 % of a range left). So the
 * drops are made in blocks of 512 pages aligned in the file, behind the read position, and the last call
 * rounds the range's end up to a block. Pages next to the range may go too: clean pages only (the blob is
 * read-only here), and a page another reader still wants only costs that reader a re-read.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "device_policy.h"
#include "util.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Drops [from, to) of fd from the page cache; records a failure in *st (the load goes on: a kept page is
 * memory, not a wrong answer). */
static void drop(int fd, uint64_t from, uint64_t to, const char *path, em_read_drop_stats *st) {
    if (to <= from) return;
    int rc = posix_fadvise(fd, (off_t)from, (off_t)(to - from), POSIX_FADV_DONTNEED);
    if (rc != 0) {
        if (!st->drop_failed) EM_LOG_W("%s: posix_fadvise(DONTNEED) failed: %s", path, strerror(rc));
        st->drop_failed = 1;
        return;
    }
    st->dropped_bytes += to - from;
}

em_status em_weights_read_drop(const char *path, uint64_t offset, uint64_t length, void *dst, void *staging,
                               size_t staging_bytes, em_copy_fn copy, void *user, em_read_drop_stats *stats) {
    em_read_drop_stats st;
    memset(&st, 0, sizeof st);
    if (stats) *stats = st;
    if (!path || !copy || !staging || staging_bytes == 0 || (length > 0 && !dst))
        return em_fail(EM_ERR_INVALID_ARG, "em_weights_read_drop: path, copy, staging (size > 0) and dst must be given");
    uint64_t end = 0;
    if (!em_add_u64(offset, length, &end) || end > (uint64_t)INT64_MAX)
        return em_fail(EM_ERR_INVALID_ARG, "em_weights_read_drop: range %llu + %llu overflows",
                       (unsigned long long)offset, (unsigned long long)length);
    const double t0 = now_s();
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return em_fail(errno == ENOENT ? EM_ERR_NOT_FOUND : EM_ERR_IO, "%s: open: %s", path, strerror(errno));
    /* Sequential: the kernel reads ahead in larger steps; the read-ahead pages are dropped as we pass them. */
    (void)posix_fadvise(fd, (off_t)offset, (off_t)length, POSIX_FADV_SEQUENTIAL);

    const long ps = sysconf(_SC_PAGESIZE);
    const uint64_t blk = 512u * (ps > 0 ? (uint64_t)ps : 4096u); /* the largest page-cache folio (PMD size) */
    em_status s = EM_OK;
    uint64_t pos = offset, dropped_to = offset - offset % blk; /* blocks below dropped_to are done */
    while (pos < end) {
        size_t want = (size_t)(end - pos < staging_bytes ? end - pos : staging_bytes), got = 0;
        while (got < want) { /* pread may return short counts (signals, large reads) */
            ssize_t n = pread(fd, (char *)staging + got, want - got, (off_t)(pos + got));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) { s = em_fail(EM_ERR_IO, "%s: read at %llu: %s", path, (unsigned long long)(pos + got), strerror(errno)); break; }
            if (n == 0) {
                s = em_fail(EM_ERR_BLOB_TRUNCATED, "%s: the file ends at %llu, inside the weight range [%llu, %llu)", path,
                            (unsigned long long)(pos + got), (unsigned long long)offset, (unsigned long long)end);
                break;
            }
            got += (size_t)n;
        }
        if (s != EM_OK) break;
        s = copy((char *)dst + (pos - offset), staging, want, user);
        if (s != EM_OK) break;
        st.chunks++;
        st.bytes += want;
        pos += want;
        /* every block that lies wholly below pos has been read: drop it */
        uint64_t to = pos - pos % blk;
        drop(fd, dropped_to, to, path, &st);
        if (to > dropped_to) dropped_to = to;
    }
    /* the range's last block, named whole (rounded up) so that a folio across the end is dropped too */
    if (s == EM_OK && pos > dropped_to) drop(fd, dropped_to, pos + (blk - pos % blk) % blk, path, &st);
    close(fd);
    st.seconds = now_s() - t0;
    if (stats) *stats = st;
    return s;
}
