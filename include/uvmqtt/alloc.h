/** @file
 * Allocator hooks. Every allocation uvmqtt makes (client, session, router,
 * transports) goes through these; the codec never allocates. */
#ifndef UVMQTT_ALLOC_H
#define UVMQTT_ALLOC_H

#include <stddef.h>

#include "uvmqtt/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A malloc() replacement, with its semantics. */
typedef void *(*uvmqtt_malloc_func)(size_t size);
/** A realloc() replacement, with its semantics. */
typedef void *(*uvmqtt_realloc_func)(void *ptr, size_t size);
/** A calloc() replacement, with its semantics. */
typedef void *(*uvmqtt_calloc_func)(size_t count, size_t size);
/** A free() replacement, with its semantics (NULL is a no-op). */
typedef void (*uvmqtt_free_func)(void *ptr);

/** Replaces the allocator, like uv_replace_allocator(). Call before any other
 * uvmqtt function, from one thread. Returns 0, or UVMQTT_EINVAL when any
 * function is NULL. */
UVMQTT_EXTERN int uvmqtt_replace_allocator(uvmqtt_malloc_func malloc_func,
                                           uvmqtt_realloc_func realloc_func,
                                           uvmqtt_calloc_func calloc_func,
                                           uvmqtt_free_func free_func);

/** Frees memory the library allocated and handed to the caller (e.g. a store
 * backend's get), with the allocator in use. NULL is ignored. */
UVMQTT_EXTERN void uvmqtt_free(void *ptr);

#ifdef __cplusplus
}
#endif
#endif
