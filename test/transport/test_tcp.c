/* The tcp layer (src/transport/tcp.c: a uv_poll_t on a socket it owns)
 * against a plain libuv server in the same loop: connect and refusal,
 * bind, write order and completion, back-pressure with a paused reader,
 * try_write, EOF, cancelled writes on close, a write to a vanished peer
 * (an error, never SIGPIPE), the half-close of shutdown(), the coalescing
 * wait of a reader under load (UVMQTT__HINT_COALESCE). Every wait is
 * bounded by tu_run_until(). */
#include <setjmp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "testutil.h"
#include "transport/transport.h"

#define BIG (4u << 20) /* per write: several of these fill every buffer */
#define NBIG 4
#define WAIT_MS 10000

typedef struct {
  uv_loop_t loop;
  uv_tcp_t lis;
  uv_tcp_t peer; /* the accepted connection */
  int accepted, peer_closing, peer_closed, lis_closed;
  /* what the peer read: a running count, and the first mismatch */
  size_t peer_got;
  int peer_bad, peer_eof;
  /* the stream */
  uvmqtt_stream_t *s;
  int open_status, opened, closed;
  size_t got;
  int eof;
  uint8_t first[16];
  /* write completions, in order */
  int done[64];
  void *done_arg[64];
  int ndone;
  int in_write;
  int cb_inside_write;
  int close_seen_at; /* ndone when the close callback ran */
  struct sockaddr_in addr;
} fx_t;

static uint8_t *pattern;

static uint8_t pat(size_t i) {
  return (uint8_t)(i * 7 + (i >> 11));
}

static void peer_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  (void)h;
  b->base = malloc(sz);
  b->len = b->base ? sz : 0;
}

static void peer_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  fx_t *f = st->data;
  if (n > 0) {
    for (ssize_t i = 0; i < n; i++)
      if ((uint8_t)b->base[i] != pat(f->peer_got + (size_t)i))
        f->peer_bad = 1;
    f->peer_got += (size_t)n;
  } else if (n < 0) {
    f->peer_eof = 1;
    uv_read_stop(st);
  }
  free(b->base);
}

static void on_accept(uv_stream_t *l, int status) {
  fx_t *f = l->data;
  assert_int_equal(status, 0);
  assert_int_equal(uv_tcp_init(&f->loop, &f->peer), 0);
  f->peer.data = f;
  assert_int_equal(uv_accept(l, (uv_stream_t *)&f->peer), 0);
  assert_int_equal(
      uv_read_start((uv_stream_t *)&f->peer, peer_alloc, peer_read), 0);
  f->accepted = 1;
}

static void on_read(uvmqtt_stream_t *s, ssize_t n, const uint8_t *buf) {
  fx_t *f = s->data;
  if (n > 0) {
    size_t room = sizeof(f->first) -
                  (f->got < sizeof(f->first) ? f->got : sizeof(f->first));
    memcpy(f->first + (sizeof(f->first) - room), buf,
           (size_t)n < room ? (size_t)n : room);
    f->got += (size_t)n;
  } else {
    f->eof = (int)n;
  }
}

static void on_open(uvmqtt_stream_t *s, int status) {
  fx_t *f = s->data;
  f->open_status = status;
  f->opened = 1;
  if (status == 0)
    s->read_cb = on_read;
}

static void on_written(uvmqtt_stream_t *s, int status, void *arg) {
  fx_t *f = s->data;
  if (f->in_write)
    f->cb_inside_write = 1;
  if (f->ndone < 64) {
    f->done[f->ndone] = status;
    f->done_arg[f->ndone] = arg;
  }
  f->ndone++;
}

static void on_closed(uvmqtt_stream_t *s) {
  fx_t *f = s->data;
  f->closed = 1;
  f->close_seen_at = f->ndone;
}

static void on_peer_closed(uv_handle_t *h) {
  ((fx_t *)h->data)->peer_closed = 1;
}

static void close_peer(fx_t *f) {
  if (!f->peer_closing) {
    f->peer_closing = 1;
    uv_close((uv_handle_t *)&f->peer, on_peer_closed);
  }
}

