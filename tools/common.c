/* Shared parts of uvmqtt-pub and uvmqtt-sub. */
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

void tool_err(const tool_cfg_t *cfg, const char *fmt, ...) {
  va_list ap;
  if (cfg->quiet)
    return;
  fprintf(stderr, "%s: ", cfg->prog);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

void tool_cfg_init(tool_cfg_t *cfg, const char *prog, bool is_pub) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->prog = prog;
  cfg->is_pub = is_pub;
  cfg->version = UVMQTT_V311;
  cfg->clean = true;
  cfg->keepalive = 60;
  cfg->conn_timeout_ms = 10000;
}

void tool_cfg_free(tool_cfg_t *cfg) {
  for (int i = 0; i < TOOL_P_COUNT; i++) {
    uvmqtt_props_free(cfg->props[i].p);
  }
  free(cfg->topics);
  free(cfg->url_connect);
  free(cfg->url_topic);
  free(cfg->id_buf);
  if (cfg->tls)
    uvmqtt_tls_config_free(cfg->tls);
  cfg->tls = NULL;
}

long tool_parse_seconds(const char *s) {
  char *end;
  errno = 0;
  double d = strtod(s, &end);
  if (errno || end == s || *end || d < 0 || d > 4294967.0)
    return -1;
  return (long)(d * 1000.0 + 0.5);
}

static int parse_ulong(const char *s, unsigned long max, unsigned long *out) {
  char *end;
  if (!s || !*s || *s == '-')
    return -1;
  errno = 0;
  unsigned long v = strtoul(s, &end, 0);
  if (errno || *end || v > max)
    return -1;
  *out = v;
  return 0;
}

static int need(const tool_cfg_t *cfg, int argc, char **argv, int i, int n) {
  if (i + n >= argc) {
    tool_err(cfg, "%s needs %d argument%s (see --help)", argv[i], n,
             n > 1 ? "s" : "");
    return -1;
  }
  return 0;
}

/* ---- -D command identifier value ---------------------------------------- */

static const struct {
  const char *name;
  int id;
} prop_names[] = {
    {"payload-format-indicator", UVMQTT_PROP_PAYLOAD_FORMAT_INDICATOR},
    {"message-expiry-interval", UVMQTT_PROP_MESSAGE_EXPIRY_INTERVAL},
    {"content-type", UVMQTT_PROP_CONTENT_TYPE},
    {"response-topic", UVMQTT_PROP_RESPONSE_TOPIC},
    {"correlation-data", UVMQTT_PROP_CORRELATION_DATA},
    {"subscription-identifier", UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER},
    {"session-expiry-interval", UVMQTT_PROP_SESSION_EXPIRY_INTERVAL},
    {"receive-maximum", UVMQTT_PROP_RECEIVE_MAXIMUM},
    {"topic-alias-maximum", UVMQTT_PROP_TOPIC_ALIAS_MAXIMUM},
    {"maximum-packet-size", UVMQTT_PROP_MAXIMUM_PACKET_SIZE},
    {"request-problem-information", UVMQTT_PROP_REQUEST_PROBLEM_INFORMATION},
    {"request-response-information", UVMQTT_PROP_REQUEST_RESPONSE_INFORMATION},
    {"will-delay-interval", UVMQTT_PROP_WILL_DELAY_INTERVAL},
    {"user-property", UVMQTT_PROP_USER_PROPERTY},
};

static const struct {
  const char *name;
  int which;
  int packet;
} prop_cmds[] = {
    {"connect", TOOL_P_CONNECT, UVMQTT_CONNECT},
    {"publish", TOOL_P_PUBLISH, UVMQTT_PUBLISH},
    {"subscribe", TOOL_P_SUBSCRIBE, UVMQTT_SUBSCRIBE},
    {"unsubscribe", TOOL_P_UNSUBSCRIBE, UVMQTT_UNSUBSCRIBE},
    {"will", TOOL_P_WILL, UVMQTT_CONNECT},
};

