/* Writes the session fuzz seed corpus: scripts (session_ops.h) in which a
 * broker answers the session correctly, so that the fuzzer starts from deep
 * states: connected, messages in flight both ways, QoS 2 handshakes,
 * subscriptions, reconnection with and without a session, v5 limits and
 * topic aliases, keepalive, full queues, zero-copy payloads, held batches.
 * Broker bytes are both raw (FS_FEED, built here with the codec; the
 * session numbers its packets 1, 2, 3, ...) and structured (FS_ACK, ...).
 * Usage: gen_session_corpus OUTDIR. The output is committed under
 * test/fuzz/corpus_session/; re-run it when the script format changes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_ops.h"
#include "uvmqtt/codec.h"

static const char *outdir;
static uint8_t buf[65536];
static size_t len;
static uint8_t ver;

static void byte(uint8_t b) {
  if (len == sizeof(buf))
    exit(1);
  buf[len++] = b;
}

static void op(uint8_t code, const uint8_t *args, size_t n) {
  if (n != fs_op_args[code]) {
    fprintf(stderr, "op %u takes %u argument bytes, not %zu\n", code,
            fs_op_args[code], n);
    exit(1);
  }
  byte(code);
  for (size_t i = 0; i < n; i++)
    byte(args[i]);
}

#define OP(code, ...)                                                          \
  do {                                                                         \
    const uint8_t a_[] = {__VA_ARGS__};                                        \
    op(code, a_, sizeof(a_));                                                  \
  } while (0)

/* Header: version, then the option bytes of session_ops.h. */
static void start(uint8_t v, uint8_t o1, uint8_t o2, uint8_t o3, uint8_t o4,
                  uint8_t o5, uint8_t conn) {
  len = 0;
  ver = v;
  byte((uint8_t)(v - 3));
  byte(o1);
  byte(o2);
  byte(o3);
  byte(o4);
  byte(o5);
  byte(conn);
}

static void put(const char *name) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/seed-v%u-%s", outdir, ver, name);
  FILE *f = fopen(path, "wb");
  if (f == NULL || fwrite(buf, 1, len, f) != len) {
    perror(path);
    exit(1);
  }
  fclose(f);
}

/* Raw broker bytes for `pkt`, in FS_FEED chunks split in two. */
static void raw(const uvmqtt_packet_t *pkt) {
  uint8_t b[4096];
  int n = uvmqtt_encode(pkt, ver, b, sizeof(b));
  if (n <= 0) {
    fprintf(stderr, "cannot encode %s for v%u: %d\n",
            uvmqtt_packet_name(pkt->type), ver, n);
    exit(1);
  }
  for (int off = 0; off < n;) {
    int c = n - off > 255 ? 255 : n - off;
    OP(FS_FEED, (uint8_t)c, (uint8_t)(c / 2));
    for (int i = 0; i < c; i++)
      byte(b[off + i]);
    off += c;
  }
}

static void raw_connack(bool sp, const uvmqtt_props_t *props) {
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_CONNACK;
  p.u.connack.session_present = sp;
  if (props && ver == UVMQTT_V5)
    p.u.connack.props = *props;
  raw(&p);
}

static void raw_ack(uint8_t type, uint16_t id) {
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = type;
  p.u.ack.packet_id = id;
  raw(&p);
}

static void raw_suback(uint8_t type, uint16_t id, size_t n) {
  static const uint8_t codes[] = {0, 1, 2, 0x80};
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = type;
  p.u.suback.packet_id = id;
  p.u.suback.codes = codes;
  p.u.suback.count = type == UVMQTT_UNSUBACK ? (ver == UVMQTT_V5 ? n : 0) : n;
  if (type == UVMQTT_UNSUBACK) {
    static const uint8_t zero[4] = {0};
    p.u.suback.codes = zero;
  }
  raw(&p);
}

static void raw_publish(const char *topic, uint8_t qos, uint16_t id,
                        uint16_t alias, size_t plen) {
  static uint8_t payload[600];
  for (size_t i = 0; i < plen && i < sizeof(payload); i++)
    payload[i] = (uint8_t)('a' + i % 26);
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_PUBLISH;
  p.u.publish.qos = qos;
  p.u.publish.packet_id = id;
  p.u.publish.topic = (uvmqtt_str_t){topic, strlen(topic)};
  p.u.publish.payload = (uvmqtt_bin_t){payload, plen};
  if (alias) {
    p.u.publish.props.present |= UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS);
    p.u.publish.props.topic_alias = alias;
  }
  raw(&p);
}

static void raw_ctrl(uint8_t type, uint8_t reason) {
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = type;
  p.u.disconnect.reason_code = reason;
  raw(&p);
}

