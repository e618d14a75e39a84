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

void mk__journal_begin_slow(mk__hdr *h, uint64_t op, uint64_t a0, uint64_t a1, uint64_t a2) {
    mk__journal *j = mk__journal_of(h);
    if (!j) return;
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
    mk__journal *j = mk__journal_of(h);
    if (!j) return;
    atomic_signal_fence(memory_order_seq_cst);
    j->count = 0; /* the commit point */
    atomic_signal_fence(memory_order_seq_cst);
    j->op = MK__OP_NONE;
}

/* The words an operation may write: the header's data_end, counters and
 * user words, the policy state, the quick lists and the blocks. Never the
 * identity fields or the journal itself, whatever a damaged journal says. */
static bool undo_target_ok(const mk__hdr *h, mk_off off) {
    if (off % 8 != 0) return false;
    if (off == offsetof(mk__hdr, data_end)) return true;
    if (off >= offsetof(mk__hdr, c) && off < offsetof(mk__hdr, lock)) return true;
    const mk__policy_ops *ops = mk__ops(h);
    if (h->quick_off && h->quick_off == mk__quick_off_for(h) && off >= h->quick_off &&
        off < h->quick_off + sizeof(mk__quick))
        return true;
    if (off >= MK__STATE_OFF && off < MK__STATE_OFF + ops->state_size) return true;
    return off >= h->data_start && h->size >= 8 && off <= h->size - 8;
}

/* A value recovery may write back: data_end must stay a sentinel offset
 * inside size (the other words are data or counters). */
static bool undo_value_ok(const mk__hdr *h, mk_off off, uint64_t old) {
    if (off != offsetof(mk__hdr, data_end)) return true;
    return old % MK__GRAIN == 8 && old > h->data_start && old < h->size && h->size - old >= 8;
}

/* Write back records [0, count) newest first. MK_ENOTRECOVERABLE, with
 * nothing written, when the log cannot be trusted (overflowed, too long,
 * a record outside what an operation writes). */
static int undo_records(mk__hdr *h, mk__journal *j) {
    uint64_t count = j->count;
    if (j->overflow || count > MK__JOURNAL_CAP) return MK_ENOTRECOVERABLE;
    if (h->policy >= MK_POLICY_COUNT || h->data_start <= MK__STATE_OFF) return MK_ENOTRECOVERABLE;
    for (uint64_t i = 0; i < count; i++)
        if (!undo_target_ok(h, j->rec[i].off) || !undo_value_ok(h, j->rec[i].off, j->rec[i].old))
            return MK_ENOTRECOVERABLE;
    for (uint64_t i = count; i-- > 0;) *mk__word(h, j->rec[i].off) = j->rec[i].old;
    atomic_signal_fence(memory_order_seq_cst);
    j->count = 0;
    return MK_OK;
}

void mk__journal_undo(mk__hdr *h) {
    if (!h->journal_off) return;
    mk__journal *j = mk__journal_of(h);
    if (j) (void)undo_records(h, j);
}

int mk_region_recover(mk_region *r, int *rolled_back) {
    if (rolled_back) *rolled_back = 0;
    if (!r) return MK_EINVAL;
    mk__hdr *h = mk__h(r);
    if (!h->journal_off) return MK_ENOTSUP;
    mk__journal *j = mk__journal_of(h);
    if (!j) return MK_ENOTRECOVERABLE;
    if (j->op == MK__OP_NONE && j->count == 0) return MK_OK;
    int rc = undo_records(h, j);
    if (rc != MK_OK) return rc;
    j->op = MK__OP_NONE;
    if (rolled_back) *rolled_back = 1;
    return MK_OK;
}
