/* Allocation-failure sweep over the store: the Nth allocation fails (once)
 * for every N over a scenario that opens a damaged store (recovery drops a
 * record and rewrites the file), restores a client, puts and removes
 * records through group commits (with compaction), forgets a client and
 * closes. For every N:
 * - every call that failed returned UVMQTT_ENOMEM and fires no callback;
 *   every one that succeeded fires its callback exactly once, with 0 or
 *   UVMQTT_ENOMEM;
 * - nothing leaks (live allocations counted here, on every thread; ASan
 *   checks too);
 * - the file stays a store: reopened without the failing allocator, every
 *   record whose put was reported stored is there with its value, every
 *   one whose remove was is gone, and nothing is dropped as damaged.
 * Allocations happen on the thread pool too: the counters take a lock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "alloc.h"
#include "store/store_int.h"
#include "testutil.h"
#include "uvmqtt/alloc.h"
#include "uvmqtt/errors.h"

static uv_mutex_t lock;
static long fail_at = -1; /* index of the allocation that fails; -1 none */
static long nallocs, live;

static int should_fail(void) {
  uv_mutex_lock(&lock);
  long n = nallocs++;
  uv_mutex_unlock(&lock);
  return fail_at >= 0 && n == fail_at;
}

static void count_live(long d) {
  uv_mutex_lock(&lock);
  live += d;
  uv_mutex_unlock(&lock);
}

static void *f_realloc(void *p, size_t n) {
  if (should_fail())
    return NULL;
  void *q = realloc(p, n);
  if (q && !p)
    count_live(1);
  return q;
}

static void *f_malloc(size_t n) {
  return f_realloc(NULL, n);
}

static void *f_calloc(size_t c, size_t n) {
  if (should_fail())
    return NULL;
  void *q = calloc(c, n);
  if (q)
    count_live(1);
  return q;
}

static void f_free(void *p) {
  if (p)
    count_live(-1);
  free(p);
}

static char dir[256], path[320];
static uint8_t *tmpl;
static size_t tmpl_len;

#define NPUT 40
#define NREMOVE 8

static void write_file(const uint8_t *d, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(d, 1, n, f), n);
  fclose(f);
}

