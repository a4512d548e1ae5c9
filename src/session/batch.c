/* The session's output: batches of encoded packets (contiguous bytes, and
 * large payloads written from the messages' own memory) with the
 * completions to fire once written, handed to the owner as iovecs, and the
 * per-thread pool of spare batches. */
#include <string.h>

#include "alloc.h"
#include "session/session_int.h"
#include "uvmqtt/errors.h"

/* Spare output batches, shared by the sessions of a thread (see
 * batch_pool below). */
#define SPARE_BATCHES 4
/* A new batch starts small (a CONNECT, a SUBSCRIBE, a few acks) and
 * doubles as needed; pooled batches keep what they grew to. Starting at
 * 1 KiB cost ~1.8 KiB per client that connected in the same iteration
 * (64 handshakes in flight: ~115 KiB of peak RSS, left as fragments). */
#define BATCH_MIN_BYTES 128

typedef struct {
  size_t off;
  size_t len;
  const uint8_t *ext; /* NULL: bytes at buf + off */
} seg_t;

typedef struct {
  uvmqtt_session_fn cb;
  void *arg;
} done_t;

struct uvmqtt_out_batch_s {
  uvmqtt_out_batch_t *next;
  uint8_t *buf;
  size_t len, cap;
  seg_t *segs;
  size_t nsegs, segcap;
  uvmqtt_iov_t *iov;
  size_t iovcap;
  uvmqtt_smsg_t **refs;
  size_t nrefs, refcap;
  done_t *done;
  size_t ndone, donecap;
};

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap)
    return 0;
  size_t n = *cap ? *cap * 2 : 4;
  while (n < need)
    n *= 2;
  void *q = uvmqtt__realloc(*p, n * elem);
  if (!q)
    return UVMQTT_ENOMEM;
  *p = q;
  *cap = n;
  return 0;
}

static void batch_free(uvmqtt_out_batch_t *b) {
  uvmqtt__free(b->buf);
  uvmqtt__free(b->segs);
  uvmqtt__free(b->iov);
  uvmqtt__free(b->refs);
  uvmqtt__free(b->done);
  uvmqtt__free(b);
}

/* A batch is only busy while it is filled and written, so the sessions of
 * a thread (a loop) share their spare batches instead of keeping two
 * each: thousands of idle connections hold no output memory at all. The
 * pool is emptied when the thread's last session is freed, so nothing
 * stays allocated once every session is gone. A session is used on one
 * thread at a time (its loop's), which is what makes this safe; a loop
 * that moves to another thread is handled in pool_join(). */
static _Thread_local struct {
  uvmqtt_out_batch_t *head;
  size_t n;
  size_t sessions;
  uint32_t id; /* 0 until first joined, then unique in the process */
} batch_pool;

/* Pool ids are handed out once per thread that produces output; a
 * session keeps its pool's id (4 bytes, not a pointer). */
static uint32_t pool_ids;

static void batch_pool_drain(void) {
  while (batch_pool.head) {
    uvmqtt_out_batch_t *b = batch_pool.head;
    batch_pool.head = b->next;
    batch_free(b);
  }
  batch_pool.n = 0;
}

/* A session joins the pool of the thread that first uses it for output
 * (the loop's thread), not of the thread that created it: a client may be
 * created before its loop runs on another thread. A loop may also move to
 * another thread (uvmqtt_thread_stop() hands it back, and the closes end
 * there): the session is then counted in that thread's pool from its
 * next use on. The pool it left is never touched from here (its thread
 * may be gone); its spares go when that thread ends
 * (uvmqtt__session_thread_end()) or with its last session. */
static void pool_join(uvmqtt_session_t *s) {
  if (batch_pool.id == 0)
    batch_pool.id = __atomic_add_fetch(&pool_ids, 1, __ATOMIC_RELAXED);
  if (s->pool_home != batch_pool.id) {
    s->pool_home = batch_pool.id;
    batch_pool.sessions++;
  }
}

void uvmqtt__session_thread_end(void) {
  batch_pool_drain();
}

static uvmqtt_out_batch_t *cur_batch(uvmqtt_session_t *s) {
  if (s->cur)
    return s->cur;
  pool_join(s);
  uvmqtt_out_batch_t *b = batch_pool.head;
  if (b) {
    batch_pool.head = b->next;
    batch_pool.n--;
  } else {
    b = uvmqtt__calloc(1, sizeof(*b));
    if (!b)
      return NULL;
  }
  b->next = NULL;
  b->len = b->nsegs = b->nrefs = b->ndone = 0;
  s->cur = b;
  if (s->ev_->on_output)
    s->ev_->on_output(s->ud);
  return b;
}

/* Room for one more segment; the iov array grows with it so that taking
 * the output can never fail. */
static int grow_segs(uvmqtt_out_batch_t *b) {
  if (grow((void **)&b->segs, &b->segcap, b->nsegs + 1, sizeof(seg_t)))
    return UVMQTT_ENOMEM;
  if (grow((void **)&b->iov, &b->iovcap, b->segcap, sizeof(uvmqtt_iov_t)))
    return UVMQTT_ENOMEM;
  return 0;
}

