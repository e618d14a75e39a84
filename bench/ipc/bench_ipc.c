/*
 * bench-ipc: the lock-free structures of memkit (include/memkit/ipc.h)
 * against their peers, in the same run:
 *
 *   spsc   SPSC throughput, 8- and 64-byte messages, 2 threads and 2
 *          processes: memkit mk_spsc vs Boost.Lockfree spsc_queue vs
 *          Concurrency Kit ck_ring (typed CK_RING_PROTOTYPE rings).
 *   lat    one-way latency by ping-pong through two queues (memkit SPSC)
 *          vs a raw ping-pong on one cache line (the floor), both between
 *          the same two CPUs (threads pinned to CPU 0 and 1).
 *   mpmc   2 producers x 2 consumers, 8-byte messages, threads: memkit
 *          mk_mpmc vs boost::lockfree::queue (fixed_sized, same capacity).
 *   pool   object pool acquire+release, one thread, ns per pair.
 *   array  sequential and random reads of 4M uint64 elements: mk_array
 *          (in a segment, through mk_array_data) vs a private malloc array.
 *
 * Every queue has capacity BENCH_CAP. The peers are called through
 * out-of-line functions as memkit is (boost_peers.cc; ck through a static
 * function pointer), so no one gains from inlining into the loop. Each
 * measurement is repeated --runs times (default 5), peers interleaved in
 * each round; the table gives medians and the median of per-round ratios.
 *
 *   bench-ipc [--runs R] [--msgs N] [--json FILE]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ck_ring.h>

#include "bench_ipc.h"
#include "memkit/ipc.h"
#include "memkit/shm.h"

struct blob8 {
    unsigned char b[8];
};
struct blob64 {
    unsigned char b[64];
};
CK_RING_PROTOTYPE(b8, blob8)
CK_RING_PROTOTYPE(b64, blob64)

static unsigned g_runs = 5;
static uint64_t g_msgs = 10000000;
static char g_seg[64];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "bench-ipc: %s\n", what);
    mk_shm_unlink(g_seg, 0);
    exit(1);
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set); /* best effort */
}

