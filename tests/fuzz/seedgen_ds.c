/*
 * Seed corpus for fuzz_ds: every lock-free structure of ipc.h (array, SPSC
 * and MPMC queues, ring, object pool, 32- and 64-bit atomics) built with
 * mk_X_init() in a buffer of several capacities and element sizes, empty,
 * partly used, full and with indices wrapped round the capacity, with an
 * open reservation or peek, with pool slots held by this process and by a
 * dead one; plus damaged ones (a wrong check word, capacity or element
 * size, a truncated buffer, indices or links out of range, a cycle in the
 * pool's free stack, cells ahead of their counters). Some are also given
 * by name (opened, found-or-created, under another type's name and a
 * missing one). Each is written in fuzz_ds's input format (see fuzz_ds.c)
 * with an operation script:
 *
 *   seedgen_ds DIR      writes DIR/<name>.bin (DIR must exist)
 *
 * Deterministic: the scripts come from a fixed-seed generator. The offsets
 * of the damaged fields are those of the layouts in docs/IPC.md; if the
 * layouts change, the damaged seeds only damage other words. The build
 * regenerates the corpus (target fuzz_ds_corpus); fuzz_ds.c says how to run
 * the fuzzer on it for longer (a persistent copy, -jobs/-workers).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ds/ds_int.h"
#include "memkit/ipc.h"

#define CTL    8u
#define SCRIPT 64u
#define BUF    (64u * 1024u)

/* fuzz_ds's type byte and ctl bits. */
enum { T_ARRAY, T_SPSC, T_MPMC, T_RING, T_POOL, T_A32, T_A64 };
enum {
    C_HDR_ELEM = 1,  /* the element size is the header's */
    C_RESIGN = 2,    /* re-sign the header */
    C_FIX_BYTES = 4, /* ... and recompute bytes */
    C_TRUNC = 8,     /* attach with less than the buffer */
    C_ARGS = 16,     /* try argument errors too */
    C_FILL = 32,     /* zero fill after the image */
    C_NAMED = 64,    /* by name: byte 6 says which name, open or create */
};

/* Offsets from the layouts in docs/IPC.md (line 1, line 2, cells, meta). */
#define OFF_LINE1 64u  /* spsc/ring head, mpmc enqueue position, pool top */
#define OFF_LINE2 128u /* spsc/ring tail, mpmc dequeue position, pool meta */
#define OFF_CELLS 256u /* mpmc cells {seq, hole, element} */

static _Alignas(MK_IPC_ALIGN) unsigned char buf[BUF];
static uint64_t rng = 0xD5EED;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static const char *dir;
static int nfiles;
static int named = -1; /* >= 0: emit by-name inputs with this byte 6 */

static void put64(size_t off, uint64_t v) { memcpy(buf + off, &v, 8); }
static uint64_t get64(size_t off) {
    uint64_t v;
    memcpy(&v, buf + off, 8);
    return v;
}

/* Write one input: the ctl bytes, a script, and buf[0, size) trimmed of
 * trailing zeros (given back as zero fill). trunc: attach with that many
 * bytes less (a multiple of 8, at most 2040). */
static void emit(const char *name, int type, unsigned ctl, size_t elem_guess, size_t size,
                 size_t trunc) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    size_t len = size;
    while (len > 0 && buf[len - 1] == 0) len--;
    if (size - len > 255u * 256u) len = size - 255u * 256u;
    size_t units = (size - len + 255) / 256;
    unsigned char c[CTL] = {0};
    c[0] = (unsigned char)type;
    c[1] = (unsigned char)(ctl | (units ? C_FILL : 0) | (trunc ? C_TRUNC : 0));
    c[2] = (unsigned char)elem_guess;
    c[3] = (unsigned char)(elem_guess >> 8);
    c[5] = (unsigned char)units;
    if (named >= 0) {
        c[1] |= C_NAMED;
        c[6] = (unsigned char)named;
    }
    if (trunc) {
        /* The fuzzer allocates len + 256 * units >= size bytes. */
        size_t extra = len + units * 256 - size;
        c[4] = (unsigned char)((trunc + extra) / 8 > 255 ? 255 : (trunc + extra) / 8);
    }
    /* Mostly operations, one step in eight a hostile write (bit 7). */
    unsigned char script[SCRIPT];
    for (size_t i = 0; i < SCRIPT; i++) {
        uint64_t r = next();
        script[i] = (unsigned char)((r & 7) ? (r >> 8) & 0x7f : (r >> 8) | 0x80);
    }
    if (fwrite(c, 1, CTL, f) != CTL || fwrite(script, 1, SCRIPT, f) != SCRIPT ||
        fwrite(buf, 1, len, f) != len) {
        perror(path);
        exit(1);
    }
    fclose(f);
    nfiles++;
}

