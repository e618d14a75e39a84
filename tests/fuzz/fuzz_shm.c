/*
 * libFuzzer target: a shared-heap segment image from untrusted bytes.
 *
 * The input is a segment image, an operation script and three control bytes:
 *
 *   [ image (L bytes) | script (S bytes) | ctl | tail | slen ]
 *
 *   slen   S = 2 * slen (at most the bytes there are)
 *   tail   T = 64 * tail: the last T bytes of the image belong at the end of
 *          the file, the rest at its start, zeros in between (so that a
 *          segment of 256 KiB that is mostly free space fits in a short input)
 *   ctl    bit 0: the file is exactly the image (no zero fill): truncation
 *          bit 1: the lock is found "owner died" (a process crashed holding
 *                 it), so open repairs the heap from the journal first
 *          bit 2: open as an observer (MK_SHM_OBSERVE)
 *          bit 3: run the script even if the segment does not validate
 *                 (hostile mode, the default; see below)
 *          bit 4: the image is sparse (below)
 *          bit 5: also dump the segment (to /dev/null)
 *          bit 6: the image gets this build's layout signatures (region and
 *                 segment) before open: a recorded input stays an input
 *                 for the heap, not for the refusal at open, across layout
 *                 changes (the committed regression inputs set it;
 *                 with MK_FUZZ_SHM_REACH=1 such an input must open, which
 *                 `make fuzz` checks on them, so a layout change that the
 *                 re-signing misses fails there instead of turning them
 *                 silently into inputs for the refusal)
 *
 * Without bit 0 the file is as long as the header's size field says (at
 * most MAX_FILE bytes). A plain image gives its first L - T bytes to the
 * start of the file and its last T bytes to its end. A sparse image is a
 * list of records [skip: 2 bytes LE][n: 1 byte][8 * n bytes]: skip 8 * skip
 * bytes (zeros), then copy the 8 * n bytes; the tail byte is unused. (The
 * segments of the seed corpus are up to 256 KiB with scattered data, and
 * scripts/run-fuzzers runs with -max_len=70000.) The file (one path per
 * process, in /tmp, rewritten for every input and unlinked as soon as it is
 * opened) is opened with mk_shm_open (MK_SHM_FILE). The lock bytes of the
 * image are replaced by those of a fresh robust mutex (or of one whose owner
 * died): a mutex image locked by a live process blocks by design, and a
 * pthread mutex's bytes are not data the heap can check. An image whose
 * region or segment magic word is zero is skipped: open takes it for a
 * segment being created and waits a second.
 *
 * Whatever the bytes, nothing may crash, read or write outside the mapping,
 * or hit undefined behaviour:
 *   - open either refuses with an error code or accepts;
 *   - an accepted segment is validated, walked, its directory iterated, its
 *     statistics, info and process list read, dumped (to /dev/null);
 *   - the script runs (if the segment validated, or ctl bit 3): alloc
 *     (plain, owned, zeroed, aligned), free, realloc, usable_size, free and
 *     realloc of arbitrary offsets (near UINT64_MAX too), object
 *     create/find/remove, reclaim, walk, iterate, stats, ptr/offset. Every
 *     call must return a documented code and every block or object it
 *     hands out must lie inside the mapping. On a segment that validated,
 *     the segment must also validate after every step, and the blocks and
 *     objects the script made must keep what was written to them: a
 *     segment that validates and then breaks under legal calls is a bug (of
 *     the operation or of validate), and the target aborts.
 *
 * Hostile mode (the default; MK_FUZZ_SHM_HOSTILE=0 in the environment
 * turns it off). shm.h promises that every offset read from a segment is
 * checked before it is followed, whether or not the segment validates, and
 * whoever else writes to it (docs/REGION.md, "Untrusted memory"). So:
 *   - inputs with ctl bit 3 run the script on segments that fail
 *     validation too;
 *   - a script step "ptr/offset" whose op byte has bit 7 set instead
 *     scribbles on the segment between two operations, as a buggy or
 *     hostile process mapping it would: one word at an 8-aligned offset
 *     anywhere but the lock bytes (a small offset, a flipped bit, a copy of
 *     another word, or raw bytes).
 * On such a segment only "a documented code, nothing outside the mapping,
 * no hang" is checked (ASan and the -timeout see to the last two).
 *
 * Build and run (see scripts/run-fuzzers, `make fuzz`):
 *   cmake -S . -B build-fuzz -DMK_BUILD_FUZZ=ON -DMK_BUILD_TESTS=OFF \
 *         -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
 *   cmake --build build-fuzz
 *   scripts/run-fuzzers build-fuzz 60
 * Longer runs, e.g. overnight on 8 cores, on a persistent corpus (each
 * worker process uses its own file):
 *   mkdir -p corpus-shm && cp -r build-fuzz/fuzz-corpus/fuzz_shm/. corpus-shm/
 *   build-fuzz/bin/fuzz_shm -jobs=8 -workers=8 -max_total_time=28800 \
 *       -max_len=70000 -timeout=10 -rss_limit_mb=2048 corpus-shm
 * Replay a crash: build-fuzz/bin/fuzz_shm crash-<hash>; with
 * MK_FUZZ_SHM_TRACE=1 in the environment each step's operation is printed.
 * Seeds: tests/fuzz/seedgen_shm.c (written to build-fuzz/fuzz-corpus/fuzz_shm/),
 * and tests/fuzz/corpus/fuzz_shm/: inputs that once found a defect.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memkit/shm.h"
#include "os/os.h"
#include "region/region_int.h"
#include "shm/shm_int.h"

#define MAX_FILE ((size_t)256 * 1024)
#define MAX_LIVE 32
#define MAX_OBJS 8
#define STEPS    40

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A defect found: stop here so that libFuzzer records the input. */
#define BUG(cond)                                                                                  \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_shm: %s:%d: BUG(%s)\n", __FILE__, __LINE__, #cond);              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static char g_path[128];
static unsigned char *g_file; /* the file's bytes, built per input */
static FILE *g_null;
static bool g_hostile; /* unless MK_FUZZ_SHM_HOSTILE=0: ctl bit 3, scribbles */
static bool g_trace;   /* MK_FUZZ_SHM_TRACE=1: each step's operation to stderr (replays) */
static bool g_reach;   /* MK_FUZZ_SHM_REACH=1: an input with ctl bit 6 must open */
static _Alignas(64) unsigned char g_lock_fresh[MK__OS_MUTEX_BYTES];
static _Alignas(64) unsigned char g_lock_dead[MK__OS_MUTEX_BYTES];

