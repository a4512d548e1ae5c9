/* The delivery contract against mosquitto: what a subscriber was handed is
 * acknowledged before it leaves (disconnect or close from inside a message
 * callback), nothing is delivered twice or lost across a resume, manual
 * acknowledgement, back-pressure and the graceful drain of publishes. */
#include "ctest.h"
#include "uvmqtt_config.h"
#ifdef DELIVERY_TLS
#include "certs.h" /* built from test/tls/meson.build with its certificates */
#endif

#include <signal.h>

/* The transport of the stop-and-resume cases. */
enum { T_TCP = 0, T_WS, T_TLS };
static int g_transport;
static uvmqtt_tls_config_t *g_tls; /* T_TLS: trusts the test CA */
static bool g_reconnect;           /* subscribers reconnect by themselves */

#define N_TOTAL 2000
#define N_STOP 1000

/* mosquitto keeps the whole backlog for the offline session (its default
 * of 1000 would drop half), and its window stays what our publisher's is
 * (mosquitto 2.0.11 loses QoS 2 messages on 3.1.1 when a client keeps
 * more in flight than max_inflight_messages). */
static const char *broker_conf = "max_queued_messages 10000\n"
                                 "max_inflight_messages 20\n";

/* A subscriber that counts each payload index it is handed. */
typedef struct {
  uvmqtt_client_t *c;
  uv_loop_t *loop;
  const char *name;
  uint16_t seen[N_TOTAL];
  size_t delivered;   /* message callbacks */
  size_t after_leave; /* message callbacks after it asked to leave */
  size_t stop_at;     /* leave from inside the callback of this one */
  int leave_how;      /* 0 none, 1 disconnect, 2 close, 3 both */
  bool left;          /* asked to leave */
  int connected;
  int disconnects;
  int closed;
  int bad_payloads;
  /* manual acknowledgement */
  bool manual;
  uint64_t *pending; /* handles not yet acknowledged */
  size_t npending, cappending;
  size_t max_unacked_seen;
  int paused_seen;
  int ack_errors;
} sub_t;

static void sub_on_connect(uvmqtt_client_t *c, int status,
                           const uvmqtt_connack_t *ack, void *arg) {
  sub_t *s = arg;
  (void)c;
  (void)ack;
  if (status == 0)
    s->connected++;
}

static void sub_on_disconnect(uvmqtt_client_t *c, int status,
                              const uvmqtt_reason_t *r, void *arg) {
  sub_t *s = arg;
  (void)c;
  (void)status;
  (void)r;
  s->disconnects++;
}

static void sub_on_log(uvmqtt_client_t *c, int level, const char *msg,
                       void *arg) {
  sub_t *s = arg;
  (void)c;
  fprintf(stderr, "[%s] log %d: %s\n", s->name, level, msg);
}

static void sub_on_closed(uvmqtt_client_t *c) {
  sub_t *s = uvmqtt_client_get_data(c);
  s->closed = 1;
}

static int payload_index(const uvmqtt_message_t *m) {
  char buf[16];
  if (m->payload_len == 0 || m->payload_len >= sizeof(buf))
    return -1;
  memcpy(buf, m->payload, m->payload_len);
  buf[m->payload_len] = '\0';
  int i = atoi(buf);
  return i >= 0 && i < N_TOTAL ? i : -1;
}

static void sub_on_message(uvmqtt_client_t *c, const uvmqtt_message_t *m,
                           void *arg) {
  sub_t *s = arg;
  if (s->left)
    s->after_leave++;
  s->delivered++;
  int i = payload_index(m);
  if (i < 0) {
    s->bad_payloads++;
    return;
  }
  s->seen[i]++;
  if (s->manual && m->qos > 0) {
    assert_true(m->ack_handle != 0);
    if (s->npending == s->cappending) {
      s->cappending = s->cappending ? s->cappending * 2 : 256;
      s->pending = realloc(s->pending, s->cappending * sizeof(uint64_t));
      assert_non_null(s->pending);
    }
    s->pending[s->npending++] = m->ack_handle;
    size_t un = uvmqtt_client_get_unacked(c);
    if (un > s->max_unacked_seen)
      s->max_unacked_seen = un;
  } else {
    assert_int_equal(m->ack_handle, 0);
  }
  if (s->leave_how && !s->left && s->delivered == s->stop_at) {
    s->left = true;
    if (s->leave_how != 2)
      assert_int_equal(uvmqtt_client_disconnect(c), 0);
    if (s->leave_how != 1)
      uvmqtt_client_close(c, sub_on_closed);
    /* Work asked for while leaving waits: nothing may follow DISCONNECT
     * on this connection. */
    if (s->leave_how == 1)
      assert_true(
          uvmqtt_publish(c, "late/x", "late", 4, 1, false, NULL, NULL) >= 0);
  }
}

static void sub_init_ex(sub_t *s, uv_loop_t *loop, int version, const char *id,
                        const char *name, uint32_t manual_max, uint16_t rmax) {
  memset(s, 0, sizeof(*s));
  s->loop = loop;
  s->name = name;
  uvmqtt_options_t *o = ct_opts(version, id, false);
  uvmqtt_options_set_reconnect(o, g_reconnect, 50, 200, 0);
  if (g_tls)
    assert_int_equal(uvmqtt_options_set_tls(o, g_tls, false), 0);
  if (manual_max != UINT32_MAX) {
    s->manual = true;
    assert_int_equal(uvmqtt_options_set_manual_ack(o, true, manual_max, 0), 0);
  }
  if (rmax)
    assert_int_equal(uvmqtt_options_set_receive_maximum(o, rmax), 0);
  assert_int_equal(uvmqtt_client_new(loop, o, &s->c), 0);
  uvmqtt_options_del(o);
  uvmqtt_client_set_data(s->c, s);
  uvmqtt_client_on_connect(s->c, sub_on_connect, s);
  uvmqtt_client_on_disconnect(s->c, sub_on_disconnect, s);
  uvmqtt_client_on_message(s->c, sub_on_message, s);
  if (getenv("CT_VERBOSE"))
    uvmqtt_client_on_log(s->c, sub_on_log, s, UVMQTT_LOG_DEBUG);
}

static void sub_init(sub_t *s, uv_loop_t *loop, int version, const char *id,
                     const char *name) {
  sub_init_ex(s, loop, version, id, name, UINT32_MAX, 0);
}

