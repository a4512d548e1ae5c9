/* Private to the client layer (src/client/): the client struct and the
 * blocks it points to (options core and rarely set options, connection
 * attempt, rare state, routes, subscriptions, v5 requests), the per-loop
 * context, the connection states, ENTER/LEAVE, and the functions the
 * client's files share. The public API is include/uvmqtt.h; a helper used
 * by one file only stays static in that file.
 *
 * Re-entrancy rule: every entry from libuv goes through ENTER/LEAVE. Work
 * that tears state down (close, disconnect, a fatal protocol error) is
 * recorded while inside and carried out by LEAVE once the outermost entry
 * returns, so user callbacks may call any API function. */
#ifndef UVMQTT_CLIENT_INT_H
#define UVMQTT_CLIENT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client/backoff.h"
#include "client/herd.h"
#include "client/stats.h"
#include "client/throttle.h"
#include "resolve/resolve.h"
#include "session/session.h"
#include "transport/transport.h"
#include "uvmqtt.h"
#include "uvmqtt_config.h"

/* Broker schemes, then the proxy schemes uvmqtt_options_set_proxy() takes
 * (never a broker's). For the unix schemes the host is the socket path. */
enum scheme {
  S_MQTT = 0,
  S_MQTTS,
  S_WS,
  S_WSS,
  S_UNIX,    /* unix:///path, unix://@abstract */
  S_WS_UNIX, /* ws+unix:///path */
  S_PROXY_HTTP,
  S_PROXY_SOCKS5,  /* names resolved here */
  S_PROXY_SOCKS5H, /* names resolved by the proxy */
};

/* A server as parsed, and as read back by uvmqtt__server_at(). */
typedef struct {
  char *host;
  char *path; /* ws request path */
  char *user;
  char *pass;
  uint16_t port; /* 0: default for the scheme */
  uint8_t scheme;
  bool has_user, has_pass;
} server_spec_t;

/* A client's servers are one allocation: the array, then the strings.
 * An entry's strings are consecutive (host, path, user, pass: those it
 * has, as its flags say), starting at `strs` from the block's start, so
 * an entry is 8 bytes. See uvmqtt__servers_pack(). */
enum {
  SV_HOST = 1, /* string present */
  SV_PATH = 2,
  SV_USER = 4,
  SV_PASS = 8,
  SV_HAS_USER = 16, /* server_spec_t's has_user, has_pass */
  SV_HAS_PASS = 32,
};
typedef struct {
  uint32_t strs;
  uint16_t port;
  uint8_t scheme;
  uint8_t flags; /* SV_* */
} server_t;

/* The block: how many servers, the one being tried, the entries, then
 * their strings. */
typedef struct {
  uint16_t n, cur;
  server_t v[];
} server_list_t;

/* Options most clients leave at their defaults live in a block allocated
 * when first set: a client's copy of the options is then only the core. */
typedef struct {
  char *username;
  uint8_t *password;
  size_t password_len;
  char *will_topic;
  uint8_t *will_payload;
  size_t will_len;
  uvmqtt_props_t *will_props;
  uvmqtt_props_t *connect_props;
  char *bind;
  const uvmqtt_tls_config_t *tls;
  char *ws_path;
  char **ws_headers;
  size_t ws_header_count;
  char *dns_servers;
  char *proxy; /* URL, checked when set; parsed for each attempt */
  char *auth_method;
  uint8_t *auth_data;
  size_t auth_data_len;
  uint32_t session_expiry;
  unsigned dns_timeout;
  unsigned linger_ms;   /* graceful disconnect: wait for the broker's close */
  uint32_t max_unacked; /* manual ack: hold reading at this many */
  size_t max_unacked_bytes;
  /* Fleet behaviour (docs/fleet.md): reconnect policy, rate limit,
   * statistics from creation. */
  unsigned rc_stable_ms;
  uint32_t rate_msgs, rate_msg_burst, rate_bytes, rate_byte_burst;
  uint8_t rc_suspect_after;
  uint8_t rc_on_takeover;
  bool stats_on;
  int will_qos;
  uint16_t topic_alias_in;
  uint16_t max_filters; /* per SUBSCRIBE / UNSUBSCRIBE; 0: no limit */
  uint16_t receive_max;
  bool has_session_expiry;
  bool has_password;
  bool will_retain;
  bool tls_for_tcp;
  bool topic_alias_auto;
  bool request_response_info;
  bool follow_redirects;
  uint8_t durability;    /* uvmqtt_durability_t, with store */
  uvmqtt_store_t *store; /* shared, not owned */
  bool manual_ack;
  bool record_first; /* QoS 2 recorded before delivery (with store) */
  bool proxy_env;    /* take a proxy from the environment */
} opt_ext_t;

