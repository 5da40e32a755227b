/*
 * safetensors.c — see safetensors.h. The format: u64 little-endian N, then N bytes of JSON
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}, then the
 * data area; offsets are relative to the data area. Everything in the header is untrusted: every number is
 * checked to be an integer in range before use and every sum/product is overflow-checked, so a damaged or
 * hostile file gets EM_ERR_FORMAT with the file and tensor named, never a read outside the mapping.
 */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

typedef struct st_file {
    char *path;                /* as opened (messages) */
    void *map;                 /* our mapping, or NULL for caller memory */
    uint64_t map_size;
} st_file;

struct em_st {
    st_file *files;
    uint32_t n_files, cap_files;
    em_st_tensor *t;           /* sorted by name once opening is complete */
    size_t n, cap;
};

// ---- small helpers ---------------------------------------------------------------------------------

static const struct { const char *name; em_st_dtype dt; size_t size; } st_dtypes[] = {
    {"F32", EM_ST_F32, 4}, {"BF16", EM_ST_BF16, 2}, {"F16", EM_ST_F16, 2},
    {"F64", EM_ST_F64, 8}, {"I32", EM_ST_I32, 4}, {"I64", EM_ST_I64, 8},
};
#define ST_N_DTYPES (sizeof st_dtypes / sizeof st_dtypes[0])

size_t em_st_dtype_size(em_st_dtype dt) {
    for (size_t i = 0; i < ST_N_DTYPES; i++) if (st_dtypes[i].dt == dt) return st_dtypes[i].size;
    return 0;
}

const char *em_st_dtype_name(em_st_dtype dt) {
    for (size_t i = 0; i < ST_N_DTYPES; i++) if (st_dtypes[i].dt == dt) return st_dtypes[i].name;
    return "?";
}

char *em_st_shape_str(const uint64_t *shape, uint32_t n_dims, char *buf, size_t cap) {
    size_t o = 0;
    if (cap == 0) return buf;
    buf[0] = 0;
    o += (size_t)snprintf(buf, cap, "[");
    for (uint32_t i = 0; i < n_dims && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%llu", i ? ", " : "", (unsigned long long)shape[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
    return buf;
}

/* A JSON number that is an exact non-negative integer <= 2^53 (the doubles that hold integers exactly). */
static int json_u64(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0) || d > 9007199254740992.0) return 0;   /* also rejects NaN */
    uint64_t u = (uint64_t)d;
    if ((double)u != d) return 0;                           /* 1.5 */
    *out = u;
    return 1;
}

/* Registers a file (its path is kept for messages: every tensor points at it). */
static em_status st_add_file(em_st *st, const char *path, void *map, uint64_t size, uint32_t *index) {
    if (st->n_files == st->cap_files) {
        uint32_t cap = st->cap_files ? 2 * st->cap_files : 4;
        st_file *f = realloc(st->files, cap * sizeof *f);
        if (!f) return em_fail(EM_ERR_OUT_OF_MEMORY, "safetensors: out of memory");
        st->files = f;
        st->cap_files = cap;
    }
    st_file *f = &st->files[st->n_files];
    f->path = strdup(path);
    if (!f->path) return em_fail(EM_ERR_OUT_OF_MEMORY, "safetensors: out of memory");
    f->map = map;
    f->map_size = size;
    *index = st->n_files++;
    return EM_OK;
}

/* Appends a zeroed tensor record (the table grows by doubling; it is sorted once, at the end). */
static em_status st_push(em_st *st, em_st_tensor **out) {
    if (st->n == st->cap) {
        size_t cap = st->cap ? 2 * st->cap : 64;
        em_st_tensor *t = realloc(st->t, cap * sizeof *t);
        if (!t) return em_fail(EM_ERR_OUT_OF_MEMORY, "safetensors: out of memory");
        st->t = t;
        st->cap = cap;
    }
    *out = &st->t[st->n++];
    memset(*out, 0, sizeof **out);
    return EM_OK;
}

// ---- one file's header -----------------------------------------------------------------------------

/* A tensor's byte range in its file's data area, for the overlap check. */
typedef struct st_range { uint64_t begin, end; size_t idx; } st_range;

