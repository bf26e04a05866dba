// safetensors.c: reads (with complete validation) and writes safetensors files of F32 tensors.
#include "safetensors.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "safetensors data is little-endian F32; this code copies it as is");

#define ST_MAX_INT 9007199254740992.0  // 2^53: larger JSON numbers are not exact in a double

// ---- reading ----

// Returns the u64 stored little-endian at p.
static uint64_t load_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

// Stores v little-endian at p (8 bytes).
static void store_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

// Returns a malloc'd copy of s, or NULL with err set (out of memory).
static char *str_dup(const char *s, HpErr *err) {
    size_t n = strlen(s) + 1;
    char *d = hp_alloc(n, 1, err);
    if (d) memcpy(d, s, n);
    return d;
}

// Reads a JSON number that must be a non-negative integer (exact in a double) into *out.
static int json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item)) return -1;
    double d = item->valuedouble;
    if (!isfinite(d) || d < 0 || d != floor(d) || d > ST_MAX_INT) return -1;
    *out = (uint64_t)d;
    return 0;
}

// Formats shape as "[a, b, c]" into buf.
static void shape_str(const int64_t *shape, int ndim, char *buf, size_t cap) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

// Compares two C strings through pointers (for qsort).
static int cmp_strp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// Fails naming the first name that occurs twice among names[0..n) (what: "tensor", "key").
static int check_unique(const char *const *names, int n, const char *what, HpErr *err) {
    if (n < 2) return 0;
    const char **s = hp_alloc((size_t)n, sizeof *s, err);
    if (!s) return -1;
    memcpy(s, names, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_strp);
    int rc = 0;
    for (int i = 1; i < n && rc == 0; i++)
        if (strcmp(s[i - 1], s[i]) == 0) rc = hp_fail(err, "duplicate %s '%s' in header", what, s[i]);
    free(s);
    return rc;
}

// Validates the shape array of tensor name into e (ndim, shape, numel).
static int parse_shape(const cJSON *shape, const char *name, StEntry *e, HpErr *err) {
    if (!cJSON_IsArray(shape)) return hp_fail(err, "tensor '%s': shape is not an array", name);
    int nd = cJSON_GetArraySize(shape);
    if (nd > ST_MAX_DIMS)
        return hp_fail(err, "tensor '%s': %d dimensions, at most %d supported", name, nd, ST_MAX_DIMS);
    e->ndim = 0;
    e->numel = 1;
    const cJSON *d;
    cJSON_ArrayForEach(d, shape) {
        uint64_t v;
        if (json_uint(d, &v) != 0)
            return hp_fail(err, "tensor '%s': shape entry %d is not a non-negative integer", name, e->ndim);
        e->shape[e->ndim++] = (int64_t)v;
        if (v != 0 && e->numel > SIZE_MAX / 4 / v)
            return hp_fail(err, "tensor '%s': shape is too large", name);
        e->numel *= (size_t)v;
    }
    return 0;
}

// Validates the data_offsets array of tensor name into e (begin, end), against the shape.
static int parse_offsets(const cJSON *offs, const char *name, StEntry *e, HpErr *err) {
    uint64_t b, en;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        json_uint(cJSON_GetArrayItem(offs, 0), &b) != 0 || json_uint(cJSON_GetArrayItem(offs, 1), &en) != 0)
        return hp_fail(err, "tensor '%s': data_offsets is not a pair of non-negative integers", name);
    if (en < b)
        return hp_fail(err, "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before they begin",
                       name, b, en);
    e->begin = (size_t)b;
    e->end = (size_t)en;
    if (en - b != 4 * (uint64_t)e->numel) {
        char s[256];
        shape_str(e->shape, e->ndim, s, sizeof s);
        return hp_fail(err, "tensor '%s': data_offsets span %" PRIu64 " bytes but shape %s of F32 needs %zu",
                       name, en - b, s, 4 * e->numel);
    }
    return 0;
}

