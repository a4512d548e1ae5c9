/* The client against scripted peers on loopback: silent brokers
 * (keepalive, timeouts), protocol violations, and "nothing blocks" (a loop
 * lag timer keeps firing on time while connecting and resolving). */
#include "ctest.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static const uint8_t CONNACK_OK[] = {0x20, 0x02, 0x00, 0x00};
static const uint8_t PINGREQ[] = {0xC0, 0x00};

static uvmqtt_options_t *peer_opts(int version, unsigned keepalive,
                                   unsigned connect_timeout) {
  uvmqtt_options_t *o = ct_opts(version, "peer-test", true);
  assert_int_equal(uvmqtt_options_set_keepalive(o, keepalive), 0);
  assert_int_equal(uvmqtt_options_set_connect_timeout(o, connect_timeout), 0);
  assert_int_equal(uvmqtt_options_set_reconnect(o, false, 0, 0, 0), 0);
  return o;
}

static bool contains(const uint8_t *hay, size_t n, const uint8_t *needle,
                     size_t m) {
  for (size_t i = 0; i + m <= n; i++)
    if (memcmp(hay + i, needle, m) == 0)
      return true;
  return false;
}

/* A peer that accepts and never answers: the attempt fails with
 * UVMQTT_EKEEPALIVE (1 s keepalive, connect timeout far away) within 1.5x
 * the keepalive, and not before the keepalive. */
static void silent_peer(void **state) {
  uv_loop_t loop;
  ct_peer_t p;
  ct_client_t t;
  (void)state;
  assert_int_equal(uv_loop_init(&loop), 0);
  ct_peer_start(&loop, &p, NULL, 0);
  uvmqtt_options_t *o = peer_opts(UVMQTT_V311, 1, 30000);
  ct_client_init(&t, &loop, o, "silent");
  uvmqtt_options_del(o);
  uint64_t t0 = tu_now_ms();
  ct_connect(&t, p.port);
  assert_int_equal(ct_wait_int(&loop, &t.connects, 1, 3000), 0);
  uint64_t dt = t.last_connect_ms - t0;
  assert_true(t.last_connect_status == UVMQTT_EKEEPALIVE ||
              t.last_connect_status == UVMQTT_ETIMEDOUT);
  assert_int_equal(t.last_connect_status, UVMQTT_EKEEPALIVE);
  assert_true(t.last_ack_null);
  assert_true(dt >= 1000);
  assert_true(dt <= 1500);
  assert_int_equal(p.accepted, 1);
  assert_true(p.rx_len > 0 && p.rx[0] == 0x10); /* a CONNECT was sent */
  assert_int_equal(t.disconnects, 0);
  /* Reconnect is off: nothing more happens. */
  tu_run_for(&loop, 300);
  assert_int_equal(t.connects, 1);
  assert_int_equal(p.accepted, 1);
  ct_close(&t);
  ct_peer_stop(&p);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
}

/* A peer that answers CONNACK and then goes silent: a PINGREQ goes out at
 * the keepalive, and the connection is dropped with UVMQTT_EKEEPALIVE
 * within 1.5x the keepalive. */
static void connack_then_silent(void **state) {
  uv_loop_t loop;
  ct_peer_t p;
  ct_client_t t;
  (void)state;
  assert_int_equal(uv_loop_init(&loop), 0);
  ct_peer_start(&loop, &p, CONNACK_OK, sizeof(CONNACK_OK));
  uvmqtt_options_t *o = peer_opts(UVMQTT_V311, 1, 30000);
  ct_client_init(&t, &loop, o, "connack");
  uvmqtt_options_del(o);
  ct_connect(&t, p.port);
  ct_wait_connected(&t, 1);
  size_t connect_len = p.rx_len;
  assert_int_equal(ct_wait_int(&loop, &t.disconnects, 1, 3000), 0);
  uint64_t dt = t.last_disconnect_ms - t.last_connect_ms;
  assert_int_equal(t.last_disconnect_status, UVMQTT_EKEEPALIVE);
  assert_true(dt >= 1000);
  assert_true(dt <= 1500);
  assert_true(p.rx_len >= connect_len + 2);
  assert_true(contains(p.rx + connect_len, p.rx_len - connect_len, PINGREQ,
                       sizeof(PINGREQ)));
  assert_false(uvmqtt_client_is_connected(t.c));
  ct_close(&t);
  ct_peer_stop(&p);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
}

/* ---- protocol violations ----------------------------------------------- */

