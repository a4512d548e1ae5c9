/* Outgoing rate limits (see throttle.h): two token buckets, refilled from
 * the time passed in. Sans-I/O. */
#include "throttle.h"

static void bucket_init(uvmqtt__bucket_t *b, uint32_t rate, uint32_t burst) {
  b->rate = rate;
  if (rate == 0) {
    b->cap = b->level = 0;
    return;
  }
  if (burst == 0)
    burst = rate / 10 > 0 ? rate / 10 : 1;
  b->cap = (int64_t)burst * 1000;
  b->level = b->cap;
}

void uvmqtt__throttle_init(uvmqtt__throttle_t *t, uint32_t msgs_per_s,
                           uint32_t msg_burst, uint32_t bytes_per_s,
                           uint32_t byte_burst, uint64_t now) {
  bucket_init(&t->msgs, msgs_per_s, msg_burst);
  bucket_init(&t->bytes, bytes_per_s, byte_burst);
  t->last = now;
}

bool uvmqtt__throttle_on(const uvmqtt__throttle_t *t) {
  return t->msgs.rate != 0 || t->bytes.rate != 0;
}

/* rate units per second = rate thousandths per millisecond. */
static void refill(uvmqtt__bucket_t *b, uint64_t dt) {
  if (b->rate == 0)
    return;
  if (dt > (uint64_t)(b->cap - b->level) / b->rate + 1)
    b->level = b->cap;
  else if ((b->level += (int64_t)(dt * b->rate)) > b->cap)
    b->level = b->cap;
}

static void advance(uvmqtt__throttle_t *t, uint64_t now) {
  if (now <= t->last)
    return;
  refill(&t->msgs, now - t->last);
  refill(&t->bytes, now - t->last);
  t->last = now;
}

/* What must be in the bucket before `units` may go: all of them, or a
 * full bucket for more than the burst. */
static int64_t need(const uvmqtt__bucket_t *b, uint64_t units) {
  int64_t n = (int64_t)units * 1000;
  return n < b->cap ? n : b->cap;
}

static uint64_t bucket_wait(const uvmqtt__bucket_t *b, uint64_t units) {
  int64_t short_by;
  if (b->rate == 0)
    return 0;
  short_by = need(b, units) - b->level;
  if (short_by <= 0)
    return 0;
  return ((uint64_t)short_by + b->rate - 1) / b->rate; /* round up */
}

uint64_t uvmqtt__throttle_wait(uvmqtt__throttle_t *t, size_t len,
                               uint64_t now) {
  uint64_t a, b;
  advance(t, now);
  a = bucket_wait(&t->msgs, 1);
  b = bucket_wait(&t->bytes, len);
  return a > b ? a : b;
}

bool uvmqtt__throttle_take(uvmqtt__throttle_t *t, size_t len, uint64_t now) {
  if (uvmqtt__throttle_wait(t, len, now) != 0)
    return false;
  if (t->msgs.rate != 0)
    t->msgs.level -= 1000;
  if (t->bytes.rate != 0)
    t->bytes.level -= (int64_t)len * 1000;
  return true;
}
