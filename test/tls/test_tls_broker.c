/* The tls stream over a real tcp stream against mosquitto's TLS listeners:
 * handshake, then a hand-encoded MQTT 3.1.1 CONNECT and its CONNACK. Each
 * negative case fails the open with its specific error and sends no MQTT
 * bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "uvmqtt_config.h"
#include "uvmqtt/errors.h"
#include "uvmqtt/tls.h"
#include "transport/transport.h"

#include "certs.h"
#include "testutil.h"

static char g_dir[256];
static tu_broker_t g_broker;
static tt_ports_t g_ports;

/* CONNECT, MQTT 3.1.1, clean session, keepalive 60, client id "tls-t". */
static const uint8_t connect_pkt[] = {0x10, 0x11, 0x00, 0x04, 'M',  'Q',  'T',
                                      'T',  0x04, 0x02, 0x00, 0x3c, 0x00, 0x05,
                                      't',  'l',  's',  '-',  't'};
static const uint8_t connack_ok[] = {0x20, 0x02, 0x00, 0x00};

typedef struct {
  uv_loop_t loop;
  uvmqtt_tls_config_t *cfg;
  const char *name;
  uvmqtt_stream_t *tls;
  int opened;
  int open_status;
  int wrote;
  uint8_t rx[64];
  size_t rxlen;
  int got_connack;
  int read_end;
  int closed;
  char log[8192];
} conn_t;

static void on_log(uvmqtt_stream_t *s, int level, const char *msg) {
  conn_t *c = s->data;
  size_t used = strlen(c->log);
  (void)level;
  snprintf(c->log + used, sizeof(c->log) - used, "%s\n", msg);
}

static void on_read(uvmqtt_stream_t *s, ssize_t nread, const uint8_t *buf) {
  conn_t *c = s->data;
  if (nread < 0) {
    c->read_end = (int)nread;
    return;
  }
  assert_true(c->rxlen + (size_t)nread <= sizeof(c->rx));
  memcpy(c->rx + c->rxlen, buf, (size_t)nread);
  c->rxlen += (size_t)nread;
  if (c->rxlen >= sizeof(connack_ok))
    c->got_connack = 1;
}

static void on_written(uvmqtt_stream_t *s, int status, void *arg) {
  conn_t *c = arg;
  (void)s;
  assert_int_equal(0, status);
  c->wrote++;
}

static void on_tls_open(uvmqtt_stream_t *s, int status) {
  conn_t *c = s->data;
  c->opened = 1;
  c->open_status = status;
  if (status == 0) {
    uv_buf_t b = uv_buf_init((char *)connect_pkt, sizeof(connect_pkt));
    assert_int_equal(0, uvmqtt__stream_write(s, &b, 1, on_written, c));
  }
}

static void on_tcp_open(uvmqtt_stream_t *s, int status) {
  conn_t *c = s->data;
  int rc;
  assert_int_equal(0, status);
  rc = uvmqtt__tls_new(s, c->cfg, c->name, &c->tls);
  assert_int_equal(0, rc);
  c->tls->data = c;
  c->tls->read_cb = on_read;
  c->tls->log_cb = on_log;
  assert_int_equal(0, c->tls->ops->open(c->tls, on_tls_open));
}

static void on_closed(uvmqtt_stream_t *s) {
  conn_t *c = s->data;
  c->closed = 1;
}

static void conn_init(conn_t *c, const char *name) {
  memset(c, 0, sizeof(*c));
  assert_int_equal(0, uv_loop_init(&c->loop));
  assert_int_equal(0, uvmqtt_tls_config_new(&c->cfg));
  c->name = name;
}

static void ca(conn_t *c) {
  assert_int_equal(
      0, uvmqtt_tls_config_set_ca_file(c->cfg, tt_path(g_dir, "ca.crt")));
}

/* Connects to the port, runs the handshake; on success sends CONNECT and
 * waits for CONNACK. Returns the open status. */
static int conn_run(conn_t *c, int port) {
  struct sockaddr_in addr;
  uvmqtt_stream_t *tcp;
  assert_int_equal(0, uv_ip4_addr("127.0.0.1", port, &addr));
  assert_int_equal(0,
                   uvmqtt__tcp_connect(&c->loop, (const struct sockaddr *)&addr,
                                       NULL, on_tcp_open, c, &tcp));
  assert_int_equal(0, tu_run_until(&c->loop, &c->opened, 8000));
  if (c->open_status == 0) {
    assert_int_equal(0, tu_run_until(&c->loop, &c->got_connack, 5000));
    assert_memory_equal(connack_ok, c->rx, sizeof(connack_ok));
    assert_int_equal(1, c->wrote);
  } else {
    tu_run_for(&c->loop, 20);
    assert_int_equal(0, c->rxlen); /* no MQTT traffic */
    assert_int_equal(0, c->wrote);
  }
  return c->open_status;
}

