/*
 * Thread handles: each thread that shares a handle gets a cache of its own.
 *
 * A handle's cache is guarded by the handle's mutex, so two threads busy on
 * one handle would wait for each other on every operation (0.13x one
 * thread's throughput, bench-shm-threads), while two handles in one process
 * scale as two processes do. So once the process has a second thread, each
 * thread that allocates or frees through a handle is given a handle of its
 * own for its cache: a *thread handle*, on the handle's own mapping, with a
 * process-table slot, a cache table and a mutex of its own, which no other
 * thread uses while this one holds it. Only its cache is used: everything
 * that takes the segment lock still goes through the caller's handle. A
 * cached plain block is a plain block of the segment, so any thread may
 * free it, through any handle.
 *
 * Owned blocks. A thread handle's table keeps owned lists whose owner word
 * is its parent's (mk__shm_cache.owner): the blocks belong to the handle
 * the caller uses, whose slot lives as long as the process keeps it open,
 * and not to a thread. No block is freed twice for it: a thread handle is
 * closed (its lists given back) before its parent detaches, and when the
 * process dies both slots die together; mk_shm_reclaim's walk for the
 * blocks of dead owners runs only after a reap of every dead slot in the
 * same hold of the lock, so no table that lists a dead owner's block is
 * left by then. (Unless the process dies during a reap pass, found alive
 * at its thread handle's slot and dead at its own, later one: then the
 * walk may free a block that the thread handle's table still lists, and
 * that table's reap finds it no longer a cached block and stops that list
 * there, as at damage; the list's other blocks stay owned by the dead
 * owner, for the next reclaim. Never a block freed twice.)
 *
 *     handle s (id 7)                 records (process-wide, static)
 *     +-------------+                 +-------+------+-------+
 *     | its cache   | <-- thread A -- | id 7  | held | self  |
 *     +-------------+                 | id 7  | held | sub 1 | <-- thread B
 *     thread handle sub 1 (slot 3)    | id 7  | free | sub 2 |   (its thread exited)
 *     thread handle sub 2 (slot 5)    | 0: unused            |
 *                                     +-------+------+-------+
 *
 * Records live in static memory, so a thread's table of (handle id,
 * record) entries stays safe to use after the handle is closed: a record
 * word holds the handle's id (never reused) and whether a thread holds it,
 * and every change of it is one atomic operation that names the id. The
 * first thread to ask gets the handle's own cache (the "self" record),
 * later ones a thread handle, up to SUBS per handle; past that a thread
 * shares the handle's own cache under its mutex, as before. A thread that
 * exits lets its record go (mk__os_thread_exit_arm); the next thread to ask
 * takes it, with the cached blocks in it. mk_shm_close closes the handle's
 * thread handles, which gives their cached blocks back.
 *
 * One mapping. A thread handle borrows its parent's mapping, so every word
 * of the segment has one address in the process: ThreadSanitizer sees the
 * segment's lock as one lock (with a mapping each it saw two, and took the
 * lock's hand-offs for races), and the words that threads read while
 * others write them are atomic (cache.c, "Unlocked reads").
 */
#include "shm_int.h"

#include <string.h>

#define SUBS    8u  /* thread handles per handle */
#define RECORDS 64u /* records in the process */
#define ENTRIES 8u  /* handles a thread keeps its record of */

typedef struct record {
    _Atomic uint64_t word; /* handle id << 1 | held by a thread; 0: unused */
    mk_shm *sub;           /* the thread handle; NULL: the handle's own cache */
} record;

typedef struct entry {
    uint64_t id; /* the handle's */
    int rec;     /* index in g_rec, -1: none (share the handle's cache) */
    mk_shm *use; /* whose cache */
} entry;

typedef struct thread_state {
    unsigned n;
    entry e[ENTRIES];
} thread_state;

static record g_rec[RECORDS];
static _Atomic uint64_t g_next_id = 1;
static _Atomic int g_key; /* the thread-exit callback: 0 not made, 1 being made, 2 made, 3 failed */
static _Thread_local thread_state *tl;

uint64_t mk__shm_new_id(void) { return atomic_fetch_add(&g_next_id, 1); }

static void let_go(const entry *e) {
    if (e->rec < 0) return;
    uint64_t held = e->id << 1 | 1;
    atomic_compare_exchange_strong(&g_rec[e->rec].word, &held, e->id << 1);
}

static size_t state_bytes(void) {
    size_t page = mk__os_page_size(); /* not malloc: the library may be it */
    return (sizeof(thread_state) + page - 1) & ~(page - 1);
}

