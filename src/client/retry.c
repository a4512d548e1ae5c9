/* When an attempt fails or a connection drops: which errors are worth
 * retrying, the next server or address, reconnecting with backoff and
 * jitter, following a v5 redirect, reporting to the application, and
 * LEAVE, which carries out a drop or close requested from inside a
 * callback once the outermost entry returns. */
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "client/client_int.h"

static void schedule_reconnect(uvmqtt_client_t *c);

uvmqtt__rc_policy_t uvmqtt__client_rc_policy(const uvmqtt_client_t *c) {
  uvmqtt__rc_policy_t p = {.min_ms = c->o.rc_min,
                           .max_ms = c->o.rc_max,
                           .stable_ms = CX(c)->rc_stable_ms,
                           .jitter = c->o.jitter,
                           .suspect_after = CX(c)->rc_suspect_after,
                           .on_takeover = CX(c)->rc_on_takeover};
  return p;
}

/* An attempt or a connection ended: statistics, and the loop's count. */
static void note_end(uvmqtt_client_t *c, int status, bool was_connected) {
  if (CSTATS(c))
    uvmqtt__cstats_lost(CSTATS(c), uvmqtt__client_now(c), status);
  if (was_connected) {
    c->lc->st.connected--;
    c->lc->st.losses++;
  }
}

static void report_connect_failure(uvmqtt_client_t *c, int status,
                                   const uvmqtt_connack_t *ack) {
  if (c->connect_cb)
    c->connect_cb(c, status, ack, c->connect_arg);
}

/* Errors of our own making: no other server in the list helps (a
 * different question from retrying later, which errors.c answers). */
static bool config_error(int status) {
  return status == UVMQTT_EINVAL || status == UVMQTT_ETLS_CONFIG ||
         status == UVMQTT_ETLS_FILE || status == UVMQTT_ENOTSUP;
}

/* Whether reconnecting later may help: the library's one retry policy
 * (uvmqtt_err_is_retryable), with the HTTP status of a refused WebSocket
 * upgrade or proxy CONNECT that only the client knows. */
static bool attempt_retryable(const uvmqtt_client_t *c, int status) {
  if (status == UVMQTT_EWS_STATUS || status == UVMQTT_EPROXY_STATUS) {
    int http = c->at ? c->at->http_status : 0;
    return http >= 500 || http == 408 || http == 429;
  }
  return uvmqtt_err_is_retryable(status);
}

void uvmqtt__client_attempt_failed(uvmqtt_client_t *c, int status) {
  if (c->state == C_CLOSING)
    return;
  uvmqtt__client_close_stream(c);
  uvmqtt__loop_attempt_release(c);
  note_end(c, status, false);
  attempt_t *at = c->at; /* NULL when it could not be allocated */
  if (at) {
    at->last_error = status;
    if (at->resolve_req) {
      uvmqtt__resolve_cancel(at->resolve_req);
      at->resolve_req = NULL;
    }
  }
  /* More servers in the list: move on at once, unless the error is ours
   * (a bad configuration no other server can fix). */
  if (uvmqtt__cur_server(c) + 1 < uvmqtt__nservers(c) &&
      !config_error(status)) {
    c->servers->cur++;
    if (at)
      at->cur_addr = at->naddrs = 0;
    c->state = C_WAIT;
    uvmqtt__client_timer_start(c, 0);
    return;
  }
  const char *what =
      uvmqtt__nservers(c)
          ? uvmqtt__server_at(c, uvmqtt__cur_server(c)).host
          : (c->rare && c->rare->srv_domain ? c->rare->srv_domain : "?");
  if (uvmqtt__nservers(c) > 1 || c->srv_mode)
    uvmqtt__client_log(c, UVMQTT_LOG_WARN, "every server failed (last %s: %s)",
                       what, uvmqtt_strerror(status));
  else
    uvmqtt__client_log(c, UVMQTT_LOG_WARN, "connection to %s failed: %s", what,
                       uvmqtt_strerror(status));
  c->state = C_WAIT;
  bool retry = attempt_retryable(c, status);
  /* With SRV, one error names the whole pass; the last one is logged. */
  report_connect_failure(
      c, c->srv_mode && c->srv_done ? UVMQTT_ESRV_EXHAUSTED : status, NULL);
  if (c->state != C_WAIT)
    return; /* the callback connected or closed */
  if (!c->o.reconnect || c->user_disconnect || !retry) {
    c->state = C_IDLE;
    uvmqtt__client_timer_stop(c);
    return;
  }
  if (c->servers)
    c->servers->cur = 0;
  if (c->srv_mode)
    c->srv_done = false;
  schedule_reconnect(c);
}

