/* Subscriptions at gateway scale, against a private mosquitto: the
 * README's pattern (every filter subscribed one by one in the connect
 * callback) with N filters, then a session loss (the broker restarts
 * without persistence) and the same connect callback again, then every
 * filter unsubscribed one by one. Prints the client's CPU time (this
 * process: the broker runs apart) and the wall time of each phase; then,
 * when built with libmosquitto, the same three phases with libmosquitto
 * (which keeps no table: its connect callback subscribes again), in the
 * same run, on the same broker.
 *
 * Run by hand: build/test/bench/bench_subs [N ...] (default 1000 10000
 * 30000). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef HAVE_LIBMOSQUITTO
#include <mosquitto.h>
#endif

#include "testutil.h"
#include "uvmqtt.h"

static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_s(void) {
  return (double)uv_hrtime() / 1e9;
}

typedef struct {
  double cpu, wall, broker;
} phase_t;

/* The broker's CPU time (user + system), from /proc. */
static const pid_t *broker_pid; /* the broker restarts: read it each time */
static double broker_s(void) {
  char path[64], buf[512];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)*broker_pid);
  FILE *f = fopen(path, "r");
  if (!f)
    return 0;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = 0;
  const char *p = strrchr(buf, ')');
  unsigned long ut = 0, st = 0;
  /* after the name: state, then fields 4..13, utime is field 14 */
  if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
                   &ut, &st) != 2)
    return 0;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

typedef struct {
  long n;
  long done, failed;
  int connected;
  double c0, w0, b0;
  phase_t sub, resub, unsub;
} run_t;

static void filter_of(char *out, size_t cap, long i) {
  snprintf(out, cap, "gw/dev%06ld/+/state", i);
}

static void start_phase(run_t *r) {
  r->done = 0;
  r->c0 = cpu_s();
  r->w0 = wall_s();
  r->b0 = broker_s();
}

static void end_phase(run_t *r, phase_t *p) {
  p->cpu = cpu_s() - r->c0;
  p->wall = wall_s() - r->w0;
  p->broker = broker_s() - r->b0;
}

/* ---- uvmqtt -------------------------------------------------------------- */

static void on_sub(uvmqtt_client_t *c, const uvmqtt_sub_result_t *res,
                   void *arg) {
  run_t *r = arg;
  (void)c;
  if (res->status < 0 || (res->count && res->codes[0] >= 0x80))
    r->failed++;
  if (++r->done == r->n)
    end_phase(r, r->connected == 1 ? &r->sub : &r->resub);
}

static void on_unsub(uvmqtt_client_t *c, const uvmqtt_sub_result_t *res,
                     void *arg) {
  run_t *r = arg;
  (void)c;
  if (res->status < 0)
    r->failed++;
  if (++r->done == r->n)
    end_phase(r, &r->unsub);
}

static void on_connect(uvmqtt_client_t *c, int status,
                       const uvmqtt_connack_t *ack, void *arg) {
  run_t *r = arg;
  char f[64];
  (void)ack;
  if (status < 0)
    return;
  r->connected++;
  start_phase(r);
  for (long i = 0; i < r->n; i++) {
    filter_of(f, sizeof(f), i);
    if (uvmqtt_subscribe(c, f, 1, on_sub, r) < 0) {
      fprintf(stderr, "uvmqtt_subscribe failed\n");
      exit(1);
    }
  }
}

static int wait_done(uv_loop_t *loop, run_t *r, unsigned ms) {
  uint64_t end = tu_now_ms() + ms;
  while (r->done < r->n && tu_now_ms() < end)
    uv_run(loop, UV_RUN_ONCE);
  return r->done == r->n ? 0 : -1;
}

static int run_uvmqtt(tu_broker_t *b, long n, run_t *r) {
  uv_loop_t loop;
  uvmqtt_options_t *o;
  uvmqtt_client_t *c;
  char f[64];
  memset(r, 0, sizeof(*r));
  r->n = n;
  uv_loop_init(&loop);
  uvmqtt_options_new(&o);
  uvmqtt_options_set_client_id(o, "bench-subs");
  uvmqtt_options_set_reconnect(o, true, 10, 100, 0);
  if (uvmqtt_client_new(&loop, o, &c) < 0)
    return -1;
  uvmqtt_options_del(o);
  uvmqtt_client_on_connect(c, on_connect, r);
  uvmqtt_client_connect(c, "127.0.0.1", b->port);
  int rc = wait_done(&loop, r, 600000);
  if (rc == 0) {
    tu_broker_stop(b);
    r->done = 0;
    rc = tu_broker_restart(b);
  }
  if (rc == 0) {
    /* on_connect starts the phase again once reconnected */
    uint64_t end = tu_now_ms() + 10000;
    while (r->connected < 2 && tu_now_ms() < end)
      uv_run(&loop, UV_RUN_ONCE);
    rc = wait_done(&loop, r, 600000);
  }
  if (rc == 0) {
    start_phase(r);
    for (long i = 0; i < n; i++) {
      filter_of(f, sizeof(f), i);
      if (uvmqtt_unsubscribe(c, f, on_unsub, r) < 0) {
        fprintf(stderr, "uvmqtt_unsubscribe failed\n");
        exit(1);
      }
    }
    rc = wait_done(&loop, r, 600000);
  }
  uvmqtt_client_close(c, NULL);
  tu_loop_close(&loop, 5000);
  return rc == 0 && r->failed == 0 ? 0 : -1;
}

