/* Unit tests of the sans-I/O session: scripted broker bytes (split at every
 * position), a fake clock, and the events and packets produced. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static int teardown(void **state) {
  (void)state;
  h_fini(UVMQTT_ECLOSED);
  return 0;
}

#define PROPS_NONE NULL

static uvmqtt_props_t props_with(uint8_t id, uint32_t v) {
  uvmqtt_props_t p;
  memset(&p, 0, sizeof(p));
  p.present = UVMQTT_PROP_BIT(id);
  switch (id) {
  case UVMQTT_PROP_RECEIVE_MAXIMUM:
    p.receive_maximum = (uint16_t)v;
    break;
  case UVMQTT_PROP_MAXIMUM_PACKET_SIZE:
    p.maximum_packet_size = v;
    break;
  case UVMQTT_PROP_SERVER_KEEP_ALIVE:
    p.server_keep_alive = (uint16_t)v;
    break;
  case UVMQTT_PROP_TOPIC_ALIAS:
    p.topic_alias = (uint16_t)v;
    break;
  case UVMQTT_PROP_RETAIN_AVAILABLE:
    p.retain_available = (uint8_t)v;
    break;
  case UVMQTT_PROP_TOPIC_ALIAS_MAXIMUM:
    p.topic_alias_maximum = (uint16_t)v;
    break;
  default:
    fail();
  }
  return p;
}

/* ---- CONNECT / CONNACK ----------------------------------------------------
 */

static void connect_version(uint8_t v) {
  h_init_v(v);
  uvmqtt_connect_t c;
  memset(&c, 0, sizeof(c));
  c.clean_start = true;
  c.keep_alive = 30;
  c.client_id.data = "client-7";
  c.client_id.len = 8;
  c.will = true;
  c.will_qos = 1;
  c.will_retain = true;
  c.will_topic.data = "w/t";
  c.will_topic.len = 3;
  c.will_payload.data = (const uint8_t *)"bye";
  c.will_payload.len = 3;
  c.has_username = true;
  c.username.data = "user";
  c.username.len = 4;
  c.has_password = true;
  c.password.data = (const uint8_t *)"pw";
  c.password.len = 2;
  if (v == UVMQTT_V5) {
    c.props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_SESSION_EXPIRY_INTERVAL);
    c.props.session_expiry_interval = 600;
  }
  assert_int_equal(uvmqtt__session_state(H.s), UVMQTT_SS_DISCONNECTED);
  assert_int_equal(h_connect_pkt(1000, &c), 0);
  assert_int_equal(uvmqtt__session_state(H.s), UVMQTT_SS_CONNECTING);
  assert_int_equal(H.noutput, 1);
  assert_true(uvmqtt__session_has_output(H.s));
  assert_int_equal(h_flush(1000), 1);
  assert_false(uvmqtt__session_has_output(H.s));
  const sent_t *s = &H.sent[0];
  assert_int_equal(s->type, UVMQTT_CONNECT);
  assert_int_equal(s->version, v);
  assert_int_equal(s->keep_alive, 30);
  assert_true(s->clean);
  assert_string_equal(s->client_id, "client-7");
  assert_true(s->will);
  assert_int_equal(s->will_qos, 1);
  assert_true(s->will_retain);
  assert_string_equal(s->will_topic, "w/t");
  assert_true(s->has_username);
  assert_string_equal(s->username, "user");
  assert_true(s->has_password);
  assert_int_equal(s->has_session_expiry, v == UVMQTT_V5);
  if (v == UVMQTT_V5)
    assert_int_equal(s->session_expiry, 600);
  /* Nothing else was produced. */
  assert_int_equal(h_flush(1000), 0);
  assert_int_equal(H.nconnack, 0);
}

static void test_connect_v31(void **state) {
  (void)state;
  connect_version(UVMQTT_V31);
}
static void test_connect_v311(void **state) {
  (void)state;
  connect_version(UVMQTT_V311);
}
static void test_connect_v5(void **state) {
  (void)state;
  connect_version(UVMQTT_V5);
}

static void test_connack_accepted(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  assert_int_equal(h_connect(0, 0, false), 0);
  h_flush(0);
  assert_int_equal(h_feed_connack(5, true, 0, NULL), 0);
  assert_int_equal(H.nconnack, 1);
  assert_true(H.connack.session_present);
  assert_int_equal(H.connack.reason_code, 0);
  assert_int_equal(uvmqtt__session_state(H.s), UVMQTT_SS_CONNECTED);
  assert_int_equal(h_flush(5), 0);
}

static void connack_refused(uint8_t v, uint8_t code) {
  h_init_v(v);
  assert_int_equal(h_connect(0, 10, true), 0);
  h_flush(0);
  assert_int_equal(h_feed_connack(5, false, code, NULL), UVMQTT_EREFUSED);
  assert_int_equal(H.nconnack, 1);
  assert_int_equal(H.connack.reason_code, code);
  assert_int_equal(uvmqtt__session_state(H.s), UVMQTT_SS_DISCONNECTED);
  assert_int_equal(uvmqtt__session_deadline(H.s), UINT64_MAX);
}

static void test_connack_refused(void **state) {
  (void)state;
  connack_refused(UVMQTT_V311, 5);
  h_fini(UVMQTT_ECLOSED);
  connack_refused(UVMQTT_V31, 2);
  h_fini(UVMQTT_ECLOSED);
  connack_refused(UVMQTT_V5, 0x87);
}

/* ---- outgoing QoS flows -------------------------------------------------- */

static void test_out_qos0(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  h_up(0);
  assert_int_equal(h_pub(10, "a/b", "hello", 0, 1), 0);
  assert_int_equal(H.npub, 0);
  assert_int_equal(uvmqtt__session_inflight(H.s), 0);
  const uvmqtt_iov_t *iov;
  size_t n;
  uvmqtt_out_batch_t *b = h_take(10, &iov, &n);
  assert_non_null(b);
  assert_int_equal(H.nsent, 1);
  assert_int_equal(H.sent[0].type, UVMQTT_PUBLISH);
  assert_int_equal(H.sent[0].qos, 0);
  assert_false(H.sent[0].dup);
  assert_string_equal(H.sent[0].topic, "a/b");
  assert_memory_equal(H.sent[0].payload, "hello", 5);
  /* Completion waits for the write. */
  assert_int_equal(H.npub, 0);
  h_done(b, 0);
  assert_int_equal(H.npub, 1);
  assert_int_equal(h_donefor(1)->status, 0);
  assert_ptr_equal(h_donefor(1)->cb, h_cb);

  /* A failed write completes QoS 0 with the write's status. */
  assert_int_equal(h_pub(11, "a/b", "x", 0, 2), 0);
  b = h_take(11, NULL, NULL);
  assert_non_null(b);
  h_done(b, -104);
  assert_int_equal(h_ndone(2), 1);
  assert_int_equal(h_donefor(2)->status, -104);
}

static void test_out_qos1(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  h_up(0);
  int id = h_pub(10, "t", "one", 1, 1);
  assert_int_equal(id, 1);
  assert_int_equal(h_flush(10), 1);
  assert_int_equal(H.sent[0].qos, 1);
  assert_int_equal(H.sent[0].id, 1);
  assert_false(H.sent[0].dup);
  assert_int_equal(uvmqtt__session_inflight(H.s), 1);
  assert_int_equal(H.npub, 0); /* written is not acknowledged */
  assert_int_equal(h_feed_ack(20, UVMQTT_PUBACK, 1, 0), 0);
  assert_int_equal(h_ndone(1), 1);
  assert_int_equal(h_donefor(1)->status, 0);
  assert_int_equal(h_donefor(1)->id, 1);
  assert_int_equal(uvmqtt__session_inflight(H.s), 0);
  assert_int_equal(h_flush(20), 0);
}

static void test_out_qos1_v5_rejected(void **state) {
  (void)state;
  h_init_v(UVMQTT_V5);
  h_up(0);
  assert_int_equal(h_pub(10, "t", "one", 1, 1), 1);
  h_flush(10);
  assert_int_equal(h_feed_ack(20, UVMQTT_PUBACK, 1, 0x87), 0);
  assert_int_equal(h_donefor(1)->status, UVMQTT_EREJECTED);
  assert_int_equal(h_donefor(1)->reason, 0x87);
  /* A non-error reason (No matching subscribers) is success. */
  assert_int_equal(h_pub(10, "t", "two", 1, 2), 2);
  h_flush(10);
  assert_int_equal(h_feed_ack(20, UVMQTT_PUBACK, 2, 0x10), 0);
  assert_int_equal(h_donefor(2)->status, 0);
  assert_int_equal(h_donefor(2)->reason, 0x10);
}

static void test_out_qos2(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  h_up(0);
  assert_int_equal(h_pub(10, "t", "two", 2, 7), 1);
  assert_int_equal(h_flush(10), 1);
  assert_int_equal(H.sent[0].qos, 2);
  assert_int_equal(H.sent[0].id, 1);
  assert_int_equal(h_feed_ack(20, UVMQTT_PUBREC, 1, 0), 0);
  assert_int_equal(H.npub, 0);
  assert_int_equal(h_flush(20), 1);
  assert_int_equal(H.sent[1].type, UVMQTT_PUBREL);
  assert_int_equal(H.sent[1].id, 1);
  assert_int_equal(H.sent[1].flags, 2);
  /* PUBACK is not the answer to a QoS 2 message. */
  assert_int_equal(uvmqtt__session_inflight(H.s), 1);
  assert_int_equal(h_feed_ack(30, UVMQTT_PUBCOMP, 1, 0), 0);
  assert_int_equal(h_ndone(7), 1);
  assert_int_equal(h_donefor(7)->status, 0);
  assert_int_equal(h_donefor(7)->id, 1);
  assert_int_equal(uvmqtt__session_inflight(H.s), 0);
}

static void test_out_qos2_v5_pubrec_error(void **state) {
  (void)state;
  h_init_v(UVMQTT_V5);
  h_up(0);
  assert_int_equal(h_pub(10, "t", "two", 2, 7), 1);
  h_flush(10);
  assert_int_equal(h_feed_ack(20, UVMQTT_PUBREC, 1, 0x97), 0);
  assert_int_equal(h_donefor(7)->status, UVMQTT_EREJECTED);
  assert_int_equal(h_donefor(7)->reason, 0x97);
  assert_int_equal(h_flush(20), 0); /* no PUBREL after an error PUBREC */
  assert_int_equal(uvmqtt__session_inflight(H.s), 0);
}

/* ---- incoming QoS flows -------------------------------------------------- */

static void test_in_qos0_1(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  h_up(0);
  assert_int_equal(h_feed_publish(5, "x/y", "zero", 0, 0, false), 0);
  assert_int_equal(H.nmsg, 1);
  assert_string_equal(H.msg[0].topic, "x/y");
  assert_string_equal((char *)H.msg[0].payload, "zero");
  assert_int_equal(h_flush(5), 0); /* QoS 0: no ack */
  assert_int_equal(h_feed_publish(6, "x/y", "one", 1, 42, false), 0);
  assert_int_equal(H.nmsg, 2);
  assert_int_equal(H.msg[1].qos, 1);
  assert_int_equal(h_flush(6), 1);
  assert_int_equal(H.sent[0].type, UVMQTT_PUBACK);
  assert_int_equal(H.sent[0].id, 42);
  /* A QoS 1 redelivery is delivered again (at least once) and acked. */
  assert_int_equal(h_feed_publish(7, "x/y", "one", 1, 42, true), 0);
  assert_int_equal(H.nmsg, 3);
  assert_true(H.msg[2].dup);
  assert_int_equal(h_flush(7), 1);
  assert_int_equal(H.sent[1].type, UVMQTT_PUBACK);
}

/* A reply published from the message callback goes out after the
 * message's PUBACK, in the same output: the broker frees the message
 * before it routes the reply. */
static void reply_hook(const uvmqtt_publish_t *pub) {
  (void)pub;
  assert_true(h_pub(6, "reply", "r", 1, 7) > 0);
}

