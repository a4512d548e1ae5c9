/* Publish, subscribe and unsubscribe: validating what the application
 * asks for and handing it to the session, and the list of subscriptions
 * the client re-sends when the broker lost the session. */
#include <string.h>

#include "alloc.h"
#include "client/client_int.h"

int uvmqtt_publish_ex(uvmqtt_client_t *c, const uvmqtt_publish_opts_t *po,
                      uvmqtt_publish_cb cb, void *arg) {
  if (!c || !po || !po->topic)
    return UVMQTT_EINVAL;
  if (c->state == C_CLOSING || c->close_requested)
    return UVMQTT_ECLOSED;
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

static void forget_sub(uvmqtt_client_t *c, const char *f, size_t len) {
  for (sub_t **pp = &c->subs, *s; (s = *pp); pp = &s->next) {
    if (s->len == len && memcmp(s->filter, f, len) == 0) {
      *pp = s->next;
      uvmqtt__free(s);
      return;
    }
  }
}

static int remember_sub(uvmqtt_client_t *c, const char *f, size_t len,
                        uint8_t options) {
  forget_sub(c, f, len);
  sub_t *s = uvmqtt__malloc(offsetof(sub_t, filter) + len);
  if (!s)
    return UVMQTT_ENOMEM;
  s->options = options;
  s->len = (uint16_t)len;
  memcpy(s->filter, f, len);
  s->next = c->subs;
  c->subs = s;
  return 0;
}

int uvmqtt_subscribe_many(uvmqtt_client_t *c, const uvmqtt_subscription_t *subs,
                          size_t count, const uvmqtt_props_t *props,
                          uvmqtt_subscribe_cb cb, void *arg) {
  if (!c || !subs || count == 0)
    return UVMQTT_EINVAL;
  if (c->state == C_CLOSING || c->close_requested)
    return UVMQTT_ECLOSED;
  for (size_t i = 0; i < count; i++) {
    int rc = uvmqtt_filter_validate(subs[i].filter.data, subs[i].filter.len);
    if (rc < 0)
      return rc;
    uint8_t o = subs[i].options;
    if ((o & UVMQTT_SUBOPT_QOS_MASK) > 2)
      return UVMQTT_EQOS;
    /* Reserved bits, Retain Handling 3, and No Local on a shared
     * subscription [MQTT-3.8.3-4] are protocol errors. */
    if ((o & 0xC0) || ((o >> UVMQTT_SUBOPT_RETAIN_HANDLING_SHIFT) & 3) == 3 ||
        (c->o.version != UVMQTT_V5 && (o & ~UVMQTT_SUBOPT_QOS_MASK)))
      return UVMQTT_EINVAL;
    if ((o & UVMQTT_SUBOPT_NO_LOCAL) && subs[i].filter.len > 7 &&
        memcmp(subs[i].filter.data, "$share/", 7) == 0)
      return UVMQTT_EFILTER;
  }
  if (props && c->o.version == UVMQTT_V5) {
    int rc = uvmqtt__props_utf8_ok(props);
    if (rc < 0)
      return rc;
  }
  if (c->state != C_CONNECTED)
    return UVMQTT_ENOTCONN;
  ENTER(c);
  int rc = uvmqtt__session_subscribe(c->session, subs, count, props,
                                     (uvmqtt_session_fn)cb, arg);
  if (rc >= 0)
    for (size_t i = 0; i < count; i++)
      if (remember_sub(c, subs[i].filter.data, subs[i].filter.len,
                       subs[i].options) < 0)
        uvmqtt__client_log(c, UVMQTT_LOG_WARN,
                           "cannot remember a subscription");
  LEAVE(c);
  return rc;
}

int uvmqtt_subscribe(uvmqtt_client_t *c, const char *filter, int qos,
                     uvmqtt_subscribe_cb cb, void *arg) {
  uvmqtt_subscription_t s;
  if (!filter)
    return UVMQTT_EINVAL;
  if (qos < 0 || qos > 2)
    return UVMQTT_EQOS;
  s.filter.data = filter;
  s.filter.len = strlen(filter);
  s.options = (uint8_t)qos;
  return uvmqtt_subscribe_many(c, &s, 1, NULL, cb, arg);
}

int uvmqtt_unsubscribe_many(uvmqtt_client_t *c, const char *const *filters,
                            size_t count, const uvmqtt_props_t *props,
                            uvmqtt_subscribe_cb cb, void *arg) {
  uvmqtt_str_t small[8], *v = small;
  if (!c || !filters || count == 0)
    return UVMQTT_EINVAL;
  if (c->state == C_CLOSING || c->close_requested)
    return UVMQTT_ECLOSED;
  if (props && c->o.version == UVMQTT_V5 && uvmqtt__props_utf8_ok(props) < 0)
    return UVMQTT_EUTF8;
  for (size_t i = 0; i < count; i++) {
    if (!filters[i])
      return UVMQTT_EINVAL;
    int rc = uvmqtt_filter_validate(filters[i], strlen(filters[i]));
    if (rc < 0)
      return rc;
  }
  if (c->state != C_CONNECTED)
    return UVMQTT_ENOTCONN;
  if (count > 8 && !(v = uvmqtt__malloc(count * sizeof(*v))))
    return UVMQTT_ENOMEM;
  for (size_t i = 0; i < count; i++) {
    v[i].data = filters[i];
    v[i].len = strlen(filters[i]);
  }
  ENTER(c);
  int rc = uvmqtt__session_unsubscribe(c->session, v, count, props,
                                       (uvmqtt_session_fn)cb, arg);
  if (rc >= 0)
    for (size_t i = 0; i < count; i++)
      forget_sub(c, v[i].data, v[i].len);
  LEAVE(c);
  if (v != small)
    uvmqtt__free(v);
  return rc;
}

int uvmqtt_unsubscribe(uvmqtt_client_t *c, const char *filter,
                       uvmqtt_subscribe_cb cb, void *arg) {
  return uvmqtt_unsubscribe_many(c, &filter, 1, NULL, cb, arg);
}
