/* The default store backend: one append-only file of CRC-32C checked
 * records for every client, an in-memory index of the live ones, and
 * compaction into a fresh file when most of the log is dead. Runs on the
 * thread pool (see include/uvmqtt/store.h); the on-disk format is written
 * down in docs/persistence.md and below.
 *
 * File:   header (32 bytes), then records back to back, then zeros (space
 *         written ahead, see reserve()).
 * Header: "UVMQLOG\0", u32 format version, u32 header size (32),
 *         u64 0 (reserved), u32 0 (reserved), u32 CRC-32C of bytes 0..27.
 * Record: u32 CRC-32C of bytes 4 .. 8+len, u32 len, then len bytes of
 *         body: u8 type (1 put, 2 remove, 3 remove client), u8 0, u16
 *         client id length, u64 record id, the client id, the value (put).
 * All integers little-endian. */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"
#include "uvmqtt/errors.h"

#define HDR_SIZE 32
#define REC_HDR 8
#define BODY_FIXED 12
#define FORMAT_VERSION 1
#define MAX_BODY 0x7fffffffu
#define DEFAULT_COMPACT_MIN (64u << 20)
#define MAX_CHUNK (1u << 20)
#define MIN_CHUNK 4096u

enum { REC_PUT = 1, REC_DEL = 2, REC_DEL_CLIENT = 3 };

static const char magic[8] = {'U', 'V', 'M', 'Q', 'L', 'O', 'G', 0};

typedef struct {
  uint64_t id;
  uint64_t off;    /* of the record header in the file */
  uint32_t client; /* index + 1 in clients; 0: empty slot */
  uint32_t len;    /* whole record, header included */
} slot_t;

typedef struct {
  char *name;
  uint32_t len;
  uint32_t live;
} lclient_t;

typedef struct {
  uvmqtt_store_backend_t base;
  char *path;
  int fd;
  uint64_t size;       /* bytes of the file that hold whole records */
  uint64_t alloc;      /* file size: zeros from size to alloc */
  uint64_t chunk;      /* zeros added at a time */
  uint64_t live_bytes; /* bytes of live records */
  uint64_t compact_min;
  int unsynced; /* written since the last fdatasync */
  slot_t *slots;
  size_t cap, used; /* open addressing, linear probing, power of two */
  lclient_t *clients;
  size_t nclients, clients_cap;
  uint32_t *cidx; /* name hash -> client index + 1 */
  size_t cidx_cap;
  uint8_t *wbuf; /* records put/removed since the last commit */
  size_t wlen, wcap;
} logstore_t;

static uint64_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 14695981039346656037ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++)
    h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
  return h;
}

static uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

/* ---- plain I/O ------------------------------------------------------------
 */

static int write_at(int fd, const void *buf, size_t len, uint64_t off) {
  const uint8_t *p = buf;
  while (len > 0) {
    ssize_t n = pwrite(fd, p, len, (off_t)off);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    p += n;
    len -= (size_t)n;
    off += (uint64_t)n;
  }
  return 0;
}

static int read_at(int fd, void *buf, size_t len, uint64_t off) {
  uint8_t *p = buf;
  while (len > 0) {
    ssize_t n = pread(fd, p, len, (off_t)off);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (n == 0)
      return UVMQTT_ESTORE_RECORD; /* the file shrank under us */
    p += n;
    len -= (size_t)n;
    off += (uint64_t)n;
  }
  return 0;
}

static int sync_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir =
      slash ? uvmqtt__strndup(path, slash == path ? 1 : (size_t)(slash - path))
            : uvmqtt__strdup(".");
  int fd, rc = 0;
  if (!dir)
    return UVMQTT_ENOMEM;
  fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  uvmqtt__free(dir);
  if (fd < 0)
    return -errno;
  if (fsync(fd) < 0)
    rc = -errno;
  close(fd);
  return rc;
}

/* ---- clients ------------------------------------------------------------- */

static uint32_t client_find(logstore_t *ls, const char *name, size_t len) {
  if (!ls->cidx_cap)
    return 0;
  size_t mask = ls->cidx_cap - 1, i = hash_bytes(name, len) & mask;
  for (; ls->cidx[i]; i = (i + 1) & mask) {
    lclient_t *c = &ls->clients[ls->cidx[i] - 1];
    if (c->len == len && memcmp(c->name, name, len) == 0)
      return ls->cidx[i];
  }
  return 0;
}

