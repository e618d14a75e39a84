/*
 * The directory of named objects: a hash table of MK__SHM_BUCKETS chains in
 * the meta block. An object is one block: its entry (name, type, size, the
 * next entry's offset) followed by the data, so creating one is a single
 * allocation, and the allocation and the link into the chain are one journal
 * operation: a crash leaves either no object or a complete one.
 *
 * Every link read from the segment is checked (a live block tagged as an
 * object) before it is followed, and a chain walk stops after as many steps
 * as there are objects, so a damaged or cyclic chain gives MK_ECORRUPT.
 */
#include "shm_int.h"

#include <string.h>

uint64_t mk__shm_hash(const char *name, size_t len) {
    uint64_t x = UINT64_C(0xcbf29ce484222325);
    for (size_t i = 0; i < len; i++) x = (x ^ (unsigned char)name[i]) * UINT64_C(0x100000001b3);
    return x;
}

static int name_len(const char *name, size_t *len) {
    if (!name) return MK_EINVAL;
    size_t n = strnlen(name, MK_SHM_OBJ_NAME_MAX + 1);
    if (n == 0 || n > MK_SHM_OBJ_NAME_MAX) return MK_EINVAL;
    *len = n;
    return MK_OK;
}

static mk__shm_ent *ent_at(const mk_shm *s, mk_off p) {
    return (mk__shm_ent *)(void *)mk__word(s->h, p);
}

/* The entry at payload offset p, if p really is an object block. */
static int checked_ent(const mk_shm *s, mk_off p, mk__shm_ent **e) {
    mk__shm_blk blk;
    int rc = mk__shm_classify(s->h, p, &blk);
    if (rc != MK_OK || blk.kind != MK_SHM_BLOCK_OBJECT) return MK_ECORRUPT;
    mk__shm_ent *x = ent_at(s, p);
    if (x->size > blk.span - sizeof(mk__shm_ent) - 2 * MK__TAGW) return MK_ECORRUPT;
    if (memchr(x->name, 0, sizeof x->name) == NULL) return MK_ECORRUPT;
    *e = x;
    return MK_OK;
}

/* A bound on a chain walk that needs no trust in the segment's object
 * count: at most m->objects steps, and a loop is caught by Brent's test (a
 * mark that jumps ahead at powers of two), so a cycle ends the walk within
 * about two laps of it even when the count word is huge. */
typedef struct chain_guard {
    uint64_t steps, max, lap, power;
    mk_off mark;
} chain_guard;

static chain_guard chain_guard_for(const mk__shm_meta *m) {
    return (chain_guard){.max = m->objects, .power = 1};
}

/* A new chain: the loop test starts again (the step count goes on). */
static void chain_restart(chain_guard *g) {
    g->mark = 0;
    g->lap = 0;
    g->power = 1;
}

/* Account for one more entry cur; false when the chain is too long or loops. */
static bool chain_step(chain_guard *g, mk_off cur) {
    if (++g->steps > g->max || cur == g->mark) return false;
    if (++g->lap == g->power) {
        g->mark = cur;
        g->power <<= 1;
        g->lap = 0;
    }
    return true;
}

/* Find name; *link is the word that points at it (bucket head or the
 * previous entry's next), *p its payload offset. MK_ENOENT: *link is the
 * bucket head. */
static int lookup(mk_shm *s, const char *name, size_t len, uint64_t hash, uint64_t **link,
                  mk_off *p) {
    mk__shm_meta *m = mk__shm_m(s);
    uint64_t *l = &m->buckets[hash % MK__SHM_BUCKETS];
    chain_guard g = chain_guard_for(m);
    for (mk_off cur = *l; cur != 0;) {
        mk__shm_ent *e;
        if (!chain_step(&g, cur) || checked_ent(s, cur, &e) != MK_OK) return MK_ECORRUPT;
        if (e->hash == hash && strncmp(e->name, name, len) == 0 && e->name[len] == 0) {
            *link = l;
            *p = cur;
            return MK_OK;
        }
        l = &e->next;
        cur = e->next;
    }
    *link = &m->buckets[hash % MK__SHM_BUCKETS];
    *p = 0;
    return MK_ENOENT;
}

