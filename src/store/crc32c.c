/* CRC-32C (Castagnoli), the checksum of the store's records: the SSE4.2
 * instruction on x86-64 when the CPU has it, a table otherwise. */
#include "store/store_int.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define HAVE_HW_CRC 1
#endif

static uint32_t table[256];
static int use_hw;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++)
      c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
#ifdef HAVE_HW_CRC
  __builtin_cpu_init();
  use_hw = __builtin_cpu_supports("sse4.2");
#endif
}

#ifdef HAVE_HW_CRC
__attribute__((target("sse4.2"))) static uint32_t
hw(uint32_t c, const uint8_t *p, size_t n) {
  uint64_t c64 = c;
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    c64 = _mm_crc32_u64(c64, v);
    p += 8;
    n -= 8;
  }
  c = (uint32_t)c64;
  while (n--)
    c = _mm_crc32_u8(c, *p++);
  return c;
}
#endif

uint32_t uvmqtt__crc32c(uint32_t crc, const void *data, size_t len) {
  const uint8_t *p = data;
  uint32_t c = ~crc;
  pthread_once(&once, init);
#ifdef HAVE_HW_CRC
  if (use_hw)
    return ~hw(c, p, len);
#endif
  while (len--)
    c = table[(c ^ *p++) & 0xff] ^ (c >> 8);
  return ~c;
}
