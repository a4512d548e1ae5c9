/* The ws layer: a WebSocket (RFC 6455) client stream over a lower stream.
 * See transport.h for the contract and docs/websocket.md for the design.
 *
 * Framing is our own rather than wslay's: incoming payload bytes are handed
 * to the upper layer as views into the lower layer's buffer (servers never
 * mask), so an idle connection holds no read buffer and the data is never
 * copied; wslay keeps a fixed 4 KiB input buffer per connection (9 KiB with
 * its event API) allocated outside the library's allocator hooks. Only a
 * partial frame header (at most 14 bytes) and control frame payloads (at
 * most 125 bytes) are ever copied; both live inside the stream. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>
#include <mbedtls/version.h>

#include "../alloc.h"
#include "http.h"
#include "transport.h"
#include "uvmqtt/errors.h"
#include "uvmqtt/log.h"

#define WS_DEFAULT_PATH "/mqtt"
#define WS_DEFAULT_PROTOCOL "mqtt"
#define WS_DEFAULT_MAX_REPLY (16u * 1024u)
#define WS_DEFAULT_MAX_FRAME (256u * 1024u * 1024u)
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum {
  OP_CONT = 0x0,
  OP_TEXT = 0x1,
  OP_BINARY = 0x2,
  OP_CLOSE = 0x8,
  OP_PING = 0x9,
  OP_PONG = 0xA
};

enum {
  CLOSE_NORMAL = 1000,
  CLOSE_PROTOCOL = 1002,
  CLOSE_UNSUPPORTED = 1003,
  CLOSE_NO_STATUS = 1005,
  CLOSE_TOO_BIG = 1009
};

typedef enum {
  ST_NEW,       /* created, open() not called yet */
  ST_HANDSHAKE, /* request sent, reading the reply */
  ST_OPEN,      /* frames flow */
  ST_FAILED     /* handshake failed, open_cb got the error */
} ws_state_t;

typedef struct {
  uvmqtt_stream_t base;
  uv_timer_t timer; /* defers open_cb errors and pending-data delivery */
  ws_state_t state;
  uvmqtt_stream_open_cb open_cb;
  uvmqtt_stream_close_cb close_cb;
  int deferred_open_err; /* open_cb status waiting for the timer */
  int http_status;       /* status of a refused upgrade */
  int handles_open;      /* timer + lower, while closing */

  unsigned closing : 1;    /* close() called */
  unsigned reading : 1;    /* upper wants read_cb calls */
  unsigned read_ended : 1; /* read_cb has seen nread < 0 */
  unsigned close_sent : 1; /* our close frame is queued */
  unsigned in_message : 1; /* inside a fragmented data message */

  /* Handshake. The request is built by uvmqtt__ws_new and freed once
   * written; the reply is collected until its header ends. */
  char *request;
  size_t request_len;
  char *protocol; /* requested subprotocol */
  char accept[29];
  char *reply;
  size_t reply_len, reply_cap, max_reply;
  unsigned eoh; /* end-of-header scanner state */

  /* Frame parser. */
  uint64_t max_frame;
  uint64_t remaining; /* payload bytes left in the current frame */
  uint8_t hdr[14];
  uint8_t hdr_len, hdr_need;
  uint8_t in_payload; /* 1 while reading a payload */
  uint8_t opcode;
  uint8_t ctrl_len;
  uint8_t ctrl[125];

  /* Bytes read but not yet delivered because the upper stopped reading. */
  uint8_t *pending;
  size_t pending_len, pending_off;
} ws_stream_t;

typedef struct {
  ws_stream_t *ws;
  uvmqtt_stream_write_cb cb; /* NULL for frames of our own */
  void *arg;
  uv_buf_t buf;
  /* The frame (header, then masked payload) follows. */
} ws_write_t;

/* ---- helpers ------------------------------------------------------------ */

static void ws_log(ws_stream_t *ws, int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  uvmqtt__stream_vlog(&ws->base, level, fmt, ap);
  va_end(ap);
}

/* 1 when the comma-separated list `v` holds `token` (case-insensitive). */
static int list_has_token(const char *v, size_t len, const char *token) {
  size_t i = 0;
  while (i < len) {
    while (i < len && (uvmqtt__http_is_ows(v[i]) || v[i] == ','))
      i++;
    size_t start = i;
    while (i < len && v[i] != ',')
      i++;
    size_t end = i;
    while (end > start && uvmqtt__http_is_ows(v[end - 1]))
      end--;
    if (end > start && uvmqtt__http_ci_equal(v + start, end - start, token))
      return 1;
  }
  return 0;
}

/* 1 when s holds CR or LF: no header injection through the options. */
static int has_ctl(const char *s) {
  return strpbrk(s, "\r\n") != NULL;
}

/* Random bytes for masks come from a per-thread pool refilled from the OS
 * (uv_random) so that a frame costs no system call. */
static _Thread_local uint8_t rand_pool[256];
static _Thread_local size_t rand_avail;

