/* Error messages and names, and the retry policy (which errors are worth
 * connecting again for). Compiled into uvmqtt_proto without libuv, and
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

/* The rule is written out in errors.h; keep the two in step. */
int uvmqtt_err_is_retryable(int err) {
  if (err >= 0)
    return 0;
  switch (err) {
  /* Our own arguments and configuration, and a closed client. */
  case UVMQTT_EINVAL:
  case UVMQTT_ENOTSUP:
  case UVMQTT_ESTATE:
  case UVMQTT_ETOPIC:
  case UVMQTT_EFILTER:
  case UVMQTT_EURI:
  case UVMQTT_EEXIST:
  case UVMQTT_ENOENT:
  case UVMQTT_EPAYLOAD:
  case UVMQTT_ETLS_CONFIG:
  case UVMQTT_ETLS_FILE:
  case UVMQTT_ECLOSED:
  /* The broker's verdict on us. */
  case UVMQTT_EAUTH:
  case UVMQTT_ECLIENTID:
  case UVMQTT_ETLS_UNTRUSTED:
  case UVMQTT_ETLS_EXPIRED:
  case UVMQTT_ETLS_HOSTNAME:
  case UVMQTT_ETLS_NOCERT:
  case UVMQTT_ETLS_PSK:
  /* The proxy's verdict on us, or on the configured target. */
  case UVMQTT_EPROXY_AUTH:
  case UVMQTT_ESOCKS_NOTALLOWED:
  case UVMQTT_ESOCKS_CMD:
  case UVMQTT_ESOCKS_ATYP:
  case UVMQTT_ESOCKS_METHOD:
  /* Another connection holds our client id (v5 DISCONNECT 0x8E): coming
   * back would knock it off (see uvmqtt_takeover_t). */
  case UVMQTT_ETAKENOVER:
  /* Decided by the CONNACK reason code / the HTTP status instead. */
  case UVMQTT_EREFUSED:
  case UVMQTT_EWS_STATUS:
  case UVMQTT_EPROXY_STATUS:
  /* The fate of one message, not of the connection. */
  case UVMQTT_EDROPPED:
  case UVMQTT_EEXPIRED:
  case UVMQTT_ESESSION:
  case UVMQTT_EREJECTED:
  case UVMQTT_ENOPKTID:
    return 0;
  default:
    /* Network and system errors, timeouts, DNS, TLS handshakes, a
     * misbehaving broker, transient local conditions. */
    return 1;
  }
}

int uvmqtt_connack_is_retryable(unsigned reason_code) {
  switch (reason_code) {
  case 0x00: /* accepted: nothing to retry */
  case 0x01: /* 3.x: unacceptable protocol version */
  case 0x02: /* 3.x: identifier rejected */
  case 0x04: /* 3.x: bad user name or password */
  case 0x05: /* 3.x: not authorized */
  case 0x84: /* unsupported protocol version */
  case 0x85: /* client identifier not valid */
  case 0x86: /* bad user name or password */
  case 0x87: /* not authorized */
  case 0x8A: /* banned */
  case 0x8C: /* bad authentication method */
    return 0;
  default:
    return 1;
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
