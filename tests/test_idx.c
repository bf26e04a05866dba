// test_idx.c: IDX loading (plain and gzip), the MNIST directory loader and every bad input
// the loader must reject with a message naming the file and the problem.
#include "tests/testutil.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <zlib.h>

#include "formats/formats.h"
#include "nn/data.h"

#define TRAIN_IMAGES "train-images-idx3-ubyte"
#define TRAIN_LABELS "train-labels-idx1-ubyte"
#define TEST_IMAGES "t10k-images-idx3-ubyte"
#define TEST_LABELS "t10k-labels-idx1-ubyte"

// A growable byte buffer for building fixture files.
typedef struct {
    uint8_t *p;
    size_t len, cap;
} Buf;

static void buf_put(Buf *b, const void *data, size_t len) {
    if (b->len + len > b->cap) {
        b->cap = 2 * (b->len + len);
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
}

static void buf_u32(Buf *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    buf_put(b, x, 4);
}

// The pixel value of fixture image i at byte k (depends on a seed so sets differ).
static uint8_t pixel(int seed, int i, size_t k) { return (uint8_t)((seed * 31 + i * 7 + k * 13) % 256); }

// An IDX images file: magic 00 00 08 03, sizes n, rows, cols, then pixel().
static Buf idx_images(int seed, uint32_t n, uint32_t rows, uint32_t cols) {
    Buf b = {0};
    buf_u32(&b, 0x00000803);
    buf_u32(&b, n);
    buf_u32(&b, rows);
    buf_u32(&b, cols);
    for (uint32_t i = 0; i < n; i++)
        for (size_t k = 0; k < (size_t)rows * cols; k++) {
            uint8_t v = pixel(seed, (int)i, k);
            buf_put(&b, &v, 1);
        }
    return b;
}

// An IDX labels file with labels (i * 3 + seed) % 10.
static Buf idx_labels(int seed, uint32_t n) {
    Buf b = {0};
    buf_u32(&b, 0x00000801);
    buf_u32(&b, n);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t v = (uint8_t)((i * 3 + (uint32_t)seed) % 10);
        buf_put(&b, &v, 1);
    }
    return b;
}

// Writes b to dir/name (gzip-compressed, with ".gz" appended, when gz) and frees it.
static void put_file(const char *dir, const char *name, Buf b, bool gz) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s%s", dir, name, gz ? ".gz" : "");
    if (gz) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(gzwrite(f, b.p, (unsigned)b.len), (int)b.len);
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        tu_write(path, b.p, b.len);
    }
    free(b.p);
}

// Makes a complete MNIST-like directory: n_train and n_test images of rows x cols.
static void make_mnist(const char *dir, bool gz, uint32_t n_train, uint32_t n_test, uint32_t rows, uint32_t cols) {
    put_file(dir, TRAIN_IMAGES, idx_images(1, n_train, rows, cols), gz);
    put_file(dir, TRAIN_LABELS, idx_labels(1, n_train), gz);
    put_file(dir, TEST_IMAGES, idx_images(2, n_test, rows, cols), gz);
    put_file(dir, TEST_LABELS, idx_labels(2, n_test), gz);
}

// Loads dir, expects failure, and checks the message holds both substrings; outputs are empty.
static void expect_fail(const char *dir, const char *s1, const char *s2) {
    Dataset tr, te;
    HpErr err = {{0}};
    int rc = mnist_load_dir(dir, &tr, &te, &err);
    if (rc == 0 || !strstr(err.msg, s1) || (s2 && !strstr(err.msg, s2)))
        fail_msg("rc %d, message '%s', wanted '%s' and '%s'", rc, err.msg, s1, s2 ? s2 : "");
    assert_null(tr.images);
    assert_null(te.images);
    assert_int_equal(tr.n, 0);
    assert_int_equal(te.n, 0);
}

// Checks a loaded set against the fixture generators.
static void check_set(const Dataset *d, int seed, int n, int rows, int cols) {
    assert_int_equal(d->n, n);
    assert_int_equal(d->c, 1);
    assert_int_equal(d->h, rows);
    assert_int_equal(d->w, cols);
    assert_int_equal(d->n_classes, 10);
    for (int i = 0; i < n; i++) {
        assert_int_equal(d->labels[i], (i * 3 + seed) % 10);
        for (size_t k = 0; k < (size_t)rows * cols; k++)
            if (d->images[(size_t)i * rows * cols + k] != pixel(seed, i, k)) fail_msg("pixel %d/%zu", i, k);
    }
}

