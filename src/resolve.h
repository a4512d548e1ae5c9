/* Asynchronous name resolution on the loop.
 *
 * - Address lookups: uv_getaddrinfo by default; through c-ares when custom
 *   DNS servers are configured (so split-horizon setups and tests with a
 *   private DNS server work).
 * - SRV lookups: c-ares, driven by uv_poll_t for its sockets and a
 *   uv_timer_t for its timeouts. No thread, no blocking call.
 *
 * Contract:
 * - Every successful start call fires its callback exactly once, never from
 *   inside the start call itself, unless the request is cancelled first;
 *   cancelling a request means its callback is NOT called.
 * - Results handed to callbacks are valid only during the callback.
 * - uvmqtt__resolver_close() cancels pending requests and closes every
 *   handle; close_cb fires once they are all closed.
 */
#ifndef UVMQTT_RESOLVE_H
#define UVMQTT_RESOLVE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct uvmqtt_resolver_s uvmqtt_resolver_t;
typedef struct uvmqtt_resolve_req_s uvmqtt_resolve_req_t;

typedef struct {
  char *host; /* target name, NUL-terminated */
  uint16_t port;
  uint16_t priority;
  uint16_t weight;
} uvmqtt_srv_target_t;

/* status 0: addrs[0 .. n) in the order to try (IPv4 and IPv6 as returned).
 * status < 0: UVMQTT_EDNS_NXDOMAIN, UVMQTT_EDNS_TIMEOUT, UVMQTT_EDNS_NODATA,
 * UVMQTT_EDNS, or a libuv UV_EAI_* code. */
typedef void (*uvmqtt_addr_cb)(int status, const struct sockaddr_storage *addrs,
                               size_t n, void *arg);
/* status 0: targets[0 .. n) already ordered per RFC 2782 (priority
 * ascending, weighted random order within a priority; a lone "." target
 * means the service is not offered: UVMQTT_EDNS_NODATA). */
typedef void (*uvmqtt_srv_cb)(int status, const uvmqtt_srv_target_t *targets,
                              size_t n, void *arg);

/* Creates a resolver on `loop`. servers: NULL for the system's
 * configuration, or "ip[:port][,ip[:port]...]" (IPv6 in brackets).
 * timeout_ms: overall time allowed for one lookup. Returns 0,
 * UVMQTT_ENOMEM, UVMQTT_EINVAL (bad server list), UVMQTT_ENOTSUP (servers
 * given or SRV used without c-ares), UVMQTT_EDNS (c-ares init failed). */
int uvmqtt__resolver_new(uv_loop_t *loop, const char *servers,
                         unsigned timeout_ms, uvmqtt_resolver_t **out);
void uvmqtt__resolver_close(uvmqtt_resolver_t *r, void (*close_cb)(void *arg),
                            void *arg);

/* Resolves host (name or literal) to addresses with the given port. With no
 * custom servers this uses uv_getaddrinfo (AF_UNSPEC, SOCK_STREAM).
 * *req (may be NULL) receives a handle for cancelling. */
int uvmqtt__resolve_addr(uvmqtt_resolver_t *r, const char *host, uint16_t port,
                         uvmqtt_addr_cb cb, void *arg,
                         uvmqtt_resolve_req_t **req);
/* Looks up SRV records for `name` (e.g. "_mqtt._tcp.example.com"). */
int uvmqtt__resolve_srv(uvmqtt_resolver_t *r, const char *name,
                        uvmqtt_srv_cb cb, void *arg,
                        uvmqtt_resolve_req_t **req);
/* Cancels a pending request; its callback will not be called. */
void uvmqtt__resolve_cancel(uvmqtt_resolve_req_t *req);

/* RFC 2782 ordering of t[0 .. n) in place: ascending priority, and within a
 * priority a weighted random order (weight 0 entries get a small chance
 * and come first in the running-sum as the RFC says). rnd returns uniform
 * random uint32 values (so tests can fix the seed). */
void uvmqtt__srv_order(uvmqtt_srv_target_t *t, size_t n,
                       uint32_t (*rnd)(void *rarg), void *rarg);

#endif