// Validates one tensor entry (an object with exactly dtype, shape, data_offsets) into e.
static int parse_entry(const cJSON *item, StEntry *e, HpErr *err) {
    const char *name = item->string;
    if (!cJSON_IsObject(item)) return hp_fail(err, "tensor '%s': entry is not an object", name);
    const cJSON *dtype = NULL, *shape = NULL, *offs = NULL, *c;
    cJSON_ArrayForEach(c, item) {
        const cJSON **slot = strcmp(c->string, "dtype") == 0          ? &dtype
                             : strcmp(c->string, "shape") == 0        ? &shape
                             : strcmp(c->string, "data_offsets") == 0 ? &offs
                                                                      : NULL;
        if (!slot) return hp_fail(err, "tensor '%s': unexpected key '%s'", name, c->string);
        if (*slot) return hp_fail(err, "tensor '%s': duplicate key '%s'", name, c->string);
        *slot = c;
    }
    if (!dtype) return hp_fail(err, "tensor '%s': no dtype", name);
    if (!shape) return hp_fail(err, "tensor '%s': no shape", name);
    if (!offs) return hp_fail(err, "tensor '%s': no data_offsets", name);
    if (!cJSON_IsString(dtype)) return hp_fail(err, "tensor '%s': dtype is not a string", name);
    if (strcmp(dtype->valuestring, "F32") != 0)
        return hp_fail(err, "tensor '%s': dtype '%.32s' is not supported (only F32 is read)", name,
                       dtype->valuestring);
    if (parse_shape(shape, name, e, err) != 0) return -1;
    return parse_offsets(offs, name, e, err);
}

// Validates the __metadata__ object: string values, distinct keys.
static int check_metadata(const cJSON *meta, HpErr *err) {
    if (!cJSON_IsObject(meta)) return hp_fail(err, "__metadata__ is not an object");
    int n = cJSON_GetArraySize(meta), k = 0;
    const char **keys = hp_alloc((size_t)(n > 0 ? n : 0), sizeof *keys, err);
    if (!keys) return -1;
    const cJSON *c;
    int rc = 0;
    cJSON_ArrayForEach(c, meta) {
        if (!cJSON_IsString(c)) {
            rc = hp_fail(err, "__metadata__ value of '%s' is not a string", c->string);
            break;
        }
        keys[k++] = c->string;
    }
    if (rc == 0) rc = check_unique(keys, k, "metadata key", err);
    free(keys);
    return rc;
}

