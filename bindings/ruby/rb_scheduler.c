/*
 * The transfers inside a non-blocking fiber with Fiber.scheduler set
 * (ruby-async, or any scheduler with Ruby 3.1's io_wait). Blocking the
 * thread there would freeze every other fiber for the whole transfer, so
 * the data moves in the core's non-blocking steps (fastsock_xfer_step, at
 * most a budget of bytes each) and every wait goes through the scheduler's
 * io_wait, with the GVL held throughout: a step never waits.
 *
 * What ruby-async 1.30 makes necessary:
 * - Its io_wait registers the IO object it is given with nio4r, which
 *   refuses a second registration of one object ("this IO is already
 *   registered with selector"): a receive in one fiber and a send in
 *   another on the same socket would collide, and so would a fastsock call
 *   with the program's own IO#read. Each call therefore waits on an IO of
 *   its own, over a dup of the socket, which is also the descriptor the
 *   steps use (so a socket closed by another fiber is never confused with a
 *   file that takes its number; checked after every wait).
 * - Its io_wait rescues the Async::TimeoutError that Task#with_timeout
 *   raises into the waiting fiber and returns nil: a falsy answer before
 *   the call's own deadline is taken as that, and raised again
 *   (FASTSOCK_RB_ESCHED, rb_errors.c).
 * Exceptions that do come out of io_wait (Task#stop's Async::Stop, a
 * Thread#raise, a with_timeout with another exception class) are caught,
 * the call cleans up (String unlocked, dup closed), and they are raised
 * again with nbytes and partial set (FASTSOCK_RB_EJUMP).
 */
#include "fastsock_rb.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ruby/fiber/scheduler.h>
#include <ruby/io.h>

VALUE fastsock_rb__scheduler(void)
{
    return rb_fiber_scheduler_current();
}

/* The bulk receives in progress under a scheduler, by socket: a second
 * one on the same socket is refused, since the two would split one stream
 * between them. On the heap, not in the calls' frames: a fiber that a
 * scheduler drops without resuming it never unlists itself, and its stack
 * goes away. Such an entry is recognised by its call's own descriptor: the
 * collector closes it with the call's IO once the fiber is gone. Only
 * touched with the GVL held. */
typedef struct receive_entry {
    dev_t dev;
    ino_t ino;
    int own_fd; /* the call's dup of the socket */
    struct receive_entry *next;
} receive_entry;

static receive_entry *receiving;

/* Whether the entry's call can still be running: its descriptor still
 * names the socket. */
static int alive(const receive_entry *e)
{
    struct stat st;
    return fstat(e->own_fd, &st) == 0 && st.st_dev == e->dev && st.st_ino == e->ino;
}

static int in_progress_now(dev_t dev, ino_t ino)
{
    for (receive_entry **p = &receiving; *p;) {
        receive_entry *e = *p;
        if (!alive(e)) {
            *p = e->next; /* its fiber was dropped and collected */
            free(e);
            continue;
        }
        if (e->dev == dev && e->ino == ino)
            return 1;
        p = &e->next;
    }
    return 0;
}

/* A receive found in progress may belong to a fiber the program dropped
 * that the collector has not freed yet: one collection, then the answer. */
static int receive_in_progress(dev_t dev, ino_t ino)
{
    if (!in_progress_now(dev, ino))
        return 0;
    /* GC.start, not rb_gc(): the IO's descriptor is closed by its
     * finalizer, which GC.start runs before it returns. */
    rb_funcall(rb_mGC, rb_intern("start"), 0);
    return in_progress_now(dev, ino);
}

int fastsock_rb__receive_busy(int fd)
{
    struct stat st;
    return receiving != NULL && fstat(fd, &st) == 0 && receive_in_progress(st.st_dev, st.st_ino);
}

static int list_receive(fastsock_rb_call *c)
{
    receive_entry *e = malloc(sizeof *e);
    if (e == NULL)
        return -ENOMEM;
    e->dev = c->dev;
    e->ino = c->ino;
    e->own_fd = c->wait_fd;
    e->next = receiving;
    receiving = e;
    c->receiving = e;
    return 0;
}

static void unlist(fastsock_rb_call *c)
{
    if (c->receiving == NULL)
        return;
    for (receive_entry **p = &receiving; *p; p = &(*p)->next)
        if (*p == c->receiving) {
            *p = c->receiving->next;
            break;
        }
    free(c->receiving);
    c->receiving = NULL;
}