static void sub_free(sub_t *s) {
  free(s->pending);
  s->pending = NULL;
}

static void sub_close(sub_t *s) {
  if (s->closed || (s->left && s->leave_how >= 2)) {
    assert_int_equal(ct_wait_int(s->loop, &s->closed, 1, CT_WAIT_MS), 0);
    return;
  }
  uvmqtt_client_close(s->c, sub_on_closed);
  assert_int_equal(ct_wait_int(s->loop, &s->closed, 1, CT_WAIT_MS), 0);
}

/* Subscribes and waits for the SUBACK, which must grant `qos`. */
static void sub_subscribe(sub_t *s, const char *filter, int qos) {
  ct_sub_t sa;
  memset(&sa, 0, sizeof(sa));
  assert_true(uvmqtt_subscribe(s->c, filter, qos, ct_sub_cb, &sa) > 0);
  assert_int_equal(ct_wait_int(s->loop, &sa.calls, 1, CT_WAIT_MS), 0);
  assert_int_equal(sa.status, 0);
  assert_int_equal(sa.codes[0], qos);
}

/* Connects over TCP (tport 0) or the case's transport on tport. */
static void sub_connect(sub_t *s, int port, int tport) {
  if (!tport) {
    assert_int_equal(uvmqtt_client_connect(s->c, "127.0.0.1", port), 0);
    return;
  }
  char uri[64];
  snprintf(uri, sizeof(uri),
           g_transport == T_TLS ? "mqtts://127.0.0.1:%d"
                                : "ws://127.0.0.1:%d/mqtt",
           tport);
  assert_int_equal(uvmqtt_client_connect_uri(s->c, uri), 0);
}

static tu_broker_t *broker_with_ws(int *ws_port) {
  char extra[512];
  *ws_port = tu_free_port();
  snprintf(extra, sizeof(extra),
           "%slistener %d 127.0.0.1\nprotocol websockets\n", broker_conf,
           *ws_port);
  tu_broker_t *b = ct_broker(extra);
  assert_int_equal(tu_wait_port(*ws_port, 5000), 0);
  return b;
}

#ifdef DELIVERY_TLS
/* mosquitto with one TLS listener (server.crt, for 127.0.0.1) beside the
 * plain one, and a client configuration that trusts its CA. */
static char g_cert_dir[256];

static tu_broker_t *broker_with_tls(int *tls_port) {
  char extra[2048];
  assert_int_equal(tt_certs_make(g_cert_dir, sizeof(g_cert_dir)), 0);
  *tls_port = tu_free_port();
  snprintf(extra, sizeof(extra),
           "%slistener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n",
           broker_conf, *tls_port, tt_path(g_cert_dir, "ca.crt"),
           tt_path(g_cert_dir, "server.crt"),
           tt_path(g_cert_dir, "server.key"));
  tu_broker_t *b = ct_broker(extra);
  assert_int_equal(tu_wait_port(*tls_port, 5000), 0);
  assert_int_equal(uvmqtt_tls_config_new(&g_tls), 0);
  assert_int_equal(
      uvmqtt_tls_config_set_ca_file(g_tls, tt_path(g_cert_dir, "ca.crt")), 0);
  return b;
}
#endif

static bool sub_quiet_since(sub_t *s, size_t *last, uint64_t *since,
                            unsigned quiet_ms) {
  uint64_t now = tu_now_ms();
  if (s->delivered != *last) {
    *last = s->delivered;
    *since = now;
  }
  return now - *since >= quiet_ms;
}

/* Runs until `s` has seen every index at least once and nothing new came
 * for quiet_ms (late duplicates would still show), or timeout_ms. */
static void wait_all_then_quiet(sub_t *s, const uint16_t *before,
                                unsigned quiet_ms, unsigned timeout_ms) {
  uint64_t end = tu_now_ms() + timeout_ms, since = tu_now_ms();
  size_t last = s->delivered;
  while (tu_now_ms() < end) {
    uv_run(s->loop, UV_RUN_NOWAIT);
    bool all = true;
    for (int i = 0; i < N_TOTAL && all; i++)
      all = before[i] + s->seen[i] > 0;
    if (all && sub_quiet_since(s, &last, &since, quiet_ms))
      return;
    if (!all)
      sub_quiet_since(s, &last, &since, quiet_ms);
    uv_sleep(1);
  }
}

static void publish_all(uv_loop_t *loop, int port, int version, int qos,
                        const char *prefix) {
  ct_client_t p;
  uvmqtt_options_t *o = ct_opts(version, NULL, true);
  ct_client_init(&p, loop, o, "pub");
  uvmqtt_options_del(o);
  ct_connect(&p, port);
  ct_wait_connected(&p, 1);
  static ct_pub_t pubs[N_TOTAL];
  memset(pubs, 0, sizeof(pubs));
  char topic[64];
  snprintf(topic, sizeof(topic), "%s/x", prefix);
  for (int i = 0; i < N_TOTAL; i++) {
    char payload[16];
    int n = snprintf(payload, sizeof(payload), "%d", i);
    assert_true(uvmqtt_publish(p.c, topic, payload, (size_t)n, qos, false,
                               ct_pub_cb, &pubs[i]) > 0);
  }
  for (int i = 0; i < N_TOTAL; i++) {
    assert_int_equal(ct_wait_int(loop, &pubs[i].calls, 1, CT_WAIT_MS), 0);
    assert_int_equal(pubs[i].status, 0);
  }
  ct_close(&p);
  ct_client_free(&p);
}

/* Queues N_TOTAL messages for a persistent session; a first subscriber
 * takes N_STOP and leaves from inside the callback of the last one; a
 * second one resumes the session. Counts what came twice and what never
 * came. */
