/*
 * SPSC queue and ring buffer: one producer, one consumer, one layout.
 *
 *   line 0  common header (ds_int.h)
 *   line 1  producer: head (next index to write), its cached copy of tail,
 *           the size of its open reservation (ring)
 *   line 2  consumer: tail (next index to read), its cached copy of head,
 *           the size of its open peek (ring)
 *   line 3  event counts "not empty" and "not full" (written only by
 *           sleepers and wakers, so the line stays shared, not bouncing)
 *   slots   capacity * elem_size bytes, from line 4
 *
 * Indices are 64-bit counters that never wrap in practice; the slot of
 * index i is i & (capacity - 1). head - tail is the number of elements.
 * Each side reads the other's line only when its cached copy says full
 * (producer) or empty (consumer), which is what lets a stream of elements
 * move with few cache-line transfers.
 *
 * Ordering: the slot copy, then a store of the own index with release
 * order when this process is registered for the platform's heavy barrier,
 * else seq_cst (so that it is ordered before the load of the other side's
 * sleeper flag that follows: see mk__ds_notify and mk__ds_wait). The other
 * side loads it with acquire.
 *
 * Untrusted indices: a slot index is always masked, and a count of
 * elements or free slots larger than the capacity is treated as damage
 * (nothing moves), so a corrupted header cannot make a copy overrun.
 */
#include <stdlib.h>
#include <string.h>

#include "ds/ds_int.h"
#include "os/os.h"

typedef struct spsc_shared {
    _Alignas(MK__DS_LINE) mk__ds_hdr hdr;
    _Alignas(MK__DS_LINE) struct {
        _Atomic uint64_t head;
        uint64_t tail_cache;
        uint64_t reserved;
    } prod;
    _Alignas(MK__DS_LINE) struct {
        _Atomic uint64_t tail;
        uint64_t head_cache;
        uint64_t peeked;
    } cons;
    _Alignas(MK__DS_LINE) mk__ds_event not_empty;
    mk__ds_event not_full;
} spsc_shared;

/* The process's view; the same for the queue and the ring. */
typedef struct spsc_view {
    spsc_shared *sh;
    unsigned char *slots;
    uint64_t mask;
    size_t cap;
    size_t elem;
    bool shared;
    bool light; /* release stores suffice to publish (mk__ds_light_publish) */
} spsc_view;

struct mk_spsc {
    spsc_view v;
};
struct mk_ring {
    spsc_view v;
};

static size_t spsc_footprint(size_t cap, size_t elem) {
    if (cap > SIZE_MAX / elem) return 0;
    size_t total;
    return mk__ds_add(sizeof(spsc_shared), cap * elem, &total) ? total : 0;
}

static const mk__ds_kind spsc_kind = {.type = MK_IPC_TYPE_SPSC,
                                      .ctl_size = sizeof(spsc_shared),
                                      .pow2 = true,
                                      .min_capacity = 2,
                                      .max_capacity = MK_IPC_CAPACITY_MAX,
                                      .footprint = spsc_footprint};
static const mk__ds_kind ring_kind = {.type = MK_IPC_TYPE_RING,
                                      .ctl_size = sizeof(spsc_shared),
                                      .pow2 = true,
                                      .min_capacity = 2,
                                      .max_capacity = MK_IPC_CAPACITY_MAX,
                                      .footprint = spsc_footprint};

static int open_view(const mk__ds_kind *k, const mk__ds_req *req, spsc_view **out) {
    if (out == NULL) return MK_EINVAL;
    mk__ds_place pl;
    int rc = mk__ds_make(k, req, &pl);
    if (rc != MK_OK) return rc;
    spsc_view *v = malloc(sizeof *v);
    if (v == NULL) return MK_ENOMEM;
    v->sh = (spsc_shared *)pl.hdr;
    v->slots = (unsigned char *)pl.hdr + sizeof(spsc_shared);
    v->cap = (size_t)pl.hdr->capacity;
    v->mask = pl.hdr->capacity - 1;
    v->elem = (size_t)pl.hdr->elem_size;
    v->shared = pl.shared;
    v->light = pl.light;
    *out = v;
    return MK_OK;
}

/* ---- the two sides ------------------------------------------------------------- */

/* Free slots as the producer sees them, refreshing its copy of tail when
 * the cached one shows fewer than want. Damage (more than cap) gives 0. */
