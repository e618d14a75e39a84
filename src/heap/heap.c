/*
 * The process heap's core: thread heaps, segments, spans of size-classed
 * blocks, local and cross-thread frees, purging of free pages.
 *
 * Fast paths (no lock, no atomic read-modify-write, no OS call):
 *   malloc: heap = thread-local pointer; span = heap->cur[class];
 *           pop span->free.
 *   free:   segment = pointer rounded down to 4 MiB (checked in mk__segmap);
 *           span from the segment's page table; if the span's heap is the
 *           caller's, push on span->free, else CAS-push on span->thread_free.
 *
 * A span whose blocks are all out goes to its heap's full list and its
 * thread_free word is flagged MK__TF_FULL; the first remote free into it
 * then pushes the span on heap->wake, so the owner finds it again without
 * scanning full spans (mimalloc's delayed-free idea, at span granularity).
 *
 * Free spans leave their pages "dirty" (resident) in the segment; a later
 * span takes dirty pages first (of any segment), so churn costs no page
 * faults. Dirty pages are purged (madvise) when they have been dirty longer
 * than purge_delay, or at once when a heap holds more than its allowance
 * (purge_threshold, or half its span pages when more); wholly free segments
 * are then unmapped.
 */
#include "heap/heap_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "os/os.h"

#define MK__SEG_MAGIC UINT64_C(0x5447455354494B4D) /* "MKTISEGT" */

mk__global mk__g;
_Atomic uint8_t mk__segmap[MK__SEGMAP_LEN];
_Thread_local struct mk_heap *mk__tl_heap MK__TLS_MODEL;

/* The thread that runs mk__init may re-enter malloc from the calls it makes
 * (pthread_atfork may allocate); it must not wait for itself. */
static _Thread_local bool tl_in_init;

/* cur[] of a heap points here when the class has no span: its free list is
 * empty, so the fast path falls through to the slow path. Never written. */
static mk__span empty_span;

/* ---- small utilities --------------------------------------------------- */

void mk__max(_Atomic uint64_t *c, uint64_t v) {
    uint64_t old = atomic_load_explicit(c, memory_order_relaxed);
    while (old < v && !atomic_compare_exchange_weak_explicit(c, &old, v, memory_order_relaxed,
                                                             memory_order_relaxed)) {
    }
}

/* Test-and-test-and-set: spin on a plain load (the line stays shared
 * until the holder's release) with the CPU's pause hint, then give the
 * processor away. These locks guard list updates and at most one system
 * call (sbrk, madvise), so a holder not done after 64 pauses (a few
 * microseconds) is most likely preempted. */
void mk__spin_lock(mk__spin *l) {
    for (unsigned spins = 0;; spins++) {
        if (atomic_exchange_explicit(&l->v, 1, memory_order_acquire) == 0) return;
        while (atomic_load_explicit(&l->v, memory_order_relaxed) != 0) {
            if (++spins > 64)
                mk__os_yield();
            else
                mk__os_cpu_relax();
        }
    }
}

static size_t page_align(size_t n) {
    size_t p = mk__os_page_size();
    return (n + p - 1) & ~(p - 1);
}

/* Default handler: a message on stderr (write(2), no stdio) and abort. */
static void default_error(const char *msg, void *ptr) {
    char buf[160];
    size_t n = 0;
    const char *pre = "memkit: ";
    while (*pre && n < 100) buf[n++] = *pre++;
    while (*msg && n < 120) buf[n++] = *msg++;
    buf[n++] = ':';
    buf[n++] = ' ';
    buf[n++] = '0';
    buf[n++] = 'x';
    uintptr_t v = (uintptr_t)ptr;
    for (int sh = (int)sizeof v * 8 - 4; sh >= 0; sh -= 4)
        buf[n++] = "0123456789abcdef"[(v >> sh) & 15];
    buf[n++] = '\n';
    mk__os_write_stderr(buf, n);
    abort();
}

void mk__corrupt(const char *msg, const void *ptr) {
    void (*fn)(const char *, void *) = atomic_load(&mk__g.on_error);
    (fn ? fn : default_error)(msg, (void *)(uintptr_t)ptr);
}

void *mk__fail_nomem(void) {
    mk__addmw(&mk__g.n_failed, 1);
    errno = ENOMEM;
    return NULL;
}