static void run_stop_resume(int version, int qos, int leave_how, int tr) {
  int ws_port = 0;
  g_transport = tr;
  tu_broker_t *b;
#ifdef DELIVERY_TLS
  if (tr == T_TLS)
    b = broker_with_tls(&ws_port);
  else
#endif
    b = tr == T_WS ? broker_with_ws(&ws_port) : ct_broker(broker_conf);
  uv_loop_t loop;
  char id[64], filter[64], prefix[32];
  assert_int_equal(uv_loop_init(&loop), 0);
  snprintf(prefix, sizeof(prefix), "dl%d%d%d%d", version, qos, leave_how, tr);
  snprintf(id, sizeof(id), "%s-sub", prefix);
  snprintf(filter, sizeof(filter), "%s/#", prefix);

  static sub_t s1, s2;
  sub_init(&s1, &loop, version, id, "s1");
  sub_connect(&s1, b->port, ws_port);
  assert_int_equal(ct_wait_int(&loop, &s1.connected, 1, CT_WAIT_MS), 0);
  sub_subscribe(&s1, filter, qos);
  assert_int_equal(uvmqtt_client_disconnect(s1.c), 0);
  assert_int_equal(ct_wait_int(&loop, &s1.disconnects, 1, CT_WAIT_MS), 0);

  publish_all(&loop, b->port, version, qos, prefix);

  s1.stop_at = N_STOP;
  s1.leave_how = leave_how;
  sub_connect(&s1, b->port, ws_port);
  if (leave_how == 1)
    assert_int_equal(ct_wait_int(&loop, &s1.disconnects, 2, CT_WAIT_MS), 0);
  else
    assert_int_equal(ct_wait_int(&loop, &s1.closed, 1, CT_WAIT_MS), 0);
  sub_close(&s1);

  sub_init(&s2, &loop, version, id, "s2");
  sub_connect(&s2, b->port, ws_port);
  assert_int_equal(ct_wait_int(&loop, &s2.connected, 1, CT_WAIT_MS), 0);
  wait_all_then_quiet(&s2, s1.seen, 300, 8000);
  size_t twice = 0, lost = 0;
  for (int i = 0; i < N_TOTAL; i++) {
    unsigned n = s1.seen[i] + s2.seen[i];
    if (n == 0)
      lost++;
    else
      twice += n - 1;
  }
  fprintf(stderr,
          "stop-resume%s %s qos%d %s: first %zu (%zu after leaving), second "
          "%zu, delivered twice %zu, lost %zu\n",
          tr == T_WS    ? " (ws)"
          : tr == T_TLS ? " (tls)"
                        : "",
          version == UVMQTT_V5 ? "v5" : "v311", qos,
          leave_how == 1   ? "disconnect"
          : leave_how == 2 ? "close"
                           : "disconnect+close",
          s1.delivered, s1.after_leave, s2.delivered, twice, lost);
  sub_close(&s2);
  sub_free(&s1);
  sub_free(&s2);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
#ifdef DELIVERY_TLS
  if (g_tls) { /* after the clients' close callbacks */
    uvmqtt_tls_config_free(g_tls);
    g_tls = NULL;
    tt_certs_remove(g_cert_dir);
  }
#endif
  assert_int_equal(s1.bad_payloads + s2.bad_payloads, 0);
  assert_int_equal(s1.after_leave, 0);
  assert_int_equal(s1.delivered, N_STOP);
  assert_int_equal(twice, 0);
  assert_int_equal(lost, 0);
}

#define STOP_CASE(v, vname, q, how, hname)                                     \
  static void stop_##vname##_q##q##_##hname(void **state) {                    \
    (void)state;                                                               \
    run_stop_resume(v, q, how, T_TCP);                                         \
  }
STOP_CASE(UVMQTT_V311, v311, 1, 1, disconnect)
STOP_CASE(UVMQTT_V311, v311, 2, 1, disconnect)
STOP_CASE(UVMQTT_V5, v5, 1, 1, disconnect)
STOP_CASE(UVMQTT_V5, v5, 2, 1, disconnect)
STOP_CASE(UVMQTT_V311, v311, 1, 2, close)
STOP_CASE(UVMQTT_V311, v311, 2, 2, close)
STOP_CASE(UVMQTT_V5, v5, 1, 2, close)
STOP_CASE(UVMQTT_V5, v5, 2, 2, close)
/* disconnect() then close() in the same callback, as the tools do. */
STOP_CASE(UVMQTT_V311, v311, 1, 3, both)
STOP_CASE(UVMQTT_V5, v5, 2, 3, both)

/* The same over WebSocket: the close handshake goes before the drain. */
#ifdef UVMQTT_HAVE_WS
static void stop_ws_v311_q1_disconnect(void **state) {
  (void)state;
  run_stop_resume(UVMQTT_V311, 1, 1, T_WS);
}
static void stop_ws_v5_q2_close(void **state) {
  (void)state;
  run_stop_resume(UVMQTT_V5, 2, 2, T_WS);
}
#endif

/* And over TLS: close_notify goes first (test/tls/meson.build builds this
 * file again with its certificates). */
#ifdef DELIVERY_TLS
static void stop_tls_v311_q1_disconnect(void **state) {
  (void)state;
  run_stop_resume(UVMQTT_V311, 1, 1, T_TLS);
}
static void stop_tls_v5_q2_close(void **state) {
  (void)state;
  run_stop_resume(UVMQTT_V5, 2, 2, T_TLS);
}
#endif

/* ---- the goodbye against a broker that does not close ----------------- */

/* The peer answers CONNACK and never closes: after disconnect() the
 * client has sent DISCONNECT and its FIN (half-close) at once, keeps
 * reading (what the peer sends then is not delivered), writes nothing
 * more (a publish asked for meanwhile waits in the queue), and gives up
 * at the linger time: the disconnect callback fires then, not before. */
static void leave_linger(void **state) {
  static const uint8_t connack[] = {0x20, 0x02, 0x00, 0x00};
  static const uint8_t publish[] = {0x32, 0x08, 0x00, 0x03, 'a',
                                    '/',  'b',  0x00, 0x07, 'x'};
  (void)state;
  uv_loop_t loop;
  ct_peer_t p;
  ct_client_t t;
  assert_int_equal(uv_loop_init(&loop), 0);
  ct_peer_start(&loop, &p, connack, sizeof(connack));
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, "linger", true);
  assert_int_equal(uvmqtt_options_set_reconnect(o, false, 100, 500, 0), 0);
  assert_int_equal(uvmqtt_options_set_linger(o, 600), 0);
  ct_client_init(&t, &loop, o, "linger");
  uvmqtt_options_del(o);
  ct_connect(&t, p.port);
  ct_wait_connected(&t, 1);
  size_t before = p.rx_len;
  uint64_t t0 = tu_now_ms();
  assert_int_equal(uvmqtt_client_disconnect(t.c), 0);
  assert_int_equal(ct_wait_int(&loop, &p.client_eof, 1, CT_WAIT_MS), 0);
  assert_true(tu_now_ms() - t0 < 300); /* the FIN went out at once */
  assert_int_equal(t.disconnects, 0);  /* still draining */
  assert_int_equal(p.rx_len, before + 2);
  assert_int_equal(p.rx[before], 0xE0); /* DISCONNECT, and nothing after */
  ct_peer_send(&p, publish, sizeof(publish));
  assert_true(uvmqtt_publish(t.c, "late/x", "x", 1, 1, false, NULL, NULL) >= 0);
  assert_int_equal(ct_wait_int(&loop, &t.disconnects, 1, CT_WAIT_MS), 0);
  uint64_t dt = tu_now_ms() - t0;
  assert_true(dt >= 550 && dt < 1500);
  assert_int_equal(t.last_disconnect_status, 0);
  assert_int_equal(t.nmsgs, 0);
  assert_int_equal(p.rx_len, before + 2);
  assert_int_equal(uvmqtt_client_get_queued(t.c), 1); /* kept for later */
  ct_close(&t);
  ct_peer_stop(&p);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
}