static size_t prod_free(spsc_view *v, uint64_t h, size_t want) {
    spsc_shared *sh = v->sh;
    uint64_t used = h - sh->prod.tail_cache;
    if (used > v->cap || v->cap - used < want) {
        sh->prod.tail_cache = atomic_load_explicit(&sh->cons.tail, memory_order_acquire);
        used = h - sh->prod.tail_cache;
        if (used > v->cap) return 0;
    }
    return v->cap - (size_t)used;
}

/* Elements available to the consumer, refreshing its copy of head when
 * the cached one shows fewer than want. Damage gives 0. */
static size_t cons_avail(spsc_view *v, uint64_t t, size_t want) {
    spsc_shared *sh = v->sh;
    uint64_t avail = sh->cons.head_cache - t;
    if (avail > v->cap || avail < want) {
        sh->cons.head_cache = atomic_load_explicit(&sh->prod.head, memory_order_acquire);
        avail = sh->cons.head_cache - t;
        if (avail > v->cap) return 0;
    }
    return (size_t)avail;
}

/* Store an index for the other side; the order is a constant in each
 * branch (a variable order compiles as seq_cst). */
static inline void publish(const spsc_view *v, _Atomic uint64_t *index, uint64_t value) {
    if (v->light)
        atomic_store_explicit(index, value, memory_order_release);
    else
        atomic_store_explicit(index, value, memory_order_seq_cst);
}

static void publish_head(spsc_view *v, uint64_t h) {
    publish(v, &v->sh->prod.head, h);
    mk__ds_notify(&v->sh->not_empty, v->shared);
}

static void publish_tail(spsc_view *v, uint64_t t) {
    publish(v, &v->sh->cons.tail, t);
    mk__ds_notify(&v->sh->not_full, v->shared);
}

static int push_one(spsc_view *v, const void *elem) {
    uint64_t h = atomic_load_explicit(&v->sh->prod.head, memory_order_relaxed);
    if (prod_free(v, h, 1) == 0) return MK_EFULL;
    mk__ds_copy(v->slots + (size_t)(h & v->mask) * v->elem, elem, v->elem);
    MK__DS_CRASH_POINT(MK__DS_CP_SPSC_PUSH_COPIED);
    publish_head(v, h + 1);
    return MK_OK;
}

static int pop_one(spsc_view *v, void *out) {
    uint64_t t = atomic_load_explicit(&v->sh->cons.tail, memory_order_relaxed);
    if (cons_avail(v, t, 1) == 0) return MK_EEMPTY;
    mk__ds_copy(out, v->slots + (size_t)(t & v->mask) * v->elem, v->elem);
    MK__DS_CRASH_POINT(MK__DS_CP_SPSC_POP_COPIED);
    publish_tail(v, t + 1);
    return MK_OK;
}

/* Wait conditions (seq_cst loads, see mk__ds_wait). */
static bool not_empty(const void *arg) {
    const spsc_view *v = arg;
    uint64_t h = atomic_load_explicit(&v->sh->prod.head, memory_order_seq_cst);
    /* 1..cap elements, as cons_avail counts them: more is damage that pop
     * refuses, and taking it for "ready" would make the waits spin. */
    return h - atomic_load_explicit(&v->sh->cons.tail, memory_order_seq_cst) - 1 < v->cap;
}

static bool not_full(const void *arg) {
    const spsc_view *v = arg;
    uint64_t t = atomic_load_explicit(&v->sh->cons.tail, memory_order_seq_cst);
    return atomic_load_explicit(&v->sh->prod.head, memory_order_seq_cst) - t < v->cap;
}

/* Time left of timeout_ns since start: -1 for no limit, 0 when expired. */
static int64_t time_left(int64_t timeout_ns, uint64_t start, uint64_t now) {
    if (timeout_ns < 0) return -1;
    int64_t left = timeout_ns - (int64_t)(now - start);
    return left > 0 ? left : 0;
}

static int push_wait(spsc_view *v, const void *elem, int64_t timeout_ns) {
    uint64_t start = timeout_ns > 0 ? mk__os_now_ns() : 0;
    for (;;) {
        int rc = push_one(v, elem);
        if (rc != MK_EFULL) return rc;
        int64_t left = timeout_ns > 0 ? time_left(timeout_ns, start, mk__os_now_ns()) : timeout_ns;
        if (left == 0) return MK_ETIMEDOUT;
        rc = mk__ds_wait(&v->sh->not_full, v->shared, not_full, v, left);
        if (rc != MK_OK) return rc;
    }
}

