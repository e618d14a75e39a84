/*
 * bench-shm-threads: threads of one process on one shared segment.
 *
 * Threads that share a handle get a cache each (thread handles, opened by
 * the library: src/shm/threads.c); a thread that opens a handle of its own
 * gets one too, by hand (a process-table slot, like another process). This
 * measures both, in one run, against two processes:
 *
 *   1 thread          one worker thread (the process has two threads, so the
 *                     handle's mutex is taken, unlike a single-threaded one)
 *   2 threads, 1 handle   both workers on the creator's handle
 *   2 threads, 2 handles  each worker opens its own handle
 *   2 processes       each forked worker opens its own handle
 *
 * Each worker: LIVE blocks of sizes log-uniform in [16, 4096), then OPS
 * operations (a free of a random live block and an allocation of a new
 * size, both drawn before the timing), on a fresh TLSF segment of 256 MiB
 * with the default cache budget, its mapping read page by page before the
 * timing. Reported: medians over --runs of ns per operation per worker, and
 * the total throughput over the 1-thread case's.
 *
 *   bench-shm-threads [--runs R] [--ops N] [--owned]
 *
 * --owned: every block is allocated with MK_SHM_OWNED (reclaimable if its
 * process dies), through the same caches on lists of their own.
 */
#include <memkit/shm.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { LIVE = 10000, MAX_RUNS = 101 };
static const char *const NAME = "/mk-bench-threads";

typedef enum { ONE_THREAD, SHARED_HANDLE, OWN_HANDLES, PROCESSES, N_MODES } mode;
static const char *const mode_name[N_MODES] = {"1 thread", "2 threads, 1 handle",
                                               "2 threads, 2 handles", "2 processes"};

static long g_ops = 2000000;
static unsigned g_flags;    /* MK_SHM_OWNED with --owned */
static mk_shm *g_shared;    /* the creator's handle */
static atomic_int *g_ready; /* workers set up, in a shared page (processes too) */
static int g_workers;       /* of this run */

typedef struct worker {
    unsigned id;
    int own_handle;
    double ns_op; /* out */
    int failed;   /* out */
} worker;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t next(uint64_t *x) {
    *x ^= *x << 13, *x ^= *x >> 7, *x ^= *x << 17;
    return *x;
}
static size_t log_uniform(uint64_t *x) {
    return (size_t)(16.0 * exp2((double)(next(x) >> 11) / 9007199254740992.0 * 8.0));
}

/* Read one byte of every page of the handle's mapping (a first touch costs
 * a fault of several microseconds on this VM; not what is measured). */
static void touch(mk_shm *s) {
    mk_shm_info in;
    if (mk_shm_get_info(s, &in) != MK_OK) return;
    void *base = mk_shm_region(s);
#ifdef MADV_POPULATE_WRITE
    (void)madvise(base, in.size, MADV_POPULATE_WRITE); /* its failure: the reads map them */
#endif
    const volatile unsigned char *b = (const volatile unsigned char *)base;
    for (size_t o = 0; o < in.size; o += 4096) (void)b[o];
}

static void *work(void *arg) {
    worker *w = arg;
    mk_shm *s = g_shared;
    if (w->own_handle && mk_shm_open(NAME, 0, &s) != MK_OK) {
        w->failed = 1;
        return NULL;
    }
    touch(s);
    uint64_t x = 0x9E3779B97F4A7C15u * (w->id + 1);
    mk_off *live = calloc(LIVE, sizeof *live);
    uint32_t *slot = malloc((size_t)g_ops / 2 * sizeof *slot);
    uint32_t *size = malloc((size_t)g_ops / 2 * sizeof *size);
    if (!live || !slot || !size) abort();
    for (long i = 0; i < g_ops / 2; i++) {
        slot[i] = (uint32_t)(next(&x) % LIVE);
        size[i] = (uint32_t)log_uniform(&x);
    }
    int failed = 0; /* a local: the workers' results share a cache line */
    for (int i = 0; i < LIVE && !failed; i++)
        failed = mk_shm_alloc_ex(s, log_uniform(&x), 0, g_flags, &live[i]) != MK_OK;
    /* Start together: one worker's set-up (a quarter of a million page
     * faults) must not run during another's timed phase. */
    atomic_fetch_add(g_ready, 1);
    while (atomic_load(g_ready) < g_workers) {
    }
    double t0 = now();
    for (long i = 0; i < g_ops / 2 && !failed; i++) {
        failed = mk_shm_free(s, live[slot[i]]) != MK_OK ||
                 mk_shm_alloc_ex(s, size[i], 0, g_flags, &live[slot[i]]) != MK_OK;
    }
    w->failed = failed;
    w->ns_op = (now() - t0) * 1e9 / (double)g_ops;
    for (int i = 0; i < LIVE; i++)
        if (live[i]) mk_shm_free(s, live[i]);
    if (w->own_handle) mk_shm_close(s);
    free(live), free(slot), free(size);
    return NULL;
}