static int parse_prop(tool_cfg_t *cfg, int argc, char **argv, int *i) {
  if (need(cfg, argc, argv, *i, 3) < 0)
    return -1;
  const char *cmd = argv[*i + 1], *name = argv[*i + 2], *val = argv[*i + 3];
  int which = -1, packet = 0, id = -1;
  for (size_t k = 0; k < sizeof(prop_cmds) / sizeof(prop_cmds[0]); k++)
    if (strcasecmp(cmd, prop_cmds[k].name) == 0) {
      which = prop_cmds[k].which;
      packet = prop_cmds[k].packet;
    }
  if (which < 0) {
    tool_err(cfg,
             "-D: unsupported command '%s' (connect, publish, subscribe, "
             "unsubscribe or will)",
             cmd);
    return -1;
  }
  for (size_t k = 0; k < sizeof(prop_names) / sizeof(prop_names[0]); k++)
    if (strcasecmp(name, prop_names[k].name) == 0)
      id = prop_names[k].id;
  if (id < 0) {
    tool_err(cfg, "-D: unknown or unsupported property '%s'", name);
    return -1;
  }
  if (!uvmqtt_prop_allowed(id, packet, which == TOOL_P_WILL)) {
    tool_err(cfg, "-D: property '%s' is not allowed on %s", name, cmd);
    return -1;
  }
  tool_props_t *tp = &cfg->props[which];
  unsigned long v = 0;
  int type = uvmqtt_prop_type(id);
  if (id == UVMQTT_PROP_SESSION_EXPIRY_INTERVAL) {
    if (parse_ulong(val, 0xFFFFFFFFul, &v) < 0)
      goto bad_value;
    cfg->has_expiry = true;
    cfg->expiry = (uint32_t)v;
    *i += 3;
    return 1;
  }
  /* The library's property builder copies and checks the values. */
  if (!tp->p && uvmqtt_props_new(&tp->p) < 0) {
    tool_err(cfg, "out of memory");
    return -1;
  }
  uvmqtt_props_t *p = tp->p;
  int rc = 0, args = 3;
  if (id != UVMQTT_PROP_USER_PROPERTY && (p->present & UVMQTT_PROP_BIT(id))) {
    tool_err(cfg, "-D: property '%s' given twice for %s", name, cmd);
    return -1;
  }
  switch (type) {
  case UVMQTT_PROP_TYPE_BYTE:
    if (parse_ulong(val, 1, &v) < 0) /* every byte property is 0 or 1 */
      goto bad_value;
    break;
  case UVMQTT_PROP_TYPE_U16:
    if (parse_ulong(val, 65535, &v) < 0)
      goto bad_value;
    break;
  case UVMQTT_PROP_TYPE_U32:
    if (parse_ulong(val, 0xFFFFFFFFul, &v) < 0)
      goto bad_value;
    break;
  case UVMQTT_PROP_TYPE_VARINT:
    if (parse_ulong(val, 268435455ul, &v) < 0)
      goto bad_value;
    break;
  default:
    break;
  }
  switch (id) {
  case UVMQTT_PROP_USER_PROPERTY:
    if (need(cfg, argc, argv, *i, 4) < 0)
      return -1;
    rc = uvmqtt_props_add_user(p, val, argv[*i + 4]);
    args = 4;
    break;
  case UVMQTT_PROP_PAYLOAD_FORMAT_INDICATOR:
    rc = uvmqtt_props_set_payload_format(p, v == 1);
    break;
  case UVMQTT_PROP_MESSAGE_EXPIRY_INTERVAL:
    rc = uvmqtt_props_set_message_expiry(p, (uint32_t)v);
    break;
  case UVMQTT_PROP_CONTENT_TYPE:
    rc = uvmqtt_props_set_content_type(p, val);
    break;
  case UVMQTT_PROP_RESPONSE_TOPIC:
    rc = uvmqtt_props_set_response_topic(p, val);
    break;
  case UVMQTT_PROP_CORRELATION_DATA:
    rc = uvmqtt_props_set_correlation_data(p, val, strlen(val));
    break;
  case UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER:
    rc = uvmqtt_props_set_subscription_id(p, (uint32_t)v);
    break;
  /* CONNECT and will properties the builder has no setter for: plain
   * numbers, checked here. */
  case UVMQTT_PROP_RECEIVE_MAXIMUM:
    if (v == 0)
      goto bad_value;
    p->receive_maximum = (uint16_t)v;
    break;
  case UVMQTT_PROP_TOPIC_ALIAS_MAXIMUM:
    p->topic_alias_maximum = (uint16_t)v;
    break;
  case UVMQTT_PROP_MAXIMUM_PACKET_SIZE:
    if (v == 0)
      goto bad_value;
    p->maximum_packet_size = (uint32_t)v;
    break;
  case UVMQTT_PROP_REQUEST_PROBLEM_INFORMATION:
    p->request_problem_information = (uint8_t)v;
    break;
  case UVMQTT_PROP_REQUEST_RESPONSE_INFORMATION:
    p->request_response_information = (uint8_t)v;
    break;
  case UVMQTT_PROP_WILL_DELAY_INTERVAL:
    p->will_delay_interval = (uint32_t)v;
    break;
  default:
    goto bad_value;
  }
  if (rc == UVMQTT_ENOMEM) {
    tool_err(cfg, "out of memory");
    return -1;
  }
  if (rc < 0)
    goto bad_value;
  if (id != UVMQTT_PROP_USER_PROPERTY)
    p->present |= UVMQTT_PROP_BIT(id);
  tp->any = true;
  *i += args;
  return 1;
bad_value:
  tool_err(cfg, "-D: bad value '%s' for property '%s'", val, name);
  return -1;
}

/* ---- -L URL ---------------------------------------------------------------
 */

