/* uvmqtt bench client for the peer harness (../shared/bench-peers; see its
 * README for the protocol, followed exactly here):
 *
 *   --host H --port P --count N --size BYTES --qos 0|1|2
 *   --mode pub|sub|rtt|conns --topic T --inflight W --timeout SECONDS
 *   --nodelay 0|1 [--conc P] [--warmup K]
 *
 * pub/sub/rtt use one client on one loop, MQTT 3.1.1, clean session.
 * pub keeps an application window of --inflight publishes whose completion
 * callback has not fired (QoS 0: written, QoS 1: PUBACK, QoS 2: PUBCOMP)
 * and issues the next one from that callback; the library's max in-flight
 * is set to the same value. --inflight 0 issues everything at once.
 * --nodelay 1 sets TCP_NODELAY; with 0 the library default is kept
 * (uvmqtt's default is TCP_NODELAY on).
 *
 * conns opens --count clients on one loop, each subscribing to
 * <topic>/<i>, and reports the time until all CONNACKs and all SUBACKs
 * and (VmHWM - VmRSS before creating the clients) / count. The RESULT
 * line is printed while they are all open; with UVB_MEM=1 in the
 * environment a second line on stderr splits the peak into resident
 * anonymous and file-backed memory (code pages first touched by the
 * connections) and the allocator's heap. At most --conc connections
 * are between uvmqtt_client_connect() and their CONNACK at any time;
 * --conc 0 (the harness's default, "all at once") means 64 here:
 * mosquitto listens with a fixed backlog of 100, and thousands of
 * simultaneous SYNs overflow it, so the dropped ones wait for the 1 s SYN
 * retransmit (nstat: TcpExtListenOverflows). libmosquitto's bench avoids
 * that by construction, its blocking connect() keeps one handshake in
 * flight. --conc 1000000 really starts everything at once.
 *
 * Every mode ends with one RESULT line on stdout and exits by itself
 * within --timeout (with a partial RESULT and status 1 when it ran out).
 * Timestamps *_ns are CLOCK_REALTIME. The CLI and RESULT formats mirror
 * the harness's c/bench_common.h, rewritten here. */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "uvmqtt.h"

enum mode { M_PUB, M_SUB, M_RTT, M_CONNS };

static struct {
  const char *host;
  int port;
  long count, size;
  int qos;
  enum mode mode;
  const char *mode_name;
  const char *topic;
  long inflight;
  double timeout;
  long conc;
  long warmup;
  int nodelay;
} o;

static uv_loop_t loop;
static uv_timer_t deadline_timer;
static char *payload;
static int done, failed;

/* ---- CLI, clocks, results (same formats as the harness) ----------------- */

static void usage(const char *p) {
  fprintf(stderr,
          "usage: %s --host H --port P --count N --size BYTES --qos Q "
          "--mode pub|sub|rtt|conns [--topic T] [--inflight W] "
          "[--timeout S] [--conc P] [--warmup K] [--nodelay 0|1]\n",
          p);
  exit(2);
}

