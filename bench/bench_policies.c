/*
 * bench-policies: time and fragmentation of the six region policies against
 * glibc malloc on the same operation sequences, in the same process run.
 *
 * Every workload is turned into an array of operations before anything is
 * timed (a seeded synthetic sequence, or a recorded trace parsed once), and
 * that array is replayed unchanged against every allocator, so the only
 * thing that differs between rows is the allocator. Blocks are named by
 * slots (0..n_slots-1), reused as blocks die, so a replay indexes a small
 * dense array instead of hashing IDs.
 *
 * What is measured (bench/README.md has the full definitions):
 *  - ns per alloc+free pair: wall time of the timed phase / allocations in
 *    it. Warm runs only are compared: a memkit region is formatted over a
 *    buffer whose pages were touched before timing; glibc runs in a forked
 *    child that replays the workload once untimed first. Medians of --runs
 *    rounds, allocators interleaved inside each round so that drift in
 *    machine load hits all of them alike. One cold run is reported apart.
 *  - fragmentation, in a separate untimed pass: peak footprint (memory the
 *    allocator needed) and peak bytes in use (live blocks with their
 *    headers), each divided by the peak of live requested bytes.
 *
 * Big arrays come from mmap, never from malloc, so that glibc's heap (which
 * forked children inherit) stays as small as at start-up.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gnu/libc-version.h>

#include "memkit/error.h"
#include "memkit/region.h"

#ifndef MK_BENCH_BUILD_TYPE
#define MK_BENCH_BUILD_TYPE "unknown"
#endif
#ifndef MK_BENCH_CFLAGS
#define MK_BENCH_CFLAGS ""
#endif

#define MIB        (UINT64_C(1) << 20)
#define CHUNK      65536u /* ops between budget checks */
#define MAX_RUNS   101u
#define MAX_TRACES 8

/* ---- small helpers ---------------------------------------------------------- */

__attribute__((noreturn)) static void die(const char *what, const char *detail) {
    fprintf(stderr, "bench-policies: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(2);
}

static double now_wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *map_bytes(size_t bytes, bool noreserve) {
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | (noreserve ? MAP_NORESERVE : 0);
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) die("mmap failed", strerror(errno));
    return p;
}

/* Touch every page so that timing never includes a first-touch fault. */
static void prefault(void *p, size_t bytes) {
    volatile char *c = p;
    for (size_t i = 0; i < bytes; i += 4096) c[i] = 0;
}

/* A growable array in mmap'd memory (mremap moves it without copying). */
typedef struct vec {
    char *p;
    size_t len, cap, esz;
} vec;

static void vec_reserve(vec *v, size_t n) {
    if (n <= v->cap) return;
    size_t cap = v->cap ? v->cap : 4096;
    while (cap < n) cap *= 2;
    void *np;
    if (!v->p)
        np = map_bytes(cap * v->esz, false);
    else {
        np = mremap(v->p, v->cap * v->esz, cap * v->esz, MREMAP_MAYMOVE);
        if (np == MAP_FAILED) die("mremap failed", strerror(errno));
    }
    v->p = np;
    v->cap = cap;
}

static void *vec_push(vec *v) {
    vec_reserve(v, v->len + 1);
    return v->p + v->esz * v->len++;
}

static void vec_free(vec *v) {
    if (v->p) munmap(v->p, v->cap * v->esz);
    v->p = NULL;
    v->len = v->cap = 0;
}

/* xoshiro256** seeded by splitmix64: fast, and the same on every machine. */
typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static double rng_unit(rng *r) { return (double)(rng_next(r) >> 11) * 0x1p-53; }

static uint64_t rng_below(rng *r, uint64_t n) { return (uint64_t)(rng_unit(r) * (double)n); }

/* ---- workloads ---------------------------------------------------------------- */

enum { OP_ALLOC = 0, OP_FREE = 1, OP_REALLOC = 2 };

/* One operation. align_log2 0 means the default alignment. */
typedef struct bop {
    uint32_t slot;
    uint32_t size;
    uint8_t kind;
    uint8_t align_log2;
    uint16_t pad;
} bop;

typedef struct workload {
    char name[64];
    char desc[256];
    bop *ops;
    size_t n_ops;  /* all operations */
    size_t n_warm; /* the first n_warm are a warm-up, replayed but not timed */
    uint32_t n_slots;
    uint64_t n_alloc, n_free, n_realloc; /* in the timed phase */
    uint64_t peak_live;                  /* peak of live requested bytes (whole replay) */
    uint64_t peak_floor;                 /* peak of live "ideal chunk" bytes, see below */
    uint64_t peak_blocks;                /* peak live block count */
    uint64_t max_size;
    /* allocs_before[k]: allocations in ops[n_warm, n_warm + k*CHUNK) */
    uint64_t *allocs_before;
    size_t n_chunks;
    bool truncated; /* --max-ops cut the trace */
} workload;

/* The span of a block with an 8-byte header word rounded to 16 bytes, at
 * least 32: what both memkit and glibc would use with no fragmentation at
 * all, so floor/live is the best fragmentation ratio either can reach. */
static uint64_t ideal_chunk(uint64_t size) {
    uint64_t s = (size + 8 + 15) & ~UINT64_C(15);
    return s < 32 ? 32 : s;
}

/* Fill the derived fields: live-byte peaks and per-chunk allocation counts. */
static void workload_finish(workload *w) {
    uint64_t *sz = map_bytes(sizeof(uint64_t) * (w->n_slots + 1), false);
    uint64_t live = 0, floor = 0, blocks = 0;
    w->peak_live = w->peak_floor = w->peak_blocks = 0;
    w->n_alloc = w->n_free = w->n_realloc = 0;
    w->n_chunks = (w->n_ops - w->n_warm + CHUNK - 1) / CHUNK;
    w->allocs_before = map_bytes(sizeof(uint64_t) * (w->n_chunks + 1), false);
    uint64_t timed_allocs = 0;
    for (size_t i = 0; i < w->n_ops; i++) {
        const bop *o = &w->ops[i];
        bool timed = i >= w->n_warm;
        if (timed && (i - w->n_warm) % CHUNK == 0)
            w->allocs_before[(i - w->n_warm) / CHUNK] = timed_allocs;
        /* sz[slot] holds size + 1 while the slot is live, 0 when dead */
        switch (o->kind) {
        case OP_ALLOC:
            if (sz[o->slot]) die("internal error", "alloc into a live slot");
            sz[o->slot] = (uint64_t)o->size + 1;
            live += o->size;
            floor += ideal_chunk(o->size);
            blocks++;
            if (timed) w->n_alloc++, timed_allocs++;
            break;
        case OP_FREE:
            if (!sz[o->slot]) die("internal error", "free of a dead slot");
            live -= sz[o->slot] - 1;
            floor -= ideal_chunk(sz[o->slot] - 1);
            sz[o->slot] = 0;
            blocks--;
            if (timed) w->n_free++;
            break;
        case OP_REALLOC:
            if (!sz[o->slot]) die("internal error", "realloc of a dead slot");
            live -= sz[o->slot] - 1;
            floor -= ideal_chunk(sz[o->slot] - 1);
            sz[o->slot] = (uint64_t)o->size + 1;
            live += o->size;
            floor += ideal_chunk(o->size);
            if (timed) w->n_realloc++;
            break;
        }
        if (o->size > w->max_size) w->max_size = o->size;
        if (live > w->peak_live) w->peak_live = live;
        if (floor > w->peak_floor) w->peak_floor = floor;
        if (blocks > w->peak_blocks) w->peak_blocks = blocks;
    }
    w->allocs_before[w->n_chunks] = timed_allocs;
    munmap(sz, sizeof(uint64_t) * (w->n_slots + 1));
}

