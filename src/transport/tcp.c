/* The tcp layer: the bottom of the transport stack. See transport.h.
 *
 * The stream owns its socket and watches it with a uv_poll_t (160 bytes)
 * instead of a uv_tcp_t (248): it connects, reads, writes and queues
 * writes itself, so an idle connection costs a smaller malloc chunk. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <netinet/in.h>
#include <netinet/tcp.h>
#endif

#include "../alloc.h"
#include "transport.h"
#include "uvmqtt/errors.h"

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif
#ifndef IOV_MAX
#define IOV_MAX 1024
#endif

typedef struct tcp_write_s tcp_write_t;

/* The stream of a unix-domain socket is the same struct with the same
 * ops; only its connect differs (uvmqtt__unix_connect). */

/* The base and the poll handle, to stay within a smaller malloc size
 * class (200 B: 208 with malloc's header). The handle's `data` field
 * holds the flag bits below and, while connecting, a deferred error; the
 * base's own slot (the socket's layer has no lower) holds open_cb while
 * connecting (base.own_cb) and the write queue after (base.own: its tail,
 * circular, tail->next is the head); close_cb lives, once closing, in
 * base.read_cb (unused from then). */
typedef struct {
  uvmqtt_stream_t base;
  uv_poll_t poll;
} tcp_stream_t;

static inline tcp_write_t *wq_tail(const tcp_stream_t *t) {
  return (tcp_write_t *)t->base.own;
}
static inline void set_wq_tail(tcp_stream_t *t, tcp_write_t *w) {
  t->base.own = w;
}

enum {
  F_READING = 1,
  F_EOF = 2,
  F_QUICKACK = 4, /* TCP_NODELAY set: see do_reads() */
  F_WROTE = 8,    /* written to since the last read */
  F_CONNECTING = 16,
  F_POLL_R = 32, /* the events the poll handle watches now */
  F_POLL_W = 64,
  F_IN_POLL = 128,     /* inside on_poll(): it updates the events at the end */
  F_REPLY = 256,       /* the reader has a reply queued: UVMQTT__HINT_REPLY */
  F_SHUT_WANTED = 512, /* shutdown(): half-close once the queue is sent */
  F_SHUT = 1024,       /* our side is half-closed (FIN sent) */
  F_ACKED = 2048,      /* quick ACKs on since the last TCP_QUICKACK */
  F_STREAMED = 4096,   /* 4 bits from here: reads that answered nothing */
  F_AWAIT = 65536      /* the reader awaits answers: UVMQTT__HINT_AWAIT */
};
#define STREAMED_MASK ((uintptr_t)15 * F_STREAMED)
/* A connect error reported through open_cb on the next loop turn (as
 * uv_tcp_connect() does for ECONNREFUSED and a bind's EADDRINUSE) is kept
 * as a positive errno above the flags; once connected, the same bits hold
 * the coalescing threshold of UVMQTT__HINT_COALESCE, in units of 2 bytes
 * (15 bits where a pointer has 32). */
#define DELAYED_SHIFT 17

/* A write request, allocated per write() with a copy of the caller's
 * uv_buf_t array (the bytes themselves are not copied). */
struct tcp_write_s {
  tcp_write_t *next;
  uvmqtt_stream_write_cb cb;
  void *arg;
  int status;     /* an error once failed */
  unsigned cur;   /* first buffer not yet written completely */
  unsigned nbufs; /* cur == nbufs: done, callback pending */
  uv_buf_t bufs[];
};

#define T_OF(h) ((tcp_stream_t *)((char *)(h)-offsetof(tcp_stream_t, poll)))

static uintptr_t flags(const tcp_stream_t *t) {
  return (uintptr_t)t->poll.data;
}

static int has(const tcp_stream_t *t, uintptr_t f) {
  return (flags(t) & f) != 0;
}

