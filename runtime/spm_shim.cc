/*
 * spm_shim.cc — the one C++ file: a C interface over sentencepiece::SentencePieceProcessor (Debian's
 * libsentencepiece-dev), so that the rest of the runtime stays C11. The model loads from memory
 * (LoadFromSerializedProto: the bytes of the blob's tokenizer section); encoding and decoding are the
 * library's own, so ids equal `spm_encode`'s (tests/test_tok_spm.c checks it).
 *
 * No exception crosses into C: every entry point catches and returns -1 with a message. The declarations
 * are in tokenizer.h.
 */
#include <sentencepiece_processor.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

extern "C" {
#include "tokenizer.h"
}

struct em_spm {
    sentencepiece::SentencePieceProcessor sp;
};

static void set_err(char *err, size_t cap, const char *what, const std::string &msg) {
    if (err && cap) std::snprintf(err, cap, "%s: %s", what, msg.c_str());
}

extern "C" int em_spm_load(const void *data, size_t size, em_spm **out, char *err, size_t err_cap) {
    *out = nullptr;
    try {
        em_spm *m = new em_spm();
        auto st = m->sp.LoadFromSerializedProto(std::string_view(static_cast<const char *>(data), size));
        if (!st.ok()) {
            set_err(err, err_cap, "sentencepiece model", st.ToString());
            delete m;
            return -1;
        }
        if (m->sp.GetPieceSize() <= 0) {
            set_err(err, err_cap, "sentencepiece model", "no pieces");
            delete m;
            return -1;
        }
        *out = m;
        return 0;
    } catch (const std::exception &e) {
        set_err(err, err_cap, "sentencepiece model", e.what());
    } catch (...) {
        set_err(err, err_cap, "sentencepiece model", "unknown C++ exception");
    }
    return -1;
}

extern "C" void em_spm_free(em_spm *m) { delete m; }

extern "C" int em_spm_size(const em_spm *m) { return m->sp.GetPieceSize(); }

extern "C" int em_spm_special_id(const em_spm *m, char which) {
    int id = -1;
    switch (which) {
    case 'b': id = m->sp.bos_id(); break;
    case 'e': id = m->sp.eos_id(); break;
    case 'u': id = m->sp.unk_id(); break;
    case 'p': id = m->sp.pad_id(); break;
    default: break;
    }
    return id >= 0 && id < m->sp.GetPieceSize() ? id : -1;
}

extern "C" const char *em_spm_piece(const em_spm *m, int id, size_t *len, em_spm_kind *kind) {
    const std::string &p = m->sp.IdToPiece(id);
    *len = p.size();
    if (m->sp.IsUnknown(id)) *kind = EM_SPM_UNKNOWN;
    else if (m->sp.IsControl(id)) *kind = EM_SPM_CONTROL;
    else if (m->sp.IsByte(id)) *kind = EM_SPM_BYTE;
    else if (m->sp.IsUnused(id)) *kind = EM_SPM_UNUSED;
    else *kind = EM_SPM_NORMAL; /* user-defined pieces print as written: the front treats them as normal */
    return p.c_str();
}

extern "C" int em_spm_find(const em_spm *m, const char *piece, size_t len) {
    try {
        int id = m->sp.PieceToId(std::string_view(piece, len));
        if (id < 0 || id >= m->sp.GetPieceSize()) return -1;
        if (id == m->sp.unk_id() && m->sp.IdToPiece(id) != std::string_view(piece, len)) return -1;
        return id;
    } catch (...) {
        return -1;
    }
}

extern "C" int em_spm_encode(const em_spm *m, const char *text, size_t len, int32_t **ids, size_t *n, char *err,
                             size_t err_cap) {
    *ids = nullptr;
    *n = 0;
    try {
        std::vector<int> v;
        auto st = m->sp.Encode(std::string_view(text ? text : "", len), &v);
        if (!st.ok()) {
            set_err(err, err_cap, "sentencepiece encode", st.ToString());
            return -1;
        }
        if (v.empty()) return 0;
        int32_t *out = static_cast<int32_t *>(std::malloc(v.size() * sizeof(int32_t)));
        if (!out) {
            set_err(err, err_cap, "sentencepiece encode", "out of memory");
            return -1;
        }
        for (size_t i = 0; i < v.size(); i++) out[i] = v[i];
        *ids = out;
        *n = v.size();
        return 0;
    } catch (const std::exception &e) {
        set_err(err, err_cap, "sentencepiece encode", e.what());
    } catch (...) {
        set_err(err, err_cap, "sentencepiece encode", "unknown C++ exception");
    }
    return -1;
}

extern "C" int em_spm_decode(const em_spm *m, const int32_t *ids, size_t n, char **text, size_t *len, char *err,
                             size_t err_cap) {
    *text = nullptr;
    *len = 0;
    try {
        std::vector<int> v(ids, ids + n);
        std::string s;
        auto st = m->sp.Decode(v, &s);
        if (!st.ok()) {
            set_err(err, err_cap, "sentencepiece decode", st.ToString());
            return -1;
        }
        char *out = static_cast<char *>(std::malloc(s.size() + 1));
        if (!out) {
            set_err(err, err_cap, "sentencepiece decode", "out of memory");
            return -1;
        }
        std::memcpy(out, s.data(), s.size());
        out[s.size()] = 0;
        *text = out;
        *len = s.size();
        return 0;
    } catch (const std::exception &e) {
        set_err(err, err_cap, "sentencepiece decode", e.what());
    } catch (...) {
        set_err(err, err_cap, "sentencepiece decode", "unknown C++ exception");
    }
    return -1;
}
