/*
 * Options (MEMKIT_OPTIONS or mk_heap_configure) and the statistics report.
 *
 *   stats | stats=json          print statistics to stderr at exit
 *   source=mmap | source=sbrk   where memory comes from (before the first allocation)
 *   purge_delay=MS              how long free pages stay resident (default 250)
 *   purge_threshold=BYTES[k|m|g] free resident bytes a heap keeps before it purges
 *                                at once (default 8m)
 *
 * Parsing uses no malloc: options are read at the first allocation, when
 * the heap may be the process's only malloc.
 */
#include "heap/heap_int.h"

#include <stdio.h>
#include <string.h>

#include "os/os.h"

static bool parse_u64(const char *s, size_t len, uint64_t *out, bool suffixes) {
    uint64_t v = 0;
    size_t i = 0;
    if (len == 0) return false;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10) return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (i == 0) return false;
    if (i < len && suffixes && i + 1 == len) {
        unsigned shift = 0;
        switch (s[i]) {
        case 'k':
        case 'K':
            shift = 10;
            break;
        case 'm':
        case 'M':
            shift = 20;
            break;
        case 'g':
        case 'G':
            shift = 30;
            break;
        default:
            return false;
        }
        if (v > (UINT64_MAX >> shift)) return false;
        v <<= shift;
        i++;
    }
    if (i != len) return false;
    *out = v;
    return true;
}

static bool is(const char *s, size_t len, const char *word) {
    return strlen(word) == len && memcmp(s, word, len) == 0;
}

/* Apply one "name" or "name=value". MK_OK, MK_EINVAL, MK_EBUSY. */
static int apply_one(const char *s, size_t len) {
    const char *eq = memchr(s, '=', len);
    size_t nlen = eq ? (size_t)(eq - s) : len;
    const char *v = eq ? eq + 1 : "";
    size_t vlen = eq ? len - nlen - 1 : 0;
    uint64_t n = 0;
    if (is(s, nlen, "stats")) {
        if (!eq || is(v, vlen, "text"))
            atomic_store(&mk__g.print_stats, 1);
        else if (is(v, vlen, "json"))
            atomic_store(&mk__g.print_stats, 2);
        else
            return MK_EINVAL;
        return MK_OK;
    }
    if (is(s, nlen, "source")) {
        int sbrk;
        if (is(v, vlen, "mmap"))
            sbrk = 0;
        else if (is(v, vlen, "sbrk"))
            sbrk = 1;
        else
            return MK_EINVAL;
        if (atomic_load(&mk__g.allocated) && atomic_load(&mk__g.source_sbrk) != sbrk)
            return MK_EBUSY;
        atomic_store(&mk__g.source_sbrk, sbrk);
        return MK_OK;
    }
    if (is(s, nlen, "purge_delay")) {
        if (!parse_u64(v, vlen, &n, false) || n > UINT64_MAX / 1000000) return MK_EINVAL;
        atomic_store(&mk__g.purge_delay_ns, n * 1000000);
        return MK_OK;
    }
    if (is(s, nlen, "purge_threshold")) {
        if (!parse_u64(v, vlen, &n, true)) return MK_EINVAL;
        atomic_store(&mk__g.purge_threshold, n);
        return MK_OK;
    }
    return MK_EINVAL;
}