static int st_range_cmp(const void *a, const void *b) {
    const st_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Decodes one tensor entry of the header into *t (name and file set by the caller). */
static em_status st_parse_entry(const cJSON *e, const char *path, const char *name, const uint8_t *data,
                                uint64_t data_size, em_st_tensor *t) {
    if (!cJSON_IsObject(e))
        return em_fail(EM_ERR_FORMAT, "safetensors %s: tensor %s: entry is not a JSON object", path, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(jd) || !cJSON_IsArray(js) || !cJSON_IsArray(jo))
        return em_fail(EM_ERR_FORMAT, "safetensors %s: tensor %s: needs string \"dtype\", array \"shape\" and array "
                       "\"data_offsets\"", path, name);

    /* dtype: one of the six the packer can read; anything else (F8, U8, BOOL, ...) is refused by name */
    size_t esize = 0;
    for (size_t i = 0; i < ST_N_DTYPES; i++)
        if (!strcmp(jd->valuestring, st_dtypes[i].name)) { t->dtype = st_dtypes[i].dt; esize = st_dtypes[i].size; }
    if (!esize)
        return em_fail(EM_ERR_FORMAT, "safetensors %s: tensor %s: unknown or unsupported dtype \"%.32s\" (known: F32, "
                       "BF16, F16, F64, I32, I64)", path, name, jd->valuestring);

    /* shape: at most EM_ST_MAX_DIMS exact integers; the element and byte counts are overflow-checked */
    int nd = cJSON_GetArraySize(js);
    if (nd < 0 || (uint32_t)nd > EM_ST_MAX_DIMS)
        return em_fail(EM_ERR_FORMAT, "safetensors %s: tensor %s: %d dims (at most %u)", path, name, nd,
                       EM_ST_MAX_DIMS);
    t->n_dims = (uint32_t)nd;
    uint64_t n = 1;
    int d = 0;
    for (const cJSON *v = js->child; v; v = v->next, d++) {
        if (!json_u64(v, &t->shape[d]))
            return em_fail(EM_ERR_FORMAT, "safetensors %s: tensor %s: shape[%d] is not a non-negative integer", path,
                           name, d);
        if (!em_mul_u64(n, t->shape[d], &n))
            return em_fail(EM_ERR_FORMAT, "safetensors %s: tensor %s: shape product overflows", path, name);
    }
    t->n_elems = n;
    if (!em_mul_u64(n, esize, &t->size))
        return em_fail(EM_ERR_FORMAT, "safetensors %s: tensor %s: byte size overflows", path, name);

    /* data_offsets: [begin, end) inside the data area, and exactly as long as the shape says */
    uint64_t begin, end;
    if (cJSON_GetArraySize(jo) != 2 || !json_u64(jo->child, &begin) || !json_u64(jo->child->next, &end))
        return em_fail(EM_ERR_FORMAT, "safetensors %s: tensor %s: data_offsets must be two non-negative integers",
                       path, name);
    if (begin > end)
        return em_fail(EM_ERR_FORMAT, "safetensors %s: tensor %s: data_offsets [%llu, %llu] are not ordered", path,
                       name, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_size)
        return em_fail(EM_ERR_FORMAT, "safetensors %s: tensor %s: data_offsets [%llu, %llu] run past the data area "
                       "(%llu bytes)", path, name, (unsigned long long)begin, (unsigned long long)end,
                       (unsigned long long)data_size);
    if (end - begin != t->size) {
        char sh[160];
        return em_fail(EM_ERR_FORMAT, "safetensors %s: tensor %s: %s %s needs %llu bytes but data_offsets hold %llu",
                       path, name, jd->valuestring, em_st_shape_str(t->shape, t->n_dims, sh, sizeof sh),
                       (unsigned long long)t->size, (unsigned long long)(end - begin));
    }
    t->data = data + begin;
    return EM_OK;
}

/* Parses the header of one whole file [bytes, bytes+size) and appends its tensors. */
static em_status st_parse(em_st *st, uint32_t file, const uint8_t *bytes, uint64_t size) {
    const char *path = st->files[file].path;
    if (size < 8)
        return em_fail(EM_ERR_FORMAT, "safetensors %s: file is %llu bytes, too short for the header length", path,
                       (unsigned long long)size);
    uint64_t hlen = em_ld64(bytes);
    if (hlen > size - 8)
        return em_fail(EM_ERR_FORMAT, "safetensors %s: header length %llu runs past the end of the file (%llu bytes)",
                       path, (unsigned long long)hlen, (unsigned long long)size);
    if (hlen > EM_ST_MAX_HEADER || hlen < 2)
        return em_fail(EM_ERR_FORMAT, "safetensors %s: header length %llu is out of range (2 .. %llu)", path,
                       (unsigned long long)hlen, (unsigned long long)EM_ST_MAX_HEADER);

    /* cJSON wants a terminated string: copy the header (bounded by EM_ST_MAX_HEADER above). */
    char *text = malloc((size_t)hlen + 1);
    if (!text) return em_fail(EM_ERR_OUT_OF_MEMORY, "safetensors %s: no memory for the header", path);
    memcpy(text, bytes + 8, (size_t)hlen);
    text[hlen] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)hlen, &end, 0);
    if (!root) {
        size_t at = end && end >= text && end <= text + hlen ? (size_t)(end - text) : 0;
        free(text);
        return em_fail(EM_ERR_FORMAT, "safetensors %s: header is not valid JSON (error near byte %zu)", path, at);
    }
    /* The spec pads the header with spaces; anything else after the object is damage. */
    for (const char *p = end; p && p < text + hlen; p++) {
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
            cJSON_Delete(root);
            free(text);
            return em_fail(EM_ERR_FORMAT, "safetensors %s: trailing bytes after the JSON header", path);
        }
    }
    free(text);

    /* Every entry but __metadata__ is a tensor; its record points into this file's data area. */
    em_status s = EM_OK;
    size_t first = st->n;
    const uint8_t *data = bytes + 8 + hlen;
    uint64_t data_size = size - 8 - hlen;
    if (!cJSON_IsObject(root)) {
        s = em_fail(EM_ERR_FORMAT, "safetensors %s: header is not a JSON object", path);
        goto done;
    }
    for (const cJSON *e = root->child; e; e = e->next) {
        const char *name = e->string ? e->string : "";
        if (!strcmp(name, "__metadata__")) {
            if (!cJSON_IsObject(e)) {
                s = em_fail(EM_ERR_FORMAT, "safetensors %s: __metadata__ is not an object", path);
                goto done;
            }
            continue;
        }
        if (!name[0]) { s = em_fail(EM_ERR_FORMAT, "safetensors %s: a tensor has an empty name", path); goto done; }
        em_st_tensor *t = NULL;
        if ((s = st_push(st, &t)) != EM_OK) goto done;
        t->file = path;
        if (!(t->name = strdup(name))) {
            st->n--;
            s = em_fail(EM_ERR_OUT_OF_MEMORY, "safetensors: out of memory");
            goto done;
        }
        if ((s = st_parse_entry(e, path, name, data, data_size, t)) != EM_OK) goto done;
    }

    /* No two tensors of this file may share bytes: sort their ranges and compare neighbours. */
    size_t cnt = st->n - first;
    if (cnt > 1) {
        st_range *r = malloc(cnt * sizeof *r);
        if (!r) { s = em_fail(EM_ERR_OUT_OF_MEMORY, "safetensors: out of memory"); goto done; }
        for (size_t i = 0; i < cnt; i++) {
            const em_st_tensor *t = &st->t[first + i];
            r[i].begin = (uint64_t)(t->data - data);
            r[i].end = r[i].begin + t->size;
            r[i].idx = first + i;
        }
        qsort(r, cnt, sizeof *r, st_range_cmp);
        for (size_t i = 1; i < cnt && s == EM_OK; i++)
            if (r[i].begin < r[i - 1].end && r[i].begin != r[i].end && r[i - 1].begin != r[i - 1].end)
                s = em_fail(EM_ERR_FORMAT, "safetensors %s: tensors %s [%llu, %llu) and %s [%llu, %llu) overlap", path,
                            st->t[r[i - 1].idx].name, (unsigned long long)r[i - 1].begin,
                            (unsigned long long)r[i - 1].end, st->t[r[i].idx].name, (unsigned long long)r[i].begin,
                            (unsigned long long)r[i].end);
        free(r);
    }
