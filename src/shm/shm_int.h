/*
 * Internals of the shared-memory heap (src/shm/).
 *
 * A segment is one engine region at mapping offset 0, created with
 * MK_REGION_JOURNAL. The segment's own state lives in the region too:
 *
 *   header user[0]  MK__SHM_MAGIC, written last at creation (a segment is
 *                   complete once it is there)
 *          user[1]  offset of the meta block's payload
 *          user[2]  MK__SHM_VERSION          user[3]  shm layout signature
 *          user[4]  max_size (readable from the first page, before the
 *                   rest is mapped: it says how much address space to reserve)
 *          lock[]   the process-shared robust mutex
 *
 *   meta block      mk__shm_meta: name, sizes, flags, process table,
 *                   directory bucket heads
 *   cache tables    mk__shm_cache: one per attached process (cache.c)
 *   object blocks   mk__shm_ent (name, type, size, chain link) + the data
 *   owned blocks    user data + an owner word
 *   plain blocks    user data only
 *
 * Blocks that are not plain carry the engine's MK__F_USER bit and a
 * "trailer" word, the last word of the block (b + span - 8), that says what
 * they are: MK__TR_META / MK__TR_OBJ / MK__TR_CACHE (with the block's offset mixed in, so a
 * copied trailer is not valid elsewhere) or MK__TR_OWNED (owner slot and the
 * low 32 bits of its attach generation). A plain block never has the USER
 * bit, so a user cannot forge a trailer by writing its own data.
 *
 * Every write of segment state goes through mk__set inside
 * mk__journal_begin(MK__OP_USER)/end, in the same journal operation as the
 * engine writes it goes with (an object's block allocation and its
 * directory link are one operation): a crash anywhere rolls the whole
 * operation back. That is why this layer calls the engine's operation-level
 * functions (mk__region_alloc_op, mk__region_free_op) inside its own
 * bracket instead of mk_region_alloc, which commits on its own. Segments
 * are never created with MK_REGION_QUICK, so the engine's quick lists never
 * get in the way.
 *
 * All of it is guarded by the mutex; every function here named *_locked
 * expects it held.
 */
#ifndef MK_SHM_INT_H
#define MK_SHM_INT_H

#include <stdatomic.h>

#include "memkit/shm.h"
#include "os/os.h"
#include "region/region_int.h"

#define MK__SHM_MAGIC   UINT64_C(0x474553534D48534B) /* "KSHMSSEG" little-endian */
#define MK__SHM_META_MG UINT64_C(0x4154454D4D48534B) /* "KSHMMETA" */
#define MK__SHM_VERSION 2u
#define MK__SHM_BUCKETS 256u

/* user[] words of the region header */
enum { MK__U_MAGIC = 0, MK__U_META, MK__U_VERSION, MK__U_SIG, MK__U_MAX };

/* trailer kinds (top 16 bits of the trailer word) */
#define MK__TR_OWNED UINT64_C(0x4F57)
#define MK__TR_META  UINT64_C(0x4D45)
#define MK__TR_OBJ   UINT64_C(0x4F42)
#define MK__TR_CACHE UINT64_C(0x4341)
#define MK__TR_SHIFT 48

/* Operation codes in journal args[0] (diagnosis only). */
enum {
    MK__SOP_ALLOC = 1,
    MK__SOP_FREE,
    MK__SOP_REALLOC,
    MK__SOP_ATTACH,
    MK__SOP_DETACH,
    MK__SOP_REAP,
    MK__SOP_OBJ_CREATE,
    MK__SOP_OBJ_REMOVE,
    MK__SOP_META,
    MK__SOP_FAILED,
    MK__SOP_CACHE, /* a cache table made or freed, a block into or out of a cache */
};

/* One process-table slot. pid == 0: free. */
typedef struct mk__shm_slot {
    uint64_t pid;
    uint64_t start_time;
    uint64_t gen; /* meta.gen when this process attached (>= 1) */
    mk_off cache; /* payload offset of its cache table, 0 = none */
} mk__shm_slot;

