/* Unit tests of the session's incoming flow (scripted broker bytes, fake
 * clock): halting input when the application leaves, at every position of
 * a multi-packet read; manual acknowledgement in arrival order whatever
 * order the application acks in; Receive Maximum counting with manual
 * acks; holding input (pause and the automatic limit) and the keepalive
 * deadlines while held. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "uvmqtt/alloc.h"

static int teardown(void **state) {
  (void)state;
  h_fini(UVMQTT_ECLOSED);
  return 0;
}

/* Packet ids of the acks of `type` sent from index `from`, in order. */
static size_t acks_sent(uint8_t type, size_t from, uint16_t *ids, size_t cap) {
  size_t n = 0;
  for (size_t i = from; i < H.nsent; i++)
    if (H.sent[i].type == type) {
      assert_true(n < cap);
      ids[n++] = H.sent[i].id;
    }
  return n;
}

/* Every ack (PUBACK or PUBREC) sent from `from`, ids in order. */
static size_t any_acks(size_t from, uint16_t *ids, size_t cap) {
  size_t n = 0;
  for (size_t i = from; i < H.nsent; i++)
    if (H.sent[i].type == UVMQTT_PUBACK || H.sent[i].type == UVMQTT_PUBREC) {
      assert_true(n < cap);
      ids[n++] = H.sent[i].id;
    }
  return n;
}

/* A script of `n` PUBLISHes, QoS alternating 1 and 2 when `mixed`, ids
 * 1..n, payload "m<i>". Returns its length. */
static size_t script(uint8_t *buf, size_t cap, int n, bool mixed) {
  size_t len = 0;
  for (int i = 1; i <= n; i++) {
    char pl[8];
    snprintf(pl, sizeof(pl), "m%d", i);
    uint8_t qos = mixed ? (uint8_t)(i % 2 ? 1 : 2) : 1;
    len += b_publish(buf + len, cap - len, "t/x", pl, strlen(pl), qos,
                     (uint16_t)i, false);
  }
  return len;
}

/* ---- halting input ------------------------------------------------------- */

static size_t halt_at;   /* halt inside the callback of this message */
static bool halt_closes; /* then also act as close: connection_lost */

static void halt_hook(const uvmqtt_publish_t *pub) {
  (void)pub;
  if (H.nmsg == halt_at)
    uvmqtt__session_halt_input(H.s);
}

/* The application leaves from inside message k's callback (k = 1..n), the
 * n packets arriving in one read, or split in two reads at every byte:
 * exactly k messages are delivered and exactly those k acknowledged, in
 * order, and nothing after; bytes fed later are ignored too. */
static void check_halt(uint8_t version, bool mixed) {
  enum { N = 4 };
  uint8_t buf[512];
  h_init_v(version);
  size_t len = script(buf, sizeof(buf), N, mixed);
  h_fini(0);
  for (size_t k = 1; k <= N; k++) {
    for (size_t cut = 0; cut <= len; cut++) {
      h_init_v(version);
      h_up(0);
      halt_at = k;
      H.msg_hook = halt_hook;
      size_t from = H.nsent;
      assert_int_equal(h_feed(1, buf, cut), 0);
      assert_int_equal(h_feed(2, buf + cut, len - cut), 0);
      assert_true(uvmqtt__session_halted(H.s));
      /* More bytes (the broker goes on sending): ignored. */
      assert_int_equal(h_feed(3, buf, len), 0);
      h_flush(4);
      assert_int_equal(H.nmsg, k);
      uint16_t ids[16];
      size_t n = any_acks(from, ids, 16);
      assert_int_equal(n, k);
      for (size_t i = 0; i < k; i++)
        assert_int_equal(ids[i], i + 1);
      /* DISCONNECT still goes out after those acks. */
      assert_int_equal(uvmqtt__session_disconnect(H.s, 0, NULL), 0);
      size_t before = H.nsent;
      h_flush(5);
      assert_int_equal(H.nsent, before + 1);
      assert_int_equal(H.sent[before].type, UVMQTT_DISCONNECT);
      if (halt_closes)
        uvmqtt__session_connection_lost(H.s, UVMQTT_ECLOSED);
      h_fini(UVMQTT_ECLOSED);
    }
  }
}