static int random_bytes(uint8_t *out, size_t n) {
  while (n > 0) {
    if (rand_avail == 0) {
      int rc = uv_random(NULL, NULL, rand_pool, sizeof(rand_pool), 0, NULL);
      if (rc != 0)
        return rc;
      rand_avail = sizeof(rand_pool);
    }
    size_t take = n < rand_avail ? n : rand_avail;
    memcpy(out, rand_pool + sizeof(rand_pool) - rand_avail, take);
    memset(rand_pool + sizeof(rand_pool) - rand_avail, 0, take);
    rand_avail -= take;
    out += take;
    n -= take;
  }
  return 0;
}

/* base64(SHA-1(key + GUID)), RFC 6455 section 4.2.2. */
static int compute_accept(const char *key, char out[29]) {
  uint8_t digest[20];
  char in[24 + sizeof(WS_GUID)];
  size_t olen = 0;
  memcpy(in, key, 24);
  memcpy(in + 24, WS_GUID, sizeof(WS_GUID) - 1);
#if defined(MBEDTLS_VERSION_NUMBER) && MBEDTLS_VERSION_NUMBER >= 0x03000000
  if (mbedtls_sha1((const unsigned char *)in, 24 + sizeof(WS_GUID) - 1,
                   digest) != 0)
    return UVMQTT_EWS;
#else
  if (mbedtls_sha1_ret((const unsigned char *)in, 24 + sizeof(WS_GUID) - 1,
                       digest) != 0)
    return UVMQTT_EWS;
#endif
  if (mbedtls_base64_encode((unsigned char *)out, 29, &olen, digest, 20) != 0 ||
      olen != 28)
    return UVMQTT_EWS;
  out[28] = '\0';
  return 0;
}

/* ---- writing ------------------------------------------------------------ */

static void on_lower_write(uvmqtt_stream_t *lower, int status, void *arg) {
  ws_write_t *w = arg;
  ws_stream_t *ws = w->ws;
  uvmqtt_stream_write_cb cb = w->cb;
  void *cb_arg = w->arg;
  (void)lower;
  uvmqtt__free(w);
  if (cb)
    cb(&ws->base, status, cb_arg);
}

/* XORs `n` bytes of src with the mask into dst, continuing at mask offset
 * *k (so a payload split over several buffers is masked as one). */
static void mask_copy(uint8_t *dst, const uint8_t *src, size_t n,
                      const uint8_t mask[4], size_t *k) {
  size_t i = 0;
  while (i < n && (*k & 3) != 0) {
    dst[i] = src[i] ^ mask[*k & 3];
    i++;
    (*k)++;
  }
  /* Eight bytes at a time once the mask offset is aligned. */
  uint64_t m8;
  uint8_t m[8] = {mask[0], mask[1], mask[2], mask[3],
                  mask[0], mask[1], mask[2], mask[3]};
  memcpy(&m8, m, 8);
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, src + i, 8);
    v ^= m8;
    memcpy(dst + i, &v, 8);
  }
  for (; i < n; i++) {
    dst[i] = src[i] ^ mask[*k & 3];
    (*k)++;
  }
}

/* Builds one masked frame from bufs and writes it to the lower stream. */
static int send_frame(ws_stream_t *ws, uint8_t opcode, const uv_buf_t *bufs,
                      unsigned nbufs, uvmqtt_stream_write_cb cb, void *arg) {
  uint64_t total = 0;
  for (unsigned i = 0; i < nbufs; i++)
    total += bufs[i].len;
  size_t hlen = total < 126 ? 2 : total <= 0xFFFF ? 4 : 10;
  if (total > SIZE_MAX - sizeof(ws_write_t) - 14)
    return UVMQTT_EWS_TOOBIG;
  ws_write_t *w = uvmqtt__malloc(sizeof(*w) + hlen + 4 + (size_t)total);
  if (!w)
    return UVMQTT_ENOMEM;
  uint8_t *f = (uint8_t *)(w + 1);
  f[0] = (uint8_t)(0x80 | opcode);
  if (hlen == 2) {
    f[1] = (uint8_t)(0x80 | total);
  } else if (hlen == 4) {
    f[1] = 0x80 | 126;
    f[2] = (uint8_t)(total >> 8);
    f[3] = (uint8_t)total;
  } else {
    f[1] = 0x80 | 127;
    for (int i = 0; i < 8; i++)
      f[2 + i] = (uint8_t)(total >> (56 - 8 * i));
  }
  uint8_t *mask = f + hlen;
  int rc = random_bytes(mask, 4);
  if (rc != 0) {
    uvmqtt__free(w);
    return rc;
  }
  uint8_t *p = mask + 4;
  size_t k = 0;
  for (unsigned i = 0; i < nbufs; i++) {
    mask_copy(p, (const uint8_t *)bufs[i].base, bufs[i].len, mask, &k);
    p += bufs[i].len;
  }
  w->ws = ws;
  w->cb = cb;
  w->arg = arg;
  w->buf.base = (char *)f;
  w->buf.len = hlen + 4 + (size_t)total;
  rc = uvmqtt__stream_write(ws->base.lower, &w->buf, 1, on_lower_write, w);
  if (rc != 0)
    uvmqtt__free(w);
  return rc;
}