static void fill_obj(const mk__shm_ent *e, mk_off p, mk_shm_obj *o) {
    memset(o, 0, sizeof *o);
    memcpy(o->name, e->name, sizeof o->name);
    o->name[MK_SHM_OBJ_NAME_MAX] = 0;
    o->type = (uint32_t)e->type;
    o->size = e->size;
    o->offset = p + sizeof(mk__shm_ent);
}

/* Inside an operation: allocate and link a new object. MK_ENOMEM: nothing written. */
static int create_once(mk_shm *s, const char *name, size_t len, uint64_t hash, uint32_t type,
                       uint64_t size, mk_off *p) {
    mk__hdr *h = s->h;
    mk__shm_meta *m = mk__shm_m(s);
    mk_off b = 0;
    int rc = mk__shm_raw_alloc(h, sizeof(mk__shm_ent) + size + 8, 0, mk__shm_place(s), &b);
    if (rc != MK_OK) return rc;
    mk__journal_payload_words(h, b);
    uint64_t span = mk__bspan(h, b);
    mk_off pl = b + MK__TAGW;
    /* The data is zero-filled, so racers that find the object see a
     * defined state; the entry words are journaled like any metadata. */
    memset(mk__word(h, pl + sizeof(mk__shm_ent)), 0,
           (size_t)(span - MK__TAGW - sizeof(mk__shm_ent) - 8));
    uint64_t *bucket = &m->buckets[hash % MK__SHM_BUCKETS];
    mk__shm_ent *e = ent_at(s, pl);
    uint64_t words[(MK_SHM_OBJ_NAME_MAX + 1) / 8] = {0};
    memcpy(words, name, len);
    mk__set(h, &e->next, *bucket);
    mk__set(h, &e->hash, hash);
    mk__set(h, &e->type, type);
    mk__set(h, &e->size, size);
    uint64_t *nw = (uint64_t *)(void *)e->name;
    for (size_t i = 0; i < sizeof words / 8; i++) mk__set(h, &nw[i], words[i]);
    mk__shm_tag_block(h, b, mk__shm_trailer_for(MK_SHM_BLOCK_OBJECT, b));
    mk__set(h, bucket, pl);
    mk__set(h, &m->objects, m->objects + 1);
    *p = pl;
    return MK_OK;
}

/* Find or create under the lock; count: mk__shm_no_room. */
static int create_locked(mk_shm *s, const char *name, size_t len, uint32_t type, size_t size,
                         unsigned flags, bool count, mk_off *out, int *created) {
    uint64_t need = (uint64_t)size + sizeof(mk__shm_ent) + 8;
    uint64_t hash = mk__shm_hash(name, len);
    int rc = mk__shm_lock(s);
    if (rc != MK_OK) return rc;
    uint64_t *link;
    mk_off p = 0;
    rc = lookup(s, name, len, hash, &link, &p);
    if (rc == MK_OK) {
        const mk__shm_ent *e = ent_at(s, p);
        if ((flags & MK_SHM_OBJ_EXCL) || e->type != type || e->size < size) rc = MK_EEXIST;
    } else if (rc == MK_ENOENT) {
        bool drained = false;
        for (;;) {
            mk__journal_begin(s->h, MK__OP_USER, MK__SOP_OBJ_CREATE, hash, size);
            rc = create_once(s, name, len, hash, type, size, &p);
            mk__journal_end(s->h);
            if (rc != MK_ENOMEM || mk__shm_no_room(s, need + 64, &drained, count) != MK_OK) break;
        }
        if (rc == MK_OK && created) *created = 1;
    }
    mk__shm_unlock(s);
    if (rc == MK_OK) *out = p + sizeof(mk__shm_ent);
    return rc;
}

int mk_shm_obj_create(mk_shm *s, const char *name, uint32_t type, size_t size, unsigned flags,
                      mk_off *out, int *created) {
    if (created) *created = 0;
    size_t len = 0;
    if (!s || !out || (flags & ~(unsigned)MK_SHM_OBJ_EXCL) || name_len(name, &len) != MK_OK)
        return MK_EINVAL;
    uint64_t need = (uint64_t)size + sizeof(mk__shm_ent) + 8;
    if (size > MK_REGION_MAX_SIZE || need > mk__shm_capacity(s)) return MK_ETOOBIG;
    int rc = create_locked(s, name, len, type, size, flags, false, out, created);
    if (rc == MK_ENOMEM && mk__shm_retry_after_flush(s))
        rc = create_locked(s, name, len, type, size, flags, true, out, created);
    return rc;
}

