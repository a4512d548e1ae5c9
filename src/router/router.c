/* The topic-filter router: a trie keyed by topic level.
 *
 * Each node stands for a filter prefix. Its literal children sit in an
 * open-addressing hash table (linear probing, backward-shift deletion), its
 * '+' child in a pointer of its own, and the routes whose key ends at the
 * node ("a/b") or continues with '#' ("a/b/#") in two lists, oldest first.
 * Keys are filters without their "$share/<group>/" prefix, so a filter and
 * its shared forms live on one list as distinct routes.
 *
 * Mutation during a match: nothing is freed while a walk runs. A removed
 * route is marked dead (walks skip it) and queued; the outermost match
 * releases the queue and prunes the nodes it empties. Routes carry a
 * creation sequence number; a walk skips routes created after it started.
 * Hash tables may be rebuilt during a walk, which is safe because a walk
 * never keeps a pointer into a table across a callback; nodes are stable.
 *
 * The walk itself is iterative and needs no stack: nodes know their parent
 * and the topic position of a level is found again by scanning back to the
 * previous '/', so a deep topic cannot exhaust the C stack.
 */
#include "uvmqtt/router.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "router_int.h"
#include "topic_int.h"
#include "uvmqtt/errors.h"

typedef struct node_s node_t;
typedef struct route_s route_t;

/* A hash-table slot: the child's hash sits beside the pointer so a probe
 * reads one cache line and touches no child that does not match. */
typedef struct {
  node_t *c;
  uint32_t hv;
} slot_t;

struct route_s {
  route_t *next; /* on the node's list, oldest first */
  union {
    void *value;  /* live route */
    node_t *node; /* dead route: the node whose list still holds it */
  } u;
  union {
    uint64_t seq;       /* live route: creation order */
    route_t *next_dead; /* dead route: the router's release queue */
  } s;
  uint16_t len; /* of the full filter; filters are at most 65535 bytes */
  uint8_t dead;
  char filter[]; /* the full filter, not NUL-terminated */
};

/* A node's level is identified by its length, its first 8 bytes packed
 * into a word (w, see level_key) and, beyond 8 bytes, the rest in seg; the
 * word compares most levels in one instruction. The fields a walk reads
 * come first. */
struct node_s {
  route_t *hroutes; /* routes whose key is this prefix + "/#" */
  route_t *routes;  /* routes whose key ends here */
  union {
    node_t *one;  /* tcap == 1 */
    slot_t *tab;  /* tcap >= 4 */
  } ch;           /* literal children, see below */
  node_t *plus;   /* the '+' child */
  uint64_t w;     /* the level's first 8 bytes */
  node_t *parent; /* NULL for the root */
  uint32_t tcap;  /* 0, 1 or a power of two >= 4 */
  uint32_t tn;    /* literal children */
  uint16_t seglen;
  char seg[]; /* the level's bytes past the first 8, not NUL-terminated */
};

struct uvmqtt_router_s {
  node_t *root;
  route_t *dead; /* removed during a walk, released after it */
  size_t count;  /* live routes */
  size_t mem;    /* bytes held, see uvmqtt_router_memory */
  uint64_t next_seq;
  unsigned walking; /* depth of nested matches */
};

#define NODE_SIZE(seglen)                                                      \
  (offsetof(node_t, seg) + ((seglen) > 8 ? (seglen)-8 : 0))
#define ROUTE_SIZE(len) (offsetof(route_t, filter) + (len))

/* ---- accounting allocation ---------------------------------------------- */

static void *r_alloc(uvmqtt_router_t *r, size_t n) {
  void *p = uvmqtt__malloc(n);
  if (p)
    r->mem += n;
  return p;
}

static void *r_calloc(uvmqtt_router_t *r, size_t count, size_t size) {
  void *p = uvmqtt__calloc(count, size);
  if (p)
    r->mem += count * size;
  return p;
}

static void r_free(uvmqtt_router_t *r, void *p, size_t n) {
  if (p) {
    uvmqtt__free(p);
    r->mem -= n;
  }
}

/* ---- literal children ----------------------------------------------------
 *
 * tcap == 0: no literal child.
 * tcap == 1: exactly one, held directly in ch.one (no table: most nodes
 *            deep in a trie have a single child).
 * tcap >= 4: an open-addressing table of tcap slots (a power of two),
 *            each a child pointer and that child's hash.
 */

