/*
 * The platform layer for Windows (Win32 API); os.h states every contract.
 *
 * STATUS: compiles with mingw-w64 (-std=c11 -Wall -Wextra -Werror), and
 * tests/win/win_smoke.c runs on it under Wine 8 (make check-windows): a
 * region, a shared segment with two handles, growth, the cache, the
 * directory and an SPSC queue, the process heap, the lock's HANDLE given
 * back on close (200 segments made and closed in turn; two handles, one
 * closed, the other still locking), growth in place (no hole left in the
 * reservation; a failed growth undone), a file-backed segment
 * made by an absolute path and shared, under another spelling of the path,
 * with a second handle and a child process (and its only user killed
 * holding the lock: repaired by the next opener), and 60 child processes
 * killed (TerminateProcess) while they work on a segment, about half of
 * them holding its lock: the abandoned mutex is repaired each time. Wine 8 has no
 * placeholders, so there the fallback below runs; the placeholder path
 * (Windows 10 1803 and later) is compiled but has not been run. The rest of
 * the test suite (fork, cmocka) is POSIX only. Where this file cannot honour
 * os.h it says so below and returns MK_ENOTSUP rather than pretending.
 *
 * Functions that only newer Windows exports (VirtualAlloc2, MapViewOfFile3,
 * UnmapViewOfFile2: Windows 10 1803; WaitOnAddress: Windows 8) are looked up
 * with GetProcAddress in kernelbase.dll, and BCryptGenRandom in bcrypt.dll.
 * Reasons: this mingw declares them only for NTDDI_VERSION >= WIN10_RS4 and
 * its import libraries lack some of them; looking them up needs no extra
 * link libraries (synchronization.lib, onecore.lib, bcrypt.lib) in the build;
 * and the library still loads on older systems, where the calls that need
 * them return MK_ENOTSUP (or fall back, as said for each).
 *
 * Not implemented, or different from posix.c:
 *  - Reservations are "placeholders" (VirtualAlloc2 MEM_RESERVE_PLACEHOLDER)
 *    so that mk__os_shm_map can later put a view at a fixed address inside
 *    one. commit turns part of a placeholder into an ordinary allocation;
 *    release walks the range and frees every piece. Without placeholders
 *    (no VirtualAlloc2, or one that refuses MEM_RESERVE_PLACEHOLDER, as
 *    Wine 8's does: probed once), reservations are ordinary, and
 *    mk__os_shm_map(at != NULL) frees the reserved range, maps the view
 *    there and reserves the rest again (from the first 64 KiB boundary
 *    after the view); when the view cannot be mapped it puts the old view
 *    and the reservation back. It refuses ranges that hold committed
 *    private memory or views other than the old one at at, which it could
 *    not put back. Not atomic against other threads of the process that
 *    allocate memory meanwhile (see mk_map_fixed_plain).
 *    Placeholder splits are made at the addresses the caller gives; keeping
 *    them multiples of the 64 KiB allocation granularity is the safe choice.
 *  - Growing in place (mk__os_shm_map at an address that already holds a
 *    view) unmaps the old view back to a placeholder and maps the longer
 *    one; when that fails it maps the old one again (untested, like the
 *    whole placeholder path). Unlike MAP_FIXED on Linux this is not
 *    atomic: during the swap the old pages are inaccessible to other
 *    threads of this process, so the caller must hold its segment lock
 *    across it.
 *  - Named shared-memory objects (paging-file sections) cannot grow: the
 *    section is created with max_size, and mk__os_shm_resize above it
 *    returns MK_ENOTSUP,
 *    and shrinking only records the size. File-backed objects do grow: the
 *    file is extended and a new mapping object is made for later views.
 *    A handle whose mapping object is shorter than the view asked for
 *    (another handle or process grew the file) maps from a new one made
 *    for the file's current size.
 *  - mk__os_shm_unlink is a no-op (MK_OK after checking the name): a named
 *    section dies with its last handle. mk__os_shm_list is MK_ENOTSUP
 *    (listing the object namespace needs NtQueryDirectoryObject).
 *  - mk__os_shm_flush calls FlushViewOfFile only; FlushFileBuffers needs the
 *    file handle, which an address does not lead to.
 *  - mode (permission bits) is ignored; objects get the default DACL.
 *  - The mutex is a kernel mutex. Win32 mutexes are recursive; this one is
 *    not: relocking from the owning thread fails as on POSIX (MK_EOS, os
 *    error ERROR_POSSIBLE_DEADLOCK; MK_EBUSY from trylock).
 *    MK_ENOTRECOVERABLE is emulated with a state word in the shared
 *    storage. A kernel mutex dies with its last HANDLE: when its holder
 *    dies and no other process has it open (a file segment's last user),
 *    the next opener makes a new one and sees no WAIT_ABANDONED, but finds
 *    the dead holder's id still in the storage's owner word, and gets
 *    MK_EOWNERDEAD all the same. A shared mutex needs a name (MK_EINVAL
 *    without one), of any length and characters: a file path will do.
 *    The kernel object is named after a hash of it and its full path,
 *    made once by init and kept in the storage, where every process finds
 *    it (mk_wm_name). Each process keeps its HANDLEs in a fixed table of MK_WMUTEX_CACHE (64)
 *    entries, one per shared mutex in use, found by name on every lock:
 *    mk__os_mutex_attach opens or references one, the last detach closes
 *    it (segments do both, whatever number of handles a process holds to
 *    one). So a process may have 64 segments open at once, however many it
 *    opens and closes over its life; the 65th attach gets MK_ENOMEM.
 *    Entries that lock opened without an attachment stay until destroy.
 *  - wait32/wake32 with shared == false use WaitOnAddress (same process
 *    only, as on Windows generally). With shared == true there is no
 *    cross-process WaitOnAddress: waits poll the word (Sleep(0) a few times,
 *    then Sleep(1) steps) until it changes or the timeout expires. A wake
 *    without a change of the word is therefore not seen by a shared waiter,
 *    and mk__os_wake32 returns 0 (it cannot count waiters). The planned
 *    replacement is a named event per word, keyed by the word's offset in
 *    its segment; the platform layer does not know segments, so that needs
 *    a new entry point in os.h.
 *  - mk__os_process_start_time is the creation FILETIME. When a process
 *    cannot be opened for lack of rights, mk__os_process_alive says true:
 *    declaring a live process dead would let others reclaim what it owns.
 */
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0A00
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif

#include "os/os.h"

#include <assert.h>
#include <stdatomic.h>
#include <string.h>
#include <windows.h>

/* Placeholder flags; this mingw's winnt.h does not define them. */
#ifndef MEM_COALESCE_PLACEHOLDERS
#define MEM_COALESCE_PLACEHOLDERS 0x00000001
#endif
#ifndef MEM_PRESERVE_PLACEHOLDER
#define MEM_PRESERVE_PLACEHOLDER 0x00000002
#endif
#ifndef MEM_REPLACE_PLACEHOLDER
#define MEM_REPLACE_PLACEHOLDER 0x00004000
#endif
#ifndef MEM_RESERVE_PLACEHOLDER
#define MEM_RESERVE_PLACEHOLDER 0x00040000
#endif

/* ---- functions looked up at run time (see the file comment) ---------------- */

typedef PVOID(WINAPI *mk_VirtualAlloc2)(HANDLE, PVOID, SIZE_T, ULONG, ULONG, void *, ULONG);
typedef PVOID(WINAPI *mk_MapViewOfFile3)(HANDLE, HANDLE, PVOID, ULONG64, SIZE_T, ULONG, ULONG,
                                         void *, ULONG);
typedef BOOL(WINAPI *mk_UnmapViewOfFile2)(HANDLE, PVOID, ULONG);
typedef BOOL(WINAPI *mk_WaitOnAddress)(volatile VOID *, PVOID, SIZE_T, DWORD);
typedef VOID(WINAPI *mk_WakeByAddress)(PVOID);
typedef LONG(WINAPI *mk_BCryptGenRandom)(PVOID, PUCHAR, ULONG, ULONG);
typedef LONG(NTAPI *mk_NtQuerySection)(HANDLE, int, PVOID, SIZE_T, PSIZE_T);

static struct {
    mk_VirtualAlloc2 virtual_alloc2;
    mk_MapViewOfFile3 map_view3;
    mk_UnmapViewOfFile2 unmap_view2;
    mk_WaitOnAddress wait_on_address;
    mk_WakeByAddress wake_single, wake_all;
    mk_BCryptGenRandom gen_random;
    mk_NtQuerySection query_section;
} mk_fn;

static INIT_ONCE mk_fn_once = INIT_ONCE_STATIC_INIT;

