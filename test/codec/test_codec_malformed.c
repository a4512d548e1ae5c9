/* Every malformed input gets its specific error at its byte offset, both
 * from uvmqtt_decode() and from the parser fed whole and byte by byte. */
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "codec_util.h"

enum { BOTH = 0, DECODE_ONLY = 1, PARSER_ONLY = 2 };

typedef struct {
  const char *name;
  uint8_t version;
  uvmqtt_role_t role;
  const char *hex;
  int err;
  size_t off;
  int mode;
  uint32_t max_size; /* parser only */
} bad_case_t;

#define C UVMQTT_ROLE_CLIENT
#define S UVMQTT_ROLE_SERVER

static const bad_case_t cases[] = {
    /* ---- fixed header ---- */
    {"reserved type 0", 4, C, "00 00", UVMQTT_ETYPE, 0},
    {"reserved type 0 (server)", 5, S, "00 00", UVMQTT_ETYPE, 0},
    {"CONNECT to client", 4, C, "10 00", UVMQTT_ETYPE, 0},
    {"SUBSCRIBE to client", 4, C, "82 06 00 01 00 01 61 00", UVMQTT_ETYPE, 0},
    {"UNSUBSCRIBE to client", 5, C, "a2 02 00 01", UVMQTT_ETYPE, 0},
    {"PINGREQ to client", 3, C, "c0 00", UVMQTT_ETYPE, 0},
    {"CONNACK to server", 4, S, "20 02 00 00", UVMQTT_ETYPE, 0},
    {"SUBACK to server", 4, S, "90 03 00 01 00", UVMQTT_ETYPE, 0},
    {"UNSUBACK to server", 5, S, "b0 02 00 01", UVMQTT_ETYPE, 0},
    {"PINGRESP to server", 4, S, "d0 00", UVMQTT_ETYPE, 0},
    {"AUTH in 3.1.1", 4, C, "f0 00", UVMQTT_ETYPE, 0},
    {"AUTH in 3.1", 3, S, "f0 00", UVMQTT_ETYPE, 0},
    {"unknown version", 0, C, "d0 00", UVMQTT_EVERSION, 0},
    {"PUBREL flags 0000", 4, C, "60 02 00 01", UVMQTT_EFLAGS, 0},
    {"PUBREL with DUP in 3.1.1", 4, C, "6a 02 00 01", UVMQTT_EFLAGS, 0},
    {"SUBSCRIBE flags 0000", 4, S, "80 06 00 01 00 01 61 00", UVMQTT_EFLAGS, 0},
    {"UNSUBSCRIBE flags 0011", 5, S, "a3 02 00 01", UVMQTT_EFLAGS, 0},
    {"PUBACK flags 0001", 4, C, "41 02 00 01", UVMQTT_EFLAGS, 0},
    {"PINGRESP flags 1000", 4, C, "d8 00", UVMQTT_EFLAGS, 0},
    {"DISCONNECT flags 0100", 5, S, "e4 00", UVMQTT_EFLAGS, 0},
    {"CONNECT flags 0001", 4, S, "11 00", UVMQTT_EFLAGS, 0},
    {"PUBLISH QoS 3", 4, C, "36 05 00 01 61 00 01", UVMQTT_EQOS, 0},
    {"PUBLISH QoS 0 with DUP", 4, C, "38 03 00 01 61", UVMQTT_EFLAGS, 0},
    {"remaining length 5 bytes", 4, C, "30 ff ff ff ff 01", UVMQTT_EREMLEN, 4},
    {"remaining length 80 00", 4, C, "30 80 00", UVMQTT_EREMLEN, 2},
    {"remaining length 80 80 00", 5, C, "d0 80 80 00", UVMQTT_EREMLEN, 3},
    {"remaining length ff 80 00", 3, C, "30 ff 80 00", UVMQTT_EREMLEN, 3},
    {"packet over the maximum", 4, C, "30 0a 00 01 61 00 00 00 00 00 00 00",
     UVMQTT_ETOOBIG, 0, PARSER_ONLY, 11},
    {"packet over the maximum, long length", 4, C, "30 80 80 01",
     UVMQTT_ETOOBIG, 0, PARSER_ONLY, 16384},
    /* ---- packet identifiers ---- */
    {"PUBLISH QoS 1 id 0", 4, C, "32 05 00 01 61 00 00", UVMQTT_EPACKETID, 5},
    {"PUBLISH QoS 2 id 0 (v5)", 5, S, "34 06 00 01 61 00 00 00",
     UVMQTT_EPACKETID, 5},
    {"PUBACK id 0", 4, C, "40 02 00 00", UVMQTT_EPACKETID, 2},
    {"PUBCOMP id 0 (v5)", 5, S, "70 02 00 00", UVMQTT_EPACKETID, 2},
    {"SUBACK id 0", 4, C, "90 03 00 00 00", UVMQTT_EPACKETID, 2},
    {"SUBSCRIBE id 0", 4, S, "82 06 00 00 00 01 61 00", UVMQTT_EPACKETID, 2},
    {"UNSUBSCRIBE id 0", 3, S, "a2 05 00 00 00 01 61", UVMQTT_EPACKETID, 2},
    /* ---- strings ---- */
    {"topic C3 28", 4, C, "30 04 00 02 c3 28", UVMQTT_EUTF8, 4},
    {"topic with U+0000", 4, C, "30 04 00 02 61 00", UVMQTT_EUTF8, 5},
    {"topic with surrogate", 4, C, "30 05 00 03 ed a0 80", UVMQTT_EUTF8, 4},
    {"topic overlong C0 80", 4, C, "30 04 00 02 c0 80", UVMQTT_EUTF8, 4},
    {"topic overlong E0 80 80", 5, C, "30 06 00 03 e0 80 80 00", UVMQTT_EUTF8,
     4},
    {"topic above U+10FFFF", 4, C, "30 06 00 04 f4 90 80 80", UVMQTT_EUTF8, 4},
    {"topic truncated sequence", 4, C, "30 04 00 02 61 e2", UVMQTT_EUTF8, 5},
    {"topic with FF", 4, C, "30 03 00 01 ff", UVMQTT_EUTF8, 4},
    {"topic NUL after 8 ASCII bytes", 4, C,
     "30 0c 00 0a 61 62 63 64 65 66 67 68 69 00", UVMQTT_EUTF8, 13},
    {"topic with +", 4, C, "30 05 00 03 61 2f 2b", UVMQTT_EWILDCARD, 6},
    {"topic with #", 4, C, "30 03 00 01 23", UVMQTT_EWILDCARD, 4},
    {"topic with # after 8 bytes", 4, C,
     "30 0d 00 0b 61 62 63 64 65 66 67 68 2f 23 7a", UVMQTT_EWILDCARD, 13},
    {"empty topic in 3.1.1", 4, C, "30 02 00 00", UVMQTT_ETOPIC, 2},
    {"empty topic without alias (v5)", 5, C, "30 03 00 00 00", UVMQTT_ETOPIC,
     2},
    {"client id bad UTF-8", 4, S,
     "10 0d 00 04 4d 51 54 54 04 02 00 3c 00 01 80", UVMQTT_EUTF8, 14},
    {"user name with U+0000", 4, S,
     "10 10 00 04 4d 51 54 54 04 82 00 3c 00 01 61 00 01 00", UVMQTT_EUTF8, 17},
    {"will topic with wildcard", 4, S,
     "10 14 00 04 4d 51 54 54 04 06 00 3c 00 01 63 00 03 61 2f 23 00 00",
     UVMQTT_EWILDCARD, 19},
    {"empty will topic", 4, S,
     "10 11 00 04 4d 51 54 54 04 06 00 3c 00 01 63 00 00 00 00", UVMQTT_ETOPIC,
     15},
    {"filter a#", 4, S, "82 07 00 01 00 02 61 23 00", UVMQTT_EFILTER, 7},
    {"filter a/+b", 4, S, "82 09 00 01 00 04 61 2f 2b 62 00", UVMQTT_EFILTER,
     8},
    {"empty filter", 4, S, "82 05 00 01 00 00 00", UVMQTT_EFILTER, 4},
    {"unsubscribe filter #/a", 4, S, "a2 07 00 01 00 03 23 2f 61",
     UVMQTT_EFILTER, 6},
    {"share without name", 5, S,
     "82 0f 00 01 00 00 09 24 73 68 61 72 65 2f 2f 74 00", UVMQTT_EFILTER, 14},
    /* "$share" alone: the first level is $share, so it must go on as
     * $share/<group>/<filter> (the router's rule too). */
    {"share level alone", 5, S, "82 0c 00 01 00 00 06 24 73 68 61 72 65 00",
     UVMQTT_EFILTER, 13},
    {"share with a wildcard group", 5, S,
     "82 10 00 01 00 00 0a 24 73 68 61 72 65 2f 2b 2f 74 00", UVMQTT_EFILTER,
     14},
    /* ---- lengths ---- */
    {"topic past the end", 4, C, "30 03 00 05 61", UVMQTT_ETRUNC, 2},
    {"PUBACK length 1", 4, C, "40 01 00", UVMQTT_ETRUNC, 2},
    {"PUBLISH QoS 1 without id", 4, C, "32 03 00 01 61", UVMQTT_ETRUNC, 5},
    {"CONNACK length 1", 4, C, "20 01 00", UVMQTT_ETRUNC, 3},
    {"CONNACK v5 without properties", 5, C, "20 02 00 00", UVMQTT_ETRUNC, 4},
    {"CONNECT password past the end", 4, S,
     "10 13 00 04 4d 51 54 54 04 c2 00 3c 00 01 63 00 01 75 00 05 70",
     UVMQTT_ETRUNC, 18},
    {"CONNECT cut after flags", 4, S, "10 08 00 04 4d 51 54 54 04 02",
     UVMQTT_ETRUNC, 10},
    {"subscription without options", 4, S, "82 05 00 01 00 01 61",
     UVMQTT_ETRUNC, 7},
    {"PUBACK 3.1.1 extra byte", 4, C, "40 03 00 01 00", UVMQTT_ETRAILING, 4},
    {"UNSUBACK 3.1.1 extra byte", 4, C, "b0 03 00 01 00", UVMQTT_ETRAILING, 4},
    {"PINGREQ with body", 4, S, "c0 01 00", UVMQTT_ETRAILING, 2},
    {"CONNACK 3.1.1 extra byte", 4, C, "20 03 00 00 00", UVMQTT_ETRAILING, 4},
    {"DISCONNECT 3.1.1 with body", 4, S, "e0 01 00", UVMQTT_ETRAILING, 2},
    {"CONNECT extra byte", 4, S,
     "10 0e 00 04 4d 51 54 54 04 02 00 3c 00 01 61 ff", UVMQTT_ETRAILING, 15},
    {"PUBACK v5 extra after properties", 5, C, "40 05 00 01 10 00 00",
     UVMQTT_ETRAILING, 6},
    {"bytes after the packet", 4, C, "d0 00 00", UVMQTT_ETRAILING, 2,
     DECODE_ONLY},
    {"buffer shorter than the packet", 4, C, "40 02 00", UVMQTT_ETRUNC, 3,
     DECODE_ONLY},
    {"empty buffer", 4, C, "", UVMQTT_ETRUNC, 0, DECODE_ONLY},
    {"header cut", 4, C, "30 80", UVMQTT_ETRUNC, 2, DECODE_ONLY},
    /* ---- v5 properties ---- */
    {"duplicate topic alias", 5, C, "30 0a 00 01 61 06 23 00 01 23 00 02",
     UVMQTT_EPROPDUP, 9},
    {"duplicate sub id in SUBSCRIBE", 5, S,
     "82 0b 00 01 04 0b 01 0b 02 00 01 61 00", UVMQTT_EPROPDUP, 7},
    {"duplicate reason string", 5, C, "40 0b 00 01 10 07 1f 00 00 1f 00 01 61",
     UVMQTT_EPROPDUP, 9},
    {"receive maximum on PUBLISH", 5, C, "30 07 00 01 61 03 21 00 05",
     UVMQTT_EPROPBAD, 6},
    {"unknown property 0x05", 5, C, "30 06 00 01 61 02 05 00", UVMQTT_EPROPBAD,
     6},
    {"property id 0x80 0x01", 5, C, "30 06 00 01 61 02 80 01", UVMQTT_EPROPBAD,
     6},
    {"will delay on PUBLISH", 5, C, "30 09 00 01 61 05 18 00 00 00 01",
     UVMQTT_EPROPBAD, 6},
    {"sub id on PUBLISH to server", 5, S, "30 06 00 01 61 02 0b 01",
     UVMQTT_EPROPBAD, 6},
    {"session expiry on DISCONNECT to client", 5, C,
     "e0 07 00 05 11 00 00 00 00", UVMQTT_EPROPBAD, 4},
    {"topic alias on CONNACK", 5, C, "20 06 00 00 03 23 00 01", UVMQTT_EPROPBAD,
     5},
    {"topic alias 0", 5, C, "30 07 00 01 61 03 23 00 00", UVMQTT_EPROPVAL, 6},
    {"payload format 2", 5, C, "30 06 00 01 61 02 01 02", UVMQTT_EPROPVAL, 6},
    {"maximum QoS 2", 5, C, "20 05 00 00 02 24 02", UVMQTT_EPROPVAL, 5},
    {"receive maximum 0", 5, C, "20 06 00 00 03 21 00 00", UVMQTT_EPROPVAL, 5},
    {"subscription id 0", 5, C, "30 06 00 01 61 02 0b 00", UVMQTT_EPROPVAL, 6},
    {"property length past the end", 5, C, "30 05 00 01 61 05 01",
     UVMQTT_ETRUNC, 5},
    {"property value past its block", 5, C, "30 08 00 01 61 02 02 00 00 00",
     UVMQTT_ETRUNC, 7},
    {"user property value missing", 5, C, "30 0a 00 01 61 05 26 00 01 6b 00 00",
     UVMQTT_ETRUNC, 10},
    {"property length not minimal", 5, C, "30 05 00 01 61 80 00",
     UVMQTT_EMALFORMED, 6},
    {"sub id varint too long", 5, C, "30 09 00 01 61 05 0b ff ff ff ff",
     UVMQTT_EMALFORMED, 10},
    {"content type bad UTF-8", 5, C, "30 08 00 01 61 04 03 00 01 fe",
     UVMQTT_EUTF8, 9},
    {"user property key with U+0000", 5, C,
     "30 0b 00 01 61 07 26 00 01 00 00 01 76", UVMQTT_EUTF8, 9},
    /* ---- reason codes ---- */
    {"3.1.1 CONNACK return code 6", 4, C, "20 02 00 06", UVMQTT_EREASON, 3},
    {"3.1 CONNACK return code 0x80", 3, C, "20 02 00 80", UVMQTT_EREASON, 3},
    {"3.1.1 SUBACK code 3", 4, C, "90 03 00 01 03", UVMQTT_EREASON, 4},
    {"3.1.1 SUBACK code 0x81", 4, C, "90 04 00 01 00 81", UVMQTT_EREASON, 5},
    {"v5 SUBACK code 3", 5, C, "90 04 00 01 00 03", UVMQTT_EREASON, 5},
    {"v5 CONNACK reason 0x01", 5, C, "20 03 00 01 00", UVMQTT_EREASON, 3},
    {"v5 PUBACK reason 0x01", 5, C, "40 03 00 01 01", UVMQTT_EREASON, 4},
    {"v5 PUBREC reason 0x92", 5, C, "50 03 00 01 92", UVMQTT_EREASON, 4},
    {"v5 PUBREL reason 0x10", 5, C, "62 03 00 01 10", UVMQTT_EREASON, 4},
    {"v5 PUBCOMP reason 0x80", 5, S, "70 03 00 01 80", UVMQTT_EREASON, 4},
    {"v5 UNSUBACK reason 0x01", 5, C, "b0 04 00 01 00 01", UVMQTT_EREASON, 5},
    {"v5 DISCONNECT reason 0x05", 5, C, "e0 01 05", UVMQTT_EREASON, 2},
    {"v5 DISCONNECT 0x04 to client", 5, C, "e0 01 04", UVMQTT_EREASON, 2},
    {"v5 AUTH reason 0x01", 5, C, "f0 01 01", UVMQTT_EREASON, 2},
    /* ---- CONNECT / CONNACK flags ---- */
    {"CONNECT reserved flag", 4, S,
     "10 0d 00 04 4d 51 54 54 04 03 00 3c 00 01 61", UVMQTT_EMALFORMED, 9},
    {"CONNECT will QoS without will", 4, S,
     "10 0d 00 04 4d 51 54 54 04 0a 00 3c 00 01 61", UVMQTT_EMALFORMED, 9},
    {"CONNECT will retain without will", 5, S,
     "10 0e 00 04 4d 51 54 54 05 22 00 3c 00 00 01 61", UVMQTT_EMALFORMED, 9},
    {"CONNECT will QoS 3", 4, S, "10 0d 00 04 4d 51 54 54 04 1c 00 3c 00 01 61",
     UVMQTT_EQOS, 9},
    {"CONNECT password without user name (3.1.1)", 4, S,
     "10 10 00 04 4d 51 54 54 04 42 00 3c 00 01 61 00 01 70", UVMQTT_EMALFORMED,
     9},
    {"CONNECT password without user name (3.1)", 3, S,
     "10 12 00 06 4d 51 49 73 64 70 03 42 00 3c 00 01 61 00 01 70",
     UVMQTT_EMALFORMED, 11},
    {"CONNECT MQTT level 3", 4, S,
     "10 0d 00 04 4d 51 54 54 03 02 00 3c 00 01 61", UVMQTT_EVERSION, 2},
    {"CONNECT MQIsdp level 4", 4, S,
     "10 0f 00 06 4d 51 49 73 64 70 04 02 00 3c 00 01 61", UVMQTT_EVERSION, 2},
    {"CONNECT level 6", 4, S, "10 0d 00 04 4d 51 54 54 06 02 00 3c 00 01 61",
     UVMQTT_EVERSION, 8},
    {"CONNECT property not allowed", 5, S,
     "10 10 00 04 4d 51 54 54 05 02 00 3c 03 23 00 01 00 00", UVMQTT_EPROPBAD,
     13},
    {"CONNECT will property not allowed", 5, S,
     "10 15 00 04 4d 51 54 54 05 06 00 3c 00 00 00 02 11 00 00 01 74 00 00",
     UVMQTT_EPROPBAD, 16},
    {"3.1.1 CONNACK reserved flags", 4, C, "20 02 02 00", UVMQTT_EMALFORMED, 2},
    /* ---- SUBSCRIBE / UNSUBSCRIBE / SUBACK ---- */
    {"subscription QoS 3", 4, S, "82 06 00 01 00 01 61 03", UVMQTT_EQOS, 7},
    {"3.1.1 subscription reserved bits", 4, S, "82 06 00 01 00 01 61 04",
     UVMQTT_EMALFORMED, 7},
    {"v5 subscription reserved bits", 5, S, "82 07 00 01 00 00 01 61 40",
     UVMQTT_EMALFORMED, 8},
    {"v5 retain handling 3", 5, S, "82 07 00 01 00 00 01 61 30",
     UVMQTT_EMALFORMED, 8},
    {"no local on shared subscription", 5, S,
     "82 10 00 01 00 00 0a 24 73 68 61 72 65 2f 67 2f 74 04", UVMQTT_EPROTOCOL,
     17},
    {"SUBSCRIBE without filters", 4, S, "82 02 00 01", UVMQTT_EMALFORMED, 4},
    {"UNSUBSCRIBE without filters", 5, S, "a2 03 00 01 00", UVMQTT_EMALFORMED,
     5},
    {"SUBACK without codes", 4, C, "90 02 00 01", UVMQTT_EMALFORMED, 4},
    {"v5 UNSUBACK without codes", 5, C, "b0 03 00 01 00", UVMQTT_EMALFORMED, 5},
};

