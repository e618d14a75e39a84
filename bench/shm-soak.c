/*
 * shm-soak: the random-kill scenario of the shared heap, at scale.
 *
 * One segment; the parent fills some blocks with known data and publishes
 * their offsets as a named object; K child processes open the segment and
 * do random operations on it (owned blocks: alloc, aligned/zeroed alloc,
 * check and free, realloc; short-lived owned blocks; with --bursts, bursts
 * of plain blocks through the per-process cache, named in a ledger the
 * parent reads; named objects from a small set of names: find-or-create
 * and remove; reading the parent's blocks; validate now and then). The
 * parent SIGKILLs a random child at a random time (0..--max-delay-us), and
 * after each kill:
 *
 *   - the child died of the kill (a child that exited found damage);
 *   - validate passes (this takes the lock: repairs if the child held it);
 *   - the parent's blocks hold their data;
 *   - reclaim (frees the dead child's owned blocks and its process slot);
 *   - the dead child's burst blocks (its ledger) are freed, each with MK_OK
 *     (the reap of its cache did not free a block it held);
 *   - the attached processes are exactly alive ones, the parent among them,
 *     at most 1 + K; every owned block belongs to an attached process;
 *     without --bursts the plain blocks are exactly the parent's (children
 *     allocate no others, so one too many or too few is a lost or a wild
 *     block);
 *
 * then a new child takes the dead one's place. Every --full kills, and at
 * the end, all children are killed and the heap must be exactly the
 * parent's blocks, the meta block, its cache, the named objects and the
 * leaked plain blocks (blocks_used), with the free bytes adding up. A
 * plain block has no owner, so a kill may leak one, but only in the step
 * where the ledger and the heap disagree (a burst's allocation returning,
 * or its free starting): more new plain blocks than kills that landed
 * there is a failure; the parent then frees the leaked ones. A watchdog
 * (--watchdog seconds without a kill) reports a deadlock.
 *
 *   shm-soak [--kills N] [--seed S] [--kids K] [--policy P] [--max-delay-us U]
 *            [--progress N] [--full N] [--size-kib N] [--watchdog SEC] [--name /NAME]
 *            [--bursts 0|1]
 *
 * Prints a progress line every --progress kills and a final summary line;
 * exit status 0 when nothing failed, 1 on the first failure (with a
 * message), 2 on a usage error. The segment is removed at the end.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "memkit/shm.h"

#define MAX_KIDS 64
#define NBLOCK   64
#define NOWNED   24
#define NOBJ     12
#define BURST    16

/* ---- options and shared counters ------------------------------------------------------ */

static long o_kills = 100000;
static uint64_t o_seed = 12345;
static int o_kids = 4;
static mk_policy o_policy = MK_POLICY_TLSF;
static long o_max_delay_us = 2000;
static long o_size_kib = 1024;
static long o_progress = 1000;
static long o_full = 1000;
static unsigned o_watchdog = 60;
static int o_bursts = 0;
static char g_name[MK_SHM_NAME_MAX + 1];

/* One cache line per child slot, in an anonymous shared mapping: a child
 * counts its completed operations and validations there. */
typedef struct counter {
    _Atomic uint64_t ops, validations;
    char pad[48];
} counter;
static counter *g_count;

/* Per child slot, in another anonymous shared mapping: the plain blocks a
 * child holds in a burst through its cache (0: none), and whether it is
 * inside the one step where a kill can leak a block: between an
 * allocation's return and the ledger naming the block (ALLOCATING), or
 * between the ledger forgetting a block and its free (FREEING). After a
 * kill the parent frees the blocks the ledger names; a plain block beyond
 * the parent's and those is a leak, allowed only for a kill in that step. */
enum { STEADY, ALLOCATING, FREEING };
typedef struct ledger {
    _Atomic mk_off held[BURST];
    _Atomic int step;
} ledger;
static ledger *g_ledger;
static long g_in_step;      /* kills that landed in the step */
static long g_in_step_seen; /* g_in_step at the last full check */
static uint64_t g_leaked;   /* plain blocks the kills leaked (counted and freed at full checks) */

