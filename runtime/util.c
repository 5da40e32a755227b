/*
 * util.c — status names, per-thread error messages, the log sink, version, and small host helpers.
 */
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

/* ---- version -------------------------------------------------------------------------------------- */
#define EM_STR2(x) #x
#define EM_STR(x) EM_STR2(x)
EM_API const char *em_version(void) { return EM_STR(EM_VERSION_MAJOR) "." EM_STR(EM_VERSION_MINOR) "." EM_STR(EM_VERSION_PATCH); }
EM_API int em_version_number(void) { return EM_VERSION_NUMBER; }

/* ---- status ----------------------------------------------------------------------------------------- */
EM_API const char *em_status_str(em_status s) {
    switch (s) {
    case EM_OK: return "EM_OK: success";
    case EM_ERR_INVALID_ARG: return "EM_ERR_INVALID_ARG: invalid argument";
    case EM_ERR_UNSUPPORTED: return "EM_ERR_UNSUPPORTED: not supported by this build or model";
    case EM_ERR_BAD_STATE: return "EM_ERR_BAD_STATE: call out of order";
    case EM_ERR_TOKEN_RANGE: return "EM_ERR_TOKEN_RANGE: token id out of range";
    case EM_ERR_ABORTED: return "EM_ERR_ABORTED: stopped by a callback";
    case EM_ERR_BUFFER_TOO_SMALL: return "EM_ERR_BUFFER_TOO_SMALL: buffer too small";
    case EM_ERR_INTERNAL: return "EM_ERR_INTERNAL: internal error";
    case EM_ERR_IO: return "EM_ERR_IO: input/output error";
    case EM_ERR_NOT_FOUND: return "EM_ERR_NOT_FOUND: not found";
    case EM_ERR_FORMAT: return "EM_ERR_FORMAT: malformed input file";
    case EM_ERR_BLOB_MAGIC: return "EM_ERR_BLOB_MAGIC: not an edgemamba blob";
    case EM_ERR_BLOB_VERSION: return "EM_ERR_BLOB_VERSION: unsupported blob version";
    case EM_ERR_BLOB_TRUNCATED: return "EM_ERR_BLOB_TRUNCATED: blob is truncated";
    case EM_ERR_BLOB_CHECKSUM: return "EM_ERR_BLOB_CHECKSUM: checksum mismatch";
    case EM_ERR_BLOB_BOUNDS: return "EM_ERR_BLOB_BOUNDS: offset or size out of bounds";
    case EM_ERR_BLOB_OVERLAP: return "EM_ERR_BLOB_OVERLAP: overlapping regions";
    case EM_ERR_BLOB_CORRUPT: return "EM_ERR_BLOB_CORRUPT: malformed field";
    case EM_ERR_BLOB_CONFIG: return "EM_ERR_BLOB_CONFIG: inconsistent model config";
    case EM_ERR_BLOB_TENSOR: return "EM_ERR_BLOB_TENSOR: missing or mis-shaped tensor";
    case EM_ERR_OUT_OF_MEMORY: return "EM_ERR_OUT_OF_MEMORY: allocation failed";
    case EM_ERR_PLAN_TOO_LARGE: return "EM_ERR_PLAN_TOO_LARGE: plan exceeds available memory";
    case EM_ERR_CONTEXT_FULL: return "EM_ERR_CONTEXT_FULL: planned context is full";
    case EM_ERR_DEVICE: return "EM_ERR_DEVICE: device error";
    case EM_ERR_NO_DEVICE: return "EM_ERR_NO_DEVICE: no CUDA device";
    case EM_ERR_TOKENIZER: return "EM_ERR_TOKENIZER: tokenizer error";
    case EM_ERR_SNAPSHOT_MISMATCH: return "EM_ERR_SNAPSHOT_MISMATCH: snapshot does not match this model";
    case EM_ERR_SNAPSHOT_CORRUPT: return "EM_ERR_SNAPSHOT_CORRUPT: snapshot is damaged";
    }
    return "EM_ERR_?: unknown status";
}

/* ---- per-thread last error ------------------------------------------------------------------------ */
static _Thread_local char em_errbuf[1024];

EM_API const char *em_last_error(void) { return em_errbuf; }
void em_clear_error(void) { em_errbuf[0] = 0; }

em_status em_fail(em_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(em_errbuf, sizeof em_errbuf, fmt, ap);
    va_end(ap);
    em_log(EM_LOG_DEBUG, "%s (%s)", em_errbuf, em_status_str(status));
    return status;
}

/* ---- logging ---------------------------------------------------------------------------------------- */
static em_log_fn em_log_sink = NULL;
static void *em_log_user = NULL;
static int em_log_min = -1; /* -1: not yet read from $EM_LOG_LEVEL */

static int em_log_level_from_env(void) {
    const char *e = getenv("EM_LOG_LEVEL");
    if (!e) return EM_LOG_WARN;
    if (!strcasecmp(e, "debug")) return EM_LOG_DEBUG;
    if (!strcasecmp(e, "info")) return EM_LOG_INFO;
    if (!strcasecmp(e, "warn")) return EM_LOG_WARN;
    if (!strcasecmp(e, "error")) return EM_LOG_ERROR;
    if (!strcasecmp(e, "none")) return EM_LOG_NONE;
    return EM_LOG_WARN;
}

EM_API void em_log_set(em_log_fn fn, void *user, em_log_level min_level) {
    em_log_sink = fn;
    em_log_user = user;
    em_log_min = (int)min_level;
}

void em_log(em_log_level level, const char *fmt, ...) {
    if (em_log_min < 0) em_log_min = em_log_level_from_env();
    if ((int)level < em_log_min || level >= EM_LOG_NONE) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (em_log_sink) {
        em_log_sink(level, msg, em_log_user);
        return;
    }
    static const char *names[] = {"debug", "info", "warn", "error"};
    fprintf(stderr, "edgemamba: %s: %s\n", names[level], msg);
}

void em_assert_fail(const char *expr, const char *func, const char *file, int line) {
    fprintf(stderr, "edgemamba: internal assertion failed: %s in %s (%s:%d)\n", expr, func, file, line);
    abort();
}

/* ---- numbers ------------------------------------------------------------------------------------------- */
float em_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400u)) { man <<= 1; exp--; }
            man &= 0x3ffu;
            u = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) u = sign | 0x7f800000u | (man << 13);
    else u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f; memcpy(&f, &u, 4); return f;
}

/* ---- host memory -------------------------------------------------------------------------------------- */
size_t em_host_mem_available(void) {
    size_t avail = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f)) {
            unsigned long long kb;
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) { avail = (size_t)kb * 1024u; break; }
        }
        fclose(f);
    }
    if (!avail) { /* no /proc: fall back to sysconf */
        long pages = sysconf(_SC_AVPHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        if (pages > 0 && psz > 0) avail = (size_t)pages * (size_t)psz;
    }
    /* cgroup v2 limit, when tighter */
    f = fopen("/sys/fs/cgroup/memory.max", "r");
    if (f) {
        unsigned long long lim;
        if (fscanf(f, "%llu", &lim) == 1 && lim < avail) avail = (size_t)lim;
        fclose(f);
    }
    return avail;
}
