/* Encoding: a size pass that validates everything, then a write pass that
 * cannot fail. PUBLISH has its own short path because it is the hot one. */
#include "codec/codec_int.h"

static inline bool valid_version(uint8_t v) {
  return v == UVMQTT_V31 || v == UVMQTT_V311 || v == UVMQTT_V5;
}

/* What the size pass learnt and the write pass reuses. */
typedef struct {
  size_t rl;      /* remaining length */
  size_t plen;    /* property length (v5) */
  size_t wplen;   /* will property length (v5 CONNECT) */
  bool has_props; /* whether the optional v5 reason/properties are written */
  bool has_reason;
} plan_t;

static int add(size_t *rl, size_t n) {
  *rl += n;
  return *rl > UVMQTT_MAX_REMAINING_LENGTH ? UVMQTT_ETOOBIG : 0;
}

static int str_size(size_t len, const void *data, size_t *rl) {
  if (len > 65535)
    return UVMQTT_ETOOBIG;
  if (len > 0 && data == NULL)
    return UVMQTT_EINVAL;
  return add(rl, 2 + len);
}

/* Adds a v5 property block (length prefix included) to *rl. */
static int props_block(const uvmqtt_props_t *props, int where, size_t *plen,
                       size_t *rl) {
  *plen = 0;
  if (!uvmqtt__codec_props_empty(props)) {
    int rc = uvmqtt__codec_props_size(props, where, plen);
    if (rc)
      return rc;
  }
  return add(rl, (size_t)uvmqtt_varint_size((uint32_t)*plen) + *plen);
}

#define TRY(expr)                                                              \
  do {                                                                         \
    int rc_ = (expr);                                                          \
    if (rc_)                                                                   \
      return rc_;                                                              \
  } while (0)

/* ---- PUBLISH ------------------------------------------------------------- */

/* Validates a PUBLISH and computes its remaining length and the length of
 * everything before the payload. */
static inline int publish_plan(const uvmqtt_publish_t *p, uint8_t version,
                               plan_t *pl, size_t *head) {
  if (UVMQTT__UNLIKELY(p->qos > 2))
    return UVMQTT_EQOS;
  if (UVMQTT__UNLIKELY(p->dup && p->qos == 0))
    return UVMQTT_EFLAGS;
  if (UVMQTT__UNLIKELY(p->qos && p->packet_id == 0))
    return UVMQTT_EPACKETID;
  if (UVMQTT__UNLIKELY(p->topic.len > 65535))
    return UVMQTT_ETOOBIG;
  if (UVMQTT__UNLIKELY((p->topic.len && !p->topic.data) ||
                       (p->payload.len && !p->payload.data)))
    return UVMQTT_EINVAL;
  size_t vh = 2 + p->topic.len + (p->qos ? 2 : 0);
  pl->plen = 0;
  if (version == UVMQTT_V5) {
    if (!uvmqtt__codec_props_empty(&p->props)) {
      int rc = uvmqtt__codec_props_size(&p->props, UVMQTT_PUBLISH, &pl->plen);
      if (rc)
        return rc;
    }
    vh += uvmqtt__codec_vsize(pl->plen) + pl->plen;
  } else if (UVMQTT__UNLIKELY(!valid_version(version))) {
    return UVMQTT_EVERSION;
  }
  if (UVMQTT__UNLIKELY(p->payload.len > UVMQTT_MAX_REMAINING_LENGTH - vh ||
                       vh > UVMQTT_MAX_REMAINING_LENGTH))
    return UVMQTT_ETOOBIG;
  pl->rl = vh + p->payload.len;
  *head = 1 + uvmqtt__codec_vsize(pl->rl) + vh;
  return 0;
}

static inline uint8_t *publish_write_head(const uvmqtt_publish_t *p,
                                          uint8_t version, const plan_t *pl,
                                          uint8_t *o) {
  *o++ = (uint8_t)((UVMQTT_PUBLISH << 4) | (p->dup ? 8 : 0) | (p->qos << 1) |
                   (p->retain ? 1 : 0));
  o = uvmqtt__put_varint(o, (uint32_t)pl->rl);
  o = uvmqtt__put_u16(o, (uint16_t)p->topic.len);
  memcpy(o, p->topic.data, p->topic.len);
  o += p->topic.len;
  if (p->qos)
    o = uvmqtt__put_u16(o, p->packet_id);
  if (version == UVMQTT_V5) {
    o = uvmqtt__put_varint(o, (uint32_t)pl->plen);
    if (pl->plen)
      o = uvmqtt__codec_props_write(&p->props, o);
  }
  return o;
}

