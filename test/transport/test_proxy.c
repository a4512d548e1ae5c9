/* The proxy layers (src/transport/proxy_http.c, socks5.c over proxy.c)
 * against a scripted proxy: a libuv server in the same loop that checks
 * nothing itself, records what the client sent, answers each step of a
 * script once enough request bytes arrived (whole, or one byte per loop
 * turn), then echoes the tunnel. Real proxies cannot be made to split,
 * garble, bloat or cut their replies on demand; this one can.
 *
 * Also the unix-domain sockets of src/transport/tcp.c (path, abstract
 * namespace, missing socket, refused). Every wait is bounded. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "testutil.h"
#include "transport/transport.h"
#include "uvmqtt/alloc.h"
#include "uvmqtt/errors.h"

#define WAIT_MS 5000
#define MAX_STEPS 4

typedef struct {
  size_t after;        /* answer once this many request bytes came in all */
  const uint8_t *data; /* the answer */
  size_t len;
} step_t;

typedef struct {
  uv_loop_t loop;
  /* the scripted proxy */
  uv_tcp_t lis;
  uv_stream_t *peer; /* tcp or pipe */
  uv_tcp_t peer_tcp;
  uv_pipe_t peer_pipe, lis_pipe;
  uv_timer_t drip;
  int use_pipe;
  int accepted, peer_closed, lis_closed, drip_closed;
  step_t steps[MAX_STEPS];
  int nsteps, step;
  int one_byte;       /* answer one byte per loop turn */
  int close_after;    /* close once the script is sent */
  int echo;           /* echo the tunnel after the script */
  const uint8_t *cur; /* what is being dripped */
  size_t cur_len, cur_off;
  uint8_t rx[2048];
  size_t rx_len;
  /* the client side */
  uvmqtt_stream_t *s;
  int opened, open_status, closed, lower_opened;
  int (*make)(uvmqtt_stream_t *, const uvmqtt_proxy_opts_t *,
              uvmqtt_stream_t **);
  uvmqtt_proxy_opts_t opts;
  uint8_t got[4096];
  size_t got_len;
  size_t want; /* reached: got_len >= want */
  int reached;
  int eof;
  int code;
  struct sockaddr_in addr;
} fx_t;

/* ---- the scripted proxy -------------------------------------------------- */

static void peer_send(fx_t *f, const void *b, size_t n) {
  tu_write_copy(f->peer, b, n);
}

static void on_peer_closed(uv_handle_t *h) {
  ((fx_t *)h->data)->peer_closed = 1;
}

static void close_peer(fx_t *f) {
  if (f->peer && !uv_is_closing((uv_handle_t *)f->peer))
    uv_close((uv_handle_t *)f->peer, on_peer_closed);
}

static void script_sent(fx_t *f) {
  f->cur = NULL;
  if (++f->step == f->nsteps && f->close_after)
    close_peer(f);
}

static void on_drip(uv_timer_t *t) {
  fx_t *f = t->data;
  if (!f->cur || uv_is_closing((uv_handle_t *)f->peer))
    return;
  peer_send(f, f->cur + f->cur_off, 1);
  if (++f->cur_off == f->cur_len) {
    uv_timer_stop(t);
    script_sent(f);
  }
}

static void maybe_answer(fx_t *f) {
  if (f->cur || f->step >= f->nsteps || f->rx_len < f->steps[f->step].after)
    return;
  const step_t *st = &f->steps[f->step];
  if (f->one_byte && st->len > 1) {
    f->cur = st->data;
    f->cur_len = st->len;
    f->cur_off = 0;
    uv_timer_start(&f->drip, on_drip, 1, 1);
    return;
  }
  if (st->len)
    peer_send(f, st->data, st->len);
  script_sent(f);
}

static void peer_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  fx_t *f = st->data;
  if (n > 0) {
    if (f->step >= f->nsteps && f->echo) {
      peer_send(f, b->base, (size_t)n);
    } else {
      size_t room = sizeof(f->rx) - f->rx_len;
      size_t take = (size_t)n < room ? (size_t)n : room;
      memcpy(f->rx + f->rx_len, b->base, take);
      f->rx_len += take;
      maybe_answer(f);
    }
  } else if (n < 0) {
    close_peer(f);
  }
  free(b->base);
}

