/* What the TLS configuration (tls_config.c) and the tls stream
 * (tls_stream.c) share: the configuration object's layout, its cache of
 * sessions to resume, and the mbedTLS debug hook. Only built with
 * UVMQTT_HAVE_TLS.
 */
#ifndef UVMQTT_TLS_INT_H
#define UVMQTT_TLS_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "uvmqtt/log.h"
#include "uvmqtt/tls.h"

#include "tls_compat.h"

/* Sessions kept for resumption: one per server name, the most recently
 * used first. A handful of brokers per configuration is the common case. */
#define UVMQTT_TLS_CACHE_MAX 8

typedef struct {
  char *name; /* server name ("" without one); NULL: slot unused */
  mbedtls_ssl_session session;
  uint64_t used; /* cache clock when last stored or offered */
} uvmqtt_tls_saved_t;

struct uvmqtt_tls_config_s {
  mbedtls_ssl_config conf;
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  mbedtls_x509_crt ca;
  mbedtls_x509_crt cert;
  mbedtls_pk_context key;
  int *suites;       /* zero-terminated, NULL: mbedTLS's defaults */
  const char **alpn; /* NULL-terminated, strings in the same block */
  unsigned timeout_ms;
  int debug_level;
  int min_version;
  int max_version;
  bool has_ca;
  bool has_cert;
  bool has_psk;
  bool verify_peer;
  bool verify_hostname;
  bool resume; /* offer saved sessions (default on) */

  /* Session cache, shared by every connection using this configuration,
   * possibly on several threads: guarded by cache_lock. */
  uv_mutex_t cache_lock;
  uint64_t cache_clock;
  uint64_t handshakes; /* completed, full or resumed */
  uint64_t resumed;
  uvmqtt_tls_saved_t cache[UVMQTT_TLS_CACHE_MAX];
};

/* Offers the session saved for `name` (NULL = none) to `ssl` before its
 * handshake. Returns true when one was offered. */
bool uvmqtt__tls_cache_offer(const uvmqtt_tls_config_t *cfg, const char *name,
                             mbedtls_ssl_context *ssl);

/* After a successful handshake: counts it, and saves the session for
 * `name` unless it was a resumption of the saved one. */
void uvmqtt__tls_cache_done(const uvmqtt_tls_config_t *cfg, const char *name,
                            const mbedtls_ssl_context *ssl, bool resumed);

/* After a failed handshake that offered a saved session: forgets it, so a
 * server that cannot resume costs one failure, not every attempt. */
void uvmqtt__tls_cache_forget(const uvmqtt_tls_config_t *cfg, const char *name);

/* mbedTLS debug output, routed to the log callback of the tls stream whose
 * handshake or record step is running on this thread (tls_stream.c). */
void uvmqtt__tls_debug_cb(void *ctx, int level, const char *file, int line,
                          const char *str);

#endif