/* ---- connection faults ------------------------------------------------- */

/* A TCP forwarder between the subscriber and mosquitto that resets both
 * connections, mid-packet, each time another `cut_every` bytes went
 * towards the subscriber (0: never), at most `max_cuts` times. */
typedef struct proxy_s proxy_t;
typedef struct {
  uv_tcp_t in, out;
  proxy_t *p;
  int closing;
  bool up;
} fwd_t;

struct proxy_s {
  uv_tcp_t lis;
  uv_loop_t *loop;
  int port, target;
  size_t cut_every, down, next_cut; /* bytes towards the client, in all */
  int cuts, max_cuts, conns;
  fwd_t *cur;
  bool lis_closed;
};

static void fwd_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  (void)h;
  b->base = malloc(sz);
  b->len = b->base ? sz : 0;
}

static void fwd_closed(uv_handle_t *h) {
  fwd_t *f = h->data;
  if (--f->closing == 0) {
    if (f->p->cur == f)
      f->p->cur = NULL;
    free(f);
  }
}

static void fwd_kill(fwd_t *f) {
  if (f->closing)
    return;
  f->closing = 2;
  uv_tcp_close_reset(&f->in, fwd_closed);
  if (uv_is_active((uv_handle_t *)&f->out) || f->up)
    uv_tcp_close_reset(&f->out, fwd_closed);
  else
    uv_close((uv_handle_t *)&f->out, fwd_closed);
}

static void fwd_written(uv_write_t *w, int status) {
  (void)status;
  free(w->data);
  free(w);
}

static void fwd_send(uv_tcp_t *to, const char *data, size_t n) {
  uv_write_t *w = malloc(sizeof(*w));
  char *copy = malloc(n);
  memcpy(copy, data, n);
  w->data = copy;
  uv_buf_t b = uv_buf_init(copy, (unsigned)n);
  if (uv_write(w, (uv_stream_t *)to, &b, 1, fwd_written) != 0) {
    free(copy);
    free(w);
  }
}

static void fwd_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  fwd_t *f = st->data;
  bool down = st == (uv_stream_t *)&f->out;
  if (n < 0 || f->closing) {
    free(b->base);
    fwd_kill(f);
    return;
  }
  proxy_t *p = f->p;
  size_t len = (size_t)n;
  if (down && p->cut_every && p->cuts < p->max_cuts &&
      p->down + len >= p->next_cut) {
    /* Forward part of this read, then reset both sides. */
    size_t part = p->next_cut - p->down;
    if (part)
      fwd_send(&f->in, b->base, part);
    free(b->base);
    p->down += part;
    p->next_cut += p->cut_every;
    p->cuts++;
    fwd_kill(f);
    return;
  }
  if (len)
    fwd_send(down ? &f->in : &f->out, b->base, len);
  if (down)
    p->down += len;
  free(b->base);
}

static void fwd_connected(uv_connect_t *req, int status) {
  fwd_t *f = req->data;
  free(req);
  if (status < 0 || f->closing) {
    fwd_kill(f);
    return;
  }
  f->up = true;
  uv_read_start((uv_stream_t *)&f->in, fwd_alloc, fwd_read);
  uv_read_start((uv_stream_t *)&f->out, fwd_alloc, fwd_read);
}

static void proxy_accept(uv_stream_t *lis, int status) {
  proxy_t *p = lis->data;
  if (status < 0)
    return;
  fwd_t *f = calloc(1, sizeof(*f));
  f->p = p;
  uv_tcp_init(p->loop, &f->in);
  uv_tcp_init(p->loop, &f->out);
  f->in.data = f->out.data = f;
  if (uv_accept(lis, (uv_stream_t *)&f->in) != 0) {
    fwd_kill(f);
    return;
  }
  if (p->cur)
    fwd_kill(p->cur); /* one client at a time */
  p->cur = f;
  p->conns++;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", p->target, &a);
  uv_connect_t *req = malloc(sizeof(*req));
  req->data = f;
  if (uv_tcp_connect(req, &f->out, (struct sockaddr *)&a, fwd_connected) != 0) {
    free(req);
    fwd_kill(f);
  }
}

static void proxy_start(proxy_t *p, uv_loop_t *loop, int target) {
  memset(p, 0, sizeof(*p));
  p->loop = loop;
  p->target = target;
  p->port = tu_free_port();
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", p->port, &a);
  assert_int_equal(uv_tcp_init(loop, &p->lis), 0);
  p->lis.data = p;
  assert_int_equal(uv_tcp_bind(&p->lis, (struct sockaddr *)&a, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&p->lis, 8, proxy_accept), 0);
}

static void proxy_lis_closed(uv_handle_t *h) {
  ((proxy_t *)h->data)->lis_closed = true;
}

static void proxy_stop(proxy_t *p) {
  if (p->cur)
    fwd_kill(p->cur);
  uv_close((uv_handle_t *)&p->lis, proxy_lis_closed);
}

static bool seen_all(void *arg) {
  sub_t *s = arg;
  for (int i = 0; i < N_TOTAL; i++)
    if (!s->seen[i])
      return false;
  return true;
}

/* The subscriber's connection is reset mid-packet every few KiB while
 * N_TOTAL messages come through (it reconnects to its session each time):
 * QoS 2 delivers each exactly once, QoS 1 loses none. Then it stops at the
 * end, and a resumed session gets nothing again. */
