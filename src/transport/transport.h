/* The transport stack: byte streams on libuv, stacked
 * tcp | unix -> proxy (HTTP CONNECT, SOCKS5) -> tls -> ws.
 *
 * Every layer implements uvmqtt_stream_t. A layer above (the MQTT client or
 * another layer) talks to the layer below only through these operations and
 * receives its events through the callbacks it installed. `wss://` is a ws
 * stream whose lower stream is a tls stream whose lower stream is tcp.
 *
 * Contract (MUST / MUST NOT):
 *
 * Opening
 * - A tcp stream is opened with uvmqtt__tcp_connect(). An upper layer is
 *   created over a lower stream that is already open, and its ops->open()
 *   runs its handshake (TLS, WebSocket upgrade) over the lower stream.
 * - open() MUST call open_cb exactly once, with 0 when the stream can carry
 *   application bytes or a negative error, unless the stream is closed first;
 *   close() before open_cb fires cancels it (open_cb is then NOT called).
 * - open_cb MUST NOT be called from inside open() itself (defer with the
 *   loop if the result is known at once), so callers never see re-entrancy.
 *
 * Reading
 * - After a successful open, the stream delivers application bytes through
 *   read_cb(s, nread, buf): nread > 0 bytes at buf, valid only during the
 *   callback (the memory belongs to the layer and is reused). nread < 0 is
 *   the end: UV_EOF for an orderly close by the peer, or an error (a libuv
 *   code, UVMQTT_ETLS_*, UVMQTT_EWS_*). After nread < 0 no more read_cb
 *   calls come; the owner MUST then close the stream.
 * - Layers MUST NOT keep a read buffer of their own while idle where they can
 *   avoid it: tcp reads into a per-thread shared buffer, so thousands of idle
 *   connections hold no read memory.
 * - read_cb MAY call write() or close() on the same stream. After close()
 *   inside read_cb the layer MUST NOT touch the upper layer again.
 * - read_stop()/read_start() pause and resume delivery (back-pressure).
 *
 * Writing
 * - write(s, bufs, nbufs, cb, arg): the bytes described by bufs[] MUST stay
 *   valid and unchanged until cb(s, status, arg) fires (the uv_buf_t array
 *   itself may be reused at once). cb fires exactly once per successful
 *   write() call, in the order of the write() calls, with 0 when the bytes
 *   were handed to the layer below / the kernel, or a negative error.
 *   cb MUST NOT fire from inside write() itself.
 * - write() returning a negative error means cb will NOT be called.
 * - After close(), every pending write's cb fires with UV_ECANCELED before
 *   close_cb.
 *
 * Closing
 * - close(s, cb) closes this stream AND every stream below it, releases all
 *   their memory and libuv handles, then calls cb(s) exactly once; cb MAY
 *   free anything the owner hangs off s->data. s itself is freed by the
 *   layer after cb returns; the owner MUST NOT use s after calling close().
 *   close() is idempotent only in the sense that calling it twice is a bug.
 * - shutdown() is the graceful goodbye, best effort: each layer sends its
 *   own (TLS close_notify, WebSocket close frame) after every byte already
 *   written, then shuts the layer below down; tcp half-closes (FIN after
 *   the queued bytes). Nothing may be written after it (write() fails).
 *   Reading goes on: the owner SHOULD read (and may discard) until
 *   nread < 0 (UV_EOF once the peer closed too), bounded by a timeout of
 *   its own, before close(): closing with unread bytes makes the kernel
 *   send a reset, and the peer may discard what we wrote just before.
 *   close() never waits for a peer.
 *
 * Threading: all calls on the loop thread. Allocation through uvmqtt__malloc
 * and friends (src/alloc.h).
 */
#ifndef UVMQTT_TRANSPORT_H
#define UVMQTT_TRANSPORT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "uvmqtt/log.h"

typedef struct uvmqtt_stream_s uvmqtt_stream_t;

typedef void (*uvmqtt_stream_open_cb)(uvmqtt_stream_t *s, int status);
typedef void (*uvmqtt_stream_read_cb)(uvmqtt_stream_t *s, ssize_t nread,
                                      const uint8_t *buf);
typedef void (*uvmqtt_stream_write_cb)(uvmqtt_stream_t *s, int status,
                                       void *arg);
typedef void (*uvmqtt_stream_close_cb)(uvmqtt_stream_t *s);
/* Optional: a log line from a layer (level as UVMQTT_LOG_*). */
typedef void (*uvmqtt_stream_log_cb)(uvmqtt_stream_t *s, int level,
                                     const char *msg);

