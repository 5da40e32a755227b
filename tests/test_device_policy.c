/*
 * test_device_policy.c — proves the weight-path decision (platform/device_policy.c) and the chunked
 * read-and-drop reader (platform/weights_read.c):
 *   - the decision table, one row per device with the attributes that device reports (fake sets: Orin Nano
 *     8GB, Orin NX 16GB, AGX Orin 64GB, Thor, H100 with and without HMM, an old pre-7.2 Tegra): AUTO picks
 *     unified-read-drop on every integrated GPU and device-copy on discrete ones; copy / read-drop are obeyed
 *     anywhere; zero-copy is refused on discrete GPUs and on a Tegra that can neither read pageable memory nor
 *     register host memory, and says which mechanism otherwise (raw pointer on Thor, host-register on Orin);
 *   - the peak DRAM of the weights while loading, against sums written out by hand (8B INT8 on an Orin NX
 *     16GB: device-copy needs 2 x 8 GB, more than the board has; read-drop 8 GB + one chunk);
 *   - $EM_WEIGHT_PATH and the request parser (good and bad names), chunk limits;
 *   - the reader delivers exactly the bytes of an odd, unaligned file range through a memcpy callback, in
 *     ceil(len / staging) chunks never larger than the staging buffer, and the file's pages inside the range
 *     are out of the page cache afterwards (large folios across chunk boundaries included: the file is cached
 *     by small reads, as a previous load leaves it) while the 2 MiB block before the range's block stays (>= 90 %:
 *     reclaim may take a few pages on a busy machine) (mincore; where this filesystem cannot drop pages at all — checked first on a control pass — that part
 *     is reported and skipped);
 *   - the reader's failures: a copy error stops it and is returned, a range past the end of the file is
 *     EM_ERR_BLOB_TRUNCATED, a missing file EM_ERR_NOT_FOUND, no staging EM_ERR_INVALID_ARG.
 * `test_device_policy --live` (label gpu): reads the real device's attributes, prints them and the decision,
 * checks AUTO against cudaDevAttrIntegrated, and runs the reader into device memory (cudaMemcpy callback),
 * reading the bytes back. SKIP (77) without a device.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cuda_rt.h"
#include "device_policy.h"
#include "testutil.h"

#define GB 1000000000ull
#define GIB (1ull << 30)
#define MIB (1ull << 20)

// ---- the decision table ---------------------------------------------------------------------------------

/* integrated, canMapHost, pageable, concurrentManaged, hostRegister, cc, total, MemAvailable.
 * Orin: I/O-coherent Tegra (CC 8.7): host registration yes, pageable access no (CUDA for Tegra appnote;
 * genie-ai-runtime registers its mmap). Thor (CUDA 13): full coherence, pageable access yes; registration
 * reported unsupported (ds4 #716 log). Totals: what totalGlobalMem shows for the shared DRAM (a little below
 * the module's size); MemAvailable after the OS (Nano: ~5.2 GB usable, edge.md). */
static const em_device_attrs ORIN_NANO_8 = { 1, 1, 0, 0, 1, 8, 7, 7990000000ull, 5200000000ull };
static const em_device_attrs ORIN_NX_16 = { 1, 1, 0, 0, 1, 8, 7, 15660000000ull, 13000000000ull };
static const em_device_attrs AGX_ORIN_64 = { 1, 1, 0, 0, 1, 8, 7, 64300000000ull, 60000000000ull };
static const em_device_attrs THOR = { 1, 1, 1, 1, 0, 11, 0, 131000000000ull, 122000000000ull };
static const em_device_attrs H100 = { 0, 1, 0, 1, 1, 9, 0, 85000000000ull, 0 };
static const em_device_attrs H100_HMM = { 0, 1, 1, 1, 1, 9, 0, 85000000000ull, 0 }; /* HMM kernel: pageable 1 */
static const em_device_attrs OLD_TEGRA = { 1, 1, 0, 0, 0, 5, 3, 3900000000ull, 2500000000ull }; /* Nano (2019) */