/* ---- span lists (owner only) ---------------------------------------------- */

static void list_push(mk__span **head, mk__span *s) {
    s->prev = NULL;
    s->next = *head;
    if (*head) (*head)->prev = s;
    *head = s;
}

static void list_remove(mk__span **head, mk__span *s) {
    if (s->prev)
        s->prev->next = s->next;
    else
        *head = s->next;
    if (s->next) s->next->prev = s->prev;
    s->next = s->prev = NULL;
}

/* Set the thread_free flag to flag if it is now from (the block list part
 * is kept). Returns whether it was from. */
static bool tf_flag_swap(mk__span *s, uintptr_t from, uintptr_t to) {
    uintptr_t tf = atomic_load_explicit(&s->thread_free, memory_order_relaxed);
    while ((tf & MK__TF_MASK) == from) {
        uintptr_t nt = (tf & ~(uintptr_t)MK__TF_MASK) | to;
        if (atomic_compare_exchange_weak_explicit(&s->thread_free, &tf, nt, memory_order_acq_rel,
                                                  memory_order_relaxed))
            return true;
    }
    return false;
}

static void dirty_add(mk_heap *h, uint64_t n) {
    h->dirty_bytes += n;
    mk__addmw(&mk__g.dirty, n);
}
static void dirty_sub(mk_heap *h, uint64_t n) {
    h->dirty_bytes -= n;
    mk__submw(&mk__g.dirty, n);
}

/* ---- segments ---------------------------------------------------------------- */

static size_t span_pages(size_t bs) {
    if (bs <= 8192) return 1;
    return (bs * 8 + MK__PAGE_SIZE - 1) / MK__PAGE_SIZE;
}

void mk__count_os(void) { mk__addmw(&mk__g.n_os_calls, 1); }

void mk__mapped_add(size_t n) {
    uint64_t now = atomic_fetch_add_explicit(&mk__g.mapped, n, memory_order_relaxed) + n;
    mk__max(&mk__g.peak_mapped, now);
}

static mk__segment *segment_new(mk_heap *h) {
    mk__segment *seg = mk__chunk_alloc(MK__SEG_SIZE);
    if (seg == NULL) return NULL;
    mk__mapped_add(MK__SEG_SIZE);
    seg->magic = MK__SEG_MAGIC;
    seg->heap = h;
    seg->free_mask = MK__ALL_PAGES;
    seg->dirty_mask = 0;
    seg->dirty_since = 0;
    memset(seg->page_span, 0, sizeof seg->page_span);
    seg->prev = NULL;
    seg->next = h->segs;
    if (h->segs) h->segs->prev = seg;
    h->segs = seg;
    mk__addmw(&mk__g.segments, 1);
    atomic_store_explicit(&mk__segmap[(uintptr_t)seg >> MK__SEG_SHIFT], MK__MAP_SEGMENT,
                          memory_order_release);
    return seg;
}

static void segment_release(mk_heap *h, mk__segment *seg) {
    if (seg->prev)
        seg->prev->next = seg->next;
    else
        h->segs = seg->next;
    if (seg->next) seg->next->prev = seg->prev;
    dirty_sub(h, (uint64_t)mk__popcount64(seg->dirty_mask) * MK__PAGE_SIZE);
    atomic_store_explicit(&mk__segmap[(uintptr_t)seg >> MK__SEG_SHIFT], MK__MAP_NONE,
                          memory_order_release);
    seg->magic = 0;
    mk__chunk_free(seg, MK__SEG_SIZE);
    mk__submw(&mk__g.mapped, MK__SEG_SIZE);
    mk__addmw(&mk__g.returned, MK__SEG_SIZE);
    mk__submw(&mk__g.segments, 1);
}

/* Bit j of the result: pages j..j+n-1 are all in mask. */
static uint64_t runs_of(uint64_t mask, size_t n) {
    uint64_t r = mask;
    for (size_t i = 1; i < n && r; i++) r &= mask >> i;
    return r;
}

/* A run of n free pages in seg: of resident (dirty) pages only when
 * dirty_only, else any free pages. */
static bool find_run(const mk__segment *seg, size_t n, bool dirty_only, unsigned *first) {
    uint64_t r = runs_of(dirty_only ? seg->free_mask & seg->dirty_mask : seg->free_mask, n);
    if (!r) return false;
    *first = (unsigned)mk__ctz64(r);
    return true;
}

