/*
 * Untrusted memory: a region damaged after it was created or attached (by a
 * buggy or hostile process sharing it) gives MK_ECORRUPT from the operation
 * that meets the damage, never a stray access or a hang; with a journal the
 * region is left exactly as it was found; validate names the damage.
 * (docs/REGION.md, "Untrusted memory"; the fuzzers scribble at random,
 * these tests damage one thing at a time.)
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

#define SIZE (1u << 20)

static _Alignas(4096) unsigned char g_buf[SIZE];
static unsigned char g_copy[SIZE];

static mk__hdr *H(mk_region *r) { return (mk__hdr *)(void *)r; }

static mk_region *make(mk_policy p, unsigned flags) {
    mk_region *r = NULL;
    assert_int_equal(mk_region_create(g_buf, SIZE, p, flags, &r), MK_OK);
    return r;
}

/* A region with free blocks between live ones: alloc n blocks of size sz
 * (growing sizes for variety) and free every other one. live[] gets the
 * blocks kept, free[] the block starts freed. */
static void checkerboard(mk_region *r, size_t n, size_t sz, mk_off *live, mk_off *freed) {
    mk_off all[64];
    assert_true(n <= 64);
    for (size_t i = 0; i < n; i++) assert_int_equal(mk_region_alloc(r, sz, 0, &all[i]), MK_OK);
    for (size_t i = 0; i < n; i++) {
        if (i % 2) {
            assert_int_equal(mk_region_free(r, all[i]), MK_OK);
            freed[i / 2] = all[i] - MK__TAGW;
        } else {
            live[i / 2] = all[i];
        }
    }
    assert_int_equal(mk_region_validate(r, NULL), MK_OK);
}

/* The bytes an operation may legally leave changed when it fails: the
 * journal (its op, args and count words) and nothing else. */
static void snapshot(const mk_region *r) { memcpy(g_copy, r, SIZE); }
static void assert_unchanged(const mk_region *r) {
    const mk__hdr *h = (const mk__hdr *)(const void *)r;
    size_t j = (size_t)h->journal_off;
    size_t end = j + sizeof(mk__journal) + MK__JOURNAL_CAP * sizeof(mk__undo);
    assert_true(j != 0);
    assert_memory_equal(g_copy, r, j);
    assert_memory_equal(g_copy + end, (const unsigned char *)r + end, SIZE - end);
}

static void assert_validate_names_it(const mk_region *r) {
    mk_fault f = {0};
    assert_int_equal(mk_region_validate(r, &f), MK_ECORRUPT);
    assert_int_equal(f.code, MK_ECORRUPT);
    assert_non_null(f.invariant);
}

/* Replace every word of the policy state that names one of the free
 * blocks (list heads, tree roots) by bad. Returns how many there were. */
static int damage_state(mk_region *r, const mk_off *freed, size_t nf, uint64_t bad) {
    mk__hdr *h = H(r);
    uint64_t *w = mk__word(h, MK__STATE_OFF);
    int n = 0;
    for (size_t i = 0; i < mk__ops(h)->state_size / 8; i++)
        for (size_t k = 0; k < nf; k++)
            if (w[i] == freed[k] && w[i]) {
                w[i] = bad;
                n++;
                break;
            }
    return n;
}

static const mk_policy all_policies[] = {MK_POLICY_FIRST_FIT, MK_POLICY_NEXT_FIT,
                                         MK_POLICY_BEST_FIT,  MK_POLICY_WORST_FIT,
                                         MK_POLICY_TLSF,      MK_POLICY_BUDDY};
#define NPOL (sizeof all_policies / sizeof all_policies[0])

/* Bad values for a link: in the header, misaligned, past the end, the
 * last slot whose links would run past the data. */
static uint64_t bad_value(const mk__hdr *h, int k) {
    switch (k) {
    case 0:
        return 8;
    case 1:
        return 12345;
    case 2:
        return h->size + 4096 + 8;
    default:
        return h->data_end - 8;
    }
}

/* A list head or tree root pointing anywhere: the allocation that would
 * follow it is refused and nothing is written (tlsf_insert through a bad
 * head, the treap's searches through a bad root). */
