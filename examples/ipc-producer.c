/*
 * ipc-producer: sends messages to ipc-consumer through a lock-free SPSC
 * queue in a shared segment, both found by name. Start the two in any
 * order:
 *
 *   ./build/bin/ipc-consumer /memkit-ipc 100000 &
 *   ./build/bin/ipc-producer /memkit-ipc 100000
 *
 * The producer sends COUNT messages {seq, checksum, text}, then a last one
 * with seq 0. Both sides sum the checksums; the consumer publishes its sum
 * in a named atomic, and the producer exits 0 only if it matches its own.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "memkit/ipc.h"
#include "memkit/shm.h"

typedef struct message {
    uint64_t seq;
    uint64_t check;
    char text[48];
} message;

#define WAIT_NS ((int64_t)30 * 1000000000) /* a peer silent this long is gone */

static uint64_t checksum(uint64_t seq) { return seq * UINT64_C(0x9e3779b97f4a7c15) ^ (seq >> 7); }

static int fail(const char *what, int rc) {
    fprintf(stderr, "ipc-producer: %s: %s\n", what, mk_strerror(rc));
    return 1;
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "/memkit-ipc";
    uint64_t count = argc > 2 ? strtoull(argv[2], NULL, 0) : 100000;
    /* Either program may come first: create the segment or open it. */
    mk_shm_config cfg = {.size = 1 << 20,
                         .flags = MK_SHM_OPEN_EXISTING | MK_SHM_REMOVE_ON_LAST_CLOSE};
    mk_shm *seg;
    int rc = mk_shm_create(name, &cfg, &seg);
    if (rc != MK_OK) return fail("segment", rc);
    mk_spsc *q;
    mk_atomic64 *done; /* the consumer's checksum + 1 once it has everything */
    rc = mk_spsc_create(seg, "messages", 1024, sizeof(message), 0, &q);
    if (rc != MK_OK) return fail("queue", rc);
    rc = mk_atomic64_create(seg, "consumer-sum", 0, 0, &done);
    if (rc != MK_OK) return fail("atomic", rc);

    uint64_t sum = 0;
    for (uint64_t seq = 1; seq <= count + 1; seq++) {
        message m = {.seq = seq <= count ? seq : 0};
        m.check = checksum(m.seq);
        snprintf(m.text, sizeof m.text, "message %" PRIu64, m.seq);
        sum += m.check;
        rc = mk_spsc_push_wait(q, &m, WAIT_NS); /* sleeps while the queue is full */
        if (rc != MK_OK) return fail("push", rc);
    }
    /* Wait for the consumer's verdict before closing (the segment goes
     * away with the last process). */
    uint64_t verdict = 0;
    for (int i = 0; i < 30000 && (verdict = mk_atomic64_load(done)) == 0; i++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    mk_spsc_close(q);
    mk_shm_close(seg);
    if (verdict != sum + 1) {
        fprintf(stderr, "ipc-producer: the consumer's checksum %s\n",
                verdict ? "differs" : "never came");
        return 1;
    }
    printf("ipc-producer: %" PRIu64 " messages sent and confirmed\n", count);
    return 0;
}
