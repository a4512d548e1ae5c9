/* mbedTLS 2.28 / 3.6 differences, kept in one place for the TLS layer.
 *
 * Everything that depends on MBEDTLS_VERSION_MAJOR lives here: key parsing
 * (3.x wants an RNG), protocol version selection, PSA initialisation, and
 * the few private fields the TLS layer reads for diagnostics (the last alert
 * received, the handshake state and whether the server asked for a client
 * certificate). 3.x hides fields behind MBEDTLS_PRIVATE(); 2.28 has them
 * public.
 */
#ifndef UVMQTT_TLS_COMPAT_H
#define UVMQTT_TLS_COMPAT_H

#include <mbedtls/version.h>

#if MBEDTLS_VERSION_MAJOR < 3
#include <mbedtls/config.h>
#else
#include <mbedtls/build_info.h>
#endif

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/debug.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_ciphersuites.h>
#include <mbedtls/x509_crt.h>

#if MBEDTLS_VERSION_MAJOR >= 3
#include <psa/crypto.h>
#endif

#if MBEDTLS_VERSION_NUMBER < 0x021C0000
#error "uvmqtt needs mbedTLS 2.28 or later"
#endif

#ifndef MBEDTLS_PRIVATE
#define MBEDTLS_PRIVATE(member) member
#endif

/* TLS 1.3 is available only in 3.x builds that enable it. */
#if MBEDTLS_VERSION_MAJOR >= 3 && defined(MBEDTLS_SSL_PROTO_TLS1_3)
#define UVMQTT_TLS_HAVE_TLS13 1
#else
#define UVMQTT_TLS_HAVE_TLS13 0
#endif

/* iPAddress subjectAltName entries: 3.x matches them itself; 2.28 does not,
 * so tls_stream.c checks them in its verify callback. */
#define UVMQTT_TLS_SAN_IP_TAG (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7)

/* One-time global initialisation (PSA crypto in 3.x). 0 or an mbedTLS
 * error. */
static inline int uvmqtt__tls_compat_global_init(void) {
#if MBEDTLS_VERSION_MAJOR >= 3
  return psa_crypto_init() == PSA_SUCCESS ? 0 : MBEDTLS_ERR_ERROR_GENERIC_ERROR;
#else
  return 0;
#endif
}

/* Parses a private key; 3.x needs an RNG for blinding. */
static inline int
uvmqtt__tls_compat_parse_key(mbedtls_pk_context *pk, const unsigned char *key,
                             size_t len, const unsigned char *pwd,
                             size_t pwd_len, mbedtls_ctr_drbg_context *rng) {
#if MBEDTLS_VERSION_MAJOR >= 3
  return mbedtls_pk_parse_key(pk, key, len, pwd, pwd_len,
                              mbedtls_ctr_drbg_random, rng);
#else
  (void)rng;
  return mbedtls_pk_parse_key(pk, key, len, pwd, pwd_len);
#endif
}

static inline int uvmqtt__tls_compat_check_pair(const mbedtls_pk_context *pub,
                                                const mbedtls_pk_context *prv,
                                                mbedtls_ctr_drbg_context *rng) {
#if MBEDTLS_VERSION_MAJOR >= 3
  return mbedtls_pk_check_pair(pub, prv, mbedtls_ctr_drbg_random, rng);
#else
  (void)rng;
  return mbedtls_pk_check_pair(pub, prv);
#endif
}

/* Protocol versions as wire numbers: 0x0303 = TLS 1.2, 0x0304 = TLS 1.3. */
static inline void uvmqtt__tls_compat_set_versions(mbedtls_ssl_config *conf,
                                                   int min_v, int max_v) {
#if MBEDTLS_VERSION_MAJOR >= 3
  mbedtls_ssl_conf_min_tls_version(conf, (mbedtls_ssl_protocol_version)min_v);
  mbedtls_ssl_conf_max_tls_version(conf, (mbedtls_ssl_protocol_version)max_v);
#else
  mbedtls_ssl_conf_min_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                               (min_v & 0xff));
  mbedtls_ssl_conf_max_version(conf, MBEDTLS_SSL_MAJOR_VERSION_3,
                               (max_v & 0xff));
