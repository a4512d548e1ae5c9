/* The ws layer over the real tcp layer against a scripted WebSocket server
 * running in the same loop (libuv TCP on 127.0.0.1, free port): replies and
 * frames mosquitto will not produce on demand. Every byte the client sends
 * after the upgrade is recorded and decoded independently (wshelp.h) and fed
 * to wslay's server side as a second, independent check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "testutil.h"
#include "transport/transport.h"
#include "uvmqtt/errors.h"
#include "wshelp.h"

/* ---- the scripted server --------------------------------------------------
 */

typedef struct {
  uv_loop_t *loop;
  uv_tcp_t lis, conn;
  int port, accepted, handles;
  char req[16384];
  size_t req_len;
  int req_done;
  char key[64], protocol[64], host[128], path[128];
  /* Script: the reply (%s is replaced by the right accept key, or by
   * `accept` when set), then `post` bytes, sent together or in pieces of
   * `piece` bytes every `piece_ms`. */
  const char *reply_fmt;
  const char *accept;
  const char *extra; /* extra reply header lines */
  uint8_t *post;
  size_t post_len;
  size_t piece;
  unsigned piece_ms;
  uint8_t *out;
  size_t out_len, out_off;
  uv_timer_t timer;
  /* What the client sent after its request. */
  uint8_t *cin;
  size_t cin_len, cin_cap;
} srv_t;

typedef struct {
  uv_write_t req;
  uv_buf_t buf;
} swrite_t;

static void srv_on_write(uv_write_t *w, int status) {
  (void)status;
  free(w);
}

static void srv_send(srv_t *s, const uint8_t *p, size_t n) {
  swrite_t *w = calloc(1, sizeof(*w));
  w->buf = uv_buf_init((char *)p, (unsigned)n);
  if (uv_write(&w->req, (uv_stream_t *)&s->conn, &w->buf, 1, srv_on_write))
    free(w);
}

static void srv_piece(uv_timer_t *t) {
  srv_t *s = t->data;
  size_t n = s->out_len - s->out_off;
  if (n > s->piece)
    n = s->piece;
  srv_send(s, s->out + s->out_off, n);
  s->out_off += n;
  if (s->out_off < s->out_len)
    uv_timer_start(&s->timer, srv_piece, s->piece_ms, 0);
}

static void srv_reply(srv_t *s) {
  char acc[29];
  wh_accept(s->key, strlen(s->key), acc);
  const char *fmt = s->reply_fmt ? s->reply_fmt
                                 : "HTTP/1.1 101 Switching Protocols\r\n"
                                   "Upgrade: websocket\r\n"
                                   "Connection: Upgrade\r\n"
                                   "Sec-WebSocket-Accept: %s\r\n"
                                   "Sec-WebSocket-Protocol: mqtt\r\n";
  size_t extra = s->extra ? strlen(s->extra) : 0;
  size_t cap = strlen(fmt) + 64 + extra + 2 + s->post_len;
  s->out = malloc(cap);
  int n = snprintf((char *)s->out, cap, fmt, s->accept ? s->accept : acc);
  size_t len = (size_t)n;
  if (!s->reply_fmt) {
    memcpy(s->out + len, s->extra ? s->extra : "", extra);
    len += extra;
    memcpy(s->out + len, "\r\n", 2);
    len += 2;
  }
  if (s->post_len)
    memcpy(s->out + len, s->post, s->post_len);
  s->out_len = len + s->post_len;
  if (s->piece == 0) {
    srv_send(s, s->out, s->out_len);
    s->out_off = s->out_len;
  } else {
    srv_piece(&s->timer);
  }
}

static void srv_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  (void)h;
  b->base = malloc(sz);
  b->len = sz;
}

static void srv_on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  srv_t *s = st->data;
  if (n > 0) {
    size_t off = 0;
    if (!s->req_done) {
      size_t take = (size_t)n;
      if (take > sizeof(s->req) - 1 - s->req_len)
        take = sizeof(s->req) - 1 - s->req_len;
      memcpy(s->req + s->req_len, b->base, take);
      s->req_len += take;
      s->req[s->req_len] = '\0';
      char *e = strstr(s->req, "\r\n\r\n");
      if (e) {
        size_t hl = (size_t)(e + 4 - s->req);
        off = take - (s->req_len - hl);
        s->req_len = hl;
        s->req[hl] = '\0';
        s->req_done = 1;
        wh_header(s->req, "Sec-WebSocket-Key", s->key, sizeof(s->key));
        wh_header(s->req, "Sec-WebSocket-Protocol", s->protocol,
                  sizeof(s->protocol));
        wh_header(s->req, "Host", s->host, sizeof(s->host));
        sscanf(s->req, "GET %127s HTTP/1.1", s->path);
        srv_reply(s);
      } else {
        off = (size_t)n;
      }
    }
    size_t rest = (size_t)n - off;
    if (rest) {
      if (s->cin_len + rest > s->cin_cap) {
        s->cin_cap = (s->cin_len + rest) * 2;
        s->cin = realloc(s->cin, s->cin_cap);
      }
      memcpy(s->cin + s->cin_len, b->base + off, rest);
      s->cin_len += rest;
    }
  }
  free(b->base);
}

