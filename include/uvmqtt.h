/** @file
 * uvmqtt: an asynchronous MQTT 3.1 / 3.1.1 / 5.0 client on a libuv loop.
 *
 * Threading: every function here MUST be called on the thread that runs the
 * client's loop, and every callback runs on that thread, unless a function
 * says otherwise (see uvmqtt_client_publish_threadsafe). There are no
 * hidden threads and no blocking calls.
 *
 * Errors: functions return 0 (or a non-negative value) on success and a
 * negative code on failure; see uvmqtt/errors.h. A call that returns an
 * error never fires its callback; one that returns success fires it exactly
 * once (with a cancellation status, UVMQTT_ECLOSED, when the client is
 * closed first).
 *
 * Signals: uvmqtt writes to its connections with MSG_NOSIGNAL, so a peer
 * that reset the connection gives EPIPE (handled as a lost connection),
 * never SIGPIPE. Libraries it drives are not all as careful (c-ares' TCP
 * fallback for DNS), so ignoring SIGPIPE (signal(SIGPIPE, SIG_IGN)), as
 * Node does, remains good practice.
 *
 * Ownership: options, strings and outgoing payloads are copied unless a
 * zero-copy call says otherwise. Incoming topics, payloads and properties
 * handed to callbacks are views valid only during the callback.
 *
 * NULL: a NULL client (or other required pointer) gives UVMQTT_EINVAL from
 * functions returning int, false / NULL / 0 from accessors, and nothing
 * from void functions. QoS is an `int` (0, 1 or 2) everywhere: calls,
 * options and messages; other values give UVMQTT_EQOS.
 */
#ifndef UVMQTT_H
#define UVMQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "uvmqtt/alloc.h"
#include "uvmqtt/codec.h"
#include "uvmqtt/errors.h"
#include "uvmqtt/helpers.h"
#include "uvmqtt/log.h"
#include "uvmqtt/router.h"
#include "uvmqtt/store.h"
#include "uvmqtt/tls.h"
#include "uvmqtt/topic.h"
#include "uvmqtt/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A client (opaque): one MQTT connection at a time to one broker of a
 * list, with its session, queues and callbacks, on one libuv loop. */
typedef struct uvmqtt_client_s uvmqtt_client_t;
/** The options a client is created with (opaque; see the options setters). */
typedef struct uvmqtt_options_s uvmqtt_options_t;

/* Log levels: UVMQTT_LOG_ERROR .. UVMQTT_LOG_DEBUG, in uvmqtt/log.h. */

/** What to do with a new message when the outgoing queue is full. */
typedef enum {
  UVMQTT_QUEUE_REFUSE_NEW = 0, /**< publish() returns UVMQTT_EQUEUEFULL */
  UVMQTT_QUEUE_DROP_OLDEST = 1 /**< oldest queued message completes with
                                  UVMQTT_EDROPPED */
} uvmqtt_queue_policy_t;

/* ---- the delivery contract ----------------------------------------------- */

/** @page delivery The delivery contract
 * What uvmqtt promises about messages, in one place.
 *
 * Outgoing (publish): a publish that returns >= 0 is queued; its callback
 * fires exactly once: QoS 0 when written, QoS 1 on PUBACK, QoS 2 on
 * PUBCOMP, or with the reason it did not complete (rejected, dropped by the
 * queue policy, expired, UVMQTT_ESESSION, UVMQTT_ECLOSED at close).
 * Messages survive lost connections (resent with DUP on a resumed session,
 * see uvmqtt_options_set_clean_session). uvmqtt_client_disconnect_drain()
 * waits for all of them before leaving.
 *
 * Incoming QoS 1 is at least once, QoS 2 exactly once, across reconnects
 * of a persistent session (clean session off).
 * - Automatic acknowledgement (the default): a QoS 1/2 message is
 *   acknowledged (PUBACK / PUBREC) when its message callback returns. A
 *   process that dies inside the callback has not acknowledged it: the
 *   broker sends it again to the resumed session. A QoS 1 PUBACK goes
 *   out ahead of what the callback published (a reply follows the
 *   acknowledgement of the message it answers).
 * - Manual acknowledgement (uvmqtt_options_set_manual_ack): a QoS 1/2
 *   message is acknowledged when the application calls uvmqtt_ack() with
 *   msg->ack_handle, from any callback on the loop thread, at any later
 *   time. Acknowledgements go out in the order the messages arrived, as
 *   MQTT requires, whatever order the application acks in (an early ack
 *   waits for the earlier ones). v5: messages not yet acknowledged count
 *   against the Receive Maximum we announce, so the broker sends no more
 *   (a broker that sends more is disconnected with 0x93; mosquitto 2.0.11
 *   does with a small Receive Maximum and acks out of order: there, bound
 *   the backlog with max_unacked instead).
 *   Messages not acknowledged when the connection ends are sent again by
 *   the broker (and logged); their handles then return UVMQTT_ESTALE.
 * - Leaving: uvmqtt_client_disconnect() and uvmqtt_client_close(), also
 *   from inside a message callback, stop delivery at once: no message
 *   callback fires after either call. Every message already handed to the
 *   application is acknowledged on the wire before the DISCONNECT
 *   (automatic mode; manual: every one the application acknowledged before
 *   the call returned to the loop); messages received but not yet handed
 *   over are neither delivered nor acknowledged (the broker sends them
 *   again). The goodbye is graceful: pending acknowledgements, PUBRELs and
 *   PUBCOMPs, then DISCONNECT, then a half-close (TLS close_notify,
 *   WebSocket close handshake, TCP FIN), then whatever the broker still
 *   sends is read and discarded until it closes, at most the linger time
 *   (uvmqtt_options_set_linger, default 2 s); only then is the socket
 *   closed, so no reset makes the broker drop our last acknowledgements.
 *   The disconnect callback (or the close callback) fires after that.
 * - A crash, a lost connection or a closed socket without DISCONNECT:
 *   whatever was not acknowledged on the wire is sent again by the broker
 *   to the resumed session (QoS 1: possibly a second time; QoS 2: the
 *   broker does not send a message again once it has our PUBREC, and a
 *   PUBLISH it sends again before that is not delivered twice by the same
 *   process; across a restart, with a store, see docs/persistence.md).
 * - Back-pressure: uvmqtt_client_pause() stops reading (no message
 *   callback fires until uvmqtt_client_resume()); with manual
 *   acknowledgement, reading also pauses by itself while too many messages
 *   (or payload bytes) are delivered and not acknowledged. The broker then
 *   sees a full TCP window (3.1.1) or, in v5, also our Receive Maximum.
 *   Bytes already read when the pause began (at most one read, 64 KiB) are
 *   kept and delivered after it. While paused, PINGREQ still goes out on
 *   schedule and the broker's silence is not held against it (we are not
 *   reading); once reading resumes the broker has a full keepalive period
 *   to be heard from again.
 */

/** An incoming application message. Everything is valid only during the
 * callback that receives it (keep a copy with uvmqtt_message_copy). */
typedef struct uvmqtt_message_s {
  const char *topic;           /**< not NUL-terminated */
  size_t topic_len;            /**< the topic's length in bytes */
  const void *payload;         /**< the payload (may be NULL when empty) */
  size_t payload_len;          /**< its length in bytes */
  int qos;                     /**< int, as in every call that takes a QoS */
  bool retain;                 /**< sent because it was retained */
  bool dup;                    /**< the broker's DUP flag (a QoS 1/2 resend) */
  uint16_t packet_id;          /**< 0 for QoS 0 */
  const uvmqtt_props_t *props; /**< v5 properties; NULL for 3.x */
  /** Manual acknowledgement: the handle to pass to uvmqtt_ack(), valid
   * after the callback (a number, not a pointer). 0 for QoS 0 and with
   * automatic acknowledgement. */
  uint64_t ack_handle;
  /** Record first (uvmqtt_options_set_record_first), QoS 2: the message's
   * delivery id, recorded in the store before the message was handed
   * over: every copy of one message carries the same id, two messages
   * never share one (per client id and store). 0 otherwise. */
  uint64_t delivery_id;
  /** Record first: true when an earlier process (killed, crashed) may have
   * handed this message, with this delivery_id, to the application
   * already; false guarantees it did not (docs/persistence.md). */
  bool maybe_delivered;
} uvmqtt_message_t;

/** Keeps a message past its callback: copies `src` (topic, payload and v5
 * properties, deep) into ONE allocation; *dst's topic is NUL-terminated
 * (topic_len excludes the NUL). A decoded set keeps its first
 * Subscription Identifier only. Free it with uvmqtt_message_free(). Errors:
 * UVMQTT_EINVAL (NULL dst or src, NULL topic or payload with a length),
 * UVMQTT_ENOMEM. Any thread (it touches no client). */
