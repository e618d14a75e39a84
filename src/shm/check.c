/*
 * Inspection of a segment: validate, walk, statistics, dump. All run under
 * the lock, so they see a consistent heap while other processes keep
 * working (they wait for the lock like any operation).
 */
#include "shm_int.h"

#include <inttypes.h>
#include <string.h>

int mk__shm_fault(mk_fault *f, const char *invariant, mk_off off) {
    if (f) {
        f->code = MK_ECORRUPT;
        f->invariant = invariant;
        f->offset = off;
    }
    return MK_ECORRUPT;
}

typedef struct census {
    mk_shm *s;
    mk_fault *f;
    int rc;
    uint64_t meta, tables, objects;
} census;

static int count_block(const mk_block_info *bi, void *arg) {
    census *c = arg;
    if (!bi->used) return 0;
    mk__shm_blk blk;
    if (mk__shm_classify(c->s->h, bi->offset, &blk) != MK_OK) {
        c->rc = mk__shm_fault(c->f, "block: USER bit with an unknown trailer", bi->offset);
        return 1;
    }
    if (blk.kind == MK_SHM_BLOCK_META) *(blk.table ? &c->tables : &c->meta) += 1;
    if (blk.kind == MK_SHM_BLOCK_OBJECT) c->objects++;
    return 0;
}

int mk__shm_validate_locked(mk_shm *s, mk_fault *f) {
    mk_fault local;
    if (!f) f = &local;
    memset(f, 0, sizeof *f);
    mk__hdr *h = s->h;
    int rc = mk_region_validate((const mk_region *)h, f);
    if (rc != MK_OK) return rc;
    if (h->user[MK__U_MAGIC] != MK__SHM_MAGIC || h->user[MK__U_VERSION] != MK__SHM_VERSION ||
        h->user[MK__U_SIG] != mk__shm_layout_sig())
        return mk__shm_fault(f, "segment: identity words", 0);
    if (h->user[MK__U_MAX] != s->reserved || h->size > s->reserved)
        return mk__shm_fault(f, "segment: size above the maximum", 0);
    mk__shm_blk blk;
    if (h->user[MK__U_META] != s->meta || mk__shm_classify(h, s->meta, &blk) != MK_OK ||
        blk.kind != MK_SHM_BLOCK_META)
        return mk__shm_fault(f, "segment: meta block", h->user[MK__U_META]);
    const mk__shm_meta *m = mk__shm_m(s);
    if (m->magic != MK__SHM_META_MG || m->version != MK__SHM_VERSION ||
        m->max_size != s->reserved || m->name[MK_SHM_NAME_MAX] != 0)
        return mk__shm_fault(f, "segment: meta fields", s->meta);
    uint64_t used = 0;
    for (uint32_t i = 0; i < MK_SHM_MAX_PROCS; i++) {
        const mk__shm_slot *sl = &m->slots[i];
        if (sl->pid == 0) {
            if (sl->gen != 0 || sl->start_time != 0)
                return mk__shm_fault(f, "process table: free slot not cleared",
                                     mk__offset_of(h, sl));
            continue;
        }
        used++;
        if (sl->gen == 0 || sl->gen > m->gen)
            return mk__shm_fault(f, "process table: generation out of range", mk__offset_of(h, sl));
    }
    if (used != m->attached)
        return mk__shm_fault(f, "process table: attach count differs from the slots", s->meta);
    rc = mk__shm_dir_check(s, f);
    if (rc != MK_OK) return rc;
    census c = {.s = s, .f = f};
    int w = mk_region_walk((const mk_region *)h, count_block, &c);
    if (c.rc != MK_OK) return c.rc;
    if (w < 0) return mk__shm_fault(f, "walk failed", 0);
    if (c.meta != 1) return mk__shm_fault(f, "segment: not exactly one meta block", 0);
    rc = mk__shm_cache_check(s, f);
    if (rc != MK_OK) return rc;
    uint64_t tables = 0;
    for (uint32_t i = 0; i < MK_SHM_MAX_PROCS; i++) tables += m->slots[i].cache != 0;
    if (c.tables != tables)
        return mk__shm_fault(f, "process table: cache tables not all referenced", s->meta);
    if (c.objects != m->objects)
        return mk__shm_fault(f, "directory: object blocks not all linked", s->meta);
    return MK_OK;
}

int mk_shm_validate(mk_shm *s, mk_fault *fault) {
    if (!s) return MK_EINVAL;
    int rc = mk__shm_lock(s);
    if (rc != MK_OK) {
        if (fault) {
            memset(fault, 0, sizeof *fault);
            fault->code = rc;
            fault->invariant = "lock (repair after a dead owner failed, or the lock is broken)";
        }
        return rc;
    }
    rc = mk__shm_validate_locked(s, fault);
    mk__shm_unlock(s);
    return rc;
}

int mk_shm_stats(mk_shm *s, mk_stats *out) {
    if (!s || !out) return MK_EINVAL;
    int rc = mk__shm_lock(s);
    if (rc != MK_OK) return rc;
    rc = mk_region_stats((const mk_region *)s->h, out);
    mk__shm_unlock(s);
    return rc;
}

/* ---- walk ------------------------------------------------------------------------ */

const char *mk_shm_block_kind_name(mk_shm_block_kind kind) {
    static const char *const names[] = {"free", "plain", "owned", "object", "meta", "cached"};
    return (unsigned)kind < sizeof names / sizeof names[0] ? names[kind] : "?";
}