static void *shared_mem(size_t n) {
    void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap");
    memset(p, 0, n);
    return p;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median(double *v, unsigned n) {
    double t[64];
    memcpy(t, v, n * sizeof *v);
    qsort(t, n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

/* ---- one SPSC endpoint pair, whatever the peer ---------------------------------- */

enum peer { P_MEMKIT, P_BOOST, P_CK, P_COUNT };
static const char *peer_name[] = {"memkit mk_spsc", "Boost spsc_queue", "ck_ring (CK)"};

typedef struct chan {
    enum peer peer;
    size_t elem;
    int procs;
    mk_shm *seg; /* memkit */
    mk_spsc *q;
    void *mem; /* boost: the queue; ck: ring + buffer */
} chan;

typedef struct ckmem {
    ck_ring_t ring;
    char pad[64];
    unsigned char buf[]; /* BENCH_CAP entries */
} ckmem;

static int (*volatile ck_push_fn)(ckmem *, size_t, const void *);
static int (*volatile ck_pop_fn)(ckmem *, size_t, void *);
static int ck_push(ckmem *c, size_t elem, const void *m) {
    if (elem == 8) return ck_ring_enqueue_spsc_b8(&c->ring, (struct blob8 *)c->buf, (void *)m);
    return ck_ring_enqueue_spsc_b64(&c->ring, (struct blob64 *)c->buf, (void *)m);
}
static int ck_pop(ckmem *c, size_t elem, void *m) {
    if (elem == 8) return ck_ring_dequeue_spsc_b8(&c->ring, (struct blob8 *)c->buf, m);
    return ck_ring_dequeue_spsc_b64(&c->ring, (struct blob64 *)c->buf, m);
}

static void chan_make(chan *c, enum peer p, size_t elem, int procs, const char *name) {
    memset(c, 0, sizeof *c);
    c->peer = p;
    c->elem = elem;
    c->procs = procs;
    if (p == P_MEMKIT) {
        mk_shm_config cfg = {.size = 4u << 20};
        if (mk_shm_create(g_seg, &cfg, &c->seg) == MK_EEXIST) {
            if (mk_shm_open(g_seg, 0, &c->seg) != MK_OK) die("segment");
        } else if (c->seg == NULL) {
            die("segment");
        }
        mk_shm_obj_remove(c->seg, name);
        if (mk_spsc_create(c->seg, name, BENCH_CAP, elem, MK_IPC_EXCL, &c->q) != MK_OK)
            die("mk_spsc_create");
    } else if (p == P_BOOST) {
        c->mem = shared_mem(boost_spsc_bytes(elem));
        boost_spsc_init(c->mem, elem);
    } else {
        ckmem *m = shared_mem(sizeof(ckmem) + BENCH_CAP * elem);
        ck_ring_init(&m->ring, BENCH_CAP);
        c->mem = m;
    }
}

/* The other side's view after fork: memkit opens the segment by name. */
static void chan_child(chan *c, const char *name) {
    if (c->peer != P_MEMKIT || !c->procs) return;
    if (mk_shm_open(g_seg, 0, &c->seg) != MK_OK) die("open segment");
    if (mk_spsc_open(c->seg, name, c->elem, &c->q) != MK_OK) die("mk_spsc_open");
}

static void chan_free(chan *c, size_t elem) {
    if (c->peer == P_MEMKIT) {
        mk_spsc_close(c->q);
        mk_shm_close(c->seg);
    } else {
        munmap(c->mem,
               c->peer == P_BOOST ? boost_spsc_bytes(elem) : sizeof(ckmem) + BENCH_CAP * elem);
    }
}

static inline int chan_push(chan *c, const void *m) {
    switch (c->peer) {
    case P_MEMKIT:
        return mk_spsc_try_push(c->q, m) == MK_OK;
    case P_BOOST:
        return boost_spsc_push(c->mem, c->elem, m);
    default:
        return ck_push_fn(c->mem, c->elem, m);
    }
}
static inline int chan_pop(chan *c, void *m) {
    switch (c->peer) {
    case P_MEMKIT:
        return mk_spsc_try_pop(c->q, m) == MK_OK;
    case P_BOOST:
        return boost_spsc_pop(c->mem, c->elem, m);
    default:
        return ck_pop_fn(c->mem, c->elem, m);
    }
}

/* ---- runs of two parties (threads or processes) -------------------------------------- */

typedef struct sync_area {
    _Atomic int ready;
    _Atomic int go;
    _Atomic uint64_t t_end;
    _Atomic uint64_t check;
    _Alignas(64) _Atomic uint64_t ping; /* the raw floor's line */
    _Alignas(64) char pad[64];
} sync_area;
static sync_area *g_sync;

typedef struct party {
    chan *a, *b;
    const char *name_a, *name_b;
    void (*fn)(struct party *);
} party;

static void *party_thread(void *arg) {
    party *p = arg;
    pin(1);
    p->fn(p);
    return NULL;
}

/* Run fn in the second party (thread or forked process) while the caller
 * runs its own part; returns when both are done. */
static void two_parties(int procs, party *p, void (*mine)(party *)) {
    atomic_store(&g_sync->ready, 0);
    atomic_store(&g_sync->go, 0);
    pin(0);
    if (procs) {
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            pin(1);
            chan_child(p->a, p->name_a);
            if (p->b) chan_child(p->b, p->name_b);
            p->fn(p);
            _exit(0);
        }
        mine(p);
        int st;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) die("child failed");
    } else {
        pthread_t t;
        pthread_create(&t, NULL, party_thread, p);
        mine(p);
        pthread_join(t, NULL);
    }
}

static void wait_go(void) {
    atomic_fetch_add(&g_sync->ready, 1);
    while (!atomic_load(&g_sync->go)) {
    }
}

/* Throughput: the second party consumes g_msgs, the first produces them. */
static void tp_consumer(party *p) {
    unsigned char m[64];
    uint64_t sum = 0;
    wait_go();
    for (uint64_t i = 0; i < g_msgs; i++) {
        while (!chan_pop(p->a, m)) {
        }
        uint64_t v;
        memcpy(&v, m, 8);
        sum += v;
    }
    atomic_store(&g_sync->t_end, now_ns());
    atomic_store(&g_sync->check, sum);
}

static uint64_t g_t_start;
static void tp_producer(party *p) {
    unsigned char m[64] = {0};
    while (atomic_load(&g_sync->ready) < 1) {
    }
    g_t_start = now_ns();
    atomic_store(&g_sync->go, 1);
    for (uint64_t i = 0; i < g_msgs; i++) {
        memcpy(m, &i, 8);
        while (!chan_push(p->a, m)) {
        }
    }
}

static double spsc_throughput(enum peer pe, size_t elem, int procs) {
    chan c;
    chan_make(&c, pe, elem, procs, "bench.spsc");
    party p = {.a = &c, .name_a = "bench.spsc", .fn = tp_consumer};
    two_parties(procs, &p, tp_producer);
    if (g_sync->check != g_msgs * (g_msgs - 1) / 2) die("spsc: checksum");
    chan_free(&c, elem);
    return (double)(g_sync->t_end - g_t_start) / (double)g_msgs;
}

/* Latency: ping-pong through a (there) and b (back). */
#define PINGS 200000
static void pong(party *p) {
    uint64_t m[8];
    wait_go();
    for (int i = 0; i < PINGS; i++) {
        while (!chan_pop(p->a, m)) {
        }
        while (!chan_push(p->b, m)) {
        }
    }
}
static void ping(party *p) {
    uint64_t m[8] = {0};
    while (atomic_load(&g_sync->ready) < 1) {
    }
    atomic_store(&g_sync->go, 1);
    g_t_start = now_ns();
    for (int i = 0; i < PINGS; i++) {
        m[0] = (uint64_t)i;
        while (!chan_push(p->a, m)) {
        }
        while (!chan_pop(p->b, m)) {
        }
    }
    atomic_store(&g_sync->t_end, now_ns());
}

static double queue_latency(int procs) {
    chan a, b;
    chan_make(&a, P_MEMKIT, 8, procs, "bench.ping");
    chan_make(&b, P_MEMKIT, 8, procs, "bench.pong");
    party p = {.a = &a, .b = &b, .name_a = "bench.ping", .name_b = "bench.pong", .fn = pong};
    two_parties(procs, &p, ping);
    chan_free(&a, 8);
    chan_free(&b, 8);
    return (double)(g_sync->t_end - g_t_start) / PINGS / 2;
}

/* The floor: one cache line, each side waits for the other's value. */
static void raw_pong(party *p) {
    (void)p;
    wait_go();
    for (uint64_t i = 0; i < PINGS; i++) {
        while (atomic_load_explicit(&g_sync->ping, memory_order_acquire) != 2 * i + 1) {
        }
        atomic_store_explicit(&g_sync->ping, 2 * i + 2, memory_order_release);
    }
}
static void raw_ping(party *p) {
    (void)p;
    atomic_store(&g_sync->ping, 0);
    while (atomic_load(&g_sync->ready) < 1) {
    }
    atomic_store(&g_sync->go, 1);
    g_t_start = now_ns();
    for (uint64_t i = 0; i < PINGS; i++) {
        atomic_store_explicit(&g_sync->ping, 2 * i + 1, memory_order_release);
        while (atomic_load_explicit(&g_sync->ping, memory_order_acquire) != 2 * i + 2) {
        }
    }
    atomic_store(&g_sync->t_end, now_ns());
}
static double raw_latency(int procs) {
    chan dummy = {.peer = P_BOOST};
    party p = {.a = &dummy, .fn = raw_pong};
    two_parties(procs, &p, raw_ping);
    return (double)(g_sync->t_end - g_t_start) / PINGS / 2;
}

/* ---- MPMC 2x2 (threads) ------------------------------------------------------------------ */

typedef struct mpmc_arg {
    int boost;
    void *q;
    int producer;
    uint64_t n, sum;
} mpmc_arg;
static _Atomic int g_mpmc_go;

static void *mpmc_thread(void *arg) {
    mpmc_arg *a = arg;
    while (!atomic_load(&g_mpmc_go)) {
    }
    for (uint64_t i = 1; i <= a->n; i++) {
        uint64_t v = i;
        if (a->producer) {
            if (a->boost)
                while (!boost_mpmc_push(a->q, v)) sched_yield();
            else
                while (mk_mpmc_try_push(a->q, &v) != MK_OK) sched_yield();
        } else {
            if (a->boost)
                while (!boost_mpmc_pop(a->q, &v)) sched_yield();
            else
                while (mk_mpmc_try_pop(a->q, &v) != MK_OK) sched_yield();
            a->sum += v;
        }
    }
    return NULL;
}

static double mpmc_throughput(int boost) {
    void *mem;
    size_t bytes = boost ? boost_mpmc_bytes() : mk_mpmc_footprint(BENCH_CAP, 8);
    if (posix_memalign(&mem, 64, bytes)) die("memalign");
    mk_mpmc *q = NULL;
    if (boost)
        boost_mpmc_init(mem);
    else if (mk_mpmc_init(mem, bytes, BENCH_CAP, 8, &q) != MK_OK)
        die("mk_mpmc_init");
    uint64_t per = g_msgs / 4;
    mpmc_arg a[4];
    pthread_t t[4];
    atomic_store(&g_mpmc_go, 0);
    for (int i = 0; i < 4; i++) {
        a[i] = (mpmc_arg){boost, boost ? mem : (void *)q, i < 2, per, 0};
        pthread_create(&t[i], NULL, mpmc_thread, &a[i]);
    }
    uint64_t t0 = now_ns();
    atomic_store(&g_mpmc_go, 1);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    uint64_t t1 = now_ns();
    if (a[2].sum + a[3].sum != per * (per + 1)) die("mpmc: checksum");
    if (q) mk_mpmc_close(q);
    free(mem); /* boost's fixed-size queue has a trivial node pool here */
    return (double)(t1 - t0) / (double)(2 * per);
}

/* ---- object pool, array ---------------------------------------------------------------------- */

static double pool_ns(void) {
    size_t bytes = mk_objpool_footprint(1024, 64);
    void *mem;
    if (posix_memalign(&mem, 64, bytes)) die("memalign");
    mk_objpool *p;
    if (mk_objpool_init(mem, bytes, 1024, 64, &p) != MK_OK) die("pool");
    const uint64_t n = 5000000;
    uint32_t idx;
    uint64_t t0 = now_ns();
    for (uint64_t i = 0; i < n; i++) {
        if (mk_objpool_acquire(p, &idx) != MK_OK) die("acquire");
        mk_objpool_release(p, idx);
    }
    double r = (double)(now_ns() - t0) / (double)n;
    mk_objpool_close(p);
    free(mem);
    return r;
}

#define ARR_N ((size_t)4 << 20)
static uint32_t *g_idx;

static uint64_t sum_seq(const uint64_t *a) {
    uint64_t s = 0;
    for (size_t i = 0; i < ARR_N; i++) s += a[i];
    return s;
}
static uint64_t sum_rand(const uint64_t *a) {
    uint64_t s = 0;
    for (size_t i = 0; i < ARR_N; i++) s += a[g_idx[i]];
    return s;
}
static uint64_t (*volatile g_sum_seq)(const uint64_t *) = sum_seq;
static uint64_t (*volatile g_sum_rand)(const uint64_t *) = sum_rand;

static double time_sum(uint64_t (*fn)(const uint64_t *), const uint64_t *a, uint64_t want) {
    uint64_t t0 = now_ns(), s = fn(a);
    double r = (double)(now_ns() - t0) / (double)ARR_N;
    if (s != want) die("array: sum");
    return r;
}

/* ---- main ---------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    const char *json = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            g_runs = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--msgs") && i + 1 < argc)
            g_msgs = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--json") && i + 1 < argc)
            json = argv[++i];
        else {
            fprintf(stderr, "usage: bench-ipc [--runs R (1..63)] [--msgs N] [--json FILE]\n");
            return 2;
        }
    }
    if (g_runs < 1 || g_runs > 63 || g_msgs < 4) die("bad arguments");
    ck_push_fn = ck_push;
    ck_pop_fn = ck_pop;
    snprintf(g_seg, sizeof g_seg, "/mk-bench-ipc-%ld", (long)getpid());
    g_sync = shared_mem(sizeof(sync_area));
    printf("bench-ipc: %u runs, %" PRIu64 " messages per throughput run, capacity %d; "
           "medians (ratios: median of per-round ratios)\n",
           g_runs, g_msgs, BENCH_CAP);

    FILE *jf = json ? fopen(json, "w") : NULL;
    if (jf) fprintf(jf, "{\"runs\":%u,\"msgs\":%" PRIu64 ",\"rows\":[\n", g_runs, g_msgs);
    int first_row = 1;
#define ROW(label, val, ratio_label, ratio)                                                        \
    do {                                                                                           \
        printf("| %-44s | %9.2f | %-18s | %6.2f |\n", label, val, ratio_label, ratio);             \
        if (jf)                                                                                    \
            fprintf(jf, "%s{\"what\":\"%s\",\"ns\":%.3f,\"ratio_to\":\"%s\",\"ratio\":%.3f}",      \
                    first_row ? "" : ",\n", label, val, ratio_label, ratio);                       \
        first_row = 0;                                                                             \
    } while (0)

    printf("\n| measurement | ns (median) | ratio vs | ratio |\n|---|---:|---|---:|\n");
    static const size_t elems[] = {8, 64};
    for (int procs = 0; procs < 2; procs++)
        for (int e = 0; e < 2; e++) {
            double ns[P_COUNT][64], vs_boost[P_COUNT][64];
            for (unsigned r = 0; r < g_runs; r++) {
                for (int pe = 0; pe < P_COUNT; pe++)
                    ns[pe][r] = spsc_throughput((enum peer)pe, elems[e], procs);
                for (int pe = 0; pe < P_COUNT; pe++) vs_boost[pe][r] = ns[P_BOOST][r] / ns[pe][r];
            }
            for (int pe = 0; pe < P_COUNT; pe++) {
                char label[96];
                snprintf(label, sizeof label, "SPSC %zuB %s, %s (ns/msg)", elems[e],
                         procs ? "2 procs" : "2 threads", peer_name[pe]);
                ROW(label, median(ns[pe], g_runs), "speedup vs Boost",
                    median(vs_boost[pe], g_runs));
            }
        }
    for (int procs = 0; procs < 2; procs++) {
        double q[64], raw[64], ratio[64];
        for (unsigned r = 0; r < g_runs; r++) {
            raw[r] = raw_latency(procs);
            q[r] = queue_latency(procs);
            ratio[r] = q[r] / raw[r];
        }
        char label[96];
        snprintf(label, sizeof label, "one-way latency, raw line floor, %s",
                 procs ? "2 procs" : "2 threads");
        ROW(label, median(raw, g_runs), "-", 1.0);
        snprintf(label, sizeof label, "one-way latency, memkit SPSC, %s",
                 procs ? "2 procs" : "2 threads");
        ROW(label, median(q, g_runs), "x floor", median(ratio, g_runs));
    }
    {
        double m[64], b[64], ratio[64];
        for (unsigned r = 0; r < g_runs; r++) {
            m[r] = mpmc_throughput(0);
            b[r] = mpmc_throughput(1);
            ratio[r] = b[r] / m[r];
        }
        ROW("MPMC 2x2 threads, Boost queue (ns/msg)", median(b, g_runs), "-", 1.0);
        ROW("MPMC 2x2 threads, memkit mk_mpmc (ns/msg)", median(m, g_runs), "speedup vs Boost",
            median(ratio, g_runs));
    }
    {
        double p[64];
        for (unsigned r = 0; r < g_runs; r++) p[r] = pool_ns();
        ROW("object pool acquire+release, 1 thread (ns)", median(p, g_runs), "-", 1.0);
    }
    {
        mk_shm_config cfg = {.size = 64u << 20};
        mk_shm *seg;
        mk_shm_unlink(g_seg, 0); /* the queues' smaller segment */
        mk_array *arr;
        if (mk_shm_create(g_seg, &cfg, &seg) != MK_OK) die("segment");
        if (mk_array_create(seg, "bench.array", ARR_N, 8, 0, &arr) != MK_OK) die("array");
        uint64_t *shared = mk_array_data(arr), *priv = malloc(ARR_N * 8), want = 0;
        g_idx = malloc(ARR_N * 4);
        if (!priv || !g_idx) die("malloc");
        uint64_t x = 88172645463325252u;
        for (size_t i = 0; i < ARR_N; i++) {
            shared[i] = priv[i] = i * 3;
            want += i * 3;
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            g_idx[i] = (uint32_t)(x % ARR_N);
        }
        uint64_t want_r = 0;
        for (size_t i = 0; i < ARR_N; i++) want_r += priv[g_idx[i]];
        double ss[64], sp[64], rs[64], rp[64], rseq[64], rrand[64];
        for (unsigned r = 0; r < g_runs; r++) {
            sp[r] = time_sum(g_sum_seq, priv, want);
            ss[r] = time_sum(g_sum_seq, shared, want);
            rp[r] = time_sum(g_sum_rand, priv, want_r);
            rs[r] = time_sum(g_sum_rand, shared, want_r);
            rseq[r] = ss[r] / sp[r];
            rrand[r] = rs[r] / rp[r];
        }
        ROW("array sequential read, private malloc (ns)", median(sp, g_runs), "-", 1.0);
        ROW("array sequential read, mk_array (ns)", median(ss, g_runs), "x private",
            median(rseq, g_runs));
        ROW("array random read, private malloc (ns)", median(rp, g_runs), "-", 1.0);
        ROW("array random read, mk_array (ns)", median(rs, g_runs), "x private",
            median(rrand, g_runs));
        mk_array_close(arr);
        mk_shm_close(seg);
        free(priv);
    }
    mk_shm_unlink(g_seg, 0);
    if (jf) {
        fprintf(jf, "\n]}\n");
        fclose(jf);
    }
    return 0;
}
