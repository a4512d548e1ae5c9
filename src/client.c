/* The client: lifecycle, connect/reconnect, timers, callbacks, routing.
 * It owns the libuv handles and the transport stack; the protocol itself
 * lives in the sans-I/O session (session.c).
 *
 * Re-entrancy rule: every entry from libuv goes through ENTER/LEAVE. Work
 * that tears state down (close, disconnect, a fatal protocol error) is
 * recorded while inside and carried out by LEAVE once the outermost entry
 * returns, so user callbacks may call any API function. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "props.h"
#include "resolve.h"
#include "session.h"
#include "transport/transport.h"
#include "uvmqtt.h"
#include "uvmqtt_config.h"

enum scheme { S_MQTT = 0, S_MQTTS, S_WS, S_WSS };

/* A server as parsed, and as read back by server_at(). */
typedef struct {
  char *host;
  char *path; /* ws request path */
  char *user;
  char *pass;
  uint16_t port; /* 0: default for the scheme */
  uint8_t scheme;
  bool has_user, has_pass;
} server_spec_t;

/* A client's servers are one allocation: the array, then the strings,
 * which entries name by their offset from the block's start (0: none).
 * See servers_pack(). */
typedef struct {
  uint32_t host, path, user, pass;
  uint16_t port;
  uint8_t scheme;
  bool has_user, has_pass;
} server_t;

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
  char *auth_method;
  uint8_t *auth_data;
  size_t auth_data_len;
  uint32_t session_expiry;
  unsigned dns_timeout;
  int will_qos;
  uint16_t topic_alias_in;
  uint16_t receive_max;
  bool has_session_expiry;
  bool has_password;
  bool will_retain;
  bool tls_for_tcp;
  bool topic_alias_auto;
  bool request_response_info;
  bool follow_redirects;
} opt_ext_t;

static const opt_ext_t ext_defaults = {.dns_timeout = 5000,
                                       .follow_redirects = true};

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
#define OX(k) ((const opt_ext_t *)((k)->x ? (k)->x : &ext_defaults))
#define CX(c) OX(&(c)->o)

/* Allocated as offsetof(sub_t, filter) + len: no padding after len. */
typedef struct sub_s {
  struct sub_s *next;
  uint16_t len; /* filters are at most UVMQTT_TOPIC_MAX bytes */
  uint8_t options;
  char filter[];
} sub_t;

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
  C_CLOSING,
};

/* State of a connection attempt (resolving, the transport handshakes,
 * CONNECT until CONNACK), allocated when one starts and freed once the
 * client is connected, or closed: a connected client does not carry it. */
typedef struct {
  uvmqtt_stream_t *opening; /* the stack being built */
  struct sockaddr_storage *addrs;
  uvmqtt_resolver_t *resolver;
  uvmqtt_resolve_req_t *resolve_req;
  uint64_t deadline;
  uint32_t naddrs, cur_addr;
  int last_error;
  int http_status; /* of the last refused WebSocket upgrade */
} attempt_t;

/* What few clients use, allocated on first use: an SRV domain, v5 request
 * / response, redirects, the reconnect and redirect hooks, and the state
 * kept for clients created with
 * enhanced authentication or TLS (allocated with the client, so the
 * setters that cannot fail have somewhere to write). */
typedef struct {
  char *srv_domain;
  char *redirect_ref; /* Server Reference of a pending redirect */
  req_t *reqs;
  uv_timer_t *req_timer;
  uvmqtt_auth_cb auth_cb;
  void *auth_arg;
  uvmqtt_reconnect_cb reconnect_cb;
  void *reconnect_arg;
  uvmqtt_redirect_cb redirect_cb;
  void *redirect_arg;
  int tls_err; /* raw mbedTLS error of the last failed handshake */
  uint32_t tls_flags;
  unsigned redirects; /* in a row, to stop loops */
} rare_t;

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
  uvmqtt_close_cb close_cb;

  uvmqtt_session_t *session;
  routing_t *rt;
  sub_t *subs;
  char *client_id; /* effective id; initially in the client's own block */

  uvmqtt_stream_t *stream; /* top of the stack once open */
  server_t *servers;
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
  uint16_t nservers, cur_server;
  unsigned writes;  /* batches being written */
  unsigned attempt; /* failed attempts in a row */
  int drop_status;
  /* Small fields together, so the struct has no holes. */
  uint16_t open_handles;
  uint16_t depth;
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
  char id[];                    /* the initial client id */
};

#define ENTER(c) ((c)->depth++)
static void leave(uvmqtt_client_t *c);
#define LEAVE(c) leave(c)

static void connection_drop(uvmqtt_client_t *c, int status);
static void schedule_reconnect(uvmqtt_client_t *c, bool max_delay);
static void start_attempt(uvmqtt_client_t *c);
static void flush_now(uvmqtt_client_t *c);
static void arm_timer(uvmqtt_client_t *c);
static void close_now(uvmqtt_client_t *c);
static void req_sweep(uvmqtt_client_t *c);
static void on_resolver_released(void *arg);

static rare_t *rare_get(uvmqtt_client_t *c) {
  if (!c->rare)
    c->rare = uvmqtt__calloc(1, sizeof(*c->rare));
  return c->rare;
}

/* The attempt is over (connected, or the client is closing): its memory
 * and resolver go. Any stream it opened is the client's by now. */
static void attempt_end(uvmqtt_client_t *c) {
  attempt_t *at = c->at;
  if (!at)
    return;
  c->at = NULL;
  if (at->resolve_req)
    uvmqtt__resolve_cancel(at->resolve_req);
  if (at->resolver) {
    c->open_handles++;
    uvmqtt__resolver_close(at->resolver, on_resolver_released, c);
  }
  uvmqtt__free(at->addrs);
  uvmqtt__free(at);
}

/* The client id starts in the client's own allocation. */
static void client_id_free(uvmqtt_client_t *c) {
  if (c->client_id != c->id)
    uvmqtt__free(c->client_id);
}

/* ---- logging ---------------------------------------------------------------
 */

