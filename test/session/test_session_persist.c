/* Unit tests of session persistence: a session reports its state changes,
 * the test keeps them as store records (an in-memory store), the session
 * is dropped as a killed process would drop it, a new one is rebuilt from
 * the records and resumes: every state of every kind of record, with and
 * without a session on the broker, in v3.1.1 and v5. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "session/persist.h"
#include "uvmqtt/errors.h"

/* ---- an in-memory store -------------------------------------------------- */

#define MAXREC 64
static struct {
  uint64_t id;
  uint8_t *v;
  size_t len;
} recs[MAXREC];
static size_t nrecs;
static uint64_t seq;
static uvmqtt_smsg_t *unstored[64];
static size_t nunstored;
static int fail_put;

static void rec_del(uint64_t id) {
  for (size_t i = 0; i < nrecs; i++) {
    if (recs[i].id == id) {
      free(recs[i].v);
      recs[i] = recs[--nrecs];
      return;
    }
  }
}

static void rec_put(uint64_t id, const void *const *bufs, const size_t *lens,
                    size_t n) {
  rec_del(id);
  assert_true(nrecs < MAXREC);
  size_t len = 0;
  for (size_t i = 0; i < n; i++)
    len += lens[i];
  uint8_t *v = malloc(len + 1);
  len = 0;
  for (size_t i = 0; i < n; i++) {
    memcpy(v + len, bufs[i], lens[i]);
    len += lens[i];
  }
  recs[nrecs].id = id;
  recs[nrecs].v = v;
  recs[nrecs].len = len;
  nrecs++;
}

static bool rec_has(uint64_t id) {
  for (size_t i = 0; i < nrecs; i++)
    if (recs[i].id == id)
      return true;
  return false;
}

static int hook(int op, uvmqtt_smsg_t *m, uint16_t id) {
  static const uint8_t sent = 1, pubrec = 2;
  const void *b = NULL;
  size_t l = 1;
  switch (op) {
  case UVMQTT_PERSIST_PUT: {
    if (fail_put)
      return fail_put;
    uvmqtt__persist_msg_t enc;
    assert_int_equal(
        uvmqtt__persist_msg_encode(m, H.version, ++seq, 1000000, &enc), 0);
    rec_put(UVMQTT__REC_MSG(id), enc.bufs, enc.lens, enc.n);
    uvmqtt__persist_msg_free(&enc);
    unstored[nunstored++] = m;
    return 0;
  }
  case UVMQTT_PERSIST_SENT:
    b = &sent;
    rec_put(UVMQTT__REC_STATE(id), &b, &l, 1);
    return 0;
  case UVMQTT_PERSIST_PUBREC:
    b = &pubrec;
    rec_put(UVMQTT__REC_STATE(id), &b, &l, 1);
    unstored[nunstored++] = m; /* PUBREL waits for it */
    return 0;
  case UVMQTT_PERSIST_REQUEUED:
    rec_del(UVMQTT__REC_STATE(id));
    return 0;
  case UVMQTT_PERSIST_DONE:
    rec_del(UVMQTT__REC_MSG(id));
    rec_del(UVMQTT__REC_STATE(id));
    return 0;
  case UVMQTT_PERSIST_IN_ADD:
    l = 0;
    rec_put(UVMQTT__REC_IN(id), &b, &l, 0);
    return 0;
  case UVMQTT_PERSIST_IN_DEL:
    rec_del(UVMQTT__REC_IN(id));
    return 0;
  case UVMQTT_PERSIST_IN_FIRST: {
    uint8_t v[8];
    l = 8;
    b = v;
    uvmqtt__le_put64(v, uvmqtt__session_in_did(H.s, NULL));
    rec_put(UVMQTT__REC_IN(id), &b, &l, 1);
    return 0;
  }
  default:
    fail();
  }
  return 0;
}

/* The store says every PUT so far is durable. */
static void all_stored(uint64_t now) {
  size_t n = nunstored;
  nunstored = 0;
  for (size_t i = 0; i < n; i++)
    uvmqtt__session_stored(H.s, unstored[i], now, 0);
}

static void reset_store(void) {
  while (nrecs)
    rec_del(recs[0].id);
  seq = 0;
  nunstored = 0;
  fail_put = 0;
}

static void start(uint8_t version) {
  uvmqtt_session_config_t c = h_cfg(version);
  c.persist = true;
  c.max_inflight = 3;
  h_init(&c);
  H.persist_hook = hook;
}

