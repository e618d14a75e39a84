/* Unit tests of the stack allocator (include/memkit/stack.h). */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "memkit/stack.h"

#define CAP 65536u

static mk_stack *make(void *buf, size_t size, unsigned flags) {
    mk_stack *s = NULL;
    int rc = mk_stack_create(buf, size, flags, &s);
    if (rc != MK_OK) fail_msg("mk_stack_create: %s", mk_strerror(rc));
    return s;
}

static mk_stack_usage usage(mk_stack *s) {
    mk_stack_usage u;
    assert_int_equal(mk_stack_stats(s, &u), MK_OK);
    return u;
}

static void test_create_errors(void **state) {
    (void)state;
    mk_stack *s = NULL;
    assert_int_equal(mk_stack_create(NULL, CAP, 0, NULL), MK_EINVAL);
    assert_int_equal(mk_stack_create(NULL, mk_stack_min_size() - 1, 0, &s), MK_EINVAL);
    assert_int_equal(mk_stack_create(NULL, CAP, 0x10, &s), MK_EINVAL);
    unsigned char *buf = aligned_alloc(64, CAP);
    assert_non_null(buf);
    assert_int_equal(mk_stack_create(buf + 4, CAP - 4, 0, &s), MK_EINVAL);
    assert_null(s);
    /* the minimum size holds one 16-byte block */
    s = make(buf, mk_stack_min_size(), 0);
    assert_non_null(mk_stack_push(s, 16, 16, NULL));
    assert_null(mk_stack_push(s, 1, 16, NULL));
    assert_int_equal(mk_stack_destroy(s), MK_OK);
    assert_int_equal(mk_stack_destroy(s), MK_EINVAL); /* destroyed */
    assert_int_equal(mk_stack_destroy(NULL), MK_EINVAL);
    free(buf);

    /* NULL stack everywhere */
    int err = 0;
    mk_stack_marker m;
    mk_stack_usage u;
    assert_null(mk_stack_push(NULL, 8, 0, &err));
    assert_int_equal(err, MK_EINVAL);
    assert_int_equal(mk_stack_pop(NULL, &m), MK_EINVAL);
    assert_int_equal(mk_stack_mark(NULL, &m), MK_EINVAL);
    assert_int_equal(mk_stack_rollback(NULL, &m), MK_EINVAL);
    assert_int_equal(mk_stack_reset(NULL), MK_EINVAL);
    assert_int_equal(mk_stack_stats(NULL, &u), MK_EINVAL);
    assert_int_equal(mk_stack_stats_reset(NULL), MK_EINVAL);
    assert_int_equal(mk_stack_stats_print(NULL, stdout), MK_EINVAL);
    s = make(NULL, CAP, 0);
    assert_int_equal(mk_stack_pop(s, NULL), MK_EINVAL);
    assert_int_equal(mk_stack_mark(s, NULL), MK_EINVAL);
    assert_int_equal(mk_stack_rollback(s, NULL), MK_EINVAL);
    assert_int_equal(mk_stack_stats(s, NULL), MK_EINVAL);
    assert_int_equal(mk_stack_stats_print(s, NULL), MK_EINVAL);
    assert_int_equal(mk_stack_destroy(s), MK_OK);
}

static void push_pop(mk_stack *s) {
    enum { N = 50 };
    unsigned char *b[N];
    size_t n[N];
    int err = 1;
    for (int i = 0; i < N; i++) {
        size_t al = (size_t)1 << (i % 8); /* 1 .. 128 */
        n[i] = (size_t)(i * 13 % 97);
        b[i] = mk_stack_push(s, n[i], al, &err);
        assert_non_null(b[i]);
        assert_int_equal(err, MK_OK);
        assert_int_equal((uintptr_t)b[i] % al, 0);
        assert_int_equal((uintptr_t)b[i] % 8, 0);
        if (i) assert_true(b[i] >= b[i - 1] + n[i - 1]); /* no overlap */
        memset(b[i], i, n[i]);
    }
    assert_int_equal(usage(s).blocks, N);
    for (int i = N - 1; i >= 0; i--) {
        for (size_t k = 0; k < n[i]; k++) assert_int_equal(b[i][k], (unsigned char)i);
        if (i > 0) assert_int_equal(mk_stack_pop(s, b[i - 1]), MK_ENOTTOP);
        assert_int_equal(mk_stack_pop(s, b[i]), MK_OK);
        assert_int_equal(mk_stack_pop(s, b[i]), MK_EBADOFF); /* popped already */
    }
    mk_stack_usage u = usage(s);
    assert_int_equal(u.used, 0);
    assert_int_equal(u.blocks, 0);
}

