/*
 * em-plan — will this blob run on that device, and how fast? For a blob and session options (context, batch)
 * it prints, for each device profile (Jetson Orin Nano/NX/AGX, Thor, H100, H200), the memory the plan needs
 * against the memory the device can give, and the projected batch-1 (or batch-B) decode speed:
 *
 *   bytes/token  = weights - embedding table + one embedding row (+ the table again if the head is tied)
 *                + SSM and conv state read and written (2 x state) + the KV cache read at a full context
 *                  (the formula of docs/benchmarks.md)
 *   ceiling      = peak bandwidth / bytes per token                   (the datasheet roofline)
 *   projected    = roofline fraction x read efficiency x peak bandwidth / bytes per token
 *
 * The roofline fraction is what the CUDA decode path reaches of the bandwidth measured in the same run on the
 * H100 (docs/benchmarks.md: 89.2 % on the Mamba-2 8B shape with the fused step, commit a7c69f0, 2026-11-23; it
 * was 80.9 % before that commit; --roofline to change it). The read efficiency is measured read bandwidth /
 * datasheet peak: 3052 / 3352 GB/s on the H100 (docs/benchmarks.md),
 * ~156 / 204.8 GB/s measured on an AGX Orin by an MLC-LLM porting log (../shared/reference/edge.md), assumed
 * for every Jetson until measured on one; the H200 is assumed at the H100's. A batch of B is B sessions on one
 * model (one session holds one sequence in v0.1): the weights are read once per step for all B.
 *
 * Memory: need = weights + B x the CUDA backend's session block (runtime/dev_plan.c, the layout the executor
 * allocates: f32 states, the bf16 KV cache, activations and the prefill workspaces at its prefill chunk, 512) +
 * the 16 MiB staging chunk on integrated GPUs (platform/device_policy.h: weights are read into device memory and
 * not held twice). Not counted: the code the CUDA libraries keep resident once loaded (the executor measures it
 * at load on the device; tens of MB). Max context: the largest context (up to the 16M-token option limit) whose
 * need still fits the usable memory; a model without attention layers has no KV cache, so any context fits. Usable memory: the module's DRAM less what the OS keeps (Orin Nano 8GB: ~5.2 GB usable;
 * Thor 128GB: ~122 GB visible to CUDA; edge.md) or HBM less 1 GiB of context on discrete GPUs. On a live
 * Jetson (--live, automatic when /etc/nv_tegra_release exists) the plan is also checked against
 * /proc/meminfo MemAvailable, which is what an integrated GPU can really allocate (cudaMemGetInfo reports
 * MemFree and ignores the reclaimable page cache).
 *
 *   em-plan -m model.emb [-c CONTEXT] [-b BATCH] [-d PROFILE] [--roofline F] [--live] [--meminfo FILE] [--tsv]
 *
 * Only the header and tensor table are read (the blob is mapped, the CPU backend opens it; no device is used).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dev_plan.h"
#include "device_policy.h"
#include "edgemamba.h"
#include "model.h"
#include "session.h" /* EM_MAX_CONTEXT_OPTION */

#define EM_PLAN_CUDA_CHUNK 512u           /* the CUDA backend's default prefill chunk (runtime/session.c) */
#define EM_PLAN_ROOFLINE_H100 0.892       /* docs/benchmarks.md, 2026-11-23 (second session), commit a7c69f0, H100 */
#define EM_PLAN_GIB (1024.0 * 1024.0 * 1024.0)

/* Device profiles. Sources (../shared/reference/edge.md, section 1, and NVIDIA datasheets):
 *   Orin Nano 8GB: 128-bit LPDDR5, 68 GB/s (DS-11105-001); 102 GB/s with the Super mode (JetPack 6.2 devkit
 *     guide); ~5.2 GB usable after the OS (a published Orin Nano benchmark; desktop enabled).
 *   Orin NX 16GB: 128-bit LPDDR5, 102 GB/s (DS-10712-001).
 *   AGX Orin 32GB / 64GB: 256-bit LPDDR5, 204.8 GB/s (DS-10662-001).
 *   AGX Thor T5000: 128 GB 256-bit LPDDR5X, 273 GB/s (NVIDIA launch blog); ~122 GB visible to CUDA.
 *   H100 SXM5 80GB: HBM3 3.35 TB/s (datasheet); measured read 3034-3064 GB/s (docs/benchmarks.md).
 *   H200 SXM 141GB: HBM3e 4.8 TB/s (datasheet).
 * OS reserve of the Orin NX / AGX modules: the Nano's 2.8 GB (8 GiB - 5.2 GB) assumed, the same L4T image. */