typedef struct policy_case {
    const char *what;
    const em_device_attrs *a;
    em_weight_request req;
    em_status want_status;
    em_weight_path want_path;
    em_zero_copy_kind want_zc;
} policy_case;

static const policy_case CASES[] = {
    { "Orin Nano 8GB, auto", &ORIN_NANO_8, EM_WEIGHTS_AUTO, EM_OK, EM_WEIGHTS_UNIFIED_READ_DROP, EM_ZERO_COPY_NONE },
    { "Orin NX 16GB, auto", &ORIN_NX_16, EM_WEIGHTS_AUTO, EM_OK, EM_WEIGHTS_UNIFIED_READ_DROP, EM_ZERO_COPY_NONE },
    { "AGX Orin 64GB, auto", &AGX_ORIN_64, EM_WEIGHTS_AUTO, EM_OK, EM_WEIGHTS_UNIFIED_READ_DROP, EM_ZERO_COPY_NONE },
    { "Thor, auto", &THOR, EM_WEIGHTS_AUTO, EM_OK, EM_WEIGHTS_UNIFIED_READ_DROP, EM_ZERO_COPY_NONE },
    { "H100, auto", &H100, EM_WEIGHTS_AUTO, EM_OK, EM_WEIGHTS_DEVICE_COPY, EM_ZERO_COPY_NONE },
    { "H100 with HMM, auto", &H100_HMM, EM_WEIGHTS_AUTO, EM_OK, EM_WEIGHTS_DEVICE_COPY, EM_ZERO_COPY_NONE },
    { "old Tegra, auto", &OLD_TEGRA, EM_WEIGHTS_AUTO, EM_OK, EM_WEIGHTS_UNIFIED_READ_DROP, EM_ZERO_COPY_NONE },
    /* explicit requests */
    { "Orin NX, copy", &ORIN_NX_16, EM_WEIGHTS_WANT_COPY, EM_OK, EM_WEIGHTS_DEVICE_COPY, EM_ZERO_COPY_NONE },
    { "H100, read-drop", &H100, EM_WEIGHTS_WANT_READ_DROP, EM_OK, EM_WEIGHTS_UNIFIED_READ_DROP, EM_ZERO_COPY_NONE },
    { "Orin Nano, zero-copy", &ORIN_NANO_8, EM_WEIGHTS_WANT_ZERO_COPY, EM_OK, EM_WEIGHTS_ZERO_COPY,
      EM_ZERO_COPY_HOST_REGISTER },
    { "AGX Orin, zero-copy", &AGX_ORIN_64, EM_WEIGHTS_WANT_ZERO_COPY, EM_OK, EM_WEIGHTS_ZERO_COPY,
      EM_ZERO_COPY_HOST_REGISTER },
    { "Thor, zero-copy", &THOR, EM_WEIGHTS_WANT_ZERO_COPY, EM_OK, EM_WEIGHTS_ZERO_COPY, EM_ZERO_COPY_PAGEABLE },
    { "H100, zero-copy", &H100, EM_WEIGHTS_WANT_ZERO_COPY, EM_ERR_UNSUPPORTED, 0, 0 },
    { "H100 with HMM, zero-copy", &H100_HMM, EM_WEIGHTS_WANT_ZERO_COPY, EM_ERR_UNSUPPORTED, 0, 0 },
    { "old Tegra, zero-copy", &OLD_TEGRA, EM_WEIGHTS_WANT_ZERO_COPY, EM_ERR_UNSUPPORTED, 0, 0 },
};

