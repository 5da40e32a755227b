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
    size_t memory_limit;        /* bytes this session may take (0, default: no limit of its own); em_plan's
                                   available_bytes is the smaller of it and what the host / device has, so a
                                   device shared with other work can be budgeted */
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
    size_t available_bytes;     /* host MemAvailable (CPU) or device free memory (CUDA), or the options'
                                   memory_limit when that is smaller */
    uint32_t max_prefill_chunk; /* the chunk the plan was made for */
    em_backend backend;
    uint32_t max_context_fit;   /* the largest max_context (up to the options' limit, 1 << 24) whose session fits
                                   available_bytes with the other options unchanged: what the KV cache of a hybrid
                                   can grow to here. The limit itself for models without attention layers (no KV
                                   cache) when the session fits; 0 when not even one token's fits. */
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

/* ---- text: tokenizers, sampling, streaming generation, state snapshots ----------------------------
 *
 *   em_generate_options go = em_generate_default_options();
 *   go.sampler.temperature = 0.7f; go.sampler.top_p = 0.9f; go.sampler.seed = 1; go.max_tokens = 128;
 *   em_generate_stats st;
 *   em_session_generate(s, "Once upon a time", &go, on_token, NULL, &st); // on_token prints ev->text
 *
 *   size_t n = 0;
 *   em_session_snapshot(s, NULL, 0, &n);                 // size query (a NULL buffer always is)
 *   void *snap = malloc(n);
 *   em_session_snapshot(s, snap, n, &n);                 // state + last logits + sampler, bound to the blob
 *   em_session_restore(other, snap, n);                  // continues exactly as s would
 *
 * The tokenizer travels in the blob (SentencePiece tokenizer.model or an HF byte-level BPE tokenizer.json,
 * docs/tokenizers.md). Encoding text may allocate (the tokenizer libraries do); it happens before the
 * token loop. Generation, sampling and snapshots allocate nothing: they use the session's arena.
 * Output buffers follow one rule: a NULL buffer is a size query (EM_OK, the size needed in the size
 * out-parameter); a buffer that is too small gets EM_ERR_BUFFER_TOO_SMALL, nothing written, and the size
 * needed.
 */
typedef struct em_tokenizer em_tokenizer;

typedef enum em_tokenizer_type {
    EM_TOKENIZER_NONE = 0,  /* the blob has no tokenizer */
    EM_TOKENIZER_SPM = 1,   /* SentencePiece model (tokenizer.model) */
    EM_TOKENIZER_BPE = 2    /* byte-level BPE (HF tokenizer.json, GPT-2 / GPT-NeoX style) */
} em_tokenizer_type;

typedef struct em_tokenizer_info {
    em_tokenizer_type type;
    uint32_t vocab_size;        /* the tokenizer's ids are [0, vocab_size) */
    int32_t bos_id, eos_id, unk_id, pad_id; /* -1 if none; bos/eos/pad from the model's config when the
                                               tokenizer comes from a model and the config names them */
    uint32_t max_token_bytes;   /* the longest byte string one token prints */
} em_tokenizer_info;

/* em_tokenizer_encode flags */
#define EM_TOKENIZE_ADD_BOS 0x1u        /* put bos_id first (when there is one) */
#define EM_TOKENIZE_PARSE_SPECIAL 0x2u  /* special tokens written in the text ("<|endoftext|>", "</s>") become
                                           their ids; without it they are plain text */
/* em_tokenizer_decode flags */
#define EM_DETOKENIZE_SKIP_SPECIAL 0x1u /* special (BPE added) tokens print nothing; SentencePiece never prints
                                           its control tokens */

/** Loads the model's tokenizer from its blob (no file access; the bytes are parsed once).
 *  @return EM_OK; EM_ERR_INVALID_ARG; EM_ERR_TOKENIZER if the blob has none or it does not load (the message
 *  says which); EM_ERR_OUT_OF_MEMORY. On failure *out is NULL. */
EM_API em_status em_tokenizer_create(const em_model *model, em_tokenizer **out);

/** Loads a tokenizer from a file: a SentencePiece .model, or an HF tokenizer.json (by extension, else by
 *  the first byte). @return as em_tokenizer_create, and EM_ERR_IO / EM_ERR_NOT_FOUND for the file. */
EM_API em_status em_tokenizer_create_from_file(const char *path, em_tokenizer **out);

