/* Input and output on the client's stream: handing the session's queued
 * output to the stream (try_write first from the flush handle, then a
 * write request), reading into the session, and the client's one
 * deadline (connect timeout, keepalive) with what happens when it
 * expires. */
#include "alloc.h"
#include "client/client_int.h"

/* Under load, more input is certainly on its way: a window of our
 * publishes (or of SUBSCRIBE / UNSUBSCRIBE requests: a burst of them, as
 * when thousands of filters are subscribed at once) awaits
 * acknowledgements, a window of incoming QoS 2 messages
 * awaits PUBRELs, or a read carried several incoming messages. Then, after the
 * reply, the tcp layer waits a little for 16 acknowledgements (4 bytes each) or
 * 16 more messages of the size last read to pile up before the next read
 * (UVMQTT__HINT_COALESCE). A QoS 2 window waits for messages too: its PUBRELs
 * come with more of them, and a read of PUBRELs alone (4 bytes each) would
 * otherwise pass the threshold at once and wake the broker again for the
 * next few. The round trip of a single message (one or two in flight, one
 * message per read) stays below every threshold: light load keeps
 * immediate I/O. */
#define COALESCE_INFLIGHT 8
#define COALESCE_MSGS 2
#define COALESCE_BATCH 16

static unsigned coalesce_want(uvmqtt_client_t *c, size_t nread, uint32_t msgs) {
  size_t want = 0;
  loop_ctx_t *lc = c->lc;
  if (msgs)
    lc->in_avg = (uint16_t)(nread / msgs > 4095 ? 4095 : nread / msgs);
  if (uvmqtt__session_owes(c->session, COALESCE_INFLIGHT))
    want = COALESCE_BATCH * 4;
  if (uvmqtt__session_in_pending(c->session) >= COALESCE_INFLIGHT)
    want = COALESCE_BATCH * (lc->in_avg > 4 ? (size_t)lc->in_avg : 4);
  if (msgs >= COALESCE_MSGS && COALESCE_BATCH * (nread / msgs) > want)
    want = COALESCE_BATCH * (nread / msgs);
  return want > UINT16_MAX ? UINT16_MAX : (unsigned)want;
}

static void on_written(uvmqtt_stream_t *s, int status, void *arg) {
  uvmqtt_client_t *c = s->data;
  ENTER(c);
  c->writes--;
  uvmqtt__session_output_done(c->session, arg, status);
  if (status < 0 && status != UV_ECANCELED && c->state != C_CLOSING)
    uvmqtt__client_drop(c, status);
  LEAVE(c);
}

/* Hands the queued output to the stream. `sync_ok`: called from the flush
 * handle, where completions may fire before this returns; the bytes are
 * then first offered to the stream's try_write() (when nothing else is
 * being written), and a batch the kernel takes whole completes at once,
 * with no write request. API calls pass false so that no user callback
 * fires from inside them. */
void uvmqtt__client_flush_ex(uvmqtt_client_t *c, bool sync_ok) {
  uvmqtt__client_flush_cancel(c);
  /* C_LEAVING: DISCONNECT is written, nothing may follow it. */
  if (!c->stream || c->state < C_MQTT || c->state == C_CLOSING ||
      c->state == C_LEAVING)
    return;
  const uvmqtt_iov_t *iov;
  uvmqtt_out_batch_t *batch;
  ENTER(c);
  if (sync_ok && c->state == C_CONNECTED && uvmqtt__session_held(c->session) &&
      !uvmqtt__session_holding(c->session)) {
    /* Input kept while held, now released (uvmqtt__client_on_hold). */
    int rc = uvmqtt__session_release_input(c->session, uvmqtt__client_now(c));
    if (rc < 0)
      uvmqtt__client_drop(c, rc);
  }
  size_t n = uvmqtt__session_take_output(c->session, uvmqtt__client_now(c),
                                         &iov, &batch);
  if (n > 0) {
    uv_buf_t small[16], *bufs = small;
    if (n > 16)
      bufs = uvmqtt__malloc(n * sizeof(uv_buf_t));
    if (!bufs) {
      uvmqtt__session_output_done(c->session, batch, UVMQTT_ENOMEM);
      uvmqtt__client_drop(c, UVMQTT_ENOMEM);
    } else {
      size_t total = 0, first = 0;
      uvmqtt__cstats_t *st = CSTATS(c);
      for (size_t i = 0; i < n; i++) {
        bufs[i] = uv_buf_init((char *)iov[i].base, (unsigned)iov[i].len);
        total += iov[i].len;
        if (st)
          uvmqtt__cstats_out(st, iov[i].base, iov[i].len);
      }
      c->lc->st.bytes_out += total;
      int rc = 0;
      if (sync_ok && c->writes == 0 && c->stream->ops->try_write) {
        rc = c->stream->ops->try_write(c->stream, bufs, (unsigned)n);
        if (rc >= 0 && (size_t)rc == total) {
          uvmqtt__session_output_done(c->session, batch, 0);
          first = n;
        } else if (rc >= 0) {
          /* Partly taken: queue the rest. */
          size_t w = (size_t)rc;
          while (w >= bufs[first].len)
            w -= bufs[first++].len;
          bufs[first].base += w;
          bufs[first].len -= w;
          rc = 0;
        }
      }
      if (rc == 0 && first < n)
        rc = uvmqtt__stream_write(c->stream, bufs + first,
                                  (unsigned)(n - first), on_written, batch);
      if (bufs != small)
        uvmqtt__free(bufs);
      if (rc < 0) {
        uvmqtt__session_output_done(c->session, batch, rc);
        uvmqtt__client_drop(c, rc);
      } else if (first < n) {
        c->writes++;
      }
    }
  }
  uvmqtt__client_arm_timer(c);
  LEAVE(c);
}

