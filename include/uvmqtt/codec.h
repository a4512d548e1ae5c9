/** @file
 * uvmqtt sans-I/O MQTT codec: MQTT 3.1 (MQIsdp, level 3), 3.1.1 (level 4)
 * and 5.0 (level 5).
 *
 * - Encoding: uvmqtt_encode_size() first, then uvmqtt_encode() into a caller
 *   buffer. The codec never allocates.
 * - Decoding: uvmqtt_decode() decodes one complete packet held contiguously
 *   in memory; uvmqtt_parser_t is an incremental parser fed arbitrary chunks
 *   (down to one byte at a time) that yields whole packets.
 * - Decoded strings, binary data and payloads are views into the input (or
 *   into the buffer the caller lent the parser for a partial packet); they
 *   stay valid only as long as that memory does.
 * - No libuv, no sockets, no clock. Thread-safe as long as each parser and
 *   packet is used by one thread at a time.
 */
#ifndef UVMQTT_CODEC_H
#define UVMQTT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uvmqtt/errors.h"
#include "uvmqtt/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Protocol level of MQTT 3.1 ("MQIsdp") as carried in CONNECT. */
#define UVMQTT_V31 3
/** Protocol level of MQTT 3.1.1. */
#define UVMQTT_V311 4
/** Protocol level of MQTT 5.0. */
#define UVMQTT_V5 5

/** Control packet types (fixed header bits 7..4). */
typedef enum {
  UVMQTT_CONNECT = 1,
  UVMQTT_CONNACK = 2,
  UVMQTT_PUBLISH = 3,
  UVMQTT_PUBACK = 4,
  UVMQTT_PUBREC = 5,
  UVMQTT_PUBREL = 6,
  UVMQTT_PUBCOMP = 7,
  UVMQTT_SUBSCRIBE = 8,
  UVMQTT_SUBACK = 9,
  UVMQTT_UNSUBSCRIBE = 10,
  UVMQTT_UNSUBACK = 11,
  UVMQTT_PINGREQ = 12,
  UVMQTT_PINGRESP = 13,
  UVMQTT_DISCONNECT = 14,
  UVMQTT_AUTH = 15
} uvmqtt_packet_type_t;

/** The largest remaining length MQTT can express (4-byte varint). */
#define UVMQTT_MAX_REMAINING_LENGTH 268435455u

/** v5 property identifiers. */
typedef enum {
  UVMQTT_PROP_PAYLOAD_FORMAT_INDICATOR = 0x01,     /**< byte */
  UVMQTT_PROP_MESSAGE_EXPIRY_INTERVAL = 0x02,      /**< u32 */
  UVMQTT_PROP_CONTENT_TYPE = 0x03,                 /**< utf8 */
  UVMQTT_PROP_RESPONSE_TOPIC = 0x08,               /**< utf8 */
  UVMQTT_PROP_CORRELATION_DATA = 0x09,             /**< binary */
  UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER = 0x0B,      /**< varint */
  UVMQTT_PROP_SESSION_EXPIRY_INTERVAL = 0x11,      /**< u32 */
  UVMQTT_PROP_ASSIGNED_CLIENT_IDENTIFIER = 0x12,   /**< utf8 */
  UVMQTT_PROP_SERVER_KEEP_ALIVE = 0x13,            /**< u16 */
  UVMQTT_PROP_AUTHENTICATION_METHOD = 0x15,        /**< utf8 */
  UVMQTT_PROP_AUTHENTICATION_DATA = 0x16,          /**< binary */
  UVMQTT_PROP_REQUEST_PROBLEM_INFORMATION = 0x17,  /**< byte */
  UVMQTT_PROP_WILL_DELAY_INTERVAL = 0x18,          /**< u32 */
  UVMQTT_PROP_REQUEST_RESPONSE_INFORMATION = 0x19, /**< byte */
  UVMQTT_PROP_RESPONSE_INFORMATION = 0x1A,         /**< utf8 */
  UVMQTT_PROP_SERVER_REFERENCE = 0x1C,             /**< utf8 */
  UVMQTT_PROP_REASON_STRING = 0x1F,                /**< utf8 */
  UVMQTT_PROP_RECEIVE_MAXIMUM = 0x21,              /**< u16 */
  UVMQTT_PROP_TOPIC_ALIAS_MAXIMUM = 0x22,          /**< u16 */
  UVMQTT_PROP_TOPIC_ALIAS = 0x23,                  /**< u16 */
  UVMQTT_PROP_MAXIMUM_QOS = 0x24,                  /**< byte */
  UVMQTT_PROP_RETAIN_AVAILABLE = 0x25,             /**< byte */
  UVMQTT_PROP_USER_PROPERTY = 0x26,                /**< utf8 pair, repeatable */
  UVMQTT_PROP_MAXIMUM_PACKET_SIZE = 0x27,          /**< u32 */
  UVMQTT_PROP_WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28,   /**< byte */
  UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29, /**< byte */
  UVMQTT_PROP_SHARED_SUBSCRIPTION_AVAILABLE = 0x2A      /**< byte */
} uvmqtt_prop_id_t;

