/*
 * edgemamba.h — the public C API of edgemamba, an inference runtime for Mamba-2, Mamba-2-Hybrid,
 * Mamba-1 and Transformer language models, built for fixed memory on edge GPUs (Jetson) and servers.
 *
 * Usage:
 *
 *   em_model *model = NULL;
 *   em_model_options mo = em_model_default_options();      // backend AUTO: CUDA if present, else CPU
 *   if (em_model_open("model.emb", &mo, &model) != EM_OK)   // maps + validates the blob, places weights once
 *       fprintf(stderr, "%s\n", em_last_error());
 *
 *   em_session_options so = em_session_default_options();
 *   em_plan_report plan;
 *   em_plan(model, &so, &plan);                             // every byte of a session, before allocating
 *   em_session *s = NULL;
 *   em_session_create(model, &so, &s);                      // allocates once; never again after this
 *
 *   int32_t prompt[] = {1, 2, 3}, tok;
 *   em_session_prefill(s, prompt, 3, EM_LOGITS_LAST, NULL); // logits stay inside the session
 *   for (int i = 0; i < 16; i++) {
 *       em_session_argmax(s, &tok);                         // greedy pick from the last logits
 *       em_session_decode(s, tok, NULL);                    // one token in, fixed memory
 *   }
 *   em_session_free(s);
 *   em_model_close(model);
 *
 * Thread safety: an em_model may be shared by any number of threads and sessions; one em_session must
 * be used by one thread at a time. em_last_error() is per thread.
 *
 * Conventions: shapes are written slowest-first ([n_tokens, vocab]); strides count elements, never bytes;
 * token ids are int32; logits are float32. Every function that can fail returns em_status: EM_OK (0) on
 * success, a negative value otherwise, with a message for this thread in em_last_error(). Functions that
 * are declared but not available in this build return EM_ERR_UNSUPPORTED; none is a silent stub.
 */
#ifndef EDGEMAMBA_H
#define EDGEMAMBA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- export ------------------------------------------------------------------------------------ */
#if defined(EM_STATIC_DEFINE)
#  define EM_API
#elif defined(_WIN32)
#  ifdef EM_BUILDING_LIBRARY
#    define EM_API __declspec(dllexport)
#  else
#    define EM_API __declspec(dllimport)
#  endif
#else
#  define EM_API __attribute__((visibility("default")))
#endif

/* ---- version ----------------------------------------------------------------------------------- */
#define EM_VERSION_MAJOR 0
#define EM_VERSION_MINOR 1
#define EM_VERSION_PATCH 0
#define EM_VERSION_NUMBER (EM_VERSION_MAJOR * 10000 + EM_VERSION_MINOR * 100 + EM_VERSION_PATCH)

/** @return the library's version as "MAJOR.MINOR.PATCH" (static string; compare with EM_VERSION_* to
 *  catch a header/library mismatch). */
EM_API const char *em_version(void);
/** @return EM_VERSION_NUMBER of the library that is linked. */
EM_API int em_version_number(void);

