/* The fleet policies alone, on a fake clock: the reconnect backoff across
 * accept-then-close sequences, takeover detection, the herd limit and the
 * token bucket. No sockets, no loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "uvmqtt/errors.h"

#include "client/backoff.h"
#include "client/herd.h"
#include "client/stats.h"
#include "client/throttle.h"

#define MID 0x7fffffffu /* a random word in the middle: no jitter */

static const uvmqtt__rc_policy_t pol = {.min_ms = 1000,
                                        .max_ms = 30000,
                                        .stable_ms = 30000,
                                        .jitter = 0.2f,
                                        .suspect_after = 3,
                                        .on_takeover = UVMQTT__TAKEOVER_STOP};

static uint64_t delay_mid(uvmqtt__rc_t *rc, const uvmqtt__rc_policy_t *p) {
  uint64_t d = uvmqtt__rc_delay(rc, p, MID);
  return (d + 50) / 100 * 100; /* MID is 0.5 minus a hair */
}

/* A broker that accepts (CONNACK 0) and closes 50 ms later, forever: count
 * the connections in `window` ms of fake time. */
static int storm(const uvmqtt__rc_policy_t *p, uint64_t window,
                 int *shortlived) {
  uvmqtt__rc_t rc;
  uint64_t now = 0;
  int conns = 0;
  uvmqtt__rc_reset(&rc);
  *shortlived = 0;
  for (;;) {
    bool stop;
    int st;
    now += 5; /* tcp + CONNECT/CONNACK */
    if (now > window)
      break;
    conns++;
    uvmqtt__rc_connected(&rc, now);
    now += 50;
    st = uvmqtt__rc_lost(&rc, p, now, UVMQTT_EPEERCLOSED, 0, &stop);
    if (st == UVMQTT_ESHORTLIVED)
      (*shortlived)++;
    if (stop)
      break;
    now += uvmqtt__rc_delay(&rc, p, MID);
  }
  return conns;
}

static void test_accept_then_close_backs_off(void **state) {
  int sl;
  (void)state;
  /* One, 1 s later one, 2 s later the third: that is the threshold, and
   * the next waits the maximum (30 s). Before: one a second, 20 in 20 s. */
  assert_int_equal(3, storm(&pol, 20000, &sl));
  assert_int_equal(1, sl);
  /* Over ten minutes, one per maximum delay after that. */
  assert_true(storm(&pol, 600000, &sl) <= 3 + 600000 / 24000);
  assert_true(sl >= 15);
}

static void test_delays_continue_across_short_connections(void **state) {
  uvmqtt__rc_t rc;
  uvmqtt__rc_policy_t p = pol;
  bool stop;
  (void)state;
  p.suspect_after = 0;
  uvmqtt__rc_reset(&rc);
  assert_int_equal(1000, delay_mid(&rc, &p)); /* failed attempts: 1, 2 s */
  assert_int_equal(2000, delay_mid(&rc, &p));
  uvmqtt__rc_connected(&rc, 100000);
  assert_int_equal(
      UVMQTT_EPEERCLOSED,
      uvmqtt__rc_lost(&rc, &p, 105000, UVMQTT_EPEERCLOSED, 0, &stop));
  assert_false(stop);
  assert_int_equal(4000, delay_mid(&rc, &p)); /* not 1 s again */
  assert_int_equal(8000, delay_mid(&rc, &p));
  assert_int_equal(16000, delay_mid(&rc, &p));
  assert_int_equal(30000, delay_mid(&rc, &p)); /* capped */
  assert_int_equal(30000, delay_mid(&rc, &p));
}

/* A connection that lived less than the longest delay (30 s + 20 %) is not
 * stable even when stable_ms says so: a rival may have waited that long. */
