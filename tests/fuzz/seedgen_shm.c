/*
 * Seed corpus for fuzz_shm: file-backed segment images of every policy,
 * in the input format of fuzz_shm.c ([image | script | ctl | tail | slen]):
 *
 *   - empty, closed (no process attached) and while attached;
 *   - populated (plain, owned and aligned blocks, named objects, frees and
 *     reallocs), while attached and after close (the owned blocks are then
 *     orphans for reclaim);
 *   - grown past the initial size while attached (not buddy);
 *   - crashed: a child SIGKILLed in the middle of an alloc, free, realloc or
 *     object create/remove (the test crash hook), its journal left open, the
 *     seed saying the lock's owner died (open repairs);
 *   - damaged: segment magic, version, layout signature, meta block, a
 *     directory link, an owner word, the maximum size, the header's size
 *     (a truncated file), a journal record.
 *
 *   seedgen_shm DIR      writes DIR/<name>.bin (DIR must exist)
 *
 * Deterministic sizes and scripts (a fixed-seed generator); the region
 * secret, pids and start times differ between runs, which only changes
 * which seeds libFuzzer keeps. The segments are made in a private
 * directory under /tmp that is removed at the end.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "memkit/shm.h"
#include "region/region_int.h"
#include "shm/shm_int.h"

#define KB       ((size_t)1024)
#define MAX_FILE (256 * KB)
#define SCRIPT   200u

static uint64_t rng = 0x5EED5EED;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static const char *dir;
static char tmpdir[256], seg[512];
static int nfiles;
static unsigned char img[MAX_FILE];
static size_t img_len;

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != MK_OK) {                                                                        \
            fprintf(stderr, "seedgen_shm: %s:%d: %s: %s\n", __FILE__, __LINE__, #expr,             \
                    mk_strerror(rc_));                                                             \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Read the segment file into img. */
static void snap(void) {
    int fd = open(seg, O_RDONLY);
    if (fd < 0) {
        perror(seg);
        exit(1);
    }
    ssize_t n = read(fd, img, sizeof img);
    close(fd);
    if (n <= 0) {
        perror(seg);
        exit(1);
    }
    img_len = (size_t)n;
}

/* Write img (as fuzz_shm reads it) with a script and control byte ctl.
 * Unless the image is to be exact (ctl bit 0), its longest run of zeros is
 * left out (the tail byte says where the rest goes); if that is still too
 * long for -max_len, the image is written sparse (ctl bit 4). */
#define MAX_INPUT 69000u
static unsigned char out[MAX_FILE + MAX_FILE / 8];

static const unsigned char zeros16[16];

static size_t sparse(void) {
    size_t n = 0, at = 0, i = 0;
    while (i < img_len) {
        /* next non-zero 8-byte word at or after i */
        size_t j = i;
        while (j < img_len && !memcmp(img + j, zeros16, 8)) j += 8;
        if (j >= img_len) break;
        size_t skip = (j - at) / 8;
        if (skip > 0xFFFF) skip = 0xFFFF;
        size_t start = at + skip * 8, e = start;
        /* run of words up to 255, ending at two zero words in a row */
        while (e < img_len && (e - start) / 8 < 255) {
            if (e > j && e + 16 <= img_len && !memcmp(img + e, zeros16, 16)) break;
            e += 8;
        }
        if (e > img_len) e = img_len;
        size_t words = (e - start) / 8;
        out[n++] = (unsigned char)skip;
        out[n++] = (unsigned char)(skip >> 8);
        out[n++] = (unsigned char)words;
        memcpy(out + n, img + start, words * 8);
        n += words * 8;
        at = start + words * 8;
        i = at;
    }
    if (at < img_len && img_len >= 8) { /* end exactly at img_len (for exact, ctl bit 0) */
        size_t skip = (img_len - 8 - at) / 8;
        out[n++] = (unsigned char)skip;
        out[n++] = (unsigned char)(skip >> 8);
        out[n++] = 1;
        memcpy(out + n, img + img_len - 8, 8);
        n += 8;
    }
    return n;
}