static void test_in_qos1_reply_after_ack(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  h_up(0);
  H.msg_hook = reply_hook;
  assert_int_equal(h_feed_publish(5, "x/y", "one", 1, 42, false), 0);
  H.msg_hook = NULL;
  assert_int_equal(H.nmsg, 1);
  assert_int_equal(h_flush(6), 2);
  assert_int_equal(H.sent[0].type, UVMQTT_PUBACK);
  assert_int_equal(H.sent[0].id, 42);
  assert_int_equal(H.sent[1].type, UVMQTT_PUBLISH);
  assert_int_equal(H.sent[1].qos, 1);
}

static void test_in_qos2(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  h_up(0);
  assert_int_equal(h_feed_publish(5, "q", "two", 2, 9, false), 0);
  assert_int_equal(H.nmsg, 1);
  assert_int_equal(h_flush(5), 1);
  assert_int_equal(H.sent[0].type, UVMQTT_PUBREC);
  assert_int_equal(H.sent[0].id, 9);
  /* DUP re-delivery before PUBREL: not delivered again, PUBREC again. */
  assert_int_equal(h_feed_publish(6, "q", "two", 2, 9, true), 0);
  assert_int_equal(H.nmsg, 1);
  assert_int_equal(h_flush(6), 1);
  assert_int_equal(H.sent[1].type, UVMQTT_PUBREC);
  assert_int_equal(H.sent[1].id, 9);
  assert_int_equal(h_feed_ack(7, UVMQTT_PUBREL, 9, 0), 0);
  assert_int_equal(h_flush(7), 1);
  assert_int_equal(H.sent[2].type, UVMQTT_PUBCOMP);
  assert_int_equal(H.sent[2].id, 9);
  assert_int_equal(H.sent[2].reason, 0);
  /* After PUBREL the id is free: a new message with it is delivered. */
  assert_int_equal(h_feed_publish(8, "q", "again", 2, 9, false), 0);
  assert_int_equal(H.nmsg, 2);
  assert_string_equal((char *)H.msg[1].payload, "again");
  /* A PUBREL for an id we do not hold is still answered. */
  assert_int_equal(h_feed_ack(9, UVMQTT_PUBREL, 77, 0), 0);
  h_flush(9);
  assert_int_equal(H.sent[H.nsent - 1].type, UVMQTT_PUBCOMP);
  assert_int_equal(H.sent[H.nsent - 1].id, 77);
}

static void test_in_qos2_v5_unknown_pubrel(void **state) {
  (void)state;
  h_init_v(UVMQTT_V5);
  h_up(0);
  assert_int_equal(h_feed_ack(9, UVMQTT_PUBREL, 77, 0), 0);
  assert_int_equal(h_flush(9), 1);
  assert_int_equal(H.sent[0].type, UVMQTT_PUBCOMP);
  assert_int_equal(H.sent[0].reason, 0x92); /* Packet Identifier not found */
}

static void test_in_receive_maximum(void **state) {
  (void)state;
  uvmqtt_session_config_t c = h_cfg(UVMQTT_V5);
  c.receive_maximum = 2;
  h_init(&c);
  h_up(0);
  assert_int_equal(h_feed_publish(1, "q", "a", 2, 1, false), 0);
  assert_int_equal(h_feed_publish(1, "q", "b", 2, 2, false), 0);
  /* A redelivery of a held id does not count twice. */
  assert_int_equal(h_feed_publish(1, "q", "b", 2, 2, true), 0);
  assert_int_equal(h_feed_publish(1, "q", "c", 2, 3, false), UVMQTT_ERECVMAX);
  assert_int_equal(H.nmsg, 2);
}

/* ---- split scripts --------------------------------------------------------
 */

#define BIG 3000

/* The broker's side of a whole conversation. Before it the session
 * queued a QoS 1 (id 1) and a QoS 2 (id 2) publish while connecting. */
static size_t script1(uint8_t *buf, size_t cap) {
  static uint8_t big[BIG];
  size_t n = 0;
  for (size_t i = 0; i < BIG; i++)
    big[i] = (uint8_t)(i * 7 + 3);
  n += b_connack(buf + n, false, 0, NULL);
  n += b_publish(buf + n, cap - n, "in/0", "p0", 2, 0, 0, false);
  n += b_ack(buf + n, UVMQTT_PUBACK, 1, 0);
  n += b_publish(buf + n, cap - n, "in/1", "p1", 2, 1, 5, false);
  n += b_ack(buf + n, UVMQTT_PUBREC, 2, 0);
  n += b_publish(buf + n, cap - n, "in/2", "p2", 2, 2, 6, false);
  n += b_publish(buf + n, cap - n, "in/2", "p2", 2, 2, 6, true);
  n += b_publish(buf + n, cap - n, "in/big", big, BIG, 1, 7, false);
  n += b_ack(buf + n, UVMQTT_PUBCOMP, 2, 0);
  n += b_ack(buf + n, UVMQTT_PUBREL, 6, 0);
  n += b_publish(buf + n, cap - n, "in/0", "", 0, 0, 0, false);
  assert_true(n < cap);
  return n;
}

/* A trace with events and sent packets separated: their relative order
 * depends on when the owner flushes, their own orders must not. */
static char *sorted_trace(char *t) {
  size_t n = strlen(t);
  char *r = malloc(n + 2);
  assert_non_null(r);
  size_t k = 0;
  for (int pass = 0; pass < 2; pass++) {
    for (const char *l = t; *l;) {
      const char *e = strchr(l, '\n');
      size_t len = e ? (size_t)(e - l) + 1 : strlen(l);
      if ((strncmp(l, "out ", 4) == 0) == (pass == 1)) {
        memcpy(r + k, l, len);
        k += len;
      }
      l += len;
    }
  }
  r[k] = 0;
  free(t);
  return r;
}

/* Runs script1 cut into chunks at `cuts` (sorted, ncuts of them); flushes
 * after every chunk. Returns the trace (caller frees). */
static char *run_script1(uint8_t version, const uint8_t *bytes, size_t len,
                         const size_t *cuts, size_t ncuts) {
  h_init_v(version);
  h_trace_on();
  assert_int_equal(h_connect(0, 0, true), 0);
  h_flush(0);
  assert_int_equal(h_pub(0, "out/1", "m1", 1, 1), 1);
  assert_int_equal(h_pub(0, "out/2", "m2", 2, 2), 2);
  assert_int_equal(h_flush(0), 0); /* queued until CONNACK */
  size_t at = 0;
  for (size_t i = 0; i <= ncuts; i++) {
    size_t end = i < ncuts ? cuts[i] : len;
    assert_int_equal(h_feed(1, bytes + at, end - at), 0);
    h_flush(1);
    at = end;
  }
  char *t = H.trace;
  H.trace = NULL;
  h_fini(UVMQTT_ECLOSED);
  return sorted_trace(t);
}

static void script1_all_splits(uint8_t version) {
  uint8_t bytes[8192];
  H.version = version;
  size_t len = script1(bytes, sizeof(bytes));
  char *ref = run_script1(version, bytes, len, NULL, 0);
  /* The reference run is the expected conversation. */
  if (getenv("SESSION_TRACE"))
    fprintf(stderr, "%s", ref);
  assert_non_null(strstr(ref, "connack sp=0 rc=0\n"));
  assert_non_null(strstr(ref, "out PUBLISH out/1 q1 dup0 id1"));
  assert_non_null(strstr(ref, "out PUBLISH out/2 q2 dup0 id2"));
  assert_non_null(strstr(ref, "done arg=1 st=0 id=1 rc=0"));
  assert_non_null(strstr(ref, "out PUBREL id2 rc0"));
  assert_non_null(strstr(ref, "done arg=2 st=0 id=2 rc=0"));
  assert_non_null(strstr(ref, "out PUBREC id6"));
  assert_non_null(strstr(ref, "out PUBCOMP id6"));
  assert_non_null(strstr(ref, "msg in/big q1 dup0 r0 id7 len3000"));
  assert_non_null(strstr(ref, "out PUBACK id7"));
  /* p2 is delivered once although received twice. */
  const char *first = strstr(ref, "msg in/2");
  assert_non_null(first);
  assert_null(strstr(first + 1, "msg in/2"));
  /* Two chunks, cut at every position. */
  for (size_t cut = 1; cut < len; cut++) {
    char *t = run_script1(version, bytes, len, &cut, 1);
    if (strcmp(t, ref) != 0)
      fail_msg("cut at %zu:\n%s\nexpected:\n%s", cut, t, ref);
    free(t);
  }
  /* One byte at a time. */
  size_t *cuts = malloc(len * sizeof(*cuts));
  assert_non_null(cuts);
  for (size_t i = 0; i + 1 < len; i++)
    cuts[i] = i + 1;
  char *t = run_script1(version, bytes, len, cuts, len - 1);
  assert_string_equal(t, ref);
  free(t);
  /* Three chunks around the large packet's header. */
  for (size_t a = 1; a < 200 && a < len; a += 3)
    for (size_t b = a + 1; b < a + 40 && b < len; b++) {
      size_t c2[2] = {a, b};
      t = run_script1(version, bytes, len, c2, 2);
      if (strcmp(t, ref) != 0)
        fail_msg("cuts at %zu,%zu:\n%s\nexpected:\n%s", a, b, t, ref);
      free(t);
    }
  free(cuts);
  free(ref);
}

static void test_split_script_v311(void **state) {
  (void)state;
  script1_all_splits(UVMQTT_V311);
}
static void test_split_script_v5(void **state) {
  (void)state;
  script1_all_splits(UVMQTT_V5);
}

/* SUBACK / UNSUBACK split at every position. */
static void test_split_suback(void **state) {
  (void)state;
  uint8_t bytes[256];
  char *ref = NULL;
  H.version = UVMQTT_V311;
  uint8_t codes[3] = {0, 1, 0x80};
  size_t len = b_suback(bytes, UVMQTT_SUBACK, 1, codes, 3);
  len += b_suback(bytes + len, UVMQTT_UNSUBACK, 2, NULL, 0);
  for (size_t cut = 0; cut < len; cut++) {
    h_init_v(UVMQTT_V311);
    h_up(0);
    h_trace_on();
    uvmqtt_subscription_t subs[3] = {
        {{"a/#", 3}, 0}, {{"b/+", 3}, 1}, {{"c", 1}, 2}};
    uvmqtt_str_t un[1] = {{"z", 1}};
    assert_int_equal(uvmqtt__session_subscribe(H.s, subs, 3, NULL, h_cb,
                                               (void *)(intptr_t)10),
                     1);
    assert_int_equal(
        uvmqtt__session_unsubscribe(H.s, un, 1, NULL, h_cb, (void *)11), 2);
    h_flush(1);
    if (cut) {
      assert_int_equal(h_feed(2, bytes, cut), 0);
      h_flush(2);
    }
    assert_int_equal(h_feed(2, bytes + cut, len - cut), 0);
    h_flush(2);
    assert_int_equal(H.nsub, 2);
    /* The type is the request's (SUBSCRIBE / UNSUBSCRIBE), as for a
     * cancelled request. */
    assert_int_equal(H.sub[0].type, UVMQTT_SUBSCRIBE);
    assert_int_equal(H.sub[0].arg, 10);
    assert_int_equal(H.sub[0].count, 3);
    assert_memory_equal(H.sub[0].codes, codes, 3);
    assert_int_equal(H.sub[1].type, UVMQTT_UNSUBSCRIBE);
    assert_int_equal(H.sub[1].arg, 11);
    assert_int_equal(H.sub[1].status, 0);
    char *t = sorted_trace(H.trace);
    H.trace = NULL;
    if (!ref) {
      ref = t;
    } else {
      assert_string_equal(t, ref);
      free(t);
    }
    h_fini(0);
  }
  free(ref);
}

/* ---- retries after reconnect --------------------------------------------- */

/* Connected, with X (QoS 2, id 1) at WAIT_COMP, Y (QoS 1, id 2) and Z
 * (QoS 2, id 3) at WAIT_ACK, then the connection drops. */