typedef struct {
  const char *name; /* for log lines: "tcp", "http-proxy", "socks5", ... */
  /* Runs the layer's handshake over the (open) lower stream. tcp has no
   * open(): it is opened by uvmqtt__tcp_connect(). */
  int (*open)(uvmqtt_stream_t *s, uvmqtt_stream_open_cb cb);
  int (*write)(uvmqtt_stream_t *s, const uv_buf_t bufs[], unsigned nbufs,
               uvmqtt_stream_write_cb cb, void *arg);
  int (*read_start)(uvmqtt_stream_t *s);
  int (*read_stop)(uvmqtt_stream_t *s);
  /* Graceful goodbye and half-close (see Closing above). May be NULL. */
  void (*shutdown)(uvmqtt_stream_t *s);
  void (*close)(uvmqtt_stream_t *s, uvmqtt_stream_close_cb cb);
  /* Optional (NULL where a layer cannot do it; last in the struct so
   * positional initialisers stay valid): writes what the layer below
   * takes at once, without queueing or blocking, and returns the
   * number of bytes written (0 when none fit) or a negative error after
   * which the stream is broken. The caller MUST NOT call it while a
   * write() on this stream is still pending (bytes would be reordered),
   * and MUST send whatever was not taken with write(). Nothing is kept
   * after it returns and no callback fires. It spares a write request,
   * a deferred callback and, with libuv, an epoll_ctl per write. */
  int (*try_write)(uvmqtt_stream_t *s, const uv_buf_t bufs[], unsigned nbufs);
  /* Optional: a hint from the reader about its reads (UVMQTT__HINT_*), for
   * the layer that owns the socket. A layer that cannot act on it MUST
   * hand it to its lower stream unchanged (uvmqtt__stream_forward_hint)
   * and MUST NOT look further down itself; NULL drops it. */
  void (*hint)(uvmqtt_stream_t *s, int kind, unsigned value);
  /* The loop the stream runs on: set by the layer that owns the socket;
   * NULL in every other layer (uvmqtt__stream_loop() asks the lower). */
  uv_loop_t *(*loop)(const uvmqtt_stream_t *s);
} uvmqtt_stream_ops_t;

/* Five pointers: thousands of idle connections each hold a socket's
 * stream, which fits a smaller malloc size class with them. */
struct uvmqtt_stream_s {
  const uvmqtt_stream_ops_t *ops;
  union {
    uvmqtt_stream_t *lower; /* the layer below, in every layer above the
                               socket's */
    /* The socket's layer has nothing below and keeps its own state here
     * (tcp: its open callback while connecting, its write queue after). */
    void *own;
    uvmqtt_stream_open_cb own_cb;
  };
  /* Installed by the owner (the layer above or the client). */
  uvmqtt_stream_read_cb read_cb;
  uvmqtt_stream_log_cb log_cb;
  void *data; /* owner's pointer */
};

/* What the reader tells the stack about its reads (ops->hint). */
enum {
  /* From inside a read callback: a reply to what was just read is queued
   * and goes out in this loop iteration, so the socket need not
   * acknowledge the read at once (TCP_QUICKACK); the reply carries the
   * ACK. `value` unused. */
  UVMQTT__HINT_REPLY = 1,
  /* From inside each read callback: `value` > 0 when more input is
   * certainly on its way, the number of bytes worth waiting for (see
   * UVMQTT__TCP_NAP_US); 0: no wait. */
  UVMQTT__HINT_COALESCE = 2,
  /* From inside a read callback that queued no reply: the peer still owes
   * answers (acknowledgements of what we sent), so the socket should
   * acknowledge the read at once (TCP_QUICKACK): a peer with Nagle's
   * algorithm holds its next answer until this read is acknowledged.
   * `value` unused. */
  UVMQTT__HINT_AWAIT = 3
};

/* Gives a hint to stream s (nothing when s or its hint op is NULL). */
static inline void uvmqtt__stream_hint(uvmqtt_stream_t *s, int kind,
                                       unsigned value) {
  if (s && s->ops->hint)
    s->ops->hint(s, kind, value);
}

/* ops->hint of a layer that passes hints to the stream below it. */
void uvmqtt__stream_forward_hint(uvmqtt_stream_t *s, int kind, unsigned value);
/* The loop a stream runs on: its socket layer's (ops->loop). */
uv_loop_t *uvmqtt__stream_loop(const uvmqtt_stream_t *s);

/* A log line of layer s for its owner's log_cb (none: nothing), formatted
 * as printf() does, at most 319 bytes (src/transport/stream.c). */
