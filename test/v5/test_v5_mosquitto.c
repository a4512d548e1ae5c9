/* MQTT 5 features against a real mosquitto: topic aliases, Receive Maximum
 * (max_inflight_messages), Maximum Packet Size, message expiry in our own
 * queue, shared subscriptions, subscription identifiers,
 * request/response. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"
#include "uvmqtt.h"

#define WAIT_MS 8000

typedef struct {
  uvmqtt_client_t *c;
  int connected;
  int subacks;
  int messages;
  int wrong_topic;
  uint32_t last_sub_id;
  int pub_done, pub_errors, last_pub_status;
  size_t max_inflight;
  int closed;
} peer_t;

static uv_loop_t loop;
static tu_broker_t broker;

static void on_connect(uvmqtt_client_t *c, int status,
                       const uvmqtt_connack_t *ack, void *arg) {
  peer_t *p = arg;
  (void)c;
  (void)ack;
  if (status == 0)
    p->connected++;
}

static void on_message(uvmqtt_client_t *c, const uvmqtt_message_t *m,
                       void *arg) {
  peer_t *p = arg;
  (void)c;
  p->messages++;
  if (m->topic_len != 8 || memcmp(m->topic, "v5/alias", 8) != 0)
    p->wrong_topic++;
  size_t pos = 0;
  uint32_t id;
  if (m->props && uvmqtt_props_next_sub_id(m->props, &pos, &id))
    p->last_sub_id = id;
}

static void on_sub(uvmqtt_client_t *c, const uvmqtt_sub_result_t *res,
                   void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  const uint8_t *codes = res->codes;
  size_t n = res->count;
  const uvmqtt_props_t *props = res->props;
  peer_t *p = arg;
  (void)c;
  (void)id;
  (void)props;
  assert_int_equal(status, 0);
  for (size_t i = 0; i < n; i++)
    assert_true(codes[i] < 0x80);
  p->subacks++;
}

static void on_pub(uvmqtt_client_t *c, const uvmqtt_pub_result_t *res,
                   void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  peer_t *p = arg;
  (void)id;
  p->pub_done++;
  p->last_pub_status = status;
  if (status < 0)
    p->pub_errors++;
  size_t n = uvmqtt_client_get_inflight(c);
  if (n > p->max_inflight)
    p->max_inflight = n;
}

static void on_closed(uvmqtt_client_t *c) {
  peer_t *p = uvmqtt_client_get_data(c);
  p->closed = 1;
}

static void peer_new(peer_t *p, const char *id, uvmqtt_options_t *o) {
  memset(p, 0, sizeof(*p));
  if (!o)
    assert_int_equal(uvmqtt_options_new(&o), 0);
  uvmqtt_options_set_protocol(o, UVMQTT_V5);
  uvmqtt_options_set_client_id(o, id);
  assert_int_equal(uvmqtt_client_new(&loop, o, &p->c), 0);
  uvmqtt_options_del(o);
  uvmqtt_client_set_data(p->c, p);
  uvmqtt_client_on_connect(p->c, on_connect, p);
  uvmqtt_client_on_message(p->c, on_message, p);
}

static void peer_connect(peer_t *p) {
  assert_int_equal(uvmqtt_client_connect(p->c, "127.0.0.1", broker.port), 0);
  assert_int_equal(tu_run_until(&loop, &p->connected, WAIT_MS), 0);
}

static void peer_close(peer_t *p) {
  uvmqtt_client_close(p->c, on_closed);
  assert_int_equal(tu_run_until(&loop, &p->closed, WAIT_MS), 0);
}

static int wait_count(int *counter, int want) {
  uint64_t end = tu_now_ms() + WAIT_MS;
  while (*counter < want && tu_now_ms() < end)
    tu_run_for(&loop, 20);
  return *counter >= want ? 0 : -1;
}

static int setup(void **state) {
  (void)state;
  uv_loop_init(&loop);
  return tu_broker_start(&broker, 0,
                         "max_topic_alias 4\n"
                         "max_inflight_messages 5\n"
                         "max_packet_size 2048\n");
}

static int teardown(void **state) {
  (void)state;
  tu_broker_cleanup(&broker);
  return tu_loop_close(&loop, 3000);
}

static void test_topic_alias_outgoing(void **state) {
  (void)state;
  peer_t sub, pub;
  peer_new(&sub, "v5-alias-sub", NULL);
  peer_connect(&sub);
  assert_true(uvmqtt_subscribe(sub.c, "v5/#", 1, on_sub, &sub) > 0);
  assert_int_equal(wait_count(&sub.subacks, 1), 0);
  uvmqtt_options_t *o;
  uvmqtt_options_new(&o);
  uvmqtt_options_set_topic_alias(o, 0, true);
  peer_new(&pub, "v5-alias-pub", o);
  peer_connect(&pub);
  for (int i = 0; i < 50; i++)
    assert_true(
        uvmqtt_publish(pub.c, "v5/alias", "x", 1, 1, false, on_pub, &pub) > 0);
  assert_int_equal(wait_count(&sub.messages, 50), 0);
  assert_int_equal(wait_count(&pub.pub_done, 50), 0);
  assert_int_equal(pub.pub_errors, 0);
  assert_int_equal(sub.wrong_topic, 0);
  /* mosquitto would have dropped us for an alias it did not know. */
  assert_true(uvmqtt_client_is_connected(pub.c));
  assert_true(tu_broker_log_contains(&broker, "v5-alias-pub"));
  peer_close(&pub);
  peer_close(&sub);
}

