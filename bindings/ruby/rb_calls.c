/*
 * The transfers, modelled on IO.copy_stream in Ruby's io.c: the core runs
 * under rb_thread_call_without_gvl with RUBY_UBF_IO, whose unblocking
 * function signals the thread so that the system call returns EINTR (or,
 * once data moved, short). The interrupt hook then stops the core; with the
 * GVL back, Ruby runs its interrupts (Thread#raise, Thread#kill, Timeout,
 * Ctrl-C), which may leave by a long jump; if none does, the transfer
 * resumes from where it stopped, against the same deadline. Errors are
 * raised only with the GVL held, after the target String has been unlocked.
 *
 * The target or source String is locked (rb_str_locktmp) for the call and
 * its pointer taken again under the lock: converting a later argument can
 * run Ruby code that resizes it.
 */
#include "fastsock_rb.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <unistd.h>

#include <ruby/encoding.h>
#include <ruby/thread.h>

/* recv calls of this thread's last recvall, summed over its resumptions.
 * Ruby 3.1 threads are native threads, and the GVL-free part runs on the
 * calling thread, so the core's per-thread count can be summed here. */
static _Thread_local unsigned long cycles;

unsigned long fastsock_rb_recvall_cycles(void)
{
    return cycles;
}

void fastsock_rb__add_cycles(unsigned long n)
{
    cycles += n;
}

/* ---- one transfer, GVL released --------------------------------------------- */

void fastsock_rb__begin(fastsock_rb_call *c, fastsock_rb_op op, const char *name, int fd,
                        int64_t timeout_ms)
{
    memset(c, 0, sizeof *c);
    c->op = op;
    c->name = name;
    c->count_name = "count";
    c->fd = fd;
    c->file = -1;
    c->timeout_ms = timeout_ms;
    c->deadline = fastsock_deadline(c->timeout_ms);
    c->scheduler = Qnil;
    c->wait_fd = -1;
    c->wait_io = Qnil;
}

static void begin(fastsock_rb_call *c, fastsock_rb_op op, const char *name, int fd,
                  const fastsock_ctl *ctl)
{
    fastsock_rb__begin(c, op, name, fd, ctl->timeout_ms);
}

int fastsock_rb__thp_lift(size_t len)
{
    int lifted = 0;
#if defined(__linux__) && defined(PR_SET_THP_DISABLE)
    lifted = len >= ((size_t)2 << 20) && prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1 &&
             prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0) == 0;
#else
    (void)len;
#endif
    return lifted;
}

void fastsock_rb__thp_restore(int lifted)
{
#if defined(__linux__) && defined(PR_SET_THP_DISABLE)
    if (lifted)
        prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
#else
    (void)lifted;
#endif
}

/* Runs without the GVL: no Ruby calls, no allocation of Ruby objects. */
static int hook(void *arg)
{
    ((fastsock_rb_call *)arg)->hook_stopped = 1;
    return -EINTR;
}