static int parse_url(tool_cfg_t *cfg, const char *url) {
  static const struct {
    const char *pfx;
    bool tls, ws;
  } schemes[] = {{"mqtt://", false, false}, {"mqtts://", true, false},
                 {"ws://", false, true},    {"wss://", true, true},
                 {"unix://", false, true},  {"ws+unix://", false, true}};
  const char *rest = NULL;
  bool ws = false;
  for (size_t k = 0; k < sizeof(schemes) / sizeof(schemes[0]); k++) {
    size_t n = strlen(schemes[k].pfx);
    if (strncasecmp(url, schemes[k].pfx, n) == 0) {
      rest = url + n;
      cfg->url_tls = schemes[k].tls;
      ws = schemes[k].ws; /* unix: the path is the socket's, not a topic */
    }
  }
  bool unix_sock = rest && strstr(url, "unix://") != NULL;
  if (!rest || !*rest || (*rest == '/' && !unix_sock)) {
    tool_err(cfg,
             "-L: unsupported URL '%s' (mqtt://, mqtts://, ws:// or wss://, "
             "then [user[:password]@]host[:port]/topic; or unix:///path or "
             "ws+unix:///path)",
             url);
    return -1;
  }
  free(cfg->url_connect);
  free(cfg->url_topic);
  cfg->url_connect = cfg->url_topic = NULL;
  if (ws) {
    /* The path is the WebSocket request path; topics come from -t. */
    cfg->url_connect = strdup(url);
  } else {
    const char *slash = strchr(rest, '/');
    size_t head = slash ? (size_t)(slash - url) : strlen(url);
    cfg->url_connect = strndup(url, head);
    if (slash && slash[1]) {
      cfg->url_topic = strdup(slash + 1);
      if (!cfg->url_topic)
        goto nomem;
    }
  }
  if (!cfg->url_connect)
    goto nomem;
  cfg->url = url;
  return 0;
nomem:
  tool_err(cfg, "out of memory");
  return -1;
}

static int add_topic(tool_cfg_t *cfg, const char ***v, size_t *n,
                     const char *t) {
  const char **nv = realloc(*v, (*n + 1) * sizeof(**v));
  if (!nv) {
    tool_err(cfg, "out of memory");
    return -1;
  }
  nv[(*n)++] = t;
  *v = nv;
  return 0;
}

static int parse_version(const tool_cfg_t *cfg, const char *s) {
  if (!strcmp(s, "31") || !strcasecmp(s, "mqttv31"))
    return UVMQTT_V31;
  if (!strcmp(s, "311") || !strcasecmp(s, "mqttv311"))
    return UVMQTT_V311;
  if (!strcmp(s, "5") || !strcasecmp(s, "mqttv5"))
    return UVMQTT_V5;
  tool_err(cfg, "-V: unknown protocol version '%s' (31, 311 or 5)", s);
  return -1;
}

int tool_parse_common(tool_cfg_t *cfg, int argc, char **argv, int *i) {
  const char *a = argv[*i];
  unsigned long v;
#define ARG(n)                                                                 \
  do {                                                                         \
    if (need(cfg, argc, argv, *i, (n)) < 0)                                    \
      return -1;                                                               \
  } while (0)
#define STR(opt, field)                                                        \
  if (!strcmp(a, opt)) {                                                       \
    ARG(1);                                                                    \
    cfg->field = argv[++*i];                                                   \
    return 1;                                                                  \
  }
  STR("-h", host)
  STR("--host", host)
  STR("-i", id)
  STR("--id", id)
  STR("-I", id_prefix)
  STR("--id-prefix", id_prefix)
  STR("-u", user)
  STR("--username", user)
  STR("-P", pass)
  STR("--pw", pass)
  STR("-A", bind)
  STR("--will-topic", will_topic)
  STR("--will-payload", will_payload)
  STR("--cafile", cafile)
  STR("--capath", capath)
  STR("--cert", cert)
  STR("--key", key)
  STR("--keypass", keypass)
  STR("--tls-version", tls_version)
  STR("--tls-alpn", alpn)
  STR("--psk", psk)
  STR("--psk-identity", psk_identity)
  STR("--dns-server", dns)
  STR("--proxy", proxy)
  STR("--unix", unix_path)
#undef STR
  if (!strcmp(a, "-p") || !strcmp(a, "--port")) {
    ARG(1);
    if (parse_ulong(argv[++*i], 65535, &v) < 0 || v == 0) {
      tool_err(cfg, "-p: invalid port '%s'", argv[*i]);
      return -1;
    }
    cfg->port = (int)v;
    return 1;
  }
  if (!strcmp(a, "-L") || !strcmp(a, "--url")) {
    ARG(1);
    return parse_url(cfg, argv[++*i]) < 0 ? -1 : 1;
  }
  if (!strcmp(a, "-t") || !strcmp(a, "--topic")) {
    ARG(1);
    return add_topic(cfg, &cfg->topics, &cfg->ntopics, argv[++*i]) < 0 ? -1 : 1;
  }
  if (!strcmp(a, "-k") || !strcmp(a, "--keepalive")) {
    ARG(1);
    if (parse_ulong(argv[++*i], 65535, &v) < 0 || v < 5) {
      tool_err(cfg, "-k: invalid keepalive '%s' (5 to 65535 seconds)",
               argv[*i]);
      return -1;
    }
    cfg->keepalive = (unsigned)v;
    return 1;
  }
  if (!strcmp(a, "-V") || !strcmp(a, "--protocol-version")) {
    ARG(1);
    int ver = parse_version(cfg, argv[++*i]);
    if (ver < 0)
      return -1;
    cfg->version = ver;
    return 1;
  }
  if (!strcmp(a, "-q") || !strcmp(a, "--qos") || !strcmp(a, "--will-qos")) {
    ARG(1);
    if (parse_ulong(argv[++*i], 2, &v) < 0) {
      tool_err(cfg, "%s: invalid QoS '%s' (0, 1 or 2)", a, argv[*i]);
      return -1;
    }
    if (!strcmp(a, "--will-qos"))
      cfg->will_qos = (int)v;
    else
      cfg->qos = (int)v;
    return 1;
  }
  if (!strcmp(a, "-x") || !strcmp(a, "--session-expiry-interval")) {
    ARG(1);
    const char *s = argv[++*i];
    if (!strcmp(s, "-1") || !strcmp(s, "∞")) {
      v = 0xFFFFFFFFul;
    } else if (parse_ulong(s, 0xFFFFFFFFul, &v) < 0) {
      tool_err(cfg, "-x: invalid session expiry interval '%s'", s);
      return -1;
    }
    cfg->has_expiry = true;
    cfg->expiry = (uint32_t)v;
    return 1;
  }
  if (!strcmp(a, "--connect-timeout")) {
    ARG(1);
    long ms = tool_parse_seconds(argv[++*i]);
    if (ms <= 0) {
      tool_err(cfg, "--connect-timeout: invalid value '%s'", argv[*i]);
      return -1;
    }
    cfg->conn_timeout_ms = (unsigned)ms;
    return 1;
  }
  if (!strcmp(a, "--max-filters")) {
    ARG(1);
    char *end;
    unsigned long n = strtoul(argv[++*i], &end, 10);
    if (*argv[*i] == '-' || *end || n < 1 || n > 65535) {
      tool_err(cfg, "--max-filters: invalid value '%s' (1..65535)", argv[*i]);
      return -1;
    }
    cfg->max_filters = (unsigned)n;
    return 1;
  }
  if (!strcmp(a, "-D") || !strcmp(a, "--property"))
    return parse_prop(cfg, argc, argv, i);
  if (!strcmp(a, "-c") || !strcmp(a, "--disable-clean-session")) {
    cfg->clean = false;
    return 1;
  }
  if (!strcmp(a, "--store")) {
    if (*i + 1 >= argc) {
      tool_err(cfg, "--store needs a file (see --help)");
      return -1;
    }
    cfg->store_path = argv[++*i];
    return 1;
  }
  if (!strcmp(a, "--store-sync")) {
    cfg->store_sync = true;
    return 1;
  }
  if (!strcmp(a, "-S")) {
    cfg->srv = true;
    return 1;
  }
  if (!strcmp(a, "-d") || !strcmp(a, "--debug")) {
    cfg->debug = true;
    return 1;
  }
  if (!strcmp(a, "--quiet")) {
    cfg->quiet = true;
    return 1;
  }
  if (!strcmp(a, "--stats")) {
    cfg->stats = true;
    return 1;
  }
  if (!strcmp(a, "--will-retain")) {
    cfg->will_retain = true;
    return 1;
  }
  if (!strcmp(a, "--insecure")) {
    cfg->insecure = true;
    return 1;
  }
  if (!strcmp(a, "--tls-use-os-certs")) {
    cfg->os_certs = true;
    return 1;
  }
  return 0;
#undef ARG
}

