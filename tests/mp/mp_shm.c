/*
 * Several processes on one segment (forked children, each opening the
 * segment itself and mapping it at an address of its own).
 *
 *   mp_shm workers [SEED]   N children allocate blocks with patterns, publish
 *                           them as named objects, check each other's data,
 *                           free, validate.
 *   mp_shm growth [SEED]    children allocate far past the initial size at
 *                           once; the segment grows while all are attached;
 *                           pointers taken before the growth stay valid.
 *   mp_shm crash [POLICY]   for every crash step k of alloc (plain, owned,
 *                           growing, aligned), free, realloc (in place and
 *                           moving), object create/remove, attach, detach: a
 *                           child is SIGKILLed at step k; the parent then takes
 *                           the lock (repair), validates, checks its own blocks,
 *                           allocates and frees, reclaims. The per-process
 *                           cache's steps too (push, pop, refill, trim, in a
 *                           segment large enough to have caches): there the
 *                           child reports every block it holds, and after the
 *                           reclaim the heap holds exactly the parent's bytes
 *                           plus the child's live blocks: none lost.
 *   mp_shm randomkill [SEED] [KILLS]  children doing random operations are
 *                           SIGKILLed at random times; after each kill the
 *                           parent validates and checks its blocks. The
 *                           children's bursts of up to 24 plain blocks run
 *                           through their caches (16 KiB budgets: in 300
 *                           kills, 126,000 refills and 12,500 collections),
 *                           so kills land there too; every other child
 *                           runs them in two threads on one handle (a
 *                           thread handle, a cache and a slot each);
 *                           the blocks of a burst a kill cuts short are
 *                           lost by design (plain, no owner), so no byte
 *                           count is checked here: the crash test above
 *                           counts them at every step of every cache path.
 *
 * Every run is replayable from its seed (printed). alarm() is the watchdog
 * against deadlock. Exit status 0 on success; a message on stderr otherwise.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "memkit/shm.h"
#include "region/region_int.h"

#define KB ((size_t)1024)
#define MB (KB * KB)

static char g_name[128];
static pid_t g_parent;

#define DIE(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, "mp_shm[%ld] %s:%d: ", (long)getpid(), __FILE__, __LINE__);                \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        if (getpid() == g_parent) mk_shm_unlink(g_name, 0);                                        \
        _exit(1);                                                                                  \
    } while (0)
#define CHECK(expr, want)                                                                          \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != (want))                                                                         \
            DIE("%s returned %d (%s), expected %d", #expr, rc_, mk_strerror(rc_), (int)(want));    \
    } while (0)

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static _Thread_local uint64_t rng_state; /* a random child's threads draw apart */
static uint64_t rnd(void) {              /* xorshift64* */
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
    for (size_t i = 0; i < n; i++)
        if (((const unsigned char *)p)[i] != pat(seed, i)) return 0;
    return 1;
}

static void valid(mk_shm *s, const char *when) {
    mk_fault f = {0};
    int rc = mk_shm_validate(s, &f);
    if (rc != MK_OK)
        DIE("validate (%s): %d (%s): \"%s\" at %" PRIu64, when, rc, mk_strerror(rc),
            f.invariant ? f.invariant : "(null)", f.offset);
}

static mk_shm *make(size_t size, size_t max, mk_policy pol) {
    mk_shm_unlink(g_name, 0);
    mk_shm_config cfg = {.size = size, .max_size = max, .policy = pol};
    mk_shm *s = NULL;
    CHECK(mk_shm_create(g_name, &cfg, &s), MK_OK);
    return s;
}

static mk_shm *child_open(void) {
    mk_shm *s = NULL;
    int rc = mk_shm_open(g_name, 0, &s);
    if (rc != MK_OK) DIE("child open: %s", mk_strerror(rc));
    return s;
}

static void wait_ok(pid_t pid, const char *what) {
    int st = 0;
    if (waitpid(pid, &st, 0) != pid) DIE("waitpid %s", what);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) DIE("%s failed (status 0x%x)", what, st);
}

/* Wait until a named object exists (another process publishes it). */
static mk_off await_obj(mk_shm *s, const char *name) {
    mk_shm_obj o;
    for (long i = 0; i < 20000000; i++) {
        int rc = mk_shm_obj_find(s, name, &o);
        if (rc == MK_OK) return o.offset;
        if (rc != MK_ENOENT) DIE("find %s: %s", name, mk_strerror(rc));
        usleep(100);
    }
    DIE("%s never appeared", name);
}

/* ---- workers ---------------------------------------------------------------------- */

#define NWORK  6
#define NBLOCK 64

typedef struct pub {
    uint64_t n;
    mk_off off[NBLOCK];
    uint64_t size[NBLOCK];
} pub;

