/*
 * The pool: pointers, a lock and page protection over one engine region.
 *
 * Memory layout (caller buffer or owned mapping, 16-aligned):
 *
 *   mem                   struct mk_pool (this file's control block)
 *   mem + ptab_off        protection table: 4 bits per page of the range
 *   mem + region_off      the engine's region (64-aligned), up to mem + size
 *
 * Protection table. Entry i describes the page that starts at
 * ptab_base + i * page. It is 0 unless a live page block's payload starts
 * on that page; then it holds PT_PAGE_BLOCK | the block's MK_PROT_* bits.
 * Invariants (checked by mk_pool_validate):
 *   - a non-zero entry belongs to a live block whose payload is that page;
 *   - the block's engine user bit is set iff its entry's bits != MK_PROT_RW.
 * The table sits outside the blocks, so a write past a block's end cannot
 * forge a protection state (the user bit in the header word could be).
 *
 * Why protect covers floor(usable / page) pages: a page block's payload is
 * page-aligned, its header word is in the page before, and the next block's
 * header word is at payload + usable, so every page that lies wholly inside
 * [payload, payload + usable) holds nothing but this block's payload.
 */
#include "memkit/pool.h"

#include <stdint.h>
#include <string.h>

#include "os/os.h"
#include "region/region_int.h"

#define MK__POOL_MAGIC UINT64_C(0x4C4F4F50544B4D31) /* "1MKTPOOL" */
#define PT_PAGE_BLOCK  8u
#define PT_PROT_MASK   7u
#define REGION_SLACK   48u /* aligning a 16-aligned address up to 64 */

_Static_assert((int)MK_PROT_NONE == (int)MK__PROT_NONE && (int)MK_PROT_READ == (int)MK__PROT_READ &&
                   (int)MK_PROT_WRITE == (int)MK__PROT_WRITE &&
                   (int)MK_PROT_EXEC == (int)MK__PROT_EXEC,
               "public protection bits equal the platform layer's");

struct mk_pool {
    uint64_t magic;
    unsigned flags;    /* MK_POOL_* */
    bool owned;        /* mem came from mk__os_alloc */
    void *mem;         /* start of everything (== this) */
    size_t size;       /* bytes at mem */
    size_t page;       /* mk__os_page_size() */
    mk_region *region; /* at mem + region_off */
    size_t region_off;
    unsigned char *ptab; /* protection table, two entries per byte */
    size_t ptab_entries; /* pages covered */
    uintptr_t ptab_base; /* page-aligned address of entry 0 */
    mk__os_mutex lock;   /* used with MK_POOL_THREADSAFE */
};

/* ---- layout ---------------------------------------------------------------- */

static size_t round16(size_t n) { return (n + 15u) & ~(size_t)15u; }

static size_t ctrl_bytes(void) { return round16(sizeof(struct mk_pool)); }

/* Pages a table must cover for a range of size bytes starting anywhere. */
static size_t ptab_entries_for(size_t size, size_t page) { return size / page + 2u; }

static size_t ptab_bytes_for(size_t size, size_t page) {
    return round16((ptab_entries_for(size, page) + 1u) / 2u);
}

static unsigned region_flags(unsigned pool_flags) {
    return (pool_flags & MK_POOL_QUICK) ? MK_REGION_QUICK : 0;
}

size_t mk_pool_min_size(mk_policy policy, unsigned flags) {
    if (flags & ~(unsigned)(MK_POOL_THREADSAFE | MK_POOL_QUICK)) return 0;
    size_t rmin = mk_region_min_size(policy, region_flags(flags));
    if (rmin == 0) return 0;
    size_t page = mk__os_page_size();
    /* The table grows with the total; iterate to the fixed point. */
    size_t s = ctrl_bytes() + REGION_SLACK + rmin, prev = 0;
    while (s != prev) {
        prev = s;
        s = ctrl_bytes() + ptab_bytes_for(prev, page) + REGION_SLACK + rmin;
    }
    return s;
}

/* ---- locking and checks ------------------------------------------------------ */

static bool pool_ok(const mk_pool *pool) { return pool && pool->magic == MK__POOL_MAGIC; }

