/*
 * The platform layer for Linux (glibc); os.h states every contract.
 *
 * Rules kept throughout this file:
 *  - no malloc: opendir/fopen/snprintf allocate or may, so /dev/shm is read
 *    with getdents64 and /proc with read() into stack buffers;
 *  - every descriptor is opened O_CLOEXEC, so an exec'd child inherits
 *    nothing from memkit;
 *  - errno is turned into an MK_E* code by mk_err() only; the raw errno is
 *    always saved for mk_last_os_error(), even when it maps to a specific
 *    code, so a caller can still log the exact cause.
 *
 * Deliberate choices beyond os.h:
 *  - mk__os_shm_create without MK__SHM_EXCL on an existing object only grows
 *    it (like mk__os_file_create): shrinking an object another process has
 *    mapped would turn its accesses past the new end into SIGBUS.
 *  - mk__os_shm_map does not check len against the object's size: mapping
 *    past the end is legal, and touching those pages raises SIGBUS until
 *    the object grows (the caller's bounds must hold).
 *  - The mutex is PTHREAD_MUTEX_ERRORCHECK, so relocking from the owning
 *    thread fails (MK_EOS, errno EDEADLK) instead of hanging forever.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include "os/os.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
#include <sys/single_threaded.h>
#define MK_SINGLE_THREAD_FLAG (&__libc_single_threaded)
#endif
#include <time.h>
#include <unistd.h>

static_assert(sizeof(pthread_mutex_t) <= MK__OS_MUTEX_BYTES,
              "pthread_mutex_t must fit mk__os_mutex");
static_assert(alignof(pthread_mutex_t) <= alignof(mk__os_mutex),
              "mk__os_mutex must be aligned for pthread_mutex_t");

/* Map errno to an MK_E* code; see the file comment for why errno is kept. */
static int mk_err(int e) {
    int rc = mk__os_fail(e);
    switch (e) {
    case ENOENT:
        return MK_ENOENT;
    case EEXIST:
        return MK_EEXIST;
    case EACCES:
    case EPERM:
        return MK_EPERM;
    case ENOMEM:
        return MK_ENOMEM;
    case EISDIR:
        return MK_EINVAL; /* a directory is no shared object */
    default:
        return rc;
    }
}

static int mk_errno(void) { return mk_err(errno); }

/* ---- pages --------------------------------------------------------------- */

/* sysconf reads a value glibc caches at startup: cheap, and no static of
 * our own to race on. */
size_t mk__os_page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

int mk__os_reserve(size_t size, void **out) {
    if (size == 0 || out == NULL) return MK_EINVAL;
    /* MAP_NORESERVE: address space only, no commit charge until commit. */
    void *p = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return mk_errno();
    *out = p;
    return MK_OK;
}

int mk__os_commit(void *addr, size_t size) {
    /* Anonymous private pages are zero-filled on first touch by the kernel. */
    if (mprotect(addr, size, PROT_READ | PROT_WRITE) != 0) return mk_errno();
    return MK_OK;
}

int mk__os_decommit(void *addr, size_t size) {
    /* DONTNEED drops the pages now (they read as zero later); PROT_NONE
     * makes a stale access fault instead of silently repopulating them. */
    if (madvise(addr, size, MADV_DONTNEED) != 0) return mk_errno();
    if (mprotect(addr, size, PROT_NONE) != 0) return mk_errno();
    return MK_OK;
}

int mk__os_purge(void *addr, size_t size) {
    if (madvise(addr, size, MADV_DONTNEED) != 0) return mk_errno();
    return MK_OK;
}

int mk__os_release(void *addr, size_t size) {
    if (munmap(addr, size) != 0) return mk_errno();
    return MK_OK;
}

int mk__os_alloc(size_t size, void **out) {
    if (size == 0 || out == NULL) return MK_EINVAL;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return mk_errno();
    *out = p;
    return MK_OK;
}

int mk__os_protect(void *addr, size_t size, unsigned prot) {
    if (prot & ~(unsigned)(MK__PROT_READ | MK__PROT_WRITE | MK__PROT_EXEC)) return MK_EINVAL;
    int p = PROT_NONE;
    if (prot & MK__PROT_READ) p |= PROT_READ;
    if (prot & MK__PROT_WRITE) p |= PROT_WRITE;
    if (prot & MK__PROT_EXEC) p |= PROT_EXEC;
    if (mprotect(addr, size, p) != 0) return mk_errno();
    return MK_OK;
}