static void clog_(uvmqtt_client_t *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void clog_(uvmqtt_client_t *c, int level, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  if (!c->log_cb || level > c->log_level)
    return;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  c->log_cb(c, level, buf, c->log_arg);
}

/* ---- options
 * ------------------------------------------------------------------ */

static void options_defaults(uvmqtt_options_t *o) {
  memset(o, 0, sizeof(*o));
  o->k.version = UVMQTT_V311;
  o->k.clean = true;
  o->k.keepalive = 60;
  o->max_inflight = 20;
  o->max_queued = 65536;
  o->max_queued_bytes = 64u << 20;
  o->queue_policy = UVMQTT_QUEUE_REFUSE_NEW;
  o->k.max_packet_size = UVMQTT_MAX_REMAINING_LENGTH;
  o->k.reconnect = true;
  o->k.rc_min = 1000;
  o->k.rc_max = 30000;
  o->k.jitter = 0.2f;
  o->k.connect_timeout = 10000;
  o->k.nodelay = true;
  o->k.resubscribe = true;
}

/* The rarely set options, allocated with their defaults on first use. */
static opt_ext_t *ext_get(copts_t *k) {
  if (!k->x && (k->x = uvmqtt__malloc(sizeof(*k->x))))
    *k->x = ext_defaults;
  return k->x;
}

static void ext_free(copts_t *k) {
  opt_ext_t *x = k->x;
  k->x = NULL;
  if (!x)
    return;
  uvmqtt__free(x->username);
  uvmqtt__free(x->password);
  uvmqtt__free(x->will_topic);
  uvmqtt__free(x->will_payload);
  uvmqtt__free(x->will_props);
  uvmqtt__free(x->connect_props);
  uvmqtt__free(x->bind);
  uvmqtt__free(x->ws_path);
  for (size_t i = 0; i < x->ws_header_count; i++)
    uvmqtt__free(x->ws_headers[i]);
  uvmqtt__free(x->ws_headers);
  uvmqtt__free(x->dns_servers);
  uvmqtt__free(x->auth_method);
  uvmqtt__free(x->auth_data);
  uvmqtt__free(x);
}

int uvmqtt_options_new(uvmqtt_options_t **out) {
  if (!out)
    return UVMQTT_EINVAL;
  uvmqtt_options_t *o = uvmqtt__malloc(sizeof(*o));
  if (!o)
    return UVMQTT_ENOMEM;
  options_defaults(o);
  *out = o;
  return 0;
}

void uvmqtt_options_del(uvmqtt_options_t *o) {
  if (!o)
    return;
  uvmqtt__free(o->client_id);
  ext_free(&o->k);
  uvmqtt__free(o);
}

/* MQTT strings must be well-formed UTF-8 without U+0000 [MQTT-1.5.4]:
 * checks every string property of a set the application hands us. */
static int props_utf8_ok(const uvmqtt_props_t *p) {
  if (!p)
    return 0;
  const uvmqtt_str_t *strs[] = {&p->content_type,
                                &p->response_topic,
                                &p->assigned_client_identifier,
                                &p->authentication_method,
                                &p->response_information,
                                &p->server_reference,
                                &p->reason_string};
  const int ids[] = {UVMQTT_PROP_CONTENT_TYPE,
                     UVMQTT_PROP_RESPONSE_TOPIC,
                     UVMQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER,
                     UVMQTT_PROP_AUTHENTICATION_METHOD,
                     UVMQTT_PROP_RESPONSE_INFORMATION,
                     UVMQTT_PROP_SERVER_REFERENCE,
                     UVMQTT_PROP_REASON_STRING};
  for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
    if ((p->present & UVMQTT_PROP_BIT(ids[i])) &&
        uvmqtt_utf8_check(strs[i]->data, strs[i]->len, NULL) != 0)
      return UVMQTT_EUTF8;
  if (p->user_props)
    for (size_t i = 0; i < p->user_prop_count; i++)
      if (uvmqtt_utf8_check(p->user_props[i].key.data, p->user_props[i].key.len,
                            NULL) != 0 ||
          uvmqtt_utf8_check(p->user_props[i].value.data,
                            p->user_props[i].value.len, NULL) != 0)
        return UVMQTT_EUTF8;
  if ((p->present & UVMQTT_PROP_BIT(UVMQTT_PROP_RESPONSE_TOPIC)) &&
      uvmqtt_topic_validate(p->response_topic.data, p->response_topic.len))
    return UVMQTT_ETOPIC; /* [MQTT-3.3.2-14]: no wildcards */
  return 0;
}

static int str_utf8_ok(const char *s) {
  return s && uvmqtt_utf8_check(s, strlen(s), NULL) != 0 ? UVMQTT_EUTF8 : 0;
}

/* Replaces *dst with a copy of src (NULL clears). */
static int set_str(char **dst, const char *src) {
  char *d = NULL;
  if (src && !(d = uvmqtt__strdup(src)))
    return UVMQTT_ENOMEM;
  uvmqtt__free(*dst);
  *dst = d;
  return 0;
}

static int set_bin(uint8_t **dst, size_t *dlen, const void *src, size_t len) {
  uint8_t *d = NULL;
  if (src && !(d = uvmqtt__memdup(src, len)))
    return UVMQTT_ENOMEM;
  uvmqtt__free(*dst);
  *dst = d;
  *dlen = src ? len : 0;
  return 0;
}

static int set_props(uvmqtt_props_t **dst, const uvmqtt_props_t *src) {
  uvmqtt_props_t *d = NULL;
  if (src) {
    int rc = uvmqtt__props_dup(src, &d);
    if (rc < 0)
      return rc;
  }
  uvmqtt__free(*dst);
  *dst = d;
  return 0;
}

int uvmqtt_options_set_client_id(uvmqtt_options_t *o, const char *id) {
  if (!o || (id && strlen(id) > 65535))
    return UVMQTT_EINVAL;
  if (str_utf8_ok(id))
    return UVMQTT_EUTF8;
  return set_str(&o->client_id, id && *id ? id : NULL);
}

int uvmqtt_options_set_empty_client_id(uvmqtt_options_t *o, bool empty) {
  if (!o)
    return UVMQTT_EINVAL;
  o->k.empty_id = empty;
  return 0;
}

int uvmqtt_options_set_protocol(uvmqtt_options_t *o, int version) {
  if (!o ||
      (version != UVMQTT_V31 && version != UVMQTT_V311 && version != UVMQTT_V5))
    return UVMQTT_EINVAL;
  o->k.version = version;
  return 0;
}

int uvmqtt_options_set_clean_session(uvmqtt_options_t *o, bool clean) {
  if (!o)
    return UVMQTT_EINVAL;
  o->k.clean = clean;
  return 0;
}

int uvmqtt_options_set_session_expiry(uvmqtt_options_t *o, uint32_t s) {
  if (!o)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  x->has_session_expiry = true;
  x->session_expiry = s;
  return 0;
}

int uvmqtt_options_set_keepalive(uvmqtt_options_t *o, unsigned seconds) {
  if (!o || seconds > 65535)
    return UVMQTT_EINVAL;
  o->k.keepalive = seconds;
  return 0;
}

static int set_credentials(copts_t *k, const char *username,
                           const void *password, size_t password_len) {
  if ((username && strlen(username) > 65535) || password_len > 65535)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(k);
  if (!x)
    return UVMQTT_ENOMEM;
  if (str_utf8_ok(username))
    return UVMQTT_EUTF8;
  int rc = set_str(&x->username, username);
  if (rc == 0)
    rc = set_bin(&x->password, &x->password_len, password, password_len);
  if (rc == 0)
    x->has_password = password != NULL;
  return rc;
}

int uvmqtt_options_set_credentials(uvmqtt_options_t *o, const char *username,
                                   const void *password, size_t password_len) {
  if (!o)
    return UVMQTT_EINVAL;
  return set_credentials(&o->k, username, password, password_len);
}

int uvmqtt_options_set_will(uvmqtt_options_t *o, const char *topic,
                            const void *payload, size_t len, int qos,
                            bool retain) {
  if (!o || qos < 0 || qos > 2 || len > 65535 || (len && !payload))
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  if (topic && uvmqtt_topic_validate(topic, strlen(topic)) != 0)
    return UVMQTT_ETOPIC;
  int rc = set_str(&x->will_topic, topic);
  if (rc == 0)
    rc = set_bin(&x->will_payload, &x->will_len,
                 topic ? (payload ? payload : "") : NULL, len);
  x->will_qos = qos;
  x->will_retain = retain;
  return rc;
}

int uvmqtt_options_set_will_props(uvmqtt_options_t *o,
                                  const uvmqtt_props_t *props) {
  if (!o)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  int rc = props_utf8_ok(props);
  return rc < 0 ? rc : set_props(&x->will_props, props);
}

int uvmqtt_options_set_connect_props(uvmqtt_options_t *o,
                                     const uvmqtt_props_t *p) {
  if (!o)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  int rc = props_utf8_ok(p);
  return rc < 0 ? rc : set_props(&x->connect_props, p);
}

int uvmqtt_options_set_max_inflight(uvmqtt_options_t *o, unsigned n) {
  if (!o || n == 0 || n > 65535)
    return UVMQTT_EINVAL;
  o->max_inflight = n;
  return 0;
}

int uvmqtt_options_set_max_queued(uvmqtt_options_t *o, size_t count,
                                  size_t bytes, uvmqtt_queue_policy_t policy) {
  if (!o ||
      (policy != UVMQTT_QUEUE_REFUSE_NEW && policy != UVMQTT_QUEUE_DROP_OLDEST))
    return UVMQTT_EINVAL;
  o->max_queued = count;
  o->max_queued_bytes = bytes;
  o->queue_policy = policy;
  return 0;
}

int uvmqtt_options_set_max_packet_size(uvmqtt_options_t *o, uint32_t bytes) {
  if (!o || bytes < 16 || bytes > UVMQTT_MAX_REMAINING_LENGTH + 5)
    return UVMQTT_EINVAL;
  o->k.max_packet_size = bytes;
  return 0;
}

int uvmqtt_options_set_reconnect(uvmqtt_options_t *o, bool enabled,
                                 unsigned min_ms, unsigned max_ms,
                                 double jitter) {
  if (!o || (enabled && (min_ms == 0 || max_ms < min_ms)) || jitter < 0 ||
      jitter > 1)
    return UVMQTT_EINVAL;
  o->k.reconnect = enabled;
  if (min_ms)
    o->k.rc_min = min_ms;
  if (max_ms)
    o->k.rc_max = max_ms;
  o->k.jitter = (float)jitter;
  return 0;
}

int uvmqtt_options_set_connect_timeout(uvmqtt_options_t *o, unsigned ms) {
  if (!o || ms == 0)
    return UVMQTT_EINVAL;
  o->k.connect_timeout = ms;
  return 0;
}

int uvmqtt_options_set_bind_address(uvmqtt_options_t *o, const char *ip) {
  struct sockaddr_in6 a6;
  struct sockaddr_in a4;
  if (!o)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  if (ip && uv_ip4_addr(ip, 0, &a4) != 0 && uv_ip6_addr(ip, 0, &a6) != 0)
    return UVMQTT_EINVAL;
  return set_str(&x->bind, ip);
}

int uvmqtt_options_set_nodelay(uvmqtt_options_t *o, bool on) {
  if (!o)
    return UVMQTT_EINVAL;
  o->k.nodelay = on;
  return 0;
}

int uvmqtt_options_set_resubscribe(uvmqtt_options_t *o, bool on) {
  if (!o)
    return UVMQTT_EINVAL;
  o->k.resubscribe = on;
  return 0;
}

int uvmqtt_options_set_tls(uvmqtt_options_t *o, const uvmqtt_tls_config_t *cfg,
                           bool use_for_tcp) {
  if (!o)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
#if !UVMQTT_HAVE_TLS
  if (cfg)
    return UVMQTT_ENOTSUP;
#endif
  x->tls = cfg;
  x->tls_for_tcp = cfg && use_for_tcp;
  return 0;
}

int uvmqtt_options_set_ws(uvmqtt_options_t *o, const char *path,
                          const char *const *headers, size_t header_count) {
  if (!o || (header_count && !headers))
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
#if !UVMQTT_HAVE_WS
  (void)path;
  return UVMQTT_ENOTSUP;
#else
  char **h = NULL;
  if (header_count) {
    h = uvmqtt__calloc(header_count, sizeof(*h));
    if (!h)
      return UVMQTT_ENOMEM;
    for (size_t i = 0; i < header_count; i++) {
      if (!headers[i] || strpbrk(headers[i], "\r\n") ||
          !(h[i] = uvmqtt__strdup(headers[i]))) {
        for (size_t j = 0; j < i; j++)
          uvmqtt__free(h[j]);
        uvmqtt__free(h);
        return headers[i] ? UVMQTT_ENOMEM : UVMQTT_EINVAL;
      }
    }
  }
  int rc = set_str(&x->ws_path, path);
  if (rc < 0) {
    for (size_t j = 0; j < header_count; j++)
      uvmqtt__free(h[j]);
    uvmqtt__free(h);
    return rc;
  }
  for (size_t i = 0; i < x->ws_header_count; i++)
    uvmqtt__free(x->ws_headers[i]);
  uvmqtt__free(x->ws_headers);
  x->ws_headers = h;
  x->ws_header_count = header_count;
  return 0;
#endif
}

int uvmqtt_options_set_dns_servers(uvmqtt_options_t *o, const char *servers) {
  if (!o)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
#if !UVMQTT_HAVE_SRV
  if (servers)
    return UVMQTT_ENOTSUP;
#endif
  return set_str(&x->dns_servers, servers);
}

int uvmqtt_options_set_dns_timeout(uvmqtt_options_t *o, unsigned ms) {
  if (!o || ms == 0)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  x->dns_timeout = ms;
  return 0;
}

int uvmqtt_options_set_topic_alias(uvmqtt_options_t *o, uint16_t incoming_max,
                                   bool auto_out) {
  if (!o)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  x->topic_alias_in = incoming_max;
  x->topic_alias_auto = auto_out;
  return 0;
}

int uvmqtt_options_set_receive_maximum(uvmqtt_options_t *o, uint16_t n) {
  if (!o || n == 0)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  x->receive_max = n;
  return 0;
}

int uvmqtt_options_set_request_response_info(uvmqtt_options_t *o, bool on) {
  if (!o)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  x->request_response_info = on;
  return 0;
}

int uvmqtt_options_set_auth(uvmqtt_options_t *o, const char *method,
                            const void *data, size_t len) {
  if (!o || (method && strlen(method) > 65535) || len > 65535 || (len && !data))
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  if (str_utf8_ok(method))
    return UVMQTT_EUTF8;
  int rc = set_str(&x->auth_method, method);
  if (rc == 0)
    rc = set_bin(&x->auth_data, &x->auth_data_len, method ? data : NULL, len);
  return rc;
}

int uvmqtt_options_set_follow_redirects(uvmqtt_options_t *o, bool on) {
  if (!o)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  x->follow_redirects = on;
  return 0;
}

/* Copies the options a client keeps, with deep copies of the rare ones. */
static int copts_copy(copts_t *d, const copts_t *s) {
  *d = *s;
  d->x = NULL;
  if (!s->x)
    return 0;
  const opt_ext_t *sx = s->x;
  opt_ext_t *x = ext_get(d);
  if (!x)
    goto fail;
  *x = *sx;
  x->username = x->will_topic = x->bind = x->ws_path = NULL;
  x->dns_servers = x->auth_method = NULL;
  x->password = x->will_payload = x->auth_data = NULL;
  x->will_props = x->connect_props = NULL;
  x->ws_headers = NULL;
  x->ws_header_count = 0;
  if (set_str(&x->username, sx->username) ||
      set_bin(&x->password, &x->password_len, sx->password, sx->password_len) ||
      set_str(&x->will_topic, sx->will_topic) ||
      set_bin(&x->will_payload, &x->will_len, sx->will_payload, sx->will_len) ||
      set_props(&x->will_props, sx->will_props) ||
      set_props(&x->connect_props, sx->connect_props) ||
      set_str(&x->bind, sx->bind) || set_str(&x->ws_path, sx->ws_path) ||
      set_str(&x->dns_servers, sx->dns_servers) ||
      set_str(&x->auth_method, sx->auth_method) ||
      set_bin(&x->auth_data, &x->auth_data_len, sx->auth_data,
              sx->auth_data_len))
    goto fail;
  if (sx->ws_header_count) {
    x->ws_headers = uvmqtt__calloc(sx->ws_header_count, sizeof(char *));
    if (!x->ws_headers)
      goto fail;
    x->ws_header_count = sx->ws_header_count;
    for (size_t i = 0; i < sx->ws_header_count; i++)
      if (!(x->ws_headers[i] = uvmqtt__strdup(sx->ws_headers[i])))
        goto fail;
  }
  if (sx->has_password && !sx->password) /* empty password */
    x->password = NULL;
  return 0;
fail:
  ext_free(d);
  return UVMQTT_ENOMEM;
}

/* ---- the loop context
 * ----------------------------------------------------------------
 * One uv_timer_t and one uv_idle_t per loop, shared by every client on it,
 * so an idle connection holds neither. The timer runs the earliest of the
 * clients' deadlines (a binary min-heap of clients, ties in arming order);
 * the idle handle runs the clients with output queued in this iteration
 * (one write each per iteration, as a handle per client did) and completes
 * closes. Contexts are found by loop in a small registry (loops may run on
 * several threads) and counted by their clients. The last client to close
 * closes the two handles and its close callback fires after theirs, so
 * uv_loop_close() succeeds once every close callback has run. */

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
} loop_ctx_t;

static uv_once_t lc_once = UV_ONCE_INIT;
static uv_mutex_t lc_mutex;
static loop_ctx_t *lc_list;

static void lc_mutex_init(void) {
  if (uv_mutex_init(&lc_mutex) != 0)
    abort();
}

static bool h_less(const uvmqtt_client_t *a, const uvmqtt_client_t *b) {
  return a->due < b->due ||
         (a->due == b->due && (int32_t)(a->seq - b->seq) < 0);
}

static void h_set(loop_ctx_t *lc, uint32_t i, uvmqtt_client_t *c) {
  lc->heap[i] = c;
  c->heap_idx = i;
}

static void h_up(loop_ctx_t *lc, uint32_t i) {
  uvmqtt_client_t *c = lc->heap[i];
  while (i > 1 && h_less(c, lc->heap[i / 2])) {
    h_set(lc, i, lc->heap[i / 2]);
    i /= 2;
  }
  h_set(lc, i, c);
}

static void h_down(loop_ctx_t *lc, uint32_t i) {
  uvmqtt_client_t *c = lc->heap[i];
  for (;;) {
    uint32_t k = 2 * i;
    if (k > lc->n)
      break;
    if (k < lc->n && h_less(lc->heap[k + 1], lc->heap[k]))
      k++;
    if (!h_less(lc->heap[k], c))
      break;
    h_set(lc, i, lc->heap[k]);
    i = k;
  }
  h_set(lc, i, c);
}

static void h_remove(loop_ctx_t *lc, uvmqtt_client_t *c) {
  uint32_t i = c->heap_idx;
  uvmqtt_client_t *last = lc->heap[lc->n--];
  c->heap_idx = 0;
  if (last != c) {
    h_set(lc, i, last);
    h_up(lc, i);
    h_down(lc, last->heap_idx);
  }
}

static void on_lc_timer(uv_timer_t *t);

static void lc_rearm(loop_ctx_t *lc) {
  uint64_t due = lc->n ? lc->heap[1]->due : UINT64_MAX;
  if (due == lc->armed)
    return;
  lc->armed = due;
  if (due == UINT64_MAX) {
    uv_timer_stop(&lc->timer);
    return;
  }
  uint64_t now = uv_now(lc->loop);
  uv_timer_start(&lc->timer, on_lc_timer, due > now ? due - now : 0, 0);
}

/* The client's deadline: `delay` ms from the loop's time. */
static void ctimer_start(uvmqtt_client_t *c, uint64_t delay) {
  loop_ctx_t *lc = c->lc;
  if (c->state == C_CLOSING)
    return;
  c->due = uv_now(lc->loop) + delay;
  c->seq = lc->seq++;
  if (c->heap_idx) {
    h_up(lc, c->heap_idx);
    h_down(lc, c->heap_idx);
  } else {
    h_set(lc, ++lc->n, c);
    h_up(lc, lc->n);
  }
  if (!lc->in_timer)
    lc_rearm(lc);
}

static void ctimer_stop(uvmqtt_client_t *c) {
  loop_ctx_t *lc = c->lc;
  if (!c->heap_idx)
    return;
  h_remove(lc, c);
  if (!lc->in_timer)
    lc_rearm(lc);
}

static void client_timer(uvmqtt_client_t *c);

static void on_lc_timer(uv_timer_t *t) {
  loop_ctx_t *lc = t->data;
  uint64_t now = uv_now(lc->loop);
  uint32_t first_new = lc->seq;
  lc->armed = UINT64_MAX;
  lc->in_timer = true;
  /* Deadlines armed from inside these callbacks wait for the next run. */
  while (lc->n && lc->heap[1]->due <= now &&
         (int32_t)(lc->heap[1]->seq - first_new) < 0) {
    uvmqtt_client_t *c = lc->heap[1];
    h_remove(lc, c);
    client_timer(c);
  }
  lc->in_timer = false;
  lc_rearm(lc);
}

static void l_push(uvmqtt_client_t **head, uvmqtt_client_t *c) {
  c->lnext = *head;
  if (*head)
    (*head)->lpprev = &c->lnext;
  *head = c;
  c->lpprev = head;
}

static void l_remove(uvmqtt_client_t *c) {
  if (!c->lpprev)
    return;
  *c->lpprev = c->lnext;
  if (c->lnext)
    c->lnext->lpprev = c->lpprev;
  c->lnext = NULL;
  c->lpprev = NULL;
}