static void worker(int id, uint64_t seed) {
    rng_state = seed * 0x9E3779B97F4A7C15u + (uint64_t)id + 1;
    mk_shm *s = child_open();
    pub mine = {.n = NBLOCK};
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < NBLOCK; i++) {
            mine.size[i] = 1 + rnd() % 3000;
            CHECK(mk_shm_alloc_ex(s, mine.size[i], (rnd() % 4 == 0) ? 256 : 0, 0, &mine.off[i]),
                  MK_OK);
            fill(mk_shm_ptr(s, mine.off[i]), mine.size[i], (uint64_t)(id * 1000 + i));
        }
        /* free and reallocate a third of them, resize another third */
        for (int i = 0; i < NBLOCK; i += 3) {
            CHECK(mk_shm_free(s, mine.off[i]), MK_OK);
            mine.size[i] = 1 + rnd() % 500;
            CHECK(mk_shm_alloc(s, mine.size[i], &mine.off[i]), MK_OK);
            fill(mk_shm_ptr(s, mine.off[i]), mine.size[i], (uint64_t)(id * 1000 + i));
        }
        for (int i = 1; i < NBLOCK; i += 3) {
            size_t ns = 1 + rnd() % 6000, keep = ns < mine.size[i] ? ns : mine.size[i];
            mk_off n;
            CHECK(mk_shm_realloc(s, mine.off[i], ns, &n), MK_OK);
            if (!same(mk_shm_ptr(s, n), keep, (uint64_t)(id * 1000 + i))) DIE("realloc lost data");
            fill(mk_shm_ptr(s, n), ns, (uint64_t)(id * 1000 + i));
            mine.off[i] = n;
            mine.size[i] = ns;
        }
        char nm[64];
        snprintf(nm, sizeof nm, "pub-%d-%d", id, round);
        mk_off po;
        CHECK(mk_shm_obj_create(s, nm, 1, sizeof(pub), MK_SHM_OBJ_EXCL, &po, NULL), MK_OK);
        memcpy(mk_shm_ptr(s, po), &mine, sizeof mine);
        snprintf(nm, sizeof nm, "ready-%d-%d", id, round);
        CHECK(mk_shm_obj_create(s, nm, 2, 8, MK_SHM_OBJ_EXCL, &po, NULL), MK_OK);
        /* check everybody's blocks */
        for (int j = 0; j < NWORK; j++) {
            snprintf(nm, sizeof nm, "ready-%d-%d", j, round);
            await_obj(s, nm);
            snprintf(nm, sizeof nm, "pub-%d-%d", j, round);
            const pub *p = mk_shm_ptr(s, await_obj(s, nm));
            for (uint64_t i = 0; i < p->n; i++)
                if (!same(mk_shm_ptr(s, p->off[i]), p->size[i], (uint64_t)(j * 1000) + i))
                    DIE("worker %d: block %" PRIu64 " of worker %d damaged", id, i, j);
        }
        snprintf(nm, sizeof nm, "checked-%d-%d", id, round);
        CHECK(mk_shm_obj_create(s, nm, 3, 8, MK_SHM_OBJ_EXCL, &po, NULL), MK_OK);
        for (int j = 0; j < NWORK; j++) {
            snprintf(nm, sizeof nm, "checked-%d-%d", j, round);
            await_obj(s, nm);
        }
        for (int i = 0; i < NBLOCK; i++) CHECK(mk_shm_free(s, mine.off[i]), MK_OK);
        valid(s, "worker");
    }
    CHECK(mk_shm_close(s), MK_OK);
    _exit(0);
}

static int run_workers(uint64_t seed) {
    mk_shm *s = make(256 * KB, 64 * MB, MK_POLICY_TLSF);
    pid_t pids[NWORK];
    fflush(NULL);
    for (int i = 0; i < NWORK; i++) {
        pids[i] = fork();
        if (pids[i] < 0) DIE("fork");
        if (pids[i] == 0) worker(i, seed);
    }
    for (int i = 0; i < NWORK; i++) wait_ok(pids[i], "worker");
    valid(s, "after workers");
    mk_stats st;
    CHECK(mk_shm_stats(s, &st), MK_OK);
    mk_shm_info in;
    CHECK(mk_shm_get_info(s, &in), MK_OK);
    /* only the published records (3 per worker per round) and the meta block remain */
    if (st.blocks_used != 1 + 3 * 3 * NWORK || in.objects != 3 * 3 * NWORK || in.attached != 1)
        DIE("leftovers: %" PRIu64 " blocks, %u objects, %u attached", st.blocks_used, in.objects,
            in.attached);
    CHECK(mk_shm_close(s), MK_OK);
    CHECK(mk_shm_unlink(g_name, 0), MK_OK);
    return 0;
}

/* ---- growth ------------------------------------------------------------------------ */

#define NGROW 4

