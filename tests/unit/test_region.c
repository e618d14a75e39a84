/*
 * Unit tests of the block engine's public API (memkit/region.h), run for
 * every fit policy: creation and attachment with every documented error,
 * alloc/free/realloc/usable_size and their error paths (which must change
 * nothing), walk, statistics and their printers, grow, validation against
 * hand-made corruption, error strings and policy names.
 *
 * Internals (region/region_int.h) are used only to build corrupt images:
 * header fields, block header words and footers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memkit/error.h"
#include "memkit/region.h"
#include "region/region_int.h"

#define REGION_SIZE ((size_t)1 << 20)

static const char *g_pol = "?"; /* the policy being tested, for messages */

/* rc must equal want; names the expression, the policy and both codes. */
#define EXPECT_RC(expr, want)                                                                      \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != (want))                                                                         \
            fail_msg("[%s] %s returned %d (%s), expected %d (%s)", g_pol, #expr, rc_,              \
                     mk_strerror(rc_), (int)(want), mk_strerror(want));                            \
    } while (0)

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            print_message("[%s] ", g_pol);                                                         \
            fail_msg(__VA_ARGS__);                                                                 \
        }                                                                                          \
    } while (0)

#define FOR_EACH_POLICY(p)                                                                         \
    for (mk_policy p = MK_POLICY_FIRST_FIT; p < MK_POLICY_COUNT && (g_pol = mk_policy_name(p));    \
         p = (mk_policy)(p + 1))

static void *xalloc(size_t size) {
    void *p = aligned_alloc(4096, (size + 4095) & ~(size_t)4095); /* C11: a multiple */
    assert_non_null(p);
    memset(p, 0xEE, size);
    return p;
}

static mk_region *make(mk_policy p, size_t size, unsigned flags, void **mem) {
    *mem = xalloc(size);
    mk_region *r = NULL;
    EXPECT_RC(mk_region_create(*mem, size, p, flags, &r), MK_OK);
    EXPECT(r == (mk_region *)*mem, "handle != base");
    return r;
}

static void valid(const mk_region *r) {
    mk_fault f = {0};
    int rc = mk_region_validate(r, &f);
    if (rc != MK_OK)
        fail_msg("[%s] validate: %d (%s), invariant \"%s\" at offset %" PRIu64, g_pol, rc,
                 mk_strerror(rc), f.invariant ? f.invariant : "(null)", f.offset);
}

static mk_off xalloc_blk(mk_region *r, size_t size, size_t align) {
    mk_off off = 0;
    EXPECT_RC(mk_region_alloc(r, size, align, &off), MK_OK);
    EXPECT(off != 0, "alloc returned offset 0");
    return off;
}

static size_t usable(const mk_region *r, mk_off off) {
    size_t u = 0;
    EXPECT_RC(mk_region_usable_size(r, off, &u), MK_OK);
    return u;
}

static unsigned char pat(uint64_t seed, size_t i) {
    return (unsigned char)((seed * 131u) ^ (i * 7u) ^ (i >> 8));
}
static void fill(mk_region *r, mk_off off, size_t n, uint64_t seed) {
    unsigned char *p = mk_region_ptr(r, off);
    for (size_t i = 0; i < n; i++) p[i] = pat(seed, i);
}
static void check_fill(const mk_region *r, mk_off off, size_t n, uint64_t seed) {
    const unsigned char *p = mk_region_ptr(r, off);
    for (size_t i = 0; i < n; i++)
        if (p[i] != pat(seed, i))
            fail_msg("[%s] block %" PRIu64 ": byte %zu changed", g_pol, off, i);
}

static mk_stats stats(const mk_region *r) {
    mk_stats s;
    memset(&s, 0x55, sizeof s);
    EXPECT_RC(mk_region_stats(r, &s), MK_OK);
    return s;
}

/* ---- walk helpers ------------------------------------------------------------------- */
#define MAXB 8192
typedef struct blocks {
    size_t n;
    mk_block_info b[MAXB];
} blocks;

static int collect(const mk_block_info *bi, void *arg) {
    blocks *bs = arg;
    if (bs->n < MAXB) bs->b[bs->n] = *bi;
    bs->n++;
    return 0;
}

static blocks g_bs;
static const blocks *walk(const mk_region *r) {
    g_bs.n = 0;
    EXPECT_RC(mk_region_walk(r, collect, &g_bs), 0);
    EXPECT(g_bs.n < MAXB, "too many blocks");
    return &g_bs;
}

/* The walk entry of the block at payload offset off, or NULL. */
static const mk_block_info *find_block(const blocks *bs, mk_off off) {
    for (size_t i = 0; i < bs->n; i++)
        if (bs->b[i].offset == off) return &bs->b[i];
    return NULL;
}

/* Fill the region with blocks of size until MK_ENOMEM; returns their count. */
static size_t fill_region(mk_region *r, size_t size, mk_off *offs, size_t max) {
    size_t n = 0;
    for (;;) {
        mk_off off = 0;
        int rc = mk_region_alloc(r, size, 0, &off);
        if (rc == MK_ENOMEM) break;
        EXPECT_RC(rc, MK_OK);
        EXPECT(n < max, "region holds more blocks than expected");
        offs[n++] = off;
    }
    return n;
}

/* ======================================================================================= */

static void test_policy_names(void **state) {
    (void)state;
    const char *want[] = {"first", "next", "best", "worst", "tlsf", "buddy"};
    for (int i = 0; i < MK_POLICY_COUNT; i++) {
        const char *n = mk_policy_name((mk_policy)i);
        assert_non_null(n);
        assert_string_equal(n, want[i]);
        mk_policy p = MK_POLICY_COUNT;
        assert_int_equal(mk_policy_from_name(n, &p), MK_OK);
        assert_int_equal(p, i);
    }
    assert_null(mk_policy_name(MK_POLICY_COUNT));
    assert_null(mk_policy_name((mk_policy)-1));
    mk_policy p;
    assert_int_equal(mk_policy_from_name("bogus", &p), MK_EINVAL);
    assert_int_equal(mk_policy_from_name("", &p), MK_EINVAL);
    assert_int_equal(mk_policy_from_name("firs", &p), MK_EINVAL);
    assert_int_equal(mk_policy_from_name("first-fit-extra", &p), MK_EINVAL);
    assert_int_equal(mk_policy_from_name(NULL, &p), MK_EINVAL);
    assert_int_equal(mk_policy_from_name("tlsf", NULL), MK_EINVAL);
}

static void test_strerror(void **state) {
    (void)state;
    const char *unknown = mk_strerror(-9999);
    assert_non_null(unknown);
    assert_non_null(mk_strerror(12345));
    const char *seen[23];
    for (int c = 0; c >= MK_ENOTRECOVERABLE; c--) {
        const char *s = mk_strerror(c);
        assert_non_null(s);
        if (strlen(s) == 0 || strstr(s, "unknown")) fail_msg("mk_strerror(%d) = \"%s\"", c, s);
        for (int d = 0; d > c; d--)
            if (!strcmp(seen[-d], s))
                fail_msg("mk_strerror(%d) and mk_strerror(%d) are both \"%s\"", c, d, s);
        seen[-c] = s;
    }
}

static void test_min_size(void **state) {
    (void)state;
    assert_int_equal(mk_region_min_size(MK_POLICY_COUNT, 0), 0);
    assert_int_equal(mk_region_min_size((mk_policy)77, 0), 0);
    assert_int_equal(mk_region_min_size(MK_POLICY_FIRST_FIT, 1u << 9), 0);
    assert_int_equal(mk_region_min_size(MK_POLICY_BUDDY, MK_REGION_QUICK), 0);
    FOR_EACH_POLICY(p) {
        size_t m = mk_region_min_size(p, 0), mj = mk_region_min_size(p, MK_REGION_JOURNAL);
        EXPECT(m >= sizeof(mk__hdr) + 32, "min_size %zu is smaller than a header", m);
        EXPECT(mj > m, "journal min_size %zu <= plain %zu", mj, m);
        EXPECT(m <= REGION_SIZE && mj <= REGION_SIZE, "min sizes %zu %zu too large", m, mj);
        for (int j = 0; j < 2; j++) {
            unsigned fl = j ? MK_REGION_JOURNAL : 0;
            size_t ms = j ? mj : m;
            void *mem = xalloc(ms + 4096);
            mk_region *r = NULL;
            EXPECT_RC(mk_region_create(mem, ms, p, fl, &r), MK_OK);
            valid(r);
            /* The smallest region holds at least one minimum block. */
            mk_off off = xalloc_blk(r, 1, 0);
            EXPECT_RC(mk_region_free(r, off), MK_OK);
            valid(r);
            EXPECT_RC(mk_region_create(mem, ms - 1, p, fl, &r), MK_EINVAL);
            EXPECT_RC(mk_region_create(mem, ms - 16, p, fl, &r), MK_EINVAL);
            EXPECT_RC(mk_region_create(mem, 0, p, fl, &r), MK_EINVAL);
            free(mem);
        }
    }
}

