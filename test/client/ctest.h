/* Helpers shared by the client integration tests.
 *
 * - ct_client_t: a uvmqtt client with recording callbacks (connects,
 *   disconnects, messages with copies of topic and payload).
 * - ct_pub_t: a per-message record of publish completions.
 * - ct_peer_t: a scripted "broker" on 127.0.0.1 (raw libuv TCP server) that
 *   records what the client sends and answers the first bytes it receives
 *   with a fixed script (or never answers).
 *
 * Everything runs on one loop; every wait is bounded. */
#ifndef UVMQTT_CTEST_H
#define UVMQTT_CTEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"
#include "uvmqtt.h"

#define CT_WAIT_MS 10000 /* default bound for any wait */

typedef struct {
  char *topic;
  char *payload;
  size_t payload_len;
  uint8_t qos;
  bool retain;
  bool dup;
  bool has_sub_id;
  uint32_t sub_id;
  uint64_t at_ms;
} ct_msg_t;

typedef struct ct_client_s {
  uvmqtt_client_t *c;
  uv_loop_t *loop;
  const char *name;
  /* connect callback */
  int connects;      /* every call */
  int connected;     /* status 0 */
  int connect_fails; /* status < 0 */
  int last_connect_status;
  bool last_ack_null;
  uint8_t last_reason_code;
  bool session_present;
  bool first_session_present;
  uint64_t last_connect_ms;
  /* disconnect callback */
  int disconnects;
  int last_disconnect_status;
  uint64_t last_disconnect_ms;
  /* reconnect callback */
  unsigned reconnect_calls;
  unsigned last_attempt;
  /* messages */
  ct_msg_t *msgs;
  size_t nmsgs, msgcap;
  /* close */
  int closed;
  bool close_in_message; /* close from inside the first message cb */
  size_t msgs_after_close;
  bool close_asked;
  bool verbose;
} ct_client_t;

typedef struct {
  int calls;
  int status;
  uint16_t id;
  uint8_t reason;
  bool after_close; /* fired after the client's close callback */
} ct_pub_t;

typedef struct {
  int calls;
  int status;
  uint16_t id;
  uint8_t codes[16];
  size_t count;
  bool has_props;
} ct_sub_t;

/* Options with the usual test settings: protocol, id (NULL: random), clean
 * session, reconnect with a short backoff. */
uvmqtt_options_t *ct_opts(int version, const char *id, bool clean);
/* Creates the client (asserting success) with recording callbacks. */
void ct_client_init(ct_client_t *t, uv_loop_t *loop, const uvmqtt_options_t *o,
                    const char *name);
/* Connects to 127.0.0.1:port (asserting the call succeeds). */
void ct_connect(ct_client_t *t, int port);
/* Runs the loop until the client is connected (asserting it). */
void ct_wait_connected(ct_client_t *t, int want_connected);
/* The close callback ct_close() uses: sets t->closed (once). */
void ct_on_closed(uvmqtt_client_t *c);
/* Closes the client and runs until its close callback (asserting it). */
void ct_close(ct_client_t *t);
/* Frees recorded messages. */
void ct_client_free(ct_client_t *t);
/* Subscribes and waits for the SUBACK, asserting every granted code. */
void ct_subscribe(ct_client_t *t, const char *filter, int qos);

/* Publish completion recorder: arg is a ct_pub_t. */
void ct_pub_cb(uvmqtt_client_t *c, const uvmqtt_pub_result_t *r, void *arg);
/* Subscribe completion recorder: arg is a ct_sub_t. */
void ct_sub_cb(uvmqtt_client_t *c, const uvmqtt_sub_result_t *r, void *arg);

/* Runs the loop until cond(arg) is true or timeout_ms passes; returns
 * 0 when it became true. */
int ct_run_while_not(uv_loop_t *loop, bool (*cond)(void *), void *arg,
                     unsigned timeout_ms);
/* Runs until *counter >= want (int or size_t flavours). */
int ct_wait_int(uv_loop_t *loop, const int *counter, int want,
                unsigned timeout_ms);
int ct_wait_size(uv_loop_t *loop, const size_t *counter, size_t want,
                 unsigned timeout_ms);

/* Starts a broker (asserting it). Brokers live in static storage so the
 * teardown (ct_teardown) stops them even after a failed assertion. */
tu_broker_t *ct_broker(const char *extra);
/* Registers a child process for ct_teardown to kill. */
void ct_track_child(int pid);
/* Stops every broker and child of the test; use with CT_TEST. */
int ct_teardown(void **state);
#define CT_TEST(f) cmocka_unit_test_teardown(f, ct_teardown)
/* Kills the brokers and children when the test is killed (timeouts). */
void ct_install_signal_handlers(void);

/* ---- scripted peer ------------------------------------------------------ */

typedef struct {
  uv_tcp_t server;
  uv_tcp_t conn;
  bool has_conn;
  bool conn_closed;
  int port;
  int accepted;
  /* Sent once when the first bytes from the client arrive (NULL: never
   * answer). */
  const uint8_t *script;
  size_t script_len;
  bool script_sent;
  /* Sent on demand with ct_peer_send. */
  uint8_t rx[4096];
  size_t rx_len;
  int client_eof; /* the client closed or reset its side */
} ct_peer_t;

void ct_peer_start(uv_loop_t *loop, ct_peer_t *p, const uint8_t *script,
                   size_t len);
void ct_peer_send(ct_peer_t *p, const uint8_t *bytes, size_t len);
void ct_peer_stop(ct_peer_t *p);
/* Runs until the peer has received at least n bytes. */
int ct_peer_wait_rx(uv_loop_t *loop, ct_peer_t *p, size_t n,
                    unsigned timeout_ms);

/* Runs the cmocka group, honouring an optional test name filter in argv[1]
 * (so meson can run one case per test for parallelism). */
#define CT_MAIN(tests)                                                         \
  int main(int argc, char **argv) {                                            \
    ct_install_signal_handlers();                                              \
    if (argc > 1)                                                              \
      cmocka_set_test_filter(argv[1]);                                         \
    return cmocka_run_group_tests(tests, NULL, NULL);                          \
  }

#endif
