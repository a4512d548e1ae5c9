/* libFuzzer target for the sans-I/O session (src/session.h).
 *
 * The input is a script (see session_ops.h): a setup header choosing the
 * version and the session options, then operations a client and a broker
 * would perform: raw broker bytes, broker packets built from what the
 * session has sent (acks for its ids, CONNACK with v5 limits, PUBLISH,
 * PUBREL), publish / subscribe / unsubscribe, clock ticks, taking and
 * returning output batches, connection loss and reconnection, and
 * allocation failures.
 *
 * Checked properties, any violation aborts:
 * - every publish / subscribe / unsubscribe that returned success completes
 *   exactly once (by the time the session is freed), with its own packet
 *   id; one that failed never completes, and none completes from inside
 *   its own call;
 * - success completions come only from broker input (QoS 1/2, requests) or
 *   from a written batch (QoS 0); SUBACK codes match the request;
 * - a zero-copy payload (a heap block freed by its completion) is never
 *   read after that completion: held batches are read again before they
 *   are returned;
 * - every output batch decodes, with a server-role parser, as whole valid
 *   packets: CONNECT first and only after connecting, each PUBLISH matching
 *   a pending publish (topic through the broker's view of the topic
 *   aliases, payload, QoS, packet id), nothing over the server's maximum
 *   packet size, aliases within the server's maximum and defined before
 *   use;
 * - packet ids are never reused while in use; in-flight never exceeds
 *   max_inflight; tick() before deadline() reports no error;
 * - a QoS 2 message is delivered once until its PUBREL; topics of received
 *   messages resolve as the broker defined them;
 * - no event after uvmqtt__session_free(), and no leak (LeakSanitizer). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session/session.h"
#include "session_ops.h"
#include "uvmqtt/alloc.h"
#include "uvmqtt/codec.h"
#include "uvmqtt/errors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz_session: check failed: %s (line %d)\n", #cond,     \
              __LINE__);                                                       \
      abort();                                                                 \
    }                                                                          \
  } while (0)

/* FUZZ_SESSION_TRACE=1 in the environment prints what happens. */
static int tracing = -1;
#define TRACE(...)                                                             \
  do {                                                                         \
    if (tracing)                                                               \
      fprintf(stderr, __VA_ARGS__);                                            \
  } while (0)

#define MAX_SLOTS 4096
#define MAX_HELD 4
#define MAX_PEND 512
#define MAX_REL 64
#define SMALL_IDS 9 /* broker PUBLISH ids 1..8 */

enum { K_PUB = 1, K_SUB, K_UNSUB };
enum { S_FREE = 0, S_IN_CALL, S_LIVE, S_DONE, S_FAILED };

typedef struct {
  uint8_t kind, state, qos, topic;
  bool accepted; /* the call returned success */
  bool nocb;     /* no completion callback was given */
  uint16_t id;
  size_t len;  /* payload length (K_PUB) or entry count */
  uint8_t *zc; /* zero-copy payload, freed on completion */
} slot_t;

typedef struct {
  uint8_t type; /* what the broker owes: PUBACK, PUBREC, ... */
  uint16_t id;
  size_t count;
} pend_t;

typedef struct {
  uvmqtt_out_batch_t *b;
  const uvmqtt_iov_t *iov;
  size_t n;
} held_t;

static struct {
  const uint8_t *in;
  size_t len, pos;

  uvmqtt_session_t *s;
  uvmqtt_session_config_t cfg;
  uint8_t version;
  uint64_t now;
  bool conn_open; /* connect() succeeded, connection not lost yet */
  bool freed;
  int in_input, in_done, in_release, in_call;

  slot_t slots[MAX_SLOTS];
  size_t nslots;
  held_t held[MAX_HELD];
  size_t nheld;

  /* The broker's view of the current connection. */
  bool expect_connect;
  pend_t pend[MAX_PEND];
  size_t npend;
  uint16_t rel[MAX_REL]; /* incoming QoS 2 ids PUBREC'd by the client */
  size_t nrel;
  char alias[65][512]; /* outgoing aliases as the broker learnt them */
  bool alias_set[65];
  char in_alias[16][64]; /* incoming aliases the broker defined */
  /* Model of incoming QoS 2 ids held for PUBREL; valid until raw bytes
   * are fed (they may carry anything). */
  bool model_valid;
  bool unsent_acked; /* acks not drawn from what was sent were fed */
  bool qos2_held[SMALL_IDS];
  int nmsg;
  const char *expect_topic; /* for the structured PUBLISH being fed */

  /* Allocation failure: fail when the countdown reaches 0. */
  long fail_in;
} F;

static void fn_cb(void) {}

/* ---- allocator --------------------------------------------------------- */

static bool fail_now(void) {
  if (F.fail_in > 0 && --F.fail_in == 0)
    return true;
  return false;
}
static void *f_malloc(size_t n) {
  return fail_now() ? NULL : malloc(n);
}
static void *f_realloc(void *p, size_t n) {
  return fail_now() ? NULL : realloc(p, n);
}
static void *f_calloc(size_t c, size_t n) {
  return fail_now() ? NULL : calloc(c, n);
}

/* ---- input ------------------------------------------------------------- */

static uint8_t r8(void) {
  return F.pos < F.len ? F.in[F.pos++] : 0;
}

/* ---- fixed content ----------------------------------------------------- */

static char long_topic[400];

