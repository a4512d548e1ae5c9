/* The proxy layers against real proxies (tinyproxy, microsocks, danted;
 * test/support/proxyutil.h) in front of a real mosquitto: the tunnel
 * carries an MQTT CONNECT (hand-encoded, no client code involved) and the
 * CONNACK back; credentials, refused targets and refused credentials give
 * their specific errors. The client-level tests (QoS, TLS, WebSocket,
 * restarts through proxies) are in test/client/test_proxy.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "proxyutil.h"
#include "testutil.h"
#include "transport/transport.h"
#include "uvmqtt/errors.h"

#define WAIT_MS 8000

static tu_broker_t broker;
static tp_proxy_t proxy;

typedef struct {
  uv_loop_t loop;
  uvmqtt_stream_t *s;
  int (*make)(uvmqtt_stream_t *, const uvmqtt_proxy_opts_t *,
              uvmqtt_stream_t **);
  uvmqtt_proxy_opts_t opts;
  int opened, open_status, code, closed;
  uint8_t got[64];
  size_t got_len;
  int connacked;
} fx_t;

/* MQTT 3.1.1 CONNECT, clean session, keepalive 60, client id "px". */
static const uint8_t mqtt_connect[] = {0x10, 14, 0, 4,  'M', 'Q', 'T', 'T',
                                       4,    2,  0, 60, 0,   2,   'p', 'x'};
static const uint8_t mqtt_connack[] = {0x20, 2, 0, 0};

static void on_read(uvmqtt_stream_t *s, ssize_t n, const uint8_t *buf) {
  fx_t *f = s->data;
  if (n <= 0)
    return;
  size_t take = (size_t)n < sizeof(f->got) - f->got_len
                    ? (size_t)n
                    : sizeof(f->got) - f->got_len;
  memcpy(f->got + f->got_len, buf, take);
  f->got_len += take;
  f->connacked = f->got_len >= sizeof(mqtt_connack);
}

static void on_sent(uvmqtt_stream_t *s, int status, void *arg) {
  (void)s;
  (void)arg;
  assert_int_equal(status, 0);
}

static void on_open(uvmqtt_stream_t *s, int status) {
  fx_t *f = s->data;
  f->opened = 1;
  f->open_status = status;
  f->code = uvmqtt__proxy_reply_code(s);
  if (status != 0)
    return;
  s->read_cb = on_read;
  uv_buf_t b = uv_buf_init((char *)mqtt_connect, sizeof(mqtt_connect));
  assert_int_equal(uvmqtt__stream_write(s, &b, 1, on_sent, NULL), 0);
}

static void on_tcp_open(uvmqtt_stream_t *s, int status) {
  fx_t *f = s->data;
  if (status != 0) {
    f->opened = 1;
    f->open_status = status;
    return;
  }
  uvmqtt_stream_t *up = NULL;
  assert_int_equal(f->make(s, &f->opts, &up), 0);
  f->s = up;
  up->data = f;
  assert_int_equal(up->ops->open(up, on_open), 0);
}

static void on_closed(uvmqtt_stream_t *s) {
  ((fx_t *)s->data)->closed = 1;
}

/* Opens a tunnel through `proxy` to `host`:`port`; returns open_cb's
 * status, and on success waits for the broker's CONNACK. */
static int tunnel(int (*make)(uvmqtt_stream_t *, const uvmqtt_proxy_opts_t *,
                              uvmqtt_stream_t **),
                  const char *host, int port, const char *user,
                  const char *pass, int *code) {
  fx_t f;
  memset(&f, 0, sizeof(f));
  assert_int_equal(uv_loop_init(&f.loop), 0);
  f.make = make;
  f.opts.host = host;
  f.opts.port = (uint16_t)port;
  f.opts.user = user;
  f.opts.pass = pass;
  f.opts.timeout_ms = WAIT_MS;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", proxy.port, &a);
  uvmqtt_stream_t *tcp = NULL;
  assert_int_equal(uvmqtt__tcp_connect(&f.loop, (struct sockaddr *)&a, NULL,
                                       on_tcp_open, &f, &tcp),
                   0);
  assert_int_equal(tu_run_until(&f.loop, &f.opened, WAIT_MS), 0);
  if (f.open_status == 0) {
    assert_int_equal(tu_run_until(&f.loop, &f.connacked, WAIT_MS), 0);
    assert_memory_equal(f.got, mqtt_connack, sizeof(mqtt_connack));
  }
  uvmqtt_stream_t *s = f.s ? f.s : tcp;
  s->data = &f;
  uvmqtt__stream_close(s, on_closed);
  assert_int_equal(tu_run_until(&f.loop, &f.closed, WAIT_MS), 0);
  assert_int_equal(tu_loop_close(&f.loop, WAIT_MS), 0);
  if (code)
    *code = f.code;
  return f.open_status;
}