int mk_shm_obj_find(mk_shm *s, const char *name, mk_shm_obj *obj) {
    size_t len = 0;
    if (!s || name_len(name, &len) != MK_OK) return MK_EINVAL;
    uint64_t hash = mk__shm_hash(name, len);
    int rc = mk__shm_lock(s);
    if (rc != MK_OK) return rc;
    uint64_t *link;
    mk_off p = 0;
    rc = lookup(s, name, len, hash, &link, &p);
    if (rc == MK_OK && obj) fill_obj(ent_at(s, p), p, obj);
    mk__shm_unlock(s);
    return rc;
}

int mk_shm_obj_remove(mk_shm *s, const char *name) {
    size_t len = 0;
    if (!s || name_len(name, &len) != MK_OK) return MK_EINVAL;
    uint64_t hash = mk__shm_hash(name, len);
    int rc = mk__shm_lock(s);
    if (rc != MK_OK) return rc;
    uint64_t *link;
    mk_off p = 0;
    rc = lookup(s, name, len, hash, &link, &p);
    /* Check the neighbours first: after this, the free cannot fail halfway. */
    if (rc == MK_OK) rc = mk__neighbours_ok(s->h, p - MK__TAGW);
    if (rc == MK_OK) {
        mk__hdr *h = s->h;
        mk__shm_meta *m = mk__shm_m(s);
        mk__journal_begin(h, MK__OP_USER, MK__SOP_OBJ_REMOVE, hash, 0);
        mk__set(h, link, ent_at(s, p)->next);
        mk__set(h, &m->objects, m->objects - 1);
        rc = mk__region_free_op(h, p - MK__TAGW);
        mk__journal_end(h);
    }
    mk__shm_unlock(s);
    return rc;
}

int mk_shm_obj_iter(mk_shm *s, mk_shm_obj_visitor visit, void *arg) {
    if (!s || !visit) return MK_EINVAL;
    int rc = mk__shm_lock(s);
    if (rc != MK_OK) return rc;
    const mk__shm_meta *m = mk__shm_m(s);
    chain_guard g = chain_guard_for(m);
    for (uint32_t i = 0; rc == 0 && i < MK__SHM_BUCKETS; i++) {
        chain_restart(&g);
        for (mk_off cur = m->buckets[i]; rc == 0 && cur != 0;) {
            mk__shm_ent *e;
            if (!chain_step(&g, cur) || checked_ent(s, cur, &e) != MK_OK) {
                rc = MK_ECORRUPT;
                break;
            }
            mk_shm_obj o;
            fill_obj(e, cur, &o);
            rc = visit(&o, arg);
            cur = e->next;
        }
    }
    mk__shm_unlock(s);
    return rc;
}

/* Validation of the directory (lock held): every chain well-linked, every
 * entry in the bucket of its name's hash, the count right. */
int mk__shm_dir_check(mk_shm *s, mk_fault *f) {
    const mk__shm_meta *m = mk__shm_m(s);
    chain_guard g = chain_guard_for(m);
    for (uint32_t i = 0; i < MK__SHM_BUCKETS; i++) {
        chain_restart(&g);
        for (mk_off cur = m->buckets[i]; cur != 0;) {
            mk__shm_ent *e;
            if (!chain_step(&g, cur))
                return mk__shm_fault(f, "directory: more entries than counted (or a cycle)", cur);
            if (checked_ent(s, cur, &e) != MK_OK)
                return mk__shm_fault(f, "directory: link to a block that is not an object", cur);
            size_t len = strnlen(e->name, sizeof e->name);
            if (len == 0) return mk__shm_fault(f, "directory: empty object name", cur);
            if (e->hash != mk__shm_hash(e->name, len) || e->hash % MK__SHM_BUCKETS != i)
                return mk__shm_fault(f, "directory: entry hash or bucket wrong", cur);
            cur = e->next;
        }
    }
    if (g.steps != m->objects)
        return mk__shm_fault(f, "directory: object count differs from the chains", s->meta);
    return MK_OK;
}
