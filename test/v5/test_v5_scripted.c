/* MQTT 5 behaviour that mosquitto cannot be made to show on demand, against
 * a scripted broker: enhanced AUTH and re-authentication, server redirect,
 * a server exceeding our Receive Maximum, invalid topic aliases, server
 * DISCONNECT reason codes, outgoing topic aliases, the server's Receive
 * Maximum and Maximum Packet Size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sbroker.h"
#include "testutil.h"
#include "uvmqtt.h"
#include "uvmqtt/helpers.h"

#define WAIT_MS 5000

/* ---- recording client ---------------------------------------------------- */

typedef struct {
  uv_loop_t loop;
  uvmqtt_client_t *c;
  int connects, connected, connect_status;
  uint8_t connack_reason;
  int disconnects, disconnect_status;
  uint8_t disconnect_reason;
  char reason_string[64];
  int messages;
  char last_topic[64];
  int closed;
  int auth_calls;
  char auth_data[32];
  int redirect_calls;
  int redirect_veto;
  int pub_done, pub_status;
  uint8_t pub_reason;
  char pub_reason_string[32];
  char pub_user_prop[32];
  size_t max_inflight_seen;
} rec_t;

static void on_connect(uvmqtt_client_t *c, int status,
                       const uvmqtt_connack_t *ack, void *arg) {
  rec_t *r = arg;
  (void)c;
  r->connects++;
  r->connect_status = status;
  if (status == 0)
    r->connected++;
  if (ack)
    r->connack_reason = ack->reason_code;
}

static void on_disconnect(uvmqtt_client_t *c, int status,
                          const uvmqtt_reason_t *reason, void *arg) {
  rec_t *r = arg;
  (void)c;
  r->disconnects++;
  r->disconnect_status = status;
  if (reason) {
    r->disconnect_reason = reason->reason_code;
    if (reason->props.present & UVMQTT_PROP_BIT(UVMQTT_PROP_REASON_STRING))
      snprintf(r->reason_string, sizeof(r->reason_string), "%.*s",
               (int)reason->props.reason_string.len,
               reason->props.reason_string.data);
  }
}

static void on_message(uvmqtt_client_t *c, const uvmqtt_message_t *m,
                       void *arg) {
  rec_t *r = arg;
  (void)c;
  r->messages++;
  snprintf(r->last_topic, sizeof(r->last_topic), "%.*s", (int)m->topic_len,
           m->topic);
}

static int on_auth(uvmqtt_client_t *c, uint8_t reason,
                   const uvmqtt_props_t *props, void *arg) {
  rec_t *r = arg;
  r->auth_calls++;
  assert_int_equal(reason, 0x18);
  snprintf(r->auth_data, sizeof(r->auth_data), "%.*s",
           (int)props->authentication_data.len,
           (const char *)props->authentication_data.data);
  assert_int_equal(uvmqtt_client_auth(c, 0x18, "second", 6), 0);
  return 0;
}

static int on_redirect(uvmqtt_client_t *c, uint8_t reason, const char *ref,
                       void *arg) {
  rec_t *r = arg;
  (void)c;
  (void)reason;
  (void)ref;
  r->redirect_calls++;
  return r->redirect_veto;
}

static void on_closed(uvmqtt_client_t *c) {
  rec_t *r = uvmqtt_client_get_data(c);
  r->closed = 1;
}

static void on_pub(uvmqtt_client_t *c, const uvmqtt_pub_result_t *res,
                   void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  rec_t *r = arg;
  (void)id;
  r->pub_done++;
  if (status < 0)
    r->pub_status = status;
  r->pub_reason = res->reason_code;
  if (res->props &&
      (res->props->present & UVMQTT_PROP_BIT(UVMQTT_PROP_REASON_STRING)))
    snprintf(r->pub_reason_string, sizeof(r->pub_reason_string), "%.*s",
             (int)res->props->reason_string.len,
             res->props->reason_string.data);
  size_t pos = 0;
  uvmqtt_user_prop_t up;
  if (res->props && uvmqtt_props_next_user(res->props, &pos, &up))
    snprintf(r->pub_user_prop, sizeof(r->pub_user_prop), "%.*s=%.*s",
             (int)up.key.len, up.key.data, (int)up.value.len, up.value.data);
  size_t n = uvmqtt_client_get_inflight(c);
  if (n > r->max_inflight_seen)
    r->max_inflight_seen = n;
}

static uvmqtt_options_t *v5_opts(void) {
  uvmqtt_options_t *o;
  assert_int_equal(uvmqtt_options_new(&o), 0);
  uvmqtt_options_set_protocol(o, UVMQTT_V5);
  uvmqtt_options_set_reconnect(o, true, 50, 200, 0);
  uvmqtt_options_set_connect_timeout(o, 3000);
  return o;
}

static void rec_init(rec_t *r, uvmqtt_options_t *o) {
  memset(r, 0, sizeof(*r));
  assert_int_equal(uv_loop_init(&r->loop), 0);
  assert_int_equal(uvmqtt_client_new(&r->loop, o, &r->c), 0);
  uvmqtt_options_del(o);
  uvmqtt_client_set_data(r->c, r);
  uvmqtt_client_on_connect(r->c, on_connect, r);
  uvmqtt_client_on_disconnect(r->c, on_disconnect, r);
  uvmqtt_client_on_message(r->c, on_message, r);
  uvmqtt_client_on_auth(r->c, on_auth, r);
  uvmqtt_client_on_redirect(r->c, on_redirect, r);
}

static void rec_finish(rec_t *r, sbroker_t *b1, sbroker_t *b2) {
  uvmqtt_client_close(r->c, on_closed);
  assert_int_equal(tu_run_until(&r->loop, &r->closed, WAIT_MS), 0);
  if (b1)
    sb_stop(b1);
  if (b2)
    sb_stop(b2);
  assert_int_equal(tu_loop_close(&r->loop, 2000), 0);
}

