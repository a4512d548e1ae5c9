/* What the TLS configuration (tls_config.c) and the tls stream
 * (tls_stream.c) share: the configuration object's layout and the mbedTLS
 * debug hook. Only built with UVMQTT_HAVE_TLS.
 */
#ifndef UVMQTT_TLS_INT_H
#define UVMQTT_TLS_INT_H

#include <stdbool.h>

#include "uvmqtt/tls.h"

#include "tls_compat.h"

/* Log levels, the same values as UVMQTT_LOG_* in uvmqtt.h. */
enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

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
};

/* mbedTLS debug output, routed to the log callback of the tls stream whose
 * handshake or record step is running on this thread (tls_stream.c). */
void uvmqtt__tls_debug_cb(void *ctx, int level, const char *file, int line,
                          const char *str);

#endif