static void on_accept(uv_stream_t *l, int status) {
  fx_t *f = l->data;
  assert_int_equal(status, 0);
  if (f->use_pipe) {
    assert_int_equal(uv_pipe_init(&f->loop, &f->peer_pipe, 0), 0);
    f->peer = (uv_stream_t *)&f->peer_pipe;
  } else {
    assert_int_equal(uv_tcp_init(&f->loop, &f->peer_tcp), 0);
    f->peer = (uv_stream_t *)&f->peer_tcp;
    uv_tcp_nodelay(&f->peer_tcp, 1); /* one segment per drip */
  }
  f->peer->data = f;
  assert_int_equal(uv_accept(l, f->peer), 0);
  assert_int_equal(uv_read_start(f->peer, tu_alloc_cb, peer_read), 0);
  f->accepted = 1;
  maybe_answer(f); /* a step due at once: the proxy speaks first */
}

static void on_lis_closed(uv_handle_t *h) {
  ((fx_t *)h->data)->lis_closed = 1;
}

static void on_drip_closed(uv_handle_t *h) {
  ((fx_t *)h->data)->drip_closed = 1;
}

static void script(fx_t *f, size_t after, const void *data, size_t len) {
  assert_true(f->nsteps < MAX_STEPS);
  f->steps[f->nsteps++] = (step_t){after, data, len};
}

/* ---- the client ---------------------------------------------------------- */

static void on_read(uvmqtt_stream_t *s, ssize_t n, const uint8_t *buf) {
  fx_t *f = s->data;
  if (n < 0) {
    f->eof = (int)n;
    return;
  }
  assert_true(f->got_len + (size_t)n <= sizeof(f->got));
  memcpy(f->got + f->got_len, buf, (size_t)n);
  f->got_len += (size_t)n;
  f->reached = f->got_len >= f->want;
}

static void on_open(uvmqtt_stream_t *s, int status) {
  fx_t *f = s->data;
  f->opened = 1;
  f->open_status = status;
  f->code = uvmqtt__proxy_reply_code(s);
  if (status == 0)
    s->read_cb = on_read;
}

static void on_lower_open(uvmqtt_stream_t *s, int status) {
  fx_t *f = s->data;
  f->lower_opened = 1;
  if (status != 0) {
    f->opened = 1;
    f->open_status = status;
    return;
  }
  uvmqtt_stream_t *up = NULL;
  int rc = f->make(s, &f->opts, &up);
  if (rc != 0) {
    f->opened = 1;
    f->open_status = rc;
    return;
  }
  f->s = up;
  up->data = f;
  assert_int_equal(up->ops->open(up, on_open), 0);
  /* open_cb never fires from inside open() */
  assert_int_equal(f->opened, 0);
}

static void on_closed(uvmqtt_stream_t *s) {
  ((fx_t *)s->data)->closed = 1;
}

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(uv_tcp_init(&f->loop, &f->lis), 0);
  assert_int_equal(uv_timer_init(&f->loop, &f->drip), 0);
  f->lis.data = f;
  f->drip.data = f;
  assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &f->addr), 0);
  assert_int_equal(uv_tcp_bind(&f->lis, (struct sockaddr *)&f->addr, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&f->lis, 8, on_accept), 0);
  int len = sizeof(f->addr);
  assert_int_equal(
      uv_tcp_getsockname(&f->lis, (struct sockaddr *)&f->addr, &len), 0);
  f->echo = 1;
  f->opts.host = "broker.example";
  f->opts.port = 1883;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  if (f->s && !f->closed) {
    uvmqtt__stream_close(f->s, on_closed);
    tu_run_until(&f->loop, &f->closed, WAIT_MS);
  }
  if (f->accepted) {
    close_peer(f);
    tu_run_until(&f->loop, &f->peer_closed, WAIT_MS);
  }
  uv_close((uv_handle_t *)&f->lis, on_lis_closed);
  tu_run_until(&f->loop, &f->lis_closed, WAIT_MS);
  if (f->use_pipe) {
    f->lis_closed = 0;
    uv_close((uv_handle_t *)&f->lis_pipe, on_lis_closed);
    tu_run_until(&f->loop, &f->lis_closed, WAIT_MS);
  }
  uv_close((uv_handle_t *)&f->drip, on_drip_closed);
  tu_run_until(&f->loop, &f->drip_closed, WAIT_MS);
  assert_int_equal(tu_loop_close(&f->loop, WAIT_MS), 0);
  free(f);
  return 0;
}

/* Connects to the scripted proxy through the layer and waits for open_cb;
 * returns its status. */
static int run_open(fx_t *f,
                    int (*make)(uvmqtt_stream_t *, const uvmqtt_proxy_opts_t *,
                                uvmqtt_stream_t **)) {
  uvmqtt_stream_t *tcp = NULL;
  f->make = make;
  assert_int_equal(uvmqtt__tcp_connect(&f->loop, (struct sockaddr *)&f->addr,
                                       NULL, on_lower_open, f, &tcp),
                   0);
  assert_int_equal(tu_run_until(&f->loop, &f->opened, WAIT_MS), 0);
  if (!f->s) {
    /* The tcp stream failed, or the layer refused its options. */
    f->s = tcp;
    f->s->data = f;
  }
  return f->open_status;
}