/* The same image by name: opened as its own name, found-or-created (same
 * capacity, one more, exclusive), opened under another type's name and a
 * missing one. */
static void emit_named(const char *name, int type, unsigned ctl, size_t size) {
    const int variants[6] = {type, type | 8, type | 8 | 16, type | 8 | 32, (type + 1) % 7, 7};
    static const char *const tag[6] = {"open", "create", "create-cap", "excl", "other", "missing"};
    char n[160];
    for (int i = 0; i < 6; i++) {
        named = variants[i];
        snprintf(n, sizeof n, "named-%s-%s", name, tag[i]);
        emit(n, type, ctl, 0, size, 0);
    }
    named = -1;
}

static void fail(const char *what, int rc) {
    fprintf(stderr, "seedgen_ds: %s: %s\n", what, mk_strerror(rc));
    exit(1);
}

/* ---- queues and ring ---------------------------------------------------------- */

static void fill_elem(unsigned char *e, size_t elem, unsigned k) {
    for (size_t i = 0; i < elem; i++) e[i] = (unsigned char)(k * 31 + i);
}

static void spsc_seeds(size_t cap, size_t elem) {
    size_t fp = mk_spsc_footprint(cap, elem);
    if (fp == 0 || fp > BUF) return;
    unsigned char e[64];
    char name[128];
    mk_spsc *q;
    memset(buf, 0, fp);
    int rc = mk_spsc_init(buf, fp, cap, elem, &q);
    if (rc != MK_OK) fail("mk_spsc_init", rc);
    snprintf(name, sizeof name, "spsc-%zu-%zu-empty", cap, elem);
    emit(name, T_SPSC, C_HDR_ELEM, 0, fp, 0);
    for (unsigned k = 0; k < cap / 2 + 1; k++) {
        fill_elem(e, elem, k);
        mk_spsc_try_push(q, e);
    }
    snprintf(name, sizeof name, "spsc-%zu-%zu-half", cap, elem);
    emit(name, T_SPSC, C_HDR_ELEM, 0, fp, 0);
    if (elem == 8) emit_named(name, T_SPSC, C_HDR_ELEM, fp);
    /* Wrap the indices round the capacity a few times, then fill. */
    for (unsigned k = 0; k < 3 * cap; k++) {
        mk_spsc_try_pop(q, e);
        fill_elem(e, elem, k);
        mk_spsc_try_push(q, e);
    }
    while (mk_spsc_try_push(q, e) == MK_OK) {
    }
    snprintf(name, sizeof name, "spsc-%zu-%zu-full-wrapped", cap, elem);
    emit(name, T_SPSC, C_HDR_ELEM, 0, fp, 0);
    /* Damage: head more than a capacity ahead of tail; tail ahead of head. */
    uint64_t h = get64(OFF_LINE1), t = get64(OFF_LINE2);
    put64(OFF_LINE1, t + cap + 1);
    snprintf(name, sizeof name, "spsc-%zu-%zu-head-far", cap, elem);
    emit(name, T_SPSC, C_HDR_ELEM, 0, fp, 0);
    put64(OFF_LINE1, h);
    put64(OFF_LINE2, h + 1);
    snprintf(name, sizeof name, "spsc-%zu-%zu-tail-ahead", cap, elem);
    emit(name, T_SPSC, C_HDR_ELEM, 0, fp, 0);
    put64(OFF_LINE2, t);
    /* The wrong element size; a truncated buffer. */
    snprintf(name, sizeof name, "spsc-%zu-%zu-elem-guess", cap, elem);
    emit(name, T_SPSC, C_ARGS, elem + 1, fp, 0);
    snprintf(name, sizeof name, "spsc-%zu-%zu-truncated", cap, elem);
    emit(name, T_SPSC, C_HDR_ELEM, 0, fp, 8);
    mk_spsc_close(q);
}

