/*
 * Seed corpus for fuzz_region: valid region images of every policy, plain,
 * journaled and with deferred coalescing (MK_REGION_QUICK), empty and populated, small and
 * full-size, each followed by an operation script; plus a few damaged ones (header fields, a block
 * tag, a footer, a journal left mid-operation).
 *
 *   seedgen_region DIR      writes DIR/<name>.bin (DIR must exist)
 *
 * Deterministic: the sizes and scripts come from a fixed-seed generator.
 * The region secret comes from the OS, so the bytes differ between runs;
 * that only changes which seeds libFuzzer keeps, not what they cover.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memkit/region.h"
#include "region/region_int.h"

#define IMAGE  (64u * 1024u)
#define SCRIPT 192u

static _Alignas(4096) unsigned char img[IMAGE];
static uint64_t rng = 0x5EED;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static const char *dir;
static int nfiles;

static void emit(const char *name, size_t script_len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    unsigned char script[SCRIPT];
    for (size_t i = 0; i < script_len; i++) script[i] = (unsigned char)next();
    if (script_len) script[0] &= 0x3F; /* the full mapping (see the mapped-length byte) */
    if (fwrite(img, 1, IMAGE, f) != IMAGE || fwrite(script, 1, script_len, f) != script_len) {
        perror(path);
        exit(1);
    }
    fclose(f);
    nfiles++;
}

/* Populate r with a mix of live and freed blocks. */
static void populate(mk_region *r, int nblocks) {
    mk_off offs[256];
    int n = 0;
    for (int i = 0; i < nblocks && n < 256; i++) {
        size_t sz = (size_t)(next() % 1500);
        size_t al = (i % 7 == 0) ? (size_t)64 << (next() % 4) : 0;
        if (mk_region_alloc(r, sz, al, &offs[n]) != MK_OK) break;
        memset(mk_region_ptr(r, offs[n]), 0x20 + i % 64, sz);
        n++;
    }
    for (int i = 0; i < n; i += 3) mk_region_free(r, offs[i]);
    for (int i = 1; i < n; i += 5) {
        mk_off out;
        if (mk_region_realloc(r, offs[i], (size_t)(next() % 3000), &out) == MK_OK) offs[i] = out;
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: seedgen_region DIR\n");
        return 2;
    }
    dir = argv[1];
    const size_t sizes[] = {IMAGE, 8192, 2048};
    for (int p = 0; p < MK_POLICY_COUNT; p++) {
        const char *pn = mk_policy_name((mk_policy)p);
        for (int j = 0; j < 3; j++) {
            static const unsigned flag_of[3] = {0, MK_REGION_JOURNAL, MK_REGION_QUICK};
            static const char *const tag_of[3] = {"p", "j", "q"};
            unsigned fl = flag_of[j];
            for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
                size_t sz = sizes[si];
                if (sz < mk_region_min_size((mk_policy)p, fl) + 256) continue;
                char name[128];
                mk_region *r;
                memset(img, 0, IMAGE);
                if (mk_region_create(img, sz, (mk_policy)p, fl, &r) != MK_OK) continue;
                snprintf(name, sizeof name, "%s-%s-%zu-empty", pn, tag_of[j], sz);
                emit(name, SCRIPT);
                populate(r, sz == IMAGE ? 120 : 12);
                if (mk_region_validate(r, NULL) != MK_OK) {
                    fprintf(stderr, "seedgen: %s region does not validate\n", pn);
                    return 1;
                }
                snprintf(name, sizeof name, "%s-%s-%zu-used", pn, tag_of[j], sz);
                emit(name, SCRIPT);
                if (sz != IMAGE) continue;

                /* Damaged variants of the populated full-size image. */
                static unsigned char keep[IMAGE];
                memcpy(keep, img, IMAGE);
                mk__hdr *h = mk__h(r);
                h->data_end += 16;
                snprintf(name, sizeof name, "%s-%s-bad-data-end", pn, tag_of[j]);
                emit(name, SCRIPT);
                memcpy(img, keep, IMAGE);
                h->c.blocks_used++;
                snprintf(name, sizeof name, "%s-%s-bad-counter", pn, tag_of[j]);
                emit(name, SCRIPT);
                memcpy(img, keep, IMAGE);
                *mk__word(h, h->data_start) ^= UINT64_C(0x100);
                snprintf(name, sizeof name, "%s-%s-bad-span", pn, tag_of[j]);
                emit(name, SCRIPT);
                memcpy(img, keep, IMAGE);
                *mk__word(h, h->state_off) ^= UINT64_C(0x40);
                snprintf(name, sizeof name, "%s-%s-bad-state", pn, tag_of[j]);
                emit(name, SCRIPT);
                memcpy(img, keep, IMAGE);
                if (h->journal_off) {
                    /* A journal left mid-operation, with plausible records. */
                    mk__journal *jr = (mk__journal *)(void *)mk__word(h, h->journal_off);
                    jr->op = MK__OP_FREE;
                    jr->count = 3;
                    jr->rec[0] = (mk__undo){offsetof(mk__hdr, c.bytes_used), h->c.bytes_used};
                    jr->rec[1] = (mk__undo){h->data_start, *mk__word(h, h->data_start)};
                    jr->rec[2] = (mk__undo){h->data_start + 8, 0};
                    snprintf(name, sizeof name, "%s-j-mid-op", pn);
                    emit(name, SCRIPT);
                    memcpy(img, keep, IMAGE);
                }
                /* A truncated mapping (see fuzz_region.c: the script's first byte). */
                snprintf(name, sizeof name, "%s-%s-truncated", pn, tag_of[j]);
                emit(name, SCRIPT);
                {
                    char path[4096];
                    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
                    FILE *f = fopen(path, "r+b");
                    if (f && fseek(f, IMAGE, SEEK_SET) == 0) fputc(0xC7, f);
                    if (f) fclose(f);
                }
            }
        }
    }
    /* Not a region at all. */
    memset(img, 0, IMAGE);
    emit("zeros", 16);
    memset(img, 0xFF, IMAGE);
    emit("ones", 16);
    printf("seedgen_region: %d seeds in %s\n", nfiles, dir);
    return 0;
}
