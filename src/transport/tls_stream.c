/* The tls stream layer (src/transport/transport.h) on mbedTLS.
 *
 * mbedTLS never touches a socket here. Its bio callbacks read ciphertext
 * from the bytes the lower stream just delivered (borrowed for the duration
 * of the lower read callback, copied only when something is left over) and
 * write ciphertext into a chunk that is handed to the lower stream's write()
 * as one buffer. Decrypted bytes go to the owner's read_cb from a per-thread
 * buffer, so an idle connection holds no buffer of this layer's own; what
 * remains per connection is mbedTLS's record buffers (see docs/tls.md).
 * The configuration it reads is tls_config.c's.
 */
#include "uvmqtt_config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "tls_int.h"
#include "transport.h"

#define PLAIN_BUF_SIZE 16384u
#define CHUNK_MIN_CAP 512u

/* ---- the tls stream ----------------------------------------------------- */

enum {
  ST_NEW = 0, /* created, open() not called */
  ST_HANDSHAKE,
  ST_OPEN,   /* application data flows */
  ST_FAILED, /* open failed */
  ST_ENDED   /* read side ended (EOF or error delivered) */
};

typedef struct tls_stream_s tls_stream_t;

/* One lower write: ciphertext produced by mbedTLS, plus the upper write's
 * callback when the chunk carries an upper write. Chunks complete in FIFO
 * order. */
typedef struct tls_chunk_s {
  struct tls_chunk_s *next;
  tls_stream_t *t;
  uvmqtt_stream_write_cb cb; /* NULL: internal (handshake, alerts) */
  void *arg;
  int status;
  bool done;
  size_t len;
  size_t cap;
  uint8_t data[];
} tls_chunk_t;

struct tls_stream_s {
  uvmqtt_stream_t s; /* first: the owner's view */
  const uvmqtt_tls_config_t *cfg;
  mbedtls_ssl_context ssl;
  char *server_name;
  uv_timer_t timer; /* handshake deadline, then deferred work */
  uvmqtt_stream_open_cb open_cb;
  uvmqtt_stream_close_cb close_cb;

  /* Ciphertext in: first what is left over from earlier reads (owned), then
   * the bytes of the lower read in progress (borrowed). */
  uint8_t *rx_own;
  size_t rx_own_off, rx_own_len, rx_own_cap;
  const uint8_t *rx_borrow;
  size_t rx_borrow_len;

  /* Ciphertext out: the chunk being filled, then the FIFO of chunks handed
   * to the lower stream (or completed without it). */
  tls_chunk_t *tx;
  tls_chunk_t *wq_head, *wq_tail;

  int state;
  int open_result; /* deferred open_cb status */
  int end_pending; /* read end to deliver once resumed, 0 = none */
  int mbed_err;
  uint32_t verify_flags;
  unsigned handles;  /* libuv handles / lower stream still closing */
  uint64_t deadline; /* handshake deadline, uv_now() time */
  bool hs_continue;  /* handshake steps left for the next iteration */
  bool open_deferred;
  bool in_open;
  bool paused;
  bool resume_pending;
  bool closing;
  bool shut;
  bool offered; /* a saved session was offered for resumption */
  bool full_hs; /* the server sent its certificate: not resumed */
  bool resumed;
};

static const uvmqtt_stream_ops_t tls_ops;
static _Thread_local tls_stream_t *tls_current; /* for mbedTLS debug output */