/* ---- shared mappings ----------------------------------------------------- */

/* POSIX shm name rules, checked here so every platform refuses the same
 * names (glibc alone would accept some that Win32 cannot express). */
static bool mk_shm_name_ok(const char *name) {
    if (name == NULL || name[0] != '/' || name[1] == '\0') return false;
    size_t len = strnlen(name, MK__OS_NAME_MAX + 1);
    if (len > MK__OS_NAME_MAX) return false;
    return memchr(name + 1, '/', len - 1) == NULL;
}

static bool mk_path_ok(const char *path) { return path != NULL && path[0] != '\0'; }

static void mk_shm_set(mk__os_shm *out, int fd, uint64_t size, bool is_file) {
    out->handle = fd;
    out->handle2 = -1;
    out->size = size;
    out->is_file = is_file;
}

/* Grow fd to at least size bytes (never shrink: see the file comment) and
 * report the resulting size. */
static int mk_fd_grow(int fd, uint64_t size, uint64_t *now) {
    struct stat st;
    if (fstat(fd, &st) != 0) return mk_errno();
    if ((uint64_t)st.st_size >= size) {
        *now = (uint64_t)st.st_size;
        return MK_OK;
    }
    if (size > (uint64_t)INT64_MAX) return MK_EINVAL;
    if (ftruncate(fd, (off_t)size) != 0) return mk_errno();
    *now = size;
    return MK_OK;
}

/* Shared tail of shm_create and file_create: fd is freshly opened with
 * O_CREAT. When we know we created the object (EXCL) and sizing fails, the
 * half-made object is removed so a retry does not meet MK_EEXIST. */
static int mk_create_finish(int fd, const char *name, bool is_file, uint64_t size, bool excl,
                            mk__os_shm *out) {
    uint64_t now = 0;
    int rc = mk_fd_grow(fd, size, &now);
    if (rc != MK_OK) {
        int saved = errno;
        if (excl && is_file) unlink(name);
        if (excl && !is_file) shm_unlink(name);
        close(fd);
        errno = saved;
        return rc;
    }
    mk_shm_set(out, fd, now, is_file);
    return MK_OK;
}

static int mk_open_finish(int fd, bool is_file, mk__os_shm *out) {
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int rc = mk_errno();
        close(fd);
        return rc;
    }
    /* A directory opens fine read-only but cannot be mapped. */
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return MK_EINVAL;
    }
    mk_shm_set(out, fd, (uint64_t)st.st_size, is_file);
    return MK_OK;
}

int mk__os_shm_create(const char *name, uint64_t size, uint64_t max_size, unsigned mode,
                      unsigned flags, mk__os_shm *out) {
    if (!mk_shm_name_ok(name) || size == 0 || out == NULL) return MK_EINVAL;
    if (max_size != 0 && max_size < size) return MK_EINVAL; /* else unused: objects grow */
    if (flags & ~(unsigned)MK__SHM_EXCL) return MK_EINVAL;
    bool excl = flags & MK__SHM_EXCL;
    int oflag = O_CREAT | O_RDWR | O_CLOEXEC | (excl ? O_EXCL : 0);
    int fd = shm_open(name, oflag, (mode_t)mode);
    if (fd < 0) return mk_errno();
    return mk_create_finish(fd, name, false, size, excl, out);
}

