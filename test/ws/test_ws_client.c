/* The public client API over WebSocket: ws://127.0.0.1:PORT/mqtt and
 * wss:// (ws over TLS, when built with TLS) against mosquitto's websockets
 * listeners. QoS 0/1/2 round trips with MQTT 3.1, 3.1.1 and 5.0, ws <-> tcp
 * across transports, large messages, keepalive, a refused upgrade. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"
#include "uvmqtt.h"
#include "uvmqtt_config.h"

static tu_broker_t g_broker;
static int g_ws_port, g_wss_port; /* g_wss_port 0 without TLS */
static char g_certs[256];

/* ---- broker
 * ------------------------------------------------------------------ */

static int make_certs(void) {
  const char *src = getenv("UVMQTT_TEST_SRCDIR");
  char cmd[768];
  if (!src || tu_tmpdir(g_certs, sizeof(g_certs)) != 0)
    return -1;
  snprintf(cmd, sizeof(cmd), "sh '%s/tls/mkcerts.sh' '%s'", src, g_certs);
  if (tu_run_cmd(cmd, 60, NULL, 0) != 0) {
    tu_rmtree(g_certs);
    g_certs[0] = '\0';
    return -1;
  }
  return 0;
}

static int setup(void **state) {
  (void)state;
  char extra[2048];
  int n;
  g_ws_port = tu_free_port();
  /* Debian's mosquitto 2.0.11 opens websockets listeners only next to a
   * plain one (tu_broker_start always has one). */
  n = snprintf(extra, sizeof(extra),
               "listener %d 127.0.0.1\nprotocol websockets\n", g_ws_port);
#if UVMQTT_HAVE_TLS
  if (make_certs() == 0) {
    g_wss_port = tu_free_port();
    snprintf(extra + n, sizeof(extra) - (size_t)n,
             "listener %d 127.0.0.1\nprotocol websockets\n"
             "cafile %s/ca.crt\ncertfile %s/server.crt\n"
             "keyfile %s/server.key\n",
             g_wss_port, g_certs, g_certs, g_certs);
  } else {
    fprintf(stderr, "ws: no certificates, wss tests skipped\n");
  }
#else
  (void)n;
  (void)make_certs;
#endif
  if (tu_broker_start(&g_broker, 0, extra) != 0)
    return -1;
  if (tu_wait_port(g_ws_port, 5000) != 0 ||
      (g_wss_port && tu_wait_port(g_wss_port, 5000) != 0))
    return -1;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_broker_cleanup(&g_broker);
  if (g_certs[0])
    tu_rmtree(g_certs);
  return 0;
}

/* ---- a recording client
 * --------------------------------------------------------- */

typedef struct {
  uvmqtt_client_t *c;
  uv_loop_t *loop;
  int connects, connect_status;
  int disconnects, disconnect_status;
  int msgs, msgs_bad, qos_seen[3];
  size_t big_len; /* expected size of big messages; 0: small ones */
  int subacks, sub_status;
  uint8_t granted;
  int pubs_ok, pubs_failed;
  int closed;
  char id[64];
  char log[4096];
  size_t log_len;
#if UVMQTT_HAVE_TLS
  uvmqtt_tls_config_t *tls;
#endif
} cl_t;

static void on_connect(uvmqtt_client_t *c, int status,
                       const uvmqtt_connack_t *ack, void *arg) {
  cl_t *t = arg;
  (void)c;
  (void)ack;
  t->connects++;
  t->connect_status = status;
}

static void on_disconnect(uvmqtt_client_t *c, int status,
                          const uvmqtt_reason_t *reason, void *arg) {
  cl_t *t = arg;
  (void)c;
  (void)reason;
  t->disconnects++;
  t->disconnect_status = status;
}

static void on_message(uvmqtt_client_t *c, const uvmqtt_message_t *m,
                       void *arg) {
  cl_t *t = arg;
  (void)c;
  if (t->big_len) {
    const uint8_t *p = m->payload;
    int ok = m->payload_len == t->big_len;
    for (size_t i = 0; ok && i < m->payload_len; i++)
      ok = p[i] == (uint8_t)(i * 7 + m->qos);
    if (!ok)
      t->msgs_bad++;
  } else {
    /* "<qos>:<index>", in order per QoS. */
    char expect[32];
    int n = snprintf(expect, sizeof(expect), "%d:%d", m->qos,
                     t->qos_seen[m->qos <= 2 ? m->qos : 0]);
    if (m->qos > 2 || (size_t)n != m->payload_len ||
        memcmp(expect, m->payload, (size_t)n) != 0)
      t->msgs_bad++;
  }
  if (m->qos <= 2)
    t->qos_seen[m->qos]++;
  t->msgs++;
}