static void tls_log(tls_stream_t *t, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void tls_log(tls_stream_t *t, int level, const char *fmt, ...) {
  char msg[320];
  va_list ap;
  if (t->s.log_cb == NULL || t->closing)
    return;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  t->s.log_cb(&t->s, level, msg);
}

void uvmqtt__tls_debug_cb(void *ctx, int level, const char *file, int line,
                          const char *str) {
  tls_stream_t *t = tls_current;
  size_t n = strlen(str);
  (void)ctx;
  (void)level;
  if (t == NULL)
    return;
  while (n > 0 && (str[n - 1] == '\n' || str[n - 1] == '\r'))
    n--;
  tls_log(t, UVMQTT_LOG_DEBUG, "mbedtls %s:%d: %.*s", file, line, (int)n, str);
}

static void schedule(tls_stream_t *t);

/* -- bio callbacks ---------------------------------------------------------
 */

static int bio_send(void *ctx, const unsigned char *buf, size_t len) {
  tls_stream_t *t = ctx;
  tls_chunk_t *c = t->tx;
  if (c == NULL || c->cap - c->len < len) {
    size_t cap = c ? c->cap * 2 : CHUNK_MIN_CAP;
    size_t need = (c ? c->len : 0) + len;
    tls_chunk_t *nc;
    if (cap < need)
      cap = need;
    nc = uvmqtt__realloc(c, sizeof(*c) + cap);
    if (nc == NULL)
      return MBEDTLS_ERR_SSL_ALLOC_FAILED;
    if (c == NULL) {
      memset(nc, 0, sizeof(*nc));
      nc->t = t;
    }
    nc->cap = cap;
    t->tx = c = nc;
  }
  memcpy(c->data + c->len, buf, len);
  c->len += len;
  return (int)len;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len) {
  tls_stream_t *t = ctx;
  size_t n;
  if (t->rx_own_len > t->rx_own_off) {
    n = t->rx_own_len - t->rx_own_off;
    if (n > len)
      n = len;
    memcpy(buf, t->rx_own + t->rx_own_off, n);
    t->rx_own_off += n;
    return (int)n;
  }
  if (t->rx_borrow_len > 0) {
    n = t->rx_borrow_len > len ? len : t->rx_borrow_len;
    memcpy(buf, t->rx_borrow, n);
    t->rx_borrow += n;
    t->rx_borrow_len -= n;
    return (int)n;
  }
  return MBEDTLS_ERR_SSL_WANT_READ;
}

/* Keeps unread ciphertext: appends to the owned buffer. */
static int rx_keep(tls_stream_t *t, const uint8_t *p, size_t n) {
  if (n == 0)
    return 0;
  if (t->rx_own_off > 0 && t->rx_own_off == t->rx_own_len)
    t->rx_own_off = t->rx_own_len = 0;
  if (t->rx_own_cap - t->rx_own_len < n) {
    size_t live = t->rx_own_len - t->rx_own_off;
    size_t cap = live + n;
    uint8_t *nb = uvmqtt__malloc(cap);
    if (nb == NULL)
      return UVMQTT_ENOMEM;
    if (live > 0)
      memcpy(nb, t->rx_own + t->rx_own_off, live);
    uvmqtt__free(t->rx_own);
    t->rx_own = nb;
    t->rx_own_cap = cap;
    t->rx_own_off = 0;
    t->rx_own_len = live;
  }
  memcpy(t->rx_own + t->rx_own_len, p, n);
  t->rx_own_len += n;
  return 0;
}

/* Releases the owned buffer once everything in it was consumed. */
static void rx_trim(tls_stream_t *t) {
  if (t->rx_own != NULL && t->rx_own_off == t->rx_own_len) {
    uvmqtt__free(t->rx_own);
    t->rx_own = NULL;
    t->rx_own_off = t->rx_own_len = t->rx_own_cap = 0;
  }
}

/* -- write queue -----------------------------------------------------------
 */

/* Fires the callbacks of completed chunks at the head of the queue. */
static void wq_drain(tls_stream_t *t) {
  while (t->wq_head != NULL && t->wq_head->done) {
    tls_chunk_t *c = t->wq_head;
    t->wq_head = c->next;
    if (t->wq_head == NULL)
      t->wq_tail = NULL;
    if (c->cb != NULL)
      c->cb(&t->s, c->status, c->arg);
    uvmqtt__free(c);
  }
}

static void wq_push(tls_stream_t *t, tls_chunk_t *c) {
  c->next = NULL;
  if (t->wq_tail != NULL)
    t->wq_tail->next = c;
  else
    t->wq_head = c;
  t->wq_tail = c;
}

/* Removes the tail (a chunk the lower stream refused at once). */
static void wq_pop_tail(tls_stream_t *t, tls_chunk_t *c) {
  tls_chunk_t **pp = &t->wq_head;
  while (*pp != c)
    pp = &(*pp)->next;
  *pp = NULL;
  t->wq_tail = NULL;
  for (tls_chunk_t *p = t->wq_head; p != NULL; p = p->next)
    t->wq_tail = p;
}

static void on_chunk_written(uvmqtt_stream_t *lower, int status, void *arg) {
  tls_chunk_t *c = arg;
  (void)lower;
  c->done = true;
  c->status = status;
  wq_drain(c->t);
}

static void finish_open(tls_stream_t *t, int err);

/* Hands the ciphertext collected so far to the lower stream. `cb` (may be
 * NULL) is the upper write completed by this chunk. Returns 0, or the lower
 * stream's error (the chunk is then dropped and cb will not fire). */
static int flush(tls_stream_t *t, uvmqtt_stream_write_cb cb, void *arg) {
  tls_chunk_t *c = t->tx;
  uv_buf_t b;
  int rc;
  if (t->closing) {
    uvmqtt__free(c);
    t->tx = NULL;
    return UVMQTT_ESTATE;
  }
  if (c == NULL) {
    if (cb == NULL)
      return 0;
    /* An empty upper write completes in order with the others. */
    c = uvmqtt__calloc(1, sizeof(*c));
    if (c == NULL)
      return UVMQTT_ENOMEM;
    c->t = t;
  }
  t->tx = NULL;
  c->cb = cb;
  c->arg = arg;
  wq_push(t, c);
  if (c->len == 0) {
    c->done = true;
    schedule(t);
    return 0;
  }
  b = uv_buf_init((char *)c->data, (unsigned)c->len);
  rc = t->s.lower->ops->write(t->s.lower, &b, 1, on_chunk_written, c);
  if (rc != 0) {
    wq_pop_tail(t, c);
    uvmqtt__free(c);
    if (cb == NULL) {
      tls_log(t, UVMQTT_LOG_ERROR, "tls: lower write failed: %d", rc);
      if (t->state == ST_HANDSHAKE)
        finish_open(t, rc);
    }
    return rc;
  }
  return 0;
}

/* -- error mapping ---------------------------------------------------------
 */

static int map_verify_flags(uint32_t f) {
  if (f & MBEDTLS_X509_BADCERT_NOT_TRUSTED)
    return UVMQTT_ETLS_UNTRUSTED;
  if (f & (MBEDTLS_X509_BADCERT_EXPIRED | MBEDTLS_X509_BADCERT_FUTURE))
    return UVMQTT_ETLS_EXPIRED;
  if (f & MBEDTLS_X509_BADCERT_CN_MISMATCH)
    return UVMQTT_ETLS_HOSTNAME;
  return UVMQTT_ETLS_UNTRUSTED;
}

/* Did the server ask for a client certificate? When mbedTLS does not say,
 * an alert after the server's hello counts as a yes. */
static bool cert_requested(const tls_stream_t *t) {
  int r = uvmqtt__tls_compat_cert_requested(&t->ssl);
  if (r >= 0)
    return r == 1;
  return uvmqtt__tls_compat_state(&t->ssl) > MBEDTLS_SSL_SERVER_HELLO;
}

static int map_alert(const tls_stream_t *t, int alert) {
  switch (alert) {
  case MBEDTLS_SSL_ALERT_MSG_UNKNOWN_PSK_IDENTITY:
    return UVMQTT_ETLS_PSK;
  case MBEDTLS_SSL_ALERT_MSG_BAD_RECORD_MAC:
  case MBEDTLS_SSL_ALERT_MSG_DECRYPT_ERROR:
    /* A wrong key makes the server fail to check our Finished. */
    return t->cfg->has_psk ? UVMQTT_ETLS_PSK : UVMQTT_ETLS_ALERT;
  case 116: /* certificate_required (TLS 1.3) */
    return UVMQTT_ETLS_NOCERT;
  case MBEDTLS_SSL_ALERT_MSG_HANDSHAKE_FAILURE:
  case MBEDTLS_SSL_ALERT_MSG_NO_CERT:
    if (!t->cfg->has_cert && !t->cfg->has_psk && cert_requested(t))
      return UVMQTT_ETLS_NOCERT;
    return UVMQTT_ETLS_ALERT;
  default:
    return UVMQTT_ETLS_ALERT;
  }
}

static int map_error(tls_stream_t *t, int rc, bool handshake) {
  int alert;
  t->mbed_err = rc;
  switch (rc) {
  case MBEDTLS_ERR_X509_CERT_VERIFY_FAILED:
    t->verify_flags = mbedtls_ssl_get_verify_result(&t->ssl);
    return map_verify_flags(t->verify_flags);
  case MBEDTLS_ERR_SSL_CA_CHAIN_REQUIRED:
    return UVMQTT_ETLS_UNTRUSTED; /* no CA configured */
  case MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE:
    alert = uvmqtt__tls_compat_last_alert(&t->ssl);
    tls_log(t, UVMQTT_LOG_ERROR, "tls: fatal alert %d from the peer", alert);
    return map_alert(t, alert);
  case MBEDTLS_ERR_SSL_ALLOC_FAILED:
  case MBEDTLS_ERR_X509_ALLOC_FAILED:
  case MBEDTLS_ERR_PK_ALLOC_FAILED:
    return UVMQTT_ENOMEM;
  case MBEDTLS_ERR_SSL_INVALID_MAC:
    if (handshake && t->cfg->has_psk)
      return UVMQTT_ETLS_PSK;
    return handshake ? UVMQTT_ETLS_HANDSHAKE : UVMQTT_ETLS;
  default:
    return handshake ? UVMQTT_ETLS_HANDSHAKE : UVMQTT_ETLS;
  }
}

static void log_failure(tls_stream_t *t, int err) {
  char buf[160] = "";
#if defined(MBEDTLS_ERROR_C)
  mbedtls_strerror(t->mbed_err, buf, sizeof(buf));
#endif
  if (t->verify_flags != 0) {
    char vbuf[256] = "";
    mbedtls_x509_crt_verify_info(vbuf, sizeof(vbuf), "", t->verify_flags);
    for (char *p = vbuf; *p; p++)
      if (*p == '\n')
        *p = *(p + 1) ? ';' : '\0';
    tls_log(t, UVMQTT_LOG_ERROR, "tls: %s (-0x%04x %s; %s)",
            uvmqtt_strerror(err), (unsigned)-t->mbed_err, buf, vbuf);
  } else {
    tls_log(t, UVMQTT_LOG_ERROR, "tls: %s (-0x%04x %s)", uvmqtt_strerror(err),
            (unsigned)-t->mbed_err, buf);
  }
}

/* -- open ------------------------------------------------------------------
 */

static void finish_open(tls_stream_t *t, int err) {
  uvmqtt_stream_open_cb cb;
  if (t->state != ST_HANDSHAKE)
    return;
  t->state = err == 0 ? ST_OPEN : ST_FAILED;
  uv_timer_stop(&t->timer);
  if (err != 0)
    log_failure(t, err);
  if (t->in_open) {
    /* open_cb never fires from inside open(). */
    t->open_deferred = true;
    t->open_result = err;
    schedule(t);
    return;
  }
  cb = t->open_cb;
  t->open_cb = NULL;
  if (cb != NULL)
    cb(&t->s, err);
}

static void read_loop(tls_stream_t *t);
static void on_timer(uv_timer_t *timer);

/* Handshake crypto (signature checks, key exchange) costs milliseconds per
 * step. When many connections handshake at once (a gateway reconnecting
 * after a broker restart), running every step as soon as its bytes arrive
 * would stall the loop for all of them together. So each thread spends at
 * most HS_BUDGET_NS on handshake steps per loop iteration (per value of
 * uv_now, which advances once per iteration); the rest continue on the next
 * iteration through the stream's timer. */
#define HS_BUDGET_NS 4000000u

static _Thread_local struct {
  const uv_loop_t *loop;
  uint64_t now;
  uint64_t spent_ns;
} hs_budget;

static bool hs_budget_left(const tls_stream_t *t) {
  uint64_t now = uv_now(t->timer.loop);
  if (hs_budget.loop != t->timer.loop || hs_budget.now != now) {
    hs_budget.loop = t->timer.loop;
    hs_budget.now = now;
    hs_budget.spent_ns = 0;
  }
  return hs_budget.spent_ns < HS_BUDGET_NS;
}

/* Runs handshake steps until mbedTLS wants bytes, the handshake ends, or
 * the budget is spent (unless `force`: the peer is gone and what it sent
 * last, often an alert, must be read now). */
static void handshake(tls_stream_t *t, bool force) {
  int rc = 0;
  t->hs_continue = false;
  while (uvmqtt__tls_compat_state(&t->ssl) != MBEDTLS_SSL_HANDSHAKE_OVER) {
    uint64_t t0;
    if (!hs_budget_left(t) && !force) {
      /* 1 ms, not 0: a 0 ms timer started from a timer callback would run
       * again in the same loop iteration. */
      t->hs_continue = true;
      uv_timer_start(&t->timer, on_timer, 1, 0);
      rc = MBEDTLS_ERR_SSL_WANT_READ;
      break;
    }
    /* A resumed handshake goes from ServerHello straight to the server's
     * ChangeCipherSpec; a full one reads the server's certificate. */
    if (uvmqtt__tls_compat_state(&t->ssl) == MBEDTLS_SSL_SERVER_CERTIFICATE)
      t->full_hs = true;
    t0 = uv_hrtime();
    tls_current = t;
    rc = mbedtls_ssl_handshake_step(&t->ssl);
    tls_current = NULL;
    hs_budget.spent_ns += uv_hrtime() - t0;
    if (rc != 0)
      break;
  }
  /* Send what the steps produced, alerts included. */
  if (t->tx != NULL)
    flush(t, NULL, NULL);
  if (t->state != ST_HANDSHAKE)
    return; /* the flush failed */
  if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
    return;
  if (rc != 0) {
    if (t->offered)
      uvmqtt__tls_cache_forget(t->cfg, t->server_name);
    finish_open(t, map_error(t, rc, true));
    return;
  }
  t->resumed = t->offered && !t->full_hs;
  uvmqtt__tls_cache_done(t->cfg, t->server_name, &t->ssl, t->resumed);
  {
    const char *alpn = NULL;
#if defined(MBEDTLS_SSL_ALPN)
    alpn = mbedtls_ssl_get_alpn_protocol(&t->ssl);
#endif
    tls_log(t, UVMQTT_LOG_DEBUG, "tls: connected, %s, %s%s%s%s",
            mbedtls_ssl_get_version(&t->ssl),
            mbedtls_ssl_get_ciphersuite(&t->ssl), alpn ? ", alpn " : "",
            alpn ? alpn : "", t->resumed ? ", session resumed" : "");
  }
  finish_open(t, 0);
}

/* Runs the handshake or decrypts what arrived, as the state says. */
static void pump(tls_stream_t *t) {
  if (t->state == ST_HANDSHAKE)
    handshake(t, false);
  if (t->state == ST_OPEN && !t->in_open && !t->open_deferred)
    read_loop(t);
}

/* -- reading ---------------------------------------------------------------
 */

static _Thread_local uint8_t plain_buf[PLAIN_BUF_SIZE];
static _Thread_local bool plain_busy;

static void end_read(tls_stream_t *t, int err) {
  t->state = ST_ENDED;
  if (t->paused) {
    t->end_pending = err;
    return;
  }
  t->s.read_cb(&t->s, err, NULL);
}

static void read_loop(tls_stream_t *t) {
  uint8_t *buf = plain_buf;
  bool own = false;
  if (plain_busy) {
    /* A read callback led to another tls stream's read on this thread. */
    buf = uvmqtt__malloc(PLAIN_BUF_SIZE);
    if (buf == NULL) {
      end_read(t, UVMQTT_ENOMEM);
      return;
    }
    own = true;
  } else {
    plain_busy = true;
  }
  while (t->state == ST_OPEN && !t->closing && !t->paused &&
         t->s.read_cb != NULL) {
    int rc;
    tls_current = t;
    rc = mbedtls_ssl_read(&t->ssl, buf, PLAIN_BUF_SIZE);
    tls_current = NULL;
    if (rc > 0) {
      t->s.read_cb(&t->s, rc, buf);
      continue;
    }
    if (rc == MBEDTLS_ERR_SSL_WANT_READ)
      break;
    if (uvmqtt__tls_compat_read_again(rc))
      continue;
    if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY) {
      end_read(t, UV_EOF);
    } else {
      int err = map_error(t, rc, false);
      log_failure(t, err);
      end_read(t, err);
    }
    break;
  }
  if (own)
    uvmqtt__free(buf);
  else
    plain_busy = false;
  /* Reading can produce output (alerts, TLS 1.3 key updates). */
  if (t->tx != NULL && !t->closing)
    flush(t, NULL, NULL);
}

