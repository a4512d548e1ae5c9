/* Asynchronous name resolution on the loop; see resolve.h for the contract.
 *
 * How it fits together:
 * - Every request lives in one of two lists of its resolver: `pending`
 *   (waiting for a result, with a deadline) or `done` (result stored,
 *   waiting to be delivered). Results are always delivered from the
 *   resolver's uv_idle_t (or right after ares_process_fd returns), never
 *   from inside a start call and never from inside c-ares, so callbacks
 *   can do anything, including closing the resolver.
 * - A request is freed once both sides let go of it: the user side
 *   (callback delivered, cancelled, or resolver closed) and the backend
 *   (uv_getaddrinfo or c-ares still holding the pointer).
 * - c-ares tells us which sockets it wants watched through its
 *   sock_state_cb; each gets a uv_poll_t. Its retransmission timeouts run
 *   off one uv_timer_t armed from ares_timeout(). Overall deadlines run off
 *   a second timer.
 */
#include "resolve/resolve.h"

#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "uvmqtt/errors.h"
#include "uvmqtt_config.h"

#if UVMQTT_HAVE_SRV
#include <ares.h>
#include <arpa/nameser.h>
#endif

#define DEFAULT_TIMEOUT_MS 5000u
#define MAX_NAME_LEN UVMQTT_DNS_NAME_MAX

enum req_kind { REQ_LITERAL, REQ_UV, REQ_ARES_ADDR, REQ_SRV };
enum req_list { LIST_NONE, LIST_PENDING, LIST_DONE };

struct uvmqtt_resolve_req_s {
  uvmqtt_resolver_t *r; /* NULL once detached by uvmqtt__resolver_close */
  uvmqtt_resolve_req_t *prev, *next;
  enum req_kind kind;
  enum req_list list;
  bool user_done;    /* callback delivered or cancelled */
  bool backend_busy; /* uv_getaddrinfo / c-ares still holds this request */
  uvmqtt_addr_cb addr_cb;
  uvmqtt_srv_cb srv_cb;
  void *arg;
  uint64_t deadline; /* loop time, ms */
  uint16_t port;
  int status;
  struct sockaddr_storage *addrs;
  size_t naddrs;
  uvmqtt_srv_target_t *targets;
  size_t ntargets;
  uv_getaddrinfo_t gai;
};

typedef struct {
  uvmqtt_resolve_req_t *head, *tail;
} req_list_t;

#if UVMQTT_HAVE_SRV
typedef struct sock_watch_s {
  uv_poll_t poll;
  ares_socket_t fd;
  uvmqtt_resolver_t *r;
  struct sock_watch_s *next;
} sock_watch_t;
#endif

struct uvmqtt_resolver_s {
  uv_loop_t *loop;
  unsigned timeout_ms;
  char *servers; /* NULL: system configuration */
  req_list_t pending;
  req_list_t done;
  uv_idle_t deliver;     /* drains `done` */
  uv_timer_t deadline;   /* overall lookup timeouts */
  unsigned handles_open; /* handles not yet through their close callback */
  bool closing;
  void (*close_cb)(void *arg);
  void *close_arg;
  uint64_t rng;
#if UVMQTT_HAVE_SRV
  ares_channel channel; /* NULL until first needed */
  uv_timer_t ares_timer;
  bool ares_timer_init;
  sock_watch_t *watches;
#endif
};

/* ---- small helpers --------------------------------------------------------
 */

static void list_push(req_list_t *l, uvmqtt_resolve_req_t *q) {
  q->prev = l->tail;
  q->next = NULL;
  if (l->tail)
    l->tail->next = q;
  else
    l->head = q;
  l->tail = q;
}

static void list_remove(req_list_t *l, uvmqtt_resolve_req_t *q) {
  if (q->prev)
    q->prev->next = q->next;
  else
    l->head = q->next;
  if (q->next)
    q->next->prev = q->prev;
  else
    l->tail = q->prev;
  q->prev = q->next = NULL;
}

static void req_unlink(uvmqtt_resolve_req_t *q) {
  if (!q->r)
    return;
  if (q->list == LIST_PENDING)
    list_remove(&q->r->pending, q);
  else if (q->list == LIST_DONE)
    list_remove(&q->r->done, q);
  q->list = LIST_NONE;
}