static void setup_inflight(uint8_t v) {
  h_init_v(v);
  h_up(0);
  assert_int_equal(h_pub(1, "x", "X", 2, 1), 1);
  assert_int_equal(h_pub(1, "y", "Y", 1, 2), 2);
  assert_int_equal(h_pub(1, "z", "Z", 2, 3), 3);
  h_flush(1);
  assert_int_equal(h_feed_ack(2, UVMQTT_PUBREC, 1, 0), 0);
  h_flush(2); /* PUBREL 1 */
  uvmqtt__session_connection_lost(H.s, UVMQTT_EPEERCLOSED);
  assert_int_equal(uvmqtt__session_state(H.s), UVMQTT_SS_DISCONNECTED);
  assert_int_equal(uvmqtt__session_inflight(H.s), 3);
  assert_int_equal(H.npub, 0);
  h_clear();
}

static void test_resend_session_present(void **state) {
  (void)state;
  setup_inflight(UVMQTT_V311);
  /* A message published while offline goes after the resends. */
  assert_int_equal(h_pub(3, "w", "W", 1, 4), 4);
  assert_int_equal(h_connect(10, 0, false), 0);
  assert_int_equal(h_flush(10), 1); /* CONNECT only */
  assert_int_equal(H.sent[0].type, UVMQTT_CONNECT);
  assert_int_equal(h_feed_connack(11, true, 0, NULL), 0);
  assert_int_equal(h_flush(11), 4);
  assert_int_equal(H.sent[1].type, UVMQTT_PUBREL);
  assert_int_equal(H.sent[1].id, 1);
  assert_int_equal(H.sent[2].type, UVMQTT_PUBLISH);
  assert_int_equal(H.sent[2].id, 2);
  assert_true(H.sent[2].dup);
  assert_string_equal((char *)H.sent[2].payload, "Y");
  assert_int_equal(H.sent[3].type, UVMQTT_PUBLISH);
  assert_int_equal(H.sent[3].id, 3);
  assert_int_equal(H.sent[3].qos, 2);
  assert_true(H.sent[3].dup);
  assert_int_equal(H.sent[4].type, UVMQTT_PUBLISH);
  assert_int_equal(H.sent[4].id, 4);
  assert_false(H.sent[4].dup);
  /* Everything completes normally. */
  assert_int_equal(h_feed_ack(12, UVMQTT_PUBCOMP, 1, 0), 0);
  assert_int_equal(h_feed_ack(12, UVMQTT_PUBACK, 2, 0), 0);
  assert_int_equal(h_feed_ack(12, UVMQTT_PUBREC, 3, 0), 0);
  assert_int_equal(h_feed_ack(12, UVMQTT_PUBCOMP, 3, 0), 0);
  assert_int_equal(h_feed_ack(12, UVMQTT_PUBACK, 4, 0), 0);
  for (long a = 1; a <= 4; a++) {
    assert_int_equal(h_ndone(a), 1);
    assert_int_equal(h_donefor(a)->status, 0);
  }
  assert_int_equal(uvmqtt__session_inflight(H.s), 0);
}

static void test_resend_session_lost(void **state) {
  (void)state;
  setup_inflight(UVMQTT_V5);
  assert_int_equal(h_pub(3, "w", "W", 1, 4), 4);
  assert_int_equal(h_connect(10, 0, false), 0);
  h_flush(10);
  assert_int_equal(h_feed_connack(11, false, 0, NULL), 0);
  /* QoS 2 messages already sent cannot be completed exactly once. */
  assert_int_equal(h_ndone(1), 1);
  assert_int_equal(h_donefor(1)->status, UVMQTT_ESESSION);
  assert_int_equal(h_ndone(3), 1);
  assert_int_equal(h_donefor(3)->status, UVMQTT_ESESSION);
  assert_int_equal(h_ndone(2), 0);
  /* QoS 1 goes again as a new message (DUP clear), before W. */
  assert_int_equal(h_flush(11), 2);
  assert_int_equal(H.sent[1].type, UVMQTT_PUBLISH);
  assert_string_equal((char *)H.sent[1].payload, "Y");
  assert_false(H.sent[1].dup);
  assert_int_equal(H.sent[1].qos, 1);
  assert_int_equal(H.sent[2].type, UVMQTT_PUBLISH);
  assert_string_equal((char *)H.sent[2].payload, "W");
  assert_int_equal(h_count_sent(UVMQTT_PUBREL, 0), 0);
  assert_int_equal(h_feed_ack(12, UVMQTT_PUBACK, H.sent[1].id, 0), 0);
  assert_int_equal(h_feed_ack(12, UVMQTT_PUBACK, H.sent[2].id, 0), 0);
  assert_int_equal(h_donefor(2)->status, 0);
  assert_int_equal(h_donefor(4)->status, 0);
  /* The ids of the lost QoS 2 messages are free again. */
  assert_int_equal(h_pub(13, "v", "V", 2, 5), 5);
}

/* The incoming QoS 2 ids held for PUBREL are forgotten with the session. */
static void test_session_lost_forgets_incoming(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  h_up(0);
  assert_int_equal(h_feed_publish(1, "q", "a", 2, 9, false), 0);
  uvmqtt__session_connection_lost(H.s, UVMQTT_EPEERCLOSED);
  assert_int_equal(h_connect(2, 0, false), 0);
  assert_int_equal(h_feed_connack(2, true, 0, NULL), 0);
  assert_int_equal(h_feed_publish(3, "q", "a", 2, 9, true), 0);
  assert_int_equal(H.nmsg, 1); /* still held: not delivered twice */
  uvmqtt__session_connection_lost(H.s, UVMQTT_EPEERCLOSED);
  assert_int_equal(h_connect(4, 0, false), 0);
  assert_int_equal(h_feed_connack(4, false, 0, NULL), 0);
  assert_int_equal(h_feed_publish(5, "q", "b", 2, 9, false), 0);
  assert_int_equal(H.nmsg, 2);
}

/* Pending SUBSCRIBEs fail on connection loss; output not taken is dropped. */
static void test_connection_lost_requests(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  h_up(0);
  assert_int_equal(h_sub("a/#", 1, 5), 1);
  assert_int_equal(h_pub(1, "t", "q0", 0, 6), 0);
  uvmqtt__session_connection_lost(H.s, UVMQTT_EPEERCLOSED);
  assert_int_equal(H.nsub, 1);
  assert_int_equal(H.sub[0].status, UVMQTT_EPEERCLOSED);
  assert_int_equal(H.sub[0].arg, 5);
  assert_int_equal(h_ndone(6), 1);
  assert_int_equal(h_donefor(6)->status, UVMQTT_EPEERCLOSED);
  assert_false(uvmqtt__session_has_output(H.s));
  assert_int_equal(h_sub("a/#", 1, 7), UVMQTT_ENOTCONN);
  /* Reconnected, subscribing works again. */
  h_up(2);
  assert_true(h_sub("a/#", 1, 8) > 0);
}

/* ---- packet ids ------------------------------------------------------------
 */

static void test_packet_id_wrap(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  h_up(0);
  /* Id 1 stays unacknowledged across a full wrap. */
  assert_int_equal(h_pub(1, "t", "held", 1, 0), 1);
  h_flush(1);
  int last = 1;
  for (int i = 0; i < 70000; i++) {
    int id = h_pub(1, "t", "x", 1, 1);
    assert_true(id > 0);
    assert_int_not_equal(id, 1);
    int want = last == 65535 ? 2 : last + 1;
    if (id != want)
      fail_msg("publish %d got id %d, expected %d", i, id, want);
    last = id;
    h_clear();
    assert_int_equal(h_flush(1), 1);
    assert_int_equal(H.sent[0].id, id);
    assert_int_equal(h_feed_ack(1, UVMQTT_PUBACK, (uint16_t)id, 0), 0);
  }
  /* Id 1 is still the held message, and completes with its PUBACK. */
  h_clear();
  assert_int_equal(h_feed_ack(2, UVMQTT_PUBACK, 1, 0), 0);
  assert_int_equal(h_ndone(0), 1);
  assert_int_equal(uvmqtt__session_inflight(H.s), 0);
}

/* A request id in use is skipped by publishes, and vice versa. */
static void test_packet_id_shared(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  h_up(0);
  assert_int_equal(h_pub(1, "t", "a", 1, 1), 1);
  assert_int_equal(h_sub("s", 0, 2), 2);
  assert_int_equal(h_pub(1, "t", "b", 2, 3), 3);
  h_flush(1);
  assert_int_equal(h_feed_ack(1, UVMQTT_PUBACK, 1, 0), 0);
  assert_int_equal(h_sub("s", 0, 4), 4);
}

/* With every id in use, publish fails with UVMQTT_ENOPKTID. */
static void test_packet_id_exhausted(void **state) {
  (void)state;
  uvmqtt_session_config_t c = h_cfg(UVMQTT_V311);
  c.max_inflight = 0; /* 65535 */
  h_init(&c);
  for (int i = 1; i <= 65535; i++)
    assert_int_equal(h_pub(1, "t", "x", 1, i), i);
  assert_int_equal(h_pub(1, "t", "x", 1, 0), UVMQTT_ENOPKTID);
  assert_int_equal(h_pub(1, "t", "x", 0, 0), 0); /* QoS 0 needs no id */
  assert_int_equal(uvmqtt__session_queued(H.s), 65536);
}

/* ---- window ------------------------------------------------------------ */

static void test_window(void **state) {
  (void)state;
  uvmqtt_session_config_t c = h_cfg(UVMQTT_V311);
  c.max_inflight = 2;
  h_init(&c);
  h_up(0);
  for (int i = 1; i <= 5; i++)
    assert_int_equal(h_pub(1, "t", "x", (uint8_t)(i % 2 ? 1 : 2), i), i);
  assert_int_equal(h_flush(1), 2);
  assert_int_equal(H.sent[0].id, 1);
  assert_int_equal(H.sent[1].id, 2);
  assert_int_equal(uvmqtt__session_inflight(H.s), 2);
  assert_int_equal(uvmqtt__session_queued(H.s), 3);
  /* A QoS 0 publish waits behind the queue: order is kept. */
  assert_int_equal(h_pub(1, "t", "zero", 0, 9), 0);
  assert_int_equal(h_flush(1), 0);
  assert_int_equal(h_feed_ack(2, UVMQTT_PUBACK, 1, 0), 0);
  assert_int_equal(h_flush(2), 1);
  assert_int_equal(H.sent[2].id, 3);
  /* PUBREC does not open the window; PUBCOMP does. */
  assert_int_equal(h_feed_ack(3, UVMQTT_PUBREC, 2, 0), 0);
  assert_int_equal(h_flush(3), 1);
  assert_int_equal(H.sent[3].type, UVMQTT_PUBREL);
  assert_int_equal(h_feed_ack(3, UVMQTT_PUBCOMP, 2, 0), 0);
  assert_int_equal(h_flush(3), 1);
  assert_int_equal(H.sent[4].id, 4);
  assert_int_equal(h_feed_ack(4, UVMQTT_PUBACK, 3, 0), 0);
  assert_int_equal(h_flush(4), 2);
  assert_int_equal(H.sent[5].id, 5);
  assert_int_equal(H.sent[6].qos, 0);
  assert_string_equal((char *)H.sent[6].payload, "zero");
  assert_int_equal(uvmqtt__session_queued(H.s), 0);
}

static void test_window_server_receive_max(void **state) {
  (void)state;
  uvmqtt_session_config_t c = h_cfg(UVMQTT_V5);
  c.max_inflight = 3;
  h_init(&c);
  for (int i = 1; i <= 4; i++)
    assert_int_equal(h_pub(0, "t", "x", 1, i), i);
  assert_int_equal(h_connect(0, 0, true), 0);
  h_flush(0);
  uvmqtt_props_t p = props_with(UVMQTT_PROP_RECEIVE_MAXIMUM, 1);
  assert_int_equal(h_feed_connack(1, false, 0, &p), 0);
  assert_int_equal(h_flush(1), 1);
  assert_int_equal(H.sent[1].id, 1);
  assert_int_equal(h_feed_ack(2, UVMQTT_PUBACK, 1, 0), 0);
  assert_int_equal(h_flush(2), 1);
  assert_int_equal(H.sent[2].id, 2);
  /* A larger server maximum leaves ours in force. */
  uvmqtt__session_connection_lost(H.s, UVMQTT_EPEERCLOSED);
  assert_int_equal(h_connect(3, 0, false), 0); /* resume the session */
  h_clear();
  p = props_with(UVMQTT_PROP_RECEIVE_MAXIMUM, 100);
  assert_int_equal(h_feed_connack(3, true, 0, &p), 0);
  assert_int_equal(h_flush(3), 4); /* CONNECT, id 2 again, ids 3 and 4 */
  assert_int_equal(H.sent[1].id, 2);
  assert_true(H.sent[1].dup);
  assert_int_equal(H.sent[3].id, 4);
  assert_int_equal(uvmqtt__session_inflight(H.s), 3);
}

