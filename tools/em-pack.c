/*
 * em-pack.c — the command line over tools/pack: HF checkpoint -> edgemamba blob (.emb), random blobs of any
 * shape, and --info to read a blob back. The work is in pack.c; this file parses arguments, draws the
 * progress bar and prints the summary. Usage: em-pack --help, or docs/em-pack.md.
 *
 * Exit status: 0 on success, 1 on any error (the message, naming file and tensor, goes to stderr).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "blob.h"
#include "pack.h"
#include "util.h"

static const char *usage =
    "usage:\n"
    "  em-pack MODEL_DIR|MODEL.safetensors|INDEX.json -o OUT.emb [--dtype bf16|f32|int8] [--tokenizer FILE]\n"
    "                                                      [--no-tokenizer] [--format auto|hf|megatron]\n"
    "  em-pack --random-init CONFIG.json -o OUT.emb [--seed N] [--dtype bf16|f32|int8] [--tokenizer FILE]\n"
    "  em-pack --requantize IN.emb -o OUT.emb\n"
    "  em-pack --info FILE.emb [--verify]\n"
    "  em-pack --help | --version\n"
    "\n"
    "Packs a Hugging Face checkpoint (config.json + safetensors; Mamba2ForCausalLM or NemotronHForCausalLM)\n"
    "into an edgemamba blob. Matrices are stored in --dtype (default bf16), norms/conv/A/D/dt_bias in f32.\n"
    "A tokenizer.model (SentencePiece) or tokenizer.json (BPE) beside config.json is stored in the blob.\n"
    "A Megatron-LM Mamba-2 / hybrid checkpoint converted by tools/pack/megatron_to_safetensors.py\n"
    "(model.safetensors + megatron_args.json) is recognised by its megatron_args.json, or by --format megatron.\n"
    "--random-init writes random weights with realistic scales for the config's shape (deterministic per\n"
    "--seed). --info prints the header, the config, the strings and the tensor table of a blob\n"
    "(--verify also checks every tensor's checksum). -o and --out are the same option.\n"
    "--dtype int8 stores every 2-D matrix but the embedding as int8 with one f32 scale per output row\n"
    "(tensor <name>.scale; docs/int8.md); the embedding stays bf16. --requantize turns a bf16 or f32 blob\n"
    "into that int8 blob.\n";

// ---- progress ------------------------------------------------------------------------------------------

typedef struct bar_state { double t0, last; int drawn; } bar_state;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Redraws at most 10 times a second, and once at 100%. */
static void bar_draw(uint64_t done, uint64_t total, void *user) {
    bar_state *b = user;
    double t = now_s();
    if (t - b->last < 0.1 && done < total) return;
    b->last = t;
    b->drawn = 1;
    double f = total ? (double)done / (double)total : 1.0;
    char bar[41];
    int fill = (int)(f * 40.0);
    for (int i = 0; i < 40; i++) bar[i] = i < fill ? '#' : ' ';
    bar[40] = 0;
    double el = t - b->t0;
    fprintf(stderr, "\r[%s] %5.1f%%  %8.1f / %.1f MB  %6.0f MB/s", bar, 100.0 * f, (double)done / 1e6,
            (double)total / 1e6, el > 0 ? (double)done / 1e6 / el : 0.0);
    fflush(stderr);
}

// ---- --info ----------------------------------------------------------------------------------------------

static const char *arch_name(uint32_t a) {
    switch (a) {
    case EM_ARCH_MAMBA2: return "mamba2";
    case EM_ARCH_HYBRID: return "hybrid";
    case EM_ARCH_MAMBA1: return "mamba1";
    case EM_ARCH_TRANSFORMER: return "transformer";
    default: return "?";
    }
}

/* A string field, escaped and cut to max characters. */
static void print_string(const char *label, em_blob_string s, uint32_t max) {
    printf("  %-18s %u bytes", label, s.len);
    if (!s.len) { printf("\n"); return; }
    printf("  \"");
    for (uint32_t i = 0; i < s.len && i < max; i++) {
        unsigned char ch = (unsigned char)s.ptr[i];
        if (ch == '\n') printf("\\n");
        else if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f) printf("\\x%02x", ch);
        else putchar(ch);
    }
    printf("\"%s\n", s.len > max ? "..." : "");
}

/* --info: opens the blob as the runtime does (the same validation; --verify also hashes every tensor) and
 * prints it section by section; the config is printed from the EM_CONFIG_FIELDS table, so a new field shows
 * up here without an edit. */