static void free_targets(uvmqtt_srv_target_t *t, size_t n) {
  if (!t)
    return;
  for (size_t i = 0; i < n; i++)
    uvmqtt__free(t[i].host);
  uvmqtt__free(t);
}

static void req_free_results(uvmqtt_resolve_req_t *q) {
  uvmqtt__free(q->addrs);
  q->addrs = NULL;
  q->naddrs = 0;
  free_targets(q->targets, q->ntargets);
  q->targets = NULL;
  q->ntargets = 0;
}

/* Frees q when neither side needs it any more. */
static void req_maybe_free(uvmqtt_resolve_req_t *q) {
  if (q->user_done && !q->backend_busy) {
    req_free_results(q);
    uvmqtt__free(q);
  }
}

void uvmqtt__resolver_seed(uvmqtt_resolver_t *r, uint64_t seed) {
  r->rng = seed ? seed : 0x9E3779B97F4A7C15ull;
}

/* Copies an address list out of getaddrinfo-shaped results, keeping only
 * IPv4/IPv6 entries and setting the port. */
static int store_addrinfo(uvmqtt_resolve_req_t *q, const struct addrinfo *ai) {
  size_t n = 0;
  for (const struct addrinfo *p = ai; p; p = p->ai_next)
    if (p->ai_family == AF_INET || p->ai_family == AF_INET6)
      n++;
  if (n == 0)
    return UVMQTT_EDNS_NODATA;
  q->addrs = uvmqtt__calloc(n, sizeof(*q->addrs));
  if (!q->addrs)
    return UVMQTT_ENOMEM;
  for (const struct addrinfo *p = ai; p; p = p->ai_next) {
    struct sockaddr_storage *ss = &q->addrs[q->naddrs];
    if (p->ai_family == AF_INET &&
        p->ai_addrlen >= sizeof(struct sockaddr_in)) {
      memcpy(ss, p->ai_addr, sizeof(struct sockaddr_in));
      ((struct sockaddr_in *)ss)->sin_port = htons(q->port);
    } else if (p->ai_family == AF_INET6 &&
               p->ai_addrlen >= sizeof(struct sockaddr_in6)) {
      memcpy(ss, p->ai_addr, sizeof(struct sockaddr_in6));
      ((struct sockaddr_in6 *)ss)->sin6_port = htons(q->port);
    } else {
      continue;
    }
    q->naddrs++;
  }
  return q->naddrs ? 0 : UVMQTT_EDNS_NODATA;
}

/* ---- delivery -------------------------------------------------------------
 */

static void deliver_one(uvmqtt_resolve_req_t *q) {
  q->user_done = true;
  if (q->kind == REQ_SRV)
    q->srv_cb(q->status, q->status == 0 ? q->targets : NULL,
              q->status == 0 ? q->ntargets : 0, q->arg);
  else
    q->addr_cb(q->status, q->status == 0 ? q->addrs : NULL,
               q->status == 0 ? q->naddrs : 0, q->arg);
  req_maybe_free(q);
}

/* Delivers what is in `done` now; requests completed by these callbacks
 * wait for the next loop iteration so a callback that keeps starting
 * literal lookups cannot starve the loop. */
static void drain(uvmqtt_resolver_t *r) {
  uvmqtt_resolve_req_t *last = r->done.tail;
  while (!r->closing && r->done.head) {
    uvmqtt_resolve_req_t *q = r->done.head;
    bool was_last = q == last;
    list_remove(&r->done, q);
    q->list = LIST_NONE;
    deliver_one(q);
    if (was_last)
      break;
  }
  if (!r->closing && !r->done.head)
    uv_idle_stop(&r->deliver);
}

static void deliver_cb(uv_idle_t *h) {
  drain(h->data);
}

/* Moves q from `pending` to `done` with the given status. */
static void complete(uvmqtt_resolve_req_t *q, int status) {
  uvmqtt_resolver_t *r = q->r;
  req_unlink(q);
  q->status = status;
  if (status != 0)
    req_free_results(q);
  q->list = LIST_DONE;
  list_push(&r->done, q);
  uv_idle_start(&r->deliver, deliver_cb);
}

/* ---- overall deadlines ----------------------------------------------------
 */

static void deadline_cb(uv_timer_t *t);

