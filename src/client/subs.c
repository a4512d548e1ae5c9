/* Subscriptions: the client owns them. subscribe / unsubscribe validate
 * the request and queue it; queued requests go out once connected and
 * again after a reconnect, and complete with UVMQTT_ECLOSED on close.
 * The table of subscriptions (pending or active) makes a subscribe of an
 * identical filter idempotent, and is what the client re-sends, once,
 * when the broker lost the session. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "client/client_int.h"
#include "props.h"

/* ---- the table of subscriptions ------------------------------------------
 * A list while the client holds few filters and has few requests queued
 * (what almost every client does: no memory beyond the records, and a
 * subscription's owner is found by walking the short queue); past
 * SUBS_LIST_MAX of either, an open-addressing hash table with linear
 * probing, where each record keeps its owner's seq, so that a gateway or
 * bridge holding tens of thousands of filters subscribes, settles,
 * re-subscribes and unsubscribes each in constant time. All records are
 * in one or the other, never both. */
#define SUBS_LIST_MAX 16
#define SUBS_TOMB ((sub_t *)(void *)&subs_tomb) /* compared, never followed */
static char subs_tomb;

/* sub_t.state: pending (an owner's answer will settle it); a waiting
 * request (SOP_WAIT) names it, so that the answer settling it walks the
 * queue for waiting requests (no other answer does). */
enum { SUB_PENDING = 1, SUB_WAITED = 2 };

static subs_big_t *big_of(const uvmqtt_client_t *c) {
  return c->rare ? c->rare->subs_big : NULL;
}

static bool indexed(const uvmqtt_client_t *c) {
  const subs_big_t *b = big_of(c);
  return b && b->slot;
}

/* The block, allocated on first use (NULL: out of memory). */
static subs_big_t *big_get(uvmqtt_client_t *c) {
  subs_big_t *b = big_of(c);
  if (b)
    return b;
  rare_t *r = uvmqtt__client_rare(c);
  if (!r || !(b = uvmqtt__calloc(1, sizeof(*b))))
    return NULL;
  for (sop_t *op = c->sub_ops; op; op = op->next)
    b->tail = op;
  r->subs_big = b;
  return b;
}

static uint32_t filter_hash(const char *f, size_t len) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < len; i++)
    h = (h ^ (uint8_t)f[i]) * 16777619u;
  return h;
}

/* The slot holding the filter, NULL: none. */
static sub_t **slot_of(const subs_big_t *b, const char *f, size_t len) {
  uint32_t mask = b->cap - 1;
  for (uint32_t i = filter_hash(f, len) & mask;; i = (i + 1) & mask) {
    sub_t *s = b->slot[i];
    if (!s)
      return NULL;
    if (s != SUBS_TOMB && s->len == len && memcmp(s->filter, f, len) == 0)
      return &b->slot[i];
  }
}

/* Places a record known to be absent; the table has room. */
static void slot_put(subs_big_t *b, sub_t *s) {
  uint32_t mask = b->cap - 1;
  uint32_t i = filter_hash(s->filter, s->len) & mask;
  while (b->slot[i] && b->slot[i] != SUBS_TOMB)
    i = (i + 1) & mask;
  if (b->slot[i] == SUBS_TOMB)
    b->tombs--;
  b->slot[i] = s;
  b->n++;
}

/* Room for `more` records: at most half the slots live, three quarters
 * used with the forgotten ones. Rehashes (and drops the forgotten) when
 * needed. UVMQTT_ENOMEM: the table is unchanged. */
static int table_room(subs_big_t *b, uint32_t more) {
  if ((b->n + more) * 2 <= b->cap && (b->n + b->tombs + more) * 4 <= b->cap * 3)
    return 0;
  uint32_t cap = 64;
  while (cap < (b->n + more) * 4)
    cap *= 2;
  sub_t **old = b->slot, **slot = uvmqtt__calloc(cap, sizeof(*slot));
  if (!slot)
    return UVMQTT_ENOMEM;
  uint32_t old_cap = b->cap;
  b->slot = slot;
  b->cap = cap;
  b->n = b->tombs = 0;
  for (uint32_t i = 0; i < old_cap; i++)
    if (old[i] && old[i] != SUBS_TOMB)
      slot_put(b, old[i]);
  uvmqtt__free(old);
  return 0;
}

