/* Keeping an incoming message past its callback: uvmqtt_message_copy()
 * copies topic, payload and v5 properties into one allocation, freed by
 * uvmqtt_message_free(). */
#include <string.h>

#include "alloc.h"
#include "props.h"
#include "uvmqtt.h"

int uvmqtt_message_copy(uvmqtt_message_t **dst, const uvmqtt_message_t *src) {
  if (!dst || !src || (!src->topic && src->topic_len) ||
      (!src->payload && src->payload_len))
    return UVMQTT_EINVAL;
  /* The message, its properties (8-aligned after it), the topic with a
   * NUL, then the payload. */
  size_t psize = src->props ? uvmqtt__props_size(src->props) : 0;
  size_t poff = (sizeof(uvmqtt_message_t) + 7) & ~(size_t)7;
  size_t toff = poff + ((psize + 7) & ~(size_t)7);
  if (src->topic_len > SIZE_MAX - toff - 1 ||
      src->payload_len > SIZE_MAX - toff - 1 - src->topic_len)
    return UVMQTT_ENOMEM;
  char *mem = uvmqtt__malloc(toff + src->topic_len + 1 + src->payload_len);
  if (!mem)
    return UVMQTT_ENOMEM;
  uvmqtt_message_t *m = (uvmqtt_message_t *)mem;
  *m = *src;
  m->props =
      src->props ? uvmqtt__props_copy_into(src->props, mem + poff) : NULL;
  char *topic = mem + toff;
  if (src->topic_len)
    memcpy(topic, src->topic, src->topic_len);
  topic[src->topic_len] = '\0';
  m->topic = topic;
  char *payload = topic + src->topic_len + 1;
  if (src->payload_len)
    memcpy(payload, src->payload, src->payload_len);
  m->payload = payload;
  *dst = m;
  return 0;
}

void uvmqtt_message_free(uvmqtt_message_t *m) {
  uvmqtt__free(m);
}
