/* The session's private parts, shared by its files (session.c, idset.c,
 * alias.c, batch.c): the session struct, queued messages and requests, the
 * incoming flow, and the entry points the files call in one another. Not
 * for the rest of the library: it goes through session.h. */
#ifndef UVMQTT_SRC_SESSION_SESSION_INT_H
#define UVMQTT_SRC_SESSION_SESSION_INT_H

#include "session/idset.h"
#include "session/session.h"
#include "uvmqtt/log.h"

/* Payloads up to this size are copied into the output buffer; larger ones
 * are written from the message's own memory. */
#define INLINE_PAYLOAD_MAX 2048
enum { MSG_QUEUED = 0, MSG_WAIT_ACK, MSG_WAIT_COMP };

struct uvmqtt_smsg_s {
  uvmqtt_smsg_t *next;
  uvmqtt_smsg_t *prev;
  uvmqtt_session_fn cb;
  void *arg;
  uint64_t queued_at;
  uint32_t expiry_s;
  const uint8_t *payload;
  size_t payload_len;
  char *topic;
  size_t topic_len;
  uvmqtt_props_t *props;
  uint16_t packet_id;
  uint8_t qos;
  uint8_t state;
  bool retain;
  bool dup;
  bool done;   /* completed; freed once no batch references it */
  bool stored; /* durable in the store, or not persisted (see pump) */
  uint16_t refs;
  int status;
  uint8_t reason;
};

struct uvmqtt_sreq_s {
  uvmqtt_sreq_t *next;
  uvmqtt_session_fn cb;
  void *arg;
  size_t count;
  uint16_t packet_id;
  uint8_t type; /* UVMQTT_SUBSCRIBE or UVMQTT_UNSUBSCRIBE */
};

/* Outgoing topic aliases (alias.c), allocated on first use. */
typedef struct uvmqtt_aliases_s uvmqtt_aliases_t;

/* An incoming QoS 1/2 message delivered in manual mode, waiting for the
 * application's acknowledgement or for the earlier ones (acks go out in
 * arrival order). */
typedef struct {
  uvmqtt_props_t *props; /* v5 ack properties, copied; NULL when none */
  uint32_t bytes;        /* payload bytes (saturated) */
  uint16_t packet_id;
  uint8_t qos;
  uint8_t reason;
  bool acked;
} in_ack_t;

/* The incoming flow, allocated when first needed (manual
 * acknowledgement, a hold): most sessions never have one. Handles are
 * sequence numbers that never repeat; ring[head] has handle `base`. */
typedef struct {
  in_ack_t *ring;
  uint32_t cap, head, count;
  uint32_t unacked; /* entries the application has not acknowledged */
  size_t unacked_bytes;
  uint64_t base;       /* handle of ring[head] */
  uint64_t next;       /* the next handle (> 0) */
  uint64_t conn_first; /* first handle of the current connection */
  uint64_t cur;        /* handle being delivered, 0 outside on_message */
  uint32_t max_msgs;   /* hold at this many unacknowledged (0: none) */
  size_t max_bytes;
  uint8_t *held; /* input kept while holding, from a packet boundary */
  size_t held_len, held_cap;
  bool manual;
  bool user_hold; /* the application paused */
  bool auto_hold; /* the limits above */
  /* Record first (exactly-once option, see session.h): a new incoming
   * QoS 2 message waits, input held, until its record is durable. */
  bool record_first;
  bool store_wait;  /* a message waits for its record */
  bool cur_maybe;   /* during on_message: possibly delivered before */
  uint8_t wait_gen; /* connection it arrived on */
  uint16_t wait_pid;
  uint64_t wait_did;
  uint8_t *wait_data;         /* its topic, then its payload */
  uvmqtt_props_t *wait_props; /* v5, copied; NULL when none */
  uvmqtt_publish_t wait_pub;  /* views into the two above */
  uint64_t next_did;          /* delivery ids given out: the next one */
  uint64_t cur_did;           /* during on_message: the message's, 0 none */
  struct known_in {
    uint64_t did;
    uint16_t pid;
  } * known; /* restored records: possibly delivered by an earlier process */
  uint32_t nknown, known_cap;
} inflow_t;

/* Laid out to be small (no holes, narrow types where values are bounded):
 * thousands of idle connections each hold one. Everything else a session
 * needs only while busy (a partly received packet, packet ids in use,
 * output, alias tables) is allocated when needed and freed when idle. */
struct uvmqtt_session_s {
  const uvmqtt_session_events_t *ev_; /* the owner's table, not a copy */
  void *ud;

  uvmqtt_smsg_t *q_head, *q_tail; /* waiting to be sent */
  uvmqtt_smsg_t *f_head, *f_tail; /* in flight, in send order */
  uvmqtt_sreq_t *reqs;     /* a ring: the newest, whose next is the oldest */
  uvmqtt_out_batch_t *cur; /* being filled */

  idset_ref_t out_ids; /* ids in use by our messages and requests */
  idset_ref_t in_ids;  /* incoming QoS 2 ids waiting for PUBREL */

  /* The parser of a packet partly received, with that packet's buffer
   * after it; NULL between packets (see uvmqtt__session_input()). */
  uvmqtt_parser_t *in;
  uint64_t in_offset; /* bytes received on this connection */

  inflow_t *flow; /* NULL until needed */

