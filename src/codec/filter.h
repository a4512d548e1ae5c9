/* Topic filter syntax: the one check of wildcard placement and of the
 * $share/ prefix, used by the codec's decoder (SUBSCRIBE, UNSUBSCRIBE) and
 * by the router (uvmqtt_filter_validate and the routes). */
#ifndef UVMQTT_SRC_CODEC_FILTER_H
#define UVMQTT_SRC_CODEC_FILTER_H

#include <stddef.h>

/* Checks the syntax of the filter s[0 .. len) [MQTT-4.7.1, 4.8.2]: not
 * empty; '#' alone in the last level; '+' alone in its level; a filter
 * whose first level is "$share" continues as "$share/<group>/<filter>"
 * with a non-empty group free of wildcards and a non-empty <filter>.
 * UTF-8 and length are the callers' business. Returns 0 with *key_off
 * (may be NULL) set to the offset of the filter proper (0, or just past
 * "$share/<group>/"), or UVMQTT_EFILTER with *err_off (may be NULL) set
 * to the offending byte (len when the filter ends too soon). */
int uvmqtt__filter_syntax(const char *s, size_t len, size_t *key_off,
                          size_t *err_off);

#endif
