/*
 * TLSF: two-level segregated fit (Masmano et al., 2004), with offsets.
 *
 * Free blocks are kept in lists by size class. The first level splits spans
 * by powers of two; the second splits each power-of-two range into
 * 2^SL_LOG equal classes. Two bitmaps say which lists are non-empty, so
 * finding a list is a couple of bit scans: alloc and free are O(1).
 *
 * find() rounds the request up to the next class boundary first, so any
 * block of the class found is large enough ("good fit": waste is bounded
 * by 1/2^SL_LOG of the request). When that finds nothing it scans the
 * request's own class, so memory that fits is never refused.
 *
 * Spans below SMALL (512) are classed linearly by 16 bytes in first-level
 * list 0. Links in a free block: next at b+LINK0, prev at b+LINK1.
 */
#include "region_int.h"

#define SL_LOG    5
#define SL_COUNT  (1u << SL_LOG)
#define GRAIN_LOG 4
#define FL_SHIFT  (SL_LOG + GRAIN_LOG) /* 9 */
#define SMALL     (UINT64_C(1) << FL_SHIFT)
#define FL_COUNT  32 /* spans below 2^(FL_SHIFT + FL_COUNT - 1) = 1 TiB */
#define FL_MASK   ((UINT64_C(1) << FL_COUNT) - 1)
#define SL_MASK   ((UINT64_C(1) << SL_COUNT) - 1)

typedef struct tlsf_state {
    uint64_t fl_map;
    uint64_t sl_map[FL_COUNT];
    mk_off head[FL_COUNT][SL_COUNT];
} tlsf_state;

_Static_assert(sizeof(tlsf_state) == 8 + FL_COUNT * 8 + FL_COUNT * SL_COUNT * 8, "layout");

static tlsf_state *st(const mk__hdr *h) { return (tlsf_state *)mk__state(h); }

static inline int msb(uint64_t x) { return 63 - mk__clz64(x); }

static inline void mapping(uint64_t span, unsigned *fl, unsigned *sl) {
    if (span < SMALL) {
        *fl = 0;
        *sl = (unsigned)(span >> GRAIN_LOG);
    } else {
        int m = msb(span);
        *fl = (unsigned)(m - FL_SHIFT + 1);
        *sl = (unsigned)((span >> (m - SL_LOG)) ^ SL_COUNT);
    }
}

static mk_off first_of_class(const tlsf_state *s, unsigned fl, unsigned sl) {
    uint64_t sl_bits = s->sl_map[fl] & SL_MASK & (~UINT64_C(0) << sl);
    if (!sl_bits) {
        /* Masked to FL_COUNT lists: a damaged bitmap must not index past them. */
        uint64_t fl_bits = fl + 1 < FL_COUNT ? s->fl_map & FL_MASK & (~UINT64_C(0) << (fl + 1)) : 0;
        if (!fl_bits) return 0;
        fl = (unsigned)mk__ctz64(fl_bits);
        sl_bits = s->sl_map[fl] & SL_MASK;
        if (!sl_bits) return 0; /* inconsistent: validate will say so */
    }
    return s->head[fl][mk__ctz64(sl_bits)];
}

static mk_off tlsf_find(mk__hdr *h, uint64_t span) {
    const tlsf_state *s = st(h);
    unsigned fl, sl;
    /* The most recently freed block of the request's own class, if it is
     * large enough: reuse of warm memory, and less splitting. */
    mapping(span, &fl, &sl);
    if (fl < FL_COUNT) {
        mk_off b = s->head[fl][sl];
        if (b && mk__link_ok(h, b) && mk__bspan(h, b) >= span) return b;
    }
    uint64_t rounded = span;
    if (span >= SMALL) rounded += (UINT64_C(1) << (msb(span) - SL_LOG)) - 1;
    mapping(rounded, &fl, &sl);
    if (fl < FL_COUNT) {
        mk_off b = first_of_class(s, fl, sl);
        if (b) return b;
    }
    /* Nearly full: a block in the request's own class may still fit. */
    mapping(span, &fl, &sl);
    if (fl >= FL_COUNT) return 0;
    /* A scan of one list. A damaged list may loop: Brent's cycle test (a
     * mark that jumps ahead at powers of two) ends the scan within two
     * laps of the loop, so a cycle costs about its length, not a hang. */
    mk_off b = s->head[fl][sl], mark = 0;
    for (uint64_t lap = 0, power = 1; b; b = mk__get(h, b + MK__LINK0)) {
        if (!mk__link_ok(h, b) || b == mark) return MK__BAD_LINK; /* the engine refuses it */
        if (mk__bspan(h, b) >= span) return b;
        if (++lap == power) {
            mark = b;
            power <<= 1;
            lap = 0;
        }
    }
    return 0;
}

