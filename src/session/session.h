/* The MQTT session state machine, sans I/O.
 *
 * No sockets and no clock: the owner passes `now` (milliseconds from any
 * monotonic origin) into every call that needs time, feeds received bytes
 * to uvmqtt__session_input(), takes the bytes to send with
 * uvmqtt__session_take_output(), and calls uvmqtt__session_tick() when
 * uvmqtt__session_deadline() says so. Events come back through the
 * uvmqtt_session_events_t callbacks, synchronously, from inside those
 * calls.
 *
 * What it owns: packet ids (never reused while in use), the QoS 1/2
 * state machines both ways, the in-flight window (min of our maximum and the
 * server's Receive Maximum), the bounded queue of messages waiting for the
 * window or for a connection, resending after a reconnect, keepalive
 * deadlines, and validation of everything the broker sends.
 *
 * Incoming flow: by default each QoS 1/2 message is acknowledged right
 * after its on_message event returns. With manual acknowledgement
 * (uvmqtt__session_set_manual_ack()) it is acknowledged when the owner
 * calls uvmqtt__session_ack() with the handle uvmqtt__session_msg_handle()
 * gave during on_message; PUBACKs and PUBRECs still go out in the order
 * the PUBLISHes arrived [MQTT-4.6.0-2, -3] (an early ack waits for the
 * earlier ones), and unacknowledged messages count against our v5 Receive
 * Maximum. Input can be held (uvmqtt__session_hold(), or automatically
 * when too much is delivered and not acknowledged): the packet being
 * handled completes, the rest of the bytes is kept (at most what the
 * transport delivered before it paused) and handled when the hold ends.
 * Input can be halted for good (uvmqtt__session_halt_input(), when the
 * application leaves): the rest is dropped, neither delivered nor
 * acknowledged, and the broker sends it again.
 *
 * Session loss (the broker reports no session on reconnect): queued and
 * unacknowledged QoS 1 messages are sent again as new messages (DUP clear;
 * at-least-once still holds). QoS 2 messages that were already sent
 * complete with UVMQTT_ESESSION: exactly-once can no longer be guaranteed
 * because the broker forgot them, and re-sending could deliver twice; the
 * application decides. Incoming QoS 2 ids held for PUBREL are forgotten.
 */
#ifndef UVMQTT_SESSION_H
#define UVMQTT_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uvmqtt/codec.h"
#include "uvmqtt/log.h"

typedef struct uvmqtt_session_s uvmqtt_session_t;
typedef struct uvmqtt_smsg_s uvmqtt_smsg_t;
typedef struct uvmqtt_sreq_s uvmqtt_sreq_t;
typedef struct uvmqtt_out_batch_s uvmqtt_out_batch_t;

/* An opaque completion (the client's callback and argument). */
typedef void (*uvmqtt_session_fn)(void);

