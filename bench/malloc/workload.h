/*
 * malloc-workload: allocator benchmarks that use only the C library's
 * malloc family, so that any allocator can be swapped in with LD_PRELOAD.
 * Shared helpers: seeded random numbers, stamping and checking blocks (so a
 * broken allocator is caught and every run prints a comparable checksum),
 * option parsing and the resident set size.
 */
#ifndef MALLOC_WORKLOAD_H
#define MALLOC_WORKLOAD_H

#include <stddef.h>
#include <stdint.h>

/* xoshiro256** seeded by splitmix64: the same seed gives the same run. */
typedef struct {
    uint64_t s[4];
} wl_rng;

void wl_rng_seed(wl_rng *r, uint64_t seed);
uint64_t wl_rng_next(wl_rng *r);
/* Uniform in [lo, hi] (inclusive). */
uint64_t wl_rng_range(wl_rng *r, uint64_t lo, uint64_t hi);

/* A size drawn from a mix that looks like real programs: mostly small
 * objects, some medium, a few large (up to max_size). */
size_t wl_mixed_size(wl_rng *r, size_t max_size);

/* Writes tag into the first bytes of p, its low byte into the last byte and
 * one byte into every 4 KiB page in between, so the block is really used (its
 * pages are faulted in, as a real program would). */
void wl_stamp(void *p, size_t size, uint64_t tag);
/* Checks the head tag and the tail byte written by wl_stamp; exits with a
 * message when they differ (the allocator handed out overlapping blocks or
 * realloc lost data). Returns a value to add to the checksum. */
uint64_t wl_check(const void *p, size_t size, uint64_t tag, const char *where);
/* Checks only the head (after a realloc that moved or resized the block,
 * the tail byte is gone). */
uint64_t wl_check_head(const void *p, size_t old_size, size_t new_size, uint64_t tag,
                       const char *where);

/* Exits with a message (allocation failure, thread failure, bad input). */
void wl_die(const char *what, const char *detail);
void *wl_xmalloc(size_t size);

/* Resident set size of this process in KiB (from /proc/self/statm). */
long wl_rss_kib(void);

/* Options shared by every workload: --seed, --scale (multiplies the amount
 * of work; --quick runs use a fraction), --threads. Unknown options are an
 * error. */
typedef struct {
    uint64_t seed;
    double scale;
    int threads;
    const char *file; /* replay: the prepared trace; prep: input and output */
    const char *out;
} wl_options;

/* Scales a count by opts->scale, never below 1. */
long wl_scaled(const wl_options *opts, long count);

/* Prints the result line every workload ends with: the workload, the
 * checksum and which library provides malloc (to check the preload). */
void wl_report(const char *workload, uint64_t checksum);

int wl_larson(const wl_options *opts);
int wl_xmalloc_test(const wl_options *opts);
int wl_cache_scratch(const wl_options *opts);
int wl_churn(const wl_options *opts);
int wl_large_blocks(const wl_options *opts);
int wl_replay(const wl_options *opts);
int wl_prep_trace(const wl_options *opts);

#endif