static bool is_code(int rc) { return rc <= 0 && rc >= MK_ENOTRECOVERABLE; }

/* ---- set-up ------------------------------------------------------------------------ */

static void *die_holding(void *m) {
    BUG(mk__os_mutex_lock(m) == MK_OK);
    return NULL; /* exits holding it: the kernel marks the mutex "owner died" */
}

static void cleanup(void) {
    unlink(g_path);
    if (g_null) fclose(g_null);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    snprintf(g_path, sizeof g_path, "/tmp/memkit-fuzz-shm-%ld.seg", (long)getpid());
    /* Caches in these small images too: the cache code reads blocks and
     * the tables of dead processes without the lock, from the segment. */
    mk__test_cache_min_segment = 0;
    g_file = malloc(MAX_FILE);
    g_null = fopen("/dev/null", "w");
    const char *hostile = getenv("MK_FUZZ_SHM_HOSTILE");
    g_hostile = !(hostile && strcmp(hostile, "0") == 0);
    const char *trace = getenv("MK_FUZZ_SHM_TRACE");
    g_trace = trace && strcmp(trace, "1") == 0;
    const char *reach = getenv("MK_FUZZ_SHM_REACH");
    g_reach = reach && strcmp(reach, "1") == 0;
    BUG(g_file && g_null);
    atexit(cleanup);
    /* The two lock images: fresh, and left locked by a thread that died. */
    BUG(mk__os_mutex_init((mk__os_mutex *)(void *)g_lock_fresh, true, NULL) == MK_OK);
    memcpy(g_lock_dead, g_lock_fresh, sizeof g_lock_dead);
    pthread_t t;
    BUG(pthread_create(&t, NULL, die_holding, g_lock_dead) == 0);
    BUG(pthread_join(t, NULL) == 0);
    static _Alignas(64) unsigned char probe[MK__OS_MUTEX_BYTES];
    memcpy(probe, g_lock_dead, sizeof probe);
    mk__os_mutex *pm = (mk__os_mutex *)(void *)probe;
    BUG(mk__os_mutex_lock(pm) == MK_EOWNERDEAD);
    BUG(mk__os_mutex_consistent(pm) == MK_OK && mk__os_mutex_unlock(pm) == MK_OK);
    return 0;
}

