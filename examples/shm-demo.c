/*
 * shm-demo: several processes share one memkit heap, and one of them dies.
 *
 * The parent creates a shared-memory segment and forks worker processes.
 * Each worker opens the segment itself and loops: it publishes blocks under
 * names ("w1.42": worker 1's 42nd block), reads the blocks other workers
 * published and checks their contents, keeps some private scratch blocks
 * owned by itself, and retires its oldest published blocks. A shared
 * scoreboard (itself a named object) counts what each worker did.
 *
 * Part-way through, the parent kills one worker with SIGKILL, possibly while
 * it holds the segment's lock in the middle of an allocation. The others
 * must carry on; the heap must validate while they run; the dead worker's
 * owned blocks are reclaimed and the blocks it had published are still
 * readable with their contents intact. The program exits 0 only if every
 * one of those checks passed.
 *
 *   shm-demo [--workers N] [--ops N] [--seed S] [--keep]
 *
 * --keep leaves the segment in place afterwards, for the memkit CLI:
 * memkit stat / dump / objects / validate NAME, then memkit rm NAME.
 */
#define _POSIX_C_SOURCE 200809L /* fork, kill, waitpid, clock_gettime, nanosleep */
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "memkit/shm.h"

enum { MAX_WORKERS = 16, MAX_PUB = 48, MAX_SCRATCH = 16 };

#define BOARD_TYPE 0x424f5244u /* "BORD" */
#define ITEM_TYPE  0x4954454du /* "ITEM" */

/* One worker's counters, in shared memory. Only the worker writes them;
 * the parent reads them while the worker runs, hence the atomics. */
typedef struct wstat {
    _Atomic uint64_t ops;       /* operations done */
    _Atomic uint64_t bytes;     /* bytes allocated (published + scratch) */
    _Atomic uint64_t published; /* blocks published by name */
    _Atomic uint64_t read_ok;   /* others' blocks read and verified */
    _Atomic uint64_t read_bad;  /* others' blocks whose contents were wrong */
    _Atomic uint64_t missed;    /* looked up but retired meanwhile (not an error) */
    _Atomic uint64_t last_seq;  /* highest sequence number published */
    _Atomic uint64_t errors;    /* library calls that failed */
    _Atomic int32_t pid;
    _Atomic int32_t done;      /* 1: finished and cleaned up */
    _Atomic int32_t first_err; /* the first failed call's error code, and which call */
    char first_call[28];
} wstat;

typedef struct board {
    _Atomic uint32_t go; /* workers start together */
    uint32_t nworkers;
    wstat w[MAX_WORKERS];
} board;

/* A published block: a header then len bytes that depend on (writer, seq).
 * ready is set last, with release order, so a reader that sees it set also
 * sees the data. */
typedef struct item {
    _Atomic uint32_t ready;
    uint32_t writer;
    uint64_t seq;
    uint64_t len;
    unsigned char data[];
} item;

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static unsigned char content(uint32_t writer, uint64_t seq, size_t i) {
    return (unsigned char)(writer * 97u + seq * 13u + i * 7u + (i >> 8));
}

static void item_name(char *buf, size_t cap, uint32_t writer, uint64_t seq) {
    snprintf(buf, cap, "w%" PRIu32 ".%" PRIu64, writer, seq);
}

/* Check a published item's header and contents. */
static int item_ok(const item *it, uint32_t writer, uint64_t seq, uint64_t size) {
    if (it->writer != writer || it->seq != seq || it->len + sizeof *it > size) return 0;
    for (size_t i = 0; i < it->len; i++)
        if (it->data[i] != content(writer, seq, i)) return 0;
    return 1;
}

