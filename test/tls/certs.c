#include "certs.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#ifndef TT_SRCDIR
#define TT_SRCDIR "."
#endif

int tt_certs_make(char *dir, size_t cap) {
  char cmd[1024], out[512];
  const char *src = getenv("UVMQTT_TEST_SRCDIR");
  int rc;
  if (tu_tmpdir(dir, cap) != 0) {
    fprintf(stderr, "certs: no temporary directory\n");
    return -1;
  }
  if (src != NULL && *src != '\0')
    snprintf(cmd, sizeof(cmd), "sh '%s/tls/mkcerts.sh' '%s'", src, dir);
  else
    snprintf(cmd, sizeof(cmd), "sh '%s/mkcerts.sh' '%s'", TT_SRCDIR, dir);
  rc = tu_run_cmd(cmd, 60, out, sizeof(out));
  if (rc != 0) {
    fprintf(stderr, "certs: '%s' failed (%d): %s\n", cmd, rc, out);
    tu_rmtree(dir);
    return -1;
  }
  return 0;
}

const char *tt_path(const char *dir, const char *name) {
  static char bufs[16][512];
  static unsigned next;
  char *b = bufs[next++ % 16];
  snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
  return b;
}

void tt_certs_remove(const char *dir) {
  tu_rmtree(dir);
}

int tt_broker_start(tu_broker_t *b, const char *dir, tt_ports_t *p) {
  char extra[6144], psk[128];
  int n = 0;
  struct {
    int *port;
    const char *cert;
    bool mutual;
  } tls[] = {
      {&p->server, "server", false},   {&p->mutual, "server", true},
      {&p->expired, "expired", false}, {&p->other, "other", false},
      {&p->wrong, "wronghost", false},
  };
  snprintf(psk, sizeof(psk), "%s:%s\n", TT_PSK_ID, TT_PSK_HEX);
  if (tu_write_file(dir, "psk.txt", psk, NULL, 0) != 0)
    return -1;
  for (size_t i = 0; i < sizeof(tls) / sizeof(tls[0]); i++) {
    *tls[i].port = tu_free_port();
    if (*tls[i].port < 0)
      return -1;
    n += snprintf(extra + n, sizeof(extra) - (size_t)n,
                  "listener %d 127.0.0.1\n"
                  "cafile %s/ca.crt\n"
                  "certfile %s/%s.crt\n"
                  "keyfile %s/%s.key\n"
                  "require_certificate %s\n",
                  *tls[i].port, dir, dir, tls[i].cert, dir, tls[i].cert,
                  tls[i].mutual ? "true" : "false");
  }
  p->psk = tu_free_port();
  if (p->psk < 0)
    return -1;
  n += snprintf(extra + n, sizeof(extra) - (size_t)n,
                "listener %d 127.0.0.1\n"
                "psk_hint uvmqtt-test\n"
                "psk_file %s/psk.txt\n",
                p->psk, dir);
  if ((size_t)n >= sizeof(extra))
    return -1;
  if (tu_broker_start(b, 0, extra) != 0)
    return -1;
  /* tu_broker_start waits for the plain listener only. */
  for (size_t i = 0; i < sizeof(tls) / sizeof(tls[0]); i++)
    if (tu_wait_port(*tls[i].port, 5000) != 0)
      return -1;
  return tu_wait_port(p->psk, 5000);
}
