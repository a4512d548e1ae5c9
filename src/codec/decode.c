/* Decoding one complete packet held contiguously in memory. Every read is
 * bounded by the packet's own end; every failure names its byte offset. */
#include "codec/codec_int.h"
#include "codec/filter.h"

#define FAIL(r_, off_, code_)                                                  \
  do {                                                                         \
    (r_)->err_off = (off_);                                                    \
    return (code_);                                                            \
  } while (0)

#define TRY(expr)                                                              \
  do {                                                                         \
    int rc_ = (expr);                                                          \
    if (rc_)                                                                   \
      return rc_;                                                              \
  } while (0)

static inline bool valid_version(uint8_t v) {
  return v == UVMQTT_V31 || v == UVMQTT_V311 || v == UVMQTT_V5;
}

int uvmqtt__codec_check_first_byte(uint8_t b0, uint8_t version,
                                   uvmqtt_role_t role) {
  unsigned type = b0 >> 4, flags = b0 & 0x0F;
  if (type == 0)
    return UVMQTT_ETYPE;
  if (role == UVMQTT_ROLE_CLIENT) {
    if (type == UVMQTT_CONNECT || type == UVMQTT_SUBSCRIBE ||
        type == UVMQTT_UNSUBSCRIBE || type == UVMQTT_PINGREQ)
      return UVMQTT_ETYPE;
  } else {
    if (type == UVMQTT_CONNACK || type == UVMQTT_SUBACK ||
        type == UVMQTT_UNSUBACK || type == UVMQTT_PINGRESP)
      return UVMQTT_ETYPE;
  }
  /* CONNECT carries its own version; anything else needs a known one. */
  if (type != UVMQTT_CONNECT && !valid_version(version))
    return UVMQTT_EVERSION;
  if (type == UVMQTT_AUTH && version != UVMQTT_V5)
    return UVMQTT_ETYPE;
  switch (type) {
  case UVMQTT_PUBLISH:
    if ((flags & 6) == 6)
      return UVMQTT_EQOS;
    /* [MQTT-3.3.1-2]: DUP MUST be 0 for QoS 0. Rejected: a peer that sets
     * it is broken, and accepting it would hide the fact. */
    if ((flags & 0x0E) == 0x08)
      return UVMQTT_EFLAGS;
    return 0;
  case UVMQTT_PUBREL:
  case UVMQTT_SUBSCRIBE:
  case UVMQTT_UNSUBSCRIBE:
    /* 3.1 sent these with QoS 1 and allowed DUP on a retry. */
    if (flags == 2 || (version == UVMQTT_V31 && flags == 0x0A))
      return 0;
    return UVMQTT_EFLAGS;
  default:
    return flags ? UVMQTT_EFLAGS : 0;
  }
}

static int rd_u8(uvmqtt__codec_rd_t *r, uint8_t *v) {
  if (r->pos >= r->end)
    FAIL(r, r->pos, UVMQTT_ETRUNC);
  *v = r->b[r->pos++];
  return 0;
}

static int rd_u16(uvmqtt__codec_rd_t *r, uint16_t *v) {
  if (r->end - r->pos < 2)
    FAIL(r, r->pos, UVMQTT_ETRUNC);
  *v = (uint16_t)((r->b[r->pos] << 8) | r->b[r->pos + 1]);
  r->pos += 2;
  return 0;
}

static int rd_packet_id(uvmqtt__codec_rd_t *r, uint16_t *v) {
  TRY(rd_u16(r, v));
  if (*v == 0)
    FAIL(r, r->pos - 2, UVMQTT_EPACKETID);
  return 0;
}

static int at_end(uvmqtt__codec_rd_t *r) {
  if (r->pos != r->end)
    FAIL(r, r->pos, UVMQTT_ETRAILING);
  return 0;
}

static bool in_set(uint8_t code, const uint8_t *set, size_t n) {
  return memchr(set, code, n) != NULL;
}

static const uint8_t rc_connack[] = {
    0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89,
    0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F};
static const uint8_t rc_puback[] = {0x00, 0x10, 0x80, 0x83, 0x87,
                                    0x90, 0x91, 0x97, 0x99};
static const uint8_t rc_pubrel[] = {0x00, 0x92};
static const uint8_t rc_suback[] = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87,
                                    0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