static void connect_to(rec_t *r, int port) {
  char uri[64];
  snprintf(uri, sizeof(uri), "mqtt://127.0.0.1:%d", port);
  assert_int_equal(uvmqtt_client_connect_uri(r->c, uri), 0);
}

/* ---- enhanced authentication ----------------------------------------------
 */

typedef struct {
  int connects, auths, reauths;
  char method[32], first[32], second[32], again[32];
  uint8_t final_reason;
} auth_script_t;

static void copy_bin(char *dst, size_t cap, const uvmqtt_bin_t *b) {
  snprintf(dst, cap, "%.*s", (int)b->len, (const char *)b->data);
}

static void auth_broker(sconn_t *conn, const uvmqtt_packet_t *p, void *arg) {
  auth_script_t *s = arg;
  uvmqtt_packet_t out;
  memset(&out, 0, sizeof(out));
  if (p->type == UVMQTT_CONNECT) {
    const uvmqtt_props_t *pr = &p->u.connect.props;
    s->connects++;
    snprintf(s->method, sizeof(s->method), "%.*s",
             (int)pr->authentication_method.len,
             pr->authentication_method.data);
    copy_bin(s->first, sizeof(s->first), &pr->authentication_data);
    out.type = UVMQTT_AUTH;
    out.u.auth.reason_code = 0x18;
    out.u.auth.props.present =
        UVMQTT_PROP_BIT(UVMQTT_PROP_AUTHENTICATION_METHOD) |
        UVMQTT_PROP_BIT(UVMQTT_PROP_AUTHENTICATION_DATA);
    out.u.auth.props.authentication_method = pr->authentication_method;
    out.u.auth.props.authentication_data.data = (const uint8_t *)"challenge";
    out.u.auth.props.authentication_data.len = 9;
    sb_send(conn, &out);
  } else if (p->type == UVMQTT_AUTH && p->u.auth.reason_code == 0x18) {
    s->auths++;
    copy_bin(s->second, sizeof(s->second),
             &p->u.auth.props.authentication_data);
    uvmqtt_props_t props;
    memset(&props, 0, sizeof(props));
    props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_AUTHENTICATION_METHOD);
    props.authentication_method = p->u.auth.props.authentication_method;
    sb_connack(conn, s->final_reason, &props);
  } else if (p->type == UVMQTT_AUTH && p->u.auth.reason_code == 0x19) {
    s->reauths++;
    copy_bin(s->again, sizeof(s->again), &p->u.auth.props.authentication_data);
    out.type = UVMQTT_AUTH;
    out.u.auth.reason_code = 0x00;
    out.u.auth.props.present =
        UVMQTT_PROP_BIT(UVMQTT_PROP_AUTHENTICATION_METHOD);
    out.u.auth.props.authentication_method =
        p->u.auth.props.authentication_method;
    sb_send(conn, &out);
  }
}

static void test_enhanced_auth_and_reauth(void **state) {
  (void)state;
  rec_t r;
  sbroker_t b;
  auth_script_t s;
  memset(&s, 0, sizeof(s));
  uvmqtt_options_t *o = v5_opts();
  assert_int_equal(uvmqtt_options_set_auth(o, "X-TEST", "first", 5), 0);
  rec_init(&r, o);
  assert_int_equal(sb_start(&b, &r.loop, auth_broker, &s), 0);
  connect_to(&r, b.port);
  assert_int_equal(tu_run_until(&r.loop, &r.connected, WAIT_MS), 0);
  assert_string_equal(s.method, "X-TEST");
  assert_string_equal(s.first, "first");
  assert_int_equal(r.auth_calls, 1);
  assert_string_equal(r.auth_data, "challenge");
  assert_string_equal(s.second, "second");
  /* Re-authentication on the live connection. */
  assert_int_equal(uvmqtt_client_auth(r.c, 0x19, "again", 5), 0);
  assert_int_equal(tu_run_until(&r.loop, &s.reauths, WAIT_MS), 0);
  tu_run_for(&r.loop, 100);
  assert_string_equal(s.again, "again");
  assert_int_equal(r.disconnects, 0);
  assert_true(uvmqtt_client_is_connected(r.c));
  rec_finish(&r, &b, NULL);
}

/* The auth hook works without a method at creation: the pre-connect hook
 * sets it with uvmqtt_client_set_auth. */
static int set_auth_before_connect(uvmqtt_client_t *c, unsigned attempt,
                                   void *arg) {
  (void)attempt;
  (void)arg;
  assert_int_equal(uvmqtt_client_set_auth(c, "X-TEST", "first", 5), 0);
  return 0;
}

static void test_auth_method_set_in_pre_connect(void **state) {
  (void)state;
  rec_t r;
  sbroker_t b;
  auth_script_t s;
  memset(&s, 0, sizeof(s));
  rec_init(&r, v5_opts());
  assert_int_equal(
      uvmqtt_client_on_pre_connect(r.c, set_auth_before_connect, NULL), 0);
  assert_int_equal(sb_start(&b, &r.loop, auth_broker, &s), 0);
  connect_to(&r, b.port);
  assert_int_equal(tu_run_until(&r.loop, &r.connected, WAIT_MS), 0);
  assert_string_equal(s.method, "X-TEST");
  assert_int_equal(r.auth_calls, 1);
  assert_string_equal(s.second, "second");
  rec_finish(&r, &b, NULL);
}

static void test_auth_failure_not_retried(void **state) {
  (void)state;
  rec_t r;
  sbroker_t b;
  auth_script_t s;
  memset(&s, 0, sizeof(s));
  s.final_reason = 0x87; /* not authorized */
  uvmqtt_options_t *o = v5_opts();
  uvmqtt_options_set_auth(o, "X-TEST", "first", 5);
  rec_init(&r, o);
  assert_int_equal(sb_start(&b, &r.loop, auth_broker, &s), 0);
  connect_to(&r, b.port);
  assert_int_equal(tu_run_until(&r.loop, &r.connects, WAIT_MS), 0);
  assert_int_equal(r.connect_status, UVMQTT_EREFUSED);
  assert_int_equal(r.connack_reason, 0x87);
  tu_run_for(&r.loop, 600); /* backoff is 50 ms: a retry would show */
  assert_int_equal(s.connects, 1);
  assert_int_equal(r.connects, 1);
  rec_finish(&r, &b, NULL);
}