static void run_faults(int version, int qos) {
  tu_broker_t *b = ct_broker(broker_conf);
  uv_loop_t loop;
  char id[64], filter[64], prefix[32];
  assert_int_equal(uv_loop_init(&loop), 0);
  snprintf(prefix, sizeof(prefix), "ft%d%d", version, qos);
  snprintf(id, sizeof(id), "%s-sub", prefix);
  snprintf(filter, sizeof(filter), "%s/#", prefix);
  proxy_t px;
  proxy_start(&px, &loop, b->port);
  static sub_t s1, s2;
  g_reconnect = true;
  sub_init(&s1, &loop, version, id, "s1");
  g_reconnect = false;
  sub_connect(&s1, px.port, 0);
  assert_int_equal(ct_wait_int(&loop, &s1.connected, 1, CT_WAIT_MS), 0);
  sub_subscribe(&s1, filter, qos);
  /* A reset every 7 KB of the stream, mid-packet, 8 times. */
  px.cut_every = px.next_cut = 7000;
  px.max_cuts = 8;
  publish_all(&loop, b->port, version, qos, prefix);
  int all = ct_run_while_not(&loop, seen_all, &s1, 20000);
  if (all != 0) {
    size_t d = 0;
    for (int i = 0; i < N_TOTAL; i++)
      d += s1.seen[i] > 0;
    fprintf(stderr, "faults: %zu of %d seen after %d cuts (%zu delivered)\n", d,
            N_TOTAL, px.cuts, s1.delivered);
  }
  assert_int_equal(all, 0);
  px.cut_every = 0;
  tu_run_for(&loop, 300); /* late duplicates would show */
  size_t twice1 = 0;
  for (int i = 0; i < N_TOTAL; i++)
    twice1 += s1.seen[i] > 1 ? s1.seen[i] - 1u : 0;
  int cuts = px.cuts, connects = s1.connected;
  assert_int_equal(uvmqtt_client_disconnect(s1.c), 0);
  assert_int_equal(ct_wait_int(&loop, &s1.disconnects, connects, CT_WAIT_MS),
                   0);
  sub_close(&s1);
  sub_init(&s2, &loop, version, id, "s2");
  sub_connect(&s2, b->port, 0);
  assert_int_equal(ct_wait_int(&loop, &s2.connected, 1, CT_WAIT_MS), 0);
  tu_run_for(&loop, 300);
  fprintf(stderr,
          "faults v%d qos%d: %d cuts, %d connections, %zu delivered, %zu "
          "twice while cut, %zu again after the resume\n",
          version == UVMQTT_V5 ? 5 : 311, qos, cuts, connects, s1.delivered,
          twice1, s2.delivered);
  sub_close(&s2);
  proxy_stop(&px);
  sub_free(&s1);
  sub_free(&s2);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  assert_int_equal(cuts, 8);
  assert_true(connects >= 9);
  assert_int_equal(s1.bad_payloads, 0);
  if (qos == 2)
    assert_int_equal(twice1, 0);
  assert_int_equal(s2.delivered, 0);
}

static void faults_v311_q1(void **state) {
  (void)state;
  run_faults(UVMQTT_V311, 1);
}
static void faults_v311_q2(void **state) {
  (void)state;
  run_faults(UVMQTT_V311, 2);
}
static void faults_v5_q2(void **state) {
  (void)state;
  run_faults(UVMQTT_V5, 2);
}

/* ---- manual acknowledgement --------------------------------------------- */

/* Acks a few pending handles, picked at random, on each tick. */
typedef struct {
  uv_timer_t t;
  sub_t *s;
  unsigned per_tick;
  unsigned seed;
} acker_t;

static void acker_tick(uv_timer_t *t) {
  acker_t *a = t->data;
  sub_t *s = a->s;
  if (uvmqtt_client_is_paused(s->c))
    s->paused_seen++;
  for (unsigned k = 0; k < a->per_tick && s->npending; k++) {
    size_t j = (size_t)rand_r(&a->seed) % s->npending;
    uint64_t h = s->pending[j];
    s->pending[j] = s->pending[--s->npending];
    int rc = uvmqtt_ack(s->c, h);
    if (rc != 0)
      s->ack_errors++;
    else if (uvmqtt_ack(s->c, h) != UVMQTT_EACKED)
      s->ack_errors++; /* twice: refused */
  }
}

static void acker_start(acker_t *a, uv_loop_t *loop, sub_t *s, unsigned period,
                        unsigned per_tick) {
  memset(a, 0, sizeof(*a));
  a->s = s;
  a->per_tick = per_tick;
  a->seed = 12345;
  assert_int_equal(uv_timer_init(loop, &a->t), 0);
  a->t.data = a;
  assert_int_equal(uv_timer_start(&a->t, acker_tick, period, period), 0);
}

static void acker_stop(acker_t *a) {
  uv_close((uv_handle_t *)&a->t, NULL);
}

static bool all_seen(sub_t *s) {
  for (int i = 0; i < N_TOTAL; i++)
    if (!s->seen[i])
      return false;
  return true;
}

static bool acked_all(void *arg) {
  sub_t *s = arg;
  return all_seen(s) && s->npending == 0 &&
         uvmqtt_client_get_unacked(s->c) == 0;
}

/* A manual-ack subscriber acks every message after a timer delay, in
 * random order, with at most `limit` unacknowledged (the automatic
 * pause); it leaves once all are acknowledged, and a resumed session gets
 * nothing again. (The Receive Maximum counting is tested in
 * test/session/test_flow.c: mosquitto 2.0.11 itself exceeds a small
 * Receive Maximum when several PUBACKs release queued messages, and we
 * then disconnect with 0x93, as the spec says.) */