/* Queues our close frame once (best effort). */
static void send_close(ws_stream_t *ws, uint16_t code) {
  if (ws->close_sent || ws->closing || ws->state != ST_OPEN)
    return;
  ws->close_sent = 1;
  uint8_t payload[2] = {(uint8_t)(code >> 8), (uint8_t)code};
  uv_buf_t b = uv_buf_init((char *)payload, 2);
  int rc = send_frame(ws, OP_CLOSE, &b, 1, NULL, NULL);
  if (rc != 0)
    ws_log(ws, UVMQTT_LOG_DEBUG, "ws: could not send close frame: %s",
           uvmqtt_strerror(rc));
}

static int ws_write(uvmqtt_stream_t *s, const uv_buf_t bufs[], unsigned nbufs,
                    uvmqtt_stream_write_cb cb, void *arg) {
  ws_stream_t *ws = (ws_stream_t *)s;
  if (ws->closing)
    return UV_ECANCELED;
  if (ws->state != ST_OPEN)
    return UVMQTT_ESTATE;
  if (ws->close_sent)
    return UVMQTT_EWS_CLOSED; /* no data frames after a close frame */
  return send_frame(ws, OP_BINARY, bufs, nbufs, cb, arg);
}

/* ---- reading frames ----------------------------------------------------- */

static void end_read(ws_stream_t *ws, int err) {
  if (ws->read_ended)
    return;
  ws->read_ended = 1;
  if (ws->base.read_cb)
    ws->base.read_cb(&ws->base, err, NULL);
}

/* A protocol error from the peer: say goodbye, then end reading. */
static void frame_error(ws_stream_t *ws, int err, uint16_t code,
                        const char *why) {
  ws_log(ws, UVMQTT_LOG_ERROR, "ws: %s", why);
  send_close(ws, code);
  end_read(ws, err);
}

static int valid_close_code(unsigned code) {
  if (code >= 3000 && code <= 4999)
    return 1;
  return code >= 1000 && code <= 1014 && code != 1004 && code != 1005 &&
         code != 1006;
}

/* A complete control frame is in ws->ctrl. */
static void handle_control(ws_stream_t *ws) {
  if (ws->opcode == OP_PING) {
    if (ws->close_sent)
      return;
    uv_buf_t b = uv_buf_init((char *)ws->ctrl, ws->ctrl_len);
    int rc = send_frame(ws, OP_PONG, &b, 1, NULL, NULL);
    if (rc != 0)
      ws_log(ws, UVMQTT_LOG_WARN, "ws: could not answer ping: %s",
             uvmqtt_strerror(rc));
    return;
  }
  if (ws->opcode == OP_PONG)
    return;
  /* Close. */
  unsigned code = CLOSE_NO_STATUS;
  if (ws->ctrl_len == 1) {
    frame_error(ws, UVMQTT_EWS_FRAME, CLOSE_PROTOCOL,
                "close frame with a one-byte payload");
    return;
  }
  if (ws->ctrl_len >= 2) {
    code = ((unsigned)ws->ctrl[0] << 8) | ws->ctrl[1];
    if (!valid_close_code(code)) {
      ws_log(ws, UVMQTT_LOG_WARN, "ws: close frame with invalid code %u", code);
      send_close(ws, CLOSE_PROTOCOL);
      end_read(ws, UVMQTT_EWS_FRAME);
      return;
    }
  }
  ws_log(ws,
         code == CLOSE_NORMAL || code == CLOSE_NO_STATUS ? UVMQTT_LOG_DEBUG
                                                         : UVMQTT_LOG_WARN,
         "ws: closed by the peer (code %u%s%.*s)", code,
         ws->ctrl_len > 2 ? ": " : "", ws->ctrl_len > 2 ? ws->ctrl_len - 2 : 0,
         (const char *)ws->ctrl + 2);
  /* Answer with a close frame echoing the code (RFC 6455 section 5.5.1). */
  send_close(ws, code == CLOSE_NO_STATUS ? CLOSE_NORMAL : (uint16_t)code);
  end_read(ws, code == CLOSE_NORMAL || code == CLOSE_NO_STATUS
                   ? UV_EOF
                   : UVMQTT_EWS_CLOSED);
}