static void test_auth_without_method_rejected(void **state) {
  (void)state;
  rec_t r;
  uvmqtt_options_t *o = v5_opts();
  rec_init(&r, o);
  assert_int_equal(uvmqtt_client_auth(r.c, 0x19, "x", 1), UVMQTT_ENOTSUP);
  assert_int_equal(uvmqtt_client_auth(r.c, 0x42, "x", 1), UVMQTT_EINVAL);
  rec_finish(&r, NULL, NULL);
}

/* ---- redirect ---------------------------------------------------------------
 */

typedef struct {
  int connects;
  uint8_t reason;
  char ref[64];
  bool via_disconnect;
} redirect_script_t;

static void redirect_broker(sconn_t *conn, const uvmqtt_packet_t *p,
                            void *arg) {
  redirect_script_t *s = arg;
  if (p->type != UVMQTT_CONNECT)
    return;
  s->connects++;
  uvmqtt_props_t props;
  memset(&props, 0, sizeof(props));
  if (s->ref[0]) {
    props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_SERVER_REFERENCE);
    props.server_reference.data = s->ref;
    props.server_reference.len = strlen(s->ref);
  }
  if (s->via_disconnect) {
    sb_connack(conn, 0, NULL);
    uvmqtt_packet_t d;
    memset(&d, 0, sizeof(d));
    d.type = UVMQTT_DISCONNECT;
    d.u.disconnect.reason_code = s->reason;
    d.u.disconnect.props = props;
    sb_send(conn, &d);
  } else {
    sb_connack(conn, s->reason, &props);
  }
}

static void accept_broker(sconn_t *conn, const uvmqtt_packet_t *p, void *arg) {
  int *connects = arg;
  if (p->type == UVMQTT_CONNECT) {
    (*connects)++;
    sb_connack(conn, 0, NULL);
  }
}

static void run_redirect(bool via_disconnect, uint8_t reason, bool veto) {
  rec_t r;
  sbroker_t a, b;
  redirect_script_t s;
  int b_connects = 0;
  memset(&s, 0, sizeof(s));
  rec_init(&r, v5_opts());
  r.redirect_veto = veto;
  assert_int_equal(sb_start(&b, &r.loop, accept_broker, &b_connects), 0);
  s.reason = reason;
  s.via_disconnect = via_disconnect;
  snprintf(s.ref, sizeof(s.ref), "127.0.0.1:%d", b.port);
  assert_int_equal(sb_start(&a, &r.loop, redirect_broker, &s), 0);
  connect_to(&r, a.port);
  if (veto) {
    /* Refused: reported as any refusal (0x9C is worth retrying, and each
     * retry is redirected and vetoed again); B never sees a connection. */
    assert_int_equal(tu_run_until(&r.loop, &r.connects, WAIT_MS), 0);
    assert_int_equal(r.connect_status, UVMQTT_EREFUSED);
    assert_int_equal(r.connack_reason, 0x9C);
    tu_run_for(&r.loop, 200);
    assert_true(r.redirect_calls >= 1);
    assert_int_equal(b_connects, 0);
  } else {
    assert_int_equal(tu_run_until(&r.loop, &b_connects, WAIT_MS), 0);
    tu_run_for(&r.loop, 100);
    assert_int_equal(r.redirect_calls, 1);
    assert_true(uvmqtt_client_is_connected(r.c));
    assert_int_equal(s.connects, 1);
  }
  rec_finish(&r, &a, &b);
}

static void test_redirect_connack_use_another_server(void **state) {
  (void)state;
  run_redirect(false, 0x9C, false);
}

static void test_redirect_disconnect_server_moved(void **state) {
  (void)state;
  run_redirect(true, 0x9D, false);
}

static void test_redirect_vetoed(void **state) {
  (void)state;
  run_redirect(false, 0x9C, true);
}

/* ---- misbehaving servers ----------------------------------------------------
 */

typedef struct {
  int step;
  int got_disconnect;
  uint8_t disconnect_reason;
  int pubacks;
  /* what to send after CONNACK */
  void (*after_connack)(sconn_t *conn);
} bad_script_t;

static bad_script_t *g_bad;

static void bad_broker(sconn_t *conn, const uvmqtt_packet_t *p, void *arg) {
  bad_script_t *s = arg;
  if (p->type == UVMQTT_CONNECT) {
    if (s->step++ == 0) {
      sb_connack(conn, 0, NULL);
      s->after_connack(conn);
    } else {
      sb_connack(conn, 0, NULL);
    }
  } else if (p->type == UVMQTT_DISCONNECT) {
    s->got_disconnect++;
    s->disconnect_reason = p->u.disconnect.reason_code;
  }
}

static void send_publish(sconn_t *conn, uint8_t qos, uint16_t id,
                         const char *topic, uint16_t alias) {
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_PUBLISH;
  p.u.publish.qos = qos;
  p.u.publish.packet_id = id;
  p.u.publish.topic.data = topic;
  p.u.publish.topic.len = strlen(topic);
  p.u.publish.payload.data = (const uint8_t *)"x";
  p.u.publish.payload.len = 1;
  if (alias) {
    p.u.publish.props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS);
    p.u.publish.props.topic_alias = alias;
  }
  sb_send(conn, &p);
}

static void three_qos2(sconn_t *conn) {
  for (uint16_t id = 1; id <= 3; id++)
    send_publish(conn, 2, id, "t/q2", 0);
}

static void alias_too_big(sconn_t *conn) {
  send_publish(conn, 0, 0, "t/alias", 6);
}

static void alias_undefined(sconn_t *conn) {
  send_publish(conn, 0, 0, "", 2);
}