static void on_tunnel_written(uvmqtt_stream_t *s, int status, void *arg) {
  fx_t *f = s->data;
  assert_ptr_equal(s, f->s); /* with this stream, not the lower one */
  assert_int_equal(status, 0);
  (*(int *)arg)++;
}

/* Runs until n bytes came through (bounded). */
static void wait_got(fx_t *f, size_t n) {
  f->want = n;
  f->reached = f->got_len >= n;
  tu_run_until(&f->loop, &f->reached, WAIT_MS);
}

/* The tunnel carries bytes both ways: what we write comes back after
 * `before` (bytes that already came through). */
static void check_echo(fx_t *f, const char *before) {
  size_t bl = strlen(before);
  assert_int_equal(tu_run_until(&f->loop, &f->accepted, WAIT_MS), 0);
  wait_got(f, bl);
  assert_int_equal(f->got_len, bl);
  assert_memory_equal(f->got, before, bl);
  static const char msg[] = "through the tunnel";
  int done = 0;
  uv_buf_t b = uv_buf_init((char *)msg, sizeof(msg) - 1);
  assert_int_equal(uvmqtt__stream_write(f->s, &b, 1, on_tunnel_written, &done),
                   0);
  assert_int_equal(done, 0);
  assert_int_equal(tu_run_until(&f->loop, &done, WAIT_MS), 0);
  wait_got(f, bl + sizeof(msg) - 1);
  assert_int_equal(f->got_len, bl + sizeof(msg) - 1);
  assert_memory_equal(f->got + bl, msg, sizeof(msg) - 1);
}

static void assert_rx(fx_t *f, const void *want, size_t len) {
  assert_int_equal(f->rx_len, len);
  assert_memory_equal(f->rx, want, len);
}

#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1

/* ---- HTTP CONNECT -------------------------------------------------------- */

static const char http_req[] = "CONNECT broker.example:1883 HTTP/1.1\r\n"
                               "Host: broker.example:1883\r\n\r\n";

static void http_ok(void **state) {
  fx_t *f = *state;
  script(f, sizeof(http_req) - 1,
         S("HTTP/1.1 200 Connection established\r\n\r\n"));
  assert_int_equal(run_open(f, uvmqtt__http_proxy_new), 0);
  assert_rx(f, http_req, sizeof(http_req) - 1);
  check_echo(f, "");
}

/* Basic credentials; an IPv6 target in brackets; LF-only line endings and
 * headers in the reply; an HTTP/1.0 proxy. */
static void http_auth_v6(void **state) {
  fx_t *f = *state;
  static const char req[] =
      "CONNECT [::1]:8883 HTTP/1.1\r\nHost: [::1]:8883\r\n"
      "Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\r\n";
  f->opts.host = "::1";
  f->opts.port = 8883;
  f->opts.user = "Aladdin";
  f->opts.pass = "open sesame";
  script(f, sizeof(req) - 1, S("HTTP/1.0 200 OK\nVia: 1.1 x\nX-A:\n\n"));
  assert_int_equal(run_open(f, uvmqtt__http_proxy_new), 0);
  assert_rx(f, req, sizeof(req) - 1);
  check_echo(f, "");
}

/* The reply with headers, one byte per read, then the tunnel. */
static void http_one_byte(void **state) {
  fx_t *f = *state;
  f->one_byte = 1;
  script(
      f, sizeof(http_req) - 1,
      S("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 Connection "
        "established\r\nProxy-agent: scripted/1.0\r\nX-Long: "
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "\r\n\r\n"));
  assert_int_equal(run_open(f, uvmqtt__http_proxy_new), 0);
  assert_int_equal(f->code, 200);
  check_echo(f, "");
}

/* The broker's first bytes come in the same read as the proxy's reply:
 * they reach the upper layer after open_cb, first, and whole. */
static void http_reply_and_data(void **state) {
  fx_t *f = *state;
  script(f, sizeof(http_req) - 1,
         S("HTTP/1.1 200 OK\r\n\r\n\x20\x02\x01\x02 broker bytes"));
  assert_int_equal(run_open(f, uvmqtt__http_proxy_new), 0);
  check_echo(f, "\x20\x02\x01\x02 broker bytes");
}

static void on_open_no_reader(uvmqtt_stream_t *s, int status) {
  fx_t *f = s->data;
  f->opened = 1;
  f->open_status = status;
}