static void deadline_arm(uvmqtt_resolver_t *r) {
  uint64_t next = UINT64_MAX;
  for (uvmqtt_resolve_req_t *q = r->pending.head; q; q = q->next)
    if (q->deadline < next)
      next = q->deadline;
  if (next == UINT64_MAX) {
    uv_timer_stop(&r->deadline);
    return;
  }
  uint64_t now = uv_now(r->loop);
  uv_timer_start(&r->deadline, deadline_cb, next > now ? next - now : 0, 0);
}

static void deadline_cb(uv_timer_t *t) {
  uvmqtt_resolver_t *r = t->data;
  uint64_t now = uv_now(r->loop);
  uvmqtt_resolve_req_t *q = r->pending.head;
  while (q) {
    uvmqtt_resolve_req_t *next = q->next;
    if (q->deadline <= now) {
      /* The backend keeps the request until it lets go; its late result
       * is then swallowed because user_done will be set on delivery. */
      if (q->kind == REQ_UV)
        uv_cancel((uv_req_t *)&q->gai);
      complete(q, UVMQTT_EDNS_TIMEOUT);
    }
    q = next;
  }
  deadline_arm(r);
  drain(r);
}

static void start_pending(uvmqtt_resolver_t *r, uvmqtt_resolve_req_t *q) {
  q->deadline = uv_now(r->loop) + r->timeout_ms;
  q->list = LIST_PENDING;
  list_push(&r->pending, q);
  deadline_arm(r);
}

/* ---- c-ares on the loop ---------------------------------------------------
 */

#if UVMQTT_HAVE_SRV

static uint64_t rng_next(uvmqtt_resolver_t *r) {
  /* xorshift64*: fast and good enough for spreading load over targets. */
  uint64_t x = r->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  r->rng = x;
  return x * 0x2545F4914F6CDD1Dull;
}

static uint32_t rng_u32(void *arg) {
  return (uint32_t)(rng_next(arg) >> 32);
}

static void ares_timer_cb(uv_timer_t *t);

/* Arms the c-ares timer from ares_timeout(); call after every entry into
 * c-ares. */
static void ares_reschedule(uvmqtt_resolver_t *r) {
  struct timeval tv;
  if (!r->channel)
    return;
  struct timeval *tvp = ares_timeout(r->channel, NULL, &tv);
  if (!tvp) {
    uv_timer_stop(&r->ares_timer);
    return;
  }
  uint64_t ms =
      (uint64_t)tvp->tv_sec * 1000u + ((uint64_t)tvp->tv_usec + 999u) / 1000u;
  uv_timer_start(&r->ares_timer, ares_timer_cb, ms, 0);
}

static void ares_timer_cb(uv_timer_t *t) {
  uvmqtt_resolver_t *r = t->data;
  ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  ares_reschedule(r);
  drain(r);
}

static void watch_close_cb(uv_handle_t *h) {
  sock_watch_t *w = h->data;
  uvmqtt_resolver_t *r = w->r;
  uvmqtt__free(w);
  r->handles_open--;
  if (r->closing && r->handles_open == 0) {
    void (*cb)(void *) = r->close_cb;
    void *arg = r->close_arg;
    uvmqtt__free(r);
    if (cb)
      cb(arg);
  }
}

static void watch_poll_cb(uv_poll_t *h, int status, int events) {
  sock_watch_t *w = h->data;
  uvmqtt_resolver_t *r = w->r;
  ares_socket_t fd = w->fd;
  ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;
  if (status < 0) {
    /* Let c-ares run into the socket error itself. */
    rfd = wfd = fd;
  } else {
    if (events & UV_READABLE)
      rfd = fd;
    if (events & UV_WRITABLE)
      wfd = fd;
  }
  /* w may be closed (not freed) by sock_state_cb during this call. */
  ares_process_fd(r->channel, rfd, wfd);
  ares_reschedule(r);
  drain(r);
}

static void watch_close(uvmqtt_resolver_t *r, sock_watch_t *w) {
  sock_watch_t **pp = &r->watches;
  while (*pp && *pp != w)
    pp = &(*pp)->next;
  if (*pp)
    *pp = w->next;
  /* uv_close stops polling at once, before c-ares closes the descriptor,
   * so a reused descriptor number is never confused with this one. */
  uv_close((uv_handle_t *)&w->poll, watch_close_cb);
}

