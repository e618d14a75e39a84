/*
 * Quick lists (MK_REGION_QUICK): deferred coalescing of small blocks.
 * What must hold: a freed small block is handed out again for the same
 * size without a search; it is still "free" to the user (double free,
 * realloc and usable_size refuse it); memory parked on the lists is never
 * lost (an allocation that needs it flushes the lists); validate catches
 * damage to the lists; every write is journaled (crash at every step).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "memkit/region.h"
#include "region/region_int.h"

#define RSIZE ((size_t)256 * 1024)

#ifdef MK_TEST_HOOKS
static jmp_buf crash_jmp;
static uint64_t crash_at;
static void crash_hook(uint64_t step) {
    if (step == crash_at) longjmp(crash_jmp, 1);
}
#endif

static const mk_policy coalescing[] = {MK_POLICY_FIRST_FIT, MK_POLICY_NEXT_FIT, MK_POLICY_BEST_FIT,
                                       MK_POLICY_WORST_FIT, MK_POLICY_TLSF};
#define NPOL (sizeof coalescing / sizeof coalescing[0])

static void *buffer(void) {
    void *p = aligned_alloc(4096, RSIZE);
    assert_non_null(p);
    return p;
}

static mk_region *make(void *mem, mk_policy p, unsigned flags) {
    mk_region *r = NULL;
    assert_int_equal(mk_region_create(mem, RSIZE, p, MK_REGION_QUICK | flags, &r), MK_OK);
    return r;
}

static void assert_valid(mk_region *r) {
    mk_fault f;
    int rc = mk_region_validate(r, &f);
    if (rc != MK_OK) fail_msg("validate: %s at %llu", f.invariant, (unsigned long long)f.offset);
}

static void test_buddy_refused(void **state) {
    (void)state;
    void *mem = buffer();
    mk_region *r;
    assert_int_equal(mk_region_min_size(MK_POLICY_BUDDY, MK_REGION_QUICK), 0);
    assert_int_equal(mk_region_create(mem, RSIZE, MK_POLICY_BUDDY, MK_REGION_QUICK, &r), MK_EINVAL);
    free(mem);
}

/* Free then alloc of the same size returns the same block (LIFO reuse),
 * and the block is not merged with its free neighbour meanwhile. */
static void test_reuse_lifo(void **state) {
    (void)state;
    for (size_t i = 0; i < NPOL; i++) {
        void *mem = buffer();
        mk_region *r = make(mem, coalescing[i], 0);
        mk_off a, b, c;
        assert_int_equal(mk_region_alloc(r, 100, 0, &a), MK_OK);
        assert_int_equal(mk_region_alloc(r, 100, 0, &b), MK_OK);
        assert_int_equal(mk_region_alloc(r, 100, 0, &c), MK_OK);
        assert_int_equal(mk_region_free(r, a), MK_OK);
        assert_int_equal(mk_region_free(r, b), MK_OK);
        assert_valid(r);
        mk_stats s;
        assert_int_equal(mk_region_stats(r, &s), MK_OK);
        assert_int_equal(s.blocks_used, 1); /* parked blocks are free to the user */
        mk_off x, y;
        assert_int_equal(mk_region_alloc(r, 100, 0, &x), MK_OK);
        assert_int_equal(mk_region_alloc(r, 100, 0, &y), MK_OK);
        assert_true(x == b && y == a);
        assert_valid(r);
        free(mem);
    }
}

static void test_parked_is_free_to_user(void **state) {
    (void)state;
    for (size_t i = 0; i < NPOL; i++) {
        void *mem = buffer();
        mk_region *r = make(mem, coalescing[i], 0);
        mk_off a, o;
        size_t n;
        assert_int_equal(mk_region_alloc(r, 64, 0, &a), MK_OK);
        assert_int_equal(mk_region_free(r, a), MK_OK);
        assert_int_equal(mk_region_free(r, a), MK_EDOUBLEFREE);
        assert_int_equal(mk_region_realloc(r, a, 10, &o), MK_EDOUBLEFREE);
        assert_int_equal(mk_region_usable_size(r, a, &n), MK_EDOUBLEFREE);
        assert_valid(r);
        free(mem);
    }
}

/* Fill the region with small blocks, free them all (many are parked),
 * then ask for one block as large as the whole data: only a flush of the
 * quick lists into the policy can give it. */
static void test_flush_on_pressure(void **state) {
    (void)state;
    for (size_t i = 0; i < NPOL; i++) {
        void *mem = buffer();
        mk_region *r = make(mem, coalescing[i], 0);
        static mk_off blk[8192];
        size_t n = 0;
        while (n < 8192 && mk_region_alloc(r, 16 + (n % 50) * 16, 0, &blk[n]) == MK_OK) n++;
        assert_true(n > 100);
        mk_stats s;
        assert_int_equal(mk_region_stats(r, &s), MK_OK);
        uint64_t fails = s.n_failed;
        for (size_t k = 0; k < n; k++) assert_int_equal(mk_region_free(r, blk[k]), MK_OK);
        assert_valid(r);
        assert_int_equal(mk_region_stats(r, &s), MK_OK);
        uint64_t cap = s.capacity;
        mk_off big;
        assert_int_equal(mk_region_alloc(r, cap - 64, 0, &big), MK_OK);
        assert_int_equal(mk_region_stats(r, &s), MK_OK);
        assert_int_equal(s.n_failed, fails);
        assert_int_equal(s.blocks_used, 1);
        assert_valid(r);
        assert_int_equal(mk_region_free(r, big), MK_OK);
        assert_valid(r);
        free(mem);
    }
}