typedef struct em_device_profile {
    const char *name;
    const char *desc;
    int integrated;
    double mem_bytes;     /* DRAM of the module / HBM of the card */
    double usable_bytes;  /* what a process can plan for */
    double peak_gbps;     /* datasheet bandwidth, GB/s (1e9 B/s) */
    double read_eff;      /* measured (or assumed) read bandwidth / peak */
} em_device_profile;

#define ORIN_OS_RESERVE (8.0 * EM_PLAN_GIB - 5.2e9)
#define JETSON_EFF (156.0 / 204.8)
#define H100_EFF (3052.0 / 3352.0)
static const em_device_profile PROFILES[] = {
    { "orin-nano-8gb", "Jetson Orin Nano 8GB", 1, 8 * EM_PLAN_GIB, 5.2e9, 68.0, JETSON_EFF },
    { "orin-nano-8gb-super", "Jetson Orin Nano 8GB, Super mode", 1, 8 * EM_PLAN_GIB, 5.2e9, 102.0, JETSON_EFF },
    { "orin-nx-16gb", "Jetson Orin NX 16GB", 1, 16 * EM_PLAN_GIB, 16 * EM_PLAN_GIB - ORIN_OS_RESERVE, 102.0, JETSON_EFF },
    { "agx-orin-32gb", "Jetson AGX Orin 32GB", 1, 32 * EM_PLAN_GIB, 32 * EM_PLAN_GIB - ORIN_OS_RESERVE, 204.8, JETSON_EFF },
    { "agx-orin-64gb", "Jetson AGX Orin 64GB", 1, 64 * EM_PLAN_GIB, 64 * EM_PLAN_GIB - ORIN_OS_RESERVE, 204.8, JETSON_EFF },
    { "thor-128gb", "Jetson AGX Thor T5000 128GB", 1, 128 * EM_PLAN_GIB, 122e9, 273.0, JETSON_EFF },
    { "h100-80gb", "H100 SXM5 80GB", 0, 80 * EM_PLAN_GIB, 79 * EM_PLAN_GIB, 3352.0, H100_EFF },
    { "h200-141gb", "H200 SXM 141GB", 0, 141e9, 141e9 - EM_PLAN_GIB, 4800.0, H100_EFF },
};
#define N_PROFILES (sizeof PROFILES / sizeof PROFILES[0])

static void usage(FILE *f) {
    fprintf(f,
            "usage: em-plan -m MODEL.emb [options]\n"
            "  -m, --model FILE     the blob\n"
            "  -c, --context N      tokens of context planned (KV of attention layers; default 4096)\n"
            "  -b, --batch B        sequences decoded together, one session each (default 1)\n"
            "  -d, --device NAME    one profile (default: all); --list shows them\n"
            "  --roofline F         fraction of the measured read bandwidth decode reaches (default %.3f, H100)\n"
            "  --live               also check against this machine's MemAvailable (default on a Jetson)\n"
            "  --meminfo FILE       read MemAvailable from FILE instead of /proc/meminfo (implies --live)\n"
            "  --tsv                tab-separated output (one header line, one line per profile)\n"
            "  --list               list the device profiles\n",
            EM_PLAN_ROOFLINE_H100);
}

/* MemAvailable in bytes from a meminfo file; 0 if absent. */
static double meminfo_available(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[256];
    double kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024.0;
}

typedef struct plan_numbers {
    double weights, embd, embd_row, session, state, kv, stream_bytes, per_seq_bytes;
} plan_numbers;


/* What a device profile needs at a context: weights + batch sessions (the CUDA block) + extra (em_context_fit). */
typedef struct profile_need { const em_model *model; double weights, batch, extra; } profile_need;
static double profile_need_at(const void *user, uint32_t context) {
    const profile_need *p = user;
    em_dev_layout l;
    em_dev_layout_compute(p->model, EM_PLAN_CUDA_CHUNK, context, &l);
    return p->weights + p->batch * (double)l.total + p->extra;
}

