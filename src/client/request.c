/* MQTT 5 request / response: a request is a publish with a Response Topic
 * and random Correlation Data; the response is the first message carrying
 * the same Correlation Data, or a timeout. Requests are kept in the rare
 * block with one timer for their deadlines. */
#include <string.h>

#include "alloc.h"
#include "client/client_int.h"

static void req_sweep(uvmqtt_client_t *c) {
  for (req_t **pp = &c->rare->reqs, *r; (r = *pp);) {
    if (r->answered && r->published) {
      *pp = r->next;
      uvmqtt__free(r);
    } else {
      pp = &r->next;
    }
  }
}

static void on_req_timer(uv_timer_t *t);

static void req_arm(uvmqtt_client_t *c) {
  uint64_t due = UINT64_MAX, now = uvmqtt__client_now(c);
  if (!c->rare->req_timer || c->state == C_CLOSING)
    return;
  for (req_t *r = c->rare->reqs; r; r = r->next)
    if (!r->answered && r->deadline < due)
      due = r->deadline;
  if (due == UINT64_MAX)
    uv_timer_stop(c->rare->req_timer);
  else
    uv_timer_start(c->rare->req_timer, on_req_timer, due > now ? due - now : 0,
                   0);
}

static void on_req_timer(uv_timer_t *t) {
  uvmqtt_client_t *c = t->data;
  uint64_t now = uvmqtt__client_now(c);
  ENTER(c);
  for (req_t *r = c->rare->reqs; r; r = r->next) {
    if (!r->answered && r->deadline <= now) {
      r->answered = true;
      r->cb(c, UVMQTT_ETIMEDOUT, NULL, r->arg);
    }
  }
  req_sweep(c);
  req_arm(c);
  LEAVE(c);
}

static void req_published(uvmqtt_client_t *c, const uvmqtt_pub_result_t *res,
                          void *arg) {
  int status = res->status;
  req_t *r = arg;
  r->published = true;
  if (status < 0 && !r->answered) {
    r->answered = true;
    r->cb(c, status, NULL, r->arg);
  }
  req_sweep(c);
  req_arm(c);
}

bool uvmqtt__request_answer(uvmqtt_client_t *c, const uvmqtt_message_t *m) {
  if (!m->props ||
      !(m->props->present & UVMQTT_PROP_BIT(UVMQTT_PROP_CORRELATION_DATA)) ||
      m->props->correlation_data.len != 16)
    return false;
  for (req_t *r = c->rare->reqs; r; r = r->next) {
    if (!r->answered &&
        memcmp(r->corr, m->props->correlation_data.data, 16) == 0) {
      r->answered = true;
      r->cb(c, 0, m, r->arg);
      return true;
    }
  }
  return false;
}

void uvmqtt__request_cancel_all(uvmqtt_client_t *c) {
  for (req_t *r = c->rare->reqs; r; r = r->next) {
    r->published = true;
    if (!r->answered) {
      r->answered = true;
      r->cb(c, UVMQTT_ECLOSED, NULL, r->arg);
    }
  }
  req_sweep(c);
}

int uvmqtt_request(uvmqtt_client_t *c, const uvmqtt_publish_opts_t *request,
                   const char *response_topic, unsigned timeout_ms,
                   uvmqtt_response_cb cb, void *arg) {
  uvmqtt_props_t props;
  if (!c || !request || !response_topic || !cb || timeout_ms == 0)
    return UVMQTT_EINVAL;
  if (c->o.version != UVMQTT_V5)
    return UVMQTT_ENOTSUP;
  int rc = uvmqtt_topic_validate(response_topic, strlen(response_topic));
  if (rc < 0)
    return rc;
  /* As publish would say, and before a timer is made that the teardown,
   * already past closing its handles, would never close. */
  if (c->state == C_CLOSING || c->close_requested)
    return UVMQTT_ECLOSED;
  rare_t *rr = uvmqtt__client_rare(c);
  if (!rr)
    return UVMQTT_ENOMEM;
  if (!rr->req_timer) {
    rr->req_timer = uvmqtt__malloc(sizeof(*rr->req_timer));
    if (!rr->req_timer)
      return UVMQTT_ENOMEM;
    uv_timer_init(c->lc->loop, rr->req_timer);
    rr->req_timer->data = c;
  }
  req_t *r = uvmqtt__calloc(1, sizeof(*r));
  if (!r)
    return UVMQTT_ENOMEM;
  if (uv_random(NULL, NULL, r->corr, sizeof(r->corr), 0, NULL) != 0) {
    uint64_t t[2] = {uv_hrtime(), (uint64_t)(uintptr_t)r};
    memcpy(r->corr, t, sizeof(r->corr));
  }
  r->cb = cb;
  r->arg = arg;
  r->deadline = uvmqtt__client_now(c) + timeout_ms;
  if (request->props)
    props = *request->props;
  else
    memset(&props, 0, sizeof(props));
  props.present |= UVMQTT_PROP_BIT(UVMQTT_PROP_RESPONSE_TOPIC) |
                   UVMQTT_PROP_BIT(UVMQTT_PROP_CORRELATION_DATA);
  props.response_topic.data = response_topic;
  props.response_topic.len = strlen(response_topic);
  props.correlation_data.data = r->corr;
  props.correlation_data.len = sizeof(r->corr);
  uvmqtt_publish_opts_t po = *request;
  po.props = &props;
  r->next = rr->reqs;
  rr->reqs = r;
  rc = uvmqtt_publish_ex(c, &po, req_published, r);
  if (rc < 0) {
    rr->reqs = r->next;
    uvmqtt__free(r);
    return rc;
  }
  req_arm(c);
  return rc;
}
