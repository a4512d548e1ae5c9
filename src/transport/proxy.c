/* The proxy layers' common part: the handshake driver and the pass-through
 * tunnel after it. See proxy.h; the protocols are in proxy_http.c and
 * socks5.c.
 *
 * While the handshake runs, a handshake block holds the protocol's state,
 * a timer (deadline, deferred errors, deferred delivery) and any tunnelled
 * bytes that came with the proxy's reply. The block goes once the tunnel is
 * open and those bytes are delivered; the stream struct is then the base,
 * one pointer, the close callback and the reply code. */
#include <string.h>

#include "../alloc.h"
#include "proxy.h"
#include "uvmqtt/errors.h"
#include "uvmqtt/log.h"

typedef struct {
  uv_timer_t timer;
  uvmqtt_stream_open_cb open_cb;
  int deferred_err; /* open_cb status waiting for the timer */
  unsigned timeout_ms;
  unsigned started : 1;   /* open() called */
  unsigned opened : 1;    /* open_cb(0) fired; pending bytes may remain */
  unsigned failed : 1;    /* open_cb(error) fired */
  unsigned rechecked : 1; /* pending bytes waited a loop turn for read_cb */
  /* Tunnelled bytes that came with the reply, not delivered yet. */
  uint8_t *pending;
  size_t pending_len;
  /* The protocol's state follows (max_align_t aligned). */
  max_align_t state[];
} hs_t;

struct uvmqtt__proxy_s {
  uvmqtt_stream_t base;
  hs_t *hs; /* NULL once open and drained */
  uvmqtt_stream_close_cb close_cb;
  int code;        /* the proxy's reply code */
  uint8_t closing; /* close() called */
  uint8_t reading; /* the upper wants reads (after the handshake) */
};

typedef uvmqtt__proxy_t proxy_t;

/* A write of the upper layer passed on to the lower one: the callback is
 * due with this stream, not the lower one. */
typedef struct {
  proxy_t *p;
  uvmqtt_stream_write_cb cb;
  void *arg;
} pwrite_t;

static const uvmqtt__proxy_proto_t *proto_of(const proxy_t *p) {
  return (const uvmqtt__proxy_proto_t *)(const void *)p->base.ops;
}

uvmqtt_stream_t *uvmqtt__proxy_stream(proxy_t *p) {
  return &p->base;
}

void uvmqtt__proxy_set_code(proxy_t *p, int code) {
  p->code = code;
}

int uvmqtt__proxy_reply_code(uvmqtt_stream_t *s) {
  if (!s || s->ops->open != uvmqtt__proxy_open)
    return 0;
  return ((proxy_t *)s)->code;
}

/* ---- the handshake block ------------------------------------------------- */

static void on_hs_closed(uv_handle_t *h) {
  hs_t *hs = h->data;
  uvmqtt__free(hs->pending);
  uvmqtt__free(hs);
}

/* Lets the block go (its timer closes first). */
static void hs_release(proxy_t *p) {
  hs_t *hs = p->hs;
  if (!hs)
    return;
  p->hs = NULL;
  const uvmqtt__proxy_proto_t *proto = proto_of(p);
  if (proto->clear)
    proto->clear(hs->state);
  hs->open_cb = NULL;
  hs->timer.data = hs;
  uv_close((uv_handle_t *)&hs->timer, on_hs_closed);
}

static void on_timer(uv_timer_t *t);

static void open_failed(proxy_t *p, int err) {
  hs_t *hs = p->hs;
  uvmqtt_stream_open_cb cb = hs->open_cb;
  hs->open_cb = NULL;
  hs->failed = 1;
  uv_timer_stop(&hs->timer);
  if (p->base.lower->ops->read_stop)
    p->base.lower->ops->read_stop(p->base.lower);
  if (cb)
    cb(&p->base, err);
}

/* Hands the pending bytes to the upper layer, if it reads. Releases the
 * block once they are gone. */
static void drain(proxy_t *p) {
  hs_t *hs = p->hs;
  if (!hs || p->closing || !p->reading)
    return;
  if (hs->pending && p->base.read_cb) {
    uint8_t *b = hs->pending;
    size_t n = hs->pending_len;
    hs->pending = NULL;
    hs->pending_len = 0;
    p->base.read_cb(&p->base, (ssize_t)n, b);
    uvmqtt__free(b);
    if (p->closing)
      return;
  }
  if (hs->pending) {
    /* No read_cb yet: look again once on the next loop turn (an owner
     * may install it after open_cb returns), then on read_start(). */
    if (!hs->rechecked) {
      hs->rechecked = 1;
      uv_timer_start(&hs->timer, on_timer, 0, 0);
    }
    return;
  }
  hs_release(p);
  if (p->reading && p->base.lower->ops->read_start)
    p->base.lower->ops->read_start(p->base.lower);
}

