/* v5 properties: decoding with per-packet validation, size, encoding, and
 * the walkers over repeatable properties. */
#include "codec/codec_int.h"

#define BIT(id) UVMQTT_PROP_BIT(id)

static inline int lowest_bit(uint64_t m) {
#if defined(__GNUC__)
  return __builtin_ctzll(m);
#else
  int i = 0;
  while (!(m & 1)) {
    m >>= 1;
    i++;
  }
  return i;
#endif
}

/* ---- readers ------------------------------------------------------------ */

int uvmqtt__codec_rd_varint(uvmqtt__codec_rd_t *r, uint32_t *out) {
  uint32_t v = 0;
  size_t start = r->pos;
  for (int i = 0; i < 4; i++) {
    if (r->pos >= r->end) {
      r->err_off = start;
      return UVMQTT_ETRUNC;
    }
    uint8_t d = r->b[r->pos++];
    v |= (uint32_t)(d & 0x7F) << (7 * i);
    if (!(d & 0x80)) {
      if (d == 0 && i > 0) { /* not the minimal encoding */
        r->err_off = r->pos - 1;
        return UVMQTT_EMALFORMED;
      }
      *out = v;
      return 0;
    }
  }
  r->err_off = r->pos - 1; /* a fifth byte would be needed */
  return UVMQTT_EMALFORMED;
}

static int rd_len(uvmqtt__codec_rd_t *r, const uint8_t **data, size_t *len) {
  if (r->end - r->pos < 2) {
    r->err_off = r->pos;
    return UVMQTT_ETRUNC;
  }
  size_t n = ((size_t)r->b[r->pos] << 8) | r->b[r->pos + 1];
  if (r->end - r->pos - 2 < n) {
    r->err_off = r->pos;
    return UVMQTT_ETRUNC;
  }
  *data = r->b + r->pos + 2;
  *len = n;
  r->pos += 2 + n;
  return 0;
}

int uvmqtt__codec_rd_bin(uvmqtt__codec_rd_t *r, uvmqtt_bin_t *out) {
  return rd_len(r, &out->data, &out->len);
}

int uvmqtt__codec_rd_str(uvmqtt__codec_rd_t *r, uvmqtt_str_t *out) {
  const uint8_t *d;
  size_t n, bad;
  int rc = rd_len(r, &d, &n);
  if (rc)
    return rc;
  rc = uvmqtt__codec_utf8_scan(d, n, false, &bad);
  if (rc) {
    r->err_off = (size_t)(d - r->b) + bad;
    return rc;
  }
  out->data = (const char *)d;
  out->len = n;
  return 0;
}

/* ---- decoding ----------------------------------------------------------- */

static int rd_fixed(uvmqtt__codec_rd_t *r, size_t n, uint32_t *out) {
  if (r->end - r->pos < n) {
    r->err_off = r->pos;
    return UVMQTT_ETRUNC;
  }
  uint32_t v = 0;
  for (size_t i = 0; i < n; i++)
    v = (v << 8) | r->b[r->pos + i];
  r->pos += n;
  *out = v;
  return 0;
}