#endif
}

/* The description byte of the fatal alert that made a call fail with
 * MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE, or -1. */
static inline int uvmqtt__tls_compat_last_alert(const mbedtls_ssl_context *s) {
  if (s->MBEDTLS_PRIVATE(in_msgtype) != MBEDTLS_SSL_MSG_ALERT ||
      s->MBEDTLS_PRIVATE(in_msg) == NULL)
    return -1;
  return s->MBEDTLS_PRIVATE(in_msg)[1];
}

/* The handshake state (enum mbedtls_ssl_states). */
static inline int uvmqtt__tls_compat_state(const mbedtls_ssl_context *s) {
  return s->MBEDTLS_PRIVATE(state);
}

/* 1 when the server sent a CertificateRequest, 0 when it did not, -1 when
 * this mbedTLS does not tell (3.x keeps it in a private header). */
static inline int
uvmqtt__tls_compat_cert_requested(const mbedtls_ssl_context *s) {
#if MBEDTLS_VERSION_MAJOR >= 3
  (void)s;
  return -1;
#else
  return s->client_auth != 0;
#endif
}

/* Key-exchange groups in preference order. 2.28 offers its curves from the
 * largest down (P-521 first), which a server honouring the client's order
 * then picks. Offer P-256 (the fastest in 2.28, with its NIST reduction)
 * and X25519 first, as 3.x does by default. */
static inline void uvmqtt__tls_compat_set_groups(mbedtls_ssl_config *conf) {
#if MBEDTLS_VERSION_MAJOR < 3 && defined(MBEDTLS_ECP_C)
  static const mbedtls_ecp_group_id groups[] = {
#if defined(MBEDTLS_ECP_DP_SECP256R1_ENABLED)
    MBEDTLS_ECP_DP_SECP256R1,
#endif
#if defined(MBEDTLS_ECP_DP_CURVE25519_ENABLED)
    MBEDTLS_ECP_DP_CURVE25519,
#endif
#if defined(MBEDTLS_ECP_DP_SECP384R1_ENABLED)
    MBEDTLS_ECP_DP_SECP384R1,
#endif
#if defined(MBEDTLS_ECP_DP_CURVE448_ENABLED)
    MBEDTLS_ECP_DP_CURVE448,
#endif
#if defined(MBEDTLS_ECP_DP_SECP521R1_ENABLED)
    MBEDTLS_ECP_DP_SECP521R1,
#endif
#if defined(MBEDTLS_ECP_DP_BP256R1_ENABLED)
    MBEDTLS_ECP_DP_BP256R1,
#endif
#if defined(MBEDTLS_ECP_DP_BP384R1_ENABLED)
    MBEDTLS_ECP_DP_BP384R1,
#endif
#if defined(MBEDTLS_ECP_DP_BP512R1_ENABLED)
    MBEDTLS_ECP_DP_BP512R1,
#endif
    MBEDTLS_ECP_DP_NONE
  };
  mbedtls_ssl_conf_curves(conf, groups);
#else
  (void)conf;
#endif
}

/* Stops offering ALPN (mbedtls_ssl_conf_alpn_protocols rejects NULL). */
static inline void uvmqtt__tls_compat_clear_alpn(mbedtls_ssl_config *conf) {
#if defined(MBEDTLS_SSL_ALPN)
  conf->MBEDTLS_PRIVATE(alpn_list) = NULL;
#else
  (void)conf;
#endif
}

/* mbedtls_ssl_read() results that are not errors: 3.x reports TLS 1.3
 * session tickets (and early data) that way. */
static inline int uvmqtt__tls_compat_read_again(int rc) {
#if defined(MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
  if (rc == MBEDTLS_ERR_SSL_RECEIVED_NEW_SESSION_TICKET)
    return 1;
#endif
#if defined(MBEDTLS_ERR_SSL_RECEIVED_EARLY_DATA)
  if (rc == MBEDTLS_ERR_SSL_RECEIVED_EARLY_DATA)
    return 1;
#endif
  return rc == MBEDTLS_ERR_SSL_WANT_WRITE;
}

#endif