static int setup(void **state) {
  (void)state;
  memset(&proxy, 0, sizeof(proxy));
  return tu_broker_start(&broker, 0, NULL);
}

static int teardown(void **state) {
  (void)state;
  tp_cleanup(&proxy);
  tu_broker_cleanup(&broker);
  return 0;
}

static void tinyproxy_open(void **state) {
  (void)state;
  char extra[64];
  snprintf(extra, sizeof(extra), "ConnectPort %d\n", broker.port);
  assert_int_equal(tp_start(&proxy, TP_TINYPROXY, 0, NULL, NULL, extra), 0);
  int code = 0;
  assert_int_equal(tunnel(uvmqtt__http_proxy_new, "127.0.0.1", broker.port,
                          NULL, NULL, &code),
                   0);
  assert_int_equal(code, 200);
  /* A port outside ConnectPort: the proxy refuses the target. */
  assert_int_equal(tunnel(uvmqtt__http_proxy_new, "127.0.0.1", broker.port + 1,
                          NULL, NULL, &code),
                   UVMQTT_EPROXY_STATUS);
  assert_int_equal(code, 403);
}

static void tinyproxy_auth(void **state) {
  (void)state;
  assert_int_equal(tp_start(&proxy, TP_TINYPROXY, 0, "user", "pass-w0rd", NULL),
                   0);
  int code = 0;
  assert_int_equal(tunnel(uvmqtt__http_proxy_new, "localhost", broker.port,
                          "user", "pass-w0rd", &code),
                   0);
  assert_int_equal(tunnel(uvmqtt__http_proxy_new, "localhost", broker.port,
                          "user", "wrong", &code),
                   UVMQTT_EPROXY_AUTH);
  /* tinyproxy 1.11 answers wrong credentials with 401, none with 407. */
  assert_int_equal(code, 401);
  assert_int_equal(tunnel(uvmqtt__http_proxy_new, "localhost", broker.port,
                          NULL, NULL, &code),
                   UVMQTT_EPROXY_AUTH);
  assert_int_equal(code, 407);
  /* The broker is down: the proxy cannot connect (500). */
  tu_broker_stop(&broker);
  assert_int_equal(tunnel(uvmqtt__http_proxy_new, "127.0.0.1", broker.port,
                          "user", "pass-w0rd", &code),
                   UVMQTT_EPROXY_STATUS);
  assert_true(code >= 500);
}

static void microsocks_open(void **state) {
  (void)state;
  assert_int_equal(tp_start(&proxy, TP_MICROSOCKS, 0, NULL, NULL, NULL), 0);
  /* A name the proxy resolves (socks5h), and an address. */
  assert_int_equal(
      tunnel(uvmqtt__socks5_new, "localhost", broker.port, NULL, NULL, NULL),
      0);
  assert_int_equal(
      tunnel(uvmqtt__socks5_new, "127.0.0.1", broker.port, NULL, NULL, NULL),
      0);
  int code = 0;
  assert_int_equal(tunnel(uvmqtt__socks5_new, "127.0.0.1", tu_free_port(), NULL,
                          NULL, &code),
                   UVMQTT_ESOCKS_REFUSED);
  assert_int_equal(code, 5);
}

static void microsocks_auth(void **state) {
  (void)state;
  assert_int_equal(tp_start(&proxy, TP_MICROSOCKS, 0, "user", "secret", NULL),
                   0);
  assert_int_equal(tunnel(uvmqtt__socks5_new, "localhost", broker.port, "user",
                          "secret", NULL),
                   0);
  assert_int_equal(tunnel(uvmqtt__socks5_new, "localhost", broker.port, "user",
                          "wrong", NULL),
                   UVMQTT_EPROXY_AUTH);
  assert_int_equal(
      tunnel(uvmqtt__socks5_new, "localhost", broker.port, NULL, NULL, NULL),
      UVMQTT_EPROXY_AUTH);
}

static void dante_open(void **state) {
  (void)state;
  char extra[160];
  int blocked = tu_free_port();
  snprintf(extra, sizeof(extra),
           "socks block { from: 0.0.0.0/0 to: 127.0.0.1/32 port = %d }\n",
           blocked);
  assert_int_equal(tp_start(&proxy, TP_DANTE, 0, NULL, NULL, extra), 0);
  assert_int_equal(
      tunnel(uvmqtt__socks5_new, "localhost", broker.port, NULL, NULL, NULL),
      0);
  assert_int_equal(
      tunnel(uvmqtt__socks5_new, "127.0.0.1", broker.port, NULL, NULL, NULL),
      0);
  int code = 0;
  assert_int_equal(
      tunnel(uvmqtt__socks5_new, "127.0.0.1", blocked, NULL, NULL, &code),
      UVMQTT_ESOCKS_NOTALLOWED);
  assert_int_equal(code, 2);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      T(tinyproxy_open),  T(tinyproxy_auth), T(microsocks_open),
      T(microsocks_auth), T(dante_open),
  };
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