int uvmqtt__codec_props_decode(uvmqtt__codec_rd_t *r, int where, bool server,
                               uvmqtt_props_t *props) {
  memset(props, 0, sizeof(*props));
  size_t len_off = r->pos;
  uint32_t plen;
  int rc = uvmqtt__codec_rd_varint(r, &plen);
  if (rc)
    return rc;
  if (plen > r->end - r->pos) {
    r->err_off = len_off;
    return UVMQTT_ETRUNC;
  }
  props->raw = r->b + r->pos;
  props->raw_len = plen;
  uvmqtt__codec_rd_t q = {r->b, r->pos, r->pos + plen, 0};
  while (q.pos < q.end) {
    size_t id_off = q.pos;
    uint32_t id, v = 0;
    uvmqtt_str_t s = {NULL, 0};
    uvmqtt_bin_t bin = {NULL, 0};
    rc = uvmqtt__codec_rd_varint(&q, &id);
    if (rc)
      goto fail;
    int type = uvmqtt_prop_type((int)id);
    if (type == 0 ||
        !uvmqtt_prop_allowed((int)id,
                             where == UVMQTT__WILL ? UVMQTT_CONNECT : where,
                             where == UVMQTT__WILL)) {
      rc = UVMQTT_EPROPBAD;
      goto fail_at_id;
    }
    /* A client never sends a Subscription Identifier on PUBLISH
     * [MQTT-3.3.4-6]. */
    if (id == UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER && where == UVMQTT_PUBLISH &&
        server) {
      rc = UVMQTT_EPROPBAD;
      goto fail_at_id;
    }
    /* A server never sends a Session Expiry Interval on DISCONNECT
     * [MQTT-3.14.2-2]. */
    if (id == UVMQTT_PROP_SESSION_EXPIRY_INTERVAL &&
        where == UVMQTT_DISCONNECT && !server) {
      rc = UVMQTT_EPROPBAD;
      goto fail_at_id;
    }
    bool repeatable =
        id == UVMQTT_PROP_USER_PROPERTY ||
        (id == UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER && where == UVMQTT_PUBLISH);
    if (!repeatable && (props->present & BIT(id))) {
      rc = UVMQTT_EPROPDUP;
      goto fail_at_id;
    }
    switch (type) {
    case UVMQTT_PROP_TYPE_BYTE:
      rc = rd_fixed(&q, 1, &v);
      break;
    case UVMQTT_PROP_TYPE_U16:
      rc = rd_fixed(&q, 2, &v);
      break;
    case UVMQTT_PROP_TYPE_U32:
      rc = rd_fixed(&q, 4, &v);
      break;
    case UVMQTT_PROP_TYPE_VARINT:
      rc = uvmqtt__codec_rd_varint(&q, &v);
      break;
    case UVMQTT_PROP_TYPE_UTF8:
      rc = uvmqtt__codec_rd_str(&q, &s);
      break;
    case UVMQTT_PROP_TYPE_BINARY:
      rc = uvmqtt__codec_rd_bin(&q, &bin);
      break;
    default: /* UTF8_PAIR */
      rc = uvmqtt__codec_rd_str(&q, &s);
      if (rc == 0)
        rc = uvmqtt__codec_rd_str(&q, &s);
      break;
    }
    if (rc)
      goto fail;
    /* Values whose range the specification fixes. */
    switch (id) {
    case UVMQTT_PROP_PAYLOAD_FORMAT_INDICATOR:
    case UVMQTT_PROP_REQUEST_PROBLEM_INFORMATION:
    case UVMQTT_PROP_REQUEST_RESPONSE_INFORMATION:
    case UVMQTT_PROP_MAXIMUM_QOS:
    case UVMQTT_PROP_RETAIN_AVAILABLE:
    case UVMQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE:
    case UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE:
    case UVMQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE:
      if (v > 1) {
        rc = UVMQTT_EPROPVAL;
        goto fail_at_id;
      }
      break;
    case UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER:
    case UVMQTT_PROP_RECEIVE_MAXIMUM:
    case UVMQTT_PROP_MAXIMUM_PACKET_SIZE:
    case UVMQTT_PROP_TOPIC_ALIAS:
      if (v == 0) {
        rc = UVMQTT_EPROPVAL;
        goto fail_at_id;
      }
      break;
    default:
      break;
    }
    switch (id) {
    case UVMQTT_PROP_PAYLOAD_FORMAT_INDICATOR:
      props->payload_format_indicator = (uint8_t)v;
      break;
    case UVMQTT_PROP_MESSAGE_EXPIRY_INTERVAL:
      props->message_expiry_interval = v;
      break;
    case UVMQTT_PROP_CONTENT_TYPE:
      props->content_type = s;
      break;
    case UVMQTT_PROP_RESPONSE_TOPIC:
      props->response_topic = s;
      break;
    case UVMQTT_PROP_CORRELATION_DATA:
      props->correlation_data = bin;
      break;
    case UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER:
      if (props->sub_id_count++ == 0)
        props->subscription_id = v;
      break;
    case UVMQTT_PROP_SESSION_EXPIRY_INTERVAL:
      props->session_expiry_interval = v;
      break;
    case UVMQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER:
      props->assigned_client_identifier = s;
      break;
    case UVMQTT_PROP_SERVER_KEEP_ALIVE:
      props->server_keep_alive = (uint16_t)v;
      break;
    case UVMQTT_PROP_AUTHENTICATION_METHOD:
      props->authentication_method = s;
      break;
    case UVMQTT_PROP_AUTHENTICATION_DATA:
      props->authentication_data = bin;
      break;
    case UVMQTT_PROP_REQUEST_PROBLEM_INFORMATION:
      props->request_problem_information = (uint8_t)v;
      break;
    case UVMQTT_PROP_WILL_DELAY_INTERVAL:
      props->will_delay_interval = v;
      break;
    case UVMQTT_PROP_REQUEST_RESPONSE_INFORMATION:
      props->request_response_information = (uint8_t)v;
      break;
    case UVMQTT_PROP_RESPONSE_INFORMATION:
      props->response_information = s;
      break;
    case UVMQTT_PROP_SERVER_REFERENCE:
      props->server_reference = s;
      break;
    case UVMQTT_PROP_REASON_STRING:
      props->reason_string = s;
      break;
    case UVMQTT_PROP_RECEIVE_MAXIMUM:
      props->receive_maximum = (uint16_t)v;
      break;
    case UVMQTT_PROP_TOPIC_ALIAS_MAXIMUM:
      props->topic_alias_maximum = (uint16_t)v;
      break;
    case UVMQTT_PROP_TOPIC_ALIAS:
      props->topic_alias = (uint16_t)v;
      break;
    case UVMQTT_PROP_MAXIMUM_QOS:
      props->maximum_qos = (uint8_t)v;
      break;
    case UVMQTT_PROP_RETAIN_AVAILABLE:
      props->retain_available = (uint8_t)v;
      break;
    case UVMQTT_PROP_USER_PROPERTY:
      props->user_prop_count++;
      continue; /* not a singleton: no `present` bit */
    case UVMQTT_PROP_MAXIMUM_PACKET_SIZE:
      props->maximum_packet_size = v;
      break;
    case UVMQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE:
      props->wildcard_subscription_available = (uint8_t)v;
      break;
    case UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE:
      props->subscription_identifier_available = (uint8_t)v;
      break;
    case UVMQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE:
      props->shared_subscription_available = (uint8_t)v;
      break;
    default:
      break;
    }
    props->present |= BIT(id);
    continue;
  fail_at_id:
    q.err_off = id_off;
  fail:
    r->err_off = q.err_off;
    return rc;
  }
  r->pos = q.end;
  return 0;
}

