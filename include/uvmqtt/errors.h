/** @file
 * uvmqtt error codes.
 *
 * Every fallible function returns an int: 0 (or a positive count) on success
 * and a negative code on failure. The library's own codes live in the block
 * -20000 .. -20999, far from libuv's; libuv codes (UV_E*) pass through
 * unchanged. mbedTLS codes never leak: they are mapped to UVMQTT_ETLS_* and
 * the raw code stays readable through the TLS diagnostics call.
 *
 * MQTT reason codes (CONNACK return codes, v5 reason codes) are data handed
 * to callbacks, never error returns.
 */
#ifndef UVMQTT_ERRORS_H
#define UVMQTT_ERRORS_H

#include "uvmqtt/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/** XX(name, value, message). Grouped by layer: general, codec, client, TLS,
 * WebSocket, DNS, store, proxies. Values never change once released. */
#define UVMQTT_ERRNO_MAP(XX)                                                   \
  XX(EINVAL, -20001, "invalid argument")                                       \
  XX(ENOMEM, -20002, "out of memory")                                          \
  XX(ENOTSUP, -20003, "feature not built into this library")                   \
  XX(EBUSY, -20004, "operation already in progress")                           \
  XX(ESTATE, -20005, "not allowed in the current state")                       \
  XX(ETOPIC, -20010, "invalid topic name")                                     \
  XX(EFILTER, -20011, "invalid topic filter")                                  \
  XX(EURI, -20012, "invalid URI")                                              \
  XX(ECLIENTID, -20013,                                                        \
     "empty client id requires a clean session in MQTT 3.1/3.1.1")             \
  XX(EEXIST, -20014, "already exists")                                         \
  XX(ENOENT, -20015, "not found")                                              \
  XX(EMALFORMED, -20100, "malformed packet")                                   \
  XX(EREMLEN, -20101, "malformed remaining length")                            \
  XX(EFLAGS, -20102, "reserved fixed-header flags are wrong")                  \
  XX(EQOS, -20103, "invalid QoS")                                              \
  XX(EPACKETID, -20104, "packet identifier 0 where one is required")           \
  XX(EUTF8, -20105, "string is not valid UTF-8 or contains U+0000")            \
  XX(EWILDCARD, -20106, "wildcard character in a topic name")                  \
  XX(ETRUNC, -20107, "field runs past the end of the packet")                  \
  XX(ETRAILING, -20108, "bytes left over at the end of the packet")            \
  XX(ETOOBIG, -20109, "packet larger than the maximum packet size")            \
  XX(EPROPDUP, -20110, "property that may appear once appears twice")          \
  XX(EPROPBAD, -20111, "property unknown or not allowed on this packet")       \
  XX(ETYPE, -20112, "packet type not allowed in this direction")               \
  XX(EVERSION, -20113, "unsupported protocol version")                         \
  XX(ENOBUFS, -20114, "output buffer too small")                               \
  XX(EREASON, -20115, "invalid reason code for this packet")                   \
  XX(EPROPVAL, -20116, "property value out of range")                          \
  XX(EPROTOCOL, -20117, "protocol violation")                                  \
  XX(ECLOSED, -20200, "client closed; operation cancelled")                    \
  XX(ENOTCONN, -20201, "not connected")                                        \
  XX(EQUEUEFULL, -20202, "outgoing queue is full")                             \
  XX(EDROPPED, -20203, "message dropped from a full queue")                    \
  XX(EEXPIRED, -20204, "message expired before it could be sent")              \
  XX(ETIMEDOUT, -20205, "timed out")                                           \
  XX(EKEEPALIVE, -20206, "no answer from the broker within the keepalive")     \
  XX(EREFUSED, -20207, "connection refused by the broker")                     \
  XX(EUNEXPECTED, -20208, "unexpected packet from the broker")                 \
  XX(ENOPKTID, -20209, "no free packet identifier")                            \
  XX(EREJECTED, -20210, "rejected by the broker")                              \
  XX(ESESSION, -20211, "message lost: the broker has no session for it")       \
  XX(ERECVMAX, -20212, "broker exceeded the receive maximum")                  \
  XX(ETOPICALIAS, -20213, "invalid topic alias")                               \
  XX(EDISCONNECTED, -20214, "disconnected by the broker")                      \
  XX(EPEERCLOSED, -20215, "connection closed by the peer")                     \
  XX(EAUTH, -20216, "authentication failed")                                   \
  XX(EPAYLOAD, -20217, "payload too large")                                    \
  XX(ETAKENOVER, -20218,                                                       \
     "session taken over by another connection with the same client id")       \
  XX(ESHORTLIVED, -20219,                                                      \
     "connections keep closing right after CONNACK (client id taken over or "  \
     "rejected after connect?)")                                               \
  XX(EACKED, -20220, "message already acknowledged")                           \
  XX(ESTALE, -20221,                                                           \
     "the message's connection is gone; the broker will send it again")        \
  XX(EDRAINING, -20222, "client is draining: no new messages accepted")        \
  XX(ETLS, -20300, "TLS error")                                                \
  XX(ETLS_HANDSHAKE, -20301, "TLS handshake failed")                           \
  XX(ETLS_UNTRUSTED, -20302, "TLS peer certificate is not trusted")            \
  XX(ETLS_EXPIRED, -20303, "TLS peer certificate has expired")                 \
  XX(ETLS_HOSTNAME, -20304, "TLS peer certificate does not match the host")    \
  XX(ETLS_CONFIG, -20305, "TLS configuration error")                           \
  XX(ETLS_FILE, -20306, "cannot load TLS certificate or key")                  \
  XX(ETLS_NOCERT, -20307, "TLS peer sent no certificate")                      \
  XX(ETLS_ALERT, -20308, "TLS alert received from the peer")                   \
  XX(ETLS_PSK, -20309, "TLS pre-shared key rejected")                          \
  XX(EWS, -20400, "WebSocket error")                                           \
  XX(EWS_STATUS, -20401, "WebSocket upgrade refused by the server")            \
  XX(EWS_ACCEPT, -20402, "WebSocket accept key mismatch")                      \
  XX(EWS_PROTOCOL, -20403, "WebSocket subprotocol missing or wrong")           \
  XX(EWS_UPGRADE, -20404, "malformed WebSocket upgrade reply")                 \
  XX(EWS_FRAME, -20405, "invalid WebSocket frame")                             \
  XX(EWS_CLOSED, -20406, "WebSocket closed by the peer")                       \
  XX(EWS_TOOBIG, -20407, "WebSocket frame or reply too large")                 \
  XX(EDNS, -20500, "DNS lookup failed")                                        \
  XX(EDNS_NXDOMAIN, -20501, "domain name does not exist")                      \
  XX(EDNS_TIMEOUT, -20502, "DNS lookup timed out")                             \
  XX(EDNS_NODATA, -20503, "no DNS record of the requested type")               \
  XX(ESRV_EXHAUSTED, -20504, "every SRV target failed")                        \
  XX(ESTORE_IDENTITY, -20600,                                                  \
     "store belongs to another client id, broker or protocol version")         \
  XX(ESTORE_VERSION, -20601, "store format version not supported")             \
  XX(ESTORE_FORMAT, -20602, "file is not a uvmqtt store")                      \
  XX(ESTORE_RECORD, -20603, "store record cannot be decoded")                  \
  XX(EPROXY, -20700, "proxy error")                                            \
  XX(EPROXY_AUTH, -20701, "proxy authentication required or refused")          \
  XX(EPROXY_STATUS, -20702, "HTTP proxy refused the CONNECT request")          \
  XX(EPROXY_PROTOCOL, -20703, "malformed reply from the proxy")                \
  XX(EPROXY_TOOBIG, -20704, "proxy reply too large")                           \
  XX(EPROXY_CLOSED, -20705,                                                    \
     "proxy closed the connection during the handshake")                       \
  XX(ESOCKS_FAILURE, -20710, "SOCKS proxy: general server failure")            \
  XX(ESOCKS_NOTALLOWED, -20711,                                                \
     "SOCKS proxy: connection not allowed by ruleset")                         \
  XX(ESOCKS_NETUNREACH, -20712, "SOCKS proxy: network unreachable")            \
  XX(ESOCKS_HOSTUNREACH, -20713, "SOCKS proxy: host unreachable")              \
  XX(ESOCKS_REFUSED, -20714, "SOCKS proxy: connection refused by the target")  \
  XX(ESOCKS_TTL, -20715, "SOCKS proxy: TTL expired")                           \
  XX(ESOCKS_CMD, -20716, "SOCKS proxy: command not supported")                 \
  XX(ESOCKS_ATYP, -20717, "SOCKS proxy: address type not supported")           \
  XX(ESOCKS_METHOD, -20718, "SOCKS proxy: no acceptable authentication method")