static void roundtrip(bool gz) {
    char dir[64];
    tu_tmpdir(dir, sizeof dir);
    make_mnist(dir, gz, 23, 7, 5, 4);
    Dataset tr, te;
    HpErr err = {{0}};
    if (mnist_load_dir(dir, &tr, &te, &err) != 0) fail_msg("%s", err.msg);
    check_set(&tr, 1, 23, 5, 4);
    check_set(&te, 2, 7, 5, 4);
    dataset_free(&tr);
    dataset_free(&te);
    // The same through the dispatcher.
    assert_int_equal(dataset_load("fashion-mnist", dir, &tr, &te, &err), 0);
    check_set(&tr, 1, 23, 5, 4);
    dataset_free(&tr);
    dataset_free(&te);
    tu_rmtree(dir);
}

static void test_roundtrip_plain(void **state) {
    (void)state;
    roundtrip(false);
}

static void test_roundtrip_gzip(void **state) {
    (void)state;
    roundtrip(true);
}

// Mixed: some files gzipped, some plain; .gz is preferred when both exist.
static void test_mixed_and_prefer_gz(void **state) {
    (void)state;
    char dir[64];
    tu_tmpdir(dir, sizeof dir);
    make_mnist(dir, false, 6, 3, 2, 2);
    put_file(dir, TRAIN_IMAGES, idx_images(1, 6, 2, 2), true);
    // A broken plain file beside a good .gz is never read.
    Buf junk = {0};
    buf_u32(&junk, 0xdeadbeef);
    put_file(dir, TRAIN_LABELS, junk, false);
    put_file(dir, TRAIN_LABELS, idx_labels(1, 6), true);
    Dataset tr, te;
    HpErr err = {{0}};
    if (mnist_load_dir(dir, &tr, &te, &err) != 0) fail_msg("%s", err.msg);
    check_set(&tr, 1, 6, 2, 2);
    check_set(&te, 2, 3, 2, 2);
    dataset_free(&tr);
    dataset_free(&te);
    tu_rmtree(dir);
}

// idx_load infers the class count: 10, or 1 + the largest label when that is larger.
static void test_idx_load_classes(void **state) {
    (void)state;
    char dir[64], ip[128], lp[128];
    tu_tmpdir(dir, sizeof dir);
    put_file(dir, "im", idx_images(0, 3, 2, 2), false);
    Buf l = {0};
    buf_u32(&l, 0x00000801);
    buf_u32(&l, 3);
    buf_put(&l, (uint8_t[]){0, 12, 3}, 3);
    put_file(dir, "lab", l, true);
    snprintf(ip, sizeof ip, "%s/im", dir);
    snprintf(lp, sizeof lp, "%s/lab.gz", dir);
    Dataset d;
    HpErr err = {{0}};
    if (idx_load(ip, lp, &d, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.n_classes, 13);
    assert_int_equal(d.labels[1], 12);
    dataset_free(&d);
    tu_rmtree(dir);
}

static void test_truncated_data(void **state) {
    (void)state;
    char dir[64];
    tu_tmpdir(dir, sizeof dir);
    make_mnist(dir, false, 5, 2, 4, 3);
    Buf b = idx_images(1, 5, 4, 3);
    b.len -= 50;  // 60 bytes of data declared, 10 present
    put_file(dir, TRAIN_IMAGES, b, false);
    expect_fail(dir, TRAIN_IMAGES, "truncated: header says 5 images of 4x3 (60 bytes of data), file has 10 bytes");
    tu_rmtree(dir);
}

static void test_truncated_header(void **state) {
    (void)state;
    char dir[64];
    tu_tmpdir(dir, sizeof dir);
    make_mnist(dir, true, 5, 2, 4, 3);
    Buf b = idx_images(1, 5, 4, 3);
    b.len = 9;
    put_file(dir, TEST_IMAGES, b, true);
    expect_fail(dir, TEST_IMAGES ".gz", "truncated header");
    b = (Buf){0};
    put_file(dir, TEST_IMAGES, b, true);  // empty
    expect_fail(dir, TEST_IMAGES ".gz", "truncated header");
    tu_rmtree(dir);
}

// Fixture images that do not compress well, so a gzip file has room to be damaged.
// Pixels are random bytes and mask (0xff: stored blocks; 0x0f: Huffman-coded).
static Buf noisy_images(uint32_t n, uint8_t mask) {
    Buf b = {0};
    buf_u32(&b, 0x00000803);
    buf_u32(&b, n);
    buf_u32(&b, 28);
    buf_u32(&b, 28);
    Rng rng;
    rng_seed(&rng, 42, 0);
    for (uint32_t k = 0; k < n * 28 * 28; k++) {
        uint8_t v = (uint8_t)rng_u64(&rng) & mask;
        buf_put(&b, &v, 1);
    }
    return b;
}

// Reads a whole file into a Buf.
static Buf slurp(const char *path) {
    Buf b = {0};
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) buf_put(&b, chunk, n);
    fclose(f);
    return b;
}

