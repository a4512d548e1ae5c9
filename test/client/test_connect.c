/* Connecting: reconnect with backoff, refusals that retrying cannot fix,
 * URIs with credentials, invalid URIs, client id rules, disconnecting
 * while a connection attempt is in progress. */
#include "ctest.h"

#include <unistd.h>

/* The broker goes away: the client reports the loss, retries with a
 * doubling backoff (jitter 0: 100, 200, 400, 400 ms), and is back once the
 * broker is. */
static void reconnect_backoff(void **state) {
  tu_broker_t *b;
  uv_loop_t loop;
  ct_client_t t;
  uint64_t fail_at[8];
  (void)state;
  b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, NULL, true);
  assert_int_equal(uvmqtt_options_set_reconnect(o, true, 100, 400, 0), 0);
  ct_client_init(&t, &loop, o, "rc");
  uvmqtt_options_del(o);
  ct_connect(&t, b->port);
  ct_wait_connected(&t, 1);
  ct_subscribe(&t, "rc/#", 1);

  tu_broker_stop(b);
  assert_int_equal(ct_wait_int(&loop, &t.disconnects, 1, 3000), 0);
  assert_true(t.last_disconnect_status < 0);
  uint64_t lost = t.last_disconnect_ms;
  for (int i = 0; i < 5; i++) {
    assert_int_equal(ct_wait_int(&loop, &t.connect_fails, i + 1, 3000), 0);
    fail_at[i] = t.last_connect_ms;
    assert_int_equal(t.last_connect_status, UV_ECONNREFUSED);
    assert_true(t.last_ack_null);
  }
  /* Delays between attempts: 100, 200, 400, 400 (+ scheduling slack). */
  static const unsigned want[5] = {100, 200, 400, 400, 400};
  uint64_t prev = lost;
  for (int i = 0; i < 5; i++) {
    uint64_t d = fail_at[i] - prev;
    assert_true(d + 5 >= want[i]);
    assert_true(d <= want[i] + 120);
    prev = fail_at[i];
  }
  assert_true(t.reconnect_calls >= 5);
  assert_int_equal(t.connected, 1);

  assert_int_equal(tu_broker_restart(b), 0);
  ct_wait_connected(&t, 2);
  /* Fresh broker, clean session: the client subscribed again. */
  assert_false(t.session_present);
  ct_client_t p;
  o = ct_opts(UVMQTT_V311, NULL, true);
  ct_client_init(&p, &loop, o, "p");
  uvmqtt_options_del(o);
  ct_connect(&p, b->port);
  ct_wait_connected(&p, 1);
  ct_pub_t d;
  memset(&d, 0, sizeof(d));
  assert_true(uvmqtt_publish(p.c, "rc/x", "back", 4, 1, false, ct_pub_cb, &d) >
              0);
  assert_int_equal(ct_wait_size(&loop, &t.nmsgs, 1, CT_WAIT_MS), 0);
  assert_string_equal(t.msgs[0].payload, "back");
  ct_close(&t);
  ct_close(&p);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
  ct_client_free(&p);
}

/* ---- credentials ------------------------------------------------------- */

static tu_broker_t *auth_broker(char *dir, size_t cap) {
  char cmd[600], extra[600];
  assert_int_equal(tu_tmpdir(dir, cap), 0);
  snprintf(cmd, sizeof(cmd),
           "mosquitto_passwd -b -c %s/passwd alice 's3cr3t:pw' >/dev/null",
           dir);
  assert_int_equal(tu_run_cmd(cmd, 10, NULL, 0), 0);
  snprintf(extra, sizeof(extra),
           "allow_anonymous false\npassword_file %s/passwd\n", dir);
  return ct_broker(extra);
}