/* ---- walkers ------------------------------------------------------------ */

/* Finds the next property `want` in raw[*pos ..], as validated by the
 * decoder. Defensive bounds checks keep a hand-made `raw` from reading out
 * of bounds. Returns 1 with *at at the value, 0 at the end. */
static int raw_next(const uvmqtt_props_t *props, size_t *pos, uint8_t want,
                    size_t *at) {
  const uint8_t *b = props->raw;
  size_t n = props->raw_len, i = *pos;
  if (b == NULL)
    return 0;
  while (i < n) {
    uint8_t id = b[i++];
    size_t vstart = i, skip;
    switch (uvmqtt_prop_type(id)) {
    case UVMQTT_PROP_TYPE_BYTE:
      skip = 1;
      break;
    case UVMQTT_PROP_TYPE_U16:
      skip = 2;
      break;
    case UVMQTT_PROP_TYPE_U32:
      skip = 4;
      break;
    case UVMQTT_PROP_TYPE_VARINT:
      skip = 0;
      while (i + skip < n && (b[i + skip] & 0x80) && skip < 3)
        skip++;
      skip++;
      break;
    case UVMQTT_PROP_TYPE_UTF8:
    case UVMQTT_PROP_TYPE_BINARY:
      if (n - i < 2)
        return 0;
      skip = 2 + (((size_t)b[i] << 8) | b[i + 1]);
      break;
    case UVMQTT_PROP_TYPE_UTF8_PAIR:
      if (n - i < 2)
        return 0;
      skip = 2 + (((size_t)b[i] << 8) | b[i + 1]);
      if (n - i < skip + 2)
        return 0;
      skip += 2 + (((size_t)b[i + skip] << 8) | b[i + skip + 1]);
      break;
    default:
      return 0;
    }
    if (n - i < skip)
      return 0;
    i += skip;
    if (id == want) {
      *pos = i;
      *at = vstart;
      return 1;
    }
  }
  *pos = i;
  return 0;
}