#define TAB_MIN 4u

/* A level's key: its length, its first 8 bytes as a word (byte i in bits
 * 8i..8i+7, zero above the length) and a 32-bit hash for the tables. A
 * level of up to 8 bytes is equal to another exactly when length and word
 * are; longer ones also compare their remaining bytes. */
typedef struct {
  uint64_t w;
  uint32_t h;
  uint32_t len;
} lkey_t;

#define GOLDEN 0x9E3779B97F4A7C15ull

/* For the few helpers of the walk's inner loop, where a call costs as much
 * as the work. */
#if defined(__GNUC__)
#define HOT_INLINE inline __attribute__((always_inline))
#else
#define HOT_INLINE inline
#endif

static uint32_t mix(uint64_t x, size_t len) {
  return (uint32_t)(((x + len) * GOLDEN) >> 32);
}

/* FNV-1a over a long level's bytes. */
#define FNV_BASIS 14695981039346656037ull
#define FNV_PRIME 1099511628211ull

static uint64_t fnv64(uint64_t h, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    h ^= (unsigned char)s[i];
    h *= FNV_PRIME;
  }
  return h;
}

/* Scanning a word at a time needs little-endian byte order (the first byte
 * in the low bits) and __builtin_ctzll. */
#if defined(__GNUC__) && defined(__BYTE_ORDER__) &&                            \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define WORD_SCAN 1
#endif

/* The key of the level at s, which ends at the first '/' or after max
 * bytes. */
static HOT_INLINE lkey_t level_key(const char *s, size_t max) {
  lkey_t k;
  uint64_t x = 0;
  size_t n;
#if WORD_SCAN
  if (max >= 8) {
    /* Eight bytes at once: the lowest zero byte of x ^ "////////" is the
     * first '/' (the borrow trick has no false positive below it). */
    memcpy(&x, s, 8);
    uint64_t y = x ^ 0x2f2f2f2f2f2f2f2full;
    uint64_t z = (y - 0x0101010101010101ull) & ~y & 0x8080808080808080ull;
    if (z) {
      n = (size_t)__builtin_ctzll(z) >> 3;
      x &= (1ull << (8 * n)) - 1; /* n < 8 */
    } else {
      const char *e = memchr(s + 8, '/', max - 8);
      n = e ? (size_t)(e - s) : max;
    }
  } else
#endif
  {
    for (n = 0; n < max && s[n] != '/'; n++)
      if (n < 8)
        x |= (uint64_t)(unsigned char)s[n] << (8 * n);
  }
  k.w = x;
  k.len = (uint32_t)n;
  k.h = n <= 8 ? mix(x, n) : mix(fnv64(FNV_BASIS, s, n), n);
  return k;
}

static uint32_t home(uint32_t h, uint32_t mask) {
  return (h ^ (h >> 16)) & mask;
}

/* Whether node c's level is k, the level at s. */
static HOT_INLINE bool key_eq(const node_t *c, const char *s, lkey_t k) {
  return c->w == k.w && c->seglen == k.len &&
         (k.len <= 8 || memcmp(c->seg, s + 8, k.len - 8) == 0);
}

static HOT_INLINE node_t *tab_find(const node_t *n, const char *s, lkey_t k) {
  if (n->tcap <= 1) {
    node_t *c = n->ch.one;
    return c && key_eq(c, s, k) ? c : NULL;
  }
  uint32_t mask = n->tcap - 1;
  const slot_t *tab = n->ch.tab;
  for (uint32_t i = home(k.h, mask);; i = (i + 1) & mask) {
    node_t *c = tab[i].c;
    if (!c)
      return NULL;
    if (tab[i].hv == k.h && key_eq(c, s, k))
      return c;
  }
}

/* The hash level_key gives node c's level, found again rather than kept
 * in every node: only table updates need it. */
static uint32_t node_hash(const node_t *c) {
  if (c->seglen <= 8)
    return mix(c->w, c->seglen);
  uint64_t h = FNV_BASIS;
  for (unsigned i = 0; i < 8; i++) {
    h ^= (c->w >> (8 * i)) & 0xff;
    h *= FNV_PRIME;
  }
  return mix(fnv64(h, c->seg, c->seglen - 8u), c->seglen);
}

