/*
 * Allocation in a segment: alloc, free, realloc, owned blocks and their
 * reclaim.
 *
 * Each public operation is one journal operation (MK__OP_USER) that drives
 * the policy's primitives directly, so that whatever goes with the engine's
 * writes (an owned block's USER bit and owner word, a named object's
 * directory link) commits or rolls back together with them. The counters
 * are kept exactly as region.c keeps them, so mk_region_validate agrees.
 *
 * When an allocation does not fit, the operation is closed (nothing was
 * written: a policy's alloc and resize write nothing when they answer
 * MK_ENOMEM), the segment grows, and the operation starts again.
 */
#include "shm_int.h"

#include <string.h>

/* ---- engine-level helpers (inside an open journal operation) -------------------- */

int mk__shm_raw_alloc(mk__hdr *h, uint64_t size, uint64_t align, unsigned place, mk_off *b) {
    if (align < MK__GRAIN) align = MK__GRAIN;
    /* MK_ENOMEM, not MK_ETOOBIG: the caller may grow the segment and retry;
     * but only when the numbers compared are sound, or a damaged header
     * would send it to grow. (The header is checked here only on refusal:
     * mk__region_alloc_op checks it on the way in.) */
    if (size > h->data_end - h->data_start) return mk__hdr_ok(h) ? MK_ENOMEM : MK_ECORRUPT;
    return mk__region_alloc_op(h, size, align, place, b);
}

void mk__shm_tag_block(mk__hdr *h, mk_off b, uint64_t t) {
    uint64_t w = mk__get(h, b);
    if (!(w & MK__F_USER)) mk__set_at(h, b, w | MK__F_USER);
    mk__set_at(h, b + mk__bspan(h, b) - 8, t);
}

uint64_t mk__shm_capacity(const mk_shm *s) {
    return mk__shm_end_for(s->reserved) - s->data_start; /* the handle's copy: see mk_shm */
}

int mk__shm_classify(const mk__hdr *h, mk_off off, mk__shm_blk *out) {
    size_t usable = 0;
    int rc = mk_region_usable_size((const mk_region *)h, off, &usable);
    if (rc != MK_OK) return rc;
    mk_off b = off - MK__TAGW;
    uint64_t w = mk__get(h, b);
    memset(out, 0, sizeof *out);
    out->b = b;
    out->span = mk__span(w);
    out->kind = MK_SHM_BLOCK_PLAIN;
    if (!(w & MK__F_USER)) return MK_OK;
    if (out->span < 32) return MK_ECORRUPT;
    uint64_t t = mk__get(h, b + out->span - 8);
    uint64_t kind = t >> MK__TR_SHIFT;
    if (kind == MK__TR_OWNED) {
        out->kind = MK_SHM_BLOCK_OWNED;
        out->slot = (uint32_t)((t >> 32) & 0xFFFF);
        out->gen = (uint32_t)t;
        return out->slot < MK_SHM_MAX_PROCS ? MK_OK : MK_ECORRUPT;
    }
    if (t == mk__shm_trailer_for(MK_SHM_BLOCK_META, b)) {
        out->kind = MK_SHM_BLOCK_META;
        return MK_OK;
    }
    if (t == mk__shm_trailer_kind(MK__TR_CACHE, b)) {
        out->kind = MK_SHM_BLOCK_META;
        out->table = true;
        return out->span >= sizeof(mk__shm_cache) + 16 ? MK_OK : MK_ECORRUPT;
    }
    if (t == mk__shm_trailer_for(MK_SHM_BLOCK_OBJECT, b)) {
        out->kind = MK_SHM_BLOCK_OBJECT;
        return out->span >= sizeof(mk__shm_ent) + 16 ? MK_OK : MK_ECORRUPT;
    }
    return MK_ECORRUPT;
}

/* ---- public operations -------------------------------------------------------------- */

/* Record a final allocation failure in the counters (its own operation). */
static void count_failure(mk__hdr *h) {
    mk__journal_begin(h, MK__OP_USER, MK__SOP_FAILED, 0, 0);
    mk__count_op(h, 0, 0, 0, &h->c.n_failed);
    mk__journal_end(h);
}

int mk__shm_no_room(mk_shm *s, uint64_t need, bool *drained, bool count) {
    if (!*drained && s->cache && s->cache->blocks) {
        *drained = true;
        int rc = mk__shm_cache_drain_locked(s);
        if (rc != MK_OK) return rc;
        return MK_OK;
    }
    if (mk__shm_grow_locked(s, need) != MK_OK) {
        if (count) count_failure(s->h);
        return MK_ENOMEM;
    }
    return MK_OK;
}

