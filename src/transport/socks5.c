/* The SOCKS5 proxy layer (RFC 1928), with username/password authentication
 * (RFC 1929): greeting, optional authentication, CONNECT, each reply read
 * incrementally into a buffer of at most 262 bytes (the longest reply). A
 * host name goes to the proxy to resolve; an address literal goes as an
 * address. The pass-through after it is proxy.c's. */
#include <string.h>

#include "../alloc.h"
#include "proxy.h"
#include "uvmqtt/errors.h"
#include "uvmqtt/log.h"

enum { ST_METHOD, ST_AUTH, ST_CONNECT };

enum {
  M_NONE = 0x00,
  M_USERPASS = 0x02,
  M_REFUSED = 0xFF,
  ATYP_V4 = 0x01,
  ATYP_NAME = 0x03,
  ATYP_V6 = 0x04
};

typedef struct {
  int stage;
  size_t have, need; /* reply bytes collected, and needed so far */
  uint8_t reply[4 + 1 + 255 + 2];
  uint16_t port;
  uint8_t host_len, user_len, pass_len;
  uint8_t atyp;
  uint8_t addr[16]; /* the target address, for ATYP_V4 and ATYP_V6 */
  char *strings;    /* host, user, pass, back to back (not terminated) */
} socks_st_t;

static int socks_init(void *vst, const uvmqtt_proxy_opts_t *o) {
  socks_st_t *st = vst;
  size_t hl = strlen(o->host);
  size_t ul = o->user ? strlen(o->user) : 0;
  size_t pl = o->pass ? strlen(o->pass) : 0;
  /* RFC 1929: user and password of 1 to 255 bytes each. */
  if (hl > 255 || ul > 255 || pl > 255 || (o->user && ul == 0))
    return UVMQTT_EINVAL;
  if (uv_inet_pton(AF_INET, o->host, st->addr) == 0) {
    st->atyp = ATYP_V4;
  } else if (uv_inet_pton(AF_INET6, o->host, st->addr) == 0) {
    st->atyp = ATYP_V6;
  } else {
    st->atyp = ATYP_NAME;
  }
  st->strings = uvmqtt__malloc(hl + ul + pl + 1);
  if (!st->strings)
    return UVMQTT_ENOMEM;
  memcpy(st->strings, o->host, hl);
  memcpy(st->strings + hl, o->user ? o->user : "", ul);
  memcpy(st->strings + hl + ul, o->pass ? o->pass : "", pl);
  st->host_len = (uint8_t)hl;
  st->user_len = (uint8_t)ul;
  st->pass_len = (uint8_t)pl;
  st->port = o->port;
  return 0;
}

static void socks_clear(void *vst) {
  socks_st_t *st = vst;
  if (st->strings) {
    memset(st->strings, 0, (size_t)st->host_len + st->user_len + st->pass_len);
    uvmqtt__free(st->strings);
  }
  st->strings = NULL;
}

static void expect(socks_st_t *st, int stage, size_t need) {
  st->stage = stage;
  st->have = 0;
  st->need = need;
}

static int socks_start(uvmqtt__proxy_t *p, void *vst) {
  socks_st_t *st = vst;
  /* Offer user/password only with credentials: a proxy that wants them
   * then refuses every method we offer, which says so. */
  uint8_t greet[4] = {5, 1, M_NONE, 0};
  size_t n = 3;
  if (st->user_len) {
    greet[1] = 2;
    greet[3] = M_USERPASS;
    n = 4;
  }
  expect(st, ST_METHOD, 2);
  return uvmqtt__proxy_send(p, greet, n);
}

static int send_auth(uvmqtt__proxy_t *p, socks_st_t *st) {
  uint8_t m[3 + 255 + 255];
  size_t n = 0;
  m[n++] = 1; /* RFC 1929 version */
  m[n++] = st->user_len;
  memcpy(m + n, st->strings + st->host_len, st->user_len);
  n += st->user_len;
  m[n++] = st->pass_len;
  memcpy(m + n, st->strings + st->host_len + st->user_len, st->pass_len);
  n += st->pass_len;
  expect(st, ST_AUTH, 2);
  int rc = uvmqtt__proxy_send(p, m, n);
  memset(m, 0, n);
  return rc;
}

static int send_connect(uvmqtt__proxy_t *p, socks_st_t *st) {
  uint8_t m[4 + 1 + 255 + 2];
  size_t n = 0;
  m[n++] = 5;
  m[n++] = 1; /* CONNECT */
  m[n++] = 0;
  m[n++] = st->atyp;
  if (st->atyp == ATYP_NAME) {
    m[n++] = st->host_len;
    memcpy(m + n, st->strings, st->host_len);
    n += st->host_len;
  } else {
    size_t al = st->atyp == ATYP_V4 ? 4 : 16;
    memcpy(m + n, st->addr, al);
    n += al;
  }
  m[n++] = (uint8_t)(st->port >> 8);
  m[n++] = (uint8_t)st->port;
  /* VER and REP first: a refusal is known at its second byte. */
  expect(st, ST_CONNECT, 2);
  socks_clear(st); /* no credentials in memory any longer */
  return uvmqtt__proxy_send(p, m, n);
}

