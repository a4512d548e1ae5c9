/* The trie router: spec examples, order, $share, mutation during a match,
 * memory accounting, and a randomised cross-check against the reference
 * matcher (uvmqtt_topic_matches). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "uvmqtt/errors.h"
#include "uvmqtt/router.h"
#include "uvmqtt/topic.h"

/* ---- helpers ------------------------------------------------------------ */

#define MAXSEEN 64

typedef struct {
  int n;
  char filter[MAXSEEN][64];
  void *value[MAXSEEN];
} seen_t;

static int collect(void *value, const char *filter, size_t len, void *arg) {
  seen_t *s = arg;
  assert_true(s->n < MAXSEEN);
  assert_true(len < sizeof(s->filter[0]));
  memcpy(s->filter[s->n], filter, len);
  s->filter[s->n][len] = '\0';
  s->value[s->n] = value;
  s->n++;
  return 0;
}

static int add(uvmqtt_router_t *r, const char *f, void *v) {
  return uvmqtt_router_add(r, f, strlen(f), v, NULL);
}

static int del(uvmqtt_router_t *r, const char *f) {
  return uvmqtt_router_remove(r, f, strlen(f), NULL);
}

static int match(uvmqtt_router_t *r, const char *t, seen_t *s) {
  memset(s, 0, sizeof(*s));
  int n = uvmqtt_router_match(r, t, strlen(t), collect, s);
  if (n >= 0)
    assert_int_equal(n, s->n);
  return n;
}

/* Asserts that topic t visits exactly the NULL-terminated list, in order. */
static void expect(uvmqtt_router_t *r, const char *t, const char **want) {
  seen_t s;
  int n = match(r, t, &s);
  int i = 0;
  for (; want[i]; i++) {
    if (i >= n)
      fail_msg("topic %s: missing %s (visited %d)", t, want[i], n);
    if (strcmp(s.filter[i], want[i]) != 0)
      fail_msg("topic %s: visit %d is %s, want %s", t, i, s.filter[i], want[i]);
  }
  if (n != i)
    fail_msg("topic %s: visited %d, want %d (extra %s)", t, n, i, s.filter[i]);
}

#define EXPECT(r, t, ...)                                                      \
  do {                                                                         \
    const char *want_[] = {__VA_ARGS__, NULL};                                 \
    expect(r, t, want_);                                                       \
  } while (0)
#define EXPECT_NONE(r, t)                                                      \
  do {                                                                         \
    const char *want_[] = {NULL};                                              \
    expect(r, t, want_);                                                       \
  } while (0)

/* ---- basic behaviour ------------------------------------------------------
 */

static void test_new_free(void **state) {
  (void)state;
  uvmqtt_router_t *r;
  assert_int_equal(uvmqtt_router_new(NULL), UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_router_new(&r), 0);
  assert_int_equal(uvmqtt_router_count(r), 0);
  assert_true(uvmqtt_router_memory(r) > 0);
  EXPECT_NONE(r, "a");
  uvmqtt_router_free(r);
  uvmqtt_router_free(NULL);
  assert_int_equal(uvmqtt_router_count(NULL), 0);
}

static void test_errors(void **state) {
  (void)state;
  uvmqtt_router_t *r;
  void *v = (void *)1;
  assert_int_equal(uvmqtt_router_new(&r), 0);
  assert_int_equal(uvmqtt_router_add(NULL, "a", 1, NULL, NULL), UVMQTT_EINVAL);
  assert_int_equal(add(r, "a#", NULL), UVMQTT_EFILTER);
  assert_int_equal(add(r, "$share/g", NULL), UVMQTT_EFILTER);
  assert_int_equal(uvmqtt_router_add(r, "", 0, NULL, NULL), UVMQTT_EFILTER);
  assert_int_equal(uvmqtt_router_remove(NULL, "a", 1, NULL), UVMQTT_EINVAL);
  assert_int_equal(del(r, "+a"), UVMQTT_EFILTER);
  assert_int_equal(uvmqtt_router_remove(r, "a", 1, &v), UVMQTT_ENOENT);
  assert_ptr_equal(v, (void *)1); /* untouched on error */
  assert_int_equal(uvmqtt_router_match(NULL, "a", 1, NULL, NULL),
                   UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_router_match(r, NULL, 1, NULL, NULL), UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_router_match(r, "", 0, NULL, NULL), UVMQTT_ETOPIC);
  assert_int_equal(
      uvmqtt_router_match(r, "a", UVMQTT_TOPIC_MAX + 1, NULL, NULL),
      UVMQTT_ETOPIC);
  assert_int_equal(uvmqtt_router_count(r), 0);
  uvmqtt_router_free(r);
}

