/* The tls stream alone: a client tls stream over an in-test memory stream,
 * talking to a raw mbedTLS server in the same process through two
 * cross-linked byte buffers. No sockets. Covers the handshake (also with
 * delivery one byte at a time), application data both ways, back-pressure,
 * close_notify, EOF, the handshake timeout, cancellation on close, and each
 * failure with its specific error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "uvmqtt_config.h"
#include "uvmqtt/alloc.h"
#include "uvmqtt/errors.h"
#include "uvmqtt/tls.h"
#include "transport/tls_compat.h"

#include <mbedtls/ssl_cache.h>
#include <mbedtls/ssl_ticket.h>
#include "transport/transport.h"

#include "certs.h"
#include "testutil.h"

static char g_dir[256];

/* ---- byte buffers -------------------------------------------------------- */

typedef struct {
  uint8_t *p;
  size_t off, len, cap;
} bytes_t;

static void bytes_add(bytes_t *b, const void *p, size_t n) {
  if (b->cap - b->len < n) {
    size_t cap = b->cap ? b->cap * 2 : 1024;
    while (cap - b->len < n)
      cap *= 2;
    b->p = realloc(b->p, cap);
    assert_non_null(b->p);
    b->cap = cap;
  }
  memcpy(b->p + b->len, p, n);
  b->len += n;
}

static size_t bytes_avail(const bytes_t *b) {
  return b->len - b->off;
}

static void bytes_free(bytes_t *b) {
  free(b->p);
  memset(b, 0, sizeof(*b));
}

/* ---- the harness --------------------------------------------------------- */

typedef struct harness_s harness_t;

typedef struct {
  uvmqtt_stream_t s;
  harness_t *h;
  uv_timer_t closer;
  bool reading;
  bool closed;
  uvmqtt_stream_close_cb close_cb;
} mem_stream_t;

typedef struct wdone_s {
  struct wdone_s *next;
  uvmqtt_stream_write_cb cb;
  void *arg;
} wdone_t;

struct harness_s {
  uv_loop_t loop;
  uv_idle_t pump;
  mem_stream_t *ms;
  bytes_t to_srv, to_cli;
  wdone_t *wq;
  size_t chunk; /* bytes per delivery each way; 0 = everything */

  /* the server */
  bool srv_on;
  bool srv_ready;
  bool srv_echo;
  bool srv_failed;
  bool srv_hs_done;
  int srv_hs_rc;
  bool srv_close_notify;
  const char *psk_id;
  const uint8_t *psk_key;
  size_t psk_len;
  mbedtls_ssl_config sconf;
  mbedtls_ssl_context sssl;
  mbedtls_entropy_context sent;
  mbedtls_ctr_drbg_context sdrbg;
  mbedtls_x509_crt scrt, sca;
  mbedtls_pk_context skey;
  const char *salpn[3];
  bytes_t srv_plain;
  bool eof_to_client;
  bool eof_sent;

  /* the client */
  uvmqtt_tls_config_t *cfg;
  uvmqtt_stream_t *tls;
  int opened;
  int open_status;
  bytes_t cli_plain;
  int reads;
  int read_end;
  int writes_done;
  int write_status;
  int closed;
  int close_after_writes; /* writes seen when close_cb fired */
  bool pause_in_read;
  char log[8192];
};

static void mem_fire_writes(harness_t *h, int status) {
  while (h->wq != NULL) {
    wdone_t *w = h->wq;
    h->wq = w->next;
    w->cb(h->ms ? &h->ms->s : NULL, status, w->arg);
    free(w);
  }
}

static int mem_write(uvmqtt_stream_t *s, const uv_buf_t bufs[], unsigned n,
                     uvmqtt_stream_write_cb cb, void *arg) {
  mem_stream_t *ms = (mem_stream_t *)s;
  wdone_t *w, **pp;
  if (ms->closed)
    return UVMQTT_ESTATE;
  for (unsigned i = 0; i < n; i++)
    bytes_add(&ms->h->to_srv, bufs[i].base, bufs[i].len);
  w = calloc(1, sizeof(*w));
  assert_non_null(w);
  w->cb = cb;
  w->arg = arg;
  for (pp = &ms->h->wq; *pp != NULL; pp = &(*pp)->next)
    ;
  *pp = w;
  return 0;
}

static int mem_read_start(uvmqtt_stream_t *s) {
  ((mem_stream_t *)s)->reading = true;
  return 0;
}

static int mem_read_stop(uvmqtt_stream_t *s) {
  ((mem_stream_t *)s)->reading = false;
  return 0;
}

static void mem_closed(uv_handle_t *hd) {
  mem_stream_t *ms = hd->data;
  harness_t *h = ms->h;
  mem_fire_writes(h, UV_ECANCELED);
  if (ms->close_cb)
    ms->close_cb(&ms->s);
  h->ms = NULL;
  free(ms);
}

static void mem_close(uvmqtt_stream_t *s, uvmqtt_stream_close_cb cb) {
  mem_stream_t *ms = (mem_stream_t *)s;
  assert_false(ms->closed);
  ms->closed = true;
  ms->close_cb = cb;
  uv_close((uv_handle_t *)&ms->closer, mem_closed);
}

/* The socket layer of this stack: it says which loop the stack runs on. */
static uv_loop_t *mem_loop(const uvmqtt_stream_t *s) {
  return ((const mem_stream_t *)s)->closer.loop;
}

static const uvmqtt_stream_ops_t mem_ops = {
    .name = "mem",
    .loop = mem_loop,
    .open = NULL,
    .write = mem_write,
    .read_start = mem_read_start,
    .read_stop = mem_read_stop,
    .shutdown = NULL,
    .close = mem_close,
};

/* -- the raw mbedTLS server ---------------------------------------------- */

static int srv_send(void *ctx, const unsigned char *buf, size_t len) {
  harness_t *h = ctx;
  bytes_add(&h->to_cli, buf, len);
  return (int)len;
}

static int srv_recv(void *ctx, unsigned char *buf, size_t len) {
  harness_t *h = ctx;
  size_t n = bytes_avail(&h->to_srv);
  if (n == 0)
    return MBEDTLS_ERR_SSL_WANT_READ;
  if (h->chunk && n > h->chunk)
    n = h->chunk;
  if (n > len)
    n = len;
  memcpy(buf, h->to_srv.p + h->to_srv.off, n);
  h->to_srv.off += n;
  return (int)n;
}

static int srv_psk_cb(void *ctx, mbedtls_ssl_context *ssl,
                      const unsigned char *id, size_t id_len) {
  harness_t *h = ctx;
  if (h->psk_id == NULL || strlen(h->psk_id) != id_len ||
      memcmp(h->psk_id, id, id_len) != 0)
    return -1;
  return mbedtls_ssl_set_hs_psk(ssl, h->psk_key, h->psk_len);
}

