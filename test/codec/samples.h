/* A set of hand-made packets covering every packet type, flag and v5
 * property, for one protocol version. Shared by the codec tests and the
 * fuzz corpus generator (no cmocka here). */
#ifndef UVMQTT_TEST_CODEC_SAMPLES_H
#define UVMQTT_TEST_CODEC_SAMPLES_H

#include "uvmqtt/codec.h"

typedef struct {
  const char *name;
  uvmqtt_role_t role; /* the side that receives (decodes) it */
  uvmqtt_packet_t pkt;
} sample_t;

/* Fills out[0 ..) with the samples valid for `version` and returns their
 * number (at most SAMPLES_MAX). The packets view static data. */
#define SAMPLES_MAX 64
size_t samples_get(uint8_t version, sample_t *out);

#endif
