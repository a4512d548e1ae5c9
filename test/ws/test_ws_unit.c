/* Unit tests of the ws layer over a memory-backed lower stream: every byte
 * the layer writes is captured, every byte it reads is fed by the test in
 * pieces of any size (down to one byte, split at every position). No
 * network. */
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
#include "uvmqtt/alloc.h"
#include "uvmqtt/errors.h"
#include "wshelp.h"

/* ---- the mock lower stream ----------------------------------------------- */

typedef struct {
  uvmqtt_stream_write_cb cb;
  void *arg;
} pend_t;

typedef struct {
  uvmqtt_stream_t base;
  uv_timer_t timer;
  uint8_t *out;
  size_t out_len, out_cap;
  pend_t pend[256];
  size_t npend;
  int reading, shutdowns, closing, fail_writes;
  uvmqtt_stream_close_cb close_cb;
} mock_t;

static void mock_flush(uv_timer_t *t) {
  mock_t *m = t->data;
  size_t n = m->npend;
  pend_t p[256];
  memcpy(p, m->pend, n * sizeof(pend_t));
  m->npend = 0;
  for (size_t i = 0; i < n; i++)
    p[i].cb(&m->base, 0, p[i].arg);
}

static int mock_write(uvmqtt_stream_t *s, const uv_buf_t bufs[], unsigned n,
                      uvmqtt_stream_write_cb cb, void *arg) {
  mock_t *m = (mock_t *)s;
  if (m->closing)
    return UV_ECANCELED;
  if (m->fail_writes)
    return UV_EPIPE;
  for (unsigned i = 0; i < n; i++) {
    if (m->out_len + bufs[i].len > m->out_cap) {
      size_t cap = (m->out_len + bufs[i].len) * 2 + 1024;
      m->out = realloc(m->out, cap);
      m->out_cap = cap;
    }
    memcpy(m->out + m->out_len, bufs[i].base, bufs[i].len);
    m->out_len += bufs[i].len;
  }
  assert_true(m->npend < 256);
  m->pend[m->npend].cb = cb;
  m->pend[m->npend].arg = arg;
  m->npend++;
  uv_timer_start(&m->timer, mock_flush, 0, 0);
  return 0;
}
static int mock_read_start(uvmqtt_stream_t *s) {
  ((mock_t *)s)->reading = 1;
  return 0;
}
static int mock_read_stop(uvmqtt_stream_t *s) {
  ((mock_t *)s)->reading = 0;
  return 0;
}
static void mock_shutdown(uvmqtt_stream_t *s) {
  ((mock_t *)s)->shutdowns++;
}
static void mock_closed(uv_handle_t *h) {
  mock_t *m = h->data;
  size_t n = m->npend;
  m->npend = 0;
  for (size_t i = 0; i < n; i++)
    m->pend[i].cb(&m->base, UV_ECANCELED, m->pend[i].arg);
  if (m->close_cb)
    m->close_cb(&m->base);
  free(m->out);
  free(m);
}
static void mock_close(uvmqtt_stream_t *s, uvmqtt_stream_close_cb cb) {
  mock_t *m = (mock_t *)s;
  m->closing = 1;
  m->close_cb = cb;
  uv_close((uv_handle_t *)&m->timer, mock_closed);
}
/* The socket layer of this stack: it says which loop the stack runs on. */
static uv_loop_t *mock_loop(const uvmqtt_stream_t *s) {
  return ((const mock_t *)s)->timer.loop;
}

static const uvmqtt_stream_ops_t mock_ops = {
    .name = "mock",
    .write = mock_write,
    .read_start = mock_read_start,
    .read_stop = mock_read_stop,
    .shutdown = mock_shutdown,
    .close = mock_close,
    .loop = mock_loop,
};

static mock_t *mock_new(uv_loop_t *loop) {
  mock_t *m = calloc(1, sizeof(*m));
  m->base.ops = &mock_ops;
  m->reading = 1;
  uv_timer_init(loop, &m->timer);
  m->timer.data = m;
  return m;
}

/* ---- fixture ---------------------------------------------------------------
 */

typedef struct {
  uv_loop_t loop;
  mock_t *m;
  uvmqtt_stream_t *ws;
  int opened, open_status, in_open;
  uint8_t *in; /* payload delivered to read_cb */
  size_t in_len, in_cap;
  int ended, end_status, reads_after_end;
  int closed;
  char key[64];
  size_t req_len; /* bytes of m->out that are the request */
  /* read_cb behaviour */
  int stop_after_reads; /* call read_stop after this many reads (0: never) */
  int close_after_reads;
  int nreads;
  char last_log[256];
} fx_t;

static fx_t *cur;

static void on_log(uvmqtt_stream_t *s, int level, const char *msg) {
  (void)s;
  (void)level;
  snprintf(cur->last_log, sizeof(cur->last_log), "%s", msg);
}

static void on_closed(uvmqtt_stream_t *s) {
  fx_t *f = s->data;
  f->closed++;
}

static void on_read(uvmqtt_stream_t *s, ssize_t nread, const uint8_t *buf) {
  fx_t *f = s->data;
  if (f->ended) {
    f->reads_after_end++;
    return;
  }
  if (nread < 0) {
    f->ended = 1;
    f->end_status = (int)nread;
    return;
  }
  assert_true(nread > 0);
  if (f->in_len + (size_t)nread > f->in_cap) {
    f->in_cap = (f->in_len + (size_t)nread) * 2;
    f->in = realloc(f->in, f->in_cap);
  }
  memcpy(f->in + f->in_len, buf, (size_t)nread);
  f->in_len += (size_t)nread;
  f->nreads++;
  if (f->stop_after_reads && f->nreads == f->stop_after_reads)
    s->ops->read_stop(s);
  if (f->close_after_reads && f->nreads == f->close_after_reads) {
    uvmqtt__stream_close(s, on_closed);
    f->ws = NULL;
  }
}

