/*
 * Binary buddy policy (Knowlton 1965; Knuth TAOCP vol. 1, 2.5), with offsets.
 *
 * The arena [data_start, data_end) has size D, a multiple of MIN_SPAN (32:
 * header word + two links, rounded to a power of two). D is cut into
 * power-of-two top-level chunks in decreasing order, one per set bit of D:
 * the chunk of size s starts at arena offset D & ~(2s - 1), a multiple of s.
 * Every block is a chunk or a half of a block, so every block has a span
 * s that is a power of two and an arena offset rel that is a multiple of s.
 * A block is a whole chunk iff (D & s) && rel == (D & ~(2s - 1)); otherwise
 * its buddy is the block of the same span at rel ^ s.
 *
 * Invariants (buddy_check):
 *  - blocks tile the arena; each span is a power of two >= MIN_SPAN and
 *    rel % span == 0 (together these imply no block crosses a chunk edge);
 *  - free list k holds exactly the free blocks of span 2^(k + MIN_ORDER),
 *    doubly linked (next at b + LINK0, prev at b + LINK1, 0 = none), and
 *    bit k of `nonempty` is set iff list k is non-empty;
 *  - no free block has a free buddy of the same span (they would have been
 *    merged), so the free blocks of one span never pair up.
 *
 * Alignment comes for free: init places the arena so that the payload of
 * arena offset 0 is page-aligned in absolute address terms, hence a block
 * at rel (a multiple of its span s) has a payload aligned to min(s, 4096).
 * An aligned request of a small block takes a block of span >= align and
 * keeps splitting off upper halves down to the span asked for; the lower
 * half kept is still at a multiple of align, so at most span bytes stay
 * used (not align), and the halves split off remain free for others.
 *
 * When blocks merge, the absorbed upper half's header word is overwritten
 * with a word whose check tag cannot match (scrub_header), so freeing that
 * stale offset again is MK_EBADOFF instead of a release of a ghost block.
 *
 * Worst-case internal fragmentation is just under half of each block (span
 * rounded to a power of two); in exchange alloc and free are O(log D) with
 * no searching, and no footers or PREV_FREE bits are kept.
 */
#include "region_int.h"

#define MIN_ORDER 5 /* MIN_SPAN = 32 */
#define MIN_SPAN  (UINT64_C(1) << MIN_ORDER)
#define MAX_ORDER 47 /* the span field holds bits 47..4 */
#define NORD      (MAX_ORDER - MIN_ORDER + 1)
#define PAGE      ((uint64_t)MK_REGION_MAX_ALIGN)
/* An aligned request scans this many entries of each smaller list for a
 * block that happens to be aligned, before splitting a larger block. */
#define ALIGN_SCAN 8

typedef struct buddy_state {
    uint64_t nonempty; /* bit k: head[k] != 0 */
    mk_off head[NORD]; /* first free block of span 2^(k + MIN_ORDER), 0 if none */
} buddy_state;

_Static_assert(sizeof(buddy_state) == 8 + 8 * NORD, "buddy_state has no padding");
_Static_assert(NORD <= 64, "one bitmap word covers every order");

static buddy_state *st(const mk__hdr *h) { return (buddy_state *)mk__state(h); }

static bool is_pow2(uint64_t x) { return x && !(x & (x - 1)); }

/* List index of a power-of-two span in [MIN_SPAN, 2^MAX_ORDER]. */
static int order_of(uint64_t span) { return 63 - mk__clz64(span) - MIN_ORDER; }

static uint64_t span_of(int k) { return UINT64_C(1) << (k + MIN_ORDER); }

/* Smallest power of two >= x, for MIN_SPAN <= x <= 2^MAX_ORDER. */
static uint64_t ceil_pow2(uint64_t x) { return UINT64_C(1) << (64 - mk__clz64(x - 1)); }

/* Whether the block of span s at arena offset rel is a whole top-level
 * chunk of an arena of size d: such a block has no buddy. */
