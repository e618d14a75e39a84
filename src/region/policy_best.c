/*
 * Best fit, exact: the smallest free block that fits.
 *
 * Small spans (below MK__BEST_SMALL_MAX = 8192) have one bin each: a doubly
 * linked LIFO list per multiple of 16, with next at b + LINK0 and prev at
 * b + LINK1 (0 = none; the head has prev 0). A bitmap marks the non-empty
 * bins and a summary word marks the non-zero bitmap words, so the smallest
 * non-empty bin at or above a span is at most two masked ctz's away. Every
 * block in a bin has exactly the bin's span, so the bin found is the best
 * fit and its head will do (ties: any). Larger spans live in a treap
 * ordered by (span, address), where best fit is a lower-bound search.
 *
 * Costs: find O(1) for small requests served from a bin (reads: one or two
 * bitmap words, a head), O(log n) expected otherwise; insert and remove of
 * a small block O(1): the block, its bin head and at most one neighbour,
 * plus the bitmap (and summary) when the bin becomes (non-)empty. Tree
 * nodes O(log n) expected.
 *
 * min_span is 32 (header, two links, footer): a binned block needs two
 * link words, and a tree node is at least 8192 bytes, so the treap's two
 * links always fit; the size order needs no subtree-max word.
 */
#include <assert.h>

#include "tree.h"

#define MK__BEST_NBINS     512u                         /* bin i: span 16 * i */
#define MK__BEST_SMALL_MAX (MK__BEST_NBINS * MK__GRAIN) /* smallest tree span */
#define MK__BEST_NWORDS    (MK__BEST_NBINS / 64u)

typedef struct mk__best_state {
    uint64_t summary;                 /* bit w: bitmap[w] != 0 */
    mk_off tree;                      /* (span, b)-ordered treap, spans >= SMALL_MAX */
    uint64_t bitmap[MK__BEST_NWORDS]; /* bit i: head[i] != 0 */
    mk_off head[MK__BEST_NBINS];      /* first block of each bin, 0 if empty */
} mk__best_state;
static_assert(sizeof(mk__best_state) == 16 + 8 * MK__BEST_NWORDS + 8 * MK__BEST_NBINS,
              "best-fit state layout is part of the format");
static_assert(MK__BEST_NWORDS < 64, "the summary word covers every bitmap word");
#define MK__BEST_SUMMARY_MASK ((UINT64_C(1) << MK__BEST_NWORDS) - 1)

static mk__best_state *st(const mk__hdr *h) { return (mk__best_state *)mk__state(h); }

static void best_init(mk__hdr *h) {
    mk__best_state *s = st(h);
    uint64_t *w = &s->summary;
    for (size_t i = 0; i < sizeof(*s) / sizeof(uint64_t); i++)
        if (w[i]) mk__set(h, &w[i], 0);
}

static mk_off best_find(mk__hdr *h, uint64_t span) {
    const mk__best_state *s = st(h);
    uint64_t i = (span + MK__GRAIN - 1) / MK__GRAIN;
    if (i < MK__BEST_NBINS) {
        unsigned w = (unsigned)(i / 64);
        uint64_t m = s->bitmap[w] & (~UINT64_C(0) << (i % 64));
        if (m) return s->head[w * 64 + (unsigned)mk__ctz64(m)];
        /* Words past w; masked so a damaged summary cannot index past the
         * bitmap (the region may be shared with a faulty process). */
        uint64_t above = s->summary & ((~UINT64_C(0) << w) << 1) & MK__BEST_SUMMARY_MASK;
        if (above) {
            w = (unsigned)mk__ctz64(above);
            if (!s->bitmap[w]) return 0; /* inconsistent: validate will say so */
            return s->head[w * 64 + (unsigned)mk__ctz64(s->bitmap[w])];
        }
    }
    return mk__tree_lower_bound(h, s->tree, span, 0);
}

static int best_insert(mk__hdr *h, mk_off b) {
    mk__best_state *s = st(h);
    uint64_t span = mk__bspan(h, b);
    if (span >= MK__BEST_SMALL_MAX) return mk__tree_insert(h, &s->tree, MK__TREE_BY_SIZE, b);
    uint64_t i = span / MK__GRAIN;
    mk_off head = s->head[i];
    /* The head is written through: it must be a list head (no prev). */
    if (head && (!mk__link_ok(h, head) || mk__get(h, head + MK__LINK1) != 0 || head == b))
        return MK_ECORRUPT;
    mk__set_at(h, b + MK__LINK0, head);
    mk__set_at(h, b + MK__LINK1, 0);
    if (head) {
        mk__set_at(h, head + MK__LINK1, b);
    } else {
        unsigned w = (unsigned)(i / 64);
        if (!s->bitmap[w]) mk__set(h, &s->summary, s->summary | UINT64_C(1) << w);
        mk__set(h, &s->bitmap[w], s->bitmap[w] | UINT64_C(1) << (i % 64));
    }
    mk__set(h, &s->head[i], b);
    return MK_OK;
}