static void run_manual(int version, int qos, uint32_t limit, uint16_t rmax) {
  tu_broker_t *b = ct_broker(broker_conf);
  uv_loop_t loop;
  char id[64], filter[64], prefix[32];
  assert_int_equal(uv_loop_init(&loop), 0);
  snprintf(prefix, sizeof(prefix), "ma%d%d%u", version, qos, (unsigned)limit);
  snprintf(id, sizeof(id), "%s-sub", prefix);
  snprintf(filter, sizeof(filter), "%s/#", prefix);
  static sub_t s1, s2;
  sub_init_ex(&s1, &loop, version, id, "s1", limit, rmax);
  sub_connect(&s1, b->port, 0);
  assert_int_equal(ct_wait_int(&loop, &s1.connected, 1, CT_WAIT_MS), 0);
  sub_subscribe(&s1, filter, qos);
  acker_t a;
  acker_start(&a, &loop, &s1, 1, 8);
  publish_all(&loop, b->port, version, qos, prefix);
  assert_int_equal(ct_run_while_not(&loop, acked_all, &s1, 20000), 0);
  assert_true(uvmqtt_client_is_connected(s1.c));
  assert_int_equal(s1.ack_errors, 0);
  size_t bound = limit ? limit : rmax;
  if (bound)
    assert_true(s1.max_unacked_seen <= bound);
  fprintf(stderr,
          "manual v%d qos%d limit %u rmax %u: %zu delivered, at most %zu "
          "unacked, paused at %d ticks\n",
          version == UVMQTT_V5 ? 5 : 311, qos, (unsigned)limit, rmax,
          s1.delivered, s1.max_unacked_seen, s1.paused_seen);
  /* Leaving: a handle of the old connection is stale afterwards. */
  assert_int_equal(uvmqtt_client_disconnect(s1.c), 0);
  assert_int_equal(ct_wait_int(&loop, &s1.disconnects, 1, CT_WAIT_MS), 0);
  acker_stop(&a);
  sub_close(&s1);

  sub_init(&s2, &loop, version, id, "s2");
  sub_connect(&s2, b->port, 0);
  assert_int_equal(ct_wait_int(&loop, &s2.connected, 1, CT_WAIT_MS), 0);
  tu_run_for(&loop, 300);
  size_t twice = 0, lost = 0;
  for (int i = 0; i < N_TOTAL; i++) {
    unsigned n = s1.seen[i] + s2.seen[i];
    if (n == 0)
      lost++;
    else
      twice += n - 1;
  }
  sub_close(&s2);
  sub_free(&s1);
  sub_free(&s2);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  assert_int_equal(s2.delivered, 0);
  assert_int_equal(twice, 0);
  assert_int_equal(lost, 0);
  if (limit)
    assert_true(s1.paused_seen > 0); /* the limit did pause reading */
}

static void manual_v311_q1(void **state) {
  (void)state;
  run_manual(UVMQTT_V311, 1, 0, 0);
}
static void manual_v5_q2(void **state) {
  (void)state;
  run_manual(UVMQTT_V5, 2, 0, 0);
}
static void manual_v311_q2_limit(void **state) {
  (void)state;
  run_manual(UVMQTT_V311, 2, 50, 0);
}
static void manual_v5_q1_limit(void **state) {
  (void)state;
  run_manual(UVMQTT_V5, 1, 50, 0);
}

/* The handle errors against a live client: acknowledged twice, after its
 * connection is gone, after close, and the v5 reason checks. */
static void on_leave_msg(uvmqtt_client_t *c, const uvmqtt_message_t *m,
                         void *arg) {
  sub_t *s = arg;
  s->delivered++;
  if (s->npending < 4) {
    if (!s->pending)
      s->pending = calloc(4, sizeof(uint64_t));
    s->pending[s->npending++] = m->ack_handle;
  }
  (void)c;
}

static void manual_errors(void **state) {
  (void)state;
  tu_broker_t *b = ct_broker(broker_conf);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  static sub_t s;
  sub_init_ex(&s, &loop, UVMQTT_V5, "me-sub", "s", 0, 0);
  uvmqtt_client_on_message(s.c, on_leave_msg, &s);
  sub_connect(&s, b->port, 0);
  assert_int_equal(ct_wait_int(&loop, &s.connected, 1, CT_WAIT_MS), 0);
  sub_subscribe(&s, "me/#", 1);
  for (int i = 0; i < 3; i++)
    assert_true(uvmqtt_publish(s.c, "me/x", "p", 1, 1, false, NULL, NULL) > 0);
  assert_int_equal(ct_wait_size(&loop, &s.delivered, 3, CT_WAIT_MS), 0);
  uvmqtt_props_t pr;
  memset(&pr, 0, sizeof(pr));
  pr.present = UVMQTT_PROP_BIT(UVMQTT_PROP_REASON_STRING);
  pr.reason_string.data = "db down";
  pr.reason_string.len = 7;
  assert_int_equal(uvmqtt_ack_ex(s.c, s.pending[0], 0x04, NULL), UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_ack_ex(s.c, s.pending[0], 0x80, &pr), 0);
  assert_int_equal(uvmqtt_ack(s.c, s.pending[0]), UVMQTT_EACKED);
  assert_int_equal(uvmqtt_ack(s.c, 0), 0);
  assert_int_equal(uvmqtt_ack(s.c, s.pending[2] + 1000), UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_client_get_unacked(s.c), 2);
  /* Left unacknowledged: stale once the connection is gone. */
  assert_int_equal(uvmqtt_client_disconnect(s.c), 0);
  assert_int_equal(uvmqtt_ack(s.c, s.pending[1]), UVMQTT_ESTALE);
  assert_int_equal(ct_wait_int(&loop, &s.disconnects, 1, CT_WAIT_MS), 0);
  assert_int_equal(uvmqtt_client_get_unacked(s.c), 0);
  uvmqtt_client_close(s.c, sub_on_closed);
  assert_int_equal(uvmqtt_ack(s.c, s.pending[2]), UVMQTT_ECLOSED);
  assert_int_equal(ct_wait_int(&loop, &s.closed, 1, CT_WAIT_MS), 0);
  sub_free(&s);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
}

/* ---- back-pressure --------------------------------------------------------
 */

/* A fast publisher, a subscriber that acks ~2000 messages/s with a limit
 * of 100 unacknowledged: reading pauses (the TCP window pushes back on
 * the broker), nothing is lost, and at most the limit is ever held. */
