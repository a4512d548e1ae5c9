/* uvmqtt-pub and uvmqtt-sub against a private mosquitto.
 *
 * The tools' paths come from the environment (UVMQTT_PUB, UVMQTT_SUB, set
 * by meson). argv[1] names one case (or "all"). Every child process runs
 * under a time limit. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proxyutil.h"
#include "testutil.h"

static const char *pub, *sub;
static tu_broker_t broker;
static int failures;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                            \
      fputc('\n', stderr);                                                     \
      failures++;                                                              \
      return;                                                                  \
    }                                                                          \
  } while (0)

/* Starts `sh -c cmd` in the background; returns its pid. */
static pid_t spawn(const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  pid_t pid = fork();
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  return pid;
}

/* Waits for pid at most timeout_ms; kills it on timeout (returns 124). */
static int reap(pid_t pid, unsigned timeout_ms) {
  uint64_t end = tu_now_ms() + timeout_ms;
  int st;
  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (r < 0)
      return -1;
    if (tu_now_ms() > end) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      return 124;
    }
    usleep(10000);
  }
}

/* Runs a command to completion (at most timeout_ms). */
static int run(unsigned timeout_ms, const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  return reap(spawn("%s", cmd), timeout_ms);
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 1 << 16, n = 0;
  char *b = malloc(cap + 1);
  size_t r;
  while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
    n += r;
    if (n == cap) {
      char *nb = realloc(b, (cap *= 2) + 1);
      if (!nb) {
        free(b);
        b = NULL;
      }
      b = nb;
    }
  }
  fclose(f);
  if (b)
    b[n] = '\0';
  if (len)
    *len = n;
  return b;
}

static void path(char *out, size_t cap, const char *name) {
  snprintf(out, cap, "%s/%s", broker.dir, name);
}

/* Waits until mosquitto logged `needle` (a client's SUBSCRIBE, ...). */
static int wait_log(const char *needle, unsigned timeout_ms) {
  uint64_t end = tu_now_ms() + timeout_ms;
  while (tu_now_ms() < end) {
    if (tu_broker_log_contains(&broker, needle))
      return 0;
    usleep(10000);
  }
  return -1;
}

/* A subscriber in the background, known to be subscribed on return. */
static pid_t sub_bg(const char *id, const char *args, const char *outfile) {
  char needle[128];
  pid_t pid = spawn("exec \"%s\" -p %d -i %s %s >\"%s\" 2>\"%s.err\"", sub,
                    broker.port, id, args, outfile, outfile);
  snprintf(needle, sizeof(needle), "Received SUBSCRIBE from %s", id);
  if (wait_log(needle, 5000) < 0) {
    fprintf(stderr, "subscriber %s did not subscribe\n", id);
    kill(pid, SIGKILL);
    reap(pid, 1000);
    return -1;
  }
  /* mosquitto logs SUBSCRIBE before it has sent SUBACK: let it finish. */
  usleep(50000);
  return pid;
}

/* ---- cases ------------------------------------------------------------------
 */

static void roundtrip(int qos, const char *ver) {
  char out[512], id[64], args[256];
  path(out, sizeof(out), "rt.out");
  snprintf(id, sizeof(id), "rt-%d-%s", qos, ver);
  snprintf(args, sizeof(args), "-V %s -q %d -t rt/%s/%d -C 1 -v -W 10", ver,
           qos, ver, qos);
  pid_t s = sub_bg(id, args, out);
  CHECK(s > 0, "subscriber");
  int rc = run(10000, "\"%s\" -p %d -V %s -q %d -t rt/%s/%d -m \"hello %d\"",
               pub, broker.port, ver, qos, ver, qos, qos);
  CHECK(rc == 0, "pub exit %d", rc);
  rc = reap(s, 10000);
  CHECK(rc == 0, "sub exit %d", rc);
  char *text = slurp(out, NULL), want[128];
  snprintf(want, sizeof(want), "rt/%s/%d hello %d\n", ver, qos, qos);
  CHECK(text && strcmp(text, want) == 0, "got '%s' want '%s'",
        text ? text : "(none)", want);
  free(text);
}