static void on_open(uvmqtt_stream_t *s, int status) {
  fx_t *f = s->data;
  assert_false(f->in_open); /* never from inside open() */
  f->opened++;
  f->open_status = status;
}

static void spin(fx_t *f) {
  for (int i = 0; i < 4; i++)
    uv_run(&f->loop, UV_RUN_NOWAIT);
}

static const char *default_headers[] = {"Authorization: Bearer abc",
                                        "X-Test: 1"};

static int fx_init(fx_t *f, const uvmqtt_ws_opts_t *o) {
  memset(f, 0, sizeof(*f));
  cur = f;
  uv_loop_init(&f->loop);
  f->m = mock_new(&f->loop);
  uvmqtt_ws_opts_t def = {.host = "broker.test:8080",
                          .headers = default_headers,
                          .header_count = 2};
  int rc = uvmqtt__ws_new(&f->m->base, o ? o : &def, &f->ws);
  if (rc != 0) {
    uv_close((uv_handle_t *)&f->m->timer, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    free(f->m);
    f->m = NULL;
    return rc;
  }
  f->ws->data = f;
  f->ws->read_cb = on_read;
  f->ws->log_cb = on_log;
  return 0;
}

/* Calls open(), flushes the request and extracts the key. */
static void fx_open(fx_t *f) {
  f->in_open = 1;
  assert_int_equal(f->ws->ops->open(f->ws, on_open), 0);
  f->in_open = 0;
  spin(f);
  assert_int_equal(f->opened, 0);
  f->req_len = f->m->out_len;
  char *req = malloc(f->req_len + 1);
  memcpy(req, f->m->out, f->req_len);
  req[f->req_len] = '\0';
  assert_non_null(strstr(req, "\r\n\r\n"));
  assert_int_equal(wh_header(req, "Sec-WebSocket-Key", f->key, sizeof(f->key)),
                   0);
  free(req);
}

static void fx_done(fx_t *f) {
  if (f->ws) {
    uvmqtt__stream_close(f->ws, on_closed);
    f->ws = NULL;
    spin(f);
    assert_int_equal(f->closed, 1);
  }
  spin(f);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f->in);
  cur = NULL;
}

/* Feeds bytes as the lower stream would, from a short-lived heap copy (so
 * that ASan catches a layer keeping a view past the callback). */
static void feed(fx_t *f, const void *p, size_t n) {
  if (n == 0 || !f->ws)
    return;
  uint8_t *c = malloc(n);
  memcpy(c, p, n);
  f->m->base.read_cb(&f->m->base, (ssize_t)n, c);
  free(c);
}

static size_t good_reply(const fx_t *f, char *out, size_t cap,
                         const char *extra) {
  char acc[29];
  wh_accept(f->key, strlen(f->key), acc);
  return (size_t)snprintf(out, cap,
                          "HTTP/1.1 101 Switching Protocols\r\n"
                          "Upgrade: websocket\r\n"
                          "Connection: Upgrade\r\n"
                          "Sec-WebSocket-Accept: %s\r\n"
                          "Sec-WebSocket-Protocol: mqtt\r\n"
                          "%s"
                          "\r\n",
                          acc, extra ? extra : "");
}

static void open_ok(fx_t *f) {
  char r[1024];
  fx_open(f);
  size_t n = good_reply(f, r, sizeof(r), NULL);
  feed(f, r, n);
  assert_int_equal(f->opened, 1);
  assert_int_equal(f->open_status, 0);
}

/* Client frames written after the request, decoded in order. */
typedef struct {
  int opcode, fin, masked;
  uint8_t mask[4];
  uint8_t *data;
  size_t len;
} cf_t;

static size_t client_frames(fx_t *f, cf_t *out, size_t max) {
  size_t off = f->req_len, k = 0;
  while (off < f->m->out_len && k < max) {
    wh_cframe_t fr = {0};
    uint8_t *buf = malloc(f->m->out_len - off + 1);
    int ok = wh_decode(f->m->out + off, f->m->out_len - off, &fr, buf,
                       f->m->out_len - off);
    assert_true(ok);
    out[k].opcode = fr.opcode;
    out[k].fin = fr.fin;
    out[k].masked = fr.masked;
    memcpy(out[k].mask, fr.mask, 4);
    out[k].data = buf;
    out[k].len = (size_t)fr.len;
    off += fr.frame_len;
    k++;
  }
  assert_int_equal(off, f->m->out_len);
  return k;
}

static void free_frames(cf_t *c, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(c[i].data);
}

/* ---- tests: the request ----------------------------------------------------
 */

