/* Byte vectors: the specifications' own examples, and real traffic captured
 * between mosquitto_pub/mosquitto_sub and mosquitto 2.0 (data/NAME.hex, made
 * by capture.py). Every captured packet is decoded (whole stream, every
 * split, one byte at a time) and re-encoded. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>

#include <cmocka.h>

#include "codec_util.h"

static const char *data_dir;

/* ---- specification examples ---------------------------------------------- */

/* MQTT 3.1.1 table 2.4 / MQTT 5.0 table 1-1: remaining length encodings. */
static void test_spec_varint_table(void **state) {
  (void)state;
  static const struct {
    uint32_t v;
    const char *hex;
  } t[] = {{0, "00"},
           {127, "7f"},
           {128, "80 01"},
           {16383, "ff 7f"},
           {16384, "80 80 01"},
           {2097151, "ff ff 7f"},
           {2097152, "80 80 80 01"},
           {268435455, "ff ff ff 7f"}};
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
    size_t n;
    uint8_t *b = hex_decode(t[i].hex, &n);
    assert_int_equal(uvmqtt_varint_size(t[i].v), (int)n);
    /* Decode through the parser: PUBLISH header + these bytes. */
    uint8_t hdr[5] = {0x30};
    memcpy(hdr + 1, b, n);
    uvmqtt_parser_t p;
    uvmqtt_packet_t out;
    size_t used;
    uvmqtt_parser_init(&p, UVMQTT_V311, UVMQTT_ROLE_CLIENT, 0);
    int rc = uvmqtt_parser_feed(&p, hdr, 1 + n, &used, &out);
    if (t[i].v == 0) {
      /* A PUBLISH cannot be empty: header parsed, body rejected. */
      assert_int_equal(rc, UVMQTT_ETRUNC);
    } else {
      assert_int_equal(rc, UVMQTT_PARSE_NEED_BUFFER);
      assert_int_equal(p.need, 1 + n + t[i].v);
    }
    /* And encode: a PINGRESP-sized check through PUBLISH head. */
    if (t[i].v >= 3) {
      uvmqtt_packet_t pk;
      memset(&pk, 0, sizeof(pk));
      pk.type = UVMQTT_PUBLISH;
      pk.u.publish.topic = (uvmqtt_str_t){"t", 1};
      pk.u.publish.payload.data = (const uint8_t *)"";
      pk.u.publish.payload.len = t[i].v - 3;
      uint8_t head[16];
      int h = uvmqtt_encode_publish_head(&pk, UVMQTT_V311, head, sizeof(head),
                                         NULL);
      assert_int_equal(h, 1 + (int)n + 3);
      assert_memory_equal(head + 1, b, n);
    }
    free(b);
  }
}

static int encode_hex_check(const uvmqtt_packet_t *p, uint8_t v,
                            const char *hex, size_t from) {
  uint8_t buf[256];
  size_t n;
  int len = uvmqtt_encode(p, v, buf, sizeof(buf));
  assert_true(len > 0);
  uint8_t *want = hex_decode(hex, &n);
  assert_true((size_t)len >= from + n);
  assert_memory_equal(buf + from, want, n);
  free(want);
  return len;
}

/* MQTT 3.1.1 figure 1.3 / 5.0 figure 1-2: "A\U0002A6D4". */
static void test_spec_utf8_example(void **state) {
  (void)state;
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_PUBLISH;
  p.u.publish.topic = (uvmqtt_str_t){"A\xF0\xAA\x9B\x94", 5};
  encode_hex_check(&p, UVMQTT_V311, "00 05 41 F0 AA 9B 94", 2);
  assert_int_equal(uvmqtt_utf8_check("A\xF0\xAA\x9B\x94", 5, NULL), 0);
}

/* MQTT 3.1.1 figure 3.6 (and the 3.1 example): CONNECT variable header with
 * user name, password, will QoS 1, will, clean session, keep alive 10. */
