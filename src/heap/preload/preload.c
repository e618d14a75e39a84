/*
 * libmemkit-malloc.so: the C library's allocation functions, defined here
 * under their own names so that LD_PRELOAD (or linking it first) puts the
 * memkit process heap under every malloc of a program, C++ included
 * (libstdc++'s operator new/delete call malloc/free and aligned_alloc).
 *
 * No system header: the prototypes are written out, and the heap is
 * reached through memkit/heap.h. Only these names are exported
 * (everything else in the library is built -fvisibility=hidden), so the
 * calls below are direct and the program cannot interpose on our internals.
 */
#include <stddef.h>

#include "memkit/heap.h"

#define MK_EXPORT __attribute__((visibility("default")))

MK_EXPORT void *malloc(size_t size);
MK_EXPORT void free(void *ptr);
MK_EXPORT void *calloc(size_t n, size_t size);
MK_EXPORT void *realloc(void *ptr, size_t size);
MK_EXPORT void *reallocarray(void *ptr, size_t n, size_t size);
MK_EXPORT void *memalign(size_t align, size_t size);
MK_EXPORT int posix_memalign(void **out, size_t align, size_t size);
MK_EXPORT void *aligned_alloc(size_t align, size_t size);
MK_EXPORT void *valloc(size_t size);
MK_EXPORT void *pvalloc(size_t size);
MK_EXPORT size_t malloc_usable_size(void *ptr);
MK_EXPORT void free_sized(void *ptr, size_t size);
MK_EXPORT void free_aligned_sized(void *ptr, size_t align, size_t size);
MK_EXPORT void cfree(void *ptr);
MK_EXPORT int malloc_trim(size_t pad);

void *malloc(size_t size) { return mk_malloc(size); }
void free(void *ptr) { mk_free(ptr); }
void *calloc(size_t n, size_t size) { return mk_calloc(n, size); }
void *realloc(void *ptr, size_t size) { return mk_realloc(ptr, size); }
void *reallocarray(void *ptr, size_t n, size_t size) { return mk_reallocarray(ptr, n, size); }
void *memalign(size_t align, size_t size) { return mk_memalign(align, size); }
int posix_memalign(void **out, size_t align, size_t size) {
    return mk_posix_memalign(out, align, size);
}
void *aligned_alloc(size_t align, size_t size) { return mk_aligned_alloc(align, size); }
void *valloc(size_t size) { return mk_valloc(size); }
void *pvalloc(size_t size) { return mk_pvalloc(size); }
size_t malloc_usable_size(void *ptr) { return mk_malloc_usable_size(ptr); }
void free_sized(void *ptr, size_t size) { mk_free_sized(ptr, size); }
void free_aligned_sized(void *ptr, size_t align, size_t size) {
    mk_free_aligned_sized(ptr, align, size);
}
/* Old names some programs still call. */
void cfree(void *ptr) { mk_free(ptr); }
/* glibc's trim: 1 if memory may have been released. */
int malloc_trim(size_t pad) {
    (void)pad;
    return mk_heap_trim() == MK_OK;
}