static void test_create_errors(void **state) {
    (void)state;
    FOR_EACH_POLICY(p) {
        void *mem = xalloc(REGION_SIZE + 64);
        mk_region *r = NULL;
        EXPECT_RC(mk_region_create(NULL, REGION_SIZE, p, 0, &r), MK_EINVAL);
        EXPECT_RC(mk_region_create(mem, REGION_SIZE, p, 0, NULL), MK_EINVAL);
        EXPECT_RC(mk_region_create((char *)mem + 8, REGION_SIZE, p, 0, &r), MK_EINVAL);
        EXPECT_RC(mk_region_create((char *)mem + 1, REGION_SIZE, p, 0, &r), MK_EINVAL);
        EXPECT_RC(mk_region_create(mem, REGION_SIZE, MK_POLICY_COUNT, 0, &r), MK_EINVAL);
        EXPECT_RC(mk_region_create(mem, REGION_SIZE, (mk_policy)-1, 0, &r), MK_EINVAL);
        EXPECT_RC(mk_region_create(mem, REGION_SIZE, p, 1u << 2, &r), MK_EINVAL);
        EXPECT_RC(mk_region_create(mem, REGION_SIZE, p, 1u << 5, &r), MK_EINVAL);
        if (p == MK_POLICY_BUDDY) /* documented: no deferred coalescing for buddy */
            EXPECT_RC(mk_region_create(mem, REGION_SIZE, p, MK_REGION_QUICK, &r), MK_EINVAL);
        EXPECT_RC(mk_region_create(mem, REGION_SIZE, p, 1u << 31, &r), MK_EINVAL);
        EXPECT_RC(mk_region_create(mem, REGION_SIZE, p, MK_REGION_JOURNAL | 4u, &r), MK_EINVAL);
        /* A 16-aligned base that is not page-aligned is fine. */
        EXPECT_RC(mk_region_create((char *)mem + 16, REGION_SIZE, p, 0, &r), MK_OK);
        EXPECT(r == (mk_region *)((char *)mem + 16), "handle != base");
        valid(r);
        /* Odd sizes are accepted (the engine rounds down internally). */
        EXPECT_RC(mk_region_create(mem, REGION_SIZE - 24, p, 0, &r), MK_OK);
        valid(r);
        EXPECT(mk_region_size(r) <= REGION_SIZE - 24, "size grew past the range");
        free(mem);
    }
}

static void test_create_fresh(void **state) {
    (void)state;
    FOR_EACH_POLICY(p) {
        for (int j = 0; j < 2; j++) {
            void *mem;
            mk_region *r = make(p, REGION_SIZE, j ? MK_REGION_JOURNAL : 0, &mem);
            valid(r);
            EXPECT(mk_region_size(r) == REGION_SIZE, "size %zu", mk_region_size(r));
            EXPECT(mk_region_policy(r) == p, "policy %d", mk_region_policy(r));
            mk_stats s = stats(r);
            EXPECT(s.bytes_used == 0 && s.blocks_used == 0 && s.peak_used == 0,
                   "fresh region not empty");
            EXPECT(s.n_alloc == 0 && s.n_free == 0 && s.n_realloc == 0 && s.n_failed == 0,
                   "fresh counters not zero");
            EXPECT(s.capacity > 0 && s.capacity < REGION_SIZE, "capacity %" PRIu64, s.capacity);
            EXPECT(s.blocks_free >= 1 && s.bytes_free > 0 && s.bytes_free <= s.capacity,
                   "fresh free space: %" PRIu64 " blocks, %" PRIu64 " bytes", s.blocks_free,
                   s.bytes_free);
            EXPECT(s.largest_free >= REGION_SIZE / 4, "largest free %" PRIu64, s.largest_free);
            EXPECT(s.overhead > 0, "overhead 0");
            /* Recreating over an existing region starts afresh. */
            xalloc_blk(r, 100, 0);
            mk_region *r2;
            EXPECT_RC(mk_region_create(mem, REGION_SIZE, p, 0, &r2), MK_OK);
            EXPECT(stats(r2).blocks_used == 0, "recreated region keeps blocks");
            valid(r2);
            free(mem);
        }
    }
}

static void test_attach(void **state) {
    (void)state;
    FOR_EACH_POLICY(p) {
        void *mem;
        mk_region *r = make(p, REGION_SIZE, 0, &mem);
        mk_off a = xalloc_blk(r, 300, 0), b = xalloc_blk(r, 5000, 256);
        fill(r, a, 300, 1);
        fill(r, b, 5000, 2);
        mk__hdr *h = mk__h(r);
        mk__hdr saved = *h;
        mk_region *r2 = NULL;

        EXPECT_RC(mk_region_attach(mem, REGION_SIZE, &r2), MK_OK);
        EXPECT(r2 == r, "attach handle != base");
        valid(r2);
        EXPECT(stats(r2).blocks_used == 2, "attach lost blocks");
        check_fill(r2, a, 300, 1);
        check_fill(r2, b, 5000, 2);
        /* A mapping larger than the region is fine. */
        EXPECT_RC(mk_region_attach(mem, REGION_SIZE + 4096, &r2), MK_OK);

        EXPECT_RC(mk_region_attach(NULL, REGION_SIZE, &r2), MK_EINVAL);
        EXPECT_RC(mk_region_attach(mem, REGION_SIZE, NULL), MK_EINVAL);
        EXPECT_RC(mk_region_attach((char *)mem + 8, REGION_SIZE - 8, &r2), MK_EINVAL);
        /* Truncated: smaller than the region, smaller than the header. */
        EXPECT_RC(mk_region_attach(mem, REGION_SIZE - 4096, &r2), MK_ETRUNCATED);
        EXPECT_RC(mk_region_attach(mem, REGION_SIZE - 1, &r2), MK_ETRUNCATED);
        EXPECT_RC(mk_region_attach(mem, sizeof(mk__hdr) - 1, &r2), MK_ETRUNCATED);
        EXPECT_RC(mk_region_attach(mem, 8, &r2), MK_ETRUNCATED);
        EXPECT_RC(mk_region_attach(mem, 0, &r2), MK_ETRUNCATED);

        /* Identity. */
        h->magic ^= 1;
        EXPECT_RC(mk_region_attach(mem, REGION_SIZE, &r2), MK_EBADMAGIC);
        *h = saved;
        memset(mem, 0, 8);
        EXPECT_RC(mk_region_attach(mem, REGION_SIZE, &r2), MK_EBADMAGIC);
        *h = saved;
        h->version = MK__VERSION + 1;
        EXPECT_RC(mk_region_attach(mem, REGION_SIZE, &r2), MK_EVERSION);
        h->version = 0;
        EXPECT_RC(mk_region_attach(mem, REGION_SIZE, &r2), MK_EVERSION);
        *h = saved;
        h->signature ^= UINT64_C(1) << 17;
        EXPECT_RC(mk_region_attach(mem, REGION_SIZE, &r2), MK_ELAYOUT);
        *h = saved;
        h->hdr_size += 8;
        {
            int rc = mk_region_attach(mem, REGION_SIZE, &r2);
            EXPECT(rc == MK_ELAYOUT || rc == MK_ECORRUPT, "hdr_size changed: attach gave %d", rc);
        }
        *h = saved;

        /* Header fields out of range: each must be refused with MK_ECORRUPT. */
        struct {
            const char *what;
            size_t field;
            unsigned width;
            uint64_t value;
        } bad[] = {
            {"policy 99", offsetof(mk__hdr, policy), 4, 99},
            {"policy COUNT", offsetof(mk__hdr, policy), 4, MK_POLICY_COUNT},
            {"unknown flag", offsetof(mk__hdr, flags), 4, 1u << 7},
            {"size 0", offsetof(mk__hdr, size), 8, 0},
            {"size below header", offsetof(mk__hdr, size), 8, 64},
            {"data_start 0", offsetof(mk__hdr, data_start), 8, 0},
            {"data_start misaligned", offsetof(mk__hdr, data_start), 8, saved.data_start + 1},
            {"data_start in header", offsetof(mk__hdr, data_start), 8, 24},
            {"data_start past end", offsetof(mk__hdr, data_start), 8, REGION_SIZE + 8},
            {"data_end past size", offsetof(mk__hdr, data_end), 8, REGION_SIZE + 8},
            {"data_end huge", offsetof(mk__hdr, data_end), 8, UINT64_MAX - 7},
            {"data_end before start", offsetof(mk__hdr, data_end), 8, saved.data_start - 16},
            {"data_end misaligned", offsetof(mk__hdr, data_end), 8, saved.data_end - 4},
            {"state_off 0", offsetof(mk__hdr, state_off), 8, 0},
            {"state_off past end", offsetof(mk__hdr, state_off), 8, REGION_SIZE - 8},
            {"state_off huge", offsetof(mk__hdr, state_off), 8, UINT64_MAX - 64},
            {"journal_off without flag", offsetof(mk__hdr, journal_off), 8, 4096},
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            *h = saved;
            unsigned char *fp = (unsigned char *)h + bad[i].field;
            if (bad[i].width == 4) {
                uint32_t v = (uint32_t)bad[i].value;
                memcpy(fp, &v, 4);
            } else {
                memcpy(fp, &bad[i].value, 8);
            }
            int rc = mk_region_attach(mem, REGION_SIZE, &r2);
            if (rc != MK_ECORRUPT)
                fail_msg("[%s] attach with %s: %d (%s), expected MK_ECORRUPT", g_pol, bad[i].what,
                         rc, mk_strerror(rc));
        }
        /* size larger than the mapping is a truncation, not corruption. */
        *h = saved;
        h->size = REGION_SIZE * 2;
        EXPECT_RC(mk_region_attach(mem, REGION_SIZE, &r2), MK_ETRUNCATED);

        *h = saved;
        EXPECT_RC(mk_region_attach(mem, REGION_SIZE, &r2), MK_OK);
        valid(r2);
        EXPECT_RC(mk_region_free(r2, a), MK_OK);
        EXPECT_RC(mk_region_free(r2, b), MK_OK);
        valid(r2);

        /* Bytes that never held a region. */
        memset(mem, 0, REGION_SIZE);
        EXPECT_RC(mk_region_attach(mem, REGION_SIZE, &r2), MK_EBADMAGIC);
        memset(mem, 0xFF, REGION_SIZE);
        EXPECT_RC(mk_region_attach(mem, REGION_SIZE, &r2), MK_EBADMAGIC);
        free(mem);
    }
}

