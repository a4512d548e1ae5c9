/* Per-connection statistics (see stats.h): counters, the fixed-header
 * scanner that counts packets by type in each direction, and the
 * keepalive round-trip time taken from PINGREQ / PINGRESP. */
#include "stats.h"

#include <string.h>
#include <uv.h>

#include "alloc.h"

#define PINGREQ 12
#define PINGRESP 13
#define PUBLISH 3

uvmqtt__cstats_t *uvmqtt__cstats_new(uint64_t now) {
  uvmqtt__cstats_t *st = uvmqtt__calloc(1, sizeof(*st));
  if (st != NULL)
    st->s.since_ms = now;
  return st;
}

void uvmqtt__cstats_free(uvmqtt__cstats_t *st) {
  uvmqtt__free(st);
}

static void packet_in(uvmqtt__cstats_t *st, uint8_t first) {
  unsigned type = first >> 4;
  st->s.packets_in[type]++;
  if (type == PINGRESP && st->ping_at != 0) {
    uint64_t us = (uv_hrtime() - st->ping_at) / 1000;
    uint32_t rtt = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    st->ping_at = 0;
    st->s.rtt_last_us = rtt;
    if (rtt > st->s.rtt_max_us)
      st->s.rtt_max_us = rtt;
    st->srtt_x8 = st->srtt_x8 == 0 ? (uint64_t)rtt * 8
                                   : st->srtt_x8 - st->srtt_x8 / 8 + rtt;
    st->s.rtt_smoothed_us = (uint32_t)(st->srtt_x8 / 8);
  }
}

static void packet_out(uvmqtt__cstats_t *st, uint8_t first) {
  unsigned type = first >> 4;
  st->s.packets_out[type]++;
  if (type == PUBLISH) {
    unsigned qos = (first >> 1) & 3;
    if (first & 0x08)
      st->s.republished++;
    else if (qos < 3)
      st->s.published[qos]++;
  } else if (type == PINGREQ) {
    st->ping_at = uv_hrtime();
  }
}

/* Walks `n` bytes of an MQTT stream, calling `on` with the first byte of
 * each packet whose fixed header completes. Bodies are skipped whole. */
static void scan(uvmqtt__cstats_t *st, uvmqtt__scan_t *sc, const uint8_t *p,
                 size_t n, void (*on)(uvmqtt__cstats_t *, uint8_t)) {
  while (n > 0) {
    switch (sc->state) {
    case 0:
      sc->first = *p++;
      n--;
      sc->len = 0;
      sc->shift = 0;
      sc->state = 1;
      break;
    case 1: {
      uint8_t b = *p++;
      n--;
      sc->len |= (uint32_t)(b & 0x7f) << sc->shift;
      sc->shift += 7;
      if (b & 0x80) {
        if (sc->shift > 21) /* malformed: the session reports it */
          sc->state = 0;
        break;
      }
      on(st, sc->first);
      sc->left = sc->len;
      sc->state = sc->left ? 2 : 0;
      break;
    }
    default: {
      size_t k = n < sc->left ? n : sc->left;
      p += k;
      n -= k;
      sc->left -= (uint32_t)k;
      if (sc->left == 0)
        sc->state = 0;
      break;
    }
    }
  }
}

void uvmqtt__cstats_in(uvmqtt__cstats_t *st, const uint8_t *p, size_t n) {
  st->s.bytes_in += n;
  scan(st, &st->in, p, n, packet_in);
}

void uvmqtt__cstats_out(uvmqtt__cstats_t *st, const uint8_t *p, size_t n) {
  st->s.bytes_out += n;
  scan(st, &st->out, p, n, packet_out);
}

void uvmqtt__cstats_reset_streams(uvmqtt__cstats_t *st) {
  memset(&st->in, 0, sizeof(st->in));
  memset(&st->out, 0, sizeof(st->out));
  st->ping_at = 0;
}

void uvmqtt__cstats_attempt(uvmqtt__cstats_t *st) {
  st->s.attempts++;
}

void uvmqtt__cstats_connected(uvmqtt__cstats_t *st, uint64_t now) {
  if (st->s.connects++ > 0)
    st->s.reconnects++;
  st->connected = true;
  st->up_at = now;
}

void uvmqtt__cstats_lost(uvmqtt__cstats_t *st, uint64_t now, int status) {
  if (status != 0)
    st->s.last_error = status;
  if (st->connected) {
    st->s.connected_ms += now - st->up_at;
    st->connected = false;
  }
  if (st->paused_at != 0) {
    st->s.paused_ms += now - st->paused_at;
    st->paused_at = 0;
  }
  uvmqtt__cstats_reset_streams(st);
}

void uvmqtt__cstats_delivered(uvmqtt__cstats_t *st, uint8_t qos) {
  if (qos < 3)
    st->s.delivered[qos]++;
}

void uvmqtt__cstats_publish_done(uvmqtt__cstats_t *st, int status,
                                 uint8_t reason) {
  switch (status) {
  case 0:
    st->s.completed++;
    break;
  case UVMQTT_EDROPPED:
    st->s.dropped++;
    break;
  case UVMQTT_EEXPIRED:
    st->s.expired++;
    break;
  case UVMQTT_EREJECTED:
    st->s.refused++;
    st->s.last_refused_reason = reason;
    break;
  default:
    st->s.failed++;
    break;
  }
}

void uvmqtt__cstats_paused(uvmqtt__cstats_t *st, bool paused, uint64_t now) {
  if (paused && st->paused_at == 0)
    st->paused_at = now ? now : 1;
  else if (!paused && st->paused_at != 0) {
    st->s.paused_ms += now - st->paused_at;
    st->paused_at = 0;
  }
}

void uvmqtt__cstats_read(const uvmqtt__cstats_t *st, uint64_t now,
                         uvmqtt_client_stats_t *out) {
  *out = st->s;
  if (st->connected) {
    out->connection_age_ms = now - st->up_at;
    out->connected_ms += out->connection_age_ms;
  }
  if (st->paused_at != 0)
    out->paused_ms += now - st->paused_at;
}
