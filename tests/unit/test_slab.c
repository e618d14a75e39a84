/* Unit tests of the slab cache (include/memkit/slab.h). */
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

#include "memkit/slab.h"

static mk_slab *make(size_t size, size_t align, size_t slab_size, size_t max_slabs,
                     unsigned flags) {
    mk_slab_config cfg = {.obj_size = size,
                          .obj_align = align,
                          .slab_size = slab_size,
                          .max_slabs = max_slabs,
                          .flags = flags};
    mk_slab *c = NULL;
    int rc = mk_slab_create(&cfg, &c);
    if (rc != MK_OK) fail_msg("mk_slab_create: %s", mk_strerror(rc));
    return c;
}

static mk_slab_usage usage(mk_slab *c) {
    mk_slab_usage u;
    assert_int_equal(mk_slab_stats(c, &u), MK_OK);
    return u;
}

static void test_create_errors(void **state) {
    (void)state;
    mk_slab *c = NULL;
    mk_slab_config cfg = {.obj_size = 32};
    assert_int_equal(mk_slab_create(NULL, &c), MK_EINVAL);
    assert_int_equal(mk_slab_create(&cfg, NULL), MK_EINVAL);
    cfg.obj_size = 0;
    assert_int_equal(mk_slab_create(&cfg, &c), MK_EINVAL);
    cfg.obj_size = 32;
    cfg.flags = 0x40;
    assert_int_equal(mk_slab_create(&cfg, &c), MK_EINVAL);
    cfg.flags = 0;
    cfg.obj_align = 24;
    assert_int_equal(mk_slab_create(&cfg, &c), MK_EALIGN);
    cfg.obj_align = (size_t)sysconf(_SC_PAGESIZE) * 2;
    assert_int_equal(mk_slab_create(&cfg, &c), MK_EALIGN);
    cfg.obj_align = 0;
    cfg.max_slabs = SIZE_MAX / 2;
    assert_int_equal(mk_slab_create(&cfg, &c), MK_ETOOBIG);
    assert_null(c);

    int err = 0;
    mk_slab_usage u;
    assert_null(mk_slab_alloc(NULL, &err));
    assert_int_equal(err, MK_EINVAL);
    assert_int_equal(mk_slab_free(NULL, &u), MK_EINVAL);
    assert_int_equal(mk_slab_owns(NULL, &u), MK_EINVAL);
    assert_int_equal(mk_slab_stats(NULL, &u), MK_EINVAL);
    assert_int_equal(mk_slab_stats_reset(NULL), MK_EINVAL);
    assert_int_equal(mk_slab_stats_print(NULL, stdout), MK_EINVAL);
    assert_int_equal(mk_slab_validate(NULL), MK_EINVAL);
    assert_int_equal(mk_slab_destroy(NULL), MK_EINVAL);

    /* defaults */
    c = make(24, 0, 0, 0, 0);
    u = usage(c);
    assert_int_equal(u.obj_size, 24);
    assert_int_equal(u.stride, 32);
    assert_int_equal(u.slab_size, MK_SLAB_DEFAULT_SLAB_SIZE);
    assert_int_equal(u.max_slabs, MK_SLAB_DEFAULT_MAX_SLABS);
    assert_int_equal(u.slabs, 0); /* nothing committed yet */
    assert_int_equal(mk_slab_stats(c, NULL), MK_EINVAL);
    assert_int_equal(mk_slab_stats_print(c, NULL), MK_EINVAL);
    assert_int_equal(mk_slab_destroy(c), MK_OK); /* c is unmapped now */
}

