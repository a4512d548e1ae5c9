/* The loop-side store: clients attach to it, their puts and removes of one
 * loop iteration go into one batch, and a batch is applied and committed
 * by the backend on libuv's thread pool while the next one fills (group
 * commit). Owns the restore set read at creation and hands each client its
 * part once. Runs on the loop thread only, except work_cb. */
#include "store/store_int.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "uvmqtt/errors.h"

enum { OP_PUT = 1, OP_REMOVE, OP_CLEAR };

#define IDENTITY_VERSION 1

typedef struct {
  uvmqtt__store_client_t *client; /* NULL once detached: no callback */
  uvmqtt__store_cb cb;
  void *arg;
  uint64_t id;
  size_t name_off, name_len; /* in the batch's data */
  size_t val_off, val_len;
  uint8_t type, level;
  int status;
} op_t;

typedef struct {
  op_t *ops;
  size_t n, cap;
  uint8_t *data;
  size_t dlen, dcap;
  int level; /* the highest durability any op asked for */
} batch_t;

typedef struct {
  char *name;
  size_t name_len;
  uint64_t id;
  void *value;
  size_t len;
} rrec_t;

struct uvmqtt__store_client_s {
  uvmqtt_store_t *store;
  uvmqtt__store_client_t *next, *prev;
  uvmqtt_durability_t level;
  void *data;
  uint8_t *ident; /* the identity record's value */
  size_t ident_len;
  size_t name_len;
  char name[];
};

struct uvmqtt_store_s {
  uv_loop_t *loop;
  uvmqtt_store_backend_t *be;
  uv_check_t check; /* flushes the batch after I/O callbacks */
  uv_idle_t idle;   /* keeps poll from blocking while a batch waits */
  uv_work_t work;
  batch_t pending, inflight;
  int busy, armed, closing, handles_open;
  uvmqtt_store_close_cb close_cb;
  void *close_arg;
  uvmqtt__store_client_t *clients;
  rrec_t *restore;
  size_t nrestore;
  uvmqtt_store_report_t report;
  uint64_t batches, ops;
};

/* ---- restore set ----------------------------------------------------------
 */

static int rrec_cmp(const void *a, const void *b) {
  const rrec_t *x = a, *y = b;
  size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
  int c = memcmp(x->name, y->name, n);
  if (c)
    return c;
  if (x->name_len != y->name_len)
    return x->name_len < y->name_len ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

typedef struct {
  rrec_t *v;
  size_t n, cap;
} collect_t;

static int collect(void *arg, const uvmqtt_store_key_t *key, const void *value,
                   size_t len) {
  collect_t *c = arg;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 64;
    rrec_t *v = uvmqtt__realloc(c->v, cap * sizeof *v);
    if (!v)
      return UVMQTT_ENOMEM;
    c->v = v;
    c->cap = cap;
  }
  rrec_t *r = &c->v[c->n];
  r->name = uvmqtt__memdup(key->client, key->client_len);
  r->value = uvmqtt__memdup(value, len);
  if (!r->name || !r->value) {
    uvmqtt__free(r->name);
    uvmqtt__free(r->value);
    return UVMQTT_ENOMEM;
  }
  r->name_len = key->client_len;
  r->id = key->id;
  r->len = len;
  c->n++;
  return 0;
}

static void collect_free(collect_t *c) {
  for (size_t i = 0; i < c->n; i++) {
    uvmqtt__free(c->v[i].name);
    uvmqtt__free(c->v[i].value);
  }
  uvmqtt__free(c->v);
  memset(c, 0, sizeof *c);
}

static void restore_free(uvmqtt_store_t *s) {
  collect_t c = {s->restore, s->nrestore, s->nrestore};
  collect_free(&c);
  s->restore = NULL;
  s->nrestore = 0;
}

