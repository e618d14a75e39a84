/*
 * Crash at every step: the undo journal must roll back an operation cut
 * short at any of its metadata writes.
 *
 * For every policy, a journaled region is populated (live blocks holding
 * patterns, holes between them), and the image is saved. Then for each
 * operation (alloc, aligned alloc, alloc of 0, free merging with none, one
 * or both neighbours, realloc from 0, grow in place, shrink, move, region
 * grow) and for every step k = 1, 2, ... until the operation completes
 * without reaching step k:
 *
 *   - the saved image is restored;
 *   - mk__test_crash_hook longjmps out of the engine just before its k-th
 *     metadata write (as a SIGKILL there would leave it);
 *   - mk_region_recover must report a roll-back, after which the image is
 *     the saved one byte for byte in everything that matters: the header
 *     (the journal itself excepted), every block's header word, the links
 *     and footer of every free block, every live block's payload, the end
 *     sentinel and the rest of the range; validate passes, the statistics
 *     are those before, every live block still holds its pattern;
 *   - a second recover has nothing to do; recovering again after a crash in
 *     the middle of recovery (journal re-armed) gives the same image;
 *   - the region still works: the operation itself succeeds, as do an
 *     alloc and a free, and validate passes.
 *
 * A last test does the same with a real SIGKILL: a forked child runs the
 * operation on a shared mapping and kills itself at step k; the parent
 * recovers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memkit/region.h"
#include "region/region_int.h"

#define RSIZE   ((size_t)128 * 1024) /* the region; the buffer is twice that, for grow */
#define BUFSIZE (2 * RSIZE)
#define NBLK    60

static const char *g_pol = "?";
static const char *g_op = "?";
static uint64_t g_k;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        print_message("[%s] op %s, crash at step %" PRIu64 ": ", g_pol, g_op, g_k);                \
        fail_msg(__VA_ARGS__);                                                                     \
    } while (0)
#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) FAIL(__VA_ARGS__);                                                            \
    } while (0)
#define EXPECT_RC(expr, want)                                                                      \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != (want))                                                                         \
            FAIL("%s returned %d (%s), expected %d", #expr, rc_, mk_strerror(rc_), (int)(want));   \
    } while (0)

/* ---- the crash hook ----------------------------------------------------------------- */
static jmp_buf g_jb;
static uint64_t g_crash_at;
static int g_kill; /* in a forked child: SIGKILL instead of longjmp */

static void crash_hook(uint64_t step) {
    if (step != g_crash_at) return;
    if (g_kill) raise(SIGKILL);
    longjmp(g_jb, 1);
}

/* ---- populated region ---------------------------------------------------------------- */
typedef struct live {
    mk_off off;
    size_t size;
    uint64_t seed;
} live;

typedef struct world {
    mk_policy policy;
    unsigned char *mem;  /* BUFSIZE bytes, the region at its start */
    unsigned char *base; /* the saved image */
    live blk[NBLK + 8];
    size_t n;
    mk_stats st; /* stats of the saved image */
} world;

static unsigned char pat(uint64_t seed, size_t i) {
    return (unsigned char)((seed * 0x9Du) ^ (i * 13u) ^ (i >> 7));
}

static void fill(unsigned char *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) p[i] = pat(seed, i);
}

static void check_patterns(const world *w) {
    for (size_t i = 0; i < w->n; i++) {
        const unsigned char *p = w->mem + w->blk[i].off;
        for (size_t j = 0; j < w->blk[i].size; j++)
            if (p[j] != pat(w->blk[i].seed, j))
                FAIL("live block %" PRIu64 " (size %zu): byte %zu damaged", w->blk[i].off,
                     w->blk[i].size, j);
    }
}

static void validate(const mk_region *r) {
    mk_fault f = {0};
    int rc = mk_region_validate(r, &f);
    if (rc != MK_OK)
        FAIL("validate: %d (%s): \"%s\" at offset %" PRIu64, rc, mk_strerror(rc),
             f.invariant ? f.invariant : "(null)", f.offset);
}