/** Frees a tokenizer. NULL is a no-op. */
EM_API void em_tokenizer_free(em_tokenizer *tok);

/** Fills *info. @return EM_OK, or EM_ERR_INVALID_ARG on NULL. */
EM_API em_status em_tokenizer_get_info(const em_tokenizer *tok, em_tokenizer_info *info);

/** Text to token ids. Invalid UTF-8 in text is read as U+FFFD per maximal invalid subpart (as Python's
 *  and Rust's lossy decoders do) and never fails. A tokenizer may be used by several threads at once.
 *  @param text   UTF-8, len bytes (need not be NUL-terminated; NULL allowed when len is 0).
 *  @param flags  EM_TOKENIZE_*.
 *  @param ids    [cap] ids out, or NULL for a size query.  @param n_ids  receives the number of ids.
 *  @return EM_OK; EM_ERR_INVALID_ARG; EM_ERR_BUFFER_TOO_SMALL (cap < *n_ids, nothing written);
 *  EM_ERR_TOKENIZER (the library failed; message). */
EM_API em_status em_tokenizer_encode(const em_tokenizer *tok, const char *text, size_t len, uint32_t flags,
                                     int32_t *ids, size_t cap, size_t *n_ids);

/** Token ids to text, as the tokenizer's own library decodes a whole sequence (SentencePiece drops the
 *  leading dummy space; BPE maps bytes back); bytes that are not valid UTF-8 become U+FFFD.
 *  @param text  [cap] bytes out (the text and a terminating NUL), or NULL for a size query.
 *  @param len   receives the text's length in bytes, NUL excluded.
 *  @return EM_OK; EM_ERR_INVALID_ARG; EM_ERR_TOKEN_RANGE (an id outside [0, vocab_size)); EM_ERR_BUFFER_TOO_SMALL
 *  (cap < *len + 1, nothing written); EM_ERR_TOKENIZER. */
EM_API em_status em_tokenizer_decode(const em_tokenizer *tok, const int32_t *ids, size_t n_ids, uint32_t flags,
                                     char *text, size_t cap, size_t *len);

/** The bytes one token prints when streamed (may be part of a UTF-8 character; empty for control and
 *  special tokens). *bytes points into the tokenizer and stays valid until em_tokenizer_free.
 *  @return EM_OK; EM_ERR_INVALID_ARG; EM_ERR_TOKEN_RANGE. */
EM_API em_status em_tokenizer_token_bytes(const em_tokenizer *tok, int32_t id, const char **bytes, size_t *len);

/** The id of the token whose text is exactly text (NUL-terminated): special tokens by their content
 *  ("<|im_end|>", "</s>"), others by the text they print. @return EM_OK; EM_ERR_INVALID_ARG;
 *  EM_ERR_NOT_FOUND (no single token has that text). */
EM_API em_status em_tokenizer_find(const em_tokenizer *tok, const char *text, int32_t *id);

/** The chat template stored in the blob (em-pack copies chat_template.jinja or tokenizer_config.json's
 *  "chat_template"; HF Jinja text, which em-chat recognizes, not runs: docs/tokenizers.md). *text points
 *  into the model (not NUL-terminated; *len may be 0: a base model). @return EM_OK or EM_ERR_INVALID_ARG. */
EM_API em_status em_model_get_chat_template(const em_model *model, const char **text, size_t *len);

/** The session's tokenizer: the model's, loaded on the first call (or the first em_session_generate) and
 *  owned by the session. @return as em_tokenizer_create. */
EM_API em_status em_session_tokenizer(em_session *session, const em_tokenizer **tok);

/* ---- sampling (CPU twin of the device sampler) ---- */
#define EM_SAMPLER_MAX_RECENT 256u  /* longest repetition-penalty window */

typedef struct em_sampler_options {
    float temperature;        /* <= 0 (default 0): greedy, the largest logit (the lowest id on a tie) */
    uint32_t top_k;           /* keep the k most likely tokens (0 = off, default) */
    float top_p;              /* keep the fewest most likely tokens whose probabilities sum to >= top_p
                                 (1 = off, default) */
    float min_p;              /* drop tokens less likely than min_p * p(most likely) (0 = off, default) */
    float repeat_penalty;     /* CTRL/HF rule: a logit > 0 is divided by it, a logit < 0 multiplied, once per
                                 distinct id among the last repeat_last_n tokens (1 = off, default) */
    uint32_t repeat_last_n;   /* the window (default 64; at most EM_SAMPLER_MAX_RECENT) */
    uint64_t seed;            /* 0 (default): the session's generator continues (a fresh or reset session
                                 starts from a fixed state, so runs repeat); else em_session_generate reseeds it
                                 with this value when it starts */
} em_sampler_options;

