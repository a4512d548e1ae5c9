/* uvmqtt-pub: publish messages from the command line (mosquitto_pub's
 * options). Exits 0 only once every message is complete at its QoS: once
 * the last one is handed to the client, uvmqtt_client_disconnect_drain()
 * waits for all of them (through reconnects) and leaves gracefully. */
#include <signal.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

enum { M_NONE = 0, M_MSG, M_FILE, M_STDIN, M_LINES, M_NULL };
enum { IN_NONE = 0, IN_STREAM, IN_FS };

typedef struct {
  tool_cfg_t cfg;
  uv_loop_t *loop;
  uvmqtt_client_t *c;
  const char *topic;
  int mode;
  char *msg;
  size_t msg_len;
  bool msg_owned;
  bool retain;
  unsigned long repeat;
  long repeat_delay_ms;

  unsigned long sent;
  size_t pending;
  size_t limit; /* messages handed to the client and not complete */
  int exit_code;
  bool started, finishing;
  bool drain_tried; /* every message handed over */
  bool draining;    /* uvmqtt_client_disconnect_drain() under way */

  uv_timer_t delay;
  bool delay_open, delay_ok;

  /* -l: stdin as a stream (pipe, tty, socket) or read through uv_fs */
  int in_kind;
  union {
    uv_pipe_t pipe;
    uv_tty_t tty;
    uv_stream_t stream;
  } in;
  bool in_open, reading, eof;
  uv_fs_t fsreq;
  bool fs_busy;
  char fsbuf[65536];
  char *lbuf;
  size_t lpos, llen, lcap;
} pub_t;

static void pump(pub_t *p);
static void finish(pub_t *p, int code);

static void usage(FILE *out) {
  fputs("Usage: uvmqtt-pub {-t topic | -L URL} {-m message | -f file | -s | "
        "-l | -n} [options]\n"
        "Message:\n"
        "  -t topic         topic to publish to\n"
        "  -m message       the message\n"
        "  -f file          the contents of a file as the message\n"
        "  -s               all of stdin as one message\n"
        "  -l               one message per line of stdin\n"
        "  -n               an empty (zero-length) message\n"
        "  -r               retain the message\n"
        "  --repeat N       publish the message N times\n"
        "  --repeat-delay s seconds between repeated messages\n"
        "  -M n             messages in flight at once (default 20)\n",
        out);
  tool_usage_common(out);
}

/* ---- publishing ------------------------------------------------------------
 */

static void on_published(uvmqtt_client_t *c, const uvmqtt_pub_result_t *res,
                         void *arg) {
  int status = res->status;
  uint16_t id = res->packet_id;
  pub_t *p = arg;
  (void)c;
  p->pending--;
  if (status < 0 && !p->finishing) {
    if (status == UVMQTT_EREJECTED)
      tool_err(&p->cfg, "message %u rejected by the broker: %s", id,
               uvmqtt_reason_string(res->reason_code, false));
    else
      tool_err(&p->cfg, "message %u failed: %s", id, uvmqtt_strerror(status));
    finish(p, TOOL_EXIT_ERR);
    return;
  }
  pump(p);
}

static int publish_one(pub_t *p, const char *payload, size_t len) {
  uvmqtt_publish_opts_t po;
  memset(&po, 0, sizeof(po));
  po.topic = p->topic;
  po.payload = payload;
  po.payload_len = len;
  po.qos = p->cfg.qos;
  po.retain = p->retain;
  if (p->cfg.props[TOOL_P_PUBLISH].any)
    po.props = p->cfg.props[TOOL_P_PUBLISH].p;
  int rc = uvmqtt_publish_ex(p->c, &po, on_published, p);
  if (rc < 0) {
    tool_err(&p->cfg, "cannot publish: %s", uvmqtt_strerror(rc));
    finish(p, TOOL_EXIT_ERR);
    return -1;
  }
  p->pending++;
  p->sent++;
  return 0;
}

/* ---- stdin, line by line ---------------------------------------------------
 */

static void in_closed(uv_handle_t *h) {
  pub_t *p = h->data;
  p->in_open = false;
}

