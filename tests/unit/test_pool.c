/* Unit tests of the pool (include/memkit/pool.h). Every test that touches
 * allocation runs once per fit policy. Randomised parts use fixed seeds
 * (override with MK_TEST_SEED). */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "memkit/pool.h"

#define POOL_SIZE ((size_t)1 << 20)

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

static mk_pool *make_pool(void *buf, size_t size, mk_policy pol, unsigned flags) {
    mk_pool_config cfg = {.buffer = buf, .size = size, .policy = pol, .flags = flags};
    mk_pool *p = NULL;
    int rc = mk_pool_create(&cfg, &p);
    if (rc != MK_OK) fail_msg("mk_pool_create(%s): %s", mk_policy_name(pol), mk_strerror(rc));
    assert_non_null(p);
    return p;
}

static void check_valid(mk_pool *p) {
    mk_fault f;
    int rc = mk_pool_validate(p, &f);
    if (rc != MK_OK)
        fail_msg("validate: %s (%s at %llu)", mk_strerror(rc), f.invariant ? f.invariant : "?",
                 (unsigned long long)f.offset);
}

/* ---- creation --------------------------------------------------------------- */

static void test_create_errors(void **state) {
    (void)state;
    mk_pool *p = NULL;
    mk_pool_config cfg = {.size = POOL_SIZE};
    assert_int_equal(mk_pool_create(NULL, &p), MK_EINVAL);
    assert_int_equal(mk_pool_create(&cfg, NULL), MK_EINVAL);

    assert_int_equal(mk_pool_min_size(MK_POLICY_COUNT, 0), 0);
    assert_int_equal(mk_pool_min_size(MK_POLICY_FIRST_FIT, 0x80), 0);
    size_t min = mk_pool_min_size(MK_POLICY_FIRST_FIT, 0);
    assert_true(min > 0);

    cfg.size = min - 1;
    assert_int_equal(mk_pool_create(&cfg, &p), MK_EINVAL);
    cfg.size = POOL_SIZE;
    cfg.policy = MK_POLICY_COUNT;
    assert_int_equal(mk_pool_create(&cfg, &p), MK_EINVAL);
    cfg.policy = MK_POLICY_FIRST_FIT;
    cfg.flags = 0x80;
    assert_int_equal(mk_pool_create(&cfg, &p), MK_EINVAL);
    cfg.flags = 0;

    /* A caller buffer must be 16-aligned. */
    unsigned char *buf = aligned_alloc(64, 65536);
    assert_non_null(buf);
    cfg.buffer = buf + 8;
    cfg.size = 65536 - 8;
    assert_int_equal(mk_pool_create(&cfg, &p), MK_EINVAL);
    assert_null(p);

    /* The minimum size really works, for every policy. */
    for (int pol = 0; pol < MK_POLICY_COUNT; pol++) {
        size_t m = mk_pool_min_size((mk_policy)pol, 0);
        assert_true(m > 0 && m <= 65536);
        mk_pool *q = make_pool(buf, m, (mk_policy)pol, 0);
        assert_int_equal(mk_pool_policy(q), pol);
        check_valid(q);
        assert_int_equal(mk_pool_destroy(q), MK_OK);
    }
    /* A destroyed pool is refused. */
    mk_pool *q = make_pool(buf, 65536, MK_POLICY_FIRST_FIT, 0);
    assert_int_equal(mk_pool_destroy(q), MK_OK);
    assert_int_equal(mk_pool_destroy(q), MK_EINVAL);
    assert_null(mk_pool_malloc(q, 8, NULL));
    free(buf);
    assert_int_equal(mk_pool_policy(NULL), MK_POLICY_COUNT);
}

