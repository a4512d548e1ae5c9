/* See harness.h. */
#include "harness.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

harness_t H;

void h_cb(void) {}

#define PUSH(arr, n, cap)                                                      \
  do {                                                                         \
    if ((n) == (cap)) {                                                        \
      (cap) = (cap) ? (cap)*2 : 64;                                            \
      (arr) = realloc((arr), (cap) * sizeof(*(arr)));                          \
      assert_non_null(arr);                                                    \
    }                                                                          \
    memset(&(arr)[(n)], 0, sizeof(*(arr)));                                    \
  } while (0)

static void trace(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void trace(const char *fmt, ...) {
  char line[512];
  va_list ap;
  if (!H.tracing)
    return;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  assert_true(n > 0 && (size_t)n < sizeof(line));
  if (H.tlen + (size_t)n + 2 > H.tcap) {
    H.tcap = (H.tcap + (size_t)n + 2) * 2;
    H.trace = realloc(H.trace, H.tcap);
    assert_non_null(H.trace);
  }
  memcpy(H.trace + H.tlen, line, (size_t)n);
  H.tlen += (size_t)n;
  H.trace[H.tlen++] = '\n';
  H.trace[H.tlen] = 0;
}

void h_trace_on(void) {
  H.tracing = true;
  trace("start");
}

static unsigned sum(const uint8_t *p, size_t n) {
  unsigned h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 16777619u;
  return h;
}

static void copy_str(char *dst, size_t cap, const char *src, size_t len) {
  assert_true(len < cap);
  if (len)
    memcpy(dst, src, len);
  dst[len] = 0;
}

/* ---- events ------------------------------------------------------------ */

static void ev_connack(void *ud, const uvmqtt_connack_t *ack) {
  assert_ptr_equal(ud, &H);
  H.nconnack++;
  H.connack = *ack;
  memset(&H.connack.props, 0, sizeof(H.connack.props));
  trace("connack sp=%d rc=%u", ack->session_present, ack->reason_code);
}

static void ev_message(void *ud, const uvmqtt_publish_t *pub) {
  assert_ptr_equal(ud, &H);
  PUSH(H.msg, H.nmsg, H.capmsg);
  rmsg_t *m = &H.msg[H.nmsg++];
  copy_str(m->topic, sizeof(m->topic), pub->topic.data, pub->topic.len);
  m->len = pub->payload.len;
  m->payload = malloc(m->len + 1);
  assert_non_null(m->payload);
  if (m->len)
    memcpy(m->payload, pub->payload.data, m->len);
  m->payload[m->len] = 0;
  m->qos = pub->qos;
  m->dup = pub->dup;
  m->retain = pub->retain;
  m->id = pub->packet_id;
  m->handle = uvmqtt__session_msg_handle(H.s);
  trace("msg %s q%u dup%d r%d id%u len%zu sum%08x", m->topic, m->qos, m->dup,
        m->retain, m->id, m->len, sum(m->payload, m->len));
  if (H.msg_hook)
    H.msg_hook(pub);
}

static void ev_publish_done(void *ud, uvmqtt_session_fn cb, void *arg,
                            int status, uint16_t id, uint8_t reason,
                            const uvmqtt_props_t *props) {
  (void)props;
  assert_ptr_equal(ud, &H);
  PUSH(H.pub, H.npub, H.cappub);
  pubdone_t *d = &H.pub[H.npub++];
  d->cb = cb;
  d->arg = (long)(intptr_t)arg;
  d->status = status;
  d->id = id;
  d->reason = reason;
  trace("done arg=%ld st=%d id=%u rc=%u", d->arg, status, id, reason);
}

static void ev_sub_done(void *ud, int type, uvmqtt_session_fn cb, void *arg,
                        int status, uint16_t id, const uint8_t *codes,
                        size_t count, const uvmqtt_props_t *props) {
  (void)props;
  assert_ptr_equal(ud, &H);
  assert_ptr_equal(cb, h_cb);
  PUSH(H.sub, H.nsub, H.capsub);
  subdone_t *d = &H.sub[H.nsub++];
  d->type = type;
  d->arg = (long)(intptr_t)arg;
  d->status = status;
  d->id = id;
  d->count = count;
  assert_true(count <= 16);
  if (count)
    memcpy(d->codes, codes, count);
  trace("sub type=%d arg=%ld st=%d id=%u n=%zu c0=%u", type, d->arg, status, id,
        count, count ? codes[0] : 0);
}

static void ev_disconnect(void *ud, const uvmqtt_reason_t *r) {
  assert_ptr_equal(ud, &H);
  H.ndisc++;
  H.disc_reason = r->reason_code;
  trace("disconnect rc=%u", r->reason_code);
}

static void ev_auth(void *ud, const uvmqtt_reason_t *r) {
  assert_ptr_equal(ud, &H);
  H.nauth++;
  trace("auth rc=%u", r->reason_code);
}

static void ev_output(void *ud) {
  assert_ptr_equal(ud, &H);
  H.noutput++;
}

static void ev_log(void *ud, int level, const char *msg) {
  (void)level;
  assert_ptr_equal(ud, &H);
  H.nlog++;
  snprintf(H.lastlog, sizeof(H.lastlog), "%s", msg);
}

static int ev_persist(void *ud, int op, uvmqtt_smsg_t *m, uint16_t id) {
  assert_ptr_equal(ud, &H);
  return H.persist_hook ? H.persist_hook(op, m, id) : 0;
}

static void ev_hold(void *ud, bool holding) {
  assert_ptr_equal(ud, &H);
  assert_true(holding != H.holding); /* reported on changes only */
  H.nhold++;
  H.holding = holding;
  trace("hold %d", holding);
}

static const uvmqtt_session_events_t events = {
    ev_connack, ev_message, ev_publish_done, ev_sub_done, ev_disconnect,
    ev_auth,    ev_output,  ev_log,          ev_persist,  ev_hold};

/* ---- lifecycle ----------------------------------------------------------- */

uvmqtt_session_config_t h_cfg(uint8_t version) {
  uvmqtt_session_config_t c;
  memset(&c, 0, sizeof(c));
  c.version = version;
  c.max_inflight = 20;
  c.queue_policy = QP_REFUSE_NEW;
  return c;
}

int h_try_init(const uvmqtt_session_config_t *cfg) {
  memset(&H, 0, sizeof(H));
  H.version = cfg->version;
  return uvmqtt__session_new(cfg, &events, &H, &H.s);
}

void h_init(const uvmqtt_session_config_t *cfg) {
  assert_int_equal(h_try_init(cfg), 0);
  assert_non_null(H.s);
}

void h_init_v(uint8_t version) {
  uvmqtt_session_config_t c = h_cfg(version);
  h_init(&c);
}

void h_clear(void) {
  for (size_t i = 0; i < H.nsent; i++)
    free(H.sent[i].payload);
  for (size_t i = 0; i < H.nmsg; i++)
    free(H.msg[i].payload);
  H.nsent = H.npub = H.nsub = H.nmsg = 0;
  H.nconnack = H.ndisc = H.nauth = H.noutput = H.nlog = 0;
}

void h_fini(int status) {
  if (H.s)
    uvmqtt__session_free(H.s, status);
  H.s = NULL;
  h_clear();
  free(H.sent);
  free(H.pub);
  free(H.sub);
  free(H.msg);
  free(H.trace);
  memset(&H, 0, sizeof(H));
}

int h_connect_pkt(uint64_t now, const uvmqtt_connect_t *c) {
  return uvmqtt__session_connect(H.s, now, c);
}

int h_connect(uint64_t now, uint16_t keepalive, bool clean) {
  uvmqtt_connect_t c;
  memset(&c, 0, sizeof(c));
  c.clean_start = clean;
  c.keep_alive = keepalive;
  c.client_id.data = "c1";
  c.client_id.len = 2;
  return h_connect_pkt(now, &c);
}

/* ---- output -------------------------------------------------------------- */

static void record(const uvmqtt_packet_t *p, size_t size) {
  PUSH(H.sent, H.nsent, H.capsent);
  sent_t *s = &H.sent[H.nsent++];
  s->type = p->type;
  s->flags = p->flags;
  s->size = size;
  switch (p->type) {
  case UVMQTT_CONNECT: {
    const uvmqtt_connect_t *c = &p->u.connect;
    s->version = c->protocol_version;
    memset(H.alias, 0, sizeof(H.alias)); /* aliases live per connection */
    s->keep_alive = c->keep_alive;
    s->clean = c->clean_start;
    copy_str(s->client_id, sizeof(s->client_id), c->client_id.data,
             c->client_id.len);
    s->will = c->will;
    s->will_qos = c->will_qos;
    s->will_retain = c->will_retain;
    if (c->will)
      copy_str(s->will_topic, sizeof(s->will_topic), c->will_topic.data,
               c->will_topic.len);
    s->has_username = c->has_username;
    if (c->has_username)
      copy_str(s->username, sizeof(s->username), c->username.data,
               c->username.len);
    s->has_password = c->has_password;
    s->has_session_expiry =
        (c->props.present &
         UVMQTT_PROP_BIT(UVMQTT_PROP_SESSION_EXPIRY_INTERVAL)) != 0;
    s->session_expiry = c->props.session_expiry_interval;
    trace("out CONNECT v%u ka%u", s->version, s->keep_alive);
    break;
  }
  case UVMQTT_PUBLISH: {
    const uvmqtt_publish_t *u = &p->u.publish;
    s->dup = u->dup;
    s->qos = u->qos;
    s->retain = u->retain;
    s->id = u->packet_id;
    copy_str(s->topic, sizeof(s->topic), u->topic.data, u->topic.len);
    if (u->props.present & UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS)) {
      /* As a broker would: define, or resolve (never before defined). */
      uint16_t a = u->props.topic_alias;
      assert_true(a >= 1 && a <= 64);
      if (u->topic.len)
        copy_str(H.alias[a], sizeof(H.alias[a]), u->topic.data, u->topic.len);
      else if (!H.alias[a][0])
        fail_msg("PUBLISH uses topic alias %u before defining it", a);
      else
        strcpy(s->topic, H.alias[a]);
      s->alias_only = u->topic.len == 0;
      s->alias = a;
    }
    s->payload_len = u->payload.len;
    s->payload = malloc(u->payload.len + 1);
    assert_non_null(s->payload);
    if (u->payload.len)
      memcpy(s->payload, u->payload.data, u->payload.len);
    s->payload[u->payload.len] = 0;
    s->has_expiry = (u->props.present &
                     UVMQTT_PROP_BIT(UVMQTT_PROP_MESSAGE_EXPIRY_INTERVAL)) != 0;
    s->expiry = u->props.message_expiry_interval;
    trace("out PUBLISH %s q%u dup%d id%u len%zu sum%08x", s->topic, s->qos,
          s->dup, s->id, s->payload_len, sum(s->payload, s->payload_len));
    break;
  }
  case UVMQTT_PUBACK:
  case UVMQTT_PUBREC:
  case UVMQTT_PUBREL:
  case UVMQTT_PUBCOMP:
    s->id = p->u.ack.packet_id;
    s->reason = p->u.ack.reason_code;
    trace("out %s id%u rc%u", uvmqtt_packet_name(p->type), s->id, s->reason);
    break;
  case UVMQTT_SUBSCRIBE:
    s->id = p->u.subscribe.packet_id;
    s->count = p->u.subscribe.count;
    trace("out SUBSCRIBE id%u n%zu", s->id, s->count);
    break;
  case UVMQTT_UNSUBSCRIBE:
    s->id = p->u.unsubscribe.packet_id;
    s->count = p->u.unsubscribe.count;
    trace("out UNSUBSCRIBE id%u n%zu", s->id, s->count);
    break;
  case UVMQTT_DISCONNECT:
    s->reason = p->u.disconnect.reason_code;
    trace("out DISCONNECT rc%u", s->reason);
    break;
  default:
    trace("out %s", uvmqtt_packet_name(p->type));
    break;
  }
}

