/* Broker failover through the public API: connect_srv against a private
 * dnsmasq whose SRV targets are mosquitto instances (and dead ports) on
 * loopback, and connect_uris lists whose first brokers are down. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "dnstest.h"
#include "testutil.h"
#include "uvmqtt.h"
#include "uvmqtt_config.h"

static tu_broker_t b2, b3;
static int down1, down2;
static dt_dns_t dns;
static int ready;
static char servers[64];

typedef struct {
  int calls, ok, fail;
  int status;
  volatile int done;
  volatile int closed;
  volatile int retried; /* the reconnect hook ran */
} conn_t;

static void on_connect(uvmqtt_client_t *c, int status,
                       const uvmqtt_connack_t *ack, void *arg) {
  conn_t *t = arg;
  (void)c;
  (void)ack;
  t->calls++;
  if (status == 0)
    t->ok++;
  else
    t->fail++;
  t->status = status;
  t->done = 1;
}

static void on_log(uvmqtt_client_t *c, int level, const char *msg, void *arg) {
  (void)c;
  (void)arg;
  fprintf(stderr, "client log %d: %s\n", level, msg);
}

static void on_closed(uvmqtt_client_t *c) {
  conn_t *t = uvmqtt_client_get_data(c);
  t->closed = 1;
}

/* Waits up to 2 s for a broker's log to mention `id`. */
static int broker_saw(const tu_broker_t *b, const char *id) {
  uint64_t end = tu_now_ms() + 2000;
  do {
    if (tu_broker_log_contains(b, id))
      return 1;
    uv_sleep(20);
  } while (tu_now_ms() < end);
  return 0;
}

/* tls_cfg: NULL for plain MQTT; else receives a TLS configuration that
 * the caller frees after the client's close callback. */
static uvmqtt_client_t *make_client_ex(uv_loop_t *loop, const char *id,
                                       conn_t *t, uvmqtt_tls_config_t **tls_cfg,
                                       bool reconnect) {
  uvmqtt_options_t *o;
  uvmqtt_client_t *c;
  assert_int_equal(uvmqtt_options_new(&o), 0);
  assert_int_equal(uvmqtt_options_set_client_id(o, id), 0);
  assert_int_equal(uvmqtt_options_set_dns_servers(o, servers), 0);
  assert_int_equal(uvmqtt_options_set_dns_timeout(o, 2000), 0);
  assert_int_equal(uvmqtt_options_set_connect_timeout(o, 3000), 0);
  /* Unless asked: one pass through the targets, and failover must happen
   * within it. */
  assert_int_equal(uvmqtt_options_set_reconnect(o, reconnect, 100, 1000, 0.0),
                   0);
  if (tls_cfg) {
    assert_int_equal(uvmqtt_tls_config_new(tls_cfg), 0);
    assert_int_equal(uvmqtt_options_set_tls(o, *tls_cfg, true), 0);
  }
  assert_int_equal(uvmqtt_client_new(loop, o, &c), 0);
  uvmqtt_options_del(o);
  uvmqtt_client_set_data(c, t);
  uvmqtt_client_on_connect(c, on_connect, t);
  uvmqtt_client_on_log(c, on_log, NULL, UVMQTT_LOG_INFO);
  return c;
}

static uvmqtt_client_t *make_client(uv_loop_t *loop, const char *id, conn_t *t,
                                    uvmqtt_tls_config_t **tls_cfg) {
  return make_client_ex(loop, id, t, tls_cfg, false);
}

static void finish(uv_loop_t *loop, uvmqtt_client_t *c, conn_t *t) {
  uvmqtt_client_close(c, on_closed);
  assert_int_equal(tu_run_until(loop, &t->closed, 5000), 0);
  assert_int_equal(tu_loop_close(loop, 5000), 0);
}