static void emit(const char *name, unsigned ctl) {
    size_t tail = 0, prefix = img_len, body;
    if (!(ctl & 1)) {
        size_t best_s = 0, best_e = 0;
        for (size_t i = 0; i < img_len;) {
            if (img[i]) {
                i++;
                continue;
            }
            size_t j = i;
            while (j < img_len && !img[j]) j++;
            if (j - i > best_e - best_s) best_s = i, best_e = j;
            i = j;
        }
        size_t t = (img_len - best_e + 63) / 64 * 64;
        if (best_e - best_s >= 256 && t <= 255 * 64 && t <= img_len) {
            tail = t;
            prefix = img_len - tail;
            while (prefix > 0 && !img[prefix - 1]) prefix--;
            prefix = (prefix + 7) & ~(size_t)7;
        }
    }
    if (prefix + tail + SCRIPT + 3 <= MAX_INPUT) {
        memcpy(out, img, prefix);
        memcpy(out + prefix, img + img_len - tail, tail);
        body = prefix + tail;
    } else {
        ctl |= 16;
        tail = 0;
        body = sparse();
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    unsigned char script[SCRIPT];
    for (size_t i = 0; i < SCRIPT; i++) script[i] = (unsigned char)next();
    unsigned char ctlb[3] = {(unsigned char)ctl, (unsigned char)(tail / 64),
                             (unsigned char)(SCRIPT / 2)};
    if (fwrite(out, 1, body, f) != body || fwrite(script, 1, SCRIPT, f) != SCRIPT ||
        fwrite(ctlb, 1, 3, f) != 3) {
        perror(path);
        exit(1);
    }
    fclose(f);
    if (body + SCRIPT + 3 > MAX_INPUT) fprintf(stderr, "seedgen_shm: %s is too long\n", name);
    nfiles++;
}

static mk_shm *make(mk_policy p, size_t size, size_t max) {
    mk_shm_unlink(seg, MK_SHM_FILE);
    mk_shm_config cfg = {.size = size, .max_size = max, .policy = p, .flags = MK_SHM_FILE};
    mk_shm *s = NULL;
    CHECK(mk_shm_create(seg, &cfg, &s));
    return s;
}

static void populate(mk_shm *s, int nblocks) {
    mk_off offs[64];
    int n = 0;
    for (int i = 0; i < nblocks && n < 64; i++) {
        size_t sz = (size_t)(next() % 900);
        size_t al = (i % 7 == 0) ? (size_t)64 << (next() % 4) : 0;
        unsigned fl = (i % 3 == 0) ? MK_SHM_OWNED : 0;
        if (mk_shm_alloc_ex(s, sz, al, fl, &offs[n]) != MK_OK) break;
        memset(mk_shm_ptr(s, offs[n]), 0x20 + i % 64, sz);
        n++;
    }
    for (int i = 0; i < n; i += 4) CHECK(mk_shm_free(s, offs[i]));
    for (int i = 1; i < n; i += 5) {
        mk_off moved;
        if (mk_shm_realloc(s, offs[i], (size_t)(next() % 1500), &moved) == MK_OK) offs[i] = moved;
    }
    static const char *const names[] = {"f0", "f1", "f3", "config", "queue", "f7"};
    for (int i = 0; i < 6; i++) {
        mk_off o;
        if (mk_shm_obj_create(s, names[i], (uint32_t)i % 3, 16 + (size_t)(next() % 400), 0, &o,
                              NULL) == MK_OK)
            memset(mk_shm_ptr(s, o), 'a' + i, 16);
    }
    CHECK(mk_shm_obj_remove(s, "f1"));
    CHECK(mk_shm_validate(s, NULL));
}

/* ---- crashed children ---------------------------------------------------------------------- */

static uint64_t crash_at;
static void crash_hook(uint64_t step) {
    if (step == crash_at) raise(SIGKILL);
}

/* A child opens the segment and dies at crash step k of operation op.
 * Returns 1 if it died there, 0 if the operation finished first. */
static int crash_child(int op, uint64_t k) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) exit(1);
    if (pid == 0) {
        mk_shm *s = NULL;
        if (mk_shm_open(seg, MK_SHM_FILE, &s) != MK_OK) _exit(3);
        mk_off a = 0, b = 0;
        if (op == 1 || op == 2) {
            if (mk_shm_alloc_ex(s, 300, 0, MK_SHM_OWNED, &a) != MK_OK) _exit(3);
        }
        mk__test_crash_step = 0;
        crash_at = k;
        mk__test_crash_hook = crash_hook;
        switch (op) {
        case 0:
            mk_shm_alloc_ex(s, 1000, 64, MK_SHM_OWNED, &b);
            break;
        case 1:
            mk_shm_free(s, a);
            break;
        case 2:
            mk_shm_realloc(s, a, 5000, &b);
            break;
        case 3:
            mk_shm_obj_create(s, "crashed", 4, 700, 0, &b, NULL);
            break;
        default:
            mk_shm_obj_remove(s, "config");
            break;
        }
        mk__test_crash_hook = NULL;
        _exit(0);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid) exit(1);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) return 1;
    fprintf(stderr, "seedgen_shm: crash child failed (status 0x%x)\n", st);
    exit(1);
}