static void grower(int id, uint64_t seed, int start_fd) {
    rng_state = seed + (uint64_t)id * 7919 + 1;
    mk_shm *s = child_open();
    mk_off first;
    CHECK(mk_shm_alloc(s, 1000, &first), MK_OK);
    unsigned char *fp = mk_shm_ptr(s, first); /* taken before any growth */
    fill(fp, 1000, 77 + (uint64_t)id);
    char b;
    if (read(start_fd, &b, 1) != 0) DIE("start");
    pub mine = {.n = NBLOCK};
    for (int i = 0; i < NBLOCK; i++) {
        mine.size[i] = 16 * KB + rnd() % (48 * KB);
        CHECK(mk_shm_alloc(s, mine.size[i], &mine.off[i]), MK_OK);
        fill(mk_shm_ptr(s, mine.off[i]), mine.size[i], (uint64_t)(id * 1000 + i));
        if (!same(fp, 1000, 77 + (uint64_t)id)) DIE("pointer from before the growth broken");
    }
    for (int i = 0; i < NBLOCK; i++)
        if (!same(mk_shm_ptr(s, mine.off[i]), mine.size[i], (uint64_t)(id * 1000 + i)))
            DIE("grower %d: block %d damaged", id, i);
    char nm[32];
    snprintf(nm, sizeof nm, "grow-%d", id);
    mk_off po;
    CHECK(mk_shm_obj_create(s, nm, 1, sizeof(pub), MK_SHM_OBJ_EXCL, &po, NULL), MK_OK);
    memcpy(mk_shm_ptr(s, po), &mine, sizeof mine);
    valid(s, "grower");
    CHECK(mk_shm_close(s), MK_OK);
    _exit(0);
}

static int run_growth(uint64_t seed) {
    mk_shm *s = make(64 * KB, 64 * MB, MK_POLICY_BEST_FIT);
    mk_off mine;
    CHECK(mk_shm_alloc(s, 500, &mine), MK_OK);
    unsigned char *mp = mk_shm_ptr(s, mine);
    fill(mp, 500, 5);
    int go[2];
    if (pipe(go) != 0) DIE("pipe");
    pid_t pids[NGROW];
    fflush(NULL);
    for (int i = 0; i < NGROW; i++) {
        pids[i] = fork();
        if (pids[i] < 0) DIE("fork");
        if (pids[i] == 0) {
            close(go[1]);
            grower(i, seed, go[0]);
        }
    }
    close(go[0]);
    close(go[1]);
    for (int i = 0; i < NGROW; i++) wait_ok(pids[i], "grower");
    mk_shm_info in;
    CHECK(mk_shm_get_info(s, &in), MK_OK);
    if (in.size < (size_t)NGROW * NBLOCK * 16 * KB) DIE("did not grow: %" PRIu64, in.size);
    if (!same(mp, 500, 5)) DIE("parent's pointer broken by growth");
    for (int id = 0; id < NGROW; id++) {
        char nm[32];
        snprintf(nm, sizeof nm, "grow-%d", id);
        mk_shm_obj o;
        CHECK(mk_shm_obj_find(s, nm, &o), MK_OK);
        const pub *p = mk_shm_ptr(s, o.offset);
        for (uint64_t i = 0; i < p->n; i++)
            if (!same(mk_shm_ptr(s, p->off[i]), p->size[i], (uint64_t)id * 1000 + i))
                DIE("parent: block %" PRIu64 " of grower %d damaged", i, id);
    }
    valid(s, "after growth");
    printf("growth: %d processes grew the segment from 64 KiB to %" PRIu64 " KiB\n", NGROW,
           in.size / 1024);
    CHECK(mk_shm_close(s), MK_OK);
    CHECK(mk_shm_unlink(g_name, 0), MK_OK);
    return 0;
}

/* ---- crash at every step ---------------------------------------------------------------- */

enum {
    OP_ALLOC,
    OP_ALLOC_ALIGNED,
    OP_ALLOC_OWNED,
    OP_ALLOC_GROW,
    OP_FREE,
    OP_FREE_OWNED,
    OP_REALLOC_MOVE,
    OP_REALLOC_INPLACE,
    OP_REALLOC_OWNED,
    OP_OBJ_CREATE,
    OP_OBJ_REMOVE,
    OP_ATTACH,
    OP_DETACH,
    OP_CACHE_FREE,
    OP_CACHE_ALLOC,
    OP_CACHE_REFILL,
    OP_CACHE_TRIM,
    OP_CACHE_COLLECT,
    OP_CACHE_FREE_OWNED, /* the five above, with owned blocks (their own lists) */
    OP_CACHE_ALLOC_OWNED,
    OP_CACHE_REFILL_OWNED,
    OP_CACHE_TRIM_OWNED,
    OP_CACHE_COLLECT_OWNED,
    OP_COUNT
};
static const char *const op_names[OP_COUNT] = {"alloc",
                                               "alloc-aligned",
                                               "alloc-owned",
                                               "alloc-grow",
                                               "free",
                                               "free-owned",
                                               "realloc-move",
                                               "realloc-inplace",
                                               "realloc-owned",
                                               "obj-create",
                                               "obj-remove",
                                               "attach",
                                               "detach",
                                               "cache-free",
                                               "cache-alloc",
                                               "cache-refill",
                                               "cache-trim",
                                               "cache-collect",
                                               "cache-free-own",
                                               "cache-alloc-own",
                                               "cache-refill-own",
                                               "cache-trim-own",
                                               "cache-collect-own"};