/* The client's records [*lo, *hi) in the sorted restore set. */
static void restore_range(uvmqtt_store_t *s, const char *name, size_t len,
                          size_t *lo, size_t *hi) {
  rrec_t key = {(char *)name, len, 0, NULL, 0};
  size_t a = 0, b = s->nrestore;
  while (a < b) { /* first record >= (name, 0) */
    size_t m = a + (b - a) / 2;
    if (rrec_cmp(&s->restore[m], &key) < 0)
      a = m + 1;
    else
      b = m;
  }
  *lo = a;
  while (a < s->nrestore && s->restore[a].name_len == len &&
         memcmp(s->restore[a].name, name, len) == 0)
    a++;
  *hi = a;
}

/* ---- batches ----------------------------------------------------------------
 */

static void batch_free(batch_t *b) {
  uvmqtt__free(b->ops);
  uvmqtt__free(b->data);
  memset(b, 0, sizeof *b);
}

static int batch_reserve(batch_t *b, size_t bytes) {
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 32;
    op_t *o = uvmqtt__realloc(b->ops, cap * sizeof *o);
    if (!o)
      return UVMQTT_ENOMEM;
    b->ops = o;
    b->cap = cap;
  }
  if (b->dlen + bytes > b->dcap) {
    size_t cap = b->dcap ? b->dcap : 4096;
    while (cap < b->dlen + bytes)
      cap *= 2;
    uint8_t *d = uvmqtt__realloc(b->data, cap);
    if (!d)
      return UVMQTT_ENOMEM;
    b->data = d;
    b->dcap = cap;
  }
  return 0;
}

static void work_cb(uv_work_t *req) {
  uvmqtt_store_t *s = req->data;
  uvmqtt_store_backend_t *be = s->be;
  batch_t *b = &s->inflight;
  for (size_t i = 0; i < b->n; i++) {
    op_t *o = &b->ops[i];
    uvmqtt_store_key_t key = {(const char *)b->data + o->name_off, o->name_len,
                              o->id};
    switch (o->type) {
    case OP_PUT:
      o->status = be->put(be, &key, b->data + o->val_off, o->val_len);
      break;
    case OP_REMOVE:
      o->status = be->remove(be, &key);
      break;
    default:
      o->status = be->remove_client(be, key.client, key.client_len);
      break;
    }
  }
  int rc = be->commit(be, (uvmqtt_durability_t)b->level);
  if (rc < 0)
    for (size_t i = 0; i < b->n; i++)
      if (b->ops[i].status == 0)
        b->ops[i].status = rc;
}

static void start_batch(uvmqtt_store_t *s);
static void maybe_finish_close(uvmqtt_store_t *s);

static void after_work_cb(uv_work_t *req, int status) {
  uvmqtt_store_t *s = req->data;
  batch_t *b = &s->inflight;
  s->batches++;
  s->ops += b->n;
  /* busy stays set during the callbacks: what they queue waits for the
   * end of this function, and a close they ask for starts nothing yet. */
  for (size_t i = 0; i < b->n; i++) {
    op_t *o = &b->ops[i];
    if (o->client && o->cb)
      o->cb(o->client, o->arg, status < 0 ? status : o->status);
  }
  s->busy = 0;
  b->n = 0;
  b->dlen = 0;
  b->level = UVMQTT_DURABLE_PROCESS;
  if (s->pending.n)
    start_batch(s);
  else
    maybe_finish_close(s);
}

static void start_batch(uvmqtt_store_t *s) {
  batch_t t = s->inflight;
  s->inflight = s->pending;
  s->pending = t;
  s->busy = 1;
  s->work.data = s;
  if (uv_queue_work(s->loop, &s->work, work_cb, after_work_cb) < 0) {
    /* Only fails on a bad argument; run the batch here so callbacks fire. */
    work_cb(&s->work);
    after_work_cb(&s->work, 0);
  }
}

static void disarm(uvmqtt_store_t *s) {
  if (s->armed) {
    uv_check_stop(&s->check);
    uv_idle_stop(&s->idle);
    s->armed = 0;
  }
}

static void check_cb(uv_check_t *h) {
  uvmqtt_store_t *s = h->data;
  disarm(s);
  if (!s->busy && s->pending.n)
    start_batch(s);
  /* else after_work_cb starts it: the batch grows meanwhile */
}

