/* Allocation-failure sweep of the session: fail the Nth allocation (once,
 * and from N on) for every N over a scenario that exercises publish,
 * subscribe, input, output and reconnect, and check that
 * - every call that failed returned UVMQTT_ENOMEM and never completes,
 *   and what it was asked to send is never sent;
 * - every call that succeeded completes exactly once;
 * - the output always decodes as whole packets;
 * - nothing leaks (live allocations counted here; ASan checks too). */
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

static long fail_at = -1; /* index of the allocation that fails; -1 none */
static bool sticky;       /* keep failing after fail_at */
static long nallocs;
static long live;
static size_t live_bytes; /* as asked for, without allocator overhead */

static int should_fail(void) {
  long n = nallocs++;
  if (fail_at < 0)
    return 0;
  return sticky ? n >= fail_at : n == fail_at;
}

/* Each block starts with a header holding its size. */
#define HDR 16

static void *f_realloc(void *p, size_t n) {
  if (should_fail())
    return NULL;
  uint8_t *h = p ? (uint8_t *)p - HDR : NULL;
  size_t old = 0;
  if (h)
    memcpy(&old, h, sizeof(old));
  uint8_t *q = realloc(h, n + HDR);
  if (!q)
    return NULL;
  if (!p)
    live++;
  live_bytes = live_bytes - old + n;
  memcpy(q, &n, sizeof(n));
  return q + HDR;
}

static void *f_malloc(size_t n) {
  return f_realloc(NULL, n);
}

static void *f_calloc(size_t c, size_t n) {
  if (n && c > SIZE_MAX / n)
    return NULL;
  void *p = f_realloc(NULL, c * n);
  if (p)
    memset(p, 0, c * n);
  return p;
}

static void f_free(void *p) {
  if (!p)
    return;
  uint8_t *h = (uint8_t *)p - HDR;
  size_t old;
  memcpy(&old, h, sizeof(old));
  live--;
  live_bytes -= old;
  free(h);
}

static int setup(void **state) {
  (void)state;
  return uvmqtt_replace_allocator(f_malloc, f_realloc, f_calloc, f_free);
}

static int teardown(void **state) {
  (void)state;
  fail_at = -1;
  return uvmqtt_replace_allocator(malloc, realloc, calloc, free);
}

/* ---- the scenario -------------------------------------------------------- */

#define MAXOPS 128

typedef struct {
  long arg;
  int rc;
  char payload[32];
} op_t;

static op_t ops[MAXOPS];
static int nops;
static int nenomem;

static void check_rc(int rc) {
  if (rc < 0 && rc != UVMQTT_ENOMEM)
    fail_msg("unexpected error %s (allocation %ld)", uvmqtt_err_name(rc),
             fail_at);
  if (rc == UVMQTT_ENOMEM)
    nenomem++;
}

static long pub(uint64_t now, const char *topic, uint8_t qos, size_t len,
                bool zero_copy, bool with_props) {
  static uint8_t bigbuf[MAXOPS][3000];
  static const uvmqtt_user_prop_t up = {{"k", 1}, {"v", 1}};
  assert_true(nops < MAXOPS);
  op_t *o = &ops[nops];
  o->arg = 100 + nops;
  snprintf(o->payload, sizeof(o->payload), "payload-%d", nops);
  uvmqtt_session_pub_t p;
  uvmqtt_props_t props;
  memset(&p, 0, sizeof(p));
  memset(&props, 0, sizeof(props));
  p.topic = topic;
  p.topic_len = strlen(topic);
  if (len > sizeof(o->payload)) {
    /* Large payloads start with the unique text too. */
    memset(bigbuf[nops], 'b', sizeof(bigbuf[nops]));
    memcpy(bigbuf[nops], o->payload, strlen(o->payload));
    p.payload = bigbuf[nops];
    p.payload_len = len;
  } else {
    p.payload = o->payload;
    p.payload_len = strlen(o->payload);
  }
  p.qos = qos;
  p.zero_copy = zero_copy;
  if (with_props) {
    props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_CONTENT_TYPE);
    props.content_type.data = "text/plain";
    props.content_type.len = 10;
    props.user_props = &up;
    props.user_prop_count = 1;
    p.props = &props;
    p.expiry_s = 100;
  }
  o->rc = h_pub_ex(now, &p, o->arg);
  check_rc(o->rc);
  nops++;
  return o->rc;
}