static void *nogvl(void *arg)
{
    fastsock_rb_call *c = arg;
    fastsock_ctl *ctl = &c->ctl;
    switch (c->op) {
    case FASTSOCK_RB_RECVALL:
        if (c->advise_fresh) {
            /* Huge pages and pre-faulting, without the GVL: a fresh 256 MiB
             * String otherwise fills at a tenth of a hot one's speed. */
            int lifted = fastsock_rb__thp_lift(c->count);
            fastsock_advise_fresh(c->base + c->offset, c->count);
            fastsock_rb__thp_restore(lifted);
            c->advise_fresh = 0;
        }
        c->rc = fastsock_recvall(c->fd, c->base, c->len, c->offset, c->count, ctl);
        cycles += fastsock_recvall_cycles();
        break;
    case FASTSOCK_RB_RECV:
        c->rc = fastsock_recv(c->fd, c->base, c->len, c->offset, c->count, c->flags, ctl);
        break;
    case FASTSOCK_RB_SEND:
        c->rc = fastsock_send(c->fd, c->base, c->len, c->offset, c->count, ctl);
        break;
    case FASTSOCK_RB_SENDALL:
        c->rc = fastsock_sendall(c->fd, c->base, c->len, c->offset, c->count, ctl);
        break;
    case FASTSOCK_RB_SENDFILE:
        c->rc = fastsock_sendfile(c->fd, c->file, c->file_offset, c->count, ctl);
        break;
    case FASTSOCK_RB_SENDALLV:
        c->rc = fastsock_sendallv(c->fd, c->iov, c->iovcnt, ctl);
        break;
    case FASTSOCK_RB_RECVFILE:
        c->rc = fastsock_recvfile(c->fd, c->file, c->file_offset, c->count, ctl);
        break;
    case FASTSOCK_RB_READUNTIL:
        if (c->poll_first) {
            /* The try with the GVL held found the socket empty: asking
             * again at once (the core's recv before its poll) would only
             * answer EAGAIN once more. */
            struct pollfd p = { c->fd, POLLIN, 0 };
            int waited = poll(&p, 1, ctl->timeout_ms < 0 ? -1 : (int)ctl->timeout_ms);
            if (waited < 0 && errno == EINTR) {
                c->rc = hook(c);
                break;
            }
            if (waited == 0) {
                c->rc = -ETIMEDOUT;
                break;
            }
            c->poll_first = 0;
        }
        c->rc = fastsock_reader_until(c->reader, c->delim, c->dlen, c->max, &c->line, ctl);
        break;
    }
    /* Counted here, not after the return: Ruby may raise a pending
     * interrupt before rb_thread_call_without_gvl returns. */
    c->total += ctl->moved;
    return NULL;
}

/* sendallv's try under a scheduler: at most a budget's worth of the
 * iovecs, so that one transfer does not hold the loop for the whole of a
 * large one (the last iovec shortened for the call, then put back). */
static fastsock_result sendallv_try(fastsock_rb_call *c, fastsock_ctl *now)
{
    size_t sum = 0, k = 0, cnt = c->iovcnt, saved = 0;
    while (k < c->iovcnt && sum + c->iov[k].iov_len <= FASTSOCK_XFER_BUDGET)
        sum += c->iov[k++].iov_len;
    int cut = k < c->iovcnt;
    if (cut) {
        saved = c->iov[k].iov_len;
        c->iov[k].iov_len = FASTSOCK_XFER_BUDGET - sum;
        cnt = k + 1;
    }
    fastsock_result rc = fastsock_sendallv(c->fd, c->iov, cnt, now);
    if (cut)
        c->iov[k].iov_len = saved;
    fastsock_rb__iov_advance(c, now->moved);
    /* A budget's worth went out and more is left: the scheduler's turn
     * (a writable socket's wait comes straight back). */
    return rc >= 0 && c->iovcnt > 0 ? -EAGAIN : rc;
}

/* recvfile's try under a scheduler, a budget's worth at most. */
static fastsock_result recvfile_try(fastsock_rb_call *c, fastsock_ctl *now)
{
    size_t want = c->count < FASTSOCK_XFER_BUDGET ? c->count : FASTSOCK_XFER_BUDGET;
    fastsock_result rc = fastsock_recvfile(c->fd, c->file, c->file_offset, want, now);
    if (!c->file_append)
        c->file_offset += (int64_t)now->moved;
    c->count -= now->moved;
    return rc >= 0 && c->count > 0 ? -EAGAIN : rc;
}

fastsock_result fastsock_rb__try_now(fastsock_rb_call *c)
{
    fastsock_ctl now = FASTSOCK_CTL_INIT;
    now.timeout_ms = 0;
    fastsock_result rc;
    switch (c->op) {
    case FASTSOCK_RB_SENDALLV:
        rc = sendallv_try(c, &now);
        break;
    case FASTSOCK_RB_RECVFILE:
        rc = recvfile_try(c, &now);
        break;
    case FASTSOCK_RB_RECV:
        rc = fastsock_recv(c->fd, c->base, c->len, c->offset, c->count, c->flags, &now);
        break;
    case FASTSOCK_RB_SEND:
        rc = fastsock_send(c->fd, c->base, c->len, c->offset, c->count, &now);
        break;
    default: /* FASTSOCK_RB_READUNTIL: what came stays in the look-ahead */
        c->reader->fd = c->fd;
        rc = fastsock_reader_until(c->reader, c->delim, c->dlen, c->max, &c->line, &now);
        break;
    }
    c->total += now.moved;
    return rc;
}