typedef struct {
  const char *name;
  int version;
  const uint8_t *script; /* answer to CONNECT */
  size_t len;
  /* Sent after the client's SUBSCRIBE (when `subscribe`). */
  bool subscribe;
  const uint8_t *after_sub;
  size_t after_len;
  uint32_t max_packet;
  int connect_status;    /* expected in the connect callback */
  int disconnect_status; /* expected in the disconnect callback (0: none) */
} violation_t;

#define B(...)                                                                 \
  (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})

static const violation_t violations[] = {
    /* A PUBLISH before the CONNACK. */
    {"publish before connack", UVMQTT_V311,
     B(0x30, 0x05, 0x00, 0x01, 'a', 'h', 'i'), false, NULL, 0, 0,
     UVMQTT_EUNEXPECTED, 0},
    /* A CONNACK with a byte too many. */
    {"long connack", UVMQTT_V311, B(0x20, 0x03, 0x00, 0x00, 0x00), false, NULL,
     0, 0, UVMQTT_ETRAILING, 0},
    /* Reserved CONNACK flag bits set. */
    {"connack flags", UVMQTT_V311, B(0x20, 0x02, 0x02, 0x00), false, NULL, 0, 0,
     UVMQTT_EMALFORMED, 0},
    /* Remaining length longer than four bytes. */
    {"remaining length", UVMQTT_V311,
     B(0x20, 0x02, 0x00, 0x00, 0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01), false, NULL,
     0, 0, 0, UVMQTT_EREMLEN},
    /* A packet type a client must not receive (SUBSCRIBE). */
    {"subscribe to client", UVMQTT_V311,
     B(0x20, 0x02, 0x00, 0x00, 0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00),
     false, NULL, 0, 0, 0, UVMQTT_ETYPE},
    /* PINGREQ is client-to-server only too. */
    {"pingreq to client", UVMQTT_V5,
     B(0x20, 0x03, 0x00, 0x00, 0x00, 0xC0, 0x00), false, NULL, 0, 0, 0,
     UVMQTT_ETYPE},
    /* PUBREL with reserved flags 0000 instead of 0010. */
    {"pubrel flags", UVMQTT_V311,
     B(0x20, 0x02, 0x00, 0x00, 0x60, 0x02, 0x00, 0x01), false, NULL, 0, 0, 0,
     UVMQTT_EFLAGS},
    /* A PUBLISH with QoS 3. */
    {"qos 3", UVMQTT_V311,
     B(0x20, 0x02, 0x00, 0x00, 0x36, 0x07, 0x00, 0x01, 'a', 0x00, 0x01, 'h',
       'i'),
     false, NULL, 0, 0, 0, UVMQTT_EQOS},
    /* A wildcard in a PUBLISH topic. */
    {"wildcard topic", UVMQTT_V311,
     B(0x20, 0x02, 0x00, 0x00, 0x30, 0x05, 0x00, 0x01, '#', 'h', 'i'), false,
     NULL, 0, 0, 0, UVMQTT_EWILDCARD},
    /* A PUBACK for a packet id never used. */
    {"puback unknown id", UVMQTT_V311,
     B(0x20, 0x02, 0x00, 0x00, 0x40, 0x02, 0x12, 0x34), false, NULL, 0, 0, 0,
     UVMQTT_EUNEXPECTED},
    /* A second CONNACK. */
    {"second connack", UVMQTT_V311,
     B(0x20, 0x02, 0x00, 0x00, 0x20, 0x02, 0x00, 0x00), false, NULL, 0, 0, 0,
     UVMQTT_EUNEXPECTED},
    /* A packet larger than our maximum packet size (announced length). */
    {"too big", UVMQTT_V311,
     B(0x20, 0x02, 0x00, 0x00, 0x30, 0xE8, 0x07, 0x00, 0x01, 'a'), false, NULL,
     0, 64, 0, UVMQTT_ETOOBIG},
    /* A SUBACK for a packet id we never used. */
    {"suback unknown id", UVMQTT_V311, B(0x20, 0x02, 0x00, 0x00), true,
     B(0x90, 0x03, 0x7A, 0x7B, 0x00), 0, 0, UVMQTT_EUNEXPECTED},
    /* A SUBACK with the wrong number of return codes (id 1 is ours). */
    {"suback count", UVMQTT_V311, B(0x20, 0x02, 0x00, 0x00), true,
     B(0x90, 0x04, 0x00, 0x01, 0x00, 0x00), 0, 0, UVMQTT_EUNEXPECTED},
    /* v5: a topic alias we never allowed. */
    {"topic alias", UVMQTT_V5,
     B(0x20, 0x03, 0x00, 0x00, 0x00, 0x30, 0x08, 0x00, 0x01, 'a', 0x03, 0x23,
       0x00, 0x01, 'x'),
     false, NULL, 0, 0, 0, UVMQTT_ETOPICALIAS},
};