static void test_request_format(void **state) {
  (void)state;
  fx_t f;
  assert_int_equal(fx_init(&f, NULL), 0);
  fx_open(&f);
  char *req = calloc(1, f.req_len + 1);
  memcpy(req, f.m->out, f.req_len);
  assert_true(strncmp(req, "GET /mqtt HTTP/1.1\r\n", 20) == 0);
  char v[128];
  assert_int_equal(wh_header(req, "Host", v, sizeof(v)), 0);
  assert_string_equal(v, "broker.test:8080");
  assert_int_equal(wh_header(req, "Upgrade", v, sizeof(v)), 0);
  assert_string_equal(v, "websocket");
  assert_int_equal(wh_header(req, "Connection", v, sizeof(v)), 0);
  assert_string_equal(v, "Upgrade");
  assert_int_equal(wh_header(req, "Sec-WebSocket-Version", v, sizeof(v)), 0);
  assert_string_equal(v, "13");
  assert_int_equal(wh_header(req, "Sec-WebSocket-Protocol", v, sizeof(v)), 0);
  assert_string_equal(v, "mqtt");
  assert_int_equal(wh_header(req, "Authorization", v, sizeof(v)), 0);
  assert_string_equal(v, "Bearer abc");
  assert_int_equal(wh_header(req, "X-Test", v, sizeof(v)), 0);
  assert_string_equal(v, "1");
  /* The key: 16 random bytes in base64. */
  unsigned char raw[32];
  size_t rl = 0;
  assert_int_equal(strlen(f.key), 24);
  assert_int_equal(mbedtls_base64_decode(raw, sizeof(raw), &rl,
                                         (const unsigned char *)f.key, 24),
                   0);
  assert_int_equal(rl, 16);
  assert_true(f.req_len > 4 &&
              memcmp(f.m->out + f.req_len - 4, "\r\n\r\n", 4) == 0);
  free(req);
  /* A second stream has a different key. */
  char key1[64];
  snprintf(key1, sizeof(key1), "%s", f.key);
  fx_done(&f);
  assert_int_equal(fx_init(&f, NULL), 0);
  fx_open(&f);
  assert_string_not_equal(key1, f.key);
  fx_done(&f);

  /* Path and MQTT 3.1's subprotocol. */
  uvmqtt_ws_opts_t o = {
      .host = "h", .path = "/ws/x?a=b", .protocol = "mqttv3.1"};
  assert_int_equal(fx_init(&f, &o), 0);
  fx_open(&f);
  req = calloc(1, f.req_len + 1);
  memcpy(req, f.m->out, f.req_len);
  assert_true(strncmp(req, "GET /ws/x?a=b HTTP/1.1\r\n", 24) == 0);
  assert_int_equal(wh_header(req, "Sec-WebSocket-Protocol", v, sizeof(v)), 0);
  assert_string_equal(v, "mqttv3.1");
  free(req);
  fx_done(&f);
}

static void test_new_rejects_bad_options(void **state) {
  (void)state;
  fx_t f;
  const char *bad_hdr[] = {"X: a\r\nEvil: 1"};
  const char *no_colon[] = {"Nocolon"};
  uvmqtt_ws_opts_t cases[] = {
      {.host = NULL},
      {.host = ""},
      {.host = "h\r\nX: y"},
      {.host = "h", .path = "nopath"},
      {.host = "h", .path = "/a b"},
      {.host = "h", .protocol = "mq\ntt"},
      {.host = "h", .headers = bad_hdr, .header_count = 1},
      {.host = "h", .headers = no_colon, .header_count = 1},
      {.host = "h", .headers = NULL, .header_count = 1},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    assert_int_equal(fx_init(&f, &cases[i]), UVMQTT_EINVAL);
    fx_done(&f);
  }
}

/* ---- tests: the reply ------------------------------------------------------
 */

/* Frames that follow the reply in the same bytes: they must not be lost. */
static size_t trailing_frames(uint8_t *out) {
  size_t n = wh_frame(out, 1, 0x2, "\x20\x02\x00\x00", 4); /* CONNACK */
  n += wh_frame(out + n, 1, 0x2, "\xd0\x00", 2);           /* PINGRESP */
  return n;
}

static void test_reply_every_split(void **state) {
  (void)state;
  uint8_t all[2048];
  for (size_t split = 0;; split++) {
    fx_t f;
    assert_int_equal(fx_init(&f, NULL), 0);
    fx_open(&f);
    size_t n = good_reply(&f, (char *)all, sizeof(all), "Server: test\r\n");
    size_t fr = trailing_frames(all + n);
    size_t total = n + fr;
    if (split > total) {
      fx_done(&f);
      break;
    }
    feed(&f, all, split);
    feed(&f, all + split, total - split);
    assert_int_equal(f.opened, 1);
    assert_int_equal(f.open_status, 0);
    assert_int_equal(f.in_len, 6);
    assert_memory_equal(f.in, "\x20\x02\x00\x00\xd0\x00", 6);
    assert_false(f.ended);
    fx_done(&f);
  }
  /* One byte at a time. */
  fx_t f;
  assert_int_equal(fx_init(&f, NULL), 0);
  fx_open(&f);
  size_t n = good_reply(&f, (char *)all, sizeof(all), NULL);
  n += trailing_frames(all + n);
  for (size_t i = 0; i < n; i++)
    feed(&f, all + i, 1);
  assert_int_equal(f.open_status, 0);
  assert_int_equal(f.in_len, 6);
  fx_done(&f);
}

static void test_reply_variants_accepted(void **state) {
  (void)state;
  const char *fmt[] = {
      /* Token lists and case. */
      "HTTP/1.1 101 Switching Protocols\r\nUPGRADE: WebSocket\r\n"
      "connection: keep-alive, Upgrade\r\nsec-websocket-accept: %s\r\n"
      "Sec-WebSocket-Protocol: mqtt\r\nSec-WebSocket-Extensions:\r\n\r\n",
      /* Bare LF line endings and no reason phrase. */
      "HTTP/1.1 101\nUpgrade: websocket\nConnection: upgrade\n"
      "Sec-WebSocket-Accept:%s\nSec-WebSocket-Protocol:  mqtt  \n\n",
      /* HTTP/1.0 and surrounding headers. */
      "HTTP/1.0 101 OK\r\nDate: x\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
      "Sec-WebSocket-Protocol: mqtt\r\nX-Powered-By: y\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof(fmt) / sizeof(fmt[0]); i++) {
    fx_t f;
    char r[1024], acc[29];
    assert_int_equal(fx_init(&f, NULL), 0);
    fx_open(&f);
    wh_accept(f.key, strlen(f.key), acc);
    int n = snprintf(r, sizeof(r), fmt[i], acc);
    feed(&f, r, (size_t)n);
    assert_int_equal(f.opened, 1);
    assert_int_equal(f.open_status, 0);
    fx_done(&f);
  }
}

typedef struct {
  const char *reply; /* %s: the right accept key */
  int err;
  int http_status;
} bad_reply_t;