static void on_lis_closed(uv_handle_t *h) {
  ((fx_t *)h->data)->lis_closed = 1;
}

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(uv_tcp_init(&f->loop, &f->lis), 0);
  f->lis.data = f;
  assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &f->addr), 0);
  assert_int_equal(uv_tcp_bind(&f->lis, (struct sockaddr *)&f->addr, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&f->lis, 8, on_accept), 0);
  int len = sizeof(f->addr);
  assert_int_equal(
      uv_tcp_getsockname(&f->lis, (struct sockaddr *)&f->addr, &len), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  if (f->s && !f->closed) {
    uvmqtt__stream_close(f->s, on_closed);
    tu_run_until(&f->loop, &f->closed, WAIT_MS);
  }
  if (f->accepted) {
    close_peer(f);
    tu_run_until(&f->loop, &f->peer_closed, WAIT_MS);
  }
  uv_close((uv_handle_t *)&f->lis, on_lis_closed);
  tu_run_until(&f->loop, &f->lis_closed, WAIT_MS);
  assert_int_equal(tu_loop_close(&f->loop, WAIT_MS), 0);
  free(f);
  return 0;
}

/* Connects with `opts` and waits until open and accepted. */
static void connect_ok(fx_t *f, const uvmqtt_tcp_opts_t *opts) {
  assert_int_equal(uvmqtt__tcp_connect(&f->loop, (struct sockaddr *)&f->addr,
                                       opts, on_open, f, &f->s),
                   0);
  assert_int_equal(tu_run_until(&f->loop, &f->opened, WAIT_MS), 0);
  assert_int_equal(f->open_status, 0);
  assert_int_equal(tu_run_until(&f->loop, &f->accepted, WAIT_MS), 0);
}

static void write_pattern(fx_t *f, size_t off, size_t len, void *arg) {
  uv_buf_t b = uv_buf_init((char *)pattern + off, (unsigned)len);
  f->in_write = 1;
  assert_int_equal(uvmqtt__stream_write(f->s, &b, 1, on_written, arg), 0);
  f->in_write = 0;
}

/* Runs the loop until the peer read n bytes (bounded). */
static void wait_peer(fx_t *f, size_t n) {
  uint64_t end = uv_now(&f->loop) + WAIT_MS;
  while (f->peer_got < n && uv_now(&f->loop) < end)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_true(f->peer_got >= n);
}

static void wait_done(fx_t *f, int n) {
  uint64_t end = uv_now(&f->loop) + WAIT_MS;
  while (f->ndone < n && uv_now(&f->loop) < end)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(f->ndone, n);
}

static void test_refused(void **state) {
  fx_t *f = *state;
  struct sockaddr_in a;
  assert_int_equal(uv_ip4_addr("127.0.0.1", tu_free_port(), &a), 0);
  uvmqtt_stream_t *s = NULL;
  int rc = uvmqtt__tcp_connect(&f->loop, (struct sockaddr *)&a, NULL, on_open,
                               f, &s);
  if (rc == 0) {
    assert_int_equal(tu_run_until(&f->loop, &f->opened, WAIT_MS), 0);
    rc = f->open_status;
    f->s = s; /* closed by the teardown */
  }
  assert_int_equal(rc, UV_ECONNREFUSED);
}

static void test_bind_nodelay_keepalive(void **state) {
  fx_t *f = *state;
  struct sockaddr_in b;
  assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &b), 0);
  uvmqtt_tcp_opts_t o = {
      .bind_addr = (struct sockaddr *)&b, .nodelay = 1, .keepalive_s = 30};
  connect_ok(f, &o);
  struct sockaddr_in peer;
  int len = sizeof(peer);
  assert_int_equal(uv_tcp_getpeername(&f->peer, (struct sockaddr *)&peer, &len),
                   0);
  assert_int_equal(peer.sin_addr.s_addr, b.sin_addr.s_addr);
  /* Bound to the given address and a port of its own. */
  assert_int_not_equal(peer.sin_port, 0);
}

/* Small writes (with an empty buffer among them) arrive whole and in
 * order, and no completion fires from inside write(). */
static void test_small_writes_in_order(void **state) {
  fx_t *f = *state;
  connect_ok(f, NULL);
  size_t off = 0;
  for (int i = 0; i < 20; i++) {
    uv_buf_t b[3] = {uv_buf_init((char *)pattern + off, 3),
                     uv_buf_init((char *)pattern + off + 3, 0),
                     uv_buf_init((char *)pattern + off + 3, 2)};
    f->in_write = 1;
    assert_int_equal(
        uvmqtt__stream_write(f->s, b, 3, on_written, (void *)(intptr_t)i), 0);
    f->in_write = 0;
    off += 5;
  }
  wait_done(f, 20);
  wait_peer(f, off);
  assert_int_equal(f->peer_got, off);
  assert_false(f->peer_bad);
  assert_false(f->cb_inside_write);
  for (int i = 0; i < 20; i++) {
    assert_int_equal(f->done[i], 0);
    assert_ptr_equal(f->done_arg[i], (void *)(intptr_t)i);
  }
}

