/*
 * Searching inside received data without copying it: the one primitive that
 * the bindings' find and split are built on. They walk a buffer with it and
 * hand out offsets or views, never a copy of a field.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include "fastsock.h"

#include <string.h>

fastsock_result fastsock_find(const void *hay, size_t len, size_t from, const void *needle,
                              size_t nlen)
{
    if (from > len || nlen > len - from)
        return -1;
    if (nlen == 0)
        return (fastsock_result)from;
    const char *base = hay;
    const char *hit = memmem(base + from, len - from, needle, nlen);
    return hit == NULL ? -1 : (fastsock_result)(hit - base);
}
