/**
 * @file ipc.h
 * @brief Lock-free structures for zero-copy IPC: array, SPSC queue, MPMC
 *        queue, ring buffer with bulk and zero-copy operations, object pool
 *        and named atomics. Each lives either in a memkit segment (shm.h),
 *        created and found by name, or in private memory (a caller buffer)
 *        for use between threads.
 *
 * Placement. In a segment, mk_X_create() finds or creates a named object of
 * the segment's directory (mk_shm_obj_create()) whose directory type tag is
 * the structure's (MK_IPC_TYPE_*); mk_X_open() only finds. Opening a name
 * that holds another type gives MK_ETYPE; another element size
 * MK_EELEMSIZE; create of an existing name with another capacity
 * MK_ECAPACITY. In private memory, mk_X_init() builds the structure in a
 * buffer of at least mk_X_footprint() bytes, aligned to MK_IPC_ALIGN, and
 * mk_X_attach() opens a buffer another party initialised (for memory shared
 * by other means); attach checks magic, version, type, element size and
 * that every size in the header fits the buffer.
 *
 * Handles. A handle (mk_spsc *, ...) is the calling process's private view:
 * close it with mk_X_close(), which never destroys the shared structure
 * (remove it with mk_shm_obj_remove()). A segment handle must stay open
 * while handles on its structures are used. Handles may be shared by the
 * threads of one process under each structure's own rule (one producer
 * thread and one consumer thread for SPSC and the ring, any number for the
 * others). Like mk_shm handles, they must not be used in a fork()ed child:
 * the child opens its own.
 *
 * Trust. Everything read from shared memory is checked before use: the
 * header at open (sizes against the object's size) and every index or
 * count read later (masked into range, or refused with MK_ECORRUPT).
 *
 * Crashes. A process SIGKILLed in the middle of an operation never leaves
 * another spinning forever: each structure's section says what a dead
 * producer or consumer leaves behind, and every wait has a timeout
 * (MK_ETIMEDOUT). docs/IPC.md has the layouts and the algorithms.
 *
 * Waiting. The blocking calls (*_wait) spin briefly, then sleep on a futex
 * (mk__os_wait32, process-shared in a segment). The side that makes
 * progress (push for "not empty", pop for "not full") checks a flag that a
 * sleeper sets and makes the wake-up system call only when it is set, so
 * no system call is made while nobody waits. timeout_ns: < 0 waits without
 * limit, 0 tries once, > 0 waits at most that long.
 *
 * Error codes: MK_OK or a negative MK_E* code (error.h).
 */
#ifndef MEMKIT_IPC_H
#define MEMKIT_IPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memkit/error.h"
#include "memkit/shm.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Alignment that mk_X_init() and mk_X_attach() need of a private buffer
 *  (a cache line, so that producer and consumer fields do not share one). */
#define MK_IPC_ALIGN 64
/** Largest element size of any structure, in bytes. */
#define MK_IPC_ELEM_MAX ((size_t)1 << 20)
/** Largest capacity (queues, ring) or length (array, pool). */
#define MK_IPC_CAPACITY_MAX ((size_t)1 << 31)

/** Directory type tags of the structures (mk_shm_obj.type). */
enum mk_ipc_type {
    MK_IPC_TYPE_ARRAY = 0x4d4b4152u,    /**< "MKAR" */
    MK_IPC_TYPE_SPSC = 0x4d4b5153u,     /**< "MKQS" */
    MK_IPC_TYPE_MPMC = 0x4d4b514du,     /**< "MKQM" */
    MK_IPC_TYPE_RING = 0x4d4b5247u,     /**< "MKRG" */
    MK_IPC_TYPE_OBJPOOL = 0x4d4b504fu,  /**< "MKPO" */
    MK_IPC_TYPE_ATOMIC32 = 0x4d4b4133u, /**< "MKA3" */
    MK_IPC_TYPE_ATOMIC64 = 0x4d4b4136u, /**< "MKA6" */
};

