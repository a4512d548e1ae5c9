/* The client: its creation and teardown (close, close_now), the event
 * callback setters and hooks, disconnect, the accessors, and the log
 * helper the client's files share. The client struct and the other private
 * types are in client_int.h; the protocol itself lives in the sans-I/O
 * session (src/session/). */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "client/client_int.h"

rare_t *uvmqtt__client_rare(uvmqtt_client_t *c) {
  if (!c->rare)
    c->rare = uvmqtt__calloc(1, sizeof(*c->rare));
  return c->rare;
}

void uvmqtt__client_log(uvmqtt_client_t *c, int level, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  if (!c->log_cb || level > c->log_level)
    return;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  c->log_cb(c, level, buf, c->log_arg);
}

/* Statistics and the rate limit: blocks of their own, allocated for the
 * clients that use them (the rare block points to them). */
static int fleet_new(uvmqtt_client_t *c, uv_loop_t *loop) {
  const opt_ext_t *x = CX(c);
  bool limit = x->rate_msgs || x->rate_bytes;
  if (!x->stats_on && !limit)
    return 0;
  rare_t *r = uvmqtt__client_rare(c);
  if (!r)
    return UVMQTT_ENOMEM;
  if (x->stats_on && !(r->stats = uvmqtt__cstats_new(uv_now(loop))))
    return UVMQTT_ENOMEM;
  if (limit) {
    if (!(r->throttle = uvmqtt__calloc(1, sizeof(*r->throttle))))
      return UVMQTT_ENOMEM;
    uvmqtt__throttle_init(&r->throttle->tb, x->rate_msgs, x->rate_msg_burst,
                          x->rate_bytes, x->rate_byte_burst, uv_now(loop));
  }
  return 0;
}

static void rare_free(uvmqtt_client_t *c) {
  if (!c->rare)
    return;
  uvmqtt__cstats_free(c->rare->stats);
  uvmqtt__free(c->rare->throttle);
  uvmqtt__free(c->rare);
  c->rare = NULL;
}

static void random_id(char *out, size_t cap) {
  uint8_t r[8];
  if (uv_random(NULL, NULL, r, sizeof(r), 0, NULL) != 0) {
    uint64_t t = uv_hrtime() ^ (uint64_t)(uintptr_t)out;
    memcpy(r, &t, sizeof(r));
  }
  snprintf(out, cap, "uvmqtt-%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1],
           r[2], r[3], r[4], r[5], r[6], r[7]);
}