static const char *topic_of(uint8_t sel) {
  static const char *t[] = {
      "a", "a/b", "sensors/1/temperature", "x/y/z", "$SYS/x", "é/ü", NULL};
  sel %= 7;
  if (t[sel] == NULL) {
    if (!long_topic[0]) {
      memset(long_topic, 'l', sizeof(long_topic) - 1);
      long_topic[sizeof(long_topic) - 1] = 0;
    }
    return long_topic;
  }
  return t[sel];
}

static size_t size_of(uint8_t sel) {
  static const size_t sz[] = {0, 1, 17, 200, 2048, 2049, 4100, 9000};
  return sz[sel & 7] + (size_t)(sel >> 3);
}

static uint8_t pattern(size_t slot, size_t j) {
  return (uint8_t)(slot * 131 + j * 7 + 1);
}

/* ---- slots ------------------------------------------------------------- */

static slot_t *new_slot(uint8_t kind) {
  if (F.nslots >= MAX_SLOTS)
    return NULL;
  slot_t *sl = &F.slots[F.nslots++];
  memset(sl, 0, sizeof(*sl));
  sl->kind = kind;
  sl->state = S_IN_CALL;
  return sl;
}

static slot_t *slot_of(void *arg) {
  slot_t *sl = arg;
  CHECK(sl >= F.slots && sl < F.slots + F.nslots);
  CHECK(((const char *)sl - (const char *)F.slots) % sizeof(slot_t) == 0);
  return sl;
}

/* A new id must not belong to a request or message still in use. Only
 * meaningful when no batch exists: a finished message whose payload a
 * batch still references completes (and looks live) until that batch is
 * returned, while its id is already free. */
static void check_id_free(const slot_t *me, uint16_t id) {
  for (size_t i = 0; i < F.nslots; i++) {
    const slot_t *o = &F.slots[i];
    if (o == me || o->state != S_LIVE)
      continue;
    if (o->kind == K_PUB && o->qos == 0)
      continue;
    CHECK(o->id != id);
  }
}

static void finish_slot(slot_t *sl) {
  CHECK(sl->state == S_LIVE); /* not failed, not in its own call, once */
  sl->state = S_DONE;
  free(sl->zc);
  sl->zc = NULL;
}

/* Reads every byte, so that a stale view trips AddressSanitizer. */
static volatile uint8_t sink;
static void read_all(const void *p, size_t n) {
  const uint8_t *b = p;
  uint8_t x = 0;
  for (size_t i = 0; i < n; i++)
    x ^= b[i];
  sink ^= x;
}

/* ---- events ------------------------------------------------------------ */

static void ev_connack(void *ud, const uvmqtt_connack_t *ack) {
  CHECK(ud == &F && !F.freed);
  CHECK(F.in_input);
  (void)ack;
}

static void ev_message(void *ud, const uvmqtt_publish_t *pub) {
  CHECK(ud == &F && !F.freed);
  CHECK(F.in_input);
  CHECK(pub->qos <= 2);
  CHECK(pub->topic.len > 0 && pub->topic.data != NULL);
  read_all(pub->topic.data, pub->topic.len);
  read_all(pub->payload.data, pub->payload.len);
  if (F.expect_topic) {
    CHECK(pub->topic.len == strlen(F.expect_topic));
    CHECK(memcmp(pub->topic.data, F.expect_topic, pub->topic.len) == 0);
  }
  F.nmsg++;
}

static void ev_publish_done(void *ud, uvmqtt_session_fn cb, void *arg,
                            int status, uint16_t packet_id, uint8_t reason,
                            const uvmqtt_props_t *props) {
  (void)props;
  CHECK(ud == &F && !F.freed);
  CHECK(cb == fn_cb); /* publishes without a callback never complete */
  slot_t *sl = slot_of(arg);
  TRACE("  done pub slot %zu q%u id %u status %d reason %u\n",
        (size_t)(sl - F.slots), sl->qos, packet_id, status, reason);
  CHECK(sl->kind == K_PUB);
  CHECK(sl->state != S_IN_CALL); /* never from inside its own publish */
  CHECK(status <= 0);
  if (sl->qos > 0)
    CHECK(packet_id == sl->id);
  if (status == 0) {
    if (sl->qos > 0) {
      /* Acked; or acked earlier while a batch still held its payload. */
      CHECK(F.in_input || F.in_done || F.in_release);
      CHECK(reason < 0x80);
    } else {
      CHECK(F.in_done);
    }
  }
  if (status == UVMQTT_EREJECTED)
    CHECK(reason >= 0x80 && (F.in_input || F.in_done || F.in_release));
  finish_slot(sl);
}

static void ev_sub_done(void *ud, int type, uvmqtt_session_fn cb, void *arg,
                        int status, uint16_t packet_id, const uint8_t *codes,
                        size_t count, const uvmqtt_props_t *props) {
  (void)props;
  CHECK(ud == &F && !F.freed);
  CHECK(type == UVMQTT_SUBSCRIBE || type == UVMQTT_UNSUBSCRIBE);
  if (status < 0)
    CHECK(codes == NULL && count == 0);
  else
    CHECK(status == 0 && F.in_input);
  if (cb == NULL) {
    CHECK(arg == NULL);
    return;
  }
  CHECK(cb == fn_cb);
  slot_t *sl = slot_of(arg);
  TRACE("  done sub slot %zu id %u status %d\n", (size_t)(sl - F.slots),
        packet_id, status);
  CHECK(sl->kind == (type == UVMQTT_SUBSCRIBE ? K_SUB : K_UNSUB));
  CHECK(sl->state != S_IN_CALL);
  CHECK(packet_id == sl->id);
  if (status == 0) {
    if (type == UVMQTT_SUBSCRIBE || F.version == UVMQTT_V5)
      CHECK(count == sl->len);
    else
      CHECK(count == 0);
    read_all(codes, count);
  }
  finish_slot(sl);
}

