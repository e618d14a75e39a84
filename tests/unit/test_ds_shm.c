/* The lock-free structures in a segment, found by name: create and open of
 * every type, and every naming error (wrong type, element size, capacity,
 * exclusive create, missing name, a creator that never finished). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "memkit/ipc.h"
#include "memkit/shm.h"

static char g_name[64];

static int setup(void **state) {
    snprintf(g_name, sizeof g_name, "/mk-test-ds-%ld", (long)getpid());
    mk_shm_unlink(g_name, 0);
    mk_shm_config cfg = {.size = 4u << 20, .max_size = 16u << 20, .policy = MK_POLICY_TLSF};
    mk_shm *s;
    if (mk_shm_create(g_name, &cfg, &s) != MK_OK) return -1;
    *state = s;
    return 0;
}

static int teardown(void **state) {
    mk_shm_close(*state);
    mk_shm_unlink(g_name, 0);
    return 0;
}

static void test_each_type_by_name(void **state) {
    mk_shm *s = *state, *s2;
    assert_int_equal(mk_shm_open(g_name, 0, &s2), MK_OK); /* a second view, other address */
    mk_spsc *q, *q2;
    mk_mpmc *m, *m2;
    mk_ring *r, *r2;
    mk_array *a, *a2;
    mk_objpool *p, *p2;
    mk_atomic32 *x, *x2;
    mk_atomic64 *y, *y2;
    int created;
    (void)created;
    assert_int_equal(mk_spsc_create(s, "q", 64, 8, 0, &q), MK_OK);
    assert_int_equal(mk_mpmc_create(s, "m", 64, 8, MK_IPC_EXCL, &m), MK_OK);
    assert_int_equal(mk_ring_create(s, "r", 64, 16, 0, &r), MK_OK);
    assert_int_equal(mk_array_create(s, "a", 100, 4, 0, &a), MK_OK);
    assert_int_equal(mk_objpool_create(s, "p", 10, 100, 0, &p), MK_OK);
    assert_int_equal(mk_atomic32_create(s, "x", 5, 0, &x), MK_OK);
    assert_int_equal(mk_atomic64_create(s, "y", 6, 0, &y), MK_OK);
    assert_int_equal(mk_spsc_open(s2, "q", 8, &q2), MK_OK);
    assert_int_equal(mk_mpmc_open(s2, "m", 8, &m2), MK_OK);
    assert_int_equal(mk_ring_open(s2, "r", 16, &r2), MK_OK);
    assert_int_equal(mk_array_open(s2, "a", 4, &a2), MK_OK);
    assert_int_equal(mk_objpool_open(s2, "p", 100, &p2), MK_OK);
    assert_int_equal(mk_atomic32_open(s2, "x", &x2), MK_OK);
    assert_int_equal(mk_atomic64_open(s2, "y", &y2), MK_OK);
    /* find-or-create gives the same structure */
    mk_spsc *q3;
    assert_int_equal(mk_spsc_create(s2, "q", 64, 8, 0, &q3), MK_OK);
    uint64_t v = 77, got = 0;
    assert_int_equal(mk_spsc_try_push(q, &v), MK_OK);
    assert_int_equal(mk_spsc_try_pop(q3, &got), MK_OK);
    assert_int_equal(got, 77);
    assert_int_equal(mk_mpmc_try_push(m, &v), MK_OK);
    assert_int_equal(mk_mpmc_try_pop(m2, &got), MK_OK);
    unsigned char e[16] = {1, 2, 3}, f[16];
    assert_int_equal(mk_ring_push_bulk(r, e, 1), 1);
    assert_int_equal(mk_ring_pop_bulk(r2, f, 1), 1);
    assert_memory_equal(e, f, 16);
    MK_ARRAY_ELEM(mk_array_data(a), uint32_t, 99) = 1234;
    assert_int_equal(MK_ARRAY_ELEM(mk_array_data(a2), uint32_t, 99), 1234);
    assert_int_equal(mk_array_length(a2), 100);
    uint32_t i, j;
    assert_int_equal(mk_objpool_acquire(p, &i), MK_OK);
    assert_int_equal(mk_objpool_release(p2, i), MK_OK);
    assert_int_equal(mk_objpool_acquire(p2, &j), MK_OK);
    assert_int_equal(i, j);
    assert_int_equal(mk_atomic32_add(x, 1), 5);
    assert_int_equal(mk_atomic32_load(x2), 6);
    assert_int_equal(mk_atomic64_add(y2, 1), 6);
    assert_int_equal(mk_atomic64_load(y), 7);
    /* structures survive in the segment; the directory says what they are */
    mk_shm_obj o;
    assert_int_equal(mk_shm_obj_find(s, "q", &o), MK_OK);
    assert_int_equal(o.type, MK_IPC_TYPE_SPSC);
    mk_spsc_close(q);
    mk_spsc_close(q2);
    mk_spsc_close(q3);
    mk_mpmc_close(m);
    mk_mpmc_close(m2);
    mk_ring_close(r);
    mk_ring_close(r2);
    mk_array_close(a);
    mk_array_close(a2);
    mk_objpool_close(p);
    mk_objpool_close(p2);
    mk_fault fault;
    assert_int_equal(mk_shm_validate(s, &fault), MK_OK);
    mk_shm_close(s2);
}

