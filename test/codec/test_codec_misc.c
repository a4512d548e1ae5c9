/* Codec helpers: UTF-8 check, names, reason strings, the property table,
 * the walkers over decoded repeatable fields; the retry policy of
 * errors.c. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec_util.h"

static void test_utf8_check(void **state) {
  (void)state;
  static const struct {
    const char *s;
    size_t len;
    int rc;
    size_t off;
  } t[] = {
      {"", 0, 0, 0},
      {"plain ascii, longer than eight bytes", 36, 0, 0},
      {"a+b#c", 5, 0, 0}, /* wildcards are fine in plain strings */
      {"\xc2\x80", 2, 0, 0},
      {"\xdf\xbf", 2, 0, 0},
      {"\xe0\xa0\x80", 3, 0, 0},
      {"\xed\x9f\xbf", 3, 0, 0},        /* U+D7FF */
      {"\xee\x80\x80", 3, 0, 0},        /* U+E000 */
      {"\xef\xbf\xbf", 3, 0, 0},        /* U+FFFF (noncharacter: allowed) */
      {"\xf0\x90\x80\x80", 4, 0, 0},    /* U+10000 */
      {"\xf4\x8f\xbf\xbf", 4, 0, 0},    /* U+10FFFF */
      {"abc\0def", 7, UVMQTT_EUTF8, 3}, /* U+0000 */
      {"abcdefgh\0", 9, UVMQTT_EUTF8, 8},
      {"\x80", 1, UVMQTT_EUTF8, 0},             /* stray continuation */
      {"ab\xc0\x80", 4, UVMQTT_EUTF8, 2},       /* overlong NUL */
      {"\xc1\xbf", 2, UVMQTT_EUTF8, 0},         /* overlong */
      {"\xe0\x9f\xbf", 3, UVMQTT_EUTF8, 0},     /* overlong 3-byte */
      {"\xed\xa0\x80", 3, UVMQTT_EUTF8, 0},     /* U+D800 */
      {"\xed\xbf\xbf", 3, UVMQTT_EUTF8, 0},     /* U+DFFF */
      {"\xf0\x8f\xbf\xbf", 4, UVMQTT_EUTF8, 0}, /* overlong 4-byte */
      {"\xf4\x90\x80\x80", 4, UVMQTT_EUTF8, 0}, /* U+110000 */
      {"\xf5\x80\x80\x80", 4, UVMQTT_EUTF8, 0},
      {"\xff", 1, UVMQTT_EUTF8, 0},
      {"x\xc3", 2, UVMQTT_EUTF8, 1},        /* truncated */
      {"x\xe2\x82", 3, UVMQTT_EUTF8, 1},    /* truncated */
      {"\xe2\x28\xa1", 3, UVMQTT_EUTF8, 0}, /* bad continuation */
      {"\xf0\x9f\x98\x28", 4, UVMQTT_EUTF8, 0},
      {"0123456\xc3\xa9xyz", 12, 0, 0}, /* non-ASCII across the 8-byte step */
  };
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    size_t off = 999;
    int rc = uvmqtt_utf8_check(t[i].s, t[i].len, &off);
    if (rc != t[i].rc || (rc && off != t[i].off))
      fail_msg("case %zu: got %d at %zu", i, rc, off);
  }
  assert_int_equal(uvmqtt_utf8_check(NULL, 0, NULL), 0);
  assert_int_equal(uvmqtt_utf8_check(NULL, 1, NULL), UVMQTT_EINVAL);
}

