/* The MQTT session state machine, sans I/O (see session.h): connecting,
 * keepalive, publish and subscribe, the incoming flow and manual
 * acknowledgement, input, persistence hooks. Packet-id sets, topic
 * aliases and output batches have their own files beside it. */
#include "session/session.h"

#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "props.h"
#include "session/session_int.h"
#include "uvmqtt/errors.h"

static bool holding(const uvmqtt_session_t *s);
static void acks_forget(uvmqtt_session_t *s);
static void hold_changed(uvmqtt_session_t *s, uint64_t now, bool was);
static int out_reason_packet(uvmqtt_session_t *s, uvmqtt_packet_t *pkt,
                             uvmqtt_props_t *props);

/* ---- persistence hooks (see session.h, on_persist) ----------------------- */

static int persist_ev(uvmqtt_session_t *s, int op, uvmqtt_smsg_t *m,
                      uint16_t id) {
  if (!s->persist || s->freeing)
    return 0;
  return s->ev_->on_persist ? s->ev_->on_persist(s->ud, op, m, id)
                            : UVMQTT_EINVAL;
}

/* ---- logging ----------------------------------------------------------- */

#include <stdarg.h>
void uvmqtt__session_log(uvmqtt_session_t *s, int level, const char *fmt, ...) {
  char buf[256];
  va_list ap;
  if (!s->ev_->on_log)
    return;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  s->ev_->on_log(s->ud, level, buf);
}

/* The message of the uvmqtt__session_publish() call under way on this
 * thread: pump() leaves a failure to send it in rc, for the call to
 * return, instead of completing it from inside that call. A publish from
 * a callback of that pump() (on any session) nests and restores it. Kept
 * per thread, not per session: no idle session carries it. */
static _Thread_local struct {
  uvmqtt_smsg_t *m;
  int rc;
} fresh;

static int alloc_id(uvmqtt_session_t *s, uint16_t *out) {
  if (uvmqtt__idset_count(s->out_ids) >= 65535)
    return UVMQTT_ENOPKTID;
  for (;;) {
    uint16_t id = s->next_id;
    s->next_id = (uint16_t)(id == 65535 ? 1 : id + 1);
    if (!uvmqtt__idset_has(s->out_ids, id)) {
      int rc = uvmqtt__idset_add(&s->out_ids, id);
      if (rc < 0)
        return rc;
      *out = id;
      return 0;
    }
  }
}

uint8_t uvmqtt__session_disconnect_reason(int err) {
  switch (err) {
  case UVMQTT_EMALFORMED:
  case UVMQTT_EREMLEN:
  case UVMQTT_EFLAGS:
  case UVMQTT_EQOS:
  case UVMQTT_EPACKETID:
  case UVMQTT_EUTF8:
  case UVMQTT_EWILDCARD:
  case UVMQTT_ETRUNC:
  case UVMQTT_ETRAILING:
  case UVMQTT_EPROPDUP:
  case UVMQTT_EPROPBAD:
  case UVMQTT_EPROPVAL:
  case UVMQTT_EREASON:
    return 0x81;
  case UVMQTT_ETYPE:
  case UVMQTT_EPROTOCOL:
  case UVMQTT_EUNEXPECTED:
    return 0x82;
  case UVMQTT_ERECVMAX:
    return 0x93;
  case UVMQTT_ETOPICALIAS:
    return 0x94;
  case UVMQTT_ETOOBIG:
    return 0x95;
  default:
    return 0;
  }
}

/* ---- messages ------------------------------------------------------------ */

static void list_remove(uvmqtt_smsg_t **head, uvmqtt_smsg_t **tail,
                        uvmqtt_smsg_t *m) {
  if (m->prev)
    m->prev->next = m->next;
  else
    *head = m->next;
  if (m->next)
    m->next->prev = m->prev;
  else
    *tail = m->prev;
  m->next = m->prev = NULL;
}

static void list_append(uvmqtt_smsg_t **head, uvmqtt_smsg_t **tail,
                        uvmqtt_smsg_t *m) {
  m->next = NULL;
  m->prev = *tail;
  if (*tail)
    (*tail)->next = m;
  else
    *head = m;
  *tail = m;
}

static void list_prepend(uvmqtt_smsg_t **head, uvmqtt_smsg_t **tail,
                         uvmqtt_smsg_t *m) {
  m->prev = NULL;
  m->next = *head;
  if (*head)
    (*head)->prev = m;
  else
    *tail = m;
  *head = m;
}

static void msg_free(uvmqtt_smsg_t *m) {
  uvmqtt__free(m->props);
  uvmqtt__free(m);
}

void uvmqtt__session_msg_fire(uvmqtt_session_t *s, uvmqtt_smsg_t *m,
                              const uvmqtt_props_t *props) {
  if (m->cb && s->ev_->on_publish_done)
    s->ev_->on_publish_done(s->ud, m->cb, m->arg, m->status, m->packet_id,
                            m->reason, props);
  msg_free(m);
}

/* Completes a message that is on neither list. Its callback fires once no
 * output batch still points at its payload (zero-copy payloads must stay
 * valid until then). */
static void msg_finish_ack(uvmqtt_session_t *s, uvmqtt_smsg_t *m, int status,
                           uint8_t reason, const uvmqtt_props_t *props) {
  if (m->qos > 0) {
    uvmqtt__idset_del(&s->out_ids, m->packet_id);
    (void)persist_ev(s, UVMQTT_PERSIST_DONE, m, m->packet_id);
  }
  m->status = status;
  m->reason = reason;
  m->done = true;
  if (m->refs == 0 && (m->stored || s->freeing))
    uvmqtt__session_msg_fire(s, m, props);
}

static void msg_finish(uvmqtt_session_t *s, uvmqtt_smsg_t *m, int status,
                       uint8_t reason) {
  msg_finish_ack(s, m, status, reason, NULL);
}

static void queue_unlink(uvmqtt_session_t *s, uvmqtt_smsg_t *m) {
  list_remove(&s->q_head, &s->q_tail, m);
  s->q_count--;
  s->q_bytes -= m->payload_len + m->topic_len;
}

static uvmqtt_smsg_t *inflight_find(uvmqtt_session_t *s, uint16_t id) {
  /* Acks mostly arrive in order: the match is usually the head. */
  for (uvmqtt_smsg_t *m = s->f_head; m; m = m->next)
    if (m->packet_id == id)
      return m;
  return NULL;
}

static unsigned window(const uvmqtt_session_t *s) {
  unsigned w = s->max_inflight ? s->max_inflight : 65535;
  if (s->server_receive_max && s->server_receive_max < w)
    w = s->server_receive_max;
  return w;
}

static void msg_to_publish(const uvmqtt_smsg_t *m, uvmqtt_publish_t *pub) {
  memset(pub, 0, sizeof(*pub));
  pub->dup = m->dup;
  pub->qos = m->qos;
  pub->retain = m->retain;
  pub->topic.data = m->topic;
  pub->topic.len = m->topic_len;
  pub->packet_id = m->packet_id;
  if (m->props)
    pub->props = *m->props;
  pub->payload.data = m->payload;
  pub->payload.len = m->payload_len;
}

static bool expired(const uvmqtt_smsg_t *m, uint64_t now) {
  return m->expiry_s && now - m->queued_at >= (uint64_t)m->expiry_s * 1000;
}

/* Moves queued messages into the output while the window allows. */
static void pump(uvmqtt_session_t *s, uint64_t now) {
  while (s->state == UVMQTT_SS_CONNECTED && s->q_head) {
    uvmqtt_smsg_t *m = s->q_head;
    if (!m->stored)
      return; /* not durable yet: nothing after it goes before it */
    if (expired(m, now)) {
      queue_unlink(s, m);
      msg_finish(s, m, UVMQTT_EEXPIRED, 0);
      continue;
    }
    if (m->props &&
        (m->props->present & UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS)) &&
        m->props->topic_alias > s->server_alias_max) {
      /* [MQTT-3.3.2-9]: a hand-set alias beyond the server's maximum. */
      queue_unlink(s, m);
      msg_finish(s, m, UVMQTT_ETOPICALIAS, 0);
      continue;
    }
    if (m->retain && !s->server_retain) {
      /* [MQTT-3.2.2-14]: the server said it keeps no retained messages. */
      queue_unlink(s, m);
      uvmqtt__session_log(s, UVMQTT_LOG_ERROR,
                          "the server does not support retained messages");
      msg_finish(s, m, UVMQTT_ENOTSUP, 0);
      continue;
    }
    if (m->qos > s->server_max_qos) {
      /* [MQTT-3.2.2-11]: never above the server's Maximum QoS. */
      queue_unlink(s, m);
      uvmqtt__session_log(s, UVMQTT_LOG_ERROR,
                          "QoS %u is above the server's maximum %u", m->qos,
                          s->server_max_qos);
      msg_finish(s, m, UVMQTT_EQOS, 0);
      continue;
    }
    if (m->qos > 0 && s->f_count >= window(s))
      return;
    if (s->gated && s->ev_->may_publish &&
        !s->ev_->may_publish(s->ud, m->topic_len + m->payload_len, now))
      return; /* rate limited: the owner pumps again later */
    uvmqtt_publish_t pub;
    msg_to_publish(m, &pub);
    /* A QoS 0 completion needs room in the batch; make it first, so that
     * it cannot be lost once the PUBLISH is in the output. */
    int rc = m->qos == 0 ? uvmqtt__out_done_room(s, m->cb) : 0;
    if (rc == 0)
      rc = uvmqtt__out_publish(s, now, &pub, m, true);
    if (rc < 0) {
      queue_unlink(s, m);
      uvmqtt__session_log(s, UVMQTT_LOG_ERROR, "cannot encode PUBLISH: %s",
                          uvmqtt_strerror(rc));
      if (m == fresh.m) {
        fresh.rc = rc; /* returned by the publish call, no callback */
        continue;
      }
      msg_finish(s, m, rc, 0);
      continue;
    }
    queue_unlink(s, m);
    if (m->qos == 0) {
      /* QoS 0 completes when the batch holding it is written. */
      m->done = true;
      if (m->refs == 0) {
        /* The payload was copied into the batch: the message can go (its
         * completion has room, see above). */
        (void)uvmqtt__out_done_entry(s, m->cb, m->arg);
        msg_free(m);
      }
      /* Otherwise the batch frees it, and fires its callback, when done. */
      continue;
    }
    m->state = MSG_WAIT_ACK;
    list_append(&s->f_head, &s->f_tail, m);
    s->f_count++;
    (void)persist_ev(s, UVMQTT_PERSIST_SENT, m, m->packet_id);
  }
}

