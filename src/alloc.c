/* The allocator in use: the hooks set by uvmqtt_replace_allocator() (libc
 * by default) behind uvmqtt__malloc and co., plus the string and memory
 * duplicators built on them. Every allocation of the library goes here. */
#include "alloc.h"

#include <stdlib.h>
#include <string.h>

#include "uvmqtt/alloc.h"
#include "uvmqtt/errors.h"

static struct {
  uvmqtt_malloc_func m;
  uvmqtt_realloc_func r;
  uvmqtt_calloc_func c;
  uvmqtt_free_func f;
} allocator = {malloc, realloc, calloc, free};

int uvmqtt_replace_allocator(uvmqtt_malloc_func malloc_func,
                             uvmqtt_realloc_func realloc_func,
                             uvmqtt_calloc_func calloc_func,
                             uvmqtt_free_func free_func) {
  if (!malloc_func || !realloc_func || !calloc_func || !free_func)
    return UVMQTT_EINVAL;
  allocator.m = malloc_func;
  allocator.r = realloc_func;
  allocator.c = calloc_func;
  allocator.f = free_func;
  return 0;
}

void *uvmqtt__malloc(size_t size) {
  return allocator.m(size ? size : 1);
}

void *uvmqtt__realloc(void *ptr, size_t size) {
  return allocator.r(ptr, size ? size : 1);
}

void *uvmqtt__calloc(size_t count, size_t size) {
  return allocator.c(count ? count : 1, size ? size : 1);
}

void uvmqtt__free(void *ptr) {
  if (ptr)
    allocator.f(ptr);
}

char *uvmqtt__strndup(const char *s, size_t len) {
  char *d = uvmqtt__malloc(len + 1);
  if (!d)
    return NULL;
  if (len)
    memcpy(d, s, len);
  d[len] = '\0';
  return d;
}

char *uvmqtt__strdup(const char *s) {
  return s ? uvmqtt__strndup(s, strlen(s)) : NULL;
}

void *uvmqtt__memdup(const void *p, size_t len) {
  void *d = uvmqtt__malloc(len);
  if (d && len)
    memcpy(d, p, len);
  return d;
}

void uvmqtt_free(void *ptr) {
  if (ptr)
    allocator.f(ptr);
}
