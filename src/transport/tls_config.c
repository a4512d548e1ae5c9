/* TLS configuration (include/uvmqtt/tls.h): the object many clients share,
 * holding the parsed CA chain, client certificate and key, the RNG, the
 * mbedTLS client configuration built from the setters below, and the
 * sessions saved for resumption (one per server name). The tls stream
 * that uses it lives in tls_stream.c; without TLS, tls_none.c provides the
 * same functions returning UVMQTT_ENOTSUP.
 */
#include "uvmqtt_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "tls_int.h"

#define DEFAULT_TIMEOUT_MS 10000u

static int max_supported_version(void) {
  return UVMQTT_TLS_HAVE_TLS13 ? UVMQTT_TLS_V1_3 : UVMQTT_TLS_V1_2;
}

int uvmqtt_tls_config_new(uvmqtt_tls_config_t **out) {
  static const unsigned char pers[] = "uvmqtt";
  uvmqtt_tls_config_t *cfg;
  int rc;

  if (out == NULL)
    return UVMQTT_EINVAL;
  *out = NULL;
  if (uvmqtt__tls_compat_global_init() != 0)
    return UVMQTT_ETLS_CONFIG;
  cfg = uvmqtt__calloc(1, sizeof(*cfg));
  if (cfg == NULL)
    return UVMQTT_ENOMEM;
  mbedtls_ssl_config_init(&cfg->conf);
  mbedtls_entropy_init(&cfg->entropy);
  mbedtls_ctr_drbg_init(&cfg->drbg);
  mbedtls_x509_crt_init(&cfg->ca);
  mbedtls_x509_crt_init(&cfg->cert);
  mbedtls_pk_init(&cfg->key);
  cfg->timeout_ms = DEFAULT_TIMEOUT_MS;
  cfg->verify_peer = true;
  cfg->verify_hostname = true;
  cfg->min_version = UVMQTT_TLS_V1_2;
  cfg->max_version = max_supported_version();
  cfg->resume = true;
  if (uv_mutex_init(&cfg->cache_lock) != 0) {
    mbedtls_ssl_config_free(&cfg->conf);
    mbedtls_ctr_drbg_free(&cfg->drbg);
    mbedtls_entropy_free(&cfg->entropy);
    uvmqtt__free(cfg);
    return UVMQTT_ENOMEM;
  }

  rc = mbedtls_ctr_drbg_seed(&cfg->drbg, mbedtls_entropy_func, &cfg->entropy,
                             pers, sizeof(pers) - 1);
  if (rc == 0)
    rc = mbedtls_ssl_config_defaults(&cfg->conf, MBEDTLS_SSL_IS_CLIENT,
                                     MBEDTLS_SSL_TRANSPORT_STREAM,
                                     MBEDTLS_SSL_PRESET_DEFAULT);
  if (rc != 0) {
    uvmqtt_tls_config_free(cfg);
    return rc == MBEDTLS_ERR_SSL_ALLOC_FAILED ? UVMQTT_ENOMEM
                                              : UVMQTT_ETLS_CONFIG;
  }
  mbedtls_ssl_conf_rng(&cfg->conf, mbedtls_ctr_drbg_random, &cfg->drbg);
  mbedtls_ssl_conf_authmode(&cfg->conf, MBEDTLS_SSL_VERIFY_REQUIRED);
  uvmqtt__tls_compat_set_groups(&cfg->conf);
  uvmqtt__tls_compat_set_versions(&cfg->conf, cfg->min_version,
                                  cfg->max_version);
  *out = cfg;
  return 0;
}

void uvmqtt_tls_config_free(uvmqtt_tls_config_t *cfg) {
  if (cfg == NULL)
    return;
  for (size_t i = 0; i < UVMQTT_TLS_CACHE_MAX; i++)
    if (cfg->cache[i].name != NULL) {
      mbedtls_ssl_session_free(&cfg->cache[i].session);
      uvmqtt__free(cfg->cache[i].name);
    }
  uv_mutex_destroy(&cfg->cache_lock);
  mbedtls_ssl_config_free(&cfg->conf);
  mbedtls_x509_crt_free(&cfg->ca);
  mbedtls_x509_crt_free(&cfg->cert);
  mbedtls_pk_free(&cfg->key);
  mbedtls_ctr_drbg_free(&cfg->drbg);
  mbedtls_entropy_free(&cfg->entropy);
  uvmqtt__free(cfg->suites);
  uvmqtt__free((void *)cfg->alpn);
  uvmqtt__free(cfg);
}

