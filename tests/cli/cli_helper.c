/*
 * cli-helper: the processes that test_cli.py runs the memkit CLI against.
 *
 *   cli-helper serve NAME    create NAME, publish objects, then keep
 *                            allocating, writing, checking and freeing
 *                            until "stop" (or EOF) on stdin; then check
 *                            every block it still holds and exit 0 if all
 *                            kept their data
 *   cli-helper owner NAME    open NAME, allocate blocks owned by this
 *                            process, publish one object, wait (the test
 *                            SIGKILLs it)
 *   cli-helper churn NAME    open NAME and allocate, free and publish as
 *                            fast as it can, owned blocks included, until
 *                            killed (the test SIGKILLs it mid-operation,
 *                            perhaps holding the lock)
 *   cli-helper mkfile PATH   create a file-backed segment with some blocks,
 *                            one of them starting with a marker the test
 *                            finds in the file to corrupt its header; close
 *
 * Each prints one line "READY key=value ..." on stdout once set up.
 * Seeded, so a failure replays: the seed is the pid's low bits, printed.
 */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memkit/shm.h"

#define NSLOTS 256

static uint64_t rng_state;
static uint64_t rng(void) {
    uint64_t z = (rng_state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static void die(const char *what, int rc) {
    fprintf(stderr, "cli-helper: %s: %s\n", what, mk_strerror(rc));
    exit(2);
}

static void fill(unsigned char *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed * 31 + i * 7);
}
static int same(const unsigned char *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed * 31 + i * 7)) return 0;
    return 1;
}

/* A line on stdin? (0 ms: just look.) Returns 1 on "stop" or EOF. */
static int stop_requested(int timeout_ms) {
    struct pollfd pfd = {.fd = 0, .events = POLLIN};
    if (poll(&pfd, 1, timeout_ms) <= 0) return 0;
    char buf[64];
    ssize_t n = read(0, buf, sizeof buf);
    return n <= 0 || memmem(buf, (size_t)n, "stop", 4) != NULL;
}

static int serve(const char *name) {
    mk_shm_config cfg = {.size = 1 << 20, .max_size = 16 << 20, .policy = MK_POLICY_TLSF};
    mk_shm *s;
    int rc = mk_shm_create(name, &cfg, &s);
    if (rc != MK_OK) die("create", rc);
    static const char *objs[] = {"config", "queue.head", "table.users"};
    for (int i = 0; i < 3; i++) {
        mk_off off;
        rc = mk_shm_obj_create(s, objs[i], 0x4d4b0000u + (unsigned)i, 64 + 64 * (size_t)i,
                               MK_SHM_OBJ_EXCL, &off, NULL);
        if (rc != MK_OK) die("obj_create", rc);
        fill(mk_shm_ptr(s, off), 64, (uint64_t)i);
    }
    /* A name that JSON must escape: quote, backslash, tab, UTF-8 and a
     * byte that is not UTF-8 (the CLI writes U+FFFD for it). */
    mk_off woff;
    rc = mk_shm_obj_create(s, "weird \"name\"\\\t\xc3\xa9\xff", 1, 16, 0, &woff, NULL);
    if (rc != MK_OK) die("obj_create weird", rc);
    mk_off off[NSLOTS] = {0};
    size_t len[NSLOTS];
    uint64_t seed[NSLOTS];
    uint64_t ops = 0, bad = 0;
    for (int i = 0; i < NSLOTS / 2; i++) {
        len[i] = 16 + rng() % 2000;
        seed[i] = rng();
        if ((rc = mk_shm_alloc(s, len[i], &off[i])) != MK_OK) die("alloc", rc);
        fill(mk_shm_ptr(s, off[i]), len[i], seed[i]);
    }
    printf("READY policy=tlsf objects=config,queue.head,table.users pid=%d\n", (int)getpid());
    fflush(stdout);
    while (!stop_requested(0)) {
        for (int k = 0; k < 64; k++, ops++) {
            unsigned i = (unsigned)(rng() % NSLOTS);
            if (off[i]) {
                if (!same(mk_shm_ptr(s, off[i]), len[i], seed[i])) bad++;
                if ((rc = mk_shm_free(s, off[i])) != MK_OK) die("free", rc);
                off[i] = 0;
            } else {
                len[i] = 16 + rng() % 4000;
                seed[i] = rng();
                if ((rc = mk_shm_alloc(s, len[i], &off[i])) != MK_OK) die("alloc", rc);
                fill(mk_shm_ptr(s, off[i]), len[i], seed[i]);
            }
        }
        usleep(200); /* busy, but leave the CPU to the CLI on small machines */
    }
    for (int i = 0; i < NSLOTS; i++)
        if (off[i] && !same(mk_shm_ptr(s, off[i]), len[i], seed[i])) bad++;
    mk_fault f = {0};
    rc = mk_shm_validate(s, &f);
    printf("serve: %" PRIu64 " operations, %" PRIu64 " damaged blocks, validate: %s%s%s\n", ops,
           bad, mk_strerror(rc), f.invariant ? " " : "", f.invariant ? f.invariant : "");
    mk_shm_close(s);
    return bad == 0 && rc == MK_OK ? 0 : 1;
}