static void open_done(proxy_t *p, const uint8_t *rest, size_t n) {
  hs_t *hs = p->hs;
  uv_timer_stop(&hs->timer);
  if (n > 0) {
    hs->pending = uvmqtt__malloc(n);
    if (!hs->pending) {
      open_failed(p, UVMQTT_ENOMEM);
      return;
    }
    memcpy(hs->pending, rest, n);
    hs->pending_len = n;
  }
  /* Until they are delivered the lower stream holds still (order), and
   * while the upper does not read. */
  if ((n > 0 || !p->reading) && p->base.lower->ops->read_stop)
    p->base.lower->ops->read_stop(p->base.lower);
  uvmqtt_stream_open_cb cb = hs->open_cb;
  hs->open_cb = NULL;
  hs->opened = 1;
  cb(&p->base, 0);
  /* open_cb installed the upper layer (or closed us). */
  drain(p);
}

static void on_timer(uv_timer_t *t) {
  proxy_t *p = t->data;
  hs_t *hs = p->hs;
  if (p->closing || !hs)
    return;
  if (hs->deferred_err) {
    int err = hs->deferred_err;
    hs->deferred_err = 0;
    open_failed(p, err);
  } else if (hs->opened) {
    drain(p);
  } else if (!hs->failed) {
    uvmqtt__stream_log(&p->base, UVMQTT_LOG_ERROR, "%s: no reply within %u ms",
                       p->base.ops->name, hs->timeout_ms);
    open_failed(p, UVMQTT_ETIMEDOUT);
  }
}

static void on_lower_read(uvmqtt_stream_t *lower, ssize_t nread,
                          const uint8_t *buf) {
  proxy_t *p = lower->data;
  if (p->closing)
    return;
  hs_t *hs = p->hs;
  if (!hs || hs->opened) {
    /* The tunnel: bytes pass through. */
    if (p->base.read_cb)
      p->base.read_cb(&p->base, nread, buf);
    return;
  }
  if (hs->failed || !hs->started)
    return;
  if (nread < 0) {
    uvmqtt__stream_log(&p->base, UVMQTT_LOG_ERROR,
                       "%s: connection ended during the "
                       "handshake: %s",
                       p->base.ops->name, uvmqtt_strerror((int)nread));
    open_failed(p, nread == UV_EOF ? UVMQTT_EPROXY_CLOSED : (int)nread);
    return;
  }
  size_t used = 0;
  int rc = proto_of(p)->feed(p, hs->state, buf, (size_t)nread, &used);
  if (rc < 0)
    open_failed(p, rc);
  else if (rc > 0)
    open_done(p, buf + used, (size_t)nread - used);
}

static void on_lower_log(uvmqtt_stream_t *lower, int level, const char *msg) {
  proxy_t *p = lower->data;
  if (p->base.log_cb)
    p->base.log_cb(&p->base, level, msg);
}

/* ---- writing ------------------------------------------------------------- */

static void on_sent(uvmqtt_stream_t *lower, int status, void *arg) {
  proxy_t *p = lower->data;
  (void)arg;
  uvmqtt__free(arg);
  hs_t *hs = p->hs;
  if (status != 0 && !p->closing && hs && hs->open_cb) {
    uvmqtt__stream_log(&p->base, UVMQTT_LOG_ERROR,
                       "%s: cannot send to the proxy: %s", p->base.ops->name,
                       uvmqtt_strerror(status));
    open_failed(p, status);
  }
}

int uvmqtt__proxy_send(proxy_t *p, const void *b, size_t n) {
  uv_buf_t buf;
  void *copy = uvmqtt__malloc(n ? n : 1);
  if (!copy)
    return UVMQTT_ENOMEM;
  memcpy(copy, b, n);
  buf = uv_buf_init(copy, (unsigned)n);
  int rc = uvmqtt__stream_write(p->base.lower, &buf, 1, on_sent, copy);
  if (rc != 0)
    uvmqtt__free(copy);
  return rc;
}

static void on_upper_sent(uvmqtt_stream_t *lower, int status, void *arg) {
  pwrite_t *w = arg;
  proxy_t *p = w->p;
  uvmqtt_stream_write_cb cb = w->cb;
  void *cb_arg = w->arg;
  (void)lower;
  uvmqtt__free(w);
  if (cb)
    cb(&p->base, status, cb_arg);
}

int uvmqtt__proxy_write(uvmqtt_stream_t *s, const uv_buf_t bufs[],
                        unsigned nbufs, uvmqtt_stream_write_cb cb, void *arg) {
  proxy_t *p = (proxy_t *)s;
  if (p->closing)
    return UV_ECANCELED;
  if (p->hs && !p->hs->opened)
    return UVMQTT_ESTATE;
  pwrite_t *w = uvmqtt__malloc(sizeof(*w));
  if (!w)
    return UVMQTT_ENOMEM;
  w->p = p;
  w->cb = cb;
  w->arg = arg;
  int rc = uvmqtt__stream_write(s->lower, bufs, nbufs, on_upper_sent, w);
  if (rc != 0)
    uvmqtt__free(w);
  return rc;
}

