/*
 * replay: the recorded allocation traces of real programs
 * (/work/shared/traces: python compiling its standard library, gcc's cc1).
 *
 * `prep` turns a text trace (xz or plain; `m ID SIZE`, `a ID ALIGN SIZE`,
 * `r OLD NEW SIZE`, `f ID`) into a compact file of 8-byte operations on
 * dense slots (block IDs are never reused, slots are: a dead block's slot
 * goes to the next new block), so that the replay itself does no parsing and
 * indexes a small array. `replay` reads that file in chunks into a static
 * buffer (the operations never touch the allocator under test and add only
 * a fixed 512 KiB to the resident set), performs each operation with the C
 * library's functions, stamps every new block and checks it when it is
 * freed or reallocated. Blocks the program never freed stay allocated.
 *
 * File: header {char magic[8] = "MKOPS1"; uint64 ops; uint64 slots;}, then
 * ops {uint32 kind << 28 | slot; uint32 size}. An aligned allocation is
 * followed by an OP_EXTRA op whose size field is the alignment.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "workload.h"

enum { OP_MALLOC, OP_FREE, OP_REALLOC, OP_REALLOC_NULL, OP_REALLOC_ZERO, OP_ALIGNED, OP_EXTRA };

#define SLOT_MASK 0x0fffffffu
#define NO_SLOT   0xffffffffu
#define CHUNK_OPS 65536

typedef struct {
    uint32_t word; /* kind << 28 | slot */
    uint32_t size;
} trace_op;

typedef struct {
    char magic[8];
    uint64_t ops, slots;
} trace_header;

/* ---- prep: text trace to operations on slots ------------------------------------ */

typedef struct {
    uint32_t *slot_of_id; /* block ID -> slot, NO_SLOT when dead or unknown */
    size_t ids;
    uint32_t *free_slots;
    size_t n_free, cap_free;
    uint32_t next_slot;
    FILE *out;
    uint64_t ops;
} prep_state;

static uint32_t *slot_entry(prep_state *st, uint64_t id) {
    if (id >= st->ids) {
        size_t n = st->ids ? st->ids : 1 << 16;
        while (n <= id) n *= 2;
        st->slot_of_id = realloc(st->slot_of_id, n * sizeof *st->slot_of_id);
        if (!st->slot_of_id) wl_die("out of memory", NULL);
        memset(st->slot_of_id + st->ids, 0xff, (n - st->ids) * sizeof *st->slot_of_id);
        st->ids = n;
    }
    return &st->slot_of_id[id];
}

static uint32_t new_slot(prep_state *st, uint64_t id) {
    uint32_t s = st->n_free ? st->free_slots[--st->n_free] : st->next_slot++;
    if (s > SLOT_MASK) wl_die("trace has too many live blocks", NULL);
    *slot_entry(st, id) = s;
    return s;
}

static void kill_slot(prep_state *st, uint64_t id) {
    uint32_t *e = slot_entry(st, id);
    if (st->n_free == st->cap_free) {
        st->cap_free = st->cap_free ? st->cap_free * 2 : 4096;
        st->free_slots = realloc(st->free_slots, st->cap_free * sizeof *st->free_slots);
        if (!st->free_slots) wl_die("out of memory", NULL);
    }
    st->free_slots[st->n_free++] = *e;
    *e = NO_SLOT;
}

static void emit(prep_state *st, int kind, uint32_t slot, uint64_t size) {
    if (size > 0xffffffffu) wl_die("trace block too large", NULL);
    trace_op op = {(uint32_t)kind << 28 | slot, (uint32_t)size};
    if (fwrite(&op, sizeof op, 1, st->out) != 1) wl_die("write failed", NULL);
    st->ops++;
}

static void prep_realloc(prep_state *st, uint64_t old_id, uint64_t new_id, uint64_t size) {
    uint32_t old = old_id ? *slot_entry(st, old_id) : NO_SLOT;
    if (old == NO_SLOT) { /* realloc(NULL, size), or of a block from before the trace */
        if (new_id) emit(st, OP_REALLOC_NULL, new_slot(st, new_id), size);
    } else if (!new_id) { /* realloc to 0 freed the block */
        emit(st, OP_REALLOC_ZERO, old, 0);
        kill_slot(st, old_id);
    } else {
        emit(st, OP_REALLOC, old, size);
        *slot_entry(st, old_id) = NO_SLOT;
        *slot_entry(st, new_id) = old;
    }
}

