/*
 * Object pool: fixed-size slots, handed out by index, lock-free.
 *
 *   line 0  common header
 *   line 1  top of the free stack: {tag:32, index+1:32} (0 in the low half:
 *           empty); every successful CAS adds 1 to the tag, so a CAS that
 *           read the top before another process popped it and pushed it
 *           back (ABA) fails instead of linking a stale next
 *   meta    one {next index+1, owner} record per slot, 16 bytes
 *   slots   slots * stride bytes, from a line boundary (stride: slot size
 *           rounded up to 16)
 *
 * The links live in the meta table, not in the slots, so user data never
 * overwrites them and a next read from shared memory is checked (<= slots)
 * before it is used. owner is 0 for a free slot, else the acquirer's
 * {pid, start time}: release refuses a free slot (MK_EDOUBLEFREE) with one
 * exchange, and reclaim finds the slots of dead processes.
 */
#include <stdlib.h>
#include <string.h>

#include "ds/ds_int.h"

typedef struct pool_shared {
    _Alignas(MK__DS_LINE) mk__ds_hdr hdr;
    _Alignas(MK__DS_LINE) _Atomic uint64_t top;
} pool_shared;

typedef struct slot_meta {
    _Atomic uint32_t next; /* index+1 of the next free slot, 0: end */
    uint32_t pad;
    _Atomic uint64_t owner;
} slot_meta;

struct mk_objpool {
    pool_shared *sh;
    slot_meta *meta;
    unsigned char *slots;
    uint32_t n;
    size_t stride;
    uint64_t self; /* this process as an owner */
};

static size_t stride_of(size_t size) { return mk__ds_round(size, 16); }

static size_t meta_bytes(size_t n) { return mk__ds_round(n * sizeof(slot_meta), MK__DS_LINE); }

static size_t pool_footprint(size_t n, size_t size) {
    size_t stride = stride_of(size), total;
    if (n > SIZE_MAX / stride / 2) return 0;
    if (!mk__ds_add(sizeof(pool_shared) + meta_bytes(n), n * stride, &total)) return 0;
    return total;
}

static uint64_t top_word(uint64_t tag, uint32_t idx1) { return tag << 32 | idx1; }

static void pool_init(mk__ds_hdr *h, const void *arg) {
    (void)arg;
    pool_shared *sh = (pool_shared *)h;
    slot_meta *meta = (slot_meta *)(sh + 1);
    uint32_t n = (uint32_t)h->capacity;
    for (uint32_t i = 0; i < n; i++)
        atomic_store_explicit(&meta[i].next, i + 1 < n ? i + 2 : 0, memory_order_relaxed);
    atomic_store_explicit(&sh->top, top_word(0, 1), memory_order_relaxed);
}

static const mk__ds_kind pool_kind = {.type = MK_IPC_TYPE_OBJPOOL,
                                      .ctl_size = sizeof(pool_shared),
                                      .pow2 = false,
                                      .min_capacity = 1,
                                      .max_capacity = MK_IPC_CAPACITY_MAX - 1,
                                      .footprint = pool_footprint,
                                      .init = pool_init};

static int make(const mk__ds_req *req, mk_objpool **out) {
    if (out == NULL) return MK_EINVAL;
    mk__ds_place pl;
    int rc = mk__ds_make(&pool_kind, req, &pl);
    if (rc != MK_OK) return rc;
    mk_objpool *p = malloc(sizeof *p);
    if (p == NULL) return MK_ENOMEM;
    p->sh = (pool_shared *)pl.hdr;
    p->meta = (slot_meta *)(p->sh + 1);
    p->n = (uint32_t)pl.hdr->capacity;
    p->slots = (unsigned char *)p->meta + meta_bytes(p->n);
    p->stride = stride_of((size_t)pl.hdr->elem_size);
    p->self = mk__ds_owner_self();
    *out = p;
    return MK_OK;
}

size_t mk_objpool_footprint(size_t slots, size_t slot_size) {
    return mk__ds_footprint(&pool_kind, slots, slot_size);
}

int mk_objpool_create(mk_shm *s, const char *name, size_t slots, size_t slot_size, unsigned flags,
                      mk_objpool **out) {
    return make(MK__DS_CREATE_REQ(s, name, slots, slot_size, flags, NULL), out);
}

int mk_objpool_open(mk_shm *s, const char *name, size_t slot_size, mk_objpool **out) {
    return make(MK__DS_OPEN_REQ(s, name, slot_size), out);
}

int mk_objpool_init(void *buf, size_t size, size_t slots, size_t slot_size, mk_objpool **out) {
    return make(MK__DS_INIT_REQ(buf, size, slots, slot_size, NULL), out);
}

int mk_objpool_attach(void *buf, size_t size, size_t slot_size, mk_objpool **out) {
    return make(MK__DS_ATTACH_REQ(buf, size, slot_size), out);
}

void mk_objpool_close(mk_objpool *p) { free(p); }