static bool is_chunk(uint64_t d, uint64_t rel, uint64_t s) {
    return (d & s) && rel == (d & ~(2 * s - 1));
}

/* Whether off may be a block start: inside the arena, % 16 == 8 and room
 * for a free block's header and links before data_end. Checked before any
 * offset read from the range is followed. */
static bool in_arena(const mk__hdr *h, mk_off off) {
    return off >= h->data_start && off < h->data_end && off % MK__GRAIN == 8 &&
           h->data_end - off >= MIN_SPAN;
}

static bool link_ok(const mk__hdr *h, mk_off link) { return link == 0 || in_arena(h, link); }

/* Whether b is a free block of span s, with tag and links that can be
 * followed without leaving the arena. */
static bool free_of_span(const mk__hdr *h, mk_off b, uint64_t s) {
    if (!in_arena(h, b)) return false;
    uint64_t w = mk__hw(h, b);
    return (w & MK__F_FREE) && mk__span(w) == s && mk__tag_ok(h, b, w) && s <= h->data_end - b &&
           link_ok(h, mk__get(h, b + MK__LINK0)) && link_ok(h, mk__get(h, b + MK__LINK1));
}

/* ---- free lists ----------------------------------------------------------- */

/* Put b on list k. The old head is written through, so it must be a list
 * head in the arena; MK_ECORRUPT (nothing written) otherwise. */
static int list_push(mk__hdr *h, mk_off b, int k) {
    buddy_state *S = st(h);
    mk_off first = S->head[k];
    if (first && (!in_arena(h, first) || mk__get(h, first + MK__LINK1) != 0 || first == b))
        return MK_ECORRUPT;
    mk__set_at(h, b + MK__LINK0, first);
    mk__set_at(h, b + MK__LINK1, 0);
    if (first) mk__set_at(h, first + MK__LINK1, b);
    mk__set(h, &S->head[k], b);
    if (!first) mk__set(h, &S->nonempty, S->nonempty | (UINT64_C(1) << k));
    return MK_OK;
}

/* Take b off list k. Its links are in the arena (free_of_span); each
 * neighbour must also point back at b before it is written (safe
 * unlinking), else MK_ECORRUPT and nothing written. */
static int list_unlink(mk__hdr *h, mk_off b, int k) {
    buddy_state *S = st(h);
    mk_off next = mk__get(h, b + MK__LINK0);
    mk_off prev = mk__get(h, b + MK__LINK1);
    if (next && (!in_arena(h, next) || mk__get(h, next + MK__LINK1) != b)) return MK_ECORRUPT;
    if (prev ? !in_arena(h, prev) || mk__get(h, prev + MK__LINK0) != b : S->head[k] != b)
        return MK_ECORRUPT;
    if (prev) {
        mk__set_at(h, prev + MK__LINK0, next);
    } else {
        mk__set(h, &S->head[k], next);
        if (!next) mk__set(h, &S->nonempty, S->nonempty & ~(UINT64_C(1) << k));
    }
    if (next) mk__set_at(h, next + MK__LINK1, prev);
    return MK_OK;
}

/* Write b as a free block of span s and put it on its list. */
static int put_free(mk__hdr *h, mk_off b, uint64_t s) {
    mk__set_at(h, b, mk__pack(h, b, s, MK__F_FREE));
    return list_push(h, b, order_of(s));
}

/* A header word whose check tag is the complement of the right one, so no
 * offset check can take the absorbed block start b for a block again. */
static void scrub_header(mk__hdr *h, mk_off b) {
    mk__set_at(h, b, ~mk__tag(h, b, 0) & ~(MK__SPAN_MASK | MK__F_MASK));
}

/* ---- operations --------------------------------------------------------------- */

/* Init runs inside mk_region_create before the magic is written: the range
 * is not yet a region, so there is nothing to roll back and the writes go
 * straight to memory (an mk__set here would leave records in a journal
 * that no operation brackets). */