/* The blocks a child holds, in a page shared with the parent: recorded
 * when an allocation returns, dropped when a free returns. */
#define NREPORT 128
typedef struct report {
    uint64_t n;
    mk_off off[NREPORT];
} report;
static report *g_report;

static void held(mk_off o) {
    if (g_report->n == NREPORT) DIE("report full");
    g_report->off[g_report->n] = o;
    atomic_signal_fence(memory_order_seq_cst);
    g_report->n++;
}
static void dropped(mk_off o) {
    for (uint64_t i = 0; i < g_report->n; i++)
        if (g_report->off[i] == o) g_report->off[i] = 0;
}
static unsigned g_cache_flags; /* MK_SHM_OWNED for the owned variants */
static void cache_alloc(mk_shm *s, size_t n, mk_off *o) {
    CHECK(mk_shm_alloc_ex(s, n, 0, g_cache_flags, o), MK_OK);
    held(*o);
}
static void cache_free(mk_shm *s, mk_off o) {
    CHECK(mk_shm_free(s, o), MK_OK);
    dropped(o);
}

static bool cache_op(int op) { return op >= OP_CACHE_FREE; }

/* A cache at its budget with COLLECT_OLD blocks of spans 2016 and 2032 (8
 * each: a list keeps 16 KiB; owned or not, the same spans), with no room
 * for a 3000-byte block (span 3008, owned 3024), whose
 * next free of one collects (src/shm/cache.c): the first free over the
 * budget collects nothing (no low-water marks yet) and sends the next
 * GC_WAIT (64) to the heap, the one after collects. The caches' segments
 * of 2 MiB get a budget of 32 KiB. */
enum { COLLECT_OLD = 16, COLLECT_WAIT = 64, COLLECT_BYTES = 8 * 2016 + 8 * 2032 };
static void collect_prepare(mk_shm *s, mk_off *many) {
    mk_shm_info in;
    CHECK(mk_shm_get_info(s, &in), MK_OK);
    if (in.cache_bytes < COLLECT_BYTES || in.cache_bytes >= COLLECT_BYTES + 3008)
        DIE("cache-collect: a budget of %" PRIu64 " does not fit the test", in.cache_bytes);
    for (int i = 0; i < COLLECT_OLD + COLLECT_WAIT + 2; i++)
        cache_alloc(s, i < COLLECT_OLD ? 2000 + (size_t)(i % 2) * 16 : 3000, &many[i]);
    for (int i = 0; i < COLLECT_OLD + COLLECT_WAIT + 1; i++) cache_free(s, many[i]);
}

static uint64_t g_crash_at;
static void crash_hook(uint64_t step) {
    if (step == g_crash_at) raise(SIGKILL);
}
static void arm(uint64_t k) {
    mk__test_crash_step = 0;
    g_crash_at = k;
    mk__test_crash_hook = crash_hook;
}

#define NPAR 40

typedef struct parent_state {
    mk_off off[NPAR];
    size_t size[NPAR];
    int live[NPAR];
} parent_state;

static void populate(mk_shm *s, parent_state *ps) {
    for (int i = 0; i < NPAR; i++) {
        ps->size[i] = 24 + (size_t)(i * 211) % 2000;
        CHECK(mk_shm_alloc(s, ps->size[i], &ps->off[i]), MK_OK);
        fill(mk_shm_ptr(s, ps->off[i]), ps->size[i], (uint64_t)i);
        ps->live[i] = 1;
    }
    for (int i = 1; i < NPAR; i += 3) { /* holes */
        CHECK(mk_shm_free(s, ps->off[i]), MK_OK);
        ps->live[i] = 0;
    }
    mk_off o;
    CHECK(mk_shm_obj_create(s, "keep-a", 1, 100, 0, &o, NULL), MK_OK);
    fill(mk_shm_ptr(s, o), 100, 500);
    CHECK(mk_shm_obj_create(s, "keep-b", 2, 3000, 0, &o, NULL), MK_OK);
    fill(mk_shm_ptr(s, o), 3000, 501);
}

