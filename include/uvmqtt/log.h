/** @file
 * uvmqtt log levels: the one definition, shared by the client's log
 * callback (uvmqtt_client_on_log), the sans-I/O session and the transport
 * layers. No libuv, so the protocol layers can include it. */
#ifndef UVMQTT_LOG_H
#define UVMQTT_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

/** Log levels, most severe first: a callback set with a maximum level gets
 * every line at that level or a lower number. */
enum {
  UVMQTT_LOG_ERROR = 0,
  UVMQTT_LOG_WARN = 1,
  UVMQTT_LOG_INFO = 2,
  UVMQTT_LOG_DEBUG = 3
};

#ifdef __cplusplus
}
#endif

#endif
