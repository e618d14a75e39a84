/*
 * Bit scans and counts on 64-bit words, shared by every layer above the
 * platform (the compilers memkit supports, gcc and clang, all have the
 * builtins; each is one instruction on x86-64 and arm64).
 */
#ifndef MK_BITS_H
#define MK_BITS_H

#include <stdint.h>

static inline int mk__clz64(uint64_t x) { return __builtin_clzll(x); } /* x != 0 */
static inline int mk__ctz64(uint64_t x) { return __builtin_ctzll(x); } /* x != 0 */
static inline int mk__popcount64(uint64_t x) { return __builtin_popcountll(x); }

#endif
