/* One-shot publishing and subscribing, the thread-safe bridge and the
 * loop thread (include/uvmqtt/helpers.h). Built on the public client API,
 * and the session's one call for a thread that ends. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "session/session.h"
#include "uvmqtt.h"
#include "uvmqtt/helpers.h"

/* ---- one-shot publishing ------------------------------------------------ */

/* A job: one client, connected once, ended by its own logic or by the
 * first failure, reported once after the client closed. Publishing jobs
 * count pending messages; subscribing jobs collect messages (`want` of
 * them) or hand each to the application until stopped. */
struct uvmqtt_sub_job_s {
  uvmqtt_client_t *c;
  size_t pending;
  int status;
  bool connected_once;
  bool finishing;
  bool silent;   /* a start error: the caller has its answer already */
  bool retained; /* subscribing: retained messages count */
  uvmqtt_oneshot_cb cb;
  void *arg;
  /* Collecting (uvmqtt_subscribe_simple). */
  uvmqtt_collect_cb collect_cb;
  uvmqtt_message_t **msgs;
  size_t nmsgs, want;
  /* Handing over (uvmqtt_subscribe_callback). */
  uvmqtt_message_cb msg_cb;
};
typedef struct uvmqtt_sub_job_s oneshot_t;

static void oneshot_closed(uvmqtt_client_t *c) {
  oneshot_t *j = uvmqtt_client_get_data(c);
  if (!j->silent && j->collect_cb)
    j->collect_cb(j->status, (const uvmqtt_message_t *const *)j->msgs, j->nmsgs,
                  j->arg);
  else if (!j->silent && j->cb)
    j->cb(j->status, j->arg);
  for (size_t i = 0; i < j->nmsgs; i++)
    uvmqtt_message_free(j->msgs[i]);
  uvmqtt__free(j->msgs);
  uvmqtt__free(j);
}

static void oneshot_finish(oneshot_t *j, int status) {
  if (j->status == 0)
    j->status = status;
  if (j->finishing)
    return;
  j->finishing = true;
  /* DISCONNECT first so the broker sees a normal end (no will). */
  if (uvmqtt_client_is_connected(j->c))
    uvmqtt_client_disconnect(j->c);
  uvmqtt_client_close(j->c, oneshot_closed);
}

static void oneshot_published(uvmqtt_client_t *c,
                              const uvmqtt_pub_result_t *res, void *arg) {
  int status = res->status;
  oneshot_t *j = arg;
  (void)c;
  if (status < 0 && j->status == 0)
    j->status = status;
  if (--j->pending == 0 && !j->finishing)
    oneshot_finish(j, 0);
}

static void oneshot_connected(uvmqtt_client_t *c, int status,
                              const uvmqtt_connack_t *ack, void *arg) {
  oneshot_t *j = arg;
  (void)c;
  if (status == 0) {
    j->connected_once = true;
    return;
  }
  /* The first attempt decides; later ones are the client's business unless
   * retrying cannot help (the client then stops too). */
  bool retryable = status == UVMQTT_EREFUSED && ack
                       ? uvmqtt_connack_is_retryable(ack->reason_code)
                       : uvmqtt_err_is_retryable(status);
  if (!j->connected_once || !retryable)
    oneshot_finish(j, status);
}

/* A lost connection ends the job when the client will not reconnect by
 * itself: its messages would otherwise wait for a connect nobody makes. */
static void oneshot_disconnected(uvmqtt_client_t *c, int status,
                                 const uvmqtt_reason_t *reason, void *arg) {
  oneshot_t *j = arg;
  (void)reason;
  if (status != 0 && !j->finishing && !uvmqtt_client_get_reconnect(c))
    oneshot_finish(j, status);
}

