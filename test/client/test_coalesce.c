/* Coalescing on the tcp layer.
 *
 * - Reads under load (UVMQTT__HINT_COALESCE): a QoS 1 burst through
 *   mosquitto makes the tcp layer wait before reading (naps), every
 *   message still arrives and completes within a bound once the load
 *   stops, and single round trips at light load never wait.
 * - Delayed ACKs: a QoS 0 subscriber (TCP_NODELAY, the default) behind a
 *   mosquitto with Nagle on (its default) receives many messages per TCP
 *   segment; the quick ACK sent after its SUBACK does not stay on.
 * - Round trips at full speed: a client answering its own messages as
 *   fast as they come (tens per millisecond, one per read) never waits. */
#include <dirent.h>
#include <sys/socket.h>
#include <unistd.h>

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
  /* The acknowledgements of a burst's last reads may still be going out
   * (with their nap): let them, first. */
  tu_run_for(loop, 20);
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

/* struct tcp_info of <netinet/tcp.h>, extended with the kernel's later
 * fields (the layout only ever grows at its end). */
typedef struct {
  struct tcp_info base;
  uint64_t pacing_rate, max_pacing_rate, bytes_acked, bytes_received;
  uint32_t segs_out, segs_in, notsent_bytes, min_rtt, data_segs_in;
} tinfo_t;

/* The TCP socket of this process, connected to `port`, that received the
 * most bytes: the subscriber's. */
static int stream_info(int port, tinfo_t *out) {
  DIR *d = opendir("/proc/self/fd");
  int found = -1;
  uint64_t best = 0;
  struct dirent *e;
  assert_non_null(d);
  while ((e = readdir(d)) != NULL) {
    int fd = atoi(e->d_name);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    tinfo_t ti;
    socklen_t tl = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (fd <= 2 || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0 ||
        ss.ss_family != AF_INET ||
        ntohs(((struct sockaddr_in *)&ss)->sin_port) != port ||
        getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &tl) != 0 || tl < sizeof(ti))
      continue;
    if (ti.bytes_received >= best) {
      best = ti.bytes_received;
      *out = ti;
      found = fd;
    }
  }
  closedir(d);
  return found;
}

#define STREAM 20000

static void coalesce_nagle_peer(void **state) {
  (void)state;
  uv_loop_t loop;
  ct_client_t sub, pub;
  tu_broker_t *b = ct_broker("set_tcp_nodelay false\n");
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, NULL, true);
  ct_client_init(&sub, &loop, o, "sub");
  ct_client_init(&pub, &loop, o, "pub");
  uvmqtt_options_del(o);
  ct_connect(&sub, b->port);
  ct_connect(&pub, b->port);
  ct_wait_connected(&sub, 1);
  ct_wait_connected(&pub, 1);
  ct_subscribe(&sub, "coalesce/nagle", 0);

  tinfo_t before, after;
  assert_true(stream_info(b->port, &before) >= 0);
  for (int i = 0; i < STREAM; i++) {
    assert_int_equal(uvmqtt_publish(pub.c, "coalesce/nagle", "0123456789", 10,
                                    0, false, NULL, NULL),
                     0);
    if (i % 500 == 499) /* let it flow meanwhile, as an application would */
      uv_run(&loop, UV_RUN_NOWAIT);
  }
  assert_int_equal(ct_wait_size(&loop, &sub.nmsgs, STREAM, CT_WAIT_MS), 0);
  assert_true(stream_info(b->port, &after) >= 0);
  uint32_t segs = after.data_segs_in - before.data_segs_in;
  uint32_t acks = after.segs_out - before.segs_out;
  print_message("%d messages in %u segments, %u ACKs sent\n", STREAM, segs,
                acks);
  /* Each segment carries many messages (about 1.3 per segment when
   * every read was acknowledged at once). */
  assert_true(segs < STREAM / 8);
  ct_close(&pub);
  ct_close(&sub);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&sub);
  ct_client_free(&pub);
}

/* ---- round trips at full speed ------------------------------------------ */

#define PINGS 3000

typedef struct {
  const char *topic;
  int got;
  int failed;
} ping_t;

static void ping_msg(uvmqtt_client_t *c, const uvmqtt_message_t *m, void *arg) {
  (void)m;
  ping_t *p = arg;
  if (++p->got < PINGS &&
      uvmqtt_publish(c, p->topic, "ping", 4, 1, false, NULL, NULL) <= 0)
    p->failed++;
}

static void coalesce_ping_pong(void **state) {
  (void)state;
  uv_loop_t loop;
  ct_client_t cl;
  char topic[64];
  tu_broker_t *b =
      ct_broker("set_tcp_nodelay true\nmax_inflight_messages 100\n");
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, NULL, true);
  ct_client_init(&cl, &loop, o, "ping");
  uvmqtt_options_del(o);
  ct_connect(&cl, b->port);
  ct_wait_connected(&cl, 1);
  snprintf(topic, sizeof(topic), "coalesce/ping/%d", (int)getpid());
  ct_subscribe(&cl, topic, 1);
  ping_t p = {topic, 0, 0};
  assert_int_equal(uvmqtt_client_on_message(cl.c, ping_msg, &p), 0);
  tu_run_for(&loop, 20);
  uint64_t naps = uvmqtt__tcp_naps();
  uint64_t t0 = uv_hrtime();
  assert_true(uvmqtt_publish(cl.c, topic, "ping", 4, 1, false, NULL, NULL) > 0);
  assert_int_equal(ct_wait_int(&loop, &p.got, PINGS, CT_WAIT_MS), 0);
  uint64_t us = (uv_hrtime() - t0) / 1000;
  print_message("%d round trips in %llu us, %llu naps\n", PINGS,
                (unsigned long long)us,
                (unsigned long long)(uvmqtt__tcp_naps() - naps));
  assert_int_equal(p.failed, 0);
  /* Many per millisecond, but one message per read and one in flight:
   * below every threshold, so none waits (a wait would double each trip). */
  assert_int_equal(uvmqtt__tcp_naps(), naps);
  ct_close(&cl);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&cl);
}

static const struct CMUnitTest tests[] = {
    CT_TEST(coalesce_burst),
    CT_TEST(coalesce_nagle_peer),
    CT_TEST(coalesce_ping_pong),
};

CT_MAIN(tests)
