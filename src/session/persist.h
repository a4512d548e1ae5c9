/* The session's records in a store: how a client's outgoing messages, their
 * states and its incoming QoS 2 ids are written as store records, and how
 * a session is rebuilt from them. Used by the client (src/client/); the
 * session itself stays free of I/O (it reports changes through
 * on_persist, see session.h).
 *
 * Record ids (per client; id 0 is the store's identity record):
 *   MSG   (1 << 32) | packet id: the message, written once when accepted
 *   STATE (2 << 32) | packet id: 1 byte, 1 sent / 2 PUBREC received;
 *                                 absent: queued, never sent
 *   IN    (3 << 32) | packet id: empty, an incoming QoS 2 id not released;
 *                    or u64 delivery id: recorded before delivery (record
 *                    first), so possibly not delivered yet
 *   RUN   (4 << 32): u64, how many processes have used this client's
 *                    records (manual acknowledgement numbers its handles
 *                    with it, so that a handle of an earlier process is
 *                    refused instead of acknowledging another message)
 * A MSG value: u8 format (1), u8 protocol version, u16 0, u32 expiry
 * interval (s, 0 none), u64 sequence (publish order), u64 wall-clock ms
 * when published, then the PUBLISH packet as the codec encodes it for that
 * protocol version (DUP clear, the packet id, v5 properties). */
#ifndef UVMQTT_SRC_SESSION_PERSIST_H
#define UVMQTT_SRC_SESSION_PERSIST_H

#include <stddef.h>
#include <stdint.h>

#include "session/session.h"
#include "store/store_int.h"

#define UVMQTT__REC_MSG(id) ((1ull << 32) | (uint64_t)(id))
#define UVMQTT__REC_STATE(id) ((2ull << 32) | (uint64_t)(id))
#define UVMQTT__REC_IN(id) ((3ull << 32) | (uint64_t)(id))
#define UVMQTT__REC_RUN (4ull << 32)
#define UVMQTT__REC_KIND(rid) ((unsigned)((rid) >> 32))
#define UVMQTT__REC_PID(rid) ((uint16_t)((rid)&0xffff))

#define UVMQTT__MSG_HDR 24

/* A MSG value in up to two pieces (head, payload): what uvmqtt__store_put
 * takes. head points into inline storage or into heap memory that
 * uvmqtt__persist_msg_free releases. */
typedef struct {
  const void *bufs[2];
  size_t lens[2];
  size_t n;
  uint8_t *heap;
  uint8_t small[384];
} uvmqtt__persist_msg_t;

/* Encodes message m (views into it: use before m can go). Errors as
 * uvmqtt_encode. */
int uvmqtt__persist_msg_encode(const uvmqtt_smsg_t *m, uint8_t version,
                               uint64_t seq, uint64_t wall_ms,
                               uvmqtt__persist_msg_t *out);
void uvmqtt__persist_msg_free(uvmqtt__persist_msg_t *out);

/* What a restore found. */
typedef struct {
  size_t queued, sent, pubrec; /* messages put back, by state */
  size_t in_ids;               /* incoming QoS 2 ids put back */
  size_t bad;       /* records not used (undecodable, duplicate packet id) */
  uint64_t max_seq; /* highest sequence seen (0 none) */
  uint64_t runs;    /* the RUN record (0 none) */
} uvmqtt__persist_report_t;

/* Called for each message put back, in publish order. */
typedef void (*uvmqtt__persist_each_fn)(void *ctx, const uvmqtt_publish_t *pub,
                                        int state);

/* Rebuilds session s (before its first connect) from a client's records
 * (any order). Restored messages complete through on_publish_done with
 * cb/arg. Records that cannot be decoded are skipped and counted; their
 * record ids are written to bad_ids[0 .. report->bad) (may be NULL; room
 * for n) so the
 * caller can remove them. Returns 0 or UVMQTT_ENOMEM / UVMQTT_ESTATE. */
int uvmqtt__persist_restore(uvmqtt_session_t *s, uint8_t version, uint64_t now,
                            uint64_t wall_ms, const uvmqtt__store_rec_t *recs,
                            size_t n, uvmqtt_session_fn cb, void *arg,
                            uvmqtt__persist_each_fn each, void *ctx,
                            uvmqtt__persist_report_t *report,
                            uint64_t *bad_ids);

#endif
