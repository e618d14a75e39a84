/*
 * Crash tests of the lock-free structures: a child process is SIGKILLed at
 * a chosen crash point (the MK_TEST_HOOKS hook in src/ds) in the middle of
 * its n-th operation, for several n (before and after the ring wraps); the
 * parent then checks what the structure guarantees:
 *
 *   spsc/ring push  the interrupted element is not published, the earlier
 *                   ones all are, in order; the consumer's timed wait
 *                   returns MK_ETIMEDOUT; a new producer takes over.
 *   spsc/ring pop   the interrupted element is still queued: the next
 *                   consumer gets it and everything after it, in order.
 *   ring reserve    a reservation without commit publishes nothing.
 *   mpmc push       consumers stop at the claimed cell (MK_ETIMEDOUT, no
 *                   spinning); mk_mpmc_repair() makes it a hole; every other
 *                   element then arrives, per-producer order kept.
 *   mpmc pop        producers stop at the claimed cell once they wrap
 *                   (MK_ETIMEDOUT); repair gives it back; one element lost.
 *   pool            slots held by a dead process come back with
 *                   mk_objpool_reclaim(); a slot lost inside acquire or
 *                   release comes back with mk_objpool_repair().
 *   sleeper         a process killed while asleep in a wait leaves its
 *                   sleeper flag: the next push still works and clears it.
 *
 * Exit 0 on success; alarm() is the watchdog against any hang.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ds/ds_int.h"
#include "memkit/ipc.h"
#include "memkit/shm.h"

#define SHORT_NS ((int64_t)20 * 1000000) /* a wait that must time out */
#define LONG_NS  ((int64_t)10 * 1000000000)
#define CAP      8

static char g_seg[64];
static pid_t g_parent;
static mk_shm *g_shm;

#define DIE(...)                                                                                   \
    do {                                                                                           \
        fprintf(stderr, "ds_crash[%ld] %s:%d: ", (long)getpid(), __FILE__, __LINE__);              \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        if (getpid() == g_parent) mk_shm_unlink(g_seg, 0);                                         \
        _exit(1);                                                                                  \
    } while (0)
#define EXPECT(expr, want)                                                                         \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != (want)) DIE("%s: %s, expected %s", #expr, mk_strerror(rc_), mk_strerror(want)); \
    } while (0)
#define CHECK(expr) EXPECT(expr, MK_OK)

/* ---- crash machinery -------------------------------------------------------------- */

static int g_point, g_left;
static void kill_hook(int point) {
    if (point == g_point && --g_left == 0) raise(SIGKILL);
}

/* Arm: die at the n-th time point is reached (n >= 1). */
static void arm(int point, int n) {
    g_point = point;
    g_left = n;
    mk__ds_test_hook = kill_hook;
}

/* Run fn in a child that opens the segment itself; expect death by SIGKILL
 * (killed = 1) or a clean exit (killed = 0). */