done:
    cJSON_Delete(root);
    return s;
}

// ---- files and mappings -----------------------------------------------------------------------------

/* Maps path read-only, registers it and parses its header. */
static em_status st_open_file(em_st *st, const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return em_fail(errno == ENOENT ? EM_ERR_NOT_FOUND : EM_ERR_IO, "safetensors %s: cannot open: %s", path,
                       strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return em_fail(EM_ERR_IO, "safetensors %s: not a regular file", path);
    }
    uint64_t size = (uint64_t)sb.st_size;
    void *map = NULL;
    if (size > 0) {
        map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            int e = errno;
            close(fd);
            return em_fail(EM_ERR_IO, "safetensors %s: mmap of %llu bytes failed: %s", path, (unsigned long long)size,
                           strerror(e));
        }
        posix_madvise(map, (size_t)size, POSIX_MADV_SEQUENTIAL);  /* each tensor is read once, front to back */
    }
    close(fd);
    uint32_t fi = 0;
    em_status s = st_add_file(st, path, map, size, &fi);
    if (s != EM_OK) {
        if (map) munmap(map, (size_t)size);
        return s;
    }
    return st_parse(st, fi, map ? map : (const void *)"", size);
}

/* Tensors sort by name: em_st_find is a binary search and iteration order is stable across runs. */
static int st_name_cmp(const void *a, const void *b) {
    return strcmp(((const em_st_tensor *)a)->name, ((const em_st_tensor *)b)->name);
}