int uvmqtt_client_new(uv_loop_t *loop, const uvmqtt_options_t *opts,
                      uvmqtt_client_t **out) {
  uvmqtt_options_t defaults;
  if (!loop || !out)
    return UVMQTT_EINVAL;
  if (!opts) {
    uvmqtt__options_defaults(&defaults);
    opts = &defaults;
  }
  const copts_t *k = &opts->k;
  if (k->version != UVMQTT_V5 && k->empty_id && !k->clean)
    return UVMQTT_ECLIENTID;
  /* A store keeps a session under its client id: a random or empty one
   * would leave it behind, unreachable, at every start. */
  if (OX(k)->store && (!opts->client_id || !opts->client_id[0]))
    return UVMQTT_ECLIENTID;
  /* Record first needs a store, and automatic acknowledgement. */
  if (OX(k)->record_first && (!OX(k)->store || OX(k)->manual_ack))
    return UVMQTT_EINVAL;
  /* The id lives after the struct, in the same allocation. */
  char rid[40];
  const char *id = opts->client_id;
  if (!id) {
    id = rid;
    if (k->empty_id)
      rid[0] = '\0';
    else
      random_id(rid, sizeof(rid));
  }
  /* One allocation: the struct, the id, then the session (8-aligned, all
   * it needs: see uvmqtt__session_init()). */
  size_t idsize = strlen(id) + 1;
  size_t size = offsetof(uvmqtt_client_t, id) + idsize;
  if (size < sizeof(uvmqtt_client_t))
    size = sizeof(uvmqtt_client_t);
  size_t soff = (size + 7) & ~(size_t)7;
  uvmqtt_client_t *c = uvmqtt__calloc(1, soff + uvmqtt__session_size());
  if (!c)
    return UVMQTT_ENOMEM;
  c->log_level = UVMQTT_LOG_INFO;
  memcpy(c->id, id, idsize);
  int rc = uvmqtt__copts_copy(&c->o, k);
  if (rc < 0) {
    uvmqtt__free(c);
    return rc;
  }
  /* The state of TLS and the v5 hooks (redirect, auth) lives there:
   * allocated now, as the hook setters cannot fail. Statistics and the
   * rate limit have blocks of their own, allocated when asked for. */
  if (((CX(c)->tls || c->o.version == UVMQTT_V5) && !uvmqtt__client_rare(c)) ||
      fleet_new(c, loop) < 0) {
    rare_free(c);
    uvmqtt__copts_free(&c->o);
    uvmqtt__free(c);
    return UVMQTT_ENOMEM;
  }
  uvmqtt_session_config_t sc;
  memset(&sc, 0, sizeof(sc));
  sc.version = (uint8_t)c->o.version;
  sc.max_inflight = opts->max_inflight;
  sc.max_queued = opts->max_queued;
  sc.max_queued_bytes = opts->max_queued_bytes;
  sc.queue_policy = opts->queue_policy;
  sc.max_packet_size = c->o.max_packet_size;
  sc.receive_maximum = CX(c)->receive_max;
  sc.topic_alias_max_in = CX(c)->topic_alias_in;
  sc.topic_alias_auto = CX(c)->topic_alias_auto;
  sc.persist = CX(c)->store != NULL;
  if ((rc = uvmqtt__session_init((char *)c + soff, &sc, &uvmqtt__client_events,
                                 c, &c->session)) < 0 ||
      (CX(c)->manual_ack &&
       (rc = uvmqtt__session_set_manual_ack(c->session, CX(c)->max_unacked,
                                            CX(c)->max_unacked_bytes)) < 0)) {
    if (c->session)
      uvmqtt__session_free(c->session, UVMQTT_ECLOSED);
    uvmqtt__copts_free(&c->o);
    rare_free(c);
    uvmqtt__free(c);
    return rc;
  }
  if ((CX(c)->store && (rc = uvmqtt__persist_open(c, loop)) < 0) ||
      (!(c->lc = uvmqtt__loop_acquire(loop)) && (rc = UVMQTT_ENOMEM))) {
    uvmqtt__persist_close(c);
    uvmqtt__session_free(c->session, UVMQTT_ECLOSED);
    uvmqtt__copts_free(&c->o);
    rare_free(c);
    uvmqtt__free(c);
    return rc;
  }
  if (c->rare && c->rare->throttle)
    uvmqtt__session_set_gate(c->session, true);
  *out = c;
  return 0;
}

static void on_handle_closed(uv_handle_t *h) {
  uvmqtt_client_t *c = h->data;
  c->open_handles--;
  uvmqtt__client_close_now(c);
}

/* Idempotent: advances the teardown as far as it can; called again as
 * each asynchronous close completes. */