static void test_receive_maximum_from_broker(void **state) {
  (void)state;
  peer_t pub;
  uvmqtt_options_t *o;
  uvmqtt_options_new(&o);
  uvmqtt_options_set_max_inflight(o, 100);
  peer_new(&pub, "v5-rm-pub", o);
  peer_connect(&pub);
  for (int i = 0; i < 200; i++) {
    assert_true(uvmqtt_publish(pub.c, "v5/rm", "x", 1, 2, false, on_pub, &pub) >
                0);
    size_t n = uvmqtt_client_get_inflight(pub.c);
    if (n > pub.max_inflight)
      pub.max_inflight = n;
  }
  assert_int_equal(wait_count(&pub.pub_done, 200), 0);
  assert_int_equal(pub.pub_errors, 0);
  assert_true(pub.max_inflight <= 5); /* mosquitto's Receive Maximum */
  assert_true(pub.max_inflight >= 1);
  peer_close(&pub);
}

static void test_maximum_packet_size_from_broker(void **state) {
  (void)state;
  peer_t pub;
  char big[3000];
  memset(big, 'b', sizeof(big));
  peer_new(&pub, "v5-mps-pub", NULL);
  peer_connect(&pub);
  assert_int_equal(
      uvmqtt_publish(pub.c, "v5/mps", big, sizeof(big), 1, false, NULL, NULL),
      UVMQTT_ETOOBIG);
  assert_true(
      uvmqtt_publish(pub.c, "v5/mps", big, 1000, 1, false, on_pub, &pub) > 0);
  assert_int_equal(wait_count(&pub.pub_done, 1), 0);
  assert_int_equal(pub.last_pub_status, 0);
  peer_close(&pub);
}

/* Queued offline, a SUBSCRIBE larger than the broker's Maximum Packet
 * Size cannot go out once connected: it completes with UVMQTT_ETOOBIG,
 * and an identical subscribe waiting for it completes too (0x80: not
 * subscribed), while the request queued after it goes out. */
typedef struct {
  int calls, status;
  uint8_t code;
} big_sub_t;

static void on_big_sub(uvmqtt_client_t *c, const uvmqtt_sub_result_t *res,
                       void *arg) {
  big_sub_t *b = arg;
  (void)c;
  b->calls++;
  b->status = res->status;
  b->code = res->count ? res->codes[0] : 0xff;
}

static void test_queued_subscribe_too_big(void **state) {
  (void)state;
  peer_t p;
  static char filter[2501];
  big_sub_t big, same, small;
  memset(&big, 0, sizeof(big));
  memset(&same, 0, sizeof(same));
  memset(&small, 0, sizeof(small));
  memset(filter, 'f', sizeof(filter) - 1);
  filter[sizeof(filter) - 1] = 0;
  peer_new(&p, "v5-big-sub", NULL);
  assert_int_equal(uvmqtt_subscribe(p.c, filter, 1, on_big_sub, &big), 0);
  assert_int_equal(uvmqtt_subscribe(p.c, filter, 1, on_big_sub, &same), 0);
  assert_int_equal(uvmqtt_subscribe(p.c, "v5/small", 1, on_big_sub, &small), 0);
  peer_connect(&p);
  assert_int_equal(wait_count(&small.calls, 1), 0);
  assert_int_equal(small.status, 0);
  assert_int_equal(small.code, 1);
  assert_int_equal(big.calls, 1);
  assert_int_equal(big.status, UVMQTT_ETOOBIG);
  assert_int_equal(same.calls, 1);
  assert_int_equal(same.status, 0);
  assert_int_equal(same.code, 0x80);
  /* Not held: subscribing again sends (and fails) again. */
  assert_int_equal(uvmqtt_subscribe(p.c, filter, 1, on_big_sub, &same),
                   UVMQTT_ETOOBIG);
  peer_close(&p);
}

