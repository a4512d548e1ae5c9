/* The client's side of the delivery contract (include/uvmqtt.h): leaving
 * gracefully (delivery stops at once, DISCONNECT after the pending
 * acknowledgements, half-close, drain until the broker closes or the
 * linger time ends), the graceful drain of publishes, manual
 * acknowledgement and pausing the reading (the session keeps the rest of
 * a read; this file stops and restarts the stream). */
#include "alloc.h"
#include "props.h"
#include "client/client_int.h"

/* ---- leaving gracefully -------------------------------------------------- */

leave_t *uvmqtt__leave_of(const uvmqtt_client_t *c) {
  return c->rare ? c->rare->leave : NULL;
}

void uvmqtt__leave_free(uvmqtt_client_t *c) {
  leave_t *l = uvmqtt__leave_of(c);
  if (!l)
    return;
  uvmqtt__free(l->props);
  uvmqtt__free(l);
  c->rare->leave = NULL;
}

int uvmqtt__leave_ask(uvmqtt_client_t *c, uint8_t reason,
                      const uvmqtt_props_t *props) {
  if (!uvmqtt__leave_of(c)) {
    rare_t *r = uvmqtt__client_rare(c);
    leave_t *l = r ? uvmqtt__calloc(1, sizeof(*l)) : NULL;
    if (!l)
      return UVMQTT_ENOMEM; /* nothing changed */
    if (props && c->o.version == UVMQTT_V5 &&
        uvmqtt__props_dup(props, &l->props) < 0) {
      uvmqtt__free(l);
      return UVMQTT_ENOMEM;
    }
    l->reason = reason;
    r->leave = l;
  }
  /* Nothing more is delivered from now on: the rest of a read is dropped
   * and the broker sends it again. */
  uvmqtt__session_halt_input(c->session);
  return 0;
}

bool uvmqtt__leave_start(uvmqtt_client_t *c) {
  leave_t *l = uvmqtt__leave_of(c);
  l->started = true;
  /* Behind everything already queued: acknowledgements, PUBRELs,
   * PUBCOMPs. The session sends nothing after it. */
  int rc = uvmqtt__session_disconnect(c->session, l->reason, l->props);
  if (rc < 0)
    uvmqtt__client_log(c, UVMQTT_LOG_WARN, "cannot send DISCONNECT: %s",
                       uvmqtt_strerror(rc));
  uvmqtt__client_flush(c);
  c->state = C_LEAVING;
  unsigned linger = CX(c)->linger_ms;
  if (!c->stream || linger == 0 || c->drop_requested) {
    l->done = true;
    return false;
  }
  (void)c->stream->ops->read_start(c->stream); /* also when paused */
  if (c->stream->ops->shutdown)
    c->stream->ops->shutdown(c->stream);
  l->deadline = uvmqtt__client_now(c) + linger;
  uvmqtt__client_arm_timer(c);
  return true;
}

void uvmqtt__leave_finish(uvmqtt_client_t *c, int status) {
  leave_t *l = uvmqtt__leave_of(c);
  if (!l || l->done)
    return;
  l->done = true;
  if (status == UVMQTT_ETIMEDOUT)
    uvmqtt__client_log(c, UVMQTT_LOG_WARN,
                       "the broker did not close the connection within %u ms "
                       "of our DISCONNECT",
                       CX(c)->linger_ms);
  else if (status != UV_EOF)
    uvmqtt__client_log(c, UVMQTT_LOG_DEBUG,
                       "connection ended while leaving: %s",
                       uvmqtt_strerror(status));
  if (l->close)
    c->close_requested = true;
  else
    uvmqtt__client_drop(c, 0);
}

/* ---- graceful drain of publishes ----------------------------------------- */

void uvmqtt__drain_end(uvmqtt_client_t *c, int status) {
  drain_t *d = c->rare->drain;
  uvmqtt_drain_cb cb = d->cb;
  void *arg = d->arg;
  d->draining = d->leaving = false;
  d->cb = NULL;
  d->deadline = 0;
  uv_timer_stop(&d->timer);
  if (cb)
    cb(c, status, arg);
}

static void on_drain_timer(uv_timer_t *t) {
  uvmqtt_client_t *c = t->data;
  drain_t *d = c->rare->drain;
  ENTER(c);
  uvmqtt__drain_check(c);
  if (d->draining && !d->leaving && d->deadline) {
    uint64_t now = uvmqtt__client_now(c);
    uv_timer_start(t, on_drain_timer, d->deadline > now ? d->deadline - now : 0,
                   0);
  }
  LEAVE(c);
}