typedef struct {
  const char *cert; /* file names in g_dir, NULL for PSK only */
  const char *key;
  const char *client_ca; /* require a client certificate from this CA */
  const char *psk_id;
  const uint8_t *psk_key;
  size_t psk_len;
  const char *alpn;
  /* Server-side resumption: a session-ID cache and/or session tickets,
   * both outliving the harness so a second connection can resume. */
  mbedtls_ssl_cache_context *cache;
  mbedtls_ssl_ticket_context *ticket;
} srv_opts_t;

static void srv_setup(harness_t *h, const srv_opts_t *o) {
  static const unsigned char pers[] = "test-server";
  mbedtls_ssl_config_init(&h->sconf);
  mbedtls_ssl_init(&h->sssl);
  mbedtls_entropy_init(&h->sent);
  mbedtls_ctr_drbg_init(&h->sdrbg);
  mbedtls_x509_crt_init(&h->scrt);
  mbedtls_x509_crt_init(&h->sca);
  mbedtls_pk_init(&h->skey);
  assert_int_equal(0, mbedtls_ctr_drbg_seed(&h->sdrbg, mbedtls_entropy_func,
                                            &h->sent, pers, sizeof(pers) - 1));
  assert_int_equal(0,
                   mbedtls_ssl_config_defaults(&h->sconf, MBEDTLS_SSL_IS_SERVER,
                                               MBEDTLS_SSL_TRANSPORT_STREAM,
                                               MBEDTLS_SSL_PRESET_DEFAULT));
  mbedtls_ssl_conf_rng(&h->sconf, mbedtls_ctr_drbg_random, &h->sdrbg);
  uvmqtt__tls_compat_set_versions(&h->sconf, 0x0303, 0x0303);
  if (o->cert != NULL) {
    FILE *f;
    char buf[8192];
    size_t n;
    assert_int_equal(
        0, mbedtls_x509_crt_parse_file(&h->scrt, tt_path(g_dir, o->cert)));
    f = fopen(tt_path(g_dir, o->key), "rb");
    assert_non_null(f);
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    assert_int_equal(
        0, uvmqtt__tls_compat_parse_key(&h->skey, (const unsigned char *)buf,
                                        n + 1, NULL, 0, &h->sdrbg));
    assert_int_equal(0,
                     mbedtls_ssl_conf_own_cert(&h->sconf, &h->scrt, &h->skey));
  }
  if (o->client_ca != NULL) {
    assert_int_equal(
        0, mbedtls_x509_crt_parse_file(&h->sca, tt_path(g_dir, o->client_ca)));
    mbedtls_ssl_conf_ca_chain(&h->sconf, &h->sca, NULL);
    mbedtls_ssl_conf_authmode(&h->sconf, MBEDTLS_SSL_VERIFY_REQUIRED);
  } else {
    mbedtls_ssl_conf_authmode(&h->sconf, MBEDTLS_SSL_VERIFY_NONE);
  }
  if (o->psk_id != NULL) {
    h->psk_id = o->psk_id;
    h->psk_key = o->psk_key;
    h->psk_len = o->psk_len;
    mbedtls_ssl_conf_psk_cb(&h->sconf, srv_psk_cb, h);
  }
  if (o->alpn != NULL) {
    h->salpn[0] = o->alpn;
    h->salpn[1] = NULL;
    assert_int_equal(0, mbedtls_ssl_conf_alpn_protocols(&h->sconf, h->salpn));
  }
  if (o->cache != NULL)
    mbedtls_ssl_conf_session_cache(&h->sconf, o->cache, mbedtls_ssl_cache_get,
                                   mbedtls_ssl_cache_set);
  if (o->ticket != NULL)
    mbedtls_ssl_conf_session_tickets_cb(&h->sconf, mbedtls_ssl_ticket_write,
                                        mbedtls_ssl_ticket_parse, o->ticket);
  assert_int_equal(0, mbedtls_ssl_setup(&h->sssl, &h->sconf));
  mbedtls_ssl_set_bio(&h->sssl, h, srv_send, srv_recv, NULL);
  h->srv_ready = true;
  h->srv_on = true;
  h->srv_echo = true;
}

static void srv_free(harness_t *h) {
  if (!h->srv_ready)
    return;
  mbedtls_ssl_free(&h->sssl);
  mbedtls_ssl_config_free(&h->sconf);
  mbedtls_x509_crt_free(&h->scrt);
  mbedtls_x509_crt_free(&h->sca);
  mbedtls_pk_free(&h->skey);
  mbedtls_ctr_drbg_free(&h->sdrbg);
  mbedtls_entropy_free(&h->sent);
  h->srv_ready = false;
}

static void srv_step(harness_t *h) {
  unsigned char buf[4096];
  int rc;
  if (!h->srv_on || h->srv_failed)
    return;
  if (!h->srv_hs_done) {
    rc = mbedtls_ssl_handshake(&h->sssl);
    if (rc == 0) {
      h->srv_hs_done = true;
    } else if (rc != MBEDTLS_ERR_SSL_WANT_READ &&
               rc != MBEDTLS_ERR_SSL_WANT_WRITE) {
      h->srv_failed = true;
      h->srv_hs_rc = rc;
      /* Like OpenSSL: refuse a missing client certificate out loud. */
      if (rc == MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE)
        mbedtls_ssl_send_alert_message(&h->sssl, MBEDTLS_SSL_ALERT_LEVEL_FATAL,
                                       MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE);
      return;
    }
  }
  for (int i = 0; i < 1000; i++) {
    rc = mbedtls_ssl_read(&h->sssl, buf, sizeof(buf));
    if (rc > 0) {
      bytes_add(&h->srv_plain, buf, (size_t)rc);
      if (h->srv_echo) {
        size_t off = 0;
        while (off < (size_t)rc) {
          int w = mbedtls_ssl_write(&h->sssl, buf + off, (size_t)rc - off);
          assert_true(w > 0);
          off += (size_t)w;
        }
      }
      continue;
    }
    if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
      h->srv_close_notify = true;
    break;
  }
}

/* -- the pump: server, then deliveries to the client --------------------- */

static void on_pump(uv_idle_t *idle) {
  harness_t *h = idle->data;
  mem_stream_t *ms = h->ms;
  if (ms != NULL && !ms->closed)
    mem_fire_writes(h, 0);
  srv_step(h);
  ms = h->ms;
  while (ms != NULL && !ms->closed && ms->reading &&
         bytes_avail(&h->to_cli) > 0) {
    size_t n = bytes_avail(&h->to_cli);
    uint8_t *tmp;
    if (h->chunk && n > h->chunk)
      n = h->chunk;
    tmp = malloc(n);
    assert_non_null(tmp);
    memcpy(tmp, h->to_cli.p + h->to_cli.off, n);
    h->to_cli.off += n;
    ms->s.read_cb(&ms->s, (ssize_t)n, tmp);
    memset(tmp, 0xAA, n); /* the layer must not keep the pointer */
    free(tmp);
    ms = h->ms;
  }
  if (ms != NULL && !ms->closed && ms->reading && h->eof_to_client &&
      !h->eof_sent && bytes_avail(&h->to_cli) == 0) {
    h->eof_sent = true;
    ms->s.read_cb(&ms->s, UV_EOF, NULL);
  }
}

