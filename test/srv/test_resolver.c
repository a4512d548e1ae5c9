/* Resolver tests: literal addresses, uv_getaddrinfo, and (with c-ares) SRV
 * and address lookups against a private dnsmasq on loopback, timeouts
 * against a server that never answers, cancel and close with requests in
 * flight. Every test ends by checking that its loop closes cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "dnstest.h"
#include "resolve/resolve.h"
#include "testutil.h"
#include "uvmqtt/alloc.h"
#include "uvmqtt/errors.h"
#include "uvmqtt_config.h"

#define MAXR 16

typedef struct {
  int calls;
  int status;
  int in_start;     /* set around the start call */
  int during_start; /* the callback ran inside the start call */
  size_t n;
  struct sockaddr_storage a[MAXR];
  uint64_t t_done;
  uvmqtt_resolver_t *close_me; /* close this resolver from the callback */
  volatile int *done_flag;
} addr_res_t;

typedef struct {
  int calls;
  int status;
  int in_start;
  int during_start;
  size_t n;
  char host[MAXR][64];
  uint16_t port[MAXR], prio[MAXR], weight[MAXR];
  uint64_t t_done;
  volatile int *done_count;
} srv_res_t;

static void on_addr(int status, const struct sockaddr_storage *addrs, size_t n,
                    void *arg) {
  addr_res_t *r = arg;
  r->calls++;
  r->during_start |= r->in_start;
  r->status = status;
  r->t_done = tu_now_ms();
  if (status == 0) {
    assert_non_null(addrs);
    assert_true(n >= 1);
  }
  r->n = n < MAXR ? n : MAXR;
  for (size_t i = 0; i < r->n; i++)
    r->a[i] = addrs[i];
  if (r->done_flag)
    *r->done_flag = 1;
  if (r->close_me)
    uvmqtt__resolver_close(r->close_me, NULL, NULL);
}

static void on_srv(int status, const uvmqtt_srv_target_t *t, size_t n,
                   void *arg) {
  srv_res_t *r = arg;
  r->calls++;
  r->during_start |= r->in_start;
  r->status = status;
  r->t_done = tu_now_ms();
  r->n = n < MAXR ? n : MAXR;
  for (size_t i = 0; i < r->n; i++) {
    snprintf(r->host[i], sizeof(r->host[i]), "%s", t[i].host);
    r->port[i] = t[i].port;
    r->prio[i] = t[i].priority;
    r->weight[i] = t[i].weight;
  }
  if (r->done_count)
    (*r->done_count)++;
}

static void on_closed(void *arg) {
  (*(volatile int *)arg)++;
}

/* Closes r, waits for close_cb (exactly once), then closes the loop. */
static void close_all(uv_loop_t *loop, uvmqtt_resolver_t *r) {
  volatile int closed = 0;
  uvmqtt__resolver_close(r, on_closed, (void *)&closed);
  uvmqtt__resolver_close(r, on_closed, (void *)&closed); /* no-op */
  assert_int_equal(tu_run_until(loop, &closed, 5000), 0);
  tu_run_for(loop, 10);
  assert_int_equal(closed, 1);
  assert_int_equal(tu_loop_close(loop, 5000), 0);
}

static int start_addr(uvmqtt_resolver_t *r, const char *host, uint16_t port,
                      addr_res_t *res, uvmqtt_resolve_req_t **req) {
  res->in_start = 1;
  int rc = uvmqtt__resolve_addr(r, host, port, on_addr, res, req);
  res->in_start = 0;
  return rc;
}

static int start_srv(uvmqtt_resolver_t *r, const char *name, srv_res_t *res,
                     uvmqtt_resolve_req_t **req) {
  res->in_start = 1;
  int rc = uvmqtt__resolve_srv(r, name, on_srv, res, req);
  res->in_start = 0;
  return rc;
}

static int wait_addr(uv_loop_t *loop, addr_res_t *res, unsigned ms) {
  volatile int flag = 0;
  res->done_flag = &flag;
  int rc = tu_run_until(loop, &flag, ms);
  res->done_flag = NULL;
  return rc;
}

#if UVMQTT_HAVE_SRV
static int wait_srv(uv_loop_t *loop, srv_res_t *res, unsigned ms) {
  volatile int count = 0;
  res->done_count = &count;
  int rc = tu_run_until(loop, &count, ms);
  res->done_count = NULL;
  return rc;
}
#endif