static void case_roundtrip(void) {
  static const char *vers[] = {"31", "311", "5", "mqttv311"};
  for (int v = 0; v < 4; v++)
    for (int q = 0; q <= 2; q++) {
      int before = failures;
      roundtrip(q, vers[v]);
      if (failures != before) {
        fprintf(stderr, "round trip QoS %d -V %s failed\n", q, vers[v]);
        return;
      }
    }
}

static void case_retained(void) {
  char out[512];
  path(out, sizeof(out), "ret.out");
  int rc =
      run(10000, "\"%s\" -p %d -q 1 -r -t ret/a -m kept", pub, broker.port);
  CHECK(rc == 0, "pub exit %d", rc);
  rc = run(10000, "\"%s\" -p %d -t ret/# -C 1 -F \"%%t %%p %%r %%l\" >\"%s\"",
           sub, broker.port, out);
  CHECK(rc == 0, "sub exit %d", rc);
  char *text = slurp(out, NULL);
  CHECK(text && strcmp(text, "ret/a kept 1 4\n") == 0, "got '%s'",
        text ? text : "(none)");
  free(text);
  /* -R skips it: nothing arrives within -W. */
  rc = run(10000, "\"%s\" -p %d -t ret/# -R -W 1 --quiet >\"%s\"", sub,
           broker.port, out);
  CHECK(rc == 27, "sub -R exit %d", rc);
  text = slurp(out, NULL);
  CHECK(text && !*text, "got '%s'", text ? text : "(none)");
  free(text);
}

static void case_will(void) {
  char out[512], victim_out[512];
  path(out, sizeof(out), "will.out");
  path(victim_out, sizeof(victim_out), "victim.out");
  pid_t w = sub_bg("watcher", "-t will/x -C 1 -v -W 15", out);
  CHECK(w > 0, "watcher");
  pid_t v = sub_bg("victim",
                   "-t nothing --will-topic will/x --will-payload gone "
                   "--will-qos 1",
                   victim_out);
  CHECK(v > 0, "victim");
  kill(v, SIGKILL); /* no DISCONNECT: the broker publishes the will */
  reap(v, 2000);
  int rc = reap(w, 15000);
  CHECK(rc == 0, "watcher exit %d", rc);
  char *text = slurp(out, NULL);
  CHECK(text && strcmp(text, "will/x gone\n") == 0, "got '%s'",
        text ? text : "(none)");
  free(text);
}

static void case_count_and_timeout(void) {
  char out[512];
  path(out, sizeof(out), "cnt.out");
  pid_t s = sub_bg("counter", "-t cnt -C 3 -W 10", out);
  CHECK(s > 0, "sub");
  int rc =
      run(10000, "\"%s\" -p %d -q 1 -t cnt -m m --repeat 5", pub, broker.port);
  CHECK(rc == 0, "pub exit %d", rc);
  rc = reap(s, 10000);
  CHECK(rc == 0, "sub exit %d", rc);
  char *text = slurp(out, NULL);
  CHECK(text && strcmp(text, "m\nm\nm\n") == 0, "got '%s'",
        text ? text : "(none)");
  free(text);
  uint64_t t0 = tu_now_ms();
  rc =
      run(10000, "\"%s\" -p %d -t silent -W 1 2>\"%s\"", sub, broker.port, out);
  uint64_t dt = tu_now_ms() - t0;
  CHECK(rc == 27, "-W exit %d", rc);
  CHECK(dt >= 900 && dt < 5000, "-W took %llu ms", (unsigned long long)dt);
}

