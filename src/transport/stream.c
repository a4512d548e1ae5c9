/* What every transport layer shares beyond the contract in transport.h:
 * formatting a log line for the owner's log callback, passing a reader's
 * hint to the layer below, and finding the loop a stack runs on. */
#include <stdarg.h>
#include <stdio.h>

#include "transport.h"

void uvmqtt__stream_vlog(uvmqtt_stream_t *s, int level, const char *fmt,
                         va_list ap) {
  if (!s->log_cb)
    return;
  char msg[320];
  vsnprintf(msg, sizeof(msg), fmt, ap);
  s->log_cb(s, level, msg);
}

void uvmqtt__stream_log(uvmqtt_stream_t *s, int level, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  uvmqtt__stream_vlog(s, level, fmt, ap);
  va_end(ap);
}

void uvmqtt__stream_forward_hint(uvmqtt_stream_t *s, int kind, unsigned value) {
  uvmqtt__stream_hint(s->lower, kind, value);
}

uv_loop_t *uvmqtt__stream_loop(const uvmqtt_stream_t *s) {
  while (!s->ops->loop)
    s = s->lower;
  return s->ops->loop(s);
}