static pid_t g_parent;
static pid_t g_kids[MAX_KIDS];
static long g_kill_no;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void kill_all(void) {
    for (int i = 0; i < o_kids; i++)
        if (g_kids[i] > 0) {
            kill(g_kids[i], SIGKILL);
            waitpid(g_kids[i], NULL, 0);
            g_kids[i] = 0;
        }
}

/* A failure: in a child, exit 1 (the parent reports it); in the parent,
 * print, clean up and exit 1 with the summary. */
static void summary(int failures);
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "shm-soak[%ld]: FAILURE: ", (long)getpid());                               \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        if (getpid() != g_parent) _exit(1);                                                        \
        kill_all();                                                                                \
        summary(1);                                                                                \
        mk_shm_unlink(g_name, 0);                                                                  \
        exit(1);                                                                                   \
    } while (0)
#define CHECK(expr, want)                                                                          \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != (want))                                                                         \
            FAIL("%s returned %d (%s), expected %d", #expr, rc_, mk_strerror(rc_), (int)(want));   \
    } while (0)

static uint64_t rng_state;
static uint64_t rnd(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

static unsigned char pat(uint64_t seed, size_t i) {
    return (unsigned char)((seed * 0x61u) ^ (i * 11u) ^ (i >> 10) ^ 0x3C);
}
static void fill(void *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) ((unsigned char *)p)[i] = pat(seed, i);
}
static int same(const void *p, size_t n, uint64_t seed) {
    if (!p) return 0;
    for (size_t i = 0; i < n; i++)
        if (((const unsigned char *)p)[i] != pat(seed, i)) return 0;
    return 1;
}

static void valid(mk_shm *s, const char *when) {
    mk_fault f = {0};
    int rc = mk_shm_validate(s, &f);
    if (rc != MK_OK)
        FAIL("validate (%s): %d (%s): \"%s\" at %" PRIu64, when, rc, mk_strerror(rc),
             f.invariant ? f.invariant : "(null)", f.offset);
}

/* The parent's blocks, published as the object "parent". */
typedef struct pub {
    uint64_t n;
    mk_off off[NBLOCK];
    uint64_t size[NBLOCK];
} pub;

/* ---- the children ------------------------------------------------------------------- */

/* k plain blocks allocated, written, checked and freed, the youngest first:
 * the cache's pops, pushes, refills, trims and collections. */
static void burst(mk_shm *s, ledger *lg, int k) {
    size_t sz[BURST];
    for (int j = 0; j < k; j++) {
        mk_off n;
        sz[j] = 1 + (size_t)(rnd() % 1500);
        atomic_store(&lg->step, ALLOCATING);
        CHECK(mk_shm_alloc(s, sz[j], &n), MK_OK);
        atomic_store(&lg->held[j], n);
        atomic_store(&lg->step, STEADY);
        fill(mk_shm_ptr(s, n), sz[j], (uint64_t)j + 300);
    }
    for (int j = k - 1; j >= 0; j--) {
        mk_off n = atomic_load(&lg->held[j]);
        if (!same(mk_shm_ptr(s, n), sz[j], (uint64_t)j + 300)) FAIL("child: burst block damaged");
        atomic_store(&lg->step, FREEING);
        atomic_store(&lg->held[j], 0);
        CHECK(mk_shm_free(s, n), MK_OK);
        atomic_store(&lg->step, STEADY);
    }
}

