/* The tcp layer: the bottom of the transport stack. See transport.h. */
#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#endif

#include "../alloc.h"
#include "transport.h"
#include "uvmqtt/errors.h"

/* Only the base and the handle, to stay within a smaller malloc size
 * class: the handle is found from libuv's callbacks by its offset, so its
 * `data` field holds the flag bits below; open_cb lives in the connect
 * request and close_cb, once closing, in base.read_cb (unused from then). */
typedef struct {
  uvmqtt_stream_t base;
  uv_tcp_t tcp;
} tcp_stream_t;

enum {
  F_READING = 1,
  F_EOF = 2,
  F_QUICKACK = 4, /* TCP_NODELAY set: see on_read() */
  F_WROTE = 8,    /* written to since the last read */
};

typedef struct {
  uv_connect_t req;
  uvmqtt_stream_open_cb open_cb;
} tcp_connect_t;

#define T_OF(h) ((tcp_stream_t *)((char *)(h)-offsetof(tcp_stream_t, tcp)))

static int has(const tcp_stream_t *t, uintptr_t f) {
  return ((uintptr_t)t->tcp.data & f) != 0;
}

static void set(tcp_stream_t *t, uintptr_t f, int on) {
  uintptr_t v = (uintptr_t)t->tcp.data;
  t->tcp.data = (void *)(on ? v | f : v & ~f);
}

static int closing(const tcp_stream_t *t) {
  return uv_is_closing((const uv_handle_t *)&t->tcp);
}

/* Function pointer types convert to each other and back unchanged. */
static void set_close_cb(tcp_stream_t *t, uvmqtt_stream_close_cb cb) {
  t->base.read_cb = (uvmqtt_stream_read_cb)(void (*)(void))cb;
}

static uvmqtt_stream_close_cb get_close_cb(const tcp_stream_t *t) {
  return (uvmqtt_stream_close_cb)(void (*)(void))t->base.read_cb;
}

typedef struct {
  uv_write_t req;
  uvmqtt_stream_write_cb cb;
  void *arg;
} tcp_write_t;

/* Reads land in one buffer per thread: libuv calls alloc_cb and read_cb
 * back to back on the loop thread, and read_cb consumes everything it is
 * given (the parser copies only a partial packet), so idle connections hold
 * no read memory. */
static _Thread_local uint8_t shared_read_buf[UVMQTT_READ_BUF_SIZE];
static _Thread_local int shared_read_busy;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  if (shared_read_busy) {
    /* Cannot happen with libuv's read model; fail safe anyway. */
    buf->base = NULL;
    buf->len = 0;
    return;
  }
  shared_read_busy = 1;
  buf->base = (char *)shared_read_buf;
  buf->len = sizeof(shared_read_buf);
}