static void test_add_replace_remove(void **state) {
  (void)state;
  uvmqtt_router_t *r;
  void *old = (void *)7, *v = NULL;
  int a = 1, b = 2;
  assert_int_equal(uvmqtt_router_new(&r), 0);
  assert_int_equal(uvmqtt_router_add(r, "a/+", 3, &a, &old), 0);
  assert_null(old);
  assert_int_equal(uvmqtt_router_count(r), 1);
  assert_int_equal(uvmqtt_router_add(r, "a/+", 3, &b, &old), 1);
  assert_ptr_equal(old, &a);
  assert_int_equal(uvmqtt_router_count(r), 1);
  seen_t s;
  assert_int_equal(match(r, "a/x", &s), 1);
  assert_ptr_equal(s.value[0], &b);
  /* A filter given without a terminating NUL and longer buffer. */
  assert_int_equal(uvmqtt_router_add(r, "a/bXYZ", 3, &a, NULL), 0);
  EXPECT(r, "a/b", "a/b", "a/+");
  assert_int_equal(uvmqtt_router_remove(r, "a/+", 3, &v), 0);
  assert_ptr_equal(v, &b);
  assert_int_equal(uvmqtt_router_remove(r, "a/+", 3, &v), UVMQTT_ENOENT);
  assert_int_equal(del(r, "a"), UVMQTT_ENOENT);
  assert_int_equal(del(r, "a/b/c"), UVMQTT_ENOENT);
  assert_int_equal(del(r, "a/#"), UVMQTT_ENOENT);
  EXPECT(r, "a/b", "a/b");
  assert_int_equal(uvmqtt_router_count(r), 1);
  /* NULL values are fine. */
  assert_int_equal(add(r, "n", NULL), 0);
  assert_int_equal(match(r, "n", &s), 1);
  assert_null(s.value[0]);
  /* No callback: just count. */
  assert_int_equal(uvmqtt_router_match(r, "n", 1, NULL, NULL), 1);
  uvmqtt_router_free(r);
}

static uvmqtt_router_t *with(const char **filters) {
  uvmqtt_router_t *r;
  assert_int_equal(uvmqtt_router_new(&r), 0);
  for (size_t i = 0; filters[i]; i++)
    assert_int_equal(add(r, filters[i], (void *)filters[i]), 0);
  return r;
}

/* The examples of MQTT 5.0 section 4.7, through the trie. */
static void test_spec_examples(void **state) {
  (void)state;
  const char *f[] = {"sport/tennis/player1/#",
                     "sport/#",
                     "#",
                     "sport/tennis/+",
                     "sport/+",
                     "+/+",
                     "/+",
                     "+",
                     "+/monitor/Clients",
                     "$SYS/#",
                     "$SYS/monitor/+",
                     NULL};
  uvmqtt_router_t *r = with(f);
  EXPECT(r, "sport/tennis/player1", "#", "sport/#", "sport/tennis/player1/#",
         "sport/tennis/+");
  EXPECT(r, "sport/tennis/player1/ranking", "#", "sport/#",
         "sport/tennis/player1/#");
  EXPECT(r, "sport/tennis/player1/score/wimbledon", "#", "sport/#",
         "sport/tennis/player1/#");
  EXPECT(r, "sport", "#", "sport/#", "+");
  EXPECT(r, "sport/", "#", "sport/#", "sport/+", "+/+");
  EXPECT(r, "/finance", "#", "/+", "+/+");
  EXPECT(r, "finance", "#", "+");
  EXPECT(r, "$SYS/monitor/Clients", "$SYS/#", "$SYS/monitor/+");
  EXPECT(r, "$SYS", "$SYS/#");
  EXPECT_NONE(r, "$other/x");
  EXPECT(r, "x/monitor/Clients", "#", "+/monitor/Clients");
  uvmqtt_router_free(r);
}

static void test_empty_levels(void **state) {
  (void)state;
  const char *f[] = {"a//b", "a/+/b", "a/b", "a/+", "a/#", "+/+", "a", "/a",
                     "+/a",  "/",     "//#", "+",   "a/",  "/#",  NULL};
  uvmqtt_router_t *r = with(f);
  assert_int_equal(add(r, "+/#/", NULL), UVMQTT_EFILTER);
  EXPECT(r, "a//b", "a/#", "a//b", "a/+/b");
  EXPECT(r, "a/", "a/#", "a/", "a/+", "+/+");
  EXPECT(r, "/a", "/#", "/a", "+/a", "+/+");
  EXPECT(r, "/", "/#", "//#", "/", "+/+");
  EXPECT(r, "//", "/#", "//#");
  EXPECT(r, "a", "a/#", "a", "+");
  EXPECT(r, "b", "+");
  uvmqtt_router_free(r);
}