/* Number of parsed certificates in a chain (an empty head has version 0). */
static size_t chain_len(const mbedtls_x509_crt *c) {
  size_t n = 0;
  for (; c != NULL; c = c->next)
    if (c->version != 0)
      n++;
  return n;
}

/* Parsing returns a negative error, or the number of certificates that
 * failed; a bundle counts as loaded when it added at least one. */
static int ca_added(uvmqtt_tls_config_t *cfg, int rc, size_t before) {
  if (rc < 0 || chain_len(&cfg->ca) == before)
    return rc == MBEDTLS_ERR_X509_ALLOC_FAILED ? UVMQTT_ENOMEM
                                               : UVMQTT_ETLS_FILE;
  cfg->has_ca = true;
  mbedtls_ssl_conf_ca_chain(&cfg->conf, &cfg->ca, NULL);
  return 0;
}

int uvmqtt_tls_config_set_ca_file(uvmqtt_tls_config_t *cfg, const char *path) {
  size_t before;
  if (cfg == NULL || path == NULL)
    return UVMQTT_EINVAL;
  before = chain_len(&cfg->ca);
  return ca_added(cfg, mbedtls_x509_crt_parse_file(&cfg->ca, path), before);
}

int uvmqtt_tls_config_set_ca_path(uvmqtt_tls_config_t *cfg, const char *dir) {
  size_t before;
  if (cfg == NULL || dir == NULL)
    return UVMQTT_EINVAL;
  before = chain_len(&cfg->ca);
  return ca_added(cfg, mbedtls_x509_crt_parse_path(&cfg->ca, dir), before);
}

/* mbedTLS wants PEM NUL-terminated, with the NUL counted in the length. */
static char *nul_terminated(const char *p, size_t len) {
  if (len > 0 && p[len - 1] == '\0')
    len--;
  return uvmqtt__strndup(p, len);
}

int uvmqtt_tls_config_set_ca_pem(uvmqtt_tls_config_t *cfg, const char *pem,
                                 size_t len) {
  size_t before;
  char *copy;
  int rc;
  if (cfg == NULL || pem == NULL || len == 0)
    return UVMQTT_EINVAL;
  copy = nul_terminated(pem, len);
  if (copy == NULL)
    return UVMQTT_ENOMEM;
  before = chain_len(&cfg->ca);
  rc = mbedtls_x509_crt_parse(&cfg->ca, (const unsigned char *)copy,
                              strlen(copy) + 1);
  uvmqtt__free(copy);
  return ca_added(cfg, rc, before);
}

int uvmqtt_tls_config_set_ca_default(uvmqtt_tls_config_t *cfg) {
  static const char *const files[] = {
      "/etc/ssl/certs/ca-certificates.crt", /* Debian, Ubuntu, Alpine */
      "/etc/pki/tls/certs/ca-bundle.crt",   /* Fedora, RHEL */
      "/etc/ssl/ca-bundle.pem",             /* openSUSE */
      "/etc/ssl/cert.pem",                  /* BSDs, macOS */
  };
  const char *env;
  if (cfg == NULL)
    return UVMQTT_EINVAL;
  env = getenv("SSL_CERT_FILE");
  if (env != NULL && *env != '\0')
    return uvmqtt_tls_config_set_ca_file(cfg, env);
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
    if (uvmqtt_tls_config_set_ca_file(cfg, files[i]) == 0)
      return 0;
  return UVMQTT_ETLS_FILE;
}

