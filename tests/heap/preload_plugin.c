/* A library the preload test dlopens: it allocates with the program's malloc
 * (ours under LD_PRELOAD) and has thread-local storage, whose blocks glibc
 * allocates with malloc when a thread first touches them. */
#include <stdlib.h>
#include <string.h>

char *plugin_make(const char *s);
void plugin_free(char *p);
int plugin_count(void);

static _Thread_local int calls;

char *plugin_make(const char *s) {
    calls++;
    char *p = malloc(strlen(s) + 1);
    if (p) strcpy(p, s);
    return p;
}

void plugin_free(char *p) { free(p); }

int plugin_count(void) { return calls; }
