/* The ws stream over tcp against mosquitto's websockets listener (a private
 * broker on free loopback ports): hand-encoded MQTT 3.1.1 and 3.1 packets,
 * CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH round trips small and large,
 * PINGREQ, DISCONNECT with the WebSocket close handshake. Transport level:
 * no client, session or codec code involved. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "testutil.h"
#include "transport/transport.h"
#include "uvmqtt/errors.h"

typedef struct {
  tu_broker_t broker;
  int ws_port;
} env_t;

static int env_setup(void **state) {
  env_t *e = calloc(1, sizeof(*e));
  e->ws_port = tu_free_port();
  if (e->ws_port < 0)
    return -1;
  char extra[256];
  /* Debian's mosquitto 2.0.11 opens a websockets listener only next to a
   * plain one, which tu_broker_start always configures. */
  snprintf(extra, sizeof(extra), "listener %d 127.0.0.1\nprotocol websockets\n",
           e->ws_port);
  if (tu_broker_start(&e->broker, 0, extra) != 0) {
    free(e);
    return -1;
  }
  if (tu_wait_port(e->ws_port, 5000) != 0) {
    tu_broker_cleanup(&e->broker);
    free(e);
    return -1;
  }
  *state = e;
  return 0;
}

static int env_teardown(void **state) {
  env_t *e = *state;
  tu_broker_cleanup(&e->broker);
  free(e);
  return 0;
}

typedef struct {
  uv_loop_t loop;
  uv_timer_t tick;
  const char *protocol;
  uvmqtt_stream_t *ws;
  int opened, open_status;
  uint8_t *in;
  size_t in_len, in_cap;
  int ended, end_status, closed, writes_ok, writes_failed;
} cli_t;

static void on_tick(uv_timer_t *t) {
  (void)t;
}

static void cli_read(uvmqtt_stream_t *s, ssize_t n, const uint8_t *buf) {
  cli_t *c = s->data;
  if (n < 0) {
    c->ended = 1;
    c->end_status = (int)n;
    return;
  }
  if (c->in_len + (size_t)n > c->in_cap) {
    c->in_cap = (c->in_len + (size_t)n) * 2;
    c->in = realloc(c->in, c->in_cap);
  }
  memcpy(c->in + c->in_len, buf, (size_t)n);
  c->in_len += (size_t)n;
}

static void cli_ws_open(uvmqtt_stream_t *s, int status) {
  cli_t *c = s->data;
  c->opened = 1;
  c->open_status = status;
}

static void cli_tcp_open(uvmqtt_stream_t *tcp, int status) {
  cli_t *c = tcp->data;
  if (status != 0) {
    c->opened = 1;
    c->open_status = status;
    uvmqtt__stream_close(tcp, NULL);
    return;
  }
  char host[64];
  uvmqtt_ws_opts_t o = {.host = host, .protocol = c->protocol};
  snprintf(host, sizeof(host), "127.0.0.1");
  assert_int_equal(uvmqtt__ws_new(tcp, &o, &c->ws), 0);
  c->ws->data = c;
  c->ws->read_cb = cli_read;
  assert_int_equal(c->ws->ops->open(c->ws, cli_ws_open), 0);
}

static void cli_closed(uvmqtt_stream_t *s) {
  cli_t *c = s->data;
  c->closed = 1;
}

static void cli_wrote(uvmqtt_stream_t *s, int status, void *arg) {
  cli_t *c = s->data;
  free(arg);
  if (status == 0)
    c->writes_ok++;
  else
    c->writes_failed++;
}

static void cli_connect(cli_t *c, int port, const char *protocol) {
  memset(c, 0, sizeof(*c));
  c->protocol = protocol;
  assert_int_equal(uv_loop_init(&c->loop), 0);
  uv_timer_init(&c->loop, &c->tick);
  uv_timer_start(&c->tick, on_tick, 10, 10);
  uv_unref((uv_handle_t *)&c->tick);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", port, &a);
  uvmqtt_tcp_opts_t to = {.nodelay = 1};
  uvmqtt_stream_t *tcp;
  assert_int_equal(uvmqtt__tcp_connect(&c->loop, (struct sockaddr *)&a, &to,
                                       cli_tcp_open, c, &tcp),
                   0);
  assert_int_equal(tu_run_until(&c->loop, &c->opened, 5000), 0);
  assert_int_equal(c->open_status, 0);
}