/** Flags of the mk_X_create() functions. */
enum mk_ipc_flags {
    /** Fail with MK_EEXIST if the name exists (default: find-or-create, so
     *  that both sides may call create, in any order). */
    MK_IPC_EXCL = 1u << 0,
};

/* ==== array ====================================================================== */

/**
 * Array: a fixed number of elements of a size chosen at creation, stored
 * contiguously, 64-byte aligned. Reads and writes are plain memory accesses
 * (wait-free, no ordering): publish changes to other processes with a queue
 * or a named atomic (release/acquire). mk_array_data() gives the base
 * address, so `((T *)data)[i]` costs what a private array read costs; the
 * checked accessors refuse an index out of range with MK_EBADOFF.
 * Crashes: a writer killed mid-copy may leave one element half written.
 */
typedef struct mk_array mk_array;

/** @brief Bytes a private buffer needs for an array (0 if length or
 *         elem_size is out of range). */
size_t mk_array_footprint(size_t length, size_t elem_size);

/**
 * @brief Find or create a named array in a segment (new elements are zero).
 * @param s segment. @param name 1..MK_SHM_OBJ_NAME_MAX bytes.
 * @param length elements, 1..MK_IPC_CAPACITY_MAX.
 * @param elem_size bytes per element, 1..MK_IPC_ELEM_MAX.
 * @param flags MK_IPC_EXCL. @param[out] out the handle.
 * @return MK_OK, MK_EINVAL, MK_ECAPACITY (bad length, or the existing
 *         array has another), MK_EELEMSIZE, MK_ETYPE (the name holds
 *         another type), MK_EEXIST (MK_IPC_EXCL), MK_EBUSY (its creator is
 *         still initialising it after a second, or died doing so),
 *         MK_ECORRUPT, MK_ENOMEM, and the segment's errors.
 * Thread-safety: any thread; racing creators all get the same array.
 */
int mk_array_create(mk_shm *s, const char *name, size_t length, size_t elem_size, unsigned flags,
                    mk_array **out);

/**
 * @brief Open an existing named array.
 * @param elem_size the element size the caller expects.
 * @return MK_OK, MK_EINVAL, MK_ENOENT, MK_ETYPE, MK_EELEMSIZE, MK_EBUSY,
 *         MK_ECORRUPT (header inconsistent with the object), MK_EBADOFF.
 */
int mk_array_open(mk_shm *s, const char *name, size_t elem_size, mk_array **out);

/**
 * @brief Build an array in a private buffer (elements zeroed).
 * @param buf MK_IPC_ALIGN-aligned, at least mk_array_footprint() bytes.
 * @return MK_OK, MK_EINVAL (NULL), MK_EALIGN, MK_ECAPACITY, MK_EELEMSIZE,
 *         MK_ETRUNCATED (size too small), MK_ENOMEM (handle).
 */
int mk_array_init(void *buf, size_t size, size_t length, size_t elem_size, mk_array **out);

/**
 * @brief Open an array built in buf by mk_array_init() (maybe elsewhere).
 * @return MK_OK, MK_EINVAL, MK_EALIGN, MK_EBADMAGIC, MK_EVERSION,
 *         MK_ELAYOUT, MK_ETYPE, MK_EELEMSIZE, MK_ETRUNCATED, MK_ECORRUPT.
 */
int mk_array_attach(void *buf, size_t size, size_t elem_size, mk_array **out);

/** @brief Release the handle (not the array). NULL is a no-op. */
void mk_array_close(mk_array *a);

/** @brief Number of elements. */
size_t mk_array_length(const mk_array *a);
/** @brief Bytes per element. */
size_t mk_array_elem_size(const mk_array *a);
/** @brief Address of element 0 in this process: the unchecked fast path. */
void *mk_array_data(const mk_array *a);
/** @brief Address of element i, or NULL if i >= length (checked). */
void *mk_array_at(const mk_array *a, size_t i);
/** @brief Copy element i to out. @return MK_OK, MK_EINVAL, MK_EBADOFF. */
int mk_array_get(const mk_array *a, size_t i, void *out);
/** @brief Copy in to element i. @return MK_OK, MK_EINVAL, MK_EBADOFF. */
int mk_array_set(mk_array *a, size_t i, const void *in);

