/* Where a client connects: parsing broker URIs
 * (scheme://[user[:pass]@]host[:port][/path]) and v5 Server References
 * ("host[:port]") with one host:port parser, the default port of each
 * scheme, and a client's server list, kept as one allocation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "client/client_int.h"

void uvmqtt__servers_free(uvmqtt_client_t *c) {
  uvmqtt__free(c->servers);
  c->servers = NULL;
}

/* Frees the strings of a server parsed by uvmqtt__parse_uri(). */
void uvmqtt__server_clear(server_spec_t *sv) {
  uvmqtt__free(sv->host);
  uvmqtt__free(sv->path);
  uvmqtt__free(sv->user);
  uvmqtt__free(sv->pass);
}

static size_t str_size(const char *s) {
  return s ? strlen(s) + 1 : 0;
}

static void str_put(char *base, size_t *off, const char *s) {
  size_t n = strlen(s) + 1;
  memcpy(base + *off, s, n);
  *off += n;
}

/* Copies n servers and their strings into one allocation. NULL: ENOMEM. */
server_list_t *uvmqtt__servers_pack(const server_spec_t *src, size_t n) {
  size_t size = offsetof(server_list_t, v) + n * sizeof(server_t);
  for (size_t i = 0; i < n; i++)
    size += str_size(src[i].host) + str_size(src[i].path) +
            str_size(src[i].user) + str_size(src[i].pass);
  server_list_t *l =
      size <= UINT32_MAX && n <= UINT16_MAX ? uvmqtt__malloc(size) : NULL;
  if (!l)
    return NULL;
  l->n = (uint16_t)n;
  l->cur = 0;
  server_t *v = l->v;
  size_t off = offsetof(server_list_t, v) + n * sizeof(server_t);
  for (size_t i = 0; i < n; i++) {
    const char *str[4] = {src[i].host, src[i].path, src[i].user, src[i].pass};
    v[i].port = src[i].port;
    v[i].scheme = src[i].scheme;
    v[i].strs = (uint32_t)off;
    v[i].flags = (uint8_t)((src[i].has_user ? SV_HAS_USER : 0) |
                           (src[i].has_pass ? SV_HAS_PASS : 0));
    for (int k = 0; k < 4; k++) {
      if (str[k]) {
        v[i].flags |= (uint8_t)(SV_HOST << k);
        str_put((char *)l, &off, str[k]);
      }
    }
  }
  return l;
}

/* Server i of the client's list, its strings pointing into the list. */
server_spec_t uvmqtt__server_at(const uvmqtt_client_t *c, size_t i) {
  const server_t *s = &c->servers->v[i];
  char *p = (char *)c->servers + s->strs;
  char *str[4];
  for (int k = 0; k < 4; k++) {
    str[k] = NULL;
    if (s->flags & (SV_HOST << k)) {
      str[k] = p;
      p += strlen(p) + 1;
    }
  }
  server_spec_t sp;
  sp.host = str[0];
  sp.path = str[1];
  sp.user = str[2];
  sp.pass = str[3];
  sp.port = s->port;
  sp.scheme = s->scheme;
  sp.has_user = (s->flags & SV_HAS_USER) != 0;
  sp.has_pass = (s->flags & SV_HAS_PASS) != 0;
  return sp;
}

uint16_t uvmqtt__default_port(const uvmqtt_client_t *c, int scheme) {
  switch (scheme) {
  case S_MQTTS:
    return 8883;
  case S_WS:
    return 80;
  case S_WSS:
    return 443;
  default:
    return CX(c)->tls_for_tcp ? 8883 : 1883;
  }
}

static int pct_decode(char *s) {
  char *w = s;
  for (char *r = s; *r; r++) {
    if (*r == '%') {
      int hi, lo;
      if (sscanf(r + 1, "%1x%1x", (unsigned *)&hi, (unsigned *)&lo) != 2)
        return UVMQTT_EURI;
      *w++ = (char)(hi * 16 + lo);
      r += 2;
    } else {
      *w++ = *r;
    }
  }
  *w = '\0';
  return 0;
}

/* Parses host[:port] in [p, end) into an allocated *host and *port (0
 * when absent): "[...]" brackets an IPv6 literal; with bare_v6, a host
 * with more than one ':' is an IPv6 literal without a port. UVMQTT_EURI:
 * no host, or a port not in 1..65535; UVMQTT_ENOMEM. */