static void test_table(void) {
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const policy_case *c = &CASES[i];
        em_weight_policy_options o = { c->req, EM_WEIGHT_CHUNK_DEFAULT };
        em_weight_decision d;
        em_status s = em_weight_path_choose(c->a, 4 * GB, &o, &d);
        CHECK_MSG(s == c->want_status, "%s: status %s, want %s (%s)", c->what, em_status_str(s),
                  em_status_str(c->want_status), em_last_error());
        if (s != EM_OK || c->want_status != EM_OK) continue;
        CHECK_MSG(d.path == c->want_path, "%s: path %s, want %s", c->what, em_weight_path_name(d.path),
                  em_weight_path_name(c->want_path));
        CHECK_MSG(d.zero_copy == c->want_zc, "%s: zero-copy kind %d, want %d", c->what, (int)d.zero_copy, (int)c->want_zc);
        CHECK_MSG(d.reason && *d.reason, "%s: no reason", c->what);
        CHECK_MSG(d.chunk_bytes == (d.path == EM_WEIGHTS_UNIFIED_READ_DROP ? EM_WEIGHT_CHUNK_DEFAULT : 0),
                  "%s: chunk %llu", c->what, (unsigned long long)d.chunk_bytes);
        printf("  %-26s -> %-18s %s\n", c->what, em_weight_path_name(d.path), d.reason);
    }
}

/* The example: an 8B INT8 model (~8 GB of weights) on an Orin NX 16GB with 13 GB available. */
static void test_peak_dram(void) {
    const uint64_t blob = 8 * GB, chunk = 16 * MIB;
    em_weight_decision d;
    em_weight_policy_options o = { EM_WEIGHTS_AUTO, chunk };
    CHECK_STATUS(em_weight_path_choose(&ORIN_NX_16, blob, &o, &d), EM_OK);
    CHECK(d.peak_dram_bytes == 8000000000ull + 16777216ull);
    CHECK(d.peak_dram_bytes <= ORIN_NX_16.host_mem_available);
    o.request = EM_WEIGHTS_WANT_COPY;
    CHECK_STATUS(em_weight_path_choose(&ORIN_NX_16, blob, &o, &d), EM_OK);
    CHECK(d.peak_dram_bytes == 16000000000ull);
    CHECK(d.peak_dram_bytes > ORIN_NX_16.host_mem_available); /* why read-drop is the default */
    o.request = EM_WEIGHTS_WANT_ZERO_COPY;
    CHECK_STATUS(em_weight_path_choose(&ORIN_NX_16, blob, &o, &d), EM_OK);
    CHECK(d.peak_dram_bytes == 8000000000ull);
    /* a blob smaller than the chunk holds at most itself twice */
    o.request = EM_WEIGHTS_AUTO;
    CHECK_STATUS(em_weight_path_choose(&ORIN_NANO_8, 1 * MIB, &o, &d), EM_OK);
    CHECK(d.peak_dram_bytes == 2 * MIB);
    /* discrete: the copy lives in HBM, nothing is counted against host DRAM */
    CHECK_STATUS(em_weight_path_choose(&H100, blob, &o, &d), EM_OK);
    CHECK(d.peak_dram_bytes == 0);
}

static void test_options(void) {
    em_weight_request r = EM_WEIGHTS_AUTO;
    CHECK_STATUS(em_weight_request_parse("zero-copy", &r), EM_OK);
    CHECK(r == EM_WEIGHTS_WANT_ZERO_COPY);
    CHECK_STATUS(em_weight_request_parse("read-drop", &r), EM_OK);
    CHECK(r == EM_WEIGHTS_WANT_READ_DROP);
    CHECK_STATUS(em_weight_request_parse("copy", &r), EM_OK);
    CHECK(r == EM_WEIGHTS_WANT_COPY);
    CHECK_STATUS(em_weight_request_parse("zerocopy", &r), EM_ERR_INVALID_ARG);
    CHECK(strstr(em_last_error(), "zerocopy") != NULL);
    setenv("EM_WEIGHT_PATH", "read-drop", 1);
    CHECK(em_weight_policy_default_options().request == EM_WEIGHTS_WANT_READ_DROP);
    setenv("EM_WEIGHT_PATH", "bogus", 1); /* logged and ignored */
    CHECK(em_weight_policy_default_options().request == EM_WEIGHTS_AUTO);
    unsetenv("EM_WEIGHT_PATH");
    em_weight_policy_options o = em_weight_policy_default_options();
    CHECK(o.request == EM_WEIGHTS_AUTO && o.chunk_bytes == 16 * MIB);
    em_weight_decision d;
    o.chunk_bytes = 1000; /* below 64 KiB */
    CHECK_STATUS(em_weight_path_choose(&THOR, GB, &o, &d), EM_ERR_INVALID_ARG);
    o.chunk_bytes = 2 * GIB;
    CHECK_STATUS(em_weight_path_choose(&THOR, GB, &o, &d), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_weight_path_choose(&THOR, 0, NULL, &d), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_weight_path_choose(NULL, GB, NULL, &d), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_weight_path_choose(&THOR, GB, NULL, &d), EM_OK); /* NULL options = defaults */
    CHECK(d.path == EM_WEIGHTS_UNIFIED_READ_DROP);
}

