/*
 * The platform layer: every operating-system call memkit makes goes through
 * these functions. One implementation per OS: posix.c (Linux and other
 * POSIX systems) and win32.c. Nothing above src/os/ includes a system
 * header that is not standard C.
 *
 * Conventions: functions return MK_OK or a negative MK_E* code; on MK_EOS
 * the OS error number is saved for mk_last_os_error(). No function here
 * allocates with malloc or prints.
 *
 * How each call maps to Win32 is noted where it is not obvious, so that
 * win32.c can implement the same contract.
 */
#ifndef MK_OS_H
#define MK_OS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "memkit/error.h"

/* Page protection bits for mk__os_protect(); MK__PROT_NONE is 0. */
enum { MK__PROT_NONE = 0, MK__PROT_READ = 1, MK__PROT_WRITE = 2, MK__PROT_EXEC = 4 };

/* Record an OS error number for mk_last_os_error() and return MK_EOS. */
int mk__os_fail(int os_errno);

/* ---- pages ---------------------------------------------------------------
 * Addresses and sizes passed to commit/decommit/release/protect must be
 * multiples of mk__os_page_size() and lie inside one reservation. */

/* Page size (4096 on x86-64 Linux; the allocation granularity on Win32 is
 * larger, 64 KiB, and applies to reserve). Never fails. */
size_t mk__os_page_size(void);

/* Reserve size bytes of address space with no access (mmap PROT_NONE /
 * VirtualAlloc MEM_RESERVE). MK_EINVAL for size 0, MK_ENOMEM when the
 * address space is exhausted, MK_EOS otherwise. */
int mk__os_reserve(size_t size, void **out);

/* Make reserved pages readable and writable, zero-filled on first touch
 * (mprotect / VirtualAlloc MEM_COMMIT). MK_ENOMEM or MK_EOS. */
int mk__os_commit(void *addr, size_t size);

/* Give the pages' physical memory back and keep the reservation; the pages
 * read as zero when committed again (madvise(MADV_DONTNEED)+PROT_NONE /
 * VirtualFree MEM_DECOMMIT). MK_EOS. */
int mk__os_decommit(void *addr, size_t size);

/* Give back the pages' physical memory but keep them accessible; their
 * contents become undefined (madvise(MADV_DONTNEED) or MADV_FREE /
 * VirtualAlloc MEM_RESET). MK_EOS. */
int mk__os_purge(void *addr, size_t size);

/* Release a whole reservation made by mk__os_reserve or mk__os_alloc
 * (munmap / VirtualFree MEM_RELEASE). MK_EOS. */
int mk__os_release(void *addr, size_t size);

/* Reserve and commit in one call: fresh zeroed read-write memory. */
int mk__os_alloc(size_t size, void **out);

/* Change protection of committed pages to a MK__PROT_* combination
 * (mprotect / VirtualProtect). MK_EINVAL for unknown bits, MK_EOS. */
int mk__os_protect(void *addr, size_t size, unsigned prot);

/* ---- shared mappings -----------------------------------------------------
 * A named shared-memory object (shm_open / CreateFileMappingW on the paging
 * file) or a file (open / CreateFileW + CreateFileMappingW). The handle is
 * process-local. Names follow POSIX shm rules: "/name", no other '/',
 * at most MK__OS_NAME_MAX bytes; on Win32 the name is mapped to
 * "Local\\memkit.name". */

#define MK__OS_NAME_MAX 255

typedef struct mk__os_shm {
    intptr_t handle;  /* fd on POSIX, HANDLE on Win32; -1 when closed */
    intptr_t handle2; /* Win32: the file-mapping HANDLE of a file; unused on POSIX */
    uint64_t size;    /* size of the object when opened or last resized */
    bool is_file;     /* backed by a file path, not a shm name */
} mk__os_shm;

enum {
    MK__SHM_EXCL = 1,     /* create: fail with MK_EEXIST if it exists */
    MK__SHM_READONLY = 2, /* open: map read-only */
};