/* The call's own descriptor for the socket, and what it names. */
static fastsock_result open_own(fastsock_rb_call *c)
{
    if (c->wait_fd >= 0)
        return 0;
    int fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    c->wait_fd = fd;
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    return 0;
}

static void close_own(fastsock_rb_call *c)
{
    unlist(c);
    if (!NIL_P(c->wait_io)) {
        rb_io_close(c->wait_io); /* closes wait_fd */
        c->wait_io = Qnil;
    } else if (c->wait_fd >= 0) {
        close(c->wait_fd);
    }
    c->wait_fd = -1;
}

/* -EBADF once the caller's number no longer names the socket. */
static fastsock_result still_open(const fastsock_rb_call *c)
{
    struct stat st;
    if (fstat(c->fd, &st) < 0 || st.st_dev != c->dev || st.st_ino != c->ino)
        return -EBADF;
    return 0;
}

typedef struct wait_args {
    VALUE scheduler, io, events, timeout;
} wait_args;

static VALUE io_wait(VALUE arg)
{
    wait_args *a = (wait_args *)arg;
    return rb_fiber_scheduler_io_wait(a->scheduler, a->io, a->events, a->timeout);
}

typedef struct open_args {
    int fd, flags;
} open_args;

static VALUE open_io(VALUE arg)
{
    open_args *a = (open_args *)arg;
    return rb_io_fdopen(a->fd, a->flags, NULL);
}

/* An IO over fd (which it then owns), for io_wait; FASTSOCK_RB_EJUMP if
 * making it raised. */
static fastsock_result make_io(fastsock_rb_call *c, int fd, int flags, VALUE *io)
{
    open_args a = { fd, flags };
    int state = 0;
    *io = rb_protect(open_io, (VALUE)&a, &state);
    if (state) {
        *io = Qnil;
        c->jump_state = state;
        return FASTSOCK_RB_EJUMP;
    }
    return 0;
}

/* Waits through the scheduler until io is ready for events
 * (FASTSOCK_WANT_*). 0 when it is; -ETIMEDOUT at the call's deadline;
 * -EBADF when another fiber closed the socket meanwhile; FASTSOCK_RB_ESCHED
 * or FASTSOCK_RB_EJUMP as above. */
static fastsock_result wait_on(fastsock_rb_call *c, VALUE io, unsigned events)
{
    int64_t left = fastsock_remaining_ms(c->deadline);
    if (left == 0)
        return -ETIMEDOUT;
    wait_args a = {
        .scheduler = c->scheduler,
        .io = io,
        .events = INT2NUM(events == FASTSOCK_WANT_READ ? RUBY_IO_READABLE : RUBY_IO_WRITABLE),
        .timeout = left < 0 ? Qnil : DBL2NUM((double)left / 1000.0),
    };
    int state = 0;
    VALUE ready = rb_protect(io_wait, (VALUE)&a, &state);
    if (state) {
        c->jump_state = state;
        return FASTSOCK_RB_EJUMP;
    }
    fastsock_result rc = still_open(c);
    if (rc < 0)
        return rc;
    if (RTEST(ready))
        return 0;
    /* The wait's timeout was the time left, in whole milliseconds from a
     * truncated clock: at the deadline, now is at most 1 ms short of it. */
    if (c->deadline >= 0 && fastsock_now_ms() + 1 >= c->deadline)
        return -ETIMEDOUT;
    return FASTSOCK_RB_ESCHED;
}

/* The same for the socket, on the call's own IO. */
static fastsock_result wait_for(fastsock_rb_call *c, unsigned events)
{
    fastsock_result rc = open_own(c);
    if (rc < 0)
        return rc;
    if (NIL_P(c->wait_io) && (rc = make_io(c, c->wait_fd, O_RDWR, &c->wait_io)) < 0)
        return rc;
    return wait_on(c, c->wait_io, events);
}

/* recv_into, send and a Reader's readuntil, after run's first try found
 * nothing to do: a wait, then the try again (a reader keeps what each try
 * read in its look-ahead). sendallv and recvfile the same way, trying
 * first: each try moves up to a budget's worth and never waits. */