static void check_parent(mk_shm *s, const parent_state *ps, const char *when) {
    for (int i = 0; i < NPAR; i++)
        if (ps->live[i] && !same(mk_shm_ptr(s, ps->off[i]), ps->size[i], (uint64_t)i))
            DIE("%s: parent block %d damaged", when, i);
    mk_shm_obj o;
    CHECK(mk_shm_obj_find(s, "keep-a", &o), MK_OK);
    if (!same(mk_shm_ptr(s, o.offset), 100, 500)) DIE("%s: object keep-a damaged", when);
    CHECK(mk_shm_obj_find(s, "keep-b", &o), MK_OK);
    if (!same(mk_shm_ptr(s, o.offset), 3000, 501)) DIE("%s: object keep-b damaged", when);
}

/* The child: prepare (unarmed), then run op with a crash at step k.
 * Exit 0: the op finished before step k. */
static void crash_child(int op, uint64_t k) {
    mk_shm *s = NULL;
    if (op == OP_ATTACH) {
        arm(k);
        CHECK(mk_shm_open(g_name, 0, &s), MK_OK);
        mk__test_crash_hook = NULL;
        _exit(0);
    }
    s = child_open();
    mk_off a = 0, n = 0, many[100];
    if (op >= OP_CACHE_FREE_OWNED) { /* the same steps, with owned blocks */
        op -= OP_CACHE_FREE_OWNED - OP_CACHE_FREE;
        g_cache_flags = MK_SHM_OWNED;
    }
    if (cache_op(op)) {
        switch (op) { /* preparation */
        case OP_CACHE_FREE:
            cache_alloc(s, 300, &a);
            break;
        case OP_CACHE_ALLOC: /* two on the list: a pop, no refill */
            cache_alloc(s, 300, &a);
            cache_alloc(s, 300, &n);
            cache_free(s, a);
            cache_free(s, n);
            break;
        case OP_CACHE_TRIM: /* a list of span 2016 keeps 8 (16 KiB): 7 on it */
            for (int i = 0; i < 16; i++) cache_alloc(s, 2000, &many[i]);
            for (int i = 0; i < 7; i++) cache_free(s, many[i]);
            break;
        case OP_CACHE_COLLECT:
            collect_prepare(s, many);
            break;
        }
        arm(k);
        switch (op) {
        case OP_CACHE_FREE:
            cache_free(s, a);
            break;
        case OP_CACHE_ALLOC:
            cache_alloc(s, 300, &n);
            break;
        case OP_CACHE_REFILL:
            cache_alloc(s, 1000, &n);
            break;
        case OP_CACHE_TRIM: /* 9 more than the list holds: trims of 4 blocks */
            for (int i = 7; i < 16; i++) cache_free(s, many[i]);
            break;
        case OP_CACHE_COLLECT: /* a collection that gives back the OLD blocks */
            cache_free(s, many[COLLECT_OLD + COLLECT_WAIT + 1]);
            break;
        }
        mk__test_crash_hook = NULL;
        _exit(0);
    }
    switch (op) { /* preparation */
    case OP_FREE:
    case OP_REALLOC_MOVE:
    case OP_REALLOC_INPLACE:
        CHECK(mk_shm_alloc(s, 300, &a), MK_OK);
        fill(mk_shm_ptr(s, a), 300, 9);
        break;
    case OP_FREE_OWNED:
    case OP_REALLOC_OWNED:
        CHECK(mk_shm_alloc_ex(s, 300, 0, MK_SHM_OWNED, &a), MK_OK);
        fill(mk_shm_ptr(s, a), 300, 9);
        break;
    case OP_OBJ_REMOVE:
        CHECK(mk_shm_obj_create(s, "victim", 5, 700, 0, &a, NULL), MK_OK);
        break;
    default:
        break;
    }
    if (op == OP_REALLOC_MOVE) { /* pin the block so that growing must move it */
        CHECK(mk_shm_alloc(s, 16, &n), MK_OK);
    }
    arm(k);
    switch (op) {
    case OP_ALLOC:
        CHECK(mk_shm_alloc(s, 1000, &n), MK_OK);
        break;
    case OP_ALLOC_ALIGNED:
        CHECK(mk_shm_alloc_ex(s, 1000, 2048, MK_SHM_ZERO, &n), MK_OK);
        break;
    case OP_ALLOC_OWNED:
        CHECK(mk_shm_alloc_ex(s, 1000, 0, MK_SHM_OWNED, &n), MK_OK);
        break;
    case OP_ALLOC_GROW:
        CHECK(mk_shm_alloc(s, 600 * KB, &n), MK_OK);
        break;
    case OP_FREE:
    case OP_FREE_OWNED:
        CHECK(mk_shm_free(s, a), MK_OK);
        break;
    case OP_REALLOC_MOVE:
        CHECK(mk_shm_realloc(s, a, 20000, &n), MK_OK);
        break;
    case OP_REALLOC_INPLACE:
        CHECK(mk_shm_realloc(s, a, 40, &n), MK_OK);
        break;
    case OP_REALLOC_OWNED:
        CHECK(mk_shm_realloc(s, a, 9000, &n), MK_OK);
        break;
    case OP_OBJ_CREATE:
        CHECK(mk_shm_obj_create(s, "fresh", 6, 2000, 0, &n, NULL), MK_OK);
        break;
    case OP_OBJ_REMOVE:
        CHECK(mk_shm_obj_remove(s, "victim"), MK_OK);
        break;
    case OP_DETACH:
        CHECK(mk_shm_close(s), MK_OK);
        break;
    }
    mk__test_crash_hook = NULL;
    _exit(0);
}