typedef struct {
  /* CONNACK received and accepted (reason 0) or refused (reason != 0). */
  void (*on_connack)(void *ud, const uvmqtt_connack_t *ack);
  /* An application message, after QoS 2 de-duplication. */
  void (*on_message)(void *ud, const uvmqtt_publish_t *pub);
  /* A publish finished (status 0) or failed. `props`: the v5 properties
   * of the acknowledgement that completed it, valid during the call, or
   * NULL. */
  void (*on_publish_done)(void *ud, uvmqtt_session_fn cb, void *arg, int status,
                          uint16_t packet_id, uint8_t reason,
                          const uvmqtt_props_t *props);
  /* SUBACK / UNSUBACK (type says which), or a cancelled request
   * (status < 0, codes NULL). */
  void (*on_sub_done)(void *ud, int type, uvmqtt_session_fn cb, void *arg,
                      int status, uint16_t packet_id, const uint8_t *codes,
                      size_t count, const uvmqtt_props_t *props);
  /* A v5 server DISCONNECT or AUTH packet. */
  void (*on_disconnect)(void *ud, const uvmqtt_reason_t *r);
  void (*on_auth)(void *ud, const uvmqtt_reason_t *r);
  /* Output went from empty to non-empty: schedule a flush. */
  void (*on_output)(void *ud);
  /* A log line (level as UVMQTT_LOG_*). */
  void (*on_log)(void *ud, int level, const char *msg);
  /* Persistence (sessions configured with `persist` only): a state change
   * to write to the store, op one of uvmqtt_persist_op_t; m is the message
   * (NULL for the incoming ids), id its packet id. Returns 0 or an error;
   * only UVMQTT_PERSIST_PUT's is used (it fails the publish call), the
   * owner reports the others. MUST NOT call back into the session. */
  int (*on_persist)(void *ud, int op, uvmqtt_smsg_t *m, uint16_t id);
  /* Input holding started (true: the owner SHOULD stop reading) or ended
   * (false: the owner resumes reading and, from the loop, not from inside
   * an API call, calls uvmqtt__session_release_input()). May be NULL. */
  void (*on_hold)(void *ud, bool holding);
  /* Asked, only while the gate is set (uvmqtt__session_set_gate), before a
   * queued PUBLISH of `bytes` (topic + payload) moves into the output:
   * false keeps it and everything after it queued until the owner calls
   * uvmqtt__session_pump(). May be NULL. Retransmissions on reconnect are
   * not asked. */
  bool (*may_publish)(void *ud, size_t bytes, uint64_t now);
} uvmqtt_session_events_t;

/* What on_persist reports. Outgoing QoS 1/2 messages: PUT (accepted by
 * publish; the session sends it only after uvmqtt__session_stored()),
 * SENT (first PUBLISH written: resend with DUP from now on), PUBREC (QoS 2:
 * PUBREL from now on; the PUBREL itself waits for uvmqtt__session_stored()
 * too, as a restart must not resend the PUBLISH after the broker got a
 * PUBREL), REQUEUED (session lost: a QoS 1 message goes back
 * to the queue as new), DONE (completed, failed, dropped or expired: forget
 * it). Incoming QoS 2 ids: IN_ADD (received, not released), IN_DEL
 * (released by PUBREL, or forgotten with a lost session), IN_FIRST
 * (record first: received, to be delivered once the record, with the
 * delivery id uvmqtt__session_in_did() gives during the call, is durable;
 * answered by uvmqtt__session_in_stored()). Nothing
 * is reported from inside uvmqtt__session_free(): what is pending then
 * stays in the store for the next process. */
typedef enum {
  UVMQTT_PERSIST_PUT = 1,
  UVMQTT_PERSIST_SENT,
  UVMQTT_PERSIST_PUBREC,
  UVMQTT_PERSIST_REQUEUED,
  UVMQTT_PERSIST_DONE,
  UVMQTT_PERSIST_IN_ADD,
  UVMQTT_PERSIST_IN_DEL,
  UVMQTT_PERSIST_IN_FIRST
} uvmqtt_persist_op_t;

typedef struct {
  uint8_t version;             /* UVMQTT_V31, UVMQTT_V311, UVMQTT_V5 */
  unsigned max_inflight;       /* our window for outgoing QoS 1/2 */
  size_t max_queued;           /* 0 = unbounded */
  size_t max_queued_bytes;     /* 0 = unbounded */
  int queue_policy;            /* uvmqtt_queue_policy_t */
  uint32_t max_packet_size;    /* largest incoming packet we accept */
  uint16_t receive_maximum;    /* ours, v5 (0 = 65535) */
  unsigned ping_timeout_pct;   /* % of keepalive to wait for PINGRESP */
  uint16_t topic_alias_max_in; /* v5: aliases the server may use (ours) */
  bool topic_alias_auto;       /* v5: assign outgoing aliases (LRU) */
  bool persist;                /* report state changes (on_persist) */
} uvmqtt_session_config_t;

