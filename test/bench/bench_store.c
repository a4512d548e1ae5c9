/* Store backends side by side: uvmqtt's append-only log beside LMDB and
 * SQLite behind the same backend interface (include/uvmqtt/store.h), on the
 * workload a publisher gives them: each message is put when published and
 * removed when acknowledged, a batch later; 100 client ids share one store.
 * Batches of 1 (no group commit) and 64 (group commit), at both durability
 * levels. Prints messages per second. Bounded to about 2 s per row.
 *
 * Run by hand: build/test/bench/bench_store [directory] [seconds per row]
 * [engine: 0 log, 1 LMDB, 2 SQLite]
 * (the directory must be on the disk to measure, not a tmpfs). */
#include <lmdb.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "uvmqtt/errors.h"
#include "store/store_int.h"
#include "uvmqtt/store.h"

/* ---- LMDB behind the backend interface ------------------------------------
 */

typedef struct {
  uvmqtt_store_backend_t base;
  MDB_env *env;
  MDB_dbi dbi;
  MDB_txn *txn;
} lmdb_be_t;

static int lm_key(const uvmqtt_store_key_t *k, unsigned char *buf, MDB_val *v) {
  if (k->client_len > 200)
    return UVMQTT_EINVAL;
  memcpy(buf, k->client, k->client_len);
  for (int i = 0; i < 8; i++)
    buf[k->client_len + (size_t)i] = (unsigned char)(k->id >> (56 - 8 * i));
  v->mv_data = buf;
  v->mv_size = k->client_len + 8;
  return 0;
}

static int lm_txn(lmdb_be_t *b) {
  if (!b->txn && mdb_txn_begin(b->env, NULL, 0, &b->txn) != 0)
    return UVMQTT_ENOMEM;
  return 0;
}

static int lm_put(uvmqtt_store_backend_t *self, const uvmqtt_store_key_t *key,
                  const void *value, size_t len) {
  lmdb_be_t *b = (lmdb_be_t *)self;
  unsigned char kb[256];
  MDB_val k, v = {len, (void *)value};
  if (lm_key(key, kb, &k) < 0 || lm_txn(b) < 0)
    return UVMQTT_EINVAL;
  return mdb_put(b->txn, b->dbi, &k, &v, 0) == 0 ? 0 : UVMQTT_ENOMEM;
}

static int lm_remove(uvmqtt_store_backend_t *self,
                     const uvmqtt_store_key_t *key) {
  lmdb_be_t *b = (lmdb_be_t *)self;
  unsigned char kb[256];
  MDB_val k;
  if (lm_key(key, kb, &k) < 0 || lm_txn(b) < 0)
    return UVMQTT_EINVAL;
  int rc = mdb_del(b->txn, b->dbi, &k, NULL);
  return rc == 0 || rc == MDB_NOTFOUND ? 0 : UVMQTT_ENOMEM;
}

static int lm_remove_client(uvmqtt_store_backend_t *self, const char *c,
                            size_t n) {
  (void)self;
  (void)c;
  (void)n;
  return UVMQTT_ENOTSUP; /* not needed by the benchmark */
}

static int lm_iterate(uvmqtt_store_backend_t *self, uvmqtt_store_iter_cb cb,
                      void *arg) {
  (void)self;
  (void)cb;
  (void)arg;
  return 0;
}

static int lm_commit(uvmqtt_store_backend_t *self, uvmqtt_durability_t level) {
  lmdb_be_t *b = (lmdb_be_t *)self;
  if (b->txn) {
    int rc = mdb_txn_commit(b->txn);
    b->txn = NULL;
    if (rc != 0)
      return UVMQTT_ENOMEM;
  }
  if (level == UVMQTT_DURABLE_POWER && mdb_env_sync(b->env, 1) != 0)
    return UVMQTT_ENOMEM;
  return 0;
}

static void lm_destroy(uvmqtt_store_backend_t *self) {
  lmdb_be_t *b = (lmdb_be_t *)self;
  if (b->txn)
    mdb_txn_abort(b->txn);
  mdb_env_close(b->env);
  free(b);
}

