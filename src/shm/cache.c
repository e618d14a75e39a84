/*
 * Per-process caches of small blocks: the common allocation and free take
 * no segment lock.
 *
 * Each attached process has a table in the segment (mk__shm_cache, a block
 * tagged MK__TR_CACHE) with one LIFO list per kind and block span: plain
 * blocks and the blocks this process owns (MK_SHM_OWNED), spans 32 .. 4112
 * bytes in 16-byte steps. A free of a plain block of such a span, or of an
 * owned block of this process, pushes it on the list of its kind and span
 * (an owned block keeps its USER bit and owner word while cached: for a
 * reclaim it stays the owner's, and no header word needs a change without
 * the lock); an allocation of span S pops from the first non-empty list of
 * its kind of span S .. S + S/8 (a bitmap of non-empty lists finds it in a
 * step or two): exact spans would need far more cached memory for the same
 * hit rate, rounded size classes would waste up to the class step on every
 * block; this wastes at most S/8 and only when no exact block is there. For
 * the engine a cached block stays allocated, so the engine's state is
 * touched only under the segment lock, as before; the lists are the
 * handle's own, guarded by its mutex (a process with one thread skips it:
 * mk__shm_local_enter). A process's threads each get a handle of their
 * own for their caches (threads.c), so that mutex is seldom contended.
 *
 *     table (in the segment)            cached blocks (allocated, for the engine)
 *     +-----------+                      +------+------+--------+----
 *     | bin[k][2] | head --------------> | hdr  | next | cookie | ...
 *     | bin[k][3] | 0                    +------+--|---+--------+----
 *     |  ...      |                                v
 *     | pending   | (a block in flight)  +------+------+--------+----
 *     +-----------+                      | hdr  |  0   | cookie | ...
 *                                        +------+------+--------+----
 *
 * Lists are refilled and trimmed in batches under the segment lock, one
 * journal operation per block, so the lock is taken once per several
 * operations. A list holds at most MK__SHM_CACHE_MAX_LEN blocks and about
 * 1/128 of the budget, at least 16 KiB (bin_cap); all lists together at
 * most the segment's cache budget: at it, a freed block goes straight to
 * the heap.
 *
 * Crashes. The owner changes its lists without the journal (nobody else
 * reads them while it lives), in an order that keeps every block findable:
 * a block being pushed or popped is first named in `pending`, then linked
 * or unlinked, then `pending` is cleared. When the owner is dead, the reap
 * (repair after a crash under the lock, an attach that finds the process
 * table full, mk_shm_reclaim) frees the pending block unless it is on a
 * list, then every listed block, then the table, each step one journal
 * operation; the reclaim that follows finds the dead owner's other owned
 * blocks (a cached owned block is never both: the reap frees it before
 * the slot, which keeps the reclaim away, is cleared). Every listed block
 * is checked (in range, a used block of the list's kind and span, an owned
 * one with its owner's word, with the cookie) before it is used or freed,
 * so a damaged table gives MK_ECORRUPT or a leak, never a wild write.
 *
 * Unlocked reads of block headers. A cached block's header is read here
 * without the segment lock, while another process or thread may, under
 * the lock, set or clear its PREV_FREE bit (a neighbour freed or
 * allocated). The bits read here (tag, span, FREE, USER) and an owned
 * block's owner word do not change while the block is allocated, and the
 * load is atomic (mk__get_unlocked; every engine write is an atomic store,
 * mk__set): a plain load on the machines memkit runs on, no data race for
 * ThreadSanitizer or the language. So are the words that other threads
 * read without this handle's mutex: a cached block's cookie (walks, the
 * double-free check of a locked free) and the table's totals (stats).
 */
#include "shm_int.h"

#include <string.h>

