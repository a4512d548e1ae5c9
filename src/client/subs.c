/* Subscriptions: the client owns them. subscribe / unsubscribe validate
 * the request and queue it; queued requests go out once connected and
 * again after a reconnect, and complete with UVMQTT_ECLOSED on close.
 * The table of subscriptions (pending or active) makes a subscribe of an
 * identical filter idempotent, and is what the client re-sends, once,
 * when the broker lost the session. */
#include <string.h>

#include "alloc.h"
#include "client/client_int.h"
#include "props.h"

static sub_t *find_sub(const uvmqtt_client_t *c, const char *f, size_t len) {
  for (sub_t *s = c->subs; s; s = s->next)
    if (s->len == len && memcmp(s->filter, f, len) == 0)
      return s;
  return NULL;
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

/* The owner of a pending subscription: the latest queued SUBSCRIBE request
 * naming its filter (NULL: none queued). */
static sop_t *owner_of(const uvmqtt_client_t *c, const sub_t *s) {
  sop_t *owner = NULL;
  for (sop_t *op = c->sub_ops; op; op = op->next) {
    if (op->kind != SOP_SUB)
      continue;
    for (size_t i = 0; i < op->count; i++)
      if (op->v[i].filter.len == s->len &&
          memcmp(op->v[i].filter.data, s->filter, s->len) == 0)
        owner = op;
  }
  return owner;
}

/* The request's filters become pending subscriptions it owns. */
static int own_subs(uvmqtt_client_t *c, sop_t *op) {
  for (size_t i = 0; i < op->count; i++) {
    const uvmqtt_str_t *f = &op->v[i].filter;
    sub_t *s = find_sub(c, f->data, f->len);
    if (!s) {
      if (!(s = uvmqtt__malloc(offsetof(sub_t, filter) + f->len)))
        return UVMQTT_ENOMEM;
      s->len = (uint16_t)f->len;
      memcpy(s->filter, f->data, f->len);
      s->next = c->subs;
      c->subs = s;
    }
    s->pending = true;
    s->options = op->v[i].options;
  }
  return 0;
}

/* Forgets the pending subscriptions a request that will never be
 * answered (and is out of the queue) owned: those no queued request
 * names. */
static void disown_subs(uvmqtt_client_t *c, sop_t *op) {
  for (size_t i = 0; i < op->count; i++) {
    sub_t *s = find_sub(c, op->v[i].filter.data, op->v[i].filter.len);
    if (s && s->pending && !owner_of(c, s))
      forget_sub(c, s->filter, s->len);
  }
}

static sop_t *sop_new(uint8_t kind, const uvmqtt_subscription_t *v,
                      const char *const *names, size_t n) {
  size_t bytes = 0;
  for (size_t i = 0; i < n; i++)
    bytes += v ? v[i].filter.len : strlen(names[i]);
  size_t head = offsetof(sop_t, v) + n * sizeof(uvmqtt_subscription_t);
  sop_t *op = uvmqtt__malloc(head + (kind == SOP_WAIT ? n : 0) + bytes);
  if (!op)
    return NULL;
  memset(op, 0, offsetof(sop_t, v));
  op->kind = kind;
  op->count = n;
  char *p = (char *)op + head;
  if (kind == SOP_WAIT) {
    op->codes = (uint8_t *)p;
    p += n;
  }
  for (size_t i = 0; i < n; i++) {
    const char *f = v ? v[i].filter.data : names[i];
    size_t len = v ? v[i].filter.len : strlen(names[i]);
    memcpy(p, f, len);
    op->v[i].filter.data = p;
    op->v[i].filter.len = len;
    op->v[i].options = v ? v[i].options : 0;
    p += len;
  }
  return op;
}

static void sop_free(sop_t *op) {
  uvmqtt__free(op->props);
  uvmqtt__free(op);
}

static void unlink_op(uvmqtt_client_t *c, sop_t *op) {
  for (sop_t **pp = &c->sub_ops; *pp; pp = &(*pp)->next) {
    if (*pp == op) {
      *pp = op->next;
      return;
    }
  }
}

static void append_op(uvmqtt_client_t *c, sop_t *op) {
  sop_t **pp = &c->sub_ops;
  while (*pp)
    pp = &(*pp)->next;
  op->next = NULL;
  *pp = op;
}

/* Hands a request to the session. 0, or the session's error. */
static int send_op(uvmqtt_client_t *c, sop_t *op) {
  int rc;
  if (op->kind == SOP_SUB) {
    rc = uvmqtt__session_subscribe(c->session, op->v, op->count, op->props,
                                   (uvmqtt_session_fn)uvmqtt__subs_done, op);
  } else {
    uvmqtt_str_t small[8] = {{0}}, *f = small;
    if (op->count > 8 && !(f = uvmqtt__malloc(op->count * sizeof(*f))))
      return UVMQTT_ENOMEM;
    for (size_t i = 0; i < op->count; i++)
      f[i] = op->v[i].filter;
    rc = uvmqtt__session_unsubscribe(c->session, f, op->count, op->props,
                                     (uvmqtt_session_fn)uvmqtt__subs_done, op);
    if (f != small)
      uvmqtt__free(f);
  }
  if (rc < 0)
    return rc;
  op->sent = true;
  op->packet_id = (uint16_t)rc;
  return 0;
}

static void fire(uvmqtt_client_t *c, sop_t *op, int status, uint16_t id,
                 const uint8_t *codes, size_t count,
                 const uvmqtt_props_t *props) {
  if (!op->cb)
    return;
  uvmqtt_sub_result_t r = {
      status, op->kind == SOP_UNSUB ? UVMQTT_UNSUBACK : UVMQTT_SUBACK,
      id,     count ? codes : NULL,
      count,  c->o.version == UVMQTT_V5 ? props : NULL};
  op->cb(c, &r, op->arg);
}

/* A waiting request is ready once none of its filters is pending: its
 * codes are those the subscriptions were granted (0x80 for one that was
 * refused or unsubscribed meanwhile). */
static bool wait_ready(const uvmqtt_client_t *c, sop_t *op) {
  for (size_t i = 0; i < op->count; i++) {
    const sub_t *s = find_sub(c, op->v[i].filter.data, op->v[i].filter.len);
    if (s && s->pending)
      return false;
    op->codes[i] = s ? (uint8_t)(s->options >> SUB_GRANTED_SHIFT) : 0x80;
  }
  return true;
}

/* Completes every waiting request that is ready. Callbacks may queue new
 * requests: the scan starts again after each. */
static void run_waiters(uvmqtt_client_t *c) {
  bool again = true;
  while (again) {
    again = false;
    for (sop_t *op = c->sub_ops; op; op = op->next) {
      if (op->kind == SOP_WAIT && wait_ready(c, op)) {
        unlink_op(c, op);
        fire(c, op, 0, 0, op->codes, op->count, NULL);
        sop_free(op);
        again = true;
        break;
      }
    }
  }
}

void uvmqtt__subs_done(uvmqtt_client_t *c, sop_t *op, int status, uint16_t id,
                       const uint8_t *codes, size_t count,
                       const uvmqtt_props_t *props) {
  if (status < 0 && c->state != C_CLOSING) {
    /* The connection was lost before the answer: sent again later. */
    op->sent = false;
    op->packet_id = 0;
    return;
  }
  unlink_op(c, op);
  if (op->kind == SOP_SUB) {
    for (size_t i = 0; i < op->count; i++) {
      sub_t *s = find_sub(c, op->v[i].filter.data, op->v[i].filter.len);
      if (!s || !s->pending || owner_of(c, s))
        continue; /* replaced or unsubscribed since */
      if (status == 0 && i < count && codes[i] < 0x80) {
        s->pending = false;
        s->options |= (uint8_t)((codes[i] & 3) << SUB_GRANTED_SHIFT);
      } else {
        forget_sub(c, s->filter, s->len);
      }
    }
  }
  fire(c, op, status, id, codes, count, props);
  sop_free(op);
  if (status == 0)
    run_waiters(c);
}

void uvmqtt__subs_connected(uvmqtt_client_t *c, bool session_present) {
  if (!session_present) {
    /* The broker forgot the active subscriptions: re-subscribe each once,
     * many filters per SUBSCRIBE, ahead of the queued requests. */
    size_t n = 0;
    for (sub_t **pp = &c->subs, *s; (s = *pp);) {
      if (!s->pending && !c->o.resubscribe) {
        *pp = s->next;
        uvmqtt__free(s);
        continue;
      }
      n += !s->pending;
      pp = &s->next;
    }
    sop_t **at = &c->sub_ops;
    for (sub_t *s = c->subs; n > 0;) {
      size_t take = n > 64 ? 64 : n;
      uvmqtt_subscription_t v[64];
      size_t k = 0;
      for (; s && k < take; s = s->next) {
        if (s->pending)
          continue;
        v[k].filter.data = s->filter;
        v[k].filter.len = s->len;
        v[k].options = s->options & 0x3F;
        k++;
      }
      sop_t *op = sop_new(SOP_SUB, v, NULL, k);
      if (!op) {
        uvmqtt__client_log(c, UVMQTT_LOG_ERROR, "out of memory re-subscribing");
        break;
      }
      op->next = *at;
      *at = op;
      at = &op->next;
      for (size_t i = 0; i < k; i++)
        find_sub(c, v[i].filter.data, v[i].filter.len)->pending = true;
      uvmqtt__client_log(c, UVMQTT_LOG_INFO, "re-subscribing %zu filter(s)", k);
      n -= k;
    }
  }
  for (sop_t *op = c->sub_ops, *next; op; op = next) {
    next = op->next;
    if (op->kind == SOP_WAIT || op->sent)
      continue;
    int rc = send_op(c, op);
    if (rc < 0) {
      uvmqtt__client_log(c, UVMQTT_LOG_ERROR, "cannot send %s: %s",
                         op->kind == SOP_SUB ? "SUBSCRIBE" : "UNSUBSCRIBE",
                         uvmqtt_strerror(rc));
      unlink_op(c, op);
      disown_subs(c, op);
      fire(c, op, rc, 0, NULL, 0, NULL);
      sop_free(op);
    }
  }
}

void uvmqtt__subs_cancel_all(uvmqtt_client_t *c) {
  while (c->sub_ops) {
    sop_t *op = c->sub_ops;
    c->sub_ops = op->next;
    fire(c, op, UVMQTT_ECLOSED, 0, NULL, 0, NULL);
    sop_free(op);
  }
}

void uvmqtt__subs_free(uvmqtt_client_t *c) {
  while (c->subs) {
    sub_t *s = c->subs;
    c->subs = s->next;
    uvmqtt__free(s);
  }
  while (c->sub_ops) {
    sop_t *op = c->sub_ops;
    c->sub_ops = op->next;
    sop_free(op);
  }
}

/* Queues a request: sent at once when connected (its packet id is
 * returned), else when the connection is up (0). */
static int submit(uvmqtt_client_t *c, sop_t *op, const uvmqtt_props_t *props,
                  uvmqtt_subscribe_cb cb, void *arg) {
  op->cb = cb;
  op->arg = arg;
  if (props && c->o.version == UVMQTT_V5 &&
      uvmqtt__props_dup(props, &op->props) < 0) {
    sop_free(op);
    return UVMQTT_ENOMEM;
  }
  if (op->kind == SOP_SUB && own_subs(c, op) < 0) {
    disown_subs(c, op);
    sop_free(op);
    return UVMQTT_ENOMEM;
  }
  if (op->kind == SOP_UNSUB)
    for (size_t i = 0; i < op->count; i++)
      forget_sub(c, op->v[i].filter.data, op->v[i].filter.len);
  int rc = 0;
  ENTER(c);
  if (c->state == C_CONNECTED && (rc = send_op(c, op)) < 0) {
    if (op->kind == SOP_SUB)
      disown_subs(c, op);
    sop_free(op);
  } else {
    append_op(c, op);
    rc = op->packet_id;
  }
  /* An unsubscribe may settle requests waiting for those filters. */
  if (rc >= 0 && op->kind == SOP_UNSUB)
    run_waiters(c);
  LEAVE(c);
  return rc;
}

/* True when every filter is already subscribed, or being subscribed,
 * with the same options. */
static bool all_held(const uvmqtt_client_t *c,
                     const uvmqtt_subscription_t *subs, size_t count) {
  for (size_t i = 0; i < count; i++) {
    const sub_t *s = find_sub(c, subs[i].filter.data, subs[i].filter.len);
    if (!s || (s->options & 0x3F) != subs[i].options)
      return false;
  }
  return true;
}

int uvmqtt_subscribe_many(uvmqtt_client_t *c, const uvmqtt_subscription_t *subs,
                          size_t count, const uvmqtt_props_t *props,
                          uvmqtt_subscribe_cb cb, void *arg) {
  if (!c || !subs || count == 0 || count > UINT16_MAX)
    return UVMQTT_EINVAL;
  if (c->state == C_CLOSING || c->close_requested)
    return UVMQTT_ECLOSED;
  for (size_t i = 0; i < count; i++) {
    if (!subs[i].filter.data)
      return UVMQTT_EINVAL;
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
  bool same = !props && all_held(c, subs, count);
  sop_t *op = sop_new(same ? SOP_WAIT : SOP_SUB, subs, NULL, count);
  if (!op)
    return UVMQTT_ENOMEM;
  if (!same)
    return submit(c, op, props, cb, arg);
  /* Idempotent: nothing is sent; cb fires with the pending SUBACK's
   * result, or now when every filter is active. */
  op->cb = cb;
  op->arg = arg;
  append_op(c, op);
  ENTER(c);
  run_waiters(c);
  LEAVE(c);
  return 0;
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
  if (!c || !filters || count == 0 || count > UINT16_MAX)
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
  sop_t *op = sop_new(SOP_UNSUB, NULL, filters, count);
  if (!op)
    return UVMQTT_ENOMEM;
  return submit(c, op, props, cb, arg);
}

int uvmqtt_unsubscribe(uvmqtt_client_t *c, const char *filter,
                       uvmqtt_subscribe_cb cb, void *arg) {
  return uvmqtt_unsubscribe_many(c, &filter, 1, NULL, cb, arg);
}