int uvmqtt__proxy_try_write(uvmqtt_stream_t *s, const uv_buf_t bufs[],
                            unsigned nbufs) {
  proxy_t *p = (proxy_t *)s;
  if (p->closing)
    return UV_ECANCELED;
  if ((p->hs && !p->hs->opened) || !s->lower->ops->try_write)
    return 0; /* the caller writes with write() */
  return s->lower->ops->try_write(s->lower, bufs, nbufs);
}

/* ---- opening, reading control, closing ----------------------------------- */

int uvmqtt__proxy_open(uvmqtt_stream_t *s, uvmqtt_stream_open_cb cb) {
  proxy_t *p = (proxy_t *)s;
  hs_t *hs = p->hs;
  if (!cb)
    return UVMQTT_EINVAL;
  if (p->closing || !hs || hs->started)
    return UVMQTT_ESTATE;
  hs->started = 1;
  hs->open_cb = cb;
  int rc = proto_of(p)->start(p, hs->state);
  if (rc == 0 && s->lower->ops->read_start)
    rc = s->lower->ops->read_start(s->lower);
  if (rc != 0) {
    /* open_cb must not fire from inside open(): defer the error. */
    hs->deferred_err = rc;
    uv_timer_start(&hs->timer, on_timer, 0, 0);
  } else if (hs->timeout_ms) {
    uv_timer_start(&hs->timer, on_timer, hs->timeout_ms, 0);
  }
  return 0;
}

int uvmqtt__proxy_read_start(uvmqtt_stream_t *s) {
  proxy_t *p = (proxy_t *)s;
  if (p->closing || (p->hs && !p->hs->opened))
    return UVMQTT_ESTATE;
  p->reading = 1;
  if (p->hs) /* bytes to deliver first, from the loop */
    return uv_timer_start(&p->hs->timer, on_timer, 0, 0);
  return s->lower->ops->read_start ? s->lower->ops->read_start(s->lower) : 0;
}

int uvmqtt__proxy_read_stop(uvmqtt_stream_t *s) {
  proxy_t *p = (proxy_t *)s;
  p->reading = 0;
  if (p->hs && !p->hs->opened)
    return 0; /* the handshake reads on */
  if (p->hs)
    uv_timer_stop(&p->hs->timer);
  return s->lower->ops->read_stop ? s->lower->ops->read_stop(s->lower) : 0;
}

void uvmqtt__proxy_shutdown(uvmqtt_stream_t *s) {
  proxy_t *p = (proxy_t *)s;
  if (!p->closing && s->lower->ops->shutdown)
    s->lower->ops->shutdown(s->lower);
}

static void on_lower_closed(uvmqtt_stream_t *lower) {
  proxy_t *p = lower->data;
  if (p->close_cb)
    p->close_cb(&p->base);
  uvmqtt__free(p);
}

void uvmqtt__proxy_close(uvmqtt_stream_t *s, uvmqtt_stream_close_cb cb) {
  proxy_t *p = (proxy_t *)s;
  if (p->closing)
    return;
  p->closing = 1;
  p->close_cb = cb;
  hs_release(p); /* cancels open_cb */
  uvmqtt__stream_close(s->lower, on_lower_closed);
}

/* ---- creation ------------------------------------------------------------ */

int uvmqtt__proxy_new(uvmqtt_stream_t *lower,
                      const uvmqtt__proxy_proto_t *proto,
                      const uvmqtt_proxy_opts_t *opts, uvmqtt_stream_t **out) {
  if (!lower || !proto || !opts || !out || !opts->host || !*opts->host ||
      opts->port == 0)
    return UVMQTT_EINVAL;
  proxy_t *p = uvmqtt__calloc(1, sizeof(*p));
  hs_t *hs = p ? uvmqtt__calloc(1, sizeof(*hs) + proto->state_size) : NULL;
  if (!hs) {
    uvmqtt__free(p);
    return UVMQTT_ENOMEM;
  }
  int rc = proto->init(hs->state, opts);
  if (rc == 0) {
    rc = uv_timer_init(uvmqtt__stream_loop(lower), &hs->timer);
    if (rc != 0 && proto->clear)
      proto->clear(hs->state);
  }
  if (rc != 0) {
    uvmqtt__free(hs);
    uvmqtt__free(p);
    return rc;
  }
  hs->timer.data = p;
  hs->timeout_ms = opts->timeout_ms;
  p->hs = hs;
  p->reading = 1;
  p->base.ops = &proto->ops;
  p->base.lower = lower;
  lower->data = p;
  lower->read_cb = on_lower_read;
  lower->log_cb = on_lower_log;
  *out = &p->base;
  return 0;
}
