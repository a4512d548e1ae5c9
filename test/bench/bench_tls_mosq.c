/* The libmosquitto (OpenSSL) counterpart of bench_tls, against a broker
 * someone else started (bench_tls runs it against its own mosquitto):
 *
 *   1. connections established (CONNECT/CONNACK complete) per second for N
 *      clients (default 1000), 64 connecting at a time as in bench_tls: one
 *      thread, poll() over the clients still connecting,
 *      mosquitto_connect_async + mosquitto_loop_read/write, the next client
 *      started when one gets its CONNACK (or fails);
 *   2. heap bytes per idle connection (glibc mallinfo2, the whole process:
 *      libmosquitto's and OpenSSL's allocations);
 *   3. QoS 0 throughput: one client publishes 64-byte messages to a topic
 *      it subscribes to, at most 10000 in flight, and counts them back,
 *      driven by mosquitto_loop() (bench_tls does the same with uvmqtt).
 *
 * MQTT 3.1.1, clean session, keepalive 600 s, TCP_NODELAY (uvmqtt's
 * defaults). TLS is used when a CA file is given: TLS 1.2 (what uvmqtt
 * negotiates with mbedTLS 2.28) unless -3, peer and host name verified.
 * By default every client gets its own SSL_CTX from mosquitto_tls_set(),
 * as libmosquitto does it; -s shares one SSL_CTX (MOSQ_OPT_SSL_CTX), as
 * all uvmqtt clients share one uvmqtt_tls_config_t.
 *
 *   bench_tls_mosq [-h host] -p port [-c cafile [-C cert -K key]] [-s] [-3]
 *                  [-n connections] [-m messages] [-l label]
 *
 * -n 0 or -m 0 leaves that part out. Besides the lines in bench_tls's
 * style, prints one line for bench_tls to read:
 *   result <label> conn_s=<c> heap_kib=<h> msg_s=<r> */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <malloc.h>
#include <mosquitto.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define WINDOW 64
#define PUB_WINDOW 10000
#define PAYLOAD 64
#define TOPIC "bench/tls"

typedef struct {
  const char *host;
  int port;
  const char *cafile;
  const char *cert;
  const char *key;
  bool shared;
  bool tls13;
  const char *label;
  SSL_CTX *ctx; /* the shared one (-s) */
} cfg_t;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t heap_used(void) {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

/* One SSL_CTX set up the way mosquitto_tls_set + mosquitto_tls_opts_set
 * set up theirs: CA file, peer verification, the host checked against the
 * certificate, optional client certificate, one protocol version. */
static SSL_CTX *shared_ctx(const cfg_t *c) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  X509_VERIFY_PARAM *vp;
  int v = c->tls13 ? TLS1_3_VERSION : TLS1_2_VERSION;
  if (!ctx)
    return NULL;
  SSL_CTX_set_min_proto_version(ctx, v);
  SSL_CTX_set_max_proto_version(ctx, v);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); /* as libmosquitto */
  if (SSL_CTX_load_verify_locations(ctx, c->cafile, NULL) != 1)
    goto fail;
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  vp = SSL_CTX_get0_param(ctx);
  if (X509_VERIFY_PARAM_set1_ip_asc(vp, c->host) != 1 &&
      X509_VERIFY_PARAM_set1_host(vp, c->host, 0) != 1)
    goto fail;
  if (c->cert &&
      (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1 ||
       SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1 ||
       SSL_CTX_check_private_key(ctx) != 1))
    goto fail;
  return ctx;
fail:
  fprintf(stderr, "bench_tls_mosq: SSL_CTX setup failed\n");
  SSL_CTX_free(ctx);
  return NULL;
}

static struct mosquitto *client_new(const cfg_t *c, void *obj) {
  struct mosquitto *m = mosquitto_new(NULL, true, obj);
  if (!m) {
    fprintf(stderr, "bench_tls_mosq: mosquitto_new failed\n");
    exit(1);
  }
  mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
  mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
  if (c->cafile && c->shared) {
    /* Used as it is: libmosquitto 2.0 would otherwise configure it again
     * for every client (MOSQ_OPT_SSL_CTX_WITH_DEFAULTS is on by default). */
    mosquitto_int_option(m, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0);
    mosquitto_void_option(m, MOSQ_OPT_SSL_CTX, c->ctx);
  } else if (c->cafile) {
    if (mosquitto_tls_set(m, c->cafile, NULL, c->cert, c->key, NULL) !=
            MOSQ_ERR_SUCCESS ||
        mosquitto_tls_opts_set(m, 1, c->tls13 ? "tlsv1.3" : "tlsv1.2", NULL) !=
            MOSQ_ERR_SUCCESS) {
      fprintf(stderr, "bench_tls_mosq: mosquitto_tls_set failed\n");
      exit(1);
    }
  }
  return m;
}

/* ---- connections ------------------------------------------------------ */

enum { IDLE, CONNECTING, CONNECTED, FAILED };

typedef struct conns conns_t;
typedef struct {
  struct mosquitto *m;
  conns_t *b;
  int state;
} cl_t;