static void prep_line(prep_state *st, const char *line) {
    unsigned long long a = 0, b = 0, c = 0;
    switch (line[0]) {
    case 'm':
        if (sscanf(line + 1, "%llu %llu", &a, &b) != 2) break;
        emit(st, OP_MALLOC, new_slot(st, a), b);
        return;
    case 'a':
        if (sscanf(line + 1, "%llu %llu %llu", &a, &b, &c) != 3) break;
        emit(st, OP_ALIGNED, new_slot(st, a), c);
        emit(st, OP_EXTRA, 0, b);
        return;
    case 'r':
        if (sscanf(line + 1, "%llu %llu %llu", &a, &b, &c) != 3) break;
        prep_realloc(st, a, b, c);
        return;
    case 'f':
        if (sscanf(line + 1, "%llu", &a) != 1) break;
        if (*slot_entry(st, a) == NO_SLOT) return; /* freed a block from before the trace */
        emit(st, OP_FREE, *slot_entry(st, a), 0);
        kill_slot(st, a);
        return;
    }
    wl_die("bad trace line", line);
}

static FILE *open_trace(const char *path, int *is_pipe) {
    size_t n = strlen(path);
    *is_pipe = n > 3 && !strcmp(path + n - 3, ".xz");
    if (!*is_pipe) return fopen(path, "r");
    char cmd[4096];
    if (strchr(path, '\'')) wl_die("quote in trace path", path);
    snprintf(cmd, sizeof cmd, "xz -dc '%s'", path);
    return popen(cmd, "r");
}

int wl_prep_trace(const wl_options *opts) {
    if (!opts->file || !opts->out) wl_die("prep needs --file TRACE and --out FILE", NULL);
    int is_pipe;
    FILE *in = open_trace(opts->file, &is_pipe);
    prep_state st = {.out = fopen(opts->out, "wb")};
    if (!in || !st.out) wl_die("cannot open", in ? opts->out : opts->file);
    trace_header h = {.magic = "MKOPS1"};
    fwrite(&h, sizeof h, 1, st.out);
    char line[256];
    while (fgets(line, sizeof line, in)) prep_line(&st, line);
    if ((is_pipe ? pclose(in) : fclose(in)) != 0) wl_die("reading the trace failed", opts->file);
    h.ops = st.ops;
    h.slots = st.next_slot;
    if (fseek(st.out, 0, SEEK_SET) || fwrite(&h, sizeof h, 1, st.out) != 1 || fclose(st.out))
        wl_die("write failed", opts->out);
    printf("ops=%llu slots=%llu\n", (unsigned long long)h.ops, (unsigned long long)h.slots);
    return 0;
}

/* ---- replay ---------------------------------------------------------------- */

typedef struct {
    void **p;
    uint32_t *size;
    uint64_t *tag;
    uint64_t next_tag, checksum;
} replay_state;

static trace_op chunk[CHUNK_OPS];

/* Slot arrays come straight from mmap: they are the benchmark's, not the
 * replayed program's, and must look the same under every allocator. */
static void *map_zeroed(size_t bytes) {
    void *p =
        mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) wl_die("mmap failed", NULL);
    return p;
}

static void adopt(replay_state *st, uint32_t slot, void *p, uint32_t size) {
    if (!p && size) wl_die("out of memory", NULL);
    st->p[slot] = p;
    st->size[slot] = size;
    st->tag[slot] = ++st->next_tag;
    if (p) wl_stamp(p, size, st->tag[slot]);
}

static void release(replay_state *st, uint32_t slot) {
    if (st->p[slot]) st->checksum += wl_check(st->p[slot], st->size[slot], st->tag[slot], "replay");
    free(st->p[slot]);
    st->p[slot] = NULL;
}

static void do_realloc(replay_state *st, uint32_t slot, uint32_t size) {
    void *old = st->p[slot];
    void *p = realloc(old, size ? size : 1);
    if (!p) wl_die("out of memory", NULL);
    if (old) st->checksum += wl_check_head(p, st->size[slot], size, st->tag[slot], "replay");
    adopt(st, slot, p, size);
}