static int pool_lock(mk_pool *pool) {
    if (!(pool->flags & MK_POOL_THREADSAFE)) return MK_OK;
    int rc = mk__os_mutex_lock(&pool->lock);
    /* The mutex is process-private: an owner can only "die" with the whole
     * process, so EOWNERDEAD cannot happen; treat any failure as fatal. */
    return rc;
}

static void pool_unlock(mk_pool *pool) {
    if (pool->flags & MK_POOL_THREADSAFE) (void)mk__os_mutex_unlock(&pool->lock);
}

static void set_err(int *err, int rc) {
    if (err) *err = rc;
}

/* The offset of p inside the region, or 0 when p lies outside it. */
static mk_off pool_off(const mk_pool *pool, const void *p) {
    uintptr_t a = (uintptr_t)p, lo = (uintptr_t)pool->region;
    if (a <= lo || a >= lo + (pool->size - pool->region_off)) return 0;
    return (mk_off)(a - lo);
}

/* Table entry of the page starting at page-aligned address a. */
static unsigned pt_get(const mk_pool *pool, uintptr_t a) {
    size_t i = (a - pool->ptab_base) / pool->page;
    unsigned char b = pool->ptab[i / 2u];
    return (i & 1u) ? (unsigned)(b >> 4) : (unsigned)(b & 15u);
}

static void pt_set(mk_pool *pool, uintptr_t a, unsigned v) {
    size_t i = (a - pool->ptab_base) / pool->page;
    unsigned char *b = &pool->ptab[i / 2u];
    *b = (i & 1u) ? (unsigned char)((*b & 0x0Fu) | (v << 4))
                  : (unsigned char)((*b & 0xF0u) | (v & 15u));
}

/* The table entry of block p (0 for a block that is not a page block). */
static unsigned pt_of(const mk_pool *pool, const void *p) {
    uintptr_t a = (uintptr_t)p;
    return (a % pool->page) ? 0u : pt_get(pool, a);
}

/* Bytes mk__os_protect covers for a page block of usable bytes. */
static size_t prot_len(const mk_pool *pool, size_t usable) {
    return usable / pool->page * pool->page;
}

/* Check that p is a live block of this pool; *off and *usable on success. */
static int live_block(mk_pool *pool, const void *p, mk_off *off, size_t *usable) {
    mk_off o = pool_off(pool, p);
    if (!o) return MK_EBADOFF;
    size_t u;
    int rc = mk_region_usable_size(pool->region, o, &u);
    if (rc != MK_OK) return rc;
    *off = o;
    if (usable) *usable = u;
    return MK_OK;
}

/* ---- create / destroy ----------------------------------------------------------- */

int mk_pool_create(const mk_pool_config *cfg, mk_pool **out) {
    if (!cfg || !out) return MK_EINVAL;
    size_t min = mk_pool_min_size(cfg->policy, cfg->flags);
    if (min == 0 || cfg->size < min) return MK_EINVAL;
    if (cfg->buffer && ((uintptr_t)cfg->buffer & 15u)) return MK_EINVAL;

    size_t page = mk__os_page_size();
    void *mem = cfg->buffer;
    if (!mem) {
        int rc = mk__os_alloc(cfg->size, &mem);
        if (rc != MK_OK) return rc;
    }

    mk_pool *pool = mem;
    memset(pool, 0, sizeof *pool);
    pool->flags = cfg->flags;
    pool->owned = cfg->buffer == NULL;
    pool->mem = mem;
    pool->size = cfg->size;
    pool->page = page;
    size_t ptab_off = ctrl_bytes();
    size_t ptab_bytes = ptab_bytes_for(cfg->size, page);
    pool->ptab = (unsigned char *)mem + ptab_off;
    pool->ptab_entries = ptab_entries_for(cfg->size, page);
    pool->ptab_base = (uintptr_t)mem / page * page;
    /* The region starts on a cache-line boundary (its header's hot
     * counters then share no line with the pool's own fields): up to
     * REGION_SLACK bytes lost. */
    uintptr_t rstart = ((uintptr_t)mem + ptab_off + ptab_bytes + 63u) & ~(uintptr_t)63u;
    pool->region_off = (size_t)(rstart - (uintptr_t)mem);
    memset(pool->ptab, 0, ptab_bytes);

    int rc = mk_region_create((char *)mem + pool->region_off, cfg->size - pool->region_off,
                              cfg->policy, region_flags(cfg->flags), &pool->region);
    if (rc == MK_OK && (cfg->flags & MK_POOL_THREADSAFE))
        rc = mk__os_mutex_init(&pool->lock, false, NULL);
    if (rc != MK_OK) {
        if (pool->owned) (void)mk__os_release(mem, cfg->size);
        return rc;
    }
    pool->magic = MK__POOL_MAGIC;
    *out = pool;
    return MK_OK;
}