static void set(tcp_stream_t *t, uintptr_t f, int on) {
  uintptr_t v = flags(t);
  t->poll.data = (void *)(on ? v | f : v & ~f);
}

static int closing(const tcp_stream_t *t) {
  return uv_is_closing((const uv_handle_t *)&t->poll);
}

static int fd_of(const tcp_stream_t *t) {
  uv_os_fd_t fd;
  return uv_fileno((const uv_handle_t *)&t->poll, &fd) == 0 ? fd : -1;
}

/* Function pointer types convert to each other and back unchanged. */
static void set_close_cb(tcp_stream_t *t, uvmqtt_stream_close_cb cb) {
  t->base.read_cb = (uvmqtt_stream_read_cb)(void (*)(void))cb;
}

static uvmqtt_stream_close_cb get_close_cb(const tcp_stream_t *t) {
  return (uvmqtt_stream_close_cb)(void (*)(void))t->base.read_cb;
}

/* ---- the write queue ----------------------------------------------------- */

static void wq_push(tcp_stream_t *t, tcp_write_t *w) {
  tcp_write_t *tail = wq_tail(t);
  if (tail) {
    w->next = tail->next;
    tail->next = w;
  } else {
    w->next = w;
  }
  set_wq_tail(t, w);
}

static tcp_write_t *wq_pop(tcp_stream_t *t) {
  tcp_write_t *tail = wq_tail(t);
  tcp_write_t *head = tail->next;
  if (head == tail)
    set_wq_tail(t, NULL);
  else
    tail->next = head->next;
  return head;
}

/* Sends what the socket takes now. Returns the number of bytes sent, or
 * a libuv error (UV_EAGAIN when none fit). MSG_NOSIGNAL: a peer's reset
 * is an EPIPE error here, never a SIGPIPE that kills the process. */
