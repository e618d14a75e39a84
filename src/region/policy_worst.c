/*
 * Worst fit: the free blocks in one address-ordered treap whose nodes hold
 * their subtree's largest span; the root's is the largest of all, and the
 * descent to the lowest-addressed block of that span is O(log n) expected.
 * (An address order rather than a size order keeps the tree code shared
 * with first and next fit and makes ties deterministic.)
 */
#include <assert.h>

#include "tree.h"

typedef struct mk__worst_state {
    mk_off root; /* address-ordered treap of every free block */
} mk__worst_state;
static_assert(sizeof(mk__worst_state) == 8, "worst-fit state layout is part of the format");

static mk__worst_state *st(const mk__hdr *h) { return (mk__worst_state *)mk__state(h); }

static void worst_init(mk__hdr *h) {
    if (st(h)->root) mk__set(h, &st(h)->root, 0);
}

static mk_off worst_find(mk__hdr *h, uint64_t span) {
    mk_off root = st(h)->root;
    /* The root's subtree max is the largest span: reject in O(1). */
    if (!root) return 0;
    if (!mk__link_ok(h, root)) return MK__TREE_DAMAGED;
    if (mk__get(h, root + MK__LINK2) < span) return 0;
    return mk__tree_largest(h, root);
}

static int worst_insert(mk__hdr *h, mk_off b) {
    return mk__tree_insert(h, &st(h)->root, MK__TREE_BY_ADDR, b);
}

static int worst_remove(mk__hdr *h, mk_off b) {
    return mk__tree_remove(h, &st(h)->root, MK__TREE_BY_ADDR, b);
}

static int worst_check(const mk__hdr *h, mk__vstate *v) {
    uint64_t n;
    int rc = mk__tree_check(h, st(h)->root, MK__TREE_BY_ADDR, 0, v, &n);
    if (rc != MK_OK) return rc;
    if (n != v->free_blocks) return mk__vfail(v, "worst fit: tree holds every free block", 0);
    return MK_OK;
}

static bool worst_holds(const mk__hdr *h, mk_off b) {
    return mk__tree_contains(h, st(h)->root, MK__TREE_BY_ADDR, b);
}

const mk__policy_ops mk__policy_worst_fit = {
    .name = "worst",
    .min_span = 48, /* header, three tree words, footer */
    .state_size = sizeof(mk__worst_state),
    .coalesces = true,
    .init = worst_init,
    .find = worst_find,
    .insert = worst_insert,
    .remove = worst_remove,
    .alloc = mk__bt_alloc,
    .release = mk__bt_release,
    .resize = mk__bt_resize,
    .grow = mk__bt_grow,
    .check = worst_check,
    .holds = worst_holds,
};
