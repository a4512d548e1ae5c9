/* Unit tests of the loop-side store: group commit (one batch per loop
 * iteration), completion callbacks, restore handed to each client once,
 * identity checks, clearing, detaching, closing, and opening on the thread
 * pool (callbacks, errors, custom backends). Files in a temporary
 * directory, a private loop. */
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
#include "uvmqtt/errors.h"

static char dir[256];
static char path[320];
static uv_loop_t loop;
static uv_thread_t main_thread;

static int setup(void **state) {
  (void)state;
  if (tu_tmpdir(dir, sizeof dir) < 0 || uv_loop_init(&loop) < 0)
    return -1;
  main_thread = uv_thread_self();
  snprintf(path, sizeof path, "%s/store.log", dir);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  uv_run(&loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&loop);
  tu_rmtree(dir);
  return rc == 0 ? 0 : -1; /* a handle left open fails the test */
}

static const uvmqtt__store_identity_t v5_broker = {5, "mqtt://b:1883"};

static int done_count, last_status;
static void count_cb(uvmqtt__store_client_t *c, void *arg, int status) {
  (void)c;
  (void)arg;
  done_count++;
  if (status < 0)
    last_status = status;
}

static int closed;
static void closed_cb(uvmqtt_store_t *s, void *arg) {
  (void)s;
  (void)arg;
  closed++;
}

/* Opening: what the callback got, and on which thread it ran. */
typedef struct {
  int calls, status;
  uvmqtt_store_t *store;
  uvmqtt_store_report_t report;
  uv_thread_t thread;
} opened_t;

static void on_opened(uvmqtt_store_t *s, int status,
                      const uvmqtt_store_report_t *r, void *arg) {
  opened_t *o = arg;
  o->calls++;
  o->status = status;
  o->store = s;
  o->report = *r;
  o->thread = uv_thread_self();
}

/* Starts opening, checks the callback does not fire from inside the call,
 * runs the loop until it fired (nothing else is on it) and returns its
 * status. */
