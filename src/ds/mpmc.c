/*
 * Bounded MPMC queue: Dmitry Vyukov's array of sequence-numbered cells.
 *
 *   line 0  common header
 *   line 1  enqueue position (producers CAS it to claim a cell)
 *   line 2  dequeue position (consumers CAS it)
 *   line 3  event counts "not empty", "not full"
 *   cells   capacity * stride: {seq, hole, element}
 *
 * Cell i starts with seq = i. A producer at position p finds seq == p: it
 * claims p (CAS enqueue p -> p+1), copies, then stores seq = p + 1. A
 * consumer at p finds seq == p + 1: it claims p on the dequeue position,
 * copies out, then stores seq = p + capacity, which is what the producer of
 * position p + capacity waits for. seq < expected means the queue is full
 * (producer) or empty (consumer) at that cell.
 *
 * hole: set by mk_mpmc_repair() in a cell whose producer died after the
 * claim; the consumer that claims it skips it.
 */
#include <stdlib.h>
#include <string.h>

#include "ds/ds_int.h"
#include "os/os.h"

typedef struct mpmc_shared {
    _Alignas(MK__DS_LINE) mk__ds_hdr hdr;
    _Alignas(MK__DS_LINE) _Atomic uint64_t enq;
    _Alignas(MK__DS_LINE) _Atomic uint64_t deq;
    _Alignas(MK__DS_LINE) mk__ds_event not_empty;
    mk__ds_event not_full;
} mpmc_shared;

typedef struct cell {
    _Atomic uint64_t seq;
    uint64_t hole;
    /* element follows */
} cell;

struct mk_mpmc {
    mpmc_shared *sh;
    unsigned char *cells;
    uint64_t mask;
    size_t cap;
    size_t elem;
    size_t stride;
    bool shared;
};

static size_t stride_of(size_t elem) { return mk__ds_round(sizeof(cell) + elem, 8); }

static size_t mpmc_footprint(size_t cap, size_t elem) {
    size_t stride = stride_of(elem), total;
    if (cap > SIZE_MAX / stride) return 0;
    return mk__ds_add(sizeof(mpmc_shared), cap * stride, &total) ? total : 0;
}

static void mpmc_init(mk__ds_hdr *h, const void *arg) {
    (void)arg;
    unsigned char *cells = (unsigned char *)h + sizeof(mpmc_shared);
    size_t stride = stride_of((size_t)h->elem_size);
    for (uint64_t i = 0; i < h->capacity; i++)
        atomic_store_explicit(&((cell *)(cells + i * stride))->seq, i, memory_order_relaxed);
}

static const mk__ds_kind mpmc_kind = {.type = MK_IPC_TYPE_MPMC,
                                      .ctl_size = sizeof(mpmc_shared),
                                      .pow2 = true,
                                      .min_capacity = 2,
                                      .max_capacity = MK_IPC_CAPACITY_MAX,
                                      .footprint = mpmc_footprint,
                                      .init = mpmc_init};

static inline cell *cell_at(const mk_mpmc *q, uint64_t pos) {
    return (cell *)(q->cells + (size_t)(pos & q->mask) * q->stride);
}

static int make(const mk__ds_req *req, mk_mpmc **out) {
    if (out == NULL) return MK_EINVAL;
    mk__ds_place pl;
    int rc = mk__ds_make(&mpmc_kind, req, &pl);
    if (rc != MK_OK) return rc;
    mk_mpmc *q = malloc(sizeof *q);
    if (q == NULL) return MK_ENOMEM;
    q->sh = (mpmc_shared *)pl.hdr;
    q->cells = (unsigned char *)pl.hdr + sizeof(mpmc_shared);
    q->cap = (size_t)pl.hdr->capacity;
    q->mask = pl.hdr->capacity - 1;
    q->elem = (size_t)pl.hdr->elem_size;
    q->stride = stride_of(q->elem);
    q->shared = pl.shared;
    *out = q;
    return MK_OK;
}

