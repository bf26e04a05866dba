// testutil.h: shared helpers for the cmocka tests (fixtures are made by the tests themselves).
#ifndef HP_TESTUTIL_H
#define HP_TESTUTIL_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>

#include "nn/rng.h"

// Fills a[0..n) with uniform values in [lo, hi).
static inline void tu_fill_uniform(float *a, size_t n, float lo, float hi, Rng *rng) {
    for (size_t i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng_uniform(rng);
}

// Returns ||a - b|| / max(||b||, tiny), accumulated in double.
static inline double tu_rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return sqrt(num) / fmax(sqrt(den), 1e-30);
}

// Makes a fresh temporary directory for a test's files; writes its path into buf.
static inline void tu_tmpdir(char *buf, size_t cap) {
    snprintf(buf, cap, "/tmp/hprune-test-XXXXXX");
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        abort();
    }
}

// Writes len bytes to path (test fixture files); aborts on failure.
static inline void tu_write(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

// Returns the number of entries of dir other than "." and ".." (-1 if it cannot be read).
static inline int tu_count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
    closedir(d);
    return n;
}

// Removes a directory tree made by tu_tmpdir.
static inline void tu_rmtree(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

#endif
