/* Helpers shared by the WebSocket tests: the server side of RFC 6455 as the
 * tests need it (accept key, unmasked server frames, a decoder for masked
 * client frames). Kept apart from src/transport/ws.c on purpose: the tests
 * must not share the code they check. */
#ifndef UVMQTT_TEST_WSHELP_H
#define UVMQTT_TEST_WSHELP_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>
#include <mbedtls/version.h>

/* base64(SHA-1(key + GUID)) into out[29]. */
static inline void wh_accept(const char *key, size_t klen, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  mbedtls_sha1_context c;
  unsigned char d[20];
  size_t olen = 0;
  mbedtls_sha1_init(&c);
#if MBEDTLS_VERSION_NUMBER >= 0x03000000
  mbedtls_sha1_starts(&c);
  mbedtls_sha1_update(&c, (const unsigned char *)key, klen);
  mbedtls_sha1_update(&c, (const unsigned char *)guid, sizeof(guid) - 1);
  mbedtls_sha1_finish(&c, d);
#else
  mbedtls_sha1_starts_ret(&c);
  mbedtls_sha1_update_ret(&c, (const unsigned char *)key, klen);
  mbedtls_sha1_update_ret(&c, (const unsigned char *)guid, sizeof(guid) - 1);
  mbedtls_sha1_finish_ret(&c, d);
#endif
  mbedtls_sha1_free(&c);
  mbedtls_base64_encode((unsigned char *)out, 29, &olen, d, 20);
  out[olen] = '\0';
}

/* The value of header `name` (case-insensitive) in an HTTP request, copied
 * into out; 0 when found, -1 otherwise. */
static inline int wh_header(const char *req, const char *name, char *out,
                            size_t cap) {
  size_t nl = strlen(name);
  const char *p = strstr(req, "\r\n");
  while (p && p[2] != '\r') {
    p += 2;
    if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
      const char *v = p + nl + 1;
      while (*v == ' ')
        v++;
      const char *e = strstr(v, "\r\n");
      size_t len = e ? (size_t)(e - v) : strlen(v);
      if (len >= cap)
        return -1;
      memcpy(out, v, len);
      out[len] = '\0';
      return 0;
    }
    p = strstr(p, "\r\n");
  }
  return -1;
}

/* An unmasked server frame; returns its length (out needs len + 10). */
static inline size_t wh_frame(uint8_t *out, int fin, uint8_t opcode,
                              const void *payload, size_t len) {
  size_t h = 0;
  out[h++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
  if (len < 126) {
    out[h++] = (uint8_t)len;
  } else if (len <= 0xFFFF) {
    out[h++] = 126;
    out[h++] = (uint8_t)(len >> 8);
    out[h++] = (uint8_t)len;
  } else {
    out[h++] = 127;
    for (int i = 0; i < 8; i++)
      out[h++] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
  }
  if (len)
    memcpy(out + h, payload, len);
  return h + len;
}

typedef struct {
  int fin, opcode, masked;
  uint8_t mask[4];
  uint64_t len;
  const uint8_t *payload; /* masked bytes in the input */
  size_t frame_len;       /* header + payload */
} wh_cframe_t;

/* Decodes one client frame at p[0 .. n); returns 1 when complete, 0 when
 * more bytes are needed. The payload is unmasked into out (cap bytes). */
static inline int wh_decode(const uint8_t *p, size_t n, wh_cframe_t *f,
                            uint8_t *out, size_t cap) {
  if (n < 2)
    return 0;
  f->fin = p[0] >> 7;
  f->opcode = p[0] & 0x0F;
  f->masked = p[1] >> 7;
  uint64_t len = p[1] & 0x7F;
  size_t h = 2;
  if (len == 126) {
    if (n < 4)
      return 0;
    len = ((uint64_t)p[2] << 8) | p[3];
    h = 4;
  } else if (len == 127) {
    if (n < 10)
      return 0;
    len = 0;
    for (int i = 0; i < 8; i++)
      len = (len << 8) | p[2 + i];
    h = 10;
  }
  if (f->masked) {
    if (n < h + 4)
      return 0;
    memcpy(f->mask, p + h, 4);
    h += 4;
  }
  if (n < h + len)
    return 0;
  f->len = len;
  f->payload = p + h;
  f->frame_len = h + (size_t)len;
  for (size_t i = 0; i < len && i < cap; i++)
    out[i] = f->masked ? (uint8_t)(p[h + i] ^ f->mask[i & 3]) : p[h + i];
  return 1;
}

#endif