/* After a cache operation crashed: reclaim the dead child's cache; then
 * the heap holds the parent's bytes and the child's live blocks, no more
 * (its owned ones are reclaimed: no longer blocks, not counted). */
static void nothing_lost(mk_shm *s, const mk_stats *before, const char *when) {
    CHECK(mk_shm_reclaim(s, NULL, NULL), MK_OK);
    uint64_t expect = before->bytes_used;
    for (uint64_t i = 0; i < g_report->n; i++) {
        size_t u = 0;
        if (g_report->off[i] && mk_shm_usable_size(s, g_report->off[i], &u) == MK_OK)
            expect += u + 8;
    }
    mk_stats after;
    CHECK(mk_shm_stats(s, &after), MK_OK);
    if (after.bytes_used != expect)
        DIE("%s: %" PRIu64 " bytes in use, expected %" PRIu64, when, after.bytes_used, expect);
    mk_shm_info in;
    CHECK(mk_shm_get_info(s, &in), MK_OK);
    if (in.attached != 1) DIE("%s: the dead child is still attached", when);
}

static int run_crash(mk_policy pol) {
    uint64_t total = 0;
    for (int op = 0; op < OP_COUNT; op++) {
        if (op == OP_ALLOC_GROW && pol == MK_POLICY_BUDDY) continue;
        uint64_t k;
        for (k = 1;; k++) {
            size_t size = cache_op(op) ? 2 * MB : 256 * KB;
            mk_shm *s = make(size, pol == MK_POLICY_BUDDY ? 0 : 4 * MB, pol);
            parent_state ps;
            populate(s, &ps);
            mk_stats before;
            CHECK(mk_shm_stats(s, &before), MK_OK);
            memset(g_report, 0, sizeof *g_report);
            fflush(NULL);
            pid_t pid = fork();
            if (pid < 0) DIE("fork");
            if (pid == 0) crash_child(op, k);
            int st = 0;
            if (waitpid(pid, &st, 0) != pid) DIE("waitpid");
            int finished = WIFEXITED(st) && WEXITSTATUS(st) == 0;
            if (!finished && !(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
                DIE("[%s] op %s step %" PRIu64 ": child status 0x%x", mk_policy_name(pol),
                    op_names[op], k, st);
            char when[96];
            snprintf(when, sizeof when, "[%s] op %s, crash at step %" PRIu64, mk_policy_name(pol),
                     op_names[op], k);
            /* Take the lock: repairs if the child died holding it. */
            valid(s, when);
            check_parent(s, &ps, when);
            if (cache_op(op)) nothing_lost(s, &before, when);
            mk_off x, y;
            CHECK(mk_shm_alloc(s, 777, &x), MK_OK);
            CHECK(mk_shm_alloc_ex(s, 5000, 64, MK_SHM_OWNED, &y), MK_OK);
            fill(mk_shm_ptr(s, x), 777, 4242);
            CHECK(mk_shm_free(s, y), MK_OK);
            for (int i = 0; i < NPAR; i += 2) /* free half of the parent's blocks */
                if (ps.live[i]) {
                    CHECK(mk_shm_free(s, ps.off[i]), MK_OK);
                    ps.live[i] = 0;
                }
            uint64_t nb = 0;
            CHECK(mk_shm_reclaim(s, &nb, NULL), MK_OK);
            valid(s, when);
            check_parent(s, &ps, when);
            mk_shm_info in;
            CHECK(mk_shm_get_info(s, &in), MK_OK);
            if (in.attached != 1) DIE("%s: %u processes attached", when, in.attached);
            if (!same(mk_shm_ptr(s, x), 777, 4242)) DIE("%s: new block damaged", when);
            CHECK(mk_shm_close(s), MK_OK);
            CHECK(mk_shm_unlink(g_name, 0), MK_OK);
            if (finished) break;
        }
        total += k;
        printf("crash [%s] %-17s %3" PRIu64 " crash points\n", mk_policy_name(pol), op_names[op],
               k - 1);
    }
    printf("crash [%s]: %" PRIu64 " runs, all repaired\n", mk_policy_name(pol), total);
    return 0;
}

/* ---- random kills -----------------------------------------------------------------------------
 */

#define NKIDS  4
#define NOWNED 24

typedef struct random_arg {
    mk_shm *s;
    const pub *pp;
    uint64_t seed;
} random_arg;

static void *random_ops(void *arg) {
    const random_arg *a = arg;
    mk_shm *s = a->s;
    const pub *pp = a->pp;
    rng_state = a->seed | 1;
    mk_off own[NOWNED] = {0};
    size_t osz[NOWNED] = {0};
    for (uint64_t it = 0;; it++) {
        uint64_t r = rnd();
        int i = (int)(r % NOWNED);
        switch ((r >> 8) % 8) {
        case 0:
        case 1: /* owned block: allocate, or check and free */
            if (own[i]) {
                if (!same(mk_shm_ptr(s, own[i]), osz[i], (uint64_t)i + 77)) DIE("own block");
                CHECK(mk_shm_free(s, own[i]), MK_OK);
                own[i] = 0;
            } else {
                osz[i] = 1 + (r >> 16) % 4000;
                CHECK(mk_shm_alloc_ex(s, osz[i], (r >> 40) % 3 ? 0 : 128, MK_SHM_OWNED, &own[i]),
                      MK_OK);
                fill(mk_shm_ptr(s, own[i]), osz[i], (uint64_t)i + 77);
            }
            break;
        case 2: /* realloc an owned block */
            if (own[i]) {
                size_t ns = 1 + (r >> 16) % 6000, keep = ns < osz[i] ? ns : osz[i];
                mk_off n;
                CHECK(mk_shm_realloc(s, own[i], ns, &n), MK_OK);
                if (!same(mk_shm_ptr(s, n), keep, (uint64_t)i + 77)) DIE("realloc lost data");
                fill(mk_shm_ptr(s, n), ns, (uint64_t)i + 77);
                own[i] = n;
                osz[i] = ns;
            }
            break;
        case 3: { /* a burst of short-lived plain blocks, through the cache */
            enum { BURST = 24 };
            mk_off n[BURST];
            size_t sz[BURST];
            int k = 1 + (int)((r >> 16) % BURST);
            for (int j = 0; j < k; j++) {
                sz[j] = 1 + (size_t)(rnd() % 1500);
                CHECK(mk_shm_alloc(s, sz[j], &n[j]), MK_OK);
                fill(mk_shm_ptr(s, n[j]), sz[j], (uint64_t)j + 300);
            }
            for (int j = k - 1; j >= 0; j--) { /* the youngest first, as a stack */
                if (!same(mk_shm_ptr(s, n[j]), sz[j], (uint64_t)j + 300)) DIE("burst block");
                CHECK(mk_shm_free(s, n[j]), MK_OK);
            }
            break;
        }
        case 4:
        case 5: { /* shared objects from a small set of names */
            char nm[16];
            snprintf(nm, sizeof nm, "rk-%d", (int)((r >> 16) % 12));
            if ((r >> 32) % 2) {
                mk_off n;
                int rc = mk_shm_obj_create(s, nm, 1, 64 + (r >> 16) % 64, 0, &n, NULL);
                if (rc != MK_OK && rc != MK_EEXIST) DIE("obj create: %s", mk_strerror(rc));
            } else {
                int rc = mk_shm_obj_remove(s, nm);
                if (rc != MK_OK && rc != MK_ENOENT) DIE("obj remove: %s", mk_strerror(rc));
            }
            break;
        }
        case 6: { /* the parent's blocks are intact */
            uint64_t j = (r >> 16) % pp->n;
            if (!same(mk_shm_ptr(s, pp->off[j]), pp->size[j], j)) DIE("parent block damaged");
            break;
        }
        default:
            if (it % 16 == 0) valid(s, "random child");
            break;
        }
    }
    return NULL;
}

/* Every other child runs the operations in two threads on its one handle:
 * each thread gets a cache of its own (a thread handle, a slot of its own),
 * so kills land in those too, and the reap must free them. */
static void random_child(uint64_t seed, const pub *parent_pub_unused) {
    (void)parent_pub_unused;
    mk_shm *s = child_open();
    mk_shm_obj po;
    CHECK(mk_shm_obj_find(s, "parent", &po), MK_OK);
    random_arg a = {s, mk_shm_ptr(s, po.offset), seed}, b = {s, a.pp, seed * 31 + 7};
    pthread_t t;
    if (seed % 2 && pthread_create(&t, NULL, random_ops, &b) != 0) DIE("pthread_create");
    random_ops(&a);
}

static pid_t spawn_random(uint64_t seed) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) DIE("fork");
    if (pid == 0) {
        alarm(300);
        random_child(seed, NULL);
    }
    return pid;
}