static bool seq_after(uint32_t a, uint32_t b) {
  return (int32_t)(a - b) > 0;
}

/* The latest queued SUBSCRIBE request naming the filter (the owner of a
 * pending subscription), NULL: none. A walk of the queue: while it is
 * short (the list), when a table is built, and when a request fails to go
 * out. Re-subscribing requests go ahead of the queue: latest by seq. */
static sop_t *owner_of(const uvmqtt_client_t *c, const sub_t *s) {
  sop_t *owner = NULL;
  for (sop_t *op = c->sub_ops; op; op = op->next) {
    if (op->kind != SOP_SUB || (owner && !seq_after(op->seq, owner->seq)))
      continue;
    for (size_t i = 0; i < op->count; i++) {
      if (op->v[i].filter.len == s->len &&
          memcmp(op->v[i].filter.data, s->filter, s->len) == 0) {
        owner = op;
        break;
      }
    }
  }
  return owner;
}

/* Moves the list into a new table, all or nothing; the records then keep
 * their owners' seqs. UVMQTT_ENOMEM: still a list. */
static int table_build(uvmqtt_client_t *c) {
  uint32_t n = 0;
  for (const sub_t *s = c->subs; s; s = s->u.next)
    n++;
  subs_big_t *b = big_get(c);
  if (!b || table_room(b, n + 1) < 0)
    return UVMQTT_ENOMEM;
  uint32_t rank = b->rank + n; /* the list is newest first */
  while (c->subs) {
    sub_t *s = c->subs;
    c->subs = s->u.next;
    const sop_t *owner = s->state & SUB_PENDING ? owner_of(c, s) : NULL;
    s->u.t.owner = owner ? owner->seq : 0;
    s->u.t.rank = --rank;
    slot_put(b, s);
  }
  b->rank += n;
  return 0;
}

static sub_t *find_sub(const uvmqtt_client_t *c, const char *f, size_t len) {
  if (indexed(c)) {
    sub_t **p = slot_of(big_of(c), f, len);
    return p ? *p : NULL;
  }
  for (sub_t *s = c->subs; s; s = s->u.next)
    if (s->len == len && memcmp(s->filter, f, len) == 0)
      return s;
  return NULL;
}

/* A new record (active, no owner) for a filter known to be absent. NULL:
 * out of memory. */
static sub_t *add_sub(uvmqtt_client_t *c, const char *f, size_t len) {
  if (!indexed(c)) {
    size_t n = 0;
    for (const sub_t *t = c->subs; t && n < SUBS_LIST_MAX; t = t->u.next)
      n++;
    if (n >= SUBS_LIST_MAX)
      (void)table_build(c); /* out of memory: the list goes on */
  }
  if (indexed(c) && table_room(big_of(c), 1) < 0)
    return NULL;
  sub_t *s = uvmqtt__malloc(offsetof(sub_t, filter) + len);
  if (!s)
    return NULL;
  s->len = (uint16_t)len;
  s->options = 0;
  s->state = 0;
  memcpy(s->filter, f, len);
  if (indexed(c)) {
    s->u.t.owner = 0;
    s->u.t.rank = big_of(c)->rank++;
    slot_put(big_of(c), s);
  } else {
    s->u.next = c->subs;
    c->subs = s;
  }
  return s;
}

static void forget_sub(uvmqtt_client_t *c, const char *f, size_t len) {
  if (indexed(c)) {
    subs_big_t *b = big_of(c);
    sub_t **p = slot_of(b, f, len);
    if (p) {
      uvmqtt__free(*p);
      *p = SUBS_TOMB;
      b->n--;
      b->tombs++;
    }
    return;
  }
  for (sub_t **pp = &c->subs, *s; (s = *pp); pp = &s->u.next) {
    if (s->len == len && memcmp(s->filter, f, len) == 0) {
      *pp = s->u.next;
      uvmqtt__free(s);
      return;
    }
  }
}

/* The request becomes the owner of pending subscription s. */
static void own(uvmqtt_client_t *c, sub_t *s, const sop_t *op) {
  s->state |= SUB_PENDING;
  if (indexed(c))
    s->u.t.owner = op->seq;
}