int uvmqtt_publish_multiple(uv_loop_t *loop, const uvmqtt_options_t *opts,
                            const char *uri, const uvmqtt_oneshot_msg_t *msgs,
                            size_t n, uvmqtt_oneshot_cb cb, void *arg) {
  if (!loop || !uri || !msgs || n == 0 || !cb)
    return UVMQTT_EINVAL;
  for (size_t i = 0; i < n; i++) {
    if (!msgs[i].topic || (!msgs[i].payload && msgs[i].payload_len))
      return UVMQTT_EINVAL;
    if (msgs[i].qos < 0 || msgs[i].qos > 2)
      return UVMQTT_EQOS;
    int rc = uvmqtt_topic_validate(msgs[i].topic, strlen(msgs[i].topic));
    if (rc < 0)
      return rc;
  }
  oneshot_t *j = uvmqtt__calloc(1, sizeof(*j));
  if (!j)
    return UVMQTT_ENOMEM;
  j->cb = cb;
  j->arg = arg;
  int rc = uvmqtt_client_new(loop, opts, &j->c);
  if (rc < 0) {
    uvmqtt__free(j);
    return rc;
  }
  uvmqtt_client_set_data(j->c, j);
  uvmqtt_client_on_connect(j->c, oneshot_connected, j);
  uvmqtt_client_on_disconnect(j->c, oneshot_disconnected, j);
  /* Messages wait in the client's queue until the connection is up. */
  for (size_t i = 0; i < n && rc >= 0; i++) {
    uvmqtt_publish_opts_t po;
    memset(&po, 0, sizeof(po));
    po.topic = msgs[i].topic;
    po.payload = msgs[i].payload;
    po.payload_len = msgs[i].payload_len;
    po.qos = msgs[i].qos;
    po.retain = msgs[i].retain;
    po.props = msgs[i].props;
    rc = uvmqtt_publish_ex(j->c, &po, oneshot_published, j);
    if (rc >= 0)
      j->pending++;
  }
  if (rc >= 0)
    rc = uvmqtt_client_connect_uri(j->c, uri);
  if (rc < 0) {
    /* Queued messages complete with UVMQTT_ECLOSED into a silent job. */
    j->silent = true;
    j->finishing = true;
    uvmqtt_client_close(j->c, oneshot_closed);
    return rc;
  }
  return 0;
}

int uvmqtt_publish_single(uv_loop_t *loop, const uvmqtt_options_t *opts,
                          const char *uri, const char *topic,
                          const void *payload, size_t len, int qos, bool retain,
                          uvmqtt_oneshot_cb cb, void *arg) {
  uvmqtt_oneshot_msg_t m;
  memset(&m, 0, sizeof(m));
  m.topic = topic;
  m.payload = payload;
  m.payload_len = len;
  m.qos = qos;
  m.retain = retain;
  return uvmqtt_publish_multiple(loop, opts, uri, &m, 1, cb, arg);
}

typedef struct {
  int status;
  bool done;
} sync_result_t;

static void sync_done(int status, void *arg) {
  sync_result_t *r = arg;
  r->status = status;
  r->done = true;
}

int uvmqtt_publish_multiple_sync(const uvmqtt_options_t *opts, const char *uri,
                                 const uvmqtt_oneshot_msg_t *msgs, size_t n) {
  uv_loop_t loop;
  sync_result_t r = {0, false};
  int rc = uv_loop_init(&loop);
  if (rc < 0)
    return rc;
  rc = uvmqtt_publish_multiple(&loop, opts, uri, msgs, n, sync_done, &r);
  /* Even a start error may leave a client closing on the loop. */
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  if (rc < 0)
    return rc;
  return r.done ? r.status : UVMQTT_ESTATE;
}

int uvmqtt_publish_single_sync(const uvmqtt_options_t *opts, const char *uri,
                               const char *topic, const void *payload,
                               size_t len, int qos, bool retain) {
  uvmqtt_oneshot_msg_t m;
  memset(&m, 0, sizeof(m));
  m.topic = topic;
  m.payload = payload;
  m.payload_len = len;
  m.qos = qos;
  m.retain = retain;
  return uvmqtt_publish_multiple_sync(opts, uri, &m, 1);
}

/* ---- one-shot subscribing ----------------------------------------------- */

static void sub_job_message(uvmqtt_client_t *c, const uvmqtt_message_t *m,
                            void *arg) {
  oneshot_t *j = arg;
  if (j->finishing || (m->retain && !j->retained))
    return;
  if (j->msg_cb) {
    j->msg_cb(c, m, j->arg);
    return;
  }
  int rc = uvmqtt_message_copy(&j->msgs[j->nmsgs], m);
  if (rc < 0) {
    oneshot_finish(j, rc);
    return;
  }
  if (++j->nmsgs == j->want)
    oneshot_finish(j, 0);
}