static void on_lc_idle(uv_idle_t *h);

static void cflush_start(uvmqtt_client_t *c) {
  if (c->lpprev)
    return;
  l_push(&c->lc->flush, c);
  uv_idle_start(&c->lc->idle, on_lc_idle);
}

static void cflush_stop(uvmqtt_client_t *c) {
  if (!c->freed_session) /* then it may be in the closing list */
    l_remove(c);
}

static void flush_ex(uvmqtt_client_t *c, bool sync_ok);
static void lc_detach(uvmqtt_client_t *c);

static void on_lc_idle(uv_idle_t *h) {
  loop_ctx_t *lc = h->data;
  /* Output queued from inside these flushes waits for the next
   * iteration, as with an idle handle started from its own callback. */
  lc->running = lc->flush;
  if (lc->running)
    lc->running->lpprev = &lc->running;
  lc->flush = NULL;
  while (lc->running) {
    uvmqtt_client_t *c = lc->running;
    l_remove(c);
    flush_ex(c, true);
  }
  bool alive = true;
  while (alive && lc->closing) {
    uvmqtt_client_t *c = lc->closing;
    l_remove(c);
    alive = lc->refs > 1; /* the last one closes the context */
    lc_detach(c);
  }
  if (alive && !lc->flush && !lc->closing)
    uv_idle_stop(&lc->idle);
}

static loop_ctx_t *lc_acquire(uv_loop_t *loop) {
  uv_once(&lc_once, lc_mutex_init);
  uv_mutex_lock(&lc_mutex);
  loop_ctx_t *lc = lc_list;
  while (lc && lc->loop != loop)
    lc = lc->next;
  if (!lc) {
    lc = uvmqtt__calloc(1, sizeof(*lc));
    if (lc && !(lc->heap = uvmqtt__malloc(17 * sizeof(*lc->heap)))) {
      uvmqtt__free(lc);
      lc = NULL;
    }
    if (lc) {
      lc->cap = 16;
      lc->loop = loop;
      lc->armed = UINT64_MAX;
      uv_timer_init(loop, &lc->timer);
      uv_idle_init(loop, &lc->idle);
      lc->timer.data = lc;
      lc->idle.data = lc;
      lc->next = lc_list;
      lc_list = lc;
    }
  } else if (lc->refs + 1 > lc->cap) {
    uint32_t cap = lc->cap * 2;
    uvmqtt_client_t **heap =
        uvmqtt__realloc(lc->heap, ((size_t)cap + 1) * sizeof(*heap));
    if (heap) {
      lc->heap = heap;
      lc->cap = cap;
    } else {
      lc = NULL;
    }
  }
  if (lc)
    lc->refs++;
  uv_mutex_unlock(&lc_mutex);
  return lc;
}

static void on_lc_closed(uv_handle_t *h) {
  loop_ctx_t *lc = h->data;
  if (--lc->handles_open > 0)
    return;
  uvmqtt_client_t *c = lc->last;
  /* This was the client's last handle: it completes now, and its close
   * callback may still ask for the loop, which it finds through lc. */
  c->open_handles--;
  close_now(c);
  uvmqtt__free(lc->heap);
  uvmqtt__free(lc);
}

/* The client's last step in closing: it leaves the context; the last
 * client closes the shared handles first. */
static void lc_detach(uvmqtt_client_t *c) {
  loop_ctx_t *lc = c->lc;
  uv_mutex_lock(&lc_mutex);
  bool last = --lc->refs == 0;
  if (last) {
    loop_ctx_t **pp = &lc_list;
    while (*pp != lc)
      pp = &(*pp)->next;
    *pp = lc->next;
  }
  uv_mutex_unlock(&lc_mutex);
  if (last) {
    lc->last = c;
    lc->handles_open = 2;
    uv_close((uv_handle_t *)&lc->timer, on_lc_closed);
    uv_close((uv_handle_t *)&lc->idle, on_lc_closed);
    return;
  }
  c->open_handles--;
  close_now(c);
}

/* ---- session events
 * ------------------------------------------------------------ */

static uint64_t now_ms(uvmqtt_client_t *c) {
  return uv_now(c->lc->loop);
}

static void ev_log(void *ud, int level, const char *msg) {
  clog_(ud, level, "%s", msg);
}

static void ev_output(void *ud) {
  uvmqtt_client_t *c = ud;
  if (c->state != C_CLOSING)
    cflush_start(c);
}

static void resubscribe(uvmqtt_client_t *c) {
  size_t n = 0;
  for (sub_t *s = c->subs; s; s = s->next)
    n++;
  if (!n)
    return;
  uvmqtt_subscription_t *v = uvmqtt__calloc(n, sizeof(*v));
  if (!v) {
    clog_(c, UVMQTT_LOG_ERROR, "out of memory re-subscribing");
    return;
  }
  size_t i = 0;
  for (sub_t *s = c->subs; s; s = s->next, i++) {
    v[i].filter.data = s->filter;
    v[i].filter.len = s->len;
    v[i].options = s->options;
  }
  /* Many filters per SUBSCRIBE, within the server's packet size. */
  for (size_t at = 0; at < n;) {
    size_t take = n - at > 64 ? 64 : n - at;
    int rc =
        uvmqtt__session_subscribe(c->session, v + at, take, NULL, NULL, NULL);
    if (rc < 0)
      clog_(c, UVMQTT_LOG_ERROR, "re-subscribe failed: %s",
            uvmqtt_strerror(rc));
    at += take;
  }
  clog_(c, UVMQTT_LOG_INFO, "re-subscribed %zu filter(s)", n);
  uvmqtt__free(v);
}

/* Remembers a v5 Server Reference carried with reason 0x9C / 0x9D. */
static void note_redirect(uvmqtt_client_t *c, uint8_t reason,
                          const uvmqtt_props_t *p) {
  if (c->o.version != UVMQTT_V5 || (reason != 0x9C && reason != 0x9D) ||
      !(p->present & UVMQTT_PROP_BIT(UVMQTT_PROP_SERVER_REFERENCE)) ||
      !CX(c)->follow_redirects)
    return;
  rare_t *r = rare_get(c);
  if (!r) {
    clog_(c, UVMQTT_LOG_WARN, "out of memory: redirect not followed");
    return;
  }
  uvmqtt__free(r->redirect_ref);
  r->redirect_ref =
      uvmqtt__strndup(p->server_reference.data, p->server_reference.len);
}

static void ev_connack(void *ud, const uvmqtt_connack_t *ack) {
  uvmqtt_client_t *c = ud;
  if (ack->reason_code != 0) {
    c->last_reason = ack->reason_code;
    note_redirect(c, ack->reason_code, &ack->props);
    return; /* reported by connection_drop via UVMQTT_EREFUSED */
  }
  if (c->rare)
    c->rare->redirects = 0;
  c->state = C_CONNECTED;
  c->attempt = 0;
  attempt_end(c);
  if (c->o.version == UVMQTT_V5 &&
      (ack->props.present &
       UVMQTT_PROP_BIT(UVMQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER))) {
    char *id = uvmqtt__strndup(ack->props.assigned_client_identifier.data,
                               ack->props.assigned_client_identifier.len);
    if (id) {
      client_id_free(c);
      c->client_id = id;
    }
  }
  clog_(c, UVMQTT_LOG_INFO, "connected (session present: %d)",
        ack->session_present);
  if (!ack->session_present && c->o.resubscribe)
    resubscribe(c);
  if (c->connect_cb)
    c->connect_cb(c, 0, ack, c->connect_arg);
}

typedef struct {
  uvmqtt_client_t *c;
  const uvmqtt_message_t *m;
} dispatch_t;

static int route_visit(void *value, const char *filter, size_t flen,
                       void *arg) {
  dispatch_t *d = arg;
  route_t *r = value;
  uvmqtt_message_cb cb = r->cb;
  (void)filter;
  (void)flen;
  cb(d->c, d->m, r->arg);
  return 0;
}

static void ev_message(void *ud, const uvmqtt_publish_t *pub) {
  uvmqtt_client_t *c = ud;
  uvmqtt_message_t m;
  m.topic = pub->topic.data;
  m.topic_len = pub->topic.len;
  m.payload = pub->payload.data;
  m.payload_len = pub->payload.len;
  m.qos = pub->qos;
  m.retain = pub->retain;
  m.dup = pub->dup;
  m.packet_id = pub->packet_id;
  m.props = c->o.version == UVMQTT_V5 ? &pub->props : NULL;
  if (c->rare && c->rare->reqs && m.props &&
      (m.props->present & UVMQTT_PROP_BIT(UVMQTT_PROP_CORRELATION_DATA)) &&
      m.props->correlation_data.len == 16) {
    for (req_t *r = c->rare->reqs; r; r = r->next) {
      if (!r->answered &&
          memcmp(r->corr, m.props->correlation_data.data, 16) == 0) {
        r->answered = true;
        r->cb(c, 0, &m, r->arg);
        return;
      }
    }
  }
  if (c->rt) {
    dispatch_t d = {c, &m};
    if (uvmqtt_router_match(c->rt->router, m.topic, m.topic_len, route_visit,
                            &d) > 0)
      return;
  }
  if (c->message_cb)
    c->message_cb(c, &m, c->message_arg);
}

static void ev_publish_done(void *ud, uvmqtt_session_fn fn, void *arg,
                            int status, uint16_t id, uint8_t reason) {
  uvmqtt_client_t *c = ud;
  uvmqtt_publish_cb cb = (uvmqtt_publish_cb)fn;
  if (!cb)
    return;
  c->last_reason = reason;
  cb(c, status, id, arg);
  c->last_reason = 0;
}

static void forget_sub(uvmqtt_client_t *c, const char *f, size_t len) {
  for (sub_t **pp = &c->subs, *s; (s = *pp); pp = &s->next) {
    if (s->len == len && memcmp(s->filter, f, len) == 0) {
      *pp = s->next;
      uvmqtt__free(s);
      return;
    }
  }
}

static int remember_sub(uvmqtt_client_t *c, const char *f, size_t len,
                        uint8_t options) {
  forget_sub(c, f, len);
  sub_t *s = uvmqtt__malloc(offsetof(sub_t, filter) + len);
  if (!s)
    return UVMQTT_ENOMEM;
  s->options = options;
  s->len = (uint16_t)len;
  memcpy(s->filter, f, len);
  s->next = c->subs;
  c->subs = s;
  return 0;
}

static void ev_sub_done(void *ud, int type, uvmqtt_session_fn fn, void *arg,
                        int status, uint16_t id, const uint8_t *codes,
                        size_t count, const uvmqtt_props_t *props) {
  uvmqtt_client_t *c = ud;
  uvmqtt_subscribe_cb cb = (uvmqtt_subscribe_cb)fn;
  (void)type;
  if (!cb)
    return;
  c->last_reason = 0;
  cb(c, status, id, codes, count, c->o.version == UVMQTT_V5 ? props : NULL,
     arg);
}

static void ev_disconnect(void *ud, const uvmqtt_reason_t *r) {
  uvmqtt_client_t *c = ud;
  c->last_reason = r->reason_code;
  note_redirect(c, r->reason_code, &r->props);
  /* Fire now while the packet's memory is valid; connection_drop
   * reports it otherwise. */
  c->disconnect_reported = false;
  if (c->disconnect_cb && c->depth > 0) {
    c->disconnect_cb(c, UVMQTT_EDISCONNECTED, r, c->disconnect_arg);
    c->disconnect_reported = true;
  }
}

static void ev_auth(void *ud, const uvmqtt_reason_t *r) {
  uvmqtt_client_t *c = ud;
  clog_(c, UVMQTT_LOG_DEBUG, "AUTH received (reason 0x%02x)", r->reason_code);
  if (!CX(c)->auth_method) {
    clog_(c, UVMQTT_LOG_ERROR,
          "AUTH received without enhanced "
          "authentication configured");
    connection_drop(c, UVMQTT_EPROTOCOL);
    return;
  }
  if (r->reason_code == 0)
    return; /* re-authentication succeeded */
  /* The client has its rare block: it was created with auth_method. */
  if (!c->rare || !c->rare->auth_cb ||
      c->rare->auth_cb(c, r->reason_code, &r->props, c->rare->auth_arg))
    connection_drop(c, UVMQTT_EAUTH);
}

static const uvmqtt_session_events_t session_events = {
    .on_connack = ev_connack,
    .on_message = ev_message,
    .on_publish_done = ev_publish_done,
    .on_sub_done = ev_sub_done,
    .on_disconnect = ev_disconnect,
    .on_auth = ev_auth,
    .on_output = ev_output,
    .on_log = ev_log,
};

/* ---- writing
 * -------------------------------------------------------------------- */

static void on_written(uvmqtt_stream_t *s, int status, void *arg) {
  uvmqtt_client_t *c = s->data;
  ENTER(c);
  c->writes--;
  uvmqtt__session_output_done(c->session, arg, status);
  if (status < 0 && status != UV_ECANCELED && c->state != C_CLOSING)
    connection_drop(c, status);
  LEAVE(c);
}

/* Hands the queued output to the stream. `sync_ok`: called from the flush
 * handle, where completions may fire before this returns; the bytes are
 * then first offered to the stream's try_write() (when nothing else is
 * being written), and a batch the kernel takes whole completes at once,
 * with no write request. API calls pass false so that no user callback
 * fires from inside them. */
