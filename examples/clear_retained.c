/* clear_retained: removes the retained messages matching a topic filter.
 *
 *   clear_retained [-n] URI FILTER      e.g. mqtt://localhost sensors/#
 *
 * It subscribes to FILTER, collects the topics of the retained messages the
 * broker sends until none has arrived for half a second, then publishes an
 * empty retained message (QoS 1) to each of them, which deletes it, and
 * reports how many it cleared. -n only lists them.
 *
 * Exit status: 0 on success, 1 on any error (printed on stderr). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uvmqtt.h"

#define QUIET_MS 500

typedef struct {
  uvmqtt_client_t *client;
  uv_timer_t quiet;
  const char *filter;
  bool dry_run;
  char **topics;
  size_t ntopics;
  size_t pending;
  size_t cleared;
  int exit_code;
  bool subscribed, clearing, done;
} app_t;

static void finish(app_t *a, int code) {
  if (a->done)
    return;
  a->done = true;
  a->exit_code = code;
  uv_close((uv_handle_t *)&a->quiet, NULL);
  if (uvmqtt_client_is_connected(a->client))
    uvmqtt_client_disconnect(a->client);
  uvmqtt_client_close(a->client, NULL);
}

static void on_cleared(uvmqtt_client_t *c, const uvmqtt_pub_result_t *r,
                       void *arg) {
  app_t *a = arg;
  (void)c;
  a->pending--;
  if (r->status < 0)
    fprintf(stderr, "clear_retained: could not clear a message: %s\n",
            uvmqtt_strerror(r->status));
  else
    a->cleared++;
  if (a->pending == 0) {
    printf("cleared %zu retained message%s\n", a->cleared,
           a->cleared == 1 ? "" : "s");
    finish(a, a->cleared == a->ntopics ? 0 : 1);
  }
}

/* No new retained message for a while: the broker has sent them all. */
static void on_quiet(uv_timer_t *t) {
  app_t *a = t->data;
  a->clearing = true;
  if (a->dry_run || a->ntopics == 0) {
    printf("%zu retained message%s\n", a->ntopics, a->ntopics == 1 ? "" : "s");
    finish(a, 0);
    return;
  }
  for (size_t i = 0; i < a->ntopics; i++) {
    /* An empty retained message deletes the one the broker holds. */
    int rc = uvmqtt_publish(a->client, a->topics[i], NULL, 0, 1, true,
                            on_cleared, a);
    if (rc < 0) {
      fprintf(stderr, "clear_retained: cannot publish to %s: %s\n",
              a->topics[i], uvmqtt_strerror(rc));
      continue;
    }
    a->pending++;
  }
  if (a->pending == 0)
    finish(a, 1);
}

static void on_message(uvmqtt_client_t *c, const uvmqtt_message_t *m,
                       void *arg) {
  app_t *a = arg;
  (void)c;
  /* Only retained messages sent for the new subscription count; live
   * traffic (and the echo of our own clears) does not. */
  if (!m->retain || a->clearing || m->payload_len == 0)
    return;
  char **v = realloc(a->topics, (a->ntopics + 1) * sizeof(*v));
  char *t = malloc(m->topic_len + 1);
  if (!v || !t) {
    free(t);
    if (v)
      a->topics = v;
    fprintf(stderr, "clear_retained: out of memory\n");
    finish(a, 1);
    return;
  }
  memcpy(t, m->topic, m->topic_len);
  t[m->topic_len] = '\0';
  a->topics = v;
  a->topics[a->ntopics++] = t;
  if (a->dry_run)
    printf("%s\n", t);
  uv_timer_start(&a->quiet, on_quiet, QUIET_MS, 0);
}

static void on_subscribed(uvmqtt_client_t *c, const uvmqtt_sub_result_t *r,
                          void *arg) {
  app_t *a = arg;
  (void)c;
  if (r->status < 0 || r->count != 1 || r->codes[0] >= 0x80) {
    fprintf(stderr, "clear_retained: subscription to %s refused\n", a->filter);
    finish(a, 1);
    return;
  }
  a->subscribed = true;
  uv_timer_start(&a->quiet, on_quiet, QUIET_MS, 0);
}

static void on_connect(uvmqtt_client_t *c, int status,
                       const uvmqtt_connack_t *ack, void *arg) {
  app_t *a = arg;
  if (status < 0) {
    if (status == UVMQTT_EREFUSED)
      fprintf(stderr, "clear_retained: connection refused: %s\n",
              uvmqtt_reason_string(ack->reason_code, true));
    else
      fprintf(stderr, "clear_retained: cannot connect: %s\n",
              uvmqtt_strerror(status));
    finish(a, 1);
    return;
  }
  if (a->subscribed)
    return;
  int rc = uvmqtt_subscribe(c, a->filter, 1, on_subscribed, a);
  if (rc < 0) {
    fprintf(stderr, "clear_retained: cannot subscribe to %s: %s\n", a->filter,
            uvmqtt_strerror(rc));
    finish(a, 1);
  }
}

int main(int argc, char **argv) {
  /* A write to a connection the broker reset raises SIGPIPE; libuv
   * leaves the signal to the program. Ignore it: the write fails with
   * EPIPE instead, and the client reconnects. */
  signal(SIGPIPE, SIG_IGN);
  app_t a;
  int arg = 1;
  memset(&a, 0, sizeof(a));
  if (argc > 1 && strcmp(argv[1], "-n") == 0) {
    a.dry_run = true;
    arg++;
  }
  if (argc - arg != 2) {
    fprintf(stderr, "usage: %s [-n] URI FILTER\n", argv[0]);
    return 1;
  }
  a.filter = argv[arg + 1];
  if (uvmqtt_filter_validate(a.filter, strlen(a.filter)) < 0) {
    fprintf(stderr, "clear_retained: invalid filter %s\n", a.filter);
    return 1;
  }

  uv_loop_t *loop = uv_default_loop();
  int rc = uvmqtt_client_new(loop, NULL, &a.client);
  if (rc < 0) {
    fprintf(stderr, "clear_retained: %s\n", uvmqtt_strerror(rc));
    return 1;
  }
  uv_timer_init(loop, &a.quiet);
  a.quiet.data = &a;
  uvmqtt_client_on_connect(a.client, on_connect, &a);
  uvmqtt_client_on_message(a.client, on_message, &a);
  rc = uvmqtt_client_connect_uri(a.client, argv[arg]);
  if (rc < 0) {
    fprintf(stderr, "clear_retained: %s: %s\n", argv[arg], uvmqtt_strerror(rc));
    finish(&a, 1);
  }
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  for (size_t i = 0; i < a.ntopics; i++)
    free(a.topics[i]);
  free(a.topics);
  return a.exit_code;
}