int uvmqtt_encode_publish_head(const uvmqtt_packet_t *pkt, uint8_t version,
                               uint8_t *buf, size_t cap, size_t *total) {
  plan_t pl;
  size_t head;
  if (pkt == NULL || pkt->type != UVMQTT_PUBLISH)
    return UVMQTT_EINVAL;
  TRY(publish_plan(&pkt->u.publish, version, &pl, &head));
  if (total)
    *total = head + pkt->u.publish.payload.len;
  if (cap < head)
    return UVMQTT_ENOBUFS;
  publish_write_head(&pkt->u.publish, version, &pl, buf);
  return (int)head;
}

/* ---- the rest ------------------------------------------------------------ */

static int plan_packet(const uvmqtt_packet_t *pkt, uint8_t version,
                       plan_t *pl) {
  size_t rl = 0;
  memset(pl, 0, sizeof(*pl));
  if (!valid_version(version))
    return UVMQTT_EVERSION;
  bool v5 = version == UVMQTT_V5;
  switch (pkt->type) {
  case UVMQTT_CONNECT: {
    const uvmqtt_connect_t *c = &pkt->u.connect;
    if (c->protocol_version != 0 && c->protocol_version != version)
      return UVMQTT_EINVAL;
    if (c->will_qos > 2)
      return UVMQTT_EQOS;
    if (!c->will && (c->will_qos || c->will_retain))
      return UVMQTT_EINVAL;
    if (!v5 && c->has_password && !c->has_username)
      return UVMQTT_EINVAL;
    rl = 2 + (version == UVMQTT_V31 ? 6 : 4) + 1 + 1 + 2;
    if (v5)
      TRY(props_block(&c->props, UVMQTT_CONNECT, &pl->plen, &rl));
    TRY(str_size(c->client_id.len, c->client_id.data, &rl));
    if (c->will) {
      if (v5)
        TRY(props_block(&c->will_props, UVMQTT__WILL, &pl->wplen, &rl));
      TRY(str_size(c->will_topic.len, c->will_topic.data, &rl));
      TRY(str_size(c->will_payload.len, c->will_payload.data, &rl));
    }
    if (c->has_username)
      TRY(str_size(c->username.len, c->username.data, &rl));
    if (c->has_password)
      TRY(str_size(c->password.len, c->password.data, &rl));
    break;
  }
  case UVMQTT_CONNACK:
    rl = 2;
    if (v5)
      TRY(props_block(&pkt->u.connack.props, UVMQTT_CONNACK, &pl->plen, &rl));
    break;
  case UVMQTT_PUBACK:
  case UVMQTT_PUBREC:
  case UVMQTT_PUBREL:
  case UVMQTT_PUBCOMP: {
    const uvmqtt_ack_t *a = &pkt->u.ack;
    if (a->packet_id == 0)
      return UVMQTT_EPACKETID;
    rl = 2;
    if (v5) {
      bool empty = uvmqtt__codec_props_empty(&a->props);
      pl->has_reason = a->reason_code != 0 || !empty;
      pl->has_props = !empty;
      if (pl->has_reason)
        rl += 1;
      if (pl->has_props)
        TRY(props_block(&a->props, pkt->type, &pl->plen, &rl));
    }
    break;
  }
  case UVMQTT_SUBSCRIBE: {
    const uvmqtt_subscribe_t *s = &pkt->u.subscribe;
    if (s->packet_id == 0)
      return UVMQTT_EPACKETID;
    rl = 2;
    if (v5)
      TRY(props_block(&s->props, UVMQTT_SUBSCRIBE, &pl->plen, &rl));
    size_t pos = 0, n = 0;
    uvmqtt_subscription_t sub;
    while (uvmqtt_subscribe_next(s, &pos, &sub)) {
      if ((sub.options & 3) == 3)
        return UVMQTT_EQOS;
      TRY(str_size(sub.filter.len, sub.filter.data, &rl));
      TRY(add(&rl, 1));
      n++;
    }
    if (n == 0 || n != s->count)
      return UVMQTT_EINVAL;
    break;
  }
  case UVMQTT_SUBACK:
  case UVMQTT_UNSUBACK: {
    const uvmqtt_suback_t *s = &pkt->u.suback;
    if (s->packet_id == 0)
      return UVMQTT_EPACKETID;
    rl = 2;
    if (pkt->type == UVMQTT_UNSUBACK && !v5)
      break;
    if (v5)
      TRY(props_block(&s->props, pkt->type, &pl->plen, &rl));
    if (s->count == 0 || s->codes == NULL)
      return UVMQTT_EINVAL;
    TRY(add(&rl, s->count));
    break;
  }
  case UVMQTT_UNSUBSCRIBE: {
    const uvmqtt_unsubscribe_t *u = &pkt->u.unsubscribe;
    if (u->packet_id == 0)
      return UVMQTT_EPACKETID;
    rl = 2;
    if (v5)
      TRY(props_block(&u->props, UVMQTT_UNSUBSCRIBE, &pl->plen, &rl));
    size_t pos = 0, n = 0;
    uvmqtt_str_t f;
    while (uvmqtt_unsubscribe_next(u, &pos, &f)) {
      TRY(str_size(f.len, f.data, &rl));
      n++;
    }
    if (n == 0 || n != u->count)
      return UVMQTT_EINVAL;
    break;
  }
  case UVMQTT_PINGREQ:
  case UVMQTT_PINGRESP:
    break;
  case UVMQTT_AUTH:
    if (!v5)
      return UVMQTT_EINVAL;
    /* fall through */
  case UVMQTT_DISCONNECT:
    if (v5) {
      const uvmqtt_reason_t *d = &pkt->u.disconnect; /* same layout as auth */
      bool empty = uvmqtt__codec_props_empty(&d->props);
      pl->has_reason = d->reason_code != 0 || !empty;
      pl->has_props = !empty;
      if (pl->has_reason)
        rl += 1;
      if (pl->has_props)
        TRY(props_block(&d->props, pkt->type, &pl->plen, &rl));
    }
    break;
  default:
    return UVMQTT_EINVAL;
  }
  pl->rl = rl;
  return 0;
}

