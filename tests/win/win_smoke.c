/*
 * win_smoke: the library's Win32 platform layer (src/os/win32.c) at work,
 * cross-built with mingw-w64 and run under Wine by `make check-windows`
 * (scripts/check-windows). Not a port of the whole suite: the unit tests use
 * fork(), cmocka and POSIX calls. It runs one pass through each part that
 * sits on the platform layer: a region in a private mapping, a named shared
 * segment opened twice (mapping, named mutex, growth), its cache and
 * directory, an SPSC queue found by name, and the process heap; the
 * lock's kernel mutex given back when a segment closes (200 segments, one
 * after another, and one segment with two handles, one closed); a lock
 * relocked by its holder refused, as on POSIX; a segment "/x" and a file
 * segment "x" with a lock each; then
 * crashes: child processes (this program with the argument "child") work
 * on a segment, taking its lock for every operation, and are killed with
 * TerminateProcess at random moments (in a counted run under Wine 8, 28 of
 * the 60 kills found the lock held), and
 * after each kill the segment must validate (the next locker repairs it
 * when the child died holding the named mutex: WAIT_ABANDONED), the
 * parent's blocks keep their data, and reclaim frees the dead child's
 * blocks. Between them, growth in place as the platform layer does it
 * without placeholders (Wine 8): the reservation keeps no hole after a
 * growth, and a failed growth leaves the old mapping and the reservation
 * as they were; and a file-backed segment made by an absolute path and
 * opened under another spelling of it by a second handle and a child
 * process ("path"), which must share its lock, then reopened from the
 * file; and a file segment's only user ("lone") killed holding its lock,
 * which the next opener must repair. Exit status 0 when every check held; else the first failure is
 * printed.
 */
#include <ctype.h>
#include <stdbool.h>
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
#include "os/os.h"       /* mk__os_shm_map, to force a failing growth */
#include "shm/shm_int.h" /* struct mk_shm: the reservation and the OS handle */

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

/* Whether all n bytes at p are byte. */
static bool filled(const void *p, int byte, size_t n) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != (unsigned char)byte) return false;
    return true;
}

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
    /* owned blocks through the owner's cache: the one just freed comes
     * back, still owned (the other handle's reclaim leaves it alone) */
    mk_off own, again;
    CHECK(mk_shm_alloc_ex(s, 200, 0, MK_SHM_OWNED, &own), MK_OK);
    CHECK(mk_shm_free(s, own), MK_OK);
    CHECK(mk_shm_alloc_ex(s, 200, 0, MK_SHM_OWNED, &again), MK_OK);
    HOLDS(again == own);
    uint64_t reclaimed = 1;
    CHECK(mk_shm_reclaim(t, &reclaimed, NULL), MK_OK);
    HOLDS(reclaimed == 0);
    CHECK(mk_shm_free(t, own), MK_OK); /* another handle's free: the locked path */
    CHECK(mk_shm_free(s, own), MK_EDOUBLEFREE);
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

/* Threads on one handle: each gets a cache of its own (a thread handle,
 * an attach of its own); a thread's exit (its FLS callback) gives it back
 * to the next thread. */
static volatile LONG th_ready;
static mk_shm *th_shm;
static DWORD WINAPI th_worker(LPVOID arg) {
    LONG n = (LONG)(INT_PTR)arg;
    mk_off o[32];
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < 32; i++)
            if (mk_shm_alloc(th_shm, (size_t)(16 + (i * 97 + round) % 2000), &o[i]) != MK_OK)
                return 1;
        for (int i = 0; i < 32; i++)
            if (mk_shm_free(th_shm, o[i]) != MK_OK) return 2;
    }
    InterlockedIncrement(&th_ready); /* every thread holds its cache until all do */
    while (th_ready < n) Sleep(1);
    return 0;
}

static int run_workers(LONG n) {
    HANDLE t[4];
    th_ready = 0;
    for (LONG i = 0; i < n; i++)
        if (!(t[i] = CreateThread(NULL, 0, th_worker, (LPVOID)(INT_PTR)n, 0, NULL))) return -1;
    int bad = 0;
    for (LONG i = 0; i < n; i++) {
        DWORD code = 1;
        WaitForSingleObject(t[i], INFINITE);
        GetExitCodeThread(t[i], &code);
        CloseHandle(t[i]);
        bad |= code != 0;
    }
    return bad ? -1 : 0;
}