static void test_alloc_basic(void **state) {
    (void)state;
    static const size_t sizes[] = {1,  7,   8,   9,   15,   16,   17,   24,   31,    32,
                                   33, 100, 255, 256, 1000, 4095, 4096, 4097, 10000, 65536};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    FOR_EACH_POLICY(p) {
        void *mem;
        mk_region *r = make(p, REGION_SIZE, 0, &mem);
        mk_off offs[NS];
        uint64_t used = 0;
        for (size_t i = 0; i < NS; i++) {
            offs[i] = xalloc_blk(r, sizes[i], 0);
            EXPECT(offs[i] % 16 == 0, "offset %" PRIu64 " not 16-aligned", offs[i]);
            EXPECT(offs[i] >= sizeof(mk__hdr) && offs[i] < REGION_SIZE, "offset out of range");
            size_t u = usable(r, offs[i]);
            EXPECT(u >= sizes[i], "usable %zu < %zu", u, sizes[i]);
            EXPECT(offs[i] + u <= REGION_SIZE, "block runs past the end");
            fill(r, offs[i], u, i); /* the whole usable size may be written */
            used += u + 8;
            for (size_t j = 0; j < i; j++) {
                size_t uj = usable(r, offs[j]);
                EXPECT(offs[i] + u <= offs[j] || offs[j] + uj <= offs[i],
                       "blocks %" PRIu64 " and %" PRIu64 " overlap", offs[i], offs[j]);
            }
        }
        valid(r);
        mk_stats s = stats(r);
        EXPECT(s.blocks_used == NS && s.bytes_used == used && s.n_alloc == NS,
               "stats: %" PRIu64 " blocks %" PRIu64 " bytes %" PRIu64 " allocs; expected %d "
               "%" PRIu64 " %d",
               s.blocks_used, s.bytes_used, s.n_alloc, NS, used, NS);
        for (size_t i = 0; i < NS; i++) check_fill(r, offs[i], usable(r, offs[i]), i);
        /* Free in an order that exercises both neighbours. */
        for (size_t i = 0; i < NS; i += 2) EXPECT_RC(mk_region_free(r, offs[i]), MK_OK);
        valid(r);
        for (size_t i = 1; i < NS; i += 2) {
            check_fill(r, offs[i], sizes[i], i);
            EXPECT_RC(mk_region_free(r, offs[i]), MK_OK);
        }
        valid(r);
        s = stats(r);
        EXPECT(s.blocks_used == 0 && s.bytes_used == 0 && s.n_free == NS, "not empty after free");
        /* Everything merged back: the same as a fresh region. */
        void *mem2;
        mk_region *fresh = make(p, REGION_SIZE, 0, &mem2);
        mk_stats f = stats(fresh);
        EXPECT(s.blocks_free == f.blocks_free && s.largest_free == f.largest_free,
               "free blocks did not merge: %" PRIu64 " blocks (largest %" PRIu64
               "), fresh has %" PRIu64 " (largest %" PRIu64 ")",
               s.blocks_free, s.largest_free, f.blocks_free, f.largest_free);
        free(mem2);
        EXPECT_RC(mk_region_alloc(NULL, 16, 0, &offs[0]), MK_EINVAL);
        EXPECT_RC(mk_region_alloc(r, 16, 0, NULL), MK_EINVAL);
        free(mem);
    }
}

/* The engine's allocation from either end of the free block it picks
 * (MK__PLACE_*, what the shared heap gives two groups of processes): the
 * payload offset, or 0 with the error in *rc. */
static mk_off alloc_at(mk_region *r, size_t size, size_t align, unsigned place, int *rc) {
    mk__hdr *h = mk__h(r);
    mk_off b = 0;
    mk__journal_begin(h, MK__OP_ALLOC, size, align, 0);
    *rc = mk__region_alloc_op(h, size, align, place, &b);
    mk__journal_end(h);
    return *rc == MK_OK ? b + MK__TAGW : 0;
}

/* High-end allocations come from the top of a fresh region, each below
 * the one before, low-end ones from the bottom; the whole-block and the
 * aligned cases keep the region valid; everything freed merges back.
 * Buddy ignores the place (its blocks are where their size puts them). */
static void test_alloc_place(void **state) {
    (void)state;
    enum { N = 12 };
    FOR_EACH_POLICY(p) {
        void *mem;
        mk_region *r = make(p, REGION_SIZE, 0, &mem);
        const mk__hdr *h = mk__h(r);
        bool bt = p != MK_POLICY_BUDDY;
        mk_off hi[N], lo[N];
        int rc;
        for (int i = 0; i < N; i++) {
            size_t size = 40 + (size_t)i * 100;
            hi[i] = alloc_at(r, size, MK__GRAIN, MK__PLACE_HIGH, &rc);
            EXPECT_RC(rc, MK_OK);
            lo[i] = alloc_at(r, size, MK__GRAIN, MK__PLACE_LOW, &rc);
            EXPECT_RC(rc, MK_OK);
            fill(r, hi[i], size, (uint64_t)i);
            fill(r, lo[i], size, (uint64_t)i + 100);
            size_t u = usable(r, hi[i]);
            EXPECT(u >= size, "usable %zu < %zu", u, size);
            if (!bt) continue;
            mk_off top = i ? hi[i - 1] - MK__TAGW : h->data_end;
            EXPECT(hi[i] + u == top,
                   "high block %d at %" PRIu64 " ends at %" PRIu64 ", not at %" PRIu64, i, hi[i],
                   hi[i] + u, top);
            EXPECT(lo[i] < hi[i], "low block %d above the high one", i);
        }
        if (bt) EXPECT(lo[0] - MK__TAGW == h->data_start, "first low block not at data_start");
        valid(r);
        /* A hole of exactly one block's span, taken whole from the high end
         * by the policies that pick it (best fit, TLSF): no remainder. */
        size_t b_size = usable(r, lo[3]);
        EXPECT_RC(mk_region_free(r, lo[3]), MK_OK);
        lo[3] = alloc_at(r, b_size, MK__GRAIN, MK__PLACE_HIGH, &rc);
        EXPECT_RC(rc, MK_OK);
        fill(r, lo[3], b_size, 103);
        valid(r);
        /* Aligned: the high end is not offered, the payload is aligned. */
        mk_off al = alloc_at(r, 300, 256, MK__PLACE_HIGH, &rc);
        EXPECT_RC(rc, MK_OK);
        EXPECT(((uintptr_t)mem + al) % 256 == 0, "aligned high allocation misaligned");
        valid(r);
        for (int i = 0; i < N; i++) {
            check_fill(r, hi[i], 40 + (size_t)i * 100, (uint64_t)i);
            check_fill(r, lo[i], i == 3 ? b_size : 40 + (size_t)i * 100, (uint64_t)i + 100);
        }
        EXPECT_RC(mk_region_free(r, al), MK_OK);
        for (int i = 0; i < N; i += 2) EXPECT_RC(mk_region_free(r, hi[i]), MK_OK);
        for (int i = 0; i < N; i++) EXPECT_RC(mk_region_free(r, lo[i]), MK_OK);
        valid(r);
        for (int i = 1; i < N; i += 2) EXPECT_RC(mk_region_free(r, hi[i]), MK_OK);
        valid(r);
        mk_stats s = stats(r);
        void *mem2;
        mk_stats f = stats(make(p, REGION_SIZE, 0, &mem2));
        EXPECT(s.blocks_used == 0 && s.blocks_free == f.blocks_free &&
                   s.largest_free == f.largest_free,
               "not merged back: %" PRIu64 " used, %" PRIu64 " free blocks (fresh %" PRIu64 ")",
               s.blocks_used, s.blocks_free, f.blocks_free);
        free(mem2);
        free(mem);
    }
}

static void test_alloc_zero(void **state) {
    (void)state;
    FOR_EACH_POLICY(p) {
        void *mem;
        mk_region *r = make(p, REGION_SIZE, 0, &mem);
        mk_off z[4];
        for (int i = 0; i < 4; i++) {
            z[i] = xalloc_blk(r, 0, 0);
            EXPECT(usable(r, z[i]) >= 1, "size-0 block has no usable byte");
            *(unsigned char *)mk_region_ptr(r, z[i]) = (unsigned char)(0x40 + i);
            for (int j = 0; j < i; j++) EXPECT(z[i] != z[j], "size-0 blocks are not unique");
        }
        mk_off a = xalloc_blk(r, 0, 4096);
        EXPECT(a % 4096 == 0, "aligned size-0 block misaligned");
        valid(r);
        for (int i = 0; i < 4; i++)
            EXPECT(*(unsigned char *)mk_region_ptr(r, z[i]) == 0x40 + i, "size-0 byte lost");
        EXPECT(stats(r).blocks_used == 5, "size-0 blocks not counted");
        for (int i = 0; i < 4; i++) EXPECT_RC(mk_region_free(r, z[i]), MK_OK);
        EXPECT_RC(mk_region_free(r, a), MK_OK);
        {
            /* z[1] may have merged into a neighbour: either refusal will do. */
            int rc = mk_region_free(r, z[1]);
            EXPECT(rc == MK_EDOUBLEFREE || rc == MK_EBADOFF, "second free of a size-0 block: %d",
                   rc);
        }
        valid(r);
        EXPECT(stats(r).blocks_used == 0, "size-0 blocks not freed");
        free(mem);
    }
}