/** Unchecked typed element access: `MK_ARRAY_ELEM(data, T, i)` is
 *  `((T *)data)[i]` with data = mk_array_data(a), hoisted out of loops. */
#define MK_ARRAY_ELEM(data, T, i) (((T *)(data))[i])

/* ==== SPSC queue ================================================================ */

/**
 * SPSC queue: one producer, one consumer, a power-of-two capacity of
 * fixed-size elements. The producer's index (head) and the consumer's (tail)
 * sit on separate cache lines, each next to a cached copy of the other
 * side's index, so a push reads the consumer's line only when the cached
 * copy says "full" (and a pop the producer's only when it says "empty").
 * Slots are found by masking: no division.
 *
 * Progress: wait-free try_push/try_pop. Ordering: a push's copy
 * happens-before the pop that returns it (the index store is release -
 * seq_cst, to order it before the check for sleepers - and the other
 * side's load acquire). One producer and one consumer at a time, across
 * all processes: the caller ensures it (a second producer corrupts order).
 *
 * Crashes: an element is published by one store after its copy, so a
 * producer killed mid-push leaves nothing (the consumer sees the queue
 * as it was; its timed waits return MK_ETIMEDOUT). A consumer killed
 * mid-pop leaves the element in the queue: the next consumer gets it again.
 * A new process may take over a dead side's role.
 */
typedef struct mk_spsc mk_spsc;

/** @brief Bytes a private buffer needs (0 if an argument is out of range). */
size_t mk_spsc_footprint(size_t capacity, size_t elem_size);

/**
 * @brief Find or create a named SPSC queue in a segment.
 * @param capacity a power of two, 2..MK_IPC_CAPACITY_MAX.
 * @param elem_size 1..MK_IPC_ELEM_MAX.
 * @return as mk_array_create(); MK_ECAPACITY for a capacity of zero, not a
 *         power of two, too large, or not the existing queue's.
 */
int mk_spsc_create(mk_shm *s, const char *name, size_t capacity, size_t elem_size, unsigned flags,
                   mk_spsc **out);
/** @brief Open an existing named SPSC queue. @return as mk_array_open(). */
int mk_spsc_open(mk_shm *s, const char *name, size_t elem_size, mk_spsc **out);
/** @brief Build in a private buffer. @return as mk_array_init(). */
int mk_spsc_init(void *buf, size_t size, size_t capacity, size_t elem_size, mk_spsc **out);
/** @brief Open a buffer built by mk_spsc_init(). @return as mk_array_attach(). */
int mk_spsc_attach(void *buf, size_t size, size_t elem_size, mk_spsc **out);
/** @brief Release the handle (not the queue). NULL is a no-op. */
void mk_spsc_close(mk_spsc *q);

/** @brief Copy one element in. Producer only.
 *  @return MK_OK, MK_EFULL. (No argument checks: the fast path.) */
int mk_spsc_try_push(mk_spsc *q, const void *elem);
/** @brief Copy one element out. Consumer only. @return MK_OK, MK_EEMPTY. */
int mk_spsc_try_pop(mk_spsc *q, void *out);
/** @brief Push, waiting up to timeout_ns for room.
 *  @return MK_OK, MK_ETIMEDOUT, MK_EOS. */
int mk_spsc_push_wait(mk_spsc *q, const void *elem, int64_t timeout_ns);
/** @brief Pop, waiting up to timeout_ns for an element.
 *  @return MK_OK, MK_ETIMEDOUT, MK_EOS. */