/* ---- libmosquitto -------------------------------------------------------- */

#ifdef HAVE_LIBMOSQUITTO
static void m_on_connect(struct mosquitto *m, void *arg, int rc) {
  run_t *r = arg;
  char f[64];
  if (rc != 0)
    return;
  r->connected++;
  start_phase(r);
  for (long i = 0; i < r->n; i++) {
    filter_of(f, sizeof(f), i);
    if (mosquitto_subscribe(m, NULL, f, 1) != MOSQ_ERR_SUCCESS) {
      fprintf(stderr, "mosquitto_subscribe failed\n");
      exit(1);
    }
  }
}

static void m_on_subscribe(struct mosquitto *m, void *arg, int mid, int count,
                           const int *granted) {
  run_t *r = arg;
  (void)m;
  (void)mid;
  if (count < 1 || granted[0] >= 0x80)
    r->failed++;
  if (++r->done == r->n)
    end_phase(r, r->connected == 1 ? &r->sub : &r->resub);
}

static void m_on_unsubscribe(struct mosquitto *m, void *arg, int mid) {
  run_t *r = arg;
  (void)m;
  (void)mid;
  if (++r->done == r->n)
    end_phase(r, &r->unsub);
}

static int m_wait(struct mosquitto *m, run_t *r, int connected) {
  uint64_t end = tu_now_ms() + 600000;
  while ((r->done < r->n || r->connected < connected) && tu_now_ms() < end) {
    if (mosquitto_loop(m, 10, 1) != MOSQ_ERR_SUCCESS) {
      struct timespec ts = {0, 10 * 1000 * 1000};
      nanosleep(&ts, NULL);
      (void)mosquitto_reconnect(m);
    }
  }
  return r->done == r->n ? 0 : -1;
}

static int run_mosquitto(tu_broker_t *b, long n, run_t *r) {
  char f[64];
  memset(r, 0, sizeof(*r));
  r->n = n;
  mosquitto_lib_init();
  struct mosquitto *m = mosquitto_new("bench-subs-mosq", true, r);
  if (!m)
    return -1;
  mosquitto_connect_callback_set(m, m_on_connect);
  mosquitto_subscribe_callback_set(m, m_on_subscribe);
  mosquitto_unsubscribe_callback_set(m, m_on_unsubscribe);
  int rc = mosquitto_connect(m, "127.0.0.1", b->port, 60) == 0 ? 0 : -1;
  if (rc == 0)
    rc = m_wait(m, r, 1);
  if (rc == 0) {
    tu_broker_stop(b);
    r->done = 0;
    rc = tu_broker_restart(b);
  }
  if (rc == 0)
    rc = m_wait(m, r, 2);
  if (rc == 0) {
    start_phase(r);
    for (long i = 0; i < n; i++) {
      filter_of(f, sizeof(f), i);
      mosquitto_unsubscribe(m, NULL, f);
    }
    rc = m_wait(m, r, 2);
  }
  mosquitto_disconnect(m);
  mosquitto_destroy(m);
  mosquitto_lib_cleanup();
  return rc == 0 && r->failed == 0 ? 0 : -1;
}
#endif

static void print_row(const char *client, long n, const run_t *r) {
  const phase_t *p[3] = {&r->sub, &r->resub, &r->unsub};
  static const char *name[3] = {"subscribe", "resubscribe", "unsubscribe"};
  printf("%-12s %6ld", client, n);
  for (int i = 0; i < 3; i++)
    printf("  %s %7.1f cpu %7.1f wall %6.0f broker", name[i], p[i]->cpu * 1e3,
           p[i]->wall * 1e3, p[i]->broker * 1e3);
  printf(" (ms)\n");
  fflush(stdout);
}

int main(int argc, char **argv) {
  long sizes[16] = {1000, 10000, 30000};
  int nsizes = 3;
  if (argc > 1) {
    nsizes = 0;
    for (int i = 1; i < argc && nsizes < 16; i++)
      sizes[nsizes++] = atol(argv[i]);
  }
  tu_broker_t b;
  if (tu_broker_start(&b, 0, "max_queued_messages 100000\nlog_type none\n") !=
      0)
    return 1;
  int failed = 0;
  for (int k = 0; k < nsizes; k++) {
    run_t r;
    broker_pid = &b.pid;
    if (run_uvmqtt(&b, sizes[k], &r) == 0)
      print_row("uvmqtt", sizes[k], &r);
    else
      failed = fprintf(stderr, "uvmqtt: %ld filters failed\n", sizes[k]);
#ifdef HAVE_LIBMOSQUITTO
    if (run_mosquitto(&b, sizes[k], &r) == 0)
      print_row("libmosquitto", sizes[k], &r);
    else
      failed = fprintf(stderr, "libmosquitto: %ld filters failed\n", sizes[k]);
#endif
  }
  tu_broker_cleanup(&b);
  return failed ? 1 : 0;
}