/* One run of a mode on a fresh segment: ns per op, mean over the workers;
 * negative on failure. */
static double run(mode m) {
    mk_shm_unlink(NAME, 0);
    mk_shm_config cfg = {.size = (size_t)256 << 20, .policy = MK_POLICY_TLSF};
    if (mk_shm_create(NAME, &cfg, &g_shared) != MK_OK) return -1;
    int n = m == ONE_THREAD ? 1 : 2, failed = 0;
    g_workers = n;
    atomic_store(g_ready, 0);
    double sum = 0;
    worker w[2];
    for (int i = 0; i < n; i++)
        w[i] = (worker){.id = (unsigned)i, .own_handle = m != SHARED_HANDLE};
    if (m == PROCESSES) {
        worker *res =
            mmap(NULL, sizeof w, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (res == MAP_FAILED) return -1;
        fflush(NULL);
        for (int i = 0; i < n; i++) {
            if (fork() == 0) {
                res[i] = w[i];
                work(&res[i]);
                _exit(0);
            }
        }
        for (int i = 0; i < n; i++) {
            int st = 0;
            if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) failed = 1;
        }
        memcpy(w, res, sizeof w);
        munmap(res, sizeof w);
    } else {
        pthread_t t[2];
        for (int i = 0; i < n; i++)
            if (pthread_create(&t[i], NULL, work, &w[i]) != 0) return -1;
        for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    }
    for (int i = 0; i < n; i++) {
        failed |= w[i].failed;
        sum += w[i].ns_op;
    }
    if (mk_shm_validate(g_shared, NULL) != MK_OK) failed = 1;
    mk_shm_close(g_shared);
    mk_shm_unlink(NAME, 0);
    return failed ? -1 : sum / n;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int runs = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ops") && i + 1 < argc)
            g_ops = atol(argv[++i]);
        else if (!strcmp(argv[i], "--owned"))
            g_flags = MK_SHM_OWNED;
        else {
            fprintf(stderr, "usage: %s [--runs R (1..%d)] [--ops N (even, >= 2)] [--owned]\n",
                    argv[0], MAX_RUNS);
            return 2;
        }
    }
    if (runs < 1 || runs > MAX_RUNS || g_ops < 2) return 2;
    g_ready =
        mmap(NULL, sizeof *g_ready, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_ready == MAP_FAILED) return 1;
    double ns[N_MODES][MAX_RUNS];
    for (int r = 0; r < runs; r++) /* modes interleaved in each round */
        for (int m = 0; m < N_MODES; m++) {
            ns[m][r] = run((mode)m);
            if (ns[m][r] < 0) {
                fprintf(stderr, "bench-shm-threads: %s failed\n", mode_name[m]);
                return 1;
            }
        }
    printf("bench-shm-threads: %ld ops per worker, %d live blocks, sizes 16..4096, TLSF, "
           "%s blocks, medians of %d rounds\n",
           g_ops, LIVE, g_flags ? "owned" : "plain", runs);
    printf("%-22s %10s %14s\n", "", "ns/op", "throughput x1");
    double base = 0;
    for (int m = 0; m < N_MODES; m++) {
        qsort(ns[m], (size_t)runs, sizeof ns[m][0], cmp);
        double med = runs % 2 ? ns[m][runs / 2] : 0.5 * (ns[m][runs / 2 - 1] + ns[m][runs / 2]);
        if (m == ONE_THREAD) base = med;
        printf("%-22s %10.1f %14.2f\n", mode_name[m], med,
               (m == ONE_THREAD ? 1.0 : 2.0) * base / med);
    }
    return 0;
}