static void in_close(pub_t *p) {
  if (p->in_kind == IN_STREAM && p->in_open &&
      !uv_is_closing((uv_handle_t *)&p->in.stream))
    uv_close((uv_handle_t *)&p->in.stream, in_closed);
  p->reading = false;
}

static int lbuf_append(pub_t *p, const char *data, size_t n) {
  if (p->lpos > 0 && p->lpos == p->llen) {
    p->lpos = p->llen = 0;
  } else if (p->lpos > 0 && p->llen + n > p->lcap) {
    memmove(p->lbuf, p->lbuf + p->lpos, p->llen - p->lpos);
    p->llen -= p->lpos;
    p->lpos = 0;
  }
  if (p->llen + n > p->lcap) {
    size_t cap = p->lcap ? p->lcap : 65536;
    while (cap < p->llen + n)
      cap *= 2;
    char *b = realloc(p->lbuf, cap);
    if (!b)
      return -1;
    p->lbuf = b;
    p->lcap = cap;
  }
  memcpy(p->lbuf + p->llen, data, n);
  p->llen += n;
  return 0;
}

static void in_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  pub_t *p = h->data;
  (void)hint;
  *buf = uv_buf_init(p->fsbuf, sizeof(p->fsbuf));
}

static void in_data(pub_t *p, ssize_t n, const char *data) {
  if (n > 0) {
    if (lbuf_append(p, data, (size_t)n) < 0) {
      tool_err(&p->cfg, "out of memory reading stdin");
      finish(p, TOOL_EXIT_ERR);
      return;
    }
  } else if (n == UV_EOF || n == 0) {
    p->eof = true;
    in_close(p);
  } else {
    tool_err(&p->cfg, "cannot read stdin: %s", uv_strerror((int)n));
    finish(p, TOOL_EXIT_ERR);
    return;
  }
  pump(p);
}

static void in_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  pub_t *p = s->data;
  if (n == 0)
    return; /* EAGAIN */
  in_data(p, n, buf->base);
}

static void fs_read_done(uv_fs_t *req) {
  pub_t *p = req->data;
  ssize_t n = req->result;
  uv_fs_req_cleanup(req);
  p->fs_busy = false;
  if (p->finishing)
    return;
  in_data(p, n == 0 ? UV_EOF : n, p->fsbuf);
}

/* Asks for more of stdin (only when every complete line is used up). */
static void in_want(pub_t *p, bool want) {
  if (p->eof || p->finishing)
    return;
  if (p->in_kind == IN_STREAM) {
    if (want && !p->reading) {
      int rc = uv_read_start(&p->in.stream, in_alloc, in_read);
      if (rc < 0) {
        tool_err(&p->cfg, "cannot read stdin: %s", uv_strerror(rc));
        finish(p, TOOL_EXIT_ERR);
        return;
      }
      p->reading = true;
    } else if (!want && p->reading) {
      uv_read_stop(&p->in.stream);
      p->reading = false;
    }
  } else if (p->in_kind == IN_FS && want && !p->fs_busy) {
    uv_buf_t b = uv_buf_init(p->fsbuf, sizeof(p->fsbuf));
    p->fsreq.data = p;
    int rc = uv_fs_read(p->loop, &p->fsreq, 0, &b, 1, -1, fs_read_done);
    if (rc < 0) {
      tool_err(&p->cfg, "cannot read stdin: %s", uv_strerror(rc));
      finish(p, TOOL_EXIT_ERR);
      return;
    }
    p->fs_busy = true;
  }
}

static int in_open(pub_t *p) {
  uv_handle_type t = uv_guess_handle(0);
  int rc;
  if (t == UV_TTY) {
    rc = uv_tty_init(p->loop, &p->in.tty, 0, 1);
    p->in_kind = IN_STREAM;
  } else if (t == UV_NAMED_PIPE || t == UV_TCP) {
    rc = uv_pipe_init(p->loop, &p->in.pipe, 0);
    if (rc == 0 && (rc = uv_pipe_open(&p->in.pipe, 0)) < 0)
      uv_close((uv_handle_t *)&p->in.pipe, NULL);
    p->in_kind = IN_STREAM;
  } else {
    /* Regular files and devices: reads through the thread pool. */
    p->in_kind = IN_FS;
    return 0;
  }
  if (rc < 0) {
    tool_err(&p->cfg, "cannot read stdin: %s", uv_strerror(rc));
    p->in_kind = IN_NONE;
    return -1;
  }
  p->in.stream.data = p;
  p->in_open = true;
  return 0;
}

