/* Unit and model tests of the lock-free structures (include/memkit/ipc.h):
 * single-threaded semantics against simple reference models (full, empty,
 * wrap-around, bulk partial success), every error path, timed waits, and
 * crash points simulated in-process (longjmp out of the test hook) for the
 * repair calls. Seeds: MK_TEST_SEED overrides the fixed default. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ds/ds_int.h"
#include "memkit/ipc.h"

static uint64_t seed_base(void) {
    const char *e = getenv("MK_TEST_SEED");
    return e ? strtoull(e, NULL, 0) : UINT64_C(0x5EED);
}

static uint64_t rnd(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void *abuf(size_t size) {
    void *p = NULL;
    assert_int_equal(posix_memalign(&p, MK_IPC_ALIGN, size ? size : 64), 0);
    memset(p, 0xA5, size); /* init must not rely on zeroed memory */
    return p;
}

/* An element of es bytes derived from a sequence number. */
static void fill(unsigned char *e, size_t es, uint64_t v) {
    for (size_t i = 0; i < es; i++) e[i] = (unsigned char)(v >> (8 * (i % 8))) ^ (unsigned char)i;
}

/* ---- reference FIFO ---------------------------------------------------------- */

typedef struct fifo {
    uint64_t *v;
    size_t cap, head, tail;
} fifo;

static void fifo_push(fifo *f, uint64_t x) { f->v[f->head++ % f->cap] = x; }
static uint64_t fifo_pop(fifo *f) { return f->v[f->tail++ % f->cap]; }
static size_t fifo_size(const fifo *f) { return f->head - f->tail; }

/* ---- SPSC -------------------------------------------------------------------- */

static void test_spsc_model(void **state) {
    (void)state;
    const size_t sizes[] = {1, 8, 12, 64, 100};
    uint64_t s = seed_base();
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t es = sizes[k], cap = 8;
        size_t fp = mk_spsc_footprint(cap, es);
        void *buf = abuf(fp);
        mk_spsc *q;
        assert_int_equal(mk_spsc_init(buf, fp, cap, es, &q), MK_OK);
        assert_int_equal(mk_spsc_capacity(q), cap);
        assert_int_equal(mk_spsc_elem_size(q), es);
        uint64_t model_v[8];
        fifo m = {model_v, cap, 0, 0};
        uint64_t next = 1;
        unsigned char e[128], got[128];
        for (int op = 0; op < 20000; op++) {
            if (rnd(&s) % 2) {
                fill(e, es, next);
                int rc = mk_spsc_try_push(q, e);
                if (fifo_size(&m) == cap) {
                    assert_int_equal(rc, MK_EFULL);
                } else {
                    assert_int_equal(rc, MK_OK);
                    fifo_push(&m, next);
                }
                next++;
            } else {
                int rc = mk_spsc_try_pop(q, got);
                if (fifo_size(&m) == 0) {
                    assert_int_equal(rc, MK_EEMPTY);
                } else {
                    assert_int_equal(rc, MK_OK);
                    fill(e, es, fifo_pop(&m));
                    assert_memory_equal(got, e, es);
                }
            }
            assert_int_equal(mk_spsc_size(q), fifo_size(&m));
        }
        mk_spsc_close(q);
        free(buf);
    }
}

/* ---- ring ------------------------------------------------------------------------ */

