/*
 * bench-shm: the shared-memory heap (include/memkit/shm.h) against
 * Boost.Interprocess managed_shared_memory and glibc malloc, in the same run,
 * on the same pre-generated operation sequences, with 1 and 2 processes.
 *
 * Workload (the one of bench-policies, per process): `--live` warm-up
 * allocations (replayed, not timed), then `--ops` operations, each an
 * allocation of a size log-uniform in [16, 4096) or the free of a uniformly
 * chosen live block of the same process, the live count pulled back to
 * `--live`. Process i's sequence is generated from seed + i, before any fork.
 *
 * One run = one allocator x one process count: a fresh segment (memkit or
 * Boost) is created by the parent, N children are forked, each opens the
 * segment by name, pre-faults its mapping, replays its warm-up, then waits on
 * a pipe; the parent closes the pipe and every child times its own replay
 * (allocating and freeing its own blocks, writing the first byte of each
 * block). Total throughput = all timed ops / (last end - first start). After
 * the run the children free what they hold, the parent validates (memkit)
 * and removes the segment. glibc runs in the same children on each one's
 * private heap.
 *
 * Fragmentation comes from a separate untimed pass of the same runs (see
 * bench/README.md for the exact definitions).
 *
 * Big arrays come from mmap, never from malloc, so that the glibc rows start
 * from a small heap in every child.
 */
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <new>
#include <string>
#include <vector>

#include <gnu/libc-version.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <boost/version.hpp>

#include "memkit/error.h"
#include "memkit/region.h"
#include "memkit/shm.h"

#ifndef MK_BENCH_BUILD_TYPE
#define MK_BENCH_BUILD_TYPE "unknown"
#endif
#ifndef MK_BENCH_CXXFLAGS
#define MK_BENCH_CXXFLAGS ""
#endif

namespace bip = boost::interprocess;

