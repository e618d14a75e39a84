/*
 * Segments: create, open, close, unlink, list; the lock with its repair
 * after a dead owner; growth in place; the process table.
 *
 * Address space. Each process reserves max_size bytes at open and maps the
 * object at the start of the reservation; growth (by any process) only ever
 * extends the mapping in place, so local pointers stay valid. The header's
 * size is the truth: whoever takes the lock compares it with its own
 * mapping first (one compare) and extends the mapping when another process
 * grew the segment.
 *
 * Creation order matters to concurrent openers: the object appears with
 * its final size, the region is formatted (the region magic is written
 * last), the mutex and the meta block are set up, and the segment magic
 * (user[0]) comes last of all. An opener that finds a region without the
 * segment magic waits a little, then reports MK_EBADMAGIC.
 */
#include "shm_int.h"

#include <string.h>

#define MK__SHM_DEFAULT_MODE 0600u
#define MK__SHM_WAIT_NS      (UINT64_C(1000) * 1000 * 1000) /* for a half-created segment */
#define CREATE_FLAGS                                                                               \
    (MK_SHM_FILE | MK_SHM_REMOVE_ON_LAST_CLOSE | MK_SHM_OPEN_EXISTING | MK_SHM_NO_CACHE)
#define OPEN_FLAGS (MK_SHM_FILE | MK_SHM_OBSERVE)

uint64_t mk__shm_layout_sig(void) {
    const uint64_t facts[] = {sizeof(mk__shm_meta),
                              sizeof(mk__shm_slot),
                              sizeof(mk__shm_ent),
                              MK__SHM_BUCKETS,
                              MK_SHM_MAX_PROCS,
                              MK_SHM_NAME_MAX,
                              MK_SHM_OBJ_NAME_MAX,
                              MK__OS_MUTEX_BYTES,
                              MK__TR_SHIFT,
                              offsetof(mk__shm_meta, slots),
                              sizeof(mk__shm_cache),
                              MK__SHM_CACHE_MAX_SPAN,
                              offsetof(mk__shm_cache, owner)};
    uint64_t x = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < sizeof facts / sizeof facts[0]; i++)
        x = (x ^ facts[i]) * UINT64_C(0x100000001b3);
    return x;
}

static uint64_t page_round(uint64_t x) {
    uint64_t p = mk__os_page_size();
    return (x + p - 1) / p * p;
}

/* ---- handle ------------------------------------------------------------------ */

static int handle_new(mk_shm **out) {
    void *mem = NULL;
    int rc = mk__os_alloc(page_round(sizeof(mk_shm)), &mem);
    if (rc != MK_OK) return rc;
    mk_shm *s = mem; /* zero-filled */
    s->os.handle = -1;
    s->slot = -1;
    s->pid = mk__os_process_id();
    rc = mk__os_fork_watch();
    if (rc != MK_OK) {
        mk__os_release(s, page_round(sizeof(mk_shm)));
        return rc;
    }
    s->epoch = mk__os_fork_epoch();
    s->id = mk__shm_new_id();
    *out = s;
    return MK_OK;
}

/* Stop using the lock (before the unmap: detach reads the mutex), unmap,
 * close, free the handle. A forked child's copy detaches too: the
 * attachment is process state, and the child got a copy of the parent's
 * with the handle (a no-op on POSIX, and Win32 has no fork). */
static void handle_drop(mk_shm *s) {
    if (s->lock_attached) mk__os_mutex_detach(mk__shm_mutex(s->h));
    if (s->h && !s->parent) mk__os_release(s->h, s->reserved); /* a thread handle's is borrowed */
    if (s->os.handle >= 0) mk__os_shm_close(&s->os);
    mk__os_release(s, page_round(sizeof(mk_shm)));
}

/* ---- mapping ---------------------------------------------------------------------- */