typedef struct mk__shm_meta {
    uint64_t magic; /* MK__SHM_META_MG */
    uint64_t version;
    uint64_t max_size;
    uint64_t flags; /* MK_SHM_FILE | MK_SHM_REMOVE_ON_LAST_CLOSE */
    uint64_t creator_pid;
    uint64_t removed;     /* the name was removed on last close: opens must fail */
    uint64_t attached;    /* used slots */
    uint64_t gen;         /* attaches since creation */
    uint64_t objects;     /* directory entries */
    uint64_t cache_bytes; /* per-process cache budget, 0 = no caches */
    uint64_t pad[6];
    char name[MK_SHM_NAME_MAX + 1];
    mk_off buckets[MK__SHM_BUCKETS]; /* payload offsets of the first entries */
    mk__shm_slot slots[MK_SHM_MAX_PROCS];
} mk__shm_meta;

/* A named object's header, at the start of its block's payload; the data
 * follows at payload + sizeof(mk__shm_ent) (16-aligned). */
typedef struct mk__shm_ent {
    mk_off next; /* payload offset of the next entry in the bucket, 0 = end */
    uint64_t hash;
    uint64_t type;
    uint64_t size;
    char name[MK_SHM_OBJ_NAME_MAX + 1];
} mk__shm_ent;

/* ---- per-process caches (cache.c) ----
 * A process's cache holds freed blocks of up to MK__SHM_CACHE_MAX_SPAN
 * bytes, one LIFO list per kind (plain, its own owned blocks) and span
 * (16-byte steps), so that its allocations
 * and frees of small blocks take only its own handle's mutex. For the
 * engine a cached block is allocated; its first two payload words hold the
 * next block of its list and a cookie (mk__shm_cookie) that says "cached"
 * (a second free of it is caught). The table is the process's alone while
 * it lives; when it is dead, the reap frees every block on its lists and
 * the one in `pending` (a block between a list and its holder when the
 * process died). */
#define MK__SHM_CACHE_MG       UINT64_C(0x484341434D48534B) /* "KSHMCACH" */
#define MK__SHM_CACHE_MAX_SPAN ((uint64_t)MK_SHM_CACHE_MAX_SIZE + 16)
#define MK__SHM_CACHE_BINS     (MK__SHM_CACHE_MAX_SPAN / 16 + 1)
#define MK__SHM_CACHE_MAX_LEN  1024u /* blocks per list, at most */
#define MK__SHM_CACHE_SLACK                                                                        \
    3 /* an allocation of span S may take a cached block of up to                                  \
         S + S / 2^3 bytes */

/* The two kinds of lists: plain blocks, and blocks owned by the table's
 * process (MK_SHM_OWNED: the USER bit and the owner's trailer word, kept
 * while cached, so a cached owned block is still the owner's for a reclaim
 * and its lists need no change of a header word another process may be
 * writing under the lock). */
enum { MK__SHM_PLAIN = 0, MK__SHM_OWNED_LIST = 1, MK__SHM_LISTS = 2 };

typedef struct mk__shm_bin {
    mk_off head;    /* block offset (not payload) of the newest, 0 = empty */
    uint64_t count; /* blocks on the list */
} mk__shm_bin;

typedef struct mk__shm_cache {
    uint64_t magic; /* MK__SHM_CACHE_MG */
    uint64_t slot;  /* the process-table slot that refers to it */
    uint64_t owner; /* the owner word of the blocks on its owned lists: its handle's
                       (a thread handle's table: its parent's, threads.c) */
    mk_off pending; /* block offset in flight between a list and the caller */
    uint64_t bytes; /* spans held */
    uint64_t blocks;
    uint64_t pad[2];
    uint64_t nonempty[MK__SHM_LISTS][(MK__SHM_CACHE_BINS + 63) / 64]; /* bit i: bin[k][i].head */
    mk__shm_bin bin[MK__SHM_LISTS][MK__SHM_CACHE_BINS];               /* [kind][span / 16] */
} mk__shm_cache;

_Static_assert(sizeof(mk__shm_ent) % 16 == 0, "object data must stay 16-aligned");
_Static_assert(MK__SHM_CACHE_MAX_LEN <= UINT16_MAX, "a list's length must fit mk_shm.low[]");
_Static_assert(sizeof(((mk__hdr *)0)->lock) >= MK__OS_MUTEX_BYTES, "no room for the mutex");