static int tlsf_insert(mk__hdr *h, mk_off b) {
    tlsf_state *s = st(h);
    unsigned fl, sl;
    mapping(mk__bspan(h, b), &fl, &sl);
    if (fl >= FL_COUNT) return MK_ECORRUPT;
    mk_off head = s->head[fl][sl];
    /* The head is written through: it must be a list head (no prev). */
    if (head && (!mk__link_ok(h, head) || mk__get(h, head + MK__LINK1) != 0 || head == b))
        return MK_ECORRUPT;
    mk__set_at(h, b + MK__LINK0, head);
    mk__set_at(h, b + MK__LINK1, 0);
    if (head) mk__set_at(h, head + MK__LINK1, b);
    mk__set(h, &s->head[fl][sl], b);
    if (!head) {
        if (!(s->fl_map & (UINT64_C(1) << fl)))
            mk__set(h, &s->fl_map, s->fl_map | (UINT64_C(1) << fl));
        mk__set(h, &s->sl_map[fl], s->sl_map[fl] | (UINT64_C(1) << sl));
    }
    return MK_OK;
}

static int tlsf_remove(mk__hdr *h, mk_off b) {
    tlsf_state *s = st(h);
    unsigned fl, sl;
    mapping(mk__bspan(h, b), &fl, &sl);
    if (fl >= FL_COUNT) return MK_ECORRUPT;
    mk_off next = mk__get(h, b + MK__LINK0);
    mk_off prev = mk__get(h, b + MK__LINK1);
    /* Safe unlinking: each neighbour must point back at b before it is
     * written, so a damaged link is refused instead of followed; validate
     * reports the damage itself. */
    if (next && (!mk__link_ok(h, next) || mk__get(h, next + MK__LINK1) != b)) return MK_ECORRUPT;
    if (prev ? !mk__link_ok(h, prev) || mk__get(h, prev + MK__LINK0) != b : s->head[fl][sl] != b)
        return MK_ECORRUPT;
    if (next) mk__set_at(h, next + MK__LINK1, prev);
    if (prev) {
        mk__set_at(h, prev + MK__LINK0, next);
    } else {
        mk__set(h, &s->head[fl][sl], next);
        if (!next) {
            uint64_t m = s->sl_map[fl] & ~(UINT64_C(1) << sl);
            mk__set(h, &s->sl_map[fl], m);
            if (!m) mk__set(h, &s->fl_map, s->fl_map & ~(UINT64_C(1) << fl));
        }
    }
    return MK_OK;
}

static void tlsf_init(mk__hdr *h) { memset(st(h), 0, sizeof(tlsf_state)); }

static int tlsf_check(const mk__hdr *h, mk__vstate *v) {
    const tlsf_state *s = st(h);
    uint64_t count = 0;
    if (s->fl_map & ~FL_MASK)
        return mk__vfail(v, "tlsf: first-level bitmap bits past the lists", h->state_off);
    for (unsigned fl = 0; fl < FL_COUNT; fl++) {
        if (s->sl_map[fl] & ~SL_MASK)
            return mk__vfail(v, "tlsf: second-level bitmap bits past the lists",
                             mk__offset_of(h, &s->sl_map[fl]));
        if (!!(s->fl_map & (UINT64_C(1) << fl)) != !!s->sl_map[fl])
            return mk__vfail(v, "tlsf: first-level bitmap disagrees with second level",
                             mk__offset_of(h, &s->sl_map[fl]));
        for (unsigned sl = 0; sl < SL_COUNT; sl++) {
            mk_off b = s->head[fl][sl], prev = 0;
            if (!!b != !!(s->sl_map[fl] & (UINT64_C(1) << sl)))
                return mk__vfail(v, "tlsf: second-level bitmap disagrees with list",
                                 mk__offset_of(h, &s->head[fl][sl]));
            for (; b; prev = b, b = mk__get(h, b + MK__LINK0)) {
                if (++count > v->free_blocks)
                    return mk__vfail(v, "tlsf: more listed blocks than free blocks (cycle?)", b);
                if (!mk__valid_free_block(h, b))
                    return mk__vfail(v, "tlsf: listed block is not a valid free block", b);
                unsigned f, l;
                mapping(mk__bspan(h, b), &f, &l);
                if (f != fl || l != sl)
                    return mk__vfail(v, "tlsf: block in the wrong size class", b);
                if (mk__get(h, b + MK__LINK1) != prev)
                    return mk__vfail(v, "tlsf: prev link disagrees with list order", b);
            }
        }
    }
    if (count != v->free_blocks) return mk__vfail(v, "tlsf: free block missing from the lists", 0);
    return MK_OK;
}

static bool tlsf_holds(const mk__hdr *h, mk_off b) {
    unsigned fl, sl;
    mapping(mk__bspan(h, b), &fl, &sl);
    if (fl >= FL_COUNT) return false;
    mk_off prev = mk__get(h, b + MK__LINK1);
    if (!prev) return st(h)->head[fl][sl] == b;
    return mk__link_ok(h, prev) && mk__get(h, prev + MK__LINK0) == b;
}

const mk__policy_ops mk__policy_tlsf = {
    .name = "tlsf",
    .min_span = 32,
    .state_size = sizeof(tlsf_state),
    .coalesces = true,
    .init = tlsf_init,
    .find = tlsf_find,
    .insert = tlsf_insert,
    .remove = tlsf_remove,
    .alloc = mk__bt_alloc,
    .release = mk__bt_release,
    .resize = mk__bt_resize,
    .grow = mk__bt_grow,
    .check = tlsf_check,
    .holds = tlsf_holds,
};