static void test_spec_connect_examples(void **state) {
  (void)state;
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_CONNECT;
  p.u.connect.clean_start = true;
  p.u.connect.keep_alive = 10;
  p.u.connect.client_id = (uvmqtt_str_t){"c", 1};
  p.u.connect.will = true;
  p.u.connect.will_qos = 1;
  p.u.connect.will_topic = (uvmqtt_str_t){"w", 1};
  p.u.connect.has_username = true;
  p.u.connect.username = (uvmqtt_str_t){"u", 1};
  p.u.connect.has_password = true;
  p.u.connect.password = (uvmqtt_bin_t){(const uint8_t *)"p", 1};
  encode_hex_check(&p, UVMQTT_V311, "00 04 4D 51 54 54 04 CE 00 0A", 2);
  encode_hex_check(&p, UVMQTT_V31, "00 06 4D 51 49 73 64 70 03 CE 00 0A", 2);

  /* MQTT 5.0 figure 3-6: flags C2 (user name, password, clean start), keep
   * alive 10, properties length 5, session expiry interval 10. */
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_CONNECT;
  p.u.connect.clean_start = true;
  p.u.connect.keep_alive = 10;
  p.u.connect.has_username = true;
  p.u.connect.has_password = true;
  p.u.connect.props.present =
      UVMQTT_PROP_BIT(UVMQTT_PROP_SESSION_EXPIRY_INTERVAL);
  p.u.connect.props.session_expiry_interval = 10;
  int len = encode_hex_check(
      &p, UVMQTT_V5, "00 04 4D 51 54 54 05 C2 00 0A 05 11 00 00 00 0A", 2);
  uint8_t buf[64];
  assert_int_equal(uvmqtt_encode(&p, UVMQTT_V5, buf, sizeof(buf)), len);
  uvmqtt_packet_t d;
  assert_int_equal(
      uvmqtt_decode(buf, (size_t)len, 0, UVMQTT_ROLE_SERVER, &d, NULL), 0);
  assert_int_equal(d.u.connect.protocol_version, UVMQTT_V5);
  assert_int_equal(d.u.connect.props.session_expiry_interval, 10);
}

/* MQTT 3.1.1 figures 3.11, 3.22, 3.26, 3.30: PUBLISH, SUBSCRIBE, SUBACK,
 * UNSUBSCRIBE examples with packet id 10. */
static void test_spec_311_examples(void **state) {
  (void)state;
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_PUBLISH;
  p.u.publish.qos = 1;
  p.u.publish.packet_id = 10;
  p.u.publish.topic = (uvmqtt_str_t){"a/b", 3};
  encode_hex_check(&p, UVMQTT_V311, "32 07 00 03 61 2F 62 00 0A", 0);

  static const uvmqtt_subscription_t subs[] = {{{"a/b", 3}, 1},
                                               {{"c/d", 3}, 2}};
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_SUBSCRIBE;
  p.u.subscribe.packet_id = 10;
  p.u.subscribe.subs = subs;
  p.u.subscribe.count = 2;
  encode_hex_check(&p, UVMQTT_V311,
                   "82 0E 00 0A 00 03 61 2F 62 01 00 03 63 2F 64 02", 0);

  static const uint8_t codes[] = {0x00, 0x02, 0x80};
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_SUBACK;
  p.u.suback.packet_id = 10;
  p.u.suback.codes = codes;
  p.u.suback.count = 3;
  encode_hex_check(&p, UVMQTT_V311, "90 05 00 0A 00 02 80", 0);

  static const uvmqtt_str_t filters[] = {{"a/b", 3}, {"c/d", 3}};
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_UNSUBSCRIBE;
  p.u.unsubscribe.packet_id = 10;
  p.u.unsubscribe.filters = filters;
  p.u.unsubscribe.count = 2;
  encode_hex_check(&p, UVMQTT_V311, "A2 0C 00 0A 00 03 61 2F 62 00 03 63 2F 64",
                   0);
}

/* ---- captures --------------------------------------------------------------
 */

typedef struct {
  uint8_t *c, *s; /* client->server and server->client bytes */
  size_t clen, slen;
} conn_t;

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

static void append(uint8_t **buf, size_t *len, const char *hex) {
  size_t n;
  uint8_t *b = hex_decode(hex, &n);
  *buf = realloc(*buf, *len + n + 1);
  assert_non_null(*buf);
  memcpy(*buf + *len, b, n);
  *len += n;
  free(b);
}

static size_t exact_total, semantic_total, packets_total;

