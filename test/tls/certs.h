/* Test certificates for the TLS tests: made at test time by mkcerts.sh. */
#ifndef UVMQTT_TEST_TLS_CERTS_H
#define UVMQTT_TEST_TLS_CERTS_H

#include <stddef.h>

/* Creates a temporary directory and runs mkcerts.sh into it (found through
 * $UVMQTT_TEST_SRCDIR/tls, else next to the source of this file). Returns 0
 * and the directory in dir (at least 256 bytes), or -1. */
int tt_certs_make(char *dir, size_t cap);
/* dir/name in one of 16 rotating static buffers. */
const char *tt_path(const char *dir, const char *name);
/* Removes the directory. */
void tt_certs_remove(const char *dir);

#endif
