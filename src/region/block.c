/*
 * The boundary-tag engine shared by first, next, best, worst fit and TLSF.
 *
 * Invariants (checked by mk_region_validate):
 *  - blocks tile [data_start, data_end); the sentinel at data_end is "used";
 *  - no two free blocks are adjacent (a free block is always merged with
 *    free neighbours), so a free block's PREV_FREE bit is always clear and
 *    its footer equals its header;
 *  - a block's PREV_FREE bit equals the FREE bit of the block before it;
 *  - every free block is in the policy's free structure, and nothing else is.
 *
 * The policy only answers "which free block" (find) and keeps its structure
 * (insert/remove); splitting and merging live here, once.
 */
#include "region_int.h"

static void set_prev_free(mk__hdr *h, mk_off b, bool on) {
    uint64_t w = mk__get(h, b);
    uint64_t nw = on ? (w | MK__F_PREV_FREE) : (w & ~MK__F_PREV_FREE);
    if (nw != w) mk__set_at(h, b, nw);
}

void mk__bt_make_free(mk__hdr *h, mk_off b, uint64_t span) {
    /* A free block's predecessor is used (or it would have merged). */
    uint64_t w = mk__pack(h, b, span, MK__F_FREE);
    mk__set_at(h, b, w);
    mk__set_at(h, b + span - 8, w);
    set_prev_free(h, b + span, true);
}

/* Turn free block b (already out of the free structure) into a used block
 * of at least span bytes; the tail goes back as a free block if it can
 * stand alone. b's predecessor is used, since b was free. */
static int take(mk__hdr *h, const mk__policy_ops *ops, mk_off b, uint64_t span) {
    uint64_t have = mk__bspan(h, b);
    if (have - span >= ops->min_span) {
        mk__set_at(h, b, mk__pack(h, b, span, 0));
        mk_off rest = b + span;
        uint64_t w = mk__pack(h, rest, have - span, MK__F_FREE);
        mk__set_at(h, rest, w);
        mk__set_at(h, b + have - 8, w); /* the old footer becomes the rest's */
        return ops->insert(h, rest);    /* its successor keeps PREV_FREE */
    }
    mk__set_at(h, b, mk__pack(h, b, have, 0));
    set_prev_free(h, b + have, false);
    return MK_OK;
}

/* take() from the other end: the top span bytes of free block b (out of
 * the free structure) become a used block, *out; the rest stays free
 * below it. With no room for a rest, the whole block, as take() does. */
static int take_high(mk__hdr *h, const mk__policy_ops *ops, mk_off b, uint64_t span, mk_off *out) {
    uint64_t have = mk__bspan(h, b);
    if (have - span < ops->min_span) {
        *out = b;
        return take(h, ops, b, span);
    }
    uint64_t rest = have - span, w = mk__pack(h, b, rest, MK__F_FREE);
    mk__set_at(h, b, w);
    mk__set_at(h, b + rest - 8, w);
    mk_off u = b + rest;
    mk__set_at(h, u, mk__pack(h, u, span, MK__F_PREV_FREE));
    set_prev_free(h, b + have, false); /* its predecessor is u now, used */
    *out = u;
    return ops->insert(h, b);
}

/* Bytes to skip at the start of free block b so that its payload is
 * aligned; 0 or at least min_span, so the skipped part is a block. */
static uint64_t align_gap(const mk__hdr *h, mk_off b, uint64_t align, uint64_t min_span) {
    uintptr_t payload = (uintptr_t)h + b + MK__TAGW;
    if (payload % align == 0) return 0;
    uintptr_t first = (payload + min_span + align - 1) & ~(uintptr_t)(align - 1);
    return first - payload;
}

/* The policy's answer is checked before it is followed: a damaged free
 * structure can name anything (see mk__policy_ops.find). */
int mk__bt_alloc(mk__hdr *h, uint64_t span, uint64_t align, unsigned place, mk_off *out) {
    const mk__policy_ops *ops = mk__ops(h);
    uint64_t want = align <= MK__GRAIN ? span : span + align + ops->min_span;
    mk_off b = ops->find(h, want);
    if (!b) return MK_ENOMEM;
    if (!mk__plausible_free(h, b) || mk__bspan(h, b) < want) return MK_ECORRUPT;
    if (ops->remove(h, b) != MK_OK) return MK_ECORRUPT;
    if (align > MK__GRAIN) {
        uint64_t gap = align_gap(h, b, align, ops->min_span);
        if (gap) {
            uint64_t have = mk__bspan(h, b);
            uint64_t w = mk__pack(h, b, gap, MK__F_FREE);
            mk__set_at(h, b, w);
            mk__set_at(h, b + gap - 8, w);
            if (ops->insert(h, b) != MK_OK) return MK_ECORRUPT;
            b += gap;
            /* The aligned part is free, its predecessor (the gap) too;
             * take() then writes it as used. */
            mk__set_at(h, b, mk__pack(h, b, have - gap, MK__F_PREV_FREE));
            if (take(h, ops, b, span) != MK_OK) return MK_ECORRUPT;
            set_prev_free(h, b, true);
            *out = b;
            return MK_OK;
        }
    }
    if (place == MK__PLACE_HIGH && align <= MK__GRAIN)
        return take_high(h, ops, b, span, out) == MK_OK ? MK_OK : MK_ECORRUPT;
    if (take(h, ops, b, span) != MK_OK) return MK_ECORRUPT;
    *out = b;
    return MK_OK;
}