size_t mk_mpmc_footprint(size_t capacity, size_t elem_size) {
    return mk__ds_footprint(&mpmc_kind, capacity, elem_size);
}

int mk_mpmc_create(mk_shm *s, const char *name, size_t capacity, size_t elem_size, unsigned flags,
                   mk_mpmc **out) {
    return make(MK__DS_CREATE_REQ(s, name, capacity, elem_size, flags, NULL), out);
}

int mk_mpmc_open(mk_shm *s, const char *name, size_t elem_size, mk_mpmc **out) {
    return make(MK__DS_OPEN_REQ(s, name, elem_size), out);
}

int mk_mpmc_init(void *buf, size_t size, size_t capacity, size_t elem_size, mk_mpmc **out) {
    return make(MK__DS_INIT_REQ(buf, size, capacity, elem_size, NULL), out);
}

int mk_mpmc_attach(void *buf, size_t size, size_t elem_size, mk_mpmc **out) {
    return make(MK__DS_ATTACH_REQ(buf, size, elem_size), out);
}

void mk_mpmc_close(mk_mpmc *q) { free(q); }

int mk_mpmc_try_push(mk_mpmc *q, const void *elem) {
    uint64_t pos = atomic_load_explicit(&q->sh->enq, memory_order_relaxed);
    cell *c;
    for (;;) {
        c = cell_at(q, pos);
        uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        int64_t dif = (int64_t)(seq - pos);
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&q->sh->enq, &pos, pos + 1,
                                                      memory_order_relaxed, memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return MK_EFULL;
        } else {
            /* A peer claimed pos (and its CAS happens-before the seq we
             * read): enq has moved on. If it has not, the cell is ahead of
             * the counter: damage, which would make this loop forever. */
            uint64_t now = atomic_load_explicit(&q->sh->enq, memory_order_relaxed);
            if (now == pos) return MK_EFULL;
            pos = now;
        }
    }
    MK__DS_CRASH_POINT(MK__DS_CP_MPMC_PUSH_CLAIMED);
    c->hole = 0;
    mk__ds_copy((unsigned char *)(c + 1), elem, q->elem);
    atomic_store_explicit(&c->seq, pos + 1, memory_order_seq_cst);
    mk__ds_notify(&q->sh->not_empty, q->shared);
    return MK_OK;
}

/* Claim the next filled cell; MK_EEMPTY if there is none. */
static int claim_filled(mk_mpmc *q, cell **out, uint64_t *out_pos) {
    uint64_t pos = atomic_load_explicit(&q->sh->deq, memory_order_relaxed);
    for (;;) {
        cell *c = cell_at(q, pos);
        uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        int64_t dif = (int64_t)(seq - (pos + 1));
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&q->sh->deq, &pos, pos + 1,
                                                      memory_order_relaxed, memory_order_relaxed)) {
                *out = c;
                *out_pos = pos;
                return MK_OK;
            }
        } else if (dif < 0) {
            return MK_EEMPTY;
        } else {
            /* As in push: a cell ahead of an unmoved counter is damage. */
            uint64_t now = atomic_load_explicit(&q->sh->deq, memory_order_relaxed);
            if (now == pos) return MK_EEMPTY;
            pos = now;
        }
    }
}

int mk_mpmc_try_pop(mk_mpmc *q, void *out) {
    for (;;) {
        cell *c;
        uint64_t pos;
        int rc = claim_filled(q, &c, &pos);
        if (rc != MK_OK) return rc;
        MK__DS_CRASH_POINT(MK__DS_CP_MPMC_POP_CLAIMED);
        bool hole = c->hole != 0;
        if (!hole) mk__ds_copy(out, (unsigned char *)(c + 1), q->elem);
        atomic_store_explicit(&c->seq, pos + q->cap, memory_order_seq_cst);
        mk__ds_notify(&q->sh->not_full, q->shared);
        if (!hole) return MK_OK;
    }
}

