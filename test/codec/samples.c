#include "samples.h"

#include <string.h>

#define S(lit) ((uvmqtt_str_t){(lit), sizeof(lit) - 1})
#define B(lit) ((uvmqtt_bin_t){(const uint8_t *)(lit), sizeof(lit) - 1})
#define BIT(id) UVMQTT_PROP_BIT(UVMQTT_PROP_##id)

static const uvmqtt_user_prop_t user2[] = {
    {{"key", 3}, {"value", 5}},
    {{"key", 3}, {"", 0}}, /* repeated key, empty value */
};
static const uvmqtt_user_prop_t user_utf8[] = {
    {{"\xc3\xa9t\xc3\xa9", 5}, {"\xf0\x9f\x98\x80", 4}},
};
static const uint32_t two_sub_ids[] = {1, 268435455};

static const uvmqtt_subscription_t subs1[] = {{{"a/b", 3}, 0}};
static const uvmqtt_subscription_t subs3[] = {
    {{"sport/tennis/+", 14}, 1},
    {{"#", 1}, 2},
    {{"$SYS/+/x", 8}, 0},
};
static const uvmqtt_subscription_t subs_v5[] = {
    {{"a/+/c", 5},
     2 | UVMQTT_SUBOPT_NO_LOCAL | UVMQTT_SUBOPT_RETAIN_AS_PUBLISHED |
         (2 << UVMQTT_SUBOPT_RETAIN_HANDLING_SHIFT)},
    {{"$share/grp/x/#", 14}, 1 | (1 << UVMQTT_SUBOPT_RETAIN_HANDLING_SHIFT)},
};
static const uvmqtt_str_t filters2[] = {{"a/b", 3}, {"+/#", 3}};
static const uint8_t suback_v3[] = {0, 1, 2, 0x80};
static const uint8_t suback_v5[] = {0,    1,    2,    0x80, 0x83, 0x87,
                                    0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2};
