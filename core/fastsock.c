/*
 * fastsock core. See fastsock.h for the contract.
 *
 * The shape of every operation: check the range, then loop on one system
 * call; EINTR and short returns go through the caller's interrupt hook;
 * EAGAIN waits in poll() against one deadline for the whole call.
 *
 * The bulk calls (recvall, sendall, sendfile) put an O_NONBLOCK socket into
 * blocking mode for their duration, with SO_RCVTIMEO/SO_SNDTIMEO carrying
 * the deadline, so that one recv(MSG_WAITALL) or send() moves the whole
 * payload instead of one poll/recv pair per socket-buffer's worth.
 */
#include "fastsock.h"
#include "fastsock_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__) && !defined(FASTSOCK_FORCE_PORTABLE)
#include <sys/sendfile.h>
#define FASTSOCK__HAVE_SENDFILE 1
#endif

/* The portable build pretends these flags do not exist, so that the code a
 * platform without them runs is the code the tests run. */
#if defined(MSG_WAITALL) && !defined(FASTSOCK_FORCE_PORTABLE)
#define FASTSOCK__WAITALL MSG_WAITALL
#else
#define FASTSOCK__WAITALL 0
#endif
#if defined(MSG_NOSIGNAL) && !defined(FASTSOCK_FORCE_PORTABLE)
#define FASTSOCK__NOSIGNAL MSG_NOSIGNAL
#else
#define FASTSOCK__NOSIGNAL 0
#endif

/* sendfile(2) on Linux moves at most this much per call. */
#define FASTSOCK__SENDFILE_MAX ((size_t)0x7ffff000)
#define FASTSOCK__COPY_CHUNK ((size_t)256 * 1024)

static _Thread_local unsigned long recvall_cycles;

unsigned long fastsock_recvall_cycles(void) { return recvall_cycles; }

int fastsock_portable_build(void)
{
#ifdef FASTSOCK_FORCE_PORTABLE
    return 1;
#else
    return 0;
#endif
}

const char *fastsock_strerror(fastsock_result err)
{
    switch (err) {
    case FASTSOCK_EOF: return "end of stream before the count was reached";
    case FASTSOCK_EOFFSET: return "offset lies beyond the buffer";
    case FASTSOCK_ECOUNT: return "offset + count lies beyond the buffer";
    case FASTSOCK_ETOOLONG: return "no delimiter within the maximum length";
    default: break;
    }
    if (err >= 0)
        return "success";
    if (err < -INT_MAX)
        return "unknown error";
    return strerror((int)-err);
}

/* Linux 5.14; older kernels answer EINVAL and the pages fault in the receive. */
#if defined(__linux__) && !defined(MADV_POPULATE_WRITE)
#define MADV_POPULATE_WRITE 23
#endif

int64_t fastsock__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* fastsock_advise_fresh stops populating at a slice that came in slower
 * than this many bytes per nanosecond (2 GB/s). */
#define FASTSOCK__POPULATE_MIN_BYTES_PER_NS 2
#define FASTSOCK__POPULATE_SLICE ((uintptr_t)16 << 20)

void fastsock_advise_fresh(void *buf, size_t len)
{
    (void)fastsock__advise_range(buf, len);
}

int fastsock__advise_range(void *buf, size_t len)
{
    const uintptr_t huge = (uintptr_t)2 << 20;
    if (len < huge)
        return 1;
    /* madvise wants page-aligned bounds; only whole huge pages benefit. */
    uintptr_t hstart = ((uintptr_t)buf + huge - 1) & ~(huge - 1);
    uintptr_t hend = ((uintptr_t)buf + len) & ~(huge - 1);
    int want_huge = 0;
#if defined(MADV_HUGEPAGE)
    want_huge = hend > hstart && madvise((void *)hstart, hend - hstart, MADV_HUGEPAGE) == 0;
#endif
    (void)want_huge; /* all three unused where the platform lacks the advice */
    (void)hstart;
    (void)hend;
#if defined(MADV_POPULATE_WRITE)
    /* Fault the pages in now, a slice to a system call, rather than one at
     * a time inside the receive's copy, where each fault costs several
     * times more (bench/README.md) -- while faulting is cheap. In a VM that
     * hands free memory back to its host (virtio-balloon free page
     * reporting, as on the project's machine), memory that has been free
     * for more than a moment costs host faults: pre-faulting 256 MiB of it
     * as huge pages took 0.4-0.9 s, where memory freed just before takes
     * 0.01-0.03 s. No interface tells which memory this is, so the slices
     * are timed, and at the first one slower than 2 GB/s the rest is left
     * to the receive in 4 KiB pages (measured, fresh 256 MiB results after
     * a 3 s pause: Python recvall 260-340 -> 730-1,390 MB/s, Ruby 260-360 ->
     * 1,110-1,990). On memory malloc recycled from the heap the pages are
     * present already and this is a walk over page tables. */
    const uintptr_t page = 4096;
    uintptr_t start = ((uintptr_t)buf + page - 1) & ~(page - 1);
    uintptr_t end = ((uintptr_t)buf + len) & ~(page - 1);
    for (uintptr_t at = start; at < end;) {
        uintptr_t slice_end = end - at > FASTSOCK__POPULATE_SLICE ? at + FASTSOCK__POPULATE_SLICE : end;
        int64_t t0 = fastsock__now_ns();
        if (madvise((void *)at, slice_end - at, MADV_POPULATE_WRITE) < 0)
            return 0; /* before Linux 5.14: the pages fault in the receive */
        if ((int64_t)((slice_end - at) / FASTSOCK__POPULATE_MIN_BYTES_PER_NS) < fastsock__now_ns() - t0) {
#if defined(MADV_NOHUGEPAGE)
            /* The huge pages after the one the slice ended in. */
            uintptr_t from = (slice_end + huge - 1) & ~(huge - 1);
            if (want_huge && hend > from)
                madvise((void *)from, hend - from, MADV_NOHUGEPAGE);
#endif
            return 0;
        }
        at = slice_end;
    }
#endif
    return 1;
}

