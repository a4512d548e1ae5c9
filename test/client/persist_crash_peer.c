/* A publisher or a persistent-session subscriber with a store, for the
 * crash tests (test_persist_crash.c, scripts/persist-crash.sh): they are
 * killed with SIGKILL at random moments and started again on their store.
 *
 *   persist_crash_peer pub PORT STORE LOG COUNT QOS RATE [sync]
 *     publishes the numbers 1..COUNT as payloads ("17"), each once: a
 *     number is appended to LOG (write(2)) when the store says it is
 *     durable, before it can be sent, and again when a restart finds it
 *     in the store (the kill may have come in between); it goes on after the
 *     highest number that is logged or restored from the store (restored
 *     messages are resent by the library). Exits 0 once every message
 *     is acknowledged. RATE: messages per second at most (0: no limit).
 *   persist_crash_peer sub PORT STORE OUT QOS [sync|manual]
 *     subscribes to crash/# (persistent session) and appends each payload
 *     it is handed and its DUP flag ("17 0") to OUT (write(2)), until
 *     killed. manual: manual acknowledgement, each message acknowledged
 *     1 to 20 ms after it was handed over (so that kills land between
 *     delivery and ack); the last handle handed over is kept in OUT.handle
 *     and, at the next start, acknowledged late: what uvmqtt_ack() said
 *     is appended to OUT.late ("late ESTALE"). first: record first
 *     (uvmqtt_options_set_record_first): each line also carries the
 *     delivery id and the maybe-delivered flag ("17 0 1099511627777 0").
 *
 * The client ids are crash-pub-QOS and crash-sub-QOS; a window of 20
 * (mosquitto's max_inflight_messages); MQTT 3.1.1, or 5 when the
 * environment has UVMQTT_CRASH_PROTO=5. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uvmqtt.h"

static uv_loop_t *loop;
static uvmqtt_client_t *client;
static uvmqtt_store_t *store;
static int out_fd = -1;
static long count, next_num, acked, issued;
static int qos, restored_pending;
static long pid_num[65536];
/* Paced: at most `rate` messages a second (0: as fast as the window
 * allows), so that kills land all along the stream. */
static long rate, allowance;
static uv_timer_t pace;

static void die(const char *what, int rc) {
  fprintf(stderr, "persist_crash_peer: %s: %s\n", what, uvmqtt_strerror(rc));
  exit(2);
}

static void append(const char *s, size_t n) {
  while (n > 0) {
    ssize_t w = write(out_fd, s, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      perror("write");
      exit(2);
    }
    s += w;
    n -= (size_t)w;
  }
}

static void closed(uvmqtt_client_t *c) {
  (void)c;
  uvmqtt_store_close(store, NULL, NULL);
  if (rate)
    uv_close((uv_handle_t *)&pace, NULL);
}

static void maybe_done(void) {
  static int done;
  if (!done && next_num > count && acked == issued && restored_pending == 0) {
    done = 1;
    uvmqtt_client_disconnect(client);
    uvmqtt_client_close(client, closed);
  }
}

static void pump(void);

static void on_acked(uvmqtt_client_t *c, const uvmqtt_pub_result_t *r,
                     void *arg) {
  (void)c;
  (void)arg;
  if (r->status < 0)
    die("publish", r->status);
  acked++;
  pump();
  maybe_done();
}

static void on_restored_done(uvmqtt_client_t *c, const uvmqtt_pub_result_t *r,
                             void *arg) {
  (void)c;
  (void)arg;
  if (r->status < 0)
    die("restored message", r->status);
  restored_pending--;
  maybe_done();
}

static void on_stored(uvmqtt_client_t *c, int status, uint16_t id, void *arg) {
  char line[32];
  (void)c;
  (void)arg;
  if (status < 0)
    die("store", status);
  int n = snprintf(line, sizeof line, "%ld\n", pid_num[id]);
  append(line, (size_t)n);
}

static void on_pace(uv_timer_t *t) {
  (void)t;
  allowance = rate / 100 > 0 ? rate / 100 : 1;
  pump();
}