static int compute(em_model *model, uint32_t context, plan_numbers *pn) {
    em_session_options so = em_session_default_options();
    so.max_context = context;
    so.max_batch = 1;
    so.max_prefill_chunk = EM_PLAN_CUDA_CHUNK;
    em_plan_report r;
    em_status s = em_plan(model, &so, &r);
    if (s != EM_OK && s != EM_ERR_PLAN_TOO_LARGE) { /* too large for THIS host is not our question */
        fprintf(stderr, "em-plan: %s\n", em_last_error());
        return 1;
    }
    memset(pn, 0, sizeof *pn);
    em_dev_layout l; /* the device's session, not this host's CPU one (f32 KV, no GEMM workspace) */
    em_dev_layout_compute(model, EM_PLAN_CUDA_CHUNK, context, &l);
    pn->weights = (double)r.weight_bytes;
    pn->session = (double)l.total;
    pn->state = (double)r.state_bytes; /* the f32 conv + SSM states, as on the CPU */
    pn->kv = (double)l.kv_bytes;       /* bf16 K and V */
    int e = em_blob_find(&model->blob, "embd");
    if (e < 0) { fprintf(stderr, "em-plan: the blob has no embd tensor\n"); return 1; }
    const em_blob_tensor *t = &model->blob.tensors[e];
    pn->embd = (double)t->size;
    pn->embd_row = t->shape[0] ? (double)t->size / (double)t->shape[0] : 0;
    if (t->scale_index >= 0) pn->embd_row += 4; /* an INT8 row's scale */
    const int tied = (model->cfg.flags & EM_CFG_TIED_EMBEDDINGS) != 0;
    /* read once per step for every sequence: every weight but the embedding table (plus it again as the head
     * when tied); read per sequence: its embedding row, its state (read and written), its KV at full context */
    pn->stream_bytes = pn->weights - pn->embd + (tied ? pn->embd : 0);
    pn->per_seq_bytes = pn->embd_row + 2 * pn->state + pn->kv;
    return 0;
}

