/*
 * ipc-consumer: receives the messages of ipc-producer (see there) from the
 * SPSC queue "messages" of the segment given by name, checks each one's
 * order and checksum, and reports its checksum sum through the named
 * atomic "consumer-sum".
 *
 *   ./build/bin/ipc-consumer /memkit-ipc 100000
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memkit/ipc.h"
#include "memkit/shm.h"

typedef struct message {
    uint64_t seq;
    uint64_t check;
    char text[48];
} message;

#define WAIT_NS ((int64_t)30 * 1000000000)

static uint64_t checksum(uint64_t seq) { return seq * UINT64_C(0x9e3779b97f4a7c15) ^ (seq >> 7); }

static int fail(const char *what, int rc) {
    fprintf(stderr, "ipc-consumer: %s: %s\n", what, mk_strerror(rc));
    return 1;
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "/memkit-ipc";
    uint64_t count = argc > 2 ? strtoull(argv[2], NULL, 0) : 100000;
    mk_shm_config cfg = {.size = 1 << 20,
                         .flags = MK_SHM_OPEN_EXISTING | MK_SHM_REMOVE_ON_LAST_CLOSE};
    mk_shm *seg;
    int rc = mk_shm_create(name, &cfg, &seg);
    if (rc != MK_OK) return fail("segment", rc);
    mk_spsc *q;
    mk_atomic64 *done;
    rc = mk_spsc_create(seg, "messages", 1024, sizeof(message), 0, &q);
    if (rc != MK_OK) return fail("queue", rc);
    rc = mk_atomic64_create(seg, "consumer-sum", 0, 0, &done);
    if (rc != MK_OK) return fail("atomic", rc);

    uint64_t sum = 0, received = 0;
    for (;;) {
        message m;
        rc = mk_spsc_pop_wait(q, &m, WAIT_NS); /* sleeps while the queue is empty */
        if (rc != MK_OK) return fail("pop", rc);
        if (m.check != checksum(m.seq)) {
            fprintf(stderr, "ipc-consumer: message %" PRIu64 " is damaged\n", m.seq);
            return 1;
        }
        sum += m.check;
        if (m.seq == 0) break;
        if (m.seq != ++received) {
            fprintf(stderr, "ipc-consumer: got message %" PRIu64 ", expected %" PRIu64 "\n", m.seq,
                    received);
            return 1;
        }
        if (m.seq % 25000 == 0) printf("ipc-consumer: %s\n", m.text);
    }
    mk_atomic64_store(done, sum + 1);
    mk_spsc_close(q);
    mk_shm_close(seg);
    if (received != count) {
        fprintf(stderr, "ipc-consumer: %" PRIu64 " messages, expected %" PRIu64 "\n", received,
                count);
        return 1;
    }
    printf("ipc-consumer: %" PRIu64 " messages received in order, checksums agree\n", received);
    return 0;
}