static void test_halt_every_position(void **state) {
  (void)state;
  halt_closes = false;
  check_halt(UVMQTT_V311, false);
  check_halt(UVMQTT_V5, true);
  halt_closes = true;
  check_halt(UVMQTT_V311, true);
}

/* A halt lasts until the next connection. */
static void test_halt_reset_by_connect(void **state) {
  (void)state;
  uint8_t buf[128];
  h_init_v(UVMQTT_V311);
  size_t len = script(buf, sizeof(buf), 2, false);
  h_up(0);
  uvmqtt__session_halt_input(H.s);
  assert_int_equal(h_feed(1, buf, len), 0);
  assert_int_equal(H.nmsg, 0);
  uvmqtt__session_connection_lost(H.s, UVMQTT_ENOTCONN);
  h_up(10);
  assert_false(uvmqtt__session_halted(H.s));
  assert_int_equal(h_feed(11, buf, len), 0);
  assert_int_equal(H.nmsg, 2);
}

/* ---- manual acknowledgement --------------------------------------------- */

static void manual_up(uint8_t version, uint16_t rmax, uint32_t max_msgs) {
  uvmqtt_session_config_t c = h_cfg(version);
  c.receive_maximum = rmax;
  h_init(&c);
  assert_int_equal(uvmqtt__session_set_manual_ack(H.s, max_msgs, 0), 0);
  h_up(0);
}

