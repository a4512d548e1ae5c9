/** @file
 * uvmqtt helpers: one-shot publishing and subscribing, and calling in from
 * other threads.
 *
 * - One-shot publishing (Paho's publish.single / publish.multiple): connect,
 *   publish, wait until every message is complete at its QoS, disconnect,
 *   close, report once. An asynchronous form runs on the caller's loop; a
 *   blocking form runs a private loop for programs that do not run libuv.
 * - One-shot subscribing (Paho's subscribe.simple / subscribe.callback):
 *   connect, subscribe, collect N messages (or hand each to a callback
 *   until stopped), disconnect, close, report once.
 * - The thread-safe bridge: uvmqtt_client_publish_threadsafe() is the one
 *   function of the library that may be called from any thread.
 * - A loop thread (Paho's loop_start / loop_stop) for programs that have no
 *   loop of their own.
 *
 * Include it through uvmqtt.h.
 */
#ifndef UVMQTT_HELPERS_H
#define UVMQTT_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "uvmqtt/codec.h"
#include "uvmqtt/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Forward declarations of uvmqtt.h's types, so this header stands alone
 * (documented there). */
/** @cond */
typedef struct uvmqtt_client_s uvmqtt_client_t;
typedef struct uvmqtt_options_s uvmqtt_options_t;
typedef struct uvmqtt_pub_result_s uvmqtt_pub_result_t;
typedef void (*uvmqtt_publish_cb)(uvmqtt_client_t *c,
                                  const uvmqtt_pub_result_t *r, void *arg);
typedef struct uvmqtt_message_s uvmqtt_message_t;
typedef void (*uvmqtt_message_cb)(uvmqtt_client_t *c,
                                  const uvmqtt_message_t *msg, void *arg);
/** @endcond */

/* ---- one-shot publishing ------------------------------------------------ */

/** One message of uvmqtt_publish_multiple(). Everything is copied before the
 * call returns. */
typedef struct {
  const char *topic;           /**< the topic name, NUL-terminated */
  const void *payload;         /**< may be NULL when payload_len is 0 */
  size_t payload_len;          /**< the payload's length in bytes */
  int qos;                     /**< 0, 1 or 2 */
  bool retain;                 /**< the retain flag */
  const uvmqtt_props_t *props; /**< v5 PUBLISH properties, may be NULL */
} uvmqtt_oneshot_msg_t;

/** The one-shot publish finished. status is 0 when every message completed
 * at its QoS (QoS 0 written, QoS 1 PUBACK, QoS 2 PUBCOMP), else the first
 * error: the connect failure (UVMQTT_EREFUSED, a libuv error such as
 * UV_ECONNREFUSED, a DNS or TLS error, UVMQTT_ETIMEDOUT) or the first
 * failed message's status. It runs on the loop thread, after the client
 * used for the job has been closed. */
typedef void (*uvmqtt_oneshot_cb)(int status, void *arg);

/** Connects to `uri` (as uvmqtt_client_connect_uri()) with a client made
 * from `opts` (NULL: defaults; copied, may be deleted right after),
 * publishes msgs[0 .. n) in order, waits for every completion, sends
 * DISCONNECT, closes the client and calls cb(status, arg) once.
 *
 * A failure of the FIRST connection attempt ends the job (it is not
 * retried, whatever `opts` says about reconnecting); after a successful
 * CONNACK, connection losses are handled as the client always does
 * (reconnect and resend), so the job ends only when every message is
 * complete or has failed; with reconnecting turned off in `opts`, a lost
 * connection ends the job with its cause (messages not yet acknowledged
 * may or may not have reached the broker). The connect timeout of `opts`
 * bounds the first attempt.
 *
 * Returns 0 (cb will fire) or, with nothing started and cb never called:
 * UVMQTT_EINVAL (NULL loop, uri, msgs or cb, or n == 0), UVMQTT_EURI,
 * UVMQTT_ENOTSUP, UVMQTT_ETOPIC, UVMQTT_EQOS, UVMQTT_ECLIENTID,
 * UVMQTT_ENOMEM, UVMQTT_EQUEUEFULL (more messages than the queue of
 * `opts` holds). Must be called on the loop's thread. */
UVMQTT_EXTERN int
uvmqtt_publish_multiple(uv_loop_t *loop, const uvmqtt_options_t *opts,
                        const char *uri, const uvmqtt_oneshot_msg_t *msgs,
                        size_t n, uvmqtt_oneshot_cb cb, void *arg);

/** uvmqtt_publish_multiple() with one message. */
UVMQTT_EXTERN int uvmqtt_publish_single(uv_loop_t *loop,
                                        const uvmqtt_options_t *opts,
                                        const char *uri, const char *topic,
                                        const void *payload, size_t len,
                                        int qos, bool retain,
                                        uvmqtt_oneshot_cb cb, void *arg);

