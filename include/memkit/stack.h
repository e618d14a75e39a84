/**
 * @file stack.h
 * @brief A stack (linear, LIFO) allocator over a fixed range.
 *
 * Push is O(1): it bumps the top. Pop frees only the top block (anything
 * else is an error, MK_ENOTTOP); markers record the top so that everything
 * pushed after them can be dropped at once. The capacity is fixed at
 * creation: memory the caller gives, or a mapping the stack owns.
 *
 * Each block is preceded by a 16-byte header holding the top and the top
 * block before the push (so pop is O(1)) and a check tag (so a pointer
 * into the middle of the stack is told from an older block's start). The
 * stack's own control block sits at the start of the memory.
 *
 * Errors: int functions return MK_OK or a negative MK_E* code; push
 * returns NULL on failure and stores the code into its optional `int *err`
 * (MK_OK on success).
 */
#ifndef MEMKIT_STACK_H
#define MEMKIT_STACK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "memkit/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A stack allocator. Opaque; it lives at the start of its own memory. */
typedef struct mk_stack mk_stack;

/** Flags of mk_stack_create(). */
enum mk_stack_flags {
    /** Serialise every operation with a (process-private) mutex. */
    MK_STACK_THREADSAFE = 1u << 0,
};

/** Bytes of header before each block's payload. */
#define MK_STACK_HEADER 16u

/** A position in the stack, from mk_stack_mark(). Treat as opaque. */
typedef struct mk_stack_marker {
    uint64_t top;   /**< offset of the first free byte */
    uint64_t last;  /**< offset of the top block's payload, 0 when empty */
    uint64_t depth; /**< live blocks */
    uint64_t check; /**< keyed hash of the fields above */
} mk_stack_marker;

/** Statistics of a stack allocator. */
typedef struct mk_stack_usage {
    uint64_t capacity;   /**< bytes for blocks (headers and padding included) */
    uint64_t used;       /**< bytes below the top now */
    uint64_t peak;       /**< highest used since creation or reset */
    uint64_t blocks;     /**< live blocks */
    uint64_t n_push;     /**< successful pushes */
    uint64_t n_pop;      /**< successful pops */
    uint64_t n_rollback; /**< successful rollbacks and resets */
    uint64_t n_failed;   /**< pushes that failed for lack of space */
} mk_stack_usage;

/**
 * @brief Smallest size mk_stack_create() accepts (control block plus one
 *        header and 16 bytes of payload).
 */
size_t mk_stack_min_size(void);

/**
 * @brief Create a stack allocator.
 * @param buffer caller memory, 16-byte aligned, or NULL: the stack then
 *        maps size bytes of its own (released by mk_stack_destroy()).
 * @param size bytes of buffer or of the mapping; >= mk_stack_min_size().
 * @param flags MK_STACK_* flags.
 * @param[out] out the stack; set only on success.
 * @return MK_OK; MK_EINVAL (NULL out, misaligned buffer, size too small,
 *         unknown flag); MK_ENOMEM or MK_EOS (mapping or mutex).
 */
int mk_stack_create(void *buffer, size_t size, unsigned flags, mk_stack **out);

/**
 * @brief Destroy a stack; every block becomes invalid.
 * @pre no other thread uses the stack.
 * @return MK_OK, MK_EINVAL (NULL or not a live stack), MK_EOS.
 */
int mk_stack_destroy(mk_stack *s);

/**
 * @brief Push a block of size bytes aligned to align. Size 0 gives a
 *        unique pointer that must be popped like any block.
 * @param align 0 means 16; else a power of two up to 4096. Alignments
 *        below 8 are raised to 8 (the header is 8-aligned).
 * @param err optional out: MK_OK, MK_EINVAL (NULL stack), MK_EALIGN,
 *        MK_ENOMEM (does not fit in what is left), MK_ETOOBIG (larger than
 *        the capacity), MK_EOS (lock).
 * @return the block, or NULL on failure.
 */
void *mk_stack_push(mk_stack *s, size_t size, size_t align, int *err);

/**
 * @brief Pop the top block.
 * @param p the block most recently pushed and not yet popped.
 * @return MK_OK; MK_EINVAL (NULL argument); MK_ENOTTOP (p is a live block
 *         below the top); MK_EBADOFF (p is not the start of a live block:
 *         outside the stack, interior, or already popped); MK_ECORRUPT (the
 *         header before p was overwritten). Nothing changes on error.
 */
int mk_stack_pop(mk_stack *s, void *p);

/**
 * @brief Record the current top.
 * @param[out] out the marker.
 * @return MK_OK, MK_EINVAL.
 */
int mk_stack_mark(mk_stack *s, mk_stack_marker *out);

/**
 * @brief Drop every block pushed after the marker was taken.
 * @param m a marker of this stack, taken when the top was at or below the
 *        current top. A marker stays valid until a pop or rollback goes
 *        below it; using it after that is detected only partly.
 * @return MK_OK; MK_EINVAL (NULL stack or m, or a marker that is forged,
 *         from another stack, or above the current top).
 */
int mk_stack_rollback(mk_stack *s, const mk_stack_marker *m);

/**
 * @brief Drop every block (rollback to the empty stack).
 * @return MK_OK, MK_EINVAL.
 */
int mk_stack_reset(mk_stack *s);

/**
 * @brief Fill *out with the statistics.
 * @return MK_OK, MK_EINVAL.
 */
int mk_stack_stats(mk_stack *s, mk_stack_usage *out);

/** @brief Reset the counters and set the peak to the current use.
 *  @return MK_OK, MK_EINVAL. */
int mk_stack_stats_reset(mk_stack *s);

/**
 * @brief Print the statistics as a table into f.
 * @return MK_OK, MK_EINVAL, MK_EOS (write failed).
 */
int mk_stack_stats_print(mk_stack *s, FILE *f);

#ifdef __cplusplus
}
#endif
#endif