static void sub_job_subscribed(uvmqtt_client_t *c, const uvmqtt_sub_result_t *r,
                               void *arg) {
  oneshot_t *j = arg;
  (void)c;
  int status = r->status;
  for (size_t i = 0; status == 0 && i < r->count; i++)
    if (r->codes[i] >= 0x80)
      status = UVMQTT_EREJECTED;
  if (status < 0 && !j->finishing)
    oneshot_finish(j, status);
}

/* The common start of both subscribing jobs. */
static int sub_job_start(uv_loop_t *loop, const uvmqtt_options_t *opts,
                         const char *uri, const char *const *filters,
                         size_t nfilters, int qos, bool retained,
                         oneshot_t *j) {
  int rc = 0;
  if (!loop || !uri || !filters || nfilters == 0)
    rc = UVMQTT_EINVAL;
  else if (qos < 0 || qos > 2)
    rc = UVMQTT_EQOS;
  for (size_t i = 0; rc == 0 && i < nfilters; i++)
    rc = filters[i] ? uvmqtt_filter_validate(filters[i], strlen(filters[i]))
                    : UVMQTT_EINVAL;
  if (rc == 0)
    rc = uvmqtt_client_new(loop, opts, &j->c);
  if (rc < 0) {
    uvmqtt__free(j->msgs);
    uvmqtt__free(j);
    return rc;
  }
  j->retained = retained;
  uvmqtt_client_set_data(j->c, j);
  uvmqtt_client_on_connect(j->c, oneshot_connected, j);
  uvmqtt_client_on_disconnect(j->c, oneshot_disconnected, j);
  uvmqtt_client_on_message(j->c, sub_job_message, j);
  /* Queued until connected; the client re-subscribes after a session
   * loss by itself. */
  for (size_t i = 0; rc >= 0 && i < nfilters; i++)
    rc = uvmqtt_subscribe(j->c, filters[i], qos, sub_job_subscribed, j);
  if (rc >= 0)
    rc = uvmqtt_client_connect_uri(j->c, uri);
  if (rc < 0) {
    j->silent = true;
    j->finishing = true;
    uvmqtt_client_close(j->c, oneshot_closed);
    return rc;
  }
  return 0;
}

int uvmqtt_subscribe_simple(uv_loop_t *loop, const uvmqtt_options_t *opts,
                            const char *uri, const char *const *filters,
                            size_t nfilters, int qos, size_t count,
                            bool retained, uvmqtt_collect_cb cb, void *arg) {
  if (!cb || count == 0 || count > SIZE_MAX / sizeof(uvmqtt_message_t *))
    return UVMQTT_EINVAL;
  oneshot_t *j = uvmqtt__calloc(1, sizeof(*j));
  if (!j)
    return UVMQTT_ENOMEM;
  if (!(j->msgs = uvmqtt__calloc(count, sizeof(*j->msgs)))) {
    uvmqtt__free(j);
    return UVMQTT_ENOMEM;
  }
  j->want = count;
  j->collect_cb = cb;
  j->arg = arg;
  return sub_job_start(loop, opts, uri, filters, nfilters, qos, retained, j);
}

int uvmqtt_subscribe_callback(uv_loop_t *loop, const uvmqtt_options_t *opts,
                              const char *uri, const char *const *filters,
                              size_t nfilters, int qos, bool retained,
                              uvmqtt_message_cb msg_cb,
                              uvmqtt_oneshot_cb done_cb, void *arg,
                              uvmqtt_sub_job_t **out) {
  if (!msg_cb || !done_cb || !out)
    return UVMQTT_EINVAL;
  oneshot_t *j = uvmqtt__calloc(1, sizeof(*j));
  if (!j)
    return UVMQTT_ENOMEM;
  j->msg_cb = msg_cb;
  j->cb = done_cb;
  j->arg = arg;
  int rc = sub_job_start(loop, opts, uri, filters, nfilters, qos, retained, j);
  if (rc == 0)
    *out = j;
  return rc;
}

void uvmqtt_subscribe_callback_stop(uvmqtt_sub_job_t *j) {
  if (j && !j->finishing)
    oneshot_finish(j, 0);
}

typedef struct {
  int status;
  bool done;
  uvmqtt_message_t **msgs;
  size_t n;
} collect_result_t;