/* The order documented in uvmqtt/router.h, whatever the insertion order. */
static void test_order(void **state) {
  (void)state;
  const char *want[] = {"#",   "a/#",   "a/b/#", "a/b",   "a/+/#", "a/+",
                        "+/#", "+/b/#", "+/b",   "+/+/#", "+/+",   NULL};
  for (unsigned seed = 1; seed <= 20; seed++) {
    const char *f[12];
    memcpy(f, want, sizeof(f));
    srand(seed);
    for (int i = 10; i > 0; i--) {
      int j = rand() % (i + 1);
      const char *t = f[i];
      f[i] = f[j];
      f[j] = t;
    }
    uvmqtt_router_t *r = with(f);
    /* Some that do not match. */
    assert_int_equal(add(r, "a/c", NULL), 0);
    assert_int_equal(add(r, "b/#", NULL), 0);
    assert_int_equal(add(r, "a/b/c", NULL), 0);
    assert_int_equal(add(r, "+/+/+", NULL), 0);
    expect(r, "a/b", want);
    uvmqtt_router_free(r);
  }
}

static void test_share(void **state) {
  (void)state;
  uvmqtt_router_t *r;
  assert_int_equal(uvmqtt_router_new(&r), 0);
  assert_int_equal(add(r, "$share/g2/a/b", NULL), 0);
  assert_int_equal(add(r, "a/b", NULL), 0);
  assert_int_equal(add(r, "$share/g1/a/b", NULL), 0);
  assert_int_equal(add(r, "$share/g1/a/+", NULL), 0);
  assert_int_equal(add(r, "$share/g1/#", NULL), 0);
  assert_int_equal(add(r, "#", NULL), 0);
  assert_int_equal(uvmqtt_router_count(r), 6);
  /* Same key: insertion order. */
  EXPECT(r, "a/b", "$share/g1/#", "#", "$share/g2/a/b", "a/b", "$share/g1/a/b",
         "$share/g1/a/+");
  EXPECT_NONE(r, "$SYS/x");
  EXPECT_NONE(r, "$share/g1/a/b"); /* a topic like any other */
  assert_int_equal(del(r, "$share/g1/a/b"), 0);
  assert_int_equal(del(r, "$share/g1/a/b"), UVMQTT_ENOENT);
  assert_int_equal(del(r, "$share/g3/a/b"), UVMQTT_ENOENT);
  EXPECT(r, "a/b", "$share/g1/#", "#", "$share/g2/a/b", "a/b", "$share/g1/a/+");
  /* Re-adding puts it last among its key. */
  assert_int_equal(add(r, "$share/g1/a/b", NULL), 0);
  EXPECT(r, "a/b", "$share/g1/#", "#", "$share/g2/a/b", "a/b", "$share/g1/a/b",
         "$share/g1/a/+");
  assert_int_equal(del(r, "a/b"), 0);
  EXPECT(r, "a/b", "$share/g1/#", "#", "$share/g2/a/b", "$share/g1/a/b",
         "$share/g1/a/+");
  uvmqtt_router_free(r);
}

static void test_memory_baseline(void **state) {
  (void)state;
  uvmqtt_router_t *r;
  assert_int_equal(uvmqtt_router_new(&r), 0);
  size_t empty = uvmqtt_router_memory(r);
  assert_int_equal(add(r, "a/b", NULL), 0);
  assert_int_equal(add(r, "x/+/y", NULL), 0);
  size_t base = uvmqtt_router_memory(r);
  assert_true(base > empty);

  /* The last route under a chain of new nodes. */
  assert_int_equal(add(r, "a/b/c/d/e", NULL), 0);
  assert_true(uvmqtt_router_memory(r) > base);
  assert_int_equal(del(r, "a/b/c/d/e"), 0);
  assert_int_equal(uvmqtt_router_memory(r), base);

  /* Under a '+' node, a '#' list, and a $share route on an existing key. */
  assert_int_equal(add(r, "x/+/y/+/#", NULL), 0);
  assert_int_equal(add(r, "x/#", NULL), 0);
  assert_int_equal(add(r, "$share/grp/a/b", NULL), 0);
  assert_int_equal(del(r, "x/+/y/+/#"), 0);
  assert_int_equal(del(r, "x/#"), 0);
  assert_int_equal(del(r, "$share/grp/a/b"), 0);
  assert_int_equal(uvmqtt_router_memory(r), base);

  /* Many siblings under a new node: its table grows, then goes with it. */
  char buf[32];
  for (int i = 0; i < 1000; i++) {
    snprintf(buf, sizeof(buf), "w/%d/z", i);
    assert_int_equal(add(r, buf, NULL), 0);
  }
  for (int i = 0; i < 1000; i++) {
    snprintf(buf, sizeof(buf), "w/%d/z", i);
    assert_int_equal(del(r, buf), 0);
  }
  assert_int_equal(uvmqtt_router_memory(r), base);

  assert_int_equal(del(r, "a/b"), 0);
  assert_int_equal(del(r, "x/+/y"), 0);
  assert_int_equal(uvmqtt_router_memory(r), empty);
  assert_int_equal(uvmqtt_router_count(r), 0);
  uvmqtt_router_free(r);
}