int mk_spsc_pop_wait(mk_spsc *q, void *out, int64_t timeout_ns);
/** @brief Elements in the queue now (a snapshot; exact for either side). */
size_t mk_spsc_size(const mk_spsc *q);
/** @brief Capacity. */
size_t mk_spsc_capacity(const mk_spsc *q);
/** @brief Element size. */
size_t mk_spsc_elem_size(const mk_spsc *q);

/* ==== MPMC queue ================================================================ */

/**
 * MPMC queue: bounded, any number of producers and consumers in any
 * processes (Vyukov's array of sequence-numbered cells). A producer claims a
 * position with a CAS on the enqueue counter, copies, then publishes the
 * cell by storing its sequence number; consumers likewise on the dequeue
 * counter.
 *
 * Progress: lock-free counters; a push or pop may however have to wait for
 * a slower peer that claimed the cell it needs (blocking in the strict
 * sense, as every Vyukov queue). Ordering: the cell's sequence store is
 * release, its load acquire: a push's copy happens-before the pop of it.
 * FIFO per producer.
 *
 * Crashes: a producer killed between claim and publish leaves a cell that
 * never fills: consumers stop at it (try_pop says MK_EEMPTY, timed waits
 * MK_ETIMEDOUT) and producers stop when they wrap round to it (MK_EFULL).
 * A consumer killed between claim and release leaves a cell that producers
 * cannot reuse (MK_EFULL when they reach it); its element is lost.
 * mk_mpmc_repair() clears both, when no live process is mid-operation.
 */
typedef struct mk_mpmc mk_mpmc;

/** @brief Bytes a private buffer needs (0 if an argument is out of range). */
size_t mk_mpmc_footprint(size_t capacity, size_t elem_size);
/** @brief Find or create a named MPMC queue. @return as mk_spsc_create(). */
int mk_mpmc_create(mk_shm *s, const char *name, size_t capacity, size_t elem_size, unsigned flags,
                   mk_mpmc **out);
/** @brief Open an existing named MPMC queue. @return as mk_array_open(). */
int mk_mpmc_open(mk_shm *s, const char *name, size_t elem_size, mk_mpmc **out);
/** @brief Build in a private buffer. @return as mk_array_init(). */
int mk_mpmc_init(void *buf, size_t size, size_t capacity, size_t elem_size, mk_mpmc **out);
/** @brief Open a buffer built by mk_mpmc_init(). @return as mk_array_attach(). */
int mk_mpmc_attach(void *buf, size_t size, size_t elem_size, mk_mpmc **out);
/** @brief Release the handle. NULL is a no-op. */
void mk_mpmc_close(mk_mpmc *q);
/** @brief Push one element. Any thread. @return MK_OK, MK_EFULL. */
int mk_mpmc_try_push(mk_mpmc *q, const void *elem);
/** @brief Pop one element. Any thread. @return MK_OK, MK_EEMPTY. */
int mk_mpmc_try_pop(mk_mpmc *q, void *out);
/** @brief Push, waiting for room. @return MK_OK, MK_ETIMEDOUT, MK_EOS. */
int mk_mpmc_push_wait(mk_mpmc *q, const void *elem, int64_t timeout_ns);
/** @brief Pop, waiting for an element. @return MK_OK, MK_ETIMEDOUT, MK_EOS. */
int mk_mpmc_pop_wait(mk_mpmc *q, void *out, int64_t timeout_ns);
/** @brief Elements in the queue (a racy snapshot, 0..capacity). */
size_t mk_mpmc_size(const mk_mpmc *q);
/** @brief Capacity. */
size_t mk_mpmc_capacity(const mk_mpmc *q);
/**
 * @brief Clear cells left by processes killed mid-operation: a cell a dead
 *        producer claimed but never published becomes a hole that consumers
 *        skip; a cell a dead consumer claimed but never released is given
 *        back to producers (its element is lost).
 * @pre no live process is in the middle of a push or pop on this queue (a
 *      live one would be taken for dead). Blocked *_wait calls are fine.
 * @param[out] repaired optional: cells repaired.
 * @return MK_OK, MK_EINVAL, MK_ECORRUPT (counters out of range).
 */