/* ---- public: lifecycle ------------------------------------------------------
 */

/* uvmqtt__session_init() promises its callers that 8 is enough. */
_Static_assert(_Alignof(struct uvmqtt_session_s) <= 8, "session alignment");

size_t uvmqtt__session_size(void) {
  return sizeof(struct uvmqtt_session_s);
}

static int session_setup(uvmqtt_session_t *s,
                         const uvmqtt_session_config_t *cfg,
                         const uvmqtt_session_events_t *ev, void *ud);

static int config_ok(const uvmqtt_session_config_t *cfg,
                     const uvmqtt_session_events_t *ev, const void *out) {
  if (!cfg || !ev || !out)
    return 0;
  return cfg->version == UVMQTT_V31 || cfg->version == UVMQTT_V311 ||
         cfg->version == UVMQTT_V5;
}

int uvmqtt__session_new(const uvmqtt_session_config_t *cfg,
                        const uvmqtt_session_events_t *ev, void *ud,
                        uvmqtt_session_t **out) {
  if (!config_ok(cfg, ev, out))
    return UVMQTT_EINVAL;
  uvmqtt_session_t *s = uvmqtt__calloc(1, sizeof(*s));
  if (!s)
    return UVMQTT_ENOMEM;
  *out = s;
  return session_setup(s, cfg, ev, ud);
}

int uvmqtt__session_init(void *mem, const uvmqtt_session_config_t *cfg,
                         const uvmqtt_session_events_t *ev, void *ud,
                         uvmqtt_session_t **out) {
  if (!mem || !config_ok(cfg, ev, out))
    return UVMQTT_EINVAL;
  uvmqtt_session_t *s = memset(mem, 0, sizeof(*s));
  s->embedded = true;
  *out = s;
  return session_setup(s, cfg, ev, ud);
}

static int session_setup(uvmqtt_session_t *s,
                         const uvmqtt_session_config_t *cfg,
                         const uvmqtt_session_events_t *ev, void *ud) {
  s->version = cfg->version;
  /* Windows and counts beyond what MQTT or memory allows mean "no limit". */
  s->max_inflight = cfg->max_inflight > 65535 ? 0 : (uint16_t)cfg->max_inflight;
  s->max_queued = cfg->max_queued > UINT32_MAX ? 0 : (uint32_t)cfg->max_queued;
  s->max_queued_bytes = cfg->max_queued_bytes;
  s->queue_policy = (uint8_t)cfg->queue_policy;
  s->max_packet_size = cfg->max_packet_size;
  s->receive_maximum = cfg->receive_maximum;
  s->ping_timeout_pct =
      (uint8_t)(cfg->ping_timeout_pct == 0    ? 40
                : cfg->ping_timeout_pct > 255 ? 255
                                              : cfg->ping_timeout_pct);
  s->topic_alias_max_in = cfg->topic_alias_max_in;
  s->topic_alias_auto = cfg->topic_alias_auto;
  s->persist = cfg->persist;
  s->ev_ = ev;
  s->ud = ud;
  s->next_id = 1;
  s->server_max_qos = 2;
  s->server_retain = true;
  return 0;
}

/* Forgets a packet partly received (its buffer is in the same block).
 * Input for this connection stops: a nested uvmqtt__session_input() loop
 * sees `gen` change. */
static void drop_parser(uvmqtt_session_t *s) {
  if (s->in) {
    /* As the parser's own rule: the bytes copied so far are gone, so this
     * stream cannot continue. */
    if (!s->in_error)
      s->in_error = (int16_t)UVMQTT_ESTATE;
    uvmqtt__free(s->in);
    s->in = NULL;
  }
  s->gen++;
}

/* Takes the oldest request out of the ring (NULL: none). */
static uvmqtt_sreq_t *req_shift(uvmqtt_session_t *s) {
  uvmqtt_sreq_t *tail = s->reqs;
  if (!tail)
    return NULL;
  uvmqtt_sreq_t *r = tail->next;
  if (r == tail)
    s->reqs = NULL;
  else
    tail->next = r->next;
  return r;
}

static void fail_requests(uvmqtt_session_t *s, int status) {
  uvmqtt_sreq_t *r;
  while ((r = req_shift(s))) {
    uvmqtt__idset_del(&s->out_ids, r->packet_id);
    if (s->ev_->on_sub_done)
      s->ev_->on_sub_done(s->ud, r->type, r->cb, r->arg, status, r->packet_id,
                          NULL, 0, NULL);
    uvmqtt__free(r);
  }
}

void uvmqtt__session_free(uvmqtt_session_t *s, int status) {
  if (!s)
    return;
  s->freeing = true; /* what is pending stays in the store for a restart */
  s->state = UVMQTT_SS_DISCONNECTED;
  if (s->cur) {
    uvmqtt_out_batch_t *b = s->cur;
    s->cur = NULL;
    uvmqtt__batch_release(s, b, status);
  }
  fail_requests(s, status);
  while (s->f_head) {
    uvmqtt_smsg_t *m = s->f_head;
    list_remove(&s->f_head, &s->f_tail, m);
    s->f_count--;
    msg_finish(s, m, status, 0);
  }
  while (s->q_head) {
    uvmqtt_smsg_t *m = s->q_head;
    queue_unlink(s, m);
    msg_finish(s, m, status, 0);
  }
  uvmqtt__batch_pool_leave(s);
  drop_parser(s);
  uvmqtt__aliases_reset(s);
  uvmqtt__idset_clear(&s->out_ids);
  uvmqtt__idset_clear(&s->in_ids);
  if (s->flow) {
    s->flow->unacked = 0; /* no warning: the application closed */
    acks_forget(s);
    uvmqtt__free(s->flow->ring);
    uvmqtt__free(s->flow->held);
    uvmqtt__free(s->flow->wait_data);
    uvmqtt__free(s->flow->wait_props);
    uvmqtt__free(s->flow->known);
    uvmqtt__free(s->flow);
  }
  if (!s->embedded)
    uvmqtt__free(s);
}

int uvmqtt__session_connect(uvmqtt_session_t *s, uint64_t now,
                            const uvmqtt_connect_t *c) {
  uvmqtt_packet_t pkt;
  if (s->cur) {
    uvmqtt_out_batch_t *b = s->cur;
    s->cur = NULL;
    uvmqtt__batch_release(s, b, UVMQTT_ENOTCONN);
  }
  drop_parser(s);
  acks_forget(s);
  s->halted = false;
  s->in_error = 0;
  s->in_offset = 0;
  s->server_receive_max = 0;
  s->server_max_packet = 0;
  s->server_max_qos = 2;
  s->server_alias_max = 0;
  s->server_retain = true;
  s->clean_start = c->clean_start;
  uvmqtt__aliases_reset(s);
  s->keepalive_s = c->keep_alive;
  s->last_send = s->last_recv = now;
  s->ping_outstanding = false;
  memset(&pkt, 0, sizeof(pkt));
  pkt.type = UVMQTT_CONNECT;
  pkt.u.connect = *c;
  pkt.u.connect.protocol_version = s->version;
  int rc = uvmqtt__out_packet(s, &pkt);
  if (rc < 0)
    return rc;
  s->state = UVMQTT_SS_CONNECTING;
  return 0;
}

void uvmqtt__session_connection_lost(uvmqtt_session_t *s, int status) {
  bool was = holding(s);
  s->state = UVMQTT_SS_DISCONNECTED;
  hold_changed(s, s->last_recv, was);
  if (s->cur) {
    uvmqtt_out_batch_t *b = s->cur;
    s->cur = NULL;
    uvmqtt__batch_release(s, b, status);
  }
  drop_parser(s);
  acks_forget(s);
  fail_requests(s, status);
  s->ping_outstanding = false;
}

static int check_size(uvmqtt_session_t *s, const uvmqtt_packet_t *pkt);

/* DISCONNECT and AUTH: when the server's Maximum Packet Size leaves no room
 * for the Reason String and User Properties, they are left out, as
 * [MQTT-3.14.2-3/4] and [MQTT-3.15.2-2/3] allow; anything else too large
 * is an error. */
static int out_reason_packet(uvmqtt_session_t *s, uvmqtt_packet_t *pkt,
                             uvmqtt_props_t *props) {
  if (check_size(s, pkt) == UVMQTT_ETOOBIG) {
    props->present &= ~UVMQTT_PROP_BIT(UVMQTT_PROP_REASON_STRING);
    props->user_props = NULL;
    props->user_prop_count = 0;
    props->raw = NULL;
    props->raw_len = 0;
    int rc = check_size(s, pkt);
    if (rc < 0)
      return rc;
  }
  return uvmqtt__out_packet(s, pkt);
}