/** @{ */
/** Blocking forms: run the job on a private loop in the calling thread and
 * return its status (the cb status above, or a start error). They never
 * touch the caller's loops and may be called from any thread. */
UVMQTT_EXTERN int uvmqtt_publish_multiple_sync(const uvmqtt_options_t *opts,
                                               const char *uri,
                                               const uvmqtt_oneshot_msg_t *msgs,
                                               size_t n);
UVMQTT_EXTERN int uvmqtt_publish_single_sync(const uvmqtt_options_t *opts,
                                             const char *uri, const char *topic,
                                             const void *payload, size_t len,
                                             int qos, bool retain);
/** @} */

/* ---- one-shot subscribing ----------------------------------------------- */

/** The messages collected by uvmqtt_subscribe_simple, in arrival order:
 * msgs[0 .. count) are valid during the call only (copy one with
 * uvmqtt_message_copy to keep it). status 0 when `count` messages arrived,
 * else the error that ended the job (as uvmqtt_oneshot_cb; also
 * UVMQTT_EREJECTED when the broker refused a subscription), with the
 * messages collected until then. Runs on the loop thread, after the job's
 * client has been closed. */
typedef void (*uvmqtt_collect_cb)(int status,
                                  const uvmqtt_message_t *const *msgs,
                                  size_t count, void *arg);

/** Paho's subscribe.simple: connects to `uri` with a client made from `opts`
 * (NULL: defaults; copied), subscribes to filters[0 .. nfilters) at `qos`,
 * collects the first `count` messages (retained ones included when
 * `retained` is true, else skipped), sends DISCONNECT, closes the client
 * and calls cb once. Connection failures are handled as by
 * uvmqtt_publish_multiple: the first attempt decides; after a CONNACK the
 * client reconnects (and re-subscribes) as it always does.
 * Returns 0 (cb will fire) or, with nothing started and cb never called:
 * UVMQTT_EINVAL (NULL loop, uri, filters, a filter or cb; nfilters or
 * count 0), UVMQTT_EFILTER, UVMQTT_EQOS, UVMQTT_EURI, UVMQTT_ENOTSUP,
 * UVMQTT_ECLIENTID, UVMQTT_ENOMEM, UVMQTT_ETLS_FILE. Loop thread only. */
UVMQTT_EXTERN int
uvmqtt_subscribe_simple(uv_loop_t *loop, const uvmqtt_options_t *opts,
                        const char *uri, const char *const *filters,
                        size_t nfilters, int qos, size_t count, bool retained,
                        uvmqtt_collect_cb cb, void *arg);

/** Blocking form on a private loop (any thread): returns the number of
 * messages (count, at most INT_MAX) and *msgs, an array the caller frees
 * with uvmqtt_messages_free(*msgs, n); or a negative error (the job's
 * status or a start error; *msgs is then NULL). */
UVMQTT_EXTERN int uvmqtt_subscribe_simple_sync(const uvmqtt_options_t *opts,
                                               const char *uri,
                                               const char *const *filters,
                                               size_t nfilters, int qos,
                                               size_t count, bool retained,
                                               uvmqtt_message_t ***msgs);
/** Frees what uvmqtt_subscribe_simple_sync returned; NULL is a no-op. */
UVMQTT_EXTERN void uvmqtt_messages_free(uvmqtt_message_t **msgs, size_t n);

/** A running uvmqtt_subscribe_callback job. */
typedef struct uvmqtt_sub_job_s uvmqtt_sub_job_t;

/** Paho's subscribe.callback: as uvmqtt_subscribe_simple, but every message
 * goes to msg_cb(client, msg, arg) (the message is a view valid during the
 * call) until uvmqtt_subscribe_callback_stop(); then the client
 * disconnects and closes and done_cb(status, arg) fires once: 0 after a
 * stop, else the error that ended the job (the first connection attempt
 * failed, a subscription was refused: UVMQTT_EREJECTED, the connection was
 * lost without reconnect). *out is the job, valid until done_cb has run.
 * Errors as uvmqtt_subscribe_simple (NULL msg_cb, done_cb or out:
 * UVMQTT_EINVAL). Loop thread only. */
UVMQTT_EXTERN int
uvmqtt_subscribe_callback(uv_loop_t *loop, const uvmqtt_options_t *opts,
                          const char *uri, const char *const *filters,
                          size_t nfilters, int qos, bool retained,
                          uvmqtt_message_cb msg_cb, uvmqtt_oneshot_cb done_cb,
                          void *arg, uvmqtt_sub_job_t **out);
