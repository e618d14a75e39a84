/*
 * The region API: argument checks, the journal bracket around each
 * operation, counters, and the policy table. The policies do the fitting;
 * block.c does splitting and merging.
 */
#include "region_int.h"

#include "os/os.h"

const mk__policy_ops *const mk__policy_table[MK_POLICY_COUNT] = {
    [MK_POLICY_FIRST_FIT] = &mk__policy_first_fit, [MK_POLICY_NEXT_FIT] = &mk__policy_next_fit,
    [MK_POLICY_BEST_FIT] = &mk__policy_best_fit,   [MK_POLICY_WORST_FIT] = &mk__policy_worst_fit,
    [MK_POLICY_TLSF] = &mk__policy_tlsf,           [MK_POLICY_BUDDY] = &mk__policy_buddy,
};

const char *mk_policy_name(mk_policy policy) {
    return (unsigned)policy < MK_POLICY_COUNT ? mk__policy_table[policy]->name : NULL;
}

int mk_policy_from_name(const char *name, mk_policy *out) {
    if (!name || !out) return MK_EINVAL;
    for (unsigned i = 0; i < MK_POLICY_COUNT; i++) {
        if (strcmp(name, mk__policy_table[i]->name) == 0) {
            *out = (mk_policy)i;
            return MK_OK;
        }
    }
    return MK_EINVAL;
}

/* ---- layout ---------------------------------------------------------------- */

static uint64_t round_up(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

uint64_t mk__layout_signature(void) {
    const uint64_t facts[] = {
        sizeof(mk__hdr),
        offsetof(mk__hdr, c),
        offsetof(mk__hdr, user),
        offsetof(mk__hdr, lock),
        sizeof(mk__journal),
        sizeof(mk__undo),
        MK__GRAIN,
        MK__TAGW,
        MK__CACHE_LINE,
        MK__TAG_SHIFT,
        MK__JOURNAL_CAP,
        (uint64_t) _Alignof(max_align_t),
        UINT64_C(0x0102030405060708) & 0xFF, /* endianness: first byte when stored */
    };
    uint64_t x = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < sizeof facts / sizeof facts[0]; i++) {
        uint64_t f = facts[i];
        unsigned char bytes[8];
        memcpy(bytes, &f, 8);
        for (int k = 0; k < 8; k++) x = (x ^ bytes[k]) * UINT64_C(0x100000001b3);
    }
    for (unsigned i = 0; i < MK_POLICY_COUNT; i++)
        x = (x ^ (mk__policy_table[i]->state_size * 131 + mk__policy_table[i]->min_span)) *
            UINT64_C(0x100000001b3);
    return x;
}

#define FLAGS_ALL (MK_REGION_JOURNAL | MK_REGION_QUICK)

typedef struct layout {
    mk_off state_off, quick_off, journal_off, data_start;
} layout;

static layout compute_layout(const mk__policy_ops *ops, unsigned flags) {
    layout l;
    l.state_off = round_up(sizeof(mk__hdr), MK__CACHE_LINE);
    uint64_t end = l.state_off + ops->state_size;
    l.quick_off = 0;
    if (flags & MK_REGION_QUICK) {
        l.quick_off = round_up(end, MK__CACHE_LINE);
        end = l.quick_off + sizeof(mk__quick);
    }
    l.journal_off = 0;
    if (flags & MK_REGION_JOURNAL) {
        l.journal_off = round_up(end, MK__CACHE_LINE);
        end = l.journal_off + sizeof(mk__journal) + MK__JOURNAL_CAP * sizeof(mk__undo);
    }
    l.data_start = round_up(end, MK__GRAIN) + 8; /* payloads 16-aligned */
    return l;
}

/* Last possible sentinel offset for a range of size bytes (% 16 == 8). */
static mk_off end_for(uint64_t size) { return ((size - 16) & ~(uint64_t)(MK__GRAIN - 1)) + 8; }

bool mk__layout_ok(const mk__hdr *h) {
    if (h->policy >= MK_POLICY_COUNT || (h->flags & ~FLAGS_ALL)) return false;
    const mk__policy_ops *ops = mk__policy_table[h->policy];
    layout l = compute_layout(ops, h->flags);
    /* Every offset the engine starts from must be where this build puts it. */
    if (h->state_off != l.state_off || h->state_off != MK__STATE_OFF ||
        h->journal_off != l.journal_off || h->quick_off != l.quick_off ||
        (h->quick_off && !ops->coalesces))
        return false;
    /* mk__hdr_ok first: the grid, the order of the bounds, and a size
     * above the header (end_for needs 16 bytes at least). */
    return mk__hdr_ok(h) && h->data_start >= l.data_start && h->data_end <= end_for(h->size) &&
           h->size <= MK_REGION_MAX_SIZE;
}