static void case_remove_retained(void) {
  char out[512];
  path(out, sizeof(out), "rr.out");
  for (int i = 0; i < 5; i++) {
    int rc = run(10000, "\"%s\" -p %d -q 1 -r -t rr/%d/x -m v%d", pub,
                 broker.port, i, i);
    CHECK(rc == 0, "pub %d exit %d", i, rc);
  }
  int rc =
      run(10000, "\"%s\" -p %d -q 1 -r -t other -m stays", pub, broker.port);
  CHECK(rc == 0, "pub exit %d", rc);
  rc = run(15000, "\"%s\" -p %d -t rr/# --remove-retained >\"%s\"", sub,
           broker.port, out);
  CHECK(rc == 0, "--remove-retained exit %d", rc);
  size_t n;
  char *text = slurp(out, &n);
  int lines = 0;
  for (size_t i = 0; text && i < n; i++)
    lines += text[i] == '\n';
  free(text);
  CHECK(lines == 5, "printed %d retained messages", lines);
  /* None left under rr/#, the other one untouched. */
  rc = run(10000, "\"%s\" -p %d -t rr/# --retained-only -W 1 --quiet >\"%s\"",
           sub, broker.port, out);
  CHECK(rc == 27, "check exit %d", rc);
  text = slurp(out, NULL);
  CHECK(text && !*text, "left: '%s'", text ? text : "(none)");
  free(text);
  rc = run(10000, "\"%s\" -p %d -t other -C 1 >\"%s\"", sub, broker.port, out);
  CHECK(rc == 0, "other exit %d", rc);
  text = slurp(out, NULL);
  CHECK(text && strcmp(text, "stays\n") == 0, "other: '%s'",
        text ? text : "(none)");
  free(text);
}

static void case_lines(void) {
  enum { N = 10000 };
  char out[512], in[512];
  path(out, sizeof(out), "lines.out");
  path(in, sizeof(in), "lines.in");
  FILE *f = fopen(in, "w");
  CHECK(f, "cannot write %s", in);
  for (int i = 1; i <= N; i++)
    fprintf(f, "line %d\n", i);
  fclose(f);
  pid_t s = sub_bg("liner", "-q 1 -t lines -C 10000 -W 60", out);
  CHECK(s > 0, "sub");
  /* Through a pipe (the streamed uv_pipe_t path). */
  int rc = run(60000, "cat \"%s\" | \"%s\" -p %d -q 1 -t lines -l", in, pub,
               broker.port);
  CHECK(rc == 0, "pub exit %d", rc);
  rc = reap(s, 60000);
  CHECK(rc == 0, "sub exit %d", rc);
  char *text = slurp(out, NULL);
  char *orig = slurp(in, NULL);
  CHECK(text && orig && strcmp(text, orig) == 0,
        "the %d lines did not arrive complete and in order", N);
  free(text);
  free(orig);
  /* From a regular file (the uv_fs path), a last line without newline. */
  f = fopen(in, "w");
  CHECK(f, "cannot write %s", in);
  fputs("a\nb\n\nc", f);
  fclose(f);
  s = sub_bg("liner2", "-q 1 -t lines2 -C 4 -W 20", out);
  CHECK(s > 0, "sub");
  rc = run(20000, "\"%s\" -p %d -q 1 -t lines2 -l <\"%s\"", pub, broker.port,
           in);
  CHECK(rc == 0, "pub exit %d", rc);
  rc = reap(s, 20000);
  CHECK(rc == 0, "sub exit %d", rc);
  text = slurp(out, NULL);
  CHECK(text && strcmp(text, "a\nb\n\nc\n") == 0, "got '%s'",
        text ? text : "(none)");
  free(text);
}

