/* Subscriptions, retained messages and routes against mosquitto. */
#include "ctest.h"

#include <unistd.h>

#include "transport/transport.h"

typedef struct {
  uv_loop_t loop;
  tu_broker_t *b;
  ct_client_t a, p; /* subscriber, publisher */
} env_t;

static void env_up(env_t *e, int version) {
  e->b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&e->loop), 0);
  uvmqtt_options_t *o = ct_opts(version, NULL, true);
  ct_client_init(&e->a, &e->loop, o, "a");
  ct_client_init(&e->p, &e->loop, o, "p");
  uvmqtt_options_del(o);
  ct_connect(&e->a, e->b->port);
  ct_connect(&e->p, e->b->port);
  ct_wait_connected(&e->a, 1);
  ct_wait_connected(&e->p, 1);
}

static void env_down(env_t *e) {
  ct_close(&e->a);
  ct_close(&e->p);
  assert_int_equal(tu_loop_close(&e->loop, 2000), 0);
  ct_client_free(&e->a);
  ct_client_free(&e->p);
}

/* Publishes QoS 1 and waits for the PUBACK. */
static void pub1(env_t *e, ct_client_t *from, const char *topic,
                 const char *payload, bool retain) {
  ct_pub_t d;
  memset(&d, 0, sizeof(d));
  assert_true(uvmqtt_publish(from->c, topic, payload, strlen(payload), 1,
                             retain, ct_pub_cb, &d) > 0);
  assert_int_equal(ct_wait_int(&e->loop, &d.calls, 1, CT_WAIT_MS), 0);
  assert_int_equal(d.status, 0);
}

/* A marker message on a topic everyone hears: when it arrives, everything
 * published before it by the same client has arrived too. */
static void sync_marker(env_t *e, ct_client_t *to, const char *topic) {
  size_t before = to->nmsgs;
  pub1(e, &e->p, topic, "marker", false);
  assert_int_equal(ct_wait_size(&e->loop, &to->nmsgs, before + 1, CT_WAIT_MS),
                   0);
  assert_string_equal(to->msgs[to->nmsgs - 1].topic, topic);
}

static size_t count_topic(const ct_client_t *t, const char *topic) {
  size_t n = 0;
  for (size_t i = 0; i < t->nmsgs; i++)
    n += strcmp(t->msgs[i].topic, topic) == 0;
  return n;
}

static void run_many(int version) {
  env_t e;
  ct_sub_t s;
  env_up(&e, version);
  uvmqtt_subscription_t subs[4] = {
      {{"m/a/+", 5}, 0},
      {{"m/b/#", 5}, 1},
      {{"m/c", 3}, 2},
      {{"sync", 4}, 1},
  };
  memset(&s, 0, sizeof(s));
  int id = uvmqtt_subscribe_many(e.a.c, subs, 4, NULL, ct_sub_cb, &s);
  assert_true(id > 0);
  assert_int_equal(ct_wait_int(&e.loop, &s.calls, 1, CT_WAIT_MS), 0);
  assert_int_equal(s.status, 0);
  assert_int_equal(s.id, id);
  assert_int_equal(s.count, 4);
  assert_int_equal(s.codes[0], 0);
  assert_int_equal(s.codes[1], 1);
  assert_int_equal(s.codes[2], 2);
  assert_int_equal(s.codes[3], 1);
  assert_int_equal(s.has_props, version == UVMQTT_V5);

  pub1(&e, &e.p, "m/a/1", "x", false);
  pub1(&e, &e.p, "m/b/1/2", "y", false);
  pub1(&e, &e.p, "m/c", "z", false);
  pub1(&e, &e.p, "m/d", "no", false);
  sync_marker(&e, &e.a, "sync");
  assert_int_equal(e.a.nmsgs, 4);
  assert_string_equal(e.a.msgs[0].topic, "m/a/1");
  assert_int_equal(e.a.msgs[0].qos, 0); /* granted 0 */
  assert_string_equal(e.a.msgs[1].topic, "m/b/1/2");
  assert_int_equal(e.a.msgs[1].qos, 1);
  assert_string_equal(e.a.msgs[2].topic, "m/c");
  assert_int_equal(e.a.msgs[2].qos, 1); /* published at 1 */

  /* Unsubscribe two of them in one packet. */
  const char *un[2] = {"m/a/+", "m/c"};
  memset(&s, 0, sizeof(s));
  id = uvmqtt_unsubscribe_many(e.a.c, un, 2, NULL, ct_sub_cb, &s);
  assert_true(id > 0);
  assert_int_equal(ct_wait_int(&e.loop, &s.calls, 1, CT_WAIT_MS), 0);
  assert_int_equal(s.status, 0);
  assert_int_equal(s.id, id);
  if (version == UVMQTT_V5) {
    assert_int_equal(s.count, 2);
    assert_int_equal(s.codes[0], 0);
    assert_int_equal(s.codes[1], 0);
  } else {
    assert_int_equal(s.count, 0);
  }
  size_t before = e.a.nmsgs;
  pub1(&e, &e.p, "m/a/1", "x2", false);
  pub1(&e, &e.p, "m/c", "z2", false);
  pub1(&e, &e.p, "m/b/9", "y2", false);
  sync_marker(&e, &e.a, "sync");
  assert_int_equal(e.a.nmsgs, before + 2);
  assert_string_equal(e.a.msgs[before].topic, "m/b/9");

  /* Invalid filters and QoS are refused locally, callback never fires. */
  memset(&s, 0, sizeof(s));
  assert_int_equal(uvmqtt_subscribe(e.a.c, "a/#/b", 0, ct_sub_cb, &s),
                   UVMQTT_EFILTER);
  assert_int_equal(uvmqtt_subscribe(e.a.c, "a", 3, ct_sub_cb, &s), UVMQTT_EQOS);
  assert_int_equal(uvmqtt_unsubscribe(e.a.c, "a+", ct_sub_cb, &s),
                   UVMQTT_EFILTER);
  tu_run_for(&e.loop, 50);
  assert_int_equal(s.calls, 0);
  env_down(&e);
}

