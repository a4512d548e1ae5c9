/* The incremental parser: every split position gives the same packets as
 * feeding the stream whole, so does one byte at a time and random chunks;
 * in-place views, the NEED_BUFFER protocol, limits, sticky errors. */
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

/* Concatenates the encoded samples `role` receives; *count their number. */
static uint8_t *build_stream(uint8_t v, uvmqtt_role_t role, size_t *len,
                             size_t *count) {
  sample_t s[SAMPLES_MAX];
  size_t n = samples_get(v, s), total = 0, k = 0;
  uint8_t *buf = NULL;
  for (size_t i = 0; i < n; i++) {
    if (s[i].role != role)
      continue;
    size_t size;
    assert_int_equal(uvmqtt_encode_size(&s[i].pkt, v, &size), 0);
    buf = realloc(buf, total + size);
    assert_non_null(buf);
    assert_int_equal(uvmqtt_encode(&s[i].pkt, v, buf + total, size), (int)size);
    total += size;
    k++;
  }
  *len = total;
  *count = k;
  return buf;
}

static size_t split_at;
static size_t split_chunk(size_t pos, void *state) {
  (void)state;
  return pos < split_at ? split_at - pos : (size_t)-1;
}
static size_t one_byte(size_t pos, void *state) {
  (void)pos;
  (void)state;
  return 1;
}
static size_t random_chunk(size_t pos, void *state) {
  (void)pos;
  uint32_t *seed = state;
  *seed = *seed * 1103515245u + 12345u;
  uint32_t r = (*seed >> 16) & 0x7FFF;
  /* Mostly tiny chunks, sometimes large ones. */
  return (r & 1) ? 1 + (r >> 1) % 7 : 1 + (r >> 1) % 300;
}

static void test_every_split(void **state) {
  (void)state;
  for (size_t vi = 0; vi < sizeof(versions); vi++) {
    for (int role = 0; role < 2; role++) {
      size_t len, count;
      uint8_t v = versions[vi];
      uint8_t *data = build_stream(v, (uvmqtt_role_t)role, &len, &count);
      stream_result_t whole, r;
      stream_run(data, len, v, (uvmqtt_role_t)role, 0, NULL, NULL, &whole);
      assert_int_equal(whole.error, 0);
      assert_int_equal(whole.count, count);
      assert_int_equal(whole.buffers_lent, 0); /* all in place */
      assert_true(count >= 8);
      /* Each packet's re-encoding equals its slice of the stream. */
      for (size_t i = 0; i < whole.count; i++) {
        assert_int_equal(whole.pkts[i].enc_len,
                         whole.pkts[i].end - whole.pkts[i].start);
        assert_memory_equal(whole.pkts[i].enc, data + whole.pkts[i].start,
                            whole.pkts[i].enc_len);
      }
      for (split_at = 1; split_at < len; split_at++) {
        stream_run(data, len, v, (uvmqtt_role_t)role, 0, split_chunk, NULL, &r);
        stream_assert_same(&whole, &r);
        stream_free(&r);
      }
      stream_run(data, len, v, (uvmqtt_role_t)role, 0, one_byte, NULL, &r);
      stream_assert_same(&whole, &r);
      stream_free(&r);
      for (uint32_t seed = 1; seed <= 20; seed++) {
        uint32_t st = seed;
        stream_run(data, len, v, (uvmqtt_role_t)role, 0, random_chunk, &st, &r);
        stream_assert_same(&whole, &r);
        stream_free(&r);
      }
      print_message("v%d %s: %zu packets, %zu bytes, %zu split runs\n", v,
                    role ? "server" : "client", count, len, len + 20);
      stream_free(&whole);
      free(data);
    }
  }
}

/* A stream with packets whose lengths take 1, 2, 3 bytes, split around
 * every header byte and at a sample of body positions. */
