/**
 * @file shm.h
 * @brief The shared-memory heap: one named segment, many processes, offsets
 *        valid in all of them, crash repair, growth while attached, named
 *        objects.
 *
 * A segment is a named POSIX shared-memory object ("/name") or, with
 * ::MK_SHM_FILE, a file (a persistent heap). It holds one block-engine
 * region (region.h) created with an undo journal, plus the segment's own
 * metadata: its name, maximum size, flags, the table of attached processes
 * and the directory of named objects. Every process may map the segment at
 * a different address, so the API hands out offsets (::mk_off, 0 = none);
 * mk_shm_ptr() turns one into a local address, mk_shm_offset() back.
 *
 * Locking. Every operation takes the segment's process-shared robust lock.
 * When a process dies holding it (even in the middle of an allocation), the
 * next process to take the lock rolls the interrupted operation back from
 * the journal, validates the whole heap, frees the dead process's slot in
 * the process table, and goes on: a crashed peer never deadlocks the others
 * and never loses a block that was allocated before the crash. If the heap
 * does not validate after repair, the operation fails with MK_ECORRUPT and
 * the lock is left unrecoverable (every later operation gets
 * MK_ENOTRECOVERABLE) rather than letting anyone work on a damaged heap.
 *
 * Growth. A segment is created with a size and a maximum size. Each process
 * reserves address space for the maximum when it opens the segment, so when
 * an allocation does not fit, the segment grows in place (up to the
 * maximum) while others stay attached, and every local pointer stays valid.
 * Buddy segments cannot grow (their max_size must equal their size).
 *
 * Threads and fork. A handle may be used by several threads of one process
 * at once. Once the process has a second thread, each thread that
 * allocates or frees plain blocks through a handle gets a cache of small
 * blocks of its own: the first the handle's, each other one a *thread
 * handle* that the library opens for it on the handle's mapping (a
 * process-table slot of its own, so mk_shm_get_info() and mk_shm_procs()
 * count and list it as an attach of this process; up to 8 per handle, then
 * threads share the handle's cache under its mutex). A thread that exits
 * leaves its cache, and the blocks in it, to the next thread; closing the
 * handle closes its thread handles, and mk_shm_cache_flush() flushes them.
 * So two threads on one handle scale as two processes do
 * (bench-shm-threads, docs/BENCHMARKS.md). Each cache has the segment's
 * cache budget. Owned blocks go through the threads' caches too, and
 * belong to the handle they were allocated through, whichever thread did
 * it: closing it leaves them to mk_shm_reclaim(). Close a handle only when
 * no other thread uses it.
 * A handle must not be used after fork() in the child: a child opens the
 * segment itself (mk_shm_close() in a forked child only unmaps, it never
 * detaches the parent).
 *
 * Trust. Opening checks magic, version, layout signature and sizes; every
 * offset read from the segment is bounds-checked before it is followed, so
 * a damaged segment gives an error code (and mk_shm_validate() names the
 * damage), never a wild write.
 *
 * Error codes: MK_OK or a negative MK_E* code (error.h); mk_strerror().
 */
#ifndef MEMKIT_SHM_H
#define MEMKIT_SHM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "memkit/error.h"
#include "memkit/region.h"

