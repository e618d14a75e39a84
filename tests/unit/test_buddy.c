/*
 * The binary buddy policy through the public region API, plus a few
 * hand-made corruptions that only the policy's own check can see.
 *
 * Randomized tests are replayable: the seed is MK_TEST_SEED from the
 * environment (default fixed) and is part of every failure message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "memkit/region.h"
#include "region/region_int.h"

#define BUF_SIZE (1u << 21)
static _Alignas(4096) unsigned char g_buf[BUF_SIZE + 8192];

/* ---- helpers ---------------------------------------------------------------- */

static uint64_t ceil_pow2(uint64_t x) {
    uint64_t p = 1;
    while (p < x) p <<= 1;
    return p;
}

static uint64_t floor_pow2(uint64_t x) {
    uint64_t p = 1;
    while (p <= x / 2) p <<= 1;
    return p;
}

static int popcount64(uint64_t x) {
    int n = 0;
    for (; x; x &= x - 1) n++;
    return n;
}

/* The span buddy must give a request: header word added, 16-rounded, then
 * the power of two at or above it, at least 32. */
static uint64_t expected_span(size_t size) {
    uint64_t s = ((uint64_t)(size ? size : 1) + 8 + 15) & ~(uint64_t)15;
    return ceil_pow2(s < 32 ? 32 : s);
}

static void validate_ok(const mk_region *r) {
    mk_fault f;
    int rc = mk_region_validate(r, &f);
    if (rc != MK_OK)
        fail_msg("validate: %d, invariant '%s' at offset %llu", rc, f.invariant ? f.invariant : "?",
                 (unsigned long long)f.offset);
}

typedef struct walk_log {
    mk_block_info b[4096];
    size_t n;
} walk_log;

static int log_block(const mk_block_info *bi, void *arg) {
    walk_log *w = arg;
    if (w->n == sizeof w->b / sizeof w->b[0]) return 1;
    w->b[w->n++] = *bi;
    return 0;
}

static walk_log g_walk, g_walk2;

static void walk(const mk_region *r, walk_log *w) {
    w->n = 0;
    assert_int_equal(mk_region_walk(r, log_block, w), 0);
}

/* Arena offset 0 in region offsets: the first block's header. */
static mk_off arena_start(const mk_region *r) {
    walk(r, &g_walk);
    assert_true(g_walk.n > 0);
    return g_walk.b[0].offset - 8;
}

static uint64_t arena_size(const mk_region *r) {
    mk_stats s;
    assert_int_equal(mk_region_stats(r, &s), MK_OK);
    return s.capacity;
}

static mk_region *make_flags(size_t base_off, size_t size, unsigned flags) {
    mk_region *r = NULL;
    assert_true(base_off + size <= sizeof g_buf);
    memset(g_buf + base_off, 0, size); /* no stale words from earlier tests */
    assert_int_equal(mk_region_create(g_buf + base_off, size, MK_POLICY_BUDDY, flags, &r), MK_OK);
    return r;
}

static mk_region *make(size_t base_off, size_t size) { return make_flags(base_off, size, 0); }

/* A region whose arena is one power-of-two chunk, so that layouts in the
 * tests below are exact. The arena start depends only on the base, so
 * shrinking the range by the excess shrinks the arena by as much. */
static mk_region *make_pow2_flags(size_t base_off, size_t approx, unsigned flags) {
    mk_region *r = make_flags(base_off, approx, flags);
    uint64_t d = arena_size(r);
    r = make_flags(base_off, approx - (size_t)(d - floor_pow2(d)), flags);
    assert_int_equal(arena_size(r), floor_pow2(d));
    return r;
}

static mk_region *make_pow2(size_t base_off, size_t approx) {
    return make_pow2_flags(base_off, approx, 0);
}

static uint64_t span_at(const mk_region *r, mk_off payload) {
    const mk__hdr *h = mk__hc(r);
    return mk__span(mk__get(h, payload - 8));
}

static int block_used(const mk_region *r, mk_off payload, uint64_t *span) {
    walk(r, &g_walk2);
    for (size_t i = 0; i < g_walk2.n; i++) {
        if (g_walk2.b[i].offset == payload) {
            if (span) *span = g_walk2.b[i].span;
            return g_walk2.b[i].used;
        }
    }
    return -1; /* not a block start */
}