static ssize_t send_bufs(int fd, const uv_buf_t *bufs, unsigned n) {
  struct msghdr msg;
  memset(&msg, 0, sizeof(msg));
  /* uv_buf_t is laid out as struct iovec on Unix (uv/unix.h says so). */
  msg.msg_iov = (struct iovec *)(uintptr_t)bufs;
  msg.msg_iovlen = n > IOV_MAX ? IOV_MAX : n;
  ssize_t r;
  do
    r = sendmsg(fd, &msg, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  if (r < 0)
    return errno == EWOULDBLOCK ? UV_EAGAIN : -errno;
  return r;
}

/* Advances w past `n` sent bytes; returns 1 when it is done. */
static int advance(tcp_write_t *w, size_t n) {
  while (w->cur < w->nbufs) {
    uv_buf_t *b = &w->bufs[w->cur];
    if (n < b->len) {
      b->base += n;
      b->len -= n;
      return 0;
    }
    n -= b->len;
    w->cur++;
  }
  return 1;
}

/* The half-close asked for by shutdown(), once every queued byte is in
 * the kernel (which sends the FIN after them). */
static void maybe_shut(tcp_stream_t *t) {
  tcp_write_t *tail = wq_tail(t);
  if (!has(t, F_SHUT_WANTED) || has(t, F_SHUT) || has(t, F_CONNECTING) ||
      closing(t) || (tail && tail->cur < tail->nbufs))
    return;
  set(t, F_SHUT, 1);
  (void)shutdown(fd_of(t), SHUT_WR); /* an error: the peer is gone anyway */
}

/* Writes queued bytes until the socket is full; a failed request is done
 * with its error. */
static void send_queued(tcp_stream_t *t) {
  tcp_write_t *tail = wq_tail(t);
  if (!tail)
    return;
  int fd = fd_of(t);
  tcp_write_t *w = tail->next;
  for (;;) {
    while (w->cur < w->nbufs) {
      ssize_t r = send_bufs(fd, w->bufs + w->cur, w->nbufs - w->cur);
      if (r == UV_EAGAIN)
        return;
      if (r < 0) {
        w->status = (int)r;
        w->cur = w->nbufs;
      } else {
        advance(w, (size_t)r);
      }
    }
    if (w == tail) {
      maybe_shut(t);
      return;
    }
    w = w->next;
  }
}

/* Fires the callbacks of the writes done at the head of the queue, in
 * order. Writes queued by these callbacks wait for the next turn, so a
 * callback that always writes again cannot starve the loop. */
static void complete_done(tcp_stream_t *t) {
  tcp_write_t *last = wq_tail(t);
  while (!closing(t) && wq_tail(t)) {
    tcp_write_t *w = wq_tail(t)->next;
    if (w->cur < w->nbufs)
      return;
    wq_pop(t);
    uvmqtt_stream_write_cb cb = w->cb;
    void *arg = w->arg;
    int status = w->status;
    int was_last = w == last;
    uvmqtt__free(w);
    if (cb)
      cb(&t->base, status, arg);
    if (was_last)
      return;
  }
}

/* ---- polling ------------------------------------------------------------- */

static void on_poll(uv_poll_t *h, int status, int events);

/* Watches what the stream needs now. uv_poll_start() on an active handle
 * costs two epoll_ctl calls even when nothing changes, so only changes are
 * passed on, and on_poll() does it once at its end. Writability, once
 * watched, stays watched until a wake-up finds no write queued
 * (`drop_w`): a stream that writes steadily (TLS records, which all go
 * through write()) then costs no epoll_ctl per write, and an idle one a
 * single spare wake-up. */
static void update_poll(tcp_stream_t *t, int drop_w) {
  if (closing(t) || has(t, F_IN_POLL))
    return;
  int want = 0;
  if (has(t, F_CONNECTING)) {
    want = UV_WRITABLE;
  } else {
    if (has(t, F_READING))
      want |= UV_READABLE;
    if (wq_tail(t) || (has(t, F_POLL_W) && !drop_w))
      want |= UV_WRITABLE;
  }
  int cur = (has(t, F_POLL_R) ? UV_READABLE : 0) |
            (has(t, F_POLL_W) ? UV_WRITABLE : 0);
  if (want == cur)
    return;
  if (want == 0 || uv_poll_start(&t->poll, want, on_poll) != 0) {
    uv_poll_stop(&t->poll);
    want = 0;
  }
  set(t, F_POLL_R, (want & UV_READABLE) != 0);
  set(t, F_POLL_W, (want & UV_WRITABLE) != 0);
}

/* When the last nap of this thread ended, which stream took it, and how
 * long after it another stream may nap again. */
#define NAP_GAP_NS 10000u
static _Thread_local uint64_t nap_end;
static _Thread_local uint64_t nap_count;
static _Thread_local const void *nap_last; /* compared, never followed */

uint64_t uvmqtt__tcp_naps(void) {
  return nap_count;
}

static _Thread_local uint64_t quickack_count;

uint64_t uvmqtt__tcp_quickacks(void) {
  return quickack_count;
}

/* Under load (UVMQTT__HINT_COALESCE), after the reply or the read: wait a
 * little before polling again unless enough is queued already, so that
 * the peer's next segments pile up in the socket instead of each waking
 * this thread. A sleep on a timer costs the peer nothing, a wake-up
 * costs it a reschedule: with a single-threaded broker saturated by the
 * traffic, those wake-ups are what limits throughput. */
static void maybe_nap(tcp_stream_t *t) {
  unsigned want = (unsigned)(flags(t) >> DELAYED_SHIFT) * 2;
  if (!want || has(t, F_CONNECTING))
    return;
  t->poll.data = (void *)(flags(t) & ((1u << DELAYED_SHIFT) - 1));
  int queued = 0;
  if (ioctl(fd_of(t), FIONREAD, &queued) != 0 || queued >= (int)want)
    return;
  /* Streams flushed one after the other (one loop pass) share one nap:
   * the loop never sleeps more than one nap per pass. The stream that
   * took the last nap has read since (that is why it asks again), so it is
   * in a new pass however quick the pass was: without that exception a
   * reader that handles its batch within the gap would read every other
   * time without a nap, and wake the broker for a segment or two. */
  if (nap_last != t && uv_hrtime() - nap_end < NAP_GAP_NS)
    return;
  struct timespec ts = {0, UVMQTT__TCP_NAP_US * 1000};
  (void)nanosleep(&ts, NULL); /* EINTR: a shorter nap, no harm */
  nap_end = uv_hrtime();
  nap_last = t;
  nap_count++;
}

/* ---- reading ------------------------------------------------------------- */

/* Reads land in one buffer per thread: read_cb consumes everything it is
 * given (the parser copies only a partial packet), so idle connections
 * hold no read memory. */
static _Thread_local uint8_t shared_read_buf[UVMQTT_READ_BUF_SIZE];

/* Reads once, and again only while the buffer comes back full (as libuv
 * does, at most 32 times per wake-up). */
static void do_reads(tcp_stream_t *t) {
  int fd = fd_of(t);
  for (int count = 32; count > 0; count--) {
    if (closing(t) || !has(t, F_READING))
      return;
    ssize_t n;
    do
      n = recv(fd, shared_read_buf, sizeof(shared_read_buf), 0);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      return;
    if (n <= 0) {
      n = n == 0 ? UV_EOF : -errno;
      set(t, F_READING, 0);
      set(t, F_EOF, 1);
    }
    int wrote = has(t, F_WROTE);
    set(t, F_WROTE, 0);
    set(t, F_REPLY, 0);
    /* A coalescing wait, and F_AWAIT, are asked for by the read callback
     * of this read, never left over from an earlier one. */
    t->poll.data = (void *)(flags(t) & (F_AWAIT - 1));
    if (t->base.read_cb)
      t->base.read_cb(&t->base, n, n > 0 ? shared_read_buf : NULL);
    /* With TCP_NODELAY on our side only, a peer that keeps Nagle's
     * algorithm (mosquitto's default) holds its next small packet until
     * the previous one is acknowledged, and our delayed ACK takes up to
     * 40 ms: an echoed PUBLISH waits behind its PUBACK, the rest of a
     * burst of SUBACKs behind the first. Only a read that follows a write
     * of ours, or one after which the reader still awaits answers
     * (UVMQTT__HINT_AWAIT), can be such an answer with more to come; and
     * when the reader writes back (now, or with a reply it queued for
     * this loop iteration: UVMQTT__HINT_REPLY) that segment carries the
     * ACK. Otherwise TCP_QUICKACK sends the ACK at once. A stream that
     * answers every read (QoS 1/2 traffic) never pays the system call.
     *
     * On Linux TCP_QUICKACK also sticks: it leaves the delayed-ACK
     * ("pingpong") mode, and from then on every read that empties the
     * receive buffer ACKs at once, until we send again shortly after a
     * read. A reader that then only reads (a QoS 0 subscriber after its
     * SUBACK) would ACK every segment, and a Nagle peer sends a segment
     * per ACK: one or two messages each instead of a full one, which
     * cost mosquitto 20-40 % more CPU per message. So the first read
     * that is no answer (a stream) turns delayed ACKs back on: one
     * system call per change of pattern. The kernel leaves that mode by
     * itself too (when a delayed ACK's timer fires, e.g. in a pause of
     * the stream), so a stream of such reads turns it on again every
     * 16th read. */
    int quick = n > 0 && has(t, F_QUICKACK);
    int answer = quick && (wrote || has(t, F_AWAIT));
    int streamed = 0;
    if (quick && !answer) {
      uintptr_t k = (flags(t) & STREAMED_MASK) + F_STREAMED;
      t->poll.data =
          (void *)((flags(t) & ~STREAMED_MASK) | (k & STREAMED_MASK));
      streamed = has(t, F_ACKED) || (k & STREAMED_MASK) == 0;
    }
#ifdef TCP_QUICKACK
    if (answer && !closing(t) && !has(t, F_WROTE) && !has(t, F_REPLY)) {
      int one = 1;
      (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
      set(t, F_ACKED, 1);
      quickack_count++;
    } else if (streamed && !closing(t)) {
      int zero = 0;
      (void)setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &zero, sizeof(zero));
      set(t, F_ACKED, 0);
    }
#else
    (void)answer;
    (void)streamed;
#endif
    /* A reader under load with no reply to send (a QoS 0 stream) waits
     * here; one with a reply waits once the reply is out (try_write). */
    if (n > 0 && !closing(t) && !has(t, F_REPLY) && !has(t, F_WROTE))
      maybe_nap(t);
    if (n < (ssize_t)sizeof(shared_read_buf))
      return;
  }
}

static int tcp_read_start(uvmqtt_stream_t *s) {
  tcp_stream_t *t = (tcp_stream_t *)s;
  if (closing(t) || has(t, F_EOF))
    return UVMQTT_ESTATE;
  if (!has(t, F_READING)) {
    set(t, F_READING, 1);
    update_poll(t, 0);
  }
  return 0;
}

static int tcp_read_stop(uvmqtt_stream_t *s) {
  tcp_stream_t *t = (tcp_stream_t *)s;
  if (has(t, F_READING)) {
    set(t, F_READING, 0);
    update_poll(t, 0);
  }
  return 0;
}

/* ---- writing ------------------------------------------------------------- */

static int tcp_write(uvmqtt_stream_t *s, const uv_buf_t bufs[], unsigned n,
                     uvmqtt_stream_write_cb cb, void *arg) {
  tcp_stream_t *t = (tcp_stream_t *)s;
  if (closing(t))
    return UV_ECANCELED;
  if (has(t, F_CONNECTING))
    return UV_ENOTCONN;
  if (has(t, F_SHUT_WANTED))
    return UV_EPIPE; /* nothing may follow the half-close */
  tcp_write_t *w = uvmqtt__malloc(sizeof(*w) + (size_t)n * sizeof(uv_buf_t));
  if (!w)
    return UVMQTT_ENOMEM;
  w->cb = cb;
  w->arg = arg;
  w->status = 0;
  w->cur = 0;
  w->nbufs = n;
  if (n)
    memcpy(w->bufs, bufs, n * sizeof(uv_buf_t));
  /* Skip empty buffers at the front so "done" means cur == nbufs. */
  advance(w, 0);
  set(t, F_WROTE, 1);
  /* Nothing left unsent before it: send at once as uv_write() does, so
   * that a write followed by close() still reaches the peer. The
   * callback waits for the poll callback either way. */
  tcp_write_t *tail = wq_tail(t);
  int send_now = !tail || tail->cur == tail->nbufs;
  wq_push(t, w);
  if (send_now)
    send_queued(t);
  update_poll(t, 0);
  return 0;
}

static int tcp_try_write(uvmqtt_stream_t *s, const uv_buf_t bufs[],
                         unsigned n) {
  tcp_stream_t *t = (tcp_stream_t *)s;
  if (closing(t))
    return UV_ECANCELED;
  if (has(t, F_SHUT_WANTED))
    return UV_EPIPE;
  /* Like uv_try_write(): nothing while connecting or with writes queued. */
  if (has(t, F_CONNECTING) || wq_tail(t))
    return 0;
  set(t, F_WROTE, 1);
  ssize_t r = send_bufs(fd_of(t), bufs, n);
  if (r == UV_EAGAIN)
    return 0;
  if (r > 0)
    maybe_nap(t);
  if (r > INT_MAX)
    r = INT_MAX; /* cannot happen with the client's writes */
  return (int)r;
}

/* Half-closes: the FIN follows every byte already written (at once when
 * nothing is queued). Reading goes on until the peer's EOF, which is what
 * a graceful goodbye needs: closing with unread bytes in the receive
 * buffer makes Linux send a reset, and the peer may throw away what we
 * wrote just before. */
static void tcp_shutdown(uvmqtt_stream_t *s) {
  tcp_stream_t *t = (tcp_stream_t *)s;
  if (closing(t) || has(t, F_SHUT_WANTED))
    return;
  set(t, F_SHUT_WANTED, 1);
  maybe_shut(t);
}

/* ---- opening ------------------------------------------------------------- */

static void finish_connect(tcp_stream_t *t) {
  uvmqtt_stream_open_cb open_cb = t->base.own_cb;
  int status = -(int)(flags(t) >> DELAYED_SHIFT);
  if (status == 0) {
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd_of(t), SOL_SOCKET, SO_ERROR, &err, &len) != 0)
      err = errno;
    if (err == EINPROGRESS)
      return; /* not yet: wait for the next wake-up */
    status = -err;
  }
  t->poll.data = (void *)(flags(t) & ((1u << DELAYED_SHIFT) - 1));
  set(t, F_CONNECTING, 0);
  set_wq_tail(t, NULL);
  if (status == 0)
    status = tcp_read_start(&t->base);
  open_cb(&t->base, status);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  tcp_stream_t *t = T_OF(h);
  if (status < 0) {
    /* libuv stopped the handle (an error is pending on the socket, e.g.
     * a refused connect or a reset). Let the system calls below report
     * the real error: SO_ERROR, recv() or send(). */
    set(t, F_POLL_R | F_POLL_W, 0);
    events = UV_READABLE | UV_WRITABLE;
  }
  if (events & UV_DISCONNECT)
    events |= UV_READABLE | UV_WRITABLE;
  /* Writable with nothing to write: stop watching that (update_poll). */
  int idle_w = (events & UV_WRITABLE) && !has(t, F_CONNECTING) && !wq_tail(t);
  set(t, F_IN_POLL, 1);
  if (has(t, F_CONNECTING)) {
    finish_connect(t);
  } else {
    if (events & UV_READABLE)
      do_reads(t);
    if (!closing(t) && (events & UV_WRITABLE))
      send_queued(t);
    /* Also completes writes that read_cb made and that went out at once,
     * sparing the epoll_ctl calls of watching for writability. */
    if (!closing(t))
      complete_done(t);
  }
  set(t, F_IN_POLL, 0);
  update_poll(t, idle_w);
}

