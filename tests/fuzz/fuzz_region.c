/*
 * libFuzzer target: a region image from untrusted bytes.
 *
 * The input is a region image followed by an operation script:
 *
 *   bytes [0, IMAGE)        the image (shorter inputs are padded with zeros)
 *   bytes [IMAGE, end)      the script; when the input is no longer than
 *                           IMAGE, its last SCRIPT_TAIL bytes are the script
 *
 * The image is copied into a page-aligned buffer of IMAGE bytes and given to
 * mk_region_attach(). Whatever the bytes, nothing may crash, read or write
 * outside the buffer, or hit undefined behaviour:
 *   - attach either refuses or accepts;
 *   - an accepted region may be walked (the walk reports MK_ECORRUPT rather
 *     than following a bad span) and, if journaled, recovered (recovery
 *     refuses a damaged journal instead of writing through it);
 *   - if mk_region_validate() passes, the script runs: alloc, aligned alloc,
 *     free, realloc, usable_size, walk, stats; every call must return a
 *     documented code, every returned block must lie inside the region and
 *     keep what was written to it, and the region must still validate after
 *     every step. A region that validates and then breaks under legal calls
 *     is a bug (of the operation or of validate): the target aborts.
 *   - hostile writes: a walk step whose op byte has bit 7 set instead
 *     scribbles on the region, as a buggy or hostile process sharing it
 *     would: it writes a word (a small offset, a near-copy of a word of
 *     the region, or raw script bytes) at an 8-aligned offset anywhere in
 *     the region but its size field (the range's length, which the layer
 *     that maps it vouches for; see docs/REGION.md), and with bit 6 also
 *     runs mk_region_recover() on the result. From then on the region is
 *     untrusted: every call must still return a documented code and stay
 *     inside the buffer (ASan checks every access), and what it hands out
 *     must lie inside the region, but nothing else is asserted (blocks may
 *     be lost or overwritten, validate may fail). This is the promise of
 *     docs/REGION.md, "Untrusted memory".
 *
 * Build and run (see scripts/run-fuzzers, `make fuzz`):
 *   cmake -S . -B build-fuzz -DMK_BUILD_FUZZ=ON -DMK_BUILD_TESTS=OFF \
 *         -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
 *   cmake --build build-fuzz
 *   scripts/run-fuzzers build-fuzz 60
 * Longer runs, e.g. overnight on 8 cores, on a persistent corpus:
 *   mkdir -p corpus && cp -r build-fuzz/fuzz-corpus/fuzz_region/. corpus/
 *   build-fuzz/bin/fuzz_region -jobs=8 -workers=8 -max_total_time=28800 \
 *       -max_len=70000 -timeout=10 -rss_limit_mb=2048 corpus
 * Replay a crash: build-fuzz/bin/fuzz_region crash-<hash>
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "memkit/region.h"
#include "region/region_int.h"

#define IMAGE       (64u * 1024u)
#define SCRIPT_TAIL 64u
#define MAX_LIVE    64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static _Alignas(4096) unsigned char image[IMAGE];

/* A defect found: stop here so that libFuzzer records the input. */
#define BUG(cond)                                                                                  \
    do {                                                                                           \
        if (!(cond)) abort();                                                                      \
    } while (0)

typedef struct script {
    const uint8_t *p, *end;
} script;

static unsigned next8(script *s) { return s->p < s->end ? *s->p++ : 0; }
static unsigned next16(script *s) { return next8(s) | next8(s) << 8; }

typedef struct blk {
    mk_off off;
    size_t size;
    uint8_t seed;
} blk;

static void stamp(mk_region *r, const blk *b) {
    memset(mk_region_ptr(r, b->off), b->seed, b->size);
}
static bool intact(const mk_region *r, const blk *b) {
    const unsigned char *p = mk_region_ptr(r, b->off);
    for (size_t i = 0; i < b->size; i++)
        if (p[i] != b->seed) return false;
    return true;
}

/* The usable range of a live block lies inside the region's data. On an
 * untrusted region the block may already be refused again. */
static void in_bounds(const mk_region *r, mk_off off, bool trusted) {
    size_t u = 0;
    int rc = mk_region_usable_size(r, off, &u);
    BUG(off >= 16 && off % 16 == 0 && off < IMAGE);
    if (!trusted && rc != MK_OK) return;
    BUG(rc == MK_OK);
    BUG(off + u <= mk_region_size(r) && mk_region_size(r) <= IMAGE);
}

