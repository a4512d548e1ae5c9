#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t tu_now_ms(void) {
  return uv_hrtime() / 1000000u;
}

#define TU_MAX_PORTS 256
static int used_ports[TU_MAX_PORTS];
static int used_count;

static int port_used(int p) {
  for (int i = 0; i < used_count; i++)
    if (used_ports[i] == p)
      return 1;
  return 0;
}

int tu_free_port(void) {
  for (int attempt = 0; attempt < 50; attempt++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
      return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
      close(fd);
      return -1;
    }
    close(fd);
    int p = ntohs(a.sin_port);
    if (!port_used(p)) {
      if (used_count < TU_MAX_PORTS)
        used_ports[used_count++] = p;
      return p;
    }
  }
  return -1;
}

int tu_tmpdir(char *out, size_t cap) {
  const char *base = getenv("TMPDIR");
  if (!base || !*base)
    base = "/tmp";
  if ((size_t)snprintf(out, cap, "%s/uvmqtt-test-XXXXXX", base) >= cap)
    return -1;
  if (!mkdtemp(out))
    return -1;
  chmod(out, 0755);
  return 0;
}

void tu_rmtree(const char *dir) {
  char cmd[512];
  if (!dir || !*dir || strstr(dir, "uvmqtt-test-") == NULL)
    return; /* refuse to remove anything we did not create */
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "testutil: could not remove %s\n", dir);
}

int tu_write_file(const char *dir, const char *name, const char *text,
                  char *out, size_t cap) {
  char path[512];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  size_t n = strlen(text);
  int ok = fwrite(text, 1, n, f) == n;
  fclose(f);
  chmod(path, 0644);
  if (out)
    snprintf(out, cap, "%s", path);
  return ok ? 0 : -1;
}

int tu_wait_port(int port, unsigned timeout_ms) {
  uint64_t end = tu_now_ms() + timeout_ms;
  while (tu_now_ms() < end) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
      return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
    close(fd);
    if (rc == 0)
      return 0;
    usleep(20000);
  }
  return -1;
}

static void print_log(const tu_broker_t *b) {
  FILE *f = fopen(b->log, "r");
  char line[512];
  if (!f)
    return;
  fprintf(stderr, "---- mosquitto log (%s) ----\n", b->log);
  while (fgets(line, sizeof(line), f))
    fputs(line, stderr);
  fclose(f);
}

static int broker_spawn(tu_broker_t *b) {
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      dup2(devnull, 0);
      dup2(devnull, 1);
    }
    /* Keep stderr so startup failures show in the test log. */
    execlp("mosquitto", "mosquitto", "-c", b->conf, (char *)NULL);
    fprintf(stderr, "testutil: cannot exec mosquitto: %s\n", strerror(errno));
    _exit(127);
  }
  b->pid = pid;
  if (tu_wait_port(b->port, 5000) != 0) {
    fprintf(stderr, "testutil: mosquitto did not listen on port %d\n", b->port);
    print_log(b);
    tu_broker_stop(b);
    return -1;
  }
  return 0;
}

int tu_broker_start(tu_broker_t *b, int port, const char *extra) {
  char text[10000];
  memset(b, 0, sizeof(*b));
  if (tu_tmpdir(b->dir, sizeof(b->dir)) != 0)
    return -1;
  b->port = port > 0 ? port : tu_free_port();
  if (b->port <= 0)
    return -1;
  snprintf(b->log, sizeof(b->log), "%s/mosquitto.log", b->dir);
  snprintf(b->extra, sizeof(b->extra), "%s", extra ? extra : "");
  snprintf(text, sizeof(text),
           "%s"
           "listener %d 127.0.0.1\n"
           "allow_anonymous true\n"
           "persistence false\n"
           "log_dest file %s\n"
           "log_type all\n"
           "%s\n",
           geteuid() == 0 ? "user root\n" : "", b->port, b->log, b->extra);
  if (tu_write_file(b->dir, "mosquitto.conf", text, b->conf, sizeof(b->conf)) !=
      0)
    return -1;
  return broker_spawn(b);
}

static void broker_reap(tu_broker_t *b, unsigned timeout_ms) {
  uint64_t end = tu_now_ms() + timeout_ms;
  while (tu_now_ms() < end) {
    pid_t r = waitpid(b->pid, NULL, WNOHANG);
    if (r == b->pid || (r < 0 && errno == ECHILD)) {
      b->pid = 0;
      return;
    }
    usleep(10000);
  }
  kill(b->pid, SIGKILL);
  waitpid(b->pid, NULL, 0);
  b->pid = 0;
}

void tu_broker_stop(tu_broker_t *b) {
  if (b->pid <= 0)
    return;
  kill(b->pid, SIGTERM);
  broker_reap(b, 3000);
}

void tu_broker_kill(tu_broker_t *b) {
  if (b->pid <= 0)
    return;
  kill(b->pid, SIGKILL);
  broker_reap(b, 3000);
}

int tu_broker_restart(tu_broker_t *b) {
  if (b->pid > 0)
    tu_broker_stop(b);
  /* The old socket may linger briefly; mosquitto sets SO_REUSEADDR. */
  return broker_spawn(b);
}

void tu_broker_cleanup(tu_broker_t *b) {
  tu_broker_stop(b);
  if (b->dir[0] && !getenv("UVMQTT_KEEP_TMP"))
    tu_rmtree(b->dir);
  b->dir[0] = '\0';
}

int tu_broker_log_contains(const tu_broker_t *b, const char *needle) {
  FILE *f = fopen(b->log, "r");
  char line[1024];
  int found = 0;
  if (!f)
    return 0;
  while (!found && fgets(line, sizeof(line), f))
    found = strstr(line, needle) != NULL;
  fclose(f);
  return found;
}