static void srv_on_conn(uv_stream_t *l, int status) {
  srv_t *s = l->data;
  assert_int_equal(status, 0);
  assert_false(s->accepted); /* one client per test */
  uv_tcp_init(s->loop, &s->conn);
  s->conn.data = s;
  s->handles++;
  assert_int_equal(uv_accept(l, (uv_stream_t *)&s->conn), 0);
  uv_tcp_nodelay(&s->conn, 1);
  s->accepted = 1;
  uv_read_start((uv_stream_t *)&s->conn, srv_alloc, srv_on_read);
}

static void srv_start(srv_t *s, uv_loop_t *loop) {
  s->loop = loop;
  s->port = tu_free_port();
  assert_true(s->port > 0);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", s->port, &a);
  uv_tcp_init(loop, &s->lis);
  uv_timer_init(loop, &s->timer);
  s->timer.data = s;
  s->lis.data = s;
  s->handles = 2;
  assert_int_equal(uv_tcp_bind(&s->lis, (struct sockaddr *)&a, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&s->lis, 8, srv_on_conn), 0);
}

static void srv_closed(uv_handle_t *h) {
  srv_t *s = h->data;
  s->handles--;
}

static void srv_stop(srv_t *s) {
  uv_close((uv_handle_t *)&s->lis, srv_closed);
  uv_close((uv_handle_t *)&s->timer, srv_closed);
  if (s->accepted)
    uv_close((uv_handle_t *)&s->conn, srv_closed);
}

static void srv_free(srv_t *s) {
  free(s->out);
  free(s->cin);
  free(s->post);
}

/* ---- the client ------------------------------------------------------------
 */

typedef struct {
  uv_loop_t loop;
  uv_timer_t tick; /* bounds every UV_RUN_ONCE wait */
  srv_t srv;
  uvmqtt_ws_opts_t opts;
  uvmqtt_stream_t *ws;
  uvmqtt_stream_read_cb ws_lower_read; /* the ws layer's tcp read_cb */
  int lower_reads;                     /* tcp reads during the upgrade */
  int opened, open_status, http_status;
  uint8_t *in;
  size_t in_len, in_cap;
  int ended, end_status;
  int closed, writes_done;
  char last_log[256];
} cli_t;

static void cli_log(uvmqtt_stream_t *s, int level, const char *msg) {
  cli_t *c = s->data;
  (void)level;
  snprintf(c->last_log, sizeof(c->last_log), "%s", msg);
}