static void tab_put(slot_t *tab, uint32_t cap, node_t *c) {
  uint32_t mask = cap - 1;
  uint32_t hv = node_hash(c);
  uint32_t i = home(hv, mask);
  while (tab[i].c)
    i = (i + 1) & mask;
  tab[i].c = c;
  tab[i].hv = hv;
}

static void tab_free(uvmqtt_router_t *r, node_t *n) {
  if (n->tcap > 1)
    r_free(r, n->ch.tab, n->tcap * sizeof(slot_t));
  n->ch.tab = NULL;
  n->tcap = 0;
}

/* Moves n's children (direct or tabled) into a table of cap slots. */
static int tab_rebuild(uvmqtt_router_t *r, node_t *n, uint32_t cap) {
  slot_t *tab = r_calloc(r, cap, sizeof(slot_t));
  if (!tab)
    return UVMQTT_ENOMEM;
  if (n->tcap == 1) {
    tab_put(tab, cap, n->ch.one);
  } else {
    for (uint32_t i = 0; i < n->tcap; i++)
      if (n->ch.tab[i].c)
        tab_put(tab, cap, n->ch.tab[i].c);
  }
  tab_free(r, n);
  n->ch.tab = tab;
  n->tcap = cap;
  return 0;
}

/* Keeps a table's load at or below 3/4 so probes stay short and a slot
 * stays free. */
static int tab_insert(uvmqtt_router_t *r, node_t *n, node_t *c) {
  if (n->tcap == 0) {
    n->ch.one = c;
    n->tcap = 1;
    n->tn = 1;
    return 0;
  }
  if (n->tcap == 1 || (n->tn + 1) * 4 > n->tcap * 3) {
    if (n->tcap > UINT32_MAX / 4)
      return UVMQTT_ENOMEM;
    if (tab_rebuild(r, n, n->tcap == 1 ? TAB_MIN : n->tcap * 2) != 0)
      return UVMQTT_ENOMEM;
  }
  tab_put(n->ch.tab, n->tcap, c);
  n->tn++;
  return 0;
}

static void tab_remove(uvmqtt_router_t *r, node_t *n, node_t *c) {
  if (n->tcap == 1) {
    n->ch.one = NULL;
    n->tcap = 0;
    n->tn = 0;
    return;
  }
  uint32_t mask = n->tcap - 1;
  slot_t *tab = n->ch.tab;
  uint32_t i = home(node_hash(c), mask);
  while (tab[i].c != c)
    i = (i + 1) & mask;
  /* Backward-shift deletion: pull later entries of the probe run into the
   * hole unless their home lies cyclically in (i, j]. */
  tab[i].c = NULL;
  for (uint32_t j = (i + 1) & mask; tab[j].c; j = (j + 1) & mask) {
    uint32_t k = home(tab[j].hv, mask);
    bool stays = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
    if (!stays) {
      tab[i] = tab[j];
      tab[j].c = NULL;
      i = j;
    }
  }
  n->tn--;
  if (n->tn == 1) {
    /* Back to a direct child: no allocation needed. */
    node_t *one = NULL;
    for (uint32_t k = 0; !one; k++)
      one = tab[k].c;
    tab_free(r, n);
    n->ch.one = one;
    n->tcap = 1;
  } else if (n->tn * 4 < n->tcap) {
    /* Below 1/4 full: shrink to the smallest table the growth rule allows.
     * Growing at 3/4 and shrinking below 1/4 keeps alternating adds and
     * removes from rebuilding the table each time. */
    uint32_t cap = TAB_MIN;
    while (n->tn * 4 > cap * 3)
      cap *= 2;
    if (cap < n->tcap)
      (void)tab_rebuild(r, n, cap); /* failure only wastes space */
  }
}

/* Any one literal child, or NULL. */
static node_t *tab_any(const node_t *n) {
  if (n->tcap == 1)
    return n->ch.one;
  for (uint32_t i = 0; i < n->tcap; i++)
    if (n->ch.tab[i].c)
      return n->ch.tab[i].c;
  return NULL;
}

/* ---- nodes ----------------------------------------------------------------
 */

