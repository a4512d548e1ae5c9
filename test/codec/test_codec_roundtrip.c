/* Encode -> decode -> compare -> re-encode for every packet type in every
 * version, maximum-size fields, remaining-length boundaries, and the
 * encoder's own errors. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec_util.h"
#include "samples.h"

static const uint8_t versions[] = {UVMQTT_V31, UVMQTT_V311, UVMQTT_V5};

/* Encodes, checks size agreement and ENOBUFS, decodes for `role`, compares
 * and re-encodes. Returns the encoded bytes (malloc'd). */
static uint8_t *roundtrip(const uvmqtt_packet_t *pkt, uint8_t v,
                          uvmqtt_role_t role, size_t *len_out) {
  size_t size = 0, off = 12345;
  assert_int_equal(uvmqtt_encode_size(pkt, v, &size), 0);
  uint8_t *buf = malloc(size);
  assert_non_null(buf);
  assert_int_equal(uvmqtt_encode(pkt, v, buf, size - 1), UVMQTT_ENOBUFS);
  assert_int_equal(uvmqtt_encode(pkt, v, buf, size), (int)size);
  /* The remaining length in the header agrees with the size. */
  uint32_t rl = 0;
  int k = 1;
  do {
    rl |= (uint32_t)(buf[k] & 0x7F) << (7 * (k - 1));
  } while (buf[k++] & 0x80);
  assert_int_equal((size_t)k + rl, size);
  assert_int_equal(uvmqtt_varint_size(rl), k - 1);

  uvmqtt_packet_t dec;
  memset(&dec, 0xA5, sizeof(dec));
  int rc = uvmqtt_decode(buf, size, v, role, &dec, &off);
  if (rc)
    fail_msg("%s v%d: decode failed: %s at %zu", uvmqtt_packet_name(pkt->type),
             v, uvmqtt_err_name(rc), off);
  assert_true(pkt_equal(pkt, &dec));
  /* Decoded packets re-encode to the same bytes (arrays walked from raw). */
  uint8_t *again = malloc(size);
  assert_non_null(again);
  size_t size2 = 0;
  assert_int_equal(uvmqtt_encode_size(&dec, v, &size2), 0);
  assert_int_equal(size2, size);
  assert_int_equal(uvmqtt_encode(&dec, v, again, size), (int)size);
  assert_memory_equal(buf, again, size);
  free(again);

  if (pkt->type == UVMQTT_PUBLISH) {
    /* Zero-copy head + payload gives the same bytes. */
    uint8_t head[512];
    size_t total = 0;
    int h = uvmqtt_encode_publish_head(pkt, v, head, sizeof(head), &total);
    assert_true(h > 0);
    assert_int_equal(total, size);
    assert_int_equal((size_t)h + pkt->u.publish.payload.len, size);
    assert_memory_equal(head, buf, (size_t)h);
    assert_int_equal(
        uvmqtt_encode_publish_head(pkt, v, head, (size_t)h - 1, NULL),
        UVMQTT_ENOBUFS);
  }
  *len_out = size;
  return buf;
}

static void test_samples_all_versions(void **state) {
  (void)state;
  sample_t s[SAMPLES_MAX];
  size_t total = 0;
  for (size_t vi = 0; vi < sizeof(versions); vi++) {
    uint8_t v = versions[vi];
    size_t n = samples_get(v, s);
    assert_true(n > 10);
    for (size_t i = 0; i < n; i++) {
      size_t len;
      free(roundtrip(&s[i].pkt, v, s[i].role, &len));
      total++;
    }
  }
  /* Every type appears in some version. */
  bool seen[16] = {false};
  for (size_t vi = 0; vi < sizeof(versions); vi++) {
    size_t n = samples_get(versions[vi], s);
    for (size_t i = 0; i < n; i++)
      seen[s[i].pkt.type] = true;
  }
  for (int t = 1; t <= 15; t++)
    assert_true(seen[t]);
  assert_true(total > 60);
}

/* The direction check: each sample is rejected by the other role when that
 * role must never receive it. */