int uvmqtt_props_next_user(const uvmqtt_props_t *props, size_t *pos,
                           uvmqtt_user_prop_t *out) {
  if (props->user_props != NULL) {
    if (*pos >= props->user_prop_count)
      return 0;
    *out = props->user_props[(*pos)++];
    return 1;
  }
  size_t at;
  if (!raw_next(props, pos, UVMQTT_PROP_USER_PROPERTY, &at))
    return 0;
  const uint8_t *b = props->raw + at;
  size_t kl = ((size_t)b[0] << 8) | b[1];
  out->key.data = (const char *)b + 2;
  out->key.len = kl;
  out->value.data = (const char *)b + 4 + kl;
  out->value.len = ((size_t)b[2 + kl] << 8) | b[3 + kl];
  return 1;
}

int uvmqtt_props_next_sub_id(const uvmqtt_props_t *props, size_t *pos,
                             uint32_t *out) {
  if (props->sub_ids != NULL) {
    if (*pos >= props->sub_id_count)
      return 0;
    *out = props->sub_ids[(*pos)++];
    return 1;
  }
  if (props->raw == NULL) {
    /* A hand-made set: the single `subscription_id`. */
    if (*pos > 0 ||
        !(props->present & BIT(UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER)))
      return 0;
    *pos = 1;
    *out = props->subscription_id;
    return 1;
  }
  size_t at;
  if (!raw_next(props, pos, UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER, &at))
    return 0;
  uint32_t v = 0;
  for (int i = 0; i < 4 && at < props->raw_len; i++, at++) {
    v |= (uint32_t)(props->raw[at] & 0x7F) << (7 * i);
    if (!(props->raw[at] & 0x80))
      break;
  }
  *out = v;
  return 1;
}

/* ---- encoding ----------------------------------------------------------- */

/* The subscription identifiers to write: an explicit array, the decoded
 * ones (walked from raw) or the single field. */
static bool has_sub_ids(const uvmqtt_props_t *props) {
  if (props->sub_ids != NULL)
    return props->sub_id_count > 0;
  return (props->present & BIT(UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER)) != 0;
}

static bool has_user_props(const uvmqtt_props_t *props) {
  return props->user_prop_count > 0;
}