/* ---- spans ---------------------------------------------------------------------- */

static mk__span *span_new(mk_heap *h, unsigned cls) {
    size_t bs = mk__class_size(cls), n = span_pages(bs);
    unsigned first = 0;
    mk__segment *seg = NULL;
    /* Resident free pages of any segment first (no page faults, no growth
     * of the resident set), then never-touched or purged ones. */
    if (h->dirty_bytes >= n * MK__PAGE_SIZE)
        for (seg = h->segs; seg; seg = seg->next)
            if (seg->dirty_mask && find_run(seg, n, true, &first)) break;
    if (seg == NULL)
        for (seg = h->segs; seg; seg = seg->next)
            if (seg->free_mask && find_run(seg, n, false, &first)) break;
    if (seg == NULL) {
        seg = segment_new(h);
        if (seg == NULL) return NULL;
        first = 1;
    }
    uint64_t run = (n == 64 ? ~UINT64_C(0) : ((UINT64_C(1) << n) - 1)) << first;
    dirty_sub(h, (uint64_t)mk__popcount64(seg->dirty_mask & run) * MK__PAGE_SIZE);
    seg->free_mask &= ~run;
    seg->dirty_mask &= ~run;
    for (size_t i = 0; i < n; i++) seg->page_span[first + i] = (uint8_t)first;
    h->span_bytes += n * MK__PAGE_SIZE;
    mk__span *s = &seg->spans[first];
    s->free = NULL;
    s->used = 0;
    s->block_size = (uint32_t)bs;
    s->div_magic = (uint32_t)(((UINT64_C(1) << 32) + bs - 1) / bs);
    s->capacity = (uint32_t)(n * MK__PAGE_SIZE / bs);
    s->carved = 0;
    s->cls = (uint8_t)cls;
    s->npages = (uint8_t)n;
    s->page = (uint8_t)first;
    s->flags = 0;
    atomic_store_explicit(&s->has_aligned, 0, memory_order_relaxed);
    s->start = (char *)seg + first * MK__PAGE_SIZE;
    s->heap = h;
    s->wake_next = NULL;
    atomic_store_explicit(&s->thread_free, 0, memory_order_relaxed);
    list_push(&h->head[cls], s);
    return s;
}

/* Give a span with no block out back to its segment (pages stay dirty). */
static void span_retire(mk_heap *h, mk__span *s) {
    mk__segment *seg = mk__segment_of(s->start);
    if (s->flags & MK__SPAN_IN_FULL)
        list_remove(&h->full, s);
    else
        list_remove(&h->head[s->cls], s);
    if (h->cur[s->cls] == s) h->cur[s->cls] = &empty_span;
    uint64_t run = (s->npages == 64 ? ~UINT64_C(0) : ((UINT64_C(1) << s->npages) - 1)) << s->page;
    if (seg->dirty_mask == 0) seg->dirty_since = mk__os_now_ns();
    dirty_add(h, (uint64_t)mk__popcount64(run & ~seg->dirty_mask) * MK__PAGE_SIZE);
    seg->dirty_mask |= run;
    seg->free_mask |= run;
    h->span_bytes -= (uint64_t)s->npages * MK__PAGE_SIZE;
    s->block_size = 0;
    s->flags = 0;
}

/* A span may be retired only when no remote free can still reach it: no
 * block out and not pending on heap->wake (flag NONE). */
static bool span_retirable(mk__span *s) {
    return s->used == 0 && atomic_load_explicit(&s->thread_free, memory_order_acquire) == 0;
}

/* Take the remote frees; false when there were none. */
static bool span_collect(mk__span *s) {
    uintptr_t tf = atomic_load_explicit(&s->thread_free, memory_order_relaxed);
    if ((tf & ~(uintptr_t)MK__TF_MASK) == 0) return false;
    while (!atomic_compare_exchange_weak_explicit(&s->thread_free, &tf, tf & MK__TF_MASK,
                                                  memory_order_acquire, memory_order_relaxed)) {
    }
    mk__block *list = (mk__block *)(tf & ~(uintptr_t)MK__TF_MASK), *tail = list;
    uint32_t n = 1;
    while (tail->next) {
        tail = tail->next;
        n++;
    }
    tail->next = s->free;
    s->free = list;
    s->used -= n;
    return true;
}