#define BIN_SHARE 128u   /* a list keeps about budget / BIN_SHARE bytes, */
#define BIN_BYTES 16384u /* or this many if more, */
#define BIN_MIN   4u     /* and at least this many blocks */
#ifdef MK_TEST_HOOKS     /* tests and fuzz seeds want caches in small segments */
uint64_t mk__test_cache_min_segment = MK_SHM_CACHE_MIN_SEGMENT;
#define CACHE_MIN_SEGMENT mk__test_cache_min_segment
#else
#define CACHE_MIN_SEGMENT MK_SHM_CACHE_MIN_SEGMENT
#endif
#define REFILL 4u /* blocks an empty list gets under one lock (more wastes memory: measured) */

/* Fence between the steps of an unjournaled list change: the stores must
 * reach memory in program order, for a reaper after a crash. */
static inline void step(void) {
    atomic_signal_fence(memory_order_seq_cst);
    MK__CRASH_POINT(); /* test builds: a crash between two steps */
}

/* B: the bytes a list may keep, about budget / BIN_SHARE. */
static inline uint64_t bin_bytes(const mk_shm *s) {
    uint64_t bytes = s->cache_budget / BIN_SHARE;
    return bytes > BIN_BYTES ? bytes : BIN_BYTES;
}

/* Blocks a list of span may hold. Scaled by the budget: lists long enough
 * that a process rarely refills or trims one (each refill or trim is a
 * locked engine operation on lines the other processes write too), and
 * short enough that a few busy spans cannot take the whole budget. The cap
 * is what bounds the cached memory: a list's length wanders up and down
 * like a random walk with the program's mix of sizes, so the caches grow
 * with the run until the caps stop them. On bench-shm's workload, under
 * the default 4 MiB budget, lists of 1/128 of it (32 KiB) held 1.15x the
 * live bytes against 1.19x with 1/32 (1.16x against 1.20x over a run 16
 * times as long), at the same speed; 1/256 held 1.10x, but two processes
 * lost 15% and scaled about 1.6x instead of 1.7x (docs/BENCHMARKS.md). */
static uint64_t bin_cap(const mk_shm *s, uint64_t span) {
    uint64_t n = bin_bytes(s) / span;
    if (n < BIN_MIN) n = BIN_MIN;
    return n > MK__SHM_CACHE_MAX_LEN ? MK__SHM_CACHE_MAX_LEN : n;
}

/* count < bin_cap(s, span), without its division: every cached free asks,
 * and a 64-bit division is the slowest instruction of that path. Since
 * count < floor(B / span) exactly when (count + 1) * span <= B (no overflow:
 * count < 1024, span <= MK__SHM_CACHE_MAX_SPAN). */
static inline bool bin_has_room(const mk_shm *s, uint64_t count, uint64_t span) {
    if (count < BIN_MIN) return true;
    return count < MK__SHM_CACHE_MAX_LEN && (count + 1) * span <= bin_bytes(s);
}

/* The span an allocation of size gets from this segment's policy. */
static uint64_t request_span(const mk__hdr *h, size_t size) {
    uint64_t span = mk__span_for(size, mk__ops(h)->min_span);
    if (h->policy == MK_POLICY_BUDDY) span = UINT64_C(1) << (64 - mk__clz64(span - 1));
    return span;
}

/* The trailer word of the blocks on table c's owned lists. */
static inline uint64_t owner_of(const mk__shm_cache *c) { return c->owner; }

/* b is a used block of span (at least 32), inside this process's mapping,
 * of list kind k of table c: plain, or owned by c's process (its owner
 * word read, and c's, only then: a plain free need not pay for them). */
static bool block_of(const mk_shm *s, const mk__shm_cache *c, mk_off b, uint64_t span, unsigned k) {
    const mk__hdr *h = s->h;
    uint64_t mapped = atomic_load_explicit(&s->mapped, memory_order_relaxed);
    if (b % MK__GRAIN != 8 || b < s->data_start || b >= mapped || span > mapped - b) return false;
    uint64_t w = mk__get_unlocked(h, b);
    if (!mk__tag_ok(h, b, w) || (w & MK__F_FREE) || mk__span(w) != span) return false;
    if (k == MK__SHM_PLAIN) return !(w & MK__F_USER);
    return (w & MK__F_USER) && mk__get_unlocked(h, b + span - 8) == owner_of(c);
}

