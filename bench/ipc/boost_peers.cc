/*
 * The Boost.Lockfree peers of bench-ipc, behind a C interface (bench_ipc.c
 * is C; ck_ring's header is C only). Each queue lives in memory the caller
 * gives (MAP_SHARED before fork for the process runs), built in place.
 */
#include <cstddef>
#include <cstdint>
#include <new>

#include <boost/lockfree/queue.hpp>
#include <boost/lockfree/spsc_queue.hpp>

#include "bench_ipc.h"

namespace {
template <size_t N> struct blob { unsigned char b[N]; };
using spsc8 = boost::lockfree::spsc_queue<blob<8>, boost::lockfree::capacity<BENCH_CAP>>;
using spsc64 = boost::lockfree::spsc_queue<blob<64>, boost::lockfree::capacity<BENCH_CAP>>;
using mpmc8 = boost::lockfree::queue<uint64_t, boost::lockfree::fixed_sized<true>,
                                     boost::lockfree::capacity<BENCH_CAP>>;
} // namespace

extern "C" {
size_t boost_spsc_bytes(size_t elem) { return elem == 8 ? sizeof(spsc8) : sizeof(spsc64); }
void boost_spsc_init(void *mem, size_t elem) {
    if (elem == 8)
        new (mem) spsc8();
    else
        new (mem) spsc64();
}
int boost_spsc_push(void *q, size_t elem, const void *m) {
    if (elem == 8) return static_cast<spsc8 *>(q)->push(*static_cast<const blob<8> *>(m));
    return static_cast<spsc64 *>(q)->push(*static_cast<const blob<64> *>(m));
}
int boost_spsc_pop(void *q, size_t elem, void *m) {
    if (elem == 8) return static_cast<spsc8 *>(q)->pop(*static_cast<blob<8> *>(m));
    return static_cast<spsc64 *>(q)->pop(*static_cast<blob<64> *>(m));
}
size_t boost_mpmc_bytes(void) { return sizeof(mpmc8); }
void boost_mpmc_init(void *mem) { new (mem) mpmc8(); }
int boost_mpmc_push(void *q, uint64_t v) { return static_cast<mpmc8 *>(q)->bounded_push(v); }
int boost_mpmc_pop(void *q, uint64_t *v) { return static_cast<mpmc8 *>(q)->pop(*v); }
}
