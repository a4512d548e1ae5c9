/* Asynchronous name resolution on the loop.
 *
 * - Address lookups: uv_getaddrinfo by default; through c-ares when custom
 *   DNS servers are configured (so split-horizon setups and tests with a
 *   private DNS server work). Literal IPv4/IPv6 addresses never cause a
 *   lookup.
 * - SRV lookups: c-ares, driven by uv_poll_t for its sockets and a
 *   uv_timer_t for its timeouts. No thread, no blocking call.
 *
 * Contract:
 * - Every successful start call fires its callback exactly once, never from
 *   inside the start call itself, unless the request is cancelled first;
 *   cancelling a request means its callback is NOT called. A start call
 *   that returns an error never fires its callback.
 * - Callbacks run on the loop thread, from a libuv callback of the
 *   resolver's own (never from inside c-ares), so a callback MAY start new
 *   lookups, cancel other requests and close the resolver.
 * - Results handed to callbacks are valid only during the callback.
 * - A request handle (*req) is valid from the start call until its callback
 *   returns or it is cancelled; it MUST NOT be used after that.
 * - Every lookup is bounded by the resolver's timeout_ms; when it passes,
 *   the callback gets UVMQTT_EDNS_TIMEOUT even if the lookup underneath
 *   (a uv_getaddrinfo in the thread pool, a c-ares query) is still busy;
 *   its late result is swallowed.
 * - uvmqtt__resolver_close() cancels pending requests (their callbacks are
 *   NOT called) and closes every handle; close_cb fires once they are all
 *   closed, after which the resolver's memory is gone. A uv_getaddrinfo
 *   already running in the thread pool cannot be stopped: it keeps the loop
 *   alive until it returns and its result is dropped. Closing from inside
 *   a resolver callback is allowed.
 * - Only the loop thread may call these functions.
 */
#ifndef UVMQTT_RESOLVE_RESOLVE_H
#define UVMQTT_RESOLVE_RESOLVE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "resolve/srv.h"

typedef struct uvmqtt_resolver_s uvmqtt_resolver_t;
typedef struct uvmqtt_resolve_req_s uvmqtt_resolve_req_t;

/* status 0: addrs[0 .. n) in the order to try (IPv4 and IPv6 as returned),
 * n >= 1, each with the requested port set.
 * status < 0: UVMQTT_EDNS_NXDOMAIN, UVMQTT_EDNS_TIMEOUT, UVMQTT_EDNS_NODATA,
 * UVMQTT_EDNS, UVMQTT_ENOMEM, or a libuv UV_EAI_* code. */
typedef void (*uvmqtt_addr_cb)(int status, const struct sockaddr_storage *addrs,
                               size_t n, void *arg);
/* status 0: targets[0 .. n) already ordered per RFC 2782 (priority
 * ascending, weighted random order within a priority; a lone "." target
 * means the service is not offered: UVMQTT_EDNS_NODATA), n >= 1.
 * status < 0: UVMQTT_EDNS_NXDOMAIN, UVMQTT_EDNS_TIMEOUT, UVMQTT_EDNS_NODATA,
 * UVMQTT_EDNS, UVMQTT_ENOMEM. */
typedef void (*uvmqtt_srv_cb)(int status, const uvmqtt_srv_target_t *targets,
                              size_t n, void *arg);

/* Creates a resolver on `loop`. servers: NULL for the system's
 * configuration, or "ip[:port][,ip[:port]...]" (IPv6 in brackets).
 * timeout_ms: overall time allowed for one lookup (0: 5000). Returns 0,
 * UVMQTT_ENOMEM, UVMQTT_EINVAL (bad or empty server list, NULL loop or
 * out), UVMQTT_ENOTSUP (servers given without c-ares), UVMQTT_EDNS (c-ares
 * init failed). With the system's configuration c-ares is only set up on
 * the first SRV lookup. */
int uvmqtt__resolver_new(uv_loop_t *loop, const char *servers,
                         unsigned timeout_ms, uvmqtt_resolver_t **out);
/* close_cb may be NULL. Calling it twice is a no-op. */
void uvmqtt__resolver_close(uvmqtt_resolver_t *r, void (*close_cb)(void *arg),
                            void *arg);

/* Resolves host (name or literal; "[v6]" brackets accepted) to addresses
 * with the given port. With no custom servers this uses uv_getaddrinfo
 * (AF_UNSPEC, SOCK_STREAM). *req (may be NULL) receives a handle for
 * cancelling. Returns 0, UVMQTT_EINVAL (NULL/empty/over-long host, NULL
 * cb), UVMQTT_ESTATE (resolver closing), UVMQTT_ENOMEM, or a libuv error. */
int uvmqtt__resolve_addr(uvmqtt_resolver_t *r, const char *host, uint16_t port,
                         uvmqtt_addr_cb cb, void *arg,
                         uvmqtt_resolve_req_t **req);
/* Looks up SRV records for `name` (e.g. "_mqtt._tcp.example.com"). Same
 * returns as uvmqtt__resolve_addr, plus UVMQTT_ENOTSUP without c-ares and
 * UVMQTT_EDNS when c-ares could not be set up. */
int uvmqtt__resolve_srv(uvmqtt_resolver_t *r, const char *name,
                        uvmqtt_srv_cb cb, void *arg,
                        uvmqtt_resolve_req_t **req);
/* Cancels a pending request; its callback will not be called. Calling it
 * from inside the request's own callback is a no-op. */
void uvmqtt__resolve_cancel(uvmqtt_resolve_req_t *req);

/* Test hook: reseeds the resolver's own generator used for SRV ordering. */
void uvmqtt__resolver_seed(uvmqtt_resolver_t *r, uint64_t seed);

#endif
