/* The helpers of uvmqtt/helpers.h against a private mosquitto:
 * - threadsafe: 4 producer threads x 10,000 QoS 1 messages through
 *   uvmqtt_client_publish_threadsafe(), each delivered exactly once and in
 *   order per producer, every completion on the loop thread;
 * - loopthread: the same through uvmqtt_thread_start / _call / _stop;
 * - oneshot: uvmqtt_publish_single / _multiple, async and sync, and their
 *   errors.
 * argv[1] names the case. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "uvmqtt.h"

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                            \
      fputc('\n', stderr);                                                     \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

static tu_broker_t broker;

/* ---- a subscriber that counts sequence numbers ----------------------------
 */

#define MAXP 4
#define PER 10000

typedef struct {
  unsigned char seen[MAXP][PER];
  int last[MAXP];
  atomic_long received;
  long dups, disorder, bad;
  volatile int connected, subscribed;
} counter_t;

static void count_msg(uvmqtt_client_t *c, const uvmqtt_message_t *m,
                      void *arg) {
  counter_t *k = arg;
  char buf[64];
  int t, seq;
  (void)c;
  if (m->payload_len >= sizeof(buf)) {
    k->bad++;
    return;
  }
  memcpy(buf, m->payload, m->payload_len);
  buf[m->payload_len] = '\0';
  if (sscanf(buf, "%d:%d", &t, &seq) != 2 || t < 0 || t >= MAXP || seq < 0 ||
      seq >= PER) {
    k->bad++;
    return;
  }
  if (k->seen[t][seq]++)
    k->dups++;
  if (seq != k->last[t] + 1)
    k->disorder++;
  k->last[t] = seq;
  atomic_fetch_add(&k->received, 1);
}

static void on_subscribed(uvmqtt_client_t *c, const uvmqtt_sub_result_t *res,
                          void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  const uint8_t *codes = res->codes;
  size_t n = res->count;
  const uvmqtt_props_t *p = res->props;
  counter_t *k = arg;
  (void)c;
  (void)id;
  (void)p;
  CHECK(status == 0 && n == 1 && codes[0] == 1, "SUBACK %d", status);
  k->subscribed = 1;
}

static void sub_connected(uvmqtt_client_t *c, int status,
                          const uvmqtt_connack_t *ack, void *arg) {
  counter_t *k = arg;
  (void)ack;
  CHECK(status == 0, "subscriber connect: %s", uvmqtt_strerror(status));
  if (!k->connected) {
    k->connected = 1;
    CHECK(uvmqtt_subscribe(c, "ts/#", 1, on_subscribed, k) > 0, "subscribe");
  }
}

static void flag_connected(uvmqtt_client_t *c, int status,
                           const uvmqtt_connack_t *ack, void *arg) {
  (void)c;
  (void)ack;
  CHECK(status == 0, "publisher connect: %s", uvmqtt_strerror(status));
  *(volatile int *)arg = 1;
}

static uvmqtt_client_t *new_client(uv_loop_t *loop, const char *id) {
  uvmqtt_options_t *o;
  uvmqtt_client_t *c;
  CHECK(uvmqtt_options_new(&o) == 0, "options");
  uvmqtt_options_set_client_id(o, id);
  /* Within mosquitto's max_inflight_messages (20). */
  uvmqtt_options_set_max_inflight(o, 20);
  uvmqtt_options_set_max_queued(o, 200000, 0, UVMQTT_QUEUE_REFUSE_NEW);
  CHECK(uvmqtt_client_new(loop, o, &c) == 0, "client_new");
  uvmqtt_options_del(o);
  return c;
}

static const char *broker_conf = "max_inflight_messages 20\n"
                                 "max_queued_messages 0\n";

/* ---- producers
 * ---------------------------------------------------------------- */

typedef struct {
  uvmqtt_client_t *c;
  int index;
  int count;
  uv_thread_t tid;
  int failed;
} producer_t;

