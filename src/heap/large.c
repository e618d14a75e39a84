/*
 * Large blocks (above the largest size class): each is its own chunk from
 * the source, aligned to 4 MiB and reserved in whole 4 MiB units, with a
 * mk__large header at its start and the block at header + user_off (64, or
 * the alignment asked for).
 *
 *   chunk (a multiple of 4 MiB)
 *   +--------+-------------------------------------+- - - - - - - - +
 *   | header | block ...                            | never touched |
 *   +--------+-------------------------------------+- - - - - - - - +
 *   ^ 4 MiB aligned; mk__segmap says MK__MAP_LARGE here
 *
 * Freed chunks go to a cache sorted by address that remembers how far each
 * chunk was touched (pages past that are not resident). A request takes the
 * cached chunk, or run of adjacent cached chunks, with the most resident
 * bytes for it, cut on 4 MiB; so a program that allocates and frees big
 * buffers pays no system call and few page faults after the first time.
 * The cache's resident bytes are bounded by a budget that follows the live
 * large bytes (never below purge_threshold): over it the oldest chunks are
 * purged (their address space stays cached); chunks older than purge_delay,
 * and everything on mk_heap_trim(), are unmapped. A program that frees
 * everything returns near its starting RSS.
 */
#include "heap/heap_int.h"

#include <string.h>

#include "os/os.h"

#define MK__LARGE_MAGIC UINT32_C(0x4752414C) /* "LARG" */
#define CACHE_SLOTS     64

typedef struct cache_entry {
    mk__large *base;
    size_t size;     /* reserved bytes: a multiple of 4 MiB */
    size_t touched;  /* pages past base + touched are not resident */
    size_t resident; /* estimate of the resident bytes (<= touched) */
    uint64_t freed_at;
} cache_entry;

/* The cached chunks, sorted by address (adjacent ones can be joined). */
static struct {
    mk__spin lock;
    unsigned n;
    uint64_t bytes; /* sum of resident */
    cache_entry e[CACHE_SLOTS];
} cache;

static size_t page_up(size_t n) {
    size_t p = mk__os_page_size();
    return (n + p - 1) & ~(p - 1);
}

static size_t seg_up(size_t n) { return (n + MK__SEG_SIZE - 1) & ~(MK__SEG_SIZE - 1); }

static void chunk_release(void *base, size_t size) {
    mk__chunk_free(base, size);
    mk__submw(&mk__g.mapped, size);
    mk__addmw(&mk__g.returned, size);
}

static void cache_remove_at(unsigned i, cache_entry *out) {
    *out = cache.e[i];
    cache.bytes -= out->resident;
    mk__submw(&mk__g.large_cached, out->resident);
    for (unsigned j = i + 1; j < cache.n; j++) cache.e[j - 1] = cache.e[j];
    cache.n--;
}

/* Lock held. Sorted by address; false when the cache is full. */
static bool cache_insert(cache_entry en) {
    if (cache.n == CACHE_SLOTS) return false;
    unsigned i = cache.n;
    while (i > 0 && (uintptr_t)cache.e[i - 1].base > (uintptr_t)en.base) {
        cache.e[i] = cache.e[i - 1];
        i--;
    }
    cache.e[i] = en;
    cache.n++;
    cache.bytes += en.resident;
    mk__addmw(&mk__g.large_cached, en.resident);
    return true;
}

/* The cache's budget (resident bytes): purge_threshold, or four times the bytes
 * of the live large blocks when that is more. A program that keeps big
 * buffers coming and going reuses resident chunks instead of faulting
 * fresh ones in (a fault costs ~10 us a page); as it frees its blocks the
 * budget falls back to the threshold, so freeing everything returns the
 * rest. */
static uint64_t cache_budget(void) {
    uint64_t thr = mk__load(&mk__g.purge_threshold), live = mk__load(&mk__g.large_live) * 4;
    return live > thr ? live : thr;
}

/* Entries to release or purge outside the lock. */
typedef struct evict_list {
    unsigned n;
    cache_entry e[CACHE_SLOTS + 2];
} evict_list;

/* Expired entries are released whole. */
static void evict_expired(uint64_t now, uint64_t delay, bool force, evict_list *ev) {
    for (unsigned i = 0; i < cache.n;) {
        if (force || now - cache.e[i].freed_at >= delay)
            cache_remove_at(i, &ev->e[ev->n++]);
        else
            i++;
    }
}