/** The codes of UVMQTT_ERRNO_MAP as constants: UVMQTT_EINVAL,
 * UVMQTT_ENOMEM, ... (uvmqtt_strerror() gives each one's message). */
typedef enum {
#define UVMQTT_ERR_ENUM_(name, val, msg) UVMQTT_##name = val,
  UVMQTT_ERRNO_MAP(UVMQTT_ERR_ENUM_)
#undef UVMQTT_ERR_ENUM_
      UVMQTT_ERRNO_MAX_ = -20999 /**< the end of the block, not a code */
} uvmqtt_errno_t;

/** A human-readable message for any code: uvmqtt's own, libuv's (on the
 * client library) or "unknown error". Never returns NULL; the string is
 * static. */
UVMQTT_EXTERN const char *uvmqtt_strerror(int err);

/** The code's symbolic name, e.g. "UVMQTT_ETOPIC" or "ECONNREFUSED".
 * Never returns NULL; the string is static. */
UVMQTT_EXTERN const char *uvmqtt_err_name(int err);

/** 1 when the error is in uvmqtt's own range. */
UVMQTT_EXTERN int uvmqtt_is_own_error(int err);

/** The retry policy, in one place: whether connecting again later may
 * succeed after a connection attempt or a connection failed with `err`.
 * The client's automatic reconnect follows it (a connection that was up is
 * always reconnected), and so do the one-shot helpers and the command-line
 * tools.
 *
 * 1 (worth retrying): libuv's network and system errors, timeouts
 * (UVMQTT_ETIMEDOUT, UVMQTT_EKEEPALIVE), the peer closing or disconnecting,
 * every DNS outcome (UVMQTT_EDNS*, including a name that does not exist:
 * it may appear) and UVMQTT_ESRV_EXHAUSTED, TLS handshake failures and
 * alerts, WebSocket failures other than a refused upgrade, protocol
 * violations by the broker (a broker may be fixed or replaced), and
 * transient local conditions (UVMQTT_ENOMEM, UVMQTT_EBUSY,
 * UVMQTT_ENOTCONN, UVMQTT_EQUEUEFULL).
 *
 * 0 (final): our own arguments and configuration (UVMQTT_EINVAL,
 * UVMQTT_ENOTSUP, UVMQTT_ESTATE, UVMQTT_ETOPIC, UVMQTT_EFILTER,
 * UVMQTT_EURI, UVMQTT_EEXIST, UVMQTT_ENOENT, UVMQTT_EPAYLOAD,
 * UVMQTT_ETLS_CONFIG, UVMQTT_ETLS_FILE), a closed client (UVMQTT_ECLOSED),
 * the broker's verdict on us (UVMQTT_EAUTH, UVMQTT_ECLIENTID, and the
 * failed certificate or key checks UVMQTT_ETLS_UNTRUSTED, _EXPIRED,
 * _HOSTNAME, _NOCERT, _PSK), the fate of one message rather than of the
 * connection (UVMQTT_EDROPPED, UVMQTT_EEXPIRED, UVMQTT_ESESSION,
 * UVMQTT_EREJECTED, UVMQTT_ENOPKTID), and 0 or a positive value.
 *
 * Two codes need more than the code: UVMQTT_EREFUSED (0 here) is worth
 * retrying when uvmqtt_connack_is_retryable() says so for the CONNACK's
 * reason code, and UVMQTT_EWS_STATUS (0 here) when the HTTP status of the
 * refused upgrade is temporary (5xx, 408, 429), which the client checks.
 * Pure function; any thread. */
UVMQTT_EXTERN int uvmqtt_err_is_retryable(int err);

/** Whether a broker that refused a connection with the CONNACK code
 * `reason_code` may accept a later attempt. Codes below 0x80 are 3.1/3.1.1
 * return codes, the others 5.0 reason codes, so no protocol version is
 * needed. 0 for the refusals that name us or our configuration (3.x: 1
 * unacceptable protocol version, 2 identifier rejected, 4 bad user name or
 * password, 5 not authorized; 5.0: 0x84 unsupported protocol version, 0x85
 * client identifier not valid, 0x86 bad user name or password, 0x87 not
 * authorized, 0x8A banned, 0x8C bad authentication method) and for 0 (not
 * a refusal); 1 for every other refusal (server unavailable, busy, quota
 * exceeded, ...). Pure function; any thread. */
UVMQTT_EXTERN int uvmqtt_connack_is_retryable(unsigned reason_code);

#ifdef __cplusplus
}
#endif
#endif