/* The span of the block at b if it is a block table c's lists take (plain,
 * or owned by c's process; a span of 32 .. MK__SHM_CACHE_MAX_SPAN, inside
 * this process's mapping with its cookie word), else 0; *k is its kind of
 * list. b may be anything: a caller's offset, or a word of a dead
 * process's table; no sum here can wrap. */
static uint64_t cacheable_span(const mk_shm *s, const mk__shm_cache *c, mk_off b, unsigned *k) {
    uint64_t mapped = atomic_load_explicit(&s->mapped, memory_order_relaxed);
    if (b % MK__GRAIN != 8 || b < s->data_start || b >= mapped || mapped - b < 24) return 0;
    uint64_t w = mk__get_unlocked(s->h, b), span = mk__span(w);
    *k = w & MK__F_USER ? MK__SHM_OWNED_LIST : MK__SHM_PLAIN;
    if (span < 32 || span > MK__SHM_CACHE_MAX_SPAN || !block_of(s, c, b, span, *k)) return 0;
    return span;
}

/* A cached block: of its list's kind and span, with the cookie. */
static bool cached_block(const mk_shm *s, const mk__shm_cache *c, unsigned k, mk_off b,
                         uint64_t span) {
    return block_of(s, c, b, span, k) && mk__get_unlocked(s->h, b + 16) == mk__shm_cookie(s->h, b);
}

static bool table_ok(const mk__hdr *h, mk_off t, uint32_t slot) {
    mk__shm_blk blk;
    if (mk__shm_classify(h, t, &blk) != MK_OK || !blk.table) return false;
    const mk__shm_cache *c = (const mk__shm_cache *)(const void *)mk__word(h, t);
    return c->magic == MK__SHM_CACHE_MG && c->slot == slot;
}

static inline void mark(mk__shm_cache *c, unsigned k, uint64_t i, bool nonempty) {
    uint64_t bit = UINT64_C(1) << (i % 64);
    if (nonempty)
        c->nonempty[k][i / 64] |= bit;
    else
        c->nonempty[k][i / 64] &= ~bit;
}

/* The first non-empty list of kind k in [lo, hi], or 0. */
static uint64_t first_nonempty(const mk__shm_cache *c, unsigned k, uint64_t lo, uint64_t hi) {
    for (uint64_t w = lo / 64; w <= hi / 64; w++) {
        uint64_t bits = c->nonempty[k][w];
        if (w == lo / 64) bits &= ~UINT64_C(0) << (lo % 64);
        if (bits) {
            uint64_t i = w * 64 + (uint64_t)mk__ctz64(bits);
            return i <= hi ? i : 0;
        }
    }
    return 0;
}

/* ---- under the segment lock: one journal operation per block ------------------------ */

/* Allocate one block of span (owned by this process for k = OWNED) and
 * push it on its list. MK_ENOMEM: no room without growing (nothing
 * written). */