/* [MQTT-3.2.2-4]: after a clean start the broker cannot have a session. */
static void test_session_present_after_clean_start(void **state) {
  (void)state;
  uvmqtt_session_config_t c = h_cfg(UVMQTT_V311);
  h_init(&c);
  assert_int_equal(h_connect(0, 0, true), 0);
  h_flush(0);
  assert_int_equal(h_feed_connack(1, true, 0, NULL), UVMQTT_EUNEXPECTED);
}

/* [MQTT-3.2.2-14]: Retain Available 0 means no retained PUBLISH. */
static void test_retain_not_available(void **state) {
  (void)state;
  uvmqtt_session_config_t c = h_cfg(UVMQTT_V5);
  h_init(&c);
  uvmqtt_session_pub_t p;
  memset(&p, 0, sizeof(p));
  p.topic = "t";
  p.topic_len = 1;
  p.payload = "x";
  p.payload_len = 1;
  p.qos = 1;
  p.retain = true;
  /* Queued before the CONNACK says so: completes with ENOTSUP. */
  assert_true(uvmqtt__session_publish(H.s, 0, &p, NULL, NULL) > 0);
  assert_int_equal(h_connect(0, 0, true), 0);
  h_flush(0);
  uvmqtt_props_t props = props_with(UVMQTT_PROP_RETAIN_AVAILABLE, 0);
  assert_int_equal(h_feed_connack(1, false, 0, &props), 0);
  assert_int_equal(uvmqtt__session_inflight(H.s), 0);
  assert_int_equal(uvmqtt__session_queued(H.s), 0);
  /* Known: refused at once; not retained still goes. */
  assert_int_equal(uvmqtt__session_publish(H.s, 1, &p, NULL, NULL),
                   UVMQTT_ENOTSUP);
  p.retain = false;
  assert_true(uvmqtt__session_publish(H.s, 1, &p, NULL, NULL) > 0);
  assert_int_equal(uvmqtt__session_inflight(H.s), 1);
}

/* [MQTT-3.14.2-3/4]: the Reason String and User Properties are left out
 * of a DISCONNECT that would exceed the server's Maximum Packet Size. */
static void test_disconnect_props_dropped_when_too_big(void **state) {
  (void)state;
  uvmqtt_session_config_t c = h_cfg(UVMQTT_V5);
  h_init(&c);
  assert_int_equal(h_connect(0, 0, true), 0);
  h_flush(0);
  uvmqtt_props_t p = props_with(UVMQTT_PROP_MAXIMUM_PACKET_SIZE, 20);
  assert_int_equal(h_feed_connack(1, false, 0, &p), 0);
  h_clear();
  uvmqtt_props_t d;
  memset(&d, 0, sizeof(d));
  d.present = UVMQTT_PROP_BIT(UVMQTT_PROP_REASON_STRING);
  d.reason_string.data = "a reason string far longer than twenty bytes";
  d.reason_string.len = strlen(d.reason_string.data);
  assert_int_equal(uvmqtt__session_disconnect(H.s, 0x80, &d), 0);
  assert_int_equal(h_flush(2), 1);
  assert_int_equal(H.sent[0].type, UVMQTT_DISCONNECT);
  assert_int_equal(H.sent[0].reason, 0x80);
  assert_true(H.sent[0].size <= 20);
}

/* A hand-set alias belongs to the connection it was sent on: the resend
 * after a reconnect carries the full topic and no stale alias. */
static void test_resend_drops_manual_alias(void **state) {
  (void)state;
  uvmqtt_session_config_t c = h_cfg(UVMQTT_V5);
  h_init(&c);
  assert_int_equal(h_connect(0, 0, false), 0);
  h_flush(0);
  uvmqtt_props_t p = props_with(UVMQTT_PROP_TOPIC_ALIAS_MAXIMUM, 5);
  assert_int_equal(h_feed_connack(1, false, 0, &p), 0);
  uvmqtt_props_t a = props_with(UVMQTT_PROP_TOPIC_ALIAS, 2);
  uvmqtt_session_pub_t pub;
  memset(&pub, 0, sizeof(pub));
  pub.topic = "t/a";
  pub.topic_len = 3;
  pub.payload = "x";
  pub.payload_len = 1;
  pub.qos = 1;
  pub.props = &a;
  assert_true(uvmqtt__session_publish(H.s, 1, &pub, NULL, NULL) > 0);
  h_flush(1);
  uvmqtt__session_connection_lost(H.s, UVMQTT_EPEERCLOSED);
  assert_int_equal(h_connect(2, 0, false), 0);
  h_clear();
  assert_int_equal(h_feed_connack(3, true, 0, NULL), 0);
  assert_int_equal(h_flush(3), 2); /* CONNECT, then the resend */
  assert_int_equal(H.sent[1].type, UVMQTT_PUBLISH);
  assert_true(H.sent[1].dup);
  assert_string_equal(H.sent[1].topic, "t/a");
  assert_false(H.sent[1].alias_only);
  assert_int_equal(H.sent[1].alias, 0);
}

/* ---- queue limits -------------------------------------------------------- */

static void test_queue_refuse_new(void **state) {
  (void)state;
  uvmqtt_session_config_t c = h_cfg(UVMQTT_V311);
  c.max_queued = 3;
  h_init(&c);
  assert_int_equal(h_pub(0, "t", "1", 1, 1), 1);
  assert_int_equal(h_pub(0, "t", "2", 0, 2), 0);
  assert_int_equal(h_pub(0, "t", "3", 2, 3), 2);
  assert_int_equal(h_pub(0, "t", "4", 1, 4), UVMQTT_EQUEUEFULL);
  assert_int_equal(h_pub(0, "t", "4", 0, 4), UVMQTT_EQUEUEFULL);
  assert_int_equal(H.npub, 0); /* a refused publish never completes */
  assert_int_equal(uvmqtt__session_queued(H.s), 3);
  h_up_keep(1);
  assert_int_equal(h_count_sent(UVMQTT_PUBLISH, 0), 3);
  assert_string_equal((char *)H.sent[1].payload, "1");
  assert_string_equal((char *)H.sent[2].payload, "2");
  assert_string_equal((char *)H.sent[3].payload, "3");
  assert_int_equal(H.sent[3].id, 2); /* the refused one used no id */
  assert_int_equal(h_ndone(2), 1);   /* QoS 0 written */
  assert_int_equal(h_ndone(4), 0);
}

static void test_queue_bytes(void **state) {
  (void)state;
  uvmqtt_session_config_t c = h_cfg(UVMQTT_V311);
  c.max_queued_bytes = 20; /* topic + payload */
  h_init(&c);
  assert_int_equal(h_pub(0, "tt", "12345678", 1, 1), 1); /* 10 */
  assert_int_equal(h_pub(0, "tt", "1234567", 1, 2), 2);  /* 9, total 19 */
  assert_int_equal(h_pub(0, "tt", "", 1, 3), UVMQTT_EQUEUEFULL); /* 21 */
  assert_int_equal(h_pub(0, "t", "", 0, 4), 0);                  /* 20 */
  assert_int_equal(uvmqtt__session_queued(H.s), 3);
  h_up_keep(1);
  assert_int_equal(h_count_sent(UVMQTT_PUBLISH, 0), 3);
  assert_int_equal(uvmqtt__session_queued(H.s), 0);
  /* Sending frees queue room. */
  uvmqtt__session_connection_lost(H.s, UVMQTT_EPEERCLOSED);
  assert_int_equal(h_pub(2, "tt", "12345678", 1, 5), 3);
}

static void test_queue_drop_oldest(void **state) {
  (void)state;
  uvmqtt_session_config_t c = h_cfg(UVMQTT_V311);
  c.max_queued = 2;
  c.queue_policy = QP_DROP_OLDEST;
  h_init(&c);
  assert_int_equal(h_pub(0, "t", "1", 1, 1), 1);
  assert_int_equal(h_pub(0, "t", "2", 2, 2), 2);
  assert_int_equal(h_pub(0, "t", "3", 1, 3), 3);
  assert_int_equal(H.npub, 1);
  assert_int_equal(H.pub[0].arg, 1);
  assert_int_equal(H.pub[0].status, UVMQTT_EDROPPED);
  assert_int_equal(h_pub(0, "t", "4", 0, 4), 0);
  assert_int_equal(H.npub, 2);
  assert_int_equal(H.pub[1].arg, 2);
  assert_int_equal(H.pub[1].status, UVMQTT_EDROPPED);
  assert_int_equal(uvmqtt__session_queued(H.s), 2);
  h_up_keep(1);
  assert_int_equal(h_count_sent(UVMQTT_PUBLISH, 0), 2);
  assert_string_equal((char *)H.sent[1].payload, "3");
  assert_string_equal((char *)H.sent[2].payload, "4");
  /* Ids go on in sequence. */
  assert_int_equal(h_pub(2, "t", "5", 1, 5), 4);
}

/* The queue limit also applies while connected but blocked by the window;
 * messages that go out at once are not counted. */
static void test_queue_limit_window(void **state) {
  (void)state;
  uvmqtt_session_config_t c = h_cfg(UVMQTT_V311);
  c.max_queued = 1;
  c.max_inflight = 1;
  h_init(&c);
  h_up(0);
  assert_int_equal(h_pub(1, "t", "a", 1, 1), 1); /* in flight */
  assert_int_equal(h_pub(1, "t", "b", 1, 2), 2); /* queued */
  assert_int_equal(h_pub(1, "t", "c", 1, 3), UVMQTT_EQUEUEFULL);
  assert_int_equal(uvmqtt__session_inflight(H.s), 1);
  assert_int_equal(uvmqtt__session_queued(H.s), 1);
}

/* ---- keepalive -------------------------------------------------------------
 */

static void test_keepalive(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  assert_int_equal(uvmqtt__session_deadline(H.s), UINT64_MAX);
  assert_int_equal(h_connect(1000, 10, true), 0);
  h_flush(1000);
  /* Waiting for CONNACK: only the silence limit (keepalive * 1.4). */
  assert_int_equal(uvmqtt__session_deadline(H.s), 15000);
  assert_int_equal(h_feed_connack(1500, false, 0, NULL), 0);
  assert_int_equal(uvmqtt__session_deadline(H.s), 11000);
  assert_int_equal(uvmqtt__session_tick(H.s, 10999), 0);
  assert_int_equal(h_flush(10999), 0);
  assert_int_equal(uvmqtt__session_tick(H.s, 11000), 0);
  assert_int_equal(h_flush(11000), 1);
  assert_int_equal(H.sent[1].type, UVMQTT_PINGREQ);
  /* One PINGREQ outstanding at a time; now the silence limit counts. */
  assert_int_equal(uvmqtt__session_deadline(H.s), 15500);
  assert_int_equal(uvmqtt__session_tick(H.s, 13000), 0);
  assert_int_equal(h_flush(13000), 0);
  assert_int_equal(uvmqtt__session_tick(H.s, 15499), 0);
  assert_int_equal(uvmqtt__session_tick(H.s, 15500), UVMQTT_EKEEPALIVE);
}

