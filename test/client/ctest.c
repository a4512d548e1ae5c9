#include "ctest.h"

#include <signal.h>
#include <sys/wait.h>

uvmqtt_options_t *ct_opts(int version, const char *id, bool clean) {
  uvmqtt_options_t *o = NULL;
  assert_int_equal(uvmqtt_options_new(&o), 0);
  assert_int_equal(uvmqtt_options_set_protocol(o, version), 0);
  if (id)
    assert_int_equal(uvmqtt_options_set_client_id(o, id), 0);
  assert_int_equal(uvmqtt_options_set_clean_session(o, clean), 0);
  assert_int_equal(uvmqtt_options_set_reconnect(o, true, 100, 500, 0.2), 0);
  if (version == UVMQTT_V5 && !clean)
    assert_int_equal(uvmqtt_options_set_session_expiry(o, 3600), 0);
  return o;
}

static void on_connect(uvmqtt_client_t *c, int status,
                       const uvmqtt_connack_t *ack, void *arg) {
  ct_client_t *t = arg;
  (void)c;
  t->connects++;
  t->last_connect_status = status;
  t->last_ack_null = ack == NULL;
  t->last_connect_ms = tu_now_ms();
  if (ack)
    t->last_reason_code = ack->reason_code;
  if (status == 0) {
    assert_non_null(ack);
    if (t->connected == 0)
      t->first_session_present = ack->session_present;
    t->connected++;
    t->session_present = ack->session_present;
  } else {
    t->connect_fails++;
  }
  if (t->verbose)
    fprintf(stderr, "[%s] connect %d (%s)\n", t->name, status,
            uvmqtt_err_name(status));
}

static void on_disconnect(uvmqtt_client_t *c, int status,
                          const uvmqtt_reason_t *r, void *arg) {
  ct_client_t *t = arg;
  (void)c;
  (void)r;
  t->disconnects++;
  t->last_disconnect_status = status;
  t->last_disconnect_ms = tu_now_ms();
  if (t->verbose)
    fprintf(stderr, "[%s] disconnect %d (%s)\n", t->name, status,
            uvmqtt_err_name(status));
}

static void on_message(uvmqtt_client_t *c, const uvmqtt_message_t *m,
                       void *arg) {
  ct_client_t *t = arg;
  assert_false(t->closed); /* never after the close callback */
  if (t->close_asked)
    t->msgs_after_close++;
  if (t->nmsgs == t->msgcap) {
    t->msgcap = t->msgcap ? t->msgcap * 2 : 64;
    t->msgs = realloc(t->msgs, t->msgcap * sizeof(*t->msgs));
    assert_non_null(t->msgs);
  }
  ct_msg_t *r = &t->msgs[t->nmsgs++];
  memset(r, 0, sizeof(*r));
  r->topic = strndup(m->topic, m->topic_len);
  r->payload = malloc(m->payload_len + 1);
  memcpy(r->payload, m->payload, m->payload_len);
  r->payload[m->payload_len] = '\0';
  r->payload_len = m->payload_len;
  r->qos = m->qos;
  r->retain = m->retain;
  r->dup = m->dup;
  r->at_ms = tu_now_ms();
  if (m->props && (m->props->present &
                   UVMQTT_PROP_BIT(UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER))) {
    r->has_sub_id = true;
    r->sub_id = m->props->subscription_id;
  }
  if (t->close_in_message && !t->close_asked) {
    t->close_asked = true;
    uvmqtt_client_close(c, NULL); /* the test waits with tu_loop_close */
  }
}

/* Counts reconnect attempts (the pre-connect hook after a failure). */
static int on_pre_connect(uvmqtt_client_t *c, unsigned attempt, void *arg) {
  ct_client_t *t = arg;
  (void)c;
  if (attempt == 0)
    return 0;
  t->reconnect_calls++;
  t->last_attempt = attempt;
  return 0;
}

static void on_log(uvmqtt_client_t *c, int level, const char *msg, void *arg) {
  ct_client_t *t = arg;
  (void)c;
  fprintf(stderr, "[%s] log %d: %s\n", t->name, level, msg);
}

void ct_client_init(ct_client_t *t, uv_loop_t *loop, const uvmqtt_options_t *o,
                    const char *name) {
  memset(t, 0, sizeof(*t));
  t->loop = loop;
  t->name = name;
  t->verbose = getenv("CT_VERBOSE") != NULL;
  assert_int_equal(uvmqtt_client_new(loop, o, &t->c), 0);
  uvmqtt_client_set_data(t->c, t);
  uvmqtt_client_on_connect(t->c, on_connect, t);
  uvmqtt_client_on_disconnect(t->c, on_disconnect, t);
  uvmqtt_client_on_message(t->c, on_message, t);
  uvmqtt_client_on_pre_connect(t->c, on_pre_connect, t);
  if (t->verbose)
    uvmqtt_client_on_log(t->c, on_log, t, UVMQTT_LOG_DEBUG);
}