/* ---- ranges and deadlines ------------------------------------------------- */

fastsock_result fastsock__check_range(size_t len, size_t offset, size_t count, size_t *n)
{
    if (offset > len)
        return FASTSOCK_EOFFSET;
    if (count == FASTSOCK_ALL)
        count = len - offset;
    else if (count > len - offset) /* len - offset cannot wrap: offset <= len */
        return FASTSOCK_ECOUNT;
    *n = count;
    return 0;
}

static int64_t now_ms(void)
{
    return fastsock__now_ns() / 1000000;
}

int64_t fastsock_now_ms(void) { return now_ms(); }

int64_t fastsock_deadline(int64_t timeout_ms)
{
    return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

int64_t fastsock_remaining_ms(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t left = deadline - now_ms();
    return left > 0 ? left : 0;
}

fastsock_error_kind fastsock_classify(fastsock_result rc)
{
    if (rc >= 0)
        return FASTSOCK_KIND_OK;
    switch (rc) {
    case FASTSOCK_EOF: return FASTSOCK_KIND_CLOSED;
    case FASTSOCK_EOFFSET:
    case FASTSOCK_ECOUNT: return FASTSOCK_KIND_RANGE;
    case -ETIMEDOUT: return FASTSOCK_KIND_TIMEOUT;
    case -EAGAIN: return FASTSOCK_KIND_WOULDBLOCK;
    case -EPIPE:
    case -ECONNRESET: return FASTSOCK_KIND_PEER_GONE;
    case -EBADF:
    case -ENOTSOCK: return FASTSOCK_KIND_BADSOCK;
    case FASTSOCK_ETOOLONG: return FASTSOCK_KIND_TOOLONG;
    default: return FASTSOCK_KIND_OTHER;
    }
}

typedef struct deadline {
    int64_t at_ms; /* meaningful only when limited */
    int limited;
    int never_wait;
} deadline;

static deadline deadline_from(const fastsock_ctl *ctl)
{
    deadline d = { 0, 0, 0 };
    if (ctl->timeout_ms == 0) {
        d.never_wait = 1;
    } else if (ctl->timeout_ms > 0) {
        d.limited = 1;
        d.at_ms = now_ms() + ctl->timeout_ms;
    }
    return d;
}

/* Milliseconds left, -1 for no limit, 0 once passed. */
static int remaining_ms(const deadline *d)
{
    if (!d->limited)
        return -1;
    int64_t left = d->at_ms - now_ms();
    if (left <= 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}

/* The hook decides whether an interruption ends the call. */
static int interrupted(fastsock_ctl *ctl)
{
    if (ctl->on_interrupt == NULL)
        return 0;
    int rc = ctl->on_interrupt(ctl->interrupt_arg);
    return rc < 0 ? rc : 0;
}

/* Waits until fd is ready for events. 0 when ready, else -ETIMEDOUT, -EAGAIN
 * (never_wait) or the hook's error. */
static int wait_ready(int fd, short events, const deadline *d, fastsock_ctl *ctl)
{
    if (d->never_wait)
        return -EAGAIN;
    for (;;) {
        int timeout = remaining_ms(d);
        if (timeout == 0)
            return -ETIMEDOUT;
        struct pollfd p = { fd, events, 0 };
        int rc = poll(&p, 1, timeout);
        if (rc > 0)
            return 0; /* ready, or an error/hangup the next call will report */
        if (rc == 0)
            continue; /* the deadline check above decides */
        if (errno != EINTR)
            return -errno;
        rc = interrupted(ctl);
        if (rc < 0)
            return rc;
    }
}

/* ---- SIGPIPE (the guard is in fastsock_internal.h) ------------------------ */

void fastsock__sigpipe_block(fastsock__sigpipe_guard *g)
{
    sigset_t pipe_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pending);
    g->was_pending = sigismember(&pending, SIGPIPE);
    g->active = pthread_sigmask(SIG_BLOCK, &pipe_set, &g->old_mask) == 0;
}

void fastsock__sigpipe_restore(fastsock__sigpipe_guard *g)
{
    if (!g->active)
        return;
    sigset_t pipe_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigpending(&pending);
    if (!g->was_pending && sigismember(&pending, SIGPIPE)) {
        static const struct timespec zero = { 0, 0 };
        int saved = errno;
        while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
            ;
        errno = saved;
    }
    pthread_sigmask(SIG_SETMASK, &g->old_mask, NULL);
}

/* ---- blocking sessions ------------------------------------------------------ */

/* The socket of one bulk call. The call works on a descriptor of its own
 * (a dup), never on the caller's number after the start: if another thread
 * closes that number during the transfer and a new file takes it, no
 * recv, send, sendfile, setsockopt or fcntl of the call lands on the new
 * file (sendfile would write into a regular file). Between system calls the
 * call checks that the caller's number still names the socket, and ends
 * with -EBADF once it does not.
 * An O_NONBLOCK socket is made blocking for the call, with the deadline in
 * SO_RCVTIMEO or SO_SNDTIMEO; everything is put back when the call ends. */
typedef struct blocking_session {
    int fd;      /* the call's own descriptor for the socket */
    int user_fd; /* the caller's */
    dev_t dev;   /* what the caller's named at the start */
    ino_t ino;
    int timeo_opt;
    int old_flags;
    int cleared_nonblock;
    int set_nonblock;
    int saved_timeo;
    struct timeval old_timeo;
} blocking_session;

/* Returns 1 if the socket is now blocking, 0 if the caller should use poll
 * (never_wait, POLL_ONLY, poll_only, or fcntl refused; with poll_only the
 * socket is made O_NONBLOCK for the call), or a negative errno when fd is
 * not a socket at all, or no descriptor is left (-EMFILE): then there is
 * nothing to end. */
static int session_begin(blocking_session *s, int fd, int timeo_opt,
                         const deadline *d, const fastsock_ctl *ctl, int poll_only)
{
    memset(s, 0, sizeof *s);
    s->fd = -1;
    s->user_fd = fd;
    s->timeo_opt = timeo_opt;
    socklen_t len = sizeof s->old_timeo;
    if (getsockopt(fd, SOL_SOCKET, timeo_opt, &s->old_timeo, &len) < 0)
        return -errno; /* EBADF, ENOTSOCK: refused before any byte moves */
    s->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (s->fd < 0)
        return -errno;
    struct stat st;
    if (fstat(s->fd, &st) < 0) {
        int err = errno;
        close(s->fd);
        return -err;
    }
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    fd = s->fd;
    if (poll_only) {
        s->old_flags = fcntl(fd, F_GETFL);
        if (s->old_flags >= 0 && !(s->old_flags & O_NONBLOCK) &&
            fcntl(fd, F_SETFL, s->old_flags | O_NONBLOCK) == 0)
            s->set_nonblock = 1;
        return 0;
    }
    if (d->never_wait || (ctl->flags & FASTSOCK_POLL_ONLY))
        return 0;
    s->old_flags = fcntl(fd, F_GETFL);
    if (s->old_flags < 0)
        return 0;
    if (s->old_flags & O_NONBLOCK) {
        if (fcntl(fd, F_SETFL, s->old_flags & ~O_NONBLOCK) < 0)
            return 0;
        s->cleared_nonblock = 1;
    }
    s->saved_timeo = 1;
    return 1;
}

/* Puts the remaining time into the socket's own timeout. 0, or -ETIMEDOUT
 * once the deadline has passed. */
static int session_arm(blocking_session *s, const deadline *d)
{
    struct timeval tv = { 0, 0 }; /* no limit */
    if (d->limited) {
        int64_t left_us = (d->at_ms - now_ms()) * 1000;
        if (left_us <= 0)
            return -ETIMEDOUT;
        tv.tv_sec = (time_t)(left_us / 1000000);
        tv.tv_usec = (suseconds_t)(left_us % 1000000);
    }
    setsockopt(s->fd, SOL_SOCKET, s->timeo_opt, &tv, sizeof tv);
    return 0;
}

/* Before each system call of the loop: -EBADF once the caller's number was
 * closed (or names another file now), else the deadline armed as above. */
static int session_step(blocking_session *s, const deadline *d, int blocking)
{
    struct stat st;
    if (fstat(s->user_fd, &st) < 0 || st.st_dev != s->dev || st.st_ino != s->ino)
        return -EBADF;
    return blocking ? session_arm(s, d) : 0;
}

static void session_end(blocking_session *s)
{
    int saved = errno;
    if (s->saved_timeo)
        setsockopt(s->fd, SOL_SOCKET, s->timeo_opt, &s->old_timeo, sizeof s->old_timeo);
    if (s->cleared_nonblock || s->set_nonblock)
        fcntl(s->fd, F_SETFL, s->old_flags);
    close(s->fd);
    errno = saved;
}

/* send() that never raises SIGPIPE where MSG_NOSIGNAL exists; elsewhere the
 * caller holds a fastsock__sigpipe_guard. */
static ssize_t send_nosignal(int fd, const char *p, size_t n, int flags)
{
    return send(fd, p, n, flags | FASTSOCK__NOSIGNAL);
}

/* ---- the first try ------------------------------------------------------------ */

/* Up to this many bytes, recvall and sendall first try one non-blocking
 * system call on the caller's number: a length prefix that is already
 * there, or a header the socket has room for, then costs that one call
 * instead of the session's eight (getsockopt, the dup, two fstat, the
 * flags, the timeout set and restored, close), 3-4x the native call's
 * time. A call that completes in it never waits, so it needs no descriptor
 * of its own. Beyond this size the set-up is noise beside the copy. */
#define FASTSOCK__FIRST_TRY_MAX ((size_t)64 * 1024)

/* 1 when the first try did it all, 0 to go on with the session from
 * ctl->moved, or an error that ends the call before any waiting. */
static fastsock_result first_try(int fd, char *p, size_t n, int receiving, fastsock_ctl *ctl)
{
    if (n == 0 || n > FASTSOCK__FIRST_TRY_MAX)
        return 0;
    ssize_t got;
    if (receiving) {
        got = recv(fd, p, n, MSG_DONTWAIT);
        recvall_cycles++;
    } else {
        fastsock__sigpipe_guard guard = { .active = 0 };
        if (!FASTSOCK__NOSIGNAL)
            fastsock__sigpipe_block(&guard);
        got = send_nosignal(fd, p, n, MSG_DONTWAIT);
        fastsock__sigpipe_restore(&guard);
    }
    if (got > 0) {
        ctl->moved = (size_t)got;
        return (size_t)got == n;
    }
    if (got == 0)
        return receiving ? FASTSOCK_EOF : 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return 0; /* the session waits, and runs the hook for a signal */
    return -errno;
}

/* ---- receiving -------------------------------------------------------------- */

/* Where a fastsock_recvall_try that did not complete stopped: the
 * fastsock_recvall that finishes that receive, from there on the same fd,
 * counts the try's recv too (any other call counts only its own). */
static _Thread_local int try_fd = -1;
static _Thread_local const char *try_next;

fastsock_result fastsock_recvall_try(int fd, void *buf, size_t len, size_t offset,
                                     size_t count, fastsock_ctl *ctl)
{
    size_t n;
    ctl->moved = 0;
    recvall_cycles = 0;
    try_fd = -1;
    fastsock_result rc = fastsock__check_range(len, offset, count, &n);
    if (rc < 0)
        return rc;
    rc = first_try(fd, (char *)buf + offset, n, 1, ctl);
    if (rc == 0 && recvall_cycles > 0) {
        try_fd = fd;
        try_next = (const char *)buf + offset + ctl->moved;
    }
    return rc;
}

fastsock_result fastsock_recvall(int fd, void *buf, size_t len, size_t offset,
                                 size_t count, fastsock_ctl *ctl)
{
    size_t n;
    ctl->moved = 0;
    recvall_cycles = try_fd == fd && try_fd >= 0 && try_next == (const char *)buf + offset;
    try_fd = -1;
    fastsock_result rc = fastsock__check_range(len, offset, count, &n);
    if (rc < 0)
        return rc;
    char *p = (char *)buf + offset;
    if ((rc = first_try(fd, p, n, 1, ctl)) != 0)
        return rc < 0 ? rc : (fastsock_result)n;
    deadline d = deadline_from(ctl);
    blocking_session s;
    int blocking = session_begin(&s, fd, SO_RCVTIMEO, &d, ctl, 0);
    if (blocking < 0)
        return blocking;
    fd = s.fd;
    rc = 0;
    while (ctl->moved < n) {
        if ((rc = session_step(&s, &d, blocking)) < 0)
            break;
        size_t want = n - ctl->moved;
        int flags = blocking ? FASTSOCK__WAITALL : MSG_DONTWAIT;
        ssize_t got = recv(fd, p + ctl->moved, want, flags);
        recvall_cycles++;
        if (got > 0) {
            ctl->moved += (size_t)got;
            /* A blocking MSG_WAITALL comes back short only for a signal or a
             * timeout: give the hook its chance to run handlers. */
            if (blocking && FASTSOCK__WAITALL && (size_t)got < want &&
                (rc = interrupted(ctl)) < 0)
                break;
            continue;
        }
        if (got == 0) {
            rc = FASTSOCK_EOF;
            break;
        }
        if (errno == EINTR) {
            if ((rc = interrupted(ctl)) < 0)
                break;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            /* Blocking: SO_RCVTIMEO expired (or another thread set
             * O_NONBLOCK); poll decides which, against the same deadline. */
            if ((rc = wait_ready(fd, POLLIN, &d, ctl)) < 0)
                break;
        } else {
            rc = -errno;
            break;
        }
    }
    session_end(&s);
    return rc < 0 ? rc : (fastsock_result)n;
}

fastsock_result fastsock_recv(int fd, void *buf, size_t len, size_t offset,
                              size_t count, int flags, fastsock_ctl *ctl)
{
    size_t n;
    ctl->moved = 0;
    fastsock_result rc = fastsock__check_range(len, offset, count, &n);
    if (rc < 0)
        return rc;
    deadline d = deadline_from(ctl);
    for (;;) {
        ssize_t got = recv(fd, (char *)buf + offset, n, flags | MSG_DONTWAIT);
        if (got >= 0) {
            ctl->moved = (size_t)got;
            return got;
        }
        if (errno == EINTR)
            rc = interrupted(ctl);
        else if (errno == EAGAIN || errno == EWOULDBLOCK)
            rc = wait_ready(fd, POLLIN, &d, ctl);
        else
            rc = -errno;
        if (rc < 0)
            return rc;
    }
}

/* ---- sending ------------------------------------------------------------------ */


fastsock_result fastsock_send(int fd, const void *data, size_t len,
                              size_t offset, size_t count, fastsock_ctl *ctl)
{
    size_t n;
    ctl->moved = 0;
    fastsock_result rc = fastsock__check_range(len, offset, count, &n);
    if (rc < 0)
        return rc;
    deadline d = deadline_from(ctl);
    fastsock__sigpipe_guard guard = { .active = 0 };
    if (!FASTSOCK__NOSIGNAL)
        fastsock__sigpipe_block(&guard);
    for (;;) {
        ssize_t sent = send_nosignal(fd, (const char *)data + offset, n, MSG_DONTWAIT);
        if (sent >= 0) {
            ctl->moved = (size_t)sent;
            rc = sent;
            break;
        }
        if (errno == EINTR)
            rc = interrupted(ctl);
        else if (errno == EAGAIN || errno == EWOULDBLOCK)
            rc = wait_ready(fd, POLLOUT, &d, ctl);
        else
            rc = -errno;
        if (rc < 0)
            break;
    }
    fastsock__sigpipe_restore(&guard);
    return rc;
}

/* A blocking send hands the kernel at most this much per call. Over
 * loopback on Linux 6.18, one send() of 256 MiB ran at 0.6x the speed of
 * the same bytes in 1 MiB calls into a reader taking 1 MiB a call, and at
 * 0.9x into one taking 16 KiB; 2 MiB calls did as well as 1 MiB, 512 KiB
 * and 8 MiB calls worse (bench/README.md). Probably the pushes: a call's
 * end pushes what it queued, where inside one long call the kernel pushes
 * only once the send buffer is full or half a window has queued. */
#define FASTSOCK__SEND_STEP ((size_t)1 << 20)

/* Sends p[0, n) on a socket prepared by the caller; ctl->moved grows. */
static fastsock_result send_loop(int fd, const char *p, size_t n, int blocking,
                                 blocking_session *s, const deadline *d,
                                 fastsock_ctl *ctl)
{
    size_t done = 0;
    while (done < n) {
        int rc;
        if ((rc = session_step(s, d, blocking)) < 0)
            return rc;
        size_t want = n - done < FASTSOCK__SEND_STEP ? n - done : FASTSOCK__SEND_STEP;
        ssize_t sent = send_nosignal(fd, p + done, want, blocking ? 0 : MSG_DONTWAIT);
        if (sent > 0) {
            done += (size_t)sent;
            ctl->moved += (size_t)sent;
            if (blocking && (size_t)sent < want && (rc = interrupted(ctl)) < 0)
                return rc;
            continue;
        }
        if (sent < 0 && errno == EINTR)
            rc = interrupted(ctl);
        else if (sent == 0 || errno == EAGAIN || errno == EWOULDBLOCK)
            rc = wait_ready(fd, POLLOUT, d, ctl);
        else
            rc = -errno;
        if (rc < 0)
            return rc;
    }
    return 0;
}

fastsock_result fastsock_sendall_try(int fd, const void *data, size_t len, size_t offset,
                                     size_t count, fastsock_ctl *ctl)
{
    size_t n;
    ctl->moved = 0;
    fastsock_result rc = fastsock__check_range(len, offset, count, &n);
    if (rc < 0)
        return rc;
    return first_try(fd, (char *)data + offset, n, 0, ctl);
}

fastsock_result fastsock_sendall(int fd, const void *data, size_t len,
                                 size_t offset, size_t count, fastsock_ctl *ctl)
{
    size_t n;
    ctl->moved = 0;
    fastsock_result rc = fastsock__check_range(len, offset, count, &n);
    if (rc < 0)
        return rc;
    const char *p = (const char *)data + offset;
    if ((rc = first_try(fd, (char *)(uintptr_t)p, n, 0, ctl)) != 0)
        return rc < 0 ? rc : (fastsock_result)n;
    deadline d = deadline_from(ctl);
    blocking_session s;
    int blocking = session_begin(&s, fd, SO_SNDTIMEO, &d, ctl, 0);
    if (blocking < 0)
        return blocking;
    fastsock__sigpipe_guard guard = { .active = 0 };
    if (!FASTSOCK__NOSIGNAL)
        fastsock__sigpipe_block(&guard);
    rc = send_loop(s.fd, p + ctl->moved, n - ctl->moved, blocking, &s, &d, ctl);
    fastsock__sigpipe_restore(&guard);
    session_end(&s);
    return rc < 0 ? rc : (fastsock_result)n;
}

/* ---- sendallv ------------------------------------------------------------------- */

/* iovecs per sendmsg: 100 small pieces go in one call, and the batch stays
 * small enough for the stack of a fiber or a coroutine's C caller. */
#define FASTSOCK__IOV_BATCH 256

/* Where the stream of buffers stands: buffer `at`, byte `off` in it. */
typedef struct iov_cursor {
    const struct iovec *iov;
    size_t cnt, at, off;
} iov_cursor;

static void cursor_advance(iov_cursor *c, size_t n)
{
    while (c->at < c->cnt && (n > 0 || c->iov[c->at].iov_len == c->off)) {
        size_t left = c->iov[c->at].iov_len - c->off;
        if (n < left) {
            c->off += n;
            return;
        }
        n -= left;
        c->at++;
        c->off = 0;
    }
}

/* The next batch from the cursor; returns its byte count. */
static size_t cursor_batch(const iov_cursor *c, struct iovec *batch, int *k)
{
    size_t bytes = 0;
    *k = 0;
    for (size_t j = c->at; j < c->cnt && *k < FASTSOCK__IOV_BATCH; j++) {
        size_t skip = j == c->at ? c->off : 0;
        if (c->iov[j].iov_len == skip)
            continue;
        batch[*k].iov_base = (char *)c->iov[j].iov_base + skip;
        batch[*k].iov_len = c->iov[j].iov_len - skip;
        bytes += batch[*k].iov_len;
        (*k)++;
    }
    return bytes;
}

static ssize_t sendmsg_batch(int fd, const iov_cursor *c, int flags, size_t *batch_bytes)
{
    struct iovec batch[FASTSOCK__IOV_BATCH];
    int k;
    *batch_bytes = cursor_batch(c, batch, &k);
    struct msghdr m;
    memset(&m, 0, sizeof m);
    m.msg_iov = batch;
    m.msg_iovlen = (size_t)k;
    return sendmsg(fd, &m, flags | FASTSOCK__NOSIGNAL);
}

fastsock_result fastsock_sendallv(int fd, const struct iovec *iov, size_t iovcnt,
                                  fastsock_ctl *ctl)
{
    ctl->moved = 0;
    size_t total = 0;
    for (size_t i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > (size_t)SSIZE_MAX - total)
            return FASTSOCK_ECOUNT;
        total += iov[i].iov_len;
    }
    if (total == 0)
        return 0;
    iov_cursor c = { iov, iovcnt, 0, 0 };
    cursor_advance(&c, 0); /* past leading empty buffers */
    fastsock_result rc = 0;
    fastsock__sigpipe_guard guard = { .active = 0 };
    if (!FASTSOCK__NOSIGNAL)
        fastsock__sigpipe_block(&guard);
    /* The first try, as for sendall: headers with room for them go in one
     * call on the caller's number, with no session. */
    size_t batch_bytes;
    if (total <= FASTSOCK__FIRST_TRY_MAX) {
        ssize_t sent = sendmsg_batch(fd, &c, MSG_DONTWAIT, &batch_bytes);
        if (sent > 0) {
            ctl->moved = (size_t)sent;
            cursor_advance(&c, (size_t)sent);
        } else if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            rc = -errno;
        }
        if (rc < 0 || ctl->moved == total) {
            fastsock__sigpipe_restore(&guard);
            return rc < 0 ? rc : (fastsock_result)total;
        }
    }
    deadline d = deadline_from(ctl);
    blocking_session s;
    int blocking = session_begin(&s, fd, SO_SNDTIMEO, &d, ctl, 0);
    if (blocking < 0) {
        fastsock__sigpipe_restore(&guard);
        return blocking;
    }
    while (ctl->moved < total) {
        if ((rc = session_step(&s, &d, blocking)) < 0)
            break;
        ssize_t sent = sendmsg_batch(s.fd, &c, blocking ? 0 : MSG_DONTWAIT, &batch_bytes);
        if (sent > 0) {
            ctl->moved += (size_t)sent;
            cursor_advance(&c, (size_t)sent);
            if (blocking && (size_t)sent < batch_bytes && (rc = interrupted(ctl)) < 0)
                break;
            continue;
        }
        if (sent < 0 && errno == EINTR)
            rc = interrupted(ctl);
        else if (sent == 0 || errno == EAGAIN || errno == EWOULDBLOCK)
            rc = wait_ready(s.fd, POLLOUT, &d, ctl);
        else
            rc = -errno;
        if (rc < 0)
            break;
    }
    fastsock__sigpipe_restore(&guard);
    session_end(&s);
    return rc < 0 ? rc : (fastsock_result)total;
}

