/* Herd control, sans-I/O: a loop-wide limit on connection attempts in
 * progress at once (TCP connect, TLS and WebSocket handshakes, CONNECT
 * until CONNACK). When thousands of clients on one loop reconnect after a
 * broker restart, starting them all at once overflows the broker's listen
 * backlog and the dropped SYNs wait a second for their retransmission;
 * letting at most `limit` run and starting the next as each ends keeps
 * the backlog short and the total time low.
 *
 * Waiters are intrusive nodes kept FIFO; the owner (the per-loop context)
 * starts the node herd_leave() hands back.
 */
#ifndef UVMQTT_HERD_H
#define UVMQTT_HERD_H

#include <stdbool.h>
#include <stdint.h>

typedef struct uvmqtt__herd_node_s {
  struct uvmqtt__herd_node_s *next, **pprev; /* pprev NULL: not waiting */
} uvmqtt__herd_node_t;

typedef struct {
  uint32_t limit;  /* 0: unlimited */
  uint32_t active; /* attempts holding a slot */
  uvmqtt__herd_node_t *head, **tail;
  uint32_t waiting;
  uint32_t peak_active, peak_waiting; /* for statistics */
} uvmqtt__herd_t;

void uvmqtt__herd_init(uvmqtt__herd_t *h, uint32_t limit);

/* Asks for a slot for `n`. Returns true when it has one (start now), false
 * when `n` was queued (start it when herd_leave() hands it back). */
bool uvmqtt__herd_enter(uvmqtt__herd_t *h, uvmqtt__herd_node_t *n);

/* An attempt holding a slot ended. Returns the waiter that now holds the
 * freed slot (the caller starts it), or NULL. */
uvmqtt__herd_node_t *uvmqtt__herd_leave(uvmqtt__herd_t *h);

/* Removes a waiting node (its client closed or reconnects otherwise);
 * no-op when it is not waiting. */
void uvmqtt__herd_cancel(uvmqtt__herd_t *h, uvmqtt__herd_node_t *n);

static inline bool uvmqtt__herd_waiting(const uvmqtt__herd_node_t *n) {
  return n->pprev != 0;
}

/* Hands the first waiter a slot when there is room (after the limit was
 * raised), else NULL. */
uvmqtt__herd_node_t *uvmqtt__herd_next(uvmqtt__herd_t *h);

#endif