static void sock_state_cb(void *data, ares_socket_t fd, int readable,
                          int writable) {
  uvmqtt_resolver_t *r = data;
  sock_watch_t *w = r->watches;
  while (w && w->fd != fd)
    w = w->next;
  if (r->closing)
    return; /* every watch was closed before ares_destroy */
  if (!readable && !writable) {
    if (w)
      watch_close(r, w);
    return;
  }
  if (!w) {
    w = uvmqtt__calloc(1, sizeof(*w));
    if (!w)
      return; /* the lookup runs into its deadline */
    if (uv_poll_init_socket(r->loop, &w->poll, fd) != 0) {
      uvmqtt__free(w);
      return;
    }
    w->fd = fd;
    w->r = r;
    w->poll.data = w;
    w->next = r->watches;
    r->watches = w;
    r->handles_open++;
  }
  int events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
  if (uv_poll_start(&w->poll, events, watch_poll_cb) != 0)
    watch_close(r, w);
}

static int ares_setup(uvmqtt_resolver_t *r) {
  struct ares_options opt;
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
  if (r->channel)
    return 0;
  memset(&opt, 0, sizeof(opt));
  opt.sock_state_cb = sock_state_cb;
  opt.sock_state_cb_data = r;
  /* c-ares doubles the per-try timeout each round: with 3 tries the total
   * is about 7 times the first one, so that sum fits the overall timeout
   * for one server. The overall deadline is enforced separately. */
  unsigned per_try = r->timeout_ms / 7;
  if (per_try < 50)
    per_try = 50;
  if (per_try > 5000)
    per_try = 5000;
  opt.timeout = (int)per_try;
  opt.tries = 3;
  int rc = ares_init_options(&r->channel, &opt, mask);
  if (rc != ARES_SUCCESS) {
    r->channel = NULL;
    return rc == ARES_ENOMEM ? UVMQTT_ENOMEM : UVMQTT_EDNS;
  }
  if (r->servers) {
    rc = ares_set_servers_ports_csv(r->channel, r->servers);
    if (rc != ARES_SUCCESS) {
      ares_destroy(r->channel);
      r->channel = NULL;
      return rc == ARES_ENOMEM ? UVMQTT_ENOMEM : UVMQTT_EINVAL;
    }
  }
  if (!r->ares_timer_init) {
    uv_timer_init(r->loop, &r->ares_timer);
    r->ares_timer.data = r;
    r->ares_timer_init = true;
    r->handles_open++;
  }
  return 0;
}

static int map_ares(int st) {
  switch (st) {
  case ARES_SUCCESS:
    return 0;
  case ARES_ENOTFOUND:
    return UVMQTT_EDNS_NXDOMAIN;
  case ARES_ENODATA:
    return UVMQTT_EDNS_NODATA;
  case ARES_ETIMEOUT:
    return UVMQTT_EDNS_TIMEOUT;
  case ARES_ENOMEM:
    return UVMQTT_ENOMEM;
  case ARES_EBADNAME:
    return UVMQTT_EINVAL;
  default:
    return UVMQTT_EDNS;
  }
}

/* Called by c-ares, possibly from inside ares_getaddrinfo, ares_process_fd
 * or ares_destroy; only stores the result. */
static void ares_addr_done(void *arg, int status, int timeouts,
                           struct ares_addrinfo *res) {
  uvmqtt_resolve_req_t *q = arg;
  (void)timeouts;
  q->backend_busy = false;
  if (q->user_done || q->list != LIST_PENDING) {
    if (res)
      ares_freeaddrinfo(res);
    req_maybe_free(q);
    return;
  }
  int st = map_ares(status);
  if (st == 0) {
    /* ares_addrinfo_node starts like struct addrinfo's address fields but
     * is not the same type; copy through a small shim. */
    size_t n = 0;
    for (struct ares_addrinfo_node *p = res ? res->nodes : NULL; p;
         p = p->ai_next)
      if (p->ai_family == AF_INET || p->ai_family == AF_INET6)
        n++;
    if (n == 0) {
      st = UVMQTT_EDNS_NODATA;
    } else if (!(q->addrs = uvmqtt__calloc(n, sizeof(*q->addrs)))) {
      st = UVMQTT_ENOMEM;
    } else {
      for (struct ares_addrinfo_node *p = res->nodes; p; p = p->ai_next) {
        struct sockaddr_storage *ss = &q->addrs[q->naddrs];
        if (p->ai_family == AF_INET &&
            p->ai_addrlen >= (int)sizeof(struct sockaddr_in)) {
          memcpy(ss, p->ai_addr, sizeof(struct sockaddr_in));
          ((struct sockaddr_in *)ss)->sin_port = htons(q->port);
        } else if (p->ai_family == AF_INET6 &&
                   p->ai_addrlen >= (int)sizeof(struct sockaddr_in6)) {
          memcpy(ss, p->ai_addr, sizeof(struct sockaddr_in6));
          ((struct sockaddr_in6 *)ss)->sin6_port = htons(q->port);
        } else {
          continue;
        }
        q->naddrs++;
      }
    }
  }
  if (res)
    ares_freeaddrinfo(res);
  complete(q, st);
}