static int pop_wait(spsc_view *v, void *out, int64_t timeout_ns) {
    uint64_t start = timeout_ns > 0 ? mk__os_now_ns() : 0;
    for (;;) {
        int rc = pop_one(v, out);
        if (rc != MK_EEMPTY) return rc;
        int64_t left = timeout_ns > 0 ? time_left(timeout_ns, start, mk__os_now_ns()) : timeout_ns;
        if (left == 0) return MK_ETIMEDOUT;
        rc = mk__ds_wait(&v->sh->not_empty, v->shared, not_empty, v, left);
        if (rc != MK_OK) return rc;
    }
}

static size_t size_of(const spsc_view *v) {
    uint64_t t = atomic_load_explicit(&v->sh->cons.tail, memory_order_acquire);
    uint64_t n = atomic_load_explicit(&v->sh->prod.head, memory_order_acquire) - t;
    return n > v->cap ? v->cap : (size_t)n;
}

/* ---- SPSC queue API -------------------------------------------------------------- */

static int spsc_make(mk__ds_req *req, mk_spsc **out) {
    return open_view(&spsc_kind, req, (spsc_view **)out);
}

size_t mk_spsc_footprint(size_t capacity, size_t elem_size) {
    return mk__ds_footprint(&spsc_kind, capacity, elem_size);
}

int mk_spsc_create(mk_shm *s, const char *name, size_t capacity, size_t elem_size, unsigned flags,
                   mk_spsc **out) {
    return spsc_make(MK__DS_CREATE_REQ(s, name, capacity, elem_size, flags, NULL), out);
}

int mk_spsc_open(mk_shm *s, const char *name, size_t elem_size, mk_spsc **out) {
    return spsc_make(MK__DS_OPEN_REQ(s, name, elem_size), out);
}

int mk_spsc_init(void *buf, size_t size, size_t capacity, size_t elem_size, mk_spsc **out) {
    return spsc_make(MK__DS_INIT_REQ(buf, size, capacity, elem_size, NULL), out);
}

int mk_spsc_attach(void *buf, size_t size, size_t elem_size, mk_spsc **out) {
    return spsc_make(MK__DS_ATTACH_REQ(buf, size, elem_size), out);
}

void mk_spsc_close(mk_spsc *q) { free(q); }

int mk_spsc_try_push(mk_spsc *q, const void *elem) { return push_one(&q->v, elem); }
int mk_spsc_try_pop(mk_spsc *q, void *out) { return pop_one(&q->v, out); }
int mk_spsc_push_wait(mk_spsc *q, const void *elem, int64_t timeout_ns) {
    return push_wait(&q->v, elem, timeout_ns);
}
int mk_spsc_pop_wait(mk_spsc *q, void *out, int64_t timeout_ns) {
    return pop_wait(&q->v, out, timeout_ns);
}
size_t mk_spsc_size(const mk_spsc *q) { return size_of(&q->v); }
size_t mk_spsc_capacity(const mk_spsc *q) { return q->v.cap; }
size_t mk_spsc_elem_size(const mk_spsc *q) { return q->v.elem; }

/* ---- ring API ------------------------------------------------------------------------ */

static int ring_make(mk__ds_req *req, mk_ring **out) {
    return open_view(&ring_kind, req, (spsc_view **)out);
}

size_t mk_ring_footprint(size_t capacity, size_t elem_size) {
    return mk__ds_footprint(&ring_kind, capacity, elem_size);
}

int mk_ring_create(mk_shm *s, const char *name, size_t capacity, size_t elem_size, unsigned flags,
                   mk_ring **out) {
    return ring_make(MK__DS_CREATE_REQ(s, name, capacity, elem_size, flags, NULL), out);
}

int mk_ring_open(mk_shm *s, const char *name, size_t elem_size, mk_ring **out) {
    return ring_make(MK__DS_OPEN_REQ(s, name, elem_size), out);
}

int mk_ring_init(void *buf, size_t size, size_t capacity, size_t elem_size, mk_ring **out) {
    return ring_make(MK__DS_INIT_REQ(buf, size, capacity, elem_size, NULL), out);
}

int mk_ring_attach(void *buf, size_t size, size_t elem_size, mk_ring **out) {
    return ring_make(MK__DS_ATTACH_REQ(buf, size, elem_size), out);
}

void mk_ring_close(mk_ring *r) { free(r); }

/* Copy n elements between a caller array and the slots from index i on,
 * in at most two runs (the second after the wrap). */