typedef enum {
  UVMQTT_SS_DISCONNECTED = 0,
  UVMQTT_SS_CONNECTING, /* CONNECT sent, waiting for CONNACK */
  UVMQTT_SS_CONNECTED
} uvmqtt_session_state_t;

typedef struct {
  const uint8_t *base;
  size_t len;
} uvmqtt_iov_t;

/* Allocates and initialises a session. `ev` is kept by reference, not
 * copied: it MUST outlive the session (a static table). Returns 0,
 * UVMQTT_ENOMEM or UVMQTT_EINVAL. */
int uvmqtt__session_new(const uvmqtt_session_config_t *cfg,
                        const uvmqtt_session_events_t *ev, void *ud,
                        uvmqtt_session_t **out);
/* The same, in memory the owner provides (uvmqtt__session_size() bytes,
 * 8-byte aligned), so that a client and its session are one
 * allocation; uvmqtt__session_free() then leaves that memory to the owner.
 * Returns 0 or UVMQTT_EINVAL. */
size_t uvmqtt__session_size(void);
int uvmqtt__session_init(void *mem, const uvmqtt_session_config_t *cfg,
                         const uvmqtt_session_events_t *ev, void *ud,
                         uvmqtt_session_t **out);
/* Completes everything pending with `status` (publish and subscribe
 * callbacks fire) and frees the session. Output batches still taken MUST
 * have been returned with uvmqtt__session_output_done() first. */
void uvmqtt__session_free(uvmqtt_session_t *s, int status);

/* Frees the spare output batches of the calling thread. Output batches are
 * shared by the sessions of a thread and go with the thread's last
 * session; a thread that ran a loop and ends while its sessions live on
 * (the loop handed to another thread, where they are freed) calls this
 * last, or the spares are lost with the thread. No session may be in use
 * on the calling thread afterwards. */
void uvmqtt__session_thread_end(void);

/* Starts a connection: resets per-connection state and queues CONNECT.
 * The session copies nothing from `pkt` beyond this call. Errors as
 * uvmqtt_encode(). */
int uvmqtt__session_connect(uvmqtt_session_t *s, uint64_t now,
                            const uvmqtt_connect_t *pkt);
/* Feeds received bytes. Returns 0, or a negative error after which the
 * owner MUST close the connection (malformed packet, protocol violation,
 * refused CONNACK: UVMQTT_EREFUSED, server DISCONNECT:
 * UVMQTT_EDISCONNECTED). Events fire from inside. */
int uvmqtt__session_input(uvmqtt_session_t *s, uint64_t now,
                          const uint8_t *data, size_t len);
/* The connection is gone (any reason). Pending SUBSCRIBE/UNSUBSCRIBE
 * requests complete with `status`; in-flight messages wait for the next
 * connection. Output not yet taken is dropped (it is rebuilt on
 * reconnect). */
void uvmqtt__session_connection_lost(uvmqtt_session_t *s, int status);
/* Queues DISCONNECT (reason and props used in v5 only). Nothing follows
 * it on this connection: the session is disconnected from then on (input
 * halted, publishes queue, acks still waiting for the application are
 * left to the broker's redelivery); uvmqtt__session_connection_lost()
 * still follows once the stream is closed. */
int uvmqtt__session_disconnect(uvmqtt_session_t *s, uint8_t reason,
                               const uvmqtt_props_t *props);
/* Queues an AUTH packet (v5). */
int uvmqtt__session_auth(uvmqtt_session_t *s, uint8_t reason,
                         const uvmqtt_props_t *props);

/* Keepalive. `keepalive_s` from CONNECT (or the server's v5 Server Keep
 * Alive) applies from uvmqtt__session_connect(). tick() queues PINGREQ
 * when due and returns UVMQTT_EKEEPALIVE when the broker stayed silent too
 * long; deadline() is the next time tick() must run (UINT64_MAX: never). */
int uvmqtt__session_tick(uvmqtt_session_t *s, uint64_t now);
uint64_t uvmqtt__session_deadline(const uvmqtt_session_t *s);