int uvmqtt__session_disconnect(uvmqtt_session_t *s, uint8_t reason,
                               const uvmqtt_props_t *props) {
  uvmqtt_packet_t pkt;
  memset(&pkt, 0, sizeof(pkt));
  pkt.type = UVMQTT_DISCONNECT;
  pkt.u.disconnect.reason_code = reason;
  if (props)
    pkt.u.disconnect.props = *props;
  int rc = out_reason_packet(s, &pkt, &pkt.u.disconnect.props);
  if (rc == 0) {
    /* Nothing may follow DISCONNECT: acknowledgements still waiting for
     * the application are left to the broker's redelivery, and what is
     * published from now on waits in the queue for the next connection. */
    s->halted = true;
    s->state = UVMQTT_SS_DISCONNECTED;
    acks_forget(s);
  }
  return rc;
}

int uvmqtt__session_auth(uvmqtt_session_t *s, uint8_t reason,
                         const uvmqtt_props_t *props) {
  uvmqtt_packet_t pkt;
  if (s->version != UVMQTT_V5)
    return UVMQTT_ENOTSUP;
  memset(&pkt, 0, sizeof(pkt));
  pkt.type = UVMQTT_AUTH;
  pkt.u.auth.reason_code = reason;
  if (props)
    pkt.u.auth.props = *props;
  return out_reason_packet(s, &pkt, &pkt.u.auth.props);
}

/* ---- keepalive -------------------------------------------------------------
 */

/* The keepalive period in force, in ms. */
static inline uint64_t keepalive_ms(const uvmqtt_session_t *s) {
  return (uint64_t)s->keepalive_s * 1000;
}

static uint64_t silence_limit(const uvmqtt_session_t *s) {
  uint64_t k = keepalive_ms(s);
  return k + k * s->ping_timeout_pct / 100;
}

int uvmqtt__session_tick(uvmqtt_session_t *s, uint64_t now) {
  if (s->state == UVMQTT_SS_DISCONNECTED || s->keepalive_s == 0)
    return 0;
  bool held = holding(s);
  /* While input is held the broker's silence means nothing: we are not
   * reading. Our PINGREQs keep the broker from judging us. */
  if (!held && now - s->last_recv >= silence_limit(s)) {
    uvmqtt__session_log(s, UVMQTT_LOG_WARN,
                        "no answer from the broker for %llu ms",
                        (unsigned long long)(now - s->last_recv));
    return UVMQTT_EKEEPALIVE;
  }
  uint64_t k = keepalive_ms(s);
  bool due = held ? now - s->last_send >= k
                  : !s->ping_outstanding &&
                        (now - s->last_send >= k || now - s->last_recv >= k);
  if (s->state == UVMQTT_SS_CONNECTED && due) {
    uvmqtt_packet_t pkt;
    memset(&pkt, 0, sizeof(pkt));
    pkt.type = UVMQTT_PINGREQ;
    int rc = uvmqtt__out_packet(s, &pkt);
    if (rc < 0)
      return rc;
    s->ping_outstanding = true;
    /* It goes out in this loop iteration: the next one is due a period
     * from now (while held, nothing else moves the deadline). */
    s->last_send = now;
  }
  return 0;
}

uint64_t uvmqtt__session_deadline(const uvmqtt_session_t *s) {
  if (s->state == UVMQTT_SS_DISCONNECTED || s->keepalive_s == 0)
    return UINT64_MAX;
  if (holding(s))
    return s->last_send + keepalive_ms(s);
  uint64_t d = s->last_recv + silence_limit(s);
  if (s->state == UVMQTT_SS_CONNECTED && !s->ping_outstanding) {
    uint64_t p = s->last_send + keepalive_ms(s);
    uint64_t q = s->last_recv + keepalive_ms(s);
    if (p < d)
      d = p;
    if (q < d)
      d = q;
  }
  return d;
}

void uvmqtt__session_set_keepalive(uvmqtt_session_t *s, uint16_t seconds) {
  s->keepalive_s = seconds;
}

/* ---- publish / subscribe --------------------------------------------------
 */

static int check_size(uvmqtt_session_t *s, const uvmqtt_packet_t *pkt) {
  size_t size;
  int rc = uvmqtt_encode_size(pkt, s->version, &size);
  if (rc < 0)
    return rc;
  if (s->server_max_packet && size > s->server_max_packet)
    return UVMQTT_ETOOBIG;
  return 0;
}

/* A message object holding a copy of the topic and (unless zero-copy) of
 * the payload and properties; on no list yet, no packet id. */
static int msg_new(uvmqtt_session_t *s, uint64_t now,
                   const uvmqtt_session_pub_t *p, uvmqtt_session_fn cb,
                   void *arg, uvmqtt_smsg_t **out) {
  size_t extra = p->topic_len + (p->zero_copy ? 0 : p->payload_len);
  uvmqtt_smsg_t *m = uvmqtt__malloc(sizeof(*m) + extra);
  if (!m)
    return UVMQTT_ENOMEM;
  memset(m, 0, sizeof(*m));
  m->topic = (char *)(m + 1);
  memcpy(m->topic, p->topic, p->topic_len);
  m->topic_len = p->topic_len;
  if (p->zero_copy) {
    m->payload = p->payload;
  } else {
    uint8_t *pl = (uint8_t *)m->topic + p->topic_len;
    if (p->payload_len)
      memcpy(pl, p->payload, p->payload_len);
    m->payload = pl;
  }
  m->payload_len = p->payload_len;
  m->qos = p->qos;
  m->retain = p->retain;
  m->cb = cb;
  m->arg = arg;
  m->queued_at = now;
  m->expiry_s = p->expiry_s;
  if (p->props && s->version == UVMQTT_V5) {
    int rc = uvmqtt__props_dup(p->props, &m->props);
    if (rc < 0) {
      uvmqtt__free(m);
      return rc;
    }
  }
  *out = m;
  return 0;
}

int uvmqtt__session_publish(uvmqtt_session_t *s, uint64_t now,
                            const uvmqtt_session_pub_t *p, uvmqtt_session_fn cb,
                            void *arg) {
  uvmqtt_packet_t pkt;
  if (!p || (!p->payload && p->payload_len) || !p->topic)
    return UVMQTT_EINVAL;
  if (p->qos > 2 ||
      (s->state == UVMQTT_SS_CONNECTED && p->qos > s->server_max_qos))
    return UVMQTT_EQOS;
  if (p->retain && s->state == UVMQTT_SS_CONNECTED && !s->server_retain)
    return UVMQTT_ENOTSUP;
  if (p->props && s->state == UVMQTT_SS_CONNECTED &&
      (p->props->present & UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS)) &&
      p->props->topic_alias > s->server_alias_max)
    return UVMQTT_ETOPICALIAS;
  if (p->topic_len == 0 || p->topic_len > 65535)
    return UVMQTT_ETOPIC;
  memset(&pkt, 0, sizeof(pkt));
  pkt.type = UVMQTT_PUBLISH;
  pkt.u.publish.qos = p->qos;
  pkt.u.publish.retain = p->retain;
  pkt.u.publish.topic.data = p->topic;
  pkt.u.publish.topic.len = p->topic_len;
  pkt.u.publish.packet_id = p->qos ? 1 : 0;
  if (p->props && s->version == UVMQTT_V5)
    pkt.u.publish.props = *p->props;
  if (p->expiry_s && s->version == UVMQTT_V5) {
    /* Sent with the message: it counts toward the server's maximum. */
    pkt.u.publish.props.present |=
        UVMQTT_PROP_BIT(UVMQTT_PROP_MESSAGE_EXPIRY_INTERVAL);
    pkt.u.publish.props.message_expiry_interval = p->expiry_s;
  }
  pkt.u.publish.payload.data = p->payload;
  pkt.u.publish.payload.len = p->payload_len;
  int rc = check_size(s, &pkt);
  if (rc < 0)
    return rc;

  /* Fast path: QoS 0 while connected with nothing waiting goes straight
   * into the output buffer, without a message object. */
  if (p->qos == 0 && s->state == UVMQTT_SS_CONNECTED && !s->q_head &&
      !s->gated && !p->expiry_s &&
      (!p->zero_copy || p->payload_len <= INLINE_PAYLOAD_MAX)) {
    rc = uvmqtt__out_done_room(s, cb);
    if (rc == 0)
      rc = uvmqtt__out_publish(s, now, &pkt.u.publish, NULL, false);
    if (rc < 0)
      return rc;
    rc = uvmqtt__out_done_entry(s, cb, arg);
    return rc < 0 ? rc : 0;
  }

  /* Room in the queue? Messages that can go out at once do not count. */
  size_t bytes = p->payload_len + p->topic_len;
  bool goes_now = s->state == UVMQTT_SS_CONNECTED && !s->q_head && !s->gated &&
                  (p->qos == 0 || s->f_count < window(s));
  while (!goes_now &&
         ((s->max_queued && s->q_count >= s->max_queued) ||
          (s->max_queued_bytes && s->q_bytes + bytes > s->max_queued_bytes))) {
    if (s->queue_policy != 1 /* DROP_OLDEST */ || !s->q_head)
      return UVMQTT_EQUEUEFULL;
    uvmqtt_smsg_t *old = s->q_head;
    queue_unlink(s, old);
    uvmqtt__session_log(s, UVMQTT_LOG_WARN,
                        "queue full: dropping the oldest message (id %u)",
                        old->packet_id);
    msg_finish(s, old, UVMQTT_EDROPPED, 0);
  }

  uvmqtt_smsg_t *m;
  rc = msg_new(s, now, p, cb, arg, &m);
  if (rc < 0)
    return rc;
  if (m->qos > 0) {
    rc = alloc_id(s, &m->packet_id);
    if (rc < 0) {
      msg_free(m);
      return rc;
    }
  }
  m->stored = !(s->persist && m->qos > 0);
  list_append(&s->q_head, &s->q_tail, m);
  s->q_count++;
  s->q_bytes += bytes;
  int id = m->packet_id;
  if (!m->stored) {
    /* pump() holds it back until uvmqtt__session_stored() says it is
     * durable. A failure to queue the write is this call's error. */
    rc = persist_ev(s, UVMQTT_PERSIST_PUT, m, m->packet_id);
    if (rc < 0) {
      queue_unlink(s, m);
      uvmqtt__idset_del(&s->out_ids, m->packet_id);
      msg_free(m);
      return rc;
    }
  }
  /* pump() may send it at once. If that fails, the error is returned here
   * and its callback never fires (see session.h). A publish from inside a
   * callback of pump() nests, hence the saved outer state. */
  uvmqtt_smsg_t *outer = fresh.m;
  int outer_rc = fresh.rc;
  fresh.m = m;
  fresh.rc = 0;
  pump(s, now);
  rc = fresh.rc;
  fresh.m = outer;
  fresh.rc = outer_rc;
  if (rc < 0) {
    /* pump() unlinked it; nothing references it. */
    if (m->qos > 0)
      uvmqtt__idset_del(&s->out_ids, m->packet_id);
    msg_free(m);
    return rc;
  }
  return id;
}