static void test_stable_floor_is_the_longest_delay(void **state) {
  uvmqtt__rc_t rc;
  bool stop;
  (void)state;
  uvmqtt__rc_reset(&rc);
  (void)uvmqtt__rc_delay(&rc, &pol, MID);
  uvmqtt__rc_connected(&rc, 0);
  (void)uvmqtt__rc_lost(&rc, &pol, 36999, UVMQTT_EPEERCLOSED, 0, &stop);
  assert_int_equal(2000, delay_mid(&rc, &pol)); /* continued */
  uvmqtt__rc_connected(&rc, 100000);
  (void)uvmqtt__rc_lost(&rc, &pol, 137000, UVMQTT_EPEERCLOSED, 0, &stop);
  assert_int_equal(500, delay_mid(&rc, &pol)); /* started over */
}

static void test_stable_connection_starts_over(void **state) {
  uvmqtt__rc_t rc;
  bool stop;
  (void)state;
  uvmqtt__rc_reset(&rc);
  for (int i = 0; i < 5; i++)
    (void)uvmqtt__rc_delay(&rc, &pol, MID);
  uvmqtt__rc_connected(&rc, 1000);
  assert_int_equal(UV_ECONNRESET, uvmqtt__rc_lost(&rc, &pol, 1000 + 37000,
                                                  UV_ECONNRESET, 0, &stop));
  assert_false(stop);
  /* The first delay is spread over [0, min]: the ends of the range. */
  {
    uvmqtt__rc_t a = rc, b = rc;
    assert_int_equal(0, uvmqtt__rc_delay(&a, &pol, 0));
    assert_int_equal(1000, uvmqtt__rc_delay(&b, &pol, 0xffffffffu));
  }
  assert_int_equal(500, delay_mid(&rc, &pol));
  assert_int_equal(1000, delay_mid(&rc, &pol)); /* then from min again */
  assert_int_equal(2000, delay_mid(&rc, &pol));
  /* Jitter bounds on a normal delay (4 s): 1 -/+ 0.2. */
  {
    uvmqtt__rc_t a = rc, b = rc;
    assert_int_equal(3200, uvmqtt__rc_delay(&a, &pol, 0));
    assert_int_equal(4800, uvmqtt__rc_delay(&b, &pol, 0xffffffffu));
  }
  /* A clock that wrapped past 32 bits still measures the duration. */
  uvmqtt__rc_connected(&rc, 0xfffff000ull);
  (void)uvmqtt__rc_lost(&rc, &pol, 0xfffff000ull + 40000, UV_ECONNRESET, 0,
                        &stop);
  assert_int_equal(500, delay_mid(&rc, &pol));
}

static void test_suspect_after_threshold_quiet_closes_only(void **state) {
  uvmqtt__rc_t rc;
  uint64_t now = 0;
  bool stop;
  int st[4];
  (void)state;
  uvmqtt__rc_reset(&rc);
  for (int i = 0; i < 4; i++) {
    uvmqtt__rc_connected(&rc, now);
    now += 100;
    st[i] = uvmqtt__rc_lost(&rc, &pol, now, UVMQTT_EPEERCLOSED, 0, &stop);
    assert_false(stop); /* a guess never stops the client */
    now += uvmqtt__rc_delay(&rc, &pol, MID);
  }
  assert_int_equal(UVMQTT_EPEERCLOSED, st[0]);
  assert_int_equal(UVMQTT_EPEERCLOSED, st[1]);
  assert_int_equal(UVMQTT_ESHORTLIVED, st[2]);
  assert_int_equal(UVMQTT_ESHORTLIVED, st[3]);
  /* After the third: the maximum delay. */
  uvmqtt__rc_connected(&rc, now);
  (void)uvmqtt__rc_lost(&rc, &pol, now + 10, UV_EOF, 0, &stop);
  assert_int_equal(30000, delay_mid(&rc, &pol));

  /* Losses that carry their own reason are not a takeover guess. */
  uvmqtt__rc_reset(&rc);
  for (int i = 0; i < 5; i++) {
    uvmqtt__rc_connected(&rc, now);
    assert_int_equal(
        UVMQTT_EKEEPALIVE,
        uvmqtt__rc_lost(&rc, &pol, now + 10, UVMQTT_EKEEPALIVE, 0, &stop));
    now += 10 + uvmqtt__rc_delay(&rc, &pol, MID);
  }
  /* A stable connection in between resets the count. */
  uvmqtt__rc_reset(&rc);
  for (int i = 0; i < 6; i++) {
    uint64_t up = i == 2 || i == 4 ? 37000 : 100;
    uvmqtt__rc_connected(&rc, now);
    assert_int_equal(
        UVMQTT_EPEERCLOSED,
        uvmqtt__rc_lost(&rc, &pol, now + up, UVMQTT_EPEERCLOSED, 0, &stop));
    now += up + uvmqtt__rc_delay(&rc, &pol, MID);
  }
}