static int teardown(void **state) {
  (void)state;
  h_fini(UVMQTT_ECLOSED);
  reset_store();
  return 0;
}

static uvmqtt__persist_report_t restored_report;
static int each_calls;
static void each(void *ctx, const uvmqtt_publish_t *pub, int state) {
  (void)ctx;
  (void)pub;
  (void)state;
  each_calls++;
}

/* A process killed: the session is dropped without a word to the store
 * (free reports nothing), and a new one is built from the records. */
static void crash_and_restore(uint8_t version) {
  h_fini(UVMQTT_ECLOSED);
  nunstored = 0;
  start(version);
  uvmqtt__store_rec_t r[MAXREC];
  for (size_t i = 0; i < nrecs; i++) {
    r[i].id = recs[i].id;
    r[i].value = recs[i].v;
    r[i].len = recs[i].len;
  }
  each_calls = 0;
  assert_int_equal(uvmqtt__persist_restore(H.s, version, 0, 1000000, r, nrecs,
                                           (uvmqtt_session_fn)h_cb, (void *)99L,
                                           each, NULL, &restored_report, NULL),
                   0);
}

/* ---------------------------------------------------------------------- */

/* Four messages through a window of 3, one PUBREC received, incoming QoS 2
 * ids held and released; then a crash and a reconnect with the session
 * present. */
static void every_state_session_present(uint8_t version) {
  start(version);
  assert_int_equal(h_connect(0, 0, false), 0);
  h_flush(0);
  assert_int_equal(h_feed_connack(0, false, 0, NULL), 0);
  h_clear();
  assert_int_equal(h_pub(1, "t/1", "one", 1, 1), 1);
  assert_int_equal(h_pub(1, "t/2", "two", 2, 2), 2);
  assert_int_equal(h_pub(1, "t/3", "three", 2, 3), 3);
  assert_int_equal(h_pub(1, "t/4", "four", 1, 4), 4);
  /* Nothing leaves before the store says it is durable. */
  assert_int_equal(h_flush(1), 0);
  all_stored(2);
  assert_int_equal(h_flush(2), 3);
  assert_int_equal(h_count_sent(UVMQTT_PUBLISH, 0), 3);
  h_clear();
  assert_int_equal(h_feed_ack(3, UVMQTT_PUBREC, 2, 0), 0);
  assert_int_equal(h_flush(3), 0); /* no PUBREL before the state is stored */
  all_stored(3);
  assert_int_equal(h_flush(3), 1);
  assert_int_equal(H.sent[0].type, UVMQTT_PUBREL);
  assert_int_equal(h_feed_publish(3, "in/7", "seven", 2, 7, false), 0);
  assert_int_equal(h_feed_publish(3, "in/8", "eight", 2, 8, false), 0);
  assert_int_equal(h_feed_ack(3, UVMQTT_PUBREL, 8, 0), 0);
  assert_int_equal(H.nmsg, 2);
  assert_true(rec_has(UVMQTT__REC_IN(7)));
  assert_false(rec_has(UVMQTT__REC_IN(8)));
  assert_int_equal(nrecs, 4 + 3 + 1); /* 4 messages, 3 states, 1 in id */

  crash_and_restore(version);
  assert_int_equal(restored_report.queued, 1);
  assert_int_equal(restored_report.sent, 2);
  assert_int_equal(restored_report.pubrec, 1);
  assert_int_equal(restored_report.in_ids, 1);
  assert_int_equal(restored_report.bad, 0);
  assert_int_equal(restored_report.max_seq, 4);
  assert_int_equal(each_calls, 4);
  assert_int_equal(uvmqtt__session_inflight(H.s), 3);
  assert_int_equal(uvmqtt__session_queued(H.s), 1);

  assert_int_equal(h_connect(10, 0, false), 0);
  h_flush(10);
  h_clear();
  assert_int_equal(h_feed_connack(10, true, 0, NULL), 0);
  assert_int_equal(h_flush(10), 3);
  /* In order: DUP resend, PUBREL, DUP resend. */
  assert_int_equal(H.sent[0].type, UVMQTT_PUBLISH);
  assert_int_equal(H.sent[0].id, 1);
  assert_true(H.sent[0].dup);
  assert_string_equal(H.sent[0].topic, "t/1");
  assert_memory_equal(H.sent[0].payload, "one", 3);
  assert_int_equal(H.sent[1].type, UVMQTT_PUBREL);
  assert_int_equal(H.sent[1].id, 2);
  assert_int_equal(H.sent[2].type, UVMQTT_PUBLISH);
  assert_int_equal(H.sent[2].id, 3);
  assert_int_equal(H.sent[2].qos, 2);
  assert_true(H.sent[2].dup);
  /* The broker resends incoming 7: acknowledged, not delivered again. */
  h_clear();
  assert_int_equal(h_feed_publish(11, "in/7", "seven", 2, 7, true), 0);
  assert_int_equal(H.nmsg, 0);
  assert_int_equal(h_flush(11), 1);
  assert_int_equal(H.sent[0].type, UVMQTT_PUBREC);
  assert_int_equal(h_feed_ack(11, UVMQTT_PUBREL, 7, 0), 0);
  assert_false(rec_has(UVMQTT__REC_IN(7)));
  /* Completions reach the restored messages' callback and clean up. */
  assert_int_equal(h_feed_ack(12, UVMQTT_PUBACK, 1, 0), 0);
  assert_int_equal(h_feed_ack(12, UVMQTT_PUBCOMP, 2, 0), 0);
  assert_int_equal(h_ndone(99), 2);
  assert_false(rec_has(UVMQTT__REC_MSG(1)));
  assert_false(rec_has(UVMQTT__REC_STATE(2)));
  h_clear();
  assert_int_equal(h_flush(12), 2); /* PUBCOMP for 7, then message 4 */
  assert_int_equal(H.sent[1].type, UVMQTT_PUBLISH);
  assert_int_equal(H.sent[1].id, 4);
  assert_false(H.sent[1].dup);
  assert_true(rec_has(UVMQTT__REC_STATE(4)));
}

