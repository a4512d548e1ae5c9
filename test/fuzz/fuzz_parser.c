/* libFuzzer target for the codec's parser and decoder.
 *
 * Input layout: byte 0 selects the setup (bits 1..0: version 3/4/5/5,
 * bit 2: server role, bit 3: server starting with version 0 and learning it
 * from CONNECT, bit 4: a 64-byte packet limit), byte 1 seeds the chunk
 * sizes; the rest is the byte stream.
 *
 * Checked properties, any violation aborts:
 * - the stream fed whole and fed in seeded chunks (lending exact-size heap
 *   buffers, so overreads are caught) gives the same packets and the same
 *   error at the same offset;
 * - every packet the parser yields re-encodes, the re-encoding decodes, and
 *   encoding that again gives identical bytes (encode is idempotent over
 *   decode);
 * - uvmqtt_decode() on the raw input never misbehaves. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uvmqtt/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "fuzz_parser: check failed: %s (line %d)\n", #cond,      \
              __LINE__);                                                       \
      abort();                                                                 \
    }                                                                          \
  } while (0)

typedef struct {
  uint64_t end[64];
  uint32_t hash[64];
  size_t count;
  int error;
  uint64_t error_offset;
} run_t;

static uint32_t fnv(const uint8_t *b, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++)
    h = (h ^ b[i]) * 16777619u;
  return h;
}

/* Re-encodes a decoded packet, decodes that, re-encodes again. */
static uint32_t reencode(const uvmqtt_packet_t *pkt, uint8_t version,
                         uvmqtt_role_t role) {
  uint8_t v =
      pkt->type == UVMQTT_CONNECT ? pkt->u.connect.protocol_version : version;
  size_t size = 0, size2 = 0;
  CHECK(uvmqtt_encode_size(pkt, v, &size) == 0);
  uint8_t *a = malloc(size);
  CHECK(a != NULL);
  CHECK(uvmqtt_encode(pkt, v, a, size) == (int)size);
  uvmqtt_packet_t d;
  size_t off = 0;
  int rc = uvmqtt_decode(a, size, v, role, &d, &off);
  if (rc != 0) {
    fprintf(stderr, "re-encoded %s does not decode: %d at %zu\n",
            uvmqtt_packet_name(pkt->type), rc, off);
    abort();
  }
  CHECK(uvmqtt_encode_size(&d, v, &size2) == 0);
  CHECK(size2 == size);
  uint8_t *b = malloc(size);
  CHECK(b != NULL);
  CHECK(uvmqtt_encode(&d, v, b, size) == (int)size);
  CHECK(memcmp(a, b, size) == 0);
  if (pkt->type == UVMQTT_PUBLISH) {
    uint8_t head[8];
    size_t total = 0;
    int h = uvmqtt_encode_publish_head(pkt, v, head, sizeof(head), &total);
    CHECK(total == size);
    CHECK(h == UVMQTT_ENOBUFS || (h > 0 && memcmp(head, a, (size_t)h) == 0));
  }
  uint32_t hash = fnv(a, size);
  free(a);
  free(b);
  return hash;
}

static void run(const uint8_t *s, size_t n, uint8_t setup, uint8_t seed,
                bool chunked, run_t *r) {
  uint8_t version = (setup & 3) == 0 ? 3 : (setup & 3) == 1 ? 4 : 5;
  uvmqtt_role_t role = (setup & 4) ? UVMQTT_ROLE_SERVER : UVMQTT_ROLE_CLIENT;
  if ((setup & 8) && role == UVMQTT_ROLE_SERVER)
    version = 0;
  uint32_t max = (setup & 16) ? 64 : 1u << 20;
  uvmqtt_parser_t p;
  uvmqtt_packet_t pkt;
  memset(r, 0, sizeof(*r));
  uvmqtt_parser_init(&p, version, role, max);
  size_t pos = 0;
  uint32_t st = seed;
  while (pos < n) {
    size_t want = n - pos;
    if (chunked) {
      st = st * 1103515245u + 12345u;
      size_t c = 1 + ((st >> 16) % 13);
      if (c < want)
        want = c;
    }
    size_t used = 0;
    int rc = uvmqtt_parser_feed(&p, s + pos, want, &used, &pkt);
    CHECK(used <= want);
    pos += used;
    CHECK(p.offset == pos);
    if (rc == UVMQTT_PARSE_PACKET) {
      if (p.version == 0 && pkt.type == UVMQTT_CONNECT)
        p.version = pkt.u.connect.protocol_version;
      if (r->count < 64) {
        r->end[r->count] = p.offset;
        r->hash[r->count] = reencode(&pkt, p.version, role);
      }
      r->count++;
      free(uvmqtt_parser_take_buffer(&p));
    } else if (rc == UVMQTT_PARSE_NEED_BUFFER) {
      CHECK(p.need >= 2 && p.need <= max);
      uint8_t *b = malloc(p.need);
      CHECK(b != NULL);
      CHECK(uvmqtt_parser_set_buffer(&p, b, p.need) == 0);
    } else if (rc == UVMQTT_PARSE_MORE) {
      CHECK(used == want);
    } else {
      CHECK(rc < 0 && rc == p.error);
      CHECK(p.error_offset <= pos - used + want); /* within what was fed */
      r->error = rc;
      r->error_offset = p.error_offset;
      break;
    }
  }
  free(uvmqtt_parser_take_buffer(&p));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  uint8_t setup = data[0], seed = data[1];
  const uint8_t *s = data + 2;
  size_t n = size - 2;
  run_t a, b;
  run(s, n, setup, seed, false, &a);
  run(s, n, setup, seed, true, &b);
  CHECK(a.count == b.count);
  for (size_t i = 0; i < a.count && i < 64; i++) {
    CHECK(a.end[i] == b.end[i]);
    CHECK(a.hash[i] == b.hash[i]);
  }
  CHECK(a.error == b.error);
  CHECK(a.error_offset == b.error_offset);

  /* One-shot decode of the whole stream, from an exact-size copy. */
  uint8_t *copy = malloc(n ? n : 1);
  CHECK(copy != NULL);
  memcpy(copy, s, n);
  uvmqtt_packet_t pkt;
  size_t off = 0;
  uint8_t version = (setup & 3) == 0 ? 3 : (setup & 3) == 1 ? 4 : 5;
  uvmqtt_role_t role = (setup & 4) ? UVMQTT_ROLE_SERVER : UVMQTT_ROLE_CLIENT;
  int rc = uvmqtt_decode(copy, n, version, role, &pkt, &off);
  CHECK(rc <= 0);
  if (rc == 0)
    (void)reencode(&pkt, version, role);
  else
    CHECK(off <= n);
  free(copy);
  return 0;
}