static int group_setup(void **state) {
  (void)state;
#if !UVMQTT_HAVE_SRV
  return 0;
#else
  static char rec[16][160];
  const char *args[16];
  size_t n = 0;
  if (!dt_dns_available()) {
    fprintf(stderr, "dnsmasq not installed: failover tests skipped\n");
    return 0;
  }
  if (tu_broker_start(&b2, 0, NULL) != 0 || tu_broker_start(&b3, 0, NULL) != 0)
    return -1;
  down1 = tu_free_port(); /* nothing listens on these */
  down2 = tu_free_port();
#define REC(...)                                                               \
  (snprintf(rec[n], sizeof(rec[n]), __VA_ARGS__), args[n] = rec[n], n++)
  /* fo.test: a dead port, then two live brokers; the first live one must
   * win. */
  REC("--srv-host=_mqtt._tcp.fo.test,b3.test,%d,30,10", b3.port);
  REC("--srv-host=_mqtt._tcp.fo.test,b1.test,%d,10,10", down1);
  REC("--srv-host=_mqtt._tcp.fo.test,b2.test,%d,20,10", b2.port);
  /* unres.test: the first target's name does not resolve. */
  REC("--srv-host=_mqtt._tcp.unres.test,b0.test,%d,5,10", b2.port);
  REC("--srv-host=_mqtt._tcp.unres.test,b2.test,%d,10,10", b2.port);
  /* dead.test: every target down. */
  REC("--srv-host=_mqtt._tcp.dead.test,b1.test,%d,10,10", down1);
  REC("--srv-host=_mqtt._tcp.dead.test,b1.test,%d,20,10", down2);
  /* plain.test: only a plaintext service. */
  REC("--srv-host=_mqtt._tcp.plain.test,b2.test,%d,10,10", b2.port);
  REC("--host-record=b1.test,127.0.0.1");
  REC("--host-record=b2.test,127.0.0.1");
  REC("--host-record=b3.test,127.0.0.1");
#undef REC
  if (dt_dns_start(&dns, args, n) != 0)
    return -1;
  snprintf(servers, sizeof(servers), "127.0.0.1:%d", dns.port);
  ready = 1;
  return 0;
#endif
}

static int group_teardown(void **state) {
  (void)state;
  if (ready) {
    dt_dns_stop(&dns);
    tu_broker_cleanup(&b2);
    tu_broker_cleanup(&b3);
  }
  return 0;
}

#define NEED_READY()                                                           \
  do {                                                                         \
    if (!ready)                                                                \
      skip();                                                                  \
  } while (0)

/* The highest-priority target refuses connections: the client ends up on
 * the next one, not the last. */
static void test_srv_failover(void **state) {
  (void)state;
  NEED_READY();
  uv_loop_t loop;
  conn_t t = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_client_t *c = make_client(&loop, "srv-fo-1", &t, NULL);
  assert_int_equal(uvmqtt_client_connect_srv(c, "fo.test"), 0);
  assert_int_equal(tu_run_until(&loop, &t.done, 10000), 0);
  assert_int_equal(t.calls, 1);
  assert_int_equal(t.status, 0);
  assert_true(uvmqtt_client_is_connected(c));
  assert_true(broker_saw(&b2, "srv-fo-1"));
  assert_false(tu_broker_log_contains(&b3, "srv-fo-1"));
  finish(&loop, c, &t);
}

/* Every target down: exactly one connect callback, with a clear error. */
static void test_srv_all_down(void **state) {
  (void)state;
  NEED_READY();
  uv_loop_t loop;
  conn_t t = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_client_t *c = make_client(&loop, "srv-dead-1", &t, NULL);
  assert_int_equal(uvmqtt_client_connect_srv(c, "dead.test"), 0);
  assert_int_equal(tu_run_until(&loop, &t.done, 10000), 0);
  tu_run_for(&loop, 300); /* no second callback */
  assert_int_equal(t.calls, 1);
  fprintf(stderr, "all targets down: %s\n", uvmqtt_err_name(t.status));
  assert_true(t.status < 0);
  assert_false(uvmqtt_client_is_connected(c));
  finish(&loop, c, &t);
}

/* ---- behaviour docs/srv.md asks of the client, pending there ------------
 * Run with --pending; registered as should_fail until the client does it.
 */