/* ---- layout ------------------------------------------------------------------ */

/* A fresh arena: free power-of-two chunks, largest first, each at a
 * multiple of its size, their number the popcount of the arena size, and
 * the first payload page-aligned whatever the base's page offset. */
static void test_initial_layout(void **state) {
    (void)state;
    const size_t bases[] = {0, 16, 48, 4096 + 1024 + 16};
    const size_t sizes[] = {mk_region_min_size(MK_POLICY_BUDDY, 0), 20000, 65536 + 4096 + 480,
                            1000000};
    for (size_t i = 0; i < 4; i++) {
        for (size_t j = 0; j < 4; j++) {
            mk_region *r = make(bases[i], sizes[j]);
            validate_ok(r);
            uint64_t d = arena_size(r);
            mk_off ds = arena_start(r);
            assert_true(d >= 32 && d % 32 == 0);
            assert_int_equal((uintptr_t)mk_region_ptr(r, ds + 8) % 4096, 0);
            assert_int_equal(g_walk.n, (size_t)popcount64(d));
            uint64_t prev = UINT64_MAX, total = 0;
            for (size_t k = 0; k < g_walk.n; k++) {
                const mk_block_info *b = &g_walk.b[k];
                assert_false(b->used);
                assert_true(b->span < prev && (b->span & (b->span - 1)) == 0);
                assert_int_equal((b->offset - 8 - ds) % b->span, 0);
                prev = b->span;
                total += b->span;
            }
            assert_int_equal(total, d);
            mk_stats s;
            assert_int_equal(mk_region_stats(r, &s), MK_OK);
            assert_int_equal(s.blocks_free, (uint64_t)popcount64(d));
            assert_int_equal(mk_region_grow(r, sizes[j] + 4096), MK_ENOTSUP);
        }
    }
}

/* ---- allocation ----------------------------------------------------------------- */

static void test_pow2_spans_and_usable_size(void **state) {
    (void)state;
    mk_region *r = make(0, 1u << 20);
    const size_t sizes[] = {0,    1,     7,     8,     23,     24,   25,   40,   56,
                            57,   100,   120,   121,   1000,   2040, 2041, 4000, 4088,
                            4089, 10000, 65535, 65536, 100000, 3,    17};
    mk_off offs[sizeof sizes / sizeof sizes[0]];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        assert_int_equal(mk_region_alloc(r, sizes[i], 0, &offs[i]), MK_OK);
        size_t usable = 0;
        assert_int_equal(mk_region_usable_size(r, offs[i], &usable), MK_OK);
        assert_true(usable >= sizes[i]);
        assert_int_equal(usable + 8, expected_span(sizes[i]));
        assert_int_equal(offs[i] % 16, 0);
        validate_ok(r);
    }
    mk_off ds = arena_start(r);
    walk(r, &g_walk);
    for (size_t k = 0; k < g_walk.n; k++) {
        const mk_block_info *b = &g_walk.b[k];
        assert_true((b->span & (b->span - 1)) == 0 && b->span >= 32);
        assert_int_equal((b->offset - 8 - ds) % b->span, 0);
        assert_int_equal(b->size, b->span - 8);
    }
    /* Larger than the largest chunk: it can never fit. */
    mk_off o;
    int rc = mk_region_alloc(r, (size_t)floor_pow2(arena_size(r)), 0, &o);
    assert_true(rc == MK_ENOMEM || rc == MK_ETOOBIG);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        assert_int_equal(mk_region_free(r, offs[i]), MK_OK);
    validate_ok(r);
}

/* Every alignment up to a page is honoured in absolute address terms, for
 * bases at several page offsets, and a small aligned block keeps its small
 * span (the split-off halves stay free) instead of taking align bytes. */