/* -- client callbacks ------------------------------------------------------
 */

static void cli_open(uvmqtt_stream_t *s, int status) {
  harness_t *h = s->data;
  h->opened++;
  h->open_status = status;
}

static void cli_read(uvmqtt_stream_t *s, ssize_t nread, const uint8_t *buf) {
  harness_t *h = s->data;
  assert_int_equal(0, h->read_end); /* nothing after the end */
  if (nread < 0) {
    h->read_end = (int)nread;
    return;
  }
  assert_true(nread > 0);
  h->reads++;
  bytes_add(&h->cli_plain, buf, (size_t)nread);
  if (h->pause_in_read)
    assert_int_equal(0, s->ops->read_stop(s));
}

static void cli_log(uvmqtt_stream_t *s, int level, const char *msg) {
  harness_t *h = s->data;
  size_t used = strlen(h->log);
  (void)level;
  snprintf(h->log + used, sizeof(h->log) - used, "%s\n", msg);
}

static void cli_written(uvmqtt_stream_t *s, int status, void *arg) {
  harness_t *h = arg;
  (void)s;
  assert_int_equal(0, h->closed); /* before close_cb */
  h->writes_done++;
  h->write_status = status;
}

static void cli_closed(uvmqtt_stream_t *s) {
  harness_t *h = s->data;
  h->closed++;
  h->close_after_writes = h->writes_done;
}

/* -- setup / teardown ------------------------------------------------------
 */

static void h_init_ex(harness_t *h, size_t chunk, bool make_cfg) {
  memset(h, 0, sizeof(*h));
  assert_int_equal(0, uv_loop_init(&h->loop));
  assert_int_equal(0, uv_idle_init(&h->loop, &h->pump));
  h->pump.data = h;
  assert_int_equal(0, uv_idle_start(&h->pump, on_pump));
  h->chunk = chunk;
  h->ms = calloc(1, sizeof(*h->ms));
  assert_non_null(h->ms);
  h->ms->h = h;
  h->ms->s.ops = &mem_ops;
  h->ms->reading = true;
  assert_int_equal(0, uv_timer_init(&h->loop, &h->ms->closer));
  h->ms->closer.data = h->ms;
  if (make_cfg)
    assert_int_equal(0, uvmqtt_tls_config_new(&h->cfg));
}

static void h_init(harness_t *h, size_t chunk) {
  h_init_ex(h, chunk, true);
}

static void h_ca(harness_t *h, const char *ca) {
  assert_int_equal(0,
                   uvmqtt_tls_config_set_ca_file(h->cfg, tt_path(g_dir, ca)));
}

/* Creates the tls stream and runs the handshake to its end. */
static int h_connect(harness_t *h, const char *name) {
  int rc = uvmqtt__tls_new(&h->ms->s, h->cfg, name, &h->tls);
  if (rc != 0)
    return rc;
  h->tls->data = h;
  h->tls->read_cb = cli_read;
  h->tls->log_cb = cli_log;
  assert_int_equal(0, h->tls->ops->open(h->tls, cli_open));
  assert_int_equal(0, h->opened); /* never from inside open() */
  assert_int_equal(0, tu_run_until(&h->loop, &h->opened, 5000));
  assert_int_equal(1, h->opened);
  return h->open_status;
}

static void h_close_tls(harness_t *h) {
  if (h->tls != NULL) {
    uvmqtt__stream_close(h->tls, cli_closed);
    h->tls = NULL;
    assert_int_equal(0, tu_run_until(&h->loop, &h->closed, 5000));
    assert_int_equal(1, h->closed);
    assert_null(h->ms); /* the lower stream closed too */
  } else if (h->ms != NULL) {
    mem_close(&h->ms->s, NULL);
  }
}

static void h_finish(harness_t *h) {
  h_close_tls(h);
  uv_idle_stop(&h->pump);
  uv_close((uv_handle_t *)&h->pump, NULL);
  assert_int_equal(0, tu_loop_close(&h->loop, 2000));
  srv_free(h);
  uvmqtt_tls_config_free(h->cfg);
  bytes_free(&h->to_srv);
  bytes_free(&h->to_cli);
  bytes_free(&h->srv_plain);
  bytes_free(&h->cli_plain);
}

static void h_write(harness_t *h, const void *p, size_t n) {
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  assert_int_equal(0, uvmqtt__stream_write(h->tls, &b, 1, cli_written, h));
}

/* Waits until the server echoed n bytes back. */
static void h_wait_echo(harness_t *h, size_t n) {
  uint64_t end = tu_now_ms() + 5000;
  while (h->cli_plain.len < n && tu_now_ms() < end)
    uv_run(&h->loop, UV_RUN_ONCE);
  assert_int_equal(n, h->cli_plain.len);
}

static const srv_opts_t srv_good = {.cert = "server.crt", .key = "server.key"};

/* ---- tests --------------------------------------------------------------- */

static void roundtrip(size_t chunk, const char *name) {
  harness_t h;
  static const char msg[] = "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00";
  h_init(&h, chunk);
  h_ca(&h, "ca.crt");
  srv_setup(&h, &srv_good);
  assert_int_equal(0, h_connect(&h, name));
  h_write(&h, msg, sizeof(msg) - 1);
  h_wait_echo(&h, sizeof(msg) - 1);
  assert_memory_equal(msg, h.cli_plain.p, sizeof(msg) - 1);
  assert_memory_equal(msg, h.srv_plain.p, sizeof(msg) - 1);
  assert_int_equal(1, h.writes_done);
  assert_int_equal(0, h.write_status);
  /* A goodbye reaches the server as close_notify. */
  h.tls->ops->shutdown(h.tls);
  tu_run_for(&h.loop, 30);
  assert_true(h.srv_close_notify);
  assert_int_equal(UV_EPIPE,
                   uvmqtt__stream_write(h.tls, NULL, 0, cli_written, &h));
  h_finish(&h);
}

static void test_roundtrip(void **state) {
  (void)state;
  roundtrip(0, "localhost");
}

static void test_roundtrip_one_byte_at_a_time(void **state) {
  (void)state;
  roundtrip(1, "localhost");
}

static void test_roundtrip_ip_literal(void **state) {
  (void)state;
  roundtrip(7, "127.0.0.1"); /* iPAddress subjectAltName */
}