/* ---- sendfile ------------------------------------------------------------------- */

/* Reads the file and sends what it read, for files sendfile(2) can't serve
 * and platforms without it. A seekable file is read with pread, so its
 * position stays where the caller left it. */
static fastsock_result copy_by_read(int sock, int file, int seekable, int64_t offset,
                                    size_t count, int blocking, blocking_session *s,
                                    const deadline *d, fastsock_ctl *ctl)
{
    size_t chunk = count < FASTSOCK__COPY_CHUNK ? count : FASTSOCK__COPY_CHUNK;
    if (chunk == 0)
        return 0;
    char *buf = malloc(chunk);
    if (buf == NULL)
        return -ENOMEM;
    fastsock_result rc = 0;
    size_t left = count;
    while (left > 0) {
        size_t want = left < chunk ? left : chunk;
        ssize_t got = seekable ? pread(file, buf, want, (off_t)(offset + (int64_t)ctl->moved))
                               : read(file, buf, want);
        if (got == 0)
            break; /* end of file: what was there has been sent */
        if (got < 0) {
            if (errno == EINTR)
                rc = interrupted(ctl);
            else if (errno == EAGAIN || errno == EWOULDBLOCK)
                rc = wait_ready(file, POLLIN, d, ctl); /* runtimes make pipes O_NONBLOCK too */
            else
                rc = -errno;
            if (rc < 0)
                break;
            continue;
        }
        rc = send_loop(sock, buf, (size_t)got, blocking, s, d, ctl);
        if (rc < 0)
            break;
        left -= (size_t)got;
    }
    free(buf);
    return rc;
}

