// xalloc.h: allocation for the programs around the library (the command line, the tests, the
// benchmarks), which may exit: on out-of-memory they print one error line and exit with status 1.
// The library itself allocates with hp_alloc and hp_zalloc (nn/err.h) and returns the error.
#ifndef HP_XALLOC_H
#define HP_XALLOC_H

#include <stdio.h>
#include <stdlib.h>

#include "../nn/err.h"

// p, or (p NULL) exits with "hprune: error: <err's message>".
static inline void *x_or_exit(void *p, const HpErr *err) {
    if (p) return p;
    fprintf(stderr, "hprune: error: %s\n", err->msg);
    exit(1);
}

// count * size bytes (uninitialised), or exits with "hprune: error: out of memory: ...".
static inline void *xalloc(size_t count, size_t size) {
    HpErr err;
    return x_or_exit(hp_alloc(count, size, &err), &err);
}

// bytes (uninitialised), or exits as xalloc does.
static inline void *xmalloc(size_t bytes) { return xalloc(bytes, 1); }

// count * size zeroed bytes, or exits as xalloc does.
static inline void *xcalloc(size_t count, size_t size) {
    HpErr err;
    return x_or_exit(hp_zalloc(count, size, &err), &err);
}

#endif