/* Write the file for this input: F bytes from g_file. */
static void write_file(size_t len) {
    int fd = open(g_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    BUG(fd >= 0);
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, g_file + done, len - done);
        BUG(w > 0);
        done += (size_t)w;
    }
    close(fd);
}

/* ---- the script ------------------------------------------------------------------------ */

typedef struct script {
    const uint8_t *p, *end;
} script;

static unsigned next8(script *s) { return s->p < s->end ? *s->p++ : 0; }
static unsigned next16(script *s) { return next8(s) | next8(s) << 8; }
static uint64_t next24(script *s) { return next16(s) | (uint64_t)next8(s) << 16; }

typedef struct blk {
    mk_off off;
    size_t size;
    uint8_t seed;
} blk;

typedef struct obj {
    char name[8];
    mk_off off;
    size_t size;
    uint8_t seed;
} obj;

typedef struct state {
    mk_shm *s;
    bool trusted; /* the segment validated before the script */
    bool observer;
    uint64_t size; /* the segment's size as last seen */
    blk live[MAX_LIVE];
    size_t n;
    obj objs[MAX_OBJS];
    size_t nobj;
    uint8_t seed;
} state;

static uint64_t seg_size(mk_shm *s) { return mk_region_size(mk_shm_region(s)); }

/* The bytes this process has mapped. */
static uint64_t mapped(const state *st) {
    return atomic_load_explicit(&st->s->mapped, memory_order_acquire);
}

/* [off, off + len) lies inside the mapping (mk_shm_ptr maps what grew). On
 * an untrusted segment the header's size may be a scribble: then the
 * mapping is the bound. */
static void inside(state *st, mk_off off, uint64_t len) {
    BUG(off >= 16 && off % 16 == 0);
    unsigned char *p = mk_shm_ptr(st->s, off);
    BUG(p != NULL);
    st->size = seg_size(st->s);
    uint64_t bound = st->trusted ? st->size : mapped(st);
    if (off + len > bound)
        fprintf(stderr, "fuzz_shm: block [%llu, +%llu) past %llu (size %llu)\n",
                (unsigned long long)off, (unsigned long long)len, (unsigned long long)bound,
                (unsigned long long)st->size);
    BUG(off + len <= bound);
    BUG(mk_shm_offset(st->s, p) == off);
}

/* A hostile write between two operations: one word, anywhere but the lock
 * (a mutex's bytes are not data anyone can check; a scribbled one may
 * block forever by design). */
static void scribble(state *st, script *sc) {
    unsigned char *base = (unsigned char *)mk_shm_region(st->s);
    uint64_t size = mapped(st);
    if (size < 64) return;
    mk_off at = (mk_off)(next24(sc) % size) & ~(mk_off)7;
    if (at + 8 > offsetof(mk__hdr, lock) && at < offsetof(mk__hdr, lock) + sizeof(mk__hdr){0}.lock)
        return;
    uint64_t *w = (uint64_t *)(void *)(base + at);
    uint64_t v;
    switch (next8(sc) % 5) {
    case 0: /* an offset somewhere in (or just past) the segment */
        v = next24(sc) % (size + 64);
        break;
    case 1: /* a near-copy: one bit flipped (spans, flags, links, counts) */
        v = *w ^ UINT64_C(1) << (next8(sc) % 64);
        break;
    case 2: /* a copy of another word (a stale link, a foreign header) */
        v = *(const uint64_t *)(const void *)(base + ((next24(sc) % size) & ~(uint64_t)7));
        break;
    case 3: /* raw bytes */
        v = next24(sc) | next24(sc) << 24 | (uint64_t)next16(sc) << 48;
        break;
    default: /* an offset near the top of the address space: a sum with it wraps */
        v = UINT64_MAX - next8(sc) % 64;
        break;
    }
    *w = v;
    st->trusted = false;
}

static void stamp(state *st, mk_off off, size_t n, uint8_t seed) {
    memset(mk_shm_ptr(st->s, off), seed, n);
}
static bool intact(state *st, mk_off off, size_t n, uint8_t seed) {
    const unsigned char *p = mk_shm_ptr(st->s, off);
    for (size_t i = 0; i < n; i++)
        if (p[i] != seed) return false;
    return true;
}

