/* Publish throughput with the default store at each durability level
 * beside the same client without a store, in one run, against a private
 * mosquitto: QoS 1 and QoS 2, 100-byte payloads, a window of 64 messages
 * in flight and 128 handed to the client. Also the loop's lag while
 * persisting at full rate (a 1 ms timer: p99 and max of how late it
 * fires). Prints one line per row; then, when bench_paho_persist was
 * built beside it, Paho C with its file persistence on the same broker.
 *
 * Run by hand: build/test/bench/bench_persist [messages per run] [dir]
 * [repetitions] (dir: where the stores go, on the disk to measure;
 * default: a temporary directory; 3 repetitions, the median is shown). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "uvmqtt.h"

#define WINDOW 64
#define PAYLOAD 100
#define MAX_LAGS 200000

typedef struct {
  uv_loop_t *loop;
  uvmqtt_client_t *c;
  int qos;
  long total, issued, done, failed;
  int connected, finished, closed;
  uint64_t t0, t1;
  /* loop lag */
  uv_timer_t lag_timer;
  uint64_t lag_due;
  uint32_t lags[MAX_LAGS]; /* microseconds */
  size_t nlags;
} run_t;

static uint64_t now_us(void) {
  return uv_hrtime() / 1000;
}

static void on_lag(uv_timer_t *t) {
  run_t *r = t->data;
  uint64_t now = now_us();
  if (r->lag_due && r->nlags < MAX_LAGS)
    r->lags[r->nlags++] = (uint32_t)(now > r->lag_due ? now - r->lag_due : 0);
  r->lag_due = now + 1000;
}

static void pump(run_t *r);

static void on_pub(uvmqtt_client_t *c, const uvmqtt_pub_result_t *res,
                   void *arg) {
  run_t *r = arg;
  (void)c;
  r->done++;
  if (res->status < 0)
    r->failed++;
  if (r->done == r->total) {
    r->t1 = now_us();
    r->finished = 1;
    return;
  }
  pump(r);
}

static void pump(run_t *r) {
  static const char payload[PAYLOAD] = {'x'};
  while (r->issued < r->total && r->issued - r->done < 2 * WINDOW) {
    if (uvmqtt_publish(r->c, "bench/persist", payload, sizeof payload, r->qos,
                       false, on_pub, r) < 0) {
      fprintf(stderr, "publish failed\n");
      exit(1);
    }
    r->issued++;
  }
}

static void on_connect(uvmqtt_client_t *c, int status,
                       const uvmqtt_connack_t *ack, void *arg) {
  run_t *r = arg;
  (void)c;
  (void)ack;
  if (status == 0 && !r->connected) {
    r->connected = 1;
    r->t0 = now_us();
    pump(r);
  }
}

static void on_closed(uvmqtt_client_t *c) {
  run_t *r = uvmqtt_client_get_data(c);
  r->closed = 1;
}

static int store_closed;
static void on_store_closed(uvmqtt_store_t *s, void *arg) {
  (void)s;
  (void)arg;
  store_closed = 1;
}