static int cidx_grow(logstore_t *ls) {
  size_t cap = ls->cidx_cap ? ls->cidx_cap * 2 : 16;
  uint32_t *t = uvmqtt__calloc(cap, sizeof *t);
  if (!t)
    return UVMQTT_ENOMEM;
  for (size_t k = 0; k < ls->nclients; k++) {
    size_t i = hash_bytes(ls->clients[k].name, ls->clients[k].len) & (cap - 1);
    while (t[i])
      i = (i + 1) & (cap - 1);
    t[i] = (uint32_t)k + 1;
  }
  uvmqtt__free(ls->cidx);
  ls->cidx = t;
  ls->cidx_cap = cap;
  return 0;
}

/* The client's index + 1, adding it when new; 0 when out of memory. */
static uint32_t client_intern(logstore_t *ls, const char *name, size_t len) {
  uint32_t k = client_find(ls, name, len);
  if (k)
    return k;
  if (ls->nclients == ls->clients_cap) {
    size_t cap = ls->clients_cap ? ls->clients_cap * 2 : 8;
    lclient_t *c = uvmqtt__realloc(ls->clients, cap * sizeof *c);
    if (!c)
      return 0;
    ls->clients = c;
    ls->clients_cap = cap;
  }
  if ((ls->nclients + 1) * 2 > ls->cidx_cap && cidx_grow(ls) < 0)
    return 0;
  lclient_t *c = &ls->clients[ls->nclients];
  c->name = uvmqtt__memdup(name, len);
  if (!c->name)
    return 0;
  c->len = (uint32_t)len;
  c->live = 0;
  ls->nclients++;
  size_t mask = ls->cidx_cap - 1, i = hash_bytes(name, len) & mask;
  while (ls->cidx[i])
    i = (i + 1) & mask;
  ls->cidx[i] = (uint32_t)ls->nclients;
  return (uint32_t)ls->nclients;
}

/* ---- the live index --------------------------------------------------------
 */

static size_t slot_hash(uint32_t client, uint64_t id) {
  return (size_t)mix(id * 31 + client);
}

static slot_t *slot_find(logstore_t *ls, uint32_t client, uint64_t id) {
  if (!ls->cap)
    return NULL;
  size_t mask = ls->cap - 1, i = slot_hash(client, id) & mask;
  for (; ls->slots[i].client; i = (i + 1) & mask)
    if (ls->slots[i].client == client && ls->slots[i].id == id)
      return &ls->slots[i];
  return NULL;
}

static int slots_resize(logstore_t *ls, size_t cap) {
  slot_t *t = uvmqtt__calloc(cap, sizeof *t);
  if (!t)
    return UVMQTT_ENOMEM;
  for (size_t k = 0; k < ls->cap; k++) {
    slot_t *s = &ls->slots[k];
    if (!s->client)
      continue;
    size_t i = slot_hash(s->client, s->id) & (cap - 1);
    while (t[i].client)
      i = (i + 1) & (cap - 1);
    t[i] = *s;
  }
  uvmqtt__free(ls->slots);
  ls->slots = t;
  ls->cap = cap;
  return 0;
}

/* Backward-shift deletion keeps probe chains whole without tombstones. */
static void slot_delete(logstore_t *ls, slot_t *s) {
  size_t mask = ls->cap - 1, i = (size_t)(s - ls->slots), j = i;
  ls->live_bytes -= s->len;
  ls->clients[s->client - 1].live--;
  ls->used--;
  for (;;) {
    j = (j + 1) & mask;
    if (!ls->slots[j].client)
      break;
    size_t home = slot_hash(ls->slots[j].client, ls->slots[j].id) & mask;
    /* Move j back to i unless its home lies cyclically in (i, j]. */
    if ((j > i && (home <= i || home > j)) ||
        (j < i && home <= i && home > j)) {
      ls->slots[i] = ls->slots[j];
      i = j;
    }
  }
  ls->slots[i].client = 0;
}

