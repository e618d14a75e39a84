/*
 * The treap (src/region/tree.c) and the four fit policies built on it:
 * first, next, best and worst fit.
 *
 *  - tree_*: the treap alone, on free blocks built by hand in a buffer with
 *    a hand-made header (no journal), against a brute-force model;
 *  - semantics_*: each policy's choice through the public API, on a heap of
 *    holes of known sizes;
 *  - random_*: thousands of seeded alloc/free/realloc steps per policy with
 *    mk_region_validate after each, the policy's choice checked against a
 *    model computed from a walk, and payload patterns checked on free;
 *  - corrupt_*: a hand-damaged link must be reported by validation;
 *  - crash_*: an operation cut at every write step and rolled back must
 *    leave the region byte-identical (so every write was journaled).
 *
 * Replay: MK_TEST_SEED=<n> ./test_tree (default seed below).
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
#include "region/tree.h"

static uint64_t g_seed = 0x9E3779B97F4A7C15u;

static uint64_t rnd_state;
static uint64_t rnd(void) { /* xorshift64* */
    rnd_state ^= rnd_state >> 12;
    rnd_state ^= rnd_state << 25;
    rnd_state ^= rnd_state >> 27;
    return rnd_state * UINT64_C(0x2545F4914F6CDD1D);
}
static uint64_t rnd_below(uint64_t n) { return rnd() % n; }
static void rnd_seed(uint64_t salt) { rnd_state = (g_seed ^ (salt * 0x9E3779B97F4A7C15u)) | 1; }

/* Counts metadata writes (mk__set calls) through the crash hook. */
static uint64_t g_writes;
static void count_hook(uint64_t step) {
    (void)step;
    g_writes++;
}

/* ===== the treap alone ================================================== */

#define T_BUF   (1u << 20)
#define T_SLOTS 512u
#define T_SLOT  1024u

static _Alignas(4096) unsigned char tbuf[T_BUF];

/* A header good enough for the tree and mk__valid_free_block: policy (for
 * min_span and coalescing), secret, data bounds; no journal. */
static mk__hdr *hand_hdr(mk_policy pol) {
    memset(tbuf, 0xA5, sizeof tbuf); /* links must never be trusted unwritten */
    mk__hdr *h = (mk__hdr *)(void *)tbuf;
    memset(h, 0, sizeof *h);
    h->policy = (uint32_t)pol;
    h->secret = g_seed * 3 + 1;
    h->state_off = 4096;
    h->journal_off = 0;
    h->data_start = 8192 + 8;
    h->data_end = T_BUF - 24;
    h->size = T_BUF;
    return h;
}

static mk_off slot_off(const mk__hdr *h, unsigned i) { return h->data_start + (mk_off)i * T_SLOT; }

static void hand_block(mk__hdr *h, mk_off b, uint64_t span) {
    uint64_t w = mk__pack(h, b, span, MK__F_FREE);
    *mk__word(h, b) = w;
    *mk__word(h, b + span - 8) = w;
}

static unsigned height(const mk__hdr *h, mk_off x) {
    if (!x) return 0;
    unsigned l = height(h, mk__get(h, x + MK__LINK0)), r = height(h, mk__get(h, x + MK__LINK1));
    return 1 + (l > r ? l : r);
}

static void check_tree(const mk__hdr *h, mk_off root, mk__tree_order ord, uint64_t members) {
    mk_fault f = {0};
    mk__vstate v = {.fault = &f, .free_blocks = members};
    uint64_t n = 99;
    int rc = mk__tree_check(h, root, ord, 0, &v, &n);
    if (rc != MK_OK) fail_msg("tree check: %s at %llu", f.invariant, (unsigned long long)f.offset);
    assert_int_equal(n, members);
}

/* Address order: insert and remove slots in random order; after each step
 * the checker passes and every query agrees with a brute-force scan. */
