/*
 * Multi-threaded tests of the process heap (run under ThreadSanitizer too).
 *
 *   heap_stress stress SEED [ROUNDS] THREADS threads allocate blocks of random
 *       sizes, fill them with a tag, and hand most of them to a random other
 *       thread through a mailbox; the receiver checks the tag and frees the
 *       block (a cross-thread free). Producer/consumer and all-to-all at once.
 *   heap_stress thread-exit SEED  waves of short-lived threads allocate and
 *       exit, leaving blocks for the main thread to free; dead threads' heaps
 *       must be reused (the heap count stays small) and everything must come
 *       back (current bytes return to the start).
 *   heap_stress fork SEED         threads keep allocating while the main
 *       thread forks; each child allocates, frees blocks made before the
 *       fork by every thread, and exits 0 only if every check passed.
 *
 * Exit status 0 on success; a failed check prints it and exits 1.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memkit/heap.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "heap_stress: check failed: %s (line %d)\n", #cond, __LINE__);         \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

enum { THREADS = 4, BOX = 64 };

static uint64_t g_seed;
static int g_rounds = 40000;

/* ThreadSanitizer cannot start threads in the child of a multi-threaded
 * fork; the child then works without them. */
#include "sanitizer.h"

static uint64_t next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A block starts with its size and a tag; the rest is the tag's low byte. */
typedef struct hdr {
    size_t size;
    uint64_t tag;
} hdr;

static void *make(uint64_t *rng, uint64_t tag) {
    unsigned r = (unsigned)(next(rng) % 100);
    size_t n = sizeof(hdr) + (r < 70   ? next(rng) % 200
                              : r < 97 ? next(rng) % 6000
                                       : next(rng) % 300000);
    hdr *h = (r % 10 == 0) ? mk_memalign(64, n) : mk_malloc(n);
    CHECK(h != NULL);
    h->size = n;
    h->tag = tag;
    memset(h + 1, (int)(tag & 0xff), n - sizeof *h);
    return h;
}

static void check_and_free(void *p) {
    hdr *h = p;
    const unsigned char *c = (const unsigned char *)(h + 1);
    for (size_t i = 0; i < h->size - sizeof *h; i++) CHECK(c[i] == (h->tag & 0xff));
    CHECK(mk_malloc_usable_size(p) >= h->size);
    mk_free(p);
}

/* ---- stress: mailboxes between threads ---- */

typedef struct mailbox {
    pthread_mutex_t lock;
    void *items[BOX];
    int n;
} mailbox;

static mailbox boxes[THREADS];
static _Atomic int running;

static void *worker(void *arg) {
    int me = (int)(intptr_t)arg;
    uint64_t rng = g_seed * 31 + (uint64_t)me + 1;
    void *local[32] = {0};
    for (int round = 0; round < g_rounds; round++) {
        /* keep a few blocks locally too (local frees) */
        int k = (int)(next(&rng) % 32);
        if (local[k]) check_and_free(local[k]);
        local[k] = make(&rng, next(&rng));
        /* send one to another thread */
        int to = (int)(next(&rng) % THREADS);
        void *p = make(&rng, next(&rng));
        pthread_mutex_lock(&boxes[to].lock);
        if (boxes[to].n < BOX) {
            boxes[to].items[boxes[to].n++] = p;
            p = NULL;
        }
        pthread_mutex_unlock(&boxes[to].lock);
        if (p) check_and_free(p);
        /* receive */
        void *got[BOX];
        int n = 0;
        pthread_mutex_lock(&boxes[me].lock);
        n = boxes[me].n;
        memcpy(got, boxes[me].items, sizeof(void *) * (size_t)n);
        boxes[me].n = 0;
        pthread_mutex_unlock(&boxes[me].lock);
        for (int i = 0; i < n; i++) check_and_free(got[i]);
    }
    for (int k = 0; k < 32; k++)
        if (local[k]) check_and_free(local[k]);
    return NULL;
}

static int run_stress(void) {
    mk_heap_stats a, b;
    CHECK(mk_heap_get_stats(NULL, &a) == MK_OK);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_mutex_init(&boxes[i].lock, NULL);
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < THREADS; i++)
        for (int j = 0; j < boxes[i].n; j++) check_and_free(boxes[i].items[j]);
    CHECK(mk_heap_get_stats(NULL, &b) == MK_OK);
    CHECK(b.current == a.current);
    CHECK(b.n_alloc - a.n_alloc == b.n_free - a.n_free);
    CHECK(mk_heap_trim() == MK_OK);
    CHECK(mk_heap_get_stats(NULL, &b) == MK_OK);
    CHECK(b.dirty == 0);
    printf("heap_stress stress: ok (%llu allocations)\n",
           (unsigned long long)(b.n_alloc - a.n_alloc));
    return 0;
}

/* ---- thread exit ---- */

enum { WAVE_THREADS = 2, WAVES = 60, LEFT = 200 };
static void *left[WAVES][WAVE_THREADS][LEFT];

typedef struct wave_arg {
    int wave, idx;
} wave_arg;

static void *short_lived(void *arg) {
    wave_arg *w = arg;
    uint64_t rng = g_seed + (uint64_t)w->wave * 7 + (uint64_t)w->idx;
    void *mine[100];
    for (int i = 0; i < 100; i++) mine[i] = make(&rng, next(&rng));
    for (int i = 0; i < LEFT; i++) left[w->wave][w->idx][i] = make(&rng, next(&rng));
    /* half freed here, the other half outlives the thread (freed by main) */
    for (int i = 0; i < 100; i += 2) check_and_free(mine[i]);
    for (int i = 1; i < 100; i += 2) {
        check_and_free(left[w->wave][w->idx][i]);
        left[w->wave][w->idx][i] = mine[i];
    }
    return NULL;
}