/* Runs the core until it finishes or fails for a reason of its own. Ruby's
 * interrupts run in between, with the GVL held, and may leave by a long jump. */
void fastsock_rb__run(fastsock_rb_call *c)
{
    int single = c->op == FASTSOCK_RB_RECV || c->op == FASTSOCK_RB_SEND ||
                 c->op == FASTSOCK_RB_READUNTIL;
    unsigned long tried = 0; /* recvall's try, while no recvall has counted it */
    /* A receive while a fiber's bulk receive waits on the same socket
     * would take bytes from the middle of its stream. */
    if ((c->op == FASTSOCK_RB_RECV || c->op == FASTSOCK_RB_RECVALL ||
         c->op == FASTSOCK_RB_READUNTIL || c->op == FASTSOCK_RB_RECVFILE) &&
        fastsock_rb__receive_busy(c->fd)) {
        c->rc = FASTSOCK_RB_EBUSY;
        return;
    }
    if (single) {
        /* One non-blocking try first, GVL held: a message that is already
         * there (or room to send it, or a line in the look-ahead) costs
         * neither releasing the GVL nor asking for a scheduler. */
        c->rc = fastsock_rb__try_now(c);
        if (c->rc != -EAGAIN || c->timeout_ms == 0)
            return;
        c->poll_first = c->op == FASTSOCK_RB_READUNTIL;
    } else if (c->op == FASTSOCK_RB_RECVALL || c->op == FASTSOCK_RB_SENDALL) {
        /* The same for a small recvall whose bytes are there (a length
         * prefix, a header) or a small sendall the socket has room for: the
         * core's own first try would make the same system call after the
         * GVL's release, which costs more than the call. */
        int receiving = c->op == FASTSOCK_RB_RECVALL;
        fastsock_ctl now = FASTSOCK_CTL_INIT;
        fastsock_result rc = receiving
            ? fastsock_recvall_try(c->fd, c->base, c->len, c->offset, c->count, &now)
            : fastsock_sendall_try(c->fd, c->base, c->len, c->offset, c->count, &now);
        c->total += now.moved;
        c->offset += now.moved;
        c->count -= now.moved;
        if (rc != 0) {
            if (receiving)
                cycles += fastsock_recvall_cycles();
            c->rc = rc < 0 ? rc : (fastsock_result)c->total;
            return;
        }
        /* A fastsock_recvall finishing it counts the try's recv itself. */
        if (receiving)
            tried = fastsock_recvall_cycles();
    }
    /* A call that never waits has nothing to ask a scheduler. */
    if (c->timeout_ms != 0)
        c->scheduler = fastsock_rb__scheduler();
    if (!NIL_P(c->scheduler)) {
        cycles += tried; /* the scheduler's steps count only their own */
        fastsock_rb__sched_run(c);
        return;
    }
    for (;;) {
        memset(&c->ctl, 0, sizeof c->ctl);
        c->ctl.on_interrupt = hook;
        c->ctl.interrupt_arg = c;
        c->ctl.timeout_ms = c->timeout_ms;
        if (c->timeout_ms > 0) {
            int64_t left = fastsock_remaining_ms(c->deadline);
            if (left == 0) {
                c->rc = -ETIMEDOUT;
                return;
            }
            c->ctl.timeout_ms = left;
        }
        c->hook_stopped = 0;
        if (c->reader != NULL)
            c->reader->fd = c->fd;
        rb_thread_call_without_gvl(nogvl, c, RUBY_UBF_IO, NULL);
        if (!(c->rc == -EINTR && c->hook_stopped))
            return;
        rb_thread_check_ints();
        size_t moved = c->ctl.moved;
        switch (c->op) {
        case FASTSOCK_RB_RECV:
        case FASTSOCK_RB_SEND:
            /* Single-shot calls stop only before anything moved. */
            if (moved > 0) {
                c->rc = (fastsock_result)moved;
                return;
            }
            break;
        case FASTSOCK_RB_RECVALL:
        case FASTSOCK_RB_SENDALL:
            c->offset += moved;
            c->count -= moved;
            break;
        case FASTSOCK_RB_SENDFILE:
            if (c->file_seekable)
                c->file_offset += (int64_t)moved;
            if (c->count != FASTSOCK_ALL)
                c->count -= moved;
            break;
        case FASTSOCK_RB_SENDALLV:
            fastsock_rb__iov_advance(c, moved);
            break;
        case FASTSOCK_RB_RECVFILE:
            if (!c->file_append)
                c->file_offset += (int64_t)moved;
            c->count -= moved;
            break;
        case FASTSOCK_RB_READUNTIL:
            break; /* nothing was handed out; what came stays in the look-ahead */
        }
    }
}

