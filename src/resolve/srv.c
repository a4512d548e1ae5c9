/* SRV names and the RFC 2782 ordering of SRV targets: pure functions with
 * no I/O (no uv.h, no c-ares) and a caller-supplied random source, so the
 * ordering is unit-tested with fixed seeds (test/srv/test_srv_order.c).
 * The lookups themselves are in resolve.c. */
#include "resolve/srv.h"

#include <stdio.h>
#include <string.h>

#include "uvmqtt/errors.h"

int uvmqtt__srv_name(char *out, size_t cap, const char *domain, int tls) {
  if (!out || !domain || !*domain)
    return UVMQTT_EINVAL;
  const char *prefix = tls ? "_secure-mqtt._tcp." : "_mqtt._tcp.";
  int n = snprintf(out, cap, "%s%s", prefix, domain);
  if (n < 0 || (size_t)n >= cap || (size_t)n > UVMQTT_DNS_NAME_MAX) {
    if (cap)
      out[0] = '\0';
    return UVMQTT_EINVAL;
  }
  return 0;
}

static uint64_t rnd64(uint32_t (*rnd)(void *), void *rarg) {
  uint64_t hi = rnd(rarg);
  return (hi << 32) | rnd(rarg);
}

void uvmqtt__srv_order(uvmqtt_srv_target_t *t, size_t n,
                       uint32_t (*rnd)(void *rarg), void *rarg) {
  /* Stable insertion sort by priority (n is small: one DNS message). */
  for (size_t i = 1; i < n; i++) {
    uvmqtt_srv_target_t tmp = t[i];
    size_t j = i;
    while (j > 0 && t[j - 1].priority > tmp.priority) {
      t[j] = t[j - 1];
      j--;
    }
    t[j] = tmp;
  }
  for (size_t start = 0, end; start < n; start = end) {
    end = start + 1;
    while (end < n && t[end].priority == t[start].priority)
      end++;
    /* RFC 2782: weight 0 entries go first in the list the running sums are
     * taken over, so they are picked only when the random number is 0.
     * Stable partition, so equal entries keep the server's order. */
    for (size_t i = start, z = start; i < end; i++) {
      if (t[i].weight != 0)
        continue;
      if (i != z) {
        uvmqtt_srv_target_t tmp = t[i];
        memmove(&t[z + 1], &t[z], (i - z) * sizeof(*t));
        t[z] = tmp;
      }
      z++;
    }
    /* Pick the next entry with probability weight / sum, repeatedly. */
    for (size_t k = start; k + 1 < end; k++) {
      uint64_t sum = 0;
      for (size_t j = k; j < end; j++)
        sum += t[j].weight;
      uint64_t x = sum ? rnd64(rnd, rarg) % (sum + 1) : 0;
      uint64_t run = 0;
      size_t pick = k;
      for (size_t j = k; j < end; j++) {
        run += t[j].weight;
        if (run >= x) {
          pick = j;
          break;
        }
      }
      if (pick != k) {
        uvmqtt_srv_target_t tmp = t[pick];
        memmove(&t[k + 1], &t[k], (pick - k) * sizeof(*t));
        t[k] = tmp;
      }
    }
  }
}
