/* Sessions against mosquitto: persistent sessions across a disconnect,
 * wills (delivered when the connection dies, not after a clean close), and
 * the session-loss rule of src/session.h. */
#include "ctest.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

/* Persistent session: messages published while the subscriber is offline
 * arrive after it reconnects, and the CONNACK says session present. */
static void run_persistent(int version) {
  tu_broker_t *b;
  uv_loop_t loop;
  ct_client_t s, p;
  ct_pub_t pubs[10];
  char id[64];
  b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&loop), 0);
  snprintf(id, sizeof(id), "ps-sub-%d", version);
  uvmqtt_options_t *o = ct_opts(version, id, false);
  ct_client_init(&s, &loop, o, "sub");
  uvmqtt_options_del(o);
  o = ct_opts(version, NULL, true);
  ct_client_init(&p, &loop, o, "pub");
  uvmqtt_options_del(o);

  ct_connect(&s, b->port);
  ct_connect(&p, b->port);
  ct_wait_connected(&s, 1);
  ct_wait_connected(&p, 1);
  assert_false(s.first_session_present); /* fresh broker */
  ct_subscribe(&s, "ps/#", 1);

  assert_int_equal(uvmqtt_client_disconnect(s.c), 0);
  assert_int_equal(ct_wait_int(&loop, &s.disconnects, 1, CT_WAIT_MS), 0);
  assert_int_equal(s.last_disconnect_status, 0);
  assert_false(uvmqtt_client_is_connected(s.c));
  assert_int_equal(uvmqtt_client_disconnect(s.c), UVMQTT_ENOTCONN);
  /* No automatic reconnect after an application disconnect. */
  tu_run_for(&loop, 300);
  assert_int_equal(s.connects, 1);

  memset(pubs, 0, sizeof(pubs));
  for (int i = 0; i < 10; i++) {
    char payload[16];
    int n = snprintf(payload, sizeof(payload), "off-%d", i);
    assert_true(uvmqtt_publish(p.c, "ps/x", payload, (size_t)n, 1, false,
                               ct_pub_cb, &pubs[i]) > 0);
  }
  for (int i = 0; i < 10; i++)
    assert_int_equal(ct_wait_int(&loop, &pubs[i].calls, 1, CT_WAIT_MS), 0);
  assert_int_equal(s.nmsgs, 0);

  ct_connect(&s, b->port);
  ct_wait_connected(&s, 2);
  assert_true(s.session_present);
  assert_int_equal(ct_wait_size(&loop, &s.nmsgs, 10, CT_WAIT_MS), 0);
  tu_run_for(&loop, 100);
  assert_int_equal(s.nmsgs, 10);
  for (int i = 0; i < 10; i++) {
    char want[16];
    snprintf(want, sizeof(want), "off-%d", i);
    assert_string_equal(s.msgs[i].payload, want);
    assert_int_equal(s.msgs[i].qos, 1);
  }
  /* The subscription itself survived: a live message arrives too. */
  ct_pub_t live;
  memset(&live, 0, sizeof(live));
  assert_true(
      uvmqtt_publish(p.c, "ps/y", "live", 4, 1, false, ct_pub_cb, &live) > 0);
  assert_int_equal(ct_wait_size(&loop, &s.nmsgs, 11, CT_WAIT_MS), 0);
  assert_string_equal(s.msgs[10].payload, "live");
  ct_close(&s);
  ct_close(&p);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&s);
  ct_client_free(&p);
}

static void persistent_v311(void **state) {
  (void)state;
  run_persistent(UVMQTT_V311);
}
static void persistent_v5(void **state) {
  (void)state;
  run_persistent(UVMQTT_V5);
}

/* ---- wills ----------------------------------------------------------------
 */

/* A child process runs a client with a will on its own loop, tells the
 * parent once connected, and waits to be killed. */
static pid_t spawn_will_client(int port, int version, const char *topic) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    uv_loop_t loop;
    uvmqtt_options_t *o;
    uvmqtt_client_t *c;
    close(fds[0]);
    if (uv_loop_init(&loop) != 0 || uvmqtt_options_new(&o) != 0)
      _exit(2);
    uvmqtt_options_set_protocol(o, version);
    uvmqtt_options_set_will(o, topic, "gone", 4, 1, false);
    if (uvmqtt_client_new(&loop, o, &c) != 0)
      _exit(3);
    uvmqtt_options_del(o);
    uvmqtt_client_set_data(c, (void *)(intptr_t)fds[1]);
    uvmqtt_client_on_connect(c, NULL, NULL);
    /* Poll for the connection, then report it. */
    if (uvmqtt_client_connect(c, "127.0.0.1", port) != 0)
      _exit(4);
    for (int i = 0; i < 1000 && !uvmqtt_client_is_connected(c); i++)
      uv_run(&loop, UV_RUN_ONCE);
    if (!uvmqtt_client_is_connected(c))
      _exit(5);
    if (write(fds[1], "c", 1) != 1)
      _exit(6);
    for (;;)
      uv_run(&loop, UV_RUN_DEFAULT);
  }
  close(fds[1]);
  ct_track_child(pid);
  struct pollfd pf = {fds[0], POLLIN, 0};
  char ch = 0;
  assert_int_equal(poll(&pf, 1, 5000), 1);
  assert_int_equal(read(fds[0], &ch, 1), 1);
  assert_int_equal(ch, 'c');
  close(fds[0]);
  return pid;
}