/* Every rarely set option at its default (options.c). */
extern const opt_ext_t uvmqtt__opt_ext_defaults;

/* The options a client reads after its creation; a client keeps only
 * these (the rest went to the session, the id to the client). */
typedef struct {
  opt_ext_t *x; /* NULL: every field in it has its default */
  float jitter; /* in [0, 1]: a float is precise enough for a random factor */
  uint32_t max_packet_size;
  unsigned rc_min, rc_max;
  unsigned connect_timeout;
  uint16_t keepalive;
  uint8_t version;
  bool empty_id : 1;
  bool clean : 1;
  bool reconnect : 1;
  bool nodelay : 1;
  bool resubscribe : 1;
} copts_t;

struct uvmqtt_options_s {
  copts_t k;
  char *client_id;
  size_t max_queued, max_queued_bytes;
  uint16_t max_inflight;
  uint8_t queue_policy;
};

/* Reading the rarely set options: the defaults when none was set. */
#define OX(k) ((const opt_ext_t *)((k)->x ? (k)->x : &uvmqtt__opt_ext_defaults))
#define CX(c) OX(&(c)->o)

/* A subscription the client holds (subs.c): pending (SUB_PENDING) until
 * the answer to the latest queued SUBSCRIBE request naming its filter (its
 * owner) settles it; active otherwise. `options` keeps the SUBSCRIBE
 * options in bits 0-5 and, once active, the granted QoS in the reserved
 * bits 6-7. While the client holds few, the records are in a list and the
 * owner is found in the (short) request queue; past that they are in the
 * hash table of subs_big_t, which needs no `next`, and the same 8 bytes
 * hold the owner's seq and the record's rank instead. Allocated as
 * offsetof(sub_t, filter) + len (12 + len: the same malloc chunk as before it
 * had a state, for most filters). */
typedef struct sub_s {
  union {
    struct sub_s *next; /* in the list (newest first) */
    struct {
      uint32_t owner; /* the owner's seq, 0 when active */
      uint32_t rank;  /* order of subscription, for re-subscribing */
    } t;              /* in the table */
  } u;
  uint16_t len; /* filters are at most UVMQTT_TOPIC_MAX bytes */
  uint8_t options;
  uint8_t state; /* SUB_PENDING, SUB_WAITED (subs.c) */
  char filter[];
} sub_t;
#define SUB_GRANTED_SHIFT 6

/* A subscribe / unsubscribe request of the application or the client
 * (re-subscribing), queued until answered: sent when connected, sent again
 * after a reconnect, completed with UVMQTT_ECLOSED on close. A SOP_WAIT
 * request sends nothing: it waits for identical pending subscriptions.
 * One allocation: the struct, v[count], codes[count] (SOP_WAIT), then the
 * filter bytes. */
enum { SOP_SUB = 0, SOP_UNSUB, SOP_WAIT };
typedef struct sop_s {
  struct sop_s *next;
  uvmqtt_subscribe_cb cb;
  void *arg;
  uvmqtt_props_t *props; /* a deep copy, or NULL */
  /* SOP_WAIT: the result being assembled; SOP_SUB: for each filter, the
   * options of the active subscription it replaces and 1, or 0 and 0 */
  uint8_t *codes;
  size_t count;
  uint32_t seq;       /* unique among live requests, never 0 */
  uint16_t packet_id; /* of the packet on this connection */
  uint8_t kind;
  bool sent; /* on this connection */
  uvmqtt_subscription_t v[];
} sop_t;