/* The oldest entry with resident pages, or CACHE_SLOTS. */
static unsigned oldest_resident(void) {
    unsigned o = CACHE_SLOTS;
    for (unsigned i = 0; i < cache.n; i++)
        if (cache.e[i].resident && (o == CACHE_SLOTS || cache.e[i].freed_at < cache.e[o].freed_at))
            o = i;
    return o;
}

static void release_list(evict_list *ev) {
    for (unsigned i = 0; i < ev->n; i++) chunk_release(ev->e[i].base, ev->e[i].size);
}

static void purge_entry(cache_entry *e) {
    if (e->touched) {
        mk__chunk_purge(e->base, e->touched);
        mk__addmw(&mk__g.returned, e->resident);
    }
    e->touched = e->resident = 0;
}

/* Keep a free chunk (size reserved bytes, the first touched of them
 * possibly resident). Over the budget, the oldest resident chunks are
 * purged (their address space stays cached, so neighbours can still be
 * joined into bigger chunks); entries older than the delay are released. */
static void cache_put(mk__large *base, size_t size, size_t touched) {
    uint64_t budget = cache_budget();
    uint64_t now = mk__os_now_ns(), delay = mk__load(&mk__g.purge_delay_ns);
    cache_entry en = {base, size, touched, touched, now};
    evict_list ev = {0}, pg = {0};
    if (touched > budget) purge_entry(&en);
    mk__spin_lock(&cache.lock);
    evict_expired(now, delay, false, &ev);
    if (!cache_insert(en)) ev.e[ev.n++] = en;
    unsigned o;
    while (cache.bytes > budget && (o = oldest_resident()) != CACHE_SLOTS)
        cache_remove_at(o, &pg.e[pg.n++]);
    mk__spin_unlock(&cache.lock);
    release_list(&ev);
    if (pg.n == 0) return;
    for (unsigned i = 0; i < pg.n; i++) purge_entry(&pg.e[i]);
    mk__spin_lock(&cache.lock);
    for (unsigned i = 0; i < pg.n; i++) {
        if (cache_insert(pg.e[i])) {
            pg.e[i].base = NULL;
        }
    }
    mk__spin_unlock(&cache.lock);
    for (unsigned i = 0; i < pg.n; i++)
        if (pg.e[i].base) chunk_release(pg.e[i].base, pg.e[i].size);
}

/* Whether cached entry j starts where entry j - 1 ends (one range). */
static bool joins_previous(unsigned j) {
    const cache_entry *lo = &cache.e[j - 1], *hi = &cache.e[j];
    return (char *)lo->base + lo->size == (char *)hi->base &&
           mk__chunk_joinable(lo->base, hi->base);
}

/* A chunk for a block of need bytes (header included), or NULL: the first
 * seg_up(need) bytes of a cached chunk, or of a run of address-adjacent
 * cached chunks joined together, preferring the most resident bytes the
 * block can use (no faults) and then the smallest run. The rest of the
 * last chunk goes back to the cache (every cut is on 4 MiB). *touched:
 * bytes from the start past which nothing is resident. */
static mk__large *cache_take(size_t need, size_t *size, size_t *touched) {
    size_t want = seg_up(need);
    mk__spin_lock(&cache.lock);
    unsigned best = CACHE_SLOTS, best_end = 0;
    size_t best_use = 0, best_size = 0;
    for (unsigned i = 0; i < cache.n; i++) {
        size_t sz = 0, use = 0;
        unsigned j = i;
        do {
            size_t t = cache.e[j].touched;
            if (sz < need) use += t < need - sz ? t : need - sz;
            sz += cache.e[j].size;
            j++;
        } while (sz < want && j < cache.n && joins_previous(j));
        if (sz < want) continue;
        if (best == CACHE_SLOTS || use > best_use || (use == best_use && sz < best_size)) {
            best = i;
            best_end = j;
            best_use = use;
            best_size = sz;
        }
    }
    mk__large *base = NULL;
    size_t got = 0, extent = 0;
    for (unsigned k = best; best != CACHE_SLOTS && k < best_end; k++) {
        cache_entry e;
        cache_remove_at(best, &e);
        if (base == NULL) base = e.base;
        if (got + e.size > want) {
            /* the tail of the last one stays cached (room: entries left) */
            size_t cut = want - got;
            cache_entry tail = {(mk__large *)((char *)e.base + cut), e.size - cut,
                                e.touched > cut ? e.touched - cut : 0, 0, e.freed_at};
            size_t head_res = e.resident < cut ? e.resident : cut;
            tail.resident = e.resident - head_res;
            if (tail.resident > tail.touched) tail.resident = tail.touched;
            (void)cache_insert(tail);
            e.size = cut;
            if (e.touched > cut) e.touched = cut;
        }
        if (e.touched) extent = got + e.touched;
        got += e.size;
    }
    mk__spin_unlock(&cache.lock);
    if (base == NULL) return NULL;
    *size = got;
    *touched = extent;
    return base;
}