/* Acks given out of order go out in the order the PUBLISHes arrived. */
static void test_manual_ack_order(void **state) {
  (void)state;
  manual_up(UVMQTT_V5, 0, 0);
  uint8_t buf[512];
  size_t len = script(buf, sizeof(buf), 5, true);
  assert_int_equal(h_feed(1, buf, len), 0);
  assert_int_equal(H.nmsg, 5);
  size_t from = H.nsent;
  h_flush(2);
  assert_int_equal(H.nsent, from); /* nothing acked by itself */
  assert_int_equal(uvmqtt__session_unacked(H.s, NULL), 5);
  uint64_t h[6];
  for (int i = 0; i < 5; i++) {
    h[i + 1] = H.msg[i].handle;
    assert_true(h[i + 1] > 0);
    if (i)
      assert_true(h[i + 1] > h[i]);
  }
  uint16_t ids[16];
  /* 3 first: waits for 1 and 2. */
  assert_int_equal(uvmqtt__session_ack(H.s, 3, h[3], 0, NULL), 0);
  h_flush(3);
  assert_int_equal(any_acks(from, ids, 16), 0);
  /* 1: goes, 3 still waits for 2. */
  assert_int_equal(uvmqtt__session_ack(H.s, 4, h[1], 0, NULL), 0);
  h_flush(4);
  assert_int_equal(any_acks(from, ids, 16), 1);
  assert_int_equal(ids[0], 1);
  assert_int_equal(uvmqtt__session_ack(H.s, 5, h[5], 0x80, NULL), 0);
  /* Twice: refused, nothing changes. */
  assert_int_equal(uvmqtt__session_ack(H.s, 5, h[5], 0, NULL), UVMQTT_EACKED);
  assert_int_equal(uvmqtt__session_ack(H.s, 5, h[1], 0, NULL), UVMQTT_EACKED);
  /* Reasons a PUBACK / PUBREC may not carry. */
  assert_int_equal(uvmqtt__session_ack(H.s, 5, h[2], 0x04, NULL),
                   UVMQTT_EINVAL);
  assert_int_equal(uvmqtt__session_ack(H.s, 5, h[2], 0x8F, NULL),
                   UVMQTT_EINVAL);
  assert_int_equal(uvmqtt__session_ack(H.s, 5, h[5] + 100, 0, NULL),
                   UVMQTT_EINVAL);
  assert_int_equal(uvmqtt__session_ack(H.s, 5, 0, 0, NULL), 0); /* QoS 0 */
  h_flush(5);
  assert_int_equal(any_acks(from, ids, 16), 1);
  /* 2 releases 2 and 3; then 4 releases 4 and 5. */
  assert_int_equal(uvmqtt__session_ack(H.s, 6, h[2], 0, NULL), 0);
  h_flush(6);
  assert_int_equal(any_acks(from, ids, 16), 3);
  assert_int_equal(ids[1], 2);
  assert_int_equal(ids[2], 3);
  uvmqtt_props_t pr;
  memset(&pr, 0, sizeof(pr));
  pr.present = UVMQTT_PROP_BIT(UVMQTT_PROP_REASON_STRING);
  pr.reason_string.data = "later";
  pr.reason_string.len = 5;
  assert_int_equal(uvmqtt__session_ack(H.s, 7, h[4], 0x83, &pr), 0);
  h_flush(7);
  assert_int_equal(any_acks(from, ids, 16), 5);
  assert_int_equal(ids[3], 4);
  assert_int_equal(ids[4], 5);
  assert_int_equal(uvmqtt__session_unacked(H.s, NULL), 0);
  /* Types and reasons as given: odd ids QoS 1 (PUBACK), even QoS 2. */
  for (size_t i = from; i < H.nsent; i++) {
    const sent_t *p = &H.sent[i];
    assert_int_equal(p->type, p->id % 2 ? UVMQTT_PUBACK : UVMQTT_PUBREC);
    assert_int_equal(p->reason, p->id == 5 ? 0x80 : p->id == 4 ? 0x83 : 0);
  }
  /* QoS 2 completes as usual: PUBREL -> PUBCOMP; the rejected one (id 4,
   * 0x83) is not waiting for a PUBREL. */
  from = H.nsent;
  assert_int_equal(h_feed_ack(8, UVMQTT_PUBREL, 2, 0), 0);
  assert_int_equal(h_feed_ack(8, UVMQTT_PUBREL, 4, 0), 0);
  h_flush(9);
  assert_int_equal(h_count_sent(UVMQTT_PUBCOMP, from), 2);
  assert_int_equal(H.sent[from].reason, 0);
  assert_int_equal(H.sent[from + 1].reason, 0x92); /* not found */
}

/* A QoS 2 duplicate of an acknowledged message is answered, not delivered;
 * one of a message still waiting for the application is ignored (its ack
 * answers both); a connection lost leaves unacked messages to the broker's
 * redelivery, and their handles become stale. */
static void test_manual_dup_and_loss(void **state) {
  (void)state;
  manual_up(UVMQTT_V311, 0, 0);
  assert_int_equal(h_feed_publish(1, "t", "a", 2, 7, false), 0);
  assert_int_equal(h_feed_publish(1, "t", "b", 1, 8, false), 0);
  uint64_t ha = H.msg[0].handle, hb = H.msg[1].handle;
  assert_int_equal(uvmqtt__session_ack(H.s, 2, ha, 0x80, NULL),
                   UVMQTT_ENOTSUP); /* no reasons in 3.1.1 */
  assert_int_equal(uvmqtt__session_ack(H.s, 2, ha, 0, NULL), 0);
  size_t from = H.nsent;
  h_flush(3);
  assert_int_equal(h_count_sent(UVMQTT_PUBREC, from), 1);
  assert_int_equal(h_feed_publish(4, "t", "a", 2, 7, true), 0);
  assert_int_equal(h_feed_publish(4, "t", "b", 1, 8, true), 0);
  assert_int_equal(H.nmsg, 2); /* neither delivered again */
  from = H.nsent;
  h_flush(5);
  assert_int_equal(h_count_sent(UVMQTT_PUBREC, from), 1);
  assert_int_equal(h_count_sent(UVMQTT_PUBACK, from), 0);
  H.nlog = 0;
  uvmqtt__session_connection_lost(H.s, UVMQTT_EPEERCLOSED);
  assert_true(H.nlog > 0);
  assert_non_null(strstr(H.lastlog, "not acknowledged"));
  assert_int_equal(uvmqtt__session_ack(H.s, 6, hb, 0, NULL), UVMQTT_ESTALE);
  assert_int_equal(uvmqtt__session_unacked(H.s, NULL), 0);
  /* The broker sends it again on the next connection: delivered again,
   * with a new handle. */
  h_up(10);
  assert_int_equal(h_feed_publish(11, "t", "b", 1, 8, true), 0);
  assert_int_equal(H.nmsg, 1);
  assert_true(H.msg[0].handle > hb);
  assert_int_equal(uvmqtt__session_ack(H.s, 12, H.msg[0].handle, 0, NULL), 0);
  /* After DISCONNECT is queued, acks are stale too. */
  assert_int_equal(h_feed_publish(13, "t", "c", 1, 9, false), 0);
  assert_int_equal(uvmqtt__session_disconnect(H.s, 0, NULL), 0);
  assert_int_equal(uvmqtt__session_ack(H.s, 14, H.msg[1].handle, 0, NULL),
                   UVMQTT_ESTALE);
}