static void test_bad_root_or_head(void **state) {
    (void)state;
    for (size_t p = 0; p < NPOL; p++) {
        for (int k = 0; k < 4; k++) {
            mk_region *r = make(all_policies[p], MK_REGION_JOURNAL);
            mk_off live[8], freed[8];
            checkerboard(r, 16, 100, live, freed);
            snapshot(r);
            int n = damage_state(r, freed, 8, bad_value(H(r), k));
            assert_true(n > 0);
            snapshot(r);
            mk_off out = 0;
            int rc = mk_region_alloc(r, 100, 0, &out);
            assert_int_equal(rc, MK_ECORRUPT);
            assert_unchanged(r);
            assert_validate_names_it(r);
        }
    }
}

/* A free block whose links point anywhere: freeing its live neighbour
 * (which merges with it, so unlinks it) is refused, nothing written. */
static void test_bad_links_in_free_block(void **state) {
    (void)state;
    for (size_t p = 0; p < NPOL; p++) {
        if (all_policies[p] == MK_POLICY_BUDDY) continue; /* below */
        for (int k = 0; k < 5; k++) {
            mk_region *r = make(all_policies[p], MK_REGION_JOURNAL);
            mk_off live[8], freed[8];
            checkerboard(r, 16, 100, live, freed);
            mk__hdr *h = H(r);
            mk_off b = freed[3];
            /* k == 4: a live block, in range but not free */
            uint64_t bad = k < 4 ? bad_value(h, k) : live[5] - MK__TAGW;
            *mk__word(h, b + MK__LINK0) = bad;
            *mk__word(h, b + MK__LINK1) = bad;
            snapshot(r);
            /* live[3] is the block just before freed[3]: its free merges. */
            assert_int_equal(live[3] - MK__TAGW + mk__bspan(h, live[3] - MK__TAGW), b);
            assert_int_equal(mk_region_free(r, live[3]), MK_ECORRUPT);
            assert_unchanged(r);
            assert_validate_names_it(r);
        }
    }
}

/* Treap links that loop (a node its own child) end the search: no hang. */
static void test_tree_cycle(void **state) {
    (void)state;
    const mk_policy tree_policies[] = {MK_POLICY_FIRST_FIT, MK_POLICY_NEXT_FIT, MK_POLICY_WORST_FIT,
                                       MK_POLICY_BEST_FIT};
    for (size_t p = 0; p < 4; p++) {
        mk_region *r = make(tree_policies[p], MK_REGION_JOURNAL);
        mk_off live[8], freed[8];
        /* best fit keeps only spans >= 8192 in its tree */
        checkerboard(r, 16, 9000, live, freed);
        mk__hdr *h = H(r);
        for (int i = 0; i < 8; i++) {
            *mk__word(h, freed[i] + MK__LINK0) = freed[i];
            *mk__word(h, freed[i] + MK__LINK1) = freed[i];
        }
        snapshot(r);
        mk_off out = 0;
        /* larger than any free block: the search must walk the tree */
        int rc = mk_region_alloc(r, 8 * 9000, 0, &out);
        assert_true(rc == MK_ECORRUPT || rc == MK_ENOMEM);
        if (tree_policies[p] != MK_POLICY_BEST_FIT)
            assert_int_equal(mk_region_alloc(r, 100, 0, &out), MK_ECORRUPT);
        assert_int_equal(mk_region_free(r, live[3]), MK_ECORRUPT);
        assert_validate_names_it(r);
    }
}

/* Buddy: a block whose span is not a power of two, or a list that names a
 * live block. */
static void test_buddy_damage(void **state) {
    (void)state;
    mk_region *r = make(MK_POLICY_BUDDY, MK_REGION_JOURNAL);
    mk_off live[8], freed[8];
    checkerboard(r, 16, 100, live, freed);
    mk__hdr *h = H(r);
    mk_off b = live[2] - MK__TAGW;
    *mk__word(h, b) = mk__pack(h, b, 48, 0); /* tag valid, span 48 */
    snapshot(r);
    assert_int_equal(mk_region_free(r, live[2]), MK_ECORRUPT);
    assert_unchanged(r);
    mk_off out;
    assert_int_equal(mk_region_realloc(r, live[2], 10, &out), MK_ECORRUPT);
    assert_unchanged(r);
    assert_validate_names_it(r);

    r = make(MK_POLICY_BUDDY, MK_REGION_JOURNAL);
    checkerboard(r, 16, 100, live, freed);
    assert_true(damage_state(r, freed, 8, live[4] - MK__TAGW) > 0);
    snapshot(r);
    assert_int_equal(mk_region_alloc(r, 100, 0, &out), MK_ECORRUPT);
    assert_unchanged(r);
}

