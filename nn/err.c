// err.c: error message helpers and allocation that reports out-of-memory.
#include "err.h"

#include <stdarg.h>
#include <stdint.h>
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

// Sets err to the out-of-memory message for count * size bytes; returns NULL.
static void *no_memory(size_t count, size_t size, HpErr *err) {
    if (size && count > SIZE_MAX / size) {
        hp_fail(err, "out of memory: cannot allocate %zu x %zu bytes (more than the address space)", count, size);
        return NULL;
    }
    double bytes = (double)count * (double)size;
    static const char *const units[] = {"bytes", "kB", "MB", "GB", "TB", "PB", "EB"};
    int u = 0;
    while (bytes >= 1000.0 && u < 6) bytes /= 1000.0, u++;
    if (u == 0)
        hp_fail(err, "out of memory: cannot allocate %zu bytes", count * size);
    else
        hp_fail(err, "out of memory: cannot allocate %.1f %s", bytes, units[u]);
    return NULL;
}

void *hp_alloc(size_t count, size_t size, HpErr *err) {
    if (size && count > SIZE_MAX / size) return no_memory(count, size, err);
    size_t bytes = count * size;
    void *p = malloc(bytes ? bytes : 1);
    return p ? p : no_memory(count, size, err);
}

void *hp_zalloc(size_t count, size_t size, HpErr *err) {
    if (size && count > SIZE_MAX / size) return no_memory(count, size, err);
    void *p = count && size ? calloc(count, size) : calloc(1, 1);
    return p ? p : no_memory(count, size, err);
}