struct conns {
  const cfg_t *cfg;
  cl_t *cl;
  int n;
  int started;
  int connecting;
  int connected;
  int failed;
};

static void settle(cl_t *c, int state) {
  if (c->state != CONNECTING)
    return;
  c->state = state;
  c->b->connecting--;
  if (state == CONNECTED)
    c->b->connected++;
  else
    c->b->failed++;
}

static void cn_connect(struct mosquitto *m, void *obj, int rc) {
  (void)m;
  settle(obj, rc == 0 ? CONNECTED : FAILED);
}

static void cn_disconnect(struct mosquitto *m, void *obj, int rc) {
  (void)m;
  (void)rc;
  settle(obj, FAILED);
}

static void start_next(conns_t *b) {
  cl_t *c;
  if (b->started >= b->n)
    return;
  c = &b->cl[b->started++];
  c->b = b;
  c->m = client_new(b->cfg, c);
  mosquitto_connect_callback_set(c->m, cn_connect);
  mosquitto_disconnect_callback_set(c->m, cn_disconnect);
  c->state = CONNECTING;
  b->connecting++;
  if (mosquitto_connect_async(c->m, b->cfg->host, b->cfg->port, 600) !=
      MOSQ_ERR_SUCCESS)
    settle(c, FAILED);
}

static void bench_connections(const cfg_t *cfg, int n, double *conn_s,
                              double *heap_kib) {
  conns_t b;
  struct pollfd *pfd = calloc(WINDOW, sizeof(*pfd));
  cl_t **who = calloc(WINDOW, sizeof(*who));
  double t0, t1, end;
  size_t h0, h1;
  memset(&b, 0, sizeof(b));
  b.cfg = cfg;
  b.n = n;
  b.cl = calloc((size_t)n, sizeof(*b.cl));
  malloc_trim(0);
  h0 = heap_used();
  t0 = now_s();
  end = t0 + 120;
  while (b.connected + b.failed < n && now_s() < end) {
    int np = 0;
    while (b.connecting < WINDOW && b.started < n)
      start_next(&b);
    /* Only the clients still connecting: the idle ones have nothing to do
     * (uvmqtt's loop does not touch them either). */
    for (int i = 0; i < b.started && np < WINDOW; i++) {
      cl_t *c = &b.cl[i];
      int fd;
      if (c->state != CONNECTING)
        continue;
      fd = mosquitto_socket(c->m);
      if (fd < 0) {
        settle(c, FAILED);
        continue;
      }
      pfd[np].fd = fd;
      pfd[np].events =
          (short)(POLLIN | (mosquitto_want_write(c->m) ? POLLOUT : 0));
      pfd[np].revents = 0;
      who[np++] = c;
    }
    if (np == 0)
      continue;
    if (poll(pfd, (nfds_t)np, 100) < 0)
      continue;
    for (int i = 0; i < np; i++) {
      cl_t *c = who[i];
      int rc = MOSQ_ERR_SUCCESS;
      if (pfd[i].revents & (POLLIN | POLLERR | POLLHUP))
        rc = mosquitto_loop_read(c->m, 1);
      if (rc == MOSQ_ERR_SUCCESS && (pfd[i].revents & POLLOUT))
        rc = mosquitto_loop_write(c->m, 1);
      if (rc != MOSQ_ERR_SUCCESS)
        settle(c, FAILED);
    }
  }
  t1 = now_s();
  usleep(200000); /* as bench_tls: let the last CONNACKs settle */
  h1 = heap_used();
  *conn_s = b.connected / (t1 - t0);
  *heap_kib = (double)(h1 - h0) / b.started / 1024.0;
  printf("%-4s connections: %d ok, %d failed in %.2f s = %.0f conn/s; "
         "heap %.1f KiB per idle connection\n",
         cfg->label, b.connected, b.failed, t1 - t0, *conn_s, *heap_kib);
  for (int i = 0; i < b.started; i++) {
    if (b.cl[i].state == CONNECTED) {
      mosquitto_disconnect(b.cl[i].m); /* written at once: not threaded */
    }
    mosquitto_destroy(b.cl[i].m);
  }
  free(b.cl);
  free(pfd);
  free(who);
}

/* ---- QoS 0 throughput --------------------------------------------------- */

typedef struct {
  long received;
  int connected;
  int subscribed;
} tput_t;

static void tp_conn(struct mosquitto *m, void *obj, int rc) {
  tput_t *t = obj;
  t->connected = rc == 0 ? 1 : -1;
  if (rc == 0 && mosquitto_subscribe(m, NULL, TOPIC, 0) != MOSQ_ERR_SUCCESS)
    t->subscribed = -1;
}

static void tp_sub(struct mosquitto *m, void *obj, int mid, int count,
                   const int *granted) {
  tput_t *t = obj;
  (void)m;
  (void)mid;
  t->subscribed = count == 1 && granted[0] == 0 ? 1 : -1;
}

static void tp_msg(struct mosquitto *m, void *obj,
                   const struct mosquitto_message *msg) {
  tput_t *t = obj;
  (void)m;
  (void)msg;
  t->received++;
}

