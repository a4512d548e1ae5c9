/* QoS 0/1/2 both ways in MQTT 3.1, 3.1.1 and 5.0 against mosquitto: a
 * publisher client and a subscriber client; every message arrives exactly
 * once, in order, with its payload and QoS, and every publish callback
 * fires exactly once with status 0. */
#include "ctest.h"

#define N 60

static void run_qos(int version, int qos) {
  tu_broker_t *b;
  uv_loop_t loop;
  ct_client_t sub, pub;
  ct_pub_t done[N];
  int ids[N];
  char topic[64];

  b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&loop), 0);

  uvmqtt_options_t *o = ct_opts(version, NULL, true);
  /* mosquitto 2.0.11 loses QoS 2 beyond its max_inflight_messages (20). */
  assert_int_equal(uvmqtt_options_set_max_inflight(o, 10), 0);
  ct_client_init(&sub, &loop, o, "sub");
  ct_client_init(&pub, &loop, o, "pub");
  uvmqtt_options_del(o);

  ct_connect(&sub, b->port);
  ct_connect(&pub, b->port);
  ct_wait_connected(&sub, 1);
  ct_wait_connected(&pub, 1);
  assert_false(sub.session_present);
  snprintf(topic, sizeof(topic), "qos/v%d/q%d", version, qos);
  ct_subscribe(&sub, topic, qos);

  memset(done, 0, sizeof(done));
  for (int i = 0; i < N; i++) {
    char payload[64];
    int len =
        snprintf(payload, sizeof(payload), "msg-%d-v%d-q%d", i, version, qos);
    ids[i] = uvmqtt_publish(pub.c, topic, payload, (size_t)len, qos, false,
                            ct_pub_cb, &done[i]);
    if (qos == 0)
      assert_int_equal(ids[i], 0);
    else
      assert_true(ids[i] > 0);
  }
  /* The window bounds what is in flight at once. */
  if (qos > 0)
    assert_true(uvmqtt_client_get_inflight(pub.c) <= 10);

  assert_int_equal(ct_wait_size(&loop, &sub.nmsgs, N, CT_WAIT_MS), 0);
  /* Let duplicates, if any, show up. */
  tu_run_for(&loop, 200);
  assert_int_equal(sub.nmsgs, N);
  for (int i = 0; i < N; i++) {
    char want[64];
    snprintf(want, sizeof(want), "msg-%d-v%d-q%d", i, version, qos);
    assert_string_equal(sub.msgs[i].topic, topic);
    assert_string_equal(sub.msgs[i].payload, want);
    assert_int_equal(sub.msgs[i].payload_len, strlen(want));
    assert_int_equal(sub.msgs[i].qos, qos);
    assert_false(sub.msgs[i].retain);
    assert_false(sub.msgs[i].dup);
    assert_false(sub.msgs[i].has_sub_id);
  }
  for (int i = 0; i < N; i++) {
    assert_int_equal(done[i].calls, 1);
    assert_int_equal(done[i].status, 0);
    assert_int_equal(done[i].id, ids[i]);
  }
  assert_int_equal(uvmqtt_client_get_inflight(pub.c), 0);
  assert_int_equal(uvmqtt_client_get_queued(pub.c), 0);
  /* QoS 1/2 ids are distinct among those in flight together. */
  if (qos > 0)
    for (int i = 1; i < N; i++)
      assert_int_not_equal(ids[i], ids[i - 1]);

  ct_close(&sub);
  ct_close(&pub);
  /* Nothing fired twice during close. */
  for (int i = 0; i < N; i++)
    assert_int_equal(done[i].calls, 1);
  assert_int_equal(sub.disconnects + pub.disconnects, 0);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&sub);
  ct_client_free(&pub);
}

#define QOS_TEST(v, vname, q)                                                  \
  static void qos_##vname##_q##q(void **state) {                               \
    (void)state;                                                               \
    run_qos(v, q);                                                             \
  }
QOS_TEST(UVMQTT_V31, v31, 0)
QOS_TEST(UVMQTT_V31, v31, 1)
QOS_TEST(UVMQTT_V31, v31, 2)
QOS_TEST(UVMQTT_V311, v311, 0)
QOS_TEST(UVMQTT_V311, v311, 1)
QOS_TEST(UVMQTT_V311, v311, 2)
QOS_TEST(UVMQTT_V5, v5, 0)
QOS_TEST(UVMQTT_V5, v5, 1)
QOS_TEST(UVMQTT_V5, v5, 2)

/* A subscription at a lower QoS than the publish downgrades delivery; one
 * at a higher QoS does not upgrade it. */
static void qos_downgrade(void **state) {
  tu_broker_t *b;
  uv_loop_t loop;
  ct_client_t sub, pub;
  ct_pub_t done[3];
  (void)state;
  b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, NULL, true);
  ct_client_init(&sub, &loop, o, "sub");
  ct_client_init(&pub, &loop, o, "pub");
  uvmqtt_options_del(o);
  ct_connect(&sub, b->port);
  ct_connect(&pub, b->port);
  ct_wait_connected(&sub, 1);
  ct_wait_connected(&pub, 1);
  ct_subscribe(&sub, "dg/one", 1);
  memset(done, 0, sizeof(done));
  assert_true(uvmqtt_publish(pub.c, "dg/one", "a", 1, 2, false, ct_pub_cb,
                             &done[0]) > 0);
  assert_int_equal(
      uvmqtt_publish(pub.c, "dg/one", "b", 1, 0, false, ct_pub_cb, &done[1]),
      0);
  assert_int_equal(ct_wait_size(&loop, &sub.nmsgs, 2, CT_WAIT_MS), 0);
  /* mosquitto forwards a QoS 2 message on PUBREL, so order may differ. */
  for (int i = 0; i < 2; i++)
    assert_int_equal(sub.msgs[i].qos,
                     strcmp(sub.msgs[i].payload, "a") == 0 ? 1 : 0);
  assert_string_not_equal(sub.msgs[0].payload, sub.msgs[1].payload);
  assert_int_equal(ct_wait_int(&loop, &done[0].calls, 1, CT_WAIT_MS), 0);
  assert_int_equal(done[0].calls, 1);
  assert_int_equal(done[0].status, 0);
  ct_close(&sub);
  ct_close(&pub);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&sub);
  ct_client_free(&pub);
}

static const struct CMUnitTest tests[] = {
    CT_TEST(qos_v31_q0),    CT_TEST(qos_v31_q1),  CT_TEST(qos_v31_q2),
    CT_TEST(qos_v311_q0),   CT_TEST(qos_v311_q1), CT_TEST(qos_v311_q2),
    CT_TEST(qos_v5_q0),     CT_TEST(qos_v5_q1),   CT_TEST(qos_v5_q2),
    CT_TEST(qos_downgrade),
};

CT_MAIN(tests)
