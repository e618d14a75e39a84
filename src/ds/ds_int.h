/*
 * Internals shared by the lock-free structures (src/ds). Every structure
 * starts with one cache line of common header (mk__ds_hdr), written once by
 * its creator and read-only afterwards; the magic is stored last, with
 * release order, so a reader that sees it sees a complete header.
 *
 * Placement: mk__ds_make() is the one path from "create / open by name in a
 * segment, init / attach in a buffer" to a checked header; each structure
 * gives it a kind (type tag, footprint, capacity rule) and an init function.
 */
#ifndef MK_DS_INT_H
#define MK_DS_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "memkit/ipc.h"

#define MK__DS_LINE    64
#define MK__DS_MAGIC   0x4d4b4453u /* "MKDS" */
#define MK__DS_VERSION 1u

/* The common header: the first cache line of every structure. */
typedef struct mk__ds_hdr {
    _Atomic uint32_t magic; /* MK__DS_MAGIC once initialised, else 0 */
    uint32_t type;          /* MK_IPC_TYPE_* */
    uint32_t version;       /* MK__DS_VERSION */
    uint32_t layout;        /* mk__ds_layout(): line size and struct sizes of the build */
    uint64_t capacity;      /* elements (queues, ring), length (array), slots (pool) */
    uint64_t elem_size;     /* bytes per element */
    uint64_t bytes;         /* footprint from the header on */
    uint64_t check;         /* mix of the fields above: a torn or stray header fails */
} mk__ds_hdr;

/* Sleep/wake for one condition ("not empty", "not full"): an event count.
 * A sleeper reads seq, sets sleepers, re-checks its condition, then sleeps
 * while seq is unchanged. The side that makes the condition true checks
 * sleepers after its (seq_cst) publishing store and only then clears it,
 * bumps seq and wakes: no system call while nobody sleeps. A sleeper that
 * dies leaves sleepers set, which costs one needless wake, then is cleared. */
typedef struct mk__ds_event {
    _Atomic uint32_t seq;
    _Atomic uint32_t sleepers;
} mk__ds_event;

/* How a structure's memory was found. */
enum mk__ds_mode { MK__DS_CREATE, MK__DS_OPEN, MK__DS_INIT, MK__DS_ATTACH };

/* What mk__ds_make needs to know of a structure type. */
typedef struct mk__ds_kind {
    uint32_t type;
    uint32_t ctl_size; /* bytes of the type's control lines (layout signature) */
    bool pow2;         /* capacity must be a power of two >= 2 */
    size_t min_capacity;
    size_t max_capacity;
    size_t fixed_elem; /* 0: caller's choice; else the only element size */
    /* footprint in bytes for (capacity, elem_size); both already in range */
    size_t (*footprint)(size_t capacity, size_t elem_size);
    /* set up a zero-filled structure (header fields already written) */
    void (*init)(mk__ds_hdr *h, const void *arg);
} mk__ds_kind;

/* A structure's memory, checked: its header and whether futex waits must be
 * process-shared. */
typedef struct mk__ds_place {
    mk__ds_hdr *hdr;
    bool shared;
    bool light; /* publishers may use release stores (mk__ds_light_publish) */
} mk__ds_place;

/* The request behind every create/open/init/attach. */
typedef struct mk__ds_req {
    enum mk__ds_mode mode;
    mk_shm *seg;      /* CREATE, OPEN */
    const char *name; /* CREATE, OPEN */
    unsigned flags;   /* CREATE */
    void *buf;        /* INIT, ATTACH */
    size_t size;      /* INIT, ATTACH */
    size_t capacity;  /* CREATE, INIT */
    size_t elem_size; /* every mode */
    const void *init_arg;
} mk__ds_req;

/* The request of each public entry point, as a compound literal: every
 * mk_X_create/open/init/attach is one call of its make function. Fields
 * a mode does not use stay 0. */
#define MK__DS_CREATE_REQ(seg_, name_, capacity_, elem_size_, flags_, init_arg_)                   \
    (&(mk__ds_req){.mode = MK__DS_CREATE,                                                          \
                   .seg = (seg_),                                                                  \
                   .name = (name_),                                                                \
                   .flags = (flags_),                                                              \
                   .capacity = (capacity_),                                                        \
                   .elem_size = (elem_size_),                                                      \
                   .init_arg = (init_arg_)})
#define MK__DS_OPEN_REQ(seg_, name_, elem_size_)                                                   \
    (&(mk__ds_req){.mode = MK__DS_OPEN, .seg = (seg_), .name = (name_), .elem_size = (elem_size_)})
#define MK__DS_INIT_REQ(buf_, size_, capacity_, elem_size_, init_arg_)                             \
    (&(mk__ds_req){.mode = MK__DS_INIT,                                                            \
                   .buf = (buf_),                                                                  \
                   .size = (size_),                                                                \
                   .capacity = (capacity_),                                                        \
                   .elem_size = (elem_size_),                                                      \
                   .init_arg = (init_arg_)})
