/* Reaching brokers through proxies and unix-domain sockets, with the public
 * client API against mosquitto and real proxies started by the test
 * (test/support/proxyutil.h): tinyproxy (HTTP CONNECT, with and without
 * Basic auth), microsocks (SOCKS5, with and without username/password) and
 * danted (SOCKS5). QoS 0/1/2 round trips through each; mqtts://, ws:// and
 * wss:// through HTTP CONNECT with the test certificates; refused
 * credentials, a refused target, a proxy that never answers, a proxy
 * restarted under a connected client; mosquitto on a unix socket with a
 * broker restart; the opt-in environment variables. */
#include <unistd.h>

#include "certs.h"
#include "ctest.h"
#include "proxyutil.h"
#include "uvmqtt_config.h"
#if UVMQTT_HAVE_WS
#include "wshelp.h"
#endif

#define N 12

static tp_proxy_t proxies[2];
static int nproxies;
static char certs[256];
static char sockdir[256]; /* the broker's unix socket lives here */

/* ---- fixtures ------------------------------------------------------------ */

typedef struct {
  tu_broker_t *b;
  int ws, tls, wss; /* listener ports (0: not started) */
  char sock[320];   /* the unix listener's path */
} brk_t;

static void broker(brk_t *k, bool tls) {
  char extra[4096];
  int n = 0;
  memset(k, 0, sizeof(*k));
  assert_int_equal(tu_tmpdir(sockdir, sizeof(sockdir)), 0);
  snprintf(k->sock, sizeof(k->sock), "%s/mqtt.sock", sockdir);
  k->ws = tu_free_port();
  n += snprintf(extra + n, sizeof(extra) - (size_t)n,
                "listener 0 %s\n"
                "listener %d 127.0.0.1\nprotocol websockets\n",
                k->sock, k->ws);
#if UVMQTT_HAVE_TLS
  if (tls) {
    assert_int_equal(tt_certs_make(certs, sizeof(certs)), 0);
    k->tls = tu_free_port();
    k->wss = tu_free_port();
    n +=
        snprintf(extra + n, sizeof(extra) - (size_t)n,
                 "listener %d 127.0.0.1\n"
                 "cafile %s\ncertfile %s\nkeyfile %s\n"
                 "listener %d 127.0.0.1\nprotocol websockets\n"
                 "cafile %s\ncertfile %s\nkeyfile %s\n",
                 k->tls, tt_path(certs, "ca.crt"), tt_path(certs, "server.crt"),
                 tt_path(certs, "server.key"), k->wss, tt_path(certs, "ca.crt"),
                 tt_path(certs, "server.crt"), tt_path(certs, "server.key"));
  }
#else
  (void)tls;
#endif
  assert_true((size_t)n < sizeof(extra));
  k->b = ct_broker(extra);
  if (k->tls)
    assert_int_equal(tu_wait_port(k->tls, 5000), 0);
}

static tp_proxy_t *proxy(tp_kind_t kind, const char *user, const char *pass,
                         const char *extra) {
  assert_true(nproxies < 2);
  tp_proxy_t *p = &proxies[nproxies++];
  assert_int_equal(tp_start(p, kind, 0, user, pass, extra), 0);
  ct_track_child(-p->pid); /* its process group, on a fatal signal */
  return p;
}

static int teardown(void **state) {
  for (int i = 0; i < 2; i++)
    tp_cleanup(&proxies[i]);
  memset(proxies, 0, sizeof(proxies));
  nproxies = 0;
  int rc = ct_teardown(state);
#if UVMQTT_HAVE_TLS
  if (certs[0])
    tt_certs_remove(certs);
#endif
  certs[0] = '\0';
  if (sockdir[0])
    tu_rmtree(sockdir);
  sockdir[0] = '\0';
  return rc;
}

