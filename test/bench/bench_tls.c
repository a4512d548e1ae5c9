/* TLS benchmark against a private mosquitto (loopback), beside plain TCP:
 *
 *   1. connections established per second for N clients (default 1000),
 *      64 connecting at a time, all sharing one TLS configuration;
 *   2. heap bytes per idle connection (glibc mallinfo2, every allocation
 *      of the process: uvmqtt's and mbedTLS's);
 *   3. QoS 0 throughput: one client publishes 64-byte messages to a topic
 *      it subscribes to, at most 10000 in flight, and counts them back.
 *
 * Then, when bench_tls_mosq was built (libmosquitto found), it runs it
 * from this program's directory against the same broker and certificates
 * (plain TCP; TLS with one shared SSL_CTX; TLS with an SSL_CTX per client,
 * libmosquitto's default) and prints one table with uvmqtt/libmosquitto.
 *
 * Run by hand: build/test/bench/bench_tls [connections] [messages]
 * The certificates are made by test/tls/mkcerts.sh into a temporary
 * directory (UVMQTT_TEST_SRCDIR=<source>/test, else the source path). */
#include <libgen.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "uvmqtt.h"

#include "certs.h"
#include "testutil.h"

#define WINDOW 64
#define PUB_WINDOW 10000
#define PAYLOAD 64

typedef struct {
  uv_loop_t *loop;
  uvmqtt_client_t **c;
  int n;
  int started;
  int connected;
  int failed;
  int closed;
  int port;
  const uvmqtt_tls_config_t *tls;
} conns_t;

static void start_next(conns_t *b);

static void on_conn(uvmqtt_client_t *c, int status, const uvmqtt_connack_t *a,
                    void *arg) {
  conns_t *b = arg;
  (void)c;
  (void)a;
  if (status == 0)
    b->connected++;
  else
    b->failed++;
  start_next(b);
}

static void start_next(conns_t *b) {
  uvmqtt_options_t *o;
  uvmqtt_client_t *c;
  if (b->started >= b->n)
    return;
  uvmqtt_options_new(&o);
  uvmqtt_options_set_reconnect(o, false, 0, 0, 0);
  uvmqtt_options_set_keepalive(o, 600);
  if (b->tls)
    uvmqtt_options_set_tls(o, b->tls, true);
  if (uvmqtt_client_new(b->loop, o, &c) != 0) {
    fprintf(stderr, "client_new failed\n");
    exit(1);
  }
  uvmqtt_options_del(o);
  uvmqtt_client_on_connect(c, on_conn, b);
  b->c[b->started++] = c;
  if (uvmqtt_client_connect(c, "127.0.0.1", b->port) != 0) {
    fprintf(stderr, "connect failed\n");
    exit(1);
  }
}

static void on_closed(uvmqtt_client_t *c) {
  conns_t *b = uvmqtt_client_get_data(c);
  b->closed++;
}

