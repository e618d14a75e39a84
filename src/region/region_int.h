/*
 * Internals of the block engine, shared by the files of src/region/.
 *
 * Memory layout of a region (all offsets from base; docs/REGION.md draws it):
 *
 *   0            mk__hdr: identity, sizes, counters, room for a lock
 *   state_off    the policy's free-structure roots (ops->state_size bytes)
 *   quick_off    quick lists (only with MK_REGION_QUICK), else 0
 *   journal_off  the undo journal (only with MK_REGION_JOURNAL), else 0
 *   data_start   first block; blocks tile [data_start, data_end)
 *   data_end     the end sentinel: a header word with span 0, always "used"
 *
 * A block at offset b (b % 16 == 8) starts with one 64-bit header word:
 *
 *   bits 63..48  check tag = hash(b, span, secret): tells a real block start
 *                from an interior or stale offset, and a foreign write
 *   bits 47..4   span: bytes the block occupies, header word included;
 *                a multiple of 16, at least ops->min_span
 *   bit 1        PREV_FREE: the block before this one is free (boundary-tag
 *                policies only; its footer then holds its header word)
 *   bit 0        FREE
 *
 * The payload starts at b + 8 and is 16-aligned. A used block's usable size
 * is span - 8. A free block keeps its policy's links in its payload
 * (words at b + 8, b + 16, b + 24, ...) and, for boundary-tag policies, a
 * copy of its header word as footer in its last word (b + span - 8), so the
 * next block can find its start when coalescing.
 *
 * Every write of metadata goes through mk__set(): with a journal, the old
 * value is logged first, so an operation cut short by a crash can be undone
 * (mk_region_recover). Nothing in the range is a pointer.
 */
#ifndef MK_REGION_INT_H
#define MK_REGION_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bits.h"
#include "memkit/region.h"

#define MK__MAGIC      UINT64_C(0x4E4F494745524B4D) /* "MKREGION" little-endian */
#define MK__VERSION    1u
#define MK__GRAIN      16u
#define MK__TAGW       8u /* bytes of a block's header word */
#define MK__CACHE_LINE 64u

#define MK__F_FREE      UINT64_C(1)
#define MK__F_PREV_FREE UINT64_C(2)
#define MK__F_USER      UINT64_C(4) /* one bit for the layer above (pool: protected) */
#define MK__F_QUICK     UINT64_C(8) /* parked on a quick list (deferred coalescing) */
#define MK__F_MASK      UINT64_C(0xF)
#define MK__SPAN_MASK   UINT64_C(0x0000FFFFFFFFFFF0)
#define MK__TAG_SHIFT   48

/* Offsets of the link words inside a free block, from the block start. */
#define MK__LINK0 8u
#define MK__LINK1 16u
#define MK__LINK2 24u

/* Counters kept in the header and updated with every operation. */
typedef struct mk__counters {
    uint64_t bytes_used;  /* sum of spans of used blocks */
    uint64_t blocks_used; /* used blocks */
    uint64_t peak_used;   /* max of bytes_used since reset */
    uint64_t n_alloc, n_free, n_realloc, n_failed;
} mk__counters;

typedef struct mk__hdr {
    uint64_t magic;
    uint32_t version;
    uint32_t hdr_size;  /* sizeof(mk__hdr) when written */
    uint64_t signature; /* mk__layout_signature() of the writer */
    uint64_t size;      /* bytes of the range, header included */
    uint32_t policy;    /* mk_policy */
    uint32_t flags;     /* MK_REGION_* */
    uint64_t secret;    /* key of the block check tags */
    mk_off state_off;   /* policy state */
    mk_off journal_off; /* undo journal, 0 when none */
    mk_off quick_off;   /* quick lists, 0 when none */
    mk_off data_start;  /* first block */
    mk_off data_end;    /* end sentinel */
    mk__counters c;
    uint64_t user[8]; /* for the layers above (the shared heap's directory...) */
    /* Room for a process-shared lock. 8-byte aligned (all a mutex needs);
     * not _Alignas(64), which would demand a 64-aligned base of callers. */
    unsigned char lock[64];
} mk__hdr;

/* Where the policy state lives: fixed by the format (attach and validate
 * check that h->state_off says the same), so a damaged header word cannot
 * move it. */
