/* Statistics: counters kept by every operation, plus what a walk measures. */
#include <inttypes.h>
#include <stdio.h>

#include "region_int.h"

struct free_scan {
    uint64_t blocks, bytes, largest, total_blocks;
};

static int scan_block(const mk_block_info *b, void *arg) {
    struct free_scan *s = arg;
    s->total_blocks++;
    if (!b->used) {
        s->blocks++;
        s->bytes += b->span;
        if (b->size > s->largest) s->largest = b->size;
    }
    return 0;
}

int mk_region_stats(const mk_region *r, mk_stats *out) {
    if (!r || !out) return MK_EINVAL;
    const mk__hdr *h = mk__hc(r);
    struct free_scan s = {0};
    int rc = mk_region_walk(r, scan_block, &s);
    if (rc != MK_OK) return rc;
    *out = (mk_stats){
        .capacity = h->data_end - h->data_start,
        .bytes_used = h->c.bytes_used,
        .bytes_free = s.bytes,
        .blocks_used = h->c.blocks_used,
        .blocks_free = s.blocks,
        .peak_used = h->c.peak_used,
        .n_alloc = h->c.n_alloc,
        .n_free = h->c.n_free,
        .n_realloc = h->c.n_realloc,
        .n_failed = h->c.n_failed,
        .largest_free = s.largest,
        .overhead = h->data_start + MK__TAGW * (s.total_blocks + 1),
        .fragmentation = s.bytes ? 1.0 - (double)s.largest / (double)s.bytes : 0.0,
    };
    return MK_OK;
}

void mk_region_stats_reset(mk_region *r) {
    if (!r) return;
    mk__hdr *h = mk__h(r);
    if (!mk__hdr_ok(h)) return; /* a damaged header: nothing is written */
    mk__journal_begin(h, MK__OP_USER, 0, 0, 0);
    mk__set(h, &h->c.peak_used, h->c.bytes_used);
    mk__set(h, &h->c.n_alloc, 0);
    mk__set(h, &h->c.n_free, 0);
    mk__set(h, &h->c.n_realloc, 0);
    mk__set(h, &h->c.n_failed, 0);
    mk__journal_end(h);
}

int mk_stats_print(const mk_stats *s, FILE *f) {
    if (!s || !f) return MK_EINVAL;
    int n =
        fprintf(f,
                "capacity      %14" PRIu64 " bytes\n"
                "in use        %14" PRIu64 " bytes in %" PRIu64 " blocks (peak %" PRIu64 ")\n"
                "free          %14" PRIu64 " bytes in %" PRIu64 " blocks (largest %" PRIu64 ")\n"
                "overhead      %14" PRIu64 " bytes\n"
                "fragmentation %14.4f (1 - largest free / total free)\n"
                "operations    %" PRIu64 " allocs, %" PRIu64 " frees, %" PRIu64
                " reallocs, %" PRIu64 " failed\n",
                s->capacity, s->bytes_used, s->blocks_used, s->peak_used, s->bytes_free,
                s->blocks_free, s->largest_free, s->overhead, s->fragmentation, s->n_alloc,
                s->n_free, s->n_realloc, s->n_failed);
    return n < 0 ? MK_EOS : MK_OK;
}

int mk_stats_json(const mk_stats *s, FILE *f) {
    if (!s || !f) return MK_EINVAL;
    int n = fprintf(f,
                    "{\"capacity\":%" PRIu64 ",\"bytes_used\":%" PRIu64 ",\"bytes_free\":%" PRIu64
                    ",\"blocks_used\":%" PRIu64 ",\"blocks_free\":%" PRIu64
                    ",\"peak_used\":%" PRIu64 ",\"n_alloc\":%" PRIu64 ",\"n_free\":%" PRIu64
                    ",\"n_realloc\":%" PRIu64 ",\"n_failed\":%" PRIu64 ",\"largest_free\":%" PRIu64
                    ",\"overhead\":%" PRIu64 ",\"fragmentation\":%.6f}",
                    s->capacity, s->bytes_used, s->bytes_free, s->blocks_used, s->blocks_free,
                    s->peak_used, s->n_alloc, s->n_free, s->n_realloc, s->n_failed, s->largest_free,
                    s->overhead, s->fragmentation);
    return n < 0 ? MK_EOS : MK_OK;
}