static int is_v4(const struct sockaddr_storage *a, const char *ip,
                 uint16_t port) {
  const struct sockaddr_in *s = (const struct sockaddr_in *)a;
  struct in_addr want;
  inet_pton(AF_INET, ip, &want);
  return a->ss_family == AF_INET && s->sin_addr.s_addr == want.s_addr &&
         ntohs(s->sin_port) == port;
}

static int is_v6(const struct sockaddr_storage *a, const char *ip,
                 uint16_t port) {
  const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)a;
  struct in6_addr want;
  inet_pton(AF_INET6, ip, &want);
  return a->ss_family == AF_INET6 &&
         memcmp(&s->sin6_addr, &want, sizeof(want)) == 0 &&
         ntohs(s->sin6_port) == port;
}

/* ---- without any DNS server ------------------------------------------------
 */

static void test_literal_ipv4_async(void **state) {
  (void)state;
  uv_loop_t loop;
  uvmqtt_resolver_t *r;
  addr_res_t res = {0};
  uvmqtt_resolve_req_t *req = NULL;
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvmqtt__resolver_new(&loop, NULL, 1000, &r), 0);
  assert_int_equal(start_addr(r, "127.0.0.1", 1883, &res, &req), 0);
  assert_non_null(req);
  assert_int_equal(res.calls, 0); /* never from inside the call */
  assert_int_equal(wait_addr(&loop, &res, 1000), 0);
  assert_int_equal(res.calls, 1);
  assert_int_equal(res.during_start, 0);
  assert_int_equal(res.status, 0);
  assert_int_equal(res.n, 1);
  assert_true(is_v4(&res.a[0], "127.0.0.1", 1883));
  close_all(&loop, r);
}

static void test_literal_ipv6(void **state) {
  (void)state;
  uv_loop_t loop;
  uvmqtt_resolver_t *r;
  addr_res_t a = {0}, b = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvmqtt__resolver_new(&loop, NULL, 1000, &r), 0);
  assert_int_equal(start_addr(r, "[::1]", 8883, &a, NULL), 0);
  assert_int_equal(start_addr(r, "::1", 1, &b, NULL), 0);
  assert_int_equal(wait_addr(&loop, &b, 1000), 0);
  tu_run_for(&loop, 10);
  assert_int_equal(a.calls, 1);
  assert_int_equal(b.calls, 1);
  assert_int_equal(a.status, 0);
  assert_true(is_v6(&a.a[0], "::1", 8883));
  assert_true(is_v6(&b.a[0], "::1", 1));
  close_all(&loop, r);
}

static void test_system_localhost(void **state) {
  (void)state;
  uv_loop_t loop;
  uvmqtt_resolver_t *r;
  addr_res_t res = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvmqtt__resolver_new(&loop, NULL, 3000, &r), 0);
  assert_int_equal(start_addr(r, "localhost", 1234, &res, NULL), 0);
  assert_int_equal(wait_addr(&loop, &res, 4000), 0);
  assert_int_equal(res.calls, 1);
  assert_int_equal(res.status, 0);
  for (size_t i = 0; i < res.n; i++)
    assert_true(is_v4(&res.a[i], "127.0.0.1", 1234) ||
                is_v6(&res.a[i], "::1", 1234));
  close_all(&loop, r);
}

