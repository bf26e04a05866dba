// idx.c: IDX files (MNIST, Fashion-MNIST), gzip-compressed or plain, and the dataset dispatch.
// IDX: magic 00 00 <type> <ndim>, ndim big-endian u32 sizes, then C-order data.
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "formats.h"

#define IDX_TYPE_UBYTE 0x08
#define IDX_MAX_BYTES ((uint64_t)1 << 31)  // largest data block accepted (guards overflow)
#define GZ_CHUNK (1u << 24)                // largest output of one inflate call
#define IN_CHUNK (1u << 17)                // bytes read from the file at a time
#define MNIST_CLASSES 10

// Returns the name of an IDX element type byte.
static const char *idx_type_name(int t) {
    switch (t) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "short";
    case 0x0C: return "int";
    case 0x0D: return "float";
    case 0x0E: return "double";
    default: return "unknown";
    }
}

// An open IDX file, gzip-compressed or plain (told by its first two bytes, 1f 8b, as gzopen
// tells them), and after its header the element count along each of its ndim dimensions. The
// gzip data goes through an inflate stream of its own rather than gzread, which would skip
// whatever follows the gzip stream without a word.
typedef struct {
    FILE *fp;
    const char *path;
    uint8_t *in;        // IN_CHUNK bytes read from fp; zs.next_in and zs.avail_in say what is unused
    z_stream zs;        // the inflate stream (gzip), or just the input position (plain)
    bool gzip;
    bool inflating;     // zs is initialised: inflateEnd is due
    bool member_end;    // the current gzip member has ended, its CRC and length checked
    bool eof;           // fp has no more bytes
    uint64_t size;      // of the file when it was opened
    uint64_t raw_read;  // bytes read from fp so far
    uint32_t dims[3];
    uint64_t bytes;     // product of dims (data bytes, one per element)
} IdxFile;

// Tops f->in up to at least want (<= IN_CHUNK) unused bytes, unless the file ends first.
// Returns 0, or -1 with err set ("path: read error: ...").
static int fill_input(IdxFile *f, size_t want, HpErr *err) {
    if (f->zs.avail_in >= want || f->eof) return 0;
    if (f->zs.avail_in > 0) memmove(f->in, f->zs.next_in, f->zs.avail_in);
    f->zs.next_in = f->in;
    while (f->zs.avail_in < want && !f->eof) {
        size_t n = fread(f->in + f->zs.avail_in, 1, IN_CHUNK - f->zs.avail_in, f->fp);
        if (n == 0 && ferror(f->fp)) return hp_fail(err, "%s: read error: %s", f->path, strerror(errno));
        f->eof = n == 0;
        f->zs.avail_in += (uInt)n;
        f->raw_read += n;
    }
    return 0;
}

// Reads up to len bytes of a plain file into buf, adding the count to *got. Returns 0 or -1.
static int read_plain(IdxFile *f, uint8_t *buf, size_t len, size_t *got, HpErr *err) {
    while (*got < len) {
        if (fill_input(f, 1, err) < 0) return -1;
        if (f->zs.avail_in == 0) return 0;  // the end of the file
        size_t n = len - *got < f->zs.avail_in ? len - *got : f->zs.avail_in;
        memcpy(buf + *got, f->zs.next_in, n);
        f->zs.next_in += n;
        f->zs.avail_in -= (uInt)n;
        *got += n;
    }
    return 0;
}

// At the end of a gzip member: starts the next one if one follows (concatenated gzip files make
// one gzip file, as gzip -d and gzread read them); *more is false at the end of the file. Any
// other byte after the member fails: "path: 12 bytes after the end of the gzip stream".
static int next_member(IdxFile *f, bool *more, HpErr *err) {
    *more = false;
    if (fill_input(f, 2, err) < 0) return -1;
    if (f->zs.avail_in == 0) return 0;
    if (f->zs.avail_in >= 2 && f->zs.next_in[0] == 0x1f && f->zs.next_in[1] == 0x8b) {
        if (inflateReset(&f->zs) != Z_OK) return hp_fail(err, "%s: gzip error: cannot restart inflate", f->path);
        f->member_end = false;
        *more = true;
        return 0;
    }
    uint64_t used = f->raw_read - f->zs.avail_in, after = f->size > used ? f->size - used : f->zs.avail_in;
    return hp_fail(err, "%s: %llu byte%s after the end of the gzip stream", f->path, (unsigned long long)after,
                   after == 1 ? "" : "s");
}