/* Walk visitor for destroy: make protected live blocks read-write again. */
static int unprotect_visit(const mk_block_info *b, void *arg) {
    mk_pool *pool = arg;
    if (!b->used) return 0;
    void *p = mk_region_ptr(pool->region, b->offset);
    unsigned e = pt_of(pool, p);
    if (e && (e & PT_PROT_MASK) != MK_PROT_RW) {
        if (mk__os_protect(p, prot_len(pool, b->size), MK__PROT_READ | MK__PROT_WRITE) != MK_OK)
            return MK_EOS;
    }
    return 0;
}

int mk_pool_destroy(mk_pool *pool) {
    if (!pool_ok(pool)) return MK_EINVAL;
    int rc = MK_OK;
    if (!pool->owned) rc = mk_region_walk(pool->region, unprotect_visit, pool);
    if (rc > 0) rc = MK_OK;
    if (pool->flags & MK_POOL_THREADSAFE) mk__os_mutex_destroy(&pool->lock);
    pool->magic = 0;
    if (pool->owned) {
        int r2 = mk__os_release(pool->mem, pool->size);
        if (rc == MK_OK) rc = r2;
    }
    return rc;
}

/* ---- allocation -------------------------------------------------------------------- */

/* Allocate under the caller's lock. */
static void *alloc_locked(mk_pool *pool, size_t size, size_t align, int *rc) {
    mk_off off;
    *rc = mk_region_alloc(pool->region, size, align, &off);
    return *rc == MK_OK ? mk_region_ptr(pool->region, off) : NULL;
}

static void *alloc_common(mk_pool *pool, size_t size, size_t align, int *err) {
    if (!pool_ok(pool)) {
        set_err(err, MK_EINVAL);
        return NULL;
    }
    int rc = pool_lock(pool);
    void *p = NULL;
    if (rc == MK_OK) {
        p = alloc_locked(pool, size, align, &rc);
        pool_unlock(pool);
    }
    set_err(err, rc);
    return p;
}

void *mk_pool_malloc(mk_pool *pool, size_t size, int *err) {
    return alloc_common(pool, size, 0, err);
}

void *mk_pool_aligned_alloc(mk_pool *pool, size_t align, size_t size, int *err) {
    return alloc_common(pool, size, align, err);
}

void *mk_pool_calloc(mk_pool *pool, size_t n, size_t size, int *err) {
    if (!pool_ok(pool)) {
        set_err(err, MK_EINVAL);
        return NULL;
    }
    if (size && n > SIZE_MAX / size) {
        set_err(err, MK_ETOOBIG);
        return NULL;
    }
    void *p = alloc_common(pool, n * size, 0, err);
    /* The block is private to the caller now: clear it outside the lock. */
    if (p) memset(p, 0, n * size);
    return p;
}

void *mk_pool_alloc_pages(mk_pool *pool, size_t size, int *err) {
    if (!pool_ok(pool)) {
        set_err(err, MK_EINVAL);
        return NULL;
    }
    if (pool->page > MK_REGION_MAX_ALIGN) {
        set_err(err, MK_ENOTSUP);
        return NULL;
    }
    if (size == 0) size = 1;
    if (size > SIZE_MAX - pool->page) {
        set_err(err, MK_ETOOBIG);
        return NULL;
    }
    size = (size + pool->page - 1) / pool->page * pool->page;
    int rc = pool_lock(pool);
    void *p = NULL;
    if (rc == MK_OK) {
        p = alloc_locked(pool, size, pool->page, &rc);
        if (p) pt_set(pool, (uintptr_t)p, PT_PAGE_BLOCK | MK_PROT_RW);
        pool_unlock(pool);
    }
    set_err(err, rc);
    return p;
}