/* ---- closing ------------------------------------------------------------- */

/* Runs after the poll handle has closed (the socket was closed at once in
 * tcp_close()). As libuv does for a closed uv_tcp_t: pending writes first,
 * those not fully written with UV_ECANCELED, then close_cb. */
static void on_close(uv_handle_t *h) {
  tcp_stream_t *t = T_OF(h);
  while (!has(t, F_CONNECTING) && wq_tail(t)) {
    tcp_write_t *w = wq_pop(t);
    uvmqtt_stream_write_cb cb = w->cb;
    void *arg = w->arg;
    int status = w->cur == w->nbufs ? w->status : UV_ECANCELED;
    uvmqtt__free(w);
    if (cb)
      cb(&t->base, status, arg);
  }
  uvmqtt_stream_close_cb cb = get_close_cb(t);
  if (cb)
    cb(&t->base);
  uvmqtt__free(t);
}

static void tcp_close(uvmqtt_stream_t *s, uvmqtt_stream_close_cb cb) {
  tcp_stream_t *t = (tcp_stream_t *)s;
  if (closing(t))
    return;
  int fd = fd_of(t);
  set_close_cb(t, cb);
  /* uv_close() takes the socket out of the loop's epoll set at once, so
   * it can be closed now, as uv_close() does with a uv_tcp_t's. */
  uv_close((uv_handle_t *)&t->poll, on_close);
  if (fd >= 0)
    close(fd);
}

