/*
 * What the core's files share and no binding sees: the clock, the SIGPIPE
 * guard and the fresh-memory advice, used by the blocking calls
 * (fastsock.c) and the progressive transfers (xfer.c) alike.
 */
#ifndef FASTSOCK_INTERNAL_H
#define FASTSOCK_INTERNAL_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "fastsock.h"

/* A buffer range (base length, offset, count or FASTSOCK_ALL) checked
 * overflow-safe: 0 with *n the count, or FASTSOCK_EOFFSET / FASTSOCK_ECOUNT. */
fastsock_result fastsock__check_range(size_t len, size_t offset, size_t count, size_t *n);

/* Monotonic clock, nanoseconds. */
int64_t fastsock__now_ns(void);

/* fastsock_advise_fresh for one range: 1 if faulting was cheap all along
 * (or not attempted: under 2 MiB, no advice on the platform), 0 if it
 * stopped at a slow slice, after which advising more of the same buffer
 * only costs. */
int fastsock__advise_range(void *buf, size_t len);

/* Where send() has no MSG_NOSIGNAL, and always for sendfile(2) (which takes
 * no flags), SIGPIPE is blocked in this thread for the call, and one it
 * raised is consumed before unblocking, so that it never reaches the
 * process. */
typedef struct fastsock__sigpipe_guard {
    sigset_t old_mask;
    int was_pending;
    int active;
} fastsock__sigpipe_guard;

void fastsock__sigpipe_block(fastsock__sigpipe_guard *g);
void fastsock__sigpipe_restore(fastsock__sigpipe_guard *g);

#endif /* FASTSOCK_INTERNAL_H */