void uvmqtt__client_flush(uvmqtt_client_t *c) {
  uvmqtt__client_flush_ex(c, false);
}

void uvmqtt__client_on_read(uvmqtt_stream_t *s, ssize_t nread,
                            const uint8_t *buf) {
  uvmqtt_client_t *c = s->data;
  ENTER(c);
  if (c->state == C_LEAVING) {
    /* Draining after our DISCONNECT: read and discarded, never
     * delivered, until the broker closes. */
    if (nread < 0)
      uvmqtt__leave_finish(c, (int)nread);
  } else if (nread < 0) {
    uvmqtt__client_drop(c, nread == UV_EOF ? UVMQTT_EPEERCLOSED : (int)nread);
  } else if (!c->drop_requested && c->state != C_CLOSING) {
    uint32_t msgs = c->lc->in_msgs;
    c->lc->st.bytes_in += (uint64_t)nread;
    if (CSTATS(c))
      uvmqtt__cstats_in(CSTATS(c), buf, (size_t)nread);
    int rc = uvmqtt__session_input(c->session, uvmqtt__client_now(c), buf,
                                   (size_t)nread);
    msgs = c->lc->in_msgs - msgs;
    if (rc < 0) {
      uvmqtt__client_drop(c, rc);
    } else {
      /* Acknowledgements or new publishes go out in this iteration and
       * carry the TCP ACK: the tcp layer need not send one at once. */
      if (c->stream && uvmqtt__session_has_output(c->session))
        uvmqtt__stream_hint(c->stream, UVMQTT__HINT_REPLY, 0);
      /* Otherwise, while the broker owes us answers, a broker with
       * Nagle's algorithm (mosquitto's default) holds the next of them
       * until this read is acknowledged: acknowledge it at once, or the
       * last SUBACKs of a burst of subscribes, the last PUBACKs of a
       * burst of publishes, wait for a delayed ACK (40 ms). */
      else if (c->stream && uvmqtt__session_owes(c->session, 1))
        uvmqtt__stream_hint(c->stream, UVMQTT__HINT_AWAIT, 0);
      /* Under load (a window of publishes awaiting acknowledgements, or a
       * read full of incoming ones) more input is on its way: let it pile
       * up a little before the next read. */
      if (c->stream)
        uvmqtt__stream_hint(c->stream, UVMQTT__HINT_COALESCE,
                            coalesce_want(c, (size_t)nread, msgs));
      /* Completions of publishes without a callback fire no event. */
      if (uvmqtt__draining(c))
        uvmqtt__drain_check(c);
      uvmqtt__client_arm_timer(c);
    }
  }
  LEAVE(c);
}

void uvmqtt__client_arm_timer(uvmqtt_client_t *c) {
  uint64_t now = uvmqtt__client_now(c), due = UINT64_MAX;
  if (c->state == C_CLOSING)
    return;
  if (c->state == C_RESOLVING || c->state == C_TRANSPORT || c->state == C_MQTT)
    due = c->at ? c->at->deadline : UINT64_MAX;
  const leave_t *l = uvmqtt__leave_of(c);
  if (c->state == C_LEAVING && l && !l->done)
    due = l->deadline;
  if (c->state == C_MQTT || c->state == C_CONNECTED) {
    uint64_t k = uvmqtt__session_deadline(c->session);
    if (k < due)
      due = k;
    cthrottle_t *t = c->rare ? c->rare->throttle : NULL;
    if (t && t->blocked && t->due < due)
      due = t->due;
  }
  if (c->state == C_WAIT)
    return; /* the reconnect delay owns the timer */
  if (due == UINT64_MAX) {
    uvmqtt__client_timer_stop(c);
    return;
  }
  uvmqtt__client_timer_start(c, due > now ? due - now : 0);
}

void uvmqtt__client_on_timer(uvmqtt_client_t *c) {
  uint64_t now = uvmqtt__client_now(c);
  ENTER(c);
  if (c->state == C_WAIT) {
    uvmqtt__client_start_attempt(c);
  } else if ((c->state == C_RESOLVING || c->state == C_TRANSPORT ||
              c->state == C_MQTT) &&
             c->at && now >= c->at->deadline) {
    uvmqtt__client_log(c, UVMQTT_LOG_WARN, "connection attempt timed out");
    uvmqtt__client_drop(c, UVMQTT_ETIMEDOUT);
  } else if (c->state == C_MQTT || c->state == C_CONNECTED) {
    cthrottle_t *t = c->rare ? c->rare->throttle : NULL;
    if (t && t->blocked && now >= t->due)
      uvmqtt__client_throttle_resume(c, now);
    int rc = uvmqtt__session_tick(c->session, now);
    if (rc < 0)
      uvmqtt__client_drop(c, rc);
    else
      uvmqtt__client_arm_timer(c);
  } else if (c->state == C_LEAVING) {
    const leave_t *l = uvmqtt__leave_of(c);
    if (l && !l->done && now >= l->deadline)
      uvmqtt__leave_finish(c, UVMQTT_ETIMEDOUT);
    else
      uvmqtt__client_arm_timer(c);
  }
  LEAVE(c);
}

/* The rate limit's wait is over: the session's queue moves again (and may
 * stop at the next message the bucket cannot pay for). */
void uvmqtt__client_throttle_resume(uvmqtt_client_t *c, uint64_t now) {
  c->rare->throttle->blocked = false;
  uvmqtt__session_pump(c->session, now);
  if (uvmqtt__session_has_output(c->session))
    uvmqtt__client_flush_later(c);
}
