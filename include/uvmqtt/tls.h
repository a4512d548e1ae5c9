/* TLS configuration for uvmqtt (mbedTLS).
 *
 * One configuration object can be shared by many clients (one parsed CA
 * chain for thousands of connections). It is NOT copied by
 * uvmqtt_options_set_tls(): it MUST outlive every client that uses it, and
 * MUST NOT be changed while clients use it.
 *
 * Peer verification and host-name verification are ON by default; SNI is
 * set from the host name connected to.
 *
 * When the library is built without TLS every function returns
 * UVMQTT_ENOTSUP (and _new returns it without allocating).
 */
#ifndef UVMQTT_TLS_H
#define UVMQTT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uvmqtt/errors.h"
#include "uvmqtt/version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct uvmqtt_tls_config_s uvmqtt_tls_config_t;

#define UVMQTT_TLS_V1_2 0x0303
#define UVMQTT_TLS_V1_3 0x0304

/* Creates a configuration with the defaults (verify peer and host name,
 * TLS 1.2 minimum, the highest version mbedTLS supports as maximum,
 * mbedTLS's default cipher suites, handshake timeout 10 s). Errors:
 * UVMQTT_ENOMEM, UVMQTT_ETLS_CONFIG (RNG seeding failed), UVMQTT_ENOTSUP. */
UVMQTT_EXTERN int uvmqtt_tls_config_new(uvmqtt_tls_config_t **out);
UVMQTT_EXTERN void uvmqtt_tls_config_free(uvmqtt_tls_config_t *cfg);

/* Trusted CA certificates (PEM) from a file, every file in a directory, or
 * memory; calls add to the chain. Errors: UVMQTT_ETLS_FILE (unreadable or
 * unparsable), UVMQTT_EINVAL. */
UVMQTT_EXTERN int uvmqtt_tls_config_set_ca_file(uvmqtt_tls_config_t *cfg,
                                                const char *path);
UVMQTT_EXTERN int uvmqtt_tls_config_set_ca_path(uvmqtt_tls_config_t *cfg,
                                                const char *dir);
UVMQTT_EXTERN int uvmqtt_tls_config_set_ca_pem(uvmqtt_tls_config_t *cfg,
                                               const char *pem, size_t len);

/* Client certificate and private key (PEM files or memory); `password`
 * decrypts an encrypted key (may be NULL). Errors: UVMQTT_ETLS_FILE,
 * UVMQTT_ETLS_CONFIG (key does not match the certificate). */
UVMQTT_EXTERN int uvmqtt_tls_config_set_cert_file(uvmqtt_tls_config_t *cfg,
                                                  const char *cert_path,
                                                  const char *key_path,
                                                  const char *password);
UVMQTT_EXTERN int
uvmqtt_tls_config_set_cert_pem(uvmqtt_tls_config_t *cfg, const char *cert_pem,
                               size_t cert_len, const char *key_pem,
                               size_t key_len, const char *password);

/* Verification switches. verify_peer=false accepts any certificate (and
 * logs a warning per connection); verify_hostname=false is Paho's
 * tls_insecure_set(True): the chain is checked, the name is not. */
UVMQTT_EXTERN int uvmqtt_tls_config_set_verify(uvmqtt_tls_config_t *cfg,
                                               bool verify_peer,
                                               bool verify_hostname);

/* Minimum and maximum protocol versions (UVMQTT_TLS_V1_2 / _V1_3; 0 keeps
 * the default). UVMQTT_ENOTSUP when the mbedTLS in use lacks TLS 1.3. */
UVMQTT_EXTERN int uvmqtt_tls_config_set_versions(uvmqtt_tls_config_t *cfg,
                                                 int min_version,
                                                 int max_version);

/* Cipher suites by IANA/mbedTLS name, separated by ':' or ','. Errors:
 * UVMQTT_EINVAL naming no known suite. */
UVMQTT_EXTERN int uvmqtt_tls_config_set_ciphersuites(uvmqtt_tls_config_t *c,
                                                     const char *list);

/* ALPN protocols offered, in preference order (e.g. "mqtt",
 * "x-amzn-mqtt-ca"). */
UVMQTT_EXTERN int uvmqtt_tls_config_set_alpn(uvmqtt_tls_config_t *cfg,
                                             const char *const *protocols,
                                             size_t count);

/* TLS-PSK: identity and raw key bytes. */
UVMQTT_EXTERN int uvmqtt_tls_config_set_psk(uvmqtt_tls_config_t *cfg,
                                            const char *identity,
                                            const void *key, size_t key_len);

/* Time allowed for the handshake, in ms (default 10000). */
UVMQTT_EXTERN int
uvmqtt_tls_config_set_handshake_timeout(uvmqtt_tls_config_t *cfg, unsigned ms);

/* Debug output from mbedTLS (0 = off .. 4). */
UVMQTT_EXTERN int uvmqtt_tls_config_set_debug(uvmqtt_tls_config_t *cfg,
                                              int level);

#ifdef __cplusplus
}
#endif
#endif