// Fails with the message for inflate's return code rc (neither Z_OK nor Z_STREAM_END).
static int inflate_error(const IdxFile *f, int rc, HpErr *err) {
    const char *msg = f->zs.msg ? f->zs.msg : "unknown error";
    switch (rc) {
    case Z_BUF_ERROR: return hp_fail(err, "%s: truncated gzip data: unexpected end of file", f->path);
    case Z_DATA_ERROR: return hp_fail(err, "%s: corrupt gzip data: %s", f->path, msg);
    case Z_NEED_DICT: return hp_fail(err, "%s: corrupt gzip data: asks for a preset dictionary", f->path);
    case Z_MEM_ERROR: return hp_fail(err, "%s: out of memory while decompressing", f->path);
    default: return hp_fail(err, "%s: gzip error %d: %s", f->path, rc, msg);
    }
}

// Decompresses up to len bytes of a gzip file into buf, adding the count to *got. Returns 0 or -1.
static int read_gzip(IdxFile *f, uint8_t *buf, size_t len, size_t *got, HpErr *err) {
    while (*got < len) {
        if (f->member_end) {
            bool more;
            if (next_member(f, &more, err) < 0) return -1;
            if (!more) return 0;  // the end of the data
        }
        if (fill_input(f, 1, err) < 0) return -1;
        size_t want = len - *got < GZ_CHUNK ? len - *got : GZ_CHUNK;
        f->zs.next_out = buf + *got;
        f->zs.avail_out = (uInt)want;
        int rc = inflate(&f->zs, Z_NO_FLUSH);  // Z_BUF_ERROR: no progress, so the input has run out
        *got += want - f->zs.avail_out;
        if (rc == Z_STREAM_END)
            f->member_end = true;
        else if (rc != Z_OK)
            return inflate_error(f, rc, err);
    }
    return 0;
}

// Reads up to len bytes of f's data (decompressed) into buf; *got gets the count read. Returns 0
// (a short count means the end of the data) or -1 with err set ("path: corrupt gzip data: ..."
// and the like).
static int idx_read(IdxFile *f, void *buf, size_t len, size_t *got, HpErr *err) {
    *got = 0;
    return f->gzip ? read_gzip(f, buf, len, got, err) : read_plain(f, buf, len, got, err);
}

// Closes f (if open). Returns 0, or -1 with err set (err may be NULL) if the file does not close.
static int idx_close(IdxFile *f, HpErr *err) {
    int rc = 0;
    if (f->inflating) inflateEnd(&f->zs);
    if (f->fp && fclose(f->fp) != 0) rc = hp_fail(err, "%s: error closing file: %s", f->path, strerror(errno));
    free(f->in);
    f->fp = NULL;
    f->in = NULL;
    f->inflating = false;
    return rc;
}

// Opens path (a regular file: a FIFO is refused, not waited on) for idx_read, telling gzip from
// plain by its first two bytes. Returns 0, or -1 with err set and nothing left open.
static int idx_start(IdxFile *f, const char *path, HpErr *err) {
    memset(f, 0, sizeof *f);
    f->path = path;
    if (!(f->fp = fopen_regular(path, &f->size, err))) return hp_prefix(err, path);
    if (!(f->in = hp_alloc(IN_CHUNK, 1, err))) {
        hp_prefix(err, path);
        goto fail;
    }
    if (fill_input(f, 2, err) < 0) goto fail;
    f->gzip = f->zs.avail_in >= 2 && f->in[0] == 0x1f && f->in[1] == 0x8b;
    if (!f->gzip) return 0;
    Bytef *next = f->zs.next_in;
    uInt avail = f->zs.avail_in;
    int rc = inflateInit2(&f->zs, 15 + 16);  // +16: a gzip header and trailer around the deflate data
    f->zs.next_in = next;
    f->zs.avail_in = avail;
    if (rc != Z_OK) {
        inflate_error(f, rc, err);
        goto fail;
    }
    f->inflating = true;
    return 0;
fail:
    idx_close(f, NULL);
    return -1;
}