static void sub_many_v311(void **state) {
  (void)state;
  run_many(UVMQTT_V311);
}
static void sub_many_v5(void **state) {
  (void)state;
  run_many(UVMQTT_V5);
}
static void sub_many_v31(void **state) {
  (void)state;
  run_many(UVMQTT_V31);
}

/* v5 options: No Local keeps our own publishes away; a Subscription
 * Identifier comes back with each message it matched. */
static void sub_v5_options(void **state) {
  env_t e;
  ct_sub_t s;
  (void)state;
  env_up(&e, UVMQTT_V5);
  uvmqtt_subscription_t subs[2] = {
      {{"nl/#", 4}, 1 | UVMQTT_SUBOPT_NO_LOCAL},
      {{"sync", 4}, 1},
  };
  uvmqtt_props_t props;
  memset(&props, 0, sizeof(props));
  props.present = UVMQTT_PROP_BIT(UVMQTT_PROP_SUBSCRIPTION_IDENTIFIER);
  props.subscription_id = 4242;
  memset(&s, 0, sizeof(s));
  assert_true(uvmqtt_subscribe_many(e.a.c, subs, 2, &props, ct_sub_cb, &s) > 0);
  assert_int_equal(ct_wait_int(&e.loop, &s.calls, 1, CT_WAIT_MS), 0);
  assert_int_equal(s.status, 0);
  assert_int_equal(s.count, 2);
  assert_int_equal(s.codes[0], 1);

  /* Our own publish first (routed by the broker before its PUBACK), then
   * one from the other client. */
  pub1(&e, &e.a, "nl/self", "mine", false);
  pub1(&e, &e.p, "nl/other", "theirs", false);
  sync_marker(&e, &e.a, "sync");
  assert_int_equal(count_topic(&e.a, "nl/self"), 0);
  assert_int_equal(count_topic(&e.a, "nl/other"), 1);
  for (size_t i = 0; i < e.a.nmsgs; i++) {
    if (strcmp(e.a.msgs[i].topic, "nl/other") == 0) {
      assert_true(e.a.msgs[i].has_sub_id);
      assert_int_equal(e.a.msgs[i].sub_id, 4242);
      assert_string_equal(e.a.msgs[i].payload, "theirs");
    }
  }

  /* Without No Local the own message comes back (the control). */
  ct_subscribe(&e.p, "nl/#", 1);
  pub1(&e, &e.p, "nl/self2", "mine2", false);
  assert_int_equal(ct_wait_size(&e.loop, &e.p.nmsgs, 1, CT_WAIT_MS), 0);
  assert_string_equal(e.p.msgs[0].topic, "nl/self2");
  assert_false(e.p.msgs[0].has_sub_id);
  env_down(&e);
}

/* Retained: a new subscriber gets the retained message with the retain
 * flag; live messages carry no retain flag; an empty retained message
 * clears it. */
static void run_retained(int version) {
  env_t e;
  env_up(&e, version);
  pub1(&e, &e.p, "ret/1", "kept", true);
  ct_subscribe(&e.a, "ret/#", 1);
  assert_int_equal(ct_wait_size(&e.loop, &e.a.nmsgs, 1, CT_WAIT_MS), 0);
  assert_string_equal(e.a.msgs[0].topic, "ret/1");
  assert_string_equal(e.a.msgs[0].payload, "kept");
  assert_true(e.a.msgs[0].retain);
  assert_int_equal(e.a.msgs[0].qos, 1);

  pub1(&e, &e.p, "ret/2", "live", true);
  assert_int_equal(ct_wait_size(&e.loop, &e.a.nmsgs, 2, CT_WAIT_MS), 0);
  assert_string_equal(e.a.msgs[1].payload, "live");
  assert_false(e.a.msgs[1].retain); /* delivered live, not from the store */

  /* Clear ret/1 with an empty retained payload; a second subscriber then
   * gets only ret/2. */
  pub1(&e, &e.p, "ret/1", "", true);
  ct_subscribe(&e.p, "ret/#", 0);
  assert_int_equal(ct_wait_size(&e.loop, &e.p.nmsgs, 1, CT_WAIT_MS), 0);
  tu_run_for(&e.loop, 150);
  assert_int_equal(e.p.nmsgs, 1);
  assert_string_equal(e.p.msgs[0].topic, "ret/2");
  assert_true(e.p.msgs[0].retain);
  env_down(&e);
}

static void retained_v311(void **state) {
  (void)state;
  run_retained(UVMQTT_V311);
}
static void retained_v5(void **state) {
  (void)state;
  run_retained(UVMQTT_V5);
}

/* ---- re-subscribing after a session loss ---------------------------------
 * The README's pattern: subscribe in the connect callback. After a
 * reconnect without a session the client re-subscribes once and the
 * callback's identical subscribe sends nothing: one SUBSCRIBE and one
 * retained delivery per connection (the broker's log counts the packets). */

static ct_sub_t *rs_subs[4]; /* the connect callbacks' subscribes */

