/**
 * @file region.h
 * @brief The block engine: a heap inside one contiguous range, addressed by
 *        offsets so that the same bytes work wherever they are mapped.
 *
 * A region manages the range [base, base + size). Its header sits at offset 0
 * (so offset 0 means "none"), and every link inside the range is an offset
 * from base, never a pointer. Two processes that map the same shared memory
 * at different addresses can therefore both operate on it (one at a time:
 * the engine takes no lock; callers such as mk_pool or the shared heap do).
 *
 * Blocks carry boundary tags; a free block coalesces with both neighbours.
 * The free blocks are organised by one of six fit policies chosen at
 * creation (see ::mk_policy).
 *
 * Sizes: a request of size 0 is served like size 1 (a unique, freeable
 * minimum block), following the C library's malloc. Alignment 0 means the
 * default of 16; any power of two up to the page size (4096) is accepted.
 * Alignment is of the absolute address, so a region shared between
 * processes must be mapped page-aligned (mmap always is).
 *
 * Memory layout and algorithms: docs/REGION.md.
 */
#ifndef MEMKIT_REGION_H
#define MEMKIT_REGION_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "memkit/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An offset from the start of a region. 0 is the header, so 0 means none. */
typedef uint64_t mk_off;

/** A region, seen through one mapping. The handle is the range's base. */
typedef struct mk_region mk_region;

/** Fit policies. The value is stored in the header; do not renumber. */
typedef enum mk_policy {
    MK_POLICY_FIRST_FIT = 0, /**< lowest address that fits (address-ordered tree) */
    MK_POLICY_NEXT_FIT = 1,  /**< first fit starting after the previous hit */
    MK_POLICY_BEST_FIT = 2,  /**< smallest free block that fits (exact bins + tree) */
    MK_POLICY_WORST_FIT = 3, /**< largest free block */
    MK_POLICY_TLSF = 4,      /**< two-level segregated fit: O(1) alloc and free */
    MK_POLICY_BUDDY = 5,     /**< binary buddy: power-of-two blocks */
    MK_POLICY_COUNT = 6
} mk_policy;

/** Creation flags for mk_region_create(). */
enum mk_region_flags {
    /** Keep an undo journal of every metadata write, so that an operation
     *  interrupted by a crash can be rolled back (mk_region_recover()).
     *  Costs a few stores per write and some header space. */
    MK_REGION_JOURNAL = 1u << 0,
    /** Deferred coalescing for small blocks (spans up to 1 KiB): a freed
     *  block is parked on a short LIFO list of its exact size and handed
     *  out again in O(1) without touching its neighbours, as glibc's
     *  tcache does. Parked blocks count as free in the statistics; they
     *  are merged back when an allocation would otherwise fail. Changes
     *  which block a policy picks, so leave it off to study a policy's
     *  pure behaviour. Not with MK_POLICY_BUDDY (MK_EINVAL). */
    MK_REGION_QUICK = 1u << 1,
};

/** Default alignment of every block's payload. */
#define MK_REGION_DEFAULT_ALIGN 16u
/** Largest region size (1 TiB). */
#define MK_REGION_MAX_SIZE ((uint64_t)1 << 40)
/** Largest alignment accepted. */
#define MK_REGION_MAX_ALIGN 4096u

/** Statistics of a region (or of any memkit allocator). */
typedef struct mk_stats {
    uint64_t capacity;     /**< bytes managed for blocks (region size minus header) */
    uint64_t bytes_used;   /**< bytes taken by live blocks, headers included */
    uint64_t bytes_free;   /**< bytes in free blocks */
    uint64_t blocks_used;  /**< live blocks */
    uint64_t blocks_free;  /**< free blocks */
    uint64_t peak_used;    /**< highest bytes_used since creation or reset */
    uint64_t n_alloc;      /**< successful allocations (realloc moves excluded) */
    uint64_t n_free;       /**< successful frees */
    uint64_t n_realloc;    /**< successful reallocs */
    uint64_t n_failed;     /**< allocations that failed for lack of space */
    uint64_t largest_free; /**< the largest free block's usable bytes */
    uint64_t overhead;     /**< metadata bytes: header + per-block tags */
    double fragmentation;  /**< 1 - largest_free / bytes_free (0 when nothing is free) */
} mk_stats;

/** Where validation found damage. */
typedef struct mk_fault {
    int code;              /**< MK_OK, or MK_ECORRUPT / MK_EBADMAGIC / ... */
    const char *invariant; /**< which invariant broke (static string), or NULL */
    mk_off offset;         /**< where (offset of the block or field), or 0 */
} mk_fault;

/** What mk_region_walk() reports for each block. */
typedef struct mk_block_info {
    mk_off offset; /**< offset of the payload (what alloc returned) */
    uint64_t size; /**< usable bytes of the payload */
    uint64_t span; /**< bytes the block occupies, its tag included */
    int used;      /**< 1 when allocated, 0 when free */
} mk_block_info;

/** Callback for mk_region_walk(); return non-zero to stop the walk. */
typedef int (*mk_block_visitor)(const mk_block_info *block, void *arg);

/**
 * @brief Smallest range that mk_region_create() accepts for a policy/flags.
 * @return bytes, or 0 for an unknown policy.
 */
size_t mk_region_min_size(mk_policy policy, unsigned flags);