static int refill_one(mk_shm *s, mk__shm_cache *c, unsigned k, uint64_t span) {
    mk__hdr *h = s->h;
    mk__shm_bin *bin = &c->bin[k][span / 16];
    mk_off b = 0;
    mk__journal_begin(h, MK__OP_USER, MK__SOP_CACHE, span, 1);
    int rc = mk__shm_raw_alloc(h, span - MK__TAGW, 0, mk__shm_place(s), &b);
    if (rc == MK_OK && mk__bspan(h, b) != span) {
        /* The policy gave a larger block (its remainder was too small to
         * split): keep it on the list of its own span, or give it back if
         * no list has that span or that list is full (past its cap it
         * could pass MK__SHM_CACHE_MAX_LEN, which validate calls damage). */
        uint64_t got = mk__bspan(h, b);
        if (got > MK__SHM_CACHE_MAX_SPAN || !bin_has_room(s, c->bin[k][got / 16].count, got)) {
            rc = mk__region_free_op(h, b);
            mk__journal_end(h);
            return rc == MK_OK ? MK_ENOMEM : rc;
        }
        bin = &c->bin[k][got / 16];
    }
    if (rc == MK_OK) {
        span = mk__bspan(h, b);
        if (k == MK__SHM_OWNED_LIST) mk__shm_tag_block(h, b, owner_of(c));
        mk__set_at(h, b + 8, bin->head);
        mk__set_at(h, b + 16, mk__shm_cookie(h, b));
        mk__set(h, &bin->head, b);
        mk__set(h, &bin->count, bin->count + 1);
        mk__set(h, &c->bytes, c->bytes + span);
        mk__set(h, &c->blocks, c->blocks + 1);
        mark(c, k, span / 16, true); /* a hint: only its living owner reads it */
    }
    mk__journal_end(h);
    return rc;
}

/* Pop the head of list k of span and free it to the heap. */
static int trim_one(mk_shm *s, mk__shm_cache *c, unsigned k, uint64_t span) {
    mk__hdr *h = s->h;
    mk__shm_bin *bin = &c->bin[k][span / 16];
    mk_off b = bin->head;
    if (!cached_block(s, c, k, b, span)) return MK_ECORRUPT;
    mk_off next = mk__get(h, b + 8);
    mk__journal_begin(h, MK__OP_USER, MK__SOP_CACHE, span, 0);
    mk__set(h, &bin->head, next);
    mk__set(h, &bin->count, bin->count - 1);
    mk__set(h, &c->bytes, c->bytes - span);
    mk__set(h, &c->blocks, c->blocks - 1);
    mk__set_at(h, b + 16, 0);          /* no stale cookie in the heap */
    int rc = mk__region_free_op(h, b); /* on damage, rolled back: b stays listed */
    mk__journal_end(h);
    if (rc == MK_OK && !next) mark(c, k, span / 16, false);
    return rc;
}

/* Trim list k of span i * 16 to keep blocks; its low-water mark (collect)
 * follows. */
static int trim_bin(mk_shm *s, mk__shm_cache *c, unsigned k, uint64_t i, uint64_t keep) {
    mk__shm_bin *bin = &c->bin[k][i];
    int rc = MK_OK;
    while (rc == MK_OK && bin->count > keep && bin->head) rc = trim_one(s, c, k, i * 16);
    if (rc == MK_OK && bin->count > keep) rc = MK_ECORRUPT; /* the list ended early */
    if (s->low[k][i] > bin->count) s->low[k][i] = (uint16_t)bin->count;
    return rc;
}

/* Every list gives back all its blocks. */
static int trim_all(mk_shm *s, mk__shm_cache *c) {
    int rc = MK_OK;
    for (unsigned k = 0; k < MK__SHM_LISTS; k++)
        for (uint64_t i = 2; i < MK__SHM_CACHE_BINS && rc == MK_OK; i++)
            if (c->bin[k][i].count) rc = trim_bin(s, c, k, i, 0);
    return rc;
}

/* ---- the unlocked paths ------------------------------------------------------------- */

static uint64_t budget(const mk_shm *s) {
    return s->cache_budget; /* the meta block's, written once, at creation */
}