/* A client holding many subscriptions or queued requests (subs.c), in its
 * rare block: the subscriptions in an open-addressing hash table (slot
 * NULL: empty; SUBS_TOMB: a forgotten one), and the request queue's last
 * request, so that finding, adding, settling and forgetting a filter, and
 * queueing a request, take constant time however many there are. */
typedef struct subs_big_s {
  sub_t **slot; /* NULL: the subscriptions are still in the list */
  uint32_t cap; /* a power of two */
  uint32_t n, tombs;
  uint32_t rank; /* the next record's sub_t.u.t.rank */
  sop_t *tail;   /* the last queued request, NULL: none */
} subs_big_t;

/* Route values live in a list too: the router does not free them. */
typedef struct route_s {
  struct route_s *next, *prev;
  uvmqtt_message_cb cb;
  void *arg;
} route_t;

/* A v5 request waiting for its correlated response. */
typedef struct req_s {
  struct req_s *next;
  uvmqtt_response_cb cb;
  void *arg;
  uint64_t deadline;
  uint8_t corr[16];
  bool answered;  /* cb has fired */
  bool published; /* the request's publish callback has fired */
} req_t;

enum cstate {
  C_IDLE = 0,  /* not connected, not trying */
  C_WAIT,      /* waiting to (re)connect */
  C_RESOLVING, /* name or SRV lookup */
  C_TRANSPORT, /* tcp connect, TLS / WebSocket handshakes */
  C_MQTT,      /* CONNECT sent */
  C_CONNECTED, /* CONNACK accepted */
  C_LEAVING,   /* DISCONNECT sent, half-closed, draining (leave_t) */
  C_CLOSING,
};

/* State of a connection attempt (resolving, the transport handshakes,
 * CONNECT until CONNACK), allocated when one starts and freed once the
 * client is connected, or closed: a connected client does not carry it. */
typedef struct {
  /* Herd control: waiting for, or holding, one of the loop's attempt
   * slots (loop.c). Node first: the loop finds the attempt from it. */
  uvmqtt__herd_node_t herd;
  uvmqtt_client_t *client;
  bool has_slot;
  bool granted; /* the slot came after waiting: start without asking the
                   pre-connect hook again */
  uvmqtt_stream_t *opening; /* the stack being built */
  struct sockaddr_storage *addrs;
  uvmqtt_resolver_t *resolver;
  uvmqtt_resolve_req_t *resolve_req;
  uint64_t deadline;
  uint32_t naddrs, cur_addr;
  int last_error;
  int16_t http_status; /* of the last refused WebSocket upgrade or CONNECT */
  /* The transport stack being built (stack.c), in the space an int took:
   * the layer kinds to stack over the socket (a bit each; their order is
   * fixed) and the kind being opened (0: the socket). */
  uint8_t plan;
  uint8_t layer;
} attempt_t;

/* The proxy of the current attempt (stack.c), allocated only when there
 * is one and hung off the rare block: a client without a proxy does not
 * pay for it, even while connecting. */
typedef struct {
  server_spec_t proxy;  /* strings owned */
  bool target_resolved; /* socks5: the broker's address is in target */
  char target[46];      /* INET6_ADDRSTRLEN */
} proxy_attempt_t;

/* A graceful goodbye (delivery.c): asked for (input halted at once), then
 * started once the callbacks under way have returned (DISCONNECT queued
 * after their acknowledgements, our side half-closed), then read and
 * discarded until the broker closes or the linger time runs out. */
typedef struct {
  uvmqtt_props_t *props; /* v5 DISCONNECT properties (copied) */
  uint64_t deadline;
  uint8_t reason;
  bool started;
  bool done;  /* the stream may close */
  bool close; /* uvmqtt_client_close() waits for it */
} leave_t;

/* uvmqtt_client_disconnect_drain() (delivery.c), allocated by the first
 * drain and kept (with its timer) until the client closes. */
typedef struct drain_s {
  uv_timer_t timer; /* the first check, then the deadline */
  uvmqtt_drain_cb cb;
  void *arg;
  uint64_t deadline; /* 0: none */
  int status;
  bool draining; /* publishes refused */
  bool leaving;  /* done waiting: leaving, cb fires after */
} drain_t;