static bool known(const state *st, mk_off off) {
    for (size_t i = 0; i < st->n; i++)
        if (st->live[i].off == off) return true;
    for (size_t i = 0; i < st->nobj; i++)
        if (st->objs[i].off == off) return true;
    return false;
}

static int walk_visit(const mk_shm_block *b, void *arg) {
    state *st = arg;
    BUG(b->info.offset + b->info.size <= st->size && b->info.span >= b->info.size);
    BUG(b->kind >= MK_SHM_BLOCK_FREE && b->kind <= MK_SHM_BLOCK_CACHED);
    BUG(mk_shm_block_kind_name(b->kind) != NULL);
    if (b->kind == MK_SHM_BLOCK_OWNED) BUG(b->owner_slot < MK_SHM_MAX_PROCS);
    return 0;
}

static int obj_visit(const mk_shm_obj *o, void *arg) {
    state *st = arg;
    BUG(memchr(o->name, 0, sizeof o->name) != NULL);
    BUG(o->offset % 16 == 0 && o->offset + o->size <= st->size);
    return 0;
}

static int stop_visit(const mk_shm_block *b, void *arg) {
    (void)b;
    (void)arg;
    return 7;
}

/* Everything that only looks. On a trusted segment these must succeed. */
static void inspect(state *st, bool dump) {
    mk_shm *s = st->s;
    st->size = seg_size(s);
    int rc = mk_shm_walk(s, walk_visit, st);
    BUG(is_code(rc));
    if (st->trusted) BUG(rc == 0 && mk_shm_walk(s, stop_visit, NULL) == 7);
    rc = mk_shm_obj_iter(s, obj_visit, st);
    BUG(is_code(rc));
    if (st->trusted) BUG(rc == 0);
    mk_stats ms;
    rc = mk_shm_stats(s, &ms);
    BUG(is_code(rc));
    if (st->trusted) {
        BUG(rc == MK_OK);
        BUG(ms.bytes_used + ms.bytes_free <= ms.capacity && ms.largest_free <= ms.bytes_free);
        BUG(ms.blocks_used >= st->n + st->nobj);
    }
    mk_shm_info in;
    rc = mk_shm_get_info(s, &in);
    BUG(is_code(rc));
    if (rc == MK_OK) {
        BUG(memchr(in.name, 0, sizeof in.name) != NULL);
        if (st->trusted) BUG(in.size == st->size && in.attached <= MK_SHM_MAX_PROCS);
    }
    mk_shm_proc procs[8];
    size_t np = 0;
    rc = mk_shm_procs(s, procs, 8, &np);
    BUG(is_code(rc));
    if (rc == MK_OK && st->trusted) {
        size_t self = 0;
        for (size_t i = 0; i < np && i < 8; i++) self += procs[i].self != 0;
        BUG(self <= 1);
        if (!st->observer && np <= 8) BUG(self == 1);
    }
    if (dump) BUG(is_code(mk_shm_dump(s, g_null)));
}

static void check_mine(state *st) {
    for (size_t i = 0; i < st->n; i++)
        BUG(intact(st, st->live[i].off, st->live[i].size, st->live[i].seed));
    for (size_t i = 0; i < st->nobj; i++)
        BUG(intact(st, st->objs[i].off, st->objs[i].size, st->objs[i].seed));
}

static void step_alloc(state *st, script *sc, unsigned op) {
    size_t sz = next16(sc) % ((op & 0x80) ? 40000 : 2048);
    size_t align = (op & 0x10) ? (size_t)1 << (next8(sc) % 14) : 0;
    unsigned flags = ((op & 0x20) ? MK_SHM_OWNED : 0) | ((op & 0x40) ? MK_SHM_ZERO : 0);
    mk_off off = 0;
    int rc = mk_shm_alloc_ex(st->s, sz, align, flags, &off);
    BUG(is_code(rc));
    if (st->trusted) {
        if (st->observer && (flags & MK_SHM_OWNED))
            BUG(rc == MK_EINVAL || rc == MK_EALIGN);
        else
            BUG(rc == MK_OK || rc == MK_ENOMEM || rc == MK_ETOOBIG || rc == MK_EALIGN);
    }
    if (rc != MK_OK) return;
    size_t u = 0;
    int urc = mk_shm_usable_size(st->s, off, &u);
    if (st->trusted) BUG(urc == MK_OK && u >= sz);
    inside(st, off, sz);
    if (urc == MK_OK) inside(st, off, u);
    if (align > 16) BUG(((uintptr_t)mk_shm_ptr(st->s, off) & (align - 1)) == 0);
    if (flags & MK_SHM_ZERO) BUG(intact(st, off, sz, 0));
    if (!st->trusted) return;
    if (st->n < MAX_LIVE) {
        st->live[st->n] = (blk){off, sz, st->seed++};
        stamp(st, off, sz, st->live[st->n].seed);
        st->n++;
    } else {
        BUG(mk_shm_free(st->s, off) == MK_OK);
    }
}