static void test_alloc_free(void **state) {
    (void)state;
    size_t sizes[] = {1, 8, 24, 100, 4000, 5000};
    size_t aligns[] = {0, 1, 8, 64, 4096};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        for (size_t ai = 0; ai < sizeof aligns / sizeof *aligns; ai++) {
            size_t al = aligns[ai] ? aligns[ai] : 16;
            mk_slab *c = make(sizes[si], aligns[ai], 16384, 256, 0);
            enum { N = 200 };
            unsigned char *o[N];
            int err = 1;
            for (int i = 0; i < N; i++) {
                o[i] = mk_slab_alloc(c, &err);
                assert_non_null(o[i]);
                assert_int_equal(err, MK_OK);
                assert_int_equal((uintptr_t)o[i] % al, 0);
                assert_int_equal(mk_slab_owns(c, o[i]), 1);
                memset(o[i], i, sizes[si]);
            }
            for (int i = 0; i < N; i++)
                for (size_t k = 0; k < sizes[si]; k++) assert_int_equal(o[i][k], (unsigned char)i);
            assert_int_equal(mk_slab_validate(c), MK_OK);
            mk_slab_usage u = usage(c);
            assert_int_equal(u.in_use, N);
            assert_int_equal(u.peak_in_use, N);
            assert_int_equal(u.free + u.in_use, u.slabs * u.objs_per_slab);
            for (int i = 0; i < N; i += 2) assert_int_equal(mk_slab_free(c, o[i]), MK_OK);
            assert_int_equal(mk_slab_validate(c), MK_OK);
            assert_int_equal(mk_slab_owns(c, o[0]), 0);
            /* freed objects are reused before the cache grows */
            uint64_t slabs = usage(c).slabs;
            for (int i = 0; i < N; i += 2) {
                o[i] = mk_slab_alloc(c, &err);
                assert_non_null(o[i]);
            }
            assert_int_equal(usage(c).slabs, slabs);
            for (int i = 0; i < N; i++) assert_int_equal(mk_slab_free(c, o[i]), MK_OK);
            u = usage(c);
            assert_int_equal(u.in_use, 0);
            assert_int_equal(u.n_alloc, N + N / 2);
            assert_int_equal(u.n_free, N + N / 2);
            assert_int_equal(mk_slab_validate(c), MK_OK);
            assert_int_equal(mk_slab_free(c, NULL), MK_OK);
            assert_int_equal(mk_slab_destroy(c), MK_OK);
        }
    }
}

