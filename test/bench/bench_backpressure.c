/* Incoming back-pressure: a subscriber that acknowledges slowly (manual
 * acknowledgement from a timer, 100 messages/s by default) under a fast
 * QoS 1 publisher (10,000 messages/s, in a child process with its own
 * loop), against a private mosquitto that keeps the backlog. With the
 * automatic pause (at most 1000 delivered and not acknowledged) the
 * subscriber stops reading and the TCP window pushes back on the broker:
 * its memory stays flat however long the run. Prints the subscriber's RSS
 * every 5 s and a RESULT line: RSS at 5 s and at the end, the largest,
 * messages delivered and acknowledged, the most unacknowledged at once,
 * and gaps / duplicates in the sequence (QoS 1 from one publisher arrives
 * in order: a gap would be a loss).
 *
 * Run by hand: build/test/bench/bench_backpressure [seconds] [pub/s]
 *   [ack/s] [limit] [3|5]   (defaults 60 10000 100 1000 3) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"
#include "uvmqtt.h"

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  if (!f)
    return -1;
  while (fgets(line, sizeof(line), f))
    if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
      break;
  fclose(f);
  return kib;
}

/* ---- the publisher (child process) ----------------------------------------
 */

typedef struct {
  uvmqtt_client_t *c;
  uv_timer_t tick, stop;
  unsigned per_tick;
  unsigned long seq;
  bool up;
} pub_t;

static void pub_tick(uv_timer_t *t) {
  pub_t *p = t->data;
  if (!p->up)
    return;
  for (unsigned i = 0; i < p->per_tick; i++) {
    char payload[100];
    memset(payload, 'x', sizeof(payload));
    int n = snprintf(payload, sizeof(payload), "%lu", p->seq);
    payload[n] = ' ';
    if (uvmqtt_publish(p->c, "bp/x", payload, sizeof(payload), 1, false, NULL,
                       NULL) < 0)
      break; /* queue full: the broker is slower than us; try next tick */
    p->seq++;
  }
}

static void pub_connected(uvmqtt_client_t *c, int status,
                          const uvmqtt_connack_t *ack, void *arg) {
  pub_t *p = arg;
  (void)c;
  (void)ack;
  p->up = status == 0;
}

static void pub_closed(uvmqtt_client_t *c) {
  (void)c;
}

static void pub_stop(uv_timer_t *t) {
  pub_t *p = t->data;
  uv_close((uv_handle_t *)&p->tick, NULL);
  uv_close((uv_handle_t *)&p->stop, NULL);
  uvmqtt_client_close(p->c, pub_closed);
}