void uvmqtt__client_close_now(uvmqtt_client_t *c) {
  leave_t *l = uvmqtt__leave_of(c);
  if (c->state == C_LEAVING && l && !l->done) {
    l->close = true; /* closes once the goodbye is over */
    return;
  }
  if (c->state == C_CONNECTED && c->stream && CX(c)->linger_ms &&
      uvmqtt__leave_ask(c, 0, NULL) == 0) {
    /* What was delivered is acknowledged, then DISCONNECT, half-close
     * and drain, as uvmqtt_client_disconnect() does; the close goes on
     * when that is over. */
    l = uvmqtt__leave_of(c);
    l->close = true;
    /* A disconnect asked for in the same callback is this goodbye. */
    c->drop_requested = false;
    c->depth++;
    bool waiting = uvmqtt__leave_start(c);
    c->depth--;
    if (waiting && !c->drop_requested)
      return;
    c->drop_requested = false;
  }
  c->close_requested = false;
  if (c->state != C_CLOSING) {
    bool connected = c->state == C_CONNECTED;
    bool attempting = c->state == C_RESOLVING || c->state == C_TRANSPORT ||
                      c->state == C_MQTT;
    /* Best effort: DISCONNECT is handed to the kernel, not waited for
     * (and not twice, after uvmqtt_client_disconnect() from a callback). */
    if (connected && c->stream && !c->user_disconnect &&
        uvmqtt__session_disconnect(c->session, 0, NULL) == 0)
      uvmqtt__client_flush(c);
    c->state = C_CLOSING;
    c->drop_requested = false;
    if (connected)
      c->lc->st.connected--;
    if (c->at && c->at->resolve_req) {
      uvmqtt__resolve_cancel(c->at->resolve_req);
      c->at->resolve_req = NULL;
    }
    if (c->stream || (c->at && c->at->opening)) {
      uvmqtt__session_connection_lost(c->session, UVMQTT_ECLOSED);
      uvmqtt__client_close_stream(c);
    }
    uvmqtt__leave_free(c);
    if (attempting && c->connect_cb)
      /* The attempt in progress ends: reported as cancelled. */
      c->connect_cb(c, UVMQTT_ECLOSED, NULL, c->connect_arg);
    uvmqtt__client_attempt_end(c); /* closes the resolver */
  }
  if (c->depth > 0)
    return;
  /* Wait for the stream (whose close cancels our writes) first. */
  if (c->open_handles > 0 || c->writes > 0)
    return;
  if (!c->freed_session) {
    c->freed_session = true;
    ENTER(c);
    uvmqtt__persist_close(c);
    uvmqtt__session_free(c->session, UVMQTT_ECLOSED);
    c->session = NULL;
    uvmqtt__subs_cancel_all(c);
    if (c->rare) {
      uvmqtt__request_cancel_all(c);
      if (c->rare->req_timer) {
        c->open_handles++;
        uv_close((uv_handle_t *)c->rare->req_timer, on_handle_closed);
      }
      if (c->rare->drain) {
        if (c->rare->drain->draining)
          uvmqtt__drain_end(c, UVMQTT_ECLOSED);
        c->open_handles++;
        uv_close((uv_handle_t *)&c->rare->drain->timer, on_handle_closed);
      }
    }
    c->depth--;
    uvmqtt__client_timer_stop(c);
    uvmqtt__loop_leave(c);
    return;
  }
  if (c->open_handles > 0)
    return;
  uvmqtt_close_cb cb = c->close_called ? c->close_cb : NULL;
  if (cb)
    cb(c);
  uvmqtt__routes_free(c);
  uvmqtt__subs_free(c);
  uvmqtt__servers_free(c);
  if (c->rare) {
    uvmqtt__free(c->rare->assigned_id);
    uvmqtt__stack_proxy_free(c); /* freed with its attempt already */
    uvmqtt__free(c->rare->srv_domain);
    uvmqtt__free(c->rare->req_timer);
    uvmqtt__free(c->rare->drain);
    uvmqtt__free(c->rare->redirect_ref);
    if (c->rare->tls_default)
      uvmqtt__tls_default_release();
    rare_free(c);
  }
  uvmqtt__copts_free(&c->o);
  uvmqtt__loop_free_dead(c->lc); /* when this was the loop's last client */
  uvmqtt__free(c);
}

void uvmqtt_client_close(uvmqtt_client_t *c, uvmqtt_close_cb cb) {
  if (!c || c->state == C_CLOSING || c->close_requested ||
      (uvmqtt__leave_of(c) && uvmqtt__leave_of(c)->close))
    return;
  c->close_cb = cb; /* the pre-connect hook's place: never called again */
  c->close_called = true;
  /* No message is delivered after this call. */
  uvmqtt__session_halt_input(c->session);
  if (c->depth > 0) {
    c->close_requested = true;
    return;
  }
  uvmqtt__client_close_now(c);
}

