/* v5 topic aliases of a session: the incoming table (alias -> topic, sized
 * by our maximum) and the outgoing LRU table (sized by the server's
 * maximum, at most ALIAS_OUT_MAX), in one block allocated when either is
 * first used on a connection (the session holds one pointer). */
#include <string.h>

#include "alloc.h"
#include "session/session_int.h"
#include "uvmqtt/errors.h"

/* Outgoing aliases are looked up by a linear scan; keep the table small. */
#define ALIAS_OUT_MAX 64

/* Outgoing topic aliases (v5): a small LRU table, sized by the server's
 * maximum. */
struct out_alias {
  char *topic;
  size_t len;
  uint64_t used;
};
struct uvmqtt_aliases_s {
  uvmqtt_str_t *in; /* incoming: alias -> topic, allocated on first use */
  uint64_t clock;
  uint16_t n, max_out; /* outgoing entries used / allocated */
  struct out_alias e[];
};

/* The block, sized for the server's maximum of this connection (known
 * from CONNACK, before any PUBLISH). NULL: out of memory. */
static uvmqtt_aliases_t *aliases(uvmqtt_session_t *s) {
  if (!s->aliases) {
    unsigned max = s->server_alias_max < ALIAS_OUT_MAX ? s->server_alias_max
                                                       : ALIAS_OUT_MAX;
    if (!s->topic_alias_auto || s->version != UVMQTT_V5)
      max = 0;
    s->aliases =
        uvmqtt__calloc(1, sizeof(*s->aliases) + max * sizeof(s->aliases->e[0]));
    if (s->aliases)
      s->aliases->max_out = (uint16_t)max;
  }
  return s->aliases;
}

void uvmqtt__aliases_reset(uvmqtt_session_t *s) {
  uvmqtt_aliases_t *t = s->aliases;
  if (!t)
    return;
  if (t->in) {
    for (unsigned i = 0; i <= s->topic_alias_max_in; i++)
      uvmqtt__free((void *)t->in[i].data);
    uvmqtt__free(t->in);
  }
  for (unsigned i = 0; i < t->n; i++)
    uvmqtt__free(t->e[i].topic);
  uvmqtt__free(t);
  s->aliases = NULL;
}

int uvmqtt__alias_out(uvmqtt_session_t *s, const char *topic, size_t len,
                      uint16_t *alias, bool *known) {
  unsigned max =
      s->server_alias_max < ALIAS_OUT_MAX ? s->server_alias_max : ALIAS_OUT_MAX;
  *alias = 0;
  *known = false;
  if (!s->topic_alias_auto || max == 0 || s->version != UVMQTT_V5)
    return 0;
  uvmqtt_aliases_t *t = aliases(s);
  if (!t)
    return 0; /* no alias: still correct, just longer */
  if (max > t->max_out)
    max = t->max_out;
  if (max == 0)
    return 0;
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
  uvmqtt_aliases_t *t = aliases(s);
  if (!t)
    return UVMQTT_ENOMEM;
  if (!t->in) {
    t->in =
        uvmqtt__calloc((size_t)s->topic_alias_max_in + 1, sizeof(uvmqtt_str_t));
    if (!t->in)
      return UVMQTT_ENOMEM;
  }
  uvmqtt_str_t *slot = &t->in[a];
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
  struct out_alias *a = &s->aliases->e[alias - 1];
  uvmqtt__free(a->topic);
  a->topic = NULL;
  a->len = 0;
}
