/* uvmqtt-pub's TLS flags against mosquitto TLS listeners (certificates
 * from test/tls/mkcerts.sh): --cafile, --insecure, --cert/--key, --psk,
 * -L mqtts://, and the one-line errors for an untrusted server. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "certs.h"
#include "testutil.h"

static const char *pub;
static tu_broker_t broker;
static char certs[256];
static int failures;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                            \
      fputc('\n', stderr);                                                     \
      failures++;                                                              \
    }                                                                          \
  } while (0)

static int run(const char *fmt, ...) {
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
  uint64_t end = tu_now_ms() + 20000;
  int st;
  while (waitpid(pid, &st, WNOHANG) == 0) {
    if (tu_now_ms() > end) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      return 124;
    }
    usleep(10000);
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static int stderr_has(const char *needle) {
  FILE *f = fopen(tt_path(certs, "err.txt"), "r");
  char buf[4096];
  size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
  if (f)
    fclose(f);
  buf[n] = '\0';
  if (!strstr(buf, needle)) {
    fprintf(stderr, "stderr was: %s\n", buf);
    return 0;
  }
  return 1;
}

int main(void) {
  tt_ports_t ports;
  pub = getenv("UVMQTT_PUB");
  if (!pub) {
    fprintf(stderr, "UVMQTT_PUB must name uvmqtt-pub\n");
    return 1;
  }
  if (tt_certs_make(certs, sizeof(certs)) != 0 ||
      tt_broker_start(&broker, certs, &ports) != 0) {
    fprintf(stderr, "cannot set up certificates / mosquitto\n");
    return 1;
  }
  const char *ca = tt_path(certs, "ca.crt");
  const char *err = tt_path(certs, "err.txt");
  int rc;

  rc = run("\"%s\" -h 127.0.0.1 -p %d --cafile \"%s\" -q 1 -t t -m x", pub,
           ports.server, ca);
  CHECK(rc == 0, "verified TLS exit %d", rc);
  rc = run("\"%s\" -L mqtts://127.0.0.1:%d/t --cafile \"%s\" -q 2 -m x", pub,
           ports.server, ca);
  CHECK(rc == 0, "mqtts URL exit %d", rc);
  rc = run("\"%s\" -h 127.0.0.1 -p %d --cafile \"%s\" -t t -m x 2>\"%s\"", pub,
           ports.other, ca, err);
  CHECK(rc != 0 && rc != 124, "untrusted server exit %d", rc);
  CHECK(stderr_has("TLS"), "no TLS cause on stderr");
  rc = run("\"%s\" -h 127.0.0.1 -p %d --cafile \"%s\" -t t -m x 2>\"%s\"", pub,
           ports.wrong, ca, err);
  CHECK(rc != 0 && rc != 124, "wrong host name exit %d", rc);
  CHECK(stderr_has("TLS"), "no TLS cause on stderr");
  rc = run("\"%s\" -h 127.0.0.1 -p %d --cafile \"%s\" --insecure -t t -m x",
           pub, ports.wrong, ca);
  CHECK(rc == 0, "--insecure exit %d", rc);
  rc = run("\"%s\" -h 127.0.0.1 -p %d --cafile \"%s\" --cert \"%s\" --key "
           "\"%s\" -q 1 -t t -m x",
           pub, ports.mutual, ca, tt_path(certs, "client.crt"),
           tt_path(certs, "client.key"));
  CHECK(rc == 0, "client certificate exit %d", rc);
  rc = run("\"%s\" -h 127.0.0.1 -p %d --psk %s --psk-identity %s -q 1 -t t "
           "-m x",
           pub, ports.psk, TT_PSK_HEX, TT_PSK_ID);
  CHECK(rc == 0, "PSK exit %d", rc);
  rc = run("\"%s\" -h 127.0.0.1 -p %d --cafile /nonexistent -t t -m x "
           "2>\"%s\"",
           pub, ports.server, err);
  CHECK(rc != 0 && rc != 124, "missing CA file exit %d", rc);

  tu_broker_cleanup(&broker);
  tt_certs_remove(certs);
  fprintf(stderr, "tools tls: %s\n", failures ? "FAILED" : "ok");
  return failures ? 1 : 0;
}