static void case_errors(void) {
  char err[512];
  path(err, sizeof(err), "err.txt");
  int closed = tu_free_port();
  int rc = run(15000, "\"%s\" -p %d -t a -m x 2>\"%s\"", pub, closed, err);
  CHECK(rc != 0 && rc != 124, "pub to a closed port exit %d", rc);
  char *text = slurp(err, NULL);
  CHECK(text && strstr(text, "uvmqtt-pub:") && strstr(text, "refused"),
        "stderr '%s'", text ? text : "(none)");
  CHECK(strchr(text, '\n') == text + strlen(text) - 1, "not one line: '%s'",
        text);
  free(text);
  rc = run(15000, "\"%s\" -p %d -t a 2>\"%s\"", sub, closed, err);
  CHECK(rc != 0 && rc != 124, "sub to a closed port exit %d", rc);
  rc = run(5000, "\"%s\" -p %d -t a -m x --no-such-flag 2>\"%s\"", pub,
           broker.port, err);
  CHECK(rc != 0 && rc != 124, "bad argument exit %d", rc);
  text = slurp(err, NULL);
  CHECK(text && strstr(text, "--no-such-flag"), "stderr '%s'",
        text ? text : "(none)");
  free(text);
  rc = run(5000, "\"%s\" -p %d -t a/# -m x 2>\"%s\"", pub, broker.port, err);
  CHECK(rc != 0 && rc != 124, "wildcard topic exit %d", rc);
  rc = run(5000, "\"%s\" -p %d -q 3 -t a -m x 2>\"%s\"", pub, broker.port, err);
  CHECK(rc != 0 && rc != 124, "QoS 3 exit %d", rc);
  rc = run(5000, "\"%s\" -p %d -t a -m x -D publish user-property k v 2>\"%s\"",
           pub, broker.port, err);
  CHECK(rc != 0 && rc != 124, "-D with 3.1.1 exit %d", rc);
  rc = run(5000, "\"%s\" -p %d -t a 2>\"%s\" --help >/dev/null", pub,
           broker.port, err);
  CHECK(rc == 0, "--help exit %d", rc);
  /* A name that cannot resolve: a DNS failure, not a hang. */
  rc =
      run(20000, "\"%s\" -h no-such-host.invalid -t a -m x 2>\"%s\"", pub, err);
  CHECK(rc != 0 && rc != 124, "unresolvable exit %d", rc);
  text = slurp(err, NULL);
  CHECK(text && strstr(text, "DNS"), "stderr '%s'", text ? text : "(none)");
  free(text);
}

static void case_v5_props(void) {
  char out[512];
  path(out, sizeof(out), "v5.out");
  pid_t s = sub_bg("v5sub", "-V 5 -t v5/t -C 1 -F \"%t:%p\" -W 10", out);
  CHECK(s > 0, "sub");
  int rc = run(10000,
               "\"%s\" -p %d -V 5 -q 1 -t v5/t -m hi "
               "-D publish user-property k v "
               "-D publish message-expiry-interval 60 "
               "-D publish content-type text/plain "
               "-D publish response-topic v5/r "
               "-D publish correlation-data abc "
               "-D publish payload-format-indicator 1 "
               "-D connect session-expiry-interval 10 -x 10",
               pub, broker.port);
  CHECK(rc == 0, "pub exit %d", rc);
  rc = reap(s, 10000);
  CHECK(rc == 0, "sub exit %d", rc);
  char *text = slurp(out, NULL);
  CHECK(text && strcmp(text, "v5/t:hi\n") == 0, "got '%s'",
        text ? text : "(none)");
  free(text);
  /* -L with credentials and the topic in the URL; -E. */
  rc = run(10000, "\"%s\" -L mqtt://u:p@127.0.0.1:%d/url/t -E", sub,
           broker.port);
  CHECK(rc == 0, "sub -L -E exit %d", rc);
}

static void case_persistent(void) {
  /* -c: a QoS 1 message published while the subscriber is away arrives
   * when it comes back; -U removes the subscription for good. */
  char out[512];
  path(out, sizeof(out), "pers.out");
  int rc =
      run(10000, "\"%s\" -p %d -c -i keeper -q 1 -t pers -E", sub, broker.port);
  CHECK(rc == 0, "first sub exit %d", rc);
  rc = run(10000, "\"%s\" -p %d -q 1 -t pers -m while-away", pub, broker.port);
  CHECK(rc == 0, "pub exit %d", rc);
  rc = run(10000, "\"%s\" -p %d -c -i keeper -q 1 -t pers -C 1 >\"%s\"", sub,
           broker.port, out);
  CHECK(rc == 0, "second sub exit %d", rc);
  char *text = slurp(out, NULL);
  CHECK(text && strcmp(text, "while-away\n") == 0, "got '%s'",
        text ? text : "(none)");
  free(text);
  rc = run(10000, "\"%s\" -p %d -c -i keeper -U pers", sub, broker.port);
  CHECK(rc == 0, "-U exit %d", rc);
}