static void step_arbitrary(state *st, script *sc, unsigned op) {
    uint64_t r = next24(sc);
    /* In or just past the segment; one in 16 near the top of the address
     * space, where an offset plus a header's size wraps. */
    mk_off off = r % 16 == 15 ? UINT64_MAX - (r >> 4) % 64 : (mk_off)r % (st->size + 64);
    if (known(st, off)) return;
    mk_off out = 0;
    int rc;
    switch ((op >> 5) & 3) {
    case 0:
        rc = mk_shm_free(st->s, off);
        break;
    case 1:
        rc = mk_shm_realloc(st->s, off, next16(sc) % 3000, &out);
        if (rc == MK_OK) inside(st, out, 0);
        break;
    default: {
        size_t u = 0;
        rc = mk_shm_usable_size(st->s, off, &u);
        if (rc == MK_OK) inside(st, off, u);
        break;
    }
    }
    /* The script may name a block the image held before: then the call is
     * legal and may succeed (and may move or free that block). */
    BUG(is_code(rc));
    /* Nothing the script owns is freed by touching an offset that is none of its blocks. */
}

static void step_realloc(state *st, script *sc) {
    if (!st->n) return;
    size_t i = next8(sc) % st->n;
    size_t sz = next16(sc) % 9000;
    blk *b = &st->live[i];
    mk_off out = 0;
    if (!st->trusted) { /* the block may be damaged or gone: any code */
        int rc = mk_shm_realloc(st->s, b->off, sz, &out);
        BUG(is_code(rc));
        if (rc == MK_OK) {
            inside(st, out, sz);
            b->off = out;
        }
        return;
    }
    int rc = mk_shm_realloc(st->s, b->off, sz, &out);
    BUG(rc == MK_OK || rc == MK_ENOMEM || rc == MK_ETOOBIG);
    if (rc != MK_OK) {
        BUG(intact(st, b->off, b->size, b->seed));
        return;
    }
    inside(st, out, sz);
    size_t keep = sz < b->size ? sz : b->size;
    BUG(intact(st, out, keep, b->seed));
    *b = (blk){out, sz, st->seed++};
    stamp(st, out, sz, b->seed);
}

static void step_free(state *st, script *sc) {
    if (!st->n) return;
    size_t i = next8(sc) % st->n;
    if (!st->trusted) { /* the block may be damaged or gone: any code */
        BUG(is_code(mk_shm_free(st->s, st->live[i].off)));
        st->live[i] = st->live[--st->n];
        return;
    }
    BUG(intact(st, st->live[i].off, st->live[i].size, st->live[i].seed));
    BUG(mk_shm_free(st->s, st->live[i].off) == MK_OK);
    /* a second free is refused */
    int rc = mk_shm_free(st->s, st->live[i].off);
    BUG(rc != MK_OK && is_code(rc));
    st->live[i] = st->live[--st->n];
}

static void obj_name(char *nm, unsigned k) { snprintf(nm, 8, "f%u", k % MAX_OBJS); }

static obj *mine_obj(state *st, const char *nm) {
    for (size_t i = 0; i < st->nobj; i++)
        if (strcmp(st->objs[i].name, nm) == 0) return &st->objs[i];
    return NULL;
}