static void on_lower_read(uvmqtt_stream_t *lower, ssize_t nread,
                          const uint8_t *buf) {
  tls_stream_t *t = lower->data;
  if (t->closing || t->state == ST_FAILED || t->state == ST_ENDED)
    return;
  if (nread < 0) {
    if (t->state == ST_HANDSHAKE) {
      /* Read what the peer sent before leaving (an alert says why). */
      if (t->rx_own_len > t->rx_own_off || t->hs_continue) {
        handshake(t, true);
        rx_trim(t);
        if (t->state != ST_HANDSHAKE || t->closing)
          return;
      }
      t->mbed_err = 0;
      finish_open(t, nread == UV_EOF ? UVMQTT_ETLS_HANDSHAKE : (int)nread);
    } else if (t->state == ST_OPEN) {
      if (t->paused || t->rx_own_len > t->rx_own_off || t->open_deferred) {
        t->end_pending = (int)nread; /* after what is still buffered */
        t->resume_pending = true;
        if (!t->paused)
          schedule(t);
      } else {
        end_read(t, (int)nread);
      }
    } else {
      t->end_pending = (int)nread;
    }
    return;
  }
  if (nread == 0)
    return;
  if (t->state == ST_NEW || t->paused || t->rx_own_len > t->rx_own_off ||
      t->open_deferred) {
    /* Keep order behind what is buffered already. */
    if (rx_keep(t, buf, (size_t)nread) != 0) {
      if (t->state == ST_HANDSHAKE)
        finish_open(t, UVMQTT_ENOMEM);
      else if (t->state == ST_OPEN)
        end_read(t, UVMQTT_ENOMEM);
      return;
    }
    if (t->state == ST_NEW || t->paused || t->open_deferred)
      return;
  } else {
    t->rx_borrow = buf;
    t->rx_borrow_len = (size_t)nread;
  }
  pump(t);
  if (t->rx_borrow_len > 0 && !t->closing &&
      (t->state == ST_OPEN || t->state == ST_HANDSHAKE)) {
    int rc = rx_keep(t, t->rx_borrow, t->rx_borrow_len);
    t->rx_borrow = NULL;
    t->rx_borrow_len = 0;
    if (rc != 0) {
      /* Losing bytes would corrupt the stream: end it instead. */
      if (t->state == ST_HANDSHAKE)
        finish_open(t, rc);
      else
        end_read(t, rc);
    }
  }
  t->rx_borrow = NULL;
  t->rx_borrow_len = 0;
  rx_trim(t);
}

