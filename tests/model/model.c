/*
 * Randomized model test of the block engine, one fit policy per run.
 *
 *   model --policy NAME --ops N --seed S [--validate-every K] [--size BYTES]
 *         [--journal] [--quick]
 *
 * Runs N random operations (alloc, aligned alloc, free, realloc) on a region
 * and checks every result against a reference model: an array of the live
 * blocks (offset, requested size, usable size, pattern seed) and a shadow map
 * that records, for every 8-byte unit of the region, which live block owns
 * it. What must hold:
 *
 *  - every returned offset is aligned (16, or the requested alignment) as an
 *    absolute address, and usable_size >= the requested size;
 *  - a new block's usable range touches no live block's usable range (the
 *    shadow map), and lies inside the region;
 *  - the whole usable range of every live block keeps the pattern written at
 *    allocation (checked before free/realloc and for all blocks at each
 *    validation), so no metadata write lands in a payload;
 *  - realloc keeps the first min(old, new) requested bytes;
 *  - MK_ENOMEM only when the largest free block could not plausibly hold
 *    the request; the region is never "full" for a small block while a
 *    large free block exists;
 *  - every K operations: mk_region_validate passes; the walk visits exactly
 *    the model's live blocks (same offsets and usable sizes) plus free blocks
 *    that overlap no live block, in increasing address order; the statistics
 *    (blocks and bytes used, peak, counters, free bytes, largest free block,
 *    fragmentation) agree with the model and the walk.
 *
 * Everything random comes from a splitmix64 generator seeded from the
 * command line, so a failure replays with the same arguments. On failure the
 * program prints the operation number and what broke, and exits 1.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memkit/region.h"

/* ---- deterministic randomness ---------------------------------------------- */
static uint64_t rng_state;

static uint64_t rng_next(void) {
    uint64_t z = (rng_state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Uniform in [0, n), n > 0 (the bias of % is irrelevant here). */
static uint64_t rng_below(uint64_t n) { return rng_next() % n; }

/* Log-uniform in [lo, hi]: small sizes as often as large ones per octave. */
static size_t rng_log_size(size_t lo, size_t hi) {
    int lo_bits = 0, hi_bits = 0;
    while (((size_t)1 << (lo_bits + 1)) <= lo) lo_bits++;
    while (((size_t)1 << (hi_bits + 1)) <= hi) hi_bits++;
    int bits = lo_bits + (int)rng_below((uint64_t)(hi_bits - lo_bits + 1));
    size_t base = (size_t)1 << bits;
    size_t s = base + (size_t)rng_below(base); /* [2^bits, 2^(bits+1)) */
    if (s < lo) s = lo;
    if (s > hi) s = hi;
    return s;
}

/* ---- failure reporting ------------------------------------------------------- */
static const char *g_policy_name = "?";
static uint64_t g_op; /* number of the operation being run */

static void fail(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "model[%s]: FAILED at op %" PRIu64 ": ", g_policy_name, g_op);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fprintf(stderr, "model: 0 passed, 1 failed\n");
    fflush(stdout);
    exit(1);
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) fail(__VA_ARGS__);                                                            \
    } while (0)

/* ---- the reference model ----------------------------------------------------- */
typedef struct live_block {
    mk_off off;
    size_t req;     /* requested size */
    size_t usable;  /* what usable_size reported at allocation */
    uint64_t pseed; /* pattern seed (unique per allocation) */
} live_block;

static live_block *g_live;
static size_t g_nlive, g_cap_live;
static uint32_t *g_shadow; /* per 8-byte unit of the region: live index + 1, or 0 */
static size_t g_units;

static mk_region *g_r;
static unsigned char *g_base;
static size_t g_size;
static uint64_t g_next_seed = 1;

/* Counters the engine must agree with. */
static uint64_t m_alloc, m_free, m_realloc, m_alloc_failed, m_realloc_failed;
static uint64_t m_bytes_used, m_peak;