static uv_thread_t loop_thread;
static bool loop_thread_known;
static atomic_long completed, completion_errors, wrong_thread;

static void on_done(uvmqtt_client_t *c, const uvmqtt_pub_result_t *res,
                    void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  (void)c;
  (void)id;
  (void)arg;
  if (status < 0)
    atomic_fetch_add(&completion_errors, 1);
  if (loop_thread_known) {
    uv_thread_t self = uv_thread_self();
    if (!uv_thread_equal(&self, &loop_thread))
      atomic_fetch_add(&wrong_thread, 1);
  }
  atomic_fetch_add(&completed, 1);
}

static void produce(void *arg) {
  producer_t *p = arg;
  char topic[32], payload[32];
  snprintf(topic, sizeof(topic), "ts/%d", p->index);
  for (int i = 0; i < p->count; i++) {
    int n = snprintf(payload, sizeof(payload), "%d:%d", p->index, i);
    int rc = uvmqtt_client_publish_threadsafe(p->c, topic, payload, (size_t)n,
                                              1, false, on_done, p);
    if (rc != 0)
      p->failed++;
  }
}

static int run_until_count(uv_loop_t *loop, counter_t *k, long want,
                           unsigned timeout_ms) {
  uint64_t end = tu_now_ms() + timeout_ms;
  while (tu_now_ms() < end) {
    if (atomic_load(&completed) >= want && atomic_load(&k->received) >= want)
      return 0;
    uv_run(loop, UV_RUN_ONCE);
  }
  return -1;
}

static void verify(counter_t *k, int producers, int per) {
  CHECK(k->bad == 0 && k->dups == 0 && k->disorder == 0,
        "bad %ld dups %ld out of order %ld", k->bad, k->dups, k->disorder);
  for (int t = 0; t < producers; t++)
    for (int s = 0; s < per; s++)
      CHECK(k->seen[t][s] == 1, "message %d:%d seen %d times", t, s,
            k->seen[t][s]);
  CHECK(atomic_load(&completion_errors) == 0, "%ld completion errors",
        (long)atomic_load(&completion_errors));
  CHECK(atomic_load(&wrong_thread) == 0, "%ld callbacks off the loop thread",
        (long)atomic_load(&wrong_thread));
}

static volatile int closed_count;
static void client_closed(uvmqtt_client_t *c) {
  (void)c;
  closed_count++;
}
static void bridge_closed(uvmqtt_bridge_t *b, void *arg) {
  (void)b;
  *(volatile int *)arg = 1;
}