struct mk_shm {
    /* Read by every operation of every thread: written only at open and
     * when the mapping grows. */
    mk__hdr *h;              /* base of the mapping = the region */
    size_t reserved;         /* bytes of address space reserved at h */
    _Atomic uint64_t mapped; /* bytes of the object mapped at h */
    mk__shm_cache *cache;    /* this handle's cache table, NULL: none */
    uint64_t id;             /* unique in the process, never reused (threads.c) */
    uint64_t epoch;          /* mk__os_fork_epoch() at open: a forked child's copy differs */
    bool thread_handle;      /* opened by threads.c for one thread's cache, */
    struct mk_shm *parent;   /* on this handle's mapping */
    /* Copies of words that never change after creation, for the paths every
     * allocation and free takes (the cache, the capacity check): the
     * header's data_start shares a cache line with the engine's counters,
     * which every locked operation of every process writes (reading it
     * there costs a miss per operation when another process works), and
     * the meta block's budget. Set by keep_constants (shm.c). */
    mk_off data_start;
    uint64_t cache_budget;
    mk__os_shm os;
    mk_off meta; /* payload offset of the meta block */
    int slot;    /* process-table slot, -1 for an observer */
    uint64_t gen;
    uint64_t pid; /* the process that opened the handle */
    unsigned flags;
    char name[MK_SHM_NAME_MAX + 1];
    bool lock_attached; /* mk__os_mutex_attach done on the header's mutex (shm.c) */
    /* Written by the thread that uses the handle's cache, on every
     * operation: lines of their own, so that the process's other threads,
     * which read the words above on theirs, do not miss on them. */
    _Alignas(64) _Atomic uint32_t
        local;       /* this handle's threads, one at a time: 0 free, 1 held, 2 waiters */
    bool local_held; /* the segment lock's holder holds `local` too (mk__shm_lock) */
    /* Private hints of the cache's collection (cache.c): per list, its
     * fewest blocks since the last collection; frees left before the next
     * may run. Not in the segment: only the living owner uses them. */
    uint16_t low[MK__SHM_LISTS][MK__SHM_CACHE_BINS];
    uint32_t gc_wait;
};

/* Block kinds as classify() sees them. */
typedef struct mk__shm_blk {
    mk_off b;      /* block start (payload - 8) */
    uint64_t span; /* bytes */
    int kind;      /* mk_shm_block_kind */
    uint32_t slot; /* owned: owner slot */
    uint32_t gen;  /* owned: low 32 bits of the owner's generation */
    bool table;    /* meta: a cache table */
} mk__shm_blk;

static inline mk__shm_meta *mk__shm_m(const mk_shm *s) {
    return (mk__shm_meta *)(void *)mk__word(s->h, s->meta);
}
static inline mk__os_mutex *mk__shm_mutex(const mk__hdr *h) {
    return (mk__os_mutex *)(void *)(uintptr_t)h->lock;
}
static inline uint64_t mk__shm_trailer_kind(uint64_t k, mk_off b) {
    return (k << MK__TR_SHIFT) | ((b >> 3) & ((UINT64_C(1) << MK__TR_SHIFT) - 1));
}
static inline uint64_t mk__shm_trailer_for(int kind, mk_off b) {
    uint64_t k = kind == MK_SHM_BLOCK_META ? MK__TR_META : MK__TR_OBJ;
    return (k << MK__TR_SHIFT) | ((b >> 3) & ((UINT64_C(1) << MK__TR_SHIFT) - 1));
}
static inline uint64_t mk__shm_owner_word(uint32_t slot, uint64_t gen) {
    return (MK__TR_OWNED << MK__TR_SHIFT) | ((uint64_t)slot << 32) | (gen & 0xFFFFFFFFu);
}
/* Last possible sentinel offset for a range of size bytes (as region.c). */
static inline mk_off mk__shm_end_for(uint64_t size) {
    return ((size - 16) & ~(uint64_t)(MK__GRAIN - 1)) + 8;
}

/* The "cached" mark of block b: keyed by the region's secret, so user data
 * does not carry it by chance. */