static size_t heap_used(void) {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

static void bench_connections(const char *label, int port,
                              const uvmqtt_tls_config_t *tls, int n,
                              double *conn_s, double *heap_kib) {
  uv_loop_t loop;
  conns_t b;
  uint64_t t0, t1, end;
  size_t h0, h1;
  memset(&b, 0, sizeof(b));
  uv_loop_init(&loop);
  b.loop = &loop;
  b.n = n;
  b.port = port;
  b.tls = tls;
  b.c = calloc((size_t)n, sizeof(*b.c));
  malloc_trim(0);
  h0 = heap_used();
  t0 = uv_hrtime();
  for (int i = 0; i < WINDOW; i++)
    start_next(&b);
  end = tu_now_ms() + 120000;
  while (b.connected + b.failed < n && tu_now_ms() < end)
    uv_run(&loop, UV_RUN_ONCE);
  t1 = uv_hrtime();
  tu_run_for(&loop, 200); /* let the last CONNACKs' writes settle */
  h1 = heap_used();
  *conn_s = b.connected / ((double)(t1 - t0) / 1e9);
  *heap_kib = (double)(h1 - h0) / b.started / 1024.0;
  printf("%-4s connections: %d ok, %d failed in %.2f s = %.0f conn/s; "
         "heap %.1f KiB per idle connection\n",
         label, b.connected, b.failed, (double)(t1 - t0) / 1e9, *conn_s,
         *heap_kib);
  for (int i = 0; i < b.started; i++) {
    uvmqtt_client_set_data(b.c[i], &b);
    uvmqtt_client_close(b.c[i], on_closed);
  }
  end = tu_now_ms() + 20000;
  while (b.closed < b.started && tu_now_ms() < end)
    uv_run(&loop, UV_RUN_ONCE);
  tu_loop_close(&loop, 5000);
  free(b.c);
}

typedef struct {
  uvmqtt_client_t *c;
  uv_check_t check;
  long target;
  long published;
  long received;
  int connected;
  int subscribed;
  int closed;
} tput_t;

static void tp_msg(uvmqtt_client_t *c, const uvmqtt_message_t *m, void *arg) {
  tput_t *t = arg;
  (void)c;
  (void)m;
  t->received++;
}

static void tp_sub(uvmqtt_client_t *c, const uvmqtt_sub_result_t *res,
                   void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  const uint8_t *codes = res->codes;
  size_t count = res->count;
  const uvmqtt_props_t *props = res->props;
  tput_t *t = arg;
  (void)c;
  (void)id;
  (void)codes;
  (void)count;
  (void)props;
  t->subscribed = status == 0 ? 1 : -1;
}

static void tp_conn(uvmqtt_client_t *c, int status, const uvmqtt_connack_t *a,
                    void *arg) {
  tput_t *t = arg;
  (void)a;
  t->connected = status == 0 ? 1 : -1;
  if (status == 0)
    uvmqtt_subscribe(c, "bench/tls", 0, tp_sub, t);
}

/* Tops up the publications once per loop iteration. */
static void tp_check(uv_check_t *h) {
  static const char payload[PAYLOAD] = "0123456789abcdef0123456789abcdef"
                                       "0123456789abcdef012345678901234";
  tput_t *t = h->data;
  if (t->subscribed != 1)
    return;
  while (t->published < t->target && t->published - t->received < PUB_WINDOW) {
    if (uvmqtt_publish(t->c, "bench/tls", payload, PAYLOAD, 0, false, NULL,
                       NULL) < 0)
      break;
    t->published++;
  }
}

static void tp_closed(uvmqtt_client_t *c) {
  tput_t *t = uvmqtt_client_get_data(c);
  t->closed = 1;
}

static double bench_throughput(const char *label, int port,
                               const uvmqtt_tls_config_t *tls, long msgs) {
  uv_loop_t loop;
  tput_t t;
  uvmqtt_options_t *o;
  uint64_t t0, t1, end;
  double rate;
  memset(&t, 0, sizeof(t));
  t.target = msgs;
  uv_loop_init(&loop);
  uvmqtt_options_new(&o);
  uvmqtt_options_set_reconnect(o, false, 0, 0, 0);
  if (tls)
    uvmqtt_options_set_tls(o, tls, true);
  uvmqtt_client_new(&loop, o, &t.c);
  uvmqtt_options_del(o);
  uvmqtt_client_set_data(t.c, &t);
  uvmqtt_client_on_connect(t.c, tp_conn, &t);
  uvmqtt_client_on_message(t.c, tp_msg, &t);
  uv_check_init(&loop, &t.check);
  t.check.data = &t;
  uvmqtt_client_connect(t.c, "127.0.0.1", port);
  end = tu_now_ms() + 10000;
  while (t.subscribed == 0 && t.connected >= 0 && tu_now_ms() < end)
    uv_run(&loop, UV_RUN_ONCE);
  uv_check_start(&t.check, tp_check);
  t0 = uv_hrtime();
  tp_check(&t.check); /* the first batch; then after each read */
  end = tu_now_ms() + 120000;
  while (t.received < msgs && tu_now_ms() < end)
    uv_run(&loop, UV_RUN_ONCE);
  t1 = uv_hrtime();
  rate = t.received / ((double)(t1 - t0) / 1e9);
  printf("%-4s QoS 0 round trip: %ld of %ld messages (%d bytes) in %.2f s = "
         "%.0f msg/s, %.1f MB/s payload\n",
         label, t.received, msgs, PAYLOAD, (double)(t1 - t0) / 1e9, rate,
         rate * PAYLOAD / 1e6);
  uv_close((uv_handle_t *)&t.check, NULL);
  uvmqtt_client_close(t.c, tp_closed);
  end = tu_now_ms() + 5000;
  while (!t.closed && tu_now_ms() < end)
    uv_run(&loop, UV_RUN_ONCE);
  tu_loop_close(&loop, 5000);
  return rate;
}

/* Results of one client library: [0] TCP, [1] TLS (shared configuration),
 * [2] TLS with a configuration per client (libmosquitto's default). */
typedef struct {
  double conn_s[3];
  double heap_kib[3];
  double msg_s[3];
  bool ok[3];
} results_t;

/* Runs bench_tls_mosq (beside this program) with `args`, echoes its lines
 * and reads its "result" line into r->*[i]. */
static void run_mosq(const char *prog, const char *args, results_t *r, int i) {
  char cmd[2048], out[8192];
  char *line, *save = NULL;
  int rc;
  snprintf(cmd, sizeof(cmd), "\"%s\" %s", prog, args);
  rc = tu_run_cmd(cmd, 300, out, sizeof(out));
  for (line = strtok_r(out, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    char label[32];
    if (sscanf(line, "result %31s conn_s=%lf heap_kib=%lf msg_s=%lf", label,
               &r->conn_s[i], &r->heap_kib[i], &r->msg_s[i]) == 4)
      r->ok[i] = true;
    else
      printf("%s\n", line);
  }
  if (rc != 0 || !r->ok[i])
    fprintf(stderr, "bench_tls_mosq %s: exit %d\n", args, rc);
  fflush(stdout);
}

static void row(const char *what, const char *fmt, double u, bool uok, double m,
                bool mok) {
  char a[32] = "-", b[32] = "-", q[32] = "-";
  if (uok)
    snprintf(a, sizeof(a), fmt, u);
  if (mok)
    snprintf(b, sizeof(b), fmt, m);
  if (uok && mok && m > 0)
    snprintf(q, sizeof(q), "%.2f", u / m);
  printf("| %-38s | %10s | %12s | %7s |\n", what, a, b, q);
}

static void print_table(const results_t *u, const results_t *m) {
  printf("\n| %-38s | %10s | %12s | %7s |\n", "", "uvmqtt", "libmosquitto",
         "ratio");
  printf("|%s|%s|%s|%s|\n", "----------------------------------------",
         "-----------:", "-------------:", "--------:");
  row("TCP connections/s", "%.0f", u->conn_s[0], u->ok[0], m->conn_s[0],
      m->ok[0]);
  row("TLS connections/s", "%.0f", u->conn_s[1], u->ok[1], m->conn_s[1],
      m->ok[1]);
  row("TLS connections/s, SSL_CTX per client", "%.0f", u->conn_s[1], u->ok[1],
      m->conn_s[2], m->ok[2]);
  row("TCP heap per idle connection, KiB", "%.1f", u->heap_kib[0], u->ok[0],
      m->heap_kib[0], m->ok[0]);
  row("TLS heap per idle connection, KiB", "%.1f", u->heap_kib[1], u->ok[1],
      m->heap_kib[1], m->ok[1]);
  row("TLS heap, SSL_CTX per client, KiB", "%.1f", u->heap_kib[1], u->ok[1],
      m->heap_kib[2], m->ok[2]);
  row("TCP QoS 0 round trip, msg/s", "%.0f", u->msg_s[0], u->ok[0], m->msg_s[0],
      m->ok[0]);
  row("TLS QoS 0 round trip, msg/s", "%.0f", u->msg_s[1], u->ok[1], m->msg_s[1],
      m->ok[1]);
  row("TLS/TCP QoS 0 throughput", "%.2f",
      u->msg_s[0] > 0 ? u->msg_s[1] / u->msg_s[0] : 0, u->ok[0] && u->ok[1],
      m->msg_s[0] > 0 ? m->msg_s[1] / m->msg_s[0] : 0, m->ok[0] && m->ok[1]);
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000;
  long msgs = argc > 2 ? atol(argv[2]) : 500000;
  char dir[256], extra[1024];
  tu_broker_t broker;
  uvmqtt_tls_config_t *cfg;
  int tls_port;
  struct rlimit rl;
  results_t ur, mr;
  char self[4096], prog[4200], args[1024];

  signal(SIGPIPE, SIG_IGN);
  /* Room for n connections on both ends (mosquitto inherits the limit). */
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (tt_certs_make(dir, sizeof(dir)) != 0)
    return 1;
  tls_port = tu_free_port();
  snprintf(extra, sizeof(extra),
           "log_type none\nlog_type error\nmax_queued_messages 100000\n"
           "listener %d 127.0.0.1\n"
           "cafile %s/ca.crt\ncertfile %s/server.crt\nkeyfile %s/server.key\n",
           tls_port, dir, dir, dir);
  if (tu_broker_start(&broker, 0, extra) != 0 ||
      tu_wait_port(tls_port, 5000) != 0) {
    tt_certs_remove(dir);
    return 1;
  }
  uvmqtt_tls_config_new(&cfg);
  uvmqtt_tls_config_set_ca_file(cfg, tt_path(dir, "ca.crt"));
  printf("uvmqtt TLS benchmark, mosquitto on loopback, %s\n",
         "ECDSA P-256 server certificate, TLS 1.2");
  memset(&ur, 0, sizeof(ur));
  memset(&mr, 0, sizeof(mr));
  bench_connections("tcp", broker.port, NULL, n, &ur.conn_s[0],
                    &ur.heap_kib[0]);
  bench_connections("tls", tls_port, cfg, n, &ur.conn_s[1], &ur.heap_kib[1]);
  ur.msg_s[0] = bench_throughput("tcp", broker.port, NULL, msgs);
  ur.msg_s[1] = bench_throughput("tls", tls_port, cfg, msgs);
  ur.ok[0] = ur.ok[1] = true;
  printf("tls/tcp QoS 0 throughput: %.2f\n", ur.msg_s[1] / ur.msg_s[0]);
  uvmqtt_tls_config_free(cfg);
  fflush(stdout);

  /* libmosquitto, same broker, same certificates, same N and window. */
  snprintf(self, sizeof(self), "%s", argv[0]);
  snprintf(prog, sizeof(prog), "%s/bench_tls_mosq", dirname(self));
  if (access(prog, X_OK) == 0) {
    printf("\n");
    snprintf(args, sizeof(args), "-p %d -n %d -m %ld", broker.port, n, msgs);
    run_mosq(prog, args, &mr, 0);
    snprintf(args, sizeof(args), "-p %d -c \"%s\" -s -n %d -m %ld", tls_port,
             tt_path(dir, "ca.crt"), n, msgs);
    run_mosq(prog, args, &mr, 1);
    snprintf(args, sizeof(args), "-p %d -c \"%s\" -n %d -m 0 -l tls/ctx",
             tls_port, tt_path(dir, "ca.crt"), n);
    run_mosq(prog, args, &mr, 2);
  } else {
    printf("\n(no %s: libmosquitto not found at build time)\n", prog);
  }
  print_table(&ur, &mr);
  tu_broker_cleanup(&broker);
  tt_certs_remove(dir);
  return 0;
}