/* Every SRV target down: the error names the situation. */
static void test_srv_all_down_exhausted(void **state) {
  (void)state;
  NEED_READY();
  uv_loop_t loop;
  conn_t t = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_client_t *c = make_client(&loop, "srv-dead-2", &t, NULL);
  assert_int_equal(uvmqtt_client_connect_srv(c, "dead.test"), 0);
  assert_int_equal(tu_run_until(&loop, &t.done, 10000), 0);
  tu_run_for(&loop, 100);
  assert_int_equal(t.calls, 1);
  assert_int_equal(t.status, UVMQTT_ESRV_EXHAUSTED);
  finish(&loop, c, &t);
}

/* A target whose name does not resolve is skipped like a dead one. */
static void test_srv_skips_unresolvable_target(void **state) {
  (void)state;
  NEED_READY();
  uv_loop_t loop;
  conn_t t = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_client_t *c = make_client(&loop, "srv-unres-1", &t, NULL);
  assert_int_equal(uvmqtt_client_connect_srv(c, "unres.test"), 0);
  assert_int_equal(tu_run_until(&loop, &t.done, 10000), 0);
  assert_int_equal(t.calls, 1);
  assert_int_equal(t.status, 0);
  assert_true(broker_saw(&b2, "srv-unres-1"));
  finish(&loop, c, &t);
}

static void test_uris_skips_unresolvable(void **state) {
  (void)state;
  NEED_READY();
  uv_loop_t loop;
  conn_t t = {0};
  char u1[64], u2[64];
  snprintf(u1, sizeof(u1), "mqtt://nosuch.test:%d", b2.port);
  snprintf(u2, sizeof(u2), "mqtt://b2.test:%d", b2.port);
  const char *uris[] = {u1, u2};
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_client_t *c = make_client(&loop, "uris-unres-1", &t, NULL);
  assert_int_equal(uvmqtt_client_connect_uris(c, uris, 2), 0);
  assert_int_equal(tu_run_until(&loop, &t.done, 10000), 0);
  assert_int_equal(t.calls, 1);
  assert_int_equal(t.status, 0);
  assert_true(broker_saw(&b2, "uris-unres-1"));
  finish(&loop, c, &t);
}

static void test_srv_nxdomain(void **state) {
  (void)state;
  NEED_READY();
  uv_loop_t loop;
  conn_t t = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_client_t *c = make_client(&loop, "srv-nx-1", &t, NULL);
  assert_int_equal(uvmqtt_client_connect_srv(c, "nosuch.test"), 0);
  assert_int_equal(tu_run_until(&loop, &t.done, 10000), 0);
  tu_run_for(&loop, 100);
  assert_int_equal(t.calls, 1);
  assert_int_equal(t.status, UVMQTT_EDNS_NXDOMAIN);
  finish(&loop, c, &t);
}

static int stop_after_one_retry(uvmqtt_client_t *c, unsigned attempt,
                                void *arg) {
  conn_t *t = arg;
  (void)c;
  if (attempt == 0)
    return 0; /* the first attempt */
  t->retried = 1;
  return 1; /* one retry shows the policy; stop there */
}

/* The retry policy (include/uvmqtt/errors.h): a name that does not exist
 * may appear later, so a client that reconnects tries again after
 * UVMQTT_EDNS_NXDOMAIN. */
static void test_srv_nxdomain_retried(void **state) {
  (void)state;
  NEED_READY();
  uv_loop_t loop;
  conn_t t = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_client_t *c = make_client_ex(&loop, "srv-nx-2", &t, NULL, true);
  assert_int_equal(uvmqtt_client_on_pre_connect(c, stop_after_one_retry, &t),
                   0);
  assert_int_equal(uvmqtt_client_connect_srv(c, "nosuch.test"), 0);
  assert_int_equal(tu_run_until(&loop, &t.retried, 5000), 0);
  assert_int_equal(t.calls, 1);
  assert_int_equal(t.status, UVMQTT_EDNS_NXDOMAIN);
  finish(&loop, c, &t);
}