/* Reads a whole file into a new NUL-terminated buffer. */
static int read_file(const char *path, char **out, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t n = 0, cap = 0;
  if (f == NULL)
    return UVMQTT_ETLS_FILE;
  for (;;) {
    if (cap - n < 4096) {
      char *nb;
      if (cap > (size_t)16 << 20) {
        uvmqtt__free(buf);
        fclose(f);
        return UVMQTT_ETLS_FILE; /* not a key or certificate */
      }
      cap = cap ? cap * 2 : 8192;
      nb = uvmqtt__realloc(buf, cap + 1);
      if (nb == NULL) {
        uvmqtt__free(buf);
        fclose(f);
        return UVMQTT_ENOMEM;
      }
      buf = nb;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0)
      break;
  }
  if (ferror(f)) {
    uvmqtt__free(buf);
    fclose(f);
    return UVMQTT_ETLS_FILE;
  }
  fclose(f);
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return 0;
}

/* Installs a parsed certificate chain and key after checking they match. */
static int install_cert(uvmqtt_tls_config_t *cfg, mbedtls_x509_crt *crt,
                        mbedtls_pk_context *pk) {
  if (uvmqtt__tls_compat_check_pair(&crt->pk, pk, &cfg->drbg) != 0)
    return UVMQTT_ETLS_CONFIG;
  /* conf keeps pointers to cfg->cert and cfg->key; replace the contents
   * in place so a second call needs no second mbedtls_ssl_conf_own_cert. */
  mbedtls_x509_crt_free(&cfg->cert);
  mbedtls_pk_free(&cfg->key);
  cfg->cert = *crt;
  cfg->key = *pk;
  mbedtls_x509_crt_init(crt);
  mbedtls_pk_init(pk);
  if (!cfg->has_cert) {
    if (mbedtls_ssl_conf_own_cert(&cfg->conf, &cfg->cert, &cfg->key) != 0)
      return UVMQTT_ENOMEM;
    cfg->has_cert = true;
  }
  return 0;
}

static int parse_key(uvmqtt_tls_config_t *cfg, mbedtls_pk_context *pk,
                     const char *key, size_t key_len, const char *password) {
  size_t pwd_len = password ? strlen(password) : 0;
  int rc = uvmqtt__tls_compat_parse_key(pk, (const unsigned char *)key, key_len,
                                        (const unsigned char *)password,
                                        pwd_len, &cfg->drbg);
  if (rc == 0)
    return 0;
  return rc == MBEDTLS_ERR_PK_ALLOC_FAILED ? UVMQTT_ENOMEM : UVMQTT_ETLS_FILE;
}

static int set_cert(uvmqtt_tls_config_t *cfg, const char *cert_path,
                    const char *cert_pem, size_t cert_len, const char *key,
                    size_t key_len, const char *password) {
  mbedtls_x509_crt crt;
  mbedtls_pk_context pk;
  int rc;
  mbedtls_x509_crt_init(&crt);
  mbedtls_pk_init(&pk);
  if (cert_path != NULL) {
    rc = mbedtls_x509_crt_parse_file(&crt, cert_path);
  } else {
    char *copy = nul_terminated(cert_pem, cert_len);
    if (copy == NULL) {
      rc = MBEDTLS_ERR_X509_ALLOC_FAILED;
    } else {
      rc = mbedtls_x509_crt_parse(&crt, (const unsigned char *)copy,
                                  strlen(copy) + 1);
      uvmqtt__free(copy);
    }
  }
  if (rc != 0)
    rc = rc == MBEDTLS_ERR_X509_ALLOC_FAILED ? UVMQTT_ENOMEM : UVMQTT_ETLS_FILE;
  if (rc == 0)
    rc = parse_key(cfg, &pk, key, key_len, password);
  if (rc == 0)
    rc = install_cert(cfg, &crt, &pk);
  mbedtls_x509_crt_free(&crt);
  mbedtls_pk_free(&pk);
  return rc;
}

int uvmqtt_tls_config_set_cert_file(uvmqtt_tls_config_t *cfg,
                                    const char *cert_path, const char *key_path,
                                    const char *password) {
  char *key;
  size_t key_len;
  int rc;
  if (cfg == NULL || cert_path == NULL || key_path == NULL)
    return UVMQTT_EINVAL;
  rc = read_file(key_path, &key, &key_len);
  if (rc != 0)
    return rc;
  rc = set_cert(cfg, cert_path, NULL, 0, key, key_len + 1, password);
  mbedtls_platform_zeroize(key, key_len);
  uvmqtt__free(key);
  return rc;
}