static uint8_t *read_file(size_t *n) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *d = malloc((size_t)len + 1);
  assert_non_null(d);
  assert_int_equal(fread(d, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  *n = (size_t)len;
  return d;
}

static void be_put(uvmqtt_store_backend_t *b, const char *client, uint64_t id,
                   const char *v) {
  uvmqtt_store_key_t k = {client, strlen(client), id};
  assert_int_equal(b->put(b, &k, v, strlen(v)), 0);
}

/* A store of three clients with one record damaged in the middle. */
static int setup(void **state) {
  (void)state;
  uvmqtt_store_backend_t *b;
  if (tu_tmpdir(dir, sizeof dir) < 0 || uv_mutex_init(&lock) < 0)
    return -1;
  snprintf(path, sizeof path, "%s/alloc.store", dir);
  assert_int_equal(uvmqtt__store_log_open(path, NULL, &b, NULL), 0);
  uint8_t ident[4] = {1, 5, 0, 0}; /* identity: v5, no broker */
  const char *names[3] = {"a", "b", "c"};
  for (int i = 0; i < 3; i++) {
    uvmqtt_store_key_t k = {names[i], 1, UVMQTT__STORE_ID_IDENTITY};
    assert_int_equal(b->put(b, &k, ident, sizeof ident), 0);
    for (int j = 1; j <= 6; j++) {
      char v[32];
      snprintf(v, sizeof v, "old %s %d", names[i], j);
      be_put(b, names[i], 1000 + (uint64_t)j, v);
    }
  }
  be_put(b, "a", 1003, "the damaged one");
  be_put(b, "a", 1007, "after the damage");
  assert_int_equal(b->commit(b, UVMQTT_DURABLE_PROCESS), 0);
  b->destroy(b);
  tmpl = read_file(&tmpl_len);
  /* Flip a bit in the body of "the damaged one". */
  uint8_t *hit = memmem(tmpl, tmpl_len, "the damaged", 11);
  assert_non_null(hit);
  hit[4] ^= 0x20;
  return uvmqtt_replace_allocator(f_malloc, f_realloc, f_calloc, f_free);
}

static int teardown(void **state) {
  (void)state;
  fail_at = -1;
  free(tmpl);
  tu_rmtree(dir);
  uv_mutex_destroy(&lock);
  return uvmqtt_replace_allocator(malloc, realloc, calloc, free);
}

/* ---- one run ----------------------------------------------------------- */

typedef struct {
  int queued; /* the call returned 0 */
  int calls;
  int status;
} op_t;

static op_t puts_[NPUT], removes[NREMOVE];
static int opened, closed, open_status;
static uvmqtt_store_t *store;
static uvmqtt_store_report_t report;

static void check_rc(int rc) {
  if (rc < 0 && rc != UVMQTT_ENOMEM)
    fail_msg("unexpected error %s (allocation %ld)", uvmqtt_err_name(rc),
             fail_at);
}

static void on_open(uvmqtt_store_t *s, int status,
                    const uvmqtt_store_report_t *r, void *arg) {
  (void)arg;
  opened++;
  open_status = status;
  store = s;
  report = *r;
  check_rc(status);
  assert_true((status == 0) == (s != NULL));
}

static void on_op(uvmqtt__store_client_t *c, void *arg, int status) {
  (void)c;
  op_t *o = arg;
  o->calls++;
  o->status = status;
  check_rc(status);
}

static void on_closed(uvmqtt_store_t *s, void *arg) {
  (void)s;
  (void)arg;
  closed++;
}

static const uvmqtt__store_identity_t ident5 = {5, NULL};

static void value_of(char *v, size_t n, int i) {
  snprintf(v, n, "value %d of the sweep %s", i,
           i % 3 ? ""
                 : "(longer, with some more bytes to it, so the log grows)");
}

#define ROUNDS 3 /* each record put 3 times: compaction kicks in */

/* Returns how many allocations the run made. */
static long run(uv_loop_t *loop) {
  uvmqtt__store_client_t *c = NULL;
  uvmqtt__store_rec_t *recs = NULL;
  size_t nrecs = 0;
  uvmqtt_store_log_options_t opts = {4096}; /* compaction on the way */
  memset(puts_, 0, sizeof puts_);
  memset(removes, 0, sizeof removes);
  opened = closed = 0;
  store = NULL;
  nallocs = 0;

  int rc = uvmqtt_store_open(loop, path, &opts, on_open, NULL);
  check_rc(rc);
  if (rc == 0) {
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(opened, 1);
  }
  if (store) {
    rc = uvmqtt__store_attach(store, "a", 1, &ident5, UVMQTT_DURABLE_PROCESS,
                              &c, &recs, &nrecs);
    check_rc(rc);
    for (size_t i = 0; i < nrecs; i++)
      uvmqtt__free(recs[i].value);
    uvmqtt__free(recs);
  }
  if (c) {
    for (int i = 0; i < NPUT * ROUNDS; i++) {
      char v[128];
      op_t *o = &puts_[i % NPUT];
      value_of(v, sizeof v, i % NPUT);
      const void *b = v;
      size_t len = strlen(v);
      rc =
          uvmqtt__store_put(c, 1 + (uint64_t)(i % NPUT), &b, &len, 1, on_op, o);
      check_rc(rc);
      o->queued += rc == 0;
      if (i % 10 == 9) /* a few batches */
        uv_run(loop, UV_RUN_NOWAIT);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    for (int i = 0; i < NREMOVE; i++) {
      rc = uvmqtt__store_remove(c, 1 + (uint64_t)i, on_op, &removes[i]);
      check_rc(rc);
      removes[i].queued = rc == 0;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    uvmqtt__store_detach(c);
  }
  if (store) {
    check_rc(uvmqtt_store_forget(store, "b"));
    assert_int_equal(uvmqtt_store_close(store, on_closed, NULL), 0);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(closed, 1);
  }
  for (int i = 0; i < NPUT; i++)
    assert_int_equal(puts_[i].calls, puts_[i].queued);
  for (int i = 0; i < NREMOVE; i++)
    assert_int_equal(removes[i].calls, removes[i].queued);
  return nallocs;
}

/* Reopened with no failure: what was reported stored is there. */
static void verify(uv_loop_t *loop) {
  uvmqtt__store_client_t *c;
  uvmqtt__store_rec_t *recs;
  size_t n;
  long saved = fail_at;
  fail_at = -1;
  opened = 0;
  store = NULL;
  assert_int_equal(uvmqtt_store_open(loop, path, NULL, on_open, NULL), 0);
  uv_run(loop, UV_RUN_DEFAULT);
  assert_int_equal(open_status, 0);
  if (saved >= 0) /* the damage was dropped by the run (or is now) */
    assert_true(report.dropped_records <= 1);
  assert_int_equal(uvmqtt__store_attach(store, "a", 1, &ident5,
                                        UVMQTT_DURABLE_PROCESS, &c, &recs, &n),
                   0);
  for (int i = 0; i < NPUT; i++) {
    uint64_t id = 1 + (uint64_t)i;
    const uvmqtt__store_rec_t *r = NULL;
    for (size_t k = 0; k < n; k++)
      if (recs[k].id == id)
        r = &recs[k];
    bool removed = i < NREMOVE && removes[i].calls && removes[i].status == 0;
    bool stored = puts_[i].calls && puts_[i].status == 0;
    if (removed) {
      assert_null(r);
    } else if (stored) {
      char v[128];
      value_of(v, sizeof v, i);
      if (!r)
        fail_msg("record %d lost (allocation %ld)", i, saved);
      assert_int_equal(r->len, strlen(v));
      assert_memory_equal(r->value, v, r->len);
    }
  }
  for (size_t k = 0; k < n; k++)
    uvmqtt__free(recs[k].value);
  uvmqtt__free(recs);
  uvmqtt__store_detach(c);
  closed = 0;
  assert_int_equal(uvmqtt_store_close(store, on_closed, NULL), 0);
  uv_run(loop, UV_RUN_DEFAULT);
  assert_int_equal(closed, 1);
  fail_at = saved;
}

static void sweep(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  write_file(tmpl, tmpl_len);
  fail_at = -1;
  long total = run(&loop);
  assert_int_equal(live, 0);
  size_t flen;
  free(read_file(&flen));
  /* Compacted on the way: far less than the ~17 kB written. */
  assert_true(flen < 12000);
  verify(&loop);
  fprintf(stderr, "store alloc sweep: %ld allocations per run\n", total);
  long failures = 0;
  for (fail_at = 0; fail_at < total + 10; fail_at++) {
    write_file(tmpl, tmpl_len);
    long live_before = live;
    long made = run(&loop);
    if (live != live_before)
      fail_msg("allocation %ld failed: %ld allocation(s) leaked", fail_at,
               live - live_before);
    verify(&loop);
    if (made > fail_at)
      failures++;
    if (made <= fail_at) /* the run made fewer: nothing left to fail */
      break;
  }
  fprintf(stderr, "store alloc sweep: %ld runs with a failed allocation\n",
          failures);
  assert_true(failures >= total / 2);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(sweep, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