/* A TLS client must not fall back to _mqtt._tcp (docs/srv.md). */
static void test_srv_tls_no_plaintext_fallback(void **state) {
  (void)state;
  NEED_READY();
#if !UVMQTT_HAVE_TLS
  skip();
#else
  uv_loop_t loop;
  conn_t t = {0};
  uvmqtt_tls_config_t *cfg = NULL;
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_client_t *c = make_client(&loop, "srv-tls-1", &t, &cfg);
  assert_int_equal(uvmqtt_client_connect_srv(c, "plain.test"), 0);
  assert_int_equal(tu_run_until(&loop, &t.done, 10000), 0);
  tu_run_for(&loop, 100);
  assert_int_equal(t.calls, 1);
  assert_int_equal(t.status, UVMQTT_EDNS_NXDOMAIN);
  assert_false(tu_broker_log_contains(&b2, "srv-tls-1"));
  finish(&loop, c, &t);
  uvmqtt_tls_config_free(cfg);
#endif
}

/* A broker list whose first entry is down connects to the second (given
 * by name, resolved through dnsmasq), not the third. */
static void test_uris_failover(void **state) {
  (void)state;
  NEED_READY();
  uv_loop_t loop;
  conn_t t = {0};
  char u1[64], u2[64], u3[64];
  snprintf(u1, sizeof(u1), "mqtt://127.0.0.1:%d", down1);
  snprintf(u2, sizeof(u2), "mqtt://b2.test:%d", b2.port);
  snprintf(u3, sizeof(u3), "mqtt://127.0.0.1:%d", b3.port);
  const char *uris[] = {u1, u2, u3};
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_client_t *c = make_client(&loop, "uris-fo-1", &t, NULL);
  assert_int_equal(uvmqtt_client_connect_uris(c, uris, 3), 0);
  assert_int_equal(tu_run_until(&loop, &t.done, 10000), 0);
  assert_int_equal(t.calls, 1);
  assert_int_equal(t.status, 0);
  assert_true(broker_saw(&b2, "uris-fo-1"));
  assert_false(tu_broker_log_contains(&b3, "uris-fo-1"));
  finish(&loop, c, &t);
}

static void test_uris_all_down(void **state) {
  (void)state;
  NEED_READY();
  uv_loop_t loop;
  conn_t t = {0};
  char u1[64], u2[64];
  snprintf(u1, sizeof(u1), "mqtt://127.0.0.1:%d", down1);
  snprintf(u2, sizeof(u2), "mqtt://b1.test:%d", down2);
  const char *uris[] = {u1, u2};
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_client_t *c = make_client(&loop, "uris-dead-1", &t, NULL);
  assert_int_equal(uvmqtt_client_connect_uris(c, uris, 2), 0);
  assert_int_equal(tu_run_until(&loop, &t.done, 10000), 0);
  tu_run_for(&loop, 300);
  assert_int_equal(t.calls, 1);
  fprintf(stderr, "all brokers down: %s\n", uvmqtt_err_name(t.status));
  assert_true(t.status < 0);
  assert_false(uvmqtt_client_is_connected(c));
  finish(&loop, c, &t);
}

int main(int argc, char **argv) {
  const struct CMUnitTest pending[] = {
      cmocka_unit_test(test_srv_all_down_exhausted),
      cmocka_unit_test(test_srv_skips_unresolvable_target),
      cmocka_unit_test(test_uris_skips_unresolvable),
  };
  if (argc > 1 && strcmp(argv[1], "--pending") == 0)
    return cmocka_run_group_tests(pending, group_setup, group_teardown);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_srv_failover),
      cmocka_unit_test(test_srv_all_down),
      cmocka_unit_test(test_srv_nxdomain),
      cmocka_unit_test(test_srv_nxdomain_retried),
      cmocka_unit_test(test_srv_tls_no_plaintext_fallback),
      cmocka_unit_test(test_uris_failover),
      cmocka_unit_test(test_uris_all_down),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
