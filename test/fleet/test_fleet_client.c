/* Fleet behaviour of real clients: a scripted listener that accepts
 * (CONNACK 0) and closes or resets at once, two clients with the same id
 * against mosquitto (3.1.1 and 5), a v5 takeover DISCONNECT, statistics
 * against a known workload, the outgoing rate limit and the loop-wide
 * attempt limit. Times are scaled down (backoff in hundreds of ms, windows
 * of a few seconds); bounds are loose, figures go to stderr. */
#include "ctest.h"

#include <unistd.h>

/* ---- a listener that accepts, answers CONNACK, then closes ------------- */

typedef struct flap_s flap_t;

typedef struct {
  uv_tcp_t tcp;
  uv_write_t wr;
  flap_t *f;
  bool answered;
} flap_conn_t;

struct flap_s {
  uv_tcp_t server;
  int port;
  int accepted;
  bool reset;         /* close with RST instead of FIN */
  const uint8_t *ack; /* sent after the first bytes */
  size_t ack_len;
  char buf[1024];
};

static void fc_closed(uv_handle_t *h) {
  free(h->data);
}

static void fc_alloc(uv_handle_t *h, size_t n, uv_buf_t *b) {
  flap_conn_t *fc = h->data;
  (void)n;
  *b = uv_buf_init(fc->f->buf, sizeof(fc->f->buf));
}

static void fc_written(uv_write_t *w, int status) {
  flap_conn_t *fc = w->data;
  (void)status;
  if (fc->f->reset)
    uv_tcp_close_reset(&fc->tcp, fc_closed);
  else
    uv_close((uv_handle_t *)&fc->tcp, fc_closed);
}

static void fc_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  flap_conn_t *fc = s->data;
  (void)b;
  if (n < 0) {
    if (!fc->answered) {
      fc->answered = true;
      uv_close((uv_handle_t *)&fc->tcp, fc_closed);
    }
    return;
  }
  if (n == 0 || fc->answered)
    return;
  fc->answered = true;
  uv_read_stop(s);
  uv_buf_t out = uv_buf_init((char *)fc->f->ack, (unsigned)fc->f->ack_len);
  fc->wr.data = fc;
  assert_int_equal(0, uv_write(&fc->wr, s, &out, 1, fc_written));
}

static void flap_conn(uv_stream_t *server, int status) {
  flap_t *f = server->data;
  flap_conn_t *fc;
  assert_int_equal(0, status);
  fc = calloc(1, sizeof(*fc));
  assert_non_null(fc);
  fc->f = f;
  assert_int_equal(0, uv_tcp_init(server->loop, &fc->tcp));
  fc->tcp.data = fc;
  assert_int_equal(0, uv_accept(server, (uv_stream_t *)&fc->tcp));
  f->accepted++;
  assert_int_equal(0,
                   uv_read_start((uv_stream_t *)&fc->tcp, fc_alloc, fc_read));
}

