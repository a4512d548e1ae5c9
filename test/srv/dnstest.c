#include "dnstest.h"

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
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

#define DT_MAX_ARGS 64

/* dnsmasq lives in sbin, which is not always on a normal user's PATH. */
static const char *dnsmasq_path(void) {
  static char found[512];
  const char *env = getenv("UVMQTT_DNSMASQ");
  if (env && *env)
    return env;
  const char *path = getenv("PATH");
  char buf[4096];
  snprintf(buf, sizeof(buf), "%s:/usr/sbin:/usr/local/sbin:/sbin",
           path ? path : "");
  for (char *save = NULL, *dir = strtok_r(buf, ":", &save); dir;
       dir = strtok_r(NULL, ":", &save)) {
    snprintf(found, sizeof(found), "%s/dnsmasq", dir);
    if (access(found, X_OK) == 0)
      return found;
  }
  return NULL;
}

int dt_dns_available(void) {
  return dnsmasq_path() != NULL;
}

/* Sends one A query for probe.test and waits up to 100 ms for any reply. */
static int probe(int port) {
  static const unsigned char q[] = {0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00,
                                    0x00, 0x00, 0x00, 0x00, 0x00, 5,    'p',
                                    'r',  'o',  'b',  'e',  4,    't',  'e',
                                    's',  't',  0,    0x00, 0x01, 0x00, 0x01};
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0)
    return -1;
  struct timeval tv = {0, 100000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons((uint16_t)port);
  unsigned char buf[512];
  int ok = sendto(fd, q, sizeof(q), 0, (struct sockaddr *)&a, sizeof(a)) ==
               (ssize_t)sizeof(q) &&
           recv(fd, buf, sizeof(buf), 0) >= 12 && buf[0] == 0x12 &&
           buf[1] == 0x34;
  close(fd);
  return ok ? 0 : -1;
}

static void reap(dt_dns_t *d, unsigned timeout_ms) {
  uint64_t end = tu_now_ms() + timeout_ms;
  while (tu_now_ms() < end) {
    pid_t r = waitpid(d->pid, NULL, WNOHANG);
    if (r == d->pid || (r < 0 && errno == ECHILD)) {
      d->pid = 0;
      return;
    }
    usleep(10000);
  }
  kill(d->pid, SIGKILL);
  waitpid(d->pid, NULL, 0);
  d->pid = 0;
}

void dt_dns_dump_log(const dt_dns_t *d) {
  FILE *f = fopen(d->log, "r");
  char line[512];
  if (!f)
    return;
  fprintf(stderr, "---- dnsmasq log (%s) ----\n", d->log);
  for (int i = 0; i < 400 && fgets(line, sizeof(line), f); i++)
    fputs(line, stderr);
  fclose(f);
}

int dt_dns_start(dt_dns_t *d, const char *const *args, size_t n) {
  char port_opt[32], log_opt[400];
  const char *argv[DT_MAX_ARGS + 16];
  size_t k = 0;
  const char *exe = dnsmasq_path();

  memset(d, 0, sizeof(*d));
  if (!exe) {
    fprintf(stderr, "dnstest: dnsmasq not found\n");
    return -1;
  }
  if (n > DT_MAX_ARGS || tu_tmpdir(d->dir, sizeof(d->dir)) != 0)
    return -1;
  d->port = tu_free_port();
  if (d->port <= 0)
    return -1;
  snprintf(d->log, sizeof(d->log), "%s/dnsmasq.log", d->dir);
  snprintf(port_opt, sizeof(port_opt), "--port=%d", d->port);
  snprintf(log_opt, sizeof(log_opt), "--log-facility=%s", d->log);

  argv[k++] = "dnsmasq";
  argv[k++] = "--keep-in-foreground";  /* -d would log to stderr */
  argv[k++] = "--conf-file=/dev/null"; /* ignore the system's config */
  argv[k++] = "--no-resolv";           /* no upstream servers */
  argv[k++] = "--no-hosts";
  argv[k++] = "--no-poll";
  argv[k++] = "--listen-address=127.0.0.1";
  argv[k++] = "--bind-interfaces";
  argv[k++] = port_opt;
  argv[k++] = "--local=/test/"; /* unknown .test names: NXDOMAIN */
  argv[k++] = "--cache-size=0";
  argv[k++] = "--log-queries";
  argv[k++] = log_opt;
  if (geteuid() == 0) {
    /* As root dnsmasq drops to "nobody", which could not write the log. */
    argv[k++] = "--user=root";
    argv[k++] = "--group=root";
  }
  for (size_t i = 0; i < n; i++)
    argv[k++] = args[i];
  argv[k] = NULL;

  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
      dup2(devnull, 0);
      dup2(devnull, 1);
    }
    execv(exe, (char *const *)argv);
    fprintf(stderr, "dnstest: cannot exec %s: %s\n", exe, strerror(errno));
    _exit(127);
  }
  d->pid = pid;
  uint64_t end = tu_now_ms() + 5000;
  while (tu_now_ms() < end) {
    if (waitpid(pid, NULL, WNOHANG) == pid) {
      d->pid = 0;
      fprintf(stderr, "dnstest: dnsmasq exited at startup\n");
      dt_dns_dump_log(d);
      return -1;
    }
    if (probe(d->port) == 0)
      return 0;
  }
  fprintf(stderr, "dnstest: dnsmasq did not answer on port %d\n", d->port);
  dt_dns_dump_log(d);
  dt_dns_stop(d);
  return -1;
}

void dt_dns_stop(dt_dns_t *d) {
  if (d->pid > 0) {
    kill(d->pid, SIGTERM);
    reap(d, 2000);
  }
  if (d->dir[0] && !getenv("UVMQTT_KEEP_TMP"))
    tu_rmtree(d->dir);
  d->dir[0] = '\0';
}

int dt_blackhole_open(int *port) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0)
    return -1;
  struct sockaddr_in a;
  socklen_t len = sizeof(a);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
    close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}