static void test_bad_arguments(void **state) {
  (void)state;
  uv_loop_t loop;
  uvmqtt_resolver_t *r = NULL;
  addr_res_t res = {0};
  srv_res_t sres = {0};
  char longname[300];
  memset(longname, 'a', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvmqtt__resolver_new(NULL, NULL, 0, &r), UVMQTT_EINVAL);
  assert_int_equal(uvmqtt__resolver_new(&loop, "", 0, &r), UVMQTT_EINVAL);
  assert_null(r);
#if UVMQTT_HAVE_SRV
  assert_int_equal(uvmqtt__resolver_new(&loop, "not an address", 0, &r),
                   UVMQTT_EINVAL);
  assert_null(r);
#else
  assert_int_equal(uvmqtt__resolver_new(&loop, "127.0.0.1:53", 0, &r),
                   UVMQTT_ENOTSUP);
  assert_null(r);
#endif
  assert_int_equal(uvmqtt__resolver_new(&loop, NULL, 0, &r), 0);
  assert_int_equal(start_addr(r, NULL, 1, &res, NULL), UVMQTT_EINVAL);
  assert_int_equal(start_addr(r, "", 1, &res, NULL), UVMQTT_EINVAL);
  assert_int_equal(start_addr(r, "[]", 1, &res, NULL), UVMQTT_EINVAL);
  assert_int_equal(start_addr(r, "a:b", 1, &res, NULL), UVMQTT_EINVAL);
  assert_int_equal(start_addr(r, longname, 1, &res, NULL), UVMQTT_EINVAL);
  assert_int_equal(uvmqtt__resolve_addr(r, "127.0.0.1", 1, NULL, NULL, NULL),
                   UVMQTT_EINVAL);
  assert_int_equal(start_srv(r, "", &sres, NULL), UVMQTT_EINVAL);
  assert_int_equal(start_srv(r, longname, &sres, NULL), UVMQTT_EINVAL);
#if !UVMQTT_HAVE_SRV
  assert_int_equal(start_srv(r, "_mqtt._tcp.example.test", &sres, NULL),
                   UVMQTT_ENOTSUP);
#endif
  tu_run_for(&loop, 20);
  assert_int_equal(res.calls, 0); /* an error return never calls back */
  assert_int_equal(sres.calls, 0);
  close_all(&loop, r);
}

static void test_cancel_literal(void **state) {
  (void)state;
  uv_loop_t loop;
  uvmqtt_resolver_t *r;
  addr_res_t a = {0}, b = {0};
  uvmqtt_resolve_req_t *req;
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvmqtt__resolver_new(&loop, NULL, 1000, &r), 0);
  assert_int_equal(start_addr(r, "127.0.0.1", 1, &a, &req), 0);
  assert_int_equal(start_addr(r, "127.0.0.2", 2, &b, NULL), 0);
  uvmqtt__resolve_cancel(req);
  assert_int_equal(wait_addr(&loop, &b, 1000), 0);
  tu_run_for(&loop, 20);
  assert_int_equal(a.calls, 0);
  assert_int_equal(b.calls, 1);
  close_all(&loop, r);
}

static void test_cancel_getaddrinfo(void **state) {
  (void)state;
  uv_loop_t loop;
  uvmqtt_resolver_t *r;
  addr_res_t a = {0};
  uvmqtt_resolve_req_t *req;
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvmqtt__resolver_new(&loop, NULL, 3000, &r), 0);
  assert_int_equal(start_addr(r, "localhost", 1, &a, &req), 0);
  uvmqtt__resolve_cancel(req); /* cancelled in the pool or swallowed */
  tu_run_for(&loop, 200);
  assert_int_equal(a.calls, 0);
  close_all(&loop, r);
}

static void test_close_with_pending(void **state) {
  (void)state;
  uv_loop_t loop;
  uvmqtt_resolver_t *r;
  addr_res_t a = {0}, b = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvmqtt__resolver_new(&loop, NULL, 3000, &r), 0);
  assert_int_equal(start_addr(r, "127.0.0.1", 1, &a, NULL), 0);
  assert_int_equal(start_addr(r, "localhost", 1, &b, NULL), 0);
  close_all(&loop, r); /* the getaddrinfo result is dropped */
  assert_int_equal(a.calls, 0);
  assert_int_equal(b.calls, 0);
}

static void test_close_from_callback(void **state) {
  (void)state;
  uv_loop_t loop;
  uvmqtt_resolver_t *r;
  addr_res_t a = {0}, b = {0};
  volatile int closed = 0;
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvmqtt__resolver_new(&loop, NULL, 1000, &r), 0);
  assert_int_equal(start_addr(r, "127.0.0.1", 1, &a, NULL), 0);
  assert_int_equal(start_addr(r, "127.0.0.2", 1, &b, NULL), 0);
  a.close_me = r; /* closes it while b waits for delivery */
  assert_int_equal(wait_addr(&loop, &a, 1000), 0);
  tu_run_for(&loop, 20);
  assert_int_equal(a.calls, 1);
  assert_int_equal(b.calls, 0);
  (void)closed;
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
}

/* ---- with c-ares and dnsmasq -----------------------------------------------
 */
#if UVMQTT_HAVE_SRV

static dt_dns_t dns;
static int dns_ok;
static char servers[64];