static void test_reply_refused(void **state) {
  (void)state;
  const bad_reply_t cases[] = {
      {"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==xxxx\r\n"
       "Sec-WebSocket-Protocol: mqtt\r\n\r\n%s",
       UVMQTT_EWS_ACCEPT, 0},
      {"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Protocol: mqtt\r\n\r\n%s",
       UVMQTT_EWS_ACCEPT, 0},
      {"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Accept: %s\r\n\r\n",
       UVMQTT_EWS_PROTOCOL, 0},
      {"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: chat\r\n\r\n",
       UVMQTT_EWS_PROTOCOL, 0},
      {"HTTP/1.1 101 OK\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
       UVMQTT_EWS_UPGRADE, 0},
      {"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: close\r\n"
       "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
       UVMQTT_EWS_UPGRADE, 0},
      {"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       "Sec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: mqtt\r\n"
       "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
       UVMQTT_EWS_UPGRADE, 0},
      {"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\n"
       "Content-Length: 0\r\n\r\n%s",
       UVMQTT_EWS_STATUS, 401},
      {"HTTP/1.1 200 OK\r\n\r\n%s", UVMQTT_EWS_STATUS, 200},
      {"SSH-2.0-OpenSSH_9.2\r\n%s", UVMQTT_EWS_UPGRADE, 0},
      {"HTTP/1.1 1O1 x\r\n%s", UVMQTT_EWS_UPGRADE, 0},
      {"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n folded\r\nX: %s\r\n\r\n",
       UVMQTT_EWS_UPGRADE, 0},
      {"HTTP/1.1 101 OK\r\nno colon here\r\nX: %s\r\n\r\n", UVMQTT_EWS_UPGRADE,
       0},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    for (int bytewise = 0; bytewise < 2; bytewise++) {
      fx_t f;
      char r[1024], acc[29];
      assert_int_equal(fx_init(&f, NULL), 0);
      fx_open(&f);
      wh_accept(f.key, strlen(f.key), acc);
      int n = snprintf(r, sizeof(r), cases[i].reply, acc);
      if (bytewise) {
        for (int k = 0; k < n && !f.opened; k++)
          feed(&f, r + k, 1);
      } else {
        feed(&f, r, (size_t)n);
      }
      if (f.opened != 1 || f.open_status != cases[i].err)
        fail_msg("case %zu: opened %d status %s, log \"%s\"", i, f.opened,
                 uvmqtt_err_name(f.open_status), f.last_log);
      assert_int_equal(uvmqtt__ws_http_status(f.ws), cases[i].http_status);
      assert_true(f.last_log[0] != '\0'); /* the reason is logged */
      /* Nothing is delivered after a failed upgrade. */
      feed(&f, "\x82\x01x", 3);
      assert_int_equal(f.in_len, 0);
      assert_int_equal(f.opened, 1);
      fx_done(&f);
    }
  }
}

static void test_reply_size_limits(void **state) {
  (void)state;
  /* A 10 KiB reply passes with the default limit, in one piece and in 7-byte
   * pieces; over a 4 KiB limit it is refused. */
  size_t big = 10 * 1024;
  char *pad = malloc(big + 64);
  size_t pl = 0;
  for (int i = 0; pl + 40 < big; i++)
    pl += (size_t)sprintf(pad + pl, "X-Pad-%04d: %020d\r\n", i, i);
  char *r = malloc(big + 1024);
  for (int mode = 0; mode < 3; mode++) {
    fx_t f;
    uvmqtt_ws_opts_t o = {.host = "h", .max_reply_size = mode == 2 ? 4096 : 0};
    assert_int_equal(fx_init(&f, &o), 0);
    fx_open(&f);
    size_t n = good_reply(&f, r, big + 1024, pad);
    assert_true(n > big);
    if (mode == 1) {
      for (size_t k = 0; k < n; k += 7)
        feed(&f, r + k, n - k < 7 ? n - k : 7);
    } else {
      feed(&f, r, n);
    }
    assert_int_equal(f.opened, 1);
    assert_int_equal(f.open_status, mode == 2 ? UVMQTT_EWS_TOOBIG : 0);
    fx_done(&f);
  }
  /* Exactly at the limit passes; one byte over fails. */
  for (int over = 0; over < 2; over++) {
    fx_t f;
    assert_int_equal(fx_init(&f, NULL), 0);
    fx_open(&f);
    size_t n0 = good_reply(&f, r, big + 1024, "");
    uvmqtt__stream_close(f.ws, on_closed);
    f.ws = NULL;
    fx_done(&f);
    uvmqtt_ws_opts_t o = {.host = "h", .max_reply_size = n0 - (size_t)over};
    assert_int_equal(fx_init(&f, &o), 0);
    fx_open(&f);
    size_t n = good_reply(&f, r, big + 1024, "");
    assert_int_equal(n, n0);
    feed(&f, r, n);
    assert_int_equal(f.open_status, over ? UVMQTT_EWS_TOOBIG : 0);
    fx_done(&f);
  }
  free(pad);
  free(r);
}

static void test_eof_during_upgrade(void **state) {
  (void)state;
  fx_t f;
  assert_int_equal(fx_init(&f, NULL), 0);
  fx_open(&f);
  feed(&f, "HTTP/1.1 101 OK\r\nUpg", 20);
  f.m->base.read_cb(&f.m->base, UV_EOF, NULL);
  assert_int_equal(f.opened, 1);
  assert_int_equal(f.open_status, UV_EOF);
  fx_done(&f);
}

static void test_open_write_error_deferred(void **state) {
  (void)state;
  fx_t f;
  assert_int_equal(fx_init(&f, NULL), 0);
  f.m->fail_writes = 1;
  f.in_open = 1;
  assert_int_equal(f.ws->ops->open(f.ws, on_open), 0);
  f.in_open = 0;
  assert_int_equal(f.opened, 0);
  spin(&f);
  assert_int_equal(f.opened, 1);
  assert_int_equal(f.open_status, UV_EPIPE);
  fx_done(&f);
}

