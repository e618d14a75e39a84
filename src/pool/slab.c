/*
 * The slab cache.
 *
 * Memory: one reservation of max_slabs * slab_size bytes (page-aligned),
 * of which the first nslabs slabs are committed; object i of slab s is at
 * base + s * slab_size + i * stride. A separate mapping holds struct
 * mk_slab and, after it, one bitmap per slab (bit set = object in use).
 *
 * Invariants (mk_slab_validate checks them):
 *   - Every slab but the newest is fully carved; in the newest, objects
 *     [bump, per_slab) have never been handed out and are on no list.
 *   - The free list holds exactly the carved objects whose bit is clear;
 *     n_listed counts them. in_use equals the number of set bits.
 *   - A free object's first word is next ^ secret ^ its own address
 *     (0 encodes the end), so a stray write to a freed object yields a
 *     link that fails the checks in take_free() instead of a wild pointer.
 */
#include "memkit/slab.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "bits.h"
#include "os/os.h"

#define MK__SLAB_MAGIC UINT64_C(0x42414C53544B4D31) /* "1MKTSLAB" */

struct mk_slab {
    uint64_t magic;
    unsigned flags;
    uintptr_t secret;
    size_t obj_size, stride, per_slab, slab_size, max_slabs;
    char *base;           /* the reservation */
    size_t reserve_bytes; /* max_slabs * slab_size */
    size_t ctrl_bytes;    /* this mapping */
    size_t nslabs;        /* committed */
    size_t bump;          /* next never-used object of the newest slab */
    uintptr_t head;       /* first free object, 0 when none */
    size_t words;         /* bitmap words per slab */
    uint64_t *bits;       /* max_slabs * words */
    uint64_t n_listed, in_use, peak, n_alloc, n_free, n_failed;
    mk__os_mutex lock;
};

static bool slab_ok(const mk_slab *c) { return c && c->magic == MK__SLAB_MAGIC; }

static int slab_lock(mk_slab *c) {
    return (c->flags & MK_SLAB_THREADSAFE) ? mk__os_mutex_lock(&c->lock) : MK_OK;
}

static void slab_unlock(mk_slab *c) {
    if (c->flags & MK_SLAB_THREADSAFE) (void)mk__os_mutex_unlock(&c->lock);
}

static size_t round_up(size_t n, size_t a) { return (n + a - 1u) / a * a; }

/* Locate object p: its slab and index. False unless p is the exact start
 * of a carved object of a committed slab. */
static bool locate(const mk_slab *c, uintptr_t p, size_t *slab, size_t *idx) {
    uintptr_t lo = (uintptr_t)c->base;
    if (p < lo || p - lo >= c->nslabs * c->slab_size) return false;
    size_t a = (size_t)(p - lo);
    size_t s = a / c->slab_size, r = a % c->slab_size;
    if (r % c->stride) return false;
    size_t i = r / c->stride;
    if (i >= c->per_slab) return false;
    if (s == c->nslabs - 1u && i >= c->bump) return false; /* never handed out */
    *slab = s;
    *idx = i;
    return true;
}

static uint64_t *bitword(const mk_slab *c, size_t slab, size_t idx) {
    return &c->bits[slab * c->words + idx / 64u];
}
static bool bit_get(const mk_slab *c, size_t s, size_t i) {
    return (*bitword(c, s, i) >> (i % 64u)) & 1u;
}
static void bit_put(mk_slab *c, size_t s, size_t i, bool v) {
    uint64_t m = UINT64_C(1) << (i % 64u);
    if (v)
        *bitword(c, s, i) |= m;
    else
        *bitword(c, s, i) &= ~m;
}

static uintptr_t link_get(const mk_slab *c, uintptr_t obj) {
    uintptr_t w;
    memcpy(&w, (const void *)obj, sizeof w);
    return w ^ c->secret ^ obj;
}
static void link_put(const mk_slab *c, uintptr_t obj, uintptr_t next) {
    uintptr_t w = next ^ c->secret ^ obj;
    memcpy((void *)obj, &w, sizeof w);
}

/* A link read from a free object is trusted only if it names a carved,
 * free object (or is the end). */
static bool link_ok(const mk_slab *c, uintptr_t next) {
    size_t s, i;
    return next == 0 || (locate(c, next, &s, &i) && !bit_get(c, s, i));
}