static void test_alloc_too_big(void **state) {
    (void)state;
    FOR_EACH_POLICY(p) {
        void *mem;
        mk_region *r = make(p, REGION_SIZE, 0, &mem);
        mk_off off = 77;
        const size_t big[] = {REGION_SIZE,  REGION_SIZE + 1, REGION_SIZE * 4,  SIZE_MAX,
                              SIZE_MAX - 7, SIZE_MAX - 15,   SIZE_MAX / 2 + 1, (size_t)1 << 48};
        unsigned char *snap = xalloc(REGION_SIZE);
        memcpy(snap, mem, REGION_SIZE);
        for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
            int rc = mk_region_alloc(r, big[i], 0, &off);
            if (rc != MK_ETOOBIG)
                fail_msg("[%s] alloc(%zu): %d (%s), expected MK_ETOOBIG", g_pol, big[i], rc,
                         mk_strerror(rc));
            rc = mk_region_alloc(r, big[i], 4096, &off);
            EXPECT(rc == MK_ETOOBIG, "aligned alloc(%zu): %d, expected MK_ETOOBIG", big[i], rc);
        }
        /* Only n_failed may have changed; everything else is untouched. */
        mk_stats s = stats(r);
        EXPECT(s.blocks_used == 0 && s.n_alloc == 0, "too-big alloc changed the region");
        ((mk__hdr *)snap)->c.n_failed = mk__h(r)->c.n_failed;
        EXPECT(memcmp(snap, mem, REGION_SIZE) == 0, "too-big alloc wrote to the region");
        valid(r);
        /* The largest request that can ever fit does fit in an empty region. */
        mk_stats s0 = stats(r);
        int rc = mk_region_alloc(r, (size_t)s0.largest_free, 0, &off);
        if (rc == MK_ENOMEM && p == MK_POLICY_TLSF) {
            /* TLSF rounds a request up to its size class: it may refuse the
             * exact largest block, but not much less than it. */
            off = xalloc_blk(r, (size_t)(s0.largest_free - s0.largest_free / 16), 0);
        } else {
            EXPECT_RC(rc, MK_OK);
            EXPECT(usable(r, off) >= s0.largest_free, "largest block too small");
        }
        valid(r);
        EXPECT_RC(mk_region_free(r, off), MK_OK);
        free(snap);
        free(mem);
    }
}

static void test_alloc_enomem(void **state) {
    (void)state;
    static mk_off offs[4096];
    FOR_EACH_POLICY(p) {
        void *mem;
        const size_t size = 64 * 1024;
        mk_region *r = make(p, size, 0, &mem);
        size_t n = fill_region(r, 1000, offs, 4096);
        EXPECT(n >= 20, "only %zu blocks of 1000 bytes in 64 KiB", n);
        mk_stats s = stats(r);
        EXPECT(s.n_failed == 1, "n_failed %" PRIu64 " after one MK_ENOMEM", s.n_failed);
        EXPECT(s.blocks_used == n && s.n_alloc == n, "stats after filling");
        EXPECT(s.largest_free < 1000, "MK_ENOMEM with a free block of %" PRIu64, s.largest_free);
        for (size_t i = 0; i < n; i++) fill(r, offs[i], 1000, i);
        valid(r);
        /* A failing alloc changes nothing but n_failed. */
        unsigned char *snap = xalloc(size);
        memcpy(snap, mem, size);
        mk_off off = 12345;
        EXPECT_RC(mk_region_alloc(r, 1000, 0, &off), MK_ENOMEM);
        EXPECT_RC(mk_region_alloc(r, 4000, 64, &off), MK_ENOMEM);
        EXPECT(stats(r).n_failed == 3, "n_failed does not count failures");
        ((mk__hdr *)snap)->c.n_failed = mk__h(r)->c.n_failed;
        EXPECT(memcmp(snap, mem, size) == 0, "failed alloc wrote to the region");
        /* Free one block in the middle: exactly that space is reusable. */
        EXPECT_RC(mk_region_free(r, offs[n / 2]), MK_OK);
        mk_off again = xalloc_blk(r, 1000, 0);
        EXPECT(again == offs[n / 2], "freed block not reused (got %" PRIu64 ", freed %" PRIu64 ")",
               again, offs[n / 2]);
        fill(r, again, 1000, n / 2);
        for (size_t i = 0; i < n; i++) check_fill(r, offs[i], 1000, i);
        for (size_t i = 0; i < n; i++) EXPECT_RC(mk_region_free(r, offs[i]), MK_OK);
        valid(r);
        EXPECT(stats(r).bytes_used == 0, "not empty");
        free(snap);
        free(mem);
    }
}

static void test_alloc_align(void **state) {
    (void)state;
    FOR_EACH_POLICY(p) {
        void *mem;
        mk_region *r = make(p, REGION_SIZE, 0, &mem);
        mk_off off = 99;
        unsigned char *snap = xalloc(REGION_SIZE);
        memcpy(snap, mem, REGION_SIZE);
        const size_t bad[] = {
            3, 5, 24, 48, 100, 4095, 4097, 8192, 65536, (size_t)1 << 40, SIZE_MAX, SIZE_MAX - 1};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            int rc = mk_region_alloc(r, 64, bad[i], &off);
            if (rc != MK_EALIGN)
                fail_msg("[%s] alloc(64, align %zu): %d (%s), expected MK_EALIGN", g_pol, bad[i],
                         rc, mk_strerror(rc));
        }
        EXPECT(memcmp(snap, mem, REGION_SIZE) == 0, "a bad alignment wrote to the region");
        EXPECT(stats(r).n_failed == 0, "bad alignment counted as lack of space");
        /* Small powers of two mean the default 16. */
        for (size_t a = 1; a <= 8; a *= 2) {
            off = xalloc_blk(r, 40, a);
            EXPECT(off % 16 == 0, "align %zu gave offset %" PRIu64, a, off);
        }
        /* Every alignment up to the page, after an odd-sized block so that
         * the natural position is misaligned. */
        mk_off offs[64];
        size_t seeds[64];
        size_t n = 0;
        for (size_t a = 16; a <= MK_REGION_MAX_ALIGN; a *= 2) {
            for (size_t sz = 1; sz <= 5000; sz = sz * 7 + 3) {
                mk_off pad = xalloc_blk(r, 24, 0);
                off = xalloc_blk(r, sz, a);
                EXPECT(((uintptr_t)mk_region_ptr(r, off) & (a - 1)) == 0,
                       "alloc(%zu, align %zu) gave an address misaligned by %zu", sz, a,
                       (size_t)((uintptr_t)mk_region_ptr(r, off) & (a - 1)));
                EXPECT(usable(r, off) >= sz, "aligned usable");
                fill(r, off, usable(r, off), sz + a);
                EXPECT_RC(mk_region_free(r, pad), MK_OK);
                if (n < 64) {
                    seeds[n] = sz + a;
                    offs[n++] = off;
                } else {
                    EXPECT_RC(mk_region_free(r, off), MK_OK);
                }
            }
            valid(r);
        }
        for (size_t i = 0; i < n; i++) {
            check_fill(r, offs[i], usable(r, offs[i]), seeds[i]);
            EXPECT_RC(mk_region_free(r, offs[i]), MK_OK);
        }
        valid(r);
        free(snap);
        free(mem);
    }
}

