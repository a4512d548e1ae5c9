/* uvmqtt demo: two clients on one loop talk through a broker.
 *
 * A "gateway" client publishes sensor readings at QoS 0, 1 and 2 and a
 * retained status with a will; a "dashboard" client subscribes, routes
 * temperatures and humidities to their own callbacks, and counts what
 * arrives. The demo ends when every reading has arrived and every publish
 * has completed, then closes both clients and checks the loop is empty.
 *
 * Usage: demo [--port PORT] [--host HOST] [--count N] */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uvmqtt.h>

static const char *host = "127.0.0.1";
static int port = 1883;
static int count = 5;

static uvmqtt_client_t *gateway, *dashboard;
static int expected, received, completed, failed, closed;

static void on_closed(uvmqtt_client_t *c) {
  (void)c;
  closed++;
}

static void finish_if_done(void) {
  if (received >= expected && completed >= expected + 1) {
    printf("demo: %d readings received, %d publishes completed, %d failed\n",
           received, completed, failed);
    uvmqtt_client_close(gateway, on_closed);
    uvmqtt_client_close(dashboard, on_closed);
  }
}

static void print_message(const char *what, const uvmqtt_message_t *m) {
  printf("  %-11s %.*s = %.*s (QoS %u%s)\n", what, (int)m->topic_len, m->topic,
         (int)m->payload_len, (const char *)m->payload, m->qos,
         m->retain ? ", retained" : "");
}

static void on_temperature(uvmqtt_client_t *c, const uvmqtt_message_t *m,
                           void *arg) {
  (void)c;
  (void)arg;
  print_message("temperature", m);
  received++;
  finish_if_done();
}

static void on_humidity(uvmqtt_client_t *c, const uvmqtt_message_t *m,
                        void *arg) {
  (void)c;
  (void)arg;
  print_message("humidity", m);
  received++;
  finish_if_done();
}

static void on_other(uvmqtt_client_t *c, const uvmqtt_message_t *m, void *arg) {
  (void)c;
  (void)arg;
  print_message("other", m);
}

static void on_sent(uvmqtt_client_t *c, const uvmqtt_pub_result_t *r,
                    void *arg) {
  (void)c;
  (void)arg;
  completed++;
  if (r->status < 0) {
    failed++;
    fprintf(stderr, "demo: publish %u failed: %s\n", r->packet_id,
            uvmqtt_strerror(r->status));
  }
  finish_if_done();
}

static void publish_readings(void) {
  char topic[64], payload[32];
  uvmqtt_publish(gateway, "demo/gateway/status", "online", 6, 1, true, on_sent,
                 NULL);
  for (int i = 0; i < count; i++) {
    for (int qos = 0; qos <= 2; qos++) {
      snprintf(topic, sizeof(topic), "demo/sensors/room%d/%s", qos,
               i % 2 ? "humidity" : "temp");
      snprintf(payload, sizeof(payload), "%d.%d", 20 + i, qos);
      int rc = uvmqtt_publish(gateway, topic, payload, strlen(payload), qos,
                              false, on_sent, NULL);
      if (rc < 0) {
        fprintf(stderr, "demo: publish: %s\n", uvmqtt_strerror(rc));
        completed++, failed++;
      }
    }
  }
}

static void on_subscribed(uvmqtt_client_t *c, const uvmqtt_sub_result_t *r,
                          void *arg) {
  (void)c;
  (void)arg;
  if (r->status < 0 || r->count != 2 || r->codes[0] >= 0x80) {
    fprintf(stderr, "demo: subscribe failed\n");
    exit(1);
  }
  printf("dashboard: subscribed (granted QoS %u and %u)\n", r->codes[0],
         r->codes[1]);
  publish_readings();
}

static void on_dashboard_connect(uvmqtt_client_t *c, int status,
                                 const uvmqtt_connack_t *ack, void *arg) {
  (void)ack;
  (void)arg;
  if (status < 0) {
    fprintf(stderr, "dashboard: %s\n", uvmqtt_strerror(status));
    return;
  }
  printf("dashboard: connected as %s\n", uvmqtt_client_get_client_id(c));
  uvmqtt_route_add(c, "demo/sensors/+/temp", on_temperature, NULL);
  uvmqtt_route_add(c, "demo/sensors/+/humidity", on_humidity, NULL);
  uvmqtt_subscription_t subs[2] = {
      {{"demo/sensors/#", 14}, 2},
      {{"demo/gateway/+", 14}, 1},
  };
  uvmqtt_subscribe_many(c, subs, 2, NULL, on_subscribed, NULL);
}

static void on_gateway_connect(uvmqtt_client_t *c, int status,
                               const uvmqtt_connack_t *ack, void *arg) {
  (void)ack;
  (void)arg;
  if (status < 0) {
    fprintf(stderr, "gateway: %s\n", uvmqtt_strerror(status));
    return;
  }
  printf("gateway: connected as %s\n", uvmqtt_client_get_client_id(c));
}

static void on_log(uvmqtt_client_t *c, int level, const char *msg, void *arg) {
  (void)arg;
  (void)level;
  fprintf(stderr, "[%s] %s\n", uvmqtt_client_get_client_id(c), msg);
}

static int make_client(uv_loop_t *loop, const char *id, uvmqtt_client_t **c) {
  uvmqtt_options_t *o;
  int rc = uvmqtt_options_new(&o);
  if (rc < 0)
    return rc;
  uvmqtt_options_set_client_id(o, id);
  uvmqtt_options_set_keepalive(o, 30);
  if (strcmp(id, "demo-gateway") == 0)
    uvmqtt_options_set_will(o, "demo/gateway/status", "offline", 7, 1, true);
  rc = uvmqtt_client_new(loop, o, c);
  uvmqtt_options_del(o);
  if (rc == 0)
    uvmqtt_client_on_log(*c, on_log, NULL, UVMQTT_LOG_WARN);
  return rc;
}

int main(int argc, char **argv) {
  /* A write to a connection the broker reset raises SIGPIPE; libuv
   * leaves the signal to the program. Ignore it: the write fails with
   * EPIPE instead, and the client reconnects. */
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t loop;
  int rc;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--port") == 0)
      port = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--host") == 0)
      host = argv[i + 1];
    else if (strcmp(argv[i], "--count") == 0)
      count = atoi(argv[i + 1]);
  }
  expected = count * 3;
  uv_loop_init(&loop);
  if ((rc = make_client(&loop, "demo-gateway", &gateway)) < 0 ||
      (rc = make_client(&loop, "demo-dashboard", &dashboard)) < 0) {
    fprintf(stderr, "demo: %s\n", uvmqtt_strerror(rc));
    return 1;
  }
  uvmqtt_client_on_connect(gateway, on_gateway_connect, NULL);
  uvmqtt_client_on_connect(dashboard, on_dashboard_connect, NULL);
  uvmqtt_client_on_message(dashboard, on_other, NULL);
  printf("demo: broker %s:%d\n", host, port);
  if ((rc = uvmqtt_client_connect(gateway, host, port)) < 0 ||
      (rc = uvmqtt_client_connect(dashboard, host, port)) < 0) {
    fprintf(stderr, "demo: connect: %s\n", uvmqtt_strerror(rc));
    return 1;
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&loop);
  printf("demo: %s\n", rc == 0 && failed == 0 && closed == 2
                           ? "done, every handle closed"
                           : "FAILED");
  return rc == 0 && failed == 0 && closed == 2 && received == expected ? 0 : 1;
}