/** Wire data type of a v5 property (uvmqtt_prop_type()). */
typedef enum {
  UVMQTT_PROP_TYPE_BYTE = 1,
  UVMQTT_PROP_TYPE_U16 = 2,
  UVMQTT_PROP_TYPE_U32 = 3,
  UVMQTT_PROP_TYPE_VARINT = 4,
  UVMQTT_PROP_TYPE_UTF8 = 5,
  UVMQTT_PROP_TYPE_BINARY = 6,
  UVMQTT_PROP_TYPE_UTF8_PAIR = 7
} uvmqtt_prop_type_t;

/** @{ */
/** The property table of MQTT 5.0 section 2.2.2.2.
 * uvmqtt_prop_type(): the uvmqtt_prop_type_t of identifier `id`, 0 when the
 * identifier is not assigned.
 * uvmqtt_prop_name(): its name as the specification spells it
 * ("Topic Alias"), "Unknown property" otherwise.
 * uvmqtt_prop_allowed(): whether `id` may appear on `packet_type`, or in the
 * will properties of CONNECT when `will` is true (packet_type must then be
 * UVMQTT_CONNECT). */
UVMQTT_EXTERN int uvmqtt_prop_type(int id);
UVMQTT_EXTERN const char *uvmqtt_prop_name(int id);
UVMQTT_EXTERN bool uvmqtt_prop_allowed(int id, int packet_type, bool will);
/** @} */

/** Bit for property `id` in uvmqtt_props_t.present. */
#define UVMQTT_PROP_BIT(id) (UINT64_C(1) << (id))

/** A length-delimited UTF-8 string (not NUL-terminated). */
typedef struct {
  const char *data; /**< the bytes; may be NULL when len is 0 */
  size_t len;       /**< their number */
} uvmqtt_str_t;

/** Length-delimited binary data. */
typedef struct {
  const uint8_t *data; /**< the bytes; may be NULL when len is 0 */
  size_t len;          /**< their number */
} uvmqtt_bin_t;

/** A v5 User Property: a name and a value, both UTF-8. */
typedef struct {
  uvmqtt_str_t key;   /**< the name */
  uvmqtt_str_t value; /**< the value */
} uvmqtt_user_prop_t;

/** A v5 property set. `present` has UVMQTT_PROP_BIT(id) set for every
 * singleton property that is present; only those fields are meaningful
 * (the decoder does not promise zeroes in the others).
 * (The User Property bit is never set nor read: `user_prop_count` says.)
 *
 * Repeatable properties:
 * - User properties. Encoding: `user_props[0 .. user_prop_count)`, written
 *   in that order. Decoding: `user_prop_count` is the number found,
 *   `user_props` is NULL and uvmqtt_props_next_user() walks them in order.
 * - Subscription identifiers (a PUBLISH from the server may carry several).
 *   Decoding: `subscription_id` holds the first one, `sub_id_count` their
 *   number, `sub_ids` is NULL and uvmqtt_props_next_sub_id() walks them.
 *   Encoding: `sub_ids[0 .. sub_id_count)` when `sub_ids` is not NULL (only
 *   PUBLISH may carry more than one), else `subscription_id` when its
 *   `present` bit is set.
 *
 * After decoding, `raw`/`raw_len` view the encoded property bytes (without
 * their length prefix). Encoding reads `raw` only to walk repeatable
 * properties whose array pointer is NULL, so a decoded set re-encodes as is
 * (a test broker can forward a decoded PUBLISH unchanged). A hand-made set
 * leaves `raw` NULL.
 *
 * Encoding writes properties in ascending identifier order, repeatable ones
 * at their identifier's place in their own order. Decoding accepts any
 * order.
 *
 * A zeroed struct is an empty property set. */