/* GetProcAddress returns FARPROC; going through void (*)(void) is the cast
 * GCC accepts between unrelated function-pointer types. */
typedef void (*mk_anyfn)(void);

static mk_anyfn mk_sym(HMODULE mod, const char *name) {
    return mod != NULL ? (mk_anyfn)GetProcAddress(mod, name) : NULL;
}

static BOOL CALLBACK mk_fn_load(PINIT_ONCE once, PVOID param, PVOID *ctx) {
    (void)once, (void)param, (void)ctx;
    HMODULE kb = GetModuleHandleW(L"kernelbase.dll");
    HMODULE nt = GetModuleHandleW(L"ntdll.dll");
    HMODULE bc = LoadLibraryExW(L"bcrypt.dll", NULL, LOAD_LIBRARY_SEARCH_SYSTEM32);
    mk_fn.virtual_alloc2 = (mk_VirtualAlloc2)mk_sym(kb, "VirtualAlloc2");
    mk_fn.map_view3 = (mk_MapViewOfFile3)mk_sym(kb, "MapViewOfFile3");
    mk_fn.unmap_view2 = (mk_UnmapViewOfFile2)mk_sym(kb, "UnmapViewOfFile2");
    mk_fn.wait_on_address = (mk_WaitOnAddress)mk_sym(kb, "WaitOnAddress");
    mk_fn.wake_single = (mk_WakeByAddress)mk_sym(kb, "WakeByAddressSingle");
    mk_fn.wake_all = (mk_WakeByAddress)mk_sym(kb, "WakeByAddressAll");
    mk_fn.gen_random = (mk_BCryptGenRandom)mk_sym(bc, "BCryptGenRandom");
    mk_fn.query_section = (mk_NtQuerySection)mk_sym(nt, "NtQuerySection");
    /* Exported is not supported: Wine 8 exports VirtualAlloc2 but refuses
     * MEM_RESERVE_PLACEHOLDER. One small placeholder says which it is. */
    void *probe =
        mk_fn.virtual_alloc2 == NULL
            ? NULL
            : mk_fn.virtual_alloc2(GetCurrentProcess(), NULL, 65536,
                                   MEM_RESERVE | MEM_RESERVE_PLACEHOLDER, PAGE_NOACCESS, NULL, 0);
    if (probe != NULL)
        VirtualFree(probe, 0, MEM_RELEASE);
    else
        mk_fn.virtual_alloc2 = NULL, mk_fn.map_view3 = NULL, mk_fn.unmap_view2 = NULL;
    return TRUE;
}

static void mk_fn_init(void) { InitOnceExecuteOnce(&mk_fn_once, mk_fn_load, NULL, NULL); }

static bool mk_have_placeholders(void) {
    mk_fn_init();
    return mk_fn.virtual_alloc2 && mk_fn.map_view3 && mk_fn.unmap_view2;
}

/* ---- errors ------------------------------------------------------------------ */

/* Map a GetLastError() value; the raw value is kept for mk_last_os_error(). */
static int mk_err(DWORD e) {
    int rc = mk__os_fail((int)e);
    switch (e) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
        return MK_ENOENT;
    case ERROR_ALREADY_EXISTS:
    case ERROR_FILE_EXISTS:
        return MK_EEXIST;
    case ERROR_ACCESS_DENIED:
        return MK_EPERM;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
    case ERROR_COMMITMENT_LIMIT:
        return MK_ENOMEM;
    default:
        return rc;
    }
}

static int mk_last(void) { return mk_err(GetLastError()); }

/* ---- pages ---------------------------------------------------------------------- */

size_t mk__os_page_size(void) {
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    return si.dwPageSize;
}

int mk__os_reserve(size_t size, void **out) {
    if (size == 0 || out == NULL) return MK_EINVAL;
    void *p;
    if (mk_have_placeholders())
        p = mk_fn.virtual_alloc2(GetCurrentProcess(), NULL, size,
                                 MEM_RESERVE | MEM_RESERVE_PLACEHOLDER, PAGE_NOACCESS, NULL, 0);
    else
        p = VirtualAlloc(NULL, size, MEM_RESERVE, PAGE_NOACCESS);
    if (p == NULL) return mk_last();
    *out = p;
    return MK_OK;
}

/* Call fn on each piece of [addr, addr+size) that lies in one region of
 * equal attributes (VirtualQuery): after commits and views a reservation is
 * a row of separate allocations, and most calls must not span two. */
typedef int (*mk_piece_fn)(char *p, size_t n, const MEMORY_BASIC_INFORMATION *mbi, void *arg);

static int mk_each_piece(void *addr, size_t size, mk_piece_fn fn, void *arg) {
    char *p = addr, *end = (char *)addr + size;
    while (p < end) {
        MEMORY_BASIC_INFORMATION mbi;
        if (VirtualQuery(p, &mbi, sizeof mbi) == 0) return mk_last();
        char *rend = (char *)mbi.BaseAddress + mbi.RegionSize;
        size_t n = (size_t)((rend < end ? rend : end) - p);
        int rc = fn(p, n, &mbi, arg);
        if (rc != MK_OK) return rc;
        p += n;
    }
    return MK_OK;
}

/* A reserved piece may be a placeholder, which VirtualAlloc cannot commit:
 * split it off (if it is not the whole placeholder) and replace it with an
 * ordinary committed allocation. */
static int mk_commit_piece(char *p, size_t n, const MEMORY_BASIC_INFORMATION *mbi, void *arg) {
    (void)arg;
    if (mbi->Type == MEM_MAPPED) return MK_EINVAL; /* a view, not reserved pages */
    if (VirtualAlloc(p, n, MEM_COMMIT, PAGE_READWRITE) != NULL) return MK_OK;
    if (!mk_have_placeholders()) return mk_last();
    bool whole = p == (char *)mbi->BaseAddress && n == mbi->RegionSize;
    if (!whole && !VirtualFree(p, n, MEM_RELEASE | MEM_PRESERVE_PLACEHOLDER)) return mk_last();
    if (mk_fn.virtual_alloc2(GetCurrentProcess(), p, n,
                             MEM_RESERVE | MEM_COMMIT | MEM_REPLACE_PLACEHOLDER, PAGE_READWRITE,
                             NULL, 0) == NULL)
        return mk_last();
    return MK_OK;
}

int mk__os_commit(void *addr, size_t size) {
    /* The common case, one ordinary allocation, needs one call. */
    if (VirtualAlloc(addr, size, MEM_COMMIT, PAGE_READWRITE) != NULL) return MK_OK;
    return mk_each_piece(addr, size, mk_commit_piece, NULL);
}

static int mk_decommit_piece(char *p, size_t n, const MEMORY_BASIC_INFORMATION *mbi, void *arg) {
    (void)arg;
    if (mbi->State != MEM_COMMIT) return MK_OK; /* nothing committed here */
    if (mbi->Type == MEM_MAPPED) return MK_EINVAL;
    if (!VirtualFree(p, n, MEM_DECOMMIT)) return mk_last();
    return MK_OK;
}

int mk__os_decommit(void *addr, size_t size) {
    return mk_each_piece(addr, size, mk_decommit_piece, NULL);
}

static int mk_purge_piece(char *p, size_t n, const MEMORY_BASIC_INFORMATION *mbi, void *arg) {
    (void)arg;
    if (mbi->State != MEM_COMMIT || mbi->Type != MEM_PRIVATE) return MK_OK;
    /* MEM_RESET ignores the protection but requires a valid value. */
    if (VirtualAlloc(p, n, MEM_RESET, PAGE_NOACCESS) == NULL) return mk_last();
    return MK_OK;
}

int mk__os_purge(void *addr, size_t size) {
    return mk_each_piece(addr, size, mk_purge_piece, NULL);
}

/* Free each allocation or view met in the range; the walk then sees the
 * freed space as MEM_FREE and steps over it. */
static int mk_release_piece(char *p, size_t n, const MEMORY_BASIC_INFORMATION *mbi, void *arg) {
    (void)p, (void)n, (void)arg;
    if (mbi->State == MEM_FREE) return MK_OK;
    BOOL ok = mbi->Type == MEM_MAPPED ? UnmapViewOfFile(mbi->AllocationBase)
                                      : VirtualFree(mbi->AllocationBase, 0, MEM_RELEASE);
    return ok ? MK_OK : mk_last();
}

int mk__os_release(void *addr, size_t size) {
    return mk_each_piece(addr, size, mk_release_piece, NULL);
}