/* Pop the head of list k of span for the caller. */
static int pop(mk_shm *s, mk__shm_cache *c, unsigned k, uint64_t span, mk_off *out) {
    mk__hdr *h = s->h;
    mk__shm_bin *bin = &c->bin[k][span / 16];
    mk_off b = bin->head;
    if (!b) return MK_ENOENT;
    if (!cached_block(s, c, k, b, span)) return MK_ECORRUPT;
    mk_off next = mk__get(h, b + 8);
    /* next is checked when it becomes the head: checking it now would cost
     * a cache miss on every allocation */
    c->pending = b;
    step();
    bin->head = next;
    if (!next) mark(c, k, span / 16, false);
    bin->count--;
    if (bin->count < s->low[k][span / 16]) s->low[k][span / 16] = (uint16_t)bin->count;
    mk__put_unlocked(&c->bytes, c->bytes - span); /* read by stats, from any thread */
    mk__put_unlocked(&c->blocks, c->blocks - 1);
    mk__put_unlocked(mk__word(h, b + 16), 0); /* read by walks, from any thread */
    step();
    c->pending = 0;
    *out = b;
    return MK_OK;
}

static void push(mk_shm *s, mk__shm_cache *c, unsigned k, uint64_t span, mk_off b) {
    mk__hdr *h = s->h;
    mk__shm_bin *bin = &c->bin[k][span / 16];
    c->pending = b;
    step();
    *mk__word(h, b + 8) = bin->head;
    mk__put_unlocked(mk__word(h, b + 16), mk__shm_cookie(h, b));
    step();
    bin->head = b;
    mark(c, k, span / 16, true);
    bin->count++;
    mk__put_unlocked(&c->bytes, c->bytes + span);
    mk__put_unlocked(&c->blocks, c->blocks + 1);
    step();
    c->pending = 0;
}

/* Fill an empty list with a few blocks under one segment lock. */
static void refill(mk_shm *s, mk__shm_cache *c, unsigned k, uint64_t span) {
    uint64_t want = bin_cap(s, span) / 2 < REFILL ? bin_cap(s, span) / 2 : REFILL;
    if (c->bytes + want * span > budget(s)) want = 1;
    if (mk__shm_lock_shared(s) != MK_OK) return; /* the locked path reports it */
    for (uint64_t i = 0; i < want; i++)
        if (refill_one(s, c, k, span) != MK_OK) break;
    mk__shm_unlock_shared(s);
}

int mk__shm_cache_alloc(mk_shm *s, size_t size, unsigned flags, mk_off *out) {
    if (!s->cache || size > MK_SHM_CACHE_MAX_SIZE || mk__shm_inherited(s)) return MK_ENOENT;
    unsigned k = flags & MK_SHM_OWNED ? MK__SHM_OWNED_LIST : MK__SHM_PLAIN;
    uint64_t trailer = k == MK__SHM_OWNED_LIST ? 8 : 0; /* the owner's word, at the end */
    uint64_t span = request_span(s->h, size + trailer);
    if (span > MK__SHM_CACHE_MAX_SPAN) return MK_ENOENT;
    bool locked = mk__shm_local_enter(s);
    mk__shm_cache *c = s->cache;
    uint64_t i = first_nonempty(c, k, span / 16, (span + (span >> MK__SHM_CACHE_SLACK)) / 16);
    if (!i) {
        i = span / 16;
        refill(s, c, k, span);
    }
    mk_off b = 0;
    int rc = pop(s, c, k, i * 16, &b);
    mk__shm_local_leave(s, locked);
    if (rc != MK_OK) return rc;
    if (flags & MK_SHM_ZERO)
        memset(mk__word(s->h, b + MK__TAGW), 0, (size_t)(i * 16 - MK__TAGW - trailer));
    *out = b + MK__TAGW;
    return MK_OK;
}

/* Collection, when the cache reaches its budget: under one segment lock,
 * every list gives back three quarters of its low-water mark, the blocks it
 * did not need since the last collection (jemalloc's tcache GC), so that
 * the budget goes to the spans in use. Trimming every list by half instead
 * was measured: it empties lists that are refilled at once, 4x the lock
 * traffic. When a collection frees little (every list busy), the next
 * GC_WAIT frees over the budget go straight to the heap before another
 * one is tried. */