/* The byte at index i of a block with pattern seed s. */
static inline unsigned char pat(uint64_t s, size_t i) {
    uint64_t x = s + (uint64_t)i * UINT64_C(0x9E3779B97F4A7C15);
    return (unsigned char)(x >> 56 ^ x >> 24 ^ i);
}

static void fill(unsigned char *p, size_t n, uint64_t s) {
    for (size_t i = 0; i < n; i++) p[i] = pat(s, i);
}

static void verify(const live_block *b, size_t n, const char *when) {
    const unsigned char *p = g_base + b->off;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != pat(b->pseed, i))
            fail("%s: block at offset %" PRIu64 " (requested %zu, usable %zu): byte %zu is 0x%02x, "
                 "expected 0x%02x (contents damaged)",
                 when, b->off, b->req, b->usable, i, p[i], pat(b->pseed, i));
    }
}

static size_t unit_lo(mk_off off) { return (size_t)(off / 8); }
static size_t unit_hi(mk_off off, size_t n) { return (size_t)((off + n + 7) / 8); }

/* Claim the usable range of live block idx in the shadow map; fail on overlap. */
static void shadow_claim(size_t idx) {
    const live_block *b = &g_live[idx];
    size_t lo = unit_lo(b->off), hi = unit_hi(b->off, b->usable);
    CHECK(b->off >= 8 && hi <= g_units,
          "block at offset %" PRIu64 " with usable size %zu is outside the region of %zu bytes",
          b->off, b->usable, g_size);
    for (size_t u = lo; u < hi; u++) {
        if (g_shadow[u]) {
            const live_block *o = &g_live[g_shadow[u] - 1];
            fail("new block [%" PRIu64 ", +%zu) overlaps live block [%" PRIu64 ", +%zu)", b->off,
                 b->usable, o->off, o->usable);
        }
        g_shadow[u] = (uint32_t)(idx + 1);
    }
}

static void shadow_set(size_t idx, uint32_t v) {
    const live_block *b = &g_live[idx];
    size_t lo = unit_lo(b->off), hi = unit_hi(b->off, b->usable);
    for (size_t u = lo; u < hi; u++) g_shadow[u] = v;
}

static void live_push(mk_off off, size_t req, size_t usable) {
    if (g_nlive == g_cap_live) {
        g_cap_live = g_cap_live ? g_cap_live * 2 : 1024;
        g_live = realloc(g_live, g_cap_live * sizeof *g_live);
        CHECK(g_live != NULL, "out of host memory");
    }
    live_block *b = &g_live[g_nlive];
    b->off = off;
    b->req = req;
    b->usable = usable;
    b->pseed = g_next_seed++;
    shadow_claim(g_nlive);
    g_nlive++;
    m_bytes_used += usable + 8; /* a used block's span is usable + 8 (region_int.h) */
    if (m_bytes_used > m_peak) m_peak = m_bytes_used;
    fill(g_base + off, usable, b->pseed);
}

static void live_remove(size_t idx) {
    shadow_set(idx, 0);
    m_bytes_used -= g_live[idx].usable + 8;
    g_nlive--;
    if (idx != g_nlive) {
        g_live[idx] = g_live[g_nlive];
        shadow_set(idx, (uint32_t)(idx + 1));
    }
}

static size_t checked_usable(mk_off off, size_t req, const char *what) {
    size_t usable = 0;
    int rc = mk_region_usable_size(g_r, off, &usable);
    CHECK(rc == MK_OK, "%s: usable_size(%" PRIu64 ") returned %d (%s)", what, off, rc,
          mk_strerror(rc));
    CHECK(usable >= req && usable >= 1, "%s: usable_size %zu < requested %zu", what, usable, req);
    return usable;
}

static uint64_t pow2_ceil(uint64_t x) {
    uint64_t p = 1;
    while (p < x) p <<= 1;
    return p;
}

/* An MK_ENOMEM for (size, align) must be plausible: no free block is so much
 * larger than the request that every policy would have used it. The bound is
 * loose on purpose (buddy rounds to a power of two, TLSF to a size class,
 * alignment can waste up to align bytes). */