static node_t *node_new(uvmqtt_router_t *r, node_t *parent, const char *seg,
                        lkey_t k) {
  node_t *n = r_alloc(r, NODE_SIZE(k.len));
  if (!n)
    return NULL;
  memset(n, 0, offsetof(node_t, seg)); /* may be less than sizeof(*n) */
  n->parent = parent;
  n->w = k.w;
  n->seglen = (uint16_t)k.len;
  if (k.len > 8)
    memcpy(n->seg, seg + 8, k.len - 8);
  return n;
}

static void node_free(uvmqtt_router_t *r, node_t *n) {
  tab_free(r, n);
  r_free(r, n, NODE_SIZE(n->seglen));
}

static void node_unlink(uvmqtt_router_t *r, node_t *n) {
  node_t *p = n->parent;
  if (p->plus == n)
    p->plus = NULL;
  else
    tab_remove(r, p, n);
}

/* Frees n and its ancestors while they hold no route and no child. Only
 * called when no walk runs, or on nodes no walk can have reached. */
static void prune(uvmqtt_router_t *r, node_t *n) {
  while (n != r->root && !n->routes && !n->hroutes && !n->plus && !n->tn) {
    node_t *p = n->parent;
    node_unlink(r, n);
    node_free(r, n);
    n = p;
  }
}

/* Undoes a failed add: first is the shallowest node it created; below it
 * hangs a chain of new nodes with one child each and no route. */
static void drop_chain(uvmqtt_router_t *r, node_t *first) {
  node_unlink(r, first);
  while (first) {
    node_t *next = first->plus ? first->plus : tab_any(first);
    node_free(r, first);
    first = next;
  }
}

/* Splits a key into levels: returns the length of the level starting at
 * key[*pos] and advances *pos past it and its '/'. */
static size_t next_level(const char *key, size_t klen, size_t *pos) {
  const char *s = key + *pos;
  const char *e = memchr(s, '/', klen - *pos);
  size_t l = e ? (size_t)(e - s) : klen - *pos;
  *pos += l + 1;
  return l;
}

/* Finds the node and list holding key's routes; NULL when absent. */
static route_t **find_list(uvmqtt_router_t *r, const char *key, size_t klen,
                           node_t **out) {
  node_t *n = r->root;
  size_t pos = 0;
  while (pos <= klen) {
    const char *s = key + pos;
    size_t l = next_level(key, klen, &pos);
    if (l == 1 && s[0] == '#') {
      *out = n;
      return &n->hroutes;
    }
    n = (l == 1 && s[0] == '+') ? n->plus : tab_find(n, s, level_key(s, l));
    if (!n)
      return NULL;
  }
  *out = n;
  return &n->routes;
}

/* ---- public API -----------------------------------------------------------
 */

int uvmqtt_router_new(uvmqtt_router_t **out) {
  if (!out)
    return UVMQTT_EINVAL;
  uvmqtt_router_t *r = uvmqtt__calloc(1, sizeof(*r));
  if (!r)
    return UVMQTT_ENOMEM;
  r->mem = sizeof(*r);
  r->root = node_new(r, NULL, "", level_key("", 0));
  if (!r->root) {
    uvmqtt__free(r);
    return UVMQTT_ENOMEM;
  }
  *out = r;
  return 0;
}

static void free_list(route_t *rt) {
  while (rt) {
    route_t *next = rt->next;
    uvmqtt__free(rt);
    rt = next;
  }
}

void uvmqtt_router_free(uvmqtt_router_t *r) {
  if (!r)
    return;
  /* Post-order without recursion: descend into any child, detaching it;
   * free a node once it has none. */
  node_t *n = r->root;
  for (;;) {
    node_t *c = n->plus;
    n->plus = NULL;
    if (!c && n->tcap == 1) {
      c = n->ch.one;
      n->ch.one = NULL;
      n->tcap = 0;
    }
    if (!c && n->tcap >= TAB_MIN) {
      /* Pack the children at the front once; tcap 2 marks a packed
       * table, a state that exists only here. */
      uint32_t k = 0;
      for (uint32_t i = 0; i < n->tcap; i++)
        if (n->ch.tab[i].c)
          n->ch.tab[k++] = n->ch.tab[i];
      n->tcap = 2;
    }
    if (!c && n->tcap == 2 && n->tn > 0)
      c = n->ch.tab[--n->tn].c;
    if (c) {
      n = c;
      continue;
    }
    node_t *p = n->parent;
    free_list(n->routes);
    free_list(n->hroutes);
    uvmqtt__free(n->ch.tab); /* a table, or NULL */
    uvmqtt__free(n);
    if (!p)
      break;
    n = p;
  }
  uvmqtt__free(r);
}