static void single(fastsock_rb_call *c)
{
    int sending = c->op == FASTSOCK_RB_SEND || c->op == FASTSOCK_RB_SENDALLV;
    int wait_first = c->op != FASTSOCK_RB_SENDALLV && c->op != FASTSOCK_RB_RECVFILE;
    if (c->op == FASTSOCK_RB_READUNTIL || c->op == FASTSOCK_RB_RECVFILE) {
        /* Listed as the socket's receive while it waits, as a bulk
         * receive is: a recv_into meanwhile would take from the middle. */
        fastsock_result rc = open_own(c);
        if (rc == 0 && receive_in_progress(c->dev, c->ino))
            rc = FASTSOCK_RB_EBUSY;
        if (rc == 0)
            rc = list_receive(c);
        if (rc < 0) {
            c->rc = rc;
            return;
        }
    }
    for (;;) {
        fastsock_result rc = 0;
        if (wait_first)
            rc = wait_for(c, sending ? FASTSOCK_WANT_WRITE : FASTSOCK_WANT_READ);
        wait_first = 1;
        if (rc < 0) {
            c->rc = rc;
            return;
        }
        rc = fastsock_rb__try_now(c);
        if (rc != -EAGAIN) {
            c->rc = rc;
            return;
        }
    }
}

/* Bulk transfers in progress under schedulers in this process. A reactor
 * runs every ready fiber's step before it comes back to a timer, so the
 * steps share the core's 1 MiB budget: the loop's round stays about a
 * millisecond of copying however many transfers run at once. */
static unsigned long active;
#define MIN_BUDGET ((size_t)64 << 10)

static size_t shared_budget(void)
{
    size_t b = FASTSOCK_XFER_BUDGET / (active ? active : 1);
    return b < MIN_BUDGET ? MIN_BUDGET : b;
}

/* recvall, recvall_into, sendall, sendfile: one progressive transfer on the
 * call's own descriptor. */
static void bulk(fastsock_rb_call *c)
{
    fastsock_result rc = open_own(c);
    if (rc < 0) {
        c->rc = rc;
        return;
    }
    fastsock_xfer x;
    switch (c->op) {
    case FASTSOCK_RB_RECVALL:
        if (receive_in_progress(c->dev, c->ino)) {
            c->rc = FASTSOCK_RB_EBUSY;
            return;
        }
        if ((rc = list_receive(c)) < 0) {
            c->rc = rc;
            return;
        }
        rc = fastsock_xfer_recv_init(&x, c->wait_fd, c->base, c->len, c->offset, c->count);
        if (c->advise_fresh)
            x.flags |= FASTSOCK_XFER_FRESH;
        break;
    case FASTSOCK_RB_SENDALL:
        rc = fastsock_xfer_send_init(&x, c->wait_fd, c->base, c->len, c->offset, c->count);
        break;
    default:
        rc = fastsock_xfer_sendfile_init(&x, c->wait_fd, c->file, c->file_offset, c->count);
        break;
    }
    if (rc < 0) {
        c->rc = rc;
        return;
    }
    size_t before = c->total; /* read-ahead bytes a receive took first */
    size_t turn = 0;          /* bytes moved since the scheduler's last turn */
    active++;
    for (;;) {
        size_t budget = shared_budget();
        x.budget = budget - turn;
        /* The fresh-memory advice works in whole huge pages, 2 MiB a time
         * whatever the step's budget: with the budget shared, the
         * transfers would all fault their next 2 MiB in the same round of
         * the loop. Dropped for good once another transfer runs (the
         * receive then faults its pages as it goes, as IO#read does). */
        if (active > 1)
            x.flags &= ~(unsigned)FASTSOCK_XFER_FRESH;
        /* Ruby's process-wide ban on huge pages would void the step's
         * fresh-memory advice: lifted for the step, as the thread path
         * lifts it for the whole String. */
        int lifted = (x.flags & FASTSOCK_XFER_FRESH) && !x.advise_stopped
                         ? fastsock_rb__thp_lift(x.count - x.done)
                         : 0;
        fastsock_result moved = fastsock_xfer_step(&x);
        fastsock_rb__thp_restore(lifted);
        c->total = before + x.done;
        if (x.want == 0) {
            c->rc = x.error < 0 ? x.error : (fastsock_result)x.done;
            break;
        }
        /* A step ends at the first short system call; by now the peer may
         * have sent more, and another step costs one system call where a
         * wait costs a round of the scheduler. So the steps go on while
         * they move data, up to the budget of one turn. */
        turn += moved > 0 ? (size_t)moved : 0;
        if (moved > 0 && turn < budget)
            continue;
        turn = 0;
        rc = wait_for(c, x.want);
        if (rc < 0) {
            c->rc = rc;
            break;
        }
    }
    active--;
    if (c->op == FASTSOCK_RB_RECVALL)
        fastsock_rb__add_cycles(x.cycles);
    fastsock_xfer_release(&x);
}