int mk_objpool_acquire(mk_objpool *p, uint32_t *index) {
    if (p == NULL || index == NULL) return MK_EINVAL;
    uint64_t old = atomic_load_explicit(&p->sh->top, memory_order_acquire);
    uint32_t i;
    for (;;) {
        uint32_t idx1 = (uint32_t)old;
        if (idx1 == 0) return MK_EEMPTY;
        if (idx1 > p->n) return MK_ECORRUPT;
        i = idx1 - 1;
        /* May race with a push that relinks i: the CAS then fails (tag). */
        uint32_t next = atomic_load_explicit(&p->meta[i].next, memory_order_relaxed);
        if (next > p->n) return MK_ECORRUPT;
        if (atomic_compare_exchange_weak_explicit(&p->sh->top, &old,
                                                  top_word((old >> 32) + 1, next),
                                                  memory_order_acquire, memory_order_acquire))
            break;
    }
    MK__DS_CRASH_POINT(MK__DS_CP_POOL_ACQUIRED);
    atomic_store_explicit(&p->meta[i].owner, p->self, memory_order_relaxed);
    *index = i;
    return MK_OK;
}

/* Push slot i on the free stack; its contents are published by the CAS. */
static void push_free(mk_objpool *p, uint32_t i) {
    uint64_t old = atomic_load_explicit(&p->sh->top, memory_order_relaxed);
    do {
        atomic_store_explicit(&p->meta[i].next, (uint32_t)old, memory_order_relaxed);
    } while (!atomic_compare_exchange_weak_explicit(&p->sh->top, &old,
                                                    top_word((old >> 32) + 1, i + 1),
                                                    memory_order_release, memory_order_relaxed));
}

int mk_objpool_release(mk_objpool *p, uint32_t index) {
    if (p == NULL) return MK_EINVAL;
    if (index >= p->n) return MK_EBADOFF;
    if (atomic_exchange_explicit(&p->meta[index].owner, 0, memory_order_acq_rel) == 0)
        return MK_EDOUBLEFREE;
    MK__DS_CRASH_POINT(MK__DS_CP_POOL_RELEASING);
    push_free(p, index);
    return MK_OK;
}

void *mk_objpool_ptr(const mk_objpool *p, uint32_t index) {
    if (p == NULL || index >= p->n) return NULL;
    return p->slots + (size_t)index * p->stride;
}

int mk_objpool_index(const mk_objpool *p, const void *ptr, uint32_t *index) {
    if (p == NULL || index == NULL) return MK_EINVAL;
    uintptr_t a = (uintptr_t)ptr, base = (uintptr_t)p->slots;
    if (a < base || (a - base) % p->stride != 0 || (a - base) / p->stride >= p->n)
        return MK_EBADOFF;
    *index = (uint32_t)((a - base) / p->stride);
    return MK_OK;
}

size_t mk_objpool_slots(const mk_objpool *p) { return p ? p->n : 0; }

size_t mk_objpool_count_free(const mk_objpool *p) {
    if (p == NULL) return 0;
    uint32_t idx1 = (uint32_t)atomic_load_explicit(&p->sh->top, memory_order_acquire);
    size_t n = 0;
    while (idx1 != 0 && idx1 <= p->n && n < p->n) { /* bounded: a cycle cannot loop */
        n++;
        idx1 = atomic_load_explicit(&p->meta[idx1 - 1].next, memory_order_relaxed);
    }
    return n;
}

int mk_objpool_reclaim(mk_objpool *p, size_t *reclaimed) {
    if (p == NULL) return MK_EINVAL;
    size_t n = 0;
    uint64_t dead = 0, alive = 0; /* one-entry caches: slots of one owner are many */
    for (uint32_t i = 0; i < p->n; i++) {
        uint64_t o = atomic_load_explicit(&p->meta[i].owner, memory_order_acquire);
        if (o == 0 || o == alive) continue;
        if (o != dead) {
            if (mk__ds_owner_alive(o)) {
                alive = o;
                continue;
            }
            dead = o;
        }
        if (atomic_compare_exchange_strong_explicit(&p->meta[i].owner, &o, 0, memory_order_acq_rel,
                                                    memory_order_relaxed)) {
            push_free(p, i);
            n++;
        }
    }
    if (reclaimed) *reclaimed = n;
    return MK_OK;
}

int mk_objpool_repair(mk_objpool *p, size_t *repaired) {
    if (p == NULL) return MK_EINVAL;
    unsigned char *on_stack = calloc(p->n, 1);
    if (on_stack == NULL) return MK_ENOMEM;
    uint32_t idx1 = (uint32_t)atomic_load_explicit(&p->sh->top, memory_order_acquire);
    for (size_t steps = 0; idx1 != 0; steps++) {
        if (idx1 > p->n || steps >= p->n || on_stack[idx1 - 1]) {
            free(on_stack);
            return MK_ECORRUPT;
        }
        on_stack[idx1 - 1] = 1;
        idx1 = atomic_load_explicit(&p->meta[idx1 - 1].next, memory_order_relaxed);
    }
    size_t n = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        if (on_stack[i] || atomic_load_explicit(&p->meta[i].owner, memory_order_acquire) != 0)
            continue;
        push_free(p, i);
        n++;
    }
    free(on_stack);
    if (repaired) *repaired = n;
    return MK_OK;
}
