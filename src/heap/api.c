/*
 * The public malloc family and first-class heaps, on top of heap.c (sizes
 * up to 128 KiB) and large.c (above).
 *
 * Conventions are glibc's where C leaves a choice: malloc(0) returns a
 * unique block, realloc(p, 0) frees p and returns NULL, memalign rounds a
 * non-power-of-two alignment up, failures set errno to ENOMEM.
 */
#include "heap/heap_int.h"

#include <errno.h>
#include <string.h>

#include "os/os.h"

static bool heap_ok(const mk_heap *h) {
    return h != NULL && h->magic == MK__HEAP_MAGIC && h->kind == MK__HEAP_FIRST_CLASS;
}

static bool mul_overflows(size_t a, size_t b, size_t *out) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_mul_overflow(a, b, out);
#else
    if (b != 0 && a > SIZE_MAX / b) return true;
    *out = a * b;
    return false;
#endif
}

static void *heap_malloc(mk_heap *h, size_t size, bool zero) {
    if (size <= MK__MEDIUM_MAX) {
        void *p = mk__heap_alloc(h, size);
        if (zero && p) memset(p, 0, size);
        return p;
    }
    if (size > MK__SIZE_LIMIT) return mk__fail_nomem();
    return mk__large_alloc(h, size, 0, zero);
}

static MK__NOINLINE void *malloc_generic(size_t size, bool zero) {
    mk_heap *h = mk__thread_heap();
    if (h == NULL) return mk__fail_nomem();
    return heap_malloc(h, size, zero);
}

void *mk_malloc(size_t size) {
    mk_heap *h = mk__tl_heap;
    if (MK__LIKELY(h != NULL && size <= MK__MEDIUM_MAX)) return mk__heap_alloc(h, size);
    return malloc_generic(size, false);
}

void mk_free(void *ptr) {
    if (ptr == NULL) return;
    mk__segment *seg = mk__segment_of(ptr);
    unsigned kind = mk__map_kind((uintptr_t)seg);
    if (MK__LIKELY(kind == MK__MAP_SEGMENT))
        mk__free_small(seg, ptr);
    else if (kind == MK__MAP_LARGE)
        mk__large_free(ptr);
    else
        mk__corrupt("free(): invalid pointer", ptr);
}

void *mk_calloc(size_t n, size_t size) {
    size_t total;
    if (mul_overflows(n, size, &total)) return mk__fail_nomem();
    return malloc_generic(total, true);
}

/* Aligned allocation. Small: a size class whose blocks are all aligned
 * (spans start on 64 KiB), else a bigger block and an interior pointer;
 * beyond: a large block with the block placed at the alignment. */
static void *heap_memalign(mk_heap *h, size_t align, size_t size) {
    if (align <= MK__ALIGN) return heap_malloc(h, size, false);
    if (size > MK__SIZE_LIMIT || align > MK__SIZE_LIMIT / 2) return mk__fail_nomem();
    size_t n = (size + align - 1) & ~(align - 1);
    if (n == 0) n = align;
    if (n <= MK__MEDIUM_MAX && mk__class_size(mk__class_of(n)) % align == 0)
        return mk__heap_alloc(h, n);
    if (align <= MK__PAGE_SIZE && size + align - 1 <= MK__MEDIUM_MAX) {
        char *b = mk__heap_alloc(h, size + align - 1);
        if (b == NULL) return NULL;
        uintptr_t a = ((uintptr_t)b + align - 1) & ~(uintptr_t)(align - 1);
        if (a != (uintptr_t)b) mk__span_set_aligned(b);
        return (void *)a;
    }
    return mk__large_alloc(h, size, align, false);
}

static size_t next_pow2(size_t a) {
    size_t p = 1;
    while (p < a && p <= SIZE_MAX / 2) p <<= 1;
    return p;
}