static void flush_ex(uvmqtt_client_t *c, bool sync_ok) {
  cflush_stop(c);
  if (!c->stream || c->state < C_MQTT || c->state == C_CLOSING)
    return;
  const uvmqtt_iov_t *iov;
  uvmqtt_out_batch_t *batch;
  ENTER(c);
  size_t n = uvmqtt__session_take_output(c->session, now_ms(c), &iov, &batch);
  if (n > 0) {
    uv_buf_t small[16], *bufs = small;
    if (n > 16)
      bufs = uvmqtt__malloc(n * sizeof(uv_buf_t));
    if (!bufs) {
      uvmqtt__session_output_done(c->session, batch, UVMQTT_ENOMEM);
      connection_drop(c, UVMQTT_ENOMEM);
    } else {
      size_t total = 0, first = 0;
      for (size_t i = 0; i < n; i++) {
        bufs[i] = uv_buf_init((char *)iov[i].base, (unsigned)iov[i].len);
        total += iov[i].len;
      }
      int rc = 0;
      if (sync_ok && c->writes == 0 && c->stream->ops->try_write) {
        rc = c->stream->ops->try_write(c->stream, bufs, (unsigned)n);
        if (rc >= 0 && (size_t)rc == total) {
          uvmqtt__session_output_done(c->session, batch, 0);
          first = n;
        } else if (rc >= 0) {
          /* Partly taken: queue the rest. */
          size_t w = (size_t)rc;
          while (w >= bufs[first].len)
            w -= bufs[first++].len;
          bufs[first].base += w;
          bufs[first].len -= w;
          rc = 0;
        }
      }
      if (rc == 0 && first < n)
        rc = uvmqtt__stream_write(c->stream, bufs + first,
                                  (unsigned)(n - first), on_written, batch);
      if (bufs != small)
        uvmqtt__free(bufs);
      if (rc < 0) {
        uvmqtt__session_output_done(c->session, batch, rc);
        connection_drop(c, rc);
      } else if (first < n) {
        c->writes++;
      }
    }
  }
  arm_timer(c);
  LEAVE(c);
}

static void flush_now(uvmqtt_client_t *c) {
  flush_ex(c, false);
}

/* ---- timers
 * ----------------------------------------------------------------------- */

static void arm_timer(uvmqtt_client_t *c) {
  uint64_t now = now_ms(c), due = UINT64_MAX;
  if (c->state == C_CLOSING)
    return;
  if (c->state == C_RESOLVING || c->state == C_TRANSPORT || c->state == C_MQTT)
    due = c->at ? c->at->deadline : UINT64_MAX;
  if (c->state == C_MQTT || c->state == C_CONNECTED) {
    uint64_t k = uvmqtt__session_deadline(c->session);
    if (k < due)
      due = k;
  }
  if (c->state == C_WAIT)
    return; /* the reconnect delay owns the timer */
  if (due == UINT64_MAX) {
    ctimer_stop(c);
    return;
  }
  ctimer_start(c, due > now ? due - now : 0);
}

static void client_timer(uvmqtt_client_t *c) {
  uint64_t now = now_ms(c);
  ENTER(c);
  if (c->state == C_WAIT) {
    start_attempt(c);
  } else if ((c->state == C_RESOLVING || c->state == C_TRANSPORT ||
              c->state == C_MQTT) &&
             c->at && now >= c->at->deadline) {
    clog_(c, UVMQTT_LOG_WARN, "connection attempt timed out");
    connection_drop(c, UVMQTT_ETIMEDOUT);
  } else if (c->state == C_MQTT || c->state == C_CONNECTED) {
    int rc = uvmqtt__session_tick(c->session, now);
    if (rc < 0)
      connection_drop(c, rc);
    else
      arm_timer(c);
  }
  LEAVE(c);
}

/* ---- connecting
 * -------------------------------------------------------------------- */

static void servers_free(uvmqtt_client_t *c) {
  uvmqtt__free(c->servers);
  c->servers = NULL;
  c->nservers = c->cur_server = 0;
}

/* Frees the strings of a server parsed by parse_uri(). */
static void server_clear(server_spec_t *sv) {
  uvmqtt__free(sv->host);
  uvmqtt__free(sv->path);
  uvmqtt__free(sv->user);
  uvmqtt__free(sv->pass);
}

static size_t str_size(const char *s) {
  return s ? strlen(s) + 1 : 0;
}

static uint32_t str_put(char *base, size_t *off, const char *s) {
  if (!s)
    return 0;
  size_t n = strlen(s) + 1;
  uint32_t at = (uint32_t)*off;
  memcpy(base + at, s, n);
  *off += n;
  return at;
}

/* Copies n servers and their strings into one allocation. NULL: ENOMEM. */
static server_t *servers_pack(const server_spec_t *src, size_t n) {
  size_t size = n * sizeof(server_t);
  for (size_t i = 0; i < n; i++)
    size += str_size(src[i].host) + str_size(src[i].path) +
            str_size(src[i].user) + str_size(src[i].pass);
  server_t *v = size <= UINT32_MAX ? uvmqtt__malloc(size) : NULL;
  if (!v)
    return NULL;
  size_t off = n * sizeof(server_t);
  for (size_t i = 0; i < n; i++) {
    v[i].port = src[i].port;
    v[i].scheme = src[i].scheme;
    v[i].has_user = src[i].has_user;
    v[i].has_pass = src[i].has_pass;
    v[i].host = str_put((char *)v, &off, src[i].host);
    v[i].path = str_put((char *)v, &off, src[i].path);
    v[i].user = str_put((char *)v, &off, src[i].user);
    v[i].pass = str_put((char *)v, &off, src[i].pass);
  }
  return v;
}

/* Server i of the client's list, its strings pointing into the list. */
static server_spec_t server_at(const uvmqtt_client_t *c, size_t i) {
  const server_t *s = &c->servers[i];
  char *b = (char *)c->servers;
  server_spec_t sp;
  sp.host = s->host ? b + s->host : NULL;
  sp.path = s->path ? b + s->path : NULL;
  sp.user = s->user ? b + s->user : NULL;
  sp.pass = s->pass ? b + s->pass : NULL;
  sp.port = s->port;
  sp.scheme = s->scheme;
  sp.has_user = s->has_user;
  sp.has_pass = s->has_pass;
  return sp;
}

static uint16_t default_port(const uvmqtt_client_t *c, int scheme) {
  switch (scheme) {
  case S_MQTTS:
    return 8883;
  case S_WS:
    return 80;
  case S_WSS:
    return 443;
  default:
    return CX(c)->tls_for_tcp ? 8883 : 1883;
  }
}

static int pct_decode(char *s) {
  char *w = s;
  for (char *r = s; *r; r++) {
    if (*r == '%') {
      int hi, lo;
      if (sscanf(r + 1, "%1x%1x", (unsigned *)&hi, (unsigned *)&lo) != 2)
        return UVMQTT_EURI;
      *w++ = (char)(hi * 16 + lo);
      r += 2;
    } else {
      *w++ = *r;
    }
  }
  *w = '\0';
  return 0;
}

/* Parses scheme://[user[:pass]@]host[:port][/path]. */
static int parse_uri(const uvmqtt_client_t *c, const char *uri,
                     server_spec_t *sv) {
  static const struct {
    const char *name;
    int scheme;
  } schemes[] = {{"mqtt://", S_MQTT}, {"tcp://", S_MQTT}, {"mqtts://", S_MQTTS},
                 {"ssl://", S_MQTTS}, {"ws://", S_WS},    {"wss://", S_WSS}};
  memset(sv, 0, sizeof(*sv));
  const char *p = NULL;
  for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
    size_t n = strlen(schemes[i].name);
    if (strncasecmp(uri, schemes[i].name, n) == 0) {
      sv->scheme = schemes[i].scheme;
      p = uri + n;
      break;
    }
  }
  if (!p)
    return UVMQTT_EURI;
#if !UVMQTT_HAVE_TLS
  if (sv->scheme == S_MQTTS || sv->scheme == S_WSS)
    return UVMQTT_ENOTSUP;
#endif
#if !UVMQTT_HAVE_WS
  if (sv->scheme == S_WS || sv->scheme == S_WSS)
    return UVMQTT_ENOTSUP;
#endif
  (void)c;
  const char *end = p + strcspn(p, "/?#");
  const char *at = NULL;
  for (const char *q = p; q < end; q++)
    if (*q == '@')
      at = q;
  int rc = UVMQTT_ENOMEM;
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    size_t ulen = (size_t)((colon ? colon : at) - p);
    sv->user = uvmqtt__strndup(p, ulen);
    sv->has_user = true;
    if (!sv->user)
      goto fail;
    if (pct_decode(sv->user))
      goto bad;
    if (colon) {
      sv->pass = uvmqtt__strndup(colon + 1, (size_t)(at - colon - 1));
      sv->has_pass = true;
      if (!sv->pass)
        goto fail;
      if (pct_decode(sv->pass))
        goto bad;
    }
    p = at + 1;
  }
  const char *hend;
  const char *portp = NULL;
  if (*p == '[') {
    hend = memchr(p, ']', (size_t)(end - p));
    if (!hend)
      goto bad;
    sv->host = uvmqtt__strndup(p + 1, (size_t)(hend - p - 1));
    if (hend + 1 < end) {
      if (hend[1] != ':')
        goto bad;
      portp = hend + 2;
    }
  } else {
    hend = memchr(p, ':', (size_t)(end - p));
    if (hend)
      portp = hend + 1;
    else
      hend = end;
    sv->host = uvmqtt__strndup(p, (size_t)(hend - p));
  }
  if (!sv->host)
    goto fail;
  if (!*sv->host)
    goto bad;
  if (portp) {
    char *e;
    long port = strtol(portp, &e, 10);
    if (e != end || port <= 0 || port > 65535)
      goto bad;
    sv->port = (uint16_t)port;
  }
  if ((sv->scheme == S_WS || sv->scheme == S_WSS) && *end == '/') {
    sv->path = uvmqtt__strdup(end);
    if (!sv->path)
      goto fail;
  }
  return 0;
bad:
  rc = UVMQTT_EURI;
fail:
  server_clear(sv);
  memset(sv, 0, sizeof(*sv));
  return rc;
}

static int client_id_ok(const uvmqtt_client_t *c) {
  if (c->o.version != UVMQTT_V5 && c->o.empty_id && !c->o.clean)
    return UVMQTT_ECLIENTID;
  return 0;
}

static void random_id(char *out, size_t cap) {
  uint8_t r[8];
  if (uv_random(NULL, NULL, r, sizeof(r), 0, NULL) != 0) {
    uint64_t t = uv_hrtime() ^ (uint64_t)(uintptr_t)out;
    memcpy(r, &t, sizeof(r));
  }
  snprintf(out, cap, "uvmqtt-%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1],
           r[2], r[3], r[4], r[5], r[6], r[7]);
}

/* Takes over `servers` (from servers_pack(), may be NULL). */
static int begin(uvmqtt_client_t *c, server_t *servers, size_t n, bool srv) {
  if (c->state == C_CLOSING || c->close_requested) {
    uvmqtt__free(servers);
    return UVMQTT_ECLOSED;
  }
  servers_free(c);
  c->servers = servers;
  c->nservers = (uint16_t)n;
  c->cur_server = 0;
  c->srv_mode = srv;
  c->srv_done = false;
  c->user_disconnect = false;
  c->attempt = 0;
  c->state = C_WAIT;
  ctimer_start(c, 0); /* never from inside the call */
  return 0;
}

/* Connecting, connected, or waiting to reconnect: a new connect call is
 * refused until the client is idle (disconnected by the application, or
 * given up). */
static bool busy(const uvmqtt_client_t *c) {
  return c->state != C_IDLE;
}

int uvmqtt_client_connect(uvmqtt_client_t *c, const char *host, int port) {
  if (!c || !host || !*host || port < 0 || port > 65535)
    return UVMQTT_EINVAL;
  if (c->state == C_CLOSING || c->close_requested)
    return UVMQTT_ECLOSED;
  if (busy(c))
    return UVMQTT_EBUSY;
  int rc = client_id_ok(c);
  if (rc < 0)
    return rc;
  server_spec_t tmp;
  memset(&tmp, 0, sizeof(tmp));
  tmp.host = (char *)host;
  tmp.scheme = CX(c)->tls_for_tcp ? S_MQTTS : S_MQTT;
  tmp.port = (uint16_t)port;
  server_t *sv = servers_pack(&tmp, 1);
  if (!sv)
    return UVMQTT_ENOMEM;
  return begin(c, sv, 1, false);
}

int uvmqtt_client_connect_uris(uvmqtt_client_t *c, const char *const *uris,
                               size_t count) {
  if (!c || !uris || count == 0 || count > UINT16_MAX)
    return UVMQTT_EINVAL;
  if (c->state == C_CLOSING || c->close_requested)
    return UVMQTT_ECLOSED;
  if (busy(c))
    return UVMQTT_EBUSY;
  int rc = client_id_ok(c);
  if (rc < 0)
    return rc;
  server_spec_t *sv = uvmqtt__calloc(count, sizeof(*sv));
  if (!sv)
    return UVMQTT_ENOMEM;
  for (size_t i = 0; i < count; i++) {
    rc = uris[i] ? parse_uri(c, uris[i], &sv[i]) : UVMQTT_EURI;
    if (rc == 0 && (sv[i].scheme == S_MQTTS || sv[i].scheme == S_WSS) &&
        !CX(c)->tls)
      rc = UVMQTT_EINVAL; /* TLS scheme without a TLS configuration */
    if (rc < 0)
      break;
  }
  server_t *packed = rc < 0 ? NULL : servers_pack(sv, count);
  if (rc == 0 && !packed)
    rc = UVMQTT_ENOMEM;
  /* sv[i] too: it may have parsed before the TLS check refused it. */
  for (size_t j = 0; j < count; j++)
    server_clear(&sv[j]);
  uvmqtt__free(sv);
  return rc < 0 ? rc : begin(c, packed, count, false);
}

int uvmqtt_client_connect_uri(uvmqtt_client_t *c, const char *uri) {
  return uvmqtt_client_connect_uris(c, &uri, 1);
}