#define MK__STATE_OFF                                                                              \
    ((mk_off)((sizeof(mk__hdr) + MK__CACHE_LINE - 1) / MK__CACHE_LINE * MK__CACHE_LINE))

/* One undo record: the word at off held old before the write. */
typedef struct mk__undo {
    mk_off off;
    uint64_t old;
} mk__undo;

/* Operation codes recorded in the journal, for diagnosis and repair. */
enum { MK__OP_NONE = 0, MK__OP_ALLOC, MK__OP_FREE, MK__OP_REALLOC, MK__OP_GROW, MK__OP_USER };

typedef struct mk__journal {
    uint64_t op;       /* MK__OP_* in progress, MK__OP_NONE when idle */
    uint64_t args[3];  /* the operation's arguments */
    uint64_t count;    /* valid undo records */
    uint64_t cap;      /* capacity of rec[] */
    uint64_t overflow; /* set when an operation needed more than cap records */
    uint64_t pad;
    mk__undo rec[];
} mk__journal;

#define MK__JOURNAL_CAP 2048u

/* ---- quick lists (quick.c) -------------------------------------------------
 * Deferred coalescing for small blocks, like dlmalloc's fastbins or glibc's
 * tcache: a freed block of span <= MK__QUICK_MAX is parked, still "used" to
 * its neighbours, on a LIFO list of its exact span; an allocation of that
 * span takes it back in O(1), touching no neighbour and no free structure.
 * Lists are capped, and flushed into the policy when an allocation fails. */
#define MK__QUICK_MAX     1024u
#define MK__QUICK_CLASSES (MK__QUICK_MAX / MK__GRAIN + 1)
#define MK__QUICK_CAP     16u

typedef struct mk__quick {
    mk_off head[MK__QUICK_CLASSES];
    uint64_t count[MK__QUICK_CLASSES];
} mk__quick;

struct mk__vstate;
/* Park used block b (span <= MK__QUICK_MAX) if its list has room: 1 if parked. */
int mk__quick_push(mk__hdr *h, mk_off b);
/* Take a parked block of exactly span: its offset, 0 if none, or
 * MK_ECORRUPT through *err when the list is damaged. */
mk_off mk__quick_pop(mk__hdr *h, uint64_t span, int *err);
/* Release every parked block into the policy. MK_OK or MK_ECORRUPT. */
int mk__quick_flush(mk__hdr *h);
/* Whether used block b's neighbours are what their tags say: before merging. */
int mk__neighbours_ok(const mk__hdr *h, mk_off b);
/* Validation of the lists against the walk's count of QUICK blocks. */
int mk__quick_check(const mk__hdr *h, struct mk__vstate *v, uint64_t walk_blocks,
                    uint64_t walk_bytes);

/* ---- validation context -------------------------------------------------- */
typedef struct mk__vstate {
    mk_fault *fault;      /* where to report; never NULL inside the engine */
    uint64_t free_blocks; /* counted by the walk */
    uint64_t free_bytes;
} mk__vstate;

/* Record a broken invariant; returns MK_ECORRUPT. */
int mk__vfail(mk__vstate *v, const char *invariant, mk_off off);

