/* Test harness for the sans-I/O session: records every event, decodes what
 * the session sends with a server-role parser, and builds scripted broker
 * bytes with the codec. One harness (H) at a time. */
#ifndef UVMQTT_TEST_SESSION_HARNESS_H
#define UVMQTT_TEST_SESSION_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "session/session.h"
#include "uvmqtt/codec.h"

#define QP_REFUSE_NEW 0
#define QP_DROP_OLDEST 1

/* A packet the session sent, decoded and copied. */
typedef struct {
  uint8_t type;
  uint8_t flags;
  /* PUBLISH */
  bool dup, retain;
  uint8_t qos;
  char topic[128];
  uint8_t *payload; /* malloc'd copy */
  size_t payload_len;
  bool has_expiry;
  uint32_t expiry;
  bool alias_only; /* sent with a topic alias and no topic */
  uint16_t alias;  /* the Topic Alias sent, 0 when none */
  /* PUBLISH, acks, SUBSCRIBE, UNSUBSCRIBE */
  uint16_t id;
  uint8_t reason; /* acks, DISCONNECT */
  size_t count;   /* SUBSCRIBE / UNSUBSCRIBE entries */
  /* CONNECT */
  uint8_t version;
  uint16_t keep_alive;
  bool clean;
  char client_id[64];
  bool will, will_retain;
  uint8_t will_qos;
  char will_topic[64];
  bool has_username, has_password;
  char username[64];
  bool has_session_expiry;
  uint32_t session_expiry;
  size_t size; /* encoded size */
} sent_t;

typedef struct {
  uvmqtt_session_fn cb;
  long arg;
  int status;
  uint16_t id;
  uint8_t reason;
} pubdone_t;

typedef struct {
  int type;
  long arg;
  int status;
  uint16_t id;
  uint8_t codes[16];
  size_t count;
} subdone_t;

typedef struct {
  char topic[128];
  uint8_t *payload;
  size_t len;
  uint8_t qos;
  bool dup, retain;
  uint16_t id;
  uint64_t handle; /* uvmqtt__session_msg_handle() during delivery */
} rmsg_t;

typedef struct {
  uvmqtt_session_t *s;
  uint8_t version;

  sent_t *sent;
  size_t nsent, capsent;
  pubdone_t *pub;
  size_t npub, cappub;
  subdone_t *sub;
  size_t nsub, capsub;
  rmsg_t *msg;
  size_t nmsg, capmsg;

  int nconnack;
  uvmqtt_connack_t connack; /* last one; props not kept */
  int ndisc;
  uint8_t disc_reason;
  int nauth;
  int noutput;
  int nlog;
  char lastlog[256];

  /* Called at the end of each on_message (may be NULL). */
  void (*msg_hook)(const uvmqtt_publish_t *pub);
  /* on_hold events: how many, and the last state reported. */
  int nhold;
  bool holding;

  /* The server side of outgoing topic aliases (v5), checked on decode. */
  char alias[65][128];

  /* Persistence: called for on_persist (sessions with cfg.persist); set
   * after h_init(). */
  int (*persist_hook)(int op, uvmqtt_smsg_t *m, uint16_t id);

  bool tracing;
  char *trace;
  size_t tlen, tcap;
} harness_t;

extern harness_t H;

/* The completion every test publish uses (an opaque function pointer). */
void h_cb(void);

uvmqtt_session_config_t h_cfg(uint8_t version);
void h_init(const uvmqtt_session_config_t *cfg);
/* As h_init(), returning uvmqtt__session_new()'s result. */
int h_try_init(const uvmqtt_session_config_t *cfg);
void h_init_v(uint8_t version);
/* Frees the session with `status` and everything recorded. */
void h_fini(int status);
/* Forgets recorded events (not the session). */
void h_clear(void);

int h_connect(uint64_t now, uint16_t keepalive, bool clean);
int h_connect_pkt(uint64_t now, const uvmqtt_connect_t *c);

/* Takes all output, decodes it into H.sent, and completes the batch with
 * status 0. Returns the number of packets. */
size_t h_flush(uint64_t now);
/* Takes all output and decodes it, without completing it. Returns NULL
 * when there was nothing. */
uvmqtt_out_batch_t *h_take(uint64_t now, const uvmqtt_iov_t **iov, size_t *n);
void h_done(uvmqtt_out_batch_t *b, int status);

/* Encodes `pkt` with H.version into buf; returns the size. */
size_t b_pkt(uint8_t *buf, size_t cap, const uvmqtt_packet_t *pkt);
size_t b_connack(uint8_t *buf, bool sp, uint8_t rc,
                 const uvmqtt_props_t *props);
size_t b_ack(uint8_t *buf, uint8_t type, uint16_t id, uint8_t reason);
size_t b_publish(uint8_t *buf, size_t cap, const char *topic,
                 const void *payload, size_t len, uint8_t qos, uint16_t id,
                 bool dup);
size_t b_suback(uint8_t *buf, uint8_t type, uint16_t id, const uint8_t *codes,
                size_t n);

int h_feed(uint64_t now, const uint8_t *data, size_t len);
int h_feed_pkt(uint64_t now, const uvmqtt_packet_t *pkt);
int h_feed_ack(uint64_t now, uint8_t type, uint16_t id, uint8_t reason);
int h_feed_connack(uint64_t now, bool sp, uint8_t rc,
                   const uvmqtt_props_t *props);
int h_feed_publish(uint64_t now, const char *topic, const char *payload,
                   uint8_t qos, uint16_t id, bool dup);

/* connect(keepalive 0) + flush + CONNACK accepted + flush; h_up() then
 * forgets what was recorded, h_up_keep() keeps it. */
void h_up(uint64_t now);
void h_up_keep(uint64_t now);

int h_pub(uint64_t now, const char *topic, const char *payload, uint8_t qos,
          long arg);
int h_pub_ex(uint64_t now, const uvmqtt_session_pub_t *p, long arg);
int h_sub(const char *filter, uint8_t qos, long arg);

/* Completions recorded for `arg`: the count, and the last one. */
int h_ndone(long arg);
const pubdone_t *h_donefor(long arg);
/* Sent packets of one type from index `from`. */
size_t h_count_sent(uint8_t type, size_t from);

/* Trace of events and sent packets, one line each (for comparing runs). */
void h_trace_on(void);

#endif