static void tree_by_addr(void **unused) {
    (void)unused;
    rnd_seed(1);
    mk__hdr *h = hand_hdr(MK_POLICY_FIRST_FIT);
    uint64_t *root = mk__word(h, h->state_off);
    *root = 0;
    bool in[T_SLOTS] = {0};
    uint64_t span[T_SLOTS];
    uint64_t members = 0, ops = 0, writes = 0;
    mk__test_crash_hook = count_hook;
    for (unsigned step = 0; step < 6000; step++) {
        unsigned i = (unsigned)rnd_below(T_SLOTS);
        mk_off b = slot_off(h, i);
        g_writes = 0;
        if (!in[i]) {
            span[i] = 48 + 16 * rnd_below((T_SLOT - 48) / 16 + 1);
            hand_block(h, b, span[i]);
            mk__tree_insert(h, root, MK__TREE_BY_ADDR, b);
            in[i] = true;
            members++;
        } else {
            mk__tree_remove(h, root, MK__TREE_BY_ADDR, b);
            in[i] = false;
            members--;
        }
        writes += g_writes;
        ops++;
        check_tree(h, *root, MK__TREE_BY_ADDR, members);
        assert_int_equal(mk__tree_contains(h, *root, MK__TREE_BY_ADDR, b), in[i]);

        uint64_t need = 48 + 16 * rnd_below(T_SLOT / 16);
        unsigned start = (unsigned)rnd_below(T_SLOTS);
        mk_off first = 0, from = 0, largest = 0;
        uint64_t lspan = 0;
        for (unsigned k = 0; k < T_SLOTS; k++) {
            if (!in[k]) continue;
            if (span[k] >= need && !first) first = slot_off(h, k);
            if (span[k] >= need && !from && k >= start) from = slot_off(h, k);
            if (span[k] > lspan) lspan = span[k], largest = slot_off(h, k);
        }
        assert_int_equal(mk__tree_first_fit(h, *root, need), first);
        assert_int_equal(mk__tree_first_fit_from(h, *root, need, slot_off(h, start)), from);
        /* A start inside a slot: the slot itself is below it. */
        mk_off from2 = 0;
        for (unsigned k = start + 1; k < T_SLOTS && !from2; k++)
            if (in[k] && span[k] >= need) from2 = slot_off(h, k);
        assert_int_equal(mk__tree_first_fit_from(h, *root, need, slot_off(h, start) + 16), from2);
        assert_int_equal(mk__tree_largest(h, *root), largest);
    }
    mk__test_crash_hook = NULL;
    /* Expected depth of a treap is about 2 ln n; height well under 4.3 ln n. */
    assert_true(height(h, *root) < 40);
    /* A handful of writes per operation keeps the journal short. */
    assert_true(writes / ops < 12);
    print_message("tree by address: %.2f writes per insert/remove, height %u with %llu nodes\n",
                  (double)writes / (double)ops, height(h, *root), (unsigned long long)members);
}

/* Size order: spans from a small set, so that ties (equal spans) are
 * common; lower_bound must return the lowest address among equals. */
static void tree_by_size(void **unused) {
    (void)unused;
    rnd_seed(2);
    mk__hdr *h = hand_hdr(MK_POLICY_BEST_FIT);
    uint64_t *root = mk__word(h, h->state_off);
    *root = 0;
    bool in[T_SLOTS] = {0};
    uint64_t span[T_SLOTS];
    uint64_t members = 0;
    for (unsigned step = 0; step < 6000; step++) {
        unsigned i = (unsigned)rnd_below(T_SLOTS);
        mk_off b = slot_off(h, i);
        if (!in[i]) {
            span[i] = 32 + 64 * rnd_below(16);
            hand_block(h, b, span[i]);
            mk__tree_insert(h, root, MK__TREE_BY_SIZE, b);
            in[i] = true;
            members++;
        } else {
            mk__tree_remove(h, root, MK__TREE_BY_SIZE, b);
            in[i] = false;
            members--;
        }
        check_tree(h, *root, MK__TREE_BY_SIZE, members);
        assert_int_equal(mk__tree_contains(h, *root, MK__TREE_BY_SIZE, b), in[i]);
        uint64_t need = 16 + 16 * rnd_below(T_SLOT / 16);
        mk_off best = 0;
        uint64_t bspan = UINT64_MAX;
        for (unsigned k = 0; k < T_SLOTS; k++)
            if (in[k] && span[k] >= need && span[k] < bspan) bspan = span[k], best = slot_off(h, k);
        assert_int_equal(mk__tree_lower_bound(h, *root, need, 0), best);
    }
}