static void test_wide_node(void **state) {
  (void)state;
  uvmqtt_router_t *r;
  char buf[32];
  assert_int_equal(uvmqtt_router_new(&r), 0);
  for (int i = 0; i < 5000; i++) {
    snprintf(buf, sizeof(buf), "dev/%d/t", i);
    assert_int_equal(
        uvmqtt_router_add(r, buf, strlen(buf), (void *)(intptr_t)(i + 1), NULL),
        0);
  }
  /* Remove every other one, exercising backward-shift deletion. */
  for (int i = 0; i < 5000; i += 2) {
    snprintf(buf, sizeof(buf), "dev/%d/t", i);
    assert_int_equal(del(r, buf), 0);
  }
  for (int i = 0; i < 5000; i++) {
    seen_t s;
    snprintf(buf, sizeof(buf), "dev/%d/t", i);
    assert_int_equal(match(r, buf, &s), i % 2);
    if (i % 2)
      assert_ptr_equal(s.value[0], (void *)(intptr_t)(i + 1));
  }
  uvmqtt_router_free(r);
}

/* Levels that differ only in length, past their 8th byte, or by a NUL
 * byte (topics are compared literally). */
static void test_level_bytes(void **state) {
  (void)state;
  uvmqtt_router_t *r;
  seen_t s;
  static const char *const f[] = {
      "x/abcdefgh",
      "x/abcdefghi",
      "x/abcdefghj",
      "x/abcdefg",
      "x/abcdefgh1/y",
      "x/abcdefgh2/y",
      "x/abcdefghijklmnopqrstuvw",
      "x/a",
  };
  assert_int_equal(uvmqtt_router_new(&r), 0);
  for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
    assert_int_equal(add(r, f[i], (void *)f[i]), 0);
  for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
    assert_int_equal(match(r, f[i], &s), 1);
    assert_string_equal(s.filter[0], f[i]);
  }
  assert_int_equal(match(r, "x/abcdefghijklmnopqrstuv", &s), 0);
  assert_int_equal(match(r, "x/abcdefghijklmnopqrstuvx", &s), 0);
  assert_int_equal(match(r, "x/abcdefgh3/y", &s), 0);
  assert_int_equal(match(r, "x/abcdefgi", &s), 0);
  /* "x/a\0" is not "x/a", at the end of the topic or before a '/'. */
  assert_int_equal(uvmqtt_router_match(r, "x/a\0", 4, collect, &s), 0);
  assert_int_equal(add(r, "x/+/y", NULL), 0);
  memset(&s, 0, sizeof(s));
  assert_int_equal(uvmqtt_router_match(r, "x/abcdefgh1\0/y", 14, collect, &s),
                   1);
  assert_string_equal(s.filter[0], "x/+/y");
  uvmqtt_router_free(r);
}