/* Create a shared-memory object of size bytes (zero-filled) with the given
 * permission mode (0600 ...; ignored on Win32), that mk__os_shm_resize may
 * grow to max_size bytes (0: size; Win32 sizes its section to max_size
 * now, since a section cannot grow; POSIX ignores it). flags:
 * MK__SHM_EXCL. MK_EINVAL (bad name, size 0, max_size below size),
 * MK_EEXIST, MK_EPERM, MK_EOS. */
int mk__os_shm_create(const char *name, uint64_t size, uint64_t max_size, unsigned mode,
                      unsigned flags, mk__os_shm *out);

/* Open an existing object; out->size is its current size.
 * MK_EINVAL, MK_ENOENT, MK_EPERM, MK_EOS. */
int mk__os_shm_open(const char *name, unsigned flags, mk__os_shm *out);

/* The same for a file path: created (or extended) to size bytes.
 * A file-backed mapping persists after every process has closed it. */
int mk__os_file_create(const char *path, uint64_t size, unsigned mode, unsigned flags,
                       mk__os_shm *out);
int mk__os_file_open(const char *path, unsigned flags, mk__os_shm *out);

/* Current size of the object as the OS sees it now (fstat); it may have been
 * grown by another process. MK_EOS. */
int mk__os_shm_stat(const mk__os_shm *shm, uint64_t *size);

/* Grow (or shrink) the object to new_size bytes (ftruncate; on Win32 the
 * mapping object is created with the maximum size up front and this only
 * records the new size). MK_EOS. */
int mk__os_shm_resize(mk__os_shm *shm, uint64_t new_size);

/* Map len bytes of the object from offset 0, read-write unless the object
 * was opened MK__SHM_READONLY. If at is NULL the OS chooses the address;
 * otherwise at must lie inside a reservation from mk__os_reserve and the
 * mapping replaces those pages (MAP_FIXED / MapViewOfFile3 with a
 * placeholder), which is how a segment grows in place.
 * MK_EINVAL, MK_ENOMEM, MK_EOS. */
int mk__os_shm_map(const mk__os_shm *shm, void *at, size_t len, void **out);

/* Extend a mapping at `at` of the object's [0, mapped) to [0, len) (a
 * segment that grew). POSIX maps only the pages past the mapped ones
 * (MAP_FIXED over the reservation), so the threads that use those see no
 * change, not even a checker of threads that takes a remap for a write;
 * Win32 maps the view again (mk__os_shm_map, whatever mapped says). Errors
 * as mk__os_shm_map; POSIX: MK_EINVAL for mapped > len. */
int mk__os_shm_map_more(const mk__os_shm *shm, void *at, size_t mapped, size_t len, void **out);

/* Unmap a mapping made by mk__os_shm_map with at == NULL (munmap /
 * UnmapViewOfFile). A mapping made inside a reservation is released with
 * the reservation (mk__os_release). MK_EOS. */
int mk__os_shm_unmap(void *addr, size_t len);

/* Flush a file-backed mapping's dirty pages to the file (msync MS_SYNC /
 * FlushViewOfFile+FlushFileBuffers). MK_EOS. */
int mk__os_shm_flush(void *addr, size_t len);

/* Close the handle; mappings stay valid. Never fails on a valid handle. */
void mk__os_shm_close(mk__os_shm *shm);

/* Remove a name (shm_unlink / unlink). Mapped objects stay alive until the
 * last mapping goes (Win32: objects die with their last handle, so unlink
 * is a no-op there). MK_ENOENT, MK_EPERM, MK_EOS. */
int mk__os_shm_unlink(const char *name);
int mk__os_file_unlink(const char *path);

/* Call fn(name, arg) for every shared-memory object on this machine whose
 * name starts with prefix (readdir of /dev/shm). The name passed has the
 * leading '/'. Returns MK_OK, MK_ENOTSUP, MK_EOS. */
int mk__os_shm_list(const char *prefix, void (*fn)(const char *name, void *arg), void *arg);

