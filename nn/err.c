// err.c: error message helpers and checked allocation.
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int hp_fail(HpErr *err, const char *fmt, ...) {
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int hp_prefix(HpErr *err, const char *prefix) {
    if (!err) return -1;
    char tmp[2 * sizeof err->msg];
    snprintf(tmp, sizeof tmp, "%s: %s", prefix, err->msg);
    snprintf(err->msg, sizeof err->msg, "%.*s", (int)sizeof err->msg - 1, tmp);
    return -1;
}

void hp_assert_fail(const char *cond, const char *file, int line) {
    fprintf(stderr, "hprune: internal error: %s:%d: assertion '%s' failed\n", file, line, cond);
    abort();
}

void *hp_malloc(size_t bytes) {
    if (bytes == 0) return NULL;
    void *p = malloc(bytes);
    if (!p) {
        fprintf(stderr, "hprune: out of memory allocating %zu bytes\n", bytes);
        abort();
    }
    return p;
}

void *hp_calloc(size_t count, size_t size) {
    if (count == 0 || size == 0) return NULL;
    void *p = calloc(count, size);
    if (!p) {
        fprintf(stderr, "hprune: out of memory allocating %zu x %zu bytes\n", count, size);
        abort();
    }
    return p;
}