int mk__os_shm_open(const char *name, unsigned flags, mk__os_shm *out) {
    if (!mk_shm_name_ok(name) || out == NULL) return MK_EINVAL;
    if (flags & ~(unsigned)MK__SHM_READONLY) return MK_EINVAL;
    int oflag = ((flags & MK__SHM_READONLY) ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    int fd = shm_open(name, oflag, 0);
    if (fd < 0) return mk_errno();
    return mk_open_finish(fd, false, out);
}

int mk__os_file_create(const char *path, uint64_t size, unsigned mode, unsigned flags,
                       mk__os_shm *out) {
    if (!mk_path_ok(path) || size == 0 || out == NULL) return MK_EINVAL;
    if (flags & ~(unsigned)MK__SHM_EXCL) return MK_EINVAL;
    bool excl = flags & MK__SHM_EXCL;
    int oflag = O_CREAT | O_RDWR | O_CLOEXEC | (excl ? O_EXCL : 0);
    int fd = open(path, oflag, (mode_t)mode);
    if (fd < 0) return mk_errno();
    return mk_create_finish(fd, path, true, size, excl, out);
}

int mk__os_file_open(const char *path, unsigned flags, mk__os_shm *out) {
    if (!mk_path_ok(path) || out == NULL) return MK_EINVAL;
    if (flags & ~(unsigned)MK__SHM_READONLY) return MK_EINVAL;
    int oflag = ((flags & MK__SHM_READONLY) ? O_RDONLY : O_RDWR) | O_CLOEXEC;
    int fd = open(path, oflag);
    if (fd < 0) return mk_errno();
    return mk_open_finish(fd, true, out);
}

int mk__os_shm_stat(const mk__os_shm *shm, uint64_t *size) {
    if (shm == NULL || shm->handle < 0 || size == NULL) return MK_EINVAL;
    struct stat st;
    if (fstat((int)shm->handle, &st) != 0) return mk_errno();
    *size = (uint64_t)st.st_size;
    return MK_OK;
}

int mk__os_shm_resize(mk__os_shm *shm, uint64_t new_size) {
    if (shm == NULL || shm->handle < 0 || new_size > (uint64_t)INT64_MAX) return MK_EINVAL;
    if (ftruncate((int)shm->handle, (off_t)new_size) != 0) return mk_errno();
    shm->size = new_size;
    return MK_OK;
}

/* Map [from, from + len) of the object at `at` (NULL: anywhere). The
 * handle remembers how it was opened: no flag needs to be stored. MAP_FIXED
 * replaces the reserved PROT_NONE pages in one atomic step; nothing else
 * can be mapped there in between. */
static int mk_map_range(int fd, void *at, size_t from, size_t len, void **out) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return mk_errno();
    int prot = PROT_READ | ((fl & O_ACCMODE) == O_RDONLY ? 0 : PROT_WRITE);
    int mflags = MAP_SHARED | (at != NULL ? MAP_FIXED : 0);
    void *p = mmap(at, len, prot, mflags, fd, (off_t)from);
    if (p == MAP_FAILED) return mk_errno();
    *out = p;
    return MK_OK;
}

int mk__os_shm_map(const mk__os_shm *shm, void *at, size_t len, void **out) {
    if (shm == NULL || shm->handle < 0 || len == 0 || out == NULL) return MK_EINVAL;
    if ((uintptr_t)at % mk__os_page_size() != 0) return MK_EINVAL;
    return mk_map_range((int)shm->handle, at, 0, len, out);
}

int mk__os_shm_map_more(const mk__os_shm *shm, void *at, size_t mapped, size_t len, void **out) {
    if (shm == NULL || shm->handle < 0 || at == NULL || out == NULL) return MK_EINVAL;
    size_t page = mk__os_page_size();
    if ((uintptr_t)at % page != 0 || mapped > len) return MK_EINVAL;
    size_t from = mapped & ~(page - 1); /* a partly mapped last page again */
    void *p = NULL;
    if (from < len) {
        int rc = mk_map_range((int)shm->handle, (char *)at + from, from, len - from, &p);
        if (rc != MK_OK) return rc;
    }
    *out = at;
    return MK_OK;
}

int mk__os_shm_unmap(void *addr, size_t len) {
    if (munmap(addr, len) != 0) return mk_errno();
    return MK_OK;
}

int mk__os_shm_flush(void *addr, size_t len) {
    /* msync wants a page-aligned start; callers flush ranges of objects. */
    uintptr_t page = mk__os_page_size();
    uintptr_t a = (uintptr_t)addr;
    uintptr_t start = a & ~(page - 1);
    if (msync((void *)start, len + (a - start), MS_SYNC) != 0) return mk_errno();
    return MK_OK;
}

void mk__os_shm_close(mk__os_shm *shm) {
    if (shm == NULL || shm->handle < 0) return;
    /* Linux releases the descriptor even when close reports EINTR, so
     * retrying could close a descriptor another thread just opened. */
    (void)close((int)shm->handle);
    shm->handle = -1;
}

int mk__os_shm_unlink(const char *name) {
    if (!mk_shm_name_ok(name)) return MK_EINVAL;
    if (shm_unlink(name) != 0) return mk_errno();
    return MK_OK;
}