size_t mk_region_min_size(mk_policy policy, unsigned flags) {
    if ((unsigned)policy >= MK_POLICY_COUNT || (flags & ~FLAGS_ALL)) return 0;
    const mk__policy_ops *ops = mk__policy_table[policy];
    if ((flags & MK_REGION_QUICK) && !ops->coalesces) return 0; /* buddy merges by itself */
    layout l = compute_layout(ops, flags);
    uint64_t slack = ops->coalesces ? 0 : MK_REGION_MAX_ALIGN; /* buddy aligns its arena */
    return (size_t)(l.data_start + slack + ops->min_span + 8);
}

int mk_region_create(void *base, size_t size, mk_policy policy, unsigned flags, mk_region **out) {
    if (!base || !out || (uintptr_t)base % MK__GRAIN) return MK_EINVAL;
    size_t min = mk_region_min_size(policy, flags);
    if (!min || size < min || (uint64_t)size > MK_REGION_MAX_SIZE) return MK_EINVAL;
    const mk__policy_ops *ops = mk__policy_table[policy];
    layout l = compute_layout(ops, flags);
    mk__hdr *h = (mk__hdr *)base;
    memset(h, 0, (size_t)l.data_start);
    h->version = MK__VERSION;
    h->hdr_size = sizeof(mk__hdr);
    h->signature = mk__layout_signature();
    h->size = size;
    h->policy = (uint32_t)policy;
    h->flags = flags;
    mk__os_random(&h->secret, sizeof h->secret);
    h->state_off = l.state_off;
    h->quick_off = l.quick_off;
    h->data_start = l.data_start;
    h->data_end = end_for(size);
    ops->init(h);
    if (ops->coalesces) {
        *mk__word(h, h->data_end) = mk__pack(h, h->data_end, 0, 0);
        uint64_t span = h->data_end - h->data_start;
        uint64_t w = mk__pack(h, h->data_start, span, MK__F_FREE);
        *mk__word(h, h->data_start) = w;
        *mk__word(h, h->data_end - 8) = w;
        *mk__word(h, h->data_end) |= MK__F_PREV_FREE;
        ops->insert(h, h->data_start);
    }
    /* The journal starts now: formatting has nothing to undo. */
    if (l.journal_off) {
        mk__journal *j = (mk__journal *)(void *)mk__word(h, l.journal_off);
        j->cap = MK__JOURNAL_CAP;
        h->journal_off = l.journal_off;
    }
    /* The magic goes last: a half-formatted range is never mistaken for a region. */
    atomic_signal_fence(memory_order_seq_cst);
    h->magic = MK__MAGIC;
    *out = (mk_region *)base;
    return MK_OK;
}

int mk_region_attach(void *base, size_t mapped, mk_region **out) {
    if (!base || !out || (uintptr_t)base % MK__GRAIN) return MK_EINVAL;
    if (mapped < sizeof(mk__hdr)) return MK_ETRUNCATED;
    const mk__hdr *h = (const mk__hdr *)base;
    if (h->magic != MK__MAGIC) return MK_EBADMAGIC;
    if (h->version != MK__VERSION) return MK_EVERSION;
    if (h->signature != mk__layout_signature() || h->hdr_size != sizeof(mk__hdr)) return MK_ELAYOUT;
    if (h->size > mapped) return MK_ETRUNCATED;
    if (!mk__layout_ok(h)) return MK_ECORRUPT;
    if (h->journal_off) {
        const mk__journal *j = (const mk__journal *)(const void *)mk__word(h, h->journal_off);
        if (j->cap != MK__JOURNAL_CAP) return MK_ECORRUPT;
    }
    *out = (mk_region *)base;
    return MK_OK;
}

size_t mk_region_size(const mk_region *r) { return r ? (size_t)mk__hc(r)->size : 0; }

mk_policy mk_region_policy(const mk_region *r) { return (mk_policy)mk__hc(r)->policy; }

/* ---- counters ---------------------------------------------------------------- */

/* Account for an operation: bytes_used moves by add - sub, blocks_used by
 * blocks, and *counter (n_alloc, n_free, ...) by one. Without a journal
 * the counters are plain stores: one test instead of one per word. */