static void test_large_and_multi_buffer_writes(void **state) {
  harness_t h;
  enum { N = 200000 };
  uint8_t *big = malloc(N);
  uint8_t *expect = malloc(N + 10);
  uv_buf_t bufs[3];
  (void)state;
  assert_non_null(big);
  for (size_t i = 0; i < N; i++)
    big[i] = (uint8_t)(i * 7 + 3);
  h_init(&h, 0);
  h_ca(&h, "ca.crt");
  srv_setup(&h, &srv_good);
  assert_int_equal(0, h_connect(&h, "localhost"));
  bufs[0] = uv_buf_init("abcde", 5);
  bufs[1] = uv_buf_init((char *)big, N);
  bufs[2] = uv_buf_init("", 0);
  assert_int_equal(0, uvmqtt__stream_write(h.tls, bufs, 3, cli_written, &h));
  /* An empty write completes too, after the one before it. */
  assert_int_equal(0, uvmqtt__stream_write(h.tls, bufs, 0, cli_written, &h));
  bufs[0] = uv_buf_init("fghij", 5);
  assert_int_equal(0, uvmqtt__stream_write(h.tls, bufs, 1, cli_written, &h));
  h_wait_echo(&h, N + 10);
  memcpy(expect, "abcde", 5);
  memcpy(expect + 5, big, N);
  memcpy(expect + 5 + N, "fghij", 5);
  assert_memory_equal(expect, h.cli_plain.p, N + 10);
  assert_int_equal(3, h.writes_done);
  assert_true(h.reads >= N / 16384); /* at most a record per read_cb */
  h_finish(&h);
  free(big);
  free(expect);
}

static void test_backpressure(void **state) {
  harness_t h;
  char msg[3000];
  (void)state;
  memset(msg, 'x', sizeof(msg));
  h_init(&h, 100);
  h_ca(&h, "ca.crt");
  srv_setup(&h, &srv_good);
  assert_int_equal(0, h_connect(&h, "localhost"));
  h.srv_echo = false;
  h_write(&h, msg, sizeof(msg));
  tu_run_for(&h.loop, 20);
  assert_int_equal(sizeof(msg), h.srv_plain.len);
  /* The server sends three records; the client pauses after each. */
  h.pause_in_read = true;
  for (int i = 0; i < 3; i++)
    assert_int_equal(
        1000, mbedtls_ssl_write(&h.sssl, (const unsigned char *)msg, 1000));
  tu_run_for(&h.loop, 30);
  assert_int_equal(1, h.reads);
  assert_int_equal(1000, h.cli_plain.len);
  assert_int_equal(0, h.tls->ops->read_start(h.tls));
  assert_int_equal(1, h.reads); /* not from inside read_start */
  tu_run_for(&h.loop, 30);
  assert_int_equal(2, h.reads);
  h.pause_in_read = false;
  assert_int_equal(0, h.tls->ops->read_start(h.tls));
  tu_run_for(&h.loop, 30);
  assert_int_equal(3, h.reads);
  assert_int_equal(3000, h.cli_plain.len);
  h_finish(&h);
}

static void test_peer_close_notify_is_eof(void **state) {
  harness_t h;
  (void)state;
  h_init(&h, 0);
  h_ca(&h, "ca.crt");
  srv_setup(&h, &srv_good);
  assert_int_equal(0, h_connect(&h, "localhost"));
  assert_int_equal(
      5, mbedtls_ssl_write(&h.sssl, (const unsigned char *)"hello", 5));
  assert_int_equal(0, mbedtls_ssl_close_notify(&h.sssl));
  tu_run_for(&h.loop, 30);
  assert_int_equal(5, h.cli_plain.len);
  assert_int_equal(UV_EOF, h.read_end);
  h_finish(&h);
}

static void test_lower_eof_after_open(void **state) {
  harness_t h;
  (void)state;
  h_init(&h, 0);
  h_ca(&h, "ca.crt");
  srv_setup(&h, &srv_good);
  assert_int_equal(0, h_connect(&h, "localhost"));
  h.eof_to_client = true;
  tu_run_for(&h.loop, 30);
  assert_int_equal(UV_EOF, h.read_end);
  h_finish(&h);
}

static void expect_failure(const srv_opts_t *so, const char *ca,
                           const char *name, int expect, uint32_t flag) {
  harness_t h;
  int mb = 0;
  uint32_t vf = 0;
  h_init(&h, 0);
  if (ca != NULL)
    h_ca(&h, ca);
  srv_setup(&h, so);
  assert_int_equal(expect, h_connect(&h, name));
  assert_int_equal(0, uvmqtt__tls_last_error(h.tls, &mb, &vf));
  assert_true(mb < 0);
  if (flag != 0)
    assert_true(vf & flag);
  assert_false(h.srv_hs_done);
  assert_int_equal(0, h.srv_plain.len); /* no application data */
  assert_non_null(strstr(h.log, "tls:"));
  assert_int_equal(UV_EPIPE,
                   uvmqtt__stream_write(h.tls, NULL, 0, cli_written, &h));
  h_finish(&h);
}

static void test_untrusted(void **state) {
  srv_opts_t so = {.cert = "other.crt", .key = "other.key"};
  (void)state;
  expect_failure(&so, "ca.crt", "localhost", UVMQTT_ETLS_UNTRUSTED,
                 MBEDTLS_X509_BADCERT_NOT_TRUSTED);
}

static void test_no_ca_is_untrusted(void **state) {
  (void)state;
  expect_failure(&srv_good, NULL, "localhost", UVMQTT_ETLS_UNTRUSTED, 0);
}

static void test_expired(void **state) {
  srv_opts_t so = {.cert = "expired.crt", .key = "expired.key"};
  (void)state;
  expect_failure(&so, "ca.crt", "localhost", UVMQTT_ETLS_EXPIRED,
                 MBEDTLS_X509_BADCERT_EXPIRED);
}

static void test_wrong_host(void **state) {
  srv_opts_t so = {.cert = "wronghost.crt", .key = "wronghost.key"};
  (void)state;
  expect_failure(&so, "ca.crt", "localhost", UVMQTT_ETLS_HOSTNAME,
                 MBEDTLS_X509_BADCERT_CN_MISMATCH);
  expect_failure(&srv_good, "ca.crt", "127.0.0.2", UVMQTT_ETLS_HOSTNAME,
                 MBEDTLS_X509_BADCERT_CN_MISMATCH);
}

static void test_missing_client_cert(void **state) {
  srv_opts_t so = {
      .cert = "server.crt", .key = "server.key", .client_ca = "ca.crt"};
  (void)state;
  expect_failure(&so, "ca.crt", "localhost", UVMQTT_ETLS_NOCERT, 0);
}

static void test_client_cert_from_other_ca(void **state) {
  harness_t h;
  srv_opts_t so = {
      .cert = "server.crt", .key = "server.key", .client_ca = "ca.crt"};
  (void)state;
  h_init(&h, 0);
  h_ca(&h, "ca.crt");
  assert_int_equal(0, uvmqtt_tls_config_set_cert_file(
                          h.cfg, tt_path(g_dir, "other-client.crt"),
                          tt_path(g_dir, "other-client.key"), NULL));
  srv_setup(&h, &so);
  assert_int_equal(UVMQTT_ETLS_ALERT, h_connect(&h, "localhost"));
  h_finish(&h);
}