// Reads a big-endian u32.
static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

// Checks the 4 magic bytes m: 00 00, type unsigned byte, want_ndim dimensions.
static int check_magic(const char *path, const uint8_t *m, int want_ndim, const char *what, HpErr *err) {
    uint32_t magic = be32(m), expect = (uint32_t)IDX_TYPE_UBYTE << 8 | (uint32_t)want_ndim;
    if (m[0] != 0 || m[1] != 0)
        return hp_fail(err, "%s: bad magic 0x%08x (expected 0x%08x for ubyte %s): not an IDX file", path,
                       magic, expect, what);
    if (m[2] != IDX_TYPE_UBYTE)
        return hp_fail(err, "%s: bad magic 0x%08x (expected 0x%08x for ubyte %s): element type 0x%02x (%s) "
                       "is not supported, only 0x08 (unsigned byte)", path, magic, expect, what, m[2],
                       idx_type_name(m[2]));
    if (m[3] != want_ndim)
        return hp_fail(err, "%s: bad magic 0x%08x (expected 0x%08x for ubyte %s): %d dimensions, %s have %d",
                       path, magic, expect, what, m[3], what, want_ndim);
    return 0;
}

// Parses ndim big-endian sizes from p into f->dims and f->bytes; rejects a zero size and
// more than IDX_MAX_BYTES of data (checked as the product grows, so it cannot overflow).
static int parse_dims(IdxFile *f, const uint8_t *p, int ndim, HpErr *err) {
    char sizes[64] = "";
    for (int i = 0; i < ndim; i++) {
        f->dims[i] = be32(p + 4 * i);
        size_t at = strlen(sizes);
        snprintf(sizes + at, sizeof sizes - at, "%s%u", i ? " x " : "", f->dims[i]);
    }
    f->bytes = 1;
    for (int i = 0; i < ndim; i++) {
        if (f->dims[i] == 0)
            return hp_fail(err, "%s: header: sizes %s: dimension %d is zero", f->path, sizes, i);
        f->bytes *= f->dims[i];  // bytes <= 2^31 and dims < 2^32 before this: no overflow
        if (f->bytes > IDX_MAX_BYTES)
            return hp_fail(err, "%s: header: sizes %s are too large (more than 2^31 bytes of data)",
                           f->path, sizes);
    }
    return 0;
}

// Opens path and validates its header: magic, ubyte type, ndim == want_ndim, non-zero dims,
// at most IDX_MAX_BYTES of data. what names the contents ("images", "labels") for messages.
// On success f is open (close with idx_close); on failure it is closed.
static int idx_open(IdxFile *f, const char *path, int want_ndim, const char *what, HpErr *err) {
    if (idx_start(f, path, err) < 0) return -1;
    uint8_t hdr[4 + 4 * 3];
    size_t hdr_len = 4 + 4 * (size_t)want_ndim, got;
    if (idx_read(f, hdr, 4, &got, err) < 0) goto fail;
    if (got < 4) {
        hp_fail(err, "%s: truncated header: %zu of 4 magic bytes", path, got);
        goto fail;
    }
    if (check_magic(path, hdr, want_ndim, what, err) < 0) goto fail;
    if (idx_read(f, hdr + 4, hdr_len - 4, &got, err) < 0) goto fail;
    if (got < hdr_len - 4) {
        hp_fail(err, "%s: truncated header: %zu of %zu bytes", path, 4 + got, hdr_len);
        goto fail;
    }
    if (parse_dims(f, hdr + 4, want_ndim, err) < 0) goto fail;
    return 0;
fail:
    idx_close(f, NULL);
    return -1;
}

