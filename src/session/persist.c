/* The session's records in a store: encoding a message record and
 * rebuilding a session from a client's records (format in
 * persist.h and docs/persistence.md). */
#include "session/persist.h"

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "uvmqtt/errors.h"

#define MSG_FORMAT 1

int uvmqtt__persist_msg_encode(const uvmqtt_smsg_t *m, uint8_t version,
                               uint64_t seq, uint64_t wall_ms,
                               uvmqtt__persist_msg_t *out) {
  uvmqtt_packet_t pkt;
  uint32_t expiry;
  int state;
  size_t total;
  memset(&pkt, 0, sizeof(pkt));
  pkt.type = UVMQTT_PUBLISH;
  uvmqtt__smsg_view(m, &pkt.u.publish, &expiry, &state);
  out->heap = NULL;
  out->n = 0;
  int rc = uvmqtt_encode_size(&pkt, version, &total);
  if (rc < 0)
    return rc;
  size_t plen = pkt.u.publish.payload.len;
  size_t head = UVMQTT__MSG_HDR + total - plen;
  uint8_t *h = out->small;
  if (head > sizeof(out->small)) {
    h = out->heap = uvmqtt__malloc(head);
    if (!h)
      return UVMQTT_ENOMEM;
  }
  h[0] = MSG_FORMAT;
  h[1] = version;
  h[2] = h[3] = 0;
  uvmqtt__le_put32(h + 4, expiry);
  uvmqtt__le_put64(h + 8, seq);
  uvmqtt__le_put64(h + 16, wall_ms);
  rc = uvmqtt_encode_publish_head(&pkt, version, h + UVMQTT__MSG_HDR,
                                  head - UVMQTT__MSG_HDR, NULL);
  if (rc < 0) {
    uvmqtt__persist_msg_free(out);
    return rc;
  }
  out->bufs[0] = h;
  out->lens[0] = head;
  out->bufs[1] = pkt.u.publish.payload.data;
  out->lens[1] = plen;
  out->n = plen ? 2 : 1;
  return 0;
}

void uvmqtt__persist_msg_free(uvmqtt__persist_msg_t *out) {
  uvmqtt__free(out->heap);
  out->heap = NULL;
}

/* ---- restore ----------------------------------------------------------------
 */

typedef struct {
  const uvmqtt__store_rec_t *rec;
  uint64_t seq;
  int state;
} pending_t;

