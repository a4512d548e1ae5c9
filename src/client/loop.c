/* The per-loop context. One uv_timer_t and one uv_idle_t per loop,
 * shared by every client on it, so an idle connection holds neither. The timer
 * runs the earliest of the clients' deadlines (a binary min-heap of clients,
 * ties in arming order); the idle handle runs the clients with output queued in
 * this iteration (one write each per iteration, as a handle per client did) and
 * completes closes. Contexts are found by loop in a small registry (loops may
 * run on several threads) and counted by their clients. The last client to
 * close closes the two handles and its close callback fires after theirs, so
 * uv_loop_close() succeeds once every close callback has run. */

#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "client/client_int.h"
#include "client/heap.h"

/* Attempts in progress at once per loop unless the application says
 * otherwise (docs/fleet.md has the measurement behind it). */
#define UVMQTT__HERD_DEFAULT 64

static uv_once_t lc_once = UV_ONCE_INIT;
static uv_mutex_t lc_mutex;
static loop_ctx_t *lc_list;

static void lc_mutex_init(void) {
  if (uv_mutex_init(&lc_mutex) != 0)
    abort();
}

static void on_lc_timer(uv_timer_t *t);

static void lc_rearm(loop_ctx_t *lc) {
  uint64_t due = lc->n ? lc->heap[1]->due : UINT64_MAX;
  if (due == lc->armed)
    return;
  lc->armed = due;
  if (due == UINT64_MAX) {
    uv_timer_stop(&lc->timer);
    return;
  }
  uint64_t now = uv_now(lc->loop);
  uv_timer_start(&lc->timer, on_lc_timer, due > now ? due - now : 0, 0);
}

/* The client's deadline: `delay` ms from the loop's time. */
void uvmqtt__client_timer_start(uvmqtt_client_t *c, uint64_t delay) {
  loop_ctx_t *lc = c->lc;
  if (c->state == C_CLOSING)
    return;
  c->due = uv_now(lc->loop) + delay;
  c->seq = lc->seq++;
  if (c->heap_idx) {
    uvmqtt__heap_up(lc->heap, c->heap_idx);
    uvmqtt__heap_down(lc->heap, lc->n, c->heap_idx);
  } else {
    uvmqtt__heap_set(lc->heap, ++lc->n, c);
    uvmqtt__heap_up(lc->heap, lc->n);
  }
  if (!lc->in_timer)
    lc_rearm(lc);
}

void uvmqtt__client_timer_stop(uvmqtt_client_t *c) {
  loop_ctx_t *lc = c->lc;
  if (!c->heap_idx)
    return;
  uvmqtt__heap_remove(lc->heap, &lc->n, c);
  if (!lc->in_timer)
    lc_rearm(lc);
}

static void on_lc_timer(uv_timer_t *t) {
  loop_ctx_t *lc = t->data;
  uint64_t now = uv_now(lc->loop);
  uint32_t first_new = lc->seq;
  lc->armed = UINT64_MAX;
  lc->in_timer = true;
  /* Deadlines armed from inside these callbacks wait for the next run. */
  while (lc->n && lc->heap[1]->due <= now &&
         (int32_t)(lc->heap[1]->seq - first_new) < 0) {
    uvmqtt_client_t *c = lc->heap[1];
    uvmqtt__heap_remove(lc->heap, &lc->n, c);
    uvmqtt__client_on_timer(c);
  }
  lc->in_timer = false;
  lc_rearm(lc);
}

static void l_push(uvmqtt_client_t **head, uvmqtt_client_t *c) {
  c->lnext = *head;
  if (*head)
    (*head)->lpprev = &c->lnext;
  *head = c;
  c->lpprev = head;
}

static void l_remove(uvmqtt_client_t *c) {
  if (!c->lpprev)
    return;
  *c->lpprev = c->lnext;
  if (c->lnext)
    c->lnext->lpprev = c->lpprev;
  c->lnext = NULL;
  c->lpprev = NULL;
}

static void on_lc_idle(uv_idle_t *h);