static void resub_on_connect(uvmqtt_client_t *c, int status,
                             const uvmqtt_connack_t *ack, void *arg) {
  ct_client_t *t = arg;
  (void)ack;
  if (status < 0)
    return;
  t->connected++;
  t->session_present = ack->session_present;
  ct_sub_t *s = calloc(1, sizeof(*s)); /* freed by the test */
  assert_non_null(s);
  assert_true(uvmqtt_subscribe(c, "rs/#", 1, ct_sub_cb, s) >= 0);
  if (t->connected <= 4)
    rs_subs[t->connected - 1] = s;
}

static size_t log_count(const tu_broker_t *b, const char *needle) {
  FILE *f = fopen(b->log, "r");
  char line[1024];
  size_t n = 0;
  assert_non_null(f);
  while (fgets(line, sizeof(line), f))
    n += strstr(line, needle) != NULL;
  fclose(f);
  return n;
}

static void run_resubscribe_once(int version) {
  char dir[] = "/tmp/uvmqtt-resub-XXXXXX", extra[512], path[600], needle[128];
  uv_loop_t loop;
  ct_client_t a, p;
  ct_sub_t **subs = rs_subs;
  assert_non_null(mkdtemp(dir));
  /* Persistent retained messages: they survive the broker's restart,
   * the subscriber's clean session does not. */
  snprintf(extra, sizeof(extra), "persistence true\npersistence_location %s/\n",
           dir);
  tu_broker_t *b = ct_broker(extra);
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(version, "resub-p", true);
  ct_client_init(&p, &loop, o, "p");
  uvmqtt_options_del(o);
  ct_connect(&p, b->port);
  ct_wait_connected(&p, 1);
  ct_pub_t d;
  memset(&d, 0, sizeof(d));
  assert_true(uvmqtt_publish(p.c, "rs/t", "kept", 4, 1, true, ct_pub_cb, &d) >
              0);
  assert_int_equal(ct_wait_int(&loop, &d.calls, 1, CT_WAIT_MS), 0);
  ct_close(&p);

  o = ct_opts(version, "resub-a", true);
  ct_client_init(&a, &loop, o, "a");
  uvmqtt_options_del(o);
  uvmqtt_client_on_connect(a.c, resub_on_connect, &a);
  ct_connect(&a, b->port);
  assert_int_equal(ct_wait_int(&loop, &a.connected, 1, CT_WAIT_MS), 0);
  assert_int_equal(ct_wait_size(&loop, &a.nmsgs, 1, CT_WAIT_MS), 0);

  /* The broker restarts: the client reconnects without a session. */
  tu_broker_stop(b);
  assert_int_equal(tu_broker_restart(b), 0);
  assert_int_equal(ct_wait_int(&loop, &a.connected, 2, CT_WAIT_MS), 0);
  assert_false(a.session_present);
  assert_int_equal(ct_wait_size(&loop, &a.nmsgs, 2, CT_WAIT_MS), 0);
  assert_int_equal(ct_wait_int(&loop, &subs[1]->calls, 1, CT_WAIT_MS), 0);
  tu_run_for(&loop, 300); /* a duplicate would arrive by now */

  snprintf(needle, sizeof(needle), "Received SUBSCRIBE from resub-a");
  assert_int_equal(log_count(b, needle), 2);
  assert_int_equal(a.nmsgs, 2); /* the retained message, once each time */
  for (size_t i = 0; i < a.nmsgs; i++) {
    assert_string_equal(a.msgs[i].payload, "kept");
    assert_true(a.msgs[i].retain);
  }
  /* Each connect callback's subscribe completed once, with the grant. */
  for (int i = 0; i < 2; i++) {
    assert_int_equal(subs[i]->calls, 1);
    assert_int_equal(subs[i]->status, 0);
    assert_int_equal(subs[i]->count, 1);
    assert_int_equal(subs[i]->codes[0], 1);
  }
  assert_int_equal(subs[0]->id > 0, 1);
  assert_int_equal(subs[1]->id, 0); /* no packet of its own */
  ct_close(&a);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&a);
  ct_client_free(&p);
  free(subs[0]);
  free(subs[1]);
  tu_broker_stop(b);
  snprintf(path, sizeof(path), "%s/mosquitto.db", dir);
  unlink(path);
  rmdir(dir);
}

static void resubscribe_once_v311(void **state) {
  (void)state;
  run_resubscribe_once(UVMQTT_V311);
}
static void resubscribe_once_v5(void **state) {
  (void)state;
  run_resubscribe_once(UVMQTT_V5);
}

/* Subscribe and unsubscribe while disconnected are queued and sent once
 * connected; an identical subscribe while one is active sends nothing and
 * completes at once with the known grant. */