static void case_threadsafe(void) {
  static counter_t k;
  uv_loop_t loop;
  volatile int pub_up = 0, bclosed = 0;
  char uri[64];
  CHECK(uv_loop_init(&loop) == 0, "loop");
  loop_thread = uv_thread_self();
  loop_thread_known = true;
  for (int t = 0; t < MAXP; t++)
    k.last[t] = -1;
  snprintf(uri, sizeof(uri), "mqtt://127.0.0.1:%d", broker.port);
  uvmqtt_client_t *s = new_client(&loop, "ts-sub");
  uvmqtt_client_t *p = new_client(&loop, "ts-pub");
  uvmqtt_client_on_connect(s, sub_connected, &k);
  uvmqtt_client_on_message(s, count_msg, &k);
  uvmqtt_client_on_connect(p, flag_connected, (void *)&pub_up);
  CHECK(uvmqtt_client_connect_uri(s, uri) == 0, "connect");
  CHECK(uvmqtt_client_connect_uri(p, uri) == 0, "connect");
  CHECK(tu_run_until(&loop, &k.subscribed, 10000) == 0, "subscribed");
  CHECK(tu_run_until(&loop, &pub_up, 10000) == 0, "publisher up");

  /* No bridge yet: refused at once. */
  CHECK(uvmqtt_client_publish_threadsafe(p, "ts/x", "", 0, 1, false, NULL,
                                         NULL) == UVMQTT_ECLOSED,
        "publish without a bridge");
  uvmqtt_bridge_t *b, *b2;
  CHECK(uvmqtt_bridge_new(p, &b) == 0, "bridge");
  CHECK(uvmqtt_bridge_new(p, &b2) == UVMQTT_EEXIST, "second bridge");
  CHECK(uvmqtt_client_publish_threadsafe(p, "ts/#", "", 0, 1, false, NULL,
                                         NULL) == UVMQTT_ETOPIC,
        "wildcard topic");
  CHECK(uvmqtt_client_publish_threadsafe(p, "ts/x", "", 0, 3, false, NULL,
                                         NULL) == UVMQTT_EQOS,
        "QoS 3");

  producer_t prod[MAXP];
  uint64_t t0 = tu_now_ms();
  for (int t = 0; t < MAXP; t++) {
    prod[t] = (producer_t){p, t, PER, 0, 0};
    CHECK(uv_thread_create(&prod[t].tid, produce, &prod[t]) == 0, "thread");
  }
  int rc = run_until_count(&loop, &k, (long)MAXP * PER, 90000);
  for (int t = 0; t < MAXP; t++) {
    uv_thread_join(&prod[t].tid);
    CHECK(prod[t].failed == 0, "producer %d: %d refused", t, prod[t].failed);
  }
  CHECK(rc == 0, "only %ld completed, %ld received",
        (long)atomic_load(&completed), (long)atomic_load(&k.received));
  fprintf(stderr, "threadsafe: %d messages in %llu ms\n", MAXP * PER,
          (unsigned long long)(tu_now_ms() - t0));
  verify(&k, MAXP, PER);

  uvmqtt_bridge_close(b, bridge_closed, (void *)&bclosed);
  CHECK(uvmqtt_client_publish_threadsafe(p, "ts/x", "", 0, 1, false, NULL,
                                         NULL) == UVMQTT_ECLOSED,
        "publish after bridge close");
  CHECK(tu_run_until(&loop, &bclosed, 5000) == 0, "bridge closed");
  uvmqtt_client_close(p, client_closed);
  uvmqtt_client_close(s, client_closed);
  CHECK(tu_loop_close(&loop, 5000) == 0, "handles leaked");
  CHECK(closed_count == 2, "close callbacks");
}

/* ---- the loop in its own thread -------------------------------------------
 */

typedef struct {
  uvmqtt_client_t *p, *s;
  uvmqtt_bridge_t *b;
  volatile int bclosed;
} lt_ctx_t;

static void lt_close(void *arg) {
  lt_ctx_t *x = arg;
  uvmqtt_bridge_close(x->b, bridge_closed, (void *)&x->bclosed);
  uvmqtt_client_close(x->p, client_closed);
  uvmqtt_client_close(x->s, client_closed);
}

static void lt_record_thread(void *arg) {
  (void)arg;
  loop_thread = uv_thread_self();
  loop_thread_known = true;
}

typedef struct {
  counter_t *k;
  volatile int *pub_up;
  int up;
} lt_peek_t;

static void lt_peek(void *arg) {
  lt_peek_t *pk = arg;
  pk->up = pk->k->subscribed && *pk->pub_up;
}