void uvmqtt__client_flush_later(uvmqtt_client_t *c) {
  if (c->lpprev)
    return;
  l_push(&c->lc->flush, c);
  uv_idle_start(&c->lc->idle, on_lc_idle);
}

void uvmqtt__client_flush_cancel(uvmqtt_client_t *c) {
  if (!c->freed_session) /* then it may be in the closing list */
    l_remove(c);
}

static void lc_detach(uvmqtt_client_t *c);

static void on_lc_idle(uv_idle_t *h) {
  loop_ctx_t *lc = h->data;
  /* Output queued from inside these flushes waits for the next
   * iteration, as with an idle handle started from its own callback. */
  lc->running = lc->flush;
  if (lc->running)
    lc->running->lpprev = &lc->running;
  lc->flush = NULL;
  while (lc->running) {
    uvmqtt_client_t *c = lc->running;
    l_remove(c);
    uvmqtt__client_flush_ex(c, true);
  }
  bool alive = true;
  while (alive && lc->closing) {
    uvmqtt_client_t *c = lc->closing;
    l_remove(c);
    alive = lc->refs > 1; /* the last one closes the context */
    lc_detach(c);
  }
  if (alive && !lc->flush && !lc->closing)
    uv_idle_stop(&lc->idle);
}

loop_ctx_t *uvmqtt__loop_acquire(uv_loop_t *loop) {
  uv_once(&lc_once, lc_mutex_init);
  uv_mutex_lock(&lc_mutex);
  loop_ctx_t *lc = lc_list;
  while (lc && lc->loop != loop)
    lc = lc->next;
  if (!lc) {
    lc = uvmqtt__calloc(1, sizeof(*lc));
    if (lc && !(lc->heap = uvmqtt__malloc(17 * sizeof(*lc->heap)))) {
      uvmqtt__free(lc);
      lc = NULL;
    }
    if (lc) {
      lc->cap = 16;
      lc->loop = loop;
      uvmqtt__herd_init(&lc->herd, UVMQTT__HERD_DEFAULT);
      lc->armed = UINT64_MAX;
      uv_timer_init(loop, &lc->timer);
      uv_idle_init(loop, &lc->idle);
      lc->timer.data = lc;
      lc->idle.data = lc;
      lc->next = lc_list;
      lc_list = lc;
    }
  } else if (lc->refs + 1 > lc->cap) {
    uint32_t cap = lc->cap * 2;
    uvmqtt_client_t **heap =
        uvmqtt__realloc(lc->heap, ((size_t)cap + 1) * sizeof(*heap));
    if (heap) {
      lc->heap = heap;
      lc->cap = cap;
    } else {
      lc = NULL;
    }
  }
  if (lc)
    lc->refs++;
  uv_mutex_unlock(&lc_mutex);
  return lc;
}

static void on_lc_closed(uv_handle_t *h) {
  loop_ctx_t *lc = h->data;
  if (--lc->handles_open > 0)
    return;
  uvmqtt_client_t *c = lc->last;
  /* The context's handles are closed; the client completes when its own
   * last handle has closed too (a drain or request timer may still be
   * closing), and its close callback may still ask for the loop, which it
   * finds through lc: the client's last step frees the context, after
   * that callback (uvmqtt__client_close_now). */
  lc->dead = true;
  c->open_handles--;
  uvmqtt__client_close_now(c);
}

void uvmqtt__loop_free_dead(loop_ctx_t *lc) {
  if (!lc || !lc->dead)
    return;
  uvmqtt__free(lc->heap);
  uvmqtt__free(lc);
}

/* The client's last step in closing: it leaves the context; the last
 * client closes the shared handles first. */
