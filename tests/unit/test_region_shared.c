/*
 * One region, two mappings: a shared-memory object mapped twice in this
 * process (at two different addresses), and once more in a forked child.
 * The region is created through mapping A and attached through B; blocks
 * allocated and written through one are read, resized and freed through the
 * other, by offset only. Both views must agree at every step (validate,
 * walk, statistics), for every policy, with and without a journal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memkit/region.h"
#include "os/os.h"

#define SHM_SIZE ((size_t)1 << 20)
#define NA       48
#define NCHILD   16

static const char *g_pol = "?";

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            print_message("[%s] ", g_pol);                                                         \
            fail_msg(__VA_ARGS__);                                                                 \
        }                                                                                          \
    } while (0)
#define EXPECT_RC(expr, want)                                                                      \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != (want))                                                                         \
            fail_msg("[%s] %s returned %d (%s), expected %d", g_pol, #expr, rc_, mk_strerror(rc_), \
                     (int)(want));                                                                 \
    } while (0)

static unsigned char pat(uint64_t seed, size_t i) {
    return (unsigned char)((seed * 0x3Bu) ^ (i * 5u) ^ (i >> 9) ^ 0x5A);
}
static void fill(void *p, size_t n, uint64_t seed) {
    unsigned char *c = p;
    for (size_t i = 0; i < n; i++) c[i] = pat(seed, i);
}
static int same(const void *p, size_t n, uint64_t seed) {
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != pat(seed, i)) return 0;
    return 1;
}

static void valid(const mk_region *r, const char *view) {
    mk_fault f = {0};
    int rc = mk_region_validate(r, &f);
    if (rc != MK_OK)
        fail_msg("[%s] validate through %s: %d (%s): \"%s\" at %" PRIu64, g_pol, view, rc,
                 mk_strerror(rc), f.invariant ? f.invariant : "(null)", f.offset);
}

typedef struct wl {
    size_t n;
    mk_block_info b[1024];
} wl;
static int collect(const mk_block_info *bi, void *arg) {
    wl *l = arg;
    if (l->n < 1024) l->b[l->n++] = *bi;
    return 0;
}

/* Both views see the same blocks and statistics. */
static void agree(const mk_region *a, const mk_region *b) {
    static wl la, lb;
    la.n = lb.n = 0;
    EXPECT_RC(mk_region_walk(a, collect, &la), 0);
    EXPECT_RC(mk_region_walk(b, collect, &lb), 0);
    EXPECT(la.n == lb.n && memcmp(la.b, lb.b, la.n * sizeof la.b[0]) == 0,
           "the walks through the two mappings differ (%zu vs %zu blocks)", la.n, lb.n);
    mk_stats sa, sb;
    EXPECT_RC(mk_region_stats(a, &sa), MK_OK);
    EXPECT_RC(mk_region_stats(b, &sb), MK_OK);
    EXPECT(memcmp(&sa, &sb, sizeof sa) == 0, "the statistics through the two mappings differ");
    valid(a, "A");
    valid(b, "B");
}

/* The child: open the object by name, map it at an address of its own,
 * attach, allocate NCHILD blocks with patterns, send their offsets back. */
static void child(const char *name, int fd_out, uint64_t seed0) {
    mk__os_shm shm;
    void *m = NULL;
    mk_region *r;
    mk_off offs[NCHILD];
    if (mk__os_shm_open(name, 0, &shm) != MK_OK) _exit(10);
    if (mk__os_shm_map(&shm, NULL, SHM_SIZE, &m) != MK_OK) _exit(11);
    if (mk_region_attach(m, SHM_SIZE, &r) != MK_OK) _exit(12);
    if (mk_region_validate(r, NULL) != MK_OK) _exit(13);
    for (int i = 0; i < NCHILD; i++) {
        size_t sz = 100 + 37 * (size_t)i;
        if (mk_region_alloc(r, sz, i % 4 ? 0 : 256, &offs[i]) != MK_OK) _exit(14);
        fill(mk_region_ptr(r, offs[i]), sz, seed0 + (uint64_t)i);
    }
    if (mk_region_validate(r, NULL) != MK_OK) _exit(15);
    if (write(fd_out, offs, sizeof offs) != (ssize_t)sizeof offs) _exit(16);
    mk__os_shm_unmap(m, SHM_SIZE);
    mk__os_shm_close(&shm);
    _exit(0);
}

