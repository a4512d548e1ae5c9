/* Small HTTP/1.1 helpers shared by the layers that speak HTTP during their
 * handshake: the WebSocket upgrade (ws.c) and the HTTP CONNECT proxy
 * (proxy_http.c). No I/O, no allocation. */
#ifndef UVMQTT_TRANSPORT_HTTP_H
#define UVMQTT_TRANSPORT_HTTP_H

#include <stddef.h>

/* Parses a status line "HTTP/1.x NNN[ reason]" of `len` bytes (without its
 * line ending); returns the status code (100 .. 999) or -1 when the line
 * is not one. */
int uvmqtt__http_status_line(const char *line, size_t len);

/* 1 when the `alen` bytes at a equal the string b, ignoring ASCII case. */
int uvmqtt__http_ci_equal(const char *a, size_t alen, const char *b);

/* 1 for the optional white space of RFC 9110 (space, tab). */
int uvmqtt__http_is_ows(char c);

/* Standard base64 (RFC 4648, with padding) of n bytes into out, which
 * holds at least 4 * ((n + 2) / 3) + 1 bytes; NUL-terminated. Returns the
 * length written (without the NUL). */
size_t uvmqtt__base64_encode(const void *in, size_t n, char *out);

#endif
