/*
 * Array: the common header line, then length * elem_size bytes of
 * elements, contiguous, from a line boundary. No synchronisation: element
 * access is plain memory access (see ipc.h).
 */
#include <stdlib.h>
#include <string.h>

#include "ds/ds_int.h"

struct mk_array {
    unsigned char *data;
    size_t length;
    size_t elem;
};

static size_t array_footprint(size_t n, size_t elem) {
    size_t total;
    if (n > SIZE_MAX / elem) return 0;
    return mk__ds_add(MK__DS_LINE, n * elem, &total) ? total : 0;
}

static const mk__ds_kind array_kind = {.type = MK_IPC_TYPE_ARRAY,
                                       .ctl_size = MK__DS_LINE,
                                       .min_capacity = 1,
                                       .max_capacity = MK_IPC_CAPACITY_MAX,
                                       .footprint = array_footprint};

static int make(const mk__ds_req *req, mk_array **out) {
    if (out == NULL) return MK_EINVAL;
    mk__ds_place pl;
    int rc = mk__ds_make(&array_kind, req, &pl);
    if (rc != MK_OK) return rc;
    mk_array *a = malloc(sizeof *a);
    if (a == NULL) return MK_ENOMEM;
    a->data = (unsigned char *)pl.hdr + MK__DS_LINE;
    a->length = (size_t)pl.hdr->capacity;
    a->elem = (size_t)pl.hdr->elem_size;
    *out = a;
    return MK_OK;
}

size_t mk_array_footprint(size_t length, size_t elem_size) {
    return mk__ds_footprint(&array_kind, length, elem_size);
}

int mk_array_create(mk_shm *s, const char *name, size_t length, size_t elem_size, unsigned flags,
                    mk_array **out) {
    return make(MK__DS_CREATE_REQ(s, name, length, elem_size, flags, NULL), out);
}

int mk_array_open(mk_shm *s, const char *name, size_t elem_size, mk_array **out) {
    return make(MK__DS_OPEN_REQ(s, name, elem_size), out);
}

int mk_array_init(void *buf, size_t size, size_t length, size_t elem_size, mk_array **out) {
    return make(MK__DS_INIT_REQ(buf, size, length, elem_size, NULL), out);
}

int mk_array_attach(void *buf, size_t size, size_t elem_size, mk_array **out) {
    return make(MK__DS_ATTACH_REQ(buf, size, elem_size), out);
}

void mk_array_close(mk_array *a) { free(a); }

size_t mk_array_length(const mk_array *a) { return a ? a->length : 0; }
size_t mk_array_elem_size(const mk_array *a) { return a ? a->elem : 0; }
void *mk_array_data(const mk_array *a) { return a ? a->data : NULL; }

void *mk_array_at(const mk_array *a, size_t i) {
    if (a == NULL || i >= a->length) return NULL;
    return a->data + i * a->elem;
}

int mk_array_get(const mk_array *a, size_t i, void *out) {
    if (a == NULL || out == NULL) return MK_EINVAL;
    if (i >= a->length) return MK_EBADOFF;
    memcpy(out, a->data + i * a->elem, a->elem);
    return MK_OK;
}

int mk_array_set(mk_array *a, size_t i, const void *in) {
    if (a == NULL || in == NULL) return MK_EINVAL;
    if (i >= a->length) return MK_EBADOFF;
    memcpy(a->data + i * a->elem, in, a->elem);
    return MK_OK;
}