namespace {

constexpr uint64_t MIB = uint64_t(1) << 20;
constexpr size_t CHUNK = 65536; /* ops between budget checks */
constexpr unsigned MAX_RUNS = 101;
constexpr int MAX_PROCS = 16;

/* ---- small helpers ---------------------------------------------------------- */

[[noreturn]] void die(const char *what, const char *detail = nullptr) {
    fprintf(stderr, "bench-shm: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(2);
}

double now_wall() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double now_cpu() {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

void *map_bytes(size_t bytes, bool shared = false) {
    int flags = MAP_ANONYMOUS | (shared ? MAP_SHARED : MAP_PRIVATE);
    void *p = mmap(nullptr, bytes ? bytes : 1, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) die("mmap failed", strerror(errno));
    return p;
}

/* xoshiro256** seeded by splitmix64 (the generator of bench-policies). */
struct Rng {
    uint64_t s[4];
    explicit Rng(uint64_t seed) {
        for (auto &w : s) w = splitmix64(&seed);
    }
    static uint64_t splitmix64(uint64_t *x) {
        uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
        z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
        return z ^ (z >> 31);
    }
    static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    uint64_t next() {
        uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return result;
    }
    double unit() { return double(next() >> 11) * 0x1p-53; }
    uint64_t below(uint64_t n) { return uint64_t(unit() * double(n)); }
};

/* ---- workload ------------------------------------------------------------------ */

enum : uint32_t { OP_ALLOC = 0, OP_FREE = 1 };

/* One operation on a slot (blocks are named by slots, reused as they die). */
struct Op {
    uint32_t slot;
    uint32_t size; /* OP_ALLOC: bytes; OP_FREE: bytes of the block freed */
    uint32_t kind;
};

struct Workload {
    Op *ops = nullptr;
    size_t n_ops = 0, n_warm = 0;
    uint32_t n_slots = 0;
    uint64_t n_alloc = 0, n_free = 0; /* timed phase */
    uint64_t peak_live = 0;           /* peak live requested bytes (whole replay) */
    uint64_t peak_blocks = 0;
};

/* The synthetic workload of bench-policies: warm up to `target` live blocks,
 * then n_ops operations, each an allocation (size log-uniform in [16, 4096))
 * or the free of a uniformly chosen live block; P(alloc) = 0.5 + 0.5 *
 * (target - live) / target, clamped to [0, 1]. */
Workload make_workload(uint64_t seed, size_t n_ops, uint32_t target) {
    Workload w;
    Rng r(seed);
    w.n_warm = target;
    w.n_ops = target + n_ops;
    w.ops = static_cast<Op *>(map_bytes(sizeof(Op) * w.n_ops));
    uint32_t cap = 2 * target + 2;
    auto *live = static_cast<uint32_t *>(map_bytes(sizeof(uint32_t) * cap));
    auto *freeslots = static_cast<uint32_t *>(map_bytes(sizeof(uint32_t) * cap));
    auto *sizes = static_cast<uint32_t *>(map_bytes(sizeof(uint32_t) * (n_ops + target + 1)));
    uint32_t n_live = 0, n_freeslots = 0, n_slots = 0;
    uint64_t bytes = 0;
    const double log2_range = std::log2(4096.0 / 16.0);
    for (size_t i = 0; i < w.n_ops; i++) {
        Op &o = w.ops[i];
        bool alloc;
        if (i < w.n_warm || n_live == 0)
            alloc = true;
        else {
            double p = 0.5 + 0.5 * (double(target) - double(n_live)) / double(target);
            alloc = r.unit() < p;
        }
        if (alloc) {
            uint32_t s = n_freeslots ? freeslots[--n_freeslots] : n_slots++;
            if (n_live == cap) die("internal error", "live table full");
            live[n_live++] = s;
            o.kind = OP_ALLOC;
            o.slot = s;
            o.size = uint32_t(16.0 * std::exp2(r.unit() * log2_range));
            sizes[s] = o.size;
            bytes += o.size;
            if (i >= w.n_warm) w.n_alloc++;
        } else {
            uint32_t j = uint32_t(r.below(n_live));
            uint32_t s = live[j];
            live[j] = live[--n_live];
            freeslots[n_freeslots++] = s;
            o.kind = OP_FREE;
            o.slot = s;
            o.size = sizes[s];
            bytes -= o.size;
            if (i >= w.n_warm) w.n_free++;
        }
        w.peak_live = std::max(w.peak_live, bytes);
        w.peak_blocks = std::max<uint64_t>(w.peak_blocks, n_live);
    }
    w.n_slots = n_slots;
    munmap(live, sizeof(uint32_t) * cap);
    munmap(freeslots, sizeof(uint32_t) * cap);
    munmap(sizes, sizeof(uint32_t) * (n_ops + target + 1));
    return w;
}

/* ---- allocators ---------------------------------------------------------------- */

enum Kind { K_MEMKIT, K_BOOST, K_GLIBC };

struct Allocator {
    const char *name;
    Kind kind;
    mk_policy policy; /* memkit: the segment's policy */
    const char *desc;
    unsigned flags = 0; /* memkit: mk_shm_alloc_ex flags */
};

const Allocator allocators[] = {
    {"memkit-tlsf", K_MEMKIT, MK_POLICY_TLSF, "mk_shm_alloc/mk_shm_free, TLSF segment"},
    {"memkit-best", K_MEMKIT, MK_POLICY_BEST_FIT, "mk_shm_alloc/mk_shm_free, best-fit segment"},
    {"boost", K_BOOST, MK_POLICY_FIRST_FIT,
     "bip::managed_shared_memory allocate/deallocate (rbtree_best_fit, default mutex)"},
    {"glibc", K_GLIBC, MK_POLICY_FIRST_FIT, "malloc/free on each process's private heap"},
    {"memkit-owned", K_MEMKIT, MK_POLICY_TLSF,
     "mk_shm_alloc_ex(MK_SHM_OWNED)/mk_shm_free, TLSF segment, through the owner's cache",
     MK_SHM_OWNED},
};
constexpr int N_ALLOCS = int(sizeof allocators / sizeof allocators[0]);
constexpr int A_BOOST = 2, A_GLIBC = 3;

struct Options {
    uint64_t seed = 12345;
    unsigned runs = 5;
    size_t ops = 2000000;
    uint32_t live = 10000;
    uint64_t segment_mib = 256;
    long cache_kib = -1; /* memkit per-process cache budget; -1 the default, 0 none */
    double budget = 60;
    bool prefault = true;
    bool frag = true;
    bool private_segments = false; /* memkit: each process on a segment of its own */
    bool on[N_ALLOCS] = {true, true, true, true, false};
    std::vector<int> procs{1, 2};
    const char *json = nullptr;
};
Options opt;

/* ---- what the children report, in a MAP_SHARED page --------------------------- */

struct ProcResult {
    double t0, t1;   /* CLOCK_MONOTONIC at the start and end of the timed phase */
    double cpu;      /* process CPU seconds of the timed phase */
    uint64_t ops;    /* timed ops done */
    uint64_t failed; /* allocations that failed */
    uint64_t errors; /* frees refused */
    int64_t vcsw, ivcsw;
    uint64_t eng0, eng1; /* memkit: the segment's engine operations at the start and end */
    int status;          /* 0 ok; else setup failed */
    /* fragmentation pass, glibc only: this process's own heap */
    uint64_t gl_peak_used, gl_lo, gl_hi;
};

struct Shared {
    ProcResult proc[MAX_PROCS];
    /* fragmentation pass: global quantities, updated by every child */
    std::atomic<uint64_t> live;       /* live requested bytes now */
    std::atomic<uint64_t> peak_live;  /* its peak */
    std::atomic<uint64_t> peak_used;  /* boost: peak of bytes in use (sampled after each op) */
    std::atomic<uint64_t> spans;      /* memkit: spans of the live blocks now (header included) */
    std::atomic<uint64_t> peak_spans; /* its peak */
    std::atomic<int> timed_done;      /* children past their timed phase */
};
static_assert(std::atomic<uint64_t>::is_always_lock_free, "need lock-free atomics");

Shared *shared_page;
int run_nproc; /* children of the current run */

/* Footprint of a segment: one bit per 4 KiB page of it that a block ever
 * covered (a separate shared mapping, sized for --segment-mib). */
constexpr uint64_t FOOT_PAGE = 4096;
std::atomic<uint64_t> *foot_bits;
size_t foot_words;

void foot_mark(uint64_t off, uint64_t len) {
    for (uint64_t p = off / FOOT_PAGE; p <= (off + len - 1) / FOOT_PAGE; p++)
        if (p / 64 < foot_words)
            foot_bits[p / 64].fetch_or(UINT64_C(1) << (p % 64), std::memory_order_relaxed);
}

uint64_t foot_bytes() {
    uint64_t pages = 0;
    for (size_t i = 0; i < foot_words; i++) pages += uint64_t(__builtin_popcountll(foot_bits[i]));
    return pages * FOOT_PAGE;
}

void atomic_max(std::atomic<uint64_t> &a, uint64_t v) {
    uint64_t cur = a.load(std::memory_order_relaxed);
    while (v > cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
    }
}

/* Fragmentation bookkeeping for one op (untimed pass only). */
inline void frag_live(const Op &o) {
    if (o.kind == OP_ALLOC)
        atomic_max(shared_page->peak_live,
                   shared_page->live.fetch_add(o.size, std::memory_order_relaxed) + o.size);
    else
        shared_page->live.fetch_sub(o.size, std::memory_order_relaxed);
}

/* ---- replay loops: the code the timing is about ------------------------------------ */

struct Counts {
    uint64_t failed = 0, errors = 0;
};

template <bool FRAG>
void replay_mk(mk_shm *s, unsigned flags, mk_off *slots, const Op *ops, size_t from, size_t to,
               Counts &c) {
    for (size_t i = from; i < to; i++) {
        const Op &o = ops[i];
        mk_off *sl = &slots[o.slot];
        if (o.kind == OP_ALLOC) {
            if (__builtin_expect(mk_shm_alloc_ex(s, o.size, 0, flags, sl) != MK_OK, 0)) {
                *sl = 0;
                c.failed++;
                continue;
            }
            *static_cast<char *>(mk_shm_ptr(s, *sl)) = char(i);
            if (FRAG) {
                size_t us = 0;
                mk_shm_usable_size(s, *sl, &us);
                foot_mark(*sl - 8, us + 8);
                atomic_max(shared_page->peak_spans,
                           shared_page->spans.fetch_add(us + 8, std::memory_order_relaxed) + us +
                               8);
                frag_live(o);
            }
        } else if (*sl) {
            if (FRAG) {
                size_t us = 0;
                mk_shm_usable_size(s, *sl, &us);
                shared_page->spans.fetch_sub(us + 8, std::memory_order_relaxed);
            }
            if (__builtin_expect(mk_shm_free(s, *sl) != MK_OK, 0)) c.errors++;
            *sl = 0;
            if (FRAG) frag_live(o);
        }
    }
}

template <bool FRAG>
void replay_boost(bip::managed_shared_memory &seg, void **slots, const Op *ops, size_t from,
                  size_t to, uint64_t used0, Counts &c) {
    for (size_t i = from; i < to; i++) {
        const Op &o = ops[i];
        void **sl = &slots[o.slot];
        if (o.kind == OP_ALLOC) {
            void *p = seg.allocate(o.size, std::nothrow);
            *sl = p;
            if (__builtin_expect(!p, 0)) {
                c.failed++;
                continue;
            }
            *static_cast<char *>(p) = char(i);
            if (FRAG) {
                uint64_t off = uint64_t(seg.get_handle_from_address(p));
                foot_mark(off - 16, seg.get_segment_manager()->size(p) + 16);
                frag_live(o);
            }
        } else if (*sl) {
            seg.deallocate(*sl);
            *sl = nullptr;
            if (FRAG) frag_live(o);
        }
        if (FRAG)
            atomic_max(shared_page->peak_used, seg.get_size() - seg.get_free_memory() - used0);
    }
}

/* Bytes of glibc's chunk: the usable size plus its 8-byte size word (exact
 * for chunks from the heap; this workload's sizes never get an mmap). */
inline size_t gl_chunk(void *p) { return malloc_usable_size(p) + sizeof(size_t); }

struct GlFrag {
    uint64_t used = 0, peak = 0, lo = UINT64_MAX, hi = 0;
};

template <bool FRAG>
void replay_gl(void **slots, const Op *ops, size_t from, size_t to, Counts &c, GlFrag *g) {
    for (size_t i = from; i < to; i++) {
        const Op &o = ops[i];
        void **sl = &slots[o.slot];
        if (o.kind == OP_ALLOC) {
            void *p = malloc(o.size);
            *sl = p;
            if (__builtin_expect(!p, 0)) {
                c.failed++;
                continue;
            }
            *static_cast<char *>(p) = char(i);
            if (FRAG) {
                uint64_t a = uint64_t(uintptr_t(p));
                g->used += gl_chunk(p);
                g->peak = std::max(g->peak, g->used);
                g->lo = std::min(g->lo, a);
                g->hi = std::max(g->hi, a + malloc_usable_size(p));
                frag_live(o);
            }
        } else if (*sl) {
            if (FRAG) g->used -= gl_chunk(*sl);
            free(*sl);
            *sl = nullptr;
            if (FRAG) frag_live(o);
        }
    }
}

/* ---- one run ------------------------------------------------------------------------ */

struct RunResult {
    int nproc = 0;
    double wall = 0;      /* last end - first start */
    uint64_t ops = 0;     /* all timed ops */
    double ns_op = 0;     /* mean over processes of (own wall / own ops) */
    double cpu_ns_op = 0; /* mean over processes of (own CPU / own ops) */
    double mops = 0;      /* ops / wall / 1e6 */
    double vcsw_kop = 0;  /* voluntary context switches per 1000 ops */
    double eng_kop = -1;  /* memkit: engine operations (locked) per 1000 ops; -1 none */
    uint64_t failed = 0, errors = 0;
    bool cut = false;
    /* fragmentation pass */
    uint64_t peak_live = 0, peak_used = 0, footprint = 0;
    uint64_t peak_held = 0; /* memkit: peak of the engine's bytes in use, caches included */
    int valid = MK_OK;
};

char seg_name[64];

/* Wait for one byte or EOF from a pipe. */
void wait_pipe(int fd) {
    char ch;
    ssize_t n;
    do n = read(fd, &ch, 1);
    while (n < 0 && errno == EINTR);
}

/* Read one byte of every page: on some virtual machines (this one: a
 * shadow page table) the first access to a page by a process costs a trap
 * of several microseconds even when the kernel has mapped it already
 * (measured: 5 us a page after MADV_POPULATE_WRITE). */
void touch_pages(const void *base, size_t bytes) {
    volatile const char *c = static_cast<const char *>(base);
    for (size_t i = 0; i < bytes; i += 4096) (void)c[i];
}

void prefault(void *base, size_t bytes) {
    if (!opt.prefault || !base) return;
#ifdef MADV_POPULATE_WRITE
    uintptr_t a = uintptr_t(base) & ~uintptr_t(4095);
    /* Its failure (an old kernel) needs no fallback: the read below maps
     * every shmem page too. */
    (void)madvise(reinterpret_cast<void *>(a), bytes + (uintptr_t(base) - a), MADV_POPULATE_WRITE);
#endif
    touch_pages(base, bytes);
}

/* Budgeted timed replay: CHUNK ops at a time. */
template <typename F> void timed(const Workload &w, ProcResult &pr, F &&replay) {
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double c0 = now_cpu();
    pr.t0 = now_wall();
    size_t done = w.n_warm;
    while (done < w.n_ops) {
        size_t to = std::min(done + CHUNK, w.n_ops);
        replay(done, to);
        done = to;
        if (opt.budget > 0 && done < w.n_ops && now_wall() - pr.t0 > opt.budget) break;
    }
    pr.t1 = now_wall();
    pr.cpu = now_cpu() - c0;
    getrusage(RUSAGE_SELF, &ru1);
    pr.ops = done - w.n_warm;
    pr.vcsw = ru1.ru_nvcsw - ru0.ru_nvcsw;
    pr.ivcsw = ru1.ru_nivcsw - ru0.ru_nivcsw;
    /* Tear down only when every process is done: a process freeing its
     * blocks (and, for memkit, draining its cache under the segment lock)
     * while another is still timed would add to the other's time work that
     * is not the workload's. Bounded, in case a sibling died. */
    shared_page->timed_done.fetch_add(1);
    double limit = now_wall() + 2 * (pr.t1 - pr.t0) + 1;
    while (shared_page->timed_done.load() < run_nproc && now_wall() < limit) usleep(200);
}

/* Tell the parent this child is set up, and close the pipe: a child that
 * dies during setup then shows as EOF instead of a byte that never comes. */
bool say_ready(int fd) {
    const char one = 1;
    bool ok = write(fd, &one, 1) == 1;
    close(fd);
    return ok;
}

/* The memkit segment configuration of a run (the parent's, and with
 * --private-segments each child's). */
mk_shm_config segment_config(const Allocator &al) {
    mk_shm_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = size_t(opt.segment_mib * MIB);
    cfg.policy = al.policy;
    cfg.mode = 0600;
    if (opt.cache_kib == 0) cfg.flags |= MK_SHM_NO_CACHE;
    if (opt.cache_kib > 0) cfg.cache_bytes = size_t(opt.cache_kib) * 1024;
    return cfg;
}

/* Child i's segment: the parent's, or with --private-segments one of its
 * own (same configuration; unlinked at once, gone when the child closes
 * it). Private segments are what the processes would cost each other
 * with no shared line at all: the bound for per-process arenas. */
int open_segment(const Allocator &al, int i, mk_shm **out) {
    if (!opt.private_segments) return mk_shm_open(seg_name, 0, out);
    char own[96];
    snprintf(own, sizeof own, "%s-%d", seg_name, i);
    mk_shm_unlink(own, 0);
    mk_shm_config cfg = segment_config(al);
    int rc = mk_shm_create(own, &cfg, out);
    if (rc == MK_OK) mk_shm_unlink(own, 0);
    return rc;
}

/* Engine operations of the whole segment so far: every block allocated
 * or freed under the segment lock (a cache refill or trim moves one block
 * per operation). mk_shm_stats walks the heap: called outside the timing. */
uint64_t engine_ops(mk_shm *s) {
    mk_stats st;
    if (mk_shm_stats(s, &st) != MK_OK) return 0;
    return st.n_alloc + st.n_free + st.n_realloc;
}

/* The body of child i. ready: write end to say "set up"; go: read end. */
template <bool FRAG>
int child(const Allocator &al, const Workload &w, int i, int ready, int go, uint64_t used0) {
    ProcResult &pr = shared_page->proc[i];
    Counts c;
    /* The workload was written by the parent before the fork: this process
     * has not touched its pages yet (bench/README.md, "A run"). */
    touch_pages(w.ops, sizeof(Op) * w.n_ops);
    if (al.kind == K_MEMKIT) {
        mk_shm *s = nullptr;
        int rc = open_segment(al, i, &s);
        if (rc != MK_OK) {
            fprintf(stderr, "bench-shm: child %d: segment: %s\n", i, mk_strerror(rc));
            return 1;
        }
        mk_shm_info info;
        if (mk_shm_get_info(s, &info) == MK_OK) prefault(mk_shm_region(s), size_t(info.size));
        auto *slots = static_cast<mk_off *>(map_bytes(sizeof(mk_off) * (w.n_slots + 1)));
        replay_mk<FRAG>(s, al.flags, slots, w.ops, 0, w.n_warm, c);
        if (!say_ready(ready)) return 1;
        wait_pipe(go);
        pr.eng0 = engine_ops(s);
        timed(w, pr,
              [&](size_t a, size_t b) { replay_mk<FRAG>(s, al.flags, slots, w.ops, a, b, c); });
        pr.eng1 = engine_ops(s);
        for (uint32_t k = 0; k < w.n_slots; k++)
            if (slots[k] && mk_shm_free(s, slots[k]) != MK_OK) c.errors++;
        mk_shm_close(s);
    } else if (al.kind == K_BOOST) {
        try {
            bip::managed_shared_memory seg(bip::open_only, seg_name + 1);
            prefault(seg.get_address(), seg.get_size());
            auto *slots = static_cast<void **>(map_bytes(sizeof(void *) * (w.n_slots + 1)));
            replay_boost<FRAG>(seg, slots, w.ops, 0, w.n_warm, used0, c);
            if (!say_ready(ready)) return 1;
            wait_pipe(go);
            timed(w, pr, [&](size_t a, size_t b) {
                replay_boost<FRAG>(seg, slots, w.ops, a, b, used0, c);
            });
            for (uint32_t k = 0; k < w.n_slots; k++)
                if (slots[k]) seg.deallocate(slots[k]);
        } catch (const std::exception &e) {
            fprintf(stderr, "bench-shm: child %d: boost: %s\n", i, e.what());
            return 1;
        }
    } else {
        auto *slots = static_cast<void **>(map_bytes(sizeof(void *) * (w.n_slots + 1)));
        GlFrag g;
        if (!FRAG) { /* one untimed replay first: the heap's pages get touched */
            replay_gl<false>(slots, w.ops, 0, w.n_ops, c, nullptr);
            for (uint32_t k = 0; k < w.n_slots; k++) free(slots[k]), slots[k] = nullptr;
            c = Counts();
        }
        replay_gl<FRAG>(slots, w.ops, 0, w.n_warm, c, &g);
        if (!say_ready(ready)) return 1;
        wait_pipe(go);
        timed(w, pr, [&](size_t a, size_t b) { replay_gl<FRAG>(slots, w.ops, a, b, c, &g); });
        pr.gl_peak_used = g.peak;
        pr.gl_lo = g.lo;
        pr.gl_hi = g.hi;
    }
    pr.failed = c.failed;
    pr.errors = c.errors;
    return 0;
}

/* Engine operations during the timed phases. One segment: the span from
 * the first start to the last end (the phases overlap; the little of one
 * child's teardown that falls inside another's phase is counted).
 * Private segments: the sum of each one's. */
uint64_t engine_ops_timed(int nproc) {
    uint64_t lo = UINT64_MAX, hi = 0, sum = 0;
    for (int i = 0; i < nproc; i++) {
        const ProcResult &pr = shared_page->proc[i];
        lo = std::min(lo, pr.eng0);
        hi = std::max(hi, pr.eng1);
        sum += pr.eng1 - pr.eng0;
    }
    if (opt.private_segments) return sum;
    return hi > lo ? hi - lo : 0;
}

/* One run of allocator al with nproc processes. frag: the untimed
 * fragmentation pass (its times are not used). */
RunResult run(const Allocator &al, const std::vector<Workload> &ws, int nproc, bool frag) {
    RunResult rr;
    rr.nproc = nproc;
    memset(static_cast<void *>(shared_page), 0, sizeof *shared_page);
    run_nproc = nproc;
    for (size_t k = 0; k < foot_words; k++) foot_bits[k].store(0);
    snprintf(seg_name, sizeof seg_name, "/mk-bench-shm-%ld", long(getpid()));

    mk_shm *parent_mk = nullptr;
    bip::managed_shared_memory *parent_boost = nullptr;
    uint64_t used0 = 0;
    size_t seg_bytes = size_t(opt.segment_mib * MIB);
    if (al.kind == K_MEMKIT) {
        mk_shm_unlink(seg_name, 0);
        mk_shm_config cfg = segment_config(al);
        int rc = mk_shm_create(seg_name, &cfg, &parent_mk);
        if (rc != MK_OK) die("mk_shm_create failed", mk_strerror(rc));
        mk_stats st;
        if (mk_shm_stats(parent_mk, &st) != MK_OK) die("mk_shm_stats failed");
        used0 = st.bytes_used;
    } else if (al.kind == K_BOOST) {
        bip::shared_memory_object::remove(seg_name + 1);
        try {
            parent_boost =
                new bip::managed_shared_memory(bip::create_only, seg_name + 1, seg_bytes);
        } catch (const std::exception &e) {
            die("boost segment creation failed", e.what());
        }
        used0 = parent_boost->get_size() - parent_boost->get_free_memory();
    }

    int ready[2], go[2];
    if (pipe(ready) != 0 || pipe(go) != 0) die("pipe failed", strerror(errno));
    fflush(nullptr);
    pid_t pids[MAX_PROCS];
    for (int i = 0; i < nproc; i++) {
        pids[i] = fork();
        if (pids[i] < 0) die("fork failed", strerror(errno));
        if (pids[i] == 0) {
            close(ready[0]);
            close(go[1]);
            int st = frag ? child<true>(al, ws[size_t(i)], i, ready[1], go[0], used0)
                          : child<false>(al, ws[size_t(i)], i, ready[1], go[0], used0);
            shared_page->proc[i].status = st;
            _exit(st);
        }
    }
    close(ready[1]);
    close(go[0]);
    for (int i = 0; i < nproc; i++) wait_pipe(ready[0]); /* everyone set up (or dead: EOF) */
    close(go[1]);                                        /* EOF wakes every child at once */
    close(ready[0]);
    bool ok = true;
    for (int i = 0; i < nproc; i++) {
        int st = 0;
        waitpid(pids[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) ok = false;
    }
    if (!ok) die("a child failed", al.name);

    double first = 1e300, last = 0;
    for (int i = 0; i < nproc; i++) {
        const ProcResult &pr = shared_page->proc[i];
        first = std::min(first, pr.t0);
        last = std::max(last, pr.t1);
        rr.ops += pr.ops;
        rr.ns_op += pr.ops ? 1e9 * (pr.t1 - pr.t0) / double(pr.ops) / nproc : 0;
        rr.cpu_ns_op += pr.ops ? 1e9 * pr.cpu / double(pr.ops) / nproc : 0;
        rr.vcsw_kop += double(pr.vcsw);
        rr.failed += pr.failed;
        rr.errors += pr.errors;
        if (pr.ops < ws[size_t(i)].n_ops - ws[size_t(i)].n_warm) rr.cut = true;
    }
    rr.wall = last - first;
    rr.mops = rr.wall > 0 ? double(rr.ops) / rr.wall / 1e6 : 0;
    rr.vcsw_kop = rr.ops ? rr.vcsw_kop * 1000.0 / double(rr.ops) : 0;
    rr.peak_live = shared_page->peak_live.load();

    if (al.kind == K_MEMKIT) {
        rr.eng_kop = rr.ops ? 1000.0 * double(engine_ops_timed(nproc)) / double(rr.ops) : 0;
        mk_stats st;
        if (mk_shm_stats(parent_mk, &st) != MK_OK) die("mk_shm_stats failed");
        rr.peak_used = shared_page->peak_spans.load();
        rr.peak_held = st.peak_used - used0;
        mk_fault fault;
        memset(&fault, 0, sizeof fault);
        rr.valid = mk_shm_validate(parent_mk, &fault);
        if (rr.valid != MK_OK)
            fprintf(stderr,
                    "bench-shm: %s: segment invalid after the run: %s (%s at %" PRIu64 ")\n",
                    al.name, mk_strerror(rr.valid), fault.invariant ? fault.invariant : "?",
                    uint64_t(fault.offset));
        mk_shm_info info;
        memset(&info, 0, sizeof info);
        mk_shm_get_info(parent_mk, &info);
        if (st.bytes_used != used0)
            fprintf(stderr,
                    "bench-shm: %s: %" PRIu64 " bytes still in use after the run "
                    "(%u attached, %" PRIu64 " bytes cached)\n",
                    al.name, uint64_t(st.bytes_used - used0), info.attached, info.cached_bytes);
        mk_shm_close(parent_mk);
        mk_shm_unlink(seg_name, 0);
    } else if (al.kind == K_BOOST) {
        rr.peak_used = shared_page->peak_used.load();
        delete parent_boost;
        bip::shared_memory_object::remove(seg_name + 1);
    } else {
        for (int i = 0; i < nproc; i++) { /* private heaps: the sum of each one's */
            const ProcResult &pr = shared_page->proc[i];
            rr.peak_used += pr.gl_peak_used;
            if (pr.gl_hi > pr.gl_lo) rr.footprint += pr.gl_hi - pr.gl_lo;
        }
    }
    if (al.kind != K_GLIBC) rr.footprint = foot_bytes();
    if (rr.errors)
        fprintf(stderr, "bench-shm: %s: %" PRIu64 " frees refused\n", al.name, rr.errors);
    return rr;
}

/* ---- results ------------------------------------------------------------------------ */

double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Row {
    std::vector<RunResult> runs; /* one per round */
    RunResult frag;
    /* per round: ratios within the round */
    std::vector<double> vs_boost, vs_glibc, scaling;
};

/* rows[p][a]: process-count index p, allocator a */
std::vector<std::vector<Row>> rows;

char cpu_model[256] = "unknown";
std::string command;

void read_cpu_model() {
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

std::string loadavg() {
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return "?";
    char buf[128] = "";
    if (!fgets(buf, sizeof buf, f)) buf[0] = 0;
    fclose(f);
    buf[strcspn(buf, "\n")] = 0;
    return buf;
}

void usage(FILE *f) {
    fprintf(
        f,
        "usage: bench-shm [options]\n"
        "  --seed N         workload seed; process i uses N + i (default 12345)\n"
        "  --runs R         timed rounds, medians reported (default 5, max %u)\n"
        "  --ops N          timed ops per process (default 2000000)\n"
        "  --live N         live blocks per process (default 10000)\n"
        "  --procs LIST     process counts, comma-separated (default 1,2; max %d)\n"
        "  --segment-mib N  segment size (default 256)\n"
        "  --cache-kib N    memkit's per-process cache budget (default: the library's; 0: none)\n"
        "  --only LIST      allocators (default memkit-tlsf,memkit-best,boost,glibc; also\n"
        "                   memkit-owned: owned blocks, reclaimable when their process dies)\n"
        "  --budget SEC     stop a process's timed phase after SEC s (default 60; 0 never)\n"
        "  --no-prefault    do not pre-fault the segment mapping in each child\n"
        "  --no-frag        skip the untimed fragmentation pass\n"
        "  --private-segments  memkit: each process on a segment of its own (what sharing one\n"
        "                   costs; implies --no-frag)\n"
        "  --json FILE      also write the results as JSON\n",
        MAX_RUNS, MAX_PROCS);
}

uint64_t arg_u64(const char *s, const char *name) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || end == s) die("bad number for", name);
    return v;
}

void parse_args(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : nullptr;
        auto need = [&]() {
            if (!v) die("missing value for", a);
            i++;
        };
        if (!strcmp(a, "--seed"))
            need(), opt.seed = arg_u64(v, a);
        else if (!strcmp(a, "--runs"))
            need(), opt.runs = unsigned(arg_u64(v, a));
        else if (!strcmp(a, "--ops"))
            need(), opt.ops = size_t(arg_u64(v, a));
        else if (!strcmp(a, "--live"))
            need(), opt.live = uint32_t(arg_u64(v, a));
        else if (!strcmp(a, "--segment-mib"))
            need(), opt.segment_mib = arg_u64(v, a);
        else if (!strcmp(a, "--cache-kib"))
            need(), opt.cache_kib = long(arg_u64(v, a));
        else if (!strcmp(a, "--budget"))
            need(), opt.budget = atof(v);
        else if (!strcmp(a, "--json"))
            need(), opt.json = v;
        else if (!strcmp(a, "--no-prefault"))
            opt.prefault = false;
        else if (!strcmp(a, "--no-frag"))
            opt.frag = false;
        else if (!strcmp(a, "--private-segments"))
            opt.private_segments = true;
        else if (!strcmp(a, "--procs")) {
            need();
            opt.procs.clear();
            std::string s = v;
            size_t p = 0;
            while (p <= s.size()) {
                size_t q = s.find(',', p);
                if (q == std::string::npos) q = s.size();
                int n = int(arg_u64(s.substr(p, q - p).c_str(), a));
                if (n < 1 || n > MAX_PROCS) die("--procs out of range");
                opt.procs.push_back(n);
                p = q + 1;
            }
        } else if (!strcmp(a, "--only")) {
            need();
            for (bool &b : opt.on) b = false;
            std::string s = v;
            size_t p = 0;
            while (p <= s.size()) {
                size_t q = s.find(',', p);
                if (q == std::string::npos) q = s.size();
                std::string t = s.substr(p, q - p);
                int k;
                for (k = 0; k < N_ALLOCS; k++)
                    if (t == allocators[k].name) break;
                if (k == N_ALLOCS) die("unknown allocator", t.c_str());
                opt.on[k] = true;
                p = q + 1;
            }
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else {
            usage(stderr);
            die("unknown option", a);
        }
    }
    if (opt.runs < 1 || opt.runs > MAX_RUNS) die("--runs out of range");
    if (opt.live < 1 || opt.ops < 1) die("--ops and --live must be positive");
    if (opt.segment_mib < 1) die("--segment-mib must be positive");
    if (opt.private_segments)
        opt.frag = false; /* the fragmentation pass reads the shared segment */
}

double ratio(uint64_t x, uint64_t y) { return y ? double(x) / double(y) : 0; }

void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if (static_cast<unsigned char>(*s) < 0x20)
            fprintf(f, "\\u%04x", *s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

} // namespace

int main(int argc, char **argv) {
    parse_args(argc, argv);
    for (int i = 0; i < argc; i++) {
        bool quote = argv[i][strcspn(argv[i], " \t'\"$")] != 0;
        command += std::string(i ? " " : "") + (quote ? "'" : "") + argv[i] + (quote ? "'" : "");
    }
    read_cpu_model();
    struct utsname un;
    uname(&un);
    std::string load0 = loadavg();
    time_t t = time(nullptr);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
    int maxp = *std::max_element(opt.procs.begin(), opt.procs.end());

    printf("bench-shm: memkit shared heap vs Boost.Interprocess managed_shared_memory vs glibc\n");
    printf("command:  %s\n", command.c_str());
    printf("machine:  %ld cpus online, %s; %s %s; glibc %s; Boost %s\n",
           sysconf(_SC_NPROCESSORS_ONLN), cpu_model, un.sysname, un.release, gnu_get_libc_version(),
           BOOST_LIB_VERSION);
    printf("build:    %s, %s, cxxflags '%s'\n", MK_BENCH_BUILD_TYPE, __VERSION__,
           MK_BENCH_CXXFLAGS);
    printf("date:     %s; load average at start %s\n", date, load0.c_str());
    printf("workload: per process: seed %" PRIu64
           " + index, %u warm-up allocations (untimed), then "
           "%zu ops,\n          sizes log-uniform in [16, 4096), live count held around %u; "
           "segment %" PRIu64 " MiB, fresh per run; memkit cache budget %s\n",
           opt.seed, opt.live, opt.ops, opt.live, opt.segment_mib,
           opt.cache_kib < 0 ? "default" : (std::to_string(opt.cache_kib) + " KiB").c_str());
    printf("method:   medians of %u rounds, allocators interleaved in each round; ratios taken "
           "within a round\n",
           opt.runs);

    std::vector<Workload> ws;
    for (int i = 0; i < maxp; i++)
        ws.push_back(make_workload(opt.seed + uint64_t(i), opt.ops, opt.live));
    for (int i = 0; i < maxp; i++)
        printf("          process %d: %" PRIu64 " allocs + %" PRIu64 " frees timed; peak live "
               "%.2f MiB in %" PRIu64 " blocks\n",
               i, ws[size_t(i)].n_alloc, ws[size_t(i)].n_free,
               double(ws[size_t(i)].peak_live) / double(MIB), ws[size_t(i)].peak_blocks);
    fflush(stdout);

    shared_page = static_cast<Shared *>(map_bytes(sizeof(Shared), true));
    foot_words = size_t(opt.segment_mib * MIB / FOOT_PAGE / 64 + 1);
    foot_bits = static_cast<std::atomic<uint64_t> *>(
        map_bytes(foot_words * sizeof(std::atomic<uint64_t>), true));
    const size_t np = opt.procs.size();
    rows.assign(np, std::vector<Row>(N_ALLOCS));

    if (opt.frag) {
        fprintf(stderr, "fragmentation pass...\n");
        for (size_t p = 0; p < np; p++)
            for (int a = 0; a < N_ALLOCS; a++)
                if (opt.on[a]) rows[p][size_t(a)].frag = run(allocators[a], ws, opt.procs[p], true);
    }
    for (unsigned k = 0; k < opt.runs; k++) {
        fprintf(stderr, "round %u/%u (load %s)\n", k + 1, opt.runs, loadavg().c_str());
        for (size_t p = 0; p < np; p++)
            for (int a = 0; a < N_ALLOCS; a++)
                if (opt.on[a])
                    rows[p][size_t(a)].runs.push_back(run(allocators[a], ws, opt.procs[p], false));
    }
    /* ratios within each round */
    for (size_t p = 0; p < np; p++)
        for (int a = 0; a < N_ALLOCS; a++) {
            if (!opt.on[a]) continue;
            Row &r = rows[p][size_t(a)];
            for (unsigned k = 0; k < opt.runs; k++) {
                double m = r.runs[k].mops;
                if (opt.on[A_BOOST]) r.vs_boost.push_back(m / rows[p][A_BOOST].runs[k].mops);
                if (opt.on[A_GLIBC]) r.vs_glibc.push_back(m / rows[p][A_GLIBC].runs[k].mops);
                if (p > 0) r.scaling.push_back(m / rows[0][size_t(a)].runs[k].mops);
            }
        }
    std::string load1 = loadavg();

    for (size_t p = 0; p < np; p++) {
        int n = opt.procs[p];
        printf("\n== %d process%s on %s%s\n", n, n > 1 ? "es" : "",
               opt.private_segments ? "private segments (memkit: one each)" : "one segment",
               n > 1 ? " (each allocates and frees its own blocks)" : "");
        printf("%-12s %8s %8s %8s %8s %8s %7s %8s %8s %8s %7s %7s %7s %7s %9s %6s\n", "allocator",
               "ns/op", "min", "max", "cpu ns", "Mops/s", "x boost", "x glibc", p ? "scaling" : "",
               "vcsw/kop", "eng/kop", "used", "held", "foot", "peak live", "failed");
        for (int a = 0; a < N_ALLOCS; a++) {
            if (!opt.on[a]) continue;
            const Row &r = rows[p][size_t(a)];
            std::vector<double> ns, cpu, mops, csw, eng;
            bool cut = false;
            uint64_t failed = 0;
            for (const RunResult &x : r.runs) {
                ns.push_back(x.ns_op);
                cpu.push_back(x.cpu_ns_op);
                mops.push_back(x.mops);
                csw.push_back(x.vcsw_kop);
                if (x.eng_kop >= 0) eng.push_back(x.eng_kop);
                cut |= x.cut;
                failed += x.failed;
            }
            char scal[32] = "";
            if (p) snprintf(scal, sizeof scal, "%.3f", median(r.scaling));
            char used[32] = "-", held[32] = "-", foot[32] = "-", live[32] = "-", engs[32] = "-";
            if (!eng.empty()) snprintf(engs, sizeof engs, "%.2f", median(eng));
            if (opt.frag) {
                snprintf(used, sizeof used, "%.4f", ratio(r.frag.peak_used, r.frag.peak_live));
                if (r.frag.peak_held)
                    snprintf(held, sizeof held, "%.4f", ratio(r.frag.peak_held, r.frag.peak_live));
                snprintf(foot, sizeof foot, "%.4f", ratio(r.frag.footprint, r.frag.peak_live));
                snprintf(live, sizeof live, "%.2fMiB", double(r.frag.peak_live) / double(MIB));
            }
            printf("%-12s %7.1f%s %8.1f %8.1f %8.1f %8.2f %7.3f %8.3f %8s %8.2f %7s %7s %7s %7s "
                   "%9s %6" PRIu64 "\n",
                   allocators[a].name, median(ns), cut ? "*" : " ",
                   *std::min_element(ns.begin(), ns.end()), *std::max_element(ns.begin(), ns.end()),
                   median(cpu), median(mops), median(r.vs_boost), median(r.vs_glibc), scal,
                   median(csw), engs, used, held, foot, live, failed + r.frag.failed);
        }
    }
    printf("\n  ns/op: per process, own wall time / own ops (mean over processes); cpu ns: the "
           "same with process CPU time\n"
           "  Mops/s: all timed ops / (last end - first start); x boost, x glibc: Mops/s over "
           "theirs in the same round\n"
           "  scaling: Mops/s over the same allocator's with %d process in the same round; "
           "vcsw/kop: voluntary context\n"
           "  switches per 1000 ops (sleeps on a contended lock); eng/kop: memkit, blocks moved "
           "under the\n"
           "  segment lock (engine operations) per 1000 ops; used: peak bytes of live blocks "
           "(headers\n"
           "  included); held: memkit, peak bytes the heap counts in use (live blocks and the "
           "per-process\n"
           "  caches); foot: footprint; all over peak live requested bytes (untimed pass; "
           "bench/README.md)\n",
           opt.procs[0]);
    printf("\nload average at end %s\n", load1.c_str());
    bool any_cut = false;
    for (auto &v : rows)
        for (auto &r : v)
            for (auto &x : r.runs) any_cut |= x.cut;
    if (any_cut) printf("* a process was stopped by --budget %g s\n", opt.budget);

    if (opt.json) {
        FILE *f = fopen(opt.json, "w");
        if (!f) die("cannot write", opt.json);
        fprintf(f, "{\"command\":");
        json_str(f, command.c_str());
        fprintf(f, ",\"machine\":{\"cpus\":%ld,\"cpu_model\":", sysconf(_SC_NPROCESSORS_ONLN));
        json_str(f, cpu_model);
        fprintf(f, ",\"kernel\":");
        json_str(f, un.release);
        fprintf(f, ",\"glibc\":");
        json_str(f, gnu_get_libc_version());
        fprintf(f, ",\"boost\":\"%s\",\"compiler\":", BOOST_LIB_VERSION);
        json_str(f, __VERSION__);
        fprintf(f, ",\"build_type\":");
        json_str(f, MK_BENCH_BUILD_TYPE);
        fprintf(f, ",\"load_start\":");
        json_str(f, load0.c_str());
        fprintf(f, ",\"load_end\":");
        json_str(f, load1.c_str());
        fprintf(f, "},\"date\":");
        json_str(f, date);
        fprintf(f,
                ",\"runs\":%u,\"seed\":%" PRIu64 ",\"ops_per_process\":%zu,\"live\":%u,"
                "\"segment_mib\":%" PRIu64 ",\"private_segments\":%s,\"results\":[",
                opt.runs, opt.seed, opt.ops, opt.live, opt.segment_mib,
                opt.private_segments ? "true" : "false");
        bool first = true;
        for (size_t p = 0; p < np; p++)
            for (int a = 0; a < N_ALLOCS; a++) {
                if (!opt.on[a]) continue;
                const Row &r = rows[p][size_t(a)];
                fprintf(f, "%s{\"allocator\":\"%s\",\"processes\":%d", first ? "" : ",",
                        allocators[a].name, opt.procs[p]);
                first = false;
                auto arr = [&](const char *key, auto get) {
                    fprintf(f, ",\"%s\":[", key);
                    for (size_t k = 0; k < r.runs.size(); k++)
                        fprintf(f, "%s%.4f", k ? "," : "", double(get(r.runs[k])));
                    fputc(']', f);
                };
                arr("ns_per_op", [](const RunResult &x) { return x.ns_op; });
                arr("cpu_ns_per_op", [](const RunResult &x) { return x.cpu_ns_op; });
                arr("mops", [](const RunResult &x) { return x.mops; });
                arr("wall_s", [](const RunResult &x) { return x.wall; });
                arr("vcsw_per_kop", [](const RunResult &x) { return x.vcsw_kop; });
                if (allocators[a].kind == K_MEMKIT)
                    arr("engine_per_kop", [](const RunResult &x) { return x.eng_kop; });
                auto med = [&](const char *key, const std::vector<double> &v) {
                    if (!v.empty()) fprintf(f, ",\"%s\":%.4f", key, median(v));
                };
                std::vector<double> ns, mops;
                for (const RunResult &x : r.runs) ns.push_back(x.ns_op), mops.push_back(x.mops);
                med("ns_per_op_median", ns);
                med("mops_median", mops);
                med("vs_boost_median", r.vs_boost);
                med("vs_glibc_median", r.vs_glibc);
                med("scaling_median", r.scaling);
                if (opt.frag)
                    fprintf(f,
                            ",\"peak_live_bytes\":%" PRIu64 ",\"peak_used_bytes\":%" PRIu64
                            ",\"peak_held_bytes\":%" PRIu64 ",\"footprint_bytes\":%" PRIu64
                            ",\"used_ratio\":%.6f,\"footprint_ratio\":%.6f",
                            r.frag.peak_live, r.frag.peak_used, r.frag.peak_held, r.frag.footprint,
                            ratio(r.frag.peak_used, r.frag.peak_live),
                            ratio(r.frag.footprint, r.frag.peak_live));
                if (allocators[a].kind == K_MEMKIT) {
                    int bad = r.frag.valid;
                    for (const RunResult &x : r.runs)
                        if (x.valid != MK_OK) bad = x.valid;
                    fprintf(f, ",\"validate\":\"%s\"", mk_strerror(bad));
                }
                fputc('}', f);
            }
        fprintf(f, "]}\n");
        if (fclose(f) != 0) die("cannot write", opt.json);
    }
    return 0;
}