static void test_v5_taken_over(void **state) {
  uvmqtt__rc_t rc;
  uvmqtt__rc_policy_t p = pol;
  bool stop;
  (void)state;
  uvmqtt__rc_reset(&rc);
  uvmqtt__rc_connected(&rc, 0);
  /* Default: told, and the client does not fight back. */
  assert_int_equal(
      UVMQTT_ETAKENOVER,
      uvmqtt__rc_lost(&rc, &p, 60000, UVMQTT_EDISCONNECTED, 0x8E, &stop));
  assert_true(stop);
  /* Other reasons are reported as they are. */
  uvmqtt__rc_connected(&rc, 0);
  assert_int_equal(
      UVMQTT_EDISCONNECTED,
      uvmqtt__rc_lost(&rc, &p, 60000, UVMQTT_EDISCONNECTED, 0x8B, &stop));
  assert_false(stop);
  /* Backing off: the maximum delay, then the normal sequence. */
  p.on_takeover = UVMQTT__TAKEOVER_BACKOFF;
  uvmqtt__rc_reset(&rc);
  uvmqtt__rc_connected(&rc, 0);
  assert_int_equal(
      UVMQTT_ETAKENOVER,
      uvmqtt__rc_lost(&rc, &p, 10, UVMQTT_EDISCONNECTED, 0x8E, &stop));
  assert_false(stop);
  assert_int_equal(30000, delay_mid(&rc, &p));
  /* Fighting back: the normal backoff. */
  p.on_takeover = UVMQTT__TAKEOVER_RETRY;
  uvmqtt__rc_reset(&rc);
  uvmqtt__rc_connected(&rc, 0);
  assert_int_equal(
      UVMQTT_ETAKENOVER,
      uvmqtt__rc_lost(&rc, &p, 10, UVMQTT_EDISCONNECTED, 0x8E, &stop));
  assert_false(stop);
  assert_int_equal(1000, delay_mid(&rc, &p));
}

/* ---- herd ------------------------------------------------------------ */

static void test_herd_limit(void **state) {
  uvmqtt__herd_t h;
  uvmqtt__herd_node_t n[6] = {{0}};
  (void)state;
  uvmqtt__herd_init(&h, 2);
  assert_true(uvmqtt__herd_enter(&h, &n[0]));
  assert_true(uvmqtt__herd_enter(&h, &n[1]));
  for (int i = 2; i < 6; i++) {
    assert_false(uvmqtt__herd_enter(&h, &n[i]));
    assert_true(uvmqtt__herd_waiting(&n[i]));
  }
  assert_int_equal(2, h.active);
  assert_int_equal(4, h.waiting);
  uvmqtt__herd_cancel(&h, &n[3]); /* closed while waiting */
  assert_false(uvmqtt__herd_waiting(&n[3]));
  uvmqtt__herd_cancel(&h, &n[3]);                  /* twice is harmless */
  assert_ptr_equal(&n[2], uvmqtt__herd_leave(&h)); /* FIFO */
  assert_ptr_equal(&n[4], uvmqtt__herd_leave(&h));
  assert_int_equal(2, h.active);
  uvmqtt__herd_cancel(&h, &n[5]); /* the tail */
  assert_null(uvmqtt__herd_leave(&h));
  assert_int_equal(1, h.active);
  /* A newcomer does not jump the queue. */
  assert_true(uvmqtt__herd_enter(&h, &n[0]));
  assert_false(uvmqtt__herd_enter(&h, &n[1]));
  assert_false(uvmqtt__herd_enter(&h, &n[3]));
  h.limit = 4; /* raised: the waiters may start */
  assert_ptr_equal(&n[1], uvmqtt__herd_next(&h));
  assert_ptr_equal(&n[3], uvmqtt__herd_next(&h));
  assert_null(uvmqtt__herd_next(&h));
  assert_int_equal(4, h.active);
  assert_int_equal(4, h.peak_active);
  assert_int_equal(4, h.peak_waiting);
  /* 0 = unlimited. */
  uvmqtt__herd_init(&h, 0);
  for (int i = 0; i < 6; i++)
    assert_true(uvmqtt__herd_enter(&h, &n[i]));
}