/* ---- the policy interface ------------------------------------------------- */
typedef struct mk__policy_ops {
    const char *name;
    uint32_t min_span;   /* smallest span kept (a free block must hold its links) */
    uint32_t state_size; /* bytes of state at h->state_off */
    bool coalesces;      /* boundary-tag policy: free blocks never touch */

    /* Empty the free structures. Boundary-tag policies: the engine then
     * makes [data_start, data_end) one free block and inserts it. A policy
     * that does not coalesce lays out its own blocks here and may move
     * data_start and data_end inward (keeping them % 16 == 8). */
    void (*init)(mk__hdr *h);

    /* Free-structure primitives, used by the boundary-tag engine (block.c).
     * find: a free block with span >= span, chosen by the policy, or 0; it
     *   stays in the structure (the engine removes it). On a damaged
     *   structure it may return anything: the engine checks the answer
     *   (mk__plausible_free) before it follows it.
     * insert: b is free, with header and footer written.
     * remove: b is in the structure.
     * insert and remove return MK_OK, or MK_ECORRUPT when a link they would
     * follow or write through fails its check (mk__link_ok), a list
     * neighbour does not point back, b is not found, or a path is longer
     * than a sound structure can be (then some words may be written: see
     * mk__journal_undo). */
    mk_off (*find)(mk__hdr *h, uint64_t span);
    int (*insert)(mk__hdr *h, mk_off b);
    int (*remove)(mk__hdr *h, mk_off b);

    /* Whole operations. Boundary-tag policies use mk__bt_* (block.c).
     * alloc: a used block whose payload (b + 8) is aligned to align
     *   (a power of two, >= 16) and whose span >= span; *out = b.
     *   place (MK__PLACE_*) says which end of the free block found to
     *   take it from; a policy may ignore it. MK_ENOMEM when nothing
     *   fits. Counters are the caller's job.
     * release: free used block b, merging as the policy does. MK_OK or
     *   MK_ECORRUPT.
     * resize: change used block b's span in place to at least span;
     *   MK_ENOMEM when it cannot (nothing changed then), MK_ECORRUPT. */
    int (*alloc)(mk__hdr *h, uint64_t span, uint64_t align, unsigned place, mk_off *out);
    int (*release)(mk__hdr *h, mk_off b);
    int (*resize)(mk__hdr *h, mk_off b, uint64_t span);
    /* Extend the last block/free space to a new data_end; NULL: MK_ENOTSUP. */
    int (*grow)(mk__hdr *h, mk_off new_end);

    /* Validation. check: every member of the free structures is a free
     * block where it should be (mk__valid_free_block), links agree, and
     * their number equals v->free_blocks; policy invariants (buddy: powers
     * of two, no free buddy pairs). holds: free block b is linked in. */
    int (*check)(const mk__hdr *h, mk__vstate *v);
    bool (*holds)(const mk__hdr *h, mk_off b);
} mk__policy_ops;

extern const mk__policy_ops mk__policy_first_fit, mk__policy_next_fit, mk__policy_best_fit,
    mk__policy_worst_fit, mk__policy_tlsf, mk__policy_buddy;

/* The policies by mk_policy value (region.c). */
extern const mk__policy_ops *const mk__policy_table[MK_POLICY_COUNT];

/* The ops of h's policy; h->policy was checked by create/attach and by
 * every public entry point. Inline: it is on every hot path. */
static inline const mk__policy_ops *mk__ops(const mk__hdr *h) {
    return mk__policy_table[h->policy];
}

/* Where this build puts the quick lists of h's policy (the cache line after
 * its state): the only value h->quick_off may hold besides 0. Needs a
 * checked h->policy. */
static inline mk_off mk__quick_off_for(const mk__hdr *h) {
    return (MK__STATE_OFF + mk__ops(h)->state_size + MK__CACHE_LINE - 1) &
           ~(mk_off)(MK__CACHE_LINE - 1);
}

/* ---- word access ------------------------------------------------------------ */
static inline mk__hdr *mk__h(mk_region *r) { return (mk__hdr *)(void *)r; }
static inline const mk__hdr *mk__hc(const mk_region *r) { return (const mk__hdr *)(const void *)r; }

static inline uint64_t *mk__word(const mk__hdr *h, mk_off off) {
    return (uint64_t *)(void *)((char *)(uintptr_t)h + off);
}
static inline uint64_t mk__get(const mk__hdr *h, mk_off off) { return *mk__word(h, off); }
/* A word that another thread may write meanwhile (mk__set): a layer above
 * that reads headers without the region's lock (the shared heap's caches)
 * reads them so. A relaxed atomic load: a plain load on the machines
 * memkit runs on, and no data race for the language or ThreadSanitizer. */