/* Receive Maximum counts the messages waiting for the application's
 * acknowledgement and the QoS 2 ones waiting for PUBREL. */
static void test_manual_receive_maximum(void **state) {
  (void)state;
  manual_up(UVMQTT_V5, 3, 0);
  assert_int_equal(h_feed_publish(1, "t", "1", 1, 1, false), 0);
  assert_int_equal(h_feed_publish(1, "t", "2", 2, 2, false), 0);
  assert_int_equal(h_feed_publish(1, "t", "3", 1, 3, false), 0);
  /* A 4th in flight: beyond what we announced. */
  assert_int_equal(h_feed_publish(1, "t", "4", 1, 4, false), UVMQTT_ERECVMAX);
  assert_int_equal(H.nmsg, 3);
  assert_int_equal(uvmqtt__session_disconnect_reason(UVMQTT_ERECVMAX), 0x93);

  h_fini(0);
  manual_up(UVMQTT_V5, 3, 0);
  assert_int_equal(h_feed_publish(1, "t", "1", 1, 1, false), 0);
  assert_int_equal(h_feed_publish(1, "t", "2", 2, 2, false), 0);
  assert_int_equal(h_feed_publish(1, "t", "3", 1, 3, false), 0);
  /* Acking the QoS 2 one sends PUBREC, but it stays in flight until
   * PUBREL; acking the QoS 1 one frees a slot. */
  assert_int_equal(uvmqtt__session_ack(H.s, 2, H.msg[1].handle, 0, NULL), 0);
  assert_int_equal(uvmqtt__session_ack(H.s, 2, H.msg[0].handle, 0, NULL), 0);
  assert_int_equal(h_feed_publish(3, "t", "4", 1, 4, false), 0);
  assert_int_equal(h_feed_publish(3, "t", "5", 1, 5, false), UVMQTT_ERECVMAX);

  h_fini(0);
  manual_up(UVMQTT_V5, 3, 0);
  assert_int_equal(h_feed_publish(1, "t", "1", 2, 1, false), 0);
  assert_int_equal(uvmqtt__session_ack(H.s, 2, H.msg[0].handle, 0, NULL), 0);
  assert_int_equal(h_feed_publish(3, "t", "2", 1, 2, false), 0);
  assert_int_equal(h_feed_publish(3, "t", "3", 1, 3, false), 0);
  assert_int_equal(h_feed_ack(4, UVMQTT_PUBREL, 1, 0), 0);
  assert_int_equal(h_feed_publish(5, "t", "4", 1, 4, false), 0);
  assert_int_equal(H.nmsg, 4);
  /* 3.1.1 has no Receive Maximum: no limit from it. */
  h_fini(0);
  manual_up(UVMQTT_V311, 3, 0);
  for (int i = 1; i <= 10; i++)
    assert_int_equal(h_feed_publish(1, "t", "x", 1, (uint16_t)i, false), 0);
  assert_int_equal(uvmqtt__session_unacked(H.s, NULL), 10);
}