static void deadline_cb(uv_timer_t *t) {
  *(int *)t->data = 1;
}

static int run_bounded(uv_loop_t *loop, volatile int *flag,
                       unsigned timeout_ms) {
  uv_timer_t timer;
  int expired = 0;
  uv_timer_init(loop, &timer);
  timer.data = &expired;
  uv_timer_start(&timer, deadline_cb, timeout_ms, 0);
  while (!expired && !(flag && *flag)) {
    if (uv_run(loop, UV_RUN_ONCE) == 0 && !expired && !(flag && *flag)) {
      /* Only our timer is left, and it is not due; keep waiting for it. */
    }
  }
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return (flag && *flag) ? 0 : -1;
}

int tu_run_until(uv_loop_t *loop, volatile int *flag, unsigned timeout_ms) {
  return run_bounded(loop, flag, timeout_ms);
}

void tu_run_for(uv_loop_t *loop, unsigned ms) {
  run_bounded(loop, NULL, ms);
}

static void print_handle(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h))
    fprintf(stderr, "testutil: handle left open: %s (active %d)\n",
            uv_handle_type_name(h->type), uv_is_active(h));
}

int tu_loop_close(uv_loop_t *loop, unsigned timeout_ms) {
  uint64_t end = tu_now_ms() + timeout_ms;
  while (uv_loop_alive(loop) && tu_now_ms() < end)
    uv_run(loop, UV_RUN_NOWAIT), usleep(1000);
  int rc = uv_loop_close(loop);
  if (rc != 0)
    uv_walk(loop, print_handle, NULL);
  return rc;
}

static void lag_cb(uv_timer_t *t) {
  tu_lag_t *lag = t->data;
  uint64_t now = tu_now_ms();
  if (lag->last_ms) {
    uint64_t due = lag->last_ms + lag->period_ms;
    if (now > due && now - due > lag->max_lag_ms)
      lag->max_lag_ms = now - due;
  }
  lag->last_ms = now;
  lag->ticks++;
}

void tu_lag_start(uv_loop_t *loop, tu_lag_t *lag, unsigned period_ms) {
  memset(lag, 0, sizeof(*lag));
  lag->period_ms = period_ms;
  uv_timer_init(loop, &lag->timer);
  lag->timer.data = lag;
  lag->last_ms = tu_now_ms();
  uv_timer_start(&lag->timer, lag_cb, period_ms, period_ms);
}

void tu_lag_stop(tu_lag_t *lag) {
  uv_timer_stop(&lag->timer);
  uv_close((uv_handle_t *)&lag->timer, NULL);
}

int tu_run_cmd(const char *cmd, unsigned timeout_s, char *out, size_t cap) {
  char full[4096];
  snprintf(full, sizeof(full), "timeout -k 2 %u sh -c '%s'", timeout_s, cmd);
  FILE *p = popen(full, "r");
  if (!p)
    return -1;
  size_t n = 0;
  if (out && cap) {
    size_t r;
    while (n + 1 < cap && (r = fread(out + n, 1, cap - 1 - n, p)) > 0)
      n += r;
    out[n] = '\0';
  }
  char sink[256];
  while (fread(sink, 1, sizeof(sink), p) > 0) {
  }
  int st = pclose(p);
  if (st == -1)
    return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- pieces of scripted servers ----------------------------------------- */

int tu_unix_bound_socket(const char *name) {
  struct sockaddr_un a;
  size_t n = strlen(name);
  int abstract = name[0] == '@';
  if (n == 0 || n >= sizeof(a.sun_path))
    return -1;
  memset(&a, 0, sizeof(a));
  a.sun_family = AF_UNIX;
  memcpy(a.sun_path, name, n);
  if (abstract)
    a.sun_path[0] = '\0';
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
                              (abstract ? 0 : 1));
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, len) != 0) {
    fprintf(stderr, "testutil: cannot bind %s: %s\n", name, strerror(errno));
    close(fd);
    fd = -1;
  }
  return fd;
}

static void write_copy_done(uv_write_t *w, int status) {
  (void)status;
  free(w);
}

int tu_write_copy(uv_stream_t *s, const void *b, size_t n) {
  uv_write_t *w = malloc(sizeof(*w) + n);
  if (!w)
    return UV_ENOMEM;
  memcpy(w + 1, b, n);
  uv_buf_t buf = uv_buf_init((char *)(w + 1), (unsigned)n);
  int rc = uv_write(w, s, &buf, 1, write_copy_done);
  if (rc != 0)
    free(w);
  return rc;
}

void tu_alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *b) {
  (void)h;
  b->base = malloc(size);
  b->len = b->base ? size : 0;
}

/* ---- a counting allocator with failure injection ------------------------ */

long tu_alloc_countdown = -1;
long tu_alloc_live;

static int alloc_fails(void) {
  return tu_alloc_countdown >= 0 && tu_alloc_countdown-- == 0;
}

void *tu_malloc(size_t n) {
  void *p = alloc_fails() ? NULL : malloc(n);
  tu_alloc_live += p != NULL;
  return p;
}

void *tu_calloc(size_t count, size_t n) {
  void *p = alloc_fails() ? NULL : calloc(count, n);
  tu_alloc_live += p != NULL;
  return p;
}

void *tu_realloc(void *old, size_t n) {
  void *p = alloc_fails() ? NULL : realloc(old, n);
  tu_alloc_live += p != NULL && old == NULL;
  return p;
}

void tu_free(void *p) {
  tu_alloc_live -= p != NULL;
  free(p);
}
