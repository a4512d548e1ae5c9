/* The broker goes away in the middle of a QoS 1 / QoS 2 stream and comes
 * back: nothing is lost, and with QoS 2 nothing is delivered twice.
 *
 * mosquitto runs with persistence (its db in a test directory). SIGTERM
 * makes it save the db on exit; the SIGKILL variant saves it with SIGUSR1
 * while the stream is quiet, freezes the broker (SIGSTOP), publishes more,
 * and kills it: what the client had not got acknowledged must still
 * arrive (at least once). Both clients use clean session off, fixed ids
 * and a short reconnect backoff. */
#include "ctest.h"

#include <signal.h>
#include <unistd.h>

#define N 3000 /* large enough that a stop lands mid-stream */

typedef struct {
  uv_loop_t loop;
  tu_broker_t *b;
  char dbdir[256];
  ct_client_t s, p;
  ct_pub_t pubs[N];
  int ids[N];
  int seen[N];
  int qos;
} rs_t;

static void setup(rs_t *r, int version, int qos) {
  char extra[512];
  memset(r, 0, sizeof(*r));
  r->qos = qos;
  assert_int_equal(tu_tmpdir(r->dbdir, sizeof(r->dbdir)), 0);
  /* Later lines win over testutil's "persistence false". */
  snprintf(extra, sizeof(extra),
           "persistence true\npersistence_location %s/\n"
           "max_inflight_messages 20\nmax_queued_messages 10000\n",
           r->dbdir);
  r->b = ct_broker(extra);
  assert_int_equal(uv_loop_init(&r->loop), 0);
  uvmqtt_options_t *o = ct_opts(version, "rs-sub", false);
  assert_int_equal(uvmqtt_options_set_keepalive(o, 5), 0);
  ct_client_init(&r->s, &r->loop, o, "sub");
  uvmqtt_options_del(o);
  o = ct_opts(version, "rs-pub", false);
  assert_int_equal(uvmqtt_options_set_max_inflight(o, 10), 0);
  assert_int_equal(uvmqtt_options_set_keepalive(o, 5), 0);
  ct_client_init(&r->p, &r->loop, o, "pub");
  uvmqtt_options_del(o);
  ct_connect(&r->s, r->b->port);
  ct_connect(&r->p, r->b->port);
  ct_wait_connected(&r->s, 1);
  ct_wait_connected(&r->p, 1);
  ct_subscribe(&r->s, "rs/#", qos);
}

static void publish_range(rs_t *r, int from, int to) {
  for (int i = from; i < to; i++) {
    char payload[32];
    int n = snprintf(payload, sizeof(payload), "seq=%d", i);
    r->ids[i] = uvmqtt_publish(r->p.c, "rs/stream", payload, (size_t)n, r->qos,
                               false, ct_pub_cb, &r->pubs[i]);
    assert_true(r->ids[i] > 0);
  }
}

/* Counts deliveries per sequence number from the messages seen so far. */
static size_t distinct(rs_t *r) {
  size_t d = 0;
  memset(r->seen, 0, sizeof(r->seen));
  for (size_t i = 0; i < r->s.nmsgs; i++) {
    int seq = -1;
    assert_int_equal(sscanf(r->s.msgs[i].payload, "seq=%d", &seq), 1);
    assert_true(seq >= 0 && seq < N);
    assert_string_equal(r->s.msgs[i].topic, "rs/stream");
    assert_int_equal(r->s.msgs[i].qos, r->qos);
    if (r->seen[seq]++ == 0)
      d++;
  }
  return d;
}

static bool all_done(void *arg) {
  rs_t *r = arg;
  for (int i = 0; i < N; i++)
    if (r->pubs[i].calls == 0)
      return false;
  return distinct(r) == N;
}