int mk_mpmc_repair(mk_mpmc *q, size_t *repaired);

/* ==== ring buffer ================================================================ */

/**
 * Ring buffer: an SPSC queue of fixed-size elements with bulk operations
 * (as many elements as fit, in one index update) and zero-copy access on
 * both sides: reserve a contiguous run of free slots, write in place,
 * commit; peek a contiguous run of filled slots, read in place, release.
 * Bulk calls succeed partially (they return how many elements moved).
 *
 * Progress, ordering and crashes as the SPSC queue: a producer killed
 * between reserve and commit publishes nothing of the reservation; a
 * consumer killed between peek and release leaves the elements queued.
 */
typedef struct mk_ring mk_ring;

/** @brief Bytes a private buffer needs (0 if an argument is out of range). */
size_t mk_ring_footprint(size_t capacity, size_t elem_size);
/** @brief Find or create a named ring. @return as mk_spsc_create(). */
int mk_ring_create(mk_shm *s, const char *name, size_t capacity, size_t elem_size, unsigned flags,
                   mk_ring **out);
/** @brief Open an existing named ring. @return as mk_array_open(). */
int mk_ring_open(mk_shm *s, const char *name, size_t elem_size, mk_ring **out);
/** @brief Build in a private buffer. @return as mk_array_init(). */
int mk_ring_init(void *buf, size_t size, size_t capacity, size_t elem_size, mk_ring **out);
/** @brief Open a buffer built by mk_ring_init(). @return as mk_array_attach(). */
int mk_ring_attach(void *buf, size_t size, size_t elem_size, mk_ring **out);
/** @brief Release the handle. NULL is a no-op. */
void mk_ring_close(mk_ring *r);

/** @brief Copy up to n elements in (producer). @return elements pushed, 0..n. */
size_t mk_ring_push_bulk(mk_ring *r, const void *elems, size_t n);
/** @brief Copy up to n elements out (consumer). @return elements popped, 0..n. */
size_t mk_ring_pop_bulk(mk_ring *r, void *out, size_t n);
/**
 * @brief Zero-copy write (producer): a contiguous run of up to n free slots.
 * @param[out] got slots reserved (0 when full; fewer than n at the end of
 *        the buffer: reserve again after commit for the rest).
 * @return their address (NULL when *got is 0). Only mk_ring_commit()
 *         publishes them; a second reserve without commit returns the same run.
 */
void *mk_ring_reserve(mk_ring *r, size_t n, size_t *got);
/** @brief Publish the first n slots of the last reservation.
 *  @return MK_OK, MK_EINVAL (n larger than the free space). */
int mk_ring_commit(mk_ring *r, size_t n);
/**
 * @brief Zero-copy read (consumer): a contiguous run of up to n elements.
 * @param[out] got elements available at the address (0 when empty).
 * @return their address, or NULL.
 */
const void *mk_ring_peek(mk_ring *r, size_t n, size_t *got);
/** @brief Give the first n peeked slots back to the producer.
 *  @return MK_OK, MK_EINVAL (n more than the elements queued). */
int mk_ring_release(mk_ring *r, size_t n);
/** @brief Wait until at least one element is queued. @return MK_OK,
 *  MK_ETIMEDOUT, MK_EOS. */
int mk_ring_wait_not_empty(mk_ring *r, int64_t timeout_ns);
/** @brief Wait until at least one slot is free. @return as above. */
int mk_ring_wait_not_full(mk_ring *r, int64_t timeout_ns);
/** @brief Elements queued (exact for either side). */
size_t mk_ring_size(const mk_ring *r);
/** @brief Capacity. */
size_t mk_ring_capacity(const mk_ring *r);

/* ==== object pool ================================================================ */