/* Simulated reconnect of 1000 clients, each attempt taking 10 ms while
 * fewer than 100 run (a backlog of 100) and 1010 ms otherwise (a dropped
 * SYN): with a limit of 64 nobody pays the retransmit. */
static uint64_t herd_reconnect(uint32_t limit) {
  enum { N = 1000 };
  static uvmqtt__herd_node_t n[N];
  static uint64_t ends[N];
  uvmqtt__herd_t h;
  uint64_t now = 0, last = 0;
  int started = 0, done = 0;
  uvmqtt__herd_init(&h, limit);
  for (int i = 0; i < N; i++) {
    n[i] = (uvmqtt__herd_node_t){0};
    ends[i] = 0;
    if (uvmqtt__herd_enter(&h, &n[i])) {
      ends[i] = now + (h.active <= 100 ? 10 : 1010);
      started++;
    }
  }
  while (done < N) {
    now++;
    for (int i = 0; i < N; i++) {
      if (ends[i] == 0 || ends[i] > now)
        continue;
      ends[i] = 0;
      done++;
      last = now;
      uvmqtt__herd_node_t *next = uvmqtt__herd_leave(&h);
      if (next != NULL) {
        ends[next - n] = now + (h.active <= 100 ? 10 : 1010);
        started++;
      }
    }
  }
  assert_int_equal(N, started);
  return last;
}

static void test_herd_simulated_restart(void **state) {
  uint64_t paced, unpaced;
  (void)state;
  paced = herd_reconnect(64);
  unpaced = herd_reconnect(0);
  assert_true(paced < 200);    /* 16 rounds of 10 ms */
  assert_true(unpaced > 1000); /* the ones past the backlog waited */
}

/* ---- token bucket ------------------------------------------------------ */

static void test_bucket_rate_over_ten_seconds(void **state) {
  static const unsigned steps[] = {1, 3, 7, 16, 50};
  (void)state;
  for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
    uvmqtt__throttle_t t;
    uint64_t now = 0;
    long sent = 0;
    uvmqtt__throttle_init(&t, 1000, 0, 0, 0, now);
    assert_true(uvmqtt__throttle_on(&t));
    /* Publishing as fast as the application can: all that is allowed. */
    for (; now <= 10000; now += steps[k])
      while (uvmqtt__throttle_take(&t, 100, now))
        sent++;
    /* 10 s at 1000/s plus the initial burst of 100: within 2 %. */
    assert_true(sent >= 10000 && sent <= 10100 + 1);
  }
}

static void test_bucket_wait(void **state) {
  uvmqtt__throttle_t t;
  (void)state;
  uvmqtt__throttle_init(&t, 10, 1, 0, 0, 1000);
  assert_int_equal(0, uvmqtt__throttle_wait(&t, 5, 1000));
  assert_true(uvmqtt__throttle_take(&t, 5, 1000));
  assert_int_equal(100, uvmqtt__throttle_wait(&t, 5, 1000));
  assert_false(uvmqtt__throttle_take(&t, 5, 1050));
  assert_int_equal(50, uvmqtt__throttle_wait(&t, 5, 1050));
  assert_true(uvmqtt__throttle_take(&t, 5, 1100));
  /* A clock going backwards refills nothing and breaks nothing. */
  assert_false(uvmqtt__throttle_take(&t, 5, 900));
  assert_int_equal(100, uvmqtt__throttle_wait(&t, 5, 1100));
}

