/* Writes the parser fuzz seed corpus: every sample packet of every version
 * alone and as one stream per receiving side, plus each direction of the
 * mosquitto captures. Usage: gen_corpus OUTDIR [CAPTURE.hex ...]
 * The output is committed under test/fuzz/corpus/; re-run it when the
 * samples or captures change. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "samples.h"

static const char *outdir;

static void put(const char *name, uint8_t setup, const uint8_t *b, size_t n) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/%s", outdir, name);
  FILE *f = fopen(path, "wb");
  if (f == NULL) {
    perror(path);
    exit(1);
  }
  uint8_t hdr[2] = {setup, 0};
  fwrite(hdr, 1, 2, f);
  fwrite(b, 1, n, f);
  fclose(f);
}

static uint8_t setup_for(uint8_t v, uvmqtt_role_t role) {
  return (uint8_t)((v == 3   ? 0
                    : v == 4 ? 1
                             : 2) |
                   (role == UVMQTT_ROLE_SERVER ? 4 : 0));
}

static void samples(void) {
  static const uint8_t versions[] = {3, 4, 5};
  for (size_t vi = 0; vi < 3; vi++) {
    uint8_t v = versions[vi];
    sample_t s[SAMPLES_MAX];
    size_t n = samples_get(v, s);
    uint8_t *stream[2] = {NULL, NULL};
    size_t slen[2] = {0, 0};
    for (size_t i = 0; i < n; i++) {
      size_t size;
      if (uvmqtt_encode_size(&s[i].pkt, v, &size) != 0)
        exit(1);
      uint8_t *b = malloc(size);
      if (b == NULL || uvmqtt_encode(&s[i].pkt, v, b, size) != (int)size)
        exit(1);
      char name[256];
      snprintf(name, sizeof(name), "v%d-%s-%02zu-%s", v,
               s[i].role == UVMQTT_ROLE_SERVER ? "server" : "client", i,
               s[i].name);
      for (char *c = name; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-')
          *c = '-';
      put(name, setup_for(v, s[i].role), b, size);
      int r = s[i].role == UVMQTT_ROLE_SERVER;
      stream[r] = realloc(stream[r], slen[r] + size);
      memcpy(stream[r] + slen[r], b, size);
      slen[r] += size;
      free(b);
    }
    for (int r = 0; r < 2; r++) {
      char name[64];
      snprintf(name, sizeof(name), "v%d-%s-stream", v, r ? "server" : "client");
      put(name, setup_for(v, r ? UVMQTT_ROLE_SERVER : UVMQTT_ROLE_CLIENT),
          stream[r], slen[r]);
      free(stream[r]);
    }
  }
}

/* Capture files: "version N", "connection", "c HEX", "s HEX" lines. */
static void capture(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    perror(path);
    exit(1);
  }
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  char line[4096];
  int v = 4, conn = -1;
  uint8_t *buf[2] = {NULL, NULL};
  size_t len[2] = {0, 0};
  for (;;) {
    char *ok = fgets(line, sizeof(line), f);
    if (ok == NULL || strncmp(line, "connection", 10) == 0) {
      for (int d = 0; d < 2 && conn >= 0; d++) {
        char name[512];
        snprintf(name, sizeof(name), "cap-%.*s-%d-%s", (int)(strlen(base) - 4),
                 base, conn, d ? "server" : "client");
        put(name,
            setup_for((uint8_t)v, d ? UVMQTT_ROLE_SERVER : UVMQTT_ROLE_CLIENT) |
                (d ? 8 : 0),
            buf[d], len[d]);
        free(buf[d]);
        buf[d] = NULL;
        len[d] = 0;
      }
      if (ok == NULL)
        break;
      conn++;
      continue;
    }
    if (strncmp(line, "version ", 8) == 0) {
      v = atoi(line + 8);
      continue;
    }
    if ((line[0] != 'c' && line[0] != 's') || line[1] != ' ')
      continue;
    int d = line[0] == 'c'; /* client bytes are decoded by the server */
    for (char *p = line + 2;
         isxdigit((unsigned char)p[0]) && isxdigit((unsigned char)p[1]);
         p += 2) {
      unsigned x;
      sscanf(p, "%2x", &x);
      buf[d] = realloc(buf[d], len[d] + 1);
      buf[d][len[d]++] = (uint8_t)x;
    }
  }
  fclose(f);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s OUTDIR [CAPTURE.hex ...]\n", argv[0]);
    return 2;
  }
  outdir = argv[1];
  samples();
  for (int i = 2; i < argc; i++)
    capture(argv[i]);
  return 0;
}