static void test_ring_model(void **state) {
    (void)state;
    uint64_t s = seed_base() ^ 0x1234;
    const size_t es = 12, cap = 16;
    size_t fp = mk_ring_footprint(cap, es);
    void *buf = abuf(fp);
    mk_ring *r;
    assert_int_equal(mk_ring_init(buf, fp, cap, es, &r), MK_OK);
    uint64_t model_v[16];
    fifo m = {model_v, cap, 0, 0};
    uint64_t next = 1;
    unsigned char tmp[40 * 12], e[12];
    for (int op = 0; op < 20000; op++) {
        size_t n = (size_t)(rnd(&s) % 40), got = 0, free_now = cap - fifo_size(&m);
        switch (rnd(&s) % 4) {
        case 0: { /* bulk push: partial when too few slots are free */
            for (size_t i = 0; i < n; i++) fill(tmp + i * es, es, next + i);
            size_t pushed = mk_ring_push_bulk(r, tmp, n);
            assert_int_equal(pushed, n < free_now ? n : free_now);
            for (size_t i = 0; i < pushed; i++) fifo_push(&m, next + i);
            next += n;
            break;
        }
        case 1: { /* bulk pop */
            size_t popped = mk_ring_pop_bulk(r, tmp, n), have = fifo_size(&m);
            assert_int_equal(popped, n < have ? n : have);
            for (size_t i = 0; i < popped; i++) {
                fill(e, es, fifo_pop(&m));
                assert_memory_equal(tmp + i * es, e, es);
            }
            break;
        }
        case 2: { /* reserve: contiguous up to the end of the buffer */
            unsigned char *w = mk_ring_reserve(r, n, &got);
            size_t run = cap - m.head % cap, want = n < free_now ? n : free_now;
            assert_int_equal(got, want < run ? want : run);
            assert_true((w == NULL) == (got == 0));
            size_t c = got ? (size_t)(rnd(&s) % (got + 1)) : 0;
            assert_int_equal(mk_ring_commit(r, got + 1), MK_EINVAL);
            for (size_t i = 0; i < c; i++) fill(w + i * es, es, next + i);
            assert_int_equal(mk_ring_commit(r, c), MK_OK);
            for (size_t i = 0; i < c; i++) fifo_push(&m, next + i);
            next += c;
            break;
        }
        default: { /* peek + release */
            const unsigned char *rd = mk_ring_peek(r, n, &got);
            size_t have = fifo_size(&m), run = cap - m.tail % cap, want = n < have ? n : have;
            assert_int_equal(got, want < run ? want : run);
            size_t c = got ? (size_t)(rnd(&s) % (got + 1)) : 0;
            assert_int_equal(mk_ring_release(r, got + 1), MK_EINVAL);
            for (size_t i = 0; i < c; i++) {
                fill(e, es, fifo_pop(&m));
                assert_memory_equal(rd + i * es, e, es);
            }
            assert_int_equal(mk_ring_release(r, c), MK_OK);
        }
        }
        assert_int_equal(mk_ring_size(r), fifo_size(&m));
    }
    assert_int_equal(mk_ring_push_bulk(r, NULL, 3), 0);
    assert_int_equal(mk_ring_pop_bulk(r, NULL, 3), 0);
    assert_int_equal(mk_ring_capacity(r), cap);
    mk_ring_close(r);
    free(buf);
}

/* ---- MPMC ----------------------------------------------------------------------- */

static void test_mpmc_model(void **state) {
    (void)state;
    uint64_t s = seed_base() ^ 0x77;
    const size_t es = 24, cap = 4;
    size_t fp = mk_mpmc_footprint(cap, es);
    void *buf = abuf(fp);
    mk_mpmc *q;
    assert_int_equal(mk_mpmc_init(buf, fp, cap, es, &q), MK_OK);
    uint64_t model_v[4];
    fifo m = {model_v, cap, 0, 0};
    uint64_t next = 1;
    unsigned char e[24], got[24];
    for (int op = 0; op < 20000; op++) {
        if (rnd(&s) % 2) {
            fill(e, es, next);
            int rc = mk_mpmc_try_push(q, e);
            assert_int_equal(rc, fifo_size(&m) == cap ? MK_EFULL : MK_OK);
            if (rc == MK_OK) fifo_push(&m, next);
            next++;
        } else {
            int rc = mk_mpmc_try_pop(q, got);
            assert_int_equal(rc, fifo_size(&m) == 0 ? MK_EEMPTY : MK_OK);
            if (rc == MK_OK) {
                fill(e, es, fifo_pop(&m));
                assert_memory_equal(got, e, es);
            }
        }
        assert_int_equal(mk_mpmc_size(q), fifo_size(&m));
    }
    size_t n = 99;
    assert_int_equal(mk_mpmc_repair(q, &n), MK_OK); /* nothing to repair */
    assert_int_equal(n, 0);
    assert_int_equal(mk_mpmc_repair(NULL, &n), MK_EINVAL);
    mk_mpmc_close(q);
    free(buf);
}

/* ---- object pool ------------------------------------------------------------------ */

