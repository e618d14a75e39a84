/*
 * libFuzzer target: the lock-free structures (ipc.h) attached from untrusted
 * bytes, then operated on.
 *
 * A structure's header and control lines live in shared memory that another
 * process, buggy or hostile, can write at any time. ipc.h promises that
 * everything read from there is checked before use: attach refuses a bad
 * header, and every index or count read later is masked into range or
 * refused. This target checks that promise. The input is:
 *
 *   [0]        type: array, spsc, mpmc, ring, objpool, atomic32, atomic64 (mod 7)
 *   [1]        ctl   bit 0: the element size is the image header's (else [2..3])
 *                    bit 1: re-sign the header (magic, version, type, layout
 *                           and check word made valid, so that mutated
 *                           capacity, element size and bytes reach the
 *                           later checks); with bit 2 also set bytes to the
 *                           footprint of the header's capacity and size
 *                    bit 3: attach with [4] * 8 bytes less than the buffer
 *                    bit 4: also try the argument errors (NULL, misaligned)
 *                    bit 5: the buffer is [5] * 256 bytes longer than the
 *                           image, zero-filled (so that a large structure
 *                           whose slots are mostly zeros fits a short input)
 *                    bit 6: by name (below)
 *   [2..3]     element size guess, little-endian (0xfff0.. are edge values)
 *   [4]        truncation (ctl bit 3)      [5]  zero fill (ctl bit 5)
 *   [6]        by name: bits 0-2 the name (that type's object; 7: a name
 *              that does not exist), bit 3 find-or-create (mk_X_create) of
 *              that existing name instead of mk_X_open, bit 4 with the
 *              header's capacity + 1, bit 5 MK_IPC_EXCL
 *   [7]        unused
 *   [8..72)    the script: operations and their argument bytes
 *   [72..end)  the image
 *
 * The buffer (image plus fill) is allocated 64-byte aligned with exactly its
 * length, so ASan sees any access past it, and given to mk_X_attach(). If
 * attach succeeds the bytes from the structure's footprint to the end of the
 * buffer are poisoned: the structure must stay inside its own footprint too.
 * Then the script runs the type's operations: try_push/try_pop, the *_wait
 * calls with timeouts of 0 to 50 us, bulk push/pop, reserve/commit,
 * peek/release, acquire/release/ptr/index, reclaim and repair, array
 * get/set/at/data, the atomics, size queries, and a re-attach. A step whose
 * op byte has bit 7 set is a hostile write instead: one word anywhere in the
 * footprint (a small number, a flipped bit, a copy of another word, raw
 * bytes), as a peer process could write between two operations.
 *
 * By name: at start the target makes a segment (shared memory, its name
 * removed at once) holding one large object of each type. An input with
 * ctl bit 6 writes its image into the memory of one of them instead (as
 * much as fits; an image whose magic is 0 is skipped, since an opener waits
 * a second for its creator) and opens it with mk_X_open() or
 * mk_X_create(), so that the object's own size bounds the structure.
 * During the script all of the segment but the structure is poisoned.
 *
 * Checked, whatever the bytes: no access outside the buffer or the
 * footprint (ASan), no undefined behaviour (UBSan), every call returns
 * promptly (libFuzzer's -timeout catches a loop that never ends; a wait must
 * return within a second whatever its timeout below 50 us), every code is one
 * the header documents, and:
 *   - a footprint accepted by attach fits the buffer;
 *   - a pop that returns MK_OK writes exactly elem_size bytes, between guard
 *     bytes, and what it wrote is one of the structure's slots;
 *   - bulk counts are at most n and the capacity; sizes at most the capacity;
 *   - reserve/peek runs, pool slots and array elements lie inside the
 *     footprint (and are written or read in full);
 *   - pool indices are in range and mk_objpool_index() inverts
 *     mk_objpool_ptr(); array get/set/at agree with the length;
 *   - the atomics behave as a single-threaded model says (nobody else writes
 *     them here, except the script's own hostile writes).
 *
 * Build and run (see scripts/run-fuzzers, `make fuzz`):
 *   cmake -S . -B build-fuzz -DMK_BUILD_FUZZ=ON -DMK_BUILD_TESTS=OFF \
 *         -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
 *   cmake --build build-fuzz
 *   scripts/run-fuzzers build-fuzz 60
 * Longer runs, e.g. overnight on 8 cores, on a persistent corpus:
 *   mkdir -p corpus-ds && cp -r build-fuzz/fuzz-corpus/fuzz_ds/. corpus-ds/
 *   build-fuzz/bin/fuzz_ds -jobs=8 -workers=8 -max_total_time=28800 \
 *       -max_len=70000 -timeout=10 -rss_limit_mb=2048 corpus-ds
 * Replay a crash or a timeout: build-fuzz/bin/fuzz_ds crash-<hash>
 * Seeds: tests/fuzz/seedgen_ds.c (written to build-fuzz/fuzz-corpus/fuzz_ds/).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ds/ds_int.h"
#include "memkit/ipc.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#endif
#endif
#ifndef POISON
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define CTL        8u
#define SCRIPT     64u
#define PREFIX     (CTL + SCRIPT)
#define MAX_STEPS  48
#define GUARD      16u
#define GUARD_BYTE 0xE7u
#define FILL_BYTE  0xA5u
#define MAX_HELD   32
/* A wait with a timeout of at most 50 us must be back within this. */
#define PROMPT_NS ((int64_t)1000000000)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A defect found: stop here so that libFuzzer records the input. */
#define BUG(cond)                                                                                  \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_ds: check failed at line %d: %s\n", __LINE__, #cond);            \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

enum { T_ARRAY, T_SPSC, T_MPMC, T_RING, T_POOL, T_A32, T_A64, T_COUNT };

static const uint32_t type_tag[T_COUNT] = {
    MK_IPC_TYPE_ARRAY,   MK_IPC_TYPE_SPSC,     MK_IPC_TYPE_MPMC,    MK_IPC_TYPE_RING,
    MK_IPC_TYPE_OBJPOOL, MK_IPC_TYPE_ATOMIC32, MK_IPC_TYPE_ATOMIC64};

/* Layout signature of each type in this build, read from a structure built
 * by mk_X_init() (LLVMFuzzerInitialize), for re-signing headers. */
