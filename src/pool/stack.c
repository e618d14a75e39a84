/*
 * The stack allocator.
 *
 * Layout (caller buffer or owned mapping): struct mk_stack, then the data
 * area [data_start, data_end). All positions are offsets from the start.
 *
 * Invariants:
 *   - data_start <= top <= data_end; [data_start, top) holds the live
 *     blocks in push order, each preceded by its 16-byte header.
 *   - last is the payload offset of the top block (0 when depth == 0);
 *     last <= top (a 0-byte block has last == top).
 *   - The header of the block at p: word p-16 = prev_top | tag << 48,
 *     word p-8 = prev_last, the stack's top and last before the push, and
 *     tag = hash(p, prev_top, prev_last, secret). The tag tells a block
 *     start from garbage in O(1); pop trusts the header only when it
 *     matches, so a buffer overrun below the top is reported, not obeyed.
 */
#include "memkit/stack.h"

#include <errno.h>
#include <string.h>

#include "os/os.h"

#define MK__STACK_MAGIC UINT64_C(0x4B43415453544B4D) /* "MKTSTACK" */
#define TAG_SHIFT       48
#define OFF_MASK        ((UINT64_C(1) << TAG_SHIFT) - 1)
#define MAX_ALIGN       4096u

struct mk_stack {
    uint64_t magic;
    unsigned flags;
    bool owned;
    size_t size;
    uint64_t secret;
    uint64_t data_start, data_end;
    uint64_t top, last, depth;
    uint64_t peak, n_push, n_pop, n_rollback, n_failed;
    mk__os_mutex lock;
};

static uint64_t mix(uint64_t x) {
    x ^= x >> 31;
    x *= UINT64_C(0x9E3779B97F4A7C15);
    x ^= x >> 29;
    x *= UINT64_C(0xBF58476D1CE4E5B9);
    x ^= x >> 32;
    return x;
}

static uint64_t hdr_tag(const mk_stack *s, uint64_t p, uint64_t prev_top, uint64_t prev_last) {
    return mix(p ^ mix(prev_top ^ s->secret) ^ (prev_last << 17)) >> TAG_SHIFT;
}

static uint64_t marker_check(const mk_stack *s, uint64_t top, uint64_t last, uint64_t depth) {
    return mix(top ^ mix(last ^ mix(depth ^ s->secret)));
}

static uint64_t *word(mk_stack *s, uint64_t off) { return (uint64_t *)(void *)((char *)s + off); }

static size_t ctrl_bytes(void) { return (sizeof(struct mk_stack) + 15u) & ~(size_t)15u; }

size_t mk_stack_min_size(void) { return ctrl_bytes() + MK_STACK_HEADER + 16u; }

static bool stack_ok(const mk_stack *s) { return s && s->magic == MK__STACK_MAGIC; }

static int stack_lock(mk_stack *s) {
    return (s->flags & MK_STACK_THREADSAFE) ? mk__os_mutex_lock(&s->lock) : MK_OK;
}

static void stack_unlock(mk_stack *s) {
    if (s->flags & MK_STACK_THREADSAFE) (void)mk__os_mutex_unlock(&s->lock);
}

/* Whether a well-formed header precedes payload offset p; fills the links. */
static bool read_header(mk_stack *s, uint64_t p, uint64_t *prev_top, uint64_t *prev_last) {
    if (p % 8u || p < s->data_start + MK_STACK_HEADER || p > s->data_end) return false;
    uint64_t w0 = *word(s, p - 16u), w1 = *word(s, p - 8u);
    uint64_t pt = w0 & OFF_MASK;
    if ((w0 >> TAG_SHIFT) != hdr_tag(s, p, pt, w1)) return false;
    /* Bounds: the previous top is at or below this header, and the
     * previous top block lies below that. */
    if (pt < s->data_start || pt > p - MK_STACK_HEADER) return false;
    if (w1 > pt || (w1 != 0 && w1 < s->data_start + MK_STACK_HEADER)) return false;
    *prev_top = pt;
    *prev_last = w1;
    return true;
}

