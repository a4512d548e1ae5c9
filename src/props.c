/* Deep copies of v5 property sets into one allocation (a size pass, then
 * a copy pass), for the options and the queued messages that keep them. */
#include "props.h"

#include <string.h>

#include "alloc.h"

typedef struct {
  uint8_t *p; /* write position, NULL while sizing */
  size_t size;
} arena_t;

static void put(arena_t *a, const void *src, size_t len, const void **dst) {
  if (a->p) {
    if (len)
      memcpy(a->p, src, len);
    *dst = a->p;
    a->p += len;
  }
  a->size += len;
}

static void put_str(arena_t *a, uvmqtt_str_t *s) {
  const void *d = s->data;
  put(a, s->data, s->len, &d);
  if (a->p)
    s->data = d;
}

static void put_bin(arena_t *a, uvmqtt_bin_t *b) {
  const void *d = b->data;
  put(a, b->data, b->len, &d);
  if (a->p)
    b->data = d;
}

/* One pass sizes (a->p NULL), the second copies. */
static void walk(arena_t *a, const uvmqtt_props_t *in, uvmqtt_props_t *o,
                 uvmqtt_user_prop_t *ups) {
  put_str(a, &o->content_type);
  put_str(a, &o->response_topic);
  put_bin(a, &o->correlation_data);
  put_str(a, &o->assigned_client_identifier);
  put_str(a, &o->authentication_method);
  put_bin(a, &o->authentication_data);
  put_str(a, &o->response_information);
  put_str(a, &o->server_reference);
  put_str(a, &o->reason_string);
  size_t pos = 0;
  for (size_t i = 0; i < in->user_prop_count; i++) {
    uvmqtt_user_prop_t up;
    if (in->user_props)
      up = in->user_props[i];
    else if (!uvmqtt_props_next_user(in, &pos, &up))
      break;
    put_str(a, &up.key);
    put_str(a, &up.value);
    if (ups)
      ups[i] = up;
  }
}

size_t uvmqtt__props_size(const uvmqtt_props_t *in) {
  arena_t a = {NULL, 0};
  uvmqtt_props_t tmp = *in;
  walk(&a, in, &tmp, NULL);
  /* The strings follow the set and its user_props array. */
  return sizeof(uvmqtt_props_t) +
         in->user_prop_count * sizeof(uvmqtt_user_prop_t) + a.size;
}

uvmqtt_props_t *uvmqtt__props_copy_into(const uvmqtt_props_t *in, void *mem) {
  size_t head =
      sizeof(uvmqtt_props_t) + in->user_prop_count * sizeof(uvmqtt_user_prop_t);
  uvmqtt_props_t *o = mem;
  *o = *in;
  uvmqtt_user_prop_t *ups = (uvmqtt_user_prop_t *)(o + 1);
  arena_t a = {(uint8_t *)mem + head, 0};
  walk(&a, in, o, ups);
  o->user_props = in->user_prop_count ? ups : NULL;
  o->raw = NULL;
  o->raw_len = 0;
  o->sub_id_count = 0;
  return o;
}

int uvmqtt__props_dup(const uvmqtt_props_t *in, uvmqtt_props_t **out) {
  void *mem = uvmqtt__malloc(uvmqtt__props_size(in));
  if (!mem)
    return UVMQTT_ENOMEM;
  *out = uvmqtt__props_copy_into(in, mem);
  return 0;
}