void mk__large_trim(bool force) {
    evict_list ev = {0};
    mk__spin_lock(&cache.lock);
    evict_expired(mk__os_now_ns(), mk__load(&mk__g.purge_delay_ns), force, &ev);
    mk__spin_unlock(&cache.lock);
    release_list(&ev);
}

void mk__large_lock_all(void) { mk__spin_lock(&cache.lock); }
void mk__large_unlock_all(bool reinit) {
    if (reinit)
        atomic_store_explicit(&cache.lock.v, 0, memory_order_relaxed);
    else
        mk__spin_unlock(&cache.lock);
}

static mk__large *header_of(const void *p) {
    mk__large *L = (mk__large *)mk__segment_of(p);
    if (L->magic != MK__LARGE_MAGIC || (const char *)L + L->user_off != (const char *)p)
        return NULL;
    return L;
}

static size_t usable_of(const mk__large *L) { return L->map_size - L->user_off; }

void *mk__large_alloc(mk_heap *h, size_t size, size_t align, bool zero) {
    size_t off = align > 64 ? align : 64, head = 0, total, touched = 0;
    mk__large *L;
    if (align >= MK__SEG_SIZE) {
        /* Header one segment below the block, so mk__segment_of(block)
         * finds it; the space before the header is never touched. */
        total = page_up(MK__SEG_SIZE + size + align);
        char *raw = mk__chunk_alloc(total);
        if (raw == NULL) return mk__fail_nomem();
        uintptr_t a = ((uintptr_t)raw + MK__SEG_SIZE + align - 1) & ~(uintptr_t)(align - 1);
        L = (mk__large *)(a - MK__SEG_SIZE);
        head = (size_t)((char *)L - raw);
        off = MK__SEG_SIZE;
        mk__mapped_add(total);
        L->map_size = L->res_size = total - head;
    } else {
        size_t need = page_up(off + size);
        L = cache_take(need, &total, &touched);
        if (L == NULL) {
            /* Reserve whole 4 MiB units: the untouched rest costs no memory,
             * lets the block grow in place and keeps chunks adjacent (the
             * kernel's next mapping is then aligned too: one mmap). */
            total = seg_up(need);
            L = mk__chunk_alloc(total);
            if (L == NULL) return mk__fail_nomem();
            mk__mapped_add(total);
        } else if (touched > need && touched - need > need / 4) {
            /* resident pages the block does not need: give them back */
            mk__chunk_purge((char *)L + need, touched - need);
            mk__addmw(&mk__g.returned, touched - need);
            touched = need;
        }
        L->map_size = need;
        L->res_size = total;
    }
    L->touched = touched > L->map_size ? touched : L->map_size;
    L->user_off = (uint32_t)off;
    L->head_trim = head;
    L->heap = h->kind == MK__HEAP_FIRST_CLASS ? h : NULL;
    L->next = L->prev = NULL;
    L->magic = MK__LARGE_MAGIC;
    char *p = (char *)L + off;
    /* pages past what was ever touched are zero (fresh or purged) */
    if (zero && touched > off) memset(p, 0, touched - off < size ? touched - off : size);
    if (L->heap) {
        mk__spin_lock(&h->large_lock);
        L->next = h->large;
        if (h->large) h->large->prev = L;
        h->large = L;
        mk__spin_unlock(&h->large_lock);
    }
    mk__add1w(&h->st.n_alloc, 1);
    mk__add1w(&h->st.bytes_alloc, usable_of(L));
    mk__addmw(&mk__g.n_large, 1);
    mk__addmw(&mk__g.large_live, usable_of(L));
    atomic_store_explicit(&mk__segmap[(uintptr_t)L >> MK__SEG_SHIFT], MK__MAP_LARGE,
                          memory_order_release);
    mk__sample_peak();
    return p;
}

static void count_free(size_t usable) {
    mk_heap *me = mk__tl_heap;
    if (me) {
        mk__add1w(&me->st.n_free, 1);
        mk__add1w(&me->st.bytes_free, usable);
    } else {
        mk__addmw(&mk__g.orphan.n_free, 1);
        mk__addmw(&mk__g.orphan.bytes_free, usable);
    }
    mk__submw(&mk__g.large_live, usable);
}

