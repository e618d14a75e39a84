/*
 * Named atomics: the common header line, then the value on a line of its
 * own. The handle is the shared record itself (nothing to close). Every
 * operation is seq_cst.
 */
#include <string.h>

#include "ds/ds_int.h"

struct mk_atomic32 {
    _Alignas(MK__DS_LINE) mk__ds_hdr hdr;
    _Alignas(MK__DS_LINE) _Atomic uint32_t value;
};
struct mk_atomic64 {
    _Alignas(MK__DS_LINE) mk__ds_hdr hdr;
    _Alignas(MK__DS_LINE) _Atomic uint64_t value;
};
_Static_assert(sizeof(struct mk_atomic64) <= MK_ATOMIC_FOOTPRINT, "MK_ATOMIC_FOOTPRINT");

static size_t a32_footprint(size_t n, size_t e) {
    (void)n, (void)e;
    return sizeof(struct mk_atomic32);
}
static size_t a64_footprint(size_t n, size_t e) {
    (void)n, (void)e;
    return sizeof(struct mk_atomic64);
}
static void a32_init(mk__ds_hdr *h, const void *arg) {
    atomic_store_explicit(&((struct mk_atomic32 *)h)->value, *(const uint32_t *)arg,
                          memory_order_relaxed);
}
static void a64_init(mk__ds_hdr *h, const void *arg) {
    atomic_store_explicit(&((struct mk_atomic64 *)h)->value, *(const uint64_t *)arg,
                          memory_order_relaxed);
}

static const mk__ds_kind a32_kind = {.type = MK_IPC_TYPE_ATOMIC32,
                                     .ctl_size = sizeof(struct mk_atomic32),
                                     .min_capacity = 1,
                                     .max_capacity = 1,
                                     .fixed_elem = 4,
                                     .footprint = a32_footprint,
                                     .init = a32_init};
static const mk__ds_kind a64_kind = {.type = MK_IPC_TYPE_ATOMIC64,
                                     .ctl_size = sizeof(struct mk_atomic64),
                                     .min_capacity = 1,
                                     .max_capacity = 1,
                                     .fixed_elem = 8,
                                     .footprint = a64_footprint,
                                     .init = a64_init};

static int make(const mk__ds_kind *k, mk__ds_req *req, void **out) {
    if (out == NULL) return MK_EINVAL;
    req->capacity = 1;
    req->elem_size = k->fixed_elem;
    mk__ds_place pl;
    int rc = mk__ds_make(k, req, &pl);
    if (rc == MK_OK) *out = pl.hdr;
    return rc;
}

int mk_atomic32_create(mk_shm *s, const char *name, uint32_t initial, unsigned flags,
                       mk_atomic32 **out) {
    return make(&a32_kind, MK__DS_CREATE_REQ(s, name, 0, 0, flags, &initial), (void **)out);
}

int mk_atomic32_open(mk_shm *s, const char *name, mk_atomic32 **out) {
    return make(&a32_kind, MK__DS_OPEN_REQ(s, name, 0), (void **)out);
}

int mk_atomic32_init(void *buf, size_t size, uint32_t initial, mk_atomic32 **out) {
    return make(&a32_kind, MK__DS_INIT_REQ(buf, size, 0, 0, &initial), (void **)out);
}

int mk_atomic32_attach(void *buf, size_t size, mk_atomic32 **out) {
    return make(&a32_kind, MK__DS_ATTACH_REQ(buf, size, 0), (void **)out);
}

uint32_t mk_atomic32_load(const mk_atomic32 *a) {
    return atomic_load((_Atomic uint32_t *)&a->value);
}
void mk_atomic32_store(mk_atomic32 *a, uint32_t v) { atomic_store(&a->value, v); }
uint32_t mk_atomic32_add(mk_atomic32 *a, uint32_t v) { return atomic_fetch_add(&a->value, v); }
uint32_t mk_atomic32_exchange(mk_atomic32 *a, uint32_t v) { return atomic_exchange(&a->value, v); }
bool mk_atomic32_cas(mk_atomic32 *a, uint32_t *expected, uint32_t desired) {
    return atomic_compare_exchange_strong(&a->value, expected, desired);
}

int mk_atomic64_create(mk_shm *s, const char *name, uint64_t initial, unsigned flags,
                       mk_atomic64 **out) {
    return make(&a64_kind, MK__DS_CREATE_REQ(s, name, 0, 0, flags, &initial), (void **)out);
}

int mk_atomic64_open(mk_shm *s, const char *name, mk_atomic64 **out) {
    return make(&a64_kind, MK__DS_OPEN_REQ(s, name, 0), (void **)out);
}

int mk_atomic64_init(void *buf, size_t size, uint64_t initial, mk_atomic64 **out) {
    return make(&a64_kind, MK__DS_INIT_REQ(buf, size, 0, 0, &initial), (void **)out);
}

int mk_atomic64_attach(void *buf, size_t size, mk_atomic64 **out) {
    return make(&a64_kind, MK__DS_ATTACH_REQ(buf, size, 0), (void **)out);
}

uint64_t mk_atomic64_load(const mk_atomic64 *a) {
    return atomic_load((_Atomic uint64_t *)&a->value);
}
void mk_atomic64_store(mk_atomic64 *a, uint64_t v) { atomic_store(&a->value, v); }
uint64_t mk_atomic64_add(mk_atomic64 *a, uint64_t v) { return atomic_fetch_add(&a->value, v); }
uint64_t mk_atomic64_exchange(mk_atomic64 *a, uint64_t v) { return atomic_exchange(&a->value, v); }
bool mk_atomic64_cas(mk_atomic64 *a, uint64_t *expected, uint64_t desired) {
    return atomic_compare_exchange_strong(&a->value, expected, desired);
}
