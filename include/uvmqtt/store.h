/** @file
 * Persistent session store: the interface a storage backend implements, the
 * embedded default (an append-only log with checksummed records), and the
 * loop-side store object that many clients share.
 *
 * Model. A store holds records keyed by (client id, 64-bit record id). The
 * library decides what the records mean (outgoing messages, QoS 2 receiver
 * state, the client's identity); a backend only stores bytes. One store
 * object (one file, one database handle) serves any number of clients on
 * one loop: thousands of clients do not need thousands of files.
 *
 * Threading. The store object lives on one loop; its functions MUST be
 * called on that loop's thread. Backend functions are called by the library
 * on libuv's thread pool, one call at a time (never two at once for one
 * backend), so a backend needs no locking of its own; they MAY block.
 * Writes made on the loop during one loop iteration are handed to the
 * backend together and committed with one commit call (group commit); the
 * loop never waits for disk.
 *
 * Durability. UVMQTT_DURABLE_PROCESS: a record counts as stored once the
 * backend handed it to the operating system (write(2)); it survives the
 * process being killed (SIGKILL) but not a power loss.
 * UVMQTT_DURABLE_POWER: it counts as stored once it was also flushed to
 * the device (fdatasync(2)); one flush covers a whole batch.
 */
#ifndef UVMQTT_STORE_H
#define UVMQTT_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "uvmqtt/alloc.h"
#include "uvmqtt/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The loop-side store object many clients share (opaque). */
typedef struct uvmqtt_store_s uvmqtt_store_t;
/** A storage backend: see struct uvmqtt_store_backend_s. */
typedef struct uvmqtt_store_backend_s uvmqtt_store_backend_t;

/** How durable a record is once the store says "stored". */
typedef enum {
  /** Survives kill -9 of the process: written to the OS before "stored". */
  UVMQTT_DURABLE_PROCESS = 1,
  /** Survives power loss: written and fdatasync'd before "stored". */
  UVMQTT_DURABLE_POWER = 2
} uvmqtt_durability_t;

/** A record's key. `client` is not NUL-terminated. */
typedef struct {
  const char *client; /**< the client id the record belongs to */
  size_t client_len;  /**< its length in bytes */
  uint64_t id;        /**< the record's id within that client */
} uvmqtt_store_key_t;

/** Called by iterate for each record; `key` and `value` are valid during the
 * call only. Return 0 to go on, anything else to stop (iterate returns it). */
typedef int (*uvmqtt_store_iter_cb)(void *arg, const uvmqtt_store_key_t *key,
                                    const void *value, size_t len);

/** What opening a store found. Filled by the default backend; zeroed for
 * custom backends. */
typedef struct {
  uint64_t records;         /**< intact records read from the file */
  uint64_t live;            /**< records live after replay */
  uint64_t dropped_records; /**< records dropped: bad checksum or torn */
  uint64_t dropped_bytes;   /**< bytes those (and any garbage) took */
  int torn_tail;            /**< 1 when the last record was incomplete */
  int rewritten;            /**< 1 when open rewrote the file (compaction) */
} uvmqtt_store_report_t;

/** A storage backend. Every function is called on a thread-pool thread, one
 * at a time (destroy may also run on the loop thread when a store cannot
 * be created). Every function returns 0 or a
 * negative error (a libuv/errno code or one of uvmqtt's). `self` is the
 * backend itself; a backend embeds this struct first in its own. */
struct uvmqtt_store_backend_s {
  /** Stores value under key, replacing any value it had. The backend
   * copies value before returning. A put need not be durable before the
   * next commit. */
  int (*put)(uvmqtt_store_backend_t *self, const uvmqtt_store_key_t *key,
             const void *value, size_t len);
  /** Removes key; a missing key is not an error. */
  int (*remove)(uvmqtt_store_backend_t *self, const uvmqtt_store_key_t *key);
  /** Removes every record of one client. */
  int (*remove_client)(uvmqtt_store_backend_t *self, const char *client,
                       size_t client_len);
  /** A copy of the value in *value (allocated with the library's
   * allocator; the caller frees it with uvmqtt_free() from uvmqtt/alloc.h),
   * or UVMQTT_ENOENT. Sees committed records. */
  int (*get)(uvmqtt_store_backend_t *self, const uvmqtt_store_key_t *key,
             void **value, size_t *len);
  /** Calls cb for each committed record (any order); stops early and
   * returns cb's value when it is not 0. */
  int (*iterate)(uvmqtt_store_backend_t *self, uvmqtt_store_iter_cb cb,
                 void *arg);
  /** Makes every put/remove since the last commit durable at the given
   * level (see uvmqtt_durability_t). When commit fails, those operations
   * MAY be lost but MUST NOT be half applied: a record is there whole or
   * not at all. */
  int (*commit)(uvmqtt_store_backend_t *self, uvmqtt_durability_t level);
  /** Releases everything; called once, last. */
  void (*destroy)(uvmqtt_store_backend_t *self);
};