/* A topic of 32768 empty levels: the walk must not recurse per level. */
static void test_deep(void **state) {
  (void)state;
  uvmqtt_router_t *r;
  size_t len = UVMQTT_TOPIC_MAX;
  char *t = malloc(len);
  assert_non_null(t);
  memset(t, '/', len);
  assert_int_equal(uvmqtt_router_new(&r), 0);
  assert_int_equal(uvmqtt_router_add(r, t, len, NULL, NULL), 0);
  t[len - 1] = '#';
  assert_int_equal(uvmqtt_router_add(r, t, len, NULL, NULL), 0);
  t[len - 1] = '+';
  assert_int_equal(uvmqtt_router_add(r, t, len, NULL, NULL), 0);
  t[len - 1] = '/';
  /* n slashes make n + 1 levels. The longest topic (65536 levels) matches
   * the exact filter and ".../#" (65534 empty levels, then '#'); one level
   * less matches ".../#" and ".../+"; two less ".../#" alone. */
  assert_int_equal(uvmqtt_router_match(r, t, len, NULL, NULL), 2);
  assert_int_equal(uvmqtt_router_match(r, t, len - 1, NULL, NULL), 2);
  assert_int_equal(uvmqtt_router_match(r, t, len - 2, NULL, NULL), 1);
  assert_int_equal(uvmqtt_router_match(r, t, len - 3, NULL, NULL), 0);
  uvmqtt_router_free(r);
  free(t);
}

/* ---- mutation inside the visitor ------------------------------------------
 */

typedef struct {
  uvmqtt_router_t *r;
  seen_t seen;
  int step;
} mut_t;

/* Visiting "a/#", "a/b", "a/+": remove the one visited and the one after. */
static int remove_cb(void *value, const char *f, size_t len, void *arg) {
  mut_t *m = arg;
  collect(value, f, len, &m->seen);
  if (m->seen.n == 1) {
    assert_int_equal(uvmqtt_router_remove(m->r, f, len, NULL), 0);
    assert_int_equal(del(m->r, "a/b"), 0);
    assert_int_equal(del(m->r, "a/b"), UVMQTT_ENOENT);
    /* And add one that matches: not visited now. */
    assert_int_equal(add(m->r, "+/b", NULL), 0);
    /* Re-adding what was removed makes a new route: not visited. */
    assert_int_equal(add(m->r, "a/b", NULL), 0);
  }
  return 0;
}

static void test_cb_remove_add(void **state) {
  (void)state;
  mut_t m;
  memset(&m, 0, sizeof(m));
  assert_int_equal(uvmqtt_router_new(&m.r), 0);
  size_t empty = uvmqtt_router_memory(m.r);
  assert_int_equal(add(m.r, "a/#", NULL), 0);
  assert_int_equal(add(m.r, "a/b", NULL), 0);
  assert_int_equal(add(m.r, "a/+", NULL), 0);
  assert_int_equal(uvmqtt_router_match(m.r, "a/b", 3, remove_cb, &m), 2);
  assert_int_equal(m.seen.n, 2);
  assert_string_equal(m.seen.filter[0], "a/#");
  assert_string_equal(m.seen.filter[1], "a/+");
  assert_int_equal(uvmqtt_router_count(m.r), 3);
  EXPECT(m.r, "a/b", "a/b", "a/+", "+/b");
  assert_int_equal(del(m.r, "a/b"), 0);
  assert_int_equal(del(m.r, "a/+"), 0);
  assert_int_equal(del(m.r, "+/b"), 0);
  assert_int_equal(uvmqtt_router_memory(m.r), empty);
  uvmqtt_router_free(m.r);
}

/* Removes every route, including all not yet visited. */
static int remove_all_cb(void *value, const char *f, size_t len, void *arg) {
  static const char *all[] = {"#", "x/#", "x/y/z", "x/+/z", "+/+/+", "q/w"};
  mut_t *m = arg;
  collect(value, f, len, &m->seen);
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
    del(m->r, all[i]);
  assert_int_equal(uvmqtt_router_count(m->r), 0);
  return 0;
}

static void test_cb_remove_last(void **state) {
  (void)state;
  mut_t m;
  memset(&m, 0, sizeof(m));
  assert_int_equal(uvmqtt_router_new(&m.r), 0);
  size_t empty = uvmqtt_router_memory(m.r);
  assert_int_equal(add(m.r, "x/y/z", NULL), 0);
  assert_int_equal(add(m.r, "x/+/z", NULL), 0);
  assert_int_equal(add(m.r, "+/+/+", NULL), 0);
  assert_int_equal(add(m.r, "x/#", NULL), 0);
  assert_int_equal(add(m.r, "q/w", NULL), 0);
  assert_int_equal(uvmqtt_router_match(m.r, "x/y/z", 5, remove_all_cb, &m), 1);
  assert_string_equal(m.seen.filter[0], "x/#");
  /* Everything was released when the match returned. */
  assert_int_equal(uvmqtt_router_memory(m.r), empty);
  EXPECT_NONE(m.r, "x/y/z");
  uvmqtt_router_free(m.r);
}

static int stop_cb(void *value, const char *f, size_t len, void *arg) {
  mut_t *m = arg;
  collect(value, f, len, &m->seen);
  return m->seen.n == m->step;
}