static void on_lower_log(uvmqtt_stream_t *lower, int level, const char *msg) {
  tls_stream_t *t = lower->data;
  if (t->s.log_cb != NULL && !t->closing)
    t->s.log_cb(&t->s, level, msg);
}

/* -- the timer: handshake deadline and deferred work -----------------------
 */

static void on_timer(uv_timer_t *timer) {
  tls_stream_t *t = timer->data;
  if (t->closing)
    return;
  if (t->open_deferred) {
    uvmqtt_stream_open_cb cb = t->open_cb;
    t->open_deferred = false;
    t->open_cb = NULL;
    if (cb != NULL)
      cb(&t->s, t->open_result);
    if (t->closing)
      return;
    if (t->state == ST_OPEN)
      t->resume_pending = true;
  } else if (t->state == ST_HANDSHAKE) {
    uint64_t now = uv_now(t->timer.loop);
    if (now < t->deadline) {
      if (t->hs_continue) {
        handshake(t, false);
        rx_trim(t);
      }
      /* Still waiting for the peer: the deadline timer again. */
      if (t->state == ST_HANDSHAKE && !t->hs_continue && !t->closing)
        uv_timer_start(&t->timer, on_timer, t->deadline - now, 0);
      return;
    }
    t->mbed_err = 0;
    finish_open(t, UVMQTT_ETIMEDOUT);
    return;
  }
  wq_drain(t);
  if (t->closing)
    return;
  if (t->resume_pending && !t->paused) {
    t->resume_pending = false;
    pump(t);
    rx_trim(t);
    if (!t->closing && !t->paused && t->state == ST_OPEN &&
        t->end_pending != 0 && t->rx_own == NULL) {
      int err = t->end_pending;
      t->end_pending = 0;
      end_read(t, err);
    } else if (!t->closing && !t->paused && t->state == ST_ENDED &&
               t->end_pending != 0) {
      int err = t->end_pending;
      t->end_pending = 0;
      t->s.read_cb(&t->s, err, NULL);
    }
  }
}