int uvmqtt_router_add(uvmqtt_router_t *r, const char *filter, size_t len,
                      void *value, void **old) {
  size_t off;
  int rc;
  if (!r)
    return UVMQTT_EINVAL;
  if ((rc = uvmqtt__filter_check(filter, len, &off)) != 0)
    return rc;
  const char *key = filter + off;
  size_t klen = len - off;

  node_t *n = r->root, *first_new = NULL;
  route_t **list = NULL;
  size_t pos = 0;
  while (pos <= klen) {
    const char *s = key + pos;
    size_t l = next_level(key, klen, &pos);
    if (l == 1 && s[0] == '#') {
      list = &n->hroutes;
      break;
    }
    bool plus = l == 1 && s[0] == '+';
    lkey_t k = level_key(s, l);
    node_t *c = plus ? n->plus : tab_find(n, s, k);
    if (!c) {
      c = node_new(r, n, s, k);
      if (!c)
        goto nomem;
      if (plus) {
        n->plus = c;
      } else if (tab_insert(r, n, c) != 0) {
        node_free(r, c);
        goto nomem;
      }
      if (!first_new)
        first_new = c;
    }
    n = c;
  }
  if (!list)
    list = &n->routes;

  route_t **tail = list;
  for (route_t *rt; (rt = *tail) != NULL; tail = &rt->next) {
    if (!rt->dead && rt->len == len && memcmp(rt->filter, filter, len) == 0) {
      if (old)
        *old = rt->u.value;
      rt->u.value = value;
      return 1;
    }
  }
  route_t *rt = r_alloc(r, ROUTE_SIZE(len));
  if (!rt)
    goto nomem;
  rt->next = NULL;
  rt->u.value = value;
  rt->s.seq = r->next_seq++;
  rt->len = (uint16_t)len;
  rt->dead = 0;
  memcpy(rt->filter, filter, len);
  *tail = rt;
  r->count++;
  if (old)
    *old = NULL;
  return 0;

nomem:
  if (first_new)
    drop_chain(r, first_new);
  return UVMQTT_ENOMEM;
}

int uvmqtt_router_remove(uvmqtt_router_t *r, const char *filter, size_t len,
                         void **value) {
  size_t off;
  int rc;
  node_t *n;
  if (!r)
    return UVMQTT_EINVAL;
  if ((rc = uvmqtt__filter_check(filter, len, &off)) != 0)
    return rc;
  route_t **link = find_list(r, filter + off, len - off, &n);
  if (!link)
    return UVMQTT_ENOENT;
  route_t *rt;
  for (; (rt = *link) != NULL; link = &rt->next)
    if (!rt->dead && rt->len == len && memcmp(rt->filter, filter, len) == 0)
      break;
  if (!rt)
    return UVMQTT_ENOENT;
  if (value)
    *value = rt->u.value;
  r->count--;
  if (r->walking) {
    /* A walk may stand on this route or pass it later: keep it linked. */
    rt->dead = 1;
    rt->u.node = n;
    rt->s.next_dead = r->dead;
    r->dead = rt;
    return 0;
  }
  *link = rt->next;
  r_free(r, rt, ROUTE_SIZE(rt->len));
  prune(r, n);
  return 0;
}

/* Releases the routes removed during walks, once none runs. */
static void sweep(uvmqtt_router_t *r) {
  while (r->dead) {
    route_t *rt = r->dead;
    node_t *n = rt->u.node;
    r->dead = rt->s.next_dead;
    route_t **link = &n->routes;
    while (*link && *link != rt)
      link = &(*link)->next;
    if (!*link) {
      link = &n->hroutes;
      while (*link != rt)
        link = &(*link)->next;
    }
    *link = rt->next;
    r_free(r, rt, ROUTE_SIZE(rt->len));
    prune(r, n);
  }
}

/* Visits the live routes of a list that existed when the walk began.
 * Returns 1 when the callback asks to stop. rt->next is read after the
 * callback, which is safe because nothing is freed during a walk. */
