/*
 * em-bench — decode and prefill throughput of a blob at batch 1, judged against the memory-bandwidth roofline.
 *
 *   em-bench -m FILE.emb [-p 512] [-n 128] [-r 5] [--backend auto|cpu|cuda] [--json]
 *
 * One run = reset, prefill a seeded random prompt of -p tokens, then -n greedy decode steps (each step: the
 * token in, one replay of the decode graph, the greedy id out: what a generation loop does). Figures are the
 * median over -r runs after one warm-up run.
 *
 * The roofline (docs/benchmarks.md has the formula and why):
 *   bytes/token = every weight except the embedding table + one embedding row (+ the table again when the head
 *                 is tied to it) + the SSM and conv state read and written (fp32) + the KV read (attention)
 *   roofline ms = bytes/token / read bandwidth, where the read bandwidth is measured here, now, by a
 *                 read-only pass over a 2 GiB buffer (kernels/bandwidth.cu)
 *   % of roofline = roofline ms / measured ms
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda_exec.h"
#include "cuda_ops.h"
#include "cuda_rt.h"
#include "edgemamba.h"
#include "model.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(FILE *f) {
    fprintf(f, "usage: em-bench -m MODEL.emb [-p PROMPT] [-n NEW] [-r RUNS] [--backend auto|cpu|cuda] [--chunk T] [--json]\n"
               "                [--breakdown]   (CUDA: per-kernel time of a decode step, events after every kernel)\n");
}

#define DIE(...) do { fprintf(stderr, "em-bench: " __VA_ARGS__); fputc('\n', stderr); return 1; } while (0)

int main(int argc, char **argv) {
    const char *path = NULL;
    long p = 512, n = 128, runs = 5;
    unsigned chunk = 0;
    int json = 0, breakdown = 0;
    em_model_options mo = em_model_default_options();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int nx = i + 1 < argc;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && nx) path = argv[++i];
        else if (!strcmp(a, "-p") && nx) p = strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "-n") && nx) n = strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "-r") && nx) runs = strtol(argv[++i], NULL, 10);
        else if (!strcmp(a, "--chunk") && nx) chunk = (unsigned)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--breakdown")) breakdown = 1;
        else if (!strcmp(a, "--backend") && nx) {
            const char *b = argv[++i];
            mo.backend = !strcmp(b, "cpu") ? EM_BACKEND_CPU : !strcmp(b, "cuda") ? EM_BACKEND_CUDA : EM_BACKEND_AUTO;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else { usage(stderr); DIE("unknown or incomplete argument '%s'", a); }
    }
    if (!path) { usage(stderr); return 2; }
    if (p < 1 || p > 1000000 || n < 1 || n > 1000000 || runs < 1 || runs > 100) DIE("-p, -n or -r out of range");

    /* device memory before anything of ours, for "in use vs plan" */
    size_t free0 = 0, free1 = 0, free2 = 0;
    em_cuda_info ci;
    memset(&ci, 0, sizeof ci);
    int n_dev = 0;
    int cuda = mo.backend != EM_BACKEND_CPU && em_cuda_available(&n_dev) == EM_OK && n_dev > 0;
    if (cuda && em_cuda_device_info(0, &ci) == EM_OK) free0 = ci.mem_free;

    /* the read bandwidth, measured now */
    double bw = 0;
#ifdef EM_HAVE_CUDA
    if (cuda && em_cuda_read_bandwidth((size_t)2 << 30, 10, &bw) != EM_OK) bw = 0;