UVMQTT_EXTERN int uvmqtt_message_copy(uvmqtt_message_t **dst,
                                      const uvmqtt_message_t *src);
/** Frees a copy made by uvmqtt_message_copy(); NULL is a no-op. */
UVMQTT_EXTERN void uvmqtt_message_free(uvmqtt_message_t *m);

/* ---- v5 property builder ------------------------------------------------- */

/** @{ */
/** uvmqtt_props_new() makes an empty property set that owns its values; the
 * setters copy and validate them and set the present bits. The set is an
 * ordinary uvmqtt_props_t: pass it wherever properties are taken
 * (uvmqtt_publish_opts_t.props, uvmqtt_subscribe_many, the connect and will
 * props setters, uvmqtt_client_disconnect_ex), which copy what they keep.
 * Free it with uvmqtt_props_free() (only sets made by uvmqtt_props_new).
 * A setter called twice replaces the value; uvmqtt_props_add_user appends.
 * Errors: UVMQTT_EINVAL (NULL set or value, a string over 65535 bytes,
 * subscription id 0 or above 268435455, topic alias 0), UVMQTT_EUTF8 (not
 * well-formed UTF-8, or U+0000), UVMQTT_ETOPIC (response topic with
 * wildcards), UVMQTT_ENOMEM (the set is unchanged). No thread affinity:
 * a set is used by one thread at a time. */
UVMQTT_EXTERN int uvmqtt_props_new(uvmqtt_props_t **out);
UVMQTT_EXTERN void uvmqtt_props_free(uvmqtt_props_t *p);
UVMQTT_EXTERN int uvmqtt_props_add_user(uvmqtt_props_t *p, const char *key,
                                        const char *value);
UVMQTT_EXTERN int uvmqtt_props_set_content_type(uvmqtt_props_t *p,
                                                const char *type);
UVMQTT_EXTERN int uvmqtt_props_set_response_topic(uvmqtt_props_t *p,
                                                  const char *topic);
UVMQTT_EXTERN int uvmqtt_props_set_correlation_data(uvmqtt_props_t *p,
                                                    const void *data,
                                                    size_t len);
UVMQTT_EXTERN int uvmqtt_props_set_reason_string(uvmqtt_props_t *p,
                                                 const char *reason);
/** Payload Format Indicator: utf8 true says the payload is UTF-8 text. */
UVMQTT_EXTERN int uvmqtt_props_set_payload_format(uvmqtt_props_t *p, bool utf8);
UVMQTT_EXTERN int uvmqtt_props_set_message_expiry(uvmqtt_props_t *p,
                                                  uint32_t seconds);
UVMQTT_EXTERN int uvmqtt_props_set_session_expiry(uvmqtt_props_t *p,
                                                  uint32_t seconds);
UVMQTT_EXTERN int uvmqtt_props_set_subscription_id(uvmqtt_props_t *p,
                                                   uint32_t id);
UVMQTT_EXTERN int uvmqtt_props_set_topic_alias(uvmqtt_props_t *p,
                                               uint16_t alias);
/** @} */

/* ---- callbacks ----------------------------------------------------------- */

/** Connection attempt finished. status 0: connected, `ack` is the CONNACK.
 * status UVMQTT_EREFUSED: the broker refused, `ack->reason_code` says why.
 * Other negative status: the attempt failed before a CONNACK (ack NULL);
 * automatic reconnect, when on, tries again unless the error cannot be
 * fixed by retrying. */
typedef void (*uvmqtt_connect_cb)(uvmqtt_client_t *c, int status,
                                  const uvmqtt_connack_t *ack, void *arg);

/** The connection ended. status 0 when the application asked for it
 * (uvmqtt_client_disconnect / close), otherwise the cause: a libuv error,
 * UVMQTT_EPEERCLOSED, UVMQTT_EKEEPALIVE, UVMQTT_EDISCONNECTED (a v5 server
 * DISCONNECT, whose reason code and properties are in `reason`), a
 * protocol error, ... Two statuses come from the reconnect policy
 * (uvmqtt_options_set_reconnect_policy): UVMQTT_ETAKENOVER (v5 DISCONNECT
 * 0x8E, another connection uses our client id; by default the client
 * then stops reconnecting) and UVMQTT_ESHORTLIVED (the broker keeps
 * closing the connection right after accepting it: probably taken over,
 * or rejected after connect; the client goes on at the maximum delay).
 * `reason` is NULL unless the server sent a DISCONNECT. When the client
 * will not reconnect by itself (the application disconnected, or automatic
 * reconnect is off), the client is idle while this runs: it may call
 * uvmqtt_client_connect*() again from here. */
typedef void (*uvmqtt_disconnect_cb)(uvmqtt_client_t *c, int status,
                                     const uvmqtt_reason_t *reason, void *arg);

/** A message arrived (a route's callback, or the default message callback
 * for messages no route matches). `msg` and everything it points to is
 * valid only during the callback (uvmqtt_message_copy() keeps one). */
typedef void (*uvmqtt_message_cb)(uvmqtt_client_t *c,
                                  const uvmqtt_message_t *msg, void *arg);

/** How a publish ended, handed to its uvmqtt_publish_cb. */
typedef struct uvmqtt_pub_result_s {
  /** 0 when complete: QoS 0 written to the socket, QoS 1 acknowledged
   * with PUBACK, QoS 2 with PUBCOMP. Otherwise the error:
   * UVMQTT_EREJECTED (a v5 broker answered with reason_code >= 0x80),
   * UVMQTT_EDROPPED, UVMQTT_EEXPIRED, UVMQTT_ECLOSED, UVMQTT_ESESSION,
   * UVMQTT_ETOOBIG, UVMQTT_EQOS, UVMQTT_ENOTSUP, UVMQTT_ETOPICALIAS, or a
   * write error (QoS 0). */
  int status;
  uint16_t packet_id; /**< 0 for QoS 0 */
  /** The v5 reason code of the acknowledgement that completed it (PUBACK,
   * a refusing PUBREC, or PUBCOMP); 0 otherwise. */
  uint8_t reason_code;
  /** That acknowledgement's v5 properties (reason string, user
   * properties), or NULL (3.x, no acknowledgement, or completed after the
   * packet was gone). A view valid only during the callback. */
  const uvmqtt_props_t *props;
} uvmqtt_pub_result_t;

/** A publish completed or failed; fires exactly once per accepted publish,
 * on the loop thread. `r` is valid only during the callback. */
typedef void (*uvmqtt_publish_cb)(uvmqtt_client_t *c,
                                  const uvmqtt_pub_result_t *r, void *arg);

/** How a subscribe or unsubscribe ended, handed to its uvmqtt_subscribe_cb.
 * Everything is a view valid only during the callback. */
typedef struct {
  /** 0 when the SUBACK / UNSUBACK arrived; UVMQTT_ECLOSED when the client
   * was closed first (a request waiting for a connection or for its answer
   * is sent again after a reconnect, never failed by a lost connection). */
  int status;
  int type; /**< UVMQTT_SUBACK or UVMQTT_UNSUBACK */
  /** The packet's id; 0 when the request sent no packet of its own (an
   * identical subscription was already pending or active). */
  uint16_t packet_id;
  /** codes[0 .. count): granted QoS / reason codes, one per filter in
   * request order (a 3.x UNSUBACK has none: count 0; NULL when count is
   * 0). */
  const uint8_t *codes;
  size_t count;                /**< the number of codes */
  const uvmqtt_props_t *props; /**< v5 SUBACK / UNSUBACK properties, or NULL */
} uvmqtt_sub_result_t;

/** A subscribe or unsubscribe completed; fires exactly once per accepted
 * request, on the loop thread. */
typedef void (*uvmqtt_subscribe_cb)(uvmqtt_client_t *c,
                                    const uvmqtt_sub_result_t *r, void *arg);

/** A log line of the client (and of its transport layers) at `level`
 * (UVMQTT_LOG_ERROR .. UVMQTT_LOG_DEBUG), NUL-terminated, without a
 * newline; valid only during the callback. */
typedef void (*uvmqtt_log_cb)(uvmqtt_client_t *c, int level, const char *msg,
                              void *arg);

/** Fired once all of the client's handles are closed; the client's memory is
 * released right after it returns. */
typedef void (*uvmqtt_close_cb)(uvmqtt_client_t *c);

/** Called before every connection attempt (after a connect call, each
 * server of a list, each reconnect, each redirect), just before the name
 * lookup: the place to change what the next CONNECT carries with the
 * uvmqtt_client_set_* setters (credentials, will, keepalive, CONNECT
 * properties, enhanced authentication, WebSocket headers), like Paho's
 * on_pre_connect. `attempt`: 0 for the first attempt after a connect
 * call, then the number of the reconnect (1, 2, ...: counted since the
 * last successful connection; the servers of a list share one number).
 * Return non-zero
 * to stop: the client becomes idle (no connect callback fires) until the
 * next connect call. The hook may also close or disconnect the client. */