static int cmd_info(const char *path, int verify) {
    em_blob_open_options bo = {verify};
    em_blob b;
    memset(&b, 0, sizeof b);
    em_status s = em_blob_open_file(path, &bo, &b);
    if (s != EM_OK) {
        fprintf(stderr, "em-pack: %s: %s (%s)\n", path, em_last_error(), em_status_str(s));
        return 1;
    }
    const em_blob_config *c = &b.config;
    printf("file               %s\n", path);
    printf("size               %" PRIu64 " bytes\n", b.file_size);
    printf("version            %u\n", b.version);
    printf("flags              0x%x%s\n", b.flags, b.flags & EM_BLOB_FLAG_SHARDED ? " (sharded)" : "");
    printf("content_id         ");
    for (int i = 0; i < 16; i++) printf("%02x", b.content_id[i]);
    printf("\n");
    printf("tokenizer          %s, %" PRIu64 " bytes\n",
           c->tokenizer_kind == EM_TOK_SPM ? "sentencepiece" : c->tokenizer_kind == EM_TOK_BPE ? "bpe" : "none",
           b.tokenizer_size);
    printf("data               offset %" PRIu64 ", %" PRIu64 " bytes%s\n", (uint64_t)(b.data - b.base), b.data_size,
           verify ? " (checksums verified)" : "");

    printf("config (%s, flags:%s%s%s%s)\n", arch_name(c->arch), c->flags & EM_CFG_TIED_EMBEDDINGS ? " tied" : "",
           c->flags & EM_CFG_RESIDUAL_FP32 ? " residual_fp32" : "", c->flags & EM_CFG_CONV_BIAS ? " conv_bias" : "",
           c->flags & EM_CFG_PROJ_BIAS ? " proj_bias" : "");
#define INFO_u32(name) printf("  %-18s %u\n", #name, c->name);
#define INFO_i32(name) printf("  %-18s %d\n", #name, c->name);
#define INFO_f32(name) printf("  %-18s %g\n", #name, (double)c->name);
#define INFO_X(T, name) INFO_##T(name)
    EM_CONFIG_FIELDS(INFO_X)
#undef INFO_X
    printf("strings\n");
#define INFO_S(name) print_string(#name, c->name, 120);
    EM_CONFIG_STRINGS(INFO_S)
#undef INFO_S

    /* the table, in file order: the offset is from the start of the data section */
    uint64_t params = 0;
    printf("tensors            %u\n", b.n_tensors);
    printf("  %5s %-24s %-5s %-20s %14s %14s %16s  %s\n", "#", "name", "dtype", "shape", "offset", "bytes", "xxh3-64",
           "quant");
    uint64_t by_dtype[8] = {0};
    for (uint32_t i = 0; i < b.n_tensors; i++) {
        const em_blob_tensor *t = &b.tensors[i];
        char shape[96];
        size_t o = (size_t)snprintf(shape, sizeof shape, "[");
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims && d < EM_BLOB_MAX_DIMS && o < sizeof shape; d++) {
            o += (size_t)snprintf(shape + o, sizeof shape - o, "%s%" PRIu64, d ? ", " : "", t->shape[d]);
            n *= t->shape[d];
        }
        if (o < sizeof shape) snprintf(shape + o, sizeof shape - o, "]");
        params += n;
        char quant[160] = "";
        if (t->quant == EM_QUANT_INT8_ROW) { /* the scales' range: read from the (validated) scale tensor */
            const em_blob_tensor *sc = &b.tensors[t->scale_index];
            float lo = INFINITY, hi = -INFINITY;
            for (uint64_t r = 0; r < sc->shape[0]; r++) {
                float v;
                memcpy(&v, b.data + sc->offset + 4 * r, 4);
                if (v < lo) lo = v;
                if (v > hi) hi = v;
            }
            snprintf(quant, sizeof quant, "int8-row, scales #%d %s in [%.3g, %.3g]", t->scale_index, sc->name,
                     (double)lo, (double)hi);
        }
        printf("  %5u %-24s %-5s %-20s %14" PRIu64 " %14" PRIu64 " %016" PRIx64 "  %s\n", i, t->name,
               em_dtype_name(t->dtype), shape, t->offset, t->size, t->checksum, quant);
        if (t->dtype < 8) by_dtype[t->dtype] += t->size;
    }
    printf("bytes by dtype    ");
    for (uint32_t d = 0; d < 8; d++)
        if (by_dtype[d]) printf(" %s %" PRIu64 " (%.1f MB)", em_dtype_name(d), by_dtype[d], (double)by_dtype[d] / 1e6);
    printf("\n");
    printf("parameters         %" PRIu64 " (%.3f M)\n", params, (double)params / 1e6);
    em_blob_close(&b);
    return 0;
}

// ---- main -------------------------------------------------------------------------------------------------

/* The pack dtypes the CLI accepts (int8: quant/quant.h, docs/int8.md). */
static int parse_dtype(const char *s, em_dtype *dt) {
    if (!strcmp(s, "bf16")) { *dt = EM_DTYPE_BF16; return 1; }
    if (!strcmp(s, "f32")) { *dt = EM_DTYPE_F32; return 1; }
    if (!strcmp(s, "int8") || !strcmp(s, "i8")) { *dt = EM_DTYPE_I8; return 1; }
    return 0;
}