/* An owner that installs read_cb only after open_cb, and one that stops
 * reading in open_cb: the bytes that came with the reply wait for
 * read_start() and are then delivered first, from the loop. */
static void http_late_reader(void **state) {
  fx_t *f = *state;
  script(f, sizeof(http_req) - 1, S("HTTP/1.1 200 OK\r\n\r\nfirst"));
  uvmqtt_stream_t *tcp = NULL, *up = NULL;
  assert_int_equal(uvmqtt__tcp_connect(&f->loop, (struct sockaddr *)&f->addr,
                                       NULL, on_open_no_reader, f, &tcp),
                   0);
  assert_int_equal(tu_run_until(&f->loop, &f->opened, WAIT_MS), 0);
  assert_int_equal(f->open_status, 0);
  f->opened = 0;
  assert_int_equal(uvmqtt__http_proxy_new(tcp, &f->opts, &up), 0);
  f->s = up;
  up->data = f;
  assert_int_equal(up->ops->open(up, on_open_no_reader), 0);
  assert_int_equal(tu_run_until(&f->loop, &f->opened, WAIT_MS), 0);
  assert_int_equal(f->open_status, 0);
  tu_run_for(&f->loop, 50);
  assert_int_equal(f->got_len, 0); /* nobody to hand them to */
  up->read_cb = on_read;
  assert_int_equal(up->ops->read_stop(up), 0);
  assert_int_equal(up->ops->read_start(up), 0);
  assert_int_equal(f->got_len, 0); /* never from inside read_start() */
  check_echo(f, "first");
}

static void http_407(void **state) {
  fx_t *f = *state;
  script(
      f, sizeof(http_req) - 1,
      S("HTTP/1.1 407 Proxy Authentication Required\r\n"
        "Proxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\n\r\n"));
  assert_int_equal(run_open(f, uvmqtt__http_proxy_new), UVMQTT_EPROXY_AUTH);
  assert_int_equal(f->code, 407);
}

static void http_refused(void **state) {
  fx_t *f = *state;
  f->one_byte = 1;
  script(f, sizeof(http_req) - 1, S("HTTP/1.1 403 Forbidden\r\n\r\n"));
  assert_int_equal(run_open(f, uvmqtt__http_proxy_new), UVMQTT_EPROXY_STATUS);
  assert_int_equal(f->code, 403);
}

static void http_bad_gateway(void **state) {
  fx_t *f = *state;
  script(f, sizeof(http_req) - 1, S("HTTP/1.0 502 Bad Gateway\r\n\r\n"));
  assert_int_equal(run_open(f, uvmqtt__http_proxy_new), UVMQTT_EPROXY_STATUS);
  assert_int_equal(f->code, 502);
}

static void http_oversize(void **state) {
  fx_t *f = *state;
  static char big[9000];
  memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
  memset(big + 20, 'a', sizeof(big) - 24);
  memcpy(big + sizeof(big) - 4, "\r\n\r\n", 4);
  script(f, sizeof(http_req) - 1, (const uint8_t *)big, sizeof(big));
  assert_int_equal(run_open(f, uvmqtt__http_proxy_new), UVMQTT_EPROXY_TOOBIG);
}

/* A smaller limit, the reply dripped: refused at the limit. */
static void http_oversize_limit(void **state) {
  fx_t *f = *state;
  f->one_byte = 1;
  f->opts.max_reply_size = 64;
  script(f, sizeof(http_req) - 1,
         S("HTTP/1.1 200 OK\r\nX-Pad: 0123456789012345678901234567890123456789"
           "\r\n\r\n"));
  assert_int_equal(run_open(f, uvmqtt__http_proxy_new), UVMQTT_EPROXY_TOOBIG);
}

static void http_garbage(void **state) {
  fx_t *f = *state;
  script(f, sizeof(http_req) - 1, S("SSH-2.0-OpenSSH_9.2\r\n"));
  assert_int_equal(run_open(f, uvmqtt__http_proxy_new), UVMQTT_EPROXY_PROTOCOL);
}

static void http_bad_status_line(void **state) {
  fx_t *f = *state;
  f->one_byte = 1;
  script(f, sizeof(http_req) - 1, S("HTTP/1.1 2x0 OK\r\n\r\n"));
  assert_int_equal(run_open(f, uvmqtt__http_proxy_new), UVMQTT_EPROXY_PROTOCOL);
}

static void http_bad_header(void **state) {
  fx_t *f = *state;
  script(f, sizeof(http_req) - 1, S("HTTP/1.1 200 OK\r\n folded\r\n\r\n"));
  assert_int_equal(run_open(f, uvmqtt__http_proxy_new), UVMQTT_EPROXY_PROTOCOL);
}