/* Applies one whole, checked record found at `off` to the index. */
static int apply(logstore_t *ls, const uint8_t *rec, uint64_t off) {
  uint32_t len = uvmqtt__le_get32(rec + 4);
  const uint8_t *b = rec + REC_HDR;
  uint16_t clen = uvmqtt__le_get16(b + 2);
  uint64_t id = uvmqtt__le_get64(b + 4);
  const char *name = (const char *)b + BODY_FIXED;
  uint32_t client;
  slot_t *s;

  switch (b[0]) {
  case REC_PUT:
    client = client_intern(ls, name, clen);
    if (!client)
      return UVMQTT_ENOMEM;
    s = slot_find(ls, client, id);
    if (s) {
      ls->live_bytes -= s->len;
    } else {
      if ((ls->used + 1) * 4 > ls->cap * 3 &&
          slots_resize(ls, ls->cap ? ls->cap * 2 : 64) < 0)
        return UVMQTT_ENOMEM;
      size_t mask = ls->cap - 1, i = slot_hash(client, id) & mask;
      while (ls->slots[i].client)
        i = (i + 1) & mask;
      s = &ls->slots[i];
      s->client = client;
      s->id = id;
      ls->used++;
      ls->clients[client - 1].live++;
    }
    s->off = off;
    s->len = REC_HDR + len;
    ls->live_bytes += s->len;
    return 0;
  case REC_DEL:
    client = client_find(ls, name, clen);
    if (client && (s = slot_find(ls, client, id)) != NULL)
      slot_delete(ls, s);
    return 0;
  case REC_DEL_CLIENT:
    client = client_find(ls, name, clen);
    if (!client || !ls->clients[client - 1].live)
      return 0;
    /* In place (no allocation, see reserve_index): a deletion shifts later
     * entries back into the hole, so look at the same slot again. Entries
     * only move into the hole, which is at k or ahead of it (cyclically),
     * and those wrapping around are of other clients. */
    for (size_t k = 0; k < ls->cap; k++)
      while (ls->slots[k].client == client)
        slot_delete(ls, &ls->slots[k]);
    return 0;
  default:
    return UVMQTT_ESTORE_RECORD;
  }
}

/* 1 when a whole, well-formed record with a good checksum starts at p. */
static int rec_valid(const uint8_t *p, uint64_t avail) {
  if (avail < REC_HDR + BODY_FIXED)
    return 0;
  uint32_t len = uvmqtt__le_get32(p + 4);
  if (len < BODY_FIXED || len > MAX_BODY || len > avail - REC_HDR)
    return 0;
  const uint8_t *b = p + REC_HDR;
  if (b[0] < REC_PUT || b[0] > REC_DEL_CLIENT || b[1] != 0 ||
      uvmqtt__le_get16(b + 2) > len - BODY_FIXED)
    return 0;
  return uvmqtt__crc32c(0, p + 4, (size_t)len + 4) == uvmqtt__le_get32(p);
}

/* ---- appending -------------------------------------------------------------
 */

static int append(logstore_t *ls, int type, const uvmqtt_store_key_t *key,
                  const void *value, size_t vlen) {
  if (!key || (key->client_len && !key->client) || key->client_len > 0xffff ||
      vlen > MAX_BODY - BODY_FIXED - key->client_len || (vlen && !value))
    return UVMQTT_EINVAL;
  size_t len = BODY_FIXED + key->client_len + vlen;
  if (ls->wlen + REC_HDR + len > ls->wcap) {
    size_t cap = ls->wcap ? ls->wcap : 4096;
    while (cap < ls->wlen + REC_HDR + len)
      cap *= 2;
    uint8_t *w = uvmqtt__realloc(ls->wbuf, cap);
    if (!w)
      return UVMQTT_ENOMEM;
    ls->wbuf = w;
    ls->wcap = cap;
  }
  uint8_t *p = ls->wbuf + ls->wlen, *b = p + REC_HDR;
  uvmqtt__le_put32(p + 4, (uint32_t)len);
  b[0] = (uint8_t)type;
  b[1] = 0;
  uvmqtt__le_put16(b + 2, (uint16_t)key->client_len);
  uvmqtt__le_put64(b + 4, key->id);
  if (key->client_len)
    memcpy(b + BODY_FIXED, key->client, key->client_len);
  if (vlen)
    memcpy(b + BODY_FIXED + key->client_len, value, vlen);
  uvmqtt__le_put32(p, uvmqtt__crc32c(0, p + 4, len + 4));
  ls->wlen += REC_HDR + len;
  return 0;
}

static int log_put(uvmqtt_store_backend_t *self, const uvmqtt_store_key_t *key,
                   const void *value, size_t len) {
  return append((logstore_t *)self, REC_PUT, key, value, len);
}