static void check_enomem(size_t size, size_t align, const char *what) {
    mk_stats st;
    int rc = mk_region_stats(g_r, &st);
    CHECK(rc == MK_OK, "stats returned %d", rc);
    uint64_t need = pow2_ceil((uint64_t)size + 16) + (align > 16 ? align : 0) + 64;
    CHECK(st.largest_free < need,
          "%s(size %zu, align %zu) returned MK_ENOMEM but the largest free block has %" PRIu64
          " usable bytes",
          what, size, align, st.largest_free);
}

/* ---- operations ------------------------------------------------------------------ */
static size_t random_size(void) {
    uint64_t r = rng_below(1000);
    if (r < 10) return 0;                                /* 1%: size 0 */
    if (r < 12) return rng_log_size(16384, g_size / 64); /* 0.2%: large */
    return rng_log_size(1, 4096);
}

static void op_alloc(bool aligned) {
    size_t size = random_size();
    size_t align = 0;
    if (aligned)
        align = (size_t)16 << rng_below(9); /* 16 .. 4096 */
    else if (rng_below(8) == 0)
        align = 16; /* the default, spelled out */
    mk_off off = 0;
    int rc = mk_region_alloc(g_r, size, align, &off);
    if (rc == MK_ENOMEM) {
        m_alloc_failed++;
        check_enomem(size, align, "alloc");
        return;
    }
    CHECK(rc == MK_OK, "alloc(%zu, align %zu) returned %d (%s)", size, align, rc, mk_strerror(rc));
    size_t a = align ? align : MK_REGION_DEFAULT_ALIGN;
    CHECK(((uintptr_t)(g_base + off) & (a - 1)) == 0,
          "alloc(%zu, align %zu) returned offset %" PRIu64 " whose address is not aligned", size,
          align, off);
    m_alloc++;
    live_push(off, size, checked_usable(off, size, "alloc"));
}

static void op_free(void) {
    size_t idx = (size_t)rng_below(g_nlive);
    live_block *b = &g_live[idx];
    verify(b, b->usable, "before free");
    int rc = mk_region_free(g_r, b->off);
    CHECK(rc == MK_OK, "free(%" PRIu64 ") of a live block returned %d (%s)", b->off, rc,
          mk_strerror(rc));
    m_free++;
    live_remove(idx);
}

static void op_realloc(void) {
    size_t idx = (size_t)rng_below(g_nlive);
    live_block old = g_live[idx];
    size_t size;
    uint64_t r = rng_below(10);
    if (r < 3)
        size = old.req + 1 + (size_t)rng_below(old.req + 64); /* grow */
    else if (r < 6)
        size = old.req ? (size_t)rng_below(old.req + 1) : 0; /* shrink */
    else
        size = random_size();
    verify(&old, old.usable, "before realloc");
    mk_off noff = 0;
    int rc = mk_region_realloc(g_r, old.off, size, &noff);
    if (rc == MK_ENOMEM) {
        m_realloc_failed++;
        check_enomem(size, 0, "realloc");
        /* The block must be untouched and still live. */
        verify(&old, old.usable, "after failed realloc");
        size_t u = checked_usable(old.off, old.req, "after failed realloc");
        CHECK(u == old.usable, "failed realloc changed the usable size %zu -> %zu", old.usable, u);
        return;
    }
    CHECK(rc == MK_OK, "realloc(%" PRIu64 ", %zu) returned %d (%s)", old.off, size, rc,
          mk_strerror(rc));
    CHECK(((uintptr_t)(g_base + noff) & 15) == 0,
          "realloc returned offset %" PRIu64 " whose address is not 16-aligned", noff);
    m_realloc++;
    size_t keep = old.req < size ? old.req : size;
    live_block kept = old;
    kept.off = noff;
    kept.req = size;
    verify(&kept, keep, "after realloc (kept prefix)");
    /* Replace the model entry: free the old claim, claim the new range. */
    live_remove(idx);
    size_t usable = checked_usable(noff, size, "realloc");
    live_push(noff, size, usable); /* checks overlap, refills with a new pattern */
}

