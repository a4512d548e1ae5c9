/* Test certificates for the TLS tests: made at test time by mkcerts.sh. */
#ifndef UVMQTT_TEST_TLS_CERTS_H
#define UVMQTT_TEST_TLS_CERTS_H

#include <stddef.h>

#include "testutil.h"

/* Creates a temporary directory and runs mkcerts.sh into it (found through
 * $UVMQTT_TEST_SRCDIR/tls, else next to the source of this file). Returns 0
 * and the directory in dir (at least 256 bytes), or -1. */
int tt_certs_make(char *dir, size_t cap);
/* dir/name in one of 16 rotating static buffers. */
const char *tt_path(const char *dir, const char *name);
/* Removes the directory. */
void tt_certs_remove(const char *dir);

/* A mosquitto with one TLS listener per case, all on 127.0.0.1. */
typedef struct {
  int server;  /* server.crt: verifiable for localhost and 127.0.0.1 */
  int mutual;  /* server.crt, require_certificate true (CA: ca.crt) */
  int expired; /* expired.crt */
  int other;   /* other.crt, from another CA */
  int wrong;   /* wronghost.crt, for wrong.example */
  int psk;     /* TLS-PSK only: identity TT_PSK_ID, key TT_PSK_HEX */
} tt_ports_t;

#define TT_PSK_ID "uvmqtt-dev"
#define TT_PSK_HEX "00112233445566778899aabbccddeeff"

/* Starts mosquitto (tu_broker_start) with those listeners, using the
 * certificates in dir. Returns 0 or -1. */
int tt_broker_start(tu_broker_t *b, const char *dir, tt_ports_t *ports);

#endif