static void test_role_rejection(void **state) {
  (void)state;
  sample_t s[SAMPLES_MAX];
  size_t n = samples_get(UVMQTT_V5, s);
  for (size_t i = 0; i < n; i++) {
    uint8_t buf[1024];
    int len = uvmqtt_encode(&s[i].pkt, UVMQTT_V5, buf, sizeof(buf));
    assert_true(len > 0);
    uvmqtt_packet_t out;
    size_t off = 99;
    uvmqtt_role_t other = s[i].role == UVMQTT_ROLE_CLIENT ? UVMQTT_ROLE_SERVER
                                                          : UVMQTT_ROLE_CLIENT;
    int t = s[i].pkt.type;
    bool client_only = t == UVMQTT_CONNACK || t == UVMQTT_SUBACK ||
                       t == UVMQTT_UNSUBACK || t == UVMQTT_PINGRESP;
    bool server_only = t == UVMQTT_CONNECT || t == UVMQTT_SUBSCRIBE ||
                       t == UVMQTT_UNSUBSCRIBE || t == UVMQTT_PINGREQ;
    int rc = uvmqtt_decode(buf, (size_t)len, UVMQTT_V5, other, &out, &off);
    if (client_only || server_only) {
      assert_int_equal(rc, UVMQTT_ETYPE);
      assert_int_equal(off, 0);
    }
  }
}

/* Strings, binary data and properties at their 65535-byte maximum. */
static void test_max_fields(void **state) {
  (void)state;
  char *big = malloc(65536);
  assert_non_null(big);
  memset(big, 'x', 65536);
  uvmqtt_str_t bs = {big, 65535};
  uvmqtt_bin_t bb = {(const uint8_t *)big, 65535};
  uvmqtt_user_prop_t up = {bs, bs};
  for (size_t vi = 0; vi < sizeof(versions); vi++) {
    uint8_t v = versions[vi];
    uvmqtt_packet_t p;
    size_t len;
    memset(&p, 0, sizeof(p));
    p.type = UVMQTT_CONNECT;
    p.u.connect.protocol_version = v;
    p.u.connect.client_id = bs;
    p.u.connect.will = true;
    p.u.connect.will_topic = bs;
    p.u.connect.will_payload = bb;
    p.u.connect.has_username = true;
    p.u.connect.username = bs;
    p.u.connect.has_password = true;
    p.u.connect.password = bb;
    if (v == UVMQTT_V5) {
      p.u.connect.props.present =
          UVMQTT_PROP_BIT(UVMQTT_PROP_AUTHENTICATION_METHOD) |
          UVMQTT_PROP_BIT(UVMQTT_PROP_AUTHENTICATION_DATA);
      p.u.connect.props.authentication_method = bs;
      p.u.connect.props.authentication_data = bb;
      p.u.connect.props.user_props = &up;
      p.u.connect.props.user_prop_count = 1;
      p.u.connect.will_props.present =
          UVMQTT_PROP_BIT(UVMQTT_PROP_CORRELATION_DATA);
      p.u.connect.will_props.correlation_data = bb;
    }
    free(roundtrip(&p, v, UVMQTT_ROLE_SERVER, &len));

    memset(&p, 0, sizeof(p));
    p.type = UVMQTT_PUBLISH;
    p.u.publish.qos = 1;
    p.u.publish.packet_id = 9;
    p.u.publish.topic = bs;
    p.u.publish.payload = bb;
    if (v == UVMQTT_V5) {
      p.u.publish.props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_RESPONSE_TOPIC);
      p.u.publish.props.response_topic = bs;
    }
    /* The head exceeds 512 bytes here: use encode and decode only. */
    size_t size;
    assert_int_equal(uvmqtt_encode_size(&p, v, &size), 0);
    uint8_t *buf = malloc(size);
    assert_int_equal(uvmqtt_encode(&p, v, buf, size), (int)size);
    uvmqtt_packet_t d;
    assert_int_equal(uvmqtt_decode(buf, size, v, UVMQTT_ROLE_CLIENT, &d, NULL),
                     0);
    assert_true(pkt_equal(&p, &d));
    free(buf);

    /* One byte more is refused. */
    p.u.publish.topic.len = 65536;
    assert_int_equal(uvmqtt_encode_size(&p, v, &size), UVMQTT_ETOOBIG);
  }
  free(big);
}