typedef struct {
  uint64_t present; /**< UVMQTT_PROP_BIT(id) of each singleton present */
  /** @name Singleton properties (meaningful when their present bit is set)
   * Each field holds the property of the same name (uvmqtt_prop_id_t). */
  /** @{ */
  uint8_t payload_format_indicator; /**< 0x01: 1 = UTF-8 payload */
  uint32_t message_expiry_interval; /**< 0x02: seconds */
  uvmqtt_str_t content_type;        /**< 0x03 */
  uvmqtt_str_t response_topic;      /**< 0x08 */
  uvmqtt_bin_t correlation_data;    /**< 0x09 */
  uint32_t subscription_id;         /**< 0x0B: the first one when decoded */
  uint32_t session_expiry_interval; /**< 0x11: seconds */
  uvmqtt_str_t assigned_client_identifier;   /**< 0x12 */
  uint16_t server_keep_alive;                /**< 0x13: seconds */
  uvmqtt_str_t authentication_method;        /**< 0x15 */
  uvmqtt_bin_t authentication_data;          /**< 0x16 */
  uint8_t request_problem_information;       /**< 0x17: 0 or 1 */
  uint32_t will_delay_interval;              /**< 0x18: seconds */
  uint8_t request_response_information;      /**< 0x19: 0 or 1 */
  uvmqtt_str_t response_information;         /**< 0x1A */
  uvmqtt_str_t server_reference;             /**< 0x1C */
  uvmqtt_str_t reason_string;                /**< 0x1F */
  uint16_t receive_maximum;                  /**< 0x21 */
  uint16_t topic_alias_maximum;              /**< 0x22 */
  uint16_t topic_alias;                      /**< 0x23 */
  uint8_t maximum_qos;                       /**< 0x24: 0 or 1 */
  uint8_t retain_available;                  /**< 0x25: 0 or 1 */
  uint32_t maximum_packet_size;              /**< 0x27: bytes */
  uint8_t wildcard_subscription_available;   /**< 0x28: 0 or 1 */
  uint8_t subscription_identifier_available; /**< 0x29: 0 or 1 */
  uint8_t shared_subscription_available;     /**< 0x2A: 0 or 1 */
  /** @} */

  const uvmqtt_user_prop_t *user_props; /**< encoding; NULL when decoded */
  size_t user_prop_count;               /**< number of user properties */
  const uint32_t *sub_ids; /**< encoding only, see above; NULL when decoded */
  size_t sub_id_count;     /**< number of subscription identifiers */

  const uint8_t *raw; /**< decoded: the encoded properties, see above */
  size_t raw_len;     /**< their length */
} uvmqtt_props_t;

/** @{ */
/** Walks decoded user properties. Start with *pos = 0; returns 1 and fills
 * *out while there is one more, 0 at the end. */
UVMQTT_EXTERN int uvmqtt_props_next_user(const uvmqtt_props_t *props,
                                         size_t *pos, uvmqtt_user_prop_t *out);
/** Walks decoded subscription identifiers, as uvmqtt_props_next_user(). */
UVMQTT_EXTERN int uvmqtt_props_next_sub_id(const uvmqtt_props_t *props,
                                           size_t *pos, uint32_t *out);
/** @} */