static void test_truncated_gzip(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    make_mnist(dir, true, 20, 2, 28, 28);
    put_file(dir, TRAIN_IMAGES, noisy_images(20, 0xff), true);
    snprintf(path, sizeof path, "%s/%s.gz", dir, TRAIN_IMAGES);
    Buf b = slurp(path);
    assert_true(b.len > 10000);
    b.len /= 2;
    tu_write(path, b.p, b.len);
    free(b.p);
    expect_fail(dir, path, "truncated gzip data: unexpected end of file");
    tu_rmtree(dir);
}

static void test_corrupt_gzip(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    make_mnist(dir, true, 20, 2, 28, 28);
    put_file(dir, TRAIN_IMAGES, noisy_images(20, 0x0f), true);
    snprintf(path, sizeof path, "%s/%s.gz", dir, TRAIN_IMAGES);
    Buf b = slurp(path);
    for (size_t k = 100; k < 140; k++) b.p[k] ^= 0x5a;
    tu_write(path, b.p, b.len);
    free(b.p);
    expect_fail(dir, path, "corrupt gzip data: ");
    // A damaged CRC in the trailer is caught too (after all the data was read).
    put_file(dir, TRAIN_IMAGES, noisy_images(20, 0xff), true);
    b = slurp(path);
    b.p[b.len - 6] ^= 0xff;
    tu_write(path, b.p, b.len);
    free(b.p);
    expect_fail(dir, path, "corrupt gzip data: incorrect data check");
    tu_rmtree(dir);
}

static void test_bad_magic(void **state) {
    (void)state;
    char dir[64];
    tu_tmpdir(dir, sizeof dir);
    make_mnist(dir, false, 4, 2, 3, 3);
    Buf b = idx_images(1, 4, 3, 3);
    b.p[2] = 0x09;
    b.p[3] = 0x02;
    put_file(dir, TRAIN_IMAGES, b, false);
    expect_fail(dir, TRAIN_IMAGES, "bad magic 0x00000902 (expected 0x00000803 for ubyte images)");
    b = idx_images(1, 4, 3, 3);
    b.p[0] = 0x1f;
    put_file(dir, TRAIN_IMAGES, b, false);
    expect_fail(dir, TRAIN_IMAGES, "bad magic 0x1f000803");
    // An images file given where labels belong: wrong dimension count.
    put_file(dir, TRAIN_IMAGES, idx_images(1, 4, 3, 3), false);
    put_file(dir, TEST_LABELS, idx_images(1, 2, 3, 3), false);
    expect_fail(dir, TEST_LABELS, "expected 0x00000801 for ubyte labels): 3 dimensions");
    tu_rmtree(dir);
}

static void test_wrong_type(void **state) {
    (void)state;
    char dir[64];
    tu_tmpdir(dir, sizeof dir);
    make_mnist(dir, true, 4, 2, 3, 3);
    Buf b = idx_images(1, 4, 3, 3);
    b.p[2] = 0x0D;
    put_file(dir, TRAIN_IMAGES, b, true);
    expect_fail(dir, TRAIN_IMAGES ".gz", "element type 0x0d (float) is not supported");
    tu_rmtree(dir);
}

static void test_label_count(void **state) {
    (void)state;
    char dir[64];
    tu_tmpdir(dir, sizeof dir);
    make_mnist(dir, true, 12, 10, 3, 3);
    put_file(dir, TEST_LABELS, idx_labels(2, 9), true);
    expect_fail(dir, TEST_LABELS ".gz", "9 labels for 10 images");
    tu_rmtree(dir);
}