static uint32_t type_layout[T_COUNT];

/* rc is one of the codes listed (the list ends with 1, which no code is). */
static bool one_of(int rc, ...) {
    va_list ap;
    va_start(ap, rc);
    bool found = false;
    for (int c = va_arg(ap, int); c != 1 && !found; c = va_arg(ap, int)) found = c == rc;
    va_end(ap);
    return found;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- the script ---------------------------------------------------------------- */

typedef struct script {
    const uint8_t *p, *end;
} script;

static unsigned next8(script *s) { return s->p < s->end ? *s->p++ : 0; }
static unsigned next16(script *s) { return next8(s) | next8(s) << 8; }

/* A timeout for a *_wait call: 0 (try once), 1 ns, 1 us or 50 us. */
static int64_t next_timeout(script *s) {
    static const int64_t t[4] = {0, 1, 1000, 50000};
    return t[next8(s) % 4];
}

/* A count for bulk, reserve, peek, commit and release: small, around the
 * capacity, or (big allowed: no caller buffer behind it) huge. */
static size_t next_count(script *s, size_t cap, bool big) {
    unsigned v = next8(s);
    switch (v >> 6) {
    case 0:
        return v & 7;
    case 1:
        return cap + (v & 3) - 1 > cap + 1 ? 0 : cap + (v & 3) - 1; /* cap - 1 .. cap + 1 */
    case 2:
        return (v & 63) % (cap + 2);
    default:
        if (!big) return (v & 63) % (cap + 2);
        return (v & 1) ? SIZE_MAX : SIZE_MAX / 2 + (v & 62);
    }
}

/* ---- the session: a buffer and a structure attached in it ---------------------- */

typedef struct gbuf {
    unsigned char *raw;
    size_t n;
} gbuf;

/* n bytes between two guards of GUARD bytes, filled with FILL_BYTE. */
static unsigned char *gb_new(gbuf *g, size_t n) {
    g->n = n;
    g->raw = malloc(n + 2 * GUARD);
    BUG(g->raw != NULL);
    memset(g->raw, GUARD_BYTE, GUARD);
    memset(g->raw + GUARD, FILL_BYTE, n);
    memset(g->raw + GUARD + n, GUARD_BYTE, GUARD);
    return g->raw + GUARD;
}

static void gb_check(const gbuf *g) {
    for (size_t i = 0; i < GUARD; i++) {
        BUG(g->raw[i] == GUARD_BYTE);
        BUG(g->raw[GUARD + g->n + i] == GUARD_BYTE);
    }
}

static void gb_refill(gbuf *g) { memset(g->raw + GUARD, FILL_BYTE, g->n); }

typedef struct session {
    int type;
    unsigned char *buf; /* MK_IPC_ALIGN-aligned, `alloc` bytes (by name: the object's) */
    size_t alloc;
    size_t size; /* bytes given to attach */
    size_t elem; /* bytes per element (4 or 8 for the atomics) */
    size_t cap;  /* capacity, length, slots (1 for an atomic) */
    size_t fp;   /* footprint: the structure's bytes from buf on */
    /* Where the elements are: elements of stride bytes from slots on (the
     * layouts of docs/IPC.md); NULL for the pool and the atomics. */
    const unsigned char *slots;
    size_t stride;
    union {
        mk_array *array;
        mk_spsc *spsc;
        mk_mpmc *mpmc;
        mk_ring *ring;
        mk_objpool *pool;
        mk_atomic32 *a32;
        mk_atomic64 *a64;
        void *any;
    } h;
    uint64_t model;          /* atomics: the value nobody but the script changed */
    uint32_t held[MAX_HELD]; /* pool: slots acquired by the script */
    size_t nheld;
    gbuf one;        /* one element */
    gbuf many;       /* capacity + 1 elements */
    size_t elem_arg; /* the element size given to attach or open */
    /* By name (ctl bit 6): the structure is a named object of the segment. */
    bool named;
    int target;      /* the name opened: that type's object; T_COUNT: none */
    bool create;     /* find-or-create of the existing name instead of open */
    unsigned cflags; /* create: MK_IPC_EXCL or 0 */
    size_t ccap;     /* create: the capacity asked for */
} session;

/* The segment of the by-name mode: one object per type, made at start. */
static mk_shm *seg;
static unsigned char *seg_base; /* its mapping */
static size_t seg_size;
static unsigned char *obj_at[T_COUNT]; /* each object's structure (its data, line-aligned) */
static size_t obj_avail[T_COUNT];      /* bytes from there to the end of the object */
static const char *const obj_name[T_COUNT + 1] = {"ds-array", "ds-spsc", "ds-mpmc", "ds-ring",
                                                  "ds-pool",  "ds-a32",  "ds-a64",  "ds-missing"};

/* The attach call of the session's type, on buf/size with elem_size. */
static int attach(session *ss, void *buf, size_t size, size_t elem, void **out) {
    switch (ss->type) {
    case T_ARRAY:
        return mk_array_attach(buf, size, elem, (mk_array **)out);
    case T_SPSC:
        return mk_spsc_attach(buf, size, elem, (mk_spsc **)out);
    case T_MPMC:
        return mk_mpmc_attach(buf, size, elem, (mk_mpmc **)out);
    case T_RING:
        return mk_ring_attach(buf, size, elem, (mk_ring **)out);
    case T_POOL:
        return mk_objpool_attach(buf, size, elem, (mk_objpool **)out);
    case T_A32:
        return mk_atomic32_attach(buf, size, (mk_atomic32 **)out);
    default:
        return mk_atomic64_attach(buf, size, (mk_atomic64 **)out);
    }
}

/* Open (or find-or-create) the session's name as the session's type. */
static int open_named(session *ss, void **out) {
    const char *name = obj_name[ss->target];
    size_t e = ss->elem_arg, c = ss->ccap;
    unsigned f = ss->cflags;
    if (ss->create) {
        switch (ss->type) {
        case T_ARRAY:
            return mk_array_create(seg, name, c, e, f, (mk_array **)out);
        case T_SPSC:
            return mk_spsc_create(seg, name, c, e, f, (mk_spsc **)out);
        case T_MPMC:
            return mk_mpmc_create(seg, name, c, e, f, (mk_mpmc **)out);
        case T_RING:
            return mk_ring_create(seg, name, c, e, f, (mk_ring **)out);
        case T_POOL:
            return mk_objpool_create(seg, name, c, e, f, (mk_objpool **)out);
        case T_A32:
            return mk_atomic32_create(seg, name, 0, f, (mk_atomic32 **)out);
        default:
            return mk_atomic64_create(seg, name, 0, f, (mk_atomic64 **)out);
        }
    }
    switch (ss->type) {
    case T_ARRAY:
        return mk_array_open(seg, name, e, (mk_array **)out);
    case T_SPSC:
        return mk_spsc_open(seg, name, e, (mk_spsc **)out);
    case T_MPMC:
        return mk_mpmc_open(seg, name, e, (mk_mpmc **)out);
    case T_RING:
        return mk_ring_open(seg, name, e, (mk_ring **)out);
    case T_POOL:
        return mk_objpool_open(seg, name, e, (mk_objpool **)out);
    case T_A32:
        return mk_atomic32_open(seg, name, (mk_atomic32 **)out);
    default:
        return mk_atomic64_open(seg, name, (mk_atomic64 **)out);
    }
}

/* The codes attach may give (ipc.h). */
static bool attach_code(int rc) {
    return one_of(rc, MK_OK, MK_EINVAL, MK_EALIGN, MK_EBADMAGIC, MK_EVERSION, MK_ELAYOUT, MK_ETYPE,
                  MK_EELEMSIZE, MK_ETRUNCATED, MK_ECORRUPT, MK_ENOMEM, 1);
}

/* Attach to the buffer, or open by name: the session's structure. */
static int open_session(session *ss, void **out) {
    if (!ss->named) {
        int rc = attach(ss, ss->buf, ss->size, ss->elem_arg, out);
        BUG(attach_code(rc));
        return rc;
    }
    /* A magic of 0 is a creator at work: an opener would wait a second for
     * it, then give MK_EBUSY. Not what this target is for. */
    const mk__ds_hdr *hdr = (const mk__ds_hdr *)ss->buf;
    if (atomic_load_explicit(&hdr->magic, memory_order_relaxed) == 0) return MK_EBUSY;
    int rc = open_named(ss, out);
    BUG(one_of(rc, MK_OK, MK_EINVAL, MK_ENOENT, MK_ETYPE, MK_EELEMSIZE, MK_ECAPACITY, MK_EEXIST,
               MK_ETOOBIG, MK_EBADOFF, MK_EBADMAGIC, MK_EVERSION, MK_ELAYOUT, MK_ECORRUPT,
               MK_ETRUNCATED, MK_ENOMEM, MK_EBUSY, 1));
    if (ss->target == T_COUNT) BUG(rc == MK_ENOENT || rc == MK_EELEMSIZE);
    if (rc == MK_OK) BUG(ss->target == ss->type && !(ss->cflags & MK_IPC_EXCL));
    return rc;
}

/* Poison what lies around the structure: the rest of the buffer, or all
 * of the segment but the structure. */
static void fence_up(const session *ss) {
    if (ss->named) {
        POISON(seg_base, seg_size);
        UNPOISON(ss->buf, ss->fp);
    } else {
        POISON(ss->buf + ss->fp, ss->alloc - ss->fp);
    }
}

static void fence_down(const session *ss) {
    if (ss->named)
        UNPOISON(seg_base, seg_size);
    else
        UNPOISON(ss->buf + ss->fp, ss->alloc - ss->fp);
}

static void close_handle(int type, void *h) {
    switch (type) {
    case T_ARRAY:
        mk_array_close(h);
        break;
    case T_SPSC:
        mk_spsc_close(h);
        break;
    case T_MPMC:
        mk_mpmc_close(h);
        break;
    case T_RING:
        mk_ring_close(h);
        break;
    case T_POOL:
        mk_objpool_close(h);
        break;
    default: /* the atomics' handle is the shared record */
        break;
    }
}

/* What attach accepted: capacity and footprint, through the public API,
 * checked against the buffer; where the elements are. */
static void learn(session *ss) {
    const mk__ds_hdr *hdr = (const mk__ds_hdr *)ss->buf;
    size_t fp = 0;
    ss->slots = NULL;
    ss->stride = ss->elem;
    switch (ss->type) {
    case T_ARRAY:
        ss->cap = mk_array_length(ss->h.array);
        BUG(mk_array_elem_size(ss->h.array) == ss->elem);
        fp = mk_array_footprint(ss->cap, ss->elem);
        ss->slots = mk_array_data(ss->h.array);
        break;
    case T_SPSC:
        ss->cap = mk_spsc_capacity(ss->h.spsc);
        BUG(mk_spsc_elem_size(ss->h.spsc) == ss->elem);
        fp = mk_spsc_footprint(ss->cap, ss->elem);
        break;
    case T_MPMC:
        ss->cap = mk_mpmc_capacity(ss->h.mpmc);
        fp = mk_mpmc_footprint(ss->cap, ss->elem);
        ss->stride = (16 + ss->elem + 7) & ~(size_t)7; /* cell {seq, hole, element} */
        break;
    case T_RING:
        ss->cap = mk_ring_capacity(ss->h.ring);
        fp = mk_ring_footprint(ss->cap, ss->elem);
        break;
    case T_POOL:
        ss->cap = mk_objpool_slots(ss->h.pool);
        fp = mk_objpool_footprint(ss->cap, ss->elem);
        break;
    default:
        ss->cap = 1;
        fp = (size_t)hdr->bytes; /* checked by attach against the kind's size */
        BUG(fp <= MK_ATOMIC_FOOTPRINT);
        break;
    }
    /* The footprint of what attach accepted is the header's and fits. */
    BUG(fp != 0 && fp == hdr->bytes && fp <= ss->size && ss->cap == hdr->capacity);
    ss->fp = fp;
    /* Queues and ring: the slots end the structure (docs/IPC.md layouts). */
    if (ss->type == T_SPSC || ss->type == T_RING || ss->type == T_MPMC) {
        BUG(ss->cap <= fp / ss->stride);
        ss->slots = ss->buf + fp - ss->cap * ss->stride + (ss->type == T_MPMC ? 16 : 0);
    }
    if (ss->type == T_ARRAY)
        BUG(ss->slots >= ss->buf + MK__DS_LINE &&
            (size_t)(ss->slots - ss->buf) + ss->cap * ss->elem <= fp);
    if (ss->type == T_A32) ss->model = mk_atomic32_load(ss->h.a32);
    if (ss->type == T_A64) ss->model = mk_atomic64_load(ss->h.a64);
}

/* out (elem bytes) equals one of the slots: what a pop copied out. */
static bool in_slots(const session *ss, const unsigned char *out) {
    for (size_t k = 0; k < ss->cap; k++)
        if (memcmp(out, ss->slots + k * ss->stride, ss->elem) == 0) return true;
    return false;
}

/* A run of n elements at p (reserve, peek) lies on slot boundaries inside
 * the slots. */
static void run_inside(const session *ss, const unsigned char *p, size_t n) {
    BUG((p == NULL) == (n == 0));
    if (p == NULL) return;
    BUG(p >= ss->slots && (size_t)(p - ss->slots) % ss->elem == 0);
    BUG(n <= ss->cap && (size_t)(p - ss->slots) / ss->elem + n <= ss->cap);
}

/* A wait call returned: promptly, with a code it may give. */
static void wait_done(int rc, int64_t timeout, int64_t t0) {
    BUG(now_ns() - t0 < PROMPT_NS);
    if (timeout == 0)
        BUG(rc == MK_OK || rc == MK_ETIMEDOUT);
    else
        BUG(one_of(rc, MK_OK, MK_ETIMEDOUT, MK_EOS, 1));
}

/* A hostile write: one word of the structure, between two operations. */
static void scribble(session *ss, script *s) {
    size_t words = ss->fp / 8;
    if (words == 0) return;
    unsigned char *w = ss->buf + (next16(s) % words) * 8;
    uint64_t old, v;
    memcpy(&old, w, 8);
    switch (next8(s) % 4) {
    case 0: /* a small number, or just below zero */
        v = (uint64_t)(int64_t)(int8_t)next8(s);
        break;
    case 1: /* one bit flipped */
        v = old ^ UINT64_C(1) << (next8(s) % 64);
        break;
    case 2: { /* another word, give or take a little (an index next to another) */
        uint64_t other;
        memcpy(&other, ss->buf + (next16(s) % words) * 8, 8);
        v = other + (uint64_t)(int64_t)(int8_t)next8(s);
        break;
    }
    default: /* raw bytes */
        v = (uint64_t)next16(s) | (uint64_t)next16(s) << 16 | (uint64_t)next16(s) << 32 |
            (uint64_t)next16(s) << 48;
        break;
    }
    memcpy(w, &v, 8);
    if (ss->type == T_A32) ss->model = mk_atomic32_load(ss->h.a32);
    if (ss->type == T_A64) ss->model = mk_atomic64_load(ss->h.a64);
}

/* Attach (or open) again, the structure as it is now (after hostile
 * writes); on success the new handle replaces the old one. */
static void reattach(session *ss) {
    void *nh = NULL;
    fence_down(ss); /* opening by name reads the segment's directory */
    int rc = open_session(ss, &nh);
    if (rc == MK_OK) {
        close_handle(ss->type, ss->h.any);
        ss->h.any = nh;
        size_t old_cap = ss->cap;
        learn(ss);
        if (ss->cap != old_cap) { /* a header re-signed by the hostile writes */
            ss->nheld = 0;
            free(ss->many.raw);
            gb_new(&ss->many, (ss->cap + 1) * ss->elem);
        }
    }
    fence_up(ss);
}

/* ---- the operations of each type ----------------------------------------------- */

/* The calls the queue steps make, the same for SPSC and MPMC queues. */
typedef struct queue_calls {
    int (*try_push)(void *q, const void *in);
    int (*push_wait)(void *q, const void *in, int64_t timeout);
    int (*try_pop)(void *q, void *out);
    int (*pop_wait)(void *q, void *out, int64_t timeout);
    size_t (*size)(const void *q);
    size_t (*capacity)(const void *q);
} queue_calls;

static int spsc_try_push(void *q, const void *in) { return mk_spsc_try_push(q, in); }
static int spsc_push_wait(void *q, const void *in, int64_t t) {
    return mk_spsc_push_wait(q, in, t);
}
static int spsc_try_pop(void *q, void *out) { return mk_spsc_try_pop(q, out); }
static int spsc_pop_wait(void *q, void *out, int64_t t) { return mk_spsc_pop_wait(q, out, t); }
static size_t spsc_size(const void *q) { return mk_spsc_size(q); }
static size_t spsc_capacity(const void *q) { return mk_spsc_capacity(q); }
static const queue_calls spsc_calls = {spsc_try_push, spsc_push_wait, spsc_try_pop,
                                       spsc_pop_wait, spsc_size,      spsc_capacity};

static int mpmc_try_push(void *q, const void *in) { return mk_mpmc_try_push(q, in); }
static int mpmc_push_wait(void *q, const void *in, int64_t t) {
    return mk_mpmc_push_wait(q, in, t);
}
static int mpmc_try_pop(void *q, void *out) { return mk_mpmc_try_pop(q, out); }
static int mpmc_pop_wait(void *q, void *out, int64_t t) { return mk_mpmc_pop_wait(q, out, t); }
static size_t mpmc_size(const void *q) { return mk_mpmc_size(q); }
static size_t mpmc_capacity(const void *q) { return mk_mpmc_capacity(q); }
static const queue_calls mpmc_calls = {mpmc_try_push, mpmc_push_wait, mpmc_try_pop,
                                       mpmc_pop_wait, mpmc_size,      mpmc_capacity};

/* Steps 0..5 of a queue: push (try, timed), pop (try, try, timed), size. */
static void queue_step(session *ss, script *s, unsigned step, void *q, const queue_calls *c) {
    unsigned char *out = ss->one.raw + GUARD;
    int rc;
    switch (step) {
    case 0:
    case 1: { /* push, try or timed */
        unsigned char *in = malloc(ss->elem);
        BUG(in != NULL);
        memset(in, (int)next8(s), ss->elem);
        if (step == 0) {
            rc = c->try_push(q, in);
            BUG(rc == MK_OK || rc == MK_EFULL);
        } else {
            int64_t t = next_timeout(s), t0 = now_ns();
            rc = c->push_wait(q, in, t);
            wait_done(rc, t, t0);
        }
        free(in);
        break;
    }
    case 2:
    case 3:
    case 4: /* pop, try or timed */
        gb_refill(&ss->one);
        if (step != 4) {
            rc = c->try_pop(q, out);
            BUG(rc == MK_OK || rc == MK_EEMPTY);
        } else {
            int64_t t = next_timeout(s), t0 = now_ns();
            rc = c->pop_wait(q, out, t);
            wait_done(rc, t, t0);
        }
        gb_check(&ss->one);
        if (rc == MK_OK) BUG(in_slots(ss, out));
        break;
    default:
        BUG(c->size(q) <= ss->cap && c->capacity(q) == ss->cap);
        break;
    }
}

static void op_spsc(session *ss, script *s, unsigned op) {
    if (op % 7 < 6)
        queue_step(ss, s, op % 7, ss->h.spsc, &spsc_calls);
    else
        reattach(ss);
}

static void op_mpmc(session *ss, script *s, unsigned op) {
    if (op % 8 < 6) {
        queue_step(ss, s, op % 8, ss->h.mpmc, &mpmc_calls);
    } else if (op % 8 == 6) { /* repair: each cell at most once per pass */
        size_t n = SIZE_MAX;
        int rc = mk_mpmc_repair(ss->h.mpmc, (next8(s) & 1) ? &n : NULL);
        BUG(rc == MK_OK || rc == MK_ECORRUPT);
        if (rc == MK_OK && n != SIZE_MAX) BUG(n <= 2 * ss->cap);
    } else {
        reattach(ss);
    }
}

static void op_ring(session *ss, script *s, unsigned op) {
    mk_ring *r = ss->h.ring;
    size_t got = SIZE_MAX, n;
    int rc;
    switch (op % 12) {
    case 0: { /* bulk push: the caller's array holds capacity + 1 elements */
        n = next_count(s, ss->cap, false);
        unsigned char *in = malloc((ss->cap + 1) * ss->elem);
        BUG(in != NULL);
        memset(in, (int)next8(s), (ss->cap + 1) * ss->elem);
        got = mk_ring_push_bulk(r, in, n);
        BUG(got <= n && got <= ss->cap);
        free(in);
        break;
    }
    case 1: { /* bulk pop into capacity + 1 elements between guards */
        n = next_count(s, ss->cap, false);
        unsigned char *out = ss->many.raw + GUARD;
        gb_refill(&ss->many);
        got = mk_ring_pop_bulk(r, out, n);
        BUG(got <= n && got <= ss->cap);
        gb_check(&ss->many);
        if (got) BUG(in_slots(ss, out) && in_slots(ss, out + (got - 1) * ss->elem));
        break;
    }
    case 2:
    case 3: { /* reserve, write the run in place; with op 3 commit all of it */
        n = next_count(s, ss->cap, true);
        unsigned char *p = mk_ring_reserve(r, n, &got);
        BUG(got <= n);
        run_inside(ss, p, got);
        if (p) memset(p, (int)next8(s), got * ss->elem);
        if (op % 12 == 3) BUG(mk_ring_commit(r, got) == MK_OK);
        break;
    }
    case 4:
        rc = mk_ring_commit(r, next_count(s, ss->cap, true));
        BUG(rc == MK_OK || rc == MK_EINVAL);
        break;
    case 5:
    case 6: { /* peek, read the run in place; with op 6 release all of it */
        n = next_count(s, ss->cap, true);
        const unsigned char *p = mk_ring_peek(r, n, &got);
        BUG(got <= n);
        run_inside(ss, p, got);
        volatile unsigned sum = 0;
        for (size_t i = 0; p && i < got * ss->elem; i++) sum += p[i];
        (void)sum;
        if (op % 12 == 6) BUG(mk_ring_release(r, got) == MK_OK);
        break;
    }
    case 7:
        rc = mk_ring_release(r, next_count(s, ss->cap, true));
        BUG(rc == MK_OK || rc == MK_EINVAL);
        break;
    case 8:
    case 9: { /* wait for the consumer's or the producer's condition */
        int64_t t = next_timeout(s), t0 = now_ns();
        rc = (op % 12 == 8) ? mk_ring_wait_not_empty(r, t) : mk_ring_wait_not_full(r, t);
        wait_done(rc, t, t0);
        break;
    }
    case 10:
        BUG(mk_ring_size(r) <= ss->cap && mk_ring_capacity(r) == ss->cap);
        /* A reserve or peek without a pointer for the count is allowed. */
        (void)mk_ring_reserve(r, 1, NULL);
        (void)mk_ring_peek(r, 1, NULL);
        break;
    default:
        reattach(ss);
        break;
    }
}

/* An index: mostly in range, else just past it or huge. */
static size_t next_index(script *s, size_t len) {
    unsigned v = next16(s);
    switch (v >> 14) {
    case 0:
    case 1:
        return (v & 0x3fff) % len;
    case 2:
        return len + (v & 3);
    default:
        return (v & 1) ? SIZE_MAX - (v & 6) : (size_t)UINT32_MAX - (v & 6);
    }
}

/* The address of pool slot i (i < slots) lies in the footprint. */
static unsigned char *pool_slot(const session *ss, uint32_t i) {
    unsigned char *p = mk_objpool_ptr(ss->h.pool, i);
    BUG(p != NULL && p >= ss->buf + MK__DS_LINE && (size_t)(p - ss->buf) + ss->elem <= ss->fp);
    uint32_t back = UINT32_MAX;
    BUG(mk_objpool_index(ss->h.pool, p, &back) == MK_OK && back == i);
    return p;
}

static void op_pool(session *ss, script *s, unsigned op) {
    mk_objpool *p = ss->h.pool;
    int rc;
    switch (op % 10) {
    case 0:
    case 1: { /* acquire, write the slot */
        uint32_t i = UINT32_MAX;
        rc = mk_objpool_acquire(p, &i);
        BUG(one_of(rc, MK_OK, MK_EEMPTY, MK_ECORRUPT, 1));
        if (rc != MK_OK) break;
        BUG(i < ss->cap);
        memset(pool_slot(ss, i), (int)next8(s), ss->elem);
        if (ss->nheld < MAX_HELD) ss->held[ss->nheld++] = i;
        break;
    }
    case 2: /* release a slot the script holds (maybe taken since: damage) */
        if (ss->nheld) {
            size_t k = next8(s) % ss->nheld;
            rc = mk_objpool_release(p, ss->held[k]);
            BUG(one_of(rc, MK_OK, MK_EDOUBLEFREE, MK_ECORRUPT, 1));
            ss->held[k] = ss->held[--ss->nheld];
            break;
        }
        /* fall through */
    case 3: { /* release any index */
        size_t i = next_index(s, ss->cap);
        rc = mk_objpool_release(p, (uint32_t)i);
        BUG(one_of(rc, MK_OK, MK_EBADOFF, MK_EDOUBLEFREE, MK_ECORRUPT, 1));
        if ((uint32_t)i >= ss->cap) BUG(rc == MK_EBADOFF);
        break;
    }
    case 4: { /* ptr of any index, and index of addresses around it */
        uint32_t i = (uint32_t)next_index(s, ss->cap), back;
        unsigned char *q = mk_objpool_ptr(p, i);
        BUG((q == NULL) == (i >= ss->cap));
        if (q) memset(pool_slot(ss, i), (int)next8(s), ss->elem);
        const unsigned char *probe[4] = {ss->buf, ss->buf + ss->fp, q ? q + 1 : NULL,
                                         q ? q - 16 : ss->buf + ss->fp - ss->elem};
        for (int k = 0; k < 4; k++) {
            rc = mk_objpool_index(p, probe[k], &back);
            BUG(rc == MK_OK || rc == MK_EBADOFF);
            if (rc == MK_OK) BUG(back < ss->cap && mk_objpool_ptr(p, back) == probe[k]);
        }
        BUG(mk_objpool_index(p, q, NULL) == MK_EINVAL);
        break;
    }
    case 5:
        BUG(mk_objpool_count_free(p) <= ss->cap && mk_objpool_slots(p) == ss->cap);
        break;
    case 6: { /* reclaim what dead owners hold (the script's own slots stay) */
        size_t n = SIZE_MAX;
        rc = mk_objpool_reclaim(p, &n);
        BUG(rc == MK_OK || rc == MK_ECORRUPT);
        if (rc == MK_OK) BUG(n <= ss->cap);
        break;
    }
    case 7: { /* put back what is neither owned nor free */
        size_t n = SIZE_MAX;
        rc = mk_objpool_repair(p, &n);
        BUG(one_of(rc, MK_OK, MK_ENOMEM, MK_ECORRUPT, 1));
        if (rc == MK_OK) BUG(n <= ss->cap);
        break;
    }
    case 8:
        BUG(mk_objpool_acquire(p, NULL) == MK_EINVAL);
        BUG(mk_objpool_ptr(p, (uint32_t)ss->cap) == NULL);
        break;
    default:
        reattach(ss);
        break;
    }
}

static void op_array(session *ss, script *s, unsigned op) {
    mk_array *a = ss->h.array;
    unsigned char *out = ss->one.raw + GUARD;
    size_t len = ss->cap, i;
    int rc;
    switch (op % 7) {
    case 0:
    case 1: /* get */
        i = next_index(s, len);
        gb_refill(&ss->one);
        rc = mk_array_get(a, i, out);
        BUG(rc == (i < len ? MK_OK : MK_EBADOFF));
        gb_check(&ss->one);
        if (rc == MK_OK) BUG(memcmp(out, ss->slots + i * ss->elem, ss->elem) == 0);
        break;
    case 2: { /* set */
        i = next_index(s, len);
        unsigned char *in = malloc(ss->elem);
        BUG(in != NULL);
        memset(in, (int)next8(s), ss->elem);
        rc = mk_array_set(a, i, in);
        BUG(rc == (i < len ? MK_OK : MK_EBADOFF));
        if (rc == MK_OK) BUG(memcmp(in, ss->slots + i * ss->elem, ss->elem) == 0);
        free(in);
        break;
    }
    case 3: { /* at, write the element in place */
        i = next_index(s, len);
        unsigned char *e = mk_array_at(a, i);
        BUG(e == (i < len ? ss->slots + i * ss->elem : NULL));
        if (e) memset(e, (int)next8(s), ss->elem);
        break;
    }
    case 4: /* the unchecked fast path: every element */
        BUG(mk_array_data(a) == ss->slots && mk_array_length(a) == len);
        memset(mk_array_data(a), (int)next8(s), len * ss->elem);
        break;
    case 5:
        BUG(mk_array_get(a, 0, NULL) == MK_EINVAL && mk_array_set(a, 0, NULL) == MK_EINVAL);
        BUG(mk_array_at(a, len) == NULL);
        break;
    default:
        reattach(ss);
        break;
    }
}

static void op_atomic32(session *ss, script *s, unsigned op) {
    mk_atomic32 *a = ss->h.a32;
    uint32_t v = (uint32_t)next16(s) * 0x10001u, m = (uint32_t)ss->model;
    switch (op % 6) {
    case 0:
        BUG(mk_atomic32_load(a) == m);
        break;
    case 1:
        mk_atomic32_store(a, v);
        ss->model = v;
        break;
    case 2:
        BUG(mk_atomic32_add(a, v) == m);
        ss->model = (uint32_t)(m + v);
        break;
    case 3:
        BUG(mk_atomic32_exchange(a, v) == m);
        ss->model = v;
        break;
    case 4: { /* compare-exchange, expecting the value or not */
        uint32_t expected = (op & 8) ? m : m ^ 1u;
        bool ok = mk_atomic32_cas(a, &expected, v);
        BUG(ok == ((op & 8) != 0) && expected == m);
        if (ok) ss->model = v;
        break;
    }
    default:
        reattach(ss);
        break;
    }
}

static void op_atomic64(session *ss, script *s, unsigned op) {
    mk_atomic64 *a = ss->h.a64;
    uint64_t v = (uint64_t)next16(s) * UINT64_C(0x0001000100010001), m = ss->model;
    switch (op % 6) {
    case 0:
        BUG(mk_atomic64_load(a) == m);
        break;
    case 1:
        mk_atomic64_store(a, v);
        ss->model = v;
        break;
    case 2:
        BUG(mk_atomic64_add(a, v) == m);
        ss->model = m + v;
        break;
    case 3:
        BUG(mk_atomic64_exchange(a, v) == m);
        ss->model = v;
        break;
    case 4: {
        uint64_t expected = (op & 8) ? m : m ^ 1u;
        bool ok = mk_atomic64_cas(a, &expected, v);
        BUG(ok == ((op & 8) != 0) && expected == m);
        if (ok) ss->model = v;
        break;
    }
    default:
        reattach(ss);
        break;
    }
}

static void run_script(session *ss, script *s) {
    for (int step = 0; step < MAX_STEPS && s->p < s->end; step++) {
        unsigned op = next8(s);
        if (op & 0x80) {
            scribble(ss, s);
            continue;
        }
        switch (ss->type) {
        case T_ARRAY:
            op_array(ss, s, op);
            break;
        case T_SPSC:
            op_spsc(ss, s, op);
            break;
        case T_MPMC:
            op_mpmc(ss, s, op);
            break;
        case T_RING:
            op_ring(ss, s, op);
            break;
        case T_POOL:
            op_pool(ss, s, op);
            break;
        case T_A32:
            op_atomic32(ss, s, op);
            break;
        default:
            op_atomic64(ss, s, op);
            break;
        }
    }
}

/* ---- headers ------------------------------------------------------------------- */

/* The header's check word: a copy of header_check() in src/ds/common.c
 * (LLVMFuzzerInitialize stops the target if the two disagree). */
static uint64_t header_check(const mk__ds_hdr *h) {
    uint64_t x = UINT64_C(0x9e3779b97f4a7c15);
    const uint64_t v[] = {h->type, h->version, h->layout, h->capacity, h->elem_size, h->bytes};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        x ^= v[i];
        x *= UINT64_C(0xff51afd7ed558ccd);
        x ^= x >> 29;
    }
    return x;
}

