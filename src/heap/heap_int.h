/*
 * Internals of the process heap, shared by the files of src/heap.
 *
 * Memory comes in segments: 4 MiB, aligned to 4 MiB, so the segment of any
 * pointer is found by masking. A segment is owned by one heap (one thread,
 * or one first-class heap) and cut into 64 pages of 64 KiB; page 0 holds
 * the segment header with one span descriptor per page. A span is a run of
 * pages holding blocks of one size class.
 *
 *   segment (4 MiB)
 *   +--------+--------+--------+--------+-----   ----+--------+
 *   | header | span A | span B (3 pages)         |   | free   |
 *   +--------+--------+--------------------------+---+--------+
 *     page 0   page 1   pages 2..4
 *
 * Large blocks (> 128 KiB) are their own chunk, also aligned to 4 MiB, with
 * a mk__large header at its start. mk__segmap says, per 4 MiB of address
 * space, whether a segment or a large chunk starts there: every pointer
 * given to free is checked against it before any header is read.
 *
 * Ownership: only the owning heap's thread touches a span's free list, its
 * counters and its segment's page masks. Other threads push freed blocks
 * onto the span's thread_free (an atomic stack, on its own cache line); the
 * owner takes the whole stack when its local list runs dry.
 */
#ifndef MK_HEAP_INT_H
#define MK_HEAP_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bits.h"
#include "memkit/heap.h"

#if defined(__GNUC__) || defined(__clang__)
#define MK__LIKELY(x)   __builtin_expect(!!(x), 1)
#define MK__UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MK__NOINLINE    __attribute__((noinline))
#define MK__COLD        __attribute__((cold, noinline))
#else
#define MK__LIKELY(x)   (x)
#define MK__UNLIKELY(x) (x)
#define MK__NOINLINE
#define MK__COLD
#endif

/* The preload library is loaded at start-up, so its one thread-local
 * pointer can live in the static TLS block: a plain %fs-relative load
 * instead of a __tls_get_addr call (which may even call malloc). */
#if defined(MK_HEAP_PRELOAD) && (defined(__GNUC__) || defined(__clang__))
#define MK__TLS_MODEL __attribute__((tls_model("initial-exec")))
#else
#define MK__TLS_MODEL
#endif

#define MK__SEG_SHIFT  22
#define MK__SEG_SIZE   ((size_t)1 << MK__SEG_SHIFT)
#define MK__PAGE_SHIFT 16
#define MK__PAGE_SIZE  ((size_t)1 << MK__PAGE_SHIFT)
#define MK__PAGES      64             /* per segment; page 0 is the header */
#define MK__ALL_PAGES  (~UINT64_C(1)) /* pages 1..63 */
#define MK__NCLASS     48
#define MK__MEDIUM_MAX ((size_t)128 * 1024) /* largest size class */
#define MK__ALIGN      16
#define MK__HEAP_MAGIC UINT64_C(0x5041454854494B4D) /* "MKTIHEAP" */
#define MK__ADDR_BITS  48
#define MK__SEGMAP_LEN ((size_t)1 << (MK__ADDR_BITS - MK__SEG_SHIFT))
/* Requests above this fail at once with ENOMEM (as glibc: PTRDIFF_MAX). */
#define MK__SIZE_LIMIT ((size_t)PTRDIFF_MAX - 2 * MK__SEG_SIZE)

enum { MK__MAP_NONE = 0, MK__MAP_SEGMENT = 1, MK__MAP_LARGE = 2 };

/* Flags in the low bits of mk__span.thread_free (blocks are 16-aligned). */
enum {
    MK__TF_NONE = 0,     /* owner collects when it runs dry */
    MK__TF_FULL = 1,     /* span is on the owner's full list: the next remote
                            free must tell the owner (heap->wake) */
    MK__TF_NOTIFIED = 2, /* a remote free has put the span on heap->wake */
    MK__TF_MASK = 3,
};

/* Span flags (owner only). */
enum { MK__SPAN_IN_FULL = 1 };