void uvmqtt__stream_log(uvmqtt_stream_t *s, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void uvmqtt__stream_vlog(uvmqtt_stream_t *s, int level, const char *fmt,
                         va_list ap);

/* Convenience wrappers. */
static inline int uvmqtt__stream_write(uvmqtt_stream_t *s, const uv_buf_t *b,
                                       unsigned n, uvmqtt_stream_write_cb cb,
                                       void *arg) {
  return s->ops->write(s, b, n, cb, arg);
}
static inline void uvmqtt__stream_close(uvmqtt_stream_t *s,
                                        uvmqtt_stream_close_cb cb) {
  s->ops->close(s, cb);
}

/* ---- tcp (src/transport/tcp.c) ------------------------------------------ */

typedef struct {
  const struct sockaddr *bind_addr; /* NULL: any */
  int nodelay;                      /* TCP_NODELAY */
  unsigned keepalive_s;             /* SO_KEEPALIVE delay, 0 = off */
} uvmqtt_tcp_opts_t;

/* Creates a tcp stream and starts connecting to `addr`. open_cb fires once
 * with 0 (connected, reading started) or a libuv error. Returns 0, or an
 * error with nothing left to clean up. */
int uvmqtt__tcp_connect(uv_loop_t *loop, const struct sockaddr *addr,
                        const uvmqtt_tcp_opts_t *opts,
                        uvmqtt_stream_open_cb open_cb, void *data,
                        uvmqtt_stream_t **out);

/* Creates a stream over a unix-domain stream socket and starts connecting
 * to `path`; a leading '@' names a socket in the Linux abstract namespace
 * (the rest of the string is the name). No DNS and no TCP options: it is
 * otherwise a tcp stream (same ops, same contract). open_cb fires once with
 * 0 or a libuv error (UV_ENOENT: no such socket; UV_ECONNREFUSED: nobody
 * listens; UV_EAGAIN: the listener's backlog is full). Returns 0,
 * UVMQTT_EINVAL (empty path, or longer than a sockaddr_un holds) or a
 * libuv error, with nothing left to clean up. */
int uvmqtt__unix_connect(uv_loop_t *loop, const char *path,
                         uvmqtt_stream_open_cb open_cb, void *data,
                         uvmqtt_stream_t **out);

/* The tcp stream acts on both hints (UVMQTT__HINT_REPLY and
 * UVMQTT__HINT_COALESCE, through ops->hint). */

/* UVMQTT__HINT_COALESCE, given from inside each read callback: `want` > 0 when
 * more input is certainly on its way (a window of publishes awaiting
 * their acknowledgements, a stream of incoming publishes). Then the
 * bottom tcp stream of `s` waits UVMQTT__TCP_NAP_US before the loop
 * polls again, unless `want` bytes are already queued to read: after the
 * reply goes out (try_write), or right after the read when the reader
 * has nothing to answer. The peer meanwhile writes into a socket whose
 * reader is not waiting, instead of waking it for every segment, and the
 * next read takes them all. `want` 0: no wait (light load: every read is
 * answered and polled for at once). Bounded: at most one wait per read
 * (every read clears the request), none within 10 us of the end of the
 * thread's last one (streams flushed in one loop pass share one), and it
 * delays only reading, never a write. Over TLS only the wait of a reader
 * with nothing to answer applies (replies go through write()). */
#define UVMQTT__TCP_NAP_US 50
/* How many such waits the calling thread made (tests, diagnostics). */
uint64_t uvmqtt__tcp_naps(void);
/* How many reads the tcp streams of the calling thread acknowledged at
 * once (TCP_QUICKACK turned on), for tests. */
uint64_t uvmqtt__tcp_quickacks(void);

/* The per-thread shared read buffer used by tcp reads (64 KiB). */
#define UVMQTT_READ_BUF_SIZE 65536

/* ---- tls (src/transport/tls_stream.c; only when UVMQTT_HAVE_TLS) -------- */

struct uvmqtt_tls_config_s; /* public: include/uvmqtt/tls.h */

/* Creates a TLS client stream over the open stream `lower`, which it then
 * owns (closing the tls stream closes lower). `server_name` (may be NULL)
 * is used for SNI and host-name verification. The handshake runs in
 * ops->open(); it is bounded by the config's handshake timeout. */
int uvmqtt__tls_new(uvmqtt_stream_t *lower,
                    const struct uvmqtt_tls_config_s *cfg,
                    const char *server_name, uvmqtt_stream_t **out);

/* After a failed open: the raw mbedTLS error and X.509 verification flags
 * of the last failure (for diagnosis; 0 when none). */
int uvmqtt__tls_last_error(uvmqtt_stream_t *s, int *mbedtls_err,
                           uint32_t *verify_flags);

/* ---- proxies (src/transport/proxy*.c, socks5.c) ------------------------- */

/* What a proxy layer asks its proxy to connect to. */
typedef struct {
  const char *host; /* target: a name, or an address literal (no brackets) */
  uint16_t port;    /* target port, not 0 */
  const char *user; /* proxy credentials; NULL: none */
  const char *pass; /* NULL: empty */
  /* Handshake deadline from open(), 0 = none (the owner's own deadline
   * then bounds it); UVMQTT_ETIMEDOUT when it passes. */
  unsigned timeout_ms;
  size_t max_reply_size; /* HTTP: reply header limit, default 8 KiB */
} uvmqtt_proxy_opts_t;

/* Create a proxy stream over the open stream `lower` (the connection to
 * the proxy), which it then owns. The options and strings are copied.
 * ops->open() runs the handshake; once open_cb(0) fires, bytes pass
 * through unchanged in both directions, and the handshake's memory is
 * gone. Bytes of the tunnelled stream that arrive with the proxy's reply
 * are delivered after open_cb, never lost. Return 0, UVMQTT_EINVAL (bad
 * options: no host or port, CR/LF in a string, a SOCKS field over 255
 * bytes, a ':' in an HTTP user name) or UVMQTT_ENOMEM.
 *
 * HTTP CONNECT (RFC 9110 section 9.3.6) with Basic authentication when
 * `user` is set. open_cb errors: UVMQTT_EPROXY_AUTH (407, or 401 as
 * tinyproxy sends for wrong credentials),
 * UVMQTT_EPROXY_STATUS (any other status than 2xx; the status is readable
 * with uvmqtt__proxy_reply_code()), UVMQTT_EPROXY_PROTOCOL (not an HTTP
 * reply), UVMQTT_EPROXY_TOOBIG (header over max_reply_size),
 * UVMQTT_EPROXY_CLOSED (the proxy closed before its reply ended),
 * UVMQTT_ETIMEDOUT, or the lower stream's errors. */
int uvmqtt__http_proxy_new(uvmqtt_stream_t *lower,
                           const uvmqtt_proxy_opts_t *opts,
                           uvmqtt_stream_t **out);

/* SOCKS5 (RFC 1928) with no authentication, or username/password (RFC
 * 1929) when `user` is set. A host name is sent to the proxy to resolve
 * (socks5h); an address literal as an address (socks5: the owner resolved
 * the name). open_cb errors: UVMQTT_EPROXY_AUTH (credentials refused, or
 * required and none given), UVMQTT_ESOCKS_METHOD (no method both sides
 * know), UVMQTT_ESOCKS_* for the reply codes 1 to 8 (the code is readable
 * with uvmqtt__proxy_reply_code()), UVMQTT_EPROXY_PROTOCOL (not a SOCKS5
 * reply), UVMQTT_EPROXY_CLOSED, UVMQTT_ETIMEDOUT, or the lower stream's
 * errors. */
int uvmqtt__socks5_new(uvmqtt_stream_t *lower, const uvmqtt_proxy_opts_t *opts,
                       uvmqtt_stream_t **out);

/* After a failed open of a proxy stream: the proxy's reply code (the HTTP
 * status, or the SOCKS5 reply code); 0 when none came. */
int uvmqtt__proxy_reply_code(uvmqtt_stream_t *s);
/* After a successful open: whether the handshake resumed a session saved
 * by an earlier connection through the same configuration (false for any
 * other stream). */
bool uvmqtt__tls_resumed(const uvmqtt_stream_t *s);

/* ---- ws (src/transport/ws.c; only when UVMQTT_HAVE_WS) ------------------ */

typedef struct {
  const char *host;     /* Host header (with :port when not default) */
  const char *path;     /* request path, default "/mqtt" */
  const char *protocol; /* Sec-WebSocket-Protocol, "mqtt" or "mqttv3.1" */
  /* Extra header lines, each "Name: value" without CRLF; may be NULL. */
  const char *const *headers;
  size_t header_count;
  size_t max_reply_size; /* upgrade reply limit, default 16 KiB */
  size_t max_frame_size; /* incoming frame limit, default 256 MiB */
} uvmqtt_ws_opts_t;

/* Creates a WebSocket client stream over the open stream `lower`, which it
 * then owns. The options and their strings are copied. ops->open() sends
 * the upgrade request and checks the reply; a refused upgrade fails with
 * UVMQTT_EWS_STATUS and the HTTP status is readable with
 * uvmqtt__ws_http_status(). */
int uvmqtt__ws_new(uvmqtt_stream_t *lower, const uvmqtt_ws_opts_t *opts,
                   uvmqtt_stream_t **out);
int uvmqtt__ws_http_status(uvmqtt_stream_t *s);

#endif