static void pump(void) {
  while (next_num <= count && issued - acked < 40 && (!rate || allowance > 0)) {
    allowance--;
    char payload[32];
    int n = snprintf(payload, sizeof payload, "%ld", next_num);
    int id = uvmqtt_publish(client, "crash/t", payload, (size_t)n, qos, false,
                            on_acked, NULL);
    if (id < 0)
      die("publish", id);
    pid_num[id] = next_num++;
    issued++;
  }
}

static void on_connect(uvmqtt_client_t *c, int status,
                       const uvmqtt_connack_t *ack, void *arg) {
  (void)c;
  (void)ack;
  (void)arg;
  if (status == 0) {
    pump();
    maybe_done(); /* a run that finds nothing left to do */
  }
}

/* Manual acknowledgement: each handle is acknowledged by its own timer. */
static int manual, first;
static char handle_path[400];

typedef struct {
  uv_timer_t t;
  uint64_t handle;
} late_ack_t;

static void ack_freed(uv_handle_t *h) {
  free(h);
}

static void on_ack_timer(uv_timer_t *t) {
  late_ack_t *a = (late_ack_t *)t;
  int rc = uvmqtt_ack(client, a->handle);
  if (rc < 0 && rc != UVMQTT_ESTALE) /* stale: the connection went */
    die("ack", rc);
  uv_close((uv_handle_t *)t, ack_freed);
}

/* One pwrite(2) over the same 8 bytes: a kill cannot leave it torn or
 * empty (truncating first would). */
static void keep_handle(uint64_t h) {
  static int fd = -1;
  if (fd < 0)
    fd = open(handle_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd >= 0 && pwrite(fd, &h, sizeof h, 0) != (ssize_t)sizeof h)
    die("handle file", UVMQTT_EINVAL);
}

static void on_message(uvmqtt_client_t *c, const uvmqtt_message_t *m,
                       void *arg) {
  (void)c;
  (void)arg;
  char line[80];
  int n =
      snprintf(line, sizeof line, "%.*s %d %llu %d\n",
               (int)(m->payload_len < 40 ? m->payload_len : 40),
               (const char *)m->payload, m->dup ? 1 : 0,
               (unsigned long long)m->delivery_id, m->maybe_delivered ? 1 : 0);
  append(line, (size_t)n);
  if (manual && m->ack_handle) {
    keep_handle(m->ack_handle);
    late_ack_t *a = malloc(sizeof *a);
    if (!a)
      die("ack", UVMQTT_ENOMEM);
    a->handle = m->ack_handle;
    uv_timer_init(loop, &a->t);
    uv_timer_start(&a->t, on_ack_timer, 1 + (uint64_t)(rand() % 20), 0);
  }
}