static void lc_detach(uvmqtt_client_t *c) {
  loop_ctx_t *lc = c->lc;
  uv_mutex_lock(&lc_mutex);
  bool last = --lc->refs == 0;
  if (last) {
    loop_ctx_t **pp = &lc_list;
    while (*pp != lc)
      pp = &(*pp)->next;
    *pp = lc->next;
  }
  uv_mutex_unlock(&lc_mutex);
  if (last) {
    lc->last = c;
    lc->handles_open = 2;
    uv_close((uv_handle_t *)&lc->timer, on_lc_closed);
    uv_close((uv_handle_t *)&lc->idle, on_lc_closed);
    return;
  }
  c->open_handles--;
  uvmqtt__client_close_now(c);
}

void uvmqtt__loop_leave(uvmqtt_client_t *c) {
  l_remove(c); /* from the flush list */
  /* Leaving the loop context completes from its idle callback, never
   * from inside uvmqtt_client_close(). */
  c->open_handles++;
  l_push(&c->lc->closing, c);
  uv_idle_start(&c->lc->idle, on_lc_idle);
}

/* ---- herd control ---------------------------------------------------------
 * A client's attempt waits for a slot in C_WAIT with no deadline; when a
 * slot frees, the next waiter holds it and starts from its own timer, so
 * nothing starts from inside another client's callback. */

static void grant(loop_ctx_t *lc, uvmqtt__herd_node_t *n) {
  while (n != NULL) {
    attempt_t *at = (attempt_t *)n; /* the node is the first member */
    uvmqtt_client_t *w = at->client;
    at->has_slot = true;
    if (w->state == C_WAIT) {
      at->granted = true;
      uvmqtt__client_timer_start(w, 0);
      return;
    }
    at->has_slot = false; /* gone meanwhile: the next one */
    n = uvmqtt__herd_leave(&lc->herd);
  }
}

bool uvmqtt__loop_attempt_slot(uvmqtt_client_t *c) {
  attempt_t *at = c->at;
  if (at->has_slot)
    return true;
  if (uvmqtt__herd_waiting(&at->herd))
    return false;
  at->client = c;
  if (uvmqtt__herd_enter(&c->lc->herd, &at->herd)) {
    at->has_slot = true;
    return true;
  }
  uvmqtt__client_timer_stop(c);
  return false;
}

void uvmqtt__loop_attempt_release(uvmqtt_client_t *c) {
  attempt_t *at = c->at;
  if (!at)
    return;
  uvmqtt__herd_cancel(&c->lc->herd, &at->herd);
  if (at->has_slot) {
    at->has_slot = false;
    grant(c->lc, uvmqtt__herd_leave(&c->lc->herd));
  }
}

static loop_ctx_t *lc_find(uv_loop_t *loop) {
  uv_once(&lc_once, lc_mutex_init);
  uv_mutex_lock(&lc_mutex);
  loop_ctx_t *lc = lc_list;
  while (lc && lc->loop != loop)
    lc = lc->next;
  uv_mutex_unlock(&lc_mutex);
  return lc;
}

int uvmqtt_loop_set_attempt_limit(uv_loop_t *loop, unsigned limit) {
  if (!loop || limit > UINT32_MAX)
    return UVMQTT_EINVAL;
  loop_ctx_t *lc = lc_find(loop);
  if (!lc)
    return UVMQTT_ESTATE;
  lc->herd.limit = (uint32_t)limit;
  /* Raised: waiters may start now. */
  uvmqtt__herd_node_t *n;
  while ((n = uvmqtt__herd_next(&lc->herd)) != NULL)
    grant(lc, n);
  return 0;
}

int uvmqtt_loop_stats(uv_loop_t *loop, uvmqtt_loop_stats_t *st) {
  if (!loop || !st)
    return UVMQTT_EINVAL;
  loop_ctx_t *lc = lc_find(loop);
  memset(st, 0, sizeof(*st));
  if (!lc)
    return 0;
  *st = lc->st;
  st->clients = (uint32_t)lc->refs;
  st->attempts_active = lc->herd.active;
  st->attempts_waiting = lc->herd.waiting;
  st->attempt_limit = lc->herd.limit;
  st->attempts_active_max = lc->herd.peak_active;
  st->attempts_waiting_max = lc->herd.peak_waiting;
  return 0;
}