static uvmqtt_store_backend_t *lmdb_open(const char *dir) {
  lmdb_be_t *b = calloc(1, sizeof *b);
  MDB_txn *t;
  b->base =
      (uvmqtt_store_backend_t){lm_put,     lm_remove, lm_remove_client, NULL,
                               lm_iterate, lm_commit, lm_destroy};
  if (mdb_env_create(&b->env) || mdb_env_set_mapsize(b->env, 1ull << 30) ||
      mdb_env_open(b->env, dir, MDB_NOSYNC | MDB_NOSUBDIR, 0600) ||
      mdb_txn_begin(b->env, NULL, 0, &t) || mdb_dbi_open(t, NULL, 0, &b->dbi) ||
      mdb_txn_commit(t)) {
    fprintf(stderr, "lmdb open failed\n");
    exit(1);
  }
  return &b->base;
}

/* ---- SQLite behind the backend interface ----------------------------------
 */

typedef struct {
  uvmqtt_store_backend_t base;
  sqlite3 *db;
  sqlite3_stmt *put, *del;
  int in_txn, level;
} sql_be_t;

static int sq_begin(sql_be_t *b) {
  if (!b->in_txn) {
    if (sqlite3_exec(b->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
      return UVMQTT_ENOMEM;
    b->in_txn = 1;
  }
  return 0;
}

static int sq_put(uvmqtt_store_backend_t *self, const uvmqtt_store_key_t *key,
                  const void *value, size_t len) {
  sql_be_t *b = (sql_be_t *)self;
  if (sq_begin(b) < 0)
    return UVMQTT_ENOMEM;
  sqlite3_bind_blob(b->put, 1, key->client, (int)key->client_len,
                    SQLITE_STATIC);
  sqlite3_bind_int64(b->put, 2, (sqlite3_int64)key->id);
  sqlite3_bind_blob(b->put, 3, value, (int)len, SQLITE_STATIC);
  int rc = sqlite3_step(b->put);
  sqlite3_reset(b->put);
  return rc == SQLITE_DONE ? 0 : UVMQTT_ENOMEM;
}

static int sq_remove(uvmqtt_store_backend_t *self,
                     const uvmqtt_store_key_t *key) {
  sql_be_t *b = (sql_be_t *)self;
  if (sq_begin(b) < 0)
    return UVMQTT_ENOMEM;
  sqlite3_bind_blob(b->del, 1, key->client, (int)key->client_len,
                    SQLITE_STATIC);
  sqlite3_bind_int64(b->del, 2, (sqlite3_int64)key->id);
  int rc = sqlite3_step(b->del);
  sqlite3_reset(b->del);
  return rc == SQLITE_DONE ? 0 : UVMQTT_ENOMEM;
}

static int sq_commit(uvmqtt_store_backend_t *self, uvmqtt_durability_t level) {
  sql_be_t *b = (sql_be_t *)self;
  if ((int)level != b->level) {
    if (b->in_txn) {
      sqlite3_exec(b->db, "COMMIT", NULL, NULL, NULL);
      b->in_txn = 0;
    }
    /* WAL: OFF hands the log to the OS at commit, FULL also syncs it. */
    sqlite3_exec(b->db,
                 level == UVMQTT_DURABLE_POWER ? "PRAGMA synchronous=FULL"
                                               : "PRAGMA synchronous=OFF",
                 NULL, NULL, NULL);
    b->level = (int)level;
    return 0;
  }
  if (b->in_txn) {
    b->in_txn = 0;
    if (sqlite3_exec(b->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
      return UVMQTT_ENOMEM;
  }
  return 0;
}

static void sq_destroy(uvmqtt_store_backend_t *self) {
  sql_be_t *b = (sql_be_t *)self;
  if (b->in_txn)
    sqlite3_exec(b->db, "COMMIT", NULL, NULL, NULL);
  sqlite3_finalize(b->put);
  sqlite3_finalize(b->del);
  sqlite3_close(b->db);
  free(b);
}

static uvmqtt_store_backend_t *sqlite_open(const char *path) {
  sql_be_t *b = calloc(1, sizeof *b);
  b->base =
      (uvmqtt_store_backend_t){sq_put,     sq_remove, lm_remove_client, NULL,
                               lm_iterate, sq_commit, sq_destroy};
  if (sqlite3_open(path, &b->db) != SQLITE_OK ||
      sqlite3_exec(b->db,
                   "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;"
                   "CREATE TABLE IF NOT EXISTS r(c BLOB, id INTEGER, v BLOB,"
                   " PRIMARY KEY(c, id)) WITHOUT ROWID",
                   NULL, NULL, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(b->db, "INSERT OR REPLACE INTO r VALUES(?,?,?)", -1,
                         &b->put, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(b->db, "DELETE FROM r WHERE c=? AND id=?", -1, &b->del,
                         NULL) != SQLITE_OK) {
    fprintf(stderr, "sqlite open failed: %s\n", sqlite3_errmsg(b->db));
    exit(1);
  }
  b->level = UVMQTT_DURABLE_PROCESS;
  return &b->base;
}

/* ---- the workload
 * ------------------------------------------------------------- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define CLIENTS 100
#define VALUE 160 /* a stored QoS 1 PUBLISH: header, topic, 100 B payload */

/* Messages per second: batches of `batch` puts, each removing the batch
 * before (acknowledged), then one commit. */
static double run(uvmqtt_store_backend_t *b, int batch,
                  uvmqtt_durability_t level, double seconds) {
  char names[CLIENTS][16];
  unsigned char value[VALUE];
  for (int i = 0; i < CLIENTS; i++)
    snprintf(names[i], sizeof names[i], "client-%04d", i);
  memset(value, 'p', sizeof value);
  uint64_t id = 0, done = 0;
  (void)b->commit(b, level); /* level switch for SQLite */
  double t0 = now_s(), t = t0;
  while (t - t0 < seconds) {
    for (int i = 0; i < batch; i++) {
      id++;
      uvmqtt_store_key_t k = {names[id % CLIENTS], 11, id};
      if (b->put(b, &k, value, sizeof value) < 0)
        exit(2);
      if (id > (uint64_t)batch) {
        uvmqtt_store_key_t old = {names[(id - (uint64_t)batch) % CLIENTS], 11,
                                  id - (uint64_t)batch};
        if (b->remove(b, &old) < 0)
          exit(2);
      }
    }
    if (b->commit(b, level) < 0)
      exit(3);
    done += (uint64_t)batch;
    if ((done & 63) == 0 || batch >= 64)
      t = now_s();
  }
  return (double)done / (now_s() - t0);
}

int main(int argc, char **argv) {
  const char *dir = argc > 1 ? argv[1] : ".";
  double seconds = argc > 2 ? atof(argv[2]) : 2.0;
  int only = argc > 3 ? atoi(argv[3]) : -1; /* one engine: 0, 1 or 2 */
  const char *engines[] = {"uvmqtt log", "LMDB", "SQLite (WAL)"};
  int batches[] = {1, 64};
  char path[512];

  printf("# store backends: messages/s (put + remove of the previous batch, "
         "%d B values, %d clients, %.1f s per row)\n",
         VALUE, CLIENTS, seconds);
  printf("%-14s %-7s %14s %14s\n", "engine", "batch", "process-crash",
         "power-loss");
  for (int e = 0; e < 3; e++) {
    if (only >= 0 && e != only)
      continue;
    for (int bi = 0; bi < 2; bi++) {
      double rate[2];
      for (int lv = 0; lv < 2; lv++) {
        uvmqtt_store_backend_t *b = NULL;
        snprintf(path, sizeof path, "%s/bench-store-%d", dir, e);
        unlink(path);
        char side[600];
        snprintf(side, sizeof side, "%s-lock", path);
        unlink(side);
        snprintf(side, sizeof side, "%s-wal", path);
        unlink(side);
        snprintf(side, sizeof side, "%s-shm", path);
        unlink(side);
        if (e == 0) {
          if (uvmqtt__store_log_open(path, NULL, &b, NULL) < 0)
            return 1;
        } else if (e == 1) {
          b = lmdb_open(path);
        } else {
          b = sqlite_open(path);
        }
        rate[lv] =
            run(b, batches[bi],
                lv ? UVMQTT_DURABLE_POWER : UVMQTT_DURABLE_PROCESS, seconds);
        b->destroy(b);
        unlink(path);
        snprintf(side, sizeof side, "%s-lock", path);
        unlink(side);
        snprintf(side, sizeof side, "%s-wal", path);
        unlink(side);
        snprintf(side, sizeof side, "%s-shm", path);
        unlink(side);
      }
      printf("%-14s %-7d %14.0f %14.0f\n", engines[e], batches[bi], rate[0],
             rate[1]);
      fflush(stdout);
    }
  }
  return 0;
}