static void alias_ok(sconn_t *conn) {
  send_publish(conn, 0, 0, "a/b", 3);
  send_publish(conn, 1, 7, "", 3);
}

static void run_bad(void (*after)(sconn_t *), uint16_t recv_max,
                    uint16_t alias_max, int want_status, uint8_t want_reason) {
  rec_t r;
  sbroker_t b;
  bad_script_t s;
  memset(&s, 0, sizeof(s));
  s.after_connack = after;
  g_bad = &s;
  uvmqtt_options_t *o = v5_opts();
  if (recv_max)
    uvmqtt_options_set_receive_maximum(o, recv_max);
  uvmqtt_options_set_topic_alias(o, alias_max, false);
  rec_init(&r, o);
  assert_int_equal(sb_start(&b, &r.loop, bad_broker, &s), 0);
  connect_to(&r, b.port);
  if (want_status) {
    assert_int_equal(tu_run_until(&r.loop, &r.disconnects, WAIT_MS), 0);
    assert_int_equal(r.disconnect_status, want_status);
    assert_int_equal(tu_run_until(&r.loop, &s.got_disconnect, WAIT_MS), 0);
    assert_int_equal(s.disconnect_reason, want_reason);
  } else {
    assert_int_equal(tu_run_until(&r.loop, &r.connected, WAIT_MS), 0);
    tu_run_for(&r.loop, 200);
    assert_int_equal(r.disconnects, 0);
  }
  rec_finish(&r, &b, NULL);
}

static void test_server_exceeds_receive_maximum(void **state) {
  (void)state;
  run_bad(three_qos2, 2, 0, UVMQTT_ERECVMAX, 0x93);
}

static void test_topic_alias_over_maximum(void **state) {
  (void)state;
  run_bad(alias_too_big, 0, 5, UVMQTT_ETOPICALIAS, 0x94);
}

static void test_topic_alias_undefined(void **state) {
  (void)state;
  run_bad(alias_undefined, 0, 5, UVMQTT_ETOPICALIAS, 0x94);
}

static void test_topic_alias_not_allowed(void **state) {
  (void)state;
  run_bad(alias_too_big, 0, 0, UVMQTT_ETOPICALIAS, 0x94);
}

static void test_topic_alias_incoming_mapping(void **state) {
  (void)state;
  rec_t r;
  sbroker_t b;
  bad_script_t s;
  memset(&s, 0, sizeof(s));
  s.after_connack = alias_ok;
  uvmqtt_options_t *o = v5_opts();
  uvmqtt_options_set_topic_alias(o, 5, false);
  rec_init(&r, o);
  assert_int_equal(sb_start(&b, &r.loop, bad_broker, &s), 0);
  connect_to(&r, b.port);
  int two = 0;
  uint64_t end = tu_now_ms() + WAIT_MS;
  while (r.messages < 2 && tu_now_ms() < end)
    uv_run(&r.loop, UV_RUN_ONCE);
  (void)two;
  assert_int_equal(r.messages, 2);
  assert_string_equal(r.last_topic, "a/b");
  assert_int_equal(r.disconnects, 0);
  rec_finish(&r, &b, NULL);
}

/* ---- server DISCONNECT reasons
 * ------------------------------------------------ */

static uint8_t g_disc_reason;

static void disc_broker(sconn_t *conn, const uvmqtt_packet_t *p, void *arg) {
  (void)arg;
  if (p->type != UVMQTT_CONNECT)
    return;
  sb_connack(conn, 0, NULL);
  uvmqtt_packet_t d;
  memset(&d, 0, sizeof(d));
  d.type = UVMQTT_DISCONNECT;
  d.u.disconnect.reason_code = g_disc_reason;
  d.u.disconnect.props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_REASON_STRING);
  d.u.disconnect.props.reason_string.data = "scripted";
  d.u.disconnect.props.reason_string.len = 8;
  sb_send(conn, &d);
}

static void test_server_disconnect_reasons(void **state) {
  (void)state;
  static const uint8_t codes[] = {0x00, 0x9C, 0x9D, 0x80, 0x81, 0x82, 0x83,
                                  0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90,
                                  0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
                                  0x9A, 0x9B, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};
  for (size_t i = 0; i < sizeof(codes); i++) {
    rec_t r;
    sbroker_t b;
    g_disc_reason = codes[i];
    uvmqtt_options_t *o = v5_opts();
    uvmqtt_options_set_reconnect(o, false, 0, 0, 0);
    rec_init(&r, o);
    assert_int_equal(sb_start(&b, &r.loop, disc_broker, NULL), 0);
    connect_to(&r, b.port);
    assert_int_equal(tu_run_until(&r.loop, &r.disconnects, WAIT_MS), 0);
    /* Session taken over has a status of its own (uvmqtt_takeover_t). */
    assert_int_equal(r.disconnect_status, codes[i] == 0x8E
                                              ? UVMQTT_ETAKENOVER
                                              : UVMQTT_EDISCONNECTED);
    assert_int_equal(r.disconnect_reason, codes[i]);
    assert_string_equal(r.reason_string, "scripted");
    rec_finish(&r, &b, NULL);
  }
  /* 0x04 (disconnect with will) is for clients only: a server sending it
   * has sent a malformed packet. */
  rec_t r;
  sbroker_t b;
  g_disc_reason = 0x04;
  uvmqtt_options_t *o = v5_opts();
  uvmqtt_options_set_reconnect(o, false, 0, 0, 0);
  rec_init(&r, o);
  assert_int_equal(sb_start(&b, &r.loop, disc_broker, NULL), 0);
  connect_to(&r, b.port);
  assert_int_equal(tu_run_until(&r.loop, &r.disconnects, WAIT_MS), 0);
  assert_int_equal(r.disconnect_status, UVMQTT_EREASON);
  rec_finish(&r, &b, NULL);
}

/* ---- the server's limits
 * ------------------------------------------------------ */