/* Runs on_timer on the next loop iteration (after the handshake only, or to
 * deliver a result found inside open()). */
static void schedule(tls_stream_t *t) {
  if (!t->closing)
    uv_timer_start(&t->timer, on_timer, 0, 0);
}

/* -- stream operations -----------------------------------------------------
 */

static int tls_open_impl(uvmqtt_stream_t *s, uvmqtt_stream_open_cb cb) {
  tls_stream_t *t = (tls_stream_t *)s;
  if (cb == NULL)
    return UVMQTT_EINVAL;
  if (t->state != ST_NEW || t->closing)
    return UVMQTT_ESTATE;
  t->open_cb = cb;
  t->state = ST_HANDSHAKE;
  t->deadline = uv_now(t->timer.loop) + t->cfg->timeout_ms;
  uv_timer_start(&t->timer, on_timer, t->cfg->timeout_ms, 0);
  if (!t->cfg->verify_peer)
    tls_log(t, UVMQTT_LOG_WARN,
            "tls: peer verification is disabled; the connection to %s is "
            "not authenticated",
            t->server_name ? t->server_name : "the server");
  else if (!t->cfg->verify_hostname)
    tls_log(t, UVMQTT_LOG_WARN,
            "tls: host name verification is disabled (insecure); any "
            "trusted certificate is accepted for %s",
            t->server_name ? t->server_name : "the server");
  t->in_open = true;
  pump(t); /* sends ClientHello; consumes anything that came early */
  t->in_open = false;
  rx_trim(t);
  return 0;
}