/* A header written after attach: every operation refuses, the walk too,
 * and validate says which part. */
/* A word that passes its check tag by chance (one in 2^16 does) but has a
 * span that cannot be: inside a free block it is a stale offset of the
 * caller's (MK_EBADOFF: such words made a double free say MK_ECORRUPT about
 * once in 80,000), at a live block's start it is damage (MK_ECORRUPT). */
static void test_lucky_word(void **state) {
    (void)state;
    for (int p = 0; p < MK_POLICY_COUNT; p++) {
        mk_region *r = make((mk_policy)p, 0);
        mk__hdr *h = H(r);
        mk_off a, b, c;
        assert_int_equal(mk_region_alloc(r, 500, 0, &a), MK_OK);
        assert_int_equal(mk_region_alloc(r, 500, 0, &b), MK_OK);
        assert_int_equal(mk_region_alloc(r, 500, 0, &c), MK_OK);
        assert_int_equal(mk_region_free(r, b), MK_OK);
        /* inside b's free space, 64 bytes in: a word with a good tag and a
         * span past the end of the data */
        mk_off x = b - MK__TAGW + 64;
        uint64_t span = (h->data_end - x + 64) & MK__SPAN_MASK & ~(uint64_t)(MK__GRAIN - 1);
        *mk__word(h, x) = mk__pack(h, x, span, 0);
        assert_true(mk__tag_ok(h, x, mk__get(h, x)));
        assert_int_equal(mk_region_free(r, x + MK__TAGW), MK_EBADOFF);
        size_t u = 0;
        assert_int_equal(mk_region_usable_size(r, x + MK__TAGW, &u), MK_EBADOFF);
        *mk__word(h, x) = 0;
        assert_int_equal(mk_region_validate(r, NULL), MK_OK);
        /* the same at a live block's start: damage */
        mk_off cb = c - MK__TAGW;
        uint64_t keep = mk__get(h, cb);
        *mk__word(h, cb) = mk__pack(h, cb, (h->data_end - cb + 64) & ~(uint64_t)(MK__GRAIN - 1), 0);
        assert_int_equal(mk_region_free(r, c), MK_ECORRUPT);
        *mk__word(h, cb) = keep;
        assert_int_equal(mk_region_validate(r, NULL), MK_OK);
        assert_int_equal(mk_region_free(r, c), MK_OK);
        assert_int_equal(mk_region_free(r, a), MK_OK);
        assert_int_equal(mk_region_validate(r, NULL), MK_OK);
    }
}

static void test_header_damage(void **state) {
    (void)state;
    for (int k = 0; k < 6; k++) {
        mk_region *r = make(MK_POLICY_TLSF, MK_REGION_JOURNAL);
        mk_off live[8], freed[8];
        checkerboard(r, 16, 100, live, freed);
        mk__hdr *h = H(r);
        switch (k) {
        case 0:
            h->data_end = h->size + 4096 + 8; /* past the range */
            break;
        case 1:
            h->data_start = 8; /* over the header */
            break;
        case 2:
            h->policy = 77;
            break;
        case 3:
            h->data_start += 2; /* off the block grid: the walk would read skewed words */
            break;
        case 4:
            h->data_end -= 8; /* likewise */
            break;
        default:
            h->data_end = h->data_start; /* empty */
            break;
        }
        snapshot(r);
        mk_off out = 0;
        size_t u = 0;
        assert_int_equal(mk_region_alloc(r, 100, 0, &out), MK_ECORRUPT);
        assert_int_equal(mk_region_free(r, live[1]), MK_ECORRUPT);
        assert_int_equal(mk_region_realloc(r, live[1], 300, &out), MK_ECORRUPT);
        assert_int_equal(mk_region_usable_size(r, live[1], &u), MK_ECORRUPT);
        mk_stats st;
        assert_int_equal(mk_region_stats(r, &st), MK_ECORRUPT);
        assert_unchanged(r);
        assert_validate_names_it(r);
    }
}

