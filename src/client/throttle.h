/* Outgoing rate limits, sans-I/O: a token bucket for messages per second
 * and one for bytes per second, each with a burst. `now` is passed in
 * (milliseconds), so unit tests use a fake clock; the caller asks how long
 * to wait and arms the one timer it already has, never a timer per
 * message.
 */
#ifndef UVMQTT_THROTTLE_H
#define UVMQTT_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One bucket. Levels are in thousandths of a unit so that rates below one
 * unit per millisecond refill exactly. A level may go negative: a message
 * larger than the burst goes when the bucket is full and leaves a debt. */
typedef struct {
  int64_t level; /* thousandths */
  int64_t cap;   /* burst, thousandths; 0 = unlimited */
  uint32_t rate; /* units per second */
} uvmqtt__bucket_t;

typedef struct {
  uvmqtt__bucket_t msgs, bytes;
  uint64_t last; /* time of the last refill */
} uvmqtt__throttle_t;

/* Sets the limits (0 = unlimited for that dimension). A burst of 0 means
 * a tenth of a second's worth (at least one message / the rate in bytes
 * divided by ten, at least one byte). Buckets start full. */
void uvmqtt__throttle_init(uvmqtt__throttle_t *t, uint32_t msgs_per_s,
                           uint32_t msg_burst, uint32_t bytes_per_s,
                           uint32_t byte_burst, uint64_t now);

/* Whether any limit is set. */
bool uvmqtt__throttle_on(const uvmqtt__throttle_t *t);

/* Milliseconds until a message of `len` bytes may go (0: now). */
uint64_t uvmqtt__throttle_wait(uvmqtt__throttle_t *t, size_t len, uint64_t now);

/* If a message of `len` bytes may go at `now`, takes its tokens and
 * returns true; else changes nothing and returns false. */
bool uvmqtt__throttle_take(uvmqtt__throttle_t *t, size_t len, uint64_t now);

#endif