static void test_label_range(void **state) {
    (void)state;
    char dir[64];
    tu_tmpdir(dir, sizeof dir);
    make_mnist(dir, false, 12, 10, 3, 3);
    Buf b = idx_labels(1, 12);
    b.p[8 + 7] = 10;
    put_file(dir, TRAIN_LABELS, b, false);
    expect_fail(dir, TRAIN_LABELS, "label 10 of image 7 is out of range");
    tu_rmtree(dir);
}

static void test_trailing(void **state) {
    (void)state;
    char dir[64];
    tu_tmpdir(dir, sizeof dir);
    make_mnist(dir, true, 4, 3, 3, 3);
    Buf b = idx_labels(2, 3);
    buf_put(&b, "x", 1);
    put_file(dir, TEST_LABELS, b, true);
    expect_fail(dir, TEST_LABELS ".gz", "trailing data after the 3 bytes the header declares");
    tu_rmtree(dir);
    tu_tmpdir(dir, sizeof dir);
    make_mnist(dir, false, 4, 3, 3, 3);
    b = idx_images(1, 4, 3, 3);
    buf_put(&b, "xyz", 3);
    put_file(dir, TRAIN_IMAGES, b, false);
    expect_fail(dir, TRAIN_IMAGES, "trailing data after the 36 bytes");
    tu_rmtree(dir);
}

// The gzip bytes of b (freed), through a file dir/name.gz made and read back.
static Buf gzip_bytes(const char *dir, const char *name, Buf b) {
    char path[600];
    put_file(dir, name, b, true);
    snprintf(path, sizeof path, "%s/%s.gz", dir, name);
    Buf z = slurp(path);
    assert_int_equal(unlink(path), 0);
    return z;
}

// Bytes after the gzip stream are refused (gzread would skip them unseen); a second gzip member
// (gzip files concatenated) is part of the stream, as gzip -d reads it.
static void test_after_gzip_stream(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    make_mnist(dir, true, 4, 3, 3, 3);
    snprintf(path, sizeof path, "%s/%s.gz", dir, TEST_LABELS);
    Buf z = gzip_bytes(dir, "tmp", idx_labels(2, 3));
    buf_put(&z, "junk", 4);
    tu_write(path, z.p, z.len);
    expect_fail(dir, path, ": 4 bytes after the end of the gzip stream");
    z.len -= 3;  // one byte: even the first of another member's magic is not a member
    z.p[z.len - 1] = 0x1f;
    tu_write(path, z.p, z.len);
    expect_fail(dir, path, ": 1 byte after the end of the gzip stream");
    free(z.p);

    // the images in two members: read whole
    Buf img = idx_images(2, 3, 3, 3), head = {0}, tail = {0};
    buf_put(&head, img.p, 20);
    buf_put(&tail, img.p + 20, img.len - 20);
    free(img.p);
    Buf two = gzip_bytes(dir, "tmp", head), second = gzip_bytes(dir, "tmp", tail);
    buf_put(&two, second.p, second.len);
    snprintf(path, sizeof path, "%s/%s.gz", dir, TEST_IMAGES);
    tu_write(path, two.p, two.len);
    put_file(dir, TEST_LABELS, idx_labels(2, 3), true);
    Dataset tr, te;
    HpErr err = {{0}};
    if (mnist_load_dir(dir, &tr, &te, &err) != 0) fail_msg("%s", err.msg);
    check_set(&te, 2, 3, 3, 3);
    dataset_free(&tr);
    dataset_free(&te);
    // ... and junk after the second member is refused all the same
    buf_put(&two, "\0\0", 2);
    tu_write(path, two.p, two.len);
    expect_fail(dir, path, ": 2 bytes after the end of the gzip stream");
    free(two.p);
    free(second.p);
    tu_rmtree(dir);
}

// A FIFO in place of a file is refused, not waited on for ever (an alarm ends the test if the
// open blocks).
static void test_fifo(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    make_mnist(dir, true, 4, 3, 3, 3);
    snprintf(path, sizeof path, "%s/%s.gz", dir, TEST_LABELS);
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof path, "%s/%s", dir, TEST_LABELS);
    assert_int_equal(mkfifo(path, 0600), 0);
    alarm(10);
    char want[160];
    snprintf(want, sizeof want, "%s: not a regular file", path);
    expect_fail(dir, want, NULL);
    snprintf(path, sizeof path, "%s/%s.gz", dir, TRAIN_IMAGES);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkfifo(path, 0600), 0);
    snprintf(want, sizeof want, "%s: not a regular file", path);
    expect_fail(dir, want, NULL);
    alarm(0);
    tu_rmtree(dir);
}