typedef int (*uvmqtt_pre_connect_cb)(uvmqtt_client_t *c, unsigned attempt,
                                     void *arg);

/* ---- options ------------------------------------------------------------- */

/** @{ */
/** An options object is made with the defaults by uvmqtt_options_new()
 * (errors: UVMQTT_EINVAL for a NULL `out`, UVMQTT_ENOMEM), filled in by the
 * setters below, then copied by uvmqtt_client_new(); it may be deleted with
 * uvmqtt_options_del() right after (NULL is a no-op). Setters copy their
 * strings. Each returns 0 or UVMQTT_EINVAL (bad value) / UVMQTT_ENOMEM;
 * setters taking strings also return UVMQTT_EUTF8 for a string that is not
 * well-formed UTF-8 or holds U+0000, the will setter UVMQTT_ETOPIC for an
 * invalid topic, and the TLS, WebSocket and DNS setters UVMQTT_ENOTSUP when
 * that part is not built. An options object is used by one thread at a
 * time. */
UVMQTT_EXTERN int uvmqtt_options_new(uvmqtt_options_t **out);
UVMQTT_EXTERN void uvmqtt_options_del(uvmqtt_options_t *o);
/** @} */

/** @{ */
/** Client identifier; NULL or "" asks for a random one ("uvmqtt-" + 16 hex
 * digits) — except that with MQTT 5 an empty id is sent as is when
 * uvmqtt_options_set_empty_client_id(o, true) says so, letting the broker
 * assign one. */
UVMQTT_EXTERN int uvmqtt_options_set_client_id(uvmqtt_options_t *o,
                                               const char *id);
UVMQTT_EXTERN int uvmqtt_options_set_empty_client_id(uvmqtt_options_t *o,
                                                     bool empty);
/** @} */
/** UVMQTT_V31, UVMQTT_V311 (default) or UVMQTT_V5. */
UVMQTT_EXTERN int uvmqtt_options_set_protocol(uvmqtt_options_t *o, int version);
/** Clean session (3.x) / clean start (5.0); default true.
 *
 * What happens to messages in flight when a connection drops:
 * - The broker reports its session (Session Present 1, only possible with
 *   clean session off): unacknowledged QoS 1/2 PUBLISHes are sent again
 *   with DUP set, and PUBRELs for QoS 2 messages already at PUBREC, in
 *   their original order.
 * - The broker has no session (clean session on, or it lost it): QoS 1
 *   messages are sent again as new messages (DUP clear; at-least-once still
 *   holds), never as duplicates into the fresh session; QoS 2 messages that
 *   were already sent complete with UVMQTT_ESESSION, because exactly-once
 *   can no longer be guaranteed and re-sending could deliver twice. Queued
 *   messages that were never sent are simply sent. */
UVMQTT_EXTERN int uvmqtt_options_set_clean_session(uvmqtt_options_t *o,
                                                   bool clean);
/** v5 Session Expiry Interval in seconds (0xFFFFFFFF: never). */
UVMQTT_EXTERN int uvmqtt_options_set_session_expiry(uvmqtt_options_t *o,
                                                    uint32_t seconds);
/** Keepalive in seconds, 0 disables; default 60. */
UVMQTT_EXTERN int uvmqtt_options_set_keepalive(uvmqtt_options_t *o,
                                               unsigned seconds);
/** Username (may be NULL) and password (binary, may be NULL). */
UVMQTT_EXTERN int uvmqtt_options_set_credentials(uvmqtt_options_t *o,
                                                 const char *username,
                                                 const void *password,
                                                 size_t password_len);
/** @{ */
/** Will message; topic NULL clears it. `props` (v5, may be NULL) is copied.
 * UVMQTT_EQOS for a QoS other than 0, 1 or 2. */
UVMQTT_EXTERN int uvmqtt_options_set_will(uvmqtt_options_t *o,
                                          const char *topic,
                                          const void *payload, size_t len,
                                          int qos, bool retain);
UVMQTT_EXTERN int uvmqtt_options_set_will_props(uvmqtt_options_t *o,
                                                const uvmqtt_props_t *props);
/** @} */
/** Extra v5 CONNECT properties (copied). */
UVMQTT_EXTERN int uvmqtt_options_set_connect_props(uvmqtt_options_t *o,
                                                   const uvmqtt_props_t *p);
/** Outgoing QoS 1/2 messages in flight at once (default 20; the server's v5
 * Receive Maximum caps it). */
UVMQTT_EXTERN int uvmqtt_options_set_max_inflight(uvmqtt_options_t *o,
                                                  unsigned n);
/** Messages waiting beyond the in-flight window or while disconnected:
 * bounded by count and by payload bytes (0 = unbounded), with a policy.
 * Default 65536 messages, 64 MiB, UVMQTT_QUEUE_REFUSE_NEW. */
UVMQTT_EXTERN int uvmqtt_options_set_max_queued(uvmqtt_options_t *o,
                                                size_t count, size_t bytes,
                                                uvmqtt_queue_policy_t policy);
/** Largest incoming packet accepted (default 256 MiB - 1, the protocol
 * maximum); sent to v5 brokers as Maximum Packet Size. */
UVMQTT_EXTERN int uvmqtt_options_set_max_packet_size(uvmqtt_options_t *o,
                                                     uint32_t bytes);
/** Automatic reconnect: on by default, backoff from min_ms (default 1000)
 * doubling to max_ms (default 30000), each delay randomised by +/- jitter
 * (0..1, default 0.2). The backoff starts over only once a connection has
 * stayed up (see uvmqtt_options_set_reconnect_policy). */
UVMQTT_EXTERN int uvmqtt_options_set_reconnect(uvmqtt_options_t *o,
                                               bool enabled, unsigned min_ms,
                                               unsigned max_ms, double jitter);
/** Time allowed from starting a connection to CONNACK (default 10000 ms). */
UVMQTT_EXTERN int uvmqtt_options_set_connect_timeout(uvmqtt_options_t *o,
                                                     unsigned ms);
/** Local address to bind before connecting (IPv4 or IPv6 literal). */
UVMQTT_EXTERN int uvmqtt_options_set_bind_address(uvmqtt_options_t *o,
                                                  const char *ip);
/** TCP_NODELAY, on by default. */
UVMQTT_EXTERN int uvmqtt_options_set_nodelay(uvmqtt_options_t *o, bool on);
/** Re-subscribe the active subscriptions, once each, after a reconnect
 * when the broker reports no session (default true); when false they are
 * forgotten then. See uvmqtt_subscribe() ("Subscriptions belong to the
 * client"). */
UVMQTT_EXTERN int uvmqtt_options_set_resubscribe(uvmqtt_options_t *o, bool on);
/** At most n topic filters in one SUBSCRIBE or UNSUBSCRIBE (1 to 65535; 0,
 * the default, sets no limit). Some brokers close the connection on a
 * packet with more (AWS IoT Core takes 8). With a limit,
 * uvmqtt_subscribe_many and uvmqtt_unsubscribe_many refuse a larger count
 * with UVMQTT_EINVAL, and re-subscribing after a session loss sends at
 * most n filters per SUBSCRIBE (64 without a limit). Returns 0,
 * UVMQTT_EINVAL (NULL o, n above 65535) or UVMQTT_ENOMEM. Applies to the
 * clients created with these options afterwards. */
UVMQTT_EXTERN int uvmqtt_options_set_max_filters(uvmqtt_options_t *o,
                                                 unsigned n);
/** TLS configuration for mqtts:// and wss:// or for host/port connects when
 * `use_for_tcp` is true. The config is shared, not copied: it MUST outlive
 * every client using it. UVMQTT_ENOTSUP without TLS support. */
UVMQTT_EXTERN int uvmqtt_options_set_tls(uvmqtt_options_t *o,
                                         const uvmqtt_tls_config_t *cfg,
                                         bool use_for_tcp);
/** WebSocket request path (default "/mqtt") and extra header lines
 * ("Name: value"), for ws:// and wss://. */
UVMQTT_EXTERN int uvmqtt_options_set_ws(uvmqtt_options_t *o, const char *path,
                                        const char *const *headers,
                                        size_t header_count);
/** DNS servers for SRV and address lookups, "ip[:port][,ip[:port]...]";
 * NULL uses the system's configuration. UVMQTT_ENOTSUP without c-ares. */
UVMQTT_EXTERN int uvmqtt_options_set_dns_servers(uvmqtt_options_t *o,
                                                 const char *servers);
