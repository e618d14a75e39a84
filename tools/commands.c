/*
 * The memkit CLI's commands, on top of the public shm.h API.
 *
 * The CLI opens every segment with MK_SHM_OBSERVE: it takes no slot in the
 * process table, so inspecting a segment never changes what `stat` shows,
 * and closing never removes a segment. Everything that walks the segment
 * runs under the segment's lock (the library takes it), so results are
 * collected into private memory first and printed after the lock is
 * released: a slow terminal or a full pipe never stalls the processes that
 * use the segment.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "memkit/shm.h"

/* ---- names and opening ---------------------------------------------------- */

/* A NAME is a file path if it has a '/' after its first character;
 * otherwise a shared-memory name, given with or without its leading '/'. */
typedef struct seg_name {
    char name[MK_SHM_NAME_MAX + 2];
    unsigned flags; /* MK_SHM_FILE or 0 */
} seg_name;

static int parse_name(const char *cmd, const char *arg, seg_name *out) {
    size_t len = strlen(arg);
    out->flags = strchr(arg + 1, '/') ? MK_SHM_FILE : 0;
    if (out->flags || arg[0] == '/') {
        if (len > MK_SHM_NAME_MAX) goto too_long;
        memcpy(out->name, arg, len + 1);
    } else {
        if (len + 1 > MK_SHM_NAME_MAX) goto too_long;
        out->name[0] = '/';
        memcpy(out->name + 1, arg, len + 1);
    }
    return EXIT_OK_;
too_long:
    cli_err(cmd, "name too long (at most %d bytes): %.40s...", MK_SHM_NAME_MAX, arg);
    return EXIT_USAGE;
}

static const char *open_hint(int rc) {
    switch (rc) {
    case MK_ENOENT:
        return "no such segment";
    case MK_EBADMAGIC:
        return "not a memkit segment";
    case MK_EVERSION:
        return "a memkit segment of another layout version";
    case MK_ELAYOUT:
        return "a memkit segment written by a build with another layout";
    case MK_ETRUNCATED:
        return "truncated: smaller than its header says (or than any header)";
    case MK_ECORRUPT:
        return "damaged: metadata failed a consistency check (see memkit validate)";
    case MK_ENOTRECOVERABLE:
        return "damaged beyond repair: an earlier crash repair failed";
    case MK_EPERM:
        return "permission denied";
    case MK_EBUSY:
        return "busy: still being created, or its process table is full";
    default:
        return NULL;
    }
}

/* Report a library error for NAME and return the exit code. */
static int report(const char *cmd, const seg_name *n, const char *what, int rc) {
    const char *hint = open_hint(rc);
    if (rc == MK_EOS) {
        cli_err(cmd, "%s: %s: %s (%s)", n->name, what, mk_strerror(rc),
                strerror(mk_last_os_error()));
    } else if (hint) {
        cli_err(cmd, "%s: %s", n->name, hint);
    } else {
        cli_err(cmd, "%s: %s: %s", n->name, what, mk_strerror(rc));
    }
    int code = cli_exit_for(rc);
    return code == EXIT_USAGE ? EXIT_OTHER : code; /* the command line was fine */
}

static int open_failed(const char *cmd, const seg_name *n, int rc);

static int open_seg(const char *cmd, const cli_opts *o, seg_name *n, mk_shm **s) {
    int code = parse_name(cmd, o->name, n);
    if (code != EXIT_OK_) return code;
    int rc = mk_shm_open(n->name, n->flags | MK_SHM_OBSERVE, s);
    if (rc != MK_OK) return open_failed(cmd, n, rc);
    return EXIT_OK_;
}

/* open's only arguments from the user are the name: MK_EINVAL means a name
 * that POSIX shared memory does not accept, a usage error. */
static int open_failed(const char *cmd, const seg_name *n, int rc) {
    if (rc == MK_EINVAL) {
        cli_err(cmd, "%s: not a valid segment name (\"name\" or \"/name\", or a file path)",
                n->name);
        return EXIT_USAGE;
    }
    return report(cmd, n, "cannot open", rc);
}

/* ---- formatting ------------------------------------------------------------ */