static void test_cb_stop(void **state) {
  (void)state;
  mut_t m;
  memset(&m, 0, sizeof(m));
  const char *f[] = {"#", "a/#", "a/b", "a/+", "+/b", NULL};
  m.r = with(f);
  for (int k = 1; k <= 5; k++) {
    memset(&m.seen, 0, sizeof(m.seen));
    m.step = k;
    assert_int_equal(uvmqtt_router_match(m.r, "a/b", 3, stop_cb, &m), k);
    assert_int_equal(m.seen.n, k);
  }
  uvmqtt_router_free(m.r);
}

/* Nested match, replace the value of a later route, and removal in the
 * inner walk seen by the outer one. */
static int nested_cb(void *value, const char *f, size_t len, void *arg) {
  mut_t *m = arg;
  collect(value, f, len, &m->seen);
  if (m->seen.n == 1) {
    seen_t inner;
    void *old = NULL;
    assert_int_equal(uvmqtt_router_add(m->r, "a/+", 3, (void *)2, &old), 1);
    assert_ptr_equal(old, (void *)1);
    assert_int_equal(match(m->r, "a/b", &inner), 4);
    assert_ptr_equal(inner.value[3], (void *)2);
    assert_int_equal(del(m->r, "a/b"), 0);
    /* The inner walk has returned but the outer one still runs: the
     * route is not released yet, and neither visited. */
    assert_int_equal(match(m->r, "a/b", &inner), 3);
  }
  return 0;
}

static void test_cb_nested(void **state) {
  (void)state;
  mut_t m;
  memset(&m, 0, sizeof(m));
  assert_int_equal(uvmqtt_router_new(&m.r), 0);
  size_t empty = uvmqtt_router_memory(m.r);
  assert_int_equal(add(m.r, "#", NULL), 0);
  assert_int_equal(add(m.r, "a/#", NULL), 0);
  assert_int_equal(add(m.r, "a/b", NULL), 0);
  assert_int_equal(add(m.r, "a/+", (void *)1), 0);
  assert_int_equal(uvmqtt_router_match(m.r, "a/b", 3, nested_cb, &m), 3);
  assert_string_equal(m.seen.filter[2], "a/+");
  assert_ptr_equal(m.seen.value[2], (void *)2);
  assert_int_equal(del(m.r, "#"), 0);
  assert_int_equal(del(m.r, "a/#"), 0);
  assert_int_equal(del(m.r, "a/+"), 0);
  assert_int_equal(uvmqtt_router_memory(m.r), empty);
  uvmqtt_router_free(m.r);
}

/* ---- randomised cross-check -----------------------------------------------
 */

static uint64_t rng_state;

static uint32_t rnd(uint32_t n) {
  /* xorshift64*: fixed seed, same sequence on every platform. */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (uint32_t)((rng_state * 2685821657736338717ull) >> 32) % n;
}

/* Levels of up to 8 bytes compare as one word, longer ones also byte by
 * byte: a few words are 8 or 9 bytes and share their first 8. */
static const char *const words[] = {
    "a", "b", "c", "", "$x", "bb", "abcdefgh", "abcdefgi", "abcdefghi"};
#define NWORDS (sizeof(words) / sizeof(words[0]))

static size_t rand_topic(char *buf) {
  size_t n = 0, depth = 1 + rnd(5);
  for (size_t i = 0; i < depth; i++) {
    if (i)
      buf[n++] = '/';
    const char *w = words[rnd(NWORDS)];
    memcpy(buf + n, w, strlen(w));
    n += strlen(w);
  }
  if (n == 0)
    buf[n++] = 'a';
  buf[n] = '\0';
  return n;
}

static size_t rand_filter(char *buf) {
  size_t n = 0, depth = 1 + rnd(4);
  if (rnd(8) == 0)
    n = (size_t)sprintf(buf, "$share/g%u/", rnd(2));
  for (size_t i = 0; i < depth; i++) {
    if (i)
      buf[n++] = '/';
    uint32_t k = rnd(10);
    const char *w = k < 3 ? "+" : words[rnd(NWORDS)];
    if (i + 1 == depth && rnd(5) == 0)
      w = "#";
    memcpy(buf + n, w, strlen(w));
    n += strlen(w);
  }
  buf[n] = '\0';
  return n;
}

/* Strips "$share/<g>/". */
static const char *key_of(const char *f) {
  if (strncmp(f, "$share/", 7) == 0)
    return strchr(f + 7, '/') + 1;
  return f;
}