static void do_aligned(replay_state *st, uint32_t slot, uint32_t size, uint32_t align) {
    void *p = NULL;
    if (align < sizeof(void *)) align = sizeof(void *);
    if (posix_memalign(&p, align, size)) wl_die("posix_memalign failed", NULL);
    if ((uintptr_t)p % align) wl_die("posix_memalign returned a misaligned block", NULL);
    adopt(st, slot, p, size);
}

/* Returns how many ops were consumed (2 for an aligned allocation). */
static size_t replay_op(replay_state *st, const trace_op *op, size_t left) {
    uint32_t slot = op->word & SLOT_MASK;
    switch (op->word >> 28) {
    case OP_MALLOC:
        adopt(st, slot, malloc(op->size), op->size);
        return 1;
    case OP_FREE:
        release(st, slot);
        return 1;
    case OP_REALLOC:
    case OP_REALLOC_NULL:
        do_realloc(st, slot, op->size);
        return 1;
    case OP_REALLOC_ZERO:
        release(st, slot);
        return 1;
    case OP_ALIGNED:
        if (left < 2) wl_die("aligned op split across chunks", NULL);
        do_aligned(st, slot, op->size, op[1].size);
        return 2;
    }
    wl_die("bad op in prepared trace", NULL);
    return 1;
}

static size_t read_chunk(int fd, size_t carry) {
    char *buf = (char *)(chunk + carry);
    size_t want = (CHUNK_OPS - carry) * sizeof(trace_op), got = 0;
    while (got < want) {
        ssize_t n = read(fd, buf + got, want - got);
        if (n < 0) wl_die("read failed", NULL);
        if (n == 0) break;
        got += (size_t)n;
    }
    return carry + got / sizeof(trace_op);
}

/* Frees what the program left allocated, so that the next pass starts empty. */
static void release_all(replay_state *st, uint64_t slots) {
    for (uint64_t s = 0; s < slots; s++) release(st, (uint32_t)s);
}

/* One pass over the first `limit` operations of the file. */
static uint64_t replay_pass(replay_state *st, int fd, uint64_t limit) {
    uint64_t done = 0;
    size_t have = 0, pos = 0;
    if (lseek(fd, sizeof(trace_header), SEEK_SET) < 0) wl_die("lseek failed", NULL);
    while (done < limit) {
        if (pos + 1 >= have) { /* keep an aligned op's extra in the same chunk */
            size_t carry = have - pos;
            memmove(chunk, chunk + pos, carry * sizeof(trace_op));
            have = read_chunk(fd, carry);
            pos = 0;
            if (have == 0) break;
        }
        size_t n = replay_op(st, &chunk[pos], have - pos);
        pos += n;
        done += n;
    }
    return done;
}

int wl_replay(const wl_options *opts) {
    trace_header h;
    int fd = opts->file ? open(opts->file, O_RDONLY) : -1;
    if (fd < 0) wl_die("replay needs --file PREPARED-TRACE (from prep)", opts->file);
    if (read(fd, &h, sizeof h) != sizeof h || memcmp(h.magic, "MKOPS1", 7))
        wl_die("not a prepared trace", opts->file);
    replay_state st = {.p = map_zeroed(h.slots * sizeof(void *)),
                       .size = map_zeroed(h.slots * sizeof(uint32_t)),
                       .tag = map_zeroed(h.slots * sizeof(uint64_t))};
    /* --scale < 1 replays a prefix (the same for every allocator); --scale N
     * >= 1 replays the whole trace N times (rounded), freeing the leftovers
     * between passes. */
    uint64_t limit = opts->scale < 1 ? (uint64_t)((double)h.ops * opts->scale) : h.ops;
    long passes = opts->scale < 1 ? 1 : (long)(opts->scale + 0.5);
    uint64_t done = 0;
    for (long p = 0; p < passes; p++) {
        if (p > 0) release_all(&st, h.slots);
        done += replay_pass(&st, fd, limit);
    }
    close(fd);
    printf("replayed_ops=%llu\n", (unsigned long long)done);
    wl_report("replay", st.checksum);
    return 0;
}
