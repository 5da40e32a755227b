/*
 * replay.c — a main() for the fuzz targets when they are built without libFuzzer (gcc, the normal and ASan
 * builds): runs LLVMFuzzerTestOneInput once on every file named on the command line or found (sorted) in a
 * directory named there, each read into a buffer of its exact size so that ASan sees any over-read. The
 * ctest tests of label `fuzz` (tests/fuzz.cmake) replay fuzz/corpus/<target>/ this way; a crash, a sanitizer
 * report or a failed invariant fails the test. An empty corpus also fails: a replay of nothing proves nothing.
 *
 *   build/cpu/fuzz_blob fuzz/corpus/blob            # replay a corpus
 *   build/cpu/fuzz_blob crash-1234                  # or one input a fuzzer found
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "replay: cannot open %s\n", path); return -1; }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || (n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n)) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        fclose(f);
        free(buf);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    long ran = 0;
    LLVMFuzzerTestOneInput((const uint8_t *)"", 0); /* the empty input, always */
    for (int a = 1; a < argc; a++) {
        struct stat st;
        if (stat(argv[a], &st) != 0) { fprintf(stderr, "replay: %s does not exist\n", argv[a]); return 1; }
        if (!S_ISDIR(st.st_mode)) {
            if (run_file(argv[a]) != 0) return 1;
            ran++;
            continue;
        }
        DIR *d = opendir(argv[a]);
        if (!d) { fprintf(stderr, "replay: cannot list %s\n", argv[a]); return 1; }
        char **names = NULL;
        size_t n = 0, cap = 0;
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 64;
                char **nn = realloc(names, cap * sizeof *names);
                if (!nn) { fprintf(stderr, "replay: out of memory\n"); return 1; }
                names = nn;
            }
            size_t len = strlen(argv[a]) + strlen(e->d_name) + 2;
            names[n] = malloc(len);
            snprintf(names[n], len, "%s/%s", argv[a], e->d_name);
            n++;
        }
        closedir(d);
        qsort(names, n, sizeof *names, cmp_str);
        for (size_t i = 0; i < n; i++) {
            if (run_file(names[i]) != 0) return 1;
            ran++;
            free(names[i]);
        }
        free(names);
    }
    printf("replay %s: %ld inputs ran without a crash\n", argv[0], ran);
    if (ran == 0) { fprintf(stderr, "replay: no inputs (an empty corpus proves nothing)\n"); return 1; }
    return 0;
}
