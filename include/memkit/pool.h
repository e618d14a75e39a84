/**
 * @file pool.h
 * @brief A private memory pool: malloc-style allocation from one range,
 *        over memory the caller gives or over a mapping the pool owns.
 *
 * A pool is a thin layer over the block engine (memkit/region.h): it puts
 * its own control block at the start of the memory, the engine's region
 * right after it, and hands out pointers instead of offsets. It adds an
 * optional lock (::MK_POOL_THREADSAFE), C-library conventions (NULL on
 * failure, free(NULL) is a no-op, calloc overflow checks), and page
 * protection of blocks requested with mk_pool_alloc_pages().
 *
 * Errors. Functions that return an int return MK_OK or a negative MK_E*
 * code. Functions that return a pointer return NULL on failure and take a
 * last parameter `int *err`: when err is not NULL it receives MK_OK on
 * success or the error code on failure. There is no hidden "last error"
 * state, so the scheme is safe with several threads on one pool.
 *
 * Sizes. A request of size 0 is served like size 1: the pointer is unique
 * and must be freed (the engine's rule, as glibc's malloc).
 *
 * Protection. Only page blocks can be protected. A page block is one
 * returned by mk_pool_alloc_pages(): its payload starts on a page boundary
 * and it holds whole pages, so mprotect() covers exactly the block while
 * the engine's header word (just before the payload, in the previous page)
 * stays writable. mk_pool_protect() on any other block returns MK_EINVAL.
 * mk_pool_free() of a protected block first restores read-write access;
 * mk_pool_realloc() of a protected block fails with MK_EPROTECTED (its
 * contents were declared frozen or inaccessible). A page block that is
 * reallocated becomes an ordinary block.
 *
 * Overheads: mk_pool_min_size() gives the smallest usable size; the
 * control block, a table of 4 bits per page of the range (protection
 * state), and the region header precede the first block.
 */
#ifndef MEMKIT_POOL_H
#define MEMKIT_POOL_H

#include <stddef.h>
#include <stdio.h>

#include "memkit/error.h"
#include "memkit/region.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A pool. Opaque; it lives at the start of the pool's own memory. */
typedef struct mk_pool mk_pool;

/** Flags of ::mk_pool_config. */
enum mk_pool_flags {
    /** Serialise every operation with a (process-private) mutex. Without
     *  it the pool must be used by one thread at a time. */
    MK_POOL_THREADSAFE = 1u << 0,
    /** Deferred coalescing of small blocks (the engine's MK_REGION_QUICK):
     *  faster small alloc/free, at the cost of parking a little memory.
     *  Not with MK_POLICY_BUDDY. */
    MK_POOL_QUICK = 1u << 1,
};

/** Page protection bits for mk_pool_protect(); combine with |. */
enum mk_pool_prot {
    MK_PROT_NONE = 0,                          /**< no access */
    MK_PROT_READ = 1,                          /**< readable */
    MK_PROT_WRITE = 2,                         /**< writable (most CPUs imply readable) */
    MK_PROT_EXEC = 4,                          /**< executable */
    MK_PROT_RW = MK_PROT_READ | MK_PROT_WRITE, /**< the normal state of a block */
};

/** How to create a pool. Zero-initialise, then set what you need. */
typedef struct mk_pool_config {
    /** Caller memory to manage, 16-byte aligned, or NULL: the pool then
     *  maps size bytes of its own (released by mk_pool_destroy()). The
     *  caller's memory must outlive the pool and must not be used
     *  otherwise until mk_pool_destroy() returns. */
    void *buffer;
    /** Bytes of buffer, or of the mapping to create; at least
     *  mk_pool_min_size(policy, flags). */
    size_t size;
    /** Fit policy of the engine (MK_POLICY_FIRST_FIT is 0, the default). */
    mk_policy policy;
    /** MK_POOL_* flags. */
    unsigned flags;
} mk_pool_config;

/**
 * @brief Smallest config size that mk_pool_create() accepts.
 * @return bytes, or 0 for an unknown policy or flag.
 */
size_t mk_pool_min_size(mk_policy policy, unsigned flags);

/**
 * @brief Create a pool.
 * @param cfg what to create (see ::mk_pool_config); not kept.
 * @param[out] out the pool; set only on success.
 * @return MK_OK; MK_EINVAL (NULL cfg or out, buffer not 16-byte aligned,
 *         size below mk_pool_min_size(), unknown policy or flag);
 *         MK_ENOMEM or MK_EOS (the mapping or the mutex could not be made).
 */
int mk_pool_create(const mk_pool_config *cfg, mk_pool **out);

/**
 * @brief Destroy a pool. Every block becomes invalid. Protected blocks of a
 *        caller buffer are made read-write again, so the caller gets its
 *        whole buffer back writable; an owned mapping is released.
 * @pre no other thread uses the pool.
 * @return MK_OK; MK_EINVAL (NULL or not a live pool); MK_EOS (restoring
 *         protection or releasing the mapping failed) or MK_ECORRUPT (the
 *         walk for protected blocks could not finish): the pool is gone
 *         either way. Using the pool after this is undefined (an owned
 *         mapping is unmapped).
 */
int mk_pool_destroy(mk_pool *pool);

/**
 * @brief Allocate size bytes aligned to 16.
 * @param err optional out: MK_OK, or MK_EINVAL (NULL pool), MK_ETOOBIG
 *        (more than the pool could ever hold), MK_ENOMEM (no free block
 *        fits now), MK_EOS (the lock failed).
 * @return the block, or NULL on failure.
 */
