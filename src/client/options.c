/* The options object (uvmqtt_options_t): defaults, the setters and their
 * validation, and the copy a client keeps of it at creation (the core
 * fields and, when any was set, the block of rarely set options). */
#include <string.h>

#include "alloc.h"
#include "props.h"
#include "client/client_int.h"

void uvmqtt__options_defaults(uvmqtt_options_t *o) {
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

const opt_ext_t uvmqtt__opt_ext_defaults = {.dns_timeout = 5000,
                                            .linger_ms = 2000,
                                            .follow_redirects = true,
                                            .rc_stable_ms = 30000,
                                            .rc_suspect_after = 3};

/* The rarely set options, allocated with their defaults on first use. */
static opt_ext_t *ext_get(copts_t *k) {
  if (!k->x && (k->x = uvmqtt__malloc(sizeof(*k->x))))
    *k->x = uvmqtt__opt_ext_defaults;
  return k->x;
}

void uvmqtt__copts_free(copts_t *k) {
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
  uvmqtt__free(x->proxy);
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
  uvmqtt__options_defaults(o);
  *out = o;
  return 0;
}

void uvmqtt_options_del(uvmqtt_options_t *o) {
  if (!o)
    return;
  uvmqtt__free(o->client_id);
  uvmqtt__copts_free(&o->k);
  uvmqtt__free(o);
}

/* MQTT strings must be well-formed UTF-8 without U+0000 [MQTT-1.5.4]:
 * checks every string property of a set the application hands us. */
int uvmqtt__props_utf8_ok(const uvmqtt_props_t *p) {
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

static int k_set_keepalive(copts_t *k, unsigned seconds) {
  if (seconds > 65535)
    return UVMQTT_EINVAL;
  k->keepalive = seconds;
  return 0;
}

int uvmqtt_options_set_keepalive(uvmqtt_options_t *o, unsigned seconds) {
  return o ? k_set_keepalive(&o->k, seconds) : UVMQTT_EINVAL;
}

int uvmqtt_client_set_keepalive(uvmqtt_client_t *c, unsigned seconds) {
  return c ? k_set_keepalive(&c->o, seconds) : UVMQTT_EINVAL;
}

int uvmqtt__copts_set_credentials(copts_t *k, const char *username,
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
  return uvmqtt__copts_set_credentials(&o->k, username, password, password_len);
}

static int k_set_will(copts_t *k, const char *topic, const void *payload,
                      size_t len, int qos, bool retain) {
  if (qos < 0 || qos > 2)
    return UVMQTT_EQOS;
  if (len > 65535 || (len && !payload))
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(k);
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

int uvmqtt_options_set_will(uvmqtt_options_t *o, const char *topic,
                            const void *payload, size_t len, int qos,
                            bool retain) {
  return o ? k_set_will(&o->k, topic, payload, len, qos, retain)
           : UVMQTT_EINVAL;
}

int uvmqtt_client_set_will(uvmqtt_client_t *c, const char *topic,
                           const void *payload, size_t len, int qos,
                           bool retain) {
  return c ? k_set_will(&c->o, topic, payload, len, qos, retain)
           : UVMQTT_EINVAL;
}

static int k_set_will_props(copts_t *k, const uvmqtt_props_t *props) {
  opt_ext_t *x = ext_get(k);
  if (!x)
    return UVMQTT_ENOMEM;
  int rc = uvmqtt__props_utf8_ok(props);
  return rc < 0 ? rc : set_props(&x->will_props, props);
}

int uvmqtt_options_set_will_props(uvmqtt_options_t *o,
                                  const uvmqtt_props_t *props) {
  return o ? k_set_will_props(&o->k, props) : UVMQTT_EINVAL;
}

int uvmqtt_client_set_will_props(uvmqtt_client_t *c,
                                 const uvmqtt_props_t *props) {
  return c ? k_set_will_props(&c->o, props) : UVMQTT_EINVAL;
}

static int k_set_connect_props(copts_t *k, const uvmqtt_props_t *p) {
  opt_ext_t *x = ext_get(k);
  if (!x)
    return UVMQTT_ENOMEM;
  int rc = uvmqtt__props_utf8_ok(p);
  return rc < 0 ? rc : set_props(&x->connect_props, p);
}

int uvmqtt_options_set_connect_props(uvmqtt_options_t *o,
                                     const uvmqtt_props_t *p) {
  return o ? k_set_connect_props(&o->k, p) : UVMQTT_EINVAL;
}

int uvmqtt_client_set_connect_props(uvmqtt_client_t *c,
                                    const uvmqtt_props_t *p) {
  return c ? k_set_connect_props(&c->o, p) : UVMQTT_EINVAL;
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

/* `set_path` false keeps the path (the client's header setter). */
static int k_set_ws(copts_t *k, bool set_path, const char *path,
                    const char *const *headers, size_t header_count) {
  if (header_count && !headers)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(k);
  if (!x)
    return UVMQTT_ENOMEM;
#if !UVMQTT_HAVE_WS
  (void)set_path;
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
  int rc = set_path ? set_str(&x->ws_path, path) : 0;
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

int uvmqtt_options_set_ws(uvmqtt_options_t *o, const char *path,
                          const char *const *headers, size_t header_count) {
  return o ? k_set_ws(&o->k, true, path, headers, header_count) : UVMQTT_EINVAL;
}

int uvmqtt_client_set_ws_headers(uvmqtt_client_t *c, const char *const *headers,
                                 size_t header_count) {
  return c ? k_set_ws(&c->o, false, NULL, headers, header_count)
           : UVMQTT_EINVAL;
}

int uvmqtt_options_set_proxy(uvmqtt_options_t *o, const char *url) {
  if (!o)
    return UVMQTT_EINVAL;
  if (url && *url) {
    server_spec_t p;
    int rc = uvmqtt__parse_uri(NULL, url, &p);
    if (rc == 0 && p.scheme < S_PROXY_HTTP)
      rc = UVMQTT_EURI;
    uvmqtt__server_clear(&p);
    if (rc < 0)
      return rc;
  }
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  return set_str(&x->proxy, url && *url ? url : NULL);
}

int uvmqtt_options_set_proxy_from_env(uvmqtt_options_t *o, bool on) {
  if (!o)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  x->proxy_env = on;
  return 0;
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

static int k_set_auth(copts_t *k, const char *method, const void *data,
                      size_t len) {
  if ((method && strlen(method) > 65535) || len > 65535 || (len && !data))
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(k);
  if (!x)
    return UVMQTT_ENOMEM;
  if (str_utf8_ok(method))
    return UVMQTT_EUTF8;
  int rc = set_str(&x->auth_method, method);
  if (rc == 0)
    rc = set_bin(&x->auth_data, &x->auth_data_len, method ? data : NULL, len);
  return rc;
}

int uvmqtt_options_set_auth(uvmqtt_options_t *o, const char *method,
                            const void *data, size_t len) {
  return o ? k_set_auth(&o->k, method, data, len) : UVMQTT_EINVAL;
}

int uvmqtt_client_set_auth(uvmqtt_client_t *c, const char *method,
                           const void *data, size_t len) {
  return c ? k_set_auth(&c->o, method, data, len) : UVMQTT_EINVAL;
}

int uvmqtt_options_set_max_filters(uvmqtt_options_t *o, unsigned n) {
  if (!o || n > UINT16_MAX)
    return UVMQTT_EINVAL;
  if (!n && !o->k.x)
    return 0; /* the default */
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  x->max_filters = (uint16_t)n;
  return 0;
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

int uvmqtt_options_set_store(uvmqtt_options_t *o, uvmqtt_store_t *store,
                             uvmqtt_durability_t level) {
  if (!o || (store && level != UVMQTT_DURABLE_PROCESS &&
             level != UVMQTT_DURABLE_POWER))
    return UVMQTT_EINVAL;
  if (!store && !o->k.x)
    return 0;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  x->store = store;
  x->durability = (uint8_t)level;
  return 0;
}

int uvmqtt_options_set_manual_ack(uvmqtt_options_t *o, bool on,
                                  uint32_t max_unacked,
                                  size_t max_unacked_bytes) {
  if (!o)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  x->manual_ack = on;
  x->max_unacked = on ? max_unacked : 0;
  x->max_unacked_bytes = on ? max_unacked_bytes : 0;
  return 0;
}

int uvmqtt_options_set_record_first(uvmqtt_options_t *o, bool on) {
  if (!o)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  x->record_first = on;
  return 0;
}

int uvmqtt_options_set_linger(uvmqtt_options_t *o, unsigned ms) {
  if (!o || ms > 600000)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  x->linger_ms = ms;
  return 0;
}

/* Copies the options a client keeps, with deep copies of the rare ones. */
int uvmqtt__copts_copy(copts_t *d, const copts_t *s) {
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
  x->dns_servers = x->auth_method = x->proxy = NULL;
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
      set_str(&x->proxy, sx->proxy) ||
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
  uvmqtt__copts_free(d);
  return UVMQTT_ENOMEM;
}

/* ---- fleet behaviour ------------------------------------------------------
 */

_Static_assert((int)UVMQTT__TAKEOVER_STOP == (int)UVMQTT_TAKEOVER_STOP &&
                   (int)UVMQTT__TAKEOVER_BACKOFF ==
                       (int)UVMQTT_TAKEOVER_BACKOFF &&
                   (int)UVMQTT__TAKEOVER_RETRY == (int)UVMQTT_TAKEOVER_RETRY,
               "takeover policy values");

int uvmqtt_options_set_reconnect_policy(uvmqtt_options_t *o, unsigned stable_ms,
                                        unsigned suspect_after,
                                        int on_takeover) {
  if (!o || suspect_after > UINT8_MAX || on_takeover < UVMQTT_TAKEOVER_STOP ||
      on_takeover > UVMQTT_TAKEOVER_RETRY)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  x->rc_stable_ms = stable_ms;
  x->rc_suspect_after = (uint8_t)suspect_after;
  x->rc_on_takeover = (uint8_t)on_takeover;
  return 0;
}

int uvmqtt_options_set_rate_limit(uvmqtt_options_t *o, unsigned msgs_per_s,
                                  unsigned msg_burst, unsigned bytes_per_s,
                                  unsigned byte_burst) {
  if (!o)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  x->rate_msgs = msgs_per_s;
  x->rate_msg_burst = msg_burst;
  x->rate_bytes = bytes_per_s;
  x->rate_byte_burst = byte_burst;
  return 0;
}

int uvmqtt_options_set_stats(uvmqtt_options_t *o, bool on) {
  if (!o)
    return UVMQTT_EINVAL;
  opt_ext_t *x = ext_get(&o->k);
  if (!x)
    return UVMQTT_ENOMEM;
  x->stats_on = on;
  return 0;
}