static void test_free_errors(void **state) {
    (void)state;
    mk_slab *c = make(48, 16, 4096, 4, 0);
    mk_slab *other = make(48, 16, 4096, 4, 0);
    unsigned char *a = mk_slab_alloc(c, NULL);
    unsigned char *b = mk_slab_alloc(c, NULL);
    unsigned char *x = mk_slab_alloc(other, NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(x);
    int local;
    assert_int_equal(mk_slab_free(c, a + 1), MK_EBADOFF);        /* interior */
    assert_int_equal(mk_slab_free(c, a + 16), MK_EBADOFF);       /* interior, aligned */
    assert_int_equal(mk_slab_free(c, &local), MK_EBADOFF);       /* elsewhere */
    assert_int_equal(mk_slab_free(c, x), MK_EBADOFF);            /* another cache's */
    assert_int_equal(mk_slab_free(c, b + 48 * 2), MK_EBADOFF);   /* never handed out */
    assert_int_equal(mk_slab_free(c, a + 4096 * 2), MK_EBADOFF); /* uncommitted slab */
    assert_int_equal(usage(c).in_use, 2);
    assert_int_equal(mk_slab_free(c, a), MK_OK);
    assert_int_equal(mk_slab_free(c, a), MK_EDOUBLEFREE);
    assert_int_equal(mk_slab_free(c, b), MK_OK);
    assert_int_equal(mk_slab_free(c, a), MK_EDOUBLEFREE);
    assert_int_equal(mk_slab_free(c, b), MK_EDOUBLEFREE);
    mk_slab_usage u = usage(c);
    assert_int_equal(u.in_use, 0);
    assert_int_equal(u.n_free, 2);
    assert_int_equal(mk_slab_validate(c), MK_OK);

    /* a write to a freed object breaks its free-list link: reported */
    memset(b, 0x41, 16);
    assert_int_equal(mk_slab_validate(c), MK_ECORRUPT);
    int err = 0;
    assert_null(mk_slab_alloc(c, &err));
    assert_int_equal(err, MK_ECORRUPT);
    assert_int_equal(mk_slab_destroy(c), MK_OK);
    assert_int_equal(mk_slab_destroy(other), MK_OK);
}

static void test_growth_limit(void **state) {
    (void)state;
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    mk_slab *c = make(64, 64, page, 3, 0);
    mk_slab_usage u = usage(c);
    size_t per = (size_t)u.objs_per_slab;
    assert_int_equal(per, page / 64);
    void **o = calloc(per * 3, sizeof *o);
    assert_non_null(o);
    int err = 1;
    for (size_t i = 0; i < per * 3; i++) {
        o[i] = mk_slab_alloc(c, &err);
        assert_non_null(o[i]);
        /* grows by whole slabs, only when the previous ones are full */
        assert_int_equal(usage(c).slabs, i / per + 1);
    }
    /* the limit */
    assert_null(mk_slab_alloc(c, &err));
    assert_int_equal(err, MK_ENOMEM);
    assert_null(mk_slab_alloc(c, &err));
    u = usage(c);
    assert_int_equal(u.n_failed, 2);
    assert_int_equal(u.slabs, 3);
    assert_int_equal(u.free, 0);
    assert_int_equal(mk_slab_validate(c), MK_OK);
    /* one free makes one object available again */
    assert_int_equal(mk_slab_free(c, o[per + 5]), MK_OK);
    void *again = mk_slab_alloc(c, &err);
    assert_ptr_equal(again, o[per + 5]);
    assert_null(mk_slab_alloc(c, &err));

    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(mk_slab_stats_print(c, f), MK_OK);
    assert_true(ftell(f) > 0);
    fclose(f);
    assert_int_equal(mk_slab_stats_reset(c), MK_OK);
    u = usage(c);
    assert_int_equal(u.n_alloc, 0);
    assert_int_equal(u.n_failed, 0);
    assert_int_equal(u.peak_in_use, u.in_use);
    free(o);
    assert_int_equal(mk_slab_destroy(c), MK_OK);
}

typedef struct targ {
    mk_slab *c;
    unsigned tag;
    int failures;
} targ;

static void *worker(void *p) {
    targ *t = p;
    enum { K = 32 };
    unsigned *obj[K] = {0};
    for (int round = 0; round < 3000; round++) {
        int i = round % K;
        if (obj[i]) {
            if (*obj[i] != t->tag + (unsigned)i) t->failures++;
            if (mk_slab_free(t->c, obj[i]) != MK_OK) t->failures++;
            obj[i] = NULL;
        } else {
            obj[i] = mk_slab_alloc(t->c, NULL);
            if (!obj[i])
                t->failures++;
            else
                *obj[i] = t->tag + (unsigned)i;
        }
        if (round % 7 == 3 && obj[(i + 5) % K]) {
            int j = (i + 5) % K;
            if (mk_slab_free(t->c, obj[j]) != MK_OK) t->failures++;
            obj[j] = NULL;
        }
    }
    for (int i = 0; i < K; i++)
        if (obj[i] && mk_slab_free(t->c, obj[i]) != MK_OK) t->failures++;
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    mk_slab *c = make(16, 16, 4096, 64, MK_SLAB_THREADSAFE);
    enum { T = 4 };
    pthread_t th[T];
    targ a[T];
    for (int i = 0; i < T; i++) {
        a[i] = (targ){c, (unsigned)i * 1000u, 0};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &a[i]), 0);
    }
    for (int i = 0; i < T; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(a[i].failures, 0);
    }
    assert_int_equal(mk_slab_validate(c), MK_OK);
    mk_slab_usage u = usage(c);
    assert_int_equal(u.in_use, 0);
    assert_int_equal(u.n_alloc, u.n_free);
    assert_true(u.peak_in_use <= T * 32);
    assert_int_equal(mk_slab_destroy(c), MK_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_errors), cmocka_unit_test(test_alloc_free),
        cmocka_unit_test(test_free_errors),   cmocka_unit_test(test_growth_limit),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