static void test_keepalive_pingresp(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  assert_int_equal(h_connect(0, 10, true), 0);
  h_flush(0);
  assert_int_equal(h_feed_connack(0, false, 0, NULL), 0);
  assert_int_equal(uvmqtt__session_tick(H.s, 10000), 0);
  assert_int_equal(h_flush(10000), 1);
  static const uint8_t pingresp[] = {0xD0, 0x00};
  assert_int_equal(h_feed(10500, pingresp, 2), 0);
  /* Next PINGREQ 10 s after our last send. */
  assert_int_equal(uvmqtt__session_deadline(H.s), 20000);
  assert_int_equal(uvmqtt__session_tick(H.s, 20000), 0);
  assert_int_equal(h_flush(20000), 1);
  assert_int_equal(H.sent[H.nsent - 1].type, UVMQTT_PINGREQ);
  /* Our own traffic postpones the PINGREQ, but only the broker's bytes
   * postpone the silence limit. */
  assert_int_equal(h_feed(20100, pingresp, 2), 0);
  assert_int_equal(h_pub(25000, "t", "x", 0, 1), 0);
  h_flush(25000);
  assert_int_equal(uvmqtt__session_deadline(H.s), 30100);
  assert_int_equal(uvmqtt__session_tick(H.s, 30100), 0);
  assert_int_equal(h_flush(30100), 1); /* silent broker: PINGREQ */
  assert_int_equal(uvmqtt__session_deadline(H.s), 20100 + 14000);
}

/* Any inbound byte, even one of a partial packet, postpones the silence
 * deadline (Paho Python issue #914: a large message trickling in must not
 * be mistaken for a dead broker). */
static void test_keepalive_partial_bytes(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  assert_int_equal(h_connect(0, 10, true), 0);
  h_flush(0);
  assert_int_equal(h_feed_connack(0, false, 0, NULL), 0);
  assert_int_equal(uvmqtt__session_tick(H.s, 10000), 0);
  h_flush(10000);
  assert_int_equal(uvmqtt__session_deadline(H.s), 14000);
  static uint8_t big[5000];
  uint8_t pkt[5100];
  size_t n = b_publish(pkt, sizeof(pkt), "t", big, sizeof(big), 0, 0, false);
  /* One byte at 13999: the deadline moves to 13999 + 14000. */
  assert_int_equal(h_feed(13999, pkt, 1), 0);
  assert_int_equal(uvmqtt__session_tick(H.s, 14000), 0);
  assert_int_equal(uvmqtt__session_deadline(H.s), 27999);
  /* Keep trickling: never times out while bytes arrive. */
  uint64_t t = 13999;
  size_t at = 1;
  while (at < n) {
    t += 13000;
    size_t k = n - at < 1000 ? n - at : 1000;
    assert_int_equal(h_feed(t, pkt + at, k), 0);
    at += k;
    assert_int_equal(uvmqtt__session_tick(H.s, t + 12999), 0);
  }
  assert_int_equal(H.nmsg, 1);
  assert_int_equal(H.msg[0].len, sizeof(big));
}

static void test_keepalive_server_keep_alive(void **state) {
  (void)state;
  h_init_v(UVMQTT_V5);
  assert_int_equal(h_connect(0, 60, true), 0);
  h_flush(0);
  assert_int_equal(uvmqtt__session_keepalive(H.s), 60);
  assert_int_equal(uvmqtt__session_deadline(H.s), 84000);
  uvmqtt_props_t p = props_with(UVMQTT_PROP_SERVER_KEEP_ALIVE, 5);
  assert_int_equal(h_feed_connack(100, false, 0, &p), 0);
  assert_int_equal(uvmqtt__session_keepalive(H.s), 5);
  assert_int_equal(uvmqtt__session_deadline(H.s), 5000);
  assert_int_equal(uvmqtt__session_tick(H.s, 5000), 0);
  assert_int_equal(h_flush(5000), 1);
  assert_int_equal(H.sent[1].type, UVMQTT_PINGREQ);
  assert_int_equal(uvmqtt__session_deadline(H.s), 100 + 7000);
  assert_int_equal(uvmqtt__session_tick(H.s, 7100), UVMQTT_EKEEPALIVE);
}

static void test_keepalive_zero(void **state) {
  (void)state;
  h_init_v(UVMQTT_V5);
  assert_int_equal(h_connect(0, 0, true), 0);
  h_flush(0);
  assert_int_equal(h_feed_connack(0, false, 0, NULL), 0);
  assert_int_equal(uvmqtt__session_deadline(H.s), UINT64_MAX);
  assert_int_equal(uvmqtt__session_tick(H.s, UINT64_MAX / 2), 0);
  assert_int_equal(h_flush(1), 0);
  /* The server may impose one. */
  uvmqtt__session_connection_lost(H.s, UVMQTT_EPEERCLOSED);
  assert_int_equal(uvmqtt__session_deadline(H.s), UINT64_MAX);
  assert_int_equal(h_connect(1000, 0, true), 0);
  uvmqtt_props_t p = props_with(UVMQTT_PROP_SERVER_KEEP_ALIVE, 2);
  assert_int_equal(h_feed_connack(1000, false, 0, &p), 0);
  assert_int_equal(uvmqtt__session_deadline(H.s), 3000);
}

/* ---- protocol violations --------------------------------------------------
 */

typedef struct {
  const char *name;
  uint8_t bytes[16];
  size_t len;
  int err;
} bad_t;

static void test_malformed(void **state) {
  (void)state;
  static const bad_t cases[] = {
      {"PUBLISH QoS 3",
       {0x36, 0x05, 0x00, 0x01, 't', 0x00, 0x01},
       7,
       UVMQTT_EQOS},
      {"PUBACK reserved flags", {0x41, 0x02, 0x00, 0x01}, 4, UVMQTT_EFLAGS},
      {"remaining length 5 bytes",
       {0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01},
       6,
       UVMQTT_EREMLEN},
      {"reserved type 0", {0x00, 0x00}, 2, UVMQTT_ETYPE},
      {"PUBACK id 0", {0x40, 0x02, 0x00, 0x00}, 4, UVMQTT_EPACKETID},
      {"PUBACK trailing", {0x40, 0x03, 0x00, 0x01, 0x00}, 5, UVMQTT_ETRAILING},
      {"PUBLISH topic truncated",
       {0x30, 0x03, 0x00, 0x05, 'a'},
       5,
       UVMQTT_ETRUNC},
      {"PUBLISH wildcard topic",
       {0x30, 0x04, 0x00, 0x02, 'a', '#'},
       6,
       UVMQTT_EWILDCARD},
      {"PUBLISH QoS 0 DUP", {0x38, 0x03, 0x00, 0x01, 'a'}, 5, UVMQTT_EFLAGS},
      {"SUBSCRIBE from the server",
       {0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 'a', 0x00},
       8,
       UVMQTT_ETYPE},
      {"PINGREQ from the server", {0xC0, 0x00}, 2, UVMQTT_ETYPE},
      {"CONNECT from the server", {0x10, 0x00}, 2, UVMQTT_ETYPE},
      {"UNSUBSCRIBE from the server",
       {0xA2, 0x05, 0x00, 0x01, 0x00, 0x01, 'a'},
       7,
       UVMQTT_ETYPE},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const bad_t *c = &cases[i];
    /* Whole, and one byte at a time. */
    for (int bytewise = 0; bytewise < 2; bytewise++) {
      h_init_v(UVMQTT_V311);
      h_up(0);
      int rc = 0;
      if (bytewise) {
        for (size_t k = 0; k < c->len && rc == 0; k++)
          rc = h_feed(1, c->bytes + k, 1);
      } else {
        rc = h_feed(1, c->bytes, c->len);
      }
      if (rc != c->err)
        fail_msg("%s: got %s, expected %s", c->name, uvmqtt_err_name(rc),
                 uvmqtt_err_name(c->err));
      assert_int_equal(H.nmsg, 0);
      assert_true(H.nlog > 0); /* the reason is logged */
      h_fini(UVMQTT_ECLOSED);
    }
  }
}

static void test_publish_before_connack(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  assert_int_equal(h_connect(0, 0, true), 0);
  assert_int_equal(h_feed_publish(1, "t", "x", 0, 0, false),
                   UVMQTT_EUNEXPECTED);
  assert_int_equal(H.nmsg, 0);
  h_fini(0);
  h_init_v(UVMQTT_V311);
  assert_int_equal(h_connect(0, 0, true), 0);
  assert_int_equal(h_feed_ack(1, UVMQTT_PUBACK, 1, 0), UVMQTT_EUNEXPECTED);
}

static void test_second_connack(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  h_up(0);
  assert_int_equal(h_feed_connack(1, false, 0, NULL), UVMQTT_EUNEXPECTED);
  assert_int_equal(H.nconnack, 0);
}

static void test_unknown_acks(void **state) {
  (void)state;
  static const struct {
    uint8_t type;
    uint16_t id;
  } cases[] = {
      {UVMQTT_PUBACK, 9},  /* nothing in flight with that id */
      {UVMQTT_PUBCOMP, 9}, /* idem */
      {UVMQTT_PUBACK, 2},  /* id 2 is a QoS 2 message */
      {UVMQTT_PUBCOMP, 1}, /* id 1 is QoS 1 */
      {UVMQTT_PUBCOMP, 2}, /* id 2 has had no PUBREC yet */
      {UVMQTT_PUBREC, 1},  /* QoS 1 (3.1.1: a violation) */
      {UVMQTT_PUBREC, 9},  /* unknown */
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    h_init_v(UVMQTT_V311);
    h_up(0);
    assert_int_equal(h_pub(1, "t", "a", 1, 1), 1);
    assert_int_equal(h_pub(1, "t", "b", 2, 2), 2);
    h_flush(1);
    int rc = h_feed_ack(2, cases[i].type, cases[i].id, 0);
    if (rc != UVMQTT_EUNEXPECTED)
      fail_msg("%s id %u: got %s", uvmqtt_packet_name(cases[i].type),
               cases[i].id, uvmqtt_err_name(rc));
    assert_int_equal(H.npub, 0);
    assert_int_equal(uvmqtt__session_inflight(H.s), 2);
    h_fini(UVMQTT_ECLOSED);
    assert_int_equal(H.npub, 0);
  }
  /* v5: an unknown PUBREC is answered with PUBREL "not found". */
  h_init_v(UVMQTT_V5);
  h_up(0);
  assert_int_equal(h_feed_ack(2, UVMQTT_PUBREC, 9, 0), 0);
  assert_int_equal(h_flush(2), 1);
  assert_int_equal(H.sent[H.nsent - 1].type, UVMQTT_PUBREL);
  assert_int_equal(H.sent[H.nsent - 1].reason, 0x92);
  /* A duplicate PUBACK after completion is unknown. */
  assert_int_equal(h_pub(3, "t", "a", 1, 1), 1);
  h_flush(3);
  assert_int_equal(h_feed_ack(4, UVMQTT_PUBACK, 1, 0), 0);
  assert_int_equal(h_feed_ack(4, UVMQTT_PUBACK, 1, 0), UVMQTT_EUNEXPECTED);
}

static void test_bad_suback(void **state) {
  (void)state;
  uint8_t buf[64];
  uint8_t codes[2] = {0, 1};
  h_init_v(UVMQTT_V311);
  h_up(0);
  assert_int_equal(h_sub("a", 1, 1), 1);
  size_t n = b_suback(buf, UVMQTT_SUBACK, 5, codes, 1);
  assert_int_equal(h_feed(1, buf, n), UVMQTT_EUNEXPECTED);
  assert_int_equal(H.nsub, 0);
  h_fini(UVMQTT_ECLOSED);
  assert_int_equal(H.nsub, 0);

  h_init_v(UVMQTT_V311);
  h_up(0);
  assert_int_equal(h_sub("a", 1, 1), 1);
  n = b_suback(buf, UVMQTT_SUBACK, 1, codes, 2);
  assert_int_equal(h_feed(1, buf, n), UVMQTT_EUNEXPECTED);
  assert_int_equal(H.nsub, 0);
  h_fini(UVMQTT_ECLOSED);

  /* An UNSUBACK does not answer a SUBSCRIBE with the same id. */
  h_init_v(UVMQTT_V5);
  h_up(0);
  assert_int_equal(h_sub("a", 1, 1), 1);
  n = b_suback(buf, UVMQTT_UNSUBACK, 1, codes, 1);
  assert_int_equal(h_feed(1, buf, n), UVMQTT_EUNEXPECTED);
  h_fini(UVMQTT_ECLOSED);
  assert_int_equal(H.nsub, 0);
}

