/*
 * Walking and validating a region. Both trust nothing: every offset read
 * from the range is checked before it is followed, so a damaged region
 * gives MK_ECORRUPT and the name of the broken invariant, never a stray
 * read outside [base, base + size).
 */
#include "region_int.h"

int mk__vfail(mk__vstate *v, const char *invariant, mk_off off) {
    if (v->fault->code == MK_OK) {
        v->fault->code = MK_ECORRUPT;
        v->fault->invariant = invariant;
        v->fault->offset = off;
    }
    return MK_ECORRUPT;
}

bool mk__valid_free_block(const mk__hdr *h, mk_off b) {
    if (!mk__link_ok(h, b)) return false;
    uint64_t w = mk__get(h, b);
    if (!mk__tag_ok(h, b, w) || !(w & MK__F_FREE)) return false;
    uint64_t span = mk__span(w);
    const mk__policy_ops *ops = mk__ops(h);
    if (span < ops->min_span || span > h->data_end - b) return false;
    return !ops->coalesces || mk__get(h, b + span - 8) == w;
}

/* Check one block's tag and span; returns its span or 0 on damage. */
static uint64_t block_span(const mk__hdr *h, mk_off b, mk__vstate *v) {
    uint64_t w = mk__get(h, b);
    if (!mk__tag_ok(h, b, w)) return mk__vfail(v, "block header check tag", b), 0;
    uint64_t span = mk__span(w);
    if (span < mk__ops(h)->min_span || span % MK__GRAIN)
        return mk__vfail(v, "block span below minimum or unaligned", b), 0;
    if (span > h->data_end - b) return mk__vfail(v, "block extends past the end of the data", b), 0;
    return span;
}

int mk_region_walk(const mk_region *r, mk_block_visitor visit, void *arg) {
    if (!r || !visit) return MK_EINVAL;
    const mk__hdr *h = mk__hc(r);
    if (!mk__hdr_ok(h)) return MK_ECORRUPT;
    mk_fault f = {0};
    mk__vstate v = {.fault = &f};
    for (mk_off b = h->data_start; b < h->data_end;) {
        uint64_t span = block_span(h, b, &v);
        if (!span) return MK_ECORRUPT;
        mk_block_info info = {.offset = b + MK__TAGW,
                              .size = span - MK__TAGW,
                              .span = span,
                              .used = !(mk__get(h, b) & (MK__F_FREE | MK__F_QUICK))};
        int rc = visit(&info, arg);
        if (rc) return rc;
        b += span;
    }
    return MK_OK;
}

static int check_header(const mk__hdr *h, mk__vstate *v) {
    if (h->magic != MK__MAGIC) return mk__vfail(v, "header magic", 0);
    if (h->policy >= MK_POLICY_COUNT) return mk__vfail(v, "header policy", 0);
    if (!mk__hdr_ok(h)) return mk__vfail(v, "header data bounds", 0);
    if (!mk__layout_ok(h))
        return mk__vfail(v, "header layout (state, quick lists, journal, data start)", 0);
    if (h->journal_off) {
        const mk__journal *j = (const mk__journal *)(const void *)mk__word(h, h->journal_off);
        if (j->count || j->op != MK__OP_NONE)
            return mk__vfail(v, "journal holds an unfinished operation (recover first)",
                             h->journal_off);
    }
    return MK_OK;
}

/* The walk: tags, spans, boundary tags, counts. */
static int check_blocks(const mk__hdr *h, mk__vstate *v) {
    const mk__policy_ops *ops = mk__ops(h);
    uint64_t used_bytes = 0, used_blocks = 0, quick_bytes = 0, quick_blocks = 0;
    bool prev_free = false;
    mk_off b = h->data_start;
    while (b < h->data_end) {
        uint64_t span = block_span(h, b, v);
        if (!span) return MK_ECORRUPT;
        uint64_t w = mk__get(h, b);
        bool is_free = (w & MK__F_FREE) != 0;
        if (ops->coalesces) {
            if (!!(w & MK__F_PREV_FREE) != prev_free)
                return mk__vfail(v, "PREV_FREE bit disagrees with the previous block", b);
            if (is_free && prev_free) return mk__vfail(v, "two adjacent free blocks", b);
            if (is_free && mk__get(h, b + span - 8) != w)
                return mk__vfail(v, "free block footer differs from header", b);
        }
        if (is_free) {
            v->free_blocks++;
            v->free_bytes += span;
        } else if (w & MK__F_QUICK) {
            if (!h->quick_off) return mk__vfail(v, "parked block without quick lists", b);
            quick_blocks++;
            quick_bytes += span;
        } else {
            used_blocks++;
            used_bytes += span;
        }
        prev_free = is_free;
        b += span;
    }
    if (b != h->data_end) return mk__vfail(v, "blocks do not end at the sentinel", b);
    uint64_t sw = mk__get(h, b);
    if (!mk__tag_ok(h, b, sw) || mk__span(sw) != 0 || (sw & MK__F_FREE))
        return mk__vfail(v, "end sentinel", b);
    if (ops->coalesces && !!(sw & MK__F_PREV_FREE) != prev_free)
        return mk__vfail(v, "PREV_FREE bit disagrees with the previous block", b);
    if (h->quick_off) {
        int rc = mk__quick_check(h, v, quick_blocks, quick_bytes);
        if (rc != MK_OK) return rc;
    }
    if (used_bytes != h->c.bytes_used) return mk__vfail(v, "counter bytes_used", 0);
    if (used_blocks != h->c.blocks_used) return mk__vfail(v, "counter blocks_used", 0);
    if (h->c.peak_used < h->c.bytes_used)
        return mk__vfail(v, "counter peak_used below bytes_used", 0);
    return MK_OK;
}

/* Every free block of the walk must be linked in the policy's structure. */
static int check_linked(const mk__hdr *h, mk__vstate *v) {
    const mk__policy_ops *ops = mk__ops(h);
    for (mk_off b = h->data_start; b < h->data_end; b += mk__bspan(h, b)) {
        if (mk__bfree(h, b) && !ops->holds(h, b))
            return mk__vfail(v, "free block not linked in the free structure", b);
    }
    return MK_OK;
}

int mk_region_validate(const mk_region *r, mk_fault *fault) {
    mk_fault local;
    if (!fault) fault = &local;
    *fault = (mk_fault){0};
    if (!r) return fault->code = MK_EINVAL;
    const mk__hdr *h = mk__hc(r);
    mk__vstate v = {.fault = fault};
    int rc = check_header(h, &v);
    if (rc == MK_OK) rc = check_blocks(h, &v);
    if (rc == MK_OK) rc = mk__ops(h)->check(h, &v);
    if (rc == MK_OK) rc = check_linked(h, &v);
    return rc;
}