static void test_free_errors(void **state) {
    (void)state;
    FOR_EACH_POLICY(p) {
        void *mem;
        mk_region *r = make(p, REGION_SIZE, 0, &mem);
        mk_off a = xalloc_blk(r, 256, 0), b = xalloc_blk(r, 256, 0), c = xalloc_blk(r, 256, 0),
               d = xalloc_blk(r, 256, 0);
        EXPECT_RC(mk_region_free(r, b), MK_OK);
        valid(r);
        unsigned char *snap = xalloc(REGION_SIZE);
        memcpy(snap, mem, REGION_SIZE);
        /* Forge a header word with a wrong tag inside a's payload. */
        mk__hdr *h = mk__h(r);
        mk_off fake = a + 64;
        uint64_t w = mk__pack(h, fake - 8, 64, 0) ^ (UINT64_C(1) << 50);
        memcpy(mk_region_ptr(r, fake - 8), &w, 8);
        memcpy(snap + fake - 8, &w, 8);
        const mk_off badoffs[] = {0,
                                  8,
                                  16,
                                  64,
                                  sizeof(mk__hdr),
                                  a + 16,
                                  a + 8,
                                  a - 8,
                                  a + 1,
                                  a + 128,
                                  fake,
                                  c + 16,
                                  d + 240,
                                  REGION_SIZE,
                                  REGION_SIZE - 16,
                                  REGION_SIZE + 16,
                                  UINT64_MAX,
                                  UINT64_MAX - 15,
                                  (mk_off)1 << 47,
                                  h->data_end,
                                  h->data_end + 8};
        for (size_t i = 0; i < sizeof badoffs / sizeof badoffs[0]; i++) {
            int rc = mk_region_free(r, badoffs[i]);
            if (rc != MK_EBADOFF)
                fail_msg("[%s] free(%" PRIu64 ") [case %zu]: %d (%s), expected MK_EBADOFF", g_pol,
                         badoffs[i], i, rc, mk_strerror(rc));
            EXPECT(memcmp(snap, mem, REGION_SIZE) == 0, "free(%" PRIu64 ") changed the region",
                   badoffs[i]);
        }
        /* Double free of a block between two used ones. */
        EXPECT_RC(mk_region_free(r, b), MK_EDOUBLEFREE);
        EXPECT(memcmp(snap, mem, REGION_SIZE) == 0, "double free changed the region");
        {
            size_t u;
            EXPECT_RC(mk_region_usable_size(r, b, &u), MK_EDOUBLEFREE);
            for (size_t i = 0; i < 6; i++) {
                int rc = mk_region_usable_size(r, badoffs[i], &u);
                EXPECT(rc == MK_EBADOFF, "usable_size(%" PRIu64 "): %d", badoffs[i], rc);
            }
            EXPECT_RC(mk_region_usable_size(r, a, NULL), MK_EINVAL);
        }
        valid(r);
        /* Free a, which merges with free b (boundary-tag policies): b's
         * offset is now inside a free block; freeing it again must fail
         * without damage, as must freeing a twice. */
        EXPECT_RC(mk_region_free(r, a), MK_OK);
        memcpy(snap, mem, REGION_SIZE);
        {
            int rc = mk_region_free(r, b);
            EXPECT(rc == MK_EDOUBLEFREE || rc == MK_EBADOFF, "free of a merged block: %d", rc);
            rc = mk_region_free(r, a);
            EXPECT(rc == MK_EDOUBLEFREE || rc == MK_EBADOFF, "second free of a: %d", rc);
        }
        EXPECT(memcmp(snap, mem, REGION_SIZE) == 0, "double free changed the region");
        valid(r);
        mk_stats s = stats(r);
        EXPECT(s.n_free == 2 && s.blocks_used == 2, "failed frees were counted");
        EXPECT_RC(mk_region_free(r, c), MK_OK);
        EXPECT_RC(mk_region_free(r, d), MK_OK);
        EXPECT_RC(mk_region_free(NULL, d), MK_EINVAL);
        valid(r);

        /* Stale headers: x and y adjacent, free x then y (y merges into the
         * free block before it and its old header word, still marked used,
         * is left inside that free block). Freeing or resizing y again
         * must be refused. The same after a realloc that moved a block. */
        {
            mk_off xs[8];
            for (int i = 0; i < 8; i++) xs[i] = xalloc_blk(r, 512, 0);
            mk_off z = xalloc_blk(r, 64, 0);
            const blocks *bs = walk(r);
            mk_off lo = 0, hi = 0;
            for (size_t i = 0; i + 1 < bs->n && !lo; i++) {
                if (!bs->b[i].used || !bs->b[i + 1].used) continue;
                int a1 = 0, a2 = 0;
                for (int k = 0; k < 8; k++) {
                    a1 |= xs[k] == bs->b[i].offset;
                    a2 |= xs[k] == bs->b[i + 1].offset;
                }
                if (a1 && a2) lo = bs->b[i].offset, hi = bs->b[i + 1].offset;
            }
            EXPECT(lo != 0, "no two of 8 blocks of 512 bytes are adjacent");
            EXPECT_RC(mk_region_free(r, lo), MK_OK);
            EXPECT_RC(mk_region_free(r, hi), MK_OK);
            valid(r);
            memcpy(snap, mem, REGION_SIZE);
            int rc = mk_region_free(r, hi);
            EXPECT(rc == MK_EDOUBLEFREE || rc == MK_EBADOFF,
                   "second free of a block merged backwards: %d (%s)", rc, mk_strerror(rc));
            size_t u;
            rc = mk_region_usable_size(r, hi, &u);
            EXPECT(rc == MK_EDOUBLEFREE || rc == MK_EBADOFF,
                   "usable_size of a block merged backwards: %d (%s)", rc, mk_strerror(rc));
            mk_off out;
            rc = mk_region_realloc(r, hi, 16, &out);
            EXPECT(rc == MK_EDOUBLEFREE || rc == MK_EBADOFF,
                   "realloc of a block merged backwards: %d (%s)", rc, mk_strerror(rc));
            EXPECT(memcmp(snap, mem, REGION_SIZE) == 0, "refused calls changed the region");
            valid(r);
            /* realloc that moves: the old offset is dead afterwards. */
            mk_off v = xalloc_blk(r, 64, 0), w2 = xalloc_blk(r, 64, 0);
            rc = mk_region_realloc(r, v, 20000, &out);
            EXPECT_RC(rc, MK_OK);
            if (out != v) {
                rc = mk_region_free(r, v);
                EXPECT(rc == MK_EDOUBLEFREE || rc == MK_EBADOFF,
                       "free of the old offset after a moving realloc: %d (%s)", rc,
                       mk_strerror(rc));
            }
            valid(r);
            EXPECT_RC(mk_region_free(r, out), MK_OK);
            EXPECT_RC(mk_region_free(r, w2), MK_OK);
            EXPECT_RC(mk_region_free(r, z), MK_OK);
            for (int i = 0; i < 8; i++)
                if (xs[i] != lo && xs[i] != hi) EXPECT_RC(mk_region_free(r, xs[i]), MK_OK);
            valid(r);
            EXPECT(stats(r).blocks_used == 0, "blocks left");
        }
        free(snap);
        free(mem);
    }
}

/* Find k used blocks in a row (in address order) among a full region. */
static void test_realloc_paths(void **state) {
    (void)state;
    static mk_off offs[4096];
    FOR_EACH_POLICY(p) {
        void *mem;
        const size_t size = 256 * 1024;
        mk_region *r = make(p, size, 0, &mem);

        /* realloc(0, n) allocates. */
        mk_off x = 0;
        EXPECT_RC(mk_region_realloc(r, 0, 100, &x), MK_OK);
        EXPECT(x != 0 && usable(r, x) >= 100, "realloc(0) did not allocate");
        EXPECT_RC(mk_region_free(r, x), MK_OK);
        valid(r);
        mk_region_stats_reset(r); /* n_realloc is counted from here */

        /* Fill the region so that every block has used neighbours. */
        size_t n = fill_region(r, 240, offs, 4096);
        EXPECT(n > 200, "only %zu blocks", n);
        for (size_t i = 0; i < n; i++) fill(r, offs[i], 240, i);
        uint64_t n_realloc = 0;

        /* Shrink in place. */
        {
            mk_off o = offs[10], out = 0;
            EXPECT_RC(mk_region_realloc(r, o, 100, &out), MK_OK);
            n_realloc++;
            EXPECT(out == o, "shrink moved the block %" PRIu64 " -> %" PRIu64, o, out);
            EXPECT(usable(r, o) >= 100, "shrunk usable");
            check_fill(r, o, 100, 10);
            valid(r);
            /* Growing back into its own former space is in place too. */
            EXPECT_RC(mk_region_realloc(r, o, 240, &out), MK_OK);
            n_realloc++;
            /* Buddy may not merge a block with its free buddy in place. */
            if (p != MK_POLICY_BUDDY)
                EXPECT(out == o, "regrow moved the block %" PRIu64 " -> %" PRIu64, o, out);
            check_fill(r, out, 100, 10);
            offs[10] = o = out;
            fill(r, o, 240, 10);
            valid(r);
        }
        /* Within the usable size: in place, for every policy. */
        {
            mk_off o = offs[11], out = 0;
            size_t u = usable(r, o);
            EXPECT_RC(mk_region_realloc(r, o, u, &out), MK_OK);
            n_realloc++;
            EXPECT(out == o, "realloc to the usable size moved the block");
            check_fill(r, o, 240, 11);
        }
        /* Grow in place into a free neighbour (boundary-tag policies). */
        {
            const blocks *bs = walk(r);
            size_t i = 20;
            const mk_block_info *bi = find_block(bs, offs[i]);
            EXPECT(bi != NULL, "block not walked");
            mk_off next = bi->offset + bi->span;
            size_t j = 0;
            while (j < n && offs[j] != next) j++;
            EXPECT(j < n, "no used block follows block %zu", i);
            EXPECT_RC(mk_region_free(r, offs[j]), MK_OK);
            mk_off out = 0;
            int rc = mk_region_realloc(r, offs[i], 400, &out);
            /* Buddy can only grow into its buddy, which the freed neighbour
             * need not be; in a full region it then has nowhere to go. */
            if (rc == MK_ENOMEM && p == MK_POLICY_BUDDY) {
                out = offs[i];
            } else {
                EXPECT_RC(rc, MK_OK);
                n_realloc++;
            }
            if (p != MK_POLICY_BUDDY)
                EXPECT(out == offs[i], "grow into a free neighbour moved the block");
            check_fill(r, out, 240, i);
            offs[i] = out;
            size_t nu = usable(r, out);
            fill(r, out, nu, 1000 + i);
            offs[j] = offs[--n];
            valid(r);
            check_fill(r, out, nu, 1000 + i);
        }
        /* Free a run of blocks far away so that a move has room. */
        {
            mk_off keep[4096];
            size_t m = 0;
            for (size_t i = 0; i < n; i++) {
                if (i >= n / 2 && i < n / 2 + 40)
                    EXPECT_RC(mk_region_free(r, offs[i]), MK_OK);
                else
                    keep[m++] = offs[i];
            }
            /* keep the seeds aligned with the surviving blocks */
            memcpy(offs, keep, m * sizeof *keep);
            (void)m;
        }
        valid(r);
        /* Grow by moving: the block's neighbours are used. */
        {
            mk_off o = offs[30], out = 0;
            const blocks *bs = walk(r);
            const mk_block_info *bi = find_block(bs, o);
            const mk_block_info *nx = find_block(bs, bi->offset + bi->span);
            EXPECT(nx && nx->used, "block 30's neighbour is not used");
            unsigned char before[240];
            memcpy(before, mk_region_ptr(r, o), 240);
            EXPECT_RC(mk_region_realloc(r, o, 3000, &out), MK_OK);
            n_realloc++;
            EXPECT(out != o, "grow with used neighbours did not move");
            EXPECT(out % 16 == 0 && usable(r, out) >= 3000, "moved block");
            EXPECT(memcmp(before, mk_region_ptr(r, out), 240) == 0, "move lost the contents");
            size_t u;
            EXPECT_RC(mk_region_usable_size(r, o, &u), MK_EDOUBLEFREE);
            valid(r);
            EXPECT_RC(mk_region_free(r, out), MK_OK);
            offs[30] = 0;
        }
        /* realloc to size 0 keeps a live minimum block. */
        {
            mk_off o = offs[40], out = 0;
            EXPECT_RC(mk_region_realloc(r, o, 0, &out), MK_OK);
            n_realloc++;
            EXPECT(usable(r, out) >= 1, "realloc to 0");
            EXPECT(*(unsigned char *)mk_region_ptr(r, out) == pat(40, 0), "first byte lost");
            offs[40] = out;
            valid(r);
        }
        /* Errors leave the block unchanged. */
        {
            mk_off o = offs[50], out = 777;
            unsigned char *snap = xalloc(size);
            memcpy(snap, mem, size);
            EXPECT_RC(mk_region_realloc(r, o, SIZE_MAX, &out), MK_ETOOBIG);
            EXPECT_RC(mk_region_realloc(r, o, size, &out), MK_ETOOBIG);
            EXPECT_RC(mk_region_realloc(r, o + 16, 10, &out), MK_EBADOFF);
            EXPECT_RC(mk_region_realloc(r, size + 16, 10, &out), MK_EBADOFF);
            EXPECT_RC(mk_region_realloc(r, 16, 10, &out), MK_EBADOFF);
            EXPECT_RC(mk_region_realloc(r, o, 10, NULL), MK_EINVAL);
            /* n_failed may count ETOOBIG: compare the rest */
            ((mk__hdr *)snap)->c.n_failed = mk__h(r)->c.n_failed;
            EXPECT(memcmp(snap, mem, size) == 0, "failed realloc changed the region");
            /* No room for 100 KiB: MK_ENOMEM, block unchanged. */
            int rc = mk_region_realloc(r, o, 100 * 1024, &out);
            EXPECT(rc == MK_ENOMEM, "realloc to 100 KiB in a full region: %d", rc);
            ((mk__hdr *)snap)->c.n_failed = mk__h(r)->c.n_failed;
            EXPECT(memcmp(snap, mem, size) == 0, "MK_ENOMEM realloc changed the region");
            check_fill(r, o, 240, 50);
            free(snap);
        }
        valid(r);
        /* A freed block cannot be resized. */
        {
            mk_off o = offs[60], out = 0;
            EXPECT_RC(mk_region_free(r, o), MK_OK);
            EXPECT_RC(mk_region_realloc(r, o, 10, &out), MK_EDOUBLEFREE);
            offs[60] = 0;
        }
        mk_stats s = stats(r);
        EXPECT(s.n_realloc == n_realloc, "n_realloc %" PRIu64 ", expected %" PRIu64, s.n_realloc,
               n_realloc);
        valid(r);
        free(mem);
    }
}