static void test_topic_alias(void **state) {
  (void)state;
  h_init_v(UVMQTT_V5);
  h_up(0);
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_PUBLISH;
  p.u.publish.topic.data = "t";
  p.u.publish.topic.len = 1;
  p.u.publish.props = props_with(UVMQTT_PROP_TOPIC_ALIAS, 1);
  assert_int_equal(h_feed_pkt(1, &p), UVMQTT_ETOPICALIAS);
  assert_int_equal(H.nmsg, 0);
  h_fini(UVMQTT_ECLOSED);
  /* Alias only, empty topic. */
  h_init_v(UVMQTT_V5);
  h_up(0);
  p.u.publish.topic.len = 0;
  assert_int_equal(h_feed_pkt(1, &p), UVMQTT_ETOPICALIAS);
  assert_int_equal(H.nmsg, 0);
}

/* Incoming aliases within our Topic Alias Maximum: defined, then used
 * alone; an alias used before its definition or over the maximum is a
 * violation. */
static void test_topic_alias_in(void **state) {
  (void)state;
  uvmqtt_session_config_t c = h_cfg(UVMQTT_V5);
  c.topic_alias_max_in = 3;
  h_init(&c);
  h_up(0);
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_PUBLISH;
  p.u.publish.topic.data = "long/topic/name";
  p.u.publish.topic.len = 15;
  p.u.publish.payload.data = (const uint8_t *)"v";
  p.u.publish.payload.len = 1;
  p.u.publish.props = props_with(UVMQTT_PROP_TOPIC_ALIAS, 3);
  assert_int_equal(h_feed_pkt(1, &p), 0);
  p.u.publish.topic.len = 0;
  assert_int_equal(h_feed_pkt(1, &p), 0);
  assert_int_equal(H.nmsg, 2);
  assert_string_equal(H.msg[1].topic, "long/topic/name");
  p.u.publish.props.topic_alias = 2; /* never defined */
  assert_int_equal(h_feed_pkt(1, &p), UVMQTT_ETOPICALIAS);
  assert_int_equal(H.nmsg, 2);
  h_fini(0);
  h_init(&c);
  h_up(0);
  p.u.publish.topic.len = 1;
  p.u.publish.props.topic_alias = 4; /* over our maximum */
  assert_int_equal(h_feed_pkt(1, &p), UVMQTT_ETOPICALIAS);
  assert_int_equal(H.nmsg, 0);
  /* Aliases are per connection. */
  h_fini(0);
  h_init(&c);
  h_up(0);
  p.u.publish.props.topic_alias = 1;
  assert_int_equal(h_feed_pkt(1, &p), 0);
  uvmqtt__session_connection_lost(H.s, UVMQTT_EPEERCLOSED);
  h_up(2);
  p.u.publish.topic.len = 0;
  assert_int_equal(h_feed_pkt(3, &p), UVMQTT_ETOPICALIAS);
}

static void test_server_disconnect(void **state) {
  (void)state;
  h_init_v(UVMQTT_V5);
  h_up(0);
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_DISCONNECT;
  p.u.disconnect.reason_code = 0x8B; /* Server shutting down */
  assert_int_equal(h_feed_pkt(1, &p), UVMQTT_EDISCONNECTED);
  assert_int_equal(H.ndisc, 1);
  assert_int_equal(H.disc_reason, 0x8B);
  h_fini(0);
  /* Also before CONNACK. */
  h_init_v(UVMQTT_V5);
  assert_int_equal(h_connect(0, 0, true), 0);
  p.u.disconnect.reason_code = 0x87;
  assert_int_equal(h_feed_pkt(1, &p), UVMQTT_EDISCONNECTED);
  assert_int_equal(H.ndisc, 1);
}

static void test_too_big(void **state) {
  (void)state;
  uvmqtt_session_config_t c = h_cfg(UVMQTT_V311);
  c.max_packet_size = 100;
  h_init(&c);
  h_up(0);
  uint8_t buf[256];
  static uint8_t pl[200];
  /* 98 bytes of remaining length + 2 = 100: accepted. */
  size_t n = b_publish(buf, sizeof(buf), "t", pl, 95, 0, 0, false);
  assert_int_equal(n, 100);
  assert_int_equal(h_feed(1, buf, n), 0);
  assert_int_equal(H.nmsg, 1);
  /* 101: refused as soon as the fixed header is read. */
  n = b_publish(buf, sizeof(buf), "t", pl, 96, 0, 0, false);
  assert_int_equal(h_feed(2, buf, 1), 0);
  assert_int_equal(h_feed(2, buf + 1, 1), UVMQTT_ETOOBIG);
  assert_int_equal(H.nmsg, 1);
}

/* AUTH is passed up (v5). */
static void test_auth(void **state) {
  (void)state;
  h_init_v(UVMQTT_V5);
  assert_int_equal(h_connect(0, 0, true), 0);
  h_flush(0);
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_AUTH;
  p.u.auth.reason_code = 0x18;
  p.u.auth.props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_AUTHENTICATION_METHOD);
  p.u.auth.props.authentication_method.data = "X";
  p.u.auth.props.authentication_method.len = 1;
  assert_int_equal(h_feed_pkt(1, &p), 0);
  assert_int_equal(H.nauth, 1);
  assert_int_equal(uvmqtt__session_auth(H.s, 0x18, &p.u.auth.props), 0);
  assert_int_equal(h_flush(1), 1);
  assert_int_equal(H.sent[1].type, UVMQTT_AUTH);
}

/* ---- message expiry ------------------------------------------------------ */

static int pub_expiry(uint64_t now, const char *payload, uint8_t qos,
                      uint32_t expiry, long arg) {
  uvmqtt_session_pub_t p;
  memset(&p, 0, sizeof(p));
  p.topic = "e";
  p.topic_len = 1;
  p.payload = payload;
  p.payload_len = strlen(payload);
  p.qos = qos;
  p.expiry_s = expiry;
  return h_pub_ex(now, &p, arg);
}

static void test_expiry_queued(void **state) {
  (void)state;
  h_init_v(UVMQTT_V5);
  assert_int_equal(pub_expiry(0, "gone", 1, 5, 1), 1);
  assert_int_equal(pub_expiry(0, "kept", 1, 10, 2), 2);
  assert_int_equal(pub_expiry(0, "gone0", 0, 5, 3), 0);
  assert_int_equal(pub_expiry(1000, "kept0", 0, 60, 4), 0);
  assert_int_equal(h_connect(6500, 0, true), 0);
  h_flush(6500);
  assert_int_equal(h_feed_connack(6500, false, 0, NULL), 0);
  assert_int_equal(h_donefor(1)->status, UVMQTT_EEXPIRED);
  assert_int_equal(h_donefor(3)->status, UVMQTT_EEXPIRED);
  assert_int_equal(h_flush(6500), 2);
  assert_string_equal((char *)H.sent[1].payload, "kept");
  assert_true(H.sent[1].has_expiry);
  assert_int_equal(H.sent[1].expiry, 10 - 6); /* waited 6.5 s */
  assert_string_equal((char *)H.sent[2].payload, "kept0");
  assert_int_equal(H.sent[2].expiry, 60 - 5);
  assert_int_equal(h_ndone(1), 1);
  assert_int_equal(h_ndone(3), 1);
  assert_int_equal(h_ndone(4), 1);
  /* No expiry: no property. */
  assert_int_equal(h_pub(7000, "t", "x", 0, 5), 0);
  h_flush(7000);
  assert_false(H.sent[3].has_expiry);
}

/* A message expires while waiting for the window. */
static void test_expiry_window(void **state) {
  (void)state;
  uvmqtt_session_config_t c = h_cfg(UVMQTT_V5);
  c.max_inflight = 1;
  h_init(&c);
  h_up(0);
  assert_int_equal(pub_expiry(0, "a", 1, 0, 1), 1);
  assert_int_equal(pub_expiry(0, "b", 1, 2, 2), 2);
  assert_int_equal(pub_expiry(0, "c", 1, 0, 3), 3);
  assert_int_equal(h_flush(0), 1);
  assert_int_equal(h_feed_ack(3000, UVMQTT_PUBACK, 1, 0), 0);
  assert_int_equal(h_donefor(2)->status, UVMQTT_EEXPIRED);
  assert_int_equal(h_flush(3000), 1);
  assert_string_equal((char *)H.sent[H.nsent - 1].payload, "c");
  /* A resend after reconnect carries the remaining lifetime. */
  assert_int_equal(pub_expiry(3000, "d", 1, 100, 4), 4);
  assert_int_equal(h_feed_ack(3000, UVMQTT_PUBACK, 3, 0), 0);
  h_flush(3000);
  assert_int_equal(H.sent[H.nsent - 1].expiry, 100);
  uvmqtt__session_connection_lost(H.s, UVMQTT_EPEERCLOSED);
  assert_int_equal(h_connect(43000, 0, false), 0);
  assert_int_equal(h_feed_connack(43000, true, 0, NULL), 0);
  h_clear();
  assert_int_equal(h_flush(43000), 2);
  assert_true(H.sent[1].dup);
  assert_int_equal(H.sent[1].expiry, 60);
}

/* ---- server maximum packet size ---------------------------------------- */

static void test_server_max_packet(void **state) {
  (void)state;
  h_init_v(UVMQTT_V5);
  assert_int_equal(h_connect(0, 0, true), 0);
  h_flush(0);
  uvmqtt_props_t p = props_with(UVMQTT_PROP_MAXIMUM_PACKET_SIZE, 64);
  assert_int_equal(h_feed_connack(0, false, 0, &p), 0);
  assert_int_equal(uvmqtt__session_server_max_packet(H.s), 64);
  char big[80];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = 0;
  for (uint8_t q = 0; q <= 2; q++) {
    assert_int_equal(h_pub(1, "t", big, q, 1), UVMQTT_ETOOBIG);
  }
  /* Exactly 64 bytes: 1 + 1 + (2 + 1 + 2 + 1) + payload 56 (QoS 1). */
  big[56] = 0;
  assert_int_equal(h_pub(1, "t", big, 1, 2), 1);
  h_flush(1);
  assert_int_equal(H.sent[1].size, 64);
  assert_int_equal(uvmqtt__session_queued(H.s), 0);
  assert_int_equal(H.npub, 0);
  /* SUBSCRIBE too. */
  char f[80];
  memset(f, 'f', sizeof(f) - 1);
  f[sizeof(f) - 1] = 0;
  assert_int_equal(h_sub(f, 0, 3), UVMQTT_ETOOBIG);
  assert_int_equal(h_flush(1), 0);
}

/* A message queued before the limit was known is not sent over it. */
static void test_server_max_packet_queued(void **state) {
  (void)state;
  h_init_v(UVMQTT_V5);
  char big[80];
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = 0;
  assert_int_equal(h_pub(0, "t", big, 1, 1), 1);
  assert_int_equal(h_pub(0, "t", "small", 1, 2), 2);
  assert_int_equal(h_connect(0, 0, true), 0);
  h_flush(0);
  uvmqtt_props_t p = props_with(UVMQTT_PROP_MAXIMUM_PACKET_SIZE, 64);
  assert_int_equal(h_feed_connack(0, false, 0, &p), 0);
  h_flush(0);
  for (size_t i = 0; i < H.nsent; i++)
    if (H.sent[i].size > 64)
      fail_msg("sent a %zu-byte %s over the server's maximum of 64",
               H.sent[i].size, uvmqtt_packet_name(H.sent[i].type));
  assert_int_equal(h_ndone(1), 1);
  assert_int_equal(h_donefor(1)->status, UVMQTT_ETOOBIG);
  assert_int_equal(h_count_sent(UVMQTT_PUBLISH, 0), 1);
}

/* The Message Expiry Interval the session adds counts toward the limit. */
static void test_server_max_packet_expiry(void **state) {
  (void)state;
  h_init_v(UVMQTT_V5);
  assert_int_equal(h_connect(0, 0, true), 0);
  h_flush(0);
  uvmqtt_props_t p = props_with(UVMQTT_PROP_MAXIMUM_PACKET_SIZE, 64);
  assert_int_equal(h_feed_connack(0, false, 0, &p), 0);
  char big[80];
  memset(big, 'x', sizeof(big));
  big[56] = 0; /* 64 bytes without the property, 69 with it */
  int rc = pub_expiry(1, big, 1, 30, 1);
  h_flush(1);
  for (size_t i = 0; i < H.nsent; i++)
    if (H.sent[i].size > 64)
      fail_msg("sent a %zu-byte %s over the server's maximum of 64",
               H.sent[i].size, uvmqtt_packet_name(H.sent[i].type));
  assert_int_equal(rc, UVMQTT_ETOOBIG);
}