/* Footprint for a header's capacity and element size (0: out of range). */
static size_t footprint_of(int type, uint64_t cap, uint64_t elem) {
    if (cap > SIZE_MAX || elem > SIZE_MAX) return 0;
    switch (type) {
    case T_ARRAY:
        return mk_array_footprint((size_t)cap, (size_t)elem);
    case T_SPSC:
        return mk_spsc_footprint((size_t)cap, (size_t)elem);
    case T_MPMC:
        return mk_mpmc_footprint((size_t)cap, (size_t)elem);
    case T_RING:
        return mk_ring_footprint((size_t)cap, (size_t)elem);
    case T_POOL:
        return mk_objpool_footprint((size_t)cap, (size_t)elem);
    default:
        return MK_ATOMIC_FOOTPRINT;
    }
}

/* Make the header one that passes the magic, version, type, layout and
 * check-word tests, whatever its capacity, element size and bytes. */
static void resign(int type, mk__ds_hdr *h, bool fix_bytes) {
    atomic_store_explicit(&h->magic, MK__DS_MAGIC, memory_order_relaxed);
    h->type = type_tag[type];
    h->version = MK__DS_VERSION;
    h->layout = type_layout[type];
    if (fix_bytes) {
        size_t fp = footprint_of(type, h->capacity, h->elem_size);
        if (fp) h->bytes = fp;
    }
    h->check = header_check(h);
}

