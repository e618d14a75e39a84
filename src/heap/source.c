/*
 * Where the heap's memory comes from: chunks (segments and large blocks),
 * every one aligned to 4 MiB.
 *
 * mmap (default): each chunk is its own mapping; freeing unmaps it.
 *
 * sbrk (MEMKIT_OPTIONS=source=sbrk): chunks are carved from the program
 * break in multiples of 4 MiB. A freed chunk is purged (its pages go back
 * to the OS, the address range stays) and kept in a sorted, coalesced
 * table of free ranges for the next chunk; a free range at the top of the
 * break lowers the break. When the break cannot grow (another mapping is in
 * the way), chunks come from mmap instead, as glibc does; such a chunk is
 * recognised by its address and unmapped on free.
 */
#include "heap/heap_int.h"

#include "os/os.h"

#define MAX_RANGES 256

typedef struct range {
    uintptr_t start;
    size_t len;
} range;

static struct {
    mk__spin lock;
    uintptr_t lo, hi; /* the part of the break we own */
    unsigned n;
    range r[MAX_RANGES];
} brk_state;

static size_t seg_up(size_t n) { return (n + MK__SEG_SIZE - 1) & ~(MK__SEG_SIZE - 1); }

static bool in_brk(const void *p) {
    uintptr_t a = (uintptr_t)p;
    return a >= brk_state.lo && a < brk_state.hi;
}

static void *mmap_chunk(size_t size) {
    void *p = NULL;
    mk__count_os();
    if (mk__os_alloc_aligned(size, MK__SEG_SIZE, &p) != MK_OK) return NULL;
    return p;
}

/* First fit in the free ranges, else grow the break. Lock held. */
static void *brk_take(size_t len) {
    for (unsigned i = 0; i < brk_state.n; i++) {
        range *r = &brk_state.r[i];
        if (r->len < len) continue;
        uintptr_t p = r->start;
        r->start += len;
        r->len -= len;
        if (r->len == 0) {
            for (unsigned j = i + 1; j < brk_state.n; j++) brk_state.r[j - 1] = brk_state.r[j];
            brk_state.n--;
        }
        return (void *)p;
    }
    void *cur = NULL, *old = NULL;
    mk__count_os();
    if (mk__os_sbrk(0, &cur) != MK_OK) return NULL;
    uintptr_t start = ((uintptr_t)cur + MK__SEG_SIZE - 1) & ~(uintptr_t)(MK__SEG_SIZE - 1);
    size_t pad = start - (uintptr_t)cur;
    if (len > (size_t)INTPTR_MAX - pad) return NULL;
    mk__count_os();
    if (mk__os_sbrk((intptr_t)(pad + len), &old) != MK_OK) return NULL;
    if (old != cur) return NULL; /* someone else moved the break: leave it to them */
    if (brk_state.lo == 0 || brk_state.hi != (uintptr_t)cur) brk_state.lo = start;
    brk_state.hi = start + len;
    return (void *)start;
}

static void brk_give(uintptr_t p, size_t len) {
    unsigned i = 0;
    while (i < brk_state.n && brk_state.r[i].start < p) i++;
    bool merged = false;
    if (i > 0 && brk_state.r[i - 1].start + brk_state.r[i - 1].len == p) {
        brk_state.r[i - 1].len += len;
        merged = true;
        i--;
    } else if (i < brk_state.n && p + len == brk_state.r[i].start) {
        brk_state.r[i].start = p;
        brk_state.r[i].len += len;
        merged = true;
    }
    if (!merged) {
        if (brk_state.n == MAX_RANGES) return; /* table full: the range stays purged, unused */
        for (unsigned j = brk_state.n; j > i; j--) brk_state.r[j] = brk_state.r[j - 1];
        brk_state.r[i] = (range){p, len};
        brk_state.n++;
    }
    /* join with the next range too */
    if (i + 1 < brk_state.n &&
        brk_state.r[i].start + brk_state.r[i].len == brk_state.r[i + 1].start) {
        brk_state.r[i].len += brk_state.r[i + 1].len;
        for (unsigned j = i + 2; j < brk_state.n; j++) brk_state.r[j - 1] = brk_state.r[j];
        brk_state.n--;
    }
    /* the top range goes back by lowering the break */
    range *top = &brk_state.r[brk_state.n - 1];
    void *cur = NULL, *old = NULL;
    if (top->start + top->len == brk_state.hi && mk__os_sbrk(0, &cur) == MK_OK &&
        (uintptr_t)cur == brk_state.hi && top->len <= (size_t)INTPTR_MAX) {
        mk__count_os();
        if (mk__os_sbrk(-(intptr_t)top->len, &old) == MK_OK) {
            brk_state.hi -= top->len;
            brk_state.n--;
        }
    }
}

void *mk__chunk_alloc(size_t size) {
    atomic_store_explicit(&mk__g.allocated, 1, memory_order_relaxed);
    if (!atomic_load_explicit(&mk__g.source_sbrk, memory_order_relaxed)) return mmap_chunk(size);
    mk__spin_lock(&brk_state.lock);
    void *p = brk_take(seg_up(size));
    mk__spin_unlock(&brk_state.lock);
    return p ? p : mmap_chunk(size);
}

void mk__chunk_free(void *p, size_t size) {
    mk__spin_lock(&brk_state.lock);
    if (in_brk(p)) {
        size_t len = seg_up(size);
        mk__count_os();
        (void)mk__os_purge(p, len);
        brk_give((uintptr_t)p, len);
        mk__spin_unlock(&brk_state.lock);
        return;
    }
    mk__spin_unlock(&brk_state.lock);
    mk__count_os();
    (void)mk__os_release(p, size);
}

void mk__chunk_purge(void *p, size_t size) {
    mk__count_os();
    (void)mk__os_purge(p, size);
}

static bool chunk_in_brk(const void *p) {
    mk__spin_lock(&brk_state.lock);
    bool b = in_brk(p);
    mk__spin_unlock(&brk_state.lock);
    return b;
}

/* Whether two adjacent chunks may be used as one (freed as one range):
 * both from the break or both from mmap. */
bool mk__chunk_joinable(const void *a, const void *b) {
    mk__spin_lock(&brk_state.lock);
    bool ok = in_brk(a) == in_brk(b);
    mk__spin_unlock(&brk_state.lock);
    return ok;
}

int mk__chunk_shrink(void *p, size_t old_size, size_t new_size) {
    if (chunk_in_brk(p)) return MK_ENOTSUP;
    mk__count_os();
    return mk__os_resize_inplace(p, old_size, new_size); /* mremap shrinks in place */
}

int mk__chunk_grow(void *p, size_t old_size, size_t new_size) {
    if (chunk_in_brk(p)) return MK_ENOTSUP;
    mk__count_os();
    return mk__os_resize_inplace(p, old_size, new_size);
}

void mk__source_lock(void) { mk__spin_lock(&brk_state.lock); }
void mk__source_unlock(bool reinit) {
    if (reinit)
        atomic_store_explicit(&brk_state.lock.v, 0, memory_order_relaxed);
    else
        mk__spin_unlock(&brk_state.lock);
}