static void warn(const char *opt, size_t len, int rc) {
    char buf[200];
    int n = snprintf(buf, sizeof buf, "memkit: MEMKIT_OPTIONS: %s '%.*s' ignored\n",
                     rc == MK_EBUSY ? "too late for" : "unknown or invalid option",
                     (int)(len > 100 ? 100 : len), opt);
    if (n > 0) mk__os_write_stderr(buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static int apply_all(const char *opts, bool from_env) {
    int rc = MK_OK;
    const char *p = opts;
    while (*p) {
        const char *end = p;
        while (*end && *end != ',') end++;
        size_t len = (size_t)(end - p);
        while (len && *p == ' ') p++, len--;
        while (len && p[len - 1] == ' ') len--;
        if (len) {
            int r = apply_one(p, len);
            if (r != MK_OK) {
                if (from_env) warn(p, len, r);
                if (rc == MK_OK) rc = r;
            }
        }
        p = *end ? end + 1 : end;
    }
    return rc;
}

void mk__options_load(void) {
    char buf[512];
    if (mk__os_getenv("MEMKIT_OPTIONS", buf, sizeof buf)) (void)apply_all(buf, true);
}

int mk_heap_configure(const char *options) {
    if (options == NULL) return MK_EINVAL;
    mk__init();
    return apply_all(options, false);
}

void mk_heap_set_error_handler(void (*fn)(const char *message, void *ptr)) {
    atomic_store(&mk__g.on_error, fn);
}

int mk_heap_stats_json(const mk_heap_stats *s, char *buf, size_t cap) {
    if (s == NULL || (buf == NULL && cap != 0)) return MK_EINVAL;
    int n = snprintf(buf, cap,
                     "{\"current\":%llu,\"peak\":%llu,\"mapped\":%llu,\"peak_mapped\":%llu,"
                     "\"n_alloc\":%llu,\"n_free\":%llu,\"n_failed\":%llu,\"n_large\":%llu,"
                     "\"large_cached\":%llu,\"dirty\":%llu,\"returned\":%llu,\"n_os_calls\":%llu,"
                     "\"segments\":%llu,\"heaps\":%llu,\"source\":\"%s\"}",
                     (unsigned long long)s->current, (unsigned long long)s->peak,
                     (unsigned long long)s->mapped, (unsigned long long)s->peak_mapped,
                     (unsigned long long)s->n_alloc, (unsigned long long)s->n_free,
                     (unsigned long long)s->n_failed, (unsigned long long)s->n_large,
                     (unsigned long long)s->large_cached, (unsigned long long)s->dirty,
                     (unsigned long long)s->returned, (unsigned long long)s->n_os_calls,
                     (unsigned long long)s->segments, (unsigned long long)s->heaps,
                     s->source_sbrk ? "sbrk" : "mmap");
    return n < 0 ? MK_EINVAL : n;
}

static int stats_text(const mk_heap_stats *s, char *buf, size_t cap) {
    return snprintf(buf, cap,
                    "memkit heap statistics (source %s)\n"
                    "  current      %llu bytes (peak %llu)\n"
                    "  mapped       %llu bytes (peak %llu)\n"
                    "  allocations  %llu (large %llu), frees %llu, failed %llu\n"
                    "  dirty        %llu bytes, large cache %llu bytes\n"
                    "  returned     %llu bytes to the OS, %llu OS calls\n"
                    "  segments     %llu, heaps %llu\n",
                    s->source_sbrk ? "sbrk" : "mmap", (unsigned long long)s->current,
                    (unsigned long long)s->peak, (unsigned long long)s->mapped,
                    (unsigned long long)s->peak_mapped, (unsigned long long)s->n_alloc,
                    (unsigned long long)s->n_large, (unsigned long long)s->n_free,
                    (unsigned long long)s->n_failed, (unsigned long long)s->dirty,
                    (unsigned long long)s->large_cached, (unsigned long long)s->returned,
                    (unsigned long long)s->n_os_calls, (unsigned long long)s->segments,
                    (unsigned long long)s->heaps);
}

void mk__print_stats_at_exit(void) {
    mk_heap_stats s;
    char buf[1024];
    if (mk_heap_get_stats(NULL, &s) != MK_OK) return;
    int n = atomic_load(&mk__g.print_stats) == 2 ? mk_heap_stats_json(&s, buf, sizeof buf - 1)
                                                 : stats_text(&s, buf, sizeof buf);
    if (n <= 0) return;
    size_t len = (size_t)n < sizeof buf - 1 ? (size_t)n : sizeof buf - 2;
    if (atomic_load(&mk__g.print_stats) == 2) buf[len++] = '\n';
    mk__os_write_stderr(buf, len);
}