static void buddy_init(mk__hdr *h) {
    buddy_state *S = st(h);
    memset(S, 0, sizeof *S);
    /* Arena start: the first ds >= data_start whose payload is page-aligned
     * in this mapping. mk_region_min_size reserves the page of slack. The
     * API requires shared regions to be mapped page-aligned, so the
     * alignment then holds in every mapping; buddy_alloc checks it anyway. */
    uint64_t a0 = h->data_start, end0 = h->data_end;
    uint64_t pad = (uint64_t)(0 - ((uintptr_t)h + a0 + MK__TAGW)) & (PAGE - 1);
    uint64_t ds = a0 + pad;
    if (ds > end0) ds = end0; /* below the minimum size: an empty arena */
    uint64_t d = (end0 - ds) & ~(MIN_SPAN - 1);
    uint64_t max_d = (UINT64_C(1) << (MAX_ORDER + 1)) - MIN_SPAN; /* chunks <= 2^MAX_ORDER */
    if (d > max_d) d = max_d;
    mk_off end = ds + d;
    h->data_start = ds;
    h->data_end = end;
    *mk__word(h, end) = mk__pack(h, end, 0, 0);
    /* One free chunk per set bit of d, largest first; the lists are empty,
     * so pushing needs no journal and no merging. */
    for (uint64_t s = MIN_SPAN; s && s <= d; s <<= 1) {
        if (!(d & s)) continue;
        mk_off b = ds + (d & ~(2 * s - 1));
        int k = order_of(s);
        *mk__word(h, b) = mk__pack(h, b, s, MK__F_FREE);
        *mk__word(h, b + MK__LINK0) = 0;
        *mk__word(h, b + MK__LINK1) = 0;
        S->head[k] = b;
        S->nonempty |= UINT64_C(1) << k;
    }
}

/* Turn free block b of span have (already off its list) into a used block
 * of span need, putting the upper halves split off on their lists. The
 * lower half is kept, so b stays where it was and as aligned as it was. */
static int carve(mk__hdr *h, mk_off b, uint64_t have, uint64_t need) {
    while (have > need) {
        have >>= 1;
        if (put_free(h, b + have, have) != MK_OK) return MK_ECORRUPT;
    }
    mk__set_at(h, b, mk__pack(h, b, need, 0));
    return MK_OK;
}

static int buddy_alloc(mk__hdr *h, uint64_t span, uint64_t align, unsigned place, mk_off *out) {
    (void)place; /* a buddy's place is fixed by its size */
    buddy_state *S = st(h);
    if (span > (UINT64_C(1) << MAX_ORDER)) return MK_ENOMEM;
    uint64_t need = ceil_pow2(span < MIN_SPAN ? MIN_SPAN : span);
    mk_off ds = h->data_start;
    /* Alignment of block payloads in this mapping is that of the arena's
     * first payload; a region mapped off a page boundary cannot serve
     * alignments above what that gives, now or later. */
    if (((uintptr_t)h + ds + MK__TAGW) & (align - 1)) return MK_ENOMEM;
    if (align > need) {
        /* A free block below align's order at a multiple of align would do,
         * without splitting a larger block. Only a few are looked at. */
        for (int k = order_of(need); k < order_of(align); k++) {
            int n = 0;
            for (mk_off b = S->head[k]; b && n < ALIGN_SCAN; n++) {
                if (!free_of_span(h, b, span_of(k))) return MK_ECORRUPT;
                if (((b - ds) & (align - 1)) == 0) {
                    if (list_unlink(h, b, k) != MK_OK || carve(h, b, span_of(k), need) != MK_OK)
                        return MK_ECORRUPT;
                    *out = b;
                    return MK_OK;
                }
                b = mk__get(h, b + MK__LINK0);
            }
        }
    }
    /* Any block of span >= align sits at a multiple of align. */
    int k = order_of(need > align ? need : align);
    uint64_t avail = S->nonempty & (~UINT64_C(0) << k);
    if (!avail) return MK_ENOMEM;
    k = mk__ctz64(avail);
    if (k >= NORD) return MK_ECORRUPT;
    mk_off b = S->head[k];
    if (!free_of_span(h, b, span_of(k)) || ((b - ds) & (span_of(k) - 1))) return MK_ECORRUPT;
    if (list_unlink(h, b, k) != MK_OK || carve(h, b, span_of(k), need) != MK_OK) return MK_ECORRUPT;
    *out = b;
    return MK_OK;
}

