/* The HTTP CONNECT proxy layer (RFC 9110 section 9.3.6): sends CONNECT
 * host:port, with Basic credentials when configured, and reads the reply
 * header incrementally, one byte at a time if it comes so, keeping only
 * the line being read (truncated past a limit) and a byte count bounded
 * by max_reply_size. The pass-through after it is proxy.c's. */
#include <stdio.h>
#include <string.h>

#include "../alloc.h"
#include "http.h"
#include "proxy.h"
#include "uvmqtt/errors.h"
#include "uvmqtt/log.h"

#define DEFAULT_MAX_REPLY (8u * 1024u)
#define LINE_KEEP 160 /* bytes of a line kept for parsing and logging */

typedef struct {
  char *request;
  size_t request_len;
  size_t max_reply;
  size_t total;    /* reply bytes seen (of the current response) */
  unsigned lines;  /* complete lines of the current response */
  int status;      /* from the status line */
  size_t line_len; /* of the line being read (may exceed LINE_KEEP) */
  char line[LINE_KEEP];
} http_st_t;

static int has_ctl(const char *s) {
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7F)
      return 1;
  return 0;
}

static int http_init(void *vst, const uvmqtt_proxy_opts_t *o) {
  http_st_t *st = vst;
  if (has_ctl(o->host) || strchr(o->host, ' ') || strchr(o->host, '/') ||
      (o->user && (has_ctl(o->user) || strchr(o->user, ':'))) ||
      (o->pass && has_ctl(o->pass)))
    return UVMQTT_EINVAL;
  st->max_reply = o->max_reply_size ? o->max_reply_size : DEFAULT_MAX_REPLY;
  /* host:port, an IPv6 literal in brackets. */
  size_t hl = strlen(o->host);
  char *auth = NULL;
  size_t cap = 2 * hl + 128;
  if (o->user) {
    size_t ul = strlen(o->user), pl = o->pass ? strlen(o->pass) : 0;
    char *cred = uvmqtt__malloc(ul + pl + 2);
    auth = cred ? uvmqtt__malloc(4 * ((ul + pl + 3) / 3) + 1) : NULL;
    if (!auth) {
      uvmqtt__free(cred);
      return UVMQTT_ENOMEM;
    }
    memcpy(cred, o->user, ul);
    cred[ul] = ':';
    memcpy(cred + ul + 1, o->pass ? o->pass : "", pl);
    uvmqtt__base64_encode(cred, ul + pl + 1, auth);
    memset(cred, 0, ul + pl + 1);
    uvmqtt__free(cred);
    cap += strlen(auth);
  }
  char *r = uvmqtt__malloc(cap);
  if (!r) {
    uvmqtt__free(auth);
    return UVMQTT_ENOMEM;
  }
  const char *fmt = strchr(o->host, ':') ? "[%s]:%u" : "%s:%u";
  char target[300];
  if (hl > 255) {
    uvmqtt__free(auth);
    uvmqtt__free(r);
    return UVMQTT_EINVAL;
  }
  snprintf(target, sizeof(target), fmt, o->host, (unsigned)o->port);
  int n = snprintf(r, cap,
                   "CONNECT %s HTTP/1.1\r\n"
                   "Host: %s\r\n"
                   "%s%s%s"
                   "\r\n",
                   target, target, auth ? "Proxy-Authorization: Basic " : "",
                   auth ? auth : "", auth ? "\r\n" : "");
  if (auth) {
    memset(auth, 0, strlen(auth));
    uvmqtt__free(auth);
  }
  st->request = r;
  st->request_len = (size_t)n;
  return 0;
}

static void http_clear(void *vst) {
  http_st_t *st = vst;
  if (st->request) {
    memset(st->request, 0, st->request_len);
    uvmqtt__free(st->request);
  }
  st->request = NULL;
}

static int http_start(uvmqtt__proxy_t *p, void *vst) {
  http_st_t *st = vst;
  int rc = uvmqtt__proxy_send(p, st->request, st->request_len);
  /* The credentials need not stay in memory any longer. */
  http_clear(st);
  return rc;
}

/* A complete line (without its ending) of the current response. Returns
 * 0 to go on, 1 when the response header ended, or an error. */