/* sendfile from a pipe (or anything else not seekable): the core's
 * progressive sendfile reads its file with pread, so this reads the pipe
 * itself, non-blocking, waiting for it through the scheduler as for the
 * socket, and sends from a bounce buffer. */
#define PIPE_BOUNCE ((size_t)256 << 10)

static fastsock_result pipe_send(fastsock_rb_call *c, char *buf)
{
    size_t at = 0, have = 0, since_wait = 0;
    VALUE pipe_io = Qnil;
    fastsock_result rc = 0;
    for (;;) {
        if (at == have) {
            size_t left = c->count == FASTSOCK_ALL ? PIPE_BOUNCE : c->count - c->total;
            if (left == 0)
                break;
            ssize_t got = read(c->file, buf, left < PIPE_BOUNCE ? left : PIPE_BOUNCE);
            if (got == 0)
                break; /* end of the pipe: what was there is sent */
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (NIL_P(pipe_io)) {
                    int fd = fcntl(c->file, F_DUPFD_CLOEXEC, 0);
                    if (fd < 0) {
                        rc = -errno;
                        break;
                    }
                    if ((rc = make_io(c, fd, O_RDONLY, &pipe_io)) < 0) {
                        close(fd);
                        break;
                    }
                }
                if ((rc = wait_on(c, pipe_io, FASTSOCK_WANT_READ)) < 0)
                    break;
                since_wait = 0;
                continue;
            }
            if (got < 0) {
                rc = -errno;
                break;
            }
            at = 0;
            have = (size_t)got;
        }
        fastsock_ctl ctl = FASTSOCK_CTL_INIT;
        ctl.timeout_ms = 0;
        rc = fastsock_send(c->wait_fd, buf, have, at, have - at, &ctl);
        at += ctl.moved;
        c->total += ctl.moved;
        since_wait += ctl.moved;
        if (rc == -EAGAIN || since_wait >= FASTSOCK_XFER_BUDGET) {
            /* Nothing more for now, or a budget's worth moved without a
             * wait: the other fibers get their turn (a ready socket's wait
             * comes straight back). */
            if ((rc = wait_for(c, FASTSOCK_WANT_WRITE)) < 0)
                break;
            since_wait = 0;
            continue;
        }
        if (rc < 0)
            break;
        rc = 0;
    }
    if (!NIL_P(pipe_io))
        rb_io_close(pipe_io);
    return rc < 0 ? rc : (fastsock_result)c->total;
}

static void pipe_sendfile(fastsock_rb_call *c)
{
    if (c->file_offset != 0) {
        c->rc = -ESPIPE; /* as the core: a pipe is read from where it is */
        return;
    }
    fastsock_result rc = open_own(c);
    if (rc < 0) {
        c->rc = rc;
        return;
    }
    char *buf = malloc(PIPE_BOUNCE);
    if (buf == NULL) {
        c->rc = -ENOMEM;
        return;
    }
    int flags = fcntl(c->file, F_GETFL);
    int set = flags >= 0 && !(flags & O_NONBLOCK) &&
              fcntl(c->file, F_SETFL, flags | O_NONBLOCK) == 0;
    c->rc = pipe_send(c, buf);
    if (set)
        fcntl(c->file, F_SETFL, flags);
    free(buf);
}

void fastsock_rb__sched_run(fastsock_rb_call *c)
{
    c->wait_fd = -1;
    c->wait_io = Qnil;
    c->receiving = NULL;
    if (c->op == FASTSOCK_RB_RECV || c->op == FASTSOCK_RB_SEND || c->op == FASTSOCK_RB_READUNTIL ||
        c->op == FASTSOCK_RB_SENDALLV || c->op == FASTSOCK_RB_RECVFILE)
        single(c);
    else if (c->op == FASTSOCK_RB_SENDFILE && !c->file_seekable)
        pipe_sendfile(c);
    else
        bulk(c);
    close_own(c);
}