static void populate(world *w, unsigned flags) {
    static const size_t sizes[] = {24, 200, 1000, 64, 3000, 500, 16, 130};
    mk_region *r;
    memset(w->mem, 0xC3, BUFSIZE);
    EXPECT_RC(mk_region_create(w->mem, RSIZE, w->policy, flags, &r), MK_OK);
    mk_off offs[NBLK];
    for (size_t i = 0; i < NBLK; i++) {
        size_t sz = sizes[i % 8];
        EXPECT_RC(mk_region_alloc(r, sz, 0, &offs[i]), MK_OK);
        fill(w->mem + offs[i], sz, i + 1);
    }
    /* First half: every other block free (used blocks between holes).
     * Second half: all used but one. */
    w->n = 0;
    for (size_t i = 0; i < NBLK; i++) {
        bool drop = (i < NBLK / 2 && i % 2 == 1) || i == 45;
        if (drop) {
            EXPECT_RC(mk_region_free(r, offs[i]), MK_OK);
        } else {
            w->blk[w->n].off = offs[i];
            w->blk[w->n].size = sizes[i % 8];
            w->blk[w->n].seed = i + 1;
            w->n++;
        }
    }
    validate(r);
    EXPECT_RC(mk_region_stats(r, &w->st), MK_OK);
    memcpy(w->base, w->mem, BUFSIZE);
}

/* ---- walk of the saved image ------------------------------------------------------------ */
typedef struct blist {
    size_t n;
    mk_block_info b[512];
} blist;

static int collect(const mk_block_info *bi, void *arg) {
    blist *l = arg;
    if (l->n < 512) l->b[l->n++] = *bi;
    return 0;
}

/* A used block whose previous/next neighbours are free (1), used (0) or
 * either (-1); 0 if none. */
static mk_off pick(const blist *l, int prev_free, int next_free) {
    for (size_t i = 1; i + 1 < l->n; i++) {
        if (!l->b[i].used) continue;
        if (prev_free >= 0 && (!l->b[i - 1].used) != prev_free) continue;
        if (next_free >= 0 && (!l->b[i + 1].used) != next_free) continue;
        return l->b[i].offset;
    }
    return 0;
}

static size_t live_size(const world *w, mk_off off) {
    for (size_t i = 0; i < w->n; i++)
        if (w->blk[i].off == off) return w->blk[i].size;
    return 0;
}

/* ---- operations ---------------------------------------------------------------------------- */
enum { K_ALLOC, K_ALLOC_HIGH, K_FREE, K_REALLOC, K_GROW };
typedef struct op {
    const char *name;
    int kind;
    mk_off off;
    size_t size, align;
} op;

static int run_op(mk_region *r, const op *o) {
    mk_off out = 0;
    switch (o->kind) {
    case K_ALLOC:
        return mk_region_alloc(r, o->size, o->align, &out);
    case K_ALLOC_HIGH: { /* the engine's operation, as the shared heap calls it */
        mk__hdr *h = mk__h(r);
        mk__journal_begin(h, MK__OP_ALLOC, o->size, 0, 0);
        int rc = mk__region_alloc_op(h, o->size, MK__GRAIN, MK__PLACE_HIGH, &out);
        mk__journal_end(h);
        return rc;
    }
    case K_FREE:
        return mk_region_free(r, o->off);
    case K_REALLOC:
        return mk_region_realloc(r, o->off, o->size, &out);
    default:
        return mk_region_grow(r, o->size);
    }
}

/* Compare what recovery must restore: everything but the journal and the
 * don't-care bytes inside free blocks. */