/* An element size: the 16-bit guess, or at the top of its range an edge. */
static size_t elem_guess(unsigned v) {
    static const size_t edge[16] = {0,
                                    1,
                                    4,
                                    8,
                                    16,
                                    64,
                                    MK_IPC_ELEM_MAX - 1,
                                    MK_IPC_ELEM_MAX,
                                    MK_IPC_ELEM_MAX + 1,
                                    (size_t)UINT32_MAX,
                                    (size_t)UINT32_MAX + 9,
                                    SIZE_MAX / 2,
                                    SIZE_MAX - 63,
                                    SIZE_MAX,
                                    3,
                                    24};
    return v >= 0xfff0u ? edge[v - 0xfff0u] : v;
}

/* Argument errors: checked before the buffer is read. */
static void argument_errors(session *ss, size_t elem) {
    void *h = NULL;
    int rc;
    if (ss->named) {
        session tmp = *ss;
        tmp.create = false;
        tmp.target = ss->type;
        mk_shm *keep = seg;
        seg = NULL; /* no segment */
        rc = open_named(&tmp, &h);
        seg = keep;
        BUG(rc == MK_EINVAL || rc == MK_EELEMSIZE);
        rc = open_named(&tmp, NULL);
        BUG(rc == MK_EINVAL);
        return;
    }
    rc = attach(ss, NULL, ss->size, elem, &h);
    BUG(rc == MK_EINVAL || rc == MK_EELEMSIZE);
    rc = attach(ss, ss->buf, ss->size, elem, NULL);
    BUG(rc == MK_EINVAL);
    if (ss->size >= 8) {
        rc = attach(ss, ss->buf + 8, ss->size - 8, elem, &h);
        BUG(rc == MK_EALIGN || rc == MK_EELEMSIZE);
    }
}