static int group_setup(void **state) {
  (void)state;
  static const char *const args[] = {
      /* Listed out of order on purpose. */
      "--srv-host=_mqtt._tcp.prio.test,p3.test,1003,30,10",
      "--srv-host=_mqtt._tcp.prio.test,p1.test,1001,10,10",
      "--srv-host=_mqtt._tcp.prio.test,p2.test,1002,20,10",
      "--srv-host=_secure-mqtt._tcp.prio.test,p1.test,8883,0,0",
      "--srv-host=_mqtt._tcp.weight.test,wa.test,2001,10,80",
      "--srv-host=_mqtt._tcp.weight.test,wb.test,2002,10,20",
      "--srv-host=_mqtt._tcp.weight.test,wfirst.test,2000,5,0",
      "--srv-host=_mqtt._tcp.dot.test",
      "--host-record=p1.test,127.0.0.1",
      "--host-record=p2.test,127.0.0.1",
      "--host-record=p3.test,127.0.0.1",
      "--host-record=dual.test,127.0.0.2,::1",
  };
  /* 40 targets with long names: the reply does not fit in 512 bytes, so
   * c-ares retries over TCP (connect, write, read through uv_poll). */
  enum { NARGS = sizeof(args) / sizeof(args[0]), NBIG = 40 };
  static char big[NBIG][128];
  const char *all[NARGS + NBIG];
  for (size_t i = 0; i < NARGS; i++)
    all[i] = args[i];
  for (int i = 0; i < NBIG; i++) {
    snprintf(big[i], sizeof(big[i]),
             "--srv-host=_mqtt._tcp.big.test,target-with-a-long-name-%02d.big."
             "test,%d,%d,%d",
             i, 3000 + i, i % 4, 1 + i);
    all[NARGS + i] = big[i];
  }
  if (!dt_dns_available()) {
    fprintf(stderr, "dnsmasq not installed: DNS server tests skipped\n");
    return 0;
  }
  if (dt_dns_start(&dns, all, NARGS + NBIG) != 0)
    return -1;
  snprintf(servers, sizeof(servers), "127.0.0.1:%d", dns.port);
  dns_ok = 1;
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  if (dns_ok)
    dt_dns_stop(&dns);
  return 0;
}

#define NEED_DNS()                                                             \
  do {                                                                         \
    if (!dns_ok)                                                               \
      skip();                                                                  \
  } while (0)

static void test_srv_priority_order(void **state) {
  (void)state;
  NEED_DNS();
  uv_loop_t loop;
  uvmqtt_resolver_t *r;
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvmqtt__resolver_new(&loop, servers, 2000, &r), 0);
  for (int i = 0; i < 20; i++) {
    srv_res_t res = {0};
    assert_int_equal(start_srv(r, "_mqtt._tcp.prio.test", &res, NULL), 0);
    assert_int_equal(wait_srv(&loop, &res, 3000), 0);
    assert_int_equal(res.calls, 1);
    assert_int_equal(res.during_start, 0);
    assert_int_equal(res.status, 0);
    assert_int_equal(res.n, 3);
    assert_string_equal(res.host[0], "p1.test");
    assert_string_equal(res.host[1], "p2.test");
    assert_string_equal(res.host[2], "p3.test");
    assert_int_equal(res.port[0], 1001);
    assert_int_equal(res.prio[2], 30);
    assert_int_equal(res.weight[1], 10);
  }
  srv_res_t tls = {0};
  assert_int_equal(start_srv(r, "_secure-mqtt._tcp.prio.test", &tls, NULL), 0);
  assert_int_equal(wait_srv(&loop, &tls, 3000), 0);
  assert_int_equal(tls.status, 0);
  assert_int_equal(tls.n, 1);
  assert_int_equal(tls.port[0], 8883);
  close_all(&loop, r);
}