static void compare_image(const world *w) {
    const mk__hdr *h = (const mk__hdr *)(const void *)w->base;
    mk_region *rb;
    EXPECT_RC(mk_region_attach(w->base, BUFSIZE, &rb), MK_OK);
    mk_off j0 = h->journal_off,
           j1 = j0 + sizeof(mk__journal) + (size_t)MK__JOURNAL_CAP * sizeof(mk__undo);
    const unsigned char *a = w->base, *b = w->mem;
#define SAME(lo, hi, what)                                                                         \
    do {                                                                                           \
        for (size_t x_ = (lo); x_ < (hi); x_++)                                                    \
            if (a[x_] != b[x_])                                                                    \
                FAIL("after recovery, %s differs at byte %zu (0x%02x, was 0x%02x)", what, x_,      \
                     b[x_], a[x_]);                                                                \
    } while (0)
    SAME(0, j0, "the header");
    SAME(j1, h->data_start, "the header after the journal");
    blist l = {0};
    EXPECT_RC(mk_region_walk(rb, collect, &l), 0);
    bool footers = mk__ops(h)->coalesces;
    for (size_t i = 0; i < l.n; i++) {
        const mk_block_info *bi = &l.b[i];
        mk_off blk = bi->offset - 8;
        SAME(blk, blk + 8, "a block header word");
        if (bi->used) {
            SAME(bi->offset, bi->offset + bi->size, "a live block's payload");
        } else {
            size_t links = bi->span - 8 < 24 ? bi->span - 8 : 24;
            SAME(bi->offset, bi->offset + links, "a free block's links");
            if (footers) SAME(blk + bi->span - 8, blk + bi->span, "a free block's footer");
        }
    }
    SAME(h->data_end, BUFSIZE, "the end sentinel or the space after the region");
#undef SAME
}

static void stats_equal(const mk_stats *x, const mk_stats *y) {
    EXPECT(x->bytes_used == y->bytes_used && x->blocks_used == y->blocks_used &&
               x->bytes_free == y->bytes_free && x->blocks_free == y->blocks_free &&
               x->peak_used == y->peak_used && x->n_alloc == y->n_alloc && x->n_free == y->n_free &&
               x->n_realloc == y->n_realloc && x->n_failed == y->n_failed &&
               x->largest_free == y->largest_free && x->capacity == y->capacity,
           "statistics differ from before the operation: used %" PRIu64 "/%" PRIu64 " free %" PRIu64
           "/%" PRIu64 " allocs %" PRIu64 " (before: used %" PRIu64 "/%" PRIu64 " free %" PRIu64
           "/%" PRIu64 " allocs %" PRIu64 ")",
           x->bytes_used, x->blocks_used, x->bytes_free, x->blocks_free, x->n_alloc, y->bytes_used,
           y->blocks_used, y->bytes_free, y->blocks_free, y->n_alloc);
}