int mk__os_file_unlink(const char *path) {
    if (!mk_path_ok(path)) return MK_EINVAL;
    if (unlink(path) != 0) return mk_errno();
    return MK_OK;
}

/* Layout of the records getdents64 returns (not exported by glibc < 2.30). */
struct mk_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Report one /dev/shm entry if it is a candidate object under prefix. */
static void mk_shm_visit(const struct mk_dirent64 *d, const char *prefix,
                         void (*fn)(const char *name, void *arg), void *arg) {
    if (d->d_type != DT_REG && d->d_type != DT_UNKNOWN) return;
    size_t len = strnlen(d->d_name, MK__OS_NAME_MAX);
    if (len + 1 > MK__OS_NAME_MAX) return;
    char name[MK__OS_NAME_MAX + 1];
    name[0] = '/';
    memcpy(name + 1, d->d_name, len + 1);
    if (strncmp(name, prefix, strlen(prefix)) != 0) return;
    fn(name, arg);
}

int mk__os_shm_list(const char *prefix, void (*fn)(const char *name, void *arg), void *arg) {
    if (fn == NULL) return MK_EINVAL;
    if (prefix == NULL) prefix = "";
    int fd = open("/dev/shm", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? MK_ENOTSUP : mk_errno();
    alignas(8) char buf[4096];
    int rc = MK_OK;
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n < 0) {
            rc = mk_errno();
            break;
        }
        if (n == 0) break;
        for (long off = 0; off < n;) {
            const struct mk_dirent64 *d = (const struct mk_dirent64 *)(void *)(buf + off);
            mk_shm_visit(d, prefix, fn, arg);
            off += d->d_reclen;
        }
    }
    close(fd);
    return rc;
}

/* ---- process-shared robust mutex ----------------------------------------- */

static pthread_mutex_t *mk_pm(mk__os_mutex *m) { return (pthread_mutex_t *)(void *)m->opaque; }

static int mk_mutex_err(int e) {
    switch (e) {
    case 0:
        return MK_OK;
    case EOWNERDEAD:
        return MK_EOWNERDEAD;
    case ENOTRECOVERABLE:
        return MK_ENOTRECOVERABLE;
    case EBUSY:
        return MK_EBUSY;
    case EPERM:
        return MK_EPERM;
    case EINVAL:
        return MK_EINVAL;
    default:
        return mk__os_fail(e);
    }
}

int mk__os_mutex_init(mk__os_mutex *m, bool shared, const char *name) {
    (void)name; /* Win32 only: a pthread mutex lives in its storage. */
    if (m == NULL) return MK_EINVAL;
    memset(m, 0, sizeof *m);
    pthread_mutexattr_t a;
    int e = pthread_mutexattr_init(&a);
    if (e != 0) return mk__os_fail(e);
    /* ROBUST: the kernel tells the next locker when an owner died, which is
     * what crash recovery of a shared segment hangs on. */
    e = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (e == 0) e = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK);
    if (e == 0 && shared) e = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (e == 0) e = pthread_mutex_init(mk_pm(m), &a);
    pthread_mutexattr_destroy(&a);
    return e == 0 ? MK_OK : mk__os_fail(e);
}

/* pthread_mutex_trylock, without a glibc quirk: on a robust mutex that is
 * not recoverable and reads free, glibc's trylock takes the lock word,
 * returns ENOTRECOVERABLE and leaves the word set to the caller's id (it
 * tests the CAS's old value, 0, against the id before releasing), and
 * every other process would then sleep in pthread_mutex_lock for as long
 * as the caller lives. Here the word is given back, and its sleepers are
 * woken to see the state. */