static void test_mutual_tls(void **state) {
  harness_t h;
  srv_opts_t so = {
      .cert = "server.crt", .key = "server.key", .client_ca = "ca.crt"};
  (void)state;
  h_init(&h, 3);
  h_ca(&h, "ca.crt");
  /* The encrypted key, with its password. */
  assert_int_equal(0, uvmqtt_tls_config_set_cert_file(
                          h.cfg, tt_path(g_dir, "client.crt"),
                          tt_path(g_dir, "client-enc.key"), "secret"));
  srv_setup(&h, &so);
  assert_int_equal(0, h_connect(&h, "localhost"));
  h_write(&h, "ping", 4);
  h_wait_echo(&h, 4);
  assert_non_null(mbedtls_ssl_get_peer_cert(&h.sssl));
  h_finish(&h);
}

static const uint8_t psk_key[] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc,
                                  0xde, 0xf0, 0x01, 0x02, 0x03, 0x04};

static void test_psk(void **state) {
  harness_t h;
  srv_opts_t so = {
      .psk_id = "dev-1", .psk_key = psk_key, .psk_len = sizeof(psk_key)};
  (void)state;
  h_init(&h, 0);
  assert_int_equal(
      0, uvmqtt_tls_config_set_psk(h.cfg, "dev-1", psk_key, sizeof(psk_key)));
  assert_int_equal(UVMQTT_ESTATE,
                   uvmqtt_tls_config_set_psk(h.cfg, "dev-1", psk_key, 4));
  srv_setup(&h, &so);
  /* A PSK connection needs no CA and no host name. */
  assert_int_equal(0, h_connect(&h, NULL));
  h_write(&h, "psk", 3);
  h_wait_echo(&h, 3);
  h_finish(&h);
}

static void psk_failure(const char *id, const uint8_t *key, size_t len) {
  harness_t h;
  srv_opts_t so = {
      .psk_id = "dev-1", .psk_key = psk_key, .psk_len = sizeof(psk_key)};
  h_init(&h, 0);
  assert_int_equal(0, uvmqtt_tls_config_set_psk(h.cfg, id, key, len));
  srv_setup(&h, &so);
  assert_int_equal(UVMQTT_ETLS_PSK, h_connect(&h, "localhost"));
  assert_int_equal(0, h.srv_plain.len);
  h_finish(&h);
}

static void test_psk_wrong_key(void **state) {
  static const uint8_t bad[] = {0xff, 0x34, 0x56, 0x78, 0x9a, 0xbc,
                                0xde, 0xf0, 0x01, 0x02, 0x03, 0x04};
  (void)state;
  psk_failure("dev-1", bad, sizeof(bad));
}

static void test_psk_unknown_identity(void **state) {
  (void)state;
  psk_failure("dev-2", psk_key, sizeof(psk_key));
}

static void test_insecure_hostname_warns(void **state) {
  harness_t h;
  srv_opts_t so = {.cert = "wronghost.crt", .key = "wronghost.key"};
  (void)state;
  h_init(&h, 0);
  h_ca(&h, "ca.crt");
  assert_int_equal(0, uvmqtt_tls_config_set_verify(h.cfg, true, false));
  srv_setup(&h, &so);
  assert_int_equal(0, h_connect(&h, "localhost"));
  assert_non_null(strstr(h.log, "host name verification is disabled"));
  h_finish(&h);

  /* The chain is still checked. */
  so.cert = "other.crt";
  so.key = "other.key";
  h_init(&h, 0);
  h_ca(&h, "ca.crt");
  assert_int_equal(0, uvmqtt_tls_config_set_verify(h.cfg, true, false));
  srv_setup(&h, &so);
  assert_int_equal(UVMQTT_ETLS_UNTRUSTED, h_connect(&h, "localhost"));
  h_finish(&h);
}

static void test_no_verify_warns(void **state) {
  harness_t h;
  srv_opts_t so = {.cert = "other.crt", .key = "other.key"};
  (void)state;
  h_init(&h, 0);
  assert_int_equal(0, uvmqtt_tls_config_set_verify(h.cfg, false, false));
  srv_setup(&h, &so);
  assert_int_equal(0, h_connect(&h, "wrong.example"));
  assert_non_null(strstr(h.log, "peer verification is disabled"));
  h_finish(&h);
}

static void test_handshake_timeout(void **state) {
  harness_t h;
  uint64_t t0;
  (void)state;
  h_init(&h, 0);
  h_ca(&h, "ca.crt");
  assert_int_equal(0, uvmqtt_tls_config_set_handshake_timeout(h.cfg, 150));
  srv_setup(&h, &srv_good);
  h.srv_on = false; /* the server never answers */
  t0 = tu_now_ms();
  assert_int_equal(UVMQTT_ETIMEDOUT, h_connect(&h, "localhost"));
  assert_true(tu_now_ms() - t0 >= 140);
  assert_true(h.to_srv.len > 0); /* the ClientHello went out */
  h_finish(&h);
}

static void test_peer_eof_during_handshake(void **state) {
  harness_t h;
  (void)state;
  h_init(&h, 0);
  h_ca(&h, "ca.crt");
  srv_setup(&h, &srv_good);
  h.srv_on = false;
  h.eof_to_client = true;
  assert_int_equal(UVMQTT_ETLS_HANDSHAKE, h_connect(&h, "localhost"));
  h_finish(&h);
}

static void test_close_during_handshake(void **state) {
  harness_t h;
  (void)state;
  h_init(&h, 0);
  h_ca(&h, "ca.crt");
  srv_setup(&h, &srv_good);
  h.srv_on = false;
  assert_int_equal(0, uvmqtt__tls_new(&h.ms->s, h.cfg, "localhost", &h.tls));
  h.tls->data = &h;
  h.tls->read_cb = cli_read;
  assert_int_equal(0, h.tls->ops->open(h.tls, cli_open));
  assert_int_equal(UVMQTT_ESTATE, h.tls->ops->open(h.tls, cli_open));
  tu_run_for(&h.loop, 10);
  h_close_tls(&h);
  tu_run_for(&h.loop, 10);
  assert_int_equal(0, h.opened); /* cancelled: open_cb never fires */
  h_finish(&h);
}

static void test_close_cancels_pending_writes(void **state) {
  harness_t h;
  (void)state;
  h_init(&h, 0);
  h_ca(&h, "ca.crt");
  srv_setup(&h, &srv_good);
  assert_int_equal(0, h_connect(&h, "localhost"));
  h_write(&h, "one", 3);
  h_write(&h, "two", 3);
  h_close_tls(&h);
  assert_int_equal(2, h.writes_done);
  assert_int_equal(UV_ECANCELED, h.write_status);
  assert_int_equal(2, h.close_after_writes);
  h_finish(&h);
}

static void test_close_inside_read_cb(void **state);