/** Options of the default backend (the append-only log). Zero means the
 * default for every field. */
typedef struct {
  /** The log is rewritten with only its live records once it is larger
   * than this many bytes and more than twice its live bytes. Default 4 MiB. */
  uint64_t compact_min_bytes;
} uvmqtt_store_log_options_t;

/** Called once a store is open (status 0, `store` ready for clients) or
 * failed to open (status < 0, `store` NULL: nothing to close). `report`
 * tells what opening found (see uvmqtt_store_report_t; zeroed for custom
 * backends and for failures before the file was read); valid during the
 * call only. Runs on the loop thread. */
typedef void (*uvmqtt_store_open_cb)(uvmqtt_store_t *store, int status,
                                     const uvmqtt_store_report_t *report,
                                     void *arg);

/** Opens the default store: one append-only file at `path` (created when
 * missing) holding every client's records (format in docs/persistence.md).
 * Never blocks: the file is read, checked and replayed on libuv's thread
 * pool, then `cb` fires on the loop thread (never from inside this call).
 * Records with a bad checksum and a torn last record are dropped and
 * counted in the report; when anything was dropped, the file is rewritten
 * with what is intact before cb fires. A store exists only from its
 * callback on: create the clients that use it there (or, in a program
 * that has nothing else on its loop yet, run the loop until cb fired:
 * uv_run(loop, UV_RUN_DEFAULT) returns once it has).
 *
 * Parameters: loop; path (copied); opts (copied; may be NULL: defaults);
 * cb (required); arg (passed to cb).
 * Returns 0 (cb fires exactly once) or, with cb never called:
 * UVMQTT_EINVAL (NULL loop, path or cb, or an empty path), UVMQTT_ENOMEM.
 * Statuses cb can get: 0; UVMQTT_ENOMEM; UVMQTT_ESTORE_VERSION (the file
 * is a store of a format version this library does not know; it is left
 * untouched); UVMQTT_ESTORE_FORMAT (the file is not a uvmqtt store; left
 * untouched); UVMQTT_ESTORE_RECORD (the file changed under us while it was
 * read); or an errno/libuv code from open/read/write/fsync (e.g. UV_EACCES,
 * UV_ENOENT for a missing directory, UV_ENOSPC).
 * Threading: loop thread. */
UVMQTT_EXTERN int uvmqtt_store_open(uv_loop_t *loop, const char *path,
                                    const uvmqtt_store_log_options_t *opts,
                                    uvmqtt_store_open_cb cb, void *arg);

/** Creates a store over a custom backend and takes ownership of it (it is
 * destroyed by uvmqtt_store_close, when opening fails, or at once when
 * this call fails). Every record is read once through backend->iterate on
 * the thread pool, to know what each client will restore; cb then fires on
 * the loop thread as for uvmqtt_store_open (the report is zeroed).
 * Returns 0 (cb fires exactly once) or, with cb never called:
 * UVMQTT_EINVAL (NULL loop, backend or cb, or a backend function other
 * than get missing), UVMQTT_ENOMEM. Statuses cb can get: 0, UVMQTT_ENOMEM,
 * or what iterate returned. Threading: loop thread. */
UVMQTT_EXTERN int uvmqtt_store_new(uv_loop_t *loop,
                                   uvmqtt_store_backend_t *backend,
                                   uvmqtt_store_open_cb cb, void *arg);

/** Called once a store has closed (uvmqtt_store_close()); the store's
 * memory is gone after it returns. */
typedef void (*uvmqtt_store_close_cb)(uvmqtt_store_t *store, void *arg);

/** Writes what is pending, waits for the thread pool, destroys the backend,
 * then calls cb (may be NULL) on the loop, after which the store's memory
 * is gone. Every client using the store MUST be closed first.
 * Errors: UVMQTT_EINVAL (NULL store), UVMQTT_EBUSY (a client still uses
 * it), UVMQTT_ESTATE (already closing). On error cb is not called. */
UVMQTT_EXTERN int uvmqtt_store_close(uvmqtt_store_t *store,
                                     uvmqtt_store_close_cb cb, void *arg);

/** Removes every record of a client id that no client uses now (a gateway
 * retiring a device, or records a client will never come back for): they
 * go with the next batch (durable as UVMQTT_DURABLE_PROCESS); a client
 * attaching with that id later in this process finds nothing either.
 * Errors: UVMQTT_EINVAL, UVMQTT_EBUSY (a client of that id uses the store),
 * UVMQTT_ESTATE (closing), UVMQTT_ENOMEM. Loop thread only. */
UVMQTT_EXTERN int uvmqtt_store_forget(uvmqtt_store_t *store,
                                      const char *client_id);

/** Copies what opening found (zeroed for custom backends). */
UVMQTT_EXTERN void uvmqtt_store_get_report(const uvmqtt_store_t *store,
                                           uvmqtt_store_report_t *out);

#ifdef __cplusplus
}
#endif
#endif