static void test_bucket_bytes_and_big_messages(void **state) {
  uvmqtt__throttle_t t;
  (void)state;
  /* 1000 B/s, burst 100 B, no message limit. */
  uvmqtt__throttle_init(&t, 0, 0, 1000, 100, 0);
  assert_true(uvmqtt__throttle_take(&t, 50, 0));
  assert_true(uvmqtt__throttle_take(&t, 50, 0));
  assert_false(uvmqtt__throttle_take(&t, 50, 0));
  assert_int_equal(50, uvmqtt__throttle_wait(&t, 50, 0));
  /* Larger than the burst: goes once the bucket is full, leaving a debt
   * that the rate pays off (500 B at 1000 B/s: 0.5 s). */
  assert_int_equal(100, uvmqtt__throttle_wait(&t, 500, 0));
  assert_true(uvmqtt__throttle_take(&t, 500, 100));
  assert_int_equal(450, uvmqtt__throttle_wait(&t, 50, 100));
  assert_true(uvmqtt__throttle_take(&t, 50, 550));
  /* Both limits: the slower decides. */
  uvmqtt__throttle_init(&t, 1000, 1, 1000, 10, 0);
  assert_true(uvmqtt__throttle_take(&t, 10, 0));
  assert_int_equal(10, uvmqtt__throttle_wait(&t, 10, 0));
  /* No limits. */
  uvmqtt__throttle_init(&t, 0, 0, 0, 0, 0);
  assert_false(uvmqtt__throttle_on(&t));
  for (int i = 0; i < 1000; i++)
    assert_true(uvmqtt__throttle_take(&t, 1 << 20, 0));
  /* A long idle time refills to the burst only (no overflow). */
  uvmqtt__throttle_init(&t, 4000000000u, 0, 0, 0, 0);
  assert_true(uvmqtt__throttle_take(&t, 1, UINT64_MAX / 2));
}

/* ---- statistics: the packet scanner ------------------------------------ */

/* CONNECT (3.1.1), PUBLISH QoS 1, PUBLISH QoS 2 DUP, PINGREQ, a PUBLISH
 * QoS 0 with a two-byte remaining length (200), DISCONNECT. */
static uint8_t stream_out[512];
static size_t stream_out_len;

static void build_stream(void) {
  static const uint8_t head[] = {
      0x10, 0x0d, 0x00, 0x04, 'M',  'Q',  'T',  'T',  0x04, 0x02, 0x00, 0x3c,
      0x00, 0x01, 'x',  0x32, 0x05, 0x00, 0x01, 't',  0x00, 0x01, 0x3c, 0x05,
      0x00, 0x01, 't',  0x00, 0x02, 0xc0, 0x00, 0x30, 0xc8, 0x01};
  size_t n = sizeof(head);
  memcpy(stream_out, head, n);
  memset(stream_out + n, 'p', 200);
  n += 200;
  stream_out[n++] = 0xe0;
  stream_out[n++] = 0x00;
  stream_out_len = n;
}

static void test_stats_scanner_any_split(void **state) {
  (void)state;
  build_stream();
  for (size_t cut = 0; cut <= stream_out_len; cut++) {
    uvmqtt__cstats_t *st = uvmqtt__cstats_new(5);
    uvmqtt_client_stats_t r;
    assert_non_null(st);
    uvmqtt__cstats_out(st, stream_out, cut);
    uvmqtt__cstats_out(st, stream_out + cut, stream_out_len - cut);
    uvmqtt__cstats_read(st, 5, &r);
    assert_int_equal(stream_out_len, r.bytes_out);
    assert_int_equal(1, r.packets_out[1]);
    assert_int_equal(3, r.packets_out[3]);
    assert_int_equal(1, r.packets_out[12]);
    assert_int_equal(1, r.packets_out[14]);
    assert_int_equal(1, r.published[0]);
    assert_int_equal(1, r.published[1]);
    assert_int_equal(0, r.published[2]);
    assert_int_equal(1, r.republished);
    assert_int_equal(5, r.since_ms);
    uvmqtt__cstats_free(st);
  }
  /* One byte at a time, in: CONNACK, PINGRESP answers the PINGREQ. */
  {
    static const uint8_t in[] = {0x20, 0x02, 0x00, 0x00, 0xd0, 0x00};
    uvmqtt__cstats_t *st = uvmqtt__cstats_new(0);
    uvmqtt_client_stats_t r;
    uvmqtt__cstats_out(st, stream_out, stream_out_len); /* has PINGREQ */
    for (size_t i = 0; i < sizeof(in); i++)
      uvmqtt__cstats_in(st, in + i, 1);
    uvmqtt__cstats_in(st, in + 4, 2); /* an unasked PINGRESP: no sample */
    uvmqtt__cstats_read(st, 0, &r);
    assert_int_equal(1, r.packets_in[2]);
    assert_int_equal(2, r.packets_in[13]);
    assert_true(r.rtt_max_us >= r.rtt_last_us);
    assert_int_equal(r.rtt_last_us, r.rtt_smoothed_us); /* first sample */
    assert_int_equal(0, st->ping_at);
    uvmqtt__cstats_free(st);
  }
}