/* Carve never-used blocks into the free list, about one OS page at a time,
 * so a span touches memory only as it is needed. */
static void span_carve(mk__span *s) {
    size_t bs = s->block_size;
    uint32_t n = s->capacity - s->carved, batch = (uint32_t)(4096 / bs);
    if (batch == 0) batch = 1;
    if (n > batch) n = batch;
    char *p = s->start + (size_t)s->carved * bs;
    mk__block *first = (mk__block *)p;
    for (uint32_t i = 1; i < n; i++, p += bs) ((mk__block *)p)->next = (mk__block *)(p + bs);
    ((mk__block *)p)->next = s->free;
    s->free = first;
    s->carved += n;
}

static bool span_refill(mk__span *s) {
    if (s->free) return true;
    if (span_collect(s)) return true;
    if (s->carved < s->capacity) {
        span_carve(s);
        return true;
    }
    return false;
}

/* Move an exhausted span to the full list. False if remote frees arrived
 * meanwhile (then it is not full). */
static bool span_to_full(mk_heap *h, mk__span *s) {
    uintptr_t tf = atomic_load_explicit(&s->thread_free, memory_order_relaxed);
    for (;;) {
        if (tf & ~(uintptr_t)MK__TF_MASK) return false;
        if ((tf & MK__TF_MASK) == MK__TF_NOTIFIED) break; /* already on heap->wake */
        if (atomic_compare_exchange_weak_explicit(&s->thread_free, &tf, MK__TF_FULL,
                                                  memory_order_acq_rel, memory_order_relaxed))
            break;
    }
    list_remove(&h->head[s->cls], s);
    if (h->cur[s->cls] == s) h->cur[s->cls] = &empty_span;
    list_push(&h->full, s);
    s->flags |= MK__SPAN_IN_FULL;
    return true;
}

static void span_unfull(mk_heap *h, mk__span *s) {
    (void)tf_flag_swap(s, MK__TF_FULL, MK__TF_NONE);
    list_remove(&h->full, s);
    s->flags &= (uint8_t)~MK__SPAN_IN_FULL;
    list_push(&h->head[s->cls], s);
}

/* Take the spans remote frees have woken. */
static void drain_wake(mk_heap *h) {
    mk__span *s = atomic_exchange_explicit(&h->wake, NULL, memory_order_acquire);
    while (s) {
        mk__span *next = s->wake_next;
        (void)tf_flag_swap(s, MK__TF_NOTIFIED, MK__TF_NONE);
        if (s->flags & MK__SPAN_IN_FULL) span_unfull(h, s);
        s = next;
    }
}

/* ---- purge ------------------------------------------------------------------ */

static void segment_purge_dirty(mk_heap *h, mk__segment *seg) {
    uint64_t d = seg->dirty_mask;
    while (d) {
        unsigned i = (unsigned)mk__ctz64(d);
        unsigned j = i;
        while (j < 64 && (d >> j) & 1) j++;
        size_t len = (size_t)(j - i) * MK__PAGE_SIZE;
        mk__chunk_purge((char *)seg + (size_t)i * MK__PAGE_SIZE, len);
        mk__addmw(&mk__g.returned, len);
        d &= ~(j == 64 ? ~UINT64_C(0) << i : ((UINT64_C(1) << j) - (UINT64_C(1) << i)));
    }
    dirty_sub(h, (uint64_t)mk__popcount64(seg->dirty_mask) * MK__PAGE_SIZE);
    seg->dirty_mask = 0;
}

/* Free pages a heap keeps resident: purge_threshold, or half the pages in
 * its spans when that is more. A big heap whose spans come and go reuses
 * its free pages instead of purging them and faulting them back (~10 us a
 * page); as its spans empty the allowance falls back to the threshold. */
static uint64_t dirty_allowance(const mk_heap *h) {
    uint64_t thr = mk__load(&mk__g.purge_threshold), half = h->span_bytes / 2;
    return half > thr ? half : thr;
}

/* Purge dirty pages older than the delay; everything when force; when
 * above the allowance, down to half of it (the eager part is bounded). */