static void test_objpool_model(void **state) {
    (void)state;
    uint64_t s = seed_base() ^ 0x99;
    const size_t slots = 37, ss = 20;
    size_t fp = mk_objpool_footprint(slots, ss);
    void *buf = abuf(fp);
    mk_objpool *p;
    assert_int_equal(mk_objpool_init(buf, fp, slots, ss, &p), MK_OK);
    assert_int_equal(mk_objpool_slots(p), slots);
    unsigned char held[37] = {0};
    size_t nheld = 0;
    for (int op = 0; op < 20000; op++) {
        if (rnd(&s) % 2) {
            uint32_t i;
            int rc = mk_objpool_acquire(p, &i);
            if (nheld == slots) {
                assert_int_equal(rc, MK_EEMPTY);
                continue;
            }
            assert_int_equal(rc, MK_OK);
            assert_true(i < slots);
            assert_int_equal(held[i], 0); /* never handed out twice */
            held[i] = 1;
            nheld++;
            unsigned char *ptr = mk_objpool_ptr(p, i);
            assert_non_null(ptr);
            memset(ptr, (int)i, ss); /* slots do not overlap: checked on release */
            uint32_t back;
            assert_int_equal(mk_objpool_index(p, ptr, &back), MK_OK);
            assert_int_equal(back, i);
        } else {
            uint32_t i = (uint32_t)(rnd(&s) % slots);
            int rc = mk_objpool_release(p, i);
            if (!held[i]) {
                assert_int_equal(rc, MK_EDOUBLEFREE);
                continue;
            }
            assert_int_equal(rc, MK_OK);
            unsigned char *ptr = mk_objpool_ptr(p, i);
            for (size_t b = 0; b < ss; b++) assert_int_equal(ptr[b], (unsigned char)i);
            held[i] = 0;
            nheld--;
        }
        assert_int_equal(mk_objpool_count_free(p), slots - nheld);
    }
    uint32_t idx;
    assert_int_equal(mk_objpool_release(p, (uint32_t)slots), MK_EBADOFF);
    assert_null(mk_objpool_ptr(p, (uint32_t)slots));
    assert_int_equal(mk_objpool_index(p, (char *)mk_objpool_ptr(p, 0) + 1, &idx), MK_EBADOFF);
    assert_int_equal(mk_objpool_index(p, buf, &idx), MK_EBADOFF);
    assert_int_equal(mk_objpool_acquire(NULL, &idx), MK_EINVAL);
    assert_int_equal(mk_objpool_acquire(p, NULL), MK_EINVAL);
    assert_int_equal(mk_objpool_release(NULL, 0), MK_EINVAL);
    size_t n = 99;
    assert_int_equal(mk_objpool_reclaim(p, &n), MK_OK); /* the owner (we) is alive */
    assert_int_equal(n, 0);
    assert_int_equal(mk_objpool_repair(p, &n), MK_OK);
    assert_int_equal(n, 0);
    mk_objpool_close(p);
    free(buf);
}

/* ---- array ------------------------------------------------------------------------ */

static void test_array(void **state) {
    (void)state;
    const size_t len = 1000, es = 12;
    size_t fp = mk_array_footprint(len, es);
    void *buf = abuf(fp);
    mk_array *a;
    assert_int_equal(mk_array_init(buf, fp, len, es, &a), MK_OK);
    assert_int_equal(mk_array_length(a), len);
    assert_int_equal(mk_array_elem_size(a), es);
    unsigned char e[12], got[12];
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(mk_array_get(a, i, got), MK_OK); /* zeroed by init */
        memset(e, 0, es);
        assert_memory_equal(got, e, es);
        fill(e, es, i);
        assert_int_equal(mk_array_set(a, i, e), MK_OK);
    }
    unsigned char *data = mk_array_data(a);
    for (size_t i = 0; i < len; i++) {
        fill(e, es, i);
        assert_memory_equal(data + i * es, e, es);
        assert_ptr_equal(mk_array_at(a, i), data + i * es);
    }
    assert_int_equal(((uintptr_t)data) % MK_IPC_ALIGN, 0);
    assert_null(mk_array_at(a, len));
    assert_int_equal(mk_array_get(a, len, got), MK_EBADOFF);
    assert_int_equal(mk_array_set(a, len, e), MK_EBADOFF);
    assert_int_equal(mk_array_get(NULL, 0, got), MK_EINVAL);
    assert_int_equal(mk_array_set(a, 0, NULL), MK_EINVAL);
    mk_array *b;
    assert_int_equal(mk_array_attach(buf, fp, es, &b), MK_OK); /* a second view */
    fill(e, es, 5);
    assert_int_equal(mk_array_get(b, 5, got), MK_OK);
    assert_memory_equal(got, e, es);
    mk_array_close(b);
    mk_array_close(a);
    free(buf);
}