/* Validates a complete frame header in ws->hdr. 0 or an error (reported). */
static int start_frame(ws_stream_t *ws) {
  uint8_t b0 = ws->hdr[0], b1 = ws->hdr[1];
  int fin = b0 >> 7;
  uint8_t op = b0 & 0x0F;
  uint64_t len = b1 & 0x7F;
  if (len == 126) {
    len = ((uint64_t)ws->hdr[2] << 8) | ws->hdr[3];
  } else if (len == 127) {
    len = 0;
    for (int i = 0; i < 8; i++)
      len = (len << 8) | ws->hdr[2 + i];
  }
  if (b0 & 0x70) {
    frame_error(ws, UVMQTT_EWS_FRAME, CLOSE_PROTOCOL,
                "frame with reserved bits set");
    return -1;
  }
  switch (op) {
  case OP_CONT:
    if (!ws->in_message) {
      frame_error(ws, UVMQTT_EWS_FRAME, CLOSE_PROTOCOL,
                  "continuation frame outside a message");
      return -1;
    }
    break;
  case OP_BINARY:
    if (ws->in_message) {
      frame_error(ws, UVMQTT_EWS_FRAME, CLOSE_PROTOCOL,
                  "new message inside a fragmented one");
      return -1;
    }
    break;
  case OP_TEXT:
    /* MQTT over WebSocket is binary only [MQTT-6.0.0-1]. */
    frame_error(ws, UVMQTT_EWS_FRAME, CLOSE_UNSUPPORTED,
                "text frame (MQTT uses binary frames)");
    return -1;
  case OP_CLOSE:
  case OP_PING:
  case OP_PONG:
    if (!fin || len > 125) {
      frame_error(ws, UVMQTT_EWS_FRAME, CLOSE_PROTOCOL,
                  "fragmented or oversize control frame");
      return -1;
    }
    break;
  default:
    frame_error(ws, UVMQTT_EWS_FRAME, CLOSE_PROTOCOL, "unknown opcode");
    return -1;
  }
  if (len > ws->max_frame) {
    ws_log(ws, UVMQTT_LOG_ERROR,
           "ws: frame of %llu bytes over the limit of %llu",
           (unsigned long long)len, (unsigned long long)ws->max_frame);
    send_close(ws, CLOSE_TOO_BIG);
    end_read(ws, UVMQTT_EWS_TOOBIG);
    return -1;
  }
  if (op == OP_CONT || op == OP_BINARY)
    ws->in_message = !fin;
  ws->opcode = op;
  ws->remaining = len;
  ws->ctrl_len = 0;
  ws->in_payload = 1;
  return 0;
}

/* Feeds bytes from the lower stream to the frame parser, delivering payload
 * to the upper layer. Returns how many bytes were consumed: fewer than n
 * only when the upper stopped reading, closed, or reading ended. */
static size_t feed_frames(ws_stream_t *ws, const uint8_t *p, size_t n) {
  size_t off = 0;
  while (off < n) {
    if (ws->closing || ws->read_ended || !ws->reading)
      return off;
    if (!ws->in_payload) {
      /* Collect the header: 2 bytes, then the extended length. */
      while (off < n && ws->hdr_len < ws->hdr_need) {
        ws->hdr[ws->hdr_len++] = p[off++];
        if (ws->hdr_len == 2) {
          if (ws->hdr[1] & 0x80) {
            /* Servers MUST NOT mask (RFC 6455 section 5.1). */
            frame_error(ws, UVMQTT_EWS_FRAME, CLOSE_PROTOCOL,
                        "masked frame from the server");
            return off;
          }
          uint8_t l7 = ws->hdr[1] & 0x7F;
          ws->hdr_need = l7 == 126 ? 4 : l7 == 127 ? 10 : 2;
        }
      }
      if (ws->hdr_len < ws->hdr_need)
        return off;
      ws->hdr_len = 0;
      ws->hdr_need = 2;
      if (ws->hdr[1] == 127 && (ws->hdr[2] & 0x80)) {
        frame_error(ws, UVMQTT_EWS_FRAME, CLOSE_PROTOCOL,
                    "frame length with the top bit set");
        return off;
      }
      if (start_frame(ws) != 0)
        return off;
    }
    size_t avail = n - off;
    size_t take = ws->remaining < avail ? (size_t)ws->remaining : avail;
    if (ws->opcode == OP_BINARY || ws->opcode == OP_CONT) {
      ws->remaining -= take;
      if (take > 0 && ws->base.read_cb)
        ws->base.read_cb(&ws->base, (ssize_t)take, p + off);
      off += take;
    } else {
      memcpy(ws->ctrl + ws->ctrl_len, p + off, take);
      ws->ctrl_len = (uint8_t)(ws->ctrl_len + take);
      ws->remaining -= take;
      off += take;
    }
    if (ws->remaining == 0) {
      ws->in_payload = 0;
      if (ws->opcode >= OP_CLOSE && !ws->closing)
        handle_control(ws);
    }
  }
  return off;
}

/* Delivers bytes; keeps what the upper did not take (it stopped reading). */
static int deliver(ws_stream_t *ws, const uint8_t *p, size_t n) {
  size_t used = feed_frames(ws, p, n);
  if (used == n || ws->closing || ws->read_ended)
    return 0;
  /* The upper called read_stop(): keep the rest until read_start(). The
   * lower's buffer is only valid during its callback. */
  size_t rest = n - used;
  size_t keep = ws->pending_len - ws->pending_off;
  uint8_t *nb = uvmqtt__malloc(keep + rest);
  if (!nb)
    return UVMQTT_ENOMEM;
  if (keep)
    memcpy(nb, ws->pending + ws->pending_off, keep);
  memcpy(nb + keep, p + used, rest);
  uvmqtt__free(ws->pending);
  ws->pending = nb;
  ws->pending_len = keep + rest;
  ws->pending_off = 0;
  return 0; /* read_stop() stopped the lower stream already */
}