static void child(int idx, uint64_t seed) {
    rng_state = seed | 1;
    alarm(0);
    signal(SIGALRM, SIG_DFL);
    counter *cnt = &g_count[idx];
    mk_shm *s = NULL;
    int rc = mk_shm_open(g_name, 0, &s);
    if (rc != MK_OK) FAIL("child open: %s", mk_strerror(rc));
    mk_shm_obj po;
    CHECK(mk_shm_obj_find(s, "parent", &po), MK_OK);
    const pub *pp = mk_shm_ptr(s, po.offset);
    mk_off own[NOWNED] = {0};
    size_t osz[NOWNED] = {0};
    for (uint64_t it = 0;; it++) {
        uint64_t r = rnd();
        int i = (int)(r % NOWNED);
        switch ((r >> 8) % 8) {
        case 0:
        case 1: /* an owned block: allocate, or check and free */
            if (own[i]) {
                if (!same(mk_shm_ptr(s, own[i]), osz[i], (uint64_t)i + 77))
                    FAIL("child: own block %d damaged", i);
                CHECK(mk_shm_free(s, own[i]), MK_OK);
                own[i] = 0;
            } else {
                osz[i] = 1 + (r >> 16) % 4000;
                size_t align = (r >> 40) % 3 ? 0 : (size_t)64 << ((r >> 44) % 4);
                unsigned fl = MK_SHM_OWNED | ((r >> 48) % 4 ? 0 : MK_SHM_ZERO);
                CHECK(mk_shm_alloc_ex(s, osz[i], align, fl, &own[i]), MK_OK);
                unsigned char *p = mk_shm_ptr(s, own[i]);
                if (!p || (align && (uintptr_t)p % align)) FAIL("child: bad block address");
                if (fl & MK_SHM_ZERO)
                    for (size_t k = 0; k < osz[i]; k++)
                        if (p[k]) FAIL("child: zeroed block not zero");
                fill(p, osz[i], (uint64_t)i + 77);
            }
            break;
        case 2: /* realloc an owned block (stays owned) */
            if (own[i]) {
                size_t ns = 1 + (r >> 16) % 6000, keep = ns < osz[i] ? ns : osz[i];
                mk_off n;
                CHECK(mk_shm_realloc(s, own[i], ns, &n), MK_OK);
                if (!same(mk_shm_ptr(s, n), keep, (uint64_t)i + 77))
                    FAIL("child: realloc lost data");
                fill(mk_shm_ptr(s, n), ns, (uint64_t)i + 77);
                own[i] = n;
                osz[i] = ns;
            }
            break;
        case 3: /* a short-lived owned block, or a burst of plain ones through the cache */
            if (!o_bursts || (r >> 32) % 2) {
                mk_off n;
                size_t sz = 1 + (r >> 16) % 200;
                CHECK(mk_shm_alloc_ex(s, sz, 0, MK_SHM_OWNED, &n), MK_OK);
                fill(mk_shm_ptr(s, n), sz, 5);
                CHECK(mk_shm_free(s, n), MK_OK);
            } else {
                burst(s, &g_ledger[idx], 1 + (int)((r >> 16) % BURST));
            }
            break;
        case 4:
        case 5: { /* named objects from a small set of names */
            char nm[16];
            snprintf(nm, sizeof nm, "rk-%d", (int)((r >> 16) % NOBJ));
            if ((r >> 32) % 2) {
                mk_off n;
                rc = mk_shm_obj_create(s, nm, 1, 64 + (r >> 16) % 64, 0, &n, NULL);
                if (rc != MK_OK && rc != MK_EEXIST) FAIL("obj create: %s", mk_strerror(rc));
            } else {
                rc = mk_shm_obj_remove(s, nm);
                if (rc != MK_OK && rc != MK_ENOENT) FAIL("obj remove: %s", mk_strerror(rc));
            }
            break;
        }
        case 6: { /* the parent's blocks are intact */
            uint64_t j = (r >> 16) % pp->n;
            if (!same(mk_shm_ptr(s, pp->off[j]), pp->size[j], j))
                FAIL("child: parent block %" PRIu64 " damaged", j);
            break;
        }
        default:
            if (it % 16 == 0) {
                valid(s, "child");
                atomic_fetch_add_explicit(&cnt->validations, 1, memory_order_relaxed);
            }
            break;
        }
        atomic_fetch_add_explicit(&cnt->ops, 1, memory_order_relaxed);
    }
}

static pid_t spawn(int idx, uint64_t seed) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) FAIL("fork: %s", strerror(errno));
    if (pid == 0) child(idx, seed);
    return pid;
}

/* ---- the parent's checks ---------------------------------------------------------- */

static uint64_t g_validations; /* the parent's */
static uint64_t g_t0;