uint8_t *uvmqtt__out_reserve(uvmqtt_session_t *s, size_t n) {
  uvmqtt_out_batch_t *b = cur_batch(s);
  if (!b)
    return NULL;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : BATCH_MIN_BYTES;
    while (cap < b->len + n)
      cap *= 2;
    uint8_t *nb = uvmqtt__realloc(b->buf, cap);
    if (!nb)
      return NULL;
    b->buf = nb;
    b->cap = cap;
  }
  if (b->nsegs == 0 || b->segs[b->nsegs - 1].ext != NULL) {
    if (grow_segs(b))
      return NULL;
    b->segs[b->nsegs++] = (seg_t){b->len, 0, NULL};
  }
  uint8_t *p = b->buf + b->len;
  b->len += n;
  b->segs[b->nsegs - 1].len += n;
  return p;
}

void uvmqtt__out_unreserve(uvmqtt_session_t *s, size_t n) {
  s->cur->len -= n;
  /* A segment left empty goes too: the output never holds an empty
   * entry (nor a batch of nothing but empty entries). */
  if ((s->cur->segs[s->cur->nsegs - 1].len -= n) == 0)
    s->cur->nsegs--;
}

int uvmqtt__out_ext(uvmqtt_session_t *s, const uint8_t *p, size_t n,
                    uvmqtt_smsg_t *ref) {
  uvmqtt_out_batch_t *b = cur_batch(s);
  if (!b)
    return UVMQTT_ENOMEM;
  if (grow_segs(b))
    return UVMQTT_ENOMEM;
  if (ref) {
    if (grow((void **)&b->refs, &b->refcap, b->nrefs + 1, sizeof(*b->refs)))
      return UVMQTT_ENOMEM;
    b->refs[b->nrefs++] = ref;
    ref->refs++;
  }
  b->segs[b->nsegs++] = (seg_t){0, n, p};
  return 0;
}

int uvmqtt__out_done_entry(uvmqtt_session_t *s, uvmqtt_session_fn cb,
                           void *arg) {
  if (!cb)
    return 0;
  uvmqtt_out_batch_t *b = cur_batch(s);
  if (!b || grow((void **)&b->done, &b->donecap, b->ndone + 1, sizeof(done_t)))
    return UVMQTT_ENOMEM;
  b->done[b->ndone++] = (done_t){cb, arg};
  return 0;
}

int uvmqtt__out_done_room(uvmqtt_session_t *s, uvmqtt_session_fn cb) {
  if (!cb)
    return 0;
  uvmqtt_out_batch_t *b = cur_batch(s);
  if (!b || grow((void **)&b->done, &b->donecap, b->ndone + 1, sizeof(done_t)))
    return UVMQTT_ENOMEM;
  return 0;
}

int uvmqtt__out_packet(uvmqtt_session_t *s, const uvmqtt_packet_t *pkt) {
  size_t size;
  int rc = uvmqtt_encode_size(pkt, s->version, &size);
  if (rc < 0)
    return rc;
  uint8_t *p = uvmqtt__out_reserve(s, size);
  if (!p)
    return UVMQTT_ENOMEM;
  rc = uvmqtt_encode(pkt, s->version, p, size);
  if (rc < 0) {
    uvmqtt__out_unreserve(s, size);
    return rc;
  }
  return 0;
}

int uvmqtt__out_ack(uvmqtt_session_t *s, uint8_t type, uint16_t id,
                    uint8_t reason) {
  uvmqtt_packet_t pkt;
  memset(&pkt, 0, sizeof(pkt));
  pkt.type = type;
  pkt.u.ack.packet_id = id;
  pkt.u.ack.reason_code = reason;
  return uvmqtt__out_packet(s, &pkt);
}