void mk__count_op(mk__hdr *h, uint64_t add, uint64_t sub, int64_t blocks, uint64_t *counter) {
    mk__counters *c = &h->c;
    uint64_t used = c->bytes_used + add - sub;
    if (!h->journal_off) {
        c->bytes_used = used;
        c->blocks_used += (uint64_t)blocks;
        if (used > c->peak_used) c->peak_used = used;
        ++*counter;
        return;
    }
    mk__set(h, &c->bytes_used, used);
    if (blocks) mk__set(h, &c->blocks_used, c->blocks_used + (uint64_t)blocks);
    if (used > c->peak_used) mk__set(h, &c->peak_used, used);
    mk__set(h, counter, *counter + 1);
}

static void bump(mk__hdr *h, uint64_t *counter) { mk__count_op(h, 0, 0, 0, counter); }

/* ---- checks of caller input ----------------------------------------------------- */

int mk__check_align(size_t *align) {
    if (*align == 0) *align = MK_REGION_DEFAULT_ALIGN;
    if ((*align & (*align - 1)) || *align > MK_REGION_MAX_ALIGN) return MK_EALIGN;
    if (*align < MK__GRAIN) *align = MK__GRAIN;
    return MK_OK;
}

/* mk_region_walk visitor: 0 while the block ends at or before *arg, then
 * 1 if a block starts at *arg, 2 if *arg is inside one. */
static int find_place(const mk_block_info *bi, void *arg) {
    mk_off blk = *(const mk_off *)arg, b = bi->offset - MK__TAGW;
    if (b + bi->span <= blk) return 0;
    return b == blk ? 1 : 2;
}

/* A word at blk passed its check tag with a span that cannot be. One
 * random word in 2^16 passes (the tag has 16 bits): a stale offset, into a
 * block freed and merged, finds such words in the free block's links and
 * old data (a double free gave MK_ECORRUPT about once in 80,000). So walk
 * the blocks, on this error path only: if blk is inside a block, the
 * caller's offset is wrong (MK_EBADOFF); if a block starts at blk, or the
 * walk meets damage first, the heap is damaged. */
static int stale_or_damaged(const mk__hdr *h, mk_off blk) {
    int rc = mk_region_walk((const mk_region *)(const void *)h, find_place, &blk);
    return rc == 2 ? MK_EBADOFF : MK_ECORRUPT;
}

/* Is off the payload of a live block? Sets *b to its block. The header
 * was checked (mk__hdr_ok). */
static int live_block(const mk__hdr *h, mk_off off, mk_off *b) {
    if (off < h->data_start + MK__TAGW || off >= h->data_end || off % MK__GRAIN) return MK_EBADOFF;
    mk_off blk = off - MK__TAGW;
    uint64_t w = mk__get(h, blk);
    if (!mk__tag_ok(h, blk, w)) return MK_EBADOFF;
    uint64_t span = mk__span(w);
    if (span < mk__ops(h)->min_span || span > h->data_end - blk) return stale_or_damaged(h, blk);
    if (w & (MK__F_FREE | MK__F_QUICK)) return MK_EDOUBLEFREE;
    *b = blk;
    return MK_OK;
}

/* Before merging, make sure the neighbours are what their tags say, so that
 * a damaged region gives an error instead of a write through a bad offset. */
int mk__neighbours_ok(const mk__hdr *h, mk_off b) {
    if (!mk__ops(h)->coalesces) return MK_OK;
    uint64_t w = mk__get(h, b);
    mk_off n = b + mk__span(w);
    uint64_t nw = mk__get(h, n);
    if (!mk__tag_ok(h, n, nw)) return MK_ECORRUPT;
    if (n == h->data_end ? mk__span(nw) != 0
                         : mk__span(nw) > h->data_end - n || mk__span(nw) < MK__LINK_ROOM)
        return MK_ECORRUPT;
    if (w & MK__F_PREV_FREE) {
        uint64_t foot = mk__get(h, b - 8); /* the predecessor's footer */
        uint64_t pspan = mk__span(foot);
        if (pspan > b - h->data_start || !mk__plausible_free(h, b - pspan) ||
            mk__get(h, b - pspan) != foot)
            return MK_ECORRUPT;
    }
    return MK_OK;
}

static bool quick_parked(const mk__hdr *h) {
    if (h->quick_off != mk__quick_off_for(h)) return false;
    const mk__quick *q = (const mk__quick *)(const void *)mk__word(h, h->quick_off);
    for (unsigned c = 0; c < MK__QUICK_CLASSES; c++)
        if (q->count[c]) return true;
    return false;
}

static int usable_check(const mk__hdr *h) { return mk__hdr_ok(h) ? MK_OK : MK_ECORRUPT; }

/* The block whose payload is off, if the region and the block are sound. */
static int lookup(const mk__hdr *h, mk_off off, mk_off *b) {
    int rc = usable_check(h);
    return rc == MK_OK ? live_block(h, off, b) : rc;
}