static void summary(int failures) {
    uint64_t ops = 0, val = g_validations;
    for (int i = 0; i < o_kids; i++) {
        ops += atomic_load(&g_count[i].ops);
        val += atomic_load(&g_count[i].validations);
    }
    printf("shm-soak: kills=%ld operations=%" PRIu64 " validations=%" PRIu64
           " elapsed=%.1fs failures=%d seed=%" PRIu64 " policy=%s kids=%d in_step=%ld"
           " leaked=%" PRIu64 "\n",
           g_kill_no, ops, val, (double)(now_ns() - g_t0) / 1e9, failures, o_seed,
           mk_policy_name(o_policy), o_kids, g_in_step, g_leaked);
    fflush(stdout);
}

typedef struct census {
    uint64_t plain, owned, objects, meta, cached;
    uint32_t owner_slot[4096];
    uint32_t owner_gen[4096];
    size_t nowned;
} census;

static int census_visit(const mk_shm_block *b, void *arg) {
    census *c = arg;
    switch (b->kind) {
    case MK_SHM_BLOCK_PLAIN:
        c->plain++;
        break;
    case MK_SHM_BLOCK_OWNED:
        if (c->nowned < 4096) {
            c->owner_slot[c->nowned] = b->owner_slot;
            c->owner_gen[c->nowned] = (uint32_t)b->owner_gen;
            c->nowned++;
        }
        c->owned++;
        break;
    case MK_SHM_BLOCK_OBJECT:
        c->objects++;
        break;
    case MK_SHM_BLOCK_META: /* the segment's meta block and the cache tables */
        c->meta++;
        break;
    case MK_SHM_BLOCK_CACHED:
        c->cached++;
        break;
    default:
        break;
    }
    return 0;
}

/* A dead child's burst: free the blocks it held, and note whether its kill
 * may have leaked one. */
static void settle_ledger(mk_shm *s, int idx, const char *when) {
    ledger *lg = &g_ledger[idx];
    for (int j = 0; j < BURST; j++) {
        mk_off n = atomic_load(&lg->held[j]);
        if (!n) continue;
        int rc = mk_shm_free(s, n);
        if (rc != MK_OK)
            FAIL("%s: a dead child's burst block at %" PRIu64 ": free: %s", when, n,
                 mk_strerror(rc));
        atomic_store(&lg->held[j], 0);
    }
    if (atomic_load(&lg->step) != STEADY) g_in_step++;
    atomic_store(&lg->step, STEADY);
}

static void settle_all(mk_shm *s, const char *when) {
    for (int i = 0; i < o_kids; i++) settle_ledger(s, i, when);
}

static void check_parent(mk_shm *s, const pub *mine, const char *when) {
    for (int i = 0; i < NBLOCK; i++)
        if (!same(mk_shm_ptr(s, mine->off[i]), mine->size[i], (uint64_t)i))
            FAIL("%s: parent block %d damaged", when, i);
}

/* After a reclaim: who is attached, who owns what, which blocks exist.
 * With all_dead, returns the plain blocks the kills leaked since the last
 * full check (free_leaked frees them). */