static int http_line(uvmqtt__proxy_t *p, http_st_t *st) {
  size_t len = st->line_len;
  size_t keep = len < LINE_KEEP ? len : LINE_KEEP;
  if (keep > 0 && st->line[keep - 1] == '\r' && keep == len)
    len = --keep;
  const char *l = st->line;
  if (st->lines++ == 0) {
    st->status = uvmqtt__http_status_line(l, keep);
    if (st->status < 0) {
      uvmqtt__stream_log(uvmqtt__proxy_stream(p), UVMQTT_LOG_ERROR,
                         "http-proxy: not an HTTP status line: \"%.*s\"",
                         (int)(keep > 80 ? 80 : keep), l);
      return UVMQTT_EPROXY_PROTOCOL;
    }
    uvmqtt__proxy_set_code(p, st->status);
    /* 401 too: tinyproxy answers wrong credentials with it. */
    if (st->status == 407 || st->status == 401) {
      uvmqtt__stream_log(uvmqtt__proxy_stream(p), UVMQTT_LOG_ERROR,
                         "http-proxy: %.*s", (int)(keep > 80 ? 80 : keep), l);
      return UVMQTT_EPROXY_AUTH;
    }
    if (st->status >= 200 && st->status < 300)
      return 0;
    if (st->status >= 100 && st->status < 200 && st->status != 101)
      return 0; /* an interim response: the final one follows */
    uvmqtt__stream_log(uvmqtt__proxy_stream(p), UVMQTT_LOG_ERROR,
                       "http-proxy: CONNECT refused: \"%.*s\"",
                       (int)(keep > 80 ? 80 : keep), l);
    return UVMQTT_EPROXY_STATUS;
  }
  if (len == 0) {
    if (st->status >= 200)
      return 1;
    /* End of an interim response: read the next one. */
    st->lines = 0;
    st->total = 0;
    return 0;
  }
  /* A header field: "name:value". Folded lines are obsolete (RFC 9112
   * section 5.2) and a CONNECT reply has no use for them. */
  const char *colon = memchr(l, ':', keep);
  if (uvmqtt__http_is_ows(l[0]) || !colon || colon == l) {
    uvmqtt__stream_log(uvmqtt__proxy_stream(p), UVMQTT_LOG_ERROR,
                       "http-proxy: malformed header line \"%.*s\"",
                       (int)(keep > 80 ? 80 : keep), l);
    return UVMQTT_EPROXY_PROTOCOL;
  }
  return 0;
}

static int http_feed(uvmqtt__proxy_t *p, void *vst, const uint8_t *b, size_t n,
                     size_t *used) {
  http_st_t *st = vst;
  static const char prefix[] = "HTTP/";
  for (size_t i = 0; i < n; i++) {
    uint8_t c = b[i];
    if (++st->total > st->max_reply) {
      uvmqtt__stream_log(uvmqtt__proxy_stream(p), UVMQTT_LOG_ERROR,
                         "http-proxy: reply header longer than %zu bytes",
                         st->max_reply);
      return UVMQTT_EPROXY_TOOBIG;
    }
    /* Garbage is refused at its first byte, not at the limit. */
    if ((st->lines == 0 && st->line_len < sizeof(prefix) - 1 &&
         c != (uint8_t)prefix[st->line_len]) ||
        c == 0) {
      uvmqtt__stream_log(uvmqtt__proxy_stream(p), UVMQTT_LOG_ERROR,
                         "http-proxy: not an HTTP reply");
      return UVMQTT_EPROXY_PROTOCOL;
    }
    if (c != '\n') {
      if (st->line_len < LINE_KEEP)
        st->line[st->line_len] = (char)c;
      st->line_len++;
      continue;
    }
    int rc = http_line(p, st);
    st->line_len = 0;
    if (rc != 0) {
      *used = i + 1;
      return rc;
    }
  }
  *used = n;
  return 0;
}

static const uvmqtt__proxy_proto_t http_proto = {
    .ops = UVMQTT__PROXY_OPS("http-proxy"),
    .state_size = sizeof(http_st_t),
    .init = http_init,
    .clear = http_clear,
    .start = http_start,
    .feed = http_feed,
};

int uvmqtt__http_proxy_new(uvmqtt_stream_t *lower,
                           const uvmqtt_proxy_opts_t *opts,
                           uvmqtt_stream_t **out) {
  return uvmqtt__proxy_new(lower, &http_proto, opts, out);
}
