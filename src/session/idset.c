/* Packet-id sets (see idset.h): the inline word, the small list and the
 * bitmap, and the moves between them. */
#include "session/idset.h"

#include "alloc.h"
#include "uvmqtt/errors.h"

void uvmqtt__idset_clear(idset_ref_t *r) {
  if (*r && !(*r & IDSET_INLINE)) {
    uvmqtt__free(uvmqtt__idset_ptr(*r)->bits);
    uvmqtt__free(uvmqtt__idset_ptr(*r));
  }
  *r = 0;
}

int uvmqtt__idset_add(idset_ref_t *r, uint16_t id) {
  if (*r == 0) {
    *r = IDSET_INLINE | (idset_ref_t)id << 16;
    return 0;
  }
  if (*r & IDSET_INLINE) {
    for (unsigned k = 1; k <= 3; k++) {
      if (uvmqtt__idset_lane(*r, k) == 0) {
        *r |= (idset_ref_t)id << (16 * k);
        return 0;
      }
    }
    idset_t *set = uvmqtt__malloc(sizeof(*set));
    if (!set)
      return UVMQTT_ENOMEM;
    set->bits = NULL;
    set->nsmall = 0;
    for (unsigned k = 1; k <= 3; k++)
      set->small[set->nsmall++] = uvmqtt__idset_lane(*r, k);
    set->small[set->nsmall++] = id;
    set->count = set->nsmall;
    *r = (uintptr_t)set;
    return 0;
  }
  idset_t *set = uvmqtt__idset_ptr(*r);
  if (!set->bits && set->nsmall < IDSET_SMALL) {
    set->small[set->nsmall++] = id;
    set->count++;
    return 0;
  }
  if (!set->bits) {
    set->bits = uvmqtt__calloc(65536 / 64, sizeof(uint64_t));
    if (!set->bits)
      return UVMQTT_ENOMEM;
    for (unsigned i = 0; i < set->nsmall; i++)
      set->bits[set->small[i] >> 6] |= UINT64_C(1) << (set->small[i] & 63);
    set->nsmall = 0;
  }
  set->bits[id >> 6] |= UINT64_C(1) << (id & 63);
  set->count++;
  return 0;
}

void uvmqtt__idset_del(idset_ref_t *r, uint16_t id) {
  if (*r & IDSET_INLINE) {
    for (unsigned k = 1; k <= 3; k++)
      if (uvmqtt__idset_lane(*r, k) == id)
        *r &= ~((idset_ref_t)0xFFFF << (16 * k));
    if (*r == IDSET_INLINE)
      *r = 0;
    return;
  }
  if (!*r || id == 0)
    return;
  idset_t *set = uvmqtt__idset_ptr(*r);
  if (set->bits) {
    uint64_t m = UINT64_C(1) << (id & 63);
    if (!(set->bits[id >> 6] & m))
      return;
    set->bits[id >> 6] &= ~m;
  } else {
    unsigned i = 0;
    while (i < set->nsmall && set->small[i] != id)
      i++;
    if (i == set->nsmall)
      return;
    set->small[i] = set->small[--set->nsmall];
  }
  if (--set->count == 0)
    uvmqtt__idset_clear(r);
}