void *mk_pool_malloc(mk_pool *pool, size_t size, int *err);

/**
 * @brief Allocate n * size zeroed bytes.
 * @param err optional out: as mk_pool_malloc(); MK_ETOOBIG also when
 *        n * size overflows size_t.
 * @return the block, or NULL on failure.
 */
void *mk_pool_calloc(mk_pool *pool, size_t n, size_t size, int *err);

/**
 * @brief Resize a block, keeping its first min(old, new) bytes. In place
 *        when the engine can, else the contents move and the old block is
 *        freed. p == NULL allocates; size 0 shrinks to the minimum block
 *        (it does not free).
 * @param err optional out: as mk_pool_malloc(); MK_EBADOFF (p is not a
 *        block of this pool), MK_EDOUBLEFREE (p was freed), MK_EPROTECTED
 *        (p is protected: restore MK_PROT_RW first).
 * @return the block (maybe moved), or NULL on failure: p is then untouched
 *         and still owned by the caller.
 */
void *mk_pool_realloc(mk_pool *pool, void *p, size_t size, int *err);

/**
 * @brief Allocate size bytes aligned to align.
 * @param align a power of two up to MK_REGION_MAX_ALIGN (4096); 0 means 16.
 * @param err optional out: as mk_pool_malloc(); MK_EALIGN (bad align).
 * @return the block, or NULL on failure.
 */
void *mk_pool_aligned_alloc(mk_pool *pool, size_t align, size_t size, int *err);

/**
 * @brief Allocate a page block: page-aligned, size rounded up to whole
 *        pages (0 gives one page). The only kind of block that
 *        mk_pool_protect() accepts.
 * @param err optional out: as mk_pool_malloc(); MK_ENOTSUP when the OS
 *        page is larger than MK_REGION_MAX_ALIGN.
 * @return the block, or NULL on failure.
 */
void *mk_pool_alloc_pages(mk_pool *pool, size_t size, int *err);

/**
 * @brief Free a block. p == NULL is a no-op (MK_OK). A protected page
 *        block is made read-write first, then freed.
 * @return MK_OK; MK_EINVAL (NULL pool); MK_EBADOFF (p is not the start of
 *         a block of this pool); MK_EDOUBLEFREE (already free); MK_EOS
 *         (unprotecting failed). Nothing changes on error.
 */
int mk_pool_free(mk_pool *pool, void *p);

/**
 * @brief Usable bytes of a live block (at least what was requested).
 * @param[out] out the size.
 * @return MK_OK, MK_EINVAL (NULL argument), MK_EBADOFF, MK_EDOUBLEFREE.
 */
int mk_pool_usable_size(mk_pool *pool, const void *p, size_t *out);

/**
 * @brief Change the access rights of a page block with mprotect(): every
 *        whole page of the block (at least the size requested from
 *        mk_pool_alloc_pages() rounded up to pages) gets prot.
 * @param prot MK_PROT_* bits; MK_PROT_RW returns the block to normal.
 * @return MK_OK; MK_EINVAL (NULL argument, unknown prot bit, or p is not a
 *         page block); MK_EBADOFF; MK_EDOUBLEFREE; MK_EOS (mprotect failed,
 *         e.g. MK_PROT_EXEC where the system forbids it).
 */
int mk_pool_protect(mk_pool *pool, void *p, unsigned prot);

/**
 * @brief Whether a live block is protected (its access is not MK_PROT_RW).
 * @param[out] prot optional: the block's current MK_PROT_* bits
 *        (MK_PROT_RW for every block that is not protected).
 * @return 1 (protected), 0 (not), or MK_EINVAL, MK_EBADOFF, MK_EDOUBLEFREE.
 */
int mk_pool_is_protected(mk_pool *pool, const void *p, unsigned *prot);

/**
 * @brief Statistics of the pool (those of its region; overhead also counts
 *        the pool's control block and protection table).
 * @return MK_OK, MK_EINVAL.
 */
int mk_pool_stats(mk_pool *pool, mk_stats *out);

/** @brief Reset the counters and the peak (not the current usage).
 *  @return MK_OK, MK_EINVAL. */
int mk_pool_stats_reset(mk_pool *pool);

/**
 * @brief Print the statistics as a table (mk_stats_print()) into f.
 * @return MK_OK, MK_EINVAL, MK_EOS (write failed).
 */
int mk_pool_stats_print(mk_pool *pool, FILE *f);

/**
 * @brief Write the statistics as one JSON object (mk_stats_json()) into f.
 * @return MK_OK, MK_EINVAL, MK_EOS (write failed).
 */
int mk_pool_stats_json(mk_pool *pool, FILE *f);

/**
 * @brief Check every invariant of the engine (mk_region_validate()) and of
 *        the pool: the protection table and the blocks' protected bits
 *        agree, and only live page blocks have table entries.
 * @param[out] fault optional: the first broken invariant.
 * @return MK_OK, MK_EINVAL, MK_ECORRUPT (or another code of the fault).
 */
int mk_pool_validate(mk_pool *pool, mk_fault *fault);

/** @brief The pool's fit policy (MK_POLICY_COUNT for NULL). */
mk_policy mk_pool_policy(const mk_pool *pool);

#ifdef __cplusplus
}
#endif
#endif