#if UVMQTT_HAVE_TLS && UVMQTT_HAVE_WS
static uvmqtt_tls_config_t *tls_config(void) {
  uvmqtt_tls_config_t *t = NULL;
  assert_int_equal(uvmqtt_tls_config_new(&t), 0);
  assert_int_equal(uvmqtt_tls_config_set_ca_file(t, tt_path(certs, "ca.crt")),
                   0);
  return t;
}
#endif

/* A client through `proxy_url` (NULL: direct) to `uri`, connected. */
static void client(ct_client_t *t, uv_loop_t *loop, const char *name,
                   const char *proxy_url, const char *uri,
                   uvmqtt_tls_config_t *tls) {
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, NULL, true);
  /* mosquitto 2.0.11 loses QoS 2 beyond its max_inflight_messages. */
  assert_int_equal(uvmqtt_options_set_max_inflight(o, 10), 0);
  assert_int_equal(uvmqtt_options_set_connect_timeout(o, 5000), 0);
  if (proxy_url)
    assert_int_equal(uvmqtt_options_set_proxy(o, proxy_url), 0);
  if (tls)
    assert_int_equal(uvmqtt_options_set_tls(o, tls, false), 0);
  ct_client_init(t, loop, o, name);
  uvmqtt_options_del(o);
  assert_int_equal(uvmqtt_client_connect_uri(t->c, uri), 0);
}

/* QoS 0, 1 and 2 from pub to sub: each message once, in order, with every
 * publish callback fired once with status 0. */
static void round_trip(ct_client_t *sub, ct_client_t *pub, const char *tag) {
  char topic[96];
  snprintf(topic, sizeof(topic), "reach/%s", tag);
  ct_subscribe(sub, topic, 2);
  size_t base = sub->nmsgs;
  ct_pub_t done[3 * N];
  memset(done, 0, sizeof(done));
  for (int i = 0; i < 3 * N; i++) {
    char payload[64];
    int len = snprintf(payload, sizeof(payload), "%s-%d", tag, i);
    int id = uvmqtt_publish(pub->c, topic, payload, (size_t)len, i / N, false,
                            ct_pub_cb, &done[i]);
    assert_true(id >= 0);
  }
  assert_int_equal(
      ct_wait_size(sub->loop, &sub->nmsgs, base + 3 * N, CT_WAIT_MS), 0);
  tu_run_for(sub->loop, 100); /* duplicates, if any, show up */
  assert_int_equal(sub->nmsgs, base + 3 * N);
  /* mosquitto forwards QoS 2 on PUBREL: order holds within a QoS. */
  int next[3] = {0, N, 2 * N};
  for (size_t i = base; i < sub->nmsgs; i++) {
    int q = sub->msgs[i].qos;
    char want[64];
    snprintf(want, sizeof(want), "%s-%d", tag, next[q]++);
    assert_string_equal(sub->msgs[i].payload, want);
  }
  assert_int_equal(next[0], N);
  assert_int_equal(next[1], 2 * N);
  assert_int_equal(next[2], 3 * N);
  for (int i = 0; i < 3 * N; i++) {
    assert_int_equal(ct_wait_int(pub->loop, &done[i].calls, 1, CT_WAIT_MS), 0);
    assert_int_equal(done[i].calls, 1);
    assert_int_equal(done[i].status, 0);
  }
}

static void close_all(uv_loop_t *loop, ct_client_t *a, ct_client_t *b) {
  ct_close(a);
  if (b)
    ct_close(b);
  assert_int_equal(tu_loop_close(loop, 3000), 0);
  ct_client_free(a);
  if (b)
    ct_client_free(b);
}

/* Both clients through the proxy, to the broker's plain listener. */
static void through(const tp_proxy_t *p, const char *proxy_url,
                    const char *host, int port, const char *tag) {
  int before = tp_tunnels(p);
  uv_loop_t loop;
  ct_client_t sub, pub;
  char uri[128];
  assert_int_equal(uv_loop_init(&loop), 0);
  snprintf(uri, sizeof(uri), "mqtt://%s:%d", host, port);
  client(&sub, &loop, "sub", proxy_url, uri, NULL);
  client(&pub, &loop, "pub", proxy_url, uri, NULL);
  ct_wait_connected(&sub, 1);
  ct_wait_connected(&pub, 1);
  round_trip(&sub, &pub, tag);
  close_all(&loop, &sub, &pub);
  /* Both went through the proxy, not around it. */
  assert_int_equal(tp_tunnels(p) - before, 2);
}

