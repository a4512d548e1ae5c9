/* Internal helpers shared by the codec's translation units. Not installed.
 *
 * Every function here works on memory the caller bounds explicitly: a reader
 * never looks at b[end] or beyond, a writer never writes past the size the
 * encoder computed beforehand. */
#ifndef UVMQTT_CODEC_INT_H
#define UVMQTT_CODEC_INT_H

#include "uvmqtt/codec.h"

#include <string.h>

#if defined(__GNUC__)
#define UVMQTT__LIKELY(x) __builtin_expect(!!(x), 1)
#define UVMQTT__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define UVMQTT__LIKELY(x) (x)
#define UVMQTT__UNLIKELY(x) (x)
#endif

/* Pseudo packet type for the will properties inside CONNECT; bit 0 of a
 * property's `where` mask (packet type 0 is reserved, so it is free). */
#define UVMQTT__WILL 0

/* Highest property identifier known, plus one. */
#define UVMQTT__PROP_LIMIT 0x2B

/* A bounded reader over one packet. `pos` and `end` are offsets into `b`,
 * which starts at the packet's first byte, so offsets double as the error
 * offsets uvmqtt_decode() reports. */
typedef struct {
  const uint8_t *b;
  size_t pos;
  size_t end;
  size_t err_off;
} uvmqtt__codec_rd_t;

/* Decodes a property block (length varint + properties) at r->pos for
 * packet type `where` (UVMQTT__WILL for will properties). `server` tells
 * the decoding side (some properties are one-directional). Fills *props,
 * advances r->pos. Returns 0 or a negative error with r->err_off set. */
int uvmqtt__codec_props_decode(uvmqtt__codec_rd_t *r, int where, bool server,
                               uvmqtt_props_t *props);

/* Size of the encoded properties of `props` for packet type `where`, without
 * the length prefix, into *len. Returns 0, UVMQTT_EPROPBAD when a property is
 * not allowed there, or UVMQTT_ETOOBIG. */
int uvmqtt__codec_props_size(const uvmqtt_props_t *props, int where,
                             size_t *len);

/* Writes the properties whose size uvmqtt__codec_props_size() computed (without
 * the length prefix). Returns the pointer past the last byte written. */
uint8_t *uvmqtt__codec_props_write(const uvmqtt_props_t *props, uint8_t *out);

/* True when `props` carries nothing to encode. */
static inline bool uvmqtt__codec_props_empty(const uvmqtt_props_t *props) {
  return props->present == 0 && props->user_prop_count == 0 &&
         props->sub_id_count == 0;
}

/* uvmqtt_varint_size() for the hot paths (v <= the maximum). */
static inline size_t uvmqtt__codec_vsize(size_t v) {
  return v < 128u ? 1 : v < 16384u ? 2 : v < 2097152u ? 3 : 4;
}

/* Empties a property set without touching the value fields, which are
 * meaningful only when their `present` bit is set. */
static inline void uvmqtt__codec_props_clear(uvmqtt_props_t *p) {
  p->present = 0;
  p->user_props = NULL;
  p->user_prop_count = 0;
  p->sub_ids = NULL;
  p->sub_id_count = 0;
  p->raw = NULL;
  p->raw_len = 0;
}

/* Writes varint v (<= UVMQTT_MAX_REMAINING_LENGTH) and returns the pointer
 * past it. */
static inline uint8_t *uvmqtt__put_varint(uint8_t *o, uint32_t v) {
  do {
    uint8_t d = (uint8_t)(v & 0x7F);
    v >>= 7;
    if (v)
      d |= 0x80;
    *o++ = d;
  } while (v);
  return o;
}

static inline uint8_t *uvmqtt__put_u16(uint8_t *o, uint16_t v) {
  o[0] = (uint8_t)(v >> 8);
  o[1] = (uint8_t)v;
  return o + 2;
}

static inline uint8_t *uvmqtt__put_u32(uint8_t *o, uint32_t v) {
  o[0] = (uint8_t)(v >> 24);
  o[1] = (uint8_t)(v >> 16);
  o[2] = (uint8_t)(v >> 8);
  o[3] = (uint8_t)v;
  return o + 4;
}

/* A length-prefixed field; len <= 65535 is checked by the size pass. */
static inline uint8_t *uvmqtt__put_bytes(uint8_t *o, const void *d,
                                         size_t len) {
  o = uvmqtt__put_u16(o, (uint16_t)len);
  if (len)
    memcpy(o, d, len);
  return o + len;
}

/* Reads a variable-byte integer (1..4 bytes, minimal encoding) at r->pos.
 * Returns 0, UVMQTT_ETRUNC or UVMQTT_EMALFORMED (too long / not minimal). */
int uvmqtt__codec_rd_varint(uvmqtt__codec_rd_t *r, uint32_t *out);

/* Reads a length-prefixed UTF-8 string and validates it. */
int uvmqtt__codec_rd_str(uvmqtt__codec_rd_t *r, uvmqtt_str_t *out);

/* Reads length-prefixed binary data. */
int uvmqtt__codec_rd_bin(uvmqtt__codec_rd_t *r, uvmqtt_bin_t *out);

/* Checks the fixed header's first byte for `version` and `role`:
 * reserved type, type forbidden in this direction or version, wrong flags.
 * Returns 0 or UVMQTT_ETYPE, UVMQTT_EFLAGS, UVMQTT_EQOS, UVMQTT_EVERSION. */
int uvmqtt__codec_check_first_byte(uint8_t b0, uint8_t version,
                                   uvmqtt_role_t role);

/* Decodes the body of a packet whose fixed header has been validated.
 * buf[0 .. len) is the whole packet, `body` the offset of the variable
 * header. Returns 0 or an error with *err_off set. */
int uvmqtt__codec_decode_body(const uint8_t *buf, size_t len, size_t body,
                              uint8_t version, uvmqtt_role_t role,
                              uvmqtt_packet_t *out, size_t *err_off);

/* Topic/UTF-8 scan: UTF-8 validity plus, when `topic` is set, no '+' / '#'.
 * Returns 0, UVMQTT_EUTF8 or UVMQTT_EWILDCARD with *err_off relative to s. */
int uvmqtt__codec_utf8_scan(const uint8_t *s, size_t len, bool topic,
                            size_t *err_off);

#endif