static void every_state_v311(void **state) {
  (void)state;
  every_state_session_present(UVMQTT_V311);
}

static void every_state_v5(void **state) {
  (void)state;
  every_state_session_present(UVMQTT_V5);
}

/* Restored, then the broker has no session: QoS 1 goes again as new, QoS 2
 * already sent completes with UVMQTT_ESESSION, incoming ids are forgotten,
 * and the records follow. */
static void session_lost_after_restore(void **state) {
  (void)state;
  start(UVMQTT_V311);
  h_up(0);
  assert_int_equal(h_pub(1, "a", "q1", 1, 1), 1);
  assert_int_equal(h_pub(1, "b", "q2", 2, 2), 2);
  all_stored(1);
  h_flush(1);
  assert_int_equal(h_feed_publish(2, "in", "x", 2, 5, false), 0);

  crash_and_restore(UVMQTT_V311);
  assert_int_equal(restored_report.sent, 2);
  assert_int_equal(restored_report.in_ids, 1);
  assert_int_equal(h_connect(10, 0, false), 0);
  h_flush(10);
  h_clear();
  assert_int_equal(h_feed_connack(10, false, 0, NULL), 0);
  assert_int_equal(h_ndone(99), 1);
  assert_int_equal(h_donefor(99)->status, UVMQTT_ESESSION);
  assert_int_equal(h_donefor(99)->id, 2);
  assert_false(rec_has(UVMQTT__REC_MSG(2)));
  assert_false(rec_has(UVMQTT__REC_IN(5)));
  assert_int_equal(h_flush(10), 1);
  assert_int_equal(H.sent[0].id, 1);
  assert_false(H.sent[0].dup);
  assert_true(rec_has(UVMQTT__REC_MSG(1)));
  assert_true(rec_has(UVMQTT__REC_STATE(1))); /* sent again */
}

/* A store that cannot take the message fails the publish call; one whose
 * write fails later fails the message through its callback. Closing drops
 * nothing from the store. */