/* A client that must fail with `want` and not retry (a final error), or
 * retry (retryable: more attempts come). */
static void refused(const char *proxy_url, const char *uri, int want,
                    bool final) {
  uv_loop_t loop;
  ct_client_t t;
  assert_int_equal(uv_loop_init(&loop), 0);
  client(&t, &loop, "refused", proxy_url, uri, NULL);
  assert_int_equal(ct_wait_int(&loop, &t.connect_fails, 1, CT_WAIT_MS), 0);
  assert_int_equal(t.last_connect_status, want);
  assert_int_equal(t.connected, 0);
  tu_run_for(&loop, 700); /* the reconnect backoff is 100..500 ms */
  if (final)
    assert_int_equal(t.connect_fails, 1);
  else
    assert_true(t.connect_fails > 1);
  close_all(&loop, &t, NULL);
}

/* ---- HTTP CONNECT: tinyproxy --------------------------------------------- */

static void tinyproxy_qos(void **state) {
  (void)state;
  brk_t k;
  broker(&k, false);
  char extra[64];
  snprintf(extra, sizeof(extra), "ConnectPort %d\n", k.b->port);
  tp_proxy_t *p = proxy(TP_TINYPROXY, NULL, NULL, extra);
  through(p, tp_url(p, "http"), "127.0.0.1", k.b->port, "tinyproxy");
  /* A target outside ConnectPort: 403, final. */
  char uri[64];
  snprintf(uri, sizeof(uri), "mqtt://127.0.0.1:%d", k.ws);
  refused(tp_url(p, "http"), uri, UVMQTT_EPROXY_STATUS, true);
}

static void tinyproxy_auth_qos(void **state) {
  (void)state;
  brk_t k;
  broker(&k, false);
  tp_proxy_t *p = proxy(TP_TINYPROXY, "user", "pa-ss", NULL);
  /* The URL's credentials are %-decoded. */
  char url[128];
  snprintf(url, sizeof(url), "http://user:pa%%2Dss@127.0.0.1:%d", p->port);
  through(p, url, "localhost", k.b->port, "tinyproxy-auth");
  char uri[64];
  snprintf(uri, sizeof(uri), "mqtt://localhost:%d", k.b->port);
  snprintf(url, sizeof(url), "http://user:wrong@127.0.0.1:%d", p->port);
  refused(url, uri, UVMQTT_EPROXY_AUTH, true);
  snprintf(url, sizeof(url), "http://127.0.0.1:%d", p->port);
  refused(url, uri, UVMQTT_EPROXY_AUTH, true);
}

/* mqtts://, ws:// and wss:// inside the tunnel, the certificate checked
 * against the broker's name (localhost), not the proxy's. */
