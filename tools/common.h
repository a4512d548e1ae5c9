/* Shared parts of uvmqtt-pub and uvmqtt-sub: mosquitto-compatible option
 * parsing, client set-up (options, TLS, will, v5 properties), connecting
 * and error reporting. */
#ifndef UVMQTT_TOOLS_COMMON_H
#define UVMQTT_TOOLS_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "uvmqtt.h"

/* Exit codes. */
#define TOOL_EXIT_OK 0
#define TOOL_EXIT_ERR 1
#define TOOL_EXIT_TIMEOUT 27 /* uvmqtt-sub -W, as mosquitto_sub */

/* Packets that -D can give properties to. */
enum {
  TOOL_P_CONNECT = 0,
  TOOL_P_PUBLISH,
  TOOL_P_SUBSCRIBE,
  TOOL_P_UNSUBSCRIBE,
  TOOL_P_WILL,
  TOOL_P_COUNT
};

typedef struct {
  uvmqtt_props_t *p; /* from uvmqtt_props_new(), on the first -D */
  bool any;
} tool_props_t;

typedef struct {
  const char *prog; /* "uvmqtt-pub" */
  bool is_pub;

  /* where */
  const char *host;
  int port; /* 0: default */
  const char *url;
  char *url_connect;     /* the URL without the topic path (mqtt/mqtts) */
  char *url_topic;       /* decoded topic from an mqtt(s) URL path */
  bool url_tls;          /* mqtts:// or wss:// */
  bool srv;              /* -S */
  const char *bind;      /* -A */
  const char *dns;       /* --dns-server */
  const char *proxy;     /* --proxy URL */
  const char *unix_path; /* --unix */
  unsigned conn_timeout_ms;

  /* who */
  const char *id;
  const char *id_prefix;
  char *id_buf;
  const char *user;
  const char *pass;
  int version; /* UVMQTT_V31 / V311 / V5 */
  bool clean;
  bool has_expiry;
  uint32_t expiry;
  unsigned keepalive;
  unsigned max_inflight; /* 0: the library's default */
  unsigned max_filters;  /* --max-filters: per (UN)SUBSCRIBE, 0: no limit */
  int qos;
  bool debug;
  bool quiet;
  bool stats;          /* --stats: print the client's statistics at exit */
  bool connected_once; /* set by the tool on its first CONNACK */
  bool manual_ack;     /* uvmqtt-sub --ack-after-write */

  /* will */
  const char *will_topic;
  const char *will_payload;
  int will_qos;
  bool will_retain;

  /* topics from -t (and an mqtt URL path) */
  const char **topics;
  size_t ntopics;

  /* v5 properties from -D */
  tool_props_t props[TOOL_P_COUNT];

  /* TLS */
  const char *cafile, *capath, *cert, *key, *keypass;
  const char *tls_version, *alpn, *psk, *psk_identity;
  bool insecure;
  bool os_certs;
  uvmqtt_tls_config_t *tls;
  /* persistence: --store PATH [--store-sync] */
  const char *store_path;
  bool store_sync;
  uvmqtt_store_t *store;
} tool_cfg_t;

/* Sets the defaults. */
void tool_cfg_init(tool_cfg_t *cfg, const char *prog, bool is_pub);
/* Frees what tool_cfg_* allocated (not the client). */
void tool_cfg_free(tool_cfg_t *cfg);

/* Tries the shared option at argv[*i]. Returns 1 when it was consumed
 * (*i advanced past its values), 0 when it is not a shared option, -1 on a
 * bad value (a message has been printed). */
int tool_parse_common(tool_cfg_t *cfg, int argc, char **argv, int *i);
/* Checks the combination after parsing (URL, -c without id, -D and
 * versions, ...). Returns 0 or -1 with a message printed. */
int tool_cfg_finish(tool_cfg_t *cfg);

/* Builds the TLS configuration when asked for and creates the client.
 * Returns 0 or -1 with a message printed. */
int tool_client_new(tool_cfg_t *cfg, uv_loop_t *loop, uvmqtt_client_t **out);
/* After the client has closed and the loop has stopped: closes the store
 * (--store) and runs the loop until it has. */
void tool_store_close(tool_cfg_t *cfg, uv_loop_t *loop);
/* Starts connecting (host/port, URL or SRV). 0 or -1 with a message. */
int tool_connect(tool_cfg_t *cfg, uvmqtt_client_t *c);

/* Prints "prog: message" on stderr unless --quiet. */
void tool_err(const tool_cfg_t *cfg, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Describes a failed connection attempt on stderr (reason string for a
 * refusal, TLS / DNS causes spelled out). */
void tool_report_connect_error(const tool_cfg_t *cfg, int status,
                               const uvmqtt_connack_t *ack);
/* True when the client will not retry after this connect failure. */
bool tool_connect_error_is_final(int status, const uvmqtt_connack_t *ack);

/* With --stats: the client's statistics on stderr (from its close
 * callback, so the DISCONNECT is counted). */
void tool_print_stats(uvmqtt_client_t *c);

/* The shared part of --help. */
void tool_usage_common(FILE *out);

/* Parses "1.5" seconds into ms; -1 when invalid. */
long tool_parse_seconds(const char *s);

#endif