static void tcp_hint(uvmqtt_stream_t *s, int kind, unsigned value);

static uv_loop_t *tcp_loop(const uvmqtt_stream_t *s) {
  return ((const tcp_stream_t *)s)->poll.loop;
}

static const uvmqtt_stream_ops_t tcp_ops = {
    .name = "tcp",
    .open = NULL,
    .write = tcp_write,
    .try_write = tcp_try_write,
    .read_start = tcp_read_start,
    .read_stop = tcp_read_stop,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
    .hint = tcp_hint,
    .loop = tcp_loop,
};

static void tcp_coalesce(tcp_stream_t *t, unsigned want) {
  if (has(t, F_CONNECTING))
    return; /* the bits hold a deferred error then */
  want = want > 0xfffe ? 0x7fff : (want + 1) / 2;
  t->poll.data = (void *)((flags(t) & ((1u << DELAYED_SHIFT) - 1)) |
                          ((uintptr_t)want << DELAYED_SHIFT));
}

static void tcp_hint(uvmqtt_stream_t *s, int kind, unsigned value) {
  tcp_stream_t *t = (tcp_stream_t *)s;
  if (kind == UVMQTT__HINT_REPLY)
    set(t, F_REPLY, 1);
  else if (kind == UVMQTT__HINT_AWAIT)
    set(t, F_AWAIT, 1);
  else if (kind == UVMQTT__HINT_COALESCE)
    tcp_coalesce(t, value);
}

