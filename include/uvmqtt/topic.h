/** @file
 * Topic names and topic filters: validation and the reference matcher.
 *
 * Dependency-free; part of uvmqtt_proto. Every function here is pure: it
 * allocates nothing, keeps no pointer to its arguments and may be called
 * from any thread.
 *
 * Strings are (pointer, length) pairs and need not be NUL-terminated. A
 * NULL pointer with a non-zero length is invalid input.
 */
#ifndef UVMQTT_TOPIC_H
#define UVMQTT_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

#include "uvmqtt/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The longest topic name or filter MQTT can carry (a two-byte length). */
#define UVMQTT_TOPIC_MAX 65535

/** Checks a topic name as used in PUBLISH [MQTT-4.7.3].
 *
 * topic, len: the name; need not be NUL-terminated.
 *
 * Returns 0 when the name is valid, else UVMQTT_ETOPIC when it is empty,
 * longer than UVMQTT_TOPIC_MAX bytes, contains a wildcard ('+' or '#'),
 * contains U+0000, or is not well-formed UTF-8 (overlong forms, surrogates
 * and code points above U+10FFFF are rejected). Names starting with '$' are
 * valid: servers publish them ($SYS/...). */
UVMQTT_EXTERN int uvmqtt_topic_validate(const char *topic, size_t len);

/** Checks a topic filter as used in SUBSCRIBE and in routes [MQTT-4.7.1].
 *
 * filter, len: the filter; need not be NUL-terminated.
 *
 * Returns 0 when the filter is valid, else UVMQTT_EFILTER when it is empty,
 * longer than UVMQTT_TOPIC_MAX bytes, contains U+0000 or ill-formed UTF-8,
 * has a '#' that is not alone in the last level, has a '+' that is not alone
 * in its level, or starts with the level "$share" without continuing as
 * `$share/<group>/<filter>` where `<group>` is non-empty and free
 * of wildcards and `<filter>` is itself a valid (non-shared) filter. */
UVMQTT_EXTERN int uvmqtt_filter_validate(const char *filter, size_t len);

/** The reference matcher: true when the topic name matches the filter.
 *
 * filter, flen: a topic filter; `$share/<group>/<f>` matches as `<f>`.
 * topic, tlen: a topic name.
 *
 * Rules [MQTT-4.7]: levels are separated by '/', and empty levels are
 * levels ("a//b" has three, "/a" and "a/" two each). '+' matches exactly one
 * level, possibly empty. '#' matches the rest of the topic, including the
 * parent level itself ("sport/#" matches "sport"). A filter whose first
 * level is a wildcard does not match a topic starting with '$'
 * [MQTT-4.7.2-1].
 *
 * Returns false when either string is invalid (see the validators above).
 * Runs in time linear in flen + tlen; the router (uvmqtt/router.h) gives
 * the same answers for many filters at once. */
UVMQTT_EXTERN bool uvmqtt_topic_matches(const char *filter, size_t flen,
                                        const char *topic, size_t tlen);

#ifdef __cplusplus
}
#endif
#endif