/* The synthetic workload: warm up to `target` live blocks, then n_ops
 * operations, each an allocation (size log-uniform in [16, 4096)) or the
 * free of a uniformly chosen live block. The probability of allocating is
 * 0.5 + 0.5 * (target - live) / target, clamped to [0, 1]: a random walk
 * pulled back to `target`, so the live count hovers around it. */
static void workload_synthetic(workload *w, uint64_t seed, size_t n_ops, uint32_t target) {
    memset(w, 0, sizeof *w);
    rng r;
    rng_seed(&r, seed);
    snprintf(w->name, sizeof w->name, "synthetic");
    w->n_warm = target;
    w->n_ops = target + n_ops;
    w->ops = map_bytes(sizeof(bop) * w->n_ops, false);
    uint32_t cap = 2 * target + 2;
    uint32_t *live = map_bytes(sizeof(uint32_t) * cap, false);
    uint32_t *freeslots = map_bytes(sizeof(uint32_t) * cap, false);
    uint32_t n_live = 0, n_freeslots = 0, n_slots = 0;
    const double log2_range = log2(4096.0 / 16.0);
    for (size_t i = 0; i < w->n_ops; i++) {
        bop *o = &w->ops[i];
        bool alloc;
        if (i < w->n_warm || n_live == 0)
            alloc = true;
        else {
            double p = 0.5 + 0.5 * ((double)target - (double)n_live) / (double)target;
            alloc = rng_unit(&r) < p;
        }
        memset(o, 0, sizeof *o);
        if (alloc) {
            uint32_t s = n_freeslots ? freeslots[--n_freeslots] : n_slots++;
            live[n_live++] = s;
            o->kind = OP_ALLOC;
            o->slot = s;
            o->size = (uint32_t)(16.0 * exp2(rng_unit(&r) * log2_range));
        } else {
            uint32_t j = (uint32_t)rng_below(&r, n_live);
            uint32_t s = live[j];
            live[j] = live[--n_live];
            freeslots[n_freeslots++] = s;
            o->kind = OP_FREE;
            o->slot = s;
        }
    }
    w->n_slots = n_slots;
    munmap(live, sizeof(uint32_t) * cap);
    munmap(freeslots, sizeof(uint32_t) * cap);
    workload_finish(w);
    snprintf(w->desc, sizeof w->desc,
             "seed %" PRIu64 ", %u warm-up allocations, then %zu ops (%" PRIu64 " allocs, %" PRIu64
             " frees), sizes log-uniform in [16, 4096)",
             seed, target, n_ops, w->n_alloc, w->n_free);
}

static bool parse_u64(const char **p, uint64_t *out) {
    const char *s = *p;
    while (*s == ' ') s++;
    if (*s < '0' || *s > '9') return false;
    uint64_t v = 0;
    while (*s >= '0' && *s <= '9') v = v * 10 + (uint64_t)(*s++ - '0');
    *p = s;
    *out = v;
    return true;
}

/* Trace IDs (sequential, never reused) are mapped to slots at parse time. */
typedef struct idmap {
    vec slot_of;   /* uint32 per ID; UINT32_MAX when the ID is not live */
    vec freeslots; /* uint32 stack */
    uint32_t n_slots;
} idmap;

static uint32_t *idmap_at(idmap *m, uint64_t id) {
    if (id >= m->slot_of.len) {
        size_t old = m->slot_of.len;
        vec_reserve(&m->slot_of, id + 1);
        memset(m->slot_of.p + old * 4, 0xFF, (id + 1 - old) * 4);
        m->slot_of.len = id + 1;
    }
    return (uint32_t *)(void *)m->slot_of.p + id;
}

static uint32_t idmap_new(idmap *m, uint64_t id) {
    uint32_t s =
        m->freeslots.len ? ((uint32_t *)(void *)m->freeslots.p)[--m->freeslots.len] : m->n_slots++;
    *idmap_at(m, id) = s;
    return s;
}

/* The slot of a live ID, released; UINT32_MAX when not live. */
static uint32_t idmap_drop(idmap *m, uint64_t id) {
    if (id == 0 || id >= m->slot_of.len) return UINT32_MAX;
    uint32_t *p = idmap_at(m, id), s = *p;
    if (s == UINT32_MAX) return s;
    *p = UINT32_MAX;
    *(uint32_t *)vec_push(&m->freeslots) = s;
    return s;
}

static void trace_name(const char *path, char *out, size_t n) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(out, n, "%s", b);
    char *dot = strstr(out, ".trace");
    if (dot) *dot = 0;
}

/* Parse an xz-compressed trace (bench/README.md, /work/shared/traces). Ops
 * that the program's allocator could not have seen as a live block (a free
 * of an unknown ID, free(NULL)) are dropped and counted. */