/* The checker on a damaged tree: each kind of damage is named. */
static void tree_check_damage(void **unused) {
    (void)unused;
    rnd_seed(3);
    mk__hdr *h = hand_hdr(MK_POLICY_FIRST_FIT);
    uint64_t *root = mk__word(h, h->state_off);
    *root = 0;
    for (unsigned i = 0; i < 64; i++) {
        hand_block(h, slot_off(h, i), 48 + 16 * rnd_below(40));
        mk__tree_insert(h, root, MK__TREE_BY_ADDR, slot_off(h, i));
    }
    check_tree(h, *root, MK__TREE_BY_ADDR, 64);
    /* A node with two children: follow the existing child until one. */
    mk_off r = *root;
    while (!(mk__get(h, r + MK__LINK0) && mk__get(h, r + MK__LINK1)))
        r = mk__get(h, r + MK__LINK0) ? mk__get(h, r + MK__LINK0) : mk__get(h, r + MK__LINK1);
    mk_off l = mk__get(h, r + MK__LINK0);
    struct {
        mk_off at;
        uint64_t val;
        const char *why;
    } cases[] = {
        {r + MK__LINK2, mk__get(h, r + MK__LINK2) + 16, "tree subtree max"},
        {r + MK__LINK0, r, "tree heap order"},                        /* a self loop */
        {r + MK__LINK0, mk__get(h, r + MK__LINK1), "tree key order"}, /* right as left */
        {r + MK__LINK0, l + 16, "tree node is a valid free block"},
        {l, mk__get(h, l) & ~MK__F_FREE, "tree node is a valid free block"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint64_t old = mk__get(h, cases[c].at);
        *mk__word(h, cases[c].at) = cases[c].val;
        mk_fault f = {0};
        mk__vstate v = {.fault = &f, .free_blocks = 64};
        uint64_t n;
        assert_int_equal(mk__tree_check(h, *root, MK__TREE_BY_ADDR, 0, &v, &n), MK_ECORRUPT);
        assert_string_equal(f.invariant, cases[c].why);
        *mk__word(h, cases[c].at) = old;
        check_tree(h, *root, MK__TREE_BY_ADDR, 64);
    }
    /* More nodes than the walk counted. */
    mk_fault f = {0};
    mk__vstate v = {.fault = &f, .free_blocks = 63};
    uint64_t n;
    assert_int_equal(mk__tree_check(h, *root, MK__TREE_BY_ADDR, 0, &v, &n), MK_ECORRUPT);
}

/* ===== policies through the public API ================================== */

#define R_SIZE (256u * 1024u)
static _Alignas(4096) unsigned char rbuf[R_SIZE];

static const mk_policy tree_policies[] = {MK_POLICY_FIRST_FIT, MK_POLICY_NEXT_FIT,
                                          MK_POLICY_BEST_FIT, MK_POLICY_WORST_FIT};

static void validate_ok(const mk_region *r) {
    mk_fault f;
    if (mk_region_validate(r, &f) != MK_OK)
        fail_msg("validate: %s at %llu", f.invariant ? f.invariant : "?",
                 (unsigned long long)f.offset);
}

static mk_region *make_region(mk_policy p, unsigned flags) {
    mk_region *r = NULL;
    memset(rbuf, 0x5A, sizeof rbuf);
    assert_int_equal(mk_region_create(rbuf, sizeof rbuf, p, flags, &r), MK_OK);
    validate_ok(r);
    return r;
}

static mk_off must_alloc(mk_region *r, size_t size) {
    mk_off o = 0;
    assert_int_equal(mk_region_alloc(r, size, 0, &o), MK_OK);
    return o;
}

/* Free blocks of the region, in address order (block starts and spans). */
#define MAXF 4096
typedef struct {
    unsigned n;
    mk_off b[MAXF];
    uint64_t span[MAXF];
} freelist;

static int collect_free(const mk_block_info *bi, void *arg) {
    freelist *fl = arg;
    if (!bi->used && fl->n < MAXF) {
        fl->b[fl->n] = bi->offset - 8;
        fl->span[fl->n++] = bi->span;
    }
    return 0;
}

static void free_blocks(const mk_region *r, freelist *fl) {
    fl->n = 0;
    assert_int_equal(mk_region_walk(r, collect_free, fl), 0);
}

/* Holes of these request sizes, each followed by a small used separator,
 * then the untouched tail. Returns the holes' payload offsets. */
static const size_t hole_size[] = {200, 104, 392, 296, 104, 504, 248};
#define NHOLES (sizeof hole_size / sizeof hole_size[0])

static void build_holes(mk_region *r, mk_off hole[NHOLES]) {
    for (size_t i = 0; i < NHOLES; i++) {
        hole[i] = must_alloc(r, hole_size[i]);
        (void)must_alloc(r, 8); /* separator */
    }
    for (size_t i = 0; i < NHOLES; i++) assert_int_equal(mk_region_free(r, hole[i]), MK_OK);
    validate_ok(r);
}

/* Allocate the whole tail, so that only the holes stay free. */
static mk_off fill_tail(mk_region *r) {
    freelist fl;
    free_blocks(r, &fl);
    assert_true(fl.n == NHOLES + 1);
    return must_alloc(r, fl.span[fl.n - 1] - 8);
}

static void semantics_first(void **unused) {
    (void)unused;
    mk_region *r = make_region(MK_POLICY_FIRST_FIT, 0);
    mk_off hole[NHOLES];
    build_holes(r, hole);
    assert_int_equal(must_alloc(r, 250), hole[2]);      /* 200 and 104 are too small */
    assert_int_equal(must_alloc(r, 100), hole[0]);      /* lowest, though larger than needed */
    assert_int_equal(must_alloc(r, 50), hole[0] + 112); /* the rest of hole 0 (208 - 112) */
    assert_int_equal(must_alloc(r, 450), hole[5]);
    validate_ok(r);
}

static void semantics_best(void **unused) {
    (void)unused;
    mk_region *r = make_region(MK_POLICY_BEST_FIT, 0);
    mk_off hole[NHOLES];
    build_holes(r, hole);
    /* Hole spans: 208 112 400 304 112 512 256; separators 32 (min_span). */
    assert_int_equal(must_alloc(r, 240), hole[6]); /* 256 exactly, though 304.. come first */
    mk_off a = must_alloc(r, 104), b = must_alloc(r, 104); /* two equal bins: either order */
    assert_true((a == hole[1] && b == hole[4]) || (a == hole[4] && b == hole[1]));
    assert_int_equal(must_alloc(r, 150), hole[0]);      /* 160 in 208; 304 is the next best */
    assert_int_equal(must_alloc(r, 296), hole[3]);      /* 304 exactly */
    assert_int_equal(must_alloc(r, 16), hole[0] + 160); /* the 48-byte rest of hole 0 */
    assert_int_equal(must_alloc(r, 300), hole[2]);      /* 320 in 400 rather than 512 */
    /* A large request goes to the tree: the tail is the only fit. */
    mk_off big = must_alloc(r, 20000);
    assert_true(big > hole[NHOLES - 1]);
    validate_ok(r);
}

static void semantics_worst(void **unused) {
    (void)unused;
    mk_region *r = make_region(MK_POLICY_WORST_FIT, 0);
    mk_off hole[NHOLES];
    build_holes(r, hole);
    mk_off tail = fill_tail(r);
    assert_true(tail > hole[NHOLES - 1]);
    /* Hole spans: 208 112 400 304 112 512 256; each request takes 48. */
    assert_int_equal(must_alloc(r, 8), hole[5]);      /* 512 is the largest */
    assert_int_equal(must_alloc(r, 8), hole[5] + 48); /* its rest, 464, still is */
    assert_int_equal(must_alloc(r, 8), hole[5] + 96); /* 416 */
    assert_int_equal(must_alloc(r, 8), hole[2]);      /* 400 beats the rest, 368 */
    validate_ok(r);
}

static void semantics_next(void **unused) {
    (void)unused;
    mk_region *r = make_region(MK_POLICY_NEXT_FIT, 0);
    mk_off hole[NHOLES];
    build_holes(r, hole);
    (void)fill_tail(r); /* the rover is now at the (used) tail */
    /* Hole spans: 208 112 400 304 112 512 256. */
    assert_int_equal(must_alloc(r, 250), hole[2]);       /* wraps: lowest fit (272) */
    assert_int_equal(must_alloc(r, 100), hole[2] + 272); /* resumes: the rest of hole 2 */
    assert_int_equal(must_alloc(r, 100), hole[3]);       /* not hole 0: after the rover */
    assert_int_equal(must_alloc(r, 400), hole[5]);       /* skips the rest of 3, hole 4 */
    assert_int_equal(must_alloc(r, 240), hole[6]);       /* 256 */
    assert_int_equal(must_alloc(r, 150), hole[0]);       /* nothing after: wraps around */
    assert_int_equal(must_alloc(r, 100), hole[1]);       /* and resumes from there */
    validate_ok(r);
}

/* ===== randomized runs against a model ================================== */

typedef struct {
    mk_off off;
    size_t size;
    unsigned char pat;
} live_blk;

static void fill(mk_region *r, const live_blk *l) {
    memset(mk_region_ptr(r, l->off), l->pat, l->size);
}
static void check_fill(const mk_region *r, const live_blk *l, size_t n) {
    const unsigned char *p = mk_region_ptr(r, l->off);
    for (size_t k = 0; k < n; k++)
        if (p[k] != l->pat) fail_msg("payload at %llu overwritten", (unsigned long long)l->off);
}

static size_t rnd_size(void) {
    uint64_t c = rnd_below(100);
    if (c < 70) return (size_t)rnd_below(257);
    if (c < 90) return (size_t)(257 + rnd_below(4096 - 256));
    return (size_t)(4097 + rnd_below(20000));
}

/* The block a policy must choose for span need among the free blocks, in
 * the model: returns its start, or 0 for "none fits". For best and worst
 * fit, which block among equal spans is free to the policy: *span_only. */
static mk_off model_choice(mk_policy p, const freelist *fl, uint64_t need, mk_off rover,
                           bool *span_only, uint64_t *want_span) {
    mk_off pick = 0, from = 0;
    uint64_t ps = 0;
    *span_only = p == MK_POLICY_BEST_FIT || p == MK_POLICY_WORST_FIT;
    for (unsigned k = 0; k < fl->n; k++) {
        if (fl->span[k] < need) continue;
        switch (p) {
        case MK_POLICY_FIRST_FIT:
            if (!pick) pick = fl->b[k];
            break;
        case MK_POLICY_NEXT_FIT:
            if (!pick) pick = fl->b[k];
            if (!from && fl->b[k] >= rover) from = fl->b[k];
            break;
        case MK_POLICY_BEST_FIT:
            if (!pick || fl->span[k] < ps) pick = fl->b[k], ps = fl->span[k];
            break;
        default:
            if (!pick || fl->span[k] > ps) pick = fl->b[k], ps = fl->span[k];
            break;
        }
    }
    if (p == MK_POLICY_NEXT_FIT && from) pick = from;
    *want_span = ps;
    return pick;
}

static mk_off next_rover(const mk_region *r) {
    const mk__hdr *h = mk__hc(r);
    return mk__get(h, h->state_off + 8);
}

#define MAXLIVE 400

static void random_run(mk_policy p, unsigned flags, unsigned steps, uint64_t salt) {
    rnd_seed(salt);
    mk_region *r = make_region(p, flags);
    const uint64_t min_span = mk__ops(mk__hc(r))->min_span;
    static live_blk live[MAXLIVE];
    static freelist fl;
    unsigned nlive = 0, nomem = 0;
    for (unsigned step = 0; step < steps; step++) {
        uint64_t op = rnd_below(100);
        if (nlive == 0 || (op < 55 && nlive < MAXLIVE)) {
            live_blk l = {.size = rnd_size(), .pat = (unsigned char)(1 + rnd_below(255))};
            size_t align = rnd_below(10) == 0 ? (size_t)1 << (5 + rnd_below(8)) : 0;
            free_blocks(r, &fl);
            mk_off rover = p == MK_POLICY_NEXT_FIT ? next_rover(r) : 0;
            bool span_only;
            uint64_t want_span;
            mk_off expect = model_choice(p, &fl, mk__span_for(l.size ? l.size : 1, min_span), rover,
                                         &span_only, &want_span);
            int rc = mk_region_alloc(r, l.size, align, &l.off);
            if (align == 0) {
                if (!expect) {
                    assert_int_equal(rc, MK_ENOMEM);
                } else {
                    assert_int_equal(rc, MK_OK);
                    mk_off got = l.off - 8;
                    if (!span_only) {
                        assert_int_equal(got, expect);
                    } else {
                        unsigned k = 0;
                        while (k < fl.n && fl.b[k] != got) k++;
                        assert_true(k < fl.n);
                        assert_int_equal(fl.span[k], want_span);
                    }
                }
            } else {
                assert_true(rc == MK_OK || rc == MK_ENOMEM);
                if (rc == MK_OK) assert_int_equal(l.off % align, 0);
            }
            if (rc == MK_OK) {
                fill(r, &l);
                live[nlive++] = l;
            } else {
                nomem++;
            }
        } else if (op < 90) {
            unsigned i = (unsigned)rnd_below(nlive);
            check_fill(r, &live[i], live[i].size);
            assert_int_equal(mk_region_free(r, live[i].off), MK_OK);
            live[i] = live[--nlive];
        } else {
            unsigned i = (unsigned)rnd_below(nlive);
            size_t ns = rnd_size();
            mk_off no = 0;
            int rc = mk_region_realloc(r, live[i].off, ns, &no);
            if (rc == MK_OK) {
                live[i].off = no;
                check_fill(r, &live[i], ns < live[i].size ? ns : live[i].size);
                live[i].size = ns;
                fill(r, &live[i]);
            } else {
                assert_int_equal(rc, MK_ENOMEM);
                check_fill(r, &live[i], live[i].size);
            }
        }
        validate_ok(r);
        if (p == MK_POLICY_NEXT_FIT) {
            /* The rover never sits strictly inside a free block: a merge
             * over it moves it to the merged block's start. */
            mk_off rv = next_rover(r);
            free_blocks(r, &fl);
            for (unsigned k = 0; k < fl.n; k++)
                assert_false(fl.b[k] < rv && rv < fl.b[k] + fl.span[k]);
        }
    }
    while (nlive) {
        check_fill(r, &live[nlive - 1], live[nlive - 1].size);
        assert_int_equal(mk_region_free(r, live[--nlive].off), MK_OK);
    }
    validate_ok(r);
    free_blocks(r, &fl);
    assert_int_equal(fl.n, 1); /* everything merged back */
    assert_true(nomem > 0);    /* the run reached the failure path too */
}

static void random_all(void **unused) {
    (void)unused;
    for (size_t i = 0; i < 4; i++) random_run(tree_policies[i], 0, 5000, 10 + i);
}

static void random_all_journal(void **unused) {
    (void)unused;
    for (size_t i = 0; i < 4; i++) random_run(tree_policies[i], MK_REGION_JOURNAL, 1500, 20 + i);
}

/* ===== damage must be reported ========================================== */

static void expect_corrupt(mk_region *r, mk_off at, uint64_t val) {
    uint64_t *w = mk__word(mk__h(r), at);
    uint64_t old = *w;
    *w = val;
    mk_fault f;
    assert_int_equal(mk_region_validate(r, &f), MK_ECORRUPT);
    assert_non_null(f.invariant);
    *w = old;
    validate_ok(r);
}

/* Some used blocks, every other one freed: a structure of several nodes. */
static mk_region *holey(mk_policy p, mk_off used[16]) {
    mk_region *r = make_region(p, 0);
    mk_off b[32];
    for (unsigned i = 0; i < 32; i++) b[i] = must_alloc(r, 64 + 32 * (i % 5));
    for (unsigned i = 0; i < 32; i++) {
        if (i % 2)
            used[i / 2] = b[i];
        else
            assert_int_equal(mk_region_free(r, b[i]), MK_OK);
    }
    validate_ok(r);
    return r;
}

static void corrupt_trees(void **unused) {
    (void)unused;
    for (size_t i = 0; i < 4; i++) {
        if (tree_policies[i] == MK_POLICY_BEST_FIT) continue;
        mk_off used[16];
        mk_region *r = holey(tree_policies[i], used);
        mk__hdr *h = mk__h(r);
        mk_off root = mk__get(h, h->state_off);
        mk_off l = mk__get(h, root + MK__LINK0), rt = mk__get(h, root + MK__LINK1);
        assert_true(l || rt);
        mk_off child = l ? l : rt;
        expect_corrupt(r, root + MK__LINK2, mk__get(h, root + MK__LINK2) + 16); /* max */
        expect_corrupt(r, child + MK__LINK2, mk__get(h, child + MK__LINK2) - 16);
        expect_corrupt(r, root + (l ? MK__LINK0 : MK__LINK1), used[3] - 8); /* a used block */
        expect_corrupt(r, root + (l ? MK__LINK0 : MK__LINK1), 0);           /* a lost subtree */
        expect_corrupt(r, root + (l ? MK__LINK0 : MK__LINK1), root);        /* a cycle */
        expect_corrupt(r, h->state_off, 0);                                 /* an empty tree */
        expect_corrupt(r, h->state_off, used[5] - 8);
    }
}

static void corrupt_best(void **unused) {
    (void)unused;
    mk_off used[16];
    mk_region *r = holey(MK_POLICY_BEST_FIT, used);
    mk__hdr *h = mk__h(r);
    /* State: summary, tree root, bitmap[8], head[512]. */
    const mk_off summary = h->state_off, tree = h->state_off + 8, bitmap = h->state_off + 16;
    const mk_off heads = bitmap + 64;
    /* Frees of 72 (span 80) make bin 5 hold several blocks. */
    mk_off head5 = mk__get(h, heads + 5 * 8);
    assert_true(head5 != 0);
    mk_off second = mk__get(h, head5 + MK__LINK0);
    assert_true(second != 0);
    expect_corrupt(r, second + MK__LINK1, 0);                  /* prev link */
    expect_corrupt(r, head5 + MK__LINK0, 0);                   /* a lost tail */
    expect_corrupt(r, head5 + MK__LINK0, head5);               /* a cycle */
    expect_corrupt(r, head5 + MK__LINK0, used[2] - 8);         /* a used block */
    expect_corrupt(r, heads + 5 * 8, 0);                       /* an empty bin */
    expect_corrupt(r, heads + 6 * 8, head5);                   /* wrong bin */
    expect_corrupt(r, bitmap, mk__get(h, bitmap) ^ (1u << 5)); /* bitmap bit */
    expect_corrupt(r, summary, 0);                             /* summary */
    /* The tree: the tail, plus a large hole of its own. */
    mk_off big = must_alloc(r, 20000);
    (void)must_alloc(r, 9000); /* large, so it comes from the tail, after big */
    assert_int_equal(mk_region_free(r, big), MK_OK);
    validate_ok(r);
    mk_off root = mk__get(h, tree);
    assert_true(root != 0);
    mk_off child = mk__get(h, root + MK__LINK0) ? root + MK__LINK0 : root + MK__LINK1;
    assert_true(mk__get(h, child) != 0);
    expect_corrupt(r, child, 0);
    expect_corrupt(r, child, root);
    expect_corrupt(r, child, used[0] - 8);
    expect_corrupt(r, tree, 0);
    expect_corrupt(r, tree, head5); /* a small block in the tree */
}

/* ===== crash at every write, then roll back ============================= */

static jmp_buf crash_env;
static uint64_t crash_at;
static void crash_hook(uint64_t step) {
    g_writes++;
    if (step == crash_at) longjmp(crash_env, 1);
}

static _Alignas(4096) unsigned char snap[R_SIZE];

typedef void (*crash_op)(mk_region *r, const mk_off *hole, const mk_off *sep);
static void op_alloc(mk_region *r, const mk_off *hole, const mk_off *sep) {
    (void)hole, (void)sep;
    mk_off o;
    (void)mk_region_alloc(r, 100, 0, &o);
}
static void op_alloc_big(mk_region *r, const mk_off *hole, const mk_off *sep) {
    (void)hole, (void)sep;
    mk_off o;
    (void)mk_region_alloc(r, 12000, 0, &o);
}
static void op_alloc_aligned(mk_region *r, const mk_off *hole, const mk_off *sep) {
    (void)hole, (void)sep;
    mk_off o;
    (void)mk_region_alloc(r, 200, 256, &o);
}
static void op_free_merge(mk_region *r, const mk_off *hole, const mk_off *sep) {
    (void)hole;
    (void)mk_region_free(r, sep[2]); /* between two holes: merges both sides */
}
static void op_realloc(mk_region *r, const mk_off *hole, const mk_off *sep) {
    (void)hole;
    mk_off o;
    (void)mk_region_realloc(r, sep[1], 700, &o);
}

/* Run op with a crash at write step k; true if it crashed. Apart, so that
 * no local of the caller lives across the longjmp. */
static bool run_crashing(crash_op op, mk_region *r, const mk_off *hole, const mk_off *sep,
                         uint64_t k) {
    crash_at = k;
    mk__test_crash_step = 0;
    mk__test_crash_hook = crash_hook;
    if (setjmp(crash_env) == 0) {
        op(r, hole, sep);
        mk__test_crash_hook = NULL;
        return false;
    }
    mk__test_crash_hook = NULL;
    return true;
}

static void crash_everywhere(void **unused) {
    (void)unused;
    const crash_op ops[] = {op_alloc, op_alloc_big, op_alloc_aligned, op_free_merge, op_realloc};
    for (size_t pi = 0; pi < 4; pi++) {
        for (size_t oi = 0; oi < sizeof ops / sizeof ops[0]; oi++) {
            mk_region *r = make_region(tree_policies[pi], MK_REGION_JOURNAL);
            mk_off hole[NHOLES], sep[NHOLES];
            for (size_t i = 0; i < NHOLES; i++) {
                hole[i] = must_alloc(r, hole_size[i]);
                sep[i] = must_alloc(r, 8);
            }
            for (size_t i = 0; i < NHOLES; i++) assert_int_equal(mk_region_free(r, hole[i]), MK_OK);
            validate_ok(r);
            const mk__hdr *h = mk__hc(r);
            const size_t jo = (size_t)h->journal_off, ds = (size_t)h->data_start;
            memcpy(snap, rbuf, sizeof rbuf);
            /* Count the steps of the operation. */
            g_writes = 0;
            crash_at = 0;
            mk__test_crash_step = 0;
            mk__test_crash_hook = crash_hook;
            ops[oi](r, hole, sep);
            mk__test_crash_hook = NULL;
            const uint64_t total = g_writes;
            assert_true(total > 0);
            for (uint64_t k = 1; k <= total; k++) {
                memcpy(rbuf, snap, sizeof rbuf);
                if (!run_crashing(ops[oi], r, hole, sep, k))
                    fail_msg("no crash at step %llu", (unsigned long long)k);
                int rolled = 0;
                assert_int_equal(mk_region_recover(r, &rolled), MK_OK);
                /* Everything outside the journal is as before the operation:
                 * no write escaped the journal. */
                if (memcmp(rbuf, snap, jo) != 0 || memcmp(rbuf + ds, snap + ds, R_SIZE - ds) != 0)
                    fail_msg("policy %zu op %zu: step %llu not undone", pi, oi,
                             (unsigned long long)k);
                validate_ok(r);
            }
        }
    }
}

int main(int argc, char **argv) {
    const char *s = getenv("MK_TEST_SEED");
    if (argc > 1) s = argv[1];
    if (s) g_seed = strtoull(s, NULL, 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tree_by_addr),       cmocka_unit_test(tree_by_size),
        cmocka_unit_test(tree_check_damage),  cmocka_unit_test(semantics_first),
        cmocka_unit_test(semantics_best),     cmocka_unit_test(semantics_worst),
        cmocka_unit_test(semantics_next),     cmocka_unit_test(random_all),
        cmocka_unit_test(random_all_journal), cmocka_unit_test(corrupt_trees),
        cmocka_unit_test(corrupt_best),       cmocka_unit_test(crash_everywhere),
    };
    print_message("seed %llu\n", (unsigned long long)g_seed);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
