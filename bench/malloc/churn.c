/*
 * churn: one thread, random malloc/calloc/free/realloc over a live set of
 * up to 20,000 blocks with a size mix like real programs (70% up to 128
 * bytes, 20% up to 2 KiB, 9% up to 32 KiB, 1% up to 256 KiB). Checks that
 * calloc zeroes and that realloc keeps the contents. The fast paths of the
 * size classes, coalescing and realloc in place or by copy.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <stdlib.h>

#include "workload.h"

#define CHURN_SLOTS 20000
#define CHURN_OPS   6000000 /* at scale 1 */
#define CHURN_MAX   262144

typedef struct {
    void *p;
    size_t size;
    uint64_t tag;
} churn_slot;

static void check_zeroed(const unsigned char *p, size_t size) {
    if (p[0] != 0 || p[size / 2] != 0 || p[size - 1] != 0)
        wl_die("calloc returned memory that is not zero", NULL);
}

static void allocate(churn_slot *s, wl_rng *rng) {
    s->size = wl_mixed_size(rng, CHURN_MAX);
    s->tag = wl_rng_next(rng);
    if (wl_rng_next(rng) % 10 == 0) {
        s->p = calloc(1, s->size);
        if (!s->p) wl_die("out of memory", NULL);
        check_zeroed(s->p, s->size);
    } else {
        s->p = wl_xmalloc(s->size);
    }
    wl_stamp(s->p, s->size, s->tag);
}

static uint64_t reallocate(churn_slot *s, wl_rng *rng) {
    size_t size = wl_mixed_size(rng, CHURN_MAX);
    void *p = realloc(s->p, size);
    if (!p) wl_die("out of memory", NULL);
    uint64_t sum = wl_check_head(p, s->size, size, s->tag, "churn realloc");
    s->p = p;
    s->size = size;
    s->tag = wl_rng_next(rng);
    wl_stamp(p, size, s->tag);
    return sum;
}

static uint64_t churn_op(churn_slot *s, wl_rng *rng) {
    if (!s->p) {
        allocate(s, rng);
        return 0;
    }
    if (wl_rng_next(rng) % 2) return reallocate(s, rng);
    uint64_t sum = wl_check(s->p, s->size, s->tag, "churn");
    free(s->p);
    s->p = NULL;
    return sum;
}

int wl_churn(const wl_options *opts) {
    churn_slot *slots = calloc(CHURN_SLOTS, sizeof *slots);
    if (!slots) wl_die("out of memory", NULL);
    wl_rng rng;
    wl_rng_seed(&rng, opts->seed);
    uint64_t sum = 0;
    long ops = wl_scaled(opts, CHURN_OPS);
    for (long i = 0; i < ops; i++) sum += churn_op(&slots[wl_rng_next(&rng) % CHURN_SLOTS], &rng);
    for (int i = 0; i < CHURN_SLOTS; i++) {
        if (!slots[i].p) continue;
        sum += wl_check(slots[i].p, slots[i].size, slots[i].tag, "churn");
        free(slots[i].p);
    }
    free(slots);
    wl_report("churn", sum);
    return 0;
}
