/*
 * Many messages through each structure, between processes (fork; each
 * child opens the segment and the structure by name) or between threads
 * (a private buffer; run under ThreadSanitizer in make check).
 *
 *   ds_mp STRUCT MODE COUNT [SEED]
 *     STRUCT  spsc | ring | mpmc | pool
 *     MODE    proc | thread
 *     COUNT   messages per producer (pool: acquire/release pairs per worker)
 *
 * spsc, ring: one producer, one consumer; every message carries its
 *   sequence number and a payload derived from it; the consumer checks each
 *   one is exactly the next (no loss, no duplicate, FIFO) and both sides
 *   sum a checksum that must agree. The ring producer mixes bulk pushes of
 *   random size with reserve/commit, the consumer bulk pops with peek/release.
 * mpmc: 2 producers x 2 consumers; each consumer checks per-producer order
 *   (increasing), marks every message in a shared bitmap (a second mark is a
 *   duplicate), and at the end every bit is set (no loss) and the checksums
 *   of producers and consumers agree.
 * pool: 2 workers acquire and release slots of a 16-slot pool; a shared
 *   in-use flag per slot, set by exchange after acquire, must be free (a slot
 *   handed out twice trips it); each writes a pattern into its slot and
 *   checks it before release; at the end every slot is free.
 *
 * Waits use the blocking calls with a timeout; alarm() is the watchdog.
 * Exit status 0 on success, 1 with a message otherwise.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memkit/ipc.h"
#include "memkit/shm.h"

#define WAIT_NS ((int64_t)20 * 1000000000) /* a peer silent this long has failed */

static char g_seg[64];
static pid_t g_parent;
static int g_threads; /* mode: threads share the handles */

#define DIE(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, "ds_mp[%ld] %s:%d: ", (long)getpid(), __FILE__, __LINE__);                 \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        if (getpid() == g_parent) mk_shm_unlink(g_seg, 0);                                         \
        _exit(1);                                                                                  \
    } while (0)
#define CHECK(expr)                                                                                \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != MK_OK) DIE("%s: %s", #expr, mk_strerror(rc_));                                  \
    } while (0)

/* A message: producer id, sequence number (from 1), payload from both. */
typedef struct msg {
    uint64_t seq;
    uint32_t producer;
    uint32_t pad;
    uint64_t payload;
} msg;

static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    return x;
}
static msg make_msg(uint32_t producer, uint64_t seq) {
    msg m = {seq, producer, 0, mix(seq * 2 + producer)};
    return m;
}
static void check_msg(const msg *m) {
    if (m->payload != mix(m->seq * 2 + m->producer))
        DIE("torn message: producer %u seq %" PRIu64, m->producer, m->seq);
}

/* Results every participant reports: in a MAP_SHARED page (also for threads). */
typedef struct results {
    _Atomic uint64_t produced_sum, consumed_sum, consumed;
} results;
static results *g_res;

/* ---- the shared structures (one segment for proc mode, buffers for threads) ---- */

static mk_shm *g_shm;
static void *g_buf;
static size_t g_buf_size;

static mk_shm *segment(void) { /* a fresh open in each child process */
    if (g_threads) return NULL;
    mk_shm *s;
    CHECK(mk_shm_open(g_seg, 0, &s));
    return s;
}

/* ---- spsc ------------------------------------------------------------------------ */

static uint64_t g_count;
static mk_spsc *g_spsc; /* thread mode: shared by producer and consumer */

static mk_spsc *spsc_handle(mk_shm *s) {
    if (g_threads) return g_spsc;
    mk_spsc *q;
    CHECK(mk_spsc_open(s, "spsc", sizeof(msg), &q));
    return q;
}

static void *spsc_producer(void *arg) {
    (void)arg;
    mk_shm *s = segment();
    mk_spsc *q = spsc_handle(s);
    uint64_t sum = 0;
    for (uint64_t i = 1; i <= g_count; i++) {
        msg m = make_msg(0, i);
        if (mk_spsc_try_push(q, &m) != MK_OK) CHECK(mk_spsc_push_wait(q, &m, WAIT_NS));
        sum += m.payload;
    }
    atomic_fetch_add(&g_res->produced_sum, sum);
    if (!g_threads) mk_shm_close(s);
    return NULL;
}