/* ---- process-shared robust mutex -----------------------------------------
 * Storage of MK__OS_MUTEX_BYTES that may sit in shared memory. On POSIX a
 * pthread_mutex_t with PTHREAD_PROCESS_SHARED and PTHREAD_MUTEX_ROBUST. On
 * Win32 the storage holds the name of a named kernel mutex (and its
 * WAIT_ABANDONED result is reported as MK_EOWNERDEAD); each process needs a
 * HANDLE of its own, which mk__os_mutex_attach opens and the matching
 * mk__os_mutex_detach closes. */

#define MK__OS_MUTEX_BYTES 64

typedef struct mk__os_mutex {
    _Alignas(8) unsigned char opaque[MK__OS_MUTEX_BYTES];
} mk__os_mutex;

/* Initialise. shared: usable from several processes (the storage must then
 * be in shared memory). name: Win32 only (unique per mutex), may be NULL on
 * POSIX. MK_EOS. */
int mk__os_mutex_init(mk__os_mutex *m, bool shared, const char *name);

/* Lock. MK_OK, or MK_EOWNERDEAD: the caller now holds the lock, but the
 * previous owner died holding it; the protected data may be inconsistent.
 * The caller repairs it and calls mk__os_mutex_consistent before unlocking,
 * else the mutex becomes unusable (MK_ENOTRECOVERABLE to everyone after).
 * MK_ENOTRECOVERABLE, MK_EOS. */
int mk__os_mutex_lock(mk__os_mutex *m);

/* As lock, but MK_EBUSY instead of waiting. */
int mk__os_mutex_trylock(mk__os_mutex *m);

/* Mark the state repaired after MK_EOWNERDEAD (pthread_mutex_consistent). */
int mk__os_mutex_consistent(mk__os_mutex *m);

/* Unlock; the caller holds the lock. MK_EPERM if it does not. */
int mk__os_mutex_unlock(mk__os_mutex *m);

/* Destroy; nobody holds or waits on it. Ends this process's use too: its
 * Win32 HANDLE is closed whatever attachments remain, and a later detach
 * finds nothing to do. */
void mk__os_mutex_destroy(mk__os_mutex *m);

/* This process starts to use the initialised shared mutex whose storage it
 * has mapped (made by init here or in another process): Win32 opens the
 * kernel mutex, or takes another reference on this process's HANDLE of it;
 * POSIX has nothing to do. Call it once per user of the storage (a process
 * may map one segment through several handles), then lock and unlock from
 * any thread, until the matching detach. MK_OK, MK_EINVAL (storage that
 * holds no initialised mutex), and on Win32 MK_ENOMEM (this process
 * already uses as many shared mutexes as win32.c's table holds), MK_EOS.
 * A process-local mutex needs no attachment: MK_OK, nothing done.
 *
 * Without an attachment, lock, trylock and unlock still work as they did
 * before attach existed: the first of them opens the HANDLE, which is then
 * kept until destroy; a caller that never detaches (a mutex that lives as
 * long as the process) may skip attach. A thread must not use the mutex
 * without an attachment of its own while the process's last detach of it
 * runs. */
int mk__os_mutex_attach(mk__os_mutex *m);

/* Undo one mk__os_mutex_attach, while the storage is still mapped: Win32
 * drops the reference and closes the HANDLE with the last one, so that the
 * kernel mutex dies with the last process that uses it; POSIX: nothing.
 * A detach without a matching attach does nothing.
 *
 * No thread of this process may hold the mutex through this attachment,
 * nor use it through it later. Should the last detach find the mutex held
 * by a thread of this process all the same (a caller's bug: the storage
 * is about to go, so the holder cannot unlock), Win32 closes the HANDLE
 * anyway, and other processes get MK_EOWNERDEAD and repair: when the
 * holder exits if they have the kernel mutex open, else at their next
 * lock (win32.c: the owner word). On POSIX the pthread mutex stays locked
 * in the storage, as it would without detach. */
void mk__os_mutex_detach(mk__os_mutex *m);

/* ---- wait / wake on a 32-bit word ----------------------------------------
 * futex(FUTEX_WAIT/WAKE) on Linux; WaitOnAddress/WakeByAddress on Win32
 * (same process only: across processes win32.c uses a named event per
 * word; see its header comment). shared: the word is in shared memory
 * and other processes may wait on it. */

