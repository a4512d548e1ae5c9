/** @file
 * A topic-filter router: a table of routes keyed by MQTT topic filter,
 * matched against topic names.
 *
 * Dependency-free; part of uvmqtt_proto and usable without a client, so a
 * gateway can share one table across thousands of connections.
 *
 * The table is a trie keyed by topic level. Matching a topic costs time
 * proportional to the trie nodes that match a prefix of it plus the
 * matching routes, not to the number of routes: each node entered is one
 * hash look-up for the next literal level plus, where present, a '+' branch
 * and a '#' list. Nodes that match a prefix but lead to no route ('+'
 * branches that die deeper) grow in number with the table.
 *
 * A route is one filter with one opaque value. `$share/<group>/<f>` routes
 * match as `<f>` but stay distinct routes, identified by the full filter.
 *
 * Threading: a router is not thread-safe. Calls on one router must not run
 * concurrently; distinct routers are independent. All memory goes through
 * the allocator hooks of uvmqtt/alloc.h.
 *
 * Match order. For one topic, the matching routes are visited in "trie
 * order": compare the routes' keys (the filter, without a `$share/<group>/`
 * prefix) level by level, ranking, at the first level where they differ,
 *     '#'  <  end of filter  <  a literal level  <  '+'.
 * Depth-first, therefore: at each level, `<prefix>/#` routes first, then
 * (at the topic's last level) the routes ending exactly there, then the
 * literal branch, then the '+' branch. Routes with the same key (a filter
 * and its $share forms) are visited in the order they were first added.
 * The order depends only on the table's contents, never on hashing.
 * Example: for topic "a/b" the order is "#", "a/#", "a/b/#", "a/b",
 * "a/+/#", "a/+", "+/#", "+/b/#", "+/b", "+/+/#", "+/+".
 *
 * Changing the table during a match (from the visitor):
 * - uvmqtt_router_add and uvmqtt_router_remove may be called for any
 *   filter, including the route being visited, and uvmqtt_router_match may
 *   be called again (nested). uvmqtt_router_free MUST NOT be called.
 * - A route removed during a match is never visited afterwards by any walk
 *   in progress (removal takes effect at once). Its memory, and that of
 *   trie nodes it leaves empty, is released when the outermost match
 *   returns; uvmqtt_router_count drops at once.
 * - A route added during a match is not visited by the walks in progress,
 *   even if it matches (a later match sees it). A filter removed and added
 *   again during a match is a new route and is not visited either.
 * - Replacing the value of an existing route (add on its filter) keeps the
 *   route: if it has not been visited yet, it is visited with the new value.
 */
#ifndef UVMQTT_ROUTER_H
#define UVMQTT_ROUTER_H

#include <stddef.h>

#include "uvmqtt/topic.h"
#include "uvmqtt/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A router (opaque): a table of routes keyed by topic filter. */
typedef struct uvmqtt_router_s uvmqtt_router_t;

/** Called once per matching route.
 *
 * value: the route's value, as last set by uvmqtt_router_add.
 * filter, filter_len: the route's full filter (with any `$share/<group>/`
 *   prefix), owned by the router and valid during the call only; not
 *   NUL-terminated.
 * arg: the match's arg.
 *
 * Return 0 to continue, non-zero to stop the walk. */
typedef int (*uvmqtt_router_visit_cb)(void *value, const char *filter,
                                      size_t filter_len, void *arg);

/** Creates an empty router in *out.
 *
 * Returns 0, UVMQTT_EINVAL when out is NULL, or UVMQTT_ENOMEM (then *out
 * is left unchanged and nothing needs cleaning up). */
UVMQTT_EXTERN int uvmqtt_router_new(uvmqtt_router_t **out);

/** Frees the router and all its routes. Values are not touched: the caller
 * owns them (walk or track them first if they need freeing). NULL is a
 * no-op. MUST NOT be called from a visitor. */
UVMQTT_EXTERN void uvmqtt_router_free(uvmqtt_router_t *r);

/** Adds a route, or replaces the value of the route with this exact filter.
 *
 * filter, len: a topic filter, validated with uvmqtt_filter_validate and
 *   copied; need not be NUL-terminated.
 * value: stored as is; may be NULL.
 * old: when not NULL, receives the value replaced, or NULL when the route
 *   is new (so a NULL value and a new route look alike; use the return
 *   value to tell them apart).
 *
 * Returns 0 when the route is new, 1 when an existing route's value was
 * replaced, UVMQTT_EINVAL for a NULL router, UVMQTT_EFILTER for an invalid
 * filter, or UVMQTT_ENOMEM. On an error the table is unchanged (but for
 * spare hash-table capacity) and *old is not written. */
UVMQTT_EXTERN int uvmqtt_router_add(uvmqtt_router_t *r, const char *filter,
                                    size_t len, void *value, void **old);

/** Removes the route with this exact filter ("$share/g/a" and "a" are
 * different routes).
 *
 * value: when not NULL, receives the removed route's value.
 *
 * Returns 0, UVMQTT_EINVAL for a NULL router, UVMQTT_EFILTER for an
 * invalid filter, or UVMQTT_ENOENT when no such route exists. Frees the
 * route and the trie nodes only it used (deferred while a match runs, see
 * above). Never fails for lack of memory: it may try to shrink a hash
 * table, and keeps the larger one when that allocation fails. */
UVMQTT_EXTERN int uvmqtt_router_remove(uvmqtt_router_t *r, const char *filter,
                                       size_t len, void **value);

/** Calls cb for every route whose filter matches the topic, in trie order
 * (see the top of this file), until cb returns non-zero.
 *
 * topic, len: a topic name. For speed it is not checked beyond its length
 *   (incoming topics are checked by the codec); other bytes, wildcards
 *   included, are compared literally.
 * cb: may be NULL, to count the matching routes.
 * arg: handed to cb.
 *
 * Returns the number of routes visited (including the one whose cb stopped
 * the walk), UVMQTT_EINVAL for a NULL router or a NULL topic, or
 * UVMQTT_ETOPIC for an empty topic or one longer than UVMQTT_TOPIC_MAX.
 * Uses constant stack and never allocates. */
UVMQTT_EXTERN int uvmqtt_router_match(uvmqtt_router_t *r, const char *topic,
                                      size_t len, uvmqtt_router_visit_cb cb,
                                      void *arg);

/** The number of routes in the table. */
UVMQTT_EXTERN size_t uvmqtt_router_count(const uvmqtt_router_t *r);

/** The bytes the router has requested from the allocator and not yet
 * released (router, trie nodes, hash tables, routes; allocator overhead
 * not included). An empty router reports the same figure as a new one. */
UVMQTT_EXTERN size_t uvmqtt_router_memory(const uvmqtt_router_t *r);

#ifdef __cplusplus
}
#endif
#endif