static void http_early_close(void **state) {
  fx_t *f = *state;
  f->close_after = 1;
  script(f, sizeof(http_req) - 1, S("HTTP/1.1 200 OK\r\n"));
  assert_int_equal(run_open(f, uvmqtt__http_proxy_new), UVMQTT_EPROXY_CLOSED);
}

static void http_hangs(void **state) {
  fx_t *f = *state;
  f->opts.timeout_ms = 200;
  f->echo = 0;
  uint64_t t0 = uv_hrtime();
  assert_int_equal(run_open(f, uvmqtt__http_proxy_new), UVMQTT_ETIMEDOUT);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  assert_true(ms >= 190 && ms < 2000);
  assert_rx(f, http_req, sizeof(http_req) - 1);
}

static void http_bad_options(void **state) {
  fx_t *f = *state;
  uvmqtt_stream_t *s = NULL;
  uvmqtt_proxy_opts_t o = {.host = "a\r\nb", .port = 1};
  /* Checked before the lower stream is looked at. */
  assert_int_equal(uvmqtt__http_proxy_new(NULL, &o, &s), UVMQTT_EINVAL);
  f->opts.user = "a:b";
  assert_int_equal(run_open(f, uvmqtt__http_proxy_new), UVMQTT_EINVAL);
}

/* ---- SOCKS5 -------------------------------------------------------------- */

static const uint8_t socks_greet[] = {5, 1, 0};
static const uint8_t socks_method_none[] = {5, 0};
/* CONNECT broker.example:1883 by name. */
static const uint8_t socks_conn[] = {5,   1,   0,   3,   14,  'b',  'r',
                                     'o', 'k', 'e', 'r', '.', 'e',  'x',
                                     'a', 'm', 'p', 'l', 'e', 0x07, 0x5b};
static const uint8_t socks_ok_v4[] = {5, 0, 0, 1, 127, 0, 0, 1, 0x30, 0x39};

static void socks_noauth(void **state) {
  fx_t *f = *state;
  script(f, 3, socks_method_none, 2);
  script(f, 3 + sizeof(socks_conn), socks_ok_v4, sizeof(socks_ok_v4));
  assert_int_equal(run_open(f, uvmqtt__socks5_new), 0);
  uint8_t want[sizeof(socks_greet) + sizeof(socks_conn)];
  memcpy(want, socks_greet, 3);
  memcpy(want + 3, socks_conn, sizeof(socks_conn));
  assert_rx(f, want, sizeof(want));
  check_echo(f, "");
}

/* Username/password; the bound address as a name; every reply one byte
 * at a time; the broker's first bytes in the tail of the last reply. */
static void socks_userpass_one_byte(void **state) {
  fx_t *f = *state;
  f->one_byte = 1;
  f->opts.user = "user";
  f->opts.pass = "secret";
  static const uint8_t method[] = {5, 2};
  static const uint8_t auth_ok[] = {1, 0};
  static const uint8_t conn_ok[] = {5,   0, 0, 3,   5,   'p', 'r', 'o', 'x',
                                    'y', 0, 1, 'h', 'e', 'l', 'l', 'o'};
  script(f, 4, method, 2);
  script(f, 4 + 13, auth_ok, 2);
  script(f, 4 + 13 + sizeof(socks_conn), conn_ok, sizeof(conn_ok));
  assert_int_equal(run_open(f, uvmqtt__socks5_new), 0);
  static const uint8_t want[] = {5,   2, 0,   2,   1,   4,   'u', 's', 'e',
                                 'r', 6, 's', 'e', 'c', 'r', 'e', 't'};
  assert_true(f->rx_len == sizeof(want) + sizeof(socks_conn));
  assert_memory_equal(f->rx, want, sizeof(want));
  assert_memory_equal(f->rx + sizeof(want), socks_conn, sizeof(socks_conn));
  check_echo(f, "hello");
}

/* Address literals go as addresses (socks5 with local resolution), and an
 * IPv6 bound address is read whole. */
static void socks_literals(void **state) {
  fx_t *f = *state;
  f->opts.host = "2001:db8::7";
  f->opts.port = 8883;
  static const uint8_t conn_v6[] = {5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8,
                                    0, 0, 0, 0, 0,    0,    0,    0,
                                    0, 0, 0, 7, 0x22, 0xb3};
  static const uint8_t ok_v6[] = {5, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0,
                                  0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80};
  script(f, 3, socks_method_none, 2);
  script(f, 3 + sizeof(conn_v6), ok_v6, sizeof(ok_v6));
  assert_int_equal(run_open(f, uvmqtt__socks5_new), 0);
  assert_memory_equal(f->rx + 3, conn_v6, sizeof(conn_v6));
  check_echo(f, "");
}