static void check_decode(const bad_case_t *c) {
  size_t len, off = 777;
  uint8_t *b = hex_decode(c->hex, &len);
  uvmqtt_packet_t out;
  int rc = uvmqtt_decode(len ? b : NULL, len, c->version, c->role, &out, &off);
  if (rc != c->err || off != c->off)
    fail_msg("%s: decode gave %s at %zu, want %s at %zu", c->name,
             uvmqtt_err_name(rc), off, uvmqtt_err_name(c->err), c->off);
  free(b);
}

static size_t one_byte(size_t pos, void *state) {
  (void)pos;
  (void)state;
  return 1;
}

static void check_parser(const bad_case_t *c) {
  size_t len;
  uint8_t *b = hex_decode(c->hex, &len);
  /* Put a valid packet first so offsets are counted across packets. */
  static const uint8_t ping[] = {0xD0, 0x00, 0xC0, 0x00};
  const uint8_t *pre = c->role == UVMQTT_ROLE_CLIENT ? ping : ping + 2;
  uint8_t *s = malloc(len + 2);
  memcpy(s, pre, 2);
  memcpy(s + 2, b, len);
  bool with_pre = c->version != 0;
  for (int pass = 0; pass < 2; pass++) {
    stream_result_t r;
    stream_run(with_pre ? s : b, with_pre ? len + 2 : len, c->version, c->role,
               c->max_size, pass ? one_byte : NULL, NULL, &r);
    uint64_t want = c->off + (with_pre ? 2 : 0);
    if (r.error != c->err || r.error_offset != want)
      fail_msg("%s: parser (%s) gave %s at %llu, want %s at %llu", c->name,
               pass ? "byte by byte" : "whole", uvmqtt_err_name(r.error),
               (unsigned long long)r.error_offset, uvmqtt_err_name(c->err),
               (unsigned long long)want);
    assert_int_equal(r.count, with_pre ? 1 : 0);
    stream_free(&r);
  }
  free(s);
  free(b);
}

