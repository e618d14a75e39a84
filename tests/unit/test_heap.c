/*
 * Unit tests of the process heap (include/memkit/heap.h): every function of
 * the mk_malloc family and its edge cases, first-class heaps, statistics,
 * options, trimming, and the corruption checks.
 *
 * The same binary runs with MEMKIT_OPTIONS=source=sbrk (ctest heap.unit-sbrk)
 * and checks there that memory really comes from the program break.
 *
 * Corruption checks install an error handler that records the call and
 * returns (the heap then abandons the operation), so they need no fork.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "memkit/heap.h"

static bool is_aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static void fill(void *p, size_t n, unsigned char v) { memset(p, v, n); }

static bool all_eq(const void *p, size_t n, unsigned char v) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != v) return false;
    return true;
}

static mk_heap_stats stats(void) {
    mk_heap_stats s;
    assert_int_equal(mk_heap_get_stats(NULL, &s), MK_OK);
    return s;
}

static bool sbrk_mode(void) {
    const char *o = getenv("MEMKIT_OPTIONS");
    return o && strstr(o, "source=sbrk");
}

/* ---- corruption handler ---- */
static int g_errors;
static const char *g_last_msg;
static void record_error(const char *msg, void *ptr) {
    (void)ptr;
    g_errors++;
    g_last_msg = msg;
}

/* ---- malloc / free ---- */

static void test_malloc_sizes(void **state) {
    (void)state;
    static const size_t sizes[] = {1,     2,     15,    16,     17,     24,     100,     128,
                                   129,   500,   1000,  1024,   1025,   4096,   8191,    8193,
                                   40000, 65536, 65537, 131072, 131073, 300000, 1 << 20, 5 << 20};
    void *p[sizeof sizes / sizeof sizes[0]];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        p[i] = mk_malloc(sizes[i]);
        assert_non_null(p[i]);
        assert_true(is_aligned(p[i], 16));
        assert_true(mk_malloc_usable_size(p[i]) >= sizes[i]);
        fill(p[i], sizes[i], (unsigned char)i);
    }
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        assert_true(all_eq(p[i], sizes[i], (unsigned char)i));
        mk_free(p[i]);
    }
    mk_free(NULL);
}

static void test_malloc_zero(void **state) {
    (void)state;
    void *a = mk_malloc(0), *b = mk_malloc(0);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_true(mk_malloc_usable_size(a) >= 1);
    mk_free(a);
    mk_free(b);
}

static void test_huge_sizes_fail(void **state) {
    (void)state;
    uint64_t failed = stats().n_failed;
    static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 4095, (size_t)PTRDIFF_MAX,
                                  (size_t)PTRDIFF_MAX + 1, (size_t)1 << 62};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        errno = 0;
        assert_null(mk_malloc(huge[i]));
        assert_int_equal(errno, ENOMEM);
        errno = 0;
        assert_null(mk_memalign(4096, huge[i]));
        assert_int_equal(errno, ENOMEM);
    }
    /* 64 TiB: passes the size limit, the OS refuses the mapping */
    errno = 0;
    assert_null(mk_malloc((size_t)1 << 46));
    assert_int_equal(errno, ENOMEM);
    assert_true(stats().n_failed >= failed + 11);
}

static void test_calloc_family(void **state) {
    (void)state;
    /* dirty some blocks first so calloc must really clear reused memory */
    for (size_t n = 16; n <= (1u << 20); n *= 4) {
        void *d = mk_malloc(n);
        fill(d, n, 0xAB);
        mk_free(d);
        unsigned char *c = mk_calloc(1, n);
        assert_non_null(c);
        assert_true(all_eq(c, n, 0));
        mk_free(c);
    }
    unsigned char *z = mk_calloc(0, 10);
    assert_non_null(z);
    mk_free(z);
    errno = 0;
    assert_null(mk_calloc(SIZE_MAX / 2, 3));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(mk_calloc((size_t)1 << 33, (size_t)1 << 33));
    assert_int_equal(errno, ENOMEM);
}

