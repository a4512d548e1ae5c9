/* The connect pipeline: the connect calls, then for each attempt an SRV
 * lookup when asked, name resolution (of the proxy when there is one; of
 * the broker too for socks5://), TCP to each address in turn or a
 * unix-domain socket, then stack.c's layers and CONNECT. A failure goes to
 * retry.c; CONNACK is handled in dispatch.c. */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "client/client_int.h"

static int client_id_ok(const uvmqtt_client_t *c) {
  if (c->o.version != UVMQTT_V5 && c->o.empty_id && !c->o.clean)
    return UVMQTT_ECLIENTID;
  return 0;
}

static int begin(uvmqtt_client_t *c, server_list_t *servers, bool srv) {
  if (c->state == C_CLOSING || c->close_requested) {
    uvmqtt__free(servers);
    return UVMQTT_ECLOSED;
  }
  uvmqtt__servers_free(c);
  c->servers = servers;
  c->srv_mode = srv;
  int rc = uvmqtt__persist_check_broker(c);
  if (rc < 0) { /* the stored session belongs to another broker */
    uvmqtt__servers_free(c);
    c->srv_mode = false;
    return rc;
  }
  c->srv_done = false;
  c->user_disconnect = false;
  uvmqtt__rc_reset(&c->rc);
  c->state = C_WAIT;
  uvmqtt__client_timer_start(c, 0); /* never from inside the call */
  return 0;
}

/* Connecting, connected, or waiting to reconnect: a new connect call is
 * refused until the client is idle (disconnected by the application, or
 * given up). */
/* What every connect call checks first: the client is neither closing nor
 * already connected or trying, and its id can be sent. */
static int may_connect(const uvmqtt_client_t *c) {
  if (c->state == C_CLOSING || c->close_requested)
    return UVMQTT_ECLOSED;
  if (c->state != C_IDLE)
    return UVMQTT_EBUSY;
  return client_id_ok(c);
}

int uvmqtt_client_connect(uvmqtt_client_t *c, const char *host, int port) {
  if (!c || !host || !*host || port < 0 || port > 65535)
    return UVMQTT_EINVAL;
  int rc = may_connect(c);
  if (rc < 0)
    return rc;
  server_spec_t tmp;
  memset(&tmp, 0, sizeof(tmp));
  tmp.host = (char *)host;
  tmp.scheme = CX(c)->tls_for_tcp ? S_MQTTS : S_MQTT;
  tmp.port = (uint16_t)port;
  server_list_t *sv = uvmqtt__servers_pack(&tmp, 1);
  if (!sv)
    return UVMQTT_ENOMEM;
  return begin(c, sv, false);
}

/* A TLS scheme without a TLS configuration: the system's trust store. */
static int use_system_trust(uvmqtt_client_t *c) {
#if UVMQTT_HAVE_TLS
  rare_t *r = uvmqtt__client_rare(c);
  if (!r)
    return UVMQTT_ENOMEM;
  return r->tls_default ? 0 : uvmqtt__tls_default_acquire(&r->tls_default);
#else
  (void)c;
  return UVMQTT_ENOTSUP;
#endif
}

int uvmqtt_client_connect_uris(uvmqtt_client_t *c, const char *const *uris,
                               size_t count) {
  if (!c || !uris || count == 0 || count > UINT16_MAX)
    return UVMQTT_EINVAL;
  int rc = may_connect(c);
  if (rc < 0)
    return rc;
  server_spec_t *sv = uvmqtt__calloc(count, sizeof(*sv));
  if (!sv)
    return UVMQTT_ENOMEM;
  bool need_tls = false;
  for (size_t i = 0; i < count; i++) {
    rc = uris[i] ? uvmqtt__parse_uri(c, uris[i], &sv[i]) : UVMQTT_EURI;
    if (rc == 0 && sv[i].scheme >= S_PROXY_HTTP)
      rc = UVMQTT_EURI; /* a proxy's scheme, not a broker's */
    if (rc < 0)
      break;
    need_tls |= sv[i].scheme == S_MQTTS || sv[i].scheme == S_WSS;
  }
  if (rc == 0 && need_tls && !CX(c)->tls)
    rc = use_system_trust(c);
  server_list_t *packed = rc < 0 ? NULL : uvmqtt__servers_pack(sv, count);
  if (rc == 0 && !packed)
    rc = UVMQTT_ENOMEM;
  /* sv[i] too: it may have parsed before the TLS check refused it. */
  for (size_t j = 0; j < count; j++)
    uvmqtt__server_clear(&sv[j]);
  uvmqtt__free(sv);
  return rc < 0 ? rc : begin(c, packed, false);
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
  int rc = may_connect(c);
  if (rc < 0)
    return rc;
  rare_t *r = uvmqtt__client_rare(c);
  char *d = r ? uvmqtt__strdup(domain) : NULL;
  if (!d)
    return UVMQTT_ENOMEM;
  uvmqtt__free(r->srv_domain);
  r->srv_domain = d;
  return begin(c, NULL, true);
#endif
}

