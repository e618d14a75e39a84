/*
 * malloc-workload WORKLOAD [--seed N] [--scale X] [--threads T] [--file F] [--out F]
 *
 * Runs one allocator benchmark that uses only malloc/free/calloc/realloc, so
 * that run.py can time it under each allocator with LD_PRELOAD. Workloads:
 * larson, xmalloc, scratch, churn, large, replay (--file: a trace prepared
 * by `prep`), prep (--file TRACE.xz --out FILE.ops). Prints
 * "workload=... checksum=... malloc=LIBRARY" at the end; the checksum does not
 * depend on the allocator or on thread timing, so differing checksums mean a
 * broken allocator. Exit 0 on success, 2 on a usage or setup error, 3 when a
 * block's contents were damaged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workload.h"

typedef struct {
    const char *name;
    int (*run)(const wl_options *);
} workload;

static const workload workloads[] = {
    {"larson", wl_larson},   {"xmalloc", wl_xmalloc_test}, {"scratch", wl_cache_scratch},
    {"churn", wl_churn},     {"large", wl_large_blocks},   {"replay", wl_replay},
    {"prep", wl_prep_trace},
};

static void usage(void) {
    fprintf(stderr, "usage: malloc-workload WORKLOAD [--seed N] [--scale X] [--threads T]"
                    " [--file F] [--out F]\nworkloads:");
    for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++)
        fprintf(stderr, " %s", workloads[i].name);
    fputc('\n', stderr);
    exit(2);
}

static void parse_options(int argc, char **argv, wl_options *o) {
    for (int i = 2; i < argc; i += 2) { /* every option takes a value */
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        if (!strcmp(argv[i], "--seed"))
            o->seed = strtoull(v, NULL, 0);
        else if (!strcmp(argv[i], "--scale"))
            o->scale = strtod(v, NULL);
        else if (!strcmp(argv[i], "--threads"))
            o->threads = atoi(v);
        else if (!strcmp(argv[i], "--file"))
            o->file = v;
        else if (!strcmp(argv[i], "--out"))
            o->out = v;
        else
            usage();
    }
    if (o->scale <= 0 || o->threads < 1 || o->threads > 64) usage();
}

int main(int argc, char **argv) {
    wl_options opts = {.seed = 12345, .scale = 1.0, .threads = 2};
    if (argc < 2) usage();
    parse_options(argc, argv, &opts);
    for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++)
        if (!strcmp(argv[1], workloads[i].name)) return workloads[i].run(&opts);
    usage();
    return 2;
}
