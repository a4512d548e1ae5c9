/* Router benchmark: ns per match and bytes per route at 100, 10,000 and
 * 100,000 routes, against topics of depth 6.
 *
 * Routes look like a gateway's: "r<a>/s<b>/d<c>/k<d>/m<e>/v<f>" with
 * narrow upper levels and wide lower ones. 70% are exact, 20% have one
 * '+' level, 10% end in '#' after 3 to 5 levels. Topics are made from
 * routes (wildcards filled in), so every topic matches at least one route.
 *
 * Two topic sets per size, 4,096 topics or more each:
 * - hot: topics made from 100 random routes, the same kind of working set
 *   at every size (a 100-route table has no more), so the figures show
 *   how the algorithm scales with the table;
 * - spread: one topic per route, so the working set is the whole table
 *   and cache misses add to the cost as the table outgrows the caches.
 * The linear column scans every route with uvmqtt_topic_matches, for scale.
 *
 * Usage: bench_router [seconds per measurement, default 1]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "uvmqtt/router.h"
#include "uvmqtt/topic.h"

#define MAXLEN 64
#define NTOPICS 4096
#define HOT_ROUTES 100

static uint64_t rng = 0x2545F4914F6CDD1Dull;

static uint32_t rnd(uint32_t n) {
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return (uint32_t)((rng * 2685821657736338717ull) >> 32) % n;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char prefix[6] = {'r', 's', 'd', 'k', 'm', 'v'};
static const uint32_t width[6] = {4, 16, 64, 1000, 1000, 100};

static int level(char *out, int i) {
  return sprintf(out, "%c%u", prefix[i], rnd(width[i]));
}

typedef struct {
  char s[MAXLEN];
  size_t len;
} str_t;

/* A random filter; kind 0 exact, 1 one '+', 2 '#' after 3..5 levels. */
static void make_filter(str_t *f, int kind) {
  int depth = kind == 2 ? 3 + (int)rnd(3) : 6;
  int plus = kind == 1 ? (int)rnd(6) : -1;
  char *p = f->s;
  for (int i = 0; i < depth; i++) {
    if (i)
      *p++ = '/';
    if (i == plus)
      *p++ = '+';
    else
      p += level(p, i);
  }
  if (kind == 2) {
    memcpy(p, "/#", 2);
    p += 2;
  }
  f->len = (size_t)(p - f->s);
}

/* A depth-6 topic matching filter f. */
static void make_topic(str_t *t, const str_t *f) {
  char *p = t->s;
  const char *s = f->s, *end = f->s + f->len;
  int i = 0;
  while (s < end) {
    const char *e = memchr(s, '/', (size_t)(end - s));
    size_t l = e ? (size_t)(e - s) : (size_t)(end - s);
    if (i)
      *p++ = '/';
    if (l == 1 && s[0] == '#')
      break;
    if (l == 1 && s[0] == '+')
      p += level(p, i);
    else
      p += sprintf(p, "%.*s", (int)l, s);
    i++;
    s += l + 1;
  }
  if (i < 6) /* after '#': fill up to depth 6 */
    for (p -= (p[-1] == '/'); i < 6; i++) {
      *p++ = '/';
      p += level(p, i);
    }
  t->len = (size_t)(p - t->s);
}

static void shuffle(str_t *t, size_t n) {
  for (size_t i = n - 1; i > 0; i--) {
    size_t j = rnd((uint32_t)(i + 1));
    str_t tmp = t[i];
    t[i] = t[j];
    t[j] = tmp;
  }
}

static int count_cb(void *value, const char *f, size_t len, void *arg) {
  (void)value;
  (void)f;
  (void)len;
  ++*(size_t *)arg;
  return 0;
}

/* Each figure is the best of ROUNDS rounds of secs / ROUNDS: the machine
 * may be shared, and the best round is the least disturbed. */
#define ROUNDS 7