static void workload_trace(workload *w, const char *path, uint64_t max_ops) {
    memset(w, 0, sizeof *w);
    trace_name(path, w->name, sizeof w->name);
    if (access(path, R_OK) != 0) die("cannot read trace", path);
    char cmd[4200];
    if (strchr(path, '\'')) die("trace path may not contain a quote", path);
    snprintf(cmd, sizeof cmd, "xz -dc '%s'", path);
    FILE *f = popen(cmd, "r");
    if (!f) die("popen failed", cmd);
    static char line[512];
    vec ops = {.esz = sizeof(bop)};
    idmap m = {.slot_of = {.esz = 4}, .freeslots = {.esz = 4}};
    uint64_t lines = 0, dropped = 0, big_align = 0;
    while (fgets(line, sizeof line, f)) {
        lines++;
        const char *p = line + 1;
        uint64_t a = 0, b = 0, c = 0;
        bop o = {0};
        switch (line[0]) {
        case 'm':
            if (!parse_u64(&p, &a) || !parse_u64(&p, &b)) goto bad;
            if (b > UINT32_MAX) goto bad;
            o.kind = OP_ALLOC;
            o.slot = idmap_new(&m, a);
            o.size = (uint32_t)b;
            break;
        case 'a':
            if (!parse_u64(&p, &a) || !parse_u64(&p, &b) || !parse_u64(&p, &c)) goto bad;
            if (c > UINT32_MAX || b == 0 || (b & (b - 1))) goto bad;
            o.kind = OP_ALLOC;
            o.slot = idmap_new(&m, a);
            o.size = (uint32_t)c;
            if (b > MK_REGION_MAX_ALIGN) big_align++, b = MK_REGION_MAX_ALIGN;
            o.align_log2 = b > 16 ? (uint8_t)__builtin_ctzll(b) : 0;
            break;
        case 'f': {
            if (!parse_u64(&p, &a)) goto bad;
            uint32_t s = idmap_drop(&m, a);
            if (s == UINT32_MAX) {
                dropped++;
                continue;
            }
            o.kind = OP_FREE;
            o.slot = s;
            break;
        }
        case 'r': {
            if (!parse_u64(&p, &a) || !parse_u64(&p, &b) || !parse_u64(&p, &c)) goto bad;
            if (c > UINT32_MAX) goto bad;
            uint32_t s = a ? idmap_drop(&m, a) : UINT32_MAX;
            if (b == 0) { /* realloc(p, 0) freed it, or a failed realloc */
                if (s == UINT32_MAX) {
                    dropped++;
                    continue;
                }
                if (c != 0) { /* failed: the old block lives on */
                    *idmap_at(&m, a) = s;
                    m.freeslots.len--;
                    dropped++;
                    continue;
                }
                o.kind = OP_FREE;
                o.slot = s;
                break;
            }
            if (s == UINT32_MAX) { /* realloc(NULL, n) */
                o.kind = OP_ALLOC;
                o.slot = idmap_new(&m, b);
            } else { /* the new ID takes over the old block's slot */
                m.freeslots.len--;
                *idmap_at(&m, b) = s;
                o.kind = OP_REALLOC;
                o.slot = s;
            }
            o.size = (uint32_t)c;
            break;
        }
        default:
            goto bad;
        }
        *(bop *)vec_push(&ops) = o;
        if (max_ops && ops.len >= max_ops) {
            w->truncated = true;
            break;
        }
        continue;
    bad:
        fprintf(stderr, "bench-policies: %s: line %" PRIu64 " not understood: %s", path, lines,
                line);
        exit(2);
    }
    /* Reading stopped early on --max-ops: xz dies of SIGPIPE, which is fine. */
    int st = pclose(f);
    if (!w->truncated && st != 0) die("xz failed on", path);
    w->ops = (bop *)(void *)ops.p;
    w->n_ops = ops.len;
    w->n_warm = 0;
    w->n_slots = m.n_slots;
    vec_free(&m.slot_of);
    vec_free(&m.freeslots);
    workload_finish(w);
    snprintf(w->desc, sizeof w->desc,
             "%s%s: %zu ops (%" PRIu64 " allocs, %" PRIu64 " frees, %" PRIu64 " reallocs), %" PRIu64
             " events dropped (free of unknown ID)%s",
             path, w->truncated ? " (cut by --max-ops)" : "", w->n_ops, w->n_alloc, w->n_free,
             w->n_realloc, dropped, big_align ? ", alignments > 4096 lowered to 4096" : "");
}

/* ---- allocators --------------------------------------------------------------- */

/* The rows of the table: a policy with creation flags, or glibc. */
typedef struct allocator {
    char name[32];
    bool glibc;       /* glibc malloc, in a forked child; else a memkit region */
    mk_policy policy; /* region: its policy and MK_REGION_* flags */
    unsigned flags;
    bool notrim; /* glibc: M_TRIM_THRESHOLD = INT32_MAX */
    bool dflt;   /* in the default set */
} allocator;

#define MAX_ALLOCS 24
static allocator allocs[MAX_ALLOCS];
static int n_allocs, a_glibc;

static void add_alloc(const char *name, const char *suffix, bool glibc, mk_policy p, unsigned flags,
                      bool notrim, bool dflt) {
    allocator *x = &allocs[n_allocs++];
    snprintf(x->name, sizeof x->name, "%s%s", name, suffix);
    x->glibc = glibc;
    x->policy = p;
    x->flags = flags;
    x->notrim = notrim;
    x->dflt = dflt;
}

/* Default: the six policies bare, best and TLSF with quick lists, glibc two
 * ways. Journal rows and quick lists on the other policies on request. */
static void init_allocs(void) {
    for (int p = 0; p < MK_POLICY_COUNT; p++)
        add_alloc(mk_policy_name((mk_policy)p), "", false, (mk_policy)p, 0, false, true);
    for (int p = 0; p < MK_POLICY_COUNT; p++)
        if (p != MK_POLICY_BUDDY)
            add_alloc(mk_policy_name((mk_policy)p), "+quick", false, (mk_policy)p, MK_REGION_QUICK,
                      false, p == MK_POLICY_BEST_FIT || p == MK_POLICY_TLSF);
    for (int p = 0; p < MK_POLICY_COUNT; p++)
        add_alloc(mk_policy_name((mk_policy)p), "+journal", false, (mk_policy)p, MK_REGION_JOURNAL,
                  false, false);
    a_glibc = n_allocs;
    add_alloc("glibc", "", true, 0, 0, false, true);
    add_alloc("glibc-notrim", "", true, 0, 0, true, true);
}

/* What one run measures. */
typedef struct runres {
    double wall, cpu;     /* seconds of the timed phase */
    uint64_t ops, allocs; /* done in the timed phase */
    uint64_t failed;      /* allocations/reallocs that failed */
    uint64_t errors;      /* frees/reallocs the allocator refused (engine bug) */
    uint64_t grows;       /* mk_region_grow calls after MK_ENOMEM */
    bool cut;             /* stopped by the time budget */
} runres;

/* What the untimed fragmentation pass measures (bytes). */
typedef struct fragres {
    uint64_t footprint; /* memkit: highest block end - lowest block start; glibc: see README */
    uint64_t used;      /* peak of live blocks' spans/chunks, headers included */
    uint64_t sys;       /* glibc: peak arena + mmapped bytes, minus start; memkit: region size */
    uint64_t failed;
    int valid;                   /* memkit: mk_region_validate() at the end; glibc: 0 */
    uint64_t data_start, lowest; /* memkit: first block's offset, lowest block ever used */
    bool cut;
} fragres;

