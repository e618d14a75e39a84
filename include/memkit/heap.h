/**
 * @file heap.h
 * @brief The process heap: a thread-caching general-purpose allocator.
 *
 * The mk_malloc family behaves like the C library's (same arguments, same
 * results, NULL and errno ENOMEM/EINVAL on failure) and is what the preload
 * library libmemkit-malloc.so exports under the C names. Every function is
 * thread-safe unless its comment says otherwise; a block may be freed by any
 * thread. Invalid or double frees that the heap detects call the error
 * handler (mk_heap_set_error_handler), which by default prints a message to
 * standard error and aborts, as the C library does.
 *
 * First-class heaps (mk_heap_new) give arena-style allocation: their blocks
 * are freed with mk_free one by one or all together by mk_heap_destroy.
 *
 * Options come from the environment variable MEMKIT_OPTIONS, read at the
 * first allocation, or from mk_heap_configure(); see docs/HEAP.md.
 */
#ifndef MEMKIT_HEAP_H
#define MEMKIT_HEAP_H

#include <stddef.h>
#include <stdint.h>

#include "memkit/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A first-class heap (opaque). */
typedef struct mk_heap mk_heap;

/** Statistics of the process heap or of one first-class heap. Byte counts
 *  are usable sizes (a size class or a page multiple), not requested sizes. */
typedef struct mk_heap_stats {
    uint64_t current;      /**< bytes in live blocks */
    uint64_t peak;         /**< highest `current` seen; sampled whenever the heap takes new
                                pages, so it is exact to within one span per thread */
    uint64_t mapped;       /**< bytes held from the OS now (segments and large blocks) */
    uint64_t peak_mapped;  /**< highest `mapped` */
    uint64_t n_alloc;      /**< successful allocations (every function of the family) */
    uint64_t n_free;       /**< blocks freed */
    uint64_t n_failed;     /**< allocations that failed (ENOMEM) */
    uint64_t n_large;      /**< large blocks (own mappings) allocated */
    uint64_t large_cached; /**< bytes of freed large mappings kept for reuse (resident) */
    uint64_t dirty;        /**< free pages of spans still resident (to be purged) */
    uint64_t returned;     /**< bytes given back to the OS so far (purge + unmap + brk) */
    uint64_t n_os_calls;   /**< OS calls made by the heap (map, unmap, purge, brk) */
    uint64_t segments;     /**< segments (4 MiB units of small/medium spans) alive */
    uint64_t heaps;        /**< heaps alive (thread heaps and first-class heaps) */
    uint32_t source_sbrk;  /**< 1 when memory comes from the program break */
} mk_heap_stats;

/**
 * @brief Allocate size bytes, aligned to 16.
 * @param size bytes wanted; 0 gives a unique minimal block.
 * @return the block, or NULL with errno ENOMEM.
 */
void *mk_malloc(size_t size);

/**
 * @brief Free a block of this heap (any thread may free any block).
 * @param ptr a block from this family or NULL (nothing happens).
 * An invalid pointer or a double free that is detected calls the error
 * handler (default: message and abort).
 */
void mk_free(void *ptr);

/**
 * @brief Allocate n * size zeroed bytes.
 * @return the block, or NULL with errno ENOMEM (also when n * size overflows).
 */
void *mk_calloc(size_t n, size_t size);

/**
 * @brief Resize a block, keeping its contents up to the smaller size.
 * @param ptr NULL (then like mk_malloc) or a live block.
 * @param size new size; 0 frees ptr and returns NULL (glibc behaviour).
 * @return the block (maybe moved), or NULL with errno ENOMEM; ptr is then
 *         left untouched.
 */
void *mk_realloc(void *ptr, size_t size);

/**
 * @brief mk_realloc(ptr, n * size) with an overflow check.
 * @return as mk_realloc; NULL with errno ENOMEM when n * size overflows.
 */
void *mk_reallocarray(void *ptr, size_t n, size_t size);

/**
 * @brief Allocate size bytes aligned to align.
 * @param align a power of two (other values are rounded up to one, as glibc does).
 * @return the block, or NULL with errno ENOMEM (EINVAL if align is absurdly large).
 */
void *mk_memalign(size_t align, size_t size);

/**
 * @brief POSIX aligned allocation.
 * @param out receives the block (untouched on failure).
 * @param align a power of two and a multiple of sizeof(void *).
 * @return 0, EINVAL for a bad alignment, ENOMEM. errno is not changed.
 */
int mk_posix_memalign(void **out, size_t align, size_t size);