void uvmqtt_client_set_data(uvmqtt_client_t *c, void *data) {
  if (c)
    c->data = data;
}
void *uvmqtt_client_get_data(const uvmqtt_client_t *c) {
  return c ? c->data : NULL;
}
uv_loop_t *uvmqtt_client_get_loop(const uvmqtt_client_t *c) {
  return c ? c->lc->loop : NULL;
}
int uvmqtt_client_on_connect(uvmqtt_client_t *c, uvmqtt_connect_cb cb,
                             void *arg) {
  if (!c)
    return UVMQTT_EINVAL;
  c->connect_cb = cb;
  c->connect_arg = arg;
  return 0;
}
int uvmqtt_client_on_disconnect(uvmqtt_client_t *c, uvmqtt_disconnect_cb cb,
                                void *arg) {
  if (!c)
    return UVMQTT_EINVAL;
  c->disconnect_cb = cb;
  c->disconnect_arg = arg;
  return 0;
}
int uvmqtt_client_on_message(uvmqtt_client_t *c, uvmqtt_message_cb cb,
                             void *arg) {
  if (!c)
    return UVMQTT_EINVAL;
  c->message_cb = cb;
  c->message_arg = arg;
  return 0;
}
int uvmqtt_client_on_log(uvmqtt_client_t *c, uvmqtt_log_cb cb, void *arg,
                         int max_level) {
  if (!c)
    return UVMQTT_EINVAL;
  c->log_cb = cb;
  c->log_arg = arg;
  /* Levels are small: clamping keeps every comparison as it was. */
  c->log_level = (int8_t)(max_level < INT8_MIN   ? INT8_MIN
                          : max_level > INT8_MAX ? INT8_MAX
                                                 : max_level);
  return 0;
}
int uvmqtt_client_on_pre_connect(uvmqtt_client_t *c, uvmqtt_pre_connect_cb cb,
                                 void *arg) {
  if (!c)
    return UVMQTT_EINVAL;
  if (c->close_called)
    return UVMQTT_ECLOSED;
  c->pre_connect_cb = cb;
  c->pre_connect_arg = arg;
  return 0;
}

/* The redirect and auth hooks can fire only with MQTT 5; a v5 client has
 * its rare block from creation, so storing them cannot fail. */
int uvmqtt_client_on_auth(uvmqtt_client_t *c, uvmqtt_auth_cb cb, void *arg) {
  if (!c)
    return UVMQTT_EINVAL;
  if (c->rare) {
    c->rare->auth_cb = cb;
    c->rare->auth_arg = arg;
  }
  return 0;
}

int uvmqtt_client_on_redirect(uvmqtt_client_t *c, uvmqtt_redirect_cb cb,
                              void *arg) {
  if (!c)
    return UVMQTT_EINVAL;
  if (c->rare) {
    c->rare->redirect_cb = cb;
    c->rare->redirect_arg = arg;
  }
  return 0;
}

int uvmqtt_client_auth(uvmqtt_client_t *c, uint8_t reason, const void *data,
                       size_t len) {
  uvmqtt_props_t p;
  if (!c || (reason != 0x18 && reason != 0x19) || (len && !data) || len > 65535)
    return UVMQTT_EINVAL;
  if (c->o.version != UVMQTT_V5 || !CX(c)->auth_method)
    return UVMQTT_ENOTSUP;
  if (c->state != C_MQTT && c->state != C_CONNECTED)
    return UVMQTT_ENOTCONN;
  memset(&p, 0, sizeof(p));
  p.present = UVMQTT_PROP_BIT(UVMQTT_PROP_AUTHENTICATION_METHOD);
  p.authentication_method.data = CX(c)->auth_method;
  p.authentication_method.len = strlen(CX(c)->auth_method);
  if (data) {
    p.present |= UVMQTT_PROP_BIT(UVMQTT_PROP_AUTHENTICATION_DATA);
    p.authentication_data.data = data;
    p.authentication_data.len = len;
  }
  return uvmqtt__session_auth(c->session, reason, &p);
}

int uvmqtt_client_set_credentials(uvmqtt_client_t *c, const char *username,
                                  const void *password, size_t password_len) {
  if (!c)
    return UVMQTT_EINVAL;
  return uvmqtt__copts_set_credentials(&c->o, username, password, password_len);
}

int uvmqtt_client_disconnect(uvmqtt_client_t *c) {
  return uvmqtt_client_disconnect_ex(c, 0, NULL);
}

