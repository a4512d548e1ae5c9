/* Internal allocation entry points; see include/uvmqtt/alloc.h. */
#ifndef UVMQTT_SRC_ALLOC_H
#define UVMQTT_SRC_ALLOC_H

#include <stddef.h>

void *uvmqtt__malloc(size_t size);
void *uvmqtt__realloc(void *ptr, size_t size);
void *uvmqtt__calloc(size_t count, size_t size);
void uvmqtt__free(void *ptr);
/* Copies s[0 .. len) into a new NUL-terminated string; NULL on failure. */
char *uvmqtt__strndup(const char *s, size_t len);
/* NULL-safe strdup: returns NULL for NULL or on allocation failure. */
char *uvmqtt__strdup(const char *s);
void *uvmqtt__memdup(const void *p, size_t len);

#endif
