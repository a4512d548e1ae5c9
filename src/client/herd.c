/* Herd control (see herd.h): a counting gate with a FIFO of waiters.
 * Sans-I/O. */
#include "herd.h"

#include <stddef.h>

void uvmqtt__herd_init(uvmqtt__herd_t *h, uint32_t limit) {
  *h = (uvmqtt__herd_t){.limit = limit};
  h->tail = &h->head;
}

static bool has_room(const uvmqtt__herd_t *h) {
  return h->limit == 0 || h->active < h->limit;
}

bool uvmqtt__herd_enter(uvmqtt__herd_t *h, uvmqtt__herd_node_t *n) {
  if (has_room(h) && h->head == NULL) {
    if (++h->active > h->peak_active)
      h->peak_active = h->active;
    return true;
  }
  n->next = NULL;
  n->pprev = h->tail;
  *h->tail = n;
  h->tail = &n->next;
  if (++h->waiting > h->peak_waiting)
    h->peak_waiting = h->waiting;
  return false;
}

void uvmqtt__herd_cancel(uvmqtt__herd_t *h, uvmqtt__herd_node_t *n) {
  if (n->pprev == NULL)
    return;
  *n->pprev = n->next;
  if (n->next != NULL)
    n->next->pprev = n->pprev;
  else
    h->tail = n->pprev;
  n->next = NULL;
  n->pprev = NULL;
  h->waiting--;
}

uvmqtt__herd_node_t *uvmqtt__herd_next(uvmqtt__herd_t *h) {
  uvmqtt__herd_node_t *n = h->head;
  if (n == NULL || !has_room(h))
    return NULL;
  uvmqtt__herd_cancel(h, n);
  if (++h->active > h->peak_active)
    h->peak_active = h->active;
  return n;
}

uvmqtt__herd_node_t *uvmqtt__herd_leave(uvmqtt__herd_t *h) {
  if (h->active > 0)
    h->active--;
  return uvmqtt__herd_next(h);
}