/* PUBLISH packets whose remaining length sits on each varint boundary. */
static void test_remaining_length_boundaries(void **state) {
  (void)state;
  static const uint32_t rls[] = {127,     128,     16383,    16384,
                                 2097151, 2097152, 268435455};
  static const int widths[] = {1, 2, 2, 3, 3, 4, 4};
  /* rl 0 is a PINGREQ / PINGRESP / 3.x DISCONNECT. */
  uvmqtt_packet_t ping = {.type = UVMQTT_PINGRESP};
  uint8_t two[2];
  assert_int_equal(uvmqtt_encode(&ping, UVMQTT_V311, two, 2), 2);
  assert_int_equal(two[0], 0xD0);
  assert_int_equal(two[1], 0x00);

  uint8_t *payload = calloc(1, 2097152);
  assert_non_null(payload);
  for (size_t i = 0; i < sizeof(rls) / sizeof(rls[0]); i++) {
    uvmqtt_packet_t p;
    memset(&p, 0, sizeof(p));
    p.type = UVMQTT_PUBLISH;
    p.u.publish.topic = (uvmqtt_str_t){"t", 1};
    /* v3.1.1 QoS 0: remaining length = 2 + 1 + payload. */
    p.u.publish.payload.len = rls[i] - 3;
    p.u.publish.payload.data = payload;
    size_t size;
    assert_int_equal(uvmqtt_encode_size(&p, UVMQTT_V311, &size), 0);
    assert_int_equal(size, 1 + widths[i] + (size_t)rls[i]);
    assert_int_equal(uvmqtt_varint_size(rls[i]), widths[i]);
    uint8_t head[16];
    int h =
        uvmqtt_encode_publish_head(&p, UVMQTT_V311, head, sizeof(head), &size);
    assert_int_equal(h, 1 + widths[i] + 3);
    /* The parser reads the length back from the header alone. */
    uvmqtt_parser_t ps;
    uvmqtt_packet_t out;
    size_t used;
    uvmqtt_parser_init(&ps, UVMQTT_V311, UVMQTT_ROLE_CLIENT, 0);
    assert_int_equal(uvmqtt_parser_feed(&ps, head, (size_t)h, &used, &out),
                     UVMQTT_PARSE_NEED_BUFFER);
    assert_int_equal(used, 1 + widths[i]);
    assert_int_equal(ps.need, size);
    /* A lower limit refuses it as soon as the length is known. */
    uvmqtt_parser_init(&ps, UVMQTT_V311, UVMQTT_ROLE_CLIENT,
                       (uint32_t)size - 1);
    assert_int_equal(uvmqtt_parser_feed(&ps, head, (size_t)h, &used, &out),
                     UVMQTT_ETOOBIG);
    assert_int_equal(ps.error_offset, 0);
    if (rls[i] <= 2097152) { /* full round trip where memory is sane */
      size_t len;
      free(roundtrip(&p, UVMQTT_V311, UVMQTT_ROLE_CLIENT, &len));
    }
  }
  /* One past the protocol maximum. */
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_PUBLISH;
  p.u.publish.topic = (uvmqtt_str_t){"t", 1};
  p.u.publish.payload.data = payload;
  p.u.publish.payload.len = 268435455 - 3 + 1;
  size_t size;
  assert_int_equal(uvmqtt_encode_size(&p, UVMQTT_V311, &size), UVMQTT_ETOOBIG);
  assert_int_equal(uvmqtt_varint_size(268435456), 0);
  assert_int_equal(uvmqtt_varint_size(0), 1);
  free(payload);
}