static void run_bad_credentials(int version) {
  tu_broker_t *b;
  uv_loop_t loop;
  ct_client_t bad, anon, good;
  char dir[256], uri[128];
  b = auth_broker(dir, sizeof(dir));
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(version, NULL, true);
  ct_client_init(&anon, &loop, o, "anon");
  assert_int_equal(uvmqtt_options_set_credentials(o, "alice", "wrong", 5), 0);
  ct_client_init(&bad, &loop, o, "bad");
  assert_int_equal(uvmqtt_options_set_credentials(o, "nobody", NULL, 0), 0);
  ct_client_init(&good, &loop, o, "good"); /* the URI overrides these */
  uvmqtt_options_del(o);

  ct_connect(&bad, b->port);
  ct_connect(&anon, b->port);
  assert_int_equal(ct_wait_int(&loop, &bad.connects, 1, CT_WAIT_MS), 0);
  assert_int_equal(ct_wait_int(&loop, &anon.connects, 1, CT_WAIT_MS), 0);
  for (int i = 0; i < 2; i++) {
    ct_client_t *t = i ? &anon : &bad;
    assert_int_equal(t->last_connect_status, UVMQTT_EREFUSED);
    assert_false(t->last_ack_null);
    if (version == UVMQTT_V5)
      assert_true(t->last_reason_code == 0x86 || t->last_reason_code == 0x87);
    else
      assert_int_equal(t->last_reason_code, 5);
  }
  /* Reconnect is on (100 ms), yet a refusal like this is not retried. */
  tu_run_for(&loop, 600);
  assert_int_equal(bad.connects, 1);
  assert_int_equal(anon.connects, 1);
  assert_int_equal(bad.reconnect_calls + anon.reconnect_calls, 0);
  assert_false(uvmqtt_client_is_connected(bad.c));

  /* The right password, in the URI (percent-encoded ':'). */
  snprintf(uri, sizeof(uri), "mqtt://alice:s3cr3t%%3Apw@127.0.0.1:%d", b->port);
  assert_int_equal(uvmqtt_client_connect_uri(good.c, uri), 0);
  ct_wait_connected(&good, 1);
  assert_int_equal(good.connect_fails, 0);
  /* And through the setter on the refused client. */
  assert_int_equal(
      uvmqtt_client_set_credentials(bad.c, "alice", "s3cr3t:pw", 9), 0);
  ct_connect(&bad, b->port);
  ct_wait_connected(&bad, 1);

  ct_close(&bad);
  ct_close(&anon);
  ct_close(&good);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&bad);
  ct_client_free(&anon);
  ct_client_free(&good);
  tu_rmtree(dir);
}

static void bad_credentials_v311(void **state) {
  (void)state;
  run_bad_credentials(UVMQTT_V311);
}
static void bad_credentials_v5(void **state) {
  (void)state;
  run_bad_credentials(UVMQTT_V5);
}

/* ---- URIs and client ids --------------------------------------------------
 */