// Reads the f->bytes data bytes into buf and checks that nothing follows them (neither more
// data nor, in a gzip file, bytes after the gzip stream). shape_desc describes the header's sizes
// for the truncation message. Closes f.
static int idx_read_data(IdxFile *f, uint8_t *buf, const char *shape_desc, HpErr *err) {
    size_t got;
    uint8_t extra;
    int rc = -1;
    if (idx_read(f, buf, (size_t)f->bytes, &got, err) < 0) goto done;
    if (got < f->bytes) {
        hp_fail(err, "%s: truncated: header says %s (%llu bytes of data), file has %zu bytes of data",
                f->path, shape_desc, (unsigned long long)f->bytes, got);
        goto done;
    }
    if (idx_read(f, &extra, 1, &got, err) < 0) goto done;
    if (got != 0) {
        hp_fail(err, "%s: trailing data after the %llu bytes the header declares", f->path,
                (unsigned long long)f->bytes);
        goto done;
    }
    rc = 0;
done:
    if (idx_close(f, rc == 0 ? err : NULL) < 0) rc = -1;
    return rc;
}

// Opens an images file (count, rows, columns) whose sizes each fit an int. Returns 0, or -1
// with err set and nothing left open.
static int idx_open_images(IdxFile *f, const char *path, HpErr *err) {
    if (idx_open(f, path, 3, "images", err) < 0) return -1;
    if (f->dims[0] <= INT32_MAX && f->dims[1] <= INT32_MAX && f->dims[2] <= INT32_MAX) return 0;
    idx_close(f, NULL);
    return hp_fail(err, "%s: header: sizes too large", path);
}

// Loads an images/labels pair into d. n_classes > 0: labels must be below it (and d gets it);
// n_classes == 0: d->n_classes is 10, or 1 + the largest label if that is larger.
// On failure d is left empty.
static int idx_load_classes(const char *images_path, const char *labels_path, int n_classes,
                            Dataset *d, HpErr *err) {
    memset(d, 0, sizeof *d);
    IdxFile fi, fl;
    char desc[128];
    if (idx_open_images(&fi, images_path, err) < 0) return -1;
    if (dataset_alloc(d, (int)fi.dims[0], 1, (int)fi.dims[1], (int)fi.dims[2], 1, err) < 0) {
        idx_close(&fi, NULL);
        return hp_prefix(err, images_path);
    }
    snprintf(desc, sizeof desc, "%u images of %ux%u", fi.dims[0], fi.dims[1], fi.dims[2]);
    if (idx_read_data(&fi, d->images, desc, err) < 0) goto fail;

    if (idx_open(&fl, labels_path, 1, "labels", err) < 0) goto fail;
    if (fl.dims[0] != (uint32_t)d->n) {
        idx_close(&fl, NULL);
        hp_fail(err, "%s: %u labels for %d images", labels_path, fl.dims[0], d->n);
        goto fail;
    }
    snprintf(desc, sizeof desc, "%u labels", fl.dims[0]);
    if (idx_read_data(&fl, d->labels, desc, err) < 0) goto fail;

    int max_label = 0;
    for (int i = 0; i < d->n; i++) {
        if (n_classes > 0 && d->labels[i] >= n_classes) {
            hp_fail(err, "%s: label %d of image %d is out of range (%d classes: 0..%d)", labels_path,
                    d->labels[i], i, n_classes, n_classes - 1);
            goto fail;
        }
        if (d->labels[i] > max_label) max_label = d->labels[i];
    }
    d->n_classes = n_classes > 0 ? n_classes : (max_label + 1 > MNIST_CLASSES ? max_label + 1 : MNIST_CLASSES);
    return 0;
fail:
    dataset_free(d);
    return -1;
}

int idx_load(const char *images_path, const char *labels_path, Dataset *d, HpErr *err) {
    return idx_load_classes(images_path, labels_path, 0, d, err);
}

// Checks that dir exists and is a directory.
static int check_dir(const char *dir, HpErr *err) {
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT) return hp_fail(err, "%s: no such directory", dir);
        return hp_fail(err, "%s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) return hp_fail(err, "%s: not a directory", dir);
    return 0;
}