/* ---- atomics ---------------------------------------------------------------------- */

static void test_atomics_private(void **state) {
    (void)state;
    void *b32 = abuf(MK_ATOMIC_FOOTPRINT), *b64 = abuf(MK_ATOMIC_FOOTPRINT);
    mk_atomic32 *a, *a2;
    mk_atomic64 *c, *c2;
    assert_int_equal(mk_atomic32_init(b32, MK_ATOMIC_FOOTPRINT, 7, &a), MK_OK);
    assert_int_equal(mk_atomic64_init(b64, MK_ATOMIC_FOOTPRINT, UINT64_C(1) << 40, &c), MK_OK);
    assert_int_equal(mk_atomic32_attach(b32, MK_ATOMIC_FOOTPRINT, &a2), MK_OK);
    assert_int_equal(mk_atomic64_attach(b64, MK_ATOMIC_FOOTPRINT, &c2), MK_OK);
    assert_int_equal(mk_atomic32_attach(b64, MK_ATOMIC_FOOTPRINT, &a2), MK_ETYPE);
    assert_int_equal(mk_atomic64_attach(b32, MK_ATOMIC_FOOTPRINT, &c2), MK_ETYPE);
    assert_int_equal(mk_atomic32_load(a), 7);
    assert_int_equal(mk_atomic32_add(a, 5), 7);
    assert_int_equal(mk_atomic32_exchange(a, 100), 12);
    mk_atomic32_store(a, UINT32_MAX);
    assert_int_equal(mk_atomic32_add(a, 2), UINT32_MAX); /* wraps */
    assert_int_equal(mk_atomic32_load(a), 1);
    uint32_t ex = 5;
    assert_false(mk_atomic32_cas(a, &ex, 9));
    assert_int_equal(ex, 1);
    assert_true(mk_atomic32_cas(a, &ex, 9));
    assert_int_equal(mk_atomic32_load(a), 9);
    assert_true(mk_atomic64_load(c) == UINT64_C(1) << 40);
    assert_true(mk_atomic64_add(c, 1) == UINT64_C(1) << 40);
    assert_true(mk_atomic64_exchange(c, 3) == (UINT64_C(1) << 40) + 1);
    mk_atomic64_store(c, 42);
    uint64_t ex64 = 41;
    assert_false(mk_atomic64_cas(c, &ex64, 1));
    assert_true(ex64 == 42);
    assert_true(mk_atomic64_cas(c, &ex64, UINT64_MAX));
    assert_true(mk_atomic64_load(c2) == UINT64_MAX);
    assert_int_equal(mk_atomic32_init(b32, 64, 0, &a), MK_ETRUNCATED);
    assert_int_equal(mk_atomic32_init((char *)b32 + 8, 120, 0, &a), MK_EALIGN);
    assert_int_equal(mk_atomic64_init(NULL, 128, 0, &c), MK_EINVAL);
    assert_int_equal(mk_atomic64_init(b64, 128, 0, NULL), MK_EINVAL);
    free(b32);
    free(b64);
}

/* ---- private-buffer errors and attach checks ------------------------------------------- */