/* ---- status ------------------------------------------------------------------------------------ */
/* Stable numbers, grouped by tens, with gaps: a value is never renumbered or reused. */
typedef enum em_status {
    EM_OK = 0,
    /* caller errors */
    EM_ERR_INVALID_ARG = -1,      /* NULL or out-of-range argument, or an options field out of range */
    EM_ERR_UNSUPPORTED = -2,      /* declared, but not available in this build or for this model */
    EM_ERR_BAD_STATE = -3,        /* wrong call order, e.g. decode before prefill */
    EM_ERR_TOKEN_RANGE = -4,      /* a token id outside [0, vocab) */
    EM_ERR_ABORTED = -5,          /* a callback asked to stop */
    EM_ERR_BUFFER_TOO_SMALL = -6, /* a caller buffer is smaller than needed (the size needed is reported) */
    EM_ERR_INTERNAL = -9,         /* a broken internal contract: a bug, please report */
    /* files */
    EM_ERR_IO = -10,              /* open/read/map/write failed (errno text in the message) */
    EM_ERR_NOT_FOUND = -11,       /* a file or a tensor that must exist does not */
    EM_ERR_FORMAT = -12,          /* an input file (safetensors, config.json, ...) is malformed */
    /* blob (.emb) */
    EM_ERR_BLOB_MAGIC = -20,      /* not an edgemamba blob */
    EM_ERR_BLOB_VERSION = -21,    /* a blob version this library does not read */
    EM_ERR_BLOB_TRUNCATED = -22,  /* the file is shorter than its header says */
    EM_ERR_BLOB_CHECKSUM = -23,   /* a header, config, tokenizer, table or tensor checksum mismatch */
    EM_ERR_BLOB_BOUNDS = -24,     /* an offset or size points outside the file or its section */
    EM_ERR_BLOB_OVERLAP = -25,    /* two tensors (or a tensor and a section) share bytes */
    EM_ERR_BLOB_CORRUPT = -26,    /* a malformed field: bad count, dtype, dims, unterminated name, ... */
    EM_ERR_BLOB_CONFIG = -27,     /* the model config is inconsistent or names an unknown architecture */
    EM_ERR_BLOB_TENSOR = -28,     /* a tensor the config needs is missing or has the wrong shape/dtype */
    /* memory */
    EM_ERR_OUT_OF_MEMORY = -30,   /* an allocation failed (only at open or create) */
    EM_ERR_PLAN_TOO_LARGE = -31,  /* the plan needs more memory than is available (both are named) */
    EM_ERR_CONTEXT_FULL = -32,    /* the planned KV cache is full (hybrid models); the session stays usable */
    /* devices */
    EM_ERR_DEVICE = -40,          /* a CUDA/driver call failed (its name and error string in the message) */
    EM_ERR_NO_DEVICE = -41,       /* CUDA asked for, but no device is present or the build has no CUDA */
    /* tokenizer */
    EM_ERR_TOKENIZER = -50,       /* the model has no tokenizer, or the tokenizer failed */
    /* snapshots */
    EM_ERR_SNAPSHOT_MISMATCH = -60, /* a snapshot from another blob or another session shape */
    EM_ERR_SNAPSHOT_CORRUPT = -61   /* a truncated or damaged snapshot */
} em_status;

/** @return a static, human-readable name for a status ("EM_ERR_BLOB_CHECKSUM: checksum mismatch");
 *  never NULL, also for values not in the enum. */
EM_API const char *em_status_str(em_status status);

/** @return the message of the last failure on this thread ("" if none). It names what was wrong
 *  (file, tensor, field, the value found and the value expected). Valid until this thread's next call. */
EM_API const char *em_last_error(void);

/* ---- logging ----------------------------------------------------------------------------------- */
typedef enum em_log_level { EM_LOG_DEBUG = 0, EM_LOG_INFO = 1, EM_LOG_WARN = 2, EM_LOG_ERROR = 3, EM_LOG_NONE = 4 } em_log_level;
typedef void (*em_log_fn)(em_log_level level, const char *message, void *user);

/** Sets the process-wide log sink and the lowest level passed to it. fn NULL restores the default
 *  (stderr, "edgemamba: warn: ..."). Default level: EM_LOG_WARN, or $EM_LOG_LEVEL (debug|info|warn|error|none).
 *  Not thread-safe with respect to concurrent logging: call it before creating models. */
EM_API void em_log_set(em_log_fn fn, void *user, em_log_level min_level);

/* ---- types shared with the blob format ------------------------------------------------------------ */
typedef enum em_dtype { EM_DTYPE_F32 = 0, EM_DTYPE_BF16 = 1, EM_DTYPE_F16 = 2, EM_DTYPE_I8 = 3, EM_DTYPE_I32 = 4 } em_dtype;

typedef enum em_arch {
    EM_ARCH_MAMBA2 = 1,      /* pure Mamba-2 stack (Mamba2ForCausalLM, Megatron Mamba-2 8B) */
    EM_ARCH_HYBRID = 2,      /* Mamba-2 + attention + MLP layers by pattern (NemotronH, Megatron hybrid) */
    EM_ARCH_MAMBA1 = 3,      /* Mamba-1 (MambaForCausalLM) */
    EM_ARCH_TRANSFORMER = 4  /* attention + MLP (the study's Transformer baseline) */
} em_arch;

