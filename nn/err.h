// err.h: status codes and error messages for library code (which never prints or exits).
#ifndef HP_ERR_H
#define HP_ERR_H

#include <stddef.h>
#include <stdint.h>

// A library call returns 0 on success or -1 with err->msg filled in.
typedef struct {
    char msg[512];
} HpErr;

// Formats msg into err (if err is not NULL) and returns -1.
int hp_fail(HpErr *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Prefixes err->msg with "prefix: " (used to add a file name to an inner error); returns -1.
int hp_prefix(HpErr *err, const char *prefix);

// Aborts with a message: for programmer errors (broken invariants), never for bad input.
#define HP_ASSERT(cond)                                                         \
    do {                                                                        \
        if (!(cond)) hp_assert_fail(#cond, __FILE__, __LINE__);                 \
    } while (0)
void hp_assert_fail(const char *cond, const char *file, int line) __attribute__((noreturn));

// count * size bytes, uninitialised (hp_alloc) or zeroed (hp_zalloc); at least one byte, so
// NULL always means failure. Returns NULL with err set ("out of memory: cannot allocate 6.8 GB")
// when the product overflows or the system refuses.
void *hp_alloc(size_t count, size_t size, HpErr *err);
void *hp_zalloc(size_t count, size_t size, HpErr *err);

// a + b and a * b saturating at SIZE_MAX: sizes of what an allocation would take, where a count
// too large for size_t stays too large (no allocation can meet SIZE_MAX) instead of wrapping.
static inline size_t hp_size_add(size_t a, size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }
static inline size_t hp_size_mul(size_t a, size_t b) { return b && a > SIZE_MAX / b ? SIZE_MAX : a * b; }

#endif