static int sub(const char *filter) {
  assert_true(nops < MAXOPS);
  op_t *o = &ops[nops];
  o->arg = 100 + nops;
  snprintf(o->payload, sizeof(o->payload), "sub-%d", nops);
  o->rc = h_sub(filter, 1, o->arg);
  check_rc(o->rc);
  nops++;
  return o->rc;
}

/* Takes output until none is left; a failed take_output leaves it pending
 * (tried again once, as an owner would on its next flush). */
static void flush(uint64_t now) {
  for (int i = 0; i < 3 && uvmqtt__session_has_output(H.s); i++)
    h_flush(now);
}

/* Feeds bytes; on an error the owner closes the connection. Returns false
 * when the connection is gone. */
static bool feed(uint64_t now, const uint8_t *b, size_t n) {
  int rc = h_feed(now, b, n);
  check_rc(rc);
  if (rc < 0) {
    uvmqtt__session_connection_lost(H.s, rc);
    return false;
  }
  return true;
}

static bool feed_ack(uint64_t now, uint8_t type, uint16_t id) {
  uint8_t b[16];
  size_t n = b_ack(b, type, id, 0);
  return feed(now, b, n);
}

static bool connect_and_ack(uint64_t now, bool sp) {
  int rc = h_connect(now, 30, !sp);
  check_rc(rc);
  if (rc < 0)
    return false;
  flush(now);
  uint8_t b[64];
  uvmqtt_props_t p;
  memset(&p, 0, sizeof(p));
  p.present = UVMQTT_PROP_BIT(UVMQTT_PROP_RECEIVE_MAXIMUM) |
              UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS_MAXIMUM);
  p.receive_maximum = 30;
  p.topic_alias_maximum = 2;
  size_t n = b_connack(b, sp, 0, &p);
  if (!feed(now, b, n))
    return false;
  flush(now);
  return true;
}