/* ---- holding input ------------------------------------------------------- */

static void hold_hook(const uvmqtt_publish_t *pub) {
  (void)pub;
  if (H.nmsg == halt_at)
    assert_int_equal(uvmqtt__session_hold(H.s, 1, true), 0);
}

/* A hold (pause) from inside message k's callback: the rest of the read is
 * kept, not delivered, until the hold ends; then it is delivered in order,
 * whatever the split of the reads. */
static void test_hold_keeps_rest(void **state) {
  (void)state;
  enum { N = 4 };
  uint8_t buf[512];
  h_init_v(UVMQTT_V5);
  size_t len = script(buf, sizeof(buf), N, true);
  h_fini(0);
  for (size_t k = 1; k <= N; k++) {
    for (size_t cut = 0; cut <= len; cut++) {
      h_init_v(UVMQTT_V5);
      h_up(0);
      halt_at = k;
      H.msg_hook = hold_hook;
      assert_int_equal(h_feed(1, buf, cut), 0);
      assert_int_equal(h_feed(1, buf + cut, len - cut), 0);
      assert_int_equal(H.nmsg, k);
      assert_true(uvmqtt__session_holding(H.s));
      assert_true(H.holding);
      /* Released while still held: nothing. */
      assert_int_equal(uvmqtt__session_release_input(H.s, 2), 0);
      assert_int_equal(H.nmsg, k);
      H.msg_hook = NULL;
      assert_int_equal(uvmqtt__session_hold(H.s, 3, false), 0);
      assert_false(H.holding);
      assert_int_equal(H.nmsg, k); /* not from inside hold() */
      assert_int_equal(uvmqtt__session_release_input(H.s, 3), 0);
      assert_int_equal(H.nmsg, N);
      assert_int_equal(uvmqtt__session_held(H.s), 0);
      for (size_t i = 0; i < N; i++)
        assert_int_equal(H.msg[i].id, i + 1);
      h_fini(0);
    }
  }
}

/* With manual acks and a limit of 2 unacknowledged messages, input is held
 * after the second, and resumes when an ack brings it below. */
static void test_hold_auto_limit(void **state) {
  (void)state;
  manual_up(UVMQTT_V311, 0, 2);
  uint8_t buf[512];
  size_t len = script(buf, sizeof(buf), 5, false);
  assert_int_equal(h_feed(1, buf, len), 0);
  assert_int_equal(H.nmsg, 2);
  assert_true(H.holding);
  assert_int_equal(H.nhold, 1);
  assert_int_equal(uvmqtt__session_ack(H.s, 2, H.msg[1].handle, 0, NULL), 0);
  assert_false(H.holding);
  assert_int_equal(H.nmsg, 2);
  assert_int_equal(uvmqtt__session_release_input(H.s, 2), 0);
  assert_int_equal(H.nmsg, 3); /* 1 and 3 unacked again: held */
  assert_true(H.holding);
  assert_int_equal(uvmqtt__session_ack(H.s, 3, H.msg[0].handle, 0, NULL), 0);
  assert_int_equal(uvmqtt__session_ack(H.s, 3, H.msg[2].handle, 0, NULL), 0);
  assert_int_equal(uvmqtt__session_release_input(H.s, 4), 0);
  assert_int_equal(H.nmsg, 5);
  /* Input that arrives while held is kept behind the rest. */
  assert_true(H.holding);
  uint8_t more[64];
  size_t mlen = b_publish(more, sizeof(more), "t/y", "z", 1, 1, 6, false);
  assert_int_equal(h_feed(5, more, mlen), 0);
  assert_int_equal(H.nmsg, 5);
  assert_int_equal(uvmqtt__session_ack(H.s, 6, H.msg[3].handle, 0, NULL), 0);
  assert_int_equal(uvmqtt__session_release_input(H.s, 6), 0);
  assert_int_equal(H.nmsg, 6);
  assert_string_equal(H.msg[5].topic, "t/y");
  uint16_t ids[16];
  h_flush(7);
  assert_int_equal(acks_sent(UVMQTT_PUBACK, 0, ids, 16), 4);
}