static void on_log(uvmqtt_client_t *c, int level, const char *msg, void *arg) {
  cl_t *t = arg;
  (void)c;
  (void)level;
  int n =
      snprintf(t->log + t->log_len, sizeof(t->log) - t->log_len, "%s\n", msg);
  if (n > 0 && t->log_len + (size_t)n < sizeof(t->log))
    t->log_len += (size_t)n;
}

static void on_sub(uvmqtt_client_t *c, const uvmqtt_sub_result_t *res,
                   void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  const uint8_t *codes = res->codes;
  size_t count = res->count;
  const uvmqtt_props_t *props = res->props;
  cl_t *t = arg;
  (void)c, (void)id, (void)props;
  t->sub_status = status;
  t->granted = count ? codes[0] : 0xff;
  t->subacks++;
}

static void on_pub(uvmqtt_client_t *c, const uvmqtt_pub_result_t *res,
                   void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  cl_t *t = arg;
  (void)c, (void)id;
  if (status == 0)
    t->pubs_ok++;
  else
    t->pubs_failed++;
}

static void on_closed(uvmqtt_client_t *c) {
  cl_t *t = uvmqtt_client_get_data(c);
  t->closed = 1;
}

static int wait_int(uv_loop_t *loop, const int *v, int want, unsigned ms) {
  uint64_t end = tu_now_ms() + ms;
  while (*v < want && tu_now_ms() < end)
    tu_run_for(loop, 5);
  return *v >= want ? 0 : -1;
}

/* Creates a client and connects it to uri (scheme from the caller). */
static void cl_start(cl_t *t, uv_loop_t *loop, int version, const char *id,
                     const char *uri, unsigned keepalive) {
  memset(t, 0, sizeof(*t));
  t->loop = loop;
  snprintf(t->id, sizeof(t->id), "%s-%d", id, (int)getpid());
  uvmqtt_options_t *o;
  assert_int_equal(0, uvmqtt_options_new(&o));
  assert_int_equal(0, uvmqtt_options_set_client_id(o, t->id));
  assert_int_equal(0, uvmqtt_options_set_protocol(o, version));
  assert_int_equal(0, uvmqtt_options_set_reconnect(o, false, 0, 0, 0));
  assert_int_equal(0, uvmqtt_options_set_keepalive(o, keepalive));
#if UVMQTT_HAVE_TLS
  if (strncmp(uri, "wss://", 6) == 0) {
    char ca[320];
    snprintf(ca, sizeof(ca), "%s/ca.crt", g_certs);
    assert_int_equal(0, uvmqtt_tls_config_new(&t->tls));
    assert_int_equal(0, uvmqtt_tls_config_set_ca_file(t->tls, ca));
    assert_int_equal(0, uvmqtt_options_set_tls(o, t->tls, false));
  }
#endif
  assert_int_equal(0, uvmqtt_client_new(loop, o, &t->c));
  uvmqtt_options_del(o);
  uvmqtt_client_set_data(t->c, t);
  uvmqtt_client_on_connect(t->c, on_connect, t);
  uvmqtt_client_on_disconnect(t->c, on_disconnect, t);
  uvmqtt_client_on_message(t->c, on_message, t);
  uvmqtt_client_on_log(t->c, on_log, t, UVMQTT_LOG_DEBUG);
  assert_int_equal(0, uvmqtt_client_connect_uri(t->c, uri));
  assert_int_equal(0, wait_int(loop, &t->connects, 1, 8000));
  if (t->connect_status != 0)
    fprintf(stderr, "%s: connect failed: %s\nlog:\n%s", t->id,
            uvmqtt_err_name(t->connect_status), t->log);
}

static void cl_finish(cl_t *t) {
  uvmqtt_client_close(t->c, on_closed);
  assert_int_equal(0, wait_int(t->loop, &t->closed, 1, 3000));
#if UVMQTT_HAVE_TLS
  uvmqtt_tls_config_free(t->tls); /* after the close callback */
#endif
}

