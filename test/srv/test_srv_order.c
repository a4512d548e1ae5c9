/* Unit tests of the RFC 2782 ordering (uvmqtt__srv_order) and the SRV name
 * helper, with fixed-seed and scripted random numbers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "resolve/srv.h"
#include "uvmqtt/errors.h"

/* ---- random sources -------------------------------------------------------
 */

typedef struct {
  uint64_t s;
  unsigned calls;
} xs_t;

static uint32_t xs_next(void *arg) {
  xs_t *x = arg;
  x->s ^= x->s << 13;
  x->s ^= x->s >> 7;
  x->s ^= x->s << 17;
  x->calls++;
  return (uint32_t)(x->s >> 32);
}

/* Returns script[i++]; the ordering code draws 64 bits as (hi << 32) | lo,
 * so each pick consumes two entries. */
typedef struct {
  const uint32_t *v;
  size_t n, i;
} script_t;

static uint32_t script_next(void *arg) {
  script_t *s = arg;
  assert_true(s->i < s->n);
  return s->v[s->i++];
}

#define T(h, p, w)                                                             \
  { (char *)(h), 0, (p), (w) }

static size_t idx_of(const uvmqtt_srv_target_t *t, size_t n, const char *h) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(t[i].host, h) == 0)
      return i;
  fail_msg("%s missing from the ordered list", h);
  return n;
}

/* ---- tests ----------------------------------------------------------------
 */

static void test_empty_and_single(void **state) {
  (void)state;
  xs_t x = {42, 0};
  uvmqtt__srv_order(NULL, 0, xs_next, &x);
  uvmqtt_srv_target_t one[] = {T("a", 5, 7)};
  uvmqtt__srv_order(one, 1, xs_next, &x);
  assert_string_equal(one[0].host, "a");
  assert_int_equal(x.calls, 0); /* nothing to choose between */
}

static void test_priority_ascending(void **state) {
  (void)state;
  for (uint64_t seed = 1; seed <= 200; seed++) {
    xs_t x = {seed * 0x9E3779B97F4A7C15ull, 0};
    uvmqtt_srv_target_t t[] = {T("p30", 30, 5),   T("p10a", 10, 1),
                               T("p20", 20, 100), T("p10b", 10, 1),
                               T("p0", 0, 0),     T("p65535", 65535, 9)};
    uvmqtt__srv_order(t, 6, xs_next, &x);
    for (size_t i = 1; i < 6; i++)
      assert_true(t[i - 1].priority <= t[i].priority);
    assert_string_equal(t[0].host, "p0");
    assert_true(strncmp(t[1].host, "p10", 3) == 0);
    assert_true(strncmp(t[2].host, "p10", 3) == 0);
    assert_string_equal(t[3].host, "p20");
    assert_string_equal(t[4].host, "p30");
    assert_string_equal(t[5].host, "p65535");
    /* The other fields travel with their host. */
    assert_int_equal(t[3].weight, 100);
  }
}

/* Exact selection rule: running sums over [weight 0 first, then the rest in
 * the server's order]; pick the first whose running sum >= x, where x is
 * uniform in [0, sum]. */
static void test_scripted_selection(void **state) {
  (void)state;
  struct {
    uint32_t lo;
    const char *first;
  } cases[] = {
      {0, "zero"}, /* x = 0: the weight 0 entry (it was moved to the front) */
      {1, "b"},     {10, "b"}, /* x in 1..10: b (running sum 10) */
      {11, "c"},    {30, "c"}, /* x in 11..30: c (running sum 30) */
      {31, "zero"},            /* 31 % 31 == 0 */
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    uvmqtt_srv_target_t t[] = {T("b", 1, 10), T("c", 1, 20), T("zero", 1, 0)};
    /* First pick draws (0, lo); the next pick (two left) draws (0, 0). */
    uint32_t v[] = {0, cases[i].lo, 0, 0};
    script_t s = {v, 4, 0};
    uvmqtt__srv_order(t, 3, script_next, &s);
    assert_string_equal(t[0].host, cases[i].first);
    assert_int_equal(s.i, 4);
  }
}

