/* Allocation-failure sweep over the whole client: for every N, the Nth
 * allocation uvmqtt makes fails, and a full scenario runs (options, client,
 * connect to a real mosquitto, subscribe, publish at QoS 0/1/2, receive,
 * close). Whatever fails must fail with a clean error, every callback that
 * was promised fires exactly once, the client closes, the loop closes with
 * no handle left, and (under ASan) nothing leaks. The sweep ends when a run
 * makes fewer than N allocations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"
#include "uvmqtt.h"

static long fail_at; /* 1-based index of the allocation to fail; 0 = none */
static long count;
static long failures;

static int should_fail(void) {
  count++;
  if (fail_at && count == fail_at) {
    failures++;
    return 1;
  }
  return 0;
}
static void *t_malloc(size_t n) {
  return should_fail() ? NULL : malloc(n);
}
static void *t_realloc(void *p, size_t n) {
  return should_fail() ? NULL : realloc(p, n);
}
static void *t_calloc(size_t a, size_t b) {
  return should_fail() ? NULL : calloc(a, b);
}

typedef struct {
  uvmqtt_client_t *c;
  int connected, connect_failed, closed;
  int pub_calls[3];
  int sub_calls;
  int messages;
  int done_publishing;
  int published;
} run_t;

static void on_pub(uvmqtt_client_t *c, const uvmqtt_pub_result_t *res,
                   void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  (void)c;
  (void)status;
  (void)id;
  int *calls = arg;
  (*calls)++;
}

static void on_message(uvmqtt_client_t *c, const uvmqtt_message_t *m,
                       void *arg) {
  run_t *r = arg;
  (void)c;
  (void)m;
  r->messages++;
}

static void on_sub(uvmqtt_client_t *c, const uvmqtt_sub_result_t *res,
                   void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  const uint8_t *codes = res->codes;
  size_t n = res->count;
  const uvmqtt_props_t *props = res->props;
  run_t *r = arg;
  (void)id;
  (void)codes;
  (void)n;
  (void)props;
  r->sub_calls++;
  /* Publish once per run: after a failure-induced reconnect the client
   * re-subscribes (and on_connect subscribes again); a second round of
   * publishes would be counted as a second callback of the first. */
  if (status < 0 || r->done_publishing)
    return;
  for (int q = 0; q < 3; q++) {
    int rc = uvmqtt_publish(c, "alloc/t", "payload", 7, q, false, on_pub,
                            &r->pub_calls[q]);
    if (rc < 0) {
      assert_true(rc == UVMQTT_ENOMEM || rc == UVMQTT_ENOPKTID);
      r->pub_calls[q]++; /* no callback will come: count it ourselves */
    } else {
      r->published++;
    }
  }
  r->done_publishing = 1;
}

static void on_connect(uvmqtt_client_t *c, int status,
                       const uvmqtt_connack_t *ack, void *arg) {
  run_t *r = arg;
  (void)ack;
  if (status < 0) {
    r->connect_failed++;
    return;
  }
  r->connected++;
  if (r->connected > 1)
    return; /* subscriptions are restored by the client itself */
  int rc = uvmqtt_subscribe(c, "alloc/#", 2, on_sub, r);
  if (rc < 0) {
    assert_true(rc == UVMQTT_ENOMEM || rc == UVMQTT_ENOPKTID);
    r->done_publishing = 1;
    r->sub_calls++;
  }
}

static void on_closed(uvmqtt_client_t *c) {
  run_t *r = uvmqtt_client_get_data(c);
  r->closed = 1;
}

static void on_subs_closed(uvmqtt_client_t *c) {
  *(int *)uvmqtt_client_get_data(c) = 1;
}

static int finished(run_t *r) {
  return r->done_publishing && r->pub_calls[0] && r->pub_calls[1] &&
         r->pub_calls[2] && r->messages >= r->published;
}

/* The pre-connect hook changes what CONNECT carries: the setters
 * allocate, and a failure leaves the previous value. */