static void unlink_from_heap(mk__large *L) {
    mk_heap *h = L->heap;
    mk__spin_lock(&h->large_lock);
    if (L->prev)
        L->prev->next = L->next;
    else
        h->large = L->next;
    if (L->next) L->next->prev = L->prev;
    mk__spin_unlock(&h->large_lock);
}

void mk__large_free(void *p) {
    mk__large *L = header_of(p);
    if (L == NULL) {
        mk__corrupt("free(): invalid pointer", p);
        return;
    }
    count_free(usable_of(L));
    if (L->heap) unlink_from_heap(L);
    L->magic = 0;
    atomic_store_explicit(&mk__segmap[(uintptr_t)L >> MK__SEG_SHIFT], MK__MAP_NONE,
                          memory_order_release);
    if (L->head_trim)
        chunk_release((char *)L - L->head_trim, L->res_size + L->head_trim);
    else
        cache_put(L, L->res_size, L->touched);
}

size_t mk__large_usable(const void *p) {
    mk__large *L = header_of(p);
    if (L == NULL) {
        mk__corrupt("malloc_usable_size(): invalid pointer", p);
        return 0;
    }
    return usable_of(L);
}

static void count_resize(size_t old_usable, size_t new_usable) {
    mk_heap *me = mk__tl_heap;
    _Atomic uint64_t *a = me ? &me->st.bytes_alloc : &mk__g.orphan.bytes_alloc;
    _Atomic uint64_t *f = me ? &me->st.bytes_free : &mk__g.orphan.bytes_free;
    if (new_usable > old_usable) {
        mk__addmw(a, new_usable - old_usable);
        mk__addmw(&mk__g.large_live, new_usable - old_usable);
    } else {
        mk__addmw(f, old_usable - new_usable);
        mk__submw(&mk__g.large_live, old_usable - new_usable);
    }
}

/* In place when it can: shrink by giving the pages past the new end back,
 * grow inside the reservation (no system call) or with mremap (no move).
 * NULL: the caller allocates, copies and frees. */
void *mk__large_realloc(void *p, size_t size) {
    mk__large *L = header_of(p);
    if (L == NULL) {
        mk__corrupt("realloc(): invalid pointer", p);
        return NULL;
    }
    size_t old = usable_of(L);
    if (L->head_trim) return size <= old ? p : NULL;
    size_t want = page_up(L->user_off + size);
    if (size <= old) {
        /* Shrink only when it frees a lot; the tail stays usable otherwise. */
        if (L->map_size - want >= ((size_t)1 << 20)) {
            size_t res = seg_up(want);
            if (res < L->res_size && mk__chunk_shrink(L, L->res_size, res) == MK_OK) {
                mk__submw(&mk__g.mapped, L->res_size - res);
                mk__addmw(&mk__g.returned, L->res_size - res);
                L->res_size = res;
                if (L->touched > res) L->touched = res;
            }
            if (L->touched > want) {
                mk__chunk_purge((char *)L + want, L->touched - want);
                mk__addmw(&mk__g.returned, L->touched - want);
                L->touched = want;
            }
            L->map_size = want;
            count_resize(old, usable_of(L));
        }
        return p;
    }
    /* Grow by at least 1/8 so repeated small growths stay amortised. */
    size_t step = page_up(L->map_size + L->map_size / 8);
    if (want < step) want = step;
    if (want > L->res_size) {
        size_t res = seg_up(want);
        if (page_up(L->user_off + size) <= L->res_size) {
            want = L->res_size; /* the reservation is enough for the request */
        } else if (mk__chunk_grow(L, L->res_size, res) == MK_OK) {
            mk__mapped_add(res - L->res_size);
            L->res_size = res;
        } else {
            return NULL;
        }
    }
    L->map_size = want;
    if (L->touched < want) L->touched = want;
    count_resize(old, usable_of(L));
    return p;
}

void mk__large_release_heap(mk_heap *h) {
    mk__spin_lock(&h->large_lock);
    mk__large *L = h->large;
    h->large = NULL;
    mk__spin_unlock(&h->large_lock);
    while (L) {
        mk__large *next = L->next;
        mk__add1w(&h->st.n_free, 1);
        mk__add1w(&h->st.bytes_free, usable_of(L));
        mk__submw(&mk__g.large_live, usable_of(L));
        L->magic = 0;
        atomic_store_explicit(&mk__segmap[(uintptr_t)L >> MK__SEG_SHIFT], MK__MAP_NONE,
                              memory_order_release);
        chunk_release((char *)L - L->head_trim, L->res_size + L->head_trim);
        L = next;
    }
}