/* Takes the job's copies: they outlive its client. */
static void collect_done(int status, const uvmqtt_message_t *const *msgs,
                         size_t n, void *arg) {
  collect_result_t *r = arg;
  r->status = status;
  r->done = true;
  if (status < 0 || !(r->msgs = uvmqtt__calloc(n ? n : 1, sizeof(*r->msgs))))
    return;
  for (size_t i = 0; i < n; i++)
    if (uvmqtt_message_copy(&r->msgs[r->n], msgs[i]) == 0)
      r->n++;
  if (r->n < n)
    r->status = UVMQTT_ENOMEM;
}

int uvmqtt_subscribe_simple_sync(const uvmqtt_options_t *opts, const char *uri,
                                 const char *const *filters, size_t nfilters,
                                 int qos, size_t count, bool retained,
                                 uvmqtt_message_t ***msgs) {
  uv_loop_t loop;
  collect_result_t r;
  memset(&r, 0, sizeof(r));
  if (!msgs || count > INT_MAX)
    return UVMQTT_EINVAL;
  *msgs = NULL;
  int rc = uv_loop_init(&loop);
  if (rc < 0)
    return rc;
  rc = uvmqtt_subscribe_simple(&loop, opts, uri, filters, nfilters, qos, count,
                               retained, collect_done, &r);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  if (rc == 0)
    rc = r.done ? r.status : UVMQTT_ESTATE;
  if (rc < 0) {
    uvmqtt_messages_free(r.msgs, r.n);
    return rc;
  }
  *msgs = r.msgs;
  return (int)r.n;
}

void uvmqtt_messages_free(uvmqtt_message_t **msgs, size_t n) {
  if (!msgs)
    return;
  for (size_t i = 0; i < n; i++)
    uvmqtt_message_free(msgs[i]);
  uvmqtt__free(msgs);
}

/* ---- the thread-safe bridge ---------------------------------------------- */

typedef struct tsnode_s {
  struct tsnode_s *next;
  uvmqtt_publish_cb cb;
  void *arg;
  size_t payload_len;
  int qos;
  bool retain;
  char *payload;
  char topic[]; /* NUL-terminated, payload follows */
} tsnode_t;

struct uvmqtt_bridge_s {
  uvmqtt_client_t *c;
  uv_async_t async;
  uv_mutex_t mu; /* guards head/tail */
  tsnode_t *head, **tail;
  uvmqtt_bridge_close_cb close_cb;
  void *close_arg;
  struct uvmqtt_bridge_s *next; /* registry bucket chain */
};

/* The registry maps a client to its bridge so that any thread can find it.
 * Readers (publishers) hold the lock while they queue and signal, so a
 * bridge removed under the write lock is never signalled again. */
#define REG_BUCKETS 256
static uv_once_t reg_once = UV_ONCE_INIT;
static uv_rwlock_t reg_lock;
static uvmqtt_bridge_t *reg[REG_BUCKETS];

static void reg_init(void) {
  if (uv_rwlock_init(&reg_lock) != 0)
    abort(); /* cannot fail on the platforms libuv supports */
}

static size_t reg_hash(const uvmqtt_client_t *c) {
  uintptr_t v = (uintptr_t)c;
  v ^= v >> 17;
  v *= (uintptr_t)0x9E3779B97F4A7C15u;
  return (size_t)(v >> 7) % REG_BUCKETS;
}

static uvmqtt_bridge_t *reg_find(const uvmqtt_client_t *c) {
  for (uvmqtt_bridge_t *b = reg[reg_hash(c)]; b; b = b->next)
    if (b->c == c)
      return b;
  return NULL;
}

static void bridge_drain(uvmqtt_bridge_t *b) {
  uv_mutex_lock(&b->mu);
  tsnode_t *n = b->head;
  b->head = NULL;
  b->tail = &b->head;
  uv_mutex_unlock(&b->mu);
  while (n) {
    tsnode_t *next = n->next;
    int rc = uvmqtt_publish(b->c, n->topic, n->payload, n->payload_len, n->qos,
                            n->retain, n->cb, n->arg);
    if (rc < 0 && n->cb) {
      uvmqtt_pub_result_t r = {rc, 0, 0, NULL};
      n->cb(b->c, &r, n->arg);
    }
    uvmqtt__free(n);
    n = next;
  }
}

static void bridge_wakeup(uv_async_t *h) {
  bridge_drain(h->data);
}

