/**
 * @file error.h
 * @brief Error codes shared by every part of memkit, and mk_strerror().
 *
 * Every public function that can fail returns an int: MK_OK (0) on success
 * or one of the negative codes below. Library code never prints and never
 * exits; it reports through these codes.
 */
#ifndef MEMKIT_ERROR_H
#define MEMKIT_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/** Error codes. All failures are negative; MK_OK is zero. */
enum mk_error {
    MK_OK = 0,                /**< success */
    MK_EINVAL = -1,           /**< an argument is invalid (NULL, bad flag, bad policy) */
    MK_ENOMEM = -2,           /**< no free block is large enough (or out of memory) */
    MK_ETOOBIG = -3,          /**< the request is larger than the region could ever hold */
    MK_EALIGN = -4,           /**< alignment is not a power of two, or above the page size */
    MK_EBADOFF = -5,          /**< offset/pointer out of range or not the start of a block */
    MK_EDOUBLEFREE = -6,      /**< the block is already free */
    MK_EBADMAGIC = -7,        /**< the memory does not hold a memkit header (wrong magic) */
    MK_EVERSION = -8,         /**< header of another layout version */
    MK_ELAYOUT = -9,          /**< header written by a build with another layout signature */
    MK_ETRUNCATED = -10,      /**< the mapping is smaller than the header says */
    MK_ECORRUPT = -11,        /**< metadata failed a consistency check */
    MK_EOS = -12,             /**< an operating-system call failed (see mk_last_os_error) */
    MK_EOWNERDEAD = -13,      /**< the lock's previous owner died holding it */
    MK_ENOTSUP = -14,         /**< not supported by this policy or platform */
    MK_EBUSY = -15,           /**< resource busy (lock held, operation would block) */
    MK_EEXIST = -16,          /**< the named object already exists */
    MK_ENOENT = -17,          /**< no such named object */
    MK_ETIMEDOUT = -18,       /**< a timed wait expired */
    MK_EPERM = -19,           /**< permission denied */
    MK_ENOTTOP = -20,         /**< stack allocator: the block is not the top block */
    MK_EPROTECTED = -21,      /**< the block is protected and cannot be changed now */
    MK_ENOTRECOVERABLE = -22, /**< a crashed operation cannot be repaired */
    MK_ETYPE = -23,           /**< a named object exists with another type or layout */
    MK_ECAPACITY = -24,       /**< capacity is zero, not a power of two, or too large */
    MK_EELEMSIZE = -25,       /**< element size is zero, too large, or not the object's */
    MK_EFULL = -26,           /**< the structure is full (try again, or wait) */
    MK_EEMPTY = -27,          /**< the structure is empty (try again, or wait) */
};

/**
 * @brief A short English description of an error code.
 * @param err a value returned by a memkit function (MK_OK or an MK_E* code).
 * @return a static string; never NULL (unknown codes give "unknown error").
 */
const char *mk_strerror(int err);

/**
 * @brief The errno (or GetLastError) value of the last failed OS call made by
 *        memkit in this thread, for errors reported as MK_EOS.
 */
int mk_last_os_error(void);

#ifdef __cplusplus
}
#endif
#endif