/* Wraps the non-blocking socket `fd` (not closed on failure). */
static int tcp_wrap(uv_loop_t *loop, int fd, void *data, tcp_stream_t **out) {
  tcp_stream_t *t = uvmqtt__calloc(1, sizeof(*t));
  if (!t)
    return UVMQTT_ENOMEM;
  int rc = uv_poll_init_socket(loop, &t->poll, fd);
  if (rc != 0) {
    uvmqtt__free(t);
    return rc;
  }
  t->poll.data = NULL; /* the flags */
  t->base.ops = &tcp_ops;
  t->base.data = data;
  *out = t;
  return 0;
}

static int set_int(int fd, int level, int name, int v) {
  return setsockopt(fd, level, name, &v, sizeof(v)) != 0 ? -errno : 0;
}

static socklen_t addr_len(const struct sockaddr *a) {
  if (a->sa_family == AF_INET)
    return sizeof(struct sockaddr_in);
  if (a->sa_family == AF_INET6)
    return sizeof(struct sockaddr_in6);
  return 0;
}

/* As uv_tcp_bind(): SO_REUSEADDR, dual-stack for IPv6, and EADDRINUSE
 * reported by the connect (through open_cb), not here. */
static int bind_socket(int fd, const struct sockaddr *a, int *delayed) {
  socklen_t len = addr_len(a);
  if (len == 0)
    return UV_EINVAL;
  int rc = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
  if (rc == 0 && a->sa_family == AF_INET6)
    rc = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0);
  if (rc == 0 && bind(fd, a, len) != 0) {
    if (errno == EADDRINUSE)
      *delayed = EADDRINUSE;
    else
      rc = errno == EAFNOSUPPORT ? UV_EINVAL : -errno;
  }
  return rc;
}