/* ---- operations ------------------------------------------------------------------ */

/* The policy's allocation; when nothing fits, merge the parked quick
 * blocks back and try once more. */
static int alloc_or_flush(mk__hdr *h, uint64_t span, uint64_t align, unsigned place, mk_off *b,
                          uint64_t op, uint64_t a0, uint64_t a1) {
    const mk__policy_ops *ops = mk__ops(h);
    int rc = ops->alloc(h, span, align, place, b);
    if (rc == MK_ENOMEM && h->quick_off && quick_parked(h)) {
        /* Nothing written yet: close this operation, flush (one operation
         * per block) and start it again. */
        mk__journal_end(h);
        rc = mk__quick_flush(h);
        mk__journal_begin(h, op, a0, a1, 0);
        if (rc == MK_OK) rc = ops->alloc(h, span, align, place, b);
    }
    return rc;
}

int mk__region_alloc_op(mk__hdr *h, uint64_t size, uint64_t align, unsigned place, mk_off *b) {
    *b = 0;
    if (!mk__hdr_ok(h)) return MK_ECORRUPT;
    uint64_t span = mk__span_for(size ? size : 1, mk__ops(h)->min_span);
    int rc = MK_ENOMEM;
    if (h->quick_off && align <= MK__GRAIN) {
        *b = mk__quick_pop(h, span, &rc);
        if (*b) rc = MK_OK;
    }
    if (rc == MK_ENOMEM) rc = alloc_or_flush(h, span, align, place, b, MK__OP_ALLOC, size, align);
    if (rc == MK_OK) mk__count_op(h, mk__bspan(h, *b), 0, 1, &h->c.n_alloc);
    if (rc == MK_ECORRUPT) mk__journal_undo(h);
    return rc;
}

int mk_region_alloc(mk_region *r, size_t size, size_t align, mk_off *out) {
    if (!r || !out) return MK_EINVAL;
    mk__hdr *h = mk__h(r);
    int rc = mk__check_align(&align);
    if (rc != MK_OK) return rc;
    /* The header is checked in mk__region_alloc_op; this compares numbers
     * only, and a refusal says which of the two it is. */
    if (size > h->data_end - h->data_start) return mk__hdr_ok(h) ? MK_ETOOBIG : MK_ECORRUPT;
    mk_off b;
    mk__journal_begin(h, MK__OP_ALLOC, size, align, 0);
    rc = mk__region_alloc_op(h, size, align, MK__PLACE_LOW, &b);
    if (rc == MK_OK) *out = b + MK__TAGW;
    if (rc == MK_ENOMEM) bump(h, &h->c.n_failed);
    mk__journal_end(h);
    return rc;
}

int mk__region_free_op(mk__hdr *h, mk_off b) {
    uint64_t span = mk__bspan(h, b);
    if (!h->quick_off || !mk__quick_push(h, b)) {
        int rc = mk__neighbours_ok(h, b);
        if (rc == MK_OK) rc = mk__ops(h)->release(h, b);
        if (rc != MK_OK) {
            mk__journal_undo(h);
            return rc;
        }
    }
    mk__count_op(h, 0, span, -1, &h->c.n_free);
    return MK_OK;
}

int mk_region_free(mk_region *r, mk_off off) {
    if (!r) return MK_EINVAL;
    mk__hdr *h = mk__h(r);
    mk_off b = 0;
    int rc = lookup(h, off, &b);
    if (rc != MK_OK) return rc;
    mk__journal_begin(h, MK__OP_FREE, off, 0, 0);
    rc = mk__region_free_op(h, b);
    mk__journal_end(h);
    return rc;
}

/* A moved block's new payload held free-block metadata (links, footer)
 * that the copy overwrites; log those words so an undo restores them. */
void mk__journal_payload_words(mk__hdr *h, mk_off b) {
    if (!h->journal_off) return;
    uint64_t span = mk__bspan(h, b);
    for (uint64_t k = MK__LINK0; k <= MK__LINK2 && k + 8 <= span; k += 8)
        mk__journal_log(h, mk__word(h, b + k));
    mk__journal_log(h, mk__word(h, b + span - 8));
}

/* Move used block b to a new block of span: its payload is copied but for
 * its last skip_tail bytes, the old block is released. */