/* ---- large payloads and zero copy ------------------------------------------
 */

static bool iov_points_into(const uvmqtt_iov_t *iov, size_t n, const void *p,
                            size_t len) {
  for (size_t i = 0; i < n; i++)
    if (iov[i].base == p && iov[i].len == len)
      return true;
  return false;
}

static void test_large_copied(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  h_up(0);
  char *pl = malloc(4097);
  assert_non_null(pl);
  memset(pl, 'L', 4096);
  pl[4096] = 0;
  assert_int_equal(h_pub(1, "t", pl, 1, 1), 1);
  memset(pl, 'Z', 4096); /* copied: the caller may reuse its buffer */
  const uvmqtt_iov_t *iov;
  size_t n;
  uvmqtt_out_batch_t *b = h_take(1, &iov, &n);
  assert_non_null(b);
  /* The payload is written from the message's memory: its own iov entry,
   * not the caller's buffer. */
  assert_true(n >= 2);
  bool found = false;
  for (size_t i = 0; i < n; i++)
    if (iov[i].len == 4096)
      found = true;
  assert_true(found);
  assert_false(iov_points_into(iov, n, pl, 4096));
  assert_int_equal(H.sent[0].payload[0], 'L');
  assert_int_equal(H.sent[0].payload[4095], 'L');
  /* The PUBACK comes before the write completes: the completion waits. */
  assert_int_equal(h_feed_ack(2, UVMQTT_PUBACK, 1, 0), 0);
  assert_int_equal(H.npub, 0);
  assert_int_equal(uvmqtt__session_inflight(H.s), 0);
  h_done(b, 0);
  assert_int_equal(h_ndone(1), 1);
  assert_int_equal(h_donefor(1)->status, 0);
  /* A small payload is copied into the batch buffer. */
  assert_int_equal(h_pub(3, "t", "small", 1, 2), 2);
  b = h_take(3, &iov, &n);
  assert_int_equal(n, 1);
  h_done(b, 0);
  free(pl);
}

static int pub_zc(uint64_t now, const void *pl, size_t len, uint8_t qos,
                  long arg) {
  uvmqtt_session_pub_t p;
  memset(&p, 0, sizeof(p));
  p.topic = "zc";
  p.topic_len = 2;
  p.payload = pl;
  p.payload_len = len;
  p.qos = qos;
  p.zero_copy = true;
  return h_pub_ex(now, &p, arg);
}

static void test_zero_copy(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  h_up(0);
  uint8_t *pl = malloc(5000);
  assert_non_null(pl);
  for (int i = 0; i < 5000; i++)
    pl[i] = (uint8_t)i;
  /* QoS 0: written from the caller's buffer; done when written. */
  assert_int_equal(pub_zc(1, pl, 5000, 0, 1), 0);
  const uvmqtt_iov_t *iov;
  size_t n;
  uvmqtt_out_batch_t *b = h_take(1, &iov, &n);
  assert_non_null(b);
  assert_true(iov_points_into(iov, n, pl, 5000));
  assert_memory_equal(H.sent[0].payload, pl, 5000);
  assert_int_equal(H.npub, 0);
  h_done(b, 0);
  assert_int_equal(h_ndone(1), 1);
  assert_int_equal(h_donefor(1)->status, 0);

  /* QoS 1: the PUBACK before the write finishes does not complete it. */
  assert_int_equal(pub_zc(2, pl, 5000, 1, 2), 1);
  b = h_take(2, &iov, &n);
  assert_true(iov_points_into(iov, n, pl, 5000));
  assert_int_equal(h_feed_ack(2, UVMQTT_PUBACK, 1, 0), 0);
  assert_int_equal(H.npub, 1);
  h_done(b, 0);
  assert_int_equal(h_ndone(2), 1);
  assert_int_equal(h_donefor(2)->status, 0);

  /* QoS 1 resent after a reconnect: still from the caller's buffer. */
  assert_int_equal(pub_zc(3, pl, 5000, 1, 3), 2);
  h_flush(3);
  uvmqtt__session_connection_lost(H.s, UVMQTT_EPEERCLOSED);
  assert_int_equal(h_connect(4, 0, false), 0);
  assert_int_equal(h_feed_connack(4, true, 0, NULL), 0);
  b = h_take(4, &iov, &n);
  assert_true(iov_points_into(iov, n, pl, 5000));
  assert_int_equal(h_feed_ack(4, UVMQTT_PUBACK, 2, 0), 0);
  assert_int_equal(h_ndone(3), 0);
  h_done(b, 0);
  assert_int_equal(h_ndone(3), 1);

  /* A failed write of a zero-copy QoS 0 reports the write's status. */
  assert_int_equal(pub_zc(5, pl, 5000, 0, 4), 0);
  b = h_take(5, &iov, &n);
  h_done(b, -32);
  assert_int_equal(h_donefor(4)->status, -32);

  /* Small zero-copy payloads are copied: done when written. */
  assert_int_equal(pub_zc(6, pl, 100, 0, 5), 0);
  b = h_take(6, &iov, &n);
  assert_false(iov_points_into(iov, n, pl, 100));
  h_done(b, 0);
  assert_int_equal(h_ndone(5), 1);
  free(pl);
}

/* Queued zero-copy QoS 0 while offline: sent from the caller's memory
 * after CONNACK, completion after the write. */
static void test_zero_copy_queued(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  uint8_t *pl = malloc(3000);
  assert_non_null(pl);
  memset(pl, 'q', 3000);
  assert_int_equal(pub_zc(0, pl, 3000, 0, 1), 0);
  assert_int_equal(h_connect(0, 0, true), 0);
  h_flush(0);
  assert_int_equal(h_feed_connack(0, false, 0, NULL), 0);
  const uvmqtt_iov_t *iov;
  size_t n;
  uvmqtt_out_batch_t *b = h_take(0, &iov, &n);
  assert_true(iov_points_into(iov, n, pl, 3000));
  assert_int_equal(H.npub, 0);
  h_done(b, 0);
  assert_int_equal(h_ndone(1), 1);
  assert_int_equal(h_donefor(1)->status, 0);
  free(pl);
}

/* ---- free with everything pending ------------------------------------------
 */

static void test_free_pending(void **state) {
  (void)state;
  uvmqtt_session_config_t c = h_cfg(UVMQTT_V311);
  c.max_inflight = 2;
  h_init(&c);
  h_up(0);
  static uint8_t zc[4000];
  assert_int_equal(h_pub(1, "t", "a", 1, 1), 1); /* in flight */
  assert_int_equal(h_pub(1, "t", "b", 2, 2), 2); /* WAIT_COMP */
  h_flush(1);
  assert_int_equal(h_feed_ack(1, UVMQTT_PUBREC, 2, 0), 0);
  h_flush(1);
  assert_int_equal(h_pub(1, "t", "c", 1, 3), 3); /* queued */
  assert_int_equal(h_pub(1, "t", "d", 0, 4), 0); /* queued QoS 0 */
  assert_int_equal(h_sub("s/#", 1, 5), 4);       /* SUBSCRIBE sent */
  h_flush(1);
  assert_int_equal(h_sub("s/+", 1, 6), 5); /* not taken */
  uvmqtt_str_t un = {"u", 1};
  assert_int_equal(
      uvmqtt__session_unsubscribe(H.s, &un, 1, NULL, h_cb, (void *)7), 6);
  assert_int_equal(h_feed_ack(2, UVMQTT_PUBACK, 1, 0), 0); /* c, d go out */
  assert_int_equal(h_ndone(1), 1);
  assert_int_equal(h_pub(2, "t", "e", 2, 8), 7);        /* queued (window) */
  assert_int_equal(pub_zc(2, zc, sizeof(zc), 0, 9), 0); /* queued behind */
  size_t before = H.npub;
  uvmqtt__session_free(H.s, UVMQTT_ECLOSED);
  H.s = NULL;
  for (long a = 2; a <= 9; a++) {
    if (a == 5 || a == 6 || a == 7)
      continue;
    if (h_ndone(a) != 1)
      fail_msg("publish %ld completed %d times", a, h_ndone(a));
    assert_int_equal(h_donefor(a)->status, UVMQTT_ECLOSED);
  }
  assert_int_equal(H.npub - before, 5); /* 2, 3, 4, 8, 9 */
  assert_int_equal(H.nsub, 3);
  for (size_t i = 0; i < 3; i++)
    assert_int_equal(H.sub[i].status, UVMQTT_ECLOSED);
}

/* ---- misc -------------------------------------------------------------- */

static void test_bad_args(void **state) {
  (void)state;
  uvmqtt_session_t *s = NULL;
  uvmqtt_session_config_t c = h_cfg(7);
  uvmqtt_session_events_t ev;
  memset(&ev, 0, sizeof(ev));
  assert_int_equal(uvmqtt__session_new(&c, &ev, NULL, &s), UVMQTT_EINVAL);
  assert_null(s);
  h_init_v(UVMQTT_V311);
  assert_int_equal(h_pub(0, "t", "x", 3, 1), UVMQTT_EQOS);
  assert_int_equal(h_pub(0, "", "x", 1, 1), UVMQTT_ETOPIC);
  uvmqtt_session_pub_t p;
  memset(&p, 0, sizeof(p));
  p.topic = "t";
  p.topic_len = 1;
  p.payload_len = 3; /* NULL payload with a length */
  assert_int_equal(h_pub_ex(0, &p, 1), UVMQTT_EINVAL);
  assert_int_equal(h_sub("a", 0, 1), UVMQTT_ENOTCONN);
  assert_int_equal(H.npub, 0);
  assert_int_equal(uvmqtt__session_queued(H.s), 0);
  assert_int_equal(uvmqtt__session_auth(H.s, 0, NULL), UVMQTT_ENOTSUP);
}

/* DISCONNECT is queued and encoded per version. */
static void test_disconnect(void **state) {
  (void)state;
  h_init_v(UVMQTT_V5);
  h_up(0);
  assert_int_equal(uvmqtt__session_disconnect(H.s, 0x04, NULL), 0);
  assert_int_equal(h_flush(1), 1);
  assert_int_equal(H.sent[0].type, UVMQTT_DISCONNECT);
  assert_int_equal(H.sent[0].reason, 0x04);
}

/* ---- MQTT 5.0 statements (see docs/mqtt5-conformance.md) ----------------
 */

/* [MQTT-1.5.4-3]: 0xEF 0xBB 0xBF is U+FEFF wherever it is; the receiver
 * keeps it. */
static void test_utf8_bom_kept(void **state) {
  (void)state;
  h_init_v(UVMQTT_V5);
  h_up(0);
  assert_int_equal(
      h_feed_publish(1, "\xEF\xBB\xBFt/\xEF\xBB\xBF", "x", 0, 0, false), 0);
  assert_int_equal(H.nmsg, 1);
  assert_string_equal(H.msg[0].topic, "\xEF\xBB\xBFt/\xEF\xBB\xBF");
}

/* [MQTT-3.1.2-30]: with an Authentication Method in CONNECT, nothing but
 * AUTH (or DISCONNECT) goes out before the CONNACK: publishes wait, no
 * PINGREQ, no SUBSCRIBE. */