static void test_private_errors(void **state) {
    (void)state;
    size_t fp = mk_spsc_footprint(16, 8);
    unsigned char *buf = abuf(fp + 64);
    mk_spsc *q;
    assert_int_equal(mk_spsc_footprint(0, 8), 0);
    assert_int_equal(mk_spsc_footprint(12, 8), 0);
    assert_int_equal(mk_spsc_footprint(16, 0), 0);
    assert_int_equal(mk_spsc_footprint(16, MK_IPC_ELEM_MAX + 1), 0);
    assert_int_equal(mk_spsc_init(buf, fp, 0, 8, &q), MK_ECAPACITY);
    assert_int_equal(mk_spsc_init(buf, fp, 1, 8, &q), MK_ECAPACITY);
    assert_int_equal(mk_spsc_init(buf, fp, 12, 8, &q), MK_ECAPACITY);
    assert_int_equal(mk_spsc_init(buf, fp, MK_IPC_CAPACITY_MAX * 2, 8, &q), MK_ECAPACITY);
    assert_int_equal(mk_mpmc_init(buf, fp, 6, 8, NULL), MK_EINVAL);
    mk_mpmc *mq;
    assert_int_equal(mk_mpmc_init(buf, fp, 6, 8, &mq), MK_ECAPACITY);
    assert_int_equal(mk_spsc_init(buf, fp, 16, 0, &q), MK_EELEMSIZE);
    assert_int_equal(mk_spsc_init(buf, fp, 16, MK_IPC_ELEM_MAX + 1, &q), MK_EELEMSIZE);
    assert_int_equal(mk_spsc_init(NULL, fp, 16, 8, &q), MK_EINVAL);
    assert_int_equal(mk_spsc_init(buf + 8, fp, 16, 8, &q), MK_EALIGN);
    assert_int_equal(mk_spsc_init(buf, fp - 1, 16, 8, &q), MK_ETRUNCATED);
    mk_objpool *p;
    assert_int_equal(mk_objpool_init(buf, fp, 0, 8, &p), MK_ECAPACITY);
    mk_array *a;
    assert_int_equal(mk_array_init(buf, fp, 0, 8, &a), MK_ECAPACITY);

    /* attach: each kind of damage has its own code */
    memset(buf, 0, fp);
    assert_int_equal(mk_spsc_attach(buf, fp, 8, &q), MK_EBADMAGIC);
    assert_int_equal(mk_spsc_init(buf, fp, 16, 8, &q), MK_OK);
    mk_spsc_close(q);
    mk_ring *r;
    assert_int_equal(mk_ring_attach(buf, fp, 8, &r), MK_ETYPE);
    assert_int_equal(mk_spsc_attach(buf, fp, 16, &q), MK_EELEMSIZE);
    assert_int_equal(mk_spsc_attach(buf, fp - 1, 8, &q), MK_ETRUNCATED);
    assert_int_equal(mk_spsc_attach(buf, 16, 8, &q), MK_ETRUNCATED);
    assert_int_equal(mk_spsc_attach(buf + 8, fp, 8, &q), MK_EALIGN);
    mk__ds_hdr *h = (mk__ds_hdr *)buf;
    h->version++;
    assert_int_equal(mk_spsc_attach(buf, fp, 8, &q), MK_EVERSION);
    h->version--;
    h->layout ^= 1;
    assert_int_equal(mk_spsc_attach(buf, fp, 8, &q), MK_ELAYOUT);
    h->layout ^= 1;
    h->capacity = 1u << 20; /* larger than the buffer, and the check no longer agrees */
    assert_int_equal(mk_spsc_attach(buf, fp, 8, &q), MK_ECORRUPT);
    h->capacity = 16;
    h->bytes += 64;
    assert_int_equal(mk_spsc_attach(buf, fp, 8, &q), MK_ECORRUPT);
    h->bytes -= 64;
    assert_int_equal(mk_spsc_attach(buf, fp, 8, &q), MK_OK);
    mk_spsc_close(q);
    /* flags */
    assert_int_equal(mk_spsc_create(NULL, "x", 16, 8, 0x80, &q), MK_EINVAL);
    assert_int_equal(mk_spsc_create(NULL, "x", 16, 8, 0, &q), MK_EINVAL);
    assert_int_equal(mk_spsc_open(NULL, "x", 8, &q), MK_EINVAL);
    free(buf);
}

/* Damaged indices inside an attached queue never make a copy overrun. */
static void test_damaged_indices(void **state) {
    (void)state;
    size_t fp = mk_ring_footprint(8, 8);
    unsigned char *buf = abuf(fp);
    mk_ring *r;
    assert_int_equal(mk_ring_init(buf, fp, 8, 8, &r), MK_OK);
    uint64_t *ctl = (uint64_t *)(buf + 64); /* producer line: head, tail cache */
    uint64_t *cons = (uint64_t *)(buf + 128);
    ctl[0] = 1000; /* head far beyond tail + capacity */
    uint64_t v[32] = {0};
    assert_int_equal(mk_ring_pop_bulk(r, v, 32), 0);
    assert_int_equal(mk_ring_push_bulk(r, v, 32), 0);
    size_t got = 1;
    assert_null(mk_ring_peek(r, 32, &got));
    assert_int_equal(got, 0);
    assert_int_equal(mk_ring_size(r), 8);
    ctl[0] = 0;
    cons[0] = 5; /* tail ahead of head */
    assert_int_equal(mk_ring_push_bulk(r, v, 32), 0);
    assert_null(mk_ring_reserve(r, 4, &got));
    mk_ring_close(r);
    free(buf);
}