int uvmqtt_client_connect_srv(uvmqtt_client_t *c, const char *domain) {
  if (!c || !domain || !*domain)
    return UVMQTT_EINVAL;
#if !UVMQTT_HAVE_SRV
  return UVMQTT_ENOTSUP;
#else
  if (c->state == C_CLOSING || c->close_requested)
    return UVMQTT_ECLOSED;
  if (busy(c))
    return UVMQTT_EBUSY;
  int rc = client_id_ok(c);
  if (rc < 0)
    return rc;
  rare_t *r = rare_get(c);
  char *d = r ? uvmqtt__strdup(domain) : NULL;
  if (!d)
    return UVMQTT_ENOMEM;
  uvmqtt__free(r->srv_domain);
  r->srv_domain = d;
  return begin(c, NULL, 0, true);
#endif
}

static int ensure_resolver(uvmqtt_client_t *c) {
  if (c->at->resolver)
    return 0;
  return uvmqtt__resolver_new(c->lc->loop, CX(c)->dns_servers,
                              CX(c)->dns_timeout, &c->at->resolver);
}

/* The current attempt failed: try the next address, then the next server,
 * then give up until the backoff expires. */
static void attempt_failed(uvmqtt_client_t *c, int status);

static void on_stream_closed(uvmqtt_stream_t *s) {
  uvmqtt_client_t *c = s->data;
  c->open_handles--;
  if (c->state == C_CLOSING)
    close_now(c);
}

static void close_stream(uvmqtt_client_t *c) {
  uvmqtt_stream_t *s = c->stream;
  if (!s && c->at)
    s = c->at->opening;
  c->stream = NULL;
  if (c->at)
    c->at->opening = NULL;
  if (s) {
    s->read_cb = NULL;
    uvmqtt__stream_close(s, on_stream_closed);
  }
}

static void on_read(uvmqtt_stream_t *s, ssize_t nread, const uint8_t *buf) {
  uvmqtt_client_t *c = s->data;
  ENTER(c);
  if (nread < 0) {
    connection_drop(c, nread == UV_EOF ? UVMQTT_EPEERCLOSED : (int)nread);
  } else if (!c->drop_requested && c->state != C_CLOSING) {
    int rc = uvmqtt__session_input(c->session, now_ms(c), buf, (size_t)nread);
    if (rc < 0) {
      connection_drop(c, rc);
    } else {
      /* Acknowledgements or new publishes go out in this iteration and
       * carry the TCP ACK: the tcp layer need not send one at once. */
      if (c->stream && uvmqtt__session_has_output(c->session))
        uvmqtt__tcp_reply(c->stream);
      arm_timer(c);
    }
  }
  LEAVE(c);
}

static void send_connect(uvmqtt_client_t *c) {
  server_spec_t cur;
  const server_spec_t *sv = NULL;
  if (c->nservers) {
    cur = server_at(c, c->cur_server);
    sv = &cur;
  }
  uvmqtt_connect_t p;
  memset(&p, 0, sizeof(p));
  p.protocol_version = (uint8_t)c->o.version;
  p.clean_start = c->o.clean;
  p.keep_alive = (uint16_t)c->o.keepalive;
  p.client_id.data = c->client_id;
  p.client_id.len = strlen(c->client_id);
  if (CX(c)->will_topic) {
    p.will = true;
    p.will_qos = (uint8_t)CX(c)->will_qos;
    p.will_retain = CX(c)->will_retain;
    p.will_topic.data = CX(c)->will_topic;
    p.will_topic.len = strlen(CX(c)->will_topic);
    p.will_payload.data = CX(c)->will_payload;
    p.will_payload.len = CX(c)->will_len;
    if (CX(c)->will_props)
      p.will_props = *CX(c)->will_props;
  }
  const char *user = CX(c)->username;
  const uint8_t *pass = CX(c)->password;
  size_t pass_len = CX(c)->password_len;
  bool has_pass = CX(c)->has_password;
  if (sv && sv->has_user) {
    user = sv->user;
    has_pass = sv->has_pass;
    pass = (const uint8_t *)sv->pass;
    pass_len = sv->pass ? strlen(sv->pass) : 0;
  }
  if (user) {
    p.has_username = true;
    p.username.data = user;
    p.username.len = strlen(user);
  }
  if (has_pass) {
    p.has_password = true;
    p.password.data = pass ? pass : (const uint8_t *)"";
    p.password.len = pass_len;
  }
  if (c->o.version == UVMQTT_V5) {
    if (CX(c)->connect_props)
      p.props = *CX(c)->connect_props;
    if (CX(c)->has_session_expiry) {
      p.props.present |= UVMQTT_PROP_BIT(UVMQTT_PROP_SESSION_EXPIRY_INTERVAL);
      p.props.session_expiry_interval = CX(c)->session_expiry;
    }
    if (c->o.max_packet_size < UVMQTT_MAX_REMAINING_LENGTH) {
      p.props.present |= UVMQTT_PROP_BIT(UVMQTT_PROP_MAXIMUM_PACKET_SIZE);
      p.props.maximum_packet_size = c->o.max_packet_size;
    }
    if (CX(c)->topic_alias_in) {
      p.props.present |= UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS_MAXIMUM);
      p.props.topic_alias_maximum = CX(c)->topic_alias_in;
    }
    if (CX(c)->receive_max) {
      p.props.present |= UVMQTT_PROP_BIT(UVMQTT_PROP_RECEIVE_MAXIMUM);
      p.props.receive_maximum = CX(c)->receive_max;
    }
    if (CX(c)->request_response_info) {
      p.props.present |=
          UVMQTT_PROP_BIT(UVMQTT_PROP_REQUEST_RESPONSE_INFORMATION);
      p.props.request_response_information = 1;
    }
    if (CX(c)->auth_method) {
      p.props.present |= UVMQTT_PROP_BIT(UVMQTT_PROP_AUTHENTICATION_METHOD);
      p.props.authentication_method.data = CX(c)->auth_method;
      p.props.authentication_method.len = strlen(CX(c)->auth_method);
      if (CX(c)->auth_data) {
        p.props.present |= UVMQTT_PROP_BIT(UVMQTT_PROP_AUTHENTICATION_DATA);
        p.props.authentication_data.data = CX(c)->auth_data;
        p.props.authentication_data.len = CX(c)->auth_data_len;
      }
    }
  }
  int rc = uvmqtt__session_connect(c->session, now_ms(c), &p);
  if (rc < 0) {
    clog_(c, UVMQTT_LOG_ERROR, "cannot encode CONNECT: %s",
          uvmqtt_strerror(rc));
    connection_drop(c, rc);
    return;
  }
  c->state = C_MQTT;
  /* From the transport's open callback, not an API call: the CONNECT batch
   * may go out with try_write() and no write request. */
  flush_ex(c, true);
}

#if UVMQTT_HAVE_TLS || UVMQTT_HAVE_WS
static void layer_opened(uvmqtt_stream_t *s, int status);
#endif

/* Log lines from the transport layers go to the client's log. */
static void on_layer_log(uvmqtt_stream_t *s, int level, const char *msg) {
  uvmqtt_client_t *c = s->data;
  clog_(c, level, "%s: %s", s->ops->name, msg);
}

/* Stacks the next layer for the current server, or starts MQTT. */
static void next_layer(uvmqtt_client_t *c, uvmqtt_stream_t *s) {
  server_spec_t cur = server_at(c, c->cur_server);
  const server_spec_t *sv = &cur;
  s->log_cb = on_layer_log;
#if UVMQTT_HAVE_TLS || UVMQTT_HAVE_WS
  int rc = 0;
  uvmqtt_stream_t *up = NULL;
#endif
  (void)sv;
#if UVMQTT_HAVE_TLS
  if ((sv->scheme == S_MQTTS || sv->scheme == S_WSS) &&
      strcmp(s->ops->name, "tcp") == 0) {
    rc = uvmqtt__tls_new(s, CX(c)->tls, sv->host, &up);
    goto stack;
  }
#endif
#if UVMQTT_HAVE_WS
  if ((sv->scheme == S_WS || sv->scheme == S_WSS) &&
      strcmp(s->ops->name, "ws") != 0) {
    char host[300];
    uint16_t port = sv->port ? sv->port : default_port(c, sv->scheme);
    bool v6 = strchr(sv->host, ':') != NULL;
    if (port == default_port(c, sv->scheme))
      snprintf(host, sizeof(host), v6 ? "[%s]" : "%s", sv->host);
    else
      snprintf(host, sizeof(host), v6 ? "[%s]:%u" : "%s:%u", sv->host, port);
    uvmqtt_ws_opts_t wo;
    memset(&wo, 0, sizeof(wo));
    wo.host = host;
    wo.path = sv->path ? sv->path : (CX(c)->ws_path ? CX(c)->ws_path : "/mqtt");
    wo.protocol = c->o.version == UVMQTT_V31 ? "mqttv3.1" : "mqtt";
    wo.headers = (const char *const *)CX(c)->ws_headers;
    wo.header_count = CX(c)->ws_header_count;
    rc = uvmqtt__ws_new(s, &wo, &up);
    goto stack;
  }
#endif
  /* The stack is complete. */
  c->stream = s;
  c->at->opening = NULL;
  s->read_cb = on_read;
  send_connect(c);
  return;
#if UVMQTT_HAVE_TLS || UVMQTT_HAVE_WS
stack:
  if (rc < 0) {
    c->at->opening = s;
    attempt_failed(c, rc);
    return;
  }
  up->data = c;
  up->read_cb = NULL;
  up->log_cb = on_layer_log;
  c->at->opening = up;
  rc = up->ops->open(up, layer_opened);
  if (rc < 0)
    attempt_failed(c, rc);
#endif
}

#if UVMQTT_HAVE_TLS || UVMQTT_HAVE_WS
static void layer_opened(uvmqtt_stream_t *s, int status) {
  uvmqtt_client_t *c = s->data;
  ENTER(c);
  if (status < 0) {
    attempt_t *at = c->at;
    at->http_status = 0;
#if UVMQTT_HAVE_TLS
    /* A client with a TLS configuration has its rare block. */
    if (strcmp(s->ops->name, "tls") == 0 && c->rare)
      uvmqtt__tls_last_error(s, &c->rare->tls_err, &c->rare->tls_flags);
#endif
#if UVMQTT_HAVE_WS
    if (status == UVMQTT_EWS_STATUS && strcmp(s->ops->name, "ws") == 0)
      at->http_status = uvmqtt__ws_http_status(s);
#endif
    if (at->http_status)
      clog_(c, UVMQTT_LOG_WARN, "%s handshake failed: %s (HTTP %d)",
            s->ops->name, uvmqtt_strerror(status), at->http_status);
    else
      clog_(c, UVMQTT_LOG_WARN, "%s handshake failed: %s", s->ops->name,
            uvmqtt_strerror(status));
    attempt_failed(c, status);
  } else {
    next_layer(c, s);
  }
  LEAVE(c);
}
#endif

static void try_address(uvmqtt_client_t *c);

static void tcp_opened(uvmqtt_stream_t *s, int status) {
  uvmqtt_client_t *c = s->data;
  ENTER(c);
  if (status < 0) {
    clog_(c, UVMQTT_LOG_DEBUG, "tcp connect failed: %s",
          uvmqtt_strerror(status));
    close_stream(c);
    c->at->cur_addr++;
    if (c->at->cur_addr < c->at->naddrs)
      try_address(c);
    else
      attempt_failed(c, status);
  } else {
    /* Connected: the address list is only needed again after a drop,
     * and every new attempt resolves afresh. */
    uvmqtt__free(c->at->addrs);
    c->at->addrs = NULL;
    c->at->naddrs = c->at->cur_addr = 0;
    next_layer(c, s);
  }
  LEAVE(c);
}

static void try_address(uvmqtt_client_t *c) {
  struct sockaddr_storage bind_ss;
  uvmqtt_tcp_opts_t to;
  memset(&to, 0, sizeof(to));
  to.nodelay = c->o.nodelay;
  if (CX(c)->bind) {
    if (uv_ip4_addr(CX(c)->bind, 0, (struct sockaddr_in *)&bind_ss) != 0)
      uv_ip6_addr(CX(c)->bind, 0, (struct sockaddr_in6 *)&bind_ss);
    to.bind_addr = (struct sockaddr *)&bind_ss;
  }
  attempt_t *at = c->at;
  while (at->cur_addr < at->naddrs) {
    uvmqtt_stream_t *s;
    int rc = uvmqtt__tcp_connect(c->lc->loop,
                                 (struct sockaddr *)&at->addrs[at->cur_addr],
                                 &to, tcp_opened, c, &s);
    if (rc == 0) {
      c->open_handles++;
      at->opening = s;
      c->state = C_TRANSPORT;
      return;
    }
    at->last_error = rc;
    at->cur_addr++;
  }
  attempt_failed(c, at->last_error ? at->last_error : UVMQTT_EINVAL);
}

static void on_resolver_released(void *arg) {
  uvmqtt_client_t *c = arg;
  c->open_handles--;
  if (c->state == C_CLOSING)
    close_now(c);
}

/* A resolver holds two handles and its request memory; a connected client
 * does not need it until the next attempt, which makes a new one. */
static void release_resolver(uvmqtt_client_t *c) {
  attempt_t *at = c->at;
  if (!at->resolver || c->srv_mode || at->resolve_req)
    return;
  c->open_handles++;
  uvmqtt__resolver_close(at->resolver, on_resolver_released, c);
  at->resolver = NULL;
}

static void on_addrs(int status, const struct sockaddr_storage *addrs, size_t n,
                     void *arg) {
  uvmqtt_client_t *c = arg;
  ENTER(c);
  attempt_t *at = c->at;
  at->resolve_req = NULL;
  if (status < 0 || n == 0) {
    clog_(c, UVMQTT_LOG_WARN, "cannot resolve %s: %s",
          server_at(c, c->cur_server).host,
          uvmqtt_strerror(status < 0 ? status : UVMQTT_EDNS_NODATA));
    attempt_failed(c, status < 0 ? status : UVMQTT_EDNS_NODATA);
  } else {
    uvmqtt__free(at->addrs);
    at->naddrs = 0;
    at->addrs = n <= UINT32_MAX ? uvmqtt__malloc(n * sizeof(*addrs)) : NULL;
    if (!at->addrs) {
      attempt_failed(c, UVMQTT_ENOMEM);
    } else {
      memcpy(at->addrs, addrs, n * sizeof(*addrs));
      at->naddrs = (uint32_t)n;
      at->cur_addr = 0;
      release_resolver(c);
      try_address(c);
    }
  }
  LEAVE(c);
}