/* As uv_tcp_keepalive() of the libuv we build with (1.44 on Debian 12):
 * probes after `delay` seconds idle, then every second, 10 of them. */
static int set_keepalive(int fd, unsigned delay) {
  int rc = set_int(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
#ifdef TCP_KEEPIDLE
  if (rc == 0)
    rc = set_int(fd, IPPROTO_TCP, TCP_KEEPIDLE,
                 delay > INT_MAX ? INT_MAX : (int)delay);
  if (rc == 0)
    rc = set_int(fd, IPPROTO_TCP, TCP_KEEPINTVL, 1);
  if (rc == 0)
    rc = set_int(fd, IPPROTO_TCP, TCP_KEEPCNT, 10);
#else
  (void)delay;
#endif
  return rc;
}

/* Connects the non-blocking socket `fd` to addr (len bytes) and wraps it;
 * `delayed`: an error already due through open_cb. Closes fd on failure. */
static int start_connect(uv_loop_t *loop, int fd, const struct sockaddr *addr,
                         socklen_t len, int delayed, uintptr_t f,
                         uvmqtt_stream_open_cb open_cb, void *data,
                         uvmqtt_stream_t **out) {
  int rc = 0;
  if (!delayed && connect(fd, addr, len) != 0) {
    /* As uv_tcp_connect(): a refusal is reported through open_cb like
     * one that comes later, other errors are returned here. EINTR: the
     * connect goes on in the background. A unix socket fails at once:
     * no such file, or a full backlog, are reported the same way. */
    if (errno == ECONNREFUSED ||
        (addr->sa_family == AF_UNIX && (errno == ENOENT || errno == EAGAIN)))
      delayed = errno;
    else if (errno != EINPROGRESS && errno != EINTR)
      rc = -errno;
  }
  tcp_stream_t *t = NULL;
  if (rc == 0)
    rc = tcp_wrap(loop, fd, data, &t);
  if (rc != 0) {
    close(fd);
    return rc;
  }
  t->poll.data =
      (void *)(f | F_CONNECTING | ((uintptr_t)delayed << DELAYED_SHIFT));
  t->base.own_cb = open_cb;
  /* Writable once connected or failed; a socket that never connected
   * (a deferred error) reports a hang-up at once. */
  update_poll(t, 0);
  *out = &t->base;
  return 0;
}

int uvmqtt__tcp_connect(uv_loop_t *loop, const struct sockaddr *addr,
                        const uvmqtt_tcp_opts_t *opts,
                        uvmqtt_stream_open_cb open_cb, void *data,
                        uvmqtt_stream_t **out) {
  if (!loop || !addr || !open_cb || !out)
    return UVMQTT_EINVAL;
  socklen_t len = addr_len(addr);
  if (len == 0)
    return UV_EINVAL;
  int fd =
      socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  int rc = 0;
  int delayed = 0;
  if (opts && opts->bind_addr)
    rc = bind_socket(fd, opts->bind_addr, &delayed);
  if (rc == 0 && opts && opts->nodelay)
    rc = set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1);
  if (rc == 0 && opts && opts->keepalive_s)
    rc = set_keepalive(fd, opts->keepalive_s);
  if (rc != 0) {
    close(fd);
    return rc;
  }
  return start_connect(loop, fd, addr, len, delayed,
                       opts && opts->nodelay ? F_QUICKACK : 0, open_cb, data,
                       out);
}

int uvmqtt__unix_connect(uv_loop_t *loop, const char *path,
                         uvmqtt_stream_open_cb open_cb, void *data,
                         uvmqtt_stream_t **out) {
  if (!loop || !path || !open_cb || !out)
    return UVMQTT_EINVAL;
  struct sockaddr_un sun;
  memset(&sun, 0, sizeof(sun));
  sun.sun_family = AF_UNIX;
  size_t n = strlen(path);
  /* A path needs its terminating NUL; an abstract name ("@name", Linux)
   * is its bytes after a leading NUL, and its length counts exactly. */
  if (n == 0 || n > sizeof(sun.sun_path) - (path[0] == '@' ? 0 : 1) ||
      (path[0] == '@' && n == 1))
    return UVMQTT_EINVAL;
  memcpy(sun.sun_path, path, n);
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
  if (path[0] == '@') {
    sun.sun_path[0] = '\0';
    len--;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  return start_connect(loop, fd, (const struct sockaddr *)&sun, len, 0, 0,
                       open_cb, data, out);
}