/* With the peer not reading, big writes stay pending (no completion),
 * try_write refuses to jump the queue, and once the peer reads again
 * everything arrives in order with completions in order. */
static void test_backpressure(void **state) {
  fx_t *f = *state;
  connect_ok(f, NULL);
  uv_read_stop((uv_stream_t *)&f->peer);
  for (int i = 0; i < NBIG; i++)
    write_pattern(f, (size_t)i * BIG, BIG, (void *)(intptr_t)i);
  for (int i = 0; i < 50; i++)
    uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_true(f->ndone < NBIG); /* the kernel cannot hold 16 MiB */
  assert_false(f->cb_inside_write);
  assert_int_equal(
      uv_read_start((uv_stream_t *)&f->peer, peer_alloc, peer_read), 0);
  wait_done(f, NBIG);
  wait_peer(f, (size_t)NBIG * BIG);
  assert_int_equal(f->peer_got, (size_t)NBIG * BIG);
  assert_false(f->peer_bad);
  for (int i = 0; i < NBIG; i++) {
    assert_int_equal(f->done[i], 0);
    assert_ptr_equal(f->done_arg[i], (void *)(intptr_t)i);
  }
}

static void test_try_write(void **state) {
  fx_t *f = *state;
  connect_ok(f, NULL);
  uv_buf_t b[2] = {uv_buf_init((char *)pattern, 4),
                   uv_buf_init((char *)pattern + 4, 6)};
  assert_int_equal(f->s->ops->try_write(f->s, b, 2), 10);
  wait_peer(f, 10);
  assert_false(f->peer_bad);
  assert_int_equal(f->ndone, 0); /* try_write has no callback */
  /* Behind a pending write it takes nothing. */
  uv_read_stop((uv_stream_t *)&f->peer);
  write_pattern(f, 10, BIG, NULL);
  write_pattern(f, 10 + BIG, BIG, NULL);
  uv_buf_t c = uv_buf_init((char *)pattern + 10 + 2 * BIG, 4);
  assert_int_equal(f->s->ops->try_write(f->s, &c, 1), 0);
}

/* Bytes from the peer reach read_cb; the peer's close is UV_EOF. */
static void test_read_and_eof(void **state) {
  fx_t *f = *state;
  connect_ok(f, NULL);
  static uv_write_t w;
  uv_buf_t b = uv_buf_init("hello", 5);
  assert_int_equal(uv_write(&w, (uv_stream_t *)&f->peer, &b, 1, NULL), 0);
  uint64_t end = uv_now(&f->loop) + WAIT_MS;
  while (f->got < 5 && uv_now(&f->loop) < end)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(f->got, 5);
  assert_memory_equal(f->first, "hello", 5);
  close_peer(f);
  end = uv_now(&f->loop) + WAIT_MS;
  while (!f->eof && uv_now(&f->loop) < end)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(f->eof, UV_EOF);
  /* Reading cannot restart after EOF. */
  assert_int_not_equal(f->s->ops->read_start(f->s), 0);
}

/* A reader under load asks for a wait after each read; the peer's next
 * byte is already on its way when the first wait starts. Each read gets
 * its wait, also the second one, which comes within microseconds of the
 * end of the first: only a different stream is turned away in that
 * window (several streams flushed in one loop pass share one wait). */
static int nap_reads;

static void nap_read(uvmqtt_stream_t *s, ssize_t n, const uint8_t *buf) {
  fx_t *f = s->data;
  (void)buf;
  if (n <= 0)
    return;
  f->got += (size_t)n;
  if (++nap_reads == 1) {
    /* The peer answers at once, straight into our receive buffer. */
    uv_os_fd_t pfd;
    assert_int_equal(uv_fileno((uv_handle_t *)&f->peer, &pfd), 0);
    assert_int_equal(send(pfd, "b", 1, 0), 1);
  }
  uvmqtt__stream_hint(s, UVMQTT__HINT_COALESCE, 60000);
}