static int ensure_resolver(uvmqtt_client_t *c) {
  if (c->at->resolver)
    return 0;
  return uvmqtt__resolver_new(c->lc->loop, CX(c)->dns_servers,
                              CX(c)->dns_timeout, &c->at->resolver);
}

static void on_resolver_released(void *arg);

/* The attempt is over (connected, or the client is closing): its memory
 * and resolver go. Any stream it opened is the client's by now. */
void uvmqtt__client_attempt_end(uvmqtt_client_t *c) {
  attempt_t *at = c->at;
  if (!at)
    return;
  uvmqtt__loop_attempt_release(c);
  c->at = NULL;
  if (at->resolve_req)
    uvmqtt__resolve_cancel(at->resolve_req);
  if (at->resolver) {
    c->open_handles++;
    uvmqtt__resolver_close(at->resolver, on_resolver_released, c);
  }
  uvmqtt__free(at->addrs);
  uvmqtt__stack_proxy_free(c);
  uvmqtt__free(at);
}

static void on_stream_closed(uvmqtt_stream_t *s) {
  uvmqtt_client_t *c = s->data;
  c->open_handles--;
  if (c->state == C_CLOSING)
    uvmqtt__client_close_now(c);
}

void uvmqtt__client_close_stream(uvmqtt_client_t *c) {
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

void uvmqtt__client_send_connect(uvmqtt_client_t *c) {
  server_spec_t cur;
  const server_spec_t *sv = NULL;
  if (uvmqtt__nservers(c)) {
    cur = uvmqtt__server_at(c, uvmqtt__cur_server(c));
    sv = &cur;
  }
  uvmqtt_connect_t p;
  memset(&p, 0, sizeof(p));
  p.protocol_version = (uint8_t)c->o.version;
  p.clean_start = c->o.clean;
  p.keep_alive = (uint16_t)c->o.keepalive;
  p.client_id.data = uvmqtt__client_id(c);
  p.client_id.len = strlen(p.client_id.data);
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
  int rc = uvmqtt__session_connect(c->session, uvmqtt__client_now(c), &p);
  if (rc < 0) {
    uvmqtt__client_log(c, UVMQTT_LOG_ERROR, "cannot encode CONNECT: %s",
                       uvmqtt_strerror(rc));
    uvmqtt__client_drop(c, rc);
    return;
  }
  c->state = C_MQTT;
  /* From the transport's open callback, not an API call: the CONNECT batch
   * may go out with try_write() and no write request. */
  uvmqtt__client_flush_ex(c, true);
}

static void try_address(uvmqtt_client_t *c);

/* The socket (tcp, or unix with no addresses) is connected or failed. */
static void socket_opened(uvmqtt_stream_t *s, int status) {
  uvmqtt_client_t *c = s->data;
  ENTER(c);
  if (status < 0) {
    uvmqtt__client_log(c, UVMQTT_LOG_DEBUG, "connect failed: %s",
                       uvmqtt_strerror(status));
    uvmqtt__client_close_stream(c);
    c->at->cur_addr++;
    if (c->at->cur_addr < c->at->naddrs)
      try_address(c);
    else
      uvmqtt__client_attempt_failed(c, status);
  } else {
    /* Connected: the address list is only needed again after a drop,
     * and every new attempt resolves afresh. */
    uvmqtt__free(c->at->addrs);
    c->at->addrs = NULL;
    c->at->naddrs = c->at->cur_addr = 0;
    uvmqtt__stack_build(c, s);
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
                                 &to, socket_opened, c, &s);
    if (rc == 0) {
      c->open_handles++;
      at->opening = s;
      c->state = C_TRANSPORT;
      return;
    }
    at->last_error = rc;
    at->cur_addr++;
  }
  uvmqtt__client_attempt_failed(c, at->last_error ? at->last_error
                                                  : UVMQTT_EINVAL);
}

