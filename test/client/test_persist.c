/* Clients with a store against mosquitto: messages published while offline
 * survive the client and the store being closed and are delivered by the
 * next "process" (a new client on the reopened store) exactly once; the
 * store is clean afterwards; the identity of a stored session is checked
 * (protocol version at creation, broker at connect). */
#include "ctest.h"

#include <unistd.h>

static char dir[256];
static char path[320];

static int store_closed;
static void on_store_closed(uvmqtt_store_t *s, void *arg) {
  (void)s;
  (void)arg;
  store_closed++;
}

static int store_opened;
static void on_store_opened(uvmqtt_store_t *s, int status,
                            const uvmqtt_store_report_t *r, void *arg) {
  (void)r;
  assert_int_equal(status, 0);
  *(uvmqtt_store_t **)arg = s;
  store_opened++;
}

static uvmqtt_store_t *store_open(uv_loop_t *loop) {
  uvmqtt_store_t *s = NULL;
  store_opened = 0;
  assert_int_equal(uvmqtt_store_open(loop, path, NULL, on_store_opened, &s), 0);
  assert_int_equal(ct_wait_int(loop, &store_opened, 1, CT_WAIT_MS), 0);
  return s;
}

static void store_close(uv_loop_t *loop, uvmqtt_store_t *s) {
  store_closed = 0;
  assert_int_equal(uvmqtt_store_close(s, on_store_closed, NULL), 0);
  assert_int_equal(ct_wait_int(loop, &store_closed, 1, CT_WAIT_MS), 0);
}

static int stored_ok, stored_fail, restored_ok, restored_fail;
static uint16_t stored_last;
static void on_stored(uvmqtt_client_t *c, int status, uint16_t id, void *arg) {
  (void)c;
  (void)arg;
  if (status == 0) {
    stored_ok++;
    assert_true(id > stored_last); /* in publish order */
    stored_last = id;
  } else {
    stored_fail++;
  }
}

static void on_restored_done(uvmqtt_client_t *c, const uvmqtt_pub_result_t *r,
                             void *arg) {
  (void)c;
  (void)arg;
  if (r->status == 0)
    restored_ok++;
  else
    restored_fail++;
}

typedef struct {
  int n;
  char topics[32][16];
  int states[32];
  uint8_t qos[32];
} listing_t;

static void on_listed(uvmqtt_client_t *c, const uvmqtt_publish_t *pub,
                      int state, void *arg) {
  listing_t *l = arg;
  (void)c;
  assert_true(l->n < 32);
  snprintf(l->topics[l->n], sizeof(l->topics[0]), "%.*s", (int)pub->topic.len,
           pub->topic.data);
  l->states[l->n] = state;
  l->qos[l->n] = pub->qos;
  l->n++;
}

static uvmqtt_options_t *pub_opts(int version, uvmqtt_store_t *s) {
  uvmqtt_options_t *o = ct_opts(version, "persist-pub", false);
  assert_int_equal(uvmqtt_options_set_store(o, s, UVMQTT_DURABLE_POWER), 0);
  return o;
}

/* Published while the broker is unreachable, kept through a close of the
 * client and of the store, delivered by the next client on the reopened
 * store: each message once, completions through on_restored_done. */
static void run_restart_queued(int version) {
  tu_broker_t *b = ct_broker(NULL);
  uv_loop_t loop;
  ct_client_t sub, pub;
  ct_pub_t done[20];
  assert_int_equal(tu_tmpdir(dir, sizeof dir), 0);
  snprintf(path, sizeof path, "%s/store", dir);
  assert_int_equal(uv_loop_init(&loop), 0);

  uvmqtt_options_t *o = ct_opts(version, "persist-sub", false);
  ct_client_init(&sub, &loop, o, "sub");
  uvmqtt_options_del(o);
  ct_connect(&sub, b->port);
  ct_wait_connected(&sub, 1);
  ct_subscribe(&sub, "pq/#", 2);

  /* First "process": never connected. */
  uvmqtt_store_t *s = store_open(&loop);
  o = pub_opts(version, s);
  ct_client_init(&pub, &loop, o, "pub");
  uvmqtt_options_del(o);
  assert_int_equal(uvmqtt_client_restored(pub.c, NULL, NULL), 0);
  stored_ok = stored_fail = 0;
  stored_last = 0;
  assert_int_equal(uvmqtt_client_on_stored(pub.c, on_stored, NULL), 0);
  memset(done, 0, sizeof done);
  for (int i = 0; i < 20; i++) {
    char topic[16], payload[16];
    snprintf(topic, sizeof topic, "pq/%02d", i);
    int n = snprintf(payload, sizeof payload, "m%d", i);
    assert_true(uvmqtt_publish(pub.c, topic, payload, (size_t)n, 1 + (i & 1),
                               false, ct_pub_cb, &done[i]) > 0);
  }
  assert_int_equal(stored_ok, 0); /* never from inside publish */
  assert_int_equal(ct_wait_int(&loop, &stored_ok, 20, CT_WAIT_MS), 0);
  assert_int_equal(stored_fail, 0);
  ct_close(&pub);
  for (int i = 0; i < 20; i++) /* this process will not learn more */
    assert_int_equal(done[i].status, UVMQTT_ECLOSED);
  ct_client_free(&pub);
  store_close(&loop, s);

  /* Second "process": the store reopened, the same client id. */
  s = store_open(&loop);
  o = pub_opts(version, s);
  ct_client_init(&pub, &loop, o, "pub2");
  uvmqtt_options_del(o);
  listing_t l;
  memset(&l, 0, sizeof l);
  assert_int_equal(uvmqtt_client_restored(pub.c, on_listed, &l), 20);
  for (int i = 0; i < 20; i++) {
    char want[16];
    snprintf(want, sizeof want, "pq/%02d", i);
    assert_string_equal(l.topics[i], want);
    assert_int_equal(l.states[i], 0);
    assert_int_equal(l.qos[i], 1 + (i & 1));
  }
  restored_ok = restored_fail = 0;
  assert_int_equal(
      uvmqtt_client_on_restored_done(pub.c, on_restored_done, NULL), 0);
  ct_connect(&pub, b->port);
  assert_int_equal(ct_wait_int(&loop, &restored_ok, 20, CT_WAIT_MS), 0);
  assert_int_equal(restored_fail, 0);
  assert_int_equal(ct_wait_size(&loop, &sub.nmsgs, 20, CT_WAIT_MS), 0);
  tu_run_for(&loop, 200);
  assert_int_equal(sub.nmsgs, 20); /* once each (QoS 1 and 2 interleave) */
  int seen[20] = {0};
  for (size_t i = 0; i < sub.nmsgs; i++) {
    int k = atoi(sub.msgs[i].payload + 1);
    assert_true(k >= 0 && k < 20);
    seen[k]++;
  }
  for (int i = 0; i < 20; i++)
    assert_int_equal(seen[i], 1);
  ct_close(&pub);
  ct_client_free(&pub);
  store_close(&loop, s);

  /* Third: nothing left. */
  s = store_open(&loop);
  o = pub_opts(version, s);
  ct_client_init(&pub, &loop, o, "pub3");
  uvmqtt_options_del(o);
  assert_int_equal(uvmqtt_client_restored(pub.c, NULL, NULL), 0);
  ct_close(&pub);
  ct_client_free(&pub);
  store_close(&loop, s);

  ct_close(&sub);
  ct_client_free(&sub);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  tu_rmtree(dir);
}