static void test_bad_dims(void **state) {
    (void)state;
    char dir[64];
    tu_tmpdir(dir, sizeof dir);
    make_mnist(dir, false, 4, 3, 3, 3);
    Buf b = {0};
    buf_u32(&b, 0x00000803);
    buf_u32(&b, 4);
    buf_u32(&b, 0);
    buf_u32(&b, 3);
    put_file(dir, TRAIN_IMAGES, b, false);
    expect_fail(dir, TRAIN_IMAGES, "dimension 1 is zero");
    b = (Buf){0};
    buf_u32(&b, 0x00000803);
    buf_u32(&b, 60000);
    buf_u32(&b, 0xffffffffu);
    buf_u32(&b, 0xffffffffu);
    put_file(dir, TRAIN_IMAGES, b, false);
    expect_fail(dir, TRAIN_IMAGES, "too large");
    b = (Buf){0};
    buf_u32(&b, 0x00000803);
    buf_u32(&b, 1u << 16);
    buf_u32(&b, 1u << 8);
    buf_u32(&b, 1u << 8);  // exactly 2^32 bytes
    put_file(dir, TRAIN_IMAGES, b, false);
    expect_fail(dir, TRAIN_IMAGES, "too large");
    tu_rmtree(dir);
}

// The process's address space in bytes (from /proc/self/statm), or 0 if unknown.
static size_t address_space(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f && fscanf(f, "%lu", &pages) != 1) pages = 0;
    if (f) fclose(f);
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

// A header that declares the largest data block accepted (2^31 bytes) is read before the data,
// so the loader allocates first: with the address space limited, that allocation fails and
// the loader returns a clean error naming the file (not an abort). Skipped under AddressSanitizer,
// whose allocator aborts rather than return NULL.
static void test_alloc_fails(void **state) {
    (void)state;
#ifdef __SANITIZE_ADDRESS__
    skip();
#endif
    char dir[64], images[128], labels[128];
    tu_tmpdir(dir, sizeof dir);
    Buf b = {0};
    buf_u32(&b, 0x00000803);
    buf_u32(&b, 1u << 15);
    buf_u32(&b, 1u << 8);
    buf_u32(&b, 1u << 8);  // 2^31 bytes of data declared, none present
    put_file(dir, TRAIN_IMAGES, b, false);
    put_file(dir, TRAIN_LABELS, idx_labels(0, 4), false);
    snprintf(images, sizeof images, "%s/%s", dir, TRAIN_IMAGES);
    snprintf(labels, sizeof labels, "%s/%s", dir, TRAIN_LABELS);
    struct rlimit old, low;
    size_t used = address_space();
    if (used == 0 || getrlimit(RLIMIT_AS, &old) != 0) skip();
    low = old;
    low.rlim_cur = (rlim_t)(used + ((size_t)512 << 20));  // room for the small allocations only
    if (old.rlim_cur != RLIM_INFINITY && old.rlim_cur < low.rlim_cur) skip();
    assert_int_equal(setrlimit(RLIMIT_AS, &low), 0);
    Dataset d;
    HpErr err = {{0}};
    int rc = idx_load(images, labels, &d, &err);
    assert_int_equal(setrlimit(RLIMIT_AS, &old), 0);
    char want[256];
    snprintf(want, sizeof want, "%s: the images: out of memory: cannot allocate 2.1 GB", images);
    assert_int_equal(rc, -1);
    assert_string_equal(err.msg, want);
    assert_null(d.images);
    assert_null(d.labels);
    tu_rmtree(dir);
}

static void test_mismatched_shapes(void **state) {
    (void)state;
    char dir[64];
    tu_tmpdir(dir, sizeof dir);
    make_mnist(dir, false, 4, 3, 3, 3);
    put_file(dir, TEST_IMAGES, idx_images(2, 3, 4, 3), false);
    expect_fail(dir, TEST_IMAGES, "4x3 but the training images (train-images-idx3-ubyte) are 3x3");
    tu_rmtree(dir);
}

