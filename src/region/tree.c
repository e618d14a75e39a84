/*
 * Treap of free blocks, links inside the blocks (see tree.h for the layout
 * and invariants).
 *
 * Insert is top-down: walk down while the nodes outrank b (raising their
 * subtree max to b's span on the way, the only change those ancestors see),
 * then split the subtree found there around b's key and hang the two halves
 * under b. Remove walks down to b and zips b's two subtrees together in
 * its place. Both are iterative. Subtree maxima (address order) are kept
 * top-down where they can only grow (insert's ancestors, the zip) and
 * recomputed bottom-up where they can fall (the split, remove's ancestors),
 * from a stack of the visited nodes bounded by MK__TREE_MAX_DEPTH.
 */
#include "tree.h"

#define L0 MK__LINK0 /* left child */
#define L1 MK__LINK1 /* right child */
#define L2 MK__LINK2 /* subtree max span (address order) */

static inline mk_off left(const mk__hdr *h, mk_off x) { return mk__get(h, x + L0); }
static inline mk_off right(const mk__hdr *h, mk_off x) { return mk__get(h, x + L1); }
/* Subtree max of x, 0 for an empty subtree (address order only). */
static inline uint64_t smax(const mk__hdr *h, mk_off x) { return x ? mk__get(h, x + L2) : 0; }

/* Heap priority: the splitmix64 finalizer of b ^ secret. Each step is a
 * bijection of 64-bit words, so distinct blocks never tie. */
static inline uint64_t prio(const mk__hdr *h, mk_off b) {
    uint64_t x = b ^ h->secret;
    x ^= x >> 30;
    x *= UINT64_C(0xBF58476D1CE4E5B9);
    x ^= x >> 27;
    x *= UINT64_C(0x94D049BB133111EB);
    x ^= x >> 31;
    return x;
}

/* key(x) < key(k) where k = (kspan, kb); kspan is ignored by address. */
static inline bool key_lt(const mk__hdr *h, mk__tree_order ord, mk_off x, uint64_t kspan,
                          mk_off kb) {
    if (ord == MK__TREE_BY_ADDR) return x < kb;
    uint64_t s = mk__bspan(h, x);
    return s < kspan || (s == kspan && x < kb);
}

/* Write *p = v only when it changes: keeps the journal short. */
static inline void set_if(mk__hdr *h, uint64_t *p, uint64_t v) {
    if (*p != v) mk__set(h, p, v);
}

/* A link read from the region that cannot be followed: not 0 and not a
 * place whose link words lie inside the data. */
static inline bool bad_link(const mk__hdr *h, mk_off x) { return x && !mk__link_ok(h, x); }

/* A node insert or remove is about to write: a link that passes mk__link_ok
 * and whose header word says FREE (same cache line as its links), so that
 * a link to a live block is refused before its payload is written. */
static inline bool node_ok(const mk__hdr *h, mk_off x) {
    return mk__link_ok(h, x) && (mk__get(h, x) & MK__F_FREE);
}

/* Recompute x's subtree max from its span and its children's (which must be
 * right already). Returns whether it changed, or -1 on a bad child link. */
static int fix_max(mk__hdr *h, mk_off x) {
    mk_off lc = left(h, x), rc = right(h, x);
    if ((lc && !node_ok(h, lc)) || (rc && !node_ok(h, rc))) return -1;
    uint64_t m = mk__bspan(h, x);
    uint64_t l = smax(h, lc), r = smax(h, rc);
    if (l > m) m = l;
    if (r > m) m = r;
    uint64_t *p = mk__word(h, x + L2);
    if (*p == m) return 0;
    mk__set(h, p, m);
    return 1;
}

int mk__tree_insert(mk__hdr *h, uint64_t *root, mk__tree_order ord, mk_off b) {
    const bool by_addr = ord == MK__TREE_BY_ADDR;
    const uint64_t span = mk__bspan(h, b);
    const uint64_t pb = prio(h, b);

    /* Phase 1: the nodes that outrank b stay above it; b joins their
     * subtree, so their max can only rise to span. Meeting b itself means
     * the tree already links it: damage (a second link would make a cycle). */
    uint64_t *slot = root;
    mk_off x = *slot;
    for (unsigned depth = 0; x; depth++) {
        if (depth == MK__TREE_MAX_DEPTH || !node_ok(h, x) || x == b) return MK_ECORRUPT;
        if (prio(h, x) <= pb) break;
        if (by_addr && mk__get(h, x + L2) < span) mk__set_at(h, x + L2, span);
        slot = mk__word(h, x + (key_lt(h, ord, x, span, b) ? L1 : L0));
        x = *slot;
    }

    /* Phase 2: split the subtree at x around b's key. Keys below b form
     * b's left subtree: each such node hangs on the right link of the
     * previous one (ls), and symmetrically for the keys above (rs). The
     * split nodes lose part of their subtree, so their max is recomputed
     * afterwards, deepest first. */
    mk_off spine[MK__TREE_MAX_DEPTH];
    unsigned n = 0;
    uint64_t *ls = mk__word(h, b + L0), *rs = mk__word(h, b + L1);
    while (x) {
        if (n == MK__TREE_MAX_DEPTH || !node_ok(h, x) || x == b) return MK_ECORRUPT;
        spine[n++] = x;
        if (key_lt(h, ord, x, span, b)) {
            set_if(h, ls, x);
            ls = mk__word(h, x + L1);
            x = *ls;
        } else {
            set_if(h, rs, x);
            rs = mk__word(h, x + L0);
            x = *rs;
        }
    }
    set_if(h, ls, 0);
    set_if(h, rs, 0);
    if (by_addr) {
        while (n)
            if (fix_max(h, spine[--n]) < 0) return MK_ECORRUPT;
        uint64_t m = span, l = smax(h, left(h, b)), r = smax(h, right(h, b));
        if (l > m) m = l;
        if (r > m) m = r;
        set_if(h, mk__word(h, b + L2), m);
    }
    set_if(h, slot, b);
    return MK_OK;
}