typedef enum em_backend { EM_BACKEND_AUTO = 0, EM_BACKEND_CPU = 1, EM_BACKEND_CUDA = 2 } em_backend;

/* ---- model ------------------------------------------------------------------------------------- */
typedef struct em_model em_model;

typedef struct em_model_options {
    em_backend backend;   /* AUTO (default): CUDA when built with it and a device is present, else CPU */
    int device;           /* CUDA device ordinal (default 0) */
    int verify_data;      /* 1: hash every tensor at open (slower); 0 (default): header, config and table only */
    int n_threads;        /* CPU backend threads; 0 (default) = all online cores */
} em_model_options;

/** @return the defaults described field by field above. */
EM_API em_model_options em_model_default_options(void);

/** Opens a blob, validates it (the file is untrusted: every offset, size and count is checked) and places
 *  the weights once (mapped on the CPU; one device copy on CUDA).
 *  @param path  the .emb file.  @param opts  NULL for defaults.  @param out  receives the model.
 *  @return EM_OK; EM_ERR_INVALID_ARG (NULL path/out, options out of range); EM_ERR_IO / EM_ERR_NOT_FOUND;
 *  EM_ERR_BLOB_* for a damaged or unsupported file; EM_ERR_NO_DEVICE if CUDA was asked for and is absent;
 *  EM_ERR_OUT_OF_MEMORY / EM_ERR_DEVICE. On failure *out is NULL and nothing leaks. */
EM_API em_status em_model_open(const char *path, const em_model_options *opts, em_model **out);

/** Closes a model. Every session created on it must be freed first. NULL is a no-op. */
EM_API void em_model_close(em_model *model);

typedef struct em_model_info {
    em_arch arch;
    em_backend backend;         /* where the weights live */
    uint32_t n_layer, d_model, vocab_size;
    uint32_t d_state, ssm_n_head, ssm_head_dim, ssm_n_group, d_inner, d_conv; /* Mamba dims (0 if none) */
    uint32_t attn_n_head, attn_n_kv_head, attn_head_dim, d_ff;                /* hybrid dims (0 if none) */
    uint32_t max_context;       /* trained context (0 = unbounded / unknown) */
    int32_t bos_id, eos_id;     /* -1 if none */
    uint64_t n_params;          /* parameters in the tensor table */
    uint64_t weight_bytes;      /* bytes of tensor data */
    uint8_t content_id[16];     /* hash of config + tensor table: what snapshots are bound to */
    char layer_pattern[1024];   /* one char per layer: M Mamba-2, * attention, - MLP, m Mamba-1 */
    char name[64];
} em_model_info;

/** Fills *info. @return EM_OK, or EM_ERR_INVALID_ARG on NULL. */
EM_API em_status em_model_get_info(const em_model *model, em_model_info *info);

/* ---- planning and sessions --------------------------------------------------------------------- */
typedef struct em_session em_session;

typedef struct em_session_options {
    uint32_t max_context;       /* tokens of KV planned for attention layers (default 4096); unused by pure
                                   Mamba models, whose state is fixed */
    uint32_t max_batch;         /* sequences per session (default 1; only 1 is supported in v0.1) */
    uint32_t max_prefill_chunk; /* tokens processed per prefill step (default 64 CPU / 512 CUDA); longer
                                   prompts run chunk by chunk in the same memory */
} em_session_options;

/** @return the defaults described above (max_prefill_chunk 0 = the backend's default). */
EM_API em_session_options em_session_default_options(void);