static void ev_disconnect(void *ud, const uvmqtt_reason_t *r) {
  (void)r;
  CHECK(ud == &F && !F.freed && F.in_input);
}

static void ev_auth(void *ud, const uvmqtt_reason_t *r) {
  (void)r;
  CHECK(ud == &F && !F.freed && F.in_input);
}

static void ev_output(void *ud) {
  CHECK(ud == &F && !F.freed);
  CHECK(uvmqtt__session_has_output(F.s));
}

static void ev_log(void *ud, int level, const char *msg) {
  (void)level;
  CHECK(ud == &F && !F.freed);
  CHECK(msg != NULL && strlen(msg) < 256);
}

static const uvmqtt_session_events_t events = {
    ev_connack,    ev_message, ev_publish_done, ev_sub_done,
    ev_disconnect, ev_auth,    ev_output,       ev_log};

/* ---- the broker's view of the output ------------------------------------ */

static void pend_add(uint8_t type, uint16_t id, size_t count) {
  if (F.npend < MAX_PEND)
    F.pend[F.npend++] = (pend_t){type, id, count};
}

static void reset_conn_model(void) {
  F.npend = 0;
  F.nrel = 0;
  memset(F.alias_set, 0, sizeof(F.alias_set));
}

/* Finds a live publish that this PUBLISH carries. */
static void check_publish(const uvmqtt_publish_t *p) {
  const char *topic = NULL;
  size_t tlen = p->topic.len;
  bool has_alias =
      (p->props.present & UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS)) != 0;
  if (has_alias) {
    uint16_t a = p->props.topic_alias;
    CHECK(F.version == UVMQTT_V5);
    CHECK(a >= 1 && a <= 64 && a <= uvmqtt__session_server_alias_max(F.s));
    if (p->topic.len) {
      CHECK(p->topic.len < sizeof(F.alias[a]));
      memcpy(F.alias[a], p->topic.data, p->topic.len);
      F.alias[a][p->topic.len] = 0;
      F.alias_set[a] = true;
      topic = F.alias[a];
    } else {
      CHECK(F.alias_set[a]); /* never used before it was defined */
      topic = F.alias[a];
      tlen = strlen(topic);
    }
  } else {
    CHECK(p->topic.len > 0);
    topic = p->topic.data;
  }
  for (size_t i = 0; i < F.nslots; i++) {
    const slot_t *sl = &F.slots[i];
    if (sl->kind != K_PUB || !sl->accepted || sl->qos != p->qos)
      continue;
    /* A completed message is never sent again, unless the broker acked a
     * copy still waiting in the output (raw bytes may do anything). */
    if (sl->state != S_LIVE && !sl->nocb && !F.unsent_acked)
      continue;
    if (p->qos > 0 && sl->id != p->packet_id)
      continue;
    const char *st = topic_of(sl->topic);
    if (strlen(st) != tlen || memcmp(st, topic, tlen) != 0)
      continue;
    if (p->payload.len != sl->len)
      continue;
    bool same = true;
    for (size_t j = 0; j < sl->len && same; j++)
      same = p->payload.data[j] == pattern(i, j);
    if (same)
      return;
  }
  fprintf(stderr,
          "PUBLISH q%u id%u topic %.*s (len %zu) matches no pending publish\n",
          p->qos, p->packet_id, (int)tlen, topic, p->payload.len);
  CHECK(0);
}

static void on_sent(const uvmqtt_packet_t *pkt, size_t size) {
  uint32_t maxp = uvmqtt__session_server_max_packet(F.s);
  TRACE("  sent %s id %u size %zu\n", uvmqtt_packet_name(pkt->type),
        pkt->type == UVMQTT_PUBLISH ? pkt->u.publish.packet_id
                                    : pkt->u.ack.packet_id,
        size);
  if (F.expect_connect) {
    CHECK(pkt->type == UVMQTT_CONNECT);
    CHECK(pkt->u.connect.protocol_version == F.version);
    F.expect_connect = false;
    reset_conn_model();
    return;
  }
  CHECK(pkt->type != UVMQTT_CONNECT);
  switch (pkt->type) {
  case UVMQTT_PUBLISH:
    CHECK(maxp == 0 || size <= maxp);
    check_publish(&pkt->u.publish);
    if (pkt->u.publish.qos == 1)
      pend_add(UVMQTT_PUBACK, pkt->u.publish.packet_id, 0);
    else if (pkt->u.publish.qos == 2)
      pend_add(UVMQTT_PUBREC, pkt->u.publish.packet_id, 0);
    break;
  case UVMQTT_PUBREL:
    pend_add(UVMQTT_PUBCOMP, pkt->u.ack.packet_id, 0);
    break;
  case UVMQTT_PUBREC:
    if (F.nrel < MAX_REL)
      F.rel[F.nrel++] = pkt->u.ack.packet_id;
    break;
  case UVMQTT_SUBSCRIBE:
    CHECK(maxp == 0 || size <= maxp);
    pend_add(UVMQTT_SUBACK, pkt->u.subscribe.packet_id, pkt->u.subscribe.count);
    break;
  case UVMQTT_UNSUBSCRIBE:
    CHECK(maxp == 0 || size <= maxp);
    pend_add(UVMQTT_UNSUBACK, pkt->u.unsubscribe.packet_id,
             pkt->u.unsubscribe.count);
    break;
  case UVMQTT_AUTH:
    CHECK(F.version == UVMQTT_V5);
    break;
  default:
    break;
  }
}