static void test_srv_weights_real(void **state) {
  (void)state;
  NEED_DNS();
  enum { N = 300 };
  static srv_res_t res[N];
  volatile int done = 0;
  uv_loop_t loop;
  uvmqtt_resolver_t *r;
  memset(res, 0, sizeof(res));
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvmqtt__resolver_new(&loop, servers, 5000, &r), 0);
  /* In batches of 50 in flight. */
  for (int base = 0; base < N; base += 50) {
    done = 0;
    for (int i = base; i < base + 50; i++) {
      res[i].done_count = &done;
      assert_int_equal(uvmqtt__resolve_srv(r, "_mqtt._tcp.weight.test", on_srv,
                                           &res[i], NULL),
                       0);
    }
    uint64_t end = tu_now_ms() + 5000;
    while (done < 50 && tu_now_ms() < end)
      tu_run_for(&loop, 5);
    assert_int_equal(done, 50);
  }
  int a_first = 0;
  for (int i = 0; i < N; i++) {
    assert_int_equal(res[i].calls, 1);
    assert_int_equal(res[i].status, 0);
    assert_int_equal(res[i].n, 3);
    assert_string_equal(res[i].host[0], "wfirst.test"); /* priority 5 */
    a_first += strcmp(res[i].host[1], "wa.test") == 0;
  }
  /* Expected share 81/101 = 0.80; sd over 300 is 0.023: wide bounds. */
  fprintf(stderr, "weight 80 before weight 20 in %d of %d lookups\n", a_first,
          N);
  assert_true(a_first > N * 65 / 100 && a_first < N * 93 / 100);
  close_all(&loop, r);
}

static void test_srv_errors(void **state) {
  (void)state;
  NEED_DNS();
  uv_loop_t loop;
  uvmqtt_resolver_t *r;
  srv_res_t nx = {0}, nodata = {0}, dot = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvmqtt__resolver_new(&loop, servers, 2000, &r), 0);
  assert_int_equal(start_srv(r, "_mqtt._tcp.nosuch.test", &nx, NULL), 0);
  assert_int_equal(start_srv(r, "p1.test", &nodata, NULL), 0);
  assert_int_equal(start_srv(r, "_mqtt._tcp.dot.test", &dot, NULL), 0);
  assert_int_equal(wait_srv(&loop, &nx, 3000), 0);
  assert_int_equal(wait_srv(&loop, &nodata, 3000) == 0 || nodata.calls, 1);
  assert_int_equal(wait_srv(&loop, &dot, 3000) == 0 || dot.calls, 1);
  assert_int_equal(nx.calls, 1);
  assert_int_equal(nx.status, UVMQTT_EDNS_NXDOMAIN);
  assert_int_equal(nodata.calls, 1);
  assert_int_equal(nodata.status, UVMQTT_EDNS_NODATA);
  assert_int_equal(dot.calls, 1);
  if (dot.status != UVMQTT_EDNS_NODATA)
    dt_dns_dump_log(&dns);
  assert_int_equal(dot.status, UVMQTT_EDNS_NODATA);
  close_all(&loop, r);
}

static void test_addr_custom_server(void **state) {
  (void)state;
  NEED_DNS();
  uv_loop_t loop;
  uvmqtt_resolver_t *r;
  addr_res_t p1 = {0}, dual = {0}, nx = {0}, lit = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvmqtt__resolver_new(&loop, servers, 2000, &r), 0);
  assert_int_equal(start_addr(r, "p1.test", 1883, &p1, NULL), 0);
  assert_int_equal(start_addr(r, "dual.test", 1884, &dual, NULL), 0);
  assert_int_equal(start_addr(r, "nosuch.test", 1, &nx, NULL), 0);
  assert_int_equal(start_addr(r, "10.1.2.3", 7, &lit, NULL), 0);
  assert_int_equal(wait_addr(&loop, &p1, 3000), 0);
  if (!dual.calls)
    assert_int_equal(wait_addr(&loop, &dual, 3000), 0);
  if (!nx.calls)
    assert_int_equal(wait_addr(&loop, &nx, 3000), 0);
  tu_run_for(&loop, 10);
  assert_int_equal(p1.calls, 1);
  assert_int_equal(p1.during_start, 0);
  assert_int_equal(p1.status, 0);
  assert_int_equal(p1.n, 1);
  assert_true(is_v4(&p1.a[0], "127.0.0.1", 1883));
  assert_int_equal(dual.status, 0);
  assert_int_equal(dual.n, 2);
  int v4 = 0, v6 = 0;
  for (size_t i = 0; i < dual.n; i++) {
    v4 += is_v4(&dual.a[i], "127.0.0.2", 1884);
    v6 += is_v6(&dual.a[i], "::1", 1884);
  }
  assert_int_equal(v4, 1);
  assert_int_equal(v6, 1);
  assert_int_equal(nx.calls, 1);
  assert_int_equal(nx.status, UVMQTT_EDNS_NXDOMAIN);
  assert_int_equal(lit.calls, 1);
  assert_true(is_v4(&lit.a[0], "10.1.2.3", 7));
  close_all(&loop, r);
}

