/* v5 topic aliases of a session: the incoming table (alias -> topic, sized
 * by our maximum) and the outgoing LRU table (sized by the server's
 * maximum, at most ALIAS_OUT_MAX), both allocated on first use. */
#include <string.h>

#include "alloc.h"
#include "session/session_int.h"
#include "uvmqtt/errors.h"

/* Outgoing aliases are looked up by a linear scan; keep the table small. */
#define ALIAS_OUT_MAX 64

/* Outgoing topic aliases (v5): a small LRU table, sized by the server's
 * maximum, allocated on first use. */
struct out_alias {
  char *topic;
  size_t len;
  uint64_t used;
};
struct uvmqtt_alias_out_s {
  uint64_t clock;
  uint16_t n;
  struct out_alias e[];
};

void uvmqtt__aliases_reset(uvmqtt_session_t *s) {
  if (s->alias_in) {
    for (unsigned i = 0; i <= s->topic_alias_max_in; i++)
      uvmqtt__free((void *)s->alias_in[i].data);
    uvmqtt__free(s->alias_in);
    s->alias_in = NULL;
  }
  if (s->alias_out) {
    for (unsigned i = 0; i < s->alias_out->n; i++)
      uvmqtt__free(s->alias_out->e[i].topic);
    uvmqtt__free(s->alias_out);
    s->alias_out = NULL;
  }
}

int uvmqtt__alias_out(uvmqtt_session_t *s, const char *topic, size_t len,
                      uint16_t *alias, bool *known) {
  unsigned max =
      s->server_alias_max < ALIAS_OUT_MAX ? s->server_alias_max : ALIAS_OUT_MAX;
  *alias = 0;
  *known = false;
  if (!s->topic_alias_auto || max == 0 || s->version != UVMQTT_V5)
    return 0;
  uvmqtt_alias_out_t *t = s->alias_out;
  if (!t) {
    t = uvmqtt__calloc(1, sizeof(*t) + max * sizeof(t->e[0]));
    if (!t)
      return 0; /* no alias: still correct, just longer */
    s->alias_out = t;
  }
  unsigned lru = 0;
  for (unsigned i = 0; i < t->n; i++) {
    struct out_alias *a = &t->e[i];
    if (a->len == len && memcmp(a->topic, topic, len) == 0) {
      a->used = ++t->clock;
      *alias = (uint16_t)(i + 1);
      *known = true;
      return 0;
    }
    if (a->used < t->e[lru].used)
      lru = i;
  }
  char *copy = uvmqtt__strndup(topic, len);
  if (!copy)
    return 0;
  unsigned slot = t->n < max ? t->n++ : lru;
  uvmqtt__free(t->e[slot].topic);
  t->e[slot].topic = copy;
  t->e[slot].len = len;
  t->e[slot].used = ++t->clock;
  *alias = (uint16_t)(slot + 1);
  return 0;
}

int uvmqtt__alias_in(uvmqtt_session_t *s, uvmqtt_publish_t *pub) {
  bool has = pub->props.present & UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS);
  if (!has) {
    if (pub->topic.len == 0) {
      uvmqtt__session_log(s, UVMQTT_LOG_ERROR,
                          "broker sent a PUBLISH without topic or alias");
      return UVMQTT_EPROTOCOL;
    }
    return 0;
  }
  uint16_t a = pub->props.topic_alias;
  if (a == 0 || a > s->topic_alias_max_in) {
    uvmqtt__session_log(s, UVMQTT_LOG_ERROR,
                        "broker sent topic alias %u (our maximum is %u)", a,
                        s->topic_alias_max_in);
    return UVMQTT_ETOPICALIAS;
  }
  if (!s->alias_in) {
    s->alias_in =
        uvmqtt__calloc((size_t)s->topic_alias_max_in + 1, sizeof(uvmqtt_str_t));
    if (!s->alias_in)
      return UVMQTT_ENOMEM;
  }
  uvmqtt_str_t *slot = &s->alias_in[a];
  if (pub->topic.len > 0) {
    char *copy = uvmqtt__strndup(pub->topic.data, pub->topic.len);
    if (!copy)
      return UVMQTT_ENOMEM;
    uvmqtt__free((void *)slot->data);
    slot->data = copy;
    slot->len = pub->topic.len;
    return 0;
  }
  if (!slot->data) {
    uvmqtt__session_log(s, UVMQTT_LOG_ERROR,
                        "broker used topic alias %u before defining it", a);
    return UVMQTT_ETOPICALIAS;
  }
  pub->topic = *slot;
  return 0;
}

void uvmqtt__alias_out_forget(uvmqtt_session_t *s, uint16_t alias) {
  struct out_alias *a = &s->alias_out->e[alias - 1];
  uvmqtt__free(a->topic);
  a->topic = NULL;
  a->len = 0;
}