static const uint8_t rc_unsuback[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
static const uint8_t rc_disconnect[] = {
    0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D,
    0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99,
    0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};
static const uint8_t rc_auth[] = {0x00, 0x18, 0x19};

/* ---- per packet ---------------------------------------------------------- */

static int dec_connect(uvmqtt__codec_rd_t *r, uvmqtt_connect_t *c) {
  uvmqtt_str_t name;
  uint8_t level, flags;
  memset(c, 0, sizeof(*c));
  size_t name_off = r->pos;
  TRY(uvmqtt__codec_rd_str(r, &name));
  size_t level_off = r->pos;
  TRY(rd_u8(r, &level));
  if (level == UVMQTT_V31) {
    if (name.len != 6 || memcmp(name.data, "MQIsdp", 6) != 0)
      FAIL(r, name_off, UVMQTT_EVERSION);
  } else if (level == UVMQTT_V311 || level == UVMQTT_V5) {
    if (name.len != 4 || memcmp(name.data, "MQTT", 4) != 0)
      FAIL(r, name_off, UVMQTT_EVERSION);
  } else {
    FAIL(r, level_off, UVMQTT_EVERSION);
  }
  c->protocol_version = level;
  size_t flags_off = r->pos;
  TRY(rd_u8(r, &flags));
  TRY(rd_u16(r, &c->keep_alive));
  /* Flags: 7 user name, 6 password, 5 will retain, 4-3 will QoS, 2 will,
   * 1 clean start, 0 reserved (MUST be 0 [MQTT-3.1.2-3]). */
  if (flags & 0x01)
    FAIL(r, flags_off, UVMQTT_EMALFORMED);
  c->clean_start = (flags & 0x02) != 0;
  c->will = (flags & 0x04) != 0;
  c->will_qos = (flags >> 3) & 3;
  c->will_retain = (flags & 0x20) != 0;
  c->has_username = (flags & 0x80) != 0;
  c->has_password = (flags & 0x40) != 0;
  if (c->will_qos == 3)
    FAIL(r, flags_off, UVMQTT_EQOS);
  if (!c->will && (c->will_qos || c->will_retain))
    FAIL(r, flags_off, UVMQTT_EMALFORMED);
  if (level != UVMQTT_V5 && c->has_password && !c->has_username)
    FAIL(r, flags_off, UVMQTT_EMALFORMED); /* [MQTT-3.1.2-22] */
  if (level == UVMQTT_V5)
    TRY(uvmqtt__codec_props_decode(r, UVMQTT_CONNECT, true, &c->props));
  TRY(uvmqtt__codec_rd_str(r, &c->client_id));
  if (c->will) {
    if (level == UVMQTT_V5)
      TRY(uvmqtt__codec_props_decode(r, UVMQTT__WILL, true, &c->will_props));
    size_t topic_off = r->pos, bad;
    uvmqtt_bin_t wt;
    TRY(uvmqtt__codec_rd_bin(r, &wt));
    int rc = uvmqtt__codec_utf8_scan(wt.data, wt.len, true, &bad);
    if (rc)
      FAIL(r, topic_off + 2 + bad, rc);
    if (wt.len == 0)
      FAIL(r, topic_off, UVMQTT_ETOPIC);
    c->will_topic.data = (const char *)wt.data;
    c->will_topic.len = wt.len;
    TRY(uvmqtt__codec_rd_bin(r, &c->will_payload));
  }
  if (c->has_username)
    TRY(uvmqtt__codec_rd_str(r, &c->username));
  if (c->has_password)
    TRY(uvmqtt__codec_rd_bin(r, &c->password));
  return at_end(r);
}

static int dec_connack(uvmqtt__codec_rd_t *r, uint8_t version,
                       uvmqtt_connack_t *c) {
  uint8_t flags;
  memset(c, 0, sizeof(*c));
  size_t flags_off = r->pos;
  TRY(rd_u8(r, &flags));
  /* 3.1 leaves the first byte unused; later versions reserve bits 7-1. */
  if (version != UVMQTT_V31) {
    if (flags & 0xFE)
      FAIL(r, flags_off, UVMQTT_EMALFORMED);
    c->session_present = flags & 1;
  }
  size_t rc_off = r->pos;
  TRY(rd_u8(r, &c->reason_code));
  if (version == UVMQTT_V5) {
    if (!in_set(c->reason_code, rc_connack, sizeof(rc_connack)))
      FAIL(r, rc_off, UVMQTT_EREASON);
    TRY(uvmqtt__codec_props_decode(r, UVMQTT_CONNACK, false, &c->props));
  } else if (c->reason_code > 5) {
    FAIL(r, rc_off, UVMQTT_EREASON);
  }
  return at_end(r);
}

static int dec_publish(uvmqtt__codec_rd_t *r, uint8_t flags, uint8_t version,
                       uvmqtt_role_t role, uvmqtt_publish_t *p) {
  p->dup = (flags & 8) != 0;
  p->qos = (flags >> 1) & 3;
  p->retain = flags & 1;
  if (r->end - r->pos < 2)
    FAIL(r, r->pos, UVMQTT_ETRUNC);
  size_t topic_off = r->pos;
  size_t tlen = ((size_t)r->b[r->pos] << 8) | r->b[r->pos + 1];
  if (r->end - r->pos - 2 < tlen)
    FAIL(r, topic_off, UVMQTT_ETRUNC);
  const uint8_t *t = r->b + r->pos + 2;
  size_t bad;
  int rc = uvmqtt__codec_utf8_scan(t, tlen, true, &bad);
  if (UVMQTT__UNLIKELY(rc))
    FAIL(r, topic_off + 2 + bad, rc);
  p->topic.data = (const char *)t;
  p->topic.len = tlen;
  r->pos += 2 + tlen;
  if (p->qos) {
    TRY(rd_packet_id(r, &p->packet_id));
  } else {
    p->packet_id = 0;
  }
  if (version == UVMQTT_V5) {
    TRY(uvmqtt__codec_props_decode(r, UVMQTT_PUBLISH,
                                   role == UVMQTT_ROLE_SERVER, &p->props));
    /* An empty topic needs a topic alias [MQTT-3.3.2-8]. */
    if (tlen == 0 &&
        !(p->props.present & UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS)))
      FAIL(r, topic_off, UVMQTT_ETOPIC);
  } else {
    uvmqtt__codec_props_clear(&p->props);
    if (tlen == 0)
      FAIL(r, topic_off, UVMQTT_ETOPIC);
  }
  p->payload.data = r->b + r->pos;
  p->payload.len = r->end - r->pos;
  r->pos = r->end;
  return 0;
}