static uint8_t *put_props(const uvmqtt_props_t *props, size_t plen,
                          uint8_t *o) {
  o = uvmqtt__put_varint(o, (uint32_t)plen);
  return plen ? uvmqtt__codec_props_write(props, o) : o;
}

static void write_packet(const uvmqtt_packet_t *pkt, uint8_t version,
                         const plan_t *pl, uint8_t *o) {
  bool v5 = version == UVMQTT_V5;
  uint8_t flags = 0;
  if (pkt->type == UVMQTT_PUBREL || pkt->type == UVMQTT_SUBSCRIBE ||
      pkt->type == UVMQTT_UNSUBSCRIBE)
    flags = 2;
  *o++ = (uint8_t)((pkt->type << 4) | flags);
  o = uvmqtt__put_varint(o, (uint32_t)pl->rl);
  switch (pkt->type) {
  case UVMQTT_CONNECT: {
    const uvmqtt_connect_t *c = &pkt->u.connect;
    if (version == UVMQTT_V31)
      o = uvmqtt__put_bytes(o, "MQIsdp", 6);
    else
      o = uvmqtt__put_bytes(o, "MQTT", 4);
    *o++ = version;
    *o++ =
        (uint8_t)((c->has_username ? 0x80 : 0) | (c->has_password ? 0x40 : 0) |
                  (c->will_retain ? 0x20 : 0) | (c->will_qos << 3) |
                  (c->will ? 0x04 : 0) | (c->clean_start ? 0x02 : 0));
    o = uvmqtt__put_u16(o, c->keep_alive);
    if (v5)
      o = put_props(&c->props, pl->plen, o);
    o = uvmqtt__put_bytes(o, c->client_id.data, c->client_id.len);
    if (c->will) {
      if (v5)
        o = put_props(&c->will_props, pl->wplen, o);
      o = uvmqtt__put_bytes(o, c->will_topic.data, c->will_topic.len);
      o = uvmqtt__put_bytes(o, c->will_payload.data, c->will_payload.len);
    }
    if (c->has_username)
      o = uvmqtt__put_bytes(o, c->username.data, c->username.len);
    if (c->has_password)
      o = uvmqtt__put_bytes(o, c->password.data, c->password.len);
    break;
  }
  case UVMQTT_CONNACK:
    *o++ = pkt->u.connack.session_present && version != UVMQTT_V31 ? 1 : 0;
    *o++ = pkt->u.connack.reason_code;
    if (v5)
      o = put_props(&pkt->u.connack.props, pl->plen, o);
    break;
  case UVMQTT_PUBACK:
  case UVMQTT_PUBREC:
  case UVMQTT_PUBREL:
  case UVMQTT_PUBCOMP:
    o = uvmqtt__put_u16(o, pkt->u.ack.packet_id);
    if (pl->has_reason)
      *o++ = pkt->u.ack.reason_code;
    if (pl->has_props)
      o = put_props(&pkt->u.ack.props, pl->plen, o);
    break;
  case UVMQTT_SUBSCRIBE: {
    const uvmqtt_subscribe_t *s = &pkt->u.subscribe;
    o = uvmqtt__put_u16(o, s->packet_id);
    if (v5)
      o = put_props(&s->props, pl->plen, o);
    size_t pos = 0;
    uvmqtt_subscription_t sub;
    while (uvmqtt_subscribe_next(s, &pos, &sub)) {
      o = uvmqtt__put_bytes(o, sub.filter.data, sub.filter.len);
      *o++ = v5 ? sub.options : (uint8_t)(sub.options & 3);
    }
    break;
  }
  case UVMQTT_SUBACK:
  case UVMQTT_UNSUBACK: {
    const uvmqtt_suback_t *s = &pkt->u.suback;
    o = uvmqtt__put_u16(o, s->packet_id);
    if (pkt->type == UVMQTT_UNSUBACK && !v5)
      break;
    if (v5)
      o = put_props(&s->props, pl->plen, o);
    memcpy(o, s->codes, s->count);
    o += s->count;
    break;
  }
  case UVMQTT_UNSUBSCRIBE: {
    const uvmqtt_unsubscribe_t *u = &pkt->u.unsubscribe;
    o = uvmqtt__put_u16(o, u->packet_id);
    if (v5)
      o = put_props(&u->props, pl->plen, o);
    size_t pos = 0;
    uvmqtt_str_t f;
    while (uvmqtt_unsubscribe_next(u, &pos, &f))
      o = uvmqtt__put_bytes(o, f.data, f.len);
    break;
  }
  case UVMQTT_DISCONNECT:
  case UVMQTT_AUTH:
    if (pl->has_reason)
      *o++ = pkt->u.disconnect.reason_code;
    if (pl->has_props)
      o = put_props(&pkt->u.disconnect.props, pl->plen, o);
    break;
  default:
    break;
  }
  (void)o;
}