/* Decodes the stream in every way, checks each packet re-encodes. */
static void check_stream(const char *file, const uint8_t *data, size_t len,
                         uint8_t version, uvmqtt_role_t role) {
  if (len == 0)
    return;
  stream_result_t whole, r;
  /* The server side learns the version from CONNECT (version 0). */
  uint8_t v0 = role == UVMQTT_ROLE_SERVER ? 0 : version;
  stream_run(data, len, v0, role, 0, NULL, NULL, &whole);
  if (whole.error)
    fail_msg("%s (%s side): %s at %llu", file,
             role == UVMQTT_ROLE_SERVER ? "server" : "client",
             uvmqtt_err_name(whole.error),
             (unsigned long long)whole.error_offset);
  assert_true(whole.count > 0);
  assert_int_equal(whole.pkts[whole.count - 1].end, len);
  for (size_t i = 0; i < whole.count; i++) {
    const seen_pkt_t *sp = &whole.pkts[i];
    const uint8_t *orig = data + sp->start;
    size_t olen = (size_t)(sp->end - sp->start);
    packets_total++;
    if (sp->enc_len == olen && memcmp(sp->enc, orig, olen) == 0) {
      exact_total++;
      continue;
    }
    /* Only a v5 property block written in another order may differ: same
     * size, same content. */
    assert_int_equal(version, UVMQTT_V5);
    assert_int_equal(sp->enc_len, olen);
    uvmqtt_packet_t a, b;
    assert_int_equal(uvmqtt_decode(orig, olen, version, role, &a, NULL), 0);
    assert_int_equal(uvmqtt_decode(sp->enc, olen, version, role, &b, NULL), 0);
    assert_true(pkt_equal(&a, &b));
    semantic_total++;
  }
  for (split_at = 1; split_at < len; split_at++) {
    stream_run(data, len, v0, role, 0, split_chunk, NULL, &r);
    stream_assert_same(&whole, &r);
    stream_free(&r);
  }
  stream_run(data, len, v0, role, 0, one_byte, NULL, &r);
  stream_assert_same(&whole, &r);
  stream_free(&r);
  stream_free(&whole);
}

static void check_file(const char *dir, const char *name) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char line[4096];
  int version = -1;
  conn_t conns[8];
  size_t nconn = 0;
  memset(conns, 0, sizeof(conns));
  while (fgets(line, sizeof(line), f)) {
    line[strcspn(line, "\r\n")] = 0;
    if (line[0] == '#' || line[0] == 0)
      continue;
    if (strncmp(line, "version ", 8) == 0) {
      version = atoi(line + 8);
    } else if (strcmp(line, "connection") == 0) {
      assert_true(nconn < 8);
      nconn++;
    } else if ((line[0] == 'c' || line[0] == 's') && line[1] == ' ') {
      assert_true(nconn > 0);
      conn_t *c = &conns[nconn - 1];
      if (line[0] == 'c')
        append(&c->c, &c->clen, line + 2);
      else
        append(&c->s, &c->slen, line + 2);
    } else {
      fail_msg("%s: bad line '%s'", name, line);
    }
  }
  fclose(f);
  assert_true(version >= 3 && version <= 5);
  assert_true(nconn > 0);
  for (size_t i = 0; i < nconn; i++) {
    check_stream(name, conns[i].c, conns[i].clen, (uint8_t)version,
                 UVMQTT_ROLE_SERVER);
    check_stream(name, conns[i].s, conns[i].slen, (uint8_t)version,
                 UVMQTT_ROLE_CLIENT);
    free(conns[i].c);
    free(conns[i].s);
  }
}

static void test_mosquitto_captures(void **state) {
  (void)state;
  DIR *d = opendir(data_dir);
  if (d == NULL)
    fail_msg("cannot open %s", data_dir);
  struct dirent *e;
  size_t files = 0;
  bool seen_version[6] = {false};
  while ((e = readdir(d)) != NULL) {
    size_t n = strlen(e->d_name);
    if (n < 5 || strcmp(e->d_name + n - 4, ".hex") != 0)
      continue;
    check_file(data_dir, e->d_name);
    seen_version[e->d_name[1] == '5' ? 5 : e->d_name[3] == '1' ? 4 : 3] = true;
    files++;
  }
  closedir(d);
  print_message("%zu capture files, %zu packets: %zu byte-exact, %zu equal "
                "with properties reordered\n",
                files, packets_total, exact_total, semantic_total);
  assert_true(files >= 10);
  assert_true(seen_version[3] && seen_version[4] && seen_version[5]);
  /* Everything the clients sent re-encodes byte for byte; only the broker's
   * CONNACK property order differs from ours. */
  assert_true(exact_total >= packets_total - semantic_total);
  assert_true(semantic_total * 4 < packets_total);
}

int main(int argc, char **argv) {
  const char *env = getenv("UVMQTT_TEST_SRCDIR");
  static char buf[1024];
  if (argc > 1) {
    data_dir = argv[1];
  } else if (env) {
    snprintf(buf, sizeof(buf), "%s/codec/data", env);
    data_dir = buf;
  } else {
    data_dir = "test/codec/data";
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_spec_varint_table),
      cmocka_unit_test(test_spec_utf8_example),
      cmocka_unit_test(test_spec_connect_examples),
      cmocka_unit_test(test_spec_311_examples),
      cmocka_unit_test(test_mosquitto_captures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