typedef struct {
  const char *topic;
  size_t topic_len;
  const void *payload;
  size_t payload_len;
  uint8_t qos;
  bool retain;
  const uvmqtt_props_t *props; /* v5, copied */
  bool zero_copy;
  uint32_t expiry_s; /* v5 Message Expiry Interval, 0 = none */
} uvmqtt_session_pub_t;

/* Queues a publish. Returns the packet id (QoS 1/2), 0 (QoS 0) or an
 * error: UVMQTT_EQOS, UVMQTT_ETOOBIG, UVMQTT_EQUEUEFULL, UVMQTT_ENOMEM,
 * UVMQTT_EINVAL. cb fires once through on_publish_done (which may happen
 * from inside this call only for a message dropped by DROP_OLDEST — the
 * dropped one is an older message, never this one). */
int uvmqtt__session_publish(uvmqtt_session_t *s, uint64_t now,
                            const uvmqtt_session_pub_t *p, uvmqtt_session_fn cb,
                            void *arg);
/* Queues SUBSCRIBE / UNSUBSCRIBE (only while connected: UVMQTT_ENOTCONN
 * otherwise). Returns the packet id or an error. */
int uvmqtt__session_subscribe(uvmqtt_session_t *s,
                              const uvmqtt_subscription_t *subs, size_t n,
                              const uvmqtt_props_t *props, uvmqtt_session_fn cb,
                              void *arg);
int uvmqtt__session_unsubscribe(uvmqtt_session_t *s,
                                const uvmqtt_str_t *filters, size_t n,
                                const uvmqtt_props_t *props,
                                uvmqtt_session_fn cb, void *arg);

/* Takes everything queued for sending as one batch: *iov gets n entries
 * valid until uvmqtt__session_output_done(batch). Returns the number of
 * entries, 0 when there is nothing to send. */
size_t uvmqtt__session_take_output(uvmqtt_session_t *s, uint64_t now,
                                   const uvmqtt_iov_t **iov,
                                   uvmqtt_out_batch_t **batch);
/* The batch was written (status 0) or failed/cancelled. QoS 0 publishes
 * in it complete here with that status. */
void uvmqtt__session_output_done(uvmqtt_session_t *s, uvmqtt_out_batch_t *batch,
                                 int status);

/* Outgoing rate limiting: with the gate set, may_publish is asked before
 * each queued PUBLISH goes out; pump() moves the queue again after a
 * refusal. */
void uvmqtt__session_set_gate(uvmqtt_session_t *s, bool on);
void uvmqtt__session_pump(uvmqtt_session_t *s, uint64_t now);

uvmqtt_session_state_t uvmqtt__session_state(const uvmqtt_session_t *s);
size_t uvmqtt__session_inflight(const uvmqtt_session_t *s);
size_t uvmqtt__session_queued(const uvmqtt_session_t *s);
/* Incoming QoS 2 messages acknowledged with PUBREC, awaiting PUBREL. */
size_t uvmqtt__session_in_pending(const uvmqtt_session_t *s);
bool uvmqtt__session_has_output(const uvmqtt_session_t *s);
/* True when the peer owes at least n answers to what was sent: publishes
 * in flight, SUBSCRIBE / UNSUBSCRIBE requests (queued messages owe none
 * yet). */
bool uvmqtt__session_owes(const uvmqtt_session_t *s, size_t n);
/* Spare output batches kept for the sessions of the calling thread. */
size_t uvmqtt__session_spare_batches(void);
/* The keepalive in force, in seconds: CONNECT's, or the server's v5
 * Server Keep Alive once a CONNACK gave one. */
uint16_t uvmqtt__session_keepalive(const uvmqtt_session_t *s);
/* Server limits learnt from the v5 CONNACK (0 when not given). */
uint32_t uvmqtt__session_server_max_packet(const uvmqtt_session_t *s);
uint16_t uvmqtt__session_server_alias_max(const uvmqtt_session_t *s);
/* The v5 DISCONNECT reason code that describes error `err` detected on
 * our side (0x81 malformed, 0x82 protocol error, 0x93 receive maximum
 * exceeded, 0x94 topic alias invalid, 0x95 packet too large), or 0 when
 * no DISCONNECT should be sent for it. */