/* A read after which the reader still awaits answers (UVMQTT__HINT_AWAIT)
 * is acknowledged at once, though nothing was written before it: a peer
 * with Nagle's algorithm holds its next answer until then. A read with a
 * reply queued is not (the reply carries the ACK), nor one with no hint
 * after no write (a stream). */
static int await_mode; /* 0: no hint, 1: await, 2: await and reply */

static void await_read(uvmqtt_stream_t *s, ssize_t n, const uint8_t *buf) {
  fx_t *f = s->data;
  (void)buf;
  if (n <= 0)
    return;
  f->got += (size_t)n;
  if (await_mode >= 1)
    uvmqtt__stream_hint(s, UVMQTT__HINT_AWAIT, 0);
  if (await_mode == 2)
    uvmqtt__stream_hint(s, UVMQTT__HINT_REPLY, 0);
}

static void await_send(fx_t *f, const char *what, size_t want) {
  uv_os_fd_t pfd;
  assert_int_equal(uv_fileno((uv_handle_t *)&f->peer, &pfd), 0);
  assert_int_equal(send(pfd, what, 1, 0), 1);
  uint64_t end = uv_now(&f->loop) + WAIT_MS;
  while (f->got < want && uv_now(&f->loop) < end)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(f->got, want);
}

static void test_quickack_await(void **state) {
  fx_t *f = *state;
  uvmqtt_tcp_opts_t o = {.nodelay = 1};
  connect_ok(f, &o);
  f->s->read_cb = await_read;
  uint64_t acks = uvmqtt__tcp_quickacks();
  await_mode = 0;
  await_send(f, "a", 1);
  assert_int_equal(uvmqtt__tcp_quickacks() - acks, 0);
  await_mode = 1;
  await_send(f, "b", 2);
  assert_int_equal(uvmqtt__tcp_quickacks() - acks, 1);
  await_send(f, "c", 3);
  assert_int_equal(uvmqtt__tcp_quickacks() - acks, 2);
  await_mode = 2;
  await_send(f, "d", 4);
  assert_int_equal(uvmqtt__tcp_quickacks() - acks, 2);
  await_mode = 0;
  await_send(f, "e", 5);
  assert_int_equal(uvmqtt__tcp_quickacks() - acks, 2);
}

static void test_nap_per_read(void **state) {
  fx_t *f = *state;
  connect_ok(f, NULL);
  f->s->read_cb = nap_read;
  nap_reads = 0;
  uint64_t naps = uvmqtt__tcp_naps();
  uv_os_fd_t pfd;
  assert_int_equal(uv_fileno((uv_handle_t *)&f->peer, &pfd), 0);
  assert_int_equal(send(pfd, "a", 1, 0), 1);
  uint64_t end = uv_now(&f->loop) + WAIT_MS;
  while (f->got < 2 && uv_now(&f->loop) < end)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(f->got, 2);
  assert_int_equal(nap_reads, 2);
  assert_int_equal(uvmqtt__tcp_naps() - naps, 2);
  /* No hint, no wait. */
  f->s->read_cb = on_read;
  assert_int_equal(send(pfd, "c", 1, 0), 1);
  end = uv_now(&f->loop) + WAIT_MS;
  while (f->got < 3 && uv_now(&f->loop) < end)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(f->got, 3);
  assert_int_equal(uvmqtt__tcp_naps() - naps, 2);
}

/* Writes still pending at close complete with UV_ECANCELED, all before
 * the close callback; writing to a closing stream is refused. */
static void test_close_cancels_writes(void **state) {
  fx_t *f = *state;
  connect_ok(f, NULL);
  uv_read_stop((uv_stream_t *)&f->peer);
  for (int i = 0; i < NBIG; i++)
    write_pattern(f, (size_t)i * BIG, BIG, (void *)(intptr_t)i);
  for (int i = 0; i < 20; i++)
    uv_run(&f->loop, UV_RUN_NOWAIT);
  int before = f->ndone;
  assert_true(before < NBIG);
  uvmqtt__stream_close(f->s, on_closed);
  uv_buf_t b = uv_buf_init((char *)pattern, 1);
  assert_int_equal(uvmqtt__stream_write(f->s, &b, 1, on_written, NULL),
                   UV_ECANCELED);
  assert_int_equal(tu_run_until(&f->loop, &f->closed, WAIT_MS), 0);
  assert_int_equal(f->ndone, NBIG);
  assert_int_equal(f->close_seen_at, NBIG);
  for (int i = before; i < NBIG; i++) {
    assert_int_equal(f->done[i], UV_ECANCELED);
    assert_ptr_equal(f->done_arg[i], (void *)(intptr_t)i);
  }
  /* The peer then sees the connection end. */
  assert_int_equal(
      uv_read_start((uv_stream_t *)&f->peer, peer_alloc, peer_read), 0);
  assert_int_equal(tu_run_until(&f->loop, &f->peer_eof, WAIT_MS), 0);
}

