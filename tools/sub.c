/* uvmqtt-sub: subscribe and print messages (mosquitto_sub's options). */
#include <signal.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

typedef struct sub_s {
  tool_cfg_t cfg;
  uv_loop_t *loop;
  uvmqtt_client_t *c;
  const char **outs; /* -T */
  size_t nouts;
  const char **unsubs; /* -U */
  size_t nunsubs;
  unsigned long count; /* -C, 0: unlimited */
  long timeout_ms;     /* -W, 0: none */
  bool verbose, eol, no_retain, retained_only, exit_after_sub;
  bool remove_retained;
  const char *format;

  unsigned long received;
  unsigned long removed;
  size_t pending_clears;
  bool collecting_done;
  bool subscribed;
  /* -t and -U go out in chunks of at most --max-filters filters: each
   * answer's chunk (its first filter), and the answers still to come. */
  struct chunk_s {
    struct sub_s *s;
    size_t first;
  } * chunks;
  size_t answers_left, refused;
  int exit_code;
  bool finishing;
  uv_timer_t wtimer; /* -W */
  uv_timer_t quiet;  /* --remove-retained: end of the retained burst */
} sub_t;

#define QUIET_MS 1000

static void finish(sub_t *s, int code);

static void usage(FILE *out) {
  fputs("Usage: uvmqtt-sub {-t filter ... | -L URL | -U filter ...} "
        "[options]\n"
        "Subscription:\n"
        "  -t filter        subscribe to a filter (repeatable)\n"
        "  -T filter        do not print topics matching this filter\n"
        "  -U filter        unsubscribe from a filter first (repeatable)\n"
        "  -C count         exit after this many messages (each acknowledged\n"
        "                   to the broker before the tool leaves)\n"
        "  --ack-after-write  acknowledge a QoS 1/2 message only once it is\n"
        "                   written to stdout (and flushed); on a write error\n"
        "                   exit unacknowledged, so that the broker sends it\n"
        "                   again to the resumed session (-c)\n"
        "  -W seconds       exit with status 27 after this long\n"
        "  -E               exit once the subscriptions are acknowledged\n"
        "  -R               do not print retained (stale) messages\n"
        "  --retained-only  print retained messages, exit at the first "
        "live one\n"
        "  --remove-retained  clear every retained message matching the "
        "filters,\n"
        "                   then exit once no more arrive\n"
        "Output:\n"
        "  -v               print the topic before the payload\n"
        "  -N               no newline after each message\n"
        "  -F format        %t topic, %p payload, %q QoS, %r retain, %m id,\n"
        "                   %l length, %I ISO-8601 time, %U unix time,\n"
        "                   %x / %X payload in hex, %% percent; \\n \\t \\\\ "
        "escapes\n",
        out);
  tool_usage_common(out);
}

/* ---- output ----------------------------------------------------------------
 */

static void put_hex(const uint8_t *b, size_t n, bool upper) {
  const char *d = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    putchar(d[b[i] >> 4]);
    putchar(d[b[i] & 15]);
  }
}

static void put_format(const sub_t *s, const uvmqtt_message_t *m) {
  for (const char *f = s->format; *f; f++) {
    if (*f == '%' && f[1]) {
      f++;
      switch (*f) {
      case 't':
        fwrite(m->topic, 1, m->topic_len, stdout);
        break;
      case 'p':
        fwrite(m->payload, 1, m->payload_len, stdout);
        break;
      case 'q':
        printf("%u", m->qos);
        break;
      case 'r':
        putchar(m->retain ? '1' : '0');
        break;
      case 'm':
        printf("%u", m->packet_id);
        break;
      case 'l':
        printf("%zu", m->payload_len);
        break;
      case 'x':
      case 'X':
        put_hex(m->payload, m->payload_len, *f == 'X');
        break;
      case 'I': {
        char buf[64];
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S%z", &tm);
        fputs(buf, stdout);
        break;
      }
      case 'U': {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        printf("%lld.%09ld", (long long)ts.tv_sec, ts.tv_nsec);
        break;
      }
      case '%':
        putchar('%');
        break;
      default:
        putchar('%');
        putchar(*f);
      }
    } else if (*f == '\\' && f[1]) {
      f++;
      switch (*f) {
      case 'n':
        putchar('\n');
        break;
      case 't':
        putchar('\t');
        break;
      case 'r':
        putchar('\r');
        break;
      case 'a':
        putchar('\a');
        break;
      case 'e':
        putchar('\033');
        break;
      case 'v':
        putchar('\v');
        break;
      case '0':
        putchar('\0');
        break;
      case '\\':
        putchar('\\');
        break;
      default:
        putchar('\\');
        putchar(*f);
      }
    } else {
      putchar(*f);
    }
  }
}

