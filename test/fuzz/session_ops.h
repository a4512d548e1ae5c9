/* The script format read by fuzz_session.c and written by
 * gen_session_corpus.c.
 *
 * An input starts with FS_HEADER_LEN bytes of setup (missing bytes read as
 * zero):
 *   [0] protocol version: 3 + b % 3
 *   [1] bits 3..0: max_inflight (0: unlimited); bits 7..4: max_queued
 *   [2] bits 5..0: max_queued_bytes / 64; bit 6: DROP_OLDEST; bit 7: topic
 *       alias auto (outgoing)
 *   [3] bits 3..0: topic_alias_max_in; bits 7..4: receive_maximum
 *   [4] max_packet_size: 0 or 32 + 8 * b
 *   [5] ping_timeout_pct (0: default)
 *   [6] the first CONNECT's flags, as OP_CONNECT's argument
 * then operations until the input ends, each an opcode byte (taken modulo
 * FS_OP_COUNT) followed by its fixed argument bytes. */
#ifndef UVMQTT_TEST_FUZZ_SESSION_OPS_H
#define UVMQTT_TEST_FUZZ_SESSION_OPS_H

#define FS_HEADER_LEN 7

enum {
  /* n, split, then n raw broker bytes fed in two chunks */
  FS_FEED = 0,
  /* flags (bit 0 session present, bit 1 refused, bit 2 split), v5 property
   * mask (bit 0 receive max, 1 max packet size, 2 topic alias max, 3 max
   * QoS, 4 server keepalive, 5 assigned client id, 6 no retain), receive max,
   * max packet hi, lo, alias max, max qos / keepalive */
  FS_CONNACK,
  /* index into what the broker owes (PUBACK/PUBREC/PUBCOMP/SUBACK/
   * UNSUBACK), reason selector */
  FS_ACK,
  /* flags (bits 1..0 QoS, 2 dup, 3 retain, 5..4 alias mode, 6 split),
   * id selector, topic selector, payload length */
  FS_BPUBLISH,
  /* index into the QoS 2 ids the client has PUBREC'd */
  FS_BPUBREL,
  /* which: PINGRESP, DISCONNECT, AUTH; reason */
  FS_BCTRL,
  /* flags (bits 1..0 QoS (3 is invalid), 2 zero-copy, 3 retain,
   * 4 properties, 5 expiry, 6 no callback), topic selector, size selector */
  FS_PUBLISH,
  /* flags (bits 1..0 count - 1, 3..2 QoS, 4 no callback, 5 v5 options),
   * filter selector */
  FS_SUBSCRIBE,
  FS_UNSUBSCRIBE,
  /* milliseconds / 250 to advance the clock, then tick */
  FS_TICK,
  /* take the output; mode: 0 done(0), 1 hold, 2 done(error), 3 hold */
  FS_TAKE,
  /* return the oldest held batch; status selector (0: success) */
  FS_DONE,
  /* connection lost; status selector */
  FS_LOST,
  /* reconnect; flags (bits 3..0 keepalive, 4 clean, 5 will, 6 user name,
   * 7 v5 session expiry) */
  FS_CONNECT,
  /* client DISCONNECT or AUTH; flags (bit 0 AUTH), reason */
  FS_CDISCONNECT,
  /* fail the n-th allocation from now (0: none) */
  FS_FAILALLOC,
  FS_OP_COUNT
};

/* Argument bytes of each operation (FS_FEED also has its n bytes). */
static const unsigned char fs_op_args[FS_OP_COUNT] = {
    [FS_FEED] = 2,     [FS_CONNACK] = 7,   [FS_ACK] = 2,
    [FS_BPUBLISH] = 4, [FS_BPUBREL] = 1,   [FS_BCTRL] = 2,
    [FS_PUBLISH] = 3,  [FS_SUBSCRIBE] = 2, [FS_UNSUBSCRIBE] = 2,
    [FS_TICK] = 1,     [FS_TAKE] = 1,      [FS_DONE] = 1,
    [FS_LOST] = 1,     [FS_CONNECT] = 1,   [FS_CDISCONNECT] = 2,
    [FS_FAILALLOC] = 1};

#endif
