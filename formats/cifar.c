// cifar.c: CIFAR-10 binary batches. Each record is one label byte (0..9) followed by
// 3072 bytes: the R, G and B planes of a 32x32 image, row-major.
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats.h"

#define CIFAR_C 3
#define CIFAR_HW 32
#define CIFAR_IMAGE (CIFAR_C * CIFAR_HW * CIFAR_HW)  // 3072
#define CIFAR_RECORD (1 + CIFAR_IMAGE)              // 3073
#define CIFAR_CLASSES 10
#define CIFAR_TRAIN_FILES 5
#define CIFAR_MAX_RECORDS (1 << 20)  // per set: far above the real 50000, guards int overflow
#define CIFAR_SUBDIR "cifar-10-batches-bin"

// The training set's batch files, in order.
static const char *const TRAIN_NAMES[CIFAR_TRAIN_FILES] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                                           "data_batch_4.bin", "data_batch_5.bin"};

// Returns true if path exists and is a directory.
static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// Returns true if path exists.
static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

// Opens one batch file (a regular file: a FIFO is refused, not waited on); *records gets its
// record count (its size must be a non-zero multiple of the record size). On failure nothing is
// left open.
static int batch_open(const char *path, FILE **fp, int *records, HpErr *err) {
    *fp = NULL;
    uint64_t size;
    FILE *f = fopen_regular(path, &size, err);
    if (!f) return hp_prefix(err, path);
    if (size == 0 || size % CIFAR_RECORD != 0) {
        hp_fail(err, "%s: size %llu bytes is not a non-zero multiple of the record size %d "
                "(1 label byte + %d image bytes)", path, (unsigned long long)size, CIFAR_RECORD, CIFAR_IMAGE);
        goto fail;
    }
    if (size / CIFAR_RECORD > CIFAR_MAX_RECORDS) {
        hp_fail(err, "%s: %llu records, more than the %d accepted", path,
                (unsigned long long)(size / CIFAR_RECORD), CIFAR_MAX_RECORDS);
        goto fail;
    }
    *records = (int)(size / CIFAR_RECORD);
    *fp = f;
    return 0;
fail:
    fclose(f);
    return -1;
}

// Reads `records` records from fp into images first..first+records-1 of d, checking every
// read and label, and that the file ends there. Closes fp.
static int batch_read(FILE *fp, const char *path, int records, Dataset *d, int first, HpErr *err) {
    uint8_t rec[CIFAR_RECORD];
    int rc = -1;
    for (int r = 0; r < records; r++) {
        size_t got = fread(rec, 1, CIFAR_RECORD, fp);
        if (got != CIFAR_RECORD) {
            if (ferror(fp))
                hp_fail(err, "%s: record %d: read error: %s", path, r, strerror(errno));
            else
                hp_fail(err, "%s: record %d: truncated (%zu of %d bytes)", path, r, got, CIFAR_RECORD);
            goto done;
        }
        if (rec[0] >= CIFAR_CLASSES) {
            hp_fail(err, "%s: record %d: label %d is out of range (0..%d)", path, r, rec[0],
                    CIFAR_CLASSES - 1);
            goto done;
        }
        d->labels[first + r] = rec[0];
        memcpy(d->images + (size_t)(first + r) * CIFAR_IMAGE, rec + 1, CIFAR_IMAGE);
    }
    if (fgetc(fp) != EOF) {
        hp_fail(err, "%s: trailing data after %d records", path, records);
        goto done;
    }
    rc = 0;
done:
    fclose(fp);
    return rc;
}

// Loads the named batch files (in order) of base into d. On failure d is left empty.
static int load_set(const char *base, const char *const *names, int n_files, Dataset *d, HpErr *err) {
    FILE *fps[CIFAR_TRAIN_FILES] = {0};
    char paths[CIFAR_TRAIN_FILES][4096];
    int records[CIFAR_TRAIN_FILES] = {0}, total = 0, first = 0;
    memset(d, 0, sizeof *d);
    HP_ASSERT(n_files <= CIFAR_TRAIN_FILES);
    for (int i = 0; i < n_files; i++) {
        int n = snprintf(paths[i], sizeof paths[i], "%s/%s", base, names[i]);
        if (n < 0 || (size_t)n >= sizeof paths[i]) {
            hp_fail(err, "%s: path too long", base);
            goto fail;
        }
        if (batch_open(paths[i], &fps[i], &records[i], err) < 0) goto fail;
        total += records[i];  // at most 5 * 2^20: no overflow
    }
    if (dataset_alloc(d, total, CIFAR_C, CIFAR_HW, CIFAR_HW, CIFAR_CLASSES, err) < 0) {
        hp_prefix(err, n_files == 1 ? paths[0] : base);
        goto fail;
    }
    for (int i = 0; i < n_files; i++) {
        FILE *fp = fps[i];
        fps[i] = NULL;  // batch_read closes it
        if (batch_read(fp, paths[i], records[i], d, first, err) < 0) goto fail;
        first += records[i];
    }
    return 0;
fail:
    for (int i = 0; i < n_files; i++)
        if (fps[i]) fclose(fps[i]);
    dataset_free(d);
    return -1;
}

// Finds where the batch files of dir sit: dir itself, or the archive's cifar-10-batches-bin
// subdirectory (when dir has no file `probe`, the first file to be read, and that subdirectory
// exists); writes it into base (cap bytes). Returns 0, or -1 with err set (no directory).
static int find_base(const char *dir, const char *probe, char *base, size_t cap, HpErr *err) {
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT) return hp_fail(err, "%s: no such directory", dir);
        return hp_fail(err, "%s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) return hp_fail(err, "%s: not a directory", dir);
    int n = snprintf(base, cap, "%s/%s", dir, probe);
    if (n < 0 || (size_t)n >= cap) return hp_fail(err, "%s: path too long", dir);
    bool in_dir = exists(base);
    n = snprintf(base, cap, "%s/%s", dir, CIFAR_SUBDIR);
    if (in_dir || n < 0 || (size_t)n >= cap || !is_dir(base)) snprintf(base, cap, "%s", dir);
    return 0;
}

int cifar10_load_dir(const char *dir, Dataset *train, Dataset *test, HpErr *err) {
    static const char *const test_names[1] = {"test_batch.bin"};
    HP_ASSERT(train || test);
    if (train) memset(train, 0, sizeof *train);
    if (test) memset(test, 0, sizeof *test);
    char base[4096];
    if (find_base(dir, train ? TRAIN_NAMES[0] : test_names[0], base, sizeof base, err) < 0) return -1;
    if (train && load_set(base, TRAIN_NAMES, CIFAR_TRAIN_FILES, train, err) < 0) return -1;
    if (test && load_set(base, test_names, 1, test, err) < 0) {
        if (train) dataset_free(train);
        return -1;
    }
    return 0;
}

int cifar10_peek_dir(const char *dir, int *n_train, HpErr *err) {
    char base[4096], path[4200];
    if (find_base(dir, TRAIN_NAMES[0], base, sizeof base, err) < 0) return -1;
    *n_train = 0;
    for (int i = 0; i < CIFAR_TRAIN_FILES; i++) {
        FILE *fp;
        int records = 0;
        snprintf(path, sizeof path, "%s/%s", base, TRAIN_NAMES[i]);
        if (batch_open(path, &fp, &records, err) < 0) return -1;
        fclose(fp);
        *n_train += records;  // at most 5 * 2^20: no overflow
    }
    return 0;
}