/** Stops the job (from any callback too; takes effect after it returns):
 * no message is handed over afterwards, and done_cb fires with 0 once the
 * client is closed. A second call, or NULL, is a no-op; calling it after
 * done_cb ran is not allowed. Loop thread only. */
UVMQTT_EXTERN void uvmqtt_subscribe_callback_stop(uvmqtt_sub_job_t *job);

/* ---- calling in from other threads --------------------------------------- */

/** A client's thread-safe bridge: a uv_async_t and a mutex-protected queue
 * through which other threads hand messages to the client. */
typedef struct uvmqtt_bridge_s uvmqtt_bridge_t;
/** Called once a bridge has closed (uvmqtt_bridge_close()). */
typedef void (*uvmqtt_bridge_close_cb)(uvmqtt_bridge_t *b, void *arg);

/** Creates the bridge of client `c`. MUST be called on the loop thread (or
 * before the loop runs). A client has at most one bridge. Errors:
 * UVMQTT_EINVAL, UVMQTT_EEXIST (the client has one), UVMQTT_ENOMEM, or a
 * libuv error from uv_async_init. */
UVMQTT_EXTERN int uvmqtt_bridge_new(uvmqtt_client_t *c, uvmqtt_bridge_t **out);

/** Closes the bridge, on the loop thread. From this call on, new
 * uvmqtt_client_publish_threadsafe() calls for the client fail with
 * UVMQTT_ECLOSED; messages already accepted are handed to the client
 * (their callbacks fire as usual). cb (may be NULL) fires once the
 * uv_async_t is closed; the bridge's memory is freed after it returns.
 * Close the bridge before closing its client. */
UVMQTT_EXTERN void uvmqtt_bridge_close(uvmqtt_bridge_t *b,
                                       uvmqtt_bridge_close_cb cb, void *arg);

/** THE thread-safe entry point: may be called from ANY thread, including the
 * loop thread, while the client's bridge exists (see uvmqtt_bridge_new).
 *
 * Copies `topic` and payload[0 .. len) into a node, queues it for the loop
 * thread and wakes the loop (uv_async_send). On the loop thread the message
 * is passed to uvmqtt_publish(); cb (may be NULL) then fires exactly once,
 * ON THE LOOP THREAD, as for uvmqtt_publish() — also when uvmqtt_publish()
 * refuses the message there (for instance UVMQTT_EQUEUEFULL when producers
 * outrun the client's queue limits; the packet id is 0 then). Messages
 * from one thread are published in the order they were queued.
 *
 * Returns 0 (cb will fire) or, with cb never called: UVMQTT_EINVAL,
 * UVMQTT_ETOPIC, UVMQTT_EQOS, UVMQTT_ENOMEM, UVMQTT_ECLOSED (the client has
 * no open bridge). The allocator hooks (uvmqtt_replace_allocator) must be
 * thread-safe when this function is used. */
UVMQTT_EXTERN int
uvmqtt_client_publish_threadsafe(uvmqtt_client_t *c, const char *topic,
                                 const void *payload, size_t len, int qos,
                                 bool retain, uvmqtt_publish_cb cb, void *arg);

/* ---- a loop in its own thread -------------------------------------------- */

/** A thread running a loop (opaque; uvmqtt_thread_start()). */
typedef struct uvmqtt_thread_s uvmqtt_thread_t;

/** Starts a thread that runs `loop` (Paho's loop_start). From then on the
 * loop belongs to that thread: other threads reach it only through
 * uvmqtt_client_publish_threadsafe() and uvmqtt_thread_call(). The thread
 * keeps the loop alive even when it has no other handle. Call it on the
 * thread that owned the loop so far, while the loop is not running.
 * Errors: UVMQTT_EINVAL, UVMQTT_ENOMEM, libuv errors. */
UVMQTT_EXTERN int uvmqtt_thread_start(uv_loop_t *loop, uvmqtt_thread_t **out);

/** Runs fn(arg) on the loop thread and waits until it has returned (fn runs
 * between two loop iterations, so it may call any uvmqtt function). Called
 * on the loop thread itself it runs fn at once. Returns 0, UVMQTT_EINVAL or
 * UVMQTT_ECLOSED (the thread is stopping). */
UVMQTT_EXTERN int uvmqtt_thread_call(uvmqtt_thread_t *t, void (*fn)(void *arg),
                                     void *arg);

/** Stops the thread (Paho's loop_stop): the loop stops after its current
 * iteration, the thread is joined, and the loop returns to the caller,
 * who may run it again (for instance to close clients). Handles the loop
 * still has are left as they are. Frees `t`. Must not be called from the
 * loop thread. Returns 0 or UVMQTT_EINVAL. */
UVMQTT_EXTERN int uvmqtt_thread_stop(uvmqtt_thread_t *t);

#ifdef __cplusplus
}
#endif
#endif
