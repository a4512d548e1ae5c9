#include "codec_util.h"

#include <stdarg.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

uint8_t *hex_decode(const char *hex, size_t *len) {
  size_t n = strlen(hex), k = 0;
  uint8_t *out = malloc(n / 2 + 1);
  int hi = -1;
  assert_non_null(out);
  for (size_t i = 0; i < n; i++) {
    char c = hex[i];
    int v = 0;
    if (c >= '0' && c <= '9')
      v = c - '0';
    else if (c >= 'a' && c <= 'f')
      v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      v = c - 'A' + 10;
    else if (c == ' ' || c == '\n' || c == '\t')
      continue;
    else
      fail_msg("bad hex character '%c'", c);
    if (hi < 0) {
      hi = v;
    } else {
      out[k++] = (uint8_t)(hi << 4 | v);
      hi = -1;
    }
  }
  assert_int_equal(hi, -1);
  *len = k;
  return out;
}

static bool diff(const char *what) {
  print_message("packets differ: %s\n", what);
  return false;
}

static bool str_eq(uvmqtt_str_t a, uvmqtt_str_t b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static bool bin_eq(uvmqtt_bin_t a, uvmqtt_bin_t b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

#define CHECK(cond, what)                                                      \
  do {                                                                         \
    if (!(cond))                                                               \
      return diff(what);                                                       \
  } while (0)

bool props_equal(const uvmqtt_props_t *a, const uvmqtt_props_t *b) {
  /* Repeatable properties are compared through the walkers below. */
  const uint64_t rep = UVMQTT_PROP_BIT(UVMQTT_PROP_USER_PROPERTY) |
                       UVMQTT_PROP_BIT(UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER);
  uint64_t m = a->present & ~rep;
  CHECK(m == (b->present & ~rep), "property set");
#define P(id, expr)                                                            \
  if (m & UVMQTT_PROP_BIT(id))                                                 \
    CHECK(expr, #id);
  P(UVMQTT_PROP_PAYLOAD_FORMAT_INDICATOR,
    a->payload_format_indicator == b->payload_format_indicator);
  P(UVMQTT_PROP_MESSAGE_EXPIRY_INTERVAL,
    a->message_expiry_interval == b->message_expiry_interval);
  P(UVMQTT_PROP_CONTENT_TYPE, str_eq(a->content_type, b->content_type));
  P(UVMQTT_PROP_RESPONSE_TOPIC, str_eq(a->response_topic, b->response_topic));
  P(UVMQTT_PROP_CORRELATION_DATA,
    bin_eq(a->correlation_data, b->correlation_data));
  P(UVMQTT_PROP_SESSION_EXPIRY_INTERVAL,
    a->session_expiry_interval == b->session_expiry_interval);
  P(UVMQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER,
    str_eq(a->assigned_client_identifier, b->assigned_client_identifier));
  P(UVMQTT_PROP_SERVER_KEEP_ALIVE,
    a->server_keep_alive == b->server_keep_alive);
  P(UVMQTT_PROP_AUTHENTICATION_METHOD,
    str_eq(a->authentication_method, b->authentication_method));
  P(UVMQTT_PROP_AUTHENTICATION_DATA,
    bin_eq(a->authentication_data, b->authentication_data));
  P(UVMQTT_PROP_REQUEST_PROBLEM_INFORMATION,
    a->request_problem_information == b->request_problem_information);
  P(UVMQTT_PROP_WILL_DELAY_INTERVAL,
    a->will_delay_interval == b->will_delay_interval);
  P(UVMQTT_PROP_REQUEST_RESPONSE_INFORMATION,
    a->request_response_information == b->request_response_information);
  P(UVMQTT_PROP_RESPONSE_INFORMATION,
    str_eq(a->response_information, b->response_information));
  P(UVMQTT_PROP_SERVER_REFERENCE,
    str_eq(a->server_reference, b->server_reference));
  P(UVMQTT_PROP_REASON_STRING, str_eq(a->reason_string, b->reason_string));
  P(UVMQTT_PROP_RECEIVE_MAXIMUM, a->receive_maximum == b->receive_maximum);
  P(UVMQTT_PROP_TOPIC_ALIAS_MAXIMUM,
    a->topic_alias_maximum == b->topic_alias_maximum);
  P(UVMQTT_PROP_TOPIC_ALIAS, a->topic_alias == b->topic_alias);
  P(UVMQTT_PROP_MAXIMUM_QOS, a->maximum_qos == b->maximum_qos);
  P(UVMQTT_PROP_RETAIN_AVAILABLE, a->retain_available == b->retain_available);
  P(UVMQTT_PROP_MAXIMUM_PACKET_SIZE,
    a->maximum_packet_size == b->maximum_packet_size);
  P(UVMQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE,
    a->wildcard_subscription_available == b->wildcard_subscription_available);
  P(UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    a->subscription_identifier_available ==
        b->subscription_identifier_available);
  P(UVMQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE,
    a->shared_subscription_available == b->shared_subscription_available);
#undef P
  /* Repeatables, in order. */
  size_t pa = 0, pb = 0;
  uvmqtt_user_prop_t ua, ub;
  for (;;) {
    int ra = uvmqtt_props_next_user(a, &pa, &ua);
    int rb = uvmqtt_props_next_user(b, &pb, &ub);
    CHECK(ra == rb, "user property count");
    if (!ra)
      break;
    CHECK(str_eq(ua.key, ub.key) && str_eq(ua.value, ub.value),
          "user property");
  }
  uint32_t sa, sb;
  pa = pb = 0;
  for (;;) {
    int ra = uvmqtt_props_next_sub_id(a, &pa, &sa);
    int rb = uvmqtt_props_next_sub_id(b, &pb, &sb);
    CHECK(ra == rb, "subscription identifier count");
    if (!ra)
      break;
    CHECK(sa == sb, "subscription identifier");
  }
  return true;
}

bool pkt_equal(const uvmqtt_packet_t *a, const uvmqtt_packet_t *b) {
  CHECK(a->type == b->type, "type");
  switch (a->type) {
  case UVMQTT_CONNECT: {
    const uvmqtt_connect_t *x = &a->u.connect, *y = &b->u.connect;
    CHECK(x->protocol_version == y->protocol_version, "protocol version");
    CHECK(x->clean_start == y->clean_start, "clean start");
    CHECK(x->keep_alive == y->keep_alive, "keep alive");
    CHECK(str_eq(x->client_id, y->client_id), "client id");
    CHECK(x->will == y->will, "will");
    if (x->will) {
      CHECK(x->will_qos == y->will_qos && x->will_retain == y->will_retain,
            "will qos/retain");
      CHECK(str_eq(x->will_topic, y->will_topic), "will topic");
      CHECK(bin_eq(x->will_payload, y->will_payload), "will payload");
      if (!props_equal(&x->will_props, &y->will_props))
        return diff("will properties");
    }
    CHECK(x->has_username == y->has_username, "has user name");
    if (x->has_username)
      CHECK(str_eq(x->username, y->username), "user name");
    CHECK(x->has_password == y->has_password, "has password");
    if (x->has_password)
      CHECK(bin_eq(x->password, y->password), "password");
    return props_equal(&x->props, &y->props);
  }
  case UVMQTT_CONNACK:
    CHECK(a->u.connack.session_present == b->u.connack.session_present,
          "session present");
    CHECK(a->u.connack.reason_code == b->u.connack.reason_code, "reason");
    return props_equal(&a->u.connack.props, &b->u.connack.props);
  case UVMQTT_PUBLISH: {
    const uvmqtt_publish_t *x = &a->u.publish, *y = &b->u.publish;
    CHECK(x->dup == y->dup && x->qos == y->qos && x->retain == y->retain,
          "publish flags");
    CHECK(str_eq(x->topic, y->topic), "topic");
    if (x->qos)
      CHECK(x->packet_id == y->packet_id, "packet id");
    CHECK(bin_eq(x->payload, y->payload), "payload");
    return props_equal(&x->props, &y->props);
  }
  case UVMQTT_PUBACK:
  case UVMQTT_PUBREC:
  case UVMQTT_PUBREL:
  case UVMQTT_PUBCOMP:
    CHECK(a->u.ack.packet_id == b->u.ack.packet_id, "packet id");
    CHECK(a->u.ack.reason_code == b->u.ack.reason_code, "reason");
    return props_equal(&a->u.ack.props, &b->u.ack.props);
  case UVMQTT_SUBSCRIBE: {
    const uvmqtt_subscribe_t *x = &a->u.subscribe, *y = &b->u.subscribe;
    CHECK(x->packet_id == y->packet_id, "packet id");
    CHECK(x->count == y->count, "subscription count");
    size_t px = 0, py = 0;
    uvmqtt_subscription_t sx, sy;
    while (uvmqtt_subscribe_next(x, &px, &sx)) {
      CHECK(uvmqtt_subscribe_next(y, &py, &sy), "subscription missing");
      CHECK(str_eq(sx.filter, sy.filter), "filter");
      CHECK(sx.options == sy.options, "options");
    }
    CHECK(!uvmqtt_subscribe_next(y, &py, &sy), "extra subscription");
    return props_equal(&x->props, &y->props);
  }
  case UVMQTT_SUBACK:
  case UVMQTT_UNSUBACK: {
    const uvmqtt_suback_t *x = &a->u.suback, *y = &b->u.suback;
    CHECK(x->packet_id == y->packet_id, "packet id");
    CHECK(x->count == y->count, "code count");
    CHECK(x->count == 0 || memcmp(x->codes, y->codes, x->count) == 0, "codes");
    return props_equal(&x->props, &y->props);
  }
  case UVMQTT_UNSUBSCRIBE: {
    const uvmqtt_unsubscribe_t *x = &a->u.unsubscribe, *y = &b->u.unsubscribe;
    CHECK(x->packet_id == y->packet_id, "packet id");
    CHECK(x->count == y->count, "filter count");
    size_t px = 0, py = 0;
    uvmqtt_str_t fx, fy;
    while (uvmqtt_unsubscribe_next(x, &px, &fx)) {
      CHECK(uvmqtt_unsubscribe_next(y, &py, &fy), "filter missing");
      CHECK(str_eq(fx, fy), "filter");
    }
    CHECK(!uvmqtt_unsubscribe_next(y, &py, &fy), "extra filter");
    return props_equal(&x->props, &y->props);
  }
  case UVMQTT_DISCONNECT:
  case UVMQTT_AUTH:
    CHECK(a->u.disconnect.reason_code == b->u.disconnect.reason_code, "reason");
    return props_equal(&a->u.disconnect.props, &b->u.disconnect.props);
  default:
    return true;
  }
}

static void record(stream_result_t *res, const uvmqtt_packet_t *pkt,
                   uint8_t version, uint64_t start, uint64_t end) {
  uint8_t v =
      pkt->type == UVMQTT_CONNECT ? pkt->u.connect.protocol_version : version;
  size_t size = 0;
  assert_int_equal(uvmqtt_encode_size(pkt, v, &size), 0);
  seen_pkt_t *s;
  res->pkts = realloc(res->pkts, (res->count + 1) * sizeof(*res->pkts));
  assert_non_null(res->pkts);
  s = &res->pkts[res->count++];
  s->start = start;
  s->end = end;
  s->type = pkt->type;
  s->enc = malloc(size ? size : 1);
  assert_non_null(s->enc);
  assert_int_equal(uvmqtt_encode(pkt, v, s->enc, size), (int)size);
  s->enc_len = size;
}

void stream_run(const uint8_t *data, size_t len, uint8_t version,
                uvmqtt_role_t role, uint32_t max_size, chunk_fn chunk,
                void *state, stream_result_t *res) {
  uvmqtt_parser_t p;
  uvmqtt_packet_t pkt;
  size_t pos = 0;
  uint64_t pkt_start = 0;
  memset(res, 0, sizeof(*res));
  uvmqtt_parser_init(&p, version, role, max_size);
  assert_false(uvmqtt_parser_in_packet(&p));
  while (pos < len) {
    size_t n = chunk ? chunk(pos, state) : len - pos;
    if (n > len - pos)
      n = len - pos;
    assert_true(n > 0);
    const uint8_t *d = data + pos;
    size_t left = n;
    while (left > 0) {
      size_t used = 99999;
      uint64_t before = p.offset;
      int rc = uvmqtt_parser_feed(&p, d, left, &used, &pkt);
      assert_true(used <= left);
      assert_int_equal(p.offset, before + used);
      d += used;
      left -= used;
      pos += used;
      if (rc == UVMQTT_PARSE_PACKET) {
        /* Views must lie inside the chunk or the lent buffer. */
        if (pkt.type == UVMQTT_CONNECT && version == 0)
          p.version = pkt.u.connect.protocol_version;
        record(res, &pkt, p.version, pkt_start, p.offset);
        free(uvmqtt_parser_take_buffer(&p));
        assert_null(uvmqtt_parser_take_buffer(&p));
        assert_false(uvmqtt_parser_in_packet(&p));
        pkt_start = p.offset;
      } else if (rc == UVMQTT_PARSE_NEED_BUFFER) {
        assert_true(p.need >= 2);
        assert_true(uvmqtt_parser_in_packet(&p));
        /* Too small a buffer is refused. */
        uint8_t small[1];
        assert_int_equal(uvmqtt_parser_set_buffer(&p, small, 1), UVMQTT_EINVAL);
        uint8_t *b = malloc(p.need);
        assert_non_null(b);
        assert_int_equal(uvmqtt_parser_set_buffer(&p, b, p.need), 0);
        /* A second lend is refused. */
        assert_int_equal(uvmqtt_parser_set_buffer(&p, b, p.need),
                         UVMQTT_EINVAL);
        res->buffers_lent++;
      } else if (rc == UVMQTT_PARSE_MORE) {
        assert_int_equal(left, 0);
      } else {
        assert_true(rc < 0);
        res->error = rc;
        res->error_offset = p.error_offset;
        assert_int_equal(p.error, rc);
        /* Sticky. */
        assert_int_equal(uvmqtt_parser_feed(&p, d, left, &used, &pkt), rc);
        assert_int_equal(used, 0);
        free(uvmqtt_parser_take_buffer(&p));
        return;
      }
    }
  }
  if (uvmqtt_parser_in_packet(&p)) {
    res->error = UVMQTT_ETRUNC; /* stream ended inside a packet */
    res->error_offset = pos;
    free(uvmqtt_parser_take_buffer(&p));
  }
}

void stream_free(stream_result_t *res) {
  for (size_t i = 0; i < res->count; i++)
    free(res->pkts[i].enc);
  free(res->pkts);
  memset(res, 0, sizeof(*res));
}

void stream_assert_same(const stream_result_t *a, const stream_result_t *b) {
  assert_int_equal(a->count, b->count);
  for (size_t i = 0; i < a->count; i++) {
    assert_int_equal(a->pkts[i].start, b->pkts[i].start);
    assert_int_equal(a->pkts[i].end, b->pkts[i].end);
    assert_int_equal(a->pkts[i].type, b->pkts[i].type);
    assert_int_equal(a->pkts[i].enc_len, b->pkts[i].enc_len);
    assert_memory_equal(a->pkts[i].enc, b->pkts[i].enc, a->pkts[i].enc_len);
  }
  assert_int_equal(a->error, b->error);
  assert_int_equal(a->error_offset, b->error_offset);
}