static void test_malformed_table(void **state) {
  (void)state;
  size_t n = sizeof(cases) / sizeof(cases[0]);
  for (size_t i = 0; i < n; i++) {
    if (cases[i].mode != PARSER_ONLY)
      check_decode(&cases[i]);
    if (cases[i].mode != DECODE_ONLY)
      check_parser(&cases[i]);
  }
  print_message("%zu malformed cases checked\n", n);
}

/* The same bytes made valid are accepted, so the table tests what it says
 * (a case failing for another reason would show up as a wrong code). */
static void test_near_misses_accepted(void **state) {
  (void)state;
  static const struct {
    uint8_t version;
    uvmqtt_role_t role;
    const char *hex;
  } ok[] = {
      {3, C, "6a 02 00 01"},                /* 3.1 PUBREL with DUP */
      {3, S, "8a 06 00 01 00 01 61 00"},    /* 3.1 SUBSCRIBE with DUP */
      {3, C, "20 02 ff 00"},                /* 3.1 CONNACK byte 1 unused */
      {4, C, "90 03 00 01 80"},             /* 3.1.1 SUBACK failure */
      {5, C, "30 06 00 01 61 02 0b 01"},    /* sub id to a client */
      {5, C, "30 06 00 00 03 23 00 01"},    /* empty topic + alias */
      {5, C, "40 02 00 01"},                /* v5 PUBACK short form */
      {5, C, "40 03 00 01 10"},             /* v5 PUBACK reason only */
      {5, C, "e0 00"},                      /* v5 DISCONNECT short */
      {5, S, "e0 01 04"},                   /* 0x04 to a server */
      {5, S, "e0 07 00 05 11 00 00 00 00"}, /* session expiry to server */
      {5, C, "f0 00"},                      /* v5 AUTH short */
      {5, C, "30 09 00 01 61 05 0b 01 0b 80 01"}, /* two sub ids */
      {4, S, "82 08 00 01 00 03 61 2f 2b 00"},    /* a/+ */
      {5, S,
       "10 10 00 04 4d 51 54 54 05 40 00 3c 00 00 01 61 00 00"}, /* v5 pw */
      {4, C, "30 0d 00 0b 61 e2 82 ac f0 9f 98 80 ef bf bf"},
  };
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    size_t len, off = 0;
    uint8_t *b = hex_decode(ok[i].hex, &len);
    uvmqtt_packet_t out;
    int rc = uvmqtt_decode(b, len, ok[i].version, ok[i].role, &out, &off);
    if (rc)
      fail_msg("case %zu (%s): %s at %zu", i, ok[i].hex, uvmqtt_err_name(rc),
               off);
    free(b);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_malformed_table),
      cmocka_unit_test(test_near_misses_accepted),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