static void step_obj(state *st, script *sc, unsigned op) {
    char nm[8];
    obj_name(nm, next8(sc));
    /* After a scribble the objects the script made may be damaged or gone,
     * so they promise nothing: any code (as step_free, step_realloc). */
    obj *o = st->trusted ? mine_obj(st, nm) : NULL;
    switch ((op >> 5) & 3) {
    case 0:
    case 1: { /* find-or-create (or exclusive) */
        uint32_t type = next8(sc) % 3;
        size_t sz = next16(sc) % 5000;
        unsigned flags = (op & 0x80) ? MK_SHM_OBJ_EXCL : 0;
        mk_off off = 0;
        int created = -1;
        int rc = mk_shm_obj_create(st->s, nm, type, sz, flags, &off, &created);
        BUG(is_code(rc));
        if (st->trusted) BUG(rc == MK_OK || rc == MK_EEXIST || rc == MK_ENOMEM || rc == MK_ETOOBIG);
        if (rc != MK_OK) return;
        BUG(created == 0 || created == 1);
        if (o) BUG(created == 0 && off == o->off);
        inside(st, off, sz);
        if (!st->trusted) return; /* a damaged heap may hand out a block over the directory */
        if (created) BUG(intact(st, off, sz, 0));
        if (!o) {
            if (st->nobj == MAX_OBJS) return;
            o = &st->objs[st->nobj++];
            memcpy(o->name, nm, sizeof o->name);
        } else if (o->size > sz) {
            sz = o->size;
        }
        o->off = off;
        o->size = sz;
        o->seed = st->seed++;
        stamp(st, off, sz, o->seed);
        break;
    }
    case 2: { /* find */
        mk_shm_obj rec;
        int rc = mk_shm_obj_find(st->s, nm, &rec);
        BUG(is_code(rc));
        if (o) BUG(rc == MK_OK && rec.offset == o->off && rec.size >= o->size);
        if (rc == MK_OK) {
            BUG(strcmp(rec.name, nm) == 0);
            inside(st, rec.offset, rec.size);
        }
        break;
    }
    default: { /* remove */
        int rc = mk_shm_obj_remove(st->s, nm);
        BUG(is_code(rc));
        if (o) {
            BUG(rc == MK_OK);
            *o = st->objs[--st->nobj];
            BUG(mk_shm_obj_find(st->s, nm, NULL) == MK_ENOENT);
        }
        break;
    }
    }
}

static void run_script(state *st, script *sc) {
    for (int step = 0; step < STEPS && sc->p < sc->end; step++) {
        unsigned op = next8(sc);
        st->size = seg_size(st->s);
        if (g_trace)
            fprintf(stderr, "fuzz_shm: step %d: op %u (case %u)%s\n", step, op, op % 12,
                    st->trusted ? "" : ", untrusted");
        switch (op % 12) {
        case 0:
        case 1:
        case 2:
            step_alloc(st, sc, op);
            break;
        case 3:
            step_free(st, sc);
            break;
        case 4:
            step_arbitrary(st, sc, op);
            break;
        case 5:
            step_realloc(st, sc);
            break;
        case 6:
        case 7:
        case 8:
            step_obj(st, sc, op);
            break;
        case 9: {
            uint64_t nb = 0, bytes = 0;
            int rc = mk_shm_reclaim(st->s, &nb, &bytes);
            BUG(is_code(rc));
            if (st->trusted) BUG(rc == MK_OK);
            break;
        }
        case 10:
            inspect(st, (op & 0xF0) == 0xF0);
            break;
        default: { /* ptr/offset of anything; or a hostile write */
            if ((op & 0x80) && g_hostile) {
                scribble(st, sc);
                break;
            }
            mk_off off = (mk_off)next24(sc);
            unsigned char *p = mk_shm_ptr(st->s, off);
            if (p) BUG(mk_shm_offset(st->s, p) == off);
            BUG(mk_shm_offset(st->s, NULL) == 0);
            break;
        }
        }
        if (st->trusted) {
            mk_fault f = {0};
            int rc = mk_shm_validate(st->s, &f);
            if (rc != MK_OK)
                fprintf(stderr, "fuzz_shm: step %d (op %u): validate: %s at %llu\n", step, op,
                        f.invariant ? f.invariant : mk_strerror(rc), (unsigned long long)f.offset);
            BUG(rc == MK_OK);
            check_mine(st);
        }
    }
    if (!st->trusted) return;
    check_mine(st);
    for (size_t i = 0; i < st->n; i++) BUG(mk_shm_free(st->s, st->live[i].off) == MK_OK);
    for (size_t i = 0; i < st->nobj; i++) BUG(mk_shm_obj_remove(st->s, st->objs[i].name) == MK_OK);
    st->n = st->nobj = 0;
    BUG(mk_shm_validate(st->s, NULL) == MK_OK);
}

