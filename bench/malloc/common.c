/* Helpers shared by the malloc workloads (see workload.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "workload.h"

#define WL_PAGE 4096

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void wl_rng_seed(wl_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t wl_rng_next(wl_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t wl_rng_range(wl_rng *r, uint64_t lo, uint64_t hi) {
    return lo + wl_rng_next(r) % (hi - lo + 1);
}

size_t wl_mixed_size(wl_rng *r, size_t max_size) {
    uint64_t pick = wl_rng_next(r) % 100;
    size_t size;
    if (pick < 70)
        size = wl_rng_range(r, 8, 128);
    else if (pick < 90)
        size = wl_rng_range(r, 129, 2048);
    else if (pick < 99)
        size = wl_rng_range(r, 2049, 32768);
    else
        size = wl_rng_range(r, 32769, 262144);
    return size < max_size ? size : max_size;
}

void wl_stamp(void *p, size_t size, uint64_t tag) {
    unsigned char *b = p;
    if (size == 0) return;
    memcpy(b, &tag, size < sizeof tag ? size : sizeof tag);
    for (size_t off = WL_PAGE; off < size; off += WL_PAGE) b[off] = (unsigned char)(tag >> 8);
    if (size > sizeof tag) b[size - 1] = (unsigned char)tag; /* not over the head */
}

static void mismatch(const char *where) {
    fprintf(stderr, "malloc-workload: block contents damaged (%s)\n", where);
    exit(3);
}

uint64_t wl_check_head(const void *p, size_t old_size, size_t new_size, uint64_t tag,
                       const char *where) {
    size_t n = old_size < new_size ? old_size : new_size;
    if (n > sizeof tag) n = sizeof tag;
    if (n > 0 && memcmp(p, &tag, n) != 0) mismatch(where);
    return tag ^ n;
}

uint64_t wl_check(const void *p, size_t size, uint64_t tag, const char *where) {
    const unsigned char *b = p;
    if (size == 0) return tag;
    uint64_t sum = wl_check_head(p, size, size, tag, where);
    if (size > sizeof tag && b[size - 1] != (unsigned char)tag) mismatch(where);
    return sum + size;
}

void wl_die(const char *what, const char *detail) {
    fprintf(stderr, "malloc-workload: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(2);
}

void *wl_xmalloc(size_t size) {
    void *p = malloc(size);
    if (!p && size) wl_die("out of memory", NULL);
    return p;
}

long wl_rss_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2) resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

long wl_scaled(const wl_options *opts, long count) {
    double n = (double)count * opts->scale;
    return n < 1 ? 1 : (long)n;
}

/* The file that defines the malloc this process calls: with a preload it
 * must be the preloaded library, not libc. */
static const char *malloc_provider(void) {
    Dl_info info;
    void *sym = dlsym(RTLD_DEFAULT, "malloc");
    if (sym && dladdr(sym, &info) && info.dli_fname) return info.dli_fname;
    return "unknown";
}

void wl_report(const char *workload, uint64_t checksum) {
    printf("workload=%s checksum=%016" PRIx64 " malloc=%s\n", workload, checksum,
           malloc_provider());
    fflush(stdout);
}