static void test_large_packets_split(void **state) {
  (void)state;
  static const size_t sizes[] = {0, 1, 124, 125, 16380, 16381, 70000};
  uint8_t *payload = malloc(70000);
  assert_non_null(payload);
  for (size_t i = 0; i < 70000; i++)
    payload[i] = (uint8_t)(i * 7);
  size_t cap = 200000, len = 0;
  uint8_t *data = malloc(cap);
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
    uvmqtt_packet_t p;
    memset(&p, 0, sizeof(p));
    p.type = UVMQTT_PUBLISH;
    p.u.publish.qos = 1;
    p.u.publish.packet_id = (uint16_t)(i + 1);
    p.u.publish.topic = (uvmqtt_str_t){"big/one", 7};
    p.u.publish.payload = (uvmqtt_bin_t){payload, sizes[i]};
    int n = uvmqtt_encode(&p, UVMQTT_V5, data + len, cap - len);
    assert_true(n > 0);
    len += (size_t)n;
    data[len++] = 0xD0; /* PINGRESP between them */
    data[len++] = 0x00;
  }
  stream_result_t whole, r;
  stream_run(data, len, UVMQTT_V5, UVMQTT_ROLE_CLIENT, 0, NULL, NULL, &whole);
  assert_int_equal(whole.error, 0);
  assert_int_equal(whole.count, 14);
  for (size_t i = 0; i < whole.count; i++) {
    uint64_t s = whole.pkts[i].start;
    /* Splits at the packet's first five bytes and two later places. */
    size_t at[] = {s + 1,
                   s + 2,
                   s + 3,
                   s + 4,
                   s + 5,
                   (s + whole.pkts[i].end) / 2,
                   whole.pkts[i].end - 1};
    for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++) {
      if (at[k] == 0 || at[k] >= len)
        continue;
      split_at = at[k];
      stream_run(data, len, UVMQTT_V5, UVMQTT_ROLE_CLIENT, 0, split_chunk, NULL,
                 &r);
      stream_assert_same(&whole, &r);
      stream_free(&r);
    }
  }
  stream_run(data, len, UVMQTT_V5, UVMQTT_ROLE_CLIENT, 0, one_byte, NULL, &r);
  stream_assert_same(&whole, &r);
  /* Split packets with a body needed a buffer; split PINGRESPs did not. */
  assert_int_equal(r.buffers_lent, 7);
  stream_free(&r);
  uint32_t seed = 42;
  stream_run(data, len, UVMQTT_V5, UVMQTT_ROLE_CLIENT, 0, random_chunk, &seed,
             &r);
  stream_assert_same(&whole, &r);
  stream_free(&r);
  /* With a 16384-byte maximum the packet with a 16380-byte payload is the
   * first refused, at its first byte. */
  stream_run(data, len, UVMQTT_V5, UVMQTT_ROLE_CLIENT, 16384, NULL, NULL, &r);
  assert_int_equal(r.error, UVMQTT_ETOOBIG);
  assert_int_equal(r.count, 8); /* 4 publishes + 4 pings before it */
  assert_int_equal(r.error_offset, whole.pkts[8].start);
  stream_free(&r);
  stream_free(&whole);
  free(data);
  free(payload);
}

/* A packet wholly inside the chunk is decoded in place. */
static void test_views_in_place(void **state) {
  (void)state;
  uint8_t buf[64];
  uvmqtt_packet_t p, out;
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_PUBLISH;
  p.u.publish.topic = (uvmqtt_str_t){"a/b", 3};
  p.u.publish.payload = (uvmqtt_bin_t){(const uint8_t *)"xyz", 3};
  int n = uvmqtt_encode(&p, UVMQTT_V311, buf, sizeof(buf));
  assert_int_equal(n, 10);
  uvmqtt_parser_t ps;
  size_t used;
  uvmqtt_parser_init(&ps, UVMQTT_V311, UVMQTT_ROLE_CLIENT, 0);
  assert_int_equal(uvmqtt_parser_feed(&ps, buf, (size_t)n, &used, &out),
                   UVMQTT_PARSE_PACKET);
  assert_int_equal(used, 10);
  assert_ptr_equal(out.u.publish.topic.data, (const char *)buf + 4);
  assert_ptr_equal(out.u.publish.payload.data, buf + 7);
  assert_null(uvmqtt_parser_take_buffer(&ps));
  assert_int_equal(ps.offset, 10);
  assert_int_equal(out.flags, 0);

  /* Split: the packet views the lent buffer. */
  assert_int_equal(uvmqtt_parser_feed(&ps, buf, 5, &used, &out),
                   UVMQTT_PARSE_NEED_BUFFER);
  assert_int_equal(used, 2);
  assert_int_equal(ps.need, 10);
  /* Feeding again without a buffer consumes nothing. */
  assert_int_equal(uvmqtt_parser_feed(&ps, buf + 2, 3, &used, &out),
                   UVMQTT_PARSE_NEED_BUFFER);
  assert_int_equal(used, 0);
  uint8_t lent[10];
  assert_int_equal(uvmqtt_parser_set_buffer(&ps, lent, sizeof(lent)), 0);
  assert_int_equal(uvmqtt_parser_feed(&ps, buf + 2, 3, &used, &out),
                   UVMQTT_PARSE_MORE);
  assert_int_equal(used, 3);
  assert_true(uvmqtt_parser_in_packet(&ps));
  assert_int_equal(uvmqtt_parser_feed(&ps, buf + 5, 100, &used, &out),
                   UVMQTT_PARSE_PACKET);
  assert_int_equal(used, 5);
  assert_ptr_equal(out.u.publish.payload.data, lent + 7);
  /* The buffer must be taken back before the next feed (not sticky). */
  assert_int_equal(uvmqtt_parser_feed(&ps, buf, 10, &used, &out),
                   UVMQTT_ESTATE);
  assert_int_equal(used, 0);
  assert_int_equal(ps.error, 0);
  assert_ptr_equal(uvmqtt_parser_take_buffer(&ps), lent);
  assert_null(uvmqtt_parser_take_buffer(&ps));
  assert_int_equal(uvmqtt_parser_feed(&ps, buf, 10, &used, &out),
                   UVMQTT_PARSE_PACKET);
  assert_int_equal(ps.offset, 30);
  /* Nothing asked for: set_buffer refuses. */
  assert_int_equal(uvmqtt_parser_set_buffer(&ps, lent, sizeof(lent)),
                   UVMQTT_EINVAL);
  /* Empty feed is fine. */
  assert_int_equal(uvmqtt_parser_feed(&ps, buf, 0, &used, &out),
                   UVMQTT_PARSE_MORE);
}