static inline uint64_t mk__shm_cookie(const mk__hdr *h, mk_off b) {
    return ((b + 0x9E37) * UINT64_C(0xD6E8FEB86659FD93)) ^ h->secret ^ MK__SHM_CACHE_MG;
}
/* Whether a classified block is one that some process's cache holds (freed
 * already): plain or owned, with the cookie. */
static inline bool mk__shm_in_a_cache(const mk__hdr *h, const mk__shm_blk *blk) {
    return (blk->kind == MK_SHM_BLOCK_PLAIN || blk->kind == MK_SHM_BLOCK_OWNED) &&
           blk->span >= 32 && mk__get_unlocked(h, blk->b + 16) == mk__shm_cookie(h, blk->b);
}

/* The handle's own lock (private memory, this process's threads only): a
 * futex lock of three states, so that the uncontended case is one CAS and
 * one exchange, with no system call, and a waiter sleeps. The contended
 * path (a spin, then sleeps) is out of line: the cache's paths inline the
 * lock. */
void mk__shm_local_lock_slow(mk_shm *s);
static inline void mk__shm_local_lock(mk_shm *s) {
    uint32_t c = 0;
    if (!atomic_compare_exchange_strong_explicit(&s->local, &c, 1, memory_order_acquire,
                                                 memory_order_relaxed))
        mk__shm_local_lock_slow(s);
}
static inline void mk__shm_local_unlock(mk_shm *s) {
    if (atomic_exchange_explicit(&s->local, 0, memory_order_release) == 2)
        mk__os_wake32((const uint32_t *)(const void *)&s->local, 1, false);
}

/* The handle's mutex, unless the process has a single thread: then no
 * other thread can be here, and the mutex's two atomic instructions, which
 * wait for the stores of the operations before them to reach the cache (a
 * store miss each, often), are saved; glibc's malloc skips its arena lock
 * the same way. Returns whether it was taken, for mk__shm_local_leave: the
 * flag may turn false meanwhile if this thread makes a thread (a walk's
 * callback may), so the leave must not ask again. */
static inline bool mk__shm_local_enter(mk_shm *s) {
    if (mk__os_single_threaded()) return false;
    mk__shm_local_lock(s);
    return true;
}
static inline void mk__shm_local_leave(mk_shm *s, bool taken) {
    if (taken) mk__shm_local_unlock(s);
}

/* ---- shm.c ---- */
/* Take the handle's mutex and the segment lock, repairing after a dead
 * owner, and bring the mapping up to the header's size. MK_OK: the caller
 * holds both. A forked child's copy of a handle skips the handle's mutex
 * (it may have been copied locked). */
int mk__shm_lock(mk_shm *s);
void mk__shm_unlock(mk_shm *s);
/* The segment lock alone, for a caller that holds the handle's mutex. */
int mk__shm_lock_shared(mk_shm *s);
void mk__shm_unlock_shared(mk_shm *s);
/* Whether s is a copy inherited through fork() (no system call). */
static inline bool mk__shm_inherited(const mk_shm *s) { return s->epoch != mk__os_fork_epoch(); }
/* Which end of a free block this process's blocks come from
 * (MK__PLACE_*): the high end for odd process-table slots, the low end for
 * even ones and observers. Two processes attached one after the other get
 * opposite ends, so their blocks, cache tables and refills do not
 * interleave in a fresh or grown segment (docs/SHM.md, "Placement"). */
static inline unsigned mk__shm_place(const mk_shm *s) {
    return s->slot > 0 && (s->slot & 1) ? MK__PLACE_HIGH : MK__PLACE_LOW;
}
/* Grow the segment so that an allocation of need more bytes can fit.
 * MK_ENOMEM when it cannot grow (maximum reached, buddy). */
int mk__shm_grow_locked(mk_shm *s, uint64_t need);
/* Free the slots of processes that are no longer alive (journaled). */
int mk__shm_reap_locked(mk_shm *s, uint64_t *reaped);
uint64_t mk__shm_layout_sig(void);

/* ---- threads.c ---- */
/* A new handle's id. */
uint64_t mk__shm_new_id(void);
/* The handle whose cache the calling thread uses for the blocks of s:
 * s while the process has one thread (or s has no cache, or is a copy
 * inherited through fork), else the thread's own (threads.c). */
