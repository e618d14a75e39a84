/*
 * Placement and waiting, common to every structure (see ds_int.h).
 */
#include <stdlib.h>
#include <string.h>

#include "ds/ds_int.h"
#include "os/os.h"

#ifdef MK_TEST_HOOKS
void (*mk__ds_test_hook)(int point);
bool mk__ds_test_no_barrier;
#endif

/* How long an opener waits for a creator that is still initialising. */
#define READY_WAIT_NS ((int64_t)1000000000)
/* Spins on the condition before a waiter goes to sleep. */
#define WAIT_SPINS 256
/* Without a heavy barrier a sleeper re-checks this often (see mk__ds_wait). */
#define NO_BARRIER_SLICE_NS 1000000

static uint32_t layout_of(const mk__ds_kind *k) {
    return (uint32_t)MK__DS_LINE | (uint32_t)sizeof(mk__ds_hdr) << 8 | k->ctl_size << 16;
}

static uint64_t header_check(const mk__ds_hdr *h) {
    uint64_t x = UINT64_C(0x9e3779b97f4a7c15);
    const uint64_t v[] = {h->type, h->version, h->layout, h->capacity, h->elem_size, h->bytes};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        x ^= v[i];
        x *= UINT64_C(0xff51afd7ed558ccd);
        x ^= x >> 29;
    }
    return x;
}

static int check_capacity(const mk__ds_kind *k, size_t cap) {
    if (cap < k->min_capacity || cap > k->max_capacity) return MK_ECAPACITY;
    if (k->pow2 && (cap & (cap - 1)) != 0) return MK_ECAPACITY;
    return MK_OK;
}

static int check_elem(const mk__ds_kind *k, size_t elem) {
    if (k->fixed_elem) return elem == k->fixed_elem ? MK_OK : MK_EELEMSIZE;
    return elem >= 1 && elem <= MK_IPC_ELEM_MAX ? MK_OK : MK_EELEMSIZE;
}

size_t mk__ds_footprint(const mk__ds_kind *k, size_t capacity, size_t elem_size) {
    if (check_capacity(k, capacity) != MK_OK || check_elem(k, elem_size) != MK_OK) return 0;
    return k->footprint(capacity, elem_size);
}

/* Write the header of a zero-filled structure, let the type set up its
 * body, then publish the magic (release) and wake openers waiting for it. */
static void build(const mk__ds_kind *k, const mk__ds_req *req, mk__ds_hdr *h, size_t bytes,
                  bool shared) {
    h->type = k->type;
    h->version = MK__DS_VERSION;
    h->layout = layout_of(k);
    h->capacity = req->capacity;
    h->elem_size = req->elem_size;
    h->bytes = bytes;
    h->check = header_check(h);
    if (k->init) k->init(h, req->init_arg);
    atomic_store_explicit(&h->magic, MK__DS_MAGIC, memory_order_release);
    mk__os_wake32((const uint32_t *)&h->magic, -1, shared);
}

/* Check a published header against the kind and the caller's expectations,
 * and every size in it against avail, the bytes that really exist. */
static int verify(const mk__ds_kind *k, const mk__ds_hdr *h, size_t avail, size_t elem_size) {
    if (atomic_load_explicit(&h->magic, memory_order_acquire) != MK__DS_MAGIC) return MK_EBADMAGIC;
    if (h->version != MK__DS_VERSION) return MK_EVERSION;
    if (h->type != k->type) return MK_ETYPE;
    if (h->layout != layout_of(k)) return MK_ELAYOUT;
    if (h->check != header_check(h)) return MK_ECORRUPT;
    if (h->elem_size != elem_size) return MK_EELEMSIZE;
    if (h->capacity > SIZE_MAX || h->bytes > SIZE_MAX) return MK_ECORRUPT;
    size_t need = mk__ds_footprint(k, (size_t)h->capacity, (size_t)h->elem_size);
    if (need == 0 || need != h->bytes) return MK_ECORRUPT;
    return need <= avail ? MK_OK : MK_ETRUNCATED;
}