static void test_realloc_family(void **state) {
    (void)state;
    unsigned char *p = mk_realloc(NULL, 10);
    assert_non_null(p);
    fill(p, 10, 7);
    /* grow through every regime: small, medium, large, bigger large */
    size_t prev = 10;
    for (size_t n = 100; n <= ((size_t)16 << 20); n = n * 3 + 1) {
        p = mk_realloc(p, n);
        assert_non_null(p);
        assert_true(is_aligned(p, 16));
        assert_true(all_eq(p, prev, 7));
        fill(p, n, 7);
        prev = n;
    }
    /* shrink back down */
    for (size_t n = prev / 5; n >= 8; n /= 5) {
        p = mk_realloc(p, n);
        assert_non_null(p);
        assert_true(all_eq(p, n, 7));
        assert_true(mk_malloc_usable_size(p) >= n);
    }
    /* realloc to 0 frees and returns NULL (glibc) */
    uint64_t frees = stats().n_free;
    assert_null(mk_realloc(p, 0));
    assert_true(stats().n_free > frees);
    /* failure leaves the block alone */
    unsigned char *q = mk_malloc(50);
    fill(q, 50, 3);
    errno = 0;
    assert_null(mk_realloc(q, SIZE_MAX - 10));
    assert_int_equal(errno, ENOMEM);
    assert_true(all_eq(q, 50, 3));
    mk_free(q);
}

static void test_reallocarray(void **state) {
    (void)state;
    int *a = mk_reallocarray(NULL, 10, sizeof(int));
    assert_non_null(a);
    for (int i = 0; i < 10; i++) a[i] = i;
    a = mk_reallocarray(a, 1000, sizeof(int));
    assert_non_null(a);
    for (int i = 0; i < 10; i++) assert_int_equal(a[i], i);
    errno = 0;
    assert_null(mk_reallocarray(a, SIZE_MAX / 2, 4));
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(a[9], 9); /* untouched */
    mk_free(a);
}

static void test_memalign(void **state) {
    (void)state;
    static const size_t sizes[] = {0, 1, 24, 100, 1000, 5000, 70000, 200000, 3 << 20};
    for (size_t align = 1; align <= ((size_t)8 << 20); align *= 2) {
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            unsigned char *p = mk_memalign(align, sizes[i]);
            assert_non_null(p);
            assert_true(is_aligned(p, align < 16 ? 16 : align));
            assert_true(mk_malloc_usable_size(p) >= sizes[i]);
            fill(p, sizes[i], 0x5A);
            /* neighbours stay intact */
            unsigned char *q = mk_memalign(align, sizes[i]);
            fill(q, sizes[i], 0xA5);
            assert_true(all_eq(p, sizes[i], 0x5A));
            mk_free(p);
            mk_free_aligned_sized(q, align, sizes[i]);
        }
    }
    /* non-power-of-two: rounded up as glibc does */
    void *p = mk_memalign(48, 100);
    assert_non_null(p);
    assert_true(is_aligned(p, 64));
    mk_free(p);
}

static void test_posix_memalign(void **state) {
    (void)state;
    void *p = (void *)1;
    assert_int_equal(mk_posix_memalign(&p, 0, 10), EINVAL);
    assert_int_equal(mk_posix_memalign(&p, 4, 10), EINVAL);
    assert_int_equal(mk_posix_memalign(&p, 24, 10), EINVAL);
    assert_ptr_equal(p, (void *)1);
    errno = 1234;
    assert_int_equal(mk_posix_memalign(&p, 64, SIZE_MAX / 2), ENOMEM);
    assert_int_equal(errno, 1234);
    assert_int_equal(mk_posix_memalign(&p, 8, 10), 0);
    mk_free(p);
    assert_int_equal(mk_posix_memalign(&p, 1 << 16, 10), 0);
    assert_true(is_aligned(p, 1 << 16));
    mk_free(p);
}

static void test_aligned_alloc_valloc(void **state) {
    (void)state;
    errno = 0;
    assert_null(mk_aligned_alloc(0, 16));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(mk_aligned_alloc(3, 16));
    assert_int_equal(errno, EINVAL);
    void *p = mk_aligned_alloc(256, 1000);
    assert_non_null(p);
    assert_true(is_aligned(p, 256));
    mk_free(p);
    p = mk_aligned_alloc(256, 10); /* size not a multiple: allowed since C17 */
    assert_non_null(p);
    mk_free(p);
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    p = mk_valloc(10);
    assert_true(is_aligned(p, page));
    mk_free(p);
    p = mk_pvalloc(0);
    assert_non_null(p);
    assert_true(is_aligned(p, page));
    assert_true(mk_malloc_usable_size(p) >= page);
    mk_free(p);
    p = mk_pvalloc(page + 1);
    assert_true(mk_malloc_usable_size(p) >= 2 * page);
    mk_free(p);
    errno = 0;
    assert_null(mk_pvalloc(SIZE_MAX - 10));
    assert_int_equal(errno, ENOMEM);
}