/* A subscribe with other options for an active filter that cannot go
 * out (larger than the broker's Maximum Packet Size, with another filter)
 * fails in the call, and the active subscription stays held as it was:
 * the broker still has it, and it is re-subscribed after a session loss.
 * An identical subscribe completes at once with its grant. */
static void test_failed_subscribe_keeps_active(void **state) {
  (void)state;
  peer_t p;
  static char filter[2501];
  big_sub_t first, again;
  memset(&first, 0, sizeof(first));
  memset(&again, 0, sizeof(again));
  memset(filter, 'g', sizeof(filter) - 1);
  filter[sizeof(filter) - 1] = 0;
  peer_new(&p, "v5-keep-sub", NULL);
  peer_connect(&p);
  assert_true(uvmqtt_subscribe(p.c, "v5/keep", 1, on_big_sub, &first) > 0);
  assert_int_equal(wait_count(&first.calls, 1), 0);
  assert_int_equal(first.code, 1);
  uvmqtt_subscription_t v[2] = {{{"v5/keep", 7}, 2},
                                {{filter, sizeof(filter) - 1}, 0}};
  assert_int_equal(uvmqtt_subscribe_many(p.c, v, 2, NULL, on_big_sub, &again),
                   UVMQTT_ETOOBIG);
  assert_int_equal(uvmqtt_subscribe(p.c, "v5/keep", 1, on_big_sub, &again), 0);
  assert_int_equal(again.calls, 1);
  assert_int_equal(again.code, 1);
  peer_close(&p);
}

static void test_message_expiry_in_queue(void **state) {
  (void)state;
  peer_t pub;
  uvmqtt_props_t props;
  peer_new(&pub, "v5-expiry-pub", NULL);
  memset(&props, 0, sizeof(props));
  props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_MESSAGE_EXPIRY_INTERVAL);
  props.message_expiry_interval = 1;
  uvmqtt_publish_opts_t po;
  memset(&po, 0, sizeof(po));
  po.topic = "v5/expiry";
  po.payload = "gone";
  po.payload_len = 4;
  po.qos = 1;
  po.props = &props;
  /* Queued while not connected; expires before the connection exists. */
  assert_true(uvmqtt_publish_ex(pub.c, &po, on_pub, &pub) > 0);
  tu_run_for(&loop, 1200);
  assert_int_equal(pub.pub_done, 0);
  peer_connect(&pub);
  assert_int_equal(wait_count(&pub.pub_done, 1), 0);
  assert_int_equal(pub.last_pub_status, UVMQTT_EEXPIRED);
  peer_close(&pub);
}

static void test_shared_subscription(void **state) {
  (void)state;
  peer_t a, b, pub;
  peer_new(&a, "v5-share-a", NULL);
  peer_new(&b, "v5-share-b", NULL);
  peer_new(&pub, "v5-share-pub", NULL);
  peer_connect(&a);
  peer_connect(&b);
  peer_connect(&pub);
  assert_true(uvmqtt_subscribe(a.c, "$share/g/v5/share", 1, on_sub, &a) > 0);
  assert_true(uvmqtt_subscribe(b.c, "$share/g/v5/share", 1, on_sub, &b) > 0);
  assert_int_equal(wait_count(&a.subacks, 1), 0);
  assert_int_equal(wait_count(&b.subacks, 1), 0);
  for (int i = 0; i < 20; i++)
    assert_true(
        uvmqtt_publish(pub.c, "v5/share", "s", 1, 1, false, on_pub, &pub) > 0);
  assert_int_equal(wait_count(&pub.pub_done, 20), 0);
  uint64_t end = tu_now_ms() + WAIT_MS;
  while (a.messages + b.messages < 20 && tu_now_ms() < end)
    tu_run_for(&loop, 20);
  tu_run_for(&loop, 100);
  assert_int_equal(a.messages + b.messages, 20); /* each message once */
  peer_close(&a);
  peer_close(&b);
  peer_close(&pub);
}