uint8_t uvmqtt__session_disconnect_reason(int err);
void uvmqtt__session_set_keepalive(uvmqtt_session_t *s, uint16_t seconds);

/* ---- persistence (sessions configured with `persist`) ----------------------
 * The owner writes what on_persist reports to its store and calls back: */

/* The PUT (or PUBREC state) of m finished: status 0, m is durable and may
 * be sent (the queue is pumped), or its PUBREL may; status < 0, a PUT
 * could not be stored and m completes with that status (unless it
 * completed already), a PUBREC state failure is logged and PUBREL goes.
 * Either way m MUST NOT be used by the owner afterwards. Every PUT and
 * PUBREC MUST be answered exactly once, before uvmqtt__session_free() or
 * not at all (free releases unanswered ones). */
void uvmqtt__session_stored(uvmqtt_session_t *s, uvmqtt_smsg_t *m, uint64_t now,
                            int status);

/* What the store needs of a message: the PUBLISH (DUP clear; views into
 * the message, valid while it lives), its expiry (0 none) and its state:
 * 0 queued, 1 sent, 2 PUBREC received. */
void uvmqtt__smsg_view(const uvmqtt_smsg_t *m, uvmqtt_publish_t *pub,
                       uint32_t *expiry_s, int *state);

/* Before the first connect, puts back a message read from the store, in
 * the order they were first published: state 0 goes to the queue, 1 and
 * 2 in flight (resent with DUP, or PUBREL, after a CONNACK with session
 * present; the session-loss rule otherwise). The message is copied; it
 * counts as stored; it completes through on_publish_done with cb/arg.
 * expiry_s is what remains of its lifetime from `now` (0: none).
 * Errors: UVMQTT_ESTATE (connected or connecting), UVMQTT_EINVAL (QoS 0,
 * bad state), UVMQTT_EEXIST (packet id in use), UVMQTT_ENOMEM. */
int uvmqtt__session_restore_msg(uvmqtt_session_t *s, uint64_t now,
                                const uvmqtt_publish_t *pub, uint32_t expiry_s,
                                int state, uvmqtt_session_fn cb, void *arg);
/* Before the first connect, puts back an incoming QoS 2 id that waits for
 * PUBREL; did != 0: recorded first (with that delivery id), so possibly
 * never delivered: a resend of it is delivered, marked as possibly
 * delivered before, with that id. Errors: UVMQTT_ESTATE, UVMQTT_EPACKETID
 * (0), UVMQTT_ENOMEM. */
int uvmqtt__session_restore_in_id(uvmqtt_session_t *s, uint16_t id,
                                  uint64_t did);

/* Record first (the exactly-once option; automatic acknowledgement and
 * `persist` only): a new incoming QoS 2 message is reported with IN_FIRST
 * and held, input with it, until uvmqtt__session_in_stored(); then it is
 * delivered and PUBREC goes. Delivery ids start at did_base (> 0) and
 * are never reused. Before the first connect. Errors: UVMQTT_EINVAL
 * (no persist, manual acknowledgement, did_base 0), UVMQTT_ENOMEM. */
int uvmqtt__session_set_record_first(uvmqtt_session_t *s, uint64_t did_base);
/* The IN_FIRST record of packet id pid is durable (status 0) or failed
 * (delivered anyway, logged). Delivers the message, queues PUBREC and
 * ends the hold. */
void uvmqtt__session_in_stored(uvmqtt_session_t *s, uint64_t now, uint16_t pid,
                               int status);
/* During on_message (record first): the message's delivery id (0 for
 * others) and whether an earlier process may have delivered it; during
 * on_persist(IN_FIRST): the id to record. */
uint64_t uvmqtt__session_in_did(const uvmqtt_session_t *s, bool *maybe);