static int srv_store(uvmqtt_resolve_req_t *q, const unsigned char *abuf,
                     int alen) {
  struct ares_srv_reply *srv = NULL;
  int rc = ares_parse_srv_reply(abuf, alen, &srv);
  if (rc != ARES_SUCCESS)
    return rc == ARES_ENODATA ? UVMQTT_EDNS_NODATA : map_ares(rc);
  size_t n = 0;
  for (struct ares_srv_reply *p = srv; p; p = p->next)
    n++;
  int st = 0;
  if (n == 0) {
    st = UVMQTT_EDNS_NODATA;
  } else if (n == 1 && (srv->host[0] == '\0' || strcmp(srv->host, ".") == 0)) {
    st = UVMQTT_EDNS_NODATA; /* RFC 2782: service decidedly not available */
  } else if (!(q->targets = uvmqtt__calloc(n, sizeof(*q->targets)))) {
    st = UVMQTT_ENOMEM;
  } else {
    for (struct ares_srv_reply *p = srv; p; p = p->next) {
      uvmqtt_srv_target_t *t = &q->targets[q->ntargets];
      if (p->host[0] == '\0' || strcmp(p->host, ".") == 0)
        continue; /* "." mixed with real targets: skip it */
      if (!(t->host = uvmqtt__strdup(p->host))) {
        st = UVMQTT_ENOMEM;
        break;
      }
      t->port = p->port;
      t->priority = p->priority;
      t->weight = p->weight;
      q->ntargets++;
    }
    if (st == 0 && q->ntargets == 0)
      st = UVMQTT_EDNS_NODATA;
    if (st == 0 && q->r)
      uvmqtt__srv_order(q->targets, q->ntargets, rng_u32, q->r);
  }
  ares_free_data(srv);
  return st;
}

static void ares_srv_done(void *arg, int status, int timeouts,
                          unsigned char *abuf, int alen) {
  uvmqtt_resolve_req_t *q = arg;
  (void)timeouts;
  q->backend_busy = false;
  if (q->user_done || q->list != LIST_PENDING) {
    req_maybe_free(q);
    return;
  }
  int st = map_ares(status);
  if (st == 0)
    st = srv_store(q, abuf, alen);
  complete(q, st);
}

#endif /* UVMQTT_HAVE_SRV */

/* ---- resolver lifecycle ---------------------------------------------------
 */

static void base_close_cb(uv_handle_t *h) {
  uvmqtt_resolver_t *r = h->data;
  r->handles_open--;
  if (r->closing && r->handles_open == 0) {
    void (*cb)(void *) = r->close_cb;
    void *arg = r->close_arg;
    uvmqtt__free(r);
    if (cb)
      cb(arg);
  }
}

int uvmqtt__resolver_new(uv_loop_t *loop, const char *servers,
                         unsigned timeout_ms, uvmqtt_resolver_t **out) {
  if (!loop || !out)
    return UVMQTT_EINVAL;
  *out = NULL;
  if (servers && !*servers)
    return UVMQTT_EINVAL;
#if !UVMQTT_HAVE_SRV
  if (servers)
    return UVMQTT_ENOTSUP;
#endif
  uvmqtt_resolver_t *r = uvmqtt__calloc(1, sizeof(*r));
  if (!r)
    return UVMQTT_ENOMEM;
  r->loop = loop;
  r->timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
  if (servers && !(r->servers = uvmqtt__strdup(servers))) {
    uvmqtt__free(r);
    return UVMQTT_ENOMEM;
  }
  /* Not security relevant: it only spreads clients over SRV targets. */
  uvmqtt__resolver_seed(r, uv_hrtime() ^ ((uint64_t)(uintptr_t)r << 16) ^
                               ((uint64_t)uv_os_getpid() << 40));
#if UVMQTT_HAVE_SRV
  if (r->servers) {
    /* Set c-ares up now so a bad server list fails here. */
    int rc = ares_setup(r);
    if (rc != 0) {
      uvmqtt__free(r->servers);
      uvmqtt__free(r);
      return rc;
    }
  }
#endif
  /* Timer and idle init cannot fail on Unix. */
  uv_idle_init(loop, &r->deliver);
  r->deliver.data = r;
  uv_timer_init(loop, &r->deadline);
  r->deadline.data = r;
  r->handles_open += 2;
  *out = r;
  return 0;
}