static void test_subscription_identifier(void **state) {
  (void)state;
  peer_t sub;
  uvmqtt_props_t props;
  peer_new(&sub, "v5-subid", NULL);
  peer_connect(&sub);
  memset(&props, 0, sizeof(props));
  props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER);
  props.subscription_id = 4242;
  uvmqtt_subscription_t s = {{"v5/subid/#", 10}, 1};
  assert_true(uvmqtt_subscribe_many(sub.c, &s, 1, &props, on_sub, &sub) > 0);
  assert_int_equal(wait_count(&sub.subacks, 1), 0);
  assert_true(
      uvmqtt_publish(sub.c, "v5/subid/x", "i", 1, 1, false, NULL, NULL) > 0);
  assert_int_equal(wait_count(&sub.messages, 1), 0);
  assert_int_equal(sub.last_sub_id, 4242);
  peer_close(&sub);
}

/* Request/response: a responder echoes requests to their Response Topic
 * with the same Correlation Data. */
static void responder_msg(uvmqtt_client_t *c, const uvmqtt_message_t *m,
                          void *arg) {
  (void)arg;
  assert_non_null(m->props);
  assert_true(m->props->present & UVMQTT_PROP_BIT(UVMQTT_PROP_RESPONSE_TOPIC));
  uvmqtt_props_t props;
  memset(&props, 0, sizeof(props));
  props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_CORRELATION_DATA);
  props.correlation_data = m->props->correlation_data;
  char topic[64];
  snprintf(topic, sizeof(topic), "%.*s", (int)m->props->response_topic.len,
           m->props->response_topic.data);
  uvmqtt_publish_opts_t po;
  memset(&po, 0, sizeof(po));
  po.topic = topic;
  po.payload = "pong";
  po.payload_len = 4;
  po.qos = 1;
  po.props = &props;
  assert_true(uvmqtt_publish_ex(c, &po, NULL, NULL) > 0);
}

typedef struct {
  int calls, status;
  char payload[16];
} resp_t;

static void on_response(uvmqtt_client_t *c, int status,
                        const uvmqtt_message_t *m, void *arg) {
  resp_t *r = arg;
  (void)c;
  r->calls++;
  r->status = status;
  if (m)
    snprintf(r->payload, sizeof(r->payload), "%.*s", (int)m->payload_len,
             (const char *)m->payload);
}

static void test_request_response(void **state) {
  (void)state;
  peer_t responder, requester;
  resp_t ok, late;
  memset(&ok, 0, sizeof(ok));
  memset(&late, 0, sizeof(late));
  peer_new(&responder, "v5-responder", NULL);
  peer_new(&requester, "v5-requester", NULL);
  uvmqtt_client_on_message(responder.c, responder_msg, NULL);
  peer_connect(&responder);
  peer_connect(&requester);
  assert_true(uvmqtt_subscribe(responder.c, "v5/req", 1, on_sub, &responder) >
              0);
  assert_true(
      uvmqtt_subscribe(requester.c, "v5/resp/me", 1, on_sub, &requester) > 0);
  assert_int_equal(wait_count(&responder.subacks, 1), 0);
  assert_int_equal(wait_count(&requester.subacks, 1), 0);
  uvmqtt_publish_opts_t po;
  memset(&po, 0, sizeof(po));
  po.topic = "v5/req";
  po.payload = "ping";
  po.payload_len = 4;
  po.qos = 1;
  assert_true(uvmqtt_request(requester.c, &po, "v5/resp/me", 3000, on_response,
                             &ok) > 0);
  assert_int_equal(wait_count(&ok.calls, 1), 0);
  assert_int_equal(ok.status, 0);
  assert_string_equal(ok.payload, "pong");
  assert_int_equal(requester.messages, 0); /* went to the request, not here */
  /* Nobody answers on this topic: times out. */
  po.topic = "v5/nobody";
  assert_true(uvmqtt_request(requester.c, &po, "v5/resp/me", 300, on_response,
                             &late) > 0);
  assert_int_equal(wait_count(&late.calls, 1), 0);
  assert_int_equal(late.status, UVMQTT_ETIMEDOUT);
  tu_run_for(&loop, 100);
  assert_int_equal(late.calls, 1);
  assert_int_equal(ok.calls, 1);
  peer_close(&responder);
  peer_close(&requester);
}

