/* The client's side of the delivery contract (include/uvmqtt.h): leaving
 * gracefully (delivery stops at once, DISCONNECT after the pending
 * acknowledgements, half-close, drain until the broker closes or the
 * linger time ends). */
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
  /* Nothing more is delivered from now on: the rest of a read is dropped
   * and the broker sends it again. */
  uvmqtt__session_halt_input(c->session);
  if (uvmqtt__leave_of(c))
    return 0;
  rare_t *r = uvmqtt__client_rare(c);
  leave_t *l = r ? uvmqtt__calloc(1, sizeof(*l)) : NULL;
  if (!l)
    return UVMQTT_ENOMEM;
  if (props && c->o.version == UVMQTT_V5 &&
      uvmqtt__props_dup(props, &l->props) < 0) {
    uvmqtt__free(l);
    return UVMQTT_ENOMEM;
  }
  l->reason = reason;
  r->leave = l;
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