static void tinyproxy_tls_ws(void **state) {
  (void)state;
#if UVMQTT_HAVE_TLS && UVMQTT_HAVE_WS
  brk_t k;
  broker(&k, true);
  tp_proxy_t *p = proxy(TP_TINYPROXY, "user", "pass", NULL);
  uvmqtt_tls_config_t *tls = tls_config();
  uv_loop_t loop;
  ct_client_t sub, pub, ws;
  char u1[96], u2[96], u3[96];
  snprintf(u1, sizeof(u1), "mqtts://localhost:%d", k.tls);
  snprintf(u2, sizeof(u2), "wss://localhost:%d/mqtt", k.wss);
  snprintf(u3, sizeof(u3), "ws://localhost:%d/mqtt", k.ws);
  assert_int_equal(uv_loop_init(&loop), 0);
  client(&sub, &loop, "mqtts", tp_url(p, "http"), u1, tls);
  client(&pub, &loop, "wss", tp_url(p, "http"), u2, tls);
  client(&ws, &loop, "ws", tp_url(p, "http"), u3, NULL);
  ct_wait_connected(&sub, 1);
  ct_wait_connected(&pub, 1);
  ct_wait_connected(&ws, 1);
  round_trip(&sub, &pub, "mqtts-wss");
  round_trip(&ws, &sub, "ws-mqtts");
  ct_close(&ws);
  ct_client_free(&ws);
  close_all(&loop, &sub, &pub);
  uvmqtt_tls_config_free(tls);
  /* The proxy saw CONNECTs to the broker's TLS and WebSocket ports. */
  char needle[64];
  snprintf(needle, sizeof(needle), "localhost:%d", k.wss);
  FILE *f = fopen(p->log, "r");
  assert_non_null(f);
  char line[512];
  int seen = 0;
  while (fgets(line, sizeof(line), f))
    seen |= strstr(line, needle) != NULL;
  fclose(f);
  assert_true(seen);
#else
  skip();
#endif
}

/* ---- SOCKS5: microsocks, danted ------------------------------------------ */

static void microsocks_qos(void **state) {
  (void)state;
  brk_t k;
  broker(&k, false);
  tp_proxy_t *p = proxy(TP_MICROSOCKS, NULL, NULL, NULL);
  /* socks5h: the proxy resolves localhost; socks5: we do. */
  char name[64], addr[64];
  snprintf(name, sizeof(name), "connected to localhost:%d", k.b->port);
  snprintf(addr, sizeof(addr), "connected to 127.0.0.1:%d", k.b->port);
  through(p, tp_url(p, "socks5h"), "localhost", k.b->port, "socks5h");
  assert_int_equal(tp_log_count(p, name), 2);
  through(p, tp_url(p, "socks5"), "localhost", k.b->port, "socks5");
  assert_int_equal(tp_log_count(p, name), 2);
  assert_int_equal(tp_log_count(p, addr), 2); /* resolved here */
  char uri[64];
  snprintf(uri, sizeof(uri), "mqtt://127.0.0.1:%d", tu_free_port());
  refused(tp_url(p, "socks5h"), uri, UVMQTT_ESOCKS_REFUSED, false);
}

static void microsocks_auth_qos(void **state) {
  (void)state;
  brk_t k;
  broker(&k, false);
  tp_proxy_t *p = proxy(TP_MICROSOCKS, "user", "secret", NULL);
  through(p, tp_url(p, "socks5h"), "localhost", k.b->port, "socks5-auth");
  char uri[64], url[96];
  snprintf(uri, sizeof(uri), "mqtt://localhost:%d", k.b->port);
  snprintf(url, sizeof(url), "socks5h://user:nope@127.0.0.1:%d", p->port);
  refused(url, uri, UVMQTT_EPROXY_AUTH, true);
  snprintf(url, sizeof(url), "socks5h://127.0.0.1:%d", p->port);
  refused(url, uri, UVMQTT_EPROXY_AUTH, true);
}

static void dante_qos(void **state) {
  (void)state;
  brk_t k;
  broker(&k, false);
  char extra[128];
  snprintf(extra, sizeof(extra),
           "socks block { from: 0.0.0.0/0 to: 127.0.0.1/32 port = %d }\n",
           k.ws);
  tp_proxy_t *p = proxy(TP_DANTE, NULL, NULL, extra);
  through(p, tp_url(p, "socks5h"), "localhost", k.b->port, "dante");
  char uri[64];
  snprintf(uri, sizeof(uri), "mqtt://127.0.0.1:%d", k.ws);
  refused(tp_url(p, "socks5h"), uri, UVMQTT_ESOCKS_NOTALLOWED, true);
}

/* ---- failures and restarts ----------------------------------------------- */