/* ns per match over the topic set. */
static double time_router(uvmqtt_router_t *r, const str_t *t, size_t nt,
                          double secs, double *matches) {
  double best = 1e300;
  for (int round = 0; round < ROUNDS; round++) {
    size_t visits = 0, done = 0;
    double start = now_s(), el;
    do {
      for (size_t i = 0; i < nt; i++)
        uvmqtt_router_match(r, t[i].s, t[i].len, count_cb, &visits);
      done += nt;
      el = now_s() - start;
    } while (el < secs / ROUNDS);
    *matches = (double)visits / (double)done;
    if (el * 1e9 / (double)done < best)
      best = el * 1e9 / (double)done;
  }
  return best;
}

static double time_linear(const str_t *f, size_t nf, const str_t *t, size_t nt,
                          double secs) {
  size_t visits = 0, done = 0;
  double start = now_s(), el;
  do {
    const str_t *x = &t[done % nt];
    for (size_t k = 0; k < nf; k++)
      visits += uvmqtt_topic_matches(f[k].s, f[k].len, x->s, x->len);
    done++;
    el = now_s() - start;
  } while (el < secs / ROUNDS);
  if (visits == 0)
    fprintf(stderr, "linear scan found nothing\n");
  return el * 1e9 / (double)done;
}

int main(int argc, char **argv) {
  static const size_t sizes[] = {100, 10000, 100000};
  double secs = argc > 1 ? atof(argv[1]) : 1.0;
  if (secs <= 0) {
    fprintf(stderr, "usage: %s [seconds per measurement]\n", argv[0]);
    return 2;
  }
  double hot[3] = {0};

  printf("%8s %10s %12s %10s %12s %10s %12s\n", "routes", "bytes/rt",
         "ns/match", "matches", "ns/match", "matches", "linear ns");
  printf("%8s %10s %12s %10s %12s %10s %12s\n", "", "", "(hot)", "/topic",
         "(spread)", "/topic", "(scan)");
  for (int si = 0; si < 3; si++) {
    size_t n = sizes[si];
    str_t *f = calloc(n, sizeof(*f));
    size_t nall = n > NTOPICS ? n : NTOPICS;
    str_t *all = calloc(nall, sizeof(*all));
    str_t *hotset = calloc(NTOPICS, sizeof(*hotset));
    uvmqtt_router_t *r;
    if (!f || !all || !hotset || uvmqtt_router_new(&r) != 0) {
      fprintf(stderr, "out of memory\n");
      return 1;
    }
    size_t base = uvmqtt_router_memory(r);
    for (size_t i = 0; i < n; i++) {
      uint32_t k = rnd(10);
      int rc;
      do { /* collisions replace a route: draw again */
        make_filter(&f[i], k < 7 ? 0 : k < 9 ? 1 : 2);
        rc = uvmqtt_router_add(r, f[i].s, f[i].len, &f[i], NULL);
      } while (rc == 1);
      if (rc != 0) {
        fprintf(stderr, "add %.*s: %d\n", (int)f[i].len, f[i].s, rc);
        return 1;
      }
    }
    double per_route = (double)(uvmqtt_router_memory(r) - base) / (double)n;
    /* Spread: one topic per route, shuffled. Hot: from 100 routes. */
    for (size_t i = 0; i < nall; i++)
      make_topic(&all[i], &f[i % n]);
    shuffle(all, nall);
    size_t pick[HOT_ROUTES];
    for (size_t i = 0; i < HOT_ROUTES; i++)
      pick[i] = rnd((uint32_t)n);
    for (size_t i = 0; i < NTOPICS; i++)
      make_topic(&hotset[i], &f[pick[i % HOT_ROUTES]]);
    shuffle(hotset, NTOPICS);
    double m_hot, m_all;
    hot[si] = time_router(r, hotset, NTOPICS, secs, &m_hot);
    double cold = time_router(r, all, nall, secs, &m_all);
    double lin = time_linear(f, n, all, nall, secs);
    printf("%8zu %10.1f %12.1f %10.2f %12.1f %10.2f %12.0f\n", n, per_route,
           hot[si], m_hot, cold, m_all, lin);
    uvmqtt_router_free(r);
    free(f);
    free(all);
    free(hotset);
  }
  printf("hot match time at 100,000 routes / at 100 routes: %.2fx "
         "(target <= 1.5x)\n",
         hot[2] / hot[0]);
  return 0;
}