static void test_alignment(void **state) {
    (void)state;
    const size_t bases[] = {0, 16, 48, 2048 + 16};
    const size_t sizes[] = {1, 24, 100, 1000, 5000};
    for (size_t bi = 0; bi < 4; bi++) {
        mk_region *r = make(bases[bi], 1u << 20);
        walk(r, &g_walk);
        size_t initial = g_walk.n;
        mk_off offs[13 * 5];
        size_t n = 0;
        for (size_t align = 1; align <= 4096; align <<= 1) {
            for (size_t si = 0; si < 5; si++) {
                mk_off o = 0;
                assert_int_equal(mk_region_alloc(r, sizes[si], align, &o), MK_OK);
                assert_int_equal((uintptr_t)mk_region_ptr(r, o) % align, 0);
                assert_int_equal(span_at(r, o), expected_span(sizes[si]));
                offs[n++] = o;
            }
            validate_ok(r);
        }
        for (size_t i = 0; i < n; i++) assert_int_equal(mk_region_free(r, offs[n - 1 - i]), MK_OK);
        validate_ok(r);
        walk(r, &g_walk);
        assert_int_equal(g_walk.n, initial);
    }
    mk_region *r = make(0, 1u << 20);
    mk_off o;
    assert_int_equal(mk_region_alloc(r, 8, 8192, &o), MK_EALIGN);
    assert_int_equal(mk_region_alloc(r, 8, 48, &o), MK_EALIGN);
}

/* The second block of span 32 taken from a fresh one-chunk arena is the
 * buddy of the first; freeing both merges everything back. */
static void test_buddies_merge(void **state) {
    (void)state;
    mk_region *r = make_pow2(0, 1u << 16);
    mk_off ds = arena_start(r);
    uint64_t d = arena_size(r);
    mk_off a, b;
    assert_int_equal(mk_region_alloc(r, 24, 0, &a), MK_OK);
    assert_int_equal(mk_region_alloc(r, 24, 0, &b), MK_OK);
    assert_int_equal(a - 8, ds);
    assert_int_equal(b - 8, ds + 32); /* a ^ 32 */
    /* The first split left one free block of every span 64 .. d/2. */
    mk_stats s;
    assert_int_equal(mk_region_stats(r, &s), MK_OK);
    assert_int_equal(s.blocks_free, (uint64_t)(popcount64(d - 1) - 6));
    validate_ok(r);

    assert_int_equal(mk_region_free(r, b), MK_OK);
    uint64_t span;
    assert_int_equal(block_used(r, b, &span), 0); /* b free, a used: no merge */
    assert_int_equal(span, 32);
    validate_ok(r);

    assert_int_equal(mk_region_free(r, a), MK_OK);
    walk(r, &g_walk);
    assert_int_equal(g_walk.n, 1);
    assert_int_equal(g_walk.b[0].span, d);
    assert_false(g_walk.b[0].used);
    validate_ok(r);

    /* Freed upper half first, then lower: same result. */
    assert_int_equal(mk_region_alloc(r, 24, 0, &a), MK_OK);
    assert_int_equal(mk_region_alloc(r, 24, 0, &b), MK_OK);
    assert_int_equal(mk_region_free(r, a), MK_OK);
    assert_int_equal(mk_region_free(r, b), MK_OK);
    walk(r, &g_walk);
    assert_int_equal(g_walk.n, 1);
    validate_ok(r);
}

/* Fill the arena with mixed sizes, free in a shuffled order: the layout is
 * the fresh one again (blocks_free = number of chunks). */
static void test_split_merge_restores(void **state) {
    (void)state;
    static mk_off offs[40000];
    mk_region *r = make(16, 300000);
    walk(r, &g_walk);
    walk_log *fresh = &g_walk2;
    *fresh = g_walk;
    size_t n0 = fresh->n;
    uint64_t x = 12345;
    size_t n = 0;
    for (;;) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        size_t size = (size_t)(x >> 33) % ((x >> 60) < 12 ? 200 : 5000);
        mk_off o;
        int rc = mk_region_alloc(r, size, 0, &o);
        if (rc != MK_OK) {
            assert_int_equal(rc, MK_ENOMEM);
            if (size < 40) break; /* even a minimum block does not fit */
            continue;
        }
        offs[n++] = o;
        assert_true(n < sizeof offs / sizeof offs[0]);
    }
    validate_ok(r);
    mk_stats s;
    assert_int_equal(mk_region_stats(r, &s), MK_OK);
    assert_int_equal(s.bytes_free + s.bytes_used, arena_size(r));
    for (size_t i = n; i > 1; i--) { /* Fisher-Yates */
        x = x * 6364136223846793005u + 1442695040888963407u;
        size_t j = (size_t)(x >> 33) % i;
        mk_off t = offs[i - 1];
        offs[i - 1] = offs[j];
        offs[j] = t;
    }
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(mk_region_free(r, offs[i]), MK_OK);
        if (i % 64 == 0) validate_ok(r);
    }
    validate_ok(r);
    assert_int_equal(mk_region_stats(r, &s), MK_OK);
    assert_int_equal(s.blocks_free, n0);
    assert_int_equal(s.bytes_used, 0);
    walk(r, &g_walk);
    assert_int_equal(g_walk.n, n0);
    for (size_t k = 0; k < n0; k++) {
        assert_int_equal(g_walk.b[k].offset, fresh->b[k].offset);
        assert_int_equal(g_walk.b[k].span, fresh->b[k].span);
    }
}