int mk__os_alloc(size_t size, void **out) {
    if (size == 0 || out == NULL) return MK_EINVAL;
    void *p = VirtualAlloc(NULL, size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
    if (p == NULL) return mk_last();
    *out = p;
    return MK_OK;
}

static int mk_protect_piece(char *p, size_t n, const MEMORY_BASIC_INFORMATION *mbi, void *arg) {
    (void)mbi;
    DWORD old;
    if (!VirtualProtect(p, n, *(const DWORD *)arg, &old)) return mk_last();
    return MK_OK;
}

int mk__os_protect(void *addr, size_t size, unsigned prot) {
    if (prot & ~(unsigned)(MK__PROT_READ | MK__PROT_WRITE | MK__PROT_EXEC)) return MK_EINVAL;
    /* Win32 has no write-only page: write implies read, as on x86 Linux. */
    static const DWORD table[8] = {
        PAGE_NOACCESS, PAGE_READONLY,     PAGE_READWRITE,         PAGE_READWRITE,
        PAGE_EXECUTE,  PAGE_EXECUTE_READ, PAGE_EXECUTE_READWRITE, PAGE_EXECUTE_READWRITE,
    };
    DWORD p = table[prot];
    return mk_each_piece(addr, size, mk_protect_piece, &p);
}

/* ---- shared mappings ------------------------------------------------------------ */

#define MK_WNAME_MAX (MK__OS_NAME_MAX + 32)
#define MK_WPATH_MAX 4096

/* The POSIX rules of os.h, plus no '\\', which separates kernel namespaces. */
static bool mk_shm_name_ok(const char *name) {
    if (name == NULL || name[0] != '/' || name[1] == '\0') return false;
    size_t len = strnlen(name, MK__OS_NAME_MAX + 1);
    if (len > MK__OS_NAME_MAX) return false;
    return memchr(name + 1, '/', len - 1) == NULL && memchr(name, '\\', len) == NULL;
}

/* UTF-8 to UTF-16 into a caller buffer, after a fixed wide prefix. */
static bool mk_widen(const wchar_t *prefix, const char *s, wchar_t *out, int cap) {
    int k = (int)wcslen(prefix);
    if (k >= cap) return false;
    memcpy(out, prefix, (size_t)k * sizeof *out);
    int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, out + k, cap - k);
    return n > 0;
}

/* "/name" -> "Local\\memkit.name" (os.h). */
static bool mk_shm_wname(const char *name, wchar_t *out) {
    return mk_shm_name_ok(name) && mk_widen(L"Local\\memkit.", name + 1, out, MK_WNAME_MAX);
}

static HANDLE mk_h(intptr_t v) { return (HANDLE)v; }

static void mk_shm_set(mk__os_shm *out, HANDLE h, HANDLE map, uint64_t size, bool is_file) {
    out->handle = (intptr_t)h;
    out->handle2 = map != NULL ? (intptr_t)map : -1;
    out->size = size;
    out->is_file = is_file;
}

/* The handle views are made from: the section itself, or a file's mapping. */
static HANDLE mk_section(const mk__os_shm *shm) {
    return shm->is_file ? mk_h(shm->handle2) : mk_h(shm->handle);
}

/* Exact size of a section (NtQuerySection); without it, the size of a whole
 * view, which is rounded up to a page. */
static int mk_section_size(HANDLE sec, uint64_t *out) {
    struct {
        PVOID base;
        ULONG attributes;
        LARGE_INTEGER size;
    } sbi;
    mk_fn_init();
    if (mk_fn.query_section != NULL && mk_fn.query_section(sec, 0, &sbi, sizeof sbi, NULL) >= 0) {
        *out = (uint64_t)sbi.size.QuadPart;
        return MK_OK;
    }
    void *v = MapViewOfFile(sec, FILE_MAP_READ, 0, 0, 0);
    if (v == NULL) return mk_last();
    MEMORY_BASIC_INFORMATION mbi;
    SIZE_T q = VirtualQuery(v, &mbi, sizeof mbi);
    UnmapViewOfFile(v);
    if (q == 0) return mk_last();
    *out = mbi.RegionSize;
    return MK_OK;
}

int mk__os_shm_create(const char *name, uint64_t size, uint64_t max_size, unsigned mode,
                      unsigned flags, mk__os_shm *out) {
    (void)mode;
    wchar_t wname[MK_WNAME_MAX];
    if (!mk_shm_wname(name, wname) || size == 0 || out == NULL) return MK_EINVAL;
    if (max_size != 0 && max_size < size) return MK_EINVAL;
    if (flags & ~(unsigned)MK__SHM_EXCL) return MK_EINVAL;
    /* The section gets the largest size now (its pages are demand-zero:
     * committed, not touched); mk__os_shm_resize records growth in it. */
    uint64_t sec = max_size ? max_size : size;
    HANDLE h = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, (DWORD)(sec >> 32),
                                  (DWORD)sec, wname);
    if (h == NULL) return mk_last();
    if (GetLastError() != ERROR_ALREADY_EXISTS) {
        mk_shm_set(out, h, NULL, size, false);
        return MK_OK;
    }
    /* It existed: the size asked for was ignored, report the real one. */
    uint64_t now = 0;
    int rc = (flags & MK__SHM_EXCL) ? MK_EEXIST : mk_section_size(h, &now);
    if (rc != MK_OK) {
        CloseHandle(h);
        return rc;
    }
    mk_shm_set(out, h, NULL, now, false);
    return MK_OK;
}

int mk__os_shm_open(const char *name, unsigned flags, mk__os_shm *out) {
    wchar_t wname[MK_WNAME_MAX];
    if (!mk_shm_wname(name, wname) || out == NULL) return MK_EINVAL;
    if (flags & ~(unsigned)MK__SHM_READONLY) return MK_EINVAL;
    DWORD access = (flags & MK__SHM_READONLY) ? FILE_MAP_READ : FILE_MAP_READ | FILE_MAP_WRITE;
    HANDLE h = OpenFileMappingW(access, FALSE, wname);
    if (h == NULL) return mk_last();
    uint64_t size = 0;
    int rc = mk_section_size(h, &size);
    if (rc != MK_OK) {
        CloseHandle(h);
        return rc;
    }
    mk_shm_set(out, h, NULL, size, false);
    return MK_OK;
}

static int mk_file_size(HANDLE f, uint64_t *out) {
    LARGE_INTEGER li;
    if (!GetFileSizeEx(f, &li)) return mk_last();
    *out = (uint64_t)li.QuadPart;
    return MK_OK;
}

/* Set the end of file; new bytes read as zero. */
static int mk_file_truncate(HANDLE f, uint64_t size) {
    LARGE_INTEGER li;
    li.QuadPart = (LONGLONG)size;
    if (!SetFilePointerEx(f, li, NULL, FILE_BEGIN) || !SetEndOfFile(f)) return mk_last();
    return MK_OK;
}

/* A mapping object over the whole file (NULL for an empty file, which
 * cannot be mapped). */
static int mk_file_mapping(HANDLE f, bool ro, uint64_t size, HANDLE *out) {
    *out = NULL;
    if (size == 0) return MK_OK;
    HANDLE m = CreateFileMappingW(f, NULL, ro ? PAGE_READONLY : PAGE_READWRITE, 0, 0, NULL);
    /* A file opened read-only refuses PAGE_READWRITE: its handle says how
     * it was opened (as in mk_view), so callers that do not know ask for
     * read-write. */
    if (m == NULL && !ro && GetLastError() == ERROR_ACCESS_DENIED)
        m = CreateFileMappingW(f, NULL, PAGE_READONLY, 0, 0, NULL);
    if (m == NULL) return mk_last();
    *out = m;
    return MK_OK;
}

/* Shared tail of file_create and file_open: size and map the open file. */
static int mk_file_finish(HANDLE f, uint64_t want, bool ro, mk__os_shm *out) {
    uint64_t size = 0;
    HANDLE m = NULL;
    int rc = mk_file_size(f, &size);
    if (rc == MK_OK && size < want) { /* grow only, as on POSIX */
        rc = mk_file_truncate(f, want);
        size = want;
    }
    if (rc == MK_OK) rc = mk_file_mapping(f, ro, size, &m);
    if (rc != MK_OK) return rc;
    mk_shm_set(out, f, m, size, true);
    return MK_OK;
}

