/* The transport stack builder: the one place that turns a server's scheme
 * and the proxy configuration into the layers of a connection,
 *
 *   tcp | unix  ->  proxy (HTTP CONNECT | SOCKS5)  ->  tls  ->  ws,
 *
 * as a plan of typed layers (uvmqtt__stack_plan), then stacks them over
 * the socket one at a time, each opened before the next
 * (uvmqtt__stack_build). A layer is known by its kind in the plan, never
 * by its name, and nothing here looks below the layer it just opened. It
 * also picks the proxy: the options' URL, else, when the application asked
 * for it, the environment (http_proxy, https_proxy, all_proxy, no_proxy). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "client/client_int.h"

/* The layer kinds a plan holds. */
enum { L_HTTP_PROXY = 1, L_SOCKS5, L_TLS, L_WS };

typedef struct {
  /* Creates the layer over `lower` for the current server. */
  int (*make)(uvmqtt_client_t *c, const server_spec_t *sv,
              uvmqtt_stream_t *lower, uvmqtt_stream_t **out);
  /* After a failed open: records what the layer knows about the failure
   * and returns the peer's HTTP status, if any (0: none). */
  int (*failed)(uvmqtt_client_t *c, uvmqtt_stream_t *s, int status);
} layer_t;

/* ---- choosing the proxy -------------------------------------------------- */

uint16_t uvmqtt__proxy_port(const server_spec_t *p) {
  if (p->port)
    return p->port;
  return p->scheme == S_PROXY_HTTP ? 80 : 1080;
}

static const char *env2(const char *lower, const char *upper) {
  const char *v = getenv(lower);
  if (!v || !*v)
    v = getenv(upper);
  return v && *v ? v : NULL;
}

/* 1 when no_proxy exempts `host`: "*", the host itself, or a domain it is
 * in ("example.com" and ".example.com" both cover a.example.com), ASCII
 * case ignored; a ":port" on an entry is ignored. */
static int no_proxy_match(const char *list, const char *host) {
  size_t hl = strlen(host);
  while (*list) {
    size_t n = strcspn(list, ", \t");
    const char *e = list;
    size_t el = n;
    const char *colon = memchr(e, ':', el);
    if (colon && !memchr(colon + 1, ':', el - (size_t)(colon - e) - 1))
      el = (size_t)(colon - e); /* host:port; an IPv6 literal keeps its ':' */
    if (el > 0 && e[0] == '.') {
      e++;
      el--;
    }
    if (el == 1 && e[0] == '*')
      return 1;
    if (el > 0 && el <= hl && strncasecmp(host + hl - el, e, el) == 0 &&
        (el == hl || host[hl - el - 1] == '.'))
      return 1;
    list += n;
    while (*list == ',' || *list == ' ' || *list == '\t')
      list++;
  }
  return 0;
}

/* The proxy URL the environment names for `sv`, or NULL: ws:// takes
 * http_proxy, wss:// https_proxy, and any scheme all_proxy after them;
 * lower case first, then upper case. */
static const char *env_proxy(const server_spec_t *sv) {
  const char *url = NULL;
  if (sv->scheme == S_WS)
    url = env2("http_proxy", "HTTP_PROXY");
  else if (sv->scheme == S_WSS)
    url = env2("https_proxy", "HTTPS_PROXY");
  if (!url)
    url = env2("all_proxy", "ALL_PROXY");
  if (!url)
    return NULL;
  const char *np = env2("no_proxy", "NO_PROXY");
  if (np && no_proxy_match(np, sv->host))
    return NULL;
  return url;
}

proxy_attempt_t *uvmqtt__stack_proxy(const uvmqtt_client_t *c) {
  return c->rare ? c->rare->px : NULL;
}

void uvmqtt__stack_proxy_free(uvmqtt_client_t *c) {
  proxy_attempt_t *px = uvmqtt__stack_proxy(c);
  if (!px)
    return;
  c->rare->px = NULL;
  uvmqtt__server_clear(&px->proxy);
  uvmqtt__free(px);
}

