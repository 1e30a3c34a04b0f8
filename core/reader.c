/*
 * A protocol reader: a line or a header block up to a delimiter, then a body
 * of a known length. See "reading a protocol" in fastsock.h for the contract.
 *
 * A buffered reader (makefile, gets, LuaSocket's receive('*l')) reads past
 * the delimiter into a buffer that the next bulk receive can't see. This one
 * owns its look-ahead and hands it to fastsock_reader_recvall, which copies
 * only those bytes and receives the rest of the body straight into the
 * caller's memory. So a short reply costs the one recv that brought it, and a
 * large body passes through the look-ahead once at most, for its first bytes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include "fastsock.h"
#include "fastsock_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* The first receive's size, and the growth step: a whole RESP or HTTP reply
 * header, and a small body with it, in one system call. */
#define READER_CHUNK ((size_t)16 << 10)

void fastsock_reader_init(fastsock_reader *r, int fd)
{
    memset(r, 0, sizeof *r);
    r->fd = fd;
}

void fastsock_reader_release(fastsock_reader *r)
{
    free(r->buf);
    r->buf = NULL;
    r->cap = r->start = r->end = 0;
}

size_t fastsock_reader_buffered(const fastsock_reader *r)
{
    return r->end - r->start;
}

/* Room for at least READER_CHUNK more bytes after end: moves the buffered
 * bytes to the front, and grows only when they fill most of the buffer. */
static int make_room(fastsock_reader *r)
{
    if (r->cap - r->end >= READER_CHUNK)
        return 0;
    size_t held = r->end - r->start;
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, held);
        r->start = 0;
        r->end = held;
    }
    if (r->cap - r->end >= READER_CHUNK)
        return 0;
    size_t cap = r->cap ? r->cap * 2 : READER_CHUNK;
    while (cap - held < READER_CHUNK)
        cap *= 2;
    unsigned char *grown = realloc(r->buf, cap);
    if (grown == NULL)
        return -ENOMEM;
    r->buf = grown;
    r->cap = cap;
    return 0;
}

/* One receive into the room after end. Without a deadline a blocking
 * socket waits inside recv itself: one system call where poll and recv
 * make two, which is most of a small reply's cost when it has yet to come.
 * An O_NONBLOCK socket answers EAGAIN at once and waits in poll before its
 * next recv, as fastsock_recv would after a try of its own. */
static fastsock_result fill(fastsock_reader *r, int64_t deadline, fastsock_ctl *ctl)
{
    char *at = (char *)r->buf + r->end;
    size_t room = r->cap - r->end;
    if (ctl->timeout_ms < 0 && !(ctl->flags & FASTSOCK_POLL_ONLY)) {
        for (;;) {
            ssize_t got = recv(r->fd, at, room, 0);
            if (got >= 0)
                return got;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd p = { r->fd, POLLIN, 0 };
                if (poll(&p, 1, -1) >= 0)
                    continue; /* readable, or an error the recv reports */
            }
            if (errno != EINTR)
                return -errno;
            int rc = ctl->on_interrupt ? ctl->on_interrupt(ctl->interrupt_arg) : 0;
            if (rc < 0)
                return rc;
        }
    }
    fastsock_ctl one = *ctl;
    one.timeout_ms = ctl->timeout_ms == 0 ? 0 : fastsock_remaining_ms(deadline);
    if (ctl->timeout_ms > 0 && one.timeout_ms == 0)
        return -ETIMEDOUT;
    return fastsock_recv(r->fd, r->buf, r->cap, r->end, room, 0, &one);
}

fastsock_result fastsock_reader_until(fastsock_reader *r, const void *delim, size_t dlen,
                                      size_t max, const unsigned char **line, fastsock_ctl *ctl)
{
    ctl->moved = 0;
    *line = NULL;
    if (dlen == 0 || max < dlen)
        return -EINVAL;
    int64_t deadline = fastsock_deadline(ctl->timeout_ms);
    size_t searched = 0; /* bytes from start known to hold no whole delimiter */
    for (;;) {
        size_t held = r->end - r->start;
        size_t window = held < max ? held : max;
        if (window >= dlen) {
            /* A delimiter may straddle what was searched and what is new. */
            size_t from = searched > dlen - 1 ? searched - (dlen - 1) : 0;
            const unsigned char *base = r->buf + r->start;
            const unsigned char *hit = memmem(base + from, window - from, delim, dlen);
            if (hit != NULL) {
                size_t n = (size_t)(hit - base) + dlen;
                *line = base;
                r->start += n;
                ctl->moved = n;
                return (fastsock_result)n;
            }
        }
        searched = window;
        if (held >= max)
            return FASTSOCK_ETOOLONG; /* nothing consumed: the bytes stay buffered */
        int rc = make_room(r);
        if (rc < 0)
            return rc;
        fastsock_result got = fill(r, deadline, ctl);
        if (got < 0)
            return got; /* timeout, reset...: nothing consumed, the bytes stay buffered */
        if (got == 0) {
            /* The stream ended before the delimiter: what came is the partial. */
            *line = r->buf + r->start;
            ctl->moved = held;
            r->start = r->end;
            return FASTSOCK_EOF;
        }
        r->end += (size_t)got;
    }
}

fastsock_result fastsock_reader_recvall(fastsock_reader *r, void *buf, size_t len, size_t offset,
                                        size_t count, fastsock_ctl *ctl)
{
    ctl->moved = 0;
    fastsock_result rc = fastsock__check_range(len, offset, count, &count);
    if (rc < 0)
        return rc;
    size_t held = r->end - r->start;
    size_t take = held < count ? held : count;
    if (take > 0) {
        memcpy((char *)buf + offset, r->buf + r->start, take);
        r->start += take;
    }
    if (take == count) {
        ctl->moved = count;
        return (fastsock_result)count;
    }
    /* The look-ahead is empty now: the rest goes straight from the socket. */
    r->start = r->end = 0;
    rc = fastsock_recvall(r->fd, buf, len, offset + take, count - take, ctl);
    ctl->moved += take;
    return rc < 0 ? rc : (fastsock_result)count;
}
