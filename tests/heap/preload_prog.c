/*
 * Runs under LD_PRELOAD=libmemkit-malloc.so (ctest heap.preload-prog) and
 * checks that the preload really took over and stays correct:
 *   - malloc, free, ... resolve to libmemkit-malloc.so (dladdr);
 *   - blocks move between threads, a multithreaded process forks and the
 *     child allocates;
 *   - a dlopen-ed library with thread-local storage allocates and frees;
 *   - with MEMKIT_OPTIONS=source=sbrk, blocks come from the program break.
 * Exit status 0 when every check passed.
 */
#include <dlfcn.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "preload_prog: failed: %s (line %d)\n", #c, __LINE__);                 \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void from_memkit(const char *name) {
    void *f = dlsym(RTLD_DEFAULT, name);
    Dl_info info;
    CHECK(f != NULL);
    CHECK(dladdr(f, &info) != 0);
    if (strstr(info.dli_fname, "libmemkit-malloc") == NULL) {
        fprintf(stderr, "preload_prog: %s comes from %s\n", name, info.dli_fname);
        exit(1);
    }
}

static void *ping[1000];

static void *thread_alloc(void *arg) {
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        ping[i] = malloc((size_t)i * 3 + 1);
        memset(ping[i], i & 0xff, (size_t)i * 3 + 1);
    }
    return NULL;
}

typedef char *(*make_fn)(const char *);
typedef void (*free_fn)(char *);

static void *thread_plugin(void *arg) {
    make_fn make = (make_fn)arg;
    for (int i = 0; i < 100; i++) free(make("from a thread")); /* plugin malloc, our free */
    return NULL;
}

int main(int argc, char **argv) {
    (void)argc;
    static const char *names[] = {"malloc",
                                  "free",
                                  "calloc",
                                  "realloc",
                                  "reallocarray",
                                  "memalign",
                                  "posix_memalign",
                                  "aligned_alloc",
                                  "valloc",
                                  "pvalloc",
                                  "malloc_usable_size",
                                  "free_sized",
                                  "free_aligned_sized"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) from_memkit(names[i]);

    /* cross-thread frees */
    pthread_t t;
    CHECK(pthread_create(&t, NULL, thread_alloc, NULL) == 0);
    pthread_join(t, NULL);
    for (int i = 0; i < 1000; i++) {
        CHECK(((unsigned char *)ping[i])[i * 3] == (i & 0xff));
        free(ping[i]);
    }

    /* fork with a second thread alive */
    CHECK(pthread_create(&t, NULL, thread_alloc, NULL) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        for (int i = 0; i < 10000; i++) free(malloc((size_t)i % 5000 + 1));
        _exit(0);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    pthread_join(t, NULL);
    for (int i = 0; i < 1000; i++) free(ping[i]);

    /* dlopen: a library beside this program (argv[1]) */
    void *lib = dlopen(argv[1], RTLD_NOW);
    CHECK(lib != NULL);
    make_fn make = (make_fn)dlsym(lib, "plugin_make");
    free_fn pfree = (free_fn)dlsym(lib, "plugin_free");
    CHECK(make && pfree);
    char *s = make("hello");
    CHECK(strcmp(s, "hello") == 0 && malloc_usable_size(s) >= 6);
    pfree(s);
    CHECK(pthread_create(&t, NULL, thread_plugin, (void *)make) == 0);
    pthread_join(t, NULL);
    dlclose(lib);

    /* the sbrk source really is the program break */
    const char *opt = getenv("MEMKIT_OPTIONS");
    if (opt && strstr(opt, "source=sbrk")) {
        void *p = malloc(100);
        CHECK((char *)p < (char *)sbrk(0));
        free(p);
    }
    puts("preload_prog: ok");
    return 0;
}