static int run_randomkill(uint64_t seed, long kills) {
    rng_state = seed | 1;
    alarm(240); /* the watchdog: a deadlock ends the test with SIGALRM */
    mk_shm *s = make(1 * MB, 64 * MB, MK_POLICY_TLSF);
    pub mine = {.n = NBLOCK};
    for (int i = 0; i < NBLOCK; i++) {
        mine.size[i] = 1 + rnd() % 2000;
        CHECK(mk_shm_alloc(s, mine.size[i], &mine.off[i]), MK_OK);
        fill(mk_shm_ptr(s, mine.off[i]), mine.size[i], (uint64_t)i);
    }
    mk_off po;
    CHECK(mk_shm_obj_create(s, "parent", 1, sizeof(pub), 0, &po, NULL), MK_OK);
    memcpy(mk_shm_ptr(s, po), &mine, sizeof mine);
    pid_t kids[NKIDS];
    for (int i = 0; i < NKIDS; i++) kids[i] = spawn_random(rnd());
    uint64_t t0 = now_ns();
    for (long k = 0; k < kills; k++) {
        struct timespec ts = {0, (long)(rnd() % 2000) * 1000};
        nanosleep(&ts, NULL);
        int v = (int)(rnd() % NKIDS);
        kill(kids[v], SIGKILL);
        int st = 0;
        if (waitpid(kids[v], &st, 0) != kids[v]) DIE("waitpid");
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
            DIE("kill %ld: child ended by itself (status 0x%x): it found damage", k, st);
        char when[64];
        snprintf(when, sizeof when, "after kill %ld (seed %" PRIu64 ")", k, seed);
        valid(s, when);
        for (int i = 0; i < NBLOCK; i++)
            if (!same(mk_shm_ptr(s, mine.off[i]), mine.size[i], (uint64_t)i))
                DIE("%s: parent block %d damaged", when, i);
        if (k % 8 == 0) CHECK(mk_shm_reclaim(s, NULL, NULL), MK_OK);
        kids[v] = spawn_random(rnd());
    }
    for (int i = 0; i < NKIDS; i++) {
        kill(kids[i], SIGKILL);
        waitpid(kids[i], NULL, 0);
    }
    uint64_t nb = 0;
    CHECK(mk_shm_reclaim(s, &nb, NULL), MK_OK);
    valid(s, "at the end");
    mk_shm_info in;
    CHECK(mk_shm_get_info(s, &in), MK_OK);
    mk_stats st;
    CHECK(mk_shm_stats(s, &st), MK_OK);
    if (in.attached != 1) DIE("%u processes still attached", in.attached);
    /* Every dead child's cache came back: with ours flushed, none is left. */
    CHECK(mk_shm_cache_flush(s), MK_OK);
    CHECK(mk_shm_get_info(s, &in), MK_OK);
    if (in.cached_blocks != 0) DIE("%" PRIu64 " blocks left in caches", in.cached_blocks);
    printf("randomkill: %ld kills in %.1f s (seed %" PRIu64 "), %" PRIu64
           " blocks used at the end, size %" PRIu64 " KiB\n",
           kills, (double)(now_ns() - t0) / 1e9, seed, st.blocks_used, in.size / 1024);
    CHECK(mk_shm_close(s), MK_OK);
    CHECK(mk_shm_unlink(g_name, 0), MK_OK);
    return 0;
}