static int new_request(uvmqtt_session_t *s, uint8_t type, size_t count,
                       uvmqtt_session_fn cb, void *arg, uvmqtt_sreq_t **out) {
  if (s->state != UVMQTT_SS_CONNECTED)
    return UVMQTT_ENOTCONN;
  uvmqtt_sreq_t *r = uvmqtt__calloc(1, sizeof(*r));
  if (!r)
    return UVMQTT_ENOMEM;
  int rc = alloc_id(s, &r->packet_id);
  if (rc < 0) {
    uvmqtt__free(r);
    return rc;
  }
  r->type = type;
  r->count = count;
  r->cb = cb;
  r->arg = arg;
  *out = r;
  return 0;
}

static int send_request(uvmqtt_session_t *s, uvmqtt_sreq_t *r,
                        uvmqtt_packet_t *pkt) {
  int rc = check_size(s, pkt);
  if (rc == 0)
    rc = uvmqtt__out_packet(s, pkt);
  if (rc < 0) {
    uvmqtt__idset_del(&s->out_ids, r->packet_id);
    uvmqtt__free(r);
    return rc;
  }
  /* A ring: s->reqs is the newest, its next the oldest. Answers come in
   * order, so the one answered is found first. */
  if (s->reqs) {
    r->next = s->reqs->next;
    s->reqs->next = r;
  } else {
    r->next = r;
  }
  s->reqs = r;
  return r->packet_id;
}

int uvmqtt__session_subscribe(uvmqtt_session_t *s,
                              const uvmqtt_subscription_t *subs, size_t n,
                              const uvmqtt_props_t *props, uvmqtt_session_fn cb,
                              void *arg) {
  uvmqtt_sreq_t *r;
  uvmqtt_packet_t pkt;
  if (!subs || n == 0)
    return UVMQTT_EINVAL;
  int rc = new_request(s, UVMQTT_SUBSCRIBE, n, cb, arg, &r);
  if (rc < 0)
    return rc;
  memset(&pkt, 0, sizeof(pkt));
  pkt.type = UVMQTT_SUBSCRIBE;
  pkt.u.subscribe.packet_id = r->packet_id;
  pkt.u.subscribe.subs = subs;
  pkt.u.subscribe.count = n;
  if (props && s->version == UVMQTT_V5)
    pkt.u.subscribe.props = *props;
  return send_request(s, r, &pkt);
}

int uvmqtt__session_unsubscribe(uvmqtt_session_t *s,
                                const uvmqtt_str_t *filters, size_t n,
                                const uvmqtt_props_t *props,
                                uvmqtt_session_fn cb, void *arg) {
  uvmqtt_sreq_t *r;
  uvmqtt_packet_t pkt;
  if (!filters || n == 0)
    return UVMQTT_EINVAL;
  int rc = new_request(s, UVMQTT_UNSUBSCRIBE, n, cb, arg, &r);
  if (rc < 0)
    return rc;
  memset(&pkt, 0, sizeof(pkt));
  pkt.type = UVMQTT_UNSUBSCRIBE;
  pkt.u.unsubscribe.packet_id = r->packet_id;
  pkt.u.unsubscribe.filters = filters;
  pkt.u.unsubscribe.count = n;
  if (props && s->version == UVMQTT_V5)
    pkt.u.unsubscribe.props = *props;
  return send_request(s, r, &pkt);
}

/* ---- incoming flow: halt, hold, manual acknowledgement --------------------
 */

static inflow_t *flow_get(uvmqtt_session_t *s) {
  if (!s->flow) {
    s->flow = uvmqtt__calloc(1, sizeof(*s->flow));
    if (s->flow)
      s->flow->next = s->flow->base = s->flow->conn_first = 1;
  }
  return s->flow;
}

static bool holding(const uvmqtt_session_t *s) {
  const inflow_t *f = s->flow;
  return f && !s->halted && s->state == UVMQTT_SS_CONNECTED &&
         (f->user_hold || f->auto_hold || f->store_wait);
}

/* Reports a change of holding() since `was`; the end of a hold gives the
 * broker a fresh keepalive period (we were not reading). */
static void hold_changed(uvmqtt_session_t *s, uint64_t now, bool was) {
  bool is = holding(s);
  if (is == was)
    return;
  if (!is) {
    s->last_recv = now;
    s->ping_outstanding = false;
  }
  if (s->ev_->on_hold)
    s->ev_->on_hold(s->ud, is);
}

static void auto_hold_update(uvmqtt_session_t *s) {
  inflow_t *f = s->flow;
  f->auto_hold = (f->max_msgs && f->unacked >= f->max_msgs) ||
                 (f->max_bytes && f->unacked_bytes >= f->max_bytes);
}

static in_ack_t *ring_at(inflow_t *f, uint64_t handle) {
  return &f->ring[(f->head + (uint32_t)(handle - f->base)) % f->cap];
}

/* Forgets every message waiting for its acknowledgement: its connection
 * ended (or is ending), so the broker sends it again. */
static void acks_forget(uvmqtt_session_t *s) {
  inflow_t *f = s->flow;
  if (!f)
    return;
  if (f->unacked)
    uvmqtt__session_log(
        s, UVMQTT_LOG_WARN,
        "%u delivered message(s) not acknowledged when the connection "
        "ended: the broker will send them again",
        (unsigned)f->unacked);
  while (f->count) {
    uvmqtt__free(f->ring[f->head].props);
    f->head = (f->head + 1) % f->cap;
    f->count--;
  }
  f->unacked = 0;
  f->unacked_bytes = 0;
  f->auto_hold = false;
  f->base = f->conn_first = f->next;
  f->held_len = 0;
}

static int out_ack_props(uvmqtt_session_t *s, uint8_t type, uint16_t id,
                         uint8_t reason, const uvmqtt_props_t *props) {
  uvmqtt_packet_t pkt;
  memset(&pkt, 0, sizeof(pkt));
  pkt.type = type;
  pkt.u.ack.packet_id = id;
  pkt.u.ack.reason_code = reason;
  if (props && s->version == UVMQTT_V5)
    pkt.u.ack.props = *props;
  return out_reason_packet(s, &pkt, &pkt.u.ack.props);
}

/* Sends the acknowledgements at the head of the ring that may go now. */
static int acks_flush(uvmqtt_session_t *s) {
  inflow_t *f = s->flow;
  while (f->count && f->ring[f->head].acked) {
    in_ack_t *e = &f->ring[f->head];
    /* A PUBREC starts the wait for PUBREL: the id is then a duplicate
     * filter (and, with a store, recorded), as in automatic mode. */
    bool add = e->qos == 2 && e->reason < 0x80 &&
               !uvmqtt__idset_has(s->in_ids, e->packet_id);
    if (add) {
      int rc = uvmqtt__idset_add(&s->in_ids, e->packet_id);
      if (rc < 0)
        return rc;
    }
    int rc = out_ack_props(s, e->qos == 2 ? UVMQTT_PUBREC : UVMQTT_PUBACK,
                           e->packet_id, e->reason, e->props);
    if (rc < 0) {
      if (add)
        uvmqtt__idset_del(&s->in_ids, e->packet_id);
      return rc;
    }
    if (add)
      (void)persist_ev(s, UVMQTT_PERSIST_IN_ADD, NULL, e->packet_id);
    uvmqtt__free(e->props);
    e->props = NULL;
    f->head = (f->head + 1) % f->cap;
    f->count--;
    f->base++;
  }
  return 0;
}

/* Records a message about to be delivered in manual mode. */
static int acks_push(uvmqtt_session_t *s, const uvmqtt_publish_t *pub) {
  inflow_t *f = s->flow;
  if (f->count == f->cap) {
    uint32_t cap = f->cap ? f->cap * 2 : 16;
    in_ack_t *r = uvmqtt__malloc(cap * sizeof(*r));
    if (!r)
      return UVMQTT_ENOMEM;
    for (uint32_t i = 0; i < f->count; i++)
      r[i] = f->ring[(f->head + i) % f->cap];
    uvmqtt__free(f->ring);
    f->ring = r;
    f->cap = cap;
    f->head = 0;
  }
  in_ack_t *e = &f->ring[(f->head + f->count) % f->cap];
  e->props = NULL;
  e->bytes =
      pub->payload.len > UINT32_MAX ? UINT32_MAX : (uint32_t)pub->payload.len;
  e->packet_id = pub->packet_id;
  e->qos = pub->qos;
  e->reason = 0;
  e->acked = false;
  f->count++;
  f->unacked++;
  f->unacked_bytes += e->bytes;
  f->cur = f->next++;
  return 0;
}