static void test_null_args(void **state) {
    (void)state;
    int err = 0;
    size_t sz;
    mk_stats st;
    assert_null(mk_pool_malloc(NULL, 8, &err));
    assert_int_equal(err, MK_EINVAL);
    err = 0;
    assert_null(mk_pool_calloc(NULL, 1, 8, &err));
    assert_int_equal(err, MK_EINVAL);
    err = 0;
    assert_null(mk_pool_realloc(NULL, NULL, 8, &err));
    assert_int_equal(err, MK_EINVAL);
    err = 0;
    assert_null(mk_pool_aligned_alloc(NULL, 64, 8, &err));
    assert_int_equal(err, MK_EINVAL);
    err = 0;
    assert_null(mk_pool_alloc_pages(NULL, 8, &err));
    assert_int_equal(err, MK_EINVAL);
    assert_int_equal(mk_pool_free(NULL, NULL), MK_EINVAL);
    assert_int_equal(mk_pool_usable_size(NULL, &sz, &sz), MK_EINVAL);
    assert_int_equal(mk_pool_protect(NULL, &sz, MK_PROT_READ), MK_EINVAL);
    assert_int_equal(mk_pool_is_protected(NULL, &sz, NULL), MK_EINVAL);
    assert_int_equal(mk_pool_stats(NULL, &st), MK_EINVAL);
    assert_int_equal(mk_pool_stats_reset(NULL), MK_EINVAL);
    assert_int_equal(mk_pool_stats_print(NULL, stdout), MK_EINVAL);
    assert_int_equal(mk_pool_stats_json(NULL, stdout), MK_EINVAL);
    assert_int_equal(mk_pool_validate(NULL, NULL), MK_EINVAL);
    assert_int_equal(mk_pool_destroy(NULL), MK_EINVAL);

    mk_pool *p = make_pool(NULL, POOL_SIZE, MK_POLICY_FIRST_FIT, 0);
    void *b = mk_pool_malloc(p, 8, NULL);
    assert_non_null(b);
    assert_int_equal(mk_pool_usable_size(p, NULL, &sz), MK_EINVAL);
    assert_int_equal(mk_pool_usable_size(p, b, NULL), MK_EINVAL);
    assert_int_equal(mk_pool_protect(p, NULL, MK_PROT_READ), MK_EINVAL);
    assert_int_equal(mk_pool_is_protected(p, NULL, NULL), MK_EINVAL);
    assert_int_equal(mk_pool_stats(p, NULL), MK_EINVAL);
    assert_int_equal(mk_pool_stats_print(p, NULL), MK_EINVAL);
    assert_int_equal(mk_pool_stats_json(p, NULL), MK_EINVAL);
    /* err is optional */
    assert_non_null(mk_pool_malloc(p, 8, NULL));
    assert_int_equal(mk_pool_destroy(p), MK_OK);
}

/* ---- malloc / free, every policy, caller buffer and owned mapping ------------- */

static void basic_one(mk_pool *p) {
    int err = 1;
    enum { N = 64 };
    unsigned char *b[N];
    for (int i = 0; i < N; i++) {
        size_t want = (size_t)(i * 37 % 700) + 1;
        b[i] = mk_pool_malloc(p, want, &err);
        assert_non_null(b[i]);
        assert_int_equal(err, MK_OK);
        assert_int_equal((uintptr_t)b[i] % 16, 0);
        size_t u = 0;
        assert_int_equal(mk_pool_usable_size(p, b[i], &u), MK_OK);
        assert_true(u >= want);
        memset(b[i], i, u); /* the whole usable size is ours */
    }
    check_valid(p);
    for (int i = 0; i < N; i++) {
        size_t u;
        assert_int_equal(mk_pool_usable_size(p, b[i], &u), MK_OK);
        for (size_t k = 0; k < u; k++) assert_int_equal(b[i][k], (unsigned char)i);
    }
    mk_stats st;
    assert_int_equal(mk_pool_stats(p, &st), MK_OK);
    assert_int_equal(st.blocks_used, N);
    assert_true(st.n_alloc >= N);
    for (int i = 0; i < N; i += 2) assert_int_equal(mk_pool_free(p, b[i]), MK_OK);
    check_valid(p);
    for (int i = 1; i < N; i += 2) assert_int_equal(mk_pool_free(p, b[i]), MK_OK);
    check_valid(p);
    assert_int_equal(mk_pool_stats(p, &st), MK_OK);
    assert_int_equal(st.blocks_used, 0);
    assert_int_equal(st.n_free, st.n_alloc);
    assert_int_equal(mk_pool_free(p, NULL), MK_OK); /* no-op */
}

static void test_basic_all_policies(void **state) {
    (void)state;
    void *buf = aligned_alloc(4096, POOL_SIZE);
    assert_non_null(buf);
    for (int pol = 0; pol < MK_POLICY_COUNT; pol++) {
        mk_pool *p = make_pool(buf, POOL_SIZE, (mk_policy)pol, 0);
        assert_ptr_equal(p, buf); /* the control block is at the start */
        basic_one(p);
        assert_int_equal(mk_pool_destroy(p), MK_OK);
        p = make_pool(NULL, POOL_SIZE, (mk_policy)pol, 0);
        basic_one(p);
        assert_int_equal(mk_pool_destroy(p), MK_OK);
        p = make_pool(NULL, POOL_SIZE, (mk_policy)pol, MK_POOL_THREADSAFE);
        basic_one(p);
        assert_int_equal(mk_pool_destroy(p), MK_OK);
    }
    free(buf);
}