/* An opener that finds the magic still 0 waits (bounded) for the creator. */
static int wait_ready(mk__ds_hdr *h) {
    uint64_t start = mk__os_now_ns();
    for (;;) {
        if (atomic_load_explicit(&h->magic, memory_order_acquire) != 0) return MK_OK;
        int64_t left = READY_WAIT_NS - (int64_t)(mk__os_now_ns() - start);
        if (left <= 0) return MK_EBUSY;
        int rc = mk__os_wait32((const uint32_t *)&h->magic, 0, left, true);
        if (rc != MK_OK && rc != MK_ETIMEDOUT) return rc;
    }
}

/* The structure inside a named object: its data aligned up to a line. */
static int place_object(mk_shm *seg, mk_off off, uint64_t obj_size, mk__ds_hdr **h, size_t *avail) {
    unsigned char *p = mk_shm_ptr(seg, off);
    if (p == NULL || obj_size > SIZE_MAX) return MK_EBADOFF;
    size_t pad = (size_t)(-(uintptr_t)p & (MK__DS_LINE - 1));
    if (obj_size < pad + sizeof(mk__ds_hdr)) return MK_ECORRUPT;
    if (mk_shm_ptr(seg, off + obj_size - 1) == NULL) return MK_EBADOFF;
    *h = (mk__ds_hdr *)(p + pad);
    *avail = (size_t)obj_size - pad;
    return MK_OK;
}

static int find_named(const mk__ds_kind *k, const mk__ds_req *req, mk__ds_hdr **h, size_t *avail) {
    mk_shm_obj obj;
    int rc = mk_shm_obj_find(req->seg, req->name, &obj);
    if (rc != MK_OK) return rc;
    if (obj.type != k->type) return MK_ETYPE;
    return place_object(req->seg, obj.offset, obj.size, h, avail);
}

static int make_named(const mk__ds_kind *k, const mk__ds_req *req, size_t need, mk__ds_place *out) {
    mk__ds_hdr *h = NULL;
    size_t avail = 0;
    int created = 0, rc;
    if (req->mode == MK__DS_CREATE) {
        mk_off off = 0;
        unsigned f = (req->flags & MK_IPC_EXCL) ? MK_SHM_OBJ_EXCL : 0;
        rc = mk_shm_obj_create(req->seg, req->name, k->type, need + MK__DS_LINE, f, &off, &created);
        if (rc == MK_OK) {
            mk_shm_obj obj;
            rc = mk_shm_obj_find(req->seg, req->name, &obj);
            if (rc == MK_OK && obj.offset != off) rc = MK_ECORRUPT;
            if (rc == MK_OK) rc = place_object(req->seg, off, obj.size, &h, &avail);
        } else if (rc == MK_EEXIST && !(req->flags & MK_IPC_EXCL)) {
            created = 0; /* another type, or smaller (another capacity or element size) */
            rc = find_named(k, req, &h, &avail);
        }
    } else {
        rc = find_named(k, req, &h, &avail);
    }
    if (rc != MK_OK) return rc;
    out->hdr = h;
    out->shared = true;
    if (created) {
        build(k, req, h, need, true);
        return MK_OK;
    }
    rc = wait_ready(h);
    if (rc != MK_OK) return rc;
    rc = verify(k, h, avail, req->elem_size);
    if (rc == MK_OK && req->mode == MK__DS_CREATE && h->capacity != req->capacity)
        rc = MK_ECAPACITY;
    return rc;
}

/* 0: not asked yet, 1: registered, -1: no heavy barrier here. */
static _Atomic int light_state;

bool mk__ds_light_publish(void) {
    int st = atomic_load_explicit(&light_state, memory_order_acquire);
    if (st == 0) {
        st = mk__os_barrier_register() == MK_OK ? 1 : -1;
#ifdef MK_TEST_HOOKS
        if (mk__ds_test_no_barrier) st = -1; /* the path of systems without one */
#endif
        atomic_store_explicit(&light_state, st, memory_order_release);
    }
    return st > 0;
}