static const char *human(uint64_t v, char *buf, size_t cap) {
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double d = (double)v;
    int u = 0;
    while (d >= 1024 && u < 4) {
        d /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, cap, "%" PRIu64 " B", v);
    else
        snprintf(buf, cap, "%.1f %s", d, unit[u]);
    return buf;
}

/* Copy a name from the segment into buf for a terminal: control bytes,
 * backslash and bytes that are not valid UTF-8 become \xNN, so that a
 * damaged or hostile segment cannot send escape sequences to the terminal. */
static const char *safe_name(const char *name, char *buf, size_t cap) {
    const unsigned char *p = (const unsigned char *)name;
    size_t o = 0, n = strlen(name);
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned c = p[i];
        size_t len = c >= 0xf0 && c < 0xf5   ? 4
                     : c >= 0xe0 && c < 0xf0 ? 3
                     : c >= 0xc2 && c < 0xe0 ? 2
                                             : 0;
        bool ok = len > 0 && i + len <= n && o + len < cap;
        for (size_t k = 1; ok && k < len; k++) ok = (p[i + k] & 0xc0) == 0x80;
        if (ok) {
            memcpy(buf + o, p + i, len);
            o += len;
            i += len - 1;
        } else if (c < 0x20 || c >= 0x7f || c == '\\') {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o] = '\0';
    return buf;
}

/* Wall-clock time at which a process started, from its start time in clock
 * ticks since boot (what the library records, from /proc/PID/stat) and the
 * boot time in /proc/stat. 0 when unknown. */
static time_t wall_start(uint64_t ticks) {
    static long long btime = -1;
    if (btime < 0) {
        btime = 0;
        FILE *f = fopen("/proc/stat", "r");
        char line[256];
        while (f && fgets(line, sizeof line, f))
            if (sscanf(line, "btime %lld", &btime) == 1) break;
        if (f) fclose(f);
    }
    long hz = sysconf(_SC_CLK_TCK);
    if (btime <= 0 || hz <= 0) return 0;
    return (time_t)(btime + (long long)(ticks / (uint64_t)hz));
}

