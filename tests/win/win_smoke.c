/*
 * win_smoke: the library's Win32 platform layer (src/os/win32.c) at work,
 * cross-built with mingw-w64 and run under Wine by `make check-windows`
 * (scripts/check-windows). Not a port of the whole suite: the unit tests use
 * fork(), cmocka and POSIX calls. It runs one pass through each part that
 * sits on the platform layer: a region in a private mapping, a named shared
 * segment opened twice (mapping, named mutex, growth), its cache and
 * directory, an SPSC queue found by name, and the process heap; then
 * crashes: child processes (this program with the argument "child") work
 * on a segment, taking its lock for every operation, and are killed with
 * TerminateProcess at random moments (in a counted run under Wine 8, 28 of
 * the 60 kills found the lock held), and
 * after each kill the segment must validate (the next locker repairs it
 * when the child died holding the named mutex: WAIT_ABANDONED), the
 * parent's blocks keep their data, and reclaim frees the dead child's
 * blocks. Exit status 0 when every check held; else the first failure is
 * printed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <windows.h>

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
#define HOLDS(cond)                                                                                \
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
    HOLDS(b % 64 == 0);
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
    HOLDS(in.attached == 2);
    /* small blocks (the cache), a large one that makes it grow, across handles */
    mk_off o[64], big;
    for (int i = 0; i < 64; i++) {
        CHECK(mk_shm_alloc(s, 16 + (size_t)i * 40, &o[i]), MK_OK);
        memset(mk_shm_ptr(s, o[i]), i, 16);
    }
    CHECK(mk_shm_alloc(t, 3u << 20, &big), MK_OK);
    memset(mk_shm_ptr(t, big), 0x5A, 3u << 20);
    CHECK(mk_shm_get_info(s, &in), MK_OK);
    HOLDS(in.size > cfg.size);
    for (int i = 0; i < 64; i++) {
        const unsigned char *p = mk_shm_ptr(t, o[i]);
        HOLDS(p[0] == (unsigned char)i && p[15] == (unsigned char)i);
    }
    HOLDS(((unsigned char *)mk_shm_ptr(s, big))[(3u << 20) - 1] == 0x5A);
    for (int i = 0; i < 64; i++) CHECK(mk_shm_free(i % 2 ? s : t, o[i]), MK_OK);
    CHECK(mk_shm_free(s, o[0]), MK_EDOUBLEFREE);
    CHECK(mk_shm_free(s, big), MK_OK);
    /* the directory, and a queue found by name from the other handle */
    mk_off obj;
    int created = 0;
    CHECK(mk_shm_obj_create(s, "config", 7, 128, 0, &obj, &created), MK_OK);
    HOLDS(created == 1);
    mk_shm_obj rec;
    CHECK(mk_shm_obj_find(t, "config", &rec), MK_OK);
    HOLDS(rec.type == 7);
    mk_spsc *qp = NULL, *qc = NULL;
    CHECK(mk_spsc_create(s, "q", 64, sizeof(uint64_t), 0, &qp), MK_OK);
    CHECK(mk_spsc_open(t, "q", sizeof(uint64_t), &qc), MK_OK);
    for (uint64_t v = 1; v <= 1000; v++) {
        CHECK(mk_spsc_try_push(qp, &v), MK_OK);
        uint64_t got = 0;
        CHECK(mk_spsc_pop_wait(qc, &got, 1000000000), MK_OK);
        HOLDS(got == v);
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
        HOLDS(p[i] != NULL);
        memset(p[i], i, (size_t)1 << (i % 20));
    }
    for (int i = 0; i < 100; i++) {
        HOLDS(((unsigned char *)p[i])[0] == (unsigned char)i);
        mk_free(p[i]);
    }
    void *q = mk_realloc(NULL, 100);
    HOLDS(q != NULL);
    q = mk_realloc(q, 1 << 20);
    HOLDS(q != NULL);
    mk_free(q);
}

/* ---- crashes ---------------------------------------------------------------------------- */

#define CRASH_SEG   "/mk-win-crash"
#define CRASH_KILLS 60

/* The child: random allocations of owned blocks, frees and reallocs, and
 * now and then a validation, until it is killed: all of them take the
 * segment's lock, so most kills find it held. Exits 2 on any failure (the
 * parent sees it). */