/* ---- the pump ---------------------------------------------------------------
 * Keeps at most `limit` messages handed to the client; the client sends
 * them through its in-flight window and the rest wait in its queue. */

static void delay_fired(uv_timer_t *t) {
  pub_t *p = t->data;
  p->delay_ok = true;
  pump(p);
}

static void drained(uvmqtt_client_t *c, int status, void *arg) {
  pub_t *p = arg;
  (void)c;
  if (status < 0 && status != UVMQTT_ECLOSED)
    tool_err(&p->cfg, "messages not complete: %s", uvmqtt_strerror(status));
  finish(p, status == 0 ? TOOL_EXIT_OK : TOOL_EXIT_ERR);
}

/* Every message is handed to the client: drain, then leave. */
static void all_handed(pub_t *p) {
  if (p->finishing || p->draining)
    return;
  if (!p->drain_tried) {
    p->drain_tried = true;
    p->draining = uvmqtt_client_disconnect_drain(p->c, 0, drained, p) == 0;
    if (p->draining)
      return;
  }
  /* No drain (the client is not connected nor reconnecting): wait for
   * the completions ourselves. */
  if (p->pending == 0)
    finish(p, TOOL_EXIT_OK);
}

static void pump(pub_t *p) {
  if (p->finishing || !p->started)
    return;
  if (p->mode == M_LINES) {
    while (p->pending < p->limit && !p->finishing) {
      char *start = p->lbuf ? p->lbuf + p->lpos : NULL;
      char *nl =
          p->lpos < p->llen ? memchr(start, '\n', p->llen - p->lpos) : NULL;
      size_t len;
      if (nl) {
        len = (size_t)(nl - start);
        p->lpos += len + 1;
      } else if (p->eof && p->lpos < p->llen) {
        len = p->llen - p->lpos; /* a last line without its newline */
        p->lpos = p->llen;
      } else {
        break;
      }
      if (publish_one(p, start, len) < 0)
        return;
    }
    if (p->finishing)
      return;
    bool have_line =
        p->lpos < p->llen && memchr(p->lbuf + p->lpos, '\n', p->llen - p->lpos);
    in_want(p, !have_line && p->pending < p->limit);
    if (p->eof && p->lpos >= p->llen)
      all_handed(p);
    return;
  }
  while (p->sent < p->repeat && p->pending < p->limit && !p->finishing) {
    if (p->repeat_delay_ms > 0 && p->sent > 0) {
      if (!p->delay_ok) {
        if (!uv_is_active((uv_handle_t *)&p->delay))
          uv_timer_start(&p->delay, delay_fired, (uint64_t)p->repeat_delay_ms,
                         0);
        break;
      }
      p->delay_ok = false;
    }
    if (publish_one(p, p->msg, p->msg_len) < 0)
      return;
  }
  if (!p->finishing && p->sent >= p->repeat)
    all_handed(p);
}

/* ---- lifecycle ----------------------------------------------------------- */

static void client_closed(uvmqtt_client_t *c) {
  tool_cfg_t *cfg = uvmqtt_client_get_data(c);
  if (cfg && cfg->stats)
    tool_print_stats(c);
}

static void finish(pub_t *p, int code) {
  if (p->finishing)
    return;
  p->finishing = true;
  p->exit_code = code;
  in_close(p);
  if (p->fs_busy)
    uv_cancel((uv_req_t *)&p->fsreq);
  if (p->delay_open) {
    uv_close((uv_handle_t *)&p->delay, NULL);
    p->delay_open = false;
  }
  if (uvmqtt_client_is_connected(p->c))
    uvmqtt_client_disconnect(p->c); /* a normal end: no will */
  uvmqtt_client_close(p->c, client_closed);
}

