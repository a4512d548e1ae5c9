/* HTTP/1.1 helpers shared by ws.c and proxy_http.c. See http.h. */
#include "http.h"

#include <stdint.h>
#include <string.h>

int uvmqtt__http_status_line(const char *line, size_t len) {
  if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[7] < '0' ||
      line[7] > '9' || line[8] != ' ')
    return -1;
  int code = 0;
  for (int i = 9; i < 12; i++) {
    if (line[i] < '0' || line[i] > '9')
      return -1;
    code = code * 10 + (line[i] - '0');
  }
  if (code < 100 || (len > 12 && line[12] != ' '))
    return -1;
  return code;
}

static int lower_ci(int c) {
  return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

int uvmqtt__http_ci_equal(const char *a, size_t alen, const char *b) {
  size_t blen = strlen(b);
  if (alen != blen)
    return 0;
  for (size_t i = 0; i < alen; i++)
    if (lower_ci((unsigned char)a[i]) != lower_ci((unsigned char)b[i]))
      return 0;
  return 1;
}

int uvmqtt__http_is_ows(char c) {
  return c == ' ' || c == '\t';
}

size_t uvmqtt__base64_encode(const void *in, size_t n, char *out) {
  static const char tab[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const uint8_t *p = in;
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)p[i + 1] << 8;
    if (i + 2 < n)
      v |= p[i + 2];
    out[o++] = tab[(v >> 18) & 63];
    out[o++] = tab[(v >> 12) & 63];
    out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? tab[v & 63] : '=';
  }
  out[o] = '\0';
  return o;
}
