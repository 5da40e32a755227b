/*
 * util.h — internal helpers shared by runtime/, tools/ and tests/: error reporting, logging, asserts,
 * overflow-checked arithmetic and bf16 conversion. Not installed.
 */
#ifndef EM_UTIL_H
#define EM_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "edgemamba.h"

#if defined(__GNUC__)
#define EM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define EM_PRINTF(a, b)
#endif

/** Records a failure for em_last_error() on this thread, logs it at DEBUG, and returns status, so that
 *  `return em_fail(EM_ERR_BLOB_BOUNDS, "tensor %s: offset %llu past the end", ...)` reads as one line. */
em_status em_fail(em_status status, const char *fmt, ...) EM_PRINTF(2, 3);
/** Clears this thread's last error (called on entry of public functions that succeed). */
void em_clear_error(void);

void em_log(em_log_level level, const char *fmt, ...) EM_PRINTF(2, 3);
#define EM_LOG_D(...) em_log(EM_LOG_DEBUG, __VA_ARGS__)
#define EM_LOG_I(...) em_log(EM_LOG_INFO, __VA_ARGS__)
#define EM_LOG_W(...) em_log(EM_LOG_WARN, __VA_ARGS__)
#define EM_LOG_E(...) em_log(EM_LOG_ERROR, __VA_ARGS__)

/* Internal contracts only (never for input validation): prints #x, function and line, then aborts. */
void em_assert_fail(const char *expr, const char *func, const char *file, int line);
#define EM_ASSERT(x) ((x) ? (void)0 : em_assert_fail(#x, __func__, __FILE__, __LINE__))

/* Fuzz builds (-DEM_FUZZING, scripts/stages/20-fuzz.sh) skip the blob and snapshot checksum comparisons so that
 * the fuzzer reaches the parsers behind them; every bounds check stays. Never set in a shipped build. */
#ifdef EM_FUZZING
#define EM_FUZZ_SKIP_SUMS 1
#else
#define EM_FUZZ_SKIP_SUMS 0
#endif

#define EM_TRY(expr) do { em_status em_try_s_ = (expr); if (em_try_s_ != EM_OK) return em_try_s_; } while (0)

/* Overflow-checked size arithmetic: return 0 on overflow, 1 on success. */
static inline int em_mul_u64(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_mul_overflow(a, b, r); }
static inline int em_add_u64(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_add_overflow(a, b, r); }

/* bf16 <-> f32: bf16 is the top half of an f32. Round to nearest even, NaN kept quiet. */
static inline float em_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16; float f; memcpy(&f, &u, 4); return f;
}
static inline uint16_t em_f32_to_bf16(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
/* IEEE half -> f32 (safetensors F16 sources). */
float em_f16_to_f32(uint16_t h);

/* Little-endian loads/stores from byte buffers (untrusted input is decoded, never cast). */
static inline uint16_t em_ld16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t em_ld32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t em_ld64(const uint8_t *p) { return (uint64_t)em_ld32(p) | ((uint64_t)em_ld32(p + 4) << 32); }
static inline void em_st16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void em_st32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static inline void em_st64(uint8_t *p, uint64_t v) { em_st32(p, (uint32_t)v); em_st32(p + 4, (uint32_t)(v >> 32)); }

/** Host memory available to this process (MemAvailable, or the cgroup limit if lower), in bytes. */
size_t em_host_mem_available(void);

#endif /* EM_UTIL_H */