void ct_connect(ct_client_t *t, int port) {
  assert_int_equal(uvmqtt_client_connect(t->c, "127.0.0.1", port), 0);
}

void ct_wait_connected(ct_client_t *t, int want) {
  assert_int_equal(ct_wait_int(t->loop, &t->connected, want, CT_WAIT_MS), 0);
  assert_true(uvmqtt_client_is_connected(t->c));
}

void ct_on_closed(uvmqtt_client_t *c) {
  ct_client_t *t = uvmqtt_client_get_data(c);
  assert_int_equal(t->closed, 0);
  t->closed = 1;
}

void ct_close(ct_client_t *t) {
  uvmqtt_client_close(t->c, ct_on_closed);
  assert_int_equal(ct_wait_int(t->loop, &t->closed, 1, CT_WAIT_MS), 0);
}

void ct_client_free(ct_client_t *t) {
  for (size_t i = 0; i < t->nmsgs; i++) {
    free(t->msgs[i].topic);
    free(t->msgs[i].payload);
  }
  free(t->msgs);
  t->msgs = NULL;
  t->nmsgs = t->msgcap = 0;
}

void ct_subscribe(ct_client_t *t, const char *filter, int qos) {
  ct_sub_t s;
  memset(&s, 0, sizeof(s));
  int id = uvmqtt_subscribe(t->c, filter, qos, ct_sub_cb, &s);
  assert_true(id > 0);
  assert_int_equal(ct_wait_int(t->loop, &s.calls, 1, CT_WAIT_MS), 0);
  assert_int_equal(s.calls, 1);
  assert_int_equal(s.status, 0);
  assert_int_equal(s.id, id);
  assert_int_equal(s.count, 1);
  assert_int_equal(s.codes[0], qos);
}

void ct_pub_cb(uvmqtt_client_t *c, const uvmqtt_pub_result_t *res, void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  ct_pub_t *p = arg;
  ct_client_t *t = uvmqtt_client_get_data(c);
  p->calls++;
  p->status = status;
  p->id = id;
  p->reason = res->reason_code;
  if (t && t->closed)
    p->after_close = true;
}

void ct_sub_cb(uvmqtt_client_t *c, const uvmqtt_sub_result_t *res, void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  const uint8_t *codes = res->codes;
  size_t count = res->count;
  const uvmqtt_props_t *props = res->props;
  ct_sub_t *s = arg;
  (void)c;
  s->calls++;
  s->status = status;
  s->id = id;
  s->count = count;
  s->has_props = props != NULL;
  for (size_t i = 0; i < count && i < sizeof(s->codes); i++)
    s->codes[i] = codes[i];
}

int ct_run_while_not(uv_loop_t *loop, bool (*cond)(void *), void *arg,
                     unsigned timeout_ms) {
  uint64_t end = tu_now_ms() + timeout_ms;
  while (!cond(arg)) {
    if (tu_now_ms() >= end)
      return -1;
    /* Short slices keep the check frequent without spinning. */
    tu_run_for(loop, 5);
  }
  return 0;
}

typedef struct {
  const int *ip;
  const size_t *sp;
  long want;
} wait_arg_t;

static bool wait_cond(void *arg) {
  wait_arg_t *w = arg;
  long v = w->ip ? (long)*w->ip : (long)*w->sp;
  return v >= w->want;
}

int ct_wait_int(uv_loop_t *loop, const int *counter, int want,
                unsigned timeout_ms) {
  wait_arg_t w = {counter, NULL, want};
  return ct_run_while_not(loop, wait_cond, &w, timeout_ms);
}

int ct_wait_size(uv_loop_t *loop, const size_t *counter, size_t want,
                 unsigned timeout_ms) {
  wait_arg_t w = {NULL, counter, (long)want};
  return ct_run_while_not(loop, wait_cond, &w, timeout_ms);
}

#define CT_MAX_BROKERS 4
static tu_broker_t brokers[CT_MAX_BROKERS];
static int nbrokers;
static int children[8];
static int nchildren;

tu_broker_t *ct_broker(const char *extra) {
  assert_true(nbrokers < CT_MAX_BROKERS);
  tu_broker_t *b = &brokers[nbrokers++];
  assert_int_equal(tu_broker_start(b, 0, extra), 0);
  return b;
}

void ct_track_child(int pid) {
  if (nchildren < 8)
    children[nchildren++] = pid;
}

/* meson kills a test that runs past its timeout: take the brokers and
 * children along instead of leaving them running. */
static void on_fatal_signal(int sig) {
  for (int i = 0; i < nbrokers; i++)
    if (brokers[i].pid > 0)
      kill(brokers[i].pid, SIGKILL);
  for (int i = 0; i < nchildren; i++)
    kill(children[i], SIGKILL);
  signal(sig, SIG_DFL);
  raise(sig);
}

