/* Paho C MQTTAsync publishing with its default file persistence
 * (MQTTCLIENT_PERSISTENCE_DEFAULT: a file per message in a directory) and
 * without, on bench_persist's workload: MQTT 3.1.1, 100-byte payloads,
 * maxInflight 64, at most 128 messages handed over and not completed
 * (QoS 1: PUBACK, QoS 2: PUBCOMP). Prints msg/s per row, for comparison
 * with bench_persist on the same broker.
 *
 * Run by hand: build/test/bench/bench_paho_persist PORT [messages] [dir]
 * (dir: where Paho's persistence directory goes; default: /tmp). */
#include <MQTTAsync.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WINDOW 64
#define PAYLOAD 100

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long done_n, failed_n;
static int connected;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_conn(void *ctx, MQTTAsync_successData *r) {
  (void)ctx;
  (void)r;
  pthread_mutex_lock(&mu);
  connected = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

static void on_conn_fail(void *ctx, MQTTAsync_failureData *r) {
  (void)ctx;
  fprintf(stderr, "connect failed: %d\n", r ? r->code : -1);
  exit(1);
}

static void on_sent(void *ctx, MQTTAsync_successData *r) {
  (void)ctx;
  (void)r;
  pthread_mutex_lock(&mu);
  done_n++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

static void on_send_fail(void *ctx, MQTTAsync_failureData *r) {
  (void)ctx;
  (void)r;
  pthread_mutex_lock(&mu);
  done_n++;
  failed_n++;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}

static double run(int port, int qos, int persist, long total, const char *dir) {
  char uri[64], id[64];
  MQTTAsync c;
  snprintf(uri, sizeof uri, "tcp://127.0.0.1:%d", port);
  snprintf(id, sizeof id, "paho-persist-%d-%d", qos, persist);
  if (MQTTAsync_create(&c, uri, id,
                       persist ? MQTTCLIENT_PERSISTENCE_DEFAULT
                               : MQTTCLIENT_PERSISTENCE_NONE,
                       persist ? (void *)dir : NULL) != MQTTASYNC_SUCCESS)
    exit(1);
  done_n = failed_n = 0;
  connected = 0;
  MQTTAsync_connectOptions co = MQTTAsync_connectOptions_initializer;
  co.keepAliveInterval = 60;
  co.cleansession = 1;
  co.MQTTVersion = MQTTVERSION_3_1_1;
  co.maxInflight = WINDOW;
  co.onSuccess = on_conn;
  co.onFailure = on_conn_fail;
  if (MQTTAsync_connect(c, &co) != MQTTASYNC_SUCCESS)
    exit(1);
  pthread_mutex_lock(&mu);
  while (!connected)
    pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);

  static char payload[PAYLOAD];
  memset(payload, 'x', sizeof payload);
  double t0 = now_s();
  for (long issued = 0; issued < total; issued++) {
    pthread_mutex_lock(&mu);
    while (issued - done_n >= 2 * WINDOW)
      pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    MQTTAsync_message m = MQTTAsync_message_initializer;
    m.payload = payload;
    m.payloadlen = PAYLOAD;
    m.qos = qos;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess = on_sent;
    ro.onFailure = on_send_fail;
    int rc;
    while ((rc = MQTTAsync_sendMessage(c, "bench/paho", &m, &ro)) ==
           MQTTASYNC_MAX_BUFFERED_MESSAGES)
      usleep(100);
    if (rc != MQTTASYNC_SUCCESS) {
      fprintf(stderr, "send failed: %d\n", rc);
      exit(1);
    }
  }
  pthread_mutex_lock(&mu);
  while (done_n < total)
    pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  double rate = (double)total / (now_s() - t0);
  if (failed_n)
    fprintf(stderr, "%ld sends failed\n", failed_n);
  MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
  d.timeout = 1000;
  MQTTAsync_disconnect(c, &d);
  usleep(100000);
  MQTTAsync_destroy(&c);
  return rate;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_paho_persist PORT [messages] [dir]\n");
    return 2;
  }
  int port = atoi(argv[1]);
  long total = argc > 2 ? atol(argv[2]) : 20000;
  const char *dir = argc > 3 ? argv[3] : "/tmp";
  printf("# Paho C MQTTAsync, MQTT 3.1.1, %d-byte payloads, maxInflight %d, "
         "%ld messages\n",
         PAYLOAD, WINDOW, total);
  printf("%-4s %-22s %12s\n", "qos", "persistence", "msg/s");
  for (int qos = 1; qos <= 2; qos++)
    for (int persist = 0; persist <= 1; persist++)
      printf("%-4d %-22s %12.0f\n", qos,
             persist ? "default (file/message)" : "none",
             run(port, qos, persist, total, dir));
  return 0;
}