int uvmqtt_bridge_new(uvmqtt_client_t *c, uvmqtt_bridge_t **out) {
  if (!c || !out)
    return UVMQTT_EINVAL;
  uv_once(&reg_once, reg_init);
  uvmqtt_bridge_t *b = uvmqtt__calloc(1, sizeof(*b));
  if (!b)
    return UVMQTT_ENOMEM;
  b->c = c;
  b->tail = &b->head;
  int rc = uv_mutex_init(&b->mu);
  if (rc < 0) {
    uvmqtt__free(b);
    return rc;
  }
  uv_rwlock_wrlock(&reg_lock);
  if (reg_find(c)) {
    uv_rwlock_wrunlock(&reg_lock);
    uv_mutex_destroy(&b->mu);
    uvmqtt__free(b);
    return UVMQTT_EEXIST;
  }
  rc = uv_async_init(uvmqtt_client_get_loop(c), &b->async, bridge_wakeup);
  if (rc < 0) {
    uv_rwlock_wrunlock(&reg_lock);
    uv_mutex_destroy(&b->mu);
    uvmqtt__free(b);
    return rc;
  }
  b->async.data = b;
  size_t h = reg_hash(c);
  b->next = reg[h];
  reg[h] = b;
  uv_rwlock_wrunlock(&reg_lock);
  *out = b;
  return 0;
}

static void bridge_closed(uv_handle_t *h) {
  uvmqtt_bridge_t *b = h->data;
  if (b->close_cb)
    b->close_cb(b, b->close_arg);
  uv_mutex_destroy(&b->mu);
  uvmqtt__free(b);
}

void uvmqtt_bridge_close(uvmqtt_bridge_t *b, uvmqtt_bridge_close_cb cb,
                         void *arg) {
  if (!b || uv_is_closing((uv_handle_t *)&b->async))
    return;
  uv_rwlock_wrlock(&reg_lock);
  for (uvmqtt_bridge_t **pp = &reg[reg_hash(b->c)]; *pp; pp = &(*pp)->next) {
    if (*pp == b) {
      *pp = b->next;
      break;
    }
  }
  uv_rwlock_wrunlock(&reg_lock);
  /* No producer can reach the bridge any more: hand over what is left. */
  bridge_drain(b);
  b->close_cb = cb;
  b->close_arg = arg;
  uv_close((uv_handle_t *)&b->async, bridge_closed);
}

int uvmqtt_client_publish_threadsafe(uvmqtt_client_t *c, const char *topic,
                                     const void *payload, size_t len, int qos,
                                     bool retain, uvmqtt_publish_cb cb,
                                     void *arg) {
  if (!c || !topic || (!payload && len))
    return UVMQTT_EINVAL;
  if (qos < 0 || qos > 2)
    return UVMQTT_EQOS;
  size_t tlen = strlen(topic);
  int rc = uvmqtt_topic_validate(topic, tlen);
  if (rc < 0)
    return rc;
  if (len > SIZE_MAX - sizeof(tsnode_t) - tlen - 1)
    return UVMQTT_ENOMEM;
  tsnode_t *n = uvmqtt__malloc(sizeof(*n) + tlen + 1 + len);
  if (!n)
    return UVMQTT_ENOMEM;
  n->next = NULL;
  n->cb = cb;
  n->arg = arg;
  n->payload_len = len;
  n->qos = qos;
  n->retain = retain;
  memcpy(n->topic, topic, tlen + 1);
  n->payload = n->topic + tlen + 1;
  if (len)
    memcpy(n->payload, payload, len);

  uv_once(&reg_once, reg_init);
  uv_rwlock_rdlock(&reg_lock);
  uvmqtt_bridge_t *b = reg_find(c);
  if (!b) {
    uv_rwlock_rdunlock(&reg_lock);
    uvmqtt__free(n);
    return UVMQTT_ECLOSED;
  }
  uv_mutex_lock(&b->mu);
  *b->tail = n;
  b->tail = &n->next;
  uv_mutex_unlock(&b->mu);
  uv_async_send(&b->async);
  uv_rwlock_rdunlock(&reg_lock);
  return 0;
}

/* ---- a loop in its own thread -------------------------------------------- */

typedef struct call_s {
  struct call_s *next;
  void (*fn)(void *arg);
  void *arg;
  bool done;
} call_t;

