/* The reconnect policy (see backoff.h): backoff steps, when they start
 * over, and takeover detection. Sans-I/O. */
#include "backoff.h"

#include <uv.h>

#include "uvmqtt/errors.h"

#define TAKEN_OVER 0x8E /* v5 DISCONNECT reason: Session taken over */
#define MAX_STEP 32

void uvmqtt__rc_reset(uvmqtt__rc_t *rc) {
  *rc = (uvmqtt__rc_t){0};
}

void uvmqtt__rc_connected(uvmqtt__rc_t *rc, uint64_t now) {
  rc->up_since = (uint32_t)now;
  rc->tries = 0;
  rc->max_next = 0;
  rc->first = 0;
}

/* The broker closed without telling why (3.1.1 has no other way; mosquitto
 * 2.0 does the same in v5 when another client takes the id over). */
static bool quiet_close(int status) {
  return status == UVMQTT_EPEERCLOSED || status == UV_EOF ||
         status == UV_ECONNRESET || status == UVMQTT_EWS_CLOSED;
}

int uvmqtt__rc_lost(uvmqtt__rc_t *rc, const uvmqtt__rc_policy_t *p,
                    uint64_t now, int status, uint8_t v5_reason, bool *stop) {
  /* Durations up to 49 days fit: the difference wraps correctly. */
  uint32_t up = (uint32_t)now - rc->up_since;
  *stop = false;
  if (v5_reason == TAKEN_OVER) {
    rc->quick = 0;
    if (p->on_takeover == UVMQTT__TAKEOVER_STOP)
      *stop = true;
    else if (p->on_takeover == UVMQTT__TAKEOVER_BACKOFF)
      rc->max_next = 1;
    return UVMQTT_ETAKENOVER;
  }
  /* A connection that lived less than our longest delay is not proof of
   * stability: a rival with the same id may simply have been waiting that
   * long. So the threshold is never below max_ms * (1 + jitter) + min_ms. */
  uint64_t floor = (uint64_t)(p->max_ms * (1.0 + p->jitter)) + p->min_ms;
  uint64_t stable = p->stable_ms > floor ? p->stable_ms : floor;
  if (up >= stable) {
    rc->step = 0;
    rc->quick = 0;
    rc->first = 1;
    return status;
  }
  /* Lost before it was stable: the backoff goes on where it was. */
  if (rc->quick < UINT8_MAX)
    rc->quick++;
  if (p->suspect_after != 0 && rc->quick >= p->suspect_after &&
      quiet_close(status)) {
    rc->max_next = 1;
    return UVMQTT_ESHORTLIVED;
  }
  return status;
}

uint64_t uvmqtt__rc_delay(uvmqtt__rc_t *rc, const uvmqtt__rc_policy_t *p,
                          uint32_t rnd) {
  double u = rnd / 4294967295.0; /* [0, 1] */
  double d = p->min_ms;
  if (rc->tries < UINT16_MAX)
    rc->tries++;
  if (rc->first) {
    rc->first = 0; /* the step stays 0: then min_ms, 2 * min_ms, ... */
    if (p->jitter > 0)
      return (uint64_t)(u * p->min_ms + 0.5);
  }
  for (unsigned i = 0; i < rc->step && d < p->max_ms; i++)
    d *= 2;
  if (d > p->max_ms || rc->max_next)
    d = p->max_ms;
  rc->max_next = 0;
  d *= 1.0 + p->jitter * (2.0 * u - 1.0);
  if (rc->step < MAX_STEP)
    rc->step++;
  return (uint64_t)(d + 0.5);
}