// ---- the reader -----------------------------------------------------------------------------------------

static uint8_t byte_at(uint64_t i) { /* the file's content: a hash of the offset, no period to hide a shift */
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull;
    x ^= x >> 31; x *= 0xBF58476D1CE4E5B9ull; x ^= x >> 27;
    return (uint8_t)x;
}

typedef struct copy_log {
    const void *staging;
    size_t staging_bytes;
    uint64_t calls, fail_at; /* fail_at: 1-based call that returns EM_ERR_DEVICE (0: never) */
    int bad_src, too_big;
} copy_log;

static em_status memcpy_cb(void *dst, const void *src, size_t bytes, void *user) {
    copy_log *l = user;
    l->calls++;
    if (src != l->staging) l->bad_src = 1;
    if (bytes > l->staging_bytes || bytes == 0) l->too_big = 1;
    if (l->fail_at && l->calls == l->fail_at) return EM_ERR_DEVICE;
    memcpy(dst, src, bytes);
    return EM_OK;
}

/* Pages of [from, to) resident in the page cache, counted through an untouched shared mapping. -1: unknown. */
static long resident(int fd, uint64_t size, uint64_t from, uint64_t to) {
    long ps = sysconf(_SC_PAGESIZE);
    void *map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) return -1;
    size_t np = (size + (size_t)ps - 1) / (size_t)ps;
    unsigned char *vec = malloc(np);
    long n = -1;
    if (vec && mincore(map, size, vec) == 0) {
        n = 0;
        for (uint64_t p = from / (uint64_t)ps; p < (to + (uint64_t)ps - 1) / (uint64_t)ps; p++) n += vec[p] & 1;
    }
    free(vec);
    munmap(map, size);
    return n;
}

static void read_all(int fd, uint64_t size) {
    char buf[65536];
    for (uint64_t off = 0; off < size;) {
        ssize_t n = pread(fd, buf, sizeof buf, (off_t)off);
        if (n <= 0) break;
        off += (uint64_t)n;
    }
}

