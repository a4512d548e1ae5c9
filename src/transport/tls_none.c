/* The TLS configuration API (include/uvmqtt/tls.h) in a build without TLS
 * (meson -Dtls=disabled): every function returns UVMQTT_ENOTSUP, as the
 * header promises, so programs link and fail clearly at run time.
 */
#include "uvmqtt_config.h"

#include "uvmqtt/tls.h"

int uvmqtt_tls_config_new(uvmqtt_tls_config_t **out) {
  if (out != NULL)
    *out = NULL;
  return UVMQTT_ENOTSUP;
}
void uvmqtt_tls_config_free(uvmqtt_tls_config_t *cfg) {
  (void)cfg;
}
int uvmqtt_tls_config_set_ca_file(uvmqtt_tls_config_t *cfg, const char *p) {
  (void)cfg;
  (void)p;
  return UVMQTT_ENOTSUP;
}
int uvmqtt_tls_config_set_ca_path(uvmqtt_tls_config_t *cfg, const char *d) {
  (void)cfg;
  (void)d;
  return UVMQTT_ENOTSUP;
}
int uvmqtt_tls_config_set_ca_pem(uvmqtt_tls_config_t *cfg, const char *pem,
                                 size_t len) {
  (void)cfg;
  (void)pem;
  (void)len;
  return UVMQTT_ENOTSUP;
}
int uvmqtt_tls_config_set_ca_default(uvmqtt_tls_config_t *cfg) {
  (void)cfg;
  return UVMQTT_ENOTSUP;
}
int uvmqtt_tls_config_set_cert_file(uvmqtt_tls_config_t *cfg, const char *c,
                                    const char *k, const char *pw) {
  (void)cfg;
  (void)c;
  (void)k;
  (void)pw;
  return UVMQTT_ENOTSUP;
}
int uvmqtt_tls_config_set_cert_pem(uvmqtt_tls_config_t *cfg, const char *c,
                                   size_t cl, const char *k, size_t kl,
                                   const char *pw) {
  (void)cfg;
  (void)c;
  (void)cl;
  (void)k;
  (void)kl;
  (void)pw;
  return UVMQTT_ENOTSUP;
}
int uvmqtt_tls_config_set_verify(uvmqtt_tls_config_t *cfg, bool p, bool h) {
  (void)cfg;
  (void)p;
  (void)h;
  return UVMQTT_ENOTSUP;
}
int uvmqtt_tls_config_set_versions(uvmqtt_tls_config_t *cfg, int lo, int hi) {
  (void)cfg;
  (void)lo;
  (void)hi;
  return UVMQTT_ENOTSUP;
}
int uvmqtt_tls_config_set_ciphersuites(uvmqtt_tls_config_t *cfg,
                                       const char *list) {
  (void)cfg;
  (void)list;
  return UVMQTT_ENOTSUP;
}
int uvmqtt_tls_config_set_alpn(uvmqtt_tls_config_t *cfg,
                               const char *const *protocols, size_t count) {
  (void)cfg;
  (void)protocols;
  (void)count;
  return UVMQTT_ENOTSUP;
}
int uvmqtt_tls_config_set_psk(uvmqtt_tls_config_t *cfg, const char *identity,
                              const void *key, size_t key_len) {
  (void)cfg;
  (void)identity;
  (void)key;
  (void)key_len;
  return UVMQTT_ENOTSUP;
}
int uvmqtt_tls_config_set_handshake_timeout(uvmqtt_tls_config_t *cfg,
                                            unsigned ms) {
  (void)cfg;
  (void)ms;
  return UVMQTT_ENOTSUP;
}
int uvmqtt_tls_config_set_debug(uvmqtt_tls_config_t *cfg, int level) {
  (void)cfg;
  (void)level;
  return UVMQTT_ENOTSUP;
}
int uvmqtt_tls_config_set_session_resumption(uvmqtt_tls_config_t *cfg,
                                             bool enable) {
  (void)cfg;
  (void)enable;
  return UVMQTT_ENOTSUP;
}
int uvmqtt_tls_config_session_stats(const uvmqtt_tls_config_t *cfg,
                                    uint64_t *handshakes, uint64_t *resumed) {
  (void)cfg;
  if (handshakes != NULL)
    *handshakes = 0;
  if (resumed != NULL)
    *resumed = 0;
  return UVMQTT_ENOTSUP;
}