/* Sorts by name and rejects duplicates (within a file: a repeated JSON key; across shards: a clash). */
static em_status st_finish(em_st *st) {
    if (st->n > 1) qsort(st->t, st->n, sizeof *st->t, st_name_cmp);
    for (size_t i = 1; i < st->n; i++)
        if (!strcmp(st->t[i].name, st->t[i - 1].name))
            return em_fail(EM_ERR_FORMAT, "safetensors %s: tensor %s appears twice (also in %s)", st->t[i].file,
                           st->t[i].name, st->t[i - 1].file);
    return EM_OK;
}

/* dir + "/" + name in a new heap string (no doubled '/'). */
static char *st_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t o = a;
    if (a && dir[a - 1] != '/') p[o++] = '/';
    memcpy(p + o, name, b + 1);
    return p;
}

em_status em_pack_read_file(const char *path, uint64_t max, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return em_fail(errno == ENOENT ? EM_ERR_NOT_FOUND : EM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) { fclose(f); return em_fail(EM_ERR_IO, "%s: cannot seek", path); }
    long sz = ftell(f);
    if (sz < 0) { fclose(f); return em_fail(EM_ERR_IO, "%s: cannot tell size", path); }
    if ((uint64_t)sz > max) {
        fclose(f);
        return em_fail(EM_ERR_FORMAT, "%s: %ld bytes, larger than the %llu allowed", path, sz, (unsigned long long)max);
    }
    rewind(f);
    char *buf = malloc((size_t)sz + 1);
    if (!buf) { fclose(f); return em_fail(EM_ERR_OUT_OF_MEMORY, "%s: no memory for %ld bytes", path, sz); }
    size_t got = fread(buf, 1, (size_t)sz, f);
    fclose(f);
    if (got != (size_t)sz) { free(buf); return em_fail(EM_ERR_IO, "%s: short read", path); }
    buf[got] = 0;
    *out = buf;
    *len = got;
    return EM_OK;
}

/* A sharded checkpoint: {"weight_map": {"tensor": "model-00001-of-00002.safetensors", ...}}. */
static em_status st_open_index(em_st *st, const char *index_path) {
    char *text = NULL;
    size_t len = 0;
    EM_TRY(em_pack_read_file(index_path, EM_ST_MAX_HEADER, &text, &len));
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) return em_fail(EM_ERR_FORMAT, "safetensors index %s: not valid JSON", index_path);

    /* Shards are looked up beside the index, whatever the working directory. */
    em_status s = EM_OK;
    char *dir = strdup(index_path);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!dir) { s = em_fail(EM_ERR_OUT_OF_MEMORY, "out of memory"); goto done; }
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0; else strcpy(dir, ".");
    if (!cJSON_IsObject(wm) || !wm->child) {
        s = em_fail(EM_ERR_FORMAT, "safetensors index %s: no \"weight_map\" object", index_path);
        goto done;
    }
    /* Open every distinct shard once (shard names are plain file names: no directories). */
    for (const cJSON *e = wm->child; e && s == EM_OK; e = e->next) {
        if (!cJSON_IsString(e) || !e->valuestring[0] || strchr(e->valuestring, '/') || !strcmp(e->valuestring, "..")
            || !strcmp(e->valuestring, ".")) {
            s = em_fail(EM_ERR_FORMAT, "safetensors index %s: tensor %s: shard file name must be a plain file name",
                        index_path, e->string ? e->string : "?");
            break;
        }
        int seen = 0;
        for (const cJSON *p = wm->child; p != e && !seen; p = p->next) seen = !strcmp(p->valuestring, e->valuestring);
        if (seen) continue;
        char *shard = st_join(dir, e->valuestring);
        if (!shard) { s = em_fail(EM_ERR_OUT_OF_MEMORY, "out of memory"); break; }
        s = st_open_file(st, shard);
        free(shard);
    }
    if (s == EM_OK) s = st_finish(st);
    /* Every tensor the index names must sit in the shard it names. */
    for (const cJSON *e = wm->child; e && s == EM_OK; e = e->next) {
        const em_st_tensor *t = em_st_find(st, e->string);
        const char *base = t ? strrchr(t->file, '/') : NULL;
        base = base ? base + 1 : (t ? t->file : NULL);
        if (!t || strcmp(base, e->valuestring))
            s = em_fail(EM_ERR_FORMAT, "safetensors index %s: tensor %s is mapped to %s, which does not hold it",
                        index_path, e->string, e->valuestring);
    }
