/* Topic name and filter validation and the reference matcher. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "uvmqtt/errors.h"
#include "uvmqtt/topic.h"

#define S(lit) lit, sizeof(lit) - 1

static int tv(const char *s) {
  return uvmqtt_topic_validate(s, strlen(s));
}

static int fv(const char *s) {
  return uvmqtt_filter_validate(s, strlen(s));
}

static bool m(const char *f, const char *t) {
  return uvmqtt_topic_matches(f, strlen(f), t, strlen(t));
}

static void test_topic_valid(void **state) {
  (void)state;
  const char *ok[] = {"a",
                      "/",
                      "//",
                      "a/b/c",
                      "a//b",
                      "/a",
                      "a/",
                      " ",
                      "$SYS/broker/load",
                      "$share/g/x",
                      "caf\xc3\xa9",
                      "\xe2\x82\xac/\xf0\x9f\x98\x80",
                      "\xef\xbb\xbf",
                      "\xf4\x8f\xbf\xbf",
                      "\xed\x9f\xbf"};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
    assert_int_equal(tv(ok[i]), 0);

  char *big = malloc(UVMQTT_TOPIC_MAX + 1);
  assert_non_null(big);
  memset(big, 'x', UVMQTT_TOPIC_MAX + 1);
  assert_int_equal(uvmqtt_topic_validate(big, UVMQTT_TOPIC_MAX), 0);
  assert_int_equal(uvmqtt_topic_validate(big, UVMQTT_TOPIC_MAX + 1),
                   UVMQTT_ETOPIC);
  free(big);
}

static void test_topic_invalid(void **state) {
  (void)state;
  assert_int_equal(uvmqtt_topic_validate("", 0), UVMQTT_ETOPIC);
  assert_int_equal(uvmqtt_topic_validate(NULL, 0), UVMQTT_ETOPIC);
  assert_int_equal(uvmqtt_topic_validate(NULL, 3), UVMQTT_ETOPIC);
  const char *bad[] = {"+",
                       "#",
                       "a/+",
                       "a/#",
                       "a+b",
                       "sport/#/x",
                       "\x80",
                       "\xc0\x80",
                       "\xc1\xbf",
                       "\xe0\x80\x80",
                       "\xed\xa0\x80", /* U+D800, a surrogate */
                       "\xf0\x80\x80\x80",
                       "\xf4\x90\x80\x80", /* > U+10FFFF */
                       "\xf5\x80\x80\x80",
                       "\xff",
                       "a\xc3",
                       "\xe2\x82",
                       "\xf0\x9f\x98",
                       "\xc3\x28",
                       "\xe2\x28\xa1"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(tv(bad[i]), UVMQTT_ETOPIC);
  /* U+0000 inside the length. */
  assert_int_equal(uvmqtt_topic_validate(S("a\0b")), UVMQTT_ETOPIC);
}

static void test_filter_valid(void **state) {
  (void)state;
  const char *ok[] = {"#",
                      "+",
                      "a",
                      "/",
                      "a/#",
                      "a/+",
                      "+/+",
                      "/+",
                      "+/",
                      "+/#",
                      "a/+/b/#",
                      "a//b",
                      "//#",
                      "$SYS/#",
                      "$share/g/#",
                      "$share/g/a/+/b",
                      "$share/group-1/+",
                      "$share/g/$SYS/x",
                      "$share/g//",
                      "$sharex/+",
                      "x/$share",
                      "sport/tennis/player1/#",
                      "caf\xc3\xa9/+"};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    if (fv(ok[i]) != 0)
      fail_msg("filter \"%s\" rejected", ok[i]);
  }
  char *big = malloc(UVMQTT_TOPIC_MAX + 1);
  assert_non_null(big);
  memset(big, 'x', UVMQTT_TOPIC_MAX + 1);
  big[UVMQTT_TOPIC_MAX - 1] = '#';
  big[UVMQTT_TOPIC_MAX - 2] = '/';
  assert_int_equal(uvmqtt_filter_validate(big, UVMQTT_TOPIC_MAX), 0);
  assert_int_equal(uvmqtt_filter_validate(big, UVMQTT_TOPIC_MAX + 1),
                   UVMQTT_EFILTER);
  free(big);
}

static void test_filter_invalid(void **state) {
  (void)state;
  assert_int_equal(uvmqtt_filter_validate("", 0), UVMQTT_EFILTER);
  assert_int_equal(uvmqtt_filter_validate(NULL, 0), UVMQTT_EFILTER);
  assert_int_equal(uvmqtt_filter_validate(NULL, 1), UVMQTT_EFILTER);
  const char *bad[] = {"a#",
                       "#a",
                       "a/#/b",
                       "#/",
                       "#/#",
                       "##",
                       "a/b#",
                       "a+",
                       "+a",
                       "a/+b",
                       "a/b+/c",
                       "++",
                       "sport+",
                       "$share",
                       "$share/",
                       "$share/g",
                       "$share/g/",
                       "$share//a",
                       "$share//",
                       "$share/g+/a",
                       "$share/g#/a",
                       "$share/+/a",
                       "$share/#/a",
                       "$share/#",
                       "$share/g/a#",
                       "$share/g/a/#/b",
                       "$share/g/+x",
                       "\xc0\x80",
                       "a/\xed\xa0\x80",
                       "a/\xff/#",
                       "$share/\x80/a"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    if (fv(bad[i]) != UVMQTT_EFILTER)
      fail_msg("filter \"%s\" accepted", bad[i]);
  }
  assert_int_equal(uvmqtt_filter_validate(S("a/\0/#")), UVMQTT_EFILTER);
}