static uint64_t check_heap(mk_shm *s, const char *when, int all_dead) {
    static census c;
    memset(&c, 0, sizeof c);
    int rc = mk_shm_walk(s, census_visit, &c);
    if (rc != 0) FAIL("%s: walk: %d (%s)", when, rc, mk_strerror(rc));
    mk_shm_proc procs[MK_SHM_MAX_PROCS];
    size_t np = 0;
    CHECK(mk_shm_procs(s, procs, MK_SHM_MAX_PROCS, &np), MK_OK);
    int self = 0;
    for (size_t i = 0; i < np; i++) {
        if (!procs[i].alive)
            FAIL("%s: dead process %" PRIu64 " still attached after reclaim", when, procs[i].pid);
        if (procs[i].self) self++;
        int known = procs[i].pid == (uint64_t)g_parent;
        for (int k = 0; k < o_kids; k++)
            known |= g_kids[k] > 0 && procs[i].pid == (uint64_t)g_kids[k];
        if (!known) FAIL("%s: unknown process %" PRIu64 " attached", when, procs[i].pid);
    }
    if (self != 1 || np > (size_t)(1 + o_kids) || (all_dead && np != 1))
        FAIL("%s: %zu processes attached (self %d)", when, np, self);
    for (size_t b = 0; b < c.nowned; b++) {
        int ok = 0;
        for (size_t i = 0; i < np; i++)
            ok |=
                procs[i].slot == c.owner_slot[b] && (uint32_t)procs[i].generation == c.owner_gen[b];
        if (!ok) FAIL("%s: owned block of slot %u not reclaimed", when, c.owner_slot[b]);
    }
    /* Plain blocks: the parent's, those leaked by kills in a burst's one
     * unguarded step, and (while children live) their bursts' blocks. */
    if (!o_bursts && c.plain != NBLOCK)
        FAIL("%s: %" PRIu64 " plain blocks, the parent has %d", when, c.plain, NBLOCK);
    if (c.plain < NBLOCK)
        FAIL("%s: %" PRIu64 " plain blocks, the parent has %d", when, c.plain, NBLOCK);
    uint64_t leaked = 0;
    if (all_dead) {
        leaked = c.plain - NBLOCK;
        if (leaked > (uint64_t)(g_in_step - g_in_step_seen))
            FAIL("%s: %" PRIu64 " plain blocks lost since the last full check, but only %ld "
                 "kills landed where a burst may lose one",
                 when, leaked, g_in_step - g_in_step_seen);
        g_in_step_seen = g_in_step;
    }
    if (c.meta < 1 || c.meta > 1 + np) /* one, plus a cache table per attached process */
        FAIL("%s: %" PRIu64 " meta blocks for %zu processes", when, c.meta, np);
    if (all_dead) { /* nobody else works: the counts can be compared */
        mk_shm_info in;
        CHECK(mk_shm_get_info(s, &in), MK_OK);
        if (c.objects != in.objects)
            FAIL("%s: %" PRIu64 " object blocks for %u objects", when, c.objects, in.objects);
        mk_stats st;
        CHECK(mk_shm_stats(s, &st), MK_OK);
        if (c.cached != in.cached_blocks)
            FAIL("%s: %" PRIu64 " cached blocks walked, %" PRIu64 " counted", when, c.cached,
                 in.cached_blocks);
        if (c.owned != 0 || st.blocks_used != c.plain + c.meta + c.objects + c.cached)
            FAIL("%s: %" PRIu64 " blocks used, expected %" PRIu64 " + %" PRIu64 " + %" PRIu64
                 " + %" PRIu64 " (owned left: %" PRIu64 ")",
                 when, st.blocks_used, c.plain, c.meta, c.objects, c.cached, c.owned);
        if (st.bytes_used + st.bytes_free > st.capacity || st.largest_free > st.bytes_free)
            FAIL("%s: byte counts do not add up", when);
    }
    return leaked;
}

/* The plain blocks that are not the parent's: n of them, the first max
 * kept in off. */
typedef struct strays {
    const pub *mine;
    mk_off *off;
    size_t n, max;
} strays;

static int stray_visit(const mk_shm_block *b, void *arg) {
    strays *st = arg;
    if (b->kind != MK_SHM_BLOCK_PLAIN) return 0;
    for (uint64_t i = 0; i < st->mine->n; i++)
        if (st->mine->off[i] == b->info.offset) return 0;
    if (st->n < st->max) st->off[st->n] = b->info.offset;
    st->n++;
    return 0;
}

/* With every child dead and reclaimed: free the leaked plain blocks that
 * check_heap counted, so that they do not pile up over a long run. They
 * must be exactly that many, and each must free cleanly: it is a block
 * some burst allocated. */