static int run_thread_exit(void) {
    mk_heap_stats a, b;
    CHECK(mk_heap_get_stats(NULL, &a) == MK_OK);
    for (int w = 0; w < WAVES; w++) {
        pthread_t t[WAVE_THREADS];
        wave_arg args[WAVE_THREADS];
        for (int i = 0; i < WAVE_THREADS; i++) {
            args[i] = (wave_arg){w, i};
            CHECK(pthread_create(&t[i], NULL, short_lived, &args[i]) == 0);
        }
        for (int i = 0; i < WAVE_THREADS; i++) pthread_join(t[i], NULL);
        /* free the previous wave's leftovers from here (remote frees into
         * heaps whose threads are gone, now reused by this wave's threads) */
        if (w > 0)
            for (int i = 0; i < WAVE_THREADS; i++)
                for (int j = 0; j < LEFT; j++) check_and_free(left[w - 1][i][j]);
    }
    for (int i = 0; i < WAVE_THREADS; i++)
        for (int j = 0; j < LEFT; j++) check_and_free(left[WAVES - 1][i][j]);
    CHECK(mk_heap_get_stats(NULL, &b) == MK_OK);
    /* dead threads' heaps were reused: not one heap per thread started */
    CHECK(b.heaps <= a.heaps + WAVE_THREADS + 1);
    CHECK(b.current == a.current);
    CHECK(mk_heap_trim() == MK_OK);
    CHECK(mk_heap_get_stats(NULL, &b) == MK_OK);
    CHECK(b.dirty == 0);
    printf("heap_stress thread-exit: ok (%llu heaps for %d threads)\n",
           (unsigned long long)(b.heaps - a.heaps), WAVES * WAVE_THREADS);
    return 0;
}

/* ---- fork ---- */

enum { FORKS = 12, KEEP = 256 };
static void *kept[THREADS][KEEP];
static pthread_mutex_t kept_lock[THREADS];

static void *busy(void *arg) {
    int me = (int)(intptr_t)arg;
    uint64_t rng = g_seed * 17 + (uint64_t)me;
    while (running) {
        int k = (int)(next(&rng) % KEEP);
        void *p = make(&rng, next(&rng));
        pthread_mutex_lock(&kept_lock[me]);
        void *old = kept[me][k];
        kept[me][k] = p;
        pthread_mutex_unlock(&kept_lock[me]);
        if (old) check_and_free(old);
    }
    return NULL;
}

/* In the child: only this thread exists. */
static int child_work(void) {
    uint64_t rng = g_seed ^ (uint64_t)getpid();
    void *mine[500];
    for (int i = 0; i < 500; i++) mine[i] = make(&rng, next(&rng));
    for (int t = 0; t < THREADS; t++)
        for (int k = 0; k < KEEP; k++)
            if (kept[t][k]) { /* made by threads that are gone */
                check_and_free(kept[t][k]);
                kept[t][k] = NULL;
            }
    for (int i = 0; i < 500; i++) check_and_free(mine[i]);
    if (MK_TSAN) return mk_heap_trim() == MK_OK ? 0 : 1;
    pthread_t th; /* threads work in the child too */
    running = 1;
    if (pthread_create(&th, NULL, busy, (void *)(intptr_t)0) != 0) return 1;
    usleep(1000);
    running = 0;
    pthread_join(th, NULL);
    return mk_heap_trim() == MK_OK ? 0 : 1;
}

static int run_fork(void) {
    pthread_t t[THREADS - 1];
    running = 1;
    for (int i = 0; i < THREADS; i++) pthread_mutex_init(&kept_lock[i], NULL);
    for (int i = 1; i < THREADS; i++)
        CHECK(pthread_create(&t[i - 1], NULL, busy, (void *)(intptr_t)i) == 0);
    uint64_t rng = g_seed;
    for (int f = 0; f < FORKS; f++) {
        for (int k = 0; k < KEEP; k++) {
            if (kept[0][k]) check_and_free(kept[0][k]);
            kept[0][k] = make(&rng, next(&rng));
        }
        /* the other threads' tables are read in the child: lock them over fork */
        for (int i = 1; i < THREADS; i++) pthread_mutex_lock(&kept_lock[i]);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) _exit(child_work());
        for (int i = 1; i < THREADS; i++) pthread_mutex_unlock(&kept_lock[i]);
        int st = 0;
        CHECK(waitpid(pid, &st, 0) == pid);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    running = 0;
    for (int i = 1; i < THREADS; i++) pthread_join(t[i - 1], NULL);
    for (int i = 0; i < THREADS; i++)
        for (int k = 0; k < KEEP; k++)
            if (kept[i][k]) check_and_free(kept[i][k]);
    printf("heap_stress fork: ok (%d forks)\n", FORKS);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: heap_stress stress|thread-exit|fork [SEED]\n");
        return 2;
    }
    g_seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 12345;
    if (argc > 3) g_rounds = atoi(argv[3]);
    printf("heap_stress %s: seed %llu\n", argv[1], (unsigned long long)g_seed);
    fflush(stdout);
    if (strcmp(argv[1], "stress") == 0) return run_stress();
    if (strcmp(argv[1], "thread-exit") == 0) return run_thread_exit();
    if (strcmp(argv[1], "fork") == 0) return run_fork();
    return 2;
}