/* Visits the outgoing QoS 1/2 messages still pending, in flight first,
 * each with its completion. fn MUST NOT change the session. */
void uvmqtt__session_each_msg(uvmqtt_session_t *s,
                              void (*fn)(void *ctx, uvmqtt_smsg_t *m,
                                         uvmqtt_session_fn cb, void *arg),
                              void *ctx);
/* ---- incoming flow: halt, hold, manual acknowledgement ------------------ */

/* The application is leaving: uvmqtt__session_input() returns after the
 * packet it is handling (whose acknowledgement, in automatic mode, is
 * still queued) and drops every byte after it, now and until the next
 * uvmqtt__session_connect(). Nothing more is delivered. */
void uvmqtt__session_halt_input(uvmqtt_session_t *s);
bool uvmqtt__session_halted(const uvmqtt_session_t *s);

/* Manual acknowledgement of incoming QoS 1/2 messages. `max_msgs` and
 * `max_bytes` (0: no limit) hold input while that many messages (or
 * payload bytes) are delivered and not acknowledged. Call before the
 * first connect. Returns 0 or UVMQTT_ENOMEM. */
int uvmqtt__session_set_manual_ack(uvmqtt_session_t *s, uint32_t max_msgs,
                                   size_t max_bytes);
/* Manual mode, before the first connect: handles start at `base` (> 0)
 * instead of 1, so that handles of an earlier process of the same client
 * (a store numbers the processes) are older than every handle of this one
 * and refused as stale. Errors: UVMQTT_ESTATE (not in manual mode,
 * handles given out already, or connecting). */
int uvmqtt__session_set_handle_base(uvmqtt_session_t *s, uint64_t base);
/* During on_message: the handle of the message being delivered, 0 for
 * QoS 0 or in automatic mode. Handles are never reused. */
uint64_t uvmqtt__session_msg_handle(const uvmqtt_session_t *s);
/* Acknowledges a delivered message (v5: `reason` one of 0x00, 0x10, 0x80,
 * 0x83, 0x87, 0x90, 0x97, 0x99 and `props`, copied, may be NULL; 3.x:
 * reason 0 and no props). The PUBACK / PUBREC is queued once every
 * earlier message is acknowledged. Returns 0 (also for handle 0: nothing
 * to acknowledge), UVMQTT_EACKED (acknowledged before), UVMQTT_ESTALE (its
 * connection is gone or leaving: the broker sends it again),
 * UVMQTT_EINVAL (not a handle of this session, or a reason not allowed),
 * UVMQTT_ENOTSUP (a reason or props on 3.x), UVMQTT_ENOMEM (nothing
 * changed). */
int uvmqtt__session_ack(uvmqtt_session_t *s, uint64_t now, uint64_t handle,
                        uint8_t reason, const uvmqtt_props_t *props);
/* Delivered and not yet acknowledged (manual mode), and their payload
 * bytes. */
size_t uvmqtt__session_unacked(const uvmqtt_session_t *s, size_t *bytes);

/* Holds input (the application paused reading) or ends that hold.
 * Holding applies once connected (a CONNACK is always read) and lasts
 * across reconnects. While input is held the keepalive still sends
 * PINGREQ on schedule but does not judge the broker's silence (we are not
 * reading); once the hold ends the broker gets a full keepalive period
 * again. Returns 0 or UVMQTT_ENOMEM. */
int uvmqtt__session_hold(uvmqtt_session_t *s, uint64_t now, bool on);
/* Whether input is held now (by the application or the limits). */
bool uvmqtt__session_holding(const uvmqtt_session_t *s);
/* Handles the bytes kept while input was held, when it no longer is.
 * Returns as uvmqtt__session_input(); events fire from inside. */
int uvmqtt__session_release_input(uvmqtt_session_t *s, uint64_t now);
/* Bytes kept while holding. */
size_t uvmqtt__session_held(const uvmqtt_session_t *s);

#endif