/**
 * Object pool: a fixed number of fixed-size slots, handed out by index (an
 * index is valid in every process; mk_objpool_ptr() gives the local
 * address). Free slots form a stack linked by index; its top is a 64-bit
 * word {32-bit tag, 32-bit index+1} changed by CAS, the tag incremented
 * by every change, so a top popped and pushed back in between (ABA) does
 * not fool a CAS. Each slot records its owner (pid and start time): a
 * second release is refused, and mk_objpool_reclaim() frees the slots of
 * dead processes.
 *
 * Progress: lock-free. Ordering: acquire/release through the top word;
 * a slot's contents written before release are visible to the next
 * acquirer of it.
 *
 * Crashes: a process killed holding slots leaves them owned by a dead
 * process until mk_objpool_reclaim(). Killed inside acquire or release,
 * the free stack stays consistent (one CAS is the change); only a kill in
 * the instructions between the CAS of acquire and the owner record leaves
 * one slot unowned (reclaim cannot find it; mk_objpool_repair() can).
 */
typedef struct mk_objpool mk_objpool;

/** @brief Bytes a private buffer needs (0 if an argument is out of range). */
size_t mk_objpool_footprint(size_t slots, size_t slot_size);
/** @brief Find or create a named pool (slots 1..MK_IPC_CAPACITY_MAX - 1).
 *  @return as mk_array_create(). */
int mk_objpool_create(mk_shm *s, const char *name, size_t slots, size_t slot_size, unsigned flags,
                      mk_objpool **out);
/** @brief Open an existing named pool. @return as mk_array_open(). */
int mk_objpool_open(mk_shm *s, const char *name, size_t slot_size, mk_objpool **out);
/** @brief Build in a private buffer. @return as mk_array_init(). */
int mk_objpool_init(void *buf, size_t size, size_t slots, size_t slot_size, mk_objpool **out);
/** @brief Open a buffer built by mk_objpool_init(). @return as mk_array_attach(). */
int mk_objpool_attach(void *buf, size_t size, size_t slot_size, mk_objpool **out);
/** @brief Release the handle. NULL is a no-op. */
void mk_objpool_close(mk_objpool *p);
/**
 * @brief Take a free slot. Any thread, any process.
 * @param[out] index the slot.
 * @return MK_OK, MK_EINVAL, MK_EEMPTY (none free), MK_ECORRUPT (a link
 *         out of range).
 */
int mk_objpool_acquire(mk_objpool *p, uint32_t *index);
/**
 * @brief Give a slot back.
 * @return MK_OK, MK_EINVAL, MK_EBADOFF (index out of range),
 *         MK_EDOUBLEFREE (the slot is free), MK_ECORRUPT.
 */
int mk_objpool_release(mk_objpool *p, uint32_t index);
/** @brief Local address of slot index, or NULL if out of range. */
void *mk_objpool_ptr(const mk_objpool *p, uint32_t index);
/** @brief Index of a local slot address; MK_EBADOFF if p is not one. */
int mk_objpool_index(const mk_objpool *p, const void *ptr, uint32_t *index);
/** @brief Number of slots. */
size_t mk_objpool_slots(const mk_objpool *p);
/** @brief Slots on the free stack (walks it; a snapshot when others work). */
size_t mk_objpool_count_free(const mk_objpool *p);
/**
 * @brief Release every slot whose owner process is dead.
 * @param[out] reclaimed optional: slots released.
 * @return MK_OK, MK_EINVAL, MK_ECORRUPT.
 */
int mk_objpool_reclaim(mk_objpool *p, size_t *reclaimed);
/**
 * @brief Put back on the free stack every slot that is neither owned nor
 *        on it: slots lost by a process killed between the CAS and the
 *        owner record of acquire, or between the two steps of release.
 * @pre no live process is inside acquire or release on this pool.
 * @param[out] repaired optional: slots put back.
 * @return MK_OK, MK_EINVAL, MK_ENOMEM, MK_ECORRUPT (the free stack has a
 *         link out of range or a cycle).
 */