typedef struct {
  uvmqtt_props_t connack;
  int publishes;
  int inflight, max_inflight;
  char topics[16][32];
  uint16_t aliases[16];
  sconn_t *conn;
  bool hold_acks;
  uint8_t ack_reason; /* PUBACK reason code, with a reason string */
} limits_script_t;

static void limits_broker(sconn_t *conn, const uvmqtt_packet_t *p, void *arg) {
  limits_script_t *s = arg;
  if (p->type == UVMQTT_CONNECT) {
    s->conn = conn;
    sb_connack(conn, 0, &s->connack);
  } else if (p->type == UVMQTT_PUBLISH) {
    const uvmqtt_publish_t *pub = &p->u.publish;
    if (s->publishes < 16) {
      snprintf(s->topics[s->publishes], 32, "%.*s", (int)pub->topic.len,
               pub->topic.data);
      s->aliases[s->publishes] =
          (pub->props.present & UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS))
              ? pub->props.topic_alias
              : 0;
    }
    s->publishes++;
    if (pub->qos == 1) {
      s->inflight++;
      if (s->inflight > s->max_inflight)
        s->max_inflight = s->inflight;
      if (!s->hold_acks) {
        uvmqtt_packet_t a;
        memset(&a, 0, sizeof(a));
        a.type = UVMQTT_PUBACK;
        a.u.ack.packet_id = pub->packet_id;
        if (s->ack_reason) {
          static const uvmqtt_user_prop_t up = {{"k", 1}, {"v", 1}};
          a.u.ack.reason_code = s->ack_reason;
          a.u.ack.props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_REASON_STRING);
          a.u.ack.props.reason_string.data = "quota";
          a.u.ack.props.reason_string.len = 5;
          a.u.ack.props.user_props = &up;
          a.u.ack.props.user_prop_count = 1;
        }
        sb_send(conn, &a);
        s->inflight--;
      }
    }
  }
}

static void test_outgoing_topic_alias_lru(void **state) {
  (void)state;
  rec_t r;
  sbroker_t b;
  limits_script_t s;
  memset(&s, 0, sizeof(s));
  s.connack.present = UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS_MAXIMUM);
  s.connack.topic_alias_maximum = 2;
  uvmqtt_options_t *o = v5_opts();
  uvmqtt_options_set_topic_alias(o, 0, true);
  rec_init(&r, o);
  assert_int_equal(sb_start(&b, &r.loop, limits_broker, &s), 0);
  connect_to(&r, b.port);
  assert_int_equal(tu_run_until(&r.loop, &r.connected, WAIT_MS), 0);
  const char *seq[] = {"t/a", "t/a", "t/b", "t/c", "t/a"};
  for (int i = 0; i < 5; i++)
    assert_true(uvmqtt_publish(r.c, seq[i], "x", 1, 0, false, NULL, NULL) >= 0);
  uint64_t end = tu_now_ms() + WAIT_MS;
  while (s.publishes < 5 && tu_now_ms() < end)
    uv_run(&r.loop, UV_RUN_ONCE);
  assert_int_equal(s.publishes, 5);
  /* t/a gets alias 1, then is sent by alias alone; t/b alias 2; t/c takes
   * the least recently used slot (1, t/a); t/a then takes slot 2. */
  assert_string_equal(s.topics[0], "t/a");
  assert_int_equal(s.aliases[0], 1);
  assert_string_equal(s.topics[1], "");
  assert_int_equal(s.aliases[1], 1);
  assert_string_equal(s.topics[2], "t/b");
  assert_int_equal(s.aliases[2], 2);
  assert_string_equal(s.topics[3], "t/c");
  assert_int_equal(s.aliases[3], 1);
  assert_string_equal(s.topics[4], "t/a");
  assert_int_equal(s.aliases[4], 2);
  rec_finish(&r, &b, NULL);
}

/* The PUBACK's reason code and properties reach the publish callback. */
static void test_puback_reason_and_props(void **state) {
  (void)state;
  rec_t r;
  sbroker_t b;
  limits_script_t s;
  memset(&s, 0, sizeof(s));
  s.ack_reason = 0x97; /* quota exceeded */
  rec_init(&r, v5_opts());
  assert_int_equal(sb_start(&b, &r.loop, limits_broker, &s), 0);
  connect_to(&r, b.port);
  assert_int_equal(tu_run_until(&r.loop, &r.connected, WAIT_MS), 0);
  assert_true(uvmqtt_publish(r.c, "t/q", "x", 1, 1, false, on_pub, &r) > 0);
  assert_int_equal(tu_run_until(&r.loop, &r.pub_done, WAIT_MS), 0);
  assert_int_equal(r.pub_status, UVMQTT_EREJECTED);
  assert_int_equal(r.pub_reason, 0x97);
  assert_string_equal(r.pub_reason_string, "quota");
  assert_string_equal(r.pub_user_prop, "k=v");
  rec_finish(&r, &b, NULL);
}

static void test_server_receive_maximum_caps_window(void **state) {
  (void)state;
  rec_t r;
  sbroker_t b;
  limits_script_t s;
  memset(&s, 0, sizeof(s));
  s.connack.present = UVMQTT_PROP_BIT(UVMQTT_PROP_RECEIVE_MAXIMUM);
  s.connack.receive_maximum = 2;
  s.hold_acks = true;
  uvmqtt_options_t *o = v5_opts();
  uvmqtt_options_set_max_inflight(o, 50);
  rec_init(&r, o);
  assert_int_equal(sb_start(&b, &r.loop, limits_broker, &s), 0);
  connect_to(&r, b.port);
  assert_int_equal(tu_run_until(&r.loop, &r.connected, WAIT_MS), 0);
  for (int i = 0; i < 5; i++)
    assert_true(uvmqtt_publish(r.c, "t/rm", "x", 1, 1, false, on_pub, &r) > 0);
  tu_run_for(&r.loop, 300);
  assert_int_equal(s.publishes, 2);
  assert_int_equal(uvmqtt_client_get_inflight(r.c), 2);
  assert_int_equal(uvmqtt_client_get_queued(r.c), 3);
  rec_finish(&r, &b, NULL);
  assert_int_equal(r.pub_done, 5); /* cancelled on close, each once */
  assert_int_equal(r.pub_status, UVMQTT_ECLOSED);
}

