/*
 * The shared-memory heap's API, one process (plus forked helpers where the
 * point is another process): every function and its error paths, refusal
 * of foreign, other-version and truncated objects, file-backed persistence,
 * two mappings in one process, growth, named objects (with forked racers
 * on find-or-create), owned blocks and reclaim, removal on last close.
 *
 * Every segment name carries the pid; every test unlinks what it made.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memkit/shm.h"
#include "os/os.h"
#include "shm/shm_int.h"

#define KB ((size_t)1024)
#define MB (KB * KB)

static char g_name[128];

static const char *nm(const char *tag) {
    snprintf(g_name, sizeof g_name, "/mk-test-shm-%ld-%s", (long)getpid(), tag);
    mk_shm_unlink(g_name, 0); /* a leftover of a killed run */
    return g_name;
}

#define RC(expr, want)                                                                             \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != (want))                                                                         \
            fail_msg("%s returned %d (%s), expected %d (%s)", #expr, rc_, mk_strerror(rc_),        \
                     (int)(want), mk_strerror(want));                                              \
    } while (0)

static void valid(mk_shm *s) {
    mk_fault f = {0};
    int rc = mk_shm_validate(s, &f);
    if (rc != MK_OK)
        fail_msg("validate: %d (%s): \"%s\" at %" PRIu64, rc, mk_strerror(rc),
                 f.invariant ? f.invariant : "(null)", f.offset);
}

static unsigned char pat(uint64_t seed, size_t i) {
    return (unsigned char)((seed * 0x2Fu) ^ (i * 7u) ^ (i >> 8) ^ 0xA5);
}
static void fill(void *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++) ((unsigned char *)p)[i] = pat(seed, i);
}
static int same(const void *p, size_t n, uint64_t seed) {
    for (size_t i = 0; i < n; i++)
        if (((const unsigned char *)p)[i] != pat(seed, i)) return 0;
    return 1;
}

static mk_shm *make(const char *name, size_t size, size_t max, mk_policy pol, unsigned flags) {
    mk_shm_config cfg = {.size = size, .max_size = max, .policy = pol, .flags = flags};
    mk_shm *s = NULL;
    RC(mk_shm_create(name, &cfg, &s), MK_OK);
    assert_non_null(s);
    return s;
}

/* ---- every allocation function, every policy ------------------------------------------ */

static int count_blocks(const mk_shm_block *b, void *arg) {
    uint64_t *n = arg;
    n[b->kind]++;
    return 0;
}

static void test_alloc_all_policies(void **state) {
    (void)state;
    for (int p = 0; p < MK_POLICY_COUNT; p++) {
        const char *name = nm("alloc");
        size_t max = p == MK_POLICY_BUDDY ? 0 : 4 * MB;
        mk_shm *s = make(name, 256 * KB, max, (mk_policy)p, 0);
        mk_shm_info in;
        RC(mk_shm_get_info(s, &in), MK_OK);
        assert_string_equal(in.name, name);
        assert_int_equal(in.policy, p);
        assert_int_equal(in.attached, 1);
        assert_int_equal(in.size, 256 * KB);
        assert_int_equal(in.max_size, max ? max : 256 * KB);

        mk_off offs[64];
        for (int i = 0; i < 64; i++) {
            size_t sz = (size_t)(1 + i * 97 % 1500);
            RC(mk_shm_alloc(s, sz, &offs[i]), MK_OK);
            void *q = mk_shm_ptr(s, offs[i]);
            assert_non_null(q);
            assert_int_equal((uintptr_t)q % 16, 0);
            assert_int_equal(mk_shm_offset(s, q), offs[i]);
            size_t u = 0;
            RC(mk_shm_usable_size(s, offs[i], &u), MK_OK);
            assert_true(u >= sz);
            fill(q, sz, (uint64_t)i);
        }
        valid(s);
        mk_off a;
        RC(mk_shm_alloc_ex(s, 300, 1024, MK_SHM_ZERO, &a), MK_OK);
        assert_int_equal((uintptr_t)mk_shm_ptr(s, a) % 1024, 0);
        for (int i = 0; i < 300; i++) assert_int_equal(((unsigned char *)mk_shm_ptr(s, a))[i], 0);
        RC(mk_shm_alloc_ex(s, 300, 3, 0, &a), MK_EALIGN);
        RC(mk_shm_alloc_ex(s, 300, 8192, 0, &a), MK_EALIGN);
        RC(mk_shm_alloc_ex(s, 300, 0, 0x100, &a), MK_EINVAL);
        /* realloc: grow, shrink, keep the data */
        for (int i = 0; i < 64; i += 3) {
            size_t sz = (size_t)(1 + i * 97 % 1500);
            mk_off n;
            RC(mk_shm_realloc(s, offs[i], sz * 3 + 100, &n), MK_OK);
            assert_true(same(mk_shm_ptr(s, n), sz, (uint64_t)i));
            offs[i] = n;
            RC(mk_shm_realloc(s, offs[i], sz, &n), MK_OK);
            assert_true(same(mk_shm_ptr(s, n), sz, (uint64_t)i));
            offs[i] = n;
        }
        mk_off z;
        RC(mk_shm_realloc(s, 0, 40, &z), MK_OK);
        valid(s);
        uint64_t kinds[MK_SHM_BLOCK_CACHED + 1] = {0};
        RC(mk_shm_walk(s, count_blocks, kinds), 0);
        assert_int_equal(kinds[MK_SHM_BLOCK_PLAIN], 66);
        assert_int_equal(kinds[MK_SHM_BLOCK_META], 1);
        mk_stats st;
        RC(mk_shm_stats(s, &st), MK_OK);
        assert_int_equal(st.blocks_used, 67);
        FILE *f = tmpfile();
        assert_non_null(f);
        RC(mk_shm_dump(s, f), MK_OK);
        assert_true(ftell(f) > 100);
        fclose(f);
        for (int i = 0; i < 64; i++) {
            size_t sz = (size_t)(1 + i * 97 % 1500);
            assert_true(same(mk_shm_ptr(s, offs[i]), sz, (uint64_t)i));
            RC(mk_shm_free(s, offs[i]), MK_OK);
            int rc = mk_shm_free(s, offs[i]);
            assert_true(rc == MK_EDOUBLEFREE || rc == MK_EBADOFF);
        }
        RC(mk_shm_free(s, a), MK_OK);
        RC(mk_shm_free(s, z), MK_OK);
        RC(mk_shm_stats(s, &st), MK_OK);
        assert_int_equal(st.blocks_used, 1); /* the meta block */
        valid(s);
        RC(mk_shm_close(s), MK_OK);
        RC(mk_shm_unlink(name, 0), MK_OK);
    }
}

/* ---- argument errors ---------------------------------------------------------------------- */