struct uvmqtt_thread_s {
  uv_loop_t *loop;
  uv_thread_t tid;
  uv_async_t async;
  uv_mutex_t mu; /* guards calls, stopping, done flags */
  uv_cond_t cond;
  call_t *calls, **calls_tail;
  bool stopping;
  bool async_closed; /* loop thread only */
};

static _Thread_local uvmqtt_thread_t *current_thread;

static void thread_async_closed(uv_handle_t *h) {
  uvmqtt_thread_t *t = h->data;
  t->async_closed = true;
}

static void thread_wakeup(uv_async_t *h) {
  uvmqtt_thread_t *t = h->data;
  uv_mutex_lock(&t->mu);
  call_t *c = t->calls;
  t->calls = NULL;
  t->calls_tail = &t->calls;
  bool stopping = t->stopping;
  uv_mutex_unlock(&t->mu);
  while (c) {
    call_t *next = c->next; /* c lives on a waiting caller's stack */
    c->fn(c->arg);
    uv_mutex_lock(&t->mu);
    c->done = true;
    uv_cond_broadcast(&t->cond);
    uv_mutex_unlock(&t->mu);
    c = next;
  }
  if (stopping && !uv_is_closing((uv_handle_t *)&t->async)) {
    uv_close((uv_handle_t *)&t->async, thread_async_closed);
    uv_stop(t->loop);
  }
}

static void thread_main(void *arg) {
  uvmqtt_thread_t *t = arg;
  current_thread = t;
  while (!t->async_closed) {
    uv_run(t->loop, UV_RUN_DEFAULT);
    /* uv_stop may return before the async's close callback ran. */
    if (!t->async_closed)
      uv_run(t->loop, UV_RUN_NOWAIT);
  }
  current_thread = NULL;
  /* The loop goes back to the caller, and the closes may end there: what
   * the sessions left in this thread's pool goes now. */
  uvmqtt__session_thread_end();
}

int uvmqtt_thread_start(uv_loop_t *loop, uvmqtt_thread_t **out) {
  if (!loop || !out)
    return UVMQTT_EINVAL;
  uvmqtt_thread_t *t = uvmqtt__calloc(1, sizeof(*t));
  if (!t)
    return UVMQTT_ENOMEM;
  t->loop = loop;
  t->calls_tail = &t->calls;
  int rc = uv_mutex_init(&t->mu);
  if (rc < 0)
    goto fail_mu;
  if ((rc = uv_cond_init(&t->cond)) < 0)
    goto fail_cond;
  if ((rc = uv_async_init(loop, &t->async, thread_wakeup)) < 0)
    goto fail_async;
  t->async.data = t;
  if ((rc = uv_thread_create(&t->tid, thread_main, t)) < 0) {
    /* Undo the handle on the (idle) loop, from this thread. */
    uv_close((uv_handle_t *)&t->async, thread_async_closed);
    while (!t->async_closed)
      uv_run(loop, UV_RUN_NOWAIT);
    goto fail_async;
  }
  *out = t;
  return 0;
fail_async:
  uv_cond_destroy(&t->cond);
fail_cond:
  uv_mutex_destroy(&t->mu);
fail_mu:
  uvmqtt__free(t);
  return rc;
}

int uvmqtt_thread_call(uvmqtt_thread_t *t, void (*fn)(void *arg), void *arg) {
  if (!t || !fn)
    return UVMQTT_EINVAL;
  if (current_thread == t) {
    fn(arg);
    return 0;
  }
  call_t c = {NULL, fn, arg, false};
  uv_mutex_lock(&t->mu);
  if (t->stopping) {
    uv_mutex_unlock(&t->mu);
    return UVMQTT_ECLOSED;
  }
  *t->calls_tail = &c;
  t->calls_tail = &c.next;
  uv_async_send(&t->async);
  while (!c.done)
    uv_cond_wait(&t->cond, &t->mu);
  uv_mutex_unlock(&t->mu);
  return 0;
}

int uvmqtt_thread_stop(uvmqtt_thread_t *t) {
  if (!t || current_thread == t)
    return UVMQTT_EINVAL;
  uv_mutex_lock(&t->mu);
  t->stopping = true;
  uv_async_send(&t->async);
  uv_mutex_unlock(&t->mu);
  uv_thread_join(&t->tid);
  uv_cond_destroy(&t->cond);
  uv_mutex_destroy(&t->mu);
  uvmqtt__free(t);
  return 0;
}