static void test_reader(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/test_device_policy.%d.bin", dir, (int)getpid());
    const long ps = sysconf(_SC_PAGESIZE);
    const uint64_t size = 7 * MIB + 1234;
    uint8_t *want = malloc(size);
    for (uint64_t i = 0; i < size; i++) want[i] = byte_at(i);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { CHECK_MSG(0, "cannot create %s", path); free(want); return; }
    CHECK(write(fd, want, size) == (ssize_t)size);
    CHECK(fsync(fd) == 0); /* dirty pages cannot be dropped: write them back first */

    /* control: can this filesystem drop pages at all, and can mincore see it? */
    read_all(fd, size);
    long before = resident(fd, size, 0, size), npages = (long)((size + (uint64_t)ps - 1) / (uint64_t)ps);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    long after = resident(fd, size, 0, size);
    int can_tell = before >= npages * 9 / 10 && after == 0;
    printf("  control: %ld of %ld pages cached after a read, %ld after fadvise(DONTNEED)%s\n", before, npages, after,
           can_tell ? "" : " -> page-cache checks SKIPPED on this filesystem");
    read_all(fd, size); /* cached again, as after a previous load */

    const uint64_t blk = 512 * (uint64_t)ps;                               /* the reader's drop block */
    const uint64_t off = blk + 3 * (uint64_t)ps + 123, len = size - off - 5000; /* unaligned at both ends */
    const size_t staging_bytes = 256 * 1024 + 17;                          /* not a page multiple */
    uint8_t *staging = malloc(staging_bytes), *dst = malloc(len);
    memset(dst, 0xA5, len);
    copy_log log = { staging, staging_bytes, 0, 0, 0, 0 };
    em_read_drop_stats st;
    CHECK_STATUS(em_weights_read_drop(path, off, len, dst, staging, staging_bytes, memcpy_cb, &log, &st), EM_OK);
    CHECK(memcmp(dst, want + off, len) == 0);
    CHECK(st.bytes == len);
    CHECK(st.chunks == (len + staging_bytes - 1) / staging_bytes && log.calls == st.chunks);
    CHECK(!log.bad_src && !log.too_big);
    CHECK(!st.drop_failed);
    CHECK(st.dropped_bytes >= len); /* the whole range, rounded out to pages */
    printf("  reader: %llu bytes in %llu chunks of <= %zu, %llu bytes dropped, %.1f ms\n", (unsigned long long)st.bytes,
           (unsigned long long)st.chunks, staging_bytes, (unsigned long long)st.dropped_bytes, 1e3 * st.seconds);
    if (can_tell) {
        long in_range = resident(fd, size, off, off + len);
        long head = resident(fd, size, 0, off - off % blk); /* the block before the range's first block */
        printf("  page cache after the reader: %ld pages of the range, %ld of the %ld pages of the block before it\n",
               in_range, head, (long)(blk / (uint64_t)ps));
        CHECK_MSG(in_range == 0, "%ld pages of the range are still cached", in_range);
        /* the reader never names that block; a few of its pages may still go to reclaim on a busy machine */
        CHECK_MSG(head >= (long)(blk / (uint64_t)ps) * 9 / 10, "the reader dropped pages far outside its range (%ld left)",
                  head);
    }

    /* failures */
    log = (copy_log){ staging, staging_bytes, 0, 2, 0, 0 };
    CHECK_STATUS(em_weights_read_drop(path, off, len, dst, staging, staging_bytes, memcpy_cb, &log, &st), EM_ERR_DEVICE);
    CHECK(st.chunks == 1 && log.calls == 2);
    log = (copy_log){ staging, staging_bytes, 0, 0, 0, 0 };
    CHECK_STATUS(em_weights_read_drop(path, size - 100, 200, dst, staging, staging_bytes, memcpy_cb, &log, &st),
                 EM_ERR_BLOB_TRUNCATED);
    CHECK(strstr(em_last_error(), "ends at") != NULL);
    CHECK_STATUS(em_weights_read_drop("/nonexistent/x.emb", 0, 10, dst, staging, staging_bytes, memcpy_cb, &log, &st),
                 EM_ERR_NOT_FOUND);
    CHECK_STATUS(em_weights_read_drop(path, 0, 10, dst, staging, 0, memcpy_cb, &log, &st), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_weights_read_drop(path, 0, 10, NULL, staging, staging_bytes, memcpy_cb, &log, &st), EM_ERR_INVALID_ARG);
    CHECK_STATUS(em_weights_read_drop(path, UINT64_MAX, 10, dst, staging, staging_bytes, memcpy_cb, &log, &st),
                 EM_ERR_INVALID_ARG);
    log.calls = 0;
    CHECK_STATUS(em_weights_read_drop(path, 7, 0, dst, staging, staging_bytes, memcpy_cb, &log, &st), EM_OK);
    CHECK(log.calls == 0 && st.bytes == 0);

    close(fd);
    unlink(path);
    free(want);
    free(staging);
    free(dst);
}