done:
    free(dir);
    cJSON_Delete(root);
    return s;
}

/* Whether s ends with suffix (".json": the caller named an index file). */
static int st_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

// ---- public --------------------------------------------------------------------------------------------

em_status em_st_open(const char *path, em_st **out) {
    if (!path || !out) return em_fail(EM_ERR_INVALID_ARG, "em_st_open: NULL argument");
    *out = NULL;
    em_st *st = calloc(1, sizeof *st);
    if (!st) return em_fail(EM_ERR_OUT_OF_MEMORY, "safetensors: out of memory");

    em_status s;
    struct stat sb;
    if (stat(path, &sb) != 0) {
        s = em_fail(errno == ENOENT ? EM_ERR_NOT_FOUND : EM_ERR_IO, "%s: %s", path, strerror(errno));
    } else if (S_ISDIR(sb.st_mode)) {
        /* A directory: the index when there is one, else the single file. */
        char *idx = st_join(path, "model.safetensors.index.json");
        char *one = st_join(path, "model.safetensors");
        if (!idx || !one) s = em_fail(EM_ERR_OUT_OF_MEMORY, "out of memory");
        else if (access(idx, F_OK) == 0) s = st_open_index(st, idx);
        else if (access(one, F_OK) == 0) { s = st_open_file(st, one); if (s == EM_OK) s = st_finish(st); }
        else s = em_fail(EM_ERR_NOT_FOUND, "%s: holds neither model.safetensors nor model.safetensors.index.json",
                         path);
        free(idx);
        free(one);
    } else if (st_ends_with(path, ".json")) {
        s = st_open_index(st, path);
    } else {
        s = st_open_file(st, path);
        if (s == EM_OK) s = st_finish(st);
    }
    if (s != EM_OK) { em_st_close(st); return s; }
    *out = st;
    return EM_OK;
}

em_status em_st_open_memory(const void *bytes, uint64_t size, const char *label, em_st **out) {
    if ((!bytes && size) || !out) return em_fail(EM_ERR_INVALID_ARG, "em_st_open_memory: NULL argument");
    *out = NULL;
    em_st *st = calloc(1, sizeof *st);
    if (!st) return em_fail(EM_ERR_OUT_OF_MEMORY, "safetensors: out of memory");
    uint32_t fi = 0;
    em_status s = st_add_file(st, label ? label : "<memory>", NULL, 0, &fi);
    if (s == EM_OK) s = st_parse(st, fi, bytes ? bytes : (const void *)"", size);
    if (s == EM_OK) s = st_finish(st);
    if (s != EM_OK) { em_st_close(st); return s; }
    *out = st;
    return EM_OK;
}

void em_st_close(em_st *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n; i++) free((void *)st->t[i].name);
    for (uint32_t i = 0; i < st->n_files; i++) {
        if (st->files[i].map) munmap(st->files[i].map, (size_t)st->files[i].map_size);
        free(st->files[i].path);
    }
    free(st->t);
    free(st->files);
    free(st);
}

const em_st_tensor *em_st_find(const em_st *st, const char *name) {
    if (!st || !name) return NULL;
    size_t lo = 0, hi = st->n;
    while (lo < hi) {   /* binary search over the name-sorted table */
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->t[mid].name);
        if (!c) return &st->t[mid];
        if (c < 0) hi = mid; else lo = mid + 1;
    }
    return NULL;
}

size_t em_st_count(const em_st *st) { return st ? st->n : 0; }
const em_st_tensor *em_st_at(const em_st *st, size_t i) { return st && i < st->n ? &st->t[i] : NULL; }
size_t em_st_index(const em_st *st, const em_st_tensor *t) { return (size_t)(t - st->t); }