static void case_loopthread(void) {
  static counter_t k;
  uv_loop_t loop;
  volatile int pub_up = 0;
  lt_ctx_t x;
  char uri[64];
  enum { N = 2, PER2 = 2000 };
  memset(&x, 0, sizeof(x));
  CHECK(uv_loop_init(&loop) == 0, "loop");
  for (int t = 0; t < MAXP; t++)
    k.last[t] = -1;
  snprintf(uri, sizeof(uri), "mqtt://127.0.0.1:%d", broker.port);
  x.s = new_client(&loop, "lt-sub");
  x.p = new_client(&loop, "lt-pub");
  uvmqtt_client_on_connect(x.s, sub_connected, &k);
  uvmqtt_client_on_message(x.s, count_msg, &k);
  uvmqtt_client_on_connect(x.p, flag_connected, (void *)&pub_up);
  CHECK(uvmqtt_bridge_new(x.p, &x.b) == 0, "bridge before the loop runs");
  CHECK(uvmqtt_client_connect_uri(x.s, uri) == 0, "connect");
  CHECK(uvmqtt_client_connect_uri(x.p, uri) == 0, "connect");

  uvmqtt_thread_t *th;
  CHECK(uvmqtt_thread_start(&loop, &th) == 0, "thread start");
  CHECK(uvmqtt_thread_call(th, lt_record_thread, NULL) == 0, "call");
  /* The flags belong to the loop thread: read them there. */
  lt_peek_t pk = {&k, &pub_up, 0};
  uint64_t end = tu_now_ms() + 10000;
  do {
    uv_sleep(5);
    CHECK(uvmqtt_thread_call(th, lt_peek, &pk) == 0, "call");
  } while (!pk.up && tu_now_ms() < end);
  CHECK(pk.up, "clients up");

  producer_t prod[N];
  for (int t = 0; t < N; t++) {
    prod[t] = (producer_t){x.p, t, PER2, 0, 0};
    CHECK(uv_thread_create(&prod[t].tid, produce, &prod[t]) == 0, "thread");
  }
  for (int t = 0; t < N; t++) {
    uv_thread_join(&prod[t].tid);
    CHECK(prod[t].failed == 0, "producer %d: %d refused", t, prod[t].failed);
  }
  end = tu_now_ms() + 60000;
  while ((atomic_load(&completed) < N * PER2 ||
          atomic_load(&k.received) < N * PER2) &&
         tu_now_ms() < end)
    uv_sleep(5);
  CHECK(atomic_load(&completed) == N * PER2 &&
            atomic_load(&k.received) == N * PER2,
        "completed %ld received %ld", (long)atomic_load(&completed),
        (long)atomic_load(&k.received));
  CHECK(uvmqtt_thread_call(th, lt_close, &x) == 0, "call");
  CHECK(uvmqtt_thread_stop(th) == 0, "thread stop");
  loop_thread_known = false;
  /* The loop is ours again: let the closes finish here. */
  CHECK(tu_loop_close(&loop, 5000) == 0, "handles leaked");
  CHECK(x.bclosed && closed_count == 2, "close callbacks");
  verify(&k, N, PER2);
}

/* ---- one-shot
 * ---------------------------------------------------------------- */

typedef struct {
  volatile int done;
  int status;
} os_result_t;

static void os_done(int status, void *arg) {
  os_result_t *r = arg;
  r->status = status;
  r->done = 1;
}

typedef struct {
  int found[8];
  volatile int n;
  volatile int subscribed;
} ret_t;

static void ret_msg(uvmqtt_client_t *c, const uvmqtt_message_t *m, void *arg) {
  ret_t *r = arg;
  unsigned i;
  char want[16];
  (void)c;
  if (!m->retain || sscanf(m->topic, "os/%u", &i) != 1 || i >= 8)
    return;
  snprintf(want, sizeof(want), "v%u", i);
  if (m->payload_len == strlen(want) && !memcmp(m->payload, want, 2))
    r->found[i]++;
  r->n++;
}

static void ret_subscribed(uvmqtt_client_t *c, const uvmqtt_sub_result_t *res,
                           void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  const uint8_t *codes = res->codes;
  size_t n = res->count;
  const uvmqtt_props_t *p = res->props;
  (void)c;
  (void)id;
  (void)codes;
  (void)n;
  (void)p;
  CHECK(status == 0, "subscribe");
  ((ret_t *)arg)->subscribed = 1;
}

static void ret_connected(uvmqtt_client_t *c, int status,
                          const uvmqtt_connack_t *ack, void *arg) {
  (void)ack;
  CHECK(status == 0, "connect");
  CHECK(uvmqtt_subscribe(c, "os/#", 1, ret_subscribed, arg) > 0, "subscribe");
}