int uvmqtt_tls_config_set_cert_pem(uvmqtt_tls_config_t *cfg,
                                   const char *cert_pem, size_t cert_len,
                                   const char *key_pem, size_t key_len,
                                   const char *password) {
  char *key;
  size_t n;
  int rc;
  if (cfg == NULL || cert_pem == NULL || cert_len == 0 || key_pem == NULL ||
      key_len == 0)
    return UVMQTT_EINVAL;
  key = nul_terminated(key_pem, key_len);
  if (key == NULL)
    return UVMQTT_ENOMEM;
  n = strlen(key);
  rc = set_cert(cfg, NULL, cert_pem, cert_len, key, n + 1, password);
  mbedtls_platform_zeroize(key, n);
  uvmqtt__free(key);
  return rc;
}

int uvmqtt_tls_config_set_verify(uvmqtt_tls_config_t *cfg, bool verify_peer,
                                 bool verify_hostname) {
  if (cfg == NULL)
    return UVMQTT_EINVAL;
  cfg->verify_peer = verify_peer;
  cfg->verify_hostname = verify_hostname;
  mbedtls_ssl_conf_authmode(&cfg->conf, verify_peer
                                            ? MBEDTLS_SSL_VERIFY_REQUIRED
                                            : MBEDTLS_SSL_VERIFY_NONE);
  return 0;
}

int uvmqtt_tls_config_set_versions(uvmqtt_tls_config_t *cfg, int min_version,
                                   int max_version) {
  int lo, hi;
  if (cfg == NULL)
    return UVMQTT_EINVAL;
  lo = min_version ? min_version : UVMQTT_TLS_V1_2;
  hi = max_version ? max_version : max_supported_version();
  if ((lo != UVMQTT_TLS_V1_2 && lo != UVMQTT_TLS_V1_3) ||
      (hi != UVMQTT_TLS_V1_2 && hi != UVMQTT_TLS_V1_3))
    return UVMQTT_EINVAL;
  if (lo > max_supported_version() || hi > max_supported_version())
    return UVMQTT_ENOTSUP;
  if (lo > hi)
    return UVMQTT_EINVAL;
  cfg->min_version = lo;
  cfg->max_version = hi;
  uvmqtt__tls_compat_set_versions(&cfg->conf, lo, hi);
  return 0;
}

int uvmqtt_tls_config_set_ciphersuites(uvmqtt_tls_config_t *cfg,
                                       const char *list) {
  char name[128];
  size_t count = 0, n = 0;
  int *suites;
  const char *p;

  if (cfg == NULL)
    return UVMQTT_EINVAL;
  if (list == NULL || *list == '\0') {
    mbedtls_ssl_conf_ciphersuites(&cfg->conf, mbedtls_ssl_list_ciphersuites());
    uvmqtt__free(cfg->suites);
    cfg->suites = NULL;
    return 0;
  }
  for (p = list; *p; p++)
    if (*p == ':' || *p == ',' || *p == ' ')
      count++;
  suites = uvmqtt__calloc(count + 2, sizeof(int));
  if (suites == NULL)
    return UVMQTT_ENOMEM;
  for (p = list;;) {
    size_t len = strcspn(p, ":, ");
    if (len > 0) {
      int id;
      if (len >= sizeof(name)) {
        uvmqtt__free(suites);
        return UVMQTT_EINVAL;
      }
      /* IANA names use '_', mbedTLS names '-'; accept both. */
      for (size_t i = 0; i < len; i++)
        name[i] = p[i] == '_' ? '-' : p[i];
      name[len] = '\0';
      id = mbedtls_ssl_get_ciphersuite_id(name);
      if (id == 0) {
        uvmqtt__free(suites);
        return UVMQTT_EINVAL;
      }
      suites[n++] = id;
    }
    p += len;
    if (*p == '\0')
      break;
    p++;
  }
  if (n == 0) {
    uvmqtt__free(suites);
    return UVMQTT_EINVAL;
  }
  suites[n] = 0;
  mbedtls_ssl_conf_ciphersuites(&cfg->conf, suites);
  uvmqtt__free(cfg->suites);
  cfg->suites = suites;
  return 0;
}