#ifdef FASTSOCK__HAVE_SENDFILE
/* 1 when sendfile(2) cannot serve this pair at all, so the caller falls back
 * to reading; 0 when it is done or failed (rc set). */
static int sendfile_loop(int sock, int file, int seekable, int64_t offset, size_t count,
                         int blocking, blocking_session *s, const deadline *d,
                         fastsock_ctl *ctl, fastsock_result *rc)
{
    off_t pos = (off_t)offset;
    off_t *at = seekable ? &pos : NULL; /* a pipe is read where it stands */
    *rc = 0;
    while (ctl->moved < count) {
        if ((*rc = session_step(s, d, blocking)) < 0)
            return 0;
        size_t want = count - ctl->moved;
        if (want > FASTSOCK__SENDFILE_MAX)
            want = FASTSOCK__SENDFILE_MAX;
        ssize_t sent = sendfile(sock, file, at, want);
        if (sent > 0) {
            ctl->moved += (size_t)sent;
            if (blocking && (size_t)sent < want && (*rc = interrupted(ctl)) < 0)
                return 0;
            continue;
        }
        if (sent == 0)
            return 0; /* end of file */
        if ((errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) && ctl->moved == 0)
            return 1;
        if (errno == EINTR) {
            *rc = interrupted(ctl);
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            /* A full socket, or (with a deadline the socket is O_NONBLOCK)
             * an O_NONBLOCK pipe with nothing in it: wait for both. */
            *rc = wait_ready(sock, POLLOUT, d, ctl);
            if (*rc == 0 && !seekable)
                *rc = wait_ready(file, POLLIN, d, ctl);
        } else {
            *rc = -errno;
        }
        if (*rc < 0)
            return 0;
    }
    return 0;
}
#endif

