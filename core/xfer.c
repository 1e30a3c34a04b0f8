/*
 * Progressive transfers: the event-loop form of recvall_into, sendall and
 * sendfile. See "progressive transfers" in fastsock.h for the contract.
 *
 * A step moves data until the kernel has no more for now. On a stream
 * socket a recv or send that comes back short already says so, so the step
 * ends there instead of making one more call to hear EAGAIN: a 64-byte
 * message costs one recv, as a loop's own sock_recv_into does.
 */
#include "fastsock.h"
#include "fastsock_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__linux__) && !defined(FASTSOCK_FORCE_PORTABLE)
#include <sys/sendfile.h>
#define FASTSOCK__XFER_SENDFILE 1
#endif

#if defined(MSG_NOSIGNAL) && !defined(FASTSOCK_FORCE_PORTABLE)
#define FASTSOCK__XFER_NOSIGNAL MSG_NOSIGNAL
#else
#define FASTSOCK__XFER_NOSIGNAL 0
#endif

/* The fresh-memory advice goes this far ahead of the receive: whole huge
 * pages, so that the advice of one step never splits one. */
#define FASTSOCK__HUGE ((uintptr_t)2 << 20)
/* The copying fallback of sendfile reads this much at a time. */
#define FASTSOCK__BOUNCE ((size_t)256 * 1024)

static void start(fastsock_xfer *x, fastsock_xfer_kind kind, int fd, char *base, size_t count)
{
    memset(x, 0, sizeof *x);
    x->kind = kind;
    x->fd = fd;
    x->file = -1;
    x->base = base;
    x->count = count;
    x->want = count == 0 ? 0 : kind == FASTSOCK_XFER_RECV ? FASTSOCK_WANT_READ : FASTSOCK_WANT_WRITE;
}

fastsock_result fastsock_xfer_recv_init(fastsock_xfer *x, int fd, void *buf, size_t len,
                                        size_t offset, size_t count)
{
    size_t n = 0;
    fastsock_result rc = fastsock__check_range(len, offset, count, &n);
    start(x, FASTSOCK_XFER_RECV, fd, rc < 0 ? NULL : (char *)buf + offset, n);
    if (rc < 0)
        x->want = 0;
    return x->error = rc;
}

fastsock_result fastsock_xfer_send_init(fastsock_xfer *x, int fd, const void *data, size_t len,
                                        size_t offset, size_t count)
{
    size_t n = 0;
    fastsock_result rc = fastsock__check_range(len, offset, count, &n);
    /* The state has one pointer for both directions; a send never writes
     * through it. */
    start(x, FASTSOCK_XFER_SEND, fd, rc < 0 ? NULL : (char *)(uintptr_t)data + offset, n);
    if (rc < 0)
        x->want = 0;
    return x->error = rc;
}

fastsock_result fastsock_xfer_sendfile_init(fastsock_xfer *x, int sock, int file,
                                            int64_t offset, size_t count)
{
    start(x, FASTSOCK_XFER_SENDFILE, sock, NULL, 0);
    x->want = 0;
    x->file = file;
    x->file_offset = offset;
    if (offset < 0)
        return x->error = FASTSOCK_EOFFSET;
    struct stat st;
    if (fstat(file, &st) < 0)
        return x->error = -errno;
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        return x->error = -ESPIPE;
    /* sendfile(2) would write into a regular file as readily as into a
     * socket: make sure it is one before any byte moves. */
    int type;
    socklen_t tlen = sizeof type;
    if (getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &tlen) < 0)
        return x->error = -errno;
    if (S_ISREG(st.st_mode)) {
        int64_t size = (int64_t)st.st_size;
        uint64_t avail = offset >= size ? 0 : (uint64_t)(size - offset);
        if (count == FASTSOCK_ALL || (uint64_t)count > avail)
            count = (size_t)avail;
    } else if (count == FASTSOCK_ALL) {
        return x->error = FASTSOCK_ECOUNT; /* a block device has no size to go to */
    }
    x->count = count;
    x->want = count == 0 ? 0 : FASTSOCK_WANT_WRITE;
    return 0;
}

void fastsock_xfer_release(fastsock_xfer *x)
{
    free(x->bounce);
    x->bounce = NULL;
    x->bounce_cap = x->bounce_at = x->bounce_len = 0;
}

/* Ends the transfer with rc (an error, or 0 for complete). */
static fastsock_result end(fastsock_xfer *x, fastsock_result rc)
{
    x->want = 0;
    x->error = rc;
    return rc;
}

/* The part of the buffer the next receive may fill gets the fresh-memory
 * advice first, in whole huge pages, until faulting turns out slow. */
static void advise_ahead(fastsock_xfer *x, size_t upto)
{
    if (x->advise_stopped || upto <= x->advised)
        return;
    uintptr_t from = (uintptr_t)x->base + x->advised;
    uintptr_t to = ((uintptr_t)x->base + upto + FASTSOCK__HUGE - 1) & ~(FASTSOCK__HUGE - 1);
    uintptr_t last = (uintptr_t)x->base + x->count;
    if (to > last || last - to < FASTSOCK__HUGE)
        to = last; /* no tail too small to be worth a call of its own */
    if (!fastsock__advise_range((void *)from, (size_t)(to - from)))
        x->advise_stopped = 1;
    x->advised = (size_t)(to - (uintptr_t)x->base);
}

/* What recv, send or sendfile answered, in the step's terms: 1 to go on
 * with the next call, 0 when the kernel has no more for now, or an error
 * that ends the transfer. */