/* Sleep while *addr == expected, at most timeout_ns (negative: no limit).
 * Returns MK_OK when woken or when *addr != expected at the call (spurious
 * wake-ups are possible: re-check the condition), MK_ETIMEDOUT, MK_EOS. */
int mk__os_wait32(const uint32_t *addr, uint32_t expected, int64_t timeout_ns, bool shared);

/* Wake up to n waiters (n < 0: all). Returns the number woken (>= 0) or MK_EOS. */
int mk__os_wake32(const uint32_t *addr, int n, bool shared);

/* Asymmetric memory barrier across processes (Linux membarrier
 * GLOBAL_EXPEDITED). A process calls mk__os_barrier_register() once; after
 * it returned MK_OK, mk__os_heavy_barrier() called by any thread of any
 * process returns only when every running thread of every registered
 * process has executed a full memory barrier. A registered process may
 * then publish with plain release stores where it would otherwise need a
 * seq_cst store (a full fence on every publish), and the rare side (a
 * thread about to sleep) pays the barrier instead.
 * Both return MK_OK, or MK_ENOTSUP where the system has no such barrier
 * (old kernels, Windows): callers keep the symmetric fences then. A forked
 * child inherits the registration (checked on Linux 6.18 with
 * MEMBARRIER_CMD_GET_REGISTRATIONS); exec clears it, with the rest of the
 * process's memory. */
int mk__os_barrier_register(void);
int mk__os_heavy_barrier(void);

/* ---- processes, threads, time ------------------------------------------ */

/* Identifier of the calling thread, unique among live threads of the system
 * (gettid / GetCurrentThreadId). */
uint64_t mk__os_thread_id(void);

/* Identifier of the calling process (getpid / GetCurrentProcessId). */
uint64_t mk__os_process_id(void);

/* Fork detection without a system call. mk__os_fork_watch registers (once
 * per process, idempotent, thread-safe) a handler that changes the value of
 * mk__os_fork_epoch in a child created by fork(); a handle that recorded
 * the epoch after mk__os_fork_watch can tell it is a copy inherited by a
 * child. MK_OK, MK_EOS. Win32 has no fork: the epoch never changes. */
int mk__os_fork_watch(void);
/* The epoch is read on every cache operation of a shared heap: inline. */
extern _Atomic uint64_t mk__os_fork_counter;
static inline uint64_t mk__os_fork_epoch(void) {
    return atomic_load_explicit(&mk__os_fork_counter, memory_order_relaxed);
}

/* Whether the process has a single thread, so that no other thread can be
 * inside a critical section of the caller's (another thread could only be
 * made by the caller itself). glibc keeps this flag for its own malloc,
 * which takes no arena lock in a single-threaded process:
 * `__libc_single_threaded` (glibc 2.32 and later), cleared when a second
 * thread is made and set again in the child of a fork. Elsewhere (other C
 * libraries, Win32) the answer is always false. A caller that skips a lock
 * on true must decide once and unlock by the same decision: the flag may
 * turn false at any time after a thread is made. Read on every cache
 * operation of a shared heap: inline, one load through a pointer. */
extern const volatile char *mk__os_single_thread_flag;
static inline bool mk__os_single_threaded(void) { return *mk__os_single_thread_flag != 0; }

/* Start time of process pid in an OS-specific unit (clock ticks since boot
 * from /proc/PID/stat field 22; FILETIME of creation on Win32). Together
 * with pid it names one process for its life: a reused pid has another
 * start time. MK_ENOENT when no such process exists, MK_EOS. */
int mk__os_process_start_time(uint64_t pid, uint64_t *out);

/* Whether the process (pid, start_time) is alive: the pid exists and has
 * that start time. A zombie counts as dead. */
bool mk__os_process_alive(uint64_t pid, uint64_t start_time);

/* Monotonic clock in nanoseconds (CLOCK_MONOTONIC / QueryPerformanceCounter). */
uint64_t mk__os_now_ns(void);