/* A reply too big for UDP: c-ares goes over TCP, which needs write
 * interest while connecting. */
static void test_srv_large_reply_tcp(void **state) {
  (void)state;
  NEED_DNS();
  uv_loop_t loop;
  uvmqtt_resolver_t *r;
  srv_res_t res = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvmqtt__resolver_new(&loop, servers, 3000, &r), 0);
  assert_int_equal(start_srv(r, "_mqtt._tcp.big.test", &res, NULL), 0);
  assert_int_equal(wait_srv(&loop, &res, 4000), 0);
  assert_int_equal(res.status, 0);
  assert_int_equal(res.n, MAXR); /* 40 delivered, MAXR kept */
  for (size_t i = 1; i < res.n; i++)
    assert_true(res.prio[i - 1] <= res.prio[i]);
  assert_int_equal(res.prio[0], 0);
  close_all(&loop, r);
}

/* A DNS server that never answers: both lookups fail with
 * UVMQTT_EDNS_TIMEOUT close to the configured time, and a timer on the
 * same loop keeps firing on time meanwhile. */
static void test_timeout_blackhole(void **state) {
  (void)state;
  enum { TIMEOUT = 400 };
  int port;
  int fd = dt_blackhole_open(&port);
  assert_true(fd >= 0);
  char hole[64];
  snprintf(hole, sizeof(hole), "127.0.0.1:%d", port);
  uv_loop_t loop;
  uvmqtt_resolver_t *r;
  srv_res_t s = {0};
  addr_res_t a = {0};
  tu_lag_t lag;
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvmqtt__resolver_new(&loop, hole, TIMEOUT, &r), 0);
  tu_lag_start(&loop, &lag, 10);
  uv_update_time(&loop);
  uint64_t t0 = tu_now_ms();
  assert_int_equal(start_srv(r, "_mqtt._tcp.prio.test", &s, NULL), 0);
  assert_int_equal(start_addr(r, "p1.test", 1, &a, NULL), 0);
  assert_int_equal(wait_srv(&loop, &s, 3000), 0);
  if (!a.calls)
    assert_int_equal(wait_addr(&loop, &a, 3000), 0);
  tu_run_for(&loop, 50);
  tu_lag_stop(&lag);
  assert_int_equal(s.calls, 1);
  assert_int_equal(s.status, UVMQTT_EDNS_TIMEOUT);
  assert_int_equal(a.calls, 1);
  assert_int_equal(a.status, UVMQTT_EDNS_TIMEOUT);
  uint64_t es = s.t_done - t0, ea = a.t_done - t0;
  fprintf(stderr, "timeouts after %llu / %llu ms, max loop lag %llu ms\n",
          (unsigned long long)es, (unsigned long long)ea,
          (unsigned long long)lag.max_lag_ms);
  assert_true(es >= TIMEOUT - 60 && es <= TIMEOUT + 300);
  assert_true(ea >= TIMEOUT - 60 && ea <= TIMEOUT + 300);
  assert_true(lag.ticks >= 30);
  assert_true(lag.max_lag_ms < 100); /* a blocking lookup: >= 400 */
  close_all(&loop, r);
  close(fd);
}

/* Two servers, the first never answers: c-ares moves on to the second
 * within the overall timeout. */
static void test_second_server(void **state) {
  (void)state;
  NEED_DNS();
  int port;
  int fd = dt_blackhole_open(&port);
  assert_true(fd >= 0);
  char list[128];
  snprintf(list, sizeof(list), "127.0.0.1:%d,%s", port, servers);
  uv_loop_t loop;
  uvmqtt_resolver_t *r;
  srv_res_t s = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvmqtt__resolver_new(&loop, list, 3000, &r), 0);
  assert_int_equal(start_srv(r, "_mqtt._tcp.prio.test", &s, NULL), 0);
  assert_int_equal(wait_srv(&loop, &s, 4000), 0);
  assert_int_equal(s.status, 0);
  assert_string_equal(s.host[0], "p1.test");
  close_all(&loop, r);
  close(fd);
}