/* Map [0, len) of the object at the reservation (replacing what was there). */
static int map_to(mk_shm *s, uint64_t len) {
    if (len > s->reserved) return MK_ECORRUPT;
    void *p = NULL;
    /* Growth maps the new pages only: the process's other threads work in
     * the mapped ones meanwhile. */
    uint64_t cur = atomic_load_explicit(&s->mapped, memory_order_relaxed);
    int rc = cur ? mk__os_shm_map_more(&s->os, s->h, (size_t)cur, (size_t)len, &p)
                 : mk__os_shm_map(&s->os, s->h, (size_t)len, &p);
    if (rc != MK_OK) return rc;
    atomic_store_explicit(&s->mapped, len, memory_order_release);
    return MK_OK;
}

/* Under the lock: extend this process's mapping to the header's size. A
 * thread handle's mapping is its parent's (threads.c): the parent's grows,
 * and the thread handle learns its new length. */
static int sync_map(mk_shm *s) {
    uint64_t want = s->h->size;
    if (want <= atomic_load_explicit(&s->mapped, memory_order_relaxed)) return MK_OK;
    if (s->parent) {
        int rc = sync_map(s->parent);
        if (rc == MK_OK) atomic_store_explicit(&s->mapped, s->parent->mapped, memory_order_release);
        return rc;
    }
    if (want > s->reserved) return MK_ECORRUPT;
    uint64_t objsz = 0;
    int rc = mk__os_shm_stat(&s->os, &objsz);
    if (rc != MK_OK) return rc;
    if (objsz < want) return MK_ETRUNCATED; /* touching it would raise SIGBUS */
    return map_to(s, page_round(want) <= objsz ? page_round(want) : want);
}

/* The per-process cache budget: the caller's, else 1/MK_SHM_CACHE_SHARE of
 * the initial size up to MK_SHM_CACHE_DEFAULT_BYTES. Scaled, so that the
 * caches of a few processes cannot hold a small segment's free space; a
 * large segment gets the budget that makes two processes scale (4 MiB:
 * docs/BENCHMARKS.md, the budget sweep). */
static uint64_t cache_budget(const mk_shm_config *cfg, uint64_t size) {
    if (cfg->cache_bytes) return cfg->cache_bytes;
    uint64_t share = size / MK_SHM_CACHE_SHARE;
    return share < MK_SHM_CACHE_DEFAULT_BYTES ? share : MK_SHM_CACHE_DEFAULT_BYTES;
}

/* ---- lock ------------------------------------------------------------------------- */

/* The previous owner died holding the lock: undo its operation, check
 * everything, free dead processes' slots. On failure the mutex is left
 * inconsistent, so everyone after gets MK_ENOTRECOVERABLE: nobody works on
 * a heap that does not validate. */
static int repair(mk_shm *s) {
    int rc = sync_map(s);
    if (rc == MK_OK) rc = mk_region_recover((mk_region *)s->h, NULL);
    if (rc == MK_OK) rc = mk__shm_validate_locked(s, NULL);
    if (rc == MK_OK) rc = mk__shm_reap_locked(s, NULL);
    if (rc == MK_OK) rc = mk__os_mutex_consistent(mk__shm_mutex(s->h));
    if (rc != MK_OK) {
        mk__os_mutex_unlock(mk__shm_mutex(s->h));
        return rc == MK_ENOTRECOVERABLE ? rc : MK_ECORRUPT;
    }
    return MK_OK;
}

int mk__shm_lock_shared(mk_shm *s) {
    int rc = mk__os_mutex_lock(mk__shm_mutex(s->h));
    if (rc == MK_EOWNERDEAD) return repair(s);
    if (rc != MK_OK) return rc;
    rc = sync_map(s);
    if (rc != MK_OK) mk__os_mutex_unlock(mk__shm_mutex(s->h));
    return rc;
}

void mk__shm_unlock_shared(mk_shm *s) { mk__os_mutex_unlock(mk__shm_mutex(s->h)); }

/* This process starts to use the segment's lock (os.h: on Win32 it opens
 * or references a HANDLE of the named mutex, so that closing the handle
 * can give it back): once the header that holds the mutex is checked or
 * made, before the first lock; handle_drop undoes it. A mutex that is not
 * one in a checked header is damage. */
static int lock_attach(mk_shm *s) {
    int rc = mk__os_mutex_attach(mk__shm_mutex(s->h));
    s->lock_attached = rc == MK_OK;
    return rc == MK_EINVAL ? MK_ECORRUPT : rc;
}