/* The backoff (backoff.c): grows across failed attempts and connections
 * lost before they were stable; jittered. */
static void schedule_reconnect(uvmqtt_client_t *c) {
  uvmqtt__rc_policy_t p = uvmqtt__client_rc_policy(c);
  uint32_t r = 0;
  uvmqtt__loop_attempt_release(c);
  if (uv_random(NULL, NULL, &r, sizeof(r), 0, NULL) != 0)
    r = (uint32_t)uv_hrtime();
  uint64_t d = uvmqtt__rc_delay(&c->rc, &p, r);
  c->state = C_WAIT;
  uvmqtt__client_log(c, UVMQTT_LOG_INFO, "reconnecting in %u ms (attempt %u)",
                     (unsigned)d, c->rc.tries);
  uvmqtt__client_timer_start(c, d);
}

/* Applies a pending v5 redirect: the current server's host and port are
 * replaced by the Server Reference ("host[:port]", first of a
 * space-separated list) and a new attempt starts at once. Returns true
 * when followed. */
static bool follow_redirect(uvmqtt_client_t *c, uint8_t reason) {
  rare_t *r = c->rare;
  char *ref = r->redirect_ref;
  r->redirect_ref = NULL;
  bool ok = false;
  if (uvmqtt__nservers(c) && r->redirects < 5 &&
      (!c->rare->redirect_cb ||
       c->rare->redirect_cb(c, reason, ref, c->rare->redirect_arg) == 0)) {
    char *host = NULL;
    uint16_t port = 0;
    /* The list is one block: it is rebuilt with the new host. */
    size_t n = c->servers->n, cur = c->servers->cur;
    server_spec_t one, *tmp = n == 1 ? &one : uvmqtt__malloc(n * sizeof(*tmp));
    server_list_t *v = NULL;
    if (tmp && uvmqtt__server_ref_parse(ref, &host, &port) == 0) {
      for (size_t i = 0; i < n; i++)
        tmp[i] = uvmqtt__server_at(c, i);
      tmp[cur].host = host;
      tmp[cur].port = port;
      /* A host and port: a unix socket's broker moves to TCP. */
      if (tmp[cur].scheme == S_UNIX)
        tmp[cur].scheme = S_MQTT;
      else if (tmp[cur].scheme == S_WS_UNIX)
        tmp[cur].scheme = S_WS;
      v = uvmqtt__servers_pack(tmp, n);
    }
    if (tmp != &one)
      uvmqtt__free(tmp);
    if (v) {
      uvmqtt__client_log(c, UVMQTT_LOG_INFO,
                         "redirected (reason 0x%02x) to %s:%u", reason, host,
                         port);
      v->cur = (uint16_t)cur;
      uvmqtt__free(c->servers);
      c->servers = v;
      r->redirects++;
      uvmqtt__client_close_stream(c);
      c->state = C_WAIT;
      uvmqtt__client_timer_start(c, 0);
      ok = true;
    }
    uvmqtt__free(host);
  }
  uvmqtt__free(ref);
  return ok;
}