/* ---- timed waits ------------------------------------------------------------------------ */

static void test_timeouts(void **state) {
    (void)state;
    uint64_t e = 0;
    size_t fp = mk_mpmc_footprint(2, 8) + mk_spsc_footprint(2, 8);
    void *b1 = abuf(fp), *b2 = abuf(fp), *b3 = abuf(fp);
    mk_spsc *q;
    mk_mpmc *m;
    mk_ring *r;
    assert_int_equal(mk_spsc_init(b1, fp, 2, 8, &q), MK_OK);
    assert_int_equal(mk_mpmc_init(b2, fp, 2, 8, &m), MK_OK);
    assert_int_equal(mk_ring_init(b3, fp, 2, 8, &r), MK_OK);
    assert_int_equal(mk_spsc_pop_wait(q, &e, 0), MK_ETIMEDOUT);
    assert_int_equal(mk_spsc_pop_wait(q, &e, 2000000), MK_ETIMEDOUT);
    assert_int_equal(mk_mpmc_pop_wait(m, &e, 2000000), MK_ETIMEDOUT);
    assert_int_equal(mk_ring_wait_not_empty(r, 2000000), MK_ETIMEDOUT);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(mk_spsc_push_wait(q, &e, 0), MK_OK);
        assert_int_equal(mk_mpmc_push_wait(m, &e, -1), MK_OK);
        assert_int_equal(mk_ring_push_bulk(r, &e, 1), 1);
    }
    assert_int_equal(mk_spsc_push_wait(q, &e, 2000000), MK_ETIMEDOUT);
    assert_int_equal(mk_mpmc_push_wait(m, &e, 2000000), MK_ETIMEDOUT);
    assert_int_equal(mk_ring_wait_not_full(r, 2000000), MK_ETIMEDOUT);
    assert_int_equal(mk_ring_wait_not_empty(r, -1), MK_OK);
    assert_int_equal(mk_spsc_pop_wait(q, &e, -1), MK_OK);
    assert_int_equal(mk_mpmc_pop_wait(m, &e, 1000), MK_OK);
    assert_int_equal(mk_ring_pop_bulk(r, &e, 1), 1);
    assert_int_equal(mk_ring_wait_not_full(r, 0), MK_OK);
    mk_spsc_close(q);
    mk_mpmc_close(m);
    mk_ring_close(r);
    free(b1);
    free(b2);
    free(b3);
}

/* A sleeper is woken by the other side (no timeout): each queue. */
struct waker {
    mk_spsc *q;
    mk_mpmc *m;
    int rc_q, rc_m;
    uint64_t got_q, got_m;
};

static void *sleeper(void *arg) {
    struct waker *w = arg;
    w->rc_q = mk_spsc_pop_wait(w->q, &w->got_q, -1);
    w->rc_m = mk_mpmc_pop_wait(w->m, &w->got_m, -1);
    return NULL;
}

static void test_wake(void **state) {
    (void)state;
    size_t fp = mk_mpmc_footprint(4, 8);
    void *b1 = abuf(fp), *b2 = abuf(fp);
    struct waker w = {0};
    assert_int_equal(mk_spsc_init(b1, fp, 4, 8, &w.q), MK_OK);
    assert_int_equal(mk_mpmc_init(b2, fp, 4, 8, &w.m), MK_OK);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, sleeper, &w), 0);
    usleep(20000); /* usually asleep by now; the test is correct either way */
    uint64_t v = 11;
    assert_int_equal(mk_spsc_try_push(w.q, &v), MK_OK);
    usleep(20000);
    v = 22;
    assert_int_equal(mk_mpmc_try_push(w.m, &v), MK_OK);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(w.rc_q, MK_OK);
    assert_int_equal(w.rc_m, MK_OK);
    assert_int_equal(w.got_q, 11);
    assert_int_equal(w.got_m, 22);
    mk_spsc_close(w.q);
    mk_mpmc_close(w.m);
    free(b1);
    free(b2);
}

/* ---- crash points simulated in-process: repairs --------------------------------------------- */