typedef struct options {
    uint64_t seed;
    unsigned runs;
    size_t ops;
    uint32_t live;
    uint64_t max_ops;
    double budget;
    uint64_t region_mib;
    bool synthetic;
    bool cold;
    bool alloc_on[MAX_ALLOCS];
    const char *traces[MAX_TRACES];
    int n_traces;
    const char *json;
} options;

static options opt;

/* ---- memkit --------------------------------------------------------------------- */

/* The warm buffer: one mapping for the whole run, reserved large and touched
 * up to the largest region used so far. */
static char *warm_buf;
static size_t warm_reserve, warm_touched;

typedef struct mkrun {
    mk_region *r;
    char *base;
    size_t size, reserve; /* current region size, bytes mapped at base */
    mk_off *slots;
    runres *res;
} mkrun;

/* MK_ENOMEM: grow the region (doubling, inside the reservation) and retry.
 * Buddy cannot grow; then the allocation fails and is counted. */
static int __attribute__((noinline))
mk_alloc_slow(mkrun *m, int rc, size_t size, size_t align, mk_off old, mk_off *out) {
    while (rc == MK_ENOMEM && m->size * 2 <= m->reserve &&
           mk_region_grow(m->r, m->size * 2) == MK_OK) {
        m->size *= 2;
        m->res->grows++;
        rc =
            old ? mk_region_realloc(m->r, old, size, out) : mk_region_alloc(m->r, size, align, out);
    }
    if (rc != MK_OK) {
        if (rc == MK_ENOMEM || rc == MK_ETOOBIG)
            m->res->failed++;
        else
            m->res->errors++;
    }
    return rc;
}

static size_t op_align(const bop *o) { return o->align_log2 ? (size_t)1 << o->align_log2 : 0; }

/* Replay ops[from, to) against a region. The loop the timing is about. */
static void replay_mk(mkrun *m, const bop *ops, size_t from, size_t to) {
    mk_region *r = m->r;
    mk_off *slots = m->slots;
    for (size_t i = from; i < to; i++) {
        const bop *o = &ops[i];
        mk_off *s = &slots[o->slot];
        int rc;
        switch (o->kind) {
        case OP_ALLOC:
            rc = mk_region_alloc(r, o->size, op_align(o), s);
            if (__builtin_expect(rc != MK_OK, 0)) {
                if (mk_alloc_slow(m, rc, o->size, op_align(o), 0, s) != MK_OK) *s = 0;
                r = m->r;
            }
            break;
        case OP_FREE:
            if (*s) {
                if (__builtin_expect(mk_region_free(r, *s) != MK_OK, 0)) m->res->errors++;
                *s = 0;
            }
            break;
        default: {
            mk_off n;
            if (!*s)
                rc = mk_region_alloc(r, o->size, 0, &n), *s = 0;
            else
                rc = mk_region_realloc(r, *s, o->size, &n);
            if (__builtin_expect(rc != MK_OK, 0)) rc = mk_alloc_slow(m, rc, o->size, 0, *s, &n);
            if (rc == MK_OK) *s = n;
            break;
        }
        }
    }
}

static int first_block(const mk_block_info *b, void *arg) {
    *(mk_off *)arg = b->offset + b->size - b->span; /* the block's start */
    return 1;
}

/* Bytes a region of this policy needs for workload w: the synthetic one
 * gets --region-mib; traces 8x their peak live bytes (at least 64 MiB).
 * Growth on MK_ENOMEM covers the rest. */
static size_t region_size_for(const workload *w) {
    if (w->n_warm) return (size_t)(opt.region_mib * MIB);
    uint64_t s = 64 * MIB;
    while (s < 8 * w->peak_live) s *= 2;
    return (size_t)s;
}

static void mk_open(mkrun *m, const allocator *al, char *base, size_t size, size_t reserve,
                    mk_off *slots, uint32_t n_slots, runres *res) {
    memset(m, 0, sizeof *m);
    m->base = base;
    m->size = size;
    m->reserve = reserve;
    m->slots = slots;
    m->res = res;
    memset(slots, 0, sizeof(mk_off) * n_slots);
    int rc = mk_region_create(base, size, al->policy, al->flags, &m->r);
    if (rc != MK_OK) die("mk_region_create failed", mk_strerror(rc));
}

static void warm_buffer(size_t need) {
    if (need > warm_reserve) die("region larger than the reservation", NULL);
    if (need > warm_touched) {
        prefault(warm_buf + warm_touched, need - warm_touched);
        warm_touched = need;
    }
}

/* One timed replay. cold: a fresh mapping whose pages are first touched
 * inside the timed phase. */
__attribute__((noinline)) static runres time_mk(const workload *w, const allocator *al,
                                                mk_off *slots, size_t size, bool cold,
                                                size_t *size_after) {
    runres res = {0};
    mkrun m;
    char *base = warm_buf;
    size_t reserve = warm_reserve;
    if (cold) {
        reserve = warm_reserve;
        base = map_bytes(reserve, true);
    } else
        warm_buffer(size);
    mk_open(&m, al, base, size, reserve, slots, w->n_slots, &res);
    replay_mk(&m, w->ops, 0, w->n_warm);
    double t0 = now_wall(), c0 = now_cpu();
    size_t done = w->n_warm;
    size_t k = 0;
    while (done < w->n_ops) {
        size_t to = done + CHUNK < w->n_ops ? done + CHUNK : w->n_ops;
        replay_mk(&m, w->ops, done, to);
        done = to;
        k++;
        if (opt.budget > 0 && done < w->n_ops && now_wall() - t0 > opt.budget) {
            res.cut = true;
            break;
        }
    }
    res.wall = now_wall() - t0;
    res.cpu = now_cpu() - c0;
    res.ops = done - w->n_warm;
    res.allocs = w->allocs_before[k];
    if (size_after) *size_after = m.size;
    if (cold) munmap(base, reserve);
    return res;
}