/* The handle's mutex first (mk__shm_local_enter): the cache's paths hold
 * it and then take the segment lock. It also orders this process's threads
 * around the block headers that the cache reads without the segment lock
 * (cache.c). Whether it was taken is kept in the handle while the segment
 * lock is held (which excludes this process's other threads too), for the
 * unlock. A forked child's inherited copy never takes it. */
int mk__shm_lock(mk_shm *s) {
    bool local = !mk__shm_inherited(s) && mk__shm_local_enter(s);
    int rc = mk__shm_lock_shared(s);
    if (rc == MK_OK)
        s->local_held = local;
    else
        mk__shm_local_leave(s, local);
    return rc;
}

void mk__shm_unlock(mk_shm *s) {
    bool local = s->local_held;
    mk__shm_unlock_shared(s);
    mk__shm_local_leave(s, local);
}

/* ---- the handle's mutex ----------------------------------------------------------- */

/* Held: the holder is most likely in a cache operation of a few dozen
 * nanoseconds, far shorter than a sleep and a wake-up (two system calls
 * and a context switch). Without the spin two threads busy on one handle
 * slept on nearly every operation: 650 ns each, 380 with it
 * (bench-shm-threads). */
void mk__shm_local_lock_slow(mk_shm *s) {
    uint32_t c;
    for (int i = 0; i < MK__OS_SPINS; i++) {
        mk__os_spin_round();
        c = 0;
        if (atomic_load_explicit(&s->local, memory_order_relaxed) == 0 &&
            atomic_compare_exchange_strong_explicit(&s->local, &c, 1, memory_order_acquire,
                                                    memory_order_relaxed))
            return;
    }
    c = atomic_load_explicit(&s->local, memory_order_relaxed);
    if (c != 2) c = atomic_exchange_explicit(&s->local, 2, memory_order_acquire);
    while (c != 0) {
        mk__os_wait32((const uint32_t *)(const void *)&s->local, 2, -1, false);
        c = atomic_exchange_explicit(&s->local, 2, memory_order_acquire);
    }
}

/* ---- growth ------------------------------------------------------------------------- */

int mk__shm_grow_locked(mk_shm *s, uint64_t need) {
    mk__hdr *h = s->h;
    if (!mk__ops(h)->grow) return MK_ENOMEM;
    uint64_t max = s->reserved, cur = h->size;
    uint64_t target = cur * 2;
    uint64_t want = cur + need + 2 * mk__os_page_size();
    if (target < want) target = want;
    target = page_round(target);
    if (target > max) target = max;
    if (target < cur || mk__shm_end_for(target) < h->data_end + mk__ops(h)->min_span)
        return MK_ENOMEM;
    uint64_t objsz = 0;
    int rc = mk__os_shm_stat(&s->os, &objsz);
    if (rc == MK_OK && objsz < target) rc = mk__os_shm_resize(&s->os, target);
    if (rc == MK_OK) rc = map_to(s, target);
    if (rc == MK_OK) rc = mk_region_grow((mk_region *)h, (size_t)target);
    return rc == MK_ENOTSUP ? MK_ENOMEM : rc;
}

/* ---- process table ---------------------------------------------------------------------- */

int mk__shm_reap_locked(mk_shm *s, uint64_t *reaped) {
    mk__hdr *h = s->h;
    mk__shm_meta *m = mk__shm_m(s);
    uint64_t n = 0;
    int rc = MK_OK;
    for (uint32_t i = 0; i < MK_SHM_MAX_PROCS && rc == MK_OK; i++) {
        mk__shm_slot *sl = &m->slots[i];
        if (sl->pid == 0 || mk__os_process_alive(sl->pid, sl->start_time)) continue;
        /* Its cache first (several operations; a crash between them leaves
         * the slot for the next reap), then the slot. */
        rc = mk__shm_cache_reap_locked(s, i);
        if (rc != MK_OK) break;
        mk__journal_begin(h, MK__OP_USER, MK__SOP_REAP, i, 0);
        mk__set(h, &sl->pid, 0);
        mk__set(h, &sl->start_time, 0);
        mk__set(h, &sl->gen, 0);
        mk__set(h, &m->attached, m->attached - 1);
        mk__journal_end(h);
        n++;
    }
    if (reaped) *reaped = n;
    return rc;
}

