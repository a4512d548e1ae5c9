/* Internal router entry points, for the benchmark and tests. */
#ifndef UVMQTT_SRC_ROUTER_ROUTER_INT_H
#define UVMQTT_SRC_ROUTER_ROUTER_INT_H

#include <stddef.h>

#include "uvmqtt/router.h"

/* uvmqtt_router_match, and adds to *entered (which MUST NOT be NULL) the
 * number of trie nodes the walk entered: the benchmark's measure of work
 * beside the routes visited. Same contract as uvmqtt_router_match
 * otherwise. */
int uvmqtt__router_match_stats(uvmqtt_router_t *r, const char *topic,
                               size_t len, uvmqtt_router_visit_cb cb, void *arg,
                               size_t *entered);

#endif
