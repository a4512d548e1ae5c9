/* Internal router entry points, for the benchmark and tests. */
#ifndef UVMQTT_SRC_ROUTER_ROUTER_INT_H
#define UVMQTT_SRC_ROUTER_ROUTER_INT_H

#include <stddef.h>

#include "uvmqtt/router.h"

/* What a match did, for the benchmark. */
typedef struct {
  size_t entered;     /* trie nodes entered, added to by each match */
  const void **nodes; /* when cap > 0: the first cap nodes entered */
  size_t cap;
} uvmqtt__router_stats_t;

/* uvmqtt_router_match, recording in *st (which MUST NOT be NULL) the
 * nodes the walk entered. Same contract as uvmqtt_router_match
 * otherwise. */
int uvmqtt__router_match_stats(uvmqtt_router_t *r, const char *topic,
                               size_t len, uvmqtt_router_visit_cb cb, void *arg,
                               uvmqtt__router_stats_t *st);

#endif
