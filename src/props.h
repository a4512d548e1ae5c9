/* Deep copies of v5 property sets (options, queued messages). */
#ifndef UVMQTT_PROPS_H
#define UVMQTT_PROPS_H

#include "uvmqtt/codec.h"

/* Copies `in` (an encode-style set with a user_props array, or a decoded
 * one) into one allocation: *out points to a set whose strings, binary
 * data and user_props array live inside it; free it with uvmqtt__free().
 * Returns 0 or UVMQTT_ENOMEM. */
int uvmqtt__props_dup(const uvmqtt_props_t *in, uvmqtt_props_t **out);
/* The same in two steps, for a copy inside a larger allocation: the bytes
 * it takes, then the copy into `mem` (8-byte aligned, that many bytes),
 * which returns the set (== mem). */
size_t uvmqtt__props_size(const uvmqtt_props_t *in);
uvmqtt_props_t *uvmqtt__props_copy_into(const uvmqtt_props_t *in, void *mem);

#endif