#define GC_WAIT 64u

static int collect(mk_shm *s, mk__shm_cache *c) {
    if (s->gc_wait) {
        s->gc_wait--;
        return MK_OK;
    }
    int rc = mk__shm_lock_shared(s);
    if (rc != MK_OK) return rc;
    uint64_t before = c->bytes;
    for (unsigned k = 0; k < MK__SHM_LISTS; k++)
        for (uint64_t i = 2; i < MK__SHM_CACHE_BINS && rc == MK_OK; i++) {
            uint64_t n = c->bin[k][i].count, cold = (3u * s->low[k][i] + 3u) / 4u;
            if (cold) rc = trim_bin(s, c, k, i, n > cold ? n - cold : 0);
            s->low[k][i] = (uint16_t)c->bin[k][i].count;
        }
    mk__shm_unlock_shared(s);
    if (before - c->bytes < budget(s) / 16) s->gc_wait = GC_WAIT;
    return rc;
}

/* Room for one more block of span. A full list gives half its blocks back
 * under one segment lock; a cache at its budget collects (above), and if
 * that leaves no room the block goes straight to the heap (MK_ENOENT: the
 * locked path). */
static int make_room(mk_shm *s, mk__shm_cache *c, unsigned k, uint64_t span) {
    const mk__shm_bin *bin = &c->bin[k][span / 16];
    if (c->bytes + span > budget(s)) {
        int rc = collect(s, c);
        if (rc != MK_OK) return rc;
        if (c->bytes + span > budget(s)) return MK_ENOENT;
    }
    if (bin_has_room(s, bin->count, span)) return MK_OK;
    int rc = mk__shm_lock_shared(s);
    if (rc != MK_OK) return rc;
    rc = trim_bin(s, c, k, span / 16, bin->count / 2);
    mk__shm_unlock_shared(s);
    return rc;
}

int mk__shm_cache_free(mk_shm *s, mk_off off) {
    if (!s->cache || off < 16 || mk__shm_inherited(s)) return MK_ENOENT;
    mk_off b = off - MK__TAGW;
    bool locked = mk__shm_local_enter(s);
    int rc = MK_ENOENT;
    mk__shm_cache *c = s->cache;
    unsigned k = 0;
    uint64_t span = cacheable_span(s, c, b, &k);
    if (span) {
        if (mk__get_unlocked(s->h, b + 16) == mk__shm_cookie(s->h, b))
            rc = MK_EDOUBLEFREE;
        else
            rc = make_room(s, c, k, span);
        if (rc == MK_OK) push(s, c, k, span, b);
    }
    mk__shm_local_leave(s, locked);
    return rc;
}

int mk_shm_cache_flush(mk_shm *s) {
    if (!s) return MK_EINVAL;
    if (!s->thread_handle) (void)mk__shm_thread_flush(s);
    int rc = mk__shm_lock(s);
    if (rc != MK_OK) return rc;
    rc = mk__shm_cache_drain_locked(s);
    mk__shm_unlock(s);
    return rc;
}

/* ---- attach, detach, reap ------------------------------------------------------------ */