static void run_violation(const violation_t *v) {
  uv_loop_t loop;
  ct_peer_t p;
  ct_client_t t;
  ct_sub_t s;
  assert_int_equal(uv_loop_init(&loop), 0);
  ct_peer_start(&loop, &p, v->script, v->len);
  uvmqtt_options_t *o = peer_opts(v->version, 60, 5000);
  if (v->max_packet)
    assert_int_equal(uvmqtt_options_set_max_packet_size(o, v->max_packet), 0);
  ct_client_init(&t, &loop, o, v->name);
  uvmqtt_options_del(o);
  ct_connect(&t, p.port);
  assert_int_equal(ct_wait_int(&loop, &t.connects, 1, 3000), 0);
  assert_int_equal(t.last_connect_status, v->connect_status);
  if (v->subscribe) {
    size_t before = p.rx_len;
    memset(&s, 0, sizeof(s));
    assert_int_equal(uvmqtt_subscribe(t.c, "f", 1, ct_sub_cb, &s), 1);
    assert_int_equal(ct_peer_wait_rx(&loop, &p, before + 1, 3000), 0);
    ct_peer_send(&p, v->after_sub, v->after_len);
    assert_int_equal(ct_wait_int(&loop, &t.disconnects, 1, 3000), 0);
    /* The pending SUBSCRIBE waits for the next connection (sent again
     * then), and completes with UVMQTT_ECLOSED on close. */
    assert_int_equal(s.calls, 0);
  }
  if (v->disconnect_status) {
    assert_int_equal(ct_wait_int(&loop, &t.disconnects, 1, 3000), 0);
    assert_int_equal(t.last_disconnect_status, v->disconnect_status);
  } else {
    tu_run_for(&loop, 100);
    assert_int_equal(t.disconnects, 0);
  }
  /* The connection is closed by the client. */
  assert_false(uvmqtt_client_is_connected(t.c));
  assert_int_equal(ct_wait_int(&loop, &p.client_eof, 1, 3000), 0);
  tu_run_for(&loop, 50);
  assert_int_equal(t.connects, 1);
  ct_close(&t);
  if (v->subscribe) {
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.status, UVMQTT_ECLOSED);
    assert_int_equal(s.count, 0);
  }
  ct_peer_stop(&p);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
}

static void protocol_violations(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(violations) / sizeof(violations[0]); i++) {
    fprintf(stderr, "violation: %s\n", violations[i].name);
    run_violation(&violations[i]);
  }
}

/* ---- nothing blocks -------------------------------------------------------
 */

/* Connecting to a peer that accepts and never answers (connect timeout
 * 600 ms, no keepalive): the lag timer keeps firing on time and the attempt
 * ends with UVMQTT_ETIMEDOUT. */
static void no_block_silent(void **state) {
  uv_loop_t loop;
  ct_peer_t p;
  ct_client_t t;
  tu_lag_t lag;
  (void)state;
  assert_int_equal(uv_loop_init(&loop), 0);
  ct_peer_start(&loop, &p, NULL, 0);
  uvmqtt_options_t *o = peer_opts(UVMQTT_V311, 0, 600);
  ct_client_init(&t, &loop, o, "lag");
  uvmqtt_options_del(o);
  tu_lag_start(&loop, &lag, 10);
  uint64_t t0 = tu_now_ms();
  ct_connect(&t, p.port);
  assert_true(tu_now_ms() - t0 < 20);
  assert_int_equal(ct_wait_int(&loop, &t.connects, 1, 3000), 0);
  assert_int_equal(t.last_connect_status, UVMQTT_ETIMEDOUT);
  uint64_t dt = t.last_connect_ms - t0;
  assert_true(dt >= 550 && dt <= 900);
  assert_true(lag.ticks >= 40);
  assert_true(lag.max_lag_ms < 50);
  tu_lag_stop(&lag);
  ct_close(&t);
  ct_peer_stop(&p);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
}

/* A TCP connect that stays pending: a listener whose accept queue is full
 * drops our SYNs (loopback only). */