typedef struct mk__block {
    struct mk__block *next;
    uintptr_t freed; /* mk__g.key ^ own address while the block is free */
} mk__block;

struct mk__segment;

/* One span: 128 bytes, the cross-thread word on the second cache line so
 * remote frees do not bounce the owner's line. */
typedef struct mk__span {
    mk__block *free;     /* local free list (owner) */
    uint32_t used;       /* blocks out, including uncollected remote frees */
    uint32_t block_size; /* 0: this descriptor is not a span start */
    uint32_t div_magic;  /* ceil(2^32 / block_size): offset -> index */
    uint32_t capacity;   /* blocks that fit */
    uint32_t carved;     /* blocks carved so far (the rest never touched) */
    uint8_t cls, npages, page, flags;
    _Atomic uint8_t has_aligned; /* memalign gave out interior pointers */
    char *start;                 /* first block */
    struct mk_heap *heap;        /* owner */
    struct mk__span *next;       /* class list or full list */
    struct mk__span *prev;
    struct mk__span *wake_next; /* on heap->wake */
    _Alignas(64) _Atomic uintptr_t thread_free;
} mk__span;

typedef struct mk__segment {
    uint64_t magic;
    struct mk_heap *heap;
    struct mk__segment *next, *prev; /* the heap's segments */
    uint64_t free_mask;              /* pages in no span */
    uint64_t dirty_mask;             /* free pages that may be resident */
    uint64_t dirty_since;            /* when dirty_mask became non-zero (ns) */
    uint8_t page_span[MK__PAGES];    /* page -> first page of its span */
    _Alignas(64) mk__span spans[MK__PAGES];
} mk__segment;

/* Per-heap counters: written by the owner only (relaxed load + store, a
 * plain add), read by anyone. */
typedef struct mk__counters {
    _Atomic uint64_t n_alloc, n_free, bytes_alloc, bytes_free;
} mk__counters;

typedef struct mk__spin {
    _Atomic int v;
} mk__spin;

struct mk__large;

enum { MK__HEAP_THREAD = 1, MK__HEAP_FIRST_CLASS = 2 };

struct mk_heap {
    uint64_t magic;
    mk__span *cur[MK__NCLASS];  /* allocate from here; never NULL */
    mk__span *head[MK__NCLASS]; /* spans of the class with free room */
    mk__span *full;             /* spans with no free block */
    _Atomic(mk__span *) wake;   /* full spans that got remote frees */
    mk__segment *segs;
    uint64_t dirty_bytes;
    uint64_t span_bytes; /* pages in spans (in use) */
    unsigned kind;
    struct mk_heap *pool_next;           /* abandoned-heap pool */
    struct mk_heap *reg_next, *reg_prev; /* registry of all heaps */
    mk__spin large_lock;                 /* first-class heaps: their large blocks */
    struct mk__large *large;
    mk__counters st;
};

/* At most 64 bytes: the block starts at +64 when no alignment is asked. */
typedef struct mk__large {
    uint32_t magic;
    uint32_t user_off;    /* block = (char *)header + user_off (<= 4 MiB) */
    size_t map_size;      /* bytes of the block's pages, from this header */
    size_t res_size;      /* bytes reserved (mapped), from this header: >= map_size */
    size_t touched;       /* bytes from this header past which nothing is resident */
    size_t head_trim;     /* huge alignments: bytes released before the header */
    struct mk_heap *heap; /* first-class owner, or NULL */
    struct mk__large *next, *prev;
} mk__large;
_Static_assert(sizeof(mk__large) <= 64, "large header must fit before the block");

/* Process-wide state. */
typedef struct mk__global {
    uintptr_t key;
    _Atomic int init; /* 0 none, 1 running, 2 done */
    _Atomic uint64_t purge_delay_ns;
    _Atomic uint64_t purge_threshold;
    _Atomic int source_sbrk;
    _Atomic int print_stats; /* 0 no, 1 text, 2 json */
    _Atomic int allocated;   /* memory has been taken: source is fixed */
    mk__spin pool_lock;
    struct mk_heap *pool;
    mk__spin reg_lock;
    struct mk_heap *all;
    /* counters not owned by one heap */
    mk__counters orphan; /* frees by threads without a heap (guarded by atomics) */
    _Atomic uint64_t n_failed, n_large, large_bytes, large_live, mapped, peak_mapped, peak,
        returned, n_os_calls, segments, heaps, dirty, retired_alloc, retired_free, n_retired_alloc,
        n_retired_free, large_cached;
    void (*_Atomic on_error)(const char *msg, void *ptr);
} mk__global;