/* The untimed pass: the same replay, plus the highest block end. */
__attribute__((noinline)) static fragres frag_mk(const workload *w, const allocator *al,
                                                 mk_off *slots, size_t size) {
    fragres fr = {0};
    runres res = {0};
    mkrun m;
    warm_buffer(size);
    mk_open(&m, al, warm_buf, size, warm_reserve, slots, w->n_slots, &res);
    mk_off start = 0;
    if (mk_region_walk(m.r, first_block, &start) != 1 || start == 0)
        die("cannot find the data start", NULL);
    uint64_t max_end = 0, min_start = UINT64_MAX;
    double t0 = now_wall();
    for (size_t i = 0; i < w->n_ops; i++) {
        replay_mk(&m, w->ops, i, i + 1);
        const bop *o = &w->ops[i];
        mk_off off = slots[o->slot];
        if (o->kind != OP_FREE && off) {
            size_t us = 0;
            if (mk_region_usable_size(m.r, off, &us) == MK_OK && off + us > max_end)
                max_end = off + us;
            if (off - 8 < min_start) min_start = off - 8; /* the block's header word */
        }
        if (opt.budget > 0 && (i & (CHUNK - 1)) == 0 && now_wall() - t0 > 2 * opt.budget) {
            fr.cut = true;
            break;
        }
    }
    mk_stats st;
    if (mk_region_stats(m.r, &st) != MK_OK) die("mk_region_stats failed", NULL);
    mk_fault fault = {0};
    fr.valid = mk_region_validate(m.r, &fault);
    if (fr.valid != MK_OK)
        fprintf(stderr,
                "bench-policies: %s/%s: region invalid after replay: %s (%s at %" PRIu64 ")\n",
                w->name, al->name, mk_strerror(fr.valid), fault.invariant ? fault.invariant : "?",
                fault.offset);
    fr.footprint = max_end > min_start ? max_end - min_start : 0;
    fr.data_start = start;
    fr.lowest = min_start;
    fr.used = st.peak_used;
    fr.sys = m.size;
    fr.failed = res.failed;
    if (res.errors)
        fprintf(stderr, "bench-policies: %s/%s: %" PRIu64 " operations refused (engine bug?)\n",
                w->name, al->name, res.errors);
    return fr;
}

/* ---- glibc ------------------------------------------------------------------- */

/* glibc's chunk size word sits just before the payload: size | flags, with
 * bit 1 set for a chunk that has its own mmap. Reading it is glibc-specific,
 * and only done in the untimed pass. */
static size_t gl_chunk(const void *p, bool *mmapped) {
    size_t w = ((const size_t *)p)[-1];
    *mmapped = (w & 2) != 0;
    return w & ~(size_t)7;
}

static void replay_gl(void **slots, const bop *ops, size_t from, size_t to, runres *res) {
    for (size_t i = from; i < to; i++) {
        const bop *o = &ops[i];
        void **s = &slots[o->slot];
        switch (o->kind) {
        case OP_ALLOC:
            if (o->align_log2) {
                if (posix_memalign(s, (size_t)1 << o->align_log2, o->size)) *s = NULL;
            } else
                *s = malloc(o->size);
            if (__builtin_expect(!*s, 0)) res->failed++;
            break;
        case OP_FREE:
            free(*s);
            *s = NULL;
            break;
        default: {
            void *n = realloc(*s, o->size);
            if (n)
                *s = n;
            else
                res->failed++;
            break;
        }
        }
    }
}

static void free_all_gl(void **slots, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) free(slots[i]), slots[i] = NULL;
}

/* What a child sends back. */
typedef struct childmsg {
    runres run;
    fragres frag;
} childmsg;

enum { G_COLD, G_WARM, G_FRAG };

static void gl_setup(int a) {
    if (allocs[a].notrim) {
        /* Never give the top of the heap back: the glibc analogue of a
         * memkit region whose pages stay mapped. */
        mallopt(M_TRIM_THRESHOLD, INT32_MAX);
    }
}

__attribute__((noinline)) static runres gl_time(const workload *w, void **slots) {
    runres res = {0};
    replay_gl(slots, w->ops, 0, w->n_warm, &res);
    double t0 = now_wall(), c0 = now_cpu();
    size_t done = w->n_warm, k = 0;
    while (done < w->n_ops) {
        size_t to = done + CHUNK < w->n_ops ? done + CHUNK : w->n_ops;
        replay_gl(slots, w->ops, done, to, &res);
        done = to;
        k++;
        if (opt.budget > 0 && done < w->n_ops && now_wall() - t0 > opt.budget) {
            res.cut = true;
            break;
        }
    }
    res.wall = now_wall() - t0;
    res.cpu = now_cpu() - c0;
    res.ops = done - w->n_warm;
    res.allocs = w->allocs_before[k];
    return res;
}

/* The untimed glibc pass. footprint: the highest end of any chunk in the
 * brk heap above where the top chunk started, plus live mmapped chunks (the
 * analogue of memkit's highest block end); sys: arena + mmapped bytes from
 * mallinfo2(), minus their value at the start, sampled whenever the break
 * moves, on every op of 64 KiB or more, and every 1024 ops. */
__attribute__((noinline)) static fragres gl_frag(const workload *w, void **slots) {
    fragres fr = {0};
    runres res = {0};
    struct mallinfo2 mi = mallinfo2();
    uint64_t sys0 = mi.arena + mi.hblkhd;
    char *top0 = (char *)sbrk(0) - mi.keepcost, *brk_last = sbrk(0);
    char *max_end = top0;
    uint64_t used = 0, mm_live = 0;
    size_t *chunk =
        map_bytes(sizeof(size_t) * (w->n_slots + 1), false); /* chunk bytes; bit 0: mmapped */
    for (size_t i = 0; i < w->n_ops; i++) {
        const bop *o = &w->ops[i];
        void *old = slots[o->slot];
        if (old) {
            used -= chunk[o->slot] & ~(size_t)1;
            if (chunk[o->slot] & 1) mm_live -= chunk[o->slot] & ~(size_t)1;
            chunk[o->slot] = 0;
        }
        replay_gl(slots, w->ops, i, i + 1, &res);
        void *p = slots[o->slot];
        if (p) {
            bool mm;
            size_t c = gl_chunk(p, &mm);
            chunk[o->slot] = c | (mm ? 1 : 0);
            used += c;
            if (mm)
                mm_live += c;
            else if ((char *)p - 16 + c > max_end)
                max_end = (char *)p - 16 + c; /* the chunk starts 16 bytes before its payload */
        }
        if (used > fr.used) fr.used = used;
        uint64_t fp = (uint64_t)(max_end - top0) + mm_live;
        if (fp > fr.footprint) fr.footprint = fp;
        char *b = sbrk(0);
        if (b != brk_last || o->size >= 65536 || (i & 1023) == 0) {
            brk_last = b;
            mi = mallinfo2();
            uint64_t sys = mi.arena + mi.hblkhd;
            if (sys > sys0 && sys - sys0 > fr.sys) fr.sys = sys - sys0;
        }
    }
    fr.failed = res.failed;
    munmap(chunk, sizeof(size_t) * (w->n_slots + 1));
    return fr;
}

