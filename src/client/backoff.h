/* The reconnect policy, sans-I/O: how long to wait before the next
 * connection attempt, when the backoff starts over, and when repeated
 * losses mean another connection holds our client id. No clock and no
 * randomness of its own: `now` (milliseconds) and a random word are passed
 * in, so unit tests drive it with a fake clock.
 *
 * The backoff starts over only after a connection stayed up for stable_ms:
 * a broker that accepts (CONNACK 0) and then closes at once makes the
 * delays grow as if the attempts had failed, instead of a reconnect a
 * second forever.
 */
#ifndef UVMQTT_BACKOFF_H
#define UVMQTT_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

/* What to do when the broker says the session was taken over (v5
 * DISCONNECT 0x8E), or the losses look like it (see suspect_after). The
 * values are the public UVMQTT_TAKEOVER_* ones (include/uvmqtt.h). */
enum {
  UVMQTT__TAKEOVER_STOP = 0,    /* stop reconnecting (default) */
  UVMQTT__TAKEOVER_BACKOFF = 1, /* keep trying, at the maximum delay */
  UVMQTT__TAKEOVER_RETRY = 2    /* keep trying with the normal backoff */
};

typedef struct {
  uint32_t min_ms, max_ms; /* first delay, doubled up to max */
  uint32_t stable_ms;      /* connected this long: the backoff starts over */
  float jitter;            /* each delay times 1 +/- jitter, in [0, 1] */
  /* Connections in a row closed by the broker without a reason before
   * stable_ms, after which the loss is reported as UVMQTT_ESHORTLIVED
   * (probably taken over, or rejected after connect) and the next delay is
   * the maximum; 0: never. */
  uint8_t suspect_after;
  uint8_t on_takeover; /* UVMQTT__TAKEOVER_* */
} uvmqtt__rc_policy_t;

/* Per client, 8 bytes. Zeroed = no attempt yet. */
typedef struct {
  uint32_t up_since;    /* low 32 bits of `now` at CONNACK */
  uint16_t tries;       /* delayed attempts since the last CONNACK */
  uint8_t quick;        /* short connections in a row */
  uint8_t step : 6;     /* delays since the backoff last started over */
  uint8_t max_next : 1; /* the next delay is the maximum */
  uint8_t first : 1;    /* the next delay follows the loss of a stable link */
} uvmqtt__rc_t;

/* The application asked to connect: everything starts over. */
void uvmqtt__rc_reset(uvmqtt__rc_t *rc);

/* CONNACK accepted at `now`. The backoff does NOT start over here; only
 * the count of tries does. */
void uvmqtt__rc_connected(uvmqtt__rc_t *rc, uint64_t now);

/* A connection that had been accepted ended at `now` with `status` (the
 * error that ended it) and, for a v5 DISCONNECT from the broker, its
 * reason code (else 0). Returns the status to report: `status` itself,
 * UVMQTT_ETAKENOVER (v5 reason 0x8E) or UVMQTT_ESHORTLIVED (suspect_after
 * reached). *stop is set when the policy says not to reconnect. */
int uvmqtt__rc_lost(uvmqtt__rc_t *rc, const uvmqtt__rc_policy_t *p,
                    uint64_t now, int status, uint8_t v5_reason, bool *stop);

/* The delay before the next attempt, given a uniformly random 32-bit word;
 * advances the backoff and counts a try. The first delay after losing a
 * connection that had been stable is spread uniformly over [0, min_ms] when
 * jitter is on (so a fleet that lost its broker at once does not come back at
 * once); later ones are min_ms * 2^step capped at max_ms, times 1 +/- jitter.
 */
uint64_t uvmqtt__rc_delay(uvmqtt__rc_t *rc, const uvmqtt__rc_policy_t *p,
                          uint32_t rnd);

#endif