static void test_errors(void **state) {
    (void)state;
    mk_shm_config cfg = {.size = 128 * KB};
    mk_shm *s = NULL;
    char longname[400];
    memset(longname, 'x', sizeof longname - 1);
    longname[0] = '/';
    longname[sizeof longname - 1] = 0;
    RC(mk_shm_create(NULL, &cfg, &s), MK_EINVAL);
    RC(mk_shm_create("", &cfg, &s), MK_EINVAL);
    RC(mk_shm_create("noslash", &cfg, &s), MK_EINVAL);
    RC(mk_shm_create("/a/b", &cfg, &s), MK_EINVAL);
    RC(mk_shm_create(longname, &cfg, &s), MK_EINVAL);
    RC(mk_shm_create("/x", NULL, &s), MK_EINVAL);
    RC(mk_shm_open("/a/b", 0, &s), MK_EINVAL);
    RC(mk_shm_open(NULL, 0, &s), MK_EINVAL);
    RC(mk_shm_unlink("", 0), MK_EINVAL);
    const char *name = nm("err");
    RC(mk_shm_open(name, 0, &s), MK_ENOENT);
    assert_null(s);
    RC(mk_shm_unlink(name, 0), MK_ENOENT);
    cfg.size = 4 * KB;
    RC(mk_shm_create(name, &cfg, &s), MK_EINVAL); /* too small */
    cfg.size = 128 * KB;
    cfg.max_size = 64 * KB;
    RC(mk_shm_create(name, &cfg, &s), MK_EINVAL); /* max < size */
    cfg.max_size = 0;
    cfg.policy = (mk_policy)17;
    RC(mk_shm_create(name, &cfg, &s), MK_EINVAL);
    cfg.policy = MK_POLICY_BUDDY;
    cfg.max_size = MB;
    RC(mk_shm_create(name, &cfg, &s), MK_ENOTSUP);
    cfg.policy = MK_POLICY_TLSF;
    cfg.max_size = 0;
    cfg.flags = 0x1000;
    RC(mk_shm_create(name, &cfg, &s), MK_EINVAL);
    cfg.flags = 0;
    RC(mk_shm_open(name, 0, &s), MK_ENOENT); /* the failed creates left nothing */

    s = make(name, 128 * KB, 0, MK_POLICY_TLSF, 0);
    mk_shm *t = NULL;
    RC(mk_shm_create(name, &cfg, &t), MK_EEXIST);
    cfg.flags = MK_SHM_OPEN_EXISTING;
    RC(mk_shm_create(name, &cfg, &t), MK_OK);
    mk_shm *u_ = NULL;
    RC(mk_shm_open(name, 0x40, &u_), MK_EINVAL);
    assert_null(u_);
    mk_off o;
    RC(mk_shm_alloc(s, 200 * KB, &o), MK_ETOOBIG);
    RC(mk_shm_alloc(NULL, 10, &o), MK_EINVAL);
    RC(mk_shm_alloc(s, 10, NULL), MK_EINVAL);
    /* Fill up: no growth allowed, so MK_ENOMEM, and the heap still validates. */
    int n = 0;
    int arc;
    while ((arc = mk_shm_alloc(t, 1000, &o)) == MK_OK) n++;
    if (n <= 50 || arc != MK_ENOMEM) fail_msg("filled with %d blocks, then %d", n, arc);
    RC(mk_shm_alloc(s, 1000, &o), MK_ENOMEM);
    mk_stats st;
    RC(mk_shm_stats(s, &st), MK_OK);
    assert_true(st.n_failed >= 2);
    valid(s);
    /* Offsets that are not blocks, the segment's own blocks. */
    RC(mk_shm_free(s, 0), MK_EBADOFF);
    RC(mk_shm_free(s, 8), MK_EBADOFF);
    RC(mk_shm_free(s, 123456789), MK_EBADOFF);
    RC(mk_shm_free(s, s->meta), MK_EBADOFF);
    RC(mk_shm_realloc(s, s->meta, 10, &o), MK_EBADOFF);
    size_t u;
    RC(mk_shm_usable_size(s, s->meta, &u), MK_EBADOFF);
    assert_null(mk_shm_ptr(s, 0));
    assert_null(mk_shm_ptr(s, (mk_off)1 << 40));
    assert_int_equal(mk_shm_offset(s, NULL), 0);
    assert_int_equal(mk_shm_offset(s, &n), 0);
    assert_null(mk_shm_region(NULL));
    assert_non_null(mk_shm_region(s));
    RC(mk_shm_validate(NULL, NULL), MK_EINVAL);
    RC(mk_shm_stats(s, NULL), MK_EINVAL);
    RC(mk_shm_walk(s, NULL, NULL), MK_EINVAL);
    RC(mk_shm_dump(s, NULL), MK_EINVAL);
    RC(mk_shm_reclaim(NULL, NULL, NULL), MK_EINVAL);
    assert_string_equal(mk_shm_block_kind_name(MK_SHM_BLOCK_OWNED), "owned");
    RC(mk_shm_close(t), MK_OK);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_close(NULL), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* ---- foreign, other-version, truncated objects -------------------------------------------------
 */

static int open_rc(const char *name) {
    mk_shm *s = NULL;
    int rc = mk_shm_open(name, 0, &s);
    if (rc == MK_OK) mk_shm_close(s);
    return rc;
}

/* Create a segment, then change one header word through a raw mapping. */
static void patch(const char *name, size_t off, uint64_t v) {
    mk__os_shm os;
    RC(mk__os_shm_open(name, 0, &os), MK_OK);
    void *p;
    RC(mk__os_shm_map(&os, NULL, 4096, &p), MK_OK);
    memcpy((char *)p + off, &v, 8);
    mk__os_shm_unmap(p, 4096);
    mk__os_shm_close(&os);
}

static void test_foreign(void **state) {
    (void)state;
    const char *name = nm("foreign");
    mk__os_shm os;
    RC(mk__os_shm_create(name, 256 * KB, 0, 0600, MK__SHM_EXCL, &os), MK_OK);
    void *p;
    RC(mk__os_shm_map(&os, NULL, 256 * KB, &p), MK_OK);
    for (size_t i = 0; i < 256 * KB; i++) ((unsigned char *)p)[i] = (unsigned char)(i * 31 + 7);
    mk__os_shm_unmap(p, 256 * KB);
    RC(open_rc(name), MK_EBADMAGIC);
    /* Tiny objects: truncated. */
    RC(mk__os_shm_resize(&os, 64), MK_OK);
    RC(open_rc(name), MK_ETRUNCATED);
    mk__os_shm_close(&os);
    RC(mk_shm_unlink(name, 0), MK_OK);

    /* A real segment, then damaged header words one at a time. */
    struct {
        size_t off;
        uint64_t v;
        int want;
    } cases[] = {
        {offsetof(mk__hdr, magic), 0x1234, MK_EBADMAGIC},
        {offsetof(mk__hdr, version), 99, MK_EVERSION},
        {offsetof(mk__hdr, signature), 42, MK_ELAYOUT},
        {offsetof(mk__hdr, user) + 8 * MK__U_MAGIC, 77, MK_EBADMAGIC},
        {offsetof(mk__hdr, user) + 8 * MK__U_VERSION, MK__SHM_VERSION + 1, MK_EVERSION},
        {offsetof(mk__hdr, user) + 8 * MK__U_SIG, 3, MK_ELAYOUT},
        {offsetof(mk__hdr, user) + 8 * MK__U_MAX, 12345, MK_ECORRUPT},
        {offsetof(mk__hdr, user) + 8 * MK__U_META, 4096 + 8, MK_ECORRUPT},
        {offsetof(mk__hdr, size), 2 * MB, MK_ETRUNCATED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mk_shm *s = make(name, 256 * KB, 0, MK_POLICY_BEST_FIT, 0);
        RC(mk_shm_close(s), MK_OK);
        RC(open_rc(name), MK_OK);
        patch(name, cases[i].off, cases[i].v);
        int rc = open_rc(name);
        if (rc != cases[i].want)
            fail_msg("case %zu: open gave %d (%s), expected %d", i, rc, mk_strerror(rc),
                     cases[i].want);
        RC(mk_shm_unlink(name, 0), MK_OK);
    }
    /* Truncated: the object is shorter than its header says. */
    mk_shm *s = make(name, 256 * KB, 0, MK_POLICY_BEST_FIT, 0);
    RC(mk_shm_close(s), MK_OK);
    RC(mk__os_shm_open(name, 0, &os), MK_OK);
    RC(mk__os_shm_resize(&os, 8192), MK_OK);
    mk__os_shm_close(&os);
    RC(open_rc(name), MK_ETRUNCATED);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* ---- file-backed persistence --------------------------------------------------------------- */

static void test_file_backed(void **state) {
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "/tmp/mk-test-shm-%ld.heap", (long)getpid());
    mk_shm_unlink(path, MK_SHM_FILE);
    mk_shm *s = make(path, 128 * KB, MB, MK_POLICY_FIRST_FIT, MK_SHM_FILE);
    mk_off offs[40];
    for (int i = 0; i < 40; i++) {
        RC(mk_shm_alloc(s, 5000, &offs[i]), MK_OK); /* grows past 128 KiB */
        fill(mk_shm_ptr(s, offs[i]), 5000, (uint64_t)i);
    }
    mk_off obj;
    int created = 0;
    RC(mk_shm_obj_create(s, "root", 7, 64, 0, &obj, &created), MK_OK);
    assert_int_equal(created, 1);
    memcpy(mk_shm_ptr(s, obj), offs, 8);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_open(path, 0, &s), MK_EINVAL); /* not a shm name */
    RC(mk_shm_open(path, MK_SHM_FILE, &s), MK_OK);
    valid(s);
    mk_shm_info in;
    RC(mk_shm_get_info(s, &in), MK_OK);
    assert_true(in.size > 128 * KB);
    assert_int_equal(in.attached, 1);
    assert_true(in.flags & MK_SHM_FILE);
    mk_shm_obj o;
    RC(mk_shm_obj_find(s, "root", &o), MK_OK);
    assert_int_equal(o.type, 7);
    assert_int_equal(o.offset, obj);
    assert_memory_equal(mk_shm_ptr(s, o.offset), offs, 8);
    for (int i = 0; i < 40; i++) assert_true(same(mk_shm_ptr(s, offs[i]), 5000, (uint64_t)i));
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(path, MK_SHM_FILE), MK_OK);
}

/* ---- two mappings in one process ------------------------------------------------------------- */