static void thread_handles(void) {
    const char *name = "/mk-win-threads";
    mk_shm_unlink(name, 0);
    mk_shm_config cfg = {.size = 4u << 20, .policy = MK_POLICY_TLSF};
    CHECK(mk_shm_create(name, &cfg, &th_shm), MK_OK);
    mk_shm_info in;
    for (int round = 0; round < 3; round++) { /* one at a time: the handle's own cache */
        HOLDS(run_workers(1) == 0);
        CHECK(mk_shm_get_info(th_shm, &in), MK_OK);
        HOLDS(in.attached == 1);
    }
    for (int round = 0; round < 2; round++) { /* three at once: two thread handles, kept */
        HOLDS(run_workers(3) == 0);
        CHECK(mk_shm_get_info(th_shm, &in), MK_OK);
        HOLDS(in.attached == 3);
    }
    CHECK(mk_shm_validate(th_shm, NULL), MK_OK);
    CHECK(mk_shm_cache_flush(th_shm), MK_OK);
    CHECK(mk_shm_get_info(th_shm, &in), MK_OK);
    HOLDS(in.cached_bytes == 0);
    CHECK(mk_shm_close(th_shm), MK_OK);
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

/* ---- the lock's kernel mutex over a handle's life -------------------------------------- */

#define MANY_SEGMENTS 200

/* Handles this process holds now, by probing the handle values (multiples
 * of 4; a small process's stay small, as this one's do): Wine 8's
 * GetProcessHandleCount says 0. */
static long handle_count(void) {
    long n = 0;
    for (uintptr_t v = 4; v < 16384; v += 4) {
        DWORD flags;
        if (GetHandleInformation((HANDLE)v, &flags)) n++;
    }
    return n;
}

/* One short-lived segment: every call takes its lock (no cache). */
static void one_segment(int i) {
    char name[32];
    snprintf(name, sizeof name, "/mk-win-many-%d", i);
    mk_shm_unlink(name, 0);
    mk_shm_config cfg = {.size = 256u << 10, .policy = MK_POLICY_TLSF, .flags = MK_SHM_NO_CACHE};
    mk_shm *s = NULL;
    mk_off o;
    mk_fault f;
    CHECK(mk_shm_create(name, &cfg, &s), MK_OK);
    CHECK(mk_shm_alloc(s, 100 + (size_t)i, &o), MK_OK);
    memset(mk_shm_ptr(s, o), i, 100);
    CHECK(mk_shm_free(s, o), MK_OK);
    CHECK(mk_shm_validate(s, &f), MK_OK);
    CHECK(mk_shm_close(s), MK_OK);
    CHECK(mk_shm_unlink(name, 0), MK_OK);
}

/* More segments over the process's life than the platform layer's table
 * of mutex HANDLEs has entries, one at a time: closing a segment must give
 * its entry and HANDLE back (the table used to fill at the 65th name, and
 * every later create failed with MK_ENOMEM), so the process ends the loop
 * with the handles it began it with. */
static void many_segments(void) {
    long before = handle_count();
    for (int i = 0; i < MANY_SEGMENTS; i++) {
        int failed = failures;
        one_segment(i);
        if (failures != failed) {
            fprintf(stderr, "win_smoke: many_segments: segment %d of %d failed\n", i + 1,
                    MANY_SEGMENTS);
            return;
        }
    }
    long after = handle_count();
    if (after != before)
        fprintf(stderr, "win_smoke: many_segments: %ld handles before, %ld after\n", before, after);
    HOLDS(after == before);
}

/* Allocate, fill, check and free through h, and validate: all under the
 * segment's lock (no cache). */
static void use_handle(mk_shm *h, int byte) {
    mk_off o;
    mk_fault f;
    CHECK(mk_shm_alloc(h, 1000, &o), MK_OK);
    memset(mk_shm_ptr(h, o), byte, 1000);
    HOLDS(filled(mk_shm_ptr(h, o), byte, 1000));
    CHECK(mk_shm_free(h, o), MK_OK);
    CHECK(mk_shm_validate(h, &f), MK_OK);
}

/* Two handles to one segment in one process share its mutex HANDLE:
 * closing one must leave it open for the other, whichever closes first
 * (the creator's, then an opener's). The process's handle count shows it:
 * a close gives back the handle's section only, the last one the mutex
 * too. */
static void two_handles_close_one(void) {
    const char *name = "/mk-win-two";
    mk_shm_unlink(name, 0);
    mk_shm_config cfg = {.size = 256u << 10, .policy = MK_POLICY_TLSF, .flags = MK_SHM_NO_CACHE};
    mk_shm *s = NULL, *t = NULL, *u = NULL;
    mk_shm_info in;
    long before = handle_count();
    CHECK(mk_shm_create(name, &cfg, &s), MK_OK);
    CHECK(mk_shm_open(name, 0, &t), MK_OK);
    long both = handle_count();
    use_handle(s, 0x11);
    use_handle(t, 0x12);
    CHECK(mk_shm_close(s), MK_OK);
    HOLDS(handle_count() == both - 1); /* the section goes, the mutex stays */
    use_handle(t, 0x13);
    CHECK(mk_shm_get_info(t, &in), MK_OK);
    HOLDS(in.attached == 1);
    CHECK(mk_shm_open(name, MK_SHM_OBSERVE, &u), MK_OK);
    CHECK(mk_shm_close(t), MK_OK);
    use_handle(u, 0x14); /* an observer locks too */
    CHECK(mk_shm_get_info(u, &in), MK_OK);
    HOLDS(in.attached == 0);
    CHECK(mk_shm_close(u), MK_OK);
    HOLDS(handle_count() == before);
    CHECK(mk_shm_unlink(name, 0), MK_OK);
}

/* A lock whose storage is not a mutex (another process wrote over it)
 * is damage: opening the segment refuses it, and nothing leaks (the
 * opener's handle is dropped, the creator's keeps working once the
 * storage is mended). */
static void damaged_lock_refused(void) {
    const char *name = "/mk-win-badlock";
    mk_shm_unlink(name, 0);
    mk_shm_config cfg = {.size = 256u << 10, .policy = MK_POLICY_TLSF, .flags = MK_SHM_NO_CACHE};
    mk_shm *s = NULL, *t = NULL;
    CHECK(mk_shm_create(name, &cfg, &s), MK_OK);
    long before = handle_count();
    uint32_t *magic = (uint32_t *)(void *)mk__shm_mutex(s->h)->opaque; /* win32.c: first word */
    uint32_t saved = *magic;
    *magic = ~saved;
    CHECK(mk_shm_open(name, 0, &t), MK_ECORRUPT);
    HOLDS(t == NULL && handle_count() == before);
    *magic = saved;
    use_handle(s, 0x15);
    CHECK(mk_shm_close(s), MK_OK);
    CHECK(mk_shm_unlink(name, 0), MK_OK);
}

/* A lock relocked by the thread that holds it: a kernel mutex would count
 * it, and the inner unlock would leave the mutex held for good. Refused as
 * on POSIX (lock MK_EOS, trylock MK_EBUSY); after one unlock another thread
 * takes it at once. Both kinds: private, and shared (named). */
static DWORD WINAPI try_from_other_thread(LPVOID m) {
    int rc = mk__os_mutex_trylock(m);
    if (rc == MK_OK) mk__os_mutex_unlock(m);
    return (DWORD)(rc == MK_OK ? 0 : 1);
}

static void relock_one(mk__os_mutex *m) {
    CHECK(mk__os_mutex_lock(m), MK_OK);
    CHECK(mk__os_mutex_lock(m), MK_EOS);
    CHECK(mk__os_mutex_trylock(m), MK_EBUSY);
    CHECK(mk__os_mutex_unlock(m), MK_OK);
    HANDLE t = CreateThread(NULL, 0, try_from_other_thread, m, 0, NULL);
    HOLDS(t != NULL);
    DWORD code = 1;
    HOLDS(WaitForSingleObject(t, 10000) == WAIT_OBJECT_0 && GetExitCodeThread(t, &code));
    CloseHandle(t);
    HOLDS(code == 0); /* free: the refused relock left no count behind */
}

static void relock_refused(void) {
    static mk__os_mutex priv, shared;
    CHECK(mk__os_mutex_init(&priv, false, NULL), MK_OK);
    relock_one(&priv);
    mk__os_mutex_destroy(&priv);
    CHECK(mk__os_mutex_init(&shared, true, "mk-win-relock"), MK_OK);
    CHECK(mk__os_mutex_attach(&shared), MK_OK);
    relock_one(&shared);
    mk__os_mutex_detach(&shared);
    mk__os_mutex_destroy(&shared);
}

/* The shared memory segment "/x" and the file segment "x" are two
 * segments with two locks: while this thread holds the first's, another
 * thread takes the second's at once. (Their kernel mutexes were both named
 * after "x" resolved as a path, so that one lock stood for both.) */
static void kinds_apart(void) {
    char tmp[MAX_PATH], cwd[MAX_PATH];
    HOLDS(GetCurrentDirectoryA(MAX_PATH, cwd) - 1u < MAX_PATH - 1u);
    HOLDS(GetTempPathA(MAX_PATH, tmp) - 1u < MAX_PATH - 1u && SetCurrentDirectoryA(tmp));
    mk_shm_unlink("/mk-win-kinds", 0);
    mk_shm_unlink("mk-win-kinds", MK_SHM_FILE);
    mk_shm_config cfg = {.size = 256u << 10, .policy = MK_POLICY_TLSF, .flags = MK_SHM_NO_CACHE};
    mk_shm *a = NULL, *b = NULL;
    CHECK(mk_shm_create("/mk-win-kinds", &cfg, &a), MK_OK);
    cfg.flags |= MK_SHM_FILE;
    CHECK(mk_shm_create("mk-win-kinds", &cfg, &b), MK_OK);
    CHECK(mk__os_mutex_lock(mk__shm_mutex(a->h)), MK_OK);
    HANDLE t = CreateThread(NULL, 0, try_from_other_thread, mk__shm_mutex(b->h), 0, NULL);
    DWORD code = 1;
    bool joined =
        t != NULL && WaitForSingleObject(t, 10000) == WAIT_OBJECT_0 && GetExitCodeThread(t, &code);
    if (t != NULL) CloseHandle(t);
    CHECK(mk__os_mutex_unlock(mk__shm_mutex(a->h)), MK_OK);
    HOLDS(joined && code == 0);
    use_handle(a, 0x21);
    use_handle(b, 0x22);
    CHECK(mk_shm_close(a), MK_OK);
    CHECK(mk_shm_close(b), MK_OK);
    CHECK(mk_shm_unlink("/mk-win-kinds", 0), MK_OK);
    CHECK(mk_shm_unlink("mk-win-kinds", MK_SHM_FILE), MK_OK);
    HOLDS(SetCurrentDirectoryA(cwd));
}

/* ---- growth in place ------------------------------------------------------------------ */

#define GRANULE 65536u /* the allocation granularity */

static char *granule_up(char *p) {
    return (char *)(((uintptr_t)p + GRANULE - 1) / GRANULE * GRANULE);
}

/* The first address of s's reservation that another allocation could
 * take, NULL if none: every region must be the view or reserved, except
 * the pages from the view's end to the next granule boundary, which
 * VirtualQuery shows MEM_FREE although no allocation can start there
 * (grow_keeps_reservation checks that). */
static char *reservation_hole(const mk_shm *s) {
    char *h = (char *)s->h, *end = h + s->reserved;
    uint64_t page = mk__os_page_size();
    char *view_end = h + (s->mapped + page - 1) / page * page;
    for (char *p = h; p < end;) {
        MEMORY_BASIC_INFORMATION mbi;
        if (VirtualQuery(p, &mbi, sizeof mbi) == 0) return p;
        char *next = (char *)mbi.BaseAddress + mbi.RegionSize;
        if (mbi.State == MEM_FREE && (p != view_end || next > granule_up(view_end))) return p;
        p = next;
    }
    return NULL;
}

/* Whether s's view is in place over all of s->mapped: checked before
 * reading it, so that a lost view fails a check instead of the process. */
static bool view_in_place(const mk_shm *s) {
    MEMORY_BASIC_INFORMATION mbi;
    return VirtualQuery(s->h, &mbi, sizeof mbi) != 0 && mbi.Type == MEM_MAPPED &&
           mbi.AllocationBase == (void *)s->h && mbi.RegionSize >= s->mapped;
}

/* A growth to a size that is not a multiple of the granule (the tail of
 * the reservation used to be re-reserved from the view's end, which
 * VirtualAlloc rounds down onto the view and refuses, leaving the rest of
 * the reservation free). */
static void grow_keeps_reservation(void) {
    const char *name = "/mk-win-grow";
    mk_shm_unlink(name, 0);
    mk_shm_config cfg = {.size = 1u << 20, .max_size = 8u << 20, .policy = MK_POLICY_TLSF};
    mk_shm *s = NULL;
    CHECK(mk_shm_create(name, &cfg, &s), MK_OK);
    HOLDS(reservation_hole(s) == NULL);
    mk_off a, b;
    CHECK(mk_shm_alloc(s, 1536u << 10, &a), MK_OK);
    memset(mk_shm_ptr(s, a), 0x31, 1536u << 10);
    HOLDS(s->mapped > cfg.size && s->mapped % GRANULE != 0); /* else this shows nothing */
    HOLDS(reservation_hole(s) == NULL);
    /* The free-looking pages after the view really cannot be taken. */
    HOLDS(VirtualAlloc((char *)s->h + s->mapped, 4096, MEM_RESERVE, PAGE_NOACCESS) == NULL);
    CHECK(mk_shm_alloc(s, 3u << 20, &b), MK_OK); /* and again, from an odd size */
    memset(mk_shm_ptr(s, b), 0x32, 3u << 20);
    HOLDS(reservation_hole(s) == NULL);
    HOLDS(filled(mk_shm_ptr(s, a), 0x31, 1536u << 10));
    mk_fault f;
    CHECK(mk_shm_validate(s, &f), MK_OK);
    CHECK(mk_shm_close(s), MK_OK);
    CHECK(mk_shm_unlink(name, 0), MK_OK);
}

/* A fixed map that cannot succeed (longer than the section: a file-backed
 * segment's section is the file, shorter than the reservation) must leave
 * the old view, its data and the reservation as they were; the old code
 * had unmapped the view first and left the whole reservation free. */
static void failed_grow_at(const char *path) {
    mk_shm_unlink(path, MK_SHM_FILE);
    mk_shm_config cfg = {
        .size = 1u << 20, .max_size = 8u << 20, .policy = MK_POLICY_TLSF, .flags = MK_SHM_FILE};
    mk_shm *s = NULL;
    CHECK(mk_shm_create(path, &cfg, &s), MK_OK);
    mk_off a, b, c;
    CHECK(mk_shm_alloc(s, 4096, &a), MK_OK);
    memset(mk_shm_ptr(s, a), 0x41, 4096);
    CHECK(mk_shm_alloc(s, 1536u << 10, &b), MK_OK); /* grows */
    memset(mk_shm_ptr(s, b), 0x42, 1536u << 10);
    uint64_t mapped = s->mapped, objsz = 0;
    CHECK(mk__os_shm_stat(&s->os, &objsz), MK_OK);
    HOLDS(objsz < s->reserved);
    void *p = NULL;
    HOLDS(mk__os_shm_map(&s->os, s->h, s->reserved, &p) != MK_OK);
    HOLDS(s->mapped == mapped && view_in_place(s));
    HOLDS(filled(mk_shm_ptr(s, a), 0x41, 4096) && filled(mk_shm_ptr(s, b), 0x42, 1536u << 10));
    HOLDS(reservation_hole(s) == NULL);
    CHECK(mk_shm_alloc(s, 3u << 20, &c), MK_OK); /* a later growth still works */
    memset(mk_shm_ptr(s, c), 0x43, 3u << 20);
    HOLDS(s->mapped > mapped && reservation_hole(s) == NULL);
    HOLDS(filled(mk_shm_ptr(s, a), 0x41, 4096) && filled(mk_shm_ptr(s, b), 0x42, 1536u << 10));
    mk_fault f;
    CHECK(mk_shm_validate(s, &f), MK_OK);
    CHECK(mk_shm_close(s), MK_OK);
    CHECK(mk_shm_unlink(path, MK_SHM_FILE), MK_OK);
}

/* In the temporary directory, by a relative name (file_by_path takes an
 * absolute one). */
static void failed_grow_keeps_view(void) {
    char tmp[MAX_PATH], cwd[MAX_PATH];
    HOLDS(GetCurrentDirectoryA(MAX_PATH, cwd) - 1u < MAX_PATH - 1u);
    HOLDS(GetTempPathA(MAX_PATH, tmp) - 1u < MAX_PATH - 1u && SetCurrentDirectoryA(tmp));
    failed_grow_at("mk-win-grow.seg");
    HOLDS(SetCurrentDirectoryA(cwd));
}

/* ---- a file segment by absolute path ------------------------------------------------------ */

#define PATH_N     96 /* blocks each process keeps */
#define PATH_READY "Local\\mk-win-path-ready"

static size_t path_size(int i) { return 48 + (size_t)i * 40; }

/* Allocate, fill with byte, check and free blocks through s and t, n
 * times or, if until is not NULL, until that process exits (at most n
 * times): the two processes' allocations overlap in time. */
static bool path_churn(mk_shm *s, mk_shm *t, int byte, HANDLE until, int n) {
    for (int i = 0; i < n; i++) {
        if (until != NULL && WaitForSingleObject(until, 0) != WAIT_TIMEOUT) return true;
        mk_shm *h = i % 2 ? s : t;
        size_t size = path_size(i % PATH_N);
        mk_off o;
        if (mk_shm_alloc(h, size, &o) != MK_OK) return false;
        memset(mk_shm_ptr(h, o), byte, size);
        if (!filled(mk_shm_ptr(h, o), byte, size) || mk_shm_free(h, o) != MK_OK) return false;
    }
    return until == NULL;
}

/* The child of file_by_path ("path" SPELLING): says it is about to open
 * (the parent holds the lock then), opens the segment by another spelling
 * of its path, allocates PATH_N blocks, fills block i with 0x80 + i % 64
 * and leaves their offsets in the object "offs", with churn between them.
 * Exits 0, or 2 on any failure. */
static int path_child(const char *path) {
    HANDLE ready = OpenEventA(EVENT_MODIFY_STATE, FALSE, PATH_READY);
    if (ready == NULL || !SetEvent(ready)) return 2;
    mk_shm *s = NULL;
    mk_shm_obj offs;
    if (mk_shm_open(path, MK_SHM_FILE, &s) != MK_OK) return 2;
    if (mk_shm_obj_find(s, "offs", &offs) != MK_OK) return 2;
    mk_off *theirs = mk_shm_ptr(s, offs.offset);
    for (int i = 0; i < PATH_N; i++) {
        if (mk_shm_alloc(s, path_size(i), &theirs[i]) != MK_OK) return 2;
        memset(mk_shm_ptr(s, theirs[i]), 0x80 + i % 64, path_size(i));
        if (!path_churn(s, s, 0x7F, NULL, 100)) return 2;
    }
    return mk_shm_close(s) == MK_OK ? 0 : 2;
}

/* Every block of both processes still holds its bytes: none overlaps another. */
static bool path_blocks_ok(mk_shm *s, const mk_off *mine) {
    mk_shm_obj offs;
    if (mk_shm_obj_find(s, "offs", &offs) != MK_OK) return false;
    const mk_off *theirs = mk_shm_ptr(s, offs.offset);
    for (int i = 0; i < PATH_N; i++) {
        if (theirs[i] == 0 || !filled(mk_shm_ptr(s, mine[i]), 0x40 + i % 64, path_size(i)) ||
            !filled(mk_shm_ptr(s, theirs[i]), 0x80 + i % 64, path_size(i)))
            return false;
    }
    return true;
}

/* A file segment by an absolute path (GetTempPathA: "C:\\...\\Temp\\"),
 * opened by a second handle and by a child process under another spelling
 * of it (upper case, '/'): all must meet at one lock. Creation used to fail
 * (MK_EINVAL): the lock's kernel mutex was named after the path, and such a
 * name may have no '\\' and at most 39 bytes. The child opens while this
 * process holds the lock and must wait; then both allocate at once, with
 * no per-process cache (MK_SHM_NO_CACHE), so that every allocation takes
 * the lock. Last, the segment is reopened from the file. */
static void file_by_path(const char *self) {
    char path[MAX_PATH], other[MAX_PATH], cmd[2 * MAX_PATH + 16];
    DWORD n = GetTempPathA(MAX_PATH, path);
    HOLDS(n > 0 && n + sizeof "mk-win-path.heap" <= MAX_PATH);
    strcat(path, "mk-win-path.heap");
    for (size_t i = 0; i <= strlen(path); i++)
        other[i] = path[i] == '\\' ? '/' : (char)toupper((unsigned char)path[i]);
    mk_shm_unlink(path, MK_SHM_FILE);
    mk_shm_config cfg = {.size = 256u << 10,
                         .max_size = 8u << 20,
                         .policy = MK_POLICY_TLSF,
                         .flags = MK_SHM_FILE | MK_SHM_NO_CACHE};
    mk_shm *s = NULL, *t = NULL;
    mk_off offs, mine[PATH_N];
    CHECK(mk_shm_create(path, &cfg, &s), MK_OK);
    CHECK(mk_shm_open(other, MK_SHM_FILE, &t), MK_OK);
    CHECK(mk_shm_obj_create(s, "offs", 2, PATH_N * sizeof(mk_off), 0, &offs, NULL), MK_OK);
    HANDLE ready = CreateEventA(NULL, TRUE, FALSE, PATH_READY);
    HOLDS(ready != NULL);
    snprintf(cmd, sizeof cmd, "\"%s\" path \"%s\"", self, other);
    STARTUPINFOA si = {.cb = sizeof si};
    PROCESS_INFORMATION pi;
    CHECK(mk__shm_lock(s), MK_OK);
    bool started = CreateProcessA(NULL, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi);
    bool opening = started && WaitForSingleObject(ready, 20000) == WAIT_OBJECT_0;
    if (opening) Sleep(300); /* time to get past the lock, if it could */
    bool waited = opening && WaitForSingleObject(pi.hProcess, 0) == WAIT_TIMEOUT &&
                  mk__shm_m(s)->attached == 2; /* it has not attached */
    mk__shm_unlock(s);
    CloseHandle(ready);
    HOLDS(started);
    for (int i = 0; i < PATH_N; i++) {
        mk_shm *h = i % 2 ? s : t;
        CHECK(mk_shm_alloc(h, path_size(i), &mine[i]), MK_OK);
        memset(mk_shm_ptr(h, mine[i]), 0x40 + i % 64, path_size(i));
    }
    bool churned = path_churn(s, t, 0x3F, pi.hProcess, 10000000);
    DWORD code = 1;
    HOLDS(WaitForSingleObject(pi.hProcess, 20000) == WAIT_OBJECT_0);
    HOLDS(GetExitCodeProcess(pi.hProcess, &code) && code == 0);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    HOLDS(waited && churned);
    HOLDS(path_blocks_ok(t, mine));
    mk_fault f;
    CHECK(mk_shm_validate(t, &f), MK_OK);
    CHECK(mk_shm_close(t), MK_OK);
    CHECK(mk_shm_close(s), MK_OK);
    CHECK(mk_shm_open(path, MK_SHM_FILE, &s), MK_OK); /* persistent */
    mk_shm_info in;
    CHECK(mk_shm_get_info(s, &in), MK_OK);
    HOLDS(in.attached == 1 && in.size > cfg.size); /* it grew on the way */
    HOLDS(path_blocks_ok(s, mine));
    CHECK(mk_shm_validate(s, &f), MK_OK);
    CHECK(mk_shm_close(s), MK_OK);
    CHECK(mk_shm_unlink(path, MK_SHM_FILE), MK_OK);
    HOLDS(GetFileAttributesA(path) == INVALID_FILE_ATTRIBUTES);
}

/* ---- the last user dies holding the lock ----------------------------------------------- */

#define LONE_READY "Local\\mk-win-lone-ready"

/* The child of lone_holder_dies ("lone" PATH): opens the segment, takes its
 * lock, says so and waits to be killed. Exits 2 on any failure. */
static int lone_child(const char *path) {
    HANDLE ready = OpenEventA(EVENT_MODIFY_STATE, FALSE, LONE_READY);
    mk_shm *s = NULL;
    if (ready == NULL || mk_shm_open(path, MK_SHM_FILE, &s) != MK_OK) return 2;
    if (mk__shm_lock(s) != MK_OK || !SetEvent(ready)) return 2;
    Sleep(INFINITE);
    return 2;
}

/* A file segment outlives its users, its lock's kernel mutex does not:
 * this process closes the segment (its HANDLE of the mutex goes), a child
 * opens it alone and is killed holding the lock, and the mutex dies with
 * it, WAIT_ABANDONED too. The next opener must repair all the same; the
 * repair's reap frees the dead child's slot, which an open without repair
 * would leave (attached == 2). */
static void lone_holder_dies(const char *self) {
    char path[MAX_PATH], cmd[2 * MAX_PATH + 16];
    DWORD n = GetTempPathA(MAX_PATH, path);
    HOLDS(n > 0 && n + sizeof "mk-win-lone.heap" <= MAX_PATH);
    strcat(path, "mk-win-lone.heap");
    mk_shm_unlink(path, MK_SHM_FILE);
    mk_shm_config cfg = {.size = 256u << 10, .policy = MK_POLICY_TLSF, .flags = MK_SHM_FILE};
    mk_shm *s = NULL;
    mk_shm_info in;
    CHECK(mk_shm_create(path, &cfg, &s), MK_OK);
    CHECK(mk_shm_close(s), MK_OK);
    HANDLE ready = CreateEventA(NULL, TRUE, FALSE, LONE_READY);
    HOLDS(ready != NULL);
    snprintf(cmd, sizeof cmd, "\"%s\" lone \"%s\"", self, path);
    STARTUPINFOA si = {.cb = sizeof si};
    PROCESS_INFORMATION pi;
    bool started = CreateProcessA(NULL, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi);
    bool held = started && WaitForSingleObject(ready, 20000) == WAIT_OBJECT_0;
    CloseHandle(ready);
    HOLDS(started);
    HOLDS(TerminateProcess(pi.hProcess, 9));
    HOLDS(WaitForSingleObject(pi.hProcess, 10000) == WAIT_OBJECT_0);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    HOLDS(held);
    CHECK(mk_shm_open(path, MK_SHM_FILE, &s), MK_OK);
    CHECK(mk_shm_get_info(s, &in), MK_OK);
    HOLDS(in.attached == 1);
    use_handle(s, 0x21);
    CHECK(mk_shm_close(s), MK_OK);
    CHECK(mk_shm_unlink(path, MK_SHM_FILE), MK_OK);
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
    if (argc > 2 && strcmp(argv[1], "path") == 0) return path_child(argv[2]);
    if (argc > 2 && strcmp(argv[1], "lone") == 0) return lone_child(argv[2]);
    region();
    segment();
    thread_handles();
    heap();
    two_handles_close_one();
    damaged_lock_refused();
    relock_refused();
    kinds_apart();
    many_segments();
    grow_keeps_reservation();
    failed_grow_keeps_view();
    file_by_path(argv[0]);
    lone_holder_dies(argv[0]);
    crashes(argv[0]);
    if (failures) return 1;
    printf("win_smoke: region, shared segment (two handles, growth, cache, owned blocks, "
           "thread handles, "
           "directory, SPSC "
           "queue), process heap, the lock's HANDLE given back on close (%d segments in turn, "
           "two handles with one closed; a damaged lock refused; a relock refused; a segment and a "
           "file of one name with two locks), growth in "
           "place (no hole, failed "
           "growth undone), a file "
           "segment by absolute path (second handle, child process; its only user killed "
           "holding the lock), and %d child processes killed at random moments passed\n",
           MANY_SEGMENTS, CRASH_KILLS);
    return 0;
}