int mk_slab_create(const mk_slab_config *cfg, mk_slab **out) {
    if (!cfg || !out || cfg->obj_size == 0 || (cfg->flags & ~(unsigned)MK_SLAB_THREADSAFE))
        return MK_EINVAL;
    size_t page = mk__os_page_size();
    size_t align = cfg->obj_align ? cfg->obj_align : 16u;
    if ((align & (align - 1u)) || align > page) return MK_EALIGN;
    size_t osize = cfg->obj_size < sizeof(uintptr_t) ? sizeof(uintptr_t) : cfg->obj_size;
    if (osize > SIZE_MAX / 2u - page) return MK_ETOOBIG;
    size_t stride = round_up(osize, align);
    size_t slab_size = cfg->slab_size ? cfg->slab_size : MK_SLAB_DEFAULT_SLAB_SIZE;
    if (slab_size > SIZE_MAX / 2u) return MK_ETOOBIG;
    if (slab_size < stride) slab_size = stride;
    slab_size = round_up(slab_size, page);
    size_t max_slabs = cfg->max_slabs ? cfg->max_slabs : MK_SLAB_DEFAULT_MAX_SLABS;
    if (max_slabs > SIZE_MAX / slab_size) return MK_ETOOBIG;
    size_t per_slab = slab_size / stride;
    size_t words = (per_slab + 63u) / 64u;
    if (max_slabs > (SIZE_MAX / 2u) / (words * sizeof(uint64_t))) return MK_ETOOBIG;
    size_t head_bytes = round_up(sizeof(struct mk_slab), 64u);
    size_t ctrl = round_up(head_bytes + max_slabs * words * sizeof(uint64_t), page);

    void *cmem, *base;
    int rc = mk__os_alloc(ctrl, &cmem);
    if (rc != MK_OK) return rc;
    rc = mk__os_reserve(max_slabs * slab_size, &base);
    if (rc != MK_OK) {
        (void)mk__os_release(cmem, ctrl);
        return rc;
    }
    mk_slab *c = cmem; /* fresh mapping: zero-filled, bitmaps clear */
    c->flags = cfg->flags;
    mk__os_random(&c->secret, sizeof c->secret);
    c->obj_size = cfg->obj_size;
    c->stride = stride;
    c->per_slab = per_slab;
    c->slab_size = slab_size;
    c->max_slabs = max_slabs;
    c->base = base;
    c->reserve_bytes = max_slabs * slab_size;
    c->ctrl_bytes = ctrl;
    c->words = words;
    c->bits = (uint64_t *)(void *)((char *)cmem + head_bytes);
    if (cfg->flags & MK_SLAB_THREADSAFE) {
        rc = mk__os_mutex_init(&c->lock, false, NULL);
        if (rc != MK_OK) {
            (void)mk__os_release(base, c->reserve_bytes);
            (void)mk__os_release(cmem, ctrl);
            return rc;
        }
    }
    c->magic = MK__SLAB_MAGIC;
    *out = c;
    return MK_OK;
}

int mk_slab_destroy(mk_slab *c) {
    if (!slab_ok(c)) return MK_EINVAL;
    if (c->flags & MK_SLAB_THREADSAFE) mk__os_mutex_destroy(&c->lock);
    c->magic = 0;
    int rc = mk__os_release(c->base, c->reserve_bytes);
    int r2 = mk__os_release(c, c->ctrl_bytes);
    return rc != MK_OK ? rc : r2;
}

/* Under the lock: one object or an error code. */
static int take(mk_slab *c, uintptr_t *out) {
    size_t s, i;
    if (c->head) {
        uintptr_t obj = c->head, next = link_get(c, obj);
        /* head itself was checked when it was linked (free or take). */
        if (!locate(c, obj, &s, &i) || !link_ok(c, next) || next == obj) return MK_ECORRUPT;
        c->head = next;
        c->n_listed--;
        bit_put(c, s, i, true);
        *out = obj;
        return MK_OK;
    }
    if (c->nslabs == 0 || c->bump == c->per_slab) {
        if (c->nslabs == c->max_slabs) return MK_ENOMEM;
        int rc = mk__os_commit(c->base + c->nslabs * c->slab_size, c->slab_size);
        if (rc != MK_OK) return rc;
        c->nslabs++;
        c->bump = 0;
    }
    s = c->nslabs - 1u;
    i = c->bump++;
    bit_put(c, s, i, true);
    *out = (uintptr_t)c->base + s * c->slab_size + i * c->stride;
    return MK_OK;
}

void *mk_slab_alloc(mk_slab *c, int *err) {
    int rc = MK_EINVAL;
    uintptr_t obj = 0;
    if (slab_ok(c) && (rc = slab_lock(c)) == MK_OK) {
        rc = take(c, &obj);
        if (rc == MK_OK) {
            c->n_alloc++;
            if (++c->in_use > c->peak) c->peak = c->in_use;
        } else if (rc == MK_ENOMEM) {
            c->n_failed++;
        }
        slab_unlock(c);
    }
    if (err) *err = rc;
    return rc == MK_OK ? (void *)obj : NULL;
}