/** @return the defaults described above (greedy). */
EM_API em_sampler_options em_sampler_default_options(void);

/** Picks the next token from the session's last logits: repetition penalty, temperature, top-k, top-p,
 *  min-p, in that order, then one draw of the session's generator (none when greedy). The window holds
 *  the tokens em_session_generate consumed and the tokens this function picked. Allocates nothing.
 *  opts->seed is not used here (see em_session_set_seed).
 *  @param logprob  NULL, or receives log p(token) under the distribution it was drawn from (greedy: the
 *  softmax of the penalized logits).
 *  @return EM_OK; EM_ERR_INVALID_ARG (NULL, an option out of range: temperature NaN, top_p or min_p
 *  outside [0, 1], repeat_penalty <= 0, repeat_last_n too large); EM_ERR_BAD_STATE (no logits yet);
 *  EM_ERR_UNSUPPORTED (a CUDA session: only greedy until the device sampler lands). */
EM_API em_status em_session_sample(em_session *session, const em_sampler_options *opts, int32_t *token,
                                   float *logprob);

/** Reseeds the session's generator (xoshiro256**, seeded through splitmix64). @return EM_OK or
 *  EM_ERR_INVALID_ARG. */
EM_API em_status em_session_set_seed(em_session *session, uint64_t seed);

/* ---- streaming generation ---- */
#define EM_GENERATE_MAX_STOP 8u          /* stop strings, and stop tokens, per call */
#define EM_GENERATE_MAX_STOP_BYTES 255u  /* longest stop string */

typedef enum em_stop_reason {
    EM_STOP_NONE = 0,
    EM_STOP_MAX_TOKENS = 1,   /* max_tokens were generated */
    EM_STOP_EOS = 2,          /* the model's end-of-sequence token */
    EM_STOP_TOKEN = 3,        /* one of stop_tokens */
    EM_STOP_STRING = 4,       /* one of stop_strings appeared in the text (it is not passed to the callback) */
    EM_STOP_CALLBACK = 5,     /* the callback returned non-zero */
    EM_STOP_ERROR = 6         /* a status other than EM_OK / EM_ERR_ABORTED, e.g. EM_ERR_CONTEXT_FULL */
} em_stop_reason;

typedef struct em_generate_options {
    em_sampler_options sampler;
    uint32_t max_tokens;                  /* tokens to generate at most (default 128; 0: only consume the prompt) */
    uint32_t flags;                       /* EM_TOKENIZE_* for the prompt (default EM_TOKENIZE_PARSE_SPECIAL;
                                             EM_TOKENIZE_ADD_BOS is applied only on an empty session) */
    int stop_at_eos;                      /* 1 (default): stop after the model's eos token */
    const char *const *stop_strings;      /* [n_stop_strings] NUL-terminated, non-empty (default none) */
    uint32_t n_stop_strings;              /* at most EM_GENERATE_MAX_STOP, each <= EM_GENERATE_MAX_STOP_BYTES */
    const int32_t *stop_tokens;           /* [n_stop_tokens] ids that end generation (e.g. <|im_end|>) */
    uint32_t n_stop_tokens;               /* at most EM_GENERATE_MAX_STOP */
    int logprobs;                         /* 1: each event carries the token's log-probability (default 0) */
} em_generate_options;

/** @return the defaults described above (greedy sampling). */
EM_API em_generate_options em_generate_default_options(void);

typedef struct em_token_event {
    const char *text;     /* UTF-8 this token completes: whole characters only, never split across events;
                             not NUL-terminated; may be empty (a special token, part of a character, text
                             held back while it may begin a stop string). The last event also carries the
                             held-back text. Valid during the call only. */
    size_t text_len;
    int32_t token;        /* the generated id */
    float logprob;        /* log p(token) when logprobs is on, else 0 */
    uint32_t index;       /* 0 for the first generated token */
} em_token_event;