static void test_only_auth_before_connack(void **state) {
  (void)state;
  h_init_v(UVMQTT_V5);
  uvmqtt_props_t m;
  memset(&m, 0, sizeof(m));
  m.present = UVMQTT_PROP_BIT(UVMQTT_PROP_AUTHENTICATION_METHOD);
  m.authentication_method.data = "M";
  m.authentication_method.len = 1;
  uvmqtt_connect_t c;
  memset(&c, 0, sizeof(c));
  c.clean_start = true;
  c.keep_alive = 10;
  c.client_id.data = "c1";
  c.client_id.len = 2;
  c.props = m;
  assert_int_equal(h_connect_pkt(0, &c), 0);
  assert_int_equal(h_flush(0), 1);
  assert_int_equal(h_pub(1, "t", "q0", 0, 1), 0);
  assert_int_equal(h_pub(1, "t", "q1", 1, 2), 1);
  assert_int_equal(h_sub("s", 0, 3), UVMQTT_ENOTCONN);
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_AUTH;
  p.u.auth.reason_code = 0x18;
  p.u.auth.props = m;
  assert_int_equal(h_feed_pkt(9000, &p), 0);
  assert_int_equal(H.nauth, 1);
  /* The keepalive interval passes during the exchange: no PINGREQ. */
  assert_int_equal(uvmqtt__session_tick(H.s, 10000), 0);
  assert_int_equal(uvmqtt__session_auth(H.s, 0x18, &m), 0);
  assert_int_equal(h_flush(10000), 1);
  assert_int_equal(H.sent[1].type, UVMQTT_AUTH);
  /* The CONNACK releases the queue. */
  assert_int_equal(h_feed_connack(10001, false, 0, NULL), 0);
  assert_int_equal(h_flush(10001), 2);
  assert_int_equal(h_count_sent(UVMQTT_PUBLISH, 2), 2);
}

/* [MQTT-3.8.3-2], [MQTT-3.10.2-2]: a SUBSCRIBE or UNSUBSCRIBE without
 * entries is refused before anything is sent. */
static void test_empty_requests_refused(void **state) {
  (void)state;
  h_init_v(UVMQTT_V5);
  h_up(0);
  uvmqtt_subscription_t sub = {{"a", 1}, 0};
  uvmqtt_str_t un = {"a", 1};
  assert_int_equal(
      uvmqtt__session_subscribe(H.s, &sub, 0, NULL, h_cb, (void *)1),
      UVMQTT_EINVAL);
  assert_int_equal(
      uvmqtt__session_unsubscribe(H.s, &un, 0, NULL, h_cb, (void *)2),
      UVMQTT_EINVAL);
  assert_int_equal(h_flush(1), 0);
  assert_int_equal(H.nsub, 0);
}

/* [MQTT-3.3.4-8], [MQTT-4.9.0-3]: with the send quota used up only PUBLISH
 * waits; SUBSCRIBE, UNSUBSCRIBE and acknowledgements go out. */
static void test_quota_zero_other_packets(void **state) {
  (void)state;
  uvmqtt_session_config_t c = h_cfg(UVMQTT_V5);
  c.max_inflight = 1;
  h_init(&c);
  h_up(0);
  assert_int_equal(h_pub(1, "t", "a", 1, 1), 1);
  assert_int_equal(h_pub(1, "t", "b", 1, 2), 2);
  assert_int_equal(h_flush(1), 1); /* a only: the quota is 1 */
  assert_int_equal(uvmqtt__session_queued(H.s), 1);
  assert_int_equal(h_sub("s/#", 1, 3), 3);
  uvmqtt_str_t un = {"u", 1};
  assert_int_equal(
      uvmqtt__session_unsubscribe(H.s, &un, 1, NULL, h_cb, (void *)4), 4);
  assert_int_equal(h_feed_publish(2, "in", "q1", 1, 7, false), 0);
  assert_int_equal(h_feed_publish(2, "in", "q2", 2, 8, false), 0);
  assert_int_equal(h_flush(2), 4);
  assert_int_equal(H.sent[1].type, UVMQTT_SUBSCRIBE);
  assert_int_equal(H.sent[2].type, UVMQTT_UNSUBSCRIBE);
  assert_int_equal(H.sent[3].type, UVMQTT_PUBACK);
  assert_int_equal(H.sent[3].id, 7);
  assert_int_equal(H.sent[4].type, UVMQTT_PUBREC);
  assert_int_equal(H.sent[4].id, 8);
  assert_int_equal(h_count_sent(UVMQTT_PUBLISH, 1), 0);
  /* The PUBACK gives the quota back: b goes. */
  assert_int_equal(h_feed_ack(3, UVMQTT_PUBACK, 1, 0), 0);
  assert_int_equal(h_flush(3), 1);
  assert_int_equal(H.sent[5].type, UVMQTT_PUBLISH);
  assert_int_equal(H.sent[5].id, 2);
}

/* [MQTT-4.6.0-2], [MQTT-4.6.0-3], [MQTT-4.6.0-4]: PUBACKs and PUBRECs in
 * the order the PUBLISH packets came, PUBRELs in the order the PUBRECs
 * came. */
static void test_ack_order(void **state) {
  (void)state;
  static const uint16_t q1[] = {5, 3, 9};
  static const uint16_t q2[] = {8, 2, 6};
  h_init_v(UVMQTT_V5);
  h_up(0);
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(h_feed_publish(1, "a", "x", 1, q1[i], false), 0);
    assert_int_equal(h_feed_publish(1, "b", "y", 2, q2[i], false), 0);
  }
  assert_int_equal(h_flush(1), 6);
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(H.sent[2 * i].type, UVMQTT_PUBACK);
    assert_int_equal(H.sent[2 * i].id, q1[i]);
    assert_int_equal(H.sent[2 * i + 1].type, UVMQTT_PUBREC);
    assert_int_equal(H.sent[2 * i + 1].id, q2[i]);
  }
  for (long a = 1; a <= 3; a++)
    assert_int_equal(h_pub(2, "o", "z", 2, a), (int)a);
  assert_int_equal(h_flush(2), 3);
  h_clear();
  static const uint16_t recs[] = {3, 1, 2};
  for (size_t i = 0; i < 3; i++)
    assert_int_equal(h_feed_ack(3, UVMQTT_PUBREC, recs[i], 0), 0);
  assert_int_equal(h_flush(3), 3);
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(H.sent[i].type, UVMQTT_PUBREL);
    assert_int_equal(H.sent[i].id, recs[i]);
  }
}

/* [MQTT-4.3.3-7]: once a PUBLISH has been sent, its Message Expiry Interval
 * no longer applies: resent after a reconnect although its lifetime has
 * passed, and completed by the usual acknowledgements. */
static void test_expiry_not_applied_once_sent(void **state) {
  (void)state;
  h_init_v(UVMQTT_V5);
  h_up(0);
  assert_int_equal(pub_expiry(0, "late", 2, 2, 1), 1);
  assert_int_equal(h_flush(0), 1);
  uvmqtt__session_connection_lost(H.s, UVMQTT_EPEERCLOSED);
  assert_int_equal(h_connect(10000, 0, false), 0);
  assert_int_equal(h_feed_connack(10000, true, 0, NULL), 0);
  h_clear();
  assert_int_equal(h_flush(10000), 2);
  assert_int_equal(H.sent[1].type, UVMQTT_PUBLISH);
  assert_int_equal(H.sent[1].id, 1);
  assert_true(H.sent[1].dup);
  assert_true(H.sent[1].has_expiry);
  assert_int_equal(h_ndone(1), 0);
  assert_int_equal(h_feed_ack(10001, UVMQTT_PUBREC, 1, 0), 0);
  assert_int_equal(h_feed_ack(10002, UVMQTT_PUBCOMP, 1, 0), 0);
  assert_int_equal(h_ndone(1), 1);
  assert_int_equal(h_donefor(1)->status, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_connect_v31, teardown),
      cmocka_unit_test_teardown(test_connect_v311, teardown),
      cmocka_unit_test_teardown(test_connect_v5, teardown),
      cmocka_unit_test_teardown(test_connack_accepted, teardown),
      cmocka_unit_test_teardown(test_connack_refused, teardown),
      cmocka_unit_test_teardown(test_out_qos0, teardown),
      cmocka_unit_test_teardown(test_out_qos1, teardown),
      cmocka_unit_test_teardown(test_out_qos1_v5_rejected, teardown),
      cmocka_unit_test_teardown(test_out_qos2, teardown),
      cmocka_unit_test_teardown(test_out_qos2_v5_pubrec_error, teardown),
      cmocka_unit_test_teardown(test_in_qos0_1, teardown),
      cmocka_unit_test_teardown(test_in_qos1_reply_after_ack, teardown),
      cmocka_unit_test_teardown(test_in_qos2, teardown),
      cmocka_unit_test_teardown(test_in_qos2_v5_unknown_pubrel, teardown),
      cmocka_unit_test_teardown(test_in_receive_maximum, teardown),
      cmocka_unit_test_teardown(test_split_script_v311, teardown),
      cmocka_unit_test_teardown(test_split_script_v5, teardown),
      cmocka_unit_test_teardown(test_split_suback, teardown),
      cmocka_unit_test_teardown(test_resend_session_present, teardown),
      cmocka_unit_test_teardown(test_resend_session_lost, teardown),
      cmocka_unit_test_teardown(test_session_lost_forgets_incoming, teardown),
      cmocka_unit_test_teardown(test_connection_lost_requests, teardown),
      cmocka_unit_test_teardown(test_packet_id_wrap, teardown),
      cmocka_unit_test_teardown(test_packet_id_shared, teardown),
      cmocka_unit_test_teardown(test_packet_id_exhausted, teardown),
      cmocka_unit_test_teardown(test_window, teardown),
      cmocka_unit_test_teardown(test_window_server_receive_max, teardown),
      cmocka_unit_test_teardown(test_queue_refuse_new, teardown),
      cmocka_unit_test_teardown(test_queue_bytes, teardown),
      cmocka_unit_test_teardown(test_queue_drop_oldest, teardown),
      cmocka_unit_test_teardown(test_queue_limit_window, teardown),
      cmocka_unit_test_teardown(test_keepalive, teardown),
      cmocka_unit_test_teardown(test_keepalive_pingresp, teardown),
      cmocka_unit_test_teardown(test_keepalive_partial_bytes, teardown),
      cmocka_unit_test_teardown(test_keepalive_server_keep_alive, teardown),
      cmocka_unit_test_teardown(test_keepalive_zero, teardown),
      cmocka_unit_test_teardown(test_malformed, teardown),
      cmocka_unit_test_teardown(test_publish_before_connack, teardown),
      cmocka_unit_test_teardown(test_second_connack, teardown),
      cmocka_unit_test_teardown(test_unknown_acks, teardown),
      cmocka_unit_test_teardown(test_bad_suback, teardown),
      cmocka_unit_test_teardown(test_topic_alias, teardown),
      cmocka_unit_test_teardown(test_topic_alias_in, teardown),
      cmocka_unit_test_teardown(test_server_disconnect, teardown),
      cmocka_unit_test_teardown(test_session_present_after_clean_start,
                                teardown),
      cmocka_unit_test_teardown(test_retain_not_available, teardown),
      cmocka_unit_test_teardown(test_disconnect_props_dropped_when_too_big,
                                teardown),
      cmocka_unit_test_teardown(test_resend_drops_manual_alias, teardown),
      cmocka_unit_test_teardown(test_too_big, teardown),
      cmocka_unit_test_teardown(test_auth, teardown),
      cmocka_unit_test_teardown(test_expiry_queued, teardown),
      cmocka_unit_test_teardown(test_expiry_window, teardown),
      cmocka_unit_test_teardown(test_server_max_packet, teardown),
      cmocka_unit_test_teardown(test_server_max_packet_queued, teardown),
      cmocka_unit_test_teardown(test_server_max_packet_expiry, teardown),
      cmocka_unit_test_teardown(test_large_copied, teardown),
      cmocka_unit_test_teardown(test_zero_copy, teardown),
      cmocka_unit_test_teardown(test_zero_copy_queued, teardown),
      cmocka_unit_test_teardown(test_free_pending, teardown),
      cmocka_unit_test_teardown(test_bad_args, teardown),
      cmocka_unit_test_teardown(test_disconnect, teardown),
      cmocka_unit_test_teardown(test_utf8_bom_kept, teardown),
      cmocka_unit_test_teardown(test_only_auth_before_connack, teardown),
      cmocka_unit_test_teardown(test_empty_requests_refused, teardown),
      cmocka_unit_test_teardown(test_quota_zero_other_packets, teardown),
      cmocka_unit_test_teardown(test_ack_order, teardown),
      cmocka_unit_test_teardown(test_expiry_not_applied_once_sent, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