/* A proxy that accepts and never answers: the connect timeout ends the
 * attempt, and attempts go on. */
static void proxy_hangs(void **state) {
  (void)state;
  uv_loop_t loop;
  ct_peer_t peer;
  ct_client_t t;
  assert_int_equal(uv_loop_init(&loop), 0);
  ct_peer_start(&loop, &peer, NULL, 0);
  char url[64];
  snprintf(url, sizeof(url), "socks5h://127.0.0.1:%d", peer.port);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, NULL, true);
  assert_int_equal(uvmqtt_options_set_connect_timeout(o, 400), 0);
  assert_int_equal(uvmqtt_options_set_proxy(o, url), 0);
  ct_client_init(&t, &loop, o, "hang");
  uvmqtt_options_del(o);
  uint64_t t0 = tu_now_ms();
  assert_int_equal(uvmqtt_client_connect_uri(t.c, "mqtt://broker.invalid"), 0);
  assert_int_equal(ct_wait_int(&loop, &t.connect_fails, 1, CT_WAIT_MS), 0);
  uint64_t ms = tu_now_ms() - t0;
  assert_int_equal(t.last_connect_status, UVMQTT_ETIMEDOUT);
  assert_true(ms >= 350 && ms < 2000);
  assert_true(peer.rx_len >= 3); /* the SOCKS greeting */
  assert_memory_equal(peer.rx, "\x05\x01\x00", 3);
  ct_close(&t);
  ct_peer_stop(&peer);
  assert_int_equal(tu_loop_close(&loop, 3000), 0);
  ct_client_free(&t);
}

/* The proxy goes away under connected clients and comes back on the same
 * port: they reconnect through it and traffic flows again. */
static void restart_through(tp_kind_t kind, const char *scheme) {
  brk_t k;
  broker(&k, false);
  tp_proxy_t *p = proxy(kind, NULL, NULL, NULL);
  uv_loop_t loop;
  ct_client_t sub, pub;
  char uri[64];
  snprintf(uri, sizeof(uri), "mqtt://localhost:%d", k.b->port);
  assert_int_equal(uv_loop_init(&loop), 0);
  client(&sub, &loop, "sub", tp_url(p, scheme), uri, NULL);
  client(&pub, &loop, "pub", tp_url(p, scheme), uri, NULL);
  ct_wait_connected(&sub, 1);
  ct_wait_connected(&pub, 1);
  round_trip(&sub, &pub, "before");
  tp_stop(p);
  assert_int_equal(ct_wait_int(&loop, &sub.disconnects, 1, CT_WAIT_MS), 0);
  assert_int_equal(ct_wait_int(&loop, &pub.disconnects, 1, CT_WAIT_MS), 0);
  tu_run_for(&loop, 300); /* attempts fail while it is down */
  assert_int_equal(tp_restart(p), 0);
  ct_track_child(-p->pid);
  ct_wait_connected(&sub, 2);
  ct_wait_connected(&pub, 2);
  round_trip(&sub, &pub, "after");
  close_all(&loop, &sub, &pub);
  assert_int_equal(tp_tunnels(p), 4);
}

static void proxy_restart(void **state) {
  (void)state;
  restart_through(TP_MICROSOCKS, "socks5h");
}

static void proxy_restart_http(void **state) {
  (void)state;
  restart_through(TP_TINYPROXY, "http");
}

/* ---- unix-domain sockets ------------------------------------------------- */

