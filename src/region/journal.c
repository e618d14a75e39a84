/*
 * The undo journal. With MK_REGION_JOURNAL, every metadata write first logs
 * the word's old value; mk__journal_end() commits by emptying the log. A
 * crash (a process killed inside an operation) leaves a non-empty log, and
 * mk_region_recover() writes the old values back in reverse order, which
 * returns the region to its state before the operation.
 *
 * Crash safety without fences to memory: the processes that may see a
 * half-done operation share the same cache-coherent memory, so program
 * order is all that matters; atomic_signal_fence keeps the compiler from
 * moving the data write before its log record or the record before the
 * count that makes it valid. Replaying twice is harmless (undo is
 * idempotent), so a crash during recovery is recovered again.
 */
#include "region_int.h"

#ifdef MK_TEST_HOOKS
void (*mk__test_crash_hook)(uint64_t step);
uint64_t mk__test_crash_step;
#endif

static mk__journal *journal_of(const mk__hdr *h) {
    return (mk__journal *)(void *)mk__word(h, h->journal_off);
}

void mk__journal_log(mk__hdr *h, const uint64_t *p) {
    mk__journal *j = journal_of(h);
    uint64_t n = j->count;
    if (n >= j->cap) {
        j->overflow = 1; /* recovery will refuse: better than a silent half undo */
        return;
    }
    j->rec[n].off = mk__offset_of(h, p);
    j->rec[n].old = *p;
    atomic_signal_fence(memory_order_seq_cst);
    j->count = n + 1;
}

void mk__journal_begin_slow(mk__hdr *h, uint64_t op, uint64_t a0, uint64_t a1, uint64_t a2) {
    mk__journal *j = journal_of(h);
    j->args[0] = a0;
    j->args[1] = a1;
    j->args[2] = a2;
    j->count = 0;
    j->overflow = 0;
    atomic_signal_fence(memory_order_seq_cst);
    j->op = op;
    atomic_signal_fence(memory_order_seq_cst);
}

void mk__journal_end_slow(mk__hdr *h) {
    mk__journal *j = journal_of(h);
    atomic_signal_fence(memory_order_seq_cst);
    j->count = 0; /* the commit point */
    atomic_signal_fence(memory_order_seq_cst);
    j->op = MK__OP_NONE;
}

/* The words an operation may write: the header's size, data_end, counters
 * and user words, the policy state and the blocks. Never the identity
 * fields or the journal itself, whatever a damaged journal says. */
static bool undo_target_ok(const mk__hdr *h, mk_off off) {
    if (off % 8 != 0) return false;
    if (off == offsetof(mk__hdr, data_end)) return true;
    if (off >= offsetof(mk__hdr, c) && off < offsetof(mk__hdr, lock)) return true;
    const mk__policy_ops *ops = mk__ops(h);
    if (h->quick_off && off >= h->quick_off && off < h->quick_off + sizeof(mk__quick)) return true;
    if (off >= h->state_off && off < h->state_off + ops->state_size) return true;
    return off >= h->data_start && off + 8 <= h->size;
}

int mk_region_recover(mk_region *r, int *rolled_back) {
    if (rolled_back) *rolled_back = 0;
    if (!r) return MK_EINVAL;
    mk__hdr *h = mk__h(r);
    if (!h->journal_off) return MK_ENOTSUP;
    mk__journal *j = journal_of(h);
    if (j->op == MK__OP_NONE && j->count == 0) return MK_OK;
    if (j->overflow || j->count > j->cap) return MK_ENOTRECOVERABLE;
    for (uint64_t i = j->count; i-- > 0;) {
        mk_off off = j->rec[i].off;
        if (!undo_target_ok(h, off)) return MK_ENOTRECOVERABLE;
        *mk__word(h, off) = j->rec[i].old;
    }
    atomic_signal_fence(memory_order_seq_cst);
    j->count = 0;
    j->op = MK__OP_NONE;
    if (rolled_back) *rolled_back = 1;
    return MK_OK;
}