static void no_block_backlog(void **state) {
  uv_loop_t loop;
  ct_client_t t;
  tu_lag_t lag;
  struct sockaddr_in a;
  int fill[4];
  (void)state;
  int port = tu_free_port();
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)port);
  assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
  assert_int_equal(listen(lfd, 0), 0);
  for (int i = 0; i < 4; i++) {
    fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    connect(fill[i], (struct sockaddr *)&a, sizeof(a));
  }
  usleep(50000);
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = peer_opts(UVMQTT_V311, 0, 600);
  ct_client_init(&t, &loop, o, "backlog");
  uvmqtt_options_del(o);
  tu_lag_start(&loop, &lag, 10);
  uint64_t t0 = tu_now_ms();
  ct_connect(&t, port);
  assert_true(tu_now_ms() - t0 < 20);
  assert_int_equal(ct_wait_int(&loop, &t.connects, 1, 3000), 0);
  assert_int_equal(t.last_connect_status, UVMQTT_ETIMEDOUT);
  uint64_t dt = t.last_connect_ms - t0;
  assert_true(dt >= 550 && dt <= 900);
  assert_true(lag.max_lag_ms < 50);
  tu_lag_stop(&lag);
  ct_close(&t);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
  for (int i = 0; i < 4; i++)
    close(fill[i]);
  close(lfd);
}

/* A name lookup whose DNS server never answers (a UDP socket on loopback
 * that swallows queries): the loop keeps running and the attempt fails
 * with UVMQTT_EDNS_TIMEOUT after the DNS timeout. */
typedef struct {
  uv_udp_t udp;
  int queries;
  char buf[1500];
} blackhole_t;

static void bh_alloc(uv_handle_t *h, size_t n, uv_buf_t *b) {
  blackhole_t *bh = h->data;
  (void)n;
  *b = uv_buf_init(bh->buf, sizeof(bh->buf));
}

static void bh_recv(uv_udp_t *u, ssize_t n, const uv_buf_t *b,
                    const struct sockaddr *from, unsigned flags) {
  blackhole_t *bh = u->data;
  (void)b;
  (void)flags;
  if (n > 0 && from)
    bh->queries++;
}

static void no_block_dns(void **state) {
  uv_loop_t loop;
  ct_client_t t;
  tu_lag_t lag;
  blackhole_t bh;
  struct sockaddr_in a;
  char servers[64];
  (void)state;
  assert_int_equal(uv_loop_init(&loop), 0);
  memset(&bh, 0, sizeof(bh));
  int port = tu_free_port();
  uv_udp_init(&loop, &bh.udp);
  bh.udp.data = &bh;
  uv_ip4_addr("127.0.0.1", port, &a);
  assert_int_equal(uv_udp_bind(&bh.udp, (struct sockaddr *)&a, 0), 0);
  assert_int_equal(uv_udp_recv_start(&bh.udp, bh_alloc, bh_recv), 0);
  snprintf(servers, sizeof(servers), "127.0.0.1:%d", port);

  uvmqtt_options_t *o = peer_opts(UVMQTT_V311, 0, 5000);
  int rc = uvmqtt_options_set_dns_servers(o, servers);
  if (rc == UVMQTT_ENOTSUP) {
    uvmqtt_options_del(o);
    uv_close((uv_handle_t *)&bh.udp, NULL);
    assert_int_equal(tu_loop_close(&loop, 2000), 0);
    skip();
  }
  assert_int_equal(rc, 0);
  assert_int_equal(uvmqtt_options_set_dns_timeout(o, 600), 0);
  ct_client_init(&t, &loop, o, "dns");
  uvmqtt_options_del(o);
  tu_lag_start(&loop, &lag, 10);
  uint64_t t0 = tu_now_ms();
  assert_int_equal(uvmqtt_client_connect(t.c, "broker.uvmqtt.test", 1883), 0);
  assert_true(tu_now_ms() - t0 < 20);
  assert_int_equal(ct_wait_int(&loop, &t.connects, 1, 3000), 0);
  assert_int_equal(t.last_connect_status, UVMQTT_EDNS_TIMEOUT);
  uint64_t dt = t.last_connect_ms - t0;
  assert_true(dt >= 550 && dt <= 1000);
  assert_true(bh.queries >= 1);
  assert_true(lag.max_lag_ms < 50);
  tu_lag_stop(&lag);
  ct_close(&t);
  uv_close((uv_handle_t *)&bh.udp, NULL);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
}

static const struct CMUnitTest tests[] = {
    CT_TEST(silent_peer),         CT_TEST(connack_then_silent),
    CT_TEST(protocol_violations), CT_TEST(no_block_silent),
    CT_TEST(no_block_backlog),    CT_TEST(no_block_dns),
};

CT_MAIN(tests)