static int log_remove(uvmqtt_store_backend_t *self,
                      const uvmqtt_store_key_t *key) {
  return append((logstore_t *)self, REC_DEL, key, NULL, 0);
}

static int log_remove_client(uvmqtt_store_backend_t *self, const char *client,
                             size_t client_len) {
  uvmqtt_store_key_t k = {client, client_len, 0};
  return append((logstore_t *)self, REC_DEL_CLIENT, &k, NULL, 0);
}

/* ---- preallocation --------------------------------------------------------
 */

/* Appending to a file makes fdatasync journal the new size too (on ext4 it
 * costs ten times an overwrite), so the log runs ahead of its records with
 * written zeros and appends overwrite them. Zeros after the last record
 * are free space to recovery, not damage. */
static int extend(int fd, uint64_t from, uint64_t to) {
  static const uint8_t zeros[65536];
  while (from < to) {
    size_t n = to - from < sizeof zeros ? (size_t)(to - from) : sizeof zeros;
    int rc = write_at(fd, zeros, n, from);
    if (rc < 0)
      return rc;
    from += n;
  }
  return 0;
}

static int reserve(logstore_t *ls, uint64_t need) {
  if (ls->size + need <= ls->alloc)
    return 0;
  uint64_t to = ls->size + need + ls->chunk;
  int rc = extend(ls->fd, ls->alloc, to);
  if (rc < 0) {
    if (ftruncate(ls->fd, (off_t)ls->alloc) < 0) {
      /* the zeros written so far are free space anyway */
    }
    return rc;
  }
  ls->alloc = to;
  return 0;
}

/* ---- compaction ------------------------------------------------------------
 */

static int by_offset(const void *a, const void *b) {
  const slot_t *x = *(const slot_t *const *)a, *y = *(const slot_t *const *)b;
  return x->off < y->off ? -1 : x->off > y->off;
}

/* The live slots in file order; NULL with n = 0 when there are none. */
static int live_in_order(logstore_t *ls, slot_t ***out, size_t *n) {
  slot_t **v = NULL;
  size_t k = 0;
  if (ls->used) {
    v = uvmqtt__malloc(ls->used * sizeof *v);
    if (!v)
      return UVMQTT_ENOMEM;
    for (size_t i = 0; i < ls->cap; i++)
      if (ls->slots[i].client)
        v[k++] = &ls->slots[i];
    qsort(v, k, sizeof *v, by_offset);
  }
  *out = v;
  *n = k;
  return 0;
}

static void make_header(uint8_t *h) {
  memset(h, 0, HDR_SIZE);
  memcpy(h, magic, 8);
  uvmqtt__le_put32(h + 8, FORMAT_VERSION);
  uvmqtt__le_put32(h + 12, HDR_SIZE);
  uvmqtt__le_put32(h + 28, uvmqtt__crc32c(0, h, 28));
}

/* Writes the live records into path.tmp, flushes it, renames it over the
 * log and flushes the directory. The old file stays whole until the rename,
 * so a crash at any point leaves one complete log. */
static int compact(logstore_t *ls) {
  slot_t **v;
  size_t n, tlen = strlen(ls->path) + 5;
  uint64_t *offs = NULL;
  uint8_t *buf = NULL;
  size_t bcap = 0;
  char *tmp;
  int fd = -1, rc = live_in_order(ls, &v, &n);
  if (rc < 0)
    return rc;
  tmp = uvmqtt__malloc(tlen);
  offs = uvmqtt__malloc((n ? n : 1) * sizeof *offs);
  if (!tmp || !offs) {
    rc = UVMQTT_ENOMEM;
    goto out;
  }
  snprintf(tmp, tlen, "%s.tmp", ls->path);
  fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    rc = -errno;
    goto out;
  }
  uint8_t h[HDR_SIZE];
  make_header(h);
  uint64_t pos = HDR_SIZE;
  if ((rc = write_at(fd, h, HDR_SIZE, 0)) < 0)
    goto out;
  for (size_t i = 0; i < n; i++) {
    slot_t *s = v[i];
    if (s->len > bcap) {
      uint8_t *b = uvmqtt__realloc(buf, s->len);
      if (!b) {
        rc = UVMQTT_ENOMEM;
        goto out;
      }
      buf = b;
      bcap = s->len;
    }
    if ((rc = read_at(ls->fd, buf, s->len, s->off)) < 0)
      goto out;
    if (!rec_valid(buf, s->len)) {
      rc = UVMQTT_ESTORE_RECORD; /* changed on disk since we read it */
      goto out;
    }
    if ((rc = write_at(fd, buf, s->len, pos)) < 0)
      goto out;
    offs[i] = pos;
    pos += s->len;
  }
  if ((rc = extend(fd, pos, pos + ls->chunk)) < 0)
    goto out;
  if (fdatasync(fd) < 0 || rename(tmp, ls->path) < 0) {
    rc = -errno;
    goto out;
  }
  (void)sync_dir(ls->path); /* the rename is done; a failed flush of the
                               directory only weakens power-loss safety */
  close(ls->fd);
  ls->fd = fd;
  fd = -1;
  for (size_t i = 0; i < n; i++)
    v[i]->off = offs[i];
  ls->size = pos;
  ls->alloc = pos + ls->chunk;
  ls->unsynced = 0;