typedef struct walk_ctx {
    mk_shm *s;
    mk_shm_block_visitor visit;
    void *arg;
} walk_ctx;

static int walk_one(const mk_block_info *bi, void *arg) {
    walk_ctx *c = arg;
    mk_shm_block b;
    memset(&b, 0, sizeof b);
    b.info = *bi;
    b.kind = MK_SHM_BLOCK_FREE;
    if (bi->used) {
        mk__shm_blk blk;
        if (mk__shm_classify(c->s->h, bi->offset, &blk) != MK_OK) return MK_ECORRUPT;
        b.kind = (mk_shm_block_kind)blk.kind;
        if (mk__shm_in_a_cache(c->s->h, &blk)) b.kind = MK_SHM_BLOCK_CACHED;
        if (blk.kind == MK_SHM_BLOCK_OWNED) {
            b.owner_slot = blk.slot;
            b.owner_gen = blk.gen;
            b.info.size -= MK__TAGW;
        } else if (blk.kind == MK_SHM_BLOCK_OBJECT) {
            const mk__shm_ent *e = (const mk__shm_ent *)(const void *)mk__word(c->s->h, bi->offset);
            /* The entry's size is segment data: a hostile one must not make
             * a dump read past the block. */
            if (blk.span < sizeof(mk__shm_ent) + 2 * MK__TAGW ||
                e->size > blk.span - sizeof(mk__shm_ent) - 2 * MK__TAGW)
                return MK_ECORRUPT;
            b.info.offset = bi->offset + sizeof(mk__shm_ent);
            b.info.size = e->size;
        }
    }
    return c->visit(&b, c->arg);
}

int mk_shm_walk(mk_shm *s, mk_shm_block_visitor visit, void *arg) {
    if (!s || !visit) return MK_EINVAL;
    int rc = mk__shm_lock(s);
    if (rc != MK_OK) return rc;
    walk_ctx c = {s, visit, arg};
    rc = mk_region_walk((const mk_region *)s->h, walk_one, &c);
    mk__shm_unlock(s);
    return rc;
}

/* ---- dump ------------------------------------------------------------------------ */

typedef struct dump_ctx {
    FILE *f;
    int err;
} dump_ctx;

static int dump_block(const mk_shm_block *b, void *arg) {
    dump_ctx *d = arg;
    int n = fprintf(d->f, "  %12" PRIu64 "  %10" PRIu64 "  %10" PRIu64 "  %-6s", b->info.offset,
                    b->info.size, b->info.span, mk_shm_block_kind_name(b->kind));
    if (n >= 0 && b->kind == MK_SHM_BLOCK_OWNED)
        n = fprintf(d->f, "  slot %" PRIu32 " gen %" PRIu64, b->owner_slot, b->owner_gen);
    if (n >= 0) n = fputc('\n', d->f);
    if (n < 0) d->err = 1;
    return d->err;
}

static int dump_obj(const mk_shm_obj *o, void *arg) {
    dump_ctx *d = arg;
    if (fprintf(d->f, "  %-32s type %-10" PRIu32 " size %-10" PRIu64 " offset %" PRIu64 "\n",
                o->name, o->type, o->size, o->offset) < 0)
        d->err = 1;
    return d->err;
}

int mk_shm_dump(mk_shm *s, FILE *f) {
    if (!s || !f) return MK_EINVAL;
    mk_shm_info in;
    int rc = mk_shm_get_info(s, &in);
    if (rc != MK_OK) return rc;
    dump_ctx d = {f, 0};
    if (fprintf(f,
                "segment %s\n  size %" PRIu64 " of max %" PRIu64 ", policy %s, %s, %s\n"
                "  attached %" PRIu32 ", objects %" PRIu32 ", creator pid %" PRIu64
                ", attaches %" PRIu64 "\n",
                in.name, in.size, in.max_size, mk_policy_name(in.policy),
                (in.flags & MK_SHM_FILE) ? "file-backed" : "shared memory",
                (in.flags & MK_SHM_REMOVE_ON_LAST_CLOSE) ? "removed on last close" : "kept",
                in.attached, in.objects, in.creator_pid, in.generation) < 0)
        return MK_EOS;
    mk_shm_proc procs[MK_SHM_MAX_PROCS];
    size_t np = 0;
    rc = mk_shm_procs(s, procs, MK_SHM_MAX_PROCS, &np);
    if (rc != MK_OK) return rc;
    fprintf(f, "processes\n");
    for (size_t i = 0; i < np && i < MK_SHM_MAX_PROCS; i++)
        fprintf(f,
                "  slot %-4" PRIu32 " pid %-8" PRIu64 " start %-12" PRIu64 " gen %-6" PRIu64
                " %s%s\n",
                procs[i].slot, procs[i].pid, procs[i].start_time, procs[i].generation,
                procs[i].alive ? "alive" : "DEAD", procs[i].self ? " (self)" : "");
    mk_stats st;
    rc = mk_shm_stats(s, &st);
    if (rc == MK_OK) rc = mk_stats_print(&st, f);
    if (rc != MK_OK) return rc;
    fprintf(f, "objects\n");
    rc = mk_shm_obj_iter(s, dump_obj, &d);
    if (rc < 0) return rc;
    fprintf(f, "blocks\n  %12s  %10s  %10s  %s\n", "offset", "size", "span", "kind");
    rc = mk_shm_walk(s, dump_block, &d);
    if (rc < 0) return rc;
    return d.err || ferror(f) ? MK_EOS : MK_OK;
}