static void run(fastsock_rb_call *c)
{
    fastsock_rb__run(c);
}

static fastsock_result check_range(size_t len, size_t offset, size_t count, size_t *n)
{
    if (offset > len)
        return FASTSOCK_EOFFSET;
    if (count == FASTSOCK_ALL)
        count = len - offset;
    else if (count > len - offset)
        return FASTSOCK_ECOUNT;
    *n = count;
    return 0;
}

/* ---- the String under the lock ------------------------------------------------ */

/* rb_str_locktmp makes every attempt to resize or free the String's bytes
 * raise while the GVL is released; RB_GC_GUARD in the callers keeps the
 * object on the machine stack, which also pins it against compaction. The
 * unlock runs under rb_ensure: Thread#raise and Thread#kill leave by a long
 * jump, and a String left locked could never be written again. */
static VALUE unlock(VALUE str)
{
    rb_str_unlocktmp(str);
    return Qnil;
}


/* A short String keeps its bytes inside the object, in the GC's heap pages.
 * GC.compact, which may run in another thread while the GVL is released,
 * moves objects and mprotects the pages it moved them from (Ruby 3.0 and
 * 3.1 use that as a read barrier), so a system call writing or reading there
 * fails with EFAULT, or hits an object's new tenant. Transfers therefore use
 * malloc'd bytes only. Embedded Strings are at most 640 bytes in every Ruby
 * (RSTRING_EMBED_LEN_MAX, 23, before variable-width allocation). */
#define EMBED_MAX 640

static int embedded(VALUE str)
{
    return !RB_FL_TEST_RAW(str, RSTRING_NOEMBED);
}

/* Moves a target's bytes out of the object: capacity beyond any embedded size. */
void fastsock_rb__unembed(VALUE str)
{
    if (embedded(str))
        rb_str_modify_expand(str, EMBED_MAX + 1);
}

static VALUE lock(VALUE str)
{
    return rb_str_locktmp(str);
}

typedef struct recv_job {
    fastsock_rb_call *call;
    VALUE str;
    VALUE io;
    fastsock_reader *reader; /* a Reader's recvall: its look-ahead comes first */
    int fresh;               /* recvall's own String: bytes written past its length */
    int single;              /* recv_into */
    size_t n;                /* bytes asked for */
    size_t len0;             /* *_into: the target's bytesize before the call */
    size_t offset0;          /* *_into: where the bytes go */
    size_t end;              /* *_into: offset0 + n, beyond len0 when it grows */
} recv_job;

/* Reserves room for end (< LONG_MAX) bytes, in malloc'd memory whatever the
 * size: end beyond the bytesize is the target growing, as IO#read(len,
 * outbuf) grows its outbuf. The bytesize itself stays, so no unwritten byte
 * shows. Raises before any byte moves: NoMemoryError, or RuntimeError for a
 * String another call holds locked. */
void fastsock_rb__reserve(VALUE str, size_t end)
{
    size_t len = (size_t)RSTRING_LEN(str);
    size_t want = end > len ? end : len;
    if (!embedded(str) && rb_str_capacity(str) >= want)
        return;
    if (want <= EMBED_MAX)
        want = EMBED_MAX + 1; /* out of the object, see above */
    rb_str_modify_expand(str, (long)(want - len));
}

/* rb_ensure's second half for the *_into calls: unlocks the target and gives
 * it its new bytesize, max(len0, offset0 + bytes received), also after an
 * error, an interrupt or Thread#kill. Growth never leaves a gap (offset0 <=
 * len0), so every byte up to that size was either there or written. */