/* Writing to a peer that has gone fails with an error status (EPIPE or
 * ECONNRESET); SIGPIPE keeps its default action here, so a raised signal
 * would kill the test. */
static void test_write_to_gone_peer(void **state) {
  fx_t *f = *state;
  signal(SIGPIPE, SIG_DFL);
  connect_ok(f, NULL);
  close_peer(f);
  assert_int_equal(tu_run_until(&f->loop, &f->peer_closed, WAIT_MS), 0);
  int failed = 0;
  for (int i = 0; i < 20 && !failed; i++) {
    uv_buf_t b = uv_buf_init((char *)pattern, 65536);
    int rc = uvmqtt__stream_write(f->s, &b, 1, on_written, NULL);
    if (rc < 0) {
      failed = rc;
      break;
    }
    for (int k = 0; k < 10; k++)
      uv_run(&f->loop, UV_RUN_NOWAIT);
    for (int k = 0; k < f->ndone && k < 64; k++)
      if (f->done[k] < 0)
        failed = f->done[k];
  }
  assert_true(failed == UV_EPIPE || failed == UV_ECONNRESET);
}

/* shutdown() half-closes after the bytes already queued: the peer reads
 * them all, then EOF; writing after it is refused; and the stream still
 * reads what the peer sends until the peer closes too (the drain a
 * graceful disconnect needs). */
static void test_shutdown_half_close(void **state) {
  fx_t *f = *state;
  connect_ok(f, NULL);
  uv_read_stop((uv_stream_t *)&f->peer);
  write_pattern(f, 0, BIG, NULL);
  write_pattern(f, BIG, BIG, NULL);
  f->s->ops->shutdown(f->s);
  f->s->ops->shutdown(f->s); /* once only */
  uv_buf_t b = uv_buf_init((char *)pattern, 1);
  assert_int_equal(uvmqtt__stream_write(f->s, &b, 1, on_written, NULL),
                   UV_EPIPE);
  assert_int_equal(f->s->ops->try_write(f->s, &b, 1), UV_EPIPE);
  assert_int_equal(
      uv_read_start((uv_stream_t *)&f->peer, peer_alloc, peer_read), 0);
  assert_int_equal(tu_run_until(&f->loop, &f->peer_eof, WAIT_MS), 0);
  assert_int_equal(f->peer_got, 2 * (size_t)BIG);
  assert_false(f->peer_bad);
  wait_done(f, 2);
  /* The peer still talks, then closes: all of it is read, then EOF. */
  static uv_write_t w;
  uv_buf_t m = uv_buf_init("late", 4);
  assert_int_equal(uv_write(&w, (uv_stream_t *)&f->peer, &m, 1, NULL), 0);
  close_peer(f);
  uint64_t end = uv_now(&f->loop) + WAIT_MS;
  while (!f->eof && uv_now(&f->loop) < end)
    uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(f->got, 4);
  assert_memory_equal(f->first, "late", 4);
  assert_int_equal(f->eof, UV_EOF);
}

int main(void) {
  pattern = malloc((size_t)NBIG * BIG + 64);
  if (!pattern)
    return 1;
  for (size_t i = 0; i < (size_t)NBIG * BIG + 64; i++)
    pattern[i] = pat(i);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bind_nodelay_keepalive, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_small_writes_in_order, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
      cmocka_unit_test_setup_teardown(test_try_write, setup, teardown),
      cmocka_unit_test_setup_teardown(test_read_and_eof, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_cancels_writes, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_write_to_gone_peer, setup, teardown),
      cmocka_unit_test_setup_teardown(test_shutdown_half_close, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_nap_per_read, setup, teardown),
      cmocka_unit_test_setup_teardown(test_quickack_await, setup, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  free(pattern);
  return rc;
}
