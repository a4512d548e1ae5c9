/* Shared helpers for uvmqtt integration tests.
 *
 * - A private mosquitto broker on 127.0.0.1, on free ports, with a config
 *   file the test writes into a temporary directory; stopped by its PID.
 * - Bounded loop running (every wait has a deadline).
 * - Loop-lag measurement: a uv_timer that records how late it fires.
 * - Temporary directories.
 *
 * Everything is loopback only. All functions print the reason of a failure
 * on stderr. */
#ifndef UVMQTT_TESTUTIL_H
#define UVMQTT_TESTUTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A free TCP port on 127.0.0.1 (bound to port 0, then released), or -1.
 * Ports handed out by this process are never handed out twice. */
int tu_free_port(void);

/* Creates a fresh temporary directory (mode 0755) and writes its path into
 * out (at least 256 bytes). Returns 0 or -1. */
int tu_tmpdir(char *out, size_t cap);
/* Removes a directory tree created by tu_tmpdir (best effort). */
void tu_rmtree(const char *dir);
/* Writes `text` to dir/name; returns 0 or -1. Path of the file in out
 * (may be NULL). */
int tu_write_file(const char *dir, const char *name, const char *text,
                  char *out, size_t cap);

typedef struct {
  pid_t pid;
  int port;         /* the plain MQTT listener on 127.0.0.1 */
  char dir[256];    /* temporary directory with the config and log */
  char conf[320];   /* config file path */
  char log[320];    /* mosquitto's log file (log_dest file) */
  char extra[8192]; /* extra config lines, kept for restarts */
} tu_broker_t;

/* Starts mosquitto with a config file containing:
 *   user root (only when running as root), listener <port> 127.0.0.1,
 *   allow_anonymous true, persistence false, log_dest file <log>,
 *   log_type all, then `extra` verbatim (may be NULL; may add listeners,
 *   max_inflight_messages, etc.).
 * port: 0 picks a free port. Waits (at most 5 s) until the listener accepts
 * TCP connections. Returns 0 or -1 (the log is printed on failure). */
int tu_broker_start(tu_broker_t *b, int port, const char *extra);
/* Stops it: SIGTERM, wait up to 3 s, then SIGKILL. Keeps dir. */
void tu_broker_stop(tu_broker_t *b);
/* Kills it at once with SIGKILL (simulates a crash). */
void tu_broker_kill(tu_broker_t *b);
/* Starts it again on the same port(s) with the same config. 0 or -1. */
int tu_broker_restart(tu_broker_t *b);
/* Stops it and removes its directory. */
void tu_broker_cleanup(tu_broker_t *b);
/* Waits until 127.0.0.1:port accepts a TCP connection, at most timeout_ms.
 * Returns 0 or -1. */
int tu_wait_port(int port, unsigned timeout_ms);
/* 1 when mosquitto's log contains `needle`. */
int tu_broker_log_contains(const tu_broker_t *b, const char *needle);

/* Runs the loop until *flag becomes non-zero or timeout_ms passes.
 * Returns 0 when the flag was set, -1 on timeout. */
int tu_run_until(uv_loop_t *loop, volatile int *flag, unsigned timeout_ms);
/* Runs the loop for about ms milliseconds. */
void tu_run_for(uv_loop_t *loop, unsigned ms);
/* Runs the loop until it has no active handles (at most timeout_ms), then
 * calls uv_loop_close(). Returns uv_loop_close's result (0 when nothing
 * leaked), printing any handle still open. */
int tu_loop_close(uv_loop_t *loop, unsigned timeout_ms);

/* Loop lag: a repeating timer with period `period_ms` that records the
 * largest delay beyond its due time. */
typedef struct {
  uv_timer_t timer;
  uint64_t period_ms;
  uint64_t last_ms; /* uv_hrtime-based */
  uint64_t max_lag_ms;
  uint64_t ticks;
} tu_lag_t;
void tu_lag_start(uv_loop_t *loop, tu_lag_t *lag, unsigned period_ms);
void tu_lag_stop(tu_lag_t *lag); /* closes the timer */

/* Milliseconds from a monotonic clock. */
uint64_t tu_now_ms(void);

/* Runs a shell command with a time limit (seconds), captures up to cap-1
 * bytes of stdout into out (may be NULL). Returns the exit status, 124 on
 * timeout, -1 on failure to run. */
int tu_run_cmd(const char *cmd, unsigned timeout_s, char *out, size_t cap);

/* Small pieces of scripted servers. */
/* A unix-domain stream socket bound to `name` (a path, or "@name" in the
 * Linux abstract namespace), not listening yet (for uv_pipe_open() and
 * uv_listen(): uv_pipe_bind() of libuv 1.44 knows no abstract names), or
 * -1. */
int tu_unix_bound_socket(const char *name);
/* Writes a copy of n bytes to s, freed once written. 0 or a libuv error. */
int tu_write_copy(uv_stream_t *s, const void *b, size_t n);
/* An alloc_cb for uv_read_start(); the read callback frees b->base. */
void tu_alloc_cb(uv_handle_t *h, size_t size, uv_buf_t *b);

/* A counting allocator with failure injection, for
 * uvmqtt_replace_allocator(tu_malloc, tu_realloc, tu_calloc, tu_free):
 * the allocation made when tu_alloc_countdown reaches 0 fails (-1: none);
 * tu_alloc_live counts the blocks held. */
extern long tu_alloc_countdown;
extern long tu_alloc_live;
void *tu_malloc(size_t n);
void *tu_calloc(size_t count, size_t n);
void *tu_realloc(void *old, size_t n);
void tu_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