static void socks_v4_literal(void **state) {
  fx_t *f = *state;
  f->opts.host = "10.1.2.3";
  static const uint8_t conn_v4[] = {5, 1, 0, 1, 10, 1, 2, 3, 0x07, 0x5b};
  script(f, 3, socks_method_none, 2);
  script(f, 3 + sizeof(conn_v4), socks_ok_v4, sizeof(socks_ok_v4));
  assert_int_equal(run_open(f, uvmqtt__socks5_new), 0);
  assert_rx(f, "\x05\x01\x00\x05\x01\x00\x01\x0a\x01\x02\x03\x07\x5b", 13);
}

/* Every reply code maps to its own error, known at the second byte. */
static void socks_reply_codes(void **state) {
  static const int want[] = {0,
                             UVMQTT_ESOCKS_FAILURE,
                             UVMQTT_ESOCKS_NOTALLOWED,
                             UVMQTT_ESOCKS_NETUNREACH,
                             UVMQTT_ESOCKS_HOSTUNREACH,
                             UVMQTT_ESOCKS_REFUSED,
                             UVMQTT_ESOCKS_TTL,
                             UVMQTT_ESOCKS_CMD,
                             UVMQTT_ESOCKS_ATYP,
                             UVMQTT_EPROXY_PROTOCOL};
  teardown(state);
  for (uint8_t code = 1; code <= 9; code++) {
    setup(state);
    fx_t *f = *state;
    uint8_t *rep = malloc(2);
    rep[0] = 5;
    rep[1] = code;
    f->close_after = 1;
    script(f, 3, socks_method_none, 2);
    script(f, 3 + sizeof(socks_conn), rep, 2);
    assert_int_equal(run_open(f, uvmqtt__socks5_new), want[code]);
    assert_int_equal(f->code, code);
    teardown(state);
    free(rep);
  }
  setup(state);
}

static void socks_auth_refused(void **state) {
  fx_t *f = *state;
  f->opts.user = "user";
  f->opts.pass = "wrong";
  static const uint8_t method[] = {5, 2};
  static const uint8_t auth_no[] = {1, 1};
  script(f, 4, method, 2);
  script(f, 4 + 12, auth_no, 2);
  assert_int_equal(run_open(f, uvmqtt__socks5_new), UVMQTT_EPROXY_AUTH);
}

/* A proxy that wants credentials refuses our only method: EPROXY_AUTH;
 * with credentials offered, a refusal means no method in common. */
static void socks_no_method(void **state) {
  fx_t *f = *state;
  static const uint8_t refused[] = {5, 0xFF};
  script(f, 3, refused, 2);
  assert_int_equal(run_open(f, uvmqtt__socks5_new), UVMQTT_EPROXY_AUTH);
  teardown(state);
  setup(state);
  f = *state;
  f->opts.user = "u";
  script(f, 4, refused, 2);
  assert_int_equal(run_open(f, uvmqtt__socks5_new), UVMQTT_ESOCKS_METHOD);
}

static void socks_garbage(void **state) {
  fx_t *f = *state;
  script(f, 3, S("HTTP/1.1 400 Bad Request\r\n\r\n"));
  assert_int_equal(run_open(f, uvmqtt__socks5_new), UVMQTT_EPROXY_PROTOCOL);
  teardown(state);
  setup(state);
  f = *state;
  /* A method we did not offer. */
  script(f, 3, S("\x05\x02"));
  assert_int_equal(run_open(f, uvmqtt__socks5_new), UVMQTT_EPROXY_PROTOCOL);
  teardown(state);
  setup(state);
  f = *state;
  /* An unknown address type in the reply. */
  script(f, 3, socks_method_none, 2);
  script(f, 3 + sizeof(socks_conn), S("\x05\x00\x00\x09\x00\x00\x00"));
  assert_int_equal(run_open(f, uvmqtt__socks5_new), UVMQTT_EPROXY_PROTOCOL);
}

static void socks_early_close(void **state) {
  fx_t *f = *state;
  f->close_after = 1;
  script(f, 3, socks_method_none, 2);
  script(f, 3 + sizeof(socks_conn), socks_ok_v4, 6);
  assert_int_equal(run_open(f, uvmqtt__socks5_new), UVMQTT_EPROXY_CLOSED);
}

static void socks_hangs(void **state) {
  fx_t *f = *state;
  f->opts.timeout_ms = 150;
  f->echo = 0;
  script(f, 3, socks_method_none, 2);
  assert_int_equal(run_open(f, uvmqtt__socks5_new), UVMQTT_ETIMEDOUT);
}

