/* What the session reports, turned into the application's callbacks:
 * CONNACK (then subs.c sends the subscriptions), incoming
 * messages (to a v5 request waiting for them, a route, or the message
 * callback), publish and subscribe completions, a server DISCONNECT or
 * AUTH, log lines, and output to flush. */
#include <string.h>

#include "alloc.h"
#include "client/client_int.h"

static void ev_log(void *ud, int level, const char *msg) {
  uvmqtt__client_log(ud, level, "%s", msg);
}

static void ev_output(void *ud) {
  uvmqtt_client_t *c = ud;
  if (c->state != C_CLOSING)
    uvmqtt__client_flush_later(c);
}

/* Remembers a v5 Server Reference carried with reason 0x9C / 0x9D. */
static void note_redirect(uvmqtt_client_t *c, uint8_t reason,
                          const uvmqtt_props_t *p) {
  if (c->o.version != UVMQTT_V5 || (reason != 0x9C && reason != 0x9D) ||
      !(p->present & UVMQTT_PROP_BIT(UVMQTT_PROP_SERVER_REFERENCE)) ||
      !CX(c)->follow_redirects)
    return;
  rare_t *r = uvmqtt__client_rare(c);
  if (!r) {
    uvmqtt__client_log(c, UVMQTT_LOG_WARN,
                       "out of memory: redirect not followed");
    return;
  }
  uvmqtt__free(r->redirect_ref);
  r->redirect_ref =
      uvmqtt__strndup(p->server_reference.data, p->server_reference.len);
}

static void ev_connack(void *ud, const uvmqtt_connack_t *ack) {
  uvmqtt_client_t *c = ud;
  if (ack->reason_code != 0) {
    c->last_reason = ack->reason_code;
    note_redirect(c, ack->reason_code, &ack->props);
    return; /* reported by uvmqtt__client_drop via UVMQTT_EREFUSED */
  }
  if (c->rare)
    c->rare->redirects = 0;
  c->state = C_CONNECTED;
  /* The backoff does not start over here, only once the connection has
   * stayed up (backoff.c): a broker that accepts and closes at once must
   * not get a reconnect storm. */
  uvmqtt__rc_connected(&c->rc, uvmqtt__client_now(c));
  if (CSTATS(c))
    uvmqtt__cstats_connected(CSTATS(c), uvmqtt__client_now(c));
  c->lc->st.connects++;
  c->lc->st.connected++;
  uvmqtt__client_attempt_end(c);
  if (c->o.version == UVMQTT_V5 &&
      (ack->props.present &
       UVMQTT_PROP_BIT(UVMQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER))) {
    /* A v5 client has its rare block from creation. */
    char *id = uvmqtt__strndup(ack->props.assigned_client_identifier.data,
                               ack->props.assigned_client_identifier.len);
    if (id && c->rare) {
      uvmqtt__free(c->rare->assigned_id);
      c->rare->assigned_id = id;
    } else {
      uvmqtt__free(id);
    }
  }
  uvmqtt__client_log(c, UVMQTT_LOG_INFO, "connected (session present: %d)",
                     ack->session_present);
  uvmqtt__subs_connected(c, ack->session_present);
  if (c->connect_cb)
    c->connect_cb(c, 0, ack, c->connect_arg);
}

static void ev_message(void *ud, const uvmqtt_publish_t *pub) {
  uvmqtt_client_t *c = ud;
  uvmqtt_message_t m;
  c->lc->in_msgs++;
  m.topic = pub->topic.data;
  m.topic_len = pub->topic.len;
  m.payload = pub->payload.data;
  m.payload_len = pub->payload.len;
  m.qos = pub->qos;
  m.retain = pub->retain;
  m.dup = pub->dup;
  m.packet_id = pub->packet_id;
  m.props = c->o.version == UVMQTT_V5 ? &pub->props : NULL;
  m.ack_handle = uvmqtt__session_msg_handle(c->session);
  m.delivery_id = uvmqtt__session_in_did(c->session, &m.maybe_delivered);
  c->lc->st.delivered++;
  if (CSTATS(c))
    uvmqtt__cstats_delivered(CSTATS(c), pub->qos);
  if (c->rare && c->rare->reqs && uvmqtt__request_answer(c, &m))
    return;
  if (c->rt && uvmqtt__routes_dispatch(c, &m))
    return;
  if (c->message_cb)
    c->message_cb(c, &m, c->message_arg);
}