static int attach_locked(mk_shm *s) {
    mk__hdr *h = s->h;
    mk__shm_meta *m = mk__shm_m(s);
    uint64_t pid = mk__os_process_id(), start = 0;
    int rc = mk__os_process_start_time(pid, &start);
    if (rc != MK_OK) return rc;
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < MK_SHM_MAX_PROCS; i++) {
            mk__shm_slot *sl = &m->slots[i];
            if (sl->pid != 0) continue;
            uint64_t gen = m->gen + 1;
            mk__journal_begin(h, MK__OP_USER, MK__SOP_ATTACH, i, pid);
            mk__set(h, &sl->pid, pid);
            mk__set(h, &sl->start_time, start);
            mk__set(h, &sl->gen, gen);
            mk__set(h, &m->gen, gen);
            mk__set(h, &m->attached, m->attached + 1);
            mk__journal_end(h);
            s->slot = (int)i;
            s->gen = gen;
            return mk__shm_cache_attach_locked(s);
        }
        if (pass == 0) mk__shm_reap_locked(s, NULL);
    }
    return MK_EBUSY;
}

/* Free our slot; returns whether the segment is to be removed now. */
static bool detach_locked(mk_shm *s) {
    mk__hdr *h = s->h;
    mk__shm_meta *m = mk__shm_m(s);
    mk__shm_slot *sl = &m->slots[s->slot];
    bool ours = sl->pid == s->pid && sl->gen == s->gen;
    if (!ours) return false; /* reaped meanwhile (cannot happen while alive) */
    bool remove = m->attached == 1 && (m->flags & MK_SHM_REMOVE_ON_LAST_CLOSE);
    if (mk__shm_cache_detach_locked(s) != MK_OK) return false; /* left to a reap */
    mk__journal_begin(h, MK__OP_USER, MK__SOP_DETACH, (uint64_t)s->slot, s->pid);
    mk__set(h, &sl->pid, 0);
    mk__set(h, &sl->start_time, 0);
    mk__set(h, &sl->gen, 0);
    mk__set(h, &m->attached, m->attached - 1);
    if (remove) mk__set(h, &m->removed, 1);
    mk__journal_end(h);
    s->slot = -1;
    return remove;
}

/* ---- create / open ------------------------------------------------------------------------- */

static bool name_ok(const char *name) {
    return name && name[0] && strnlen(name, MK_SHM_NAME_MAX + 1) <= MK_SHM_NAME_MAX;
}

static int os_open(const char *name, unsigned flags, mk__os_shm *os) {
    return (flags & MK_SHM_FILE) ? mk__os_file_open(name, 0, os) : mk__os_shm_open(name, 0, os);
}

int mk_shm_unlink(const char *name, unsigned flags) {
    if (!name_ok(name) || (flags & ~(unsigned)MK_SHM_FILE)) return MK_EINVAL;
    return (flags & MK_SHM_FILE) ? mk__os_file_unlink(name) : mk__os_shm_unlink(name);
}

/* Copy the words the cache's unlocked paths read (struct mk_shm says why)
 * once the meta block is checked or made. */
static void keep_constants(mk_shm *s) {
    s->data_start = s->h->data_start; /* checked by classify or made by format */
    s->cache_budget = mk__shm_m(s)->cache_bytes;
}

/* Check the meta block (under the lock). */
static int check_meta(mk_shm *s) {
    mk__hdr *h = s->h;
    mk_off off = h->user[MK__U_META];
    mk__shm_blk blk;
    int rc = mk__shm_classify(h, off, &blk);
    if (rc != MK_OK || blk.kind != MK_SHM_BLOCK_META || blk.span < sizeof(mk__shm_meta) + 16)
        return MK_ECORRUPT;
    s->meta = off;
    const mk__shm_meta *m = mk__shm_m(s);
    if (m->magic != MK__SHM_META_MG || m->version != MK__SHM_VERSION ||
        m->max_size != h->user[MK__U_MAX] || m->attached > MK_SHM_MAX_PROCS)
        return MK_ECORRUPT;
    keep_constants(s);
    return MK_OK;
}