static void test_server_maximum_packet_size(void **state) {
  (void)state;
  rec_t r;
  sbroker_t b;
  limits_script_t s;
  char big[200];
  memset(big, 'x', sizeof(big));
  memset(&s, 0, sizeof(s));
  s.connack.present = UVMQTT_PROP_BIT(UVMQTT_PROP_MAXIMUM_PACKET_SIZE);
  s.connack.maximum_packet_size = 100;
  rec_init(&r, v5_opts());
  assert_int_equal(sb_start(&b, &r.loop, limits_broker, &s), 0);
  connect_to(&r, b.port);
  assert_int_equal(tu_run_until(&r.loop, &r.connected, WAIT_MS), 0);
  assert_int_equal(
      uvmqtt_publish(r.c, "t/big", big, sizeof(big), 1, false, on_pub, &r),
      UVMQTT_ETOOBIG);
  assert_true(uvmqtt_publish(r.c, "t/small", big, 50, 1, false, on_pub, &r) >
              0);
  assert_int_equal(tu_run_until(&r.loop, &r.pub_done, WAIT_MS), 0);
  assert_int_equal(s.publishes, 1);
  assert_string_equal(s.topics[0], "t/small");
  rec_finish(&r, &b, NULL);
}

static void test_server_maximum_qos(void **state) {
  (void)state;
  rec_t r;
  sbroker_t b;
  limits_script_t s;
  memset(&s, 0, sizeof(s));
  s.connack.present = UVMQTT_PROP_BIT(UVMQTT_PROP_MAXIMUM_QOS);
  s.connack.maximum_qos = 1;
  rec_init(&r, v5_opts());
  assert_int_equal(sb_start(&b, &r.loop, limits_broker, &s), 0);
  /* Queued before the CONNACK says the limit: completes with EQOS. */
  assert_true(uvmqtt_publish(r.c, "t/q2", "x", 1, 2, false, on_pub, &r) > 0);
  connect_to(&r, b.port);
  assert_int_equal(tu_run_until(&r.loop, &r.connected, WAIT_MS), 0);
  assert_int_equal(tu_run_until(&r.loop, &r.pub_done, WAIT_MS), 0);
  assert_int_equal(r.pub_status, UVMQTT_EQOS);
  /* Once known, refused at once; QoS 1 still goes. */
  assert_int_equal(uvmqtt_publish(r.c, "t/q2", "x", 1, 2, false, on_pub, &r),
                   UVMQTT_EQOS);
  assert_true(uvmqtt_publish(r.c, "t/q1", "x", 1, 1, false, on_pub, &r) > 0);
  r.pub_status = 0;
  uint64_t end = tu_now_ms() + WAIT_MS;
  while (r.pub_done < 2 && tu_now_ms() < end)
    uv_run(&r.loop, UV_RUN_ONCE);
  assert_int_equal(r.pub_done, 2);
  assert_int_equal(r.pub_status, 0);
  assert_int_equal(s.publishes, 1);
  assert_string_equal(s.topics[0], "t/q1");
  rec_finish(&r, &b, NULL);
}

/* ---- MQTT 5.0 statements (see docs/mqtt5-conformance.md) ----------------
 */

/* Wraps auth_broker and checks what the client sends around it. */
typedef struct {
  auth_script_t s;
  int auth_packets, wrong_method, early, late, connack_sent;
} auth_check_t;

static void auth_check_broker(sconn_t *conn, const uvmqtt_packet_t *p,
                              void *arg) {
  auth_check_t *a = arg;
  if (p->type == UVMQTT_AUTH) {
    const uvmqtt_props_t *pr = &p->u.auth.props;
    a->auth_packets++;
    if (!(pr->present & UVMQTT_PROP_BIT(UVMQTT_PROP_AUTHENTICATION_METHOD)) ||
        pr->authentication_method.len != 6 ||
        memcmp(pr->authentication_method.data, "X-TEST", 6) != 0)
      a->wrong_method++;
  } else if (p->type != UVMQTT_CONNECT && p->type != UVMQTT_DISCONNECT) {
    if (a->connack_sent)
      a->late++;
    else
      a->early++;
  }
  auth_broker(conn, p, &a->s);
  if (p->type == UVMQTT_AUTH && p->u.auth.reason_code == 0x18)
    a->connack_sent = 1; /* auth_broker answered it with the CONNACK */
}

/* [MQTT-4.12.0-5], [MQTT-4.12.1-1]: every AUTH the client sends, the
 * re-authentication included, carries the Authentication Method of its
 * CONNECT. [MQTT-3.1.2-30]: messages published before connecting wait
 * for the CONNACK; only AUTH goes out during the exchange. */
static void test_auth_packets_carry_method(void **state) {
  (void)state;
  rec_t r;
  sbroker_t b;
  auth_check_t a;
  memset(&a, 0, sizeof(a));
  uvmqtt_options_t *o = v5_opts();
  assert_int_equal(uvmqtt_options_set_auth(o, "X-TEST", "first", 5), 0);
  rec_init(&r, o);
  assert_int_equal(sb_start(&b, &r.loop, auth_check_broker, &a), 0);
  assert_int_equal(uvmqtt_publish(r.c, "t/early", "x", 1, 0, false, NULL, NULL),
                   0);
  assert_true(uvmqtt_publish(r.c, "t/early", "y", 1, 1, false, NULL, NULL) > 0);
  connect_to(&r, b.port);
  assert_int_equal(tu_run_until(&r.loop, &r.connected, WAIT_MS), 0);
  assert_int_equal(uvmqtt_client_auth(r.c, 0x19, "again", 5), 0);
  assert_int_equal(tu_run_until(&r.loop, &a.s.reauths, WAIT_MS), 0);
  tu_run_for(&r.loop, 100);
  assert_int_equal(a.auth_packets, 2); /* 0x18 answer, 0x19 re-auth */
  assert_int_equal(a.wrong_method, 0);
  assert_int_equal(a.early, 0);
  assert_int_equal(a.late, 2); /* both publishes, after the CONNACK */
  rec_finish(&r, &b, NULL);
}