/* Decodes a whole batch; every byte must belong to a well-formed packet. */
static size_t decode_out(const uvmqtt_iov_t *iov, size_t n) {
  size_t total = 0, off = 0, count = 0;
  for (size_t i = 0; i < n; i++)
    total += iov[i].len;
  uint8_t *buf = malloc(total ? total : 1);
  assert_non_null(buf);
  for (size_t i = 0; i < n; i++) {
    if (iov[i].len)
      memcpy(buf + off, iov[i].base, iov[i].len);
    off += iov[i].len;
  }
  uvmqtt_parser_t p;
  uvmqtt_parser_init(&p, H.version, UVMQTT_ROLE_SERVER, 0);
  off = 0;
  while (off < total) {
    size_t used = 0;
    uvmqtt_packet_t pkt;
    uint64_t start = p.offset;
    int rc = uvmqtt_parser_feed(&p, buf + off, total - off, &used, &pkt);
    if (rc != UVMQTT_PARSE_PACKET)
      fail_msg("session output does not decode at byte %zu: rc %d (%s)", off,
               rc, rc < 0 ? uvmqtt_err_name(rc) : "incomplete");
    off += used;
    record(&pkt, (size_t)(p.offset - start));
    count++;
  }
  free(buf);
  return count;
}

uvmqtt_out_batch_t *h_take(uint64_t now, const uvmqtt_iov_t **iov, size_t *n) {
  uvmqtt_out_batch_t *b = NULL;
  const uvmqtt_iov_t *v = NULL;
  size_t k = uvmqtt__session_take_output(H.s, now, &v, &b);
  if (n)
    *n = k;
  if (iov)
    *iov = v;
  if (k == 0)
    return NULL;
  assert_non_null(b);
  decode_out(v, k);
  return b;
}