static void subscribe(cl_t *t, const char *filter, int qos) {
  int before = t->subacks;
  assert_true(uvmqtt_subscribe(t->c, filter, qos, on_sub, t) > 0);
  assert_int_equal(0, wait_int(t->loop, &t->subacks, before + 1, 5000));
  assert_int_equal(t->sub_status, 0);
  assert_int_equal(t->granted, qos);
}

static void uri_for(char *uri, size_t cap, const char *scheme) {
  int port = strcmp(scheme, "wss") == 0  ? g_wss_port
             : strcmp(scheme, "ws") == 0 ? g_ws_port
                                         : g_broker.port;
  snprintf(uri, cap, "%s://127.0.0.1:%d%s", scheme, port,
           scheme[0] == 'w' ? "/mqtt" : "");
}

/* ---- tests
 * ------------------------------------------------------------------------ */

/* One client subscribes and publishes 20 messages at each QoS to itself. */
static void qos_round_trips(const char *scheme, int version) {
  if (strcmp(scheme, "wss") == 0 && !g_wss_port)
    skip();
  uv_loop_t loop;
  assert_int_equal(0, uv_loop_init(&loop));
  char uri[128], id[32], topic[96];
  uri_for(uri, sizeof(uri), scheme);
  snprintf(id, sizeof(id), "%s-v%d", scheme, version);
  cl_t t;
  cl_start(&t, &loop, version, id, uri, 30);
  assert_int_equal(t.connect_status, 0);
  assert_true(uvmqtt_client_is_connected(t.c));
  for (int qos = 0; qos <= 2; qos++) {
    snprintf(topic, sizeof(topic), "uvmqtt/ws/%s/%s/%d", t.id, scheme, qos);
    subscribe(&t, topic, qos);
    for (int i = 0; i < 20; i++) {
      char payload[32];
      int n = snprintf(payload, sizeof(payload), "%d:%d", qos, i);
      int rc = uvmqtt_publish(t.c, topic, payload, (size_t)n, qos, false,
                              on_pub, &t);
      assert_true(qos == 0 ? rc == 0 : rc > 0);
    }
    assert_int_equal(0, wait_int(&loop, &t.qos_seen[qos], 20, 8000));
    assert_int_equal(0, wait_int(&loop, &t.pubs_ok, 20 * (qos + 1), 8000));
  }
  tu_run_for(&loop, 100); /* nothing extra arrives */
  assert_int_equal(t.msgs, 60);
  assert_int_equal(t.msgs_bad, 0);
  assert_int_equal(t.pubs_failed, 0);
  assert_int_equal(t.disconnects, 0);
  cl_finish(&t);
  assert_int_equal(0, tu_loop_close(&loop, 2000));
}

static void test_ws_v311(void **s) {
  (void)s;
  qos_round_trips("ws", UVMQTT_V311);
}
static void test_ws_v5(void **s) {
  (void)s;
  qos_round_trips("ws", UVMQTT_V5);
}
static void test_ws_v31(void **s) {
  (void)s;
  qos_round_trips("ws", UVMQTT_V31); /* subprotocol "mqttv3.1" */
}
static void test_wss_v311(void **s) {
  (void)s;
  qos_round_trips("wss", UVMQTT_V311);
}
static void test_wss_v5(void **s) {
  (void)s;
  qos_round_trips("wss", UVMQTT_V5);
}