/* Returns false when stdout could not take it (then it is not
 * acknowledged with --ack-after-write). */
static bool print_message(const sub_t *s, const uvmqtt_message_t *m) {
  if (s->format) {
    put_format(s, m);
  } else {
    if (s->verbose) {
      fwrite(m->topic, 1, m->topic_len, stdout);
      putchar(' ');
    }
    fwrite(m->payload, 1, m->payload_len, stdout);
  }
  if (s->eol)
    putchar('\n');
  return fflush(stdout) == 0 && !ferror(stdout);
}

/* ---- --remove-retained -----------------------------------------------------
 */

static void maybe_done_removing(sub_t *s) {
  if (s->remove_retained && !s->count && s->collecting_done &&
      s->pending_clears == 0 && !s->finishing) {
    if (s->cfg.debug)
      tool_err(&s->cfg, "removed %lu retained message%s", s->removed,
               s->removed == 1 ? "" : "s");
    finish(s, TOOL_EXIT_OK);
  }
}

static void cleared(uvmqtt_client_t *c, const uvmqtt_pub_result_t *res,
                    void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  sub_t *s = arg;
  (void)c;
  (void)id;
  s->pending_clears--;
  if (status < 0 && !s->finishing) {
    tool_err(&s->cfg, "cannot clear a retained message: %s",
             uvmqtt_strerror(status));
    finish(s, TOOL_EXIT_ERR);
    return;
  }
  maybe_done_removing(s);
}

static void quiet_fired(uv_timer_t *t) {
  sub_t *s = t->data;
  s->collecting_done = true;
  maybe_done_removing(s);
}

/* ---- events ----------------------------------------------------------------
 */

/* Handles a message; false when it must not be acknowledged. */
static bool handle_message(sub_t *s, uvmqtt_client_t *c,
                           const uvmqtt_message_t *m) {
  if (s->finishing)
    return true;
  for (size_t i = 0; i < s->nouts; i++)
    if (uvmqtt_topic_matches(s->outs[i], strlen(s->outs[i]), m->topic,
                             m->topic_len))
      return true;
  if (s->remove_retained) {
    if (m->retain && m->payload_len > 0) {
      char *topic = strndup(m->topic, m->topic_len);
      int rc = topic ? uvmqtt_publish(c, topic, NULL, 0, 1, true, cleared, s)
                     : UVMQTT_ENOMEM;
      free(topic);
      if (rc < 0) {
        tool_err(&s->cfg, "cannot clear a retained message: %s",
                 uvmqtt_strerror(rc));
        finish(s, TOOL_EXIT_ERR);
        return true;
      }
      s->pending_clears++;
      s->removed++;
      if (!s->collecting_done)
        uv_timer_start(&s->quiet, quiet_fired, QUIET_MS, 0);
    } else if (!m->retain && m->payload_len == 0) {
      return true; /* the echo of a clear */
    }
  }
  if (s->no_retain && m->retain)
    return true;
  if (s->retained_only && !m->retain) {
    finish(s, TOOL_EXIT_OK);
    return false; /* not shown: the broker keeps it */
  }
  if (!print_message(s, m)) {
    tool_err(&s->cfg, "cannot write to stdout");
    finish(s, TOOL_EXIT_ERR);
    return false;
  }
  s->received++;
  return true;
}