static void sub_offline(void **state) {
  uv_loop_t loop;
  ct_client_t a, p;
  ct_sub_t s1, s2, u1;
  (void)state;
  tu_broker_t *b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(UVMQTT_V311, "offline-a", true);
  ct_client_init(&a, &loop, o, "a");
  uvmqtt_options_del(o);
  o = ct_opts(UVMQTT_V311, NULL, true);
  ct_client_init(&p, &loop, o, "p");
  uvmqtt_options_del(o);
  memset(&s1, 0, sizeof(s1));
  memset(&s2, 0, sizeof(s2));
  memset(&u1, 0, sizeof(u1));
  assert_int_equal(uvmqtt_subscribe(a.c, "off/#", 2, ct_sub_cb, &s1), 0);
  assert_int_equal(uvmqtt_subscribe(a.c, "gone/#", 1, NULL, NULL), 0);
  assert_int_equal(uvmqtt_unsubscribe(a.c, "gone/#", ct_sub_cb, &u1), 0);
  ct_connect(&a, b->port);
  ct_connect(&p, b->port);
  ct_wait_connected(&a, 1);
  ct_wait_connected(&p, 1);
  assert_int_equal(ct_wait_int(&loop, &s1.calls, 1, CT_WAIT_MS), 0);
  assert_int_equal(ct_wait_int(&loop, &u1.calls, 1, CT_WAIT_MS), 0);
  assert_int_equal(s1.status, 0);
  assert_true(s1.id > 0);
  assert_int_equal(s1.count, 1);
  assert_int_equal(s1.codes[0], 2);
  assert_int_equal(u1.status, 0);
  /* Identical and active: at once, nothing on the wire. */
  assert_int_equal(uvmqtt_subscribe(a.c, "off/#", 2, ct_sub_cb, &s2), 0);
  assert_int_equal(s2.calls, 1);
  assert_int_equal(s2.status, 0);
  assert_int_equal(s2.id, 0);
  assert_int_equal(s2.codes[0], 2);
  tu_run_for(&loop, 100);
  assert_int_equal(log_count(b, "Received SUBSCRIBE from offline-a"), 2);
  assert_int_equal(log_count(b, "Received UNSUBSCRIBE from offline-a"), 1);
  ct_pub_t d;
  memset(&d, 0, sizeof(d));
  assert_true(uvmqtt_publish(p.c, "off/1", "x", 1, 1, false, ct_pub_cb, &d) >
              0);
  assert_true(uvmqtt_publish(p.c, "gone/1", "y", 1, 1, false, ct_pub_cb, &d) >
              0);
  assert_int_equal(ct_wait_size(&loop, &a.nmsgs, 1, CT_WAIT_MS), 0);
  tu_run_for(&loop, 150);
  assert_int_equal(a.nmsgs, 1);
  assert_string_equal(a.msgs[0].topic, "off/1");
  ct_close(&a);
  ct_close(&p);
  assert_int_equal(tu_loop_close(&loop, 2000), 0);
  ct_client_free(&a);
  ct_client_free(&p);
}

/* ---- routes ---------------------------------------------------------------
 */

typedef struct {
  env_t *e;
  int temp, all, x, hum_all;
  char last[64];
  bool remove_temp_on_first; /* done by the '#' route on its first call */
  bool add_x_in_temp;
} routes_t;

static routes_t *R;

static void note(const uvmqtt_message_t *m) {
  snprintf(R->last, sizeof(R->last), "%.*s", (int)m->topic_len, m->topic);
}

static void on_x(uvmqtt_client_t *c, const uvmqtt_message_t *m, void *arg) {
  (void)c;
  assert_ptr_equal(arg, &R->x);
  note(m);
  R->x++;
}

static void on_temp(uvmqtt_client_t *c, const uvmqtt_message_t *m, void *arg) {
  assert_ptr_equal(arg, &R->temp);
  note(m);
  R->temp++;
  if (R->add_x_in_temp) {
    R->add_x_in_temp = false;
    assert_int_equal(uvmqtt_route_add(c, "x/#", on_x, &R->x), 0);
  }
}

static void on_all(uvmqtt_client_t *c, const uvmqtt_message_t *m, void *arg) {
  assert_ptr_equal(arg, &R->all);
  note(m);
  R->all++;
  if (R->remove_temp_on_first) {
    R->remove_temp_on_first = false;
    /* "s/#" is visited before "s/+/temp": the removed route must not be
     * called for this message. */
    assert_int_equal(uvmqtt_route_remove(c, "s/+/temp"), 0);
    assert_int_equal(uvmqtt_route_remove(c, "s/+/temp"), UVMQTT_ENOENT);
  }
}

static void routes(void **state) {
  env_t e;
  routes_t r;
  (void)state;
  memset(&r, 0, sizeof(r));
  R = &r;
  env_up(&e, UVMQTT_V311);
  ct_subscribe(&e.a, "#", 1);
  assert_int_equal(uvmqtt_route_add(e.a.c, "s/+/temp", on_temp, &r.temp), 0);
  assert_int_equal(uvmqtt_route_add(e.a.c, "s/#", on_all, &r.all), 0);
  assert_int_equal(uvmqtt_route_add(e.a.c, "bad/#/x", on_all, &r.all),
                   UVMQTT_EFILTER);
  assert_int_equal(uvmqtt_route_remove(e.a.c, "nope"), UVMQTT_ENOENT);

  pub1(&e, &e.p, "s/1/temp", "1", false); /* temp + all */
  pub1(&e, &e.p, "s/1/hum", "2", false);  /* all */
  pub1(&e, &e.p, "other", "3", false);    /* default */
  sync_marker(&e, &e.a, "sync");          /* default */
  assert_int_equal(r.temp, 1);
  assert_int_equal(r.all, 2);
  assert_int_equal(e.a.nmsgs, 2);
  assert_string_equal(e.a.msgs[0].topic, "other");

  /* Add a route from inside a callback; it sees the next messages. */
  r.add_x_in_temp = true;
  pub1(&e, &e.p, "s/2/temp", "4", false); /* temp (adds x/#) + all */
  pub1(&e, &e.p, "x/y", "5", false);      /* x, not the default */
  sync_marker(&e, &e.a, "sync");
  assert_int_equal(r.temp, 2);
  assert_int_equal(r.all, 3);
  assert_int_equal(r.x, 1);
  assert_int_equal(e.a.nmsgs, 3);

  /* Remove a route from inside another route's callback during the match
   * that would visit it next. */
  r.remove_temp_on_first = true;
  pub1(&e, &e.p, "s/3/temp", "6", false); /* all only */
  pub1(&e, &e.p, "s/4/temp", "7", false); /* all only */
  sync_marker(&e, &e.a, "sync");
  assert_int_equal(r.temp, 2);
  assert_int_equal(r.all, 5);
  assert_string_equal(r.last, "s/4/temp");

  /* Replace a route's callback; removing the last routes sends everything
   * to the default callback again. */
  assert_int_equal(uvmqtt_route_add(e.a.c, "s/#", on_x, &r.x), 0);
  pub1(&e, &e.p, "s/5", "8", false);
  sync_marker(&e, &e.a, "sync");
  assert_int_equal(r.x, 2);
  assert_int_equal(r.all, 5);
  assert_int_equal(uvmqtt_route_remove(e.a.c, "s/#"), 0);
  size_t before = e.a.nmsgs;
  pub1(&e, &e.p, "s/6", "9", false);
  sync_marker(&e, &e.a, "sync");
  assert_int_equal(e.a.nmsgs, before + 2);
  assert_string_equal(e.a.msgs[before].topic, "s/6");
  /* x/# stays registered: the client frees it on close. */
  env_down(&e);
}