fastsock_result fastsock_sendfile(int sock, int file, int64_t offset, size_t count,
                                  fastsock_ctl *ctl)
{
    ctl->moved = 0;
    if (offset < 0)
        return FASTSOCK_EOFFSET;
    struct stat st;
    if (fstat(file, &st) < 0)
        return -errno;
    int seekable = S_ISREG(st.st_mode) || S_ISBLK(st.st_mode);
    if (!seekable && offset != 0)
        return -ESPIPE;
    if (S_ISREG(st.st_mode)) {
        /* Past the end there is nothing to send; clamping here also keeps the
         * byte count of one request within what the kernel takes. */
        int64_t size = (int64_t)st.st_size;
        uint64_t avail = offset >= size ? 0 : (uint64_t)(size - offset);
        if (count == FASTSOCK_ALL || (uint64_t)count > avail)
            count = (size_t)avail;
    }
    deadline d = deadline_from(ctl);
    blocking_session s;
    /* With a deadline, sendfile(2) waits in poll: the kernel restarts
     * SO_SNDTIMEO for every piece of one call, so a blocking call to a reader
     * that is slow but never stalls would outlast any deadline. Never
     * waiting needs O_NONBLOCK too: sendfile(2) takes no flags. */
    int blocking = session_begin(&s, sock, SO_SNDTIMEO, &d, ctl, d.limited || d.never_wait);
    if (blocking < 0)
        return blocking;
    fastsock_result rc = 0;
    if (count > 0) {
        /* sendfile(2) has no MSG_NOSIGNAL, so SIGPIPE is always guarded. */
        fastsock__sigpipe_guard guard;
        fastsock__sigpipe_block(&guard);
        int fall_back = 1;
#ifdef FASTSOCK__HAVE_SENDFILE
        fall_back = sendfile_loop(s.fd, file, seekable, offset, count, blocking, &s, &d, ctl, &rc);
#endif
        if (fall_back)
            rc = copy_by_read(s.fd, file, seekable, offset, count, blocking, &s, &d, ctl);
        fastsock__sigpipe_restore(&guard);
    }
    session_end(&s);
    return rc < 0 ? rc : (fastsock_result)ctl->moved;
}