static void run_will_on_kill(int version) {
  tu_broker_t *b;
  uv_loop_t loop;
  ct_client_t s;
  b = ct_broker(NULL);
  /* Fork before this process has a loop of its own. */
  pid_t child = spawn_will_client(b->port, version, "will/child");
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(version, NULL, true);
  ct_client_init(&s, &loop, o, "watcher");
  uvmqtt_options_del(o);
  ct_connect(&s, b->port);
  ct_wait_connected(&s, 1);
  ct_subscribe(&s, "will/#", 1);
  tu_run_for(&loop, 100);
  assert_int_equal(s.nmsgs, 0); /* the child is alive: no will yet */

  uint64_t t0 = tu_now_ms();
  assert_int_equal(kill(child, SIGKILL), 0);
  assert_int_equal(waitpid(child, NULL, 0), child);
  assert_int_equal(ct_wait_size(&loop, &s.nmsgs, 1, 5000), 0);
  assert_true(tu_now_ms() - t0 < 3000);
  assert_string_equal(s.msgs[0].topic, "will/child");
  assert_string_equal(s.msgs[0].payload, "gone");
  assert_int_equal(s.msgs[0].qos, 1);
  tu_run_for(&loop, 100);
  assert_int_equal(s.nmsgs, 1);
  /* The control for run_no_will_on_clean's log check. */
  assert_true(tu_broker_log_contains(b, "as uvmqtt-"));
  assert_true(tu_broker_log_contains(b, "closed its connection"));
  ct_close(&s);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&s);
}

static void will_on_kill_v311(void **state) {
  (void)state;
  run_will_on_kill(UVMQTT_V311);
}
static void will_on_kill_v5(void **state) {
  (void)state;
  run_will_on_kill(UVMQTT_V5);
}

/* No will after a clean disconnect or a close, in the same process. The
 * broker is asked to show any will: a marker sent after the end arrives,
 * the will does not. */
static void run_no_will_on_clean(int version, bool use_close) {
  tu_broker_t *b;
  uv_loop_t loop;
  ct_client_t s, w;
  b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(version, NULL, true);
  ct_client_init(&s, &loop, o, "watcher");
  assert_int_equal(uvmqtt_options_set_will(o, "will/w", "gone", 4, 1, false),
                   0);
  ct_client_init(&w, &loop, o, "willer");
  uvmqtt_options_del(o);
  ct_connect(&s, b->port);
  ct_wait_connected(&s, 1);
  ct_subscribe(&s, "will/#", 1);
  ct_connect(&w, b->port);
  ct_wait_connected(&w, 1);
  char closed_line[128], clean_line[128];
  snprintf(closed_line, sizeof(closed_line), "Client %s closed its connection",
           uvmqtt_client_get_client_id(w.c));
  snprintf(clean_line, sizeof(clean_line), "Client %s disconnected.",
           uvmqtt_client_get_client_id(w.c));
  if (use_close) {
    ct_close(&w);
  } else {
    assert_int_equal(uvmqtt_client_disconnect(w.c), 0);
    assert_int_equal(ct_wait_int(&loop, &w.disconnects, 1, CT_WAIT_MS), 0);
    assert_int_equal(w.last_disconnect_status, 0);
  }
  /* mosquitto logs the client's DISCONNECT before closing it. */
  tu_run_for(&loop, 500);
  assert_int_equal(s.nmsgs, 0);
  assert_true(tu_broker_log_contains(b, clean_line));
  assert_false(tu_broker_log_contains(b, closed_line));
  if (!use_close)
    ct_close(&w);
  ct_close(&s);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&s);
  ct_client_free(&w);
}

static void no_will_disconnect_v311(void **state) {
  (void)state;
  run_no_will_on_clean(UVMQTT_V311, false);
}
static void no_will_close_v311(void **state) {
  (void)state;
  run_no_will_on_clean(UVMQTT_V311, true);
}
static void no_will_close_v5(void **state) {
  (void)state;
  run_no_will_on_clean(UVMQTT_V5, true);
}