static bool tls_wanted(const tool_cfg_t *cfg) {
  return cfg->url_tls || cfg->cafile || cfg->capath || cfg->cert || cfg->key ||
         cfg->psk || cfg->insecure || cfg->os_certs || cfg->tls_version ||
         cfg->alpn;
}

int tool_cfg_finish(tool_cfg_t *cfg) {
  if (cfg->url && (cfg->host || cfg->port || cfg->srv)) {
    tool_err(cfg, "-L cannot be combined with -h, -p or -S");
    return -1;
  }
  if (cfg->unix_path &&
      (cfg->url || cfg->host || cfg->port || cfg->srv || tls_wanted(cfg))) {
    tool_err(cfg, "--unix cannot be combined with -L, -h, -p, -S or TLS");
    return -1;
  }
  if (cfg->unix_path) {
    /* unix://path, with what the URI parser would decode encoded. */
    size_t n = strlen(cfg->unix_path);
    char *u = malloc(7 + 3 * n + 1), *w = u;
    if (!u) {
      tool_err(cfg, "out of memory");
      return -1;
    }
    w += sprintf(w, "unix://");
    for (const char *r = cfg->unix_path; *r; r++)
      w += strchr("%?#", *r) ? sprintf(w, "%%%02X", (unsigned char)*r)
                             : sprintf(w, "%c", *r);
    free(cfg->url_connect);
    cfg->url_connect = u;
    cfg->url = cfg->unix_path;
  }
  if (cfg->url_topic &&
      add_topic(cfg, &cfg->topics, &cfg->ntopics, cfg->url_topic) < 0)
    return -1;
  if (!cfg->clean && (!cfg->id || cfg->id_prefix)) {
    tool_err(cfg, "-c (clean session off) needs a client id given with -i");
    return -1;
  }
  if (cfg->id && cfg->id_prefix) {
    tool_err(cfg, "-i and -I cannot be used together");
    return -1;
  }
  if ((cfg->store_path || cfg->store_sync) && (!cfg->id || cfg->id_prefix)) {
    tool_err(cfg, "--store needs a client id given with -i (the store keeps "
                  "the session under it)");
    return -1;
  }
  if (cfg->id_prefix) {
    size_t n = strlen(cfg->id_prefix) + 24;
    cfg->id_buf = malloc(n);
    if (!cfg->id_buf) {
      tool_err(cfg, "out of memory");
      return -1;
    }
    snprintf(cfg->id_buf, n, "%s%ld", cfg->id_prefix, (long)getpid());
    cfg->id = cfg->id_buf;
  }
  if (cfg->version != UVMQTT_V5) {
    for (int k = 0; k < TOOL_P_COUNT; k++)
      if (cfg->props[k].any) {
        tool_err(cfg, "-D properties need MQTT v5 (-V 5)");
        return -1;
      }
    if (cfg->has_expiry) {
      tool_err(cfg, "a session expiry interval needs MQTT v5 (-V 5)");
      return -1;
    }
  } else if (!cfg->clean && !cfg->has_expiry) {
    /* As mosquitto: -c alone keeps a v5 session forever. */
    cfg->has_expiry = true;
    cfg->expiry = 0xFFFFFFFFu;
  }
  if ((cfg->will_payload || cfg->will_qos || cfg->will_retain ||
       cfg->props[TOOL_P_WILL].any) &&
      !cfg->will_topic) {
    tool_err(cfg, "will options need --will-topic");
    return -1;
  }
  if (cfg->will_topic &&
      uvmqtt_topic_validate(cfg->will_topic, strlen(cfg->will_topic)) < 0) {
    tool_err(cfg, "invalid will topic '%s'", cfg->will_topic);
    return -1;
  }
  if (cfg->pass && !cfg->user && cfg->version != UVMQTT_V5) {
    tool_err(cfg, "-P needs -u with MQTT 3.1/3.1.1");
    return -1;
  }
  if ((cfg->cert != NULL) != (cfg->key != NULL)) {
    tool_err(cfg, "--cert and --key must be given together");
    return -1;
  }
  if ((cfg->psk != NULL) != (cfg->psk_identity != NULL)) {
    tool_err(cfg, "--psk and --psk-identity must be given together");
    return -1;
  }
  if (cfg->srv && !cfg->host) {
    tool_err(cfg, "-S needs the domain given with -h");
    return -1;
  }
  if (cfg->url && !cfg->url_tls && tls_wanted(cfg)) {
    tool_err(cfg, "TLS options need an mqtts:// or wss:// URL with -L");
    return -1;
  }
  return 0;
}