/* Messages cross transports: ws -> tcp, tcp -> ws, wss -> ws. */
static void cross(const char *from, const char *to) {
  if ((strcmp(from, "wss") == 0 || strcmp(to, "wss") == 0) && !g_wss_port)
    skip();
  uv_loop_t loop;
  assert_int_equal(0, uv_loop_init(&loop));
  char uri[128], topic[128];
  cl_t sub, pub;
  uri_for(uri, sizeof(uri), to);
  cl_start(&sub, &loop, UVMQTT_V311, "xsub", uri, 30);
  assert_int_equal(sub.connect_status, 0);
  uri_for(uri, sizeof(uri), from);
  cl_start(&pub, &loop, UVMQTT_V5, "xpub", uri, 30);
  assert_int_equal(pub.connect_status, 0);
  snprintf(topic, sizeof(topic), "uvmqtt/ws/x/%s/%s/%d", from, to,
           (int)getpid());
  subscribe(&sub, topic, 2);
  for (int qos = 0; qos <= 2; qos++)
    for (int i = 0; i < 5; i++) {
      char p[32];
      int n = snprintf(p, sizeof(p), "%d:%d", qos, i);
      assert_true(uvmqtt_publish(pub.c, topic, p, (size_t)n, qos, false, on_pub,
                                 &pub) >= 0);
    }
  assert_int_equal(0, wait_int(&loop, &sub.msgs, 15, 8000));
  assert_int_equal(0, wait_int(&loop, &pub.pubs_ok, 15, 8000));
  assert_int_equal(sub.msgs_bad, 0);
  for (int q = 0; q <= 2; q++)
    assert_int_equal(sub.qos_seen[q], 5);
  cl_finish(&pub);
  cl_finish(&sub);
  assert_int_equal(0, tu_loop_close(&loop, 2000));
}

static void test_cross_ws_to_tcp(void **s) {
  (void)s;
  cross("ws", "mqtt");
}
static void test_cross_tcp_to_ws(void **s) {
  (void)s;
  cross("mqtt", "ws");
}
static void test_cross_wss_to_ws(void **s) {
  (void)s;
  cross("wss", "ws");
}

/* 70 KiB messages (over 65535: 64-bit frame lengths) at QoS 1 and 2, to
 * ourselves: large frames both ways. mosquitto 2.0.11 sends websocket data
 * at 4 KiB per 100 ms and holds packets queued behind a large one until
 * more traffic arrives; keepalive 1 s nudges it (see docs/websocket.md). */
static void big(const char *scheme) {
  if (strcmp(scheme, "wss") == 0 && !g_wss_port)
    skip();
  uv_loop_t loop;
  assert_int_equal(0, uv_loop_init(&loop));
  char uri[128], topic[96];
  uri_for(uri, sizeof(uri), scheme);
  cl_t t;
  cl_start(&t, &loop, UVMQTT_V311, "big", uri, 1);
  assert_int_equal(t.connect_status, 0);
  snprintf(topic, sizeof(topic), "uvmqtt/ws/big/%s", t.id);
  subscribe(&t, topic, 2);
  t.big_len = 70 * 1024;
  uint8_t *p = malloc(t.big_len);
  for (int qos = 1; qos <= 2; qos++) {
    for (size_t i = 0; i < t.big_len; i++)
      p[i] = (uint8_t)(i * 7 + (size_t)qos);
    assert_true(
        uvmqtt_publish(t.c, topic, p, t.big_len, qos, false, on_pub, &t) > 0);
  }
  free(p); /* the payload was copied */
  assert_int_equal(0, wait_int(&loop, &t.msgs, 2, 15000));
  assert_int_equal(0, wait_int(&loop, &t.pubs_ok, 2, 15000));
  assert_int_equal(t.msgs_bad, 0);
  assert_int_equal(t.disconnects, 0);
  cl_finish(&t);
  assert_int_equal(0, tu_loop_close(&loop, 2000));
}

static void test_ws_big(void **s) {
  (void)s;
  big("ws");
}
static void test_wss_big(void **s) {
  (void)s;
  big("wss");
}

/* Keepalive over ws: with 1 s the client's PINGREQs reach the broker and
 * the connection outlives several keepalive periods. */
static void test_ws_keepalive(void **s) {
  (void)s;
  uv_loop_t loop;
  assert_int_equal(0, uv_loop_init(&loop));
  char uri[128];
  uri_for(uri, sizeof(uri), "ws");
  cl_t t;
  cl_start(&t, &loop, UVMQTT_V311, "ka", uri, 1);
  assert_int_equal(t.connect_status, 0);
  tu_run_for(&loop, 3500);
  assert_int_equal(t.disconnects, 0);
  assert_true(uvmqtt_client_is_connected(t.c));
  char needle[128];
  snprintf(needle, sizeof(needle), "Received PINGREQ from %s", t.id);
  assert_true(tu_broker_log_contains(&g_broker, needle));
  cl_finish(&t);
  assert_int_equal(0, tu_loop_close(&loop, 2000));
}

