/* Real proxies for the integration tests, from Debian packages: tinyproxy
 * (HTTP CONNECT, optionally Basic auth), microsocks (SOCKS5, optionally
 * username/password) and dante-server's danted (SOCKS5, no auth: its
 * username method checks system accounts). Each runs on 127.0.0.1 on a
 * free port, with a config the helper writes into a temporary directory,
 * in a process group of its own (danted forks), and is stopped by that
 * PID. */
#ifndef UVMQTT_PROXYUTIL_H
#define UVMQTT_PROXYUTIL_H

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { TP_TINYPROXY, TP_MICROSOCKS, TP_DANTE } tp_kind_t;

typedef struct {
  tp_kind_t kind;
  pid_t pid; /* also the process group */
  int port;
  char dir[256];
  char conf[320];
  char log[320];
  char user[64], pass[64]; /* empty: no authentication */
  char extra[2048];        /* kept for restarts */
} tp_proxy_t;

/* Starts a proxy of `kind` on 127.0.0.1:port (0: a free port). user/pass
 * (NULL: none) turn on authentication (not for TP_DANTE). `extra` (may be
 * NULL) is added to the config verbatim: tinyproxy lines (e.g.
 * "ConnectPort 1883\n"; without any ConnectPort every port is allowed),
 * or dante rules placed before the rule that passes everything (e.g.
 * "socks block { from: 0.0.0.0/0 to: 127.0.0.1/32 port = 1883 }\n").
 * Waits (at most 5 s) until it accepts connections. 0 or -1. */
int tp_start(tp_proxy_t *p, tp_kind_t kind, int port, const char *user,
             const char *pass, const char *extra);
/* SIGTERM to its process group, wait up to 3 s, then SIGKILL. */
void tp_stop(tp_proxy_t *p);
/* Starts it again on the same port with the same config. 0 or -1. */
int tp_restart(tp_proxy_t *p);
/* Stops it and removes its directory. */
void tp_cleanup(tp_proxy_t *p);
/* Lines of the proxy's log that contain `needle`. */
int tp_log_count(const tp_proxy_t *p, const char *needle);
/* How many tunnels the proxy opened to a target, from its log. */
int tp_tunnels(const tp_proxy_t *p);
/* "http://[user:pass@]127.0.0.1:port" or "socks5h://...", into a static
 * buffer (one of 4 rotating). */
const char *tp_url(const tp_proxy_t *p, const char *scheme);

#ifdef __cplusplus
}
#endif
#endif