static void resolve_server(uvmqtt_client_t *c) {
  server_spec_t cur = server_at(c, c->cur_server);
  const server_spec_t *sv = &cur;
  uint16_t port = sv->port ? sv->port : default_port(c, sv->scheme);
  struct sockaddr_storage lit;
  if (!CX(c)->dns_servers &&
      (uv_ip4_addr(sv->host, port, (struct sockaddr_in *)&lit) == 0 ||
       uv_ip6_addr(sv->host, port, (struct sockaddr_in6 *)&lit) == 0)) {
    /* An address literal needs no lookup, and no resolver. We run from a
     * timer or another callback here, never from inside an API call. */
    attempt_t *at = c->at;
    uvmqtt__free(at->addrs);
    at->naddrs = 0;
    at->addrs = uvmqtt__malloc(sizeof(lit));
    if (!at->addrs) {
      attempt_failed(c, UVMQTT_ENOMEM);
      return;
    }
    memcpy(at->addrs, &lit, sizeof(lit));
    at->naddrs = 1;
    at->cur_addr = 0;
    c->state = C_RESOLVING;
    try_address(c);
    return;
  }
  int rc = ensure_resolver(c);
  if (rc == 0) {
    c->state = C_RESOLVING;
    rc = uvmqtt__resolve_addr(c->at->resolver, sv->host, port, on_addrs, c,
                              &c->at->resolve_req);
  }
  if (rc < 0)
    attempt_failed(c, rc);
}

static void on_srv(int status, const uvmqtt_srv_target_t *t, size_t n,
                   void *arg) {
  uvmqtt_client_t *c = arg;
  ENTER(c);
  c->at->resolve_req = NULL;
  server_spec_t *tmp = NULL;
  server_t *sv = NULL;
  if (n > UINT16_MAX)
    n = UINT16_MAX; /* in order of preference: the rest would never be tried */
  if (status == 0 && n > 0 && (tmp = uvmqtt__calloc(n, sizeof(*tmp)))) {
    for (size_t i = 0; i < n; i++) {
      tmp[i].host = (char *)t[i].host;
      tmp[i].port = t[i].port;
      tmp[i].scheme = CX(c)->tls ? S_MQTTS : S_MQTT;
    }
    sv = servers_pack(tmp, n);
    uvmqtt__free(tmp);
  }
  if (status < 0 || n == 0 || !sv) {
    clog_(c, UVMQTT_LOG_WARN, "SRV lookup for %s failed: %s",
          c->rare->srv_domain,
          uvmqtt_strerror(status < 0 ? status : UVMQTT_ENOMEM));
    c->nservers = 0;
    attempt_failed(c, status < 0 ? status : UVMQTT_ENOMEM);
  } else {
    for (size_t i = 0; i < n; i++)
      clog_(c, UVMQTT_LOG_DEBUG, "SRV target %s:%u (priority %u weight %u)",
            t[i].host, t[i].port, t[i].priority, t[i].weight);
    servers_free(c);
    c->servers = sv;
    c->nservers = (uint16_t)n;
    c->cur_server = 0;
    c->srv_done = true;
    resolve_server(c);
  }
  LEAVE(c);
}

static void start_attempt(uvmqtt_client_t *c) {
  if (c->rare && c->rare->reconnect_cb && c->attempt > 0 &&
      c->rare->reconnect_cb(c, c->attempt, c->rare->reconnect_arg) != 0) {
    c->state = C_IDLE;
    return;
  }
  if (c->state == C_CLOSING || c->state == C_IDLE)
    return;
  if (!c->at && !(c->at = uvmqtt__calloc(1, sizeof(*c->at)))) {
    attempt_failed(c, UVMQTT_ENOMEM);
    return;
  }
  c->at->deadline = now_ms(c) + c->o.connect_timeout;
  c->state = C_RESOLVING;
  arm_timer(c);
  if (c->srv_mode && !c->srv_done) {
    char name[300];
    int rc = ensure_resolver(c);
    if (rc == 0 && uvmqtt__srv_name(name, sizeof(name), c->rare->srv_domain,
                                    CX(c)->tls != NULL) < 0)
      rc = UVMQTT_EINVAL;
    if (rc == 0)
      rc = uvmqtt__resolve_srv(c->at->resolver, name, on_srv, c,
                               &c->at->resolve_req);
    if (rc < 0)
      attempt_failed(c, rc);
    return;
  }
  resolve_server(c);
}

static bool refusal_is_final(const uvmqtt_client_t *c, uint8_t code) {
  if (c->o.version != UVMQTT_V5)
    return code == 1 || code == 2 || code == 4 || code == 5;
  switch (code) {
  case 0x84: /* unsupported protocol version */
  case 0x85: /* client identifier not valid */
  case 0x86: /* bad user name or password */
  case 0x87: /* not authorized */
  case 0x8A: /* banned */
  case 0x8C: /* bad authentication method */
    return true;
  default:
    return false;
  }
}

static void report_connect_failure(uvmqtt_client_t *c, int status,
                                   const uvmqtt_connack_t *ack) {
  if (c->connect_cb)
    c->connect_cb(c, status, ack, c->connect_arg);
}

/* Errors of our own making: no other server, and no retry, helps. */
static bool config_error(int status) {
  return status == UVMQTT_EINVAL || status == UVMQTT_ETLS_CONFIG ||
         status == UVMQTT_ETLS_FILE || status == UVMQTT_ENOTSUP;
}

/* Whether reconnecting later may help. A refused WebSocket upgrade is
 * worth retrying when the HTTP status says the refusal is temporary. */
static bool attempt_retryable(const uvmqtt_client_t *c, int status) {
  if (status == UVMQTT_EWS_STATUS) {
    int http = c->at ? c->at->http_status : 0;
    return http >= 500 || http == 408 || http == 429;
  }
  switch (status) {
  /* Our configuration or the broker's verdict on us: retrying cannot fix
   * these, so the client stops and reports them. */
  case UVMQTT_ETLS_UNTRUSTED:
  case UVMQTT_ETLS_EXPIRED:
  case UVMQTT_ETLS_HOSTNAME:
  case UVMQTT_ETLS_NOCERT:
  case UVMQTT_ETLS_PSK:
  case UVMQTT_EAUTH:
  case UVMQTT_ECLIENTID:
    return false;
  default:
    /* Network trouble, names that may appear, and a misbehaving broker
     * (as after CONNACK): try again after the backoff. */
    return !config_error(status);
  }
}

static void attempt_failed(uvmqtt_client_t *c, int status) {
  if (c->state == C_CLOSING)
    return;
  close_stream(c);
  attempt_t *at = c->at; /* NULL when it could not be allocated */
  if (at) {
    at->last_error = status;
    if (at->resolve_req) {
      uvmqtt__resolve_cancel(at->resolve_req);
      at->resolve_req = NULL;
    }
  }
  /* More servers in the list: move on at once, unless the error is ours
   * (a bad configuration no other server can fix). */
  if (c->cur_server + 1 < c->nservers && !config_error(status)) {
    c->cur_server++;
    if (at)
      at->cur_addr = at->naddrs = 0;
    c->state = C_WAIT;
    ctimer_start(c, 0);
    return;
  }
  const char *what =
      c->nservers
          ? server_at(c, c->cur_server).host
          : (c->rare && c->rare->srv_domain ? c->rare->srv_domain : "?");
  if (c->nservers > 1 || c->srv_mode)
    clog_(c, UVMQTT_LOG_WARN, "every server failed (last %s: %s)", what,
          uvmqtt_strerror(status));
  else
    clog_(c, UVMQTT_LOG_WARN, "connection to %s failed: %s", what,
          uvmqtt_strerror(status));
  c->state = C_WAIT;
  bool retry = attempt_retryable(c, status);
  /* With SRV, one error names the whole pass; the last one is logged. */
  report_connect_failure(
      c, c->srv_mode && c->srv_done ? UVMQTT_ESRV_EXHAUSTED : status, NULL);
  if (c->state != C_WAIT)
    return; /* the callback connected or closed */
  if (!c->o.reconnect || c->user_disconnect || !retry) {
    c->state = C_IDLE;
    ctimer_stop(c);
    return;
  }
  c->cur_server = 0;
  if (c->srv_mode)
    c->srv_done = false;
  schedule_reconnect(c, false);
}

static void schedule_reconnect(uvmqtt_client_t *c, bool max_delay) {
  double d = c->o.rc_min;
  for (unsigned i = 0; i < c->attempt && d < c->o.rc_max; i++)
    d *= 2;
  if (d > c->o.rc_max || max_delay)
    d = c->o.rc_max;
  if (c->o.jitter > 0) {
    uint32_t r = 0;
    if (uv_random(NULL, NULL, &r, sizeof(r), 0, NULL) != 0)
      r = (uint32_t)uv_hrtime();
    d *= 1.0 + c->o.jitter * (2.0 * (r / 4294967295.0) - 1.0);
  }
  c->attempt++;
  c->state = C_WAIT;
  clog_(c, UVMQTT_LOG_INFO, "reconnecting in %u ms (attempt %u)", (unsigned)d,
        c->attempt);
  ctimer_start(c, (uint64_t)d);
}

/* Applies a pending v5 redirect: the current server's host and port are
 * replaced by the Server Reference ("host[:port]", first of a
 * space-separated list) and a new attempt starts at once. Returns true
 * when followed. */
static bool follow_redirect(uvmqtt_client_t *c, uint8_t reason) {
  rare_t *r = c->rare;
  char *ref = r->redirect_ref;
  r->redirect_ref = NULL;
  bool ok = false;
  if (c->nservers && r->redirects < 5 &&
      (!c->rare->redirect_cb ||
       c->rare->redirect_cb(c, reason, ref, c->rare->redirect_arg) == 0)) {
    ref[strcspn(ref, " ")] = '\0';
    char *host = ref, *colon = strrchr(ref, ':');
    long port = 0;
    if (*ref == '[') {
      char *rb = strchr(ref, ']');
      if (rb) {
        *rb = '\0';
        host = ref + 1;
        colon = rb[1] == ':' ? rb + 1 : NULL;
      }
    } else if (colon && strchr(ref, ':') != colon) {
      colon = NULL; /* a bare IPv6 literal */
    }
    if (colon) {
      *colon = '\0';
      port = strtol(colon + 1, NULL, 10);
    }
    /* The list is one block: it is rebuilt with the new host. */
    size_t n = c->nservers;
    server_spec_t one, *tmp = n == 1 ? &one : uvmqtt__malloc(n * sizeof(*tmp));
    server_t *v = NULL;
    if (tmp && *host && port >= 0 && port <= 65535) {
      for (size_t i = 0; i < n; i++)
        tmp[i] = server_at(c, i);
      tmp[c->cur_server].host = host;
      tmp[c->cur_server].port = (uint16_t)port;
      v = servers_pack(tmp, n);
    }
    if (tmp != &one)
      uvmqtt__free(tmp);
    if (v) {
      clog_(c, UVMQTT_LOG_INFO, "redirected (reason 0x%02x) to %s:%ld", reason,
            host, port);
      uvmqtt__free(c->servers);
      c->servers = v;
      r->redirects++;
      close_stream(c);
      c->state = C_WAIT;
      ctimer_start(c, 0);
      ok = true;
    }
  }
  uvmqtt__free(ref);
  return ok;
}

/* ---- dropping a connection
 * ---------------------------------------------------- */

static void do_drop(uvmqtt_client_t *c) {
  int status = c->drop_status;
  bool was_connected = c->state == C_CONNECTED;
  bool refused = status == UVMQTT_EREFUSED;
  uint8_t reason = c->last_reason;
  c->drop_requested = false;
  c->drop_status = 0;
  if (c->state == C_CLOSING || c->state == C_IDLE || c->state == C_WAIT)
    return;
  uint8_t dr =
      c->o.version == UVMQTT_V5 ? uvmqtt__session_disconnect_reason(status) : 0;
  if (dr && c->stream && (c->state == C_MQTT || c->state == C_CONNECTED) &&
      uvmqtt__session_disconnect(c->session, dr, NULL) == 0) {
    /* The spec asks us to tell the server why (best effort). */
    clog_(c, UVMQTT_LOG_INFO, "sending DISCONNECT with reason 0x%02x", dr);
    flush_now(c);
  }
  uvmqtt__session_connection_lost(c->session,
                                  status ? status : UVMQTT_ENOTCONN);
  if (c->rare && c->rare->redirect_ref && follow_redirect(c, reason))
    return;
  if (!was_connected) {
    if (refused) {
      uvmqtt_connack_t ack;
      memset(&ack, 0, sizeof(ack));
      ack.reason_code = reason;
      clog_(c, UVMQTT_LOG_ERROR, "connection refused: %s (%u)",
            uvmqtt_reason_string(reason, c->o.version != UVMQTT_V5), reason);
      close_stream(c);
      c->state = C_WAIT;
      report_connect_failure(c, UVMQTT_EREFUSED, &ack);
      if (c->state != C_WAIT)
        return;
      if (!c->o.reconnect || c->user_disconnect ||
          refusal_is_final(c, reason)) {
        c->state = C_IDLE;
        return;
      }
      schedule_reconnect(c, false);
      return;
    }
    attempt_failed(c, status);
    return;
  }
  close_stream(c);
  clog_(c, status ? UVMQTT_LOG_WARN : UVMQTT_LOG_INFO, "disconnected: %s",
        uvmqtt_strerror(status));
  c->state = C_WAIT;
  bool reported = c->disconnect_reported;
  c->disconnect_reported = false;
  if (c->disconnect_cb && !reported)
    c->disconnect_cb(c, c->user_disconnect ? 0 : status, NULL,
                     c->disconnect_arg);
  if (c->state != C_WAIT)
    return;
  if (c->user_disconnect || !c->o.reconnect) {
    c->state = C_IDLE;
    ctimer_stop(c);
    return;
  }
  c->cur_server = 0;
  if (c->srv_mode)
    c->srv_done = false;
  schedule_reconnect(c, false);
}