static void on_message(uvmqtt_client_t *c, const uvmqtt_message_t *m,
                       void *arg) {
  sub_t *s = arg;
  bool ok = handle_message(s, c, m);
  /* --ack-after-write: written, so acknowledged (in automatic mode the
   * handle is 0 and this does nothing). Leaving (-C) comes after: the
   * DISCONNECT follows this acknowledgement. */
  if (ok && m->ack_handle) {
    int rc = uvmqtt_ack(c, m->ack_handle);
    if (rc < 0)
      tool_err(&s->cfg, "cannot acknowledge: %s", uvmqtt_strerror(rc));
  }
  if (ok && s->count && s->received >= s->count)
    finish(s, TOOL_EXIT_OK);
}

static void on_suback(uvmqtt_client_t *c, const uvmqtt_sub_result_t *res,
                      void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  const uint8_t *codes = res->codes;
  size_t count = res->count;
  const uvmqtt_props_t *props = res->props;
  struct chunk_s *ch = arg;
  sub_t *s = ch->s;
  (void)c;
  (void)id;
  (void)props;
  if (s->finishing)
    return;
  if (status < 0) {
    /* The connection went away first; the client subscribes again. */
    return;
  }
  for (size_t i = 0; i < count && ch->first + i < s->cfg.ntopics; i++) {
    if (codes[i] >= 0x80) {
      s->refused++;
      tool_err(&s->cfg, "subscription to '%s' refused: %s",
               s->cfg.topics[ch->first + i],
               uvmqtt_reason_string(codes[i], false));
    }
  }
  if (s->answers_left && --s->answers_left)
    return; /* more SUBACKs to come */
  s->subscribed = true;
  if (s->refused == s->cfg.ntopics) {
    tool_err(&s->cfg, "every subscription was refused");
    finish(s, TOOL_EXIT_ERR);
    return;
  }
  if (s->exit_after_sub) {
    finish(s, TOOL_EXIT_OK);
    return;
  }
  if (s->remove_retained && !s->count)
    uv_timer_start(&s->quiet, quiet_fired, QUIET_MS, 0);
}

/* Filters per SUBSCRIBE / UNSUBSCRIBE for n of them. */
static size_t chunk_size(const sub_t *s, size_t n) {
  return s->cfg.max_filters && s->cfg.max_filters < n ? s->cfg.max_filters : n;
}

/* The chunks of n filters, per per chunk, each answer to come. */
static bool chunks_for(sub_t *s, size_t n, size_t per) {
  size_t k = (n + per - 1) / per;
  free(s->chunks);
  s->chunks = calloc(k, sizeof(*s->chunks));
  if (!s->chunks)
    return false;
  for (size_t i = 0; i < k; i++) {
    s->chunks[i].s = s;
    s->chunks[i].first = i * per;
  }
  s->answers_left = k;
  s->refused = 0;
  return true;
}

static void subscribe_all(sub_t *s) {
  if (s->cfg.ntopics == 0) {
    finish(s, TOOL_EXIT_OK); /* only -U: done */
    return;
  }
  uvmqtt_subscription_t *v = calloc(s->cfg.ntopics, sizeof(*v));
  if (!v) {
    tool_err(&s->cfg, "out of memory");
    finish(s, TOOL_EXIT_ERR);
    return;
  }
  for (size_t i = 0; i < s->cfg.ntopics; i++) {
    v[i].filter.data = s->cfg.topics[i];
    v[i].filter.len = strlen(s->cfg.topics[i]);
    v[i].options = (uint8_t)s->cfg.qos;
  }
  const uvmqtt_props_t *props = s->cfg.props[TOOL_P_SUBSCRIBE].any
                                    ? s->cfg.props[TOOL_P_SUBSCRIBE].p
                                    : NULL;
  int rc = 0;
  size_t n = s->cfg.ntopics, per = chunk_size(s, n);
  if (!chunks_for(s, n, per))
    rc = UVMQTT_ENOMEM;
  for (size_t k = 0; rc >= 0 && k * per < n; k++) {
    size_t first = k * per, len = n - first < per ? n - first : per;
    rc = uvmqtt_subscribe_many(s->c, v + first, len, props, on_suback,
                               &s->chunks[k]);
  }
  free(v);
  if (rc < 0) {
    tool_err(&s->cfg, "cannot subscribe: %s", uvmqtt_strerror(rc));
    finish(s, TOOL_EXIT_ERR);
  }
}