/* A QoS 1/2 message the broker sent again while its first copy waits for
 * the application's acknowledgement (same connection): the pending
 * acknowledgement answers both. */
static bool acks_pending_id(const inflow_t *f, uint16_t id) {
  for (uint32_t i = 0; i < f->count; i++) {
    const in_ack_t *e = &f->ring[(f->head + i) % f->cap];
    if (e->packet_id == id && !e->acked)
      return true;
  }
  return false;
}

void uvmqtt__session_halt_input(uvmqtt_session_t *s) {
  bool was = holding(s);
  s->halted = true;
  hold_changed(s, s->last_recv, was); /* the owner reads again, to drain */
}

bool uvmqtt__session_halted(const uvmqtt_session_t *s) {
  return s->halted;
}

int uvmqtt__session_set_manual_ack(uvmqtt_session_t *s, uint32_t max_msgs,
                                   size_t max_bytes) {
  inflow_t *f = flow_get(s);
  if (!f)
    return UVMQTT_ENOMEM;
  f->manual = true;
  f->max_msgs = max_msgs;
  f->max_bytes = max_bytes;
  return 0;
}

int uvmqtt__session_set_handle_base(uvmqtt_session_t *s, uint64_t base) {
  inflow_t *f = s->flow;
  if (!f || !f->manual || base == 0 || f->next != 1 ||
      s->state != UVMQTT_SS_DISCONNECTED)
    return UVMQTT_ESTATE;
  f->next = f->base = f->conn_first = base;
  return 0;
}

uint64_t uvmqtt__session_msg_handle(const uvmqtt_session_t *s) {
  return s->flow ? s->flow->cur : 0;
}

size_t uvmqtt__session_unacked(const uvmqtt_session_t *s, size_t *bytes) {
  if (bytes)
    *bytes = s->flow ? s->flow->unacked_bytes : 0;
  return s->flow ? s->flow->unacked : 0;
}

static bool ack_reason_ok(uint8_t r) {
  static const uint8_t ok[] = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x97, 0x99};
  return memchr(ok, r, sizeof(ok)) != NULL;
}

int uvmqtt__session_ack(uvmqtt_session_t *s, uint64_t now, uint64_t handle,
                        uint8_t reason, const uvmqtt_props_t *props) {
  inflow_t *f = s->flow;
  if (handle == 0)
    return 0;
  if (!f || !f->manual || handle >= f->next)
    return UVMQTT_EINVAL;
  if (handle < f->conn_first)
    return UVMQTT_ESTALE;
  if (handle < f->base || ring_at(f, handle)->acked)
    return UVMQTT_EACKED;
  if (s->version != UVMQTT_V5 && (reason != 0 || props))
    return UVMQTT_ENOTSUP;
  if (!ack_reason_ok(reason))
    return UVMQTT_EINVAL;
  in_ack_t *e = ring_at(f, handle);
  if (props) {
    int rc = uvmqtt__props_dup(props, &e->props);
    if (rc < 0)
      return rc;
  }
  bool was = holding(s);
  e->acked = true;
  e->reason = reason;
  f->unacked--;
  f->unacked_bytes -= e->bytes;
  auto_hold_update(s);
  /* A failure to queue leaves the ack at the head, sent by the next
   * flush; the connection is in trouble anyway (out of memory). */
  int rc = acks_flush(s);
  if (rc < 0)
    uvmqtt__session_log(s, UVMQTT_LOG_ERROR,
                        "cannot queue an acknowledgement: %s",
                        uvmqtt_strerror(rc));
  hold_changed(s, now, was);
  return 0;
}

int uvmqtt__session_hold(uvmqtt_session_t *s, uint64_t now, bool on) {
  inflow_t *f = flow_get(s);
  if (!f)
    return UVMQTT_ENOMEM;
  bool was = holding(s);
  f->user_hold = on;
  hold_changed(s, now, was);
  return 0;
}

bool uvmqtt__session_holding(const uvmqtt_session_t *s) {
  return holding(s);
}

size_t uvmqtt__session_held(const uvmqtt_session_t *s) {
  return s->flow ? s->flow->held_len : 0;
}

/* Keeps input that arrives while holding. */
static int held_append(uvmqtt_session_t *s, const uint8_t *data, size_t len) {
  inflow_t *f = s->flow;
  if (len == 0)
    return 0; /* nothing to keep (and no buffer yet, maybe: no memcpy) */
  if (f->held_len + len > f->held_cap) {
    size_t cap = f->held_cap ? f->held_cap : 4096;
    while (cap < f->held_len + len)
      cap *= 2;
    uint8_t *b = uvmqtt__realloc(f->held, cap);
    if (!b)
      return UVMQTT_ENOMEM;
    f->held = b;
    f->held_cap = cap;
  }
  memcpy(f->held + f->held_len, data, len);
  f->held_len += len;
  return 0;
}

static int input_run(uvmqtt_session_t *s, uint64_t now, const uint8_t *data,
                     size_t len);

int uvmqtt__session_release_input(uvmqtt_session_t *s, uint64_t now) {
  inflow_t *f = s->flow;
  if (!f || f->held_len == 0 || holding(s) || s->halted)
    return 0;
  /* Handled from a buffer of its own: a new hold keeps the rest in a
   * fresh one. */
  uint8_t *b = f->held;
  size_t len = f->held_len;
  f->held = NULL;
  f->held_len = f->held_cap = 0;
  int rc = input_run(s, now, b, len);
  uvmqtt__free(b);
  return rc;
}

/* ---- input
 * ------------------------------------------------------------------- */

static int unexpected(uvmqtt_session_t *s, const char *what, unsigned id) {
  uvmqtt__session_log(s, UVMQTT_LOG_ERROR,
                      "protocol violation by the broker: %s (id %u)", what, id);
  return UVMQTT_EUNEXPECTED;
}

/* After CONNACK: resend what was in flight, or apply the session-loss
 * rule (see session.h). */
static int resume_inflight(uvmqtt_session_t *s, uint64_t now, bool present) {
  if (!present) {
    if (s->persist) /* rare (a session lost): a scan of the id space */
      for (uint32_t id = 1; id <= 65535 && uvmqtt__idset_count(s->in_ids); id++)
        if (uvmqtt__idset_has(s->in_ids, (uint16_t)id)) {
          uvmqtt__idset_del(&s->in_ids, (uint16_t)id);
          (void)persist_ev(s, UVMQTT_PERSIST_IN_DEL, NULL, (uint16_t)id);
        }
    uvmqtt__idset_clear(&s->in_ids);
    if (s->flow)
      s->flow->nknown = 0;
    /* Walk from the tail so that prepending keeps the original order. */
    uvmqtt_smsg_t *m = s->f_tail;
    while (m) {
      uvmqtt_smsg_t *prev = m->prev;
      list_remove(&s->f_head, &s->f_tail, m);
      s->f_count--;
      if (m->qos == 2) {
        uvmqtt__session_log(
            s, UVMQTT_LOG_WARN,
            "broker has no session: QoS 2 message %u cannot be completed "
            "exactly once",
            m->packet_id);
        msg_finish(s, m, UVMQTT_ESESSION, 0);
      } else {
        uvmqtt__session_log(s, UVMQTT_LOG_INFO,
                            "broker has no session: sending QoS 1 message %u "
                            "again as a new message",
                            m->packet_id);
        m->dup = false;
        m->state = MSG_QUEUED;
        (void)persist_ev(s, UVMQTT_PERSIST_REQUEUED, m, m->packet_id);
        list_prepend(&s->q_head, &s->q_tail, m);
        s->q_count++;
        s->q_bytes += m->payload_len + m->topic_len;
      }
      m = prev;
    }
    return 0;
  }
  for (uvmqtt_smsg_t *m = s->f_head; m; m = m->next) {
    int rc;
    if (m->state == MSG_WAIT_COMP) {
      if (!m->stored)
        continue; /* PUBREL once its state is durable (see on_ack) */
      rc = uvmqtt__out_ack(s, UVMQTT_PUBREL, m->packet_id, 0);
    } else {
      uvmqtt_publish_t pub;
      m->dup = true;
      msg_to_publish(m, &pub);
      /* Aliases belong to the old connection; the resend carries the full
       * topic (and gets a fresh automatic alias if any). */
      pub.props.present &= ~UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS);
      rc = uvmqtt__out_publish(s, now, &pub, m, true);
    }
    if (rc < 0)
      return rc;
  }
  return 0;
}