static int open_handle(mk_shm *s, const char *name, unsigned flags) {
    int rc = os_open(name, flags, &s->os);
    if (rc != MK_OK) return rc;
    size_t page = mk__os_page_size();
    uint64_t deadline = mk__os_now_ns() + MK__SHM_WAIT_NS;
    uint64_t objsz = 0, max = 0;
    /* Probe the first page: is it a complete segment, and how much address
     * space does it want? A creator may still be at work: wait a little. */
    for (;;) {
        rc = mk__os_shm_stat(&s->os, &objsz);
        if (rc != MK_OK) return rc;
        bool transient = objsz == 0;
        if (!transient) {
            void *probe = NULL;
            size_t len = objsz < page ? (size_t)objsz : page;
            rc = mk__os_shm_map(&s->os, NULL, len, &probe);
            if (rc != MK_OK) return rc;
            mk_region *r;
            rc = mk_region_attach(probe, len < sizeof(mk__hdr) ? len : sizeof(mk__hdr), &r);
            const mk__hdr *ph = probe;
            if (rc == MK_ETRUNCATED && len >= sizeof(mk__hdr)) rc = MK_OK; /* only the header */
            if (len >= sizeof(mk__hdr) && ph->magic == 0) transient = true;
            if (rc == MK_OK && !transient) {
                if (ph->user[MK__U_MAGIC] == 0)
                    transient = true;
                else if (ph->user[MK__U_MAGIC] != MK__SHM_MAGIC)
                    rc = MK_EBADMAGIC;
                else if (ph->user[MK__U_VERSION] != MK__SHM_VERSION)
                    rc = MK_EVERSION;
                else if (ph->user[MK__U_SIG] != mk__shm_layout_sig())
                    rc = MK_ELAYOUT;
                max = ph->user[MK__U_MAX];
            }
            mk__os_shm_unmap(probe, len);
            if (!transient && rc != MK_OK) return rc;
        }
        if (!transient) break;
        if (mk__os_now_ns() > deadline) return objsz == 0 ? MK_ETRUNCATED : MK_EBADMAGIC;
        mk__os_yield();
    }
    if (max % page || max < objsz || max > MK_REGION_MAX_SIZE || max < MK_SHM_MIN_SIZE)
        return MK_ECORRUPT;
    void *base = NULL;
    rc = mk__os_reserve((size_t)max, &base);
    if (rc != MK_OK) return rc;
    s->h = base;
    s->reserved = (size_t)max;
    /* Another process may grow the segment between the stat and the
     * attach (it resizes the object before it raises the header's size):
     * a header larger than the mapping is truncation only if the object
     * did not grow meanwhile. */
    for (int tries = 0;; tries++) {
        rc = map_to(s, objsz);
        if (rc != MK_OK) return rc;
        mk_region *r;
        rc = mk_region_attach(base, (size_t)objsz, &r);
        if (rc != MK_ETRUNCATED || tries == 16) break;
        uint64_t now = 0;
        if (mk__os_shm_stat(&s->os, &now) != MK_OK || now <= objsz || now > max) break;
        objsz = now;
    }
    if (rc != MK_OK) return rc;
    if (s->h->flags != MK_REGION_JOURNAL) return MK_ECORRUPT;
    /* Unchecked until check_meta (or validation, if the lock needs repair). */
    s->meta = s->h->user[MK__U_META];
    size_t n = strnlen(name, MK_SHM_NAME_MAX);
    memcpy(s->name, name, n);
    s->flags = flags;
    return MK_OK;
}

int mk_shm_open(const char *name, unsigned flags, mk_shm **out) {
    if (!out) return MK_EINVAL;
    *out = NULL;
    if (!name_ok(name) || (flags & ~(unsigned)OPEN_FLAGS)) return MK_EINVAL;
    mk_shm *s;
    int rc = handle_new(&s);
    if (rc != MK_OK) return rc;
    rc = open_handle(s, name, flags);
    if (rc == MK_OK) rc = lock_attach(s); /* observers lock too */
    if (rc == MK_OK) {
        rc = mk__shm_lock(s);
        if (rc == MK_OK) {
            rc = check_meta(s);
            if (rc == MK_OK && mk__shm_m(s)->removed) rc = MK_ENOENT;
            if (rc == MK_OK && !(flags & MK_SHM_OBSERVE)) rc = attach_locked(s);
            mk__shm_unlock(s);
        }
    }
    if (rc != MK_OK) {
        handle_drop(s);
        return rc;
    }
    *out = s;
    return MK_OK;
}