static void sleep_us(long us) {
    struct timespec t = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    nanosleep(&t, NULL);
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- worker ---------------------------------------------------------------- */

/* Count a failed library call; remember the first one for the summary. */
static void note_error(wstat *me, const char *call, int rc) {
    if (atomic_fetch_add_explicit(&me->errors, 1, memory_order_relaxed) == 0) {
        snprintf(me->first_call, sizeof me->first_call, "%s", call);
        atomic_store_explicit(&me->first_err, rc, memory_order_release);
    }
}

static int worker(const char *segname, uint32_t id, uint64_t ops, uint64_t seed) {
    mk_shm *s;
    int rc = mk_shm_open(segname, 0, &s);
    if (rc != MK_OK) {
        fprintf(stderr, "worker %u: open: %s\n", id, mk_strerror(rc));
        return 1;
    }
    mk_shm_obj bo;
    if ((rc = mk_shm_obj_find(s, "demo.board", &bo)) != MK_OK) {
        fprintf(stderr, "worker %u: board: %s\n", id, mk_strerror(rc));
        return 1;
    }
    board *b = mk_shm_ptr(s, bo.offset);
    wstat *me = &b->w[id];
    atomic_store_explicit(&me->pid, (int32_t)getpid(), memory_order_relaxed);
    while (!atomic_load_explicit(&b->go, memory_order_acquire)) sleep_us(100);

    uint64_t rng = seed * 1000003u + id;
    uint64_t pub[MAX_PUB]; /* sequence numbers of my live published blocks, oldest first */
    size_t npub = 0;
    mk_off scratch[MAX_SCRATCH] = {0};
    uint64_t seq = 0;
    static unsigned char copy[8192];
    char name[MK_SHM_OBJ_NAME_MAX + 1];

    for (uint64_t op = 0; op < ops; op++) {
        atomic_fetch_add_explicit(&me->ops, 1, memory_order_relaxed);
        uint64_t r = splitmix(&rng) % 100;
        if (r < 30 && npub < MAX_PUB) { /* publish a block by name */
            size_t len = 64 + (size_t)(splitmix(&rng) % 4000);
            mk_off off;
            item_name(name, sizeof name, id, ++seq);
            rc = mk_shm_obj_create(s, name, ITEM_TYPE, sizeof(item) + len, MK_SHM_OBJ_EXCL, &off,
                                   NULL);
            if (rc == MK_OK) {
                item *it = mk_shm_ptr(s, off);
                it->writer = id;
                it->seq = seq;
                it->len = len;
                for (size_t i = 0; i < len; i++) it->data[i] = content(id, seq, i);
                atomic_store_explicit(&it->ready, 1, memory_order_release);
                pub[npub++] = seq;
                atomic_fetch_add_explicit(&me->published, 1, memory_order_relaxed);
                atomic_fetch_add_explicit(&me->bytes, len, memory_order_relaxed);
                atomic_store_explicit(&me->last_seq, seq, memory_order_release);
            } else {
                note_error(me, "mk_shm_obj_create", rc);
            }
        } else if (r < 65) { /* read another worker's block */
            uint32_t other = (uint32_t)(splitmix(&rng) % b->nworkers);
            if (other == id) other = (other + 1) % b->nworkers;
            uint64_t last = atomic_load_explicit(&b->w[other].last_seq, memory_order_acquire);
            if (last == 0) continue;
            uint64_t want = last - splitmix(&rng) % (last < 32 ? last : 32);
            item_name(name, sizeof name, other, want);
            mk_shm_obj o1, o2;
            if ((rc = mk_shm_obj_find(s, name, &o1)) != MK_OK) {
                if (rc != MK_ENOENT) note_error(me, "mk_shm_obj_find", rc);
                atomic_fetch_add_explicit(&me->missed, 1, memory_order_relaxed);
                continue;
            }
            item *it = mk_shm_ptr(s, o1.offset);
            if (!it || !atomic_load_explicit(&it->ready, memory_order_acquire)) {
                atomic_fetch_add_explicit(&me->missed, 1, memory_order_relaxed);
                continue;
            }
            /* Copy, then look the name up again: names are never reused, so
             * if it is still there at the same offset, the block was live for
             * the whole copy and its contents must be exact. */
            size_t n = o1.size < sizeof copy ? (size_t)o1.size : sizeof copy;
            memcpy(copy, it, n);
            if (mk_shm_obj_find(s, name, &o2) != MK_OK || o2.offset != o1.offset) {
                atomic_fetch_add_explicit(&me->missed, 1, memory_order_relaxed);
                continue;
            }
            if (item_ok((const item *)copy, other, want, n))
                atomic_fetch_add_explicit(&me->read_ok, 1, memory_order_relaxed);
            else
                atomic_fetch_add_explicit(&me->read_bad, 1, memory_order_relaxed);
        } else if (r < 85) { /* private scratch block, owned by this process */
            unsigned k = (unsigned)(splitmix(&rng) % MAX_SCRATCH);
            if (scratch[k]) {
                if ((rc = mk_shm_free(s, scratch[k])) != MK_OK) note_error(me, "mk_shm_free", rc);
                scratch[k] = 0;
            } else {
                size_t len = 16 + (size_t)(splitmix(&rng) % 2000);
                rc = mk_shm_alloc_ex(s, len, 0, MK_SHM_OWNED, &scratch[k]);
                if (rc == MK_OK) {
                    memset(mk_shm_ptr(s, scratch[k]), (int)id, len);
                    atomic_fetch_add_explicit(&me->bytes, len, memory_order_relaxed);
                } else {
                    note_error(me, "mk_shm_alloc_ex", rc);
                    scratch[k] = 0;
                }
            }
        } else if (npub > 0) { /* retire my oldest published block */
            item_name(name, sizeof name, id, pub[0]);
            if ((rc = mk_shm_obj_remove(s, name)) != MK_OK) note_error(me, "mk_shm_obj_remove", rc);
            memmove(pub, pub + 1, --npub * sizeof *pub);
        }
    }
    /* Clean up: everything this worker holds goes back to the heap. */
    for (size_t i = 0; i < npub; i++) {
        item_name(name, sizeof name, id, pub[i]);
        if ((rc = mk_shm_obj_remove(s, name)) != MK_OK) note_error(me, "mk_shm_obj_remove", rc);
    }
    for (unsigned k = 0; k < MAX_SCRATCH; k++)
        if (scratch[k] && (rc = mk_shm_free(s, scratch[k])) != MK_OK)
            note_error(me, "mk_shm_free", rc);
    int status = atomic_load(&me->errors) || atomic_load(&me->read_bad) ? 1 : 0;
    atomic_store_explicit(&me->done, 1, memory_order_release);
    if (mk_shm_close(s) != MK_OK) status = 1; /* me is gone with the mapping */
    return status;
}

/* ---- parent ---------------------------------------------------------------- */

static int failures;

static void step(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void step(const char *fmt, ...) {
    static int n;
    va_list ap;
    va_start(ap, fmt);
    printf("%2d. ", ++n);
    vprintf(fmt, ap);
    va_end(ap);
    fflush(stdout);
}

static void result(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void result(int ok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("    %s ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (!ok) failures++;
    fflush(stdout);
}

static int validate(mk_shm *s, const char *when) {
    mk_fault f = {0};
    int rc = mk_shm_validate(s, &f);
    if (rc == MK_OK)
        result(1, "heap validates %s", when);
    else
        result(0, "heap does not validate %s: %s: %s at offset %" PRIu64, when, mk_strerror(rc),
               f.invariant ? f.invariant : "?", f.offset);
    return rc;
}

/* The dead worker's published blocks, collected from the directory. The
 * visitor runs under the segment's lock, so it only copies the records;
 * they are checked afterwards. */
typedef struct dead_scan {
    char prefix[16];
    size_t n;
    mk_shm_obj obj[MAX_PUB + 1];
} dead_scan;

static int scan_dead(const mk_shm_obj *o, void *arg) {
    dead_scan *d = arg;
    if (strncmp(o->name, d->prefix, strlen(d->prefix)) == 0 && d->n < MAX_PUB + 1)
        d->obj[d->n++] = *o;
    return 0;
}

static uint64_t parse_u64(const char *s, const char *what) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end) {
        fprintf(stderr, "shm-demo: bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    uint32_t nworkers = 4;
    uint64_t ops = 100000, seed = 42;
    int keep = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--workers") && i + 1 < argc)
            nworkers = (uint32_t)parse_u64(argv[++i], "worker count");
        else if (!strcmp(argv[i], "--ops") && i + 1 < argc)
            ops = parse_u64(argv[++i], "operation count");
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            seed = parse_u64(argv[++i], "seed");
        else if (!strcmp(argv[i], "--keep"))
            keep = 1;
        else {
            fprintf(stderr, "usage: shm-demo [--workers 3..%d] [--ops N] [--seed S] [--keep]\n",
                    MAX_WORKERS);
            return 2;
        }
    }
    if (nworkers < 3 || nworkers > MAX_WORKERS || ops < 300) {
        fprintf(stderr, "shm-demo: need 3..%d workers and at least 300 operations\n", MAX_WORKERS);
        return 2;
    }
    const uint32_t victim = nworkers / 2;
    char segname[64];
    snprintf(segname, sizeof segname, "/memkit-demo-%d", (int)getpid());

    printf("memkit shm-demo: %u processes share one heap, and one of them is killed\n\n", nworkers);
    printf("Each worker process publishes blocks by name, reads and checks the blocks the\n"
           "others published, allocates private blocks it owns, and retires old blocks:\n"
           "%" PRIu64 " operations each (seed %" PRIu64 "). Part-way through, worker %u is "
           "killed with\n"
           "SIGKILL, perhaps while it holds the heap's lock. The others must carry on, the\n"
           "heap must validate, and the dead worker's blocks must be recovered.\n\n",
           ops, seed, victim);

    /* 1. The segment and the scoreboard. */
    mk_shm_config cfg = {.size = 1 << 20, .max_size = 64 << 20, .policy = MK_POLICY_TLSF};
    mk_shm *s;
    int rc = mk_shm_create(segname, &cfg, &s);
    if (rc != MK_OK) {
        fprintf(stderr, "shm-demo: cannot create %s: %s\n", segname, mk_strerror(rc));
        return 1;
    }
    mk_off boff;
    rc =
        mk_shm_obj_create(s, "demo.board", BOARD_TYPE, sizeof(board), MK_SHM_OBJ_EXCL, &boff, NULL);
    if (rc != MK_OK) {
        fprintf(stderr, "shm-demo: scoreboard: %s\n", mk_strerror(rc));
        mk_shm_close(s);
        mk_shm_unlink(segname, 0);
        return 1;
    }
    board *b = mk_shm_ptr(s, boff);
    b->nworkers = nworkers;
    mk_stats base = {0};
    mk_shm_stats(s, &base);
    step("created segment %s: %zu KiB now, may grow to %zu MiB, policy %s\n", segname,
         cfg.size >> 10, cfg.max_size >> 20, mk_policy_name(cfg.policy));

    /* 2. The workers. */
    pid_t pids[MAX_WORKERS];
    for (uint32_t i = 0; i < nworkers; i++) {
        fflush(stdout);
        pids[i] = fork();
        if (pids[i] < 0) {
            perror("fork");
            return 1;
        }
        if (pids[i] == 0) {
            mk_shm_close(s); /* in a forked child this only unmaps the parent's view */
            _exit(worker(segname, i, ops, seed));
        }
    }
    double t0 = now_s();
    atomic_store_explicit(&b->go, 1, memory_order_release);
    step("started %u workers (pids", nworkers);
    for (uint32_t i = 0; i < nworkers; i++) printf(" %d", (int)pids[i]);
    printf(")\n");

    /* 3. Kill the victim a third of the way through its work (it does not
     *    know, so it may be anywhere: inside an allocation, holding the lock). */
    while (atomic_load(&b->w[victim].ops) < ops / 3) sleep_us(100);
    kill(pids[victim], SIGKILL);
    int st;
    waitpid(pids[victim], &st, 0);
    uint64_t at_kill[MAX_WORKERS];
    for (uint32_t i = 0; i < nworkers; i++) at_kill[i] = atomic_load(&b->w[i].ops);
    step("killed worker %u (pid %d) with SIGKILL after %" PRIu64 " operations\n", victim,
         (int)pids[victim], at_kill[victim]);
    result(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "worker %u died of SIGKILL", victim);

    /* 4. The heap validates while the survivors keep working. */
    step("validating the heap while the other workers run\n");
    validate(s, "while the survivors run");

    /* 5. The survivors carry on to the end. */
    int survivors_ok = 1;
    for (uint32_t i = 0; i < nworkers; i++) {
        if (i == victim) continue;
        waitpid(pids[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            survivors_ok = 0;
            printf("    worker %u (pid %d): %s %d\n", i, (int)pids[i],
                   WIFEXITED(st) ? "exit status" : "killed by signal",
                   WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        }
    }
    double elapsed = now_s() - t0;
    step("waiting for the other workers to finish\n");
    int progressed = 0;
    for (uint32_t i = 0; i < nworkers; i++) {
        if (i == victim) continue;
        uint64_t done = atomic_load(&b->w[i].ops);
        int finished = done == ops && atomic_load(&b->w[i].done);
        if (at_kill[i] < ops) {
            progressed++;
            result(finished,
                   "worker %u carried on: %" PRIu64 " operations at the kill, %" PRIu64
                   " at the end",
                   i, at_kill[i], done);
        } else {
            result(finished, "worker %u had already finished its %" PRIu64 " operations", i, done);
        }
    }
    result(progressed > 0, "%d worker%s worked on after the kill", progressed,
           progressed == 1 ? "" : "s");
    result(survivors_ok, "every surviving worker exited with status 0");

    /* 6. What the dead worker left behind. */
    step("recovering what worker %u left behind\n", victim);
    static dead_scan d;
    snprintf(d.prefix, sizeof d.prefix, "w%u.", victim);
    rc = mk_shm_obj_iter(s, scan_dead, &d);
    uint64_t intact = 0, unfinished = 0;
    for (size_t i = 0; i < d.n; i++) {
        item *it = mk_shm_ptr(s, d.obj[i].offset);
        uint64_t seq = strtoull(d.obj[i].name + strlen(d.prefix), NULL, 10);
        /* A block the worker was still filling when it died has ready == 0:
         * its contents were never promised to anyone. */
        if (it && !atomic_load_explicit(&it->ready, memory_order_acquire))
            unfinished++;
        else if (it && item_ok(it, victim, seq, d.obj[i].size))
            intact++;
    }
    result(rc >= 0 && d.n == intact + unfinished,
           "%zu blocks it had published are still in the directory, %" PRIu64
           " with intact contents",
           d.n, intact);
    if (unfinished)
        printf("         (and %" PRIu64 " it was still writing when it died: never marked ready,"
               " so no reader used it)\n",
               unfinished);
    uint64_t rblocks = 0, rbytes = 0;
    mk_shm_info post = {0};
    rc = mk_shm_reclaim(s, &rblocks, &rbytes);
    mk_shm_get_info(s, &post);
    result(rc == MK_OK, "reclaim freed %" PRIu64 " blocks (%" PRIu64 " bytes) it owned", rblocks,
           rbytes);
    result(rc == MK_OK && post.attached == 1,
           "its process slot and its cache of freed blocks are gone; caches now hold %" PRIu64
           " bytes, all this process's",
           post.cached_bytes);
    uint64_t removed = 0;
    for (size_t i = 0; i < d.n; i++) removed += mk_shm_obj_remove(s, d.obj[i].name) == MK_OK;
    result(removed == d.n, "removed its %" PRIu64 " published blocks", removed);

    /* 7. Everything is back: the heap holds what it held before the workers. */
    step("final checks\n");
    validate(s, "at the end");
    mk_stats end = {0};
    rc = mk_shm_stats(s, &end);
    result(rc == MK_OK && end.blocks_used == base.blocks_used && end.bytes_used == base.bytes_used,
           "no block lost: %" PRIu64 " blocks (%" PRIu64 " bytes) in use, as before the workers",
           end.blocks_used, end.bytes_used);
    mk_shm_info info = {0};
    mk_shm_get_info(s, &info);
    if (info.size > cfg.size)
        printf("    (the segment grew from %zu KiB to %" PRIu64
               " KiB while the workers were attached)\n",
               cfg.size >> 10, info.size >> 10);

    printf("\nHeap statistics (segment %s, now %" PRIu64 " KiB)\n", segname, info.size >> 10);
    mk_stats_print(&end, stdout);

    printf("\nPer-process summary (%.2f s)\n", elapsed);
    printf("  %-6s %-7s %-8s %9s %10s %9s %9s %8s %7s %6s\n", "worker", "pid", "fate", "ops",
           "bytes", "published", "read ok", "read bad", "missed", "errors");
    uint64_t tot_ops = 0, tot_bytes = 0, tot_pub = 0, tot_read = 0, tot_bad = 0, tot_err = 0;
    for (uint32_t i = 0; i < nworkers; i++) {
        wstat *w = &b->w[i];
        uint64_t o = atomic_load(&w->ops), by = atomic_load(&w->bytes),
                 pu = atomic_load(&w->published), rd = atomic_load(&w->read_ok),
                 bad = atomic_load(&w->read_bad), mi = atomic_load(&w->missed),
                 er = atomic_load(&w->errors);
        printf("  %-6u %-7d %-8s %9" PRIu64 " %10" PRIu64 " %9" PRIu64 " %9" PRIu64 " %8" PRIu64
               " %7" PRIu64 " %6" PRIu64 "\n",
               i, (int)pids[i], i == victim ? "killed" : "finished", o, by, pu, rd, bad, mi, er);
        tot_ops += o;
        tot_bytes += by;
        tot_pub += pu;
        tot_read += rd;
        tot_bad += bad;
        if (i != victim) tot_err += er;
    }
    printf("  %-6s %-7s %-8s %9" PRIu64 " %10" PRIu64 " %9" PRIu64 " %9" PRIu64 " %8" PRIu64 "\n",
           "total", "", "", tot_ops, tot_bytes, tot_pub, tot_read, tot_bad);
    printf("  (missed: a block retired between lookup and read, which is expected)\n");
    for (uint32_t i = 0; i < nworkers; i++) {
        int e = atomic_load_explicit(&b->w[i].first_err, memory_order_acquire);
        if (e) printf("  worker %u: first error: %s: %s\n", i, b->w[i].first_call, mk_strerror(e));
    }
    if (tot_bad || tot_err) failures++;
    if (tot_read == 0) {
        printf("  no worker read another's block: the run was too short\n");
        failures++;
    }

    mk_shm_close(s);
    if (keep)
        printf("\nThe segment is kept: try `memkit stat %s`, then `memkit rm %s`.\n", segname,
               segname);
    else
        mk_shm_unlink(segname, 0);
    printf("\n%s\n", failures ? "FAILED: see the FAIL lines above"
                              : "All checks passed: the heap survived the killed process.");
    return failures ? 1 : 0;
}