/* Run o, crashing at every step in turn. Returns the number of steps. */
static uint64_t crash_every_step(world *w, const op *o) {
    g_op = o->name;
    mk_region *r = (mk_region *)(void *)w->mem;
    for (volatile uint64_t k = 1;; k++) {
        g_k = k;
        EXPECT(k < 100000, "operation never completes");
        memcpy(w->mem, w->base, BUFSIZE);
        volatile int rc = 12345;
        g_crash_at = k;
        mk__test_crash_step = 0;
        mk__test_crash_hook = crash_hook;
        if (setjmp(g_jb) == 0) {
            rc = run_op(r, o);
            mk__test_crash_hook = NULL;
            EXPECT(mk__test_crash_step < k, "step %" PRIu64 " reached but no crash",
                   mk__test_crash_step);
            EXPECT_RC(rc, MK_OK);
            validate(r);
            return k - 1;
        }
        mk__test_crash_hook = NULL;
        EXPECT(mk__test_crash_step == k, "crashed at step %" PRIu64, mk__test_crash_step);

        /* Keep the crashed image: recovery is replayed from it below. */
        static unsigned char crashed[BUFSIZE];
        memcpy(crashed, w->mem, BUFSIZE);

        int rolled = -1;
        EXPECT_RC(mk_region_recover(r, &rolled), MK_OK);
        EXPECT(rolled == 1, "recover reported rolled_back = %d", rolled);
        if (o->kind == K_GROW) {
            /* Documented (mk_region_grow): the header's size is set before
             * the journaled part and stays after a roll-back; the range is
             * mapped and data_end, which bounds the blocks, is restored. */
            mk__hdr *h = mk__h(r);
            uint64_t old = ((const mk__hdr *)(const void *)w->base)->size;
            EXPECT(h->size == old || h->size == o->size, "size after an undone grow: %" PRIu64,
                   h->size);
            h->size = old;
            compare_image(w);
            h->size = o->size;
        } else {
            compare_image(w);
        }
        validate(r);
        mk_stats st;
        EXPECT_RC(mk_region_stats(r, &st), MK_OK);
        stats_equal(&st, &w->st);
        check_patterns(w);
        rolled = -1;
        EXPECT_RC(mk_region_recover(r, &rolled), MK_OK);
        EXPECT(rolled == 0, "a second recover rolled back again");
        {
            /* A crash during recovery, after it restored every word but
             * before it emptied the journal: recovering again from there
             * must give the same result. */
            unsigned char *once = malloc(BUFSIZE);
            assert_non_null(once);
            memcpy(once, w->mem, BUFSIZE);
            const mk__hdr *h = (const mk__hdr *)(const void *)crashed;
            size_t j0 = h->journal_off, jn = sizeof(mk__journal) + MK__JOURNAL_CAP * 16;
            memcpy(w->mem + j0, crashed + j0, jn);
            EXPECT_RC(mk_region_recover(r, &rolled), MK_OK);
            EXPECT(memcmp(once, w->mem, BUFSIZE) == 0, "recovering twice differs from once");
            free(once);
        }
        /* The region still works, and the operation can be redone. */
        mk__test_crash_step = 0;
        EXPECT_RC(run_op(r, o), MK_OK);
        validate(r);
        mk_off t;
        EXPECT_RC(mk_region_alloc(r, 100, 0, &t), MK_OK);
        EXPECT_RC(mk_region_free(r, t), MK_OK);
        validate(r);
    }
}

static void build_ops(const world *w, op *ops, size_t *nops) {
    mk_region *rb = (mk_region *)(void *)w->base;
    blist l = {0};
    assert_int_equal(mk_region_walk(rb, collect, &l), 0);
    size_t n = 0;
    ops[n++] = (op){"alloc 300", K_ALLOC, 0, 300, 0};
    ops[n++] = (op){"alloc 5000", K_ALLOC, 0, 5000, 0};
    ops[n++] = (op){"alloc 0", K_ALLOC, 0, 0, 0};
    ops[n++] = (op){"alloc 300 from the high end", K_ALLOC_HIGH, 0, 300, 0};
    ops[n++] = (op){"alloc 5000 from the high end", K_ALLOC_HIGH, 0, 5000, 0};
    ops[n++] = (op){"alloc 24 from the high end", K_ALLOC_HIGH, 0, 24, 0};
    ops[n++] = (op){"aligned alloc 700/1024", K_ALLOC, 0, 700, 1024};
    ops[n++] = (op){"aligned alloc 64/4096", K_ALLOC, 0, 64, 4096};
    ops[n++] = (op){"realloc from 0", K_REALLOC, 0, 2000, 0};
    mk_off both = pick(&l, 1, 1), none = pick(&l, 0, 0), next = pick(&l, 0, 1),
           prev = pick(&l, 1, 0);
    if (both) ops[n++] = (op){"free, both neighbours free", K_FREE, both, 0, 0};
    if (none) ops[n++] = (op){"free, neighbours used", K_FREE, none, 0, 0};
    if (next) ops[n++] = (op){"free, next free", K_FREE, next, 0, 0};
    if (prev) ops[n++] = (op){"free, previous free", K_FREE, prev, 0, 0};
    if (next) ops[n++] = (op){"realloc grow in place", K_REALLOC, next, live_size(w, next) + 40, 0};
    if (next) ops[n++] = (op){"realloc shrink, next free", K_REALLOC, next, 1, 0};
    if (none) {
        ops[n++] = (op){"realloc move", K_REALLOC, none, 20000, 0};
        ops[n++] = (op){"realloc shrink", K_REALLOC, none, 0, 0};
    }
    {
        /* the largest live block, shrunk to a fraction */
        size_t bi = 0;
        for (size_t i = 0; i < w->n; i++)
            if (w->blk[i].size > w->blk[bi].size) bi = i;
        ops[n++] = (op){"realloc shrink large", K_REALLOC, w->blk[bi].off, 10, 0};
    }
    if (w->policy != MK_POLICY_BUDDY) ops[n++] = (op){"grow", K_GROW, 0, RSIZE + RSIZE / 2, 0};
    *nops = n;
    if (!both || !none || !next)
        print_message("[%s] note: neighbour cases found: both %d none %d next %d prev %d\n", g_pol,
                      both != 0, none != 0, next != 0, prev != 0);
}

