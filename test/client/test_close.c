/* Closing with work pending, closing from inside callbacks, and the
 * outgoing queue limits. */
#include "ctest.h"

static const uint8_t CONNACK_OK[] = {0x20, 0x02, 0x00, 0x00};

/* A peer that answers CONNACK and nothing else keeps every QoS 1/2 publish
 * in flight and every SUBSCRIBE pending; close cancels them all, each
 * callback exactly once with UVMQTT_ECLOSED, before the close callback. */
static void run_close_pending(int version) {
  uv_loop_t loop;
  ct_peer_t p;
  ct_client_t t;
  ct_pub_t pubs[40];
  ct_sub_t subs[2];
  assert_int_equal(uv_loop_init(&loop), 0);
  ct_peer_start(&loop, &p, CONNACK_OK, sizeof(CONNACK_OK));
  if (version == UVMQTT_V5) {
    static const uint8_t v5[] = {0x20, 0x03, 0x00, 0x00, 0x00};
    p.script = v5;
    p.script_len = sizeof(v5);
  }
  uvmqtt_options_t *o = ct_opts(version, "closer", true);
  assert_int_equal(uvmqtt_options_set_max_inflight(o, 5), 0);
  ct_client_init(&t, &loop, o, "closer");
  uvmqtt_options_del(o);
  ct_connect(&t, p.port);
  ct_wait_connected(&t, 1);

  memset(pubs, 0, sizeof(pubs));
  memset(subs, 0, sizeof(subs));
  for (int i = 0; i < 40; i++) {
    int qos = i % 3;
    int rc =
        uvmqtt_publish(t.c, "c/p", "x", 1, qos, false, ct_pub_cb, &pubs[i]);
    assert_true(qos ? rc > 0 : rc == 0);
  }
  assert_true(uvmqtt_subscribe(t.c, "c/#", 1, ct_sub_cb, &subs[0]) > 0);
  const char *f = "c/+";
  assert_true(uvmqtt_unsubscribe_many(t.c, &f, 1, NULL, ct_sub_cb, &subs[1]) >
              0);
  /* Let it all be written; the peer acknowledges nothing. */
  tu_run_for(&loop, 150);
  assert_int_equal(uvmqtt_client_get_inflight(t.c), 5);
  assert_true(uvmqtt_client_get_queued(t.c) > 0);
  for (int i = 0; i < 40; i++)
    if (i % 3)
      assert_int_equal(pubs[i].calls, 0);
  assert_int_equal(subs[0].calls + subs[1].calls, 0);

  ct_close(&t);
  for (int i = 0; i < 40; i++) {
    assert_int_equal(pubs[i].calls, 1);
    assert_false(pubs[i].after_close);
    /* QoS 0 before the window filled up (at message 8) was written; the
     * rest waited in the queue behind QoS 1/2 messages. */
    if (i % 3 == 0 && i < 8)
      assert_int_equal(pubs[i].status, 0);
    else
      assert_int_equal(pubs[i].status, UVMQTT_ECLOSED);
  }
  for (int i = 0; i < 2; i++) {
    assert_int_equal(subs[i].calls, 1);
    assert_int_equal(subs[i].status, UVMQTT_ECLOSED);
    assert_int_equal(subs[i].count, 0);
  }
  /* After close: nothing is accepted; a second close is a no-op. */
  assert_int_equal(p.client_eof, 1);
  ct_peer_stop(&p);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
}

static void close_pending_v311(void **state) {
  (void)state;
  run_close_pending(UVMQTT_V311);
}
static void close_pending_v5(void **state) {
  (void)state;
  run_close_pending(UVMQTT_V5);
}

/* Close before connecting, while publishes wait in the queue. */
static void close_queued_offline(void **state) {
  uv_loop_t loop;
  ct_client_t t;
  ct_pub_t pubs[6];
  (void)state;
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, NULL, true);
  ct_client_init(&t, &loop, o, "offline");
  uvmqtt_options_del(o);
  memset(pubs, 0, sizeof(pubs));
  for (int i = 0; i < 6; i++)
    assert_true(uvmqtt_publish(t.c, "q", "x", 1, i % 3, false, ct_pub_cb,
                               &pubs[i]) >= 0);
  assert_int_equal(uvmqtt_client_get_queued(t.c), 6);
  /* Subscribe and unsubscribe queue too, and are cancelled with them. */
  ct_sub_t subs[3];
  memset(subs, 0, sizeof(subs));
  assert_int_equal(uvmqtt_subscribe(t.c, "q", 0, ct_sub_cb, &subs[0]), 0);
  assert_int_equal(uvmqtt_subscribe(t.c, "q", 0, ct_sub_cb, &subs[1]), 0);
  assert_int_equal(uvmqtt_unsubscribe(t.c, "r", ct_sub_cb, &subs[2]), 0);
  assert_int_equal(subs[0].calls + subs[1].calls + subs[2].calls, 0);
  ct_close(&t);
  for (int i = 0; i < 6; i++) {
    assert_int_equal(pubs[i].calls, 1);
    assert_int_equal(pubs[i].status, UVMQTT_ECLOSED);
  }
  for (int i = 0; i < 3; i++) {
    assert_int_equal(subs[i].calls, 1);
    assert_int_equal(subs[i].status, UVMQTT_ECLOSED);
  }
  assert_int_equal(t.connects + t.disconnects, 0);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
}