/* A handle of the previous process, acknowledged now: must be refused. */
static void ack_previous(const char *out) {
  uint64_t h;
  char late[400], line[64];
  int fd = open(handle_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return;
  ssize_t r = read(fd, &h, sizeof h);
  close(fd);
  if (r != (ssize_t)sizeof h)
    return;
  int rc = uvmqtt_ack(client, h);
  snprintf(late, sizeof late, "%s.late", out);
  fd = open(late, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return;
  int n = snprintf(line, sizeof line, "late %s\n",
                   rc < 0 ? uvmqtt_err_name(rc) : "accepted");
  if (write(fd, line, (size_t)n) != n) {
    /* the test then finds no line and says so */
  }
  close(fd);
}

static void on_sub_connect(uvmqtt_client_t *c, int status,
                           const uvmqtt_connack_t *ack, void *arg) {
  (void)arg;
  if (status == 0 && !ack->session_present)
    uvmqtt_subscribe(c, "crash/#", qos, NULL, NULL);
}

static long highest_logged(const char *path) {
  FILE *f = fopen(path, "r");
  long n, max = 0;
  if (!f)
    return 0;
  while (fscanf(f, "%ld", &n) == 1)
    if (n > max)
      max = n;
  fclose(f);
  return max;
}

static long restored_max;
static void on_listed(uvmqtt_client_t *c, const uvmqtt_publish_t *pub,
                      int state, void *arg) {
  char num[32];
  (void)c;
  (void)state;
  (void)arg;
  size_t n = pub->payload.len < 31 ? pub->payload.len : 31;
  memcpy(num, pub->payload.data, n);
  num[n] = 0;
  long v = atol(num);
  if (v > restored_max)
    restored_max = v;
  /* Durable already; the kill may have come before it was logged. */
  char line[40];
  int len = snprintf(line, sizeof line, "%ld\n", v);
  append(line, (size_t)len);
}

static int store_status = 1;
static void on_store_open(uvmqtt_store_t *s, int status,
                          const uvmqtt_store_report_t *rep, void *arg) {
  (void)arg;
  store = s;
  store_status = status;
  if (status == 0 && rep->dropped_records)
    fprintf(stderr, "persist_crash_peer: store: %llu record(s) dropped\n",
            (unsigned long long)rep->dropped_records);
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: see the source\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  int is_pub = strcmp(argv[1], "pub") == 0;
  int port = atoi(argv[2]);
  const char *store_path = argv[3], *out = argv[4];
  int sync = 0;
  if (is_pub) {
    count = atol(argv[5]);
    qos = argc > 6 ? atoi(argv[6]) : 1;
    rate = argc > 7 ? atol(argv[7]) : 0;
    sync = argc > 8 && !strcmp(argv[8], "sync");
  } else {
    qos = atoi(argv[5]);
    sync = argc > 6 && !strcmp(argv[6], "sync");
    manual = argc > 6 && !strcmp(argv[6], "manual");
    first = argc > 6 && !strcmp(argv[6], "first");
    snprintf(handle_path, sizeof handle_path, "%s.handle", out);
    srand((unsigned)getpid());
  }
  loop = uv_default_loop();
  /* Nothing else is on the loop yet: it runs until the store is open. */
  int rc = uvmqtt_store_open(loop, store_path, NULL, on_store_open, NULL);
  if (rc == 0)
    uv_run(loop, UV_RUN_DEFAULT);
  if (rc < 0 || (rc = store_status) < 0)
    die("store", rc);
  out_fd = open(out, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (out_fd < 0) {
    perror(out);
    return 2;
  }
  uvmqtt_options_t *o;
  char id[32];
  snprintf(id, sizeof id, "crash-%s-%d", is_pub ? "pub" : "sub", qos);
  uvmqtt_options_new(&o);
  uvmqtt_options_set_client_id(o, id);
  const char *proto = getenv("UVMQTT_CRASH_PROTO");
  bool v5 = proto && !strcmp(proto, "5");
  uvmqtt_options_set_protocol(o, v5 ? UVMQTT_V5 : UVMQTT_V311);
  if (v5) /* v5 ends a session at disconnect unless told otherwise */
    uvmqtt_options_set_session_expiry(o, 3600);
  if (manual)
    uvmqtt_options_set_manual_ack(o, true, 0, 0);
  if (first)
    uvmqtt_options_set_record_first(o, true);
  uvmqtt_options_set_clean_session(o, false);
  uvmqtt_options_set_max_inflight(o, 20);
  uvmqtt_options_set_reconnect(o, true, 50, 200, 0.2);
  uvmqtt_options_set_store(
      o, store, sync ? UVMQTT_DURABLE_POWER : UVMQTT_DURABLE_PROCESS);
  if ((rc = uvmqtt_client_new(loop, o, &client)) < 0)
    die("client", rc);
  uvmqtt_options_del(o);
  if (is_pub) {
    restored_pending = uvmqtt_client_restored(client, on_listed, NULL);
    uvmqtt_client_on_restored_done(client, on_restored_done, NULL);
    uvmqtt_client_on_stored(client, on_stored, NULL);
    long logged = highest_logged(out);
    next_num = (logged > restored_max ? logged : restored_max) + 1;
    uvmqtt_client_on_connect(client, on_connect, NULL);
    if (rate) {
      uv_timer_init(loop, &pace);
      uv_timer_start(&pace, on_pace, 10, 10);
    }
    fprintf(stderr, "pub: restored %d, logged up to %ld, from %ld\n",
            restored_pending, logged, next_num);
  } else {
    uvmqtt_client_on_connect(client, on_sub_connect, NULL);
    uvmqtt_client_on_message(client, on_message, NULL);
    if (manual)
      ack_previous(out);
  }
  if ((rc = uvmqtt_client_connect(client, "127.0.0.1", port)) < 0)
    die("connect", rc);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return 0;
}
