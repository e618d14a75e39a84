/*
 * Which sanitizer a test is built with, for the few checks a sanitizer
 * cannot run (each use says why). MK_TSAN is 1 under ThreadSanitizer.
 */
#ifndef MK_TESTS_SANITIZER_H
#define MK_TESTS_SANITIZER_H

#if defined(__SANITIZE_THREAD__)
#define MK_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MK_TSAN 1
#endif
#endif
#ifndef MK_TSAN
#define MK_TSAN 0
#endif

#endif
