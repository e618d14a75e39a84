/*
 * pool-demo: the six fit policies of the block engine side by side.
 *
 * Every policy gets its own 32 MiB pool and replays the same seeded
 * workload: a program-like mix of short-lived small blocks and
 * longer-lived larger ones, with reallocs. The table shows what each
 * policy made of it: peak memory, fragmentation, failures and time.
 *
 * Until the shared-memory heap exists this is memkit's `make run`.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memkit/memkit.h"

enum { SLOTS = 8192, OPS = 400000, POOL_MB = 32 };

static uint64_t rng_state;
static uint64_t rng(void) { /* splitmix64: replayable from the seed */
    uint64_t z = (rng_state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Mostly small blocks, some medium, a few large: like real programs. */
static size_t pick_size(void) {
    uint64_t r = rng() % 100;
    if (r < 70) return 8 + rng() % 120;
    if (r < 95) return 128 + rng() % 1920;
    return 2048 + rng() % 30000;
}

typedef struct result {
    mk_stats end;
    uint64_t peak_live; /* bytes requested, at their peak */
    double seconds;
    int validate;
} result;

static double now(void) {
    struct timespec t;
    timespec_get(&t, TIME_UTC);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int run_policy(mk_policy policy, unsigned flags, uint64_t seed, result *res) {
    mk_pool *pool;
    mk_pool_config cfg = {.size = (size_t)POOL_MB << 20, .policy = policy, .flags = flags};
    int rc = mk_pool_create(&cfg, &pool);
    if (rc != MK_OK) return rc;
    static void *ptr[SLOTS];
    static size_t len[SLOTS];
    memset(ptr, 0, sizeof ptr);
    uint64_t live = 0;
    rng_state = seed;
    res->peak_live = 0;
    double t0 = now();
    for (int i = 0; i < OPS; i++) {
        unsigned k = (unsigned)(rng() % SLOTS);
        if (ptr[k] && rng() % 4 == 0) {
            size_t n = pick_size();
            void *q = mk_pool_realloc(pool, ptr[k], n, NULL);
            if (q) {
                live += n - len[k];
                ptr[k] = q;
                len[k] = n;
            }
        } else if (ptr[k]) {
            mk_pool_free(pool, ptr[k]);
            live -= len[k];
            ptr[k] = NULL;
        } else {
            size_t n = pick_size();
            ptr[k] = mk_pool_malloc(pool, n, NULL); /* failures are counted by the pool */
            if (ptr[k]) {
                memset(ptr[k], (int)k, n < 64 ? n : 64);
                live += n;
                len[k] = n;
            }
        }
        if (live > res->peak_live) res->peak_live = live;
    }
    res->seconds = now() - t0;
    res->validate = mk_pool_validate(pool, NULL);
    mk_pool_stats(pool, &res->end);
    return mk_pool_destroy(pool);
}

int main(int argc, char **argv) {
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 0) : 42;
    printf("memkit %s: the block engine's six fit policies on one workload\n", MK_VERSION_STRING);
    printf("%d operations (alloc / free / realloc), %d slots, %d MiB pool each, seed %" PRIu64
           "\n\n",
           OPS, SLOTS, POOL_MB, seed);
    printf("%-11s %10s %10s %9s %9s %8s %8s %8s %9s\n", "policy", "peak used", "peak live",
           "overhead", "frag now", "blocks", "failed", "ns/op", "validate");
    static const struct {
        mk_policy policy;
        unsigned flags;
    } configs[] = {
        {MK_POLICY_FIRST_FIT, 0},
        {MK_POLICY_NEXT_FIT, 0},
        {MK_POLICY_BEST_FIT, 0},
        {MK_POLICY_WORST_FIT, 0},
        {MK_POLICY_TLSF, 0},
        {MK_POLICY_BUDDY, 0},
        {MK_POLICY_TLSF, MK_POOL_QUICK},
        {MK_POLICY_BEST_FIT, MK_POOL_QUICK},
    };
    int status = 0;
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        result r;
        char name[32];
        snprintf(name, sizeof name, "%s%s", mk_policy_name(configs[c].policy),
                 configs[c].flags & MK_POOL_QUICK ? "+quick" : "");
        int rc = run_policy(configs[c].policy, configs[c].flags, seed, &r);
        if (rc != MK_OK) {
            printf("%-11s error: %s\n", name, mk_strerror(rc));
            status = 1;
            continue;
        }
        printf("%-11s %9.2fM %9.2fM %8.3fx %9.3f %8" PRIu64 " %8" PRIu64 " %8.0f %9s\n", name,
               (double)r.end.peak_used / 1048576.0, (double)r.peak_live / 1048576.0,
               (double)r.end.peak_used / (double)r.peak_live, r.end.fragmentation,
               r.end.blocks_used + r.end.blocks_free, r.end.n_failed, r.seconds * 1e9 / OPS,
               r.validate == MK_OK ? "ok" : mk_strerror(r.validate));
        if (r.validate != MK_OK) status = 1;
    }
    printf("\n+quick:    with deferred coalescing of small blocks (MK_POOL_QUICK)\n"
           "peak used: bytes in live blocks at the peak, headers and rounding included\n"
           "overhead:  peak used / peak live (what the policy costs over what was asked)\n"
           "frag now:  1 - largest free block / all free bytes, at the end\n");
    return status;
}
