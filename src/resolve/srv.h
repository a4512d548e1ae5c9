/* SRV targets, the MQTT SRV names and the RFC 2782 ordering (srv.c):
 * pure, without libuv or c-ares, so sans-I/O code and unit tests can use
 * them. The lookups are in resolve.h. */
#ifndef UVMQTT_RESOLVE_SRV_H
#define UVMQTT_RESOLVE_SRV_H

#include <stddef.h>
#include <stdint.h>

/* The longest DNS name, in bytes, without the final NUL. */
#define UVMQTT_DNS_NAME_MAX 255u

typedef struct {
  char *host; /* target name, NUL-terminated */
  uint16_t port;
  uint16_t priority;
  uint16_t weight;
} uvmqtt_srv_target_t;

/* Writes the SRV name for an MQTT service into out:
 * "_secure-mqtt._tcp.<domain>" when tls, "_mqtt._tcp.<domain>" otherwise
 * (see docs/srv.md: there is no fallback from one to the other). A trailing
 * dot on domain is kept. Returns 0, or UVMQTT_EINVAL (empty domain, or the
 * name does not fit in cap or in 255 bytes). */
int uvmqtt__srv_name(char *out, size_t cap, const char *domain, int tls);

/* RFC 2782 ordering of t[0 .. n) in place: ascending priority, and within a
 * priority a weighted random order (weight 0 entries get a small chance
 * and come first in the running-sum as the RFC says). rnd returns uniform
 * random uint32 values (so tests can fix the seed). */
void uvmqtt__srv_order(uvmqtt_srv_target_t *t, size_t n,
                       uint32_t (*rnd)(void *rarg), void *rarg);

#endif