/** Subscription options byte (v5 SUBSCRIBE; 3.x uses only the QoS bits). */
#define UVMQTT_SUBOPT_QOS_MASK 0x03
/** v5 No Local: messages this client publishes are not sent back to it. */
#define UVMQTT_SUBOPT_NO_LOCAL 0x04
/** v5 Retain As Published: forwarded messages keep their retain flag. */
#define UVMQTT_SUBOPT_RETAIN_AS_PUBLISHED 0x08
#define UVMQTT_SUBOPT_RETAIN_HANDLING_SHIFT 4 /**< 0, 1 or 2 in bits 5..4 */

/** One entry of a SUBSCRIBE: a topic filter and its options byte. */
typedef struct {
  uvmqtt_str_t filter; /**< the topic filter */
  uint8_t options;     /**< QoS in bits 1..0, plus UVMQTT_SUBOPT_* */
} uvmqtt_subscription_t;

/** CONNECT. */
typedef struct {
  uint8_t protocol_version;  /**< UVMQTT_V31, UVMQTT_V311 or UVMQTT_V5 */
  bool clean_start;          /**< "clean session" in 3.x */
  uint16_t keep_alive;       /**< seconds */
  uvmqtt_str_t client_id;    /**< may be empty */
  bool will;                 /**< a will message follows */
  uint8_t will_qos;          /**< its QoS */
  bool will_retain;          /**< its retain flag */
  uvmqtt_str_t will_topic;   /**< its topic */
  uvmqtt_bin_t will_payload; /**< its payload */
  uvmqtt_props_t will_props; /**< v5 only */
  bool has_username;         /**< a user name is present */
  uvmqtt_str_t username;     /**< the user name */
  bool has_password;         /**< a password is present */
  uvmqtt_bin_t password;     /**< binary allowed */
  uvmqtt_props_t props;      /**< v5 only */
} uvmqtt_connect_t;

/** CONNACK. */
typedef struct {
  bool session_present; /**< the broker resumed a session */
  uint8_t reason_code;  /**< 3.x return code or v5 reason code */
  uvmqtt_props_t props; /**< v5 properties */
} uvmqtt_connack_t;

/** PUBLISH. */
typedef struct {
  bool dup;             /**< DUP flag: a QoS 1/2 message sent again */
  uint8_t qos;          /**< 0, 1 or 2 */
  bool retain;          /**< RETAIN flag */
  uvmqtt_str_t topic;   /**< may be empty in v5 when a topic alias is used */
  uint16_t packet_id;   /**< QoS 1 and 2 only */
  uvmqtt_props_t props; /**< v5 properties */
  uvmqtt_bin_t payload; /**< the application message */
} uvmqtt_publish_t;

/** PUBACK, PUBREC, PUBREL, PUBCOMP. In v5 the reason code and properties are
 * omitted on the wire when the reason is 0 and there are no properties. */
typedef struct {
  uint16_t packet_id;   /**< the acknowledged packet */
  uint8_t reason_code;  /**< v5 reason code; 0 in 3.x */
  uvmqtt_props_t props; /**< v5 properties */
} uvmqtt_ack_t;

/** SUBSCRIBE. Encoding: `subs[0 .. count)` (or, when `subs` is NULL, the
 * `count` entries in `raw`, as decoded). Decoding (server role only):
 * `subs` is NULL, `count` is the number of entries and
 * uvmqtt_subscribe_next() walks them. In 3.x only the QoS bits of
 * `options` are written. */
typedef struct {
  uint16_t packet_id;                /**< the packet identifier */
  uvmqtt_props_t props;              /**< v5 properties */
  const uvmqtt_subscription_t *subs; /**< encoding: the entries */
  size_t count;                      /**< number of entries */
  const uint8_t *raw;                /**< decoded payload */
  size_t raw_len;                    /**< its length */
} uvmqtt_subscribe_t;

/** SUBACK and UNSUBACK: one reason code (granted QoS or failure) per filter.
 * A 3.x UNSUBACK carries none (count 0). On decode `codes` views the
 * input. */
typedef struct {
  uint16_t packet_id;   /**< the packet identifier */
  uvmqtt_props_t props; /**< v5 properties */
  const uint8_t *codes; /**< one reason code per filter */
  size_t count;         /**< their number */
} uvmqtt_suback_t;