static void ring_seeds(size_t cap, size_t elem) {
    size_t fp = mk_ring_footprint(cap, elem);
    if (fp == 0 || fp > BUF) return;
    char name[128];
    mk_ring *r;
    memset(buf, 0, fp);
    int rc = mk_ring_init(buf, fp, cap, elem, &r);
    if (rc != MK_OK) fail("mk_ring_init", rc);
    snprintf(name, sizeof name, "ring-%zu-%zu-empty", cap, elem);
    emit(name, T_RING, C_HDR_ELEM, 0, fp, 0);
    static unsigned char many[BUF];
    for (size_t i = 0; i < cap * elem && i < sizeof many; i++) many[i] = (unsigned char)(i * 7);
    mk_ring_push_bulk(r, many, cap - 1);
    mk_ring_pop_bulk(r, many, cap / 2);
    mk_ring_push_bulk(r, many, cap / 2); /* now wrapped */
    snprintf(name, sizeof name, "ring-%zu-%zu-wrapped", cap, elem);
    emit(name, T_RING, C_HDR_ELEM, 0, fp, 0);
    if (elem == 8) emit_named(name, T_RING, C_HDR_ELEM, fp);
    /* An open peek and an open reservation (a killed consumer, producer). */
    size_t got;
    mk_ring_peek(r, cap, &got);
    mk_ring_pop_bulk(r, many, 1);
    void *p = mk_ring_reserve(r, cap, &got);
    if (p) memset(p, 0x5a, got * elem);
    snprintf(name, sizeof name, "ring-%zu-%zu-open", cap, elem);
    emit(name, T_RING, C_HDR_ELEM, 0, fp, 0);
    /* Damage: a huge open reservation and peek; indices far apart. */
    put64(OFF_LINE1 + 16, UINT64_MAX);
    put64(OFF_LINE2 + 16, cap + 3);
    snprintf(name, sizeof name, "ring-%zu-%zu-bad-open", cap, elem);
    emit(name, T_RING, C_HDR_ELEM, 0, fp, 0);
    put64(OFF_LINE1, get64(OFF_LINE2) - 1);
    snprintf(name, sizeof name, "ring-%zu-%zu-head-behind", cap, elem);
    emit(name, T_RING, C_HDR_ELEM, 0, fp, 0);
    /* The header's capacity doubled or halved, re-signed by the fuzzer. */
    mk__ds_hdr *hdr = (mk__ds_hdr *)buf;
    hdr->capacity = cap * 2;
    snprintf(name, sizeof name, "ring-%zu-%zu-cap-x2", cap, elem);
    emit(name, T_RING, C_HDR_ELEM | C_RESIGN | C_FIX_BYTES, 0, fp, 0);
    hdr->capacity = cap / 2;
    snprintf(name, sizeof name, "ring-%zu-%zu-cap-half", cap, elem);
    emit(name, T_RING, C_HDR_ELEM | C_RESIGN | C_FIX_BYTES, 0, fp, 0);
    mk_ring_close(r);
}

static void mpmc_seeds(size_t cap, size_t elem) {
    size_t fp = mk_mpmc_footprint(cap, elem);
    if (fp == 0 || fp > BUF) return;
    size_t stride = (16 + elem + 7) & ~(size_t)7;
    unsigned char e[64];
    char name[128];
    mk_mpmc *q;
    memset(buf, 0, fp);
    int rc = mk_mpmc_init(buf, fp, cap, elem, &q);
    if (rc != MK_OK) fail("mk_mpmc_init", rc);
    snprintf(name, sizeof name, "mpmc-%zu-%zu-empty", cap, elem);
    emit(name, T_MPMC, C_HDR_ELEM, 0, fp, 0);
    for (unsigned k = 0; k < 2 * cap + 1; k++) {
        fill_elem(e, elem, k);
        mk_mpmc_try_push(q, e);
        if (k % 3 != 2) mk_mpmc_try_pop(q, e);
    }
    snprintf(name, sizeof name, "mpmc-%zu-%zu-used", cap, elem);
    emit(name, T_MPMC, C_HDR_ELEM, 0, fp, 0);
    if (elem == 8) emit_named(name, T_MPMC, C_HDR_ELEM, fp);
    /* A producer killed after its claim: enq one ahead, cell not published
     * (repair makes it a hole). */
    uint64_t enq = get64(OFF_LINE1), deq = get64(OFF_LINE2);
    put64(OFF_LINE1, enq + 1);
    snprintf(name, sizeof name, "mpmc-%zu-%zu-claimed", cap, elem);
    emit(name, T_MPMC, C_HDR_ELEM, 0, fp, 0);
    put64(OFF_LINE1, enq);
    /* A hole at the head of the queue. */
    size_t c = OFF_CELLS + (size_t)(deq & (cap - 1)) * stride;
    if (get64(c) == deq + 1) {
        put64(c + 8, 1);
        snprintf(name, sizeof name, "mpmc-%zu-%zu-hole", cap, elem);
        emit(name, T_MPMC, C_HDR_ELEM, 0, fp, 0);
        put64(c + 8, 0);
    }
    /* Damage: counters more than a capacity apart; the cell at the enqueue
     * position already ahead of it (as if published twice). */
    put64(OFF_LINE1, deq + cap + 5);
    snprintf(name, sizeof name, "mpmc-%zu-%zu-enq-far", cap, elem);
    emit(name, T_MPMC, C_HDR_ELEM, 0, fp, 0);
    put64(OFF_LINE1, enq);
    c = OFF_CELLS + (size_t)(enq & (cap - 1)) * stride;
    uint64_t seq = get64(c);
    put64(c, enq + 2);
    snprintf(name, sizeof name, "mpmc-%zu-%zu-cell-ahead", cap, elem);
    emit(name, T_MPMC, C_HDR_ELEM, 0, fp, 0);
    put64(c, seq);
    /* A stray header: check word off by one. */
    ((mk__ds_hdr *)buf)->check ^= 1;
    snprintf(name, sizeof name, "mpmc-%zu-%zu-bad-check", cap, elem);
    emit(name, T_MPMC, C_HDR_ELEM, 0, fp, 0);
    mk_mpmc_close(q);
}

