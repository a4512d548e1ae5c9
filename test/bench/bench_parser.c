/* Codec benchmark: decoding a long stream of 64-byte QoS 0 PUBLISH packets
 * through uvmqtt_parser_feed() in 64 KiB reads, beside memcpy of the same
 * bytes in the same run, and the cost of encoding one PUBLISH.
 *
 * Not a timed test: run by hand, e.g.
 *   build/test/bench/bench_parser [stream MiB] [repetitions]
 * The stream starts with a PINGRESP so packets straddle the 64 KiB read
 * boundaries as they do on a real socket; each straddling packet goes
 * through the NEED_BUFFER path with one reused buffer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "uvmqtt/codec.h"

#define READ_SIZE 65536
#define PACKET_SIZE 64

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Keeps results alive so the compiler cannot drop the work. */
static volatile uint64_t sink;

static const char topic[] = "sensors/device-0042/temp";

static uvmqtt_packet_t make_publish(uint8_t version, uint8_t *payload) {
  uvmqtt_packet_t p;
  memset(&p, 0, sizeof(p));
  p.type = UVMQTT_PUBLISH;
  p.u.publish.topic.data = topic;
  p.u.publish.topic.len = sizeof(topic) - 1;
  /* 1 + 1 (header) + 2 + topic [+ 1 v5 property length] + payload = 64 */
  size_t head = 4 + p.u.publish.topic.len + (version == UVMQTT_V5 ? 1 : 0);
  p.u.publish.payload.data = payload;
  p.u.publish.payload.len = PACKET_SIZE - head;
  return p;
}

static uint64_t parse_stream(const uint8_t *s, size_t len, uint8_t *lent,
                             uint64_t *split) {
  uvmqtt_parser_t p;
  uvmqtt_packet_t pkt;
  uint64_t n = 0, bytes = 0;
  uvmqtt_parser_init(&p, UVMQTT_V311, UVMQTT_ROLE_CLIENT, 1 << 20);
  for (size_t off = 0; off < len; off += READ_SIZE) {
    const uint8_t *d = s + off;
    size_t left = len - off < READ_SIZE ? len - off : READ_SIZE;
    while (left > 0) {
      size_t used;
      int rc = uvmqtt_parser_feed(&p, d, left, &used, &pkt);
      d += used;
      left -= used;
      if (rc == UVMQTT_PARSE_PACKET) {
        n++;
        bytes += pkt.u.publish.payload.len;
        if (uvmqtt_parser_take_buffer(&p) != NULL)
          (*split)++;
      } else if (rc == UVMQTT_PARSE_NEED_BUFFER) {
        uvmqtt_parser_set_buffer(&p, lent, PACKET_SIZE);
      } else if (rc < 0) {
        fprintf(stderr, "parse error %s at %llu\n", uvmqtt_err_name(rc),
                (unsigned long long)p.error_offset);
        exit(1);
      }
    }
  }
  sink += bytes;
  return n;
}

static void copy_stream(const uint8_t *s, size_t len, uint8_t *dst) {
  for (size_t off = 0; off < len; off += READ_SIZE) {
    size_t n = len - off < READ_SIZE ? len - off : READ_SIZE;
    memcpy(dst, s + off, n);
    sink += dst[n - 1];
  }
}

static double bench_encode(uint8_t version, int zero_copy, long iters) {
  uint8_t payload[PACKET_SIZE];
  uint8_t out[PACKET_SIZE];
  memset(payload, 'p', sizeof(payload));
  uvmqtt_packet_t p = make_publish(version, payload);
  double t0 = now();
  for (long i = 0; i < iters; i++) {
    int n;
    p.u.publish.payload.data = payload + (i & 1); /* defeat hoisting */
    if (zero_copy)
      n = uvmqtt_encode_publish_head(&p, version, out, sizeof(out), NULL);
    else
      n = uvmqtt_encode(&p, version, out, sizeof(out));
    sink += (uint64_t)n + out[n - 1];
  }
  return (now() - t0) * 1e9 / (double)iters;
}

int main(int argc, char **argv) {
  size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 64;
  int reps = argc > 2 ? atoi(argv[2]) : 10;
  if (mib == 0 || reps <= 0) {
    fprintf(stderr, "usage: %s [stream MiB] [repetitions]\n", argv[0]);
    return 2;
  }
  size_t count = mib * 1024 * 1024 / PACKET_SIZE;
  size_t len = 2 + count * PACKET_SIZE;
  uint8_t *stream = malloc(len);
  uint8_t *dst = malloc(READ_SIZE);
  uint8_t lent[PACKET_SIZE];
  uint8_t payload[PACKET_SIZE];
  if (stream == NULL || dst == NULL)
    return 1;
  memset(payload, 'p', sizeof(payload));
  stream[0] = 0xD0; /* PINGRESP: shifts packets across read boundaries */
  stream[1] = 0x00;
  uvmqtt_packet_t pub = make_publish(UVMQTT_V311, payload);
  for (size_t i = 0; i < count; i++) {
    int n = uvmqtt_encode(&pub, UVMQTT_V311, stream + 2 + i * PACKET_SIZE,
                          PACKET_SIZE);
    if (n != PACKET_SIZE) {
      fprintf(stderr, "encode gave %d\n", n);
      return 1;
    }
  }

  /* Warm up, then alternate the two measurements. */
  uint64_t split = 0;
  parse_stream(stream, len, lent, &split);
  copy_stream(stream, len, dst);
  double t_parse = 0, t_copy = 0;
  uint64_t packets = 0;
  split = 0;
  for (int r = 0; r < reps; r++) {
    double t0 = now();
    packets += parse_stream(stream, len, lent, &split);
    double t1 = now();
    copy_stream(stream, len, dst);
    double t2 = now();
    t_parse += t1 - t0;
    t_copy += t2 - t1;
  }
  double bytes = (double)len * reps;
  printf("parser: %zu MiB stream of %d-byte QoS 0 PUBLISH (v3.1.1), "
         "%d KiB reads, %d reps\n",
         mib, PACKET_SIZE, READ_SIZE / 1024, reps);
  printf("  uvmqtt_parser_feed  %8.0f MB/s  %6.1f Mpackets/s  %5.2f ns/packet"
         "  (%llu split packets)\n",
         bytes / t_parse / 1e6, (double)packets / t_parse / 1e6,
         t_parse * 1e9 / (double)packets,
         (unsigned long long)(split / (uint64_t)reps));
  printf("  memcpy              %8.0f MB/s\n", bytes / t_copy / 1e6);
  printf("  parser / memcpy     %8.2f\n", t_copy / t_parse);

  long iters = 20 * 1000 * 1000;
  printf("encode: one %d-byte QoS 0 PUBLISH, %ld iterations\n", PACKET_SIZE,
         iters);
  printf("  uvmqtt_encode v3.1.1               %6.2f ns\n",
         bench_encode(UVMQTT_V311, 0, iters));
  printf("  uvmqtt_encode v5                   %6.2f ns\n",
         bench_encode(UVMQTT_V5, 0, iters));
  printf("  uvmqtt_encode_publish_head v3.1.1  %6.2f ns\n",
         bench_encode(UVMQTT_V311, 1, iters));
  free(stream);
  free(dst);
  return sink == 42 ? 3 : 0;
}
