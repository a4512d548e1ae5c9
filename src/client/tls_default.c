/* The TLS configuration of clients that connect with mqtts:// or wss://
 * without one of their own: the system's trust store
 * (uvmqtt_tls_config_set_ca_default), peer and host name verified. One
 * configuration per process, shared by every such client on any loop,
 * created by the first and freed when the last one closes. */
#include <stdlib.h>

#include "client/client_int.h"

static uv_once_t once = UV_ONCE_INIT;
static uv_mutex_t mu;
static uvmqtt_tls_config_t *shared;
static size_t refs;

static void init_mutex(void) {
  if (uv_mutex_init(&mu) != 0)
    abort(); /* cannot fail on the platforms libuv supports */
}

int uvmqtt__tls_default_acquire(const uvmqtt_tls_config_t **out) {
  int rc = 0;
  uv_once(&once, init_mutex);
  uv_mutex_lock(&mu);
  if (!shared) {
    uvmqtt_tls_config_t *cfg = NULL;
    rc = uvmqtt_tls_config_new(&cfg);
    if (rc == 0 && (rc = uvmqtt_tls_config_set_ca_default(cfg)) < 0)
      uvmqtt_tls_config_free(cfg);
    if (rc == 0)
      shared = cfg;
  }
  if (rc == 0) {
    refs++;
    *out = shared;
  }
  uv_mutex_unlock(&mu);
  return rc;
}

void uvmqtt__tls_default_release(void) {
  uv_once(&once, init_mutex);
  uv_mutex_lock(&mu);
  if (refs > 0 && --refs == 0) {
    uvmqtt_tls_config_free(shared);
    shared = NULL;
  }
  uv_mutex_unlock(&mu);
}
