/* Read coalescing under load (uvmqtt__tcp_coalesce()): a QoS 1 burst
 * through mosquitto makes the tcp layer wait before reading (naps), every
 * message still arrives and completes within a bound once the load stops,
 * and single round trips at light load never wait. */
#include "ctest.h"
#include "transport/transport.h"

#define BURST 3000
#define TRIPS 40

typedef struct {
  ct_client_t sub, pub;
  int completed;
  char topic[64];
} fx_t;

static void count_cb(uvmqtt_client_t *c, const uvmqtt_pub_result_t *r,
                     void *arg) {
  (void)c;
  fx_t *f = arg;
  assert_int_equal(r->status, 0);
  f->completed++;
}

static void setup(fx_t *f, uv_loop_t *loop, tu_broker_t *b) {
  memset(f, 0, sizeof(*f));
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, NULL, true);
  assert_int_equal(uvmqtt_options_set_max_inflight(o, 100), 0);
  ct_client_init(&f->sub, loop, o, "sub");
  ct_client_init(&f->pub, loop, o, "pub");
  uvmqtt_options_del(o);
  ct_connect(&f->sub, b->port);
  ct_connect(&f->pub, b->port);
  ct_wait_connected(&f->sub, 1);
  ct_wait_connected(&f->pub, 1);
  snprintf(f->topic, sizeof(f->topic), "coalesce/%d", (int)getpid());
  ct_subscribe(&f->sub, f->topic, 1);
}

static void teardown_fx(fx_t *f) {
  ct_close(&f->pub);
  ct_close(&f->sub);
  ct_client_free(&f->pub);
  ct_client_free(&f->sub);
}

/* One message at a time, each published when the previous one arrived:
 * nothing waits, and each arrives within the bound. */
static void round_trips(fx_t *f, uv_loop_t *loop, int n) {
  uint64_t naps = uvmqtt__tcp_naps();
  for (int i = 0; i < n; i++) {
    size_t have = f->sub.nmsgs;
    int done = f->completed;
    uint64_t t0 = uv_hrtime();
    assert_true(
        uvmqtt_publish(f->pub.c, f->topic, "x", 1, 1, false, count_cb, f) > 0);
    assert_int_equal(ct_wait_size(loop, &f->sub.nmsgs, have + 1, 1000), 0);
    assert_int_equal(ct_wait_int(loop, &f->completed, done + 1, 1000), 0);
    /* Loopback: milliseconds at worst on a busy machine. */
    assert_true(uv_hrtime() - t0 < 500 * 1000000ull);
  }
  assert_int_equal(uvmqtt__tcp_naps(), naps);
}

static void coalesce_burst(void **state) {
  (void)state;
  uv_loop_t loop;
  fx_t f;
  tu_broker_t *b = ct_broker("max_inflight_messages 100\n");
  assert_int_equal(uv_loop_init(&loop), 0);
  setup(&f, &loop, b);

  /* Light load before: no waits. */
  round_trips(&f, &loop, TRIPS);

  uint64_t naps = uvmqtt__tcp_naps();
  uint64_t t0 = uv_hrtime();
  for (int i = 0; i < BURST; i++)
    assert_true(uvmqtt_publish(f.pub.c, f.topic, "0123456789abcdef", 16, 1,
                               false, count_cb, &f) > 0);
  /* Every message arrives and completes, none is left waiting once the
   * load stops. A nap is 50 us, a few hundred of them at most here. */
  assert_int_equal(
      ct_wait_size(&loop, &f.sub.nmsgs, (size_t)TRIPS + BURST, CT_WAIT_MS), 0);
  assert_int_equal(ct_wait_int(&loop, &f.completed, TRIPS + BURST, CT_WAIT_MS),
                   0);
  uint64_t ms = (uv_hrtime() - t0) / 1000000;
  uint64_t took = uvmqtt__tcp_naps() - naps;
  print_message("burst of %d: %llu ms, %llu naps\n", BURST,
                (unsigned long long)ms, (unsigned long long)took);
  assert_true(took > 0);         /* the load was seen */
  assert_true(took < BURST / 2); /* and each nap batched several */
  assert_true(ms < 5000);

  /* Light load after: immediate again. */
  round_trips(&f, &loop, TRIPS);
  tu_run_for(&loop, 100);
  assert_int_equal(f.sub.nmsgs, (size_t)2 * TRIPS + BURST);
  teardown_fx(&f);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
}

static const struct CMUnitTest tests[] = {
    CT_TEST(coalesce_burst),
};

CT_MAIN(tests)