/* True when op (answered or dropped: out of the queue) owns s. */
static bool owned_by(const uvmqtt_client_t *c, const sub_t *s,
                     const sop_t *op) {
  if (!(s->state & SUB_PENDING))
    return false;
  if (indexed(c))
    return s->u.t.owner == op->seq;
  const sop_t *later = owner_of(c, s);
  return !later || !seq_after(later->seq, op->seq);
}

/* s becomes active (its waiting requests may complete). */
static void settle(uvmqtt_client_t *c, sub_t *s) {
  s->state = 0;
  if (indexed(c))
    s->u.t.owner = 0;
}

/* ---- the request queue ----------------------------------------------------
 * Requests in submission order (re-subscribing ones go ahead). Past
 * SUBS_LIST_MAX of them the rare block keeps the last, so that queueing
 * stays constant time, and the subscriptions move to the table. */

static uint32_t next_seq(void) {
  static _Atomic uint32_t seq; /* unique per process: one counter will do */
  uint32_t v;
  while ((v = atomic_fetch_add_explicit(&seq, 1, memory_order_relaxed) + 1) ==
         0)
    ;
  return v;
}

static void append_op(uvmqtt_client_t *c, sop_t *op) {
  subs_big_t *b = big_of(c);
  op->next = NULL;
  if (b) {
    if (b->tail)
      b->tail->next = op;
    else
      c->sub_ops = op;
    b->tail = op;
    return;
  }
  size_t n = 0;
  sop_t **pp = &c->sub_ops;
  for (; *pp; pp = &(*pp)->next)
    n++;
  *pp = op;
  if (n >= SUBS_LIST_MAX)
    (void)table_build(c); /* out of memory: the walks go on */
}

/* Takes *pp (op) out of the queue. */
static void unlink_at(uvmqtt_client_t *c, sop_t **pp, sop_t *op) {
  subs_big_t *b = big_of(c);
  *pp = op->next;
  if (b && b->tail == op)
    b->tail = pp == &c->sub_ops
                  ? NULL
                  : (sop_t *)(void *)((char *)pp - offsetof(sop_t, next));
}

static void unlink_op(uvmqtt_client_t *c, sop_t *op) {
  for (sop_t **pp = &c->sub_ops; *pp; pp = &(*pp)->next) {
    if (*pp == op) {
      unlink_at(c, pp, op);
      return;
    }
  }
}

/* The request (queued already: the latest one) owns its filters as
 * pending subscriptions. */
static int own_subs(uvmqtt_client_t *c, sop_t *op) {
  for (size_t i = 0; i < op->count; i++) {
    const uvmqtt_str_t *f = &op->v[i].filter;
    sub_t *s = find_sub(c, f->data, f->len);
    if (s && !(s->state & SUB_PENDING)) {
      op->codes[2 * i] = s->options; /* kept should this one fail */
      op->codes[2 * i + 1] = 1;
    }
    if (!s && !(s = add_sub(c, f->data, f->len)))
      return UVMQTT_ENOMEM;
    own(c, s, op);
    s->options = op->v[i].options;
  }
  return 0;
}

/* A request that will never be answered (and is out of the queue) gives
 * up the subscriptions it owned: to the latest queued request naming
 * them; else an active subscription it was to replace (other options)
 * stays as it was, since the broker still has it; else they are
 * forgotten. True when one of them was waited for (the caller walks the
 * waiting requests). */
static bool disown_subs(uvmqtt_client_t *c, sop_t *op) {
  bool waited = false;
  for (size_t i = 0; i < op->count; i++) {
    sub_t *s = find_sub(c, op->v[i].filter.data, op->v[i].filter.len);
    if (!s || !owned_by(c, s, op))
      continue;
    const sop_t *heir = owner_of(c, s);
    if (heir) {
      own(c, s, heir);
    } else if (op->kind == SOP_SUB && op->codes[2 * i + 1]) {
      waited |= (s->state & SUB_WAITED) != 0;
      settle(c, s);
      s->options = op->codes[2 * i];
    } else {
      waited |= (s->state & SUB_WAITED) != 0;
      forget_sub(c, s->filter, s->len);
    }
  }
  return waited;
}

