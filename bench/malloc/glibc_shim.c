/*
 * libmalloc-glibc-shim.so: a preload that sends the malloc family to the C
 * library's own allocator (__libc_malloc and friends).
 *
 * Needed for programs that are linked against another allocator: Debian's
 * redis-server links libjemalloc.so.2, so "no preload" would measure
 * jemalloc, not glibc. With this shim preloaded, redis's malloc/free resolve
 * here first and reach glibc; the cost is one extra jump per call. run.py
 * uses it for the glibc column of such programs only.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>

void *__libc_malloc(size_t size);
void *__libc_calloc(size_t n, size_t size);
void *__libc_realloc(void *p, size_t size);
void __libc_free(void *p);
void *__libc_memalign(size_t align, size_t size);
void *__libc_valloc(size_t size);
void *__libc_pvalloc(size_t size);

void *malloc(size_t size) { return __libc_malloc(size); }
void *calloc(size_t n, size_t size) { return __libc_calloc(n, size); }
void *realloc(void *p, size_t size) { return __libc_realloc(p, size); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t align, size_t size) { return __libc_memalign(align, size); }
void *valloc(size_t size) { return __libc_valloc(size); }
void *pvalloc(size_t size) { return __libc_pvalloc(size); }
void *aligned_alloc(size_t align, size_t size) { return __libc_memalign(align, size); }

int posix_memalign(void **out, size_t align, size_t size) {
    if (align < sizeof(void *) || (align & (align - 1))) return EINVAL;
    void *p = __libc_memalign(align, size);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

/* glibc has no __libc_ name for it: take libc's own symbol, not the next
 * definition in search order (that would be the program's jemalloc). */
size_t malloc_usable_size(void *p) {
    static size_t (*libc_usable)(void *);
    if (!libc_usable) {
        void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
        if (libc) libc_usable = (size_t(*)(void *))(uintptr_t)dlsym(libc, "malloc_usable_size");
        if (!libc_usable) abort();
    }
    return libc_usable(p);
}