/* Keepalive while held: PINGREQ on schedule (even with one outstanding),
 * the broker's silence not judged; after the hold, a full period again. */
static void test_hold_keepalive(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  assert_int_equal(h_connect(0, 10, true), 0);
  h_flush(0);
  assert_int_equal(h_feed_connack(0, false, 0, NULL), 0);
  assert_int_equal(uvmqtt__session_hold(H.s, 0, true), 0);
  assert_true(H.holding);
  assert_int_equal(uvmqtt__session_deadline(H.s), 10000);
  size_t from = H.nsent;
  for (uint64_t t = 10000; t <= 100000; t += 10000) {
    assert_int_equal(uvmqtt__session_tick(H.s, t - 1), 0);
    assert_int_equal(uvmqtt__session_tick(H.s, t), 0);
    /* Due again only a period later, even before the output is taken
     * (an owner re-arming its timer at once would spin). */
    assert_int_equal(uvmqtt__session_deadline(H.s), t + 10000);
    h_flush(t);
    assert_int_equal(uvmqtt__session_deadline(H.s), t + 10000);
  }
  assert_int_equal(h_count_sent(UVMQTT_PINGREQ, from), 10);
  /* The hold ends at 105 s: judged from there. */
  assert_int_equal(uvmqtt__session_hold(H.s, 105000, false), 0);
  assert_false(H.holding);
  assert_int_equal(uvmqtt__session_deadline(H.s), 110000); /* next ping */
  assert_int_equal(uvmqtt__session_tick(H.s, 110000), 0);
  h_flush(110000);
  assert_int_equal(h_count_sent(UVMQTT_PINGREQ, from), 11);
  assert_int_equal(uvmqtt__session_deadline(H.s), 105000 + 14000);
  assert_int_equal(uvmqtt__session_tick(H.s, 118999), 0);
  assert_int_equal(uvmqtt__session_tick(H.s, 119000), UVMQTT_EKEEPALIVE);
}

/* A hold does not stop the CONNACK (while connecting) and lasts across
 * reconnects. */
static void test_hold_connack(void **state) {
  (void)state;
  h_init_v(UVMQTT_V311);
  assert_int_equal(uvmqtt__session_hold(H.s, 0, true), 0);
  assert_false(uvmqtt__session_holding(H.s)); /* not connected */
  assert_int_equal(h_connect(0, 0, true), 0);
  uint8_t buf[256];
  size_t n = b_connack(buf, false, 0, NULL);
  n += b_publish(buf + n, sizeof(buf) - n, "t", "x", 1, 1, 1, false);
  assert_int_equal(h_feed(1, buf, n), 0);
  assert_int_equal(H.nconnack, 1);
  assert_int_equal(H.nmsg, 0);
  assert_true(uvmqtt__session_holding(H.s));
  assert_int_equal(uvmqtt__session_held(H.s),
                   n - b_connack(buf, false, 0, NULL));
  /* Lost: the kept bytes go with the connection. */
  uvmqtt__session_connection_lost(H.s, UVMQTT_EPEERCLOSED);
  assert_int_equal(uvmqtt__session_held(H.s), 0);
  assert_int_equal(uvmqtt__session_hold(H.s, 2, false), 0);
  h_up(3);
  assert_int_equal(h_feed_publish(4, "t", "y", 1, 2, false), 0);
  assert_int_equal(H.nmsg, 1);
}

/* ---- allocation failures --------------------------------------------------
 */

/* Fails the Nth allocation of the scenario below, for every N: each call
 * returns 0 or UVMQTT_ENOMEM (input: an error after which the owner drops
 * the connection), nothing crashes, nothing leaks. */