static fastsock_result took(fastsock_xfer *x, ssize_t got, size_t want, size_t *moved)
{
    if (got > 0) {
        x->done += (size_t)got;
        *moved += (size_t)got;
        return (size_t)got < want ? 0 : 1;
    }
    if (got == 0)
        return x->kind == FASTSOCK_XFER_RECV ? FASTSOCK_EOF : 0;
    if (errno == EINTR)
        return 1;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return 0;
    return -errno;
}

static fastsock_result step_stream(fastsock_xfer *x, size_t budget, size_t *moved)
{
    for (;;) {
        size_t left = x->count - x->done;
        if (left == 0)
            return 0;
        size_t want = left < budget - *moved ? left : budget - *moved;
        if (want == 0)
            return 0;
        ssize_t got;
        if (x->kind == FASTSOCK_XFER_RECV) {
            if (x->flags & FASTSOCK_XFER_FRESH)
                advise_ahead(x, x->done + want);
            got = recv(x->fd, x->base + x->done, want, MSG_DONTWAIT);
        } else {
            got = send(x->fd, x->base + x->done, want, MSG_DONTWAIT | FASTSOCK__XFER_NOSIGNAL);
        }
        x->cycles++;
        fastsock_result rc = took(x, got, want, moved);
        if (rc <= 0)
            return rc;
    }
}

/* sendfile's fallback: pread into the bounce buffer, send from it; what the
 * socket did not take stays there for the next step. */
static fastsock_result step_copy(fastsock_xfer *x, size_t budget, size_t *moved)
{
    if (x->bounce == NULL) {
        size_t cap = x->count < FASTSOCK__BOUNCE ? x->count : FASTSOCK__BOUNCE;
        x->bounce = malloc(cap);
        if (x->bounce == NULL)
            return -ENOMEM;
        x->bounce_cap = cap;
    }
    while (x->done < x->count && *moved < budget) {
        if (x->bounce_at == x->bounce_len) {
            size_t left = x->count - x->done;
            size_t want = left < x->bounce_cap ? left : x->bounce_cap;
            ssize_t got = pread(x->file, x->bounce, want, (off_t)(x->file_offset + (int64_t)x->done));
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0)
                return -errno;
            if (got == 0) {
                x->count = x->done; /* the file shrank: what was there is sent */
                return 0;
            }
            x->bounce_at = 0;
            x->bounce_len = (size_t)got;
        }
        size_t want = x->bounce_len - x->bounce_at;
        if (want > budget - *moved)
            want = budget - *moved;
        ssize_t sent = send(x->fd, x->bounce + x->bounce_at, want,
                            MSG_DONTWAIT | FASTSOCK__XFER_NOSIGNAL);
        x->cycles++;
        if (sent > 0)
            x->bounce_at += (size_t)sent;
        fastsock_result rc = took(x, sent, want, moved);
        if (rc <= 0)
            return rc;
    }
    return 0;
}

#ifdef FASTSOCK__XFER_SENDFILE
/* 1 when sendfile(2) can't serve this pair, so the step copies instead. */
static int step_sendfile(fastsock_xfer *x, size_t budget, size_t *moved, fastsock_result *rc)
{
    int flags = fcntl(x->fd, F_GETFL);
    int set_nonblock = flags >= 0 && !(flags & O_NONBLOCK) &&
                       fcntl(x->fd, F_SETFL, flags | O_NONBLOCK) == 0;
    int fall_back = 0;
    *rc = 0;
    for (;;) {
        size_t left = x->count - x->done;
        size_t want = left < budget - *moved ? left : budget - *moved;
        if (want == 0)
            break;
        off_t pos = (off_t)(x->file_offset + (int64_t)x->done);
        ssize_t sent = sendfile(x->fd, x->file, &pos, want);
        x->cycles++;
        if (sent < 0 && x->done == 0 &&
            (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
            fall_back = 1;
            break;
        }
        if (sent == 0) {
            x->count = x->done; /* the file shrank: what was there is sent */
            break;
        }
        if ((*rc = took(x, sent, want, moved)) <= 0)
            break;
    }
    if (set_nonblock)
        fcntl(x->fd, F_SETFL, flags);
    return fall_back;
}
#endif

fastsock_result fastsock_xfer_step(fastsock_xfer *x)
{
    if (x->want == 0)
        return x->error;
    size_t budget = x->budget ? x->budget : FASTSOCK_XFER_BUDGET;
    size_t moved = 0;
    fastsock_result rc;
    if (x->kind == FASTSOCK_XFER_SENDFILE) {
        /* sendfile(2) takes no MSG_NOSIGNAL. */
        fastsock__sigpipe_guard guard;
        fastsock__sigpipe_block(&guard);
        int copy = x->file_copying;
#ifdef FASTSOCK__XFER_SENDFILE
        if (!copy && step_sendfile(x, budget, &moved, &rc))
            copy = x->file_copying = 1;
#else
        copy = x->file_copying = 1;
#endif
        if (copy)
            rc = step_copy(x, budget, &moved);
        fastsock__sigpipe_restore(&guard);
    } else {
        fastsock__sigpipe_guard guard = { .active = 0 };
        if (!FASTSOCK__XFER_NOSIGNAL && x->kind == FASTSOCK_XFER_SEND)
            fastsock__sigpipe_block(&guard);
        rc = step_stream(x, budget, &moved);
        fastsock__sigpipe_restore(&guard);
    }
    if (rc < 0)
        return end(x, rc);
    if (x->done == x->count)
        end(x, 0);
    return (fastsock_result)moved;
}
