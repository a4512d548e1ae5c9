/* Codec helpers: UTF-8 and topic checks, names, reason strings, varints,
 * the v5 property table. */
#include "codec/codec_int.h"
#include "codec/filter.h"

/* ---- UTF-8 ------------------------------------------------------------- */

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)
/* Non-zero when some byte of v is zero (exact for the "any" question). */
#define HAS_ZERO(v) (((v)-ONES) & ~(v)&HIGHS)

int uvmqtt__codec_utf8_scan(const uint8_t *s, size_t len, bool topic,
                            size_t *err_off) {
  size_t i = 0;
  /* ASCII fast path, eight bytes at a time: leave it at the first block
   * holding a non-ASCII byte, a NUL or (for topics) a wildcard. */
  while (i + 8 <= len) {
    uint64_t v;
    memcpy(&v, s + i, 8);
    uint64_t bad = (v & HIGHS) | HAS_ZERO(v);
    if (topic)
      bad |= HAS_ZERO(v ^ (ONES * '+')) | HAS_ZERO(v ^ (ONES * '#'));
    if (bad)
      break;
    i += 8;
  }
  while (i < len) {
    uint8_t c = s[i];
    if (c < 0x80) {
      if (UVMQTT__UNLIKELY(c == 0))
        goto bad_utf8;
      if (topic && (c == '+' || c == '#')) {
        if (err_off)
          *err_off = i;
        return UVMQTT_EWILDCARD;
      }
      i++;
      continue;
    }
    size_t n;
    uint8_t lo = 0x80, hi = 0xBF;
    if (c < 0xC2) {
      goto bad_utf8; /* stray continuation byte or overlong 2-byte form */
    } else if (c < 0xE0) {
      n = 1;
    } else if (c < 0xF0) {
      n = 2;
      if (c == 0xE0)
        lo = 0xA0; /* overlong */
      else if (c == 0xED)
        hi = 0x9F; /* UTF-16 surrogates */
    } else if (c < 0xF5) {
      n = 3;
      if (c == 0xF0)
        lo = 0x90; /* overlong */
      else if (c == 0xF4)
        hi = 0x8F; /* above U+10FFFF */
    } else {
      goto bad_utf8;
    }
    if (len - i - 1 < n)
      goto bad_utf8;
    if (s[i + 1] < lo || s[i + 1] > hi)
      goto bad_utf8;
    for (size_t k = 2; k <= n; k++)
      if ((s[i + k] & 0xC0) != 0x80)
        goto bad_utf8;
    i += n + 1;
  }
  return 0;
bad_utf8:
  if (err_off)
    *err_off = i;
  return UVMQTT_EUTF8;
}

int uvmqtt_utf8_check(const char *s, size_t len, size_t *err_off) {
  if (s == NULL && len > 0)
    return UVMQTT_EINVAL;
  return uvmqtt__codec_utf8_scan((const uint8_t *)s, len, false, err_off);
}

int uvmqtt__filter_syntax(const char *s, size_t len, size_t *key_off,
                          size_t *err_off) {
  static const char share[] = "$share";
  const size_t slen = sizeof(share) - 1;
  size_t i, off = 0;
  if (len == 0) {
    i = 0;
    goto bad;
  }
  /* "$share/<group>/<filter>": the group is one non-empty level without
   * wildcards, and a non-empty filter follows it. */
  if (len >= slen && memcmp(s, share, slen) == 0 &&
      (len == slen || s[slen] == '/')) {
    i = slen + 1;
    if (i >= len) {
      i = len;
      goto bad;
    }
    const char *slash = memchr(s + i, '/', len - i);
    if (slash == NULL || slash == s + i || (size_t)(slash - s) + 1 == len)
      goto bad;
    for (; s + i < slash; i++)
      if (s[i] == '+' || s[i] == '#')
        goto bad;
    off = i + 1;
  }
  for (i = off; i < len; i++) {
    char c = s[i];
    if (c == '#') {
      if ((i > off && s[i - 1] != '/') || i + 1 != len)
        goto bad;
    } else if (c == '+') {
      if ((i > off && s[i - 1] != '/') || (i + 1 < len && s[i + 1] != '/'))
        goto bad;
    }
  }
  if (key_off)
    *key_off = off;
  return 0;
bad:
  if (err_off)
    *err_off = i;
  return UVMQTT_EFILTER;
}

/* ---- varints ----------------------------------------------------------- */

int uvmqtt_varint_size(uint32_t v) {
  if (v < 128u)
    return 1;
  if (v < 16384u)
    return 2;
  if (v < 2097152u)
    return 3;
  if (v <= UVMQTT_MAX_REMAINING_LENGTH)
    return 4;
  return 0;
}