static void flap_start(uv_loop_t *loop, flap_t *f, const uint8_t *ack,
                       size_t ack_len, bool reset) {
  struct sockaddr_in a;
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  memset(f, 0, sizeof(*f));
  f->ack = ack;
  f->ack_len = ack_len;
  f->reset = reset;
  assert_int_equal(0, uv_tcp_init(loop, &f->server));
  f->server.data = f;
  assert_int_equal(0, uv_ip4_addr("127.0.0.1", 0, &a));
  assert_int_equal(0, uv_tcp_bind(&f->server, (struct sockaddr *)&a, 0));
  assert_int_equal(0, uv_listen((uv_stream_t *)&f->server, 128, flap_conn));
  assert_int_equal(
      0, uv_tcp_getsockname(&f->server, (struct sockaddr *)&ss, &len));
  f->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void flap_stop(flap_t *f) {
  uv_close((uv_handle_t *)&f->server, NULL);
}

/* ---- a client that records every disconnect status ---------------------- */

typedef struct {
  ct_client_t t; /* first: the ct callbacks get &t */
  int shortlived, takenover, peerclosed;
} fleet_client_t;

static void fl_disconnect(uvmqtt_client_t *c, int status,
                          const uvmqtt_reason_t *r, void *arg) {
  fleet_client_t *f = arg;
  (void)c;
  (void)r;
  f->t.disconnects++;
  f->t.last_disconnect_status = status;
  f->t.last_disconnect_ms = tu_now_ms();
  if (status == UVMQTT_ESHORTLIVED)
    f->shortlived++;
  else if (status == UVMQTT_ETAKENOVER)
    f->takenover++;
  else if (status == UVMQTT_EPEERCLOSED || status == UV_ECONNRESET)
    f->peerclosed++;
  if (f->t.verbose)
    fprintf(stderr, "[%s] disconnect %s\n", f->t.name, uvmqtt_err_name(status));
}

static void fl_init(fleet_client_t *f, uv_loop_t *loop, uvmqtt_options_t *o,
                    const char *name) {
  memset(f, 0, sizeof(*f));
  ct_client_init(&f->t, loop, o, name);
  uvmqtt_client_on_disconnect(f->t.c, fl_disconnect, f);
}

static const uint8_t CONNACK_OK[] = {0x20, 0x02, 0x00, 0x00};

/* Scaled: backoff 100 ms .. 2 s, stable after 3 s (longer than the
 * largest delay, as the defaults are: 30 s +/- 20 % against 30 s... see
 * docs/fleet.md), suspect after 3. */
static uvmqtt_options_t *scaled_opts(int version, const char *id) {
  uvmqtt_options_t *o = ct_opts(version, id, true);
  assert_int_equal(0, uvmqtt_options_set_reconnect(o, true, 100, 2000, 0.2));
  assert_int_equal(
      0, uvmqtt_options_set_reconnect_policy(o, 3000, 3, UVMQTT_TAKEOVER_STOP));
  return o;
}

static void accept_then_close_run(bool reset) {
  uv_loop_t loop;
  flap_t f;
  fleet_client_t c;
  uvmqtt_options_t *o;
  assert_int_equal(0, uv_loop_init(&loop));
  flap_start(&loop, &f, CONNACK_OK, sizeof(CONNACK_OK), reset);
  o = scaled_opts(UVMQTT_V311, "flap");
  fl_init(&c, &loop, o, "flap");
  uvmqtt_options_del(o);
  ct_connect(&c.t, f.port);
  tu_run_for(&loop, 5000);
  fprintf(stderr, "# accept-then-%s: %d connections in 5 s (%d shortlived)\n",
          reset ? "reset" : "close", f.accepted, c.shortlived);
  /* Before: the backoff started over at each CONNACK, one connection per
   * 100-120 ms: about 40 in 5 s. Now: 0.1 + 0.2 s, the third is the
   * threshold, then the maximum (2 s +/- 20 %): 5 or 6. */
  assert_true(f.accepted >= 4);
  assert_true(f.accepted <= 8);
  assert_true(c.shortlived >= 1);
  assert_int_equal(c.t.connected, f.accepted);
  ct_close(&c.t);
  flap_stop(&f);
  assert_int_equal(0, tu_loop_close(&loop, 2000));
  ct_client_free(&c.t);
}

static void accept_then_close(void **state) {
  (void)state;
  accept_then_close_run(false);
}

static void accept_then_reset(void **state) {
  (void)state;
  accept_then_close_run(true);
}

/* v5: CONNACK, then DISCONNECT 0x8E (Session taken over). */
static void v5_taken_over(void **state) {
  static const uint8_t script[] = {0x20, 0x03, 0x00, 0x00, 0x00,
                                   0xe0, 0x02, 0x8e, 0x00};
  uv_loop_t loop;
  flap_t f;
  fleet_client_t c;
  uvmqtt_options_t *o;
  (void)state;
  assert_int_equal(0, uv_loop_init(&loop));
  flap_start(&loop, &f, script, sizeof(script), false);
  o = scaled_opts(UVMQTT_V5, "took");
  fl_init(&c, &loop, o, "took");
  uvmqtt_options_del(o);
  ct_connect(&c.t, f.port);
  assert_int_equal(0, ct_wait_int(&loop, &c.takenover, 1, 3000));
  tu_run_for(&loop, 1000);
  /* Told once, and no fight: no second connection. */
  assert_int_equal(1, c.takenover);
  assert_int_equal(1, f.accepted);
  assert_false(uvmqtt_client_is_connected(c.t.c));
  ct_close(&c.t);
  flap_stop(&f);
  assert_int_equal(0, tu_loop_close(&loop, 2000));
  ct_client_free(&c.t);
}

/* Two clients with one id against mosquitto for 5 s. */
static int count_in_log(const tu_broker_t *b, const char *needle) {
  FILE *fp = fopen(b->log, "r");
  char line[1024];
  int n = 0;
  if (fp == NULL)
    return -1;
  while (fgets(line, sizeof(line), fp) != NULL)
    if (strstr(line, needle) != NULL)
      n++;
  fclose(fp);
  return n;
}

static void same_id_run(int version) {
  tu_broker_t *b = ct_broker(NULL);
  uv_loop_t loop;
  fleet_client_t a, z;
  uvmqtt_options_t *o;
  int conns;
  assert_int_equal(0, uv_loop_init(&loop));
  o = scaled_opts(version, "twin");
  fl_init(&a, &loop, o, "a");
  fl_init(&z, &loop, o, "z");
  uvmqtt_options_del(o);
  ct_connect(&a.t, b->port);
  ct_wait_connected(&a.t, 1);
  ct_connect(&z.t, b->port);
  tu_run_for(&loop, 5000);
  conns = count_in_log(b, "as twin");
  fprintf(stderr,
          "# same id, v%d: broker saw %d connections in 5 s; a: %d connects, "
          "%d shortlived, %d taken over; z: %d, %d, %d\n",
          version, conns, a.t.connected, a.shortlived, a.takenover,
          z.t.connected, z.shortlived, z.takenover);
  /* Both applications are told (mosquitto 2.0 sends no DISCONNECT 0x8E,
   * so it is the guess in both versions). */
  assert_true(a.shortlived + a.takenover >= 1);
  assert_true(z.shortlived + z.takenover >= 1);
  /* Before: about one connection per 100-200 ms each, 50+. */
  assert_true(conns >= 4);
  assert_true(conns <= 16);
  ct_close(&a.t);
  ct_close(&z.t);
  assert_int_equal(0, tu_loop_close(&loop, 2000));
  ct_client_free(&a.t);
  ct_client_free(&z.t);
}

static void same_id_v311(void **state) {
  (void)state;
  same_id_run(UVMQTT_V311);
}

static void same_id_v5(void **state) {
  (void)state;
  same_id_run(UVMQTT_V5);
}

/* ---- statistics against a known workload ------------------------------- */

static void count_done(uvmqtt_client_t *c, const uvmqtt_pub_result_t *r,
                       void *arg) {
  int *n = arg;
  (void)c;
  assert_int_equal(0, r->status);
  (*n)++;
}

static void stats_workload(void **state) {
  tu_broker_t *b = ct_broker(NULL);
  uv_loop_t loop;
  ct_client_t t;
  uvmqtt_options_t *o;
  uvmqtt_client_stats_t st;
  uvmqtt_loop_stats_t ls;
  int done = 0;
  static const int per_qos[3] = {30, 20, 10};
  (void)state;
  assert_int_equal(0, uv_loop_init(&loop));
  o = ct_opts(UVMQTT_V311, "stats", true);
  assert_int_equal(0, uvmqtt_options_set_keepalive(o, 1));
  assert_int_equal(0, uvmqtt_options_set_stats(o, true));
  ct_client_init(&t, &loop, o, "stats");
  uvmqtt_options_del(o);
  ct_connect(&t, b->port);
  ct_wait_connected(&t, 1);
  ct_subscribe(&t, "st/#", 2);
  for (int q = 0; q < 3; q++)
    for (int i = 0; i < per_qos[q]; i++)
      assert_true(uvmqtt_publish(t.c, "st/x", "0123456789", 10, q, false,
                                 count_done, &done) >= 0);
  assert_int_equal(0, ct_wait_int(&loop, &done, 60, 5000));
  assert_int_equal(0, ct_wait_size(&loop, &t.nmsgs, 60, 5000));
  tu_run_for(&loop, 1700); /* a keepalive round trip, acks settle */
  assert_int_equal(0, uvmqtt_client_stats(t.c, &st));
  for (int q = 0; q < 3; q++) {
    assert_int_equal(per_qos[q], st.published[q]);
    assert_int_equal(per_qos[q], st.delivered[q]);
  }
  assert_int_equal(0, st.republished);
  assert_int_equal(1, st.packets_out[1]);  /* CONNECT */
  assert_int_equal(60, st.packets_out[3]); /* PUBLISH */
  assert_int_equal(20, st.packets_out[4]); /* PUBACK for incoming QoS 1 */
  assert_int_equal(10, st.packets_out[5]); /* PUBREC */
  assert_int_equal(10, st.packets_out[6]); /* PUBREL */
  assert_int_equal(10, st.packets_out[7]); /* PUBCOMP */
  assert_int_equal(1, st.packets_out[8]);  /* SUBSCRIBE */
  assert_true(st.packets_out[12] >= 1);    /* PINGREQ */
  assert_int_equal(1, st.packets_in[2]);   /* CONNACK */
  assert_int_equal(60, st.packets_in[3]);
  assert_int_equal(20, st.packets_in[4]);
  assert_int_equal(10, st.packets_in[5]);
  assert_int_equal(10, st.packets_in[6]);
  assert_int_equal(10, st.packets_in[7]);
  assert_int_equal(1, st.packets_in[9]); /* SUBACK */
  assert_true(st.packets_in[13] >= 1);   /* PINGRESP */
  assert_true(st.rtt_last_us > 0 && st.rtt_last_us < 1000000);
  assert_true(st.rtt_max_us >= st.rtt_last_us);
  assert_int_equal(60, st.completed);
  assert_int_equal(0, st.dropped + st.expired + st.refused + st.failed);
  assert_int_equal(1, st.attempts);
  assert_int_equal(1, st.connects);
  assert_int_equal(0, st.reconnects);
  assert_int_equal(0, st.inflight);
  assert_int_equal(0, st.queued);
  assert_true(st.connection_age_ms >= 1700);
  assert_true(st.connected_ms >= st.connection_age_ms);
  /* 60 PUBLISH of 4 + 2 + 10 (+ 2 with a packet id) bytes at least. */
  assert_true(st.bytes_out > 60 * 16);
  assert_true(st.bytes_in > 60 * 16);
  assert_int_equal(0, uvmqtt_loop_stats(&loop, &ls));
  assert_int_equal(1, ls.clients);
  assert_int_equal(1, ls.connected);
  assert_int_equal(60, ls.published);
  assert_int_equal(60, ls.delivered);
  assert_int_equal(st.bytes_out, ls.bytes_out);
  assert_int_equal(st.bytes_in, ls.bytes_in);
  /* Lost and back: a reconnect, the error remembered. */
  assert_int_equal(0, tu_broker_restart(b));
  ct_wait_connected(&t, 2);
  assert_int_equal(0, uvmqtt_client_stats(t.c, &st));
  assert_int_equal(2, st.connects);
  assert_int_equal(1, st.reconnects);
  assert_true(st.attempts >= 2);
  assert_true(st.last_error < 0);
  assert_int_equal(UVMQTT_EINVAL, uvmqtt_client_stats(NULL, &st));
  assert_int_equal(UVMQTT_EINVAL, uvmqtt_client_stats(t.c, NULL));
  assert_int_equal(UVMQTT_EINVAL, uvmqtt_loop_stats(NULL, &ls));
  ct_close(&t);
  assert_int_equal(0, tu_loop_close(&loop, 2000));
  ct_client_free(&t);
}

/* A client that never asks has no block; the first ask starts counting. */
static void stats_first_ask(void **state) {
  tu_broker_t *b = ct_broker(NULL);
  uv_loop_t loop;
  ct_client_t t;
  uvmqtt_options_t *o;
  uvmqtt_client_stats_t st;
  int done = 0;
  (void)state;
  assert_int_equal(0, uv_loop_init(&loop));
  o = ct_opts(UVMQTT_V5, NULL, true);
  ct_client_init(&t, &loop, o, "ask");
  uvmqtt_options_del(o);
  ct_connect(&t, b->port);
  ct_wait_connected(&t, 1);
  assert_true(uvmqtt_publish(t.c, "a/x", "1", 1, 1, false, count_done, &done) >
              0);
  assert_int_equal(0, ct_wait_int(&loop, &done, 1, 3000));
  assert_int_equal(0, uvmqtt_client_stats(t.c, &st));
  assert_int_equal(0, st.published[1]); /* before the first ask */
  assert_true(st.connection_age_ms < 3000);
  assert_true(uvmqtt_publish(t.c, "a/x", "1", 1, 1, false, count_done, &done) >
              0);
  assert_int_equal(0, ct_wait_int(&loop, &done, 2, 3000));
  assert_int_equal(0, uvmqtt_client_stats(t.c, &st));
  assert_int_equal(1, st.published[1]);
  assert_int_equal(1, st.packets_in[4]);
  assert_int_equal(0, st.paused_ms);
  /* Reading paused for a while (back-pressure) is counted. */
  assert_int_equal(0, uvmqtt_client_pause(t.c));
  tu_run_for(&loop, 200);
  assert_int_equal(0, uvmqtt_client_stats(t.c, &st));
  assert_true(st.paused_ms >= 150); /* still paused: counted so far */
  assert_int_equal(0, uvmqtt_client_resume(t.c));
  tu_run_for(&loop, 100);
  assert_int_equal(0, uvmqtt_client_stats(t.c, &st));
  assert_true(st.paused_ms >= 150 && st.paused_ms < 280);
  ct_close(&t);
  assert_int_equal(0, tu_loop_close(&loop, 2000));
  ct_client_free(&t);
}

/* An incoming QoS 2 message the broker has not released yet. */
static void stats_unreleased(void **state) {
  static const uint8_t script[] = {0x20, 0x02, 0x00, 0x00, 0x34, 0x08, 0x00,
                                   0x03, 'a',  '/',  'b',  0x00, 0x07, 'x'};
  static const uint8_t pubrel[] = {0x62, 0x02, 0x00, 0x07};
  static const uint8_t pubrec[] = {0x50, 0x02, 0x00, 0x07};
  static const uint8_t pubcomp[] = {0x70, 0x02, 0x00, 0x07};
  uv_loop_t loop;
  ct_peer_t p;
  ct_client_t t;
  uvmqtt_options_t *o;
  uvmqtt_client_stats_t st;
  (void)state;
  assert_int_equal(0, uv_loop_init(&loop));
  ct_peer_start(&loop, &p, script, sizeof(script));
  o = ct_opts(UVMQTT_V311, "rel", true);
  assert_int_equal(0, uvmqtt_options_set_stats(o, true));
  ct_client_init(&t, &loop, o, "rel");
  uvmqtt_options_del(o);
  ct_connect(&t, p.port);
  ct_wait_connected(&t, 1);
  assert_int_equal(0, ct_wait_size(&loop, &t.nmsgs, 1, 3000));
  tu_run_for(&loop, 50);
  assert_non_null(memmem(p.rx, p.rx_len, pubrec, sizeof(pubrec)));
  assert_int_equal(0, uvmqtt_client_stats(t.c, &st));
  assert_int_equal(1, st.unreleased);
  assert_int_equal(1, st.delivered[2]);
  assert_int_equal(1, st.packets_out[5]); /* PUBREC */
  ct_peer_send(&p, pubrel, sizeof(pubrel));
  assert_int_equal(0, ct_peer_wait_rx(&loop, &p, p.rx_len + 4, 3000));
  assert_non_null(memmem(p.rx, p.rx_len, pubcomp, sizeof(pubcomp)));
  assert_int_equal(0, uvmqtt_client_stats(t.c, &st));
  assert_int_equal(0, st.unreleased);
  assert_int_equal(1, st.packets_in[6]);  /* PUBREL */
  assert_int_equal(1, st.packets_out[7]); /* PUBCOMP */
  ct_close(&t);
  ct_peer_stop(&p);
  assert_int_equal(0, tu_loop_close(&loop, 2000));
  ct_client_free(&t);
}

/* Manual acknowledgement: a delivered message counts as unacked until the
 * application acknowledges it. */
static uint64_t g_handle;

static void keep_handle(uvmqtt_client_t *c, const uvmqtt_message_t *m,
                        void *arg) {
  int *n = arg;
  (void)c;
  g_handle = m->ack_handle;
  (*n)++;
}

static void stats_unacked(void **state) {
  tu_broker_t *b = ct_broker(NULL);
  uv_loop_t loop;
  ct_client_t t;
  uvmqtt_options_t *o;
  uvmqtt_client_stats_t st;
  int got = 0, done = 0;
  (void)state;
  assert_int_equal(0, uv_loop_init(&loop));
  o = ct_opts(UVMQTT_V311, "unacked", true);
  assert_int_equal(0, uvmqtt_options_set_manual_ack(o, true, 0, 0));
  ct_client_init(&t, &loop, o, "unacked");
  uvmqtt_options_del(o);
  ct_connect(&t, b->port);
  ct_wait_connected(&t, 1);
  ct_subscribe(&t, "ua/#", 1);
  assert_int_equal(0, uvmqtt_client_on_message(t.c, keep_handle, &got));
  assert_true(uvmqtt_publish(t.c, "ua/x", "1", 1, 1, false, count_done, &done) >
              0);
  assert_int_equal(0, ct_wait_int(&loop, &got, 1, 3000));
  assert_int_equal(0, uvmqtt_client_stats(t.c, &st));
  assert_int_equal(1, st.unacked);
  assert_int_equal(0, uvmqtt_ack(t.c, g_handle));
  assert_int_equal(0, uvmqtt_client_stats(t.c, &st));
  assert_int_equal(0, st.unacked);
  ct_close(&t);
  assert_int_equal(0, tu_loop_close(&loop, 2000));
  ct_client_free(&t);
}

/* ---- throttling ---------------------------------------------------------- */

typedef struct {
  int n;
  uint64_t last_ms;
} tally_t;

static void tally_done(uvmqtt_client_t *c, const uvmqtt_pub_result_t *r,
                       void *arg) {
  tally_t *t = arg;
  (void)c;
  assert_int_equal(0, r->status);
  t->n++;
  t->last_ms = tu_now_ms();
}

/* FLEET_THROTTLE_SECONDS=10 measures the report's 10 s figure by hand. */
static void throttle_rate(void **state) {
  enum { RATE = 1000, BURST = 100 };
  const char *env = getenv("FLEET_THROTTLE_SECONDS");
  int secs_want = env ? atoi(env) : 2;
  int N = (secs_want > 0 ? secs_want : 2) * RATE + BURST;
  tu_broker_t *b = ct_broker(NULL);
  uv_loop_t loop;
  ct_client_t t;
  uvmqtt_options_t *o;
  uvmqtt_client_stats_t st;
  tally_t done = {0, 0};
  uint64_t t0;
  double secs, rate;
  (void)state;
  assert_int_equal(0, uv_loop_init(&loop));
  o = ct_opts(UVMQTT_V311, NULL, true);
  assert_int_equal(0, uvmqtt_options_set_rate_limit(o, RATE, 0, 0, 0));
  ct_client_init(&t, &loop, o, "thr");
  uvmqtt_options_del(o);
  ct_connect(&t, b->port);
  ct_wait_connected(&t, 1);
  t0 = tu_now_ms();
  for (int i = 0; i < N; i++)
    assert_true(uvmqtt_publish(t.c, "thr/x", "payload", 7, 0, false, tally_done,
                               &done) >= 0);
  tu_run_for(&loop, 300);
  assert_int_equal(0, uvmqtt_client_stats(t.c, &st));
  /* Held back: queued, counted as throttled. */
  assert_true(st.queued > 1000);
  assert_true(st.throttled > 0);
  assert_true(done.n < 600);
  assert_int_equal(
      0, ct_wait_int(&loop, &done.n, N, (unsigned)(N / RATE + 6) * 1000));
  secs = (double)(done.last_ms - t0) / 1000.0;
  rate = (N - BURST) / secs;
  fprintf(stderr,
          "# throttle %d msg/s: %d messages in %.3f s, %.1f msg/s "
          "after the burst (%+.2f %%)\n",
          RATE, N, secs, rate, 100.0 * (rate - RATE) / RATE);
  /* Loose bounds: the figure is for the report, the machine is shared.
   */
  assert_true(secs > 0.9 * (N - BURST) / RATE);
  assert_true(secs < 2.0 * (N - BURST) / RATE);
  /* Acknowledgements are not held back: a QoS 1 message still completes
   * quickly once the queue drained. */
  ct_close(&t);
  assert_int_equal(0, tu_loop_close(&loop, 2000));
  ct_client_free(&t);
}

/* ---- herd control ---------------------------------------------------------
 */

static void herd_limit(void **state) {
  enum { N = 300, LIMIT = 10 };
  tu_broker_t *b = ct_broker(NULL);
  uv_loop_t loop;
  static ct_client_t t[N];
  uvmqtt_options_t *o;
  uvmqtt_loop_stats_t ls;
  int all;
  (void)state;
  assert_int_equal(0, uv_loop_init(&loop));
  /* The limit lives in the loop's context, which the first client makes. */
  assert_int_equal(UVMQTT_ESTATE, uvmqtt_loop_set_attempt_limit(&loop, LIMIT));
  o = ct_opts(UVMQTT_V311, NULL, true);
  assert_int_equal(0, uvmqtt_options_set_stats(o, true));
  for (int i = 0; i < N; i++) {
    ct_client_init(&t[i], &loop, o, "h");
    if (i == 0)
      assert_int_equal(0, uvmqtt_loop_set_attempt_limit(&loop, LIMIT));
    ct_connect(&t[i], b->port);
  }
  uvmqtt_options_del(o);
  for (int round = 1; round <= 2; round++) {
    uint64_t t0 = tu_now_ms(), end = t0 + 10000;
    uint64_t busiest = 0;
    do {
      uint64_t started = 0, ended = 0;
      uv_run(&loop, UV_RUN_ONCE);
      all = 0;
      /* Seen from the clients: attempts started and not yet ended. */
      for (int i = 0; i < N; i++) {
        uvmqtt_client_stats_t cs;
        assert_int_equal(0, uvmqtt_client_stats(t[i].c, &cs));
        started += cs.attempts;
        ended += (uint64_t)t[i].connected + (uint64_t)t[i].connect_fails;
        all += t[i].connected >= round;
      }
      if (started - ended > busiest)
        busiest = started - ended;
    } while (all < N && tu_now_ms() < end);
    assert_true(busiest <= LIMIT);
    assert_int_equal(N, all);
    assert_int_equal(0, uvmqtt_loop_stats(&loop, &ls));
    fprintf(stderr,
            "# herd round %d: %d clients in %llu ms, at most %u "
            "attempts at once, %u waiting\n",
            round, N, (unsigned long long)(tu_now_ms() - t0),
            ls.attempts_active_max, ls.attempts_waiting_max);
    assert_int_equal(N, ls.clients);
    assert_int_equal(N, ls.connected);
    assert_int_equal(LIMIT, ls.attempt_limit);
    assert_true(ls.attempts_active_max <= LIMIT);
    assert_true(ls.attempts_waiting_max >= N / 2);
    assert_int_equal(0, ls.attempts_active);
    assert_int_equal(0, ls.attempts_waiting);
    if (round == 1)
      assert_int_equal(0, tu_broker_restart(b)); /* all lose it at once */
  }
  for (int i = 0; i < N; i++)
    ct_close(&t[i]);
  assert_int_equal(0, tu_loop_close(&loop, 3000));
  for (int i = 0; i < N; i++)
    ct_client_free(&t[i]);
  assert_int_equal(UVMQTT_EINVAL, uvmqtt_loop_set_attempt_limit(NULL, 1));
}

static const struct CMUnitTest tests[] = {
    CT_TEST(accept_then_close), CT_TEST(accept_then_reset),
    CT_TEST(v5_taken_over),     CT_TEST(same_id_v311),
    CT_TEST(same_id_v5),        CT_TEST(stats_workload),
    CT_TEST(stats_first_ask),   CT_TEST(stats_unreleased),
    CT_TEST(stats_unacked),     CT_TEST(throttle_rate),
    CT_TEST(herd_limit),
};

CT_MAIN(tests)
