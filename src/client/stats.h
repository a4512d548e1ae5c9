/* Per-connection statistics (uvmqtt_client_stats_t) and the per-loop
 * aggregate. The per-client block exists only for clients that asked for
 * statistics; the client calls the hooks below only when it has one, so a
 * client that never asks pays a NULL check per read and per write.
 *
 * Packets are counted by scanning the MQTT byte stream in each direction
 * for fixed headers (type byte, remaining length): the codec and session
 * stay untouched, and the scan costs a few operations per packet.
 */
#ifndef UVMQTT_STATS_H
#define UVMQTT_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uvmqtt.h"

/* Incremental fixed-header scanner; zeroed = at a packet boundary. */
typedef struct {
  uint32_t left; /* body bytes still to pass over */
  uint32_t len;  /* remaining length being decoded */
  uint8_t shift;
  uint8_t state; /* 0: type byte next, 1: length bytes, 2: body */
  uint8_t first; /* the fixed header's first byte */
} uvmqtt__scan_t;

typedef struct {
  uvmqtt_client_stats_t s; /* counters; gauges are filled on demand */
  uvmqtt__scan_t in, out;
  uint64_t ping_at;   /* uv_hrtime() of an unanswered PINGREQ, 0: none */
  uint64_t up_at;     /* uv_now() at CONNACK, valid while connected */
  uint64_t paused_at; /* uv_now() when reading was paused, 0: not */
  uint64_t srtt_x8;   /* smoothed RTT in us, times 8 */
  bool connected;
} uvmqtt__cstats_t;

/* A new block, counting from `now`. NULL when out of memory. */
uvmqtt__cstats_t *uvmqtt__cstats_new(uint64_t now);
void uvmqtt__cstats_free(uvmqtt__cstats_t *st);

/* Bytes received from / handed to the stream. */
void uvmqtt__cstats_in(uvmqtt__cstats_t *st, const uint8_t *p, size_t n);
void uvmqtt__cstats_out(uvmqtt__cstats_t *st, const uint8_t *p, size_t n);
/* The stream of one connection ended: a partial packet is forgotten. */
void uvmqtt__cstats_reset_streams(uvmqtt__cstats_t *st);

void uvmqtt__cstats_attempt(uvmqtt__cstats_t *st);
void uvmqtt__cstats_connected(uvmqtt__cstats_t *st, uint64_t now);
void uvmqtt__cstats_lost(uvmqtt__cstats_t *st, uint64_t now, int status);
void uvmqtt__cstats_delivered(uvmqtt__cstats_t *st, uint8_t qos);
/* An outgoing publish completed with `status` (and v5 reason). */
void uvmqtt__cstats_publish_done(uvmqtt__cstats_t *st, int status,
                                 uint8_t reason);
void uvmqtt__cstats_paused(uvmqtt__cstats_t *st, bool paused, uint64_t now);

/* Copies the counters into *out and fills the time-dependent fields;
 * gauges (inflight, queued, throttled) are the caller's. */
void uvmqtt__cstats_read(const uvmqtt__cstats_t *st, uint64_t now,
                         uvmqtt_client_stats_t *out);

#endif