static void test_missing(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/nope/deeper", dir);
    expect_fail(path, path, ": no such directory");
    make_mnist(dir, true, 4, 3, 3, 3);
    snprintf(path, sizeof path, "%s/%s.gz", dir, TEST_LABELS);
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof path, "%s/%s", dir, TEST_LABELS);
    expect_fail(dir, path, "no such file");
    snprintf(path, sizeof path, "%s/%s.gz", dir, TRAIN_IMAGES);
    expect_fail(path, path, "not a directory");
    tu_rmtree(dir);
}

// Without a test set to fill (test NULL) only the training files are read: the test files
// may be missing, or broken.
static void test_train_only(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    make_mnist(dir, true, 5, 3, 3, 3);
    snprintf(path, sizeof path, "%s/%s.gz", dir, TEST_LABELS);
    assert_int_equal(unlink(path), 0);
    Buf junk = {0};
    buf_u32(&junk, 0xdeadbeef);
    put_file(dir, TEST_IMAGES, junk, true);
    Dataset tr;
    HpErr err = {{0}};
    if (dataset_load("fashion-mnist", dir, &tr, NULL, &err) != 0) fail_msg("%s", err.msg);
    check_set(&tr, 1, 5, 3, 3);
    dataset_free(&tr);
    expect_fail(dir, TEST_LABELS, "no such file");  // with a test set to fill, it is read
    tu_rmtree(dir);
}

// Without a training set to fill (train NULL) only the test files are read: the training files
// may be missing, or broken; a missing test file is named as with both splits.
static void test_test_only(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    make_mnist(dir, true, 5, 3, 3, 3);
    snprintf(path, sizeof path, "%s/%s.gz", dir, TRAIN_IMAGES);
    assert_int_equal(unlink(path), 0);
    Buf junk = {0};
    buf_u32(&junk, 0xdeadbeef);
    put_file(dir, TRAIN_LABELS, junk, true);
    Dataset te;
    HpErr err = {{0}};
    if (dataset_load("fashion-mnist", dir, NULL, &te, &err) != 0) fail_msg("%s", err.msg);
    check_set(&te, 2, 3, 3, 3);
    dataset_free(&te);
    if (mnist_load_dir(dir, NULL, &te, &err) != 0) fail_msg("%s", err.msg);
    check_set(&te, 2, 3, 3, 3);
    dataset_free(&te);
    expect_fail(dir, TRAIN_IMAGES, "no such file");  // with a training set to fill, it is read
    snprintf(path, sizeof path, "%s/%s.gz", dir, TEST_IMAGES);
    assert_int_equal(unlink(path), 0);
    memset(&te, 0xff, sizeof te);
    assert_int_equal(dataset_load("fashion-mnist", dir, NULL, &te, &err), -1);
    char want[256];
    snprintf(want, sizeof want, "%s/%s: no such file (looked for %s.gz and %s)", dir, TEST_IMAGES, TEST_IMAGES,
             TEST_IMAGES);
    assert_string_equal(err.msg, want);
    assert_null(te.images);
    assert_int_equal(te.n, 0);
    tu_rmtree(dir);
}

static void test_unknown_dataset(void **state) {
    (void)state;
    Dataset tr, te;
    HpErr err = {{0}};
    assert_int_equal(dataset_load("imagenet", "/tmp", &tr, &te, &err), -1);
    assert_non_null(strstr(err.msg, "unknown dataset 'imagenet'"));
    assert_non_null(strstr(err.msg, "fashion-mnist, mnist, cifar10"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_plain),  cmocka_unit_test(test_roundtrip_gzip),
        cmocka_unit_test(test_train_only),       cmocka_unit_test(test_test_only),
        cmocka_unit_test(test_mixed_and_prefer_gz), cmocka_unit_test(test_idx_load_classes),
        cmocka_unit_test(test_truncated_data),   cmocka_unit_test(test_truncated_header),
        cmocka_unit_test(test_truncated_gzip),   cmocka_unit_test(test_corrupt_gzip),
        cmocka_unit_test(test_bad_magic),        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_label_count),      cmocka_unit_test(test_label_range),
        cmocka_unit_test(test_trailing),         cmocka_unit_test(test_after_gzip_stream),
        cmocka_unit_test(test_fifo),             cmocka_unit_test(test_bad_dims),
        cmocka_unit_test(test_alloc_fails),
        cmocka_unit_test(test_mismatched_shapes), cmocka_unit_test(test_missing),
        cmocka_unit_test(test_unknown_dataset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
