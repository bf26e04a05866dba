// safetensors.h: a generic reader and writer of the safetensors format (F32 tensors only).
// The format: a u64 little-endian header length N, N bytes of JSON
//   {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
//    "__metadata__": {"key": "value", ...}}
// (optionally padded with trailing spaces), then the data buffer. Offsets are relative to the
// start of the data buffer and must tile it exactly. This unit knows nothing about models.
#ifndef HP_SAFETENSORS_H
#define HP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "../nn/err.h"

#define ST_MAX_DIMS 8                           // most dimensions a tensor may have
#define ST_MAX_HEADER ((uint64_t)100 << 20)     // largest header accepted: 100 MB

// One tensor of a file that has been read: its place in StFile.data.
typedef struct {
    char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t numel;       // product of shape (1 for a scalar)
    size_t begin, end;  // byte offsets into StFile.data; end - begin == 4 * numel
} StEntry;

// A whole safetensors file in memory, validated.
typedef struct {
    StEntry *entries;      // in header order
    int n;
    cJSON *metadata;       // the "__metadata__" object (string values only), or NULL
    const uint8_t *data;   // the data buffer (points into bytes; may be unaligned)
    size_t data_len;
    uint8_t *bytes;        // the whole file (owned)
    size_t file_len;
} StFile;

// One tensor to write: ndim dimensions of shape, numel(shape) floats at data (NULL if 0).
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float *data;
} StTensorOut;

// Reads and validates the whole file at path into f (zeroed on failure). Errors name the
// problem but not the file (the caller adds it with hp_prefix); a file whose first bytes cannot
// begin a safetensors file (an absurd header length, a header that is not a JSON object: a PNG
// image, a text file) is "not a safetensors file: ..." with the detail.
int st_read(const char *path, StFile *f, HpErr *err);
// Validates an in-memory file image of len bytes and takes ownership of bytes (which must
// come from malloc, e.g. hp_alloc; it is freed on failure too).
int st_parse(uint8_t *bytes, size_t len, StFile *f, HpErr *err);
// Returns the entry named name, or NULL.
const StEntry *st_find(const StFile *f, const char *name);
// Returns the metadata value for key, or NULL.
const char *st_meta(const StFile *f, const char *key);
// Copies entry e's e->numel floats into out (handles unaligned data).
void st_copy_f32(const StFile *f, const StEntry *e, float *out);
// Frees everything f owns; leaves it zeroed.
void st_free(StFile *f);

// Writes n tensors (in that order, data packed back to back) and n_meta metadata pairs to
// path atomically. The header is padded with spaces so the data starts at a multiple of 8.
// Names must be distinct and not "__metadata__".
int st_write(const char *path, const StTensorOut *tensors, int n, const char *const *meta_keys,
             const char *const *meta_values, int n_meta, HpErr *err);

#endif