/** Called once per generated token, after it is picked and before the model consumes it.
 *  @return 0 to go on; non-zero to stop (the token is still consumed, so the state holds every token
 *  the callback saw). */
typedef int (*em_token_callback)(const em_token_event *event, void *user);

typedef struct em_generate_stats {
    uint32_t prompt_tokens;       /* ids the prompt encoded to (BOS included) */
    uint32_t generated_tokens;
    double prefill_seconds, decode_seconds;
    double prefill_tokens_per_s;  /* prompt_tokens / prefill_seconds */
    double decode_tokens_per_s;   /* generated tokens / (sampling + decode time) */
    size_t session_bytes;         /* the session's memory (em_plan's session_bytes) */
    em_stop_reason stop;
} em_generate_stats;

/** Encodes prompt, consumes it (continuing from the session's state: a chat appends turns), then samples,
 *  streams and consumes up to max_tokens tokens. Every token picked is consumed before the call returns,
 *  so the session can continue or be snapshotted. An empty prompt ("" or NULL) continues from the last
 *  logits. Allocates only to encode the prompt; ids the model has but the tokenizer lacks (vocabulary
 *  padding) are never picked.
 *  @param cb     NULL, or called per token.  @param stats  NULL, or filled (also on failure).
 *  @return EM_OK; EM_ERR_ABORTED (the callback stopped it: the session is consistent); EM_ERR_INVALID_ARG;
 *  EM_ERR_BAD_STATE (empty prompt and no logits yet); EM_ERR_TOKENIZER (no tokenizer in the blob);
 *  EM_ERR_CONTEXT_FULL (hybrid: the planned KV is full; the session stays usable); EM_ERR_DEVICE;
 *  EM_ERR_UNSUPPORTED (sampling other than greedy on a CUDA session, until the device sampler lands). */
EM_API em_status em_session_generate(em_session *session, const char *prompt, const em_generate_options *opts,
                                     em_token_callback cb, void *user, em_generate_stats *stats);

/** As em_session_generate, with the prompt given as ids (n_ids may be 0). Works without a tokenizer
 *  (the events' text is then empty). */
EM_API em_status em_session_generate_tokens(em_session *session, const int32_t *ids, size_t n_ids,
                                            const em_generate_options *opts, em_token_callback cb, void *user,
                                            em_generate_stats *stats);

/* ---- state snapshots ---- */
/** Writes the session's state to buf: the SSM and conv state (and, for hybrid models, the used part of
 *  each attention layer's KV cache), the position, the last logits and the sampler's generator and window.
 *  Versioned, checksummed (XXH3-64 per section and header) and bound to the blob's content id
 *  (docs/tokenizers.md has the layout).
 *  @param buf   [cap] bytes, or NULL for a size query.  @param size  receives the snapshot's size.
 *  @return EM_OK; EM_ERR_INVALID_ARG; EM_ERR_BUFFER_TOO_SMALL; EM_ERR_UNSUPPORTED (a CUDA session, for now). */
EM_API em_status em_session_snapshot(em_session *session, void *buf, size_t cap, size_t *size);

/** Restores a snapshot made by em_session_snapshot on a session of the same blob (any session options that
 *  hold it). Everything is checked before anything is changed: on failure the session is as it was.
 *  @return EM_OK; EM_ERR_INVALID_ARG; EM_ERR_SNAPSHOT_MISMATCH (another blob, other dims, a KV part larger
 *  than this session's max_context, or a newer format version); EM_ERR_SNAPSHOT_CORRUPT (not a snapshot,
 *  truncated, or a checksum mismatch); EM_ERR_UNSUPPORTED (a CUDA session, for now). */
EM_API em_status em_session_restore(em_session *session, const void *buf, size_t size);

/** em_session_snapshot to a file, written to "path.tmp" and renamed over path (a crash never leaves a
 *  partial file at path). Allocates nothing. @return as em_session_snapshot, or EM_ERR_IO. */
EM_API em_status em_session_snapshot_file(em_session *session, const char *path);

/** em_session_restore from a file (mapped, not copied). @return as em_session_restore, or EM_ERR_IO /
 *  EM_ERR_NOT_FOUND. */
EM_API em_status em_session_restore_file(em_session *session, const char *path);

#ifdef __cplusplus
}
#endif
#endif /* EDGEMAMBA_H */