static const uint8_t unsuback_v5[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
static const uint8_t binary[] = {0x00, 0xFF, 0x80, 0x01, 0x00};

static uvmqtt_props_t connect_props(void) {
  uvmqtt_props_t p;
  memset(&p, 0, sizeof(p));
  p.present = BIT(SESSION_EXPIRY_INTERVAL) | BIT(AUTHENTICATION_METHOD) |
              BIT(AUTHENTICATION_DATA) | BIT(REQUEST_PROBLEM_INFORMATION) |
              BIT(REQUEST_RESPONSE_INFORMATION) | BIT(RECEIVE_MAXIMUM) |
              BIT(TOPIC_ALIAS_MAXIMUM) | BIT(MAXIMUM_PACKET_SIZE);
  p.session_expiry_interval = 0xFFFFFFFF;
  p.authentication_method = S("SCRAM-SHA-1");
  p.authentication_data = (uvmqtt_bin_t){binary, sizeof(binary)};
  p.request_problem_information = 0;
  p.request_response_information = 1;
  p.receive_maximum = 65535;
  p.topic_alias_maximum = 10;
  p.maximum_packet_size = 1;
  p.user_props = user2;
  p.user_prop_count = 2;
  return p;
}

static uvmqtt_props_t will_props(void) {
  uvmqtt_props_t p;
  memset(&p, 0, sizeof(p));
  p.present = BIT(PAYLOAD_FORMAT_INDICATOR) | BIT(MESSAGE_EXPIRY_INTERVAL) |
              BIT(CONTENT_TYPE) | BIT(RESPONSE_TOPIC) | BIT(CORRELATION_DATA) |
              BIT(WILL_DELAY_INTERVAL);
  p.payload_format_indicator = 1;
  p.message_expiry_interval = 3600;
  p.content_type = S("text/plain");
  p.response_topic = S("reply/to");
  p.correlation_data = B("\x01\x02");
  p.will_delay_interval = 30;
  p.user_props = user_utf8;
  p.user_prop_count = 1;
  return p;
}

static uvmqtt_props_t connack_props(void) {
  uvmqtt_props_t p;
  memset(&p, 0, sizeof(p));
  p.present = BIT(SESSION_EXPIRY_INTERVAL) | BIT(ASSIGNED_CLIENT_IDENTIFIER) |
              BIT(SERVER_KEEP_ALIVE) | BIT(AUTHENTICATION_METHOD) |
              BIT(AUTHENTICATION_DATA) | BIT(RESPONSE_INFORMATION) |
              BIT(SERVER_REFERENCE) | BIT(REASON_STRING) |
              BIT(RECEIVE_MAXIMUM) | BIT(TOPIC_ALIAS_MAXIMUM) |
              BIT(MAXIMUM_QOS) | BIT(RETAIN_AVAILABLE) |
              BIT(MAXIMUM_PACKET_SIZE) | BIT(WILDCARD_SUBSCRIPTION_AVAILABLE) |
              BIT(SUBSCRIPTION_IDENTIFIER_AVAILABLE) |
              BIT(SHARED_SUBSCRIPTION_AVAILABLE);
  p.session_expiry_interval = 7;
  p.assigned_client_identifier = S("auto-1234");
  p.server_keep_alive = 20;
  p.authentication_method = S("m");
  p.authentication_data = B("");
  p.response_information = S("resp/");
  p.server_reference = S("other:1883");
  p.reason_string = S("fine");
  p.receive_maximum = 1;
  p.topic_alias_maximum = 0;
  p.maximum_qos = 1;
  p.retain_available = 0;
  p.maximum_packet_size = 268435460u;
  p.wildcard_subscription_available = 1;
  p.subscription_identifier_available = 0;
  p.shared_subscription_available = 1;
  p.user_props = user2;
  p.user_prop_count = 2;
  return p;
}

static uvmqtt_props_t reason_props(void) {
  uvmqtt_props_t p;
  memset(&p, 0, sizeof(p));
  p.present = BIT(REASON_STRING);
  p.reason_string = S("because");
  p.user_props = user2;
  p.user_prop_count = 1;
  return p;
}

#define ADD(nm, rl) (s = &out[n++], s->name = (nm), s->role = (rl), &s->pkt)

size_t samples_get(uint8_t v, sample_t *out) {
  size_t n = 0;
  sample_t *s;
  uvmqtt_packet_t *p;
  bool v5 = v == UVMQTT_V5;
  memset(out, 0, sizeof(*out) * SAMPLES_MAX);

  p = ADD("connect-minimal", UVMQTT_ROLE_SERVER);
  p->type = UVMQTT_CONNECT;
  p->u.connect.protocol_version = v;
  p->u.connect.clean_start = true;
  p->u.connect.client_id = S("");

  p = ADD("connect-full", UVMQTT_ROLE_SERVER);
  p->type = UVMQTT_CONNECT;
  p->u.connect.protocol_version = v;
  p->u.connect.keep_alive = 65535;
  p->u.connect.client_id = S("client-\xc3\xa9");
  p->u.connect.will = true;
  p->u.connect.will_qos = 2;
  p->u.connect.will_retain = true;
  p->u.connect.will_topic = S("will/topic");
  p->u.connect.will_payload = (uvmqtt_bin_t){binary, sizeof(binary)};
  p->u.connect.has_username = true;
  p->u.connect.username = S("user");
  p->u.connect.has_password = true;
  p->u.connect.password = (uvmqtt_bin_t){binary, sizeof(binary)};
  if (v5) {
    p->u.connect.props = connect_props();
    p->u.connect.will_props = will_props();
  }

  p = ADD("connect-user-empty-will-payload", UVMQTT_ROLE_SERVER);
  p->type = UVMQTT_CONNECT;
  p->u.connect.protocol_version = v;
  p->u.connect.client_id = S("c");
  p->u.connect.will = true;
  p->u.connect.will_topic = S("w");
  p->u.connect.has_username = true;
  p->u.connect.username = S("");

  if (v5) {
    p = ADD("connect-password-only", UVMQTT_ROLE_SERVER);
    p->type = UVMQTT_CONNECT;
    p->u.connect.protocol_version = v;
    p->u.connect.client_id = S("c");
    p->u.connect.has_password = true;
    p->u.connect.password = B("token");
  }

  p = ADD("connack-accepted", UVMQTT_ROLE_CLIENT);
  p->type = UVMQTT_CONNACK;
  p->u.connack.session_present = v != UVMQTT_V31;

  p = ADD("connack-refused", UVMQTT_ROLE_CLIENT);
  p->type = UVMQTT_CONNACK;
  p->u.connack.reason_code = v5 ? 0x9F : 5;
  if (v5) {
    p = ADD("connack-all-props", UVMQTT_ROLE_CLIENT);
    p->type = UVMQTT_CONNACK;
    p->u.connack.props = connack_props();
  }

  p = ADD("publish-qos0", UVMQTT_ROLE_CLIENT);
  p->type = UVMQTT_PUBLISH;
  p->u.publish.topic = S("a/b");
  p->u.publish.payload = B("hello");

  p = ADD("publish-qos1-dup-retain-binary", UVMQTT_ROLE_SERVER);
  p->type = UVMQTT_PUBLISH;
  p->u.publish.dup = true;
  p->u.publish.qos = 1;
  p->u.publish.retain = true;
  p->u.publish.packet_id = 65535;
  p->u.publish.topic = S("$SYS/\xe4\xb8\xad/\xf0\x9f\x98\x80");
  p->u.publish.payload = (uvmqtt_bin_t){binary, sizeof(binary)};

  p = ADD("publish-qos2-empty-payload", UVMQTT_ROLE_CLIENT);
  p->type = UVMQTT_PUBLISH;
  p->u.publish.qos = 2;
  p->u.publish.packet_id = 1;
  p->u.publish.topic = S("/");

  if (v5) {
    p = ADD("publish-all-props", UVMQTT_ROLE_CLIENT);
    p->type = UVMQTT_PUBLISH;
    p->u.publish.qos = 1;
    p->u.publish.packet_id = 77;
    p->u.publish.topic = S("t");
    p->u.publish.payload = B("{}");
    p->u.publish.props = will_props();
    p->u.publish.props.present &= ~BIT(WILL_DELAY_INTERVAL);
    p->u.publish.props.present |= BIT(TOPIC_ALIAS);
    p->u.publish.props.topic_alias = 3;
    p->u.publish.props.sub_ids = two_sub_ids;
    p->u.publish.props.sub_id_count = 2;

    p = ADD("publish-alias-only", UVMQTT_ROLE_SERVER);
    p->type = UVMQTT_PUBLISH;
    p->u.publish.topic = S("");
    p->u.publish.props.present = BIT(TOPIC_ALIAS);
    p->u.publish.props.topic_alias = 65535;
    p->u.publish.payload = B("x");
  }

  static const uint8_t ack_types[] = {UVMQTT_PUBACK, UVMQTT_PUBREC,
                                      UVMQTT_PUBREL, UVMQTT_PUBCOMP};
  for (int i = 0; i < 4; i++) {
    p = ADD(uvmqtt_packet_name(ack_types[i]),
            i % 2 ? UVMQTT_ROLE_SERVER : UVMQTT_ROLE_CLIENT);
    p->type = ack_types[i];
    p->u.ack.packet_id = (uint16_t)(1 + i * 1000);
    if (v5) {
      p = ADD("ack-reason-only", UVMQTT_ROLE_CLIENT);
      p->type = ack_types[i];
      p->u.ack.packet_id = 65535;
      p->u.ack.reason_code = i < 2 ? 0x10 : 0x92;
      p = ADD("ack-reason-props", UVMQTT_ROLE_SERVER);
      p->type = ack_types[i];
      p->u.ack.packet_id = 2;
      p->u.ack.reason_code = i < 2 ? 0x99 : 0x92;
      p->u.ack.props = reason_props();
      p = ADD("ack-success-props", UVMQTT_ROLE_CLIENT);
      p->type = ack_types[i];
      p->u.ack.packet_id = 3;
      p->u.ack.props = reason_props();
    }
  }

  p = ADD("subscribe-one", UVMQTT_ROLE_SERVER);
  p->type = UVMQTT_SUBSCRIBE;
  p->u.subscribe.packet_id = 10;
  p->u.subscribe.subs = subs1;
  p->u.subscribe.count = 1;
  p = ADD("subscribe-three", UVMQTT_ROLE_SERVER);
  p->type = UVMQTT_SUBSCRIBE;
  p->u.subscribe.packet_id = 11;
  p->u.subscribe.subs = subs3;
  p->u.subscribe.count = 3;
  if (v5) {
    p = ADD("subscribe-v5-options", UVMQTT_ROLE_SERVER);
    p->type = UVMQTT_SUBSCRIBE;
    p->u.subscribe.packet_id = 12;
    p->u.subscribe.subs = subs_v5;
    p->u.subscribe.count = 2;
    p->u.subscribe.props.present = BIT(SUBSCRIPTION_IDENTIFIER);
    p->u.subscribe.props.subscription_id = 268435455;
    p->u.subscribe.props.user_props = user2;
    p->u.subscribe.props.user_prop_count = 2;
  }

  p = ADD("suback", UVMQTT_ROLE_CLIENT);
  p->type = UVMQTT_SUBACK;
  p->u.suback.packet_id = 11;
  p->u.suback.codes = v5 ? suback_v5 : suback_v3;
  p->u.suback.count = v5 ? sizeof(suback_v5) : sizeof(suback_v3);
  if (v5)
    p->u.suback.props = reason_props();

  p = ADD("unsubscribe", UVMQTT_ROLE_SERVER);
  p->type = UVMQTT_UNSUBSCRIBE;
  p->u.unsubscribe.packet_id = 12;
  p->u.unsubscribe.filters = filters2;
  p->u.unsubscribe.count = 2;
  if (v5) {
    p->u.unsubscribe.props.user_props = user_utf8;
    p->u.unsubscribe.props.user_prop_count = 1;
  }

  p = ADD("unsuback", UVMQTT_ROLE_CLIENT);
  p->type = UVMQTT_UNSUBACK;
  p->u.suback.packet_id = 12;
  if (v5) {
    p->u.suback.codes = unsuback_v5;
    p->u.suback.count = sizeof(unsuback_v5);
    p->u.suback.props = reason_props();
  }

  p = ADD("pingreq", UVMQTT_ROLE_SERVER);
  p->type = UVMQTT_PINGREQ;
  p = ADD("pingresp", UVMQTT_ROLE_CLIENT);
  p->type = UVMQTT_PINGRESP;

  p = ADD("disconnect", UVMQTT_ROLE_SERVER);
  p->type = UVMQTT_DISCONNECT;
  if (v5) {
    p = ADD("disconnect-with-will", UVMQTT_ROLE_SERVER);
    p->type = UVMQTT_DISCONNECT;
    p->u.disconnect.reason_code = 0x04;
    p = ADD("disconnect-session-expiry", UVMQTT_ROLE_SERVER);
    p->type = UVMQTT_DISCONNECT;
    p->u.disconnect.props.present = BIT(SESSION_EXPIRY_INTERVAL);
    p->u.disconnect.props.session_expiry_interval = 0;
    p = ADD("disconnect-server-moved", UVMQTT_ROLE_CLIENT);
    p->type = UVMQTT_DISCONNECT;
    p->u.disconnect.reason_code = 0x9D;
    p->u.disconnect.props = reason_props();
    p->u.disconnect.props.present |= BIT(SERVER_REFERENCE);
    p->u.disconnect.props.server_reference = S("b2:1883");

    p = ADD("auth-bare", UVMQTT_ROLE_CLIENT);
    p->type = UVMQTT_AUTH;
    p = ADD("auth-continue", UVMQTT_ROLE_SERVER);
    p->type = UVMQTT_AUTH;
    p->u.auth.reason_code = 0x18;
    p->u.auth.props.present = BIT(AUTHENTICATION_METHOD) |
                              BIT(AUTHENTICATION_DATA) | BIT(REASON_STRING);
    p->u.auth.props.authentication_method = S("SCRAM-SHA-1");
    p->u.auth.props.authentication_data = B("client-first");
    p->u.auth.props.reason_string = S("");
    p->u.auth.props.user_props = user2;
    p->u.auth.props.user_prop_count = 2;
  }
  return n;
}