static void test_cancel_pending_lookups(void **state) {
  (void)state;
  int port;
  int fd = dt_blackhole_open(&port);
  assert_true(fd >= 0);
  char hole[64];
  snprintf(hole, sizeof(hole), "127.0.0.1:%d", port);
  uv_loop_t loop;
  uvmqtt_resolver_t *r;
  srv_res_t s = {0}, s2 = {0};
  addr_res_t a = {0};
  uvmqtt_resolve_req_t *rs, *ra;
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvmqtt__resolver_new(&loop, hole, 300, &r), 0);
  assert_int_equal(start_srv(r, "_mqtt._tcp.prio.test", &s, &rs), 0);
  assert_int_equal(start_addr(r, "p1.test", 1, &a, &ra), 0);
  assert_int_equal(start_srv(r, "_mqtt._tcp.other.test", &s2, NULL), 0);
  tu_run_for(&loop, 50); /* queries are on the wire */
  uvmqtt__resolve_cancel(rs);
  uvmqtt__resolve_cancel(ra);
  tu_run_for(&loop, 600); /* well past the timeout */
  assert_int_equal(s.calls, 0);
  assert_int_equal(a.calls, 0);
  assert_int_equal(s2.calls, 1); /* the one not cancelled still reports */
  assert_int_equal(s2.status, UVMQTT_EDNS_TIMEOUT);
  close_all(&loop, r);
  close(fd);
}

static void test_close_with_pending_cares(void **state) {
  (void)state;
  NEED_DNS();
  int port;
  int fd = dt_blackhole_open(&port);
  assert_true(fd >= 0);
  char list[128];
  snprintf(list, sizeof(list), "127.0.0.1:%d", port);
  for (int variant = 0; variant < 3; variant++) {
    uv_loop_t loop;
    uvmqtt_resolver_t *r;
    srv_res_t s[10];
    addr_res_t a[10];
    memset(s, 0, sizeof(s));
    memset(a, 0, sizeof(a));
    assert_int_equal(uv_loop_init(&loop), 0);
    /* variant 0: nothing answers; 1, 2: dnsmasq answers, closed with
     * answers arriving or already read. */
    assert_int_equal(
        uvmqtt__resolver_new(&loop, variant == 0 ? list : servers, 2000, &r),
        0);
    for (int i = 0; i < 10; i++) {
      assert_int_equal(start_srv(r, "_mqtt._tcp.prio.test", &s[i], NULL), 0);
      assert_int_equal(
          start_addr(r, i % 2 ? "p2.test" : "127.0.0.1", 1, &a[i], NULL), 0);
    }
    if (variant == 1)
      uv_run(&loop, UV_RUN_NOWAIT);
    else if (variant == 2)
      usleep(20000), uv_run(&loop, UV_RUN_NOWAIT);
    else
      tu_run_for(&loop, 30);
    int before = 0;
    for (int i = 0; i < 10; i++)
      before += s[i].calls + a[i].calls;
    close_all(&loop, r);
    int after = 0;
    for (int i = 0; i < 10; i++) {
      after += s[i].calls + a[i].calls;
      assert_true(s[i].calls <= 1 && a[i].calls <= 1);
    }
    assert_int_equal(before, after); /* nothing called after close */
  }
  close(fd);
}

/* The system's configuration: c-ares is set up on the first SRV lookup.
 * Whatever the sandbox's DNS does, exactly one callback comes in time. */
static void test_system_config_srv(void **state) {
  (void)state;
  uv_loop_t loop;
  uvmqtt_resolver_t *r;
  srv_res_t s = {0};
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvmqtt__resolver_new(&loop, NULL, 500, &r), 0);
  uint64_t t0 = tu_now_ms();
  assert_int_equal(start_srv(r, "_mqtt._tcp.nosuch.invalid", &s, NULL), 0);
  assert_int_equal(wait_srv(&loop, &s, 3000), 0);
  tu_run_for(&loop, 20);
  assert_int_equal(s.calls, 1);
  assert_true(s.t_done - t0 <= 500 + 300);
  close_all(&loop, r);
}

#endif /* UVMQTT_HAVE_SRV */

/* ---- allocation-failure sweep ---------------------------------------------
 */

static long alloc_count, alloc_fail_at = -1;

static void *f_malloc(size_t n) {
  return ++alloc_count == alloc_fail_at ? NULL : malloc(n);
}
static void *f_realloc(void *p, size_t n) {
  return ++alloc_count == alloc_fail_at ? NULL : realloc(p, n);
}
static void *f_calloc(size_t c, size_t n) {
  return ++alloc_count == alloc_fail_at ? NULL : calloc(c, n);
}