/* Shrink frees the tail for the next allocation (boundary-tag policies). */
static void test_realloc_shrink_tail(void **state) {
    (void)state;
    FOR_EACH_POLICY(p) {
        if (p == MK_POLICY_BUDDY) continue;
        void *mem;
        mk_region *r = make(p, REGION_SIZE, 0, &mem);
        mk_off a = xalloc_blk(r, 8000, 0), b = xalloc_blk(r, 100, 0);
        (void)b;
        mk_stats s0 = stats(r);
        mk_off out = 0;
        EXPECT_RC(mk_region_realloc(r, a, 100, &out), MK_OK);
        EXPECT(out == a, "shrink moved");
        mk_stats s1 = stats(r);
        EXPECT(s1.bytes_used < s0.bytes_used - 7000,
               "shrinking 8000 -> 100 did not give the tail back (%" PRIu64 " -> %" PRIu64 ")",
               s0.bytes_used, s1.bytes_used);
        const blocks *bs = walk(r);
        const mk_block_info *bi = find_block(bs, a);
        const mk_block_info *tail = find_block(bs, a + bi->span);
        EXPECT(tail && !tail->used, "no free block after the shrunk block");
        valid(r);
        free(mem);
    }
}

typedef struct stopper {
    int count, stop_at;
} stopper;
static int stop_visitor(const mk_block_info *bi, void *arg) {
    (void)bi;
    stopper *s = arg;
    return ++s->count == s->stop_at ? 42 : 0;
}

static void test_walk(void **state) {
    (void)state;
    FOR_EACH_POLICY(p) {
        void *mem;
        mk_region *r = make(p, REGION_SIZE, 0, &mem);
        mk_off o[10];
        for (int i = 0; i < 10; i++) o[i] = xalloc_blk(r, 100u * (unsigned)(i + 1), 0);
        EXPECT_RC(mk_region_free(r, o[3]), MK_OK);
        EXPECT_RC(mk_region_free(r, o[7]), MK_OK);
        const blocks *bs = walk(r);
        mk__hdr *h = mk__h(r);
        size_t used = 0, nfree = 0;
        uint64_t total = 0, fbytes = 0;
        for (size_t i = 0; i < bs->n; i++) {
            const mk_block_info *bi = &bs->b[i];
            EXPECT(bi->offset % 16 == 0 && bi->span % 16 == 0 && bi->span >= bi->size,
                   "block %zu: offset %" PRIu64 " span %" PRIu64 " size %" PRIu64, i, bi->offset,
                   bi->span, bi->size);
            if (i == 0)
                EXPECT(bi->offset == h->data_start + 8, "walk does not start at data_start");
            else
                EXPECT(bi->offset == bs->b[i - 1].offset + bs->b[i - 1].span,
                       "blocks do not tile: %" PRIu64 " after %" PRIu64 "+%" PRIu64, bi->offset,
                       bs->b[i - 1].offset, bs->b[i - 1].span);
            total += bi->span;
            if (bi->used) {
                used++;
                size_t u = usable(r, bi->offset);
                EXPECT(u == bi->size, "walk size %" PRIu64 " != usable_size %zu", bi->size, u);
            } else {
                nfree++;
                fbytes += bi->span;
            }
        }
        EXPECT(total == h->data_end - h->data_start, "spans do not cover the data");
        for (int i = 0; i < 10; i++) {
            const mk_block_info *bi = find_block(bs, o[i]);
            EXPECT(bi != NULL, "block %d not visited", i);
            if (i == 3 || i == 7)
                EXPECT(!bi->used, "freed block %d reported used", i);
            else
                EXPECT(bi->used, "block %d reported free", i);
        }
        EXPECT(used == 8, "%zu used blocks walked", used);
        mk_stats s = stats(r);
        EXPECT(s.blocks_free == nfree && s.bytes_free == fbytes,
               "stats free %" PRIu64 "/%" PRIu64 ", walk %zu/%" PRIu64, s.blocks_free, s.bytes_free,
               nfree, fbytes);
        /* Stop early: the walk returns the visitor's value. */
        for (int k = 1; k <= 3; k++) {
            stopper st = {0, k};
            EXPECT_RC(mk_region_walk(r, stop_visitor, &st), 42);
            EXPECT(st.count == k, "walk went on after the visitor stopped it");
        }
        stopper all = {0, -1};
        EXPECT_RC(mk_region_walk(r, stop_visitor, &all), 0);
        EXPECT((size_t)all.count == bs->n, "walks differ");
        EXPECT_RC(mk_region_walk(NULL, stop_visitor, &all), MK_EINVAL);
        EXPECT_RC(mk_region_walk(r, NULL, &all), MK_EINVAL);
        /* A walk over a broken chain stops with MK_ECORRUPT instead of
         * running off the end. */
        uint64_t *hw = mk__word(h, o[5] - 8);
        uint64_t saved = *hw;
        *hw = 0;
        int rc = mk_region_walk(r, stop_visitor, &all);
        EXPECT(rc == MK_ECORRUPT, "walk over a zeroed header: %d", rc);
        *hw = saved;
        valid(r);
        free(mem);
    }
}