/* A server refusing the upgrade with 401: the connect callback reports
 * UVMQTT_EWS_STATUS. A tiny server in the loop answers the first read. */
typedef struct {
  uv_tcp_t lis, conn;
  int accepted, handles;
  uv_write_t w;
  uv_buf_t b;
} refuser_t;

static void rf_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  (void)h;
  b->base = malloc(sz);
  b->len = sz;
}
static void rf_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  refuser_t *r = st->data;
  free(b->base);
  if (n > 0 && !r->b.base) {
    static char reply[] = "HTTP/1.1 401 Unauthorized\r\n"
                          "Content-Length: 0\r\n\r\n";
    /* A local array: gcc's ASan build mis-sizes &r->b (overread warning). */
    uv_buf_t one[1] = {uv_buf_init(reply, sizeof(reply) - 1)};
    r->b = one[0];
    uv_write(&r->w, st, one, 1, NULL);
  }
}
static void rf_conn(uv_stream_t *l, int status) {
  refuser_t *r = l->data;
  if (status != 0 || r->accepted)
    return;
  uv_tcp_init(l->loop, &r->conn);
  r->conn.data = r;
  r->handles++;
  r->accepted = 1;
  if (uv_accept(l, (uv_stream_t *)&r->conn) == 0)
    uv_read_start((uv_stream_t *)&r->conn, rf_alloc, rf_read);
}
static void rf_closed(uv_handle_t *h) {
  refuser_t *r = h->data;
  r->handles--;
}

static void test_ws_refused_401(void **s) {
  (void)s;
  uv_loop_t loop;
  assert_int_equal(0, uv_loop_init(&loop));
  refuser_t r;
  memset(&r, 0, sizeof(r));
  int port = tu_free_port();
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", port, &a);
  uv_tcp_init(&loop, &r.lis);
  r.lis.data = &r;
  r.handles = 1;
  assert_int_equal(0, uv_tcp_bind(&r.lis, (struct sockaddr *)&a, 0));
  assert_int_equal(0, uv_listen((uv_stream_t *)&r.lis, 4, rf_conn));
  char uri[128];
  snprintf(uri, sizeof(uri), "ws://127.0.0.1:%d/mqtt", port);
  cl_t t;
  cl_start(&t, &loop, UVMQTT_V311, "refused", uri, 30);
  assert_int_equal(t.connect_status, UVMQTT_EWS_STATUS);
  tu_run_for(&loop, 200);
  assert_int_equal(t.connects, 1); /* reconnect is off */
  cl_finish(&t);
  uv_close((uv_handle_t *)&r.lis, rf_closed);
  if (r.accepted)
    uv_close((uv_handle_t *)&r.conn, rf_closed);
  assert_int_equal(0, tu_loop_close(&loop, 2000));
  assert_int_equal(r.handles, 0);
}

/* ws:// to the plain MQTT listener: the broker rejects "GET" as MQTT and
 * closes; the attempt fails cleanly. */
static void test_ws_to_plain_listener(void **s) {
  (void)s;
  uv_loop_t loop;
  assert_int_equal(0, uv_loop_init(&loop));
  char uri[128];
  snprintf(uri, sizeof(uri), "ws://127.0.0.1:%d/mqtt", g_broker.port);
  cl_t t;
  cl_start(&t, &loop, UVMQTT_V311, "wrongport", uri, 30);
  assert_true(t.connect_status < 0);
  assert_false(uvmqtt_client_is_connected(t.c));
  cl_finish(&t);
  assert_int_equal(0, tu_loop_close(&loop, 2000));
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ws_v311),
      cmocka_unit_test(test_ws_v5),
      cmocka_unit_test(test_ws_v31),
      cmocka_unit_test(test_wss_v311),
      cmocka_unit_test(test_wss_v5),
      cmocka_unit_test(test_cross_ws_to_tcp),
      cmocka_unit_test(test_cross_tcp_to_ws),
      cmocka_unit_test(test_cross_wss_to_ws),
      cmocka_unit_test(test_ws_big),
      cmocka_unit_test(test_wss_big),
      cmocka_unit_test(test_ws_keepalive),
      cmocka_unit_test(test_ws_refused_401),
      cmocka_unit_test(test_ws_to_plain_listener),
  };
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  return cmocka_run_group_tests(tests, setup, teardown);
}