/* The documented order: level by level, '#' < end < literal < '+'. */
static int level_rank(const char *s, size_t l, int end) {
  if (end)
    return 1;
  if (l == 1 && s[0] == '#')
    return 0;
  if (l == 1 && s[0] == '+')
    return 3;
  return 2;
}

static int cmp_keys(const char *a, const char *b) {
  a = key_of(a);
  b = key_of(b);
  int aend = 0, bend = 0;
  for (;;) {
    size_t la = strcspn(a, "/"), lb = strcspn(b, "/");
    int ra = level_rank(a, la, aend), rb = level_rank(b, lb, bend);
    if (ra != rb)
      return ra - rb;
    if (ra <= 1)
      return 0;
    if (ra == 2 && (la != lb || memcmp(a, b, la) != 0))
      return la != lb ? (int)la - (int)lb : memcmp(a, b, la);
    if (a[la] == '\0')
      aend = 1;
    else
      a += la + 1;
    if (b[lb] == '\0')
      bend = 1;
    else
      b += lb + 1;
  }
}

#define POOL 400

typedef struct {
  char f[64];
  size_t len;
  int live;
  unsigned inc;   /* incarnation: bumped when re-added after removal */
  uintptr_t id;   /* current value */
  uint64_t order; /* creation order, for same-key ties */
} entry_t;

typedef struct {
  uvmqtt_router_t *r;
  entry_t pool[POOL];
  uint64_t next_order;
  uintptr_t next_id;
  /* The walk in progress. */
  int exp[POOL];
  unsigned exp_inc[POOL];
  int nexp, at, visited;
  int mutate; /* 1 in mutate visits changes the table */
  int nested;
  long total_visits; /* so the test cannot pass vacuously */
} world_t;

static void w_add(world_t *w, int i) {
  entry_t *e = &w->pool[i];
  void *old = (void *)1;
  uintptr_t id = ++w->next_id;
  int rc = uvmqtt_router_add(w->r, e->f, e->len, (void *)id, &old);
  if (e->live) {
    assert_int_equal(rc, 1);
    assert_ptr_equal(old, (void *)e->id);
  } else {
    assert_int_equal(rc, 0);
    assert_null(old);
    e->live = 1;
    e->inc++;
    e->order = w->next_order++;
  }
  e->id = id;
}

static void w_remove(world_t *w, int i) {
  entry_t *e = &w->pool[i];
  void *v = NULL;
  int rc = uvmqtt_router_remove(w->r, e->f, e->len, &v);
  if (e->live) {
    assert_int_equal(rc, 0);
    assert_ptr_equal(v, (void *)e->id);
    e->live = 0;
  } else {
    assert_int_equal(rc, UVMQTT_ENOENT);
  }
}

static size_t w_count(const world_t *w) {
  size_t n = 0;
  for (int i = 0; i < POOL; i++)
    n += (size_t)w->pool[i].live;
  return n;
}

static int w_visit(void *value, const char *f, size_t len, void *arg) {
  world_t *w = arg;
  /* Skip expected routes removed (or removed and re-added) meanwhile. */
  while (w->at < w->nexp) {
    entry_t *e = &w->pool[w->exp[w->at]];
    if (e->live && e->inc == w->exp_inc[w->at])
      break;
    w->at++;
  }
  if (w->at >= w->nexp)
    fail_msg("unexpected visit of %.*s", (int)len, f);
  entry_t *e = &w->pool[w->exp[w->at++]];
  if (len != e->len || memcmp(f, e->f, len) != 0)
    fail_msg("visited %.*s, expected %s", (int)len, f, e->f);
  assert_ptr_equal(value, (void *)e->id);
  w->visited++;
  if (w->mutate && rnd(w->mutate) == 0) {
    int k = rnd(4);
    int i = (int)rnd(POOL);
    if (k == 0 && w->at < w->nexp) /* a route not visited yet */
      i = w->exp[w->at + (int)rnd((uint32_t)(w->nexp - w->at))];
    else if (k == 1) /* the route being visited */
      i = (int)(e - w->pool);
    if (w->pool[i].live && rnd(3) != 0)
      w_remove(w, i);
    else
      w_add(w, i);
    if (rnd(16) == 0 && !w->nested) {
      /* A nested walk over an arbitrary topic: count only. */
      char t[64];
      size_t tl = rand_topic(t);
      w->nested = 1;
      assert_true(uvmqtt_router_match(w->r, t, tl, NULL, NULL) >= 0);
      w->nested = 0;
    }
  }
  return 0;
}