/* Build one structure of type t: in tmp (layout signature, check word) or,
 * with s, by name in the segment (large, so that images of every size fit). */
static int build(int t, mk_shm *s, unsigned char *tmp, size_t size, void **h) {
    switch (t) {
    case T_ARRAY:
        return s ? mk_array_create(s, obj_name[t], 96 * 1024, 1, 0, (mk_array **)h)
                 : mk_array_init(tmp, size, 4, 8, (mk_array **)h);
    case T_SPSC:
        return s ? mk_spsc_create(s, obj_name[t], 65536, 1, 0, (mk_spsc **)h)
                 : mk_spsc_init(tmp, size, 4, 8, (mk_spsc **)h);
    case T_MPMC:
        return s ? mk_mpmc_create(s, obj_name[t], 4096, 1, 0, (mk_mpmc **)h)
                 : mk_mpmc_init(tmp, size, 4, 8, (mk_mpmc **)h);
    case T_RING:
        return s ? mk_ring_create(s, obj_name[t], 65536, 1, 0, (mk_ring **)h)
                 : mk_ring_init(tmp, size, 4, 8, (mk_ring **)h);
    case T_POOL:
        return s ? mk_objpool_create(s, obj_name[t], 2048, 1, 0, (mk_objpool **)h)
                 : mk_objpool_init(tmp, size, 4, 8, (mk_objpool **)h);
    case T_A32:
        return s ? mk_atomic32_create(s, obj_name[t], 0, 0, (mk_atomic32 **)h)
                 : mk_atomic32_init(tmp, size, 0, (mk_atomic32 **)h);
    default:
        return s ? mk_atomic64_create(s, obj_name[t], 0, 0, (mk_atomic64 **)h)
                 : mk_atomic64_init(tmp, size, 0, (mk_atomic64 **)h);
    }
}