static void connection_drop(uvmqtt_client_t *c, int status) {
  if (c->drop_requested || c->state == C_CLOSING)
    return;
  c->drop_requested = true;
  c->drop_status = status;
}

static void leave(uvmqtt_client_t *c) {
  if (--c->depth > 0)
    return;
  c->depth++;
  while (c->drop_requested && !c->close_requested)
    do_drop(c);
  c->depth--;
  if (c->close_requested && c->state != C_CLOSING) {
    c->close_requested = false;
    close_now(c);
  } else if (c->state == C_CLOSING) {
    close_now(c);
  }
}

/* ---- lifecycle
 * ------------------------------------------------------------------- */

int uvmqtt_client_new(uv_loop_t *loop, const uvmqtt_options_t *opts,
                      uvmqtt_client_t **out) {
  uvmqtt_options_t defaults;
  if (!loop || !out)
    return UVMQTT_EINVAL;
  if (!opts) {
    options_defaults(&defaults);
    opts = &defaults;
  }
  const copts_t *k = &opts->k;
  if (k->version != UVMQTT_V5 && k->empty_id && !k->clean)
    return UVMQTT_ECLIENTID;
  /* The id lives after the struct, in the same allocation. */
  char rid[40];
  const char *id = opts->client_id;
  if (!id) {
    id = rid;
    if (k->empty_id)
      rid[0] = '\0';
    else
      random_id(rid, sizeof(rid));
  }
  /* One allocation: the struct, the id, then the session (8-aligned, all
   * it needs: see uvmqtt__session_init()). */
  size_t idsize = strlen(id) + 1;
  size_t size = offsetof(uvmqtt_client_t, id) + idsize;
  if (size < sizeof(uvmqtt_client_t))
    size = sizeof(uvmqtt_client_t);
  size_t soff = (size + 7) & ~(size_t)7;
  uvmqtt_client_t *c = uvmqtt__calloc(1, soff + uvmqtt__session_size());
  if (!c)
    return UVMQTT_ENOMEM;
  c->log_level = UVMQTT_LOG_INFO;
  c->client_id = memcpy(c->id, id, idsize);
  int rc = copts_copy(&c->o, k);
  if (rc < 0) {
    uvmqtt__free(c);
    return rc;
  }
  /* Hooks that only ever fire with TLS or enhanced authentication keep
   * their state there: allocated now, as their setters cannot fail. */
  if ((CX(c)->tls || CX(c)->auth_method) && !rare_get(c)) {
    ext_free(&c->o);
    uvmqtt__free(c);
    return UVMQTT_ENOMEM;
  }
  uvmqtt_session_config_t sc;
  memset(&sc, 0, sizeof(sc));
  sc.version = (uint8_t)c->o.version;
  sc.max_inflight = opts->max_inflight;
  sc.max_queued = opts->max_queued;
  sc.max_queued_bytes = opts->max_queued_bytes;
  sc.queue_policy = opts->queue_policy;
  sc.max_packet_size = c->o.max_packet_size;
  sc.receive_maximum = CX(c)->receive_max;
  sc.topic_alias_max_in = CX(c)->topic_alias_in;
  sc.topic_alias_auto = CX(c)->topic_alias_auto;
  if ((rc = uvmqtt__session_init((char *)c + soff, &sc, &session_events, c,
                                 &c->session)) < 0) {
    ext_free(&c->o);
    uvmqtt__free(c->rare);
    uvmqtt__free(c);
    return rc;
  }
  if (!(c->lc = lc_acquire(loop))) {
    uvmqtt__session_free(c->session, UVMQTT_ECLOSED);
    ext_free(&c->o);
    uvmqtt__free(c->rare);
    uvmqtt__free(c);
    return UVMQTT_ENOMEM;
  }
  *out = c;
  return 0;
}

static void on_handle_closed(uv_handle_t *h) {
  uvmqtt_client_t *c = h->data;
  c->open_handles--;
  close_now(c);
}

/* Idempotent: advances the teardown as far as it can; called again as
 * each asynchronous close completes. */
static void close_now(uvmqtt_client_t *c) {
  if (c->state != C_CLOSING) {
    bool connected = c->state == C_CONNECTED;
    bool attempting = c->state == C_RESOLVING || c->state == C_TRANSPORT ||
                      c->state == C_MQTT;
    /* Best effort: DISCONNECT is handed to the kernel, not waited for. */
    if (connected && c->stream &&
        uvmqtt__session_disconnect(c->session, 0, NULL) == 0)
      flush_now(c);
    c->state = C_CLOSING;
    c->drop_requested = false;
    if (c->at && c->at->resolve_req) {
      uvmqtt__resolve_cancel(c->at->resolve_req);
      c->at->resolve_req = NULL;
    }
    if (c->stream || (c->at && c->at->opening)) {
      uvmqtt__session_connection_lost(c->session, UVMQTT_ECLOSED);
      close_stream(c);
    }
    if (attempting && c->connect_cb)
      /* The attempt in progress ends: reported as cancelled. */
      c->connect_cb(c, UVMQTT_ECLOSED, NULL, c->connect_arg);
    attempt_end(c); /* closes the resolver */
  }
  if (c->depth > 0)
    return;
  /* Wait for the stream (whose close cancels our writes) first. */
  if (c->open_handles > 0 || c->writes > 0)
    return;
  if (!c->freed_session) {
    c->freed_session = true;
    ENTER(c);
    uvmqtt__session_free(c->session, UVMQTT_ECLOSED);
    c->session = NULL;
    if (c->rare) {
      for (req_t *r = c->rare->reqs; r; r = r->next) {
        r->published = true;
        if (!r->answered) {
          r->answered = true;
          r->cb(c, UVMQTT_ECLOSED, NULL, r->arg);
        }
      }
      req_sweep(c);
      if (c->rare->req_timer) {
        c->open_handles++;
        uv_close((uv_handle_t *)c->rare->req_timer, on_handle_closed);
      }
    }
    c->depth--;
    ctimer_stop(c);
    l_remove(c); /* from the flush list */
    /* Leaving the loop context completes from its idle callback, never
     * from inside uvmqtt_client_close(). */
    c->open_handles++;
    l_push(&c->lc->closing, c);
    uv_idle_start(&c->lc->idle, on_lc_idle);
    return;
  }
  if (c->open_handles > 0)
    return;
  uvmqtt_close_cb cb = c->close_cb;
  if (cb)
    cb(c);
  if (c->rt) {
    /* Routes own small structs; free them with the table. */
    uvmqtt_router_free(c->rt->router);
    while (c->rt->routes) {
      route_t *r = c->rt->routes;
      c->rt->routes = r->next;
      uvmqtt__free(r);
    }
    uvmqtt__free(c->rt);
  }
  while (c->subs) {
    sub_t *s = c->subs;
    c->subs = s->next;
    uvmqtt__free(s);
  }
  servers_free(c);
  client_id_free(c);
  if (c->rare) {
    uvmqtt__free(c->rare->srv_domain);
    uvmqtt__free(c->rare->req_timer);
    uvmqtt__free(c->rare->redirect_ref);
    uvmqtt__free(c->rare);
  }
  ext_free(&c->o);
  uvmqtt__free(c);
}

void uvmqtt_client_close(uvmqtt_client_t *c, uvmqtt_close_cb cb) {
  if (!c || c->state == C_CLOSING || c->close_requested)
    return;
  c->close_cb = cb;
  if (c->depth > 0) {
    c->close_requested = true;
    return;
  }
  close_now(c);
}

void uvmqtt_client_set_data(uvmqtt_client_t *c, void *data) {
  c->data = data;
}
void *uvmqtt_client_get_data(const uvmqtt_client_t *c) {
  return c->data;
}
uv_loop_t *uvmqtt_client_get_loop(const uvmqtt_client_t *c) {
  return c->lc->loop;
}
void uvmqtt_client_on_connect(uvmqtt_client_t *c, uvmqtt_connect_cb cb,
                              void *arg) {
  c->connect_cb = cb;
  c->connect_arg = arg;
}
void uvmqtt_client_on_disconnect(uvmqtt_client_t *c, uvmqtt_disconnect_cb cb,
                                 void *arg) {
  c->disconnect_cb = cb;
  c->disconnect_arg = arg;
}
void uvmqtt_client_on_message(uvmqtt_client_t *c, uvmqtt_message_cb cb,
                              void *arg) {
  c->message_cb = cb;
  c->message_arg = arg;
}
void uvmqtt_client_on_log(uvmqtt_client_t *c, uvmqtt_log_cb cb, void *arg,
                          int max_level) {
  c->log_cb = cb;
  c->log_arg = arg;
  /* Levels are small: clamping keeps every comparison as it was. */
  c->log_level = (int8_t)(max_level < INT8_MIN   ? INT8_MIN
                          : max_level > INT8_MAX ? INT8_MAX
                                                 : max_level);
}
/* For the hooks kept in the rare block: 1 when the caller may store into
 * c->rare, 0 when there is nothing to do (clearing a hook never set), or
 * an error. */
static int hook_block(uvmqtt_client_t *c, bool setting) {
  if (!c)
    return UVMQTT_EINVAL;
  if (!setting && !c->rare)
    return 0;
  return rare_get(c) ? 1 : UVMQTT_ENOMEM;
}

int uvmqtt_client_on_reconnect(uvmqtt_client_t *c, uvmqtt_reconnect_cb cb,
                               void *arg) {
  int rc = hook_block(c, cb != NULL);
  if (rc <= 0)
    return rc;
  c->rare->reconnect_cb = cb;
  c->rare->reconnect_arg = arg;
  return 0;
}

/* Without enhanced authentication configured (then there is no rare
 * block) the callback could never fire: there is nothing to keep. */
void uvmqtt_client_on_auth(uvmqtt_client_t *c, uvmqtt_auth_cb cb, void *arg) {
  if (c->rare) {
    c->rare->auth_cb = cb;
    c->rare->auth_arg = arg;
  }
}

int uvmqtt_client_on_redirect(uvmqtt_client_t *c, uvmqtt_redirect_cb cb,
                              void *arg) {
  int rc = hook_block(c, cb != NULL);
  if (rc <= 0)
    return rc;
  c->rare->redirect_cb = cb;
  c->rare->redirect_arg = arg;
  return 0;
}

int uvmqtt_client_auth(uvmqtt_client_t *c, uint8_t reason, const void *data,
                       size_t len) {
  uvmqtt_props_t p;
  if (!c || (reason != 0x18 && reason != 0x19) || (len && !data) || len > 65535)
    return UVMQTT_EINVAL;
  if (c->o.version != UVMQTT_V5 || !CX(c)->auth_method)
    return UVMQTT_ENOTSUP;
  if (c->state != C_MQTT && c->state != C_CONNECTED)
    return UVMQTT_ENOTCONN;
  memset(&p, 0, sizeof(p));
  p.present = UVMQTT_PROP_BIT(UVMQTT_PROP_AUTHENTICATION_METHOD);
  p.authentication_method.data = CX(c)->auth_method;
  p.authentication_method.len = strlen(CX(c)->auth_method);
  if (data) {
    p.present |= UVMQTT_PROP_BIT(UVMQTT_PROP_AUTHENTICATION_DATA);
    p.authentication_data.data = data;
    p.authentication_data.len = len;
  }
  return uvmqtt__session_auth(c->session, reason, &p);
}

int uvmqtt_client_set_credentials(uvmqtt_client_t *c, const char *username,
                                  const void *password, size_t password_len) {
  if (!c)
    return UVMQTT_EINVAL;
  return set_credentials(&c->o, username, password, password_len);
}

int uvmqtt_client_disconnect(uvmqtt_client_t *c) {
  return uvmqtt_client_disconnect_ex(c, 0, NULL);
}

int uvmqtt_client_disconnect_ex(uvmqtt_client_t *c, uint8_t reason,
                                const uvmqtt_props_t *props) {
  /* The reason codes a client may send in DISCONNECT [MQTT-3.14.2-1]. */
  static const uint8_t allowed[] = {0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x90,
                                    0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99};
  if (!c || !memchr(allowed, reason, sizeof(allowed)))
    return UVMQTT_EINVAL;
  if (props_utf8_ok(props) < 0)
    return UVMQTT_EUTF8;
  if (c->state == C_CLOSING)
    return UVMQTT_ECLOSED;
  c->user_disconnect = true;
  if (c->state == C_WAIT || c->state == C_IDLE) {
    bool was = c->state == C_WAIT;
    ctimer_stop(c);
    c->state = C_IDLE;
    return was ? 0 : UVMQTT_ENOTCONN;
  }
  if (c->state == C_CONNECTED) {
    uvmqtt__session_disconnect(c->session, reason, props);
    flush_now(c);
  }
  ENTER(c);
  /* An attempt still in progress ends as cancelled: the connect callback
   * must never see status 0 without a CONNACK. */
  connection_drop(c, c->state == C_CONNECTED ? 0 : UVMQTT_ECLOSED);
  LEAVE(c);
  return 0;
}