/* Two SUBSCRIBEs of one filter with other options, the second sent
 * before the first is answered: the subscription ends with the grant of
 * the latest, whatever answered first, so an identical subscribe then
 * completes at once with that grant. Few filters: the client's list. */
static void sub_latest_grant(void **state) {
  (void)state;
  env_t e;
  env_up(&e, UVMQTT_V311);
  ct_sub_t s2, s1, again;
  memset(&s2, 0, sizeof(s2));
  memset(&s1, 0, sizeof(s1));
  memset(&again, 0, sizeof(again));
  assert_true(uvmqtt_subscribe(e.a.c, "lg/a", 2, ct_sub_cb, &s2) > 0);
  assert_true(uvmqtt_subscribe(e.a.c, "lg/a", 1, ct_sub_cb, &s1) > 0);
  assert_int_equal(ct_wait_int(&e.loop, &s1.calls, 1, CT_WAIT_MS), 0);
  assert_int_equal(s2.calls, 1);
  assert_int_equal(s2.codes[0], 2);
  assert_int_equal(s1.codes[0], 1);
  assert_int_equal(uvmqtt_subscribe(e.a.c, "lg/a", 1, ct_sub_cb, &again), 0);
  assert_int_equal(again.calls, 1);
  assert_int_equal(again.codes[0], 1);
  env_down(&e);
}

/* Identical subscribes waiting for pending ones complete in the order
 * they were made: one waiting for B (answered second) holds back one
 * waiting for A (answered first) until B's answer, then both complete,
 * once each, with their grants. One waiting for a filter unsubscribed
 * meanwhile completes with 0x80. */
static int wo_seq;
typedef struct {
  ct_sub_t r;
  int at; /* wo_seq when it completed */
} wo_t;

static void wo_cb(uvmqtt_client_t *c, const uvmqtt_sub_result_t *r, void *arg) {
  wo_t *w = arg;
  ct_sub_cb(c, r, &w->r);
  w->at = ++wo_seq;
}

static void sub_waiters_in_order(void **state) {
  (void)state;
  env_t e;
  env_up(&e, UVMQTT_V311);
  wo_t a, b, wb, wa, c, wc;
  memset(&a, 0, sizeof(a));
  memset(&b, 0, sizeof(b));
  memset(&wb, 0, sizeof(wb));
  memset(&wa, 0, sizeof(wa));
  memset(&c, 0, sizeof(c));
  memset(&wc, 0, sizeof(wc));
  wo_seq = 0;
  assert_true(uvmqtt_subscribe(e.a.c, "wo/a", 1, wo_cb, &a) > 0);
  assert_true(uvmqtt_subscribe(e.a.c, "wo/b", 2, wo_cb, &b) > 0);
  assert_int_equal(uvmqtt_subscribe(e.a.c, "wo/b", 2, wo_cb, &wb), 0);
  assert_int_equal(uvmqtt_subscribe(e.a.c, "wo/a", 1, wo_cb, &wa), 0);
  assert_int_equal(ct_wait_int(&e.loop, &wa.r.calls, 1, CT_WAIT_MS), 0);
  tu_run_for(&e.loop, 100); /* a second completion would come by now */
  assert_int_equal(a.at, 1);
  assert_int_equal(b.at, 2);
  assert_int_equal(wb.at, 3);
  assert_int_equal(wa.at, 4);
  assert_int_equal(wb.r.calls, 1);
  assert_int_equal(wa.r.calls, 1);
  assert_int_equal(wb.r.codes[0], 2);
  assert_int_equal(wa.r.codes[0], 1);
  assert_int_equal(wa.r.id, 0);
  /* Unsubscribed while an identical subscribe waits for it. */
  assert_true(uvmqtt_subscribe(e.a.c, "wo/c", 1, wo_cb, &c) > 0);
  assert_int_equal(uvmqtt_subscribe(e.a.c, "wo/c", 1, wo_cb, &wc), 0);
  assert_true(uvmqtt_unsubscribe(e.a.c, "wo/c", NULL, NULL) > 0);
  assert_int_equal(wc.r.calls, 1);
  assert_int_equal(wc.r.codes[0], 0x80);
  assert_int_equal(ct_wait_int(&e.loop, &c.r.calls, 1, CT_WAIT_MS), 0);
  env_down(&e);
}

