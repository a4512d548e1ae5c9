/* Allocation-failure sweep: fail the Nth allocation for every N and check
 * for a clean UVMQTT_ENOMEM, an unchanged table and no leak (the
 * sanitizer build reports leaks). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "uvmqtt/alloc.h"
#include "uvmqtt/errors.h"
#include "uvmqtt/router.h"

static long countdown = -1; /* allocations left before one fails; -1 never */
static long allocs;

static int should_fail(void) {
  allocs++;
  if (countdown < 0)
    return 0;
  if (countdown == 0)
    return 1; /* keep failing until reset, like real exhaustion */
  countdown--;
  return 0;
}

static void *f_malloc(size_t n) {
  return should_fail() ? NULL : malloc(n);
}

static void *f_realloc(void *p, size_t n) {
  return should_fail() ? NULL : realloc(p, n);
}

static void *f_calloc(size_t c, size_t n) {
  return should_fail() ? NULL : calloc(c, n);
}

static int setup(void **state) {
  (void)state;
  return uvmqtt_replace_allocator(f_malloc, f_realloc, f_calloc, free);
}

static int teardown(void **state) {
  (void)state;
  countdown = -1;
  return uvmqtt_replace_allocator(malloc, realloc, calloc, free);
}

static const char *const filters[] = {
    "a/b/c/d/e/f", "a/b/c/x", "a/+/c/#", "#",           "+/+", "$share/g/a/b",
    "a/b",         "$SYS/#",  "x/y/z",   "a/b/c/d/e/g", "a//", "+/b/+/d/#",
};
#define NF (sizeof(filters) / sizeof(filters[0]))

static int count_cb(void *value, const char *f, size_t len, void *arg) {
  (void)value;
  (void)f;
  (void)len;
  ++*(int *)arg;
  return 0;
}

/* Builds a table: the test filters, then 64 siblings (so a children table
 * grows several times), failing allocation fail_at. Sets *failed when an
 * allocation failed. */
static void sweep_once(long fail_at, int *failed) {
  uvmqtt_router_t *r = NULL;
  char buf[32];
  size_t added = 0;
  int rc;

  countdown = fail_at;
  rc = uvmqtt_router_new(&r);
  if (rc != 0) {
    assert_int_equal(rc, UVMQTT_ENOMEM);
    assert_null(r);
    *failed = 1;
    countdown = -1;
    return;
  }
  size_t empty = uvmqtt_router_memory(r);
  for (int i = 0; i < 64 + (int)NF; i++) {
    const char *f = filters[i % NF];
    if (i >= (int)NF) {
      snprintf(buf, sizeof(buf), "s/%d/t", i);
      f = buf;
    }
    size_t before = uvmqtt_router_memory(r);
    void *old = (void *)1;
    rc = uvmqtt_router_add(r, f, strlen(f), (void *)(intptr_t)(i + 1), &old);
    if (rc == UVMQTT_ENOMEM) {
      *failed = 1;
      assert_ptr_equal(old, (void *)1); /* not written */
      assert_int_equal(uvmqtt_router_count(r), added);
      /* Only spare table capacity may remain. */
      assert_true(uvmqtt_router_memory(r) >= before);
      /* The route is absent and the rest still matches. */
      assert_int_equal(uvmqtt_router_remove(r, f, strlen(f), NULL),
                       UVMQTT_ENOENT);
      break;
    }
    assert_int_equal(rc, 0);
    added++;
  }
  countdown = -1; /* let the checks below allocate nothing but run freely */
  if (added == 64 + NF) {
    int n = 0;
    assert_int_equal(uvmqtt_router_match(r, "a/b/c/d/e/f", 11, count_cb, &n),
                     4); /* #, a/b/c/d/e/f, a/+/c/#, +/b/+/d/# */
    assert_int_equal(n, 4);
  }
  /* Remove everything that was added: memory returns to the empty
   * baseline, which also proves nothing failed half-way stayed behind. */
  for (size_t i = 0; i < added; i++) {
    const char *f = filters[i % NF];
    if (i >= NF) {
      snprintf(buf, sizeof(buf), "s/%d/t", (int)i);
      f = buf;
    }
    assert_int_equal(uvmqtt_router_remove(r, f, strlen(f), NULL), 0);
  }
  assert_int_equal(uvmqtt_router_count(r), 0);
  assert_int_equal(uvmqtt_router_memory(r), empty);
  uvmqtt_router_free(r);
}

static void test_alloc_sweep(void **state) {
  (void)state;
  long n;
  int completed = 0;
  for (n = 0; n < 100000; n++) {
    int failed = 0;
    sweep_once(n, &failed);
    if (!failed) {
      completed = 1;
      break;
    }
  }
  assert_true(completed);
  /* Every allocation point was failed once: more than a handful. */
  assert_true(n > 64);
}

/* A match never allocates: it works with every allocation failing. */
static void test_match_no_alloc(void **state) {
  (void)state;
  uvmqtt_router_t *r;
  assert_int_equal(uvmqtt_router_new(&r), 0);
  for (size_t i = 0; i < NF; i++)
    assert_int_equal(
        uvmqtt_router_add(r, filters[i], strlen(filters[i]), NULL, NULL), 0);
  countdown = 0;
  allocs = 0;
  int n = 0;
  assert_int_equal(uvmqtt_router_match(r, "a/b", 3, count_cb, &n), 4);
  assert_int_equal(allocs, 0);
  /* Removing never fails, even when allocation does (shrinking a table
   * is an optional allocation). */
  for (size_t i = 0; i < NF; i++)
    assert_int_equal(
        uvmqtt_router_remove(r, filters[i], strlen(filters[i]), NULL), 0);
  countdown = -1;
  uvmqtt_router_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_alloc_sweep, setup, teardown),
      cmocka_unit_test_setup_teardown(test_match_no_alloc, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