/** UNSUBSCRIBE. Encoding: `filters[0 .. count)` (or `raw`, as SUBSCRIBE).
 * Decoding (server role only): `filters` is NULL and
 * uvmqtt_unsubscribe_next() walks them. */
typedef struct {
  uint16_t packet_id;          /**< the packet identifier */
  uvmqtt_props_t props;        /**< v5 properties */
  const uvmqtt_str_t *filters; /**< encoding: the filters */
  size_t count;                /**< number of filters */
  const uint8_t *raw;          /**< decoded payload */
  size_t raw_len;              /**< its length */
} uvmqtt_unsubscribe_t;

/** DISCONNECT and AUTH (AUTH is v5 only; 3.x DISCONNECT has no body). */
typedef struct {
  uint8_t reason_code;  /**< v5 reason code */
  uvmqtt_props_t props; /**< v5 properties */
} uvmqtt_reason_t;

/** Any control packet: the type, the fixed-header flags and the body of
 * that type in `u`. */
typedef struct {
  uint8_t type;  /**< uvmqtt_packet_type_t */
  uint8_t flags; /**< fixed-header low nibble, as received / to send */
  union {
    uvmqtt_connect_t connect;
    uvmqtt_connack_t connack;
    uvmqtt_publish_t publish;
    uvmqtt_ack_t ack; /**< PUBACK, PUBREC, PUBREL, PUBCOMP */
    uvmqtt_subscribe_t subscribe;
    uvmqtt_suback_t suback; /**< SUBACK, UNSUBACK */
    uvmqtt_unsubscribe_t unsubscribe;
    uvmqtt_reason_t disconnect; /**< DISCONNECT */
    uvmqtt_reason_t auth;       /**< AUTH */
  } u;                          /**< the body, by `type` */
} uvmqtt_packet_t;

/** @{ */
/** Walk the entries of a SUBSCRIBE / UNSUBSCRIBE, from the array when there
 * is one, else from `raw`. Start with *pos = 0; return 1 and fill *out while
 * there is one more, 0 at the end. */
UVMQTT_EXTERN int uvmqtt_subscribe_next(const uvmqtt_subscribe_t *s,
                                        size_t *pos,
                                        uvmqtt_subscription_t *out);
UVMQTT_EXTERN int uvmqtt_unsubscribe_next(const uvmqtt_unsubscribe_t *s,
                                          size_t *pos, uvmqtt_str_t *out);
/** @} */

/* ---- encoding ---------------------------------------------------------- */

/** Computes the full encoded size of `pkt` (fixed header included) for
 * protocol `version` into *size. `pkt->flags` is ignored: the encoder
 * derives the fixed-header flags (PUBLISH from dup/qos/retain; PUBREL,
 * SUBSCRIBE, UNSUBSCRIBE use 0010).
 * For CONNECT, `connect.protocol_version` may be 0 (meaning `version`) or
 * must equal `version`; 3.1 writes the protocol name "MQIsdp".
 * In v5, acks, DISCONNECT and AUTH omit the reason code and properties when
 * the reason is 0 and there are no properties, and omit the property
 * length when there are no properties.
 * Errors: UVMQTT_EVERSION, UVMQTT_EINVAL (unknown type, missing required
 * field, NULL data with a non-zero length, count 0 where one entry is
 * required, will QoS/retain without will, password without user name
 * before v5, AUTH before v5), UVMQTT_EQOS, UVMQTT_EFLAGS (PUBLISH with DUP
 * and QoS 0), UVMQTT_EPACKETID (id 0 where one is required),
 * UVMQTT_ETOOBIG (remaining length over 268435455 or a string over 65535
 * bytes), UVMQTT_EPROPBAD (a property not allowed on the packet),
 * UVMQTT_EPROPDUP (several subscription identifiers outside PUBLISH),
 * UVMQTT_EPROPVAL (subscription identifier 0 or too large).
 * Strings are not UTF-8 checked here; the client validates topics. */
UVMQTT_EXTERN int uvmqtt_encode_size(const uvmqtt_packet_t *pkt,
                                     uint8_t version, size_t *size);