/** DNS lookup timeout in ms (default 5000). */
UVMQTT_EXTERN int uvmqtt_options_set_dns_timeout(uvmqtt_options_t *o,
                                                 unsigned ms);
/** The proxy every TCP connection of the client goes through (unix-domain
 * sockets never use one). `url`:
 *   "http://[user[:pass]@]host[:port]"    HTTP CONNECT (port 80 by default),
 *                                          Basic authentication with user
 *   "socks5h://[user[:pass]@]host[:port]" SOCKS5 (port 1080), the broker's
 *                                          name resolved by the proxy
 *   "socks5://..."                         SOCKS5, the broker's name
 *                                          resolved here (its first address)
 * user and pass are %-decoded. TLS and WebSocket run inside the tunnel
 * (mqtts:// and wss:// through the proxy, verified against the broker's
 * name). Every proxy step counts in the connect timeout. NULL or "": no
 * proxy. Copied. Errors: UVMQTT_EINVAL (o NULL), UVMQTT_EURI (not such a
 * URL), UVMQTT_ENOMEM. A failed proxy handshake reaches the connect
 * callback as UVMQTT_EPROXY_AUTH (credentials missing or refused),
 * UVMQTT_EPROXY_STATUS (the HTTP proxy refused, e.g. 403; 5xx is
 * retried), UVMQTT_ESOCKS_* (the SOCKS reply code), UVMQTT_EPROXY_PROTOCOL,
 * UVMQTT_EPROXY_TOOBIG or UVMQTT_EPROXY_CLOSED. */
UVMQTT_EXTERN int uvmqtt_options_set_proxy(uvmqtt_options_t *o,
                                           const char *url);
/** Opt-in (off by default: a library does not change behaviour because of
 * the environment unless asked): a client without a proxy set by
 * uvmqtt_options_set_proxy() reads the environment at each connection
 * attempt: ws:// uses http_proxy, wss:// https_proxy, every scheme then
 * all_proxy (lower case first, then upper case; a value without a scheme
 * is an HTTP proxy); no_proxy lists hosts and domains to reach directly
 * ("*": all). Errors: UVMQTT_EINVAL, UVMQTT_ENOMEM. */
UVMQTT_EXTERN int uvmqtt_options_set_proxy_from_env(uvmqtt_options_t *o,
                                                    bool on);

/* ---- MQTT 5 options ------------------------------------------------------ */

/** Topic aliases. `incoming_max`: how many aliases the server may use
 * towards us (sent as Topic Alias Maximum; default 0, none). `auto_out`:
 * assign aliases to outgoing topics automatically, least recently used
 * first, up to the server's Topic Alias Maximum (at most 64; default off).
 * An alias set by hand in a publish's properties is sent as given. */
UVMQTT_EXTERN int uvmqtt_options_set_topic_alias(uvmqtt_options_t *o,
                                                 uint16_t incoming_max,
                                                 bool auto_out);
/** Receive Maximum we announce: QoS 1/2 messages the server may have in
 * flight towards us (default 65535). A server that exceeds it is
 * disconnected with reason 0x93. */
UVMQTT_EXTERN int uvmqtt_options_set_receive_maximum(uvmqtt_options_t *o,
                                                     uint16_t n);
/** Ask the server for Response Information in the CONNACK. */
UVMQTT_EXTERN int uvmqtt_options_set_request_response_info(uvmqtt_options_t *o,
                                                           bool on);
/** Enhanced authentication: the Authentication Method (and optional initial
 * data) sent in CONNECT. The exchange is driven by the auth callback. */
UVMQTT_EXTERN int uvmqtt_options_set_auth(uvmqtt_options_t *o,
                                          const char *method, const void *data,
                                          size_t len);
/** Manual acknowledgement of incoming QoS 1/2 messages (see @ref delivery
 * "the delivery contract"): each is acknowledged when the application calls
 * uvmqtt_ack() with msg->ack_handle. `max_unacked` / `max_unacked_bytes`
 * (0: no limit) pause reading while that many messages / payload bytes are
 * delivered and not acknowledged, and resume below it. Default off. */
UVMQTT_EXTERN int uvmqtt_options_set_manual_ack(uvmqtt_options_t *o, bool on,
                                                uint32_t max_unacked,
                                                size_t max_unacked_bytes);
/** How long a graceful disconnect or close waits, after DISCONNECT and the
 * half-close, for the broker to close the connection (reading and
 * discarding what it still sends) before closing the socket anyway:
 * default 2000 ms, at most 600000; 0 closes at once (the broker may then
 * drop the acknowledgements and the DISCONNECT just written). */
UVMQTT_EXTERN int uvmqtt_options_set_linger(uvmqtt_options_t *o, unsigned ms);

/** Follow a server redirect (v5 reason 0x9C use another server / 0x9D
 * server moved, with a Server Reference) on CONNACK or DISCONNECT
 * (default on; the redirect callback may veto each one). */
UVMQTT_EXTERN int uvmqtt_options_set_follow_redirects(uvmqtt_options_t *o,
                                                      bool on);
/** Persistence (docs/persistence.md): the client keeps its outgoing QoS 1/2
 * messages (queued or in flight, with their state) and its incoming QoS 2
 * ids awaiting PUBREL in `store`, under its client id, and restores them
 * when created. `store` (uvmqtt/store.h) is shared by any number of
 * clients on its loop and MUST outlive them; it is not copied. level:
 * UVMQTT_DURABLE_PROCESS (survives kill -9) or UVMQTT_DURABLE_POWER
 * (survives power loss). With a store, a QoS 1/2 message is sent only once
 * it is durable; uvmqtt_client_on_stored() tells when. The client id MUST
 * be set (uvmqtt_client_new fails with UVMQTT_ECLIENTID for a random or
 * empty one, whose session nobody could take back). NULL store: no
 * persistence. Errors: UVMQTT_EINVAL (bad level), UVMQTT_ENOMEM. */
UVMQTT_EXTERN int uvmqtt_options_set_store(uvmqtt_options_t *o,
                                           uvmqtt_store_t *store,
                                           uvmqtt_durability_t level);
/** Exactly once for the application across crashes (incoming QoS 2, with a
 * store and automatic acknowledgement; docs/persistence.md): each new
 * QoS 2 message is recorded in the store, with a delivery id, before it
 * is handed to the application (reading waits for that record: one group
 * commit per message, so incoming QoS 2 goes slower). A message an earlier
 * process recorded and the broker sends again is handed over with the
 * same msg->delivery_id and msg->maybe_delivered set; one without the flag
 * was never handed over before. An application that commits the delivery
 * id together with its own effect (one transaction) and, for messages
 * flagged maybe_delivered only, skips the ids it committed, processes
 * every message exactly once, whenever the process is killed. Default
 * off. uvmqtt_client_new refuses it (UVMQTT_EINVAL) without a store or
 * with manual acknowledgement. Errors: UVMQTT_EINVAL (NULL o),
 * UVMQTT_ENOMEM. */
UVMQTT_EXTERN int uvmqtt_options_set_record_first(uvmqtt_options_t *o, bool on);

/* ---- client lifecycle ---------------------------------------------------- */

/** Creates a client on `loop`, copying `opts` (NULL: defaults). On failure
 * nothing is left to clean up. Errors: UVMQTT_EINVAL (also: record first
 * without a store or with manual acknowledgement), UVMQTT_ENOMEM,
 * UVMQTT_ECLIENTID (an empty id without a clean session before v5, or no
 * id of its own with a store); with a store also UVMQTT_EEXIST (a client
 * of that id uses the store already) and UVMQTT_ESTORE_IDENTITY (the
 * store's records of that id are of another protocol version). */
UVMQTT_EXTERN int uvmqtt_client_new(uv_loop_t *loop,
                                    const uvmqtt_options_t *opts,
                                    uvmqtt_client_t **out);

/** Closes the client: stops reconnecting and delivering (no message
 * callback fires after this call); when connected, leaves gracefully as
 * uvmqtt_client_disconnect() does (acknowledgements, DISCONNECT,
 * half-close, drain for at most the linger time); then completes every
 * pending publish, subscribe and unsubscribe callback with UVMQTT_ECLOSED,
 * closes every handle and calls cb (may be NULL). The client's memory is
 * freed after cb returns. Calling it from inside a client callback is
 * allowed; it takes effect once that callback returns. Calling it twice is
 * a no-op. */
UVMQTT_EXTERN void uvmqtt_client_close(uvmqtt_client_t *c, uvmqtt_close_cb cb);

/** @{ */
/** The application's pointer (libuv's handle->data); the client never
 * reads it. A NULL client: set is a no-op, get returns NULL. */