int mk_stack_create(void *buffer, size_t size, unsigned flags, mk_stack **out) {
    if (!out || (flags & ~(unsigned)MK_STACK_THREADSAFE)) return MK_EINVAL;
    if (size < mk_stack_min_size() || (uint64_t)size > OFF_MASK) return MK_EINVAL;
    if (buffer && ((uintptr_t)buffer & 15u)) return MK_EINVAL;
    void *mem = buffer;
    if (!mem) {
        int rc = mk__os_alloc(size, &mem);
        if (rc != MK_OK) return rc;
    }
    mk_stack *s = mem;
    memset(s, 0, sizeof *s);
    s->flags = flags;
    s->owned = buffer == NULL;
    s->size = size;
    mk__os_random(&s->secret, sizeof s->secret);
    s->data_start = ctrl_bytes();
    s->data_end = size;
    s->top = s->data_start;
    if (flags & MK_STACK_THREADSAFE) {
        int rc = mk__os_mutex_init(&s->lock, false, NULL);
        if (rc != MK_OK) {
            if (s->owned) (void)mk__os_release(mem, size);
            return rc;
        }
    }
    s->magic = MK__STACK_MAGIC;
    *out = s;
    return MK_OK;
}

int mk_stack_destroy(mk_stack *s) {
    if (!stack_ok(s)) return MK_EINVAL;
    if (s->flags & MK_STACK_THREADSAFE) mk__os_mutex_destroy(&s->lock);
    s->magic = 0;
    return s->owned ? mk__os_release(s, s->size) : MK_OK;
}

void *mk_stack_push(mk_stack *s, size_t size, size_t align, int *err) {
    int rc = MK_OK;
    void *p = NULL;
    if (!stack_ok(s)) {
        rc = MK_EINVAL;
        goto out;
    }
    if (align == 0) align = 16u;
    if ((align & (align - 1u)) || align > MAX_ALIGN) {
        rc = MK_EALIGN;
        goto out;
    }
    if (align < 8u) align = 8u;
    if ((uint64_t)size > s->data_end - s->data_start) {
        rc = MK_ETOOBIG;
        goto out;
    }
    if ((rc = stack_lock(s)) != MK_OK) goto out;
    /* Alignment is of the absolute address. */
    uintptr_t base = (uintptr_t)s;
    uintptr_t hdr_end = base + ((s->top + 7u) & ~(uint64_t)7u) + MK_STACK_HEADER;
    uint64_t off = (uint64_t)(((hdr_end + align - 1u) & ~(uintptr_t)(align - 1u)) - base);
    if (off > s->data_end || size > s->data_end - off) {
        s->n_failed++;
        rc = MK_ENOMEM;
    } else {
        uint64_t *h = word(s, off - 16u);
        h[0] = s->top | (hdr_tag(s, off, s->top, s->last) << TAG_SHIFT);
        h[1] = s->last;
        s->top = off + size;
        s->last = off;
        s->depth++;
        s->n_push++;
        if (s->top - s->data_start > s->peak) s->peak = s->top - s->data_start;
        p = (char *)s + off;
    }
    stack_unlock(s);
out:
    if (err) *err = rc;
    return p;
}

int mk_stack_pop(mk_stack *s, void *p) {
    if (!stack_ok(s) || !p) return MK_EINVAL;
    uintptr_t a = (uintptr_t)p, base = (uintptr_t)s;
    if (a < base || a - base > s->data_end) return MK_EBADOFF;
    uint64_t off = (uint64_t)(a - base);
    int rc = stack_lock(s);
    if (rc != MK_OK) return rc;
    uint64_t pt, pl;
    if (s->depth && off == s->last) {
        if (!read_header(s, off, &pt, &pl)) {
            rc = MK_ECORRUPT;
        } else {
            s->top = pt;
            s->last = pl;
            s->depth--;
            s->n_pop++;
        }
    } else if (off < s->top && off < s->last && read_header(s, off, &pt, &pl)) {
        rc = MK_ENOTTOP;
    } else {
        rc = MK_EBADOFF;
    }
    stack_unlock(s);
    return rc;
}

