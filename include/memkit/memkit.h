/**
 * @file memkit.h
 * @brief memkit: one header for every part.
 *
 * - error.h   error codes and mk_strerror()
 * - region.h  the block engine: a heap in one range, addressed by offsets
 * - pool.h    a fixed pool with a chosen fit policy (pointers)
 * - stack.h   a stack (linear) allocator with markers
 * - slab.h    fixed-size objects in slabs
 * - shm.h     a heap in a named shared-memory segment, for many processes
 * - ipc.h     lock-free queues, ring, object pool, array, atomics (shared or private)
 */
#ifndef MEMKIT_H
#define MEMKIT_H

#define MK_VERSION_MAJOR  0
#define MK_VERSION_MINOR  1
#define MK_VERSION_PATCH  0
#define MK_VERSION_STRING "0.1.0"

#include "memkit/error.h"
#include "memkit/heap.h"
#include "memkit/ipc.h"
#include "memkit/pool.h"
#include "memkit/region.h"
#include "memkit/shm.h"
#include "memkit/slab.h"
#include "memkit/stack.h"

#endif