/* ---- one input ------------------------------------------------------------------------- */

static uint64_t hdr_word(const unsigned char *img, size_t len, size_t off) {
    uint64_t v = 0;
    if (off + 8 <= len) memcpy(&v, img + off, 8);
    return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    unsigned ctl = data[size - 3];
    size_t tail = (size_t)data[size - 2] * 64;
    size_t slen = (size_t)data[size - 1] * 2;
    size_t body = size - 3;
    if (slen > body) slen = body;
    size_t len = body - slen; /* the image */
    script sc = {data + len, data + body};
    if (len > MAX_FILE) len = MAX_FILE;
    if (tail > len) tail = len;

    /* Lay the file out. */
    size_t flen;
    if (ctl & 16) {
        size_t at = 0;
        const uint8_t *p = data, *end = data + len;
        memset(g_file, 0, MAX_FILE);
        while (end - p >= 3 && at < MAX_FILE) {
            size_t skip = (size_t)(p[0] | p[1] << 8) * 8, n = (size_t)p[2] * 8;
            p += 3;
            if (n > (size_t)(end - p)) n = (size_t)(end - p);
            at = skip > MAX_FILE - at ? MAX_FILE : at + skip;
            if (n > MAX_FILE - at) n = MAX_FILE - at;
            memcpy(g_file + at, p, n);
            p += n;
            at += n;
        }
        flen = at;
        if (!(ctl & 1)) {
            uint64_t claimed = hdr_word(g_file, MAX_FILE, offsetof(mk__hdr, size));
            if (claimed > flen) flen = claimed > MAX_FILE ? MAX_FILE : (size_t)claimed;
        }
    } else {
        flen = len;
        if (!(ctl & 1)) {
            uint64_t claimed = hdr_word(data, len - tail, offsetof(mk__hdr, size));
            if (claimed > flen) flen = claimed > MAX_FILE ? MAX_FILE : (size_t)claimed;
        }
        memcpy(g_file, data, len - tail);
        memset(g_file + (len - tail), 0, flen - len);
        memcpy(g_file + (flen - tail), data + (len - tail), tail);
    }
    if (flen == 0) return 0;
    if (flen >= sizeof(mk__hdr)) {
        /* Waited for a second as a segment being created: skip. */
        if (hdr_word(g_file, flen, offsetof(mk__hdr, magic)) == 0 ||
            hdr_word(g_file, flen, offsetof(mk__hdr, user) + 8 * MK__U_MAGIC) == 0)
            return 0;
        memcpy(g_file + offsetof(mk__hdr, lock), (ctl & 2) ? g_lock_dead : g_lock_fresh,
               MK__OS_MUTEX_BYTES);
        if (ctl & 64) {
            uint64_t sig = mk__layout_signature(), shm_sig = mk__shm_layout_sig();
            memcpy(g_file + offsetof(mk__hdr, signature), &sig, 8);
            memcpy(g_file + offsetof(mk__hdr, user) + 8 * MK__U_SIG, &shm_sig, 8);
        }
    }
    write_file(flen);

    unsigned flags = MK_SHM_FILE | ((ctl & 4) ? MK_SHM_OBSERVE : 0);
    mk_shm *s = NULL;
    int rc = mk_shm_open(g_path, flags, &s);
    unlink(g_path); /* the handle keeps the file; a crash leaves nothing behind */
    BUG(is_code(rc));
    if (g_reach && (ctl & 64)) BUG(rc == MK_OK);
    if (rc != MK_OK) {
        BUG(s == NULL);
        return 0;
    }
    BUG(s != NULL);
    static state st;
    memset(&st, 0, sizeof st);
    st.s = s;
    st.observer = (ctl & 4) != 0;
    st.seed = 1;
    mk_fault f = {0};
    rc = mk_shm_validate(s, &f);
    BUG(is_code(rc));
    BUG(f.code == rc);
    if (rc != MK_OK) BUG(f.invariant != NULL);
    st.trusted = rc == MK_OK;
    inspect(&st, (ctl & 32) != 0);
    if (st.trusted || (g_hostile && (ctl & 8))) run_script(&st, &sc);
    rc = mk_shm_close(s);
    BUG(is_code(rc));
    return 0;
}
