/* A client's records in its store (clients created with
 * uvmqtt_options_set_store): attach and restore at creation, the session's
 * state changes written as records (src/session/persist.h), the "stored"
 * notification that lets a held-back message go, the broker identity at
 * connect, and the restored messages' listing and completion. The state
 * lives in the rare block: clients without a store carry none of it. */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "client/client_int.h"
#include "session/persist.h"

typedef struct persist_s {
  uvmqtt__store_client_t *sc;
  uint64_t seq; /* publish order of message records */
  uvmqtt_stored_cb stored_cb;
  void *stored_arg;
  uvmqtt_publish_cb restored_cb;
  void *restored_arg;
} persist_t;

static persist_t *P(const uvmqtt_client_t *c) {
  return c->rare ? c->rare->persist : NULL;
}

static uint64_t wall_ms(void) {
  uv_timeval64_t tv;
  if (uv_gettimeofday(&tv) != 0)
    return 0;
  return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* The completion of restored messages (they have no caller's callback). */
static void restored_done(uvmqtt_client_t *c, const uvmqtt_pub_result_t *r,
                          void *arg) {
  persist_t *p = P(c);
  (void)arg;
  if (p && p->restored_cb)
    p->restored_cb(c, r, p->restored_arg);
}

static void write_failed(uvmqtt__store_client_t *sc, void *arg, int status);

/* Handle bits of one process: 2^40 handles, then the process number. */
#define RUN_SHIFT 40

/* This process is one more run of the client's records; with manual
 * acknowledgement its handles carry the run's number, so that a handle an
 * earlier process gave out (kept by the application across a restart)
 * is older than all of ours: uvmqtt_ack() refuses it as stale instead of
 * acknowledging another message. */
static int count_run(uvmqtt_client_t *c, persist_t *p, uint64_t runs) {
  uint8_t v[8];
  const void *b = v;
  size_t len = sizeof v;
  runs = runs + 1 < (1ull << (64 - RUN_SHIFT)) ? runs + 1 : 1;
  uvmqtt__le_put64(v, runs);
  int rc = uvmqtt__store_put(p->sc, UVMQTT__REC_RUN, &b, &len, 1, write_failed,
                             NULL);
  if (rc == 0 && CX(c)->manual_ack)
    rc = uvmqtt__session_set_handle_base(c->session, runs << RUN_SHIFT);
  /* Delivery ids too: unique across the processes of this client id. */
  if (rc == 0 && CX(c)->record_first)
    rc = uvmqtt__session_set_record_first(c->session, runs << RUN_SHIFT);
  return rc;
}

int uvmqtt__persist_open(uvmqtt_client_t *c, uv_loop_t *loop) {
  uvmqtt__store_identity_t idn = {c->o.version, NULL};
  uvmqtt__store_rec_t *recs = NULL;
  size_t n = 0;
  rare_t *r = uvmqtt__client_rare(c);
  persist_t *p = r ? uvmqtt__calloc(1, sizeof(*p)) : NULL;
  if (!p)
    return UVMQTT_ENOMEM;
  int rc = uvmqtt__store_attach(
      CX(c)->store, uvmqtt__client_id(c), strlen(uvmqtt__client_id(c)), &idn,
      (uvmqtt_durability_t)CX(c)->durability, &p->sc, &recs, &n);
  if (rc < 0) {
    uvmqtt__free(p);
    return rc;
  }
  uvmqtt__store_set_data(p->sc, c);
  r->persist = p;
  uint64_t *bad = n ? uvmqtt__malloc(n * sizeof(*bad)) : NULL;
  uvmqtt__persist_report_t rep;
  rc = n && !bad ? UVMQTT_ENOMEM
                 : uvmqtt__persist_restore(c->session, c->o.version,
                                           uv_now(loop), wall_ms(), recs, n,
                                           (uvmqtt_session_fn)restored_done,
                                           NULL, NULL, NULL, &rep, bad);
  if (rc == 0)
    rc = count_run(c, p, rep.runs);
  if (rc == 0) {
    p->seq = rep.max_seq;
    /* What could not be used goes, so it is reported once. */
    for (size_t i = 0; i < rep.bad; i++)
      (void)uvmqtt__store_remove(p->sc, bad[i], NULL, NULL);
  }
  uvmqtt__free(bad);
  for (size_t i = 0; i < n; i++)
    uvmqtt__free(recs[i].value);
  uvmqtt__free(recs);
  if (rc < 0) {
    uvmqtt__store_detach(p->sc);
    uvmqtt__free(p);
    r->persist = NULL;
  }
  return rc;
}

void uvmqtt__persist_close(uvmqtt_client_t *c) {
  persist_t *p = P(c);
  if (!p)
    return;
  uvmqtt__store_detach(p->sc);
  uvmqtt__free(p);
  c->rare->persist = NULL;
}

int uvmqtt__persist_check_broker(uvmqtt_client_t *c) {
  persist_t *p = P(c);
  char broker[300];
  if (!p)
    return 0;
  if (c->srv_mode && c->rare && c->rare->srv_domain) {
    snprintf(broker, sizeof(broker), "srv:%s", c->rare->srv_domain);
  } else if (uvmqtt__nservers(c)) {
    server_spec_t sv = uvmqtt__server_at(c, 0);
    snprintf(
        broker, sizeof(broker), "%s:%u", sv.host,
        (unsigned)(sv.port ? sv.port : uvmqtt__default_port(c, sv.scheme)));
  } else {
    return 0;
  }
  return uvmqtt__store_set_broker(p->sc, broker);
}

/* A PUT is durable (or failed): the session may send the message. */
static void put_done(uvmqtt__store_client_t *sc, void *arg, int status) {
  uvmqtt_client_t *c = uvmqtt__store_data(sc);
  uvmqtt_smsg_t *m = arg;
  uvmqtt_publish_t pub;
  uint32_t expiry;
  int state;
  persist_t *p = P(c);
  uvmqtt__smsg_view(m, &pub, &expiry, &state);
  ENTER(c);
  if (p->stored_cb)
    p->stored_cb(c, status, pub.packet_id, p->stored_arg);
  if (c->session)
    uvmqtt__session_stored(c->session, m, uvmqtt__client_now(c), status);
  LEAVE(c);
}

/* The "PUBREC received" state is durable: PUBREL may go. */
static void state_done(uvmqtt__store_client_t *sc, void *arg, int status) {
  uvmqtt_client_t *c = uvmqtt__store_data(sc);
  ENTER(c);
  if (c->session)
    uvmqtt__session_stored(c->session, arg, uvmqtt__client_now(c), status);
  LEAVE(c);
}

/* Record first: the incoming message's record is durable, deliver it. */
static void in_first_done(uvmqtt__store_client_t *sc, void *arg, int status) {
  uvmqtt_client_t *c = uvmqtt__store_data(sc);
  ENTER(c);
  if (c->session)
    uvmqtt__session_in_stored(c->session, uvmqtt__client_now(c),
                              (uint16_t)(uintptr_t)arg, status);
  LEAVE(c);
}

static void write_failed(uvmqtt__store_client_t *sc, void *arg, int status) {
  uvmqtt_client_t *c = uvmqtt__store_data(sc);
  (void)arg;
  if (status < 0)
    uvmqtt__client_log(c, UVMQTT_LOG_ERROR,
                       "store: a record was not written: %s",
                       uvmqtt_strerror(status));
}

int uvmqtt__persist_event(void *ud, int op, uvmqtt_smsg_t *m, uint16_t id) {
  static const uint8_t sent = 1, pubrec = 2;
  uvmqtt_client_t *c = ud;
  persist_t *p = P(c);
  size_t one = 1;
  const void *b;
  int rc;
  if (!p)
    return UVMQTT_EINVAL;
  switch (op) {
  case UVMQTT_PERSIST_PUT: {
    uvmqtt__persist_msg_t enc;
    rc = uvmqtt__persist_msg_encode(m, c->o.version, p->seq + 1, wall_ms(),
                                    &enc);
    if (rc == 0)
      rc = uvmqtt__store_put(p->sc, UVMQTT__REC_MSG(id), enc.bufs, enc.lens,
                             enc.n, put_done, m);
    uvmqtt__persist_msg_free(&enc);
    if (rc == 0)
      p->seq++;
    return rc;
  }
  case UVMQTT_PERSIST_SENT:
    b = &sent;
    rc = uvmqtt__store_put(p->sc, UVMQTT__REC_STATE(id), &b, &one, 1,
                           write_failed, NULL);
    break;
  case UVMQTT_PERSIST_PUBREC:
    b = &pubrec;
    rc = uvmqtt__store_put(p->sc, UVMQTT__REC_STATE(id), &b, &one, 1,
                           state_done, m);
    break;
  case UVMQTT_PERSIST_REQUEUED:
    rc = uvmqtt__store_remove(p->sc, UVMQTT__REC_STATE(id), write_failed, NULL);
    break;
  case UVMQTT_PERSIST_DONE:
    rc = uvmqtt__store_remove(p->sc, UVMQTT__REC_STATE(id), NULL, NULL);
    if (rc == 0)
      rc = uvmqtt__store_remove(p->sc, UVMQTT__REC_MSG(id), write_failed, NULL);
    break;
  case UVMQTT_PERSIST_IN_ADD:
    rc = uvmqtt__store_put(p->sc, UVMQTT__REC_IN(id), NULL, NULL, 0,
                           write_failed, NULL);
    break;
  case UVMQTT_PERSIST_IN_FIRST: {
    uint8_t did[8];
    const void *db = did;
    size_t dl = sizeof did;
    uvmqtt__le_put64(did, uvmqtt__session_in_did(c->session, NULL));
    rc = uvmqtt__store_put(p->sc, UVMQTT__REC_IN(id), &db, &dl, 1,
                           in_first_done, (void *)(uintptr_t)id);
    break;
  }
  case UVMQTT_PERSIST_IN_DEL:
    rc = uvmqtt__store_remove(p->sc, UVMQTT__REC_IN(id), write_failed, NULL);
    break;
  default:
    rc = UVMQTT_EINVAL;
  }
  if (rc < 0)
    uvmqtt__client_log(c, UVMQTT_LOG_ERROR, "store: cannot queue a record: %s",
                       uvmqtt_strerror(rc));
  return rc;
}

/* ---- public
 * ------------------------------------------------------------------ */

typedef struct {
  uvmqtt_client_t *c;
  uvmqtt_restored_cb cb;
  void *arg;
  int n;
} visit_t;

static void visit(void *ctx, uvmqtt_smsg_t *m, uvmqtt_session_fn cb,
                  void *arg) {
  visit_t *v = ctx;
  uvmqtt_publish_t pub;
  uint32_t expiry;
  int state;
  (void)arg;
  if (cb != (uvmqtt_session_fn)restored_done)
    return;
  v->n++;
  if (v->cb) {
    uvmqtt__smsg_view(m, &pub, &expiry, &state);
    pub.dup = state > 0;
    v->cb(v->c, &pub, state, v->arg);
  }
}

int uvmqtt_client_restored(uvmqtt_client_t *c, uvmqtt_restored_cb cb,
                           void *arg) {
  visit_t v = {c, cb, arg, 0};
  if (!c || !P(c) || !c->session)
    return 0;
  uvmqtt__session_each_msg(c->session, visit, &v);
  return v.n;
}

int uvmqtt_client_on_restored_done(uvmqtt_client_t *c, uvmqtt_publish_cb cb,
                                   void *arg) {
  if (!c)
    return UVMQTT_EINVAL;
  persist_t *p = P(c);
  if (!p)
    return UVMQTT_ENOTSUP;
  p->restored_cb = cb;
  p->restored_arg = arg;
  return 0;
}

int uvmqtt_client_on_stored(uvmqtt_client_t *c, uvmqtt_stored_cb cb,
                            void *arg) {
  if (!c)
    return UVMQTT_EINVAL;
  persist_t *p = P(c);
  if (!p)
    return UVMQTT_ENOTSUP;
  p->stored_cb = cb;
  p->stored_arg = arg;
  return 0;
}