// ---- the real device (--live, label gpu) --------------------------------------------------------------------

static em_status cuda_copy_cb(void *dst, const void *src, size_t bytes, void *user) {
    (void)user;
    return em_cuda_memcpy(dst, src, bytes);
}

static int live(const char *dir) {
    int n = 0;
    if (em_cuda_available(&n) != EM_OK || n == 0) em_test_skip("test_device_policy --live", "no CUDA device");
    em_device_attrs a;
    CHECK_STATUS(em_device_attrs_query(0, &a), EM_OK);
    printf("device 0: cc %d.%d integrated %d canMapHostMemory %d pageableMemoryAccess %d concurrentManagedAccess %d "
           "hostRegisterSupported %d total %.2f GB MemAvailable %.2f GB\n", a.cc_major, a.cc_minor, a.integrated,
           a.can_map_host_memory, a.pageable_memory_access, a.concurrent_managed_access, a.host_register_supported,
           a.total_mem / 1e9, a.host_mem_available / 1e9);
    em_weight_policy_options o = { EM_WEIGHTS_AUTO, EM_WEIGHT_CHUNK_DEFAULT };
    em_weight_decision d;
    CHECK_STATUS(em_weight_path_choose(&a, 8 * GB, &o, &d), EM_OK);
    printf("AUTO for an 8 GB blob: %s (%s)\n", em_weight_path_name(d.path), d.reason);
    CHECK(d.path == (a.integrated ? EM_WEIGHTS_UNIFIED_READ_DROP : EM_WEIGHTS_DEVICE_COPY));
    o.request = EM_WEIGHTS_WANT_ZERO_COPY;
    em_status zs = em_weight_path_choose(&a, 8 * GB, &o, &d);
    printf("zero-copy: %s%s%s\n", em_status_str(zs), zs == EM_OK ? " " : ": ",
           zs == EM_OK ? em_weight_path_name(d.path) : em_last_error());
    if (!a.integrated) CHECK(zs == EM_ERR_UNSUPPORTED);

    /* the reader into device memory: 64 MiB + 3 bytes through a 16 MiB staging buffer, read back */
    char path[4096];
    snprintf(path, sizeof path, "%s/test_device_policy_live.%d.bin", dir, (int)getpid());
    const uint64_t size = 64 * MIB + 3;
    uint8_t *host = malloc(size), *back = malloc(size), *staging = malloc(16 * MIB);
    for (uint64_t i = 0; i < size; i++) host[i] = byte_at(i);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(host, 1, size, f) == size);
    if (f) fclose(f);
    void *dev = NULL;
    CHECK_STATUS(em_cuda_malloc(&dev, size), EM_OK);
    em_read_drop_stats st;
    CHECK_STATUS(em_weights_read_drop(path, 0, size, dev, staging, 16 * MIB, cuda_copy_cb, NULL, &st), EM_OK);
    CHECK_STATUS(em_cuda_memcpy(back, dev, size), EM_OK);
    CHECK(memcmp(back, host, size) == 0);
    printf("reader into device memory: %llu bytes, %llu chunks, %.1f ms (%.2f GB/s, file cached or not)\n",
           (unsigned long long)st.bytes, (unsigned long long)st.chunks, 1e3 * st.seconds, size / st.seconds / 1e9);
    em_cuda_free(dev);
    unlink(path);
    free(host);
    free(back);
    free(staging);
    return em_test_finish("test_device_policy --live");
}

int main(int argc, char **argv) {
    const char *dir = getenv("EM_BUILD_DIR"); /* a real disk, not /tmp (which may be tmpfs: nothing to drop) */
    if (!dir || !*dir) dir = ".";
    if (argc > 1 && strcmp(argv[1], "--live") == 0) return live(dir);
    test_table();
    test_peak_dram();
    test_options();
    test_reader(dir);
    return em_test_finish("test_device_policy");
}