static void idle_cb(uv_idle_t *h) {
  (void)h; /* only there so poll does not block with a batch waiting */
}

static void arm(uvmqtt_store_t *s) {
  if (!s->armed && !s->busy) {
    uv_check_start(&s->check, check_cb);
    uv_idle_start(&s->idle, idle_cb);
    s->armed = 1;
  }
}

static int enqueue(uvmqtt__store_client_t *c, int type, uint64_t id,
                   const void *const *bufs, const size_t *lens, size_t n,
                   uvmqtt__store_cb cb, void *arg) {
  uvmqtt_store_t *s = c->store;
  batch_t *b = &s->pending;
  size_t vlen = 0;
  for (size_t i = 0; i < n; i++) {
    if (lens[i] && !bufs[i])
      return UVMQTT_EINVAL;
    vlen += lens[i];
  }
  if (batch_reserve(b, c->name_len + vlen) < 0)
    return UVMQTT_ENOMEM;
  op_t *o = &b->ops[b->n++];
  o->client = c;
  o->cb = cb;
  o->arg = arg;
  o->id = id;
  o->type = (uint8_t)type;
  o->level = (uint8_t)c->level;
  o->status = 0;
  o->name_off = b->dlen;
  o->name_len = c->name_len;
  memcpy(b->data + b->dlen, c->name, c->name_len);
  b->dlen += c->name_len;
  o->val_off = b->dlen;
  o->val_len = vlen;
  for (size_t i = 0; i < n; i++) {
    if (lens[i])
      memcpy(b->data + b->dlen, bufs[i], lens[i]);
    b->dlen += lens[i];
  }
  if ((int)c->level > b->level)
    b->level = (int)c->level;
  arm(s);
  return 0;
}

int uvmqtt__store_put(uvmqtt__store_client_t *c, uint64_t id,
                      const void *const *bufs, const size_t *lens, size_t n,
                      uvmqtt__store_cb cb, void *arg) {
  if (!c || id == UVMQTT__STORE_ID_IDENTITY || (n && (!bufs || !lens)))
    return UVMQTT_EINVAL;
  return enqueue(c, OP_PUT, id, bufs, lens, n, cb, arg);
}

int uvmqtt__store_remove(uvmqtt__store_client_t *c, uint64_t id,
                         uvmqtt__store_cb cb, void *arg) {
  if (!c || id == UVMQTT__STORE_ID_IDENTITY)
    return UVMQTT_EINVAL;
  return enqueue(c, OP_REMOVE, id, NULL, NULL, 0, cb, arg);
}

/* ---- identity -------------------------------------------------------------
 */

/* The identity record: u8 IDENTITY_VERSION, u8 protocol, u16 broker
 * length, the broker. Kept after the client's name. */
static size_t encode_identity(uint8_t *p, const uvmqtt__store_identity_t *idn) {
  size_t blen = idn->broker ? strlen(idn->broker) : 0;
  if (p) {
    p[0] = IDENTITY_VERSION;
    p[1] = (uint8_t)idn->protocol;
    p[2] = (uint8_t)blen;
    p[3] = (uint8_t)(blen >> 8);
    if (blen)
      memcpy(p + 4, idn->broker, blen);
  }
  return 4 + blen;
}

static int put_identity(uvmqtt__store_client_t *c, uvmqtt__store_cb cb,
                        void *arg) {
  const void *buf = c->ident;
  return enqueue(c, OP_PUT, UVMQTT__STORE_ID_IDENTITY, &buf, &c->ident_len, 1,
                 cb, arg);
}

void uvmqtt__store_set_data(uvmqtt__store_client_t *c, void *data) {
  c->data = data;
}

void *uvmqtt__store_data(const uvmqtt__store_client_t *c) {
  return c->data;
}