static void *spsc_consumer(void *arg) {
    (void)arg;
    mk_shm *s = segment();
    mk_spsc *q = spsc_handle(s);
    uint64_t sum = 0;
    for (uint64_t i = 1; i <= g_count; i++) {
        msg m;
        if (mk_spsc_try_pop(q, &m) != MK_OK) CHECK(mk_spsc_pop_wait(q, &m, WAIT_NS));
        check_msg(&m);
        if (m.seq != i) DIE("spsc: expected seq %" PRIu64 ", got %" PRIu64, i, m.seq);
        sum += m.payload;
    }
    msg extra;
    if (mk_spsc_try_pop(q, &extra) != MK_EEMPTY) DIE("spsc: an element beyond the last");
    atomic_fetch_add(&g_res->consumed_sum, sum);
    atomic_fetch_add(&g_res->consumed, g_count);
    if (!g_threads) mk_shm_close(s);
    return NULL;
}

/* ---- ring ------------------------------------------------------------------------ */

static mk_ring *g_ring;
static uint64_t g_seed;

static mk_ring *ring_handle(mk_shm *s) {
    if (g_threads) return g_ring;
    mk_ring *r;
    CHECK(mk_ring_open(s, "ring", sizeof(msg), &r));
    return r;
}

static uint64_t rnd(uint64_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void *ring_producer(void *arg) {
    (void)arg;
    mk_shm *s = segment();
    mk_ring *r = ring_handle(s);
    uint64_t sum = 0, next = 1, x = g_seed | 1;
    msg batch[64];
    while (next <= g_count) {
        size_t want = 1 + (size_t)(rnd(&x) % 64);
        if (want > g_count - next + 1) want = (size_t)(g_count - next + 1);
        size_t done;
        if (rnd(&x) & 1) {
            for (size_t i = 0; i < want; i++) batch[i] = make_msg(0, next + i);
            done = mk_ring_push_bulk(r, batch, want);
        } else {
            msg *w = mk_ring_reserve(r, want, &done);
            for (size_t i = 0; i < done; i++) w[i] = make_msg(0, next + i);
            CHECK(mk_ring_commit(r, done));
        }
        for (size_t i = 0; i < done; i++) sum += mix((next + i) * 2);
        next += done;
        if (done == 0) CHECK(mk_ring_wait_not_full(r, WAIT_NS));
    }
    atomic_fetch_add(&g_res->produced_sum, sum);
    if (!g_threads) mk_shm_close(s);
    return NULL;
}

static void *ring_consumer(void *arg) {
    (void)arg;
    mk_shm *s = segment();
    mk_ring *r = ring_handle(s);
    uint64_t sum = 0, next = 1, x = (g_seed * 7) | 1;
    msg batch[64];
    while (next <= g_count) {
        size_t want = 1 + (size_t)(rnd(&x) % 64), done;
        const msg *m;
        bool peek = rnd(&x) & 1;
        if (peek) {
            m = mk_ring_peek(r, want, &done);
        } else {
            done = mk_ring_pop_bulk(r, batch, want);
            m = batch;
        }
        for (size_t i = 0; i < done; i++) {
            check_msg(&m[i]);
            if (m[i].seq != next + i)
                DIE("ring: expected seq %" PRIu64 ", got %" PRIu64, next + i, m[i].seq);
            sum += m[i].payload;
        }
        if (peek) CHECK(mk_ring_release(r, done));
        next += done;
        if (done == 0) CHECK(mk_ring_wait_not_empty(r, WAIT_NS));
    }
    if (mk_ring_size(r) != 0) DIE("ring: elements beyond the last");
    atomic_fetch_add(&g_res->consumed_sum, sum);
    atomic_fetch_add(&g_res->consumed, g_count);
    if (!g_threads) mk_shm_close(s);
    return NULL;
}

/* ---- mpmc ------------------------------------------------------------------------ */

#define MPMC_PRODUCERS 2
#define MPMC_CONSUMERS 2
static _Atomic uint64_t *g_bitmap; /* MPMC_PRODUCERS * count bits, MAP_SHARED */

static mk_mpmc *mpmc_handle(mk_shm *s) {
    mk_mpmc *q;
    if (g_threads)
        CHECK(mk_mpmc_attach(g_buf, g_buf_size, sizeof(msg), &q)); /* a view per thread */
    else
        CHECK(mk_mpmc_open(s, "mpmc", sizeof(msg), &q));
    return q;
}

static void *mpmc_producer(void *arg) {
    uint32_t id = (uint32_t)(uintptr_t)arg;
    mk_shm *s = segment();
    mk_mpmc *q = mpmc_handle(s);
    uint64_t sum = 0;
    for (uint64_t i = 1; i <= g_count; i++) {
        msg m = make_msg(id, i);
        if (mk_mpmc_try_push(q, &m) != MK_OK) CHECK(mk_mpmc_push_wait(q, &m, WAIT_NS));
        sum += m.payload;
    }
    atomic_fetch_add(&g_res->produced_sum, sum);
    mk_mpmc_close(q);
    if (!g_threads) mk_shm_close(s);
    return NULL;
}

static void *mpmc_consumer(void *arg) {
    (void)arg;
    mk_shm *s = segment();
    mk_mpmc *q = mpmc_handle(s);
    uint64_t sum = 0, n = 0, last[MPMC_PRODUCERS] = {0};
    for (;;) {
        msg m;
        if (mk_mpmc_try_pop(q, &m) != MK_OK) CHECK(mk_mpmc_pop_wait(q, &m, WAIT_NS));
        if (m.seq == 0) break; /* the parent's stop message */
        check_msg(&m);
        if (m.producer >= MPMC_PRODUCERS || m.seq > g_count) DIE("mpmc: bad message");
        if (m.seq <= last[m.producer])
            DIE("mpmc: producer %u: seq %" PRIu64 " after %" PRIu64, m.producer, m.seq,
                last[m.producer]);
        last[m.producer] = m.seq;
        uint64_t bit = m.producer * g_count + (m.seq - 1);
        uint64_t old = atomic_fetch_or(&g_bitmap[bit / 64], UINT64_C(1) << (bit % 64));
        if (old & (UINT64_C(1) << (bit % 64)))
            DIE("mpmc: duplicate producer %u seq %" PRIu64, m.producer, m.seq);
        sum += m.payload;
        n++;
    }
    atomic_fetch_add(&g_res->consumed_sum, sum);
    atomic_fetch_add(&g_res->consumed, n);
    mk_mpmc_close(q);
    if (!g_threads) mk_shm_close(s);
    return NULL;
}

/* ---- pool ------------------------------------------------------------------------- */

#define POOL_SLOTS   16
#define POOL_WORKERS 2
static _Atomic uint32_t *g_inuse; /* POOL_SLOTS flags, MAP_SHARED */

static mk_objpool *pool_handle(mk_shm *s) {
    mk_objpool *p;
    if (g_threads)
        CHECK(mk_objpool_attach(g_buf, g_buf_size, 64, &p));
    else
        CHECK(mk_objpool_open(s, "pool", 64, &p));
    return p;
}

static void *pool_worker(void *arg) {
    uint32_t id = (uint32_t)(uintptr_t)arg + 1;
    mk_shm *s = segment();
    mk_objpool *p = pool_handle(s);
    uint32_t held[4];
    size_t nheld = 0;
    uint64_t x = (g_seed + id) | 1;
    for (uint64_t i = 0; i < g_count || nheld; i++) {
        if (i < g_count && nheld < 4 && (nheld == 0 || (rnd(&x) & 1))) {
            uint32_t idx;
            int rc = mk_objpool_acquire(p, &idx);
            if (rc == MK_EEMPTY) continue;
            CHECK(rc);
            if (atomic_exchange(&g_inuse[idx], id) != 0) DIE("pool: slot %u handed out twice", idx);
            memset(mk_objpool_ptr(p, idx), (int)id, 64);
            held[nheld++] = idx;
        } else {
            uint32_t idx = held[--nheld];
            const unsigned char *d = mk_objpool_ptr(p, idx);
            for (int b = 0; b < 64; b++)
                if (d[b] != (unsigned char)id) DIE("pool: slot %u overwritten while held", idx);
            if (atomic_exchange(&g_inuse[idx], 0) != id) DIE("pool: slot %u flag lost", idx);
            CHECK(mk_objpool_release(p, idx));
        }
    }
    mk_objpool_close(p);
    if (!g_threads) mk_shm_close(s);
    return NULL;
}

/* ---- running roles as processes or threads --------------------------------------------- */

typedef void *(*role_fn)(void *);
static pid_t g_pids[8];
static pthread_t g_tids[8];
static int g_nroles;

static void start(role_fn fn, uintptr_t arg) {
    int i = g_nroles++;
    if (g_threads) {
        if (pthread_create(&g_tids[i], NULL, fn, (void *)arg) != 0) DIE("pthread_create");
        return;
    }
    pid_t pid = fork();
    if (pid < 0) DIE("fork");
    if (pid == 0) {
        fn((void *)arg);
        _exit(0);
    }
    g_pids[i] = pid;
}

static void join_range(int from, int to) {
    for (int i = from; i < to; i++) {
        if (g_threads) {
            pthread_join(g_tids[i], NULL);
            continue;
        }
        int st;
        if (waitpid(g_pids[i], &st, 0) != g_pids[i] || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            DIE("role %d failed (status %#x)", i, st);
    }
}

static void *make_buffer(size_t size) {
    void *p = NULL;
    if (posix_memalign(&p, MK_IPC_ALIGN, size) != 0) DIE("posix_memalign");
    g_buf = p;
    g_buf_size = size;
    return p;
}

static int run(const char *what) {
    const size_t cap = 1024;
    if (strcmp(what, "spsc") == 0) {
        if (g_threads)
            CHECK(mk_spsc_init(make_buffer(mk_spsc_footprint(cap, sizeof(msg))),
                               mk_spsc_footprint(cap, sizeof(msg)), cap, sizeof(msg), &g_spsc));
        else
            CHECK(mk_spsc_create(g_shm, "spsc", cap, sizeof(msg), MK_IPC_EXCL, &g_spsc));
        start(spsc_consumer, 0);
        start(spsc_producer, 0);
        join_range(0, 2);
    } else if (strcmp(what, "ring") == 0) {
        if (g_threads)
            CHECK(mk_ring_init(make_buffer(mk_ring_footprint(cap, sizeof(msg))),
                               mk_ring_footprint(cap, sizeof(msg)), cap, sizeof(msg), &g_ring));
        else
            CHECK(mk_ring_create(g_shm, "ring", cap, sizeof(msg), MK_IPC_EXCL, &g_ring));
        start(ring_consumer, 0);
        start(ring_producer, 0);
        join_range(0, 2);
    } else if (strcmp(what, "mpmc") == 0) {
        size_t words = (MPMC_PRODUCERS * g_count + 63) / 64;
        g_bitmap = mmap(NULL, words * 8, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (g_bitmap == MAP_FAILED) DIE("mmap");
        mk_mpmc *q;
        if (g_threads)
            CHECK(mk_mpmc_init(make_buffer(mk_mpmc_footprint(cap, sizeof(msg))),
                               mk_mpmc_footprint(cap, sizeof(msg)), cap, sizeof(msg), &q));
        else
            CHECK(mk_mpmc_create(g_shm, "mpmc", cap, sizeof(msg), MK_IPC_EXCL, &q));
        for (uintptr_t c = 0; c < MPMC_CONSUMERS; c++) start(mpmc_consumer, c);
        for (uintptr_t p = 0; p < MPMC_PRODUCERS; p++) start(mpmc_producer, p);
        join_range(MPMC_CONSUMERS, MPMC_CONSUMERS + MPMC_PRODUCERS);
        msg stop = {0};
        for (int c = 0; c < MPMC_CONSUMERS; c++) CHECK(mk_mpmc_push_wait(q, &stop, WAIT_NS));
        join_range(0, MPMC_CONSUMERS);
        for (uint64_t b = 0; b < MPMC_PRODUCERS * g_count; b++)
            if (!(g_bitmap[b / 64] & (UINT64_C(1) << (b % 64))))
                DIE("mpmc: producer %" PRIu64 " seq %" PRIu64 " lost", b / g_count,
                    b % g_count + 1);
        mk_mpmc_close(q);
    } else if (strcmp(what, "pool") == 0) {
        g_inuse = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (g_inuse == MAP_FAILED) DIE("mmap");
        mk_objpool *p;
        if (g_threads)
            CHECK(mk_objpool_init(make_buffer(mk_objpool_footprint(POOL_SLOTS, 64)),
                                  mk_objpool_footprint(POOL_SLOTS, 64), POOL_SLOTS, 64, &p));
        else
            CHECK(mk_objpool_create(g_shm, "pool", POOL_SLOTS, 64, MK_IPC_EXCL, &p));
        for (uintptr_t w = 0; w < POOL_WORKERS; w++) start(pool_worker, w);
        join_range(0, POOL_WORKERS);
        if (mk_objpool_count_free(p) != POOL_SLOTS)
            DIE("pool: %zu slots free at the end", mk_objpool_count_free(p));
        printf("pool %s: %d workers x %" PRIu64 " operations, no slot handed out twice\n",
               g_threads ? "thread" : "proc", POOL_WORKERS, g_count);
        mk_objpool_close(p);
        return 0;
    } else {
        DIE("unknown structure %s", what);
    }
    uint64_t expect = strcmp(what, "mpmc") == 0 ? MPMC_PRODUCERS * g_count : g_count;
    if (g_res->consumed != expect)
        DIE("%s: %" PRIu64 " consumed, %" PRIu64 " produced", what, (uint64_t)g_res->consumed,
            expect);
    if (g_res->consumed_sum != g_res->produced_sum) DIE("%s: checksums differ", what);
    printf("%s %s: %" PRIu64 " messages, counts and checksums agree (%016" PRIx64 ")\n", what,
           g_threads ? "thread" : "proc", expect, (uint64_t)g_res->consumed_sum);
    return 0;
}

/* Test builds of the library (src/ds/ds_int.h): run as on a system without
 * membarrier, so the seq_cst publishes and sliced sleeps are tested too. */
extern bool mk__ds_test_no_barrier;

int main(int argc, char **argv) {
    if (getenv("MK_TEST_DS_NO_BARRIER")) mk__ds_test_no_barrier = true;
    if (argc < 4) {
        fprintf(stderr, "usage: ds_mp spsc|ring|mpmc|pool proc|thread COUNT [SEED]\n");
        return 2;
    }
    g_parent = getpid();
    g_threads = strcmp(argv[2], "thread") == 0;
    g_count = strtoull(argv[3], NULL, 0);
    g_seed = argc > 4 ? strtoull(argv[4], NULL, 0) : 12345;
    printf("ds_mp %s %s %" PRIu64 " %" PRIu64 "\n", argv[1], argv[2], g_count, g_seed);
    alarm(600);
    g_res = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_res == MAP_FAILED) DIE("mmap");
    snprintf(g_seg, sizeof g_seg, "/mk-ds-mp-%ld", (long)getpid());
    if (!g_threads) {
        mk_shm_config cfg = {.size = 4u << 20, .policy = MK_POLICY_TLSF};
        CHECK(mk_shm_create(g_seg, &cfg, &g_shm));
    }
    int rc = run(argv[1]);
    if (g_shm) {
        mk_shm_close(g_shm);
        mk_shm_unlink(g_seg, 0);
    }
    free(g_buf);
    return rc;
}