static void test_two_mappings(void **state) {
    mk_policy p = *(const mk_policy *)*state;
    g_pol = mk_policy_name(p);
    for (int journal = 0; journal < 2; journal++) {
        char name[64];
        snprintf(name, sizeof name, "/memkit-test-rs-%ld-%d-%d", (long)getpid(), (int)p, journal);
        mk__os_shm_unlink(name); /* a leftover from a killed run */
        mk__os_shm shm;
        EXPECT_RC(mk__os_shm_create(name, SHM_SIZE, 0, 0600, MK__SHM_EXCL, &shm), MK_OK);
        void *ma = NULL, *mb = NULL;
        EXPECT_RC(mk__os_shm_map(&shm, NULL, SHM_SIZE, &ma), MK_OK);
        EXPECT_RC(mk__os_shm_map(&shm, NULL, SHM_SIZE, &mb), MK_OK);
        EXPECT(ma != mb, "two mappings at the same address");

        mk_region *a, *b;
        EXPECT_RC(mk_region_create(ma, SHM_SIZE, p, journal ? MK_REGION_JOURNAL : 0, &a), MK_OK);
        EXPECT_RC(mk_region_attach(mb, SHM_SIZE, &b), MK_OK);
        EXPECT((void *)b == mb, "attach handle != its mapping");
        EXPECT(mk_region_policy(b) == p && mk_region_size(b) == SHM_SIZE, "B sees another region");

        /* Allocate and write through A, read through B. */
        mk_off offs[NA];
        size_t sizes[NA];
        for (int i = 0; i < NA; i++) {
            sizes[i] = (size_t)(1 + (i * 977) % 3000);
            EXPECT_RC(mk_region_alloc(a, sizes[i], (i % 5 == 0) ? 512 : 0, &offs[i]), MK_OK);
            fill(mk_region_ptr(a, offs[i]), sizes[i], (uint64_t)i);
        }
        for (int i = 0; i < NA; i++) {
            const void *pb = mk_region_ptr(b, offs[i]);
            EXPECT(pb != mk_region_ptr(a, offs[i]), "views share addresses");
            EXPECT(same(pb, sizes[i], (uint64_t)i), "block %d written through A reads wrong in B",
                   i);
            EXPECT(mk_region_offset(b, pb) == offs[i], "offset round trip");
            size_t ua, ub;
            EXPECT_RC(mk_region_usable_size(a, offs[i], &ua), MK_OK);
            EXPECT_RC(mk_region_usable_size(b, offs[i], &ub), MK_OK);
            EXPECT(ua == ub && ua >= sizes[i], "usable sizes differ between views");
            if (i % 5 == 0) EXPECT((uintptr_t)pb % 512 == 0, "aligned block not aligned in view B");
        }
        agree(a, b);

        /* Free through B every other block; double free through A refused. */
        for (int i = 0; i < NA; i += 2) EXPECT_RC(mk_region_free(b, offs[i]), MK_OK);
        for (int i = 0; i < NA; i += 2) {
            int rc = mk_region_free(a, offs[i]);
            EXPECT(rc == MK_EDOUBLEFREE || rc == MK_EBADOFF, "double free through A: %d", rc);
        }
        agree(a, b);

        /* Allocate through B into the holes, write through B, read through A. */
        mk_off nb[NA / 2];
        for (int i = 0; i < NA / 2; i++) {
            EXPECT_RC(mk_region_alloc(b, 64 + (size_t)i * 11, 0, &nb[i]), MK_OK);
            fill(mk_region_ptr(b, nb[i]), 64 + (size_t)i * 11, 1000 + (uint64_t)i);
        }
        for (int i = 0; i < NA / 2; i++)
            EXPECT(same(mk_region_ptr(a, nb[i]), 64 + (size_t)i * 11, 1000 + (uint64_t)i),
                   "block written through B reads wrong in A");
        for (int i = 1; i < NA; i += 2)
            EXPECT(same(mk_region_ptr(b, offs[i]), sizes[i], (uint64_t)i),
                   "surviving block %d damaged", i);
        /* Resize through A a block B allocated (moves it), read through B. */
        mk_off moved;
        EXPECT_RC(mk_region_realloc(a, nb[3], 40000, &moved), MK_OK);
        EXPECT(same(mk_region_ptr(b, moved), 64 + 3 * 11, 1003), "realloc through A lost data");
        nb[3] = moved;
        agree(a, b);

        /* A child process maps the object a third time and allocates. */
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        mk_stats before;
        EXPECT_RC(mk_region_stats(a, &before), MK_OK);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pfd[0]);
            child(name, pfd[1], 5000);
        }
        close(pfd[1]);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed (status 0x%x)", status);
        mk_off co[NCHILD];
        EXPECT(read(pfd[0], co, sizeof co) == (ssize_t)sizeof co, "no offsets from the child");
        close(pfd[0]);
        mk_stats after;
        EXPECT_RC(mk_region_stats(a, &after), MK_OK);
        EXPECT(after.blocks_used == before.blocks_used + NCHILD,
               "the parent does not see the child's blocks (%" PRIu64 " -> %" PRIu64 ")",
               before.blocks_used, after.blocks_used);
        for (int i = 0; i < NCHILD; i++) {
            size_t sz = 100 + 37 * (size_t)i, u;
            EXPECT_RC(mk_region_usable_size(b, co[i], &u), MK_OK);
            EXPECT(u >= sz, "child block usable size");
            EXPECT(same(mk_region_ptr(a, co[i]), sz, 5000 + (uint64_t)i),
                   "child block %d reads wrong in A", i);
            EXPECT(same(mk_region_ptr(b, co[i]), sz, 5000 + (uint64_t)i),
                   "child block %d reads wrong in B", i);
            if (i % 4 == 0)
                EXPECT((uintptr_t)mk_region_ptr(a, co[i]) % 256 == 0, "child's aligned block");
        }
        agree(a, b);

        /* Free everything, alternating views. */
        for (int i = 0; i < NCHILD; i++) EXPECT_RC(mk_region_free(i % 2 ? a : b, co[i]), MK_OK);
        for (int i = 1; i < NA; i += 2) EXPECT_RC(mk_region_free(a, offs[i]), MK_OK);
        for (int i = 0; i < NA / 2; i++) EXPECT_RC(mk_region_free(b, nb[i]), MK_OK);
        agree(a, b);
        mk_stats end;
        EXPECT_RC(mk_region_stats(b, &end), MK_OK);
        EXPECT(end.blocks_used == 0 && end.bytes_used == 0, "blocks left");
        if (journal) {
            int rolled = -1;
            EXPECT_RC(mk_region_recover(b, &rolled), MK_OK);
            EXPECT(rolled == 0, "completed operations rolled back");
        }

        EXPECT_RC(mk__os_shm_unmap(ma, SHM_SIZE), MK_OK);
        EXPECT_RC(mk__os_shm_unmap(mb, SHM_SIZE), MK_OK);
        mk__os_shm_close(&shm);
        EXPECT_RC(mk__os_shm_unlink(name), MK_OK);
    }
}

static const mk_policy policies[MK_POLICY_COUNT] = {MK_POLICY_FIRST_FIT, MK_POLICY_NEXT_FIT,
                                                    MK_POLICY_BEST_FIT,  MK_POLICY_WORST_FIT,
                                                    MK_POLICY_TLSF,      MK_POLICY_BUDDY};

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(test_two_mappings, (void *)&policies[0]),
        cmocka_unit_test_prestate(test_two_mappings, (void *)&policies[1]),
        cmocka_unit_test_prestate(test_two_mappings, (void *)&policies[2]),
        cmocka_unit_test_prestate(test_two_mappings, (void *)&policies[3]),
        cmocka_unit_test_prestate(test_two_mappings, (void *)&policies[4]),
        cmocka_unit_test_prestate(test_two_mappings, (void *)&policies[5]),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