static void test_close_before_open_cb(void **state) {
  (void)state;
  fx_t f;
  assert_int_equal(fx_init(&f, NULL), 0);
  fx_open(&f);
  uvmqtt__stream_close(f.ws, on_closed);
  f.ws = NULL;
  spin(&f);
  assert_int_equal(f.closed, 1);
  assert_int_equal(f.opened, 0); /* cancelled, never called */
  fx_done(&f);
  /* Also with a deferred open error pending. */
  assert_int_equal(fx_init(&f, NULL), 0);
  f.m->fail_writes = 1;
  assert_int_equal(f.ws->ops->open(f.ws, on_open), 0);
  uvmqtt__stream_close(f.ws, on_closed);
  f.ws = NULL;
  spin(&f);
  assert_int_equal(f.opened, 0);
  assert_int_equal(f.closed, 1);
  fx_done(&f);
}

/* ---- tests: frames in ------------------------------------------------------
 */

/* A frame script covering every frame shape; returns its length and the
 * payload the upper layer must see in *expect. */
static size_t frame_script(uint8_t *out, uint8_t *expect, size_t *elen) {
  size_t n = 0, e = 0;
  /* A PUBLISH split across a fragmented message with a ping inside. */
  static const uint8_t pub[] = {0x30, 0x0a, 0x00, 0x03, 'a', '/',
                                'b',  'h',  'e',  'l',  'l', 'o'};
  n += wh_frame(out + n, 0, 0x2, pub, 3);
  n += wh_frame(out + n, 0, 0x0, pub + 3, 4);
  n += wh_frame(out + n, 1, 0x9, "ping!", 5);
  n += wh_frame(out + n, 1, 0x0, pub + 7, 5);
  memcpy(expect + e, pub, sizeof(pub));
  e += sizeof(pub);
  /* Several packets in one frame. */
  static const uint8_t two[] = {0xd0, 0x00, 0x40, 0x02, 0x00, 0x01};
  n += wh_frame(out + n, 1, 0x2, two, sizeof(two));
  memcpy(expect + e, two, sizeof(two));
  e += sizeof(two);
  /* Empty frames, a pong, a 16-bit length and a 64-bit length frame. */
  n += wh_frame(out + n, 1, 0x2, NULL, 0);
  n += wh_frame(out + n, 1, 0xA, "", 0);
  uint8_t mid[300];
  for (size_t i = 0; i < sizeof(mid); i++)
    mid[i] = (uint8_t)(i * 7);
  n += wh_frame(out + n, 1, 0x2, mid, sizeof(mid));
  memcpy(expect + e, mid, sizeof(mid));
  e += sizeof(mid);
  static uint8_t bigp[70000];
  for (size_t i = 0; i < sizeof(bigp); i++)
    bigp[i] = (uint8_t)(i * 13 + 1);
  n += wh_frame(out + n, 1, 0x2, bigp, sizeof(bigp));
  memcpy(expect + e, bigp, sizeof(bigp));
  e += sizeof(bigp);
  n += wh_frame(out + n, 1, 0x9, "", 0);
  *elen = e;
  return n;
}

static void check_script_result(fx_t *f, const uint8_t *expect, size_t elen) {
  assert_false(f->ended);
  assert_int_equal(f->in_len, elen);
  assert_memory_equal(f->in, expect, elen);
  /* Two pings answered with pongs carrying their payloads. */
  cf_t c[8];
  size_t k = client_frames(f, c, 8);
  assert_int_equal(k, 2);
  assert_int_equal(c[0].opcode, 0xA);
  assert_true(c[0].masked && c[0].fin);
  assert_int_equal(c[0].len, 5);
  assert_memory_equal(c[0].data, "ping!", 5);
  assert_int_equal(c[1].opcode, 0xA);
  assert_int_equal(c[1].len, 0);
  free_frames(c, k);
}

static void test_frames_every_split(void **state) {
  (void)state;
  uint8_t *s = malloc(80000), *expect = malloc(80000);
  size_t elen, n = frame_script(s, expect, &elen);
  /* Two pieces split at every position in the first 400 bytes and then at a
   * stride; then three pieces. */
  for (size_t split = 0; split <= n; split += split < 400 ? 1 : 997) {
    fx_t f;
    assert_int_equal(fx_init(&f, NULL), 0);
    open_ok(&f);
    feed(&f, s, split);
    feed(&f, s + split, n - split);
    spin(&f);
    check_script_result(&f, expect, elen);
    fx_done(&f);
  }
  /* The header-heavy start one byte at a time, the rest in 3-byte pieces. */
  fx_t f;
  assert_int_equal(fx_init(&f, NULL), 0);
  open_ok(&f);
  for (size_t i = 0; i < n; i += i < 400 ? 1 : 3)
    feed(&f, s + i, i < 400 ? 1 : (n - i < 3 ? n - i : 3));
  spin(&f);
  check_script_result(&f, expect, elen);
  fx_done(&f);
  free(s);
  free(expect);
}

typedef struct {
  const uint8_t *bytes;
  size_t len;
  int err;
  uint16_t close_code; /* what the client must answer, 0: nothing */
} bad_frame_t;

