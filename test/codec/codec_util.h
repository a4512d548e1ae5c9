/* Helpers shared by the codec tests: hex, packet comparison, and a driver
 * that feeds a byte stream to the parser in chosen chunks, lending buffers
 * as asked, and records what came out. */
#ifndef UVMQTT_TEST_CODEC_UTIL_H
#define UVMQTT_TEST_CODEC_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uvmqtt/codec.h"

/* Parses hex (whitespace allowed) into a malloc'd buffer; *len its size.
 * Aborts on bad input (tests only). */
uint8_t *hex_decode(const char *hex, size_t *len);

/* True when two decoded or hand-made packets carry the same content
 * (repeatable properties and entries are compared through the walkers).
 * On a difference, prints what differs. */
bool pkt_equal(const uvmqtt_packet_t *a, const uvmqtt_packet_t *b);
bool props_equal(const uvmqtt_props_t *a, const uvmqtt_props_t *b);

/* One packet seen by stream_run(). */
typedef struct {
  uint64_t start, end; /* stream offsets */
  uint8_t type;
  uint8_t *enc; /* the packet re-encoded (malloc'd) */
  size_t enc_len;
} seen_pkt_t;

typedef struct {
  seen_pkt_t *pkts;
  size_t count;
  int error; /* final sticky error, 0 if none */
  uint64_t error_offset;
  size_t buffers_lent; /* NEED_BUFFER answers */
} stream_result_t;

/* Feeds data[0 .. len) to a fresh parser. chunk(i, state) returns the size
 * of the next chunk (>= 1); NULL means the whole rest at once. Checks the
 * parser's invariants on the way (used bytes, buffer accounting, stickiness)
 * with cmocka asserts, re-encodes every packet for `version` (or the CONNECT
 * packet's own version). */
typedef size_t (*chunk_fn)(size_t pos, void *state);
void stream_run(const uint8_t *data, size_t len, uint8_t version,
                uvmqtt_role_t role, uint32_t max_size, chunk_fn chunk,
                void *state, stream_result_t *res);
void stream_free(stream_result_t *res);
/* Asserts that two runs saw the same packets and the same end. */
void stream_assert_same(const stream_result_t *a, const stream_result_t *b);

#endif