/* Feeds the saved bytes; frees them once all are taken. */
static void drain_pending(ws_stream_t *ws) {
  while (ws->pending && !ws->closing && !ws->read_ended && ws->reading) {
    size_t used = feed_frames(ws, ws->pending + ws->pending_off,
                              ws->pending_len - ws->pending_off);
    ws->pending_off += used;
    if (ws->pending_off == ws->pending_len) {
      uvmqtt__free(ws->pending);
      ws->pending = NULL;
      ws->pending_len = ws->pending_off = 0;
    } else if (used == 0 && ws->reading && !ws->closing && !ws->read_ended) {
      break; /* cannot happen: feed_frames makes progress while reading */
    }
  }
}

/* ---- the handshake ------------------------------------------------------ */

static void open_done(ws_stream_t *ws, int status) {
  uvmqtt_stream_open_cb cb = ws->open_cb;
  ws->open_cb = NULL;
  uvmqtt__free(ws->reply);
  ws->reply = NULL;
  ws->reply_len = ws->reply_cap = 0;
  ws->state = status == 0 ? ST_OPEN : ST_FAILED;
  if (status != 0 && ws->base.lower->ops->read_stop)
    ws->base.lower->ops->read_stop(ws->base.lower);
  if (cb)
    cb(&ws->base, status);
}

/* Checks a complete reply header (reply[0 .. len), lines ending in LF or
 * CRLF). Returns 0 or an error, logging why. */
static int check_reply(ws_stream_t *ws, const char *r, size_t len) {
  int upgrade = 0, connection = 0, accept = 0, protocol = 0;
  size_t pos = 0, line_no = 0;
  while (pos < len) {
    const char *nl = memchr(r + pos, '\n', len - pos);
    size_t end = nl ? (size_t)(nl - r) : len;
    size_t next = nl ? end + 1 : len;
    if (end > pos && r[end - 1] == '\r')
      end--;
    const char *line = r + pos;
    size_t llen = end - pos;
    pos = next;
    if (line_no++ == 0)
      continue; /* the status line was checked already */
    if (llen == 0)
      break; /* end of the header */
    if (uvmqtt__http_is_ows(line[0])) {
      ws_log(ws, UVMQTT_LOG_ERROR,
             "ws: folded header line in the upgrade reply");
      return UVMQTT_EWS_UPGRADE;
    }
    const char *colon = memchr(line, ':', llen);
    if (!colon || colon == line) {
      ws_log(ws, UVMQTT_LOG_ERROR, "ws: malformed header line in the reply");
      return UVMQTT_EWS_UPGRADE;
    }
    size_t nlen = (size_t)(colon - line);
    const char *v = colon + 1;
    size_t vlen = llen - nlen - 1;
    while (vlen && uvmqtt__http_is_ows(*v))
      v++, vlen--;
    while (vlen && uvmqtt__http_is_ows(v[vlen - 1]))
      vlen--;
    if (uvmqtt__http_ci_equal(line, nlen, "upgrade")) {
      if (list_has_token(v, vlen, "websocket"))
        upgrade = 1;
    } else if (uvmqtt__http_ci_equal(line, nlen, "connection")) {
      if (list_has_token(v, vlen, "upgrade"))
        connection = 1;
    } else if (uvmqtt__http_ci_equal(line, nlen, "sec-websocket-accept")) {
      if (vlen != 28 || memcmp(v, ws->accept, 28) != 0) {
        ws_log(ws, UVMQTT_LOG_ERROR,
               "ws: Sec-WebSocket-Accept is \"%.*s\", expected \"%s\"",
               (int)(vlen > 64 ? 64 : vlen), v, ws->accept);
        return UVMQTT_EWS_ACCEPT;
      }
      accept = 1;
    } else if (uvmqtt__http_ci_equal(line, nlen, "sec-websocket-protocol")) {
      if (!uvmqtt__http_ci_equal(v, vlen, ws->protocol)) {
        ws_log(ws, UVMQTT_LOG_ERROR,
               "ws: server chose subprotocol \"%.*s\", asked for \"%s\"",
               (int)(vlen > 64 ? 64 : vlen), v, ws->protocol);
        return UVMQTT_EWS_PROTOCOL;
      }
      protocol = 1;
    } else if (uvmqtt__http_ci_equal(line, nlen, "sec-websocket-extensions")) {
      if (vlen > 0) {
        /* We asked for none (RFC 6455 section 4.1, point 5). */
        ws_log(ws, UVMQTT_LOG_ERROR,
               "ws: server enabled extensions we did not "
               "ask for");
        return UVMQTT_EWS_UPGRADE;
      }
    }
  }
  if (!upgrade || !connection) {
    ws_log(ws, UVMQTT_LOG_ERROR, "ws: reply lacks %s",
           !upgrade ? "\"Upgrade: websocket\"" : "\"Connection: Upgrade\"");
    return UVMQTT_EWS_UPGRADE;
  }
  if (!accept) {
    ws_log(ws, UVMQTT_LOG_ERROR, "ws: reply lacks Sec-WebSocket-Accept");
    return UVMQTT_EWS_ACCEPT;
  }
  if (!protocol) {
    ws_log(ws, UVMQTT_LOG_ERROR, "ws: server did not accept subprotocol \"%s\"",
           ws->protocol);
    return UVMQTT_EWS_PROTOCOL;
  }
  return 0;
}