/* ---- full validation -------------------------------------------------------------- */
typedef struct walk_acc {
    mk_off last_end;
    uint64_t n_used, n_free, used_span, free_span, largest_free, all_span;
    bool first;
} walk_acc;

static int visit(const mk_block_info *bi, void *arg) {
    walk_acc *a = arg;
    CHECK(bi->offset >= 16 && bi->offset + bi->size <= g_size,
          "walk: block at offset %" PRIu64 " size %" PRIu64 " is outside the region", bi->offset,
          bi->size);
    CHECK(bi->span >= bi->size, "walk: block at %" PRIu64 " has span %" PRIu64 " < size %" PRIu64,
          bi->offset, bi->span, bi->size);
    CHECK(a->first || bi->offset >= a->last_end,
          "walk: block at %" PRIu64 " starts before the previous one ends (%" PRIu64 ")",
          bi->offset, a->last_end);
    a->first = false;
    a->last_end = bi->offset + bi->size;
    a->all_span += bi->span;
    if (bi->used) {
        uint32_t s = g_shadow[bi->offset / 8];
        CHECK(s != 0 && g_live[s - 1].off == bi->offset,
              "walk: used block at %" PRIu64 " is not a live block of the model", bi->offset);
        CHECK(bi->size == g_live[s - 1].usable,
              "walk: used block at %" PRIu64 " reports size %" PRIu64 ", usable_size said %zu",
              bi->offset, bi->size, g_live[s - 1].usable);
        CHECK(bi->span == bi->size + 8,
              "walk: used block at %" PRIu64 " has span %" PRIu64 " != size + 8", bi->offset,
              bi->span);
        a->n_used++;
        a->used_span += bi->span;
    } else {
        size_t lo = unit_lo(bi->offset), hi = unit_hi(bi->offset, bi->size);
        for (size_t u = lo; u < hi; u++)
            CHECK(g_shadow[u] == 0,
                  "walk: free block [%" PRIu64 ", +%" PRIu64 ") overlaps live block at %" PRIu64,
                  bi->offset, bi->size, g_live[g_shadow[u] - 1].off);
        a->n_free++;
        a->free_span += bi->span;
        if (bi->size > a->largest_free) a->largest_free = bi->size;
    }
    return 0;
}