static int mk_trylock(pthread_mutex_t *pm) {
    int e = pthread_mutex_trylock(pm);
#ifdef __GLIBC__
    if (e == ENOTRECOVERABLE) {
        int tid = (int)syscall(SYS_gettid), w = tid;
        if (!__atomic_compare_exchange_n(&pm->__data.__lock, &w, 0, false, __ATOMIC_RELEASE,
                                         __ATOMIC_RELAXED) &&
            (w & 0x3fffffff) == tid) { /* FUTEX_TID_MASK: sleepers set FUTEX_WAITERS */
            __atomic_store_n(&pm->__data.__lock, 0, __ATOMIC_RELEASE);
            syscall(SYS_futex, &pm->__data.__lock, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
        }
    }
#endif
    return e;
}

/* A holder of a segment lock keeps it for a microsecond or two: wait a
 * little for it to come free before sleeping in the kernel. A robust mutex
 * never spins on its own (glibc), and a sleep and a wake cost two system
 * calls and two context switches, several times the hold time (measured:
 * bench-shm with 2 processes, 1.2 sleeps per 1000 operations without the
 * spin, 0.02 with it, and 114 instead of 159 ns per operation). The spin
 * reads glibc's lock word and tries the lock when it reads free. */

int mk__os_mutex_lock(mk__os_mutex *m) {
    pthread_mutex_t *pm = mk_pm(m);
#ifdef __GLIBC__
    for (int i = 0; i < MK__OS_SPINS; i++) {
        if (__atomic_load_n(&pm->__data.__lock, __ATOMIC_RELAXED) == 0) {
            int e = mk_trylock(pm);
            if (e != EBUSY) return mk_mutex_err(e);
        }
        mk__os_spin_round();
    }
#endif
    return mk_mutex_err(pthread_mutex_lock(pm));
}

int mk__os_mutex_trylock(mk__os_mutex *m) {
    int e = mk_trylock(mk_pm(m));
    /* An error-checking mutex held by this very thread says EDEADLK; for a
     * try it is simply busy. */
    return mk_mutex_err(e == EDEADLK ? EBUSY : e);
}

int mk__os_mutex_consistent(mk__os_mutex *m) {
    return mk_mutex_err(pthread_mutex_consistent(mk_pm(m)));
}

int mk__os_mutex_unlock(mk__os_mutex *m) { return mk_mutex_err(pthread_mutex_unlock(mk_pm(m))); }

void mk__os_mutex_destroy(mk__os_mutex *m) { (void)pthread_mutex_destroy(mk_pm(m)); }

/* A pthread mutex is wholly in its storage: a process has nothing of its
 * own to open or close for it. */
int mk__os_mutex_attach(mk__os_mutex *m) { return m == NULL ? MK_EINVAL : MK_OK; }

void mk__os_mutex_detach(mk__os_mutex *m) { (void)m; }

/* ---- wait / wake on a 32-bit word ----------------------------------------- */

/* A private futex is keyed by (mm, address) and skips the shared-mapping
 * lookup; a word other processes wait on needs the shared key. */
static int mk_futex_op(int op, bool shared) { return shared ? op : (op | FUTEX_PRIVATE_FLAG); }

int mk__os_wait32(const uint32_t *addr, uint32_t expected, int64_t timeout_ns, bool shared) {
    struct timespec ts, *tp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        tp = &ts; /* FUTEX_WAIT takes a relative timeout */
    }
    long r = syscall(SYS_futex, addr, mk_futex_op(FUTEX_WAIT, shared), expected, tp, NULL, 0);
    if (r == 0) return MK_OK;
    switch (errno) {
    case EAGAIN: /* *addr != expected already: nothing to wait for */
    case EINTR:  /* a signal: report a spurious wake-up, the caller re-checks */
        return MK_OK;
    case ETIMEDOUT:
        return MK_ETIMEDOUT;
    default:
        return mk__os_fail(errno);
    }
}

int mk__os_wake32(const uint32_t *addr, int n, bool shared) {
    if (n < 0) n = INT_MAX;
    long r = syscall(SYS_futex, addr, mk_futex_op(FUTEX_WAKE, shared), n, NULL, NULL, 0);
    if (r < 0) return mk__os_fail(errno);
    return (int)r;
}

static long mk_membarrier(int cmd) { return syscall(SYS_membarrier, cmd, 0, 0); }

int mk__os_barrier_register(void) {
    long cmds = mk_membarrier(MEMBARRIER_CMD_QUERY);
    long need = MEMBARRIER_CMD_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED;
    if (cmds < 0 || (cmds & need) != need) return MK_ENOTSUP;
    return mk_membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0 ? MK_OK : MK_ENOTSUP;
}

int mk__os_heavy_barrier(void) {
    return mk_membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0 ? MK_OK : MK_ENOTSUP;
}

/* ---- processes, threads, time --------------------------------------------- */

/* Not cached in a thread-local: after fork the child's thread has a new
 * id, and a cached value would name the parent's thread. */
uint64_t mk__os_thread_id(void) { return (uint64_t)syscall(SYS_gettid); }