static int choose_proxy(uvmqtt_client_t *c, const server_spec_t *sv) {
  const char *url = CX(c)->proxy;
  bool from_env = false;
  if (!url && CX(c)->proxy_env) {
    url = env_proxy(sv);
    from_env = url != NULL;
  }
  if (!url)
    return 0;
  rare_t *r = uvmqtt__client_rare(c);
  proxy_attempt_t *px = r ? uvmqtt__calloc(1, sizeof(*px)) : NULL;
  char *tmp = NULL;
  if (px && from_env && !strstr(url, "://")) {
    /* "host:port", as curl reads it: an HTTP proxy. */
    size_t n = strlen(url);
    if ((tmp = uvmqtt__malloc(n + 8))) {
      memcpy(tmp, "http://", 7);
      memcpy(tmp + 7, url, n + 1);
    }
    url = tmp;
  }
  if (!px || !url) {
    uvmqtt__free(px);
    return UVMQTT_ENOMEM;
  }
  int rc = uvmqtt__parse_uri(c, url, &px->proxy);
  if (rc == 0 && px->proxy.scheme < S_PROXY_HTTP) {
    uvmqtt__server_clear(&px->proxy);
    rc = UVMQTT_EURI;
  }
  if (rc < 0) {
    uvmqtt__client_log(c, UVMQTT_LOG_ERROR, "bad proxy URL%s: %s",
                       from_env ? " in the environment" : "",
                       uvmqtt_strerror(rc));
    uvmqtt__free(px);
  } else {
    r->px = px;
    uvmqtt__client_log(c, UVMQTT_LOG_DEBUG, "to %s through the proxy %s:%u",
                       sv->host, px->proxy.host,
                       uvmqtt__proxy_port(&px->proxy));
  }
  uvmqtt__free(tmp);
  return rc;
}

int uvmqtt__stack_plan(uvmqtt_client_t *c) {
  attempt_t *at = c->at;
  uvmqtt__stack_proxy_free(c);
  at->plan = at->layer = 0;
  at->http_status = 0;
  server_spec_t sv = uvmqtt__server_at(c, uvmqtt__cur_server(c));
  if (sv.scheme != S_UNIX && sv.scheme != S_WS_UNIX) {
    int rc = choose_proxy(c, &sv);
    if (rc < 0)
      return rc;
  }
  proxy_attempt_t *px = uvmqtt__stack_proxy(c);
  if (px)
    at->plan |=
        1u << (px->proxy.scheme == S_PROXY_HTTP ? L_HTTP_PROXY : L_SOCKS5);
  if (sv.scheme == S_MQTTS || sv.scheme == S_WSS)
    at->plan |= 1u << L_TLS;
  if (sv.scheme == S_WS || sv.scheme == S_WSS || sv.scheme == S_WS_UNIX)
    at->plan |= 1u << L_WS;
  return 0;
}

/* ---- the layers ---------------------------------------------------------- */

/* Time left of the connect timeout, for a layer's own deadline. */
static unsigned remaining_ms(uvmqtt_client_t *c) {
  uint64_t now = uvmqtt__client_now(c);
  return c->at->deadline > now ? (unsigned)(c->at->deadline - now) : 1;
}

static int make_proxy(uvmqtt_client_t *c, const server_spec_t *sv,
                      uvmqtt_stream_t *lower, uvmqtt_stream_t **out) {
  const proxy_attempt_t *px = uvmqtt__stack_proxy(c);
  uvmqtt_proxy_opts_t po;
  memset(&po, 0, sizeof(po));
  po.host = px->target_resolved ? px->target : sv->host;
  po.port = sv->port ? sv->port : uvmqtt__default_port(c, sv->scheme);
  po.user = px->proxy.has_user ? px->proxy.user : NULL;
  po.pass = px->proxy.pass;
  po.timeout_ms = remaining_ms(c);
  if (px->proxy.scheme == S_PROXY_HTTP)
    return uvmqtt__http_proxy_new(lower, &po, out);
  return uvmqtt__socks5_new(lower, &po, out);
}

static int proxy_failed(uvmqtt_client_t *c, uvmqtt_stream_t *s, int status) {
  (void)c;
  return status == UVMQTT_EPROXY_STATUS || status == UVMQTT_EPROXY_AUTH
             ? uvmqtt__proxy_reply_code(s)
             : 0;
}

static int make_tls(uvmqtt_client_t *c, const server_spec_t *sv,
                    uvmqtt_stream_t *lower, uvmqtt_stream_t **out) {
#if UVMQTT_HAVE_TLS
  /* Without a configuration of its own: the system trust store, acquired
   * by the connect call (tls_default.c). */
  return uvmqtt__tls_new(lower, CX(c)->tls ? CX(c)->tls : c->rare->tls_default,
                         sv->host, out);
#else
  (void)c, (void)sv, (void)lower, (void)out;
  return UVMQTT_ENOTSUP;
#endif
}

static int tls_failed(uvmqtt_client_t *c, uvmqtt_stream_t *s, int status) {
  (void)status;
#if UVMQTT_HAVE_TLS
  /* A client with a TLS configuration has its rare block. */
  if (c->rare)
    uvmqtt__tls_last_error(s, &c->rare->tls_err, &c->rare->tls_flags);
#else
  (void)c, (void)s;
#endif
  return 0;
}