static int child(void) {
    mk_shm *s = NULL;
    mk_shm_obj progress;
    if (mk_shm_open(CRASH_SEG, 0, &s) != MK_OK) return 2;
    if (mk_shm_obj_find(s, "progress", &progress) != MK_OK) return 2;
    uint64_t *ops = mk_shm_ptr(s, progress.offset);
    mk_off held[32] = {0};
    uint64_t x = GetCurrentProcessId() * 0x9E3779B97F4A7C15ull;
    for (;;) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        unsigned i = (unsigned)(x % 32), size = 16 + (unsigned)(x >> 40) % 3000;
        int rc = MK_OK;
        if ((x >> 50) % 16 == 0) {
            mk_fault f;
            rc = mk_shm_validate(s, &f);
        } else if (!held[i]) {
            rc = mk_shm_alloc_ex(s, size, 0, MK_SHM_OWNED, &held[i]);
        } else if ((x >> 20) % 4) {
            rc = mk_shm_free(s, held[i]);
            held[i] = 0;
        } else {
            rc = mk_shm_realloc(s, held[i], size, &held[i]);
        }
        if (rc != MK_OK) return 2;
        __atomic_fetch_add(ops, 1, __ATOMIC_RELAXED); /* the parent waits for work */
    }
}

static void crashes(const char *self) {
    mk_shm_unlink(CRASH_SEG, 0);
    mk_shm_config cfg = {.size = 4u << 20, .policy = MK_POLICY_TLSF};
    mk_shm *s = NULL;
    CHECK(mk_shm_create(CRASH_SEG, &cfg, &s), MK_OK);
    mk_off mine[16];
    for (int i = 0; i < 16; i++) {
        CHECK(mk_shm_alloc(s, 512, &mine[i]), MK_OK);
        memset(mk_shm_ptr(s, mine[i]), 0x40 + i, 512);
    }
    mk_off progress;
    int created;
    CHECK(mk_shm_obj_create(s, "progress", 1, sizeof(uint64_t), 0, &progress, &created), MK_OK);
    uint64_t *ops = mk_shm_ptr(s, progress);
    char cmd[MAX_PATH + 16];
    snprintf(cmd, sizeof cmd, "\"%s\" child", self);
    uint64_t x = 12345;
    for (int k = 0; k < CRASH_KILLS; k++) {
        STARTUPINFOA si = {.cb = sizeof si};
        PROCESS_INFORMATION pi;
        HOLDS(CreateProcessA(NULL, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi));
        /* Kill it at a random moment of its work, once it works (Wine
         * starts a process in a fraction of a second). */
        uint64_t start = __atomic_load_n(ops, __ATOMIC_RELAXED);
        for (int w = 0; w < 10000 && __atomic_load_n(ops, __ATOMIC_RELAXED) == start; w++) Sleep(1);
        HOLDS(__atomic_load_n(ops, __ATOMIC_RELAXED) != start);
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        Sleep((DWORD)(x % 8));
        DWORD code = 0;
        HOLDS(GetExitCodeProcess(pi.hProcess, &code) && code == STILL_ACTIVE); /* no failure */
        HOLDS(TerminateProcess(pi.hProcess, 9));
        HOLDS(WaitForSingleObject(pi.hProcess, 10000) == WAIT_OBJECT_0);
        CloseHandle(pi.hThread);
        CloseHandle(pi.hProcess);
        mk_fault f;
        CHECK(mk_shm_validate(s, &f), MK_OK); /* repairs first if the child held the lock */
        CHECK(mk_shm_reclaim(s, NULL, NULL), MK_OK);
        for (int i = 0; i < 16; i++) {
            const unsigned char *p = mk_shm_ptr(s, mine[i]);
            HOLDS(p[0] == 0x40 + i && p[511] == 0x40 + i);
        }
    }
    mk_shm_info in;
    CHECK(mk_shm_get_info(s, &in), MK_OK);
    HOLDS(in.attached == 1); /* every dead child's slot was reclaimed */
    CHECK(mk_shm_obj_remove(s, "progress"), MK_OK);
    for (int i = 0; i < 16; i++) CHECK(mk_shm_free(s, mine[i]), MK_OK);
    mk_fault f;
    CHECK(mk_shm_validate(s, &f), MK_OK);
    CHECK(mk_shm_close(s), MK_OK);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "child") == 0) return child();
    region();
    segment();
    heap();
    crashes(argv[0]);
    if (failures) return 1;
    printf("win_smoke: region, shared segment (two handles, growth, cache, directory, SPSC "
           "queue), process heap, and %d child processes killed at random moments passed\n",
           CRASH_KILLS);
    return 0;
}