#ifdef __cplusplus
extern "C" {
#endif

/** An open segment, seen from one process. */
typedef struct mk_shm mk_shm;

/** Flags for mk_shm_create() and mk_shm_open(). */
enum mk_shm_flags {
    /** name is a file path, not a shared-memory name: a persistent heap.
     *  Needed by create, open and unlink alike. */
    MK_SHM_FILE = 1u << 0,
    /** create: remove the name when the last attached process closes
     *  (the creator's choice, stored in the segment). Default: keep. */
    MK_SHM_REMOVE_ON_LAST_CLOSE = 1u << 1,
    /** create: if the segment exists, open it instead (the size, policy
     *  and other create arguments are then ignored) rather than fail
     *  with MK_EEXIST. */
    MK_SHM_OPEN_EXISTING = 1u << 2,
    /** open: observe only (inspection tools): the process does not take a
     *  slot in the process table, is not counted as attached, cannot
     *  allocate owned blocks, and its close never removes the segment.
     *  Every other operation works. */
    MK_SHM_OBSERVE = 1u << 3,
    /** create: no per-process caches of small blocks (see
     *  mk_shm_config.cache_bytes): every allocation and free takes the
     *  segment lock, and a freed block is at once available to every
     *  process and size. */
    MK_SHM_NO_CACHE = 1u << 4,
};

/** Allocation flags for mk_shm_alloc_ex(). */
enum mk_shm_alloc_flags {
    /** Record the calling process as the block's owner: if the process
     *  dies, mk_shm_reclaim() frees the block. An owned block has 8 bytes
     *  less usable space than a plain one of the same span. Small owned
     *  blocks go through the owner's cache as plain ones do, on lists of
     *  their own: the owner's free of one keeps it for the owner's next
     *  owned allocation, without the segment lock; another process's free
     *  of it takes the lock. */
    MK_SHM_OWNED = 1u << 0,
    /** Fill the block with zeros. */
    MK_SHM_ZERO = 1u << 1,
};

/** Longest name of a shared-memory segment or file path, in bytes. */
#define MK_SHM_NAME_MAX 255
/** Longest name of a named object, in bytes (without the NUL). */
#define MK_SHM_OBJ_NAME_MAX 63
/** Processes that can be attached to one segment at the same time. */
#define MK_SHM_MAX_PROCS 128
/** Smallest segment size accepted by mk_shm_create() (any policy). */
#define MK_SHM_MIN_SIZE ((size_t)64 * 1024)

/** How to create a segment (zero-initialise, then set what you need). */
typedef struct mk_shm_config {
    size_t size;      /**< initial bytes (rounded up to whole pages; >= MK_SHM_MIN_SIZE) */
    size_t max_size;  /**< bytes it may grow to; 0 = size (no growth); <= MK_REGION_MAX_SIZE */
    mk_policy policy; /**< fit policy (MK_POLICY_FIRST_FIT is 0) */
    unsigned mode;    /**< permission bits of the object/file; 0 = 0600 */
    unsigned flags;   /**< MK_SHM_* flags */
    /** Most bytes of freed blocks each attached process may keep in its
     *  cache (allocations of up to MK_SHM_CACHE_MAX_SIZE bytes are served
     *  from it without the segment lock). 0 = the default: 1/64 of the
     *  initial size (MK_SHM_CACHE_SHARE), at most MK_SHM_CACHE_DEFAULT_BYTES.
     *  A cache takes a table of about 8 KiB from the segment per process;
     *  none is made in segments smaller than MK_SHM_CACHE_MIN_SEGMENT. */
    size_t cache_bytes;
} mk_shm_config;

/** Largest request served by the per-process caches. */
#define MK_SHM_CACHE_MAX_SIZE 4096
/** Largest default of mk_shm_config.cache_bytes (segments of 256 MiB and up). */
#define MK_SHM_CACHE_DEFAULT_BYTES ((size_t)4 * 1024 * 1024)
/** The default budget is the segment's initial size over this. */
#define MK_SHM_CACHE_SHARE 64
/** Segments smaller than this (at attach time) get no caches. */
#define MK_SHM_CACHE_MIN_SEGMENT ((size_t)1024 * 1024)

/** What mk_shm_get_info() reports about a segment. */
typedef struct mk_shm_info {
    char name[MK_SHM_NAME_MAX + 1]; /**< the name given at creation */
    uint64_t size;                  /**< current bytes of the region */
    uint64_t max_size;              /**< the most it may grow to */
    mk_policy policy;               /**< fit policy */
    unsigned flags;         /**< creation flags (MK_SHM_FILE, MK_SHM_REMOVE_ON_LAST_CLOSE) */
    uint32_t attached;      /**< processes attached now (observers excluded) */
    uint32_t objects;       /**< named objects in the directory */
    uint64_t creator_pid;   /**< the process that created the segment */
    uint64_t generation;    /**< attaches since creation */
    uint64_t cache_bytes;   /**< per-process cache budget (0: no caches) */
    uint64_t cached_blocks; /**< blocks held in all processes' caches now (a snapshot) */
    uint64_t cached_bytes;  /**< their spans in bytes (counted as in use by mk_shm_stats) */
} mk_shm_info;

/** One attached process, as recorded in the segment. */
typedef struct mk_shm_proc {
    uint32_t slot;       /**< index in the process table */
    uint64_t pid;        /**< process id */
    uint64_t start_time; /**< OS start time of the process (with pid: one process) */
    uint64_t generation; /**< attach number; owned blocks refer to it */
    int alive;           /**< 1 if (pid, start_time) is a live process now */
    int self;            /**< 1 for the calling process's own slot */
} mk_shm_proc;

/** A named object, as recorded in the directory. */
typedef struct mk_shm_obj {
    char name[MK_SHM_OBJ_NAME_MAX + 1]; /**< NUL-terminated */
    uint32_t type;                      /**< the caller's type tag */
    uint64_t size;                      /**< bytes requested at creation */
    mk_off offset;                      /**< its data (16-aligned), valid in every process */
} mk_shm_obj;

/** Callback of mk_shm_obj_iter(); return non-zero to stop. Runs with the
 *  segment locked: it must not call back into the same segment. */
typedef int (*mk_shm_obj_visitor)(const mk_shm_obj *obj, void *arg);

/** Callback of mk_shm_list(); called with each memkit segment's name. */
typedef void (*mk_shm_name_visitor)(const char *name, void *arg);

/* ---- lifetime ----------------------------------------------------------- */

/**
 * @brief Create a segment and attach the calling process to it.
 * @param name "/name" (POSIX shared-memory rules: one leading '/', no other,
 *        at most MK_SHM_NAME_MAX bytes), or a file path with MK_SHM_FILE.
 * @param cfg size, max_size, policy, mode and flags.
 * @param[out] out the handle.
 * @return MK_OK, MK_EINVAL (bad name, size, policy or flag), MK_ENOTSUP
 *         (buddy with max_size > size), MK_EEXIST (the name exists and
 *         MK_SHM_OPEN_EXISTING was not given), MK_EPERM, MK_ENOMEM, MK_EOS;
 *         with MK_SHM_OPEN_EXISTING also every error of mk_shm_open().
 */
int mk_shm_create(const char *name, const mk_shm_config *cfg, mk_shm **out);

/**
 * @brief Open an existing segment and attach the calling process.
 * @param flags MK_SHM_FILE, MK_SHM_OBSERVE.
 * @return MK_OK, MK_EINVAL, MK_ENOENT (no such name, or removed on last
 *         close), MK_EPERM, MK_EBADMAGIC (not a memkit segment),
 *         MK_EVERSION (another layout version), MK_ELAYOUT (another build's
 *         layout), MK_ETRUNCATED (the object is smaller than its header
 *         says), MK_ECORRUPT (metadata out of bounds), MK_EBUSY (the
 *         process table is full of live processes), MK_ENOTRECOVERABLE,
 *         MK_EOS. A segment another process is still creating is waited
 *         for (up to a second); one whose creator died half-way gives
 *         MK_EBADMAGIC.
 */
int mk_shm_open(const char *name, unsigned flags, mk_shm **out);

/**
 * @brief Detach and unmap. If this was the last attached process and the
 *        creator chose MK_SHM_REMOVE_ON_LAST_CLOSE, the name is removed.
 *        Local pointers into the segment become invalid. NULL is a no-op.
 * @return MK_OK, or the error of taking the lock (the mapping is released
 *         in every case).
 */
int mk_shm_close(mk_shm *s);

/**
 * @brief Remove a segment's name (the memory lives on until every process
 *        has closed it). flags: MK_SHM_FILE for a file path.
 * @return MK_OK, MK_EINVAL, MK_ENOENT, MK_EPERM, MK_EOS.
 */
int mk_shm_unlink(const char *name, unsigned flags);

/**
 * @brief Call visit(name, arg) for every memkit segment on this machine
 *        (shared-memory objects whose header is a memkit segment's).
 * @return MK_OK, MK_EINVAL, MK_ENOTSUP, MK_EOS.
 */
int mk_shm_list(mk_shm_name_visitor visit, void *arg);

/* ---- allocation -------------------------------------------------------------- */

/**
 * @brief Allocate size bytes (16-aligned). Grows the segment if needed and
 *        allowed. A size of 0 gives a unique minimum block.
 * @param[out] out the block's offset, valid in every attached process.
 * @return MK_OK, MK_EINVAL, MK_ETOOBIG (larger than the maximum size could
 *         hold), MK_ENOMEM (no room, even after growing to the maximum),
 *         MK_ECORRUPT, MK_ENOTRECOVERABLE, MK_EOS.
 */
int mk_shm_alloc(mk_shm *s, size_t size, mk_off *out);

/**
 * @brief Allocate with an alignment and flags.
 * @param align 0 for 16, or a power of two up to MK_REGION_MAX_ALIGN; the
 *        alignment holds in every process (mappings are page-aligned).
 * @param flags MK_SHM_OWNED, MK_SHM_ZERO.
 * @return as mk_shm_alloc(), MK_EALIGN; MK_EINVAL for MK_SHM_OWNED from an
 *         observer.
 */
int mk_shm_alloc_ex(mk_shm *s, size_t size, size_t align, unsigned flags, mk_off *out);

/**
 * @brief Free a block. Named objects and the segment's own blocks are
 *        refused (MK_EBADOFF); remove a named object with mk_shm_obj_remove().
 * @return MK_OK, MK_EINVAL, MK_EBADOFF (not the start of a live block),
 *         MK_EDOUBLEFREE, MK_ECORRUPT, MK_ENOTRECOVERABLE, MK_EOS. Nothing
 *         changes on error.
 */
int mk_shm_free(mk_shm *s, mk_off off);

/**
 * @brief Resize a block (in place when possible, else by moving it; the
 *        first min(old, new) bytes are kept). off 0 allocates. An owned
 *        block stays owned by its owner.
 * @param[out] out the block's offset afterwards.
 * @return as mk_shm_alloc() and mk_shm_free(); on error the block is unchanged.
 */
int mk_shm_realloc(mk_shm *s, mk_off off, size_t size, mk_off *out);

/**
 * @brief Usable bytes of a live block (at least the size requested).
 * @return MK_OK, MK_EINVAL, MK_EBADOFF, MK_EDOUBLEFREE.
 */
int mk_shm_usable_size(mk_shm *s, mk_off off, size_t *out);

/**
 * @brief Local address of an offset, or NULL for 0 or an offset outside the
 *        segment. If another process grew the segment past this process's
 *        mapping, the mapping is extended first.
 */
void *mk_shm_ptr(mk_shm *s, mk_off off);

/** @brief Offset of a local address inside the segment; 0 for NULL or an
 *         address outside it. */
mk_off mk_shm_offset(const mk_shm *s, const void *p);

/**
 * @brief Give every block in the handle's caches (its own and its thread
 *        handles') back to the heap, where any process and any size can
 *        use it. (An allocation that finds no room does this by itself
 *        before it fails; closing the handle does it too.)
 * @return MK_OK, MK_EINVAL, MK_ECORRUPT (a damaged cache list; the blocks
 *         before the damage are given back), lock errors.
 */
int mk_shm_cache_flush(mk_shm *s);

/**
 * @brief Free every owned block whose owner process is dead (its pid and
 *        start time no longer name a live process, or it detached without
 *        freeing), and free the process-table slots of dead processes.
 * @param[out] blocks optional: blocks freed. @param[out] bytes optional: their usable bytes.
 * @return MK_OK, MK_EINVAL, MK_ECORRUPT, MK_ENOTRECOVERABLE, MK_EOS.
 */
int mk_shm_reclaim(mk_shm *s, uint64_t *blocks, uint64_t *bytes);

/* ---- named objects ------------------------------------------------------------- */

/** Flags for mk_shm_obj_create(). */
enum mk_shm_obj_flags {
    /** Fail with MK_EEXIST if the name exists (default: find-or-create). */
    MK_SHM_OBJ_EXCL = 1u << 0,
};

/**
 * @brief Find-or-create a named object, atomically: of several processes
 *        racing on one name, exactly one creates it and all get the same
 *        offset. A new object's data is zero-filled and 16-aligned.
 * @param name 1..MK_SHM_OBJ_NAME_MAX bytes.
 * @param type the caller's type tag, stored with the object.
 * @param size bytes of data.
 * @param flags MK_SHM_OBJ_EXCL.
 * @param[out] out the data's offset.
 * @param[out] created optional: 1 if this call created it, 0 if it existed.
 * @return MK_OK, MK_EINVAL (NULL, empty name, name too long, unknown flag),
 *         MK_EEXIST (with MK_SHM_OBJ_EXCL; or the existing object has
 *         another type tag or is smaller than size), MK_ENOMEM, MK_ETOOBIG,
 *         MK_ECORRUPT, MK_ENOTRECOVERABLE, MK_EOS.
 */
int mk_shm_obj_create(mk_shm *s, const char *name, uint32_t type, size_t size, unsigned flags,
                      mk_off *out, int *created);

/**
 * @brief Look a named object up.
 * @param[out] obj optional: its record.
 * @return MK_OK, MK_EINVAL, MK_ENOENT, MK_ECORRUPT, MK_ENOTRECOVERABLE, MK_EOS.
 */
int mk_shm_obj_find(mk_shm *s, const char *name, mk_shm_obj *obj);

/**
 * @brief Remove a named object and free its memory.
 * @return MK_OK, MK_EINVAL, MK_ENOENT, MK_ECORRUPT, MK_ENOTRECOVERABLE, MK_EOS.
 */
int mk_shm_obj_remove(mk_shm *s, const char *name);

/**
 * @brief Visit every named object (in directory order, under the lock).
 * @return 0, the visitor's non-zero value, or a negative error code.
 */
int mk_shm_obj_iter(mk_shm *s, mk_shm_obj_visitor visit, void *arg);

/* ---- inspection (any attached process, while others work) ---------------------- */

/** @brief Segment-level facts. @return MK_OK, MK_EINVAL, lock errors. */
int mk_shm_get_info(mk_shm *s, mk_shm_info *out);

/**
 * @brief The attached processes. Fills up to cap records, sets *n to the
 *        number of attached processes (may exceed cap).
 * @return MK_OK, MK_EINVAL, lock errors.
 */
int mk_shm_procs(mk_shm *s, mk_shm_proc *out, size_t cap, size_t *n);

/** @brief Heap statistics of the segment (the region's, see region.h). */
int mk_shm_stats(mk_shm *s, mk_stats *out);

/**
 * @brief Check every invariant: the region's (region.h), then the
 *        segment's: its metadata block, the process table, the directory
 *        (every entry a live block of the right kind, names terminated,
 *        chains acyclic and in the right bucket, counts agree) and the
 *        owner records of owned blocks, the cache tables, and the calling
 *        process's own cache lists (other processes change theirs without
 *        the lock).
 * @param[out] fault optional: the first broken invariant.
 * @return MK_OK or the fault's code (MK_ECORRUPT ...), or a lock error.
 */
int mk_shm_validate(mk_shm *s, mk_fault *fault);

/** What mk_shm_walk() reports per block, beyond mk_block_info. */
typedef enum mk_shm_block_kind {
    MK_SHM_BLOCK_FREE = 0,   /**< free */
    MK_SHM_BLOCK_PLAIN = 1,  /**< allocated with mk_shm_alloc */
    MK_SHM_BLOCK_OWNED = 2,  /**< allocated with MK_SHM_OWNED */
    MK_SHM_BLOCK_OBJECT = 3, /**< a named object (offset is its data) */
    MK_SHM_BLOCK_META = 4,   /**< the segment's own metadata (and cache tables) */
    MK_SHM_BLOCK_CACHED = 5, /**< freed, held in a process's cache (allocated
                                  for the region; a racy snapshot); an owned
                                  block its owner freed keeps its owner */
} mk_shm_block_kind;

/** One block as mk_shm_walk() reports it. */
typedef struct mk_shm_block {
    mk_block_info info;     /**< offset/size/span/used as region.h reports */
    mk_shm_block_kind kind; /**< what the block is */
    uint32_t owner_slot;    /**< owned (or cached owned): the owner's process-table slot */
    uint64_t owner_gen;     /**< owned (or cached owned): the owner's attach generation */
} mk_shm_block;

/** Callback of mk_shm_walk(); return non-zero to stop. Runs under the lock. */
typedef int (*mk_shm_block_visitor)(const mk_shm_block *block, void *arg);

/**
 * @brief Visit every block in address order, under the lock.
 * @return 0, the visitor's non-zero value, or a negative error code.
 */
int mk_shm_walk(mk_shm *s, mk_shm_block_visitor visit, void *arg);

/**
 * @brief Print the segment (info, processes, statistics, directory and
 *        every block) in a human-readable form.
 * @return MK_OK, MK_EINVAL, MK_EOS (write failed), lock errors.
 */
int mk_shm_dump(mk_shm *s, FILE *f);

/** @brief Name of a block kind ("free", "plain", "owned", "object", "meta"). */
const char *mk_shm_block_kind_name(mk_shm_block_kind kind);

/** @brief The underlying region (for read-only inspection with region.h
 *         functions; take no lock: prefer the mk_shm_* functions). */
mk_region *mk_shm_region(const mk_shm *s);

#ifdef __cplusplus
}
#endif
#endif