static void test_name_errors(void **state) {
    mk_shm *s = *state;
    mk_spsc *q;
    mk_mpmc *m;
    mk_ring *r;
    mk_array *a;
    mk_objpool *p;
    mk_atomic32 *x;
    mk_atomic64 *y;
    assert_int_equal(mk_spsc_create(s, "e.q", 16, 8, 0, &q), MK_OK);
    mk_spsc_close(q);
    /* another type under the name */
    assert_int_equal(mk_mpmc_create(s, "e.q", 16, 8, 0, &m), MK_ETYPE);
    assert_int_equal(mk_mpmc_open(s, "e.q", 8, &m), MK_ETYPE);
    assert_int_equal(mk_ring_open(s, "e.q", 8, &r), MK_ETYPE);
    assert_int_equal(mk_ring_create(s, "e.q", 16, 8, 0, &r), MK_ETYPE);
    assert_int_equal(mk_array_open(s, "e.q", 8, &a), MK_ETYPE);
    assert_int_equal(mk_objpool_open(s, "e.q", 8, &p), MK_ETYPE);
    assert_int_equal(mk_atomic32_open(s, "e.q", &x), MK_ETYPE);
    assert_int_equal(mk_atomic64_create(s, "e.q", 0, 0, &y), MK_ETYPE);
    /* the same type with another element size or capacity */
    assert_int_equal(mk_spsc_open(s, "e.q", 16, &q), MK_EELEMSIZE);
    assert_int_equal(mk_spsc_create(s, "e.q", 16, 4, 0, &q), MK_EELEMSIZE);
    assert_int_equal(mk_spsc_create(s, "e.q", 32, 8, 0, &q), MK_ECAPACITY);
    assert_int_equal(mk_spsc_create(s, "e.q", 8, 8, 0, &q), MK_ECAPACITY);
    assert_int_equal(mk_spsc_create(s, "e.q", 16, 8, MK_IPC_EXCL, &q), MK_EEXIST);
    /* bad arguments */
    assert_int_equal(mk_spsc_create(s, "e.bad", 0, 8, 0, &q), MK_ECAPACITY);
    assert_int_equal(mk_spsc_create(s, "e.bad", 24, 8, 0, &q), MK_ECAPACITY);
    assert_int_equal(mk_mpmc_create(s, "e.bad", 16, 0, 0, &m), MK_EELEMSIZE);
    assert_int_equal(mk_array_create(s, "e.bad", 0, 8, 0, &a), MK_ECAPACITY);
    assert_int_equal(mk_objpool_create(s, "e.bad", 4, MK_IPC_ELEM_MAX + 1, 0, &p), MK_EELEMSIZE);
    assert_int_equal(mk_spsc_create(s, "", 16, 8, 0, &q), MK_EINVAL);
    assert_int_equal(mk_spsc_create(s, NULL, 16, 8, 0, &q), MK_EINVAL);
    assert_int_equal(mk_spsc_create(s, "e.bad", 16, 8, 0, NULL), MK_EINVAL);
    assert_int_equal(mk_ring_create(s, "e.bad", 16, 8, 0x10, &r), MK_EINVAL);
    /* names that do not exist */
    assert_int_equal(mk_spsc_open(s, "e.none", 8, &q), MK_ENOENT);
    assert_int_equal(mk_atomic64_open(s, "e.none", &y), MK_ENOENT);
    assert_int_equal(mk_shm_obj_find(s, "e.bad", NULL), MK_ENOENT); /* nothing was made */
    /* too large for the segment */
    assert_int_equal(mk_array_create(s, "e.big", (size_t)1 << 30, 64, 0, &a), MK_ETOOBIG);
}

/* A name whose creator never published the header (it died creating):
 * openers wait a bounded time, then get MK_EBUSY. */
static void test_unfinished_creator(void **state) {
    mk_shm *s = *state;
    mk_off off;
    assert_int_equal(
        mk_shm_obj_create(s, "e.half", MK_IPC_TYPE_SPSC, 4096, MK_SHM_OBJ_EXCL, &off, NULL), MK_OK);
    mk_spsc *q;
    assert_int_equal(mk_spsc_open(s, "e.half", 8, &q), MK_EBUSY);
    assert_int_equal(mk_shm_obj_remove(s, "e.half"), MK_OK);
    /* and an object of our tag with a header that does not fit it */
    assert_int_equal(mk_shm_obj_create(s, "e.tiny", MK_IPC_TYPE_SPSC, 16, 0, &off, NULL), MK_OK);
    assert_int_equal(mk_spsc_open(s, "e.tiny", 8, &q), MK_ECORRUPT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_type_by_name),
        cmocka_unit_test(test_name_errors),
        cmocka_unit_test(test_unfinished_creator),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