int mk__tree_remove(mk__hdr *h, uint64_t *root, mk__tree_order ord, mk_off b) {
    const bool by_addr = ord == MK__TREE_BY_ADDR;
    const uint64_t span = mk__bspan(h, b);

    /* path[0, n): b's ancestors, root first. Read only: a remove that
     * cannot find b writes nothing. */
    mk_off path[MK__TREE_MAX_DEPTH];
    unsigned n = 0;
    uint64_t *slot = root;
    mk_off x = *slot;
    while (x && x != b) {
        if (n == MK__TREE_MAX_DEPTH || !node_ok(h, x)) return MK_ECORRUPT;
        path[n++] = x;
        slot = mk__word(h, x + (key_lt(h, ord, x, span, b) ? L1 : L0));
        x = *slot;
    }
    if (!x) return MK_ECORRUPT; /* b is free but not in the tree */

    /* Zip b's subtrees l and r into b's place: the higher-priority root
     * goes first; if it is l's, all of what is left of r goes below it, on
     * its right link (and symmetrically for r). A node is placed once, and
     * then its subtree is its own plus the other side's remaining one,
     * whose max word is still exact: so the new max is known top-down. */
    mk_off l = left(h, b), r = right(h, b);
    for (unsigned d = 0; l && r; d++) {
        if (d == 2 * MK__TREE_MAX_DEPTH || !node_ok(h, l) || !node_ok(h, r)) return MK_ECORRUPT;
        if (prio(h, l) > prio(h, r)) {
            set_if(h, slot, l);
            if (by_addr && mk__get(h, r + L2) > mk__get(h, l + L2))
                mk__set_at(h, l + L2, mk__get(h, r + L2));
            slot = mk__word(h, l + L1);
            l = *slot;
        } else {
            set_if(h, slot, r);
            if (by_addr && mk__get(h, l + L2) > mk__get(h, r + L2))
                mk__set_at(h, r + L2, mk__get(h, l + L2));
            slot = mk__word(h, r + L0);
            r = *slot;
        }
    }
    if ((l || r) && !node_ok(h, l ? l : r)) return MK_ECORRUPT;
    set_if(h, slot, l ? l : r);

    /* Ancestors lost b. Their max words grow towards the root, and only a
     * max equal to b's span can fall; recompute upwards until one stays
     * the same, since nothing above can change then. */
    if (by_addr) {
        while (n) {
            mk_off a = path[--n];
            if (mk__get(h, a + L2) > span) break;
            int changed = fix_max(h, a);
            if (changed < 0) return MK_ECORRUPT;
            if (!changed) break;
        }
    }
    return MK_OK;
}

mk_off mk__tree_first_fit(const mk__hdr *h, mk_off root, uint64_t span) {
    mk_off x = root;
    if (!x) return 0;
    if (!mk__link_ok(h, x)) return MK__TREE_DAMAGED;
    if (smax(h, x) < span) return 0;
    /* Invariant: x's subtree holds a fit; the lowest one is in the left
     * subtree if that holds any, else x, else in the right subtree. A
     * subtree that should hold a fit and is empty is damage. */
    for (unsigned d = 0; d < MK__TREE_MAX_DEPTH; d++) {
        mk_off l = left(h, x);
        if (bad_link(h, l)) return MK__TREE_DAMAGED;
        if (l && smax(h, l) >= span) {
            x = l;
        } else if (mk__bspan(h, x) >= span) {
            return x;
        } else {
            x = right(h, x);
            if (!x || !mk__link_ok(h, x)) return MK__TREE_DAMAGED;
        }
    }
    return MK__TREE_DAMAGED;
}