static void test_usable_and_sized(void **state) {
    (void)state;
    assert_int_equal(mk_malloc_usable_size(NULL), 0);
    for (size_t n = 1; n < 300000; n = n * 2 + 3) {
        unsigned char *p = mk_malloc(n);
        size_t u = mk_malloc_usable_size(p);
        assert_true(u >= n);
        fill(p, u, 1); /* the whole usable size is ours */
        mk_free_sized(p, n);
    }
}

/* ---- corruption checks ---- */

static void test_invalid_and_double_free(void **state) {
    (void)state;
    mk_heap_set_error_handler(record_error);
    g_errors = 0;
    char *p = mk_malloc(64);
    mk_free(p + 16); /* interior pointer */
    assert_int_equal(g_errors, 1);
    mk_free(p);
    mk_free(p); /* double free */
    assert_int_equal(g_errors, 2);
    assert_non_null(strstr(g_last_msg, "double free"));
    int on_stack;
    mk_free(&on_stack); /* not ours at all */
    assert_int_equal(g_errors, 3);
    char *big = mk_malloc(1 << 20);
    mk_free(big + 4096);
    assert_int_equal(g_errors, 4);
    mk_free(big);
    mk_free(big); /* large double free: its chunk is no longer registered */
    assert_int_equal(g_errors, 5);
    assert_int_equal(mk_malloc_usable_size(&on_stack), 0);
    assert_int_equal(g_errors, 6);
    mk_heap_set_error_handler(NULL);
    /* the heap still works */
    void *q = mk_malloc(64);
    assert_non_null(q);
    mk_free(q);
}

/* ---- statistics, trim, purge ---- */

static void test_stats_counts(void **state) {
    (void)state;
    mk_heap_stats a = stats();
    void *p[100];
    for (int i = 0; i < 100; i++) p[i] = mk_malloc(100); /* class 112 */
    mk_heap_stats b = stats();
    assert_int_equal(b.n_alloc - a.n_alloc, 100);
    assert_int_equal(b.current - a.current, 100 * 112);
    assert_true(b.peak >= b.current);
    for (int i = 0; i < 100; i++) mk_free(p[i]);
    mk_heap_stats c = stats();
    assert_int_equal(c.n_free - b.n_free, 100);
    assert_int_equal(c.current, a.current);
    assert_int_equal(c.source_sbrk, sbrk_mode() ? 1 : 0);
    char buf[1024];
    int n = mk_heap_stats_json(&c, buf, sizeof buf);
    assert_true(n > 0 && (size_t)n < sizeof buf);
    assert_int_equal(buf[0], '{');
    assert_int_equal(buf[n - 1], '}');
    char want[64];
    snprintf(want, sizeof want, "\"n_free\":%llu,", (unsigned long long)c.n_free);
    assert_non_null(strstr(buf, want));
    assert_non_null(strstr(buf, sbrk_mode() ? "\"source\":\"sbrk\"" : "\"source\":\"mmap\""));
    assert_int_equal(mk_heap_stats_json(&c, NULL, 0), n);
    assert_int_equal(mk_heap_stats_json(NULL, buf, 10), MK_EINVAL);
    assert_int_equal(mk_heap_get_stats(NULL, NULL), MK_EINVAL);
}

static void test_trim_returns_memory(void **state) {
    (void)state;
    enum { N = 3000 };
    static void *p[N];
    for (int i = 0; i < N; i++) p[i] = mk_malloc(1000 + (size_t)(i % 7) * 3000);
    void *big = mk_malloc(2 << 20);
    memset(big, 1, 2 << 20);
    for (int i = 0; i < N; i++) mk_free(p[i]);
    mk_free(big);
    mk_heap_stats before = stats();
    assert_true(before.dirty + before.large_cached > 0);
    assert_int_equal(mk_heap_trim(), MK_OK);
    mk_heap_stats after = stats();
    assert_int_equal(after.dirty, 0);
    assert_int_equal(after.large_cached, 0);
    assert_true(after.returned > before.returned);
    assert_true(after.mapped < before.mapped);
}