/**
 * @brief C11 aligned allocation.
 * @param align a power of two (else NULL with errno EINVAL).
 * @param size any size (C17 no longer requires a multiple of align).
 * @return the block, or NULL with errno ENOMEM/EINVAL.
 */
void *mk_aligned_alloc(size_t align, size_t size);

/**
 * @brief Allocate size bytes aligned to the page size.
 * @return the block, or NULL with errno ENOMEM.
 */
void *mk_valloc(size_t size);

/**
 * @brief Like mk_valloc with size rounded up to whole pages (0 gives one page).
 * @return the block, or NULL with errno ENOMEM.
 */
void *mk_pvalloc(size_t size);

/**
 * @brief Bytes usable in a block (at least the size requested).
 * @param ptr a live block, or NULL (returns 0).
 */
size_t mk_malloc_usable_size(const void *ptr);

/**
 * @brief C23 free_sized: free a block allocated with the given size.
 * @param size the size asked for (not checked beyond the block's usable size).
 */
void mk_free_sized(void *ptr, size_t size);

/**
 * @brief C23 free_aligned_sized: free a block from mk_aligned_alloc.
 */
void mk_free_aligned_sized(void *ptr, size_t align, size_t size);

/**
 * @brief Give back to the OS now every free page the heap can: the calling
 *        thread's free spans, those of exited threads' heaps, empty segments
 *        and the large-block cache.
 * @return MK_OK. Thread-safe.
 */
int mk_heap_trim(void);

/**
 * @brief Read statistics.
 * @param heap a first-class heap (call from the thread using it: its remote
 *             frees are collected first), or NULL for the whole process.
 * @param out receives the statistics.
 * @return MK_OK, MK_EINVAL. Counters of other threads are read without
 *         stopping them: a consistent snapshot only when they are idle.
 */
int mk_heap_get_stats(mk_heap *heap, mk_heap_stats *out);

/**
 * @brief Format statistics as one JSON object.
 * @param stats the statistics.
 * @param buf where to write (may be NULL when cap is 0).
 * @param cap capacity of buf; the text is NUL-terminated and cut if needed.
 * @return the length of the full text (as snprintf), or MK_EINVAL.
 */
int mk_heap_stats_json(const mk_heap_stats *stats, char *buf, size_t cap);

/**
 * @brief Set options at run time, in the MEMKIT_OPTIONS syntax
 *        ("purge_delay=100,purge_threshold=8M,stats").
 * @return MK_OK; MK_EINVAL for an unknown option or bad value (the others
 *         still apply); MK_EBUSY for source= after the first allocation.
 */
int mk_heap_configure(const char *options);

/**
 * @brief Set what happens on detected heap corruption (invalid or double
 *        free, a damaged header).
 * @param fn called with a message and the pointer; NULL restores the default
 *        (message on stderr, then abort). If fn returns, the operation is
 *        abandoned (the block is leaked).
 */
void mk_heap_set_error_handler(void (*fn)(const char *message, void *ptr));

/**
 * @brief Create a first-class heap.
 * @param err optional: receives MK_OK or MK_ENOMEM.
 * @return the heap, or NULL.
 * A first-class heap is used by one thread at a time (allocation is not
 * locked); its blocks may be freed with mk_free from any thread.
 */
mk_heap *mk_heap_new(int *err);

/**
 * @brief Allocate from a first-class heap (same rules as mk_malloc).
 * @return the block, or NULL with errno ENOMEM (EINVAL if heap is not a heap).
 */
void *mk_heap_malloc(mk_heap *heap, size_t size);

/**
 * @brief Zeroed allocation from a first-class heap (as mk_calloc).
 */
void *mk_heap_calloc(mk_heap *heap, size_t n, size_t size);

/**
 * @brief Aligned allocation from a first-class heap (as mk_memalign).
 */
void *mk_heap_memalign(mk_heap *heap, size_t align, size_t size);

/**
 * @brief Resize a block of a first-class heap; a moved block comes from heap.
 * @return as mk_realloc.
 */
void *mk_heap_realloc(mk_heap *heap, void *ptr, size_t size);

/**
 * @brief Destroy a first-class heap and free every block it still holds at
 *        once (its pages go back to the OS).
 * @param heap from mk_heap_new, or NULL (nothing happens).
 * @return MK_OK, MK_EINVAL (not a first-class heap). Nobody may use its
 *         blocks afterwards.
 */
int mk_heap_destroy(mk_heap *heap);

#ifdef __cplusplus
}
#endif
#endif