static void ev_publish_done(void *ud, uvmqtt_session_fn fn, void *arg,
                            int status, uint16_t id, uint8_t reason,
                            const uvmqtt_props_t *props) {
  uvmqtt_client_t *c = ud;
  uvmqtt_publish_cb cb = (uvmqtt_publish_cb)fn;
  if (CSTATS(c))
    uvmqtt__cstats_publish_done(CSTATS(c), status, reason);
  if (cb) {
    uvmqtt_pub_result_t r = {status, id, reason, props};
    cb(c, &r, arg);
  }
  if (uvmqtt__draining(c))
    uvmqtt__drain_check(c);
}

static void ev_sub_done(void *ud, int type, uvmqtt_session_fn fn, void *arg,
                        int status, uint16_t id, const uint8_t *codes,
                        size_t count, const uvmqtt_props_t *props) {
  (void)type;
  (void)fn; /* every request comes from subs.c, with its request as arg */
  uvmqtt__subs_done(ud, arg, status, id, codes, count, props);
}

static void ev_disconnect(void *ud, const uvmqtt_reason_t *r) {
  uvmqtt_client_t *c = ud;
  c->last_reason = r->reason_code;
  note_redirect(c, r->reason_code, &r->props);
  /* Fire now while the packet's memory is valid; uvmqtt__client_drop
   * reports it otherwise. */
  c->disconnect_reported = false;
  if (c->disconnect_cb && c->depth > 0) {
    /* Session taken over: its own status (the reconnect policy in retry.c
     * decides whether to come back). */
    c->disconnect_cb(
        c, r->reason_code == 0x8E ? UVMQTT_ETAKENOVER : UVMQTT_EDISCONNECTED, r,
        c->disconnect_arg);
    c->disconnect_reported = true;
  }
}

/* The rate limit (rare->throttle): asked by the session before it moves a
 * queued PUBLISH into the output, only while the gate is set. When the
 * bucket is short, the queue waits and the client's one deadline is moved
 * to when the message may go. */
static bool ev_may_publish(void *ud, size_t bytes, uint64_t now) {
  uvmqtt_client_t *c = ud;
  cthrottle_t *t = c->rare ? c->rare->throttle : NULL;
  if (!t || uvmqtt__throttle_take(&t->tb, bytes, now))
    return true;
  t->blocked = true;
  t->due = now + uvmqtt__throttle_wait(&t->tb, bytes, now);
  uvmqtt__client_arm_timer(c);
  return false;
}

static void ev_auth(void *ud, const uvmqtt_reason_t *r) {
  uvmqtt_client_t *c = ud;
  uvmqtt__client_log(c, UVMQTT_LOG_DEBUG, "AUTH received (reason 0x%02x)",
                     r->reason_code);
  if (!CX(c)->auth_method) {
    uvmqtt__client_log(c, UVMQTT_LOG_ERROR,
                       "AUTH received without enhanced "
                       "authentication configured");
    uvmqtt__client_drop(c, UVMQTT_EPROTOCOL);
    return;
  }
  if (r->reason_code == 0)
    return; /* re-authentication succeeded */
  /* The client has its rare block: it was created with auth_method. */
  if (!c->rare || !c->rare->auth_cb ||
      c->rare->auth_cb(c, r->reason_code, &r->props, c->rare->auth_arg))
    uvmqtt__client_drop(c, UVMQTT_EAUTH);
}

const uvmqtt_session_events_t uvmqtt__client_events = {
    .on_connack = ev_connack,
    .on_message = ev_message,
    .on_publish_done = ev_publish_done,
    .on_sub_done = ev_sub_done,
    .on_disconnect = ev_disconnect,
    .on_auth = ev_auth,
    .on_output = ev_output,
    .on_log = ev_log,
    .on_persist = uvmqtt__persist_event,
    .on_hold = uvmqtt__client_on_hold,
    .may_publish = ev_may_publish,
};