static void uri_invalid(void **state) {
  uv_loop_t loop;
  ct_client_t t;
  tu_broker_t *b;
  char uri[128];
  (void)state;
  b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, NULL, true);
  ct_client_init(&t, &loop, o, "uri");
  uvmqtt_options_del(o);
  static const char *bad[] = {
      "http://127.0.0.1:1883",
      "127.0.0.1:1883",
      "mqtt://",
      "mqtt://:1883",
      "mqtt://user:pw@",
      "mqtt://host:0",
      "mqtt://host:65536",
      "mqtt://host:12x",
      "mqtt://host:",
      "mqtt://[::1",
      "mqtt://[::1]x",
      "mqtt://u%zz@host",
      "mqtt://u:p%4@host",
      "",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    int rc = uvmqtt_client_connect_uri(t.c, bad[i]);
    if (rc != UVMQTT_EURI)
      fprintf(stderr, "uri '%s': %d (%s)\n", bad[i], rc, uvmqtt_err_name(rc));
    assert_int_equal(rc, UVMQTT_EURI);
  }
  assert_int_equal(uvmqtt_client_connect_uri(t.c, NULL), UVMQTT_EURI);
  const char *list[2] = {"mqtt://127.0.0.1:1", "nope://x"};
  assert_int_equal(uvmqtt_client_connect_uris(t.c, list, 2), UVMQTT_EURI);
  /* (A TLS scheme without a TLS configuration uses the system's trust
   * store: tls_client's test_system_trust_store.) */
  /* A server list holds at most 65535 entries. */
  static const char *many[65536];
  for (size_t i = 0; i < 65536; i++)
    many[i] = "mqtt://127.0.0.1:1";
  assert_int_equal(uvmqtt_client_connect_uris(t.c, many, 65536), UVMQTT_EINVAL);
  /* Refused calls fire no callback and leave the client usable. */
  tu_run_for(&loop, 100);
  assert_int_equal(t.connects, 0);
  snprintf(uri, sizeof(uri), "tcp://127.0.0.1:%d", b->port);
  assert_int_equal(uvmqtt_client_connect_uri(t.c, uri), 0);
  ct_wait_connected(&t, 1);
  assert_int_equal(uvmqtt_client_connect_uri(t.c, uri), UVMQTT_EBUSY);
  assert_int_equal(uvmqtt_client_connect(t.c, "127.0.0.1", b->port),
                   UVMQTT_EBUSY);
  /* Disconnected, a refused URI must leave the previous server list
   * intact, and a later connect must work. */
  assert_int_equal(uvmqtt_client_disconnect(t.c), 0);
  assert_int_equal(ct_wait_int(&loop, &t.disconnects, 1, CT_WAIT_MS), 0);
  assert_int_equal(uvmqtt_client_connect_uri(t.c, "mqtt://[::1"), UVMQTT_EURI);
  assert_int_equal(uvmqtt_client_connect_uri(t.c, uri), 0);
  ct_wait_connected(&t, 2);
  ct_close(&t);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
}

/* A list of URIs: the dead first one is skipped. */
static void uri_list_failover(void **state) {
  uv_loop_t loop;
  ct_client_t t;
  tu_broker_t *b;
  char u1[64], u2[64];
  (void)state;
  b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, NULL, true);
  ct_client_init(&t, &loop, o, "list");
  uvmqtt_options_del(o);
  snprintf(u1, sizeof(u1), "mqtt://127.0.0.1:%d", tu_free_port());
  snprintf(u2, sizeof(u2), "mqtt://127.0.0.1:%d", b->port);
  const char *list[2] = {u1, u2};
  assert_int_equal(uvmqtt_client_connect_uris(t.c, list, 2), 0);
  ct_wait_connected(&t, 1);
  assert_int_equal(t.connect_fails, 0);
  ct_close(&t);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
}

/* Each entry of a server list keeps its own strings: the second server's
 * user name (after a first entry with none) reaches the broker. */
static void uri_list_credentials(void **state) {
  uv_loop_t loop;
  ct_client_t t;
  char u1[80], u2[80];
  (void)state;
  tu_broker_t *b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, "list-cred", true);
  ct_client_init(&t, &loop, o, "cred");
  uvmqtt_options_del(o);
  snprintf(u1, sizeof(u1), "mqtt://127.0.0.1:%d", tu_free_port());
  snprintf(u2, sizeof(u2), "mqtt://al%%69ce:pw@127.0.0.1:%d", b->port);
  const char *list[2] = {u1, u2};
  assert_int_equal(uvmqtt_client_connect_uris(t.c, list, 2), 0);
  ct_wait_connected(&t, 1);
  assert_true(tu_broker_log_contains(b, "as list-cred (p2, c1, k"));
  assert_true(tu_broker_log_contains(b, ", u'alice')"));
  ct_close(&t);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
}