static int on_connack(uvmqtt_session_t *s, uint64_t now,
                      const uvmqtt_connack_t *ack) {
  if (s->state != UVMQTT_SS_CONNECTING)
    return unexpected(s, "CONNACK while connected", 0);
  if (ack->reason_code != 0) {
    s->state = UVMQTT_SS_DISCONNECTED;
    if (s->ev_->on_connack)
      s->ev_->on_connack(s->ud, ack);
    return UVMQTT_EREFUSED;
  }
  if (s->clean_start && ack->session_present)
    /* [MQTT-3.2.2-4]: we asked for a new session; a broker claiming an
     * old one is not to be believed. */
    return unexpected(s, "CONNACK with session present after clean start", 0);
  s->state = UVMQTT_SS_CONNECTED;
  if (holding(s) && s->ev_->on_hold)
    s->ev_->on_hold(s->ud, true); /* paused before this connection */
  if (s->version == UVMQTT_V5) {
    const uvmqtt_props_t *p = &ack->props;
    if (p->present & UVMQTT_PROP_BIT(UVMQTT_PROP_RECEIVE_MAXIMUM))
      s->server_receive_max = p->receive_maximum;
    if (p->present & UVMQTT_PROP_BIT(UVMQTT_PROP_MAXIMUM_PACKET_SIZE))
      s->server_max_packet = p->maximum_packet_size;
    if (p->present & UVMQTT_PROP_BIT(UVMQTT_PROP_SERVER_KEEP_ALIVE))
      s->keepalive_s = p->server_keep_alive;
    if (p->present & UVMQTT_PROP_BIT(UVMQTT_PROP_MAXIMUM_QOS))
      s->server_max_qos = p->maximum_qos;
    if (p->present & UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS_MAXIMUM))
      s->server_alias_max = p->topic_alias_maximum;
    if (p->present & UVMQTT_PROP_BIT(UVMQTT_PROP_RETAIN_AVAILABLE))
      s->server_retain = p->retain_available != 0;
  }
  int rc = resume_inflight(s, now, ack->session_present);
  if (rc < 0)
    return rc;
  if (s->ev_->on_connack)
    s->ev_->on_connack(s->ud, ack);
  if (s->state == UVMQTT_SS_CONNECTED)
    pump(s, now);
  return 0;
}

/* v5: QoS 1/2 messages the broker has in flight towards us may not
 * exceed our Receive Maximum: those waiting for our PUBACK / PUBREC
 * (manual acknowledgement) and QoS 2 ones waiting for PUBREL. */
static int recv_max_check(uvmqtt_session_t *s) {
  uint16_t rmax = s->receive_maximum ? s->receive_maximum : 65535;
  size_t n = uvmqtt__idset_count(s->in_ids) + (s->flow ? s->flow->count : 0);
  if (s->version == UVMQTT_V5 && n >= rmax) {
    uvmqtt__session_log(
        s, UVMQTT_LOG_ERROR,
        "broker exceeded our receive maximum %u (%zu QoS 1/2 messages in "
        "flight towards us)",
        rmax, n + 1);
    return UVMQTT_ERECVMAX;
  }
  return 0;
}

/* Manual mode: delivers with a handle; the ack waits for the application. */
static int on_publish_manual(uvmqtt_session_t *s, const uvmqtt_publish_t *pub) {
  inflow_t *f = s->flow;
  if (pub->qos == 2 && uvmqtt__idset_has(s->in_ids, pub->packet_id))
    return uvmqtt__out_ack(s, UVMQTT_PUBREC, pub->packet_id,
                           0); /* acked before */
  if (pub->dup && acks_pending_id(f, pub->packet_id)) {
    uvmqtt__session_log(s, UVMQTT_LOG_DEBUG,
                        "message %u sent again before we acknowledged it",
                        pub->packet_id);
    return 0;
  }
  int rc = recv_max_check(s);
  if (rc == 0)
    rc = acks_push(s, pub);
  if (rc < 0)
    return rc;
  bool was = holding(s);
  auto_hold_update(s);
  hold_changed(s, s->last_recv, was);
  if (s->ev_->on_message)
    s->ev_->on_message(s->ud, pub);
  f->cur = 0;
  return 0;
}

/* ---- record first (exactly-once option) --------------------------------- */

static int known_find(const inflow_t *f, uint16_t pid) {
  for (uint32_t i = 0; i < f->nknown; i++)
    if (f->known[i].pid == pid)
      return (int)i;
  return -1;
}

static void known_drop(inflow_t *f, int i) {
  f->known[i] = f->known[--f->nknown];
}

/* Hands a message to the application with its delivery id. */
static void deliver_did(uvmqtt_session_t *s, const uvmqtt_publish_t *pub,
                        uint64_t did, bool maybe) {
  inflow_t *f = s->flow;
  f->cur_did = did;
  f->cur_maybe = maybe;
  if (s->ev_->on_message)
    s->ev_->on_message(s->ud, pub);
  f->cur_did = 0;
  f->cur_maybe = false;
}

static void wait_free(inflow_t *f) {
  uvmqtt__free(f->wait_data);
  uvmqtt__free(f->wait_props);
  f->wait_data = NULL;
  f->wait_props = NULL;
  f->store_wait = false;
}

/* Keeps the message until its record is durable. */
static int wait_keep(inflow_t *f, const uvmqtt_publish_t *pub) {
  size_t tl = pub->topic.len, pl = pub->payload.len;
  if (tl + pl < tl)
    return UVMQTT_ENOMEM;
  f->wait_data = uvmqtt__malloc(tl + pl);
  if (!f->wait_data)
    return UVMQTT_ENOMEM;
  f->wait_props = NULL;
  if (pub->props.present &&
      uvmqtt__props_dup(&pub->props, &f->wait_props) < 0) {
    uvmqtt__free(f->wait_data);
    f->wait_data = NULL;
    return UVMQTT_ENOMEM;
  }
  if (tl)
    memcpy(f->wait_data, pub->topic.data, tl);
  if (pl)
    memcpy(f->wait_data + tl, pub->payload.data, pl);
  f->wait_pub = *pub;
  f->wait_pub.topic.data = (const char *)f->wait_data;
  f->wait_pub.payload.data = f->wait_data + tl;
  if (f->wait_props)
    f->wait_pub.props = *f->wait_props;
  return 0;
}

/* Automatic acknowledgement, record first: a new QoS 2 message is
 * recorded with its delivery id; input is held until the record is
 * durable (uvmqtt__session_in_stored), then it is delivered and PUBREC
 * goes. A message an earlier process recorded is delivered marked as
 * possibly delivered, with the same id. */
static int on_publish_first(uvmqtt_session_t *s, const uvmqtt_publish_t *pub) {
  inflow_t *f = s->flow;
  uint16_t pid = pub->packet_id;
  int k = known_find(f, pid);
  if (k >= 0) {
    uint64_t did = f->known[k].did;
    known_drop(f, k);
    deliver_did(s, pub, did, true);
    return uvmqtt__out_ack(s, UVMQTT_PUBREC, pid, 0);
  }
  if (f->store_wait && f->wait_pid == pid)
    return 0; /* sent again while its record is written: PUBREC follows */
  if (uvmqtt__idset_has(s->in_ids, pid))
    return uvmqtt__out_ack(s, UVMQTT_PUBREC, pid, 0);
  int rc = recv_max_check(s);
  if (rc == 0)
    rc = uvmqtt__idset_add(&s->in_ids, pid);
  if (rc < 0)
    return rc;
  uint64_t did = f->next_did++;
  bool was = holding(s);
  if (wait_keep(f, pub) == 0) {
    f->wait_pid = pid;
    f->wait_did = did;
    f->wait_gen = s->gen;
    f->store_wait = true;
    if (persist_ev(s, UVMQTT_PERSIST_IN_FIRST, NULL, pid) == 0) {
      hold_changed(s, s->last_recv, was);
      return 0;
    }
    wait_free(f);
  }
  /* Not recorded (no memory): delivered now, as without the option. */
  uvmqtt__session_log(
      s, UVMQTT_LOG_ERROR,
      "cannot record QoS 2 message %u before delivering it: delivered "
      "without the record-first guarantee",
      pid);
  (void)persist_ev(s, UVMQTT_PERSIST_IN_ADD, NULL, pid);
  deliver_did(s, pub, did, false);
  return uvmqtt__out_ack(s, UVMQTT_PUBREC, pid, 0);
}

uint64_t uvmqtt__session_in_did(const uvmqtt_session_t *s, bool *maybe) {
  const inflow_t *f = s->flow;
  if (maybe)
    *maybe = f && f->cur_maybe;
  if (!f)
    return 0;
  return f->cur_did ? f->cur_did : f->store_wait ? f->wait_did : 0;
}

void uvmqtt__session_in_stored(uvmqtt_session_t *s, uint64_t now, uint16_t pid,
                               int status) {
  inflow_t *f = s->flow;
  if (!f || !f->store_wait || f->wait_pid != pid)
    return;
  bool was = holding(s);
  if (status < 0)
    uvmqtt__session_log(
        s, UVMQTT_LOG_ERROR,
        "QoS 2 message %u not recorded (%s): delivered without the "
        "record-first guarantee",
        pid, uvmqtt_strerror(status));
  if (s->halted) {
    /* The application left: not delivered, and forgotten here so that
     * the broker's resend is delivered (the record only marks it). */
    uvmqtt__idset_del(&s->in_ids, pid);
  } else {
    deliver_did(s, &f->wait_pub, f->wait_did, false);
    if (s->state == UVMQTT_SS_CONNECTED && s->gen == f->wait_gen &&
        !s->halted && uvmqtt__out_ack(s, UVMQTT_PUBREC, pid, 0) < 0)
      uvmqtt__session_log(s, UVMQTT_LOG_ERROR,
                          "cannot queue PUBREC %u: the broker resends it", pid);
  }
  wait_free(f);
  hold_changed(s, now, was);
}

int uvmqtt__session_set_record_first(uvmqtt_session_t *s, uint64_t did_base) {
  inflow_t *f = flow_get(s);
  if (!f)
    return UVMQTT_ENOMEM;
  if (!s->persist || f->manual || did_base == 0)
    return UVMQTT_EINVAL;
  f->record_first = true;
  f->next_did = did_base;
  return 0;
}