/* Drops every request of r from the user's side without calling back. */
static void cancel_all(uvmqtt_resolver_t *r, req_list_t *l) {
  while (l->head) {
    uvmqtt_resolve_req_t *q = l->head;
    list_remove(l, q);
    q->list = LIST_NONE;
    q->user_done = true;
    q->r = NULL;
    req_free_results(q);
    if (q->kind == REQ_UV && q->backend_busy)
      uv_cancel((uv_req_t *)&q->gai);
    req_maybe_free(q);
  }
  (void)r;
}

void uvmqtt__resolver_close(uvmqtt_resolver_t *r, void (*close_cb)(void *arg),
                            void *arg) {
  if (!r || r->closing)
    return;
  r->closing = true;
  r->close_cb = close_cb;
  r->close_arg = arg;
  cancel_all(r, &r->pending);
  cancel_all(r, &r->done);
#if UVMQTT_HAVE_SRV
  /* Stop watching c-ares's sockets before it closes them. */
  while (r->watches) {
    sock_watch_t *w = r->watches;
    r->watches = w->next;
    uv_close((uv_handle_t *)&w->poll, watch_close_cb);
  }
  if (r->channel) {
    /* Calls ares_addr_done / ares_srv_done with ARES_EDESTRUCTION for the
     * queries still running; those requests are user_done and get freed. */
    ares_destroy(r->channel);
    r->channel = NULL;
  }
  if (r->ares_timer_init)
    uv_close((uv_handle_t *)&r->ares_timer, base_close_cb);
#endif
  uvmqtt__free(r->servers);
  r->servers = NULL;
  uv_close((uv_handle_t *)&r->deliver, base_close_cb);
  uv_close((uv_handle_t *)&r->deadline, base_close_cb);
}

/* ---- address lookups ------------------------------------------------------
 */

static void uv_addr_done(uv_getaddrinfo_t *g, int status,
                         struct addrinfo *res) {
  uvmqtt_resolve_req_t *q = g->data;
  uvmqtt_resolver_t *r = q->r;
  q->backend_busy = false;
  if (q->user_done || q->list != LIST_PENDING) {
    uv_freeaddrinfo(res);
    req_maybe_free(q);
    return;
  }
  int st;
  switch (status) {
  case 0:
    st = store_addrinfo(q, res);
    break;
  case UV_EAI_NONAME:
    st = UVMQTT_EDNS_NXDOMAIN;
    break;
#ifdef UV_EAI_NODATA
  case UV_EAI_NODATA:
    st = UVMQTT_EDNS_NODATA;
    break;
#endif
  case UV_EAI_MEMORY:
    st = UVMQTT_ENOMEM;
    break;
  default:
    st = status; /* other UV_EAI_* pass through, as documented */
    break;
  }
  uv_freeaddrinfo(res);
  complete(q, st);
  drain(r);
}

/* Copies host into buf without IPv6 brackets; false when it does not fit. */
static bool strip_brackets(const char *host, char *buf, size_t cap) {
  size_t len = strlen(host);
  if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
    host++;
    len -= 2;
  }
  if (len == 0 || len >= cap)
    return false;
  memcpy(buf, host, len);
  buf[len] = '\0';
  return true;
}

static uvmqtt_resolve_req_t *req_new(uvmqtt_resolver_t *r, enum req_kind k,
                                     void *arg) {
  uvmqtt_resolve_req_t *q = uvmqtt__calloc(1, sizeof(*q));
  if (!q)
    return NULL;
  q->r = r;
  q->kind = k;
  q->arg = arg;
  return q;
}

