/*
 * memkit: inspect and repair memkit shared-memory segments.
 *
 *   memkit [--json] COMMAND [options] [NAME]
 *
 * This file holds the command table, option parsing, help and exit codes;
 * the commands themselves are in commands.c. Every command that prints
 * data takes --json and then writes exactly one JSON document on stdout;
 * errors always go to stderr, as "memkit CMD: message".
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "commands.h"
#include "memkit/error.h"

typedef struct command {
    const char *name;
    int (*run)(const cli_opts *o);
    bool needs_name;        /* takes exactly one NAME operand */
    const char *extra_opts; /* short options beyond -j/-h, for getopt */
    const char *summary;
    const char *help; /* the body of `memkit CMD --help` */
} command;

static const command commands[] = {
    {"ls", cmd_ls, false, "", "list the memkit segments on this machine",
     "Lists the shared-memory objects under /dev/shm that are memkit segments,\n"
     "with their size, policy, number of attached processes and bytes in use.\n"
     "Objects that are not memkit segments are skipped. File-backed segments\n"
     "are not listed (they can be anywhere): name them by path.\n"},
    {"stat", cmd_stat, true, "", "statistics, policy, size and attached processes",
     "Prints the segment's policy, current and maximum size, heap statistics and\n"
     "the attached processes (pid, start time, alive or dead).\n"},
    {"validate", cmd_validate, true, "",
     "check every invariant of the heap (exit status 0 sound, 1 damaged)",
     "Checks the segment header and every invariant of the heap while other\n"
     "processes keep using it. Exit status 0 when sound, 1 when damaged; the\n"
     "broken invariant and its offset are printed.\n"},
    {"dump", cmd_dump, true, "", "every block: offset, size, state",
     "Walks the heap in address order and prints every block: offset of the\n"
     "payload, usable size, span (with its tag) and state (used/free).\n"},
    {"objects", cmd_objects, true, "", "the named-object directory",
     "Prints the named objects of the segment: name, type tag, offset, size.\n"},
    {"reclaim", cmd_reclaim, true, "", "free the blocks owned by dead processes",
     "Frees the blocks that were allocated as owned by a process that is no\n"
     "longer alive (pid and start time no longer match), and drops dead\n"
     "processes from the attached list. Prints what was reclaimed.\n"},
    {"rm", cmd_rm, true, "f", "remove a segment's name",
     "Removes the segment's name. Processes that have it mapped keep using it\n"
     "until they detach. Refuses an object that is not a memkit segment unless\n"
     "--force is given.\n"
     "\n"
     "  -f, --force   remove the name even if it is not a memkit segment\n"},
};
enum { NCOMMANDS = sizeof commands / sizeof commands[0] };

