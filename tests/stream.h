/* The test stream of tests/README.md: stream byte k of a seed is
 * unit[k mod FASTSOCK_TEST_UNIT]. Shared by the loopback server and the C tests. */
#ifndef FASTSOCK_TEST_STREAM_H
#define FASTSOCK_TEST_STREAM_H

#include <stdint.h>
#include <string.h>

#define FASTSOCK_TEST_UNIT 65521u /* prime: a chunk at the wrong offset shows */

static inline void fastsock_test_unit(uint64_t seed, unsigned char *unit)
{
    uint32_t x = (uint32_t)(seed * 2654435761u + 0x7F4A7C15u);
    if (x == 0)
        x = 1;
    for (uint32_t i = 0; i < FASTSOCK_TEST_UNIT; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        unit[i] = (unsigned char)(x & 0xFF);
    }
}

/* Stream bytes [off, off + n) of the unit into out. */
static inline void fastsock_test_fill(const unsigned char *unit, uint64_t off,
                                      unsigned char *out, size_t n)
{
    size_t phase = (size_t)(off % FASTSOCK_TEST_UNIT);
    while (n > 0) {
        size_t chunk = FASTSOCK_TEST_UNIT - phase;
        if (chunk > n)
            chunk = n;
        memcpy(out, unit + phase, chunk);
        out += chunk;
        n -= chunk;
        phase = 0;
    }
}

#endif