/* The name of the segment lock (Win32 names its kernel mutex after it,
 * resolving it as a path; POSIX ignores it): a file path as given, a shared
 * memory name behind a '|', which no path starts with, so that the segment
 * "/x" and the file "x" or "/x" never share a lock. The creator makes it
 * once; it is kept in the lock's storage. */
static const char *lock_name(const char *seg, unsigned flags, char out[MK_SHM_NAME_MAX + 2]) {
    if (flags & MK_SHM_FILE) return seg;
    out[0] = '|';
    memcpy(out + 1, seg, strlen(seg) + 1); /* seg: at most MK_SHM_NAME_MAX bytes */
    return out;
}

/* Format a fresh, mapped object as a segment. */
static int format(mk_shm *s, const mk_shm_config *cfg, uint64_t size, uint64_t max) {
    char name[MK_SHM_NAME_MAX + 2];
    mk_region *r;
    int rc = mk_region_create(s->h, (size_t)size, cfg->policy, MK_REGION_JOURNAL, &r);
    if (rc != MK_OK) return rc;
    mk__hdr *h = s->h;
    rc = mk__os_mutex_init(mk__shm_mutex(h), true, lock_name(s->name, cfg->flags, name));
    if (rc != MK_OK) return rc;
    mk_off b = 0;
    mk__journal_begin(h, MK__OP_USER, MK__SOP_META, 0, 0);
    rc = mk__shm_raw_alloc(h, sizeof(mk__shm_meta) + 8, 0, MK__PLACE_LOW, &b);
    if (rc == MK_OK) mk__shm_tag_block(h, b, mk__shm_trailer_for(MK_SHM_BLOCK_META, b));
    mk__journal_end(h);
    if (rc != MK_OK) return rc;
    s->meta = b + MK__TAGW;
    /* Nobody else can use the segment before its magic: plain writes. */
    mk__shm_meta *m = mk__shm_m(s);
    memset(m, 0, sizeof *m);
    m->magic = MK__SHM_META_MG;
    m->version = MK__SHM_VERSION;
    m->max_size = max;
    m->flags = cfg->flags & (MK_SHM_FILE | MK_SHM_REMOVE_ON_LAST_CLOSE);
    m->creator_pid = mk__os_process_id();
    if (!(cfg->flags & MK_SHM_NO_CACHE)) m->cache_bytes = cache_budget(cfg, h->size);
    keep_constants(s);
    memcpy(m->name, s->name, sizeof m->name);
    h->user[MK__U_META] = s->meta;
    h->user[MK__U_VERSION] = MK__SHM_VERSION;
    h->user[MK__U_SIG] = mk__shm_layout_sig();
    h->user[MK__U_MAX] = max;
    atomic_thread_fence(memory_order_release);
    h->user[MK__U_MAGIC] = MK__SHM_MAGIC;
    return MK_OK;
}