static void test_crash_every_step(void **state) {
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    w->policy = *(const mk_policy *)*state;
    g_pol = mk_policy_name(w->policy);
    w->mem = aligned_alloc(4096, BUFSIZE);
    w->base = aligned_alloc(4096, BUFSIZE);
    assert_non_null(w->mem);
    assert_non_null(w->base);
    populate(w, MK_REGION_JOURNAL);
    op ops[32];
    size_t nops;
    build_ops(w, ops, &nops);
    uint64_t total = 0;
    for (size_t i = 0; i < nops; i++) {
        uint64_t steps = crash_every_step(w, &ops[i]);
        /* Every operation but a no-op writes metadata. */
        EXPECT(steps > 0, "operation %s made no journaled write", ops[i].name);
        total += steps;
    }
    print_message("[%s] %zu operations, %" PRIu64 " crash points, all rolled back\n", g_pol, nops,
                  total);
    free(w->mem);
    free(w->base);
    free(w);
}

/* The same with a real SIGKILL in a child process on a shared mapping. */
static void test_sigkill_every_step(void **state) {
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    w->policy = *(const mk_policy *)*state;
    g_pol = mk_policy_name(w->policy);
    w->mem = mmap(NULL, BUFSIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(w->mem != MAP_FAILED);
    w->base = aligned_alloc(4096, BUFSIZE);
    assert_non_null(w->base);
    populate(w, MK_REGION_JOURNAL);
    op ops[32];
    size_t nops;
    build_ops(w, ops, &nops);
    mk_region *r = (mk_region *)(void *)w->mem;
    uint64_t total = 0;
    /* alloc, a free and a moving realloc are enough here: the longjmp test
     * covers every operation. */
    for (size_t i = 0; i < nops; i++) {
        if (ops[i].kind == K_GROW || (i != 0 && strcmp(ops[i].name, "free, both neighbours free") &&
                                      strcmp(ops[i].name, "realloc move")))
            continue;
        g_op = ops[i].name;
        for (uint64_t k = 1;; k++) {
            g_k = k;
            memcpy(w->mem, w->base, BUFSIZE);
            fflush(NULL);
            pid_t pid = fork();
            assert_true(pid >= 0);
            if (pid == 0) {
                g_kill = 1;
                g_crash_at = k;
                mk__test_crash_step = 0;
                mk__test_crash_hook = crash_hook;
                int rc = run_op(r, &ops[i]);
                _exit(rc == MK_OK ? 0 : 3);
            }
            int status;
            assert_int_equal(waitpid(pid, &status, 0), pid);
            if (WIFEXITED(status)) {
                EXPECT(WEXITSTATUS(status) == 0, "child failed the operation");
                validate(r);
                break;
            }
            EXPECT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child died oddly");
            total++;
            int rolled = -1;
            EXPECT_RC(mk_region_recover(r, &rolled), MK_OK);
            EXPECT(rolled == 1, "nothing rolled back");
            compare_image(w);
            validate(r);
            check_patterns(w);
            mk_stats st;
            EXPECT_RC(mk_region_stats(r, &st), MK_OK);
            stats_equal(&st, &w->st);
        }
    }
    print_message("[%s] %" PRIu64 " SIGKILLs, all rolled back\n", g_pol, total);
    munmap(w->mem, BUFSIZE);
    free(w->base);
    free(w);
}

/* Operations on a region without a journal cannot be recovered, and an
 * idle journal has nothing to undo. */
static void test_recover_idle(void **state) {
    mk_policy p = *(const mk_policy *)*state;
    g_pol = mk_policy_name(p);
    g_op = "idle";
    unsigned char *mem = aligned_alloc(4096, RSIZE);
    assert_non_null(mem);
    mk_region *r;
    EXPECT_RC(mk_region_create(mem, RSIZE, p, MK_REGION_JOURNAL, &r), MK_OK);
    mk_off a, b;
    EXPECT_RC(mk_region_alloc(r, 100, 0, &a), MK_OK);
    EXPECT_RC(mk_region_alloc(r, 100, 0, &b), MK_OK);
    EXPECT_RC(mk_region_free(r, a), MK_OK);
    unsigned char *snap = malloc(RSIZE);
    assert_non_null(snap);
    memcpy(snap, mem, RSIZE);
    int rolled = -1;
    EXPECT_RC(mk_region_recover(r, &rolled), MK_OK);
    EXPECT(rolled == 0, "recover after completed operations rolled back");
    EXPECT(memcmp(snap, mem, RSIZE) == 0, "an idle recover changed the region");
    /* A failing call (bad offset) leaves nothing to recover either. */
    EXPECT_RC(mk_region_free(r, a), MK_EDOUBLEFREE);
    mk_off big;
    EXPECT_RC(mk_region_alloc(r, RSIZE, 0, &big), MK_ETOOBIG);
    EXPECT_RC(mk_region_recover(r, &rolled), MK_OK);
    EXPECT(rolled == 0, "recover after failed calls rolled back");
    validate(r);
    /* A damaged journal is refused, not replayed. */
    mk__hdr *h = mk__h(r);
    mk__journal *j = (mk__journal *)(void *)mk__word(h, h->journal_off);
    j->op = MK__OP_FREE;
    j->count = 1;
    j->rec[0].off = offsetof(mk__hdr, magic); /* never a legitimate undo target */
    j->rec[0].old = 0;
    EXPECT_RC(mk_region_recover(r, &rolled), MK_ENOTRECOVERABLE);
    EXPECT(h->magic == MK__MAGIC, "recover wrote the magic from a damaged journal");
    j->rec[0].off = RSIZE + 4096; /* outside the region */
    EXPECT_RC(mk_region_recover(r, &rolled), MK_ENOTRECOVERABLE);
    j->count = MK__JOURNAL_CAP + 1;
    EXPECT_RC(mk_region_recover(r, &rolled), MK_ENOTRECOVERABLE);
    j->count = 1;
    j->overflow = 1;
    EXPECT_RC(mk_region_recover(r, &rolled), MK_ENOTRECOVERABLE);
    free(snap);
    free(mem);
}

static const mk_policy policies[MK_POLICY_COUNT] = {MK_POLICY_FIRST_FIT, MK_POLICY_NEXT_FIT,
                                                    MK_POLICY_BEST_FIT,  MK_POLICY_WORST_FIT,
                                                    MK_POLICY_TLSF,      MK_POLICY_BUDDY};

#define PER_POLICY(f)                                                                              \
    cmocka_unit_test_prestate(f, (void *)&policies[0]),                                            \
        cmocka_unit_test_prestate(f, (void *)&policies[1]),                                        \
        cmocka_unit_test_prestate(f, (void *)&policies[2]),                                        \
        cmocka_unit_test_prestate(f, (void *)&policies[3]),                                        \
        cmocka_unit_test_prestate(f, (void *)&policies[4]),                                        \
        cmocka_unit_test_prestate(f, (void *)&policies[5])

int main(void) {
    const struct CMUnitTest tests[] = {
        PER_POLICY(test_recover_idle),
        PER_POLICY(test_crash_every_step),
        PER_POLICY(test_sigkill_every_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
