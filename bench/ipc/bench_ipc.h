/* bench-ipc: the C interface of the Boost.Lockfree peers (boost_peers.cc). */
#ifndef BENCH_IPC_H
#define BENCH_IPC_H
#include <stddef.h>
#include <stdint.h>
#define BENCH_CAP 4096 /* capacity of every queue in the benchmark */
#ifdef __cplusplus
extern "C" {
#endif
size_t boost_spsc_bytes(size_t elem);
void boost_spsc_init(void *mem, size_t elem);
int boost_spsc_push(void *q, size_t elem, const void *m);
int boost_spsc_pop(void *q, size_t elem, void *m);
size_t boost_mpmc_bytes(void);
void boost_mpmc_init(void *mem);
int boost_mpmc_push(void *q, uint64_t v);
int boost_mpmc_pop(void *q, uint64_t *v);
#ifdef __cplusplus
}
#endif
#endif