static void client_id_rules(void **state) {
  uv_loop_t loop;
  uvmqtt_client_t *c = (uvmqtt_client_t *)0x1;
  tu_broker_t *b;
  ct_client_t t;
  (void)state;
  /* 3.1 / 3.1.1: an empty id needs a clean session; refused locally. */
  for (int v = UVMQTT_V31; v <= UVMQTT_V311; v++) {
    uvmqtt_options_t *o = ct_opts(v, NULL, false);
    assert_int_equal(uvmqtt_options_set_empty_client_id(o, true), 0);
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(uvmqtt_client_new(&loop, o, &c), UVMQTT_ECLIENTID);
    assert_ptr_equal(c, (uvmqtt_client_t *)0x1); /* untouched */
    uvmqtt_options_del(o);
    assert_int_equal(tu_loop_close(&loop, 100), 0); /* nothing left */
  }
  /* v5 with an empty id: the broker assigns one. */
  b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V5, NULL, false);
  assert_int_equal(uvmqtt_options_set_empty_client_id(o, true), 0);
  ct_client_init(&t, &loop, o, "v5empty");
  uvmqtt_options_del(o);
  assert_string_equal(uvmqtt_client_get_client_id(t.c), "");
  ct_connect(&t, b->port);
  ct_wait_connected(&t, 1);
  const char *id = uvmqtt_client_get_client_id(t.c);
  assert_true(strlen(id) > 0);
  ct_close(&t);
  ct_client_free(&t);
  /* Default: a random id of the documented shape. */
  o = ct_opts(UVMQTT_V311, NULL, true);
  ct_client_init(&t, &loop, o, "random");
  uvmqtt_options_del(o);
  id = uvmqtt_client_get_client_id(t.c);
  assert_int_equal(strlen(id), 7 + 16);
  assert_memory_equal(id, "uvmqtt-", 7);
  ct_close(&t);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
}

/* uvmqtt_client_disconnect() while the attempt is in progress stops it; the
 * connect callback, if it fires, never says "connected" without a
 * CONNACK. */
static void disconnect_while_connecting(void **state) {
  uv_loop_t loop;
  ct_peer_t p;
  ct_client_t t;
  (void)state;
  assert_int_equal(uv_loop_init(&loop), 0);
  ct_peer_start(&loop, &p, NULL, 0);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, NULL, true);
  ct_client_init(&t, &loop, o, "dwc");
  uvmqtt_options_del(o);
  ct_connect(&t, p.port);
  assert_int_equal(ct_peer_wait_rx(&loop, &p, 1, 3000), 0); /* CONNECT */
  assert_int_equal(uvmqtt_client_disconnect(t.c), 0);
  tu_run_for(&loop, 300);
  assert_true(t.connects <= 1);
  if (t.connects)
    assert_true(t.last_connect_status < 0);
  assert_int_equal(t.connected, 0);
  assert_false(uvmqtt_client_is_connected(t.c));
  assert_int_equal(p.client_eof, 1);
  assert_int_equal(p.accepted, 1); /* no reconnect */
  ct_close(&t);
  ct_peer_stop(&p);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
}

/* After uvmqtt_client_disconnect(), the disconnect callback may connect
 * again at once: the connection has ended when it runs. */
static int again_port, again_rc = 1, again_disconnects;

static void connect_again(uvmqtt_client_t *c, int status,
                          const uvmqtt_reason_t *r, void *arg) {
  (void)r;
  (void)arg;
  again_disconnects++;
  assert_int_equal(status, 0);
  assert_false(uvmqtt_client_is_connected(c));
  again_rc = uvmqtt_client_connect(c, "127.0.0.1", again_port);
}

