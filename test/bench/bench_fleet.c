/* Fleet benchmarks (issue 16), figures for docs/fleet.md, not tests:
 *
 *   bench_fleet herd N LIMIT   N clients on one loop against a private
 *       mosquitto; the broker is restarted and the clients come back with
 *       the default reconnect policy. Prints the time until every client
 *       has CONNACK again, the attempts it took, and failed attempts, with
 *       the loop's attempt limit LIMIT (0: none). Needs `ulimit -n` above
 *       2 N + 100.
 *   bench_fleet tls N RESUME   N TLS clients sharing one configuration
 *       (session resumption on when RESUME is 1): all connect, then all
 *       drop their connections and reconnect (a network blip, the broker
 *       keeps running), then the broker restarts. For each wave: time,
 *       handshakes per second, resumed handshakes, CPU seconds of this
 *       process and of mosquitto.
 *
 * Run by hand: build/test/bench/bench_fleet herd 10000 64 (UVMQTT_TEST_SRCDIR
 * as for bench_tls). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "uvmqtt.h"
#include "uvmqtt/tls.h"

#include "certs.h"
#include "testutil.h"

typedef struct {
  uvmqtt_client_t *c;
  int connects;
  int fails;
  int disconnects;
} fc_t;

static fc_t *g_c;
static int g_n;

static void on_conn(uvmqtt_client_t *c, int status, const uvmqtt_connack_t *a,
                    void *arg) {
  fc_t *f = arg;
  (void)c;
  (void)a;
  if (status == 0)
    f->connects++;
  else
    f->fails++;
}

static void on_disc(uvmqtt_client_t *c, int status, const uvmqtt_reason_t *r,
                    void *arg) {
  fc_t *f = arg;
  (void)c;
  (void)status;
  (void)r;
  f->disconnects++;
}

static int count_connected(int round) {
  int n = 0;
  for (int i = 0; i < g_n; i++)
    n += g_c[i].connects >= round;
  return n;
}

static int count_fails(void) {
  int n = 0;
  for (int i = 0; i < g_n; i++)
    n += g_c[i].fails;
  return n;
}

/* Runs until every client has `round` CONNACKs; returns seconds or -1. */
static double wait_round(uv_loop_t *loop, int round, unsigned limit_ms) {
  uint64_t t0 = uv_hrtime(), end = tu_now_ms() + limit_ms;
  while (count_connected(round) < g_n && tu_now_ms() < end)
    uv_run(loop, UV_RUN_ONCE);
  if (count_connected(round) < g_n)
    return -1;
  return (double)(uv_hrtime() - t0) / 1e9;
}

