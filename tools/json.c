/* Streaming JSON writer: see json.h. */
#include "json.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

void jw_init(jw *w, FILE *f) {
    memset(w, 0, sizeof *w);
    w->f = f;
    w->first[0] = true;
}

static void indent(jw *w) {
    for (int i = 0; i < w->depth; i++) fputs("  ", w->f);
}

static void put_string(jw *w, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', w->f);
    for (size_t i = 0; i < n; i++) {
        unsigned c = p[i];
        switch (c) {
        case '"':
            fputs("\\\"", w->f);
            break;
        case '\\':
            fputs("\\\\", w->f);
            break;
        case '\n':
            fputs("\\n", w->f);
            break;
        case '\r':
            fputs("\\r", w->f);
            break;
        case '\t':
            fputs("\\t", w->f);
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                fprintf(w->f, "\\u%04x", c);
            } else if (c < 0x80) {
                fputc((int)c, w->f);
            } else {
                /* Pass a well-formed UTF-8 sequence through; anything else
                 * would make the document invalid, so replace it. */
                size_t len = c >= 0xf0 && c < 0xf5   ? 4
                             : c >= 0xe0 && c < 0xf0 ? 3
                             : c >= 0xc2 && c < 0xe0 ? 2
                                                     : 0;
                bool ok = len > 0 && i + len <= n;
                for (size_t k = 1; ok && k < len; k++) ok = (p[i + k] & 0xc0) == 0x80;
                if (ok) {
                    fwrite(p + i, 1, len, w->f);
                    i += len - 1;
                } else {
                    fputs("\\ufffd", w->f);
                }
            }
        }
    }
    fputc('"', w->f);
}

/* Comma, newline and indentation before a member, then its key. */
static void member(jw *w, const char *key) {
    if (w->depth > 0) {
        if (!w->first[w->depth]) fputc(',', w->f);
        fputc('\n', w->f);
        indent(w);
    }
    w->first[w->depth] = false;
    if (key) {
        put_string(w, key, strlen(key));
        fputs(": ", w->f);
    }
}

static void open_(jw *w, const char *key, char c) {
    member(w, key);
    fputc(c, w->f);
    if (w->depth + 1 < JW_MAX_DEPTH) w->depth++;
    w->first[w->depth] = true;
}

static void close_(jw *w, char c) {
    bool empty = w->first[w->depth];
    if (w->depth > 0) w->depth--;
    if (!empty) {
        fputc('\n', w->f);
        indent(w);
    }
    fputc(c, w->f);
}

void jw_obj_begin(jw *w, const char *key) { open_(w, key, '{'); }
void jw_obj_end(jw *w) { close_(w, '}'); }
void jw_arr_begin(jw *w, const char *key) { open_(w, key, '['); }
void jw_arr_end(jw *w) { close_(w, ']'); }

void jw_strn(jw *w, const char *key, const char *val, size_t len) {
    member(w, key);
    put_string(w, val, len);
}

void jw_str(jw *w, const char *key, const char *val) {
    if (!val) {
        jw_null(w, key);
        return;
    }
    jw_strn(w, key, val, strlen(val));
}

void jw_u64(jw *w, const char *key, uint64_t val) {
    member(w, key);
    fprintf(w->f, "%" PRIu64, val);
}

void jw_i64(jw *w, const char *key, int64_t val) {
    member(w, key);
    fprintf(w->f, "%" PRId64, val);
}

void jw_bool(jw *w, const char *key, bool val) {
    member(w, key);
    fputs(val ? "true" : "false", w->f);
}

void jw_double(jw *w, const char *key, double val) {
    member(w, key);
    if (isfinite(val))
        fprintf(w->f, "%.6g", val);
    else
        fputs("null", w->f); /* JSON has no NaN or infinity */
}

void jw_null(jw *w, const char *key) {
    member(w, key);
    fputs("null", w->f);
}

void jw_finish(jw *w) {
    fputc('\n', w->f);
    fflush(w->f);
}