uint64_t mk__os_process_id(void) { return (uint64_t)getpid(); }

#ifdef MK_SINGLE_THREAD_FLAG
const volatile char *mk__os_single_thread_flag = MK_SINGLE_THREAD_FLAG;
#else
static const char never_single = 0; /* no such flag in this C library: always lock */
const volatile char *mk__os_single_thread_flag = &never_single;
#endif

_Atomic uint64_t mk__os_fork_counter;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;
static int fork_watch_rc;

static void fork_child(void) {
    atomic_fetch_add_explicit(&mk__os_fork_counter, 1, memory_order_relaxed);
}
static void fork_register(void) {
    int e = pthread_atfork(NULL, NULL, fork_child);
    fork_watch_rc = e ? mk__os_fail(e) : MK_OK;
}

int mk__os_fork_watch(void) {
    pthread_once(&fork_once, fork_register);
    return fork_watch_rc;
}

/* Write "/proc/<pid>/stat" into buf (at least 40 bytes) without stdio. */
static void mk_stat_path(uint64_t pid, char *buf) {
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + pid % 10);
        pid /= 10;
    } while (pid != 0);
    memcpy(buf, "/proc/", 6);
    char *p = buf + 6;
    while (n > 0) *p++ = digits[--n];
    memcpy(p, "/stat", 6);
}

/* Read the state (field 3) and start time (field 22) of pid. The fields are
 * counted from the last ')' because comm (field 2) may itself contain
 * spaces and parentheses. */
static int mk_proc_stat(uint64_t pid, char *state, uint64_t *start) {
    if (pid == 0 || pid > (uint64_t)INT_MAX) return MK_ENOENT;
    char path[40];
    mk_stat_path(pid, path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mk_errno();
    /* comm is at most 64 bytes and fields 3..22 are numbers: 1 KiB holds
     * field 22 even if the line is longer and gets cut. */
    char buf[1024];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf - 1 && (n = read(fd, buf + len, sizeof buf - 1 - len)) != 0) {
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            /* ESRCH: the process went away between open and read. */
            return e == ESRCH ? MK_ENOENT : mk_err(e);
        }
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    const char *p = strrchr(buf, ')');
    if (p == NULL || p[1] != ' ' || p[2] == '\0') return mk__os_fail(EINVAL);
    *state = p[2];
    p += 2;
    for (int field = 3; field < 22; field++) { /* skip fields 3..21 */
        p = strchr(p, ' ');
        if (p == NULL) return mk__os_fail(EINVAL);
        p++;
    }
    if (*p < '0' || *p > '9') return mk__os_fail(EINVAL);
    uint64_t v = 0;
    for (; *p >= '0' && *p <= '9'; p++) v = v * 10 + (uint64_t)(*p - '0');
    *start = v;
    return MK_OK;
}

int mk__os_process_start_time(uint64_t pid, uint64_t *out) {
    if (out == NULL) return MK_EINVAL;
    char state;
    return mk_proc_stat(pid, &state, out);
}

bool mk__os_process_alive(uint64_t pid, uint64_t start_time) {
    char state;
    uint64_t start;
    if (mk_proc_stat(pid, &state, &start) != MK_OK) return false;
    /* Z: zombie, X/x: dead (being reaped); neither will run again. */
    return start == start_time && state != 'Z' && state != 'X' && state != 'x';
}

uint64_t mk__os_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* splitmix64: a strong enough finaliser to spread weak fallback inputs. */
static uint64_t mk_mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/* Used only when getrandom is unavailable (old kernel, seccomp) or would
 * block early in boot: not cryptographic, but differs between processes,
 * runs and calls. */
static void mk_random_fallback(unsigned char *p, size_t len) {
    static _Atomic uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t s = mk__os_now_ns() ^ ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec;
    s ^= mk_mix64((uint64_t)(uintptr_t)&counter) ^ mk_mix64((uint64_t)(uintptr_t)p);
    s ^= mk_mix64((uint64_t)getpid() << 20 ^ mk__os_thread_id());
    s ^= mk_mix64(atomic_fetch_add_explicit(&counter, 1, memory_order_relaxed));
    while (len > 0) {
        s = mk_mix64(s);
        size_t k = len < sizeof s ? len : sizeof s;
        memcpy(p, &s, k);
        p += k;
        len -= k;
    }
}

