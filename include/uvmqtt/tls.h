/** @file
 * TLS configuration for uvmqtt (mbedTLS 2.28 or 3.6).
 *
 * One configuration object can be shared by many clients: one parsed CA
 * chain, one mbedTLS configuration and one random generator serve thousands
 * of connections. It is NOT copied by uvmqtt_options_set_tls(): it MUST
 * outlive every client that uses it (free it after the last client's close
 * callback), and MUST NOT be changed while any connection uses it.
 *
 * Threading: configure it on one thread; once configured it may be used by
 * clients on several loops/threads when mbedTLS is built with
 * MBEDTLS_THREADING_C (Debian's is), since only the RNG is shared state.
 *
 * Peer verification and host-name verification are ON by default; SNI is
 * set from the host name connected to. Failures reach the connect callback
 * as UVMQTT_ETLS_UNTRUSTED, _EXPIRED, _HOSTNAME, _NOCERT (the server wanted
 * a client certificate), _PSK, _ALERT, _HANDSHAKE or UVMQTT_ETIMEDOUT.
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

/** A TLS configuration, opaque; see the file description for sharing. */
typedef struct uvmqtt_tls_config_s uvmqtt_tls_config_t;

/** TLS 1.2, for uvmqtt_tls_config_set_versions(). */
#define UVMQTT_TLS_V1_2 0x0303
/** TLS 1.3, for uvmqtt_tls_config_set_versions(). */
#define UVMQTT_TLS_V1_3 0x0304

/** Creates a configuration with the defaults (verify peer and host name,
 * TLS 1.2 minimum, the highest version mbedTLS supports as maximum,
 * mbedTLS's default cipher suites, handshake timeout 10 s). Errors:
 * UVMQTT_ENOMEM, UVMQTT_ETLS_CONFIG (RNG seeding failed), UVMQTT_ENOTSUP. */
UVMQTT_EXTERN int uvmqtt_tls_config_new(uvmqtt_tls_config_t **out);
/** Frees a configuration (NULL is a no-op). Only once no client uses it:
 * after the close callback of the last one. */
UVMQTT_EXTERN void uvmqtt_tls_config_free(uvmqtt_tls_config_t *cfg);

/** @{ */
/** Trusted CA certificates (PEM or DER) from a file, every file in a
 * directory, or memory; calls add to the chain (one parsed chain shared by
 * every connection). A bundle counts as loaded when at least one
 * certificate in it parses. `len` for _pem may count a trailing NUL or not.
 * Errors: UVMQTT_ETLS_FILE (unreadable, or no certificate parsed),
 * UVMQTT_ENOMEM, UVMQTT_EINVAL (NULL argument). Without any CA, a
 * verifying handshake fails with UVMQTT_ETLS_UNTRUSTED. */
UVMQTT_EXTERN int uvmqtt_tls_config_set_ca_file(uvmqtt_tls_config_t *cfg,
                                                const char *path);
UVMQTT_EXTERN int uvmqtt_tls_config_set_ca_path(uvmqtt_tls_config_t *cfg,
                                                const char *dir);
UVMQTT_EXTERN int uvmqtt_tls_config_set_ca_pem(uvmqtt_tls_config_t *cfg,
                                               const char *pem, size_t len);
/** @} */
/** The system's CA bundle: $SSL_CERT_FILE when set, else the first of the
 * usual locations (/etc/ssl/certs/ca-certificates.crt, ...) that loads.
 * Errors: UVMQTT_ETLS_FILE when none loads. */
UVMQTT_EXTERN int uvmqtt_tls_config_set_ca_default(uvmqtt_tls_config_t *cfg);

/** @{ */
/** Client certificate chain and private key (PEM or DER files, or PEM in
 * memory); `password` decrypts an encrypted key (may be NULL). A second call
 * replaces the first. Key material read from files is wiped from uvmqtt's
 * temporary buffers. Errors: UVMQTT_ETLS_FILE (unreadable, unparsable, or
 * wrong password), UVMQTT_ETLS_CONFIG (the key does not match the
 * certificate), UVMQTT_ENOMEM, UVMQTT_EINVAL. */
UVMQTT_EXTERN int uvmqtt_tls_config_set_cert_file(uvmqtt_tls_config_t *cfg,
                                                  const char *cert_path,
                                                  const char *key_path,
                                                  const char *password);
UVMQTT_EXTERN int
uvmqtt_tls_config_set_cert_pem(uvmqtt_tls_config_t *cfg, const char *cert_pem,
                               size_t cert_len, const char *key_pem,
                               size_t key_len, const char *password);
/** @} */

/** Verification switches (both true by default). verify_peer=false accepts
 * any certificate; verify_hostname=false is Paho's tls_insecure_set(True):
 * the chain is checked, the name is not. Either logs a warning (through the
 * client's log callback) on every connection. Host names are matched
 * against dNSName and iPAddress subjectAltName entries (and the CN when
 * there are none); SNI is sent with the host name connected to. Always 0
 * for a valid cfg. */