static void free_leaked(mk_shm *s, const pub *mine, uint64_t leaked, const char *when) {
    strays st = {.mine = mine, .off = malloc(sizeof(mk_off) * (leaked + 1)), .max = leaked};
    if (!st.off) FAIL("%s: out of memory", when);
    int rc = mk_shm_walk(s, stray_visit, &st);
    if (rc != 0) FAIL("%s: walk: %d (%s)", when, rc, mk_strerror(rc));
    if (st.n != leaked)
        FAIL("%s: %zu stray plain blocks, %" PRIu64 " counted leaked", when, st.n, leaked);
    for (size_t i = 0; i < st.n; i++) {
        rc = mk_shm_free(s, st.off[i]);
        if (rc != MK_OK)
            FAIL("%s: a leaked block at %" PRIu64 ": free: %s", when, st.off[i], mk_strerror(rc));
    }
    free(st.off);
    g_leaked += leaked;
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] =
        "shm-soak: FAILURE: watchdog: no kill completed in time (deadlock?)\n";
    if (write(2, msg, sizeof msg - 1) < 0) {
    }
    for (int i = 0; i < o_kids; i++)
        if (g_kids[i] > 0) kill(g_kids[i], SIGKILL);
    _exit(1);
}

static void on_term(int sig) {
    (void)sig;
    for (int i = 0; i < o_kids; i++)
        if (g_kids[i] > 0) kill(g_kids[i], SIGKILL);
    _exit(1); /* the segment is left: memkit rm NAME */
}

/* ---- main -------------------------------------------------------------------------- */

static void usage(void) {
    fprintf(stderr, "usage: shm-soak [--kills N] [--seed S] [--kids K] [--policy P] "
                    "[--max-delay-us U]\n"
                    "                [--progress N] [--full N] [--size-kib N] [--watchdog SEC] "
                    "[--name /NAME]\n"
                    "                [--bursts 0|1]\n");
    exit(2);
}