static sop_t *sop_new(uint8_t kind, const uvmqtt_subscription_t *v,
                      const char *const *names, size_t n) {
  size_t bytes = 0;
  for (size_t i = 0; i < n; i++)
    bytes += v ? v[i].filter.len : strlen(names[i]);
  size_t head = offsetof(sop_t, v) + n * sizeof(uvmqtt_subscription_t);
  size_t extra = kind == SOP_WAIT ? n : kind == SOP_SUB ? 2 * n : 0;
  sop_t *op = uvmqtt__malloc(head + extra + bytes);
  if (!op)
    return NULL;
  memset(op, 0, offsetof(sop_t, v));
  op->kind = kind;
  op->count = n;
  op->seq = next_seq();
  char *p = (char *)op + head;
  if (extra) {
    op->codes = (uint8_t *)p;
    memset(p, 0, extra);
    p += extra;
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
    if (s && (s->state & SUB_PENDING))
      return false;
    op->codes[i] = s ? (uint8_t)(s->options >> SUB_GRANTED_SHIFT) : 0x80;
  }
  return true;
}

/* The clients whose waiting requests are being completed on this thread:
 * a callback that settles more (an unsubscribe, an identical subscribe)
 * asks the pass under way for another round instead of walking the queue
 * under its feet. */
typedef struct wpass_s {
  struct wpass_s *up;
  const uvmqtt_client_t *c;
  bool again;
} wpass_t;
static _Thread_local wpass_t *wpasses;

/* Completes the waiting requests that are ready, in the order they were
 * made: the walk of the queue (callbacks only append to it) stops at the
 * first one still waiting, so that an answer settling a few filters costs
 * a few checks however many requests wait (the README's pattern after a
 * session loss: one per filter). A request behind one still waiting is
 * completed with it: what it waits for settles one of that one's filters
 * (answer, refusal or unsubscribe, each marked SUB_WAITED), and that walks
 * the queue again. Again while a callback asked for it. */
static void run_waiters(uvmqtt_client_t *c) {
  for (wpass_t *w = wpasses; w; w = w->up) {
    if (w->c == c) {
      w->again = true;
      return;
    }
  }
  wpass_t me = {wpasses, c, true};
  wpasses = &me;
  while (me.again) {
    me.again = false;
    for (sop_t **pp = &c->sub_ops, *op; (op = *pp);) {
      if (op->kind != SOP_WAIT) {
        pp = &op->next;
        continue;
      }
      if (!wait_ready(c, op))
        break;
      unlink_at(c, pp, op); /* *pp is the next one now */
      fire(c, op, 0, 0, op->codes, op->count, NULL);
      sop_free(op);
    }
  }
  wpasses = me.up;
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
  bool waited = false; /* a settled filter was waited for */
  if (op->kind == SOP_SUB) {
    for (size_t i = 0; i < op->count; i++) {
      sub_t *s = find_sub(c, op->v[i].filter.data, op->v[i].filter.len);
      if (!s || !owned_by(c, s, op))
        continue; /* replaced or unsubscribed since */
      waited |= (s->state & SUB_WAITED) != 0;
      if (status == 0 && i < count && codes[i] < 0x80) {
        settle(c, s);
        s->options |= (uint8_t)((codes[i] & 3) << SUB_GRANTED_SHIFT);
      } else {
        forget_sub(c, s->filter, s->len);
      }
    }
  }
  fire(c, op, status, id, codes, count, props);
  sop_free(op);
  if (status == 0 && waited)
    run_waiters(c);
}

/* Calls fn on every subscription; fn returns true to forget it (then
 * frees nothing itself). */
static void each_sub(uvmqtt_client_t *c, bool (*fn)(sub_t *, void *),
                     void *arg) {
  subs_big_t *b = big_of(c);
  for (uint32_t i = 0; b && b->slot && i < b->cap; i++) {
    sub_t *s = b->slot[i];
    if (s && s != SUBS_TOMB && fn(s, arg)) {
      uvmqtt__free(s);
      b->slot[i] = SUBS_TOMB;
      b->n--;
      b->tombs++;
    }
  }
  for (sub_t **pp = &c->subs, *s; (s = *pp);) {
    if (fn(s, arg)) {
      *pp = s->u.next;
      uvmqtt__free(s);
    } else {
      pp = &s->u.next;
    }
  }
}