static void heap_purge(mk_heap *h, bool force) {
    if (h->dirty_bytes == 0) return;
    uint64_t delay = mk__load(&mk__g.purge_delay_ns);
    uint64_t thr = dirty_allowance(h);
    uint64_t now = mk__os_now_ns();
    bool over = h->dirty_bytes > thr;
    mk__segment *seg = h->segs;
    while (seg && h->dirty_bytes) {
        mk__segment *next = seg->next;
        bool old = seg->dirty_mask && now - seg->dirty_since >= delay;
        if (seg->dirty_mask && (force || over || old)) {
            if (seg->free_mask == MK__ALL_PAGES)
                segment_release(h, seg);
            else
                segment_purge_dirty(h, seg);
            if (over && !force && h->dirty_bytes <= thr / 2) over = false;
        }
        seg = next;
    }
}

/* ---- thread heaps and the registry --------------------------------------------- */

mk_heap *mk__heap_create(unsigned kind) {
    void *mem = NULL;
    if (mk__os_alloc(page_align(sizeof(mk_heap)), &mem) != MK_OK) return NULL;
    mk__count_os();
    mk_heap *h = mem;
    h->magic = MK__HEAP_MAGIC;
    h->kind = kind;
    for (unsigned c = 0; c < MK__NCLASS; c++) h->cur[c] = &empty_span;
    mk__spin_lock(&mk__g.reg_lock);
    h->reg_next = mk__g.all;
    if (mk__g.all) mk__g.all->reg_prev = h;
    mk__g.all = h;
    mk__spin_unlock(&mk__g.reg_lock);
    mk__addmw(&mk__g.heaps, 1);
    return h;
}

void mk__registry_remove(mk_heap *h) {
    mk__spin_lock(&mk__g.reg_lock);
    if (h->reg_prev)
        h->reg_prev->reg_next = h->reg_next;
    else
        mk__g.all = h->reg_next;
    if (h->reg_next) h->reg_next->reg_prev = h->reg_prev;
    /* Keep the totals: a destroyed heap's counts move to the retired ones. */
    mk__addmw(&mk__g.retired_alloc, mk__load(&h->st.bytes_alloc));
    mk__addmw(&mk__g.retired_free, mk__load(&h->st.bytes_free));
    mk__addmw(&mk__g.n_retired_alloc, mk__load(&h->st.n_alloc));
    mk__addmw(&mk__g.n_retired_free, mk__load(&h->st.n_free));
    mk__spin_unlock(&mk__g.reg_lock);
    mk__submw(&mk__g.heaps, 1);
}

static uint64_t current_locked(void) {
    uint64_t a = mk__load(&mk__g.retired_alloc) + mk__load(&mk__g.orphan.bytes_alloc);
    uint64_t f = mk__load(&mk__g.retired_free) + mk__load(&mk__g.orphan.bytes_free);
    for (mk_heap *h = mk__g.all; h; h = h->reg_next) {
        a += mk__load(&h->st.bytes_alloc);
        f += mk__load(&h->st.bytes_free);
    }
    return a > f ? a - f : 0;
}

void mk__sample_peak(void) {
    if (!mk__spin_trylock(&mk__g.reg_lock)) return;
    uint64_t cur = current_locked();
    mk__spin_unlock(&mk__g.reg_lock);
    mk__max(&mk__g.peak, cur);
}

/* Take the remote frees of every span; retire empty spans (the current
 * ones too when force), then purge. */
void mk__heap_collect_purge(mk_heap *h, bool force) {
    drain_wake(h);
    mk__span *s = h->full;
    while (s) {
        mk__span *next = s->next;
        if (span_collect(s)) span_unfull(h, s);
        s = next;
    }
    for (unsigned c = 0; c < MK__NCLASS; c++) {
        if (force) h->cur[c] = &empty_span;
        for (s = h->head[c]; s;) {
            mk__span *next = s->next;
            span_collect(s);
            if (span_retirable(s) && h->cur[c] != s) span_retire(h, s);
            s = next;
        }
    }
    heap_purge(h, force);
}

static void pool_push(mk_heap *h) {
    mk__spin_lock(&mk__g.pool_lock);
    h->pool_next = mk__g.pool;
    mk__g.pool = h;
    mk__spin_unlock(&mk__g.pool_lock);
}