static const char *fmt_time(time_t t, char *buf, size_t cap) {
    struct tm tm;
    if (t == 0 || !localtime_r(&t, &tm) || !strftime(buf, cap, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(buf, cap, "?");
    return buf;
}

static void json_stats(jw *w, const char *key, const mk_stats *st) {
    jw_obj_begin(w, key);
    jw_u64(w, "capacity", st->capacity);
    jw_u64(w, "bytes_used", st->bytes_used);
    jw_u64(w, "bytes_free", st->bytes_free);
    jw_u64(w, "blocks_used", st->blocks_used);
    jw_u64(w, "blocks_free", st->blocks_free);
    jw_u64(w, "peak_used", st->peak_used);
    jw_u64(w, "n_alloc", st->n_alloc);
    jw_u64(w, "n_free", st->n_free);
    jw_u64(w, "n_realloc", st->n_realloc);
    jw_u64(w, "n_failed", st->n_failed);
    jw_u64(w, "largest_free", st->largest_free);
    jw_u64(w, "overhead", st->overhead);
    jw_double(w, "fragmentation", st->fragmentation);
    jw_obj_end(w);
}

static const char *policy_name(mk_policy p) {
    const char *n = mk_policy_name(p);
    return n ? n : "unknown";
}

/* ---- ls ----------------------------------------------------------------------- */

typedef struct name_list {
    char **v;
    size_t n, cap;
    bool oom;
} name_list;

static void collect_name(const char *name, void *arg) {
    name_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->oom = true;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) {
        l->oom = true;
        return;
    }
    l->v[l->n++] = copy;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int cmd_ls(const cli_opts *o) {
    name_list l = {0};
    int rc = mk_shm_list(collect_name, &l);
    if (rc != MK_OK || l.oom) {
        cli_err("ls", "cannot list segments: %s", l.oom ? "out of memory" : mk_strerror(rc));
        for (size_t i = 0; i < l.n; i++) free(l.v[i]);
        free(l.v);
        return EXIT_OTHER;
    }
    if (l.n) qsort(l.v, l.n, sizeof *l.v, cmp_str);
    jw w;
    if (o->json) {
        jw_init(&w, stdout);
        jw_obj_begin(&w, NULL);
        jw_arr_begin(&w, "segments");
    } else if (l.n) {
        printf("%-24s %-6s %10s %10s %5s %8s %7s\n", "NAME", "POLICY", "SIZE", "MAX", "PROCS",
               "OBJECTS", "USED");
    } else {
        printf("no memkit segments\n");
    }
    char sbuf[4 * MK_SHM_NAME_MAX + 8];
    for (size_t i = 0; i < l.n; i++) {
        char name[MK_SHM_NAME_MAX + 2];
        snprintf(name, sizeof name, "%s%s", l.v[i][0] == '/' ? "" : "/", l.v[i]);
        mk_shm *s;
        mk_shm_info info;
        mk_stats st;
        rc = mk_shm_open(name, MK_SHM_OBSERVE, &s);
        if (rc == MK_OK) {
            rc = mk_shm_get_info(s, &info);
            if (rc == MK_OK) rc = mk_shm_stats(s, &st);
            mk_shm_close(s);
        }
        if (o->json) {
            jw_obj_begin(&w, NULL);
            jw_str(&w, "name", name);
            if (rc == MK_OK) {
                jw_str(&w, "policy", policy_name(info.policy));
                jw_u64(&w, "size", info.size);
                jw_u64(&w, "max_size", info.max_size);
                jw_u64(&w, "attached", info.attached);
                jw_u64(&w, "objects", info.objects);
                jw_u64(&w, "bytes_used", st.bytes_used);
                jw_u64(&w, "creator_pid", info.creator_pid);
            } else {
                jw_str(&w, "error", mk_strerror(rc));
            }
            jw_obj_end(&w);
        } else if (rc == MK_OK) {
            char a[32], b[32], c[32];
            printf("%-24s %-6s %10s %10s %5" PRIu32 " %8" PRIu32 " %7s\n",
                   safe_name(name, sbuf, sizeof sbuf), policy_name(info.policy),
                   human(info.size, a, sizeof a), human(info.max_size, b, sizeof b), info.attached,
                   info.objects, human(st.bytes_used, c, sizeof c));
        } else {
            printf("%-24s (cannot open: %s)\n", safe_name(name, sbuf, sizeof sbuf),
                   mk_strerror(rc));
        }
        free(l.v[i]);
    }
    free(l.v);
    if (o->json) {
        jw_arr_end(&w);
        jw_obj_end(&w);
        jw_finish(&w);
    }
    return EXIT_OK_;
}

/* ---- stat ----------------------------------------------------------------------- */

int cmd_stat(const cli_opts *o) {
    seg_name n;
    mk_shm *s;
    int code = open_seg("stat", o, &n, &s);
    if (code != EXIT_OK_) return code;
    mk_shm_info info;
    mk_stats st;
    mk_shm_proc procs[MK_SHM_MAX_PROCS];
    size_t np = 0;
    int rc = mk_shm_get_info(s, &info);
    if (rc == MK_OK) rc = mk_shm_stats(s, &st);
    if (rc == MK_OK) rc = mk_shm_procs(s, procs, MK_SHM_MAX_PROCS, &np);
    mk_shm_close(s);
    if (rc != MK_OK) return report("stat", &n, "cannot read the segment", rc);
    if (np > MK_SHM_MAX_PROCS) np = MK_SHM_MAX_PROCS;
    const bool remove_last = (info.flags & MK_SHM_REMOVE_ON_LAST_CLOSE) != 0;
    char tbuf[64];

    if (o->json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj_begin(&w, NULL);
        jw_str(&w, "name", n.name);
        jw_str(&w, "backing", (n.flags & MK_SHM_FILE) ? "file" : "shm");
        jw_str(&w, "policy", policy_name(info.policy));
        jw_u64(&w, "size", info.size);
        jw_u64(&w, "max_size", info.max_size);
        jw_bool(&w, "remove_on_last_close", remove_last);
        jw_u64(&w, "attached", info.attached);
        jw_u64(&w, "objects", info.objects);
        jw_u64(&w, "creator_pid", info.creator_pid);
        jw_u64(&w, "generation", info.generation);
        jw_u64(&w, "cache_budget", info.cache_bytes);
        jw_u64(&w, "cached_blocks", info.cached_blocks);
        jw_u64(&w, "cached_bytes", info.cached_bytes);
        json_stats(&w, "stats", &st);
        jw_arr_begin(&w, "processes");
        for (size_t i = 0; i < np; i++) {
            jw_obj_begin(&w, NULL);
            jw_u64(&w, "slot", procs[i].slot);
            jw_u64(&w, "pid", procs[i].pid);
            jw_u64(&w, "start_time", procs[i].start_time);
            time_t t = wall_start(procs[i].start_time);
            if (t)
                jw_str(&w, "started", fmt_time(t, tbuf, sizeof tbuf));
            else
                jw_null(&w, "started");
            jw_u64(&w, "generation", procs[i].generation);
            jw_bool(&w, "alive", procs[i].alive != 0);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_obj_end(&w);
        jw_finish(&w);
        return EXIT_OK_;
    }

    char a[32], b[32];
    printf("segment        %s (%s)\n", n.name,
           (n.flags & MK_SHM_FILE) ? "file-backed" : "shared memory");
    printf("policy         %s\n", policy_name(info.policy));
    printf("size           %s (%" PRIu64 " bytes), max %s (%" PRIu64 " bytes)\n",
           human(info.size, a, sizeof a), info.size, human(info.max_size, b, sizeof b),
           info.max_size);
    printf("on last close  %s\n", remove_last ? "remove the segment" : "keep the segment");
    printf("attached       %" PRIu32 " process%s (attaches since creation: %" PRIu64
           "), creator pid %" PRIu64 "\n",
           info.attached, info.attached == 1 ? "" : "es", info.generation, info.creator_pid);
    printf("objects        %" PRIu32 " named object%s\n", info.objects,
           info.objects == 1 ? "" : "s");
    if (info.cache_bytes)
        printf("caches         %" PRIu64 " blocks, %s held (budget %s per process)\n",
               info.cached_blocks, human(info.cached_bytes, a, sizeof a),
               human(info.cache_bytes, b, sizeof b));
    else
        printf("caches         off\n");
    printf("\nheap\n");
    printf("  capacity       %s\n", human(st.capacity, a, sizeof a));
    printf("  used           %s in %" PRIu64 " blocks (peak %s)\n",
           human(st.bytes_used, a, sizeof a), st.blocks_used, human(st.peak_used, b, sizeof b));
    printf("  free           %s in %" PRIu64 " blocks (largest %s)\n",
           human(st.bytes_free, a, sizeof a), st.blocks_free, human(st.largest_free, b, sizeof b));
    printf("  overhead       %s\n", human(st.overhead, a, sizeof a));
    printf("  fragmentation  %.3f\n", st.fragmentation);
    printf("  operations     %" PRIu64 " alloc, %" PRIu64 " free, %" PRIu64 " realloc, %" PRIu64
           " failed\n",
           st.n_alloc, st.n_free, st.n_realloc, st.n_failed);
    printf("\nprocesses\n");
    if (np == 0)
        printf("  (none attached)\n");
    else
        printf("  %-4s %-8s %-20s %-12s %s\n", "SLOT", "PID", "STARTED", "START_TIME", "STATE");
    for (size_t i = 0; i < np; i++)
        printf("  %-4" PRIu32 " %-8" PRIu64 " %-20s %-12" PRIu64 " %s\n", procs[i].slot,
               procs[i].pid, fmt_time(wall_start(procs[i].start_time), tbuf, sizeof tbuf),
               procs[i].start_time,
               procs[i].alive ? "alive" : "dead (memkit reclaim frees its blocks)");
    return EXIT_OK_;
}

/* ---- validate --------------------------------------------------------------------- */

static void print_verdict(const cli_opts *o, const seg_name *n, int rc, const mk_fault *f,
                          const mk_stats *st) {
    if (o->json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj_begin(&w, NULL);
        jw_str(&w, "name", n->name);
        jw_bool(&w, "valid", rc == MK_OK);
        if (rc != MK_OK) {
            jw_str(&w, "error", mk_strerror(rc));
            jw_i64(&w, "code", rc);
            jw_str(&w, "invariant", f && f->invariant ? f->invariant : NULL);
            jw_u64(&w, "offset", f ? f->offset : 0);
        } else if (st) {
            jw_u64(&w, "blocks_used", st->blocks_used);
            jw_u64(&w, "blocks_free", st->blocks_free);
            jw_u64(&w, "bytes_used", st->bytes_used);
        }
        jw_obj_end(&w);
        jw_finish(&w);
    } else if (rc == MK_OK) {
        printf("%s: ok", n->name);
        if (st)
            printf(" (%" PRIu64 " blocks in use, %" PRIu64 " free)", st->blocks_used,
                   st->blocks_free);
        printf("\n");
    } else {
        printf("%s: DAMAGED: %s\n", n->name, mk_strerror(rc));
        printf("  invariant: %s\n", f && f->invariant ? f->invariant : "(not named)");
        printf("  offset:    %" PRIu64 " (0x%" PRIx64 ")\n", f ? f->offset : 0, f ? f->offset : 0);
    }
}

static bool is_damage(int rc) { return rc == MK_ECORRUPT || rc == MK_ENOTRECOVERABLE; }

int cmd_validate(const cli_opts *o) {
    seg_name n;
    if (parse_name("validate", o->name, &n) != EXIT_OK_) return EXIT_USAGE;
    mk_shm *s;
    mk_fault f = {0};
    int rc = mk_shm_open(n.name, n.flags | MK_SHM_OBSERVE, &s);
    if (rc != MK_OK) {
        if (!is_damage(rc)) return open_failed("validate", &n, rc);
        /* The header is there but its metadata is out of bounds: that is a
         * verdict, not a failure to run. */
        f.code = rc;
        f.invariant = "segment header fields within bounds (checked by open)";
        print_verdict(o, &n, rc, &f, NULL);
        return EXIT_DAMAGED;
    }
    rc = mk_shm_validate(s, &f);
    mk_stats st;
    bool have_stats = rc == MK_OK && mk_shm_stats(s, &st) == MK_OK;
    mk_shm_close(s);
    /* A fault names an invariant; an error without one (lock, OS) means the
     * check could not run, which is not a verdict. */
    if (rc != MK_OK && !is_damage(rc) && f.invariant == NULL)
        return report("validate", &n, "cannot validate", rc);
    print_verdict(o, &n, rc, &f, have_stats ? &st : NULL);
    if (rc != MK_OK)
        cli_err("validate", "%s is damaged: %s at offset %" PRIu64, n.name,
                f.invariant ? f.invariant : mk_strerror(rc), f.offset);
    return rc == MK_OK ? EXIT_OK_ : EXIT_DAMAGED;
}

/* ---- dump ----------------------------------------------------------------------------- */

typedef struct block_list {
    mk_shm_block *v;
    size_t n, cap;
    bool oom;
} block_list;

static int collect_block(const mk_shm_block *b, void *arg) {
    block_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        mk_shm_block *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->oom = true;
            return 1;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *b;
    return 0;
}

int cmd_dump(const cli_opts *o) {
    seg_name n;
    mk_shm *s;
    int code = open_seg("dump", o, &n, &s);
    if (code != EXIT_OK_) return code;
    block_list l = {0};
    int rc = mk_shm_walk(s, collect_block, &l);
    mk_shm_close(s);
    if (l.oom) {
        cli_err("dump", "out of memory");
        free(l.v);
        return EXIT_OTHER;
    }
    if (rc < 0 && !is_damage(rc)) {
        free(l.v);
        return report("dump", &n, "cannot walk the heap", rc);
    }
    uint64_t used = 0, free_ = 0, nused = 0;
    for (size_t i = 0; i < l.n; i++) {
        if (l.v[i].info.used) {
            used += l.v[i].info.span;
            nused++;
        } else {
            free_ += l.v[i].info.span;
        }
    }
    if (o->json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj_begin(&w, NULL);
        jw_str(&w, "name", n.name);
        jw_bool(&w, "complete", rc >= 0);
        if (rc < 0) jw_str(&w, "error", mk_strerror(rc));
        jw_arr_begin(&w, "blocks");
        for (size_t i = 0; i < l.n; i++) {
            const mk_shm_block *b = &l.v[i];
            jw_obj_begin(&w, NULL);
            jw_u64(&w, "offset", b->info.offset);
            jw_u64(&w, "size", b->info.size);
            jw_u64(&w, "span", b->info.span);
            jw_str(&w, "state", b->info.used ? "used" : "free");
            jw_str(&w, "kind", mk_shm_block_kind_name(b->kind));
            if (b->kind == MK_SHM_BLOCK_OWNED) {
                jw_u64(&w, "owner_slot", b->owner_slot);
                jw_u64(&w, "owner_generation", b->owner_gen);
            }
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_obj_begin(&w, "totals");
        jw_u64(&w, "blocks", l.n);
        jw_u64(&w, "blocks_used", nused);
        jw_u64(&w, "blocks_free", l.n - nused);
        jw_u64(&w, "span_used", used);
        jw_u64(&w, "span_free", free_);
        jw_obj_end(&w);
        jw_obj_end(&w);
        jw_finish(&w);
    } else {
        printf("%-14s %-12s %-12s %-5s %-7s %s\n", "OFFSET", "SIZE", "SPAN", "STATE", "KIND",
               "OWNER");
        for (size_t i = 0; i < l.n; i++) {
            const mk_shm_block *b = &l.v[i];
            printf("%-14" PRIu64 " %-12" PRIu64 " %-12" PRIu64 " %-5s %-7s", b->info.offset,
                   b->info.size, b->info.span, b->info.used ? "used" : "free",
                   mk_shm_block_kind_name(b->kind));
            if (b->kind == MK_SHM_BLOCK_OWNED)
                printf(" slot %" PRIu32 " gen %" PRIu64, b->owner_slot, b->owner_gen);
            printf("\n");
        }
        char a[32], c[32];
        printf("%zu blocks: %" PRIu64 " used (%s), %zu free (%s)%s\n", l.n, nused,
               human(used, a, sizeof a), (size_t)(l.n - nused), human(free_, c, sizeof c),
               rc < 0 ? " before the walk stopped at damage" : "");
    }
    free(l.v);
    if (rc < 0) {
        cli_err("dump", "%s: the walk stopped early: %s (run memkit validate %s)", n.name,
                mk_strerror(rc), o->name);
        return EXIT_DAMAGED;
    }
    return EXIT_OK_;
}

/* ---- objects ----------------------------------------------------------------------------- */

typedef struct obj_list {
    mk_shm_obj *v;
    size_t n, cap;
    bool oom;
} obj_list;

static int collect_obj(const mk_shm_obj *ob, void *arg) {
    obj_list *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        mk_shm_obj *v = realloc(l->v, cap * sizeof *v);
        if (!v) {
            l->oom = true;
            return 1;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *ob;
    return 0;
}

static int cmp_obj(const void *a, const void *b) {
    return strcmp(((const mk_shm_obj *)a)->name, ((const mk_shm_obj *)b)->name);
}

int cmd_objects(const cli_opts *o) {
    seg_name n;
    mk_shm *s;
    int code = open_seg("objects", o, &n, &s);
    if (code != EXIT_OK_) return code;
    obj_list l = {0};
    int rc = mk_shm_obj_iter(s, collect_obj, &l);
    mk_shm_close(s);
    if (l.oom) {
        cli_err("objects", "out of memory");
        free(l.v);
        return EXIT_OTHER;
    }
    if (rc < 0) {
        free(l.v);
        return report("objects", &n, "cannot read the directory", rc);
    }
    if (l.n) qsort(l.v, l.n, sizeof *l.v, cmp_obj);
    if (o->json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj_begin(&w, NULL);
        jw_str(&w, "name", n.name);
        jw_arr_begin(&w, "objects");
        for (size_t i = 0; i < l.n; i++) {
            jw_obj_begin(&w, NULL);
            jw_str(&w, "name", l.v[i].name);
            jw_u64(&w, "type", l.v[i].type);
            jw_u64(&w, "offset", l.v[i].offset);
            jw_u64(&w, "size", l.v[i].size);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_obj_end(&w);
        jw_finish(&w);
    } else if (l.n == 0) {
        printf("%s: no named objects\n", n.name);
    } else {
        char sbuf[4 * MK_SHM_OBJ_NAME_MAX + 8];
        printf("%-40s %-10s %-14s %s\n", "NAME", "TYPE", "OFFSET", "SIZE");
        for (size_t i = 0; i < l.n; i++)
            printf("%-40s 0x%08" PRIx32 " %-14" PRIu64 " %" PRIu64 "\n",
                   safe_name(l.v[i].name, sbuf, sizeof sbuf), l.v[i].type, l.v[i].offset,
                   l.v[i].size);
        printf("%zu object%s\n", l.n, l.n == 1 ? "" : "s");
    }
    free(l.v);
    return EXIT_OK_;
}

/* ---- reclaim --------------------------------------------------------------------------------- */

int cmd_reclaim(const cli_opts *o) {
    seg_name n;
    mk_shm *s;
    int code = open_seg("reclaim", o, &n, &s);
    if (code != EXIT_OK_) return code;
    /* The dead processes before reclaiming, to say whose blocks were freed. */
    mk_shm_proc procs[MK_SHM_MAX_PROCS];
    size_t np = 0;
    uint64_t blocks = 0, bytes = 0;
    int rc = mk_shm_procs(s, procs, MK_SHM_MAX_PROCS, &np);
    if (rc == MK_OK) rc = mk_shm_reclaim(s, &blocks, &bytes);
    mk_shm_close(s);
    if (rc != MK_OK) return report("reclaim", &n, "cannot reclaim", rc);
    if (np > MK_SHM_MAX_PROCS) np = MK_SHM_MAX_PROCS;
    size_t ndead = 0;
    for (size_t i = 0; i < np; i++) ndead += !procs[i].alive;
    if (o->json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj_begin(&w, NULL);
        jw_str(&w, "name", n.name);
        jw_u64(&w, "blocks", blocks);
        jw_u64(&w, "bytes", bytes);
        jw_arr_begin(&w, "dead_processes");
        for (size_t i = 0; i < np; i++) {
            if (procs[i].alive) continue;
            jw_obj_begin(&w, NULL);
            jw_u64(&w, "pid", procs[i].pid);
            jw_u64(&w, "start_time", procs[i].start_time);
            jw_obj_end(&w);
        }
        jw_arr_end(&w);
        jw_obj_end(&w);
        jw_finish(&w);
    } else {
        char a[32];
        printf("%s: reclaimed %" PRIu64 " block%s (%s)", n.name, blocks, blocks == 1 ? "" : "s",
               human(bytes, a, sizeof a));
        if (ndead) {
            printf(" of %zu dead process%s (pid", ndead, ndead == 1 ? "" : "es");
            for (size_t i = 0; i < np; i++)
                if (!procs[i].alive) printf(" %" PRIu64, procs[i].pid);
            printf(")");
        }
        printf("\n");
    }
    return EXIT_OK_;
}

/* ---- rm ---------------------------------------------------------------------------------------
 */

int cmd_rm(const cli_opts *o) {
    seg_name n;
    int code = parse_name("rm", o->name, &n);
    if (code != EXIT_OK_) return code;
    /* Check that it is a memkit segment first, so that a typo cannot remove
     * some other program's shared memory. */
    mk_shm *s;
    int rc = mk_shm_open(n.name, n.flags | MK_SHM_OBSERVE, &s);
    if (rc == MK_OK) {
        mk_shm_close(s);
    } else if (rc == MK_ENOENT || rc == MK_EINVAL || !o->force) {
        code = open_failed("rm", &n, rc);
        if (rc != MK_ENOENT) cli_err("rm", "use --force to remove it anyway");
        return code;
    }
    rc = mk_shm_unlink(n.name, n.flags);
    if (rc != MK_OK) return report("rm", &n, "cannot remove", rc);
    if (o->json) {
        jw w;
        jw_init(&w, stdout);
        jw_obj_begin(&w, NULL);
        jw_str(&w, "name", n.name);
        jw_bool(&w, "removed", true);
        jw_obj_end(&w);
        jw_finish(&w);
    } else if (o->verbose) {
        printf("%s: removed\n", n.name);
    }
    return EXIT_OK_;
}
