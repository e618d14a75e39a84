/*
 * Shared declarations of the memkit CLI (tools/): exit codes, options
 * common to every command, error reporting. Not library code: the CLI may
 * print and exit.
 */
#ifndef MEMKIT_TOOLS_CLI_H
#define MEMKIT_TOOLS_CLI_H

#include <stdbool.h>

#include "json.h"

/* Exit codes. Documented in tools/README.md and `memkit --help`; scripts
 * depend on them, so do not renumber. */
enum cli_exit {
    EXIT_OK_ = 0,     /* success (validate: the heap is sound) */
    EXIT_DAMAGED = 1, /* validation failed: the segment is damaged */
    EXIT_USAGE = 2,   /* bad command line */
    EXIT_NOSEG = 3,   /* no such segment */
    EXIT_NOTMK = 4,   /* not a memkit segment, other version/build, or truncated */
    EXIT_OTHER = 5,   /* any other error (permissions, OS failure, ...) */
};

/* What every command receives after option parsing. */
typedef struct cli_opts {
    bool json;        /* --json: one JSON document on stdout */
    const char *name; /* the NAME operand, or NULL */
    bool force;       /* rm --force / reclaim --force */
    bool verbose;     /* -v: more detail in the text output */
} cli_opts;

/* "memkit CMD: msg" on stderr. */
void cli_err(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Exit code for a library error code returned while opening a segment. */
int cli_exit_for(int mk_err);

#endif