static void test_encode_errors(void **state) {
  (void)state;
  uint8_t buf[256];
  size_t size;
  uvmqtt_packet_t p;

  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_PUBLISH;
  p.u.publish.topic = (uvmqtt_str_t){"t", 1};
  p.u.publish.qos = 3;
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V311, buf, sizeof(buf)),
                   UVMQTT_EQOS);
  p.u.publish.qos = 1;
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V311, buf, sizeof(buf)),
                   UVMQTT_EPACKETID);
  p.u.publish.qos = 0;
  p.u.publish.dup = true;
  assert_int_equal(uvmqtt_encode_size(&p, UVMQTT_V311, &size), UVMQTT_EFLAGS);
  p.u.publish.dup = false;
  assert_int_equal(uvmqtt_encode(&p, 6, buf, sizeof(buf)), UVMQTT_EVERSION);
  assert_int_equal(uvmqtt_encode(&p, 0, buf, sizeof(buf)), UVMQTT_EVERSION);
  p.u.publish.props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_RECEIVE_MAXIMUM);
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)),
                   UVMQTT_EPROPBAD);
  /* 3.x ignores properties. */
  assert_true(uvmqtt_encode(&p, UVMQTT_V311, buf, sizeof(buf)) > 0);
  p.u.publish.props.present = UVMQTT_PROP_BIT(40) << 10; /* unknown id */
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)),
                   UVMQTT_EPROPBAD);
  p.u.publish.props.present = 0;
  p.u.publish.props.user_prop_count = 1; /* no array, no raw */
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)),
                   UVMQTT_EINVAL);
  p.u.publish.props.user_prop_count = 0;
  uint32_t zero = 0;
  p.u.publish.props.sub_ids = &zero;
  p.u.publish.props.sub_id_count = 1;
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)),
                   UVMQTT_EPROPVAL);
  p.u.publish.props.sub_ids = NULL;
  p.u.publish.props.sub_id_count = 0;
  p.u.publish.payload.len = 4; /* NULL data */
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)),
                   UVMQTT_EINVAL);

  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_AUTH;
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V311, buf, sizeof(buf)),
                   UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)), 2);
  p.type = 0;
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)),
                   UVMQTT_EINVAL);

  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_PUBACK;
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)),
                   UVMQTT_EPACKETID);
  p.type = UVMQTT_SUBSCRIBE;
  p.u.subscribe.packet_id = 1;
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)),
                   UVMQTT_EINVAL); /* no entries */
  uvmqtt_subscription_t sub = {{"a", 1}, 3};
  p.u.subscribe.subs = &sub;
  p.u.subscribe.count = 1;
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)), UVMQTT_EQOS);
  sub.options = 1;
  uint32_t ids[2] = {1, 2};
  p.u.subscribe.props.sub_ids = ids;
  p.u.subscribe.props.sub_id_count = 2;
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)),
                   UVMQTT_EPROPDUP);
  p.u.subscribe.props.sub_id_count = 1;
  assert_true(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)) > 0);

  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_CONNECT;
  p.u.connect.protocol_version = UVMQTT_V5;
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V311, buf, sizeof(buf)),
                   UVMQTT_EINVAL);
  p.u.connect.protocol_version = 0; /* means the version argument */
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V311, buf, sizeof(buf)), 14);
  p.u.connect.has_password = true;
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V311, buf, sizeof(buf)),
                   UVMQTT_EINVAL);
  assert_true(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)) > 0);
  p.u.connect.has_password = false;
  p.u.connect.will_qos = 1;
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V311, buf, sizeof(buf)),
                   UVMQTT_EINVAL);
  p.u.connect.will = true;
  p.u.connect.will_qos = 3;
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V311, buf, sizeof(buf)),
                   UVMQTT_EQOS);
  p.u.connect.will_qos = 0;
  p.u.connect.will_props.present =
      UVMQTT_PROP_BIT(UVMQTT_PROP_SESSION_EXPIRY_INTERVAL);
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)),
                   UVMQTT_EPROPBAD);
  assert_int_equal(uvmqtt_encode_size(NULL, UVMQTT_V5, &size), UVMQTT_EINVAL);
}

/* Spot-check a few exact encodings against hand-written bytes. */
static void test_exact_bytes(void **state) {
  (void)state;
  uint8_t buf[64];
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_PUBREL;
  p.u.ack.packet_id = 0x1234;
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V311, buf, sizeof(buf)), 4);
  assert_memory_equal(buf, "\x62\x02\x12\x34", 4);
  p.u.ack.reason_code = 0x92;
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)), 5);
  assert_memory_equal(buf, "\x62\x03\x12\x34\x92", 5);
  p.u.ack.reason_code = 0; /* 3.x ignores the reason */
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)), 4);

  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_DISCONNECT;
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)), 2);
  assert_memory_equal(buf, "\xe0\x00", 2);
  p.u.disconnect.reason_code = 0x8E;
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)), 3);
  assert_memory_equal(buf, "\xe0\x01\x8e", 3);
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V311, buf, sizeof(buf)), 2);

  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_UNSUBACK;
  p.u.suback.packet_id = 7;
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V311, buf, sizeof(buf)), 4);
  assert_memory_equal(buf, "\xb0\x02\x00\x07", 4);

  /* 3.x SUBSCRIBE writes only the QoS bits of the options. */
  uvmqtt_subscription_t sub = {{"a", 1}, 0x2D};
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_SUBSCRIBE;
  p.u.subscribe.packet_id = 1;
  p.u.subscribe.subs = &sub;
  p.u.subscribe.count = 1;
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V311, buf, sizeof(buf)), 8);
  assert_memory_equal(buf, "\x82\x06\x00\x01\x00\x01\x61\x01", 8);
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)), 9);
  assert_memory_equal(buf, "\x82\x07\x00\x01\x00\x00\x01\x61\x2d", 9);

  /* 3.1 CONNECT uses MQIsdp. */
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_CONNECT;
  p.u.connect.clean_start = true;
  p.u.connect.keep_alive = 60;
  p.u.connect.client_id = (uvmqtt_str_t){"id", 2};
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V31, buf, sizeof(buf)), 18);
  assert_memory_equal(buf,
                      "\x10\x10\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x02"
                      "id",
                      18);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_samples_all_versions),
      cmocka_unit_test(test_role_rejection),
      cmocka_unit_test(test_max_fields),
      cmocka_unit_test(test_remaining_length_boundaries),
      cmocka_unit_test(test_encode_errors),
      cmocka_unit_test(test_exact_bytes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