static void test_names(void **state) {
  (void)state;
  assert_string_equal(uvmqtt_packet_name(UVMQTT_PUBLISH), "PUBLISH");
  assert_string_equal(uvmqtt_packet_name(UVMQTT_AUTH), "AUTH");
  assert_string_equal(uvmqtt_packet_name(UVMQTT_CONNECT), "CONNECT");
  assert_string_equal(uvmqtt_packet_name(0), "UNKNOWN");
  assert_string_equal(uvmqtt_packet_name(16), "UNKNOWN");
  assert_string_equal(uvmqtt_packet_name(-1), "UNKNOWN");
  for (int t = 1; t <= 15; t++)
    assert_string_not_equal(uvmqtt_packet_name(t), "UNKNOWN");

  assert_string_equal(uvmqtt_reason_string(0x87, false), "Not authorized");
  assert_string_equal(uvmqtt_reason_string(0x00, false), "Success");
  assert_string_equal(uvmqtt_reason_string(0xA2, false),
                      "Wildcard Subscriptions not supported");
  assert_string_equal(uvmqtt_reason_string(0x03, false), "Unknown reason code");
  assert_string_equal(uvmqtt_reason_string(5, true), "Not authorized");
  assert_string_equal(uvmqtt_reason_string(1, true),
                      "Unacceptable protocol version");
  assert_string_equal(uvmqtt_reason_string(6, true), "Unknown return code");
  /* Every code of the v5 table has its own words. */
  static const uint8_t v5[] = {
      0x00, 0x01, 0x02, 0x04, 0x10, 0x11, 0x18, 0x19, 0x80, 0x81, 0x82,
      0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8B, 0x8C, 0x8D,
      0x8E, 0x8F, 0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98,
      0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2};
  for (size_t i = 0; i < sizeof(v5); i++) {
    assert_string_not_equal(uvmqtt_reason_string(v5[i], false),
                            "Unknown reason code");
    for (size_t j = 0; j < i; j++)
      assert_string_not_equal(uvmqtt_reason_string(v5[i], false),
                              uvmqtt_reason_string(v5[j], false));
  }
}

static void test_property_table(void **state) {
  (void)state;
  int known = 0;
  for (int id = 0; id < 64; id++)
    if (uvmqtt_prop_type(id))
      known++;
  assert_int_equal(known, 27);
  assert_int_equal(uvmqtt_prop_type(UVMQTT_PROP_USER_PROPERTY),
                   UVMQTT_PROP_TYPE_UTF8_PAIR);
  assert_int_equal(uvmqtt_prop_type(UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER),
                   UVMQTT_PROP_TYPE_VARINT);
  assert_int_equal(uvmqtt_prop_type(UVMQTT_PROP_CORRELATION_DATA),
                   UVMQTT_PROP_TYPE_BINARY);
  assert_int_equal(uvmqtt_prop_type(UVMQTT_PROP_MAXIMUM_PACKET_SIZE),
                   UVMQTT_PROP_TYPE_U32);
  assert_int_equal(uvmqtt_prop_type(UVMQTT_PROP_TOPIC_ALIAS),
                   UVMQTT_PROP_TYPE_U16);
  assert_int_equal(uvmqtt_prop_type(4), 0);
  assert_int_equal(uvmqtt_prop_type(-1), 0);
  assert_string_equal(uvmqtt_prop_name(UVMQTT_PROP_TOPIC_ALIAS), "Topic Alias");
  assert_string_equal(uvmqtt_prop_name(4), "Unknown property");
  assert_true(uvmqtt_prop_allowed(UVMQTT_PROP_WILL_DELAY_INTERVAL,
                                  UVMQTT_CONNECT, true));
  assert_false(uvmqtt_prop_allowed(UVMQTT_PROP_WILL_DELAY_INTERVAL,
                                   UVMQTT_CONNECT, false));
  assert_false(uvmqtt_prop_allowed(UVMQTT_PROP_WILL_DELAY_INTERVAL,
                                   UVMQTT_PUBLISH, true));
  assert_true(
      uvmqtt_prop_allowed(UVMQTT_PROP_REASON_STRING, UVMQTT_PUBREL, false));
  assert_false(
      uvmqtt_prop_allowed(UVMQTT_PROP_REASON_STRING, UVMQTT_PUBLISH, false));
  assert_false(
      uvmqtt_prop_allowed(UVMQTT_PROP_USER_PROPERTY, UVMQTT_PINGREQ, false));
  assert_true(
      uvmqtt_prop_allowed(UVMQTT_PROP_USER_PROPERTY, UVMQTT_AUTH, false));
  assert_false(uvmqtt_prop_allowed(UVMQTT_PROP_USER_PROPERTY, 16, false));
  /* PINGREQ, PINGRESP carry no properties at all. */
  for (int id = 0; id < 64; id++) {
    assert_false(uvmqtt_prop_allowed(id, UVMQTT_PINGREQ, false));
    assert_false(uvmqtt_prop_allowed(id, UVMQTT_PINGRESP, false));
  }
}

/* The walkers over decoded data, and their bounds checks on a hand-made
 * (corrupt) raw block. */