static void scenario(void) {
  uvmqtt_session_config_t cfg = h_cfg(UVMQTT_V5);
  cfg.max_inflight = 25;
  cfg.topic_alias_auto = true;
  cfg.topic_alias_max_in = 4;
  nops = 0;
  nenomem = 0;
  int rc = h_try_init(&cfg);
  check_rc(rc);
  if (rc < 0) {
    assert_null(H.s);
    return;
  }
  /* Queued while offline. */
  pub(0, "q/1", 1, 0, false, true);
  pub(0, "q/2", 2, 3000, false, false);
  pub(0, "q/0", 0, 3000, true, false);
  pub(0, "q/0", 0, 0, false, false);
  if (!connect_and_ack(1, false))
    goto out;
  /* Enough ids in use for the id set to need its bitmap. */
  for (int i = 0; i < 20; i++)
    pub(2, (const char *[]){"f/a", "f/b", "f/c"}[i % 3], (uint8_t)(1 + i % 2),
        0, false, i == 3);
  int sub_id = sub("s/#");
  pub(2, "f/0", 0, 0, false, false);
  pub(2, "f/0", 0, 3000, false, false);
  pub(2, "f/0", 0, 3000, true, false);
  flush(2);

  /* Incoming traffic, the large one split across chunks. */
  {
    static uint8_t big[2500];
    uint8_t b[4096];
    size_t n = b_publish(b, sizeof(b), "in/2", big, sizeof(big), 2, 3, false);
    /* Split inside the fixed header, then inside the body. */
    if (!feed(3, b, 2) || !feed(3, b + 2, 8) || !feed(3, b + 10, n - 10))
      goto out;
    for (uint16_t id = 10; id < 30; id++) {
      n = b_publish(b, sizeof(b), "in/2", "x", 1, 2, id, false);
      if (!feed(3, b, n))
        goto out;
    }
    /* Incoming topic aliases: defined, then used alone. */
    uvmqtt_packet_t ap;
    memset(&ap, 0, sizeof(ap));
    ap.type = UVMQTT_PUBLISH;
    ap.u.publish.topic.data = "in/alias";
    ap.u.publish.topic.len = 8;
    ap.u.publish.props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS);
    ap.u.publish.props.topic_alias = 2;
    n = b_pkt(b, sizeof(b), &ap);
    if (!feed(3, b, n))
      goto out;
    ap.u.publish.topic.len = 0;
    n = b_pkt(b, sizeof(b), &ap);
    if (!feed(3, b, n))
      goto out;
    n = b_publish(b, sizeof(b), "in/1", "y", 1, 1, 4, false);
    if (!feed(3, b, n) || !feed_ack(3, UVMQTT_PUBREL, 3))
      goto out;
    uint8_t codes[1] = {1};
    if (sub_id > 0) {
      n = b_suback(b, UVMQTT_SUBACK, (uint16_t)sub_id, codes, 1);
      if (!feed(3, b, n))
        goto out;
    }
  }
  flush(3);
  /* Acks for part of what was sent: PUBACK / PUBREC, then PUBCOMP. */
  {
    static bool seen[65536];
    uint16_t recd[64];
    size_t nrec = 0;
    memset(seen, 0, sizeof(seen));
    size_t nsent = H.nsent;
    for (size_t i = 0; i < nsent; i++) {
      const sent_t *s = &H.sent[i];
      if (s->type != UVMQTT_PUBLISH || s->qos == 0 || s->id > 12 || seen[s->id])
        continue;
      seen[s->id] = true;
      if (s->qos == 2)
        recd[nrec++] = s->id;
      if (!feed_ack(4, s->qos == 1 ? UVMQTT_PUBACK : UVMQTT_PUBREC, s->id))
        goto out;
    }
    flush(4);
    for (size_t i = 0; i + 1 < nrec; i++)
      if (!feed_ack(4, UVMQTT_PUBCOMP, recd[i]))
        goto out;
  }
  check_rc(uvmqtt__session_tick(H.s, 40000));
  flush(40000);
  /* Reconnect with the session: resends. */
  uvmqtt__session_connection_lost(H.s, UVMQTT_EPEERCLOSED);
  pub(40001, "r/1", 1, 0, false, true);
  if (!connect_and_ack(40002, true))
    goto out;
  /* And once more without it. */
  uvmqtt__session_connection_lost(H.s, UVMQTT_EPEERCLOSED);
  if (!connect_and_ack(40003, false))
    goto out;
  pub(40004, "z/0", 0, 0, false, false);
out:
  /* Leave a batch pending in the output, then free. */
  uvmqtt__session_free(H.s, UVMQTT_ECLOSED);
  H.s = NULL;
}

static void check_outcome(void) {
  for (int i = 0; i < nops; i++) {
    const op_t *o = &ops[i];
    bool is_sub = strncmp(o->payload, "sub-", 4) == 0;
    int n = 0;
    if (is_sub) {
      for (size_t k = 0; k < H.nsub; k++)
        if (H.sub[k].arg == o->arg)
          n++;
    } else {
      n = h_ndone(o->arg);
    }
    if (o->rc < 0 && n != 0)
      fail_msg("allocation %ld: op %d failed (%s) yet completed %d times",
               fail_at, i, uvmqtt_err_name(o->rc), n);
    if (o->rc >= 0 && n != 1)
      fail_msg("allocation %ld: op %d completed %d times", fail_at, i, n);
    if (o->rc < 0 && !is_sub) {
      size_t len = strlen(o->payload);
      for (size_t k = 0; k < H.nsent; k++)
        if (H.sent[k].type == UVMQTT_PUBLISH && H.sent[k].payload_len >= len &&
            memcmp(H.sent[k].payload, o->payload, len) == 0 &&
            (H.sent[k].payload_len == len || H.sent[k].payload[len] == 'b'))
          fail_msg("allocation %ld: op %d (%s) returned %s but was sent",
                   fail_at, i, o->payload, uvmqtt_err_name(o->rc));
    }
  }
}