static void socks_bad_options(void **state) {
  (void)state;
  uvmqtt_stream_t *s = NULL;
  char longname[300];
  memset(longname, 'a', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  uvmqtt_proxy_opts_t o = {.host = longname, .port = 1};
  assert_int_equal(uvmqtt__socks5_new(NULL, &o, &s), UVMQTT_EINVAL);
  o.host = "x";
  o.port = 0;
  assert_int_equal(uvmqtt__socks5_new(NULL, &o, &s), UVMQTT_EINVAL);
}

/* ---- unix-domain sockets ------------------------------------------------- */

static void unix_listen(fx_t *f, const char *name, int abstract) {
  f->use_pipe = 1;
  assert_int_equal(uv_pipe_init(&f->loop, &f->lis_pipe, 0), 0);
  f->lis_pipe.data = f;
  char at[80];
  snprintf(at, sizeof(at), "@%s", name);
  int fd = tu_unix_bound_socket(abstract ? at : name);
  assert_true(fd >= 0);
  assert_int_equal(uv_pipe_open(&f->lis_pipe, fd), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&f->lis_pipe, 8, on_accept), 0);
}

static void on_unix_open(uvmqtt_stream_t *s, int status) {
  fx_t *f = s->data;
  f->opened = 1;
  f->open_status = status;
  if (status == 0)
    s->read_cb = on_read;
}

static int unix_open(fx_t *f, const char *path) {
  int rc = uvmqtt__unix_connect(&f->loop, path, on_unix_open, f, &f->s);
  if (rc != 0)
    return rc;
  assert_int_equal(tu_run_until(&f->loop, &f->opened, WAIT_MS), 0);
  return f->open_status;
}

static void unix_path(void **state) {
  fx_t *f = *state;
  char dir[256], path[320];
  assert_int_equal(tu_tmpdir(dir, sizeof(dir)), 0);
  snprintf(path, sizeof(path), "%s/mqtt.sock", dir);
  unix_listen(f, path, 0);
  assert_int_equal(unix_open(f, path), 0);
  check_echo(f, "");
  tu_rmtree(dir);
}

static void unix_abstract(void **state) {
  fx_t *f = *state;
  char name[64], at[70];
  snprintf(name, sizeof(name), "uvmqtt-test-%d", (int)getpid());
  snprintf(at, sizeof(at), "@%s", name);
  unix_listen(f, name, 1);
  assert_int_equal(unix_open(f, at), 0);
  check_echo(f, "");
}

/* A proxy layer over a unix socket (a proxy listening there). */
static void unix_under_proxy(void **state) {
  fx_t *f = *state;
  char dir[256], path[320];
  assert_int_equal(tu_tmpdir(dir, sizeof(dir)), 0);
  snprintf(path, sizeof(path), "%s/proxy.sock", dir);
  unix_listen(f, path, 0);
  script(f, sizeof(http_req) - 1, S("HTTP/1.1 200 OK\r\n\r\nearly"));
  f->make = uvmqtt__http_proxy_new;
  uvmqtt_stream_t *lower = NULL;
  assert_int_equal(
      uvmqtt__unix_connect(&f->loop, path, on_lower_open, f, &lower), 0);
  assert_int_equal(tu_run_until(&f->loop, &f->opened, WAIT_MS), 0);
  assert_int_equal(f->open_status, 0);
  check_echo(f, "early");
  tu_rmtree(dir);
}

static void unix_errors(void **state) {
  fx_t *f = *state;
  char dir[256], path[320];
  assert_int_equal(tu_tmpdir(dir, sizeof(dir)), 0);
  snprintf(path, sizeof(path), "%s/none.sock", dir);
  assert_int_equal(unix_open(f, path), UV_ENOENT);
  uvmqtt__stream_close(f->s, on_closed);
  assert_int_equal(tu_run_until(&f->loop, &f->closed, WAIT_MS), 0);
  /* A socket file nobody listens on. */
  f->s = NULL;
  f->closed = f->opened = 0;
  snprintf(path, sizeof(path), "%s/dead.sock", dir);
  int fd = tu_unix_bound_socket(path);
  assert_true(fd >= 0);
  assert_int_equal(unix_open(f, path), UV_ECONNREFUSED);
  close(fd);
  /* Names that do not fit, or are empty. */
  char longp[200];
  memset(longp, 'x', sizeof(longp) - 1);
  longp[sizeof(longp) - 1] = '\0';
  uvmqtt_stream_t *s;
  assert_int_equal(uvmqtt__unix_connect(&f->loop, longp, on_unix_open, f, &s),
                   UVMQTT_EINVAL);
  assert_int_equal(uvmqtt__unix_connect(&f->loop, "", on_unix_open, f, &s),
                   UVMQTT_EINVAL);
  assert_int_equal(uvmqtt__unix_connect(&f->loop, "@", on_unix_open, f, &s),
                   UVMQTT_EINVAL);
  tu_rmtree(dir);
}