static void copy_in(spsc_view *v, uint64_t i, const unsigned char *src, size_t n) {
    size_t at = (size_t)(i & v->mask), first = v->cap - at < n ? v->cap - at : n;
    memcpy(v->slots + at * v->elem, src, first * v->elem);
    memcpy(v->slots, src + first * v->elem, (n - first) * v->elem);
}

static void copy_out(spsc_view *v, uint64_t i, unsigned char *dst, size_t n) {
    size_t at = (size_t)(i & v->mask), first = v->cap - at < n ? v->cap - at : n;
    memcpy(dst, v->slots + at * v->elem, first * v->elem);
    memcpy(dst + first * v->elem, v->slots, (n - first) * v->elem);
}

size_t mk_ring_push_bulk(mk_ring *r, const void *elems, size_t n) {
    spsc_view *v = &r->v;
    if (elems == NULL || n == 0) return 0;
    uint64_t h = atomic_load_explicit(&v->sh->prod.head, memory_order_relaxed);
    size_t room = prod_free(v, h, n);
    if (n > room) n = room;
    if (n == 0) return 0;
    copy_in(v, h, elems, n);
    MK__DS_CRASH_POINT(MK__DS_CP_RING_PUSH_COPIED);
    publish_head(v, h + n);
    return n;
}

size_t mk_ring_pop_bulk(mk_ring *r, void *out, size_t n) {
    spsc_view *v = &r->v;
    if (out == NULL || n == 0) return 0;
    uint64_t t = atomic_load_explicit(&v->sh->cons.tail, memory_order_relaxed);
    size_t avail = cons_avail(v, t, n);
    if (n > avail) n = avail;
    if (n == 0) return 0;
    copy_out(v, t, out, n);
    MK__DS_CRASH_POINT(MK__DS_CP_RING_POP_COPIED);
    publish_tail(v, t + n);
    return n;
}

void *mk_ring_reserve(mk_ring *r, size_t n, size_t *got) {
    spsc_view *v = &r->v;
    uint64_t h = atomic_load_explicit(&v->sh->prod.head, memory_order_relaxed);
    size_t at = (size_t)(h & v->mask), run = v->cap - at;
    size_t room = prod_free(v, h, n < run ? n : run);
    if (n > room) n = room;
    if (n > run) n = run;
    v->sh->prod.reserved = n;
    if (got) *got = n;
    return n ? v->slots + at * v->elem : NULL;
}

int mk_ring_commit(mk_ring *r, size_t n) {
    spsc_view *v = &r->v;
    if (n > v->sh->prod.reserved) return MK_EINVAL;
    uint64_t h = atomic_load_explicit(&v->sh->prod.head, memory_order_relaxed);
    if (prod_free(v, h, n) < n) return MK_EINVAL; /* damaged: never publish unowned slots */
    v->sh->prod.reserved = 0;
    if (n) publish_head(v, h + n);
    return MK_OK;
}

const void *mk_ring_peek(mk_ring *r, size_t n, size_t *got) {
    spsc_view *v = &r->v;
    uint64_t t = atomic_load_explicit(&v->sh->cons.tail, memory_order_relaxed);
    size_t at = (size_t)(t & v->mask), run = v->cap - at;
    size_t avail = cons_avail(v, t, n < run ? n : run);
    if (n > avail) n = avail;
    if (n > run) n = run;
    v->sh->cons.peeked = n;
    if (got) *got = n;
    return n ? v->slots + at * v->elem : NULL;
}

int mk_ring_release(mk_ring *r, size_t n) {
    spsc_view *v = &r->v;
    if (n > v->sh->cons.peeked) return MK_EINVAL;
    uint64_t t = atomic_load_explicit(&v->sh->cons.tail, memory_order_relaxed);
    if (cons_avail(v, t, n) < n) return MK_EINVAL;
    v->sh->cons.peeked = 0;
    if (n) publish_tail(v, t + n);
    return MK_OK;
}

int mk_ring_wait_not_empty(mk_ring *r, int64_t timeout_ns) {
    return mk__ds_wait(&r->v.sh->not_empty, r->v.shared, not_empty, &r->v, timeout_ns);
}

int mk_ring_wait_not_full(mk_ring *r, int64_t timeout_ns) {
    return mk__ds_wait(&r->v.sh->not_full, r->v.shared, not_full, &r->v, timeout_ns);
}

size_t mk_ring_size(const mk_ring *r) { return size_of(&r->v); }
size_t mk_ring_capacity(const mk_ring *r) { return r->v.cap; }