static int tls_write(uvmqtt_stream_t *s, const uv_buf_t bufs[], unsigned nbufs,
                     uvmqtt_stream_write_cb cb, void *arg) {
  tls_stream_t *t = (tls_stream_t *)s;
  int rc = 0;
  if (cb == NULL || (nbufs > 0 && bufs == NULL))
    return UVMQTT_EINVAL;
  if (t->closing)
    return UVMQTT_ESTATE;
  if (t->state == ST_ENDED || t->state == ST_FAILED || t->shut)
    return UV_EPIPE;
  if (t->state != ST_OPEN || t->open_deferred)
    return UVMQTT_ESTATE;
  for (unsigned i = 0; i < nbufs && rc == 0; i++) {
    const unsigned char *p = (const unsigned char *)bufs[i].base;
    size_t left = bufs[i].len;
    while (left > 0) {
      tls_current = t;
      rc = mbedtls_ssl_write(&t->ssl, p, left);
      tls_current = NULL;
      if (rc < 0)
        break;
      p += rc;
      left -= (size_t)rc;
      rc = 0;
    }
  }
  if (rc < 0) {
    /* Records made so far are whole; send them, report the failure. */
    int err = map_error(t, rc, false);
    log_failure(t, err);
    if (t->tx != NULL)
      flush(t, NULL, NULL);
    return err;
  }
  return flush(t, cb, arg);
}