/* Client operations. */
#define TAKE() OP(FS_TAKE, 0)
#define HOLD() OP(FS_TAKE, 1)
#define DONE(st) OP(FS_DONE, st)
#define PUB(flags, topic, size) OP(FS_PUBLISH, flags, topic, size)
#define SUB(flags, filter) OP(FS_SUBSCRIBE, flags, filter)
#define UNSUB(flags, filter) OP(FS_UNSUBSCRIBE, flags, filter)
#define TICK(q) OP(FS_TICK, q)
#define LOST(st) OP(FS_LOST, st)
#define CONNECT(flags) OP(FS_CONNECT, flags)
/* Structured broker operations. */
#define CONNACK(f, pm, rmax, mh, ml, amax, qk)                                 \
  OP(FS_CONNACK, f, pm, rmax, mh, ml, amax, qk)
#define ACK(idx, sel) OP(FS_ACK, idx, sel)
#define BPUB(f, id, topic, plen) OP(FS_BPUBLISH, f, id, topic, plen)
#define BPUBREL(idx) OP(FS_BPUBREL, idx)

/* Raw bytes: QoS 0/1/2 out, a subscription, QoS 0/1/2 in. */
static void raw_basic(uint8_t v) {
  start(v, 0, 0, 0x35, 0, 0, 0x10);
  TAKE();
  raw_connack(false, NULL);
  PUB(0, 0, 1); /* QoS 0 */
  PUB(1, 1, 2); /* QoS 1: id 1 */
  PUB(2, 2, 3); /* QoS 2: id 2 */
  TAKE();
  raw_ack(UVMQTT_PUBACK, 1);
  raw_ack(UVMQTT_PUBREC, 2);
  TAKE(); /* PUBREL 2 */
  raw_ack(UVMQTT_PUBCOMP, 2);
  SUB(1 | 4, 0); /* two filters, QoS 1: id 3 */
  TAKE();
  raw_suback(UVMQTT_SUBACK, 3, 2);
  raw_publish("a/b", 0, 0, 0, 5);
  raw_publish("a/b", 1, 7, 0, 10);
  raw_publish("a/b", 2, 8, 0, 20);
  raw_publish("a/b", 2, 8, 0, 20); /* a duplicate: delivered once */
  TAKE();
  raw_ack(UVMQTT_PUBREL, 8);
  TAKE();
  UNSUB(0, 1); /* id 4 */
  TAKE();
  raw_suback(UVMQTT_UNSUBACK, 4, 1);
  TICK(4);
  raw_ctrl(UVMQTT_PINGRESP, 0);
  put("raw-basic");
}

/* The same with structured broker operations. */
static void structured_basic(uint8_t v) {
  start(v, 0, 0, 0x35, 0, 0, 0x12);
  TAKE();
  CONNACK(0, 0, 0, 0, 0, 0, 0);
  PUB(1, 1, 2);
  PUB(2, 2, 3);
  PUB(0, 3, 4);
  SUB(2 | 8, 2);
  TAKE();
  ACK(0, 0);
  ACK(0, 0);
  ACK(0, 0);
  TAKE();
  ACK(0, 0);
  BPUB(1, 1, 0, 8);
  BPUB(2, 2, 1, 16);
  TAKE();
  BPUBREL(0);
  TAKE();
  TICK(12);
  TICK(12);
  OP(FS_BCTRL, 0, 0);
  TAKE();
  put("structured-basic");
}

/* In flight at a connection loss, then resumed (session present) or not. */
static void reconnect(uint8_t v, bool present) {
  start(v, 4, 0, 0, 0, 0, 0x00);
  TAKE();
  CONNACK(0, 0, 0, 0, 0, 0, 0);
  for (int i = 0; i < 3; i++) {
    PUB(1, 0, 3);
    PUB(2, 1, 4);
  }
  TAKE();
  ACK(0, 0); /* one PUBACK */
  ACK(0, 0);
  TAKE(); /* maybe a PUBREL */
  LOST(1);
  PUB(1, 2, 2); /* queued while down */
  CONNECT(0x00);
  TAKE();
  CONNACK(present ? 1 : 0, 0, 0, 0, 0, 0, 0);
  TAKE(); /* resent with DUP, or sent again as new */
  for (int i = 0; i < 8; i++)
    ACK(0, 0);
  TAKE();
  for (int i = 0; i < 4; i++)
    ACK(0, 0);
  TAKE();
  put(present ? "reconnect-present" : "reconnect-lost");
}

/* v5: the server's Receive Maximum, Maximum Packet Size and Topic Alias
 * Maximum with outgoing aliases; incoming aliases. */