/* Churn on one large block must not cost a system call per round: the freed
 * mapping is kept (up to the threshold, for the delay) and reused. */
static void test_large_churn_no_syscalls(void **state) {
    (void)state;
    assert_int_equal(mk_heap_configure("purge_delay=60000"), MK_OK);
    void *warm = mk_malloc(1 << 20);
    mk_free(warm);
    uint64_t calls = stats().n_os_calls;
    for (int i = 0; i < 200; i++) {
        char *p = mk_malloc(1 << 20);
        p[0] = p[(1 << 20) - 1] = 1;
        mk_free(p);
    }
    /* the same for small-span churn across a span boundary */
    for (int i = 0; i < 200; i++) {
        void *q[700];
        for (int j = 0; j < 700; j++) q[j] = mk_malloc(200);
        for (int j = 0; j < 700; j++) mk_free(q[j]);
    }
    assert_true(stats().n_os_calls - calls <= 4);
    assert_int_equal(mk_heap_configure("purge_delay=250"), MK_OK);
}

/* Above the threshold, free pages go back at once. */
static void test_threshold_purges(void **state) {
    (void)state;
    assert_int_equal(mk_heap_configure("purge_delay=60000,purge_threshold=1m"), MK_OK);
    char *p = mk_malloc(8 << 20); /* larger than the threshold: unmapped on free */
    memset(p, 1, 8 << 20);
    uint64_t ret = stats().returned;
    mk_free(p);
    assert_true(stats().returned - ret >= (8u << 20));
    enum { N = 4000 };
    static void *q[N];
    for (int i = 0; i < N; i++) q[i] = mk_malloc(4000);
    for (int i = 0; i < N; i++) mk_free(q[i]);
    assert_true(stats().dirty <= (1u << 20) + (64u << 10) * 2);
    assert_int_equal(mk_heap_configure("purge_threshold=8m,purge_delay=250"), MK_OK);
}

/* A heap whose spans come and go keeps their free pages while it is big:
 * the dirty allowance is the threshold or half the pages in its spans,
 * whichever is more, so span churn on a big heap makes no madvise. */
static void test_big_heap_span_churn_no_purge(void **state) {
    (void)state;
    assert_int_equal(mk_heap_configure("purge_delay=60000,purge_threshold=1m"), MK_OK);
    enum { N = 4096, K = 640 }; /* 16 MiB of 4 KiB blocks; churn 2.5 MiB of them */
    static void *p[N];
    for (int i = 0; i < N; i++) p[i] = mk_malloc(4000);
    uint64_t calls = stats().n_os_calls;
    for (int round = 0; round < 20; round++) {
        for (int i = 1000; i < 1000 + K; i++) mk_free(p[i]);
        for (int i = 1000; i < 1000 + K; i++) p[i] = mk_malloc(4000);
    }
    assert_true(stats().n_os_calls - calls <= 2);
    for (int i = 0; i < N; i++) mk_free(p[i]);
    /* everything freed: the allowance is the threshold again */
    assert_true(stats().dirty <= (1u << 20) + (64u << 10) * 2);
    assert_int_equal(mk_heap_configure("purge_threshold=8m,purge_delay=250"), MK_OK);
}

/* The large cache keeps chunks bigger than the threshold while as many
 * large bytes are live; a cached chunk is cut (on 4 MiB) for smaller
 * blocks; calloc from a reused chunk is zero; realloc grows inside the
 * chunk's 4 MiB units without a system call. */