/* Reads a batch as the transport would write it. */
static void touch(const uvmqtt_iov_t *iov, size_t n) {
  for (size_t i = 0; i < n; i++)
    read_all(iov[i].base, iov[i].len);
}

static void decode_batch(const uvmqtt_iov_t *iov, size_t n) {
  size_t total = 0, off = 0;
  for (size_t i = 0; i < n; i++) {
    CHECK(iov[i].len > 0 && iov[i].base != NULL);
    total += iov[i].len;
  }
  uint8_t *buf = malloc(total);
  CHECK(buf != NULL);
  for (size_t i = 0; i < n; i++) {
    memcpy(buf + off, iov[i].base, iov[i].len);
    off += iov[i].len;
  }
  uvmqtt_parser_t p;
  uvmqtt_parser_init(&p, F.version, UVMQTT_ROLE_SERVER, 0);
  off = 0;
  while (off < total) {
    size_t used = 0;
    uvmqtt_packet_t pkt;
    uint64_t start = p.offset;
    int rc = uvmqtt_parser_feed(&p, buf + off, total - off, &used, &pkt);
    if (rc != UVMQTT_PARSE_PACKET) {
      fprintf(stderr, "output does not decode at byte %zu: %d (%s)\n", off, rc,
              rc < 0 ? uvmqtt_err_name(rc) : "incomplete");
      CHECK(0);
    }
    off += used;
    on_sent(&pkt, (size_t)(p.offset - start));
  }
  free(buf);
}

/* ---- operations -------------------------------------------------------- */

static void lost(int status) {
  F.in_release++;
  uvmqtt__session_connection_lost(F.s, status);
  F.in_release--;
  F.conn_open = false;
  F.expect_connect = false;
  CHECK(!uvmqtt__session_has_output(F.s));
  CHECK(uvmqtt__session_state(F.s) == UVMQTT_SS_DISCONNECTED);
}

/* Feeds broker bytes in two chunks; an error closes the connection. */
static int feed(const uint8_t *b, size_t n, size_t split) {
  if (!F.conn_open)
    return UVMQTT_ENOTCONN;
  if (split > n)
    split = n;
  TRACE("  feed %zu bytes (%02x...)\n", n, n ? b[0] : 0);
  F.in_input++;
  int rc = uvmqtt__session_input(F.s, F.now, b, split);
  if (rc == 0 && n > split)
    rc = uvmqtt__session_input(F.s, F.now, b + split, n - split);
  F.in_input--;
  CHECK(rc <= 0);
  TRACE("  input: %d\n", rc);
  if (rc < 0)
    lost(rc);
  else if (uvmqtt__session_state(F.s) == UVMQTT_SS_DISCONNECTED)
    lost(UVMQTT_EREFUSED); /* a refused CONNACK also reports an error */
  return rc;
}

static int feed_pkt(const uvmqtt_packet_t *pkt, uint8_t split_sel) {
  uint8_t buf[2048];
  int n = uvmqtt_encode(pkt, F.version, buf, sizeof(buf));
  if (n <= 0)
    return n; /* a combination the codec refuses; nothing to feed */
  return feed(buf, (size_t)n, split_sel ? (size_t)split_sel % (size_t)n : 0);
}

static void op_feed(void) {
  size_t n = r8();
  size_t split = r8();
  const uint8_t *b = F.in + F.pos;
  if (n > F.len - F.pos)
    n = F.len - F.pos;
  F.pos += n;
  F.model_valid = false;
  F.unsent_acked = true;
  F.expect_topic = NULL;
  feed(b, n, split);
}

static void op_connack(void) {
  uint8_t f = r8(), pm = r8(), rmax = r8(), mh = r8(), ml = r8(), amax = r8(),
          qk = r8();
  uvmqtt_packet_t pkt;
  memset(&pkt, 0, sizeof(pkt));
  pkt.type = UVMQTT_CONNACK;
  pkt.u.connack.session_present = f & 1;
  if (f & 2)
    pkt.u.connack.reason_code = F.version == UVMQTT_V5 ? 0x87 : 5;
  if (F.version == UVMQTT_V5) {
    uvmqtt_props_t *p = &pkt.u.connack.props;
    if (pm & 1) {
      p->present |= UVMQTT_PROP_BIT(UVMQTT_PROP_RECEIVE_MAXIMUM);
      p->receive_maximum = (uint16_t)(1 + rmax % 16);
    }
    if (pm & 2) {
      p->present |= UVMQTT_PROP_BIT(UVMQTT_PROP_MAXIMUM_PACKET_SIZE);
      p->maximum_packet_size = 16u + (uint32_t)((mh << 8) | ml);
    }
    if (pm & 4) {
      p->present |= UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS_MAXIMUM);
      p->topic_alias_maximum = (uint16_t)(amax % 80);
    }
    if (pm & 8) {
      p->present |= UVMQTT_PROP_BIT(UVMQTT_PROP_MAXIMUM_QOS);
      p->maximum_qos = qk & 1;
    }
    if (pm & 16) {
      p->present |= UVMQTT_PROP_BIT(UVMQTT_PROP_SERVER_KEEP_ALIVE);
      p->server_keep_alive = (uint16_t)(qk >> 1);
    }
    if (pm & 64) {
      p->present |= UVMQTT_PROP_BIT(UVMQTT_PROP_RETAIN_AVAILABLE);
      p->retain_available = 0;
    }
    if (pm & 32) {
      p->present |= UVMQTT_PROP_BIT(UVMQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER);
      p->assigned_client_identifier = (uvmqtt_str_t){"assigned", 8};
    }
  }
  bool accepted = pkt.u.connack.reason_code == 0;
  int rc = feed_pkt(&pkt, (f & 4) ? (uint8_t)(f >> 3) : 0);
  if (rc == 0 && accepted && !(f & 1))
    memset(F.qos2_held, 0, sizeof(F.qos2_held)); /* session lost */
}

