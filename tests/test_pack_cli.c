/*
 * test_pack_cli.c — the em-pack executable end to end: --help, --version, --random-init then --info (and
 * --info --verify), packing a checkpoint directory, and the error exits (status 1 with "em-pack: <message>"
 * naming the file). argv[1] is the em-pack binary (tests/pack.cmake passes $<TARGET_FILE:em-pack>).
 *
 * Run: ctest -R test_pack_cli (label blob).
 */
#include <sys/wait.h>

#include "test_pack_common.c"

/* Runs a shell command line; captures stdout+stderr (truncated to cap) and returns the exit status. */
static int run(const char *cmd, char *out, size_t cap) {
    char full[8192];
    tp_fmt(full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = 0, r;
    char sink[4096];
    while ((r = fread(n + 1 < cap ? out + n : sink, 1, n + 1 < cap ? cap - 1 - n : sizeof sink, p)) > 0)
        if (n + 1 < cap) n += r;
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define EXPECT(cmdline, want_rc, needle) do {                                                              \
    int rc_ = run(cmdline, out, sizeof out);                                                                \
    CHECK_MSG(rc_ == (want_rc) && strstr(out, needle) != NULL, "`%s` -> %d (want %d), output lacks \"%s\":\n%s", \
              cmdline, rc_, want_rc, needle, out);                                                           \
} while (0)

int main(int argc, char **argv) {
    if (argc < 2) em_test_skip("test_pack_cli", "needs the em-pack path as its argument");
    const char *bin = argv[1];
    static char out[1 << 16];
    char dir[4096], cmd[8192];
    tp_mkdtemp(dir, sizeof dir, "cli");

    tp_fmt(cmd, "'%s' --help", bin);
    EXPECT(cmd, 0, "--random-init");
    tp_fmt(cmd, "'%s' --version", bin);
    EXPECT(cmd, 0, "em-pack ");

    /* --random-init, then --info (header, config, strings, table) and --info --verify */
    tp_write_text(dir, "config.json",
                  "{\"model_type\": \"mamba2\", \"hidden_size\": 32, \"num_hidden_layers\": 2, \"vocab_size\": 100,"
                  " \"state_size\": 8, \"num_heads\": 4, \"head_dim\": 16, \"n_groups\": 1, \"expand\": 2}");
    tp_fmt(cmd, "'%s' --random-init '%s/config.json' -o '%s/r.emb' --seed 5", bin, dir, dir);
    EXPECT(cmd, 0, "21 tensors");
    tp_fmt(cmd, "'%s' --info '%s/r.emb'", bin, dir);
    EXPECT(cmd, 0, "l1.out_proj");
    CHECK(strstr(out, "d_model            32") && strstr(out, "layer_pattern") && strstr(out, "\"MM\""));
    CHECK(strstr(out, "[100, 32]") && strstr(out, "bf16") && strstr(out, "content_id"));
    tp_fmt(cmd, "'%s' --info '%s/r.emb' --verify", bin, dir);
    EXPECT(cmd, 0, "checksums verified");

    /* a checkpoint directory, f32, with the --out spelling */
    char ck[4200];
    tp_fmt(ck, "%s/ck", dir);
    mkdir(ck, 0700);
    tp_make_mamba2(ck, -1, 4);
    tp_fmt(cmd, "'%s' '%s' --out '%s/c.emb' --dtype f32", bin, ck, dir);
    EXPECT(cmd, 0, "em-pack: wrote");
    tp_fmt(cmd, "'%s' --info '%s/c.emb'", bin, dir);
    EXPECT(cmd, 0, "l0.A ");

    /* tokenizers: a SentencePiece .model wins over tokenizer.json beside it; --tokenizer names one explicitly */
    tp_write_text(ck, "tokenizer.model", "\x0a\x05hello");
    tp_write_text(ck, "tokenizer.json", "{\"model\": {}}");
    tp_fmt(cmd, "'%s' '%s' -o '%s/t.emb' && '%s' --info '%s/t.emb'", bin, ck, dir, bin, dir);
    EXPECT(cmd, 0, "tokenizer          sentencepiece, 7 bytes");
    tp_fmt(cmd, "'%s' --random-init '%s/config.json' -o '%s/t.emb' --tokenizer '%s/tokenizer.json' && "
                "'%s' --info '%s/t.emb'", bin, dir, dir, ck, bin, dir);
    EXPECT(cmd, 0, "tokenizer          bpe, 13 bytes");

    /* errors: exit 1 and a message naming the file / tensor */
    tp_make_mamba2(ck, 0, 4);
    tp_fmt(cmd, "'%s' '%s' -o '%s/bad.emb'", bin, ck, dir);
    EXPECT(cmd, 1, "tensor backbone.layers.0.mixer.in_proj.weight has shape [10, 16], expected [100, 16]");
    tp_fmt(cmd, "'%s' '%s/missing' -o '%s/bad.emb'", bin, dir, dir);
    EXPECT(cmd, 1, "missing: no such file or directory");
    tp_fmt(cmd, "'%s' --info '%s/config.json'", bin, dir);
    EXPECT(cmd, 1, "config.json");
    tp_fmt(cmd, "'%s' '%s' -o x.emb --dtype f16", bin, ck);
    EXPECT(cmd, 1, "unknown dtype f16");
    tp_fmt(cmd, "'%s' '%s'", bin, ck);
    EXPECT(cmd, 1, "no output file");
    tp_fmt(cmd, "'%s' --bogus", bin);
    EXPECT(cmd, 1, "unknown option --bogus");
    tp_fmt(cmd, "'%s' --random-init '%s/config.json' -o '%s/s.emb' --seed x1", bin, dir, dir);
    EXPECT(cmd, 1, "--seed x1");
    CHECK(!tp_exists("x.emb"));

    char sub[4300];
    tp_fmt(sub, "%s/ck", dir);
    tp_rm_rf(sub);
    tp_rm_rf(dir);
    return em_test_finish("test_pack_cli");
}