static void test_stats(void **state) {
    (void)state;
    FOR_EACH_POLICY(p) {
        void *mem;
        mk_region *r = make(p, REGION_SIZE, 0, &mem);
        mk_off o[8];
        uint64_t bytes = 0;
        for (int i = 0; i < 8; i++) {
            o[i] = xalloc_blk(r, 1000, 0);
            bytes += usable(r, o[i]) + 8;
        }
        mk_stats s = stats(r);
        EXPECT(s.blocks_used == 8 && s.bytes_used == bytes && s.peak_used == bytes,
               "used %" PRIu64 "/%" PRIu64 " peak %" PRIu64 ", expected 8/%" PRIu64, s.blocks_used,
               s.bytes_used, s.peak_used, bytes);
        EXPECT(s.n_alloc == 8 && s.n_free == 0 && s.n_realloc == 0 && s.n_failed == 0, "counts");
        EXPECT(s.overhead >= sizeof(mk__hdr) + 8 * 8, "overhead %" PRIu64, s.overhead);
        uint64_t peak = bytes;
        EXPECT_RC(mk_region_free(r, o[2]), MK_OK);
        EXPECT_RC(mk_region_free(r, o[5]), MK_OK);
        bytes -= 2 * (usable(r, o[0]) + 8);
        mk_off big;
        EXPECT_RC(mk_region_alloc(r, REGION_SIZE * 2, 0, &big), MK_ETOOBIG);
        mk_off tmp;
        EXPECT_RC(mk_region_realloc(r, o[0], 500, &tmp), MK_OK);
        s = stats(r);
        bytes += usable(r, tmp) + 8 - (usable(r, o[1]) + 8);
        o[0] = tmp;
        EXPECT(s.bytes_used == bytes && s.blocks_used == 6, "after frees: %" PRIu64 " %" PRIu64,
               s.bytes_used, s.blocks_used);
        EXPECT(s.peak_used == peak, "peak %" PRIu64 " != %" PRIu64, s.peak_used, peak);
        EXPECT(s.n_alloc == 8 && s.n_free == 2 && s.n_realloc == 1, "counts after free/realloc");
        /* largest_free and fragmentation against the walk. */
        const blocks *bs = walk(r);
        uint64_t largest = 0, fsum = 0, nfree = 0;
        for (size_t i = 0; i < bs->n; i++)
            if (!bs->b[i].used) {
                nfree++;
                fsum += bs->b[i].span;
                if (bs->b[i].size > largest) largest = bs->b[i].size;
            }
        EXPECT(s.largest_free == largest, "largest_free %" PRIu64 ", walk %" PRIu64, s.largest_free,
               largest);
        EXPECT(s.bytes_free == fsum && s.blocks_free == nfree, "free bytes/blocks");
        EXPECT(nfree >= 2, "expected holes");
        double frag = 1.0 - (double)largest / (double)fsum;
        EXPECT(s.fragmentation > frag - 1e-9 && s.fragmentation < frag + 1e-9,
               "fragmentation %f, expected %f", s.fragmentation, frag);
        EXPECT(s.fragmentation > 0.0 && s.fragmentation < 1.0, "fragmentation %f", s.fragmentation);
        EXPECT(s.bytes_used + s.bytes_free <= s.capacity, "used + free > capacity");

        /* Reset: counters and peak, not the usage. */
        mk_region_stats_reset(r);
        mk_stats t = stats(r);
        EXPECT(t.n_alloc == 0 && t.n_free == 0 && t.n_realloc == 0 && t.n_failed == 0,
               "reset left counters");
        EXPECT(t.bytes_used == s.bytes_used && t.blocks_used == s.blocks_used, "reset usage");
        EXPECT(t.peak_used == t.bytes_used, "peak after reset %" PRIu64 " != used %" PRIu64,
               t.peak_used, t.bytes_used);
        EXPECT(t.largest_free == s.largest_free && t.bytes_free == s.bytes_free, "reset free");
        valid(r);
        mk_off q = xalloc_blk(r, 100, 0);
        t = stats(r);
        EXPECT(t.n_alloc == 1 && t.peak_used == t.bytes_used, "counting after reset");
        EXPECT_RC(mk_region_free(r, q), MK_OK);
        EXPECT(stats(r).peak_used == t.bytes_used, "peak after free");

        /* Full region: nothing free, fragmentation 0. */
        void *mem2;
        mk_region *r2 = make(p, 64 * 1024, 0, &mem2);
        mk_off all;
        mk_stats e = stats(r2);
        /* One free block: the formula gives only the tag word's share. */
        EXPECT(e.fragmentation >= 0.0 && (e.blocks_free > 1 || e.fragmentation < 0.001),
               "empty region fragmentation %f", e.fragmentation);
        EXPECT_RC(mk_region_alloc(r2, (size_t)e.largest_free, 0, &all), MK_OK);
        e = stats(r2);
        if (e.bytes_free == 0)
            EXPECT(e.fragmentation == 0.0 && e.largest_free == 0, "full region stats");
        EXPECT_RC(mk_region_stats(NULL, &e), MK_EINVAL);
        EXPECT_RC(mk_region_stats(r2, NULL), MK_EINVAL);
        free(mem2);
        free(mem);
    }
}