static void full_check(void) {
    mk_fault f = {0};
    int rc = mk_region_validate(g_r, &f);
    CHECK(rc == MK_OK, "validate returned %d (%s): invariant \"%s\" at offset %" PRIu64, rc,
          mk_strerror(rc), f.invariant ? f.invariant : "(none)", f.offset);
    CHECK(f.code == MK_OK, "validate passed but fault.code is %d", f.code);

    for (size_t i = 0; i < g_nlive; i++) verify(&g_live[i], g_live[i].usable, "validation");

    walk_acc a = {.first = true};
    rc = mk_region_walk(g_r, visit, &a);
    CHECK(rc == 0, "walk returned %d", rc);
    CHECK(a.n_used == g_nlive, "walk saw %" PRIu64 " used blocks, the model has %zu", a.n_used,
          g_nlive);

    mk_stats st;
    rc = mk_region_stats(g_r, &st);
    CHECK(rc == MK_OK, "stats returned %d", rc);
    CHECK(st.blocks_used == g_nlive, "stats.blocks_used %" PRIu64 ", model %zu", st.blocks_used,
          g_nlive);
    CHECK(st.bytes_used == m_bytes_used && st.bytes_used == a.used_span,
          "stats.bytes_used %" PRIu64 ", model %" PRIu64 ", walk %" PRIu64, st.bytes_used,
          m_bytes_used, a.used_span);
    CHECK(st.peak_used == m_peak, "stats.peak_used %" PRIu64 ", model %" PRIu64, st.peak_used,
          m_peak);
    CHECK(st.blocks_free == a.n_free, "stats.blocks_free %" PRIu64 ", walk %" PRIu64,
          st.blocks_free, a.n_free);
    CHECK(st.bytes_free == a.free_span, "stats.bytes_free %" PRIu64 ", walk free spans %" PRIu64,
          st.bytes_free, a.free_span);
    CHECK(st.largest_free == a.largest_free, "stats.largest_free %" PRIu64 ", walk %" PRIu64,
          st.largest_free, a.largest_free);
    CHECK(st.bytes_used + st.bytes_free <= st.capacity && st.capacity < g_size,
          "stats: used %" PRIu64 " + free %" PRIu64 " exceeds capacity %" PRIu64
          " (region %zu bytes)",
          st.bytes_used, st.bytes_free, st.capacity, g_size);
    CHECK(st.n_alloc == m_alloc && st.n_free == m_free && st.n_realloc == m_realloc,
          "stats counters alloc/free/realloc %" PRIu64 "/%" PRIu64 "/%" PRIu64 ", model %" PRIu64
          "/%" PRIu64 "/%" PRIu64,
          st.n_alloc, st.n_free, st.n_realloc, m_alloc, m_free, m_realloc);
    CHECK(st.n_failed >= m_alloc_failed && st.n_failed <= m_alloc_failed + m_realloc_failed,
          "stats.n_failed %" PRIu64 ", model: %" PRIu64 " failed allocs, %" PRIu64
          " failed reallocs",
          st.n_failed, m_alloc_failed, m_realloc_failed);
    double frag = st.bytes_free ? 1.0 - (double)st.largest_free / (double)st.bytes_free : 0.0;
    CHECK(st.fragmentation >= frag - 1e-9 && st.fragmentation <= frag + 1e-9,
          "stats.fragmentation %.6f, expected 1 - largest_free/bytes_free = %.6f", st.fragmentation,
          frag);
}