static void parse(int argc, char **argv) {
  o.host = "127.0.0.1";
  o.port = 1883;
  o.count = 1000;
  o.size = 64;
  o.mode_name = "pub";
  o.topic = "bench/t";
  o.inflight = 100;
  o.timeout = 60;
  o.warmup = -1;
  for (int i = 1; i < argc; i += 2) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v)
      usage(argv[0]);
    if (!strcmp(a, "--host"))
      o.host = v;
    else if (!strcmp(a, "--port"))
      o.port = atoi(v);
    else if (!strcmp(a, "--count"))
      o.count = atol(v);
    else if (!strcmp(a, "--size"))
      o.size = atol(v);
    else if (!strcmp(a, "--qos"))
      o.qos = atoi(v);
    else if (!strcmp(a, "--mode"))
      o.mode_name = v;
    else if (!strcmp(a, "--topic"))
      o.topic = v;
    else if (!strcmp(a, "--inflight"))
      o.inflight = atol(v);
    else if (!strcmp(a, "--timeout"))
      o.timeout = atof(v);
    else if (!strcmp(a, "--conc"))
      o.conc = atol(v);
    else if (!strcmp(a, "--warmup"))
      o.warmup = atol(v);
    else if (!strcmp(a, "--nodelay"))
      o.nodelay = atoi(v);
    else
      usage(argv[0]);
  }
  if (!strcmp(o.mode_name, "pub"))
    o.mode = M_PUB;
  else if (!strcmp(o.mode_name, "sub"))
    o.mode = M_SUB;
  else if (!strcmp(o.mode_name, "rtt"))
    o.mode = M_RTT;
  else if (!strcmp(o.mode_name, "conns"))
    o.mode = M_CONNS;
  else
    usage(argv[0]);
  if (o.qos < 0 || o.qos > 2 || o.count < 1 || o.size < 0 || o.inflight < 0)
    usage(argv[0]);
  if (o.warmup < 0)
    o.warmup = o.count / 10 < 100 ? o.count / 10 : 100;
}

static int64_t wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Resident anonymous / file-backed memory before the clients (KiB). */
static long c_base_anon, c_base_file;

/* VmRSS / VmHWM of this process in KiB (0 if unknown). */
static long status_kb(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = 0;
  size_t kl = strlen(key);
  if (!f)
    return 0;
  while (fgets(line, sizeof(line), f)) {
    if (!strncmp(line, key, kl) && line[kl] == ':') {
      v = atol(line + kl + 1);
      break;
    }
  }
  fclose(f);
  return v;
}