static void store_failures_and_close(void **state) {
  (void)state;
  start(UVMQTT_V5);
  h_up(0);
  fail_put = UVMQTT_ENOMEM;
  assert_int_equal(h_pub(1, "a", "x", 1, 1), UVMQTT_ENOMEM);
  assert_int_equal(h_ndone(1), 0);
  assert_int_equal(nrecs, 0);
  fail_put = 0;
  int y = h_pub(1, "a", "y", 2, 2);
  assert_true(y > 0);
  assert_true(rec_has(UVMQTT__REC_MSG(y)));
  assert_int_equal(nunstored, 1);
  uvmqtt__session_stored(H.s, unstored[0], 1, -5 /* EIO */);
  nunstored = 0;
  assert_int_equal(h_ndone(2), 1);
  assert_int_equal(h_donefor(2)->status, -5);
  assert_int_equal(h_flush(1), 0);
  assert_false(rec_has(UVMQTT__REC_MSG(y)));
  /* Completed (expired) while its write is under way: fires once stored. */
  uvmqtt_session_pub_t p;
  memset(&p, 0, sizeof(p));
  p.topic = "e";
  p.topic_len = 1;
  p.payload = "z";
  p.payload_len = 1;
  p.qos = 1;
  p.expiry_s = 1;
  assert_true(h_pub_ex(2, &p, 3) > 0);
  int k = h_pub(2, "k", "kept", 1, 4);
  assert_true(k > 0);
  all_stored(5000);
  assert_int_equal(h_ndone(3), 1);
  assert_int_equal(h_donefor(3)->status, UVMQTT_EEXPIRED);
  assert_int_equal(h_flush(5000), 1);
  /* Close: k is in flight; its records stay for the next process. */
  h_fini(UVMQTT_ECLOSED);
  assert_int_equal(h_ndone(4), 0);
  assert_true(rec_has(UVMQTT__REC_MSG(k)));
  assert_true(rec_has(UVMQTT__REC_STATE(k)));
}

/* Records that do not decode are skipped and named, not fatal. */
static void bad_records(void **state) {
  (void)state;
  start(UVMQTT_V311);
  h_up(0);
  assert_int_equal(h_pub(1, "a", "x", 1, 1), 1);
  all_stored(1);
  h_fini(UVMQTT_ECLOSED);
  const void *b = "garbage";
  size_t l = 7;
  rec_put(UVMQTT__REC_MSG(9), &b, &l, 1);
  rec_put(UVMQTT__REC_STATE(1), &b, &l, 1);
  rec_put((7ull << 32) | 1, &b, &l, 1);
  start(UVMQTT_V311);
  uvmqtt__store_rec_t r[MAXREC];
  uint64_t bad[MAXREC];
  for (size_t i = 0; i < nrecs; i++) {
    r[i].id = recs[i].id;
    r[i].value = recs[i].v;
    r[i].len = recs[i].len;
  }
  assert_int_equal(uvmqtt__persist_restore(H.s, UVMQTT_V311, 0, 0, r, nrecs,
                                           NULL, NULL, NULL, NULL,
                                           &restored_report, bad),
                   0);
  assert_int_equal(restored_report.bad, 3);
  assert_int_equal(restored_report.queued, 1);
  /* A record of another protocol version is not decoded as this one. */
  h_fini(UVMQTT_ECLOSED);
  start(UVMQTT_V5);
  assert_int_equal(uvmqtt__persist_restore(H.s, UVMQTT_V5, 0, 0, r, nrecs, NULL,
                                           NULL, NULL, NULL, &restored_report,
                                           bad),
                   0);
  assert_int_equal(restored_report.queued, 0);
  assert_int_equal(restored_report.bad, 4);
}

/* ---- record first ------------------------------------------------------ */

static uint64_t got_did[16];
static bool got_maybe[16];
static void note_did(const uvmqtt_publish_t *pub) {
  (void)pub;
  assert_true(H.nmsg <= 16);
  got_did[H.nmsg - 1] = uvmqtt__session_in_did(H.s, &got_maybe[H.nmsg - 1]);
}

static uint64_t rec_did(uint16_t pid) {
  for (size_t i = 0; i < nrecs; i++)
    if (recs[i].id == UVMQTT__REC_IN(pid))
      return recs[i].len == 8 ? uvmqtt__le_get64(recs[i].v) : 0;
  return 0;
}

static void feed_two(uint64_t now, uint16_t q2, uint16_t q1, bool dup) {
  uint8_t buf[128];
  size_t n = b_publish(buf, sizeof buf, "in/a", "first", 5, 2, q2, dup);
  n += b_publish(buf + n, sizeof buf - n, "in/b", "second", 6, 1, q1, false);
  assert_int_equal(h_feed(now, buf, n), 0);
}

/* A new QoS 2 message is recorded with its delivery id before it is
 * handed over, input held meanwhile; after a crash the broker's resend is
 * handed over with the same id, flagged maybe-delivered; a PUBREL instead
 * forgets it, and a new message on that packet id gets a new id. */