int uvmqtt__store_set_broker(uvmqtt__store_client_t *c, const char *broker) {
  if (!c || !broker || strlen(broker) > 0xffff)
    return UVMQTT_EINVAL;
  size_t blen = (size_t)c->ident[2] | (size_t)c->ident[3] << 8;
  if (blen) {
    if (blen != strlen(broker) || memcmp(c->ident + 4, broker, blen) != 0)
      return UVMQTT_ESTORE_IDENTITY;
    return 0;
  }
  uvmqtt__store_identity_t idn = {c->ident[1], broker};
  size_t ilen = encode_identity(NULL, &idn);
  uint8_t *p = uvmqtt__malloc(ilen);
  if (!p)
    return UVMQTT_ENOMEM;
  encode_identity(p, &idn);
  uint8_t *old = c->ident;
  size_t old_len = c->ident_len;
  c->ident = p;
  c->ident_len = ilen;
  int rc = put_identity(c, NULL, NULL);
  if (rc < 0) {
    c->ident = old;
    c->ident_len = old_len;
    uvmqtt__free(p);
    return rc;
  }
  uvmqtt__free(old);
  return 0;
}

/* 0 match, 1 match but the record lacks the broker, or the error. */
static int check_identity(const rrec_t *r,
                          const uvmqtt__store_identity_t *idn) {
  const uint8_t *p = r->value;
  if (r->len < 4 || p[0] != IDENTITY_VERSION)
    return UVMQTT_ESTORE_RECORD;
  size_t blen = (size_t)p[2] | (size_t)p[3] << 8;
  if (r->len != 4 + blen)
    return UVMQTT_ESTORE_RECORD;
  if (p[1] != (uint8_t)idn->protocol)
    return UVMQTT_ESTORE_IDENTITY;
  size_t mine = idn->broker ? strlen(idn->broker) : 0;
  if (!mine)
    return 0;
  if (!blen)
    return 1;
  if (blen != mine || memcmp(p + 4, idn->broker, blen) != 0)
    return UVMQTT_ESTORE_IDENTITY;
  return 0;
}

int uvmqtt__store_attach(uvmqtt_store_t *s, const char *client_id, size_t len,
                         const uvmqtt__store_identity_t *identity,
                         uvmqtt_durability_t level,
                         uvmqtt__store_client_t **out,
                         uvmqtt__store_rec_t **recs, size_t *nrecs) {
  size_t lo, hi, k = 0;
  uvmqtt__store_rec_t *v = NULL;
  int rc, need_identity = 1;

  if (!s || (len && !client_id) || len > 0xffff || !identity || !out || !recs ||
      !nrecs || (identity->broker && strlen(identity->broker) > 0xffff) ||
      (level != UVMQTT_DURABLE_PROCESS && level != UVMQTT_DURABLE_POWER))
    return UVMQTT_EINVAL;
  if (s->closing)
    return UVMQTT_ESTATE;
  for (uvmqtt__store_client_t *c = s->clients; c; c = c->next)
    if (c->name_len == len && memcmp(c->name, client_id, len) == 0)
      return UVMQTT_EEXIST;

  restore_range(s, client_id, len, &lo, &hi);
  const rrec_t *stored = NULL;
  if (lo < hi && s->restore[lo].id == UVMQTT__STORE_ID_IDENTITY) {
    rc = check_identity(&s->restore[lo], identity);
    if (rc < 0)
      return rc;
    need_identity = rc == 1;
    stored = &s->restore[lo];
  }
  if (hi > lo) {
    v = uvmqtt__malloc((hi - lo) * sizeof *v);
    if (!v)
      return UVMQTT_ENOMEM;
  }
  /* Our identity, or the stored one when it knows more (the broker). */
  int keep = stored && !need_identity;
  size_t ilen = keep ? stored->len : encode_identity(NULL, identity);
  uvmqtt__store_client_t *c = uvmqtt__malloc(sizeof *c + len);
  uint8_t *ident = uvmqtt__malloc(ilen);
  if (!c || !ident) {
    uvmqtt__free(c);
    uvmqtt__free(ident);
    uvmqtt__free(v);
    return UVMQTT_ENOMEM;
  }
  c->store = s;
  c->level = level;
  c->data = NULL;
  c->name_len = len;
  c->ident = ident;
  c->ident_len = ilen;
  if (len)
    memcpy(c->name, client_id, len);
  if (keep)
    memcpy(ident, stored->value, ilen);
  else
    encode_identity(ident, identity);
  if (need_identity && (rc = put_identity(c, NULL, NULL)) < 0) {
    uvmqtt__free(ident);
    uvmqtt__free(c);
    uvmqtt__free(v);
    return rc;
  }
  /* Hand the records over; the restore set keeps empty husks until close. */
  for (size_t i = lo; i < hi; i++) {
    rrec_t *r = &s->restore[i];
    if (r->id == UVMQTT__STORE_ID_IDENTITY || !r->value)
      continue;
    v[k].id = r->id;
    v[k].value = r->value;
    v[k].len = r->len;
    r->value = NULL;
    k++;
  }
  if (!k) {
    uvmqtt__free(v);
    v = NULL;
  }
  c->prev = NULL;
  c->next = s->clients;
  if (s->clients)
    s->clients->prev = c;
  s->clients = c;
  *out = c;
  *recs = v;
  *nrecs = k;
  return 0;
}