static void v5_limits(void) {
  start(5, 0, 0x80, 0x05, 0, 0, 0x00);
  TAKE();
  /* receive max 1 + 1, max packet 16 + 0x0400, alias max 10 */
  CONNACK(0, 1 | 2 | 4, 1, 0x04, 0x00, 10, 0);
  for (int i = 0; i < 5; i++)
    PUB(1, 2, 3);
  PUB(0, 2, 7); /* too big */
  PUB(1 | 16, 3, 2);
  TAKE();
  for (int i = 0; i < 6; i++) {
    ACK(0, 0);
    TAKE();
  }
  BPUB(0x10 | 1, 1, 0x08, 4); /* alias 2 defined with topic "a/b" */
  BPUB(0x20 | 1, 2, 0x08, 4); /* alias 2 used alone */
  BPUB(0x20 | 2, 3, 0x30, 4); /* alias 7 never defined */
  put("limits");

  start(5, 0, 0x80, 0x05, 0, 0, 0x00);
  TAKE();
  uvmqtt_props_t props;
  memset(&props, 0, sizeof(props));
  props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS_MAXIMUM) |
                  UVMQTT_PROP_BIT(UVMQTT_PROP_RECEIVE_MAXIMUM);
  props.topic_alias_maximum = 4;
  props.receive_maximum = 3;
  raw_connack(false, &props);
  for (int i = 0; i < 4; i++)
    PUB(1, (uint8_t)i, 2);
  PUB(1, 0, 2);
  TAKE();
  raw_ack(UVMQTT_PUBACK, 1);
  raw_ack(UVMQTT_PUBACK, 2);
  TAKE();
  raw_publish("x/y/z", 1, 3, 3, 9);
  raw_publish("", 1, 4, 3, 9);
  raw_publish("", 2, 5, 3, 9);
  TAKE();
  raw_ack(UVMQTT_PUBREL, 5);
  TAKE();
  OP(FS_BCTRL, 2, 1); /* AUTH */
  raw_ctrl(UVMQTT_DISCONNECT, 0x8b);
  CONNECT(0x80);
  TAKE();
  raw_connack(true, &props);
  TAKE();
  put("raw-aliases");
}

/* Zero-copy and large payloads with batches held by the transport. */
static void zero_copy(uint8_t v) {
  start(v, 0, 0, 0, 0, 0, 0x00);
  TAKE();
  CONNACK(0, 0, 0, 0, 0, 0, 0);
  PUB(4, 0, 6);     /* QoS 0 zero-copy 4100 */
  PUB(4 | 1, 1, 7); /* QoS 1 zero-copy 9000 */
  PUB(4 | 2, 2, 5); /* QoS 2 zero-copy 2049 */
  PUB(1, 3, 7);     /* QoS 1 copied 9000 */
  HOLD();
  ACK(0, 0);
  ACK(1, 0);
  PUB(4, 1, 4);
  HOLD();
  DONE(0);
  TAKE();
  ACK(0, 0);
  LOST(0);
  DONE(1);
  CONNECT(0x00); /* no clean start: the session resumes */
  HOLD();
  CONNACK(1, 0, 0, 0, 0, 0, 0);
  HOLD();
  DONE(0);
  ACK(0, 0);
  ACK(0, 0);
  DONE(3);
  put("zero-copy");
}

/* Keepalive: pings answered, then silence. */
static void keepalive(uint8_t v) {
  start(v, 0, 0, 0, 0, 50, 0x02);
  TAKE();
  CONNACK(0, 0, 0, 0, 0, 0, 0);
  TICK(8);
  TAKE();
  raw_ctrl(UVMQTT_PINGRESP, 0);
  TICK(8);
  TAKE();
  TICK(8);
  TICK(8);
  CONNECT(0x01);
  TAKE();
  TICK(2);
  TICK(4);
  put("keepalive");
}

/* Bounded queue while disconnected, both policies, with expiry. */
static void queue(uint8_t v, bool drop) {
  start(v, 0x31, (uint8_t)(4 | (drop ? 64 : 0)), 0, 0, 0, 0x00);
  LOST(0);
  for (int i = 0; i < 5; i++)
    PUB((uint8_t)(i % 3), (uint8_t)i, 3);
  PUB(32 | 1, 0x10, 2); /* expires after 2 s */
  TICK(12);
  CONNECT(0x00);
  TAKE();
  CONNACK(0, 8, 0, 0, 0, 0, 0); /* v5: maximum QoS 0 */
  TAKE();
  ACK(0, 0);
  TAKE();
  ACK(0, 0);
  TAKE();
  put(drop ? "queue-drop-oldest" : "queue-refuse");
}

/* Refused connection, protocol errors, allocation failures. */
static void errors(uint8_t v) {
  start(v, 0, 0, 0, 0, 0, 0x60);
  TAKE();
  CONNACK(2, 0, 0, 0, 0, 0, 0); /* refused */
  CONNECT(0x20);
  TAKE();
  CONNACK(0, 0, 0, 0, 0, 0, 0);
  PUB(1, 0, 1);
  TAKE();
  raw_ack(UVMQTT_PUBACK, 99); /* unknown id */
  CONNECT(0x00);
  TAKE();
  CONNACK(1, 0, 0, 0, 0, 0, 0);
  OP(FS_FAILALLOC, 3);
  PUB(2, 1, 6);
  SUB(2, 1);
  TAKE();
  OP(FS_FAILALLOC, 1);
  ACK(0, 0);
  OP(FS_CDISCONNECT, 0, 3);
  TAKE();
  put("errors");
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: gen_session_corpus OUTDIR\n");
    return 2;
  }
  outdir = argv[1];
  for (uint8_t v = 3; v <= 5; v++) {
    raw_basic(v);
    structured_basic(v);
    reconnect(v, true);
    reconnect(v, false);
    zero_copy(v);
    keepalive(v);
    queue(v, false);
    queue(v, true);
    errors(v);
  }
  v5_limits();
  return 0;
}