static void test_large_cache_reuse(void **state) {
    (void)state;
    assert_int_equal(mk_heap_configure("purge_delay=60000,purge_threshold=1m"), MK_OK);
    char *ballast = mk_malloc(16 << 20); /* live large bytes: the budget */
    char *big = mk_malloc(12 << 20);
    fill(big, 12 << 20, 0xa5);
    mk_free(big); /* > threshold, but kept resident: 16 MiB are live */
    assert_true(stats().large_cached >= (12u << 20));
    uint64_t calls = stats().n_os_calls;
    char *q[3];
    for (int i = 0; i < 3; i++) {
        q[i] = i == 1 ? mk_calloc(1, 7 << 19) : mk_malloc(7 << 19);
        assert_non_null(q[i]);
        if (i == 1) assert_true(all_eq(q[i], 7 << 19, 0)); /* over pages of 0xa5 */
        fill(q[i], 7 << 19, (unsigned char)i);
    }
    assert_true(stats().n_os_calls == calls); /* three blocks of 3.5 MiB cut from the 12 MiB */
    char *r = mk_realloc(q[0], (7 << 19) + (256 << 10));
    assert_ptr_equal(r, q[0]);
    assert_true(all_eq(r, 7 << 19, 0));
    assert_true(stats().n_os_calls == calls);
    mk_free(r);
    mk_free(q[1]);
    mk_free(q[2]);
    mk_free(ballast);
    assert_int_equal(mk_heap_trim(), MK_OK);
    assert_int_equal(stats().large_cached, 0);
    assert_int_equal(mk_heap_configure("purge_threshold=8m,purge_delay=250"), MK_OK);
}

/* ThreadSanitizer faults in its own shadow pages when a thread touches
 * memory, which the fault count below cannot tell apart. */
#include "sanitizer.h"

static long minor_faults(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* New spans take resident free pages of any segment before never-touched
 * pages of another: here the freed pages are in the older segment, the
 * newest one has untouched pages, and the new spans must not fault. */
static void *dirty_first_thread(void *arg) {
    enum { N1 = 1300, F = 600 }; /* 4 KiB blocks: more than one segment */
    static void *p[N1], *q[F];
    for (int i = 0; i < N1; i++) p[i] = mk_malloc(4000);
    for (int i = 0; i < F; i++) mk_free(p[i]);
    long before = minor_faults();
    for (int i = 0; i < F; i++) q[i] = mk_malloc(3000); /* another class: new spans */
    *(long *)arg = minor_faults() - before;
    for (int i = 0; i < F; i++) mk_free(q[i]);
    for (int i = F; i < N1; i++) mk_free(p[i]);
    return NULL;
}

static void test_dirty_pages_first(void **state) {
    (void)state;
    assert_int_equal(mk_heap_configure("purge_delay=60000,purge_threshold=64m"), MK_OK);
    long faults = 0;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, dirty_first_thread, &faults), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    if (!MK_TSAN) assert_true(faults < 100); /* 600 blocks of 3 KiB on fresh pages: ~450 */
    assert_int_equal(mk_heap_configure("purge_threshold=8m,purge_delay=250"), MK_OK);
}

static void test_configure(void **state) {
    (void)state;
    assert_int_equal(mk_heap_configure("purge_delay=100"), MK_OK);
    assert_int_equal(mk_heap_configure("nonsense"), MK_EINVAL);
    assert_int_equal(mk_heap_configure("purge_delay=abc"), MK_EINVAL);
    assert_int_equal(mk_heap_configure("purge_threshold=12q"), MK_EINVAL);
    assert_int_equal(mk_heap_configure("purge_threshold=64k, purge_delay=250"), MK_OK);
    assert_int_equal(mk_heap_configure(sbrk_mode() ? "source=mmap" : "source=sbrk"), MK_EBUSY);
    assert_int_equal(mk_heap_configure(sbrk_mode() ? "source=sbrk" : "source=mmap"), MK_OK);
    assert_int_equal(mk_heap_configure("stats=xml"), MK_EINVAL);
    assert_int_equal(mk_heap_configure(NULL), MK_EINVAL);
    assert_int_equal(mk_heap_configure("purge_threshold=8m"), MK_OK);
}

/* In sbrk mode, segments live below the program break's top. */
static void test_source(void **state) {
    (void)state;
    void *p = mk_malloc(100);
    void *brk_now = sbrk(0);
    if (sbrk_mode()) assert_true((uintptr_t)p < (uintptr_t)brk_now);
    mk_free(p);
    assert_int_equal(stats().source_sbrk, sbrk_mode() ? 1 : 0);
}

/* ---- first-class heaps ---- */