static jmp_buf g_jump;
static int g_point;
static void jump_hook(int point) {
    if (point == g_point) longjmp(g_jump, 1);
}

static void test_mpmc_repair(void **state) {
    (void)state;
    size_t fp = mk_mpmc_footprint(4, 8);
    void *buf = abuf(fp);
    mk_mpmc *q;
    assert_int_equal(mk_mpmc_init(buf, fp, 4, 8, &q), MK_OK);
    uint64_t v = 1, got = 0;
    assert_int_equal(mk_mpmc_try_push(q, &v), MK_OK);
    g_point = MK__DS_CP_MPMC_PUSH_CLAIMED; /* a producer "dies" after its claim */
    mk__ds_test_hook = jump_hook;
    v = 2;
    if (setjmp(g_jump) == 0) mk_mpmc_try_push(q, &v);
    mk__ds_test_hook = NULL;
    v = 3;
    assert_int_equal(mk_mpmc_try_push(q, &v), MK_OK);
    assert_int_equal(mk_mpmc_try_pop(q, &got), MK_OK);
    assert_int_equal(got, 1);
    assert_int_equal(mk_mpmc_try_pop(q, &got), MK_EEMPTY); /* stuck at the claimed cell */
    assert_int_equal(mk_mpmc_pop_wait(q, &got, 1000000), MK_ETIMEDOUT);
    size_t n = 0;
    assert_int_equal(mk_mpmc_repair(q, &n), MK_OK);
    assert_int_equal(n, 1);
    assert_int_equal(mk_mpmc_try_pop(q, &got), MK_OK); /* the hole is skipped */
    assert_int_equal(got, 3);
    assert_int_equal(mk_mpmc_try_pop(q, &got), MK_EEMPTY);

    /* a consumer "dies" after its claim: producers stop when they reach the cell */
    v = 4;
    assert_int_equal(mk_mpmc_try_push(q, &v), MK_OK);
    g_point = MK__DS_CP_MPMC_POP_CLAIMED;
    mk__ds_test_hook = jump_hook;
    if (setjmp(g_jump) == 0) mk_mpmc_try_pop(q, &got);
    mk__ds_test_hook = NULL;
    int pushed = 0;
    while (mk_mpmc_try_push(q, &v) == MK_OK) pushed++;
    assert_int_equal(pushed, 3); /* one cell is lost until the repair */
    assert_int_equal(mk_mpmc_repair(q, &n), MK_OK);
    assert_int_equal(n, 1);
    assert_int_equal(mk_mpmc_try_push(q, &v), MK_OK);
    assert_int_equal(mk_mpmc_size(q), 4);
    mk_mpmc_close(q);
    free(buf);
}

static void test_objpool_repair(void **state) {
    (void)state;
    size_t fp = mk_objpool_footprint(4, 8);
    void *buf = abuf(fp);
    mk_objpool *p;
    assert_int_equal(mk_objpool_init(buf, fp, 4, 8, &p), MK_OK);
    uint32_t i = 0, j = 0;
    g_point = MK__DS_CP_POOL_ACQUIRED;
    mk__ds_test_hook = jump_hook;
    if (setjmp(g_jump) == 0) mk_objpool_acquire(p, &i);
    g_point = MK__DS_CP_POOL_RELEASING;
    assert_int_equal(mk_objpool_acquire(p, &j), MK_OK);
    if (setjmp(g_jump) == 0) mk_objpool_release(p, j);
    mk__ds_test_hook = NULL;
    assert_int_equal(mk_objpool_count_free(p), 2);
    size_t n = 0;
    assert_int_equal(mk_objpool_repair(p, &n), MK_OK);
    assert_int_equal(n, 2);
    assert_int_equal(mk_objpool_count_free(p), 4);
    mk_objpool_close(p);
    free(buf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spsc_model),     cmocka_unit_test(test_ring_model),
        cmocka_unit_test(test_mpmc_model),     cmocka_unit_test(test_objpool_model),
        cmocka_unit_test(test_array),          cmocka_unit_test(test_atomics_private),
        cmocka_unit_test(test_private_errors), cmocka_unit_test(test_damaged_indices),
        cmocka_unit_test(test_timeouts),       cmocka_unit_test(test_wake),
        cmocka_unit_test(test_mpmc_repair),    cmocka_unit_test(test_objpool_repair),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
