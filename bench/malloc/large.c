/*
 * large: big buffers that come and go. Eight slots hold blocks of 256 KiB to
 * 32 MiB (log-uniform); each step frees a random slot's block and allocates a new one of a
 * random size, touching every page of it (one byte per page: the cost is
 * the page faults, not the writes). At the end everything is freed and the
 * resident set is measured twice: at once, and "settled" after 200 ms and a
 * few small allocations (allocators that return memory after a delay get
 * the chance to do it). Prints
 *   baseline_kib=B after_free_kib=A settled_kib=S
 * where B is the resident set before the first large block.
 *
 * The two costs pull against each other: an allocator that keeps freed
 * pages is fast here but holds memory; one that gives them back at once
 * pays a fault per page when it reuses them (about 10 us each on a VM).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "workload.h"

#define LARGE_SLOTS     8
#define LARGE_STEPS     300 /* at scale 1 */
#define LARGE_MIN_SHIFT 18  /* sizes from 256 KiB ... */
#define LARGE_MAX_SHIFT 25  /* ... to 32 MiB, log-uniform */

typedef struct {
    void *p;
    size_t size;
    uint64_t tag;
} large_slot;

static uint64_t release(large_slot *s) {
    if (!s->p) return 0;
    uint64_t sum = wl_check(s->p, s->size, s->tag, "large");
    free(s->p);
    s->p = NULL;
    return sum;
}

/* Log-uniform: as many blocks of 256-512 KiB as of 16-32 MiB. */
static size_t large_size(wl_rng *rng) {
    unsigned shift = (unsigned)wl_rng_range(rng, LARGE_MIN_SHIFT, LARGE_MAX_SHIFT - 1);
    return (size_t)wl_rng_range(rng, (uint64_t)1 << shift, ((uint64_t)2 << shift) - 1);
}

static void settle(void) {
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    for (int i = 0; i < 100; i++) {
        void *p = wl_xmalloc(64 + (size_t)i);
        wl_stamp(p, 64, (uint64_t)i);
        free(p);
    }
}

int wl_large_blocks(const wl_options *opts) {
    large_slot slots[LARGE_SLOTS] = {0};
    wl_rng rng;
    wl_rng_seed(&rng, opts->seed);
    free(wl_xmalloc(64)); /* the allocator's own start-up is part of the baseline */
    long baseline = wl_rss_kib();
    uint64_t sum = 0;
    long steps = wl_scaled(opts, LARGE_STEPS);
    for (long i = 0; i < steps; i++) {
        large_slot *s = &slots[wl_rng_next(&rng) % LARGE_SLOTS];
        sum += release(s);
        s->size = large_size(&rng);
        s->tag = wl_rng_next(&rng);
        s->p = wl_xmalloc(s->size);
        wl_stamp(s->p, s->size, s->tag);
    }
    for (int i = 0; i < LARGE_SLOTS; i++) sum += release(&slots[i]);
    long after = wl_rss_kib();
    settle();
    printf("baseline_kib=%ld after_free_kib=%ld settled_kib=%ld\n", baseline, after, wl_rss_kib());
    wl_report("large", sum);
    return 0;
}