static void wildcard_publish(sconn_t *conn) {
  send_publish(conn, 0, 0, "a/#", 0);
}

static void unknown_puback(sconn_t *conn) {
  uvmqtt_packet_t a;
  memset(&a, 0, sizeof(a));
  a.type = UVMQTT_PUBACK;
  a.u.ack.packet_id = 9;
  sb_send(conn, &a);
}

/* [MQTT-4.13.2-1] (client side), [MQTT-3.3.2-2] on receipt: a malformed
 * packet from the server gets DISCONNECT 0x81, a protocol error 0x82, and
 * the connection is closed. */
static void test_server_errors_get_disconnect_reason(void **state) {
  (void)state;
  run_bad(wildcard_publish, 0, 0, UVMQTT_EWILDCARD, 0x81);
  run_bad(unknown_puback, 0, 0, UVMQTT_EUNEXPECTED, 0x82);
}

static void test_local_validation(void **state) {
  (void)state;
  rec_t r;
  uvmqtt_props_t props;
  uvmqtt_publish_opts_t po;
  uvmqtt_options_t *o = v5_opts();
  /* Strings must be UTF-8 without U+0000. */
  assert_int_equal(uvmqtt_options_set_client_id(o, "bad\xff"), UVMQTT_EUTF8);
  assert_int_equal(uvmqtt_options_set_credentials(o, "u\xc0\x80", NULL, 0),
                   UVMQTT_EUTF8);
  uvmqtt_options_set_topic_alias(o, 0, true);
  rec_init(&r, o);
  memset(&po, 0, sizeof(po));
  po.topic = "t";
  po.payload = "x";
  po.payload_len = 1;
  po.props = &props;
  /* A Subscription Identifier is the server's to send [MQTT-3.3.4-6]. */
  memset(&props, 0, sizeof(props));
  props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER);
  props.subscription_id = 1;
  assert_int_equal(uvmqtt_publish_ex(r.c, &po, NULL, NULL), UVMQTT_EPROPBAD);
  /* A hand-set alias next to automatic ones, or alias 0. */
  memset(&props, 0, sizeof(props));
  props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS);
  props.topic_alias = 1;
  assert_int_equal(uvmqtt_publish_ex(r.c, &po, NULL, NULL), UVMQTT_ETOPICALIAS);
  /* A user property that is not UTF-8; a response topic with a wildcard. */
  uvmqtt_user_prop_t up = {{"k", 1}, {"\xfe", 1}};
  memset(&props, 0, sizeof(props));
  props.user_props = &up;
  props.user_prop_count = 1;
  assert_int_equal(uvmqtt_publish_ex(r.c, &po, NULL, NULL), UVMQTT_EUTF8);
  memset(&props, 0, sizeof(props));
  props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_RESPONSE_TOPIC);
  props.response_topic.data = "r/#";
  props.response_topic.len = 3;
  assert_int_equal(uvmqtt_publish_ex(r.c, &po, NULL, NULL), UVMQTT_ETOPIC);
  /* Subscription options: reserved bits, Retain Handling 3, No Local on a
   * shared subscription [MQTT-3.8.3-4]. */
  uvmqtt_subscription_t sub = {{"a/b", 3}, 0x41};
  assert_int_equal(uvmqtt_subscribe_many(r.c, &sub, 1, NULL, NULL, NULL),
                   UVMQTT_EINVAL);
  sub.options = 3 << UVMQTT_SUBOPT_RETAIN_HANDLING_SHIFT;
  assert_int_equal(uvmqtt_subscribe_many(r.c, &sub, 1, NULL, NULL, NULL),
                   UVMQTT_EINVAL);
  uvmqtt_subscription_t shared = {{"$share/g/a", 10}, UVMQTT_SUBOPT_NO_LOCAL};
  assert_int_equal(uvmqtt_subscribe_many(r.c, &shared, 1, NULL, NULL, NULL),
                   UVMQTT_EFILTER);
  /* DISCONNECT reason codes a client may not send [MQTT-3.14.2-1]. */
  assert_int_equal(uvmqtt_client_disconnect_ex(r.c, 0x05, NULL), UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_client_disconnect_ex(r.c, 0x87, NULL), UVMQTT_EINVAL);
  rec_finish(&r, NULL, NULL);
}

static void test_manual_alias_over_server_maximum(void **state) {
  (void)state;
  rec_t r;
  sbroker_t b;
  limits_script_t s;
  memset(&s, 0, sizeof(s));
  s.connack.present = UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS_MAXIMUM);
  s.connack.topic_alias_maximum = 2;
  rec_init(&r, v5_opts());
  assert_int_equal(sb_start(&b, &r.loop, limits_broker, &s), 0);
  connect_to(&r, b.port);
  assert_int_equal(tu_run_until(&r.loop, &r.connected, WAIT_MS), 0);
  uvmqtt_props_t props;
  memset(&props, 0, sizeof(props));
  props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS);
  props.topic_alias = 3;
  uvmqtt_publish_opts_t po;
  memset(&po, 0, sizeof(po));
  po.topic = "t/a";
  po.payload = "x";
  po.payload_len = 1;
  po.props = &props;
  assert_int_equal(uvmqtt_publish_ex(r.c, &po, NULL, NULL), UVMQTT_ETOPICALIAS);
  props.topic_alias = 2;
  assert_true(uvmqtt_publish_ex(r.c, &po, NULL, NULL) >= 0);
  uint64_t end = tu_now_ms() + WAIT_MS;
  while (s.publishes < 1 && tu_now_ms() < end)
    uv_run(&r.loop, UV_RUN_ONCE);
  assert_int_equal(s.publishes, 1);
  assert_int_equal(s.aliases[0], 2);
  rec_finish(&r, &b, NULL);
}