static void unix_qos_restart(void **state) {
  (void)state;
  brk_t k;
  broker(&k, false);
  uv_loop_t loop;
  ct_client_t sub, pub;
  char uri[400];
  snprintf(uri, sizeof(uri), "unix://%s", k.sock);
  assert_int_equal(uv_loop_init(&loop), 0);
  client(&sub, &loop, "sub", NULL, uri, NULL);
  /* A proxy is never used for a unix socket. */
  client(&pub, &loop, "pub", "socks5h://127.0.0.1:1", uri, NULL);
  ct_wait_connected(&sub, 1);
  ct_wait_connected(&pub, 1);
  round_trip(&sub, &pub, "unix");
  assert_int_equal(tu_broker_restart(k.b), 0);
  ct_wait_connected(&sub, 2);
  ct_wait_connected(&pub, 2);
  round_trip(&sub, &pub, "unix-again");
  close_all(&loop, &sub, &pub);
  /* No socket there: ENOENT, retried (the broker may be starting). */
  snprintf(uri, sizeof(uri), "unix://%s.none", k.sock);
  refused(NULL, uri, UV_ENOENT, false);
}

/* Failover lists mix unix sockets and TCP, both ways. */
static void unix_failover(void **state) {
  (void)state;
  brk_t k;
  broker(&k, false);
  char none[400], sock[400], tcp[64], dead[64];
  snprintf(none, sizeof(none), "unix://%s.none", k.sock);
  snprintf(sock, sizeof(sock), "unix://%s", k.sock);
  snprintf(tcp, sizeof(tcp), "mqtt://127.0.0.1:%d", k.b->port);
  snprintf(dead, sizeof(dead), "mqtt://127.0.0.1:%d", tu_free_port());
  const char *lists[2][2] = {{none, tcp}, {dead, sock}};
  for (int i = 0; i < 2; i++) {
    uv_loop_t loop;
    ct_client_t t;
    assert_int_equal(uv_loop_init(&loop), 0);
    uvmqtt_options_t *o = ct_opts(UVMQTT_V311, NULL, true);
    ct_client_init(&t, &loop, o, "failover");
    uvmqtt_options_del(o);
    assert_int_equal(uvmqtt_client_connect_uris(t.c, lists[i], 2), 0);
    ct_wait_connected(&t, 1);
    assert_int_equal(t.connect_fails, 0); /* the list moved on at once */
    close_all(&loop, &t, NULL);
  }
}

/* A scripted broker on a unix socket (mosquitto 2.0.11 listens on
 * neither an abstract name nor, for WebSocket, a unix socket): it answers
 * a WebSocket upgrade when asked to, and the first MQTT bytes after it
 * with a CONNACK. */
typedef struct {
  uv_pipe_t lis, conn;
  int ws, accepted, upgraded, connacked, closed;
  char req[2048];
  size_t req_len;
} ux_t;

static void ux_send(ux_t *u, const void *b, size_t n) {
  assert_int_equal(tu_write_copy((uv_stream_t *)&u->conn, b, n), 0);
}

static void ux_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  ux_t *u = st->data;
  static const uint8_t connack[] = {0x20, 2, 0, 0};
  if (n > 0 && u->ws && !u->upgraded) {
    size_t take = (size_t)n < sizeof(u->req) - 1 - u->req_len
                      ? (size_t)n
                      : sizeof(u->req) - 1 - u->req_len;
    memcpy(u->req + u->req_len, b->base, take);
    u->req_len += take;
    u->req[u->req_len] = '\0';
#if UVMQTT_HAVE_WS
    char key[64], accept[29], reply[256];
    if (strstr(u->req, "\r\n\r\n") &&
        wh_header(u->req, "Sec-WebSocket-Key", key, sizeof(key)) == 0) {
      wh_accept(key, strlen(key), accept);
      int len = snprintf(reply, sizeof(reply),
                         "HTTP/1.1 101 Switching Protocols\r\n"
                         "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Accept: %s\r\n"
                         "Sec-WebSocket-Protocol: mqtt\r\n\r\n",
                         accept);
      ux_send(u, reply, (size_t)len);
      u->upgraded = 1;
    }
#endif
  } else if (n > 0 && !u->connacked) {
    u->connacked = 1;
#if UVMQTT_HAVE_WS
    if (u->ws) {
      uint8_t f[16];
      ux_send(u, f, wh_frame(f, 1, 0x2, connack, sizeof(connack)));
    } else
#endif
      ux_send(u, connack, sizeof(connack));
  }
  free(b->base);
}