int uvmqtt__store_clear(uvmqtt__store_client_t *c, uvmqtt__store_cb cb,
                        void *arg) {
  if (!c)
    return UVMQTT_EINVAL;
  /* remove_client takes the identity too: write it back in the same batch
   * and report on that last operation. */
  int rc = enqueue(c, OP_CLEAR, 0, NULL, NULL, 0, NULL, NULL);
  if (rc < 0)
    return rc;
  rc = put_identity(c, cb, arg);
  if (rc < 0) { /* take the clear back: never one without the other */
    batch_t *b = &c->store->pending;
    b->n--;
    b->dlen = b->ops[b->n].name_off;
  }
  return rc;
}

/* Keeps a detaching client's identity in the restore set, so that a later
 * attach in this process is checked against it as a new process would be.
 * Best effort: without memory the check falls back to the file's. */
static void remember_identity(uvmqtt_store_t *s, uvmqtt__store_client_t *c) {
  size_t lo, hi;
  restore_range(s, c->name, c->name_len, &lo, &hi);
  uint8_t *v = uvmqtt__memdup(c->ident, c->ident_len);
  if (!v)
    return;
  if (lo < hi && s->restore[lo].id == UVMQTT__STORE_ID_IDENTITY) {
    uvmqtt__free(s->restore[lo].value);
    s->restore[lo].value = v;
    s->restore[lo].len = c->ident_len;
    return;
  }
  char *name = uvmqtt__memdup(c->name, c->name_len ? c->name_len : 1);
  rrec_t *r = uvmqtt__realloc(s->restore, (s->nrestore + 1) * sizeof *r);
  if (!name || !r) {
    uvmqtt__free(name);
    uvmqtt__free(v);
    if (r)
      s->restore = r;
    return;
  }
  s->restore = r;
  memmove(r + lo + 1, r + lo, (s->nrestore - lo) * sizeof *r);
  r[lo].name = name;
  r[lo].name_len = c->name_len;
  r[lo].id = UVMQTT__STORE_ID_IDENTITY;
  r[lo].value = v;
  r[lo].len = c->ident_len;
  s->nrestore++;
}

static void drop_callbacks(batch_t *b, uvmqtt__store_client_t *c) {
  for (size_t i = 0; i < b->n; i++)
    if (b->ops[i].client == c)
      b->ops[i].client = NULL;
}

void uvmqtt__store_detach(uvmqtt__store_client_t *c) {
  if (!c)
    return;
  uvmqtt_store_t *s = c->store;
  drop_callbacks(&s->pending, c);
  drop_callbacks(&s->inflight, c);
  remember_identity(s, c);
  if (c->prev)
    c->prev->next = c->next;
  else
    s->clients = c->next;
  if (c->next)
    c->next->prev = c->prev;
  uvmqtt__free(c->ident);
  uvmqtt__free(c);
}