/* ---- client set-up --------------------------------------------------------
 */

static void on_log(uvmqtt_client_t *c, int level, const char *msg, void *arg) {
  tool_cfg_t *cfg = arg;
  (void)c;
  if (cfg->quiet)
    return;
  /* Before the first connection the tool reports the failure itself. */
  if (!cfg->debug && (!cfg->connected_once || level > UVMQTT_LOG_WARN))
    return;
  static const char *names[] = {"error", "warning", "info", "debug"};
  fprintf(stderr, "%s: %s: %s\n", cfg->prog,
          names[level >= 0 && level <= 3 ? level : 3], msg);
}

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

static int tls_setup(tool_cfg_t *cfg) {
  int rc = uvmqtt_tls_config_new(&cfg->tls);
  if (rc < 0) {
    tool_err(cfg, "TLS: %s", uvmqtt_strerror(rc));
    return -1;
  }
  const char *what = "";
  if (cfg->cafile &&
      (rc = uvmqtt_tls_config_set_ca_file(cfg->tls, cfg->cafile)) < 0) {
    what = cfg->cafile;
    goto fail;
  }
  if (cfg->capath &&
      (rc = uvmqtt_tls_config_set_ca_path(cfg->tls, cfg->capath)) < 0) {
    what = cfg->capath;
    goto fail;
  }
  if ((cfg->os_certs || (!cfg->cafile && !cfg->capath && !cfg->psk)) &&
      (rc = uvmqtt_tls_config_set_ca_default(cfg->tls)) < 0) {
    what = "system CA certificates";
    goto fail;
  }
  if (cfg->cert && (rc = uvmqtt_tls_config_set_cert_file(
                        cfg->tls, cfg->cert, cfg->key, cfg->keypass)) < 0) {
    what = cfg->cert;
    goto fail;
  }
  if (cfg->insecure)
    uvmqtt_tls_config_set_verify(cfg->tls, true, false);
  if (cfg->tls_version) {
    int ver = 0;
    if (!strcasecmp(cfg->tls_version, "tlsv1.2"))
      ver = UVMQTT_TLS_V1_2;
    else if (!strcasecmp(cfg->tls_version, "tlsv1.3"))
      ver = UVMQTT_TLS_V1_3;
    if (!ver) {
      tool_err(cfg, "--tls-version: unsupported '%s' (tlsv1.2 or tlsv1.3)",
               cfg->tls_version);
      return -1;
    }
    if ((rc = uvmqtt_tls_config_set_versions(cfg->tls, ver, ver)) < 0) {
      what = cfg->tls_version;
      goto fail;
    }
  }
  if (cfg->alpn &&
      (rc = uvmqtt_tls_config_set_alpn(cfg->tls, &cfg->alpn, 1)) < 0) {
    what = cfg->alpn;
    goto fail;
  }
  if (cfg->psk) {
    uint8_t key[64];
    size_t n = strlen(cfg->psk);
    if (n == 0 || n % 2 || n / 2 > sizeof(key)) {
      tool_err(cfg, "--psk: the key must be given in hexadecimal");
      return -1;
    }
    for (size_t k = 0; k < n / 2; k++) {
      int hi = hexval(cfg->psk[2 * k]), lo = hexval(cfg->psk[2 * k + 1]);
      if (hi < 0 || lo < 0) {
        tool_err(cfg, "--psk: the key must be given in hexadecimal");
        return -1;
      }
      key[k] = (uint8_t)(hi * 16 + lo);
    }
    rc = uvmqtt_tls_config_set_psk(cfg->tls, cfg->psk_identity, key, n / 2);
    memset(key, 0, sizeof(key));
    if (rc < 0) {
      what = "--psk";
      goto fail;
    }
  }
  return 0;
fail:
  tool_err(cfg, "TLS: %s: %s", what, uvmqtt_strerror(rc));
  return -1;
}