static mk_heap *pool_pop(void) {
    mk__spin_lock(&mk__g.pool_lock);
    mk_heap *h = mk__g.pool;
    if (h) mk__g.pool = h->pool_next;
    mk__spin_unlock(&mk__g.pool_lock);
    return h;
}

/* A thread ends: its heap gives back what it can and waits in the pool for
 * the next new thread (which inherits its spans and their remote frees). */
static void thread_done(void *arg) {
    mk_heap *h = arg;
    if (mk__tl_heap == h) mk__tl_heap = NULL;
    mk__heap_collect_purge(h, true);
    pool_push(h);
}

void mk__trim_all(void) {
    mk_heap *me = mk__tl_heap;
    if (me) mk__heap_collect_purge(me, true);
    mk__spin_lock(&mk__g.pool_lock);
    for (mk_heap *h = mk__g.pool; h; h = h->pool_next) mk__heap_collect_purge(h, true);
    mk__spin_unlock(&mk__g.pool_lock);
}

/* ---- fork --------------------------------------------------------------------- */

static void fork_prepare(void) {
    mk__spin_lock(&mk__g.pool_lock);
    mk__spin_lock(&mk__g.reg_lock);
    mk__large_lock_all();
    mk__source_lock();
}

static void fork_parent(void) {
    mk__source_unlock(false);
    mk__large_unlock_all(false);
    mk__spin_unlock(&mk__g.reg_lock);
    mk__spin_unlock(&mk__g.pool_lock);
}

/* The other threads are gone in the child. Their heaps may have been in
 * the middle of an operation, so they are not adopted: their blocks can
 * still be freed (remotely), their free space is lost to the child. */
static void fork_child(void) {
    mk__source_unlock(true);
    mk__large_unlock_all(true);
    atomic_store_explicit(&mk__g.reg_lock.v, 0, memory_order_relaxed);
    atomic_store_explicit(&mk__g.pool_lock.v, 0, memory_order_relaxed);
}

/* ---- initialisation --------------------------------------------------------------- */

void mk__init(void) {
    if (MK__LIKELY(atomic_load_explicit(&mk__g.init, memory_order_acquire) == 2)) return;
    int expect = 0;
    if (atomic_compare_exchange_strong(&mk__g.init, &expect, 1)) {
        tl_in_init = true;
        uintptr_t key = 0;
        mk__os_random(&key, sizeof key);
        mk__g.key = key | 1u; /* never 0 ^ address of a fresh block */
        atomic_store(&mk__g.purge_delay_ns, UINT64_C(250) * 1000000);
        atomic_store(&mk__g.purge_threshold, UINT64_C(8) << 20);
        mk__options_load();
        /* The key before atfork: a malloc re-entered from pthread_atfork
         * creates a thread heap, which arms the key. */
        (void)mk__os_thread_exit_init(MK__OS_EXIT_HEAP, thread_done);
        (void)mk__os_atfork(fork_prepare, fork_parent, fork_child);
        if (atomic_load(&mk__g.print_stats)) atexit(mk__print_stats_at_exit);
        atomic_store_explicit(&mk__g.init, 2, memory_order_release);
        tl_in_init = false;
        return;
    }
    if (tl_in_init) return;
    while (atomic_load_explicit(&mk__g.init, memory_order_acquire) != 2) mk__os_yield();
}

mk_heap *mk__thread_heap(void) {
    mk_heap *h = mk__tl_heap;
    if (MK__LIKELY(h != NULL)) return h;
    mk__init();
    h = pool_pop();
    if (h == NULL) h = mk__heap_create(MK__HEAP_THREAD);
    if (h == NULL) return NULL;
    mk__tl_heap = h;
    (void)mk__os_thread_exit_arm(MK__OS_EXIT_HEAP, h); /* may call malloc: the heap is set */
    return h;
}

/* ---- allocation ------------------------------------------------------------------- */

void *mk__alloc_slow(mk_heap *h, unsigned cls) {
    if (atomic_load_explicit(&h->wake, memory_order_relaxed) != NULL) drain_wake(h);
    mk__span *s = h->head[cls];
    while (s) {
        mk__span *next = s->next;
        if (span_refill(s)) break;
        if (!span_to_full(h, s) && span_refill(s)) break;
        s = next;
    }
    if (s == NULL) {
        s = span_new(h, cls);
        if (s == NULL) return mk__fail_nomem();
        span_carve(s);
        mk__sample_peak();
        if (h->dirty_bytes) heap_purge(h, false);
    }
    h->cur[cls] = s;
    return mk__span_pop(h, s);
}