static void on_unsuback(uvmqtt_client_t *c, const uvmqtt_sub_result_t *res,
                        void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  const uint8_t *codes = res->codes;
  size_t count = res->count;
  const uvmqtt_props_t *props = res->props;
  sub_t *s = ((struct chunk_s *)arg)->s;
  (void)c;
  (void)id;
  (void)codes;
  (void)count;
  (void)props;
  if (s->finishing)
    return;
  if (status < 0) {
    tool_err(&s->cfg, "unsubscribe failed: %s", uvmqtt_strerror(status));
    finish(s, TOOL_EXIT_ERR);
    return;
  }
  if (s->answers_left && --s->answers_left)
    return; /* more UNSUBACKs to come */
  subscribe_all(s);
}

static void on_connect(uvmqtt_client_t *c, int status,
                       const uvmqtt_connack_t *ack, void *arg) {
  sub_t *s = arg;
  if (s->finishing)
    return;
  if (status == 0) {
    if (s->cfg.connected_once)
      return; /* the client re-subscribes when the session is gone */
    s->cfg.connected_once = true;
    if (s->nunsubs) {
      const uvmqtt_props_t *props = s->cfg.props[TOOL_P_UNSUBSCRIBE].any
                                        ? s->cfg.props[TOOL_P_UNSUBSCRIBE].p
                                        : NULL;
      int rc = 0;
      size_t n = s->nunsubs, per = chunk_size(s, n);
      if (!chunks_for(s, n, per))
        rc = UVMQTT_ENOMEM;
      for (size_t k = 0; rc >= 0 && k * per < n; k++) {
        size_t first = k * per, len = n - first < per ? n - first : per;
        rc = uvmqtt_unsubscribe_many(c, s->unsubs + first, len, props,
                                     on_unsuback, &s->chunks[k]);
      }
      if (rc < 0) {
        tool_err(&s->cfg, "cannot unsubscribe: %s", uvmqtt_strerror(rc));
        finish(s, TOOL_EXIT_ERR);
      }
      return;
    }
    subscribe_all(s);
    return;
  }
  if (!s->cfg.connected_once || tool_connect_error_is_final(status, ack)) {
    tool_report_connect_error(&s->cfg, status, ack);
    finish(s, TOOL_EXIT_ERR);
  }
}

static void timed_out(uv_timer_t *t) {
  sub_t *s = t->data;
  tool_err(&s->cfg, "timed out");
  finish(s, TOOL_EXIT_TIMEOUT);
}

static void client_closed(uvmqtt_client_t *c) {
  tool_cfg_t *cfg = uvmqtt_client_get_data(c);
  if (cfg && cfg->stats)
    tool_print_stats(c);
}

static void finish(sub_t *s, int code) {
  if (s->finishing)
    return;
  s->finishing = true;
  s->exit_code = code;
  uv_close((uv_handle_t *)&s->wtimer, NULL);
  uv_close((uv_handle_t *)&s->quiet, NULL);
  if (uvmqtt_client_is_connected(s->c))
    uvmqtt_client_disconnect(s->c);
  uvmqtt_client_close(s->c, client_closed);
}

/* ---- arguments --------------------------------------------------------------
 */

static int add(sub_t *s, const char ***v, size_t *n, const char *f) {
  if (uvmqtt_filter_validate(f, strlen(f)) < 0) {
    tool_err(&s->cfg, "invalid topic filter '%s'", f);
    return -1;
  }
  const char **nv = realloc(*v, (*n + 1) * sizeof(**v));
  if (!nv) {
    tool_err(&s->cfg, "out of memory");
    return -1;
  }
  nv[(*n)++] = f;
  *v = nv;
  return 0;
}

