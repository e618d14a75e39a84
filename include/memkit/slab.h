/**
 * @file slab.h
 * @brief A slab cache: objects of one fixed size, O(1) alloc and free.
 *
 * Objects are carved from slabs of a fixed number of pages. The cache
 * reserves address space for max_slabs slabs at creation and commits one
 * slab at a time when every committed object is in use, so it grows by
 * whole slabs up to the limit and then fails with MK_ENOMEM. Because all
 * slabs are in one reservation, free finds an object's slab by arithmetic.
 *
 * Metadata is kept apart from the objects (a bitmap per slab of the
 * objects in use, in the cache's own mapping): free checks every pointer
 * against it, reporting pointers that are not objects of this cache
 * (MK_EBADOFF) and double frees (MK_EDOUBLEFREE) exactly. Free objects are
 * linked through their first word, encoded with a per-cache secret and
 * checked when taken, so a write to a freed object is reported as
 * MK_ECORRUPT instead of handing out a wild pointer.
 *
 * Errors: int functions return MK_OK or a negative MK_E* code;
 * mk_slab_alloc() returns NULL on failure and stores the code into its
 * optional `int *err` (MK_OK on success).
 */
#ifndef MEMKIT_SLAB_H
#define MEMKIT_SLAB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "memkit/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A slab cache. Opaque. */
typedef struct mk_slab mk_slab;

/** Flags of ::mk_slab_config. */
enum mk_slab_flags {
    /** Serialise every operation with a (process-private) mutex. */
    MK_SLAB_THREADSAFE = 1u << 0,
};

/** Slab size used when the config says 0. */
#define MK_SLAB_DEFAULT_SLAB_SIZE (64u * 1024u)
/** Slab limit used when the config says 0. */
#define MK_SLAB_DEFAULT_MAX_SLABS 1024u

/** How to create a slab cache. Zero-initialise, then set what you need. */
typedef struct mk_slab_config {
    size_t obj_size;  /**< bytes per object, >= 1 (raised to 8 internally) */
    size_t obj_align; /**< power of two up to the page size; 0 means 16 */
    size_t slab_size; /**< bytes per slab, rounded up to whole pages and to
                           at least one object; 0 means 64 KiB */
    size_t max_slabs; /**< most slabs the cache may commit; 0 means 1024 */
    unsigned flags;   /**< MK_SLAB_* flags */
} mk_slab_config;

/** Statistics of a slab cache. */
typedef struct mk_slab_usage {
    uint64_t obj_size;      /**< requested object size */
    uint64_t stride;        /**< bytes between objects (size rounded to align) */
    uint64_t objs_per_slab; /**< objects in one slab */
    uint64_t slab_size;     /**< bytes per slab */
    uint64_t slabs;         /**< slabs committed */
    uint64_t max_slabs;     /**< the limit */
    uint64_t in_use;        /**< objects allocated now */
    uint64_t free;          /**< objects of the committed slabs not in use */
    uint64_t peak_in_use;   /**< highest in_use since creation or reset */
    uint64_t n_alloc;       /**< successful allocations */
    uint64_t n_free;        /**< successful frees */
    uint64_t n_failed;      /**< allocations refused (limit reached) */
} mk_slab_usage;

/**
 * @brief Create a slab cache. Reserves address space for max_slabs slabs
 *        and commits none yet.
 * @param[out] out the cache; set only on success.
 * @return MK_OK; MK_EINVAL (NULL argument, obj_size 0, unknown flag);
 *         MK_EALIGN (align not a power of two or above the page size);
 *         MK_ETOOBIG (max_slabs * slab_size overflows); MK_ENOMEM or MK_EOS
 *         (the reservation or mutex failed).
 */
int mk_slab_create(const mk_slab_config *cfg, mk_slab **out);

/**
 * @brief Destroy the cache and release every slab; all objects become
 *        invalid.
 * @pre no other thread uses the cache.
 * @return MK_OK, MK_EINVAL (NULL or not a live cache), MK_EOS.
 */
int mk_slab_destroy(mk_slab *c);

/**
 * @brief Take one object (its contents are undefined). O(1): a free object
 *        if there is one, else the next never-used object of the newest
 *        slab, else a newly committed slab.
 * @param err optional out: MK_OK; MK_EINVAL (NULL cache); MK_ENOMEM (all
 *        max_slabs slabs are full, or committing failed); MK_ECORRUPT (the
 *        free list was overwritten: a use after free); MK_EOS (lock).
 * @return the object, or NULL on failure.
 */
void *mk_slab_alloc(mk_slab *c, int *err);

/**
 * @brief Give an object back. O(1). p == NULL is a no-op (MK_OK).
 * @return MK_OK; MK_EINVAL (NULL cache); MK_EBADOFF (p is not the start of
 *         an object of this cache); MK_EDOUBLEFREE (p is already free).
 *         Nothing changes on error.
 */
int mk_slab_free(mk_slab *c, void *p);

/**
 * @brief Whether p is an object of this cache that is in use.
 * @return 1, 0, or MK_EINVAL.
 */
int mk_slab_owns(mk_slab *c, const void *p);

/**
 * @brief Fill *out with the statistics.
 * @return MK_OK, MK_EINVAL.
 */
int mk_slab_stats(mk_slab *c, mk_slab_usage *out);

/** @brief Reset the counters and set the peak to the current use.
 *  @return MK_OK, MK_EINVAL. */
int mk_slab_stats_reset(mk_slab *c);

/**
 * @brief Print the statistics as a table into f.
 * @return MK_OK, MK_EINVAL, MK_EOS (write failed).
 */
int mk_slab_stats_print(mk_slab *c, FILE *f);

/**
 * @brief Check the cache's invariants: the free list holds exactly the
 *        committed, once-used objects whose bitmap bit is clear, and the
 *        counters agree with the bitmaps. O(objects).
 * @return MK_OK, MK_EINVAL, MK_ECORRUPT.
 */
int mk_slab_validate(mk_slab *c);

#ifdef __cplusplus
}
#endif
#endif