static void persist_restart_queued_v311(void **state) {
  (void)state;
  run_restart_queued(UVMQTT_V311);
}

static void persist_restart_queued_v5(void **state) {
  (void)state;
  run_restart_queued(UVMQTT_V5);
}

/* Records of a v3.1.1 session are not taken by a v5 client, nor sent to
 * another broker than the one they were meant for. */
static void persist_identity(void **state) {
  (void)state;
  tu_broker_t *b = ct_broker(NULL);
  uv_loop_t loop;
  ct_client_t pub;
  uvmqtt_client_t *c = NULL;
  assert_int_equal(tu_tmpdir(dir, sizeof dir), 0);
  snprintf(path, sizeof path, "%s/store", dir);
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_store_t *s = store_open(&loop);
  uvmqtt_options_t *o = pub_opts(UVMQTT_V311, s);
  ct_client_init(&pub, &loop, o, "pub");
  ct_connect(&pub, b->port);
  ct_wait_connected(&pub, 1);
  ct_close(&pub);
  ct_client_free(&pub);
  /* No client id of its own: refused (nobody could take the session back). */
  uvmqtt_options_t *anon = ct_opts(UVMQTT_V311, NULL, true);
  assert_int_equal(uvmqtt_options_set_store(anon, s, UVMQTT_DURABLE_PROCESS),
                   0);
  assert_int_equal(uvmqtt_client_new(&loop, anon, &c), UVMQTT_ECLIENTID);
  assert_int_equal(uvmqtt_options_set_store(anon, s, 7), UVMQTT_EINVAL);
  uvmqtt_options_del(anon);
  /* Record first needs a store and automatic acknowledgement. */
  uvmqtt_options_t *rf = ct_opts(UVMQTT_V311, "rf", false);
  assert_int_equal(uvmqtt_options_set_record_first(NULL, true), UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_options_set_record_first(rf, true), 0);
  assert_int_equal(uvmqtt_client_new(&loop, rf, &c), UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_options_set_store(rf, s, UVMQTT_DURABLE_PROCESS), 0);
  assert_int_equal(uvmqtt_options_set_manual_ack(rf, true, 0, 0), 0);
  assert_int_equal(uvmqtt_client_new(&loop, rf, &c), UVMQTT_EINVAL);
  uvmqtt_options_del(rf);
  /* Same id, same store, v5: refused at creation. */
  uvmqtt_options_t *o5 = pub_opts(UVMQTT_V5, s);
  assert_int_equal(uvmqtt_client_new(&loop, o5, &c), UVMQTT_ESTORE_IDENTITY);
  uvmqtt_options_del(o5);
  /* Same version, another broker: refused at connect. */
  ct_client_init(&pub, &loop, o, "pub");
  uvmqtt_options_del(o);
  int other = tu_free_port();
  assert_int_equal(uvmqtt_client_connect(pub.c, "127.0.0.1", other),
                   UVMQTT_ESTORE_IDENTITY);
  assert_int_equal(uvmqtt_client_connect(pub.c, "127.0.0.1", b->port), 0);
  ct_wait_connected(&pub, 1);
  ct_close(&pub);
  ct_client_free(&pub);
  /* A store can only close once its clients have. */
  store_close(&loop, s);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  tu_rmtree(dir);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      CT_TEST(persist_restart_queued_v311),
      CT_TEST(persist_restart_queued_v5),
      CT_TEST(persist_identity),
  };
  if (argc > 1)
    cmocka_set_test_filter(argv[1]);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