/* ---- pool, array, atomics ------------------------------------------------------ */

static void pool_seeds(size_t slots, size_t size) {
    size_t fp = mk_objpool_footprint(slots, size);
    if (fp == 0 || fp > BUF) return;
    char name[128];
    mk_objpool *p;
    memset(buf, 0, fp);
    int rc = mk_objpool_init(buf, fp, slots, size, &p);
    if (rc != MK_OK) fail("mk_objpool_init", rc);
    snprintf(name, sizeof name, "pool-%zu-%zu-free", slots, size);
    emit(name, T_POOL, C_HDR_ELEM, 0, fp, 0);
    uint32_t idx[256];
    size_t n = 0;
    while (n < 256 && mk_objpool_acquire(p, &idx[n]) == MK_OK) {
        memset(mk_objpool_ptr(p, idx[n]), (int)n, size);
        n++;
    }
    for (size_t i = 0; i < n; i += 2) mk_objpool_release(p, idx[i]);
    snprintf(name, sizeof name, "pool-%zu-%zu-half", slots, size);
    emit(name, T_POOL, C_HDR_ELEM, 0, fp, 0);
    if (size == 24) emit_named(name, T_POOL, C_HDR_ELEM, fp);
    /* Held by a dead process (reclaim frees them), or by nobody and not
     * free (a process killed mid-acquire: repair puts them back). */
    for (size_t i = 1; i < n; i += 2) {
        size_t owner = OFF_LINE2 + (size_t)idx[i] * 16 + 8;
        put64(owner, (i % 4 == 1) ? UINT64_C(0x7ffffff0) << 32 | 1 : 0);
    }
    snprintf(name, sizeof name, "pool-%zu-%zu-dead-owners", slots, size);
    emit(name, T_POOL, C_HDR_ELEM, 0, fp, 0);
    /* Damage: the top out of range; a cycle; a link out of range. */
    uint64_t top = get64(OFF_LINE1);
    put64(OFF_LINE1, (top & ~UINT64_C(0xffffffff)) | (slots + 1));
    snprintf(name, sizeof name, "pool-%zu-%zu-bad-top", slots, size);
    emit(name, T_POOL, C_HDR_ELEM, 0, fp, 0);
    put64(OFF_LINE1, top);
    uint32_t t1 = (uint32_t)top;
    if (t1 != 0) {
        uint32_t keep;
        memcpy(&keep, buf + OFF_LINE2 + (size_t)(t1 - 1) * 16, 4);
        memcpy(buf + OFF_LINE2 + (size_t)(t1 - 1) * 16, &t1, 4);
        snprintf(name, sizeof name, "pool-%zu-%zu-cycle", slots, size);
        emit(name, T_POOL, C_HDR_ELEM, 0, fp, 0);
        uint32_t bad = (uint32_t)slots + 7;
        memcpy(buf + OFF_LINE2 + (size_t)(t1 - 1) * 16, &bad, 4);
        snprintf(name, sizeof name, "pool-%zu-%zu-bad-link", slots, size);
        emit(name, T_POOL, C_HDR_ELEM, 0, fp, 0);
        memcpy(buf + OFF_LINE2 + (size_t)(t1 - 1) * 16, &keep, 4);
    }
    snprintf(name, sizeof name, "pool-%zu-%zu-truncated", slots, size);
    emit(name, T_POOL, C_HDR_ELEM | C_ARGS, 0, fp, 16);
    mk_objpool_close(p);
}