  /* v5 topic aliases, both directions in one block (alias.c), allocated
   * when first used on a connection. */
  uvmqtt_aliases_t *aliases;

  size_t q_bytes;
  size_t max_queued_bytes; /* 0 = unbounded */
  uint64_t last_send, last_recv;

  uint32_t q_count;
  uint32_t max_queued;        /* 0 = unbounded */
  uint32_t max_packet_size;   /* largest incoming packet we accept */
  uint32_t server_max_packet; /* v5 CONNACK limits (0 when not given) */
  /* The batch pool it is counted in (its thread's pool id, batch.c), 0
   * before its first output. */
  uint32_t pool_home;
  int16_t in_error; /* sticky input error (the stream cannot be resumed);
                       error codes fit: libuv's and ours (> -32768) */

  uint16_t f_count; /* bounded by the ids: at most 65535 */
  uint16_t next_id;
  uint16_t max_inflight; /* 0 = 65535 */
  uint16_t receive_maximum;
  uint16_t topic_alias_max_in;
  uint16_t server_receive_max;
  uint16_t server_alias_max;
  uint16_t keepalive_s; /* in force: CONNECT's, or the server's (v5) */

  uint8_t version;
  uint8_t queue_policy;
  uint8_t state; /* uvmqtt_session_state_t */
  uint8_t gen;   /* counts connections: input stops when one ends */
  uint8_t server_max_qos;
  uint8_t ping_timeout_pct; /* of the keepalive (1-255) */
  bool topic_alias_auto : 1;
  bool clean_start : 1;   /* of the CONNECT in progress */
  bool server_retain : 1; /* v5 Retain Available (true unless 0) */
  bool ping_outstanding : 1;
  bool embedded : 1; /* in the owner's memory: uvmqtt__session_init() */
  bool persist : 1;  /* reports state changes through ev_->on_persist */
  bool freeing : 1;  /* in uvmqtt__session_free: nothing leaves the store */
  bool halted : 1;   /* input stopped for good: uvmqtt__session_halt_input() */
  bool gated : 1;    /* ask ev->may_publish before each queued PUBLISH */
};

/* ---- session.c, for the other files ------------------------------------ */

/* A log line through the owner's on_log, formatted. */
void uvmqtt__session_log(uvmqtt_session_t *s, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Completes a message: its callback, then its record and memory. */
void uvmqtt__session_msg_fire(uvmqtt_session_t *s, uvmqtt_smsg_t *m,
                              const uvmqtt_props_t *props);

/* ---- alias.c: topic aliases (v5) ---------------------------------------- */

/* Frees both alias tables (a new connection starts without aliases). */
void uvmqtt__aliases_reset(uvmqtt_session_t *s);
/* Picks the alias for an outgoing topic: *alias gets its number and
 * *known says whether the server already has the mapping (then the topic
 * may be left out). Returns 0 with *alias 0 when aliases are not in use. */
int uvmqtt__alias_out(uvmqtt_session_t *s, const char *topic, size_t len,
                      uint16_t *alias, bool *known);
/* Forgets the outgoing mapping of `alias`: the broker never saw it. */
void uvmqtt__alias_out_forget(uvmqtt_session_t *s, uint16_t alias);
/* Resolves an incoming alias (v5). On success *pub has the full topic. */
int uvmqtt__alias_in(uvmqtt_session_t *s, uvmqtt_publish_t *pub);

/* ---- batch.c: output batches -------------------------------------------- */

/* Reserves n contiguous bytes at the end of the current batch. */
uint8_t *uvmqtt__out_reserve(uvmqtt_session_t *s, size_t n);
/* Gives back the unused tail of the last reservation. */
void uvmqtt__out_unreserve(uvmqtt_session_t *s, size_t n);
/* Appends bytes written from elsewhere (a large payload in `ref`). */
int uvmqtt__out_ext(uvmqtt_session_t *s, const uint8_t *p, size_t n,
                    uvmqtt_smsg_t *ref);
/* Adds a completion fired when the batch has been written. */
int uvmqtt__out_done_entry(uvmqtt_session_t *s, uvmqtt_session_fn cb,
                           void *arg);
/* Makes room for one completion in the current batch, so that a packet
 * encoded next cannot be left in the output with its completion lost. */
int uvmqtt__out_done_room(uvmqtt_session_t *s, uvmqtt_session_fn cb);
/* Encodes a non-PUBLISH packet into the output. */
int uvmqtt__out_packet(uvmqtt_session_t *s, const uvmqtt_packet_t *pkt);
/* A PUBACK, PUBREC, PUBREL or PUBCOMP without properties. */
int uvmqtt__out_ack(uvmqtt_session_t *s, uint8_t type, uint16_t id,
                    uint8_t reason);
/* Encodes a PUBLISH. `ref` (may be NULL) is the message whose memory holds
 * the payload; large payloads are then written from there. */
int uvmqtt__out_publish(uvmqtt_session_t *s, uint64_t now,
                        const uvmqtt_publish_t *pub, uvmqtt_smsg_t *ref,
                        bool ext_ok);
/* A batch written (or given up) with `status`: its completions fire and it
 * goes back to the thread's pool. */
void uvmqtt__batch_release(uvmqtt_session_t *s, uvmqtt_out_batch_t *b,
                           int status);
/* The session is freed: it leaves its thread's pool of spare batches. */
void uvmqtt__batch_pool_leave(uvmqtt_session_t *s);

#endif