/* Sends bytes (copied; freed when written). */
static void send_bytes(cli_t *c, const void *p, size_t n) {
  void *copy = malloc(n);
  memcpy(copy, p, n);
  uv_buf_t b = uv_buf_init(copy, (unsigned)n);
  assert_int_equal(c->ws->ops->write(c->ws, &b, 1, cli_wrote, copy), 0);
}

/* Waits for n bytes from the broker, then takes them off the input. */
static void expect_bytes(cli_t *c, const void *p, size_t n) {
  uint64_t end = tu_now_ms() + 5000;
  while (c->in_len < n && !c->ended && tu_now_ms() < end)
    uv_run(&c->loop, UV_RUN_ONCE);
  if (c->in_len < n)
    fail_msg("got %zu of %zu bytes (ended %d: %s)", c->in_len, n, c->ended,
             uvmqtt_err_name(c->end_status));
  assert_memory_equal(c->in, p, n);
  memmove(c->in, c->in + n, c->in_len - n);
  c->in_len -= n;
}

static void cli_finish(cli_t *c) {
  if (c->ws) {
    uvmqtt__stream_close(c->ws, cli_closed);
    assert_int_equal(tu_run_until(&c->loop, &c->closed, 2000), 0);
  }
  uv_close((uv_handle_t *)&c->tick, NULL);
  assert_int_equal(tu_loop_close(&c->loop, 2000), 0);
  free(c->in);
}

/* CONNECT with a client id, clean session, keepalive 30. */
static size_t connect_packet(uint8_t *p, int v31, const char *id) {
  size_t n = 0, idl = strlen(id);
  const char *name = v31 ? "MQIsdp" : "MQTT";
  size_t nl = strlen(name);
  p[n++] = 0x10;
  p[n++] = (uint8_t)(2 + nl + 1 + 1 + 2 + 2 + idl);
  p[n++] = 0;
  p[n++] = (uint8_t)nl;
  memcpy(p + n, name, nl);
  n += nl;
  p[n++] = v31 ? 3 : 4;
  p[n++] = 0x02;
  p[n++] = 0;
  p[n++] = 30;
  p[n++] = 0;
  p[n++] = (uint8_t)idl;
  memcpy(p + n, id, idl);
  return n + idl;
}