static int move_block(mk__hdr *h, mk_off b, uint64_t span, uint64_t skip_tail, unsigned place,
                      mk_off *nb) {
    const mk__policy_ops *ops = mk__ops(h);
    int rc = alloc_or_flush(h, span, MK__GRAIN, place, nb, MK__OP_REALLOC, b + MK__TAGW, span);
    if (rc != MK_OK) return rc;
    mk__journal_payload_words(h, *nb);
    uint64_t old_span = mk__bspan(h, b), new_span = mk__bspan(h, *nb);
    uint64_t keep = (old_span < new_span ? old_span : new_span) - MK__TAGW - skip_tail;
    memcpy(mk__word(h, *nb + MK__TAGW), mk__word(h, b + MK__TAGW), keep);
    if (ops->coalesces && mk__neighbours_ok(h, b) != MK_OK) return MK_ECORRUPT;
    return ops->release(h, b);
}

int mk__region_resize_op(mk__hdr *h, mk_off b, uint64_t span, uint64_t skip_tail, unsigned place,
                         mk_off *nb) {
    uint64_t old_span = mk__bspan(h, b);
    int rc = mk__ops(h)->resize(h, b, span);
    *nb = b;
    if (rc == MK_ENOMEM) rc = move_block(h, b, span, skip_tail, place, nb);
    if (rc == MK_OK)
        mk__count_op(h, mk__bspan(h, *nb), old_span, 0, &h->c.n_realloc);
    else if (rc == MK_ECORRUPT)
        mk__journal_undo(h);
    return rc;
}

int mk_region_realloc(mk_region *r, mk_off off, size_t size, mk_off *out) {
    if (!r || !out) return MK_EINVAL;
    if (off == 0) return mk_region_alloc(r, size, 0, out);
    mk__hdr *h = mk__h(r);
    mk_off b = 0;
    int rc = lookup(h, off, &b);
    if (rc == MK_OK) rc = mk__neighbours_ok(h, b);
    if (rc != MK_OK) return rc;
    if (size > h->data_end - h->data_start) return MK_ETOOBIG;
    uint64_t span = mk__span_for(size ? size : 1, mk__ops(h)->min_span);
    mk__journal_begin(h, MK__OP_REALLOC, off, size, 0);
    mk_off nb = b;
    rc = mk__region_resize_op(h, b, span, 0, MK__PLACE_LOW, &nb);
    if (rc == MK_OK)
        *out = nb + MK__TAGW;
    else if (rc == MK_ENOMEM)
        bump(h, &h->c.n_failed);
    mk__journal_end(h);
    return rc;
}

int mk_region_usable_size(const mk_region *r, mk_off off, size_t *out) {
    if (!r || !out) return MK_EINVAL;
    const mk__hdr *h = mk__hc(r);
    mk_off b = 0;
    int rc = lookup(h, off, &b);
    if (rc != MK_OK) return rc;
    *out = (size_t)(mk__bspan(h, b) - MK__TAGW);
    return MK_OK;
}

int mk_region_grow(mk_region *r, size_t new_size) {
    if (!r) return MK_EINVAL;
    mk__hdr *h = mk__h(r);
    int rc = usable_check(h);
    if (rc != MK_OK) return rc;
    if (new_size < h->size || (uint64_t)new_size > MK_REGION_MAX_SIZE) return MK_EINVAL;
    const mk__policy_ops *ops = mk__ops(h);
    if (!ops->grow) return MK_ENOTSUP;
    mk_off new_end = end_for(new_size);
    /* size is not journaled: after an undone grow the range is still mapped,
     * and a size above data_end is consistent. Keeping it also keeps the
     * undo records of the new sentinel inside bounds if recovery reruns.
     * An atomic store: a layer above may read the size without the lock
     * (mk_shm_ptr, from any thread). */
    __atomic_store_n(&h->size, new_size, __ATOMIC_RELEASE);
    mk__journal_begin(h, MK__OP_GROW, new_size, 0, 0);
    if (new_end >= h->data_end + ops->min_span) rc = ops->grow(h, new_end);
    if (rc == MK_ECORRUPT) mk__journal_undo(h);
    mk__journal_end(h);
    return rc;
}

int mk__region_user_bit(mk_region *r, mk_off off, int set) {
    if (!r) return MK_EINVAL;
    mk__hdr *h = mk__h(r);
    mk_off b = 0;
    int rc = lookup(h, off, &b);
    if (rc != MK_OK) return rc;
    uint64_t w = mk__get(h, b);
    int was = (w & MK__F_USER) != 0;
    if (set >= 0 && was != (set != 0)) {
        mk__journal_begin(h, MK__OP_USER, off, (uint64_t)set, 0);
        mk__set_at(h, b, set ? (w | MK__F_USER) : (w & ~MK__F_USER));
        mk__journal_end(h);
    }
    return was;
}