static void test_bad_frames(void **state) {
  (void)state;
  uint8_t over[16];
  size_t overlen = wh_frame(over, 1, 0x2, NULL, 0);
  over[1] = 126, over[2] = 0x04, over[3] = 0x01; /* 1025 > max 1024 */
  overlen = 4;
  const bad_frame_t cases[] = {
      {(const uint8_t *)"\x82\x81\x01\x02\x03\x04x", 7, UVMQTT_EWS_FRAME,
       1002}, /* masked by the server */
      {(const uint8_t *)"\x81\x01x", 3, UVMQTT_EWS_FRAME, 1003}, /* text */
      {(const uint8_t *)"\xc2\x01x", 3, UVMQTT_EWS_FRAME, 1002}, /* rsv1 */
      {(const uint8_t *)"\x83\x01x", 3, UVMQTT_EWS_FRAME, 1002}, /* opcode */
      {(const uint8_t *)"\x80\x01x", 3, UVMQTT_EWS_FRAME, 1002}, /* cont */
      {(const uint8_t *)"\x02\x01x\x82\x01y", 6, UVMQTT_EWS_FRAME, 1002},
      {(const uint8_t *)"\x09\x00", 2, UVMQTT_EWS_FRAME, 1002}, /* frag ping */
      {(const uint8_t *)"\x89\x7e\x00\x7e", 4, UVMQTT_EWS_FRAME, 1002},
      {(const uint8_t *)"\x88\x01x", 3, UVMQTT_EWS_FRAME, 1002},
      {(const uint8_t *)"\x88\x02\x03\xed", 4, UVMQTT_EWS_FRAME, 1002},
      {(const uint8_t *)"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00", 10,
       UVMQTT_EWS_FRAME, 1002}, /* 64-bit length with the top bit */
      {over, overlen, UVMQTT_EWS_TOOBIG, 1009},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    fx_t f;
    uvmqtt_ws_opts_t o = {.host = "h", .max_frame_size = 1024};
    assert_int_equal(fx_init(&f, &o), 0);
    open_ok(&f);
    feed(&f, cases[i].bytes, cases[i].len);
    if (!f.ended || f.end_status != cases[i].err)
      fail_msg("case %zu: ended %d status %s", i, f.ended,
               uvmqtt_err_name(f.end_status));
    /* Nothing more after the end. */
    feed(&f, "\x82\x01z", 3);
    assert_int_equal(f.reads_after_end, 0);
    spin(&f);
    cf_t c[4];
    size_t k = client_frames(&f, c, 4);
    assert_int_equal(k, 1);
    assert_int_equal(c[0].opcode, 0x8);
    assert_int_equal(c[0].len, 2);
    assert_int_equal((c[0].data[0] << 8) | c[0].data[1], cases[i].close_code);
    free_frames(c, k);
    /* No data frames after our close frame. */
    uv_buf_t b = uv_buf_init("x", 1);
    assert_int_equal(f.ws->ops->write(f.ws, &b, 1, NULL, NULL),
                     UVMQTT_EWS_CLOSED);
    fx_done(&f);
  }
  /* A frame exactly at the limit passes. */
  fx_t f;
  uvmqtt_ws_opts_t o = {.host = "h", .max_frame_size = 1024};
  assert_int_equal(fx_init(&f, &o), 0);
  open_ok(&f);
  uint8_t *fr = calloc(1, 2000), *pl = calloc(1, 1024);
  size_t n = wh_frame(fr, 1, 0x2, pl, 1024);
  feed(&f, fr, n);
  assert_false(f.ended);
  assert_int_equal(f.in_len, 1024);
  free(fr);
  free(pl);
  fx_done(&f);
}

static void test_server_close(void **state) {
  (void)state;
  struct {
    const char *frame;
    size_t len;
    int end;
    unsigned reply_code;
  } cases[] = {
      {"\x88\x05\x03\xe8"
       "bye",
       7, UV_EOF, 1000},
      {"\x88\x00", 2, UV_EOF, 1000},
      {"\x88\x02\x03\xe9", 4, UVMQTT_EWS_CLOSED, 1001},
      {"\x88\x02\x03\xf3", 4, UVMQTT_EWS_CLOSED, 1011},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    fx_t f;
    assert_int_equal(fx_init(&f, NULL), 0);
    open_ok(&f);
    uint8_t buf[32];
    memcpy(buf, "\x82\x02\xd0\x00", 4);
    memcpy(buf + 4, cases[i].frame, cases[i].len);
    memcpy(buf + 4 + cases[i].len, "\x82\x01z", 3); /* ignored */
    feed(&f, buf, 4 + cases[i].len + 3);
    assert_int_equal(f.in_len, 2);
    assert_true(f.ended);
    assert_int_equal(f.end_status, cases[i].end);
    assert_int_equal(f.reads_after_end, 0);
    spin(&f);
    cf_t c[4];
    size_t k = client_frames(&f, c, 4);
    assert_int_equal(k, 1);
    assert_int_equal(c[0].opcode, 0x8);
    assert_true(c[0].masked);
    assert_int_equal((c[0].data[0] << 8) | c[0].data[1], cases[i].reply_code);
    free_frames(c, k);
    fx_done(&f);
  }
}

static void test_eof_inside_frame(void **state) {
  (void)state;
  fx_t f;
  assert_int_equal(fx_init(&f, NULL), 0);
  open_ok(&f);
  feed(&f,
       "\x82\x05"
       "ab",
       4);
  f.m->base.read_cb(&f.m->base, UV_EOF, NULL);
  assert_true(f.ended);
  assert_int_equal(f.end_status, UVMQTT_EWS_FRAME);
  fx_done(&f);
  /* At a frame boundary, EOF is EOF; errors pass through. */
  assert_int_equal(fx_init(&f, NULL), 0);
  open_ok(&f);
  feed(&f,
       "\x82\x02"
       "ab",
       4);
  f.m->base.read_cb(&f.m->base, UV_ECONNRESET, NULL);
  assert_int_equal(f.end_status, UV_ECONNRESET);
  fx_done(&f);
}

/* ---- tests: frames out -----------------------------------------------------
 */

static int wcb_order[16];
static int wcb_status[16];
static int wcb_count;
static int in_write;

static void on_write(uvmqtt_stream_t *s, int status, void *arg) {
  (void)s;
  assert_false(in_write);
  wcb_order[wcb_count] = (int)(intptr_t)arg;
  wcb_status[wcb_count] = status;
  wcb_count++;
}