static uint8_t ack_reason(uint8_t type, uint8_t sel) {
  if (F.version != UVMQTT_V5 && type != UVMQTT_SUBACK)
    return 0;
  switch (type) {
  case UVMQTT_PUBACK:
  case UVMQTT_PUBREC: {
    static const uint8_t r[] = {0, 0, 0x10, 0x80, 0x87, 0x97};
    return r[sel % sizeof(r)];
  }
  case UVMQTT_PUBCOMP:
    return (sel & 7) == 7 ? 0x92 : 0;
  case UVMQTT_SUBACK: {
    static const uint8_t r[] = {0, 1, 2, 0x80, 0x87};
    return r[sel % (F.version == UVMQTT_V5 ? 5u : 4u)];
  }
  default: /* UNSUBACK */
    return (sel & 3) == 3 ? 0x11 : 0;
  }
}

static void op_ack(void) {
  uint8_t idx = r8(), sel = r8();
  uvmqtt_packet_t pkt;
  uint8_t codes[8];
  memset(&pkt, 0, sizeof(pkt));
  if (F.npend == 0) {
    /* An ack for nothing. */
    pkt.type = (uint8_t)(UVMQTT_PUBACK + sel % 4);
    pkt.u.ack.packet_id = (uint16_t)(1 + idx);
    F.unsent_acked = true; /* it may ack a message not sent yet */
    if (pkt.type == UVMQTT_PUBREL && pkt.u.ack.packet_id < SMALL_IDS)
      F.qos2_held[pkt.u.ack.packet_id] = false;
    feed_pkt(&pkt, 0);
    return;
  }
  size_t at = idx % F.npend;
  pend_t e = F.pend[at];
  F.pend[at] = F.pend[F.npend - 1];
  F.npend--;
  pkt.type = e.type;
  if (e.type == UVMQTT_SUBACK || e.type == UVMQTT_UNSUBACK) {
    pkt.u.suback.packet_id = e.id;
    size_t n = e.count < sizeof(codes) ? e.count : sizeof(codes);
    for (size_t i = 0; i < n; i++)
      codes[i] = ack_reason(e.type, (uint8_t)(sel + i));
    if (e.type == UVMQTT_UNSUBACK && F.version != UVMQTT_V5)
      n = 0;
    pkt.u.suback.codes = codes;
    pkt.u.suback.count = n;
  } else {
    pkt.u.ack.packet_id = e.id;
    pkt.u.ack.reason_code = ack_reason(e.type, sel);
  }
  feed_pkt(&pkt, (uint8_t)(sel >> 4));
}

static void op_bpublish(void) {
  uint8_t f = r8(), idsel = r8(), tsel = r8(), len = r8();
  static uint8_t payload[256];
  uvmqtt_packet_t pkt;
  memset(&pkt, 0, sizeof(pkt));
  pkt.type = UVMQTT_PUBLISH;
  uvmqtt_publish_t *p = &pkt.u.publish;
  p->qos = (uint8_t)((f & 3) % 3);
  p->dup = p->qos > 0 && (f & 4);
  p->retain = (f & 8) != 0;
  uint16_t id = (uint16_t)(1 + idsel % (SMALL_IDS - 1));
  if (idsel & 0x80)
    id = (uint16_t)(idsel * 257);
  if (p->qos)
    p->packet_id = id;
  const char *topic = topic_of(tsel);
  if (strlen(topic) > 60)
    topic = "t";
  p->topic = (uvmqtt_str_t){topic, strlen(topic)};
  for (size_t i = 0; i < len; i++)
    payload[i] = (uint8_t)(i ^ len);
  p->payload = (uvmqtt_bin_t){payload, len};
  unsigned mode = (f >> 4) & 3;
  uint16_t a = (uint16_t)(1 + (tsel >> 3) % 15);
  const char *expect = topic;
  if (F.version == UVMQTT_V5 && mode) {
    p->props.present |= UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS);
    p->props.topic_alias = a;
    if (mode == 1) {
      strcpy(F.in_alias[a], topic);
    } else {
      /* Alias alone: the client must resolve what the broker defined. */
      p->topic.len = 0;
      expect = F.in_alias[a][0] && F.model_valid ? F.in_alias[a] : NULL;
    }
  }
  bool held = F.model_valid && p->qos == 2 && id < SMALL_IDS && F.qos2_held[id];
  int before = F.nmsg;
  F.expect_topic = expect;
  int rc = feed_pkt(&pkt, (f & 64) ? (uint8_t)(len | 1) : 0);
  F.expect_topic = NULL;
  if (held)
    CHECK(F.nmsg == before); /* QoS 2 delivered once until PUBREL */
  if (rc == 0 && p->qos == 2 && id < SMALL_IDS && F.nmsg > before)
    F.qos2_held[id] = true;
}

