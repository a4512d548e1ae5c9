#include "sbroker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct {
  uv_write_t req;
  uint8_t data[];
} sb_write_t;

static void on_written(uv_write_t *req, int status) {
  (void)status;
  free(req);
}

void sb_send(sconn_t *c, const uvmqtt_packet_t *pkt) {
  size_t size;
  if (c->closing || uvmqtt_encode_size(pkt, UVMQTT_V5, &size) < 0) {
    fprintf(stderr, "sbroker: cannot encode packet type %d\n", pkt->type);
    return;
  }
  sb_write_t *w = malloc(sizeof(*w) + size);
  if (uvmqtt_encode(pkt, UVMQTT_V5, w->data, size) != (int)size) {
    free(w);
    return;
  }
  uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)size);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0)
    free(w);
}

void sb_connack(sconn_t *c, uint8_t reason, const uvmqtt_props_t *props) {
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_CONNACK;
  p.u.connack.reason_code = reason;
  if (props)
    p.u.connack.props = *props;
  sb_send(c, &p);
}

static void on_conn_closed(uv_handle_t *h) {
  sconn_t *c = h->data;
  sbroker_t *b = c->b;
  for (sconn_t **pp = &b->conns; *pp; pp = &(*pp)->next) {
    if (*pp == c) {
      *pp = c->next;
      break;
    }
  }
  free(uvmqtt_parser_take_buffer(&c->parser));
  free(c);
}

void sb_close_conn(sconn_t *c) {
  if (c->closing)
    return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(size);
  buf->len = size;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  sconn_t *c = s->data;
  const uint8_t *p = (const uint8_t *)buf->base;
  size_t len = n > 0 ? (size_t)n : 0;
  if (n < 0)
    sb_close_conn(c);
  while (len > 0 && !c->closing) {
    size_t used = 0;
    uvmqtt_packet_t pkt;
    int rc = uvmqtt_parser_feed(&c->parser, p, len, &used, &pkt);
    p += used;
    len -= used;
    if (rc == UVMQTT_PARSE_PACKET) {
      if (pkt.type == UVMQTT_CONNECT)
        c->parser.version = pkt.u.connect.protocol_version;
      c->b->packets++;
      c->b->cb(c, &pkt, c->b->arg);
      free(uvmqtt_parser_take_buffer(&c->parser));
    } else if (rc == UVMQTT_PARSE_NEED_BUFFER) {
      uvmqtt_parser_set_buffer(&c->parser, malloc(c->parser.need),
                               c->parser.need);
    } else if (rc < 0) {
      fprintf(stderr, "sbroker: bad packet from client: %s\n",
              uvmqtt_strerror(rc));
      sb_close_conn(c);
    } else if (used == 0) {
      break;
    }
  }
  free(buf->base);
}

static void on_connection(uv_stream_t *server, int status) {
  sbroker_t *b = server->data;
  if (status < 0)
    return;
  sconn_t *c = calloc(1, sizeof(*c));
  c->b = b;
  uv_tcp_init(b->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
    return;
  }
  uvmqtt_parser_init(&c->parser, UVMQTT_V5, UVMQTT_ROLE_SERVER, 0);
  c->next = b->conns;
  b->conns = c;
  b->accepted++;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

int sb_start(sbroker_t *b, uv_loop_t *loop, sb_packet_cb cb, void *arg) {
  struct sockaddr_in a;
  memset(b, 0, sizeof(*b));
  b->loop = loop;
  b->cb = cb;
  b->arg = arg;
  b->port = tu_free_port();
  uv_ip4_addr("127.0.0.1", b->port, &a);
  uv_tcp_init(loop, &b->server);
  b->server.data = b;
  if (uv_tcp_bind(&b->server, (struct sockaddr *)&a, 0) != 0 ||
      uv_listen((uv_stream_t *)&b->server, 16, on_connection) != 0)
    return -1;
  return 0;
}

void sb_stop(sbroker_t *b) {
  for (sconn_t *c = b->conns; c; c = c->next)
    sb_close_conn(c); /* unlinked and freed by its close callback */
  uv_close((uv_handle_t *)&b->server, NULL);
}
