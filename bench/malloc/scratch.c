/*
 * scratch: passive false sharing, after Hoard's cache-scratch (Berger et al.
 * 2000). The main thread allocates one small object per worker, one after
 * the other, so they share a cache line. Each worker frees its object and
 * then repeatedly allocates an object of the same size, writes it many
 * times and frees it. An allocator that hands the freed object (or its
 * neighbours) to the worker that freed it makes the workers write the same
 * cache line from different cores, and the line bounces between them; one
 * that gives each thread memory from its own pages does not.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "workload.h"

#define SCRATCH_OBJ         8
#define SCRATCH_ITERATIONS  10000 /* at scale 1 */
#define SCRATCH_REPETITIONS 20000

typedef struct {
    void *initial;
    long iterations;
    uint64_t checksum;
    pthread_t tid;
} scratch_worker;

/* Writes every byte of the object `repetitions` times; volatile so the
 * compiler keeps every store (the stores are what the test measures). */
static uint64_t write_object(void *obj) {
    volatile unsigned char *p = obj;
    for (int r = 0; r < SCRATCH_REPETITIONS; r++)
        for (int i = 0; i < SCRATCH_OBJ; i++) p[i] = (unsigned char)(p[i] + 1);
    uint64_t sum = 0;
    for (int i = 0; i < SCRATCH_OBJ; i++) sum += p[i];
    return sum;
}

static void *scratch_thread(void *arg) {
    scratch_worker *w = arg;
    free(w->initial);
    for (long it = 0; it < w->iterations; it++) {
        void *obj = wl_xmalloc(SCRATCH_OBJ);
        memset(obj, 0, SCRATCH_OBJ);
        w->checksum += write_object(obj);
        free(obj);
    }
    return NULL;
}

int wl_cache_scratch(const wl_options *opts) {
    scratch_worker workers[64];
    int n = opts->threads;
    /* Allocated back to back by one thread: neighbours on one cache line. */
    for (int i = 0; i < n; i++) {
        workers[i] = (scratch_worker){.initial = wl_xmalloc(SCRATCH_OBJ)};
        workers[i].iterations = wl_scaled(opts, SCRATCH_ITERATIONS);
    }
    for (int i = 0; i < n; i++)
        if (pthread_create(&workers[i].tid, NULL, scratch_thread, &workers[i]))
            wl_die("pthread_create failed", NULL);
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(workers[i].tid, NULL);
        sum += workers[i].checksum;
    }
    wl_report("scratch", sum);
    return 0;
}