typedef struct {
  tool_cfg_t *cfg;
  int status;
  bool done;
} store_open_t;

static void on_store_open(uvmqtt_store_t *store, int status,
                          const uvmqtt_store_report_t *r, void *arg) {
  store_open_t *so = arg;
  so->done = true;
  so->status = status;
  so->cfg->store = store;
  if (status == 0 && r->dropped_records)
    tool_err(so->cfg,
             "store %s was damaged: %llu record(s), %llu byte(s) dropped",
             so->cfg->store_path, (unsigned long long)r->dropped_records,
             (unsigned long long)r->dropped_bytes);
}

/* Opens --store before anything else is on the loop: the file is read on
 * the thread pool and the loop runs until that is done. */
static int tool_store_open(tool_cfg_t *cfg, uv_loop_t *loop) {
  store_open_t so = {cfg, 0, false};
  int rc = uvmqtt_store_open(loop, cfg->store_path, NULL, on_store_open, &so);
  while (rc == 0 && !so.done)
    uv_run(loop, UV_RUN_ONCE);
  if (rc == 0)
    rc = so.status;
  if (rc < 0)
    tool_err(cfg, "cannot open the store %s: %s", cfg->store_path,
             uvmqtt_strerror(rc));
  return rc;
}

int tool_client_new(tool_cfg_t *cfg, uv_loop_t *loop, uvmqtt_client_t **out) {
  uvmqtt_options_t *o;
  int rc = uvmqtt_options_new(&o);
  if (rc < 0) {
    tool_err(cfg, "%s", uvmqtt_strerror(rc));
    return -1;
  }
  const char *step = "options";
  if ((rc = uvmqtt_options_set_protocol(o, cfg->version)) < 0)
    goto fail;
  if (cfg->id && (rc = uvmqtt_options_set_client_id(o, cfg->id)) < 0) {
    step = "client id";
    goto fail;
  }
  if (cfg->max_inflight &&
      (rc = uvmqtt_options_set_max_inflight(o, cfg->max_inflight)) < 0) {
    step = "-M max inflight";
    goto fail;
  }
  if (cfg->manual_ack &&
      (rc = uvmqtt_options_set_manual_ack(o, true, 0, 0)) < 0)
    goto fail;
  if (cfg->stats && (rc = uvmqtt_options_set_stats(o, true)) < 0)
    goto fail;
  if (cfg->max_filters &&
      (rc = uvmqtt_options_set_max_filters(o, cfg->max_filters)) < 0) {
    step = "--max-filters";
    goto fail;
  }
  if ((rc = uvmqtt_options_set_clean_session(o, cfg->clean)) < 0 ||
      (rc = uvmqtt_options_set_keepalive(o, cfg->keepalive)) < 0 ||
      (rc = uvmqtt_options_set_connect_timeout(o, cfg->conn_timeout_ms)) < 0)
    goto fail;
  if (cfg->has_expiry &&
      (rc = uvmqtt_options_set_session_expiry(o, cfg->expiry)) < 0)
    goto fail;
  if ((cfg->user || cfg->pass) &&
      (rc = uvmqtt_options_set_credentials(
           o, cfg->user, cfg->pass, cfg->pass ? strlen(cfg->pass) : 0)) < 0) {
    step = "credentials";
    goto fail;
  }
  if (cfg->will_topic) {
    const char *wp = cfg->will_payload ? cfg->will_payload : "";
    if ((rc = uvmqtt_options_set_will(o, cfg->will_topic, wp, strlen(wp),
                                      cfg->will_qos, cfg->will_retain)) < 0) {
      step = "will";
      goto fail;
    }
    if (cfg->props[TOOL_P_WILL].any &&
        (rc = uvmqtt_options_set_will_props(o, cfg->props[TOOL_P_WILL].p)) <
            0) {
      step = "will properties";
      goto fail;
    }
  }
  if (cfg->props[TOOL_P_CONNECT].any &&
      (rc = uvmqtt_options_set_connect_props(o, cfg->props[TOOL_P_CONNECT].p)) <
          0) {
    step = "connect properties";
    goto fail;
  }
  if (cfg->bind && (rc = uvmqtt_options_set_bind_address(o, cfg->bind)) < 0) {
    step = "-A bind address";
    goto fail;
  }
  if (cfg->dns && (rc = uvmqtt_options_set_dns_servers(o, cfg->dns)) < 0) {
    step = "--dns-server";
    goto fail;
  }
  if (cfg->proxy && (rc = uvmqtt_options_set_proxy(o, cfg->proxy)) < 0) {
    step = "--proxy";
    goto fail;
  }
  if (tls_wanted(cfg)) {
    if (tls_setup(cfg) < 0) {
      uvmqtt_options_del(o);
      return -1;
    }
    if ((rc = uvmqtt_options_set_tls(o, cfg->tls, cfg->url == NULL)) < 0) {
      step = "TLS";
      goto fail;
    }
  }
  if (cfg->store_path) {
    step = "--store";
    if ((rc = tool_store_open(cfg, loop)) < 0) {
      uvmqtt_options_del(o);
      return -1;
    }
    if ((rc = uvmqtt_options_set_store(
             o, cfg->store,
             cfg->store_sync ? UVMQTT_DURABLE_POWER : UVMQTT_DURABLE_PROCESS)) <
        0)
      goto fail;
  }
  rc = uvmqtt_client_new(loop, o, out);
  uvmqtt_options_del(o);
  if (rc < 0) {
    tool_err(cfg, "cannot create the client: %s", uvmqtt_strerror(rc));
    tool_store_close(cfg, loop);
    return -1;
  }
  uvmqtt_client_set_data(*out, cfg); /* for the close callback (--stats) */
  uvmqtt_client_on_log(*out, on_log, cfg,
                       cfg->debug ? UVMQTT_LOG_DEBUG : UVMQTT_LOG_WARN);
  return 0;
fail:
  uvmqtt_options_del(o);
  tool_err(cfg, "%s: %s", step, uvmqtt_strerror(rc));
  tool_store_close(cfg, loop);
  return -1;
}