static void test_all_zero_weights_keep_order(void **state) {
  (void)state;
  xs_t x = {7, 0};
  uvmqtt_srv_target_t t[] = {T("a", 1, 0), T("b", 1, 0), T("c", 1, 0)};
  uvmqtt__srv_order(t, 3, xs_next, &x);
  /* Sum 0: the random number is 0 and the first entry wins every round,
   * so the server's order stands (which is what weight 0 means: no
   * preference). */
  assert_string_equal(t[0].host, "a");
  assert_string_equal(t[1].host, "b");
  assert_string_equal(t[2].host, "c");
  assert_int_equal(x.calls, 0);
}

static void test_weights_statistics(void **state) {
  (void)state;
  enum { ROUNDS = 100000 };
  xs_t x = {0xC0FFEEull, 0};
  unsigned first[3] = {0, 0, 0};
  for (int i = 0; i < ROUNDS; i++) {
    uvmqtt_srv_target_t t[] = {T("w10", 1, 10), T("w30", 1, 30),
                               T("w60", 1, 60)};
    uvmqtt__srv_order(t, 3, xs_next, &x);
    first[t[0].weight / 30]++; /* 10 -> 0, 30 -> 1, 60 -> 2 */
  }
  /* Expected first-pick shares (x uniform in 0..100): 11/101, 30/101,
   * 60/101. Deterministic seed, tolerance +-1.5 points. */
  double f10 = (double)first[0] / ROUNDS, f30 = (double)first[1] / ROUNDS,
         f60 = (double)first[2] / ROUNDS;
  assert_true(f10 > 0.109 - 0.015 && f10 < 0.109 + 0.015);
  assert_true(f30 > 0.297 - 0.015 && f30 < 0.297 + 0.015);
  assert_true(f60 > 0.594 - 0.015 && f60 < 0.594 + 0.015);
}

static void test_weight_zero_rarely_first(void **state) {
  (void)state;
  enum { ROUNDS = 100000 };
  xs_t x = {12345, 0};
  unsigned zero_first = 0;
  for (int i = 0; i < ROUNDS; i++) {
    uvmqtt_srv_target_t t[] = {T("heavy", 3, 100), T("zero", 3, 0)};
    uvmqtt__srv_order(t, 2, xs_next, &x);
    assert_string_not_equal(t[0].host, t[1].host);
    zero_first += strcmp(t[0].host, "zero") == 0;
  }
  /* Chance 1/101 per round: about 990; never 0, never common. */
  assert_true(zero_first > 600 && zero_first < 1400);
}

static void test_permutation_kept(void **state) {
  (void)state;
  xs_t x = {99, 0};
  for (int round = 0; round < 2000; round++) {
    uvmqtt_srv_target_t t[] = {T("a", 2, 0),  T("b", 1, 5), T("c", 2, 65535),
                               T("d", 1, 0),  T("e", 2, 1), T("f", 1, 65535),
                               T("g", 3, 10), T("h", 2, 0)};
    uvmqtt__srv_order(t, 8, xs_next, &x);
    const char *names[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    for (size_t i = 0; i < 8; i++)
      (void)idx_of(t, 8, names[i]);
    for (size_t i = 1; i < 8; i++)
      assert_true(t[i - 1].priority <= t[i].priority);
    assert_string_equal(t[7].host, "g");
  }
}

static void test_srv_name(void **state) {
  (void)state;
  char buf[300];
  assert_int_equal(uvmqtt__srv_name(buf, sizeof(buf), "example.com", 0), 0);
  assert_string_equal(buf, "_mqtt._tcp.example.com");
  assert_int_equal(uvmqtt__srv_name(buf, sizeof(buf), "example.com.", 1), 0);
  assert_string_equal(buf, "_secure-mqtt._tcp.example.com.");
  assert_int_equal(uvmqtt__srv_name(buf, sizeof(buf), "", 0), UVMQTT_EINVAL);
  assert_int_equal(uvmqtt__srv_name(buf, 10, "example.com", 0), UVMQTT_EINVAL);
  char longname[260];
  memset(longname, 'a', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  assert_int_equal(uvmqtt__srv_name(buf, sizeof(buf), longname, 0),
                   UVMQTT_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_empty_and_single),
      cmocka_unit_test(test_priority_ascending),
      cmocka_unit_test(test_scripted_selection),
      cmocka_unit_test(test_all_zero_weights_keep_order),
      cmocka_unit_test(test_weights_statistics),
      cmocka_unit_test(test_weight_zero_rarely_first),
      cmocka_unit_test(test_permutation_kept),
      cmocka_unit_test(test_srv_name),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