static void close_in_read(uvmqtt_stream_t *s, ssize_t nread,
                          const uint8_t *buf) {
  harness_t *h = s->data;
  (void)buf;
  h->reads++;
  assert_true(nread > 0);
  uvmqtt__stream_close(s, cli_closed);
  h->tls = NULL;
}

static void test_close_inside_read_cb(void **state) {
  harness_t h;
  (void)state;
  h_init(&h, 0);
  h_ca(&h, "ca.crt");
  srv_setup(&h, &srv_good);
  assert_int_equal(0, h_connect(&h, "localhost"));
  h.tls->read_cb = close_in_read;
  /* Two records arrive together; the second must not be delivered. */
  mbedtls_ssl_write(&h.sssl, (const unsigned char *)"a", 1);
  mbedtls_ssl_write(&h.sssl, (const unsigned char *)"b", 1);
  assert_int_equal(0, tu_run_until(&h.loop, &h.closed, 2000));
  assert_int_equal(1, h.reads);
  h_finish(&h);
}

static void test_alpn(void **state) {
  harness_t h;
  const char *protos[] = {"mqtt", "x-amzn-mqtt-ca"};
  srv_opts_t so = {
      .cert = "server.crt", .key = "server.key", .alpn = "x-amzn-mqtt-ca"};
  (void)state;
  h_init(&h, 0);
  h_ca(&h, "ca.crt");
  assert_int_equal(0, uvmqtt_tls_config_set_alpn(h.cfg, protos, 2));
  srv_setup(&h, &so);
  assert_int_equal(0, h_connect(&h, "localhost"));
  assert_string_equal("x-amzn-mqtt-ca", mbedtls_ssl_get_alpn_protocol(&h.sssl));
  assert_non_null(mbedtls_ssl_get_alpn_protocol(&h.sssl));
  h_finish(&h);
}

static void test_ciphersuites(void **state) {
  harness_t h;
  (void)state;
  h_init(&h, 0);
  h_ca(&h, "ca.crt");
  assert_int_equal(UVMQTT_EINVAL,
                   uvmqtt_tls_config_set_ciphersuites(h.cfg, "NO-SUCH-SUITE"));
  assert_int_equal(UVMQTT_EINVAL, uvmqtt_tls_config_set_ciphersuites(
                                      h.cfg, "TLS-ECDHE-ECDSA-WITH-AES-128-"
                                             "GCM-SHA256:bogus"));
  assert_int_equal(0, uvmqtt_tls_config_set_ciphersuites(
                          h.cfg, "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_"
                                 "SHA256, TLS-ECDHE-ECDSA-WITH-AES-256-GCM-"
                                 "SHA384"));
  srv_setup(&h, &srv_good);
  assert_int_equal(0, h_connect(&h, "localhost"));
  assert_string_equal("TLS-ECDHE-ECDSA-WITH-CHACHA20-POLY1305-SHA256",
                      mbedtls_ssl_get_ciphersuite(&h.sssl));
  h_finish(&h);
}

static void test_config_api(void **state) {
  uvmqtt_tls_config_t *cfg;
  FILE *f;
  char pem[8192], key[4096];
  size_t n, kn;
  uvmqtt_stream_t *out = NULL;
  (void)state;
  assert_int_equal(UVMQTT_EINVAL, uvmqtt_tls_config_new(NULL));
  assert_int_equal(0, uvmqtt_tls_config_new(&cfg));
  assert_int_equal(UVMQTT_ETLS_FILE,
                   uvmqtt_tls_config_set_ca_file(cfg, "/nonexistent/ca.pem"));
  assert_int_equal(UVMQTT_ETLS_FILE, uvmqtt_tls_config_set_ca_file(
                                         cfg, tt_path(g_dir, "ca.ext")));
  assert_int_equal(0, uvmqtt_tls_config_set_ca_path(cfg, g_dir));
  f = fopen(tt_path(g_dir, "ca.crt"), "rb");
  assert_non_null(f);
  n = fread(pem, 1, sizeof(pem), f);
  fclose(f);
  assert_int_equal(0, uvmqtt_tls_config_set_ca_pem(cfg, pem, n));
  assert_int_equal(UVMQTT_ETLS_FILE, uvmqtt_tls_config_set_ca_pem(cfg, "x", 1));
  /* Keys: wrong password, mismatched pair, then from memory. */
  assert_int_equal(UVMQTT_ETLS_FILE,
                   uvmqtt_tls_config_set_cert_file(
                       cfg, tt_path(g_dir, "client.crt"),
                       tt_path(g_dir, "client-enc.key"), "wrong"));
  assert_int_equal(
      UVMQTT_ETLS_FILE,
      uvmqtt_tls_config_set_cert_file(cfg, tt_path(g_dir, "client.crt"),
                                      tt_path(g_dir, "client-enc.key"), NULL));
  assert_int_equal(UVMQTT_ETLS_CONFIG, uvmqtt_tls_config_set_cert_file(
                                           cfg, tt_path(g_dir, "client.crt"),
                                           tt_path(g_dir, "server.key"), NULL));
  f = fopen(tt_path(g_dir, "client.crt"), "rb");
  n = fread(pem, 1, sizeof(pem), f);
  fclose(f);
  f = fopen(tt_path(g_dir, "client.key"), "rb");
  kn = fread(key, 1, sizeof(key), f);
  fclose(f);
  assert_int_equal(0,
                   uvmqtt_tls_config_set_cert_pem(cfg, pem, n, key, kn, NULL));
  assert_int_equal(0, uvmqtt_tls_config_set_cert_pem(cfg, pem, n, key, kn,
                                                     NULL)); /* replaces */
  /* Versions. */
  assert_int_equal(
      0, uvmqtt_tls_config_set_versions(cfg, UVMQTT_TLS_V1_2, UVMQTT_TLS_V1_2));
  assert_int_equal(UVMQTT_EINVAL,
                   uvmqtt_tls_config_set_versions(cfg, 0x0301, 0));
#if UVMQTT_TLS_HAVE_TLS13
  assert_int_equal(0, uvmqtt_tls_config_set_versions(cfg, 0, UVMQTT_TLS_V1_3));
  assert_int_equal(UVMQTT_EINVAL, uvmqtt_tls_config_set_versions(
                                      cfg, UVMQTT_TLS_V1_3, UVMQTT_TLS_V1_2));
#else
  assert_int_equal(UVMQTT_ENOTSUP,
                   uvmqtt_tls_config_set_versions(cfg, 0, UVMQTT_TLS_V1_3));
  assert_int_equal(UVMQTT_ENOTSUP,
                   uvmqtt_tls_config_set_versions(cfg, UVMQTT_TLS_V1_3, 0));
#endif
  assert_int_equal(UVMQTT_EINVAL,
                   uvmqtt_tls_config_set_handshake_timeout(cfg, 0));
  assert_int_equal(0, uvmqtt_tls_config_set_handshake_timeout(cfg, 500));
  assert_int_equal(UVMQTT_EINVAL, uvmqtt_tls_config_set_alpn(cfg, NULL, 1));
  {
    const char *bad[] = {""};
    assert_int_equal(UVMQTT_EINVAL, uvmqtt_tls_config_set_alpn(cfg, bad, 1));
  }
  assert_int_equal(0, uvmqtt_tls_config_set_alpn(cfg, NULL, 0));
  assert_int_equal(UVMQTT_EINVAL, uvmqtt_tls_config_set_psk(cfg, "", "k", 1));
  assert_int_equal(UVMQTT_EINVAL, uvmqtt_tls_config_set_debug(cfg, 5));
  assert_int_equal(0, uvmqtt_tls_config_set_debug(cfg, 0));
  assert_int_equal(0, uvmqtt_tls_config_set_ciphersuites(cfg, NULL));
  /* Host-name verification needs a host name. */
  assert_int_equal(UVMQTT_EINVAL,
                   uvmqtt__tls_new((uvmqtt_stream_t *)&pem, cfg, NULL, &out));
  assert_null(out);
  assert_int_equal(UVMQTT_EINVAL, uvmqtt__tls_last_error(NULL, NULL, NULL));
  uvmqtt_tls_config_free(cfg);
  uvmqtt_tls_config_free(NULL);
}

