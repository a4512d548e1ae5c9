/* Real proxies for the tests: see proxyutil.h. */
#include "proxyutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static int write_config(tp_proxy_t *p) {
  char text[4096];
  switch (p->kind) {
  case TP_TINYPROXY:
    snprintf(text, sizeof(text),
             "Port %d\n"
             "Listen 127.0.0.1\n"
             "Timeout 600\n"
             "MaxClients 200\n"
             "LogFile \"%s\"\n"
             "LogLevel Info\n"
             "Allow 127.0.0.1\n"
             "%s%s%s%s%s"
             "%s",
             p->port, p->log, p->user[0] ? "BasicAuth " : "", p->user,
             p->user[0] ? " " : "", p->pass, p->user[0] ? "\n" : "", p->extra);
    break;
  case TP_DANTE:
    snprintf(text, sizeof(text),
             "logoutput: %s\n"
             "internal: 127.0.0.1 port = %d\n"
             "external: 127.0.0.1\n"
             "clientmethod: none\n"
             "socksmethod: none\n"
             "%s"
             "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }\n"
             "%s"
             "socks pass {\n"
             "  from: 127.0.0.0/8 to: 0.0.0.0/0\n"
             "  command: connect\n"
             "  log: connect\n"
             "}\n",
             p->log, p->port,
             geteuid() == 0 ? "user.privileged: root\n"
                              "user.unprivileged: nobody\n"
                            : "",
             p->extra);
    break;
  case TP_MICROSOCKS:
    return 0; /* command-line options only */
  }
  return tu_write_file(p->dir, "proxy.conf", text, p->conf, sizeof(p->conf));
}

static void print_log(const tp_proxy_t *p) {
  FILE *f = fopen(p->log, "r");
  char line[512];
  if (!f)
    return;
  fprintf(stderr, "---- proxy log (%s) ----\n", p->log);
  while (fgets(line, sizeof(line), f))
    fputs(line, stderr);
  fclose(f);
}

static int spawn(tp_proxy_t *p) {
  char port[16], pidf[320];
  snprintf(port, sizeof(port), "%d", p->port);
  snprintf(pidf, sizeof(pidf), "%s/danted.pid", p->dir);
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    setpgid(0, 0);
    int devnull = open("/dev/null", O_RDWR);
    int out = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (devnull >= 0)
      dup2(devnull, 0);
    if (out >= 0) {
      dup2(out, 1);
      dup2(out, 2);
    }
    switch (p->kind) {
    case TP_TINYPROXY:
      execlp("tinyproxy", "tinyproxy", "-d", "-c", p->conf, (char *)NULL);
      break;
    case TP_MICROSOCKS:
      if (p->user[0])
        execlp("microsocks", "microsocks", "-i", "127.0.0.1", "-p", port, "-u",
               p->user, "-P", p->pass, (char *)NULL);
      else
        execlp("microsocks", "microsocks", "-i", "127.0.0.1", "-p", port,
               (char *)NULL);
      break;
    case TP_DANTE:
      execlp("danted", "danted", "-f", p->conf, "-N", "1", "-p", pidf,
             (char *)NULL);
      break;
    }
    fprintf(stderr, "proxyutil: cannot exec the proxy: %s\n", strerror(errno));
    _exit(127);
  }
  setpgid(pid, pid); /* also here: no race with the kill */
  p->pid = pid;
  if (tu_wait_port(p->port, 5000) != 0) {
    fprintf(stderr, "proxyutil: proxy did not listen on port %d\n", p->port);
    tp_stop(p);
    print_log(p);
    return -1;
  }
  return 0;
}

int tp_start(tp_proxy_t *p, tp_kind_t kind, int port, const char *user,
             const char *pass, const char *extra) {
  memset(p, 0, sizeof(*p));
  p->kind = kind;
  if (user && kind == TP_DANTE)
    return -1;
  if (tu_tmpdir(p->dir, sizeof(p->dir)) != 0)
    return -1;
  p->port = port > 0 ? port : tu_free_port();
  if (p->port <= 0)
    return -1;
  snprintf(p->log, sizeof(p->log), "%s/proxy.log", p->dir);
  snprintf(p->user, sizeof(p->user), "%s", user ? user : "");
  snprintf(p->pass, sizeof(p->pass), "%s", pass ? pass : "");
  snprintf(p->extra, sizeof(p->extra), "%s", extra ? extra : "");
  if (write_config(p) != 0)
    return -1;
  return spawn(p);
}

void tp_stop(tp_proxy_t *p) {
  if (p->pid <= 0)
    return;
  kill(-p->pid, SIGTERM);
  uint64_t end = tu_now_ms() + 3000;
  while (tu_now_ms() < end) {
    pid_t r = waitpid(p->pid, NULL, WNOHANG);
    if (r == p->pid || (r < 0 && errno == ECHILD))
      break;
    usleep(10000);
  }
  kill(-p->pid, SIGKILL); /* danted's children, if any are left */
  waitpid(p->pid, NULL, WNOHANG);
  p->pid = 0;
}

int tp_restart(tp_proxy_t *p) {
  tp_stop(p);
  return spawn(p);
}

void tp_cleanup(tp_proxy_t *p) {
  tp_stop(p);
  if (p->dir[0] && !getenv("UVMQTT_KEEP_TMP"))
    tu_rmtree(p->dir);
  p->dir[0] = '\0';
}

const char *tp_url(const tp_proxy_t *p, const char *scheme) {
  static char bufs[4][256];
  static int next;
  char *b = bufs[next++ & 3];
  if (p->user[0])
    snprintf(b, sizeof(bufs[0]), "%s://%s:%s@127.0.0.1:%d", scheme, p->user,
             p->pass, p->port);
  else
    snprintf(b, sizeof(bufs[0]), "%s://127.0.0.1:%d", scheme, p->port);
  return b;
}

int tp_log_count(const tp_proxy_t *p, const char *needle) {
  FILE *f = fopen(p->log, "r");
  char line[1024];
  int n = 0;
  if (!f)
    return 0;
  while (fgets(line, sizeof(line), f))
    n += strstr(line, needle) != NULL;
  fclose(f);
  return n;
}

int tp_tunnels(const tp_proxy_t *p) {
  /* What each writes to its log for a tunnel it opened. */
  return tp_log_count(p, p->kind == TP_TINYPROXY    ? "Established connection"
                         : p->kind == TP_MICROSOCKS ? "connected to"
                                                    : "tcp/connect");
}