/* ---- session loss -------------------------------------------------------- */

/* A broker restart WITHOUT persistence while QoS 1 and QoS 2 messages are in
 * flight: the QoS 1 ones are sent again as new messages and delivered; the
 * QoS 2 ones complete with UVMQTT_ESESSION (src/session.h). */
static void run_session_loss(int version) {
  tu_broker_t *b;
  uv_loop_t loop;
  ct_client_t s, p;
  ct_pub_t q1[4], q2[4];
  char id[64];
  b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&loop), 0);
  snprintf(id, sizeof(id), "sl-pub-%d", version);
  uvmqtt_options_t *o = ct_opts(version, id, false);
  assert_int_equal(uvmqtt_options_set_max_inflight(o, 10), 0);
  /* The test reconnects it by hand, once the subscriber is back. */
  assert_int_equal(uvmqtt_options_set_reconnect(o, false, 0, 0, 0), 0);
  ct_client_init(&p, &loop, o, "pub");
  uvmqtt_options_del(o);
  ct_connect(&p, b->port);
  ct_wait_connected(&p, 1);

  /* Freeze the broker: what we send now stays unacknowledged. */
  assert_int_equal(kill(b->pid, SIGSTOP), 0);
  memset(q1, 0, sizeof(q1));
  memset(q2, 0, sizeof(q2));
  for (int i = 0; i < 4; i++) {
    char payload[16];
    int n = snprintf(payload, sizeof(payload), "q1-%d", i);
    assert_true(uvmqtt_publish(p.c, "sl/x", payload, (size_t)n, 1, false,
                               ct_pub_cb, &q1[i]) > 0);
    n = snprintf(payload, sizeof(payload), "q2-%d", i);
    assert_true(uvmqtt_publish(p.c, "sl/x", payload, (size_t)n, 2, false,
                               ct_pub_cb, &q2[i]) > 0);
  }
  tu_run_for(&loop, 100);
  assert_int_equal(uvmqtt_client_get_inflight(p.c), 8);
  tu_broker_kill(b); /* SIGKILL works on a stopped process */
  assert_int_equal(ct_wait_int(&loop, &p.disconnects, 1, 3000), 0);
  assert_true(p.last_disconnect_status < 0);
  for (int i = 0; i < 4; i++)
    assert_int_equal(q1[i].calls + q2[i].calls, 0);

  assert_int_equal(tu_broker_restart(b), 0);
  o = ct_opts(version, NULL, true);
  ct_client_init(&s, &loop, o, "sub");
  uvmqtt_options_del(o);
  ct_connect(&s, b->port);
  ct_wait_connected(&s, 1);
  ct_subscribe(&s, "sl/#", 2);

  ct_connect(&p, b->port);
  ct_wait_connected(&p, 2);
  assert_false(p.session_present);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(ct_wait_int(&loop, &q1[i].calls, 1, CT_WAIT_MS), 0);
    assert_int_equal(ct_wait_int(&loop, &q2[i].calls, 1, CT_WAIT_MS), 0);
  }
  assert_int_equal(ct_wait_size(&loop, &s.nmsgs, 4, CT_WAIT_MS), 0);
  tu_run_for(&loop, 200);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(q1[i].calls, 1);
    assert_int_equal(q1[i].status, 0);
    assert_int_equal(q2[i].calls, 1);
    assert_int_equal(q2[i].status, UVMQTT_ESESSION);
  }
  /* Only the QoS 1 messages, in order, not re-sent as duplicates. */
  assert_int_equal(s.nmsgs, 4);
  for (int i = 0; i < 4; i++) {
    char want[16];
    snprintf(want, sizeof(want), "q1-%d", i);
    assert_string_equal(s.msgs[i].payload, want);
    assert_false(s.msgs[i].dup);
  }
  assert_int_equal(uvmqtt_client_get_inflight(p.c), 0);
  ct_close(&s);
  ct_close(&p);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&s);
  ct_client_free(&p);
}

static void session_loss_v311(void **state) {
  (void)state;
  run_session_loss(UVMQTT_V311);
}
static void session_loss_v5(void **state) {
  (void)state;
  run_session_loss(UVMQTT_V5);
}

static const struct CMUnitTest tests[] = {
    CT_TEST(persistent_v311),         CT_TEST(persistent_v5),
    CT_TEST(will_on_kill_v311),       CT_TEST(will_on_kill_v5),
    CT_TEST(no_will_disconnect_v311), CT_TEST(no_will_close_v311),
    CT_TEST(no_will_close_v5),        CT_TEST(session_loss_v311),
    CT_TEST(session_loss_v5),
};

CT_MAIN(tests)