/* Wait conditions: the cell at the current position is ready for the side. */
static bool not_empty(const void *arg) {
    const mk_mpmc *q = arg;
    uint64_t pos = atomic_load_explicit(&q->sh->deq, memory_order_seq_cst);
    return atomic_load_explicit(&cell_at(q, pos)->seq, memory_order_seq_cst) == pos + 1;
}

static bool not_full(const void *arg) {
    const mk_mpmc *q = arg;
    uint64_t pos = atomic_load_explicit(&q->sh->enq, memory_order_seq_cst);
    return atomic_load_explicit(&cell_at(q, pos)->seq, memory_order_seq_cst) == pos;
}

static int64_t time_left(int64_t timeout_ns, uint64_t start) {
    if (timeout_ns <= 0) return timeout_ns;
    int64_t left = timeout_ns - (int64_t)(mk__os_now_ns() - start);
    return left > 0 ? left : 0;
}

int mk_mpmc_push_wait(mk_mpmc *q, const void *elem, int64_t timeout_ns) {
    uint64_t start = timeout_ns > 0 ? mk__os_now_ns() : 0;
    for (;;) {
        int rc = mk_mpmc_try_push(q, elem);
        if (rc != MK_EFULL) return rc;
        int64_t left = time_left(timeout_ns, start);
        if (left == 0) return MK_ETIMEDOUT;
        rc = mk__ds_wait(&q->sh->not_full, q->shared, not_full, q, left);
        if (rc != MK_OK) return rc;
    }
}

int mk_mpmc_pop_wait(mk_mpmc *q, void *out, int64_t timeout_ns) {
    uint64_t start = timeout_ns > 0 ? mk__os_now_ns() : 0;
    for (;;) {
        int rc = mk_mpmc_try_pop(q, out);
        if (rc != MK_EEMPTY) return rc;
        int64_t left = time_left(timeout_ns, start);
        if (left == 0) return MK_ETIMEDOUT;
        rc = mk__ds_wait(&q->sh->not_empty, q->shared, not_empty, q, left);
        if (rc != MK_OK) return rc;
    }
}

size_t mk_mpmc_size(const mk_mpmc *q) {
    uint64_t d = atomic_load_explicit(&q->sh->deq, memory_order_acquire);
    uint64_t e = atomic_load_explicit(&q->sh->enq, memory_order_acquire);
    return e - d > q->cap ? (e < d ? 0 : q->cap) : (size_t)(e - d);
}

size_t mk_mpmc_capacity(const mk_mpmc *q) { return q->cap; }

int mk_mpmc_repair(mk_mpmc *q, size_t *repaired) {
    if (q == NULL) return MK_EINVAL;
    size_t n = 0;
    uint64_t d = atomic_load_explicit(&q->sh->deq, memory_order_acquire);
    uint64_t e = atomic_load_explicit(&q->sh->enq, memory_order_acquire);
    if (e - d > q->cap) return MK_ECORRUPT;
    /* Claimed by a producer, never published: make it a hole. */
    for (uint64_t p = d; p != e; p++) {
        cell *c = cell_at(q, p);
        if (atomic_load_explicit(&c->seq, memory_order_acquire) != p) continue;
        c->hole = 1;
        atomic_store_explicit(&c->seq, p + 1, memory_order_seq_cst);
        n++;
    }
    /* Claimed by a consumer, never released: give it back to producers. */
    for (uint64_t p = d >= q->cap ? d - q->cap : 0; p != d; p++) {
        cell *c = cell_at(q, p);
        if (atomic_load_explicit(&c->seq, memory_order_acquire) != p + 1) continue;
        atomic_store_explicit(&c->seq, p + q->cap, memory_order_seq_cst);
        n++;
    }
    if (n) {
        mk__ds_wake_slow(&q->sh->not_empty, q->shared);
        mk__ds_wake_slow(&q->sh->not_full, q->shared);
    }
    if (repaired) *repaired = n;
    return MK_OK;
}
