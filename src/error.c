/* Error strings and the per-thread OS error slot. */
#include "memkit/error.h"

#include "os/os.h"

static _Thread_local int mk_os_errno;

int mk__os_fail(int os_errno) {
    mk_os_errno = os_errno;
    return MK_EOS;
}

int mk_last_os_error(void) { return mk_os_errno; }

const char *mk_strerror(int err) {
    switch (err) {
    case MK_OK:
        return "success";
    case MK_EINVAL:
        return "invalid argument";
    case MK_ENOMEM:
        return "out of memory: no free block is large enough";
    case MK_ETOOBIG:
        return "request larger than the region can ever hold";
    case MK_EALIGN:
        return "alignment is not a power of two or exceeds the page size";
    case MK_EBADOFF:
        return "not the start of a block (out of range or interior offset)";
    case MK_EDOUBLEFREE:
        return "block is already free (double free)";
    case MK_EBADMAGIC:
        return "not a memkit region (bad magic number)";
    case MK_EVERSION:
        return "memkit region of an unsupported layout version";
    case MK_ELAYOUT:
        return "memkit region written by an incompatible build (layout signature)";
    case MK_ETRUNCATED:
        return "mapping is smaller than the region it holds (truncated)";
    case MK_ECORRUPT:
        return "metadata is corrupted";
    case MK_EOS:
        return "operating-system call failed (see mk_last_os_error)";
    case MK_EOWNERDEAD:
        return "previous lock owner died while holding the lock";
    case MK_ENOTSUP:
        return "operation not supported here";
    case MK_EBUSY:
        return "resource busy";
    case MK_EEXIST:
        return "already exists";
    case MK_ENOENT:
        return "no such object";
    case MK_ETIMEDOUT:
        return "timed out";
    case MK_EPERM:
        return "permission denied";
    case MK_ENOTTOP:
        return "block is not the top of the stack";
    case MK_EPROTECTED:
        return "block is protected";
    case MK_ENOTRECOVERABLE:
        return "state cannot be recovered";
    case MK_ETYPE:
        return "named object has another type or layout";
    case MK_ECAPACITY:
        return "capacity is zero, not a power of two, or too large";
    case MK_EELEMSIZE:
        return "element size is invalid or does not match";
    case MK_EFULL:
        return "structure is full";
    case MK_EEMPTY:
        return "structure is empty";
    default:
        return "unknown error";
    }
}