static void on_connect(uvmqtt_client_t *c, int status,
                       const uvmqtt_connack_t *ack, void *arg) {
  pub_t *p = arg;
  (void)c;
  if (p->finishing)
    return;
  if (status == 0) {
    if (!p->cfg.connected_once) {
      p->cfg.connected_once = true;
      p->started = true;
      pump(p);
    }
    return;
  }
  if (!p->cfg.connected_once || tool_connect_error_is_final(status, ack)) {
    tool_report_connect_error(&p->cfg, status, ack);
    finish(p, TOOL_EXIT_ERR);
  }
}

static int read_all(pub_t *p, FILE *f, const char *what) {
  size_t cap = 65536, n = 0;
  char *b = malloc(cap);
  if (!b)
    goto nomem;
  for (;;) {
    size_t r = fread(b + n, 1, cap - n, f);
    n += r;
    if (r == 0) {
      if (ferror(f)) {
        tool_err(&p->cfg, "cannot read %s: %s", what, strerror(errno));
        free(b);
        return -1;
      }
      break;
    }
    if (n == cap) {
      char *nb = realloc(b, cap *= 2);
      if (!nb) {
        free(b);
        goto nomem;
      }
      b = nb;
    }
  }
  p->msg = b;
  p->msg_len = n;
  p->msg_owned = true;
  return 0;
nomem:
  tool_err(&p->cfg, "out of memory reading %s", what);
  return -1;
}

static int set_mode(pub_t *p, int mode) {
  if (p->mode != M_NONE && p->mode != mode) {
    tool_err(&p->cfg, "only one of -m, -f, -s, -l and -n may be given");
    return -1;
  }
  p->mode = mode;
  return 0;
}

static int parse_args(pub_t *p, int argc, char **argv) {
  const char *file = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int r = tool_parse_common(&p->cfg, argc, argv, &i);
    if (r < 0)
      return -1;
    if (r > 0)
      continue;
    if (!strcmp(a, "--help")) {
      usage(stdout);
      exit(0);
    } else if (!strcmp(a, "-m") || !strcmp(a, "--message")) {
      if (i + 1 >= argc)
        goto missing;
      if (set_mode(p, M_MSG) < 0)
        return -1;
      p->msg = argv[++i];
      p->msg_len = strlen(p->msg);
    } else if (!strcmp(a, "-f") || !strcmp(a, "--file")) {
      if (i + 1 >= argc)
        goto missing;
      if (set_mode(p, M_FILE) < 0)
        return -1;
      file = argv[++i];
    } else if (!strcmp(a, "-s") || !strcmp(a, "--stdin-file")) {
      if (set_mode(p, M_STDIN) < 0)
        return -1;
    } else if (!strcmp(a, "-l") || !strcmp(a, "--stdin-line")) {
      if (set_mode(p, M_LINES) < 0)
        return -1;
    } else if (!strcmp(a, "-n") || !strcmp(a, "--null-message")) {
      if (set_mode(p, M_NULL) < 0)
        return -1;
    } else if (!strcmp(a, "-r") || !strcmp(a, "--retain")) {
      p->retain = true;
    } else if (!strcmp(a, "--repeat")) {
      char *end;
      if (i + 1 >= argc)
        goto missing;
      errno = 0;
      p->repeat = strtoul(argv[++i], &end, 10);
      if (errno || *end || p->repeat < 1 || argv[i][0] == '-') {
        tool_err(&p->cfg, "--repeat: invalid count '%s'", argv[i]);
        return -1;
      }
    } else if (!strcmp(a, "--repeat-delay")) {
      if (i + 1 >= argc)
        goto missing;
      if ((p->repeat_delay_ms = tool_parse_seconds(argv[++i])) < 0) {
        tool_err(&p->cfg, "--repeat-delay: invalid seconds '%s'", argv[i]);
        return -1;
      }
    } else if (!strcmp(a, "-M")) {
      char *end;
      if (i + 1 >= argc)
        goto missing;
      unsigned long m = strtoul(argv[++i], &end, 10);
      if (*end || m < 1 || m > 65535 || argv[i][0] == '-') {
        tool_err(&p->cfg, "-M: invalid count '%s' (1 to 65535)", argv[i]);
        return -1;
      }
      p->cfg.max_inflight = (unsigned)m;
    } else {
      tool_err(&p->cfg, "unknown option '%s' (see --help)", a);
      return -1;
    }
    continue;
  missing:
    tool_err(&p->cfg, "%s needs an argument (see --help)", a);
    return -1;
  }
  if (tool_cfg_finish(&p->cfg) < 0)
    return -1;
  if (p->cfg.ntopics != 1) {
    tool_err(&p->cfg, p->cfg.ntopics ? "give exactly one topic"
                                     : "no topic given (-t or -L)");
    return -1;
  }
  p->topic = p->cfg.topics[0];
  if (uvmqtt_topic_validate(p->topic, strlen(p->topic)) < 0) {
    tool_err(&p->cfg, "invalid topic '%s' (no wildcards, valid UTF-8)",
             p->topic);
    return -1;
  }
  if (p->mode == M_NONE) {
    tool_err(&p->cfg, "no message given (-m, -f, -s, -l or -n)");
    return -1;
  }
  if (p->mode == M_FILE) {
    FILE *f = fopen(file, "rb");
    if (!f) {
      tool_err(&p->cfg, "cannot open %s: %s", file, strerror(errno));
      return -1;
    }
    int rc = read_all(p, f, file);
    fclose(f);
    if (rc < 0)
      return -1;
  } else if (p->mode == M_STDIN) {
    if (read_all(p, stdin, "stdin") < 0)
      return -1;
  } else if (p->mode == M_NULL) {
    p->msg = NULL;
    p->msg_len = 0;
  }
  return 0;
}