static int on_pre_connect(uvmqtt_client_t *c, unsigned attempt, void *arg) {
  (void)attempt;
  (void)arg;
  int rc = uvmqtt_client_set_will(c, "alloc/will", "gone", 4, 1, false);
  assert_true(rc == 0 || rc == UVMQTT_ENOMEM);
  return 0;
}

/* One scenario. Returns the number of allocations it made. */
static long run_once(int port, int version, long n) {
  uv_loop_t loop;
  run_t r;
  uvmqtt_options_t *o = NULL;
  memset(&r, 0, sizeof(r));
  count = 0;
  fail_at = n;
  assert_int_equal(uv_loop_init(&loop), 0);
  int rc = uvmqtt_options_new(&o);
  if (rc == 0) {
    if (uvmqtt_options_set_client_id(o, "alloc-sweep") == 0 &&
        uvmqtt_options_set_protocol(o, version) == 0 &&
        uvmqtt_options_set_will(o, "alloc/will", "bye", 3, 1, false) == 0 &&
        uvmqtt_options_set_reconnect(o, true, 10, 50, 0) == 0 &&
        /* Statistics and a rate limit: blocks of their own. */
        uvmqtt_options_set_stats(o, true) == 0 &&
        uvmqtt_options_set_rate_limit(o, 100000, 0, 0, 0) == 0)
      rc = uvmqtt_client_new(&loop, o, &r.c);
    else
      rc = UVMQTT_ENOMEM;
    uvmqtt_options_del(o);
  }
  if (rc < 0) {
    assert_int_equal(rc, UVMQTT_ENOMEM);
    assert_int_equal(tu_loop_close(&loop, 1000), 0);
    return count;
  }
  uvmqtt_client_set_data(r.c, &r);
  uvmqtt_client_on_connect(r.c, on_connect, &r);
  uvmqtt_client_on_message(r.c, on_message, &r);
  /* Hook setters cannot fail for want of memory. */
  assert_int_equal(uvmqtt_client_on_pre_connect(r.c, on_pre_connect, &r), 0);
  rc = uvmqtt_client_connect(r.c, "127.0.0.1", port);
  if (rc == 0) {
    uint64_t end = tu_now_ms() + 800;
    while (!finished(&r) && tu_now_ms() < end)
      tu_run_for(&loop, 5);
  } else {
    assert_int_equal(rc, UVMQTT_ENOMEM);
  }
  uvmqtt_client_close(r.c, on_closed);
  assert_int_equal(tu_run_until(&loop, &r.closed, 3000), 0);
  /* Every promised callback fired exactly once. */
  for (int q = 0; q < 3; q++)
    assert_true(r.pub_calls[q] <= 1);
  assert_true(r.sub_calls <= 1);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  return count;
}

/* Static so the teardown stops it even when an assertion fails. */
static tu_broker_t b;

static int teardown(void **state) {
  (void)state;
  uvmqtt_replace_allocator(malloc, realloc, calloc, free);
  tu_broker_cleanup(&b);
  return 0;
}

static void sweep(int version) {
  assert_int_equal(tu_broker_start(&b, 0, NULL), 0);
  assert_int_equal(
      uvmqtt_replace_allocator(t_malloc, t_realloc, t_calloc, free), 0);
  long total = run_once(b.port, version, 0);
  assert_true(total > 10);
  /* A clean run gets everything through. */
  long n;
  for (n = 1; n <= total + 5; n++) {
    failures = 0;
    long made = run_once(b.port, version, n);
    if (made < n)
      break;
    assert_int_equal(failures, 1);
  }
  uvmqtt_replace_allocator(malloc, realloc, calloc, free);
  tu_broker_cleanup(&b);
  printf("swept %ld allocation failures (a clean run makes %ld)\n", n - 1,
         total);
}

static void test_sweep_v311(void **state) {
  (void)state;
  sweep(UVMQTT_V311);
}

