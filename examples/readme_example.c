/* The README's example: subscribe, route, publish at QoS 1, close.
 * Usage: readme_example [mqtt://host:port] */
#include <stdio.h>
#include <uvmqtt.h>

static int pending = 2; /* the PUBACK and the message coming back */

static void on_closed(uvmqtt_client_t *c) {
  (void)c;
  printf("closed\n");
}

static void done_one(uvmqtt_client_t *c) {
  if (--pending == 0)
    uvmqtt_client_close(c, on_closed); /* takes effect after we return */
}

/* Called for topics matching "sensors/+/temp"; others go to the default
 * message callback (uvmqtt_client_on_message). */
static void on_temp(uvmqtt_client_t *c, const uvmqtt_message_t *m, void *arg) {
  (void)arg;
  printf("%.*s = %.*s\n", (int)m->topic_len, m->topic, (int)m->payload_len,
         (const char *)m->payload);
  done_one(c);
}

/* Fires once: on PUBACK for QoS 1, or with an error. */
static void on_sent(uvmqtt_client_t *c, const uvmqtt_pub_result_t *r,
                    void *arg) {
  (void)arg;
  if (r->status < 0) {
    fprintf(stderr, "message %u: %s\n", r->packet_id,
            uvmqtt_strerror(r->status));
    uvmqtt_client_close(c, on_closed);
    return;
  }
  done_one(c);
}

static void on_subscribed(uvmqtt_client_t *c, const uvmqtt_sub_result_t *r,
                          void *arg) {
  (void)arg;
  if (r->status < 0 || r->count != 1 || r->codes[0] >= 0x80) {
    fprintf(stderr, "subscribe refused\n");
    uvmqtt_client_close(c, on_closed);
    return;
  }
  uvmqtt_publish(c, "sensors/kitchen/temp", "21.5", 4, 1, false, on_sent, NULL);
}

static void on_connect(uvmqtt_client_t *c, int status,
                       const uvmqtt_connack_t *ack, void *arg) {
  (void)ack;
  (void)arg;
  if (status < 0) {
    /* Reconnect is automatic; here we just report it. */
    fprintf(stderr, "connect: %s\n", uvmqtt_strerror(status));
    return;
  }
  uvmqtt_route_add(c, "sensors/+/temp", on_temp, NULL);
  uvmqtt_subscribe(c, "sensors/#", 1, on_subscribed, NULL);
}

int main(int argc, char **argv) {
  const char *uri = argc > 1 ? argv[1] : "mqtt://127.0.0.1:1883";
  uv_loop_t *loop = uv_default_loop();
  uvmqtt_options_t *o;
  uvmqtt_client_t *c;
  int rc;

  if ((rc = uvmqtt_options_new(&o)) < 0 ||
      (rc = uvmqtt_options_set_client_id(o, "readme-example")) < 0 ||
      (rc = uvmqtt_client_new(loop, o, &c)) < 0) { /* copies the options */
    fprintf(stderr, "setup: %s\n", uvmqtt_strerror(rc));
    return 1;
  }
  uvmqtt_options_del(o);

  uvmqtt_client_on_connect(c, on_connect, NULL);
  if ((rc = uvmqtt_client_connect_uri(c, uri)) < 0) {
    fprintf(stderr, "connect: %s\n", uvmqtt_strerror(rc));
    uvmqtt_client_close(c, NULL);
  }
  uv_run(loop, UV_RUN_DEFAULT); /* returns once the client is closed */
  return uv_loop_close(loop) == 0 ? 0 : 1;
}