static VALUE unlock_written(VALUE arg)
{
    recv_job *j = (recv_job *)arg;
    VALUE str = j->str;
    rb_str_unlocktmp(str);
    if (j->end > j->len0) {
        size_t written = j->offset0 + j->call->total;
        long len = (long)(written > j->len0 ? written : j->len0);
        rb_str_set_len(str, len);
        /* Gives back the capacity reserved for bytes that never came (after
         * set_len: rb_str_resize keeps only the bytes below the old length
         * when it moves a short String back into its object). */
        rb_str_resize(str, len);
    }
    /* The bytes changed behind Ruby's back: a UTF-8 target's cached
     * "valid/7-bit" knowledge is stale. */
    ENC_CODERANGE_CLEAR(str);
    return Qnil;
}

static VALUE recv_body(VALUE arg)
{
    recv_job *j = (recv_job *)arg;
    fastsock_rb_call *c = j->call;
    c->base = RSTRING_PTR(j->str);
    c->len = (size_t)RSTRING_LEN(j->str);
    if (j->fresh)
        c->len = j->n;
    else if (j->end > c->len)
        c->len = j->end; /* reserved by reserve, nothing ran since */
    size_t n;
    fastsock_result rc = check_range(c->len, c->offset, c->count, &n);
    if (rc < 0) {
        c->rc = rc;
        return Qnil;
    }
    j->n = n;
    c->count = n;
    size_t ahead = j->reader != NULL ? fastsock_reader_buffered(j->reader) : 0;
    if (n > 0 && ahead > 0) {
        /* What a Reader read past its last line: the socket was checked
         * when the Reader was made. */
        size_t k = ahead < n ? ahead : n;
        memcpy(c->base + c->offset, j->reader->buf + j->reader->start, k);
        j->reader->start += k;
        c->total = k;
        c->offset += k;
        c->count -= k;
        if (c->count == 0) {
            c->rc = (fastsock_result)k;
            return Qnil;
        }
    } else if (n > 0 && j->reader == NULL && fastsock_rb__buffered(j->io) > 0) {
        fastsock_rb__require_socket(c->fd, c->name);
        size_t k = fastsock_rb__take_buffered(j->io, c->base + c->offset, n);
        c->total = k;
        c->offset += k;
        c->count -= k;
        if (j->single || c->count == 0) {
            /* A single receive is served from what Ruby already holds, as
             * IO#readpartial is. */
            c->rc = (fastsock_result)k;
            return Qnil;
        }
    } else if (n == 0 && !j->single) {
        c->rc = 0;
        return Qnil;
    }
    c->advise_fresh = j->fresh;
    run(c);
    return Qnil;
}

static VALUE recvall(fastsock_reader *r, const char *name, VALUE sockv, int fd, size_t n,
                     fastsock_ctl *ctl)
{
    fastsock_rb_call c;
    begin(&c, FASTSOCK_RB_RECVALL, name, fd, ctl);
    cycles = 0;
    VALUE io = fastsock_rb__io_of(sockv, "sock");
    (void)fastsock_rb__buffered(io); /* refuses decoded characters before allocating */
    /* One allocation at the final size, filled in place. */
    VALUE str = rb_str_buf_new((long)n);
    fastsock_rb__unembed(str); /* Ruby >= 3.2 embeds small buffers */
    recv_job j = { .call = &c, .str = str, .io = io, .reader = r, .fresh = 1, .n = n };
    c.count = n;
    rb_str_locktmp(str);
    rb_ensure(recv_body, (VALUE)&j, unlock, str);
    if (c.rc < 0) {
        /* Give back the capacity the missing bytes would have used. The
         * length goes first: a resize into embedded storage copies only
         * the bytes the String says it holds. */
        rb_str_set_len(str, (long)c.total);
        rb_str_resize(str, (long)c.total);
        fastsock_rb__raise(&c, c.rc, str, n);
    }
    rb_str_set_len(str, (long)n);
    RB_GC_GUARD(str);
    return str;
}

VALUE fastsock_rb_recvall(VALUE sockv, int fd, size_t n, fastsock_ctl *ctl)
{
    return recvall(NULL, "fastsock.recvall", sockv, fd, n, ctl);
}