/* Run one glibc measurement in a forked child, so that every measurement
 * starts from the same small heap and mallopt settings do not leak. */
static childmsg gl_child(const workload *w, int a, int what) {
    int fds[2];
    if (pipe(fds) != 0) die("pipe failed", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) die("fork failed", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        childmsg msg;
        memset(&msg, 0, sizeof msg);
        gl_setup(a);
        void **slots = map_bytes(sizeof(void *) * (w->n_slots + 1), false);
        if (what == G_FRAG)
            msg.frag = gl_frag(w, slots);
        else {
            if (what == G_WARM) { /* one untimed replay: the heap's pages get touched */
                runres warm = {0};
                replay_gl(slots, w->ops, 0, w->n_ops, &warm);
                free_all_gl(slots, w->n_slots);
            }
            msg.run = gl_time(w, slots);
        }
        ssize_t n = write(fds[1], &msg, sizeof msg);
        _exit(n == (ssize_t)sizeof msg ? 0 : 1);
    }
    close(fds[1]);
    childmsg msg;
    memset(&msg, 0, sizeof msg);
    ssize_t n = read(fds[0], &msg, sizeof msg);
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (n != (ssize_t)sizeof msg || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        die("glibc child failed", allocs[a].name);
    return msg;
}

/* ---- results ------------------------------------------------------------------ */

typedef struct row {
    bool on;
    runres cold;
    runres warm[MAX_RUNS];
    double ns_pair[MAX_RUNS], ns_op[MAX_RUNS], ratio[MAX_RUNS];
    double cpu_pair[MAX_RUNS], cpu_ratio[MAX_RUNS];
    double med_pair, min_pair, max_pair, med_op, med_ratio, med_cpu_pair, med_cpu_ratio;
    fragres frag;
    size_t region_size;
    bool cut;
} row;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(const double *v, unsigned n) {
    double t[MAX_RUNS];
    memcpy(t, v, n * sizeof *v);
    qsort(t, n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static double ns_per(const runres *r, uint64_t n) { return n ? 1e9 * r->wall / (double)n : 0; }

/* Measure every allocator on one workload. Order: a cold run each, the
 * fragmentation pass each, then --runs rounds of warm runs, every
 * allocator once per round. */
static void bench_workload(const workload *w, row *rows) {
    mk_off *mk_slots = map_bytes(sizeof(mk_off) * (w->n_slots + 1), false);
    size_t size0 = region_size_for(w);
    for (int a = 0; a < n_allocs; a++) {
        row *rw = &rows[a];
        memset(rw, 0, sizeof *rw);
        rw->on = opt.alloc_on[a];
        rw->region_size = size0;
    }
    fprintf(stderr, "[%s] cold runs and fragmentation pass...\n", w->name);
    for (int a = 0; a < n_allocs; a++) {
        row *rw = &rows[a];
        if (!rw->on) continue;
        if (!allocs[a].glibc) {
            size_t after = size0;
            if (opt.cold) rw->cold = time_mk(w, &allocs[a], mk_slots, size0, true, &after);
            rw->frag = frag_mk(w, &allocs[a], mk_slots, size0);
            /* warm runs start at the size the region had to grow to */
            if (rw->frag.sys > rw->region_size) rw->region_size = (size_t)rw->frag.sys;
        } else {
            if (opt.cold) rw->cold = gl_child(w, a, G_COLD).run;
            rw->frag = gl_child(w, a, G_FRAG).frag;
        }
    }
    for (unsigned k = 0; k < opt.runs; k++) {
        fprintf(stderr, "[%s] round %u/%u\n", w->name, k + 1, opt.runs);
        for (int a = 0; a < n_allocs; a++) {
            row *rw = &rows[a];
            if (!rw->on) continue;
            if (!allocs[a].glibc)
                rw->warm[k] = time_mk(w, &allocs[a], mk_slots, rw->region_size, false, NULL);
            else
                rw->warm[k] = gl_child(w, a, G_WARM).run;
            rw->ns_pair[k] = ns_per(&rw->warm[k], rw->warm[k].allocs);
            rw->ns_op[k] = ns_per(&rw->warm[k], rw->warm[k].ops);
            rw->cpu_pair[k] =
                rw->warm[k].allocs ? 1e9 * rw->warm[k].cpu / (double)rw->warm[k].allocs : 0;
            rw->cut |= rw->warm[k].cut;
        }
    }
    for (int a = 0; a < n_allocs; a++) {
        row *rw = &rows[a];
        if (!rw->on) continue;
        const row *g = &rows[a_glibc];
        for (unsigned k = 0; k < opt.runs; k++) {
            /* per op, so that rows cut short by the budget still compare */
            rw->ratio[k] = g->on && g->ns_op[k] > 0 ? rw->ns_op[k] / g->ns_op[k] : 0;
            double mine = rw->warm[k].ops ? rw->warm[k].cpu / (double)rw->warm[k].ops : 0;
            double theirs = g->on && g->warm[k].ops ? g->warm[k].cpu / (double)g->warm[k].ops : 0;
            rw->cpu_ratio[k] = theirs > 0 ? mine / theirs : 0;
        }
        rw->med_cpu_pair = median(rw->cpu_pair, opt.runs);
        rw->med_cpu_ratio = median(rw->cpu_ratio, opt.runs);
        rw->med_pair = median(rw->ns_pair, opt.runs);
        rw->med_op = median(rw->ns_op, opt.runs);
        rw->med_ratio = median(rw->ratio, opt.runs);
        rw->min_pair = rw->max_pair = rw->ns_pair[0];
        for (unsigned k = 1; k < opt.runs; k++) {
            if (rw->ns_pair[k] < rw->min_pair) rw->min_pair = rw->ns_pair[k];
            if (rw->ns_pair[k] > rw->max_pair) rw->max_pair = rw->ns_pair[k];
        }
    }
    munmap(mk_slots, sizeof(mk_off) * (w->n_slots + 1));
}

static double ratio_of(uint64_t x, uint64_t y) { return y ? (double)x / (double)y : 0; }

static void print_table(const workload *w, const row *rows) {
    printf("\n== %s: %s\n", w->name, w->desc);
    printf("   peak live requested %.2f MiB in %" PRIu64 " blocks; zero-fragmentation floor "
           "(8-byte header, 16-byte grain) %.4f\n",
           (double)w->peak_live / (double)MIB, w->peak_blocks,
           ratio_of(w->peak_floor, w->peak_live));
    printf("%-13s %9s %8s %8s %8s %7s %8s %7s %8s %10s %8s %8s %6s\n", "allocator", "ns/pair",
           "min", "max", "ns/op", "x glibc", "cpu ns", "x glibc", "cold", "footprint", "used",
           "sys MiB", "failed");
    for (int a = 0; a < n_allocs; a++) {
        const row *rw = &rows[a];
        if (!rw->on) continue;
        char cold[32] = "-";
        if (opt.cold)
            snprintf(cold, sizeof cold, "%.1f%s", ns_per(&rw->cold, rw->cold.allocs),
                     rw->cold.cut ? "*" : "");
        printf("%-13s %8.1f%s %8.1f %8.1f %8.1f %7.3f %8.1f %7.3f %8s %9.4f%s %8.4f %8.1f %6" PRIu64
               "\n",
               allocs[a].name, rw->med_pair, rw->cut ? "*" : " ", rw->min_pair, rw->max_pair,
               rw->med_op, rw->med_ratio, rw->med_cpu_pair, rw->med_cpu_ratio, cold,
               ratio_of(rw->frag.footprint, w->peak_live), rw->frag.cut ? "*" : " ",
               ratio_of(rw->frag.used, w->peak_live), (double)rw->frag.sys / (double)MIB,
               rw->frag.failed + rw->warm[0].failed);
    }
    bool any_cut = false;
    for (int a = 0; a < n_allocs; a++)
        any_cut |= rows[a].on && (rows[a].cut || rows[a].frag.cut || rows[a].cold.cut);
    if (any_cut)
        printf("   * stopped by the time budget (--budget %g s): measured over the ops done before "
               "it, "
               "not the whole workload\n",
               opt.budget);
    fflush(stdout);
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void json_workload(FILE *f, const workload *w, const row *rows) {
    fprintf(f, "{\"name\":");
    json_str(f, w->name);
    fprintf(f, ",\"description\":");
    json_str(f, w->desc);
    fprintf(f,
            ",\"ops\":%zu,\"warmup_ops\":%zu,\"allocs\":%" PRIu64 ",\"frees\":%" PRIu64
            ",\"reallocs\":%" PRIu64 ",\"peak_live_bytes\":%" PRIu64
            ",\"peak_live_blocks\":%" PRIu64 ",\"floor_ratio\":%.6f,\"results\":[",
            w->n_ops - w->n_warm, w->n_warm, w->n_alloc, w->n_free, w->n_realloc, w->peak_live,
            w->peak_blocks, ratio_of(w->peak_floor, w->peak_live));
    bool first = true;
    for (int a = 0; a < n_allocs; a++) {
        const row *rw = &rows[a];
        if (!rw->on) continue;
        fprintf(f,
                "%s{\"allocator\":\"%s\",\"ns_per_pair_median\":%.3f,\"ns_per_op_median\":%.3f,"
                "\"ratio_to_glibc_median\":%.4f,\"cpu_ns_per_pair_median\":%.3f,\"cpu_ratio_to_"
                "glibc_median\":%.4f,"
                "\"ns_per_pair\":[",
                first ? "" : ",", allocs[a].name, rw->med_pair, rw->med_op, rw->med_ratio,
                rw->med_cpu_pair, rw->med_cpu_ratio);
        first = false;
        for (unsigned k = 0; k < opt.runs; k++) fprintf(f, "%s%.3f", k ? "," : "", rw->ns_pair[k]);
        fprintf(f, "],\"cpu_ns_per_pair\":[");
        for (unsigned k = 0; k < opt.runs; k++)
            fprintf(f, "%s%.3f", k ? "," : "",
                    rw->warm[k].allocs ? 1e9 * rw->warm[k].cpu / (double)rw->warm[k].allocs : 0);
        fprintf(f, "],\"ratio_to_glibc\":[");
        for (unsigned k = 0; k < opt.runs; k++) fprintf(f, "%s%.4f", k ? "," : "", rw->ratio[k]);
        fprintf(f, "],\"timed_ops\":%" PRIu64 ",\"cut_by_budget\":%s", rw->warm[0].ops,
                rw->cut ? "true" : "false");
        if (opt.cold) fprintf(f, ",\"cold_ns_per_pair\":%.3f", ns_per(&rw->cold, rw->cold.allocs));
        fprintf(f,
                ",\"peak_footprint_bytes\":%" PRIu64 ",\"peak_used_bytes\":%" PRIu64
                ",\"sys_bytes\":%" PRIu64
                ",\"footprint_ratio\":%.6f,\"used_ratio\":%.6f,\"failed\":%" PRIu64
                ",\"frag_cut_by_budget\":%s",
                rw->frag.footprint, rw->frag.used, rw->frag.sys,
                ratio_of(rw->frag.footprint, w->peak_live), ratio_of(rw->frag.used, w->peak_live),
                rw->frag.failed, rw->frag.cut ? "true" : "false");
        if (!allocs[a].glibc)
            fprintf(f,
                    ",\"data_start\":%" PRIu64 ",\"lowest_block\":%" PRIu64 ",\"validate\":\"%s\"",
                    rw->frag.data_start, rw->frag.lowest, mk_strerror(rw->frag.valid));
        fputc('}', f);
    }
    fprintf(f, "]}");
}

/* ---- machine and command ---------------------------------------------------------- */

static char cpu_model[256] = "unknown";
static char command[4096];

static void read_cpu_model(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            if (c) {
                c++;
                while (*c == ' ' || *c == '\t') c++;
                c[strcspn(c, "\n")] = 0;
                snprintf(cpu_model, sizeof cpu_model, "%s", c);
            }
            break;
        }
    }
    fclose(f);
}

static void loadavg(char *out, size_t n) {
    snprintf(out, n, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return;
    char buf[128] = "";
    if (fgets(buf, sizeof buf, f)) {
        buf[strcspn(buf, "\n")] = 0;
        snprintf(out, n, "%s", buf);
    }
    fclose(f);
}

static void build_command(int argc, char **argv) {
    size_t len = 0;
    for (int i = 0; i < argc && len + 4 < sizeof command; i++) {
        bool quote = argv[i][strcspn(argv[i], " \t'\"$")] != 0;
        len += (size_t)snprintf(command + len, sizeof command - len, "%s%s%s%s", i ? " " : "",
                                quote ? "'" : "", argv[i], quote ? "'" : "");
        if (len >= sizeof command) len = sizeof command - 1;
    }
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench-policies [options]\n"
            "  --seed N         synthetic workload seed (default 12345)\n"
            "  --runs R         warm runs per allocator, medians reported (default 5, max %u)\n"
            "  --ops N          synthetic timed ops (default 2000000)\n"
            "  --live N         synthetic live blocks (default 10000)\n"
            "  --trace FILE     also replay an xz trace (repeatable, up to %d)\n"
            "  --no-synthetic   only the traces\n"
            "  --max-ops N      replay only the first N ops of each trace\n"
            "  --budget SEC     stop a timed run after SEC seconds (default 30; 0: never)\n"
            "  --region-mib N   region size for the synthetic workload (default 256)\n"
            "  --only LIST      comma-separated allocators (default: the six policies,\n"
            "                   best+quick, tlsf+quick, glibc, glibc-notrim); also\n"
            "                   POLICY+quick (not buddy) and POLICY+journal\n"
            "  --no-cold        skip the cold runs\n"
            "  --json FILE      also write the results as JSON\n",
            MAX_RUNS, MAX_TRACES);
}

static uint64_t arg_u64(const char *s, const char *name) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || end == s) die("bad number for", name);
    return v;
}