static void conn_finish(conn_t *c) {
  assert_non_null(c->tls);
  if (c->open_status == 0)
    c->tls->ops->shutdown(c->tls);
  uvmqtt__stream_close(c->tls, on_closed);
  assert_int_equal(0, tu_run_until(&c->loop, &c->closed, 3000));
  assert_int_equal(0, tu_loop_close(&c->loop, 2000));
  uvmqtt_tls_config_free(c->cfg);
}

static void test_server_auth(void **state) {
  conn_t c;
  (void)state;
  conn_init(&c, "localhost");
  ca(&c);
  assert_int_equal(0, conn_run(&c, g_ports.server));
  conn_finish(&c);
  conn_init(&c, "127.0.0.1");
  ca(&c);
  assert_int_equal(0, conn_run(&c, g_ports.server));
  conn_finish(&c);
}

static void test_mutual(void **state) {
  conn_t c;
  (void)state;
  conn_init(&c, "localhost");
  ca(&c);
  assert_int_equal(
      0, uvmqtt_tls_config_set_cert_file(c.cfg, tt_path(g_dir, "client.crt"),
                                         tt_path(g_dir, "client.key"), NULL));
  assert_int_equal(0, conn_run(&c, g_ports.mutual));
  conn_finish(&c);
}

static void test_psk(void **state) {
  conn_t c;
  uint8_t key[16];
  (void)state;
  for (size_t i = 0; i < sizeof(key); i++)
    key[i] = (uint8_t)(i * 0x11);
  conn_init(&c, "127.0.0.1");
  assert_int_equal(
      0, uvmqtt_tls_config_set_psk(c.cfg, TT_PSK_ID, key, sizeof(key)));
  assert_int_equal(0, conn_run(&c, g_ports.psk));
  conn_finish(&c);
}

static void expect_fail(conn_t *c, int port, int err) {
  int mb = 0;
  uint32_t vf = 0;
  assert_int_equal(err, conn_run(c, port));
  assert_int_equal(0, uvmqtt__tls_last_error(c->tls, &mb, &vf));
  assert_true(mb < 0);
  assert_non_null(strstr(c->log, "tls:"));
  conn_finish(c);
}

static void test_unknown_ca(void **state) {
  conn_t c;
  (void)state;
  conn_init(&c, "localhost");
  ca(&c);
  expect_fail(&c, g_ports.other, UVMQTT_ETLS_UNTRUSTED);
}

static void test_expired(void **state) {
  conn_t c;
  (void)state;
  conn_init(&c, "localhost");
  ca(&c);
  expect_fail(&c, g_ports.expired, UVMQTT_ETLS_EXPIRED);
}

static void test_wrong_host(void **state) {
  conn_t c;
  (void)state;
  conn_init(&c, "localhost");
  ca(&c);
  expect_fail(&c, g_ports.wrong, UVMQTT_ETLS_HOSTNAME);
}

static void test_missing_client_cert(void **state) {
  conn_t c;
  (void)state;
  conn_init(&c, "localhost");
  ca(&c);
  expect_fail(&c, g_ports.mutual, UVMQTT_ETLS_NOCERT);
}

static void test_client_cert_untrusted_by_server(void **state) {
  conn_t c;
  (void)state;
  conn_init(&c, "localhost");
  ca(&c);
  assert_int_equal(0, uvmqtt_tls_config_set_cert_file(
                          c.cfg, tt_path(g_dir, "other-client.crt"),
                          tt_path(g_dir, "other-client.key"), NULL));
  expect_fail(&c, g_ports.mutual, UVMQTT_ETLS_ALERT);
}

static void test_wrong_psk(void **state) {
  conn_t c;
  uint8_t key[16] = {1, 2, 3};
  (void)state;
  conn_init(&c, "127.0.0.1");
  assert_int_equal(
      0, uvmqtt_tls_config_set_psk(c.cfg, TT_PSK_ID, key, sizeof(key)));
  expect_fail(&c, g_ports.psk, UVMQTT_ETLS_PSK);
  conn_init(&c, "127.0.0.1");
  for (size_t i = 0; i < sizeof(key); i++)
    key[i] = (uint8_t)(i * 0x11);
  assert_int_equal(
      0, uvmqtt_tls_config_set_psk(c.cfg, "nobody", key, sizeof(key)));
  expect_fail(&c, g_ports.psk, UVMQTT_ETLS_PSK);
}