int em_plan_tool_main(int argc, char **argv, FILE *out);
int em_plan_tool_main(int argc, char **argv, FILE *out) {
    const char *path = NULL, *device = NULL, *meminfo = NULL;
    long context = 4096, batch = 1;
    double roofline = EM_PLAN_ROOFLINE_H100;
    int tsv = 0, live = access("/etc/nv_tegra_release", F_OK) == 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) path = argv[++i];
        else if ((!strcmp(a, "-c") || !strcmp(a, "--context")) && v) context = strtol(argv[++i], NULL, 10);
        else if ((!strcmp(a, "-b") || !strcmp(a, "--batch")) && v) batch = strtol(argv[++i], NULL, 10);
        else if ((!strcmp(a, "-d") || !strcmp(a, "--device")) && v) device = argv[++i];
        else if (!strcmp(a, "--roofline") && v) roofline = strtod(argv[++i], NULL);
        else if (!strcmp(a, "--meminfo") && v) { meminfo = argv[++i]; live = 1; }
        else if (!strcmp(a, "--live")) live = 1;
        else if (!strcmp(a, "--tsv")) tsv = 1;
        else if (!strcmp(a, "--list")) {
            for (size_t p = 0; p < N_PROFILES; p++)
                fprintf(out, "%-20s %-32s %6.1f GiB %8.1f GB/s %s\n", PROFILES[p].name, PROFILES[p].desc,
                        PROFILES[p].mem_bytes / EM_PLAN_GIB, PROFILES[p].peak_gbps,
                        PROFILES[p].integrated ? "integrated" : "discrete");
            return 0;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(out); return 0; }
        else { fprintf(stderr, "em-plan: unknown or incomplete option '%s'\n", a); usage(stderr); return 2; }
    }
    if (!path) { usage(stderr); return 2; }
    if (context < 1 || context > (1L << 24)) { fprintf(stderr, "em-plan: --context %ld is out of range (1..%ld)\n", context, 1L << 24); return 2; }
    if (batch < 1 || batch > 4096) { fprintf(stderr, "em-plan: --batch %ld is out of range (1..4096)\n", batch); return 2; }
    if (!(roofline > 0 && roofline <= 1)) { fprintf(stderr, "em-plan: --roofline must be in (0, 1]\n"); return 2; }
    const em_device_profile *only = NULL;
    if (device) {
        for (size_t p = 0; p < N_PROFILES; p++)
            if (!strcmp(device, PROFILES[p].name)) only = &PROFILES[p];
        if (!only) { fprintf(stderr, "em-plan: unknown device '%s' (em-plan --list)\n", device); return 2; }
    }

    em_model_options mo = em_model_default_options();
    mo.backend = EM_BACKEND_CPU; /* only the tables are read: no device needed, none touched */
    em_model *model = NULL;
    if (em_model_open(path, &mo, &model) != EM_OK) { fprintf(stderr, "em-plan: %s\n", em_last_error()); return 1; }
    plan_numbers pn;
    if (compute(model, (uint32_t)context, &pn) != 0) { em_model_close(model); return 1; }
    em_model_info info;
    em_model_get_info(model, &info);
    const int has_attn = model->n_attn > 0;

    const double B = (double)batch, step_bytes = pn.stream_bytes + B * pn.per_seq_bytes; /* B tokens per step */
    if (tsv)
        fprintf(out, "profile\tintegrated\tmem_bytes\tusable_bytes\tneed_bytes\tfits\tpeak_gbps\tread_eff\troofline"
                     "\tbytes_per_step\tceiling_tok_s\tprojected_tok_s\tmax_context\n");
    else {
        fprintf(out, "%s: %s, %u layers '%s', weights %.3f GB, session %.3f MB (context %ld, chunk %u), batch %ld\n",
                path, info.name, info.n_layer, info.layer_pattern, pn.weights / 1e9, pn.session / 1e6, context,
                EM_PLAN_CUDA_CHUNK, batch);
        fprintf(out, "bytes per decode step: %.0f (weights streamed %.0f + %ld x %.0f per sequence: embedding row, "
                     "state read+written %.0f, KV at full context %.0f)\n",
                step_bytes, pn.stream_bytes, batch, pn.per_seq_bytes, 2 * pn.state, pn.kv);
        fprintf(out, "projection: %.1f %% of the read bandwidth (H100-measured roofline fraction) x read efficiency\n\n",
                100 * roofline);
        fprintf(out, "%-20s %9s %9s %9s %4s %9s %6s %12s %12s %12s\n", "device", "module", "usable", "needs", "fits",
                "GB/s", "eff", "ceiling tok/s", "projected", "max context");
    }
    for (size_t p = 0; p < N_PROFILES; p++) {
        const em_device_profile *d = &PROFILES[p];
        if (only && only != d) continue;
        const double need = pn.weights + B * pn.session + (d->integrated ? (double)EM_WEIGHT_CHUNK_DEFAULT : 0);
        const int fits = need <= d->usable_bytes;
        const double ceiling = B * d->peak_gbps * 1e9 / step_bytes;
        const double projected = roofline * d->read_eff * ceiling;
        const profile_need pneed = { model, pn.weights, B, d->integrated ? (double)EM_WEIGHT_CHUNK_DEFAULT : 0 };
        const uint32_t max_ctx = em_context_fit(profile_need_at, &pneed, EM_MAX_CONTEXT_OPTION, d->usable_bytes);
        char ctx_txt[32];
        if (!has_attn && max_ctx) snprintf(ctx_txt, sizeof ctx_txt, "any");
        else snprintf(ctx_txt, sizeof ctx_txt, "%u", max_ctx);
        if (tsv)
            fprintf(out, "%s\t%d\t%.0f\t%.0f\t%.0f\t%d\t%.1f\t%.4f\t%.4f\t%.0f\t%.6g\t%.6g\t%u\n", d->name,
                    d->integrated, d->mem_bytes, d->usable_bytes, need, fits, d->peak_gbps, d->read_eff, roofline,
                    step_bytes, ceiling, projected, max_ctx);
        else
            fprintf(out, "%-20s %5.0f GiB %6.1f GB %6.2f GB %4s %9.1f %5.0f%% %13.1f %12.1f %12s\n", d->name,
                    d->mem_bytes / EM_PLAN_GIB, d->usable_bytes / 1e9, need / 1e9, fits ? "yes" : "NO", d->peak_gbps,
                    100 * d->read_eff, ceiling, projected, ctx_txt);
    }
    if (live) {
        const double avail = meminfo_available(meminfo ? meminfo : "/proc/meminfo");
        const double need = pn.weights + B * pn.session + (double)EM_WEIGHT_CHUNK_DEFAULT;
        if (tsv)
            fprintf(out, "live\t1\t0\t%.0f\t%.0f\t%d\t0\t0\t%.4f\t%.0f\t0\t0\n", avail, need, avail > 0 && need <= avail,
                    roofline, step_bytes);
        else if (avail > 0)
            fprintf(out, "\nthis machine: MemAvailable %.2f GB, the plan needs %.2f GB (weights read into device memory, "
                         "page cache dropped): %s\n", avail / 1e9, need / 1e9, need <= avail ? "fits" : "does NOT fit");
        else
            fprintf(out, "\nthis machine: no MemAvailable in %s\n", meminfo ? meminfo : "/proc/meminfo");
    }
    em_model_close(model);
    return 0;
}

#ifndef EM_PLAN_TOOL_NO_MAIN
int main(int argc, char **argv) { return em_plan_tool_main(argc, argv, stdout); }
#endif