int mk__shm_cache_attach_locked(mk_shm *s) {
    mk__hdr *h = s->h;
    mk__shm_meta *m = mk__shm_m(s);
    if (!m->cache_bytes || h->size < CACHE_MIN_SEGMENT || s->slot < 0) return MK_OK;
    mk_off b = 0;
    mk__journal_begin(h, MK__OP_USER, MK__SOP_CACHE, (uint64_t)s->slot, 2);
    int rc = mk__shm_raw_alloc(h, sizeof(mk__shm_cache) + 8, 0, mk__shm_place(s), &b);
    if (rc == MK_OK) {
        mk__journal_payload_words(h, b);
        mk__shm_cache *c = (mk__shm_cache *)(void *)mk__word(h, b + MK__TAGW);
        memset(c, 0, sizeof *c);
        c->magic = MK__SHM_CACHE_MG;
        c->slot = (uint64_t)s->slot;
        /* Owned blocks belong to the handle the caller allocates through: a
         * thread handle's cache keeps its parent's (threads.c). */
        const mk_shm *o = s->parent ? s->parent : s;
        c->owner = mk__shm_owner_word((uint32_t)o->slot, o->gen);
        mk__shm_tag_block(h, b, mk__shm_trailer_kind(MK__TR_CACHE, b));
        mk__set(h, &m->slots[s->slot].cache, b + MK__TAGW);
        s->cache = c;
    }
    mk__journal_end(h);
    return rc == MK_ENOMEM ? MK_OK : rc; /* no room: no cache */
}

/* Free table t (payload offset) and clear slot i's reference to it. */
static int free_table(mk_shm *s, uint32_t i, mk_off t) {
    mk__hdr *h = s->h;
    mk__journal_begin(h, MK__OP_USER, MK__SOP_CACHE, i, 3);
    int rc = mk__region_free_op(h, t - MK__TAGW);
    /* On damage the free was rolled back: the slot keeps its table. */
    if (rc == MK_OK) mk__set(h, &mk__shm_m(s)->slots[i].cache, 0);
    mk__journal_end(h);
    return rc;
}

int mk__shm_cache_drain_locked(mk_shm *s) {
    if (!s->cache || mk__shm_inherited(s)) return MK_OK;
    return trim_all(s, s->cache);
}

int mk__shm_cache_detach_locked(mk_shm *s) {
    if (!s->cache || mk__shm_inherited(s)) return MK_OK;
    int rc = mk__shm_cache_drain_locked(s);
    if (rc == MK_OK) rc = free_table(s, (uint32_t)s->slot, mk__offset_of(s->h, s->cache));
    if (rc == MK_OK) s->cache = NULL;
    return rc;
}

/* Whether b is on list k of span (bounded walk; the lists of a dead
 * process). */
static bool listed(const mk_shm *s, const mk__shm_cache *c, unsigned k, uint64_t span, mk_off b) {
    mk_off x = c->bin[k][span / 16].head;
    for (uint64_t n = 0; x && n <= MK__SHM_CACHE_MAX_LEN; n++) {
        if (x == b) return true;
        if (!cached_block(s, c, k, x, span)) return false;
        x = mk__get(s->h, x + 8);
    }
    return false;
}

/* The dead owner's block in flight: freed unless it is on a list. */
static int reap_pending(mk_shm *s, mk__shm_cache *c) {
    mk__hdr *h = s->h;
    mk_off b = c->pending;
    unsigned k = 0;
    uint64_t span = cacheable_span(s, c, b, &k);
    bool mine = span && !listed(s, c, k, span, b);
    mk__journal_begin(h, MK__OP_USER, MK__SOP_CACHE, b, 4);
    int rc = MK_OK;
    if (mine) {
        mk__set_at(h, b + 16, 0);
        rc = mk__region_free_op(h, b);
    }
    mk__set(h, &c->pending, 0);
    mk__journal_end(h);
    return rc;
}

/* Every listed block of a dead process's table, freed; a damaged list is
 * left where the damage starts (a leak, not a wild write). */
static void reap_lists(mk_shm *s, mk__shm_cache *c) {
    for (unsigned k = 0; k < MK__SHM_LISTS; k++)
        for (uint64_t i = 2; i < MK__SHM_CACHE_BINS; i++) {
            const mk__shm_bin *bin = &c->bin[k][i];
            for (uint64_t n = 0; bin->head && n <= MK__SHM_CACHE_MAX_LEN; n++)
                if (trim_one(s, c, k, i * 16) != MK_OK) break;
        }
}