int main(int argc, char **argv) {
    g_parent = getpid();
    snprintf(g_name, sizeof g_name, "/mk-soak-%ld", (long)g_parent);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        char *end = NULL;
        errno = 0;
        long long n = strtoll(v, &end, 0);
        int num = errno == 0 && end && *end == 0 && n >= 0;
        if (!strcmp(a, "--kills") && num)
            o_kills = (long)n;
        else if (!strcmp(a, "--seed") && num)
            o_seed = (uint64_t)n;
        else if (!strcmp(a, "--kids") && num && n >= 1 && n <= MAX_KIDS)
            o_kids = (int)n;
        else if (!strcmp(a, "--max-delay-us") && num)
            o_max_delay_us = (long)n;
        else if (!strcmp(a, "--progress") && num)
            o_progress = (long)n;
        else if (!strcmp(a, "--full") && num)
            o_full = (long)n;
        else if (!strcmp(a, "--size-kib") && num && n >= 64 && n <= (64 << 10))
            o_size_kib = (long)n;
        else if (!strcmp(a, "--bursts") && num && n <= 1)
            o_bursts = (int)n;
        else if (!strcmp(a, "--watchdog") && num && n >= 1)
            o_watchdog = (unsigned)n;
        else if (!strcmp(a, "--policy")) {
            if (mk_policy_from_name(v, &o_policy) != MK_OK) usage();
        } else if (!strcmp(a, "--name") && v[0] == '/' && strlen(v) < sizeof g_name)
            snprintf(g_name, sizeof g_name, "%s", v);
        else
            usage();
    }
    g_count = mmap(NULL, sizeof(counter) * MAX_KIDS, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    g_ledger = mmap(NULL, sizeof(ledger) * MAX_KIDS, PROT_READ | PROT_WRITE,
                    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_count == MAP_FAILED || g_ledger == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    signal(SIGALRM, on_alarm);
    signal(SIGINT, on_term);
    signal(SIGTERM, on_term);
    g_t0 = now_ns();
    rng_state = o_seed | 1;

    mk_shm_unlink(g_name, 0);
    int buddy = o_policy == MK_POLICY_BUDDY;
    size_t size = (size_t)o_size_kib << 10;
    mk_shm_config cfg = {.size = buddy && size < (16u << 20) ? 16u << 20 : size,
                         .max_size = buddy                ? 0
                                     : size > (64u << 20) ? size
                                                          : 64u << 20,
                         .policy = o_policy};
    mk_shm *s = NULL;
    CHECK(mk_shm_create(g_name, &cfg, &s), MK_OK);
    pub mine = {.n = NBLOCK};
    for (int i = 0; i < NBLOCK; i++) {
        mine.size[i] = 1 + rnd() % 2000;
        CHECK(mk_shm_alloc(s, mine.size[i], &mine.off[i]), MK_OK);
        fill(mk_shm_ptr(s, mine.off[i]), mine.size[i], (uint64_t)i);
    }
    mk_off po;
    CHECK(mk_shm_obj_create(s, "parent", 1, sizeof(pub), 0, &po, NULL), MK_OK);
    memcpy(mk_shm_ptr(s, po), &mine, sizeof mine);
    printf("shm-soak: segment %s, policy %s, %d children, %ld kills, seed %" PRIu64 "\n", g_name,
           mk_policy_name(o_policy), o_kids, o_kills, o_seed);
    fflush(stdout);

    for (int i = 0; i < o_kids; i++) g_kids[i] = spawn(i, rnd());
    alarm(o_watchdog);
    uint64_t last = now_ns();
    long last_kills = 0;
    for (g_kill_no = 0; g_kill_no < o_kills;) {
        if (o_max_delay_us > 0) {
            long us = (long)(rnd() % (uint64_t)(o_max_delay_us + 1));
            struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
            nanosleep(&ts, NULL);
        }
        int v = (int)(rnd() % (uint64_t)o_kids);
        kill(g_kids[v], SIGKILL);
        int st = 0;
        if (waitpid(g_kids[v], &st, 0) != g_kids[v]) FAIL("waitpid: %s", strerror(errno));
        g_kids[v] = 0;
        g_kill_no++;
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
            FAIL("kill %ld: the child ended by itself (status 0x%x): it found damage", g_kill_no,
                 st);
        char when[96];
        snprintf(when, sizeof when, "after kill %ld (seed %" PRIu64 ")", g_kill_no, o_seed);
        valid(s, when); /* takes the lock: repairs if the child died holding it */
        g_validations++;
        check_parent(s, &mine, when);
        int full = o_full > 0 && g_kill_no % o_full == 0;
        if (full) kill_all();
        CHECK(mk_shm_reclaim(s, NULL, NULL), MK_OK);
        if (full)
            settle_all(s, when);
        else
            settle_ledger(s, v, when);
        uint64_t leaked = check_heap(s, when, full);
        if (full) {
            free_leaked(s, &mine, leaked, when);
            valid(s, when);
            g_validations++;
            for (int i = 0; i < o_kids; i++) g_kids[i] = spawn(i, rnd());
        } else {
            g_kids[v] = spawn(v, rnd());
        }
        alarm(o_watchdog);
        if (o_progress > 0 && g_kill_no % o_progress == 0) {
            uint64_t t = now_ns();
            uint64_t ops = 0;
            for (int i = 0; i < o_kids; i++) ops += atomic_load(&g_count[i].ops);
            mk_shm_info in;
            CHECK(mk_shm_get_info(s, &in), MK_OK);
            printf("  %ld/%ld kills, %" PRIu64 " ops, %.1f s, %.0f kills/s, size %" PRIu64
                   " KiB, %u objects\n",
                   g_kill_no, o_kills, ops, (double)(t - g_t0) / 1e9,
                   (double)(g_kill_no - last_kills) * 1e9 / (double)(t - last), in.size / 1024,
                   in.objects);
            fflush(stdout);
            last = t;
            last_kills = g_kill_no;
        }
    }
    kill_all();
    CHECK(mk_shm_reclaim(s, NULL, NULL), MK_OK);
    settle_all(s, "at the end");
    valid(s, "at the end");
    g_validations++;
    check_parent(s, &mine, "at the end");
    free_leaked(s, &mine, check_heap(s, "at the end", 1), "at the end");
    alarm(0);
    summary(0);
    CHECK(mk_shm_close(s), MK_OK);
    CHECK(mk_shm_unlink(g_name, 0), MK_OK);
    return 0;
}