static int reply_error(int rep) {
  switch (rep) {
  case 1:
    return UVMQTT_ESOCKS_FAILURE;
  case 2:
    return UVMQTT_ESOCKS_NOTALLOWED;
  case 3:
    return UVMQTT_ESOCKS_NETUNREACH;
  case 4:
    return UVMQTT_ESOCKS_HOSTUNREACH;
  case 5:
    return UVMQTT_ESOCKS_REFUSED;
  case 6:
    return UVMQTT_ESOCKS_TTL;
  case 7:
    return UVMQTT_ESOCKS_CMD;
  case 8:
    return UVMQTT_ESOCKS_ATYP;
  default:
    return UVMQTT_EPROXY_PROTOCOL;
  }
}

/* A complete reply of the current stage (or its first part). Returns 0 to
 * go on, 1 when the tunnel is open, or an error. */
static int socks_reply(uvmqtt__proxy_t *p, socks_st_t *st) {
  const uint8_t *r = st->reply;
  switch (st->stage) {
  case ST_METHOD:
    if (r[0] != 5)
      break;
    if (r[1] == M_REFUSED) {
      uvmqtt__stream_log(uvmqtt__proxy_stream(p), UVMQTT_LOG_ERROR,
                         "socks5: %s",
                         st->user_len ? "no authentication method accepted"
                                      : "the proxy requires credentials");
      return st->user_len ? UVMQTT_ESOCKS_METHOD : UVMQTT_EPROXY_AUTH;
    }
    if (r[1] == M_USERPASS && st->user_len)
      return send_auth(p, st);
    if (r[1] == M_NONE)
      return send_connect(p, st);
    uvmqtt__stream_log(uvmqtt__proxy_stream(p), UVMQTT_LOG_ERROR,
                       "socks5: proxy chose method %u, "
                       "which was not offered",
                       r[1]);
    return UVMQTT_EPROXY_PROTOCOL;
  case ST_AUTH:
    if (r[0] != 1)
      break;
    if (r[1] != 0) {
      uvmqtt__stream_log(uvmqtt__proxy_stream(p), UVMQTT_LOG_ERROR,
                         "socks5: credentials refused");
      return UVMQTT_EPROXY_AUTH;
    }
    return send_connect(p, st);
  case ST_CONNECT:
    if (r[0] != 5)
      break;
    if (st->need == 2) {
      if (r[1] != 0) {
        uvmqtt__proxy_set_code(p, r[1]);
        int err = reply_error(r[1]);
        uvmqtt__stream_log(uvmqtt__proxy_stream(p), UVMQTT_LOG_ERROR,
                           "socks5: CONNECT refused (%u): %s", r[1],
                           uvmqtt_strerror(err));
        return err;
      }
      st->need = 5; /* RSV, ATYP and the first address byte */
      return 0;
    }
    if (st->need == 5) {
      size_t alen = r[3] == ATYP_V4 ? 4 : r[3] == ATYP_V6 ? 16 : 0;
      if (r[3] == ATYP_NAME)
        alen = 1 + (size_t)r[4];
      if (r[2] != 0 || alen == 0)
        break;
      st->need = 4 + alen + 2; /* then the bound address and port */
      return 0;
    }
    return 1;
  default:
    break;
  }
  uvmqtt__stream_log(uvmqtt__proxy_stream(p), UVMQTT_LOG_ERROR,
                     "socks5: not a SOCKS5 reply");
  return UVMQTT_EPROXY_PROTOCOL;
}

static int socks_feed(uvmqtt__proxy_t *p, void *vst, const uint8_t *b, size_t n,
                      size_t *used) {
  socks_st_t *st = vst;
  size_t i = 0;
  while (i < n) {
    size_t take = st->need - st->have;
    if (take > n - i)
      take = n - i;
    memcpy(st->reply + st->have, b + i, take);
    st->have += take;
    i += take;
    if (st->have < st->need)
      break;
    /* Fail as soon as a version or reply code is wrong, not at the end. */
    int rc = socks_reply(p, st);
    if (rc != 0) {
      *used = i;
      return rc;
    }
  }
  *used = i;
  return 0;
}

static const uvmqtt__proxy_proto_t socks5_proto = {
    .ops = UVMQTT__PROXY_OPS("socks5"),
    .state_size = sizeof(socks_st_t),
    .init = socks_init,
    .clear = socks_clear,
    .start = socks_start,
    .feed = socks_feed,
};

int uvmqtt__socks5_new(uvmqtt_stream_t *lower, const uvmqtt_proxy_opts_t *opts,
                       uvmqtt_stream_t **out) {
  return uvmqtt__proxy_new(lower, &socks5_proto, opts, out);
}