static void round_trip(env_t *e, const char *protocol, int v31) {
  cli_t c;
  cli_connect(&c, e->ws_port, protocol);
  uint8_t pkt[128];
  size_t n = connect_packet(pkt, v31, v31 ? "ws-v31" : "ws-v311");
  /* The CONNECT in two writes: two WebSocket frames, one MQTT packet. */
  send_bytes(&c, pkt, 5);
  send_bytes(&c, pkt + 5, n - 5);
  expect_bytes(&c, "\x20\x02\x00\x00", 4);
  /* SUBSCRIBE ws/t QoS 1 and PINGREQ in one frame. */
  static const uint8_t sub[] = {0x82, 0x09, 0x00, 0x01, 0x00, 0x04, 'w',
                                's',  '/',  't',  0x01, 0xc0, 0x00};
  send_bytes(&c, sub, sizeof(sub));
  expect_bytes(&c, "\x90\x03\x00\x01\x01", 5);
  expect_bytes(&c, "\xd0\x00", 2);
  /* PUBLISH QoS 0 comes back to us. */
  static const uint8_t pub[] = {0x30, 0x0b, 0x00, 0x04, 'w', 's', '/',
                                't',  'h',  'e',  'l',  'l', 'o'};
  send_bytes(&c, pub, sizeof(pub));
  expect_bytes(&c, pub, sizeof(pub));
  /* A 70 KiB PUBLISH QoS 1 (over 65535 bytes: 64-bit frame lengths): large
   * frames both ways; the broker's copy arrives in many reads (mosquitto
   * 2.0.11 sends 4 KiB per 100 ms over websockets). */
  size_t plen = 70 * 1024, tl = 4;
  size_t rl = 2 + tl + 2 + plen;
  uint8_t *big = malloc(rl + 8);
  size_t k = 0;
  big[k++] = 0x32;
  for (size_t v = rl;;) {
    uint8_t b = v & 0x7f;
    v >>= 7;
    big[k++] = (uint8_t)(b | (v ? 0x80 : 0));
    if (!v)
      break;
  }
  size_t hdr = k;
  big[k++] = 0;
  big[k++] = 4;
  memcpy(big + k, "ws/t", 4);
  k += 4;
  big[k++] = 0x00;
  big[k++] = 0x07;
  for (size_t i = 0; i < plen; i++)
    big[k + i] = (uint8_t)(i * 7 + 3);
  k += plen;
  send_bytes(&c, big, k);
  /* Expect the message back and a PUBACK, in either order. mosquitto 2.0.11
   * (libwebsockets) holds packets queued behind a large one until more
   * traffic arrives (verified on the wire: the PUBACK's bytes are not sent),
   * so a stall is nudged with a PINGREQ and its PINGRESP is expected too. */
  int nudged = 0;
  uint64_t end = tu_now_ms() + 8000, last = tu_now_ms();
  size_t seen = 0;
  while (c.in_len < k + 4 + (nudged ? 2u : 0u) && !c.ended &&
         tu_now_ms() < end) {
    uv_run(&c.loop, UV_RUN_ONCE);
    if (c.in_len != seen) {
      seen = c.in_len;
      last = tu_now_ms();
    } else if (!nudged && tu_now_ms() - last > 300) {
      send_bytes(&c, "\xc0\x00", 2);
      nudged = 1;
    }
  }
  assert_int_equal(c.in_len, k + 4 + (nudged ? 2u : 0u));
  int got_pub = 0, got_ack = 0, got_resp = 0;
  for (size_t at = 0; at < c.in_len;) {
    size_t len = 0, mul = 1, h = 1;
    while (c.in[at + h] & 0x80) {
      len += (c.in[at + h] & 0x7fu) * mul;
      mul <<= 7;
      h++;
    }
    len += (size_t)c.in[at + h] * mul;
    h++;
    if ((c.in[at] & 0xf0) == 0x30) {
      assert_int_equal(h + len, k);
      assert_memory_equal(c.in + at + h, big + hdr, 2 + tl); /* topic */
      assert_memory_equal(c.in + at + h + 2 + tl + 2, big + hdr + 2 + tl + 2,
                          plen);
      got_pub++;
    } else if (c.in[at] == 0x40) {
      assert_memory_equal(c.in + at, "\x40\x02\x00\x07", 4);
      got_ack++;
    } else {
      assert_memory_equal(c.in + at, "\xd0\x00", 2);
      got_resp++;
    }
    at += h + len;
  }
  assert_int_equal(got_pub, 1);
  assert_int_equal(got_ack, 1);
  assert_int_equal(got_resp, nudged);
  c.in_len = 0;
  free(big);
  /* DISCONNECT, then the close handshake: the broker ends the stream. */
  send_bytes(&c, "\xe0\x00", 2);
  c.ws->ops->shutdown(c.ws);
  assert_int_equal(tu_run_until(&c.loop, &c.ended, 5000), 0);
  assert_true(c.end_status == UV_EOF || c.end_status == UVMQTT_EWS_CLOSED ||
              c.end_status == UV_ECONNRESET);
  assert_int_equal(c.writes_failed, 0);
  cli_finish(&c);
}

static void test_mqtt311_round_trip(void **state) {
  round_trip(*state, "mqtt", 0);
}

static void test_mqtt31_round_trip(void **state) {
  round_trip(*state, "mqttv3.1", 1);
}

/* The broker's keepalive sees our traffic: an idle connection with
 * keepalive 1 s stays up while we PINGREQ, and PINGRESPs come back. */
static void test_keepalive_over_ws(void **state) {
  env_t *e = *state;
  cli_t c;
  cli_connect(&c, e->ws_port, "mqtt");
  uint8_t pkt[64];
  size_t n = connect_packet(pkt, 0, "ws-ka");
  pkt[n - 2 - 5 - 1] = 1; /* keepalive LSB: 1 s */
  send_bytes(&c, pkt, n);
  expect_bytes(&c, "\x20\x02\x00\x00", 4);
  for (int i = 0; i < 3; i++) {
    tu_run_for(&c.loop, 500);
    send_bytes(&c, "\xc0\x00", 2);
    expect_bytes(&c, "\xd0\x00", 2);
  }
  assert_false(c.ended);
  /* Silence past 1.5 x keepalive: the broker drops us (mosquitto checks
   * websockets clients every few seconds: about 6 s here). */
  uint64_t t0 = tu_now_ms(), end = tu_now_ms() + 12000;
  while (!c.ended && tu_now_ms() < end)
    uv_run(&c.loop, UV_RUN_ONCE);
  assert_true(c.ended);
  assert_true(tu_now_ms() - t0 >= 1500);
  cli_finish(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mqtt311_round_trip),
      cmocka_unit_test(test_mqtt31_round_trip),
      cmocka_unit_test(test_keepalive_over_ws),
  };
  return cmocka_run_group_tests(tests, env_setup, env_teardown);
}