int uvmqtt__codec_props_size(const uvmqtt_props_t *props, int where,
                             size_t *len) {
  size_t n = 0;
  uint64_t m = props->present & ~(BIT(UVMQTT_PROP_USER_PROPERTY) |
                                  BIT(UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER));
  int ptype = where == UVMQTT__WILL ? UVMQTT_CONNECT : where;
  bool will = where == UVMQTT__WILL;
  for (; m; m &= m - 1) {
    int id = lowest_bit(m);
    if (!uvmqtt_prop_allowed(id, ptype, will))
      return UVMQTT_EPROPBAD;
    switch (uvmqtt_prop_type(id)) {
    case UVMQTT_PROP_TYPE_BYTE:
      n += 2;
      break;
    case UVMQTT_PROP_TYPE_U16:
      n += 3;
      break;
    case UVMQTT_PROP_TYPE_U32:
      n += 5;
      break;
    default: { /* UTF8 or BINARY */
      size_t l;
      switch (id) {
      case UVMQTT_PROP_CONTENT_TYPE:
        l = props->content_type.len;
        break;
      case UVMQTT_PROP_RESPONSE_TOPIC:
        l = props->response_topic.len;
        break;
      case UVMQTT_PROP_CORRELATION_DATA:
        l = props->correlation_data.len;
        break;
      case UVMQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER:
        l = props->assigned_client_identifier.len;
        break;
      case UVMQTT_PROP_AUTHENTICATION_METHOD:
        l = props->authentication_method.len;
        break;
      case UVMQTT_PROP_AUTHENTICATION_DATA:
        l = props->authentication_data.len;
        break;
      case UVMQTT_PROP_RESPONSE_INFORMATION:
        l = props->response_information.len;
        break;
      case UVMQTT_PROP_SERVER_REFERENCE:
        l = props->server_reference.len;
        break;
      case UVMQTT_PROP_REASON_STRING:
        l = props->reason_string.len;
        break;
      default:
        return UVMQTT_EPROPBAD;
      }
      if (l > 65535)
        return UVMQTT_ETOOBIG;
      n += 3 + l;
    }
    }
  }
  if (has_sub_ids(props)) {
    if (!uvmqtt_prop_allowed(UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER, ptype, will))
      return UVMQTT_EPROPBAD;
    size_t pos = 0, count = 0;
    uint32_t v;
    while (uvmqtt_props_next_sub_id(props, &pos, &v)) {
      int vs = uvmqtt_varint_size(v);
      if (v == 0 || vs == 0)
        return UVMQTT_EPROPVAL;
      n += 1 + (size_t)vs;
      count++;
    }
    if (count > 1 && ptype != UVMQTT_PUBLISH)
      return UVMQTT_EPROPDUP;
  }
  if (has_user_props(props)) {
    if (!uvmqtt_prop_allowed(UVMQTT_PROP_USER_PROPERTY, ptype, will))
      return UVMQTT_EPROPBAD;
    if (props->user_props == NULL && props->raw == NULL)
      return UVMQTT_EINVAL;
    size_t pos = 0, count = 0;
    uvmqtt_user_prop_t up;
    while (uvmqtt_props_next_user(props, &pos, &up)) {
      if (up.key.len > 65535 || up.value.len > 65535)
        return UVMQTT_ETOOBIG;
      n += 5 + up.key.len + up.value.len;
      count++;
    }
    if (count != props->user_prop_count)
      return UVMQTT_EINVAL;
  }
  if (n > UVMQTT_MAX_REMAINING_LENGTH)
    return UVMQTT_ETOOBIG;
  *len = n;
  return 0;
}