static int make_ws(uvmqtt_client_t *c, const server_spec_t *sv,
                   uvmqtt_stream_t *lower, uvmqtt_stream_t **out) {
#if UVMQTT_HAVE_WS
  char host[300];
  if (sv->scheme == S_WS_UNIX) {
    snprintf(host, sizeof(host), "localhost");
  } else {
    uint16_t port = sv->port ? sv->port : uvmqtt__default_port(c, sv->scheme);
    bool v6 = strchr(sv->host, ':') != NULL;
    if (port == uvmqtt__default_port(c, sv->scheme))
      snprintf(host, sizeof(host), v6 ? "[%s]" : "%s", sv->host);
    else
      snprintf(host, sizeof(host), v6 ? "[%s]:%u" : "%s:%u", sv->host, port);
  }
  uvmqtt_ws_opts_t wo;
  memset(&wo, 0, sizeof(wo));
  wo.host = host;
  wo.path = sv->path ? sv->path : (CX(c)->ws_path ? CX(c)->ws_path : "/mqtt");
  wo.protocol = c->o.version == UVMQTT_V31 ? "mqttv3.1" : "mqtt";
  wo.headers = (const char *const *)CX(c)->ws_headers;
  wo.header_count = CX(c)->ws_header_count;
  return uvmqtt__ws_new(lower, &wo, out);
#else
  (void)c, (void)sv, (void)lower, (void)out;
  return UVMQTT_ENOTSUP;
#endif
}

static int ws_failed(uvmqtt_client_t *c, uvmqtt_stream_t *s, int status) {
  (void)c;
#if UVMQTT_HAVE_WS
  return status == UVMQTT_EWS_STATUS ? uvmqtt__ws_http_status(s) : 0;
#else
  (void)s, (void)status;
  return 0;
#endif
}

static const layer_t layers[] = {
    [L_HTTP_PROXY] = {make_proxy, proxy_failed},
    [L_SOCKS5] = {make_proxy, proxy_failed},
    [L_TLS] = {make_tls, tls_failed},
    [L_WS] = {make_ws, ws_failed},
};

/* ---- stacking ------------------------------------------------------------ */

/* Log lines from the transport layers go to the client's log. */
static void on_layer_log(uvmqtt_stream_t *s, int level, const char *msg) {
  uvmqtt_client_t *c = s->data;
  uvmqtt__client_log(c, level, "%s: %s", s->ops->name, msg);
}

static void layer_opened(uvmqtt_stream_t *s, int status) {
  uvmqtt_client_t *c = s->data;
  ENTER(c);
  if (status < 0) {
    attempt_t *at = c->at;
    at->http_status = (int16_t)layers[at->layer].failed(c, s, status);
    if (at->http_status)
      uvmqtt__client_log(c, UVMQTT_LOG_WARN,
                         "%s handshake failed: %s (HTTP %d)", s->ops->name,
                         uvmqtt_strerror(status), at->http_status);
    else
      uvmqtt__client_log(c, UVMQTT_LOG_WARN, "%s handshake failed: %s",
                         s->ops->name, uvmqtt_strerror(status));
    uvmqtt__client_attempt_failed(c, status);
  } else {
    uvmqtt__stack_build(c, s);
  }
  LEAVE(c);
}

void uvmqtt__stack_build(uvmqtt_client_t *c, uvmqtt_stream_t *s) {
  attempt_t *at = c->at;
  s->log_cb = on_layer_log;
  /* The next kind in the plan after the one just opened. */
  unsigned next = at->layer + 1u;
  while (next <= L_WS && !(at->plan & (1u << next)))
    next++;
  if (next > L_WS) {
    /* The stack is complete. */
    c->stream = s;
    at->opening = NULL;
    s->read_cb = uvmqtt__client_on_read;
    uvmqtt__client_send_connect(c);
    return;
  }
  server_spec_t sv = uvmqtt__server_at(c, uvmqtt__cur_server(c));
  uvmqtt_stream_t *up = NULL;
  at->layer = (uint8_t)next;
  int rc = layers[next].make(c, &sv, s, &up);
  if (rc < 0) {
    at->opening = s;
    uvmqtt__client_attempt_failed(c, rc);
    return;
  }
  up->data = c;
  up->read_cb = NULL;
  up->log_cb = on_layer_log;
  at->opening = up;
  rc = up->ops->open(up, layer_opened);
  if (rc < 0)
    uvmqtt__client_attempt_failed(c, rc);
}
