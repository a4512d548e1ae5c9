/* The loop context's timer heap: a binary min-heap of clients ordered by
 * deadline (`due`, ties broken by `seq`: first armed first). It is 1-based
 * (heap[1] is the earliest) and each client keeps its slot in `heap_idx`
 * (0: not in the heap), so a client's deadline is moved or removed in
 * O(log n). The array is the caller's, sized so that pushing never
 * allocates. Included by loop.c only. */
#ifndef UVMQTT_CLIENT_HEAP_H
#define UVMQTT_CLIENT_HEAP_H

#include <stdbool.h>
#include <stdint.h>

#include "client/client_int.h"

static inline bool uvmqtt__heap_less(const uvmqtt_client_t *a,
                                     const uvmqtt_client_t *b) {
  return a->due < b->due ||
         (a->due == b->due && (int32_t)(a->seq - b->seq) < 0);
}

static inline void uvmqtt__heap_set(uvmqtt_client_t **heap, uint32_t i,
                                    uvmqtt_client_t *c) {
  heap[i] = c;
  c->heap_idx = i;
}

static inline void uvmqtt__heap_up(uvmqtt_client_t **heap, uint32_t i) {
  uvmqtt_client_t *c = heap[i];
  while (i > 1 && uvmqtt__heap_less(c, heap[i / 2])) {
    uvmqtt__heap_set(heap, i, heap[i / 2]);
    i /= 2;
  }
  uvmqtt__heap_set(heap, i, c);
}

/* n: the number of clients in the heap. */
static inline void uvmqtt__heap_down(uvmqtt_client_t **heap, uint32_t n,
                                     uint32_t i) {
  uvmqtt_client_t *c = heap[i];
  for (;;) {
    uint32_t k = 2 * i;
    if (k > n)
      break;
    if (k < n && uvmqtt__heap_less(heap[k + 1], heap[k]))
      k++;
    if (!uvmqtt__heap_less(heap[k], c))
      break;
    uvmqtt__heap_set(heap, i, heap[k]);
    i = k;
  }
  uvmqtt__heap_set(heap, i, c);
}

/* Removes c (in the heap) and decrements *n. */
static inline void uvmqtt__heap_remove(uvmqtt_client_t **heap, uint32_t *n,
                                       uvmqtt_client_t *c) {
  uint32_t i = c->heap_idx;
  uvmqtt_client_t *last = heap[(*n)--];
  c->heap_idx = 0;
  if (last != c) {
    uvmqtt__heap_set(heap, i, last);
    uvmqtt__heap_up(heap, i);
    uvmqtt__heap_down(heap, *n, last->heap_idx);
  }
}

#endif