static void cli_read(uvmqtt_stream_t *s, ssize_t n, const uint8_t *buf) {
  cli_t *c = s->data;
  assert_false(c->ended);
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

/* Counts the tcp reads the ws layer sees while upgrading. */
static void counting_read(uvmqtt_stream_t *lower, ssize_t n,
                          const uint8_t *buf) {
  uvmqtt_stream_t *ws = lower->data;
  cli_t *c = ws->data;
  if (!c->opened)
    c->lower_reads++;
  c->ws_lower_read(lower, n, buf);
}

static void cli_ws_open(uvmqtt_stream_t *s, int status) {
  cli_t *c = s->data;
  c->opened = 1;
  c->open_status = status;
  c->http_status = uvmqtt__ws_http_status(s);
}

static void cli_tcp_open(uvmqtt_stream_t *tcp, int status) {
  cli_t *c = tcp->data;
  if (status != 0) {
    c->opened = 1;
    c->open_status = status;
    uvmqtt__stream_close(tcp, NULL);
    return;
  }
  assert_int_equal(uvmqtt__ws_new(tcp, &c->opts, &c->ws), 0);
  c->ws->data = c;
  c->ws->read_cb = cli_read;
  c->ws->log_cb = cli_log;
  c->ws_lower_read = tcp->read_cb;
  tcp->read_cb = counting_read;
  assert_int_equal(c->ws->ops->open(c->ws, cli_ws_open), 0);
}

static void cli_closed(uvmqtt_stream_t *s) {
  cli_t *c = s->data;
  c->closed = 1;
}

static void cli_write_done(uvmqtt_stream_t *s, int status, void *arg) {
  cli_t *c = s->data;
  (void)arg;
  assert_int_equal(status, 0);
  c->writes_done++;
}

static void on_tick(uv_timer_t *t) {
  (void)t;
}

static void cli_init(cli_t *c) {
  memset(c, 0, sizeof(*c));
  assert_int_equal(uv_loop_init(&c->loop), 0);
  uv_timer_init(&c->loop, &c->tick);
  uv_timer_start(&c->tick, on_tick, 10, 10);
  uv_unref((uv_handle_t *)&c->tick);
  srv_start(&c->srv, &c->loop);
  c->opts.host = "127.0.0.1";
}

static void cli_connect(cli_t *c) {
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", c->srv.port, &a);
  uvmqtt_tcp_opts_t to = {.nodelay = 1};
  uvmqtt_stream_t *tcp;
  assert_int_equal(uvmqtt__tcp_connect(&c->loop, (struct sockaddr *)&a, &to,
                                       cli_tcp_open, c, &tcp),
                   0);
  assert_int_equal(tu_run_until(&c->loop, &c->opened, 5000), 0);
}

static void cli_done(cli_t *c) {
  if (c->ws) {
    uvmqtt__stream_close(c->ws, cli_closed);
    assert_int_equal(tu_run_until(&c->loop, &c->closed, 2000), 0);
  }
  srv_stop(&c->srv);
  uv_close((uv_handle_t *)&c->tick, NULL);
  assert_int_equal(tu_loop_close(&c->loop, 2000), 0);
  assert_int_equal(c->srv.handles, 0);
  srv_free(&c->srv);
  free(c->in);
}

/* Waits until the server has received at least n bytes of frames. */
static void wait_cin(cli_t *c, size_t n) {
  uint64_t end = tu_now_ms() + 3000;
  while (c->srv.cin_len < n && tu_now_ms() < end)
    uv_run(&c->loop, UV_RUN_ONCE);
  assert_true(c->srv.cin_len >= n);
}

/* Runs the loop until the client has received at least n payload bytes. */
static void wait_in(cli_t *c, size_t n) {
  uint64_t end = tu_now_ms() + 3000;
  while (c->in_len < n && !c->ended && tu_now_ms() < end)
    uv_run(&c->loop, UV_RUN_ONCE);
}

typedef struct {
  int opcode;
  uint8_t *data;
  size_t len;
} msg_t;

/* Decodes the client's frames: all MUST be masked. */
static size_t decode_client(cli_t *c, msg_t *m, size_t max) {
  size_t off = 0, k = 0;
  while (off < c->srv.cin_len && k < max) {
    wh_cframe_t f = {0};
    uint8_t *buf = malloc(c->srv.cin_len - off + 1);
    assert_true(wh_decode(c->srv.cin + off, c->srv.cin_len - off, &f, buf,
                          c->srv.cin_len - off));
    assert_true(f.masked);
    assert_true(f.fin);
    m[k].opcode = f.opcode;
    m[k].data = buf;
    m[k].len = (size_t)f.len;
    off += f.frame_len;
    k++;
  }
  assert_int_equal(off, c->srv.cin_len);
  return k;
}

static void free_msgs(msg_t *m, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(m[i].data);
}

static size_t add_frame(srv_t *s, int fin, uint8_t op, const void *p,
                        size_t n) {
  s->post = realloc(s->post, s->post_len + n + 10);
  size_t k = wh_frame(s->post + s->post_len, fin, op, p, n);
  s->post_len += k;
  return k;
}

/* ---- tests ------------------------------------------------------------------
 */

static void test_request_seen_by_server(void **state) {
  (void)state;
  cli_t c;
  cli_init(&c);
  const char *hdrs[] = {"Authorization: Basic dTpw"};
  c.opts.host = "example.org:8080";
  c.opts.path = "/custom";
  c.opts.protocol = "mqttv3.1";
  c.opts.headers = hdrs;
  c.opts.header_count = 1;
  c.srv.reply_fmt = "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                    "Sec-WebSocket-Protocol: mqttv3.1\r\n\r\n";
  cli_connect(&c);
  assert_int_equal(c.open_status, 0);
  assert_string_equal(c.srv.path, "/custom");
  assert_string_equal(c.srv.host, "example.org:8080");
  assert_string_equal(c.srv.protocol, "mqttv3.1");
  char v[64];
  assert_int_equal(wh_header(c.srv.req, "Authorization", v, sizeof(v)), 0);
  assert_string_equal(v, "Basic dTpw");
  cli_done(&c);
}

static void test_big_reply(void **state) {
  (void)state;
  cli_t c;
  cli_init(&c);
  /* 10 KiB of headers, then a CONNACK frame in the same write. */
  char *extra = malloc(11 * 1024);
  size_t n = 0;
  for (int i = 0; n < 10 * 1024; i++)
    n += (size_t)sprintf(extra + n, "X-Padding-%04d: %040d\r\n", i, i);
  c.srv.extra = extra;
  add_frame(&c.srv, 1, 0x2, "\x20\x02\x00\x00", 4);
  cli_connect(&c);
  assert_int_equal(c.open_status, 0);
  wait_in(&c, 4);
  assert_int_equal(c.in_len, 4);
  assert_memory_equal(c.in, "\x20\x02\x00\x00", 4);
  cli_done(&c);
  free(extra);
}

static void test_reply_one_byte_pieces(void **state) {
  (void)state;
  cli_t c;
  cli_init(&c);
  add_frame(&c.srv, 1, 0x2, "\x20\x02\x00\x00", 4);
  c.srv.piece = 1;
  c.srv.piece_ms = 1;
  cli_connect(&c);
  assert_int_equal(c.open_status, 0);
  /* The reply really arrived in many reads. */
  assert_true(c.lower_reads > 50);
  wait_in(&c, 4);
  assert_int_equal(c.in_len, 4);
  assert_memory_equal(c.in, "\x20\x02\x00\x00", 4);
  cli_done(&c);
}

static void test_wrong_accept(void **state) {
  (void)state;
  cli_t c;
  cli_init(&c);
  c.srv.accept = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
  cli_connect(&c);
  assert_int_equal(c.open_status, UVMQTT_EWS_ACCEPT);
  assert_non_null(strstr(c.last_log, "Accept"));
  cli_done(&c);
}

static void test_missing_protocol(void **state) {
  (void)state;
  cli_t c;
  cli_init(&c);
  c.srv.reply_fmt = "HTTP/1.1 101 Switching Protocols\r\n"
                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: %s\r\n\r\n";
  cli_connect(&c);
  assert_int_equal(c.open_status, UVMQTT_EWS_PROTOCOL);
  cli_done(&c);
}

static void test_status_401(void **state) {
  (void)state;
  cli_t c;
  cli_init(&c);
  c.srv.reply_fmt = "HTTP/1.1 401 Unauthorized\r\n"
                    "WWW-Authenticate: Basic realm=\"mqtt\"\r\n"
                    "Content-Length: 12\r\n\r\nUnauthorized";
  cli_connect(&c);
  assert_int_equal(c.open_status, UVMQTT_EWS_STATUS);
  assert_int_equal(c.http_status, 401);
  assert_int_equal(uvmqtt__ws_http_status(c.ws), 401);
  cli_done(&c);
}

static void test_server_ping(void **state) {
  (void)state;
  cli_t c;
  cli_init(&c);
  add_frame(&c.srv, 1, 0x9, "are you there?", 14);
  add_frame(&c.srv, 1, 0x2, "\xd0\x00", 2);
  cli_connect(&c);
  assert_int_equal(c.open_status, 0);
  wait_cin(&c, 2 + 4 + 14);
  msg_t m[4];
  size_t k = decode_client(&c, m, 4);
  assert_int_equal(k, 1);
  assert_int_equal(m[0].opcode, 0xA);
  assert_int_equal(m[0].len, 14);
  assert_memory_equal(m[0].data, "are you there?", 14);
  free_msgs(m, k);
  assert_int_equal(c.in_len, 2); /* the ping is not data */
  cli_done(&c);
}

static void test_server_close(void **state) {
  (void)state;
  cli_t c;
  cli_init(&c);
  add_frame(&c.srv, 1, 0x2, "\xd0\x00", 2);
  add_frame(&c.srv, 1, 0x8,
            "\x03\xe8"
            "done",
            6);
  cli_connect(&c);
  assert_int_equal(c.open_status, 0);
  assert_int_equal(tu_run_until(&c.loop, &c.ended, 2000), 0);
  assert_int_equal(c.end_status, UV_EOF);
  assert_int_equal(c.in_len, 2);
  wait_cin(&c, 2 + 4 + 2);
  msg_t m[4];
  size_t k = decode_client(&c, m, 4);
  assert_int_equal(k, 1);
  assert_int_equal(m[0].opcode, 0x8);
  assert_int_equal(m[0].len, 2);
  assert_memory_equal(m[0].data, "\x03\xe8", 2);
  free_msgs(m, k);
  cli_done(&c);
}

static void test_mqtt_split_and_coalesced(void **state) {
  (void)state;
  cli_t c;
  cli_init(&c);
  /* CONNACK over three frames of a fragmented message, then a PUBLISH, a
   * PINGRESP and a SUBACK in one frame, sent to the client in 5-byte pieces
   * so frames also straddle reads. */
  add_frame(&c.srv, 0, 0x2, "\x20", 1);
  add_frame(&c.srv, 0, 0x0, "\x02\x00", 2);
  add_frame(&c.srv, 1, 0x0, "\x00", 1);
  static const uint8_t three[] = {0x30, 0x06, 0x00, 0x01, 't',  'a',  'b', 'c',
                                  0xd0, 0x00, 0x90, 0x03, 0x00, 0x01, 0x01};
  add_frame(&c.srv, 1, 0x2, three, sizeof(three));
  c.srv.piece = 5;
  c.srv.piece_ms = 1;
  cli_connect(&c);
  assert_int_equal(c.open_status, 0);
  wait_in(&c, 4 + sizeof(three));
  assert_int_equal(c.in_len, 4 + sizeof(three));
  assert_memory_equal(c.in, "\x20\x02\x00\x00", 4);
  assert_memory_equal(c.in + 4, three, sizeof(three));
  assert_false(c.ended);
  cli_done(&c);
}

static void test_frame_over_max(void **state) {
  (void)state;
  cli_t c;
  cli_init(&c);
  c.opts.max_frame_size = 1000;
  uint8_t *big = calloc(1, 2000);
  add_frame(&c.srv, 1, 0x2, big, 1000); /* at the limit: fine */
  add_frame(&c.srv, 1, 0x2, big, 2000);
  free(big);
  cli_connect(&c);
  assert_int_equal(c.open_status, 0);
  assert_int_equal(tu_run_until(&c.loop, &c.ended, 2000), 0);
  assert_int_equal(c.end_status, UVMQTT_EWS_TOOBIG);
  assert_int_equal(c.in_len, 1000);
  wait_cin(&c, 8);
  msg_t m[4];
  size_t k = decode_client(&c, m, 4);
  assert_int_equal(k, 1);
  assert_int_equal(m[0].opcode, 0x8);
  assert_memory_equal(m[0].data, "\x03\xf1", 2); /* 1009 */
  free_msgs(m, k);
  cli_done(&c);
}

/* wslay's server side, fed from memory, as an independent reader of the
 * client's frames. */
typedef struct {
  const uint8_t *p;
  size_t n, off;
  msg_t msgs[8];
  size_t nmsgs;
} wslay_feed_t;

static ssize_t wf_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len,
                       int flags, void *u) {
  wslay_feed_t *w = u;
  (void)flags;
  if (w->off == w->n) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  size_t k = w->n - w->off < len ? w->n - w->off : len;
  memcpy(buf, w->p + w->off, k);
  w->off += k;
  return (ssize_t)k;
}