/* ---- allocation failures --------------------------------------------------
 */

static void on_sweep_written(uvmqtt_stream_t *s, int status, void *arg) {
  (void)s;
  *(int *)arg = status == 0 ? 1 : -1;
}

/* Fails the Nth allocation for every N through a whole session (connect,
 * handshake with credentials, tunnelled bytes in the reply, a write and
 * its echo): each failure is an error (UVMQTT_ENOMEM), and closing frees
 * everything and every handle (the teardown checks the loop). */
static void sweep(void **state, int socks) {
  for (long nth = 0; nth < 200; nth++) {
    setup(state);
    fx_t *f = *state;
    f->opts.user = "user";
    f->opts.pass = "secret";
    if (socks) {
      static const uint8_t method[] = {5, 2}, auth_ok[] = {1, 0};
      static const uint8_t ok[] = {5, 0, 0, 1, 127, 0, 0, 1, 0, 1, 'h', 'i'};
      script(f, 4, method, 2);
      script(f, 4 + 13, auth_ok, 2);
      script(f, 4 + 13 + sizeof(socks_conn), ok, sizeof(ok));
    } else {
      script(f, 60, S("HTTP/1.1 200 OK\r\nX: y\r\n\r\nhi"));
    }
    long live0 = tu_alloc_live;
    tu_alloc_countdown = nth;
    uvmqtt_stream_t *tcp = NULL;
    f->make = socks ? uvmqtt__socks5_new : uvmqtt__http_proxy_new;
    int rc = uvmqtt__tcp_connect(&f->loop, (struct sockaddr *)&f->addr, NULL,
                                 on_lower_open, f, &tcp);
    if (rc != 0) {
      assert_int_equal(rc, UVMQTT_ENOMEM);
    } else {
      assert_int_equal(tu_run_until(&f->loop, &f->opened, WAIT_MS), 0);
      if (!f->s) {
        f->s = tcp;
        f->s->data = f;
      }
      if (f->open_status == 0) {
        wait_got(f, 2);
        assert_memory_equal(f->got, "hi", 2);
        int done = 0;
        uv_buf_t b = uv_buf_init("abc", 3);
        rc = uvmqtt__stream_write(f->s, &b, 1, on_sweep_written, &done);
        if (rc == 0) {
          assert_int_equal(tu_run_until(&f->loop, &done, WAIT_MS), 0);
          if (done > 0)
            wait_got(f, 5);
        } else {
          assert_int_equal(rc, UVMQTT_ENOMEM);
        }
      } else {
        assert_int_equal(f->open_status, UVMQTT_ENOMEM);
      }
    }
    int reached_end = tu_alloc_countdown >= 0; /* nothing failed */
    teardown(state);
    tu_alloc_countdown = -1;
    assert_int_equal(tu_alloc_live, live0);
    if (reached_end) {
      setup(state); /* for the group's teardown */
      return;
    }
  }
  fail_msg("the allocation sweep did not finish");
}

static void http_alloc_failures(void **state) {
  teardown(state);
  sweep(state, 0);
}

static void socks_alloc_failures(void **state) {
  teardown(state);
  sweep(state, 1);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      T(http_ok),
      T(http_auth_v6),
      T(http_one_byte),
      T(http_reply_and_data),
      T(http_late_reader),
      T(http_407),
      T(http_refused),
      T(http_bad_gateway),
      T(http_oversize),
      T(http_oversize_limit),
      T(http_garbage),
      T(http_bad_status_line),
      T(http_bad_header),
      T(http_early_close),
      T(http_hangs),
      T(http_bad_options),
      T(socks_noauth),
      T(socks_userpass_one_byte),
      T(socks_literals),
      T(socks_v4_literal),
      T(socks_reply_codes),
      T(socks_auth_refused),
      T(socks_no_method),
      T(socks_garbage),
      T(socks_early_close),
      T(socks_hangs),
      T(socks_bad_options),
      T(unix_path),
      T(unix_abstract),
      T(unix_under_proxy),
      T(unix_errors),
      T(http_alloc_failures),
      T(socks_alloc_failures),
  };
  uvmqtt_replace_allocator(tu_malloc, tu_realloc, tu_calloc, tu_free);
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