/* ---- damage ------------------------------------------------------------------------------- */

static mk__hdr *H(void) { return (mk__hdr *)(void *)img; }
static uint64_t *W(mk_off off) { return (uint64_t *)(void *)(img + off); }

static unsigned char keep[MAX_FILE];
static size_t keep_len;
static const char *cur_policy;

/* Emit the damaged image as <policy>-bad-<tag>, then restore it. */
static void variant(const char *tag, unsigned ctl) {
    char name[128];
    snprintf(name, sizeof name, "%s-bad-%s", cur_policy, tag);
    emit(name, ctl);
    memcpy(img, keep, keep_len);
    img_len = keep_len;
}

static void damaged(const char *pn) {
    cur_policy = pn;
    keep_len = img_len;
    memcpy(keep, img, img_len);
    mk__hdr *h = H();
    mk_off meta = h->user[MK__U_META];
    mk__shm_meta *m = (mk__shm_meta *)(void *)(img + meta);
    h->user[MK__U_MAGIC] ^= 1;
    variant("magic", 0);
    h->user[MK__U_VERSION] = 2;
    variant("version", 0);
    h->user[MK__U_SIG] ^= 0x10;
    variant("sig", 0);
    h->user[MK__U_MAX] = 3 * 4096;
    variant("max", 0);
    h->user[MK__U_MAX] = (uint64_t)1 << 40;
    variant("max-big", 0);
    h->user[MK__U_META] += 16;
    variant("meta-off", 0);
    m->magic ^= 1;
    variant("meta-magic", 0);
    m->attached = MK_SHM_MAX_PROCS + 1;
    variant("meta-attached", 0);
    m->objects += 1;
    variant("meta-objects", 0);
    h->size += 4096;
    variant("size", 0);
    img_len -= 4096;
    variant("truncated", 1);
    img_len = 300;
    variant("short", 1);
    for (unsigned i = 0; i < MK__SHM_BUCKETS; i++) {
        if (!m->buckets[i]) continue;
        mk_off e = m->buckets[i];
        mk__shm_ent *ent = (mk__shm_ent *)(void *)(img + e);
        m->buckets[i] += 32;
        variant("dir-link", 0);
        memset(ent->name, 'x', sizeof ent->name);
        variant("dir-name", 0);
        ent->size = UINT64_C(1) << 20;
        variant("dir-size", 0);
        ent->next = e;
        variant("dir-cycle", 0);
        m->buckets[(i + 1) % MK__SHM_BUCKETS] = e;
        variant("dir-bucket", 0);
        break;
    }
    /* Tagged blocks: the first owned block's owner word and USER bit. */
    for (mk_off b = h->data_start; b < h->data_end;) {
        uint64_t w = *W(b), span = mk__span(w);
        if (span < 16 || b + span > h->data_end) break;
        if ((w & MK__F_USER) && (*W(b + span - 8) >> MK__TR_SHIFT) == MK__TR_OWNED) {
            *W(b + span - 8) |= UINT64_C(0xFF) << 32;
            variant("owner-slot", 0);
            *W(b + span - 8) ^= 0x5;
            variant("owner-gen", 0);
            *W(b) &= ~(uint64_t)MK__F_USER;
            variant("user-bit", 0);
            *W(b + span - 8) = mk__shm_trailer_for(MK_SHM_BLOCK_META, b);
            variant("second-meta", 0);
            break;
        }
        b += span;
    }
    /* A process-table slot of a process that is gone, and a full table. */
    m->slots[5] = (mk__shm_slot){.pid = 999999, .start_time = 1, .gen = 3};
    m->attached++;
    variant("slot-dead", 0);
    for (unsigned i = 0; i < MK_SHM_MAX_PROCS; i++)
        m->slots[i] = (mk__shm_slot){.pid = 1, .start_time = 7, .gen = i + 1};
    m->attached = MK_SHM_MAX_PROCS;
    variant("slots-full", 0);
    /* A journal left mid-operation with plausible records, the owner dead. */
    if (h->journal_off) {
        mk__journal *jr = (mk__journal *)(void *)(img + h->journal_off);
        jr->op = MK__OP_USER;
        jr->count = 3;
        jr->rec[0] = (mk__undo){offsetof(mk__hdr, c.bytes_used), h->c.bytes_used + 64};
        jr->rec[1] = (mk__undo){h->data_start, *W(h->data_start)};
        jr->rec[2] = (mk__undo){meta + offsetof(mk__shm_meta, objects), m->objects + 1};
        variant("journal", 2);
        jr->op = MK__OP_USER;
        jr->count = 2;
        jr->rec[0] = (mk__undo){h->size + 4096, 1};
        jr->rec[1] = (mk__undo){offsetof(mk__hdr, size), h->size * 4};
        variant("journal-wild", 2);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: seedgen_shm DIR\n");
        return 2;
    }
    dir = argv[1];
    mk__test_cache_min_segment = 0; /* the seeds' processes have caches, as fuzz_shm's */
    snprintf(tmpdir, sizeof tmpdir, "/tmp/memkit-seedgen-shm-%ld", (long)getpid());
    if (mkdir(tmpdir, 0700) != 0) {
        perror(tmpdir);
        return 1;
    }
    snprintf(seg, sizeof seg, "%s/seg", tmpdir);
    char name[128];
    for (int p = 0; p < MK_POLICY_COUNT; p++) {
        mk_policy pol = (mk_policy)p;
        const char *pn = mk_policy_name(pol);
        bool buddy = pol == MK_POLICY_BUDDY;
        size_t size = buddy ? 128 * KB : 64 * KB, max = buddy ? size : 256 * KB;

        mk_shm *s = make(pol, size, max);
        snap();
        snprintf(name, sizeof name, "%s-empty-attached", pn);
        emit(name, 0);
        CHECK(mk_shm_close(s));
        snap();
        snprintf(name, sizeof name, "%s-empty", pn);
        emit(name, 0);
        snprintf(name, sizeof name, "%s-empty-observe", pn);
        emit(name, 4);

        s = make(pol, size, max);
        populate(s, 40);
        snap();
        snprintf(name, sizeof name, "%s-used-attached", pn);
        emit(name, 0);
        snprintf(name, sizeof name, "%s-used-ownerdied", pn);
        emit(name, 2);
        CHECK(mk_shm_close(s));
        snap();
        snprintf(name, sizeof name, "%s-used", pn);
        emit(name, 0);
        damaged(pn);

        /* Crashed children, at a few steps of each operation. */
        static const char *const ops[] = {"alloc", "free", "realloc", "objcreate", "objremove"};
        for (int op = 0; op < 5; op++) {
            static const uint64_t steps[] = {1, 3, 6, 12};
            for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
                s = make(pol, size, max);
                populate(s, 24);
                CHECK(mk_shm_close(s));
                if (!crash_child(op, steps[k])) break;
                snap();
                snprintf(name, sizeof name, "%s-crash-%s-%llu", pn, ops[op],
                         (unsigned long long)steps[k]);
                emit(name, 2);
            }
        }

        if (!buddy) { /* grown while attached */
            s = make(pol, size, max);
            populate(s, 12);
            mk_off big[4];
            for (int i = 0; i < 4; i++) CHECK(mk_shm_alloc(s, 20 * KB, &big[i]));
            mk_off kept;
            CHECK(mk_shm_alloc_ex(s, 3000, 0, MK_SHM_OWNED, &kept));
            for (int i = 0; i < 4; i += 2) CHECK(mk_shm_free(s, big[i]));
            CHECK(mk_shm_validate(s, NULL));
            mk_shm_info in;
            CHECK(mk_shm_get_info(s, &in));
            if (in.size <= size) {
                fprintf(stderr, "seedgen_shm: %s segment did not grow\n", pn);
                return 1;
            }
            snap();
            snprintf(name, sizeof name, "%s-grown", pn);
            emit(name, 0);
            snprintf(name, sizeof name, "%s-grown-anyway", pn);
            emit(name, 8);
            CHECK(mk_shm_close(s));
        }
    }
    mk_shm_unlink(seg, MK_SHM_FILE);
    rmdir(tmpdir);
    /* Not a segment at all. */
    memset(img, 0, 4096);
    img[0] = 1;
    img_len = 4096;
    emit("almost-zeros", 0);
    memset(img, 0xFF, 4096);
    emit("ones", 0);
    printf("seedgen_shm: %d seeds in %s\n", nfiles, dir);
    return 0;
}