int uvmqtt_tls_config_set_alpn(uvmqtt_tls_config_t *cfg,
                               const char *const *protocols, size_t count) {
  size_t bytes;
  const char **arr;
  char *strs;

  if (cfg == NULL || (count > 0 && protocols == NULL) || count > 64)
    return UVMQTT_EINVAL;
#if defined(MBEDTLS_SSL_ALPN)
  if (count == 0) {
    uvmqtt__tls_compat_clear_alpn(&cfg->conf);
    uvmqtt__free((void *)cfg->alpn);
    cfg->alpn = NULL;
    return 0;
  }
  bytes = (count + 1) * sizeof(char *);
  for (size_t i = 0; i < count; i++) {
    size_t len = protocols[i] ? strlen(protocols[i]) : 0;
    if (len == 0 || len > 255)
      return UVMQTT_EINVAL;
    bytes += len + 1;
  }
  arr = uvmqtt__malloc(bytes);
  if (arr == NULL)
    return UVMQTT_ENOMEM;
  strs = (char *)(arr + count + 1);
  for (size_t i = 0; i < count; i++) {
    size_t len = strlen(protocols[i]) + 1;
    memcpy(strs, protocols[i], len);
    arr[i] = strs;
    strs += len;
  }
  arr[count] = NULL;
  if (mbedtls_ssl_conf_alpn_protocols(&cfg->conf, arr) != 0) {
    uvmqtt__free((void *)arr);
    return UVMQTT_EINVAL;
  }
  uvmqtt__free((void *)cfg->alpn);
  cfg->alpn = arr;
  return 0;
#else
  (void)bytes;
  (void)arr;
  (void)strs;
  return UVMQTT_ENOTSUP;
#endif
}

int uvmqtt_tls_config_set_psk(uvmqtt_tls_config_t *cfg, const char *identity,
                              const void *key, size_t key_len) {
  size_t id_len;
  int rc;
  if (cfg == NULL || identity == NULL || key == NULL || key_len == 0)
    return UVMQTT_EINVAL;
#if defined(MBEDTLS_KEY_EXCHANGE_SOME_PSK_ENABLED)
  id_len = strlen(identity);
  if (id_len == 0 || id_len > 0xffff || key_len > MBEDTLS_PSK_MAX_LEN)
    return UVMQTT_EINVAL;
  if (cfg->has_psk)
    return UVMQTT_ESTATE; /* mbedTLS keeps one PSK per configuration */
  rc = mbedtls_ssl_conf_psk(&cfg->conf, key, key_len,
                            (const unsigned char *)identity, id_len);
  if (rc != 0)
    return rc == MBEDTLS_ERR_SSL_ALLOC_FAILED ? UVMQTT_ENOMEM
                                              : UVMQTT_ETLS_CONFIG;
  cfg->has_psk = true;
  return 0;
#else
  (void)id_len;
  (void)rc;
  return UVMQTT_ENOTSUP;
#endif
}

int uvmqtt_tls_config_set_handshake_timeout(uvmqtt_tls_config_t *cfg,
                                            unsigned ms) {
  if (cfg == NULL || ms == 0)
    return UVMQTT_EINVAL;
  cfg->timeout_ms = ms;
  return 0;
}

int uvmqtt_tls_config_set_debug(uvmqtt_tls_config_t *cfg, int level) {
  if (cfg == NULL || level < 0 || level > 4)
    return UVMQTT_EINVAL;
  cfg->debug_level = level;
#if defined(MBEDTLS_DEBUG_C)
  mbedtls_ssl_conf_dbg(&cfg->conf, level > 0 ? uvmqtt__tls_debug_cb : NULL,
                       cfg);
  /* mbedTLS's threshold is global; raise it only, never lower it, so one
   * configuration cannot silence another's debug output. */
  if (level > 0) {
    static int threshold;
    if (level > threshold) {
      threshold = level;
      mbedtls_debug_set_threshold(level);
    }
  }
  return 0;
#else
  return level == 0 ? 0 : UVMQTT_ENOTSUP;
#endif
}

int uvmqtt_tls_config_set_session_resumption(uvmqtt_tls_config_t *cfg,
                                             bool enable) {
  if (cfg == NULL)
    return UVMQTT_EINVAL;
  cfg->resume = enable;
  return 0;
}

