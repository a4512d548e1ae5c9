/* Unit tests of the default store backend (the append-only log), called
 * directly as the thread pool would, on files in a temporary directory:
 * round trips, torn writes at every byte of the last record, bad checksums
 * at every byte of a record, format version and foreign files, compaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/store_int.h"
#include "testutil.h"
#include "uvmqtt/errors.h"

static char dir[256];
static char path[320];

static int setup(void **state) {
  (void)state;
  if (tu_tmpdir(dir, sizeof dir) < 0)
    return -1;
  snprintf(path, sizeof path, "%s/store.log", dir);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  tu_rmtree(dir);
  return 0;
}

static uvmqtt_store_key_t key(const char *client, uint64_t id) {
  uvmqtt_store_key_t k = {client, strlen(client), id};
  return k;
}

static void put(uvmqtt_store_backend_t *b, const char *client, uint64_t id,
                const char *value) {
  uvmqtt_store_key_t k = key(client, id);
  assert_int_equal(b->put(b, &k, value, strlen(value)), 0);
}

static void del(uvmqtt_store_backend_t *b, const char *client, uint64_t id) {
  uvmqtt_store_key_t k = key(client, id);
  assert_int_equal(b->remove(b, &k), 0);
}

static void commit(uvmqtt_store_backend_t *b) {
  assert_int_equal(b->commit(b, UVMQTT_DURABLE_PROCESS), 0);
}

static uvmqtt_store_backend_t *open_ok(uvmqtt_store_report_t *r,
                                       uint64_t compact_min) {
  uvmqtt_store_backend_t *b = NULL;
  uvmqtt_store_log_options_t o = {compact_min};
  assert_int_equal(uvmqtt__store_log_open(path, &o, &b, r), 0);
  assert_non_null(b);
  return b;
}

/* The live records, as "client/id=value;" lines sorted, in out. */
typedef struct {
  char lines[64][128];
  int n;
} dump_t;

static int dump_cb(void *arg, const uvmqtt_store_key_t *k, const void *v,
                   size_t len) {
  dump_t *d = arg;
  assert_true(d->n < 64);
  snprintf(d->lines[d->n++], 128, "%.*s/%llu=%.*s", (int)k->client_len,
           k->client, (unsigned long long)k->id, (int)len, (const char *)v);
  return 0;
}

static int cmp_lines(const void *a, const void *b) {
  return strcmp(a, b);
}

static void dump(uvmqtt_store_backend_t *b, char *out, size_t cap) {
  dump_t d;
  d.n = 0;
  assert_int_equal(b->iterate(b, dump_cb, &d), 0);
  qsort(d.lines, (size_t)d.n, sizeof d.lines[0], cmp_lines);
  out[0] = 0;
  for (int i = 0; i < d.n; i++) {
    strncat(out, d.lines[i], cap - strlen(out) - 2);
    strcat(out, ";");
  }
}

/* Bytes a record takes in the log (docs/persistence.md). */
static long rec_size(const char *client, const char *value) {
  return 8 + 12 + (long)strlen(client) + (long)strlen(value);
}

static long file_size(void) {
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  return (long)st.st_size;
}

static uint8_t *read_file(long *size) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  *size = file_size();
  uint8_t *d = malloc((size_t)*size + 1);
  assert_non_null(d);
  assert_int_equal(fread(d, 1, (size_t)*size, f), (size_t)*size);
  fclose(f);
  return d;
}

static void write_file(const uint8_t *d, long size) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(d, 1, (size_t)size, f), (size_t)size);
  fclose(f);
}

/* ---------------------------------------------------------------------- */

static void round_trip(void **state) {
  (void)state;
  char out[4096];
  uvmqtt_store_report_t r;
  uvmqtt_store_backend_t *b = open_ok(&r, 0);
  assert_int_equal(r.records, 0);
  put(b, "alpha", 1, "a1");
  put(b, "alpha", 2, "a2");
  put(b, "beta", 1, "b1");
  put(b, "", 7, "empty client id");
  put(b, "alpha", 3, ""); /* empty value */
  commit(b);
  put(b, "alpha", 2, "a2 PUBREC"); /* replace: a state change */
  del(b, "alpha", 1);
  del(b, "alpha", 99); /* missing: not an error */
  commit(b);

  void *v;
  size_t len;
  uvmqtt_store_key_t k = key("alpha", 2);
  assert_int_equal(b->get(b, &k, &v, &len), 0);
  assert_int_equal(len, 9);
  assert_memory_equal(v, "a2 PUBREC", 9);
  uvmqtt_free(v);
  k = key("alpha", 1);
  assert_int_equal(b->get(b, &k, &v, &len), UVMQTT_ENOENT);

  dump(b, out, sizeof out);
  assert_string_equal(
      out, "/7=empty client id;alpha/2=a2 PUBREC;alpha/3=;beta/1=b1;");
  b->destroy(b);

  b = open_ok(&r, 0);
  assert_int_equal(r.records, 8);
  assert_int_equal(r.live, 4);
  assert_int_equal(r.dropped_records, 0);
  dump(b, out, sizeof out);
  assert_string_equal(
      out, "/7=empty client id;alpha/2=a2 PUBREC;alpha/3=;beta/1=b1;");
  assert_int_equal(b->remove_client(b, "alpha", 5), 0);
  commit(b);
  dump(b, out, sizeof out);
  assert_string_equal(out, "/7=empty client id;beta/1=b1;");
  b->destroy(b);
  b = open_ok(&r, 0);
  dump(b, out, sizeof out);
  assert_string_equal(out, "/7=empty client id;beta/1=b1;");
  b->destroy(b);
}