static long fail_at = -1, nallocs, live;

static void *f_realloc(void *p, size_t n) {
  if (nallocs++ == fail_at)
    return NULL;
  if (!p)
    live++;
  return realloc(p, n);
}
static void *f_malloc(size_t n) {
  return f_realloc(NULL, n);
}
static void *f_calloc(size_t c, size_t n) {
  void *p = f_realloc(NULL, c * n);
  if (p)
    memset(p, 0, c * n);
  return p;
}
static void f_free(void *p) {
  if (p)
    live--;
  free(p);
}

static void ok_or_enomem(int rc) {
  if (rc != 0 && rc != UVMQTT_ENOMEM)
    fail_msg("unexpected %s (allocation %ld)", uvmqtt_err_name(rc), fail_at);
}

static void flow_scenario(void) {
  uvmqtt_session_config_t c = h_cfg(UVMQTT_V5);
  if (h_try_init(&c) != 0)
    return;
  if (uvmqtt__session_set_manual_ack(H.s, 3, 0) != 0) {
    h_fini(0);
    return;
  }
  if (h_connect(0, 10, true) != 0 || (h_flush(0), 0) ||
      h_feed_connack(0, false, 0, NULL) != 0) {
    h_fini(0);
    return;
  }
  uint8_t buf[512];
  size_t len = script(buf, sizeof(buf), 6, true);
  int rc = h_feed(1, buf, len);
  ok_or_enomem(rc);
  uvmqtt_props_t pr;
  memset(&pr, 0, sizeof(pr));
  pr.present = UVMQTT_PROP_BIT(UVMQTT_PROP_REASON_STRING);
  pr.reason_string.data = "r";
  pr.reason_string.len = 1;
  for (size_t i = H.nmsg; i-- > 0;) /* out of order, with properties */
    ok_or_enomem(uvmqtt__session_ack(H.s, 2, H.msg[i].handle, 0, &pr));
  ok_or_enomem(uvmqtt__session_release_input(H.s, 3));
  ok_or_enomem(uvmqtt__session_hold(H.s, 4, true));
  ok_or_enomem(h_feed(5, buf, len));
  ok_or_enomem(uvmqtt__session_hold(H.s, 6, false));
  ok_or_enomem(uvmqtt__session_release_input(H.s, 6));
  h_flush(7);
  uvmqtt__session_connection_lost(H.s, UVMQTT_EPEERCLOSED);
  h_fini(0);
}

static void test_flow_alloc_sweep(void **state) {
  (void)state;
  assert_int_equal(
      uvmqtt_replace_allocator(f_malloc, f_realloc, f_calloc, f_free), 0);
  fail_at = -1;
  nallocs = live = 0;
  flow_scenario(); /* counts the allocations of a run that succeeds */
  assert_int_equal(live, 0);
  long total = nallocs;
  for (fail_at = 0; fail_at < total + 2; fail_at++) {
    nallocs = live = 0;
    flow_scenario();
    if (live != 0)
      fail_msg("%ld allocations leaked when allocation %ld failed", live,
               fail_at);
  }
  fail_at = -1;
  assert_int_equal(uvmqtt_replace_allocator(malloc, realloc, calloc, free), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_halt_every_position, teardown),
      cmocka_unit_test_teardown(test_halt_reset_by_connect, teardown),
      cmocka_unit_test_teardown(test_manual_ack_order, teardown),
      cmocka_unit_test_teardown(test_manual_dup_and_loss, teardown),
      cmocka_unit_test_teardown(test_manual_receive_maximum, teardown),
      cmocka_unit_test_teardown(test_hold_keeps_rest, teardown),
      cmocka_unit_test_teardown(test_hold_auto_limit, teardown),
      cmocka_unit_test_teardown(test_hold_keepalive, teardown),
      cmocka_unit_test_teardown(test_hold_connack, teardown),
      cmocka_unit_test_teardown(test_flow_alloc_sweep, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