/* The caller checked b's neighbours (mk__neighbours_ok): the next block's
 * tag and span, and a free predecessor's footer, header and tag. */
int mk__bt_release(mk__hdr *h, mk_off b) {
    const mk__policy_ops *ops = mk__ops(h);
    uint64_t w = mk__get(h, b);
    mk_off start = b;
    uint64_t total = mk__span(w);
    mk_off n = b + total;
    uint64_t nw = mk__get(h, n);
    if (nw & MK__F_FREE) {
        if (ops->remove(h, n) != MK_OK) return MK_ECORRUPT;
        total += mk__span(nw);
        mk__set_at(h, n, 0); /* a stale header must not pass for a block */
    }
    if (w & MK__F_PREV_FREE) {
        uint64_t pspan = mk__span(mk__get(h, b - 8)); /* the predecessor's footer */
        start = b - pspan;
        if (ops->remove(h, start) != MK_OK) return MK_ECORRUPT;
        total += pspan;
        mk__set_at(h, b, 0);
    }
    mk__bt_make_free(h, start, total);
    return ops->insert(h, start);
}

/* A free block after b that the engine may merge: its tag was checked by
 * mk__neighbours_ok; its span must also leave room for its footer. */
static uint64_t next_free_span(const mk__hdr *h, mk_off n, uint64_t nw) {
    if (!(nw & MK__F_FREE) || n >= h->data_end) return 0;
    return mk__span(nw);
}

int mk__bt_resize(mk__hdr *h, mk_off b, uint64_t span) {
    const mk__policy_ops *ops = mk__ops(h);
    uint64_t w = mk__get(h, b);
    uint64_t have = mk__span(w);
    uint64_t keep = w & MK__F_PREV_FREE;
    mk_off n = b + have;
    uint64_t nw = mk__get(h, n);
    uint64_t next_free = next_free_span(h, n, nw);

    if (span <= have) {
        uint64_t rest = have - span + next_free;
        if (have - span < ops->min_span && !(next_free && have > span)) return MK_OK;
        if (next_free) {
            if (ops->remove(h, n) != MK_OK) return MK_ECORRUPT;
            mk__set_at(h, n, 0);
        }
        mk__set_at(h, b, mk__pack(h, b, span, keep));
        mk__bt_make_free(h, b + span, rest);
        return ops->insert(h, b + span);
    }
    if (!next_free || have + next_free < span) return MK_ENOMEM;
    if (ops->remove(h, n) != MK_OK) return MK_ECORRUPT;
    mk__set_at(h, n, 0);
    uint64_t total = have + next_free;
    if (total - span >= ops->min_span) {
        mk__set_at(h, b, mk__pack(h, b, span, keep));
        mk__bt_make_free(h, b + span, total - span);
        return ops->insert(h, b + span);
    }
    mk__set_at(h, b, mk__pack(h, b, total, keep));
    set_prev_free(h, b + total, false);
    return MK_OK;
}

/* The old sentinel's PREV_FREE names a free last block through its footer:
 * checked like a free predecessor before it is merged. */
int mk__bt_grow(mk__hdr *h, mk_off new_end) {
    const mk__policy_ops *ops = mk__ops(h);
    mk_off old_end = h->data_end;
    uint64_t sw = mk__get(h, old_end);
    mk_off start = old_end;
    uint64_t total = new_end - old_end;
    uint64_t pspan = 0;
    if (sw & MK__F_PREV_FREE) {
        uint64_t foot = mk__get(h, old_end - 8);
        pspan = mk__span(foot);
        if (pspan > old_end - h->data_start || !mk__plausible_free(h, old_end - pspan) ||
            mk__get(h, old_end - pspan) != foot)
            return MK_ECORRUPT;
    }
    mk__set_at(h, new_end, mk__pack(h, new_end, 0, 0));
    mk__set(h, &h->data_end, new_end);
    if (pspan) {
        start = old_end - pspan;
        if (ops->remove(h, start) != MK_OK) return MK_ECORRUPT;
        total += pspan;
    }
    mk__bt_make_free(h, start, total);
    return ops->insert(h, start);
}