extern mk__global mk__g;
extern _Atomic uint8_t mk__segmap[MK__SEGMAP_LEN];
extern _Thread_local struct mk_heap *mk__tl_heap MK__TLS_MODEL;

/* ---- small helpers ---- */

static inline uint64_t mk__load(const _Atomic uint64_t *c) {
    return atomic_load_explicit(c, memory_order_relaxed);
}
/* Single-writer counter add: no locked instruction. */
static inline void mk__add1w(_Atomic uint64_t *c, uint64_t v) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}
static inline void mk__addmw(_Atomic uint64_t *c, uint64_t v) {
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}
static inline void mk__submw(_Atomic uint64_t *c, uint64_t v) {
    atomic_fetch_sub_explicit(c, v, memory_order_relaxed);
}
void mk__max(_Atomic uint64_t *c, uint64_t v);

void mk__spin_lock(mk__spin *l);
static inline void mk__spin_unlock(mk__spin *l) {
    atomic_store_explicit(&l->v, 0, memory_order_release);
}
static inline bool mk__spin_trylock(mk__spin *l) {
    return atomic_exchange_explicit(&l->v, 1, memory_order_acquire) == 0;
}

static inline unsigned mk__log2(size_t x) { return 63u - (unsigned)mk__clz64(x); } /* x != 0 */

/* Size classes: 16..128 by 16, then four per doubling up to 128 KiB. */
static inline unsigned mk__class_of(size_t n) {
    if (n <= 128) return n ? (unsigned)((n - 1) >> 4) : 0u;
    size_t w = n - 1;
    unsigned b = mk__log2(w);
    return 8u + (b - 7u) * 4u + (unsigned)((w >> (b - 2u)) & 3u);
}
static inline size_t mk__class_size(unsigned c) {
    if (c < 8) return (size_t)(c + 1) * 16;
    unsigned b = 7 + (c - 8) / 4, k = (c - 8) % 4;
    return ((size_t)1 << b) + ((size_t)(k + 1) << (b - 2));
}

static inline mk__segment *mk__segment_of(const void *p) {
    return (mk__segment *)(((uintptr_t)p - 1) & ~(uintptr_t)(MK__SEG_SIZE - 1));
}
static inline unsigned mk__map_kind(uintptr_t seg) {
    if (MK__UNLIKELY((seg >> MK__ADDR_BITS) != 0)) return MK__MAP_NONE;
    return atomic_load_explicit(&mk__segmap[seg >> MK__SEG_SHIFT], memory_order_relaxed);
}

/* ---- heap.c ---- */
void mk__init(void);
struct mk_heap *mk__thread_heap(void); /* the caller's heap, created if needed */
size_t mk__usable_small(mk__segment *seg, const void *p);
MK__NOINLINE void *mk__alloc_slow(struct mk_heap *h, unsigned cls);
MK__NOINLINE void mk__free_local_slow(struct mk_heap *h, mk__span *s);
MK__NOINLINE void mk__free_remote(mk__span *s, mk__block *b, struct mk_heap *me);
void mk__span_set_aligned(void *block);
void mk__count_os(void);
void mk__mapped_add(size_t n);
void mk__heap_collect_purge(struct mk_heap *h, bool force);
void mk__heap_release_all(struct mk_heap *h);
struct mk_heap *mk__heap_create(unsigned kind);
void mk__registry_remove(struct mk_heap *h);
void mk__sample_peak(void);
void mk__trim_all(void);
MK__COLD void mk__corrupt(const char *msg, const void *ptr);
MK__COLD void *mk__fail_nomem(void);