static void binary_values_and_power_level(void **state) {
  (void)state;
  uint8_t big[70000];
  for (size_t i = 0; i < sizeof big; i++)
    big[i] = (uint8_t)(i * 7);
  uvmqtt_store_backend_t *b = open_ok(NULL, 0);
  uvmqtt_store_key_t k = key("c", 5);
  assert_int_equal(b->put(b, &k, big, sizeof big), 0);
  assert_int_equal(b->commit(b, UVMQTT_DURABLE_POWER), 0);
  assert_int_equal(b->commit(b, UVMQTT_DURABLE_POWER), 0); /* nothing new */
  b->destroy(b);
  b = open_ok(NULL, 0);
  void *v;
  size_t len;
  assert_int_equal(b->get(b, &k, &v, &len), 0);
  assert_int_equal(len, sizeof big);
  assert_memory_equal(v, big, sizeof big);
  uvmqtt_free(v);
  /* Bad arguments are refused, not stored. */
  assert_int_equal(b->put(b, &k, NULL, 3), UVMQTT_EINVAL);
  b->destroy(b);
}

/* Three records A, B, C; the file cut (or zero-filled, as after a power
 * loss that kept the size but not the data) at every byte of C. */
static void torn_last_record_every_offset(void **state) {
  (void)state;
  char out[4096];
  uvmqtt_store_backend_t *b = open_ok(NULL, 0);
  put(b, "client", 1, "first message");
  put(b, "client", 2, "second message");
  commit(b);
  long end_b = 32 + rec_size("client", "first message") +
               rec_size("client", "second message");
  put(b, "client", 3, "the third one, torn");
  commit(b);
  b->destroy(b);
  long end_c = end_b + rec_size("client", "the third one, torn"), size;
  uint8_t *full = read_file(&size);
  assert_true(size > end_c); /* space written ahead */

  /* zeros = 0: the file ends at the cut (the size was not written ahead);
   * zeros = 1: zeros follow the cut (a power loss that lost the data). */
  for (int zeros = 0; zeros <= 1; zeros++) {
    for (long cut = end_b; cut < end_c; cut++) {
      uvmqtt_store_report_t r;
      uint8_t *img = malloc((size_t)size);
      memcpy(img, full, (size_t)size);
      memset(img + cut, 0, (size_t)(size - cut));
      write_file(img, zeros ? size : cut);
      long torn = cut;
      while (torn > end_b && img[torn - 1] == 0) /* what recovery can see */
        torn--;
      free(img);

      b = open_ok(&r, 0);
      assert_int_equal(r.records, 2);
      assert_int_equal(r.live, 2);
      if (torn == end_b) {
        assert_int_equal(r.dropped_records, 0);
        assert_int_equal(r.torn_tail, 0);
      } else {
        assert_int_equal(r.dropped_records, 1);
        assert_int_equal(r.torn_tail, 1);
        assert_int_equal(r.dropped_bytes, torn - end_b);
        assert_int_equal(r.rewritten, 1);
      }
      dump(b, out, sizeof out);
      assert_string_equal(out,
                          "client/1=first message;client/2=second message;");
      /* New records after a recovery are read back whole. */
      put(b, "client", 4, "after recovery");
      commit(b);
      b->destroy(b);
      b = open_ok(&r, 0);
      assert_int_equal(r.dropped_records, 0);
      dump(b, out, sizeof out);
      assert_string_equal(out, "client/1=first message;client/2=second "
                               "message;client/4=after recovery;");
      b->destroy(b);
    }
  }
  free(full);
}

/* One bit flipped at every byte of the middle record: it alone is lost. */
static void bad_checksum_every_byte(void **state) {
  (void)state;
  char out[4096];
  uvmqtt_store_backend_t *b = open_ok(NULL, 0);
  put(b, "client", 1, "kept before");
  commit(b);
  long start = 32 + rec_size("client", "kept before");
  put(b, "client", 2, "corrupted");
  commit(b);
  long end = start + rec_size("client", "corrupted");
  put(b, "client", 3, "kept after");
  commit(b);
  b->destroy(b);
  long size;
  uint8_t *full = read_file(&size);

  for (long at = start; at < end; at++) {
    for (int bit = 0; bit < 8; bit += 7) {
      uvmqtt_store_report_t r;
      full[at] ^= (uint8_t)(1u << bit);
      write_file(full, size);
      full[at] ^= (uint8_t)(1u << bit);
      b = open_ok(&r, 0);
      assert_int_equal(r.dropped_records, 1);
      assert_int_equal(r.dropped_bytes, end - start);
      assert_int_equal(r.torn_tail, 0);
      assert_int_equal(r.records, 2);
      dump(b, out, sizeof out);
      assert_string_equal(out, "client/1=kept before;client/3=kept after;");
      b->destroy(b);
      /* Rewritten: a second open finds nothing wrong. */
      b = open_ok(&r, 0);
      assert_int_equal(r.dropped_records, 0);
      assert_int_equal(r.records, 2);
      b->destroy(b);
    }
  }
  free(full);
}

