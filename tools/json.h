/*
 * A small streaming JSON writer for the memkit CLI: one document per run,
 * written as it is produced. The writer tracks nesting so that commas and
 * indentation come out right; strings are escaped (control bytes as \u00XX,
 * bytes >= 0x80 passed through, so UTF-8 stays UTF-8 and other bytes are
 * replaced by \ufffd to keep the document valid).
 */
#ifndef MEMKIT_TOOLS_JSON_H
#define MEMKIT_TOOLS_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JW_MAX_DEPTH 16

typedef struct jw {
    FILE *f;
    int depth;
    bool first[JW_MAX_DEPTH]; /* nothing written yet at this level */
} jw;

void jw_init(jw *w, FILE *f);
/* key is NULL inside arrays and for the top-level value. */
void jw_obj_begin(jw *w, const char *key);
void jw_obj_end(jw *w);
void jw_arr_begin(jw *w, const char *key);
void jw_arr_end(jw *w);
void jw_str(jw *w, const char *key, const char *val); /* NULL writes null */
void jw_strn(jw *w, const char *key, const char *val, size_t len);
void jw_u64(jw *w, const char *key, uint64_t val);
void jw_i64(jw *w, const char *key, int64_t val);
void jw_bool(jw *w, const char *key, bool val);
void jw_double(jw *w, const char *key, double val);
void jw_null(jw *w, const char *key);
/* Ends the document with a newline. */
void jw_finish(jw *w);

#endif