static void run_backpressure(int version) {
  tu_broker_t *b = ct_broker(broker_conf);
  uv_loop_t loop;
  char id[48], prefix[32], filter[40];
  assert_int_equal(uv_loop_init(&loop), 0);
  snprintf(prefix, sizeof(prefix), "bp%d", version);
  snprintf(id, sizeof(id), "%s-sub", prefix);
  snprintf(filter, sizeof(filter), "%s/#", prefix);
  static sub_t s;
  sub_init_ex(&s, &loop, version, id, "s", 100, 0);
  sub_connect(&s, b->port, 0);
  assert_int_equal(ct_wait_int(&loop, &s.connected, 1, CT_WAIT_MS), 0);
  sub_subscribe(&s, filter, 1);
  acker_t a;
  acker_start(&a, &loop, &s, 5, 10);
  uint64_t t0 = tu_now_ms();
  publish_all(&loop, b->port, version, 1, prefix);
  assert_int_equal(ct_run_while_not(&loop, acked_all, &s, 15000), 0);
  fprintf(stderr,
          "backpressure v%d: %zu delivered in %llu ms, at most %zu unacked, "
          "paused at %d of the acker's ticks\n",
          version == UVMQTT_V5 ? 5 : 311, s.delivered,
          (unsigned long long)(tu_now_ms() - t0), s.max_unacked_seen,
          s.paused_seen);
  assert_true(s.max_unacked_seen <= 100);
  assert_true(s.paused_seen > 0);
  assert_int_equal(s.ack_errors, 0);
  assert_true(uvmqtt_client_is_connected(s.c));
  acker_stop(&a);
  sub_close(&s);
  sub_free(&s);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
}

static void backpressure_v311(void **state) {
  (void)state;
  run_backpressure(UVMQTT_V311);
}
static void backpressure_v5(void **state) {
  (void)state;
  run_backpressure(UVMQTT_V5);
}

/* pause() for three keepalive periods while messages arrive: no message
 * callback while paused, the connection survives (our PINGREQs keep the
 * broker content, its silence is not held against it), and resume
 * delivers everything. */
static void pause_keepalive(void **state) {
  (void)state;
  tu_broker_t *b = ct_broker(broker_conf);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  static sub_t s;
  memset(&s, 0, sizeof(s));
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, "pk-sub", false);
  assert_int_equal(uvmqtt_options_set_keepalive(o, 1), 0);
  s.loop = &loop;
  assert_int_equal(uvmqtt_client_new(&loop, o, &s.c), 0);
  uvmqtt_options_del(o);
  uvmqtt_client_set_data(s.c, &s);
  uvmqtt_client_on_connect(s.c, sub_on_connect, &s);
  uvmqtt_client_on_disconnect(s.c, sub_on_disconnect, &s);
  uvmqtt_client_on_message(s.c, sub_on_message, &s);
  sub_connect(&s, b->port, 0);
  assert_int_equal(ct_wait_int(&loop, &s.connected, 1, CT_WAIT_MS), 0);
  sub_subscribe(&s, "pk/#", 1);
  assert_int_equal(uvmqtt_client_pause(s.c), 0);
  assert_true(uvmqtt_client_is_paused(s.c));
  publish_all(&loop, b->port, UVMQTT_V311, 1, "pk");
  tu_run_for(&loop, 3000);
  assert_int_equal(s.delivered, 0);
  assert_int_equal(s.disconnects, 0);
  assert_true(uvmqtt_client_is_connected(s.c));
  assert_int_equal(uvmqtt_client_resume(s.c), 0);
  assert_int_equal(s.delivered, 0); /* not from inside resume */
  assert_int_equal(ct_wait_size(&loop, &s.delivered, N_TOTAL, CT_WAIT_MS), 0);
  assert_true(all_seen(&s));
  assert_int_equal(s.disconnects, 0);
  assert_int_equal(s.connected, 1);
  sub_close(&s);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
}

/* ---- graceful drain of publishes -------------------------------------------
 */

typedef struct {
  int calls;
  int status;
} drain_res_t;

static void on_drained(uvmqtt_client_t *c, int status, void *arg) {
  drain_res_t *d = arg;
  (void)c;
  d->calls++;
  d->status = status;
}

/* 1000 QoS 1 messages queued, drain asked at once, the broker restarted
 * (with its persistence) in the middle: every publish callback fires
 * once with success, the drain completes with 0 after the last one, the
 * subscriber gets all of them, and publishing during the drain is
 * refused. */
static void drain_restart(void **state) {
  (void)state;
  enum { N = 1000 };
  char dbdir[256], extra[512];
  assert_int_equal(tu_tmpdir(dbdir, sizeof(dbdir)), 0);
  snprintf(extra, sizeof(extra),
           "persistence true\npersistence_location %s/\n%s", dbdir,
           broker_conf);
  tu_broker_t *b = ct_broker(extra);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  ct_client_t sub, pub;
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, "dr-sub", false);
  ct_client_init(&sub, &loop, o, "sub");
  uvmqtt_options_del(o);
  o = ct_opts(UVMQTT_V311, "dr-pub", false);
  assert_int_equal(uvmqtt_options_set_max_inflight(o, 10), 0);
  ct_client_init(&pub, &loop, o, "pub");
  uvmqtt_options_del(o);
  ct_connect(&sub, b->port);
  ct_connect(&pub, b->port);
  ct_wait_connected(&sub, 1);
  ct_wait_connected(&pub, 1);
  ct_subscribe(&sub, "dr/#", 1);
  static ct_pub_t pubs[N];
  memset(pubs, 0, sizeof(pubs));
  for (int i = 0; i < N; i++) {
    char payload[16];
    int n = snprintf(payload, sizeof(payload), "%d", i);
    assert_true(uvmqtt_publish(pub.c, "dr/x", payload, (size_t)n, 1, false,
                               ct_pub_cb, &pubs[i]) > 0);
  }
  drain_res_t d = {0, 1};
  assert_int_equal(uvmqtt_client_disconnect_drain(pub.c, 20000, on_drained, &d),
                   0);
  assert_int_equal(d.calls, 0); /* never from inside the call */
  assert_int_equal(uvmqtt_client_disconnect_drain(pub.c, 0, NULL, NULL),
                   UVMQTT_EBUSY);
  assert_int_equal(
      uvmqtt_publish(pub.c, "dr/x", "late", 4, 1, false, ct_pub_cb, &pubs[0]),
      UVMQTT_EDRAINING);
  /* Restart the broker once a fifth has gone through. */
  int done = 0;
  uint64_t end = tu_now_ms() + CT_WAIT_MS;
  while (done < N / 5 && tu_now_ms() < end) {
    uv_run(&loop, UV_RUN_ONCE);
    done = 0;
    for (int i = 0; i < N; i++)
      done += pubs[i].calls;
  }
  assert_true(done < N);
  tu_broker_stop(b);
  assert_int_equal(tu_broker_restart(b), 0);
  assert_int_equal(ct_wait_int(&loop, &d.calls, 1, 20000), 0);
  assert_int_equal(d.status, 0);
  for (int i = 0; i < N; i++) {
    assert_int_equal(pubs[i].calls, 1);
    assert_int_equal(pubs[i].status, 0);
  }
  assert_false(uvmqtt_client_is_connected(pub.c));
  assert_true(pub.connected >= 2); /* it did reconnect during the drain */
  /* The subscriber gets every one (QoS 1: duplicates allowed). */
  static uint8_t seen[N];
  memset(seen, 0, sizeof(seen));
  size_t distinct = 0;
  end = tu_now_ms() + CT_WAIT_MS;
  while (distinct < N && tu_now_ms() < end) {
    uv_run(&loop, UV_RUN_NOWAIT);
    distinct = 0;
    memset(seen, 0, sizeof(seen));
    for (size_t i = 0; i < sub.nmsgs; i++) {
      int k = atoi(sub.msgs[i].payload);
      if (k >= 0 && k < N && !seen[k]++)
        distinct++;
    }
    uv_sleep(1);
  }
  fprintf(stderr, "drain: %d reconnects, subscriber got %zu (%zu distinct)\n",
          pub.connected - 1, sub.nmsgs, distinct);
  assert_int_equal(distinct, N);
  ct_close(&sub);
  ct_close(&pub);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&sub);
  ct_client_free(&pub);
  tu_rmtree(dbdir);
}