#ifdef MK_TEST_HOOKS
static int big_alloc_cut(mk_region *r, size_t size) {
    mk__test_crash_step = 0;
    mk__test_crash_hook = crash_hook;
    if (setjmp(crash_jmp) != 0) {
        mk__test_crash_hook = NULL;
        return 0;
    }
    mk_off o;
    int rc = mk_region_alloc(r, size, 0, &o);
    mk__test_crash_hook = NULL;
    return rc == MK_OK;
}

/* A flush may merge a thousand parked blocks: far more writes than one
 * journaled operation can log. A crash deep inside it must still be
 * recoverable, with nothing the user owns changed. */
static void test_flush_journaled_crash(void **state) {
    (void)state;
    for (size_t i = 0; i < NPOL; i++) {
        void *mem = buffer();
        mk_region *r = make(mem, coalescing[i], MK_REGION_JOURNAL);
        static mk_off blk[8192];
        size_t n = 0;
        while (n < 8192 && mk_region_alloc(r, 16 + (n % 60) * 16, 0, &blk[n]) == MK_OK) n++;
        for (size_t k = 1; k < n; k += 2) assert_int_equal(mk_region_free(r, blk[k]), MK_OK);
        for (size_t k = 0; k < n; k += 2) assert_int_equal(mk_region_free(r, blk[k]), MK_OK);
        mk_stats s0;
        assert_int_equal(mk_region_stats(r, &s0), MK_OK);
        /* Count the writes of the whole flush on a copy, then cut the
         * real one three quarters of the way, past one journal's worth. */
        void *copy = buffer();
        memcpy(copy, mem, RSIZE);
        crash_at = UINT64_MAX;
        assert_int_equal(big_alloc_cut((mk_region *)copy, s0.capacity / 2), 1);
        uint64_t total = mk__test_crash_step;
        free(copy);
        assert_true(total > 2 * MK__JOURNAL_CAP);
        crash_at = total * 3 / 4;
        assert_int_equal(big_alloc_cut(r, s0.capacity / 2), 0);
        int rolled = 0;
        assert_int_equal(mk_region_recover(r, &rolled), MK_OK);
        assert_valid(r);
        mk_stats s1;
        assert_int_equal(mk_region_stats(r, &s1), MK_OK);
        assert_int_equal(s1.bytes_used, 0);
        mk_off big;
        assert_int_equal(mk_region_alloc(r, s0.capacity / 2, 0, &big), MK_OK);
        assert_valid(r);
        free(mem);
    }
}
#endif

static void test_validate_catches_damage(void **state) {
    (void)state;
    for (size_t i = 0; i < NPOL; i++) {
        void *mem = buffer();
        mk_region *r = make(mem, coalescing[i], 0);
        mk__hdr *h = (mk__hdr *)mem;
        mk__quick *q = (mk__quick *)(void *)mk__word(h, h->quick_off);
        mk_off a, b, keep;
        assert_int_equal(mk_region_alloc(r, 200, 0, &a), MK_OK);
        assert_int_equal(mk_region_alloc(r, 200, 0, &b), MK_OK);
        assert_int_equal(mk_region_alloc(r, 200, 0, &keep), MK_OK);
        assert_int_equal(mk_region_free(r, a), MK_OK);
        assert_int_equal(mk_region_free(r, b), MK_OK);
        assert_valid(r);
        unsigned c = (unsigned)(mk__bspan(h, b - 8) / MK__GRAIN);
        mk_fault f;
        /* a wrong count */
        q->count[c]++;
        assert_int_equal(mk_region_validate(r, &f), MK_ECORRUPT);
        assert_non_null(f.invariant);
        q->count[c]--;
        /* a cycle */
        uint64_t saved = *mk__word(h, a - 8 + MK__LINK0);
        *mk__word(h, a - 8 + MK__LINK0) = b - 8;
        assert_int_equal(mk_region_validate(r, &f), MK_ECORRUPT);
        *mk__word(h, a - 8 + MK__LINK0) = saved;
        /* a list pointing at a live block */
        q->head[c] = keep - 8;
        assert_int_equal(mk_region_validate(r, &f), MK_ECORRUPT);
        mk_off x;
        assert_int_equal(mk_region_alloc(r, 200, 0, &x), MK_ECORRUPT); /* refused, not followed */
        q->head[c] = b - 8;
        assert_valid(r);
        free(mem);
    }
}