void tool_store_close(tool_cfg_t *cfg, uv_loop_t *loop) {
  if (!cfg->store)
    return;
  if (uvmqtt_store_close(cfg->store, NULL, NULL) == 0)
    uv_run(loop, UV_RUN_DEFAULT);
  cfg->store = NULL;
}

static void where(const tool_cfg_t *cfg, char *buf, size_t cap) {
  if (cfg->url)
    snprintf(buf, cap, "%s", cfg->url_connect ? cfg->url_connect : cfg->url);
  else if (cfg->srv)
    snprintf(buf, cap, "SRV %s", cfg->host);
  else if (cfg->port)
    snprintf(buf, cap, "%s:%d", cfg->host ? cfg->host : "localhost", cfg->port);
  else
    snprintf(buf, cap, "%s", cfg->host ? cfg->host : "localhost");
}

int tool_connect(tool_cfg_t *cfg, uvmqtt_client_t *c) {
  int rc;
  if (cfg->url)
    rc = uvmqtt_client_connect_uri(c, cfg->url_connect);
  else if (cfg->srv)
    rc = uvmqtt_client_connect_srv(c, cfg->host);
  else
    rc = uvmqtt_client_connect(c, cfg->host ? cfg->host : "localhost",
                               cfg->port);
  if (rc < 0) {
    char w[300];
    where(cfg, w, sizeof(w));
    tool_err(cfg, "cannot connect to %s: %s", w, uvmqtt_strerror(rc));
    return -1;
  }
  return 0;
}

bool tool_connect_error_is_final(int status, const uvmqtt_connack_t *ack) {
  if (status == UVMQTT_EREFUSED && ack)
    return !uvmqtt_connack_is_retryable(ack->reason_code);
  return !uvmqtt_err_is_retryable(status);
}

void tool_report_connect_error(const tool_cfg_t *cfg, int status,
                               const uvmqtt_connack_t *ack) {
  char w[300];
  where(cfg, w, sizeof(w));
  if (status == UVMQTT_EREFUSED && ack) {
    tool_err(cfg, "connection refused by %s: %s (reason code %u)", w,
             uvmqtt_reason_string(ack->reason_code, cfg->version != UVMQTT_V5),
             ack->reason_code);
  } else if (status <= UVMQTT_ETLS && status > UVMQTT_ETLS - 100) {
    tool_err(cfg, "TLS failure connecting to %s: %s", w,
             uvmqtt_strerror(status));
  } else if (status <= UVMQTT_EDNS && status > UVMQTT_EDNS - 100) {
    tool_err(cfg, "DNS failure looking up %s: %s", w, uvmqtt_strerror(status));
  } else if (status == UV_EAI_NONAME || status == UV_EAI_AGAIN ||
             status == UV_EAI_FAIL || status == UV_EAI_NODATA) {
    tool_err(cfg, "DNS failure looking up %s: %s", w, uvmqtt_strerror(status));
  } else {
    tool_err(cfg, "cannot connect to %s: %s", w, uvmqtt_strerror(status));
  }
}