static void test_shared_config(void **state) {
  /* One configuration, several connections at once. */
  harness_t h[4];
  uvmqtt_tls_config_t *shared;
  (void)state;
  assert_int_equal(0, uvmqtt_tls_config_new(&shared));
  assert_int_equal(
      0, uvmqtt_tls_config_set_ca_file(shared, tt_path(g_dir, "ca.crt")));
  for (int i = 0; i < 4; i++) {
    h_init(&h[i], 0);
    uvmqtt_tls_config_free(h[i].cfg);
    h[i].cfg = shared;
    srv_setup(&h[i], &srv_good);
    assert_int_equal(0, h_connect(&h[i], "localhost"));
  }
  for (int i = 0; i < 4; i++) {
    h_write(&h[i], "s", 1);
    h_wait_echo(&h[i], 1);
    h[i].cfg = NULL;
    h_finish(&h[i]);
  }
  uvmqtt_tls_config_free(shared);
}

/* ---- session resumption -------------------------------------------------
 * Two connections in a row through one configuration; the server keeps
 * sessions in a session-ID cache or issues tickets. Besides the stream's
 * own verdict, the bytes the server sent during the handshake tell a
 * resumed handshake (no certificate: ~150 bytes) from a full one. */

typedef struct {
  bool resumed;
  size_t srv_hs_bytes;
} hs_result_t;

static hs_result_t resume_round(uvmqtt_tls_config_t *cfg, const char *name,
                                const srv_opts_t *so) {
  harness_t h;
  hs_result_t r;
  h_init_ex(&h, 0, false);
  h.cfg = cfg;
  srv_setup(&h, so);
  assert_int_equal(0, h_connect(&h, name));
  r.resumed = uvmqtt__tls_resumed(h.tls);
  r.srv_hs_bytes = h.to_cli.len;
  h_write(&h, "r", 1);
  h_wait_echo(&h, 1); /* the resumed session carries data */
  h.cfg = NULL;
  h_finish(&h);
  return r;
}

static uvmqtt_tls_config_t *resume_cfg(void) {
  uvmqtt_tls_config_t *cfg;
  assert_int_equal(0, uvmqtt_tls_config_new(&cfg));
  assert_int_equal(
      0, uvmqtt_tls_config_set_ca_file(cfg, tt_path(g_dir, "ca.crt")));
  return cfg;
}

static void check_stats(uvmqtt_tls_config_t *cfg, uint64_t hs, uint64_t res) {
  uint64_t a = 99, b = 99;
  assert_int_equal(0, uvmqtt_tls_config_session_stats(cfg, &a, &b));
  assert_int_equal(hs, a);
  assert_int_equal(res, b);
}

static void test_resume_session_id(void **state) {
  mbedtls_ssl_cache_context cache;
  srv_opts_t so = srv_good;
  uvmqtt_tls_config_t *cfg = resume_cfg();
  hs_result_t r1, r2, r3;
  (void)state;
  mbedtls_ssl_cache_init(&cache);
  so.cache = &cache;
  r1 = resume_round(cfg, "localhost", &so);
  r2 = resume_round(cfg, "localhost", &so);
  r3 = resume_round(cfg, "localhost", &so);
  assert_false(r1.resumed);
  assert_true(r2.resumed);
  assert_true(r3.resumed); /* a resumed session resumes again */
  assert_true(r2.srv_hs_bytes < r1.srv_hs_bytes / 2);
  check_stats(cfg, 3, 2);
  uvmqtt_tls_config_free(cfg);
  mbedtls_ssl_cache_free(&cache);
}

static void test_resume_ticket(void **state) {
  mbedtls_ssl_ticket_context ticket;
  mbedtls_entropy_context ent;
  mbedtls_ctr_drbg_context drbg;
  srv_opts_t so = srv_good;
  uvmqtt_tls_config_t *cfg = resume_cfg();
  hs_result_t r1, r2;
  (void)state;
  mbedtls_entropy_init(&ent);
  mbedtls_ctr_drbg_init(&drbg);
  assert_int_equal(
      0, mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &ent, NULL, 0));
  mbedtls_ssl_ticket_init(&ticket);
  assert_int_equal(
      0, mbedtls_ssl_ticket_setup(&ticket, mbedtls_ctr_drbg_random, &drbg,
                                  MBEDTLS_CIPHER_AES_256_GCM, 3600));
  so.ticket = &ticket; /* no server-side cache: only the ticket resumes */
  r1 = resume_round(cfg, "localhost", &so);
  r2 = resume_round(cfg, "localhost", &so);
  assert_false(r1.resumed);
  assert_true(r2.resumed);
  assert_true(r2.srv_hs_bytes < r1.srv_hs_bytes / 2);
  check_stats(cfg, 2, 1);
  uvmqtt_tls_config_free(cfg);
  mbedtls_ssl_ticket_free(&ticket);
  mbedtls_ctr_drbg_free(&drbg);
  mbedtls_entropy_free(&ent);
}

static void test_resume_off_other_name_or_server_forgot(void **state) {
  mbedtls_ssl_cache_context cache, fresh;
  srv_opts_t so = srv_good, so_fresh = srv_good;
  uvmqtt_tls_config_t *cfg = resume_cfg();
  hs_result_t r;
  (void)state;
  mbedtls_ssl_cache_init(&cache);
  mbedtls_ssl_cache_init(&fresh);
  so.cache = &cache;
  so_fresh.cache = &fresh;
  assert_false(resume_round(cfg, "localhost", &so).resumed);
  /* Another name is another server: its session is not offered. */
  r = resume_round(cfg, "127.0.0.1", &so);
  assert_false(r.resumed);
  /* A server that forgot (restarted) answers with a full handshake, which
   * succeeds and replaces the saved session. */
  r = resume_round(cfg, "localhost", &so_fresh);
  assert_false(r.resumed);
  assert_true(resume_round(cfg, "localhost", &so_fresh).resumed);
  /* Switched off: nothing is offered. */
  assert_int_equal(0, uvmqtt_tls_config_set_session_resumption(cfg, false));
  r = resume_round(cfg, "localhost", &so_fresh);
  assert_false(r.resumed);
  check_stats(cfg, 5, 1);
  assert_int_equal(UVMQTT_EINVAL,
                   uvmqtt_tls_config_set_session_resumption(NULL, true));
  assert_int_equal(UVMQTT_EINVAL,
                   uvmqtt_tls_config_session_stats(NULL, NULL, NULL));
  uvmqtt_tls_config_free(cfg);
  mbedtls_ssl_cache_free(&cache);
  mbedtls_ssl_cache_free(&fresh);
}