int main(int argc, char **argv) {
  /* A write to a connection the broker reset raises SIGPIPE; libuv
   * leaves the signal to the program. Ignore it: the write fails with
   * EPIPE instead, and the client reconnects. */
  signal(SIGPIPE, SIG_IGN);
  static pub_t p; /* large (read buffer): not on the stack */
  tool_cfg_init(&p.cfg, "uvmqtt-pub", true);
  p.repeat = 1;
  p.loop = uv_default_loop();
  if (parse_args(&p, argc, argv) < 0) {
    tool_cfg_free(&p.cfg);
    return TOOL_EXIT_ERR;
  }
  unsigned window = p.cfg.max_inflight ? p.cfg.max_inflight : 20;
  p.limit = 2 * (size_t)window;
  if (tool_client_new(&p.cfg, p.loop, &p.c) < 0) {
    tool_cfg_free(&p.cfg);
    return TOOL_EXIT_ERR;
  }
  uvmqtt_client_on_connect(p.c, on_connect, &p);
  if (p.cfg.store) {
    int n = uvmqtt_client_restored(p.c, NULL, NULL);
    /* Messages a previous run left: resumed on connect, pending until
     * they complete, as this run's own. */
    uvmqtt_client_on_restored_done(p.c, on_published, &p);
    p.pending += (size_t)n;
    if (n > 0 && !p.cfg.quiet)
      fprintf(stderr, "uvmqtt-pub: resuming %d message(s) from %s\n", n,
              p.cfg.store_path);
  }
  uv_timer_init(p.loop, &p.delay);
  p.delay.data = &p;
  p.delay_open = true;
  if ((p.mode == M_LINES && in_open(&p) < 0) || tool_connect(&p.cfg, p.c) < 0)
    finish(&p, TOOL_EXIT_ERR);
  uv_run(p.loop, UV_RUN_DEFAULT);
  tool_store_close(&p.cfg, p.loop);
  int code = p.exit_code;
  if (uv_loop_close(p.loop) != 0 && code == 0) {
    tool_err(&p.cfg, "internal error: handles left open");
    code = TOOL_EXIT_ERR;
  }
  if (p.msg_owned)
    free(p.msg);
  free(p.lbuf);
  tool_cfg_free(&p.cfg);
  return code;
}