static void connect_from_disconnect_cb(void **state) {
  uv_loop_t loop;
  ct_client_t t;
  (void)state;
  tu_broker_t *b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, NULL, true);
  ct_client_init(&t, &loop, o, "again");
  uvmqtt_options_del(o);
  again_port = b->port;
  /* NULL handling, the same across accessors and setters. */
  assert_int_equal(uvmqtt_client_on_disconnect(NULL, connect_again, NULL),
                   UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_client_on_connect(NULL, NULL, NULL), UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_client_on_message(NULL, NULL, NULL), UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_client_on_log(NULL, NULL, NULL, 0), UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_client_on_auth(NULL, NULL, NULL), UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_client_on_redirect(NULL, NULL, NULL), UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_client_set_keepalive(NULL, 5), UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_client_get_tls_error(NULL, NULL, NULL),
                   UVMQTT_EINVAL);
  assert_false(uvmqtt_client_is_connected(NULL));
  assert_false(uvmqtt_client_get_reconnect(NULL));
  assert_null(uvmqtt_client_get_data(NULL));
  assert_null(uvmqtt_client_get_loop(NULL));
  assert_null(uvmqtt_client_get_client_id(NULL));
  assert_int_equal(uvmqtt_client_get_inflight(NULL), 0);
  assert_int_equal(uvmqtt_client_get_queued(NULL), 0);
  uvmqtt_client_set_data(NULL, &t);
  assert_int_equal(uvmqtt_client_set_will(t.c, "w", "x", 1, 3, false),
                   UVMQTT_EQOS);
  assert_int_equal(uvmqtt_client_on_disconnect(t.c, connect_again, NULL), 0);
  ct_connect(&t, b->port);
  ct_wait_connected(&t, 1);
  assert_int_equal(uvmqtt_client_disconnect(t.c), 0);
  ct_wait_connected(&t, 2);
  assert_int_equal(again_disconnects, 1);
  assert_int_equal(again_rc, 0);
  ct_close(&t);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
}

/* The pre-connect hook runs before every attempt and changes what the
 * next CONNECT carries (the broker's log shows keepalive and username). */
static int pre_calls;

static int pre_connect(uvmqtt_client_t *c, unsigned attempt, void *arg) {
  char user[8];
  (void)attempt;
  (void)arg;
  pre_calls++;
  snprintf(user, sizeof(user), "u%d", pre_calls > 1 ? 2 : 1);
  assert_int_equal(uvmqtt_client_set_credentials(c, user, "pw", 2), 0);
  assert_int_equal(uvmqtt_client_set_keepalive(c, pre_calls > 1 ? 44 : 33), 0);
  assert_int_equal(
      uvmqtt_client_set_will(c, "pre/will", user, strlen(user), 1, false), 0);
  return 0;
}

static void pre_connect_hook(void **state) {
  uv_loop_t loop;
  ct_client_t t;
  (void)state;
  tu_broker_t *b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V5, "pre-hook", true);
  ct_client_init(&t, &loop, o, "pre");
  uvmqtt_options_del(o);
  assert_int_equal(uvmqtt_client_on_pre_connect(NULL, pre_connect, NULL),
                   UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_client_on_pre_connect(t.c, pre_connect, NULL), 0);
  ct_connect(&t, b->port);
  ct_wait_connected(&t, 1);
  assert_int_equal(pre_calls, 1);
  assert_true(tu_broker_log_contains(b, "as pre-hook (p5, c1, k33, u'u1')"));
  tu_broker_stop(b);
  assert_int_equal(tu_broker_restart(b), 0);
  ct_wait_connected(&t, 2);
  assert_true(pre_calls >= 2);
  assert_true(tu_broker_log_contains(b, "as pre-hook (p5, c1, k44, u'u2')"));
  /* Once close() is called the hook is never called again and cannot be
   * set (the close callback takes its place); the close callback fires. */
  int calls = pre_calls;
  uvmqtt_client_close(t.c, ct_on_closed);
  assert_int_equal(uvmqtt_client_on_pre_connect(t.c, pre_connect, NULL),
                   UVMQTT_ECLOSED);
  assert_int_equal(ct_wait_int(&loop, &t.closed, 1, CT_WAIT_MS), 0);
  assert_int_equal(pre_calls, calls);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
}

static const struct CMUnitTest tests[] = {
    CT_TEST(reconnect_backoff),
    CT_TEST(bad_credentials_v311),
    CT_TEST(bad_credentials_v5),
    CT_TEST(uri_invalid),
    CT_TEST(uri_list_failover),
    CT_TEST(uri_list_credentials),
    CT_TEST(client_id_rules),
    CT_TEST(disconnect_while_connecting),
    CT_TEST(connect_from_disconnect_cb),
    CT_TEST(pre_connect_hook),
};

CT_MAIN(tests)