bool uvmqtt_client_is_connected(const uvmqtt_client_t *c) {
  return c && c->state == C_CONNECTED;
}
bool uvmqtt_client_get_reconnect(const uvmqtt_client_t *c) {
  return c && c->o.reconnect;
}
const char *uvmqtt_client_get_client_id(const uvmqtt_client_t *c) {
  return c->client_id;
}
size_t uvmqtt_client_inflight(const uvmqtt_client_t *c) {
  return c->session ? uvmqtt__session_inflight(c->session) : 0;
}
size_t uvmqtt_client_queued(const uvmqtt_client_t *c) {
  return c->session ? uvmqtt__session_queued(c->session) : 0;
}
int uvmqtt_client_tls_error(const uvmqtt_client_t *c, int *mbedtls_err,
                            uint32_t *verify_flags) {
  if (mbedtls_err)
    *mbedtls_err = c->rare ? c->rare->tls_err : 0;
  if (verify_flags)
    *verify_flags = c->rare ? c->rare->tls_flags : 0;
#if UVMQTT_HAVE_TLS
  return 0;
#else
  return UVMQTT_ENOTSUP;
#endif
}

uint8_t uvmqtt_client_last_reason(const uvmqtt_client_t *c) {
  return c->last_reason;
}

/* ---- publish / subscribe
 * -------------------------------------------------------- */

int uvmqtt_publish_ex(uvmqtt_client_t *c, const uvmqtt_publish_opts_t *po,
                      uvmqtt_publish_cb cb, void *arg) {
  if (!c || !po || !po->topic)
    return UVMQTT_EINVAL;
  if (c->state == C_CLOSING || c->close_requested)
    return UVMQTT_ECLOSED;
  if (po->qos < 0 || po->qos > 2)
    return UVMQTT_EQOS;
  size_t tlen = po->topic_len ? po->topic_len : strlen(po->topic);
  int rc = uvmqtt_topic_validate(po->topic, tlen);
  if (rc < 0)
    return rc;
  if (po->props && c->o.version == UVMQTT_V5) {
    if ((rc = props_utf8_ok(po->props)) < 0)
      return rc;
    /* [MQTT-3.3.4-6]: subscription identifiers are the server's to send. */
    if (po->props->present &
        UVMQTT_PROP_BIT(UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER))
      return UVMQTT_EPROPBAD;
    /* A hand-set alias and automatic ones would disagree at the broker. */
    if ((po->props->present & UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS)) &&
        (CX(c)->topic_alias_auto || po->props->topic_alias == 0))
      return UVMQTT_ETOPICALIAS;
  }
  uvmqtt_session_pub_t p;
  memset(&p, 0, sizeof(p));
  p.topic = po->topic;
  p.topic_len = tlen;
  p.payload = po->payload;
  p.payload_len = po->payload_len;
  p.qos = (uint8_t)po->qos;
  p.retain = po->retain;
  p.props = po->props;
  p.zero_copy = po->zero_copy;
  if (po->props && c->o.version == UVMQTT_V5 &&
      (po->props->present &
       UVMQTT_PROP_BIT(UVMQTT_PROP_MESSAGE_EXPIRY_INTERVAL)))
    p.expiry_s = po->props->message_expiry_interval;
  ENTER(c);
  rc = uvmqtt__session_publish(c->session, now_ms(c), &p, (uvmqtt_session_fn)cb,
                               arg);
  LEAVE(c);
  return rc;
}

int uvmqtt_publish(uvmqtt_client_t *c, const char *topic, const void *payload,
                   size_t len, int qos, bool retain, uvmqtt_publish_cb cb,
                   void *arg) {
  uvmqtt_publish_opts_t po;
  memset(&po, 0, sizeof(po));
  po.topic = topic;
  po.payload = payload;
  po.payload_len = len;
  po.qos = qos;
  po.retain = retain;
  return uvmqtt_publish_ex(c, &po, cb, arg);
}

/* ---- request / response (v5) ------------------------------------------------
 */

static void req_sweep(uvmqtt_client_t *c) {
  for (req_t **pp = &c->rare->reqs, *r; (r = *pp);) {
    if (r->answered && r->published) {
      *pp = r->next;
      uvmqtt__free(r);
    } else {
      pp = &r->next;
    }
  }
}

static void on_req_timer(uv_timer_t *t);

static void req_arm(uvmqtt_client_t *c) {
  uint64_t due = UINT64_MAX, now = now_ms(c);
  if (!c->rare->req_timer || c->state == C_CLOSING)
    return;
  for (req_t *r = c->rare->reqs; r; r = r->next)
    if (!r->answered && r->deadline < due)
      due = r->deadline;
  if (due == UINT64_MAX)
    uv_timer_stop(c->rare->req_timer);
  else
    uv_timer_start(c->rare->req_timer, on_req_timer, due > now ? due - now : 0,
                   0);
}

static void on_req_timer(uv_timer_t *t) {
  uvmqtt_client_t *c = t->data;
  uint64_t now = now_ms(c);
  ENTER(c);
  for (req_t *r = c->rare->reqs; r; r = r->next) {
    if (!r->answered && r->deadline <= now) {
      r->answered = true;
      r->cb(c, UVMQTT_ETIMEDOUT, NULL, r->arg);
    }
  }
  req_sweep(c);
  req_arm(c);
  LEAVE(c);
}

static void req_published(uvmqtt_client_t *c, int status, uint16_t id,
                          void *arg) {
  req_t *r = arg;
  (void)id;
  r->published = true;
  if (status < 0 && !r->answered) {
    r->answered = true;
    r->cb(c, status, NULL, r->arg);
  }
  req_sweep(c);
  req_arm(c);
}

int uvmqtt_request(uvmqtt_client_t *c, const uvmqtt_publish_opts_t *request,
                   const char *response_topic, unsigned timeout_ms,
                   uvmqtt_response_cb cb, void *arg) {
  uvmqtt_props_t props;
  if (!c || !request || !response_topic || !cb || timeout_ms == 0)
    return UVMQTT_EINVAL;
  if (c->o.version != UVMQTT_V5)
    return UVMQTT_ENOTSUP;
  int rc = uvmqtt_topic_validate(response_topic, strlen(response_topic));
  if (rc < 0)
    return rc;
  /* As publish would say, and before a timer is made that the teardown,
   * already past closing its handles, would never close. */
  if (c->state == C_CLOSING || c->close_requested)
    return UVMQTT_ECLOSED;
  rare_t *rr = rare_get(c);
  if (!rr)
    return UVMQTT_ENOMEM;
  if (!rr->req_timer) {
    rr->req_timer = uvmqtt__malloc(sizeof(*rr->req_timer));
    if (!rr->req_timer)
      return UVMQTT_ENOMEM;
    uv_timer_init(c->lc->loop, rr->req_timer);
    rr->req_timer->data = c;
  }
  req_t *r = uvmqtt__calloc(1, sizeof(*r));
  if (!r)
    return UVMQTT_ENOMEM;
  if (uv_random(NULL, NULL, r->corr, sizeof(r->corr), 0, NULL) != 0) {
    uint64_t t[2] = {uv_hrtime(), (uint64_t)(uintptr_t)r};
    memcpy(r->corr, t, sizeof(r->corr));
  }
  r->cb = cb;
  r->arg = arg;
  r->deadline = now_ms(c) + timeout_ms;
  if (request->props)
    props = *request->props;
  else
    memset(&props, 0, sizeof(props));
  props.present |= UVMQTT_PROP_BIT(UVMQTT_PROP_RESPONSE_TOPIC) |
                   UVMQTT_PROP_BIT(UVMQTT_PROP_CORRELATION_DATA);
  props.response_topic.data = response_topic;
  props.response_topic.len = strlen(response_topic);
  props.correlation_data.data = r->corr;
  props.correlation_data.len = sizeof(r->corr);
  uvmqtt_publish_opts_t po = *request;
  po.props = &props;
  r->next = rr->reqs;
  rr->reqs = r;
  rc = uvmqtt_publish_ex(c, &po, req_published, r);
  if (rc < 0) {
    rr->reqs = r->next;
    uvmqtt__free(r);
    return rc;
  }
  req_arm(c);
  return rc;
}

int uvmqtt_subscribe_many(uvmqtt_client_t *c, const uvmqtt_subscription_t *subs,
                          size_t count, const uvmqtt_props_t *props,
                          uvmqtt_subscribe_cb cb, void *arg) {
  if (!c || !subs || count == 0)
    return UVMQTT_EINVAL;
  if (c->state == C_CLOSING || c->close_requested)
    return UVMQTT_ECLOSED;
  for (size_t i = 0; i < count; i++) {
    int rc = uvmqtt_filter_validate(subs[i].filter.data, subs[i].filter.len);
    if (rc < 0)
      return rc;
    uint8_t o = subs[i].options;
    if ((o & UVMQTT_SUBOPT_QOS_MASK) > 2)
      return UVMQTT_EQOS;
    /* Reserved bits, Retain Handling 3, and No Local on a shared
     * subscription [MQTT-3.8.3-4] are protocol errors. */
    if ((o & 0xC0) || ((o >> UVMQTT_SUBOPT_RETAIN_HANDLING_SHIFT) & 3) == 3 ||
        (c->o.version != UVMQTT_V5 && (o & ~UVMQTT_SUBOPT_QOS_MASK)))
      return UVMQTT_EINVAL;
    if ((o & UVMQTT_SUBOPT_NO_LOCAL) && subs[i].filter.len > 7 &&
        memcmp(subs[i].filter.data, "$share/", 7) == 0)
      return UVMQTT_EFILTER;
  }
  if (props && c->o.version == UVMQTT_V5) {
    int rc = props_utf8_ok(props);
    if (rc < 0)
      return rc;
  }
  if (c->state != C_CONNECTED)
    return UVMQTT_ENOTCONN;
  ENTER(c);
  int rc = uvmqtt__session_subscribe(c->session, subs, count, props,
                                     (uvmqtt_session_fn)cb, arg);
  if (rc >= 0)
    for (size_t i = 0; i < count; i++)
      if (remember_sub(c, subs[i].filter.data, subs[i].filter.len,
                       subs[i].options) < 0)
        clog_(c, UVMQTT_LOG_WARN, "cannot remember a subscription");
  LEAVE(c);
  return rc;
}

int uvmqtt_subscribe(uvmqtt_client_t *c, const char *filter, int qos,
                     uvmqtt_subscribe_cb cb, void *arg) {
  uvmqtt_subscription_t s;
  if (!filter)
    return UVMQTT_EINVAL;
  if (qos < 0 || qos > 2)
    return UVMQTT_EQOS;
  s.filter.data = filter;
  s.filter.len = strlen(filter);
  s.options = (uint8_t)qos;
  return uvmqtt_subscribe_many(c, &s, 1, NULL, cb, arg);
}

int uvmqtt_unsubscribe_many(uvmqtt_client_t *c, const char *const *filters,
                            size_t count, const uvmqtt_props_t *props,
                            uvmqtt_subscribe_cb cb, void *arg) {
  uvmqtt_str_t small[8], *v = small;
  if (!c || !filters || count == 0)
    return UVMQTT_EINVAL;
  if (c->state == C_CLOSING || c->close_requested)
    return UVMQTT_ECLOSED;
  if (props && c->o.version == UVMQTT_V5 && props_utf8_ok(props) < 0)
    return UVMQTT_EUTF8;
  for (size_t i = 0; i < count; i++) {
    if (!filters[i])
      return UVMQTT_EINVAL;
    int rc = uvmqtt_filter_validate(filters[i], strlen(filters[i]));
    if (rc < 0)
      return rc;
  }
  if (c->state != C_CONNECTED)
    return UVMQTT_ENOTCONN;
  if (count > 8 && !(v = uvmqtt__malloc(count * sizeof(*v))))
    return UVMQTT_ENOMEM;
  for (size_t i = 0; i < count; i++) {
    v[i].data = filters[i];
    v[i].len = strlen(filters[i]);
  }
  ENTER(c);
  int rc = uvmqtt__session_unsubscribe(c->session, v, count, props,
                                       (uvmqtt_session_fn)cb, arg);
  if (rc >= 0)
    for (size_t i = 0; i < count; i++)
      forget_sub(c, v[i].data, v[i].len);
  LEAVE(c);
  if (v != small)
    uvmqtt__free(v);
  return rc;
}

int uvmqtt_unsubscribe(uvmqtt_client_t *c, const char *filter,
                       uvmqtt_subscribe_cb cb, void *arg) {
  return uvmqtt_unsubscribe_many(c, &filter, 1, NULL, cb, arg);
}

/* ---- routes
 * ------------------------------------------------------------------------ */

static void route_unlink_free(uvmqtt_client_t *c, route_t *r) {
  if (!r)
    return;
  if (r->prev)
    r->prev->next = r->next;
  else
    c->rt->routes = r->next;
  if (r->next)
    r->next->prev = r->prev;
  uvmqtt__free(r);
}

int uvmqtt_route_add(uvmqtt_client_t *c, const char *filter,
                     uvmqtt_message_cb cb, void *arg) {
  if (!c || !filter || !cb)
    return UVMQTT_EINVAL;
  if (!c->rt) {
    routing_t *rt = uvmqtt__calloc(1, sizeof(*rt));
    if (!rt)
      return UVMQTT_ENOMEM;
    int rc = uvmqtt_router_new(&rt->router);
    if (rc < 0) {
      uvmqtt__free(rt);
      return rc;
    }
    c->rt = rt;
  }
  route_t *r = uvmqtt__malloc(sizeof(*r));
  if (!r)
    return UVMQTT_ENOMEM;
  r->cb = cb;
  r->arg = arg;
  void *old = NULL;
  int rc = uvmqtt_router_add(c->rt->router, filter, strlen(filter), r, &old);
  if (rc < 0) {
    uvmqtt__free(r);
    return rc;
  }
  r->prev = NULL;
  r->next = c->rt->routes;
  if (c->rt->routes)
    c->rt->routes->prev = r;
  c->rt->routes = r;
  route_unlink_free(c, old);
  return 0;
}

int uvmqtt_route_remove(uvmqtt_client_t *c, const char *filter) {
  void *old = NULL;
  if (!c || !filter)
    return UVMQTT_EINVAL;
  if (!c->rt)
    return UVMQTT_ENOENT;
  int rc = uvmqtt_router_remove(c->rt->router, filter, strlen(filter), &old);
  if (rc == 0)
    route_unlink_free(c, old);
  return rc;
}