static int hostport_parse(const char *p, const char *end, bool bare_v6,
                          char **host, uint16_t *port) {
  const char *hend;
  const char *portp = NULL;
  char *h;
  *host = NULL;
  *port = 0;
  if (p < end && *p == '[') {
    hend = memchr(p, ']', (size_t)(end - p));
    if (!hend)
      return UVMQTT_EURI;
    if (hend + 1 < end) {
      if (hend[1] != ':')
        return UVMQTT_EURI;
      portp = hend + 2;
    }
    h = uvmqtt__strndup(p + 1, (size_t)(hend - p - 1));
  } else {
    hend = memchr(p, ':', (size_t)(end - p));
    if (hend && bare_v6 && memchr(hend + 1, ':', (size_t)(end - hend - 1)))
      hend = NULL;
    if (hend)
      portp = hend + 1;
    else
      hend = end;
    h = uvmqtt__strndup(p, (size_t)(hend - p));
  }
  if (!h)
    return UVMQTT_ENOMEM;
  if (!*h) {
    uvmqtt__free(h);
    return UVMQTT_EURI;
  }
  if (portp) {
    char *e;
    long n = strtol(portp, &e, 10);
    if (e != end || n <= 0 || n > 65535) {
      uvmqtt__free(h);
      return UVMQTT_EURI;
    }
    *port = (uint16_t)n;
  }
  *host = h;
  return 0;
}

/* Parses scheme://[user[:pass]@]host[:port][/path], or unix://path and
 * ws+unix://path. The proxy schemes parse too: callers check which they
 * take. */
int uvmqtt__parse_uri(const uvmqtt_client_t *c, const char *uri,
                      server_spec_t *sv) {
  static const struct {
    const char *name;
    int scheme;
  } schemes[] = {{"mqtt://", S_MQTT},
                 {"tcp://", S_MQTT},
                 {"mqtts://", S_MQTTS},
                 {"ssl://", S_MQTTS},
                 {"ws://", S_WS},
                 {"wss://", S_WSS},
                 {"unix://", S_UNIX},
                 {"ws+unix://", S_WS_UNIX},
                 {"http://", S_PROXY_HTTP},
                 {"socks5://", S_PROXY_SOCKS5},
                 {"socks5h://", S_PROXY_SOCKS5H}};
  memset(sv, 0, sizeof(*sv));
  const char *p = NULL;
  for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
    size_t n = strlen(schemes[i].name);
    if (strncasecmp(uri, schemes[i].name, n) == 0) {
      sv->scheme = schemes[i].scheme;
      p = uri + n;
      break;
    }
  }
  if (!p)
    return UVMQTT_EURI;
#if !UVMQTT_HAVE_TLS
  if (sv->scheme == S_MQTTS || sv->scheme == S_WSS)
    return UVMQTT_ENOTSUP;
#endif
#if !UVMQTT_HAVE_WS
  if (sv->scheme == S_WS || sv->scheme == S_WSS || sv->scheme == S_WS_UNIX)
    return UVMQTT_ENOTSUP;
#endif
  (void)c;
  if (sv->scheme == S_UNIX || sv->scheme == S_WS_UNIX) {
    /* The rest is the socket's path ("@name": abstract), %-decoded; no
     * credentials, port or request path. */
    sv->host = uvmqtt__strndup(p, strcspn(p, "?#"));
    if (!sv->host)
      return UVMQTT_ENOMEM;
    if (!*sv->host || pct_decode(sv->host)) {
      uvmqtt__server_clear(sv);
      memset(sv, 0, sizeof(*sv));
      return UVMQTT_EURI;
    }
    return 0;
  }
  const char *end = p + strcspn(p, "/?#");
  const char *at = NULL;
  for (const char *q = p; q < end; q++)
    if (*q == '@')
      at = q;
  int rc = UVMQTT_ENOMEM;
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    size_t ulen = (size_t)((colon ? colon : at) - p);
    sv->user = uvmqtt__strndup(p, ulen);
    sv->has_user = true;
    if (!sv->user)
      goto fail;
    if (pct_decode(sv->user))
      goto bad;
    if (colon) {
      sv->pass = uvmqtt__strndup(colon + 1, (size_t)(at - colon - 1));
      sv->has_pass = true;
      if (!sv->pass)
        goto fail;
      if (pct_decode(sv->pass))
        goto bad;
    }
    p = at + 1;
  }
  rc = hostport_parse(p, end, false, &sv->host, &sv->port);
  if (rc == UVMQTT_EURI)
    goto bad;
  if (rc < 0)
    goto fail;
  rc = UVMQTT_ENOMEM;
  if ((sv->scheme == S_WS || sv->scheme == S_WSS) && *end == '/') {
    sv->path = uvmqtt__strdup(end);
    if (!sv->path)
      goto fail;
  }
  return 0;
bad:
  rc = UVMQTT_EURI;
fail:
  uvmqtt__server_clear(sv);
  memset(sv, 0, sizeof(*sv));
  return rc;
}

/* A v5 Server Reference: "host[:port]", the first of a space-separated
 * list; a bare IPv6 literal is taken as a host. */
int uvmqtt__server_ref_parse(const char *ref, char **host, uint16_t *port) {
  return hostport_parse(ref, ref + strcspn(ref, " "), true, host, port);
}
