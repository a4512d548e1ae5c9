/* The store's internal interface: what the client and session persistence
 * code use (attach a client, put and remove its records with a completion
 * once they are durable), and shared helpers of src/store/.
 *
 * Contract. Every function here MUST be called on the store's loop thread.
 * A put/remove/clear returning 0 fires its callback (when not NULL) exactly
 * once, on the loop thread, after the batch it went into was committed at
 * the client's durability level (status 0) or failed (negative status);
 * only a detach before that drops the callback (it is then never called,
 * the operation itself still reaches the backend). Operations of one client
 * reach the backend in the order they were made. */
#ifndef UVMQTT_SRC_STORE_INT_H
#define UVMQTT_SRC_STORE_INT_H

#include <stddef.h>
#include <stdint.h>

#include "uvmqtt/store.h"

/* CRC-32C of data, continuing from crc (0 to start). */
uint32_t uvmqtt__crc32c(uint32_t crc, const void *data, size_t len);

/* Little-endian integers of the store's formats (the log, its records). */
static inline void uvmqtt__le_put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
static inline void uvmqtt__le_put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static inline void uvmqtt__le_put64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t uvmqtt__le_get16(const uint8_t *p) {
  return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t uvmqtt__le_get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}
static inline uint64_t uvmqtt__le_get64(const uint8_t *p) {
  return (uint64_t)uvmqtt__le_get32(p) | (uint64_t)uvmqtt__le_get32(p + 4)
                                             << 32;
}

/* Opens the default backend (the log) at path, reading and checking the
 * whole file: BLOCKING, called on the thread pool by uvmqtt_store_open
 * (and by the backend's own tests). Errors as uvmqtt_store_open's
 * statuses, and UVMQTT_EINVAL (NULL or empty path, NULL out). */
int uvmqtt__store_log_open(const char *path,
                           const uvmqtt_store_log_options_t *opts,
                           uvmqtt_store_backend_t **out,
                           uvmqtt_store_report_t *report);

typedef struct uvmqtt__store_client_s uvmqtt__store_client_t;

/* Record id 0 of every client holds its identity; the library's own
 * records use ids >= 1. */
#define UVMQTT__STORE_ID_IDENTITY 0

/* Who a client's records belong to. broker may be NULL or empty when it is
 * not known yet: it then matches any broker (and is recorded once known,
 * by a later attach that knows it). */
typedef struct {
  int protocol; /* 3, 4 or 5 */
  const char *broker;
} uvmqtt__store_identity_t;

/* A record handed back at attach; value is owned by the caller
 * (uvmqtt__free), as is the array. */
typedef struct {
  uint64_t id;
  void *value;
  size_t len;
} uvmqtt__store_rec_t;

typedef void (*uvmqtt__store_cb)(uvmqtt__store_client_t *c, void *arg,
                                 int status);

/* Attaches a client to the store and hands over what the store held for
 * it (ids >= 1, ascending), once per process: a later attach of the same
 * client id gets nothing (its state lives in memory by then).
 * Errors: UVMQTT_EINVAL, UVMQTT_ENOMEM, UVMQTT_ESTATE (store closing),
 * UVMQTT_EEXIST (that client id is attached already),
 * UVMQTT_ESTORE_IDENTITY (the records belong to another protocol version
 * or broker; nothing is handed over or changed). */
int uvmqtt__store_attach(uvmqtt_store_t *s, const char *client_id, size_t len,
                         const uvmqtt__store_identity_t *identity,
                         uvmqtt_durability_t level,
                         uvmqtt__store_client_t **out,
                         uvmqtt__store_rec_t **recs, size_t *nrecs);

/* Detaches: pending operations still reach the backend, their callbacks
 * are dropped. c is gone afterwards. */
void uvmqtt__store_detach(uvmqtt__store_client_t *c);

/* The owner's pointer, NULL until set. */
void uvmqtt__store_set_data(uvmqtt__store_client_t *c, void *data);
void *uvmqtt__store_data(const uvmqtt__store_client_t *c);

/* The broker, once known (connect time): UVMQTT_ESTORE_IDENTITY when the
 * client's records belong to another broker; recorded when they name none
 * yet. Errors also UVMQTT_EINVAL, UVMQTT_ENOMEM. */
int uvmqtt__store_set_broker(uvmqtt__store_client_t *c, const char *broker);

/* Stores value (the concatenation of n buffers, copied) under id >= 1.
 * Errors: UVMQTT_EINVAL, UVMQTT_ENOMEM. */
int uvmqtt__store_put(uvmqtt__store_client_t *c, uint64_t id,
                      const void *const *bufs, const size_t *lens, size_t n,
                      uvmqtt__store_cb cb, void *arg);
int uvmqtt__store_remove(uvmqtt__store_client_t *c, uint64_t id,
                         uvmqtt__store_cb cb, void *arg);
/* Removes every record of the client but its identity. */
int uvmqtt__store_clear(uvmqtt__store_client_t *c, uvmqtt__store_cb cb,
                        void *arg);

/* Batches committed and operations handed to the backend so far. */
void uvmqtt__store_stats(const uvmqtt_store_t *s, uint64_t *batches,
                         uint64_t *ops);

#endif