uint8_t *uvmqtt__codec_props_write(const uvmqtt_props_t *props, uint8_t *o) {
  uint64_t m = props->present & ~(BIT(UVMQTT_PROP_USER_PROPERTY) |
                                  BIT(UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER));
  if (has_sub_ids(props))
    m |= BIT(UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER);
  if (has_user_props(props))
    m |= BIT(UVMQTT_PROP_USER_PROPERTY);
  /* Ascending identifier order; repeatable ones at their identifier's
   * place, in their own order. */
  for (; m; m &= m - 1) {
    int id = lowest_bit(m);
    if (id == UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER) {
      size_t pos = 0;
      uint32_t v;
      while (uvmqtt_props_next_sub_id(props, &pos, &v)) {
        *o++ = (uint8_t)id;
        o = uvmqtt__put_varint(o, v);
      }
      continue;
    }
    if (id == UVMQTT_PROP_USER_PROPERTY) {
      size_t pos = 0;
      uvmqtt_user_prop_t up;
      while (uvmqtt_props_next_user(props, &pos, &up)) {
        *o++ = (uint8_t)id;
        o = uvmqtt__put_bytes(o, up.key.data, up.key.len);
        o = uvmqtt__put_bytes(o, up.value.data, up.value.len);
      }
      continue;
    }
    *o++ = (uint8_t)id;
    switch (id) {
    case UVMQTT_PROP_PAYLOAD_FORMAT_INDICATOR:
      *o++ = props->payload_format_indicator;
      break;
    case UVMQTT_PROP_MESSAGE_EXPIRY_INTERVAL:
      o = uvmqtt__put_u32(o, props->message_expiry_interval);
      break;
    case UVMQTT_PROP_CONTENT_TYPE:
      o = uvmqtt__put_bytes(o, props->content_type.data,
                            props->content_type.len);
      break;
    case UVMQTT_PROP_RESPONSE_TOPIC:
      o = uvmqtt__put_bytes(o, props->response_topic.data,
                            props->response_topic.len);
      break;
    case UVMQTT_PROP_CORRELATION_DATA:
      o = uvmqtt__put_bytes(o, props->correlation_data.data,
                            props->correlation_data.len);
      break;
    case UVMQTT_PROP_SESSION_EXPIRY_INTERVAL:
      o = uvmqtt__put_u32(o, props->session_expiry_interval);
      break;
    case UVMQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER:
      o = uvmqtt__put_bytes(o, props->assigned_client_identifier.data,
                            props->assigned_client_identifier.len);
      break;
    case UVMQTT_PROP_SERVER_KEEP_ALIVE:
      o = uvmqtt__put_u16(o, props->server_keep_alive);
      break;
    case UVMQTT_PROP_AUTHENTICATION_METHOD:
      o = uvmqtt__put_bytes(o, props->authentication_method.data,
                            props->authentication_method.len);
      break;
    case UVMQTT_PROP_AUTHENTICATION_DATA:
      o = uvmqtt__put_bytes(o, props->authentication_data.data,
                            props->authentication_data.len);
      break;
    case UVMQTT_PROP_REQUEST_PROBLEM_INFORMATION:
      *o++ = props->request_problem_information;
      break;
    case UVMQTT_PROP_WILL_DELAY_INTERVAL:
      o = uvmqtt__put_u32(o, props->will_delay_interval);
      break;
    case UVMQTT_PROP_REQUEST_RESPONSE_INFORMATION:
      *o++ = props->request_response_information;
      break;
    case UVMQTT_PROP_RESPONSE_INFORMATION:
      o = uvmqtt__put_bytes(o, props->response_information.data,
                            props->response_information.len);
      break;
    case UVMQTT_PROP_SERVER_REFERENCE:
      o = uvmqtt__put_bytes(o, props->server_reference.data,
                            props->server_reference.len);
      break;
    case UVMQTT_PROP_REASON_STRING:
      o = uvmqtt__put_bytes(o, props->reason_string.data,
                            props->reason_string.len);
      break;
    case UVMQTT_PROP_RECEIVE_MAXIMUM:
      o = uvmqtt__put_u16(o, props->receive_maximum);
      break;
    case UVMQTT_PROP_TOPIC_ALIAS_MAXIMUM:
      o = uvmqtt__put_u16(o, props->topic_alias_maximum);
      break;
    case UVMQTT_PROP_TOPIC_ALIAS:
      o = uvmqtt__put_u16(o, props->topic_alias);
      break;
    case UVMQTT_PROP_MAXIMUM_QOS:
      *o++ = props->maximum_qos;
      break;
    case UVMQTT_PROP_RETAIN_AVAILABLE:
      *o++ = props->retain_available;
      break;
    case UVMQTT_PROP_MAXIMUM_PACKET_SIZE:
      o = uvmqtt__put_u32(o, props->maximum_packet_size);
      break;
    case UVMQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE:
      *o++ = props->wildcard_subscription_available;
      break;
    case UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE:
      *o++ = props->subscription_identifier_available;
      break;
    case UVMQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE:
      *o++ = props->shared_subscription_available;
      break;
    default:
      break; /* rejected by uvmqtt__codec_props_size() */
    }
  }
  return o;
}