/* Bytes of entropy for secrets (getrandom / BCryptGenRandom); falls back
 * to clock and address mixing, never fails. */
void mk__os_random(void *buf, size_t len);

/* Yield the processor (sched_yield / SwitchToThread). */
void mk__os_yield(void);

/* One step of a spin-wait: the CPU's pause hint (x86 PAUSE, Arm YIELD).
 * It lets a sibling hardware thread run and avoids the pipeline flush
 * when the awaited store arrives. An instruction, not a system call. */
static inline void mk__os_cpu_relax(void) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_ia32_pause();
#elif defined(__GNUC__) && defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* How long a lock spins before it sleeps: up to MK__OS_SPINS rounds of
 * mk__os_spin_round (8 pauses), a few microseconds: longer than the short
 * sections the spinning locks guard (the segment lock: posix.c; a shared
 * heap handle's mutex: src/shm), shorter than a sleep and a wake-up. */
#define MK__OS_SPINS 256
static inline void mk__os_spin_round(void) {
    for (int k = 0; k < 8; k++) mk__os_cpu_relax();
}

/* ---- process heap support (src/heap) --------------------------------------
 * None of these calls malloc, so the process heap may use them while it is
 * itself the process's malloc (LD_PRELOAD). */

/* Fresh zeroed read-write memory of size bytes whose address is a multiple
 * of align (a power of two; at most the page size means no constraint).
 * Over-maps by align and trims the excess (mmap + munmap / VirtualAlloc
 * retried at an aligned address). The result is released with
 * mk__os_release, which may also release an aligned sub-range of it on
 * POSIX. MK_EINVAL, MK_ENOMEM, MK_EOS. */
int mk__os_alloc_aligned(size_t size, size_t align, void **out);

/* Resize a mapping made by mk__os_alloc/_aligned in place, never moving it
 * (mremap without MREMAP_MAYMOVE; shrinking gives the tail back). MK_ENOMEM
 * when the address space after it is taken, MK_ENOTSUP where the OS cannot
 * (Win32). */
int mk__os_resize_inplace(void *addr, size_t old_size, size_t new_size);

/* Move the program break by increment bytes (sbrk); *old_break receives the
 * break before the call. increment 0 reads the break. MK_ENOMEM, and
 * MK_ENOTSUP on Win32 (no break there). */
int mk__os_sbrk(intptr_t increment, void **old_break);

/* Register fork handlers (pthread_atfork): prepare runs in the parent
 * before fork, parent and child after it in each. Any may be NULL. On
 * Win32 there is no fork: MK_OK, nothing registered. MK_ENOMEM. */
int mk__os_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void));

/* Call fn(arg) when a thread that armed the callback exits (a pthread key
 * destructor / an FLS callback). One callback per user (the process heap's
 * thread heaps, the shared heap's thread handles). init registers fn once
 * per process (its key must not need malloc: it is created early); arm
 * sets the calling thread's arg (NULL disarms). A thread that re-arms from
 * inside fn is called again, a bounded number of times
 * (PTHREAD_DESTRUCTOR_ITERATIONS). The main thread's exit() does not call
 * fn. MK_EOS. */
enum { MK__OS_EXIT_HEAP = 0, MK__OS_EXIT_SHM = 1, MK__OS_EXIT_USERS = 2 };
int mk__os_thread_exit_init(unsigned user, void (*fn)(void *arg));
int mk__os_thread_exit_arm(unsigned user, void *arg);

/* Copy the value of environment variable name into buf (cap bytes,
 * NUL-terminated, truncated if longer). Works before the C library has set
 * up environ (reads /proc/self/environ then). Returns true if the variable
 * is set. */
bool mk__os_getenv(const char *name, char *buf, size_t cap);

/* Write len bytes to standard error, unbuffered, without malloc (write(2) /
 * WriteFile). Errors are ignored: this is for last-words diagnostics. */
void mk__os_write_stderr(const char *msg, size_t len);

/* Page faults taken by the calling process so far (getrusage minor+major;
 * the page-fault count of GetProcessMemoryInfo). 0 where unknown. */
uint64_t mk__os_page_faults(void);

#endif