static void case_oneshot(void) {
  uv_loop_t loop;
  char uri[64], bad_uri[64];
  os_result_t r = {0, 1};
  CHECK(uv_loop_init(&loop) == 0, "loop");
  snprintf(uri, sizeof(uri), "mqtt://127.0.0.1:%d", broker.port);
  snprintf(bad_uri, sizeof(bad_uri), "mqtt://127.0.0.1:%d", tu_free_port());

  /* Async, several messages at every QoS. */
  uvmqtt_oneshot_msg_t msgs[3];
  memset(msgs, 0, sizeof(msgs));
  static const char *topics[] = {"os/0", "os/1", "os/2"};
  static const char *payloads[] = {"v0", "v1", "v2"};
  for (int i = 0; i < 3; i++) {
    msgs[i].topic = topics[i];
    msgs[i].payload = payloads[i];
    msgs[i].payload_len = 2;
    msgs[i].qos = i;
    msgs[i].retain = true;
  }
  CHECK(uvmqtt_publish_multiple(&loop, NULL, uri, msgs, 3, os_done, &r) == 0,
        "publish_multiple");
  CHECK(tu_run_until(&loop, &r.done, 10000) == 0, "multiple finished");
  CHECK(r.status == 0, "multiple: %s", uvmqtt_strerror(r.status));

  /* Async single. */
  r.done = 0;
  r.status = 1;
  CHECK(uvmqtt_publish_single(&loop, NULL, uri, "os/3", "v3", 2, 1, true,
                              os_done, &r) == 0,
        "publish_single");
  CHECK(tu_run_until(&loop, &r.done, 10000) == 0, "single finished");
  CHECK(r.status == 0, "single: %s", uvmqtt_strerror(r.status));

  /* Sync forms (private loops). */
  CHECK(uvmqtt_publish_single_sync(NULL, uri, "os/4", "v4", 2, 2, true) == 0,
        "single_sync");
  msgs[0].topic = "os/5";
  msgs[0].payload = "v5";
  msgs[0].qos = 1;
  CHECK(uvmqtt_publish_multiple_sync(NULL, uri, msgs, 1) == 0, "multiple_sync");

  /* Errors: nothing listening, bad topic, bad arguments. */
  int rc = uvmqtt_publish_single_sync(NULL, bad_uri, "os/x", "x", 1, 1, false);
  CHECK(rc == UV_ECONNREFUSED, "closed port: %s", uvmqtt_err_name(rc));
  r.done = 0;
  CHECK(uvmqtt_publish_single(&loop, NULL, bad_uri, "os/x", "x", 1, 0, false,
                              os_done, &r) == 0,
        "async to a closed port starts");
  CHECK(tu_run_until(&loop, &r.done, 15000) == 0, "closed port finished");
  CHECK(r.status == UV_ECONNREFUSED, "async closed port: %s",
        uvmqtt_err_name(r.status));
  CHECK(uvmqtt_publish_single_sync(NULL, uri, "os/#", "x", 1, 1, false) ==
            UVMQTT_ETOPIC,
        "wildcard");
  CHECK(uvmqtt_publish_single_sync(NULL, "bogus://x", "os/x", "x", 1, 1,
                                   false) == UVMQTT_EURI,
        "bad uri");
  CHECK(uvmqtt_publish_single(&loop, NULL, uri, "os/x", "x", 1, 1, false, NULL,
                              NULL) == UVMQTT_EINVAL,
        "no callback");

  /* Every retained message arrived at its topic. */
  ret_t got;
  memset(&got, 0, sizeof(got));
  uvmqtt_client_t *c = new_client(&loop, "os-check");
  uvmqtt_client_on_connect(c, ret_connected, &got);
  uvmqtt_client_on_message(c, ret_msg, &got);
  CHECK(uvmqtt_client_connect_uri(c, uri) == 0, "connect");
  CHECK(tu_run_until(&loop, &got.subscribed, 10000) == 0, "subscribed");
  tu_run_for(&loop, 300);
  for (int i = 0; i < 6; i++)
    CHECK(got.found[i] == 1, "retained os/%d seen %d times", i, got.found[i]);
  uvmqtt_client_close(c, NULL);
  CHECK(tu_loop_close(&loop, 5000) == 0, "handles leaked");
}