/** Serialises `pkt` into buf[0 .. cap). Returns the number of bytes written
 * (equal to the size uvmqtt_encode_size() reports) or a negative error:
 * those of uvmqtt_encode_size(), and UVMQTT_ENOBUFS when cap is too small
 * (nothing useful is written then). */
UVMQTT_EXTERN int uvmqtt_encode(const uvmqtt_packet_t *pkt, uint8_t version,
                                uint8_t *buf, size_t cap);

/** PUBLISH without copying the payload: writes everything up to (not
 * including) the payload bytes into buf[0 .. cap) and returns its length;
 * the full packet is those bytes followed by pkt->u.publish.payload.
 * *total (may be NULL) gets the full packet size. Errors as
 * uvmqtt_encode(). The head is at most 5 + 2 + topic + 2 + 4 + props. */
UVMQTT_EXTERN int uvmqtt_encode_publish_head(const uvmqtt_packet_t *pkt,
                                             uint8_t version, uint8_t *buf,
                                             size_t cap, size_t *total);

/** Number of bytes the variable-byte integer `v` takes (1..4), or 0 when `v`
 * exceeds UVMQTT_MAX_REMAINING_LENGTH. */
UVMQTT_EXTERN int uvmqtt_varint_size(uint32_t v);

/* ---- decoding ---------------------------------------------------------- */

/** Which side is decoding: a client must never receive CONNECT, SUBSCRIBE,
 * UNSUBSCRIBE or PINGREQ; a server must never receive CONNACK, SUBACK,
 * UNSUBACK or PINGRESP. */
typedef enum { UVMQTT_ROLE_CLIENT = 0, UVMQTT_ROLE_SERVER = 1 } uvmqtt_role_t;

/** Decodes exactly one complete packet in buf[0 .. len) (fixed header
 * included, no bytes after it) for protocol `version`. For a CONNECT the
 * version is read from the packet itself and `version` is ignored (a server
 * may decode its first packet with version 0).
 * On success returns 0 and fills *out with views into buf.
 * On failure returns a specific negative code and, when err_off is not
 * NULL, the byte offset in buf where the problem was found:
 * - UVMQTT_ETYPE: reserved type 0, a type this role must never receive,
 *   AUTH before v5 (offset 0).
 * - UVMQTT_EFLAGS: reserved fixed-header flags wrong (PUBREL, SUBSCRIBE,
 *   UNSUBSCRIBE not 0010 — 3.1 also allows 1010 —, others not 0000), or a
 *   PUBLISH with QoS 0 and DUP set, which [MQTT-3.3.1-2] forbids and which
 *   is rejected, not ignored (offset 0).
 * - UVMQTT_EQOS: PUBLISH QoS 3 (offset 0), will QoS 3 (the CONNECT flags),
 *   subscription QoS 3 (the options byte).
 * - UVMQTT_EREMLEN: a remaining length needing a fifth byte (offset of the
 *   fourth) or not in its minimal encoding, e.g. 80 00 (offset of the last,
 *   zero byte). MQTT 5.0 [MQTT-1.5.5-1] requires the minimal encoding and
 *   3.1.1 encodes it that way; it is enforced in every version. The same
 *   holds for other v5 varints, reported as UVMQTT_EMALFORMED.
 * - UVMQTT_ETRUNC: a field runs past the end of the packet (offset of the
 *   field, or of its length prefix), or buf holds less than the packet
 *   (offset len).
 * - UVMQTT_ETRAILING: bytes left over inside the packet, or after it in
 *   buf (offset of the first extra byte).
 * - UVMQTT_EPACKETID: packet identifier 0 where one is required.
 * - UVMQTT_EUTF8, UVMQTT_EWILDCARD: the offending byte of a string (the
 *   lead byte of a bad multi-byte sequence); wildcards are rejected in
 *   PUBLISH topics and will topics.
 * - UVMQTT_ETOPIC: empty topic in 3.x, or in v5 without a Topic Alias.
 * - UVMQTT_EFILTER: a SUBSCRIBE/UNSUBSCRIBE filter that is empty or has a
 *   misplaced wildcard or a bad $share/ prefix.
 * - UVMQTT_EPROPDUP, UVMQTT_EPROPBAD, UVMQTT_EPROPVAL: at the property's
 *   identifier byte. EPROPBAD also covers one-directional properties
 *   received in the wrong direction (Subscription Identifier on a PUBLISH to
 *   a server, Session Expiry Interval on a DISCONNECT to a client).
 * - UVMQTT_EREASON: a reason code outside the set the specification fixes
 *   for the packet (3.x CONNACK > 5, 3.x SUBACK not 0/1/2/0x80, ...).
 * - UVMQTT_EVERSION: CONNECT with an unknown protocol level or a name not
 *   matching it; any other packet when `version` is not 3, 4 or 5.
 * - UVMQTT_EMALFORMED: bad CONNECT flags (reserved bit, will QoS/retain
 *   without will, password without user name before v5), reserved bits in
 *   CONNACK flags or subscription options, SUBSCRIBE/UNSUBSCRIBE/SUBACK/
 *   v5 UNSUBACK without entries.
 * - UVMQTT_EPROTOCOL: No Local on a shared subscription. */