int main(int argc, char **argv) {
    g_parent = getpid();
    if (argc < 2) {
        fprintf(stderr, "usage: mp_shm workers|growth|crash|randomkill [SEED|POLICY] [KILLS]\n");
        return 2;
    }
    snprintf(g_name, sizeof g_name, "/mk-test-mp-%ld-%s", (long)getpid(), argv[1]);
    uint64_t seed = argc > 2 ? strtoull(argv[2], NULL, 0) : 12345;
    alarm(600);
    if (strcmp(argv[1], "workers") == 0) return run_workers(seed);
    if (strcmp(argv[1], "growth") == 0) return run_growth(seed);
    g_report =
        mmap(NULL, sizeof *g_report, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_report == MAP_FAILED) DIE("mmap");
    if (strcmp(argv[1], "crash") == 0) {
        mk_policy pol = MK_POLICY_TLSF;
        if (argc > 2 && mk_policy_from_name(argv[2], &pol) != MK_OK) DIE("policy %s", argv[2]);
        return run_crash(pol);
    }
    if (strcmp(argv[1], "randomkill") == 0) {
        long kills = argc > 3 ? strtol(argv[3], NULL, 0) : 1000;
        return run_randomkill(seed, kills);
    }
    fprintf(stderr, "unknown test %s\n", argv[1]);
    return 2;
}