/* Whether used block b of span s can be a buddy block: a power of two at a
 * multiple of itself in the arena (its tag was checked by the caller). */
static bool buddy_shape_ok(const mk__hdr *h, mk_off b, uint64_t s) {
    return is_pow2(s) && s >= MIN_SPAN && s <= (UINT64_C(1) << MAX_ORDER) &&
           ((b - h->data_start) & (s - 1)) == 0 && s <= h->data_end - b;
}

static int buddy_release(mk__hdr *h, mk_off b) {
    mk_off ds = h->data_start;
    uint64_t d = h->data_end - ds;
    uint64_t rel = b - ds, s = mk__bspan(h, b);
    if (!buddy_shape_ok(h, b, s)) return MK_ECORRUPT;
    /* Merge upward while the buddy is a free block of the same span. A
     * buddy of another span is split (or part of nothing we could merge);
     * one whose links look damaged is left alone for validate to report,
     * so that no write follows a bad offset. */
    while (!is_chunk(d, rel, s) && s < (UINT64_C(1) << MAX_ORDER)) {
        mk_off bud = ds + (rel ^ s);
        if (!free_of_span(h, bud, s)) break;
        if (list_unlink(h, bud, order_of(s)) != MK_OK) return MK_ECORRUPT;
        scrub_header(h, ds + (rel | s)); /* the upper half's start is interior now */
        rel &= ~s;
        s <<= 1;
    }
    return put_free(h, ds + rel, s);
}

static int buddy_resize(mk__hdr *h, mk_off b, uint64_t span) {
    if (span > (UINT64_C(1) << MAX_ORDER)) return MK_ENOMEM;
    uint64_t w = mk__hw(h, b);
    uint64_t have = mk__span(w);
    uint64_t keep = w & MK__F_USER; /* the layer above's bit survives a resize */
    uint64_t need = ceil_pow2(span < MIN_SPAN ? MIN_SPAN : span);
    if (!buddy_shape_ok(h, b, have)) return MK_ECORRUPT;
    if (need == have) return MK_OK;
    if (need < have) {
        /* Each upper half split off has the kept lower part, used, as its
         * buddy, so it cannot merge: it goes straight onto its list. */
        while (have > need) {
            have >>= 1;
            if (put_free(h, b + have, have) != MK_OK) return MK_ECORRUPT;
        }
        mk__set_at(h, b, mk__pack(h, b, need, keep));
        return MK_OK;
    }
    /* Grow in place: b must be the lower half at every level up to need,
     * with each upper buddy free and whole. Check all before writing. */
    mk_off ds = h->data_start;
    uint64_t d = h->data_end - ds, rel = b - ds;
    for (uint64_t t = have; t < need; t <<= 1) {
        if (is_chunk(d, rel, t) || (rel & t)) return MK_ENOMEM;
        if (!free_of_span(h, b + t, t)) return MK_ENOMEM;
    }
    for (uint64_t t = have; t < need; t <<= 1) {
        if (list_unlink(h, b + t, order_of(t)) != MK_OK) return MK_ECORRUPT;
        scrub_header(h, b + t);
    }
    mk__set_at(h, b, mk__pack(h, b, need, keep));
    return MK_OK;
}