static void sweep(bool sticky_mode) {
  /* A run without failures counts the allocations. */
  fail_at = -1;
  nallocs = 0;
  live = 0;
  scenario();
  check_outcome();
  assert_int_equal(nenomem, 0);
  h_fini(0);
  assert_int_equal(live, 0);
  long total = nallocs;
  assert_true(total > 20);
  sticky = sticky_mode;
  for (long n = 0; n < total; n++) {
    fail_at = n;
    if (getenv("SWEEP_VERBOSE"))
      fprintf(stderr, "failing allocation %ld of %ld%s\n", n, total,
              sticky ? " and all after it" : "");
    nallocs = 0;
    live = 0;
    scenario();
    check_outcome();
    h_fini(0);
    if (live != 0)
      fail_msg("allocation %ld failed: %ld allocations leaked", n, live);
  }
  fail_at = -1;
}

/* Outgoing topic aliases under allocation failure: a failed publish must
 * not leave an alias the broker never learnt (the harness checks every
 * alias is defined before use). */
static void alias_scenario(void) {
  uvmqtt_session_config_t cfg = h_cfg(UVMQTT_V5);
  cfg.topic_alias_auto = true;
  nops = 0;
  nenomem = 0;
  int rc = h_try_init(&cfg);
  check_rc(rc);
  if (rc < 0)
    return;
  if (!connect_and_ack(1, false))
    goto out;
  for (int round = 0; round < 3; round++) {
    pub(2, "a/1", 0, 2000, false, false);
    pub(2, "a/2", 1, 3000, false, false);
    pub(2, "a/1", 0, 0, false, false);
    pub(2, "a/2", 1, 0, false, false);
    flush(2);
  }
out:
  uvmqtt__session_free(H.s, UVMQTT_ECLOSED);
  H.s = NULL;
}

static void sweep_alias(bool sticky_mode) {
  fail_at = -1;
  nallocs = 0;
  live = 0;
  alias_scenario();
  check_outcome();
  size_t aliased = 0;
  for (size_t i = 0; i < H.nsent; i++)
    aliased += H.sent[i].type == UVMQTT_PUBLISH && H.sent[i].alias_only;
  assert_true(aliased >= 8);
  h_fini(0);
  assert_int_equal(live, 0);
  long total = nallocs;
  sticky = sticky_mode;
  for (long n = 0; n < total; n++) {
    fail_at = n;
    nallocs = 0;
    live = 0;
    alias_scenario();
    check_outcome();
    h_fini(0);
    if (live != 0)
      fail_msg("allocation %ld failed: %ld allocations leaked", n, live);
  }
  fail_at = -1;
}

static void test_sweep_alias(void **state) {
  (void)state;
  sweep_alias(false);
  sweep_alias(true);
}

/* ---- heap held while idle ------------------------------------------------ */

/* One round of traffic on a connected session: a subscription, QoS 1
 * publishes (more ids in use than a set holds without memory of its own),
 * a QoS 0 one with a completion, an incoming QoS 2 publish split
 * inside its fixed header and inside its body (the parser is on the heap
 * only in between), all acknowledged and flushed. */
static void idle_round(uint64_t now, uint16_t in_id) {
  static uint8_t big[3000];
  uint8_t b[4096];
  int sid = h_sub("s/#", 1, 1);
  assert_true(sid > 0);
  int pid[5];
  for (int i = 0; i < 5; i++) {
    pid[i] = h_pub(now, "p/1", "one", 1, 2);
    assert_true(pid[i] > 0);
  }
  assert_int_equal(h_pub(now, "p/0", "zero", 0, 3), 0);
  h_flush(now);
  uint8_t codes[1] = {1};
  size_t n = b_suback(b, UVMQTT_SUBACK, (uint16_t)sid, codes, 1);
  assert_int_equal(h_feed(now, b, n), 0);
  for (int i = 0; i < 5; i++)
    assert_int_equal(h_feed_ack(now, UVMQTT_PUBACK, (uint16_t)pid[i], 0), 0);
  long before = live;
  n = b_publish(b, sizeof(b), "in/2", big, sizeof(big), 2, in_id, false);
  assert_int_equal(h_feed(now, b, 2), 0);
  assert_int_equal(live, before + 1); /* the parser, parked */
  assert_int_equal(h_feed(now, b + 2, 8), 0);
  assert_int_equal(live, before + 1); /* with the packet's buffer */
  assert_true(live_bytes >= sizeof(big));
  assert_int_equal(h_feed(now, b + 10, n - 10), 0);
  assert_int_equal(live, before); /* the parser is gone, the id inline */
  assert_int_equal(h_feed_ack(now, UVMQTT_PUBREL, in_id, 0), 0);
  h_flush(now);
  assert_int_equal(uvmqtt__session_inflight(H.s), 0);
  assert_int_equal(H.nmsg, 1);
  h_clear();
}