static void w_match(world_t *w, const char *t, size_t tl) {
  w->nexp = 0;
  for (int i = 0; i < POOL; i++) {
    entry_t *e = &w->pool[i];
    if (e->live && uvmqtt_topic_matches(e->f, e->len, t, tl))
      w->exp[w->nexp++] = i;
  }
  /* Insertion sort by documented order, then creation order. */
  for (int i = 1; i < w->nexp; i++) {
    int x = w->exp[i], j = i;
    while (j > 0) {
      entry_t *p = &w->pool[w->exp[j - 1]], *q = &w->pool[x];
      int c = cmp_keys(p->f, q->f);
      if (c < 0 || (c == 0 && p->order < q->order))
        break;
      w->exp[j] = w->exp[j - 1];
      j--;
    }
    w->exp[j] = x;
  }
  for (int i = 0; i < w->nexp; i++)
    w->exp_inc[i] = w->pool[w->exp[i]].inc;
  w->at = 0;
  w->visited = 0;
  int n = uvmqtt_router_match(w->r, t, tl, w_visit, w);
  assert_int_equal(n, w->visited);
  w->total_visits += n;
  /* Whatever was not visited was removed during the walk. */
  for (; w->at < w->nexp; w->at++) {
    entry_t *e = &w->pool[w->exp[w->at]];
    if (e->live && e->inc == w->exp_inc[w->at])
      fail_msg("topic %s: %s not visited", t, e->f);
  }
  if (!w->mutate)
    assert_int_equal(n, w->nexp);
}

static void run_world(unsigned long long seed, int mutate, int steps) {
  static world_t w; /* large: keep it off the stack */
  memset(&w, 0, sizeof(w));
  rng_state = seed;
  w.mutate = mutate;
  assert_int_equal(uvmqtt_router_new(&w.r), 0);
  size_t empty = uvmqtt_router_memory(w.r);
  for (int i = 0; i < POOL; i++) {
    entry_t *e = &w.pool[i];
    int dup;
    do {
      e->len = rand_filter(e->f);
      /* An empty filter ("" or "$share/g0/") is invalid: draw again. */
      dup = uvmqtt_filter_validate(e->f, e->len) != 0;
      if (dup)
        assert_true(e->len == 0 || e->f[e->len - 1] == '/');
      for (int j = 0; j < i && !dup; j++)
        dup = strcmp(w.pool[j].f, e->f) == 0;
    } while (dup);
  }
  for (int s = 0; s < steps; s++) {
    uint32_t op = rnd(10);
    int i = (int)rnd(POOL);
    if (op < 3) {
      w_add(&w, i);
    } else if (op < 5) {
      w_remove(&w, i);
    } else {
      char t[64];
      size_t tl = rand_topic(t);
      w_match(&w, t, tl);
    }
    assert_int_equal(uvmqtt_router_count(w.r), w_count(&w));
  }
  if (getenv("ROUTER_TEST_VERBOSE"))
    printf("seed %llu: %ld visits, %zu routes live\n", seed, w.total_visits,
           w_count(&w));
  assert_true(w.total_visits > steps / 4);
  for (int i = 0; i < POOL; i++)
    if (w.pool[i].live)
      w_remove(&w, i);
  assert_int_equal(uvmqtt_router_count(w.r), 0);
  assert_int_equal(uvmqtt_router_memory(w.r), empty);
  uvmqtt_router_free(w.r);
}

static void test_random_crosscheck(void **state) {
  (void)state;
  run_world(0x9E3779B97F4A7C15ull, 0, 20000);
  run_world(12345, 0, 20000);
}

static void test_random_mutation_in_cb(void **state) {
  (void)state;
  run_world(0xC0FFEEull, 3, 20000);
  run_world(777, 1, 20000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_free),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_add_replace_remove),
      cmocka_unit_test(test_spec_examples),
      cmocka_unit_test(test_empty_levels),
      cmocka_unit_test(test_order),
      cmocka_unit_test(test_share),
      cmocka_unit_test(test_memory_baseline),
      cmocka_unit_test(test_wide_node),
      cmocka_unit_test(test_level_bytes),
      cmocka_unit_test(test_deep),
      cmocka_unit_test(test_cb_remove_add),
      cmocka_unit_test(test_cb_remove_last),
      cmocka_unit_test(test_cb_stop),
      cmocka_unit_test(test_cb_nested),
      cmocka_unit_test(test_random_crosscheck),
      cmocka_unit_test(test_random_mutation_in_cb),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