static int dec_ack(uvmqtt__codec_rd_t *r, uint8_t type, uint8_t version,
                   uvmqtt_ack_t *a) {
  memset(a, 0, sizeof(*a));
  TRY(rd_packet_id(r, &a->packet_id));
  if (version == UVMQTT_V5 && r->pos < r->end) {
    size_t rc_off = r->pos;
    TRY(rd_u8(r, &a->reason_code));
    bool ok = (type == UVMQTT_PUBACK || type == UVMQTT_PUBREC)
                  ? in_set(a->reason_code, rc_puback, sizeof(rc_puback))
                  : in_set(a->reason_code, rc_pubrel, sizeof(rc_pubrel));
    if (!ok)
      FAIL(r, rc_off, UVMQTT_EREASON);
    if (r->pos < r->end)
      TRY(uvmqtt__codec_props_decode(r, type, false, &a->props));
  }
  return at_end(r);
}

static int dec_subscribe(uvmqtt__codec_rd_t *r, uint8_t version,
                         uvmqtt_subscribe_t *s) {
  memset(s, 0, sizeof(*s));
  TRY(rd_packet_id(r, &s->packet_id));
  if (version == UVMQTT_V5)
    TRY(uvmqtt__codec_props_decode(r, UVMQTT_SUBSCRIBE, true, &s->props));
  s->raw = r->b + r->pos;
  s->raw_len = r->end - r->pos;
  if (r->pos == r->end) /* at least one filter [MQTT-3.8.3-3] */
    FAIL(r, r->pos, UVMQTT_EMALFORMED);
  while (r->pos < r->end) {
    uvmqtt_str_t f;
    uint8_t opt;
    size_t f_off = r->pos, bad;
    TRY(uvmqtt__codec_rd_str(r, &f));
    if (uvmqtt__filter_syntax(f.data, f.len, NULL, &bad))
      FAIL(r, f.len ? f_off + 2 + bad : f_off, UVMQTT_EFILTER);
    size_t opt_off = r->pos;
    TRY(rd_u8(r, &opt));
    if ((opt & 3) == 3)
      FAIL(r, opt_off, UVMQTT_EQOS);
    if (version == UVMQTT_V5) {
      /* Bits 7-6 reserved, Retain Handling 3 is malformed. */
      if ((opt & 0xC0) || ((opt >> 4) & 3) == 3)
        FAIL(r, opt_off, UVMQTT_EMALFORMED);
      /* No Local on a shared subscription [MQTT-3.8.3-4]. */
      if ((opt & UVMQTT_SUBOPT_NO_LOCAL) && f.len >= 7 &&
          memcmp(f.data, "$share/", 7) == 0)
        FAIL(r, opt_off, UVMQTT_EPROTOCOL);
    } else if (opt & 0xFC) {
      FAIL(r, opt_off, UVMQTT_EMALFORMED);
    }
    s->count++;
  }
  return 0;
}

