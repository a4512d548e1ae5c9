/* Topic name and filter validation, and the reference (naive) matcher. */
#include "uvmqtt/topic.h"

#include <string.h>

#include "codec/filter.h"
#include "topic_int.h"
#include "uvmqtt/codec.h"
#include "uvmqtt/errors.h"

/* 1 when s[0 .. len) is well-formed UTF-8 as MQTT requires (1.5.4): the
 * library's one validator, uvmqtt_utf8_check() of the codec. */
static int utf8_ok(const char *s, size_t len) {
  return uvmqtt_utf8_check(s, len, NULL) == 0;
}

int uvmqtt_topic_validate(const char *topic, size_t len) {
  if (!topic || len == 0 || len > UVMQTT_TOPIC_MAX)
    return UVMQTT_ETOPIC;
  if (memchr(topic, '+', len) || memchr(topic, '#', len))
    return UVMQTT_ETOPIC;
  if (!utf8_ok(topic, len))
    return UVMQTT_ETOPIC;
  return 0;
}

int uvmqtt__filter_check(const char *filter, size_t len, size_t *key_off) {
  size_t off;
  if (!filter || len == 0 || len > UVMQTT_TOPIC_MAX)
    return UVMQTT_EFILTER;
  /* Wildcards and $share/: the codec's check, the one for every filter. */
  if (uvmqtt__filter_syntax(filter, len, &off, NULL) != 0)
    return UVMQTT_EFILTER;
  if (!utf8_ok(filter, len))
    return UVMQTT_EFILTER;
  if (key_off)
    *key_off = off;
  return 0;
}

int uvmqtt_filter_validate(const char *filter, size_t len) {
  return uvmqtt__filter_check(filter, len, NULL);
}

bool uvmqtt_topic_matches(const char *filter, size_t flen, const char *topic,
                          size_t tlen) {
  size_t off;
  if (uvmqtt__filter_check(filter, flen, &off) != 0)
    return false;
  if (uvmqtt_topic_validate(topic, tlen) != 0)
    return false;
  filter += off;
  flen -= off;
  if ((filter[0] == '+' || filter[0] == '#') && topic[0] == '$')
    return false;

  /* Positions are level starts; a position past the end (len + 1) means
   * no level is left. */
  size_t fp = 0, tp = 0;
  while (fp <= flen) {
    const char *fs = filter + fp;
    const char *fe = memchr(fs, '/', flen - fp);
    size_t fl = fe ? (size_t)(fe - fs) : flen - fp;
    if (fl == 1 && fs[0] == '#')
      return true; /* the rest, including no level at all */
    if (tp > tlen)
      return false; /* the filter has a level the topic lacks */
    const char *ts = topic + tp;
    const char *te = memchr(ts, '/', tlen - tp);
    size_t tl = te ? (size_t)(te - ts) : tlen - tp;
    if (!(fl == 1 && fs[0] == '+') && (fl != tl || memcmp(fs, ts, fl) != 0))
      return false;
    fp += fl + 1;
    tp += tl + 1;
  }
  return tp > tlen;
}