static ssize_t wf_send(wslay_event_context_ptr ctx, const uint8_t *d,
                       size_t len, int flags, void *u) {
  (void)ctx, (void)d, (void)flags, (void)u;
  return (ssize_t)len;
}

static void wf_msg(wslay_event_context_ptr ctx,
                   const struct wslay_event_on_msg_recv_arg *a, void *u) {
  wslay_feed_t *w = u;
  (void)ctx;
  if (w->nmsgs < 8) {
    w->msgs[w->nmsgs].opcode = a->opcode;
    w->msgs[w->nmsgs].len = a->msg_length;
    w->msgs[w->nmsgs].data = malloc(a->msg_length + 1);
    memcpy(w->msgs[w->nmsgs].data, a->msg, a->msg_length);
    w->nmsgs++;
  }
}

static void test_client_frames_masked(void **state) {
  (void)state;
  cli_t c;
  cli_init(&c);
  cli_connect(&c);
  assert_int_equal(c.open_status, 0);
  size_t sizes[] = {1, 300, 70000};
  uint8_t *data = malloc(70000);
  for (size_t i = 0; i < 70000; i++)
    data[i] = (uint8_t)(i * 31 + 7);
  size_t total = 0;
  for (size_t i = 0; i < 3; i++) {
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)sizes[i]);
    assert_int_equal(c.ws->ops->write(c.ws, &b, 1, cli_write_done, NULL), 0);
    total += sizes[i] + 4 + (sizes[i] < 126 ? 2 : sizes[i] < 65536 ? 4 : 10);
  }
  wait_cin(&c, total);
  assert_int_equal(c.writes_done, 3);
  msg_t m[4];
  size_t k = decode_client(&c, m, 4);
  assert_int_equal(k, 3);
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(m[i].opcode, 0x2);
    assert_int_equal(m[i].len, sizes[i]);
    assert_memory_equal(m[i].data, data, sizes[i]);
  }
  free_msgs(m, k);
  /* wslay (server side, which refuses unmasked frames) agrees. */
  wslay_feed_t w = {.p = c.srv.cin, .n = c.srv.cin_len};
  struct wslay_event_callbacks cbs = {wf_recv, wf_send, NULL,  NULL,
                                      NULL,    NULL,    wf_msg};
  wslay_event_context_ptr ctx;
  assert_int_equal(wslay_event_context_server_init(&ctx, &cbs, &w), 0);
  assert_int_equal(wslay_event_recv(ctx), 0);
  assert_false(wslay_event_get_close_sent(ctx));
  assert_int_equal(w.nmsgs, 3);
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(w.msgs[i].opcode, WSLAY_BINARY_FRAME);
    assert_int_equal(w.msgs[i].len, sizes[i]);
    assert_memory_equal(w.msgs[i].data, data, sizes[i]);
  }
  free_msgs(w.msgs, w.nmsgs);
  wslay_event_context_free(ctx);
  /* Control check: an unmasked frame is refused by the same reader. */
  uint8_t bad[16];
  size_t bn = wh_frame(bad, 1, 0x2, "abc", 3);
  wslay_feed_t w2 = {.p = bad, .n = bn};
  assert_int_equal(wslay_event_context_server_init(&ctx, &cbs, &w2), 0);
  wslay_event_recv(ctx);
  assert_int_equal(w2.nmsgs, 0);
  assert_true(wslay_event_get_close_sent(ctx) ||
              !wslay_event_get_read_enabled(ctx));
  wslay_event_context_free(ctx);
  free(data);
  cli_done(&c);
}