VALUE fastsock_rb__reader_recvall(fastsock_reader *r, const char *name, VALUE sockv, int fd,
                                  size_t n, fastsock_ctl *ctl)
{
    return recvall(r, name, sockv, fd, n, ctl);
}

static fastsock_result recv_into(fastsock_reader *r, fastsock_rb_op op, const char *name,
                                 VALUE sockv, VALUE strv, int fd, size_t offset, size_t count,
                                 int flags, fastsock_ctl *ctl)
{
    fastsock_rb_call c;
    begin(&c, op, name, fd, ctl);
    c.count_name = "n";
    c.offset = offset;
    c.count = count;
    c.flags = flags;
    if (op == FASTSOCK_RB_RECVALL)
        cycles = 0;
    VALUE io = fastsock_rb__io_of(sockv, "sock");
    (void)fastsock_rb__buffered(io);
    rb_str_modify(strv); /* FrozenError; a shared String gets its own bytes */
    recv_job j = { .call = &c, .str = strv, .io = io, .reader = r,
                               .single = op == FASTSOCK_RB_RECV,
                               .len0 = (size_t)RSTRING_LEN(strv), .offset0 = offset };
    /* Growing would leave the bytes [len0, offset) unwritten. */
    c.len = j.len0;
    if (offset > j.len0)
        fastsock_rb__raise(&c, FASTSOCK_EOFFSET, Qnil, 0);
    if (count == FASTSOCK_ALL)
        count = j.len0 - offset;
    /* A String is shorter than LONG_MAX (rb_str_modify_expand's "string size
     * too big"); recvall calls any n beyond that an allocation that failed,
     * and so does this. offset <= len0 < LONG_MAX: no overflow. */
    if (count >= (size_t)LONG_MAX - offset)
        rb_raise(rb_eNoMemError, "%s: failed to allocate memory (offset %zu + n %zu bytes)",
                 name, offset, count);
    c.count = count;
    j.end = offset + count;
    fastsock_rb__reserve(strv, j.end);
    rb_str_locktmp(strv);
    rb_ensure(recv_body, (VALUE)&j, unlock_written, (VALUE)&j);
    RB_GC_GUARD(strv);
    if (c.rc < 0)
        fastsock_rb__raise(&c, c.rc, Qnil, j.n);
    if (op == FASTSOCK_RB_RECV && c.rc == 0 && j.n > 0)
        return FASTSOCK_EOF; /* end of stream: nil, as IO#read(n, buf) */
    return op == FASTSOCK_RB_RECV ? c.rc : (fastsock_result)c.total;
}

fastsock_result fastsock_rb_recv_into(fastsock_rb_op op, const char *name, VALUE sockv,
                                      VALUE strv, int fd, size_t offset, size_t count,
                                      int flags, fastsock_ctl *ctl)
{
    return recv_into(NULL, op, name, sockv, strv, fd, offset, count, flags, ctl);
}

fastsock_result fastsock_rb__reader_recvall_into(fastsock_reader *r, const char *name,
                                                 VALUE sockv, VALUE strv, int fd, size_t offset,
                                                 size_t count, fastsock_ctl *ctl)
{
    return recv_into(r, FASTSOCK_RB_RECVALL, name, sockv, strv, fd, offset, count, 0, ctl);
}

typedef struct send_job {
    fastsock_rb_call *call;
    VALUE str;
    char small[EMBED_MAX]; /* an embedded String's bytes, copied */
    int use_small;
} send_job;

static VALUE send_body(VALUE arg)
{
    send_job *j = (send_job *)arg;
    fastsock_rb_call *c = j->call;
    c->base = j->use_small ? j->small : RSTRING_PTR(j->str);
    c->len = (size_t)RSTRING_LEN(j->str);
    size_t n;
    fastsock_result rc = check_range(c->len, c->offset, c->count, &n);
    if (rc < 0) {
        c->rc = rc;
        return Qnil;
    }
    c->count = n;
    run(c);
    return Qnil;
}