/* A hostile write: one word somewhere in the region, never its size. */
static void scribble(mk_region *r, script *s, unsigned op) {
    uint64_t size = mk_region_size(r);
    mk_off at = ((mk_off)next16(s) | (mk_off)(next8(s) & 1) << 16) % size & ~(mk_off)7;
    if (at == offsetof(mk__hdr, size)) return;
    uint64_t *w = (uint64_t *)(void *)((unsigned char *)r + at);
    uint64_t v;
    switch (next8(s) % 4) {
    case 0: /* an offset somewhere in (or just past) the region */
        v = (next16(s) | (uint64_t)(next8(s) & 1) << 16) % (size + 64);
        break;
    case 1: /* a near-copy: one bit flipped (spans, flags, links) */
        v = *w ^ UINT64_C(1) << (next8(s) % 64);
        break;
    case 2: /* a copy of another word (a stale link, a foreign header) */
        v = *(const uint64_t *)(const void *)((const unsigned char *)r +
                                              (((mk_off)next16(s) % size) & ~(mk_off)7));
        break;
    default: /* raw bytes */
        v = (uint64_t)next16(s) | (uint64_t)next16(s) << 16 | (uint64_t)next16(s) << 32 |
            (uint64_t)next16(s) << 48;
        break;
    }
    *w = v;
    if (op & 0x40) {
        int rc = mk_region_recover(r, NULL);
        BUG(rc == MK_OK || rc == MK_ENOTSUP || rc == MK_ENOTRECOVERABLE);
    }
}

static int count_visit(const mk_block_info *bi, void *arg) {
    uint64_t *n = arg;
    (*n)++;
    BUG(bi->offset + bi->size <= IMAGE && bi->span >= bi->size);
    return 0;
}

static int stop_visit(const mk_block_info *bi, void *arg) {
    (void)bi;
    (void)arg;
    return 7;
}

static bool is_code(int rc) { return rc <= 0 && rc >= MK_ENOTRECOVERABLE; }