int uvmqtt_tls_config_session_stats(const uvmqtt_tls_config_t *cfg,
                                    uint64_t *handshakes, uint64_t *resumed) {
  uvmqtt_tls_config_t *m = (uvmqtt_tls_config_t *)cfg;
  if (cfg == NULL)
    return UVMQTT_EINVAL;
  uv_mutex_lock(&m->cache_lock);
  if (handshakes != NULL)
    *handshakes = m->handshakes;
  if (resumed != NULL)
    *resumed = m->resumed;
  uv_mutex_unlock(&m->cache_lock);
  return 0;
}

/* ---- the session cache ----------------------------------------------------
 *
 * The configuration is shared and const to the streams using it; the cache
 * is its one mutable part, behind cache_lock. Saved sessions were verified
 * for the name they are kept under, so a session is offered only to a
 * connection to the same name. */

static uvmqtt_tls_saved_t *cache_find(uvmqtt_tls_config_t *m,
                                      const char *name) {
  for (size_t i = 0; i < UVMQTT_TLS_CACHE_MAX; i++)
    if (m->cache[i].name != NULL && strcmp(m->cache[i].name, name) == 0)
      return &m->cache[i];
  return NULL;
}

static void cache_clear(uvmqtt_tls_saved_t *e) {
  mbedtls_ssl_session_free(&e->session);
  uvmqtt__free(e->name);
  e->name = NULL;
}

bool uvmqtt__tls_cache_offer(const uvmqtt_tls_config_t *cfg, const char *name,
                             mbedtls_ssl_context *ssl) {
  uvmqtt_tls_config_t *m = (uvmqtt_tls_config_t *)cfg;
  uvmqtt_tls_saved_t *e;
  bool offered = false;
  if (!cfg->resume)
    return false;
  uv_mutex_lock(&m->cache_lock);
  e = cache_find(m, name ? name : "");
  if (e != NULL && mbedtls_ssl_set_session(ssl, &e->session) == 0) {
    e->used = ++m->cache_clock;
    offered = true;
  }
  uv_mutex_unlock(&m->cache_lock);
  return offered;
}

void uvmqtt__tls_cache_done(const uvmqtt_tls_config_t *cfg, const char *name,
                            const mbedtls_ssl_context *ssl, bool resumed) {
  uvmqtt_tls_config_t *m = (uvmqtt_tls_config_t *)cfg;
  uvmqtt_tls_saved_t *e;
  uv_mutex_lock(&m->cache_lock);
  m->handshakes++;
  if (resumed)
    m->resumed++;
  if (!cfg->resume || resumed) {
    uv_mutex_unlock(&m->cache_lock);
    return;
  }
  if (name == NULL)
    name = "";
  e = cache_find(m, name);
  if (e == NULL) {
    /* A free slot, else the least recently used one. */
    e = &m->cache[0];
    for (size_t i = 0; i < UVMQTT_TLS_CACHE_MAX; i++) {
      if (m->cache[i].name == NULL) {
        e = &m->cache[i];
        break;
      }
      if (m->cache[i].used < e->used)
        e = &m->cache[i];
    }
    if (e->name != NULL)
      cache_clear(e);
    e->name = uvmqtt__strdup(name);
    mbedtls_ssl_session_init(&e->session);
  }
  /* get_session replaces what the slot held; on failure (no memory) the
   * slot is dropped and the next connection simply does a full handshake. */
  if (e->name == NULL || mbedtls_ssl_get_session(ssl, &e->session) != 0)
    cache_clear(e);
  else
    e->used = ++m->cache_clock;
  uv_mutex_unlock(&m->cache_lock);
}

void uvmqtt__tls_cache_forget(const uvmqtt_tls_config_t *cfg,
                              const char *name) {
  uvmqtt_tls_config_t *m = (uvmqtt_tls_config_t *)cfg;
  uvmqtt_tls_saved_t *e;
  uv_mutex_lock(&m->cache_lock);
  e = cache_find(m, name ? name : "");
  if (e != NULL)
    cache_clear(e);
  uv_mutex_unlock(&m->cache_lock);
}
