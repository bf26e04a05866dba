// test_cifar.c: CIFAR-10 binary batches on a tiny fake set (2 records per batch file): loading
// and peeking (the training set's size from the files' sizes).
#include "tests/testutil.h"

#include <sys/stat.h>

#include "formats/formats.h"
#include "nn/data.h"

#define REC 3073
#define PER_FILE 2

static const char *const FILES[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                     "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};

// Label of record r of file f, and byte k of its image.
static uint8_t label_of(int f, int r) { return (uint8_t)((f * PER_FILE + r) % 10); }
static uint8_t byte_of(int f, int r, int k) { return (uint8_t)((f * 101 + r * 17 + k * 3) % 256); }

// Writes the six batch files (PER_FILE records each) into dir.
static void make_cifar(const char *dir) {
    uint8_t buf[PER_FILE * REC];
    char path[600];
    for (int f = 0; f < 6; f++) {
        for (int r = 0; r < PER_FILE; r++) {
            buf[r * REC] = label_of(f, r);
            for (int k = 0; k < 3072; k++) buf[r * REC + 1 + k] = byte_of(f, r, k);
        }
        snprintf(path, sizeof path, "%s/%s", dir, FILES[f]);
        tu_write(path, buf, sizeof buf);
    }
}

// Checks a loaded set: files f0..f0+n_files-1 in order.
static void check_set(const Dataset *d, int f0, int n_files) {
    assert_int_equal(d->n, n_files * PER_FILE);
    assert_int_equal(d->c, 3);
    assert_int_equal(d->h, 32);
    assert_int_equal(d->w, 32);
    assert_int_equal(d->n_classes, 10);
    for (int f = 0; f < n_files; f++)
        for (int r = 0; r < PER_FILE; r++) {
            int i = f * PER_FILE + r;
            assert_int_equal(d->labels[i], label_of(f0 + f, r));
            for (int k = 0; k < 3072; k++)
                if (d->images[(size_t)i * 3072 + k] != byte_of(f0 + f, r, k)) fail_msg("image %d byte %d", i, k);
        }
}

// Loads dir, expects failure with a message holding s1 and s2; outputs are empty.
static void expect_fail(const char *dir, const char *s1, const char *s2) {
    Dataset tr, te;
    HpErr err = {{0}};
    int rc = cifar10_load_dir(dir, &tr, &te, &err);
    if (rc == 0 || !strstr(err.msg, s1) || (s2 && !strstr(err.msg, s2)))
        fail_msg("rc %d, message '%s', wanted '%s' and '%s'", rc, err.msg, s1, s2 ? s2 : "");
    assert_null(tr.images);
    assert_null(te.images);
}

static void test_load(void **state) {
    (void)state;
    char dir[64];
    tu_tmpdir(dir, sizeof dir);
    make_cifar(dir);
    Dataset tr, te;
    HpErr err = {{0}};
    if (cifar10_load_dir(dir, &tr, &te, &err) != 0) fail_msg("%s", err.msg);
    check_set(&tr, 0, 5);
    check_set(&te, 5, 1);
    dataset_free(&tr);
    dataset_free(&te);
    assert_int_equal(dataset_load("cifar10", dir, &tr, &te, &err), 0);
    check_set(&tr, 0, 5);
    dataset_free(&tr);
    dataset_free(&te);
    // the training set alone (test NULL) does not need the test batch
    char path[128];
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    assert_int_equal(unlink(path), 0);
    if (dataset_load("cifar10", dir, &tr, NULL, &err) != 0) fail_msg("%s", err.msg);
    check_set(&tr, 0, 5);
    dataset_free(&tr);
    assert_int_equal(dataset_load("cifar10", dir, &tr, &te, &err), -1);
    tu_rmtree(dir);
}

// The test set alone (train NULL) does not need the training batches, in DIR or in the
// archive's subdirectory; a missing test batch is named.
static void test_test_only(void **state) {
    (void)state;
    char dir[64], sub[128], path[200];
    tu_tmpdir(dir, sizeof dir);
    snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    for (int k = 0; k < 2; k++) {
        const char *where = k ? sub : dir;
        make_cifar(where);
        for (int f = 0; f < 5; f++) {
            snprintf(path, sizeof path, "%s/%s", where, FILES[f]);
            assert_int_equal(unlink(path), 0);
        }
        Dataset te;
        HpErr err = {{0}};
        if (dataset_load("cifar10", dir, NULL, &te, &err) != 0) fail_msg("%s", err.msg);
        check_set(&te, 5, 1);
        dataset_free(&te);
        snprintf(path, sizeof path, "%s/test_batch.bin", where);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(cifar10_load_dir(dir, NULL, &te, &err), -1);
        assert_non_null(strstr(err.msg, "test_batch.bin: cannot open"));
        assert_null(te.images);
    }
    tu_rmtree(dir);
}

// The files inside the archive's cifar-10-batches-bin subdirectory are found too.
static void test_subdir(void **state) {
    (void)state;
    char dir[64], sub[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    make_cifar(sub);
    Dataset tr, te;
    HpErr err = {{0}};
    if (cifar10_load_dir(dir, &tr, &te, &err) != 0) fail_msg("%s", err.msg);
    check_set(&tr, 0, 5);
    check_set(&te, 5, 1);
    dataset_free(&tr);
    dataset_free(&te);
    tu_rmtree(dir);
}

static void test_bad_size(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    make_cifar(dir);
    uint8_t buf[REC + 5] = {0};
    snprintf(path, sizeof path, "%s/data_batch_3.bin", dir);
    tu_write(path, buf, sizeof buf);
    expect_fail(dir, path, "size 3078 bytes is not a non-zero multiple of the record size 3073");
    tu_write(path, buf, 0);
    expect_fail(dir, path, "size 0 bytes");
    tu_rmtree(dir);
}

static void test_bad_label(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    make_cifar(dir);
    uint8_t buf[PER_FILE * REC] = {0};
    buf[REC] = 10;  // record 1
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    tu_write(path, buf, sizeof buf);
    expect_fail(dir, path, "record 1: label 10 is out of range (0..9)");
    tu_rmtree(dir);
}

static void test_missing(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/absent", dir);
    expect_fail(path, path, "no such directory");
    make_cifar(dir);
    snprintf(path, sizeof path, "%s/data_batch_5.bin", dir);
    assert_int_equal(unlink(path), 0);
    expect_fail(dir, path, "cannot open: No such file or directory");
    tu_rmtree(dir);
}

// A FIFO in place of a batch file is refused, not waited on for ever (an alarm ends the test if
// the open blocks).
static void test_fifo(void **state) {
    (void)state;
    char dir[64], path[128], want[160];
    tu_tmpdir(dir, sizeof dir);
    make_cifar(dir);
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkfifo(path, 0600), 0);
    snprintf(want, sizeof want, "%s: not a regular file", path);
    alarm(10);
    expect_fail(dir, want, NULL);
    alarm(0);
    tu_rmtree(dir);
}

// Peeks dir (cifar10_peek_dir), expects failure with a message holding s1 and s2.
static void expect_peek_fail(const char *dir, const char *s1, const char *s2) {
    int n = -1;
    HpErr err = {{0}};
    int rc = cifar10_peek_dir(dir, &n, &err);
    if (rc == 0 || !strstr(err.msg, s1) || !strstr(err.msg, s2))
        fail_msg("rc %d, message '%s', wanted '%s' and '%s'", rc, err.msg, s1, s2);
}

// The peek gives the training set's size from the batch files' sizes, without the test batch,
// in dir or in the archive's subdirectory; dataset_peek adds the shape and the class count.
static void test_peek(void **state) {
    (void)state;
    char dir[64], sub[128], path[200];
    tu_tmpdir(dir, sizeof dir);
    make_cifar(dir);
    int n = -1, classes = -1;
    Shape in = {0};
    HpErr err = {{0}};
    if (cifar10_peek_dir(dir, &n, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(n, 5 * PER_FILE);
    if (dataset_peek("cifar10", dir, &in, &n, &classes, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(n, 5 * PER_FILE);
    assert_int_equal(classes, 10);
    assert_true(in.c == 3 && in.h == 32 && in.w == 32);
    snprintf(path, sizeof path, "%s/test_batch.bin", dir);  // the test batch is not read
    assert_int_equal(unlink(path), 0);
    n = -1;
    if (cifar10_peek_dir(dir, &n, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(n, 5 * PER_FILE);
    uint8_t buf[3 * REC] = {0};  // one batch file of 3 records
    snprintf(path, sizeof path, "%s/data_batch_2.bin", dir);
    tu_write(path, buf, sizeof buf);
    if (cifar10_peek_dir(dir, &n, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(n, 4 * PER_FILE + 3);
    tu_rmtree(dir);
    tu_tmpdir(dir, sizeof dir);
    snprintf(sub, sizeof sub, "%s/cifar-10-batches-bin", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    make_cifar(sub);
    n = -1;
    if (cifar10_peek_dir(dir, &n, &err) != 0) fail_msg("%s", err.msg);
    assert_int_equal(n, 5 * PER_FILE);
    tu_rmtree(dir);
}

// A peek refuses what the load refuses in the training batch files: a missing directory, a
// missing file, a file cut short in a record or empty, a FIFO; the message names the file.
static void test_peek_bad(void **state) {
    (void)state;
    char dir[64], path[128];
    tu_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/absent", dir);
    expect_peek_fail(path, path, "no such directory");
    make_cifar(dir);
    snprintf(path, sizeof path, "%s/data_batch_4.bin", dir);
    assert_int_equal(unlink(path), 0);
    expect_peek_fail(dir, path, "cannot open: No such file or directory");
    make_cifar(dir);
    uint8_t buf[PER_FILE * REC] = {0};
    snprintf(path, sizeof path, "%s/data_batch_3.bin", dir);
    tu_write(path, buf, sizeof buf - 100);  // truncated in its second record
    expect_peek_fail(dir, path, "size 6046 bytes is not a non-zero multiple of the record size 3073");
    tu_write(path, buf, 0);
    expect_peek_fail(dir, path, "size 0 bytes");
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkfifo(path, 0600), 0);
    alarm(10);  // a FIFO is refused, not waited on
    expect_peek_fail(dir, path, "not a regular file");
    alarm(0);
    tu_rmtree(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load),      cmocka_unit_test(test_subdir), cmocka_unit_test(test_bad_size),
        cmocka_unit_test(test_test_only),
        cmocka_unit_test(test_bad_label), cmocka_unit_test(test_missing), cmocka_unit_test(test_fifo),
        cmocka_unit_test(test_peek),      cmocka_unit_test(test_peek_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