int mk_shm_create(const char *name, const mk_shm_config *cfg, mk_shm **out) {
    if (!out) return MK_EINVAL;
    *out = NULL;
    if (!name_ok(name) || !cfg || (cfg->flags & ~(unsigned)CREATE_FLAGS)) return MK_EINVAL;
    if ((unsigned)cfg->policy >= MK_POLICY_COUNT || cfg->size < MK_SHM_MIN_SIZE ||
        cfg->size > MK_REGION_MAX_SIZE || cfg->max_size > MK_REGION_MAX_SIZE ||
        (cfg->max_size && cfg->max_size < cfg->size) || cfg->cache_bytes > MK_REGION_MAX_SIZE)
        return MK_EINVAL;
    uint64_t size = page_round(cfg->size);
    uint64_t max = cfg->max_size ? page_round(cfg->max_size) : size;
    if (max > MK_REGION_MAX_SIZE) return MK_EINVAL;
    if (cfg->policy == MK_POLICY_BUDDY && max > size) return MK_ENOTSUP;
    unsigned mode = cfg->mode ? cfg->mode : MK__SHM_DEFAULT_MODE;
    bool file = cfg->flags & MK_SHM_FILE;

    mk_shm *s;
    int rc = handle_new(&s);
    if (rc != MK_OK) return rc;
    rc = file ? mk__os_file_create(name, size, mode, MK__SHM_EXCL, &s->os)
              : mk__os_shm_create(name, size, max, mode, MK__SHM_EXCL, &s->os);
    if (rc == MK_EEXIST && (cfg->flags & MK_SHM_OPEN_EXISTING)) {
        handle_drop(s);
        return mk_shm_open(name, cfg->flags & MK_SHM_FILE, out);
    }
    if (rc != MK_OK) {
        handle_drop(s);
        return rc;
    }
    size_t n = strnlen(name, MK_SHM_NAME_MAX);
    memcpy(s->name, name, n);
    s->flags = cfg->flags;
    void *base = NULL;
    rc = mk__os_reserve((size_t)max, &base);
    if (rc == MK_OK) {
        s->h = base;
        s->reserved = (size_t)max;
        rc = map_to(s, size);
    }
    if (rc == MK_OK) rc = format(s, cfg, size, max);
    if (rc == MK_OK) rc = lock_attach(s);
    if (rc == MK_OK) {
        rc = mk__shm_lock(s);
        if (rc == MK_OK) {
            rc = attach_locked(s);
            mk__shm_unlock(s);
        }
    }
    if (rc != MK_OK) {
        mk_shm_unlink(name, cfg->flags & MK_SHM_FILE);
        handle_drop(s);
        return rc;
    }
    *out = s;
    return MK_OK;
}

int mk__shm_open_thread_handle(mk_shm *s, mk_shm **out) {
    mk_shm *t;
    int rc = handle_new(&t);
    if (rc != MK_OK) return rc;
    t->parent = s;
    t->thread_handle = true;
    t->h = s->h;
    t->reserved = s->reserved;
    atomic_store(&t->mapped, atomic_load(&s->mapped));
    t->meta = s->meta;
    t->flags = s->flags;
    memcpy(t->name, s->name, sizeof t->name);
    keep_constants(t);
    rc = mk__shm_lock(t);
    if (rc != MK_OK) {
        handle_drop(t);
        return rc;
    }
    rc = attach_locked(t);
    mk__shm_unlock(t);
    if (rc == MK_OK && !t->cache) rc = MK_ENOMEM; /* no room for its table */
    if (rc != MK_OK) {
        if (t->slot >= 0)
            mk_shm_close(t); /* attached: detach */
        else
            handle_drop(t);
        return rc;
    }
    *out = t;
    return MK_OK;
}

int mk_shm_close(mk_shm *s) {
    if (!s) return MK_OK;
    int rc = MK_OK;
    if (!s->thread_handle) mk__shm_thread_close(s); /* before: s may be the last */
    /* A forked child holds a copy of its parent's handle: handle_drop only. */
    if (s->slot >= 0 && s->pid == mk__os_process_id()) {
        rc = mk__shm_lock(s);
        if (rc == MK_OK) {
            bool remove = detach_locked(s);
            if (remove) mk_shm_unlink(s->name, mk__shm_m(s)->flags & MK_SHM_FILE);
            mk__shm_unlock(s);
        }
    }
    handle_drop(s);
    return rc;
}

/* ---- list ------------------------------------------------------------------------------------ */

typedef struct list_ctx {
    mk_shm_name_visitor visit;
    void *arg;
} list_ctx;