UVMQTT_EXTERN void uvmqtt_client_set_data(uvmqtt_client_t *c, void *data);
UVMQTT_EXTERN void *uvmqtt_client_get_data(const uvmqtt_client_t *c);
/** @} */
/** The loop the client runs on (NULL for a NULL client). */
UVMQTT_EXTERN uv_loop_t *uvmqtt_client_get_loop(const uvmqtt_client_t *c);

/** @{ */
/** Event callbacks: each setter replaces the previous callback (cb NULL
 * removes it); `arg` is handed back on every call. Each returns 0, or
 * UVMQTT_EINVAL for a NULL client. Setting them from inside callbacks is
 * allowed. */
UVMQTT_EXTERN int uvmqtt_client_on_connect(uvmqtt_client_t *c,
                                           uvmqtt_connect_cb cb, void *arg);
UVMQTT_EXTERN int uvmqtt_client_on_disconnect(uvmqtt_client_t *c,
                                              uvmqtt_disconnect_cb cb,
                                              void *arg);
/** The default message callback: for messages no route matches. */
UVMQTT_EXTERN int uvmqtt_client_on_message(uvmqtt_client_t *c,
                                           uvmqtt_message_cb cb, void *arg);
/** Log lines up to `max_level` (UVMQTT_LOG_*). */
UVMQTT_EXTERN int uvmqtt_client_on_log(uvmqtt_client_t *c, uvmqtt_log_cb cb,
                                       void *arg, int max_level);
/** @} */
/** Installs (cb NULL: removes) the pre-connect hook. Returns 0,
 * UVMQTT_EINVAL for a NULL client, or UVMQTT_ECLOSED once
 * uvmqtt_client_close() was called (the hook is not called after that). */
UVMQTT_EXTERN int uvmqtt_client_on_pre_connect(uvmqtt_client_t *c,
                                               uvmqtt_pre_connect_cb cb,
                                               void *arg);

/** @{ */
/** v5 AUTH from the server during connect or re-authentication: reason
 * 0x18 (continue authentication) with the server's data in props. Answer
 * with uvmqtt_client_auth() (inside the callback or later); returning
 * non-zero abandons the connection. The hook is kept whether or not an
 * authentication method is configured yet (it may be set later, in the
 * pre-connect hook); it can fire only for MQTT 5 clients. Returns 0, or
 * UVMQTT_EINVAL for a NULL client. */
typedef int (*uvmqtt_auth_cb)(uvmqtt_client_t *c, uint8_t reason,
                              const uvmqtt_props_t *props, void *arg);
UVMQTT_EXTERN int uvmqtt_client_on_auth(uvmqtt_client_t *c, uvmqtt_auth_cb cb,
                                        void *arg);
/** @} */
/** Sends AUTH with the configured method and `data`: reason 0x18 to
 * continue an exchange, 0x19 to start re-authentication on a live
 * connection. Errors: UVMQTT_ENOTSUP (not v5 or no method configured),
 * UVMQTT_ENOTCONN, UVMQTT_EINVAL. */
UVMQTT_EXTERN int uvmqtt_client_auth(uvmqtt_client_t *c, uint8_t reason,
                                     const void *data, size_t len);

/** @{ */
/** A v5 server redirect: `reference` is the Server Reference (host[:port]).
 * Return 0 to follow it, non-zero to refuse (then the refusal or
 * disconnect is handled as any other). The setter returns 0, or
 * UVMQTT_EINVAL for a NULL client; the hook can fire only for MQTT 5
 * clients. */
typedef int (*uvmqtt_redirect_cb)(uvmqtt_client_t *c, uint8_t reason,
                                  const char *reference, void *arg);
UVMQTT_EXTERN int uvmqtt_client_on_redirect(uvmqtt_client_t *c,
                                            uvmqtt_redirect_cb cb, void *arg);
/** @} */

/* ---- persistence --------------------------------------------------------- */

/** @page persistence_client Persistence in the client
 * For clients created with uvmqtt_options_set_store().
 *
 * At creation the client takes back what the store held for its client id
 * (uvmqtt_client_new fails with UVMQTT_ESTORE_IDENTITY when those records
 * belong to another protocol version, and connecting fails with it when
 * they belong to another broker). Restored messages carry no callback
 * across processes: list them with uvmqtt_client_restored() before
 * connecting, and learn their outcome through the callback set with
 * uvmqtt_client_on_restored_done() (the publish callback shape; QoS 1 on
 * PUBACK, QoS 2 on PUBCOMP, UVMQTT_ESESSION for a QoS 2 message the
 * broker lost with its session, UVMQTT_EEXPIRED...). They resume on the
 * first CONNACK exactly as after a reconnect. */

/** A restored message still pending: the PUBLISH (views valid during the
 * call) and its state: 0 queued, 1 sent (resent with DUP), 2 PUBREC
 * received (PUBREL next). */
typedef void (*uvmqtt_restored_cb)(uvmqtt_client_t *c,
                                   const uvmqtt_publish_t *pub, int state,
                                   void *arg);
/** Calls cb for each restored message still pending, in flight first, then
 * queued, in publish order. Returns how many (0 without a store). */
UVMQTT_EXTERN int uvmqtt_client_restored(uvmqtt_client_t *c,
                                         uvmqtt_restored_cb cb, void *arg);
/** The completion of every restored message (cb may be NULL: none).
 * Errors: UVMQTT_EINVAL, UVMQTT_ENOTSUP (no store). */
UVMQTT_EXTERN int uvmqtt_client_on_restored_done(uvmqtt_client_t *c,
                                                 uvmqtt_publish_cb cb,
                                                 void *arg);
/** @{ */
/** "Stored": a QoS 1/2 publish of this client is durable at the client's
 * level (status 0) — after that a crash does not lose it — or could not
 * be stored (status < 0: its publish callback fires with that status too).
 * Fires before the message is sent, in publish order. cb NULL: none.
 * Errors: UVMQTT_EINVAL, UVMQTT_ENOTSUP (no store). */
typedef void (*uvmqtt_stored_cb)(uvmqtt_client_t *c, int status,
                                 uint16_t packet_id, void *arg);
UVMQTT_EXTERN int uvmqtt_client_on_stored(uvmqtt_client_t *c,
                                          uvmqtt_stored_cb cb, void *arg);
/** @} */

/* ---- what the next CONNECT carries --------------------------------------- */

/** @{ */
/** These change the client's copy of the options for the next connection
 * attempt (typically from the pre-connect hook; a connection already up
 * is not affected). Same arguments, copying and errors as the options
 * setters of the same name (uvmqtt_options_set_credentials, _set_will,
 * _set_will_props, _set_keepalive, _set_connect_props, _set_auth, and the
 * header part of _set_ws), plus UVMQTT_EINVAL for a NULL client. On an
 * error the previous value stays. Loop thread only. */
UVMQTT_EXTERN int uvmqtt_client_set_credentials(uvmqtt_client_t *c,
                                                const char *username,
                                                const void *password,
                                                size_t password_len);
UVMQTT_EXTERN int uvmqtt_client_set_will(uvmqtt_client_t *c, const char *topic,
                                         const void *payload, size_t len,
                                         int qos, bool retain);
UVMQTT_EXTERN int uvmqtt_client_set_will_props(uvmqtt_client_t *c,
                                               const uvmqtt_props_t *props);
UVMQTT_EXTERN int uvmqtt_client_set_keepalive(uvmqtt_client_t *c,
                                              unsigned seconds);
UVMQTT_EXTERN int uvmqtt_client_set_connect_props(uvmqtt_client_t *c,
                                                  const uvmqtt_props_t *p);
UVMQTT_EXTERN int uvmqtt_client_set_auth(uvmqtt_client_t *c, const char *method,
                                         const void *data, size_t len);
/** @} */
/** Extra WebSocket handshake header lines ("Name: value"); the path is
 * unchanged. UVMQTT_ENOTSUP without WebSocket support. */
UVMQTT_EXTERN int uvmqtt_client_set_ws_headers(uvmqtt_client_t *c,
                                               const char *const *headers,
                                               size_t header_count);

/** Starts connecting to host:port over plain TCP (or TLS when the options
 * say use_for_tcp); port 0 means 1883 (8883 with TLS). Returns at once;
 * the result comes to the connect callback. Errors: UVMQTT_EINVAL,
 * UVMQTT_EBUSY (already connecting or connected), UVMQTT_ECLOSED, and with
 * a store UVMQTT_ESTORE_IDENTITY (the stored session belongs to another
 * broker: the first server's host:port, or the SRV domain, is compared
 * with the one recorded at the first connect). */
UVMQTT_EXTERN int uvmqtt_client_connect(uvmqtt_client_t *c, const char *host,
                                        int port);