static void test_shutdown_close_handshake(void **state) {
  (void)state;
  cli_t c;
  cli_init(&c);
  cli_connect(&c);
  assert_int_equal(c.open_status, 0);
  c.ws->ops->shutdown(c.ws);
  wait_cin(&c, 8);
  msg_t m[4];
  size_t k = decode_client(&c, m, 4);
  assert_int_equal(k, 1);
  assert_int_equal(m[0].opcode, 0x8);
  assert_memory_equal(m[0].data, "\x03\xe8", 2);
  free_msgs(m, k);
  /* The server answers; the client sees a clean end. */
  static const uint8_t answer[] = {0x88, 0x02, 0x03, 0xe8};
  srv_send(&c.srv, answer, sizeof(answer));
  assert_int_equal(tu_run_until(&c.loop, &c.ended, 2000), 0);
  assert_int_equal(c.end_status, UV_EOF);
  cli_done(&c);
}

static void test_server_disappears(void **state) {
  (void)state;
  cli_t c;
  cli_init(&c);
  cli_connect(&c);
  assert_int_equal(c.open_status, 0);
  uv_close((uv_handle_t *)&c.srv.conn, srv_closed);
  c.srv.accepted = 0;
  assert_int_equal(tu_run_until(&c.loop, &c.ended, 2000), 0);
  assert_true(c.end_status == UV_EOF || c.end_status == UV_ECONNRESET);
  cli_done(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_request_seen_by_server),
      cmocka_unit_test(test_big_reply),
      cmocka_unit_test(test_reply_one_byte_pieces),
      cmocka_unit_test(test_wrong_accept),
      cmocka_unit_test(test_missing_protocol),
      cmocka_unit_test(test_status_401),
      cmocka_unit_test(test_server_ping),
      cmocka_unit_test(test_server_close),
      cmocka_unit_test(test_mqtt_split_and_coalesced),
      cmocka_unit_test(test_frame_over_max),
      cmocka_unit_test(test_client_frames_masked),
      cmocka_unit_test(test_shutdown_close_handshake),
      cmocka_unit_test(test_server_disappears),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