static void probe_name(const char *name, void *arg) {
    list_ctx *c = arg;
    mk__os_shm os;
    if (mk__os_shm_open(name, MK__SHM_READONLY, &os) != MK_OK) return;
    uint64_t sz = 0;
    bool ours = false;
    if (mk__os_shm_stat(&os, &sz) == MK_OK && sz >= sizeof(mk__hdr)) {
        void *p = NULL;
        if (mk__os_shm_map(&os, NULL, sizeof(mk__hdr), &p) == MK_OK) {
            mk_region *r;
            const mk__hdr *h = p;
            ours = mk_region_attach(p, sizeof(mk__hdr), &r) != MK_EBADMAGIC && h->magic != 0 &&
                   h->user[MK__U_MAGIC] == MK__SHM_MAGIC;
            mk__os_shm_unmap(p, sizeof(mk__hdr));
        }
    }
    mk__os_shm_close(&os);
    if (ours) c->visit(name, c->arg);
}

int mk_shm_list(mk_shm_name_visitor visit, void *arg) {
    if (!visit) return MK_EINVAL;
    list_ctx c = {visit, arg};
    return mk__os_shm_list("", probe_name, &c);
}

/* ---- addresses
 * ------------------------------------------------------------------------------------ */

/* The block at off may reach past this process's mapping even when off is
 * inside it (growth merges the new space with the last free block), so the
 * fast path also needs the header's size to be mapped: one more compare. */
void *mk_shm_ptr(mk_shm *s, mk_off off) {
    if (!s || off == 0) return NULL;
    uint64_t mapped = atomic_load_explicit(&s->mapped, memory_order_acquire);
    if (off < mapped && __atomic_load_n(&s->h->size, __ATOMIC_ACQUIRE) <= mapped)
        return (char *)s->h + off;
    if (off >= s->reserved || mk__shm_lock(s) != MK_OK) return NULL; /* lock syncs the mapping */
    mk__shm_unlock(s);
    return off < atomic_load_explicit(&s->mapped, memory_order_acquire) ? (char *)s->h + off : NULL;
}

mk_off mk_shm_offset(const mk_shm *s, const void *p) {
    if (!s || !p) return 0;
    uintptr_t a = (uintptr_t)p, b = (uintptr_t)s->h;
    if (a <= b || a - b >= atomic_load_explicit(&s->mapped, memory_order_acquire)) return 0;
    return (mk_off)(a - b);
}

mk_region *mk_shm_region(const mk_shm *s) { return s ? (mk_region *)s->h : NULL; }

/* ---- info
 * --------------------------------------------------------------------------------------------- */

int mk_shm_get_info(mk_shm *s, mk_shm_info *out) {
    if (!s || !out) return MK_EINVAL;
    int rc = mk__shm_lock(s);
    if (rc != MK_OK) return rc;
    const mk__shm_meta *m = mk__shm_m(s);
    memset(out, 0, sizeof *out);
    memcpy(out->name, m->name, MK_SHM_NAME_MAX);
    out->size = s->h->size;
    out->max_size = m->max_size;
    out->policy = (mk_policy)s->h->policy;
    out->flags = (unsigned)m->flags;
    out->attached = (uint32_t)m->attached;
    out->objects = (uint32_t)m->objects;
    out->creator_pid = m->creator_pid;
    out->generation = m->gen;
    out->cache_bytes = m->cache_bytes;
    mk__shm_cache_totals(s, &out->cached_blocks, &out->cached_bytes);
    mk__shm_unlock(s);
    return MK_OK;
}

int mk_shm_procs(mk_shm *s, mk_shm_proc *out, size_t cap, size_t *n) {
    if (!s || !n || (cap && !out)) return MK_EINVAL;
    int rc = mk__shm_lock(s);
    if (rc != MK_OK) return rc;
    const mk__shm_meta *m = mk__shm_m(s);
    size_t k = 0;
    for (uint32_t i = 0; i < MK_SHM_MAX_PROCS; i++) {
        const mk__shm_slot *sl = &m->slots[i];
        if (sl->pid == 0) continue;
        if (k < cap) {
            mk_shm_proc *p = &out[k];
            p->slot = i;
            p->pid = sl->pid;
            p->start_time = sl->start_time;
            p->generation = sl->gen;
            p->alive = mk__os_process_alive(sl->pid, sl->start_time);
            p->self = (int)i == s->slot;
        }
        k++;
    }
    mk__shm_unlock(s);
    *n = k;
    return MK_OK;
}
