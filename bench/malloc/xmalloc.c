/*
 * xmalloc: producer/consumer after Lever and Boreham's xmalloc-test (2000).
 * Producer threads allocate blocks in batches and hand each full batch to a
 * queue; consumer threads take batches and free every block in them. Every
 * free is a cross-thread free, and memory flows one way: an allocator that
 * does not give blocks freed by consumers back to the producers grows
 * without bound, and one that does it under a global lock serializes. The
 * queue has few slots, so producers wait for consumers: the live set stays
 * small and the time is the allocator's (one lock per batch of 512 blocks).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <pthread.h>
#include <stdlib.h>

#include "workload.h"

#define XM_BATCH        512
#define XM_BATCHES      8000 /* per producer, at scale 1 */
#define XM_SLOTS_PER_TH 4    /* queue slots per producer */
#define XM_MAX_SLOTS    (64 * XM_SLOTS_PER_TH)
#define XM_MIN          16
#define XM_MAX          512

typedef struct {
    void *p[XM_BATCH];
    uint32_t size[XM_BATCH];
    uint64_t tag[XM_BATCH];
} xm_batch;

/* Batch buffers live in static memory, not in the allocator under test. */
static xm_batch xm_buffers[XM_MAX_SLOTS];

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int empty[XM_MAX_SLOTS], n_empty;     /* stack of free buffers */
    int full[XM_MAX_SLOTS], head, n_full; /* FIFO of filled buffers */
    int slots, producers_left;
    long batches;
    uint64_t seed;
} xm_queue;

typedef struct {
    xm_queue *q;
    int index;
    uint64_t checksum;
    pthread_t tid;
} xm_thread;

static int take_empty(xm_queue *q) {
    pthread_mutex_lock(&q->lock);
    while (q->n_empty == 0) pthread_cond_wait(&q->changed, &q->lock);
    int b = q->empty[--q->n_empty];
    pthread_mutex_unlock(&q->lock);
    return b;
}

static void put_full(xm_queue *q, int b) {
    pthread_mutex_lock(&q->lock);
    q->full[(q->head + q->n_full++) % q->slots] = b;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
}

/* A filled batch, or -1 when every producer is done and the queue is empty. */
static int take_full(xm_queue *q) {
    int b = -1;
    pthread_mutex_lock(&q->lock);
    while (q->n_full == 0 && q->producers_left > 0) pthread_cond_wait(&q->changed, &q->lock);
    if (q->n_full > 0) {
        b = q->full[q->head];
        q->head = (q->head + 1) % q->slots;
        q->n_full--;
    }
    pthread_mutex_unlock(&q->lock);
    return b;
}

static void put_empty(xm_queue *q, int b) {
    pthread_mutex_lock(&q->lock);
    q->empty[q->n_empty++] = b;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
}

static void *producer(void *arg) {
    xm_thread *t = arg;
    xm_queue *q = t->q;
    wl_rng rng;
    wl_rng_seed(&rng, q->seed + (uint64_t)t->index);
    for (long n = 0; n < q->batches; n++) {
        xm_batch *b = &xm_buffers[take_empty(q)];
        for (int i = 0; i < XM_BATCH; i++) {
            b->size[i] = (uint32_t)wl_rng_range(&rng, XM_MIN, XM_MAX);
            b->tag[i] = wl_rng_next(&rng);
            b->p[i] = wl_xmalloc(b->size[i]);
            wl_stamp(b->p[i], b->size[i], b->tag[i]);
        }
        put_full(q, (int)(b - xm_buffers));
    }
    pthread_mutex_lock(&q->lock);
    q->producers_left--;
    pthread_cond_broadcast(&q->changed);
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

static void *consumer(void *arg) {
    xm_thread *t = arg;
    int idx;
    while ((idx = take_full(t->q)) >= 0) {
        xm_batch *b = &xm_buffers[idx];
        for (int i = 0; i < XM_BATCH; i++) {
            t->checksum += wl_check(b->p[i], b->size[i], b->tag[i], "xmalloc");
            free(b->p[i]);
        }
        put_empty(t->q, idx);
    }
    return NULL;
}

static void start(xm_thread *t, xm_queue *q, int index, void *(*fn)(void *)) {
    *t = (xm_thread){.q = q, .index = index};
    if (pthread_create(&t->tid, NULL, fn, t)) wl_die("pthread_create failed", NULL);
}

int wl_xmalloc_test(const wl_options *opts) {
    static xm_queue q = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};
    xm_thread prod[64], cons[64];
    int n = opts->threads;
    q.slots = n * XM_SLOTS_PER_TH;
    q.producers_left = n;
    q.batches = wl_scaled(opts, XM_BATCHES);
    q.seed = opts->seed;
    for (int i = 0; i < q.slots; i++) q.empty[q.n_empty++] = i;
    for (int i = 0; i < n; i++) start(&cons[i], &q, i, consumer);
    for (int i = 0; i < n; i++) start(&prod[i], &q, i, producer);
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) pthread_join(prod[i].tid, NULL);
    for (int i = 0; i < n; i++) {
        pthread_join(cons[i].tid, NULL);
        sum += cons[i].checksum;
    }
    wl_report("xmalloc", sum);
    return 0;
}