static void test_free_errors(void **state) {
    (void)state;
    for (int pol = 0; pol < MK_POLICY_COUNT; pol++) {
        mk_pool *p = make_pool(NULL, POOL_SIZE, (mk_policy)pol, 0);
        mk_pool *other = make_pool(NULL, POOL_SIZE, (mk_policy)pol, 0);
        char *a = mk_pool_malloc(p, 100, NULL);
        char *b = mk_pool_malloc(p, 100, NULL);
        char *c = mk_pool_malloc(other, 100, NULL);
        assert_non_null(a);
        assert_non_null(b);
        assert_non_null(c);
        mk_stats before, after;
        assert_int_equal(mk_pool_stats(p, &before), MK_OK);
        int local;
        assert_int_equal(mk_pool_free(p, a + 1), MK_EBADOFF);         /* interior */
        assert_int_equal(mk_pool_free(p, a + 16), MK_EBADOFF);        /* interior, aligned */
        assert_int_equal(mk_pool_free(p, &local), MK_EBADOFF);        /* not in the pool */
        assert_int_equal(mk_pool_free(p, c), MK_EBADOFF);             /* another pool's */
        assert_int_equal(mk_pool_free(p, (char *)p + 8), MK_EBADOFF); /* control block */
        assert_int_equal(mk_pool_stats(p, &after), MK_OK);
        assert_int_equal(after.n_free, before.n_free); /* nothing changed */
        assert_int_equal(after.blocks_used, before.blocks_used);
        size_t u;
        assert_int_equal(mk_pool_usable_size(p, a + 1, &u), MK_EBADOFF);

        assert_int_equal(mk_pool_free(p, a), MK_OK);
        assert_int_equal(mk_pool_free(p, a), MK_EDOUBLEFREE);
        assert_int_equal(mk_pool_usable_size(p, a, &u), MK_EDOUBLEFREE);
        int err = 0;
        assert_null(mk_pool_realloc(p, a, 10, &err));
        assert_int_equal(err, MK_EDOUBLEFREE);
        assert_null(mk_pool_realloc(p, b + 3, 10, &err));
        assert_int_equal(err, MK_EBADOFF);
        check_valid(p);
        assert_int_equal(mk_pool_free(p, b), MK_OK);
        check_valid(p);
        assert_int_equal(mk_pool_destroy(p), MK_OK);
        assert_int_equal(mk_pool_destroy(other), MK_OK);
    }
}

static void test_sizes(void **state) {
    (void)state;
    for (int pol = 0; pol < MK_POLICY_COUNT; pol++) {
        mk_pool *p = make_pool(NULL, POOL_SIZE, (mk_policy)pol, 0);
        int err = 1;
        /* size 0: a unique, freeable block */
        void *z1 = mk_pool_malloc(p, 0, &err);
        assert_int_equal(err, MK_OK);
        void *z2 = mk_pool_malloc(p, 0, &err);
        assert_non_null(z1);
        assert_non_null(z2);
        assert_ptr_not_equal(z1, z2);
        assert_int_equal(mk_pool_free(p, z1), MK_OK);
        assert_int_equal(mk_pool_free(p, z2), MK_OK);

        /* more than the pool could ever hold */
        assert_null(mk_pool_malloc(p, POOL_SIZE * 2, &err));
        assert_int_equal(err, MK_ETOOBIG);
        assert_null(mk_pool_malloc(p, SIZE_MAX, &err));
        assert_int_equal(err, MK_ETOOBIG);

        /* fill until the pool is full: MK_ENOMEM, counted as failure */
        void *blocks[4096];
        int n = 0;
        for (;;) {
            void *b = mk_pool_malloc(p, 1000, &err);
            if (!b) break;
            assert_true(n < 4096);
            blocks[n++] = b;
        }
        assert_int_equal(err, MK_ENOMEM);
        assert_true(n > 100);
        mk_stats st;
        assert_int_equal(mk_pool_stats(p, &st), MK_OK);
        assert_true(st.n_failed >= 1);
        check_valid(p);
        for (int i = 0; i < n; i++) assert_int_equal(mk_pool_free(p, blocks[i]), MK_OK);
        /* after freeing everything, a large block fits again */
        assert_non_null(mk_pool_malloc(p, POOL_SIZE / 4, &err));
        check_valid(p);
        assert_int_equal(mk_pool_destroy(p), MK_OK);
    }
}