static void on_resolver_released(void *arg) {
  uvmqtt_client_t *c = arg;
  c->open_handles--;
  if (c->state == C_CLOSING)
    uvmqtt__client_close_now(c);
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
    uvmqtt__client_log(
        c, UVMQTT_LOG_WARN, "cannot resolve %s: %s",
        uvmqtt__server_at(c, uvmqtt__cur_server(c)).host,
        uvmqtt_strerror(status < 0 ? status : UVMQTT_EDNS_NODATA));
    uvmqtt__client_attempt_failed(c, status < 0 ? status : UVMQTT_EDNS_NODATA);
  } else {
    uvmqtt__free(at->addrs);
    at->naddrs = 0;
    at->addrs = n <= UINT32_MAX ? uvmqtt__malloc(n * sizeof(*addrs)) : NULL;
    if (!at->addrs) {
      uvmqtt__client_attempt_failed(c, UVMQTT_ENOMEM);
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

/* Connects to a unix-domain socket: no name, no addresses. */
static void dial_unix(uvmqtt_client_t *c, const char *path) {
  uvmqtt_stream_t *s;
  c->at->naddrs = c->at->cur_addr = 0; /* a failure has no next address */
  c->state = C_TRANSPORT;
  int rc = uvmqtt__unix_connect(c->lc->loop, path, socket_opened, c, &s);
  if (rc < 0) {
    uvmqtt__client_attempt_failed(c, rc);
    return;
  }
  c->open_handles++;
  c->at->opening = s;
}

/* Resolves host:port (an address literal at once) and connects to each
 * address in turn. */
static void dial(uvmqtt_client_t *c, const char *host, uint16_t port) {
  struct sockaddr_storage lit;
  if (!CX(c)->dns_servers &&
      (uv_ip4_addr(host, port, (struct sockaddr_in *)&lit) == 0 ||
       uv_ip6_addr(host, port, (struct sockaddr_in6 *)&lit) == 0)) {
    /* An address literal needs no lookup, and no resolver. We run from a
     * timer or another callback here, never from inside an API call. */
    attempt_t *at = c->at;
    uvmqtt__free(at->addrs);
    at->naddrs = 0;
    at->addrs = uvmqtt__malloc(sizeof(lit));
    if (!at->addrs) {
      uvmqtt__client_attempt_failed(c, UVMQTT_ENOMEM);
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
    rc = uvmqtt__resolve_addr(c->at->resolver, host, port, on_addrs, c,
                              &c->at->resolve_req);
  }
  if (rc < 0)
    uvmqtt__client_attempt_failed(c, rc);
}

/* Dials the proxy when there is one, else the server. */
static void dial_first_hop(uvmqtt_client_t *c) {
  const proxy_attempt_t *px = uvmqtt__stack_proxy(c);
  if (px) {
    dial(c, px->proxy.host, uvmqtt__proxy_port(&px->proxy));
    return;
  }
  server_spec_t sv = uvmqtt__server_at(c, uvmqtt__cur_server(c));
  dial(c, sv.host, sv.port ? sv.port : uvmqtt__default_port(c, sv.scheme));
}

/* socks5:// (not socks5h://): the broker's name resolved here, and its
 * first address handed to the proxy. */
static void on_target_addrs(int status, const struct sockaddr_storage *addrs,
                            size_t n, void *arg) {
  uvmqtt_client_t *c = arg;
  ENTER(c);
  c->at->resolve_req = NULL;
  proxy_attempt_t *px = uvmqtt__stack_proxy(c);
  int rc = status < 0 ? status : n == 0 ? UVMQTT_EDNS_NODATA : 0;
  if (rc == 0) {
    const struct sockaddr *a = (const struct sockaddr *)&addrs[0];
    rc = a->sa_family == AF_INET6 ? uv_ip6_name((const struct sockaddr_in6 *)a,
                                                px->target, sizeof(px->target))
                                  : uv_ip4_name((const struct sockaddr_in *)a,
                                                px->target, sizeof(px->target));
  }
  if (rc < 0) {
    uvmqtt__client_log(c, UVMQTT_LOG_WARN, "cannot resolve %s: %s",
                       uvmqtt__server_at(c, uvmqtt__cur_server(c)).host,
                       uvmqtt_strerror(rc));
    uvmqtt__client_attempt_failed(c, rc);
  } else {
    px->target_resolved = true;
    dial_first_hop(c);
  }
  LEAVE(c);
}

static void resolve_server(uvmqtt_client_t *c) {
  int rc = uvmqtt__stack_plan(c);
  if (rc < 0) {
    uvmqtt__client_attempt_failed(c, rc);
    return;
  }
  attempt_t *at = c->at;
  server_spec_t sv = uvmqtt__server_at(c, uvmqtt__cur_server(c));
  if (sv.scheme == S_UNIX || sv.scheme == S_WS_UNIX) {
    dial_unix(c, sv.host);
    return;
  }
  struct sockaddr_storage lit;
  const proxy_attempt_t *px = uvmqtt__stack_proxy(c);
  if (px && px->proxy.scheme == S_PROXY_SOCKS5 &&
      uv_ip4_addr(sv.host, 0, (struct sockaddr_in *)&lit) != 0 &&
      uv_ip6_addr(sv.host, 0, (struct sockaddr_in6 *)&lit) != 0) {
    rc = ensure_resolver(c);
    if (rc == 0) {
      c->state = C_RESOLVING;
      rc = uvmqtt__resolve_addr(at->resolver, sv.host,
                                sv.port ? sv.port
                                        : uvmqtt__default_port(c, sv.scheme),
                                on_target_addrs, c, &at->resolve_req);
    }
    if (rc < 0)
      uvmqtt__client_attempt_failed(c, rc);
    return;
  }
  dial_first_hop(c);
}

static void on_srv(int status, const uvmqtt_srv_target_t *t, size_t n,
                   void *arg) {
  uvmqtt_client_t *c = arg;
  ENTER(c);
  c->at->resolve_req = NULL;
  server_spec_t *tmp = NULL;
  server_list_t *sv = NULL;
  if (n > UINT16_MAX)
    n = UINT16_MAX; /* in order of preference: the rest would never be tried */
  if (status == 0 && n > 0 && (tmp = uvmqtt__calloc(n, sizeof(*tmp)))) {
    for (size_t i = 0; i < n; i++) {
      tmp[i].host = (char *)t[i].host;
      tmp[i].port = t[i].port;
      tmp[i].scheme = CX(c)->tls ? S_MQTTS : S_MQTT;
    }
    sv = uvmqtt__servers_pack(tmp, n);
    uvmqtt__free(tmp);
  }
  if (status < 0 || n == 0 || !sv) {
    uvmqtt__client_log(c, UVMQTT_LOG_WARN, "SRV lookup for %s failed: %s",
                       c->rare->srv_domain,
                       uvmqtt_strerror(status < 0 ? status : UVMQTT_ENOMEM));
    if (c->servers)
      c->servers->n = 0;
    uvmqtt__client_attempt_failed(c, status < 0 ? status : UVMQTT_ENOMEM);
  } else {
    for (size_t i = 0; i < n; i++)
      uvmqtt__client_log(c, UVMQTT_LOG_DEBUG,
                         "SRV target %s:%u (priority %u weight %u)", t[i].host,
                         t[i].port, t[i].priority, t[i].weight);
    uvmqtt__servers_free(c);
    c->servers = sv;
    c->srv_done = true;
    resolve_server(c);
  }
  LEAVE(c);
}

void uvmqtt__client_start_attempt(uvmqtt_client_t *c) {
  /* The application's last word on this attempt's CONNECT: it may change
   * credentials, will, keepalive, properties and WebSocket headers. An
   * attempt that waited for a herd slot was asked before it waited. */
  bool granted = c->at && c->at->granted;
  if (granted)
    c->at->granted = false;
  if (!granted && !c->close_called && c->pre_connect_cb &&
      c->pre_connect_cb(c, c->rc.tries, c->pre_connect_arg) != 0 &&
      c->state == C_WAIT) {
    c->state = C_IDLE;
    uvmqtt__client_timer_stop(c);
    return;
  }
  if (c->state != C_WAIT || c->close_requested)
    return; /* the hook disconnected or closed the client */
  if (!c->at && !(c->at = uvmqtt__calloc(1, sizeof(*c->at)))) {
    uvmqtt__client_attempt_failed(c, UVMQTT_ENOMEM);
    return;
  }
  /* Herd control: at most the loop's limit of attempts at once; this one
   * waits (in C_WAIT, without a deadline) until a slot frees. */
  if (!uvmqtt__loop_attempt_slot(c))
    return;
  if (CSTATS(c))
    uvmqtt__cstats_attempt(CSTATS(c));
  c->lc->st.attempts++;
  c->at->deadline = uvmqtt__client_now(c) + c->o.connect_timeout;
  c->state = C_RESOLVING;
  uvmqtt__client_arm_timer(c);
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
      uvmqtt__client_attempt_failed(c, rc);
    return;
  }
  resolve_server(c);
}