static int tls_read_start(uvmqtt_stream_t *s) {
  tls_stream_t *t = (tls_stream_t *)s;
  int rc;
  if (t->closing)
    return UVMQTT_ESTATE;
  if (!t->paused)
    return 0;
  t->paused = false;
  rc = t->s.lower->ops->read_start(t->s.lower);
  if (t->rx_own_len > t->rx_own_off || t->end_pending != 0 ||
      (t->state == ST_OPEN && mbedtls_ssl_check_pending(&t->ssl))) {
    t->resume_pending = true;
    schedule(t);
  }
  return rc;
}

static int tls_read_stop(uvmqtt_stream_t *s) {
  tls_stream_t *t = (tls_stream_t *)s;
  if (t->closing)
    return UVMQTT_ESTATE;
  t->paused = true;
  return t->s.lower->ops->read_stop(t->s.lower);
}

static void tls_shutdown(uvmqtt_stream_t *s) {
  tls_stream_t *t = (tls_stream_t *)s;
  if (t->closing || t->shut || t->state != ST_OPEN)
    return;
  t->shut = true;
  tls_current = t;
  (void)mbedtls_ssl_close_notify(&t->ssl);
  tls_current = NULL;
  if (t->tx != NULL)
    flush(t, NULL, NULL);
  if (t->s.lower->ops->shutdown != NULL)
    t->s.lower->ops->shutdown(t->s.lower);
}

static void tls_free(tls_stream_t *t) {
  mbedtls_ssl_free(&t->ssl);
  uvmqtt__free(t->tx);
  uvmqtt__free(t->rx_own);
  uvmqtt__free(t->server_name);
  uvmqtt__free(t);
}

static void close_step(tls_stream_t *t) {
  uvmqtt_stream_close_cb cb;
  if (--t->handles > 0)
    return;
  /* Chunks the lower stream never saw (empty writes) complete now. */
  for (tls_chunk_t *c = t->wq_head; c != NULL; c = c->next) {
    c->done = true;
    c->status = UV_ECANCELED;
  }
  wq_drain(t);
  cb = t->close_cb;
  if (cb != NULL)
    cb(&t->s);
  tls_free(t);
}

static void on_timer_closed(uv_handle_t *h) {
  close_step(h->data);
}

static void on_lower_closed(uvmqtt_stream_t *lower) {
  close_step(lower->data);
}

static void tls_close(uvmqtt_stream_t *s, uvmqtt_stream_close_cb cb) {
  tls_stream_t *t = (tls_stream_t *)s;
  if (t->closing)
    return;
  t->closing = true;
  t->close_cb = cb;
  t->open_cb = NULL;
  uvmqtt__free(t->tx);
  t->tx = NULL;
  t->handles = 2;
  uv_timer_stop(&t->timer);
  uv_close((uv_handle_t *)&t->timer, on_timer_closed);
  t->s.lower->ops->close(t->s.lower, on_lower_closed);
}