void uvmqtt__drain_check(uvmqtt_client_t *c) {
  drain_t *d = c->rare->drain;
  if (!d->draining || d->leaving || c->state == C_CLOSING)
    return;
  size_t left =
      uvmqtt__session_inflight(c->session) + uvmqtt__session_queued(c->session);
  bool late = d->deadline && uvmqtt__client_now(c) >= d->deadline;
  if (left && !late)
    return;
  d->leaving = true;
  d->status = left ? UVMQTT_ETIMEDOUT : 0;
  if (left)
    uvmqtt__client_log(c, UVMQTT_LOG_WARN,
                       "drain timed out with %zu message(s) pending", left);
  if (c->state == C_CONNECTED) {
    /* uvmqtt__drain_end() runs once the goodbye is over (do_drop). */
    if (uvmqtt_client_disconnect(c) == 0)
      return;
  } else if (c->state != C_LEAVING) {
    (void)uvmqtt_client_disconnect(c); /* stops reconnecting */
  } else {
    return; /* already leaving: do_drop ends the drain */
  }
  uvmqtt__drain_end(c, d->status);
}

int uvmqtt_client_disconnect_drain(uvmqtt_client_t *c, unsigned timeout_ms,
                                   uvmqtt_drain_cb cb, void *arg) {
  if (!c)
    return UVMQTT_EINVAL;
  if (c->state == C_CLOSING || c->close_requested ||
      (uvmqtt__leave_of(c) && uvmqtt__leave_of(c)->close))
    return UVMQTT_ECLOSED;
  if (uvmqtt__draining(c))
    return UVMQTT_EBUSY;
  if (c->state == C_IDLE || c->state == C_LEAVING)
    return UVMQTT_ENOTCONN;
  rare_t *r = uvmqtt__client_rare(c);
  if (!r)
    return UVMQTT_ENOMEM;
  if (!r->drain) {
    if (!(r->drain = uvmqtt__calloc(1, sizeof(*r->drain))))
      return UVMQTT_ENOMEM;
    uv_timer_init(c->lc->loop, &r->drain->timer);
    r->drain->timer.data = c;
  }
  drain_t *d = r->drain;
  d->draining = true;
  d->leaving = false;
  d->cb = cb;
  d->arg = arg;
  d->deadline = timeout_ms ? uvmqtt__client_now(c) + timeout_ms : 0;
  uvmqtt__client_log(c, UVMQTT_LOG_INFO, "draining: %zu in flight, %zu queued",
                     uvmqtt__session_inflight(c->session),
                     uvmqtt__session_queued(c->session));
  /* The first check runs from the loop (cb never fires from inside this
   * call); the timer then stands for the deadline. */
  uv_timer_start(&d->timer, on_drain_timer, 0, 0);
  return 0;
}

/* ---- manual acknowledgement, pausing ------------------------------------- */

/* Input held (pause, or too much delivered and not acknowledged): stop
 * reading, so the kernel's window pushes back on the broker. Released:
 * read again, and handle the bytes the session kept from the loop (the
 * flush handle), never from inside the API call that released them. */
void uvmqtt__client_on_hold(void *ud, bool holding) {
  uvmqtt_client_t *c = ud;
  if (!c->stream || c->state == C_CLOSING || c->state == C_LEAVING)
    return;
  if (CSTATS(c))
    uvmqtt__cstats_paused(CSTATS(c), holding, uvmqtt__client_now(c));
  if (holding) {
    (void)c->stream->ops->read_stop(c->stream);
  } else {
    (void)c->stream->ops->read_start(c->stream);
    if (uvmqtt__session_held(c->session))
      uvmqtt__client_flush_later(c);
  }
  uvmqtt__client_arm_timer(c); /* the keepalive deadlines change */
}

int uvmqtt_ack_ex(uvmqtt_client_t *c, uint64_t handle, uint8_t reason,
                  const uvmqtt_props_t *props) {
  if (!c)
    return UVMQTT_EINVAL;
  if (c->state == C_CLOSING || c->close_requested ||
      (uvmqtt__leave_of(c) && uvmqtt__leave_of(c)->close))
    return handle ? UVMQTT_ECLOSED : 0;
  if (props && uvmqtt__props_utf8_ok(props) < 0)
    return UVMQTT_EUTF8;
  /* Queues output (flushed from the loop) and may end a hold: no
   * callback fires from inside. */
  return uvmqtt__session_ack(c->session, uvmqtt__client_now(c), handle, reason,
                             props);
}

int uvmqtt_ack(uvmqtt_client_t *c, uint64_t handle) {
  return uvmqtt_ack_ex(c, handle, 0, NULL);
}

size_t uvmqtt_client_get_unacked(const uvmqtt_client_t *c) {
  return c && c->state != C_CLOSING ? uvmqtt__session_unacked(c->session, NULL)
                                    : 0;
}

static int set_paused(uvmqtt_client_t *c, bool on) {
  if (!c)
    return UVMQTT_EINVAL;
  if (c->state == C_CLOSING || c->close_requested)
    return UVMQTT_ECLOSED;
  return uvmqtt__session_hold(c->session, uvmqtt__client_now(c), on);
}

int uvmqtt_client_pause(uvmqtt_client_t *c) {
  return set_paused(c, true);
}

int uvmqtt_client_resume(uvmqtt_client_t *c) {
  return set_paused(c, false);
}

bool uvmqtt_client_is_paused(const uvmqtt_client_t *c) {
  return c && c->state != C_CLOSING && uvmqtt__session_holding(c->session);
}