/* Close while the TCP connect / MQTT handshake is in progress. */
static void close_while_connecting(void **state) {
  uv_loop_t loop;
  ct_peer_t p;
  ct_client_t t;
  ct_pub_t pub;
  (void)state;
  assert_int_equal(uv_loop_init(&loop), 0);
  ct_peer_start(&loop, &p, NULL, 0); /* never answers */
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, NULL, true);
  ct_client_init(&t, &loop, o, "connecting");
  uvmqtt_options_del(o);
  ct_connect(&t, p.port);
  memset(&pub, 0, sizeof(pub));
  assert_true(uvmqtt_publish(t.c, "q", "x", 1, 1, false, ct_pub_cb, &pub) > 0);
  assert_int_equal(ct_peer_wait_rx(&loop, &p, 1, 3000), 0); /* CONNECT */
  ct_close(&t);
  assert_int_equal(pub.calls, 1);
  assert_int_equal(pub.status, UVMQTT_ECLOSED);
  assert_int_equal(t.connected, 0);
  /* A connect callback, if any, does not claim success. */
  if (t.connects)
    assert_true(t.last_connect_status < 0);
  ct_peer_stop(&p);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
}

/* ---- close from inside callbacks --------------------------------------- */

/* Close from inside the message callback: the close callback fires, no
 * message callback comes after the close was asked for, every publish
 * callback fires once. */
static void close_in_message(void **state) {
  tu_broker_t *b;
  uv_loop_t loop;
  ct_client_t t;
  ct_pub_t pubs[20];
  (void)state;
  b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, NULL, true);
  ct_client_init(&t, &loop, o, "cim");
  uvmqtt_options_del(o);
  ct_connect(&t, b->port);
  ct_wait_connected(&t, 1);
  ct_subscribe(&t, "cim", 1);
  memset(pubs, 0, sizeof(pubs));
  t.close_in_message = true;
  for (int i = 0; i < 20; i++)
    assert_true(
        uvmqtt_publish(t.c, "cim", "x", 1, 1, false, ct_pub_cb, &pubs[i]) > 0);
  /* ct_client_t's on_message calls uvmqtt_client_close(c, NULL). */
  assert_int_equal(ct_wait_size(&loop, &t.nmsgs, 1, CT_WAIT_MS), 0);
  assert_true(t.close_asked);
  assert_int_equal(tu_loop_close(&loop, 3000), 0);
  for (int i = 0; i < 20; i++) {
    assert_int_equal(pubs[i].calls, 1);
    assert_true(pubs[i].status == 0 || pubs[i].status == UVMQTT_ECLOSED);
  }
  assert_int_equal(t.msgs_after_close, 0);
  ct_client_free(&t);
}

typedef struct {
  int calls[10];
  int status[10];
  int closed;
} cip_t;

static cip_t *CIP;

static void cip_closed(uvmqtt_client_t *c) {
  (void)c;
  CIP->closed++;
}

static void cip_pub(uvmqtt_client_t *c, const uvmqtt_pub_result_t *res,
                    void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  int i = (int)(intptr_t)arg;
  (void)id;
  assert_int_equal(CIP->closed, 0);
  CIP->calls[i]++;
  CIP->status[i] = status;
  if (i == 0) {
    uvmqtt_client_close(c, cip_closed);
    uvmqtt_client_close(c, cip_closed); /* a no-op */
    /* The client refuses new work once closing. */
    assert_int_equal(uvmqtt_publish(c, "cip", "y", 1, 1, false, NULL, NULL),
                     UVMQTT_ECLOSED);
  }
}

/* Close from inside a publish callback: with one message in flight at a
 * time, the first completes with 0 and closes, the others are cancelled. */