static void array_seeds(size_t len, size_t elem) {
    size_t fp = mk_array_footprint(len, elem);
    if (fp == 0 || fp > BUF) return;
    char name[128];
    mk_array *a;
    memset(buf, 0, fp);
    int rc = mk_array_init(buf, fp, len, elem, &a);
    if (rc != MK_OK) fail("mk_array_init", rc);
    snprintf(name, sizeof name, "array-%zu-%zu-zero", len, elem);
    emit(name, T_ARRAY, C_HDR_ELEM, 0, fp, 0);
    for (size_t i = 0; i < len * elem; i++)
        ((unsigned char *)mk_array_data(a))[i] = (unsigned char)i;
    snprintf(name, sizeof name, "array-%zu-%zu-data", len, elem);
    emit(name, T_ARRAY, 0, elem, fp, 0);
    if (elem == 8) emit_named(name, T_ARRAY, C_HDR_ELEM, fp);
    /* Damage: bytes disagrees with the footprint (re-signed), one length too many. */
    mk__ds_hdr *hdr = (mk__ds_hdr *)buf;
    hdr->bytes += 64;
    snprintf(name, sizeof name, "array-%zu-%zu-bad-bytes", len, elem);
    emit(name, T_ARRAY, C_HDR_ELEM | C_RESIGN, 0, fp, 0);
    hdr->bytes -= 64;
    hdr->capacity = len + 1;
    snprintf(name, sizeof name, "array-%zu-%zu-long", len, elem);
    emit(name, T_ARRAY, C_HDR_ELEM | C_RESIGN | C_FIX_BYTES, 0, fp, 0);
    mk_array_close(a);
}

static void atomic_seeds(void) {
    mk_atomic32 *a32;
    mk_atomic64 *a64;
    memset(buf, 0, 256);
    int rc = mk_atomic32_init(buf, MK_ATOMIC_FOOTPRINT, 0xfffffff0u, &a32);
    if (rc != MK_OK) fail("mk_atomic32_init", rc);
    mk_atomic32_add(a32, 7);
    emit("atomic32", T_A32, 0, 0, MK_ATOMIC_FOOTPRINT, 0);
    emit_named("atomic32", T_A32, 0, MK_ATOMIC_FOOTPRINT);
    emit("atomic32-args", T_A32, C_ARGS, 0, MK_ATOMIC_FOOTPRINT, 0);
    emit("atomic32-as-64", T_A64, 0, 0, MK_ATOMIC_FOOTPRINT, 0);
    emit("atomic32-truncated", T_A32, 0, 0, MK_ATOMIC_FOOTPRINT, 8);
    memset(buf, 0, 256);
    rc = mk_atomic64_init(buf, MK_ATOMIC_FOOTPRINT, UINT64_MAX - 3, &a64);
    if (rc != MK_OK) fail("mk_atomic64_init", rc);
    mk_atomic64_exchange(a64, UINT64_C(0x123456789abcdef));
    emit("atomic64", T_A64, 0, 0, MK_ATOMIC_FOOTPRINT, 0);
    emit_named("atomic64", T_A64, 0, MK_ATOMIC_FOOTPRINT);
    emit("atomic64-as-array", T_ARRAY, C_HDR_ELEM, 0, MK_ATOMIC_FOOTPRINT, 0);
    ((mk__ds_hdr *)buf)->version++;
    emit("atomic64-version", T_A64, 0, 0, MK_ATOMIC_FOOTPRINT, 0);
    emit("atomic64-resigned", T_A64, C_RESIGN, 0, MK_ATOMIC_FOOTPRINT, 0);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: seedgen_ds DIR\n");
        return 2;
    }
    dir = argv[1];
    static const size_t caps[] = {2, 4, 16, 64, 1024};
    static const size_t elems[] = {1, 8, 24, 64};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++)
        for (size_t j = 0; j < sizeof elems / sizeof elems[0]; j++) {
            if (caps[i] == 1024 && elems[j] != 8) continue;
            spsc_seeds(caps[i], elems[j]);
            ring_seeds(caps[i], elems[j]);
            mpmc_seeds(caps[i], elems[j]);
        }
    static const size_t slots[] = {1, 3, 16, 100};
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++)
        for (size_t j = 0; j < sizeof elems / sizeof elems[0]; j++) pool_seeds(slots[i], elems[j]);
    static const size_t lens[] = {1, 5, 100};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (size_t j = 0; j < sizeof elems / sizeof elems[0]; j++) array_seeds(lens[i], elems[j]);
    atomic_seeds();
    printf("seedgen_ds: %d seeds in %s\n", nfiles, dir);
    return 0;
}