static void garbage_file_terminates(void **state) {
  (void)state;
  uvmqtt_store_report_t r;
  uvmqtt_store_backend_t *b = open_ok(NULL, 0);
  b->destroy(b);
  long size, size2;
  uint8_t *hdr = read_file(&size);
  uint8_t *img = malloc(200000);
  memcpy(img, hdr, 32);
  for (long i = 32; i < 200000; i++)
    img[i] = (uint8_t)((uint32_t)i * 2654435761u >> 13) | 1;
  write_file(img, 200000);
  b = open_ok(&r, 0);
  assert_int_equal(r.records, 0);
  assert_int_equal(r.dropped_records, 1);
  assert_int_equal(r.dropped_bytes, 200000 - 32);
  b->destroy(b);
  free(hdr);
  hdr = read_file(&size2);
  assert_int_equal(size2, size); /* back to a fresh log */
  assert_memory_equal(hdr, img, 32);
  free(img);
  free(hdr);
}

static void version_and_foreign_files(void **state) {
  (void)state;
  uvmqtt_store_backend_t *b = open_ok(NULL, 0);
  put(b, "c", 1, "v");
  commit(b);
  b->destroy(b);
  long size;
  uint8_t *img = read_file(&size);

  /* A newer format version: refused, file untouched. */
  img[8] = 2;
  uint32_t crc = uvmqtt__crc32c(0, img, 28);
  for (int i = 0; i < 4; i++)
    img[28 + i] = (uint8_t)(crc >> (8 * i));
  write_file(img, size);
  assert_int_equal(uvmqtt__store_log_open(path, NULL, &b, NULL),
                   UVMQTT_ESTORE_VERSION);
  assert_null(b);
  assert_int_equal(file_size(), size);

  /* A damaged header: not taken for a store. */
  img[8] = 1;
  img[20] ^= 1;
  write_file(img, size);
  assert_int_equal(uvmqtt__store_log_open(path, NULL, &b, NULL),
                   UVMQTT_ESTORE_FORMAT);

  /* Some other file. */
  write_file((const uint8_t *)"hello, this is not a store at all", 33);
  assert_int_equal(uvmqtt__store_log_open(path, NULL, &b, NULL),
                   UVMQTT_ESTORE_FORMAT);
  assert_int_equal(file_size(), 33);

  /* A header torn at creation is a new, empty store. */
  write_file(img, 11);
  uvmqtt_store_report_t r;
  b = open_ok(&r, 0);
  assert_int_equal(r.live, 0);
  assert_int_equal(r.dropped_records, 0);
  b->destroy(b);
  free(img);

  char bad[340];
  snprintf(bad, sizeof bad, "%s/missing/dir/store", dir);
  assert_true(uvmqtt__store_log_open(bad, NULL, &b, NULL) < 0);
  assert_int_equal(uvmqtt__store_log_open(NULL, NULL, &b, NULL), UVMQTT_EINVAL);
}

static void compaction(void **state) {
  (void)state;
  char out[4096], value[200];
  uvmqtt_store_backend_t *b = open_ok(NULL, 16384);
  long max_size = 0;
  memset(value, 'x', sizeof value - 1);
  value[sizeof value - 1] = 0;
  /* A window of 10 live messages sliding over 5,000: puts, state changes
   * and removes, as a QoS 2 stream writes them. */
  for (uint64_t id = 1; id <= 5000; id++) {
    put(b, "pub", id, value);
    put(b, "pub", id, "PUBREC received");
    if (id > 10)
      del(b, "pub", id - 10);
    commit(b);
    if (file_size() > max_size)
      max_size = file_size();
  }
  /* compacted again and again: the limit, a batch and the space ahead */
  assert_true(max_size < 16384 + 2000 + 4096);
  dump(b, out, sizeof out);
  b->destroy(b);
  uvmqtt_store_report_t r;
  b = open_ok(&r, 16384);
  char again[4096];
  dump(b, again, sizeof again);
  assert_string_equal(out, again);
  assert_int_equal(r.live, 10);
  assert_int_equal(r.dropped_records, 0);
  assert_non_null(strstr(out, "pub/4991=PUBREC received;"));
  assert_null(strstr(out, "pub/4990="));
  b->destroy(b);
  /* No temporary file stays behind. */
  char tmp[340];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  assert_int_equal(access(tmp, F_OK), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(binary_values_and_power_level, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(torn_last_record_every_offset, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(bad_checksum_every_byte, setup, teardown),
      cmocka_unit_test_setup_teardown(garbage_file_terminates, setup, teardown),
      cmocka_unit_test_setup_teardown(version_and_foreign_files, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(compaction, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