static void test_two_handles(void **state) {
    (void)state;
    const char *name = nm("two");
    mk_shm *a = make(name, 64 * KB, 8 * MB, MK_POLICY_TLSF, 0);
    mk_shm *b = NULL;
    RC(mk_shm_open(name, 0, &b), MK_OK);
    mk_off x;
    RC(mk_shm_alloc(a, 1000, &x), MK_OK);
    assert_ptr_not_equal(mk_shm_ptr(a, x), mk_shm_ptr(b, x));
    fill(mk_shm_ptr(a, x), 1000, 1);
    assert_true(same(mk_shm_ptr(b, x), 1000, 1));
    char *keep = mk_shm_ptr(a, x);
    /* Grow through b well past the initial size; a's pointer stays valid
     * and a sees b's new blocks (its mapping catches up). */
    mk_off big[20];
    for (int i = 0; i < 20; i++) {
        RC(mk_shm_alloc(b, 100 * KB, &big[i]), MK_OK);
        fill(mk_shm_ptr(b, big[i]), 100 * KB, 100 + (uint64_t)i);
    }
    for (int i = 0; i < 20; i++) {
        void *pa = mk_shm_ptr(a, big[i]); /* slow path: a's mapping is extended */
        assert_non_null(pa);
        assert_true(same(pa, 100 * KB, 100 + (uint64_t)i));
    }
    assert_true(same(keep, 1000, 1));
    mk_shm_info in;
    RC(mk_shm_get_info(a, &in), MK_OK);
    assert_int_equal(in.attached, 2);
    assert_true(in.size >= 2 * MB);
    mk_shm_proc pr[4];
    size_t n = 0;
    RC(mk_shm_procs(a, pr, 4, &n), MK_OK);
    assert_int_equal(n, 2);
    assert_int_equal(pr[0].pid, (uint64_t)getpid());
    assert_true(pr[0].alive && pr[1].alive);
    assert_true(pr[0].self + pr[1].self == 1);
    for (int i = 0; i < 20; i++) RC(mk_shm_free(i % 2 ? a : b, big[i]), MK_OK);
    valid(a);
    valid(b);
    /* An observer is not counted. */
    mk_shm *obs = NULL;
    RC(mk_shm_open(name, MK_SHM_OBSERVE, &obs), MK_OK);
    RC(mk_shm_get_info(obs, &in), MK_OK);
    assert_int_equal(in.attached, 2);
    RC(mk_shm_alloc_ex(obs, 10, 0, MK_SHM_OWNED, &x), MK_EINVAL);
    RC(mk_shm_close(obs), MK_OK);
    RC(mk_shm_close(b), MK_OK);
    RC(mk_shm_get_info(a, &in), MK_OK);
    assert_int_equal(in.attached, 1);
    RC(mk_shm_close(a), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* Processes attached one after the other take blocks from opposite ends
 * of the free space (docs/SHM.md, "Placement"): the creator (slot 0) from
 * the low end, the next (slot 1) from the high end, a third (slot 2) from
 * the low end again; through the caches and the locked path alike, and in
 * the space the segment grows into. Without it the two would interleave
 * from the bottom up. */
static void test_placement(void **state) {
    (void)state;
    const char *name = nm("place");
    mk_shm *a = make(name, 4 * MB, 16 * MB, MK_POLICY_TLSF, 0);
    mk_shm *b = NULL, *c = NULL;
    RC(mk_shm_open(name, 0, &b), MK_OK);
    mk_off xa, xb, ya, yb, yc, big[8];
    RC(mk_shm_alloc(a, 100, &xa), MK_OK); /* cache refills */
    RC(mk_shm_alloc(b, 100, &xb), MK_OK);
    RC(mk_shm_alloc(a, 20000, &ya), MK_OK); /* the locked path */
    RC(mk_shm_alloc(b, 20000, &yb), MK_OK);
    assert_true(xa < 2 * MB && ya < 2 * MB);
    assert_true(xb > 2 * MB && yb > 2 * MB);
    RC(mk_shm_open(name, 0, &c), MK_OK);
    RC(mk_shm_alloc(c, 20000, &yc), MK_OK);
    assert_true(yc < 2 * MB);
    /* A reallocation that moves a block takes its process's end too. */
    mk_off za, zb, was_a = ya, was_b = yb;
    RC(mk_shm_alloc(a, 20000, &za), MK_OK);
    RC(mk_shm_alloc(b, 20000, &zb), MK_OK);
    RC(mk_shm_realloc(a, ya, 40000, &ya), MK_OK); /* blocks above it: moved */
    RC(mk_shm_realloc(b, yb, 40000, &yb), MK_OK);
    assert_true(ya != was_a && yb != was_b);
    assert_true(ya < 2 * MB);
    assert_true(yb > 2 * MB);
    RC(mk_shm_free(a, za), MK_OK);
    RC(mk_shm_free(b, zb), MK_OK);
    /* b fills the segment from the top down and makes it grow: its
     * blocks after the growth sit at the top of the new space. */
    for (int i = 0; i < 8; i++) RC(mk_shm_alloc(b, MB, &big[i]), MK_OK);
    mk_shm_info in;
    RC(mk_shm_get_info(a, &in), MK_OK);
    assert_true(in.size > 4 * MB);
    assert_true(big[7] > 4 * MB);
    for (int i = 1; i < 8; i++) assert_true(big[i] < big[i - 1] || big[i] > 4 * MB);
    valid(a);
    for (int i = 0; i < 8; i++) RC(mk_shm_free(a, big[i]), MK_OK);
    RC(mk_shm_free(b, xa), MK_OK);
    RC(mk_shm_free(a, xb), MK_OK);
    RC(mk_shm_free(c, ya), MK_OK);
    RC(mk_shm_free(a, yb), MK_OK);
    RC(mk_shm_free(b, yc), MK_OK);
    valid(a);
    RC(mk_shm_close(c), MK_OK);
    RC(mk_shm_close(b), MK_OK);
    RC(mk_shm_close(a), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* ---- removal on last close ---------------------------------------------------------------- */

static void test_remove_on_last_close(void **state) {
    (void)state;
    const char *name = nm("autorm");
    mk_shm *a = make(name, 64 * KB, 0, MK_POLICY_BEST_FIT, MK_SHM_REMOVE_ON_LAST_CLOSE);
    mk_shm *b = NULL;
    RC(mk_shm_open(name, 0, &b), MK_OK);
    RC(mk_shm_close(a), MK_OK);
    RC(mk_shm_open(name, MK_SHM_OBSERVE, &a), MK_OK); /* still there: b is attached */
    RC(mk_shm_close(a), MK_OK);
    RC(mk_shm_close(b), MK_OK);
    RC(mk_shm_open(name, 0, &a), MK_ENOENT);
    RC(mk_shm_unlink(name, 0), MK_ENOENT);
}

/* ---- named objects
 * ------------------------------------------------------------------------------- */

static int collect_names(const mk_shm_obj *o, void *arg) {
    uint64_t *mask = arg;
    int i = atoi(o->name + 3);
    *mask |= UINT64_C(1) << i;
    assert_int_equal(o->type, (uint32_t)i);
    return 0;
}
static int stop_at_first(const mk_shm_obj *o, void *arg) {
    (void)o;
    (*(int *)arg)++;
    return 5;
}

static void test_objects(void **state) {
    (void)state;
    const char *name = nm("obj");
    mk_shm *s = make(name, 128 * KB, 4 * MB, MK_POLICY_BEST_FIT, 0);
    mk_off off[40];
    for (int i = 0; i < 40; i++) {
        char on[32];
        snprintf(on, sizeof on, "obj%d", i);
        int created = -1;
        RC(mk_shm_obj_create(s, on, (uint32_t)i, 100 + (size_t)i * 50, 0, &off[i], &created),
           MK_OK);
        assert_int_equal(created, 1);
        assert_int_equal(off[i] % 16, 0);
        unsigned char *p = mk_shm_ptr(s, off[i]);
        for (int k = 0; k < 100 + i * 50; k++) assert_int_equal(p[k], 0);
        fill(p, 100 + (size_t)i * 50, (uint64_t)i);
    }
    valid(s);
    mk_off again;
    int created = -1;
    RC(mk_shm_obj_create(s, "obj3", 3, 100, 0, &again, &created), MK_OK);
    assert_int_equal(created, 0);
    assert_int_equal(again, off[3]);
    RC(mk_shm_obj_create(s, "obj3", 3, 100, MK_SHM_OBJ_EXCL, &again, NULL), MK_EEXIST);
    RC(mk_shm_obj_create(s, "obj3", 4, 100, 0, &again, NULL), MK_EEXIST);    /* other type */
    RC(mk_shm_obj_create(s, "obj3", 3, 100000, 0, &again, NULL), MK_EEXIST); /* too small */
    char longn[80];
    memset(longn, 'n', sizeof longn);
    longn[64] = 0;
    RC(mk_shm_obj_create(s, longn, 1, 10, 0, &again, NULL), MK_EINVAL);
    longn[63] = 0; /* 63 bytes: the maximum */
    RC(mk_shm_obj_create(s, longn, 1, 10, 0, &again, NULL), MK_OK);
    RC(mk_shm_obj_remove(s, longn), MK_OK);
    RC(mk_shm_obj_create(s, "", 1, 10, 0, &again, NULL), MK_EINVAL);
    RC(mk_shm_obj_create(s, NULL, 1, 10, 0, &again, NULL), MK_EINVAL);
    RC(mk_shm_obj_create(s, "x", 1, 10, 0x10, &again, NULL), MK_EINVAL);
    RC(mk_shm_obj_find(s, "nope", NULL), MK_ENOENT);
    RC(mk_shm_obj_remove(s, "nope"), MK_ENOENT);
    RC(mk_shm_obj_find(s, longn, NULL), MK_ENOENT);
    RC(mk_shm_free(s, off[5]), MK_EBADOFF); /* objects are removed by name */
    RC(mk_shm_free(s, off[5] - sizeof(mk__shm_ent)), MK_EBADOFF);
    uint64_t mask = 0;
    RC(mk_shm_obj_iter(s, collect_names, &mask), 0);
    assert_int_equal(mask, (UINT64_C(1) << 40) - 1);
    int visited = 0;
    RC(mk_shm_obj_iter(s, stop_at_first, &visited), 5);
    assert_int_equal(visited, 1);
    for (int i = 0; i < 40; i += 2) {
        char on[32];
        snprintf(on, sizeof on, "obj%d", i);
        RC(mk_shm_obj_remove(s, on), MK_OK);
        RC(mk_shm_obj_find(s, on, NULL), MK_ENOENT);
    }
    for (int i = 1; i < 40; i += 2) {
        char on[32];
        snprintf(on, sizeof on, "obj%d", i);
        mk_shm_obj o;
        RC(mk_shm_obj_find(s, on, &o), MK_OK);
        assert_string_equal(o.name, on);
        assert_int_equal(o.offset, off[i]);
        assert_int_equal(o.size, 100 + (uint64_t)i * 50);
        assert_true(same(mk_shm_ptr(s, o.offset), o.size, (uint64_t)i));
    }
    mk_shm_info in;
    RC(mk_shm_get_info(s, &in), MK_OK);
    assert_int_equal(in.objects, 20);
    valid(s);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* Forked racers on find-or-create: exactly one creates, all get one offset. */
#define RACERS 8
static void test_objects_race(void **state) {
    (void)state;
    const char *name = nm("race");
    mk_shm *s = make(name, 128 * KB, 0, MK_POLICY_TLSF, 0);
    for (int round = 0; round < 10; round++) {
        char on[32];
        snprintf(on, sizeof on, "race%d", round);
        int pfd[2];
        assert_int_equal(pipe(pfd), 0);
        int go[2];
        assert_int_equal(pipe(go), 0);
        pid_t pids[RACERS];
        fflush(NULL);
        for (int i = 0; i < RACERS; i++) {
            pids[i] = fork();
            assert_true(pids[i] >= 0);
            if (pids[i] == 0) {
                close(pfd[0]);
                close(go[1]);
                mk_shm *c = NULL;
                if (mk_shm_open(name, 0, &c) != MK_OK) _exit(10);
                char b;
                if (read(go[0], &b, 1) != 0) _exit(11); /* wait for the start (EOF) */
                mk_off o = 0;
                int created = -1;
                if (mk_shm_obj_create(c, on, 9, 256, 0, &o, &created) != MK_OK) _exit(12);
                uint64_t rec[2] = {o, (uint64_t)created};
                if (write(pfd[1], rec, sizeof rec) != (ssize_t)sizeof rec) _exit(13);
                mk_shm_close(c);
                _exit(0);
            }
        }
        close(pfd[1]);
        close(go[0]);
        close(go[1]); /* start them all */
        int creators = 0;
        mk_off first = 0;
        for (int i = 0; i < RACERS; i++) {
            uint64_t rec[2];
            assert_int_equal(read(pfd[0], rec, sizeof rec), (ssize_t)sizeof rec);
            if (i == 0) first = rec[0];
            assert_int_equal(rec[0], first);
            creators += (int)rec[1];
        }
        close(pfd[0]);
        for (int i = 0; i < RACERS; i++) {
            int st = 0;
            assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
            assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        }
        assert_int_equal(creators, 1);
        mk_shm_obj o;
        RC(mk_shm_obj_find(s, on, &o), MK_OK);
        assert_int_equal(o.offset, first);
    }
    mk_shm_info in;
    RC(mk_shm_get_info(s, &in), MK_OK);
    assert_int_equal(in.objects, 10);
    assert_int_equal(in.attached, 1);
    valid(s);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* ---- owned blocks and reclaim
 * ---------------------------------------------------------------------- */

static int count_owned(const mk_shm_block *b, void *arg) {
    if (b->kind == MK_SHM_BLOCK_OWNED) (*(int *)arg)++;
    return 0;
}

/* A child that allocates n owned blocks, frees the first `freed` of them
 * (its cache keeps them), and dies (SIGKILL) or closes. */
static void owned_child(const char *name, int n, int freed, bool die) {
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        mk_shm *c = NULL;
        mk_off o[64];
        if (n > 64 || mk_shm_open(name, 0, &c) != MK_OK) _exit(10);
        for (int i = 0; i < n; i++)
            if (mk_shm_alloc_ex(c, 40 + (size_t)i * 24, 0, MK_SHM_OWNED, &o[i]) != MK_OK) _exit(11);
        for (int i = 0; i < freed; i++)
            if (mk_shm_free(c, o[i]) != MK_OK) _exit(12);
        mk_shm_info in;
        if (mk_shm_get_info(c, &in) != MK_OK || in.cached_blocks < (uint64_t)freed) _exit(13);
        if (die) raise(SIGKILL);
        _exit(mk_shm_close(c) == MK_OK ? 0 : 14);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (die)
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    else
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_owned_reclaim(void **state) {
    (void)state;
    const char *name = nm("owned");
    mk_shm *s = make(name, 256 * KB, 0, MK_POLICY_FIRST_FIT, 0);
    mk_off mine[10];
    for (int i = 0; i < 10; i++) {
        RC(mk_shm_alloc_ex(s, 300, 0, MK_SHM_OWNED, &mine[i]), MK_OK);
        size_t u;
        RC(mk_shm_usable_size(s, mine[i], &u), MK_OK);
        assert_true(u >= 300);
        fill(mk_shm_ptr(s, mine[i]), u, (uint64_t)i); /* all of it: the owner word survives */
    }
    /* An owned block stays owned through realloc (in place and moved). */
    mk_off r;
    RC(mk_shm_realloc(s, mine[0], 5000, &r), MK_OK);
    assert_true(same(mk_shm_ptr(s, r), 300, 0));
    mine[0] = r;
    RC(mk_shm_realloc(s, mine[0], 100, &r), MK_OK);
    mine[0] = r;
    valid(s);
    mk_stats before;
    RC(mk_shm_stats(s, &before), MK_OK);
    /* A child allocates 25 owned blocks and dies without freeing them;
     * another closes properly but leaves its owned blocks behind. */
    for (int mode = 0; mode < 2; mode++) {
        owned_child(name, 25, 0, mode == 0);
        int owned = 0;
        RC(mk_shm_walk(s, count_owned, &owned), 0);
        assert_int_equal(owned, 35);
        mk_shm_info in;
        RC(mk_shm_get_info(s, &in), MK_OK);
        assert_int_equal(in.attached, mode == 0 ? 2 : 1); /* the dead one still listed */
        uint64_t blocks = 0, bytes = 0;
        RC(mk_shm_reclaim(s, &blocks, &bytes), MK_OK);
        assert_int_equal(blocks, 25);
        assert_true(bytes >= 25 * 40 + 24 * 300); /* the child's sizes, 40 + 24 i */
        RC(mk_shm_get_info(s, &in), MK_OK);
        assert_int_equal(in.attached, 1);
        owned = 0;
        RC(mk_shm_walk(s, count_owned, &owned), 0);
        assert_int_equal(owned, 10);
        RC(mk_shm_reclaim(s, &blocks, NULL), MK_OK);
        assert_int_equal(blocks, 0);
        valid(s);
    }
    mk_stats after;
    RC(mk_shm_stats(s, &after), MK_OK);
    assert_int_equal(after.blocks_used, before.blocks_used);
    assert_int_equal(after.bytes_used, before.bytes_used);
    for (int i = 1; i < 10; i++) {
        size_t u;
        RC(mk_shm_usable_size(s, mine[i], &u), MK_OK);
        assert_true(same(mk_shm_ptr(s, mine[i]), u, (uint64_t)i));
        RC(mk_shm_free(s, mine[i]), MK_OK);
    }
    RC(mk_shm_free(s, mine[0]), MK_OK);
    valid(s);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* ---- per-process caches ------------------------------------------------------------------ */

static mk_stats stats_of(mk_shm *s) {
    mk_stats st;
    RC(mk_shm_stats(s, &st), MK_OK);
    return st;
}
static mk_shm_info info_of(mk_shm *s) {
    mk_shm_info in;
    RC(mk_shm_get_info(s, &in), MK_OK);
    return in;
}
static int count_kinds(const mk_shm_block *b, void *arg) {
    ((uint64_t *)arg)[b->kind]++;
    return 0;
}

/* The default budget is 1/MK_SHM_CACHE_SHARE of the initial size, capped
 * (segments of 128 and 512 MiB: their pages are never touched), and the
 * caller's budget wins. */
static void test_cache_default_budget(void **state) {
    (void)state;
    const char *name = nm("cache-budget");
    mk_shm *s = make(name, 128 * MB, 0, MK_POLICY_TLSF, 0);
    assert_int_equal(info_of(s).cache_bytes, 128 * MB / MK_SHM_CACHE_SHARE);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
    s = make(name, 512 * MB, 0, MK_POLICY_TLSF, 0);
    assert_int_equal(info_of(s).cache_bytes, MK_SHM_CACHE_DEFAULT_BYTES);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
    mk_shm_config cfg = {.size = 128 * MB, .policy = MK_POLICY_TLSF, .cache_bytes = 12345};
    RC(mk_shm_create(name, &cfg, &s), MK_OK);
    assert_int_equal(info_of(s).cache_bytes, 12345);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* A free and an allocation of the same size are served by the cache: the
 * engine sees neither; LIFO order; double and interior frees refused by
 * both the cache path and the locked path (another handle); zeroing. */
static void test_cache_basics(void **state) {
    (void)state;
    const char *name = nm("cache");
    mk_shm *s = make(name, 4 * MB, 0, MK_POLICY_TLSF, 0);
    assert_int_equal(info_of(s).cache_bytes, 4 * MB / MK_SHM_CACHE_SHARE); /* the default */
    mk_off a, b, z;
    RC(mk_shm_alloc(s, 100, &a), MK_OK);
    mk_stats st0 = stats_of(s);
    assert_true(info_of(s).cached_blocks > 0); /* the refill brought a few more */
    for (int i = 0; i < 1000; i++) {
        fill(mk_shm_ptr(s, a), 100, (uint64_t)i);
        RC(mk_shm_free(s, a), MK_OK);
        RC(mk_shm_alloc(s, 100, &b), MK_OK);
        assert_int_equal(b, a); /* the block just freed comes back first */
    }
    mk_stats st1 = stats_of(s);
    assert_int_equal(st1.n_alloc, st0.n_alloc); /* no lock, no engine operation */
    assert_int_equal(st1.n_free, st0.n_free);
    /* Walk: cached blocks are reported as such, and counted by get_info. */
    uint64_t kinds[MK_SHM_BLOCK_CACHED + 1] = {0};
    RC(mk_shm_walk(s, count_kinds, kinds), 0);
    assert_int_equal(kinds[MK_SHM_BLOCK_CACHED], info_of(s).cached_blocks);
    assert_int_equal(kinds[MK_SHM_BLOCK_META], 2); /* the meta block and our cache table */
    /* Double free: through the cache, and through another handle. */
    RC(mk_shm_free(s, a), MK_OK);
    RC(mk_shm_free(s, a), MK_EDOUBLEFREE);
    mk_shm *other = NULL;
    RC(mk_shm_open(name, 0, &other), MK_OK);
    RC(mk_shm_free(other, a), MK_EDOUBLEFREE);
    RC(mk_shm_usable_size(other, a, &(size_t){0}), MK_OK); /* allocated, for the engine */
    RC(mk_shm_alloc(s, 100, &b), MK_OK);
    assert_int_equal(b, a);
    RC(mk_shm_free(s, b + 16), MK_EBADOFF); /* interior */
    RC(mk_shm_free(other, b), MK_OK);       /* freed by another process: its cache */
    RC(mk_shm_free(s, b), MK_EDOUBLEFREE);
    RC(mk_shm_alloc(other, 100, &b), MK_OK);
    assert_int_equal(b, a);
    mk_off t;
    RC(mk_shm_alloc(other, 300, &t), MK_OK); /* an empty list: refilled with a few */
    RC(mk_shm_free(other, t), MK_OK);
    /* MK_SHM_ZERO from the cache */
    memset(mk_shm_ptr(s, b), 0xEE, 100);
    RC(mk_shm_free(s, b), MK_OK);
    RC(mk_shm_alloc_ex(s, 100, 0, MK_SHM_ZERO, &z), MK_OK);
    assert_int_equal(z, b);
    for (int i = 0; i < 100; i++) assert_int_equal(((unsigned char *)mk_shm_ptr(s, z))[i], 0);
    valid(s);
    RC(mk_shm_free(s, z), MK_OK);
    /* flush: this process's cache is empty afterwards, the other's is not */
    uint64_t theirs = 0;
    RC(mk_shm_cache_flush(s), MK_OK);
    theirs = info_of(s).cached_blocks;
    RC(mk_shm_close(other), MK_OK); /* closing flushes too */
    assert_true(theirs > 0);
    assert_int_equal(info_of(s).cached_blocks, 0);
    assert_int_equal(stats_of(s).blocks_used, 2); /* meta block, our table */
    valid(s);
    RC(mk_shm_cache_flush(NULL), MK_EINVAL);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* What the walk says of one block. */
typedef struct find_block {
    mk_off off;
    mk_shm_block found;
} find_block;
static int find_one(const mk_shm_block *b, void *arg) {
    find_block *f = arg;
    if (b->info.offset != f->off) return 0;
    f->found = *b;
    return 1;
}
static mk_shm_block block_at(mk_shm *s, mk_off off) {
    find_block f = {.off = off};
    assert_int_equal(mk_shm_walk(s, find_one, &f), 1);
    return f.found;
}

/* Owned blocks go through their owner's cache too, on lists of their own:
 * they stay owned while cached (the owner word intact), plain allocations
 * never get them nor owned ones plain blocks, another process's free of
 * one takes the locked path, and a dead owner's cached owned blocks are
 * freed by the reap, its live ones by the reclaim. */
static void test_cache_owned(void **state) {
    (void)state;
    const char *name = nm("cache-owned");
    mk_shm *s = make(name, 4 * MB, 0, MK_POLICY_TLSF, 0);
    mk_off a, b, p;
    RC(mk_shm_alloc_ex(s, 100, 0, MK_SHM_OWNED, &a), MK_OK);
    size_t u = 0;
    RC(mk_shm_usable_size(s, a, &u), MK_OK);
    assert_true(u >= 100);
    mk_shm_block blk = block_at(s, a);
    assert_int_equal(blk.kind, MK_SHM_BLOCK_OWNED);
    assert_int_equal(blk.owner_slot, (uint32_t)s->slot);
    mk_stats st0 = stats_of(s);
    for (int i = 0; i < 1000; i++) {
        fill(mk_shm_ptr(s, a), u, (uint64_t)i); /* all of it: the owner word is beyond */
        RC(mk_shm_free(s, a), MK_OK);
        assert_int_equal(block_at(s, a).kind, MK_SHM_BLOCK_CACHED);
        RC(mk_shm_alloc_ex(s, 100, 0, MK_SHM_OWNED, &b), MK_OK);
        assert_int_equal(b, a); /* the block just freed comes back first */
        assert_int_equal(block_at(s, a).kind, MK_SHM_BLOCK_OWNED);
    }
    mk_stats st1 = stats_of(s);
    assert_int_equal(st1.n_alloc, st0.n_alloc); /* no lock, no engine operation */
    assert_int_equal(st1.n_free, st0.n_free);
    valid(s);
    /* The kinds do not mix: a plain allocation of the same size does not
     * get the cached owned block, an owned one does not get a plain one. */
    RC(mk_shm_free(s, a), MK_OK);
    RC(mk_shm_alloc(s, 100, &p), MK_OK);
    assert_true(p != a);
    assert_int_equal(block_at(s, p).kind, MK_SHM_BLOCK_PLAIN);
    RC(mk_shm_free(s, p), MK_OK);
    RC(mk_shm_alloc_ex(s, 100, 0, MK_SHM_OWNED, &b), MK_OK);
    assert_int_equal(b, a);
    /* Double free, through the cache and through another handle. */
    RC(mk_shm_free(s, a), MK_OK);
    RC(mk_shm_free(s, a), MK_EDOUBLEFREE);
    mk_shm *other = NULL;
    RC(mk_shm_open(name, 0, &other), MK_OK);
    RC(mk_shm_free(other, a), MK_EDOUBLEFREE);
    /* MK_SHM_ZERO from the cache zeroes the payload, not the owner word. */
    RC(mk_shm_alloc_ex(s, 100, 0, MK_SHM_OWNED | MK_SHM_ZERO, &b), MK_OK);
    assert_int_equal(b, a);
    for (size_t i = 0; i < u; i++) assert_int_equal(((unsigned char *)mk_shm_ptr(s, b))[i], 0);
    assert_int_equal(block_at(s, b).kind, MK_SHM_BLOCK_OWNED);
    valid(s);
    /* Another process's free of our owned block: its cache does not take
     * it (not its own), the locked path frees it. */
    uint64_t theirs = info_of(other).cached_blocks;
    mk_stats st2 = stats_of(s);
    RC(mk_shm_free(other, b), MK_OK);
    assert_int_equal(stats_of(s).n_free, st2.n_free + 1);
    assert_int_equal(info_of(other).cached_blocks, theirs);
    RC(mk_shm_close(other), MK_OK);
    valid(s);
    /* A dead owner: the reap frees its cached owned blocks, the reclaim
     * its live ones; a closed owner's cached ones went at its close. */
    RC(mk_shm_cache_flush(s), MK_OK);
    mk_stats before = stats_of(s);
    for (int die = 1; die >= 0; die--) {
        owned_child(name, 50, 30, die);
        uint64_t blocks = 0;
        RC(mk_shm_reclaim(s, &blocks, NULL), MK_OK);
        assert_int_equal(blocks, 20);
        assert_int_equal(info_of(s).cached_blocks, 0);
        mk_stats after = stats_of(s);
        assert_int_equal(after.bytes_used, before.bytes_used);
        assert_int_equal(after.blocks_used, before.blocks_used);
        valid(s);
    }
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* A damaged list gives MK_ECORRUPT and validate names it; no wild write. */
static void test_cache_damage(void **state) {
    (void)state;
    const char *name = nm("cache-dmg");
    mk_shm *s = make(name, 2 * MB, 0, MK_POLICY_BEST_FIT, 0);
    mk_off a;
    RC(mk_shm_alloc(s, 200, &a), MK_OK);
    RC(mk_shm_free(s, a), MK_OK);
    mk__shm_bin *bin = &s->cache->bin[MK__SHM_PLAIN][mk__bspan(s->h, a - 8) / 16];
    mk_off keep = bin->head;
    const mk_off bad[] = {12345, 8, s->h->size + 4096 + 8, a + 8, a + 32};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bin->head = bad[i];
        mk_fault f = {0};
        RC(mk_shm_validate(s, &f), MK_ECORRUPT);
        assert_non_null(strstr(f.invariant, "cache"));
        mk_off x = 0;
        RC(mk_shm_alloc(s, 200, &x), MK_ECORRUPT);
    }
    bin->head = keep;
    valid(s);
    /* A cookie forged on a live block is refused as a cached block. */
    mk_off live;
    RC(mk_shm_alloc(s, 200, &live), MK_OK);
    RC(mk_shm_alloc(s, 200, &a), MK_OK);
    RC(mk_shm_free(s, a), MK_OK);
    *(mk_off *)mk_shm_ptr(s, a) = live - 8;    /* the list's next: a live block */
    RC(mk_shm_alloc(s, 200, &a), MK_OK);       /* the head is still good */
    RC(mk_shm_alloc(s, 200, &a), MK_ECORRUPT); /* the forged one is refused */
    /* Offsets whose header and cookie words would lie past the end of the
     * address space: refused, never read (an offset plus 24 wraps). */
    const mk_off huge[] = {UINT64_MAX, UINT64_MAX - 7, UINT64_MAX - 15, UINT64_MAX - 23};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++)
        RC(mk_shm_free(s, huge[i]), MK_EBADOFF);
    /* A dead process's table names such a block in flight: the reap
     * refuses it too, and frees the rest. */
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        mk_shm *c = NULL;
        mk_off o;
        if (mk_shm_open(name, 0, &c) != MK_OK || mk_shm_alloc(c, 100, &o) != MK_OK) _exit(10);
        c->cache->pending = UINT64_MAX - 7;
        raise(SIGKILL);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    uint64_t before = stats_of(s).blocks_used;
    RC(mk_shm_reclaim(s, NULL, NULL), MK_OK);
    assert_true(stats_of(s).blocks_used < before); /* its table and refills: freed */
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* A cached block's header is checked again when the block is handed out
 * (flags, span and tag): damage there is refused, the block stays listed,
 * and with the header mended the same allocation takes it. */
static void test_cache_header_damage(void **state) {
    (void)state;
    const char *name = nm("cache-hdr");
    mk_shm *s = make(name, 2 * MB, 0, MK_POLICY_TLSF, 0);
    mk_off a, x;
    RC(mk_shm_alloc(s, 200, &a), MK_OK);
    RC(mk_shm_free(s, a), MK_OK);
    uint64_t *hw = mk__word(s->h, a - 8), w = *hw, span = mk__span(w);
    const uint64_t bad[] = {w | MK__F_USER, w | MK__F_FREE, (w & ~MK__SPAN_MASK) | (span + 16),
                            (w & ~MK__SPAN_MASK) | (span - 16), w ^ (UINT64_C(1) << 63)};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        *hw = bad[i];
        RC(mk_shm_alloc(s, 200, &x), MK_ECORRUPT);
        assert_int_equal(s->cache->bin[MK__SHM_PLAIN][span / 16].head, a - 8); /* still listed */
        mk_fault f = {0};
        RC(mk_shm_validate(s, &f), MK_ECORRUPT);
    }
    *hw = w;
    valid(s);
    RC(mk_shm_alloc(s, 200, &x), MK_OK);
    assert_int_equal(x, a);
    RC(mk_shm_free(s, x), MK_OK);
    valid(s);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* A collection that meets a damaged list refuses the free (MK_ECORRUPT),
 * keeps the block allocated and writes nothing wild; with the list mended,
 * the heap validates and the same free succeeds. */
static void test_cache_collect_damage(void **state) {
    (void)state;
    const char *name = nm("cache-gc-dmg");
    mk_shm_config cfg = {.size = 2 * MB, .policy = MK_POLICY_TLSF, .cache_bytes = 1024};
    mk_shm *s = NULL;
    RC(mk_shm_create(name, &cfg, &s), MK_OK);
    mk_off o[5];
    for (int i = 0; i < 5; i++) RC(mk_shm_alloc(s, 200, &o[i]), MK_OK);
    RC(mk_shm_free(s, o[0]), MK_OK); /* four blocks of 208 cached: no room for a fifth */
    uint64_t i = mk__bspan(s->h, o[0] - 8) / 16;
    mk__shm_bin *bin = &s->cache->bin[MK__SHM_PLAIN][i];
    assert_true(s->cache->bytes + 208 > cfg.cache_bytes);
    s->gc_wait = 0;                                  /* the next free over the budget collects, */
    s->low[MK__SHM_PLAIN][i] = (uint16_t)bin->count; /* and this list's blocks are all cold */
    mk_off keep = bin->head;
    bin->head = 12345;
    mk_stats before = stats_of(s);
    RC(mk_shm_free(s, o[1]), MK_ECORRUPT);
    assert_int_equal(stats_of(s).blocks_used, before.blocks_used); /* nothing freed */
    bin->head = keep;
    valid(s);
    for (int k = 1; k < 5; k++) RC(mk_shm_free(s, o[k]), MK_OK);
    valid(s);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* Cached memory is not lost to other sizes: an allocation that finds no
 * room gives the caller's cache back first. MK_SHM_NO_CACHE turns caches
 * off; small segments have none. */
static void test_cache_room(void **state) {
    (void)state;
    const char *name = nm("cache-room");
    mk_shm *s = make(name, 1 * MB, 0, MK_POLICY_TLSF, 0);
    enum { N = 8000 };
    static mk_off o[N];
    int n = 0;
    while (n < N && mk_shm_alloc(s, 200, &o[n]) == MK_OK) n++;
    assert_true(n > 1000 && n < N);
    for (int i = 0; i < n; i++) RC(mk_shm_free(s, o[i]), MK_OK);
    uint64_t cached = info_of(s).cached_bytes;
    assert_true(cached > 0);
    /* More than the heap has free: only with the cached bytes back. */
    mk_off big;
    RC(mk_shm_alloc(s, stats_of(s).bytes_free + cached / 2, &big), MK_OK);
    assert_int_equal(info_of(s).cached_bytes, 0);
    valid(s);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);

    s = make(name, 2 * MB, 0, MK_POLICY_TLSF, MK_SHM_NO_CACHE);
    assert_int_equal(info_of(s).cache_bytes, 0);
    mk_off a;
    RC(mk_shm_alloc(s, 100, &a), MK_OK);
    RC(mk_shm_free(s, a), MK_OK);
    RC(mk_shm_free(s, a), MK_EDOUBLEFREE);
    assert_int_equal(stats_of(s).n_free, 1);
    assert_int_equal(info_of(s).cached_blocks, 0);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);

    s = make(name, 512 * KB, 0, MK_POLICY_TLSF, 0); /* below MK_SHM_CACHE_MIN_SEGMENT */
    RC(mk_shm_alloc(s, 100, &a), MK_OK);
    RC(mk_shm_free(s, a), MK_OK);
    assert_int_equal(info_of(s).cached_blocks, 0);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* A cache at its budget gives back the blocks it did not use (the
 * collection): a cache filled with blocks of about OLD bytes, then cycling
 * blocks of NEW bytes (larger than any gap left under the budget),
 * ends up serving the new span without the engine. Without the collection
 * every free of the new span would go to the heap and every allocation
 * would be a refill: n_alloc would grow with every cycle. */
static void test_cache_collect(void **state) {
    (void)state;
    const char *name = nm("cache-gc");
    enum { BUDGET = 64 * 1024, OLD = 1000, NEW = 2000, FILL = 64 };
    mk_shm_config cfg = {.size = 4 * MB, .policy = MK_POLICY_TLSF, .cache_bytes = BUDGET};
    mk_shm *s = NULL;
    RC(mk_shm_create(name, &cfg, &s), MK_OK);
    /* Fill the cache to its budget with blocks of 16 spans from OLD bytes up. */
    static mk_off o[FILL];
    for (int i = 0; i < FILL; i++) RC(mk_shm_alloc(s, OLD + (size_t)(i % 16) * 16, &o[i]), MK_OK);
    for (int i = 0; i < FILL; i++) RC(mk_shm_free(s, o[i]), MK_OK);
    uint64_t full = info_of(s).cached_bytes;
    assert_true(full > BUDGET - (NEW + 8) && full <= BUDGET); /* no room for a NEW block */
    /* Cycle NEW-byte blocks, a few live at a time, long enough for two
     * collections (one to set the low-water marks, one to use them). */
    mk_off a[4];
    for (int round = 0; round < 200; round++) {
        for (int k = 0; k < 4; k++) RC(mk_shm_alloc(s, NEW, &a[k]), MK_OK);
        for (int k = 0; k < 4; k++) RC(mk_shm_free(s, a[k]), MK_OK);
    }
    uint64_t n0 = stats_of(s).n_alloc, f0 = stats_of(s).n_free;
    for (int round = 0; round < 100; round++) {
        for (int k = 0; k < 4; k++) RC(mk_shm_alloc(s, NEW, &a[k]), MK_OK);
        for (int k = 0; k < 4; k++) RC(mk_shm_free(s, a[k]), MK_OK);
    }
    assert_int_equal(stats_of(s).n_alloc, n0); /* all from the cache */
    assert_int_equal(stats_of(s).n_free, f0);
    assert_true(info_of(s).cached_bytes < full); /* old blocks went back */
    assert_true(info_of(s).cached_bytes <= BUDGET);
    valid(s);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* A dead process's cache comes back whole; a forked child's copy of a
 * handle does not touch its parent's cache. */
static void test_cache_dead_process(void **state) {
    (void)state;
    const char *name = nm("cache-dead");
    mk_shm_config cfg = {.size = 4 * MB, .policy = MK_POLICY_FIRST_FIT, .cache_bytes = 256 * KB};
    mk_shm *s = NULL;
    RC(mk_shm_create(name, &cfg, &s), MK_OK);
    mk_off mine;
    RC(mk_shm_alloc(s, 64, &mine), MK_OK);
    fill(mk_shm_ptr(s, mine), 64, 3);
    mk_stats before = stats_of(s);
    uint64_t cached_before = info_of(s).cached_blocks;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        mk_shm *c = NULL;
        if (mk_shm_open(name, 0, &c) != MK_OK) _exit(10);
        mk_off o[300];
        for (int i = 0; i < 300; i++)
            if (mk_shm_alloc(c, 16 + (size_t)i * 13, &o[i]) != MK_OK) _exit(11);
        for (int i = 0; i < 300; i++)
            if (mk_shm_free(c, o[i]) != MK_OK) _exit(12);
        raise(SIGKILL);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    assert_true(info_of(s).cached_bytes > 64 * KB);
    RC(mk_shm_reclaim(s, NULL, NULL), MK_OK);
    assert_int_equal(info_of(s).cached_blocks, cached_before);
    mk_stats after = stats_of(s);
    assert_int_equal(after.bytes_used, before.bytes_used);
    assert_int_equal(after.blocks_used, before.blocks_used);
    valid(s);

    /* The child uses its copy of our handle: the locked path, our cache untouched. */
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        mk_off o;
        for (int i = 0; i < 200; i++) {
            if (mk_shm_alloc(s, 64, &o) != MK_OK) _exit(20);
            if (mk_shm_free(s, o) != MK_OK) _exit(21);
        }
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_int_equal(info_of(s).cached_blocks, cached_before);
    assert_int_equal(stats_of(s).n_alloc, after.n_alloc + 200);
    assert_true(same(mk_shm_ptr(s, mine), 64, 3));
    valid(s);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* A refill whose policy hands back a larger block (the remainder too small
 * to split) keeps it on the list of that span, but never past the list's
 * cap: a list at its cap would grow past MK__SHM_CACHE_MAX_LEN, which
 * validate (rightly) reports as damage. Set up with best fit: the list of
 * span 112 full at 1024 blocks (16 MiB budget: cap 131072 / 112 > 1024),
 * one free hole of span 112 in the heap between used blocks, then an
 * allocation of span 96 (its list empty, 112 beyond its slack) refills
 * from the heap, which gives the 112 hole whole. */
static void test_cache_refill_full_list(void **state) {
    (void)state;
    const char *name = nm("cache-full");
    mk_shm_config cfg = {.size = 16 * MB, .policy = MK_POLICY_BEST_FIT, .cache_bytes = 16 * MB};
    mk_shm *s = NULL;
    RC(mk_shm_create(name, &cfg, &s), MK_OK);
    enum { N = 1100 };
    static mk_off o[N];
    for (int i = 0; i < N; i++) RC(mk_shm_alloc(s, 100, &o[i]), MK_OK); /* span 112 */
    mk__shm_bin *full = &s->cache->bin[MK__SHM_PLAIN][112 / 16];
    int i = 0;
    while (i < N && full->count < MK__SHM_CACHE_MAX_LEN) RC(mk_shm_free(s, o[i++]), MK_OK);
    assert_int_equal(full->count, MK__SHM_CACHE_MAX_LEN);
    /* A hole of span 112 between used blocks: owned blocks, the middle one
     * freed by another handle, whose cache does not take our owned blocks. */
    mk_off w[3];
    for (int k = 0; k < 3; k++) RC(mk_shm_alloc_ex(s, 96, 0, MK_SHM_OWNED, &w[k]), MK_OK);
    mk_shm *other = NULL;
    RC(mk_shm_open(name, 0, &other), MK_OK);
    RC(mk_shm_free(other, w[1]), MK_OK);
    RC(mk_shm_close(other), MK_OK);
    assert_int_equal(s->cache->bin[MK__SHM_PLAIN][96 / 16].count, 0);
    mk_off x;
    RC(mk_shm_alloc(s, 88, &x), MK_OK); /* span 96 */
    assert_true(full->count <= MK__SHM_CACHE_MAX_LEN);
    /* The refill got the hole whole, gave it back (its list full), and the
     * locked path handed it to the caller. */
    assert_int_equal(x, w[1]);
    valid(s);
    RC(mk_shm_free(s, x), MK_OK);
    RC(mk_shm_free(s, w[0]), MK_OK);
    RC(mk_shm_free(s, w[2]), MK_OK);
    for (; i < N; i++) RC(mk_shm_free(s, o[i]), MK_OK);
    valid(s);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* A list's cap, free by free: a list holds min(1024, max(4, B / span))
 * blocks, B = max(budget / 128, 16 KiB); the free that finds it full gives
 * half of it back first. Two regimes: budget 4 MiB and span 1024 (cap
 * 32768 / 1024 = 32), and budget 64 KiB and span 4112 (16384 / 4112 = 3,
 * so the floor of 4). An off-by-one in the cap either way changes where
 * the first trim falls. */
static void check_list_cap(size_t budget, size_t size, uint64_t span, uint64_t cap) {
    const char *name = nm("cache-cap");
    mk_shm_config cfg = {.size = 16 * MB, .policy = MK_POLICY_TLSF, .cache_bytes = budget};
    mk_shm *s = NULL;
    RC(mk_shm_create(name, &cfg, &s), MK_OK);
    enum { N = 80 };
    mk_off o[N];
    for (int i = 0; i < N; i++) RC(mk_shm_alloc(s, size, &o[i]), MK_OK);
    size_t got = 0;
    RC(mk_shm_usable_size(s, o[0], &got), MK_OK);
    assert_int_equal(got + MK__TAGW, span);
    mk__shm_bin *bin = &s->cache->bin[MK__SHM_PLAIN][span / 16];
    uint64_t want = bin->count; /* a refill's extra blocks */
    assert_true(want < cap);
    for (int i = 0; i < N; i++) {
        RC(mk_shm_free(s, o[i]), MK_OK);
        want = want < cap ? want + 1 : want / 2 + 1;
        assert_int_equal(bin->count, want);
    }
    valid(s);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

static void test_cache_list_cap(void **state) {
    (void)state;
    check_list_cap(4 * MB, 1016, 1024, 32);
    check_list_cap(64 * KB, 4096, 4112, 4);
}

/* Random operations through the caches against a model (every live block's
 * contents), each policy; validate on the way; at the end everything freed
 * and flushed gives back exactly the starting bytes: no block lost. Sizes
 * reach past the cached range, where a policy may hand out a larger span. */
static void test_cache_random(void **state) {
    (void)state;
    enum { N = 600, OPS = 40000 };
    static mk_off off[N];
    static size_t len[N];
    for (int pol = 0; pol < MK_POLICY_COUNT; pol++) {
        const char *name = nm("cache-rnd");
        mk_shm *s = make(name, 8 * MB, 0, (mk_policy)pol, 0);
        mk_stats st0 = stats_of(s);
        uint64_t x = 0x9E3779B97F4A7C15u + (uint64_t)pol;
        memset(off, 0, sizeof off);
        for (int it = 0; it < OPS; it++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            int i = (int)(x % N);
            if (off[i]) {
                assert_true(same(mk_shm_ptr(s, off[i]), len[i], (uint64_t)i + len[i]));
                RC(mk_shm_free(s, off[i]), MK_OK);
                off[i] = 0;
            } else {
                len[i] = (size_t)(x >> 20) % 4500 + (x >> 60 == 0 ? 4000 : 0);
                unsigned flags = (x >> 40) % 7 == 0 ? MK_SHM_ZERO : 0;
                RC(mk_shm_alloc_ex(s, len[i], 0, flags, &off[i]), MK_OK);
                if (flags)
                    for (size_t k = 0; k < len[i]; k++)
                        assert_int_equal(((unsigned char *)mk_shm_ptr(s, off[i]))[k], 0);
                fill(mk_shm_ptr(s, off[i]), len[i], (uint64_t)i + len[i]);
            }
            if (it % 5000 == 0) valid(s);
        }
        for (int i = 0; i < N; i++)
            if (off[i]) RC(mk_shm_free(s, off[i]), MK_OK);
        valid(s);
        RC(mk_shm_cache_flush(s), MK_OK);
        mk_stats st1 = stats_of(s);
        if (st1.bytes_used != st0.bytes_used)
            fail_msg("%s: %" PRIu64 " bytes in use after freeing everything, %" PRIu64
                     " at the start",
                     mk_policy_name((mk_policy)pol), st1.bytes_used, st0.bytes_used);
        assert_true(st1.n_alloc < OPS / 4); /* most operations never reached the engine */
        RC(mk_shm_close(s), MK_OK);
        RC(mk_shm_unlink(name, 0), MK_OK);
    }
}

/* ---- threads ------------------------------------------------------------------------ */

/* Threads of one process share a handle. Once the process has a second
 * thread, each thread that allocates or frees a plain block gets a cache
 * of its own (src/shm/threads.c): the handle's own for the first, a thread
 * handle (another slot) for the others; owned blocks and the locked path
 * stay with the handle, under its mutex. Each thread allocates, fills,
 * checks and frees its own blocks, sizes through the cached range and
 * beyond, plain blocks in two threads and owned ones in the other two
 * (whose frees still go through their own caches first). Broken, the lists
 * hand a block to two threads or lose one, and ThreadSanitizer reports the
 * race (a thread handle shared, or the handle's cache used without its
 * mutex). */
enum { TH_N = 4, TH_LIVE = 64, TH_OPS = 20000 };
typedef struct th_arg {
    mk_shm *s;
    unsigned id;
    int ops; /* 0: TH_OPS */
    int err;
    pthread_barrier_t *bar; /* if set: every thread has its cache before any works */
} th_arg;

static void *th_body(void *p) {
    th_arg *a = p;
    if (a->bar) {
        mk_off o = 0;
        if (mk_shm_alloc(a->s, 100, &o) != MK_OK || mk_shm_free(a->s, o) != MK_OK) a->err = 6;
        pthread_barrier_wait(a->bar);
    }
    mk_off off[TH_LIVE] = {0};
    size_t len[TH_LIVE] = {0};
    uint64_t x = 0x9E3779B97F4A7C15u * (a->id + 1);
    int ops = a->ops ? a->ops : TH_OPS;
    for (int it = 0; it < ops && !a->err; it++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        unsigned i = (unsigned)(x % TH_LIVE);
        uint64_t seed = a->id * 1000003u + i;
        if (off[i]) {
            if (!same(mk_shm_ptr(a->s, off[i]), len[i], seed + len[i])) a->err = 1;
            if (mk_shm_free(a->s, off[i]) != MK_OK) a->err = 2;
            off[i] = 0;
        } else {
            len[i] = (size_t)(x >> 20) % 5000 + 1;
            unsigned flags = a->id & 1 ? MK_SHM_OWNED : 0; /* both kinds of lists */
            if (mk_shm_alloc_ex(a->s, len[i], 0, flags, &off[i]) != MK_OK)
                a->err = 3;
            else
                fill(mk_shm_ptr(a->s, off[i]), len[i], seed + len[i]);
        }
    }
    for (unsigned i = 0; i < TH_LIVE; i++)
        if (off[i] && mk_shm_free(a->s, off[i]) != MK_OK) a->err = 4;
    return NULL;
}

/* n threads (at most 16) on s, all holding a cache before any works;
 * ops per thread (0: TH_OPS). */
static void run_n_threads(mk_shm *s, unsigned n, int ops) {
    pthread_t t[16];
    th_arg a[16];
    pthread_barrier_t bar;
    assert_true(n <= 16);
    assert_int_equal(pthread_barrier_init(&bar, NULL, n), 0);
    for (unsigned k = 0; k < n; k++) {
        a[k] = (th_arg){.s = s, .id = k, .ops = ops, .bar = &bar};
        assert_int_equal(pthread_create(&t[k], NULL, th_body, &a[k]), 0);
    }
    assert_false(mk__os_single_threaded());
    for (unsigned k = 0; k < n; k++) {
        assert_int_equal(pthread_join(t[k], NULL), 0);
        assert_int_equal(a[k].err, 0);
    }
    pthread_barrier_destroy(&bar);
}

static void run_threads(mk_shm *s) { run_n_threads(s, TH_N, 0); }

static uint64_t attached(mk_shm *s) {
    mk_shm_info in;
    RC(mk_shm_get_info(s, &in), MK_OK);
    return in.attached;
}

static void test_threads_share_handle(void **state) {
    (void)state;
    const char *name = nm("threads");
    mk_shm *s = make(name, 16 * MB, 0, MK_POLICY_TLSF, 0);
    assert_non_null(s->cache);
    mk_stats st0 = stats_of(s);
    mk_shm *h2 = NULL; /* what one more cache table costs */
    RC(mk_shm_open(name, 0, &h2), MK_OK);
    uint64_t table = stats_of(s).bytes_used - st0.bytes_used;
    RC(mk_shm_close(h2), MK_OK);
    assert_true(table > sizeof(mk__shm_cache));

    run_threads(s); /* the handle's cache and three thread handles */
    valid(s);
    assert_int_equal(attached(s), TH_N);
    RC(mk_shm_cache_flush(s), MK_OK); /* every thread handle's too */
    assert_int_equal(stats_of(s).bytes_used, st0.bytes_used + (TH_N - 1) * table);
    run_threads(s); /* exited threads gave their caches back: taken again */
    valid(s);
    assert_int_equal(attached(s), TH_N);

    RC(mk_shm_close(s), MK_OK); /* the thread handles with it */
    RC(mk_shm_open(name, 0, &s), MK_OK);
    assert_int_equal(attached(s), 1);
    assert_int_equal(stats_of(s).bytes_used, st0.bytes_used); /* every block back */
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* Where thread handles run out, threads share the handle's cache (under
 * its mutex) and lose nothing: past 8 thread handles per handle, and when
 * the process table has no slot for one. */
static void test_thread_handles_run_out(void **state) {
    (void)state;
    const char *name = nm("threadsmany");
    mk_shm *s = make(name, 16 * MB, 0, MK_POLICY_TLSF, 0);
    mk_stats st0 = stats_of(s);
    run_n_threads(s, 12, TH_OPS / 8); /* the handle's cache, 8 thread handles, 3 share */
    assert_int_equal(attached(s), 1 + 8);
    valid(s);
    RC(mk_shm_close(s), MK_OK);

    RC(mk_shm_open(name, 0, &s), MK_OK);
    static mk_shm *more[MK_SHM_MAX_PROCS];
    unsigned n = 0; /* fill the process table */
    while (n < MK_SHM_MAX_PROCS && mk_shm_open(name, 0, &more[n]) == MK_OK) n++;
    assert_int_equal(n, MK_SHM_MAX_PROCS - 1);
    mk_shm *full = NULL;
    RC(mk_shm_open(name, 0, &full), MK_EBUSY);
    run_n_threads(s, 3, TH_OPS / 8); /* no slot for a thread handle: all share */
    assert_int_equal(attached(s), MK_SHM_MAX_PROCS);
    valid(s);
    for (unsigned i = 0; i < n; i++) RC(mk_shm_close(more[i]), MK_OK);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_open(name, 0, &s), MK_OK);
    assert_int_equal(attached(s), 1);
    assert_int_equal(stats_of(s).bytes_used, st0.bytes_used); /* every block back */
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* Owned blocks that threads allocate through their own caches belong to
 * the handle they share, not to a thread: a thread handle's table tags
 * them with its parent's owner word. So they outlive their threads, no
 * reclaim takes them while the handle is open, and closing the handle
 * leaves them to the reclaim, as any owned block of a closed handle. */
typedef struct own_arg {
    mk_shm *s;
    pthread_barrier_t *bar;
    mk_off off;
    int rc;
} own_arg;

static void *own_body(void *p) {
    own_arg *a = p;
    mk_off o = 0; /* a cache of its own first */
    a->rc = mk_shm_alloc(a->s, 100, &o);
    if (a->rc == MK_OK) a->rc = mk_shm_free(a->s, o);
    pthread_barrier_wait(a->bar);
    if (a->rc == MK_OK) a->rc = mk_shm_alloc_ex(a->s, 300, 0, MK_SHM_OWNED, &a->off);
    if (a->rc == MK_OK) a->rc = mk_shm_free(a->s, a->off); /* on its owned list */
    if (a->rc == MK_OK) a->rc = mk_shm_alloc_ex(a->s, 300, 0, MK_SHM_OWNED, &a->off);
    return NULL;
}

static void test_thread_owned_blocks(void **state) {
    (void)state;
    const char *name = nm("threadsown");
    mk_shm *s = make(name, 16 * MB, 0, MK_POLICY_TLSF, 0), *h2 = NULL;
    mk_stats st0 = stats_of(s); /* one cache table: as many as at the end */
    RC(mk_shm_open(name, 0, &h2), MK_OK);
    pthread_barrier_t bar;
    assert_int_equal(pthread_barrier_init(&bar, NULL, 2), 0);
    own_arg a[2];
    pthread_t t[2];
    for (int k = 0; k < 2; k++) {
        a[k] = (own_arg){.s = s, .bar = &bar};
        assert_int_equal(pthread_create(&t[k], NULL, own_body, &a[k]), 0);
    }
    for (int k = 0; k < 2; k++) {
        assert_int_equal(pthread_join(t[k], NULL), 0);
        RC(a[k].rc, MK_OK);
    }
    pthread_barrier_destroy(&bar);
    assert_int_equal(attached(s), 3); /* s, h2, one thread handle */
    uint64_t word = mk__shm_owner_word((uint32_t)s->slot, s->gen), n = 0;
    for (int k = 0; k < 2; k++) {
        mk__shm_blk blk;
        RC(mk__shm_classify(s->h, a[k].off, &blk), MK_OK);
        assert_int_equal(blk.kind, MK_SHM_BLOCK_OWNED);
        assert_int_equal(mk__get(s->h, blk.b + blk.span - 8), word); /* the handle's */
    }
    RC(mk_shm_reclaim(h2, &n, NULL), MK_OK);
    assert_int_equal(n, 0); /* their owner is open */
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_reclaim(h2, &n, NULL), MK_OK);
    assert_int_equal(n, 2); /* the two live ones; the cached ones went back at close */
    valid(h2);
    assert_int_equal(stats_of(h2).bytes_used, st0.bytes_used); /* every block back */
    RC(mk_shm_close(h2), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* An allocation that finds no room takes back what the other threads'
 * caches hold before it fails: here the room it needs is all in them. So
 * do a realloc and an object's creation. */
static size_t fill_thread_caches(mk_shm *s, mk_stats *st) {
    run_threads(s); /* three thread handles, their caches full of free blocks */
    mk_shm_info in;
    RC(mk_shm_get_info(s, &in), MK_OK);
    *st = stats_of(s);
    assert_true(in.cached_bytes > 64 * KB);
    return (size_t)(st->bytes_free + in.cached_bytes / 2); /* fits only with them */
}

static void caches_given_back(mk_shm *s, const mk_stats *st) {
    mk_shm_info in;
    RC(mk_shm_get_info(s, &in), MK_OK);
    assert_int_equal(in.cached_bytes, 0);
    assert_int_equal(stats_of(s).n_failed, st->n_failed); /* no failure counted */
}

static void test_thread_caches_give_back(void **state) {
    (void)state;
    const char *name = nm("threadsfull");
    mk_shm *s = make(name, 4 * MB, 0, MK_POLICY_TLSF, 0);
    mk_stats st;
    size_t want = fill_thread_caches(s, &st);
    mk_off big = 0, o = 0;
    RC(mk_shm_alloc(s, want, &big), MK_OK);
    caches_given_back(s, &st);
    mk_off more = 0; /* no room anywhere now: one failure, counted once */
    RC(mk_shm_alloc(s, want, &more), MK_ENOMEM);
    assert_int_equal(stats_of(s).n_failed, st.n_failed + 1);
    RC(mk_shm_free(s, big), MK_OK);

    RC(mk_shm_alloc(s, 5000, &o), MK_OK); /* a realloc */
    want = fill_thread_caches(s, &st);
    RC(mk_shm_realloc(s, o, want, &big), MK_OK);
    caches_given_back(s, &st);
    RC(mk_shm_free(s, big), MK_OK);

    want = fill_thread_caches(s, &st); /* an object */
    RC(mk_shm_obj_create(s, "big", 1, want - 128, 0, &big, NULL), MK_OK);
    caches_given_back(s, &st);
    RC(mk_shm_obj_create(s, "more", 1, want - 128, 0, &more, NULL), MK_ENOMEM);
    assert_int_equal(stats_of(s).n_failed, st.n_failed + 1);
    RC(mk_shm_obj_remove(s, "big"), MK_OK);
    valid(s);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* A process dies with thread handles open: they are slots of its own,
 * reaped as any dead process's are, and their cached blocks freed. The
 * child's threads free every block they allocate, so all that the dead
 * child leaves behind is in its caches. */
static void test_thread_handles_reaped(void **state) {
    (void)state;
    const char *name = nm("threadsdie");
    mk_shm *s = make(name, 16 * MB, 0, MK_POLICY_TLSF, 0);
    mk_stats st0 = stats_of(s);
    int fd[2];
    assert_int_equal(pipe(fd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        mk_shm *c = NULL;
        if (mk_shm_open(name, 0, &c) != MK_OK) _exit(1);
        pthread_t t[TH_N];
        th_arg a[TH_N];
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, TH_N);
        for (unsigned k = 0; k < TH_N; k++) {
            a[k] = (th_arg){.s = c, .id = k, .ops = TH_OPS / 4, .bar = &bar};
            if (pthread_create(&t[k], NULL, th_body, &a[k]) != 0) _exit(2);
        }
        for (unsigned k = 0; k < TH_N; k++)
            if (pthread_join(t[k], NULL) != 0 || a[k].err) _exit(3);
        char done = 1; /* the caches are full; the thread handles stay open */
        if (write(fd[1], &done, 1) != 1) _exit(4);
        pause();
        _exit(0);
    }
    char done = 0;
    assert_int_equal(read(fd[0], &done, 1), 1);
    assert_int_equal(attached(s), 1 + TH_N); /* the child's handle and 3 thread handles */
    assert_true(stats_of(s).bytes_used > st0.bytes_used + TH_N * sizeof(mk__shm_cache));
    assert_int_equal(kill(pid, SIGKILL), 0);
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    RC(mk_shm_reclaim(s, NULL, NULL), MK_OK);
    assert_int_equal(attached(s), 1);
    valid(s);
    assert_int_equal(stats_of(s).bytes_used, st0.bytes_used); /* every cached block back */
    close(fd[0]);
    close(fd[1]);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* The advice of shm.h: a handle per busy thread. Each handle has its own
 * mapping, process-table slot, cache table and mutex, so the threads' cache
 * paths run at once, and a fifth thread validates all the while: no block
 * handed to two threads, none lost, no false damage seen by a validate
 * that runs among unlocked cache operations. (ThreadSanitizer cannot see
 * the handles' shared words here, each handle reaching them at its own
 * address, as it cannot between processes.) */
static _Atomic int th_running;

static void *th_validate(void *p) {
    th_arg *a = p;
    unsigned n = 0;
    while (atomic_load(&th_running) || n < 10) { /* and a few more after */
        if (mk_shm_validate(a->s, NULL) != MK_OK) {
            a->err = 5;
            break;
        }
        n++;
    }
    return NULL;
}

static void test_threads_own_handles(void **state) {
    (void)state;
    const char *name = nm("threads2");
    mk_shm *s = make(name, 2 * MB, 0, MK_POLICY_TLSF, 0);
    mk_stats st0 = stats_of(s);
    mk_shm *hs[TH_N + 1];
    pthread_t t[TH_N + 1];
    th_arg a[TH_N + 1];
    atomic_store(&th_running, 1);
    for (unsigned k = 0; k <= TH_N; k++) {
        RC(mk_shm_open(name, 0, &hs[k]), MK_OK);
        assert_non_null(hs[k]->cache);
        a[k] = (th_arg){.s = hs[k], .id = k, .ops = TH_OPS / 4};
        assert_int_equal(pthread_create(&t[k], NULL, k < TH_N ? th_body : th_validate, &a[k]), 0);
    }
    for (unsigned k = 0; k <= TH_N; k++) {
        if (k == TH_N) atomic_store(&th_running, 0); /* the workers are done */
        assert_int_equal(pthread_join(t[k], NULL), 0);
        assert_int_equal(a[k].err, 0);
    }
    for (unsigned k = 0; k <= TH_N; k++) RC(mk_shm_close(hs[k]), MK_OK);
    valid(s);
    assert_int_equal(stats_of(s).bytes_used, st0.bytes_used); /* every block back */
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

/* ---- list --------------------------------------------------------------------------- */

static void seen(const char *n, void *arg) {
    if (strcmp(n, (const char *)arg) == 0) ((char *)arg)[0] = '#';
}

static void test_list(void **state) {
    (void)state;
    const char *name = nm("list");
    char copy[128];
    snprintf(copy, sizeof copy, "%s", name);
    mk_shm *s = make(name, 64 * KB, 0, MK_POLICY_BEST_FIT, 0);
    RC(mk_shm_list(seen, copy), MK_OK);
    assert_int_equal(copy[0], '#');
    RC(mk_shm_list(NULL, NULL), MK_EINVAL);
    RC(mk_shm_close(s), MK_OK);
    RC(mk_shm_unlink(name, 0), MK_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_all_policies),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_foreign),
        cmocka_unit_test(test_file_backed),
        cmocka_unit_test(test_two_handles),
        cmocka_unit_test(test_placement),
        cmocka_unit_test(test_remove_on_last_close),
        cmocka_unit_test(test_objects),
        cmocka_unit_test(test_objects_race),
        cmocka_unit_test(test_owned_reclaim),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_cache_basics),
        cmocka_unit_test(test_cache_owned),
        cmocka_unit_test(test_cache_default_budget),
        cmocka_unit_test(test_cache_damage),
        cmocka_unit_test(test_cache_header_damage),
        cmocka_unit_test(test_cache_room),
        cmocka_unit_test(test_cache_collect),
        cmocka_unit_test(test_cache_collect_damage),
        cmocka_unit_test(test_cache_dead_process),
        cmocka_unit_test(test_cache_random),
        cmocka_unit_test(test_cache_refill_full_list),
        cmocka_unit_test(test_cache_list_cap),
        cmocka_unit_test(test_threads_share_handle),
        cmocka_unit_test(test_thread_handles_run_out),
        cmocka_unit_test(test_thread_owned_blocks),
        cmocka_unit_test(test_thread_caches_give_back),
        cmocka_unit_test(test_thread_handles_reaped),
        cmocka_unit_test(test_threads_own_handles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