static int visit(const route_t *rt, uint64_t limit, uvmqtt_router_visit_cb cb,
                 void *arg, int *visited) {
  for (; rt; rt = rt->next) {
    if (rt->dead || rt->s.seq >= limit)
      continue;
    ++*visited;
    if (cb && cb(rt->u.value, rt->filter, rt->len, arg))
      return 1;
  }
  return 0;
}

/* Levels whose key and position a match remembers, so that the '+'
 * branches do not scan the same level again and climbing needs no scan back
 * to the previous '/'. Deeper levels are recomputed. */
#define LEVEL_CACHE 32

/* The walk behind uvmqtt_router_match; st, when not NULL, records the
 * nodes entered (the benchmark's measure of work). Inlined into both
 * callers so the public one carries no counting. */
static HOT_INLINE int walk(uvmqtt_router_t *r, const char *topic, size_t len,
                           uvmqtt_router_visit_cb cb, void *arg,
                           uvmqtt__router_stats_t *st) {
  if (!r || !topic)
    return UVMQTT_EINVAL;
  if (len == 0 || len > UVMQTT_TOPIC_MAX)
    return UVMQTT_ETOPIC;

  const uint64_t limit = r->next_seq;
  /* Wildcards at the first level do not match "$" topics [MQTT-4.7.2-1]. */
  node_t *const root = r->root;
  node_t *const nowild = topic[0] == '$' ? root : NULL;
  node_t *n = root;
  /* The start of the topic level below n, i.e. the level n's children
   * consume; len + 1 once every level is consumed. d is n's depth. */
  size_t pos = 0;
  size_t d = 0;
  lkey_t lv[LEVEL_CACHE];
  uint32_t lvpos[LEVEL_CACHE];
  size_t cached = 0; /* levels 0 .. cached - 1 are in lv and lvpos */
  int visited = 0;

  r->walking++;
  for (;;) {
    /* Entering n. */
    if (st) {
      if (st->entered < st->cap)
        st->nodes[st->entered] = n;
      st->entered++;
    }
    if (n->hroutes && n != nowild &&
        visit(n->hroutes, limit, cb, arg, &visited))
      break;
    if (pos > len) {
      if (n->routes && visit(n->routes, limit, cb, arg, &visited))
        break;
    } else {
      const char *s = topic + pos;
      lkey_t k;
      if (d < cached) {
        k = lv[d];
      } else {
        /* Levels are first reached in order: d == cached here. */
        k = level_key(s, len - pos);
        if (d < LEVEL_CACHE) {
          lv[d] = k;
          lvpos[d] = (uint32_t)pos;
          cached = d + 1;
        }
      }
      node_t *c = n->tcap ? tab_find(n, s, k) : NULL;
      if (!c && n != nowild)
        c = n->plus;
      if (c) {
        n = c;
        pos += k.len + 1;
        d++;
        continue;
      }
    }
    /* n is done: climb until a '+' sibling is left to try. pos is the
     * start of the level below n; n's own level ends at pos - 1. */
    for (;;) {
      if (n == root)
        goto out;
      node_t *p = n->parent;
      if (p->plus && p->plus != n && p != nowild) {
        n = p->plus; /* consumes the same level as n */
        break;
      }
      d--;
      if (d < LEVEL_CACHE) {
        pos = lvpos[d];
      } else {
        size_t i = pos - 1;
        while (i > 0 && topic[i - 1] != '/')
          i--;
        pos = i;
      }
      n = p;
    }
  }
out:
  if (--r->walking == 0 && r->dead)
    sweep(r);
  return visited;
}

int uvmqtt_router_match(uvmqtt_router_t *r, const char *topic, size_t len,
                        uvmqtt_router_visit_cb cb, void *arg) {
  return walk(r, topic, len, cb, arg, NULL);
}

int uvmqtt__router_match_stats(uvmqtt_router_t *r, const char *topic,
                               size_t len, uvmqtt_router_visit_cb cb, void *arg,
                               uvmqtt__router_stats_t *st) {
  return walk(r, topic, len, cb, arg, st);
}

size_t uvmqtt_router_count(const uvmqtt_router_t *r) {
  return r ? r->count : 0;
}

size_t uvmqtt_router_memory(const uvmqtt_router_t *r) {
  return r ? r->mem : 0;
}