/* ---- realloc ---------------------------------------------------------------------- */

static void test_buddy_realloc(void **state) {
    (void)state;
    mk_region *r = make_pow2(0, 1u << 16);
    mk_off ds = arena_start(r);
    mk_off a, o;
    assert_int_equal(mk_region_alloc(r, 1000, 0, &a), MK_OK); /* span 1024 at 0 */
    assert_int_equal(a - 8, ds);
    memset(mk_region_ptr(r, a), 0xA5, 1000);

    /* Shrink in place: the upper halves 128, 256, 512 become free. */
    assert_int_equal(mk_region_realloc(r, a, 100, &o), MK_OK);
    assert_int_equal(o, a);
    assert_int_equal(span_at(r, a), 128);
    uint64_t span;
    assert_int_equal(block_used(r, a + 128, &span), 0);
    assert_int_equal(span, 128);
    assert_int_equal(block_used(r, a + 256, &span), 0);
    assert_int_equal(span, 256);
    assert_int_equal(block_used(r, a + 512, &span), 0);
    assert_int_equal(span, 512);
    validate_ok(r);

    /* Grow in place over the free buddies. */
    assert_int_equal(mk_region_realloc(r, a, 900, &o), MK_OK);
    assert_int_equal(o, a);
    assert_int_equal(span_at(r, a), 1024);
    assert_int_equal(block_used(r, a + 128, NULL), -1); /* absorbed: no block starts there */
    for (size_t i = 0; i < 100; i++)
        assert_int_equal(((unsigned char *)mk_region_ptr(r, a))[i], 0xA5);
    validate_ok(r);

    /* Same span: nothing moves. */
    assert_int_equal(mk_region_realloc(r, a, 1010, &o), MK_OK);
    assert_int_equal(o, a);

    /* Its buddy in use: the block has to move, keeping its bytes (the
     * first 100: the shrink above gave the rest back). */
    memset(mk_region_ptr(r, a), 0x5A, 1000);
    mk_off b;
    assert_int_equal(mk_region_alloc(r, 1000, 0, &b), MK_OK);
    assert_int_equal(b - 8, ds + 1024);
    assert_int_equal(mk_region_realloc(r, a, 2000, &o), MK_OK);
    assert_true(o != a);
    assert_int_equal(span_at(r, o), 2048);
    for (size_t i = 0; i < 1000; i++)
        assert_int_equal(((unsigned char *)mk_region_ptr(r, o))[i], 0x5A);
    validate_ok(r);

    /* An upper half cannot grow in place either. */
    assert_int_equal(mk_region_free(r, o), MK_OK);
    assert_int_equal(mk_region_realloc(r, b, 1500, &o), MK_OK);
    assert_true(o != b);
    validate_ok(r);
    assert_int_equal(mk_region_free(r, o), MK_OK);
    walk(r, &g_walk);
    assert_int_equal(g_walk.n, 1);
    validate_ok(r);
}

/* ---- bad frees ------------------------------------------------------------------------ */