static void case_store(void) {
  /* --store: a publisher killed mid-stream resumes what it had accepted
   * (stderr says so), then leaves nothing behind; bad uses are refused. */
  char store[512], err[512];
  path(store, sizeof(store), "pub.store");
  path(err, sizeof(err), "store.err");
  pid_t p = spawn("exec \"%s\" -p %d -c -i storer --store \"%s\" -q 1 -t st "
                  "-m x --repeat 1000000 2>/dev/null",
                  pub, broker.port, store);
  CHECK(p > 0, "pub");
  /* Mid-stream: connected and publishing (a window is always pending). */
  CHECK(wait_log("Received PUBLISH from storer", 5000) == 0,
        "pub never published");
  usleep(200000);
  kill(p, SIGKILL);
  reap(p, 5000);
  int rc = run(10000,
               "\"%s\" -p %d -c -i storer --store \"%s\" -q 1 -t st -m y "
               "2>\"%s\"",
               pub, broker.port, store, err);
  CHECK(rc == 0, "resuming pub exit %d", rc);
  char *text = slurp(err, NULL);
  CHECK(text && strstr(text, "resuming "), "no resume reported: '%s'",
        text ? text : "(none)");
  free(text);
  rc = run(10000,
           "\"%s\" -p %d -c -i storer --store \"%s\" -q 1 -t st -m z "
           "2>\"%s\"",
           pub, broker.port, store, err);
  CHECK(rc == 0, "third pub exit %d", rc);
  text = slurp(err, NULL);
  CHECK(text && !strstr(text, "resuming "), "left over: '%s'",
        text ? text : "(none)");
  free(text);
  /* A store needs a client id; a file that is not a store is refused. */
  rc = run(10000, "\"%s\" -p %d --store \"%s\" -t st -m x 2>/dev/null", pub,
           broker.port, store);
  CHECK(rc != 0, "--store without -i accepted");
  char foreign[512];
  CHECK(tu_write_file(broker.dir, "foreign.txt", "not a store at all\n",
                      foreign, sizeof(foreign)) == 0,
        "write");
  rc = run(10000, "\"%s\" -p %d -i storer --store \"%s\" -t st -m x 2>\"%s\"",
           pub, broker.port, foreign, err);
  CHECK(rc != 0, "a foreign file taken for a store");
  text = slurp(err, NULL);
  CHECK(text && strstr(text, "not a uvmqtt store"), "got '%s'",
        text ? text : "(none)");
  free(text);
  /* The same store for a v5 client of the same id: refused. */
  rc = run(10000,
           "\"%s\" -V 5 -p %d -c -i storer --store \"%s\" -q 1 -t st -m x "
           "2>\"%s\"",
           pub, broker.port, store, err);
  CHECK(rc != 0, "v5 client took a v3.1.1 store");
  text = slurp(err, NULL);
  CHECK(text && strstr(text, "another client id, broker or protocol"),
        "identity error not explained: '%s'", text ? text : "(none)");
  free(text);
}

/* -C N leaves with every delivered message acknowledged, with and
 * without --ack-after-write: 2000 messages queued for a persistent
 * session, a first uvmqtt-sub takes 1000, a second one gets exactly the
 * other 1000 (none again, none lost). */