static inline uint64_t mk__get_unlocked(const mk__hdr *h, mk_off off) {
    return __atomic_load_n(mk__word(h, off), __ATOMIC_RELAXED);
}
static inline void mk__put_unlocked(uint64_t *p, uint64_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

static inline void *mk__state(const mk__hdr *h) { return mk__word(h, MK__STATE_OFF); }

/* ---- untrusted memory -----------------------------------------------------------
 * The region may be shared with a faulty or hostile process, so every
 * offset, span, link and index read from it is checked before it is
 * followed (docs/REGION.md, "Untrusted memory"). Two cheap checks carry
 * the hot paths:
 *   mk__hdr_ok    once per operation: the header fields every other check
 *                 relies on (policy, data_start, data_end, size);
 *   mk__link_ok   once per link followed: a range compare and an alignment
 *                 test, so reading the link words of the block it names
 *                 (b + 8 .. b + 31) stays inside the data.
 * A block the engine is about to split, merge or rewrite gets the full
 * check of its header word (mk__plausible_free, the neighbour checks).
 * A search that can loop (lists, trees) is bounded. */

/* Smallest span of any free or parked block, whatever the policy: room
 * for a header word, two or three links (a first-fit tree node is 48
 * bytes, but its third link still ends within 32 bytes of its start). */
#define MK__LINK_ROOM 32u

/* What a search returns when it met damage: not a block offset (blocks are
 * % 16 == 8), so the engine's check of the answer (mk__plausible_free)
 * refuses it and the operation ends with MK_ECORRUPT. */
#define MK__BAD_LINK ((mk_off)1)

/* Whether x may be the start of a linked free block: in the data,
 * % 16 == 8, and its link words inside the data. */
static inline bool mk__link_ok(const mk__hdr *h, mk_off x) {
    return x >= h->data_start && x <= h->data_end - MK__LINK_ROOM && x % MK__GRAIN == 8;
}

/* Whether the header fields the engine starts from are usable: the policy
 * is known, the data lies after the header, starts and ends where block
 * headers sit (% 16 == 8: walks step from data_start by whole spans, so a
 * skewed start would skew every read), and the sentinel word lies inside
 * size (which the layer that maps the range vouches for: a shared segment
 * checks it against its mapping under the lock). Attach checks the full
 * layout; this is the cheap subset re-checked by every operation, because
 * another process may write the header after attach. */
static inline bool mk__hdr_ok(const mk__hdr *h) {
    return h->policy < MK_POLICY_COUNT && h->data_start > MK__STATE_OFF &&
           h->data_start % MK__GRAIN == 8 && h->data_end % MK__GRAIN == 8 &&
           h->data_start < h->data_end && h->data_end < h->size && h->size - h->data_end >= 8 &&
           h->data_end - h->data_start >= MK__LINK_ROOM;
}

/* The full layout check (region.c): every offset in the header where this
 * build puts it. Attach, validate and recovery use it. */
bool mk__layout_ok(const mk__hdr *h);
/* A hash of everything two builds must agree on to share a region (the
 * header's signature word). */
uint64_t mk__layout_signature(void);

static inline mk_off mk__offset_of(const mk__hdr *h, const void *p) {
    return (mk_off)((const char *)p - (const char *)h);
}

/* The journal at h->journal_off, or NULL when that offset cannot hold it:
 * it must lie after the header and before the data, inside size. Cheap,
 * since it runs for every logged word; it keeps a damaged offset from
 * sending journal writes into the header or the blocks (attach and
 * validate check the exact place). The capacity is this build's, never
 * the j->cap word. */
#define MK__JOURNAL_BYTES (sizeof(mk__journal) + MK__JOURNAL_CAP * sizeof(mk__undo))
static inline mk__journal *mk__journal_of(const mk__hdr *h) {
    mk_off jo = h->journal_off, ds = h->data_start;
    if (jo < MK__STATE_OFF || jo % 8 || ds > h->size || jo > ds || ds - jo < MK__JOURNAL_BYTES)
        return NULL;
    return (mk__journal *)(void *)mk__word(h, jo);
}

/* Journal: log the old value of *p (only with a journal). Inline: a locked
 * operation logs about ten words, and the call was a third of the cost of
 * logging one (callgrind). */
static inline void mk__journal_log(mk__hdr *h, const uint64_t *p) {
    mk__journal *j = mk__journal_of(h);
    if (!j) return; /* no usable journal: the operation is not crash-safe */
    uint64_t n = j->count;
    if (n >= MK__JOURNAL_CAP) {
        j->overflow = 1; /* recovery will refuse: better than a silent half undo */
        return;
    }
    j->rec[n].off = mk__offset_of(h, p);
    j->rec[n].old = *p;
    atomic_signal_fence(memory_order_seq_cst);
    j->count = n + 1;
}

#ifdef MK_TEST_HOOKS
/* Test builds: called before every metadata write with a running count;
 * a test may longjmp out of it or kill the process to simulate a crash at
 * that exact step. */
extern void (*mk__test_crash_hook)(uint64_t step);
extern uint64_t mk__test_crash_step;
#define MK__CRASH_POINT()                                                                          \
    do {                                                                                           \
        if (mk__test_crash_hook) mk__test_crash_hook(++mk__test_crash_step);                       \
    } while (0)
#else
#define MK__CRASH_POINT() ((void)0)
#endif

/* The one way to write region metadata. */
static inline void mk__set(mk__hdr *h, uint64_t *p, uint64_t v) {
    if (h->journal_off) {
        mk__journal_log(h, p);
        atomic_signal_fence(memory_order_seq_cst);
    }
    MK__CRASH_POINT();
    mk__put_unlocked(p, v); /* a header's PREV_FREE bit may be read meanwhile (mk__get_unlocked) */
}
static inline void mk__set_at(mk__hdr *h, mk_off off, uint64_t v) {
    mk__set(h, mk__word(h, off), v);
}

/* Roll back every write of the open operation (its undo records, newest
 * first) and keep it open with an empty log; the engine calls it before it
 * returns MK_ECORRUPT from inside an operation, so a damaged region is
 * left as it was found. No-op without a journal (or when the log
 * overflowed): then the words written before the damage was found stay. */
void mk__journal_undo(mk__hdr *h);

/* Begin / end an operation in the journal (no-ops without one: inline
 * tests, the work out of line). */
void mk__journal_begin_slow(mk__hdr *h, uint64_t op, uint64_t a0, uint64_t a1, uint64_t a2);
void mk__journal_end_slow(mk__hdr *h);
static inline void mk__journal_begin(mk__hdr *h, uint64_t op, uint64_t a0, uint64_t a1,
                                     uint64_t a2) {
    if (h->journal_off) mk__journal_begin_slow(h, op, a0, a1, a2);
}
static inline void mk__journal_end(mk__hdr *h) {
    if (h->journal_off) mk__journal_end_slow(h);
}

/* ---- block header words ------------------------------------------------------ */
static inline uint64_t mk__span(uint64_t w) { return w & MK__SPAN_MASK; }

static inline uint64_t mk__tag(const mk__hdr *h, mk_off b, uint64_t span) {
    uint64_t x = (b ^ (span << 20) ^ h->secret) * UINT64_C(0x9E3779B97F4A7C15);
    x ^= x >> 29;
    x *= UINT64_C(0xBF58476D1CE4E5B9);
    return x & ~(MK__SPAN_MASK | MK__F_MASK); /* the top 16 bits */
}
/* A header word for block b. */
static inline uint64_t mk__pack(const mk__hdr *h, mk_off b, uint64_t span, uint64_t flags) {
    return mk__tag(h, b, span) | span | flags;
}
static inline bool mk__tag_ok(const mk__hdr *h, mk_off b, uint64_t w) {
    return (w & ~(MK__SPAN_MASK | MK__F_MASK)) == mk__tag(h, b, mk__span(w));
}
static inline uint64_t mk__hw(const mk__hdr *h, mk_off b) { return mk__get(h, b); }
static inline uint64_t mk__bspan(const mk__hdr *h, mk_off b) { return mk__span(mk__get(h, b)); }
static inline bool mk__bfree(const mk__hdr *h, mk_off b) {
    return (mk__get(h, b) & MK__F_FREE) != 0;
}

/* Whether b is a well-formed free block: in [data_start, data_end), % 16 == 8,
 * tag valid, FREE, span >= min_span and inside the data. With coalescing
 * policies, its footer must equal its header. */
bool mk__valid_free_block(const mk__hdr *h, mk_off b);

/* Get (set < 0), set (set == 1) or clear (set == 0) the MK__F_USER bit of the
 * live block whose payload is at off. Returns the bit's value before the
 * call (0 or 1), or MK_EBADOFF / MK_EDOUBLEFREE. Journaled like any write. */
int mk__region_user_bit(mk_region *r, mk_off off, int set);

/* The hot-path check of a free block the engine is about to follow: range,
 * tag, FREE and span; everything on the header's cache line. Validation
 * (mk__valid_free_block) also reads the footer, on another line. */
static inline bool mk__plausible_free(const mk__hdr *h, mk_off b) {
    if (!mk__link_ok(h, b)) return false;
    uint64_t w = mk__get(h, b);
    return (w & MK__F_FREE) && mk__tag_ok(h, b, w) && mk__span(w) <= h->data_end - b &&
           mk__span(w) >= MK__LINK_ROOM;
}

/* ---- operations inside an open journal operation (region.c) ------------------
 * The public calls are these, bracketed by mk__journal_begin/end. A layer
 * above that must make several steps one crash-atomic operation (the
 * shared heap: allocate a block and link it into its directory) brackets
 * them itself and calls these. With quick lists an allocation may commit a
 * flush as operations of its own; segments do not use quick lists. */

/* Check and normalise an alignment (0: default; below 16: 16). */
int mk__check_align(size_t *align);
/* Which end of the free block it splits an allocation takes. LOW is the
 * classic choice (the remainder stays where it was, at the high end);
 * HIGH takes the top and leaves the remainder below. A layer above can
 * give two groups of callers opposite ends, so that blocks carved from
 * one large free block (a fresh segment, its growth) do not interleave:
 * two processes on one segment then do not share cache lines, or the
 * neighbouring lines the hardware prefetches (docs/SHM.md). Only the
 * boundary-tag policies honour it, and only for alignments up to 16. */
enum { MK__PLACE_LOW = 0, MK__PLACE_HIGH = 1 };
/* Allocate size bytes aligned to align (checked, >= 16), from the place
 * end of the free block chosen; *b = the block (its payload is *b + 8).
 * Counts it. MK_ENOMEM, MK_ECORRUPT (then every write of the open
 * operation was rolled back: mk__journal_undo). */
int mk__region_alloc_op(mk__hdr *h, uint64_t size, uint64_t align, unsigned place, mk_off *b);
/* Free live block b (already looked up), merging or parking it. Counts it.
 * MK_ECORRUPT when its neighbours or the free structure are damaged (the
 * open operation rolled back, as above). */
int mk__region_free_op(mk__hdr *h, mk_off b);
/* Resize used block b (already looked up, neighbours checked) to at least
 * span bytes: in place if the policy can, else by moving it to a block
 * from the place end of a free block, copying its payload but for the last
 * skip_tail bytes (a layer above keeps its own word there). *nb = the
 * block now. Counts a realloc. MK_ENOMEM: nothing written; MK_ECORRUPT:
 * the open operation rolled back. */
int mk__region_resize_op(mk__hdr *h, mk_off b, uint64_t span, uint64_t skip_tail, unsigned place,
                         mk_off *nb);
/* Move bytes_used by add - sub, blocks_used by blocks and *counter by one. */
void mk__count_op(mk__hdr *h, uint64_t add, uint64_t sub, int64_t blocks, uint64_t *counter);
/* Before user data is copied into newly allocated block b inside an
 * operation: log the words that held free-block metadata, so an undo
 * restores them. */
void mk__journal_payload_words(mk__hdr *h, mk_off b);

/* ---- the boundary-tag engine (block.c) ------------------------------------------ */
int mk__bt_alloc(mk__hdr *h, uint64_t span, uint64_t align, unsigned place, mk_off *out);
int mk__bt_release(mk__hdr *h, mk_off b);
int mk__bt_resize(mk__hdr *h, mk_off b, uint64_t span);
int mk__bt_grow(mk__hdr *h, mk_off new_end);

/* Write b as a free block of span (header, footer) and tell the next block;
 * does not insert it. */
void mk__bt_make_free(mk__hdr *h, mk_off b, uint64_t span);

/* Round a request to a span: size + header word, 16-multiple, >= min_span. */
static inline uint64_t mk__span_for(uint64_t size, uint64_t min_span) {
    uint64_t s = (size + MK__TAGW + MK__GRAIN - 1) & ~(uint64_t)(MK__GRAIN - 1);
    return s < min_span ? min_span : s;
}

#endif