static void test_push_pop(void **state) {
    (void)state;
    mk_stack *s = make(NULL, CAP, 0);
    push_pop(s);
    push_pop(s); /* again after emptying */
    mk_stack_usage u = usage(s);
    assert_int_equal(u.n_push, 100);
    assert_int_equal(u.n_pop, 100);
    assert_true(u.peak > 0);
    assert_true(u.capacity > CAP - 256 && u.capacity < CAP);
    assert_int_equal(mk_stack_destroy(s), MK_OK);

    void *buf = aligned_alloc(16, CAP);
    assert_non_null(buf);
    s = make(buf, CAP, MK_STACK_THREADSAFE);
    assert_ptr_equal(s, buf);
    push_pop(s);
    assert_int_equal(mk_stack_destroy(s), MK_OK);
    free(buf);
}

static void test_pop_errors(void **state) {
    (void)state;
    mk_stack *s = make(NULL, CAP, 0);
    char *a = mk_stack_push(s, 100, 0, NULL);
    char *b = mk_stack_push(s, 100, 0, NULL);
    char *c = mk_stack_push(s, 0, 0, NULL); /* size 0: unique */
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_true(c > b);
    int local;
    assert_int_equal(mk_stack_pop(s, a), MK_ENOTTOP);
    assert_int_equal(mk_stack_pop(s, b), MK_ENOTTOP);
    assert_int_equal(mk_stack_pop(s, a + 16), MK_EBADOFF); /* interior */
    assert_int_equal(mk_stack_pop(s, a + 1), MK_EBADOFF);
    assert_int_equal(mk_stack_pop(s, &local), MK_EBADOFF);
    assert_int_equal(mk_stack_pop(s, c + 64), MK_EBADOFF); /* above the top */
    assert_int_equal(usage(s).blocks, 3);                  /* nothing changed */
    assert_int_equal(mk_stack_pop(s, c), MK_OK);
    assert_int_equal(mk_stack_pop(s, a), MK_ENOTTOP);

    /* an overrun that hits b's header is reported, not obeyed */
    memset(a, 0xFF, 100 + 32);
    assert_int_equal(mk_stack_pop(s, b), MK_ECORRUPT);
    assert_int_equal(usage(s).blocks, 2);
    assert_int_equal(mk_stack_reset(s), MK_OK);
    assert_int_equal(usage(s).blocks, 0);
    assert_int_equal(mk_stack_destroy(s), MK_OK);
}

static void test_capacity(void **state) {
    (void)state;
    mk_stack *s = make(NULL, CAP, 0);
    int err = 0;
    size_t cap = usage(s).capacity;
    assert_null(mk_stack_push(s, CAP * 2, 0, &err));
    assert_int_equal(err, MK_ETOOBIG);
    assert_null(mk_stack_push(s, SIZE_MAX, 0, &err));
    assert_int_equal(err, MK_ETOOBIG);
    assert_null(mk_stack_push(s, 8, 3, &err));
    assert_int_equal(err, MK_EALIGN);
    assert_null(mk_stack_push(s, 8, 8192, &err));
    assert_int_equal(err, MK_EALIGN);
    /* fill exactly */
    int n = 0;
    while (mk_stack_push(s, 1000, 16, &err)) n++;
    assert_int_equal(err, MK_ENOMEM);
    assert_true(n >= (int)(cap / 1024) - 1 && n <= (int)(cap / 1016));
    mk_stack_usage u = usage(s);
    assert_int_equal(u.n_failed, 1);
    assert_true(u.used <= u.capacity);
    assert_int_equal(u.peak, u.used);
    /* a page-aligned block */
    assert_int_equal(mk_stack_reset(s), MK_OK);
    void *pg = mk_stack_push(s, 10, 4096, &err);
    assert_non_null(pg);
    assert_int_equal((uintptr_t)pg % 4096, 0);
    assert_int_equal(mk_stack_stats_reset(s), MK_OK);
    u = usage(s);
    assert_int_equal(u.n_push, 0);
    assert_int_equal(u.n_failed, 0);
    assert_int_equal(u.peak, u.used);
    assert_int_equal(mk_stack_destroy(s), MK_OK);
}