static void test_walkers(void **state) {
  (void)state;
  size_t len;
  /* v5 PUBLISH from the server: two sub ids, two user props. */
  uint8_t *b = hex_decode("30 19 00 01 61 14"
                          " 0b 01 26 00 01 6b 00 01 76 0b ff 7f"
                          " 26 00 01 6c 00 02 77 77"
                          " 50",
                          &len);
  uvmqtt_packet_t p;
  size_t off = 0;
  int rc = uvmqtt_decode(b, len, UVMQTT_V5, UVMQTT_ROLE_CLIENT, &p, &off);
  if (rc)
    fail_msg("%s at %zu", uvmqtt_err_name(rc), off);
  const uvmqtt_props_t *pr = &p.u.publish.props;
  assert_int_equal(pr->sub_id_count, 2);
  assert_int_equal(pr->subscription_id, 1);
  assert_int_equal(pr->user_prop_count, 2);
  assert_null(pr->user_props);
  size_t pos = 0;
  uint32_t id;
  assert_int_equal(uvmqtt_props_next_sub_id(pr, &pos, &id), 1);
  assert_int_equal(id, 1);
  assert_int_equal(uvmqtt_props_next_sub_id(pr, &pos, &id), 1);
  assert_int_equal(id, 16383);
  assert_int_equal(uvmqtt_props_next_sub_id(pr, &pos, &id), 0);
  uvmqtt_user_prop_t up;
  pos = 0;
  assert_int_equal(uvmqtt_props_next_user(pr, &pos, &up), 1);
  assert_memory_equal(up.key.data, "k", 1);
  assert_memory_equal(up.value.data, "v", 1);
  assert_int_equal(uvmqtt_props_next_user(pr, &pos, &up), 1);
  assert_int_equal(up.value.len, 2);
  assert_int_equal(uvmqtt_props_next_user(pr, &pos, &up), 0);
  assert_int_equal(p.u.publish.payload.len, 1);
  assert_int_equal(p.u.publish.payload.data[0], 0x50);

  /* Corrupt raw blocks never read out of bounds. */
  static const uint8_t corrupt[][6] = {
      {0x26, 0x00, 0x09, 0x61, 0x00, 0x00}, /* key runs past */
      {0x26, 0x00, 0x01, 0x61, 0x00, 0x05}, /* value runs past */
      {0x0b, 0xff, 0xff, 0xff, 0xff, 0xff}, /* endless varint */
      {0x7f, 0x00, 0x00, 0x00, 0x00, 0x00}, /* unknown id */
  };
  for (size_t i = 0; i < 4; i++) {
    uvmqtt_props_t c;
    memset(&c, 0, sizeof(c));
    uint8_t *heap = malloc(6); /* exact size so ASan sees overruns */
    memcpy(heap, corrupt[i], 6);
    c.raw = heap;
    c.raw_len = 6;
    c.user_prop_count = 1;
    pos = 0;
    while (uvmqtt_props_next_user(&c, &pos, &up))
      ;
    pos = 0;
    while (uvmqtt_props_next_sub_id(&c, &pos, &id))
      ;
    free(heap);
  }

  /* SUBSCRIBE / UNSUBSCRIBE walkers over decoded payloads. */
  free(b);
  b = hex_decode("82 0e 00 05 00 01 61 01 00 03 62 2f 2b 02 00 01 23 00", &len);
  b[1] = (uint8_t)(len - 2);
  rc = uvmqtt_decode(b, len, UVMQTT_V311, UVMQTT_ROLE_SERVER, &p, &off);
  if (rc)
    fail_msg("%s at %zu", uvmqtt_err_name(rc), off);
  assert_int_equal(p.u.subscribe.count, 3);
  uvmqtt_subscription_t sub;
  pos = 0;
  int k = 0;
  while (uvmqtt_subscribe_next(&p.u.subscribe, &pos, &sub))
    k++;
  assert_int_equal(k, 3);
  assert_int_equal(sub.filter.len, 1);
  assert_int_equal(sub.options, 0);
  free(b);
  b = hex_decode("a2 0b 00 05 00 01 61 00 04 62 2f 2b 63", &len);
  /* "b/+c" is an invalid filter: EFILTER at its '+' */
  rc = uvmqtt_decode(b, len, UVMQTT_V311, UVMQTT_ROLE_SERVER, &p, &off);
  assert_int_equal(rc, UVMQTT_EFILTER);
  assert_int_equal(off, 11);
  free(b);
  b = hex_decode("a2 0a 00 05 00 01 61 00 03 62 2f 2b", &len);
  assert_int_equal(
      uvmqtt_decode(b, len, UVMQTT_V311, UVMQTT_ROLE_SERVER, &p, &off), 0);
  uvmqtt_str_t f;
  pos = 0;
  assert_int_equal(uvmqtt_unsubscribe_next(&p.u.unsubscribe, &pos, &f), 1);
  assert_int_equal(f.len, 1);
  assert_int_equal(uvmqtt_unsubscribe_next(&p.u.unsubscribe, &pos, &f), 1);
  assert_int_equal(f.len, 3);
  assert_int_equal(uvmqtt_unsubscribe_next(&p.u.unsubscribe, &pos, &f), 0);
  free(b);
}