int mk__os_file_create(const char *path, uint64_t size, unsigned mode, unsigned flags,
                       mk__os_shm *out) {
    (void)mode;
    wchar_t wpath[MK_WPATH_MAX];
    if (path == NULL || path[0] == '\0' || size == 0 || out == NULL) return MK_EINVAL;
    if (flags & ~(unsigned)MK__SHM_EXCL) return MK_EINVAL;
    if (!mk_widen(L"", path, wpath, MK_WPATH_MAX)) return MK_EINVAL;
    bool excl = flags & MK__SHM_EXCL;
    HANDLE f = CreateFileW(wpath, GENERIC_READ | GENERIC_WRITE,
                           FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                           excl ? CREATE_NEW : OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    if (f == INVALID_HANDLE_VALUE) return mk_last();
    int rc = mk_file_finish(f, size, false, out);
    if (rc != MK_OK) {
        CloseHandle(f);
        if (excl) DeleteFileW(wpath); /* we made it: leave nothing half-made */
    }
    return rc;
}

int mk__os_file_open(const char *path, unsigned flags, mk__os_shm *out) {
    wchar_t wpath[MK_WPATH_MAX];
    if (path == NULL || path[0] == '\0' || out == NULL) return MK_EINVAL;
    if (flags & ~(unsigned)MK__SHM_READONLY) return MK_EINVAL;
    if (!mk_widen(L"", path, wpath, MK_WPATH_MAX)) return MK_EINVAL;
    bool ro = flags & MK__SHM_READONLY;
    HANDLE f = CreateFileW(wpath, ro ? GENERIC_READ : GENERIC_READ | GENERIC_WRITE,
                           FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                           OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
    if (f == INVALID_HANDLE_VALUE) return mk_last();
    int rc = mk_file_finish(f, 0, ro, out);
    if (rc != MK_OK) CloseHandle(f);
    return rc;
}

int mk__os_shm_stat(const mk__os_shm *shm, uint64_t *size) {
    if (shm == NULL || shm->handle == -1 || size == NULL) return MK_EINVAL;
    if (shm->is_file) return mk_file_size(mk_h(shm->handle), size);
    return mk_section_size(mk_h(shm->handle), size);
}

int mk__os_shm_resize(mk__os_shm *shm, uint64_t new_size) {
    if (shm == NULL || shm->handle == -1) return MK_EINVAL;
    if (!shm->is_file) {
        /* A paging-file section keeps the size it was created with. */
        uint64_t max = 0;
        int rc = mk_section_size(mk_h(shm->handle), &max);
        if (rc != MK_OK) return rc;
        if (new_size > max) return MK_ENOTSUP;
        shm->size = new_size;
        return MK_OK;
    }
    /* Views made earlier keep the old mapping object alive; later views
     * come from a new one that covers the new size. Shrinking a file that
     * has views fails (ERROR_USER_MAPPED_FILE). */
    HANDLE m = NULL;
    int rc = mk_file_truncate(mk_h(shm->handle), new_size);
    if (rc == MK_OK) rc = mk_file_mapping(mk_h(shm->handle), false, new_size, &m);
    if (rc != MK_OK) return rc;
    if (shm->handle2 != -1) CloseHandle(mk_h(shm->handle2));
    shm->handle2 = m != NULL ? (intptr_t)m : -1;
    shm->size = new_size;
    return MK_OK;
}

/* A view of [0, len) at at (NULL: where the system chooses). Read-write if
 * the handle allows it, else read-only: a handle opened
 * MK__SHM_READONLY refuses FILE_MAP_WRITE with ERROR_ACCESS_DENIED, so the
 * handle itself says how it was opened and mk__os_shm needs no flag. */
static void *mk_view(HANDLE sec, size_t len, void *at) {
    void *v = MapViewOfFileEx(sec, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, len, at);
    if (v == NULL && GetLastError() == ERROR_ACCESS_DENIED)
        v = MapViewOfFileEx(sec, FILE_MAP_READ, 0, 0, len, at);
    return v;
}

/* Size of the whole allocation that starts at base (it may span several
 * regions, e.g. committed and decommitted parts); *committed (if not NULL)
 * says whether any of it is committed. */
static size_t mk_alloc_size(char *base, bool *committed) {
    char *p = base;
    bool any = false;
    MEMORY_BASIC_INFORMATION mbi;
    while (VirtualQuery(p, &mbi, sizeof mbi) != 0 && mbi.AllocationBase == base &&
           mbi.State != MEM_FREE) {
        any = any || mbi.State == MEM_COMMIT;
        p = (char *)mbi.BaseAddress + mbi.RegionSize;
    }
    if (committed != NULL) *committed = any;
    return (size_t)(p - base);
}

/* Turn whatever occupies a piece of a reservation (a view, an allocation
 * made by commit) back into a placeholder, so that a view can replace it. */
static int mk_to_placeholder(char *p, size_t n, const MEMORY_BASIC_INFORMATION *mbi, void *arg) {
    (void)p, (void)n, (void)arg;
    char *base = mbi->AllocationBase;
    if (mbi->State == MEM_FREE) return MK_EINVAL; /* not inside a reservation */
    if (mbi->Type == MEM_MAPPED) {
        if (!mk_fn.unmap_view2(GetCurrentProcess(), base, MEM_PRESERVE_PLACEHOLDER))
            return mk_last();
        return MK_OK;
    }
    /* VirtualQuery cannot tell a placeholder from an ordinary reserved
     * allocation; for a placeholder this call fails and changes nothing, and
     * MapViewOfFile3 reports any piece that really is in the way. */
    (void)VirtualFree(base, mk_alloc_size(base, NULL), MEM_RELEASE | MEM_PRESERVE_PLACEHOLDER);
    return MK_OK;
}

/* Make cut a boundary between placeholders (splitting the one across it). */
static int mk_split_at(char *cut) {
    MEMORY_BASIC_INFORMATION mbi;
    if (VirtualQuery(cut, &mbi, sizeof mbi) == 0) return mk_last();
    char *base = mbi.AllocationBase;
    if (mbi.State == MEM_FREE || base == cut) return MK_OK;
    if (!VirtualFree(base, (size_t)(cut - base), MEM_RELEASE | MEM_PRESERVE_PLACEHOLDER))
        return mk_last();
    return MK_OK;
}

/* Make [at, at+len) exactly one placeholder: turn what is there back into
 * placeholders, cut at both ends, and join what lies between
 * (MEM_COALESCE_PLACEHOLDERS wants the exact span of whole placeholders). */
static int mk_make_placeholder(char *at, size_t len) {
    int rc = mk_each_piece(at, len, mk_to_placeholder, NULL);
    if (rc == MK_OK) rc = mk_split_at(at);
    if (rc == MK_OK) rc = mk_split_at(at + len);
    if (rc != MK_OK) return rc;
    MEMORY_BASIC_INFORMATION mbi;
    if (VirtualQuery(at, &mbi, sizeof mbi) == 0) return mk_last();
    if (mbi.RegionSize < len && !VirtualFree(at, len, MEM_RELEASE | MEM_COALESCE_PLACEHOLDERS))
        return mk_last();
    return MK_OK;
}

/* The allocation granularity (64 KiB): reservations and views start at its
 * multiples, and VirtualAlloc(MEM_RESERVE) rounds a start down to one. */
static size_t mk_granularity(void) {
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    return si.dwAllocationGranularity;
}

static char *mk_granularity_up(char *p) {
    uintptr_t g = mk_granularity();
    return (char *)(((uintptr_t)p + g - 1) / g * g);
}

/* What mk_map_fixed_plain frees: every allocation that meets [at, at+len),
 * in address order. The parts of them outside the new view are reserved
 * again after it is mapped; all of them are put back as they were when it
 * cannot be. A view, if any, is the first (it starts at at). */
enum { MK_PLAIN_MAX = 8 };
typedef struct {
    int n;
    char *base[MK_PLAIN_MAX];
    size_t size[MK_PLAIN_MAX]; /* the whole allocation */
    size_t view_len;           /* the old view's length to map again; 0: no view */
} mk_plain;

static bool mk_plain_is_view(const mk_plain *pl, int i) { return i == 0 && pl->view_len != 0; }

/* The length to map the old view at again: its page-rounded size, or the
 * whole section when that is shorter (a file whose size is not a multiple
 * of the page), since a view may not reach past its section. Asked before
 * anything is freed: mk_section_size may map a view of its own. */
static int mk_plain_view_len(HANDLE sec, size_t whole, size_t *out) {
    uint64_t sec_size = 0;
    int rc = mk_section_size(sec, &sec_size);
    if (rc != MK_OK) return rc;
    *out = sec_size < whole ? (size_t)sec_size : whole;
    return MK_OK;
}

/* Record the allocation mbi lies in, or refuse what could not be put back
 * after a failure: a view that does not start at at (the view at at is
 * the caller's old, shorter view of sec: os.h), an image, committed
 * private memory (its contents), more pieces than the plan holds. */
static int mk_plain_add(HANDLE sec, char *at, const MEMORY_BASIC_INFORMATION *mbi, mk_plain *pl) {
    char *base = mbi->AllocationBase;
    bool committed = false;
    size_t whole = mk_alloc_size(base, &committed);
    if (pl->n == MK_PLAIN_MAX) return MK_ENOTSUP;
    if (mbi->Type == MEM_MAPPED) {
        if (base != at) return MK_EINVAL;
        int rc = mk_plain_view_len(sec, whole, &pl->view_len);
        if (rc != MK_OK) return rc;
    } else if (mbi->Type != MEM_PRIVATE || committed) {
        return MK_ENOTSUP;
    }
    pl->base[pl->n] = base;
    pl->size[pl->n++] = whole;
    return MK_OK;
}

/* Fill the plan; changes nothing. */
static int mk_plain_survey(HANDLE sec, char *at, size_t len, mk_plain *pl) {
    pl->n = 0;
    pl->view_len = 0;
    for (char *p = at; p < at + len;) {
        MEMORY_BASIC_INFORMATION mbi;
        if (VirtualQuery(p, &mbi, sizeof mbi) == 0) return mk_last();
        p = (char *)mbi.BaseAddress + mbi.RegionSize;
        if (mbi.State == MEM_FREE) continue;
        int rc = mk_plain_add(sec, at, &mbi, pl);
        if (rc != MK_OK) return rc;
        p = pl->base[pl->n - 1] + pl->size[pl->n - 1];
    }
    return MK_OK;
}

/* Put back the first n planned allocations as they were: the old view
 * (same section, length and address, so the caller's pointers and data
 * hold) and the reservations. Their addresses were free a moment ago and
 * were valid starts before, so only another thread of this process that
 * allocated there meanwhile makes this fail. */
static bool mk_plain_restore(HANDLE sec, const mk_plain *pl, int n) {
    bool ok = true;
    for (int i = 0; i < n; i++) {
        void *p = mk_plain_is_view(pl, i)
                      ? mk_view(sec, pl->view_len, pl->base[i])
                      : VirtualAlloc(pl->base[i], pl->size[i], MEM_RESERVE, PAGE_NOACCESS);
        if (p != pl->base[i]) ok = false;
    }
    return ok;
}

/* Free the planned allocations; on failure put back those already freed. */
static int mk_plain_free(HANDLE sec, const mk_plain *pl) {
    for (int i = 0; i < pl->n; i++) {
        BOOL ok = mk_plain_is_view(pl, i) ? UnmapViewOfFile(pl->base[i])
                                          : VirtualFree(pl->base[i], 0, MEM_RELEASE);
        if (!ok) {
            int rc = mk_last();
            (void)mk_plain_restore(sec, pl, i); /* rc says why; see mk_map_fixed_plain */
            return rc;
        }
    }
    return MK_OK;
}

/* With the new view at [at, at+len): reserve again what the freed
 * allocations held before at and after the view. The tail starts at the
 * first granularity boundary at or after the view's end, as a reservation
 * starting inside the view's last 64 KiB would be rounded down onto the
 * view and refused; the pages in between stay unusable, since no
 * allocation can start there (VirtualQuery shows them MEM_FREE). On
 * failure nothing is left reserved. */
static int mk_plain_rereserve(const mk_plain *pl, char *at, size_t len) {
    if (pl->n == 0) return MK_OK;
    char *head = pl->base[0], *tail = mk_granularity_up(at + len);
    char *last = pl->base[pl->n - 1] + pl->size[pl->n - 1];
    if (head < at && VirtualAlloc(head, (size_t)(at - head), MEM_RESERVE, PAGE_NOACCESS) == NULL)
        return mk_last();
    if (tail < last &&
        VirtualAlloc(tail, (size_t)(last - tail), MEM_RESERVE, PAGE_NOACCESS) == NULL) {
        int rc = mk_last();
        if (head < at) VirtualFree(head, 0, MEM_RELEASE);
        return rc;
    }
    return MK_OK;
}

/* Map a view at a fixed address without placeholders (Windows before 10
 * 1803, Wine 8): free what lies in [at, at+len) -- the old view, the
 * reserved pages --, map the view there and reserve again what the freed
 * reservations held outside it. What could not be put back is refused
 * before anything is freed (mk_plain_add). When the view cannot be mapped
 * (longer than the section; the range taken), everything freed is put
 * back, so the caller's old mapping and its reservation are as before.
 * Not atomic: between the free and the map another thread of this
 * process may allocate in the range; the map then fails, and if that
 * thread holds what must be put back, the old view or part of the
 * reservation stays missing. Callers hold their segment lock, which keeps
 * out only this layer's own remapping. */
static int mk_map_fixed_plain(HANDLE sec, char *at, size_t len, void **out) {
    /* MapViewOfFileEx refuses other addresses: say so before freeing. */
    if ((uintptr_t)at % mk_granularity() != 0) return MK_EINVAL;
    mk_plain pl;
    int rc = mk_plain_survey(sec, at, len, &pl);
    if (rc == MK_OK) rc = mk_plain_free(sec, &pl);
    if (rc != MK_OK) return rc;
    void *v = mk_view(sec, len, at);
    rc = v == NULL ? mk_last() : mk_plain_rereserve(&pl, at, len);
    if (rc == MK_OK) {
        *out = v;
        return MK_OK;
    }
    if (v != NULL) UnmapViewOfFile(v);
    (void)mk_plain_restore(sec, &pl, pl.n); /* rc says why it failed; see above */
    return rc;
}

/* A view of [0, len) into the placeholder [at, at+len), which must be
 * exactly that long (MEM_REPLACE_PLACEHOLDER); read-write if the handle
 * allows it (mk_view says why). */
static void *mk_view_into(HANDLE sec, char *at, size_t len) {
    void *v = mk_fn.map_view3(sec, GetCurrentProcess(), at, 0, len, MEM_REPLACE_PLACEHOLDER,
                              PAGE_READWRITE, NULL, 0);
    if (v == NULL && GetLastError() == ERROR_ACCESS_DENIED)
        v = mk_fn.map_view3(sec, GetCurrentProcess(), at, 0, len, MEM_REPLACE_PLACEHOLDER,
                            PAGE_READONLY, NULL, 0);
    return v;
}

/* The length of the view that starts at at (its whole, page-rounded
 * size), 0 if no view starts there. */
static size_t mk_view_at(char *at) {
    MEMORY_BASIC_INFORMATION mbi;
    if (VirtualQuery(at, &mbi, sizeof mbi) == 0 || mbi.Type != MEM_MAPPED ||
        mbi.AllocationBase != at)
        return 0;
    return mk_alloc_size(at, NULL);
}

/* With placeholders. UNTESTED: Wine 8 has none (file comment), so this
 * has only been compiled. Growing in place turns the caller's old view at
 * at back into a placeholder before the longer view is mapped; when that
 * fails (longer than the section, out of memory), the old view is mapped
 * again, from sec, into a placeholder of its old size (the size
 * MEM_REPLACE_PLACEHOLDER wants), because the caller keeps using it
 * (os.h; map_to in shm.c). The data live in the section, not in the view,
 * so nothing is lost. Committed private pages in the range are not put
 * back: callers map only over reserved pages and their own view. */
static int mk_map_fixed(HANDLE sec, char *at, size_t len, void **out) {
    if (!mk_have_placeholders()) return mk_map_fixed_plain(sec, at, len, out);
    size_t old = mk_view_at(at); /* before anything changes */
    int rc = mk_make_placeholder(at, len);
    void *v = rc == MK_OK ? mk_view_into(sec, at, len) : NULL;
    if (rc == MK_OK && v == NULL) rc = mk_last();
    if (rc == MK_OK) {
        *out = v;
        return MK_OK;
    }
    if (old != 0 && mk_view_at(at) == 0) {
        int os_err = mk_last_os_error(); /* the failure's, not the repair's */
        if (mk_make_placeholder(at, old) == MK_OK) (void)mk_view_into(sec, at, old);
        (void)mk__os_fail(os_err);
    }
    return rc;
}

static int mk_map_from(HANDLE sec, void *at, size_t len, void **out) {
    if (at != NULL) return mk_map_fixed(sec, at, len, out);
    void *v = mk_view(sec, len, NULL);
    if (v == NULL) return mk_last();
    *out = v;
    return MK_OK;
}

int mk__os_shm_map(const mk__os_shm *shm, void *at, size_t len, void **out) {
    if (shm == NULL || shm->handle == -1 || len == 0 || out == NULL) return MK_EINVAL;
    if ((uintptr_t)at % mk__os_page_size() != 0) return MK_EINVAL;
    if (shm->is_file && shm->handle2 == -1) return MK_EINVAL; /* empty file */
    if (!shm->is_file || len <= shm->size) return mk_map_from(mk_section(shm), at, len, out);
    /* Another handle (process) grew the file past the size this handle's
     * mapping object covers, and a view cannot reach past its section:
     * map from one made for the file as it is now. The view keeps that
     * section alive, so its handle is closed at once. */
    HANDLE sec = NULL;
    int rc = mk_file_mapping(mk_h(shm->handle), false, len, &sec);
    if (rc != MK_OK) return rc;
    rc = mk_map_from(sec, at, len, out);
    CloseHandle(sec);
    return rc;
}

int mk__os_shm_map_more(const mk__os_shm *shm, void *at, size_t mapped, size_t len, void **out) {
    (void)mapped; /* a view is mapped whole, as mk__os_shm_map always did */
    return mk__os_shm_map(shm, at, len, out);
}

int mk__os_shm_unmap(void *addr, size_t len) {
    (void)len; /* a view is unmapped whole */
    if (!UnmapViewOfFile(addr)) return mk_last();
    return MK_OK;
}

int mk__os_shm_flush(void *addr, size_t len) {
    if (!FlushViewOfFile(addr, len)) return mk_last();
    return MK_OK;
}

void mk__os_shm_close(mk__os_shm *shm) {
    if (shm == NULL || shm->handle == -1) return;
    if (shm->handle2 != -1) CloseHandle(mk_h(shm->handle2));
    CloseHandle(mk_h(shm->handle));
    shm->handle = shm->handle2 = -1;
}

int mk__os_shm_unlink(const char *name) {
    /* Sections have no name to remove: they die with their last handle. */
    return mk_shm_name_ok(name) ? MK_OK : MK_EINVAL;
}

int mk__os_file_unlink(const char *path) {
    wchar_t wpath[MK_WPATH_MAX];
    if (path == NULL || path[0] == '\0' || !mk_widen(L"", path, wpath, MK_WPATH_MAX))
        return MK_EINVAL;
    if (!DeleteFileW(wpath)) return mk_last();
    return MK_OK;
}

int mk__os_shm_list(const char *prefix, void (*fn)(const char *name, void *arg), void *arg) {
    (void)prefix, (void)fn, (void)arg;
    return MK_ENOTSUP;
}

/* ---- process-shared robust mutex ------------------------------------------------ */

#define MK_WMUTEX_MAGIC 0x4d4b574du /* "MKWM" */
#define MK_WMUTEX_NAME  40
#define MK_WMUTEX_CACHE 64

enum { MK_WM_OK = 0, MK_WM_DIRTY = 1, MK_WM_DEAD = 2 };

/* What mk__os_mutex holds on Win32. state and owner are written only by
 * the thread holding the kernel mutex, so they need no atomics of their own. */
struct mk_wmutex {
    uint32_t magic;
    uint32_t shared;
    volatile LONG state;  /* MK_WM_*: owner died / left unrepaired */
    volatile DWORD owner; /* thread id of the holder, 0 when free */
    uint64_t local;       /* !shared: the HANDLE, valid in this process only */
    char name[MK_WMUTEX_NAME];
};

static_assert(sizeof(struct mk_wmutex) <= MK__OS_MUTEX_BYTES, "mk_wmutex must fit mk__os_mutex");

static struct mk_wmutex *mk_wm(mk__os_mutex *m) { return (struct mk_wmutex *)(void *)m->opaque; }

/* Per-process HANDLEs of shared mutexes, by name: the storage is shared and
 * cannot hold a HANDLE, which is only valid in the process that opened it.
 * refs counts this process's attachments (mk__os_mutex_attach), one per
 * user such as a segment handle: a process may hold several handles to one
 * segment, and its threads may lock through any of them, so the HANDLE is
 * closed, and the entry freed, only by the last detach. kept: a call
 * without an attachment opened the entry, so it stays after the last
 * detach, until destroy (such callers never say when they are done).
 * h == NULL: a free entry. */
static struct {
    char name[MK_WMUTEX_NAME];
    HANDLE h;
    uint32_t refs;
    bool kept;
} mk_wm_cache[MK_WMUTEX_CACHE];
static SRWLOCK mk_wm_lock = SRWLOCK_INIT;

static int mk_wm_open(const char *name, HANDLE *out) {
    wchar_t wname[MK_WMUTEX_NAME + 32];
    if (!mk_widen(L"Local\\memkit.mutex.", name, wname, MK_WMUTEX_NAME + 32)) return MK_EINVAL;
    HANDLE h = CreateMutexW(NULL, FALSE, wname); /* opens it if it exists */
    if (h == NULL) return mk_last();
    *out = h;
    return MK_OK;
}

/* Copy the name out of the shared storage, which another process could
 * change under us: only the copy is checked and used. */
static bool mk_wm_name_of(const struct mk_wmutex *w, char out[MK_WMUTEX_NAME]) {
    memcpy(out, w->name, MK_WMUTEX_NAME);
    return memchr(out, '\0', MK_WMUTEX_NAME) != NULL && out[0] != '\0';
}

/* The entry of name, -1 if none; *free_slot (when not NULL) gets the first
 * free entry, -1 if none. The caller holds mk_wm_lock. */
static int mk_wm_find(const char *name, int *free_slot) {
    if (free_slot != NULL) *free_slot = -1;
    for (int i = 0; i < MK_WMUTEX_CACHE; i++) {
        if (mk_wm_cache[i].h != NULL) {
            if (strcmp(mk_wm_cache[i].name, name) == 0) return i;
        } else if (free_slot != NULL && *free_slot < 0) {
            *free_slot = i;
        }
    }
    return -1;
}

/* The caller holds mk_wm_lock. */
static void mk_wm_free(int i) {
    CloseHandle(mk_wm_cache[i].h);
    mk_wm_cache[i].h = NULL;
    mk_wm_cache[i].refs = 0;
    mk_wm_cache[i].kept = false;
}

/* This process's HANDLE of the shared mutex w, opened if it has none yet;
 * attach: count a new attachment, else a use without one (kept). */
static int mk_wm_entry(const struct mk_wmutex *w, bool attach, HANDLE *out) {
    char name[MK_WMUTEX_NAME];
    if (!mk_wm_name_of(w, name)) return MK_EINVAL;
    int rc = MK_OK, free_slot;
    AcquireSRWLockExclusive(&mk_wm_lock);
    int i = mk_wm_find(name, &free_slot);
    if (i < 0 && free_slot < 0) rc = MK_ENOMEM;
    if (i < 0 && free_slot >= 0 && (rc = mk_wm_open(name, &mk_wm_cache[free_slot].h)) == MK_OK) {
        i = free_slot;
        memcpy(mk_wm_cache[i].name, name, MK_WMUTEX_NAME);
        mk_wm_cache[i].kept = !attach;
    }
    if (rc == MK_OK) {
        if (attach) mk_wm_cache[i].refs++;
        *out = mk_wm_cache[i].h;
    }
    ReleaseSRWLockExclusive(&mk_wm_lock);
    return rc;
}

/* The HANDLE of m in this process, opened on first use. */
static int mk_wm_handle(struct mk_wmutex *w, HANDLE *out) {
    if (!w->shared) {
        *out = (HANDLE)(uintptr_t)w->local;
        return MK_OK;
    }
    return mk_wm_entry(w, false, out);
}

static uint64_t mk_fnv1a(uint64_t h, const void *p, size_t n) {
    for (const unsigned char *c = p; n > 0; n--) h = (h ^ *c++) * 0x100000001b3u;
    return h;
}

/* The kernel mutex's name, which the storage keeps: 16 hex digits of a
 * hash of name and of its full path (GetFullPathNameW), so that no length
 * or character of a segment's name or file path matters (a path's '\\'
 * would separate kernel namespaces). Every process that opens the segment
 * reads the name from the storage, so all of them meet at one kernel
 * mutex however they spelled the path; it need only differ between
 * mutexes alive at the same time. The full path tells apart files of one
 * relative name in different directories; the name itself tells apart
 * names that GetFullPathNameW folds into one ("x." and "x"). With 64 bits
 * a collision is negligible. Not random: a segment made again under its
 * name finds the entry of the old one if this process still keeps it. */
static void mk_wm_name(const char *name, char out[MK_WMUTEX_NAME]) {
    wchar_t wname[MK_WPATH_MAX], full[MK_WPATH_MAX];
    uint64_t h = mk_fnv1a(0xcbf29ce484222325u, name, strlen(name) + 1);
    DWORD n = mk_widen(L"", name, wname, MK_WPATH_MAX)
                  ? GetFullPathNameW(wname, MK_WPATH_MAX, full, NULL)
                  : 0;
    if (n > 0 && n < MK_WPATH_MAX) h = mk_fnv1a(h, full, n * sizeof *full);
    for (int i = 0; i < 16; i++) out[i] = "0123456789abcdef"[(h >> (60 - 4 * i)) & 15];
    out[16] = '\0';
}

int mk__os_mutex_init(mk__os_mutex *m, bool shared, const char *name) {
    if (m == NULL) return MK_EINVAL;
    memset(m, 0, sizeof *m);
    struct mk_wmutex *w = mk_wm(m);
    w->shared = shared;
    if (shared) {
        if (name == NULL || name[0] == '\0') return MK_EINVAL;
        mk_wm_name(name, w->name);
        /* Fail now if the kernel object cannot be made; but keep no
         * HANDLE: each user attaches, and an entry left here would outlive
         * them all. */
        HANDLE h = NULL;
        int rc = mk_wm_open(w->name, &h);
        if (rc != MK_OK) return rc;
        CloseHandle(h);
    } else {
        HANDLE h = CreateMutexW(NULL, FALSE, NULL);
        if (h == NULL) return mk_last();
        w->local = (uint64_t)(uintptr_t)h;
    }
    w->magic = MK_WMUTEX_MAGIC;
    return MK_OK;
}

/* Turn the result of a wait into a lock result; the caller holds the kernel
 * mutex after WAIT_OBJECT_0 and WAIT_ABANDONED. */
static int mk_wm_acquired(struct mk_wmutex *w, HANDLE h, DWORD r) {
    switch (r) {
    case WAIT_ABANDONED:
        w->state = MK_WM_DIRTY;
        break; /* the owner died holding it */
    case WAIT_OBJECT_0:
        /* Every unlock clears owner first. Still set by another thread, it
         * names a holder that died while no other process had the kernel
         * mutex open: the object, and its abandonment, died with it. */
        if (w->owner != 0 && w->owner != GetCurrentThreadId()) w->state = MK_WM_DIRTY;
        break;
    case WAIT_TIMEOUT:
        return MK_EBUSY;
    default:
        return mk_last();
    }
    if (w->state == MK_WM_DEAD) {
        ReleaseMutex(h);
        return MK_ENOTRECOVERABLE;
    }
    w->owner = GetCurrentThreadId();
    /* DIRTY also when the previous owner got EOWNERDEAD and then died too. */
    return w->state == MK_WM_DIRTY ? MK_EOWNERDEAD : MK_OK;
}

static int mk_wm_wait(mk__os_mutex *m, DWORD ms) {
    struct mk_wmutex *w = mk_wm(m);
    if (w->magic != MK_WMUTEX_MAGIC) return MK_EINVAL;
    HANDLE h = NULL;
    int rc = mk_wm_handle(w, &h);
    if (rc != MK_OK) return rc;
    DWORD r = WaitForSingleObject(h, ms);
    if (r == WAIT_OBJECT_0 && w->owner == GetCurrentThreadId()) {
        /* This thread holds it already: a kernel mutex counts a recursive
         * acquisition, POSIX's error-checking mutex refuses one, and so does
         * this (else the inner unlock clears owner and the outer one fails,
         * leaving the mutex held for good). The count goes back; the lock
         * stays held once. As POSIX: MK_EBUSY from trylock, MK_EOS from lock. */
        ReleaseMutex(h);
        if (ms == 0) return MK_EBUSY;
        return mk_err(ERROR_POSSIBLE_DEADLOCK);
    }
    return mk_wm_acquired(w, h, r);
}

int mk__os_mutex_lock(mk__os_mutex *m) { return mk_wm_wait(m, INFINITE); }

int mk__os_mutex_trylock(mk__os_mutex *m) { return mk_wm_wait(m, 0); }

int mk__os_mutex_consistent(mk__os_mutex *m) {
    struct mk_wmutex *w = mk_wm(m);
    if (w->owner != GetCurrentThreadId() || w->state != MK_WM_DIRTY) return MK_EINVAL;
    w->state = MK_WM_OK;
    return MK_OK;
}

int mk__os_mutex_unlock(mk__os_mutex *m) {
    struct mk_wmutex *w = mk_wm(m);
    HANDLE h = NULL;
    if (w->owner != GetCurrentThreadId()) return MK_EPERM;
    int rc = mk_wm_handle(w, &h);
    if (rc != MK_OK) return rc;
    LONG state = w->state;
    /* Unlocked without repair: nobody may use the data again. */
    if (state == MK_WM_DIRTY) w->state = MK_WM_DEAD;
    w->owner = 0;
    if (!ReleaseMutex(h)) {
        /* owner was a stale id of a dead thread that this one reuses */
        w->state = state;
        return GetLastError() == ERROR_NOT_OWNER ? MK_EPERM : mk_last();
    }
    return MK_OK;
}

void mk__os_mutex_destroy(mk__os_mutex *m) {
    struct mk_wmutex *w = mk_wm(m);
    if (w->magic != MK_WMUTEX_MAGIC) return;
    if (!w->shared) {
        CloseHandle((HANDLE)(uintptr_t)w->local);
    } else {
        char name[MK_WMUTEX_NAME];
        AcquireSRWLockExclusive(&mk_wm_lock);
        int i = mk_wm_name_of(w, name) ? mk_wm_find(name, NULL) : -1;
        if (i >= 0) mk_wm_free(i);
        ReleaseSRWLockExclusive(&mk_wm_lock);
    }
    w->magic = 0;
}

int mk__os_mutex_attach(mk__os_mutex *m) {
    if (m == NULL) return MK_EINVAL;
    struct mk_wmutex *w = mk_wm(m);
    if (w->magic != MK_WMUTEX_MAGIC) return MK_EINVAL;
    if (!w->shared) return MK_OK; /* the storage holds its HANDLE */
    HANDLE h = NULL;
    return mk_wm_entry(w, true, &h);
}

void mk__os_mutex_detach(mk__os_mutex *m) {
    if (m == NULL) return;
    struct mk_wmutex *w = mk_wm(m);
    char name[MK_WMUTEX_NAME];
    if (w->magic != MK_WMUTEX_MAGIC || !w->shared || !mk_wm_name_of(w, name)) return;
    AcquireSRWLockExclusive(&mk_wm_lock);
    int i = mk_wm_find(name, NULL);
    if (i >= 0 && mk_wm_cache[i].refs > 0 && --mk_wm_cache[i].refs == 0 && !mk_wm_cache[i].kept)
        mk_wm_free(i);
    ReleaseSRWLockExclusive(&mk_wm_lock);
}

/* ---- wait / wake on a 32-bit word ----------------------------------------------- */

/* Nanoseconds to a Win32 timeout in milliseconds, rounded up so that a wait
 * never ends early; negative means no limit. */
static DWORD mk_ms(int64_t ns) {
    if (ns < 0) return INFINITE;
    int64_t ms = (ns + 999999) / 1000000;
    return ms >= (int64_t)INFINITE ? INFINITE - 1 : (DWORD)ms;
}

static uint32_t mk_load32(const uint32_t *addr) {
    return atomic_load_explicit((const _Atomic uint32_t *)(const void *)addr, memory_order_acquire);
}

/* Cross-process stand-in: poll until the word changes or time runs out
 * (see the file comment). */
static int mk_wait_poll(const uint32_t *addr, uint32_t expected, int64_t timeout_ns) {
    uint64_t start = mk__os_now_ns();
    for (unsigned i = 0; mk_load32(addr) == expected; i++) {
        uint64_t spent = mk__os_now_ns() - start;
        if (timeout_ns >= 0 && spent >= (uint64_t)timeout_ns) return MK_ETIMEDOUT;
        Sleep(i < 16 ? 0 : 1);
    }
    return MK_OK;
}

int mk__os_wait32(const uint32_t *addr, uint32_t expected, int64_t timeout_ns, bool shared) {
    mk_fn_init();
    if (shared || mk_fn.wait_on_address == NULL) return mk_wait_poll(addr, expected, timeout_ns);
    /* WaitOnAddress returns at once when the word already differs. */
    if (mk_fn.wait_on_address((volatile VOID *)addr, &expected, sizeof expected, mk_ms(timeout_ns)))
        return MK_OK;
    DWORD e = GetLastError();
    return e == ERROR_TIMEOUT ? MK_ETIMEDOUT : mk__os_fail((int)e);
}

int mk__os_wake32(const uint32_t *addr, int n, bool shared) {
    mk_fn_init();
    if (shared || mk_fn.wake_all == NULL) return 0; /* pollers see the change themselves */
    if (n < 0) {
        mk_fn.wake_all((PVOID)addr);
    } else {
        for (int i = 0; i < n; i++) mk_fn.wake_single((PVOID)addr);
    }
    return 0; /* WakeByAddress does not say how many it woke */
}

/* FlushProcessWriteBuffers reaches only the calling process: no barrier
 * across processes, so publishers keep their seq_cst stores. */
int mk__os_barrier_register(void) { return MK_ENOTSUP; }
int mk__os_heavy_barrier(void) { return MK_ENOTSUP; }

/* ---- processes, threads, time ---------------------------------------------------- */

uint64_t mk__os_thread_id(void) { return GetCurrentThreadId(); }

uint64_t mk__os_process_id(void) { return GetCurrentProcessId(); }

int mk__os_fork_watch(void) { return MK_OK; } /* no fork() on Windows */
_Atomic uint64_t mk__os_fork_counter;         /* never changes */
static const char never_single = 0;           /* no such flag: always lock */
const volatile char *mk__os_single_thread_flag = &never_single;

static uint64_t mk_filetime(FILETIME ft) {
    return ((uint64_t)ft.dwHighDateTime << 32) | ft.dwLowDateTime;
}

static int mk_open_process(uint64_t pid, DWORD access, HANDLE *out) {
    if (pid == 0 || pid > 0xffffffffu) return MK_ENOENT;
    HANDLE h = OpenProcess(access, FALSE, (DWORD)pid);
    if (h != NULL) {
        *out = h;
        return MK_OK;
    }
    DWORD e = GetLastError();
    /* OpenProcess says "invalid parameter" for a pid that does not exist. */
    return e == ERROR_INVALID_PARAMETER ? MK_ENOENT : mk_err(e);
}

int mk__os_process_start_time(uint64_t pid, uint64_t *out) {
    if (out == NULL) return MK_EINVAL;
    HANDLE h = NULL;
    int rc = mk_open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION, &h);
    if (rc != MK_OK) return rc;
    FILETIME created, exited, kernel, user;
    BOOL ok = GetProcessTimes(h, &created, &exited, &kernel, &user);
    if (ok) *out = mk_filetime(created);
    rc = ok ? MK_OK : mk_last();
    CloseHandle(h);
    return rc;
}

bool mk__os_process_alive(uint64_t pid, uint64_t start_time) {
    HANDLE h = NULL;
    int rc = mk_open_process(pid, PROCESS_QUERY_LIMITED_INFORMATION | SYNCHRONIZE, &h);
    if (rc == MK_EPERM) return true; /* see the file comment */
    if (rc != MK_OK) return false;
    FILETIME created, exited, kernel, user;
    /* An exited process whose handle someone still holds is signalled: the
     * Win32 counterpart of a zombie. */
    bool alive = GetProcessTimes(h, &created, &exited, &kernel, &user) &&
                 mk_filetime(created) == start_time && WaitForSingleObject(h, 0) == WAIT_TIMEOUT;
    CloseHandle(h);
    return alive;
}

uint64_t mk__os_now_ns(void) {
    LARGE_INTEGER c, f;
    QueryPerformanceCounter(&c);
    QueryPerformanceFrequency(&f);
    uint64_t cnt = (uint64_t)c.QuadPart, freq = (uint64_t)f.QuadPart;
    /* Split to avoid overflowing cnt * 1e9. */
    return cnt / freq * 1000000000u + cnt % freq * 1000000000u / freq;
}

static uint64_t mk_mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/* Only when BCryptGenRandom cannot be had: not cryptographic, but differs
 * between processes, runs and calls. */
static void mk_random_fallback(unsigned char *p, size_t len) {
    static _Atomic uint64_t counter;
    uint64_t s = mk__os_now_ns() ^ GetTickCount64() << 20;
    s ^= mk_mix64((uint64_t)(uintptr_t)&counter) ^ mk_mix64((uint64_t)(uintptr_t)p);
    s ^= mk_mix64((uint64_t)GetCurrentProcessId() << 32 ^ GetCurrentThreadId());
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
    enum { SYSTEM_PREFERRED_RNG = 2 }; /* BCRYPT_USE_SYSTEM_PREFERRED_RNG */
    unsigned char *p = buf;
    mk_fn_init();
    while (len > 0 && mk_fn.gen_random != NULL) {
        ULONG k = len > 0x10000000u ? 0x10000000u : (ULONG)len;
        if (mk_fn.gen_random(NULL, p, k, SYSTEM_PREFERRED_RNG) < 0) break;
        p += k;
        len -= k;
    }
    if (len > 0) mk_random_fallback(p, len);
}

void mk__os_yield(void) { (void)SwitchToThread(); }

/* ---- process heap support --------------------------------------------------- */

int mk__os_alloc_aligned(size_t size, size_t align, void **out) {
    if (size == 0 || out == NULL || (align & (align - 1)) != 0) return MK_EINVAL;
    if (align <= 65536) return mk__os_alloc(size, out); /* allocation granularity */
    if (size > SIZE_MAX - align) return MK_ENOMEM;
    /* No partial release on Win32: find an aligned hole by reserving the
     * padded size, freeing it and allocating at the aligned address inside
     * it; another thread may take the hole meanwhile, so retry. */
    for (int tries = 0; tries < 16; tries++) {
        char *raw = VirtualAlloc(NULL, size + align, MEM_RESERVE, PAGE_NOACCESS);
        if (raw == NULL) return mk_last();
        uintptr_t a = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
        VirtualFree(raw, 0, MEM_RELEASE);
        void *p = VirtualAlloc((void *)a, size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
        if (p != NULL) {
            *out = p;
            return MK_OK;
        }
    }
    return MK_ENOMEM;
}

int mk__os_resize_inplace(void *addr, size_t old_size, size_t new_size) {
    (void)addr, (void)old_size, (void)new_size;
    return MK_ENOTSUP; /* no VirtualAlloc equivalent of mremap */
}

int mk__os_sbrk(intptr_t increment, void **old_break) {
    (void)increment, (void)old_break;
    return MK_ENOTSUP; /* Win32 has no program break */
}

int mk__os_atfork(void (*prepare)(void), void (*parent)(void), void (*child)(void)) {
    (void)prepare, (void)parent, (void)child;
    return MK_OK; /* no fork on Win32 */
}

static DWORD mk_fls[MK__OS_EXIT_USERS] = {FLS_OUT_OF_INDEXES, FLS_OUT_OF_INDEXES};
static void (*mk_exit_fn[MK__OS_EXIT_USERS])(void *);

/* FLS callbacks run at thread exit with the slot's value (and at
 * FlsFree, which memkit never calls); one per user, as a callback gets
 * no index. */
static void WINAPI mk_fls_heap(void *value) {
    if (value != NULL && mk_exit_fn[MK__OS_EXIT_HEAP] != NULL) mk_exit_fn[MK__OS_EXIT_HEAP](value);
}
static void WINAPI mk_fls_shm(void *value) {
    if (value != NULL && mk_exit_fn[MK__OS_EXIT_SHM] != NULL) mk_exit_fn[MK__OS_EXIT_SHM](value);
}

int mk__os_thread_exit_init(unsigned user, void (*fn)(void *arg)) {
    if (user >= MK__OS_EXIT_USERS) return MK_EINVAL;
    mk_exit_fn[user] = fn;
    mk_fls[user] = FlsAlloc(user == MK__OS_EXIT_HEAP ? mk_fls_heap : mk_fls_shm);
    return mk_fls[user] == FLS_OUT_OF_INDEXES ? mk_last() : MK_OK;
}

int mk__os_thread_exit_arm(unsigned user, void *arg) {
    if (user >= MK__OS_EXIT_USERS || mk_fls[user] == FLS_OUT_OF_INDEXES) return MK_EINVAL;
    return FlsSetValue(mk_fls[user], arg) ? MK_OK : mk_last();
}

bool mk__os_getenv(const char *name, char *buf, size_t cap) {
    if (name == NULL) return false;
    DWORD n = GetEnvironmentVariableA(name, buf, (DWORD)cap);
    if (n == 0 && GetLastError() == ERROR_ENVVAR_NOT_FOUND) return false;
    if (cap && (n == 0 || n >= cap)) buf[0] = '\0'; /* empty, or too long: cut to empty */
    return true;
}

void mk__os_write_stderr(const char *msg, size_t len) {
    HANDLE h = GetStdHandle(STD_ERROR_HANDLE);
    DWORD w;
    while (len > 0 && h != NULL && h != INVALID_HANDLE_VALUE) {
        if (!WriteFile(h, msg, (DWORD)(len > 65536 ? 65536 : len), &w, NULL) || w == 0) return;
        msg += w;
        len -= w;
    }
}

uint64_t mk__os_page_faults(void) { return 0; /* GetProcessMemoryInfo needs psapi */ }