static int by_seq(const void *a, const void *b) {
  const pending_t *x = a, *y = b;
  return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Checks a MSG record and decodes its PUBLISH (views into the record). */
static int decode_msg(const uvmqtt__store_rec_t *r, uint8_t version,
                      uvmqtt_publish_t *pub, uint32_t *expiry, uint64_t *seq,
                      uint64_t *wall) {
  const uint8_t *v = r->value;
  uvmqtt_packet_t pkt;
  if (r->len < UVMQTT__MSG_HDR + 2 || v[0] != MSG_FORMAT || v[1] != version)
    return UVMQTT_ESTORE_RECORD;
  int rc = uvmqtt_decode(v + UVMQTT__MSG_HDR, r->len - UVMQTT__MSG_HDR, version,
                         UVMQTT_ROLE_SERVER, &pkt, NULL);
  if (rc < 0 || pkt.type != UVMQTT_PUBLISH || pkt.u.publish.qos == 0 ||
      pkt.u.publish.packet_id != UVMQTT__REC_PID(r->id))
    return UVMQTT_ESTORE_RECORD;
  *pub = pkt.u.publish;
  *expiry = uvmqtt__le_get32(v + 4);
  *seq = uvmqtt__le_get64(v + 8);
  *wall = uvmqtt__le_get64(v + 16);
  return 0;
}

int uvmqtt__persist_restore(uvmqtt_session_t *s, uint8_t version, uint64_t now,
                            uint64_t wall_ms, const uvmqtt__store_rec_t *recs,
                            size_t n, uvmqtt_session_fn cb, void *arg,
                            uvmqtt__persist_each_fn each, void *ctx,
                            uvmqtt__persist_report_t *report,
                            uint64_t *bad_ids) {
  uvmqtt__persist_report_t r;
  uint8_t *states = NULL;
  pending_t *msgs = NULL;
  size_t nmsgs = 0;
  int rc = 0;

#define BAD(rid)                                                               \
  do {                                                                         \
    if (bad_ids)                                                               \
      bad_ids[r.bad] = (rid);                                                  \
    r.bad++;                                                                   \
  } while (0)
  memset(&r, 0, sizeof(r));
  if (n) {
    states = uvmqtt__calloc(65536, 1);
    msgs = uvmqtt__malloc(n * sizeof(*msgs));
    if (!states || !msgs) {
      rc = UVMQTT_ENOMEM;
      goto out;
    }
  }
  /* States first: they may come after their message in any order. */
  for (size_t i = 0; i < n; i++) {
    const uvmqtt__store_rec_t *rec = &recs[i];
    if (UVMQTT__REC_KIND(rec->id) != 2)
      continue;
    const uint8_t *v = rec->value;
    if (rec->len == 1 && (v[0] == 1 || v[0] == 2))
      states[UVMQTT__REC_PID(rec->id)] = v[0];
    else
      BAD(rec->id);
  }
  for (size_t i = 0; i < n; i++) {
    const uvmqtt__store_rec_t *rec = &recs[i];
    unsigned kind = UVMQTT__REC_KIND(rec->id);
    if (kind == 1) {
      uvmqtt_publish_t pub;
      uint32_t expiry;
      uint64_t seq, wall;
      if (decode_msg(rec, version, &pub, &expiry, &seq, &wall) < 0) {
        BAD(rec->id);
        continue;
      }
      msgs[nmsgs].rec = rec;
      msgs[nmsgs].seq = seq;
      msgs[nmsgs].state = states[UVMQTT__REC_PID(rec->id)];
      nmsgs++;
    } else if (kind == 3 && (rec->len == 0 || rec->len == 8) &&
               UVMQTT__REC_PID(rec->id)) {
      /* 8 bytes: recorded first, with its delivery id */
      uint64_t did = rec->len ? uvmqtt__le_get64(rec->value) : 0;
      rc = uvmqtt__session_restore_in_id(s, UVMQTT__REC_PID(rec->id), did);
      if (rc < 0)
        goto out;
      r.in_ids++;
    } else if (rec->id == UVMQTT__REC_RUN && rec->len == 8) {
      r.runs = uvmqtt__le_get64(rec->value);
    } else if (kind != 2) {
      BAD(rec->id);
    }
  }
  if (nmsgs > 1)
    qsort(msgs, nmsgs, sizeof(*msgs), by_seq);
  for (size_t i = 0; i < nmsgs; i++) {
    uvmqtt_publish_t pub;
    uint32_t expiry;
    uint64_t seq, wall;
    (void)decode_msg(msgs[i].rec, version, &pub, &expiry, &seq, &wall);
    int state = msgs[i].state;
    if (state == 2 && pub.qos != 2)
      state = 1;
    if (expiry) { /* what is left of its lifetime; 1 s when none */
      uint64_t gone = wall_ms > wall ? (wall_ms - wall) / 1000 : 0;
      expiry = gone >= expiry ? 1 : (uint32_t)(expiry - gone);
    }
    rc = uvmqtt__session_restore_msg(s, now, &pub, expiry, state, cb, arg);
    if (rc == UVMQTT_EEXIST || rc == UVMQTT_EINVAL) {
      BAD(msgs[i].rec->id); /* two messages with one packet id */
      rc = 0;
      continue;
    }
    if (rc < 0)
      goto out;
    if (seq > r.max_seq)
      r.max_seq = seq;
    if (state == 0)
      r.queued++;
    else if (state == 1)
      r.sent++;
    else
      r.pubrec++;
    if (each)
      each(ctx, &pub, state);
  }
out:
  uvmqtt__free(states);
  uvmqtt__free(msgs);
  if (report)
    *report = r;
  return rc;
}
