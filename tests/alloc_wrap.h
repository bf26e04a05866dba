// alloc_wrap.h: the allocator wrappers of a test binary linked with
// -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc (test_oom, test_memsize): the library's objects
// call __wrap_X, which the test defines, and __real_X reaches the C library's.
#ifndef HP_TEST_ALLOC_WRAP_H
#define HP_TEST_ALLOC_WRAP_H

#include <stddef.h>

void *__real_malloc(size_t size);
void *__real_calloc(size_t count, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t count, size_t size);
void *__wrap_realloc(void *p, size_t size);

#endif