/* The property builder's set goes out on a PUBLISH; the receiver keeps
 * the message with uvmqtt_message_copy past its callback. */
static uvmqtt_message_t *kept;

static void keep_message(uvmqtt_client_t *c, const uvmqtt_message_t *m,
                         void *arg) {
  peer_t *p = arg;
  (void)c;
  if (!kept)
    assert_int_equal(uvmqtt_message_copy(&kept, m), 0);
  p->messages++;
}

static void test_props_builder_and_message_copy(void **state) {
  (void)state;
  peer_t sub, pub;
  uvmqtt_props_t *props;
  assert_int_equal(uvmqtt_props_new(&props), 0);
  assert_int_equal(uvmqtt_props_add_user(props, "k1", "v1"), 0);
  assert_int_equal(uvmqtt_props_add_user(props, "k2", "v2"), 0);
  assert_int_equal(uvmqtt_props_set_content_type(props, "text/plain"), 0);
  assert_int_equal(uvmqtt_props_set_response_topic(props, "v5/reply"), 0);
  assert_int_equal(uvmqtt_props_set_response_topic(props, "v5/#"),
                   UVMQTT_ETOPIC);
  assert_int_equal(uvmqtt_props_set_correlation_data(props, "\x01\x02", 2), 0);
  assert_int_equal(uvmqtt_props_set_payload_format(props, true), 0);
  assert_int_equal(uvmqtt_props_set_content_type(props, "bad\xff"),
                   UVMQTT_EUTF8);
  assert_int_equal(uvmqtt_props_set_subscription_id(props, 0), UVMQTT_EINVAL);
  peer_new(&sub, "v5-copy-sub", NULL);
  uvmqtt_client_on_message(sub.c, keep_message, &sub);
  peer_new(&pub, "v5-copy-pub", NULL);
  peer_connect(&sub);
  peer_connect(&pub);
  assert_int_equal(uvmqtt_subscribe(sub.c, "v5/copy", 1, on_sub, &sub) > 0, 1);
  assert_int_equal(wait_count(&sub.subacks, 1), 0);
  uvmqtt_publish_opts_t po;
  memset(&po, 0, sizeof(po));
  po.topic = "v5/copy";
  po.payload = "hello";
  po.payload_len = 5;
  po.qos = 1;
  po.props = props;
  assert_true(uvmqtt_publish_ex(pub.c, &po, on_pub, &pub) > 0);
  uvmqtt_props_free(props); /* the publish copied it */
  assert_int_equal(wait_count(&sub.messages, 1), 0);
  assert_non_null(kept);
  assert_string_equal(kept->topic, "v5/copy");
  assert_int_equal(kept->topic_len, 7);
  assert_int_equal(kept->payload_len, 5);
  assert_memory_equal(kept->payload, "hello", 5);
  assert_int_equal(kept->qos, 1);
  const uvmqtt_props_t *kp = kept->props;
  assert_non_null(kp);
  assert_true(kp->present & UVMQTT_PROP_BIT(UVMQTT_PROP_CONTENT_TYPE));
  assert_int_equal(kp->content_type.len, 10);
  assert_memory_equal(kp->content_type.data, "text/plain", 10);
  assert_memory_equal(kp->response_topic.data, "v5/reply", 8);
  assert_int_equal(kp->correlation_data.len, 2);
  assert_memory_equal(kp->correlation_data.data, "\x01\x02", 2);
  assert_int_equal(kp->payload_format_indicator, 1);
  size_t pos = 0;
  uvmqtt_user_prop_t up;
  assert_int_equal(uvmqtt_props_next_user(kp, &pos, &up), 1);
  assert_memory_equal(up.key.data, "k1", 2);
  assert_int_equal(uvmqtt_props_next_user(kp, &pos, &up), 1);
  assert_memory_equal(up.value.data, "v2", 2);
  assert_int_equal(uvmqtt_props_next_user(kp, &pos, &up), 0);
  uvmqtt_message_free(kept);
  kept = NULL;
  peer_close(&sub);
  peer_close(&pub);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_topic_alias_outgoing, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_receive_maximum_from_broker, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_maximum_packet_size_from_broker,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_queued_subscribe_too_big, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_failed_subscribe_keeps_active, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_message_expiry_in_queue, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_shared_subscription, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_subscription_identifier, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_request_response, setup, teardown),
      cmocka_unit_test_setup_teardown(test_props_builder_and_message_copy,
                                      setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