static void stop_resume(int qos, const char *ver, const char *ack_flag) {
  char out1[512], out2[512], out3[512];
  path(out1, sizeof(out1), "sr1.out");
  path(out2, sizeof(out2), "sr2.out");
  path(out3, sizeof(out3), "sr3.out");
  int rc = run(10000, "\"%s\" %s -p %d -c -i sr-sub -q %d -t sr/# -E", sub, ver,
               broker.port, qos);
  CHECK(rc == 0, "first sub exit %d", rc);
  rc = run(20000, "seq 0 1999 | \"%s\" %s -p %d -q %d -t sr/x -l", pub, ver,
           broker.port, qos);
  CHECK(rc == 0, "pub exit %d", rc);
  rc = run(20000,
           "\"%s\" %s -p %d -c -i sr-sub -q %d -t sr/# -C 1000 %s "
           ">\"%s\"",
           sub, ver, broker.port, qos, ack_flag, out1);
  CHECK(rc == 0, "sub -C 1000 exit %d", rc);
  rc = run(20000,
           "\"%s\" %s -p %d -c -i sr-sub -q %d -t sr/# -C 1000 -W 5 "
           ">\"%s\"",
           sub, ver, broker.port, qos, out2);
  CHECK(rc == 0, "second sub exit %d", rc);
  /* Nothing more: a third one times out with no output. */
  rc = run(20000, "\"%s\" %s -p %d -c -i sr-sub -q %d -t sr/# -W 1 >\"%s\"",
           sub, ver, broker.port, qos, out3);
  CHECK(rc == 27, "third sub exit %d", rc);
  static int seen[2000];
  memset(seen, 0, sizeof(seen));
  const char *files[3] = {out1, out2, out3};
  size_t lines = 0;
  for (int f = 0; f < 3; f++) {
    char *text = slurp(files[f], NULL);
    CHECK(text, "no output %s", files[f]);
    for (char *t = strtok(text, "\n"); t; t = strtok(NULL, "\n")) {
      int i = atoi(t);
      CHECK(i >= 0 && i < 2000, "bad line '%s'", t);
      seen[i]++;
      lines++;
    }
    free(text);
  }
  int twice = 0, lost = 0;
  for (int i = 0; i < 2000; i++) {
    if (seen[i] == 0)
      lost++;
    else if (seen[i] > 1)
      twice += seen[i] - 1;
  }
  fprintf(stderr, "stop_resume q%d %s %s: %zu lines, twice %d, lost %d\n", qos,
          ver, ack_flag, lines, twice, lost);
  CHECK(twice == 0 && lost == 0, "twice %d lost %d", twice, lost);
}

static void case_stop_resume(void) {
  stop_resume(1, "-V 311", "--ack-after-write");
  run(10000, "\"%s\" -p %d -c -i sr-sub -U sr/#", sub, broker.port);
  stop_resume(2, "-V 5", "");
}

typedef struct {
  const char *name;
  void (*fn)(void);
} tcase_t;

/* ws:// with -L: the URL path is the WebSocket request path and topics
 * come from -t (as mosquitto_sub/pub); QoS 1 both ways over mosquitto's
 * websockets listener. */
static int ws_port;

static void case_ws(void) {
  char out[512];
  path(out, sizeof(out), "ws.out");
  /* mosquitto opens the websockets listener after the plain one. */
  CHECK(tu_wait_port(ws_port, 5000) == 0, "no websockets listener");
  pid_t s = spawn("exec \"%s\" -L ws://127.0.0.1:%d/mqtt -i ws-sub -q 1 "
                  "-t ws/t -C 2 -v -W 10 >\"%s\" 2>\"%s.err\"",
                  sub, ws_port, out, out);
  CHECK(wait_log("Received SUBSCRIBE from ws-sub", 5000) == 0,
        "ws subscriber did not subscribe");
  usleep(50000);
  int rc = run(10000, "\"%s\" -L ws://127.0.0.1:%d/mqtt -q 1 -t ws/t -m one",
               pub, ws_port);
  CHECK(rc == 0, "pub exit %d", rc);
  rc = run(10000, "\"%s\" -V 5 -L ws://127.0.0.1:%d -q 1 -t ws/t -m two", pub,
           ws_port);
  CHECK(rc == 0, "pub (v5, default path) exit %d", rc);
  rc = reap(s, 10000);
  CHECK(rc == 0, "sub exit %d", rc);
  char *text = slurp(out, NULL);
  CHECK(text && strcmp(text, "ws/t one\nws/t two\n") == 0, "got '%s'",
        text ? text : "(none)");
  free(text);
  /* Nothing listens for WebSocket on the plain MQTT port: a clear error. */
  rc = run(10000, "\"%s\" -L ws://127.0.0.1:%d/mqtt -t ws/t -m x 2>/dev/null",
           pub, broker.port);
  CHECK(rc != 0, "ws to the plain port should fail, exit %d", rc);
}

/* --unix, unix:// with -L, and --proxy through microsocks (SOCKS5 with
 * username/password) and tinyproxy (HTTP CONNECT with Basic auth). */
static char unix_sock[320], unix_dir[256];