int uvmqtt_store_forget(uvmqtt_store_t *s, const char *client_id) {
  if (!s || !client_id || strlen(client_id) > 0xffff)
    return UVMQTT_EINVAL;
  size_t len = strlen(client_id), lo, hi;
  if (s->closing)
    return UVMQTT_ESTATE;
  for (uvmqtt__store_client_t *c = s->clients; c; c = c->next)
    if (c->name_len == len && memcmp(c->name, client_id, len) == 0)
      return UVMQTT_EBUSY;
  batch_t *b = &s->pending;
  if (batch_reserve(b, len) < 0)
    return UVMQTT_ENOMEM;
  op_t *o = &b->ops[b->n++];
  memset(o, 0, sizeof *o);
  o->type = OP_CLEAR;
  o->level = UVMQTT_DURABLE_PROCESS;
  o->name_off = b->dlen;
  o->name_len = len;
  o->val_off = b->dlen + len;
  memcpy(b->data + b->dlen, client_id, len);
  b->dlen += len;
  arm(s);
  /* Nor does a later attach in this process find anything. */
  restore_range(s, client_id, len, &lo, &hi);
  for (size_t i = lo; i < hi; i++) {
    uvmqtt__free(s->restore[i].name);
    uvmqtt__free(s->restore[i].value);
  }
  memmove(s->restore + lo, s->restore + hi,
          (s->nrestore - hi) * sizeof *s->restore);
  s->nrestore -= hi - lo;
  return 0;
}

void uvmqtt__store_stats(const uvmqtt_store_t *s, uint64_t *batches,
                         uint64_t *ops) {
  if (batches)
    *batches = s->batches;
  if (ops)
    *ops = s->ops;
}

/* ---- lifetime
 * ---------------------------------------------------------------- */

/* Opening runs on the thread pool: the default backend reads and checks
 * its file there, and every backend's records are read (iterate) and
 * sorted there too; the loop only builds the store object and calls back.
 * The request owns the backend until the store is made. */
typedef struct {
  uv_work_t work;
  uv_loop_t *loop;
  char *path; /* NULL: the backend was given (uvmqtt_store_new) */
  uvmqtt_store_log_options_t opts;
  uvmqtt_store_backend_t *be;
  uvmqtt_store_open_cb cb;
  void *arg;
  collect_t col;
  uvmqtt_store_report_t report;
  int rc;
} open_req_t;

static void open_work(uv_work_t *w) {
  open_req_t *q = w->data;
  if (q->path) {
    q->rc = uvmqtt__store_log_open(q->path, &q->opts, &q->be, &q->report);
    if (q->rc < 0)
      return;
  }
  q->rc = q->be->iterate(q->be, collect, &q->col);
  if (q->rc < 0) {
    collect_free(&q->col);
    q->be->destroy(q->be);
    q->be = NULL;
    return;
  }
  if (q->col.n)
    qsort(q->col.v, q->col.n, sizeof *q->col.v, rrec_cmp);
}

static void open_done(uv_work_t *w, int status) {
  open_req_t *q = w->data;
  uvmqtt_store_t *s = NULL;
  int rc = status < 0 ? status : q->rc;
  if (rc == 0) {
    s = uvmqtt__calloc(1, sizeof *s);
    if (!s)
      rc = UVMQTT_ENOMEM;
  }
  if (rc < 0) {
    collect_free(&q->col);
    if (q->be) /* only when cancelled or out of memory here */
      q->be->destroy(q->be);
  } else {
    s->loop = q->loop;
    s->be = q->be;
    s->restore = q->col.v;
    s->nrestore = q->col.n;
    s->report = q->report;
    s->pending.level = s->inflight.level = UVMQTT_DURABLE_PROCESS;
    uv_check_init(q->loop, &s->check);
    uv_idle_init(q->loop, &s->idle);
    s->check.data = s->idle.data = s->work.data = s;
    s->handles_open = 2;
  }
  uvmqtt_store_open_cb cb = q->cb;
  void *arg = q->arg;
  uvmqtt_store_report_t report = q->report;
  uvmqtt__free(q->path);
  uvmqtt__free(q);
  cb(s, rc, &report, arg);
}