static void record_first(void **state) {
  (void)state;
  start(UVMQTT_V311);
  assert_int_equal(uvmqtt__session_set_record_first(H.s, 0), UVMQTT_EINVAL);
  assert_int_equal(uvmqtt__session_set_record_first(H.s, 1000), 0);
  H.msg_hook = note_did;
  h_up(0);
  feed_two(1, 7, 8, false);
  assert_int_equal(H.nmsg, 0); /* waits for its record */
  assert_true(H.holding);
  assert_int_equal(rec_did(7), 1000);
  assert_int_equal(h_flush(1), 0); /* no PUBREC yet */
  uvmqtt__session_in_stored(H.s, 2, 7, 0);
  assert_int_equal(H.nmsg, 1);
  assert_string_equal(H.msg[0].topic, "in/a");
  assert_int_equal(got_did[0], 1000);
  assert_false(got_maybe[0]);
  assert_false(H.holding);
  assert_int_equal(uvmqtt__session_release_input(H.s, 2), 0);
  assert_int_equal(H.nmsg, 2); /* the QoS 1 message behind it */
  assert_int_equal(got_did[1], 0);
  assert_int_equal(h_flush(2), 2);
  assert_int_equal(H.sent[0].type, UVMQTT_PUBREC);
  assert_int_equal(H.sent[1].type, UVMQTT_PUBACK);

  /* Killed before the broker got the PUBREC: it sends the message again. */
  crash_and_restore(UVMQTT_V311);
  assert_int_equal(uvmqtt__session_set_record_first(H.s, 2000), 0);
  H.msg_hook = note_did;
  assert_int_equal(h_connect(3, 0, false), 0);
  h_flush(3);
  assert_int_equal(h_feed_connack(3, true, 0, NULL), 0);
  h_clear();
  assert_int_equal(h_feed_publish(4, "in/a", "first", 2, 7, true), 0);
  assert_int_equal(H.nmsg, 1); /* at once: its record exists */
  assert_int_equal(got_did[0], 1000);
  assert_true(got_maybe[0]);
  assert_int_equal(h_feed_publish(4, "in/a", "first", 2, 7, true), 0);
  assert_int_equal(H.nmsg, 1); /* handed over in this process already */
  assert_int_equal(h_feed_ack(5, UVMQTT_PUBREL, 7, 0), 0);
  assert_false(rec_has(UVMQTT__REC_IN(7)));
  assert_int_equal(h_flush(5), 3);

  /* A new message: recorded first again, a new id. */
  h_clear();
  assert_int_equal(h_feed_publish(6, "in/c", "third", 2, 9, false), 0);
  assert_int_equal(H.nmsg, 0);
  assert_int_equal(rec_did(9), 2000);

  /* Killed after the broker got the PUBREC: PUBREL, never the message. */
  uvmqtt__session_in_stored(H.s, 7, 9, 0);
  assert_int_equal(H.nmsg, 1);
  crash_and_restore(UVMQTT_V311);
  assert_int_equal(uvmqtt__session_set_record_first(H.s, 3000), 0);
  H.msg_hook = note_did;
  assert_int_equal(h_connect(8, 0, false), 0);
  h_flush(8);
  assert_int_equal(h_feed_connack(8, true, 0, NULL), 0);
  h_clear();
  assert_int_equal(h_feed_ack(9, UVMQTT_PUBREL, 9, 0), 0);
  assert_false(rec_has(UVMQTT__REC_IN(9)));
  assert_int_equal(h_feed_publish(9, "in/d", "fourth", 2, 9, false), 0);
  assert_int_equal(H.nmsg, 0);
  assert_int_equal(rec_did(9), 3000); /* not the old message's id */
  uvmqtt__session_in_stored(H.s, 10, 9, 0);
  assert_int_equal(H.nmsg, 1);
  assert_int_equal(got_did[0], 3000);
  assert_false(got_maybe[0]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(every_state_v311, teardown),
      cmocka_unit_test_teardown(every_state_v5, teardown),
      cmocka_unit_test_teardown(session_lost_after_restore, teardown),
      cmocka_unit_test_teardown(store_failures_and_close, teardown),
      cmocka_unit_test_teardown(bad_records, teardown),
      cmocka_unit_test_teardown(record_first, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