/* Connects through a shared configuration; returns whether it resumed. */
static bool run_shared(uvmqtt_tls_config_t *cfg, int port) {
  conn_t c;
  bool resumed;
  conn_init(&c, "localhost");
  uvmqtt_tls_config_free(c.cfg);
  c.cfg = cfg;
  assert_int_equal(0, conn_run(&c, port));
  resumed = uvmqtt__tls_resumed(c.tls);
  c.cfg = NULL;
  conn_finish(&c);
  return resumed;
}

static void test_session_resumption(void **state) {
  /* mosquitto (OpenSSL) keeps TLS 1.2 sessions while it runs: the second
   * and later connections through one configuration resume. */
  uvmqtt_tls_config_t *cfg;
  uint64_t hs, res;
  int mutual[3];
  (void)state;
  assert_int_equal(0, uvmqtt_tls_config_new(&cfg));
  assert_int_equal(
      0, uvmqtt_tls_config_set_ca_file(cfg, tt_path(g_dir, "ca.crt")));
  assert_false(run_shared(cfg, g_ports.server));
  assert_true(run_shared(cfg, g_ports.server));
  assert_true(run_shared(cfg, g_ports.server));
  assert_int_equal(0, uvmqtt_tls_config_session_stats(cfg, &hs, &res));
  assert_int_equal(3, hs);
  assert_int_equal(2, res);
  /* With a client certificate (mutual listener). */
  assert_int_equal(
      0, uvmqtt_tls_config_set_cert_file(cfg, tt_path(g_dir, "client.crt"),
                                         tt_path(g_dir, "client.key"), NULL));
  for (int i = 0; i < 3; i++)
    mutual[i] = run_shared(cfg, g_ports.mutual);
  /* The first offers the other listener's session (same name), which this
   * one does not know: a full handshake, then resumption. */
  assert_false(mutual[0]);
  assert_true(mutual[1]);
  assert_true(mutual[2]);
  /* A restarted broker has forgotten every session: the first connection
   * after it pays a full handshake, saves the new session, and the next
   * ones resume that one. */
  assert_int_equal(0, tu_broker_restart(&g_broker));
  assert_int_equal(0, tu_wait_port(g_ports.mutual, 3000));
  assert_false(run_shared(cfg, g_ports.mutual));
  assert_true(run_shared(cfg, g_ports.mutual));
  uvmqtt_tls_config_free(cfg);
}

static void test_plain_port_is_handshake_failure(void **state) {
  /* A plain MQTT listener answers a ClientHello with nothing TLS. */
  conn_t c;
  (void)state;
  conn_init(&c, "localhost");
  ca(&c);
  assert_int_equal(0, uvmqtt_tls_config_set_handshake_timeout(c.cfg, 2000));
  {
    int rc = conn_run(&c, g_broker.port);
    assert_true(rc == UVMQTT_ETLS_HANDSHAKE || rc == UVMQTT_ETIMEDOUT ||
                rc == UV_ECONNRESET);
  }
  conn_finish(&c);
}

static int group_setup(void **state) {
  (void)state;
  if (tt_certs_make(g_dir, sizeof(g_dir)) != 0)
    return -1;
  if (tt_broker_start(&g_broker, g_dir, &g_ports) != 0) {
    tu_broker_cleanup(&g_broker);
    tt_certs_remove(g_dir);
    return -1;
  }
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  tu_broker_cleanup(&g_broker);
  tt_certs_remove(g_dir);
  return 0;
}

int main(void) {
  /* A write to a connection the broker reset must not kill the test (libuv
   * leaves SIGPIPE to the application, as Node does by ignoring it). */
  signal(SIGPIPE, SIG_IGN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_server_auth),
      cmocka_unit_test(test_mutual),
      cmocka_unit_test(test_psk),
      cmocka_unit_test(test_unknown_ca),
      cmocka_unit_test(test_expired),
      cmocka_unit_test(test_wrong_host),
      cmocka_unit_test(test_missing_client_cert),
      cmocka_unit_test(test_client_cert_untrusted_by_server),
      cmocka_unit_test(test_wrong_psk),
      cmocka_unit_test(test_plain_port_is_handshake_failure),
      cmocka_unit_test(test_session_resumption),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