/* Collects reply bytes; once the header is complete, checks it and hands
 * what follows to the frame parser. */
static void handshake_read(ws_stream_t *ws, const uint8_t *p, size_t n) {
  size_t i = 0;
  int complete = 0;
  /* Find the end of the header: an empty line (LF or CRLF endings).
   * eoh: 0 in a line, 1 after LF, 2 after LF CR. */
  for (; i < n && !complete; i++) {
    uint8_t c = p[i];
    if (c == '\n')
      complete = ws->eoh != 0;
    if (!complete)
      ws->eoh = c == '\n' ? 1 : (c == '\r' && ws->eoh == 1) ? 2 : 0;
  }
  if (ws->reply_len + i > ws->max_reply) {
    ws_log(ws, UVMQTT_LOG_ERROR, "ws: upgrade reply longer than %zu bytes",
           ws->max_reply);
    open_done(ws, UVMQTT_EWS_TOOBIG);
    return;
  }
  if (ws->reply_len + i > ws->reply_cap) {
    size_t cap = ws->reply_cap ? ws->reply_cap : 512;
    while (cap < ws->reply_len + i)
      cap *= 2;
    if (cap > ws->max_reply)
      cap = ws->max_reply;
    char *nr = uvmqtt__realloc(ws->reply, cap);
    if (!nr) {
      open_done(ws, UVMQTT_ENOMEM);
      return;
    }
    ws->reply = nr;
    ws->reply_cap = cap;
  }
  memcpy(ws->reply + ws->reply_len, p, i);
  ws->reply_len += i;

  /* Refuse as soon as the status line says so. */
  const char *nl = memchr(ws->reply, '\n', ws->reply_len);
  if (!nl)
    return;
  size_t l1 = (size_t)(nl - ws->reply);
  if (l1 > 0 && ws->reply[l1 - 1] == '\r')
    l1--;
  int status = uvmqtt__http_status_line(ws->reply, l1);
  if (status < 0) {
    ws_log(ws, UVMQTT_LOG_ERROR, "ws: malformed status line \"%.*s\"",
           (int)(l1 > 80 ? 80 : l1), ws->reply);
    open_done(ws, UVMQTT_EWS_UPGRADE);
    return;
  }
  if (status != 101) {
    ws->http_status = status;
    ws_log(ws, UVMQTT_LOG_ERROR, "ws: upgrade refused: \"%.*s\"",
           (int)(l1 > 80 ? 80 : l1), ws->reply);
    open_done(ws, UVMQTT_EWS_STATUS);
    return;
  }
  if (!complete)
    return;
  int rc = check_reply(ws, ws->reply, ws->reply_len);
  open_done(ws, rc);
  if (rc != 0 || ws->closing)
    return;
  /* Bytes after the header in the same read are frame data. */
  if (i < n && deliver(ws, p + i, n - i) != 0)
    end_read(ws, UVMQTT_ENOMEM);
}

static void on_lower_read(uvmqtt_stream_t *lower, ssize_t nread,
                          const uint8_t *buf) {
  ws_stream_t *ws = lower->data;
  if (ws->closing)
    return;
  if (ws->state == ST_HANDSHAKE || ws->state == ST_NEW) {
    if (nread < 0) {
      ws_log(ws, UVMQTT_LOG_ERROR,
             "ws: connection ended during the upgrade: %s",
             uvmqtt_strerror((int)nread));
      open_done(ws, (int)nread);
      return;
    }
    if (ws->state == ST_NEW) {
      ws_log(ws, UVMQTT_LOG_ERROR, "ws: server spoke before the request");
      open_done(ws, UVMQTT_EWS_UPGRADE);
      return;
    }
    handshake_read(ws, buf, (size_t)nread);
    return;
  }
  if (ws->state != ST_OPEN || ws->read_ended)
    return;
  if (nread < 0) {
    if (ws->in_payload || ws->hdr_len > 0) {
      ws_log(ws, UVMQTT_LOG_WARN, "ws: connection ended inside a frame");
      end_read(ws, nread == UV_EOF ? UVMQTT_EWS_FRAME : (int)nread);
    } else {
      end_read(ws, (int)nread);
    }
    return;
  }
  if (ws->pending) {
    /* Keep the order: saved bytes go first. */
    size_t keep = ws->pending_len - ws->pending_off;
    uint8_t *nb = uvmqtt__malloc(keep + (size_t)nread);
    if (!nb) {
      end_read(ws, UVMQTT_ENOMEM);
      return;
    }
    memcpy(nb, ws->pending + ws->pending_off, keep);
    memcpy(nb + keep, buf, (size_t)nread);
    uvmqtt__free(ws->pending);
    ws->pending = nb;
    ws->pending_len = keep + (size_t)nread;
    ws->pending_off = 0;
    drain_pending(ws);
    return;
  }
  int rc = deliver(ws, buf, (size_t)nread);
  if (rc != 0)
    end_read(ws, rc);
}