static void in_child(void (*fn)(mk_shm *s, int arg), int arg, int killed) {
    pid_t pid = fork();
    if (pid < 0) DIE("fork");
    if (pid == 0) {
        mk_shm *s;
        CHECK(mk_shm_open(g_seg, 0, &s));
        fn(s, arg);
        _exit(0);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid) DIE("waitpid");
    if (killed && !(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
        DIE("child was not killed at its crash point (status %#x)", st);
    if (!killed && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) DIE("child failed (%#x)", st);
}

/* ---- spsc -------------------------------------------------------------------------- */

static void spsc_pusher(mk_shm *s, int n) { /* pushes 1.., killed inside push n+1 */
    mk_spsc *q;
    CHECK(mk_spsc_open(s, "q", 8, &q));
    arm(MK__DS_CP_SPSC_PUSH_COPIED, n + 1);
    for (uint64_t v = 1;; v++) CHECK(mk_spsc_push_wait(q, &v, LONG_NS));
}

static void spsc_popper(mk_shm *s, int n) { /* pops 1..n, killed inside pop n+1 */
    mk_spsc *q;
    CHECK(mk_spsc_open(s, "q", 8, &q));
    arm(MK__DS_CP_SPSC_POP_COPIED, n + 1);
    for (uint64_t want = 1;; want++) {
        uint64_t v;
        CHECK(mk_spsc_pop_wait(q, &v, LONG_NS));
        if (v != want) DIE("child popped %" PRIu64 ", expected %" PRIu64, v, want);
    }
}

static void spsc_case(int n) {
    mk_spsc *q;
    uint64_t v;
    CHECK(mk_spsc_create(g_shm, "q", CAP, 8, MK_IPC_EXCL, &q));
    /* producer dies inside push n+1; the consumer (us) pops concurrently */
    pid_t pid = fork();
    if (pid == 0) {
        mk_shm *s;
        CHECK(mk_shm_open(g_seg, 0, &s));
        spsc_pusher(s, n);
    }
    for (uint64_t want = 1; want <= (uint64_t)n; want++) {
        CHECK(mk_spsc_pop_wait(q, &v, LONG_NS));
        if (v != want) DIE("spsc: popped %" PRIu64 ", expected %" PRIu64, v, want);
    }
    int st;
    waitpid(pid, &st, 0);
    if (!WIFSIGNALED(st)) DIE("spsc producer not killed (%#x)", st);
    EXPECT(mk_spsc_pop_wait(q, &v, SHORT_NS), MK_ETIMEDOUT); /* nothing half-published */
    /* a new producer takes over: next value n+1 is pushed by us now */
    v = (uint64_t)n + 1;
    CHECK(mk_spsc_try_push(q, &v));
    /* consumer dies inside pop 2 of the queue's contents: the element stays */
    for (v = (uint64_t)n + 2; v < (uint64_t)n + 1 + CAP; v++) CHECK(mk_spsc_try_push(q, &v));
    pid = fork();
    if (pid == 0) {
        mk_spsc *q2;
        mk_shm *s;
        CHECK(mk_shm_open(g_seg, 0, &s));
        CHECK(mk_spsc_open(s, "q", 8, &q2));
        uint64_t got;
        CHECK(mk_spsc_try_pop(q2, &got));
        arm(MK__DS_CP_SPSC_POP_COPIED, 1);
        mk_spsc_try_pop(q2, &got);
        _exit(0);
    }
    waitpid(pid, &st, 0);
    if (!WIFSIGNALED(st)) DIE("spsc consumer not killed (%#x)", st);
    for (uint64_t want = (uint64_t)n + 2; want < (uint64_t)n + 1 + CAP; want++) {
        CHECK(mk_spsc_try_pop(q, &v));
        if (v != want) DIE("spsc after consumer crash: %" PRIu64 " != %" PRIu64, v, want);
    }
    EXPECT(mk_spsc_try_pop(q, &v), MK_EEMPTY);
    mk_spsc_close(q);
    CHECK(mk_shm_obj_remove(g_shm, "q"));
    (void)spsc_popper;
}

/* ---- ring ---------------------------------------------------------------------------- */

static void ring_pusher(mk_shm *s, int n) { /* n bulk pushes of 3, dies in the next */
    mk_ring *r;
    CHECK(mk_ring_open(s, "r", 8, &r));
    arm(MK__DS_CP_RING_PUSH_COPIED, n + 1);
    for (uint64_t v = 1;; v += 3) {
        uint64_t b[3] = {v, v + 1, v + 2};
        /* whole bulks only, so that crash point n+1 is inside bulk n+1 */
        while (mk_ring_capacity(r) - mk_ring_size(r) < 3) CHECK(mk_ring_wait_not_full(r, LONG_NS));
        if (mk_ring_push_bulk(r, b, 3) != 3) DIE("ring: a bulk push with room fell short");
    }
}

static void ring_reserver(mk_shm *s, int n) { /* reserves and writes, dies before commit */
    mk_ring *r;
    CHECK(mk_ring_open(s, "r", 8, &r));
    size_t got;
    uint64_t *w = mk_ring_reserve(r, (size_t)n, &got);
    for (size_t i = 0; i < got; i++) w[i] = 999;
    raise(SIGKILL);
}

static void ring_peeker(mk_shm *s, int n) { /* peeks n, dies before release */
    mk_ring *r;
    CHECK(mk_ring_open(s, "r", 8, &r));
    size_t got;
    mk_ring_peek(r, (size_t)n, &got);
    arm(MK__DS_CP_RING_POP_COPIED, 1);
    uint64_t b[CAP];
    mk_ring_pop_bulk(r, b, 2); /* dies inside: nothing consumed */
}

static void ring_case(int n) {
    mk_ring *r;
    CHECK(mk_ring_create(g_shm, "r", CAP, 8, MK_IPC_EXCL, &r));
    pid_t pid = fork();
    if (pid == 0) {
        mk_shm *s;
        CHECK(mk_shm_open(g_seg, 0, &s));
        ring_pusher(s, n);
    }
    uint64_t want = 1, v;
    while (want <= 3 * (uint64_t)n) {
        CHECK(mk_ring_wait_not_empty(r, LONG_NS));
        while (mk_ring_pop_bulk(r, &v, 1) == 1) {
            if (v != want) DIE("ring: %" PRIu64 " != %" PRIu64, v, want);
            want++;
        }
    }
    int st;
    waitpid(pid, &st, 0);
    if (!WIFSIGNALED(st)) DIE("ring producer not killed (%#x)", st);
    EXPECT(mk_ring_wait_not_empty(r, SHORT_NS), MK_ETIMEDOUT);
    in_child(ring_reserver, 5, 1);
    EXPECT(mk_ring_wait_not_empty(r, SHORT_NS), MK_ETIMEDOUT);
    uint64_t b[CAP];
    for (int i = 0; i < 5; i++) b[i] = want + (uint64_t)i;
    if (mk_ring_push_bulk(r, b, 5) != 5) DIE("ring: push after crashed reservation");
    in_child(ring_peeker, 3, 1);
    if (mk_ring_pop_bulk(r, b, CAP) != 5) DIE("ring: elements lost by a crashed consumer");
    for (int i = 0; i < 5; i++)
        if (b[i] != want + (uint64_t)i) DIE("ring: wrong element after consumer crash");
    mk_ring_close(r);
    CHECK(mk_shm_obj_remove(g_shm, "r"));
}

/* ---- mpmc ------------------------------------------------------------------------------- */

static void mpmc_pusher(mk_shm *s, int n) {
    mk_mpmc *q;
    CHECK(mk_mpmc_open(s, "m", 8, &q));
    arm(MK__DS_CP_MPMC_PUSH_CLAIMED, n + 1);
    for (uint64_t v = 1;; v++) CHECK(mk_mpmc_try_push(q, &v));
}

static void mpmc_popper(mk_shm *s, int n) {
    mk_mpmc *q;
    CHECK(mk_mpmc_open(s, "m", 8, &q));
    arm(MK__DS_CP_MPMC_POP_CLAIMED, n + 1);
    for (;;) {
        uint64_t v;
        CHECK(mk_mpmc_try_pop(q, &v));
    }
}

static void mpmc_case(int n) {
    mk_mpmc *q;
    uint64_t v;
    size_t fixed;
    CHECK(mk_mpmc_create(g_shm, "m", CAP, 8, MK_IPC_EXCL, &q));
    /* advance the positions so that crashes happen at every cell over the runs */
    for (int i = 0; i < n; i++) {
        v = 0;
        CHECK(mk_mpmc_try_push(q, &v));
        CHECK(mk_mpmc_try_pop(q, &v));
    }
    int before = n % (CAP - 1); /* elements pushed before the crash */
    for (int i = 0; i < before; i++) {
        v = 100 + (uint64_t)i;
        CHECK(mk_mpmc_try_push(q, &v));
    }
    in_child(mpmc_pusher, 0, 1); /* dies holding the next cell */
    v = 1000;
    if (before + 1 < CAP) CHECK(mk_mpmc_try_push(q, &v)); /* a live producer goes on */
    for (int i = 0; i < before; i++) {
        CHECK(mk_mpmc_pop_wait(q, &v, LONG_NS));
        if (v != 100 + (uint64_t)i) DIE("mpmc: %" PRIu64 " out of order", v);
    }
    EXPECT(mk_mpmc_pop_wait(q, &v, SHORT_NS), MK_ETIMEDOUT); /* stuck at the dead cell */
    CHECK(mk_mpmc_repair(q, &fixed));
    if (fixed != 1) DIE("mpmc: repaired %zu cells, expected 1", fixed);
    if (before + 1 < CAP) {
        CHECK(mk_mpmc_pop_wait(q, &v, LONG_NS));
        if (v != 1000) DIE("mpmc: %" PRIu64 " after the hole, expected 1000", v);
    }
    EXPECT(mk_mpmc_try_pop(q, &v), MK_EEMPTY);

    /* a consumer dies holding a cell: producers stop when they wrap to it */
    for (v = 1; v <= CAP; v++) CHECK(mk_mpmc_try_push(q, &v));
    in_child(mpmc_popper, n % CAP, 1);
    /* the child popped n % CAP cells: that many pushes fit before the dead one */
    EXPECT(mk_mpmc_push_wait(q, &v, SHORT_NS), n % CAP > 0 ? MK_OK : MK_ETIMEDOUT);
    while (mk_mpmc_try_push(q, &v) == MK_OK) v++;
    EXPECT(mk_mpmc_push_wait(q, &v, SHORT_NS), MK_ETIMEDOUT);
    CHECK(mk_mpmc_repair(q, &fixed));
    if (fixed != 1) DIE("mpmc: repaired %zu consumer cells, expected 1", fixed);
    CHECK(mk_mpmc_try_push(q, &v));
    size_t left = 0;
    while (mk_mpmc_try_pop(q, &v) == MK_OK) left++;
    if (left != CAP) DIE("mpmc: %zu elements after repair, expected %d", left, CAP);
    mk_mpmc_close(q);
    CHECK(mk_shm_obj_remove(g_shm, "m"));
}

/* ---- pool ------------------------------------------------------------------------------- */

static void pool_holder(mk_shm *s, int n) { /* acquires n slots, dies holding them */
    mk_objpool *p;
    CHECK(mk_objpool_open(s, "p", 32, &p));
    uint32_t i;
    for (int k = 0; k < n; k++) CHECK(mk_objpool_acquire(p, &i));
    raise(SIGKILL);
}

static void pool_in_acquire(mk_shm *s, int n) {
    mk_objpool *p;
    CHECK(mk_objpool_open(s, "p", 32, &p));
    arm(MK__DS_CP_POOL_ACQUIRED, n);
    uint32_t i;
    for (;;) CHECK(mk_objpool_acquire(p, &i));
}

static void pool_in_release(mk_shm *s, int n) {
    mk_objpool *p;
    CHECK(mk_objpool_open(s, "p", 32, &p));
    uint32_t i[16];
    for (int k = 0; k < n; k++) CHECK(mk_objpool_acquire(p, &i[k]));
    arm(MK__DS_CP_POOL_RELEASING, n);
    for (int k = 0; k < n; k++) CHECK(mk_objpool_release(p, i[k]));
}

static void pool_case(int n) {
    const size_t slots = 16;
    mk_objpool *p;
    size_t got;
    CHECK(mk_objpool_create(g_shm, "p", slots, 32, MK_IPC_EXCL, &p));
    int k = 1 + n % 8;
    in_child(pool_holder, k, 1);
    if (mk_objpool_count_free(p) != slots - (size_t)k) DIE("pool: free count after kill");
    CHECK(mk_objpool_reclaim(p, &got));
    if (got != (size_t)k) DIE("pool: reclaimed %zu, expected %d", got, k);
    in_child(pool_in_acquire, k, 1); /* k-1 owned by the dead child, one in limbo */
    CHECK(mk_objpool_reclaim(p, &got));
    if (got != (size_t)k - 1) DIE("pool: reclaimed %zu, expected %d", got, k - 1);
    CHECK(mk_objpool_repair(p, &got));
    if (got != 1) DIE("pool: repaired %zu, expected 1", got);
    in_child(pool_in_release, k, 1); /* k-1 released, one in limbo */
    CHECK(mk_objpool_reclaim(p, &got));
    if (got != 0) DIE("pool: reclaimed %zu, expected 0", got);
    CHECK(mk_objpool_repair(p, &got));
    if (got != 1) DIE("pool: repaired %zu after release crash", got);
    if (mk_objpool_count_free(p) != slots) DIE("pool: not every slot is back");
    uint32_t seen[16] = {0}, i;
    for (size_t s = 0; s < slots; s++) {
        CHECK(mk_objpool_acquire(p, &i));
        if (seen[i]++) DIE("pool: slot %u twice", i);
    }
    EXPECT(mk_objpool_acquire(p, &i), MK_EEMPTY);
    mk_objpool_close(p);
    CHECK(mk_shm_obj_remove(g_shm, "p"));
}

/* ---- a sleeper killed in its sleep -------------------------------------------------------- */

static void sleeper(mk_shm *s, int n) {
    (void)n;
    mk_spsc *q;
    CHECK(mk_spsc_open(s, "w", 8, &q));
    uint64_t v;
    mk_spsc_pop_wait(q, &v, -1);
    _exit(3); /* must not get here: killed while asleep */
}

static void sleeper_case(void) {
    mk_spsc *q;
    CHECK(mk_spsc_create(g_shm, "w", CAP, 8, MK_IPC_EXCL, &q));
    pid_t pid = fork();
    if (pid == 0) {
        mk_shm *s;
        CHECK(mk_shm_open(g_seg, 0, &s));
        sleeper(s, 0);
    }
    usleep(50000);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    if (!WIFSIGNALED(st)) DIE("sleeper exited (%#x)", st);
    uint64_t v = 5;
    CHECK(mk_spsc_try_push(q, &v));
    CHECK(mk_spsc_try_pop(q, &v));
    EXPECT(mk_spsc_pop_wait(q, &v, SHORT_NS), MK_ETIMEDOUT);
    mk_spsc_close(q);
    CHECK(mk_shm_obj_remove(g_shm, "w"));
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 20;
    g_parent = getpid();
    alarm(300);
    snprintf(g_seg, sizeof g_seg, "/mk-ds-crash-%ld", (long)getpid());
    mk_shm_config cfg = {.size = 1u << 20, .policy = MK_POLICY_TLSF};
    CHECK(mk_shm_create(g_seg, &cfg, &g_shm));
    for (int n = 0; n < rounds; n++) {
        spsc_case(n);
        ring_case(n);
        mpmc_case(n);
        pool_case(n);
    }
    sleeper_case();
    mk_fault f;
    CHECK(mk_shm_validate(g_shm, &f));
    printf("ds_crash: %d rounds of spsc, ring, mpmc and pool crashes, all as documented\n", rounds);
    mk_shm_close(g_shm);
    mk_shm_unlink(g_seg, 0);
    return 0;
}