static int best_remove(mk__hdr *h, mk_off b) {
    mk__best_state *s = st(h);
    uint64_t span = mk__bspan(h, b);
    if (span >= MK__BEST_SMALL_MAX) return mk__tree_remove(h, &s->tree, MK__TREE_BY_SIZE, b);
    uint64_t i = span / MK__GRAIN;
    mk_off next = mk__get(h, b + MK__LINK0), prev = mk__get(h, b + MK__LINK1);
    /* Safe unlinking: each neighbour must point back at b before it is
     * written, so a damaged link is refused instead of followed. */
    if (next && (!mk__link_ok(h, next) || mk__get(h, next + MK__LINK1) != b)) return MK_ECORRUPT;
    if (prev ? !mk__link_ok(h, prev) || mk__get(h, prev + MK__LINK0) != b : s->head[i] != b)
        return MK_ECORRUPT;
    if (next) mk__set_at(h, next + MK__LINK1, prev);
    if (prev) {
        mk__set_at(h, prev + MK__LINK0, next);
        return MK_OK;
    }
    mk__set(h, &s->head[i], next);
    if (!next) {
        unsigned w = (unsigned)(i / 64);
        uint64_t bits = s->bitmap[w] & ~(UINT64_C(1) << (i % 64));
        mk__set(h, &s->bitmap[w], bits);
        if (!bits) mk__set(h, &s->summary, s->summary & ~(UINT64_C(1) << w));
    }
    return MK_OK;
}

static int best_check(const mk__hdr *h, mk__vstate *v) {
    const mk__best_state *s = st(h);
    const mk_off st_off = h->state_off;
    uint64_t total = 0;
    if (s->summary & ~MK__BEST_SUMMARY_MASK)
        return mk__vfail(v, "best fit: summary bits past the bitmap", st_off);
    for (unsigned w = 0; w < MK__BEST_NWORDS; w++)
        if (((s->summary >> w) & 1) != (s->bitmap[w] != 0))
            return mk__vfail(v, "best fit: summary bit iff bitmap word non-zero", st_off);
    for (unsigned i = 0; i < MK__BEST_NBINS; i++) {
        mk_off head_off = st_off + (mk_off)((const char *)&s->head[i] - (const char *)s);
        if (((s->bitmap[i / 64] >> (i % 64)) & 1) != (s->head[i] != 0))
            return mk__vfail(v, "best fit: bitmap bit iff bin non-empty", head_off);
        mk_off prev = 0;
        /* Bounded by the walk's count, so a cycle ends in a fault. */
        for (mk_off x = s->head[i]; x; x = mk__get(h, x + MK__LINK0)) {
            if (++total > v->free_blocks)
                return mk__vfail(v, "best fit: bins hold more blocks than are free", x);
            if (!mk__valid_free_block(h, x))
                return mk__vfail(v, "best fit: bin member is a valid free block", x);
            if (mk__bspan(h, x) != (uint64_t)i * MK__GRAIN)
                return mk__vfail(v, "best fit: bin member has the bin's span", x);
            if (mk__get(h, x + MK__LINK1) != prev)
                return mk__vfail(v, "best fit: bin prev link", x + MK__LINK1);
            prev = x;
        }
    }
    uint64_t n;
    int rc = mk__tree_check(h, s->tree, MK__TREE_BY_SIZE, MK__BEST_SMALL_MAX, v, &n);
    if (rc != MK_OK) return rc;
    if (total + n != v->free_blocks)
        return mk__vfail(v, "best fit: bins and tree hold every free block", 0);
    return MK_OK;
}

static bool best_holds(const mk__hdr *h, mk_off b) {
    const mk__best_state *s = st(h);
    uint64_t span = mk__bspan(h, b);
    if (span >= MK__BEST_SMALL_MAX) return mk__tree_contains(h, s->tree, MK__TREE_BY_SIZE, b);
    mk_off prev = mk__get(h, b + MK__LINK1);
    if (!prev) return s->head[span / MK__GRAIN] == b;
    return mk__valid_free_block(h, prev) && mk__get(h, prev + MK__LINK0) == b;
}

const mk__policy_ops mk__policy_best_fit = {
    .name = "best",
    .min_span = 32, /* header, two links, footer: see above */
    .state_size = sizeof(mk__best_state),
    .coalesces = true,
    .init = best_init,
    .find = best_find,
    .insert = best_insert,
    .remove = best_remove,
    .alloc = mk__bt_alloc,
    .release = mk__bt_release,
    .resize = mk__bt_resize,
    .grow = mk__bt_grow,
    .check = best_check,
    .holds = best_holds,
};