/* ---- the fast paths, inlined into api.c ---- */

static inline mk__span *mk__span_of(mk__segment *seg, const void *p) {
    size_t page = ((uintptr_t)p - (uintptr_t)seg) >> MK__PAGE_SHIFT;
    return &seg->spans[seg->page_span[page]];
}

static inline void *mk__span_pop(mk_heap *h, mk__span *s) {
    mk__block *b = s->free;
    s->free = b->next;
    s->used++;
    b->freed = 0;
    mk__add1w(&h->st.n_alloc, 1);
    mk__add1w(&h->st.bytes_alloc, s->block_size);
    return b;
}

/* size <= MK__MEDIUM_MAX */
static inline void *mk__heap_alloc(mk_heap *h, size_t size) {
    unsigned cls = mk__class_of(size);
    mk__span *s = h->cur[cls];
    if (MK__LIKELY(s->free != NULL)) return mk__span_pop(h, s);
    return mk__alloc_slow(h, cls);
}

/* The block containing p, or NULL when p is not a block start (or an
 * aligned pointer into a block of a span that hands those out). */
static inline mk__block *mk__block_of(const mk__span *s, const void *p) {
    uintptr_t off = (uintptr_t)p - (uintptr_t)s->start;
    uint32_t bs = s->block_size;
    if (MK__UNLIKELY(bs == 0 || off >= (uintptr_t)s->capacity * bs)) return NULL;
    uint32_t idx = (uint32_t)(((uint64_t)off * s->div_magic) >> 32);
    uintptr_t boff = (uintptr_t)idx * bs;
    if (MK__UNLIKELY(boff != off)) {
        /* not a block start: valid only for memalign's interior pointers */
        if (!atomic_load_explicit(&s->has_aligned, memory_order_relaxed)) return NULL;
        idx = (uint32_t)(off / bs);
        boff = (uintptr_t)idx * bs;
    }
    return (mk__block *)(s->start + boff);
}

static inline void mk__free_small(mk__segment *seg, void *p) {
    mk__span *s = mk__span_of(seg, p);
    mk__block *b = mk__block_of(s, p);
    if (MK__UNLIKELY(b == NULL)) {
        mk__corrupt("free(): invalid pointer", p);
        return;
    }
    uintptr_t mark = mk__g.key ^ (uintptr_t)b;
    if (MK__UNLIKELY(b->freed == mark)) {
        mk__corrupt("free(): double free detected", p);
        return;
    }
    b->freed = mark;
    mk_heap *me = mk__tl_heap;
    if (MK__LIKELY(s->heap == me)) {
        b->next = s->free;
        s->free = b;
        mk__add1w(&me->st.n_free, 1);
        mk__add1w(&me->st.bytes_free, s->block_size);
        if (MK__UNLIKELY(--s->used == 0 || (s->flags & MK__SPAN_IN_FULL)))
            mk__free_local_slow(me, s);
        return;
    }
    mk__free_remote(s, b, me);
}

/* ---- large.c ---- */
void *mk__large_alloc(struct mk_heap *h, size_t size, size_t align, bool zero);
void mk__large_free(void *p);
size_t mk__large_usable(const void *p);
void *mk__large_realloc(void *p, size_t size); /* NULL: caller moves it */
void mk__large_trim(bool force);
void mk__large_release_heap(struct mk_heap *h);
void mk__large_lock_all(void);
void mk__large_unlock_all(bool reinit);

/* ---- source.c: chunks aligned to MK__SEG_SIZE ---- */
void *mk__chunk_alloc(size_t size);
void mk__chunk_free(void *p, size_t size);
void mk__chunk_purge(void *p, size_t size);
int mk__chunk_shrink(void *p, size_t old_size, size_t new_size);
int mk__chunk_grow(void *p, size_t old_size, size_t new_size);
bool mk__chunk_joinable(const void *a, const void *b);
void mk__source_lock(void);
void mk__source_unlock(bool reinit);

/* ---- options.c ---- */
void mk__options_load(void);
void mk__print_stats_at_exit(void);

#endif