/* A drain with nothing pending and a timeout that expires, and close()
 * during a drain. */
static void drain_timeout_and_close(void **state) {
  (void)state;
  tu_broker_t *b = ct_broker(broker_conf);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  ct_client_t pub;
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, NULL, true);
  ct_client_init(&pub, &loop, o, "pub");
  uvmqtt_options_del(o);
  ct_connect(&pub, b->port);
  ct_wait_connected(&pub, 1);
  /* Publishes without a callback count too: the drain ends when they
   * complete, not at a deadline (there is none). */
  for (int i = 0; i < 5; i++)
    assert_true(uvmqtt_publish(pub.c, "dt/x", "0", 1, 1, false, NULL, NULL) >
                0);
  drain_res_t d = {0, 1};
  assert_int_equal(uvmqtt_client_disconnect_drain(pub.c, 0, on_drained, &d), 0);
  assert_int_equal(ct_wait_int(&loop, &d.calls, 1, CT_WAIT_MS), 0);
  assert_int_equal(d.status, 0);
  assert_int_equal(uvmqtt_client_get_inflight(pub.c), 0);
  assert_int_equal(pub.disconnects, 1);
  assert_int_equal(pub.last_disconnect_status, 0);
  /* Broker frozen: QoS 1 cannot complete, the drain times out, the
   * message stays queued and close cancels it. */
  ct_connect(&pub, b->port);
  ct_wait_connected(&pub, 2);
  kill(b->pid, SIGSTOP);
  ct_pub_t p1;
  memset(&p1, 0, sizeof(p1));
  assert_true(uvmqtt_publish(pub.c, "dt/x", "1", 1, 1, false, ct_pub_cb, &p1) >
              0);
  drain_res_t d2 = {0, 1};
  assert_int_equal(uvmqtt_client_disconnect_drain(pub.c, 300, on_drained, &d2),
                   0);
  assert_int_equal(ct_wait_int(&loop, &d2.calls, 1, CT_WAIT_MS), 0);
  assert_int_equal(d2.status, UVMQTT_ETIMEDOUT);
  assert_int_equal(p1.calls, 0);
  kill(b->pid, SIGCONT);
  ct_connect(&pub, b->port);
  ct_wait_connected(&pub, 3);
  /* Closing during a drain ends it with UVMQTT_ECLOSED. */
  kill(b->pid, SIGSTOP);
  ct_pub_t p2;
  memset(&p2, 0, sizeof(p2));
  assert_true(uvmqtt_publish(pub.c, "dt/x", "2", 1, 1, false, ct_pub_cb, &p2) >
              0);
  drain_res_t d3 = {0, 1};
  assert_int_equal(uvmqtt_client_disconnect_drain(pub.c, 0, on_drained, &d3),
                   0);
  tu_run_for(&loop, 50);
  ct_close(&pub);
  kill(b->pid, SIGCONT);
  assert_int_equal(d3.calls, 1);
  assert_int_equal(d3.status, UVMQTT_ECLOSED);
  assert_int_equal(p2.calls, 1);
  assert_int_equal(p2.status, UVMQTT_ECLOSED);
  assert_int_equal(p1.calls, 1);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&pub);
}

static const struct CMUnitTest tests[] = {
    CT_TEST(stop_v311_q1_disconnect),
    CT_TEST(stop_v311_q2_disconnect),
    CT_TEST(stop_v5_q1_disconnect),
    CT_TEST(stop_v5_q2_disconnect),
    CT_TEST(stop_v311_q1_close),
    CT_TEST(stop_v311_q2_close),
    CT_TEST(stop_v5_q1_close),
    CT_TEST(stop_v5_q2_close),
    CT_TEST(stop_v311_q1_both),
    CT_TEST(stop_v5_q2_both),
#ifdef UVMQTT_HAVE_WS
    CT_TEST(stop_ws_v311_q1_disconnect),
    CT_TEST(stop_ws_v5_q2_close),
#endif
#ifdef DELIVERY_TLS
    CT_TEST(stop_tls_v311_q1_disconnect),
    CT_TEST(stop_tls_v5_q2_close),
#endif
    CT_TEST(leave_linger),
    CT_TEST(faults_v311_q1),
    CT_TEST(faults_v311_q2),
    CT_TEST(faults_v5_q2),
    CT_TEST(manual_v311_q1),
    CT_TEST(manual_v5_q2),
    CT_TEST(manual_v311_q2_limit),
    CT_TEST(manual_v5_q1_limit),
    CT_TEST(manual_errors),
    CT_TEST(backpressure_v311),
    CT_TEST(backpressure_v5),
    CT_TEST(pause_keepalive),
    CT_TEST(drain_restart),
    CT_TEST(drain_timeout_and_close),
};

CT_MAIN(tests)