/* ---- one-shot subscribing ----------------------------------------------- */

typedef struct {
  int done, status, calls;
  size_t count;
  char topics[4][16];
  bool retain[4];
} ss_result_t;

static void ss_collected(int status, const uvmqtt_message_t *const *msgs,
                         size_t n, void *arg) {
  ss_result_t *r = arg;
  r->status = status;
  r->count = n;
  for (size_t i = 0; i < n && i < 4; i++) {
    snprintf(r->topics[i], sizeof(r->topics[i]), "%.*s",
             (int)msgs[i]->topic_len, msgs[i]->topic);
    r->retain[i] = msgs[i]->retain;
  }
  r->calls++;
  r->done = 1;
}

static uvmqtt_sub_job_t *ss_job;

static void ss_each(uvmqtt_client_t *c, const uvmqtt_message_t *m, void *arg) {
  ss_result_t *r = arg;
  (void)c;
  CHECK(r->count < 4, "message after stop");
  snprintf(r->topics[r->count], sizeof(r->topics[0]), "%.*s", (int)m->topic_len,
           m->topic);
  if (++r->count == 2)
    uvmqtt_subscribe_callback_stop(ss_job);
}

static void ss_stopped(int status, void *arg) {
  ss_result_t *r = arg;
  r->status = status;
  r->calls++;
  r->done = 1;
}

static void ss_sent(int status, void *arg) {
  (void)status;
  (void)arg;
}