/* ---- thousands of filters -------------------------------------------------
 * The README's pattern at gateway scale: 2,000 filters subscribed one by
 * one in the connect callback (the client's table past its list, so the
 * hash table, its tombstones and its rehashing are what is exercised), 500
 * of them unsubscribed, then a session loss. Afterwards the client
 * re-subscribes the 1,500 it holds in SUBSCRIBEs of 64, the callback's
 * identical subscribes send nothing and complete with those answers, and
 * the 500 it let go are subscribed anew: the broker's log counts every
 * SUBSCRIBE, and the messages show what is subscribed. */

#define MF_N 2000
#define MF_GONE 500 /* filters 0 .. MF_GONE - 1 are unsubscribed */

static struct {
  int calls[MF_N];
  int done, bad;
} mf;

static void mf_sub_cb(uvmqtt_client_t *c, const uvmqtt_sub_result_t *r,
                      void *arg) {
  (void)c;
  intptr_t i = (intptr_t)arg;
  mf.calls[i]++;
  mf.done++;
  if (r->status != 0 || r->count != 1 || r->codes[0] != 1)
    mf.bad++;
}

static intptr_t mf_n = MF_N; /* filters mf_on_connect subscribes */

static void mf_on_connect(uvmqtt_client_t *c, int status,
                          const uvmqtt_connack_t *ack, void *arg) {
  ct_client_t *t = arg;
  char f[32];
  if (status < 0)
    return;
  t->connected++;
  t->session_present = ack->session_present;
  for (intptr_t i = 0; i < mf_n; i++) {
    snprintf(f, sizeof(f), "mf/%d/+", (int)i);
    assert_true(uvmqtt_subscribe(c, f, 1, mf_sub_cb, (void *)i) >= 0);
  }
}

/* Publishes QoS 1 to mf/<i>/x for each i, then an end marker: exactly
 * the indexes from `from` on arrive, each once. */
static void mf_probe(uv_loop_t *loop, ct_client_t *a, ct_client_t *p,
                     const int *which, size_t n, int from) {
  char topic[32];
  size_t before = a->nmsgs, expect = 0;
  for (size_t k = 0; k < n; k++) {
    ct_pub_t d;
    memset(&d, 0, sizeof(d));
    snprintf(topic, sizeof(topic), "mf/%d/x", which[k]);
    assert_true(uvmqtt_publish(p->c, topic, "v", 1, 1, false, ct_pub_cb, &d) >
                0);
    assert_int_equal(ct_wait_int(loop, &d.calls, 1, CT_WAIT_MS), 0);
    assert_int_equal(d.status, 0);
    expect += which[k] >= from;
  }
  ct_pub_t d;
  memset(&d, 0, sizeof(d));
  assert_true(
      uvmqtt_publish(p->c, "mf/1999/end", "e", 1, 1, false, ct_pub_cb, &d) > 0);
  assert_int_equal(
      ct_wait_size(loop, &a->nmsgs, before + expect + 1, CT_WAIT_MS), 0);
  tu_run_for(loop, 200); /* a duplicate would arrive by now */
  assert_int_equal(a->nmsgs, before + expect + 1);
  assert_string_equal(a->msgs[a->nmsgs - 1].topic, "mf/1999/end");
  for (size_t k = 0; k < n; k++) {
    snprintf(topic, sizeof(topic), "mf/%d/x", which[k]);
    size_t got = 0;
    for (size_t m = before; m < a->nmsgs; m++)
      got += strcmp(a->msgs[m].topic, topic) == 0;
    assert_int_equal(got, which[k] >= from ? 1 : 0);
  }
}

/* The indexes i of the mf/<i>/+ filters the broker was sent since it
 * last started, in the order it received them. */
static size_t mf_logged(const tu_broker_t *b, int *out, size_t cap) {
  FILE *f = fopen(b->log, "r");
  char line[1024];
  size_t n = 0;
  assert_non_null(f);
  while (fgets(line, sizeof(line), f)) {
    if (strstr(line, "mosquitto version") && strstr(line, "starting"))
      n = 0;
    const char *p = strstr(line, ": \tmf/");
    if (p && n < cap)
      out[n++] = atoi(p + 6);
  }
  fclose(f);
  return n;
}

/* Closes a test's two clients, its loop and its broker. */
static void pair_down(uv_loop_t *loop, ct_client_t *a, ct_client_t *p,
                      tu_broker_t *b) {
  ct_close(a);
  ct_close(p);
  assert_int_equal(tu_loop_close(loop, 2000), 0);
  ct_client_free(a);
  ct_client_free(p);
  tu_broker_stop(b);
}