static int dec_suback(uvmqtt__codec_rd_t *r, uint8_t type, uint8_t version,
                      uvmqtt_suback_t *s) {
  memset(s, 0, sizeof(*s));
  TRY(rd_packet_id(r, &s->packet_id));
  if (type == UVMQTT_UNSUBACK && version != UVMQTT_V5)
    return at_end(r);
  if (version == UVMQTT_V5)
    TRY(uvmqtt__codec_props_decode(r, type, false, &s->props));
  if (r->pos == r->end) /* one code per filter, and there was at least one */
    FAIL(r, r->pos, UVMQTT_EMALFORMED);
  s->codes = r->b + r->pos;
  s->count = r->end - r->pos;
  for (size_t i = 0; i < s->count; i++) {
    uint8_t c = s->codes[i];
    bool ok;
    if (type == UVMQTT_UNSUBACK)
      ok = in_set(c, rc_unsuback, sizeof(rc_unsuback));
    else if (version == UVMQTT_V5)
      ok = in_set(c, rc_suback, sizeof(rc_suback));
    else /* 3.1.1: 0, 1, 2 or 0x80; 3.1 brokers send the same set */
      ok = c <= 2 || c == 0x80;
    if (!ok)
      FAIL(r, r->pos + i, UVMQTT_EREASON);
  }
  r->pos = r->end;
  return 0;
}

static int dec_unsubscribe(uvmqtt__codec_rd_t *r, uint8_t version,
                           uvmqtt_unsubscribe_t *u) {
  memset(u, 0, sizeof(*u));
  TRY(rd_packet_id(r, &u->packet_id));
  if (version == UVMQTT_V5)
    TRY(uvmqtt__codec_props_decode(r, UVMQTT_UNSUBSCRIBE, true, &u->props));
  u->raw = r->b + r->pos;
  u->raw_len = r->end - r->pos;
  if (r->pos == r->end) /* at least one filter [MQTT-3.10.3-2] */
    FAIL(r, r->pos, UVMQTT_EMALFORMED);
  while (r->pos < r->end) {
    uvmqtt_str_t f;
    size_t f_off = r->pos, bad;
    TRY(uvmqtt__codec_rd_str(r, &f));
    if (uvmqtt__filter_syntax(f.data, f.len, NULL, &bad))
      FAIL(r, f.len ? f_off + 2 + bad : f_off, UVMQTT_EFILTER);
    u->count++;
  }
  return 0;
}

/* DISCONNECT and AUTH: v5 may omit reason and properties. */
static int dec_reason(uvmqtt__codec_rd_t *r, uint8_t type, uint8_t version,
                      uvmqtt_role_t role, uvmqtt_reason_t *d) {
  memset(d, 0, sizeof(*d));
  if (version != UVMQTT_V5)
    return at_end(r);
  if (r->pos == r->end)
    return 0;
  size_t rc_off = r->pos;
  TRY(rd_u8(r, &d->reason_code));
  bool ok = type == UVMQTT_AUTH
                ? in_set(d->reason_code, rc_auth, sizeof(rc_auth))
                : in_set(d->reason_code, rc_disconnect, sizeof(rc_disconnect));
  /* 0x04 (with will) is client-to-server only. */
  if (type == UVMQTT_DISCONNECT && d->reason_code == 0x04 &&
      role == UVMQTT_ROLE_CLIENT)
    ok = false;
  if (!ok)
    FAIL(r, rc_off, UVMQTT_EREASON);
  if (r->pos < r->end)
    TRY(uvmqtt__codec_props_decode(r, type, role == UVMQTT_ROLE_SERVER,
                                   &d->props));
  return at_end(r);
}