static int on_publish(uvmqtt_session_t *s, const uvmqtt_publish_t *in) {
  uvmqtt_publish_t resolved = *in, *pub = &resolved;
  if (s->version == UVMQTT_V5) {
    int rc = uvmqtt__alias_in(s, pub);
    if (rc < 0)
      return rc;
  } else if (pub->topic.len == 0) {
    uvmqtt__session_log(s, UVMQTT_LOG_ERROR,
                        "broker sent a PUBLISH without a topic");
    return UVMQTT_EPROTOCOL;
  }
  if (pub->qos > 0 && s->flow && s->flow->manual)
    return on_publish_manual(s, pub);
  switch (pub->qos) {
  case 0:
    if (s->ev_->on_message)
      s->ev_->on_message(s->ud, pub);
    return 0;
  case 1: {
    /* Acknowledged after the callback: the PUBACK is queued first, so
     * that it leads what the callback queues (a reply, say), as the
     * broker sent the message first; the broker then frees the message
     * before it routes the reply. It still leaves only after the callback
     * returns: output is written from the client's flush, which never
     * runs inside a callback (a close, a disconnect or a drop asked for
     * there waits for it to return). Also when the application asked to
     * leave from inside it: the halt takes effect after this packet and
     * the DISCONNECT is queued after this ack. Without room for the ack,
     * the message is not delivered: the broker sends it again. */
    int rc = uvmqtt__out_ack(s, UVMQTT_PUBACK, pub->packet_id, 0);
    if (rc == 0 && s->ev_->on_message)
      s->ev_->on_message(s->ud, pub);
    return rc;
  }
  default:
    if (s->flow && s->flow->record_first)
      return on_publish_first(s, pub);
    if (!uvmqtt__idset_has(s->in_ids, pub->packet_id)) {
      int rc = recv_max_check(s);
      if (rc == 0)
        rc = uvmqtt__idset_add(&s->in_ids, pub->packet_id);
      if (rc < 0)
        return rc;
      (void)persist_ev(s, UVMQTT_PERSIST_IN_ADD, NULL, pub->packet_id);
      if (s->ev_->on_message)
        s->ev_->on_message(s->ud, pub);
    }
    return uvmqtt__out_ack(s, UVMQTT_PUBREC, pub->packet_id, 0);
  }
}

static int on_ack(uvmqtt_session_t *s, uint64_t now, uint8_t type,
                  const uvmqtt_ack_t *ack) {
  uint16_t id = ack->packet_id;
  uvmqtt_smsg_t *m;
  switch (type) {
  case UVMQTT_PUBACK:
    m = inflight_find(s, id);
    if (!m || m->qos != 1)
      return unexpected(s, "PUBACK for an unknown packet id", id);
    break;
  case UVMQTT_PUBREC:
    m = inflight_find(s, id);
    if (!m || m->qos != 2) {
      if (s->version == UVMQTT_V5)
        return uvmqtt__out_ack(s, UVMQTT_PUBREL, id, 0x92);
      return unexpected(s, "PUBREC for an unknown packet id", id);
    }
    if (ack->reason_code < 0x80) {
      m->state = MSG_WAIT_COMP;
      if (s->persist && !s->freeing) {
        /* PUBREL waits until "PUBREC received" is durable: a restart
         * that still believes it sent only the PUBLISH resends it, and
         * after a PUBREL the broker would take that for a new message. */
        m->stored = false;
        if (persist_ev(s, UVMQTT_PERSIST_PUBREC, m, id) == 0)
          return 0;
        m->stored = true; /* cannot store it: carry on as without */
      }
      return uvmqtt__out_ack(s, UVMQTT_PUBREL, id, 0);
    }
    break;
  case UVMQTT_PUBREL: {
    bool known = uvmqtt__idset_has(s->in_ids, id);
    if (s->flow && s->flow->nknown) { /* released: it had been delivered */
      int k = known_find(s->flow, id);
      if (k >= 0)
        known_drop(s->flow, k);
    }
    uvmqtt__idset_del(&s->in_ids, id);
    if (known)
      (void)persist_ev(s, UVMQTT_PERSIST_IN_DEL, NULL, id);
    return uvmqtt__out_ack(s, UVMQTT_PUBCOMP, id,
                           (!known && s->version == UVMQTT_V5) ? 0x92 : 0);
  }
  default: /* PUBCOMP */
    m = inflight_find(s, id);
    if (!m || m->state != MSG_WAIT_COMP)
      return unexpected(s, "PUBCOMP for an unknown packet id", id);
    break;
  }
  list_remove(&s->f_head, &s->f_tail, m);
  s->f_count--;
  int status = ack->reason_code >= 0x80 ? UVMQTT_EREJECTED : 0;
  msg_finish_ack(s, m, status, ack->reason_code,
                 s->version == UVMQTT_V5 ? &ack->props : NULL);
  pump(s, now);
  return 0;
}

static int on_suback(uvmqtt_session_t *s, uint8_t type,
                     const uvmqtt_suback_t *ack) {
  uint8_t want = type == UVMQTT_SUBACK ? UVMQTT_SUBSCRIBE : UVMQTT_UNSUBSCRIBE;
  uvmqtt_sreq_t *prev = s->reqs, *r = NULL; /* from the oldest */
  if (prev) {
    do {
      uvmqtt_sreq_t *q = prev->next;
      if (q->packet_id == ack->packet_id && q->type == want) {
        r = q;
        break;
      }
      prev = q;
    } while (prev != s->reqs);
  }
  if (!r)
    return unexpected(s,
                      type == UVMQTT_SUBACK ? "SUBACK for an unknown packet id"
                                            : "UNSUBACK for an unknown id",
                      ack->packet_id);
  bool v3_unsuback = type == UVMQTT_UNSUBACK && s->version != UVMQTT_V5;
  if (!v3_unsuback && ack->count != r->count)
    return unexpected(s, "SUBACK/UNSUBACK with the wrong number of codes",
                      ack->packet_id);
  if (r == prev)
    s->reqs = NULL; /* the only one */
  else {
    prev->next = r->next;
    if (r == s->reqs)
      s->reqs = prev;
  }
  uvmqtt__idset_del(&s->out_ids, r->packet_id);
  if (s->ev_->on_sub_done)
    s->ev_->on_sub_done(s->ud, r->type, r->cb, r->arg, 0, r->packet_id,
                        ack->codes, ack->count, &ack->props);
  uvmqtt__free(r);
  return 0;
}

static int handle(uvmqtt_session_t *s, uint64_t now,
                  const uvmqtt_packet_t *pkt) {
  if (pkt->type != UVMQTT_CONNACK && pkt->type != UVMQTT_AUTH &&
      pkt->type != UVMQTT_DISCONNECT && s->state != UVMQTT_SS_CONNECTED)
    return unexpected(s, uvmqtt_packet_name(pkt->type), 0);
  switch (pkt->type) {
  case UVMQTT_CONNACK:
    return on_connack(s, now, &pkt->u.connack);
  case UVMQTT_PUBLISH:
    return on_publish(s, &pkt->u.publish);
  case UVMQTT_PUBACK:
  case UVMQTT_PUBREC:
  case UVMQTT_PUBREL:
  case UVMQTT_PUBCOMP:
    return on_ack(s, now, pkt->type, &pkt->u.ack);
  case UVMQTT_SUBACK:
  case UVMQTT_UNSUBACK:
    return on_suback(s, pkt->type, &pkt->u.suback);
  case UVMQTT_PINGRESP:
    s->ping_outstanding = false;
    return 0;
  case UVMQTT_DISCONNECT:
    uvmqtt__session_log(
        s, UVMQTT_LOG_WARN, "broker sent DISCONNECT: %s (0x%02x)",
        uvmqtt_reason_string(pkt->u.disconnect.reason_code, false),
        pkt->u.disconnect.reason_code);
    if (s->ev_->on_disconnect)
      s->ev_->on_disconnect(s->ud, &pkt->u.disconnect);
    return UVMQTT_EDISCONNECTED;
  case UVMQTT_AUTH:
    if (s->ev_->on_auth)
      s->ev_->on_auth(s->ud, &pkt->u.auth);
    return 0;
  default:
    return unexpected(s, "packet type a client must not receive", 0);
  }
}

/* The parser between packets needs nothing but the configuration and the
 * stream offset, so it lives on the stack of uvmqtt__session_input() while
 * packets arrive whole: an idle session holds no parser. When a read ends
 * inside a packet the parser moves to the heap (s->in), in one block with
 * the packet's buffer once its size is known, and goes back to the stack
 * when that packet is complete. */
static void parser_start(const uvmqtt_session_t *s, uvmqtt_parser_t *p,
                         uint64_t offset) {
  uvmqtt_parser_init(p, s->version, UVMQTT_ROLE_CLIENT, s->max_packet_size);
  p->offset = offset;
}

/* Lends the parser its NEED_BUFFER bytes, moving it to the heap with them.
 * *pp is the parser in use (the stack one or s->in). */
static int parser_park(uvmqtt_session_t *s, uvmqtt_parser_t **pp, size_t need) {
  uvmqtt_parser_t *p = *pp;
  if (need > SIZE_MAX - sizeof(*p))
    return UVMQTT_ENOMEM;
  /* No buffer is lent in this state, so the block may move. */
  uvmqtt_parser_t *h = uvmqtt__realloc(s->in, sizeof(*p) + need);
  if (!h)
    return UVMQTT_ENOMEM;
  if (!s->in)
    *h = *p;
  s->in = h;
  *pp = h;
  if (need && uvmqtt_parser_set_buffer(h, (uint8_t *)(h + 1), need) < 0)
    return UVMQTT_EMALFORMED;
  return 0;
}

int uvmqtt__session_input(uvmqtt_session_t *s, uint64_t now,
                          const uint8_t *data, size_t len) {
  s->last_recv = now; /* any byte is a sign of life */
  if (s->in_error)
    return s->in_error;
  if (s->halted)
    return 0;
  if (s->flow && (s->flow->held_len || holding(s))) {
    /* Behind bytes already kept: keep these too, in order. */
    int rc = held_append(s, data, len);
    if (rc < 0)
      return rc;
    return uvmqtt__session_release_input(s, now);
  }
  return input_run(s, now, data, len);
}