int mk_stack_mark(mk_stack *s, mk_stack_marker *out) {
    if (!stack_ok(s) || !out) return MK_EINVAL;
    int rc = stack_lock(s);
    if (rc != MK_OK) return rc;
    out->top = s->top;
    out->last = s->last;
    out->depth = s->depth;
    out->check = marker_check(s, s->top, s->last, s->depth);
    stack_unlock(s);
    return MK_OK;
}

int mk_stack_rollback(mk_stack *s, const mk_stack_marker *m) {
    if (!stack_ok(s) || !m) return MK_EINVAL;
    int rc = stack_lock(s);
    if (rc != MK_OK) return rc;
    uint64_t pt, pl;
    bool ok = m->check == marker_check(s, m->top, m->last, m->depth) && m->top <= s->top &&
              m->depth <= s->depth && m->top >= s->data_start && (m->last == 0) == (m->depth == 0);
    /* The marker's top block must still be a block ending at or below m->top. */
    if (ok && m->last) ok = m->last <= m->top && read_header(s, m->last, &pt, &pl);
    if (ok) {
        s->top = m->top;
        s->last = m->last;
        s->depth = m->depth;
        s->n_rollback++;
    }
    stack_unlock(s);
    return ok ? MK_OK : MK_EINVAL;
}

int mk_stack_reset(mk_stack *s) {
    if (!stack_ok(s)) return MK_EINVAL;
    int rc = stack_lock(s);
    if (rc != MK_OK) return rc;
    s->top = s->data_start;
    s->last = 0;
    s->depth = 0;
    s->n_rollback++;
    stack_unlock(s);
    return MK_OK;
}

int mk_stack_stats(mk_stack *s, mk_stack_usage *out) {
    if (!stack_ok(s) || !out) return MK_EINVAL;
    int rc = stack_lock(s);
    if (rc != MK_OK) return rc;
    *out = (mk_stack_usage){
        .capacity = s->data_end - s->data_start,
        .used = s->top - s->data_start,
        .peak = s->peak,
        .blocks = s->depth,
        .n_push = s->n_push,
        .n_pop = s->n_pop,
        .n_rollback = s->n_rollback,
        .n_failed = s->n_failed,
    };
    stack_unlock(s);
    return MK_OK;
}

int mk_stack_stats_reset(mk_stack *s) {
    if (!stack_ok(s)) return MK_EINVAL;
    int rc = stack_lock(s);
    if (rc != MK_OK) return rc;
    s->peak = s->top - s->data_start;
    s->n_push = s->n_pop = s->n_rollback = s->n_failed = 0;
    stack_unlock(s);
    return MK_OK;
}

int mk_stack_stats_print(mk_stack *s, FILE *f) {
    if (!f) return MK_EINVAL;
    mk_stack_usage st;
    int rc = mk_stack_stats(s, &st);
    if (rc != MK_OK) return rc;
    int n = fprintf(f,
                    "stack capacity   %llu\n"
                    "stack used       %llu\n"
                    "stack peak       %llu\n"
                    "stack blocks     %llu\n"
                    "stack pushes     %llu\n"
                    "stack pops       %llu\n"
                    "stack rollbacks  %llu\n"
                    "stack failed     %llu\n",
                    (unsigned long long)st.capacity, (unsigned long long)st.used,
                    (unsigned long long)st.peak, (unsigned long long)st.blocks,
                    (unsigned long long)st.n_push, (unsigned long long)st.n_pop,
                    (unsigned long long)st.n_rollback, (unsigned long long)st.n_failed);
    return n < 0 ? mk__os_fail(errno) : MK_OK;
}