/** Connects by URI: mqtt://[user[:pass]@]host[:port] (1883),
 * mqtts:// (8883), ws://host[:port][/path] (80, path /mqtt), wss:// (443),
 * unix:///path/to/socket (a unix-domain socket; unix://@name for the Linux
 * abstract namespace; the path is %-decoded), ws+unix:///path/to/socket
 * (WebSocket over a unix-domain socket, request path from
 * uvmqtt_options_set_ws, Host "localhost"). IPv6 literals in brackets.
 * Credentials in the URI override the options.
 * mqtts:// and wss:// use the TLS configuration of the options; without
 * one, the system's trust store (uvmqtt_tls_config_set_ca_default: one
 * configuration shared by the process's clients), with peer and host name
 * verification on. Errors: as uvmqtt_client_connect, UVMQTT_EURI,
 * UVMQTT_ENOTSUP (scheme not built in), UVMQTT_ETLS_FILE (no TLS
 * configuration and no system trust store could be loaded),
 * UVMQTT_ETLS_CONFIG. */
UVMQTT_EXTERN int uvmqtt_client_connect_uri(uvmqtt_client_t *c,
                                            const char *uri);
/** Connects to a list of brokers tried in order, then around again with the
 * reconnect backoff. */
UVMQTT_EXTERN int uvmqtt_client_connect_uris(uvmqtt_client_t *c,
                                             const char *const *uris,
                                             size_t count);
/** Looks up the SRV records of `domain` (`_mqtt._tcp.domain`, or
 * `_secure-mqtt._tcp.domain` when TLS is configured) and connects to the
 * targets in RFC 2782 order. */
UVMQTT_EXTERN int uvmqtt_client_connect_srv(uvmqtt_client_t *c,
                                            const char *domain);

/** Leaves gracefully without closing the client (see @ref delivery
 * "the delivery contract"): delivery stops at once; once the callbacks under
 * way have returned, pending acknowledgements then DISCONNECT are written, the
 * connection is half-closed and drained for at most the linger time, and
 * the disconnect callback fires with status 0. Automatic reconnect stops
 * until the next connect call. Queued messages stay queued. Returns 0
 * (also when already leaving), UVMQTT_ENOTCONN, UVMQTT_ECLOSED,
 * UVMQTT_ENOMEM (nothing changed). */
UVMQTT_EXTERN int uvmqtt_client_disconnect(uvmqtt_client_t *c);

/** As uvmqtt_client_disconnect, with a v5 reason code and properties (for
 * example a Session Expiry Interval). */
UVMQTT_EXTERN int uvmqtt_client_disconnect_ex(uvmqtt_client_t *c,
                                              uint8_t reason,
                                              const uvmqtt_props_t *props);

/** @{ */
/** Graceful drain: new publishes are refused from now on
 * (UVMQTT_EDRAINING, no callback); once every queued and in-flight
 * message has completed (each publish callback fires once, as always),
 * or after timeout_ms (0: no limit), the client leaves as
 * uvmqtt_client_disconnect() does, then cb fires once: status 0 when
 * everything completed, UVMQTT_ETIMEDOUT when messages were still pending
 * (they stay queued; uvmqtt_client_close() completes them with
 * UVMQTT_ECLOSED), UVMQTT_ECLOSED when the client was closed first.
 * Connection losses meanwhile are handled as usual (automatic reconnect
 * goes on while draining). Returns 0, UVMQTT_EINVAL, UVMQTT_EBUSY (a drain
 * is under way), UVMQTT_ENOTCONN (neither connected nor reconnecting),
 * UVMQTT_ECLOSED or UVMQTT_ENOMEM. */
typedef void (*uvmqtt_drain_cb)(uvmqtt_client_t *c, int status, void *arg);
UVMQTT_EXTERN int uvmqtt_client_disconnect_drain(uvmqtt_client_t *c,
                                                 unsigned timeout_ms,
                                                 uvmqtt_drain_cb cb, void *arg);
/** @} */

/** @{ */
/** Manual acknowledgement (uvmqtt_options_set_manual_ack): acknowledges the
 * message whose msg->ack_handle is `handle`, from any callback on the loop
 * thread. The PUBACK / PUBREC goes out once every message that arrived
 * before it is acknowledged too. uvmqtt_ack_ex adds a v5 reason code
 * (0x00 success, 0x10 no matching subscribers, 0x80 unspecified error,
 * 0x83 implementation specific error, 0x87 not authorized, 0x90 topic
 * name invalid, 0x97 quota exceeded, 0x99 payload format invalid; with
 * QoS 2 a code >= 0x80 ends the exchange) and properties (copied). No
 * callback fires from inside. Returns 0 (also for handle 0: QoS 0, nothing
 * to acknowledge), UVMQTT_EACKED (acknowledged before), UVMQTT_ESTALE (the
 * connection it came on is gone or leaving: the broker sends it again;
 * with a store, also a handle an earlier process of this client gave out,
 * kept across a restart: handles are numbered per process, so such a
 * handle never acknowledges another message),
 * UVMQTT_ECLOSED (the client is closing), UVMQTT_EINVAL (not a handle of
 * this client, or a reason not allowed), UVMQTT_ENOTSUP (a reason or
 * properties before v5), UVMQTT_EUTF8, UVMQTT_ENOMEM (nothing changed). */
UVMQTT_EXTERN int uvmqtt_ack(uvmqtt_client_t *c, uint64_t handle);
UVMQTT_EXTERN int uvmqtt_ack_ex(uvmqtt_client_t *c, uint64_t handle,
                                uint8_t reason, const uvmqtt_props_t *props);
/** @} */
/** Messages delivered and not yet acknowledged (manual acknowledgement). */
UVMQTT_EXTERN size_t uvmqtt_client_get_unacked(const uvmqtt_client_t *c);

/** @{ */
/** Incoming back-pressure: pause stops reading from the broker (no message
 * callback fires until resume), resume reads again and delivers what was
 * kept, from the loop (never from inside resume). The pause lasts across
 * reconnects (a CONNACK is still read). Keepalive while paused: see
 * @ref delivery "the delivery contract". Returns 0, UVMQTT_EINVAL,
 * UVMQTT_ECLOSED or UVMQTT_ENOMEM. is_paused: reading is paused now (by pause
 * or by the manual-ack limit) on a live connection. */
UVMQTT_EXTERN int uvmqtt_client_pause(uvmqtt_client_t *c);
UVMQTT_EXTERN int uvmqtt_client_resume(uvmqtt_client_t *c);
UVMQTT_EXTERN bool uvmqtt_client_is_paused(const uvmqtt_client_t *c);
/** @} */

/** Accessors: a NULL client gives false, NULL or 0. */
UVMQTT_EXTERN bool uvmqtt_client_is_connected(const uvmqtt_client_t *c);
/** Whether the client reconnects by itself after losing a connection
 * (uvmqtt_options_set_reconnect; on by default). When it does not, work
 * still queued (publishes waiting for an acknowledgement) waits for the
 * application to connect again or to close the client. */
UVMQTT_EXTERN bool uvmqtt_client_get_reconnect(const uvmqtt_client_t *c);
/** The client id in use (the assigned one after a v5 CONNACK). */
UVMQTT_EXTERN const char *uvmqtt_client_get_client_id(const uvmqtt_client_t *c);
/** @{ */
/** Messages in flight (sent, not yet acknowledged) and waiting in queue. */
UVMQTT_EXTERN size_t uvmqtt_client_get_inflight(const uvmqtt_client_t *c);
UVMQTT_EXTERN size_t uvmqtt_client_get_queued(const uvmqtt_client_t *c);
/** @} */
/** After a TLS failure reported to the connect callback: the raw mbedTLS
 * error code and the X.509 verification flags of the last TLS handshake
 * that failed, for diagnosis (both 0 when none; either pointer may be
 * NULL). Returns 0, UVMQTT_EINVAL for a NULL client, or UVMQTT_ENOTSUP
 * without TLS. */
UVMQTT_EXTERN int uvmqtt_client_get_tls_error(const uvmqtt_client_t *c,
                                              int *mbedtls_err,
                                              uint32_t *verify_flags);
/* ---- publish ------------------------------------------------------------- */

/** Publishes a message; the payload is copied. Works while disconnected (the
 * message waits in the queue). Returns the packet id (> 0) for QoS 1/2, 0
 * for QoS 0, or a negative error before anything is queued:
 * UVMQTT_ETOPIC, UVMQTT_EQOS (also above the v5 server's Maximum QoS),
 * UVMQTT_EQUEUEFULL, UVMQTT_ENOPKTID (65535 messages in use),
 * UVMQTT_ETOOBIG (larger than the server's maximum packet size),
 * UVMQTT_ENOTSUP (retained, and the v5 server has no Retain Available),
 * UVMQTT_EDRAINING (uvmqtt_client_disconnect_drain under way),
 * UVMQTT_ECLOSED, UVMQTT_ENOMEM; with uvmqtt_publish_ex also UVMQTT_EUTF8
 * (a property string), UVMQTT_EPROPBAD (a Subscription Identifier) and
 * UVMQTT_ETOPICALIAS (alias 0, above the server's maximum, or set by hand
 * while automatic aliases are on).
 * cb (may be NULL) fires exactly once with a uvmqtt_pub_result_t. */