static void run_many_filters(int version) {
  static const int probe[] = {0, 1, 499, 500, 1234, 1999};
  char needle[64], f[32];
  uv_loop_t loop;
  ct_client_t a, p;
  memset(&mf, 0, sizeof(mf));
  tu_broker_t *b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(version, "mf-p", true);
  ct_client_init(&p, &loop, o, "p");
  uvmqtt_options_del(o);
  o = ct_opts(version, "mf-a", true);
  ct_client_init(&a, &loop, o, "a");
  uvmqtt_options_del(o);
  uvmqtt_client_on_connect(a.c, mf_on_connect, &a);
  ct_connect(&p, b->port);
  ct_wait_connected(&p, 1);
  uint64_t acks = uvmqtt__tcp_quickacks();
  ct_connect(&a, b->port);
  assert_int_equal(ct_wait_int(&loop, &mf.done, MF_N, CT_WAIT_MS), 0);
  /* The broker (Nagle's algorithm on) holds the rest of the SUBACKs until
   * a read is acknowledged: each read that leaves answers owed is. */
  assert_true(uvmqtt__tcp_quickacks() - acks >= 10); /* 160-245; 1 without */
  snprintf(needle, sizeof(needle), "Received SUBSCRIBE from mf-a");
  assert_int_equal(log_count(b, needle), MF_N);

  /* Identical again while active: nothing sent, completed at once. */
  assert_int_equal(uvmqtt_subscribe(a.c, "mf/7/+", 1, mf_sub_cb, (void *)7), 0);
  assert_int_equal(mf.calls[7], 2);

  ct_sub_t u;
  memset(&u, 0, sizeof(u));
  for (int i = 0; i < MF_GONE; i++) {
    snprintf(f, sizeof(f), "mf/%d/+", i);
    assert_true(uvmqtt_unsubscribe(a.c, f, ct_sub_cb, &u) > 0);
  }
  assert_int_equal(ct_wait_int(&loop, &u.calls, MF_GONE, CT_WAIT_MS), 0);
  assert_int_equal(u.status, 0);
  mf_probe(&loop, &a, &p, probe, 6, MF_GONE);

  /* Other options: a SUBSCRIBE of its own; an identical one meanwhile
   * waits for its answer, then both have the new grant. */
  ct_sub_t q2, q2b;
  memset(&q2, 0, sizeof(q2));
  memset(&q2b, 0, sizeof(q2b));
  assert_true(uvmqtt_subscribe(a.c, "mf/1500/+", 2, ct_sub_cb, &q2) > 0);
  assert_int_equal(uvmqtt_subscribe(a.c, "mf/1500/+", 2, ct_sub_cb, &q2b), 0);
  assert_int_equal(q2b.calls, 0);
  assert_int_equal(ct_wait_int(&loop, &q2b.calls, 1, CT_WAIT_MS), 0);
  assert_int_equal(q2.calls, 1);
  assert_int_equal(q2.codes[0], 2);
  assert_int_equal(q2b.codes[0], 2);
  assert_int_equal(q2b.id, 0); /* no packet of its own */

  /* The broker restarts without the session. */
  tu_broker_stop(b);
  assert_int_equal(tu_broker_restart(b), 0);
  assert_int_equal(ct_wait_int(&loop, &a.connected, 2, CT_WAIT_MS), 0);
  assert_false(a.session_present);
  assert_int_equal(ct_wait_int(&loop, &mf.done, 2 * MF_N + 1, CT_WAIT_MS), 0);
  tu_run_for(&loop, 200); /* a second completion would come by now */
  assert_int_equal(mf.done, 2 * MF_N + 1);
  assert_int_equal(mf.bad, 0);
  for (int i = 0; i < MF_N; i++)
    assert_int_equal(mf.calls[i], i == 7 ? 3 : 2);
  /* 1,500 re-subscribed 64 at a time (mf/1500/+ at QoS 2), 500 subscribed
   * one by one, and mf/1500/+ at QoS 1 again (other options). */
  size_t resub = (MF_N - MF_GONE + 63) / 64;
  assert_int_equal(log_count(b, needle), MF_N + 1 + resub + MF_GONE + 1);
  /* Re-subscribed first, in the order they were subscribed. */
  static int order[MF_N + 8];
  assert_int_equal(mf_logged(b, order, MF_N + 8), MF_N + 1);
  for (int k = 0; k < MF_N - MF_GONE; k++)
    assert_int_equal(order[k], MF_GONE + k);
  ct_wait_connected(&p, 2);
  mf_probe(&loop, &a, &p, probe, 6, 0);
  /* mf/1500/+ holds the grant of the latest SUBSCRIBE naming it (QoS 1,
   * answered after the re-subscribing one's QoS 2). */
  ct_sub_t q1;
  memset(&q1, 0, sizeof(q1));
  assert_int_equal(uvmqtt_subscribe(a.c, "mf/1500/+", 1, ct_sub_cb, &q1), 0);
  assert_int_equal(q1.calls, 1);
  assert_int_equal(q1.codes[0], 1);

  pair_down(&loop, &a, &p, b);
}

static void many_filters_v311(void **state) {
  (void)state;
  run_many_filters(UVMQTT_V311);
}
static void many_filters_v5(void **state) {
  (void)state;
  run_many_filters(UVMQTT_V5);
}

/* ---- a broker that takes at most 8 filters per packet --------------------
 */

#define MX_N 45
#define MX_MAX 8

/* The filters in each SUBSCRIBE from mx-a the broker received since it
 * last started, and how many such packets. */
static size_t mx_logged(const tu_broker_t *b, size_t *most, size_t *total) {
  FILE *f = fopen(b->log, "r");
  char line[1024];
  size_t n = 0, cur = 0;
  assert_non_null(f);
  *most = *total = 0;
  while (fgets(line, sizeof(line), f)) {
    if (strstr(line, "mosquitto version") && strstr(line, "starting"))
      n = cur = *most = *total = 0;
    if (strstr(line, "Received SUBSCRIBE from mx-a")) {
      n++;
      cur = 0;
    } else if (strstr(line, ": \tmf/") || strstr(line, ": \tmx/")) {
      cur++;
      (*total)++;
      if (cur > *most)
        *most = cur;
    }
  }
  fclose(f);
  return n;
}