static void test_calloc_zeroes(void **state) {
    (void)state;
    for (int pol = 0; pol < MK_POLICY_COUNT; pol++) {
        mk_pool *p = make_pool(NULL, POOL_SIZE, (mk_policy)pol, 0);
        int err = 1;
        /* dirty memory, free it, calloc over it: must read zero */
        for (int round = 0; round < 4; round++) {
            unsigned char *d = mk_pool_malloc(p, 4000, NULL);
            assert_non_null(d);
            memset(d, 0xAB, 4000);
            assert_int_equal(mk_pool_free(p, d), MK_OK);
            unsigned char *z = mk_pool_calloc(p, 100, 40, &err);
            assert_non_null(z);
            assert_int_equal(err, MK_OK);
            for (int i = 0; i < 4000; i++) assert_int_equal(z[i], 0);
            assert_int_equal(mk_pool_free(p, z), MK_OK);
        }
        /* overflow of n * size */
        assert_null(mk_pool_calloc(p, SIZE_MAX / 2, 4, &err));
        assert_int_equal(err, MK_ETOOBIG);
        assert_null(mk_pool_calloc(p, (size_t)1 << (sizeof(size_t) * 4),
                                   (size_t)1 << (sizeof(size_t) * 4), &err));
        assert_int_equal(err, MK_ETOOBIG);
        void *z0 = mk_pool_calloc(p, 0, 16, &err);
        assert_non_null(z0);
        assert_int_equal(mk_pool_free(p, z0), MK_OK);
        check_valid(p);
        assert_int_equal(mk_pool_destroy(p), MK_OK);
    }
}

static void test_realloc_keeps(void **state) {
    (void)state;
    for (int pol = 0; pol < MK_POLICY_COUNT; pol++) {
        mk_pool *p = make_pool(NULL, POOL_SIZE, (mk_policy)pol, 0);
        int err = 1;
        unsigned char *a = mk_pool_realloc(p, NULL, 50, &err); /* NULL: malloc */
        assert_non_null(a);
        assert_int_equal(err, MK_OK);
        for (int i = 0; i < 50; i++) a[i] = (unsigned char)(i * 7 + 1);
        /* a neighbour so that growth must sometimes move */
        void *fence = mk_pool_malloc(p, 32, NULL);
        assert_non_null(fence);
        size_t sizes[] = {200, 3000, 60000, 20, 50000, 100};
        size_t kept = 50;
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
            unsigned char *b = mk_pool_realloc(p, a, sizes[s], &err);
            assert_non_null(b);
            assert_int_equal(err, MK_OK);
            size_t cmp = kept < sizes[s] ? kept : sizes[s];
            for (size_t i = 0; i < cmp; i++) assert_int_equal(b[i], (unsigned char)(i * 7 + 1));
            for (size_t i = 0; i < sizes[s]; i++) b[i] = (unsigned char)(i * 7 + 1);
            kept = sizes[s];
            size_t u;
            assert_int_equal(mk_pool_usable_size(p, b, &u), MK_OK);
            assert_true(u >= sizes[s]);
            a = b;
            check_valid(p);
        }
        /* a failed realloc leaves the block as it was */
        assert_null(mk_pool_realloc(p, a, POOL_SIZE * 4, &err));
        assert_int_equal(err, MK_ETOOBIG);
        for (size_t i = 0; i < kept; i++) assert_int_equal(a[i], (unsigned char)(i * 7 + 1));
        /* size 0 keeps a minimum block (not a free) */
        void *m = mk_pool_realloc(p, a, 0, &err);
        assert_non_null(m);
        assert_int_equal(mk_pool_free(p, m), MK_OK);
        assert_int_equal(mk_pool_free(p, fence), MK_OK);
        mk_stats st;
        assert_int_equal(mk_pool_stats(p, &st), MK_OK);
        assert_int_equal(st.blocks_used, 0);
        assert_true(st.n_realloc >= 6);
        check_valid(p);
        assert_int_equal(mk_pool_destroy(p), MK_OK);
    }
}

