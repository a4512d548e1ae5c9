/* Internal helpers shared by topic.c and router.c. */
#ifndef UVMQTT_SRC_ROUTER_TOPIC_INT_H
#define UVMQTT_SRC_ROUTER_TOPIC_INT_H

#include <stddef.h>

/* Validates a topic filter like uvmqtt_filter_validate. On success sets
 * *key_off to the offset of the filter proper: 0, or just past
 * "$share/<group>/" for a shared subscription. Returns 0 or
 * UVMQTT_EFILTER. */
int uvmqtt__filter_check(const char *filter, size_t len, size_t *key_off);

#endif