int uvmqtt__resolve_addr(uvmqtt_resolver_t *r, const char *host, uint16_t port,
                         uvmqtt_addr_cb cb, void *arg,
                         uvmqtt_resolve_req_t **req) {
  char name[MAX_NAME_LEN + 1];
  if (req)
    *req = NULL;
  if (!r || !host || !cb || !strip_brackets(host, name, sizeof(name)))
    return UVMQTT_EINVAL;
  if (r->closing)
    return UVMQTT_ESTATE;

  /* Literal addresses: no lookup at all. AI_NUMERICHOST never touches the
   * network or NSS; it also accepts IPv6 scope ids ("fe80::1%eth0"). */
  struct addrinfo hints, *lit = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST;
  if (getaddrinfo(name, NULL, &hints, &lit) == 0) {
    uvmqtt_resolve_req_t *q = req_new(r, REQ_LITERAL, arg);
    if (!q) {
      freeaddrinfo(lit);
      return UVMQTT_ENOMEM;
    }
    q->addr_cb = cb;
    q->port = port;
    int st = store_addrinfo(q, lit);
    freeaddrinfo(lit);
    if (st == UVMQTT_ENOMEM) {
      uvmqtt__free(q);
      return st;
    }
    complete(q, st); /* delivered from the idle handle */
    if (req)
      *req = q;
    return 0;
  }
  if (strchr(name, ':'))
    return UVMQTT_EINVAL; /* bracketed or colon-bearing but not an IPv6 */

#if UVMQTT_HAVE_SRV
  if (r->servers) {
    uvmqtt_resolve_req_t *q = req_new(r, REQ_ARES_ADDR, arg);
    if (!q)
      return UVMQTT_ENOMEM;
    q->addr_cb = cb;
    q->port = port;
    struct ares_addrinfo_hints ah;
    memset(&ah, 0, sizeof(ah));
    ah.ai_family = AF_UNSPEC;
    ah.ai_socktype = SOCK_STREAM;
    start_pending(r, q);
    q->backend_busy = true;
    /* May call ares_addr_done at once (hosts file, bad name); that only
     * moves q to `done`. */
    ares_getaddrinfo(r->channel, name, NULL, &ah, ares_addr_done, q);
    ares_reschedule(r);
    if (req)
      *req = q;
    return 0;
  }
#endif

  uvmqtt_resolve_req_t *q = req_new(r, REQ_UV, arg);
  if (!q)
    return UVMQTT_ENOMEM;
  q->addr_cb = cb;
  q->port = port;
  q->gai.data = q;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(r->loop, &q->gai, uv_addr_done, name, NULL, &hints);
  if (rc != 0) {
    uvmqtt__free(q);
    return rc;
  }
  q->backend_busy = true;
  start_pending(r, q);
  if (req)
    *req = q;
  return 0;
}

/* ---- SRV lookups ----------------------------------------------------------
 */

int uvmqtt__resolve_srv(uvmqtt_resolver_t *r, const char *name,
                        uvmqtt_srv_cb cb, void *arg,
                        uvmqtt_resolve_req_t **req) {
  if (req)
    *req = NULL;
  if (!r || !name || !*name || !cb || strlen(name) > MAX_NAME_LEN)
    return UVMQTT_EINVAL;
  if (r->closing)
    return UVMQTT_ESTATE;
#if UVMQTT_HAVE_SRV
  int rc = ares_setup(r);
  if (rc != 0)
    return rc;
  uvmqtt_resolve_req_t *q = req_new(r, REQ_SRV, arg);
  if (!q)
    return UVMQTT_ENOMEM;
  q->srv_cb = cb;
  start_pending(r, q);
  q->backend_busy = true;
  ares_query(r->channel, name, ns_c_in, ns_t_srv, ares_srv_done, q);
  ares_reschedule(r);
  if (req)
    *req = q;
  return 0;
#else
  (void)arg;
  return UVMQTT_ENOTSUP;
#endif
}

void uvmqtt__resolve_cancel(uvmqtt_resolve_req_t *q) {
  if (!q || q->user_done)
    return;
  req_unlink(q);
  q->user_done = true;
  req_free_results(q);
  if (q->kind == REQ_UV && q->backend_busy)
    uv_cancel(
        (uv_req_t *)&q->gai); /* if it is running, its result is dropped */
  /* A c-ares query cannot be cancelled alone: it finishes (or times out)
   * and ares_*_done frees the request. */
  req_maybe_free(q);
}