static int input_run(uvmqtt_session_t *s, uint64_t now, const uint8_t *data,
                     size_t len) {
  uvmqtt_parser_t stack, *p = s->in;
  uint8_t gen = s->gen;
  bool broken = false; /* the stream cannot be resumed */
  int rc = 0;
  if (!p) {
    parser_start(s, &stack, s->in_offset);
    p = &stack;
  }
  while (len > 0) {
    size_t used = 0;
    uvmqtt_packet_t pkt;
    rc = uvmqtt_parser_feed(p, data, len, &used, &pkt);
    data += used;
    len -= used;
    if (rc == UVMQTT_PARSE_PACKET) {
      rc = handle(s, now, &pkt);
      if (s->gen != gen)
        return rc < 0 ? rc : 0; /* the connection ended in a callback */
      if (p != &stack) {
        /* The packet that needed the heap is done (its buffer goes with
         * the block). */
        parser_start(s, &stack, p->offset);
        uvmqtt__free(s->in);
        s->in = NULL;
        p = &stack;
      }
      if (rc < 0 || s->state == UVMQTT_SS_DISCONNECTED)
        break;
      if (s->halted) {
        /* The application is leaving: what follows is neither delivered
         * nor acknowledged (the broker sends it again). */
        len = 0;
        break;
      }
      if (len > 0 && holding(s)) {
        rc = held_append(s, data, len);
        if (rc < 0)
          broken = true;
        len = 0;
        break;
      }
    } else if (rc == UVMQTT_PARSE_NEED_BUFFER) {
      rc = parser_park(s, &p, p->need);
      if (rc < 0) {
        broken = true;
        break;
      }
    } else if (rc < 0) {
      uvmqtt__session_log(s, UVMQTT_LOG_ERROR,
                          "malformed packet from the broker at byte %llu: %s",
                          (unsigned long long)p->error_offset,
                          uvmqtt_strerror(rc));
      broken = true;
      break;
    } else if (used == 0) {
      break;
    }
  }
  if (p == &stack) {
    s->in_offset = stack.offset;
    /* A read ending inside a fixed header: keep the bytes seen. */
    if (!broken && !s->halted && uvmqtt_parser_in_packet(&stack) &&
        (rc = parser_park(s, &p, 0)) < 0)
      broken = true;
  }
  if (broken) {
    /* Sticky, as the parser's own errors: what was received so far is
     * lost, so the owner closes the connection. A handler's error (a
     * protocol violation) leaves the stream in step and is not sticky. */
    s->in_error = (int16_t)rc;
    uvmqtt__free(s->in);
    s->in = NULL;
  }
  return rc < 0 ? rc : 0;
}

/* ---- queries
 * --------------------------------------------------------------------- */

void uvmqtt__session_set_gate(uvmqtt_session_t *s, bool on) {
  s->gated = on;
}

void uvmqtt__session_pump(uvmqtt_session_t *s, uint64_t now) {
  pump(s, now);
}

uvmqtt_session_state_t uvmqtt__session_state(const uvmqtt_session_t *s) {
  return s->state;
}
size_t uvmqtt__session_inflight(const uvmqtt_session_t *s) {
  return s->f_count;
}
size_t uvmqtt__session_in_pending(const uvmqtt_session_t *s) {
  return uvmqtt__idset_count(s->in_ids);
}
size_t uvmqtt__session_queued(const uvmqtt_session_t *s) {
  return s->q_count;
}
bool uvmqtt__session_has_output(const uvmqtt_session_t *s) {
  return s->cur != NULL;
}
bool uvmqtt__session_owes(const uvmqtt_session_t *s, size_t n) {
  size_t k = s->f_count;
  for (const uvmqtt_sreq_t *r = s->reqs; r && k < n; r = r->next) {
    k++;
    if (r->next == s->reqs)
      break; /* the ring is done */
  }
  return k >= n;
}
uint16_t uvmqtt__session_keepalive(const uvmqtt_session_t *s) {
  return s->keepalive_s;
}
uint32_t uvmqtt__session_server_max_packet(const uvmqtt_session_t *s) {
  return s->server_max_packet;
}
uint16_t uvmqtt__session_server_alias_max(const uvmqtt_session_t *s) {
  return s->server_alias_max;
}

/* ---- persistence (see session.h) ------------------------------------------
 */

void uvmqtt__session_stored(uvmqtt_session_t *s, uvmqtt_smsg_t *m, uint64_t now,
                            int status) {
  m->stored = true;
  if (m->done) { /* completed while its write was under way */
    if (m->refs == 0)
      uvmqtt__session_msg_fire(s, m, NULL);
    return;
  }
  if (m->state == MSG_WAIT_COMP) {
    /* "PUBREC received" is durable (or could not be stored: go on). */
    if (status < 0)
      uvmqtt__session_log(s, UVMQTT_LOG_ERROR,
                          "cannot store the state of message %u: %s",
                          m->packet_id, uvmqtt_strerror(status));
    if (s->state == UVMQTT_SS_CONNECTED &&
        uvmqtt__out_ack(s, UVMQTT_PUBREL, m->packet_id, 0) < 0)
      uvmqtt__session_log(s, UVMQTT_LOG_ERROR, "cannot queue PUBREL %u",
                          m->packet_id);
    return;
  }
  if (status < 0) {
    /* Never sent (pump() held it back): it is still in the queue. */
    queue_unlink(s, m);
    uvmqtt__session_log(s, UVMQTT_LOG_ERROR, "cannot store message %u: %s",
                        m->packet_id, uvmqtt_strerror(status));
    msg_finish(s, m, status, 0);
    return;
  }
  pump(s, now);
}

void uvmqtt__smsg_view(const uvmqtt_smsg_t *m, uvmqtt_publish_t *pub,
                       uint32_t *expiry_s, int *state) {
  msg_to_publish(m, pub);
  pub->dup = false;
  *expiry_s = m->expiry_s;
  *state = m->state == MSG_WAIT_COMP ? 2 : m->state == MSG_WAIT_ACK ? 1 : 0;
}

int uvmqtt__session_restore_msg(uvmqtt_session_t *s, uint64_t now,
                                const uvmqtt_publish_t *pub, uint32_t expiry_s,
                                int state, uvmqtt_session_fn cb, void *arg) {
  uvmqtt_session_pub_t p;
  uvmqtt_smsg_t *m;
  if (s->state != UVMQTT_SS_DISCONNECTED)
    return UVMQTT_ESTATE;
  if (!pub || pub->qos == 0 || pub->qos > 2 || pub->packet_id == 0 ||
      state < 0 || state > 2 || (state == 2 && pub->qos != 2) ||
      !pub->topic.len)
    return UVMQTT_EINVAL;
  if (uvmqtt__idset_has(s->out_ids, pub->packet_id))
    return UVMQTT_EEXIST;
  memset(&p, 0, sizeof(p));
  p.topic = pub->topic.data;
  p.topic_len = pub->topic.len;
  p.payload = pub->payload.data;
  p.payload_len = pub->payload.len;
  p.qos = pub->qos;
  p.retain = pub->retain;
  p.props = &pub->props;
  p.expiry_s = expiry_s;
  int rc = msg_new(s, now, &p, cb, arg, &m);
  if (rc < 0)
    return rc;
  if (m->props) /* kept in the record, not a property to send twice */
    m->props->present &= ~UVMQTT_PROP_BIT(UVMQTT_PROP_MESSAGE_EXPIRY_INTERVAL);
  rc = uvmqtt__idset_add(&s->out_ids, pub->packet_id);
  if (rc < 0) {
    msg_free(m);
    return rc;
  }
  m->packet_id = pub->packet_id;
  m->stored = true;
  if (state == 0) {
    list_append(&s->q_head, &s->q_tail, m);
    s->q_count++;
    s->q_bytes += m->payload_len + m->topic_len;
  } else {
    m->state = state == 2 ? MSG_WAIT_COMP : MSG_WAIT_ACK;
    m->dup = true;
    list_append(&s->f_head, &s->f_tail, m);
    s->f_count++;
  }
  return 0;
}

int uvmqtt__session_restore_in_id(uvmqtt_session_t *s, uint16_t id,
                                  uint64_t did) {
  if (s->state != UVMQTT_SS_DISCONNECTED)
    return UVMQTT_ESTATE;
  if (id == 0)
    return UVMQTT_EPACKETID;
  if (did) {
    inflow_t *f = flow_get(s);
    if (!f)
      return UVMQTT_ENOMEM;
    int k = known_find(f, id);
    if (k < 0) {
      if (f->nknown == f->known_cap) {
        uint32_t cap = f->known_cap ? f->known_cap * 2 : 8;
        struct known_in *v = uvmqtt__realloc(f->known, cap * sizeof(*v));
        if (!v)
          return UVMQTT_ENOMEM;
        f->known = v;
        f->known_cap = cap;
      }
      k = (int)f->nknown++;
      f->known[k].pid = id;
    }
    f->known[k].did = did;
  }
  return uvmqtt__idset_has(s->in_ids, id) ? 0
                                          : uvmqtt__idset_add(&s->in_ids, id);
}

void uvmqtt__session_each_msg(uvmqtt_session_t *s,
                              void (*fn)(void *ctx, uvmqtt_smsg_t *m,
                                         uvmqtt_session_fn cb, void *arg),
                              void *ctx) {
  for (uvmqtt_smsg_t *m = s->f_head; m; m = m->next)
    fn(ctx, m, m->cb, m->arg);
  for (uvmqtt_smsg_t *m = s->q_head; m; m = m->next)
    fn(ctx, m, m->cb, m->arg);
}
