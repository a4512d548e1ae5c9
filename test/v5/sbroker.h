/* A scripted MQTT 5 broker for tests: a libuv TCP server on 127.0.0.1 that
 * decodes what clients send with the codec (server role) and hands each
 * packet to the test, which answers with sb_send(). It does exactly what
 * the test says, so it can misbehave on demand. */
#ifndef UVMQTT_SBROKER_H
#define UVMQTT_SBROKER_H

#include <uv.h>

#include "uvmqtt.h"

typedef struct sbroker_s sbroker_t;
typedef struct sconn_s sconn_t;

typedef void (*sb_packet_cb)(sconn_t *conn, const uvmqtt_packet_t *pkt,
                             void *arg);

struct sconn_s {
  uv_tcp_t tcp;
  sbroker_t *b;
  uvmqtt_parser_t parser;
  int closing;
  sconn_t *next;
};

struct sbroker_s {
  uv_tcp_t server;
  uv_loop_t *loop;
  int port;
  sb_packet_cb cb;
  void *arg;
  sconn_t *conns;
  int accepted;
  int packets;
};

/* Listens on a free port. Returns 0 or -1. */
int sb_start(sbroker_t *b, uv_loop_t *loop, sb_packet_cb cb, void *arg);
/* Encodes pkt for v5 and writes it. */
void sb_send(sconn_t *c, const uvmqtt_packet_t *pkt);
/* Sends a CONNACK with reason and optional properties. */
void sb_connack(sconn_t *c, uint8_t reason, const uvmqtt_props_t *props);
void sb_close_conn(sconn_t *c);
/* Closes the server and every connection (run the loop afterwards). */
void sb_stop(sbroker_t *b);

#endif