int mk_objpool_repair(mk_objpool *p, size_t *repaired);

/* ==== named atomics ============================================================== */

/**
 * Named atomics: one 32- or 64-bit integer, in a segment (by name) or in a
 * private buffer. Every operation is sequentially consistent and lock-free
 * (where the CPU has the atomic instructions; wait-free on x86-64). The
 * handle points into the shared memory and needs no closing. A crash
 * never leaves a torn value.
 */
typedef struct mk_atomic32 mk_atomic32;
/** A named 64-bit atomic integer (see mk_atomic32). */
typedef struct mk_atomic64 mk_atomic64;

/** Bytes a private buffer needs for one atomic. */
#define MK_ATOMIC_FOOTPRINT 128

/** @brief Find or create a named 32-bit atomic; a new one holds initial.
 *  @return MK_OK, MK_EINVAL, MK_ETYPE, MK_EEXIST (MK_IPC_EXCL), MK_EBUSY,
 *  MK_ECORRUPT, and the segment's errors. */
int mk_atomic32_create(mk_shm *s, const char *name, uint32_t initial, unsigned flags,
                       mk_atomic32 **out);
/** @brief Open an existing named 32-bit atomic. @return as mk_array_open(). */
int mk_atomic32_open(mk_shm *s, const char *name, mk_atomic32 **out);
/** @brief Build in a private buffer (MK_ATOMIC_FOOTPRINT bytes, aligned).
 *  @return MK_OK, MK_EINVAL, MK_EALIGN, MK_ETRUNCATED. */
int mk_atomic32_init(void *buf, size_t size, uint32_t initial, mk_atomic32 **out);
/** @brief Open a buffer built by mk_atomic32_init(). @return as mk_array_attach(). */
int mk_atomic32_attach(void *buf, size_t size, mk_atomic32 **out);
/** @brief Load. */
uint32_t mk_atomic32_load(const mk_atomic32 *a);
/** @brief Store. */
void mk_atomic32_store(mk_atomic32 *a, uint32_t v);
/** @brief Add (wrapping); @return the value before. */
uint32_t mk_atomic32_add(mk_atomic32 *a, uint32_t v);
/** @brief Exchange; @return the value before. */
uint32_t mk_atomic32_exchange(mk_atomic32 *a, uint32_t v);
/** @brief If *a == *expected, store desired and return true; else copy the
 *  current value to *expected and return false. */
bool mk_atomic32_cas(mk_atomic32 *a, uint32_t *expected, uint32_t desired);

/** @brief As mk_atomic32_create(), 64-bit. */
int mk_atomic64_create(mk_shm *s, const char *name, uint64_t initial, unsigned flags,
                       mk_atomic64 **out);
/** @brief As mk_atomic32_open(), 64-bit. */
int mk_atomic64_open(mk_shm *s, const char *name, mk_atomic64 **out);
/** @brief As mk_atomic32_init(), 64-bit. */
int mk_atomic64_init(void *buf, size_t size, uint64_t initial, mk_atomic64 **out);
/** @brief As mk_atomic32_attach(), 64-bit. */
int mk_atomic64_attach(void *buf, size_t size, mk_atomic64 **out);
/** @brief Load. */
uint64_t mk_atomic64_load(const mk_atomic64 *a);
/** @brief Store. */
void mk_atomic64_store(mk_atomic64 *a, uint64_t v);
/** @brief Add (wrapping); @return the value before. */
uint64_t mk_atomic64_add(mk_atomic64 *a, uint64_t v);
/** @brief Exchange; @return the value before. */
uint64_t mk_atomic64_exchange(mk_atomic64 *a, uint64_t v);
/** @brief Compare-exchange, as mk_atomic32_cas(). */
bool mk_atomic64_cas(mk_atomic64 *a, uint64_t *expected, uint64_t desired);

#ifdef __cplusplus
}
#endif
#endif