/* Quick lists: a moved quick_off, and a parked block's link to a live one. */
static void test_quick_damage(void **state) {
    (void)state;
    mk_region *r = make(MK_POLICY_TLSF, MK_REGION_QUICK | MK_REGION_JOURNAL);
    mk_off a, b2, out;
    assert_int_equal(mk_region_alloc(r, 100, 0, &a), MK_OK);
    assert_int_equal(mk_region_alloc(r, 100, 0, &b2), MK_OK);
    assert_int_equal(mk_region_free(r, a), MK_OK); /* parked */
    mk__hdr *h = H(r);
    *mk__word(h, a - MK__TAGW + MK__LINK0) = b2 - MK__TAGW;    /* next: a live block */
    assert_int_equal(mk_region_alloc(r, 100, 0, &out), MK_OK); /* the head is good */
    assert_int_equal(out, a);
    snapshot(r);
    assert_int_equal(mk_region_alloc(r, 100, 0, &out), MK_ECORRUPT); /* the live one is not */
    assert_unchanged(r);
    h->quick_off += 64;
    assert_int_equal(mk_region_alloc(r, 100, 0, &out), MK_ECORRUPT);
    assert_validate_names_it(r);
}

/* TLSF: a size-class list that loops, met by the last-resort scan of the
 * request's own class: refused, no hang. */
static void test_tlsf_list_cycle(void **state) {
    (void)state;
    mk_region *r = make(MK_POLICY_TLSF, MK_REGION_JOURNAL);
    mk__hdr *h = H(r);
    /* Fill the region with blocks of one class (spans 1040..1056 share
     * one), then free every other one: the only free blocks are that
     * class, and a request just above the smallest one must scan it. */
    mk_off o[2048];
    size_t n = 0;
    while (n < 2048 && mk_region_alloc(r, 1030 + (n % 2) * 16, 0, &o[n]) == MK_OK) n++;
    assert_true(n > 100);
    for (size_t i = 1; i + 1 < n; i += 2) assert_int_equal(mk_region_free(r, o[i]), MK_OK);
    /* close the class list into a loop: the last member's next is the first */
    mk_off first = o[1] - MK__TAGW, x = first, last = 0;
    while (x && mk__get(h, x + MK__LINK1)) x = mk__get(h, x + MK__LINK1); /* the head */
    for (mk_off y = x; y; y = mk__get(h, y + MK__LINK0)) last = y;
    *mk__word(h, last + MK__LINK0) = x;
    mk_off out;
    int rc = mk_region_alloc(r, 1056 - 8, 0, &out);
    assert_true(rc == MK_ECORRUPT || rc == MK_OK);
    assert_validate_names_it(r);
}

/* A journal record aimed outside the range (an offset that wraps when 8 is
 * added) is refused by recovery, which then writes nothing. */
static void test_journal_record_damage(void **state) {
    (void)state;
    mk_region *r = make(MK_POLICY_BEST_FIT, MK_REGION_JOURNAL);
    mk__hdr *h = H(r);
    mk__journal *j = (mk__journal *)(void *)mk__word(h, h->journal_off);
    const uint64_t bad_offs[] = {UINT64_MAX - 7, h->size, offsetof(mk__hdr, size),
                                 offsetof(mk__hdr, journal_off)};
    for (size_t i = 0; i < 4; i++) {
        j->op = MK__OP_ALLOC;
        j->count = 2;
        j->rec[0] = (mk__undo){h->data_start, 0};
        j->rec[1] = (mk__undo){bad_offs[i], 0x4141414141414141u};
        snapshot(r);
        assert_int_equal(mk_region_recover(r, NULL), MK_ENOTRECOVERABLE);
        assert_memory_equal(g_copy, r, SIZE);
    }
    /* data_end may be restored, but only to a sentinel offset inside size */
    j->count = 1;
    j->rec[0] = (mk__undo){offsetof(mk__hdr, data_end), h->size + 4096 + 8};
    assert_int_equal(mk_region_recover(r, NULL), MK_ENOTRECOVERABLE);
    /* a count past the capacity */
    j->count = MK__JOURNAL_CAP + 1;
    assert_int_equal(mk_region_recover(r, NULL), MK_ENOTRECOVERABLE);
    j->count = 0;
    j->op = MK__OP_NONE;
    assert_int_equal(mk_region_validate(r, NULL), MK_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_root_or_head),
        cmocka_unit_test(test_bad_links_in_free_block),
        cmocka_unit_test(test_tree_cycle),
        cmocka_unit_test(test_buddy_damage),
        cmocka_unit_test(test_header_damage),
        cmocka_unit_test(test_lucky_word),
        cmocka_unit_test(test_quick_damage),
        cmocka_unit_test(test_tlsf_list_cycle),
        cmocka_unit_test(test_journal_record_damage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