static void test_bad_frees(void **state) {
    (void)state;
    mk_region *r = make_pow2(0, 1u << 16);
    mk_off a, b, c;
    assert_int_equal(mk_region_alloc(r, 24, 0, &a), MK_OK);
    assert_int_equal(mk_region_alloc(r, 24, 0, &b), MK_OK);
    assert_int_equal(mk_region_alloc(r, 200, 0, &c), MK_OK);
    mk_stats before, after;
    assert_int_equal(mk_region_stats(r, &before), MK_OK);

    assert_int_equal(mk_region_free(r, c + 16), MK_EBADOFF); /* interior */
    assert_int_equal(mk_region_free(r, c + 8), MK_EBADOFF);  /* misaligned */
    assert_int_equal(mk_region_free(r, 8), MK_EBADOFF);      /* the header */
    assert_int_equal(mk_region_free(r, (mk_off)mk_region_size(r) + 4096), MK_EBADOFF);
    assert_int_equal(mk_region_stats(r, &after), MK_OK);
    assert_memory_equal(&before, &after, offsetof(mk_stats, fragmentation));
    validate_ok(r);

    assert_int_equal(mk_region_free(r, c), MK_OK);
    assert_int_equal(mk_region_free(r, c), MK_EDOUBLEFREE);
    validate_ok(r);

    /* b is the upper half: once a and b merged, b's old header is gone, so
     * a second free of b is refused rather than releasing a ghost block. */
    assert_int_equal(mk_region_free(r, b), MK_OK);
    assert_int_equal(mk_region_free(r, b), MK_EDOUBLEFREE);
    assert_int_equal(mk_region_free(r, a), MK_OK);
    assert_int_equal(mk_region_free(r, b), MK_EBADOFF);
    assert_int_equal(mk_region_free(r, a), MK_EDOUBLEFREE); /* a heads the merged block */
    validate_ok(r);
    walk(r, &g_walk);
    assert_int_equal(g_walk.n, 1);
}

/* ---- corruption ------------------------------------------------------------------------- */

static uint64_t *word_at(mk_region *r, mk_off off) { return mk__word(mk__h(r), off); }

static void expect_corrupt(const mk_region *r) {
    mk_fault f;
    assert_int_equal(mk_region_validate(r, &f), MK_ECORRUPT);
    assert_int_equal(f.code, MK_ECORRUPT);
    assert_non_null(f.invariant);
}

/* Free-list links changed by hand: to a used block, into a cycle, a wrong
 * back link. Each is reported; restoring the word makes the region whole. */
static void test_corrupt_links(void **state) {
    (void)state;
    mk_region *r = make_pow2(0, 1u << 16);
    mk_off ds = arena_start(r);
    mk_off a, b, c;
    /* a, b: spans 32 at 0 and 32; c: 64 at 64. Then free a and c: lists
     * of 32 and 64 have one member each; 128 .. d/2 too. */
    assert_int_equal(mk_region_alloc(r, 24, 0, &a), MK_OK);
    assert_int_equal(mk_region_alloc(r, 24, 0, &b), MK_OK);
    assert_int_equal(mk_region_alloc(r, 40, 0, &c), MK_OK);
    assert_int_equal(c - 8, ds + 64);
    mk_off d1, d2;
    assert_int_equal(mk_region_alloc(r, 100, 0, &d1), MK_OK); /* 128 at 128 */
    assert_int_equal(mk_region_alloc(r, 100, 0, &d2), MK_OK); /* 128 at 256 (split 256) */
    assert_int_equal(mk_region_free(r, d1), MK_OK);           /* free 128 at 128 */
    assert_int_equal(mk_region_free(r, a), MK_OK);            /* free 32 at 0 */
    validate_ok(r);

    mk_off fb = d1 - 8; /* a free block of span 128 */
    uint64_t *next = word_at(r, fb + MK__LINK0), *prev = word_at(r, fb + MK__LINK1);
    uint64_t next0 = *next, prev0 = *prev;

    *next = b - 8; /* a used block */
    expect_corrupt(r);
    *next = fb; /* a cycle */
    expect_corrupt(r);
    *next = 0xFFFFFFF8; /* far outside the region */
    expect_corrupt(r);
    *next = next0;
    validate_ok(r);

    *prev = c - 8;
    expect_corrupt(r);
    *prev = 0x123458;
    expect_corrupt(r);
    *prev = prev0;
    validate_ok(r);

    /* A free block's header that no longer says free. */
    uint64_t *hw = word_at(r, fb), hw0 = *hw;
    *hw = mk__pack(mk__h(r), fb, 128, 0);
    expect_corrupt(r);
    *hw = hw0;
    validate_ok(r);
}

/* Two free buddies of one span, both listed: a merge that release should
 * have made. Built with the policy's own release while one half is
 * disguised as used, then undisguised; the engine's counters are fixed up
 * by hand so that only the policy invariant is broken. */