int uvmqtt__out_publish(uvmqtt_session_t *s, uint64_t now,
                        const uvmqtt_publish_t *pub, uvmqtt_smsg_t *ref,
                        bool ext_ok) {
  uvmqtt_packet_t pkt;
  size_t total;
  memset(&pkt, 0, sizeof(pkt));
  pkt.type = UVMQTT_PUBLISH;
  pkt.u.publish = *pub;
  if (ref && ref->expiry_s && s->version == UVMQTT_V5) {
    /* v5: send the remaining lifetime. */
    uint64_t waited = (now - ref->queued_at) / 1000;
    pkt.u.publish.props.present |=
        UVMQTT_PROP_BIT(UVMQTT_PROP_MESSAGE_EXPIRY_INTERVAL);
    pkt.u.publish.props.message_expiry_interval =
        waited >= ref->expiry_s ? 1 : (uint32_t)(ref->expiry_s - waited);
  }
  uint16_t new_alias = 0; /* a mapping the broker learns from this packet */
  if (s->server_alias_max &&
      !(pub->props.present & UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS))) {
    uint16_t alias;
    bool known;
    uvmqtt__alias_out(s, pub->topic.data, pub->topic.len, &alias, &known);
    if (alias) {
      pkt.u.publish.props.present |= UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS);
      pkt.u.publish.props.topic_alias = alias;
      if (known)
        pkt.u.publish.topic.len = 0;
      else
        new_alias = alias;
    }
  }
  int rc = uvmqtt_encode_size(&pkt, s->version, &total);
  if (rc == 0 && new_alias && s->server_max_packet &&
      total > s->server_max_packet) {
    /* Defining the alias is what makes it too large: send it without. The
     * alias is optional, the limit is not [MQTT-3.2.2-15]. */
    uvmqtt__alias_out_forget(s, new_alias);
    new_alias = 0;
    pkt.u.publish.props.present &= ~UVMQTT_PROP_BIT(UVMQTT_PROP_TOPIC_ALIAS);
    rc = uvmqtt_encode_size(&pkt, s->version, &total);
  }
  if (rc == 0 && s->server_max_packet && total > s->server_max_packet)
    rc = UVMQTT_ETOOBIG; /* e.g. queued before the limit was known */
  if (rc < 0)
    goto fail;
  size_t plen = pub->payload.len;
  bool ext = ext_ok && plen > INLINE_PAYLOAD_MAX;
  size_t head = total - plen;
  uint8_t *p = uvmqtt__out_reserve(s, ext ? head : total);
  if (!p) {
    rc = UVMQTT_ENOMEM;
    goto fail;
  }
  rc = uvmqtt_encode_publish_head(&pkt, s->version, p, head, NULL);
  if (rc < 0 || (size_t)rc != head) {
    uvmqtt__out_unreserve(s, ext ? head : total);
    rc = rc < 0 ? rc : UVMQTT_EINVAL;
    goto fail;
  }
  if (!ext) {
    if (plen)
      memcpy(p + head, pub->payload.data, plen);
    return 0;
  }
  rc = uvmqtt__out_ext(s, pub->payload.data, plen, ref);
  if (rc < 0) {
    uvmqtt__out_unreserve(s, head); /* no PUBLISH head without its payload */
    goto fail;
  }
  return 0;
fail:
  /* The broker never saw this packet: forget the mapping it would have
   * defined, or a later PUBLISH would use the alias alone. */
  if (new_alias) {
    uvmqtt__alias_out_forget(s, new_alias);
  }
  return rc;
}

void uvmqtt__batch_release(uvmqtt_session_t *s, uvmqtt_out_batch_t *b,
                           int status) {
  for (size_t i = 0; i < b->ndone; i++)
    if (s->ev_->on_publish_done)
      s->ev_->on_publish_done(s->ud, b->done[i].cb, b->done[i].arg, status, 0,
                              0, NULL);
  for (size_t i = 0; i < b->nrefs; i++) {
    uvmqtt_smsg_t *m = b->refs[i];
    if (--m->refs == 0 && m->done && (m->stored || s->freeing)) {
      if (m->qos == 0)
        m->status = status;
      uvmqtt__session_msg_fire(s, m, NULL);
    }
  }
  b->ndone = b->nrefs = b->nsegs = b->len = 0;
  pool_join(s);
  if (batch_pool.n < SPARE_BATCHES && b->cap <= 1 << 20) {
    b->next = batch_pool.head;
    batch_pool.head = b;
    batch_pool.n++;
  } else {
    batch_free(b);
  }
}

void uvmqtt__batch_pool_leave(uvmqtt_session_t *s) {
  /* Only the pool of this thread is counted down: a session last used on
   * another thread is not counted here. */
  if (s->pool_home != 0 && s->pool_home == batch_pool.id &&
      --batch_pool.sessions == 0)
    batch_pool_drain();
}

size_t uvmqtt__session_spare_batches(void) {
  return batch_pool.n;
}

size_t uvmqtt__session_take_output(uvmqtt_session_t *s, uint64_t now,
                                   const uvmqtt_iov_t **iov,
                                   uvmqtt_out_batch_t **batch) {
  uvmqtt_out_batch_t *b = s->cur;
  if (!b)
    return 0;
  if (b->nsegs == 0) {
    /* Only completions (nothing to write): finish them right away. */
    s->cur = NULL;
    uvmqtt__batch_release(s, b, 0);
    return 0;
  }
  /* b->iov always has room for every segment (grow_segs). */
  for (size_t i = 0; i < b->nsegs; i++) {
    b->iov[i].base = b->segs[i].ext ? b->segs[i].ext : b->buf + b->segs[i].off;
    b->iov[i].len = b->segs[i].len;
  }
  s->cur = NULL;
  s->last_send = now;
  *iov = b->iov;
  *batch = b;
  return b->nsegs;
}

void uvmqtt__session_output_done(uvmqtt_session_t *s, uvmqtt_out_batch_t *batch,
                                 int status) {
  uvmqtt__batch_release(s, batch, status);
}