static void test_sweep_v5(void **state) {
  (void)state;
  sweep(UVMQTT_V5);
}

/* The subscription table past its list (a hash table, grown twice) and
 * the request queue past its walk, offline: 60 filters subscribed one by
 * one and many at once, 10 unsubscribed, an identical subscribe waiting
 * for a pending one, then close. Every accepted request's callback fires
 * exactly once (UVMQTT_ECLOSED at the close). */
static void count_cb(uvmqtt_client_t *c, const uvmqtt_sub_result_t *res,
                     void *arg) {
  (void)c;
  (void)res;
  (*(int *)arg)++;
}

static long run_subs_once(long n) {
  uv_loop_t loop;
  uvmqtt_options_t *o = NULL;
  uvmqtt_client_t *c = NULL;
  int promised = 0, calls = 0, closed = 0;
  char f[32], names[20][16];
  count = 0;
  fail_at = n;
  assert_int_equal(uv_loop_init(&loop), 0);
  int rc = uvmqtt_options_new(&o);
  if (rc == 0) {
    rc = uvmqtt_options_set_client_id(o, "alloc-subs");
    if (rc == 0)
      rc = uvmqtt_client_new(&loop, o, &c);
    uvmqtt_options_del(o);
  }
  if (rc < 0) {
    assert_int_equal(rc, UVMQTT_ENOMEM);
    assert_int_equal(tu_loop_close(&loop, 1000), 0);
    return count;
  }
  for (int i = 0; i < 40; i++) {
    snprintf(f, sizeof(f), "t/%d/#", i);
    rc = uvmqtt_subscribe(c, f, 1, count_cb, &calls);
    if (rc >= 0)
      promised++;
    else
      assert_int_equal(rc, UVMQTT_ENOMEM);
  }
  uvmqtt_subscription_t v[20];
  for (int i = 0; i < 20; i++) {
    snprintf(names[i], sizeof(names[i]), "m/%d", i);
    v[i].filter.data = names[i];
    v[i].filter.len = strlen(names[i]);
    v[i].options = 2;
  }
  rc = uvmqtt_subscribe_many(c, v, 20, NULL, count_cb, &calls);
  if (rc >= 0)
    promised++;
  else
    assert_int_equal(rc, UVMQTT_ENOMEM);
  for (int i = 0; i < 10; i++) {
    snprintf(f, sizeof(f), "t/%d/#", i);
    rc = uvmqtt_unsubscribe(c, f, count_cb, &calls);
    if (rc >= 0)
      promised++;
    else
      assert_int_equal(rc, UVMQTT_ENOMEM);
  }
  rc = uvmqtt_subscribe(c, "t/20/#", 1, count_cb, &calls);
  if (rc >= 0)
    promised++;
  else
    assert_int_equal(rc, UVMQTT_ENOMEM);
  assert_int_equal(calls, 0); /* offline: all queued */
  uvmqtt_client_set_data(c, &closed);
  uvmqtt_client_close(c, on_subs_closed);
  assert_int_equal(tu_run_until(&loop, &closed, 3000), 0);
  assert_int_equal(calls, promised);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  return count;
}

static void test_sweep_subs(void **state) {
  (void)state;
  assert_int_equal(
      uvmqtt_replace_allocator(t_malloc, t_realloc, t_calloc, free), 0);
  long total = run_subs_once(0);
  long n;
  for (n = 1; n <= total + 5; n++) {
    failures = 0;
    long made = run_subs_once(n);
    if (made < n)
      break;
    assert_int_equal(failures, 1);
  }
  uvmqtt_replace_allocator(malloc, realloc, calloc, free);
  printf("swept %ld allocation failures (a clean run makes %ld)\n", n - 1,
         total);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_sweep_v311, teardown),
      cmocka_unit_test_teardown(test_sweep_v5, teardown),
      cmocka_unit_test_teardown(test_sweep_subs, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