/* A message that fits the server's Maximum Packet Size only without a new
 * automatic alias goes out without it [MQTT-3.2.2-15]. */
static void test_alias_dropped_to_fit_maximum_packet(void **state) {
  (void)state;
  rec_t r;
  sbroker_t b;
  limits_script_t s;
  char payload[20];
  memset(payload, 'p', sizeof(payload));
  memset(&s, 0, sizeof(s));
  s.connack.present = UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS_MAXIMUM) |
                      UVMQTT_PROP_BIT(UVMQTT_PROP_MAXIMUM_PACKET_SIZE);
  s.connack.topic_alias_maximum = 5;
  s.connack.maximum_packet_size = 30; /* 2 + 7 + 1 + 20: no room for 3 more */
  uvmqtt_options_t *o = v5_opts();
  uvmqtt_options_set_topic_alias(o, 0, true);
  rec_init(&r, o);
  assert_int_equal(sb_start(&b, &r.loop, limits_broker, &s), 0);
  connect_to(&r, b.port);
  assert_int_equal(tu_run_until(&r.loop, &r.connected, WAIT_MS), 0);
  assert_int_equal(uvmqtt_publish(r.c, "t/abc", payload, sizeof(payload), 0,
                                  false, on_pub, &r),
                   0);
  assert_int_equal(uvmqtt_publish(r.c, "t/x", "y", 1, 0, false, on_pub, &r), 0);
  uint64_t end = tu_now_ms() + WAIT_MS;
  while (s.publishes < 2 && tu_now_ms() < end)
    uv_run(&r.loop, UV_RUN_ONCE);
  assert_int_equal(s.publishes, 2);
  assert_string_equal(s.topics[0], "t/abc");
  assert_int_equal(s.aliases[0], 0);
  assert_string_equal(s.topics[1], "t/x");
  assert_true(s.aliases[1] >= 1); /* small ones still get an alias */
  assert_int_equal(r.pub_status, 0);
  rec_finish(&r, &b, NULL);
}

/* ---- one-shot publish and a lost connection ---------------------------- */

typedef struct {
  int connects, publishes;
} drop_script_t;

/* Accepts the connection, then drops it when the PUBLISH arrives: no
 * PUBACK ever comes. */
static void drop_on_publish_broker(sconn_t *conn, const uvmqtt_packet_t *p,
                                   void *arg) {
  drop_script_t *s = arg;
  if (p->type == UVMQTT_CONNECT) {
    s->connects++;
    sb_connack(conn, 0, NULL);
  } else if (p->type == UVMQTT_PUBLISH) {
    s->publishes++;
    sb_close_conn(conn);
  }
}

static void oneshot_done(int status, void *arg) {
  int *st = arg;
  st[0] = 1;
  st[1] = status;
}

/* With reconnecting off, a connection lost mid-job ends the job with its
 * cause instead of leaving the QoS 1 message waiting for a connect nobody
 * makes. */
static void test_oneshot_lost_connection_without_reconnect(void **state) {
  (void)state;
  uv_loop_t loop;
  sbroker_t b;
  drop_script_t s;
  memset(&s, 0, sizeof(s));
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(sb_start(&b, &loop, drop_on_publish_broker, &s), 0);
  uvmqtt_options_t *o;
  assert_int_equal(uvmqtt_options_new(&o), 0);
  assert_int_equal(uvmqtt_options_set_protocol(o, UVMQTT_V5), 0);
  assert_int_equal(uvmqtt_options_set_reconnect(o, false, 10, 50, 0), 0);
  char uri[64];
  snprintf(uri, sizeof(uri), "mqtt://127.0.0.1:%d", b.port);
  volatile int st[2] = {0, 0};
  assert_int_equal(uvmqtt_publish_single(&loop, o, uri, "t/lost", "x", 1, 1,
                                         false, oneshot_done, (void *)st),
                   0);
  uvmqtt_options_del(o);
  assert_int_equal(tu_run_until(&loop, &st[0], WAIT_MS), 0);
  assert_int_equal(s.connects, 1);
  assert_int_equal(s.publishes, 1);
  assert_true(st[1] < 0);
  assert_int_not_equal(st[1], UVMQTT_ECLOSED); /* the cause, not the close */
  sb_stop(&b);
  assert_int_equal(tu_loop_close(&loop, WAIT_MS), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_enhanced_auth_and_reauth),
      cmocka_unit_test(test_auth_failure_not_retried),
      cmocka_unit_test(test_auth_without_method_rejected),
      cmocka_unit_test(test_redirect_connack_use_another_server),
      cmocka_unit_test(test_redirect_disconnect_server_moved),
      cmocka_unit_test(test_redirect_vetoed),
      cmocka_unit_test(test_server_exceeds_receive_maximum),
      cmocka_unit_test(test_topic_alias_over_maximum),
      cmocka_unit_test(test_topic_alias_undefined),
      cmocka_unit_test(test_topic_alias_not_allowed),
      cmocka_unit_test(test_topic_alias_incoming_mapping),
      cmocka_unit_test(test_server_disconnect_reasons),
      cmocka_unit_test(test_outgoing_topic_alias_lru),
      cmocka_unit_test(test_server_receive_maximum_caps_window),
      cmocka_unit_test(test_puback_reason_and_props),
      cmocka_unit_test(test_auth_method_set_in_pre_connect),
      cmocka_unit_test(test_server_maximum_packet_size),
      cmocka_unit_test(test_server_maximum_qos),
      cmocka_unit_test(test_local_validation),
      cmocka_unit_test(test_manual_alias_over_server_maximum),
      cmocka_unit_test(test_alias_dropped_to_fit_maximum_packet),
      cmocka_unit_test(test_oneshot_lost_connection_without_reconnect),
      cmocka_unit_test(test_auth_packets_carry_method),
      cmocka_unit_test(test_server_errors_get_disconnect_reason),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