void *mk_memalign(size_t align, size_t size) {
    if (align > SIZE_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    if (align & (align - 1)) align = next_pow2(align);
    mk_heap *h = mk__thread_heap();
    if (h == NULL) return mk__fail_nomem();
    return heap_memalign(h, align, size);
}

int mk_posix_memalign(void **out, size_t align, size_t size) {
    if (out == NULL || align < sizeof(void *) || (align & (align - 1))) return EINVAL;
    int saved = errno;
    void *p = mk_memalign(align, size);
    if (p == NULL) {
        errno = saved;
        return ENOMEM;
    }
    *out = p;
    return 0;
}

void *mk_aligned_alloc(size_t align, size_t size) {
    if (align == 0 || (align & (align - 1))) {
        errno = EINVAL;
        return NULL;
    }
    return mk_memalign(align, size);
}

void *mk_valloc(size_t size) { return mk_memalign(mk__os_page_size(), size); }

void *mk_pvalloc(size_t size) {
    size_t page = mk__os_page_size();
    if (size > SIZE_MAX - page) return mk__fail_nomem();
    size_t n = size ? (size + page - 1) & ~(page - 1) : page;
    return mk_memalign(page, n);
}

size_t mk_malloc_usable_size(const void *ptr) {
    if (ptr == NULL) return 0;
    mk__segment *seg = mk__segment_of(ptr);
    unsigned kind = mk__map_kind((uintptr_t)seg);
    if (kind == MK__MAP_SEGMENT) return mk__usable_small(seg, ptr);
    if (kind == MK__MAP_LARGE) return mk__large_usable(ptr);
    mk__corrupt("malloc_usable_size(): invalid pointer", ptr);
    return 0;
}

/* h NULL: the calling thread's heap. */
static void *realloc_in(mk_heap *h, void *ptr, size_t size) {
    if (size > MK__SIZE_LIMIT) return mk__fail_nomem();
    mk__segment *seg = mk__segment_of(ptr);
    unsigned kind = mk__map_kind((uintptr_t)seg);
    size_t usable;
    if (kind == MK__MAP_SEGMENT) {
        usable = mk__usable_small(seg, ptr);
        if (usable == 0) return NULL;
        /* stay when it fits and wastes at most half */
        if (size <= usable && size >= usable / 2) return ptr;
    } else if (kind == MK__MAP_LARGE) {
        usable = mk__large_usable(ptr);
        if (usable == 0) return NULL;
        if (size > MK__MEDIUM_MAX || size >= usable / 2) {
            void *q = mk__large_realloc(ptr, size);
            if (q) return q;
        }
    } else {
        mk__corrupt("realloc(): invalid pointer", ptr);
        return NULL;
    }
    if (h == NULL) h = mk__thread_heap();
    void *q = h ? heap_malloc(h, size, false) : mk__fail_nomem();
    if (q == NULL) return NULL;
    memcpy(q, ptr, size < usable ? size : usable);
    mk_free(ptr);
    return q;
}

void *mk_realloc(void *ptr, size_t size) {
    if (ptr == NULL) return mk_malloc(size);
    if (size == 0) {
        mk_free(ptr);
        return NULL;
    }
    return realloc_in(NULL, ptr, size);
}

void *mk_reallocarray(void *ptr, size_t n, size_t size) {
    size_t total;
    if (mul_overflows(n, size, &total)) return mk__fail_nomem();
    return mk_realloc(ptr, total);
}

void mk_free_sized(void *ptr, size_t size) {
    (void)size;
    mk_free(ptr);
}

void mk_free_aligned_sized(void *ptr, size_t align, size_t size) {
    (void)align;
    (void)size;
    mk_free(ptr);
}

int mk_heap_trim(void) {
    mk__init();
    mk__trim_all();
    mk__large_trim(true);
    return MK_OK;
}

/* ---- first-class heaps ---- */

mk_heap *mk_heap_new(int *err) {
    mk__init();
    mk_heap *h = mk__heap_create(MK__HEAP_FIRST_CLASS);
    if (err) *err = h ? MK_OK : MK_ENOMEM;
    return h;
}

void *mk_heap_malloc(mk_heap *heap, size_t size) {
    if (!heap_ok(heap)) {
        errno = EINVAL;
        return NULL;
    }
    return heap_malloc(heap, size, false);
}

void *mk_heap_calloc(mk_heap *heap, size_t n, size_t size) {
    size_t total;
    if (!heap_ok(heap)) {
        errno = EINVAL;
        return NULL;
    }
    if (mul_overflows(n, size, &total)) return mk__fail_nomem();
    return heap_malloc(heap, total, true);
}

void *mk_heap_memalign(mk_heap *heap, size_t align, size_t size) {
    if (!heap_ok(heap) || align > SIZE_MAX / 2 + 1) {
        errno = EINVAL;
        return NULL;
    }
    if (align & (align - 1)) align = next_pow2(align);
    return heap_memalign(heap, align, size);
}

void *mk_heap_realloc(mk_heap *heap, void *ptr, size_t size) {
    if (!heap_ok(heap)) {
        errno = EINVAL;
        return NULL;
    }
    if (ptr == NULL) return heap_malloc(heap, size, false);
    if (size == 0) {
        mk_free(ptr);
        return NULL;
    }
    return realloc_in(heap, ptr, size);
}

int mk_heap_destroy(mk_heap *heap) {
    if (heap == NULL) return MK_OK;
    if (!heap_ok(heap)) return MK_EINVAL;
    mk__heap_release_all(heap);
    mk__registry_remove(heap);
    heap->magic = 0;
    size_t page = mk__os_page_size();
    mk__count_os();
    (void)mk__os_release(heap, (sizeof *heap + page - 1) & ~(page - 1));
    return MK_OK;
}

/* ---- statistics ---- */

static void stats_of_heap(mk_heap *h, mk_heap_stats *out) {
    mk__heap_collect_purge(h, false);
    out->n_alloc = mk__load(&h->st.n_alloc);
    out->dirty = h->dirty_bytes;
    uint64_t live = 0;
    for (mk__segment *seg = h->segs; seg; seg = seg->next) {
        out->segments++;
        out->mapped += MK__SEG_SIZE;
        for (unsigned i = 1; i < MK__PAGES; i++) {
            const mk__span *s = &seg->spans[i];
            if (seg->page_span[i] == i && !((seg->free_mask >> i) & 1) && s->block_size)
                live += (uint64_t)s->used * s->block_size;
        }
    }
    mk__spin_lock(&h->large_lock);
    for (mk__large *L = h->large; L; L = L->next) {
        live += L->map_size - L->user_off;
        out->mapped += L->res_size;
        out->n_large++;
    }
    mk__spin_unlock(&h->large_lock);
    out->current = out->peak = live;
    out->peak_mapped = out->mapped;
    out->heaps = 1;
}

int mk_heap_get_stats(mk_heap *heap, mk_heap_stats *out) {
    if (out == NULL) return MK_EINVAL;
    memset(out, 0, sizeof *out);
    if (heap != NULL) {
        if (!heap_ok(heap)) return MK_EINVAL;
        stats_of_heap(heap, out);
        return MK_OK;
    }
    uint64_t a = 0, f = 0, na = 0, nf = 0;
    mk__spin_lock(&mk__g.reg_lock);
    for (mk_heap *h = mk__g.all; h; h = h->reg_next) {
        a += mk__load(&h->st.bytes_alloc);
        f += mk__load(&h->st.bytes_free);
        na += mk__load(&h->st.n_alloc);
        nf += mk__load(&h->st.n_free);
    }
    a += mk__load(&mk__g.retired_alloc) + mk__load(&mk__g.orphan.bytes_alloc);
    f += mk__load(&mk__g.retired_free) + mk__load(&mk__g.orphan.bytes_free);
    na += mk__load(&mk__g.n_retired_alloc) + mk__load(&mk__g.orphan.n_alloc);
    nf += mk__load(&mk__g.n_retired_free) + mk__load(&mk__g.orphan.n_free);
    mk__spin_unlock(&mk__g.reg_lock);
    out->current = a > f ? a - f : 0;
    mk__max(&mk__g.peak, out->current);
    out->peak = mk__load(&mk__g.peak);
    out->n_alloc = na;
    out->n_free = nf;
    out->n_failed = mk__load(&mk__g.n_failed);
    out->n_large = mk__load(&mk__g.n_large);
    out->mapped = mk__load(&mk__g.mapped);
    out->peak_mapped = mk__load(&mk__g.peak_mapped);
    out->large_cached = mk__load(&mk__g.large_cached);
    out->dirty = mk__load(&mk__g.dirty);
    out->returned = mk__load(&mk__g.returned);
    out->n_os_calls = mk__load(&mk__g.n_os_calls);
    out->segments = mk__load(&mk__g.segments);
    out->heaps = mk__load(&mk__g.heaps);
    out->source_sbrk = (uint32_t)atomic_load(&mk__g.source_sbrk);
    return MK_OK;
}