static void close_in_publish(void **state) {
  tu_broker_t *b;
  uv_loop_t loop;
  ct_client_t t;
  cip_t cip;
  (void)state;
  memset(&cip, 0, sizeof(cip));
  CIP = &cip;
  b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, NULL, true);
  assert_int_equal(uvmqtt_options_set_max_inflight(o, 1), 0);
  ct_client_init(&t, &loop, o, "cip");
  uvmqtt_options_del(o);
  ct_connect(&t, b->port);
  ct_wait_connected(&t, 1);
  for (int i = 0; i < 10; i++)
    assert_true(uvmqtt_publish(t.c, "cip", "x", 1, 1 + i % 2, false, cip_pub,
                               (void *)(intptr_t)i) > 0);
  assert_int_equal(ct_wait_int(&loop, &cip.closed, 1, CT_WAIT_MS), 0);
  assert_int_equal(tu_loop_close(&loop, 3000), 0);
  assert_int_equal(cip.closed, 1);
  assert_int_equal(cip.calls[0], 1);
  assert_int_equal(cip.status[0], 0);
  for (int i = 1; i < 10; i++) {
    assert_int_equal(cip.calls[i], 1);
    assert_int_equal(cip.status[i], UVMQTT_ECLOSED);
  }
  ct_client_free(&t);
}

/* ---- queue limits ---------------------------------------------------------
 */

/* REFUSE_NEW by count and by bytes while disconnected; then connect and the
 * queued messages are delivered. */
static void queue_refuse(void **state) {
  tu_broker_t *b;
  uv_loop_t loop;
  ct_client_t t, s;
  ct_pub_t pubs[8];
  (void)state;
  b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, NULL, true);
  ct_client_init(&s, &loop, o, "sub");
  /* Three messages, or 30 bytes of topic + payload. */
  assert_int_equal(
      uvmqtt_options_set_max_queued(o, 3, 30, UVMQTT_QUEUE_REFUSE_NEW), 0);
  ct_client_init(&t, &loop, o, "pub");
  uvmqtt_options_del(o);
  ct_connect(&s, b->port);
  ct_wait_connected(&s, 1);
  ct_subscribe(&s, "qr", 2);

  memset(pubs, 0, sizeof(pubs));
  /* 2 + 8 = 10 bytes each: three fit by both limits. */
  for (int i = 0; i < 3; i++) {
    char payload[9];
    snprintf(payload, sizeof(payload), "queued-%d", i);
    assert_true(uvmqtt_publish(t.c, "qr", payload, 8, i % 3, false, ct_pub_cb,
                               &pubs[i]) >= 0);
  }
  assert_int_equal(uvmqtt_client_get_queued(t.c), 3);
  assert_int_equal(
      uvmqtt_publish(t.c, "qr", "refused!", 8, 1, false, ct_pub_cb, &pubs[3]),
      UVMQTT_EQUEUEFULL);
  assert_int_equal(uvmqtt_client_get_queued(t.c), 3);
  ct_connect(&t, b->port);
  ct_wait_connected(&t, 1);
  assert_int_equal(ct_wait_size(&loop, &s.nmsgs, 3, CT_WAIT_MS), 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(ct_wait_int(&loop, &pubs[i].calls, 1, CT_WAIT_MS), 0);
  tu_run_for(&loop, 100);
  assert_int_equal(s.nmsgs, 3);
  for (int i = 0; i < 3; i++) {
    char want[16];
    snprintf(want, sizeof(want), "queued-%d", i);
    assert_string_equal(s.msgs[i].payload, want);
    assert_int_equal(s.msgs[i].qos, i % 3);
    assert_int_equal(pubs[i].calls, 1);
    assert_int_equal(pubs[i].status, 0);
  }
  assert_int_equal(pubs[3].calls, 0); /* refused: never fires */

  /* The byte limit alone: offline again, 24 + 10 > 30 is refused, 24 + 6
   * fits exactly. */
  assert_int_equal(uvmqtt_client_disconnect(t.c), 0);
  assert_int_equal(ct_wait_int(&loop, &t.disconnects, 1, CT_WAIT_MS), 0);
  assert_int_equal(t.last_disconnect_status, 0);
  assert_true(uvmqtt_publish(t.c, "qr", "twenty-two-bytes-long!", 22, 1, false,
                             ct_pub_cb, &pubs[4]) > 0);
  assert_int_equal(
      uvmqtt_publish(t.c, "qr", "eight b!", 8, 1, false, ct_pub_cb, &pubs[5]),
      UVMQTT_EQUEUEFULL);
  assert_true(
      uvmqtt_publish(t.c, "qr", "tiny", 4, 1, false, ct_pub_cb, &pubs[6]) > 0);
  ct_connect(&t, b->port);
  ct_wait_connected(&t, 2);
  assert_int_equal(ct_wait_size(&loop, &s.nmsgs, 5, CT_WAIT_MS), 0);
  assert_string_equal(s.msgs[3].payload, "twenty-two-bytes-long!");
  assert_string_equal(s.msgs[4].payload, "tiny");
  assert_int_equal(ct_wait_int(&loop, &pubs[6].calls, 1, CT_WAIT_MS), 0);
  assert_int_equal(pubs[4].status, 0);
  assert_int_equal(pubs[5].calls, 0);

  ct_close(&t);
  ct_close(&s);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
  ct_client_free(&s);
}