/* ---- names ------------------------------------------------------------- */

const char *uvmqtt_packet_name(int type) {
  static const char *const names[16] = {
      NULL,      "CONNECT",  "CONNACK",    "PUBLISH", "PUBACK",      "PUBREC",
      "PUBREL",  "PUBCOMP",  "SUBSCRIBE",  "SUBACK",  "UNSUBSCRIBE", "UNSUBACK",
      "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"};
  if (type < 1 || type > 15)
    return "UNKNOWN";
  return names[type];
}

const char *uvmqtt_reason_string(uint8_t code, bool connack_v3) {
  if (connack_v3) {
    switch (code) {
    case 0:
      return "Connection accepted";
    case 1:
      return "Unacceptable protocol version";
    case 2:
      return "Identifier rejected";
    case 3:
      return "Server unavailable";
    case 4:
      return "Bad user name or password";
    case 5:
      return "Not authorized";
    default:
      return "Unknown return code";
    }
  }
  switch (code) {
  case 0x00:
    return "Success";
  case 0x01:
    return "Granted QoS 1";
  case 0x02:
    return "Granted QoS 2";
  case 0x04:
    return "Disconnect with Will Message";
  case 0x10:
    return "No matching subscribers";
  case 0x11:
    return "No subscription existed";
  case 0x18:
    return "Continue authentication";
  case 0x19:
    return "Re-authenticate";
  case 0x80:
    return "Unspecified error";
  case 0x81:
    return "Malformed Packet";
  case 0x82:
    return "Protocol Error";
  case 0x83:
    return "Implementation specific error";
  case 0x84:
    return "Unsupported Protocol Version";
  case 0x85:
    return "Client Identifier not valid";
  case 0x86:
    return "Bad User Name or Password";
  case 0x87:
    return "Not authorized";
  case 0x88:
    return "Server unavailable";
  case 0x89:
    return "Server busy";
  case 0x8A:
    return "Banned";
  case 0x8B:
    return "Server shutting down";
  case 0x8C:
    return "Bad authentication method";
  case 0x8D:
    return "Keep Alive timeout";
  case 0x8E:
    return "Session taken over";
  case 0x8F:
    return "Topic Filter invalid";
  case 0x90:
    return "Topic Name invalid";
  case 0x91:
    return "Packet Identifier in use";
  case 0x92:
    return "Packet Identifier not found";
  case 0x93:
    return "Receive Maximum exceeded";
  case 0x94:
    return "Topic Alias invalid";
  case 0x95:
    return "Packet too large";
  case 0x96:
    return "Message rate too high";
  case 0x97:
    return "Quota exceeded";
  case 0x98:
    return "Administrative action";
  case 0x99:
    return "Payload format invalid";
  case 0x9A:
    return "Retain not supported";
  case 0x9B:
    return "QoS not supported";
  case 0x9C:
    return "Use another server";
  case 0x9D:
    return "Server moved";
  case 0x9E:
    return "Shared Subscriptions not supported";
  case 0x9F:
    return "Connection rate exceeded";
  case 0xA0:
    return "Maximum connect time";
  case 0xA1:
    return "Subscription Identifiers not supported";
  case 0xA2:
    return "Wildcard Subscriptions not supported";
  default:
    return "Unknown reason code";
  }
}

/* ---- the v5 property table ---------------------------------------------- */

#define W(t) (1u << (t))
#define ACKS                                                                   \
  (W(UVMQTT_PUBACK) | W(UVMQTT_PUBREC) | W(UVMQTT_PUBREL) | W(UVMQTT_PUBCOMP))
#define PUBW (W(UVMQTT_PUBLISH) | W(UVMQTT__WILL))

typedef struct {
  const char *name;
  uint8_t type;   /* uvmqtt_prop_type_t; 0 for unassigned identifiers */
  uint16_t where; /* W(packet type), W(UVMQTT__WILL) for will properties */
} prop_info_t;