UVMQTT_EXTERN int uvmqtt_tls_config_set_verify(uvmqtt_tls_config_t *cfg,
                                               bool verify_peer,
                                               bool verify_hostname);

/** Minimum and maximum protocol versions (UVMQTT_TLS_V1_2 / _V1_3; 0 keeps
 * the default: 1.2 and the highest supported). Errors: UVMQTT_ENOTSUP when
 * the mbedTLS in use lacks TLS 1.3 (mbedTLS 2.28 has only 1.2),
 * UVMQTT_EINVAL for other values or min > max. */
UVMQTT_EXTERN int uvmqtt_tls_config_set_versions(uvmqtt_tls_config_t *cfg,
                                                 int min_version,
                                                 int max_version);

/** Cipher suites in preference order, by mbedTLS name
 * ("TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256") or IANA name (the same with
 * '_'), separated by ':', ',' or ' '. NULL or "" restores the defaults.
 * Errors: UVMQTT_EINVAL when any name is unknown to this mbedTLS (nothing
 * changes then), UVMQTT_ENOMEM. */
UVMQTT_EXTERN int uvmqtt_tls_config_set_ciphersuites(uvmqtt_tls_config_t *c,
                                                     const char *list);

/** ALPN protocols offered, in preference order (e.g. "mqtt",
 * "x-amzn-mqtt-ca"); copied. count 0 offers none. Errors: UVMQTT_EINVAL
 * (empty or over 255 bytes), UVMQTT_ENOMEM, UVMQTT_ENOTSUP (mbedTLS built
 * without ALPN). */
UVMQTT_EXTERN int uvmqtt_tls_config_set_alpn(uvmqtt_tls_config_t *cfg,
                                             const char *const *protocols,
                                             size_t count);

/** TLS-PSK: identity and raw key bytes (copied; at most 32 bytes with
 * mbedTLS's default MBEDTLS_PSK_MAX_LEN). Set once per configuration.
 * A PSK configuration needs no CA and no host name. Errors: UVMQTT_EINVAL,
 * UVMQTT_ESTATE (a PSK is set already), UVMQTT_ENOMEM, UVMQTT_ENOTSUP. */
UVMQTT_EXTERN int uvmqtt_tls_config_set_psk(uvmqtt_tls_config_t *cfg,
                                            const char *identity,
                                            const void *key, size_t key_len);

/** Time allowed for the handshake, in ms (default 10000; 0 is
 * UVMQTT_EINVAL). A handshake that runs out fails with UVMQTT_ETIMEDOUT. */
UVMQTT_EXTERN int
uvmqtt_tls_config_set_handshake_timeout(uvmqtt_tls_config_t *cfg, unsigned ms);

/** Debug output from mbedTLS (0 = off .. 4), delivered as debug-level log
 * lines of the connection that produced them. mbedTLS's threshold is
 * process-wide: the highest level any configuration asked for applies. */
UVMQTT_EXTERN int uvmqtt_tls_config_set_debug(uvmqtt_tls_config_t *cfg,
                                              int level);

/** TLS session resumption (on by default). After a full handshake the
 * session (its ID and, when the server sends one, its session ticket) is
 * saved in the configuration under the server name, and the next
 * connection to that name through this configuration offers it: a server
 * that still knows it (mosquitto does over TLS 1.2 while it keeps running)
 * skips the certificate exchange and key agreement. Every client sharing
 * the configuration shares the saved sessions, so a gateway's thousand
 * clients reconnecting to one broker pay one full handshake, not a
 * thousand. A server that restarted has forgotten its sessions (unless it
 * keeps ticket keys across restarts) and answers with a full handshake,
 * which costs nothing extra, and whose session replaces the saved one: the
 * other clients then resume that. Up to 8 server names are kept (least
 * recently used dropped); a handshake that fails after offering a session
 * forgets it. Set it before connections use the configuration, like the
 * other setters; the cache itself is safe across threads.
 * Errors: UVMQTT_EINVAL (cfg NULL), UVMQTT_ENOTSUP. */
UVMQTT_EXTERN int
uvmqtt_tls_config_set_session_resumption(uvmqtt_tls_config_t *cfg, bool enable);

/** Handshakes completed through this configuration so far, and how many of
 * them resumed a saved session (for dashboards and benchmarks). Either
 * pointer may be NULL. Safe across threads. Errors: UVMQTT_EINVAL,
 * UVMQTT_ENOTSUP (both counts set to 0). */
UVMQTT_EXTERN int
uvmqtt_tls_config_session_stats(const uvmqtt_tls_config_t *cfg,
                                uint64_t *handshakes, uint64_t *resumed);

#ifdef __cplusplus
}
#endif
#endif