void h_done(uvmqtt_out_batch_t *b, int status) {
  uvmqtt__session_output_done(H.s, b, status);
}

size_t h_flush(uint64_t now) {
  size_t before = H.nsent;
  uvmqtt_out_batch_t *b = h_take(now, NULL, NULL);
  if (b)
    h_done(b, 0);
  return H.nsent - before;
}

/* ---- broker bytes ------------------------------------------------------ */

size_t b_pkt(uint8_t *buf, size_t cap, const uvmqtt_packet_t *pkt) {
  int n = uvmqtt_encode(pkt, H.version, buf, cap);
  if (n < 0)
    fail_msg("cannot encode test packet: %s", uvmqtt_err_name(n));
  return (size_t)n;
}

size_t b_connack(uint8_t *buf, bool sp, uint8_t rc,
                 const uvmqtt_props_t *props) {
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_CONNACK;
  p.u.connack.session_present = sp;
  p.u.connack.reason_code = rc;
  if (props)
    p.u.connack.props = *props;
  return b_pkt(buf, 256, &p);
}

size_t b_ack(uint8_t *buf, uint8_t type, uint16_t id, uint8_t reason) {
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = type;
  p.u.ack.packet_id = id;
  p.u.ack.reason_code = reason;
  return b_pkt(buf, 64, &p);
}