static void on_lower_log(uvmqtt_stream_t *lower, int level, const char *msg) {
  ws_stream_t *ws = lower->data;
  if (ws->base.log_cb)
    ws->base.log_cb(&ws->base, level, msg);
}

static void on_request_written(uvmqtt_stream_t *lower, int status, void *arg) {
  ws_stream_t *ws = arg;
  (void)lower;
  uvmqtt__free(ws->request);
  ws->request = NULL;
  if (status != 0 && !ws->closing && ws->state == ST_HANDSHAKE) {
    ws_log(ws, UVMQTT_LOG_ERROR, "ws: could not send the upgrade request: %s",
           uvmqtt_strerror(status));
    open_done(ws, status);
  }
}

static void on_timer(uv_timer_t *t) {
  ws_stream_t *ws = t->data;
  if (ws->closing)
    return;
  if (ws->deferred_open_err) {
    int err = ws->deferred_open_err;
    ws->deferred_open_err = 0;
    open_done(ws, err);
    return;
  }
  if (ws->state == ST_OPEN && ws->reading) {
    drain_pending(ws);
    if (!ws->pending && ws->reading && !ws->closing && !ws->read_ended &&
        ws->base.lower->ops->read_start)
      ws->base.lower->ops->read_start(ws->base.lower);
  }
}

static int ws_open(uvmqtt_stream_t *s, uvmqtt_stream_open_cb cb) {
  ws_stream_t *ws = (ws_stream_t *)s;
  if (!cb)
    return UVMQTT_EINVAL;
  if (ws->state != ST_NEW || ws->closing)
    return UVMQTT_ESTATE;
  ws->open_cb = cb;
  ws->state = ST_HANDSHAKE;
  uv_buf_t b = uv_buf_init(ws->request, (unsigned)ws->request_len);
  int rc = uvmqtt__stream_write(s->lower, &b, 1, on_request_written, ws);
  if (rc == 0 && s->lower->ops->read_start)
    rc = s->lower->ops->read_start(s->lower);
  if (rc != 0) {
    /* open_cb must not fire from inside open(): defer the error. */
    ws_log(ws, UVMQTT_LOG_ERROR, "ws: could not send the upgrade request: %s",
           uvmqtt_strerror(rc));
    ws->deferred_open_err = rc;
    uv_timer_start(&ws->timer, on_timer, 0, 0);
  }
  return 0;
}

/* ---- reading control, shutdown, close ------------------------------------ */

static int ws_read_start(uvmqtt_stream_t *s) {
  ws_stream_t *ws = (ws_stream_t *)s;
  if (ws->closing || ws->read_ended || ws->state != ST_OPEN)
    return UVMQTT_ESTATE;
  if (ws->reading)
    return 0;
  ws->reading = 1;
  if (ws->pending) {
    /* Deliver the saved bytes from the loop, not from inside this call. */
    return uv_timer_start(&ws->timer, on_timer, 0, 0);
  }
  return s->lower->ops->read_start ? s->lower->ops->read_start(s->lower) : 0;
}

static int ws_read_stop(uvmqtt_stream_t *s) {
  ws_stream_t *ws = (ws_stream_t *)s;
  if (!ws->reading)
    return 0;
  ws->reading = 0;
  if (ws->state == ST_OPEN)
    uv_timer_stop(&ws->timer); /* no pending delivery while stopped */
  return s->lower->ops->read_stop ? s->lower->ops->read_stop(s->lower) : 0;
}

static void ws_shutdown(uvmqtt_stream_t *s) {
  ws_stream_t *ws = (ws_stream_t *)s;
  if (ws->closing)
    return;
  send_close(ws, CLOSE_NORMAL);
  if (s->lower->ops->shutdown)
    s->lower->ops->shutdown(s->lower);
}

static void close_step(ws_stream_t *ws) {
  if (--ws->handles_open > 0)
    return;
  uvmqtt_stream_close_cb cb = ws->close_cb;
  if (cb)
    cb(&ws->base);
  uvmqtt__free(ws->request);
  uvmqtt__free(ws->protocol);
  uvmqtt__free(ws->reply);
  uvmqtt__free(ws->pending);
  uvmqtt__free(ws);
}

static void on_timer_closed(uv_handle_t *h) {
  close_step(h->data);
}

static void on_lower_closed(uvmqtt_stream_t *lower) {
  close_step(lower->data);
}