static const prop_info_t prop_table[UVMQTT__PROP_LIMIT] = {
    [0x01] = {"Payload Format Indicator", UVMQTT_PROP_TYPE_BYTE, PUBW},
    [0x02] = {"Message Expiry Interval", UVMQTT_PROP_TYPE_U32, PUBW},
    [0x03] = {"Content Type", UVMQTT_PROP_TYPE_UTF8, PUBW},
    [0x08] = {"Response Topic", UVMQTT_PROP_TYPE_UTF8, PUBW},
    [0x09] = {"Correlation Data", UVMQTT_PROP_TYPE_BINARY, PUBW},
    [0x0B] = {"Subscription Identifier", UVMQTT_PROP_TYPE_VARINT,
              W(UVMQTT_PUBLISH) | W(UVMQTT_SUBSCRIBE)},
    [0x11] = {"Session Expiry Interval", UVMQTT_PROP_TYPE_U32,
              W(UVMQTT_CONNECT) | W(UVMQTT_CONNACK) | W(UVMQTT_DISCONNECT)},
    [0x12] = {"Assigned Client Identifier", UVMQTT_PROP_TYPE_UTF8,
              W(UVMQTT_CONNACK)},
    [0x13] = {"Server Keep Alive", UVMQTT_PROP_TYPE_U16, W(UVMQTT_CONNACK)},
    [0x15] = {"Authentication Method", UVMQTT_PROP_TYPE_UTF8,
              W(UVMQTT_CONNECT) | W(UVMQTT_CONNACK) | W(UVMQTT_AUTH)},
    [0x16] = {"Authentication Data", UVMQTT_PROP_TYPE_BINARY,
              W(UVMQTT_CONNECT) | W(UVMQTT_CONNACK) | W(UVMQTT_AUTH)},
    [0x17] = {"Request Problem Information", UVMQTT_PROP_TYPE_BYTE,
              W(UVMQTT_CONNECT)},
    [0x18] = {"Will Delay Interval", UVMQTT_PROP_TYPE_U32, W(UVMQTT__WILL)},
    [0x19] = {"Request Response Information", UVMQTT_PROP_TYPE_BYTE,
              W(UVMQTT_CONNECT)},
    [0x1A] = {"Response Information", UVMQTT_PROP_TYPE_UTF8, W(UVMQTT_CONNACK)},
    [0x1C] = {"Server Reference", UVMQTT_PROP_TYPE_UTF8,
              W(UVMQTT_CONNACK) | W(UVMQTT_DISCONNECT)},
    [0x1F] = {"Reason String", UVMQTT_PROP_TYPE_UTF8,
              W(UVMQTT_CONNACK) | ACKS | W(UVMQTT_SUBACK) | W(UVMQTT_UNSUBACK) |
                  W(UVMQTT_DISCONNECT) | W(UVMQTT_AUTH)},
    [0x21] = {"Receive Maximum", UVMQTT_PROP_TYPE_U16,
              W(UVMQTT_CONNECT) | W(UVMQTT_CONNACK)},
    [0x22] = {"Topic Alias Maximum", UVMQTT_PROP_TYPE_U16,
              W(UVMQTT_CONNECT) | W(UVMQTT_CONNACK)},
    [0x23] = {"Topic Alias", UVMQTT_PROP_TYPE_U16, W(UVMQTT_PUBLISH)},
    [0x24] = {"Maximum QoS", UVMQTT_PROP_TYPE_BYTE, W(UVMQTT_CONNACK)},
    [0x25] = {"Retain Available", UVMQTT_PROP_TYPE_BYTE, W(UVMQTT_CONNACK)},
    [0x26] = {"User Property", UVMQTT_PROP_TYPE_UTF8_PAIR,
              W(UVMQTT_CONNECT) | W(UVMQTT_CONNACK) | PUBW | ACKS |
                  W(UVMQTT_SUBSCRIBE) | W(UVMQTT_SUBACK) |
                  W(UVMQTT_UNSUBSCRIBE) | W(UVMQTT_UNSUBACK) |
                  W(UVMQTT_DISCONNECT) | W(UVMQTT_AUTH)},
    [0x27] = {"Maximum Packet Size", UVMQTT_PROP_TYPE_U32,
              W(UVMQTT_CONNECT) | W(UVMQTT_CONNACK)},
    [0x28] = {"Wildcard Subscription Available", UVMQTT_PROP_TYPE_BYTE,
              W(UVMQTT_CONNACK)},
    [0x29] = {"Subscription Identifier Available", UVMQTT_PROP_TYPE_BYTE,
              W(UVMQTT_CONNACK)},
    [0x2A] = {"Shared Subscription Available", UVMQTT_PROP_TYPE_BYTE,
              W(UVMQTT_CONNACK)},
};

int uvmqtt_prop_type(int id) {
  if (id < 0 || id >= UVMQTT__PROP_LIMIT)
    return 0;
  return prop_table[id].type;
}

const char *uvmqtt_prop_name(int id) {
  if (id < 0 || id >= UVMQTT__PROP_LIMIT || prop_table[id].name == NULL)
    return "Unknown property";
  return prop_table[id].name;
}

bool uvmqtt_prop_allowed(int id, int packet_type, bool will) {
  int where = will ? UVMQTT__WILL : packet_type;
  if (id < 0 || id >= UVMQTT__PROP_LIMIT || where < 0 || where > 15)
    return false;
  if (will && packet_type != UVMQTT_CONNECT)
    return false;
  return (prop_table[id].where & W(where)) != 0;
}