int mk__shm_cache_reap_locked(mk_shm *s, uint32_t i) {
    mk__hdr *h = s->h;
    mk__shm_slot *sl = &mk__shm_m(s)->slots[i];
    mk_off t = sl->cache;
    if (!t) return MK_OK;
    if (!table_ok(h, t, i)) { /* damaged: forget it (a leak, not a wild write) */
        mk__journal_begin(h, MK__OP_USER, MK__SOP_CACHE, i, 5);
        mk__set(h, &sl->cache, 0);
        mk__journal_end(h);
        return MK_OK;
    }
    mk__shm_cache *c = (mk__shm_cache *)(void *)mk__word(h, t);
    int rc = reap_pending(s, c);
    if (rc == MK_OK) reap_lists(s, c);
    return rc == MK_OK ? free_table(s, i, t) : rc;
}

/* ---- inspection ---------------------------------------------------------------------- */

/* List k of span i * 16: every block checked, its count and bitmap bit. */
static int check_list(mk_shm *s, const mk__shm_cache *c, unsigned k, uint64_t i, uint64_t *n,
                      mk_fault *f) {
    *n = 0;
    for (mk_off x = c->bin[k][i].head; x; x = mk__get(s->h, x + 8), (*n)++) {
        if (*n >= MK__SHM_CACHE_MAX_LEN || !cached_block(s, c, k, x, i * 16))
            return mk__shm_fault(f, "cache: a listed block is not a cached block of its span", x);
    }
    if ((*n != 0) != (bool)(c->nonempty[k][i / 64] >> (i % 64) & 1))
        return mk__shm_fault(f, "cache: non-empty bitmap differs from the lists",
                             mk__offset_of(s->h, c));
    if (*n != c->bin[k][i].count)
        return mk__shm_fault(f, "cache: list length differs from its count",
                             mk__offset_of(s->h, &c->bin[k][i]));
    return MK_OK;
}

static int check_lists(mk_shm *s, const mk__shm_cache *c, mk_fault *f) {
    uint64_t blocks = 0, bytes = 0;
    for (unsigned k = 0; k < MK__SHM_LISTS; k++)
        for (uint64_t i = 2; i < MK__SHM_CACHE_BINS; i++) {
            uint64_t n = 0;
            int rc = check_list(s, c, k, i, &n, f);
            if (rc != MK_OK) return rc;
            blocks += n;
            bytes += n * i * 16;
        }
    if (blocks != c->blocks || bytes != c->bytes || c->pending)
        return mk__shm_fault(f, "cache: totals differ from the lists", mk__offset_of(s->h, c));
    return MK_OK;
}

int mk__shm_cache_check(mk_shm *s, mk_fault *f) {
    const mk__shm_meta *m = mk__shm_m(s);
    for (uint32_t i = 0; i < MK_SHM_MAX_PROCS; i++) {
        mk_off t = m->slots[i].cache;
        if (!t) continue;
        if (m->slots[i].pid == 0 || !table_ok(s->h, t, i))
            return mk__shm_fault(f, "process table: cache table", t);
    }
    /* Other processes change their lists without the lock: only ours. */
    if (s->cache && !mk__shm_inherited(s)) return check_lists(s, s->cache, f);
    return MK_OK;
}

void mk__shm_cache_totals(const mk_shm *s, uint64_t *blocks, uint64_t *bytes) {
    const mk__shm_meta *m = mk__shm_m(s);
    *blocks = *bytes = 0;
    for (uint32_t i = 0; i < MK_SHM_MAX_PROCS; i++) {
        mk_off t = m->slots[i].cache;
        if (!t || !table_ok(s->h, t, i)) continue;
        const mk__shm_cache *c = (const mk__shm_cache *)(const void *)mk__word(s->h, t);
        *blocks += __atomic_load_n(&c->blocks, __ATOMIC_RELAXED); /* its owner works on */
        *bytes += __atomic_load_n(&c->bytes, __ATOMIC_RELAXED);
    }
}
