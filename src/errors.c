/* Error messages and names. Compiled into uvmqtt_proto without libuv, and
 * into uvmqtt with UVMQTT_HAVE_UV so libuv's codes get libuv's words. */
#include "uvmqtt/errors.h"

#include <string.h>

#ifdef UVMQTT_HAVE_UV
#include <uv.h>
#endif

const char *uvmqtt_strerror(int err) {
  switch (err) {
#define XX(name, val, msg)                                                     \
  case val:                                                                    \
    return msg;
    UVMQTT_ERRNO_MAP(XX)
#undef XX
  case 0:
    return "success";
  default:
    break;
  }
#ifdef UVMQTT_HAVE_UV
  return uv_strerror(err);
#else
  if (err < 0 && err > -4000)
    return strerror(-err);
  return "unknown error";
#endif
}

const char *uvmqtt_err_name(int err) {
  switch (err) {
#define XX(name, val, msg)                                                     \
  case val:                                                                    \
    return "UVMQTT_" #name;
    UVMQTT_ERRNO_MAP(XX)
#undef XX
  case 0:
    return "OK";
  default:
    break;
  }
#ifdef UVMQTT_HAVE_UV
  return uv_err_name(err);
#else
  return "UNKNOWN";
#endif
}

int uvmqtt_is_own_error(int err) {
  return err <= -20000 && err >= -20999;
}

int uvmqtt_err_is_retryable(int err) {
  if (err >= 0)
    return 0;
  if (!uvmqtt_is_own_error(err))
    return 1; /* network and system errors from libuv */
  switch (err) {
  case UVMQTT_ETIMEDOUT:
  case UVMQTT_EKEEPALIVE:
  case UVMQTT_EPEERCLOSED:
  case UVMQTT_EDISCONNECTED:
  case UVMQTT_ENOMEM:
  case UVMQTT_EBUSY:
  case UVMQTT_EQUEUEFULL:
  case UVMQTT_EDNS:
  case UVMQTT_EDNS_TIMEOUT:
  case UVMQTT_ESRV_EXHAUSTED:
  case UVMQTT_EWS_CLOSED:
  case UVMQTT_ETLS_ALERT:
  case UVMQTT_ETLS_HANDSHAKE: /* e.g. the broker restarting mid-handshake */
    return 1;
  default:
    return 0;
  }
}

unsigned int uvmqtt_version(void) {
  return UVMQTT_VERSION_HEX;
}

#define STR_(x) #x
#define STR(x) STR_(x)
const char *uvmqtt_version_string(void) {
  return STR(UVMQTT_VERSION_MAJOR) "." STR(UVMQTT_VERSION_MINOR) "." STR(
      UVMQTT_VERSION_PATCH);
}
