/* The v5 property builder: an owned uvmqtt_props_t filled by setters that
 * copy and validate their values, so that applications never fill the
 * struct's views and present bits by hand. The set is the first member of
 * the builder's block, so the builder is used as a plain property set
 * anywhere one is taken. */
#include <string.h>

#include "alloc.h"
#include "uvmqtt.h"

typedef struct {
  uvmqtt_props_t p; /* first: the pointer handed out */
  /* Copies the views in p point to. */
  char *content_type, *response_topic, *reason_string;
  uint8_t *correlation_data;
  uvmqtt_user_prop_t *ups; /* keys and values strdup'ed */
  size_t ups_cap;
} builder_t;

int uvmqtt_props_new(uvmqtt_props_t **out) {
  if (!out)
    return UVMQTT_EINVAL;
  builder_t *b = uvmqtt__calloc(1, sizeof(*b));
  if (!b)
    return UVMQTT_ENOMEM;
  *out = &b->p;
  return 0;
}

void uvmqtt_props_free(uvmqtt_props_t *p) {
  builder_t *b = (builder_t *)p;
  if (!b)
    return;
  uvmqtt__free(b->content_type);
  uvmqtt__free(b->response_topic);
  uvmqtt__free(b->reason_string);
  uvmqtt__free(b->correlation_data);
  for (size_t i = 0; i < b->p.user_prop_count; i++) {
    uvmqtt__free((char *)b->ups[i].key.data);
    uvmqtt__free((char *)b->ups[i].value.data);
  }
  uvmqtt__free(b->ups);
  uvmqtt__free(b);
}

/* A well-formed UTF-8 string of at most 65535 bytes, without U+0000. */
static int check_str(const char *s, size_t *len) {
  if (!s || (*len = strlen(s)) > 65535)
    return UVMQTT_EINVAL;
  return uvmqtt_utf8_check(s, *len, NULL) != 0 ? UVMQTT_EUTF8 : 0;
}

/* Replaces a string property with a copy of s. */
static int set_str(builder_t *b, char **own, uvmqtt_str_t *view, int id,
                   const char *s) {
  size_t len;
  int rc = check_str(s, &len);
  if (rc < 0)
    return rc;
  char *d = uvmqtt__strdup(s);
  if (!d)
    return UVMQTT_ENOMEM;
  uvmqtt__free(*own);
  *own = d;
  view->data = d;
  view->len = len;
  b->p.present |= UVMQTT_PROP_BIT(id);
  return 0;
}

int uvmqtt_props_set_content_type(uvmqtt_props_t *p, const char *type) {
  builder_t *b = (builder_t *)p;
  if (!b)
    return UVMQTT_EINVAL;
  return set_str(b, &b->content_type, &p->content_type,
                 UVMQTT_PROP_CONTENT_TYPE, type);
}

int uvmqtt_props_set_response_topic(uvmqtt_props_t *p, const char *topic) {
  builder_t *b = (builder_t *)p;
  if (!b || !topic)
    return UVMQTT_EINVAL;
  int rc = uvmqtt_topic_validate(topic, strlen(topic));
  if (rc < 0)
    return rc;
  return set_str(b, &b->response_topic, &p->response_topic,
                 UVMQTT_PROP_RESPONSE_TOPIC, topic);
}

int uvmqtt_props_set_reason_string(uvmqtt_props_t *p, const char *reason) {
  builder_t *b = (builder_t *)p;
  if (!b)
    return UVMQTT_EINVAL;
  return set_str(b, &b->reason_string, &p->reason_string,
                 UVMQTT_PROP_REASON_STRING, reason);
}

int uvmqtt_props_set_correlation_data(uvmqtt_props_t *p, const void *data,
                                      size_t len) {
  builder_t *b = (builder_t *)p;
  if (!b || len > 65535 || (len && !data))
    return UVMQTT_EINVAL;
  uint8_t *d = uvmqtt__memdup(len ? data : "", len ? len : 1);
  if (!d)
    return UVMQTT_ENOMEM;
  uvmqtt__free(b->correlation_data);
  b->correlation_data = d;
  p->correlation_data.data = d;
  p->correlation_data.len = len;
  p->present |= UVMQTT_PROP_BIT(UVMQTT_PROP_CORRELATION_DATA);
  return 0;
}

int uvmqtt_props_set_payload_format(uvmqtt_props_t *p, bool utf8) {
  if (!p)
    return UVMQTT_EINVAL;
  p->payload_format_indicator = utf8 ? 1 : 0;
  p->present |= UVMQTT_PROP_BIT(UVMQTT_PROP_PAYLOAD_FORMAT_INDICATOR);
  return 0;
}

int uvmqtt_props_set_message_expiry(uvmqtt_props_t *p, uint32_t seconds) {
  if (!p)
    return UVMQTT_EINVAL;
  p->message_expiry_interval = seconds;
  p->present |= UVMQTT_PROP_BIT(UVMQTT_PROP_MESSAGE_EXPIRY_INTERVAL);
  return 0;
}

int uvmqtt_props_set_session_expiry(uvmqtt_props_t *p, uint32_t seconds) {
  if (!p)
    return UVMQTT_EINVAL;
  p->session_expiry_interval = seconds;
  p->present |= UVMQTT_PROP_BIT(UVMQTT_PROP_SESSION_EXPIRY_INTERVAL);
  return 0;
}

int uvmqtt_props_set_subscription_id(uvmqtt_props_t *p, uint32_t id) {
  if (!p || id == 0 || id > 268435455)
    return UVMQTT_EINVAL;
  p->subscription_id = id;
  p->present |= UVMQTT_PROP_BIT(UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER);
  return 0;
}

int uvmqtt_props_set_topic_alias(uvmqtt_props_t *p, uint16_t alias) {
  if (!p || alias == 0)
    return UVMQTT_EINVAL;
  p->topic_alias = alias;
  p->present |= UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS);
  return 0;
}

int uvmqtt_props_add_user(uvmqtt_props_t *p, const char *key,
                          const char *value) {
  builder_t *b = (builder_t *)p;
  size_t klen, vlen;
  if (!b)
    return UVMQTT_EINVAL;
  int rc = check_str(key, &klen);
  if (rc == 0)
    rc = check_str(value, &vlen);
  if (rc < 0)
    return rc;
  if (p->user_prop_count == b->ups_cap) {
    size_t cap = b->ups_cap ? b->ups_cap * 2 : 4;
    uvmqtt_user_prop_t *v = uvmqtt__realloc(b->ups, cap * sizeof(*v));
    if (!v)
      return UVMQTT_ENOMEM;
    b->ups = v;
    b->ups_cap = cap;
    p->user_props = v;
  }
  char *k = uvmqtt__strdup(key), *v = uvmqtt__strdup(value);
  if (!k || !v) {
    uvmqtt__free(k);
    uvmqtt__free(v);
    return UVMQTT_ENOMEM;
  }
  uvmqtt_user_prop_t *u = &b->ups[p->user_prop_count++];
  u->key.data = k;
  u->key.len = klen;
  u->value.data = v;
  u->value.len = vlen;
  return 0;
}
