/* The incremental parser. A packet wholly inside the chunk is decoded in
 * place; the fixed header of a split packet is kept in the struct and the
 * rest is assembled in a buffer the caller lends (NEED_BUFFER protocol). */
#include "codec/codec_int.h"

enum {
  ST_HDR = 0, /* reading the fixed header (hdr_len bytes so far) */
  ST_NEED,    /* header known, waiting for uvmqtt_parser_set_buffer() */
  ST_BODY     /* copying the packet into buf */
};

void uvmqtt_parser_init(uvmqtt_parser_t *p, uint8_t version, uvmqtt_role_t role,
                        uint32_t max_packet_size) {
  memset(p, 0, sizeof(*p));
  p->version = version;
  p->role = (uint8_t)role;
  p->max_packet_size = max_packet_size;
}

bool uvmqtt_parser_in_packet(const uvmqtt_parser_t *p) {
  return p->state != ST_HDR || p->hdr_len > 0;
}

static int fail(uvmqtt_parser_t *p, int err, uint64_t off) {
  p->error = err;
  p->error_offset = off;
  return err;
}

/* Whole packet is `total` bytes; the protocol maximum is implied by the
 * 4-byte varint, `max_packet_size` may lower it. */
static inline bool too_big(const uvmqtt_parser_t *p, size_t total) {
  return p->max_packet_size != 0 && total > p->max_packet_size;
}

static int decode_whole(uvmqtt_parser_t *p, const uint8_t *pkt, size_t total,
                        size_t hlen, uint64_t start, uvmqtt_packet_t *out) {
  size_t off = 0;
  int rc = uvmqtt__codec_decode_body(pkt, total, hlen, p->version,
                                     (uvmqtt_role_t)p->role, out, &off);
  if (UVMQTT__UNLIKELY(rc))
    return fail(p, rc, start + off);
  return UVMQTT_PARSE_PACKET;
}

/* One more fixed-header byte into p->hdr. Returns 1 when the header is
 * complete (p->remaining set), 0 when more is needed, or an error. */
static int hdr_byte(uvmqtt_parser_t *p, uint8_t c) {
  uint64_t at = p->offset; /* offset of c */
  if (p->hdr_len == 0) {
    int rc =
        uvmqtt__codec_check_first_byte(c, p->version, (uvmqtt_role_t)p->role);
    if (rc)
      return fail(p, rc, at);
    p->hdr[p->hdr_len++] = c;
    p->remaining = 0;
    return 0;
  }
  p->remaining |= (uint32_t)(c & 0x7F) << (7 * (p->hdr_len - 1));
  p->hdr[p->hdr_len++] = c;
  if (c & 0x80) {
    if (p->hdr_len == 5) /* a fifth length byte would follow */
      return fail(p, UVMQTT_EREMLEN, at);
    return 0;
  }
  if (c == 0 && p->hdr_len > 2) /* not the minimal encoding */
    return fail(p, UVMQTT_EREMLEN, at);
  return 1;
}

int uvmqtt_parser_feed(uvmqtt_parser_t *p, const uint8_t *data, size_t len,
                       size_t *used, uvmqtt_packet_t *out) {
  size_t i = 0;
  int rc;
  *used = 0;
  if (UVMQTT__UNLIKELY(p->error))
    return p->error;
  /* The buffer of the last packet must be taken back first, or it would be
   * lost; this is not sticky. */
  if (UVMQTT__UNLIKELY(p->done_buf != NULL))
    return UVMQTT_ESTATE;

  if (p->state == ST_HDR) {
    /* Fast path: a packet starting at data[0] and wholly inside it. */
    if (p->hdr_len == 0 && len >= 2) {
      uint8_t b0 = data[0];
      rc = uvmqtt__codec_check_first_byte(b0, p->version,
                                          (uvmqtt_role_t)p->role);
      if (UVMQTT__UNLIKELY(rc))
        return fail(p, rc, p->offset);
      uint32_t rem = 0;
      size_t k = 1;
      for (;;) {
        if (k >= len || k > 4)
          break;
        uint8_t d = data[k];
        rem |= (uint32_t)(d & 0x7F) << (7 * (k - 1));
        k++;
        if (!(d & 0x80)) {
          if (UVMQTT__UNLIKELY(d == 0 && k > 2))
            return fail(p, UVMQTT_EREMLEN, p->offset + k - 1);
          size_t total = k + rem;
          if (UVMQTT__UNLIKELY(too_big(p, total)))
            return fail(p, UVMQTT_ETOOBIG, p->offset);
          if (total <= len) {
            uint64_t start = p->offset;
            *used = total;
            p->offset += total;
            return decode_whole(p, data, total, k, start, out);
          }
          break; /* split: take the slow path */
        }
        if (UVMQTT__UNLIKELY(k == 5))
          return fail(p, UVMQTT_EREMLEN, p->offset + 4);
      }
    }
    /* Slow path: the header byte by byte into the struct. */
    while (i < len) {
      rc = hdr_byte(p, data[i]);
      i++;
      p->offset++;
      if (rc < 0) {
        *used = i;
        return rc;
      }
      if (rc == 1)
        break;
    }
    *used = i;
    if (p->hdr_len < 2 || (p->hdr[p->hdr_len - 1] & 0x80))
      return UVMQTT_PARSE_MORE;
    size_t total = p->hdr_len + (size_t)p->remaining;
    if (too_big(p, total))
      return fail(p, UVMQTT_ETOOBIG, p->offset - p->hdr_len);
    if (p->remaining == 0) {
      size_t hlen = p->hdr_len;
      p->hdr_len = 0;
      return decode_whole(p, p->hdr, hlen, hlen, p->offset - hlen, out);
    }
    p->total = total;
    p->need = total;
    p->state = ST_NEED;
    return UVMQTT_PARSE_NEED_BUFFER;
  }

  if (p->state == ST_NEED)
    return UVMQTT_PARSE_NEED_BUFFER;

  /* ST_BODY */
  size_t want = p->total - p->buf_len;
  size_t n = len < want ? len : want;
  if (n)
    memcpy(p->buf + p->buf_len, data, n);
  p->buf_len += n;
  p->offset += n;
  *used = n;
  if (p->buf_len < p->total)
    return UVMQTT_PARSE_MORE;
  size_t total = p->total, hlen = p->hdr_len;
  p->done_buf = p->buf;
  p->buf = NULL;
  p->buf_cap = p->buf_len = p->total = p->need = 0;
  p->hdr_len = 0;
  p->state = ST_HDR;
  return decode_whole(p, p->done_buf, total, hlen, p->offset - total, out);
}

int uvmqtt_parser_set_buffer(uvmqtt_parser_t *p, uint8_t *buf, size_t cap) {
  if (p->error || p->state != ST_NEED || buf == NULL || cap < p->need)
    return UVMQTT_EINVAL;
  p->buf = buf;
  p->buf_cap = cap;
  memcpy(buf, p->hdr, p->hdr_len);
  p->buf_len = p->hdr_len;
  p->state = ST_BODY;
  return 0;
}

uint8_t *uvmqtt_parser_take_buffer(uvmqtt_parser_t *p) {
  uint8_t *b = p->done_buf;
  if (b != NULL) {
    p->done_buf = NULL;
    return b;
  }
  b = p->buf;
  if (b != NULL) {
    /* Taken while a packet is being assembled: what was copied is gone, so
     * the stream cannot continue. */
    p->buf = NULL;
    p->buf_cap = p->buf_len = 0;
    if (!p->error)
      fail(p, UVMQTT_ESTATE, p->offset);
  }
  return b;
}