static void op_bpubrel(void) {
  uint8_t idx = r8();
  uvmqtt_packet_t pkt;
  memset(&pkt, 0, sizeof(pkt));
  pkt.type = UVMQTT_PUBREL;
  if (F.nrel) {
    size_t at = idx % F.nrel;
    pkt.u.ack.packet_id = F.rel[at];
    F.rel[at] = F.rel[F.nrel - 1];
    F.nrel--;
  } else {
    pkt.u.ack.packet_id = (uint16_t)(1 + idx % (SMALL_IDS - 1));
  }
  uint16_t id = pkt.u.ack.packet_id;
  feed_pkt(&pkt, 0);
  /* Forgotten even when the feed fails: the session may have released the
   * id before failing to answer. */
  if (id < SMALL_IDS)
    F.qos2_held[id] = false;
}

static void op_bctrl(void) {
  uint8_t which = r8(), reason = r8();
  uvmqtt_packet_t pkt;
  memset(&pkt, 0, sizeof(pkt));
  switch (which % 3) {
  case 0:
    pkt.type = UVMQTT_PINGRESP;
    break;
  case 1:
    pkt.type = UVMQTT_DISCONNECT;
    pkt.u.disconnect.reason_code = F.version == UVMQTT_V5 ? reason & 0x8f : 0;
    if (pkt.u.disconnect.reason_code && pkt.u.disconnect.reason_code < 0x80)
      pkt.u.disconnect.reason_code = 4;
    break;
  default:
    if (F.version != UVMQTT_V5)
      return;
    pkt.type = UVMQTT_AUTH;
    pkt.u.auth.reason_code = (reason & 1) ? 0x18 : 0;
    break;
  }
  feed_pkt(&pkt, 0);
}

/* Ids can be checked for reuse only when no batch exists (check_id_free). */
static bool no_batches(void) {
  return F.nheld == 0 && !uvmqtt__session_has_output(F.s);
}

static void op_publish(void) {
  uint8_t f = r8(), tsel = r8(), ssel = r8();
  slot_t *sl = new_slot(K_PUB);
  if (!sl)
    return;
  size_t k = (size_t)(sl - F.slots);
  uvmqtt_session_pub_t p;
  memset(&p, 0, sizeof(p));
  p.topic = topic_of(tsel);
  p.topic_len = strlen(p.topic);
  p.qos = f & 3;
  p.retain = (f & 8) != 0;
  p.zero_copy = (f & 4) != 0;
  p.payload_len = size_of(ssel);
  uint8_t *pl = malloc(p.payload_len ? p.payload_len : 1);
  CHECK(pl != NULL);
  for (size_t j = 0; j < p.payload_len; j++)
    pl[j] = pattern(k, j);
  p.payload = pl;
  uvmqtt_user_prop_t up = {{"k", 1}, {"v", 1}};
  uvmqtt_props_t props;
  memset(&props, 0, sizeof(props));
  if (f & 16) {
    props.present |= UVMQTT_PROP_BIT(UVMQTT_PROP_CONTENT_TYPE);
    props.content_type = (uvmqtt_str_t){"text/plain", 10};
    props.user_props = &up;
    props.user_prop_count = 1;
    p.props = &props;
  }
  if (f & 32)
    p.expiry_s = 1 + (tsel >> 4);
  bool nocb = (f & 64) != 0;
  sl->qos = p.qos;
  sl->topic = tsel;
  sl->len = p.payload_len;
  bool check_ids = no_batches();
  F.in_call++;
  int rc = uvmqtt__session_publish(F.s, F.now, &p, nocb ? NULL : fn_cb,
                                   nocb ? NULL : sl);
  F.in_call--;
  TRACE("  publish slot %zu q%u len %zu zc %d: %d\n", k, p.qos, p.payload_len,
        p.zero_copy, rc);
  CHECK(sl->state == S_IN_CALL); /* never completes from inside its call */
  CHECK(rc <= 65535);
  if (p.qos == 3)
    CHECK(rc == UVMQTT_EQOS);
  sl->accepted = rc >= 0;
  sl->nocb = nocb;
  if (rc > 0)
    sl->id = (uint16_t)rc;
  if (rc < 0 || nocb) {
    sl->state = rc < 0 ? S_FAILED : S_DONE;
    if (rc >= 0 && p.zero_copy) {
      /* Nothing tells when it is done: keep the memory to the end. */
      sl->zc = pl;
      return;
    }
    free(pl);
    return;
  }
  if (p.qos > 0) {
    CHECK(rc >= 1);
    sl->id = (uint16_t)rc;
    if (check_ids)
      check_id_free(sl, sl->id);
  } else {
    CHECK(rc == 0);
  }
  sl->state = S_LIVE;
  if (p.zero_copy) {
    sl->zc = pl;
  } else {
    /* Copied: scribble over our copy to catch a missed copy. */
    memset(pl, 0xee, p.payload_len);
    free(pl);
  }
}

static const char *filter_of(uint8_t sel) {
  static const char *f[] = {"a/#", "+/b", "sensors/+/temperature",
                            "#",   "a",   "$share/g/x"};
  return f[sel % (F.version == UVMQTT_V5 ? 6u : 5u)];
}

