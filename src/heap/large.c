/*
 * Large blocks (above the largest size class): each is its own chunk from
 * the source, aligned to 4 MiB, with a mk__large header at its start and
 * the block at header + user_off (64, or the alignment asked for).
 *
 *   chunk (page multiple)
 *   +--------+-------------------------------------+
 *   | header | block ...                            |
 *   +--------+-------------------------------------+
 *   ^ 4 MiB aligned; mk__segmap says MK__MAP_LARGE here
 *
 * Freed chunks are not unmapped at once: a small cache keeps up to
 * purge_threshold bytes of them, for at most purge_delay, so a program that
 * allocates and frees the same big buffer in a loop pays no system call and
 * no page fault after the first time. A chunk bigger than the threshold is
 * unmapped on free, and so is everything in the cache after the delay or on
 * mk_heap_trim(): a program that frees everything returns near its starting
 * RSS.
 */
#include "heap/heap_int.h"

#include <string.h>

#include "os/os.h"

#define MK__LARGE_MAGIC UINT64_C(0x4752414C54494B4D) /* "MKTILARG" */
#define CACHE_SLOTS     16

typedef struct cache_entry {
    mk__large *base;
    size_t size;
    uint64_t freed_at;
} cache_entry;

static struct {
    mk__spin lock;
    unsigned n;
    uint64_t bytes;
    cache_entry e[CACHE_SLOTS];
} cache;

static size_t page_up(size_t n) {
    size_t p = mk__os_page_size();
    return (n + p - 1) & ~(p - 1);
}

static void chunk_release(void *base, size_t size) {
    mk__chunk_free(base, size);
    mk__submw(&mk__g.mapped, size);
    mk__addmw(&mk__g.returned, size);
}

static void cache_remove_at(unsigned i, cache_entry *out) {
    *out = cache.e[i];
    cache.bytes -= cache.e[i].size;
    cache.e[i] = cache.e[--cache.n];
    mk__submw(&mk__g.large_cached, out->size);
}

/* Best fit with at most 25% slack (the slack stays usable by the block). */
static mk__large *cache_take(size_t need, size_t *size) {
    if (mk__load(&mk__g.large_cached) == 0) return NULL; /* a stale 0 costs one fresh chunk */
    mk__spin_lock(&cache.lock);
    unsigned best = CACHE_SLOTS;
    for (unsigned i = 0; i < cache.n; i++) {
        size_t s = cache.e[i].size;
        if (s >= need && s - need <= need / 4 && (best == CACHE_SLOTS || s < cache.e[best].size))
            best = i;
    }
    cache_entry got = {0};
    if (best != CACHE_SLOTS) cache_remove_at(best, &got);
    mk__spin_unlock(&cache.lock);
    *size = got.size;
    return got.base;
}

/* Entries to release outside the lock. */
typedef struct evict_list {
    unsigned n;
    cache_entry e[CACHE_SLOTS + 1];
} evict_list;

static void evict_expired(uint64_t now, uint64_t delay, bool force, evict_list *ev) {
    for (unsigned i = 0; i < cache.n;) {
        if (force || now - cache.e[i].freed_at >= delay)
            cache_remove_at(i, &ev->e[ev->n++]);
        else
            i++;
    }
}

static unsigned oldest(void) {
    unsigned o = 0;
    for (unsigned i = 1; i < cache.n; i++)
        if (cache.e[i].freed_at < cache.e[o].freed_at) o = i;
    return o;
}

static void release_list(evict_list *ev) {
    for (unsigned i = 0; i < ev->n; i++) chunk_release(ev->e[i].base, ev->e[i].size);
}

/* Keep a freed chunk, or release it when it does not fit the budget. */
static void cache_put(mk__large *base, size_t size) {
    uint64_t thr = mk__load(&mk__g.purge_threshold);
    if (size > thr) {
        chunk_release(base, size);
        return;
    }
    uint64_t now = mk__os_now_ns(), delay = mk__load(&mk__g.purge_delay_ns);
    evict_list ev = {0};
    mk__spin_lock(&cache.lock);
    evict_expired(now, delay, false, &ev);
    while (cache.n > 0 && (cache.n == CACHE_SLOTS || cache.bytes + size > thr))
        cache_remove_at(oldest(), &ev.e[ev.n++]);
    cache.e[cache.n++] = (cache_entry){base, size, now};
    cache.bytes += size;
    mk__addmw(&mk__g.large_cached, size);
    mk__spin_unlock(&cache.lock);
    release_list(&ev);
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
    size_t off = align > 64 ? align : 64, head = 0, total;
    mk__large *L;
    bool fresh = false;
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
        fresh = true;
        mk__mapped_add(total);
    } else {
        size_t need = page_up(off + size);
        L = cache_take(need, &total);
        if (L == NULL) {
            total = need;
            L = mk__chunk_alloc(total);
            if (L == NULL) return mk__fail_nomem();
            fresh = true;
            mk__mapped_add(total);
        }
    }
    L->map_size = total - head;
    L->user_off = off;
    L->head_trim = head;
    L->heap = h->kind == MK__HEAP_FIRST_CLASS ? h : NULL;
    L->next = L->prev = NULL;
    L->magic = MK__LARGE_MAGIC;
    char *p = (char *)L + off;
    if (zero && !fresh) memset(p, 0, size);
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
        chunk_release((char *)L - L->head_trim, L->map_size + L->head_trim);
    else
        cache_put(L, L->map_size);
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

/* In place when it can: shrink by unmapping the tail, grow with mremap
 * (no move). NULL: the caller allocates, copies and frees. */
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
        if (L->map_size - want >= ((size_t)1 << 20) &&
            mk__chunk_shrink(L, L->map_size, want) == MK_OK) {
            mk__submw(&mk__g.mapped, L->map_size - want);
            mk__addmw(&mk__g.returned, L->map_size - want);
            L->map_size = want;
            count_resize(old, usable_of(L));
        }
        return p;
    }
    /* Grow by at least 1/8 so repeated small growths stay amortised. */
    size_t step = L->map_size + L->map_size / 8;
    if (want < step) want = page_up(step);
    if (mk__chunk_grow(L, L->map_size, want) != MK_OK) return NULL;
    mk__mapped_add(want - L->map_size);
    L->map_size = want;
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
        chunk_release((char *)L - L->head_trim, L->map_size + L->head_trim);
        L = next;
    }
}