static void unsupported(const char *why) {
  printf("UNSUPPORTED %s\n", why);
  fflush(stdout);
  exit(3);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array, p in (0, 100]. */
static int64_t pctl(const int64_t *s, long n, double p) {
  long k = (long)((p / 100.0) * (double)n + 0.999999999);
  if (k < 1)
    k = 1;
  if (k > n)
    k = n;
  return s[k - 1];
}

static void print_pub(long sent, int64_t t0, int64_t t1) {
  double el = (double)(t1 - t0) / 1e9;
  printf("RESULT mode=pub qos=%d size=%ld count=%ld sent=%ld inflight=%ld "
         "t_start_ns=%lld t_end_ns=%lld elapsed_s=%.6f msgs_per_s=%.1f\n",
         o.qos, o.size, o.count, sent, o.inflight, (long long)t0, (long long)t1,
         el, el > 0 ? (double)sent / el : 0.0);
  fflush(stdout);
}

static void print_sub(long recvd, int64_t t0, int64_t t1) {
  double el = recvd > 0 ? (double)(t1 - t0) / 1e9 : 0;
  printf("RESULT mode=sub qos=%d size=%ld count=%ld received=%ld "
         "t_first_ns=%lld t_last_ns=%lld elapsed_s=%.6f msgs_per_s=%.1f\n",
         o.qos, o.size, o.count, recvd, (long long)t0, (long long)t1, el,
         el > 0 ? (double)(recvd - 1) / el : 0.0);
  fflush(stdout);
}

static void print_rtt(int64_t *s, long n) {
  double sum = 0;
  if (n <= 0) {
    printf("RESULT mode=rtt qos=%d size=%ld count=%ld done=0\n", o.qos, o.size,
           o.count);
    fflush(stdout);
    return;
  }
  for (long i = 0; i < n; i++)
    sum += (double)s[i];
  qsort(s, (size_t)n, sizeof(int64_t), cmp_i64);
  printf("RESULT mode=rtt qos=%d size=%ld count=%ld done=%ld median_us=%.1f "
         "p99_us=%.1f mean_us=%.1f min_us=%.1f max_us=%.1f\n",
         o.qos, o.size, o.count, n, (double)pctl(s, n, 50) / 1e3,
         (double)pctl(s, n, 99) / 1e3, sum / (double)n / 1e3,
         (double)s[0] / 1e3, (double)s[n - 1] / 1e3);
  fflush(stdout);
  if (getenv("UVB_DECILES")) { /* the shape of the distribution, to stderr */
    for (int q = 5; q <= 95; q += 10)
      fprintf(stderr, "%.1f ", (double)pctl(s, n, q) / 1e3);
    fprintf(stderr, "\n");
  }
}

static void print_conns(long connected, long ready, double connect_s,
                        double ready_s, long rss_base_kb) {
  long hwm = status_kb("VmHWM"), rss = status_kb("VmRSS");
  printf("RESULT mode=conns count=%ld connected=%ld ready=%ld "
         "connect_s=%.6f ready_s=%.6f rss_base_kb=%ld rss_kb=%ld "
         "rss_peak_kb=%ld rss_per_conn_kb=%.2f\n",
         o.count, connected, ready, connect_s, ready_s, rss_base_kb, rss, hwm,
         ready > 0 ? (double)(hwm - rss_base_kb) / (double)ready : 0.0);
  fflush(stdout);
  /* UVB_MEM=1: where the peak went (resident anonymous and file-backed
   * memory, the allocator's heap and what is in use in it), to stderr. */
  if (getenv("UVB_MEM")) {
    struct mallinfo2 mi = mallinfo2();
    fprintf(stderr,
            "uvmqtt_bench: base anon %ld file %ld | now anon %ld file %ld | "
            "heap %zu KiB in use %zu KiB mmapped %zu KiB\n",
            c_base_anon, c_base_file, status_kb("RssAnon"),
            status_kb("RssFile"), mi.arena / 1024, mi.uordblks / 1024,
            mi.hblkhd / 1024);
  }
}

/* ---- clients ------------------------------------------------------------ */

static void on_log(uvmqtt_client_t *c, int level, const char *msg, void *a) {
  (void)c;
  (void)a;
  fprintf(stderr, "uvmqtt_bench: [%d] %s\n", level, msg);
}

static uvmqtt_options_t *make_options(const char *id) {
  uvmqtt_options_t *opts;
  if (uvmqtt_options_new(&opts) != 0)
    return NULL;
  uvmqtt_options_set_client_id(opts, id);
  uvmqtt_options_set_protocol(opts, UVMQTT_V311);
  uvmqtt_options_set_clean_session(opts, true);
  uvmqtt_options_set_reconnect(opts, false, 0, 0, 0);
  if (o.nodelay)
    uvmqtt_options_set_nodelay(opts, true);
  /* The application window is the only limit on what is outstanding. */
  uvmqtt_options_set_max_inflight(opts, o.inflight > 0 && o.inflight <= 65535
                                            ? (unsigned)o.inflight
                                            : 65535);
  uvmqtt_options_set_max_queued(opts, 0, 0, UVMQTT_QUEUE_REFUSE_NEW);
  return opts;
}

static void fail(const char *what, int rc) {
  fprintf(stderr, "uvmqtt_bench: %s: %s (%s)\n", what, uvmqtt_strerror(rc),
          uvmqtt_err_name(rc));
  failed = 1;
}

/* ---- pub / sub / rtt ---------------------------------------------------- */

static uvmqtt_client_t *client;
static long issued, completed, received;
static int64_t t_start, t_end, t_first, t_last;
static int64_t *rtt_samples;
static long rtt_idx;
static int64_t rtt_t0;

static void finish(void);

static void on_published(uvmqtt_client_t *c, const uvmqtt_pub_result_t *res,
                         void *arg);

static void publish_one(uvmqtt_client_t *c) {
  issued++;
  int rc = uvmqtt_publish(c, o.topic, payload, (size_t)o.size, o.qos, false,
                          o.mode == M_PUB ? on_published : NULL, NULL);
  if (rc < 0) {
    fail("uvmqtt_publish", rc);
    finish();
  }
}

static void on_published(uvmqtt_client_t *c, const uvmqtt_pub_result_t *res,
                         void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  (void)id;
  (void)arg;
  if (status < 0) {
    if (!done && !failed)
      fail("publish completion", status);
    finish();
    return;
  }
  completed++;
  if (o.inflight > 0 && issued < o.count && !failed)
    publish_one(c);
  if (completed == o.count) {
    t_end = wall_ns();
    done = 1;
    finish();
  }
}

static void on_message(uvmqtt_client_t *c, const uvmqtt_message_t *m,
                       void *arg) {
  (void)m;
  (void)arg;
  if (o.mode == M_SUB) {
    received++;
    if (received == 1)
      t_first = wall_ns();
    if (received == o.count) {
      t_last = wall_ns();
      done = 1;
      finish();
    }
  } else if (o.mode == M_RTT) {
    int64_t now = mono_ns();
    if (rtt_idx >= o.warmup)
      rtt_samples[rtt_idx - o.warmup] = now - rtt_t0;
    rtt_idx++;
    if (rtt_idx < o.warmup + o.count) {
      rtt_t0 = mono_ns();
      publish_one(c);
    } else {
      done = 1;
      finish();
    }
  }
}

static void on_suback(uvmqtt_client_t *c, const uvmqtt_sub_result_t *res,
                      void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  const uint8_t *codes = res->codes;
  size_t n = res->count;
  const uvmqtt_props_t *props = res->props;
  (void)id;
  (void)props;
  (void)arg;
  if (status < 0 || n < 1 || codes[0] > 2) {
    fprintf(stderr, "uvmqtt_bench: subscription refused\n");
    failed = 1;
    finish();
    return;
  }
  if (o.mode == M_SUB) {
    printf("READY\n");
    fflush(stdout);
  } else {
    rtt_t0 = mono_ns();
    publish_one(c);
  }
}

static void on_connect(uvmqtt_client_t *c, int status,
                       const uvmqtt_connack_t *ack, void *arg) {
  (void)arg;
  if (status < 0) {
    if (ack)
      fprintf(stderr, "uvmqtt_bench: CONNACK rc=%u\n", ack->reason_code);
    fail("connect", status);
    finish();
    return;
  }
  if (o.mode == M_PUB) {
    t_start = wall_ns();
    long first = o.inflight > 0 && o.inflight < o.count ? o.inflight : o.count;
    for (long i = 0; i < first && !failed; i++)
      publish_one(c);
  } else {
    int rc = uvmqtt_subscribe(c, o.topic, o.qos, on_suback, NULL);
    if (rc < 0) {
      fail("uvmqtt_subscribe", rc);
      finish();
    }
  }
}

static void on_disconnect(uvmqtt_client_t *c, int status,
                          const uvmqtt_reason_t *r, void *arg) {
  (void)c;
  (void)r;
  (void)arg;
  if (!done && !failed) {
    fail("disconnected", status);
    finish();
  }
}

static void report_single(void) {
  if (o.mode == M_PUB) {
    print_pub(completed, t_start, done ? t_end : wall_ns());
  } else if (o.mode == M_SUB) {
    print_sub(received, t_first, done ? t_last : wall_ns());
  } else {
    long n = rtt_idx - o.warmup;
    print_rtt(rtt_samples, n < 0 ? 0 : (n > o.count ? o.count : n));
  }
}

static int reported;

/* Ends the run: prints the RESULT once and closes everything. */
static void finish(void) {
  if (reported)
    return;
  reported = 1;
  report_single();
  uv_timer_stop(&deadline_timer);
  uv_close((uv_handle_t *)&deadline_timer, NULL);
  if (client)
    uvmqtt_client_close(client, NULL);
  client = NULL;
}

static void on_deadline(uv_timer_t *t) {
  (void)t;
  fprintf(stderr, "uvmqtt_bench: timeout\n");
  finish();
}

static int run_single(void) {
  char id[64];
  snprintf(id, sizeof(id), "uvb-%s-%d", o.mode_name, (int)getpid());
  uvmqtt_options_t *opts = make_options(id);
  if (!opts || uvmqtt_client_new(&loop, opts, &client) != 0) {
    fprintf(stderr, "uvmqtt_bench: cannot create the client\n");
    return 1;
  }
  uvmqtt_options_del(opts);
  uvmqtt_client_on_connect(client, on_connect, NULL);
  uvmqtt_client_on_disconnect(client, on_disconnect, NULL);
  uvmqtt_client_on_message(client, on_message, NULL);
  uvmqtt_client_on_log(client, on_log, NULL, UVMQTT_LOG_WARN);
  if (o.mode == M_RTT)
    rtt_samples = calloc((size_t)o.count, sizeof(int64_t));
  int rc = uvmqtt_client_connect(client, o.host, o.port);
  if (rc < 0) {
    fail("uvmqtt_client_connect", rc);
    return 1;
  }
  uv_timer_init(&loop, &deadline_timer);
  uv_timer_start(&deadline_timer, on_deadline, (uint64_t)(o.timeout * 1000), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  return done && !failed ? 0 : 1;
}

/* ---- conns ----------------------------------------------------------------
 */

static uvmqtt_client_t **cs;
static long c_started, c_connected, c_ready, c_failed, c_closed;
static int64_t c_t0, c_tconn, c_tready;
static long c_rss_base;
static uv_idle_t starter;

static void conns_finish(void);
static void on_start(uv_idle_t *h);

/* Appends the decimal digits of v at p (NUL-terminated); returns the end.
 * The conns mode formats its ids and topics with this instead of
 * snprintf: its figure is (VmHWM - VmRSS before the clients) / count, and
 * libc's printf code, first touched by the benchmark program itself
 * after that base, added 64-192 KiB of resident code pages to it (0.06-
 * 0.19 KiB per connection at 1,000, varying run to run) that are not the
 * library's memory. */
static char *put_u(char *p, unsigned long v) {
  char tmp[24];
  int n = 0;
  do
    tmp[n++] = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  while (n > 0)
    *p++ = tmp[--n];
  *p = '\0';
  return p;
}

/* Appends the string s at p (NUL-terminated), at most `room` bytes in
 * all with the NUL; returns the end. */
static char *put_s(char *p, const char *s, size_t room) {
  size_t n = strlen(s);
  if (n >= room)
    n = room - 1;
  memcpy(p, s, n);
  p[n] = '\0';
  return p + n;
}

static void c_on_suback(uvmqtt_client_t *c, const uvmqtt_sub_result_t *res,
                        void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  const uint8_t *codes = res->codes;
  size_t n = res->count;
  const uvmqtt_props_t *props = res->props;
  (void)c;
  (void)id;
  (void)props;
  (void)arg;
  if (status < 0 || n < 1 || codes[0] > 2) {
    c_failed++;
  } else {
    c_ready++;
    if (c_ready == o.count) {
      c_tready = mono_ns();
      conns_finish();
      return;
    }
  }
}

static void c_on_connect(uvmqtt_client_t *c, int status,
                         const uvmqtt_connack_t *ack, void *arg) {
  char topic[128];
  (void)ack;
  if (o.conc > 0 && c_started < o.count)
    uv_idle_start(&starter, on_start);
  if (status < 0) {
    if (++c_failed <= 5)
      fail("connect", status);
    return;
  }
  if (++c_connected == o.count)
    c_tconn = mono_ns();
  char *p = put_s(topic, o.topic, sizeof(topic) - 24);
  *p++ = '/';
  put_u(p, (unsigned long)(intptr_t)arg);
  int rc = uvmqtt_subscribe(c, topic, o.qos, c_on_suback, NULL);
  if (rc < 0 && ++c_failed <= 5)
    fail("uvmqtt_subscribe", rc);
}

static int start_one(long i) {
  char id[64];
  char *p = put_s(id, "uvb-c-", sizeof(id));
  p = put_u(p, (unsigned long)getpid());
  *p++ = '-';
  put_u(p, (unsigned long)i);
  uvmqtt_options_t *opts = make_options(id);
  if (!opts)
    return -1;
  int rc = uvmqtt_client_new(&loop, opts, &cs[i]);
  uvmqtt_options_del(opts);
  if (rc < 0) {
    fail("uvmqtt_client_new", rc);
    return -1;
  }
  uvmqtt_client_on_connect(cs[i], c_on_connect, (void *)(intptr_t)i);
  uvmqtt_client_on_log(cs[i], on_log, NULL, UVMQTT_LOG_ERROR);
  rc = uvmqtt_client_connect(cs[i], o.host, o.port);
  if (rc < 0) {
    fail("uvmqtt_client_connect", rc);
    return -1;
  }
  return 0;
}

static void on_start(uv_idle_t *h) {
  while (c_started < o.count && c_started - c_connected - c_failed < o.conc) {
    if (start_one(c_started++) < 0)
      c_failed++;
  }
  uv_idle_stop(h);
}

static void c_on_closed(uvmqtt_client_t *c) {
  (void)c;
  c_closed++;
}

static void conns_finish(void) {
  if (reported)
    return;
  reported = 1;
  int64_t now = mono_ns();
  print_conns(c_connected, c_ready,
              (double)((c_tconn ? c_tconn : now) - c_t0) / 1e9,
              (double)((c_tready ? c_tready : now) - c_t0) / 1e9, c_rss_base);
  if (c_failed)
    fprintf(stderr, "uvmqtt_bench: %ld failures\n", c_failed);
  uv_timer_stop(&deadline_timer);
  uv_close((uv_handle_t *)&deadline_timer, NULL);
  uv_idle_stop(&starter);
  uv_close((uv_handle_t *)&starter, NULL);
  for (long i = 0; i < c_started; i++)
    if (cs[i])
      uvmqtt_client_close(cs[i], c_on_closed);
}

static void c_on_deadline(uv_timer_t *t) {
  (void)t;
  fprintf(stderr, "uvmqtt_bench: timeout\n");
  conns_finish();
}

static int run_conns(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)o.count + 64)
    fprintf(stderr,
            "uvmqtt_bench: RLIMIT_NOFILE %llu is too low for %ld "
            "connections\n",
            (unsigned long long)rl.rlim_cur, o.count);
  if (o.conc <= 0)
    o.conc = 64;
  uv_timer_init(&loop, &deadline_timer);
  uv_idle_init(&loop, &starter);
  c_rss_base = status_kb("VmRSS");
  c_base_anon = status_kb("RssAnon");
  c_base_file = status_kb("RssFile");
  cs = calloc((size_t)o.count, sizeof(*cs));
  c_t0 = mono_ns();
  on_start(&starter);
  uv_timer_start(&deadline_timer, c_on_deadline, (uint64_t)(o.timeout * 1000),
                 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  return c_ready == o.count ? 0 : 1;
}

int main(int argc, char **argv) {
  parse(argc, argv);
  setvbuf(stdout, NULL, _IOLBF, 0);
  payload = malloc(o.size > 0 ? (size_t)o.size : 1);
  for (long i = 0; i < o.size; i++)
    payload[i] = (char)('a' + i % 26);
  if (o.mode == M_CONNS && o.count > 1000000)
    unsupported("more than 1,000,000 connections");
  /* Backstop: the run ends by itself within --timeout (partial RESULT);
   * should closing ever hang, the process still goes a little later. */
  alarm((unsigned)o.timeout + 5);
  uv_loop_init(&loop);
  int rc = o.mode == M_CONNS ? run_conns() : run_single();
  /* Everything is closed by now unless the run was cut short. */
  if (uv_loop_close(&loop) != 0 && rc == 0)
    fprintf(stderr, "uvmqtt_bench: handles left open\n");
  free(payload);
  free(rtt_samples);
  free(cs);
  return rc;
}