static void test_stats_times_and_outcomes(void **state) {
  uvmqtt__cstats_t *st = uvmqtt__cstats_new(1000);
  uvmqtt_client_stats_t r;
  (void)state;
  uvmqtt__cstats_attempt(st);
  uvmqtt__cstats_connected(st, 2000);
  uvmqtt__cstats_paused(st, true, 2500);
  uvmqtt__cstats_read(st, 3000, &r);
  assert_int_equal(1000, r.connection_age_ms);
  assert_int_equal(1000, r.connected_ms);
  assert_int_equal(500, r.paused_ms);
  uvmqtt__cstats_lost(st, 4000, UVMQTT_EPEERCLOSED);
  uvmqtt__cstats_attempt(st);
  uvmqtt__cstats_connected(st, 5000);
  uvmqtt__cstats_read(st, 5100, &r);
  assert_int_equal(2, r.attempts);
  assert_int_equal(2, r.connects);
  assert_int_equal(1, r.reconnects);
  assert_int_equal(UVMQTT_EPEERCLOSED, r.last_error);
  assert_int_equal(2100, r.connected_ms);
  assert_int_equal(100, r.connection_age_ms);
  assert_int_equal(1500, r.paused_ms); /* ended by the loss */
  uvmqtt__cstats_publish_done(st, 0, 0);
  uvmqtt__cstats_publish_done(st, UVMQTT_EDROPPED, 0);
  uvmqtt__cstats_publish_done(st, UVMQTT_EEXPIRED, 0);
  uvmqtt__cstats_publish_done(st, UVMQTT_EREJECTED, 0x87);
  uvmqtt__cstats_publish_done(st, UVMQTT_ECLOSED, 0);
  uvmqtt__cstats_delivered(st, 2);
  uvmqtt__cstats_read(st, 5100, &r);
  assert_int_equal(1, r.completed);
  assert_int_equal(1, r.dropped);
  assert_int_equal(1, r.expired);
  assert_int_equal(1, r.refused);
  assert_int_equal(0x87, r.last_refused_reason);
  assert_int_equal(1, r.failed);
  assert_int_equal(1, r.delivered[2]);
  uvmqtt__cstats_free(st);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_accept_then_close_backs_off),
      cmocka_unit_test(test_delays_continue_across_short_connections),
      cmocka_unit_test(test_stable_connection_starts_over),
      cmocka_unit_test(test_stable_floor_is_the_longest_delay),
      cmocka_unit_test(test_suspect_after_threshold_quiet_closes_only),
      cmocka_unit_test(test_v5_taken_over),
      cmocka_unit_test(test_herd_limit),
      cmocka_unit_test(test_herd_simulated_restart),
      cmocka_unit_test(test_bucket_rate_over_ten_seconds),
      cmocka_unit_test(test_bucket_wait),
      cmocka_unit_test(test_bucket_bytes_and_big_messages),
      cmocka_unit_test(test_stats_scanner_any_split),
      cmocka_unit_test(test_stats_times_and_outcomes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