/* The segment of the by-name mode: created with a name of this process,
 * whose name is removed at once (the mapping lives until exit). Without
 * it (no shared memory here) the by-name inputs are skipped. */
static void make_segment(void) {
    char name[64];
    snprintf(name, sizeof name, "/mk-fuzz-ds-%ld", (long)getpid());
    mk_shm_config cfg = {.size = 1u << 20, .policy = MK_POLICY_FIRST_FIT, .flags = MK_SHM_NO_CACHE};
    mk_shm_unlink(name, 0);
    int rc = mk_shm_create(name, &cfg, &seg);
    mk_shm_unlink(name, 0);
    if (rc != MK_OK) {
        fprintf(stderr, "fuzz_ds: no segment (%s): by-name inputs are skipped\n", mk_strerror(rc));
        seg = NULL;
        return;
    }
    mk_shm_info info;
    BUG(mk_shm_get_info(seg, &info) == MK_OK);
    seg_base = (unsigned char *)mk_shm_region(seg);
    seg_size = (size_t)info.size;
    for (int t = 0; t < T_COUNT; t++) {
        void *h = NULL;
        rc = build(t, seg, NULL, 0, &h);
        mk_shm_obj obj;
        if (rc != MK_OK || mk_shm_obj_find(seg, obj_name[t], &obj) != MK_OK) {
            fprintf(stderr, "fuzz_ds: cannot make %s: %s\n", obj_name[t], mk_strerror(rc));
            abort();
        }
        unsigned char *p = mk_shm_ptr(seg, obj.offset);
        size_t pad = (size_t)(-(uintptr_t)p & (MK_IPC_ALIGN - 1));
        obj_at[t] = p + pad;
        obj_avail[t] = (size_t)obj.size - pad;
        BUG(obj_at[t] + obj_avail[t] <= seg_base + seg_size);
        close_handle(t, h);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    static _Alignas(MK_IPC_ALIGN) unsigned char tmp[4096];
    for (int t = 0; t < T_COUNT; t++) {
        void *h = NULL;
        int rc = build(t, NULL, tmp, sizeof tmp, &h);
        const mk__ds_hdr *hdr = (const mk__ds_hdr *)tmp;
        if (rc != MK_OK || hdr->check != header_check(hdr)) {
            fprintf(stderr, "fuzz_ds: header_check() here no longer matches src/ds/common.c\n");
            abort();
        }
        type_layout[t] = hdr->layout;
        close_handle(t, h);
    }
    make_segment();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < CTL) return 0;
    session ss;
    memset(&ss, 0, sizeof ss);
    ss.type = data[0] % T_COUNT;
    unsigned ctl = data[1];
    ss.named = (ctl & 64) != 0;
    if (ss.named && seg == NULL) return 0;
    size_t script_len = size - CTL < SCRIPT ? size - CTL : SCRIPT;
    size_t img = size - CTL - script_len;
    size_t len = img + ((ctl & 32) ? (size_t)data[5] * 256 : 0);
    void *mem = NULL;
    if (ss.named) {
        /* The image goes into the named object's memory (what fits). */
        unsigned n = data[6];
        ss.target = (n & 7) == 7 ? T_COUNT : (int)(n & 7);
        ss.create = (n & 8) && ss.target != T_COUNT; /* never makes a new name */
        ss.cflags = (n & 32) && ss.create ? MK_IPC_EXCL : 0;
        int where = ss.target == T_COUNT ? ss.type : ss.target;
        ss.buf = obj_at[where];
        ss.alloc = ss.size = obj_avail[where];
        if (img > ss.alloc) img = ss.alloc;
    } else {
        ss.alloc = len;
        BUG(posix_memalign(&mem, MK_IPC_ALIGN, ss.alloc ? ss.alloc : 1) == 0);
        ss.buf = mem;
        ss.size = ss.alloc;
        if (ctl & 8) ss.size -= (size_t)data[4] * 8 < ss.size ? (size_t)data[4] * 8 : ss.size;
    }
    memcpy(ss.buf, data + PREFIX, img);
    memset(ss.buf + img, 0, ss.alloc - img);

    mk__ds_hdr *hdr = (mk__ds_hdr *)ss.buf;
    bool has_hdr = ss.alloc >= sizeof(mk__ds_hdr);
    if ((ctl & 2) && has_hdr) resign(ss.type, hdr, (ctl & 4) != 0);
    size_t elem =
        (ctl & 1) && has_hdr ? (size_t)hdr->elem_size : elem_guess(data[2] | data[3] << 8);
    ss.elem_arg = elem;
    ss.ccap = has_hdr ? (size_t)hdr->capacity + ((data[6] & 16) ? 1 : 0) : 0;
    if (ctl & 16) argument_errors(&ss, elem);

    int rc = open_session(&ss, &ss.h.any);
    if (rc == MK_OK) {
        ss.elem = ss.type == T_A32 ? 4 : ss.type == T_A64 ? 8 : elem;
        learn(&ss);
        gb_new(&ss.one, ss.elem);
        gb_new(&ss.many, (ss.cap + 1) * ss.elem);
        fence_up(&ss);
        script s = {data + CTL, data + CTL + script_len};
        run_script(&ss, &s);
        fence_down(&ss);
        close_handle(ss.type, ss.h.any);
        free(ss.one.raw);
        free(ss.many.raw);
    }
    free(mem);
    return 0;
}