int mk_pool_free(mk_pool *pool, void *p) {
    if (!pool_ok(pool)) return MK_EINVAL;
    if (!p) return MK_OK;
    int rc = pool_lock(pool);
    if (rc != MK_OK) return rc;
    mk_off off;
    size_t usable;
    rc = live_block(pool, p, &off, &usable);
    if (rc == MK_OK) {
        unsigned e = pt_of(pool, p);
        if (e && (e & PT_PROT_MASK) != MK_PROT_RW) {
            /* The engine writes into a freed block (links, footer). */
            rc = mk__os_protect(p, prot_len(pool, usable), MK__PROT_READ | MK__PROT_WRITE);
            if (rc == MK_OK) {
                pt_set(pool, (uintptr_t)p, PT_PAGE_BLOCK | MK_PROT_RW);
                (void)mk__region_user_bit(pool->region, off, 0);
            }
        }
        if (rc == MK_OK) rc = mk_region_free(pool->region, off);
        if (rc == MK_OK && e) pt_set(pool, (uintptr_t)p, 0);
    }
    pool_unlock(pool);
    return rc;
}

void *mk_pool_realloc(mk_pool *pool, void *p, size_t size, int *err) {
    if (!pool_ok(pool)) {
        set_err(err, MK_EINVAL);
        return NULL;
    }
    if (!p) return alloc_common(pool, size, 0, err);
    int rc = pool_lock(pool);
    void *q = NULL;
    if (rc == MK_OK) {
        mk_off off, noff;
        rc = live_block(pool, p, &off, NULL);
        unsigned e = rc == MK_OK ? pt_of(pool, p) : 0u;
        if (rc == MK_OK && e && (e & PT_PROT_MASK) != MK_PROT_RW) rc = MK_EPROTECTED;
        if (rc == MK_OK) rc = mk_region_realloc(pool->region, off, size, &noff);
        if (rc == MK_OK) {
            /* Whether moved or resized in place, it is an ordinary block now. */
            if (e) pt_set(pool, (uintptr_t)p, 0);
            q = mk_region_ptr(pool->region, noff);
        }
        pool_unlock(pool);
    }
    set_err(err, rc);
    return q;
}

int mk_pool_usable_size(mk_pool *pool, const void *p, size_t *out) {
    if (!pool_ok(pool) || !p || !out) return MK_EINVAL;
    int rc = pool_lock(pool);
    if (rc != MK_OK) return rc;
    mk_off off;
    rc = live_block(pool, p, &off, out);
    pool_unlock(pool);
    return rc;
}

/* ---- protection ------------------------------------------------------------------ */

int mk_pool_protect(mk_pool *pool, void *p, unsigned prot) {
    if (!pool_ok(pool) || !p || (prot & ~(unsigned)PT_PROT_MASK)) return MK_EINVAL;
    int rc = pool_lock(pool);
    if (rc != MK_OK) return rc;
    mk_off off;
    size_t usable;
    rc = live_block(pool, p, &off, &usable);
    if (rc == MK_OK && !pt_of(pool, p)) rc = MK_EINVAL;
    if (rc == MK_OK) rc = mk__os_protect(p, prot_len(pool, usable), prot);
    if (rc == MK_OK) {
        pt_set(pool, (uintptr_t)p, PT_PAGE_BLOCK | prot);
        int ub = mk__region_user_bit(pool->region, off, prot != MK_PROT_RW);
        if (ub < 0) rc = ub; /* cannot happen: the block was checked above */
    }
    pool_unlock(pool);
    return rc;
}

int mk_pool_is_protected(mk_pool *pool, const void *p, unsigned *prot) {
    if (!pool_ok(pool) || !p) return MK_EINVAL;
    int rc = pool_lock(pool);
    if (rc != MK_OK) return rc;
    mk_off off;
    rc = live_block(pool, p, &off, NULL);
    if (rc == MK_OK) {
        unsigned e = pt_of(pool, p);
        unsigned cur = e ? (e & PT_PROT_MASK) : (unsigned)MK_PROT_RW;
        int bit = mk__region_user_bit(pool->region, off, -1);
        if (bit < 0) {
            rc = bit;
        } else if (bit != (cur != MK_PROT_RW)) {
            rc = MK_ECORRUPT; /* header word and table disagree */
        } else {
            if (prot) *prot = cur;
            rc = bit;
        }
    }
    pool_unlock(pool);
    return rc;
}