static int open_wait(const uvmqtt_store_log_options_t *opts, opened_t *o) {
  memset(o, 0, sizeof *o);
  int rc = uvmqtt_store_open(&loop, path, opts, on_opened, o);
  if (rc < 0)
    return rc;
  assert_int_equal(o->calls, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(o->calls, 1);
  assert_true(uv_thread_equal(&o->thread, &main_thread));
  assert_true((o->status == 0) == (o->store != NULL));
  return o->status;
}

static uvmqtt_store_t *open_store_report(uvmqtt_store_report_t *r) {
  opened_t o;
  assert_int_equal(open_wait(NULL, &o), 0);
  if (r)
    *r = o.report;
  return o.store;
}

static uvmqtt_store_t *open_store(void) {
  return open_store_report(NULL);
}

static void close_store(uvmqtt_store_t *s) {
  closed = 0;
  assert_int_equal(uvmqtt_store_close(s, closed_cb, NULL), 0);
  assert_int_equal(uvmqtt_store_close(s, closed_cb, NULL), UVMQTT_ESTATE);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(closed, 1);
}

static int put_str(uvmqtt__store_client_t *c, uint64_t id, const char *v) {
  const void *b[2] = {v, "!"};
  size_t l[2] = {strlen(v), 1};
  return uvmqtt__store_put(c, id, b, l, 2, count_cb, NULL);
}

static void free_recs(uvmqtt__store_rec_t *r, size_t n) {
  for (size_t i = 0; i < n; i++)
    uvmqtt__free(r[i].value);
  uvmqtt__free(r);
}

/* ---------------------------------------------------------------------- */

static void group_commit_and_restore(void **state) {
  (void)state;
  uvmqtt_store_t *s = open_store();
  uvmqtt__store_client_t *c;
  uvmqtt__store_rec_t *recs;
  size_t n;
  assert_int_equal(uvmqtt__store_attach(s, "gw-1", 4, &v5_broker,
                                        UVMQTT_DURABLE_PROCESS, &c, &recs, &n),
                   0);
  assert_int_equal(n, 0);
  assert_null(recs);
  done_count = 0;
  last_status = 0;
  for (uint64_t id = 1; id <= 1000; id++)
    assert_int_equal(put_str(c, id, "message"), 0);
  assert_int_equal(uvmqtt__store_remove(c, 7, count_cb, NULL), 0);
  assert_int_equal(done_count, 0); /* never before the batch is written */
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(done_count, 1001);
  assert_int_equal(last_status, 0);
  uint64_t batches, ops;
  uvmqtt__store_stats(s, &batches, &ops);
  assert_int_equal(batches, 1); /* one iteration's writes: one batch */
  assert_int_equal(ops, 1002);  /* and the identity */
  assert_int_equal(uvmqtt__store_put(c, 0, NULL, NULL, 0, NULL, NULL),
                   UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_store_close(s, NULL, NULL), UVMQTT_EBUSY);
  uvmqtt__store_detach(c);
  close_store(s);

  /* Restart: the client gets its records back, in id order, once. */
  s = open_store();
  assert_int_equal(uvmqtt__store_attach(s, "gw-1", 4, &v5_broker,
                                        UVMQTT_DURABLE_POWER, &c, &recs, &n),
                   0);
  assert_int_equal(n, 999);
  for (size_t i = 0; i < n; i++) {
    assert_true(recs[i].id == (i < 6 ? i + 1 : i + 2));
    assert_int_equal(recs[i].len, 8);
    assert_memory_equal(recs[i].value, "message!", 8);
  }
  free_recs(recs, n);
  uvmqtt__store_client_t *c2;
  assert_int_equal(uvmqtt__store_attach(s, "gw-1", 4, &v5_broker,
                                        UVMQTT_DURABLE_POWER, &c2, &recs, &n),
                   UVMQTT_EEXIST);
  uvmqtt__store_detach(c);
  assert_int_equal(uvmqtt__store_attach(s, "gw-1", 4, &v5_broker,
                                        UVMQTT_DURABLE_POWER, &c, &recs, &n),
                   0);
  assert_int_equal(n, 0); /* handed over already in this process */
  uvmqtt__store_detach(c);
  close_store(s);
}

static void identity(void **state) {
  (void)state;
  uvmqtt_store_t *s = open_store();
  uvmqtt__store_client_t *c;
  uvmqtt__store_rec_t *recs;
  size_t n;
  uvmqtt__store_identity_t no_broker = {5, NULL};
  assert_int_equal(uvmqtt__store_attach(s, "a", 1, &no_broker,
                                        UVMQTT_DURABLE_PROCESS, &c, &recs, &n),
                   0);
  assert_int_equal(put_str(c, 1, "x"), 0);
  uvmqtt__store_detach(c);
  assert_int_equal(uvmqtt__store_attach(s, "b", 1, &v5_broker,
                                        UVMQTT_DURABLE_PROCESS, &c, &recs, &n),
                   0);
  assert_int_equal(put_str(c, 1, "y"), 0);
  uvmqtt__store_detach(c);
  close_store(s);

  s = open_store();
  uvmqtt__store_identity_t v4 = {4, "mqtt://b:1883"};
  uvmqtt__store_identity_t other = {5, "mqtt://other:1883"};
  assert_int_equal(uvmqtt__store_attach(s, "b", 1, &v4, UVMQTT_DURABLE_PROCESS,
                                        &c, &recs, &n),
                   UVMQTT_ESTORE_IDENTITY);
  assert_int_equal(uvmqtt__store_attach(s, "b", 1, &other,
                                        UVMQTT_DURABLE_PROCESS, &c, &recs, &n),
                   UVMQTT_ESTORE_IDENTITY);
  /* A refused attach hands nothing over: the right one still gets all. */
  assert_int_equal(uvmqtt__store_attach(s, "b", 1, &no_broker,
                                        UVMQTT_DURABLE_PROCESS, &c, &recs, &n),
                   0);
  assert_int_equal(n, 1);
  free_recs(recs, n);
  uvmqtt__store_detach(c);
  /* "a" was stored without a broker: the first that knows it records it. */
  assert_int_equal(uvmqtt__store_attach(s, "a", 1, &v5_broker,
                                        UVMQTT_DURABLE_PROCESS, &c, &recs, &n),
                   0);
  free_recs(recs, n);
  uvmqtt__store_detach(c);
  close_store(s);
  s = open_store();
  assert_int_equal(uvmqtt__store_attach(s, "a", 1, &other,
                                        UVMQTT_DURABLE_PROCESS, &c, &recs, &n),
                   UVMQTT_ESTORE_IDENTITY);
  /* Broker unknown at attach, known at connect: checked then. */
  assert_int_equal(uvmqtt__store_attach(s, "a", 1, &no_broker,
                                        UVMQTT_DURABLE_PROCESS, &c, &recs, &n),
                   0);
  free_recs(recs, n);
  assert_int_equal(uvmqtt__store_set_broker(c, "mqtt://other:1883"),
                   UVMQTT_ESTORE_IDENTITY);
  assert_int_equal(uvmqtt__store_set_broker(c, "mqtt://b:1883"), 0);
  uvmqtt__store_detach(c);
  /* A client stored without a broker records the first one it meets. */
  assert_int_equal(uvmqtt__store_attach(s, "new", 3, &no_broker,
                                        UVMQTT_DURABLE_PROCESS, &c, &recs, &n),
                   0);
  assert_int_equal(uvmqtt__store_set_broker(c, "mqtt://third:1"), 0);
  assert_int_equal(uvmqtt__store_set_broker(c, "mqtt://third:1"), 0);
  uvmqtt__store_detach(c);
  close_store(s);
  s = open_store();
  assert_int_equal(uvmqtt__store_attach(s, "new", 3, &v5_broker,
                                        UVMQTT_DURABLE_PROCESS, &c, &recs, &n),
                   UVMQTT_ESTORE_IDENTITY);
  close_store(s);
}

static void clear_keeps_identity(void **state) {
  (void)state;
  uvmqtt_store_t *s = open_store();
  uvmqtt__store_client_t *c, *other;
  uvmqtt__store_rec_t *recs;
  size_t n;
  assert_int_equal(uvmqtt__store_attach(s, "c", 1, &v5_broker,
                                        UVMQTT_DURABLE_POWER, &c, &recs, &n),
                   0);
  assert_int_equal(uvmqtt__store_attach(s, "d", 1, &v5_broker,
                                        UVMQTT_DURABLE_POWER, &other, &recs,
                                        &n),
                   0);
  for (uint64_t id = 1; id <= 5; id++) {
    assert_int_equal(put_str(c, id, "c"), 0);
    assert_int_equal(put_str(other, id, "d"), 0);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  done_count = 0;
  assert_int_equal(uvmqtt__store_clear(c, count_cb, NULL), 0);
  assert_int_equal(put_str(c, 9, "after clear"), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(done_count, 2);
  uvmqtt__store_detach(c);
  uvmqtt__store_detach(other);
  close_store(s);

  s = open_store();
  uvmqtt__store_identity_t v3 = {3, NULL};
  assert_int_equal(
      uvmqtt__store_attach(s, "c", 1, &v3, UVMQTT_DURABLE_POWER, &c, &recs, &n),
      UVMQTT_ESTORE_IDENTITY);
  assert_int_equal(uvmqtt__store_attach(s, "c", 1, &v5_broker,
                                        UVMQTT_DURABLE_POWER, &c, &recs, &n),
                   0);
  assert_int_equal(n, 1);
  assert_int_equal(recs[0].id, 9);
  free_recs(recs, n);
  uvmqtt__store_detach(c);
  assert_int_equal(uvmqtt__store_attach(s, "d", 1, &v5_broker,
                                        UVMQTT_DURABLE_POWER, &c, &recs, &n),
                   0);
  assert_int_equal(n, 5); /* the other client is untouched */
  free_recs(recs, n);
  uvmqtt__store_detach(c);
  close_store(s);
}

/* Callbacks that queue more work: it goes into the next batch. */
static uvmqtt__store_client_t *chain_client;
static int chain_left;
static void chain_cb(uvmqtt__store_client_t *c, void *arg, int status) {
  assert_ptr_equal(c, chain_client);
  (void)arg;
  assert_int_equal(status, 0);
  done_count++;
  if (chain_left-- > 0) {
    const void *b = "v";
    size_t l = 1;
    assert_int_equal(uvmqtt__store_put(chain_client, (uint64_t)chain_left + 1,
                                       &b, &l, 1, chain_cb, NULL),
                     0);
  }
}

static void detach_drops_callbacks_and_chains(void **state) {
  (void)state;
  uvmqtt_store_t *s = open_store();
  uvmqtt__store_rec_t *recs;
  size_t n;
  uvmqtt__store_client_t *c;
  assert_int_equal(uvmqtt__store_attach(s, "x", 1, &v5_broker,
                                        UVMQTT_DURABLE_PROCESS, &c, &recs, &n),
                   0);
  done_count = 0;
  assert_int_equal(put_str(c, 1, "dropped callback, kept record"), 0);
  uvmqtt__store_detach(c);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(done_count, 0);

  assert_int_equal(uvmqtt__store_attach(s, "y", 1, &v5_broker,
                                        UVMQTT_DURABLE_PROCESS, &chain_client,
                                        &recs, &n),
                   0);
  chain_left = 5;
  const void *b = "v";
  size_t l = 1;
  assert_int_equal(
      uvmqtt__store_put(chain_client, 100, &b, &l, 1, chain_cb, NULL), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(done_count, 6);
  uvmqtt__store_detach(chain_client);
  close_store(s);

  s = open_store();
  assert_int_equal(uvmqtt__store_attach(s, "x", 1, &v5_broker,
                                        UVMQTT_DURABLE_PROCESS, &c, &recs, &n),
                   0);
  assert_int_equal(n, 1);
  free_recs(recs, n);
  uvmqtt__store_detach(c);
  assert_int_equal(uvmqtt__store_attach(s, "y", 1, &v5_broker,
                                        UVMQTT_DURABLE_PROCESS, &c, &recs, &n),
                   0);
  assert_int_equal(n, 6);
  free_recs(recs, n);
  uvmqtt__store_detach(c);
  close_store(s);
}

/* Forgetting a client id: refused while it is attached, then its records
 * and identity are gone, now and after a reopen; others stay. */
static void forget(void **state) {
  (void)state;
  uvmqtt_store_t *s = open_store();
  uvmqtt__store_client_t *c, *d;
  uvmqtt__store_rec_t *recs;
  size_t n;
  assert_int_equal(uvmqtt__store_attach(s, "old", 3, &v5_broker,
                                        UVMQTT_DURABLE_PROCESS, &c, &recs, &n),
                   0);
  assert_int_equal(uvmqtt__store_attach(s, "keep", 4, &v5_broker,
                                        UVMQTT_DURABLE_PROCESS, &d, &recs, &n),
                   0);
  assert_int_equal(put_str(c, 1, "x"), 0);
  assert_int_equal(put_str(d, 1, "y"), 0);
  assert_int_equal(uvmqtt_store_forget(s, "old"), UVMQTT_EBUSY);
  uvmqtt__store_detach(c);
  uvmqtt__store_detach(d);
  close_store(s);
  s = open_store();
  assert_int_equal(uvmqtt_store_forget(s, "old"), 0);
  uvmqtt__store_identity_t v3 = {3, NULL};
  assert_int_equal(uvmqtt__store_attach(s, "old", 3, &v3,
                                        UVMQTT_DURABLE_PROCESS, &c, &recs, &n),
                   0); /* no identity left to refuse it */
  assert_int_equal(n, 0);
  uvmqtt__store_detach(c);
  assert_int_equal(uvmqtt_store_forget(s, "never-seen"), 0);
  assert_int_equal(uvmqtt_store_forget(s, NULL), UVMQTT_EINVAL);
  close_store(s);
  s = open_store();
  assert_int_equal(uvmqtt__store_attach(s, "keep", 4, &v5_broker,
                                        UVMQTT_DURABLE_PROCESS, &d, &recs, &n),
                   0);
  assert_int_equal(n, 1);
  free_recs(recs, n);
  uvmqtt__store_detach(d);
  assert_int_equal(uvmqtt__store_attach(s, "old", 3, &v3,
                                        UVMQTT_DURABLE_PROCESS, &c, &recs, &n),
                   0);
  assert_int_equal(n, 0);
  uvmqtt__store_detach(c);
  close_store(s);
}

/* A close with writes pending writes them first. */
static void close_flushes(void **state) {
  (void)state;
  uvmqtt_store_t *s = open_store();
  uvmqtt__store_rec_t *recs;
  size_t n;
  uvmqtt__store_client_t *c;
  assert_int_equal(uvmqtt__store_attach(s, "z", 1, &v5_broker,
                                        UVMQTT_DURABLE_POWER, &c, &recs, &n),
                   0);
  assert_int_equal(put_str(c, 1, "pending at close"), 0);
  uvmqtt__store_detach(c);
  close_store(s);
  uvmqtt_store_report_t r;
  s = open_store_report(&r);
  assert_int_equal(r.live, 2);
  uvmqtt_store_report_t r2;
  uvmqtt_store_get_report(s, &r2);
  assert_memory_equal(&r, &r2, sizeof r);
  close_store(s);
}

/* A backend around the log that notes where iterate ran and whether
 * destroy was called. */
typedef struct {
  uvmqtt_store_backend_t base;
  uvmqtt_store_backend_t *inner;
  uv_thread_t iter_thread;
  int iterated, *destroyed;
} wrap_t;

static int w_put(uvmqtt_store_backend_t *b, const uvmqtt_store_key_t *k,
                 const void *v, size_t l) {
  wrap_t *w = (wrap_t *)b;
  return w->inner->put(w->inner, k, v, l);
}
static int w_remove(uvmqtt_store_backend_t *b, const uvmqtt_store_key_t *k) {
  wrap_t *w = (wrap_t *)b;
  return w->inner->remove(w->inner, k);
}
static int w_remove_client(uvmqtt_store_backend_t *b, const char *c, size_t l) {
  wrap_t *w = (wrap_t *)b;
  return w->inner->remove_client(w->inner, c, l);
}
static int w_iterate(uvmqtt_store_backend_t *b, uvmqtt_store_iter_cb cb,
                     void *arg) {
  wrap_t *w = (wrap_t *)b;
  w->iter_thread = uv_thread_self();
  w->iterated++;
  return w->inner->iterate(w->inner, cb, arg);
}
static int w_commit(uvmqtt_store_backend_t *b, uvmqtt_durability_t level) {
  wrap_t *w = (wrap_t *)b;
  return w->inner->commit(w->inner, level);
}
static void w_destroy(uvmqtt_store_backend_t *b) {
  wrap_t *w = (wrap_t *)b;
  w->inner->destroy(w->inner);
  (*w->destroyed)++;
}

/* Opening never blocks the loop and never calls back from inside the
 * call: the file is read on the thread pool, errors come in the callback
 * (the store is NULL then), bad arguments are refused at once. */
static void open_async(void **state) {
  (void)state;
  opened_t o;
  int calls = 0;
  memset(&o, 0, sizeof o);
  assert_int_equal(uvmqtt_store_open(&loop, path, NULL, NULL, NULL),
                   UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_store_open(NULL, path, NULL, on_opened, &o),
                   UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_store_open(&loop, "", NULL, on_opened, &o),
                   UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_store_open(&loop, NULL, NULL, on_opened, &o),
                   UVMQTT_EINVAL);
  assert_int_equal(o.calls, 0);

  /* Not a store: refused in the callback, the file left as it was. */
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  fputs("not a store at all, but someone's notes", f);
  fclose(f);
  assert_int_equal(open_wait(NULL, &o), UVMQTT_ESTORE_FORMAT);
  assert_null(o.store);
  uv_fs_t st;
  assert_int_equal(uv_fs_stat(NULL, &st, path, NULL), 0);
  assert_int_equal(st.statbuf.st_size, 39);
  uv_fs_req_cleanup(&st);
  remove(path);

  /* A directory that does not exist. */
  char saved[sizeof path];
  memcpy(saved, path, sizeof path);
  snprintf(path, sizeof path, "%s/no/such/dir/store.log", dir);
  assert_int_equal(open_wait(NULL, &o), UV_ENOENT);
  memcpy(path, saved, sizeof path);

  /* Options are taken: a small compaction threshold is used. */
  uvmqtt_store_log_options_t lo = {4096};
  assert_int_equal(open_wait(&lo, &o), 0);
  close_store(o.store);

  /* A custom backend: its records are read on the thread pool. */
  wrap_t w;
  memset(&w, 0, sizeof w);
  w.base = (uvmqtt_store_backend_t){w_put,     w_remove, w_remove_client, NULL,
                                    w_iterate, w_commit, w_destroy};
  w.destroyed = &calls;
  assert_int_equal(uvmqtt__store_log_open(path, NULL, &w.inner, NULL), 0);
  memset(&o, 0, sizeof o);
  assert_int_equal(uvmqtt_store_new(&loop, &w.base, on_opened, &o), 0);
  assert_int_equal(o.calls, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(o.calls, 1);
  assert_int_equal(o.status, 0);
  assert_int_equal(w.iterated, 1);
  assert_false(uv_thread_equal(&w.iter_thread, &main_thread));
  assert_true(uv_thread_equal(&o.thread, &main_thread));
  assert_int_equal(o.report.records + o.report.live, 0);
  close_store(o.store);
  assert_int_equal(calls, 1);

  /* A backend missing a function: refused, destroyed at once. */
  assert_int_equal(uvmqtt__store_log_open(path, NULL, &w.inner, NULL), 0);
  w.base.commit = NULL;
  assert_int_equal(uvmqtt_store_new(&loop, &w.base, on_opened, &o),
                   UVMQTT_EINVAL);
  assert_int_equal(calls, 2);
  w.base.commit = w_commit;
  assert_int_equal(uvmqtt__store_log_open(path, NULL, &w.inner, NULL), 0);
  assert_int_equal(uvmqtt_store_new(&loop, &w.base, NULL, NULL), UVMQTT_EINVAL);
  assert_int_equal(calls, 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(group_commit_and_restore, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(identity, setup, teardown),
      cmocka_unit_test_setup_teardown(clear_keeps_identity, setup, teardown),
      cmocka_unit_test_setup_teardown(detach_drops_callbacks_and_chains, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(close_flushes, setup, teardown),
      cmocka_unit_test_setup_teardown(forget, setup, teardown),
      cmocka_unit_test_setup_teardown(open_async, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