/* Read a whole FILE written by the printers. */
static char *slurp(FILE *f, size_t *len) {
    fflush(f);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *buf = calloc(1, (size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    *len = (size_t)n;
    return buf;
}

static void test_stats_print(void **state) {
    (void)state;
    mk_stats s = {0};
    s.capacity = 1048000;
    s.bytes_used = 123456;
    s.bytes_free = 700000;
    s.blocks_used = 77;
    s.blocks_free = 5;
    s.peak_used = 200001;
    s.n_alloc = 1001;
    s.n_free = 924;
    s.n_realloc = 13;
    s.n_failed = 3;
    s.largest_free = 650000;
    s.overhead = 4242;
    s.fragmentation = 1.0 - 650000.0 / 700000.0;

    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(mk_stats_print(&s, f), MK_OK);
    size_t len;
    char *txt = slurp(f, &len);
    assert_true(len > 50);
    const char *nums[] = {"123456", "1048000", "200001", "1001", "924", "650000", "4242"};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
        if (!strstr(txt, nums[i])) fail_msg("mk_stats_print output lacks %s:\n%s", nums[i], txt);
    free(txt);
    fclose(f);

    f = tmpfile();
    assert_non_null(f);
    assert_int_equal(mk_stats_json(&s, f), MK_OK);
    char *js = slurp(f, &len);
    fclose(f);
    /* One object, no trailing newline, balanced, every key with its value. */
    assert_true(len > 2);
    if (js[0] != '{' || js[len - 1] != '}') fail_msg("not one JSON object: [%s]", js);
    int depth = 0;
    int in_str = 0;
    for (size_t i = 0; i < len; i++) {
        if (js[i] == '"')
            in_str = !in_str;
        else if (!in_str && js[i] == '{')
            depth++;
        else if (!in_str && js[i] == '}')
            depth--;
        if (depth == 0 && i + 1 < len) fail_msg("JSON closes early: [%s]", js);
        if (js[i] == '\n' && i + 1 == len) fail_msg("trailing newline");
    }
    assert_int_equal(depth, 0);
    assert_false(in_str);
    struct {
        const char *key;
        double value;
    } keys[] = {{"capacity", 1048000},
                {"bytes_used", 123456},
                {"bytes_free", 700000},
                {"blocks_used", 77},
                {"blocks_free", 5},
                {"peak_used", 200001},
                {"n_alloc", 1001},
                {"n_free", 924},
                {"n_realloc", 13},
                {"n_failed", 3},
                {"largest_free", 650000},
                {"overhead", 4242},
                {"fragmentation", 1.0 - 650000.0 / 700000.0}};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char pat_[64];
        snprintf(pat_, sizeof pat_, "\"%s\"", keys[i].key);
        const char *k = strstr(js, pat_);
        if (!k) fail_msg("JSON lacks key %s: %s", pat_, js);
        k += strlen(pat_);
        while (*k == ' ') k++;
        if (*k != ':') fail_msg("JSON key %s not followed by ':'", pat_);
        k++;
        char *end;
        double v = strtod(k, &end);
        if (end == k) fail_msg("JSON key %s has no number", pat_);
        if (v < keys[i].value - 1e-4 || v > keys[i].value + 1e-4)
            fail_msg("JSON %s = %g, expected %g", pat_, v, keys[i].value);
    }
    free(js);

    assert_int_equal(mk_stats_print(NULL, stdout), MK_EINVAL);
    assert_int_equal(mk_stats_print(&s, NULL), MK_EINVAL);
    assert_int_equal(mk_stats_json(NULL, stdout), MK_EINVAL);
    assert_int_equal(mk_stats_json(&s, NULL), MK_EINVAL);
    /* A stream that cannot be written: MK_EOS. */
    FILE *ro = fopen("/dev/null", "r");
    assert_non_null(ro);
    assert_int_equal(mk_stats_print(&s, ro), MK_EOS);
    assert_int_equal(mk_stats_json(&s, ro), MK_EOS);
    fclose(ro);
}

static void test_grow(void **state) {
    (void)state;
    FOR_EACH_POLICY(p) {
        const size_t small = 128 * 1024;
        void *mem = xalloc(4 * small);
        mk_region *r;
        EXPECT_RC(mk_region_create(mem, small, p, 0, &r), MK_OK);
        mk_off a = xalloc_blk(r, 1000, 0);
        fill(r, a, 1000, 5);
        mk_stats s0 = stats(r);
        if (p == MK_POLICY_BUDDY) {
            unsigned char *snap = xalloc(small);
            memcpy(snap, mem, small);
            EXPECT_RC(mk_region_grow(r, 2 * small), MK_ENOTSUP);
            EXPECT(memcmp(snap, mem, small) == 0, "refused grow changed the region");
            EXPECT(mk_region_size(r) == small, "size changed");
            free(snap);
            valid(r);
            free(mem);
            continue;
        }
        EXPECT_RC(mk_region_grow(r, small - 4096), MK_EINVAL);
        EXPECT_RC(mk_region_grow(NULL, 2 * small), MK_EINVAL);
        EXPECT_RC(mk_region_grow(r, 2 * small), MK_OK);
        EXPECT(mk_region_size(r) == 2 * small, "size after grow %zu", mk_region_size(r));
        valid(r);
        mk_stats s1 = stats(r);
        EXPECT(s1.capacity == s0.capacity + small, "capacity %" PRIu64 " -> %" PRIu64, s0.capacity,
               s1.capacity);
        /* The free tail and the new space are one block. */
        EXPECT(s1.largest_free >= s0.largest_free + small - 64,
               "new space did not join the free tail: largest %" PRIu64 " -> %" PRIu64,
               s0.largest_free, s1.largest_free);
        EXPECT(s1.blocks_free == s0.blocks_free, "grow added a separate free block");
        mk_off big = xalloc_blk(r, small + small / 2, 0);
        fill(r, big, small + small / 2, 6);
        check_fill(r, a, 1000, 5);
        valid(r);
        /* Grow again: the new space must be usable. */
        EXPECT_RC(mk_region_grow(r, 4 * small), MK_OK);
        valid(r);
        mk_off b2 = xalloc_blk(r, small, 0);
        EXPECT(b2 > 2 * small - small / 2, "block not in the new space");
        check_fill(r, big, small + small / 2, 6);
        mk_region *r2;
        EXPECT_RC(mk_region_attach(mem, 4 * small, &r2), MK_OK);
        EXPECT_RC(mk_region_attach(mem, 2 * small, &r2), MK_ETRUNCATED);
        EXPECT_RC(mk_region_free(r, big), MK_OK);
        EXPECT_RC(mk_region_free(r, b2), MK_OK);
        EXPECT_RC(mk_region_free(r, a), MK_OK);
        valid(r);
        EXPECT(stats(r).blocks_free == 1, "grown region did not merge into one free block");
        free(mem);
    }
}

/* Expect validation to fail naming an invariant, at an offset in [lo, hi]. */
static void expect_invalid(const mk_region *r, const char *what, mk_off lo, mk_off hi) {
    mk_fault f = {MK_OK, NULL, 0};
    int rc = mk_region_validate(r, &f);
    if (rc == MK_OK) fail_msg("[%s] validate missed: %s", g_pol, what);
    if (f.code != rc) fail_msg("[%s] %s: fault.code %d != return %d", g_pol, what, f.code, rc);
    if (!f.invariant || !f.invariant[0])
        fail_msg("[%s] %s: validate did not name the invariant", g_pol, what);
    if (f.offset < lo || f.offset > hi)
        fail_msg("[%s] %s: fault at offset %" PRIu64 " (\"%s\"), expected in [%" PRIu64 ", %" PRIu64
                 "]",
                 g_pol, what, f.offset, f.invariant, lo, hi);
    EXPECT(mk_region_validate(r, NULL) == rc, "validate without a fault record differs");
}

static void test_validate(void **state) {
    (void)state;
    FOR_EACH_POLICY(p) {
        void *mem;
        mk_region *r = make(p, REGION_SIZE, 0, &mem);
        mk__hdr *h = mk__h(r);
        mk_off o[6];
        for (int i = 0; i < 6; i++) o[i] = xalloc_blk(r, 200, 0);
        EXPECT_RC(mk_region_free(r, o[2]), MK_OK); /* a free block between used ones */
        valid(r);
        EXPECT_RC(mk_region_validate(NULL, NULL), MK_EINVAL);

        /* 1. A smashed header tag of a used block. */
        uint64_t *w = mk__word(h, o[4] - 8), saved = *w;
        *w ^= UINT64_C(1) << 55;
        expect_invalid(r, "smashed tag of a used block", o[3] - 8, o[4]);
        *w = saved;
        valid(r);

        /* 2. A changed span, with a tag that is valid for it. */
        *w = mk__pack(h, o[4] - 8, mk__span(saved) + 16, saved & MK__F_MASK);
        expect_invalid(r, "span grown by 16", o[4] - 8, o[5] + 256);
        *w = mk__pack(h, o[4] - 8, mk__span(saved) - 16, saved & MK__F_MASK);
        expect_invalid(r, "span shrunk by 16", o[4] - 8, o[5] + 256);
        *w = saved;
        valid(r);

        /* 3. The free block's header: tag, then flag. */
        uint64_t *fw = mk__word(h, o[2] - 8), fsaved = *fw;
        *fw ^= UINT64_C(1) << 60;
        expect_invalid(r, "smashed tag of a free block", o[1], o[2] + 256);
        *fw = mk__pack(h, o[2] - 8, mk__span(fsaved), (fsaved & MK__F_MASK) & ~MK__F_FREE);
        expect_invalid(r, "free block marked used", 0, REGION_SIZE);
        *fw = fsaved;
        valid(r);
        /* A used block marked free (not in any free structure). */
        *w = mk__pack(h, o[4] - 8, mk__span(saved), (saved & MK__F_MASK) | MK__F_FREE);
        expect_invalid(r, "used block marked free", 0, REGION_SIZE);
        *w = saved;
        valid(r);

        /* 4. A broken footer (boundary-tag policies keep one). */
        if (mk__ops(h)->coalesces) {
            uint64_t *ft = mk__word(h, o[2] - 8 + mk__span(fsaved) - 8), ftsaved = *ft;
            *ft ^= 0x10;
            expect_invalid(r, "broken footer", o[1], o[3]);
            *ft = ftsaved;
            valid(r);
            /* PREV_FREE bit of the next block cleared. */
            uint64_t *nx = mk__word(h, o[3] - 8), nxsaved = *nx;
            *nx = mk__pack(h, o[3] - 8, mk__span(nxsaved), nxsaved & MK__F_MASK & ~MK__F_PREV_FREE);
            expect_invalid(r, "PREV_FREE bit cleared", o[1], o[3]);
            *nx = nxsaved;
            valid(r);
        }

        /* 5. Free-structure links: garbage in the free block's link words. */
        for (unsigned lw = MK__LINK0; lw <= MK__LINK1; lw += 8) {
            uint64_t *lk = mk__word(h, o[2] - 8 + lw), lsaved = *lk;
            *lk = lsaved ^ 0x1230;
            int rc = mk_region_validate(r, NULL);
            *lk = lsaved;
            /* A link may be unused by a policy (e.g. a singly linked list):
             * only its first link word must be checked. */
            if (lw == MK__LINK0)
                EXPECT(rc != MK_OK, "garbage in the first link word of a free block not found");
        }
        valid(r);

        /* 6. Wrong counters. */
        struct {
            const char *what;
            uint64_t *field;
        } ctr[] = {{"blocks_used", &h->c.blocks_used}, {"bytes_used", &h->c.bytes_used}};
        for (int i = 0; i < 2; i++) {
            uint64_t cs = *ctr[i].field;
            *ctr[i].field = cs + 16;
            expect_invalid(r, ctr[i].what, 0, sizeof(mk__hdr));
            *ctr[i].field = cs - 1;
            expect_invalid(r, ctr[i].what, 0, sizeof(mk__hdr));
            *ctr[i].field = cs;
        }
        {
            uint64_t ps = h->c.peak_used;
            h->c.peak_used = h->c.bytes_used - 16;
            expect_invalid(r, "peak below used", 0, sizeof(mk__hdr));
            h->c.peak_used = ps;
        }
        valid(r);

        /* 7. Header identity is checked too. */
        uint64_t m = h->magic;
        h->magic = 0;
        {
            int rc = mk_region_validate(r, NULL);
            EXPECT(rc == MK_EBADMAGIC || rc == MK_ECORRUPT, "validate with a bad magic: %d", rc);
        }
        h->magic = m;
        uint64_t de = h->data_end;
        h->data_end = REGION_SIZE * 4;
        EXPECT(mk_region_validate(r, NULL) != MK_OK, "validate with data_end past the end");
        h->data_end = de;

        /* 8. The end sentinel. */
        uint64_t *sent = mk__word(h, h->data_end), ssaved = *sent;
        *sent ^= 0x10; /* a span of 16: the sentinel's span is 0 */
        expect_invalid(r, "end sentinel", o[5], REGION_SIZE);
        *sent = ssaved;
        valid(r);

        /* 9. Random single-byte smashes in the metadata never crash validate. */
        for (int i = 0; i < 6; i++) {
            if (i == 2) continue;
            unsigned char *b = (unsigned char *)mem + o[i] - 8;
            for (int bit = 0; bit < 64; bit += 7) {
                b[bit / 8] ^= (unsigned char)(1u << (bit % 8));
                int rc = mk_region_validate(r, NULL);
                b[bit / 8] ^= (unsigned char)(1u << (bit % 8));
                /* bits 2, 3 are reserved / user flag bits */
                if (bit != 2 && bit != 3)
                    EXPECT(rc != MK_OK, "flip of bit %d of block %d's header not found", bit, i);
            }
        }
        valid(r);
        free(mem);
    }
}

static void test_journal_basics(void **state) {
    (void)state;
    FOR_EACH_POLICY(p) {
        void *mem;
        mk_region *r = make(p, REGION_SIZE, 0, &mem);
        int rb = 7;
        EXPECT_RC(mk_region_recover(r, &rb), MK_ENOTSUP);
        free(mem);
        r = make(p, REGION_SIZE, MK_REGION_JOURNAL, &mem);
        EXPECT(mk__h(r)->journal_off != 0, "journal flag without a journal");
        rb = 7;
        EXPECT_RC(mk_region_recover(r, &rb), MK_OK);
        EXPECT(rb == 0, "idle journal rolled back");
        EXPECT_RC(mk_region_recover(r, NULL), MK_OK);
        mk_off a = xalloc_blk(r, 100, 0), b;
        EXPECT_RC(mk_region_realloc(r, a, 5000, &b), MK_OK);
        EXPECT_RC(mk_region_free(r, b), MK_OK);
        EXPECT_RC(mk_region_recover(r, &rb), MK_OK);
        EXPECT(rb == 0, "completed operations rolled back");
        valid(r);
        EXPECT_RC(mk_region_recover(NULL, &rb), MK_EINVAL);
        free(mem);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_names),
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_min_size),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_create_fresh),
        cmocka_unit_test(test_attach),
        cmocka_unit_test(test_alloc_basic),
        cmocka_unit_test(test_alloc_place),
        cmocka_unit_test(test_alloc_zero),
        cmocka_unit_test(test_alloc_too_big),
        cmocka_unit_test(test_alloc_enomem),
        cmocka_unit_test(test_alloc_align),
        cmocka_unit_test(test_free_errors),
        cmocka_unit_test(test_realloc_paths),
        cmocka_unit_test(test_realloc_shrink_tail),
        cmocka_unit_test(test_walk),
        cmocka_unit_test(test_stats),
        cmocka_unit_test(test_stats_print),
        cmocka_unit_test(test_grow),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_journal_basics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
