/* Publish: validating what the application asks for and handing it to
 * the session. Subscriptions are in subs.c. */
#include <string.h>

#include "alloc.h"
#include "client/client_int.h"

int uvmqtt_publish_ex(uvmqtt_client_t *c, const uvmqtt_publish_opts_t *po,
                      uvmqtt_publish_cb cb, void *arg) {
  if (!c || !po || !po->topic)
    return UVMQTT_EINVAL;
  if (c->state == C_CLOSING || c->close_requested)
    return UVMQTT_ECLOSED;
  if (uvmqtt__draining(c))
    return UVMQTT_EDRAINING;
  if (po->qos < 0 || po->qos > 2)
    return UVMQTT_EQOS;
  size_t tlen = po->topic_len ? po->topic_len : strlen(po->topic);
  int rc = uvmqtt_topic_validate(po->topic, tlen);
  if (rc < 0)
    return rc;
  if (po->props && c->o.version == UVMQTT_V5) {
    if ((rc = uvmqtt__props_utf8_ok(po->props)) < 0)
      return rc;
    /* [MQTT-3.3.4-6]: subscription identifiers are the server's to send. */
    if (po->props->present &
        UVMQTT_PROP_BIT(UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER))
      return UVMQTT_EPROPBAD;
    /* A hand-set alias and automatic ones would disagree at the broker. */
    if ((po->props->present & UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS)) &&
        (CX(c)->topic_alias_auto || po->props->topic_alias == 0))
      return UVMQTT_ETOPICALIAS;
  }
  uvmqtt_session_pub_t p;
  memset(&p, 0, sizeof(p));
  p.topic = po->topic;
  p.topic_len = tlen;
  p.payload = po->payload;
  p.payload_len = po->payload_len;
  p.qos = (uint8_t)po->qos;
  p.retain = po->retain;
  p.props = po->props;
  p.zero_copy = po->zero_copy;
  if (po->props && c->o.version == UVMQTT_V5 &&
      (po->props->present &
       UVMQTT_PROP_BIT(UVMQTT_PROP_MESSAGE_EXPIRY_INTERVAL)))
    p.expiry_s = po->props->message_expiry_interval;
  ENTER(c);
  rc = uvmqtt__session_publish(c->session, uvmqtt__client_now(c), &p,
                               (uvmqtt_session_fn)cb, arg);
  if (rc >= 0)
    c->lc->st.published++;
  LEAVE(c);
  return rc;
}

int uvmqtt_publish(uvmqtt_client_t *c, const char *topic, const void *payload,
                   size_t len, int qos, bool retain, uvmqtt_publish_cb cb,
                   void *arg) {
  uvmqtt_publish_opts_t po;
  memset(&po, 0, sizeof(po));
  po.topic = topic;
  po.payload = payload;
  po.payload_len = len;
  po.qos = qos;
  po.retain = retain;
  return uvmqtt_publish_ex(c, &po, cb, arg);
}