/* What few clients use, allocated on first use: an SRV domain, v5 request
 * / response, redirects, the TLS state, and the redirect and auth hooks
 * (allocated with every v5 client, the only ones where these hooks can
 * fire, so that their setters cannot fail). */
typedef struct {
  char *srv_domain;
  char *redirect_ref; /* Server Reference of a pending redirect */
  req_t *reqs;
  uv_timer_t *req_timer;
  uvmqtt_auth_cb auth_cb;
  void *auth_arg;
  uvmqtt_redirect_cb redirect_cb;
  void *redirect_arg;
  const uvmqtt_tls_config_t *tls_default; /* tls_default.c's, held */
  leave_t *leave;
  struct drain_s *drain; /* uvmqtt_client_disconnect_drain() */
  proxy_attempt_t *px;   /* while an attempt goes through a proxy */
  char *assigned_id;     /* v5: the broker's Assigned Client Identifier */
  int tls_err;           /* raw mbedTLS error of the last failed handshake */
  uint32_t tls_flags;
  unsigned redirects;        /* in a row, to stop loops */
  struct persist_s *persist; /* clients with a store (persist.c) */
  /* Statistics (asked for) and the outgoing rate limit (configured). */
  uvmqtt__cstats_t *stats;
  struct cthrottle_s *throttle;
  subs_big_t *subs_big; /* many subscriptions or requests (subs.c) */
} rare_t;

/* The outgoing rate limit of a client (dispatch.c gates the session's
 * queue with it; io.c resumes at `due`). */
typedef struct cthrottle_s {
  uvmqtt__throttle_t tb;
  uint64_t due; /* when the held-back message may go */
  bool blocked; /* the session's queue waits for `due` */
} cthrottle_t;

/* Routes: the table and the values it does not free, allocated with the
 * first route. */
typedef struct {
  uvmqtt_router_t *router;
  route_t *routes;
} routing_t;

struct uvmqtt_client_s {
  copts_t o;
  void *data;
  uvmqtt_connect_cb connect_cb;
  void *connect_arg;
  uvmqtt_disconnect_cb disconnect_cb;
  void *disconnect_arg;
  uvmqtt_message_cb message_cb;
  void *message_arg;
  uvmqtt_log_cb log_cb;
  void *log_arg;
  /* The pre-connect hook is never called once uvmqtt_client_close() was
   * (close_called), so the close callback takes its place. */
  union {
    uvmqtt_pre_connect_cb pre_connect_cb;
    uvmqtt_close_cb close_cb; /* valid once close_called */
  };
  void *pre_connect_arg;

  uvmqtt_session_t *session;
  routing_t *rt;
  sub_t *subs;    /* the subscriptions held (subs.c) */
  sop_t *sub_ops; /* requests not yet answered, in submission order */

  uvmqtt_stream_t *stream; /* top of the stack once open */
  server_list_t *servers;  /* NULL: none yet */
  attempt_t *at;
  rare_t *rare;

  /* The loop's shared timer and flush handle (see "the loop context"):
   * one deadline for the connect timeout, keepalive and reconnect delay,
   * and a place in the list of clients with output to flush. The loop is
   * found through it: lc->loop. */
  struct loop_ctx_s *lc;
  uint64_t due;      /* valid while heap_idx != 0 */
  uint32_t heap_idx; /* 1-based slot in lc->heap, 0: no deadline */
  uint32_t seq;      /* ties between equal deadlines: first armed first */
  struct uvmqtt_client_s *lnext, **lpprev; /* flush or closing list */
  unsigned writes;                         /* batches being written */
  uvmqtt__rc_t rc; /* reconnect policy state (backoff.h) */
  /* Small fields together, so the struct has no holes. */
  int16_t drop_status; /* error codes fit: libuv's and ours (> -32768) */
  uint16_t depth;
  uint8_t open_handles; /* the stream and a few timers */
  int8_t log_level;
  uint8_t state;
  uint8_t last_reason;
  bool srv_mode : 1;
  bool srv_done : 1;
  bool close_requested : 1;
  bool drop_requested : 1;
  bool user_disconnect : 1;
  bool freed_session : 1;
  bool disconnect_reported : 1; /* by ev_disconnect, for the drop under way */
  bool close_called : 1;        /* uvmqtt_client_close(): close_cb is set */
  char id[]; /* the client id we connect with (see uvmqtt__client_id()) */
};