void ct_install_signal_handlers(void) {
  signal(SIGTERM, on_fatal_signal);
  signal(SIGINT, on_fatal_signal);
  signal(SIGHUP, on_fatal_signal);
}

int ct_teardown(void **state) {
  (void)state;
  for (int i = 0; i < nchildren; i++) {
    kill(children[i], SIGKILL);
    waitpid(children[i], NULL, 0);
  }
  nchildren = 0;
  for (int i = 0; i < nbrokers; i++) {
    if (brokers[i].pid > 0)
      kill(brokers[i].pid, SIGCONT); /* a test may have stopped it */
    tu_broker_cleanup(&brokers[i]);
  }
  nbrokers = 0;
  return 0;
}

/* ---- scripted peer ------------------------------------------------------ */

typedef struct {
  uv_write_t req;
  uv_buf_t buf;
} peer_write_t;

static void peer_written(uv_write_t *req, int status) {
  (void)status;
  peer_write_t *w = (peer_write_t *)req;
  free(w->buf.base);
  free(w);
}

void ct_peer_send(ct_peer_t *p, const uint8_t *bytes, size_t len) {
  assert_true(p->has_conn);
  peer_write_t *w = calloc(1, sizeof(*w));
  w->buf = uv_buf_init(malloc(len), (unsigned)len);
  memcpy(w->buf.base, bytes, len);
  assert_int_equal(
      uv_write(&w->req, (uv_stream_t *)&p->conn, &w->buf, 1, peer_written), 0);
}

static void peer_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  ct_peer_t *p = h->data;
  (void)size;
  if (p->rx_len >= sizeof(p->rx)) {
    static char sink[4096];
    *buf = uv_buf_init(sink, sizeof(sink));
    return;
  }
  *buf = uv_buf_init((char *)p->rx + p->rx_len,
                     (unsigned)(sizeof(p->rx) - p->rx_len));
}

static void peer_conn_closed(uv_handle_t *h) {
  ct_peer_t *p = h->data;
  p->conn_closed = true;
}

static void peer_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  ct_peer_t *p = s->data;
  if (n < 0) {
    p->client_eof = 1;
    uv_read_stop(s);
    return;
  }
  if (buf->base >= (char *)p->rx && buf->base < (char *)p->rx + sizeof(p->rx))
    p->rx_len += (size_t)n;
  if (n > 0 && p->script && !p->script_sent) {
    p->script_sent = true;
    ct_peer_send(p, p->script, p->script_len);
  }
}

static void peer_accept(uv_stream_t *server, int status) {
  ct_peer_t *p = server->data;
  assert_int_equal(status, 0);
  p->accepted++;
  if (p->has_conn) {
    /* One connection at a time: refuse later ones by closing them. */
    uv_tcp_t *extra = malloc(sizeof(*extra));
    uv_tcp_init(server->loop, extra);
    if (uv_accept(server, (uv_stream_t *)extra) == 0)
      uv_close((uv_handle_t *)extra, (uv_close_cb)free);
    else
      uv_close((uv_handle_t *)extra, (uv_close_cb)free);
    return;
  }
  uv_tcp_init(server->loop, &p->conn);
  p->conn.data = p;
  assert_int_equal(uv_accept(server, (uv_stream_t *)&p->conn), 0);
  p->has_conn = true;
  uv_read_start((uv_stream_t *)&p->conn, peer_alloc, peer_read);
}

void ct_peer_start(uv_loop_t *loop, ct_peer_t *p, const uint8_t *script,
                   size_t len) {
  struct sockaddr_in a;
  memset(p, 0, sizeof(*p));
  p->script = script;
  p->script_len = len;
  p->port = tu_free_port();
  assert_true(p->port > 0);
  assert_int_equal(uv_ip4_addr("127.0.0.1", p->port, &a), 0);
  uv_tcp_init(loop, &p->server);
  p->server.data = p;
  assert_int_equal(uv_tcp_bind(&p->server, (struct sockaddr *)&a, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&p->server, 8, peer_accept), 0);
}

void ct_peer_stop(ct_peer_t *p) {
  uv_close((uv_handle_t *)&p->server, NULL);
  if (p->has_conn && !uv_is_closing((uv_handle_t *)&p->conn))
    uv_close((uv_handle_t *)&p->conn, peer_conn_closed);
}

typedef struct {
  ct_peer_t *p;
  size_t n;
} rx_arg_t;

static bool rx_cond(void *arg) {
  rx_arg_t *r = arg;
  return r->p->rx_len >= r->n;
}

int ct_peer_wait_rx(uv_loop_t *loop, ct_peer_t *p, size_t n,
                    unsigned timeout_ms) {
  rx_arg_t r = {p, n};
  return ct_run_while_not(loop, rx_cond, &r, timeout_ms);
}
