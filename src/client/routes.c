/* Routes: per-filter message callbacks tried before the client's message
 * callback, in a router (uvmqtt_router_*) allocated with the first route;
 * the route values live in a list the client frees. */
#include <string.h>

#include "alloc.h"
#include "client/client_int.h"

typedef struct {
  uvmqtt_client_t *c;
  const uvmqtt_message_t *m;
} dispatch_t;

static int route_visit(void *value, const char *filter, size_t flen,
                       void *arg) {
  dispatch_t *d = arg;
  route_t *r = value;
  uvmqtt_message_cb cb = r->cb;
  (void)filter;
  (void)flen;
  cb(d->c, d->m, r->arg);
  return 0;
}

static void route_unlink_free(uvmqtt_client_t *c, route_t *r) {
  if (!r)
    return;
  if (r->prev)
    r->prev->next = r->next;
  else
    c->rt->routes = r->next;
  if (r->next)
    r->next->prev = r->prev;
  uvmqtt__free(r);
}

int uvmqtt_route_add(uvmqtt_client_t *c, const char *filter,
                     uvmqtt_message_cb cb, void *arg) {
  if (!c || !filter || !cb)
    return UVMQTT_EINVAL;
  if (!c->rt) {
    routing_t *rt = uvmqtt__calloc(1, sizeof(*rt));
    if (!rt)
      return UVMQTT_ENOMEM;
    int rc = uvmqtt_router_new(&rt->router);
    if (rc < 0) {
      uvmqtt__free(rt);
      return rc;
    }
    c->rt = rt;
  }
  route_t *r = uvmqtt__malloc(sizeof(*r));
  if (!r)
    return UVMQTT_ENOMEM;
  r->cb = cb;
  r->arg = arg;
  void *old = NULL;
  int rc = uvmqtt_router_add(c->rt->router, filter, strlen(filter), r, &old);
  if (rc < 0) {
    uvmqtt__free(r);
    return rc;
  }
  r->prev = NULL;
  r->next = c->rt->routes;
  if (c->rt->routes)
    c->rt->routes->prev = r;
  c->rt->routes = r;
  route_unlink_free(c, old);
  return 0;
}

int uvmqtt_route_remove(uvmqtt_client_t *c, const char *filter) {
  void *old = NULL;
  if (!c || !filter)
    return UVMQTT_EINVAL;
  if (!c->rt)
    return UVMQTT_ENOENT;
  int rc = uvmqtt_router_remove(c->rt->router, filter, strlen(filter), &old);
  if (rc == 0)
    route_unlink_free(c, old);
  return rc;
}

bool uvmqtt__routes_dispatch(uvmqtt_client_t *c, const uvmqtt_message_t *m) {
  dispatch_t d = {c, m};
  return uvmqtt_router_match(c->rt->router, m->topic, m->topic_len, route_visit,
                             &d) > 0;
}

/* Routes own small structs; they go with the table. */
void uvmqtt__routes_free(uvmqtt_client_t *c) {
  if (!c->rt)
    return;
  uvmqtt_router_free(c->rt->router);
  while (c->rt->routes) {
    route_t *r = c->rt->routes;
    c->rt->routes = r->next;
    uvmqtt__free(r);
  }
  uvmqtt__free(c->rt);
}