size_t b_publish(uint8_t *buf, size_t cap, const char *topic,
                 const void *payload, size_t len, uint8_t qos, uint16_t id,
                 bool dup) {
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_PUBLISH;
  p.u.publish.topic.data = topic;
  p.u.publish.topic.len = strlen(topic);
  p.u.publish.payload.data = payload;
  p.u.publish.payload.len = len;
  p.u.publish.qos = qos;
  p.u.publish.packet_id = id;
  p.u.publish.dup = dup;
  return b_pkt(buf, cap, &p);
}

size_t b_suback(uint8_t *buf, uint8_t type, uint16_t id, const uint8_t *codes,
                size_t n) {
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = type;
  p.u.suback.packet_id = id;
  p.u.suback.codes = codes;
  p.u.suback.count = n;
  return b_pkt(buf, 256, &p);
}

int h_feed(uint64_t now, const uint8_t *data, size_t len) {
  return uvmqtt__session_input(H.s, now, data, len);
}

int h_feed_pkt(uint64_t now, const uvmqtt_packet_t *pkt) {
  uint8_t buf[1024];
  size_t n = b_pkt(buf, sizeof(buf), pkt);
  return h_feed(now, buf, n);
}

int h_feed_ack(uint64_t now, uint8_t type, uint16_t id, uint8_t reason) {
  uint8_t buf[64];
  size_t n = b_ack(buf, type, id, reason);
  return h_feed(now, buf, n);
}