int uvmqtt_encode_size(const uvmqtt_packet_t *pkt, uint8_t version,
                       size_t *size) {
  plan_t pl;
  if (pkt == NULL || size == NULL)
    return UVMQTT_EINVAL;
  if (pkt->type == UVMQTT_PUBLISH) {
    size_t head;
    TRY(publish_plan(&pkt->u.publish, version, &pl, &head));
    *size = head + pkt->u.publish.payload.len;
    return 0;
  }
  TRY(plan_packet(pkt, version, &pl));
  *size = 1 + (size_t)uvmqtt_varint_size((uint32_t)pl.rl) + pl.rl;
  return 0;
}

int uvmqtt_encode(const uvmqtt_packet_t *pkt, uint8_t version, uint8_t *buf,
                  size_t cap) {
  plan_t pl;
  size_t size;
  if (pkt == NULL)
    return UVMQTT_EINVAL;
  if (UVMQTT__LIKELY(pkt->type == UVMQTT_PUBLISH)) {
    const uvmqtt_publish_t *p = &pkt->u.publish;
    size_t head;
    TRY(publish_plan(p, version, &pl, &head));
    size = head + p->payload.len;
    if (UVMQTT__UNLIKELY(cap < size || size > INT32_MAX))
      return UVMQTT_ENOBUFS;
    uint8_t *o = publish_write_head(p, version, &pl, buf);
    if (p->payload.len)
      memcpy(o, p->payload.data, p->payload.len);
    return (int)size;
  }
  TRY(plan_packet(pkt, version, &pl));
  size = 1 + (size_t)uvmqtt_varint_size((uint32_t)pl.rl) + pl.rl;
  if (cap < size || buf == NULL)
    return UVMQTT_ENOBUFS;
  write_packet(pkt, version, &pl, buf);
  return (int)size;
}

/* ---- iterators ----------------------------------------------------------- */

int uvmqtt_subscribe_next(const uvmqtt_subscribe_t *s, size_t *pos,
                          uvmqtt_subscription_t *out) {
  if (s->subs != NULL) {
    if (*pos >= s->count)
      return 0;
    *out = s->subs[(*pos)++];
    return 1;
  }
  /* Decoded: walk the validated payload (bounds re-checked anyway). */
  size_t i = *pos;
  if (s->raw == NULL || s->raw_len - i < 3 || i >= s->raw_len)
    return 0;
  size_t n = ((size_t)s->raw[i] << 8) | s->raw[i + 1];
  if (s->raw_len - i - 2 < n + 1)
    return 0;
  out->filter.data = (const char *)s->raw + i + 2;
  out->filter.len = n;
  out->options = s->raw[i + 2 + n];
  *pos = i + 3 + n;
  return 1;
}

int uvmqtt_unsubscribe_next(const uvmqtt_unsubscribe_t *s, size_t *pos,
                            uvmqtt_str_t *out) {
  if (s->filters != NULL) {
    if (*pos >= s->count)
      return 0;
    *out = s->filters[(*pos)++];
    return 1;
  }
  size_t i = *pos;
  if (s->raw == NULL || i >= s->raw_len || s->raw_len - i < 2)
    return 0;
  size_t n = ((size_t)s->raw[i] << 8) | s->raw[i + 1];
  if (s->raw_len - i - 2 < n)
    return 0;
  out->data = (const char *)s->raw + i + 2;
  out->len = n;
  *pos = i + 2 + n;
  return 1;
}