static void test_write_frames(void **state) {
  (void)state;
  fx_t f;
  assert_int_equal(fx_init(&f, NULL), 0);
  open_ok(&f);
  size_t sizes[] = {0, 5, 125, 126, 200, 65535, 65536, 70001};
  size_t nsz = sizeof(sizes) / sizeof(sizes[0]);
  uint8_t *data = malloc(70001 + 7);
  for (size_t i = 0; i < 70008; i++)
    data[i] = (uint8_t)(i ^ (i >> 8));
  uint8_t *copy = malloc(70008);
  memcpy(copy, data, 70008);
  wcb_count = 0;
  for (size_t i = 0; i < nsz; i++) {
    /* Split each payload over three buffers at odd offsets. */
    size_t a = sizes[i] / 3, b = sizes[i] / 2;
    uv_buf_t bufs[3] = {
        uv_buf_init((char *)data, (unsigned)a),
        uv_buf_init((char *)data + a, (unsigned)(b - a)),
        uv_buf_init((char *)data + b, (unsigned)(sizes[i] - b))};
    in_write = 1;
    assert_int_equal(
        f.ws->ops->write(f.ws, bufs, 3, on_write, (void *)(intptr_t)i), 0);
    in_write = 0;
  }
  assert_int_equal(wcb_count, 0);
  spin(&f);
  assert_int_equal(wcb_count, (int)nsz);
  for (size_t i = 0; i < nsz; i++) {
    assert_int_equal(wcb_order[i], (int)i);
    assert_int_equal(wcb_status[i], 0);
  }
  assert_memory_equal(data, copy, 70008); /* the caller's bytes untouched */
  cf_t c[16];
  size_t k = client_frames(&f, c, 16);
  assert_int_equal(k, nsz);
  int same_masks = 0;
  for (size_t i = 0; i < k; i++) {
    assert_int_equal(c[i].opcode, 0x2);
    assert_true(c[i].fin);
    assert_true(c[i].masked);
    assert_int_equal(c[i].len, sizes[i]);
    if (sizes[i])
      assert_memory_equal(c[i].data, data, sizes[i]);
    if (i > 0 && memcmp(c[i].mask, c[i - 1].mask, 4) == 0)
      same_masks++;
  }
  assert_true(same_masks <= 1); /* a fresh mask per frame */
  free_frames(c, k);
  free(data);
  free(copy);
  fx_done(&f);
}

static void test_write_before_open_refused(void **state) {
  (void)state;
  fx_t f;
  assert_int_equal(fx_init(&f, NULL), 0);
  uv_buf_t b = uv_buf_init("x", 1);
  assert_int_equal(f.ws->ops->write(f.ws, &b, 1, on_write, NULL),
                   UVMQTT_ESTATE);
  fx_open(&f);
  assert_int_equal(f.ws->ops->write(f.ws, &b, 1, on_write, NULL),
                   UVMQTT_ESTATE);
  fx_done(&f);
}

static void test_close_cancels_writes(void **state) {
  (void)state;
  fx_t f;
  assert_int_equal(fx_init(&f, NULL), 0);
  open_ok(&f);
  spin(&f);
  wcb_count = 0;
  uv_buf_t b = uv_buf_init("abc", 3);
  assert_int_equal(f.ws->ops->write(f.ws, &b, 1, on_write, (void *)1), 0);
  assert_int_equal(f.ws->ops->write(f.ws, &b, 1, on_write, (void *)2), 0);
  uvmqtt__stream_close(f.ws, on_closed);
  f.ws = NULL;
  spin(&f);
  assert_int_equal(wcb_count, 2);
  assert_int_equal(wcb_status[0], UV_ECANCELED);
  assert_int_equal(wcb_status[1], UV_ECANCELED);
  assert_int_equal(wcb_order[0], 1);
  assert_int_equal(f.closed, 1);
  fx_done(&f);
}

static void test_shutdown_sends_close(void **state) {
  (void)state;
  fx_t f;
  assert_int_equal(fx_init(&f, NULL), 0);
  open_ok(&f);
  f.ws->ops->shutdown(f.ws);
  f.ws->ops->shutdown(f.ws); /* once only */
  spin(&f);
  assert_int_equal(f.m->shutdowns, 2);
  cf_t c[4];
  size_t k = client_frames(&f, c, 4);
  assert_int_equal(k, 1);
  assert_int_equal(c[0].opcode, 0x8);
  assert_int_equal((c[0].data[0] << 8) | c[0].data[1], 1000);
  free_frames(c, k);
  /* The server's answer ends reading cleanly, without a second close. */
  feed(&f, "\x88\x02\x03\xe8", 4);
  assert_int_equal(f.end_status, UV_EOF);
  spin(&f);
  k = client_frames(&f, c, 4);
  assert_int_equal(k, 1);
  free_frames(c, k);
  fx_done(&f);
}

/* ---- tests: reading control ------------------------------------------------
 */

static void test_read_stop_keeps_bytes(void **state) {
  (void)state;
  fx_t f;
  assert_int_equal(fx_init(&f, NULL), 0);
  open_ok(&f);
  f.stop_after_reads = 1;
  uint8_t s[64];
  size_t n = wh_frame(s, 1, 0x2, "abc", 3);
  n += wh_frame(s + n, 1, 0x2, "defg", 4);
  n += wh_frame(s + n, 1, 0x9, "p", 1);
  n += wh_frame(s + n, 0, 0x2, "h", 1);
  feed(&f, s, n);
  assert_int_equal(f.in_len, 3);
  assert_false(f.m->reading); /* back-pressure reaches the lower stream */
  spin(&f);
  assert_int_equal(f.in_len, 3);
  f.stop_after_reads = 0;
  assert_int_equal(f.ws->ops->read_start(f.ws), 0);
  assert_int_equal(f.in_len, 3); /* not from inside read_start() */
  spin(&f);
  assert_int_equal(f.in_len, 8);
  assert_memory_equal(f.in, "abcdefgh", 8);
  assert_true(f.m->reading);
  cf_t c[4];
  size_t k = client_frames(&f, c, 4);
  assert_int_equal(k, 1); /* the pong */
  free_frames(c, k);
  /* The message continues with fresh bytes. */
  feed(&f, "\x80\x01i", 3);
  assert_int_equal(f.in_len, 9);
  fx_done(&f);
}