/* The per-loop context (loop.c): one uv_timer_t and one uv_idle_t shared
 * by every client on a loop. */
typedef struct loop_ctx_s {
  struct loop_ctx_s *next; /* registry */
  uv_loop_t *loop;
  uv_timer_t timer;
  uv_idle_t idle;
  size_t refs;
  uvmqtt_client_t **heap; /* 1-based: heap[1] is the earliest */
  uint32_t n, cap;        /* cap >= refs: pushing never allocates */
  uint32_t seq;
  uint64_t armed; /* due of the running uv timer, UINT64_MAX: stopped */
  bool in_timer;  /* inside on_lc_timer: re-armed once at its end */
  uvmqtt_client_t *flush, *running, *closing;
  uvmqtt_client_t *last; /* completes after the handles closed */
  int handles_open;
  uint32_t in_msgs; /* messages delivered on this loop (wraps): per read */
  /* Bytes per message of the last read on this loop that had any (io.c):
   * the size a QoS 2 window's wait counts in. Per loop, not per
   * connection (no byte added to each client); a wrong guess only makes
   * one bounded wait longer or shorter. */
  uint16_t in_avg;
  bool dead; /* handles closed: freed by the last client after its close
               callback (uvmqtt__loop_free_dead) */
  /* Herd control and the loop's statistics (uvmqtt_loop_stats). */
  uvmqtt__herd_t herd;
  uvmqtt_loop_stats_t st;
} loop_ctx_t;

#define ENTER(c) ((c)->depth++)
#define LEAVE(c) uvmqtt__client_leave(c)

/* The loop's time in milliseconds. */
static inline uint64_t uvmqtt__client_now(uvmqtt_client_t *c) {
  return uv_now(c->lc->loop);
}

/* The effective client id: the one the broker assigned (v5, an empty id
 * in CONNECT), else the one in the client's own block. */
static inline const char *uvmqtt__client_id(const uvmqtt_client_t *c) {
  return c->rare && c->rare->assigned_id ? c->rare->assigned_id : c->id;
}