static void test_aligned(void **state) {
    (void)state;
    for (int pol = 0; pol < MK_POLICY_COUNT; pol++) {
        mk_pool *p = make_pool(NULL, POOL_SIZE, (mk_policy)pol, 0);
        int err = 1;
        for (size_t al = 1; al <= MK_REGION_MAX_ALIGN; al <<= 1) {
            for (int k = 0; k < 3; k++) {
                void *b = mk_pool_aligned_alloc(p, al, 24 + (size_t)k * 100, &err);
                assert_non_null(b);
                assert_int_equal(err, MK_OK);
                assert_int_equal((uintptr_t)b % al, 0);
                assert_int_equal((uintptr_t)b % 16, 0);
                memset(b, 0x5A, 24 + (size_t)k * 100);
            }
        }
        void *d = mk_pool_aligned_alloc(p, 0, 10, &err); /* 0: default */
        assert_non_null(d);
        assert_int_equal((uintptr_t)d % 16, 0);
        assert_null(mk_pool_aligned_alloc(p, 48, 10, &err));
        assert_int_equal(err, MK_EALIGN);
        assert_null(mk_pool_aligned_alloc(p, MK_REGION_MAX_ALIGN * 2, 10, &err));
        assert_int_equal(err, MK_EALIGN);
        check_valid(p);
        assert_int_equal(mk_pool_destroy(p), MK_OK);
    }
}

static void test_stats(void **state) {
    (void)state;
    for (int pol = 0; pol < MK_POLICY_COUNT; pol++) {
        mk_pool *p = make_pool(NULL, POOL_SIZE, (mk_policy)pol, 0);
        mk_stats st;
        assert_int_equal(mk_pool_stats(p, &st), MK_OK);
        assert_true(st.capacity > 0 && st.capacity < POOL_SIZE);
        assert_int_equal(st.blocks_used, 0);
        assert_true(st.overhead > 0);
        void *a = mk_pool_malloc(p, 1000, NULL);
        void *b = mk_pool_malloc(p, 2000, NULL);
        assert_int_equal(mk_pool_stats(p, &st), MK_OK);
        assert_int_equal(st.blocks_used, 2);
        assert_true(st.bytes_used >= 3000);
        assert_int_equal(st.n_alloc, 2);
        assert_true(st.peak_used >= st.bytes_used);
        uint64_t used = st.bytes_used;
        assert_int_equal(mk_pool_free(p, a), MK_OK);
        assert_int_equal(mk_pool_stats_reset(p), MK_OK);
        assert_int_equal(mk_pool_stats(p, &st), MK_OK);
        assert_int_equal(st.n_alloc, 0);
        assert_int_equal(st.n_free, 0);
        assert_int_equal(st.blocks_used, 1); /* current usage survives */
        assert_true(st.bytes_used < used);
        assert_int_equal(st.peak_used, st.bytes_used);

        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        assert_non_null(f);
        assert_int_equal(mk_pool_stats_print(p, f), MK_OK);
        fflush(f);
        assert_true(len > 20);
        size_t at = len;
        assert_int_equal(mk_pool_stats_json(p, f), MK_OK);
        fclose(f);
        assert_true(len > at);
        assert_non_null(strchr(text + at, '{'));
        assert_non_null(strchr(text + at, '}'));
        free(text);
        assert_int_equal(mk_pool_free(p, b), MK_OK);
        assert_int_equal(mk_pool_destroy(p), MK_OK);
    }
}

/* ---- protection --------------------------------------------------------------- */

typedef void (*child_fn)(void *);