void cli_err(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    if (cmd)
        fprintf(stderr, "memkit %s: ", cmd);
    else
        fputs("memkit: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int cli_exit_for(int mk_err) {
    switch (mk_err) {
    case MK_OK:
        return EXIT_OK_;
    case MK_ENOENT:
        return EXIT_NOSEG;
    case MK_EBADMAGIC:
    case MK_EVERSION:
    case MK_ELAYOUT:
    case MK_ETRUNCATED:
        return EXIT_NOTMK;
    case MK_ECORRUPT:
    case MK_ENOTRECOVERABLE:
        return EXIT_DAMAGED;
    case MK_EINVAL:
        return EXIT_USAGE;
    default:
        return EXIT_OTHER;
    }
}

static const char names_help[] =
    "NAME is a segment name (\"jobs\" or \"/jobs\", as given to mk_shm_create) or,\n"
    "if it contains a '/' after the first character, the path of a file-backed\n"
    "segment (\"./heap.mk\", \"/var/lib/app/heap.mk\").\n";

static const char exit_help[] =
    "Exit status:\n"
    "  0  success (validate: the heap is sound)\n"
    "  1  validation failed: the segment is damaged\n"
    "  2  usage error\n"
    "  3  no such segment\n"
    "  4  not a memkit segment, another version or build, or truncated\n"
    "  5  any other error (permission, OS failure, ...)\n";

static void usage_main(FILE *f) {
    fputs("Usage: memkit [--json] COMMAND [options] [NAME]\n"
          "       memkit COMMAND --help\n"
          "\n"
          "Inspect and repair memkit shared-memory segments while programs use them.\n"
          "\n"
          "Commands:\n",
          f);
    for (int i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-9s %s%s\n", commands[i].name, commands[i].needs_name ? "NAME  " : "      ",
                commands[i].summary);
    fputs("\n"
          "Options (every command):\n"
          "  -j, --json      print one JSON document on stdout instead of text\n"
          "  -v, --verbose   say what was done (rm)\n"
          "  -h, --help      this help (or the command's: memkit CMD --help)\n"
          "      --version   print the version\n"
          "\n",
          f);
    fputs(names_help, f);
    fputc('\n', f);
    fputs(exit_help, f);
}

static void usage_cmd(const command *c, FILE *f) {
    fprintf(f, "Usage: memkit %s [--json]%s%s\n\n%s\n%s", c->name,
            strchr(c->extra_opts, 'f') ? " [--force]" : "", c->needs_name ? " NAME" : "",
            c->summary, c->help);
    fputs("\n  -j, --json      print one JSON document on stdout\n"
          "  -v, --verbose   say what was done (rm)\n"
          "  -h, --help      this help\n\n",
          f);
    if (c->needs_name) {
        fputs(names_help, f);
        fputc('\n', f);
    }
    fputs(exit_help, f);
}

/* A usage error: the message, a pointer to the help, exit status 2. */
static int usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static int usage_error(const char *cmd, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cli_err(cmd, "%s", msg);
    fprintf(stderr, "Try 'memkit %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
    return EXIT_USAGE;
}

/* The option getopt_long just rejected, as the user wrote it. */
static void bad_option(char *buf, size_t cap, char **argv) {
    if (optopt)
        snprintf(buf, cap, "-%c", optopt);
    else
        snprintf(buf, cap, "%s", argv[optind - 1]);
}

static const command *find_command(const char *name) {
    for (int i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

int main(int argc, char **argv) {
    cli_opts o = {0};
    int i = 1;
    /* Global options before the command. */
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-j") || !strcmp(a, "--json")) {
            o.json = true;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            o.verbose = true;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage_main(stdout);
            return EXIT_OK_;
        } else if (!strcmp(a, "--version")) {
            printf("memkit %s\n", MK_CLI_VERSION);
            return EXIT_OK_;
        } else if (!strcmp(a, "--")) {
            i++;
            break;
        } else {
            return usage_error(NULL, "unknown option '%s'", a);
        }
    }
    if (i >= argc) {
        usage_main(stderr);
        return EXIT_USAGE;
    }
    const command *c = find_command(argv[i]);
    if (!c) {
        if (!strcmp(argv[i], "help")) {
            if (i + 1 < argc && (c = find_command(argv[i + 1]))) {
                usage_cmd(c, stdout);
                return EXIT_OK_;
            }
            usage_main(stdout);
            return EXIT_OK_;
        }
        return usage_error(NULL, "unknown command '%s'", argv[i]);
    }

    /* Command options: getopt_long over the command's own argv. */
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {"verbose", no_argument, NULL, 'v'},
        {"force", no_argument, NULL, 'f'},
        {NULL, 0, NULL, 0},
    };
    char shortopts[32];
    snprintf(shortopts, sizeof shortopts, ":jhv%s", c->extra_opts);
    int cargc = argc - i;
    char **cargv = argv + i;
    optind = 1;
    opterr = 0;
    int ch;
    char opt[64];
    while ((ch = getopt_long(cargc, cargv, shortopts, longopts, NULL)) != -1) {
        switch (ch) {
        case 'j':
            o.json = true;
            break;
        case 'v':
            o.verbose = true;
            break;
        case 'h':
            usage_cmd(c, stdout);
            return EXIT_OK_;
        case 'f':
            if (strchr(c->extra_opts, 'f')) {
                o.force = true;
                break;
            }
            optopt = 0; /* --force given to a command without it */
            /* fall through */
        default:
            bad_option(opt, sizeof opt, cargv);
            return usage_error(c->name, "unknown option '%s'", opt);
        }
    }
    int nops = cargc - optind;
    if (c->needs_name) {
        if (nops < 1) return usage_error(c->name, "missing NAME");
        if (nops > 1) return usage_error(c->name, "unexpected argument '%s'", cargv[optind + 1]);
        o.name = cargv[optind];
        if (!o.name[0]) return usage_error(c->name, "empty NAME");
    } else if (nops > 0) {
        return usage_error(c->name, "unexpected argument '%s'", cargv[optind]);
    }
    return c->run(&o);
}
