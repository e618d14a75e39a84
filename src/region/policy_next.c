/*
 * Next fit: first fit that starts where the previous search ended. The free
 * blocks are in an address-ordered treap (as for first fit) and the state
 * keeps a rover: an address, not a block reference. find returns the
 * lowest-addressed fit at or after the rover, else wraps to the lowest fit
 * overall, and moves the rover to the block it returns (the engine
 * allocates at its start, so the next search begins with what is left of
 * it). Both searches are O(log n) expected, where the classic roving list
 * walks blocks one by one.
 *
 * Invariant: rover == 0 or data_start <= rover <= data_end. The rover may
 * point at a used block or inside a free one: it is only a lower bound for
 * the search. When a freed block merges over the rover, insert moves the
 * rover back to the merged block's start, as Knuth's roving pointer does,
 * so the merged space is found first rather than after a full wrap.
 */
#include <assert.h>

#include "tree.h"

typedef struct mk__next_state {
    mk_off root;  /* address-ordered treap of every free block */
    mk_off rover; /* where the next search starts; 0 = from the lowest */
} mk__next_state;
static_assert(sizeof(mk__next_state) == 16, "next-fit state layout is part of the format");

static mk__next_state *st(const mk__hdr *h) { return (mk__next_state *)mk__state(h); }

static void next_init(mk__hdr *h) {
    mk__next_state *s = st(h);
    if (s->root) mk__set(h, &s->root, 0);
    if (s->rover) mk__set(h, &s->rover, 0);
}

static mk_off next_find(mk__hdr *h, uint64_t span) {
    mk__next_state *s = st(h);
    mk_off b = mk__tree_first_fit_from(h, s->root, span, s->rover);
    if (!b) b = mk__tree_first_fit(h, s->root, span); /* wrap around */
    /* Only a block the engine will accept becomes the rover. */
    if (b && b != s->rover && mk__plausible_free(h, b)) mk__set(h, &s->rover, b);
    return b;
}

static int next_insert(mk__hdr *h, mk_off b) {
    mk__next_state *s = st(h);
    int rc = mk__tree_insert(h, &s->root, MK__TREE_BY_ADDR, b);
    if (rc == MK_OK && b < s->rover && s->rover < b + mk__bspan(h, b)) mk__set(h, &s->rover, b);
    return rc;
}

static int next_remove(mk__hdr *h, mk_off b) {
    return mk__tree_remove(h, &st(h)->root, MK__TREE_BY_ADDR, b);
}

static int next_check(const mk__hdr *h, mk__vstate *v) {
    const mk__next_state *s = st(h);
    if (s->rover && (s->rover < h->data_start || s->rover > h->data_end))
        return mk__vfail(v, "next fit: rover inside the data", h->state_off + 8);
    uint64_t n;
    int rc = mk__tree_check(h, s->root, MK__TREE_BY_ADDR, 0, v, &n);
    if (rc != MK_OK) return rc;
    if (n != v->free_blocks) return mk__vfail(v, "next fit: tree holds every free block", 0);
    return MK_OK;
}

static bool next_holds(const mk__hdr *h, mk_off b) {
    return mk__tree_contains(h, st(h)->root, MK__TREE_BY_ADDR, b);
}

const mk__policy_ops mk__policy_next_fit = {
    .name = "next",
    .min_span = 48, /* header, three tree words, footer */
    .state_size = sizeof(mk__next_state),
    .coalesces = true,
    .init = next_init,
    .find = next_find,
    .insert = next_insert,
    .remove = next_remove,
    .alloc = mk__bt_alloc,
    .release = mk__bt_release,
    .resize = mk__bt_resize,
    .grow = mk__bt_grow,
    .check = next_check,
    .holds = next_holds,
};