static void on_read(uv_stream_t *h, ssize_t nread, const uv_buf_t *buf) {
  tcp_stream_t *t = T_OF(h);
  if (buf && buf->base == (char *)shared_read_buf)
    shared_read_busy = 0;
  if (nread == 0 || closing(t))
    return;
  if (nread < 0) {
    uv_read_stop(h);
    set(t, F_READING, 0);
    set(t, F_EOF, 1);
  }
#ifdef TCP_QUICKACK
  /* With TCP_NODELAY on our side only, a peer that keeps Nagle's
   * algorithm (mosquitto's default) holds its next small packet until
   * the previous one is acknowledged, and our delayed ACK takes up to
   * 40 ms: an echoed PUBLISH waits behind its PUBACK. Linux sends a
   * pending ACK at once when TCP_QUICKACK is set (the flag does not
   * stick). Only the first read after we wrote can be such an answer
   * with more to come; a stream we only read from (a QoS 0 subscriber)
   * keeps delayed ACKs and spares the system call. */
  else if (has(t, F_QUICKACK) && has(t, F_WROTE)) {
    set(t, F_WROTE, 0);
    uv_os_fd_t fd;
    int one = 1;
    if (uv_fileno((uv_handle_t *)h, &fd) == 0)
      (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
  }
#endif
  if (t->base.read_cb)
    t->base.read_cb(&t->base, nread, (const uint8_t *)(buf ? buf->base : 0));
}

static int tcp_read_start(uvmqtt_stream_t *s) {
  tcp_stream_t *t = (tcp_stream_t *)s;
  if (closing(t) || has(t, F_EOF))
    return UVMQTT_ESTATE;
  if (has(t, F_READING))
    return 0;
  int rc = uv_read_start((uv_stream_t *)&t->tcp, on_alloc, on_read);
  if (rc == 0)
    set(t, F_READING, 1);
  return rc;
}

static int tcp_read_stop(uvmqtt_stream_t *s) {
  tcp_stream_t *t = (tcp_stream_t *)s;
  if (has(t, F_READING)) {
    uv_read_stop((uv_stream_t *)&t->tcp);
    set(t, F_READING, 0);
  }
  return 0;
}

static void on_write(uv_write_t *req, int status) {
  tcp_write_t *w = (tcp_write_t *)req;
  tcp_stream_t *t = T_OF(req->handle);
  uvmqtt_stream_write_cb cb = w->cb;
  void *arg = w->arg;
  uvmqtt__free(w);
  if (cb)
    cb(&t->base, status, arg);
}

static int tcp_write(uvmqtt_stream_t *s, const uv_buf_t bufs[], unsigned n,
                     uvmqtt_stream_write_cb cb, void *arg) {
  tcp_stream_t *t = (tcp_stream_t *)s;
  if (closing(t))
    return UV_ECANCELED;
  tcp_write_t *w = uvmqtt__malloc(sizeof(*w));
  if (!w)
    return UVMQTT_ENOMEM;
  w->cb = cb;
  w->arg = arg;
  set(t, F_WROTE, 1);
  int rc = uv_write(&w->req, (uv_stream_t *)&t->tcp, bufs, n, on_write);
  if (rc != 0)
    uvmqtt__free(w);
  return rc;
}

static int tcp_try_write(uvmqtt_stream_t *s, const uv_buf_t bufs[],
                         unsigned n) {
  tcp_stream_t *t = (tcp_stream_t *)s;
  if (closing(t))
    return UV_ECANCELED;
  set(t, F_WROTE, 1);
  int rc = uv_try_write((uv_stream_t *)&t->tcp, bufs, n);
  return rc == UV_EAGAIN ? 0 : rc;
}

static void tcp_shutdown(uvmqtt_stream_t *s) {
  (void)s; /* TCP needs no goodbye beyond close. */
}

static void on_close(uv_handle_t *h) {
  tcp_stream_t *t = T_OF(h);
  uvmqtt_stream_close_cb cb = get_close_cb(t);
  if (cb)
    cb(&t->base);
  uvmqtt__free(t);
}

/* Closes the handle; cb (may be NULL) fires from on_close. */
static void close_handle(tcp_stream_t *t, uvmqtt_stream_close_cb cb) {
  set_close_cb(t, cb);
  uv_close((uv_handle_t *)&t->tcp, on_close);
}

static void tcp_close(uvmqtt_stream_t *s, uvmqtt_stream_close_cb cb) {
  tcp_stream_t *t = (tcp_stream_t *)s;
  if (closing(t))
    return;
  close_handle(t, cb);
}

static const uvmqtt_stream_ops_t tcp_ops = {
    .name = "tcp",
    .open = NULL,
    .write = tcp_write,
    .try_write = tcp_try_write,
    .read_start = tcp_read_start,
    .read_stop = tcp_read_stop,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
};

/* The connect request is allocated for the handshake only: a connected
 * stream does not carry its 96 bytes around. libuv always calls back
 * (UV_ECANCELED when the handle is closed first), before the close
 * callback that frees the stream. */
static void on_connect(uv_connect_t *req, int status) {
  tcp_stream_t *t = T_OF(req->handle);
  uvmqtt_stream_open_cb open_cb = ((tcp_connect_t *)req)->open_cb;
  uvmqtt__free(req);
  if (closing(t))
    return; /* close() before open: open_cb is not called */
  if (status == 0)
    status = tcp_read_start(&t->base);
  open_cb(&t->base, status);
}

static tcp_stream_t *tcp_alloc(uv_loop_t *loop, void *data) {
  tcp_stream_t *t = uvmqtt__calloc(1, sizeof(*t));
  if (!t)
    return NULL;
  t->base.ops = &tcp_ops;
  t->base.loop = loop;
  t->base.data = data;
  return t;
}

int uvmqtt__tcp_connect(uv_loop_t *loop, const struct sockaddr *addr,
                        const uvmqtt_tcp_opts_t *opts,
                        uvmqtt_stream_open_cb open_cb, void *data,
                        uvmqtt_stream_t **out) {
  if (!loop || !addr || !open_cb || !out)
    return UVMQTT_EINVAL;
  tcp_stream_t *t = tcp_alloc(loop, data);
  if (!t)
    return UVMQTT_ENOMEM;
  int rc = uv_tcp_init(loop, &t->tcp);
  if (rc != 0) {
    uvmqtt__free(t);
    return rc;
  }
  t->tcp.data = NULL; /* the flags: uv_tcp_init() leaves data alone */
  if (opts && opts->bind_addr)
    rc = uv_tcp_bind(&t->tcp, opts->bind_addr, 0);
  if (rc == 0 && opts && opts->nodelay) {
    rc = uv_tcp_nodelay(&t->tcp, 1);
    set(t, F_QUICKACK, 1);
  }
  if (rc == 0 && opts && opts->keepalive_s)
    rc = uv_tcp_keepalive(&t->tcp, 1, opts->keepalive_s);
  tcp_connect_t *req = NULL;
  if (rc == 0 && !(req = uvmqtt__malloc(sizeof(*req))))
    rc = UVMQTT_ENOMEM;
  if (rc == 0) {
    req->open_cb = open_cb;
    rc = uv_tcp_connect(&req->req, &t->tcp, addr, on_connect);
    if (rc != 0)
      uvmqtt__free(req);
  }
  if (rc != 0) {
    /* Nothing to clean up for the caller: close the handle ourselves. */
    close_handle(t, NULL);
    return rc;
  }
  *out = &t->base;
  return 0;
}

int uvmqtt__tcp_accept(uv_stream_t *server, void *data, uvmqtt_stream_t **out) {
  tcp_stream_t *t = tcp_alloc(server->loop, data);
  if (!t)
    return UVMQTT_ENOMEM;
  int rc = uv_tcp_init(server->loop, &t->tcp);
  if (rc != 0) {
    uvmqtt__free(t);
    return rc;
  }
  t->tcp.data = NULL;
  rc = uv_accept(server, (uv_stream_t *)&t->tcp);
  if (rc == 0)
    rc = tcp_read_start(&t->base);
  if (rc != 0) {
    close_handle(t, NULL);
    return rc;
  }
  *out = &t->base;
  return 0;
}