static void test_markers(void **state) {
    (void)state;
    mk_stack *s = make(NULL, CAP, 0);
    mk_stack_marker m0, m1, m2;
    assert_int_equal(mk_stack_mark(s, &m0), MK_OK);
    char *a = mk_stack_push(s, 10, 0, NULL);
    memset(a, 'a', 10);
    assert_int_equal(mk_stack_mark(s, &m1), MK_OK);
    char *b = mk_stack_push(s, 20, 0, NULL);
    char *c = mk_stack_push(s, 30, 0, NULL);
    assert_non_null(b);
    assert_non_null(c);
    assert_int_equal(mk_stack_mark(s, &m2), MK_OK);
    mk_stack_usage u1 = usage(s);

    assert_int_equal(mk_stack_rollback(s, &m1), MK_OK);
    mk_stack_usage u = usage(s);
    assert_int_equal(u.blocks, 1);
    assert_true(u.used < u1.used);
    assert_int_equal(a[9], 'a');
    /* a is the top again: pop works, and b/c are gone */
    assert_int_equal(mk_stack_pop(s, b), MK_EBADOFF);
    assert_int_equal(mk_stack_rollback(s, &m2), MK_EINVAL); /* above the top */
    /* the next push reuses b's place */
    char *b2 = mk_stack_push(s, 20, 0, NULL);
    assert_ptr_equal(b2, b);
    assert_int_equal(mk_stack_pop(s, b2), MK_OK);
    assert_int_equal(mk_stack_pop(s, a), MK_OK);
    assert_int_equal(usage(s).used, 0);

    /* forged or foreign markers are refused */
    a = mk_stack_push(s, 10, 0, NULL);
    mk_stack_push(s, 10, 0, NULL);
    mk_stack_marker f = m1;
    f.top -= 8;
    assert_int_equal(mk_stack_rollback(s, &f), MK_EINVAL);
    mk_stack *other = make(NULL, CAP, 0);
    mk_stack_marker om;
    mk_stack_push(other, 100, 0, NULL);
    mk_stack_push(other, 100, 0, NULL);
    assert_int_equal(mk_stack_mark(other, &om), MK_OK);
    assert_int_equal(mk_stack_rollback(s, &om), MK_EINVAL);
    assert_int_equal(usage(s).blocks, 2);

    /* rollback to the empty marker empties the stack */
    assert_int_equal(mk_stack_rollback(s, &m0), MK_OK);
    u = usage(s);
    assert_int_equal(u.used, 0);
    assert_int_equal(u.blocks, 0);
    assert_int_equal(mk_stack_pop(s, a), MK_EBADOFF);
    assert_true(u.n_rollback >= 2);

    FILE *fp = tmpfile();
    assert_non_null(fp);
    assert_int_equal(mk_stack_stats_print(s, fp), MK_OK);
    assert_true(ftell(fp) > 0);
    fclose(fp);
    assert_int_equal(mk_stack_destroy(other), MK_OK);
    assert_int_equal(mk_stack_destroy(s), MK_OK);
}

typedef struct targ {
    mk_stack *s;
    int failures;
} targ;

/* With a shared stack, each thread pushes then pops its own block while it
 * is (usually) not the top: pops that fail with MK_ENOTTOP are retried. The
 * point is that the lock keeps the bookkeeping exact under TSan. */
static void *worker(void *p) {
    targ *t = p;
    for (int i = 0; i < 5000; i++) {
        unsigned char *b = mk_stack_push(t->s, 16, 0, NULL);
        if (!b) {
            t->failures++;
            continue;
        }
        memset(b, 0x11, 16);
        int rc;
        while ((rc = mk_stack_pop(t->s, b)) == MK_ENOTTOP) sched_yield();
        if (rc != MK_OK) t->failures++;
        mk_stack_usage u;
        if (mk_stack_stats(t->s, &u) != MK_OK) t->failures++;
    }
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    mk_stack *s = make(NULL, CAP, MK_STACK_THREADSAFE);
    enum { T = 3 };
    pthread_t th[T];
    targ a[T];
    for (int i = 0; i < T; i++) {
        a[i] = (targ){s, 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &a[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(a[i].failures, 0);
    }
    mk_stack_usage u = usage(s);
    assert_int_equal(u.used, 0);
    assert_int_equal(u.blocks, 0);
    assert_int_equal(u.n_push, T * 5000);
    assert_int_equal(u.n_pop, T * 5000);
    assert_int_equal(mk_stack_destroy(s), MK_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_errors), cmocka_unit_test(test_push_pop),
        cmocka_unit_test(test_pop_errors),    cmocka_unit_test(test_capacity),
        cmocka_unit_test(test_markers),       cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
