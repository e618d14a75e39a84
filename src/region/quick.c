/*
 * Quick lists: deferred coalescing for small blocks (MK_REGION_QUICK).
 *
 * Immediate coalescing costs a free four or five cache misses: the block,
 * its next neighbour, the neighbours' list links, a list head. A parked
 * block costs one: its own header line, where the list link also lives.
 * The lists hold exact spans, so a pop never splits, and LIFO order hands
 * out the most recently freed (warmest) block.
 *
 * Invariants (checked by mk__quick_check):
 *  - a parked block has QUICK set and FREE clear: to the boundary tags it
 *    is used, so no neighbour merges with it;
 *  - it sits on the list of its span, linked through b + LINK0;
 *  - count[c] is the length of list c, at most MK__QUICK_CAP.
 */
#include "region_int.h"

/* The quick lists, or NULL when h->quick_off is not where this build puts
 * them (a damaged header word must not move the lists anywhere else). */
static mk__quick *quick(const mk__hdr *h) {
    if (h->quick_off != mk__quick_off_for(h)) return NULL;
    return (mk__quick *)(void *)mk__word(h, h->quick_off);
}

static unsigned class_of(uint64_t span) { return (unsigned)(span / MK__GRAIN); }

/* A parked block, as far as its own header line can tell. */
static bool parked_ok(const mk__hdr *h, mk_off b, uint64_t span) {
    if (!mk__link_ok(h, b)) return false;
    uint64_t w = mk__get(h, b);
    return (w & (MK__F_QUICK | MK__F_FREE)) == MK__F_QUICK && mk__span(w) == span &&
           mk__tag_ok(h, b, w);
}

int mk__quick_push(mk__hdr *h, mk_off b) {
    uint64_t w = mk__get(h, b);
    uint64_t span = mk__span(w);
    if (span > MK__QUICK_MAX) return 0;
    mk__quick *q = quick(h);
    unsigned c = class_of(span);
    if (!q || q->count[c] >= MK__QUICK_CAP) return 0;
    mk__set_at(h, b + MK__LINK0, q->head[c]);
    mk__set_at(h, b, w | MK__F_QUICK);
    mk__set(h, &q->head[c], b);
    mk__set(h, &q->count[c], q->count[c] + 1);
    return 1;
}

mk_off mk__quick_pop(mk__hdr *h, uint64_t span, int *err) {
    if (span > MK__QUICK_MAX) return 0;
    mk__quick *q = quick(h);
    if (!q) {
        *err = MK_ECORRUPT;
        return 0;
    }
    unsigned c = class_of(span);
    mk_off b = q->head[c];
    if (!b) return 0;
    if (!parked_ok(h, b, span) || !q->count[c]) {
        *err = MK_ECORRUPT;
        return 0;
    }
    mk__set(h, &q->head[c], mk__get(h, b + MK__LINK0));
    mk__set(h, &q->count[c], q->count[c] - 1);
    mk__set_at(h, b, mk__get(h, b) & ~MK__F_QUICK);
    return b;
}

/* Each parked block goes back as its own journaled operation: a flush can
 * touch a thousand blocks, more than one operation's journal holds. The
 * caller has closed its own operation first (nothing was written yet). */
int mk__quick_flush(mk__hdr *h) {
    const mk__policy_ops *ops = mk__ops(h);
    for (unsigned c = 0; c < MK__QUICK_CLASSES; c++) {
        for (;;) {
            int err = MK_OK;
            mk__journal_begin(h, MK__OP_FREE, 0, 0, 0);
            mk_off b = mk__quick_pop(h, (uint64_t)c * MK__GRAIN, &err);
            if (b && mk__neighbours_ok(h, b) != MK_OK) err = MK_ECORRUPT;
            if (b && err == MK_OK) err = ops->release(h, b);
            if (err != MK_OK) mk__journal_undo(h);
            mk__journal_end(h);
            if (err != MK_OK) return err;
            if (!b) break;
        }
    }
    return MK_OK;
}

int mk__quick_check(const mk__hdr *h, mk__vstate *v, uint64_t walk_blocks, uint64_t walk_bytes) {
    const mk__quick *q = quick(h);
    if (!q) return mk__vfail(v, "quick lists where the layout puts them", 0);
    uint64_t blocks = 0, bytes = 0;
    for (unsigned c = 0; c < MK__QUICK_CLASSES; c++) {
        uint64_t n = 0;
        for (mk_off b = q->head[c]; b; b = mk__get(h, b + MK__LINK0)) {
            if (!parked_ok(h, b, (uint64_t)c * MK__GRAIN))
                return mk__vfail(v, "quick list member is not a parked block of its size", b);
            if (++n > q->count[c] || n > MK__QUICK_CAP)
                return mk__vfail(v, "quick list longer than its count (cycle?)", b);
        }
        if (n != q->count[c])
            return mk__vfail(v, "quick list count", mk__offset_of(h, &q->count[c]));
        blocks += n;
        bytes += n * c * MK__GRAIN;
    }
    if (blocks != walk_blocks || bytes != walk_bytes)
        return mk__vfail(v, "parked block missing from the quick lists", h->quick_off);
    return MK_OK;
}