static void parse_args(int argc, char **argv) {
    opt.seed = 12345;
    opt.runs = 5;
    opt.ops = 2000000;
    opt.live = 10000;
    opt.budget = 30;
    opt.region_mib = 256;
    opt.synthetic = true;
    opt.cold = true;
    for (int a = 0; a < n_allocs; a++) opt.alloc_on[a] = allocs[a].dflt;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDV() (v ? (void)i++ : die("missing value for", a))
        if (!strcmp(a, "--seed"))
            NEEDV(), opt.seed = arg_u64(v, a);
        else if (!strcmp(a, "--runs"))
            NEEDV(), opt.runs = (unsigned)arg_u64(v, a);
        else if (!strcmp(a, "--ops"))
            NEEDV(), opt.ops = (size_t)arg_u64(v, a);
        else if (!strcmp(a, "--live"))
            NEEDV(), opt.live = (uint32_t)arg_u64(v, a);
        else if (!strcmp(a, "--max-ops"))
            NEEDV(), opt.max_ops = arg_u64(v, a);
        else if (!strcmp(a, "--region-mib"))
            NEEDV(), opt.region_mib = arg_u64(v, a);
        else if (!strcmp(a, "--budget"))
            NEEDV(), opt.budget = atof(v);
        else if (!strcmp(a, "--json"))
            NEEDV(), opt.json = v;
        else if (!strcmp(a, "--trace")) {
            NEEDV();
            if (opt.n_traces == MAX_TRACES) die("too many traces", NULL);
            opt.traces[opt.n_traces++] = v;
        } else if (!strcmp(a, "--no-synthetic"))
            opt.synthetic = false;
        else if (!strcmp(a, "--no-cold"))
            opt.cold = false;
        else if (!strcmp(a, "--only")) {
            NEEDV();
            for (int k = 0; k < n_allocs; k++) opt.alloc_on[k] = false;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
                int k;
                for (k = 0; k < n_allocs; k++)
                    if (!strcmp(t, allocs[k].name)) break;
                if (k == n_allocs) die("unknown allocator", t);
                opt.alloc_on[k] = true;
            }
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else {
            usage(stderr);
            die("unknown option", a);
        }
#undef NEEDV
    }
    if (opt.runs < 1 || opt.runs > MAX_RUNS) die("--runs out of range", NULL);
    if (opt.live < 1 || opt.ops < 1) die("--ops and --live must be positive", NULL);
    if (opt.region_mib < 1) die("--region-mib must be positive", NULL);
}