static void case_reach(void) {
  char out[512];
  tp_proxy_t socks, http;
  path(out, sizeof(out), "reach.out");
  CHECK(tp_start(&socks, TP_MICROSOCKS, 0, "u", "p", NULL) == 0, "microsocks");
  if (tp_start(&http, TP_TINYPROXY, 0, "u", "p", NULL) != 0) {
    tp_cleanup(&socks);
    CHECK(0, "tinyproxy");
  }
  pid_t s = spawn("exec \"%s\" --unix \"%s\" -i reach-sub -q 1 -t reach/t -C 3 "
                  "-v -W 10 >\"%s\" 2>\"%s.err\"",
                  sub, unix_sock, out, out);
  int rc = wait_log("Received SUBSCRIBE from reach-sub", 5000);
  usleep(50000);
  if (rc == 0)
    rc = run(10000, "\"%s\" -L unix://%s -q 1 -t reach/t -m one", pub,
             unix_sock);
  if (rc == 0)
    rc = run(10000,
             "\"%s\" --proxy socks5h://u:p@127.0.0.1:%d -h localhost -p %d "
             "-q 1 -t reach/t -m two",
             pub, socks.port, broker.port);
  if (rc == 0)
    rc = run(10000,
             "\"%s\" --proxy http://u:p@127.0.0.1:%d -h localhost -p %d "
             "-q 2 -t reach/t -m three",
             pub, http.port, broker.port);
  int sub_rc = reap(s, 10000);
  /* Wrong proxy credentials, and --unix with -h: errors, not hangs. */
  int bad = run(10000,
                "\"%s\" --proxy socks5h://u:x@127.0.0.1:%d -h localhost -p %d "
                "-t reach/t -m x 2>/dev/null",
                pub, socks.port, broker.port);
  int both =
      run(10000, "\"%s\" --unix /x -h y -t reach/t -m x 2>/dev/null", pub);
  int tunnels = tp_tunnels(&socks) + tp_tunnels(&http);
  tp_cleanup(&socks);
  tp_cleanup(&http);
  CHECK(rc == 0, "pub exit %d", rc);
  CHECK(sub_rc == 0, "sub exit %d", sub_rc);
  char *text = slurp(out, NULL);
  CHECK(text && strcmp(text, "reach/t one\nreach/t two\nreach/t three\n") == 0,
        "got '%s'", text ? text : "(none)");
  free(text);
  CHECK(tunnels == 2, "%d tunnels through the proxies", tunnels);
  CHECK(bad != 0 && bad != 124, "wrong proxy credentials: exit %d", bad);
  CHECK(both != 0 && both != 124, "--unix with -h: exit %d", both);
}

/* --stats: the statistics at exit, counted against what the tool did. */
static void case_stats(void) {
  char err[512];
  path(err, sizeof(err), "stats.txt");
  int rc = run(15000, "\"%s\" -p %d -q 1 -t st/a -m hello --stats 2>\"%s\"",
               pub, broker.port, err);
  CHECK(rc == 0, "pub exit %d", rc);
  char *text = slurp(err, NULL);
  CHECK(text &&
            strstr(text, "stats: packets out: CONNECT 1 PUBLISH 1 "
                         "DISCONNECT 1\n") &&
            strstr(text, "stats: packets in: CONNACK 1 PUBACK 1\n") &&
            strstr(text, "messages out qos0 0 qos1 1 qos2 0") &&
            strstr(text, "completed 1,"),
        "stderr '%s'", text ? text : "(none)");
  free(text);
}

/* Occurrences of `needle` in the broker's log. */
static int log_count(const char *needle) {
  char *text = slurp(broker.log, NULL);
  int n = 0;
  for (const char *p = text; p && (p = strstr(p, needle)); p++)
    n++;
  free(text);
  return n;
}

/* --max-filters: -U and -t go out in chunks, each answered, and every
 * filter of every chunk is held. */