// Orders entries by (begin, end) for the tiling check (qsort on pointers).
static int cmp_entry_pos(const void *a, const void *b) {
    const StEntry *x = *(const StEntry *const *)a, *y = *(const StEntry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

// Checks that the entries tile [0, data_len) exactly: no gap, no overlap, nothing past the end.
static int check_tiling(const StEntry *entries, int n, size_t data_len, HpErr *err) {
    if (n == 0) {
        if (data_len != 0) return hp_fail(err, "no tensors but %zu bytes of data", data_len);
        return 0;
    }
    const StEntry **s = hp_alloc((size_t)n, sizeof *s, err);
    if (!s) return -1;
    for (int i = 0; i < n; i++) s[i] = &entries[i];
    qsort(s, (size_t)n, sizeof *s, cmp_entry_pos);
    int rc = 0;
    size_t pos = 0;
    const StEntry *prev = NULL;
    for (int i = 0; i < n && rc == 0; i++) {
        const StEntry *e = s[i];
        if (e->begin > pos && !prev)
            rc = hp_fail(err, "first tensor '%s' begins at byte %zu, not 0", e->name, e->begin);
        else if (e->begin > pos)
            rc = hp_fail(err, "gap in data: tensor '%s' ends at byte %zu, tensor '%s' begins at byte %zu",
                         prev->name, pos, e->name, e->begin);
        else if (e->begin < pos)
            rc = hp_fail(err, "tensor '%s' (bytes %zu..%zu) overlaps tensor '%s' (ends at byte %zu)", e->name,
                         e->begin, e->end, prev->name, pos);
        else if (e->end > data_len)
            rc = hp_fail(err, "tensor '%s' ends at byte %zu, file has %zu bytes of data", e->name, e->end,
                         data_len);
        pos = e->end;
        prev = e;
    }
    if (rc == 0 && pos != data_len)
        rc = hp_fail(err, "last tensor '%s' ends at byte %zu, file has %zu bytes of data (%zu unused)",
                     prev->name, pos, data_len, data_len - pos);
    free(s);
    return rc;
}

// Parses the header text hdr (len bytes, NUL at hdr[len]) into a cJSON object.
static cJSON *parse_header_json(const char *hdr, size_t len, HpErr *err) {
    if (len == 0 || hdr[0] != '{') {
        hp_fail(err, "not a safetensors file: header is not a JSON object (does not begin with '{')");
        return NULL;
    }
    if (memchr(hdr, '\0', len)) {
        hp_fail(err, "header contains a NUL byte at offset %zu", (size_t)((const char *)memchr(hdr, 0, len) - hdr));
        return NULL;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(hdr, &end, 0);
    if (!root) {
        size_t at = end && end >= hdr ? (size_t)(end - hdr) : 0;
        hp_fail(err, "header is not valid JSON (error near byte %zu of %zu)", at, len);
        return NULL;
    }
    for (const char *p = end; p < hdr + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            hp_fail(err, "header has stray bytes after the JSON object, at byte %zu", (size_t)(p - hdr));
            cJSON_Delete(root);
            return NULL;
        }
    }
    if (!cJSON_IsObject(root)) {
        hp_fail(err, "header is not a JSON object");
        cJSON_Delete(root);
        return NULL;
    }
    if (json_check_nul(hdr, "header", err) < 0) {  // a tensor name cut short could name another tensor
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

// Fills f->entries and f->metadata from the parsed header root (which keeps its other items).
// On failure f holds what was filled in so far (for st_free).
static int parse_root(cJSON *root, StFile *f, HpErr *err) {
    size_t n_items = (size_t)cJSON_GetArraySize(root);
    const char **names = hp_alloc(n_items, sizeof *names, err);
    f->entries = names ? hp_zalloc(n_items, sizeof *f->entries, err) : NULL;
    if (!f->entries) {
        free(names);
        return -1;
    }
    int k = 0, rc = 0;
    cJSON *c;
    cJSON_ArrayForEach(c, root) {
        names[k++] = c->string;
        if (strcmp(c->string, "__metadata__") == 0) {
            if (f->metadata) {
                rc = hp_fail(err, "duplicate key '__metadata__' in header");
                break;
            }
            if ((rc = check_metadata(c, err)) != 0) break;
            f->metadata = c;
            continue;
        }
        StEntry *e = &f->entries[f->n];
        if ((rc = parse_entry(c, e, err)) != 0) break;
        if (!(e->name = str_dup(c->string, err))) {
            rc = -1;
            break;
        }
        f->n++;
    }
    if (rc == 0) rc = check_unique(names, k, "tensor", err);
    free(names);
    if (f->metadata) cJSON_DetachItemViaPointer(root, f->metadata);
    return rc;
}

// Checks the header length a file's first 8 bytes give. Returns 0, or -1 with err set.
static int check_header_len(uint64_t hlen, HpErr *err) {
    if (hlen <= ST_MAX_HEADER) return 0;
    return hp_fail(err, "not a safetensors file: header length %" PRIu64 " (its first 8 bytes) is absurd (limit %" PRIu64
                   " bytes)", hlen, ST_MAX_HEADER);
}

int st_parse(uint8_t *bytes, size_t len, StFile *f, HpErr *err) {
    memset(f, 0, sizeof *f);
    f->bytes = bytes;
    f->file_len = len;
    if (len < 8) {
        st_free(f);
        return hp_fail(err, "file has %zu bytes, too short for the 8-byte header length", len);
    }
    uint64_t hlen = load_le64(bytes);
    if (check_header_len(hlen, err) < 0) {
        st_free(f);
        return -1;
    }
    if (hlen > len - 8) {
        st_free(f);
        return hp_fail(err, "header length %" PRIu64 " is larger than the %zu bytes after it", hlen, len - 8);
    }
    char *hdr = hp_alloc((size_t)hlen + 1, 1, err);
    if (!hdr) {
        st_free(f);
        return -1;
    }
    if (hlen) memcpy(hdr, bytes + 8, (size_t)hlen);
    hdr[hlen] = '\0';
    cJSON *root = parse_header_json(hdr, (size_t)hlen, err);
    free(hdr);
    if (!root) {
        st_free(f);
        return -1;
    }
    f->data = bytes + 8 + hlen;
    f->data_len = len - 8 - (size_t)hlen;
    int rc = parse_root(root, f, err);
    cJSON_Delete(root);
    if (rc == 0) rc = check_tiling(f->entries, f->n, f->data_len, err);
    if (rc != 0) st_free(f);
    return rc;
}

int st_read(const char *path, StFile *f, HpErr *err) {
    memset(f, 0, sizeof *f);
    uint64_t size;
    FILE *fp = fopen_regular(path, &size, err);  // a FIFO is refused, not waited on
    if (!fp) return -1;
    size_t len = (size_t)size;
    uint8_t head[8];
    if (len >= 8) {  // a file that is not a model is refused before it is read whole
        bool read_ok = fread(head, 1, 8, fp) == 8 && fseek(fp, 0, SEEK_SET) == 0;
        if (!read_ok || check_header_len(load_le64(head), err) < 0) {
            fclose(fp);
            return read_ok ? -1 : hp_fail(err, "read error in the first 8 bytes");
        }
    }
    uint8_t *bytes = hp_alloc(len, 1, err);
    if (!bytes) {
        fclose(fp);
        return -1;
    }
    size_t got = len ? fread(bytes, 1, len, fp) : 0;
    int bad = ferror(fp);
    fclose(fp);
    if (got != len || bad) {
        free(bytes);
        return hp_fail(err, "read error: got %zu of %zu bytes", got, len);
    }
    return st_parse(bytes, len, f, err);
}

const StEntry *st_find(const StFile *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->entries[i].name, name) == 0) return &f->entries[i];
    return NULL;
}

const char *st_meta(const StFile *f, const char *key) {
    if (!f->metadata) return NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(f->metadata, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

void st_copy_f32(const StFile *f, const StEntry *e, float *out) {
    if (e->numel) memcpy(out, f->data + e->begin, 4 * e->numel);
}

void st_free(StFile *f) {
    for (int i = 0; i < f->n; i++) free(f->entries[i].name);
    free(f->entries);
    cJSON_Delete(f->metadata);
    free(f->bytes);
    memset(f, 0, sizeof *f);
}

// ---- writing ----

// Formats a list of non-negative integers as a JSON array "[a,b]" into buf.
static void int_array(const uint64_t *v, int n, char *buf, size_t cap) {
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, "%s%" PRIu64, i ? "," : "", v[i]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
}

// Checks the tensors to write and returns their element counts in numel[0..n).
static int check_out(const StTensorOut *t, int n, size_t *numel, HpErr *err) {
    for (int i = 0; i < n; i++) {
        if (!t[i].name) return hp_fail(err, "tensor %d has no name", i);
        if (strcmp(t[i].name, "__metadata__") == 0) return hp_fail(err, "tensor name '__metadata__' is reserved");
        if (t[i].ndim < 0 || t[i].ndim > ST_MAX_DIMS)
            return hp_fail(err, "tensor '%s': %d dimensions, at most %d supported", t[i].name, t[i].ndim, ST_MAX_DIMS);
        numel[i] = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            if (t[i].shape[d] < 0) return hp_fail(err, "tensor '%s': negative dimension", t[i].name);
            numel[i] *= (size_t)t[i].shape[d];
        }
        if (numel[i] && !t[i].data) return hp_fail(err, "tensor '%s': no data", t[i].name);
    }
    return 0;
}

// Returns the header entry of tensor t (numel floats at byte off of the data), or NULL if out
// of memory.
static cJSON *entry_json(const StTensorOut *t, size_t numel, size_t off) {
    char shape[ST_MAX_DIMS * 24 + 8], offs[ST_MAX_DIMS * 24 + 8];
    uint64_t dims[ST_MAX_DIMS], be[2] = {off, off + 4 * numel};
    for (int d = 0; d < t->ndim; d++) dims[d] = (uint64_t)t->shape[d];
    int_array(dims, t->ndim, shape, sizeof shape);
    int_array(be, 2, offs, sizeof offs);
    cJSON *e = cJSON_CreateObject();
    if (e && cJSON_AddStringToObject(e, "dtype", "F32") && cJSON_AddRawToObject(e, "shape", shape) &&
        cJSON_AddRawToObject(e, "data_offsets", offs))
        return e;
    cJSON_Delete(e);
    return NULL;
}

// Builds the header JSON text (unpadded, malloc'd by cJSON) for the tensors and metadata, or
// returns NULL with err set (out of memory).
static char *build_header(const StTensorOut *t, int n, const size_t *numel, const char *const *mk,
                          const char *const *mv, int n_meta, HpErr *err) {
    cJSON *root = cJSON_CreateObject();
    bool ok = root != NULL;
    size_t off = 0;
    for (int i = 0; i < n && ok; i++) {
        cJSON *e = entry_json(&t[i], numel[i], off);
        ok = e && cJSON_AddItemToObject(root, t[i].name, e);
        if (e && !ok) cJSON_Delete(e);  // not attached
        off += 4 * numel[i];
    }
    cJSON *meta = ok && n_meta > 0 ? cJSON_AddObjectToObject(root, "__metadata__") : NULL;
    if (n_meta > 0) ok = ok && meta;
    for (int i = 0; i < n_meta && ok; i++) ok = cJSON_AddStringToObject(meta, mk[i], mv[i]) != NULL;
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text) hp_fail(err, "out of memory: cannot build the header");
    return text;
}

// Writes the length field, the header padded with spaces to a multiple of 8, and the data.
static int write_body(FILE *fp, const char *hdr, const StTensorOut *t, int n, const size_t *numel) {
    size_t hlen = strlen(hdr), padded = (hlen + 7) / 8 * 8;
    uint8_t len8[8];
    store_le64(len8, padded);
    static const char spaces[8] = "        ";
    if (fwrite(len8, 1, 8, fp) != 8 || fwrite(hdr, 1, hlen, fp) != hlen ||
        fwrite(spaces, 1, padded - hlen, fp) != padded - hlen)
        return -1;
    for (int i = 0; i < n; i++)
        if (numel[i] && fwrite(t[i].data, sizeof(float), numel[i], fp) != numel[i]) return -1;
    return 0;
}

int st_write(const char *path, const StTensorOut *tensors, int n, const char *const *meta_keys,
             const char *const *meta_values, int n_meta, HpErr *err) {
    size_t *numel = hp_alloc((size_t)(n > 0 ? n : 0), sizeof *numel, err);
    const char **names = numel ? hp_alloc((size_t)(n > 0 ? n : 0), sizeof *names, err) : NULL;
    if (!names) {
        free(numel);
        return -1;
    }
    int rc = check_out(tensors, n, numel, err);
    for (int i = 0; i < n && rc == 0; i++) names[i] = tensors[i].name;
    if (rc == 0) rc = check_unique(names, n, "tensor", err);
    for (int i = 0; i < n_meta && rc == 0; i++)
        if (!meta_keys[i] || !meta_values[i]) rc = hp_fail(err, "metadata entry %d is NULL", i);
    if (rc == 0) rc = check_unique(meta_keys, n_meta, "metadata key", err);
    free(names);
    if (rc != 0) {
        free(numel);
        return -1;
    }
    char *hdr = build_header(tensors, n, numel, meta_keys, meta_values, n_meta, err);
    if (!hdr) {
        free(numel);
        return -1;
    }
    char *tmp = NULL;
    FILE *fp = NULL;
    if (atomic_open(path, &tmp, &fp, err) != 0) {
        free(hdr);
        free(numel);
        return -1;
    }
    if (write_body(fp, hdr, tensors, n, numel) != 0) {
        rc = hp_fail(err, "write error: %s", strerror(errno));
        atomic_abort(fp, tmp);
    } else {
        rc = atomic_commit(fp, tmp, path, err);
    }
    free(hdr);
    free(numel);
    return rc;
}