static int buddy_check(const mk__hdr *h, mk__vstate *v) {
    const buddy_state *S = st(h);
    mk_off ds = h->data_start, end = h->data_end;
    uint64_t d = end - ds;
    mk_off state = h->state_off;
    if (end < ds || d % MIN_SPAN) return mk__vfail(v, "buddy: arena not a multiple of 32", 0);
    /* The shape of the tiling: with rel % s == 0 and rel + s <= D, a block
     * is a chunk or lies inside one (see is_chunk). */
    for (mk_off b = ds; b < end;) {
        uint64_t w = mk__hw(h, b), s = mk__span(w);
        if (!mk__tag_ok(h, b, w)) return mk__vfail(v, "buddy: block header check tag", b);
        if (!is_pow2(s) || s < MIN_SPAN) return mk__vfail(v, "buddy: span not a power of two", b);
        if ((b - ds) & (s - 1)) return mk__vfail(v, "buddy: block not aligned to its span", b);
        if (s > end - b) return mk__vfail(v, "buddy: block past the arena", b);
        b += s;
    }
    uint64_t seen = 0;
    for (int k = 0; k < NORD; k++) {
        uint64_t s = span_of(k);
        mk_off link_at = state + offsetof(buddy_state, head) + 8 * (uint64_t)k;
        if (!!S->head[k] != !!(S->nonempty & (UINT64_C(1) << k)))
            return mk__vfail(v, "buddy: non-empty bitmap disagrees with a list", link_at);
        mk_off prev = 0;
        for (mk_off b = S->head[k]; b; prev = b, b = mk__get(h, b + MK__LINK0)) {
            /* More members than free blocks: a cycle or a foreign member. */
            if (++seen > v->free_blocks)
                return mk__vfail(v, "buddy: more listed blocks than free blocks (cycle?)", link_at);
            if (!in_arena(h, b) || !mk__valid_free_block(h, b))
                return mk__vfail(v, "buddy: listed block is not a valid free block", link_at);
            if (mk__bspan(h, b) != s)
                return mk__vfail(v, "buddy: free block on the list of another span", b);
            uint64_t rel = b - ds;
            if (rel & (s - 1)) return mk__vfail(v, "buddy: free block not aligned to its span", b);
            if (mk__get(h, b + MK__LINK1) != prev)
                return mk__vfail(v, "buddy: prev link disagrees with list order", b + MK__LINK1);
            if (!is_chunk(d, rel, s)) {
                mk_off bud = ds + (rel ^ s);
                uint64_t bw = mk__hw(h, bud);
                if ((bw & MK__F_FREE) && mk__span(bw) == s && mk__tag_ok(h, bud, bw))
                    return mk__vfail(v, "buddy: free buddies not merged", b);
            }
            link_at = b + MK__LINK0;
        }
    }
    if (S->nonempty >> NORD) return mk__vfail(v, "buddy: bitmap bit past the last order", state);
    if (seen != v->free_blocks) return mk__vfail(v, "buddy: free block missing from the lists", 0);
    return MK_OK;
}

static bool buddy_holds(const mk__hdr *h, mk_off b) {
    if (!in_arena(h, b)) return false;
    uint64_t s = mk__bspan(h, b);
    if (!is_pow2(s) || s < MIN_SPAN || s > (UINT64_C(1) << MAX_ORDER)) return false;
    int k = order_of(s);
    mk_off prev = mk__get(h, b + MK__LINK1);
    if (!prev) return st(h)->head[k] == b;
    return in_arena(h, prev) && mk__get(h, prev + MK__LINK0) == b;
}

const mk__policy_ops mk__policy_buddy = {
    .name = "buddy",
    .min_span = MIN_SPAN,
    .state_size = sizeof(buddy_state),
    .coalesces = false,
    .init = buddy_init,
    .find = NULL,
    .insert = NULL,
    .remove = NULL,
    .alloc = buddy_alloc,
    .release = buddy_release,
    .resize = buddy_resize,
    .grow = NULL,
    .check = buddy_check,
    .holds = buddy_holds,
};