static void finish(rs_t *r, bool exactly_once) {
  assert_int_equal(ct_run_while_not(&r->loop, all_done, r, 30000), 0);
  tu_run_for(&r->loop, 300); /* late duplicates would show up here */
  assert_int_equal(distinct(r), N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(r->pubs[i].calls, 1);
    assert_int_equal(r->pubs[i].status, 0);
    assert_int_equal(r->pubs[i].id, r->ids[i]);
    if (exactly_once)
      assert_int_equal(r->seen[i], 1);
  }
  if (exactly_once)
    assert_int_equal(r->s.nmsgs, N);
  /* Both saw the broker go and came back to their sessions. */
  assert_true(r->p.disconnects >= 1);
  assert_true(r->s.disconnects >= 1);
  assert_true(r->p.connected >= 2);
  assert_true(r->s.connected >= 2);
  assert_true(r->p.session_present);
  assert_true(r->s.session_present);
  assert_int_equal(uvmqtt_client_get_inflight(r->p.c), 0);
  assert_int_equal(uvmqtt_client_get_queued(r->p.c), 0);
  ct_close(&r->s);
  ct_close(&r->p);
  assert_int_equal(tu_loop_close(&r->loop, 2000), 0);
  ct_client_free(&r->s);
  ct_client_free(&r->p);
  tu_rmtree(r->dbdir);
}

/* SIGTERM while the stream runs: mosquitto saves its db, including the
 * in-flight QoS 1/2 state of both sessions, and restarts from it. */
static void run_sigterm(int version, int qos) {
  static rs_t r;
  setup(&r, version, qos);
  publish_range(&r, 0, N);
  assert_int_equal(ct_wait_size(&r.loop, &r.s.nmsgs, N / 3, CT_WAIT_MS), 0);
  assert_true(r.s.nmsgs < N); /* really in the middle */
  tu_broker_stop(r.b);
  /* Let both notice and fail a few reconnects while it is down. */
  assert_int_equal(ct_wait_int(&r.loop, &r.p.disconnects, 1, 3000), 0);
  assert_int_equal(ct_wait_int(&r.loop, &r.s.disconnects, 1, 3000), 0);
  tu_run_for(&r.loop, 300);
  assert_true(r.p.connect_fails >= 1);
  assert_int_equal(tu_broker_restart(r.b), 0);
  finish(&r, qos == 2);
  assert_true(tu_broker_log_contains(r.b, "Saving in-memory database"));
}

static void restart_sigterm_q1_v311(void **state) {
  (void)state;
  run_sigterm(UVMQTT_V311, 1);
}
static void restart_sigterm_q2_v311(void **state) {
  (void)state;
  run_sigterm(UVMQTT_V311, 2);
}
static void restart_sigterm_q2_v5(void **state) {
  (void)state;
  run_sigterm(UVMQTT_V5, 2);
}

/* SIGKILL: QoS 1 at least once. */
static void restart_sigkill_q1(void **state) {
  static rs_t r;
  (void)state;
  setup(&r, UVMQTT_V311, 1);
  publish_range(&r, 0, N / 2);
  assert_int_equal(ct_wait_size(&r.loop, &r.s.nmsgs, N / 2, CT_WAIT_MS), 0);
  for (int i = 0; i < N / 2; i++)
    assert_int_equal(ct_wait_int(&r.loop, &r.pubs[i].calls, 1, CT_WAIT_MS), 0);
  /* Quiet: save the db, then freeze the broker. */
  assert_int_equal(kill(r.b->pid, SIGUSR1), 0);
  tu_run_for(&r.loop, 300);
  assert_int_equal(kill(r.b->pid, SIGSTOP), 0);
  publish_range(&r, N / 2, N);
  tu_run_for(&r.loop, 100);
  assert_int_equal(uvmqtt_client_get_inflight(r.p.c), 10);
  tu_broker_kill(r.b);
  assert_int_equal(ct_wait_int(&r.loop, &r.p.disconnects, 1, 3000), 0);
  tu_run_for(&r.loop, 200);
  for (int i = N / 2; i < N; i++)
    assert_int_equal(r.pubs[i].calls, 0);
  assert_int_equal(tu_broker_restart(r.b), 0);
  finish(&r, false);
}

static const struct CMUnitTest tests[] = {
    CT_TEST(restart_sigterm_q1_v311),
    CT_TEST(restart_sigterm_q2_v311),
    CT_TEST(restart_sigterm_q2_v5),
    CT_TEST(restart_sigkill_q1),
};

CT_MAIN(tests)