int main(int argc, char **argv) {
    init_allocs();
    parse_args(argc, argv);
    build_command(argc, argv);
    read_cpu_model();
    struct utsname un;
    uname(&un);
    char load0[128], load1[128];
    loadavg(load0, sizeof load0);
    time_t t = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));

    printf("bench-policies: memkit region policies vs glibc malloc\n");
    printf("command:  %s\n", command);
    printf("machine:  %ld cpus online, %s; %s %s; glibc %s\n", sysconf(_SC_NPROCESSORS_ONLN),
           cpu_model, un.sysname, un.release, gnu_get_libc_version());
    printf("build:    %s, %s, cflags '%s'\n", MK_BENCH_BUILD_TYPE, __VERSION__, MK_BENCH_CFLAGS);
    printf("date:     %s; load average at start %s\n", date, load0);
    printf("method:   warm runs, medians of %u rounds; 'x glibc' = median over rounds of "
           "(allocator / glibc)\n"
           "          per op in the same round, for wall time and for thread CPU time\n",
           opt.runs);

    workload ws[MAX_TRACES + 1];
    int nw = 0;
    if (opt.synthetic) workload_synthetic(&ws[nw++], opt.seed, opt.ops, opt.live);
    for (int i = 0; i < opt.n_traces; i++) {
        fprintf(stderr, "parsing %s...\n", opt.traces[i]);
        workload_trace(&ws[nw++], opt.traces[i], opt.max_ops);
    }
    size_t biggest = 0;
    for (int i = 0; i < nw; i++)
        if (region_size_for(&ws[i]) > biggest) biggest = region_size_for(&ws[i]);
    /* room to grow 8x; untouched pages cost nothing */
    warm_reserve = biggest * 8;
    warm_buf = map_bytes(warm_reserve, true);

    static row rows[MAX_TRACES + 1][MAX_ALLOCS];
    for (int i = 0; i < nw; i++) {
        bench_workload(&ws[i], rows[i]);
        print_table(&ws[i], rows[i]);
    }
    loadavg(load1, sizeof load1);
    printf("\nload average at end %s\n", load1);

    if (opt.json) {
        FILE *f = fopen(opt.json, "w");
        if (!f) die("cannot write", opt.json);
        fprintf(f, "{\"command\":");
        json_str(f, command);
        fprintf(f, ",\"machine\":{\"cpus\":%ld,\"cpu_model\":", sysconf(_SC_NPROCESSORS_ONLN));
        json_str(f, cpu_model);
        fprintf(f, ",\"kernel\":");
        json_str(f, un.release);
        fprintf(f, ",\"glibc\":");
        json_str(f, gnu_get_libc_version());
        fprintf(f, ",\"compiler\":");
        json_str(f, __VERSION__);
        fprintf(f, ",\"build_type\":");
        json_str(f, MK_BENCH_BUILD_TYPE);
        fprintf(f, ",\"load_start\":");
        json_str(f, load0);
        fprintf(f, ",\"load_end\":");
        json_str(f, load1);
        fprintf(f, "},\"date\":");
        json_str(f, date);
        fprintf(f, ",\"runs\":%u,\"seed\":%" PRIu64 ",\"workloads\":[", opt.runs, opt.seed);
        for (int i = 0; i < nw; i++) {
            if (i) fputc(',', f);
            json_workload(f, &ws[i], rows[i]);
        }
        fprintf(f, "]}\n");
        if (fclose(f) != 0) die("cannot write", opt.json);
    }
    return 0;
}