/* The locked path of an allocation (mk__shm_no_room says what count is). */
static int alloc_locked(mk_shm *s, size_t size, size_t align, unsigned flags, bool count,
                        mk_off *out) {
    bool owned = flags & MK_SHM_OWNED;
    int rc = mk__check_align(&align);
    if (rc != MK_OK) return rc;
    if (owned && s->slot < 0) return MK_EINVAL;
    uint64_t need = (uint64_t)size + (owned ? 8 : 0);
    if (size > MK_REGION_MAX_SIZE || need > mk__shm_capacity(s)) return MK_ETOOBIG;
    rc = mk__shm_lock(s);
    if (rc != MK_OK) return rc;
    mk__hdr *h = s->h;
    mk_off b = 0;
    bool drained = false;
    for (;;) {
        mk__journal_begin(h, MK__OP_USER, MK__SOP_ALLOC, size, align);
        rc = mk__shm_raw_alloc(h, need, align, mk__shm_place(s), &b);
        if (rc == MK_OK) {
            uint64_t span = mk__bspan(h, b);
            if (flags & MK_SHM_ZERO) {
                mk__journal_payload_words(h, b);
                memset(mk__word(h, b + MK__TAGW), 0, (size_t)(span - MK__TAGW));
            }
            if (owned) mk__shm_tag_block(h, b, mk__shm_owner_word((uint32_t)s->slot, s->gen));
        }
        mk__journal_end(h);
        if (rc != MK_ENOMEM) break;
        if (mk__shm_no_room(s, need + align + 64, &drained, count) != MK_OK) break;
    }
    mk__shm_unlock(s);
    if (rc == MK_OK) *out = b + MK__TAGW;
    return rc;
}

int mk_shm_alloc_ex(mk_shm *s, size_t size, size_t align, unsigned flags, mk_off *out) {
    if (!s || !out || (flags & ~(unsigned)(MK_SHM_OWNED | MK_SHM_ZERO))) return MK_EINVAL;
    /* The cache first: a small size and an alignment of at most 16 (a power
     * of two, or 0) pass every check of the locked path, so they can wait
     * for a miss (an observer, the one that may not own blocks, has no
     * cache). The calling thread's cache (threads.c): on its miss the
     * locked path, which gives the handle's cache back if it finds no
     * room, and then the thread handles'. */
    if (align <= MK__GRAIN && (align & (align - 1)) == 0) {
        int rc = mk__shm_cache_alloc(mk__shm_thread_cache(s), size, flags, out);
        if (rc != MK_ENOENT) return rc;
    }
    int rc = alloc_locked(s, size, align, flags, false, out);
    if (rc == MK_ENOMEM && mk__shm_retry_after_flush(s))
        rc = alloc_locked(s, size, align, flags, true, out);
    return rc;
}

bool mk__shm_retry_after_flush(mk_shm *s) {
    if (!s->thread_handle && mk__shm_thread_flush(s)) return true;
    if (mk__shm_lock(s) == MK_OK) { /* the last word: a failure, for the statistics */
        count_failure(s->h);
        mk__shm_unlock(s);
    }
    return false;
}

int mk_shm_alloc(mk_shm *s, size_t size, mk_off *out) {
    return mk_shm_alloc_ex(s, size, 0, 0, out);
}

int mk_shm_free(mk_shm *s, mk_off off) {
    if (!s) return MK_EINVAL;
    /* The calling thread's cache (threads.c); a block it does not take,
     * the handle's would not take either (the same owner word). */
    int rc = mk__shm_cache_free(mk__shm_thread_cache(s), off);
    if (rc != MK_ENOENT) return rc;
    rc = mk__shm_lock(s);
    if (rc != MK_OK) return rc;
    mk__shm_blk blk;
    rc = mk__shm_classify(s->h, off, &blk);
    if (rc == MK_OK && blk.kind != MK_SHM_BLOCK_PLAIN && blk.kind != MK_SHM_BLOCK_OWNED)
        rc = MK_EBADOFF;
    if (rc == MK_OK && mk__shm_in_a_cache(s->h, &blk)) rc = MK_EDOUBLEFREE;
    if (rc == MK_OK) {
        mk__journal_begin(s->h, MK__OP_USER, MK__SOP_FREE, off, 0);
        rc = mk__region_free_op(s->h, blk.b);
        mk__journal_end(s->h);
    }
    mk__shm_unlock(s);
    return rc;
}

/* One attempt at a resize (inside an operation). MK_ENOMEM: nothing
 * written. A moved block's copy leaves out the owner word (re-tagged). */
static int resize_once(mk_shm *s, const mk__shm_blk *blk, uint64_t need, uint64_t trailer,
                       mk_off *nb) {
    mk__hdr *h = s->h;
    uint64_t span = mk__span_for(need ? need : 1, mk__ops(h)->min_span);
    int rc = mk__region_resize_op(h, blk->b, span, trailer ? 8 : 0, mk__shm_place(s), nb);
    if (rc == MK_OK && trailer) mk__shm_tag_block(h, *nb, trailer); /* the header was rewritten */
    return rc;
}