static int parse_args(sub_t *s, int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int r = tool_parse_common(&s->cfg, argc, argv, &i);
    if (r < 0)
      return -1;
    if (r > 0)
      continue;
    bool has_val = i + 1 < argc;
    if (!strcmp(a, "--help")) {
      usage(stdout);
      exit(0);
    } else if (!strcmp(a, "-T") || !strcmp(a, "--filter-out")) {
      if (!has_val)
        goto missing;
      if (add(s, &s->outs, &s->nouts, argv[++i]) < 0)
        return -1;
    } else if (!strcmp(a, "-U") || !strcmp(a, "--unsubscribe")) {
      if (!has_val)
        goto missing;
      if (add(s, &s->unsubs, &s->nunsubs, argv[++i]) < 0)
        return -1;
    } else if (!strcmp(a, "-C")) {
      char *end;
      if (!has_val)
        goto missing;
      errno = 0;
      s->count = strtoul(argv[++i], &end, 10);
      if (errno || *end || s->count < 1 || argv[i][0] == '-') {
        tool_err(&s->cfg, "-C: invalid count '%s'", argv[i]);
        return -1;
      }
    } else if (!strcmp(a, "-W")) {
      if (!has_val)
        goto missing;
      s->timeout_ms = tool_parse_seconds(argv[++i]);
      if (s->timeout_ms <= 0) {
        tool_err(&s->cfg, "-W: invalid seconds '%s'", argv[i]);
        return -1;
      }
    } else if (!strcmp(a, "-F")) {
      if (!has_val)
        goto missing;
      s->format = argv[++i];
    } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
      s->verbose = true;
    } else if (!strcmp(a, "-N")) {
      s->eol = false;
    } else if (!strcmp(a, "-R")) {
      s->no_retain = true;
    } else if (!strcmp(a, "--retained-only")) {
      s->retained_only = true;
    } else if (!strcmp(a, "-E")) {
      s->exit_after_sub = true;
    } else if (!strcmp(a, "--remove-retained")) {
      s->remove_retained = true;
    } else if (!strcmp(a, "--ack-after-write")) {
      s->cfg.manual_ack = true;
    } else {
      tool_err(&s->cfg, "unknown option '%s' (see --help)", a);
      return -1;
    }
    continue;
  missing:
    tool_err(&s->cfg, "%s needs an argument (see --help)", a);
    return -1;
  }
  if (tool_cfg_finish(&s->cfg) < 0)
    return -1;
  for (size_t i = 0; i < s->cfg.ntopics; i++)
    if (uvmqtt_filter_validate(s->cfg.topics[i], strlen(s->cfg.topics[i])) <
        0) {
      tool_err(&s->cfg, "invalid topic filter '%s'", s->cfg.topics[i]);
      return -1;
    }
  if (s->cfg.ntopics == 0 && s->nunsubs == 0) {
    tool_err(&s->cfg, "no topic filter given (-t, -L or -U)");
    return -1;
  }
  if (s->no_retain && s->retained_only) {
    tool_err(&s->cfg, "-R and --retained-only exclude each other");
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  /* A write to a connection the broker reset raises SIGPIPE; libuv
   * leaves the signal to the program. Ignore it: the write fails with
   * EPIPE instead, and the client reconnects. */
  signal(SIGPIPE, SIG_IGN);
  static sub_t s;
  tool_cfg_init(&s.cfg, "uvmqtt-sub", false);
  s.eol = true;
  s.loop = uv_default_loop();
  int code = TOOL_EXIT_ERR;
  if (parse_args(&s, argc, argv) < 0)
    goto out;
  if (tool_client_new(&s.cfg, s.loop, &s.c) < 0)
    goto out;
  uvmqtt_client_on_connect(s.c, on_connect, &s);
  uvmqtt_client_on_message(s.c, on_message, &s);
  uv_timer_init(s.loop, &s.wtimer);
  uv_timer_init(s.loop, &s.quiet);
  s.wtimer.data = s.quiet.data = &s;
  if (s.timeout_ms > 0)
    uv_timer_start(&s.wtimer, timed_out, (uint64_t)s.timeout_ms, 0);
  if (tool_connect(&s.cfg, s.c) < 0)
    finish(&s, TOOL_EXIT_ERR);
  uv_run(s.loop, UV_RUN_DEFAULT);
  tool_store_close(&s.cfg, s.loop);
  code = s.exit_code;
  if (uv_loop_close(s.loop) != 0 && code == 0) {
    tool_err(&s.cfg, "internal error: handles left open");
    code = TOOL_EXIT_ERR;
  }
out:
  free(s.outs);
  free(s.unsubs);
  free(s.chunks);
  tool_cfg_free(&s.cfg);
  return code;
}