static void test_missed_merge_reported(void **state) {
    (void)state;
    mk_region *r = make_pow2(0, 1u << 16);
    mk__hdr *h = mk__h(r);
    mk_off a, b;
    assert_int_equal(mk_region_alloc(r, 24, 0, &a), MK_OK);
    assert_int_equal(mk_region_alloc(r, 24, 0, &b), MK_OK);
    assert_int_equal(mk_region_free(r, a), MK_OK);
    validate_ok(r);

    mk_off ab = a - 8, bb = b - 8;
    uint64_t aw = mk__get(h, ab);
    *mk__word(h, ab) = mk__pack(h, ab, 32, 0); /* disguise a as used */
    mk__policy_buddy.release(h, bb);           /* b cannot merge: listed alone */
    *mk__word(h, ab) = aw;
    h->c.bytes_used -= 32;
    h->c.blocks_used -= 1;

    mk_fault f;
    assert_int_equal(mk_region_validate(r, &f), MK_ECORRUPT);
    assert_string_equal(f.invariant, "buddy: free buddies not merged");
    assert_true(f.offset == ab || f.offset == bb);

    /* The policy's check alone says the same. */
    mk_fault f2 = {0};
    mk__vstate v = {.fault = &f2};
    walk(r, &g_walk);
    for (size_t i = 0; i < g_walk.n; i++) v.free_blocks += !g_walk.b[i].used;
    assert_int_equal(mk__policy_buddy.check(h, &v), MK_ECORRUPT);
    assert_string_equal(f2.invariant, "buddy: free buddies not merged");
}

/* A block that is not a power of two, and one off its alignment: the
 * generic walk accepts both (tags, spans and counters are right), the
 * buddy check does not. */
static void test_bad_shapes_reported(void **state) {
    (void)state;
    mk_region *r = make_pow2(0, 1u << 16);
    mk__hdr *h = mk__h(r);
    mk_off ds = arena_start(r);
    mk_off a, b, c;
    assert_int_equal(mk_region_alloc(r, 24, 0, &a), MK_OK); /* 32 at 0 */
    assert_int_equal(mk_region_alloc(r, 40, 0, &b), MK_OK); /* 64 at 64 */
    assert_int_equal(mk_region_alloc(r, 24, 0, &c), MK_OK); /* 32 at 32 */
    assert_int_equal(a - 8, ds);
    assert_int_equal(b - 8, ds + 64);
    assert_int_equal(c - 8, ds + 32);
    validate_ok(r);

    /* a and c as one used block of span 64 at 0: fine for buddy too. Then
     * c and b as one used block of 96 at 32: not a power of two. */
    mk_off cb = c - 8;
    uint64_t cw = mk__get(h, cb), bw = mk__get(h, b - 8);
    *mk__word(h, cb) = mk__pack(h, cb, 96, 0);
    h->c.blocks_used -= 1;
    mk_fault f;
    assert_int_equal(mk_region_validate(r, &f), MK_ECORRUPT);
    assert_string_equal(f.invariant, "buddy: span not a power of two");
    assert_int_equal(f.offset, cb);

    /* c as a block of 64 at 32 and b cut to 32 at 96: misaligned. */
    *mk__word(h, cb) = mk__pack(h, cb, 64, 0);
    *mk__word(h, b + 24) = mk__pack(h, b + 24, 32, 0);
    h->c.blocks_used += 1;
    assert_int_equal(mk_region_validate(r, &f), MK_ECORRUPT);
    assert_string_equal(f.invariant, "buddy: block not aligned to its span");
    assert_int_equal(f.offset, cb);

    *mk__word(h, cb) = cw;
    *mk__word(h, b - 8) = bw;
    validate_ok(r);
}

/* ---- crashes ------------------------------------------------------------------------------- */

static jmp_buf g_crash_jb;
static uint64_t g_crash_target;

static void crash_hook(uint64_t step) {
    if (step == g_crash_target) longjmp(g_crash_jb, 1);
}

/* The operations below, each on the same starting image. */
static int crash_op(mk_region *r, int which, mk_off a, mk_off b) {
    mk_off o;
    switch (which) {
    case 0:
        return mk_region_alloc(r, 24, 4096, &o); /* splits a 4096 block down to 32 */
    case 1:
        return mk_region_free(r, b); /* merges five levels */
    case 2:
        return mk_region_realloc(r, a, 100, &o); /* shrinks, three halves freed */
    case 3:
        return mk_region_realloc(r, b, 500, &o); /* grows in place over four buddies */
    default:
        return mk_region_realloc(r, a, 3000, &o); /* moves */
    }
}