static void test_first_class(void **state) {
    (void)state;
    int err = 1;
    mk_heap *h = mk_heap_new(&err);
    assert_non_null(h);
    assert_int_equal(err, MK_OK);
    mk_heap_stats base = stats();
    void *keep[500];
    for (int i = 0; i < 500; i++) {
        size_t n = (size_t)(i * 37 % 5000) + 1;
        if (i % 100 == 0) n = 300000; /* large ones too */
        keep[i] = mk_heap_malloc(h, n);
        assert_non_null(keep[i]);
        fill(keep[i], n, 9);
    }
    mk_heap_stats hs;
    assert_int_equal(mk_heap_get_stats(h, &hs), MK_OK);
    assert_true(hs.current > 500 * 1000);
    assert_int_equal(hs.n_large, 5);
    /* individual frees work, from here and from other heaps' threads */
    for (int i = 1; i < 500; i += 2) mk_free(keep[i]);
    unsigned char *z = mk_heap_calloc(h, 10, 10);
    assert_true(all_eq(z, 100, 0));
    void *a = mk_heap_memalign(h, 4096, 100);
    assert_true(is_aligned(a, 4096));
    void *r = mk_heap_realloc(h, NULL, 10);
    r = mk_heap_realloc(h, r, 100000);
    assert_non_null(r);
    assert_int_equal(mk_heap_destroy(h), MK_OK);
    /* everything is gone at once */
    mk_heap_stats after = stats();
    assert_int_equal(after.current, base.current);
    assert_int_equal(after.heaps, base.heaps - 1);
    assert_int_equal(mk_heap_destroy(NULL), MK_OK);
    int not_a_heap[64] = {0};
    assert_int_equal(mk_heap_destroy((mk_heap *)not_a_heap), MK_EINVAL);
    errno = 0;
    assert_null(mk_heap_malloc((mk_heap *)not_a_heap, 10));
    assert_int_equal(errno, EINVAL);
    assert_int_equal(mk_heap_get_stats((mk_heap *)not_a_heap, &hs), MK_EINVAL);
}

/* ---- threads ---- */

static void *alloc_for_other(void *arg) {
    void **slot = arg;
    for (int i = 0; i < 1000; i++) slot[i] = mk_malloc((size_t)(i % 50) * 24 + 1);
    return NULL;
}

static void *free_from_other(void *arg) {
    void **slot = arg;
    for (int i = 0; i < 1000; i++) mk_free(slot[i]);
    return NULL;
}

static void test_cross_thread_and_reuse(void **state) {
    (void)state;
    static void *slot[1000];
    pthread_t t;
    mk_heap_stats a = stats();
    assert_int_equal(pthread_create(&t, NULL, alloc_for_other, slot), 0);
    pthread_join(t, NULL);
    mk_heap_stats b = stats();
    /* the dead thread's heap waits in the pool: a new thread takes it */
    assert_int_equal(pthread_create(&t, NULL, free_from_other, slot), 0);
    pthread_join(t, NULL);
    mk_heap_stats c = stats();
    assert_true(b.heaps <= a.heaps + 1);
    assert_int_equal(c.heaps, b.heaps);
    assert_int_equal(c.current, a.current);
    /* and the main thread frees what another thread allocated */
    assert_int_equal(pthread_create(&t, NULL, alloc_for_other, slot), 0);
    pthread_join(t, NULL);
    free_from_other(slot);
    assert_int_equal(stats().current, a.current);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malloc_sizes),
        cmocka_unit_test(test_malloc_zero),
        cmocka_unit_test(test_huge_sizes_fail),
        cmocka_unit_test(test_calloc_family),
        cmocka_unit_test(test_realloc_family),
        cmocka_unit_test(test_reallocarray),
        cmocka_unit_test(test_memalign),
        cmocka_unit_test(test_posix_memalign),
        cmocka_unit_test(test_aligned_alloc_valloc),
        cmocka_unit_test(test_usable_and_sized),
        cmocka_unit_test(test_invalid_and_double_free),
        cmocka_unit_test(test_stats_counts),
        cmocka_unit_test(test_trim_returns_memory),
        cmocka_unit_test(test_large_churn_no_syscalls),
        cmocka_unit_test(test_threshold_purges),
        cmocka_unit_test(test_big_heap_span_churn_no_purge),
        cmocka_unit_test(test_large_cache_reuse),
        cmocka_unit_test(test_dirty_pages_first),
        cmocka_unit_test(test_configure),
        cmocka_unit_test(test_source),
        cmocka_unit_test(test_first_class),
        cmocka_unit_test(test_cross_thread_and_reuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