/* Fails the Nth allocation for every N: every start call either fails
 * cleanly (no callback) or reports exactly once (0 or UVMQTT_ENOMEM, or a
 * timeout when the socket watcher could not be allocated); the loop always
 * closes and ASan finds no leak. */
static void test_alloc_failure_sweep(void **state) {
  (void)state;
  const char *srv = NULL;
#if UVMQTT_HAVE_SRV
  if (dns_ok)
    srv = servers;
#endif
  assert_int_equal(
      uvmqtt_replace_allocator(f_malloc, f_realloc, f_calloc, free), 0);
  long n;
  for (n = 1; n < 200; n++) {
    uv_loop_t loop;
    uvmqtt_resolver_t *r = NULL;
    addr_res_t lit = {0}, name = {0};
    srv_res_t sr = {0};
    int started[3] = {0, 0, 0};
    alloc_count = 0;
    alloc_fail_at = n;
    assert_int_equal(uv_loop_init(&loop), 0);
    int rc = uvmqtt__resolver_new(&loop, srv, 300, &r);
    if (rc != 0) {
      assert_int_equal(rc, UVMQTT_ENOMEM);
      assert_null(r);
      assert_int_equal(tu_loop_close(&loop, 1000), 0);
      continue;
    }
    rc = start_addr(r, "127.0.0.1", 1, &lit, NULL);
    assert_true(rc == 0 || rc == UVMQTT_ENOMEM);
    started[0] = rc == 0;
    rc = start_addr(r, srv ? "p1.test" : "localhost", 2, &name, NULL);
    assert_true(rc == 0 || rc == UVMQTT_ENOMEM);
    started[1] = rc == 0;
    if (srv) {
      rc = start_srv(r, "_mqtt._tcp.prio.test", &sr, NULL);
      assert_true(rc == 0 || rc == UVMQTT_ENOMEM);
      started[2] = rc == 0;
    }
    uint64_t end = tu_now_ms() + 3000;
    while (tu_now_ms() < end &&
           (lit.calls < started[0] || name.calls < started[1] ||
            sr.calls < started[2]))
      tu_run_for(&loop, 5);
    tu_run_for(&loop, 5);
    assert_int_equal(lit.calls, started[0]);
    assert_int_equal(name.calls, started[1]);
    assert_int_equal(sr.calls, started[2]);
    if (started[0])
      assert_true(lit.status == 0 || lit.status == UVMQTT_ENOMEM);
    if (started[1])
      assert_true(name.status == 0 || name.status == UVMQTT_ENOMEM ||
                  name.status == UVMQTT_EDNS_TIMEOUT);
    if (started[2])
      assert_true(sr.status == 0 || sr.status == UVMQTT_ENOMEM ||
                  sr.status == UVMQTT_EDNS_TIMEOUT);
    close_all(&loop, r);
    if (alloc_count < n)
      break; /* no allocation was failed: every path has been covered */
  }
  alloc_fail_at = -1;
  assert_int_equal(uvmqtt_replace_allocator(malloc, realloc, calloc, free), 0);
  assert_true(n < 200);
  fprintf(stderr, "allocation sweep: %ld points\n", n);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_literal_ipv4_async),
    cmocka_unit_test(test_literal_ipv6),
    cmocka_unit_test(test_system_localhost),
    cmocka_unit_test(test_bad_arguments),
    cmocka_unit_test(test_cancel_literal),
    cmocka_unit_test(test_cancel_getaddrinfo),
    cmocka_unit_test(test_close_with_pending),
    cmocka_unit_test(test_close_from_callback),
#if UVMQTT_HAVE_SRV
    cmocka_unit_test(test_srv_priority_order),
    cmocka_unit_test(test_srv_weights_real),
    cmocka_unit_test(test_srv_errors),
    cmocka_unit_test(test_srv_large_reply_tcp),
    cmocka_unit_test(test_addr_custom_server),
    cmocka_unit_test(test_timeout_blackhole),
    cmocka_unit_test(test_second_server),
    cmocka_unit_test(test_cancel_pending_lookups),
    cmocka_unit_test(test_close_with_pending_cares),
    cmocka_unit_test(test_system_config_srv),
#endif
    cmocka_unit_test(test_alloc_failure_sweep),
  };
#if UVMQTT_HAVE_SRV
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
#else
  return cmocka_run_group_tests(tests, NULL, NULL);
#endif
}