/* ---- free -------------------------------------------------------------------------- */

void mk__free_local_slow(mk_heap *h, mk__span *s) {
    if (s->flags & MK__SPAN_IN_FULL) span_unfull(h, s);
    if (h->cur[s->cls] != s && span_retirable(s)) {
        span_retire(h, s);
        heap_purge(h, false);
    }
}

void mk__free_remote(mk__span *s, mk__block *b, mk_heap *me) {
    /* Read before the push: once the block is on thread_free the owner may
     * collect it and retire the span (block_size = 0) at any moment. */
    uint32_t bs = s->block_size;
    uintptr_t tf = atomic_load_explicit(&s->thread_free, memory_order_relaxed), nt;
    /* Acquire too: a FULL flag read here was set by the owner after it last
     * read s->wake_next (drain_wake), and the write of wake_next below must
     * come after that read (a ThreadSanitizer-found race with release only). */
    do {
        b->next = (mk__block *)(tf & ~(uintptr_t)MK__TF_MASK);
        uintptr_t flag = tf & MK__TF_MASK;
        nt = (uintptr_t)b | (flag == MK__TF_FULL ? (uintptr_t)MK__TF_NOTIFIED : flag);
    } while (!atomic_compare_exchange_weak_explicit(&s->thread_free, &tf, nt, memory_order_acq_rel,
                                                    memory_order_relaxed));
    if ((tf & MK__TF_MASK) == MK__TF_FULL) {
        /* We flipped FULL to NOTIFIED: the span cannot be retired until its
         * owner has taken it from wake, so s stays valid here. */
        mk_heap *owner = s->heap;
        mk__span *w = atomic_load_explicit(&owner->wake, memory_order_relaxed);
        do {
            s->wake_next = w;
        } while (!atomic_compare_exchange_weak_explicit(&owner->wake, &w, s, memory_order_release,
                                                        memory_order_relaxed));
    }
    if (me) {
        mk__add1w(&me->st.n_free, 1);
        mk__add1w(&me->st.bytes_free, bs);
    } else {
        mk__addmw(&mk__g.orphan.n_free, 1);
        mk__addmw(&mk__g.orphan.bytes_free, bs);
    }
}

size_t mk__usable_small(mk__segment *seg, const void *p) {
    mk__span *s = mk__span_of(seg, p);
    mk__block *b = mk__block_of(s, p);
    if (b == NULL) {
        mk__corrupt("malloc_usable_size(): invalid pointer", p);
        return 0;
    }
    return s->block_size - (size_t)((const char *)p - (const char *)b);
}

/* memalign handed out an interior pointer of this block's span: free must
 * accept pointers that are not block starts there. Set by the owner when it
 * allocates, before any other thread can see the pointer. */
void mk__span_set_aligned(void *block) {
    mk__segment *seg = mk__segment_of(block);
    mk__span *s = mk__span_of(seg, block);
    if (!atomic_load_explicit(&s->has_aligned, memory_order_relaxed))
        atomic_store_explicit(&s->has_aligned, 1, memory_order_relaxed);
}

/* ---- first-class heap teardown --------------------------------------------------------- */

void mk__heap_release_all(mk_heap *h) {
    drain_wake(h);
    uint64_t live_bytes = 0, live_n = 0;
    for (mk__segment *seg = h->segs; seg; seg = seg->next) {
        for (unsigned i = 1; i < MK__PAGES; i++) {
            mk__span *s = &seg->spans[i];
            if (seg->page_span[i] != i || s->block_size == 0 || (seg->free_mask >> i) & 1) continue;
            span_collect(s);
            live_bytes += (uint64_t)s->used * s->block_size;
            live_n += s->used;
        }
    }
    mk__add1w(&h->st.bytes_free, live_bytes);
    mk__add1w(&h->st.n_free, live_n);
    while (h->segs) {
        mk__segment *seg = h->segs;
        seg->free_mask = MK__ALL_PAGES;
        segment_release(h, seg);
        h->span_bytes = 0;
    }
    mk__large_release_heap(h);
}