static void run_script(mk_region *r, script *s) {
    blk live[MAX_LIVE];
    size_t n = 0;
    uint8_t seed = 1;
    bool trusted = true; /* no hostile write yet */
    for (int step = 0; step < 48 && s->p < s->end; step++) {
        unsigned op = next8(s);
        int rc;
        switch (op % 8) {
        case 0:
        case 1: { /* alloc, sometimes aligned */
            size_t sz = next16(s) % (op & 8 ? 20000 : 2048);
            size_t align = (op & 16) ? (size_t)1 << (next8(s) % 14) : 0;
            mk_off off = 0;
            rc = mk_region_alloc(r, sz, align, &off);
            BUG(is_code(rc));
            if (trusted) BUG(rc == MK_OK || rc == MK_ENOMEM || rc == MK_ETOOBIG || rc == MK_EALIGN);
            if (rc == MK_OK) {
                /* Whatever the damage, a block handed out lies in the region. */
                BUG(off + sz <= mk_region_size(r));
                in_bounds(r, off, trusted);
                if (align > 16) BUG(((uintptr_t)mk_region_ptr(r, off) & (align - 1)) == 0);
                if (n < MAX_LIVE) {
                    live[n] = (blk){off, sz, seed++};
                    stamp(r, &live[n]);
                    n++;
                }
            }
            break;
        }
        case 2: /* free a live block */
            if (n) {
                size_t i = next8(s) % n;
                if (trusted) BUG(intact(r, &live[i]));
                rc = mk_region_free(r, live[i].off);
                BUG(trusted ? rc == MK_OK : is_code(rc));
                live[i] = live[--n];
                break;
            }
            /* fall through */
        case 3: { /* free or resize an arbitrary offset: must be refused or be a real block */
            mk_off off = (mk_off)next16(s) | (mk_off)(next8(s) & 1) << 16;
            bool known = false;
            for (size_t i = 0; i < n; i++) known |= live[i].off == off;
            if (known) break;
            rc = (op & 32) ? mk_region_realloc(r, off, 32, &off) : mk_region_free(r, off);
            /* The script may name a block the image held before: then the
             * call is legal and may succeed. */
            BUG(is_code(rc));
            break;
        }
        case 4: /* realloc a live block */
            if (n) {
                size_t i = next8(s) % n;
                size_t sz = next16(s) % 6000;
                mk_off out = 0;
                if (!trusted) {
                    rc = mk_region_realloc(r, live[i].off, sz, &out);
                    BUG(is_code(rc));
                    if (rc == MK_OK) in_bounds(r, out, false);
                    if (rc == MK_OK) live[i].off = out;
                    break;
                }
                BUG(intact(r, &live[i]));
                rc = mk_region_realloc(r, live[i].off, sz, &out);
                BUG(rc == MK_OK || rc == MK_ENOMEM || rc == MK_ETOOBIG);
                if (rc == MK_OK) {
                    in_bounds(r, out, true);
                    size_t keep = sz < live[i].size ? sz : live[i].size;
                    live[i].off = out;
                    live[i].size = keep;
                    BUG(intact(r, &live[i]));
                    live[i].size = sz;
                    live[i].seed = seed++;
                    stamp(r, &live[i]);
                } else {
                    BUG(intact(r, &live[i]));
                }
            }
            break;
        case 5: { /* usable_size of anything */
            mk_off off = (mk_off)next16(s);
            size_t u = 0;
            rc = mk_region_usable_size(r, off, &u);
            BUG(is_code(rc));
            if (rc == MK_OK) BUG(off + u <= mk_region_size(r));
            break;
        }
        case 6: { /* walk, whole and stopped; or a hostile write */
            if (op & 0x80) {
                scribble(r, s, op);
                trusted = false;
                break;
            }
            uint64_t cnt = 0;
            rc = mk_region_walk(r, count_visit, &cnt);
            BUG(trusted ? rc == 0 : rc == 0 || rc == MK_ECORRUPT);
            if (trusted) BUG(cnt >= n);
            rc = mk_region_walk(r, stop_visit, NULL);
            BUG(trusted ? rc == 7 : rc == 7 || rc == MK_ECORRUPT);
            break;
        }
        default: { /* statistics */
            mk_stats st;
            rc = mk_region_stats(r, &st);
            BUG(trusted ? rc == MK_OK : rc == MK_OK || rc == MK_ECORRUPT);
            if (trusted) {
                BUG(st.blocks_used >= n && st.bytes_used + st.bytes_free <= st.capacity);
                BUG(st.largest_free <= st.bytes_free);
            }
            if (op & 8) mk_region_stats_reset(r);
            break;
        }
        }
        mk_fault f;
        rc = mk_region_validate(r, &f);
        BUG(trusted ? rc == MK_OK : is_code(rc) && f.code == rc);
        if (rc != MK_OK) BUG(f.invariant != NULL);
    }
    for (size_t i = 0; i < n; i++) {
        if (!trusted) {
            BUG(is_code(mk_region_free(r, live[i].off)));
            continue;
        }
        BUG(intact(r, &live[i]));
        BUG(mk_region_free(r, live[i].off) == MK_OK);
    }
    int rc = mk_region_validate(r, NULL);
    BUG(trusted ? rc == MK_OK : is_code(rc));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t img = size < IMAGE ? size : IMAGE;
    memcpy(image, data, img);
    memset(image + img, 0, IMAGE - img);
    script s;
    if (size > IMAGE)
        s = (script){data + IMAGE, data + size};
    else
        s = (script){data + size - (size < SCRIPT_TAIL ? size : SCRIPT_TAIL), data + size};

    /* The mapped length is part of the input too: a truncated mapping. */
    size_t mapped = IMAGE;
    if (size > IMAGE && (data[IMAGE] & 0xC0) == 0xC0)
        mapped = IMAGE / 2 + (data[IMAGE] & 0x3F) * 16;

    mk_region *r = NULL;
    int rc = mk_region_attach(image, mapped, &r);
    BUG(is_code(rc));
    if (rc != MK_OK) return 0;
    BUG(r == (mk_region *)(void *)image && mk_region_size(r) <= mapped);

    uint64_t cnt = 0;
    rc = mk_region_walk(r, count_visit, &cnt);
    BUG(rc == 0 || rc == MK_ECORRUPT);

    int rolled = 0;
    rc = mk_region_recover(r, &rolled);
    BUG(rc == MK_OK || rc == MK_ENOTSUP || rc == MK_ENOTRECOVERABLE);

    mk_fault f = {0};
    rc = mk_region_validate(r, &f);
    BUG(is_code(rc));
    BUG(f.code == rc);
    if (rc != MK_OK) {
        BUG(f.invariant != NULL);
        return 0;
    }
    run_script(r, &s);
    return 0;
}