out:
  if (fd >= 0) {
    close(fd);
    unlink(tmp);
  }
  uvmqtt__free(tmp);
  uvmqtt__free(offs);
  uvmqtt__free(buf);
  uvmqtt__free(v);
  return rc;
}

static int needs_compaction(const logstore_t *ls) {
  return ls->size > ls->compact_min && ls->size - HDR_SIZE > 2 * ls->live_bytes;
}

/* ---- commit, get, iterate
 * ---------------------------------------------------- */

/* Makes room in the index for every record of the batch before it is
 * written, so that applying them after the write cannot fail: a batch on
 * disk is always in the index too (or the commit failed before writing). */
static int reserve_index(logstore_t *ls) {
  size_t puts = 0;
  for (size_t pos = 0; pos < ls->wlen;) {
    const uint8_t *b = ls->wbuf + pos + REC_HDR;
    if (b[0] == REC_PUT) {
      puts++;
      if (!client_intern(ls, (const char *)b + BODY_FIXED,
                         uvmqtt__le_get16(b + 2)))
        return UVMQTT_ENOMEM;
    }
    pos += REC_HDR + uvmqtt__le_get32(ls->wbuf + pos + 4);
  }
  size_t cap = ls->cap ? ls->cap : 64;
  while ((ls->used + puts) * 4 > cap * 3)
    cap *= 2;
  return cap != ls->cap ? slots_resize(ls, cap) : 0;
}

static int log_commit(uvmqtt_store_backend_t *self, uvmqtt_durability_t level) {
  logstore_t *ls = (logstore_t *)self;
  int rc;
  if (ls->wlen) {
    rc = reserve_index(ls);
    if (rc == 0)
      rc = reserve(ls, ls->wlen);
    if (rc == 0)
      rc = write_at(ls->fd, ls->wbuf, ls->wlen, ls->size);
    if (rc < 0) {
      /* Zero what part of the batch made it, so no half record stays;
       * recovery would drop a torn tail anyway. */
      (void)extend(ls->fd, ls->size,
                   ls->size + ls->wlen < ls->alloc ? ls->size + ls->wlen
                                                   : ls->alloc);
      ls->wlen = 0;
      return rc;
    }
    for (size_t pos = 0; pos < ls->wlen;) {
      uint32_t len = uvmqtt__le_get32(ls->wbuf + pos + 4);
      (void)apply(ls, ls->wbuf + pos, ls->size + pos); /* room reserved */
      pos += REC_HDR + len;
    }
    ls->size += ls->wlen;
    ls->wlen = 0;
    ls->unsynced = 1;
    if (ls->wcap > (1u << 20)) { /* give back a burst's buffer */
      uvmqtt__free(ls->wbuf);
      ls->wbuf = NULL;
      ls->wcap = 0;
    }
  }
  if (level == UVMQTT_DURABLE_POWER && ls->unsynced) {
    if (fdatasync(ls->fd) < 0)
      return -errno;
    ls->unsynced = 0;
  }
  if (needs_compaction(ls))
    (void)compact(ls); /* on failure the old log stays and grows; retried */
  return 0;
}

