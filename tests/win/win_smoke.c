/*
 * win_smoke: the library's Win32 platform layer (src/os/win32.c) at work,
 * cross-built with mingw-w64 and run under Wine by `make check-windows`
 * (scripts/check-windows). Not a port of the whole suite: the unit tests use
 * fork(), cmocka and POSIX calls. It runs one pass through each part that
 * sits on the platform layer: a region in a private mapping, a named shared
 * segment opened twice (mapping, named mutex, growth), its cache and
 * directory, an SPSC queue found by name, and the process heap. Exit status
 * 0 when every check held; else the first failure is printed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memkit/error.h"
#include "memkit/heap.h"
#include "memkit/ipc.h"
#include "memkit/region.h"
#include "memkit/shm.h"

static int failures;

#define CHECK(expr, want)                                                                          \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != (want)) {                                                                       \
            fprintf(stderr, "win_smoke: %s:%d: %s = %s (os error %d), want %s\n", __FILE__,        \
                    __LINE__, #expr, mk_strerror(rc_), mk_last_os_error(), mk_strerror(want));     \
            failures++;                                                                            \
            return;                                                                                \
        }                                                                                          \
    } while (0)
#define TRUE(cond)                                                                                 \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "win_smoke: %s:%d: %s is false\n", __FILE__, __LINE__, #cond);         \
            failures++;                                                                            \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static void region(void) {
    static _Alignas(16) unsigned char buf[1 << 20];
    mk_region *r = NULL;
    CHECK(mk_region_create(buf, sizeof buf, MK_POLICY_TLSF, MK_REGION_JOURNAL, &r), MK_OK);
    mk_off a, b;
    CHECK(mk_region_alloc(r, 1000, 0, &a), MK_OK);
    CHECK(mk_region_alloc(r, 64, 64, &b), MK_OK);
    TRUE(b % 64 == 0);
    CHECK(mk_region_free(r, a), MK_OK);
    CHECK(mk_region_free(r, a), MK_EDOUBLEFREE);
    CHECK(mk_region_free(r, b), MK_OK);
    CHECK(mk_region_validate(r, NULL), MK_OK);
}

static void segment(void) {
    const char *name = "/mk-win-smoke";
    mk_shm_unlink(name, 0);
    mk_shm_config cfg = {.size = 2u << 20, .max_size = 8u << 20, .policy = MK_POLICY_TLSF};
    mk_shm *s = NULL, *t = NULL;
    CHECK(mk_shm_create(name, &cfg, &s), MK_OK);
    CHECK(mk_shm_open(name, 0, &t), MK_OK);
    mk_shm_info in;
    CHECK(mk_shm_get_info(t, &in), MK_OK);
    TRUE(in.attached == 2);
    /* small blocks (the cache), a large one that makes it grow, across handles */
    mk_off o[64], big;
    for (int i = 0; i < 64; i++) {
        CHECK(mk_shm_alloc(s, 16 + (size_t)i * 40, &o[i]), MK_OK);
        memset(mk_shm_ptr(s, o[i]), i, 16);
    }
    CHECK(mk_shm_alloc(t, 3u << 20, &big), MK_OK);
    memset(mk_shm_ptr(t, big), 0x5A, 3u << 20);
    CHECK(mk_shm_get_info(s, &in), MK_OK);
    TRUE(in.size > cfg.size);
    for (int i = 0; i < 64; i++) {
        const unsigned char *p = mk_shm_ptr(t, o[i]);
        TRUE(p[0] == (unsigned char)i && p[15] == (unsigned char)i);
    }
    TRUE(((unsigned char *)mk_shm_ptr(s, big))[(3u << 20) - 1] == 0x5A);
    for (int i = 0; i < 64; i++) CHECK(mk_shm_free(i % 2 ? s : t, o[i]), MK_OK);
    CHECK(mk_shm_free(s, o[0]), MK_EDOUBLEFREE);
    CHECK(mk_shm_free(s, big), MK_OK);
    /* the directory, and a queue found by name from the other handle */
    mk_off obj;
    int created = 0;
    CHECK(mk_shm_obj_create(s, "config", 7, 128, 0, &obj, &created), MK_OK);
    TRUE(created == 1);
    mk_shm_obj rec;
    CHECK(mk_shm_obj_find(t, "config", &rec), MK_OK);
    TRUE(rec.type == 7);
    mk_spsc *qp = NULL, *qc = NULL;
    CHECK(mk_spsc_create(s, "q", 64, sizeof(uint64_t), 0, &qp), MK_OK);
    CHECK(mk_spsc_open(t, "q", sizeof(uint64_t), &qc), MK_OK);
    for (uint64_t v = 1; v <= 1000; v++) {
        CHECK(mk_spsc_try_push(qp, &v), MK_OK);
        uint64_t got = 0;
        CHECK(mk_spsc_pop_wait(qc, &got, 1000000000), MK_OK);
        TRUE(got == v);
    }
    mk_spsc_close(qp);
    mk_spsc_close(qc);
    mk_fault f;
    CHECK(mk_shm_validate(t, &f), MK_OK);
    CHECK(mk_shm_close(t), MK_OK);
    CHECK(mk_shm_close(s), MK_OK);
    CHECK(mk_shm_unlink(name, 0), MK_OK);
}

static void heap(void) {
    void *p[100];
    for (int i = 0; i < 100; i++) {
        p[i] = mk_malloc((size_t)1 << (i % 20));
        TRUE(p[i] != NULL);
        memset(p[i], i, (size_t)1 << (i % 20));
    }
    for (int i = 0; i < 100; i++) {
        TRUE(((unsigned char *)p[i])[0] == (unsigned char)i);
        mk_free(p[i]);
    }
    void *q = mk_realloc(NULL, 100);
    TRUE(q != NULL);
    q = mk_realloc(q, 1 << 20);
    TRUE(q != NULL);
    mk_free(q);
}

int main(void) {
    region();
    segment();
    heap();
    if (failures) return 1;
    printf("win_smoke: region, shared segment (two handles, growth, cache, directory, SPSC "
           "queue) and process heap passed\n");
    return 0;
}
