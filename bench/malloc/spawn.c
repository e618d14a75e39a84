/*
 * malloc-bench-exec RESULT-FILE PRELOAD PROGRAM [ARGS...]
 *
 * Runs PROGRAM with LD_PRELOAD=PRELOAD (none when PRELOAD is empty), waits
 * for it and writes "status=S maxrss_kib=M wall_s=T" to RESULT-FILE.
 *
 * Why not fork from run.py directly: Linux counts the memory a process had
 * before exec in its ru_maxrss, and a child forked from the Python runner
 * starts with the runner's ~20 MiB. This launcher is small, so the peak it
 * reports is the program's own (and its waited-for descendants', e.g. cc1
 * under gcc). The preload goes only into the program's environment, so the
 * launcher itself always runs on glibc.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void exec_child(const char *preload, char **argv) {
    if (preload[0])
        setenv("LD_PRELOAD", preload, 1);
    else
        unsetenv("LD_PRELOAD");
    execvp(argv[0], argv);
    perror(argv[0]);
    _exit(127);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: malloc-bench-exec RESULT-FILE PRELOAD PROGRAM [ARGS...]\n");
        return 2;
    }
    double start = now();
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 2;
    }
    if (pid == 0) exec_child(argv[2], argv + 3);
    int status;
    struct rusage usage;
    if (wait4(pid, &status, 0, &usage) < 0) {
        perror("wait4");
        return 2;
    }
    double wall = now() - start;
    FILE *f = fopen(argv[1], "w");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    fprintf(f, "status=%d maxrss_kib=%ld wall_s=%.6f\n", status, usage.ru_maxrss, wall);
    return fclose(f) == 0 ? 0 : 2;
}