#define MK__DS_ATTACH_REQ(buf_, size_, elem_size_)                                                 \
    (&(mk__ds_req){                                                                                \
        .mode = MK__DS_ATTACH, .buf = (buf_), .size = (size_), .elem_size = (elem_size_)})

/* Footprint of a structure of kind k, or 0 if capacity/elem_size are out
 * of range or the size overflows. */
size_t mk__ds_footprint(const mk__ds_kind *k, size_t capacity, size_t elem_size);

/* Create, open, init or attach; on success out->hdr is a checked header
 * of kind k. Errors as documented in ipc.h. */
int mk__ds_make(const mk__ds_kind *k, const mk__ds_req *req, mk__ds_place *out);

/* Round up to a multiple of a power of two; the caller checks overflow. */
static inline size_t mk__ds_round(size_t n, size_t to) { return (n + to - 1) & ~(to - 1); }

/* Add a and b into *sum; false on overflow. */
static inline bool mk__ds_add(size_t a, size_t b, size_t *sum) {
    *sum = a + b;
    return *sum >= a;
}

/* Whether this process is registered for the platform's heavy barrier
 * (asked once, on the first create/open/init/attach). Then a publisher's
 * store of its index needs only release order before mk__ds_notify's
 * load: a sleeper runs the heavy barrier between its store of sleepers and
 * its re-check, which orders the publisher's store and load as a fence
 * would (docs/IPC.md, "Waiting"). Otherwise the store must be seq_cst. */
bool mk__ds_light_publish(void);

/* Wake sleepers of e if there are any: the fast path is one load. The
 * caller's publishing store comes first: release order if the place is
 * light, else seq_cst (it orders the store before this load, against the
 * sleeper's seq_cst store of sleepers before its seq_cst re-check). */
void mk__ds_wake_slow(mk__ds_event *e, bool shared);
static inline void mk__ds_notify(mk__ds_event *e, bool shared) {
    if (atomic_load_explicit(&e->sleepers, memory_order_seq_cst) != 0) mk__ds_wake_slow(e, shared);
}

/* Wait until ready(arg) is true, at most timeout_ns (< 0: no limit, 0: test
 * once). ready must read the other side's index with seq_cst order.
 * MK_OK, MK_ETIMEDOUT, MK_EOS. */
int mk__ds_wait(mk__ds_event *e, bool shared, bool (*ready)(const void *arg), const void *arg,
                int64_t timeout_ns);

/* Copy one element: constant sizes get inlined moves. */
static inline void mk__ds_copy(void *restrict dst, const void *restrict src, size_t n) {
    switch (n) {
    case 8:
        memcpy(dst, src, 8);
        break;
    case 16:
        memcpy(dst, src, 16);
        break;
    case 32:
        memcpy(dst, src, 32);
        break;
    case 64:
        memcpy(dst, src, 64);
        break;
    default:
        memcpy(dst, src, n);
        break;
    }
}

/* The calling process as a slot owner: pid in the high half, the low 32
 * bits of its start time in the low half (never 0). */
uint64_t mk__ds_owner_self(void);
/* Whether the process named by an owner word is alive. */
bool mk__ds_owner_alive(uint64_t owner);

/* ---- test hooks: crash points ---------------------------------------------
 * Test builds (MK_TEST_HOOKS) call mk__ds_test_hook(point) at the places
 * where a crash is most interesting; a test kills the process there. */
enum mk__ds_crash_point {
    MK__DS_CP_SPSC_PUSH_COPIED = 1, /* element copied, not yet published */
    MK__DS_CP_SPSC_POP_COPIED,      /* element copied out, tail not yet moved */
    MK__DS_CP_RING_PUSH_COPIED,     /* bulk copied in, head not yet moved */
    MK__DS_CP_RING_POP_COPIED,      /* bulk copied out, tail not yet moved */
    MK__DS_CP_MPMC_PUSH_CLAIMED,    /* cell claimed, not yet published */
    MK__DS_CP_MPMC_POP_CLAIMED,     /* cell claimed, not yet released */
    MK__DS_CP_POOL_ACQUIRED,        /* slot off the free stack, owner not yet set */
    MK__DS_CP_POOL_RELEASING,       /* owner cleared, slot not yet on the stack */
    MK__DS_CP_COUNT
};
#ifdef MK_TEST_HOOKS
extern void (*mk__ds_test_hook)(int point);
/* Set before the first structure is made: behave as on a system without
 * the heavy barrier (seq_cst publishes, sleeps in slices). */
extern bool mk__ds_test_no_barrier;
#define MK__DS_CRASH_POINT(p)                                                                      \
    do {                                                                                           \
        if (mk__ds_test_hook) mk__ds_test_hook(p);                                                 \
    } while (0)
#else
#define MK__DS_CRASH_POINT(p) ((void)0)
#endif

#endif