/* ---- allocation failures ------------------------------------------------
 * Fails the Nth allocation uvmqtt makes, for every N, through a whole
 * connection (config, stream, handshake, write, echo, close): each failure
 * must come back as UVMQTT_ENOMEM and nothing may leak. */

static struct {
  long calls;
  long fail_at;
  long live;
  int failed;
} am;

static void *am_malloc(size_t n) {
  if (++am.calls == am.fail_at) {
    am.failed++;
    return NULL;
  }
  am.live++;
  return malloc(n);
}

static void *am_calloc(size_t c, size_t n) {
  if (++am.calls == am.fail_at) {
    am.failed++;
    return NULL;
  }
  am.live++;
  return calloc(c, n);
}

static void *am_realloc(void *p, size_t n) {
  void *q;
  if (++am.calls == am.fail_at) {
    am.failed++;
    return NULL;
  }
  q = realloc(p, n);
  if (p == NULL && q != NULL)
    am.live++;
  return q;
}

static void am_free(void *p) {
  if (p != NULL)
    am.live--;
  free(p);
}

static bool ok_or_enomem(int rc) {
  return rc == 0 || rc == UVMQTT_ENOMEM;
}

/* One connection under the current failure point. */
static void am_scenario(void) {
  harness_t h;
  uvmqtt_tls_config_t *cfg;
  int rc;
  static char big[40000];

  rc = uvmqtt_tls_config_new(&cfg);
  assert_true(ok_or_enomem(rc));
  if (rc != 0)
    return;
  rc = uvmqtt_tls_config_set_ca_file(cfg, tt_path(g_dir, "ca.crt"));
  assert_int_equal(0, rc); /* mbedTLS allocates these, not uvmqtt */
  h_init_ex(&h, 0, false);
  h.cfg = cfg;
  srv_setup(&h, &srv_good);
  rc = uvmqtt__tls_new(&h.ms->s, h.cfg, "localhost", &h.tls);
  assert_true(ok_or_enomem(rc));
  if (rc == 0) {
    h.tls->data = &h;
    h.tls->read_cb = cli_read;
    h.tls->log_cb = cli_log;
    assert_int_equal(0, h.tls->ops->open(h.tls, cli_open));
    if (tu_run_until(&h.loop, &h.opened, 5000) != 0)
      fail_msg("allocation %ld failed: no open result; log:\n%s", am.fail_at,
               h.log);
    assert_true(ok_or_enomem(h.open_status));
    if (h.open_status == 0) {
      uv_buf_t b = uv_buf_init(big, sizeof(big));
      rc = uvmqtt__stream_write(h.tls, &b, 1, cli_written, &h);
      assert_true(ok_or_enomem(rc));
      if (rc == 0) {
        uint64_t end = tu_now_ms() + 3000;
        while (h.cli_plain.len < sizeof(big) && h.read_end == 0 &&
               tu_now_ms() < end)
          uv_run(&h.loop, UV_RUN_ONCE);
        assert_true(h.cli_plain.len == sizeof(big) ||
                    h.read_end == UVMQTT_ENOMEM);
      }
    }
  } else {
    h.tls = NULL;
  }
  h_finish(&h);
}

static void test_allocation_failures(void **state) {
  long n, total, hits = 0;
  (void)state;
  /* Count the allocations of a clean run first. */
  memset(&am, 0, sizeof(am));
  assert_int_equal(
      0, uvmqtt_replace_allocator(am_malloc, am_realloc, am_calloc, am_free));
  am_scenario();
  total = am.calls;
  assert_int_equal(0, am.live);
  assert_true(total > 3);
  fprintf(stderr, "# failing each of %ld allocations in turn\n", total);
  /* Runs may differ by an allocation or two (a handshake step deferred to
   * the next loop iteration keeps its input), hence "hits". */
  for (n = 1; n <= total + 2; n++) {
    memset(&am, 0, sizeof(am));
    am.fail_at = n;
    am_scenario();
    hits += am.failed;
    if (am.live != 0)
      fail_msg("allocation %ld failed: %ld allocations leaked", n, am.live);
  }
  assert_true(hits >= total - 2);
  assert_int_equal(0, uvmqtt_replace_allocator(malloc, realloc, calloc, free));
}

static int group_setup(void **state) {
  (void)state;
  return tt_certs_make(g_dir, sizeof(g_dir));
}

static int group_teardown(void **state) {
  (void)state;
  tt_certs_remove(g_dir);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_api),
      cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_roundtrip_one_byte_at_a_time),
      cmocka_unit_test(test_roundtrip_ip_literal),
      cmocka_unit_test(test_large_and_multi_buffer_writes),
      cmocka_unit_test(test_backpressure),
      cmocka_unit_test(test_peer_close_notify_is_eof),
      cmocka_unit_test(test_lower_eof_after_open),
      cmocka_unit_test(test_untrusted),
      cmocka_unit_test(test_no_ca_is_untrusted),
      cmocka_unit_test(test_expired),
      cmocka_unit_test(test_wrong_host),
      cmocka_unit_test(test_missing_client_cert),
      cmocka_unit_test(test_client_cert_from_other_ca),
      cmocka_unit_test(test_mutual_tls),
      cmocka_unit_test(test_psk),
      cmocka_unit_test(test_psk_wrong_key),
      cmocka_unit_test(test_psk_unknown_identity),
      cmocka_unit_test(test_insecure_hostname_warns),
      cmocka_unit_test(test_no_verify_warns),
      cmocka_unit_test(test_handshake_timeout),
      cmocka_unit_test(test_peer_eof_during_handshake),
      cmocka_unit_test(test_close_during_handshake),
      cmocka_unit_test(test_close_cancels_pending_writes),
      cmocka_unit_test(test_close_inside_read_cb),
      cmocka_unit_test(test_alpn),
      cmocka_unit_test(test_ciphersuites),
      cmocka_unit_test(test_shared_config),
      cmocka_unit_test(test_resume_session_id),
      cmocka_unit_test(test_resume_ticket),
      cmocka_unit_test(test_resume_off_other_name_or_server_forgot),
      cmocka_unit_test(test_allocation_failures),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