/* A usage mistake: the message, then the usage text; exit status 1 like every other error. */
static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "em-pack: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", usage);
    return 1;
}

int main(int argc, char **argv) {
    const char *src = NULL, *out = NULL, *info = NULL, *random_cfg = NULL, *requant = NULL;
    int dtype_given = 0;
    int verify = 0;
    em_pack_options o = em_pack_default_options();
    if (argc < 2) return usage_error("%s", "no arguments");
    /* Options may come in any order; the one positional argument is the checkpoint. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = !strcmp(a, "-o") || !strcmp(a, "--out") || !strcmp(a, "--dtype") || !strcmp(a, "--tokenizer") || !strcmp(a, "--format") ||
                    !strcmp(a, "--seed") || !strcmp(a, "--info") || !strcmp(a, "--random-init") ||
                    !strcmp(a, "--requantize");
        if (takes && !next) return usage_error("option %s needs a value", a);
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { printf("%s", usage); return 0; }
        else if (!strcmp(a, "--version")) {
            printf("em-pack %s (blob format v%u)\n", em_version(), EM_BLOB_VERSION);
            return 0;
        }
        else if (!strcmp(a, "-o") || !strcmp(a, "--out")) out = argv[++i];
        else if (!strcmp(a, "--dtype")) {
            if (!parse_dtype(argv[++i], &o.dtype)) return usage_error("unknown dtype %s (bf16, f32, int8)", argv[i]);
            dtype_given = 1;
        }
        else if (!strcmp(a, "--tokenizer")) o.tokenizer = argv[++i];
        else if (!strcmp(a, "--no-tokenizer")) o.no_tokenizer = 1;
        else if (!strcmp(a, "--format")) {
            const char *f = argv[++i];
            if (!strcmp(f, "auto")) o.format = EM_PACK_FORMAT_AUTO;
            else if (!strcmp(f, "hf")) o.format = EM_PACK_FORMAT_HF;
            else if (!strcmp(f, "megatron")) o.format = EM_PACK_FORMAT_MEGATRON;
            else return usage_error("unknown --format %s (auto, hf, megatron)", f);
        }
        else if (!strcmp(a, "--seed")) {
            char *end;
            o.seed = strtoull(argv[++i], &end, 0);
            if (!*argv[i] || *end) return usage_error("--seed %s is not an integer", argv[i]);
        } else if (!strcmp(a, "--info")) info = argv[++i];
        else if (!strcmp(a, "--verify")) verify = 1;
        else if (!strcmp(a, "--random-init")) random_cfg = argv[++i];
        else if (!strcmp(a, "--requantize")) requant = argv[++i];
        else if (a[0] == '-' && a[1]) return usage_error("unknown option %s", a);
        else if (!src) src = a;
        else return usage_error("unexpected argument %s", a);
    }
    if (info) {
        if (src || out || random_cfg || requant) return usage_error("%s", "--info takes only a blob file");
        return cmd_info(info, verify);
    }
    if (random_cfg && src) return usage_error("%s", "--random-init takes a config, not a checkpoint");
    if (requant && (src || random_cfg))
        return usage_error("%s", "--requantize takes a blob, not a checkpoint or config");
    if (requant && dtype_given && o.dtype != EM_DTYPE_I8)
        return usage_error("%s", "--requantize writes int8 (--dtype int8, or no --dtype)");
    if (!random_cfg && !src && !requant) return usage_error("%s", "no checkpoint given");
    if (!out) return usage_error("%s", "no output file (-o OUT.emb)");

    /* The bar only when a person watches (stderr is a terminal): logs and ctest get the summary line alone. */
    bar_state bar = {now_s(), 0.0, 0};
    if (isatty(STDERR_FILENO)) { o.progress = bar_draw; o.progress_user = &bar; }
    em_pack_stats st;
    memset(&st, 0, sizeof st);
    em_status s = requant      ? em_pack_requantize(requant, out, &o, &st)
                  : random_cfg ? em_pack_random(random_cfg, out, &o, &st)
                               : em_pack_checkpoint(src, out, &o, &st);
    if (bar.drawn) fputc('\n', stderr);
    if (s != EM_OK) {
        fprintf(stderr, "em-pack: %s\n", em_last_error()[0] ? em_last_error() : em_status_str(s));
        return 1;
    }
    fprintf(stderr, "em-pack: wrote %s: %u tensors, %.1f MB of weights (%" PRIu64 " bytes on disk) in %.2f s, "
            "%.0f MB/s%s\n", out, st.n_tensors, (double)st.data_bytes / 1e6, st.file_bytes, st.seconds,
            st.seconds > 0 ? (double)st.data_bytes / 1e6 / st.seconds : 0.0,
            st.n_unused ? " (some checkpoint tensors were not packed: see the warning above)" : "");
    return 0;
}
