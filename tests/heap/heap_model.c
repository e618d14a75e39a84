/*
 * Randomized test of the process heap against a reference model.
 *
 * The model is a table of live blocks: pointer, size, alignment asked for,
 * and a fill byte. Every operation (malloc, calloc, realloc, memalign,
 * aligned_alloc, reallocarray, free, free_sized, first-class heap
 * alloc/destroy) is applied to both, and the heap must agree with the
 * model: alignment, usable size >= requested, calloc zeroed, realloc keeps
 * the prefix, and every live block still holds its fill byte when it is
 * checked or freed (so no two blocks overlap and no free damages another
 * block). Statistics must match the model's count of live blocks.
 *
 * Usage: heap_model SEED OPS   (replay a failure with the seed it prints)
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memkit/heap.h"

#define SLOTS 4096

typedef struct slot {
    unsigned char *p;
    size_t size, align;
    unsigned char fill;
    int heap; /* -1: process heap, else index of a first-class heap */
} slot;

static slot model[SLOTS];
static mk_heap *heaps[4];
static uint64_t rng;
static unsigned long long op_no;

static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "heap_model: op %llu: check failed: %s (line %d)\n", op_no, #cond,     \
                    __LINE__);                                                                     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static size_t pick_size(void) {
    unsigned r = (unsigned)(next() % 100);
    if (r < 60) return (size_t)(next() % 256);
    if (r < 90) return (size_t)(next() % 8192);
    if (r < 99) return (size_t)(next() % 140000);
    return (size_t)(next() % (3u << 20));
}

static bool holds(const slot *s) {
    static unsigned char ref[4096];
    memset(ref, s->fill, sizeof ref);
    for (size_t i = 0; i < s->size; i += sizeof ref) {
        size_t n = s->size - i < sizeof ref ? s->size - i : sizeof ref;
        if (memcmp(s->p + i, ref, n) != 0) return false;
    }
    return true;
}

static void verify(const slot *s) {
    CHECK(((uintptr_t)s->p & ((s->align < 16 ? 16 : s->align) - 1)) == 0);
    CHECK(mk_malloc_usable_size(s->p) >= s->size);
    CHECK(holds(s));
}

static void set(slot *s, unsigned char *p, size_t size, size_t align, int heap) {
    s->p = p;
    s->size = size;
    s->align = align;
    s->heap = heap;
    s->fill = (unsigned char)(next() | 1);
    memset(p, s->fill, size);
}

static void drop(slot *s) {
    verify(s);
    if (next() % 2)
        mk_free(s->p);
    else
        mk_free_sized(s->p, s->size);
    s->p = NULL;
}

static void op_alloc(slot *s) {
    size_t n = pick_size(), align = 0;
    unsigned char *p;
    int heap = -1;
    switch (next() % 8) {
    case 0:
        p = mk_calloc(1, n);
        CHECK(p != NULL);
        for (size_t i = 0; i < n; i++) CHECK(p[i] == 0);
        break;
    case 1:
        align = (size_t)1 << (next() % 14);
        p = mk_memalign(align, n);
        break;
    case 2:
        align = (size_t)1 << (next() % 13);
        p = mk_aligned_alloc(align, n);
        break;
    case 3:
        heap = (int)(next() % 4);
        if (heaps[heap] == NULL) heaps[heap] = mk_heap_new(NULL);
        p = mk_heap_malloc(heaps[heap], n);
        break;
    default:
        p = mk_malloc(n);
    }
    CHECK(p != NULL);
    set(s, p, n, align, heap);
    verify(s);
}

static void op_realloc(slot *s) {
    verify(s);
    size_t n = pick_size();
    unsigned char *p = (next() % 4) ? mk_realloc(s->p, n) : mk_reallocarray(s->p, n, 1);
    if (n == 0) {
        CHECK(p == NULL); /* freed */
        s->p = NULL;
        return;
    }
    CHECK(p != NULL);
    size_t keep = n < s->size ? n : s->size;
    for (size_t i = 0; i < keep; i++) CHECK(p[i] == s->fill);
    /* a moved block leaves its first-class heap for the thread's heap */
    set(s, p, n, 0, p == s->p ? s->heap : -1);
}

static void destroy_heap(int k) {
    if (heaps[k] == NULL) return;
    for (int i = 0; i < SLOTS; i++)
        if (model[i].p && model[i].heap == k) verify(&model[i]), model[i].p = NULL;
    CHECK(mk_heap_destroy(heaps[k]) == MK_OK);
    heaps[k] = NULL;
    for (int i = 0; i < SLOTS; i++)
        if (model[i].p) verify(&model[i]); /* the others are intact */
}

int main(int argc, char **argv) {
    uint64_t seed = argc > 1 ? strtoull(argv[1], NULL, 10) : 12345;
    unsigned long long ops = argc > 2 ? strtoull(argv[2], NULL, 10) : 200000;
    rng = seed * 0x9E3779B97F4A7C15ull + 1;
    printf("heap_model: seed %llu, %llu operations\n", (unsigned long long)seed, ops);
    mk_heap_stats base;
    CHECK(mk_heap_get_stats(NULL, &base) == MK_OK);
    for (op_no = 0; op_no < ops; op_no++) {
        slot *s = &model[next() % SLOTS];
        unsigned r = (unsigned)(next() % 1000);
        if (r == 0)
            destroy_heap((int)(next() % 4));
        else if (r < 3)
            CHECK(mk_heap_trim() == MK_OK);
        else if (s->p == NULL)
            op_alloc(s);
        else if (r < 300)
            op_realloc(s);
        else
            drop(s);
    }
    /* live blocks of the process heap against the statistics */
    for (int k = 0; k < 4; k++) destroy_heap(k);
    size_t live = 0, n_live = 0;
    for (int i = 0; i < SLOTS; i++)
        if (model[i].p) {
            verify(&model[i]);
            live += mk_malloc_usable_size(model[i].p);
            n_live++;
        }
    mk_heap_stats st;
    CHECK(mk_heap_get_stats(NULL, &st) == MK_OK);
    CHECK(st.current >= base.current + live && st.current <= base.current + live + 64 * n_live);
    for (int i = 0; i < SLOTS; i++)
        if (model[i].p) drop(&model[i]);
    CHECK(mk_heap_get_stats(NULL, &st) == MK_OK);
    CHECK(st.current == base.current);
    CHECK(st.n_alloc - base.n_alloc == st.n_free - base.n_free);
    printf("heap_model: ok\n");
    return 0;
}
