/*
 * First fit: the free blocks in one treap ordered by address, each node
 * holding the largest span of its subtree, so "the lowest address that
 * fits" is one descent: O(log n) expected for find, insert and remove,
 * instead of the linear scan of a classic address-ordered list.
 */
#include <assert.h>

#include "tree.h"

typedef struct mk__first_state {
    mk_off root; /* address-ordered treap of every free block */
} mk__first_state;
static_assert(sizeof(mk__first_state) == 8, "first-fit state layout is part of the format");

static mk__first_state *st(const mk__hdr *h) { return (mk__first_state *)mk__state(h); }

static void first_init(mk__hdr *h) {
    if (st(h)->root) mk__set(h, &st(h)->root, 0);
}

static mk_off first_find(mk__hdr *h, uint64_t span) {
    return mk__tree_first_fit(h, st(h)->root, span);
}

static int first_insert(mk__hdr *h, mk_off b) {
    return mk__tree_insert(h, &st(h)->root, MK__TREE_BY_ADDR, b);
}

static int first_remove(mk__hdr *h, mk_off b) {
    return mk__tree_remove(h, &st(h)->root, MK__TREE_BY_ADDR, b);
}

static int first_check(const mk__hdr *h, mk__vstate *v) {
    uint64_t n;
    int rc = mk__tree_check(h, st(h)->root, MK__TREE_BY_ADDR, 0, v, &n);
    if (rc != MK_OK) return rc;
    if (n != v->free_blocks) return mk__vfail(v, "first fit: tree holds every free block", 0);
    return MK_OK;
}

static bool first_holds(const mk__hdr *h, mk_off b) {
    return mk__tree_contains(h, st(h)->root, MK__TREE_BY_ADDR, b);
}

const mk__policy_ops mk__policy_first_fit = {
    .name = "first",
    .min_span = 48, /* header, three tree words, footer */
    .state_size = sizeof(mk__first_state),
    .coalesces = true,
    .init = first_init,
    .find = first_find,
    .insert = first_insert,
    .remove = first_remove,
    .alloc = mk__bt_alloc,
    .release = mk__bt_release,
    .resize = mk__bt_resize,
    .grow = mk__bt_grow,
    .check = first_check,
    .holds = first_holds,
};