UVMQTT_EXTERN int uvmqtt_decode(const uint8_t *buf, size_t len, uint8_t version,
                                uvmqtt_role_t role, uvmqtt_packet_t *out,
                                size_t *err_off);

/* Results of uvmqtt_parser_feed() besides errors. */
#define UVMQTT_PARSE_MORE 0        /**< all input used, no packet yet */
#define UVMQTT_PARSE_PACKET 1      /**< *out holds a packet */
#define UVMQTT_PARSE_NEED_BUFFER 2 /**< lend `need` bytes, then feed again */

/** Incremental parser. The struct is public so it can live inside another
 * object; treat its fields as private except where noted.
 *
 * Use:
 *
 *   uvmqtt_parser_init(&p, UVMQTT_V311, UVMQTT_ROLE_CLIENT, max_size);
 *   while (len > 0) {
 *     size_t used;
 *     int rc = uvmqtt_parser_feed(&p, data, len, &used, &pkt);
 *     data += used; len -= used;
 *     if (rc == UVMQTT_PARSE_PACKET) {
 *       handle(&pkt);
 *       free(uvmqtt_parser_take_buffer(&p));  // NULL when none was lent
 *     } else if (rc == UVMQTT_PARSE_NEED_BUFFER) {
 *       uvmqtt_parser_set_buffer(&p, malloc(p.need), p.need);
 *     } else if (rc < 0) {
 *       fail(rc, p.error_offset);
 *       free(uvmqtt_parser_take_buffer(&p));
 *     }
 *   }
 *
 * - A packet wholly inside the chunk is decoded in place (views into the
 *   chunk, no copy).
 * - A packet split across chunks is assembled in a buffer the caller lends:
 *   once the fixed header is known the parser returns
 *   UVMQTT_PARSE_NEED_BUFFER with `need` set to the packet's full size and
 *   consumes nothing more until uvmqtt_parser_set_buffer() is called. The
 *   packet then returned views that buffer; after handling it, the caller
 *   takes the buffer back with uvmqtt_parser_take_buffer() (it returns NULL
 *   when the last packet needed none) and may free or reuse it.
 * - The fixed header (at most 5 bytes) is buffered inside the struct, so an
 *   idle parser holds no memory of its own.
 * - Errors are sticky: after one, every call returns the same code.
 *   `error_offset` is the offset of the offending byte counted from the
 *   first byte ever fed. A packet whose size exceeds max_packet_size fails
 *   with UVMQTT_ETOOBIG as soon as its remaining length is read. */
