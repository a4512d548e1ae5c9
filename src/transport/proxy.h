/* The common part of the proxy layers (HTTP CONNECT in proxy_http.c,
 * SOCKS5 in socks5.c): a stream that runs a protocol's handshake over its
 * lower stream in open(), then passes bytes through unchanged. Internal to
 * src/transport/; the client sees only the constructors in transport.h.
 *
 * A protocol supplies its handshake as a proxy_proto_t. Its state lives in
 * the handshake block, allocated at creation and freed once the tunnel is
 * open (or the stream closed): an open tunnel keeps only the small stream
 * struct. */
#ifndef UVMQTT_TRANSPORT_PROXY_H
#define UVMQTT_TRANSPORT_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "transport.h"

typedef struct uvmqtt__proxy_s uvmqtt__proxy_t;

/* The stream operations of every proxy layer (proxy.c). */
int uvmqtt__proxy_open(uvmqtt_stream_t *s, uvmqtt_stream_open_cb cb);
int uvmqtt__proxy_write(uvmqtt_stream_t *s, const uv_buf_t bufs[],
                        unsigned nbufs, uvmqtt_stream_write_cb cb, void *arg);
int uvmqtt__proxy_try_write(uvmqtt_stream_t *s, const uv_buf_t bufs[],
                            unsigned nbufs);
int uvmqtt__proxy_read_start(uvmqtt_stream_t *s);
int uvmqtt__proxy_read_stop(uvmqtt_stream_t *s);
void uvmqtt__proxy_shutdown(uvmqtt_stream_t *s);
void uvmqtt__proxy_close(uvmqtt_stream_t *s, uvmqtt_stream_close_cb cb);

#define UVMQTT__PROXY_OPS(layer_name)                                          \
  {                                                                            \
    .name = layer_name, .open = uvmqtt__proxy_open,                            \
    .write = uvmqtt__proxy_write, .read_start = uvmqtt__proxy_read_start,      \
    .read_stop = uvmqtt__proxy_read_stop, .shutdown = uvmqtt__proxy_shutdown,  \
    .close = uvmqtt__proxy_close, .try_write = uvmqtt__proxy_try_write,        \
    .hint = uvmqtt__stream_forward_hint                                        \
  }

typedef struct {
  /* First: a stream's ops pointer leads back to its protocol. Initialise
   * with UVMQTT__PROXY_OPS(name). */
  uvmqtt_stream_ops_t ops;
  size_t state_size; /* bytes of protocol state in the handshake block */
  /* Copies what the protocol needs from opts into st (zeroed). 0 or an
   * error (UVMQTT_EINVAL for options the protocol cannot carry). */
  int (*init)(void *st, const uvmqtt_proxy_opts_t *opts);
  /* Frees what init() allocated in st. */
  void (*clear)(void *st);
  /* Sends the first message with uvmqtt__proxy_send(). 0 or an error. */
  int (*start)(uvmqtt__proxy_t *p, void *st);
  /* Consumes proxy bytes. Returns 0 when it needs more (all n used), 1 when
   * the handshake is complete (*used: how many of the n bytes belonged to
   * it; the rest is tunnelled data), or an error. May send with
   * uvmqtt__proxy_send(). */
  int (*feed)(uvmqtt__proxy_t *p, void *st, const uint8_t *b, size_t n,
              size_t *used);
} uvmqtt__proxy_proto_t;

/* Creates a proxy stream of protocol `proto` over the open stream `lower`,
 * which it then owns. See uvmqtt__http_proxy_new(). */
int uvmqtt__proxy_new(uvmqtt_stream_t *lower,
                      const uvmqtt__proxy_proto_t *proto,
                      const uvmqtt_proxy_opts_t *opts, uvmqtt_stream_t **out);

/* Writes a copy of n bytes to the proxy (during the handshake only). */
int uvmqtt__proxy_send(uvmqtt__proxy_t *p, const void *b, size_t n);

/* Records the protocol's reply code (HTTP status, SOCKS reply) for
 * uvmqtt__proxy_reply_code(). */
void uvmqtt__proxy_set_code(uvmqtt__proxy_t *p, int code);

/* The stream of p (for uvmqtt__stream_log()). */
uvmqtt_stream_t *uvmqtt__proxy_stream(uvmqtt__proxy_t *p);

#endif
