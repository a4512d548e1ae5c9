/* Unit tests of the output batches a thread keeps for its sessions when a
 * loop moves between threads: a session used on a loop thread
 * (uvmqtt_thread) and freed on the thread the loop was handed back to
 * leaves nothing behind, on either thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <uv.h>

#include "harness.h"
#include "uvmqtt.h"
#include "uvmqtt/helpers.h"

static size_t spare_on_thread;

/* On the loop thread: the session's first output (CONNECT) is written,
 * and its batch is kept as a spare of this thread. */
static void use_on_thread(void *arg) {
  (void)arg;
  h_init_v(UVMQTT_V311);
  assert_int_equal(h_connect(0, 30, true), 0);
  assert_int_equal(h_flush(0), 1);
  spare_on_thread = uvmqtt__session_spare_batches();
}

/* As a client closed from the loop thread whose close ends on the thread
 * the loop is handed back to (test/tools loopthread): the spare left on
 * the loop thread goes when that thread ends (LeakSanitizer saw it lost),
 * and this thread's count is not disturbed by a session it never counted
 * (it wrapped, and its own spares then stayed for good). */
static void test_pool_loop_moves(void **state) {
  (void)state;
  uv_loop_t loop;
  uvmqtt_thread_t *th;
  assert_int_equal(uv_loop_init(&loop), 0);
  assert_int_equal(uvmqtt_thread_start(&loop, &th), 0);
  assert_int_equal(uvmqtt_thread_call(th, use_on_thread, NULL), 0);
  assert_int_equal(uvmqtt_thread_stop(th), 0);
  assert_int_equal(spare_on_thread, 1);
  for (int i = 0; i < 100 && uv_run(&loop, UV_RUN_NOWAIT); i++)
    ;
  assert_int_equal(uv_loop_close(&loop), 0);

  /* Freed here, where it never wrote. */
  h_fini(0);
  assert_int_equal(uvmqtt__session_spare_batches(), 0);
  /* A session of this thread: its spare goes with it, as the last one. */
  h_init_v(UVMQTT_V311);
  assert_int_equal(h_connect(0, 30, true), 0);
  assert_int_equal(h_flush(0), 1);
  assert_int_equal(uvmqtt__session_spare_batches(), 1);
  h_fini(0);
  assert_int_equal(uvmqtt__session_spare_batches(), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pool_loop_moves),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