/* The examples of MQTT 5.0 section 4.7 (and 3.1.1 section 4.7). */
static void test_matches_spec(void **state) {
  (void)state;
  /* '#' */
  assert_true(m("sport/tennis/player1/#", "sport/tennis/player1"));
  assert_true(m("sport/tennis/player1/#", "sport/tennis/player1/ranking"));
  assert_true(
      m("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon"));
  assert_false(m("sport/tennis/player1/#", "sport/tennis/player2"));
  assert_false(m("sport/tennis/player1/#", "sport/tennis"));
  assert_true(m("sport/#", "sport"));
  assert_true(m("sport/#", "sport/"));
  assert_true(m("#", "sport"));
  assert_true(m("#", "/"));
  assert_true(m("#", "a/b/c/d"));
  /* '+' */
  assert_true(m("sport/tennis/+", "sport/tennis/player1"));
  assert_true(m("sport/tennis/+", "sport/tennis/player2"));
  assert_false(m("sport/tennis/+", "sport/tennis/player1/ranking"));
  assert_false(m("sport/+", "sport"));
  assert_true(m("sport/+", "sport/"));
  assert_true(m("+/+", "/finance"));
  assert_true(m("/+", "/finance"));
  assert_false(m("+", "/finance"));
  assert_true(m("+", "finance"));
  assert_true(m("+/tennis/#", "sport/tennis/player1"));
  assert_true(m("+/tennis/#", "sport/tennis"));
  assert_false(m("+/tennis/#", "sport/golf"));
  /* '$' topics [MQTT-4.7.2-1] */
  assert_false(m("#", "$SYS/monitor/Clients"));
  assert_false(m("#", "$SYS"));
  assert_false(m("+/monitor/Clients", "$SYS/monitor/Clients"));
  assert_false(m("+", "$SYS"));
  assert_true(m("$SYS/#", "$SYS/monitor/Clients"));
  assert_true(m("$SYS/#", "$SYS"));
  assert_true(m("$SYS/monitor/+", "$SYS/monitor/Clients"));
  assert_true(m("a/#", "a/$b"));
  assert_true(m("a/+", "a/$b"));
  /* Exact. */
  assert_true(m("a/b", "a/b"));
  assert_false(m("a/b", "a/bc"));
  assert_false(m("a/bc", "a/b"));
  assert_false(m("a/b", "a/b/c"));
  assert_false(m("a/b/c", "a/b"));
  assert_false(m("A", "a"));
}

static void test_matches_empty_levels(void **state) {
  (void)state;
  assert_true(m("a//b", "a//b"));
  assert_true(m("a/+/b", "a//b"));
  assert_false(m("a/b", "a//b"));
  assert_false(m("a//b", "a/b"));
  assert_true(m("a/+", "a/"));
  assert_true(m("a/#", "a/"));
  assert_true(m("+/+", "a/"));
  assert_false(m("a", "a/"));
  assert_false(m("a/", "a"));
  assert_true(m("a/", "a/"));
  assert_true(m("/a", "/a"));
  assert_true(m("+/a", "/a"));
  assert_false(m("a", "/a"));
  assert_true(m("/", "/"));
  assert_true(m("+/+", "/"));
  assert_false(m("+", "/"));
  assert_true(m("//#", "//"));
  assert_true(m("/#", "/"));
  assert_true(m("+/#", "/"));
  assert_true(m("+/#", "x"));
}

static void test_matches_share(void **state) {
  (void)state;
  assert_true(m("$share/g/sport/#", "sport/tennis"));
  assert_true(m("$share/g/sport/#", "sport"));
  assert_true(m("$share/g/+/x", "a/x"));
  assert_false(m("$share/g/+/x", "a/y"));
  assert_true(m("$share/g/a", "a"));
  assert_false(m("$share/g/a", "$share/g/a"));
  assert_false(m("$share/g/#", "$SYS/x"));
  assert_false(m("$share/g/+/x", "$SYS/x"));
  assert_true(m("$share/g/$SYS/#", "$SYS/x"));
  /* Not shared: "$share" only when it is the whole first level. */
  assert_true(m("$sharex/a", "$sharex/a"));
}

static void test_matches_invalid(void **state) {
  (void)state;
  assert_false(m("", "a"));
  assert_false(m("a", ""));
  assert_false(m("a#", "a#"));
  assert_false(m("#", "a/+"));
  assert_false(m("+", "#"));
  assert_false(m("$share/g", "g"));
  assert_false(m("#", "\xc0\x80"));
  assert_false(uvmqtt_topic_matches(S("#"), S("a\0")));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_topic_valid),
      cmocka_unit_test(test_topic_invalid),
      cmocka_unit_test(test_filter_valid),
      cmocka_unit_test(test_filter_invalid),
      cmocka_unit_test(test_matches_spec),
      cmocka_unit_test(test_matches_empty_levels),
      cmocka_unit_test(test_matches_share),
      cmocka_unit_test(test_matches_invalid),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