void tool_usage_common(FILE *out) {
  fputs(
      "Connection:\n"
      "  -h host          broker host (default localhost); with -S, the "
      "domain\n"
      "  -p port          broker port (default 1883, 8883 with TLS)\n"
      "  -L URL           mqtt[s]://[user[:pass]@]host[:port]/topic or\n"
      "                   ws[s]://[user[:pass]@]host[:port]/path (topics "
      "from -t)\n"
      "                   unix:///path (a unix socket; unix://@name: "
      "abstract),\n"
      "                   ws+unix:///path\n"
      "  --unix path      connect to the broker's unix-domain socket\n"
      "  --proxy URL      socks5h://[user[:pass]@]host[:port] (1080), "
      "socks5://\n"
      "                   (names resolved here) or http://... (HTTP "
      "CONNECT)\n"
      "  -S               look up _mqtt._tcp.<host> (DNS SRV)\n"
      "  --dns-server a[:port]  DNS server for -S and name lookups\n"
      "  -A address       bind to this local address\n"
      "  -i id | -I prefix  client id / client id prefix (+ pid)\n"
      "  -u user  -P password\n"
      "  -k keepalive     seconds (default 60, 5..65535)\n"
      "  -V 31|311|5      protocol version (also mqttv31, mqttv311, mqttv5)\n"
      "  -c               clean session off (needs -i)\n"
      "  --store file     keep the session (messages in flight, QoS 2 state)\n"
      "                   in this file and resume it on the next run (needs\n"
      "                   -i; use with -c); survives kill -9\n"
      "  --store-sync     with --store: fdatasync, survives power loss too\n"
      "  -x seconds       v5 session expiry interval (-1: never)\n"
      "  -q qos           0, 1 or 2\n"
      "  --connect-timeout seconds  time allowed to connect (default 10)\n"
      "  --max-filters n  at most n filters per SUBSCRIBE / UNSUBSCRIBE\n"
      "  -d               debug log on stderr\n"
      "  --quiet          no error or warning messages\n"
      "  --stats          print the connection's statistics at exit\n"
      "  --will-topic t --will-payload p --will-qos q --will-retain\n"
      "  -D command property value   v5 property; command is connect,\n"
      "                   publish, subscribe, unsubscribe or will; "
      "properties:\n"
      "                   user-property (name value), "
      "message-expiry-interval,\n"
      "                   content-type, response-topic, correlation-data,\n"
      "                   payload-format-indicator, session-expiry-interval,\n"
      "                   subscription-identifier, receive-maximum,\n"
      "                   topic-alias-maximum, maximum-packet-size,\n"
      "                   request-problem-information,\n"
      "                   request-response-information, will-delay-interval\n"
      "TLS:\n"
      "  --cafile file  --capath dir  --tls-use-os-certs\n"
      "  --cert file --key file [--keypass pw]   client certificate\n"
      "  --insecure       do not check the server's host name\n"
      "  --tls-version tlsv1.2|tlsv1.3  --tls-alpn protocol\n"
      "  --psk hex --psk-identity id\n"
      "  --help           this text\n",
      out);
}

void tool_print_stats(uvmqtt_client_t *c) {
  static const char *const names[16] = {
      "",        "CONNECT",  "CONNACK",    "PUBLISH", "PUBACK",      "PUBREC",
      "PUBREL",  "PUBCOMP",  "SUBSCRIBE",  "SUBACK",  "UNSUBSCRIBE", "UNSUBACK",
      "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"};
  uvmqtt_client_stats_t st;
  if (uvmqtt_client_stats(c, &st) < 0)
    return;
  fprintf(stderr,
          "stats: bytes out %llu in %llu; connections %llu (reconnects %llu, "
          "attempts %llu), connected %.3f s, last error %s\n",
          (unsigned long long)st.bytes_out, (unsigned long long)st.bytes_in,
          (unsigned long long)st.connects, (unsigned long long)st.reconnects,
          (unsigned long long)st.attempts, st.connected_ms / 1000.0,
          st.last_error ? uvmqtt_err_name(st.last_error) : "none");
  fprintf(
      stderr,
      "stats: messages out qos0 %llu qos1 %llu qos2 %llu (resent %llu); "
      "in qos0 %llu qos1 %llu qos2 %llu\n",
      (unsigned long long)st.published[0], (unsigned long long)st.published[1],
      (unsigned long long)st.published[2], (unsigned long long)st.republished,
      (unsigned long long)st.delivered[0], (unsigned long long)st.delivered[1],
      (unsigned long long)st.delivered[2]);
  fprintf(stderr,
          "stats: completed %llu, dropped %llu, expired %llu, refused %llu, "
          "failed %llu; in flight %u, queued %u\n",
          (unsigned long long)st.completed, (unsigned long long)st.dropped,
          (unsigned long long)st.expired, (unsigned long long)st.refused,
          (unsigned long long)st.failed, st.inflight, st.queued);
  if (st.rtt_last_us)
    fprintf(stderr,
            "stats: keepalive rtt last %u us, smoothed %u us, max %u "
            "us\n",
            st.rtt_last_us, st.rtt_smoothed_us, st.rtt_max_us);
  for (int dir = 0; dir < 2; dir++) {
    const uint64_t *n = dir ? st.packets_in : st.packets_out;
    fprintf(stderr, "stats: packets %s:", dir ? "in" : "out");
    for (int i = 1; i < 16; i++)
      if (n[i])
        fprintf(stderr, " %s %llu", names[i], (unsigned long long)n[i]);
    fputc('\n', stderr);
  }
}