static double bench_throughput(const cfg_t *cfg, long msgs) {
  static const char payload[PAYLOAD] = "0123456789abcdef0123456789abcdef"
                                       "0123456789abcdef012345678901234";
  tput_t t;
  struct mosquitto *m;
  long published = 0;
  double t0, t1, end, rate;
  memset(&t, 0, sizeof(t));
  m = client_new(cfg, &t);
  mosquitto_connect_callback_set(m, tp_conn);
  mosquitto_subscribe_callback_set(m, tp_sub);
  mosquitto_message_callback_set(m, tp_msg);
  if (mosquitto_connect(m, cfg->host, cfg->port, 600) != MOSQ_ERR_SUCCESS) {
    fprintf(stderr, "bench_tls_mosq: connect failed\n");
    mosquitto_destroy(m);
    return 0;
  }
  end = now_s() + 10;
  while (t.subscribed == 0 && t.connected >= 0 && now_s() < end)
    if (mosquitto_loop(m, 100, 1) != MOSQ_ERR_SUCCESS)
      break;
  t0 = now_s();
  end = t0 + 120;
  while (t.subscribed == 1 && t.received < msgs && now_s() < end) {
    /* Top up after each pass of the loop (bench_tls: after each
     * iteration of the uv loop); outside a callback, libmosquitto
     * writes each PUBLISH at once. */
    while (published < msgs && published - t.received < PUB_WINDOW) {
      if (mosquitto_publish(m, NULL, TOPIC, PAYLOAD, payload, 0, false) !=
          MOSQ_ERR_SUCCESS)
        break;
      published++;
    }
    if (mosquitto_loop(m, 100, 1) != MOSQ_ERR_SUCCESS)
      break;
  }
  t1 = now_s();
  rate = t.received / (t1 - t0);
  printf("%-4s QoS 0 round trip: %ld of %ld messages (%d bytes) in %.2f s = "
         "%.0f msg/s, %.1f MB/s payload\n",
         cfg->label, t.received, msgs, PAYLOAD, t1 - t0, rate,
         rate * PAYLOAD / 1e6);
  mosquitto_disconnect(m);
  mosquitto_destroy(m);
  return rate;
}

static void usage(void) {
  fprintf(stderr, "usage: bench_tls_mosq [-h host] -p port [-c cafile "
                  "[-C cert -K key]] [-s] [-3] [-n connections] "
                  "[-m messages] [-l label]\n");
  exit(2);
}

int main(int argc, char **argv) {
  cfg_t cfg = {.host = "127.0.0.1", .label = NULL};
  int n = 1000, opt, maj, min, rev;
  long msgs = 500000;
  double conn_s = 0, heap_kib = 0, msg_s = 0;
  struct rlimit rl;

  while ((opt = getopt(argc, argv, "h:p:c:C:K:s3n:m:l:")) != -1) {
    switch (opt) {
    case 'h':
      cfg.host = optarg;
      break;
    case 'p':
      cfg.port = atoi(optarg);
      break;
    case 'c':
      cfg.cafile = optarg;
      break;
    case 'C':
      cfg.cert = optarg;
      break;
    case 'K':
      cfg.key = optarg;
      break;
    case 's':
      cfg.shared = true;
      break;
    case '3':
      cfg.tls13 = true;
      break;
    case 'n':
      n = atoi(optarg);
      break;
    case 'm':
      msgs = atol(optarg);
      break;
    case 'l':
      cfg.label = optarg;
      break;
    default:
      usage();
    }
  }
  if (cfg.port <= 0 || (cfg.cert != NULL) != (cfg.key != NULL))
    usage();
  if (!cfg.label)
    cfg.label = cfg.cafile ? "tls" : "tcp";
  signal(SIGPIPE, SIG_IGN);
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  mosquitto_lib_init();
  mosquitto_lib_version(&maj, &min, &rev);
  if (cfg.cafile) {
    /* Made before the heap is measured, as bench_tls's configuration; it
     * also gets OpenSSL's one-time set-up out of the way when every
     * client has its own context. */
    cfg.ctx = shared_ctx(&cfg);
    if (!cfg.ctx)
      return 1;
  }
  printf("libmosquitto %d.%d.%d (%s), %s%s\n", maj, min, rev,
         OpenSSL_version(OPENSSL_VERSION),
         !cfg.cafile ? "plain TCP"
         : cfg.tls13 ? "TLS 1.3"
                     : "TLS 1.2",
         !cfg.cafile  ? ""
         : cfg.shared ? ", one shared SSL_CTX"
                      : ", one SSL_CTX per client (mosquitto_tls_set)");
  if (n > 0)
    bench_connections(&cfg, n, &conn_s, &heap_kib);
  if (msgs > 0)
    msg_s = bench_throughput(&cfg, msgs);
  printf("result %s conn_s=%.0f heap_kib=%.2f msg_s=%.0f\n", cfg.label, conn_s,
         heap_kib, msg_s);
  if (cfg.ctx)
    SSL_CTX_free(cfg.ctx);
  mosquitto_lib_cleanup();
  return 0;
}