/* A connected, subscribed, idle session holds one small block: the
 * session. Traffic leaves nothing behind once it is done (what stays is
 * the thread's shared pool of spare output batches, the same after every
 * round). */
static void test_idle_heap(void **state) {
  (void)state;
  for (uint8_t v = UVMQTT_V311; v <= UVMQTT_V5; v++) {
    fail_at = -1;
    live = 0;
    live_bytes = 0;
    h_init_v(v);
    assert_int_equal(live, 1);
    print_message("session (v%u): %zu bytes\n", v, live_bytes);
    assert_true(live_bytes <= 256);
    h_up(0);
    idle_round(1, 7);
    long idle = live;
    size_t idle_bytes = live_bytes;
    for (uint16_t i = 0; i < 3; i++) {
      idle_round(2 + i, (uint16_t)(100 + i));
      assert_int_equal(live, idle);
      assert_int_equal(live_bytes, idle_bytes);
    }
    h_fini(0);
    assert_int_equal(live, 0);
    assert_int_equal(live_bytes, 0);
  }
}

static void test_sweep_once(void **state) {
  (void)state;
  sweep(false);
}

static void test_sweep_sticky(void **state) {
  (void)state;
  sweep(true);
}

/* A QoS 1 message is delivered only once its PUBACK is queued: without
 * memory for it, the message is not delivered and the broker sends it
 * again (before, it was delivered and then not acknowledged, and so
 * delivered twice). */
static void test_qos1_no_room_for_ack(void **state) {
  (void)state;
  fail_at = -1;
  h_init_v(UVMQTT_V311);
  h_up(0);
  /* The thread's only output batch is being written: the ack needs a new
   * one. */
  assert_int_equal(h_pub(1, "out", "x", 0, 1), 0);
  const uvmqtt_iov_t *iov;
  size_t n;
  uvmqtt_out_batch_t *busy = h_take(1, &iov, &n);
  assert_non_null(busy);
  sticky = true;
  fail_at = nallocs;
  assert_int_equal(h_feed_publish(2, "in/1", "y", 1, 4, false), UVMQTT_ENOMEM);
  assert_int_equal(H.nmsg, 0);
  fail_at = -1;
  sticky = false;
  h_done(busy, 0);
  uvmqtt__session_connection_lost(H.s, UVMQTT_ENOMEM);
  h_clear();
  /* The broker sends it again on the next connection: delivered once. */
  assert_int_equal(h_connect(3, 0, false), 0);
  h_flush(3);
  assert_int_equal(h_feed_connack(3, true, 0, NULL), 0);
  assert_int_equal(h_feed_publish(4, "in/1", "y", 1, 4, true), 0);
  assert_int_equal(H.nmsg, 1);
  h_flush(4);
  assert_int_equal(H.sent[H.nsent - 1].type, UVMQTT_PUBACK);
  assert_int_equal(H.sent[H.nsent - 1].id, 4);
  h_fini(0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_sweep_once, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sweep_sticky, setup, teardown),
      cmocka_unit_test_setup_teardown(test_sweep_alias, setup, teardown),
      cmocka_unit_test_setup_teardown(test_idle_heap, setup, teardown),
      cmocka_unit_test_setup_teardown(test_qos1_no_room_for_ack, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