typedef struct {
  bool keep;  /* re-subscribing: keep the active ones */
  bool nomem; /* some could not be listed */
  sub_t **active;
  size_t n, cap;
} resub_t;

/* The active subscriptions, to re-subscribe or to forget. */
static bool collect_active(sub_t *s, void *arg) {
  resub_t *r = arg;
  if (s->state & SUB_PENDING)
    return false;
  if (!r->keep)
    return true;
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 64;
    sub_t **a = uvmqtt__realloc(r->active, cap * sizeof(*a));
    if (!a) {
      r->nomem = true;
      return false;
    }
    r->active = a;
    r->cap = cap;
  }
  r->active[r->n++] = s;
  return false;
}

static int by_rank(const void *a, const void *b) {
  uint32_t x = (*(sub_t *const *)a)->u.t.rank,
           y = (*(sub_t *const *)b)->u.t.rank;
  return x < y ? -1 : x > y;
}

/* Filters per re-subscribing SUBSCRIBE, unless the broker takes fewer
 * (uvmqtt_options_set_max_filters). */
#define RESUB_BATCH 64

void uvmqtt__subs_connected(uvmqtt_client_t *c, bool session_present) {
  if (!session_present) {
    /* The broker forgot the active subscriptions: re-subscribe each once,
     * many filters per SUBSCRIBE, ahead of the queued requests. */
    resub_t r = {c->o.resubscribe, false, NULL, 0, 0};
    each_sub(c, collect_active, &r);
    /* In the order they were subscribed: a broker may keep a client's
     * subscriptions in that order (mosquitto 2.0 looks each one up in an
     * array when unsubscribed: unsubscribing in the usual order cost it
     * 2.5 times the CPU after a re-subscribe in hash order). */
    if (indexed(c)) {
      qsort(r.active, r.n, sizeof(*r.active), by_rank);
    } else {
      for (size_t i = 0; i < r.n / 2; i++) {
        sub_t *t = r.active[i];
        r.active[i] = r.active[r.n - 1 - i];
        r.active[r.n - 1 - i] = t;
      }
    }
    if (r.nomem)
      uvmqtt__client_log(c, UVMQTT_LOG_ERROR, "out of memory re-subscribing");
    sop_t **at = &c->sub_ops;
    size_t batch = RESUB_BATCH, max = CX(c)->max_filters;
    if (max && max < batch)
      batch = max;
    for (size_t done = 0; done < r.n;) {
      size_t k = r.n - done > batch ? batch : r.n - done;
      uvmqtt_subscription_t v[RESUB_BATCH];
      for (size_t i = 0; i < k; i++) {
        const sub_t *s = r.active[done + i];
        v[i].filter.data = s->filter;
        v[i].filter.len = s->len;
        v[i].options = s->options & 0x3F;
      }
      sop_t *op = sop_new(SOP_SUB, v, NULL, k);
      if (!op) {
        uvmqtt__client_log(c, UVMQTT_LOG_ERROR, "out of memory re-subscribing");
        break;
      }
      op->next = *at;
      *at = op;
      at = &op->next;
      subs_big_t *b = big_of(c);
      if (b && !op->next)
        b->tail = op;
      for (size_t i = 0; i < k; i++) {
        /* Active for the client: kept should this request fail. */
        op->codes[2 * i] = r.active[done + i]->options;
        op->codes[2 * i + 1] = 1;
        own(c, r.active[done + i], op);
      }
      uvmqtt__client_log(c, UVMQTT_LOG_INFO, "re-subscribing %zu filter(s)", k);
      done += k;
    }
    uvmqtt__free(r.active);
  }
  /* Those that cannot go out leave the queue first and complete after
   * the walk, whose next step a callback could otherwise free. */
  sop_t *failed = NULL, **ftail = &failed;
  for (sop_t **pp = &c->sub_ops, *op; (op = *pp);) {
    int rc = op->kind == SOP_WAIT || op->sent ? 0 : send_op(c, op);
    if (rc >= 0) {
      pp = &op->next;
      continue;
    }
    uvmqtt__client_log(c, UVMQTT_LOG_ERROR, "cannot send %s: %s",
                       op->kind == SOP_SUB ? "SUBSCRIBE" : "UNSUBSCRIBE",
                       uvmqtt_strerror(rc));
    unlink_at(c, pp, op);
    op->packet_id = (uint16_t)-rc; /* the error, until it completes */
    op->next = NULL;
    *ftail = op;
    ftail = &op->next;
  }
  bool waited = false;
  for (sop_t *op = failed; op; op = op->next)
    waited |= disown_subs(c, op);
  while (failed) {
    sop_t *op = failed;
    failed = op->next;
    fire(c, op, -(int)op->packet_id, 0, NULL, 0, NULL);
    sop_free(op);
  }
  if (waited)
    run_waiters(c);
}