static double cpu_self(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static double cpu_pid(pid_t pid) {
  char path[64], buf[1024];
  unsigned long ut = 0, st = 0;
  FILE *f;
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  f = fopen(path, "r");
  if (!f)
    return 0;
  if (fgets(buf, sizeof(buf), f)) {
    char *p = strrchr(buf, ')');
    /* fields 14 and 15 (utime, stime) counted from the state (3). */
    if (p &&
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
               &ut, &st) != 2)
      ut = st = 0;
  }
  fclose(f);
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void make_clients(uv_loop_t *loop, const uvmqtt_tls_config_t *tls,
                         int port, unsigned limit) {
  uvmqtt_options_t *o;
  uvmqtt_options_new(&o);
  uvmqtt_options_set_keepalive(o, 600);
  if (tls)
    uvmqtt_options_set_tls(o, tls, true);
  for (int i = 0; i < g_n; i++) {
    if (uvmqtt_client_new(loop, o, &g_c[i].c) != 0) {
      fprintf(stderr, "client_new failed\n");
      exit(1);
    }
    if (i == 0)
      uvmqtt_loop_set_attempt_limit(loop, limit);
    uvmqtt_client_on_connect(g_c[i].c, on_conn, &g_c[i]);
    uvmqtt_client_on_disconnect(g_c[i].c, on_disc, &g_c[i]);
    if (uvmqtt_client_connect(g_c[i].c, tls ? "localhost" : "127.0.0.1",
                              port) != 0) {
      fprintf(stderr, "connect failed\n");
      exit(1);
    }
  }
  uvmqtt_options_del(o);
}

static void close_all(uv_loop_t *loop) {
  for (int i = 0; i < g_n; i++)
    uvmqtt_client_close(g_c[i].c, NULL);
  tu_loop_close(loop, 10000);
}

static int herd(int n, unsigned limit) {
  uv_loop_t loop;
  tu_broker_t b;
  uvmqtt_loop_stats_t ls0, ls1;
  double t;
  g_n = n;
  g_c = calloc((size_t)n, sizeof(*g_c));
  uv_loop_init(&loop);
  if (tu_broker_start(&b, 0, "max_connections -1\n") != 0)
    return 1;
  make_clients(&loop, NULL, b.port, limit);
  t = wait_round(&loop, 1, 120000);
  uvmqtt_loop_stats(&loop, &ls0);
  printf("herd n=%d limit=%u: first connect %.3f s, %llu attempts, %d "
         "failed\n",
         n, limit, t, (unsigned long long)ls0.attempts, count_fails());
  int fails0 = count_fails();
  if (tu_broker_restart(&b) != 0)
    return 1;
  /* The clients notice the restart now; time from here. */
  t = wait_round(&loop, 2, 120000);
  uvmqtt_loop_stats(&loop, &ls1);
  printf("herd n=%d limit=%u: after restart all back in %.3f s, %llu "
         "attempts, %d failed, at most %u at once, %u waiting\n",
         n, limit, t, (unsigned long long)(ls1.attempts - ls0.attempts),
         count_fails() - fails0, ls1.attempts_active_max,
         ls1.attempts_waiting_max);
  close_all(&loop);
  tu_broker_cleanup(&b);
  free(g_c);
  return 0;
}

static void tls_wave(uv_loop_t *loop, const char *what, int round,
                     uvmqtt_tls_config_t *cfg, pid_t broker) {
  uint64_t hs0, res0, hs1, res1;
  double c0 = cpu_self(), b0 = cpu_pid(broker), t;
  uvmqtt_tls_config_session_stats(cfg, &hs0, &res0);
  t = wait_round(loop, round, 120000);
  uvmqtt_tls_config_session_stats(cfg, &hs1, &res1);
  printf("tls %s: %d clients in %.3f s, %.0f handshakes/s, %llu of %llu "
         "resumed, cpu client %.2f s, broker %.2f s\n",
         what, g_n, t, t > 0 ? g_n / t : 0, (unsigned long long)(res1 - res0),
         (unsigned long long)(hs1 - hs0), cpu_self() - c0,
         cpu_pid(broker) - b0);
}

static int tls(int n, int resume) {
  uv_loop_t loop;
  tu_broker_t b;
  tt_ports_t ports;
  char dir[256];
  uvmqtt_tls_config_t *cfg;
  g_n = n;
  g_c = calloc((size_t)n, sizeof(*g_c));
  uv_loop_init(&loop);
  if (tt_certs_make(dir, sizeof(dir)) != 0 ||
      tt_broker_start(&b, dir, &ports) != 0)
    return 1;
  uvmqtt_tls_config_new(&cfg);
  uvmqtt_tls_config_set_ca_file(cfg, tt_path(dir, "ca.crt"));
  uvmqtt_tls_config_set_session_resumption(cfg, resume != 0);
  make_clients(&loop, cfg, ports.server, 64);
  printf("tls n=%d resumption %s\n", n, resume ? "on" : "off");
  tls_wave(&loop, "first connect", 1, cfg, b.pid);
  /* A network blip: every connection drops, the broker keeps running. */
  for (int i = 0; i < n; i++)
    uvmqtt_client_disconnect(g_c[i].c);
  for (int i = 0; i < 200; i++)
    uv_run(&loop, UV_RUN_NOWAIT);
  for (int i = 0; i < n; i++)
    uvmqtt_client_connect(g_c[i].c, "localhost", ports.server);
  tls_wave(&loop, "reconnect (broker up)", 2, cfg, b.pid);
  if (tu_broker_restart(&b) != 0)
    return 1;
  tls_wave(&loop, "after broker restart", 3, cfg, b.pid);
  close_all(&loop);
  uvmqtt_tls_config_free(cfg);
  tu_broker_cleanup(&b);
  tt_certs_remove(dir);
  free(g_c);
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 4 && !strcmp(argv[1], "herd"))
    return herd(atoi(argv[2]), (unsigned)atoi(argv[3]));
  if (argc == 4 && !strcmp(argv[1], "tls"))
    return tls(atoi(argv[2]), atoi(argv[3]));
  fprintf(stderr, "usage: %s herd N LIMIT | tls N RESUME\n", argv[0]);
  return 2;
}