static void ux_accept(uv_stream_t *l, int status) {
  ux_t *u = l->data;
  assert_int_equal(status, 0);
  assert_int_equal(u->accepted, 0);
  assert_int_equal(uv_pipe_init(l->loop, &u->conn, 0), 0);
  u->conn.data = u;
  assert_int_equal(uv_accept(l, (uv_stream_t *)&u->conn), 0);
  assert_int_equal(uv_read_start((uv_stream_t *)&u->conn, tu_alloc_cb, ux_read),
                   0);
  u->accepted = 1;
}

static void ux_closed(uv_handle_t *h) {
  ((ux_t *)h->data)->closed++;
}

/* Listens on `name`: a path, or "@name" (abstract). */
static void ux_start(uv_loop_t *loop, ux_t *u, const char *name) {
  assert_int_equal(uv_pipe_init(loop, &u->lis, 0), 0);
  u->lis.data = u;
  int fd = tu_unix_bound_socket(name);
  assert_true(fd >= 0);
  assert_int_equal(uv_pipe_open(&u->lis, fd), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&u->lis, 4, ux_accept), 0);
}

static void ux_stop(uv_loop_t *loop, ux_t *u) {
  int want = 1 + u->accepted;
  uv_close((uv_handle_t *)&u->lis, ux_closed);
  if (u->accepted)
    uv_close((uv_handle_t *)&u->conn, ux_closed);
  assert_int_equal(ct_wait_int(loop, &u->closed, want, CT_WAIT_MS), 0);
}

/* unix://@name (the Linux abstract namespace) and ws+unix:///path. */
static void unix_abstract_ws(void **state) {
  (void)state;
  uv_loop_t loop;
  ct_client_t t;
  ux_t u;
  char name[64], uri[400];
  assert_int_equal(uv_loop_init(&loop), 0);
  memset(&u, 0, sizeof(u));
  snprintf(name, sizeof(name), "@uvmqtt-reach-%d", (int)getpid());
  ux_start(&loop, &u, name);
  snprintf(uri, sizeof(uri), "unix://%s", name);
  client(&t, &loop, "abstract", NULL, uri, NULL);
  ct_wait_connected(&t, 1);
  ct_close(&t);
  ux_stop(&loop, &u);
  assert_int_equal(tu_loop_close(&loop, 3000), 0);
  ct_client_free(&t);
#if UVMQTT_HAVE_WS
  assert_int_equal(uv_loop_init(&loop), 0);
  memset(&u, 0, sizeof(u));
  u.ws = 1;
  assert_int_equal(tu_tmpdir(sockdir, sizeof(sockdir)), 0);
  char path[320];
  snprintf(path, sizeof(path), "%s/ws.sock", sockdir);
  ux_start(&loop, &u, path);
  snprintf(uri, sizeof(uri), "ws+unix://%s", path);
  client(&t, &loop, "ws-unix", NULL, uri, NULL);
  ct_wait_connected(&t, 1);
  assert_non_null(strstr(u.req, "GET /mqtt HTTP/1.1\r\n"));
  assert_non_null(strstr(u.req, "\r\nHost: localhost\r\n"));
  ct_close(&t);
  ux_stop(&loop, &u);
  assert_int_equal(tu_loop_close(&loop, 3000), 0);
  ct_client_free(&t);
#endif
}

/* ---- configuration ------------------------------------------------------- */