static int log_get(uvmqtt_store_backend_t *self, const uvmqtt_store_key_t *key,
                   void **value, size_t *len) {
  logstore_t *ls = (logstore_t *)self;
  if (!key || !value || !len)
    return UVMQTT_EINVAL;
  uint32_t client = client_find(ls, key->client, key->client_len);
  slot_t *s = client ? slot_find(ls, client, key->id) : NULL;
  if (!s)
    return UVMQTT_ENOENT;
  uint8_t *rec = uvmqtt__malloc(s->len);
  if (!rec)
    return UVMQTT_ENOMEM;
  int rc = read_at(ls->fd, rec, s->len, s->off);
  if (rc == 0 && !rec_valid(rec, s->len))
    rc = UVMQTT_ESTORE_RECORD;
  if (rc < 0) {
    uvmqtt__free(rec);
    return rc;
  }
  size_t skip = REC_HDR + BODY_FIXED + key->client_len;
  *len = s->len - skip;
  memmove(rec, rec + skip, *len);
  *value = rec;
  return 0;
}

static int log_iterate(uvmqtt_store_backend_t *self, uvmqtt_store_iter_cb cb,
                       void *arg) {
  logstore_t *ls = (logstore_t *)self;
  slot_t **v;
  size_t n;
  uint8_t *buf = NULL;
  size_t bcap = 0;
  int rc = live_in_order(ls, &v, &n);
  if (rc < 0)
    return rc;
  for (size_t i = 0; i < n && rc == 0; i++) {
    slot_t *s = v[i];
    if (s->len > bcap) {
      uint8_t *b = uvmqtt__realloc(buf, s->len);
      if (!b) {
        rc = UVMQTT_ENOMEM;
        break;
      }
      buf = b;
      bcap = s->len;
    }
    if ((rc = read_at(ls->fd, buf, s->len, s->off)) < 0)
      break;
    if (!rec_valid(buf, s->len)) {
      rc = UVMQTT_ESTORE_RECORD;
      break;
    }
    lclient_t *c = &ls->clients[s->client - 1];
    uvmqtt_store_key_t key = {c->name, c->len, s->id};
    size_t skip = REC_HDR + BODY_FIXED + c->len;
    rc = cb(arg, &key, buf + skip, s->len - skip);
  }
  uvmqtt__free(buf);
  uvmqtt__free(v);
  return rc;
}

static void log_destroy(uvmqtt_store_backend_t *self) {
  logstore_t *ls = (logstore_t *)self;
  if (!ls)
    return;
  if (ls->fd >= 0)
    close(ls->fd);
  for (size_t i = 0; i < ls->nclients; i++)
    uvmqtt__free(ls->clients[i].name);
  uvmqtt__free(ls->clients);
  uvmqtt__free(ls->cidx);
  uvmqtt__free(ls->slots);
  uvmqtt__free(ls->wbuf);
  uvmqtt__free(ls->path);
  uvmqtt__free(ls);
}

/* ---- open and recovery
 * ------------------------------------------------------- */

/* Replays the records of a file read whole into `data`. */
static int replay(logstore_t *ls, const uint8_t *data, uint64_t size,
                  uvmqtt_store_report_t *r, uint64_t *end_out) {
  uint64_t pos = HDR_SIZE;
  while (pos < size) {
    if (rec_valid(data + pos, size - pos)) {
      int rc = apply(ls, data + pos, pos);
      if (rc < 0)
        return rc;
      r->records++;
      pos += REC_HDR + uvmqtt__le_get32(data + pos + 4);
      continue;
    }
    /* Damage: skip to the next whole record, or to the end. Every step
     * moves forward, so this ends. */
    uint64_t next = pos + 1;
    while (next < size && !rec_valid(data + next, size - next))
      next++;
    if (next >= size) {
      /* Nothing whole follows: trailing zeros are preallocated space; what
       * is not zero before them is a torn last record. */
      uint64_t end = size;
      while (end > pos && data[end - 1] == 0)
        end--;
      if (end > pos) {
        r->dropped_records++;
        r->dropped_bytes += end - pos;
        r->torn_tail = 1;
      }
      break;
    }
    r->dropped_records++;
    r->dropped_bytes += next - pos;
    pos = next;
  }
  *end_out = pos;
  return 0;
}

static int read_whole(int fd, uint64_t size, uint8_t **out) {
  uint8_t *d = uvmqtt__malloc(size ? (size_t)size : 1);
  if (!d)
    return UVMQTT_ENOMEM;
  int rc = read_at(fd, d, (size_t)size, 0);
  if (rc < 0) {
    uvmqtt__free(d);
    return rc;
  }
  *out = d;
  return 0;
}