int uvmqtt__codec_decode_body(const uint8_t *buf, size_t len, size_t body,
                              uint8_t version, uvmqtt_role_t role,
                              uvmqtt_packet_t *out, size_t *err_off) {
  uvmqtt__codec_rd_t r = {buf, body, len, 0};
  uint8_t type = buf[0] >> 4, flags = buf[0] & 0x0F;
  int rc;
  out->type = type;
  out->flags = flags;
  switch (type) {
  case UVMQTT_PUBLISH:
    rc = dec_publish(&r, flags, version, role, &out->u.publish);
    break;
  case UVMQTT_PUBACK:
  case UVMQTT_PUBREC:
  case UVMQTT_PUBREL:
  case UVMQTT_PUBCOMP:
    rc = dec_ack(&r, type, version, &out->u.ack);
    break;
  case UVMQTT_CONNECT:
    rc = dec_connect(&r, &out->u.connect);
    break;
  case UVMQTT_CONNACK:
    rc = dec_connack(&r, version, &out->u.connack);
    break;
  case UVMQTT_SUBSCRIBE:
    rc = dec_subscribe(&r, version, &out->u.subscribe);
    break;
  case UVMQTT_SUBACK:
  case UVMQTT_UNSUBACK:
    rc = dec_suback(&r, type, version, &out->u.suback);
    break;
  case UVMQTT_UNSUBSCRIBE:
    rc = dec_unsubscribe(&r, version, &out->u.unsubscribe);
    break;
  case UVMQTT_PINGREQ:
  case UVMQTT_PINGRESP:
    rc = at_end(&r);
    break;
  case UVMQTT_DISCONNECT:
    rc = dec_reason(&r, type, version, role, &out->u.disconnect);
    break;
  case UVMQTT_AUTH:
    rc = dec_reason(&r, type, version, role, &out->u.auth);
    break;
  default:
    r.err_off = 0;
    rc = UVMQTT_ETYPE;
    break;
  }
  if (rc && err_off)
    *err_off = r.err_off;
  return rc;
}

/* Parses the fixed header of buf[0 .. len): *hlen its size, *rem the
 * remaining length. Returns 0, UVMQTT_ETRUNC (header incomplete) or
 * UVMQTT_EREMLEN with *err_off. */
static int fixed_header(const uint8_t *buf, size_t len, size_t *hlen,
                        uint32_t *rem, size_t *err_off) {
  uint32_t v = 0;
  for (size_t i = 1; i <= 4; i++) {
    if (i >= len) {
      *err_off = len;
      return UVMQTT_ETRUNC;
    }
    uint8_t d = buf[i];
    v |= (uint32_t)(d & 0x7F) << (7 * (i - 1));
    if (!(d & 0x80)) {
      if (d == 0 && i > 1) {
        *err_off = i;
        return UVMQTT_EREMLEN;
      }
      *hlen = i + 1;
      *rem = v;
      return 0;
    }
  }
  *err_off = 4;
  return UVMQTT_EREMLEN;
}

int uvmqtt_decode(const uint8_t *buf, size_t len, uint8_t version,
                  uvmqtt_role_t role, uvmqtt_packet_t *out, size_t *err_off) {
  size_t off = 0, hlen;
  uint32_t rem;
  int rc;
  if (buf == NULL || out == NULL || len == 0) {
    rc = UVMQTT_ETRUNC;
    goto fail;
  }
  rc = uvmqtt__codec_check_first_byte(buf[0], version, role);
  if (rc)
    goto fail;
  rc = fixed_header(buf, len, &hlen, &rem, &off);
  if (rc)
    goto fail;
  if (len - hlen < rem) {
    off = len;
    rc = UVMQTT_ETRUNC;
    goto fail;
  }
  if (len - hlen > rem) {
    off = hlen + rem;
    rc = UVMQTT_ETRAILING;
    goto fail;
  }
  return uvmqtt__codec_decode_body(buf, len, hlen, version, role, out, err_off);
fail:
  if (err_off)
    *err_off = off;
  return rc;
}