static void proxy_env(void **state) {
  (void)state;
  brk_t k;
  broker(&k, false);
  char dead[64], uri[64], np[160];
  snprintf(dead, sizeof(dead), "socks5h://127.0.0.1:%d", tu_free_port());
  snprintf(uri, sizeof(uri), "mqtt://127.0.0.1:%d", k.b->port);
  setenv("all_proxy", dead, 1);
  unsetenv("no_proxy");
  unsetenv("NO_PROXY");
  /* Off by default: the environment changes nothing. */
  uv_loop_t loop;
  ct_client_t t;
  assert_int_equal(uv_loop_init(&loop), 0);
  client(&t, &loop, "direct", NULL, uri, NULL);
  ct_wait_connected(&t, 1);
  close_all(&loop, &t, NULL);
  /* Asked for: the (dead) proxy is used. */
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, NULL, true);
  assert_int_equal(uvmqtt_options_set_proxy_from_env(o, true), 0);
  ct_client_init(&t, &loop, o, "env");
  assert_int_equal(uvmqtt_client_connect_uri(t.c, uri), 0);
  assert_int_equal(ct_wait_int(&loop, &t.connect_fails, 1, CT_WAIT_MS), 0);
  assert_int_equal(t.last_connect_status, UV_ECONNREFUSED);
  close_all(&loop, &t, NULL);
  /* no_proxy exempts the broker (a domain suffix elsewhere in the list). */
  snprintf(np, sizeof(np), "example.com, .other.org,127.0.0.1:%d", k.b->port);
  setenv("NO_PROXY", np, 1);
  assert_int_equal(uv_loop_init(&loop), 0);
  ct_client_init(&t, &loop, o, "noproxy");
  assert_int_equal(uvmqtt_client_connect_uri(t.c, uri), 0);
  ct_wait_connected(&t, 1);
  close_all(&loop, &t, NULL);
  uvmqtt_options_del(o);
  unsetenv("all_proxy");
  unsetenv("NO_PROXY");
}

static void proxy_urls(void **state) {
  (void)state;
  uvmqtt_options_t *o = NULL;
  assert_int_equal(uvmqtt_options_new(&o), 0);
  assert_int_equal(uvmqtt_options_set_proxy(o, "http://u:p@[::1]:3128"), 0);
  assert_int_equal(uvmqtt_options_set_proxy(o, "socks5://h"), 0);
  assert_int_equal(uvmqtt_options_set_proxy(o, "socks5h://h:1080/"), 0);
  assert_int_equal(uvmqtt_options_set_proxy(o, NULL), 0);
  assert_int_equal(uvmqtt_options_set_proxy(o, ""), 0);
  assert_int_equal(uvmqtt_options_set_proxy(o, "mqtt://h"), UVMQTT_EURI);
  assert_int_equal(uvmqtt_options_set_proxy(o, "socks4://h"), UVMQTT_EURI);
  assert_int_equal(uvmqtt_options_set_proxy(o, "http://h:0"), UVMQTT_EURI);
  assert_int_equal(uvmqtt_options_set_proxy(NULL, "http://h"), UVMQTT_EINVAL);
  uv_loop_t loop;
  ct_client_t t;
  assert_int_equal(uv_loop_init(&loop), 0);
  ct_client_init(&t, &loop, o, "urls");
  /* A proxy's scheme is not a broker's; a unix URI needs a path. */
  assert_int_equal(uvmqtt_client_connect_uri(t.c, "socks5h://h"), UVMQTT_EURI);
  assert_int_equal(uvmqtt_client_connect_uri(t.c, "http://h"), UVMQTT_EURI);
  assert_int_equal(uvmqtt_client_connect_uri(t.c, "unix://"), UVMQTT_EURI);
  ct_close(&t);
  assert_int_equal(tu_loop_close(&loop, 3000), 0);
  ct_client_free(&t);
  uvmqtt_options_del(o);
}

#define T(f) cmocka_unit_test_teardown(f, teardown)

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      T(tinyproxy_qos),    T(tinyproxy_auth_qos),  T(tinyproxy_tls_ws),
      T(microsocks_qos),   T(microsocks_auth_qos), T(dante_qos),
      T(proxy_hangs),      T(proxy_restart),       T(proxy_restart_http),
      T(unix_qos_restart), T(unix_failover),       T(proxy_env),
      T(proxy_urls),       T(unix_abstract_ws),
  };
  ct_install_signal_handlers();
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