static int owner(const char *name) {
    mk_shm *s;
    int rc = mk_shm_open(name, 0, &s);
    if (rc != MK_OK) die("open", rc);
    enum { NOWNED = 12 };
    for (int i = 0; i < NOWNED; i++) {
        mk_off off;
        rc = mk_shm_alloc_ex(s, 100 + 50 * (size_t)i, 0, MK_SHM_OWNED, &off);
        if (rc != MK_OK) die("alloc owned", rc);
        memset(mk_shm_ptr(s, off), 0xd0, 100);
    }
    mk_off off;
    rc = mk_shm_obj_create(s, "left.by.dead.process", 7, 32, 0, &off, NULL);
    if (rc != MK_OK) die("obj_create", rc);
    printf("READY owned=%d objects=left.by.dead.process\n", NOWNED);
    fflush(stdout);
    while (!stop_requested(1000)) {
    }
    mk_shm_close(s);
    return 0;
}

static int churn(const char *name) {
    mk_shm *s;
    int rc = mk_shm_open(name, 0, &s);
    if (rc != MK_OK) die("open", rc);
    printf("READY\n");
    fflush(stdout);
    mk_off off[32] = {0}, ooff;
    char obj[32];
    for (uint64_t n = 0; n % 4096 != 4095 || !stop_requested(0); n++) {
        unsigned i = (unsigned)(rng() % 32);
        if (off[i]) {
            if ((rc = mk_shm_free(s, off[i])) != MK_OK) die("free", rc);
            off[i] = 0;
        } else {
            unsigned flags = (rng() & 1) ? MK_SHM_OWNED : 0;
            if ((rc = mk_shm_alloc_ex(s, 16 + rng() % 3000, 0, flags, &off[i])) != MK_OK)
                die("alloc", rc);
        }
        snprintf(obj, sizeof obj, "churn.%d.%u", (int)getpid(), (unsigned)(n % 8));
        if (n % 3 == 0 && (rc = mk_shm_obj_create(s, obj, 9, 48, 0, &ooff, NULL)) != MK_OK)
            die("obj_create", rc);
        if (n % 3 == 1 && (rc = mk_shm_obj_remove(s, obj)) != MK_OK && rc != MK_ENOENT)
            die("obj_remove", rc);
    }
    mk_shm_close(s); /* only if the test went away without killing it */
    return 0;
}

static const char marker[] = "MKCLI-VICTIM-MARKER-7f3a9c";

static int mkfile(const char *path) {
    unlink(path);
    mk_shm_config cfg = {
        .size = 256 << 10, .max_size = 1 << 20, .policy = MK_POLICY_BEST_FIT, .flags = MK_SHM_FILE};
    mk_shm *s;
    int rc = mk_shm_create(path, &cfg, &s);
    if (rc != MK_OK) die("create file", rc);
    mk_off victim = 0;
    for (int i = 0; i < 20; i++) {
        mk_off off;
        if ((rc = mk_shm_alloc(s, 200 + 16 * (size_t)i, &off)) != MK_OK) die("alloc", rc);
        memset(mk_shm_ptr(s, off), 'a' + i, 200);
        if (i == 10) {
            memcpy(mk_shm_ptr(s, off), marker, sizeof marker);
            victim = off;
        }
    }
    mk_off off;
    if ((rc = mk_shm_obj_create(s, "persistent.root", 1, 128, 0, &off, NULL)) != MK_OK)
        die("obj_create", rc);
    mk_fault f = {0};
    if ((rc = mk_shm_validate(s, &f)) != MK_OK) die("validate", rc);
    if ((rc = mk_shm_close(s)) != MK_OK) die("close", rc);
    printf("READY victim=%" PRIu64 " marker=%s\n", victim, marker);
    fflush(stdout);
    while (!stop_requested(1000)) {
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: cli-helper serve|owner|churn|mkfile NAME\n");
        return 2;
    }
    rng_state = (uint64_t)getpid();
    char name[MK_SHM_NAME_MAX + 2];
    snprintf(name, sizeof name, "%s%s", argv[2][0] == '/' ? "" : "/", argv[2]);
    if (!strcmp(argv[1], "serve")) return serve(name);
    if (!strcmp(argv[1], "owner")) return owner(name);
    if (!strcmp(argv[1], "churn")) return churn(name);
    if (!strcmp(argv[1], "mkfile")) return mkfile(argv[2]);
    fprintf(stderr, "cli-helper: unknown mode %s\n", argv[1]);
    return 2;
}