int uvmqtt_client_disconnect_ex(uvmqtt_client_t *c, uint8_t reason,
                                const uvmqtt_props_t *props) {
  /* The reason codes a client may send in DISCONNECT [MQTT-3.14.2-1]. */
  static const uint8_t allowed[] = {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x90,
                                    0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99};
  if (!c || !memchr(allowed, reason, sizeof(allowed)))
    return UVMQTT_EINVAL;
  if (uvmqtt__props_utf8_ok(props) < 0)
    return UVMQTT_EUTF8;
  if (c->state == C_CLOSING)
    return UVMQTT_ECLOSED;
  if (c->state == C_LEAVING)
    return 0; /* already leaving */
  if (c->state == C_WAIT || c->state == C_IDLE) {
    bool was = c->state == C_WAIT;
    c->user_disconnect = true;
    uvmqtt__client_timer_stop(c);
    uvmqtt__loop_attempt_release(c); /* it may wait for a slot */
    c->state = C_IDLE;
    return was ? 0 : UVMQTT_ENOTCONN;
  }
  /* Delivery stops now; DISCONNECT follows the acknowledgements of what
   * was delivered, from LEAVE (uvmqtt__client_drop -> do_drop). */
  if (c->state == C_CONNECTED && uvmqtt__leave_ask(c, reason, props) < 0)
    return UVMQTT_ENOMEM;
  c->user_disconnect = true;
  ENTER(c);
  /* An attempt still in progress ends as cancelled: the connect callback
   * must never see status 0 without a CONNACK. */
  uvmqtt__client_drop(c, c->state == C_CONNECTED ? 0 : UVMQTT_ECLOSED);
  LEAVE(c);
  return 0;
}

bool uvmqtt_client_is_connected(const uvmqtt_client_t *c) {
  return c && c->state == C_CONNECTED;
}
bool uvmqtt_client_get_reconnect(const uvmqtt_client_t *c) {
  return c && c->o.reconnect;
}
const char *uvmqtt_client_get_client_id(const uvmqtt_client_t *c) {
  return c ? uvmqtt__client_id(c) : NULL;
}
size_t uvmqtt_client_get_inflight(const uvmqtt_client_t *c) {
  return c && c->session ? uvmqtt__session_inflight(c->session) : 0;
}
size_t uvmqtt_client_get_queued(const uvmqtt_client_t *c) {
  return c && c->session ? uvmqtt__session_queued(c->session) : 0;
}
int uvmqtt_client_get_tls_error(const uvmqtt_client_t *c, int *mbedtls_err,
                                uint32_t *verify_flags) {
  if (!c)
    return UVMQTT_EINVAL;
  if (mbedtls_err)
    *mbedtls_err = c->rare ? c->rare->tls_err : 0;
  if (verify_flags)
    *verify_flags = c->rare ? c->rare->tls_flags : 0;
#if UVMQTT_HAVE_TLS
  return 0;
#else
  return UVMQTT_ENOTSUP;
#endif
}

int uvmqtt_client_stats(uvmqtt_client_t *c, uvmqtt_client_stats_t *st) {
  if (!c || !st)
    return UVMQTT_EINVAL;
  uint64_t now = uvmqtt__client_now(c);
  rare_t *r = uvmqtt__client_rare(c);
  if (!r || (!r->stats && !(r->stats = uvmqtt__cstats_new(now))))
    return UVMQTT_ENOMEM;
  if (c->state == C_CONNECTED && r->stats->s.connects == 0) {
    /* Connected before the first ask: the connection counts from now. */
    r->stats->connected = true;
    r->stats->up_at = now;
  }
  uvmqtt__cstats_read(r->stats, now, st);
  size_t q = c->session ? uvmqtt__session_queued(c->session) : 0;
  size_t f = c->session ? uvmqtt__session_inflight(c->session) : 0;
  st->queued = q > UINT32_MAX ? UINT32_MAX : (uint32_t)q;
  st->inflight = f > UINT32_MAX ? UINT32_MAX : (uint32_t)f;
  st->throttled = r->throttle && r->throttle->blocked ? st->queued : 0;
  size_t u = c->session ? uvmqtt__session_in_pending(c->session) : 0;
  st->unreleased = u > UINT32_MAX ? UINT32_MAX : (uint32_t)u;
  size_t a = uvmqtt_client_get_unacked(c);
  st->unacked = a > UINT32_MAX ? UINT32_MAX : (uint32_t)a;
  return 0;
}