/* DROP_OLDEST: the oldest queued messages complete with UVMQTT_EDROPPED,
 * the newest are delivered once connected. */
static void queue_drop_oldest(void **state) {
  tu_broker_t *b;
  uv_loop_t loop;
  ct_client_t t, s;
  ct_pub_t pubs[8];
  (void)state;
  b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V5, NULL, true);
  ct_client_init(&s, &loop, o, "sub");
  assert_int_equal(
      uvmqtt_options_set_max_queued(o, 3, 0, UVMQTT_QUEUE_DROP_OLDEST), 0);
  ct_client_init(&t, &loop, o, "pub");
  uvmqtt_options_del(o);
  ct_connect(&s, b->port);
  ct_wait_connected(&s, 1);
  ct_subscribe(&s, "qd", 1);
  memset(pubs, 0, sizeof(pubs));
  for (int i = 0; i < 8; i++) {
    char payload[16];
    int n = snprintf(payload, sizeof(payload), "m%d", i);
    assert_true(uvmqtt_publish(t.c, "qd", payload, (size_t)n, i % 2, false,
                               ct_pub_cb, &pubs[i]) >= 0);
    assert_true(uvmqtt_client_get_queued(t.c) <= 3);
  }
  /* Dropped ones completed (possibly from inside publish). */
  tu_run_for(&loop, 20);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(pubs[i].calls, 1);
    assert_int_equal(pubs[i].status, UVMQTT_EDROPPED);
  }
  for (int i = 5; i < 8; i++)
    assert_int_equal(pubs[i].calls, 0);
  ct_connect(&t, b->port);
  ct_wait_connected(&t, 1);
  assert_int_equal(ct_wait_size(&loop, &s.nmsgs, 3, CT_WAIT_MS), 0);
  for (int i = 5; i < 8; i++)
    assert_int_equal(ct_wait_int(&loop, &pubs[i].calls, 1, CT_WAIT_MS), 0);
  tu_run_for(&loop, 100);
  assert_int_equal(s.nmsgs, 3);
  for (int i = 5; i < 8; i++) {
    char want[16];
    snprintf(want, sizeof(want), "m%d", i);
    assert_string_equal(s.msgs[i - 5].payload, want);
    assert_int_equal(pubs[i].calls, 1);
    assert_int_equal(pubs[i].status, 0);
  }
  for (int i = 0; i < 5; i++)
    assert_int_equal(pubs[i].calls, 1);
  ct_close(&t);
  ct_close(&s);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&t);
  ct_client_free(&s);
}

/* The last client on a loop completes its close after the loop's shared
 * handles: its close callback may still ask for its loop, data and id.
 * A request made once closing is refused before it makes a timer. */
typedef struct {
  uv_loop_t *loop;
  int closed;
} late_t;

static void late_closed(uvmqtt_client_t *c) {
  late_t *l = uvmqtt_client_get_data(c);
  assert_ptr_equal(uvmqtt_client_get_loop(c), l->loop);
  assert_string_equal(uvmqtt_client_get_client_id(c), "late-one");
  l->closed++;
}

static void late_response(uvmqtt_client_t *c, int status,
                          const uvmqtt_message_t *m, void *arg) {
  (void)c;
  (void)status;
  (void)m;
  (void)arg;
  fail_msg("a refused request called back");
}

static void close_cb_sees_loop(void **state) {
  uv_loop_t loop;
  uvmqtt_client_t *c;
  late_t l = {&loop, 0};
  (void)state;
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V5, "late-one", true);
  assert_int_equal(uvmqtt_client_new(&loop, o, &c), 0);
  uvmqtt_options_del(o);
  uvmqtt_client_set_data(c, &l);
  uvmqtt_client_close(c, late_closed);
  uvmqtt_publish_opts_t po;
  memset(&po, 0, sizeof(po));
  po.topic = "late/req";
  assert_int_equal(
      uvmqtt_request(c, &po, "late/resp", 1000, late_response, NULL),
      UVMQTT_ECLOSED);
  assert_int_equal(tu_run_until(&loop, &l.closed, 2000), 0);
  assert_int_equal(l.closed, 1);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
}

static const struct CMUnitTest tests[] = {
    CT_TEST(close_pending_v311),   CT_TEST(close_pending_v5),
    CT_TEST(close_queued_offline), CT_TEST(close_while_connecting),
    CT_TEST(close_in_message),     CT_TEST(close_in_publish),
    CT_TEST(queue_refuse),         CT_TEST(queue_drop_oldest),
    CT_TEST(close_cb_sees_loop),
};

CT_MAIN(tests)