static int open_start(uv_loop_t *loop, const char *path,
                      const uvmqtt_store_log_options_t *opts,
                      uvmqtt_store_backend_t *be, uvmqtt_store_open_cb cb,
                      void *arg) {
  open_req_t *q = uvmqtt__calloc(1, sizeof *q);
  if (!q)
    return UVMQTT_ENOMEM;
  if (path && !(q->path = uvmqtt__strdup(path))) {
    uvmqtt__free(q);
    return UVMQTT_ENOMEM;
  }
  if (opts)
    q->opts = *opts;
  q->loop = loop;
  q->be = be;
  q->cb = cb;
  q->arg = arg;
  q->work.data = q;
  int rc = uv_queue_work(loop, &q->work, open_work, open_done);
  if (rc < 0) {
    uvmqtt__free(q->path);
    uvmqtt__free(q);
  }
  return rc;
}

int uvmqtt_store_new(uv_loop_t *loop, uvmqtt_store_backend_t *backend,
                     uvmqtt_store_open_cb cb, void *arg) {
  if (!backend)
    return UVMQTT_EINVAL;
  int rc = UVMQTT_EINVAL;
  if (loop && cb && backend->put && backend->remove && backend->remove_client &&
      backend->iterate && backend->commit && backend->destroy)
    rc = open_start(loop, NULL, NULL, backend, cb, arg);
  if (rc < 0 && backend->destroy)
    backend->destroy(backend);
  return rc;
}

int uvmqtt_store_open(uv_loop_t *loop, const char *path,
                      const uvmqtt_store_log_options_t *opts,
                      uvmqtt_store_open_cb cb, void *arg) {
  if (!loop || !path || !*path || !cb)
    return UVMQTT_EINVAL;
  return open_start(loop, path, opts, NULL, cb, arg);
}

void uvmqtt_store_get_report(const uvmqtt_store_t *store,
                             uvmqtt_store_report_t *out) {
  if (!out)
    return;
  if (store)
    *out = store->report;
  else
    memset(out, 0, sizeof *out);
}

static void handle_closed(uv_handle_t *h) {
  uvmqtt_store_t *s = h->data;
  if (--s->handles_open > 0)
    return;
  uvmqtt_store_close_cb cb = s->close_cb;
  void *arg = s->close_arg;
  batch_free(&s->pending);
  batch_free(&s->inflight);
  restore_free(s);
  if (cb)
    cb(s, arg);
  uvmqtt__free(s);
}

static void destroy_work(uv_work_t *req) {
  uvmqtt_store_t *s = req->data;
  s->be->destroy(s->be);
  s->be = NULL;
}

static void destroy_done(uv_work_t *req, int status) {
  uvmqtt_store_t *s = req->data;
  (void)status;
  if (s->be) { /* cancelled: destroy here */
    s->be->destroy(s->be);
    s->be = NULL;
  }
  uv_close((uv_handle_t *)&s->check, handle_closed);
  uv_close((uv_handle_t *)&s->idle, handle_closed);
}

static void maybe_finish_close(uvmqtt_store_t *s) {
  if (!s->closing || s->busy || s->pending.n || s->closing == 2)
    return;
  s->closing = 2;
  disarm(s);
  s->busy = 1;
  if (uv_queue_work(s->loop, &s->work, destroy_work, destroy_done) < 0)
    destroy_done(&s->work, 0);
}

int uvmqtt_store_close(uvmqtt_store_t *store, uvmqtt_store_close_cb cb,
                       void *arg) {
  if (!store)
    return UVMQTT_EINVAL;
  if (store->closing)
    return UVMQTT_ESTATE;
  if (store->clients)
    return UVMQTT_EBUSY;
  store->closing = 1;
  store->close_cb = cb;
  store->close_arg = arg;
  if (!store->busy && store->pending.n)
    start_batch(store);
  else
    maybe_finish_close(store);
  return 0;
}