mk_off mk__tree_first_fit_from(const mk__hdr *h, mk_off root, uint64_t span, mk_off start) {
    /* The nodes >= start are, in address order, for each node x >= start on
     * the search path of start from the deepest up: x, then x's right
     * subtree. So the answer belongs to the deepest such x where x or its
     * right subtree fits. */
    mk_off x = root, cand = 0;
    for (unsigned d = 0; x; d++) {
        if (d == MK__TREE_MAX_DEPTH || !mk__link_ok(h, x)) return MK__TREE_DAMAGED;
        if (smax(h, x) < span) break; /* nothing below fits */
        if (x < start) {
            x = right(h, x);
        } else {
            mk_off r = right(h, x);
            if (bad_link(h, r)) return MK__TREE_DAMAGED;
            if (mk__bspan(h, x) >= span || smax(h, r) >= span) cand = x;
            x = left(h, x);
        }
    }
    if (!cand || mk__bspan(h, cand) >= span) return cand;
    return mk__tree_first_fit(h, right(h, cand), span);
}

mk_off mk__tree_largest(const mk__hdr *h, mk_off root) {
    if (!root) return 0;
    if (!mk__link_ok(h, root)) return MK__TREE_DAMAGED;
    const uint64_t m = smax(h, root);
    mk_off x = root;
    /* Invariant: x's subtree holds a block of span m; prefer the left. */
    for (unsigned d = 0; d < MK__TREE_MAX_DEPTH; d++) {
        mk_off l = left(h, x);
        if (bad_link(h, l)) return MK__TREE_DAMAGED;
        if (l && smax(h, l) == m) {
            x = l;
        } else if (mk__bspan(h, x) == m) {
            return x;
        } else {
            x = right(h, x);
            if (!x || !mk__link_ok(h, x)) return MK__TREE_DAMAGED;
        }
    }
    return MK__TREE_DAMAGED;
}

mk_off mk__tree_lower_bound(const mk__hdr *h, mk_off root, uint64_t span, mk_off b) {
    mk_off x = root, res = 0;
    for (unsigned d = 0; x; d++) {
        if (d == MK__TREE_MAX_DEPTH || !mk__link_ok(h, x)) return MK__TREE_DAMAGED;
        if (key_lt(h, MK__TREE_BY_SIZE, x, span, b)) {
            x = right(h, x);
        } else {
            res = x;
            x = left(h, x);
        }
    }
    return res;
}

bool mk__tree_contains(const mk__hdr *h, mk_off root, mk__tree_order ord, mk_off b) {
    const uint64_t span = mk__bspan(h, b);
    mk_off x = root;
    for (unsigned d = 0; x && d < MK__TREE_MAX_DEPTH; d++) {
        if (x == b) return true;
        if (!mk__valid_free_block(h, x)) return false;
        x = key_lt(h, ord, x, span, b) ? right(h, x) : left(h, x);
    }
    return false;
}

/* A node reached through a link: a free block, large enough, and (below
 * the root) ranked under its parent. Checked before any of its links is
 * read, so the checker never reads outside the data. */
static int check_node(const mk__hdr *h, mk_off x, mk_off parent, uint64_t min_span, mk__vstate *v) {
    if (!mk__valid_free_block(h, x)) return mk__vfail(v, "tree node is a valid free block", x);
    if (mk__bspan(h, x) < min_span) return mk__vfail(v, "tree node span at least the minimum", x);
    if (parent && prio(h, x) >= prio(h, parent)) return mk__vfail(v, "tree heap order", x);
    return MK_OK;
}

int mk__tree_check(const mk__hdr *h, mk_off root, mk__tree_order ord, uint64_t min_span,
                   mk__vstate *v, uint64_t *count) {
    /* In-order walk with an explicit stack. Heap order is checked before a
     * child is entered, so priorities strictly fall along every path and
     * no path can loop; a shared subtree is caught by the node count. */
    mk_off stack[MK__TREE_MAX_DEPTH];
    unsigned sp = 0;
    uint64_t n = 0;
    mk_off prev = 0, x = root;
    int rc;
    *count = 0;
    if (x && (rc = check_node(h, x, 0, min_span, v)) != MK_OK) return rc;
    while (x || sp) {
        while (x) {
            if (sp == MK__TREE_MAX_DEPTH) return mk__vfail(v, "tree depth", x);
            stack[sp++] = x;
            mk_off l = left(h, x);
            if (l && (rc = check_node(h, l, x, min_span, v)) != MK_OK) return rc;
            x = l;
        }
        x = stack[--sp];
        if (++n > v->free_blocks) return mk__vfail(v, "tree holds more nodes than free blocks", x);
        if (prev && !key_lt(h, ord, prev, mk__bspan(h, x), x))
            return mk__vfail(v, "tree key order", x);
        mk_off r = right(h, x);
        if (r && (rc = check_node(h, r, x, min_span, v)) != MK_OK) return rc;
        if (ord == MK__TREE_BY_ADDR) {
            uint64_t m = mk__bspan(h, x), lm = smax(h, left(h, x)), rm = smax(h, r);
            if (lm > m) m = lm;
            if (rm > m) m = rm;
            if (mk__get(h, x + L2) != m) return mk__vfail(v, "tree subtree max", x + L2);
        }
        prev = x;
        x = r;
    }
    *count = n;
    return MK_OK;
}
