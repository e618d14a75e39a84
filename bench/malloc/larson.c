/*
 * larson: a server simulation after Larson and Krishnan (1998). Each worker
 * thread owns an array of live blocks and replaces random ones (free the old
 * block, allocate a new one of 8..1000 bytes). Workers live for one
 * generation; the next generation's threads inherit the arrays, so most frees
 * are of blocks a dead thread allocated. Halfway through a generation the
 * workers pass their arrays round (after a barrier), so blocks are also freed
 * while the thread that allocated them is still running: the remote-free
 * path of a thread-caching allocator.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <pthread.h>
#include <stdlib.h>

#include "workload.h"

#define LARSON_SLOTS       4000
#define LARSON_GENERATIONS 8
#define LARSON_OPS         1000000 /* per thread and generation, at scale 1 */
#define LARSON_MIN         8
#define LARSON_MAX         1000

typedef struct {
    void *p;
    size_t size;
    uint64_t tag;
} larson_slot;

typedef struct {
    larson_slot *arrays[64];
    int threads;
    long ops;
    pthread_barrier_t halfway;
} larson_shared;

typedef struct {
    larson_shared *shared;
    int index, generation;
    uint64_t seed, checksum;
    pthread_t tid;
} larson_worker;

static void fill_slot(larson_slot *s, wl_rng *rng) {
    s->size = wl_rng_range(rng, LARSON_MIN, LARSON_MAX);
    s->tag = wl_rng_next(rng);
    s->p = wl_xmalloc(s->size);
    wl_stamp(s->p, s->size, s->tag);
}

static uint64_t replace_random(larson_slot *array, wl_rng *rng, long ops) {
    uint64_t sum = 0;
    for (long i = 0; i < ops; i++) {
        larson_slot *s = &array[wl_rng_next(rng) % LARSON_SLOTS];
        sum += wl_check(s->p, s->size, s->tag, "larson");
        free(s->p);
        fill_slot(s, rng);
    }
    return sum;
}

static void *larson_thread(void *arg) {
    larson_worker *w = arg;
    larson_shared *sh = w->shared;
    wl_rng rng;
    wl_rng_seed(&rng, w->seed);
    int first = (w->index + w->generation) % sh->threads;
    w->checksum = replace_random(sh->arrays[first], &rng, sh->ops / 2);
    /* Nobody may switch before everybody is done with the first array. */
    pthread_barrier_wait(&sh->halfway);
    int second = (first + 1) % sh->threads;
    w->checksum += replace_random(sh->arrays[second], &rng, sh->ops - sh->ops / 2);
    return NULL;
}

static uint64_t run_generation(larson_shared *sh, int generation, uint64_t seed) {
    larson_worker workers[64];
    uint64_t sum = 0;
    for (int i = 0; i < sh->threads; i++) {
        workers[i] = (larson_worker){.shared = sh, .index = i, .generation = generation};
        workers[i].seed = seed + (uint64_t)generation * 1000 + (uint64_t)i;
        if (pthread_create(&workers[i].tid, NULL, larson_thread, &workers[i]))
            wl_die("pthread_create failed", NULL);
    }
    for (int i = 0; i < sh->threads; i++) {
        pthread_join(workers[i].tid, NULL);
        sum += workers[i].checksum;
    }
    return sum;
}

static uint64_t free_all(larson_shared *sh) {
    uint64_t sum = 0;
    for (int t = 0; t < sh->threads; t++) {
        for (int i = 0; i < LARSON_SLOTS; i++) {
            larson_slot *s = &sh->arrays[t][i];
            sum += wl_check(s->p, s->size, s->tag, "larson");
            free(s->p);
        }
        free(sh->arrays[t]);
    }
    return sum;
}

int wl_larson(const wl_options *opts) {
    larson_shared sh = {.threads = opts->threads, .ops = wl_scaled(opts, LARSON_OPS)};
    wl_rng rng;
    wl_rng_seed(&rng, opts->seed);
    /* The main thread allocates the first blocks: generation 0 frees them. */
    for (int t = 0; t < sh.threads; t++) {
        sh.arrays[t] = wl_xmalloc(LARSON_SLOTS * sizeof(larson_slot));
        for (int i = 0; i < LARSON_SLOTS; i++) fill_slot(&sh.arrays[t][i], &rng);
    }
    pthread_barrier_init(&sh.halfway, NULL, (unsigned)sh.threads);
    uint64_t sum = 0;
    for (int g = 0; g < LARSON_GENERATIONS; g++) sum += run_generation(&sh, g, opts->seed);
    pthread_barrier_destroy(&sh.halfway);
    sum += free_all(&sh);
    wl_report("larson", sum);
    return 0;
}