int mk__ds_make(const mk__ds_kind *k, const mk__ds_req *req, mk__ds_place *out) {
    out->light = mk__ds_light_publish();
    if (req->flags & ~(unsigned)MK_IPC_EXCL) return MK_EINVAL;
    int rc = check_elem(k, req->elem_size);
    if (rc != MK_OK) return rc;
    size_t need = 0;
    if (req->mode == MK__DS_CREATE || req->mode == MK__DS_INIT) {
        rc = check_capacity(k, req->capacity);
        if (rc != MK_OK) return rc;
        need = k->footprint(req->capacity, req->elem_size);
        if (need == 0) return MK_ECAPACITY; /* the size overflows */
    }
    if (req->mode == MK__DS_CREATE || req->mode == MK__DS_OPEN) {
        if (req->seg == NULL || req->name == NULL) return MK_EINVAL;
        return make_named(k, req, need, out);
    }
    if (req->buf == NULL) return MK_EINVAL;
    if (((uintptr_t)req->buf & (MK_IPC_ALIGN - 1)) != 0) return MK_EALIGN;
    out->hdr = req->buf;
    if (req->mode == MK__DS_INIT) {
        if (req->size < need) return MK_ETRUNCATED;
        memset(req->buf, 0, need);
        /* Process-shared futexes even here: a private and a shared futex on
         * one word never wake each other, and a caller's buffer may well be
         * shared memory attached by another process. */
        out->shared = true;
        build(k, req, out->hdr, need, true);
        return MK_OK;
    }
    if (req->size < sizeof(mk__ds_hdr)) return MK_ETRUNCATED;
    out->shared = true; /* attached memory may be shared with other processes */
    return verify(k, out->hdr, req->size, req->elem_size);
}

/* ---- waiting ----------------------------------------------------------------- */

void mk__ds_wake_slow(mk__ds_event *e, bool shared) {
    /* Clear first, then bump: a sleeper whose flag this clears read seq
     * before setting the flag, so it reads the old seq and does not sleep. */
    atomic_store_explicit(&e->sleepers, 0, memory_order_seq_cst);
    atomic_fetch_add_explicit(&e->seq, 1, memory_order_seq_cst);
    mk__os_wake32((const uint32_t *)&e->seq, -1, shared);
}

int mk__ds_wait(mk__ds_event *e, bool shared, bool (*ready)(const void *arg), const void *arg,
                int64_t timeout_ns) {
    if (ready(arg)) return MK_OK;
    if (timeout_ns == 0) return MK_ETIMEDOUT;
    for (int i = 0; i < WAIT_SPINS; i++)
        if (ready(arg)) return MK_OK;
    uint64_t start = mk__os_now_ns();
    for (;;) {
        uint32_t seq = atomic_load_explicit(&e->seq, memory_order_seq_cst);
        atomic_store_explicit(&e->sleepers, 1, memory_order_seq_cst);
        /* A publisher in a registered process stores its index with
         * release order only: the heavy barrier makes that store visible
         * to the re-check below, or the publisher's later load of sleepers
         * see our flag. Without it, sleep in slices, so a publisher that
         * relied on the barrier is seen within one slice. */
        bool barrier = mk__os_heavy_barrier() == MK_OK;
#ifdef MK_TEST_HOOKS
        if (mk__ds_test_no_barrier) barrier = false;
#endif
        if (ready(arg)) return MK_OK;
        int64_t left = -1;
        if (timeout_ns > 0) {
            left = timeout_ns - (int64_t)(mk__os_now_ns() - start);
            if (left <= 0) return MK_ETIMEDOUT;
        }
        if (!barrier && (left < 0 || left > NO_BARRIER_SLICE_NS)) left = NO_BARRIER_SLICE_NS;
        int rc = mk__os_wait32((const uint32_t *)&e->seq, seq, left, shared);
        if (rc == MK_EOS) return rc;
    }
}

/* ---- owners -------------------------------------------------------------------- */

uint64_t mk__ds_owner_self(void) {
    uint64_t pid = mk__os_process_id(), start = 0;
    if (mk__os_process_start_time(pid, &start) != MK_OK) start = 0;
    return pid << 32 | (start & 0xffffffffu);
}

bool mk__ds_owner_alive(uint64_t owner) {
    uint64_t pid = owner >> 32, start = 0;
    if (mk__os_process_start_time(pid, &start) != MK_OK) return false;
    if ((start & 0xffffffffu) != (owner & 0xffffffffu)) return false; /* pid reused */
    return mk__os_process_alive(pid, start);                          /* a zombie is dead */
}