void mk__os_random(void *buf, size_t len) {
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, GRND_NONBLOCK);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            mk_random_fallback(p, len);
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

void mk__os_yield(void) { (void)sched_yield(); }

/* ---- process heap support --------------------------------------------------- */

int mk__os_alloc_aligned(size_t size, size_t align, void **out) {
    if (size == 0 || out == NULL || (align & (align - 1)) != 0) return MK_EINVAL;
    size_t page = mk__os_page_size();
    if (align <= page) return mk__os_alloc(size, out);
    if (size > SIZE_MAX - align) return MK_ENOMEM;
    /* Often the kernel's next address is already aligned: one call. */
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return mk_errno();
    if ((uintptr_t)p % align == 0) {
        *out = p;
        return MK_OK;
    }
    munmap(p, size);
    /* Over-map by align and cut both ends off: at most three calls. */
    size_t total = size + align;
    char *raw = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return mk_errno();
    uintptr_t start = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
    size_t head = start - (uintptr_t)raw, tail = total - head - size;
    if (head) munmap(raw, head);
    if (tail) munmap((char *)start + size, tail);
    *out = (void *)start;
    return MK_OK;
}

int mk__os_resize_inplace(void *addr, size_t old_size, size_t new_size) {
    if (addr == NULL || old_size == 0 || new_size == 0) return MK_EINVAL;
    if (mremap(addr, old_size, new_size, 0) == MAP_FAILED) {
        int e = errno;
        mk__os_fail(e);
        return MK_ENOMEM;
    }
    return MK_OK;
}

int mk__os_sbrk(intptr_t increment, void **old_break) {
    if (old_break == NULL) return MK_EINVAL;
    void *p = sbrk(increment);
    if (p == (void *)-1) {
        mk__os_fail(errno);
        return MK_ENOMEM;
    }
    *old_break = p;
    return MK_OK;
}

int mk__os_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void)) {
    int e = pthread_atfork(prepare, parent, child);
    if (e != 0) {
        mk__os_fail(e);
        return MK_ENOMEM;
    }
    return MK_OK;
}

static pthread_key_t mk_exit_key[MK__OS_EXIT_USERS];

int mk__os_thread_exit_init(unsigned user, void (*fn)(void *arg)) {
    if (user >= MK__OS_EXIT_USERS) return MK_EINVAL;
    int e = pthread_key_create(&mk_exit_key[user], fn);
    return e == 0 ? MK_OK : mk__os_fail(e);
}

int mk__os_thread_exit_arm(unsigned user, void *arg) {
    if (user >= MK__OS_EXIT_USERS) return MK_EINVAL;
    int e = pthread_setspecific(mk_exit_key[user], arg);
    return e == 0 ? MK_OK : mk__os_fail(e);
}

/* Search "name=value\0name=value\0..." (the /proc/self/environ format). */
static bool mk_env_find(const char *env, size_t len, const char *name, char *buf, size_t cap) {
    size_t nlen = strlen(name);
    for (size_t i = 0; i < len;) {
        const char *e = env + i;
        size_t elen = strnlen(e, len - i);
        if (elen > nlen && memcmp(e, name, nlen) == 0 && e[nlen] == '=') {
            size_t v = elen - nlen - 1;
            if (cap == 0) return true;
            if (v >= cap) v = cap - 1;
            memcpy(buf, e + nlen + 1, v);
            buf[v] = '\0';
            return true;
        }
        i += elen + 1;
    }
    return false;
}

bool mk__os_getenv(const char *name, char *buf, size_t cap) {
    extern char **environ;
    if (name == NULL) return false;
    if (environ != NULL) {
        const char *v = getenv(name);
        if (v == NULL) return false;
        if (cap) {
            size_t n = strnlen(v, cap - 1);
            memcpy(buf, v, n);
            buf[n] = '\0';
        }
        return true;
    }
    /* Before libc's own initialisation (a preloaded malloc's first calls). */
    int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char env[16384];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof env && (n = read(fd, env + len, sizeof env - len)) > 0) len += (size_t)n;
    close(fd);
    return mk_env_find(env, len, name, buf, cap);
}

void mk__os_write_stderr(const char *msg, size_t len) {
    while (len > 0) {
        ssize_t n = write(2, msg, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        msg += n;
        len -= (size_t)n;
    }
}

uint64_t mk__os_page_faults(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt;
}