static int realloc_locked(mk_shm *s, mk_off off, size_t size, bool count, mk_off *out) {
    int rc = mk__shm_lock(s);
    if (rc != MK_OK) return rc;
    mk__hdr *h = s->h;
    mk__shm_blk blk;
    rc = mk__shm_classify(h, off, &blk);
    if (rc == MK_OK && blk.kind != MK_SHM_BLOCK_PLAIN && blk.kind != MK_SHM_BLOCK_OWNED)
        rc = MK_EBADOFF;
    if (rc == MK_OK && mk__shm_in_a_cache(s->h, &blk)) rc = MK_EDOUBLEFREE;
    if (rc == MK_OK) rc = mk__neighbours_ok(h, blk.b);
    uint64_t trailer = 0, need = size;
    if (rc == MK_OK && blk.kind == MK_SHM_BLOCK_OWNED) {
        trailer = mk__get(h, blk.b + blk.span - 8);
        need += 8;
    }
    if (rc == MK_OK && (size > MK_REGION_MAX_SIZE || need > mk__shm_capacity(s))) rc = MK_ETOOBIG;
    mk_off nb = 0;
    bool drained = false;
    while (rc == MK_OK) {
        mk__journal_begin(h, MK__OP_USER, MK__SOP_REALLOC, off, size);
        rc = resize_once(s, &blk, need, trailer, &nb);
        mk__journal_end(h);
        if (rc != MK_ENOMEM) break;
        rc = mk__shm_no_room(s, need + 64, &drained, count);
    }
    mk__shm_unlock(s);
    if (rc == MK_OK) *out = nb + MK__TAGW;
    return rc;
}

int mk_shm_realloc(mk_shm *s, mk_off off, size_t size, mk_off *out) {
    if (!s || !out) return MK_EINVAL;
    if (off == 0) return mk_shm_alloc(s, size, out);
    int rc = realloc_locked(s, off, size, false, out);
    if (rc == MK_ENOMEM && mk__shm_retry_after_flush(s))
        rc = realloc_locked(s, off, size, true, out);
    return rc;
}

int mk_shm_usable_size(mk_shm *s, mk_off off, size_t *out) {
    if (!s || !out) return MK_EINVAL;
    int rc = mk__shm_lock(s);
    if (rc != MK_OK) return rc;
    mk__shm_blk blk;
    rc = mk__shm_classify(s->h, off, &blk);
    if (rc == MK_OK) {
        if (blk.kind == MK_SHM_BLOCK_PLAIN)
            *out = (size_t)(blk.span - MK__TAGW);
        else if (blk.kind == MK_SHM_BLOCK_OWNED)
            *out = (size_t)(blk.span - 2 * MK__TAGW);
        else
            rc = MK_EBADOFF;
    }
    mk__shm_unlock(s);
    return rc;
}

/* ---- reclaim ---------------------------------------------------------------------------- */

#define RECLAIM_BATCH 64

typedef struct orphans {
    const mk_shm *s;
    size_t n;
    mk_off off[RECLAIM_BATCH];
} orphans;

static int find_orphans(const mk_block_info *bi, void *arg) {
    orphans *o = arg;
    if (!bi->used) return 0;
    mk__shm_blk blk;
    if (mk__shm_classify(o->s->h, bi->offset, &blk) != MK_OK || blk.kind != MK_SHM_BLOCK_OWNED)
        return 0;
    const mk__shm_slot *sl = &mk__shm_m(o->s)->slots[blk.slot];
    if (sl->pid != 0 && (uint32_t)sl->gen == blk.gen) return 0; /* owner attached */
    o->off[o->n++] = bi->offset;
    return o->n == RECLAIM_BATCH;
}

int mk_shm_reclaim(mk_shm *s, uint64_t *blocks, uint64_t *bytes) {
    if (blocks) *blocks = 0;
    if (bytes) *bytes = 0;
    if (!s) return MK_EINVAL;
    int rc = mk__shm_lock(s);
    if (rc != MK_OK) return rc;
    mk__hdr *h = s->h;
    rc = mk__shm_reap_locked(s, NULL);
    uint64_t nb = 0, nbytes = 0;
    while (rc == MK_OK) {
        orphans o = {.s = s};
        int w = mk_region_walk((mk_region *)h, find_orphans, &o);
        if (w < 0) rc = w;
        for (size_t i = 0; rc == MK_OK && i < o.n; i++) {
            uint64_t span = mk__bspan(h, o.off[i] - MK__TAGW);
            mk__journal_begin(h, MK__OP_USER, MK__SOP_FREE, o.off[i], 1);
            rc = mk__region_free_op(h, o.off[i] - MK__TAGW);
            mk__journal_end(h);
            nb++;
            nbytes += span - 2 * MK__TAGW;
        }
        if (o.n < RECLAIM_BATCH) break;
    }
    mk__shm_unlock(s);
    if (blocks) *blocks = nb;
    if (bytes) *bytes = nbytes;
    return rc;
}