/* Run fn(arg) in a child; return its wait status. */
static int in_child(child_fn fn, void *arg) {
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* sanitizers and cmocka catch SIGSEGV; we want the plain death */
        signal(SIGSEGV, SIG_DFL);
        signal(SIGBUS, SIG_DFL);
        fn(arg);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void do_write(void *p) { *(volatile unsigned char *)p = 1; }
static void do_write_last(void *p) { ((volatile unsigned char *)p)[4095] = 1; }
static void do_read(void *p) {
    volatile unsigned char v = *(volatile unsigned char *)p;
    if (v != 0x77) _exit(3);
}

static void assert_segv(int status) {
    if (!WIFSIGNALED(status))
        fail_msg("child was not killed (exit status %d)",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    assert_true(WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS);
}

static void assert_ok_exit(int status) {
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void protect_one(mk_pool *p) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    int err = 1;
    unsigned char *pg = mk_pool_alloc_pages(p, 100, &err);
    assert_non_null(pg);
    assert_int_equal(err, MK_OK);
    assert_int_equal((uintptr_t)pg % page, 0);
    size_t u;
    assert_int_equal(mk_pool_usable_size(p, pg, &u), MK_OK);
    assert_true(u >= page);
    memset(pg, 0x77, page);
    /* neighbours on both sides stay usable while pg is protected */
    unsigned char *before = mk_pool_malloc(p, 64, NULL);
    unsigned char *after = mk_pool_malloc(p, 64, NULL);
    assert_non_null(before);
    assert_non_null(after);

    unsigned prot = 99;
    assert_int_equal(mk_pool_is_protected(p, pg, &prot), 0);
    assert_int_equal(prot, MK_PROT_RW);

    /* read-only: reads work, writes kill */
    assert_int_equal(mk_pool_protect(p, pg, MK_PROT_READ), MK_OK);
    assert_int_equal(mk_pool_is_protected(p, pg, &prot), 1);
    assert_int_equal(prot, MK_PROT_READ);
    assert_segv(in_child(do_write, pg));
    assert_segv(in_child(do_write_last, pg));
    assert_ok_exit(in_child(do_read, pg));
    check_valid(p);
    memset(before, 1, 64);
    memset(after, 1, 64);
    /* operations on other blocks work while pg is protected */
    void *x = mk_pool_malloc(p, 5000, NULL);
    assert_non_null(x);
    assert_int_equal(mk_pool_free(p, x), MK_OK);
    assert_int_equal(mk_pool_free(p, before), MK_OK);
    check_valid(p);

    /* realloc of a protected block is refused and changes nothing */
    assert_null(mk_pool_realloc(p, pg, 50000, &err));
    assert_int_equal(err, MK_EPROTECTED);
    assert_int_equal(mk_pool_is_protected(p, pg, NULL), 1);

    /* no access: reads kill too */
    assert_int_equal(mk_pool_protect(p, pg, MK_PROT_NONE), MK_OK);
    assert_int_equal(mk_pool_is_protected(p, pg, &prot), 1);
    assert_int_equal(prot, MK_PROT_NONE);
    assert_segv(in_child(do_read, pg));
    assert_segv(in_child(do_write, pg));

    /* back to normal */
    assert_int_equal(mk_pool_protect(p, pg, MK_PROT_RW), MK_OK);
    assert_int_equal(mk_pool_is_protected(p, pg, &prot), 0);
    assert_int_equal(prot, MK_PROT_RW);
    assert_ok_exit(in_child(do_write, pg));
    assert_int_equal(pg[0], 0x77);
    pg[0] = 1;

    /* read + exec (may be forbidden by the system: then MK_EOS) */
    int rc = mk_pool_protect(p, pg, MK_PROT_READ | MK_PROT_EXEC);
    assert_true(rc == MK_OK || rc == MK_EOS);
    if (rc == MK_OK) {
        assert_int_equal(mk_pool_is_protected(p, pg, &prot), 1);
        assert_int_equal(prot, MK_PROT_READ | MK_PROT_EXEC);
        assert_segv(in_child(do_write, pg));
    }

    /* free of a protected block restores access first, then frees */
    assert_int_equal(mk_pool_protect(p, pg, MK_PROT_NONE), MK_OK);
    assert_int_equal(mk_pool_free(p, pg), MK_OK);
    /* freed: EDOUBLEFREE, or EBADOFF once it coalesced with a neighbour */
    rc = mk_pool_is_protected(p, pg, NULL);
    assert_true(rc == MK_EDOUBLEFREE || rc == MK_EBADOFF);
    rc = mk_pool_protect(p, pg, MK_PROT_READ);
    assert_true(rc == MK_EDOUBLEFREE || rc == MK_EBADOFF);
    check_valid(p);
    /* the freed pages are writable again when reused */
    unsigned char *big = mk_pool_malloc(p, 3 * page, NULL);
    assert_non_null(big);
    memset(big, 0, 3 * page);
    assert_int_equal(mk_pool_free(p, big), MK_OK);
    assert_int_equal(mk_pool_free(p, after), MK_OK);
    check_valid(p);

    /* multi-page block: every page protected, the whole request covered */
    unsigned char *m = mk_pool_alloc_pages(p, 2 * page + 1, &err);
    assert_non_null(m);
    assert_int_equal(mk_pool_usable_size(p, m, &u), MK_OK);
    assert_true(u >= 3 * page);
    assert_int_equal(mk_pool_protect(p, m, MK_PROT_READ), MK_OK);
    assert_segv(in_child(do_write, m + 2 * page));
    assert_segv(in_child(do_write, m + 3 * page - 1));
    /* a page block that is reallocated (when unprotected) is ordinary */
    assert_int_equal(mk_pool_protect(p, m, MK_PROT_RW), MK_OK);
    unsigned char *m2 = mk_pool_realloc(p, m, 100, &err);
    assert_non_null(m2);
    assert_int_equal(mk_pool_protect(p, m2, MK_PROT_READ), MK_EINVAL);
    assert_int_equal(mk_pool_free(p, m2), MK_OK);
    check_valid(p);
}

static void test_protect_all_policies(void **state) {
    (void)state;
    void *buf = aligned_alloc(4096, POOL_SIZE);
    assert_non_null(buf);
    for (int pol = 0; pol < MK_POLICY_COUNT; pol++) {
        mk_pool *p = make_pool(NULL, POOL_SIZE, (mk_policy)pol, 0);
        protect_one(p);
        assert_int_equal(mk_pool_destroy(p), MK_OK);
        /* caller buffer offset by 16 from a page: page blocks still work */
        p = make_pool((char *)buf + 16, POOL_SIZE - 16, (mk_policy)pol, 0);
        protect_one(p);
        assert_int_equal(mk_pool_destroy(p), MK_OK);
    }
    free(buf);
}

static void test_protect_errors(void **state) {
    (void)state;
    mk_pool *p = make_pool(NULL, POOL_SIZE, MK_POLICY_FIRST_FIT, 0);
    /* an ordinary block cannot be protected, even a page-aligned one */
    void *b = mk_pool_malloc(p, 100, NULL);
    void *al = mk_pool_aligned_alloc(p, 4096, 8192, NULL);
    assert_non_null(b);
    assert_non_null(al);
    assert_int_equal(mk_pool_protect(p, b, MK_PROT_READ), MK_EINVAL);
    assert_int_equal(mk_pool_protect(p, al, MK_PROT_READ), MK_EINVAL);
    assert_int_equal(mk_pool_is_protected(p, b, NULL), 0);
    void *pg = mk_pool_alloc_pages(p, 0, NULL); /* 0: one page */
    assert_non_null(pg);
    assert_int_equal(mk_pool_protect(p, pg, 8), MK_EINVAL);               /* unknown bit */
    assert_int_equal(mk_pool_protect(p, (char *)pg + 16, 1), MK_EBADOFF); /* interior */
    int local;
    assert_int_equal(mk_pool_protect(p, &local, MK_PROT_READ), MK_EBADOFF);
    assert_int_equal(mk_pool_is_protected(p, &local, NULL), MK_EBADOFF);
    int err = 0;
    assert_null(mk_pool_alloc_pages(p, SIZE_MAX, &err));
    assert_int_equal(err, MK_ETOOBIG);
    assert_null(mk_pool_alloc_pages(p, POOL_SIZE * 2, &err));
    assert_int_equal(err, MK_ETOOBIG);
    check_valid(p);
    assert_int_equal(mk_pool_destroy(p), MK_OK);
}

/* Destroying a pool over a caller buffer gives the whole buffer back writable. */
static void test_destroy_restores_buffer(void **state) {
    (void)state;
    unsigned char *buf = aligned_alloc(4096, POOL_SIZE);
    assert_non_null(buf);
    mk_pool *p = make_pool(buf, POOL_SIZE, MK_POLICY_TLSF, 0);
    void *a = mk_pool_alloc_pages(p, 4096, NULL);
    void *b = mk_pool_alloc_pages(p, 3 * 4096, NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(mk_pool_protect(p, a, MK_PROT_NONE), MK_OK);
    assert_int_equal(mk_pool_protect(p, b, MK_PROT_READ), MK_OK);
    assert_int_equal(mk_pool_destroy(p), MK_OK);
    memset(buf, 0xEE, POOL_SIZE); /* would fault if a page stayed protected */
    free(buf);
}

/* A corrupted protection state is reported by validate. */
static void test_validate_detects(void **state) {
    (void)state;
    mk_pool *p = make_pool(NULL, POOL_SIZE, MK_POLICY_FIRST_FIT, 0);
    unsigned char *a = mk_pool_malloc(p, 100, NULL);
    assert_non_null(a);
    check_valid(p);
    /* overwrite the header word before a (a buffer underrun) */
    uint64_t saved;
    memcpy(&saved, a - 8, 8);
    uint64_t junk = saved ^ UINT64_C(0x00F0000000000000);
    memcpy(a - 8, &junk, 8);
    mk_fault f;
    assert_int_not_equal(mk_pool_validate(p, &f), MK_OK);
    assert_int_not_equal(f.code, MK_OK);
    assert_int_not_equal(mk_pool_free(p, a), MK_OK); /* refused, not obeyed */
    memcpy(a - 8, &saved, 8);
    check_valid(p);
    assert_int_equal(mk_pool_free(p, a), MK_OK);
    assert_int_equal(mk_pool_destroy(p), MK_OK);
}

/* ---- threads ------------------------------------------------------------------- */

typedef struct hammer_arg {
    mk_pool *pool;
    uint64_t seed;
    int failures;
} hammer_arg;

static void *hammer(void *argp) {
    hammer_arg *h = argp;
    enum { SLOTS = 64, OPS = 20000 };
    unsigned char *slot[SLOTS] = {0};
    size_t len[SLOTS] = {0};
    uint64_t s = h->seed;
    for (int op = 0; op < OPS; op++) {
        int i = (int)(rnd(&s) % SLOTS);
        unsigned char tag = (unsigned char)(i + 1 + (h->seed & 0x3F));
        if (slot[i]) {
            for (size_t k = 0; k < len[i]; k++)
                if (slot[i][k] != tag) h->failures++;
            if (rnd(&s) & 1) {
                size_t n = rnd(&s) % 600 + 1;
                unsigned char *q = mk_pool_realloc(h->pool, slot[i], n, NULL);
                if (q) {
                    slot[i] = q;
                    len[i] = n;
                    memset(q, tag, n);
                }
            } else {
                if (mk_pool_free(h->pool, slot[i]) != MK_OK) h->failures++;
                slot[i] = NULL;
            }
        } else {
            size_t n = rnd(&s) % 600 + 1;
            slot[i] = (rnd(&s) & 3) ? mk_pool_malloc(h->pool, n, NULL)
                                    : mk_pool_calloc(h->pool, 1, n, NULL);
            if (slot[i]) {
                len[i] = n;
                memset(slot[i], tag, n);
            }
        }
        if (op % 5000 == 0) {
            mk_stats st;
            if (mk_pool_stats(h->pool, &st) != MK_OK) h->failures++;
        }
    }
    for (int i = 0; i < SLOTS; i++)
        if (slot[i] && mk_pool_free(h->pool, slot[i]) != MK_OK) h->failures++;
    return NULL;
}

static void test_threads(void **state) {
    (void)state;
    for (int pol = 0; pol < MK_POLICY_COUNT; pol++) {
        mk_pool *p = make_pool(NULL, 4 * POOL_SIZE, (mk_policy)pol, MK_POOL_THREADSAFE);
        enum { T = 4 };
        pthread_t th[T];
        hammer_arg args[T];
        for (int t = 0; t < T; t++) {
            args[t] = (hammer_arg){p, seed_base() * 31 + (uint64_t)t * 7919 + (uint64_t)pol, 0};
            assert_int_equal(pthread_create(&th[t], NULL, hammer, &args[t]), 0);
        }
        for (int t = 0; t < T; t++) {
            assert_int_equal(pthread_join(th[t], NULL), 0);
            assert_int_equal(args[t].failures, 0);
        }
        check_valid(p);
        mk_stats st;
        assert_int_equal(mk_pool_stats(p, &st), MK_OK);
        assert_int_equal(st.blocks_used, 0);
        assert_int_equal(mk_pool_destroy(p), MK_OK);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_null_args),
        cmocka_unit_test(test_basic_all_policies),
        cmocka_unit_test(test_free_errors),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_calloc_zeroes),
        cmocka_unit_test(test_realloc_keeps),
        cmocka_unit_test(test_aligned),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_protect_all_policies),
        cmocka_unit_test(test_protect_errors),
        cmocka_unit_test(test_destroy_restores_buffer),
        cmocka_unit_test(test_validate_detects),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