static void on_store_open(uvmqtt_store_t *s, int status,
                          const uvmqtt_store_report_t *rep, void *arg) {
  (void)status;
  (void)rep;
  *(uvmqtt_store_t **)arg = s;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* level 0: no store. Returns messages per second. */
static double run_one(uv_loop_t *loop, int port, const char *dir, int qos,
                      int level, long total, double *p99_ms, double *max_ms) {
  static run_t r;
  uvmqtt_options_t *o;
  uvmqtt_store_t *store = NULL;
  char path[512], id[64];
  memset(&r, 0, sizeof r);
  r.loop = loop;
  r.qos = qos;
  r.total = total;
  snprintf(id, sizeof id, "bench-persist-%d-%d", qos, level);
  uvmqtt_options_new(&o);
  uvmqtt_options_set_client_id(o, id);
  uvmqtt_options_set_protocol(o, UVMQTT_V311);
  uvmqtt_options_set_clean_session(o, true);
  uvmqtt_options_set_max_inflight(o, WINDOW);
  if (level) {
    snprintf(path, sizeof path, "%s/bench-%d-%d.store", dir, qos, level);
    unlink(path);
    if (uvmqtt_store_open(loop, path, NULL, on_store_open, &store) < 0)
      exit(1);
    uv_run(loop, UV_RUN_DEFAULT); /* until it is open: nothing else runs */
    if (!store) {
      fprintf(stderr, "cannot open %s\n", path);
      exit(1);
    }
    uvmqtt_options_set_store(o, store, (uvmqtt_durability_t)level);
  }
  if (uvmqtt_client_new(loop, o, &r.c) < 0)
    exit(1);
  uvmqtt_options_del(o);
  uvmqtt_client_set_data(r.c, &r);
  uvmqtt_client_on_connect(r.c, on_connect, &r);
  uv_timer_init(loop, &r.lag_timer);
  r.lag_timer.data = &r;
  uv_timer_start(&r.lag_timer, on_lag, 1, 1);
  uvmqtt_client_connect(r.c, "127.0.0.1", port);
  if (tu_run_until(loop, &r.finished, 120000) < 0) {
    fprintf(stderr, "run did not finish: %ld of %ld\n", r.done, r.total);
    exit(1);
  }
  uv_close((uv_handle_t *)&r.lag_timer, NULL);
  uvmqtt_client_disconnect(r.c);
  uvmqtt_client_close(r.c, on_closed);
  tu_run_until(loop, &r.closed, 10000);
  if (store) {
    store_closed = 0;
    uvmqtt_store_close(store, on_store_closed, NULL);
    tu_run_until(loop, &store_closed, 10000);
    unlink(path);
  }
  if (r.failed)
    fprintf(stderr, "%ld publishes failed\n", r.failed);
  qsort(r.lags, r.nlags, sizeof r.lags[0], cmp_u32);
  *p99_ms = r.nlags ? r.lags[r.nlags * 99 / 100] / 1000.0 : 0;
  *max_ms = r.nlags ? r.lags[r.nlags - 1] / 1000.0 : 0;
  return (double)total / ((double)(r.t1 - r.t0) / 1e6);
}

int main(int argc, char **argv) {
  long total = argc > 1 ? atol(argv[1]) : 20000;
  char tmp[256];
  const char *dir = argc > 2 ? argv[2] : NULL;
  if (!dir) {
    if (tu_tmpdir(tmp, sizeof tmp) < 0)
      return 1;
    dir = tmp;
  }
  tu_broker_t b;
  if (tu_broker_start(&b, 0,
                      "max_inflight_messages 64\nmax_queued_messages 0\n") < 0)
    return 1;
  uv_loop_t loop;
  uv_loop_init(&loop);
  static const char *names[] = {"no store", "process-crash", "power-loss"};
  int reps = argc > 3 ? atoi(argv[3]) : 3;
  if (reps < 1 || reps > 15)
    reps = 3;
  printf("# publish throughput, MQTT 3.1.1, %d-byte payloads, window %d, "
         "%ld messages per run, median of %d runs interleaved across the "
         "rows; loop lag of a 1 ms timer (median run's p99, worst max)\n",
         PAYLOAD, WINDOW, total, reps);
  printf("%-4s %-14s %12s %8s %10s %10s\n", "qos", "store", "msg/s", "ratio",
         "lag p99 ms", "lag max ms");
  for (int qos = 1; qos <= 2; qos++) {
    double rate[3][15], p99[3][15], mx[3][15];
    for (int k = 0; k < reps; k++)
      for (int level = 0; level <= 2; level++)
        rate[level][k] = run_one(&loop, b.port, dir, qos, level, total,
                                 &p99[level][k], &mx[level][k]);
    double base = 0;
    for (int level = 0; level <= 2; level++) {
      /* the median run by rate */
      int idx[15];
      for (int k = 0; k < reps; k++)
        idx[k] = k;
      for (int i = 1; i < reps; i++)
        for (int j = i; j > 0 && rate[level][idx[j]] < rate[level][idx[j - 1]];
             j--) {
          int t = idx[j];
          idx[j] = idx[j - 1];
          idx[j - 1] = t;
        }
      int m = idx[reps / 2];
      double worst = 0;
      for (int k = 0; k < reps; k++)
        worst = mx[level][k] > worst ? mx[level][k] : worst;
      if (level == 0)
        base = rate[level][m];
      printf("%-4d %-14s %12.0f %7.2fx %10.2f %10.2f\n", qos, names[level],
             rate[level][m], rate[level][m] / base, p99[level][m], worst);
      fflush(stdout);
    }
  }
  /* Paho C with its file persistence, same broker and workload, when
   * built beside this program. */
  char cmd[1024], out[4096];
  const char *slash = strrchr(argv[0], '/');
  snprintf(cmd, sizeof cmd, "%.*sbench_paho_persist",
           slash ? (int)(slash - argv[0] + 1) : 0, argv[0]);
  if (access(cmd, X_OK) == 0) {
    snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), " %d %ld %s", b.port,
             total, dir);
    if (tu_run_cmd(cmd, 600, out, sizeof out) == 0)
      fputs(out, stdout);
    else
      fprintf(stderr, "bench_paho_persist failed\n");
  }
  tu_loop_close(&loop, 5000);
  tu_broker_stop(&b);
  tu_broker_cleanup(&b);
  if (argc <= 2)
    tu_rmtree(tmp);
  return 0;
}