int mk_slab_free(mk_slab *c, void *p) {
    if (!slab_ok(c)) return MK_EINVAL;
    if (!p) return MK_OK;
    int rc = slab_lock(c);
    if (rc != MK_OK) return rc;
    size_t s, i;
    uintptr_t obj = (uintptr_t)p;
    if (!locate(c, obj, &s, &i)) {
        rc = MK_EBADOFF;
    } else if (!bit_get(c, s, i)) {
        rc = MK_EDOUBLEFREE;
    } else {
        bit_put(c, s, i, false);
        link_put(c, obj, c->head);
        c->head = obj;
        c->n_listed++;
        c->in_use--;
        c->n_free++;
    }
    slab_unlock(c);
    return rc;
}

int mk_slab_owns(mk_slab *c, const void *p) {
    if (!slab_ok(c)) return MK_EINVAL;
    int rc = slab_lock(c);
    if (rc != MK_OK) return rc;
    size_t s, i;
    rc = locate(c, (uintptr_t)p, &s, &i) && bit_get(c, s, i);
    slab_unlock(c);
    return rc;
}

int mk_slab_stats(mk_slab *c, mk_slab_usage *out) {
    if (!slab_ok(c) || !out) return MK_EINVAL;
    int rc = slab_lock(c);
    if (rc != MK_OK) return rc;
    *out = (mk_slab_usage){
        .obj_size = c->obj_size,
        .stride = c->stride,
        .objs_per_slab = c->per_slab,
        .slab_size = c->slab_size,
        .slabs = c->nslabs,
        .max_slabs = c->max_slabs,
        .in_use = c->in_use,
        .free = (uint64_t)c->nslabs * c->per_slab - c->in_use,
        .peak_in_use = c->peak,
        .n_alloc = c->n_alloc,
        .n_free = c->n_free,
        .n_failed = c->n_failed,
    };
    slab_unlock(c);
    return MK_OK;
}

int mk_slab_stats_reset(mk_slab *c) {
    if (!slab_ok(c)) return MK_EINVAL;
    int rc = slab_lock(c);
    if (rc != MK_OK) return rc;
    c->peak = c->in_use;
    c->n_alloc = c->n_free = c->n_failed = 0;
    slab_unlock(c);
    return MK_OK;
}

int mk_slab_stats_print(mk_slab *c, FILE *f) {
    if (!f) return MK_EINVAL;
    mk_slab_usage st;
    int rc = mk_slab_stats(c, &st);
    if (rc != MK_OK) return rc;
    int n = fprintf(f,
                    "slab object size   %llu (stride %llu)\n"
                    "slab objects/slab  %llu\n"
                    "slab slabs         %llu of %llu (%llu bytes each)\n"
                    "slab in use        %llu\n"
                    "slab free          %llu\n"
                    "slab peak in use   %llu\n"
                    "slab allocs        %llu\n"
                    "slab frees         %llu\n"
                    "slab failed        %llu\n",
                    (unsigned long long)st.obj_size, (unsigned long long)st.stride,
                    (unsigned long long)st.objs_per_slab, (unsigned long long)st.slabs,
                    (unsigned long long)st.max_slabs, (unsigned long long)st.slab_size,
                    (unsigned long long)st.in_use, (unsigned long long)st.free,
                    (unsigned long long)st.peak_in_use, (unsigned long long)st.n_alloc,
                    (unsigned long long)st.n_free, (unsigned long long)st.n_failed);
    return n < 0 ? mk__os_fail(errno) : MK_OK;
}

int mk_slab_validate(mk_slab *c) {
    if (!slab_ok(c)) return MK_EINVAL;
    int rc = slab_lock(c);
    if (rc != MK_OK) return rc;
    uint64_t carved = c->nslabs ? (uint64_t)(c->nslabs - 1u) * c->per_slab + c->bump : 0;
    uint64_t set = 0, listed = 0;
    for (size_t s = 0; s < c->nslabs; s++) {
        for (size_t w = 0; w < c->words; w++)
            set += (uint64_t)mk__popcount64(c->bits[s * c->words + w]);
    }
    /* Walk the list, bounded so a cycle cannot loop forever. */
    for (uintptr_t o = c->head; o; o = link_get(c, o)) {
        size_t s, i;
        if (++listed > carved || !locate(c, o, &s, &i) || bit_get(c, s, i)) {
            rc = MK_ECORRUPT;
            break;
        }
    }
    if (rc == MK_OK && (set != c->in_use || listed != c->n_listed || set + listed != carved))
        rc = MK_ECORRUPT;
    slab_unlock(c);
    return rc;
}