static void run_max_filters(int version) {
  uv_loop_t loop;
  ct_client_t a, p;
  size_t most, total;
  memset(&mf, 0, sizeof(mf));
  mf_n = MX_N;
  assert_int_equal(uvmqtt_options_set_max_filters(NULL, 8), UVMQTT_EINVAL);
  tu_broker_t *b = ct_broker(NULL);
  assert_int_equal(uv_loop_init(&loop), 0);
  uvmqtt_options_t *o = ct_opts(version, "mx-p", true);
  ct_client_init(&p, &loop, o, "p");
  uvmqtt_options_del(o);
  o = ct_opts(version, "mx-a", true);
  assert_int_equal(uvmqtt_options_set_max_filters(o, 65536), UVMQTT_EINVAL);
  assert_int_equal(uvmqtt_options_set_max_filters(o, MX_MAX), 0);
  ct_client_init(&a, &loop, o, "a");
  uvmqtt_options_del(o);

  /* Above the limit: refused at once, nothing queued. */
  uvmqtt_subscription_t v[MX_MAX + 1];
  const char *names[MX_MAX + 1];
  char fs[MX_MAX + 1][16];
  for (int i = 0; i <= MX_MAX; i++) {
    snprintf(fs[i], sizeof(fs[i]), "mx/many/%d", i);
    v[i].filter.data = fs[i];
    v[i].filter.len = strlen(fs[i]);
    v[i].options = 1;
    names[i] = fs[i];
  }
  ct_sub_t s;
  memset(&s, 0, sizeof(s));
  assert_int_equal(
      uvmqtt_subscribe_many(a.c, v, MX_MAX + 1, NULL, ct_sub_cb, &s),
      UVMQTT_EINVAL);
  assert_int_equal(
      uvmqtt_unsubscribe_many(a.c, names, MX_MAX + 1, NULL, ct_sub_cb, &s),
      UVMQTT_EINVAL);
  assert_int_equal(s.calls, 0);

  uvmqtt_client_on_connect(a.c, mf_on_connect, &a);
  ct_connect(&p, b->port);
  ct_wait_connected(&p, 1);
  ct_connect(&a, b->port);
  assert_int_equal(ct_wait_int(&loop, &mf.done, MX_N, CT_WAIT_MS), 0);
  assert_int_equal(mf.bad, 0);
  /* At the limit: one packet. */
  assert_true(uvmqtt_subscribe_many(a.c, v, MX_MAX, NULL, ct_sub_cb, &s) > 0);
  assert_int_equal(ct_wait_int(&loop, &s.calls, 1, CT_WAIT_MS), 0);
  assert_int_equal(s.status, 0);
  assert_int_equal(mx_logged(b, &most, &total), MX_N + 1);
  assert_int_equal(most, MX_MAX);

  /* The broker restarts without the session: the client re-subscribes
   * all MX_N + MX_MAX filters, at most MX_MAX per SUBSCRIBE. */
  tu_broker_stop(b);
  assert_int_equal(tu_broker_restart(b), 0);
  assert_int_equal(ct_wait_int(&loop, &a.connected, 2, CT_WAIT_MS), 0);
  assert_false(a.session_present);
  assert_int_equal(ct_wait_int(&loop, &mf.done, 2 * MX_N, CT_WAIT_MS), 0);
  assert_int_equal(mf.bad, 0);
  tu_run_for(&loop, 200); /* anything more is in the log by now */
  size_t n = mx_logged(b, &most, &total);
  assert_int_equal(total, MX_N + MX_MAX);
  assert_int_equal(most, MX_MAX);
  assert_int_equal(n, (MX_N + MX_MAX + MX_MAX - 1) / MX_MAX);

  /* Every filter is held: one message on each of a few arrives. */
  ct_wait_connected(&p, 2);
  static const char *probe[] = {"mf/0/x", "mf/44/x", "mx/many/0", "mx/many/7",
                                "mx/many/8"};
  size_t before = a.nmsgs;
  for (int k = 0; k < 5; k++) {
    ct_pub_t d;
    memset(&d, 0, sizeof(d));
    assert_true(uvmqtt_publish(p.c, probe[k], "v", 1, 1, false, ct_pub_cb, &d) >
                0);
    assert_int_equal(ct_wait_int(&loop, &d.calls, 1, CT_WAIT_MS), 0);
  }
  assert_int_equal(ct_wait_size(&loop, &a.nmsgs, before + 4, CT_WAIT_MS), 0);
  tu_run_for(&loop, 200);
  assert_int_equal(a.nmsgs, before + 4); /* mx/many/8 was never subscribed */

  memset(&s, 0, sizeof(s));
  assert_true(uvmqtt_unsubscribe_many(a.c, names, MX_MAX, NULL, ct_sub_cb, &s) >
              0);
  assert_int_equal(ct_wait_int(&loop, &s.calls, 1, CT_WAIT_MS), 0);
  assert_int_equal(s.status, 0);

  pair_down(&loop, &a, &p, b);
  mf_n = MF_N;
}

static void max_filters_v311(void **state) {
  (void)state;
  run_max_filters(UVMQTT_V311);
}
static void max_filters_v5(void **state) {
  (void)state;
  run_max_filters(UVMQTT_V5);
}

static const struct CMUnitTest tests[] = {
    CT_TEST(sub_many_v31),
    CT_TEST(sub_many_v311),
    CT_TEST(sub_many_v5),
    CT_TEST(sub_v5_options),
    CT_TEST(retained_v311),
    CT_TEST(retained_v5),
    CT_TEST(routes),
    CT_TEST(resubscribe_once_v311),
    CT_TEST(resubscribe_once_v5),
    CT_TEST(sub_offline),
    CT_TEST(sub_latest_grant),
    CT_TEST(sub_waiters_in_order),
    CT_TEST(many_filters_v311),
    CT_TEST(many_filters_v5),
    CT_TEST(max_filters_v311),
    CT_TEST(max_filters_v5),
};

CT_MAIN(tests)