static void case_subscribe(void) {
  uv_loop_t loop;
  char uri[64], bad_uri[64];
  const char *filters[] = {"ss/r/#"}, *live[] = {"ss/live"};
  ss_result_t r;
  CHECK(uv_loop_init(&loop) == 0, "loop");
  snprintf(uri, sizeof(uri), "mqtt://127.0.0.1:%d", broker.port);
  snprintf(bad_uri, sizeof(bad_uri), "mqtt://127.0.0.1:%d", tu_free_port());
  CHECK(uvmqtt_publish_single_sync(NULL, uri, "ss/r/1", "a", 1, 1, true) == 0,
        "retained 1");
  CHECK(uvmqtt_publish_single_sync(NULL, uri, "ss/r/2", "b", 1, 1, true) == 0,
        "retained 2");

  /* Async: the two retained messages. */
  memset(&r, 0, sizeof(r));
  CHECK(uvmqtt_subscribe_simple(&loop, NULL, uri, filters, 1, 1, 2, true,
                                ss_collected, &r) == 0,
        "subscribe_simple");
  CHECK(tu_run_until(&loop, &r.done, 10000) == 0, "simple finished");
  CHECK(r.status == 0 && r.count == 2 && r.calls == 1, "simple: %s, %zu",
        uvmqtt_strerror(r.status), r.count);
  CHECK(r.retain[0] && r.retain[1], "retained flags");
  CHECK((!strcmp(r.topics[0], "ss/r/1") && !strcmp(r.topics[1], "ss/r/2")) ||
            (!strcmp(r.topics[0], "ss/r/2") && !strcmp(r.topics[1], "ss/r/1")),
        "topics %s %s", r.topics[0], r.topics[1]);

  /* Retained ones skipped: only a live message counts. */
  memset(&r, 0, sizeof(r));
  CHECK(uvmqtt_publish_single_sync(NULL, uri, "ss/live", "r", 1, 1, true) == 0,
        "retained live");
  CHECK(uvmqtt_subscribe_simple(&loop, NULL, uri, live, 1, 0, 1, false,
                                ss_collected, &r) == 0,
        "subscribe_simple live");
  for (int i = 0; i < 100 && !r.done; i++) {
    CHECK(uvmqtt_publish_single(&loop, NULL, uri, "ss/live", "x", 1, 0, false,
                                ss_sent, NULL) == 0,
          "live publish");
    tu_run_for(&loop, 50);
  }
  CHECK(r.done && r.status == 0 && r.count == 1 && !r.retain[0],
        "live message");

  /* Blocking form. */
  uvmqtt_message_t **msgs = NULL;
  int n =
      uvmqtt_subscribe_simple_sync(NULL, uri, filters, 1, 2, 2, true, &msgs);
  CHECK(n == 2 && msgs && msgs[0]->payload_len == 1, "sync: %d", n);
  uvmqtt_messages_free(msgs, (size_t)n);

  /* A callback per message until stopped (from inside it). */
  memset(&r, 0, sizeof(r));
  CHECK(uvmqtt_subscribe_callback(&loop, NULL, uri, filters, 1, 1, true,
                                  ss_each, ss_stopped, &r, &ss_job) == 0,
        "subscribe_callback");
  CHECK(tu_run_until(&loop, &r.done, 10000) == 0, "callback finished");
  CHECK(r.status == 0 && r.count == 2 && r.calls == 1, "callback: %s, %zu",
        uvmqtt_strerror(r.status), r.count);

  /* Errors. */
  memset(&r, 0, sizeof(r));
  CHECK(uvmqtt_subscribe_simple(&loop, NULL, bad_uri, filters, 1, 1, 1, true,
                                ss_collected, &r) == 0,
        "closed port starts");
  CHECK(tu_run_until(&loop, &r.done, 15000) == 0, "closed port finished");
  CHECK(r.status == UV_ECONNREFUSED && r.count == 0, "closed port: %s",
        uvmqtt_err_name(r.status));
  CHECK(uvmqtt_subscribe_simple(&loop, NULL, uri, filters, 1, 1, 0, true,
                                ss_collected, &r) == UVMQTT_EINVAL,
        "count 0");
  const char *bad[] = {"ss/#/x"};
  CHECK(uvmqtt_subscribe_simple(&loop, NULL, uri, bad, 1, 1, 1, true,
                                ss_collected, &r) == UVMQTT_EFILTER,
        "bad filter");
  CHECK(uvmqtt_subscribe_simple_sync(NULL, "bogus://x", filters, 1, 1, 1, true,
                                     &msgs) == UVMQTT_EURI &&
            msgs == NULL,
        "bad uri");
  CHECK(uvmqtt_subscribe_callback(&loop, NULL, uri, filters, 1, 3, true,
                                  ss_each, ss_stopped, &r,
                                  &ss_job) == UVMQTT_EQOS,
        "bad qos");
  CHECK(tu_loop_close(&loop, 5000) == 0, "handles leaked");
}

static void stop_broker(void) {
  if (broker.pid > 0)
    tu_broker_stop(&broker); /* also after a failed CHECK */
}

int main(int argc, char **argv) {
  const char *which = argc > 1 ? argv[1] : "";
  atexit(stop_broker);
  if (tu_broker_start(&broker, 0, broker_conf) != 0) {
    fprintf(stderr, "cannot start mosquitto\n");
    return 1;
  }
  if (!strcmp(which, "threadsafe"))
    case_threadsafe();
  else if (!strcmp(which, "loopthread"))
    case_loopthread();
  else if (!strcmp(which, "oneshot"))
    case_oneshot();
  else if (!strcmp(which, "subscribe"))
    case_subscribe();
  else {
    fprintf(stderr,
            "usage: test_helpers threadsafe|loopthread|oneshot|subscribe\n");
    tu_broker_cleanup(&broker);
    return 1;
  }
  tu_broker_cleanup(&broker);
  broker.pid = 0;
  fprintf(stderr, "%s: ok\n", which);
  return 0;
}