/* The one retry policy (include/uvmqtt/errors.h): one code per group of
 * the rule, and the cases the client, the helpers and the tools used to
 * disagree on. */
static void test_retry_policy(void **state) {
  (void)state;
  static const int retry[] = {
      -104 /* a libuv network error (ECONNRESET) */,
      UVMQTT_ETIMEDOUT,
      UVMQTT_EKEEPALIVE,
      UVMQTT_EPEERCLOSED,
      UVMQTT_EDISCONNECTED,
      UVMQTT_EDNS,
      UVMQTT_EDNS_TIMEOUT,
      UVMQTT_EDNS_NXDOMAIN, /* a name may appear: the client retried it */
      UVMQTT_EDNS_NODATA,
      UVMQTT_ESRV_EXHAUSTED,
      UVMQTT_ETLS,
      UVMQTT_ETLS_HANDSHAKE,
      UVMQTT_ETLS_ALERT,
      UVMQTT_EWS_UPGRADE,
      UVMQTT_EWS_CLOSED,
      UVMQTT_EMALFORMED, /* a misbehaving broker */
      UVMQTT_EPROTOCOL,
      UVMQTT_EUNEXPECTED,
      UVMQTT_ENOMEM,
      UVMQTT_EBUSY,
      UVMQTT_ENOTCONN,
      UVMQTT_EQUEUEFULL,
  };
  static const int final[] = {
      0,
      1,
      UVMQTT_EINVAL,
      UVMQTT_ENOTSUP,
      UVMQTT_EURI,
      UVMQTT_ETOPIC,
      UVMQTT_ETLS_CONFIG,
      UVMQTT_ETLS_FILE,
      UVMQTT_ECLOSED,
      UVMQTT_EAUTH,
      UVMQTT_ECLIENTID,
      UVMQTT_ETLS_UNTRUSTED,
      UVMQTT_ETLS_EXPIRED,
      UVMQTT_ETLS_HOSTNAME,
      UVMQTT_ETLS_NOCERT,
      UVMQTT_ETLS_PSK,
      UVMQTT_EREFUSED,   /* the reason code decides */
      UVMQTT_EWS_STATUS, /* the HTTP status decides */
      UVMQTT_EDROPPED,
      UVMQTT_EEXPIRED,
      UVMQTT_ESESSION,
  };
  for (size_t i = 0; i < sizeof(retry) / sizeof(retry[0]); i++)
    if (uvmqtt_err_is_retryable(retry[i]) != 1)
      fail_msg("%s should be worth retrying", uvmqtt_err_name(retry[i]));
  for (size_t i = 0; i < sizeof(final) / sizeof(final[0]); i++)
    if (uvmqtt_err_is_retryable(final[i]) != 0)
      fail_msg("%s should be final", uvmqtt_err_name(final[i]));
  /* CONNACK: 3.x return codes, then 5.0 reason codes. */
  assert_int_equal(uvmqtt_connack_is_retryable(0), 0);
  for (unsigned code = 1; code <= 5; code++)
    assert_int_equal(uvmqtt_connack_is_retryable(code), code == 3);
  static const unsigned final5[] = {0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C};
  for (size_t i = 0; i < sizeof(final5) / sizeof(final5[0]); i++)
    assert_int_equal(uvmqtt_connack_is_retryable(final5[i]), 0);
  static const unsigned retry5[] = {0x80, 0x88, 0x89, 0x97, 0x9C, 0x9D, 0x9F};
  for (size_t i = 0; i < sizeof(retry5) / sizeof(retry5[0]); i++)
    assert_int_equal(uvmqtt_connack_is_retryable(retry5[i]), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_utf8_check),     cmocka_unit_test(test_names),
      cmocka_unit_test(test_property_table), cmocka_unit_test(test_walkers),
      cmocka_unit_test(test_retry_policy),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