/* ---- recvfile ------------------------------------------------------------------- */

/* Writes all of p[0, n) to the file, at *pos when seekable (advancing it),
 * else where the file stands, adding what reached the file to *moved as it
 * goes, so that a write failing part-way still counts the part. 0 or a
 * negative errno. A signal does not end it: these bytes have left the
 * socket already, and stopping here would lose them (a pipe nobody drains
 * keeps the call waiting, as a blocking write would). */
static int write_all(int file, const char *p, size_t n, int64_t *pos, int seekable, size_t *moved)
{
    while (n > 0) {
        ssize_t w = seekable ? pwrite(file, p, n, (off_t)*pos) : write(file, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        if (w == 0)
            return -EIO;
        p += w;
        n -= (size_t)w;
        *pos += w;
        *moved += (size_t)w;
    }
    return 0;
}

/* recv into a buffer and write it out: where splice(2) can't serve. */
static fastsock_result recv_and_write(int sock, int file, int seekable, int64_t offset,
                                      size_t count, int blocking, blocking_session *s,
                                      const deadline *d, fastsock_ctl *ctl)
{
    size_t cap = count < FASTSOCK__COPY_CHUNK ? count : FASTSOCK__COPY_CHUNK;
    char *buf = malloc(cap);
    if (buf == NULL)
        return -ENOMEM;
    int64_t pos = offset + (int64_t)ctl->moved;
    fastsock_result rc = 0;
    while (ctl->moved < count) {
        if ((rc = session_step(s, d, blocking)) < 0)
            break;
        size_t want = count - ctl->moved < cap ? count - ctl->moved : cap;
        ssize_t got = recv(sock, buf, want, blocking ? 0 : MSG_DONTWAIT);
        if (got > 0) {
            /* What was received is written before anything else can end
             * the call: moved counts bytes in the file. */
            if ((rc = write_all(file, buf, (size_t)got, &pos, seekable, &ctl->moved)) < 0)
                break;
            continue;
        }
        if (got == 0)
            rc = FASTSOCK_EOF;
        else if (errno == EINTR)
            rc = interrupted(ctl);
        else if (errno == EAGAIN || errno == EWOULDBLOCK)
            rc = wait_ready(sock, POLLIN, d, ctl);
        else
            rc = -errno;
        if (rc < 0)
            break;
    }
    free(buf);
    return rc;
}

#ifdef FASTSOCK__HAVE_SENDFILE /* Linux: splice(2) comes with sendfile(2) */
/* Bytes one splice moves at most: the pipe's capacity, raised from 64 KiB
 * where the system allows (fs.pipe-max-size, 1 MiB by default). */
#define FASTSOCK__SPLICE_PIPE ((int)1 << 20)

/* Moves n bytes that are in the pipe into the file at *pos: by splice, or
 * by read and write once the file has refused splice (*spliceable cleared:
 * a file system without splice support). 0 or a negative errno; ctl->moved
 * counts the bytes that reached the file. */
static int drain_pipe(int pipe_rd, int file, loff_t *pos, size_t n, int *spliceable,
                      fastsock_ctl *ctl)
{
    while (n > 0) {
        ssize_t out;
        if (*spliceable) {
            out = splice(pipe_rd, NULL, file, pos, n, SPLICE_F_MOVE);
            if (out < 0 && (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
                *spliceable = 0;
                continue;
            }
        } else {
            char tmp[16384];
            out = read(pipe_rd, tmp, n < sizeof tmp ? n : sizeof tmp);
            if (out > 0) {
                int64_t at = (int64_t)*pos;
                int rc = write_all(file, tmp, (size_t)out, &at, 1, &ctl->moved);
                *pos = (loff_t)at;
                if (rc < 0)
                    return rc;
                n -= (size_t)out;
                continue;
            }
        }
        if (out < 0 && errno == EINTR)
            continue;
        if (out <= 0)
            return out < 0 ? -errno : -EIO;
        n -= (size_t)out;
        ctl->moved += (size_t)out;
    }
    return 0;
}

/* 1 when splice(2) can't read this socket at all (the caller copies), else
 * 0 with *rc set. */
static int splice_loop(int sock, int file, int64_t offset, size_t count, int blocking,
                       blocking_session *s, const deadline *d, fastsock_ctl *ctl,
                       fastsock_result *rc)
{
    int pipe_fds[2];
    *rc = 0;
    if (pipe2(pipe_fds, O_CLOEXEC) < 0)
        return 1;
    int cap = fcntl(pipe_fds[1], F_SETPIPE_SZ, FASTSOCK__SPLICE_PIPE);
    if (cap < 0)
        cap = fcntl(pipe_fds[1], F_GETPIPE_SZ);
    size_t chunk = cap > 0 ? (size_t)cap : (size_t)65536;
    int fall_back = 0, spliceable = 1;
    loff_t pos = (loff_t)offset;
    while (ctl->moved < count) {
        if ((*rc = session_step(s, d, blocking)) < 0)
            break;
        size_t want = count - ctl->moved < chunk ? count - ctl->moved : chunk;
        ssize_t in = splice(sock, NULL, pipe_fds[1], NULL, want,
                            SPLICE_F_MOVE | (blocking ? 0 : SPLICE_F_NONBLOCK));
        if (in > 0) {
            /* Into the file at once: what was received stays written
             * whatever ends the call next. */
            if ((*rc = drain_pipe(pipe_fds[0], file, &pos, (size_t)in, &spliceable, ctl)) < 0)
                break;
            continue;
        }
        if (in == 0) {
            *rc = FASTSOCK_EOF;
            break;
        }
        if (ctl->moved == 0 && (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
            fall_back = 1;
            break;
        }
        if (errno == EINTR)
            *rc = interrupted(ctl);
        else if (errno == EAGAIN || errno == EWOULDBLOCK)
            *rc = wait_ready(sock, POLLIN, d, ctl);
        else
            *rc = -errno;
        if (*rc < 0)
            break;
    }
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    return fall_back;
}
#endif

fastsock_result fastsock_recvfile(int sock, int file, int64_t offset, size_t count,
                                  fastsock_ctl *ctl)
{
    ctl->moved = 0;
    if (offset < 0)
        return FASTSOCK_EOFFSET;
    struct stat st;
    if (fstat(file, &st) < 0)
        return -errno;
    int flags = fcntl(file, F_GETFL);
    if (flags < 0)
        return -errno;
    if ((flags & O_ACCMODE) == O_RDONLY)
        return -EBADF; /* as write(2) answers a file not open for writing */
    int seekable = S_ISREG(st.st_mode) || S_ISBLK(st.st_mode);
    int append = (flags & O_APPEND) != 0;
    if ((!seekable || append) && offset != 0)
        return -ESPIPE;
    if (count > (size_t)SSIZE_MAX)
        return FASTSOCK_ECOUNT;
    if (count == 0)
        return 0;
    deadline d = deadline_from(ctl);
    blocking_session s;
    /* splice(2)'s SPLICE_F_NONBLOCK is the pipe's: a blocking socket would
     * still wait in it, so never waiting makes the socket O_NONBLOCK. */
    int blocking = session_begin(&s, sock, SO_RCVTIMEO, &d, ctl, d.never_wait);
    if (blocking < 0)
        return blocking;
    fastsock_result rc = 0;
    int copy = 1;
#ifdef FASTSOCK__HAVE_SENDFILE
    /* An O_APPEND file refuses splice with an offset; a pipe or a terminal
     * is written where it stands: both by copying. */
    if (seekable && !append)
        copy = splice_loop(s.fd, file, offset, count, blocking, &s, &d, ctl, &rc);
#endif
    if (copy)
        rc = recv_and_write(s.fd, file, seekable && !append, offset, count, blocking, &s, &d, ctl);
    session_end(&s);
    return rc < 0 ? rc : (fastsock_result)ctl->moved;
}