static void op_subscribe(bool unsub) {
  uint8_t f = r8(), fsel = r8();
  slot_t *sl = new_slot(unsub ? K_UNSUB : K_SUB);
  if (!sl)
    return;
  size_t n = 1 + (f & 3) % 3;
  uvmqtt_subscription_t subs[3];
  uvmqtt_str_t filters[3];
  for (size_t i = 0; i < n; i++) {
    const char *flt = filter_of((uint8_t)(fsel + i));
    filters[i] = (uvmqtt_str_t){flt, strlen(flt)};
    subs[i].filter = filters[i];
    subs[i].options = (uint8_t)(((f >> 2) & 3) % 3);
    if ((f & 32) && F.version == UVMQTT_V5) {
      subs[i].options |=
          UVMQTT_SUBOPT_RETAIN_AS_PUBLISHED | (uint8_t)((fsel % 3) << 4);
      if (strncmp(flt, "$share/", 7) != 0)
        subs[i].options |= UVMQTT_SUBOPT_NO_LOCAL;
    }
  }
  uvmqtt_props_t props;
  memset(&props, 0, sizeof(props));
  if (!unsub && (f & 64)) {
    props.present |= UVMQTT_PROP_BIT(UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER);
    props.subscription_id = 1 + fsel;
  }
  bool nocb = (f & 16) != 0;
  sl->len = n;
  bool check_ids = no_batches();
  int st = (int)uvmqtt__session_state(F.s);
  F.in_call++;
  int rc =
      unsub ? uvmqtt__session_unsubscribe(F.s, filters, n, &props,
                                          nocb ? NULL : fn_cb, nocb ? NULL : sl)
            : uvmqtt__session_subscribe(F.s, subs, n, &props,
                                        nocb ? NULL : fn_cb, nocb ? NULL : sl);
  F.in_call--;
  CHECK(sl->state == S_IN_CALL);
  CHECK(rc <= 65535);
  if (st != UVMQTT_SS_CONNECTED)
    CHECK(rc == UVMQTT_ENOTCONN);
  if (rc < 0 || nocb) {
    sl->state = rc < 0 ? S_FAILED : S_DONE;
    return;
  }
  CHECK(rc >= 1);
  sl->id = (uint16_t)rc;
  if (check_ids)
    check_id_free(sl, sl->id);
  sl->state = S_LIVE;
}

static void op_tick(void) {
  F.now += (uint64_t)r8() * 250;
  uint64_t d = uvmqtt__session_deadline(F.s);
  if (uvmqtt__session_state(F.s) == UVMQTT_SS_DISCONNECTED)
    CHECK(d == UINT64_MAX);
  int rc = uvmqtt__session_tick(F.s, F.now);
  CHECK(rc <= 0);
  if (F.now < d)
    CHECK(rc == 0);
  if (rc < 0)
    lost(rc);
}

static void done_oldest(int status) {
  held_t h = F.held[0];
  memmove(F.held, F.held + 1, (F.nheld - 1) * sizeof(held_t));
  F.nheld--;
  touch(h.iov, h.n); /* the transport writes it now */
  F.in_done++;
  uvmqtt__session_output_done(F.s, h.b, status);
  F.in_done--;
}

static int status_of(uint8_t sel) {
  static const int st[] = {UVMQTT_ECLOSED, UVMQTT_EPEERCLOSED, UVMQTT_ETIMEDOUT,
                           UVMQTT_ENOMEM};
  return st[sel % 4];
}

static void op_take(void) {
  uint8_t mode = r8();
  const uvmqtt_iov_t *iov = NULL;
  uvmqtt_out_batch_t *b = NULL;
  bool had = uvmqtt__session_has_output(F.s);
  F.in_done++; /* a batch of completions only finishes here */
  size_t n = uvmqtt__session_take_output(F.s, F.now, &iov, &b);
  F.in_done--;
  CHECK(!uvmqtt__session_has_output(F.s));
  if (n == 0)
    return;
  CHECK(had && b != NULL && iov != NULL);
  CHECK(F.conn_open); /* nothing to send without a connection */
  decode_batch(iov, n);
  if (F.nheld == MAX_HELD)
    done_oldest(0);
  F.held[F.nheld++] = (held_t){b, iov, n};
  if ((mode & 1) == 0)
    done_oldest(mode & 2 ? status_of(mode >> 2) : 0);
}

static void op_done(void) {
  uint8_t sel = r8();
  if (F.nheld)
    done_oldest(sel & 1 ? status_of(sel >> 1) : 0);
}

static void return_all(int status) {
  while (F.nheld)
    done_oldest(status);
}

static void do_connect(uint8_t f) {
  /* As the client: the old connection is gone and its writes cancelled
   * before a new one starts. */
  if (F.conn_open)
    lost(UVMQTT_ECLOSED);
  return_all(UVMQTT_ECLOSED);
  /* The broker owes nothing on a new connection until it reads it. */
  reset_conn_model();
  memset(F.in_alias, 0, sizeof(F.in_alias)); /* per connection */
  uvmqtt_connect_t c;
  memset(&c, 0, sizeof(c));
  c.keep_alive = (uint16_t)(f & 15);
  c.clean_start = (f & 16) != 0;
  c.client_id = (uvmqtt_str_t){"fuzz", 4};
  if (f & 32) {
    c.will = true;
    c.will_qos = 1;
    c.will_topic = (uvmqtt_str_t){"will", 4};
    c.will_payload = (uvmqtt_bin_t){(const uint8_t *)"bye", 3};
  }
  if (f & 64) {
    c.has_username = true;
    c.username = (uvmqtt_str_t){"user", 4};
    c.has_password = true;
    c.password = (uvmqtt_bin_t){(const uint8_t *)"pw", 2};
  }
  if ((f & 128) && F.version == UVMQTT_V5) {
    c.props.present |= UVMQTT_PROP_BIT(UVMQTT_PROP_SESSION_EXPIRY_INTERVAL);
    c.props.session_expiry_interval = 60;
  }
  F.in_release++; /* connect() cancels unsent output */
  int rc = uvmqtt__session_connect(F.s, F.now, &c);
  F.in_release--;
  CHECK(rc <= 0);
  if (rc < 0) {
    CHECK(rc == UVMQTT_ENOMEM);
    lost(rc);
    return;
  }
  CHECK(uvmqtt__session_state(F.s) == UVMQTT_SS_CONNECTING);
  CHECK(uvmqtt__session_has_output(F.s));
  F.conn_open = true;
  F.expect_connect = true;
}