/* A crash at every metadata write of each operation, then recovery: the
 * region must be exactly as before (blocks, links, policy state, counters).
 * A write that bypassed mk__set would survive the rollback and show here. */
static void test_crash_rollback(void **state) {
    (void)state;
    static unsigned char img[1u << 16];
    mk_region *r = make_pow2_flags(0, sizeof img, MK_REGION_JOURNAL);
    mk__hdr *h = mk__h(r);
    mk_off ds = arena_start(r), a, b;
    assert_int_equal(mk_region_alloc(r, 1000, 0, &a), MK_OK); /* 1024 at 0 */
    assert_int_equal(mk_region_alloc(r, 24, 0, &b), MK_OK);   /* 32 at 1024 */
    assert_int_equal(a - 8, ds);
    assert_int_equal(b - 8, ds + 1024);
    memset(mk_region_ptr(r, a), 0x3C, 1000);
    validate_ok(r);
    memcpy(img, g_buf, sizeof img);
    walk(r, &g_walk2);
    const walk_log *before = &g_walk2;
    mk__counters c0 = h->c;

    for (int which = 0; which < 5; which++) {
        uint64_t steps = 0;
        for (g_crash_target = 1;; g_crash_target++) {
            memcpy(g_buf, img, sizeof img);
            mk__test_crash_step = 0;
            mk__test_crash_hook = crash_hook;
            if (setjmp(g_crash_jb) == 0) {
                int rc = crash_op(r, which, a, b);
                mk__test_crash_hook = NULL;
                assert_int_equal(rc, MK_OK);
                validate_ok(r);
                break; /* no crash: every write has been tried */
            }
            mk__test_crash_hook = NULL;
            steps++;
            int rolled = 0;
            assert_int_equal(mk_region_recover(r, &rolled), MK_OK);
            assert_int_equal(rolled, 1);
            validate_ok(r);
            walk(r, &g_walk);
            assert_int_equal(g_walk.n, before->n);
            for (size_t i = 0; i < before->n; i++) {
                const mk_block_info *x = &g_walk.b[i], *y = &before->b[i];
                assert_int_equal(x->offset, y->offset);
                assert_int_equal(x->span, y->span);
                assert_int_equal(x->used, y->used);
                mk_off hb = x->offset - 8;
                assert_int_equal(mk__get(h, hb), *(uint64_t *)(void *)(img + hb));
                /* Used blocks keep their bytes; free ones their links. */
                size_t n = x->used ? (size_t)x->size : 16;
                assert_memory_equal(g_buf + x->offset, img + x->offset, n);
            }
            assert_memory_equal(g_buf + h->state_off, img + h->state_off,
                                mk__policy_buddy.state_size);
            assert_memory_equal(&h->c, &c0, sizeof c0);
        }
        assert_true(steps >= 3);
    }
}

/* ---- randomized ---------------------------------------------------------------------------- */

static uint64_t g_seed;