/* At thread exit: the thread's records go back to their handles. */
static void thread_done(void *arg) {
    thread_state *t = arg;
    for (unsigned i = 0; i < t->n; i++) let_go(&t->e[i]);
    if (tl == t) tl = NULL;
    mk__os_release(t, state_bytes());
}

static bool key_made(void) {
    int st = atomic_load_explicit(&g_key, memory_order_acquire);
    if (st == 0 && atomic_compare_exchange_strong(&g_key, &st, 1)) {
        st = mk__os_thread_exit_init(MK__OS_EXIT_SHM, thread_done) == MK_OK ? 2 : 3;
        atomic_store_explicit(&g_key, st, memory_order_release);
    }
    while (st == 1) {
        mk__os_yield();
        st = atomic_load_explicit(&g_key, memory_order_acquire);
    }
    return st == 2;
}

static thread_state *this_thread(void) {
    if (tl || !key_made()) return tl;
    void *mem = NULL;
    if (mk__os_alloc(state_bytes(), &mem) != MK_OK) return NULL;
    if (mk__os_thread_exit_arm(MK__OS_EXIT_SHM, mem) != MK_OK) {
        mk__os_release(mem, state_bytes());
        return NULL;
    }
    tl = mem; /* zero-filled */
    return tl;
}

static void keep(thread_state *t, entry e) {
    if (t->n == ENTRIES) { /* the oldest goes */
        let_go(&t->e[0]);
        memmove(&t->e[0], &t->e[1], (ENTRIES - 1) * sizeof(entry));
        t->n--;
    }
    t->e[t->n++] = e;
}

/* A new record for s, held: its own cache if no record has it yet, else a
 * thread handle. -1: none (no record free, the handle cannot be opened). */
static int new_record(mk_shm *s, bool self) {
    mk_shm *sub = NULL;
    if (!self && mk__shm_open_thread_handle(s, &sub) != MK_OK) return -1;
    for (unsigned i = 0; i < RECORDS; i++) {
        uint64_t w = 0;
        if (atomic_compare_exchange_strong(&g_rec[i].word, &w, s->id << 1 | 1)) {
            g_rec[i].sub = sub;
            return (int)i;
        }
    }
    if (sub) mk_shm_close(sub);
    return -1;
}

/* Under s's mutex: a record of s that no thread holds, now held by this
 * one, else a new one. */
static int take_record(mk_shm *s) {
    unsigned subs = 0;
    bool self = false;
    for (unsigned i = 0; i < RECORDS; i++) {
        uint64_t w = atomic_load(&g_rec[i].word);
        if (w >> 1 != s->id) continue;
        if (!(w & 1) && atomic_compare_exchange_strong(&g_rec[i].word, &w, w | 1)) return (int)i;
        if (g_rec[i].sub)
            subs++;
        else
            self = true;
    }
    return self && subs >= SUBS ? -1 : new_record(s, !self);
}

mk_shm *mk__shm_thread_cache_of(mk_shm *s) {
    thread_state *t = this_thread();
    if (!t) return s;
    for (unsigned i = 0; i < t->n; i++)
        if (t->e[i].id == s->id) return t->e[i].use;
    mk__shm_local_lock(s);
    int r = take_record(s);
    mk__shm_local_unlock(s);
    entry e = {s->id, r, r >= 0 && g_rec[r].sub ? g_rec[r].sub : s};
    keep(t, e);
    return e.use;
}

bool mk__shm_thread_flush(mk_shm *s) {
    bool any = false;
    mk__shm_local_lock(s); /* no record made meanwhile; then each sub's own locks */
    for (unsigned i = 0; i < RECORDS; i++) {
        if (atomic_load(&g_rec[i].word) >> 1 != s->id) continue;
        mk_shm *sub = g_rec[i].sub; /* s's: written under s's mutex */
        if (!sub) continue;
        any = true;
        (void)mk_shm_cache_flush(sub);
    }
    mk__shm_local_unlock(s);
    return any;
}

void mk__shm_thread_close(mk_shm *s) {
    for (unsigned i = 0; i < RECORDS; i++) {
        if (atomic_load(&g_rec[i].word) >> 1 != s->id) continue;
        mk_shm *sub = g_rec[i].sub;
        g_rec[i].sub = NULL;
        atomic_store(&g_rec[i].word, 0);
        if (sub) mk_shm_close(sub); /* its blocks back to the heap, its slot freed */
    }
    thread_state *t = tl; /* this thread's entry for s, now stale */
    for (unsigned i = 0; t && i < t->n; i++)
        if (t->e[i].id == s->id) {
            memmove(&t->e[i], &t->e[i + 1], (t->n - i - 1) * sizeof(entry));
            t->n--;
            break;
        }
}