/* Randomized: quick lists against a simple model, validate often. */
static void test_random(void **state) {
    (void)state;
    uint64_t seed = 12345;
    const char *env = getenv("MK_TEST_SEED");
    if (env) seed = strtoull(env, NULL, 0);
    for (size_t i = 0; i < NPOL; i++) {
        void *mem = buffer();
        mk_region *r = make(mem, coalescing[i], i % 2 ? MK_REGION_JOURNAL : 0);
        enum { SLOTS = 512 };
        mk_off off[SLOTS] = {0};
        size_t len[SLOTS] = {0};
        uint64_t x = seed + i;
        for (int step = 0; step < 40000; step++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            unsigned k = (unsigned)(x % SLOTS);
            if (off[k]) {
                unsigned char *p = mk_region_ptr(r, off[k]);
                for (size_t j = 0; j < len[k]; j++)
                    if (p[j] != (unsigned char)k) fail_msg("block %u lost its data", k);
                assert_int_equal(mk_region_free(r, off[k]), MK_OK);
                off[k] = 0;
            } else {
                len[k] = 1 + (x >> 20) % ((x >> 40) % 8 ? 600 : 3000);
                int rc = mk_region_alloc(r, len[k], (x >> 33) % 7 ? 0 : 64, &off[k]);
                if (rc == MK_ENOMEM) {
                    off[k] = 0;
                    continue;
                }
                assert_int_equal(rc, MK_OK);
                memset(mk_region_ptr(r, off[k]), (int)k, len[k]);
            }
            if (step % 997 == 0) assert_valid(r);
        }
        assert_valid(r);
        free(mem);
    }
}

#ifdef MK_TEST_HOOKS
/* Run op once; 1 if it finished, 0 if the hook cut it at step crash_at. */
static int run_cut(mk_region *r, int op, mk_off a, uint64_t big_size) {
    mk__test_crash_step = 0;
    mk__test_crash_hook = crash_hook;
    if (setjmp(crash_jmp) != 0) {
        mk__test_crash_hook = NULL;
        return 0;
    }
    mk_off o;
    if (op == 0) assert_int_equal(mk_region_free(r, a), MK_OK);
    if (op == 1) assert_int_equal(mk_region_alloc(r, 300, 0, &o), MK_OK);
    if (op == 2) assert_int_equal(mk_region_alloc(r, big_size, 0, &o), MK_OK);
    mk__test_crash_hook = NULL;
    return 1;
}

/* Crash at every metadata write of a quick free (op 0), a quick alloc
 * (op 1) and an alloc that must flush the lists (op 2); roll back and
 * compare with the image before (op 2: with what the user sees). */
static void crash_case(mk_policy p, int op) {
    void *mem = buffer(), *before = buffer();
    mk_region *r = make(mem, p, MK_REGION_JOURNAL);
    mk_off a, b;
    assert_int_equal(mk_region_alloc(r, 300, 0, &a), MK_OK);
    assert_int_equal(mk_region_alloc(r, 300, 0, &b), MK_OK);
    if (op >= 1) assert_int_equal(mk_region_free(r, a), MK_OK);
    if (op == 2) assert_int_equal(mk_region_free(r, b), MK_OK); /* both parked */
    mk_stats s0;
    assert_int_equal(mk_region_stats(r, &s0), MK_OK);
    memcpy(before, mem, RSIZE);
    for (crash_at = 1;; crash_at++) {
        memcpy(mem, before, RSIZE);
        if (run_cut(r, op, a, s0.largest_free + 100)) break;
        int rolled = 0;
        assert_int_equal(mk_region_recover(r, &rolled), MK_OK);
        assert_int_equal(rolled, 1);
        if (op == 2) {
            /* A flush commits one parked block at a time, so a crash
             * leaves some merged: the user's view must be unchanged. */
            mk_stats s1;
            assert_valid(r);
            assert_int_equal(mk_region_stats(r, &s1), MK_OK);
            assert_int_equal(s1.bytes_used, s0.bytes_used);
            assert_int_equal(s1.blocks_used, s0.blocks_used);
            continue;
        }
        /* Everything but the journal itself (its args name the last op). */
        mk__hdr *h = (mk__hdr *)mem;
        size_t j0 = (size_t)h->journal_off, j1 = (size_t)h->data_start;
        if (memcmp(mem, before, j0) != 0 ||
            memcmp((char *)mem + j1, (char *)before + j1, RSIZE - j1) != 0)
            fail_msg("policy %d op %d: image differs after rollback at step %llu", (int)p, op,
                     (unsigned long long)crash_at);
    }
    assert_true(crash_at > 2);
    assert_valid(r);
    free(mem);
    free(before);
}

static void test_crash_every_step(void **state) {
    (void)state;
    for (size_t i = 0; i < NPOL; i++)
        for (int op = 0; op < 3; op++) crash_case(coalescing[i], op);
}
#endif

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buddy_refused),
        cmocka_unit_test(test_reuse_lifo),
        cmocka_unit_test(test_parked_is_free_to_user),
        cmocka_unit_test(test_flush_on_pressure),
        cmocka_unit_test(test_validate_catches_damage),
        cmocka_unit_test(test_random),
#ifdef MK_TEST_HOOKS
        cmocka_unit_test(test_crash_every_step),
        cmocka_unit_test(test_flush_journaled_crash),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