typedef struct em_plan_report {
    size_t weight_bytes;        /* the model's weights (shared by sessions; already placed at open) */
    size_t state_bytes;         /* SSM + conv state of one session */
    size_t kv_bytes;            /* KV cache of the attention layers */
    size_t workspace_bytes;     /* activations and logits */
    size_t library_bytes;       /* cuBLAS workspace and other library memory */
    size_t session_bytes;       /* what em_session_create allocates: state + kv + workspace + library */
    size_t available_bytes;     /* host MemAvailable (CPU) or device free memory (CUDA) */
    uint32_t max_prefill_chunk; /* the chunk the plan was made for */
    em_backend backend;
} em_plan_report;

/** Computes every byte a session with these options needs, without allocating.
 *  @return EM_OK; EM_ERR_INVALID_ARG (NULL, options out of range); EM_ERR_PLAN_TOO_LARGE if
 *  session_bytes > available_bytes (report filled all the same; the message names both numbers). */
EM_API em_status em_plan(const em_model *model, const em_session_options *opts, em_plan_report *report);

/** Plans, checks the plan against the memory available, and allocates the session in one block.
 *  After this call the session never allocates again. @return as em_plan, or EM_ERR_OUT_OF_MEMORY /
 *  EM_ERR_DEVICE. On failure *out is NULL. */
EM_API em_status em_session_create(em_model *model, const em_session_options *opts, em_session **out);

/** As em_session_create, but carves the session out of the caller's buffer (CPU backend), which must
 *  hold at least em_plan's session_bytes and stay valid until em_session_free. 64-byte alignment is
 *  recommended. @return as em_session_create; EM_ERR_BUFFER_TOO_SMALL if size is short;
 *  EM_ERR_UNSUPPORTED on the CUDA backend. */
EM_API em_status em_session_create_static(em_model *model, const em_session_options *opts,
                                          void *buffer, size_t size, em_session **out);

/** Frees a session (not the caller's buffer of em_session_create_static). NULL is a no-op. */
EM_API void em_session_free(em_session *session);

/** Clears the state: the next call must be a prefill. @return EM_OK or EM_ERR_INVALID_ARG. */
EM_API em_status em_session_reset(em_session *session);

typedef enum em_logits_mode {
    EM_LOGITS_NONE = 0, /* compute nothing past the last layer (state only) */
    EM_LOGITS_LAST = 1, /* the last position's logits: [vocab] */
    EM_LOGITS_ALL = 2   /* every position's logits: [n_tokens, vocab] */
} em_logits_mode;

/** Runs a prompt through the model, continuing from the current state (a fresh or reset session starts
 *  from zero state). Prompts longer than max_prefill_chunk run chunk by chunk.
 *  @param tokens    [n_tokens] ids in [0, vocab).  @param n_tokens >= 1.
 *  @param mode      which logits to compute. LAST keeps them in the session for em_session_argmax.
 *  @param logits    NULL, or [vocab] floats (LAST) / [n_tokens, vocab] floats (ALL) to copy them to.
 *  @return EM_OK; EM_ERR_INVALID_ARG; EM_ERR_TOKEN_RANGE (nothing was run: the state is unchanged);
 *  EM_ERR_CONTEXT_FULL (hybrid: nothing was run); EM_ERR_DEVICE. */
EM_API em_status em_session_prefill(em_session *session, const int32_t *tokens, size_t n_tokens,
                                    em_logits_mode mode, float *logits);

/** Runs one token: the decode step. Its logits stay in the session (for em_session_argmax) and are
 *  copied to logits ([vocab] floats) when it is not NULL.
 *  @return EM_OK; EM_ERR_BAD_STATE before the first prefill; EM_ERR_TOKEN_RANGE (state unchanged);
 *  EM_ERR_CONTEXT_FULL; EM_ERR_DEVICE. */
EM_API em_status em_session_decode(em_session *session, int32_t token, float *logits);

/** Greedy pick: the id of the largest of the last logits (the lowest id on a tie).
 *  @return EM_OK; EM_ERR_BAD_STATE if no logits were computed yet. */
EM_API em_status em_session_argmax(em_session *session, int32_t *token);

/** Number of tokens the session has consumed since create/reset. */
EM_API em_status em_session_position(const em_session *session, uint64_t *n_tokens);

#ifdef __cplusplus
}
#endif
#endif /* EDGEMAMBA_H */