UVMQTT_EXTERN int uvmqtt_publish(uvmqtt_client_t *c, const char *topic,
                                 const void *payload, size_t len, int qos,
                                 bool retain, uvmqtt_publish_cb cb, void *arg);

/** A publish with every option, for uvmqtt_publish_ex() and
 * uvmqtt_request(): the message of uvmqtt_publish(), v5 properties, and
 * zero-copy payloads. A zeroed struct plus a topic is a valid QoS 0
 * publish of an empty payload. */
typedef struct {
  const char *topic;   /**< the topic name (not needed with a topic alias) */
  size_t topic_len;    /**< 0: strlen(topic) */
  const void *payload; /**< may be NULL when payload_len is 0 */
  size_t payload_len;  /**< the payload's length in bytes */
  int qos;             /**< 0, 1 or 2 */
  bool retain;         /**< ask the broker to retain the message */
  const uvmqtt_props_t *props; /**< v5, copied; may be NULL */
  /** Zero-copy: the payload is not copied and MUST stay valid and unchanged
   * until cb fires. */
  bool zero_copy;
} uvmqtt_publish_opts_t;

/** As uvmqtt_publish(), with the options of `opts` (copied, except a
 * zero-copy payload): returns the packet id (> 0) for QoS 1/2, 0 for QoS
 * 0, or the errors listed there; cb (may be NULL) fires exactly once. */
UVMQTT_EXTERN int uvmqtt_publish_ex(uvmqtt_client_t *c,
                                    const uvmqtt_publish_opts_t *opts,
                                    uvmqtt_publish_cb cb, void *arg);

/* ---- request / response (v5) --------------------------------------------- */

/** @{ */
/** Publishes a request carrying Response Topic `response_topic` and a fresh
 * Correlation Data, and completes when a message with that Correlation
 * Data arrives (on a subscription the application holds, typically to
 * response_topic), or after timeout_ms. The response message is handed to
 * cb (status 0) and not to routes or the default message callback.
 * Returns the packet id (>= 0) or an error as uvmqtt_publish_ex, or
 * UVMQTT_ENOTSUP before v5. cb fires once: 0 with the response,
 * UVMQTT_ETIMEDOUT, a publish error, or UVMQTT_ECLOSED. */
typedef void (*uvmqtt_response_cb)(uvmqtt_client_t *c, int status,
                                   const uvmqtt_message_t *response, void *arg);
UVMQTT_EXTERN int uvmqtt_request(uvmqtt_client_t *c,
                                 const uvmqtt_publish_opts_t *request,
                                 const char *response_topic,
                                 unsigned timeout_ms, uvmqtt_response_cb cb,
                                 void *arg);
/** @} */

/* ---- subscribe ----------------------------------------------------------- */

/** Subscriptions belong to the client.
 * - subscribe / unsubscribe work while disconnected: the request waits and
 *   is sent once connected. A request sent but not answered when the
 *   connection drops is sent again on the next connection. Requests still
 *   waiting when the client is closed complete with UVMQTT_ECLOSED.
 * - After a reconnect where the broker has no session (Session Present 0),
 *   the client re-subscribes every active subscription ONCE, before the
 *   connect callback runs (uvmqtt_options_set_resubscribe(o, false) makes
 *   it forget them instead).
 * - Subscribing to a filter the client already holds, or is subscribing
 *   to, with the same options (and no properties) is idempotent: nothing
 *   is sent; cb fires once, with the pending SUBACK's grant when it comes
 *   (such waiting subscribes complete in the order they were made), or
 *   before the call returns when the subscription is already active
 *   (packet_id 0 in the result). So subscribing in the connect callback,
 *   the usual pattern, sends one SUBSCRIBE per connection.
 * - A request with properties, or with a filter not held with the same
 *   options, is sent whole. When two SUBSCRIBEs of one filter are
 *   outstanding, the subscription keeps the latest one's options and
 *   grant, whichever answer comes first.
 * - Tens of thousands of filters are fine: finding, subscribing, settling
 *   and unsubscribing one costs the same however many the client holds.
 *
 * Returns the packet id (> 0) when the packet was handed to the connection
 * in this call, 0 when the request waits (disconnected, or idempotent), or
 * a negative error, with cb never called: UVMQTT_EINVAL (NULL client,
 * filter or array, count 0 or above 65535 or above the limit of
 * uvmqtt_options_set_max_filters; with uvmqtt_subscribe_many also
 * reserved option bits, Retain Handling 3, or v5 options on 3.x),
 * UVMQTT_EFILTER (an invalid filter; No Local on a $share/ filter),
 * UVMQTT_EQOS, UVMQTT_EUTF8 (a property string), UVMQTT_ECLOSED (the
 * client is closing), UVMQTT_ENOMEM, or an encoding error of the session
 * (UVMQTT_ETOOBIG). cb (may be NULL) fires exactly once with a
 * uvmqtt_sub_result_t. Filters and properties are copied. */
UVMQTT_EXTERN int uvmqtt_subscribe(uvmqtt_client_t *c, const char *filter,
                                   int qos, uvmqtt_subscribe_cb cb, void *arg);
/** Several filters in one SUBSCRIBE, with v5 options in each entry's
 * `options` byte and optional properties (e.g. subscription identifier;
 * not kept for re-subscribing). */
UVMQTT_EXTERN int uvmqtt_subscribe_many(uvmqtt_client_t *c,
                                        const uvmqtt_subscription_t *subs,
                                        size_t count,
                                        const uvmqtt_props_t *props,
                                        uvmqtt_subscribe_cb cb, void *arg);
/** @{ */
/** Unsubscribes: the client forgets the filters at once (they are not
 * re-subscribed) and the UNSUBSCRIBE is sent as described above. Errors
 * as uvmqtt_subscribe. */
UVMQTT_EXTERN int uvmqtt_unsubscribe(uvmqtt_client_t *c, const char *filter,
                                     uvmqtt_subscribe_cb cb, void *arg);
UVMQTT_EXTERN int uvmqtt_unsubscribe_many(uvmqtt_client_t *c,
                                          const char *const *filters,
                                          size_t count,
                                          const uvmqtt_props_t *props,
                                          uvmqtt_subscribe_cb cb, void *arg);
/** @} */

/* ---- fleets: reconnect policy, statistics, throttling, herd control ----- */

/** What a client does when another connection takes its client id over:
 * the broker says so (v5 DISCONNECT reason 0x8E, reported as
 * UVMQTT_ETAKENOVER), or connections keep closing without a reason right
 * after CONNACK (reported as UVMQTT_ESHORTLIVED once `suspect_after` such
 * losses came in a row; the usual sign in MQTT 3.1.1, and with brokers
 * that send no DISCONNECT on a takeover, as mosquitto 2.0 does). */
typedef enum {
  /** Default: on UVMQTT_ETAKENOVER stop reconnecting (the other holder of
   * the id is as legitimate as we are; fighting back makes two clients
   * knock each other off for ever). The disconnect callback gets the
   * status; uvmqtt_client_connect() starts again. */
  UVMQTT_TAKEOVER_STOP = 0,
  /** Keep trying, at the maximum reconnect delay. */
  UVMQTT_TAKEOVER_BACKOFF = 1,
  /** Keep trying with the normal backoff (the pre-0.2 behaviour). */
  UVMQTT_TAKEOVER_RETRY = 2
} uvmqtt_takeover_t;

/** The reconnect policy beyond uvmqtt_options_set_reconnect():
 * - stable_ms (default 30000): the backoff starts over only after a
 *   connection stayed up this long, and at least the longest delay
 *   (max_ms * (1 + jitter) + min_ms: a rival with our id may have waited
 *   that long); a connection lost sooner continues the
 *   backoff where it was, so a broker that accepts and then closes at once
 *   sees the delays grow instead of a reconnect a second. The first delay
 *   after losing a connection that was stable is random in [0, min_ms],
 *   so clients that lost one broker together do not all return at once.
 * - suspect_after (default 3, 0 = never): closes without a reason (EOF,
 *   reset) before stable_ms, in a row, after which the loss is reported
 *   as UVMQTT_ESHORTLIVED and the next delay is the maximum. Reconnecting
 *   goes on: it is a guess (the broker may also reject us after connect).
 * - on_takeover (default UVMQTT_TAKEOVER_STOP): see uvmqtt_takeover_t.
 * Errors: UVMQTT_EINVAL (o NULL, suspect_after > 255, unknown
 * on_takeover), UVMQTT_ENOMEM. */