static uint64_t rnd(uint64_t *x) { /* splitmix64 */
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

typedef struct live {
    mk_off off;
    size_t size;
    unsigned char fill;
} live;

static void check_fill(const mk_region *r, const live *l, int op) {
    const unsigned char *p = mk_region_ptr(r, l->off);
    for (size_t i = 0; i < l->size; i++)
        if (p[i] != l->fill)
            fail_msg("seed %llu op %d: block at %llu overwritten at byte %zu",
                     (unsigned long long)g_seed, op, (unsigned long long)l->off, i);
}

static void random_run(size_t base_off, size_t size, unsigned flags, int ops) {
    static live lv[2048];
    size_t n = 0;
    uint64_t x = g_seed ^ (base_off * 31 + size);
    mk_region *r = NULL;
    assert_int_equal(mk_region_create(g_buf + base_off, size, MK_POLICY_BUDDY, flags, &r), MK_OK);
    walk(r, &g_walk);
    size_t n0 = g_walk.n;
    for (int op = 0; op < ops; op++) {
        uint64_t u = rnd(&x);
        unsigned kind = (unsigned)(u % 100);
        if (n < 2048 && (kind < 50 || n == 0)) {
            /* Mostly small, some medium, a few large; some aligned. */
            uint64_t v = rnd(&x);
            size_t sz = (v & 3) ? (size_t)(v >> 8) % 256
                                : ((v & 12) ? (size_t)(v >> 8) % 8192 : (size_t)(v >> 8) % 100000);
            size_t align = (v >> 4 & 7) == 0 ? (size_t)1 << ((v >> 40) % 13) : 0;
            mk_off o;
            int rc = mk_region_alloc(r, sz, align, &o);
            if (rc == MK_OK) {
                if (align) assert_int_equal((uintptr_t)mk_region_ptr(r, o) % align, 0);
                size_t us;
                assert_int_equal(mk_region_usable_size(r, o, &us), MK_OK);
                assert_true(us >= sz && us + 8 == expected_span(sz));
                lv[n] = (live){o, sz, (unsigned char)(rnd(&x) | 1)};
                memset(mk_region_ptr(r, o), lv[n].fill, sz);
                n++;
            } else if (rc != MK_ENOMEM && rc != MK_ETOOBIG) {
                fail_msg("seed %llu op %d: alloc %zu/%zu -> %d", (unsigned long long)g_seed, op, sz,
                         align, rc);
            }
        } else if (n && kind < 85) {
            size_t i = (size_t)(rnd(&x) % n);
            check_fill(r, &lv[i], op);
            int rc = mk_region_free(r, lv[i].off);
            if (rc != MK_OK)
                fail_msg("seed %llu op %d: free -> %d", (unsigned long long)g_seed, op, rc);
            lv[i] = lv[--n];
        } else if (n) {
            size_t i = (size_t)(rnd(&x) % n);
            check_fill(r, &lv[i], op);
            uint64_t v = rnd(&x);
            size_t sz = (v & 1) ? lv[i].size / 2 + (size_t)(v >> 8) % 64
                                : lv[i].size * 2 + (size_t)(v >> 8) % 512;
            mk_off o;
            int rc = mk_region_realloc(r, lv[i].off, sz, &o);
            if (rc == MK_OK) {
                live nl = {o, sz < lv[i].size ? sz : lv[i].size, lv[i].fill};
                check_fill(r, &nl, op);
                nl.size = sz;
                memset(mk_region_ptr(r, o), nl.fill, sz);
                lv[i] = nl;
            } else if (rc == MK_ENOMEM || rc == MK_ETOOBIG) {
                check_fill(r, &lv[i], op); /* unchanged on failure */
            } else {
                fail_msg("seed %llu op %d: realloc -> %d", (unsigned long long)g_seed, op, rc);
            }
        }
        mk_fault f;
        if (mk_region_validate(r, &f) != MK_OK)
            fail_msg("seed %llu op %d: validate: '%s' at %llu", (unsigned long long)g_seed, op,
                     f.invariant ? f.invariant : "?", (unsigned long long)f.offset);
    }
    while (n) {
        check_fill(r, &lv[n - 1], ops);
        assert_int_equal(mk_region_free(r, lv[--n].off), MK_OK);
    }
    validate_ok(r);
    mk_stats s;
    assert_int_equal(mk_region_stats(r, &s), MK_OK);
    assert_int_equal(s.blocks_free, n0);
    assert_int_equal(s.blocks_used, 0);
}

static void test_random(void **state) {
    (void)state;
    random_run(0, 1u << 20, 0, 6000);
    random_run(48, 200000, 0, 4000);
    random_run(16, 1u << 19, MK_REGION_JOURNAL, 3000);
}

int main(void) {
    const char *seed = getenv("MK_TEST_SEED");
    g_seed = seed ? strtoull(seed, NULL, 0) : UINT64_C(20240611);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_initial_layout),
        cmocka_unit_test(test_pow2_spans_and_usable_size),
        cmocka_unit_test(test_alignment),
        cmocka_unit_test(test_buddies_merge),
        cmocka_unit_test(test_split_merge_restores),
        cmocka_unit_test(test_buddy_realloc),
        cmocka_unit_test(test_bad_frees),
        cmocka_unit_test(test_corrupt_links),
        cmocka_unit_test(test_missed_merge_reported),
        cmocka_unit_test(test_bad_shapes_reported),
        cmocka_unit_test(test_crash_rollback),
        cmocka_unit_test(test_random),
    };
    return cmocka_run_group_tests_name("buddy", tests, NULL, NULL);
}
