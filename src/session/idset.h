/* The session's sets of packet ids (our ids in use, incoming QoS 2 ids
 * awaiting PUBREL): one word per set while it is small. Sans I/O. */
#ifndef UVMQTT_SRC_SESSION_IDSET_H
#define UVMQTT_SRC_SESSION_IDSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A set of 16-bit packet ids in one word: 0 when empty; up to three ids
 * in the word itself (bit 0 set, the ids in the three high 16-bit lanes, 0
 * marking a free lane: packet ids are never 0); beyond that a pointer to
 * an idset_t (a few ids in a list, a bitmap beyond that), freed with the
 * set's last id. So an idle session holds no memory for ids, and a small
 * window (or one request at a time) allocates none. */
typedef uint64_t idset_ref_t;
#define IDSET_INLINE 1u
#define IDSET_SMALL 16
typedef struct {
  uint64_t *bits;
  uint32_t count;
  uint8_t nsmall;
  uint16_t small[IDSET_SMALL];
} idset_t;

/* The membership test and the count, inline: they run for every packet. */
static inline idset_t *uvmqtt__idset_ptr(idset_ref_t r) {
  return (idset_t *)(uintptr_t)r;
}

static inline uint16_t uvmqtt__idset_lane(idset_ref_t r, unsigned k) {
  return (uint16_t)(r >> (16 * k));
}

static inline bool uvmqtt__idset_has(idset_ref_t r, uint16_t id) {
  if (r & IDSET_INLINE)
    return id != 0 &&
           (uvmqtt__idset_lane(r, 1) == id || uvmqtt__idset_lane(r, 2) == id ||
            uvmqtt__idset_lane(r, 3) == id);
  if (!r)
    return false;
  const idset_t *set = uvmqtt__idset_ptr(r);
  if (set->bits)
    return (set->bits[id >> 6] >> (id & 63)) & 1;
  for (unsigned i = 0; i < set->nsmall; i++)
    if (set->small[i] == id)
      return true;
  return false;
}

static inline size_t uvmqtt__idset_count(idset_ref_t r) {
  if (r & IDSET_INLINE)
    return (uvmqtt__idset_lane(r, 1) != 0) + (uvmqtt__idset_lane(r, 2) != 0) +
           (uvmqtt__idset_lane(r, 3) != 0);
  return r ? uvmqtt__idset_ptr(r)->count : 0;
}

/* Empties the set and frees what it held. */
void uvmqtt__idset_clear(idset_ref_t *r);
/* Adds an id not in the set. Returns 0 or UVMQTT_ENOMEM (set unchanged). */
int uvmqtt__idset_add(idset_ref_t *r, uint16_t id);
/* Removes an id (absent or 0: nothing happens). */
void uvmqtt__idset_del(idset_ref_t *r, uint16_t id);

#endif