static void test_close_inside_read_cb(void **state) {
  (void)state;
  fx_t f;
  assert_int_equal(fx_init(&f, NULL), 0);
  open_ok(&f);
  f.close_after_reads = 1;
  uint8_t s[64];
  size_t n = wh_frame(s, 1, 0x2, "abc", 3);
  n += wh_frame(s + n, 1, 0x9, "p", 1);
  n += wh_frame(s + n, 1, 0x2, "def", 3);
  feed(&f, s, n);
  assert_int_equal(f.in_len, 3);
  spin(&f);
  assert_int_equal(f.closed, 1);
  fx_done(&f);
}

/* Random bytes after the upgrade: the layer must end reading with an error
 * or keep going, never crash or read out of bounds (ASan). */
static void test_garbage(void **state) {
  (void)state;
  uint32_t seed = 12345;
  for (int round = 0; round < 300; round++) {
    fx_t f;
    uvmqtt_ws_opts_t o = {.host = "h", .max_frame_size = 4096};
    assert_int_equal(fx_init(&f, &o), 0);
    open_ok(&f);
    uint8_t g[512];
    for (size_t i = 0; i < sizeof(g); i++) {
      seed = seed * 1103515245u + 12345u;
      g[i] = (uint8_t)(seed >> 16);
    }
    /* Bias towards valid-looking unmasked binary headers. */
    if (round & 1)
      g[0] = 0x82, g[1] &= 0x7f;
    for (size_t i = 0; i < sizeof(g); i += 1 + (i % 5))
      feed(&f, g + i,
           1 + (i % 5) <= sizeof(g) - i ? 1 + (i % 5) : sizeof(g) - i);
    spin(&f);
    assert_int_equal(f.reads_after_end, 0);
    fx_done(&f);
  }
}

/* Fails the Nth allocation for every N during a whole session: every
 * failure must surface as an error and leak nothing. */
static void test_alloc_failures(void **state) {
  (void)state;
  for (long nth = 0; nth < 200; nth++) {
    long live0 = tu_alloc_live;
    tu_alloc_countdown = nth;
    fx_t f;
    int rc = fx_init(&f, NULL);
    if (rc != 0) {
      assert_int_equal(rc, UVMQTT_ENOMEM);
      fx_done(&f);
      tu_alloc_countdown = -1;
      assert_int_equal(tu_alloc_live, live0);
      continue;
    }
    f.in_open = 1;
    assert_int_equal(f.ws->ops->open(f.ws, on_open), 0);
    f.in_open = 0;
    spin(&f);
    if (f.opened == 0) {
      char key[64] = "";
      if (f.m->out_len) {
        char *req = calloc(1, f.m->out_len + 1);
        memcpy(req, f.m->out, f.m->out_len);
        wh_header(req, "Sec-WebSocket-Key", key, sizeof(key));
        free(req);
      }
      snprintf(f.key, sizeof(f.key), "%s", key);
      f.req_len = f.m->out_len;
      char r[1024];
      size_t n = good_reply(&f, r, sizeof(r), NULL);
      for (size_t i = 0; i < n; i += 50)
        feed(&f, r + i, n - i < 50 ? n - i : 50);
    }
    if (f.opened && f.open_status == 0) {
      f.stop_after_reads = 1;
      uint8_t s[64];
      size_t n = wh_frame(s, 1, 0x2, "abc", 3);
      n += wh_frame(s + n, 1, 0x9, "p", 1);
      n += wh_frame(s + n, 1, 0x2, "def", 3);
      feed(&f, s, n);
      if (f.ws && !f.ended)
        f.ws->ops->read_start(f.ws);
      spin(&f);
      uv_buf_t b = uv_buf_init("xyz", 3);
      wcb_count = 0;
      rc = f.ws->ops->write(f.ws, &b, 1, on_write, NULL);
      assert_true(rc == 0 || rc == UVMQTT_ENOMEM || rc == UVMQTT_EWS_CLOSED);
      spin(&f);
      assert_int_equal(wcb_count, rc == 0 ? 1 : 0);
    } else {
      assert_int_equal(f.opened, 1);
      assert_int_equal(f.open_status, UVMQTT_ENOMEM);
    }
    fx_done(&f);
    int reached_end = tu_alloc_countdown >= 0; /* no allocation failed */
    tu_alloc_countdown = -1;
    assert_int_equal(tu_alloc_live, live0);
    if (reached_end)
      return; /* the whole session ran without reaching the failure */
  }
  fail_msg("the allocation sweep did not finish");
}

int main(void) {
  uvmqtt_replace_allocator(tu_malloc, tu_realloc, tu_calloc, tu_free);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_request_format),
      cmocka_unit_test(test_new_rejects_bad_options),
      cmocka_unit_test(test_reply_every_split),
      cmocka_unit_test(test_reply_variants_accepted),
      cmocka_unit_test(test_reply_refused),
      cmocka_unit_test(test_reply_size_limits),
      cmocka_unit_test(test_eof_during_upgrade),
      cmocka_unit_test(test_open_write_error_deferred),
      cmocka_unit_test(test_close_before_open_cb),
      cmocka_unit_test(test_frames_every_split),
      cmocka_unit_test(test_bad_frames),
      cmocka_unit_test(test_server_close),
      cmocka_unit_test(test_eof_inside_frame),
      cmocka_unit_test(test_write_frames),
      cmocka_unit_test(test_write_before_open_refused),
      cmocka_unit_test(test_close_cancels_writes),
      cmocka_unit_test(test_shutdown_sends_close),
      cmocka_unit_test(test_read_stop_keeps_bytes),
      cmocka_unit_test(test_close_inside_read_cb),
      cmocka_unit_test(test_garbage),
      cmocka_unit_test(test_alloc_failures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
