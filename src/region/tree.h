/*
 * A treap of free blocks stored inside the free blocks themselves, for the
 * fit policies first, next, worst (ordered by address) and best (ordered by
 * (span, address), for the spans too large for its exact bins).
 *
 * Node layout, in the payload of free block b (offsets, 0 = none):
 *   b + MK__LINK0   left child
 *   b + MK__LINK1   right child
 *   b + MK__LINK2   largest span in b's subtree (address order only; the
 *                   size order needs no such field: its largest span is its
 *                   rightmost node, so a size-ordered node needs only 32
 *                   bytes: header, two links, footer)
 *
 * Invariants (all checked by mk__tree_check):
 *   - keys in in-order are strictly increasing (BST order); a key is b
 *     (MK__TREE_BY_ADDR) or (span(b), b) (MK__TREE_BY_SIZE), so keys are
 *     distinct;
 *   - every child's priority is below its parent's (heap order). The
 *     priority is a bijective hash of b keyed by the region's secret: it
 *     costs no storage, is the same in every process that maps the region,
 *     distinct for distinct blocks, and cannot be steered by a caller who
 *     picks sizes. The tree therefore has the shape of a random BST:
 *     expected depth about 2 ln n, height about 4.3 ln n (about 110 for the
 *     2^38 free blocks a 48-bit region can hold at most), and deeper than
 *     MK__TREE_MAX_DEPTH only with negligible probability (below 2^-100);
 *   - by address: the LINK2 word of each node is max(span(b), LINK2 of its
 *     children);
 *   - every node is a well-formed free block (mk__valid_free_block).
 *
 * Contract with the engine: a block's span is part of its key (by size) and
 * of its ancestors' LINK2 words (by address), so a block's header must not
 * change while it is in a tree: remove it, rewrite it, insert it again.
 * mk__tree_remove reads b's header (its key by size; by address, to see
 * whether b held its ancestors' max), so call it before rewriting b.
 *
 * Writes go through mk__set and only to words whose value changes, so the
 * undo journal of an insert or remove stays at O(log n) expected records
 * (typically a handful). Nothing recurses: paths that must be revisited
 * bottom-up are kept on a bounded stack; a path longer than
 * MK__TREE_MAX_DEPTH (only in a damaged tree) stops the operation, and
 * validation then reports the damage.
 */
#ifndef MK_REGION_TREE_H
#define MK_REGION_TREE_H

#include "region_int.h"

/* Bound on any root-to-leaf path walked; see the probability above. */
#define MK__TREE_MAX_DEPTH 256u

typedef enum mk__tree_order {
    MK__TREE_BY_ADDR = 0, /* key b; keeps subtree max spans at LINK2 */
    MK__TREE_BY_SIZE = 1, /* key (span(b), b); uses LINK0 and LINK1 only */
} mk__tree_order;

/* Damage found by a search (see MK__BAD_LINK). */
#define MK__TREE_DAMAGED MK__BAD_LINK

/* Every link is checked with mk__link_ok before it is read or written
 * through, and every path is bounded by MK__TREE_MAX_DEPTH, so a damaged
 * or cyclic tree ends an operation with MK_ECORRUPT (insert, remove) or
 * MK__TREE_DAMAGED (the searches), never a stray access or a hang. */

/* Insert free block b (header and footer written; not in the tree).
 * *root is a word of region memory (the policy's state). O(log n) expected.
 * MK_OK or MK_ECORRUPT. */
int mk__tree_insert(mk__hdr *h, uint64_t *root, mk__tree_order ord, mk_off b);

/* Remove block b, which is in the tree. O(log n) expected. MK_OK, or
 * MK_ECORRUPT (also when b is not found). */
int mk__tree_remove(mk__hdr *h, uint64_t *root, mk__tree_order ord, mk_off b);

/* The searches return a block, 0 for none, or MK__TREE_DAMAGED. */

/* By address: the lowest-addressed block with span >= span, or 0. */
mk_off mk__tree_first_fit(const mk__hdr *h, mk_off root, uint64_t span);

/* By address: the lowest-addressed block at an address >= start with
 * span >= span, or 0. */
mk_off mk__tree_first_fit_from(const mk__hdr *h, mk_off root, uint64_t span, mk_off start);

/* By address: the block of largest span (lowest address among equals), or 0. */
mk_off mk__tree_largest(const mk__hdr *h, mk_off root);

/* By size: the first block whose key (span(x), x) >= (span, b), or 0.
 * With b = 0: the smallest block with span >= span (lowest address among
 * equal spans): exact best fit. */
mk_off mk__tree_lower_bound(const mk__hdr *h, mk_off root, uint64_t span, mk_off b);

/* Whether free block b is in the tree. Safe on a damaged tree: each node is
 * checked with mk__valid_free_block before its links are read, and the
 * search is bounded, so validation can call it. */
bool mk__tree_contains(const mk__hdr *h, mk_off root, mk__tree_order ord, mk_off b);

/* Check every invariant above; every node must also have span >= min_span
 * (best fit: the tree holds only spans too large for its bins). At most
 * v->free_blocks nodes are visited, so a cycle or shared subtree ends in a
 * fault. On success *count is the number of nodes.
 * Returns MK_OK or MK_ECORRUPT (through mk__vfail). */
int mk__tree_check(const mk__hdr *h, mk_off root, mk__tree_order ord, uint64_t min_span,
                   mk__vstate *v, uint64_t *count);

#endif