UVMQTT_EXTERN int uvmqtt_options_set_reconnect_policy(uvmqtt_options_t *o,
                                                      unsigned stable_ms,
                                                      unsigned suspect_after,
                                                      int on_takeover);

/** Outgoing rate limit: at most msgs_per_s PUBLISH packets and bytes_per_s
 * payload+topic bytes per second (0 = no limit for that one), with bursts
 * (0 = a tenth of a second's worth). Messages over the limit wait in the
 * queue and count as queued (max_queued and its policy apply); no timer is
 * armed per message. Acknowledgements, pings and subscriptions are never
 * held back. Errors: UVMQTT_EINVAL (o NULL), UVMQTT_ENOMEM. */
UVMQTT_EXTERN int uvmqtt_options_set_rate_limit(uvmqtt_options_t *o,
                                                unsigned msgs_per_s,
                                                unsigned msg_burst,
                                                unsigned bytes_per_s,
                                                unsigned byte_burst);

/** Count statistics from the client's creation (otherwise from the first
 * uvmqtt_client_stats() call). Costs one small allocation per client.
 * Errors: UVMQTT_EINVAL (o NULL), UVMQTT_ENOMEM. */
UVMQTT_EXTERN int uvmqtt_options_set_stats(uvmqtt_options_t *o, bool on);

/** Per-connection statistics. Counts run from the client's creation with
 * uvmqtt_options_set_stats(), else from the first uvmqtt_client_stats()
 * call (since_ms says when, in uv_now() time); gauges are current. Traffic
 * counts every connection: MQTT bytes, without TLS and WebSocket framing. */
typedef struct {
  uint64_t since_ms;  /**< when counting started (uv_now() time) */
  uint64_t bytes_in;  /**< MQTT bytes received */
  uint64_t bytes_out; /**< MQTT bytes sent */
  /** Packets received by MQTT packet type: index 1 CONNECT to 15 AUTH
   * (index 0 unused). */
  uint64_t packets_in[16];
  uint64_t packets_out[16]; /**< packets sent, indexed as packets_in */
  /** PUBLISH packets sent by QoS (first transmissions only). */
  uint64_t published[3];
  uint64_t republished; /**< PUBLISH packets sent again (DUP set) */
  /** Messages handed to the application by QoS (after QoS 2
   * de-duplication). */
  uint64_t delivered[3];
  /** Outgoing messages completed: acknowledged (QoS 0: written). */
  uint64_t completed;
  uint64_t
      dropped; /**< failed: dropped by the queue policy (UVMQTT_EDROPPED) */
  uint64_t expired; /**< failed: expired (UVMQTT_EEXPIRED) */
  /** Failed: refused by the broker (UVMQTT_EREJECTED). */
  uint64_t refused;
  /** Failed for any other reason (session lost, client closed). */
  uint64_t failed;
  /** The v5 reason code of the last refusal counted in `refused`. */
  uint8_t last_refused_reason;
  uint64_t attempts; /**< connection attempts started */
  uint64_t connects; /**< connections accepted (CONNACK 0) */
  /** Connections accepted after the first. */
  uint64_t reconnects;
  /** The error that ended the last connection or attempt (0 when none). */
  int last_error;
  /** Time connected in all, the current connection included, in ms. */
  uint64_t connected_ms;
  /** The current connection's age in ms (0 when not connected). */
  uint64_t connection_age_ms;
  /** Gauge: messages in flight (sent, not acknowledged). */
  uint32_t inflight;
  /** Gauge: messages waiting in the queue (those held back by the rate
   * limit included). */
  uint32_t queued;
  /** Gauge: of the queued messages, those held back by the rate limit
   * right now. */
  uint32_t throttled;
  /** Gauge: incoming QoS 2 messages the broker has not released yet
   * (PUBREC sent, PUBREL not received). */
  uint32_t unreleased;
  /** Gauge: messages delivered and not yet acknowledged by the
   * application (manual acknowledgement, uvmqtt_client_get_unacked). */
  uint32_t unacked;
  /** Keepalive round trip (PINGREQ to PINGRESP), last sample, in
   * microseconds; 0 before the first. */
  uint32_t rtt_last_us;
  /** The round trip smoothed (1/8 weight per sample, as TCP's SRTT), in
   * microseconds. */
  uint32_t rtt_smoothed_us;
  uint32_t rtt_max_us; /**< the largest round trip, in microseconds */
  /** Time reading was held paused while connected (uvmqtt_client_pause,
   * or the manual acknowledgement limits), in ms. */
  uint64_t paused_ms;
} uvmqtt_client_stats_t;

/** Fills *st. The first call on a client without uvmqtt_options_set_stats()
 * starts counting (and allocates the counters, about 540 bytes); a client
 * that never asks pays nothing. Loop thread only.
 * Errors: UVMQTT_EINVAL (NULL argument), UVMQTT_ENOMEM (first call). */
UVMQTT_EXTERN int uvmqtt_client_stats(uvmqtt_client_t *c,
                                      uvmqtt_client_stats_t *st);

/** Everything the clients on one loop do together, for a gateway's
 * dashboard. Always counted (a few additions per read and write). */
typedef struct {
  uint32_t clients;   /**< open clients on the loop */
  uint32_t connected; /**< with an accepted connection now */
  /** Herd control: connection attempts in progress now. */
  uint32_t attempts_active;
  uint32_t attempts_waiting;     /**< attempts waiting for a slot now */
  uint32_t attempt_limit;        /**< the limit (0: none) */
  uint32_t attempts_active_max;  /**< the largest attempts_active seen */
  uint32_t attempts_waiting_max; /**< the largest attempts_waiting seen */
  uint64_t attempts;             /**< connection attempts started */
  uint64_t connects;             /**< connections accepted */
  uint64_t losses;               /**< accepted connections lost */
  uint64_t takeovers; /**< UVMQTT_ETAKENOVER and UVMQTT_ESHORTLIVED reported */
  uint64_t bytes_in;  /**< MQTT bytes received */
  uint64_t bytes_out; /**< MQTT bytes sent */
  uint64_t published; /**< messages sent, all QoS */
  uint64_t delivered; /**< messages delivered, all QoS */
} uvmqtt_loop_stats_t;

/** Fills *st for the clients on `loop` (zeros when none was ever created
 * on it). Loop thread only. Errors: UVMQTT_EINVAL. */
UVMQTT_EXTERN int uvmqtt_loop_stats(uv_loop_t *loop, uvmqtt_loop_stats_t *st);

/** Herd control: at most `limit` connection attempts (TCP connect, TLS and
 * WebSocket handshakes, CONNECT until CONNACK) in progress at once among
 * the clients on `loop`; the others wait, first come first served, and
 * start as slots free. Many clients reconnecting at once (a broker
 * restart) otherwise overflow the broker's listen backlog, and the
 * dropped SYNs wait a second for retransmission. Default 64; 0 = no
 * limit. Takes effect for attempts that start afterwards (and lets
 * waiting ones start when raised). Waiting for a slot does not count
 * against the connect timeout. The setting lives in the loop's
 * context, which exists while at least one client is open on the loop:
 * call it after creating the first. Loop thread only. Errors:
 * UVMQTT_EINVAL (loop NULL), UVMQTT_ESTATE (no client on the loop). */
UVMQTT_EXTERN int uvmqtt_loop_set_attempt_limit(uv_loop_t *loop,
                                                unsigned limit);

/* ---- routes (Paho's message_callback_add) -------------------------------- */

/** @{ */
/** Routes: uvmqtt_route_add() calls `cb` for incoming messages whose topic
 * matches `filter` (a second add of the same filter replaces its callback
 * and arg); uvmqtt_route_remove() removes the route of that filter. Every
 * route whose filter matches an incoming topic is called, in the router's
 * documented order (uvmqtt/router.h); when none matches, the default
 * message callback is. Routes may be added or removed from inside
 * callbacks. Errors: UVMQTT_EINVAL (NULL client or filter, or NULL cb for
 * add), UVMQTT_EFILTER (an invalid filter), UVMQTT_ENOENT (remove: no such
 * route), UVMQTT_ENOMEM. Loop thread only. */
UVMQTT_EXTERN int uvmqtt_route_add(uvmqtt_client_t *c, const char *filter,
                                   uvmqtt_message_cb cb, void *arg);
UVMQTT_EXTERN int uvmqtt_route_remove(uvmqtt_client_t *c, const char *filter);
/** @} */

#ifdef __cplusplus
}
#endif
#endif