/* ---- main -------------------------------------------------------------------------- */
static void usage(void) {
    fprintf(stderr, "usage: model --policy first|next|best|worst|tlsf|buddy --ops N --seed S "
                    "[--validate-every K] [--size BYTES] [--journal] [--quick]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *policy_name = NULL;
    uint64_t ops = 1000000, seed = 0, every = 4096;
    size_t size = (size_t)16 << 20;
    bool have_seed = false;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--journal")) {
            flags |= MK_REGION_JOURNAL;
            continue;
        }
        if (!strcmp(argv[i], "--quick")) {
            flags |= MK_REGION_QUICK;
            continue;
        }
        if (i + 1 >= argc) usage();
        const char *k = argv[i], *v = argv[++i];
        if (!strcmp(k, "--policy"))
            policy_name = v;
        else if (!strcmp(k, "--ops"))
            ops = strtoull(v, NULL, 0);
        else if (!strcmp(k, "--seed"))
            seed = strtoull(v, NULL, 0), have_seed = true;
        else if (!strcmp(k, "--validate-every"))
            every = strtoull(v, NULL, 0);
        else if (!strcmp(k, "--size"))
            size = (size_t)strtoull(v, NULL, 0);
        else
            usage();
    }
    if (!policy_name || !have_seed || every == 0 || size < 65536 || size % 4096) usage();
    mk_policy policy;
    if (mk_policy_from_name(policy_name, &policy) != MK_OK) {
        fprintf(stderr, "model: unknown policy '%s'\n", policy_name);
        return 2;
    }
    g_policy_name = policy_name;
    rng_state = seed;

    g_size = size;
    g_base = aligned_alloc(4096, size);
    g_units = size / 8;
    g_shadow = calloc(g_units, sizeof *g_shadow);
    CHECK(g_base && g_shadow, "out of host memory");
    memset(g_base, 0xA5, size);
    int rc = mk_region_create(g_base, size, policy, flags, &g_r);
    CHECK(rc == MK_OK, "create(%zu bytes) returned %d (%s)", size, rc, mk_strerror(rc));
    CHECK((void *)g_r == (void *)g_base, "the handle is not the base");
    CHECK(mk_region_policy(g_r) == policy && mk_region_size(g_r) == size,
          "policy/size of the new region do not match");
    full_check();

    /* The number of live blocks drifts around a target that moves between a
     * few hundred and a few thousand, so the region sees both growth phases
     * (splitting) and shrink phases (coalescing). */
    uint64_t target = 2000;
    uint64_t checks = 0;
    for (g_op = 1; g_op <= ops; g_op++) {
        if (g_op % 100000 == 0) target = 300 + rng_below(3700);
        uint64_t r = rng_below(100);
        uint64_t p_alloc = g_nlive < target ? 60 : 35;
        if (g_nlive == 0 || r < p_alloc)
            op_alloc(false);
        else if (r < p_alloc + 5)
            op_alloc(true);
        else if (r < p_alloc + 25)
            op_realloc();
        else
            op_free();
        if (g_op % every == 0) {
            full_check();
            checks++;
        }
    }
    full_check();
    checks++;
    if (flags & MK_REGION_JOURNAL) {
        int rolled = -1;
        rc = mk_region_recover(g_r, &rolled);
        CHECK(rc == MK_OK && rolled == 0, "recover after completed operations: %d, rolled %d", rc,
              rolled);
    }

    /* Free everything: the region must return to one free block (or, for
     * buddy, to blocks that all merge back) with nothing used. */
    while (g_nlive) op_free();
    full_check();
    mk_stats st;
    mk_region_stats(g_r, &st);
    CHECK(st.bytes_used == 0 && st.blocks_used == 0, "region not empty after freeing everything");
    mk_stats st0;
    {
        /* A fresh region of the same size is the reference for "all merged". */
        unsigned char *fresh = aligned_alloc(4096, size);
        mk_region *r2;
        CHECK(fresh && mk_region_create(fresh, size, policy, flags, &r2) == MK_OK, "fresh region");
        mk_region_stats(r2, &st0);
        free(fresh);
    }
    if (flags & MK_REGION_QUICK) {
        /* Parked blocks stay parked until an allocation would fail; then
         * they merge back, so the whole space is available again. */
        uint64_t want = st0.largest_free;
        if (policy == MK_POLICY_TLSF) want -= want / 16; /* size-class rounding */
        mk_off big = 0;
        rc = mk_region_alloc(g_r, (size_t)want, 0, &big);
        CHECK(rc == MK_OK,
              "after freeing everything, alloc(%" PRIu64 ") returned %d (%s): parked blocks were "
              "not merged back",
              want, rc, mk_strerror(rc));
        CHECK(mk_region_free(g_r, big) == MK_OK, "free of the big block");
        CHECK(mk_region_validate(g_r, NULL) == MK_OK, "validate after the big block");
    } else {
        CHECK(st.blocks_free == st0.blocks_free && st.largest_free == st0.largest_free,
              "after freeing everything: %" PRIu64 " free blocks, largest %" PRIu64
              "; a fresh region has %" PRIu64 ", largest %" PRIu64 " (blocks did not coalesce)",
              st.blocks_free, st.largest_free, st0.blocks_free, st0.largest_free);
    }

    printf("model[%s]: seed %" PRIu64 ", %" PRIu64 " ops (%" PRIu64 " allocs, %" PRIu64
           " frees, %" PRIu64 " reallocs, %" PRIu64 "+%" PRIu64 " ENOMEM), %" PRIu64
           " full checks, peak %" PRIu64 " bytes\n",
           policy_name, seed, ops, m_alloc, m_free, m_realloc, m_alloc_failed, m_realloc_failed,
           checks, m_peak);
    printf("model: %" PRIu64 " passed, 0 failed\n", checks);
    free(g_live);
    free(g_shadow);
    free(g_base);
    return 0;
}