static void op_cdisconnect(void) {
  uint8_t f = r8(), reason = r8();
  if (!F.conn_open)
    return;
  uvmqtt_props_t props;
  memset(&props, 0, sizeof(props));
  if (F.version == UVMQTT_V5 && (reason & 1)) {
    props.present |= UVMQTT_PROP_BIT(UVMQTT_PROP_REASON_STRING);
    props.reason_string = (uvmqtt_str_t){"bye", 3};
  }
  int rc;
  if (f & 1) {
    rc = uvmqtt__session_auth(F.s, 0x19, &props);
    if (F.version != UVMQTT_V5)
      CHECK(rc == UVMQTT_ENOTSUP);
  } else {
    uint8_t r = F.version == UVMQTT_V5 && (reason & 2) ? 0x04 : 0;
    rc = uvmqtt__session_disconnect(F.s, r,
                                    F.version == UVMQTT_V5 ? &props : NULL);
  }
  CHECK(rc <= 0);
}

static void op_failalloc(void) {
  F.fail_in = r8();
}

static void check_state(void) {
  if (F.cfg.max_inflight)
    CHECK(uvmqtt__session_inflight(F.s) <= F.cfg.max_inflight);
  if (!F.conn_open)
    CHECK(!uvmqtt__session_has_output(F.s));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bool installed;
  if (tracing < 0)
    tracing = getenv("FUZZ_SESSION_TRACE") != NULL;
  if (!installed) {
    CHECK(uvmqtt_replace_allocator(f_malloc, f_realloc, f_calloc, free) == 0);
    installed = true;
  }
  memset(&F, 0, sizeof(F));
  F.in = data;
  F.len = size;
  F.now = 1000000;
  F.model_valid = true;

  uint8_t h[FS_HEADER_LEN];
  for (size_t i = 0; i < FS_HEADER_LEN; i++)
    h[i] = r8();
  uvmqtt_session_config_t *cfg = &F.cfg;
  cfg->version = (uint8_t)(3 + h[0] % 3);
  cfg->max_inflight = h[1] & 15;
  cfg->max_queued = h[1] >> 4;
  cfg->max_queued_bytes = (size_t)(h[2] & 63) * 64;
  cfg->queue_policy = (h[2] & 64) ? 1 : 0;
  cfg->topic_alias_auto = (h[2] & 128) != 0;
  cfg->topic_alias_max_in = h[3] & 15;
  cfg->receive_maximum = h[3] >> 4;
  cfg->max_packet_size = h[4] ? 32u + 8u * h[4] : 0;
  cfg->ping_timeout_pct = h[5];
  F.version = cfg->version;

  int rc = uvmqtt__session_new(cfg, &events, &F, &F.s);
  CHECK(rc == 0 && F.s != NULL);
  do_connect(h[6]);

  while (F.pos < F.len) {
    uint8_t op = (uint8_t)(r8() % FS_OP_COUNT);
    TRACE("op %u at %zu\n", op, F.pos - 1);
    switch (op) {
    case FS_FEED:
      op_feed();
      break;
    case FS_CONNACK:
      op_connack();
      break;
    case FS_ACK:
      op_ack();
      break;
    case FS_BPUBLISH:
      op_bpublish();
      break;
    case FS_BPUBREL:
      op_bpubrel();
      break;
    case FS_BCTRL:
      op_bctrl();
      break;
    case FS_PUBLISH:
      op_publish();
      break;
    case FS_SUBSCRIBE:
      op_subscribe(false);
      break;
    case FS_UNSUBSCRIBE:
      op_subscribe(true);
      break;
    case FS_TICK:
      op_tick();
      break;
    case FS_TAKE:
      op_take();
      break;
    case FS_DONE:
      op_done();
      break;
    case FS_LOST:
      if (F.conn_open)
        lost(status_of(r8()));
      else
        (void)r8();
      break;
    case FS_CONNECT:
      do_connect(r8());
      break;
    case FS_CDISCONNECT:
      op_cdisconnect();
      break;
    default:
      op_failalloc();
      break;
    }
    check_state();
  }

  /* Teardown as the client does it: writes cancelled, then free. */
  F.fail_in = 0;
  return_all(UVMQTT_ECLOSED);
  F.in_release++;
  uvmqtt__session_free(F.s, UVMQTT_ECLOSED);
  F.in_release--;
  F.freed = true;
  F.s = NULL;
  for (size_t i = 0; i < F.nslots; i++) {
    slot_t *sl = &F.slots[i];
    if (sl->state != S_DONE && sl->state != S_FAILED) {
      fprintf(stderr, "slot %zu (kind %u, qos %u, id %u) never completed\n", i,
              sl->kind, sl->qos, sl->id);
      CHECK(0);
    }
    free(sl->zc);
    sl->zc = NULL;
  }
  return 0;
}