/**
 * @brief Format [base, base + size) as an empty region.
 * @param base  start of the range; must be 16-byte aligned.
 * @param size  bytes; at least mk_region_min_size(policy, flags).
 * @param policy fit policy.
 * @param flags  MK_REGION_* flags.
 * @param[out] out the region handle (equal to base).
 * @return MK_OK, MK_EINVAL (NULL, misaligned base, unknown policy or flag,
 *         size too small).
 */
int mk_region_create(void *base, size_t size, mk_policy policy, unsigned flags, mk_region **out);

/**
 * @brief Check the header of an existing region mapped at base and return
 *        a handle to it. Nothing in the range is trusted before this passes.
 * @param mapped bytes that are mapped at base (the header's size must fit).
 * @return MK_OK, MK_EINVAL, MK_ETRUNCATED (mapping smaller than the header
 *         or the region), MK_EBADMAGIC, MK_EVERSION, MK_ELAYOUT,
 *         MK_ECORRUPT (header fields out of range).
 */
int mk_region_attach(void *base, size_t mapped, mk_region **out);

/**
 * @brief Allocate a block of at least size bytes aligned to align.
 * @param align 0 for 16, else a power of two up to MK_REGION_MAX_ALIGN.
 * @param[out] out offset of the payload.
 * @return MK_OK, MK_EINVAL, MK_EALIGN, MK_ETOOBIG (larger than the region
 *         could ever hold), MK_ENOMEM (no free block fits now).
 */
int mk_region_alloc(mk_region *r, size_t size, size_t align, mk_off *out);

/**
 * @brief Free the block whose payload is at off.
 * @return MK_OK, MK_EBADOFF (out of range, not the start of a block: an
 *         interior pointer or garbage), MK_EDOUBLEFREE (already free).
 *         Nothing is changed on error.
 */
int mk_region_free(mk_region *r, mk_off off);

/**
 * @brief Resize a block, in place when a neighbour allows, else by moving it
 *        (the first min(old, new) bytes are kept; the old block is freed).
 * @param off a live block, or 0 to allocate.
 * @param size new size; 0 resizes to the minimum block (not a free).
 * @param[out] out the block's offset after the call (off when in place).
 * @return as mk_region_alloc() and mk_region_free(); on error the block is
 *         unchanged.
 */
int mk_region_realloc(mk_region *r, mk_off off, size_t size, mk_off *out);

/**
 * @brief Usable bytes of a live block (at least what was requested).
 * @return MK_OK, MK_EBADOFF, MK_EDOUBLEFREE (the block is free).
 */
int mk_region_usable_size(const mk_region *r, mk_off off, size_t *out);

/** @brief Local address of an offset (NULL for 0). No checks: hot path. */
static inline void *mk_region_ptr(const mk_region *r, mk_off off) {
    return off ? (void *)((char *)(uintptr_t)r + off) : NULL;
}

/** @brief Offset of a local address inside the region (0 for NULL). */
static inline mk_off mk_region_offset(const mk_region *r, const void *p) {
    return p ? (mk_off)((const char *)p - (const char *)r) : 0;
}

/** @brief Bytes of the range the region manages (header included). */
size_t mk_region_size(const mk_region *r);

/** @brief The region's fit policy. */
mk_policy mk_region_policy(const mk_region *r);

/** @brief Name of a policy ("first", "next", "best", "worst", "tlsf", "buddy"), or NULL. */
const char *mk_policy_name(mk_policy policy);

/** @brief Policy for a name as given by mk_policy_name(); MK_EINVAL if unknown. */
int mk_policy_from_name(const char *name, mk_policy *out);

/**
 * @brief Extend the region in place to new_size bytes (the memory past the
 *        old end must already be mapped). The new space joins the free
 *        blocks, coalescing with a free last block.
 * @return MK_OK, MK_EINVAL (smaller than now), MK_ENOTSUP (buddy).
 */
int mk_region_grow(mk_region *r, size_t new_size);

/**
 * @brief Check every invariant of the region: header, boundary tags, free
 *        structures against the walk, statistics.
 * @param[out] fault optional; receives the first broken invariant.
 * @return MK_OK or the fault's code (MK_ECORRUPT, ...).
 */
int mk_region_validate(const mk_region *r, mk_fault *fault);

/**
 * @brief Visit every block in address order. Stops early when the visitor
 *        returns non-zero, and returns that value.
 * @return 0, the visitor's value, or MK_ECORRUPT when the walk cannot go on.
 */
int mk_region_walk(const mk_region *r, mk_block_visitor visit, void *arg);

/** @brief Fill *out with the region's statistics (walks the free blocks). */
int mk_region_stats(const mk_region *r, mk_stats *out);

/** @brief Reset the counters and peak (not the current usage). */
void mk_region_stats_reset(mk_region *r);

/**
 * @brief Roll back an operation that was interrupted (a crash inside the
 *        engine), using the undo journal. A no-op when none was in progress.
 * @param[out] rolled_back optional: 1 if something was undone.
 * @return MK_OK, MK_ENOTSUP (region created without MK_REGION_JOURNAL),
 *         MK_ENOTRECOVERABLE (journal damaged or overflowed).
 */
int mk_region_recover(mk_region *r, int *rolled_back);

/**
 * @brief Print statistics in a human-readable table.
 * @return MK_OK, MK_EINVAL, MK_EOS (write failed).
 */
int mk_stats_print(const mk_stats *s, FILE *f);

/**
 * @brief Write statistics as one JSON object (no trailing newline).
 * @return MK_OK, MK_EINVAL, MK_EOS (write failed).
 */
int mk_stats_json(const mk_stats *s, FILE *f);

#ifdef __cplusplus
}
#endif
#endif