// Finds dir/name.gz or else dir/name; writes the path into out. Errors name both tries.
static int find_idx_file(const char *dir, const char *name, char *out, size_t cap, HpErr *err) {
    struct stat st;
    int n = snprintf(out, cap, "%s/%s.gz", dir, name);
    if (n < 0 || (size_t)n >= cap) return hp_fail(err, "%s: path too long", dir);
    if (stat(out, &st) == 0) return 0;
    snprintf(out, cap, "%s/%s", dir, name);
    if (stat(out, &st) == 0) return 0;
    return hp_fail(err, "%s: no such file (looked for %s.gz and %s)", out, name, name);
}

int mnist_load_dir(const char *dir, Dataset *train, Dataset *test, HpErr *err) {
    HP_ASSERT(train || test);
    if (train) memset(train, 0, sizeof *train);
    if (test) memset(test, 0, sizeof *test);
    if (check_dir(dir, err) < 0) return -1;
    static const char *const names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    char paths[4][4096];
    // the files of the splits asked for, found before any is read
    for (int i = train ? 0 : 2; i < (test ? 4 : 2); i++)
        if (find_idx_file(dir, names[i], paths[i], sizeof paths[i], err) < 0) return -1;
    if (train && idx_load_classes(paths[0], paths[1], MNIST_CLASSES, train, err) < 0) return -1;
    if (!test) return 0;
    if (idx_load_classes(paths[2], paths[3], MNIST_CLASSES, test, err) < 0) {
        if (train) dataset_free(train);
        return -1;
    }
    if (train && (test->h != train->h || test->w != train->w)) {
        const char *train_name = strrchr(paths[0], '/') ? strrchr(paths[0], '/') + 1 : paths[0];
        hp_fail(err, "%s: images are %dx%d but the training images (%s) are %dx%d", paths[2], test->h, test->w,
                train_name, train->h, train->w);
        dataset_free(train);
        dataset_free(test);
        return -1;
    }
    return 0;
}

int mnist_peek_dir(const char *dir, Shape *shape, int *n_train, HpErr *err) {
    char path[4096];
    IdxFile f;
    if (check_dir(dir, err) < 0 || find_idx_file(dir, "train-images-idx3-ubyte", path, sizeof path, err) < 0 ||
        idx_open_images(&f, path, err) < 0)
        return -1;
    idx_close(&f, NULL);  // only read from
    *shape = (Shape){1, (int)f.dims[1], (int)f.dims[2]};
    *n_train = (int)f.dims[0];
    return 0;
}

int dataset_peek(const char *name, const char *dir, Shape *shape, int *n_train, int *n_classes, HpErr *err) {
    if (!dataset_known(name))
        return hp_fail(err, "unknown dataset '%s' (known: fashion-mnist, mnist, cifar10)", name);
    *n_classes = MNIST_CLASSES;  // CIFAR-10's count too
    if (strcmp(name, "cifar10") == 0) {
        *shape = (Shape){3, 32, 32};
        return cifar10_peek_dir(dir, n_train, err);
    }
    return mnist_peek_dir(dir, shape, n_train, err);
}

bool dataset_known(const char *name) {
    return strcmp(name, "fashion-mnist") == 0 || strcmp(name, "mnist") == 0 || strcmp(name, "cifar10") == 0;
}

int dataset_load(const char *name, const char *dir, Dataset *train, Dataset *test, HpErr *err) {
    HP_ASSERT(train || test);
    if (!dataset_known(name)) {
        if (train) memset(train, 0, sizeof *train);
        if (test) memset(test, 0, sizeof *test);
        return hp_fail(err, "unknown dataset '%s' (known: fashion-mnist, mnist, cifar10)", name);
    }
    if (strcmp(name, "cifar10") == 0) return cifar10_load_dir(dir, train, test, err);
    return mnist_load_dir(dir, train, test, err);  // fashion-mnist and mnist share the IDX layout
}