/* Taking the buffer mid-packet (teardown) gives it back and stops the
 * parser; an error inside a lent buffer gives the buffer back too. */
static void test_buffer_teardown(void **state) {
  (void)state;
  static const uint8_t pub[] = {0x30, 0x05, 0x00, 0x01, 0x61, 0x62, 0x63};
  uvmqtt_parser_t ps;
  uvmqtt_packet_t out;
  size_t used;
  uint8_t lent[16];
  uvmqtt_parser_init(&ps, UVMQTT_V311, UVMQTT_ROLE_CLIENT, 0);
  assert_int_equal(uvmqtt_parser_feed(&ps, pub, 3, &used, &out),
                   UVMQTT_PARSE_NEED_BUFFER);
  assert_int_equal(uvmqtt_parser_set_buffer(&ps, lent, sizeof(lent)), 0);
  assert_int_equal(uvmqtt_parser_feed(&ps, pub + 2, 1, &used, &out),
                   UVMQTT_PARSE_MORE);
  assert_ptr_equal(uvmqtt_parser_take_buffer(&ps), lent);
  assert_int_equal(ps.error, UVMQTT_ESTATE);
  assert_int_equal(uvmqtt_parser_feed(&ps, pub + 3, 4, &used, &out),
                   UVMQTT_ESTATE);
  assert_null(uvmqtt_parser_take_buffer(&ps));

  /* Malformed packet assembled in the lent buffer. */
  static const uint8_t bad[] = {0x40, 0x03, 0x00, 0x01, 0x00};
  uvmqtt_parser_init(&ps, UVMQTT_V311, UVMQTT_ROLE_CLIENT, 0);
  assert_int_equal(uvmqtt_parser_feed(&ps, bad, 2, &used, &out),
                   UVMQTT_PARSE_NEED_BUFFER);
  assert_int_equal(uvmqtt_parser_set_buffer(&ps, lent, sizeof(lent)), 0);
  assert_int_equal(uvmqtt_parser_feed(&ps, bad + 2, 3, &used, &out),
                   UVMQTT_ETRAILING);
  assert_int_equal(ps.error_offset, 4);
  assert_ptr_equal(uvmqtt_parser_take_buffer(&ps), lent);
  assert_null(uvmqtt_parser_take_buffer(&ps));
  assert_int_equal(uvmqtt_parser_feed(&ps, bad, 2, &used, &out),
                   UVMQTT_ETRAILING);
}

/* A server parser starts without a version, learns it from CONNECT, and
 * the limit may change between packets. */
static void test_server_version_and_limits(void **state) {
  (void)state;
  uint8_t buf[256];
  uvmqtt_packet_t c, out;
  memset(&c, 0, sizeof(c));
  c.type = UVMQTT_CONNECT;
  c.u.connect.client_id = (uvmqtt_str_t){"x", 1};
  int n = uvmqtt_encode(&c, UVMQTT_V5, buf, sizeof(buf));
  assert_true(n > 0);
  buf[n] = 0xE0; /* DISCONNECT, v5 short form with reason 0x04 */
  buf[n + 1] = 0x01;
  buf[n + 2] = 0x04;
  uvmqtt_parser_t ps;
  size_t used;
  uvmqtt_parser_init(&ps, 0, UVMQTT_ROLE_SERVER, 64);
  assert_int_equal(uvmqtt_parser_feed(&ps, buf, (size_t)n + 3, &used, &out),
                   UVMQTT_PARSE_PACKET);
  assert_int_equal(out.type, UVMQTT_CONNECT);
  assert_int_equal(out.u.connect.protocol_version, UVMQTT_V5);
  ps.version = out.u.connect.protocol_version;
  ps.max_packet_size = 2; /* changed between packets */
  assert_int_equal(uvmqtt_parser_feed(&ps, buf + used, 3, &used, &out),
                   UVMQTT_ETOOBIG);
  ps.error = 0; /* (test only) clear and retry with a sane limit */
  ps.max_packet_size = 3;
  assert_int_equal(uvmqtt_parser_feed(&ps, buf + n, 3, &used, &out),
                   UVMQTT_PARSE_PACKET);
  assert_int_equal(out.type, UVMQTT_DISCONNECT);
  assert_int_equal(out.u.disconnect.reason_code, 0x04);

  /* Without a version, anything but CONNECT is refused. */
  uvmqtt_parser_init(&ps, 0, UVMQTT_ROLE_SERVER, 0);
  assert_int_equal(uvmqtt_parser_feed(&ps, buf + n, 3, &used, &out),
                   UVMQTT_EVERSION);
  assert_int_equal(ps.error_offset, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_split),
      cmocka_unit_test(test_large_packets_split),
      cmocka_unit_test(test_views_in_place),
      cmocka_unit_test(test_buffer_teardown),
      cmocka_unit_test(test_server_version_and_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