static void case_max_filters(void) {
  char out[512];
  path(out, sizeof(out), "mx.out");
  int rc = run(10000,
               "\"%s\" -p %d -i mx-e --max-filters 2 -U mx/u1 -U mx/u2 "
               "-U mx/u3 -t mx/1 -t mx/2 -t mx/3 -t mx/4 -t mx/5 -E",
               sub, broker.port);
  CHECK(rc == 0, "sub -E exit %d", rc);
  CHECK(log_count("Received SUBSCRIBE from mx-e") == 3, "%d SUBSCRIBEs",
        log_count("Received SUBSCRIBE from mx-e"));
  CHECK(log_count("Received UNSUBSCRIBE from mx-e") == 2, "%d UNSUBSCRIBEs",
        log_count("Received UNSUBSCRIBE from mx-e"));
  rc =
      run(10000, "\"%s\" -p %d --max-filters 0 -t a --quiet", sub, broker.port);
  CHECK(rc != 0, "--max-filters 0 exit %d", rc);

  /* The last chunk's filter delivers. */
  pid_t w = spawn("exec \"%s\" -p %d -i mx-w --max-filters 2 -t my/1 -t my/2 "
                  "-t my/3 -C 1 -v -W 10 >\"%s\" 2>\"%s.err\"",
                  sub, broker.port, out, out);
  uint64_t end = tu_now_ms() + 5000;
  while (log_count("Received SUBSCRIBE from mx-w") < 2 && tu_now_ms() < end)
    usleep(10000);
  usleep(50000); /* the SUBACK follows the log line */
  rc = run(10000, "\"%s\" -p %d -t my/3 -m last", pub, broker.port);
  CHECK(rc == 0, "pub exit %d", rc);
  rc = reap(w, 10000);
  CHECK(rc == 0, "sub exit %d", rc);
  char *text = slurp(out, NULL);
  CHECK(text && strcmp(text, "my/3 last\n") == 0, "got '%s'",
        text ? text : "(none)");
  free(text);
}

static const tcase_t cases[] = {
    {"roundtrip", case_roundtrip},
    {"retained", case_retained},
    {"will", case_will},
    {"count_timeout", case_count_and_timeout},
    {"remove_retained", case_remove_retained},
    {"lines", case_lines},
    {"errors", case_errors},
    {"v5_props", case_v5_props},
    {"persistent", case_persistent},
    {"store", case_store},
    {"stop_resume", case_stop_resume},
    {"ws", case_ws},
    {"reach", case_reach},
    {"stats", case_stats},
    {"max_filters", case_max_filters},
};

int main(int argc, char **argv) {
  const char *only = argc > 1 ? argv[1] : "all";
  pub = getenv("UVMQTT_PUB");
  sub = getenv("UVMQTT_SUB");
  if (!pub || !sub) {
    fprintf(stderr, "UVMQTT_PUB and UVMQTT_SUB must name the tools\n");
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  int ran = 0;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    if (strcmp(only, "all") && strcmp(only, cases[i].name))
      continue;
    char extra[768] = "max_inflight_messages 20\nmax_queued_messages 0\n";
    if (strcmp(cases[i].name, "ws") == 0) {
      /* Debian's mosquitto starts a websockets listener only beside a
       * plain one, which testutil always configures. */
      ws_port = tu_free_port();
      snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra),
               "listener %d 127.0.0.1\nprotocol websockets\n", ws_port);
    }
    if (strcmp(cases[i].name, "reach") == 0) {
      if (tu_tmpdir(unix_dir, sizeof(unix_dir)) != 0)
        return 1;
      snprintf(unix_sock, sizeof(unix_sock), "%s/mqtt.sock", unix_dir);
      snprintf(extra + strlen(extra), sizeof(extra) - strlen(extra),
               "listener 0 %s\n", unix_sock);
    }
    if (tu_broker_start(&broker, 0, extra) != 0) {
      fprintf(stderr, "cannot start mosquitto\n");
      return 1;
    }
    int before = failures;
    cases[i].fn();
    fprintf(stderr, "%s: %s\n", cases[i].name,
            failures == before ? "ok" : "FAILED");
    if (failures == before)
      tu_broker_cleanup(&broker);
    else
      tu_broker_stop(&broker); /* keep the directory for the log */
    ran++;
    if (unix_dir[0])
      tu_rmtree(unix_dir);
    unix_dir[0] = '\0';
  }
  if (!ran) {
    fprintf(stderr, "no case named %s\n", only);
    return 1;
  }
  return failures ? 1 : 0;
}