static void ws_close(uvmqtt_stream_t *s, uvmqtt_stream_close_cb cb) {
  ws_stream_t *ws = (ws_stream_t *)s;
  if (ws->closing)
    return;
  ws->closing = 1;
  ws->close_cb = cb;
  ws->open_cb = NULL; /* close() before open_cb cancels it */
  ws->handles_open = 2;
  uv_close((uv_handle_t *)&ws->timer, on_timer_closed);
  uvmqtt__stream_close(s->lower, on_lower_closed);
}

static const uvmqtt_stream_ops_t ws_ops = {
    .name = "ws",
    .open = ws_open,
    .write = ws_write,
    .read_start = ws_read_start,
    .read_stop = ws_read_stop,
    .shutdown = ws_shutdown,
    .close = ws_close,
    .hint = uvmqtt__stream_forward_hint,
};

/* ---- creation ------------------------------------------------------------ */

static int build_request(ws_stream_t *ws, const uvmqtt_ws_opts_t *o,
                         const char *key) {
  const char *path = o->path && *o->path ? o->path : WS_DEFAULT_PATH;
  size_t extra = 0;
  for (size_t i = 0; i < o->header_count; i++)
    extra += strlen(o->headers[i]) + 2;
  size_t cap =
      256 + strlen(path) + strlen(o->host) + strlen(ws->protocol) + extra;
  char *r = uvmqtt__malloc(cap);
  if (!r)
    return UVMQTT_ENOMEM;
  int n = snprintf(r, cap,
                   "GET %s HTTP/1.1\r\n"
                   "Host: %s\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Protocol: %s\r\n",
                   path, o->host, key, ws->protocol);
  size_t len = (size_t)n;
  for (size_t i = 0; i < o->header_count; i++) {
    size_t hl = strlen(o->headers[i]);
    memcpy(r + len, o->headers[i], hl);
    memcpy(r + len + hl, "\r\n", 2);
    len += hl + 2;
  }
  memcpy(r + len, "\r\n", 2);
  len += 2;
  ws->request = r;
  ws->request_len = len;
  return 0;
}

static int valid_opts(const uvmqtt_ws_opts_t *o) {
  if (!o->host || !*o->host || has_ctl(o->host))
    return 0;
  if (o->path && *o->path &&
      (o->path[0] != '/' || has_ctl(o->path) || strchr(o->path, ' ') != NULL))
    return 0;
  if (o->protocol && (!*o->protocol || has_ctl(o->protocol)))
    return 0;
  if (o->header_count && !o->headers)
    return 0;
  for (size_t i = 0; i < o->header_count; i++) {
    const char *h = o->headers[i];
    if (!h || has_ctl(h) || !strchr(h, ':') || h[0] == ':' ||
        uvmqtt__http_is_ows(h[0]))
      return 0;
  }
  return 1;
}

int uvmqtt__ws_new(uvmqtt_stream_t *lower, const uvmqtt_ws_opts_t *opts,
                   uvmqtt_stream_t **out) {
  if (!lower || !opts || !out || !valid_opts(opts))
    return UVMQTT_EINVAL;
  ws_stream_t *ws = uvmqtt__calloc(1, sizeof(*ws));
  if (!ws)
    return UVMQTT_ENOMEM;
  ws->protocol =
      uvmqtt__strdup(opts->protocol ? opts->protocol : WS_DEFAULT_PROTOCOL);
  if (!ws->protocol) {
    uvmqtt__free(ws);
    return UVMQTT_ENOMEM;
  }
  /* Sec-WebSocket-Key: 16 random bytes, base64 (RFC 6455 section 4.1). */
  uint8_t nonce[16];
  char key[25];
  size_t klen = 0;
  int rc = uv_random(NULL, NULL, nonce, sizeof(nonce), 0, NULL);
  if (rc == 0 && (mbedtls_base64_encode((unsigned char *)key, sizeof(key),
                                        &klen, nonce, sizeof(nonce)) != 0 ||
                  klen != 24))
    rc = UVMQTT_EWS;
  if (rc == 0)
    rc = compute_accept(key, ws->accept);
  if (rc == 0)
    rc = build_request(ws, opts, key);
  if (rc == 0)
    rc = uv_timer_init(uvmqtt__stream_loop(lower), &ws->timer);
  if (rc != 0) {
    uvmqtt__free(ws->request);
    uvmqtt__free(ws->protocol);
    uvmqtt__free(ws);
    return rc;
  }
  ws->timer.data = ws;
  ws->base.ops = &ws_ops;
  ws->base.lower = lower;
  ws->state = ST_NEW;
  ws->reading = 1;
  ws->hdr_need = 2;
  ws->max_reply =
      opts->max_reply_size ? opts->max_reply_size : WS_DEFAULT_MAX_REPLY;
  ws->max_frame =
      opts->max_frame_size ? opts->max_frame_size : WS_DEFAULT_MAX_FRAME;
  lower->data = ws;
  lower->read_cb = on_lower_read;
  lower->log_cb = on_lower_log;
  *out = &ws->base;
  return 0;
}

int uvmqtt__ws_http_status(uvmqtt_stream_t *s) {
  if (!s || s->ops != &ws_ops)
    return 0;
  return ((ws_stream_t *)s)->http_status;
}