#endif

    em_model *m = NULL;
    double t0 = now_s();
    if (em_model_open(path, &mo, &m) != EM_OK) DIE("%s", em_last_error());
    double t_load = now_s() - t0;
    em_model_info info;
    em_model_get_info(m, &info);
    if (info.backend == EM_BACKEND_CUDA && em_cuda_device_info(0, &ci) == EM_OK) free1 = ci.mem_free;

    em_session_options so = em_session_default_options();
    so.max_prefill_chunk = chunk;
    /* hybrids: the KV cache holds the prompt, the new tokens and the --breakdown steps (2 x 20) */
    if ((uint64_t)p + n + 64 > so.max_context) so.max_context = (uint32_t)(p + n + 64);
    em_plan_report plan;
    em_session *s = NULL;
    if (em_plan(m, &so, &plan) != EM_OK || em_session_create(m, &so, &s) != EM_OK) DIE("%s", em_last_error());
    if (info.backend == EM_BACKEND_CUDA && em_cuda_device_info(0, &ci) == EM_OK) free2 = ci.mem_free;

    /* bytes per token, by the formula above */
    const em_blob *blob = &m->blob;
    uint64_t weights = 0, embd = 0;
    for (uint32_t i = 0; i < blob->n_tensors; i++) {
        weights += blob->tensors[i].size;
        if (!strcmp(blob->tensors[i].name, "embd")) embd = blob->tensors[i].size;
    }
    int tied = (m->cfg.flags & EM_CFG_TIED_EMBEDDINGS) != 0;
    /* hybrids: + the KV cache read at the mean decode position (kv_bytes covers max_context positions) */
    const uint64_t kv_read = so.max_context ? (uint64_t)((double)plan.kv_bytes * ((double)p + n / 2.0) / so.max_context) : 0;
    uint64_t bytes_tok = weights - embd + embd / info.vocab_size + (tied ? embd : 0) + 2 * (uint64_t)plan.state_bytes +
                         kv_read;
    double roof_ms = bw > 0 ? (double)bytes_tok / (bw * 1e9) * 1e3 : 0;

    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)p);
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (long i = 0; i < p; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; prompt[i] = (int32_t)(x % info.vocab_size); }
    double *pf = malloc(sizeof(double) * (size_t)runs), *dec = malloc(sizeof(double) * (size_t)runs);
    for (long r = -1; r < runs; r++) { /* r = -1: warm-up */
        int32_t tok;
        if (em_session_reset(s) != EM_OK) DIE("%s", em_last_error());
        double a = now_s();
        if (em_session_prefill(s, prompt, (size_t)p, EM_LOGITS_LAST, NULL) != EM_OK) DIE("%s", em_last_error());
        double b = now_s();
        for (long i = 0; i < n; i++)
            if (em_session_argmax(s, &tok) != EM_OK || em_session_decode(s, tok, NULL) != EM_OK) DIE("%s", em_last_error());
        double c = now_s();
        if (r >= 0) { pf[r] = (double)p / (b - a); dec[r] = (c - b) * 1e3 / (double)n; }
    }
    /* memory after every step above ((runs + 1) * n decode steps): must equal what create left (nothing grows) */
    size_t free3 = 0;
    if (info.backend == EM_BACKEND_CUDA && em_cuda_device_info(0, &ci) == EM_OK) free3 = ci.mem_free;
    const long steps_done = (runs + 1) * n;
    qsort(pf, (size_t)runs, sizeof *pf, cmp_double);
    qsort(dec, (size_t)runs, sizeof *dec, cmp_double);
    double pf_med = pf[runs / 2], dec_med = dec[runs / 2];
    double in_use = (free0 && free2) ? (double)(free0 - free2) : 0, planned = (double)(plan.weight_bytes + plan.session_bytes);

    /* per-kernel breakdown: eager steps with an event after every kernel, vs the graph's replay */
    double op_ms[EM_OP_COUNT] = {0}, graph_ms = 0, op_sum = 0;
    if (breakdown && info.backend == EM_BACKEND_CUDA) {
        if (em_cuda_session_profile(s, 20, op_ms, &graph_ms) != EM_OK) DIE("--breakdown: %s", em_last_error());
        for (int k = 0; k < EM_OP_COUNT; k++) op_sum += op_ms[k];
    }
    if (json) {
        printf("{\"model\":\"%s\",\"backend\":\"%s\",\"device\":\"%s\",\"n_layer\":%u,\"d_model\":%u,\"vocab\":%u,"
               "\"prompt\":%ld,\"new\":%ld,\"runs\":%ld,\"prefill_tok_s\":%.1f,\"decode_ms_per_token\":%.4f,"
               "\"decode_ms_min\":%.4f,\"decode_ms_max\":%.4f,\"bytes_per_token\":%llu,\"read_gbps\":%.1f,"
               "\"roofline_ms\":%.4f,\"roofline_fraction\":%.4f,\"load_s\":%.2f,\"plan_bytes\":%.0f,\"device_bytes_in_use\":%.0f,"
               "\"step\":\"%s\",\"decode_steps\":%ld,\"device_bytes_grown\":%.0f}\n",
               path, info.backend == EM_BACKEND_CUDA ? "cuda" : "cpu", info.backend == EM_BACKEND_CUDA ? ci.name : "cpu",
               info.n_layer, info.d_model, info.vocab_size, p, n, runs, pf_med, dec_med, dec[0], dec[runs - 1],
               (unsigned long long)bytes_tok, bw, roof_ms, roof_ms > 0 ? roof_ms / dec_med : 0, t_load, planned, in_use,
               em_cuda_session_step_name(s), steps_done, free2 && free3 ? (double)free2 - (double)free3 : 0.0);
        if (op_sum > 0) { /* the breakdown as a second JSON object on its own line */
            printf("{\"breakdown_of\":\"%s\",\"graph_ms\":%.4f,\"eager_ms\":%.4f", path, graph_ms, op_sum);
            for (int k = 0; k < EM_OP_COUNT; k++) printf(",\"%s\":%.4f", em_cuda_op_names[k], op_ms[k]);
            printf("}\n");
        }
    } else {
        printf("model      %s: %u layers, d_model %u, vocab %u, %.3f G params\n", path, info.n_layer, info.d_model,
               info.vocab_size, (double)info.n_params / 1e9);
        printf("backend    %s%s%s (load %.2f s)\n", info.backend == EM_BACKEND_CUDA ? "CUDA: " : "CPU",
               info.backend == EM_BACKEND_CUDA ? ci.name : "", "", t_load);
        printf("prefill    %ld tokens: %.1f tok/s (median of %ld)\n", p, pf_med, runs);
        printf("decode     %ld tokens: %.3f ms/token (min %.3f, max %.3f)\n", n, dec_med, dec[0], dec[runs - 1]);
        printf("bytes/tok  %.3f GB (weights %.3f GB w/o table + 1 row%s; state %.3f GB read + written)\n",
               (double)bytes_tok / 1e9, (double)(weights - embd) / 1e9, tied ? " + tied head" : "",
               2.0 * (double)plan.state_bytes / 1e9);
        if (bw > 0)
            printf("roofline   read bandwidth %.0f GB/s -> %.3f ms/token; measured is %.1f %% of the roofline\n", bw,
                   roof_ms, 100.0 * roof_ms / dec_med);
        else printf("roofline   n/a (no device bandwidth measured on the CPU backend)\n");
        printf("memory     plan: weights %.3f GB + session %.3f GB", (double)plan.weight_bytes / 1e9,
               (double)plan.session_bytes / 1e9);
        if (in_use > 0)
            printf("; device in use after load + create %.3f GB (%+.2f %% vs plan; load alone %.3f GB)", in_use / 1e9,
                   100.0 * (in_use - planned) / planned, (double)(free0 - free1) / 1e9);
        printf("\n");
        if (free2 && free3)
            printf("growth     device memory after %ld decode steps vs after create: %+lld bytes\n", steps_done,
                   (long long)free2 - (long long)free3);
        printf("step       %s\n", em_cuda_session_step_name(s));
        if (op_sum > 0) {
            printf("breakdown  one decode step, eager with an event after every kernel: %.3f ms (graph replay %.3f ms)\n",
                   op_sum, graph_ms);
            for (int k = 0; k < EM_OP_COUNT; k++)
                printf("           %-18s %8.3f ms  %5.1f %%\n", em_cuda_op_names[k], op_ms[k], 100.0 * op_ms[k] / op_sum);
        }
    }
    free(prompt); free(pf); free(dec);
    em_session_free(s);
    em_model_close(m);
    return 0;
}