/* ---- statistics and validation ------------------------------------------------------ */

int mk_pool_stats(mk_pool *pool, mk_stats *out) {
    if (!pool_ok(pool) || !out) return MK_EINVAL;
    int rc = pool_lock(pool);
    if (rc != MK_OK) return rc;
    rc = mk_region_stats(pool->region, out);
    pool_unlock(pool);
    if (rc == MK_OK) out->overhead += pool->region_off;
    return rc;
}

int mk_pool_stats_reset(mk_pool *pool) {
    if (!pool_ok(pool)) return MK_EINVAL;
    int rc = pool_lock(pool);
    if (rc != MK_OK) return rc;
    mk_region_stats_reset(pool->region);
    pool_unlock(pool);
    return MK_OK;
}

int mk_pool_stats_print(mk_pool *pool, FILE *f) {
    if (!pool_ok(pool) || !f) return MK_EINVAL;
    mk_stats s;
    int rc = mk_pool_stats(pool, &s);
    return rc == MK_OK ? mk_stats_print(&s, f) : rc;
}

int mk_pool_stats_json(mk_pool *pool, FILE *f) {
    if (!pool_ok(pool) || !f) return MK_EINVAL;
    mk_stats s;
    int rc = mk_pool_stats(pool, &s);
    return rc == MK_OK ? mk_stats_json(&s, f) : rc;
}

typedef struct validate_ctx {
    mk_pool *pool;
    mk_fault *fault;
    uint64_t page_blocks; /* live blocks with a table entry */
} validate_ctx;

static int vfail(validate_ctx *v, const char *invariant, mk_off off) {
    v->fault->code = MK_ECORRUPT;
    v->fault->invariant = invariant;
    v->fault->offset = off;
    return MK_ECORRUPT;
}

static int validate_visit(const mk_block_info *b, void *arg) {
    validate_ctx *v = arg;
    mk_pool *pool = v->pool;
    void *p = mk_region_ptr(pool->region, b->offset);
    unsigned e = pt_of(pool, p);
    if (!b->used) {
        if (e) return vfail(v, "pool: protection entry on a free block", b->offset);
        return 0;
    }
    if (e) {
        v->page_blocks++;
        if (!(e & PT_PAGE_BLOCK)) return vfail(v, "pool: bad protection entry", b->offset);
        if (b->size < pool->page) return vfail(v, "pool: page block below a page", b->offset);
    }
    unsigned cur = e ? (e & PT_PROT_MASK) : (unsigned)MK_PROT_RW;
    int bit = mk__region_user_bit(pool->region, b->offset, -1);
    if (bit < 0) return vfail(v, "pool: walked block rejected by the engine", b->offset);
    if (bit != (cur != MK_PROT_RW))
        return vfail(v, "pool: protected bit disagrees with the protection table", b->offset);
    return 0;
}

int mk_pool_validate(mk_pool *pool, mk_fault *fault) {
    if (!pool_ok(pool)) return MK_EINVAL;
    mk_fault local;
    if (!fault) fault = &local;
    *fault = (mk_fault){MK_OK, NULL, 0};
    int rc = pool_lock(pool);
    if (rc != MK_OK) return rc;
    rc = mk_region_validate(pool->region, fault);
    if (rc == MK_OK) {
        validate_ctx v = {pool, fault, 0};
        rc = mk_region_walk(pool->region, validate_visit, &v);
        if (rc > 0) rc = MK_ECORRUPT;
        if (rc == MK_OK) {
            /* Every table entry must belong to a walked page block. */
            uint64_t entries = 0;
            for (size_t i = 0; i < pool->ptab_entries; i++) {
                unsigned char byte = pool->ptab[i / 2u];
                if ((i & 1u) ? (byte >> 4) : (byte & 15u)) entries++;
            }
            if (entries != v.page_blocks)
                rc = vfail(&v, "pool: protection entries without a live page block", 0);
        }
    }
    pool_unlock(pool);
    return rc;
}

mk_policy mk_pool_policy(const mk_pool *pool) {
    return pool_ok(pool) ? mk_region_policy(pool->region) : MK_POLICY_COUNT;
}