static void do_drop(uvmqtt_client_t *c) {
  int status = c->drop_status;
  bool was_connected = c->state == C_CONNECTED || c->state == C_LEAVING;
  bool refused = status == UVMQTT_EREFUSED;
  uint8_t reason = c->last_reason;
  c->drop_requested = false;
  c->drop_status = 0;
  if (c->state == C_CLOSING || c->state == C_IDLE || c->state == C_WAIT)
    return;
  leave_t *l = uvmqtt__leave_of(c);
  if (c->state == C_CONNECTED && status == 0 && l && !l->started &&
      uvmqtt__leave_start(c))
    return; /* done when the broker closes, or the linger time ends */
  if (l && c->state == C_LEAVING)
    uvmqtt__leave_free(c);
  uint8_t dr =
      c->o.version == UVMQTT_V5 ? uvmqtt__session_disconnect_reason(status) : 0;
  if (dr && c->stream && (c->state == C_MQTT || c->state == C_CONNECTED) &&
      uvmqtt__session_disconnect(c->session, dr, NULL) == 0) {
    /* The spec asks us to tell the server why (best effort). */
    uvmqtt__client_log(c, UVMQTT_LOG_INFO,
                       "sending DISCONNECT with reason 0x%02x", dr);
    uvmqtt__client_flush(c);
  }
  uvmqtt__session_connection_lost(c->session,
                                  status ? status : UVMQTT_ENOTCONN);
  if (c->rare && c->rare->redirect_ref && follow_redirect(c, reason)) {
    if (was_connected)
      note_end(c, status, true);
    return;
  }
  if (!was_connected) {
    if (refused) {
      uvmqtt__loop_attempt_release(c);
      note_end(c, UVMQTT_EREFUSED, false);
      uvmqtt_connack_t ack;
      memset(&ack, 0, sizeof(ack));
      ack.reason_code = reason;
      uvmqtt__client_log(
          c, UVMQTT_LOG_ERROR, "connection refused: %s (%u)",
          uvmqtt_reason_string(reason, c->o.version != UVMQTT_V5), reason);
      uvmqtt__client_close_stream(c);
      c->state = C_WAIT;
      report_connect_failure(c, UVMQTT_EREFUSED, &ack);
      if (c->state != C_WAIT)
        return;
      if (!c->o.reconnect || c->user_disconnect ||
          !uvmqtt_connack_is_retryable(reason)) {
        c->state = C_IDLE;
        return;
      }
      schedule_reconnect(c);
      return;
    }
    uvmqtt__client_attempt_failed(c, status);
    return;
  }
  uvmqtt__client_close_stream(c);
  /* The reconnect policy decides how the loss is reported and whether to
   * come back: a takeover (v5 0x8E) or repeated losses right after
   * CONNACK get their own status. */
  bool given_up = false;
  if (!c->user_disconnect) {
    uvmqtt__rc_policy_t p = uvmqtt__client_rc_policy(c);
    status =
        uvmqtt__rc_lost(&c->rc, &p, uvmqtt__client_now(c), status,
                        status == UVMQTT_EDISCONNECTED ? reason : 0, &given_up);
  }
  note_end(c, status, true);
  if (status == UVMQTT_ETAKENOVER || status == UVMQTT_ESHORTLIVED)
    c->lc->st.takeovers++;
  uvmqtt__client_log(c, status ? UVMQTT_LOG_WARN : UVMQTT_LOG_INFO,
                     "disconnected: %s", uvmqtt_strerror(status));
  /* Idle before the callback when the client will not reconnect, so that
   * the callback may connect again. */
  if (given_up)
    uvmqtt__client_log(c, UVMQTT_LOG_WARN,
                       "another connection took the client id over: not "
                       "reconnecting");
  bool stop = c->user_disconnect || !c->o.reconnect || given_up;
  c->state = stop ? C_IDLE : C_WAIT;
  if (stop)
    uvmqtt__client_timer_stop(c);
  bool reported = c->disconnect_reported;
  c->disconnect_reported = false;
  if (c->disconnect_cb && !reported)
    c->disconnect_cb(c, c->user_disconnect ? 0 : status, NULL,
                     c->disconnect_arg);
  if (c->rare && c->rare->drain && c->rare->drain->leaving)
    uvmqtt__drain_end(c, c->rare->drain->status);
  if (stop || c->state != C_WAIT)
    return;
  if (c->servers)
    c->servers->cur = 0;
  if (c->srv_mode)
    c->srv_done = false;
  schedule_reconnect(c);
}

void uvmqtt__client_drop(uvmqtt_client_t *c, int status) {
  if (c->drop_requested || c->state == C_CLOSING)
    return;
  c->drop_requested = true;
  c->drop_status = (int16_t)status;
}

void uvmqtt__client_leave(uvmqtt_client_t *c) {
  if (--c->depth > 0)
    return;
  c->depth++;
  while (c->drop_requested && !c->close_requested)
    do_drop(c);
  c->depth--;
  if (c->close_requested && c->state != C_CLOSING) {
    c->close_requested = false;
    uvmqtt__client_close_now(c);
  } else if (c->state == C_CLOSING) {
    uvmqtt__client_close_now(c);
  }
}
