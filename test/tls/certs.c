#include "certs.h"

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