static int check_header(const uint8_t *d, uint64_t size) {
  if (size < HDR_SIZE) {
    /* A header torn while the file was being created: a fresh store. */
    uint8_t h[HDR_SIZE];
    make_header(h);
    return memcmp(d, h, (size_t)size) == 0 ? 1 : UVMQTT_ESTORE_FORMAT;
  }
  if (memcmp(d, magic, 8) != 0)
    return UVMQTT_ESTORE_FORMAT;
  if (uvmqtt__crc32c(0, d, 28) != uvmqtt__le_get32(d + 28))
    return UVMQTT_ESTORE_FORMAT;
  if (uvmqtt__le_get32(d + 8) != FORMAT_VERSION)
    return UVMQTT_ESTORE_VERSION;
  if (uvmqtt__le_get32(d + 12) != HDR_SIZE)
    return UVMQTT_ESTORE_FORMAT;
  return 0;
}

int uvmqtt__store_log_open(const char *path,
                           const uvmqtt_store_log_options_t *opts,
                           uvmqtt_store_backend_t **out,
                           uvmqtt_store_report_t *report) {
  uvmqtt_store_report_t r;
  logstore_t *ls;
  struct stat st;
  uint8_t *data = NULL;
  int rc;

  memset(&r, 0, sizeof r);
  if (report)
    *report = r;
  if (!path || !*path || !out)
    return UVMQTT_EINVAL;
  *out = NULL;
  ls = uvmqtt__calloc(1, sizeof *ls);
  if (!ls)
    return UVMQTT_ENOMEM;
  ls->base.put = log_put;
  ls->base.remove = log_remove;
  ls->base.remove_client = log_remove_client;
  ls->base.get = log_get;
  ls->base.iterate = log_iterate;
  ls->base.commit = log_commit;
  ls->base.destroy = log_destroy;
  ls->fd = -1;
  ls->compact_min = opts && opts->compact_min_bytes ? opts->compact_min_bytes
                                                    : DEFAULT_COMPACT_MIN;
  ls->chunk = ls->compact_min / 4;
  ls->chunk = ls->chunk > MAX_CHUNK   ? MAX_CHUNK
              : ls->chunk < MIN_CHUNK ? MIN_CHUNK
                                      : ls->chunk;
  ls->path = uvmqtt__strdup(path);
  if (!ls->path) {
    rc = UVMQTT_ENOMEM;
    goto fail;
  }
  ls->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (ls->fd < 0 || fstat(ls->fd, &st) < 0) {
    rc = -errno;
    goto fail;
  }
  if (st.st_size > 0) {
    if ((rc = read_whole(ls->fd, (uint64_t)st.st_size, &data)) < 0)
      goto fail;
    rc = check_header(data, (uint64_t)st.st_size);
    if (rc < 0)
      goto fail;
    if (rc == 0) {
      if ((rc = replay(ls, data, (uint64_t)st.st_size, &r, &ls->size)) < 0)
        goto fail;
      ls->alloc = (uint64_t)st.st_size; /* zeros after ls->size */
    }
    uvmqtt__free(data);
    data = NULL;
  }
  if (ls->size == 0) { /* new (or torn while new): write the header */
    uint8_t h[HDR_SIZE];
    make_header(h);
    if ((rc = write_at(ls->fd, h, HDR_SIZE, 0)) < 0 ||
        (rc = ftruncate(ls->fd, HDR_SIZE) < 0 ? -errno : 0) < 0 ||
        (rc = extend(ls->fd, HDR_SIZE, HDR_SIZE + ls->chunk)) < 0)
      goto fail;
    ls->alloc = HDR_SIZE + ls->chunk;
    if (fdatasync(ls->fd) < 0) {
      rc = -errno;
      goto fail;
    }
    (void)sync_dir(path);
    ls->size = HDR_SIZE;
  } else if (r.dropped_records || needs_compaction(ls)) {
    /* Rewrite with what is intact so the damage is reported once and new
     * records never follow garbage. */
    if ((rc = compact(ls)) < 0)
      goto fail;
    r.rewritten = 1;
  }
  r.live = ls->used;
  if (report)
    *report = r;
  *out = &ls->base;
  return 0;
fail:
  uvmqtt__free(data);
  log_destroy(&ls->base);
  return rc;
}