typedef struct {
  /* public, read-only */
  size_t need;           /**< bytes wanted after UVMQTT_PARSE_NEED_BUFFER */
  int error;             /**< sticky error, 0 when none */
  uint64_t error_offset; /**< where the error is, from the first byte fed */
  uint64_t offset;       /**< total bytes consumed so far */
  /* configuration (may be changed between packets) */
  uint8_t version;          /**< protocol level (UVMQTT_V31 ...) */
  uint8_t role;             /**< uvmqtt_role_t */
  uint32_t max_packet_size; /**< 0 means the protocol maximum */
  /* private */
  /** @cond */
  uint8_t hdr[5];
  uint8_t hdr_len;
  uint8_t state;
  uint32_t remaining;
  uint8_t *buf; /**< lent buffer for a split packet */
  size_t buf_cap;
  size_t buf_len;
  size_t total;      /**< full size of the packet being assembled */
  uint8_t *done_buf; /**< buffer of the packet last returned */
  /** @endcond */
} uvmqtt_parser_t;

/** Sets up `p` for protocol `version` (UVMQTT_V31, UVMQTT_V311 or
 * UVMQTT_V5; `p->version` may be changed between packets, e.g. by a
 * server once it has read the CONNECT), `role`, and the largest packet accepted
 * (0: the protocol maximum). The parser holds no memory; a lent buffer is given
 * back with uvmqtt_parser_take_buffer(). */
UVMQTT_EXTERN void uvmqtt_parser_init(uvmqtt_parser_t *p, uint8_t version,
                                      uvmqtt_role_t role,
                                      uint32_t max_packet_size);

/** Feeds data[0 .. len). *used gets the number of bytes consumed (always set,
 * possibly 0). Returns at most one packet per call: UVMQTT_PARSE_MORE,
 * UVMQTT_PARSE_PACKET or UVMQTT_PARSE_NEED_BUFFER, or a negative sticky
 * error with `error_offset` set (the codes and offsets of uvmqtt_decode(),
 * shifted to the stream; UVMQTT_ETOOBIG at the packet's first byte).
 * Not sticky: UVMQTT_ESTATE when the buffer of the packet last returned has
 * not been taken back with uvmqtt_parser_take_buffer() (nothing consumed).
 * A packet with remaining length 0 split across chunks needs no buffer. */
UVMQTT_EXTERN int uvmqtt_parser_feed(uvmqtt_parser_t *p, const uint8_t *data,
                                     size_t len, size_t *used,
                                     uvmqtt_packet_t *out);

/** Lends `buf` (at least p->need bytes) after UVMQTT_PARSE_NEED_BUFFER.
 * Returns 0 or UVMQTT_EINVAL (no buffer was asked for, or cap too small). */
UVMQTT_EXTERN int uvmqtt_parser_set_buffer(uvmqtt_parser_t *p, uint8_t *buf,
                                           size_t cap);

/** Gives back the buffer lent for the packet last returned (NULL if that
 * packet needed none), or, on an error or at teardown, the buffer still
 * held. Each lent buffer is given back exactly once. Taking the buffer of a
 * packet still being assembled makes the parser fail with UVMQTT_ESTATE
 * (sticky), since the bytes copied so far are gone. */
UVMQTT_EXTERN uint8_t *uvmqtt_parser_take_buffer(uvmqtt_parser_t *p);

/** True while a packet is partly received (used by keepalive logic: any
 * inbound byte is a sign of life, and by tests). */
UVMQTT_EXTERN bool uvmqtt_parser_in_packet(const uvmqtt_parser_t *p);

/* ---- helpers shared with the client ------------------------------------ */

/** 0 when s[0 .. len) is well-formed UTF-8 as MQTT requires (no U+0000, no
 * surrogates, no overlong forms), else UVMQTT_EUTF8 with *err_off (may be
 * NULL) set to the offending byte. */
UVMQTT_EXTERN int uvmqtt_utf8_check(const char *s, size_t len, size_t *err_off);

/** Short name of a packet type ("PUBLISH"), "UNKNOWN" otherwise. */
UVMQTT_EXTERN const char *uvmqtt_packet_name(int type);

/** Short description of a v5 reason code ("Not authorized"), or of a 3.x
 * CONNACK return code when `connack_v3` is true. Never NULL. */
UVMQTT_EXTERN const char *uvmqtt_reason_string(uint8_t code, bool connack_v3);

#ifdef __cplusplus
}
#endif
#endif