int h_feed_connack(uint64_t now, bool sp, uint8_t rc,
                   const uvmqtt_props_t *props) {
  uint8_t buf[256];
  size_t n = b_connack(buf, sp, rc, props);
  return h_feed(now, buf, n);
}

int h_feed_publish(uint64_t now, const char *topic, const char *payload,
                   uint8_t qos, uint16_t id, bool dup) {
  uint8_t buf[1024];
  size_t n = b_publish(buf, sizeof(buf), topic, payload, strlen(payload), qos,
                       id, dup);
  return h_feed(now, buf, n);
}

void h_up_keep(uint64_t now) {
  assert_int_equal(h_connect(now, 0, true), 0);
  h_flush(now);
  assert_int_equal(h_feed_connack(now, false, 0, NULL), 0);
  assert_int_equal(uvmqtt__session_state(H.s), UVMQTT_SS_CONNECTED);
  h_flush(now);
}

void h_up(uint64_t now) {
  h_up_keep(now);
  h_clear();
}

/* ---- requests ------------------------------------------------------------ */

int h_pub_ex(uint64_t now, const uvmqtt_session_pub_t *p, long arg) {
  return uvmqtt__session_publish(H.s, now, p, h_cb, (void *)(intptr_t)arg);
}

int h_pub(uint64_t now, const char *topic, const char *payload, uint8_t qos,
          long arg) {
  uvmqtt_session_pub_t p;
  memset(&p, 0, sizeof(p));
  p.topic = topic;
  p.topic_len = strlen(topic);
  p.payload = payload;
  p.payload_len = strlen(payload);
  p.qos = qos;
  return h_pub_ex(now, &p, arg);
}

int h_sub(const char *filter, uint8_t qos, long arg) {
  uvmqtt_subscription_t s;
  s.filter.data = filter;
  s.filter.len = strlen(filter);
  s.options = qos;
  return uvmqtt__session_subscribe(H.s, &s, 1, NULL, h_cb,
                                   (void *)(intptr_t)arg);
}

int h_ndone(long arg) {
  int n = 0;
  for (size_t i = 0; i < H.npub; i++)
    if (H.pub[i].arg == arg)
      n++;
  return n;
}

const pubdone_t *h_donefor(long arg) {
  const pubdone_t *d = NULL;
  for (size_t i = 0; i < H.npub; i++)
    if (H.pub[i].arg == arg)
      d = &H.pub[i];
  return d;
}

size_t h_count_sent(uint8_t type, size_t from) {
  size_t n = 0;
  for (size_t i = from; i < H.nsent; i++)
    if (H.sent[i].type == type)
      n++;
  return n;
}