fastsock_result fastsock_rb_send(fastsock_rb_op op, const char *name, VALUE strv, int fd,
                                 size_t offset, size_t count, fastsock_ctl *ctl)
{
    fastsock_rb_call c;
    begin(&c, op, name, fd, ctl);
    c.offset = offset;
    c.count = count;
    send_job j;
    j.call = &c;
    j.str = strv;
    j.use_small = 0;
    int locked = 0;
    if (embedded(strv) && RSTRING_LEN(strv) <= EMBED_MAX) {
        /* A few bytes: copied, so neither a lock nor the GC matters. */
        memcpy(j.small, RSTRING_PTR(strv), (size_t)RSTRING_LEN(strv));
        j.use_small = 1;
    } else if (!OBJ_FROZEN(strv)) {
        /* A frozen String's bytes can't change under us. Otherwise lock it;
         * if another thread holds the lock (sending the same String), send
         * a frozen snapshot, which shares the bytes instead of copying them. */
        int state = 0;
        rb_protect(lock, strv, &state);
        if (state == 0) {
            locked = 1;
        } else {
            rb_set_errinfo(Qnil);
            j.str = rb_str_new_frozen(strv);
        }
    }
    if (locked)
        rb_ensure(send_body, (VALUE)&j, unlock, strv);
    else
        send_body((VALUE)&j);
    RB_GC_GUARD(strv);
    RB_GC_GUARD(j.str);
    if (c.rc < 0)
        fastsock_rb__raise(&c, c.rc, Qnil, 0);
    return op == FASTSOCK_RB_SEND ? c.rc : (fastsock_result)c.total;
}

static VALUE sendfile_body(VALUE arg)
{
    run(((fastsock_rb_file_job *)arg)->call);
    return Qnil;
}

void fastsock_rb__file_blocking(fastsock_rb_file_job *j)
{
    fastsock_rb_call *c = j->call;
    if (c->file_seekable)
        return;
    int fl = fcntl(c->file, F_GETFL);
    if (fl >= 0 && (fl & O_NONBLOCK) && fcntl(c->file, F_SETFL, fl & ~O_NONBLOCK) == 0) {
        j->restore_flags = 1;
        j->file_flags = fl;
    }
}

VALUE fastsock_rb__file_position(VALUE arg)
{
    fastsock_rb_file_job *j = (fastsock_rb_file_job *)arg;
    fastsock_rb_call *c = j->call;
    if (j->restore_flags)
        fcntl(c->file, F_SETFL, j->file_flags);
    if (!c->file_seekable)
        return Qnil;
    off_t pos = c->file_append ? lseek(c->file, 0, SEEK_CUR) : (off_t)(j->start + (int64_t)c->total);
    if (pos < 0)
        return Qnil;
    if (NIL_P(j->file_io))
        lseek(c->file, pos, SEEK_SET);
    else
        rb_funcall(j->file_io, rb_intern("seek"), 1, LL2NUM((long long)pos));
    return Qnil;
}

fastsock_result fastsock_rb_sendfile(VALUE filev, int fd, int file,
                                     int64_t offset, size_t count, fastsock_ctl *ctl)
{
    fastsock_rb_call c;
    begin(&c, FASTSOCK_RB_SENDFILE, "fastsock.sendfile", fd, ctl);
    c.file = file;
    c.file_offset = offset;
    c.count = count;
    struct stat st;
    if (fstat(file, &st) < 0)
        fastsock_rb__raise(&c, -errno, Qnil, 0);
    c.file_seekable = S_ISREG(st.st_mode) || S_ISBLK(st.st_mode);
    fastsock_rb_file_job j = { &c, fastsock_rb__io_of(filev, "file"), offset, 0, 0 };
    fastsock_rb__file_blocking(&j);
    rb_ensure(sendfile_body, (VALUE)&j, fastsock_rb__file_position, (VALUE)&j);
    if (c.rc < 0)
        fastsock_rb__raise(&c, c.rc, Qnil, 0);
    return (fastsock_result)c.total;
}


void fastsock_rb_init(void)
{
    fastsock_rb__errors_init();
    fastsock_rb__xfer_init(rb_path2class("Fastsock"));
    fastsock_rb__protocol_init(rb_path2class("Fastsock"), rb_path2class("Fastsock::Native"));
}