void uvmqtt__subs_cancel_all(uvmqtt_client_t *c) {
  while (c->sub_ops) {
    sop_t *op = c->sub_ops;
    unlink_at(c, &c->sub_ops, op);
    fire(c, op, UVMQTT_ECLOSED, 0, NULL, 0, NULL);
    sop_free(op);
  }
}

static bool forget_all(sub_t *s, void *arg) {
  (void)s;
  (void)arg;
  return true;
}

void uvmqtt__subs_free(uvmqtt_client_t *c) {
  each_sub(c, forget_all, NULL);
  while (c->sub_ops) {
    sop_t *op = c->sub_ops;
    unlink_at(c, &c->sub_ops, op);
    sop_free(op);
  }
  subs_big_t *b = big_of(c);
  if (b) {
    uvmqtt__free(b->slot);
    uvmqtt__free(b);
    c->rare->subs_big = NULL;
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
  append_op(c, op); /* first: the latest request owns its filters */
  if (op->kind == SOP_SUB && own_subs(c, op) < 0) {
    unlink_op(c, op);
    bool waited = disown_subs(c, op);
    sop_free(op);
    if (waited) {
      ENTER(c);
      run_waiters(c);
      LEAVE(c);
    }
    return UVMQTT_ENOMEM;
  }
  bool waited = false; /* a forgotten filter was waited for */
  if (op->kind == SOP_UNSUB) {
    for (size_t i = 0; i < op->count; i++) {
      const uvmqtt_str_t *f = &op->v[i].filter;
      const sub_t *s = find_sub(c, f->data, f->len);
      if (s) {
        waited |= (s->state & SUB_WAITED) != 0;
        forget_sub(c, f->data, f->len);
      }
    }
  }
  int rc = 0;
  ENTER(c);
  if (c->state == C_CONNECTED && (rc = send_op(c, op)) < 0) {
    unlink_op(c, op);
    if (op->kind == SOP_SUB)
      waited |= disown_subs(c, op);
    sop_free(op);
  } else {
    rc = op->packet_id;
  }
  /* An unsubscribe, or a subscribe that failed, may settle requests
   * waiting for those filters. */
  if (waited)
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

/* More filters than the broker takes in one packet
 * (uvmqtt_options_set_max_filters). */
static bool too_many(const uvmqtt_client_t *c, size_t count) {
  unsigned max = CX(c)->max_filters;
  return max && count > max;
}

int uvmqtt_subscribe_many(uvmqtt_client_t *c, const uvmqtt_subscription_t *subs,
                          size_t count, const uvmqtt_props_t *props,
                          uvmqtt_subscribe_cb cb, void *arg) {
  if (!c || !subs || count == 0 || count > UINT16_MAX || too_many(c, count))
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
  if (!wait_ready(c, op)) {
    /* Completed once the answer settling the last of them came. */
    for (size_t i = 0; i < count; i++) {
      sub_t *s = find_sub(c, subs[i].filter.data, subs[i].filter.len);
      if (s && (s->state & SUB_PENDING))
        s->state |= SUB_WAITED;
    }
    append_op(c, op);
    return 0;
  }
  ENTER(c);
  fire(c, op, 0, 0, op->codes, op->count, NULL);
  LEAVE(c);
  sop_free(op);
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
  if (!c || !filters || count == 0 || count > UINT16_MAX || too_many(c, count))
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