static const uvmqtt_stream_ops_t tls_ops = {
    .name = "tls",
    .open = tls_open_impl,
    .write = tls_write,
    .read_start = tls_read_start,
    .read_stop = tls_read_stop,
    .shutdown = tls_shutdown,
    .close = tls_close,
    .hint = uvmqtt__stream_forward_hint,
};

/* 2.28 does not match iPAddress subjectAltName entries; do it here when the
 * name connected to is an address literal. */
static bool ip_san_matches(const mbedtls_x509_crt *crt, const char *name) {
  unsigned char ip[16];
  size_t len;
  if (uv_inet_pton(AF_INET, name, ip) == 0)
    len = 4;
  else if (uv_inet_pton(AF_INET6, name, ip) == 0)
    len = 16;
  else
    return false;
  for (const mbedtls_x509_sequence *cur = &crt->subject_alt_names; cur != NULL;
       cur = cur->next)
    if (cur->buf.tag == UVMQTT_TLS_SAN_IP_TAG && cur->buf.len == len &&
        memcmp(cur->buf.p, ip, len) == 0)
      return true;
  return false;
}

static int verify_cb(void *ctx, mbedtls_x509_crt *crt, int depth,
                     uint32_t *flags) {
  tls_stream_t *t = ctx;
  if (depth == 0 && (*flags & MBEDTLS_X509_BADCERT_CN_MISMATCH)) {
    if (!t->cfg->verify_hostname ||
        (t->server_name != NULL && ip_san_matches(crt, t->server_name)))
      *flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
  }
  return 0;
}

int uvmqtt__tls_new(uvmqtt_stream_t *lower,
                    const struct uvmqtt_tls_config_s *cfg,
                    const char *server_name, uvmqtt_stream_t **out) {
  tls_stream_t *t;
  int rc;

  if (lower == NULL || cfg == NULL || out == NULL)
    return UVMQTT_EINVAL;
  /* Without a name there is nothing to check the certificate against. */
  if ((server_name == NULL || *server_name == '\0') && cfg->verify_peer &&
      cfg->verify_hostname && !cfg->has_psk)
    return UVMQTT_EINVAL;
  t = uvmqtt__calloc(1, sizeof(*t));
  if (t == NULL)
    return UVMQTT_ENOMEM;
  mbedtls_ssl_init(&t->ssl);
  t->cfg = cfg;
  rc = mbedtls_ssl_setup(&t->ssl, &cfg->conf);
  if (rc != 0) {
    tls_free(t);
    return rc == MBEDTLS_ERR_SSL_ALLOC_FAILED ? UVMQTT_ENOMEM
                                              : UVMQTT_ETLS_CONFIG;
  }
  if (server_name != NULL && *server_name != '\0') {
    t->server_name = uvmqtt__strdup(server_name);
    if (t->server_name == NULL) {
      tls_free(t);
      return UVMQTT_ENOMEM;
    }
    rc = mbedtls_ssl_set_hostname(&t->ssl, server_name);
    if (rc != 0) {
      tls_free(t);
      return rc == MBEDTLS_ERR_SSL_ALLOC_FAILED ? UVMQTT_ENOMEM : UVMQTT_EINVAL;
    }
  }
  t->offered = uvmqtt__tls_cache_offer(cfg, t->server_name, &t->ssl);
  mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
  mbedtls_ssl_set_verify(&t->ssl, verify_cb, t);
  rc = uv_timer_init(uvmqtt__stream_loop(lower), &t->timer);
  if (rc != 0) {
    tls_free(t);
    return rc;
  }
  t->timer.data = t;
  t->s.ops = &tls_ops;
  t->s.lower = lower;
  lower->read_cb = on_lower_read;
  lower->log_cb = on_lower_log;
  lower->data = t;
  *out = &t->s;
  return 0;
}

int uvmqtt__tls_last_error(uvmqtt_stream_t *s, int *mbedtls_err,
                           uint32_t *verify_flags) {
  const tls_stream_t *t = (const tls_stream_t *)s;
  if (s == NULL || s->ops != &tls_ops)
    return UVMQTT_EINVAL;
  if (mbedtls_err != NULL)
    *mbedtls_err = t->mbed_err;
  if (verify_flags != NULL)
    *verify_flags = t->verify_flags;
  return 0;
}

bool uvmqtt__tls_resumed(const uvmqtt_stream_t *s) {
  return s != NULL && s->ops == &tls_ops && ((const tls_stream_t *)s)->resumed;
}