static int run_publisher(int port, unsigned seconds, unsigned rate,
                         int version) {
  uv_loop_t loop;
  uvmqtt_options_t *o;
  pub_t p;
  memset(&p, 0, sizeof(p));
  uv_loop_init(&loop);
  uvmqtt_options_new(&o);
  uvmqtt_options_set_protocol(o, version);
  uvmqtt_options_set_max_inflight(o, 20);
  uvmqtt_options_set_max_queued(o, 20000, 0, UVMQTT_QUEUE_REFUSE_NEW);
  if (uvmqtt_client_new(&loop, o, &p.c) != 0)
    return 1;
  uvmqtt_options_del(o);
  uvmqtt_client_on_connect(p.c, pub_connected, &p);
  uvmqtt_client_connect(p.c, "127.0.0.1", port);
  p.per_tick = rate / 100 ? rate / 100 : 1;
  uv_timer_init(&loop, &p.tick);
  uv_timer_init(&loop, &p.stop);
  p.tick.data = p.stop.data = &p;
  uv_timer_start(&p.tick, pub_tick, 10, 10);
  uv_timer_start(&p.stop, pub_stop, (uint64_t)seconds * 1000, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  fprintf(stderr, "publisher: %lu messages\n", p.seq);
  return 0;
}

/* ---- the subscriber -------------------------------------------------------
 */

typedef struct {
  uvmqtt_client_t *c;
  uv_timer_t ack, sample, stop;
  uint64_t *pending;
  size_t npending, cap, head;
  unsigned per_tick;
  unsigned long delivered, acked, gaps, dups, next_seq;
  size_t max_unacked;
  unsigned long paused_ticks, ticks;
  long rss_first, rss_max, rss_last;
  unsigned elapsed;
  bool subscribed;
} sub_t;

static void sub_message(uvmqtt_client_t *c, const uvmqtt_message_t *m,
                        void *arg) {
  sub_t *s = arg;
  unsigned long seq = strtoul((const char *)m->payload, NULL, 10);
  if (seq > s->next_seq)
    s->gaps += seq - s->next_seq;
  else if (seq < s->next_seq)
    s->dups++;
  if (seq >= s->next_seq)
    s->next_seq = seq + 1;
  s->delivered++;
  if (s->npending == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 1024;
    uint64_t *n = malloc(cap * sizeof(*n));
    for (size_t i = 0; i < s->npending; i++)
      n[i] = s->pending[(s->head + i) % s->cap];
    free(s->pending);
    s->pending = n;
    s->cap = cap;
    s->head = 0;
  }
  s->pending[(s->head + s->npending++) % s->cap] = m->ack_handle;
  size_t un = uvmqtt_client_get_unacked(c);
  if (un > s->max_unacked)
    s->max_unacked = un;
}

static void sub_ack(uv_timer_t *t) {
  sub_t *s = t->data;
  s->ticks++;
  if (uvmqtt_client_is_paused(s->c))
    s->paused_ticks++;
  for (unsigned i = 0; i < s->per_tick && s->npending; i++) {
    uint64_t h = s->pending[s->head];
    s->head = (s->head + 1) % s->cap;
    s->npending--;
    if (uvmqtt_ack(s->c, h) == 0)
      s->acked++;
  }
}

static void sub_sample(uv_timer_t *t) {
  sub_t *s = t->data;
  s->elapsed += 5;
  s->rss_last = rss_kib();
  if (s->rss_first < 0)
    s->rss_first = s->rss_last;
  if (s->rss_last > s->rss_max)
    s->rss_max = s->rss_last;
  printf("t=%3us rss=%ld KiB delivered=%lu acked=%lu unacked=%zu paused=%s\n",
         s->elapsed, s->rss_last, s->delivered, s->acked,
         uvmqtt_client_get_unacked(s->c),
         uvmqtt_client_is_paused(s->c) ? "yes" : "no");
  fflush(stdout);
}

static void sub_subscribed(uvmqtt_client_t *c, const uvmqtt_sub_result_t *r,
                           void *arg) {
  sub_t *s = arg;
  (void)c;
  s->subscribed = r->status == 0 && r->count == 1 && r->codes[0] == 1;
}

static void sub_connected(uvmqtt_client_t *c, int status,
                          const uvmqtt_connack_t *ack, void *arg) {
  (void)ack;
  if (status == 0)
    uvmqtt_subscribe(c, "bp/#", 1, sub_subscribed, arg);
}

static void sub_closed(uvmqtt_client_t *c) {
  (void)c;
}

static void sub_stop(uv_timer_t *t) {
  sub_t *s = t->data;
  uv_close((uv_handle_t *)&s->ack, NULL);
  uv_close((uv_handle_t *)&s->sample, NULL);
  uv_close((uv_handle_t *)&s->stop, NULL);
  uvmqtt_client_close(s->c, sub_closed);
}

int main(int argc, char **argv) {
  unsigned seconds = argc > 1 ? (unsigned)atoi(argv[1]) : 60;
  unsigned pub_rate = argc > 2 ? (unsigned)atoi(argv[2]) : 10000;
  unsigned ack_rate = argc > 3 ? (unsigned)atoi(argv[3]) : 100;
  unsigned limit = argc > 4 ? (unsigned)atoi(argv[4]) : 1000;
  int version = argc > 5 && atoi(argv[5]) == 5 ? UVMQTT_V5 : UVMQTT_V311;
  tu_broker_t b;
  signal(SIGPIPE, SIG_IGN);
  if (tu_broker_start(&b, 0,
                      "max_queued_messages 0\nmax_inflight_messages "
                      "20\nlog_type none\n") != 0)
    return 1;
  uv_loop_t loop;
  uv_loop_init(&loop);
  sub_t s;
  memset(&s, 0, sizeof(s));
  s.rss_first = -1;
  s.per_tick = ack_rate / 100 ? ack_rate / 100 : 1;
  uvmqtt_options_t *o;
  uvmqtt_options_new(&o);
  uvmqtt_options_set_protocol(o, version);
  uvmqtt_options_set_manual_ack(o, true, limit, 0);
  uvmqtt_client_new(&loop, o, &s.c);
  uvmqtt_options_del(o);
  uvmqtt_client_on_connect(s.c, sub_connected, &s);
  uvmqtt_client_on_message(s.c, sub_message, &s);
  uvmqtt_client_connect(s.c, "127.0.0.1", b.port);
  for (int i = 0; i < 500 && !s.subscribed; i++)
    uv_run(&loop, UV_RUN_ONCE);
  if (!s.subscribed) {
    fprintf(stderr, "cannot subscribe\n");
    tu_broker_cleanup(&b);
    return 1;
  }
  pid_t pid = fork();
  if (pid == 0)
    _exit(run_publisher(b.port, seconds, pub_rate, version));
  uv_timer_init(&loop, &s.ack);
  uv_timer_init(&loop, &s.sample);
  uv_timer_init(&loop, &s.stop);
  s.ack.data = s.sample.data = s.stop.data = &s;
  uv_timer_start(&s.ack, sub_ack, 10, 10);
  uv_timer_start(&s.sample, sub_sample, 5000, 5000);
  uv_timer_start(&s.stop, sub_stop, (uint64_t)seconds * 1000 + 100, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  int st;
  waitpid(pid, &st, 0);
  tu_broker_cleanup(&b);
  printf("RESULT seconds=%u pub_rate=%u ack_rate=%u limit=%u v=%s "
         "rss_5s_kib=%ld rss_end_kib=%ld rss_max_kib=%ld delivered=%lu "
         "acked=%lu max_unacked=%zu paused_ticks=%lu/%lu gaps=%lu dups=%lu\n",
         seconds, pub_rate, ack_rate, limit,
         version == UVMQTT_V5 ? "5" : "3.1.1", s.rss_first, s.rss_last,
         s.rss_max, s.delivered, s.acked, s.max_unacked, s.paused_ticks,
         s.ticks, s.gaps, s.dups);
  free(s.pending);
  return s.gaps || s.dups ? 1 : 0;
}