/* ---- client.c: lifecycle, accessors, logging */
/* The rare block, allocated on first use. NULL: out of memory. */
rare_t *uvmqtt__client_rare(uvmqtt_client_t *c);
void uvmqtt__client_log(uvmqtt_client_t *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Idempotent: advances the teardown as far as it can. */
void uvmqtt__client_close_now(uvmqtt_client_t *c);

/* ---- options.c: the options object */
void uvmqtt__options_defaults(uvmqtt_options_t *o);
/* Copies the options a client keeps, with deep copies of the rare ones. */
int uvmqtt__copts_copy(copts_t *d, const copts_t *s);
void uvmqtt__copts_free(copts_t *k);
int uvmqtt__copts_set_credentials(copts_t *k, const char *username,
                                  const void *password, size_t password_len);
/* 0, or UVMQTT_EUTF8 / UVMQTT_ETOPIC for a property set an application
 * hands us (NULL: 0). */
int uvmqtt__props_utf8_ok(const uvmqtt_props_t *p);

/* ---- loop.c: the per-loop context */
/* The loop's context, created with its first client. NULL: ENOMEM. */
loop_ctx_t *uvmqtt__loop_acquire(uv_loop_t *loop);
/* The client's deadline: `delay` ms from the loop's time. */
void uvmqtt__client_timer_start(uvmqtt_client_t *c, uint64_t delay);
void uvmqtt__client_timer_stop(uvmqtt_client_t *c);
/* Output queued: flush from the loop's idle callback. */
void uvmqtt__client_flush_later(uvmqtt_client_t *c);
void uvmqtt__client_flush_cancel(uvmqtt_client_t *c);
/* The client's session is freed: it leaves the flush list, and the
 * context from the idle callback, never from inside an API call. */
void uvmqtt__loop_leave(uvmqtt_client_t *c);
/* The last client's final step: frees the context once its handles have
 * closed (no-op otherwise). */
void uvmqtt__loop_free_dead(loop_ctx_t *lc);

/* Herd control: asks for an attempt slot; false when the client waits
 * (its attempt starts when one frees). Releasing hands the slot on. */
bool uvmqtt__loop_attempt_slot(uvmqtt_client_t *c);
void uvmqtt__loop_attempt_release(uvmqtt_client_t *c);

/* ---- servers.c: URIs, server lists, redirect references */
void uvmqtt__servers_free(uvmqtt_client_t *c);
void uvmqtt__server_clear(server_spec_t *sv);
/* n servers in one block, the first one current. NULL: ENOMEM. */
server_list_t *uvmqtt__servers_pack(const server_spec_t *src, size_t n);
/* The number of servers, and the index of the one being tried. */
static inline unsigned uvmqtt__nservers(const uvmqtt_client_t *c) {
  return c->servers ? c->servers->n : 0;
}
static inline unsigned uvmqtt__cur_server(const uvmqtt_client_t *c) {
  return c->servers ? c->servers->cur : 0;
}
server_spec_t uvmqtt__server_at(const uvmqtt_client_t *c, size_t i);
uint16_t uvmqtt__default_port(const uvmqtt_client_t *c, int scheme);
int uvmqtt__parse_uri(const uvmqtt_client_t *c, const char *uri,
                      server_spec_t *sv);
int uvmqtt__server_ref_parse(const char *ref, char **host, uint16_t *port);

/* ---- stack.c: the transport stack builder */
/* Decides the current server's proxy (options, then the environment when
 * asked) and the layers to stack over its socket. 0 or an error. */
int uvmqtt__stack_plan(uvmqtt_client_t *c);
/* The attempt's socket (tcp or unix) is open: stacks the planned layers
 * one at a time, each opened before the next, then sends CONNECT. */
void uvmqtt__stack_build(uvmqtt_client_t *c, uvmqtt_stream_t *s);
/* The proxy's default port for its scheme. */
uint16_t uvmqtt__proxy_port(const server_spec_t *p);
/* The current attempt's proxy, or NULL when it goes direct. */
proxy_attempt_t *uvmqtt__stack_proxy(const uvmqtt_client_t *c);
/* Frees the attempt's proxy block (the attempt ended, or is re-planned). */
void uvmqtt__stack_proxy_free(uvmqtt_client_t *c);

/* ---- connect.c: the connect pipeline */
void uvmqtt__client_start_attempt(uvmqtt_client_t *c);
void uvmqtt__client_attempt_end(uvmqtt_client_t *c);
void uvmqtt__client_close_stream(uvmqtt_client_t *c);
/* The stack is open: CONNECT goes out. */
void uvmqtt__client_send_connect(uvmqtt_client_t *c);

/* ---- retry.c: failed attempts, drops, backoff, redirects, LEAVE */
/* The current attempt failed: try the next address, then the next server,
 * then give up until the backoff expires. */
void uvmqtt__client_attempt_failed(uvmqtt_client_t *c, int status);
/* Drops the connection (or attempt) with status, from LEAVE. */
void uvmqtt__client_drop(uvmqtt_client_t *c, int status);
void uvmqtt__client_leave(uvmqtt_client_t *c);

/* ---- io.c: writing, reading, the client's deadline */
void uvmqtt__client_flush_ex(uvmqtt_client_t *c, bool sync_ok);
void uvmqtt__client_flush(uvmqtt_client_t *c);
void uvmqtt__client_arm_timer(uvmqtt_client_t *c);
void uvmqtt__client_on_timer(uvmqtt_client_t *c);
void uvmqtt__client_on_read(uvmqtt_stream_t *s, ssize_t nread,
                            const uint8_t *buf);

/* Statistics hooks: `c->rare->stats` is non-NULL only for clients that
 * asked for statistics. */
#define CSTATS(c) ((c)->rare ? (c)->rare->stats : NULL)
/* The reconnect policy from the client's options. */
uvmqtt__rc_policy_t uvmqtt__client_rc_policy(const uvmqtt_client_t *c);
/* The session's queue may move again (the rate limit's wait is over). */
void uvmqtt__client_throttle_resume(uvmqtt_client_t *c, uint64_t now);

/* ---- dispatch.c: session events */
extern const uvmqtt_session_events_t uvmqtt__client_events;

/* ---- request.c: v5 request / response */
/* True when m answered a pending request (its callback has run). */
bool uvmqtt__request_answer(uvmqtt_client_t *c, const uvmqtt_message_t *m);
/* Closing: every pending request completes with UVMQTT_ECLOSED. */
void uvmqtt__request_cancel_all(uvmqtt_client_t *c);

/* ---- subs.c: the subscriptions the client holds, its request queue */
/* Connected (CONNACK accepted): after a session loss re-subscribes each
 * active subscription once (or forgets them without re-subscribing), then
 * sends every queued request. */
void uvmqtt__subs_connected(uvmqtt_client_t *c, bool session_present);
/* The session's completion of a request sent by subs.c. */
void uvmqtt__subs_done(uvmqtt_client_t *c, sop_t *op, int status, uint16_t id,
                       const uint8_t *codes, size_t count,
                       const uvmqtt_props_t *props);
/* Closing: every request completes with UVMQTT_ECLOSED. */
void uvmqtt__subs_cancel_all(uvmqtt_client_t *c);
void uvmqtt__subs_free(uvmqtt_client_t *c);

/* ---- tls_default.c: the system trust store for TLS without a config */
/* 0, or an error of uvmqtt_tls_config_new / _set_ca_default. */
int uvmqtt__tls_default_acquire(const uvmqtt_tls_config_t **out);
void uvmqtt__tls_default_release(void);
/* ---- persist.c: a client's records in its store */
/* At creation, with CX(c)->store: attaches to the store and restores the
 * session. Errors: those of the store's attach, UVMQTT_ENOMEM. On error
 * nothing is left attached. */
int uvmqtt__persist_open(uvmqtt_client_t *c, uv_loop_t *loop);
/* Before the session is freed: detaches (pending writes still happen) and
 * frees the client's persistence state. No-op without one. */
void uvmqtt__persist_close(uvmqtt_client_t *c);
/* At connect: the broker's identity, checked against the store. */
int uvmqtt__persist_check_broker(uvmqtt_client_t *c);
/* The session's on_persist. */
int uvmqtt__persist_event(void *ud, int op, uvmqtt_smsg_t *m, uint16_t id);
/* ---- delivery.c: graceful leave, drain, acknowledgement, pause */
leave_t *uvmqtt__leave_of(const uvmqtt_client_t *c);
void uvmqtt__leave_free(uvmqtt_client_t *c);
/* The application asks to leave: delivery stops at once; the goodbye
 * starts from LEAVE. 0 or UVMQTT_ENOMEM. */
int uvmqtt__leave_ask(uvmqtt_client_t *c, uint8_t reason,
                      const uvmqtt_props_t *props);
/* DISCONNECT after what is queued, half-close, drain. False when there is
 * nothing to wait for (close at once). */
bool uvmqtt__leave_start(uvmqtt_client_t *c);
/* The broker closed (UV_EOF), an error, or UVMQTT_ETIMEDOUT. */
void uvmqtt__leave_finish(uvmqtt_client_t *c, int status);
/* Drain of publishes: leaves once nothing is pending; ends with cb. */
static inline bool uvmqtt__draining(const uvmqtt_client_t *c) {
  return c->rare && c->rare->drain && c->rare->drain->draining;
}
void uvmqtt__drain_check(uvmqtt_client_t *c);
void uvmqtt__drain_end(uvmqtt_client_t *c, int status);
/* The session's on_hold event: stop / resume reading. */
void uvmqtt__client_on_hold(void *ud, bool holding);

/* ---- routes.c */
/* True when a route took m. */
bool uvmqtt__routes_dispatch(uvmqtt_client_t *c, const uvmqtt_message_t *m);
void uvmqtt__routes_free(uvmqtt_client_t *c);

#endif