mk_shm *mk__shm_thread_cache_of(mk_shm *s);
static inline mk_shm *mk__shm_thread_cache(mk_shm *s) {
    if (mk__os_single_threaded() || !s->cache || s->thread_handle || mk__shm_inherited(s)) return s;
    return mk__shm_thread_cache_of(s);
}
/* Flush the caches of s's thread handles (not under s's locks). Whether
 * s has any. */
bool mk__shm_thread_flush(mk_shm *s);
/* Close s's thread handles (mk_shm_close, first). */
void mk__shm_thread_close(mk_shm *s);
/* shm.c: a thread handle of s: a process-table slot and a cache of its
 * own, on s's mapping (so the segment's words, its lock among them, have
 * one address in the process). MK_ENOMEM without room for its table. */
int mk__shm_open_thread_handle(mk_shm *s, mk_shm **out);

/* ---- heap.c ---- */
/* What the block whose payload is off is. MK_EBADOFF, MK_EDOUBLEFREE,
 * MK_ECORRUPT (USER bit with an unknown trailer). */
int mk__shm_classify(const mk__hdr *h, mk_off off, mk__shm_blk *out);
/* Inside an open journal operation: the engine's mk__region_alloc_op, but
 * MK_ENOMEM (the segment may grow) for a size beyond the current data.
 * Freeing and payload logging use the engine's mk__region_free_op and
 * mk__journal_payload_words directly. */
int mk__shm_raw_alloc(mk__hdr *h, uint64_t size, uint64_t align, unsigned place, mk_off *b);
/* Mark b as a tagged block with trailer word t (journaled). */
void mk__shm_tag_block(mk__hdr *h, mk_off b, uint64_t t);
/* Bytes the maximum size could ever give one block. */
uint64_t mk__shm_capacity(const mk_shm *s);
/* Under both locks, an allocation found no room: give this handle's cached
 * blocks back (once: *drained), else grow the segment. MK_OK: try again.
 * MK_ENOMEM counts a failure if count (the last try). */
int mk__shm_no_room(mk_shm *s, uint64_t need, bool *drained, bool count);
/* No locks held, a locked allocation said MK_ENOMEM without counting it:
 * true if the other threads' caches gave blocks back (try once more, with
 * count), else false, the failure counted. */
bool mk__shm_retry_after_flush(mk_shm *s);

/* ---- cache.c ---- */
/* Serve an allocation / a free from the calling process's cache.
 * MK_ENOENT: not for the cache (or nothing there): take the locked path. */
int mk__shm_cache_alloc(mk_shm *s, size_t size, unsigned flags, mk_off *out);
int mk__shm_cache_free(mk_shm *s, mk_off off);
/* Under both locks. Make this process's table (after attach; no table
 * when the segment is too small or caches are off) / free every block in
 * it and the table (before detach). */
int mk__shm_cache_attach_locked(mk_shm *s);
int mk__shm_cache_detach_locked(mk_shm *s);
/* Under both locks: give every block of this process's cache back to the
 * heap (an allocation that found no room tries this before failing). */
int mk__shm_cache_drain_locked(mk_shm *s);
/* Under the segment lock: free the cache of dead slot i (its lists, its
 * pending block, the table) and clear slot.cache. */
int mk__shm_cache_reap_locked(mk_shm *s, uint32_t i);
/* Under both locks: check this process's lists; the tables of all slots. */
int mk__shm_cache_check(mk_shm *s, mk_fault *f);
#ifdef MK_TEST_HOOKS
/* Test builds: segments at least this large get caches (default 1 MiB). */
extern uint64_t mk__test_cache_min_segment;
#endif
/* Blocks and bytes held by all caches (a snapshot). */
void mk__shm_cache_totals(const mk_shm *s, uint64_t *blocks, uint64_t *bytes);

/* ---- check.c ---- */
int mk__shm_validate_locked(mk_shm *s, mk_fault *fault);
/* Record a broken segment invariant in f (may be NULL); MK_ECORRUPT. */
int mk__shm_fault(mk_fault *f, const char *invariant, mk_off off);

/* ---- dir.c ---- */
uint64_t mk__shm_hash(const char *name, size_t len);
int mk__shm_dir_check(mk_shm *s, mk_fault *f);

#endif
