/*
 * Ruby entry file: the typemaps fastsock.i asks for, recvall (which allocates
 * a Ruby String), and what SWIG has no feature for: running each transfer
 * with the GVL released. lib/fastsock.rb is the public face; this extension
 * (fastsock/native.so, module Fastsock::Native) takes positional arguments
 * in fastsock.i's order and expects that file to have defined the
 * exception classes.
 *
 * The model is IO.copy_stream in Ruby's io.c: the core runs under
 * rb_thread_call_without_gvl with RUBY_UBF_IO, whose unblocking function
 * signals the thread so that the system call returns EINTR (or, once data
 * moved, short). The interrupt hook then stops the core; with the GVL back,
 * Ruby runs its interrupts (Thread#raise, Thread#kill, Timeout, Ctrl-C), which
 * may leave by a long jump; if none does, the transfer resumes from where
 * it stopped, against the same deadline. Errors are raised only with the GVL
 * held, after the target String has been unlocked.
 *
 * Each blocking function's SWIG action is replaced (%feature("action")) by a
 * call into the code below, which gets the Ruby objects from the wrapper's
 * argv: converting a later argument (timeout.to_f, count.to_int) can run
 * Ruby code that resizes a String, so pointers are taken again under the lock.
 */
%module "fastsock::native"

%{
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <time.h>
#include <unistd.h>

#include <ruby/encoding.h>
#include <ruby/io.h>
#include <ruby/thread.h>

#include "fastsock.h"

/* recv calls of this thread's last recvall, summed over its resumptions.
 * Ruby 3.1 threads are native threads, and the GVL-free part runs on the
 * calling thread, so the core's per-thread count can be summed here. */
static _Thread_local unsigned long fastsock_rb__cycles;

/* Defined by lib/fastsock.rb before it loads this extension. */
static VALUE fastsock_rb__eIncomplete = Qnil;
static VALUE fastsock_rb__eTimeout = Qnil;
static VALUE fastsock_rb__mTransfer = Qnil;

/* ---- arguments ------------------------------------------------------------- */

static int fastsock_rb__is_ssl_socket(VALUE v)
{
    static const char *const path[] = { "OpenSSL", "SSL", "SSLSocket" };
    VALUE k = rb_cObject;
    for (size_t i = 0; i < sizeof path / sizeof path[0]; i++) {
        ID id = rb_intern(path[i]);
        if (!rb_const_defined_at(k, id))
            return 0; /* openssl not loaded: v can't be one */
        k = rb_const_get_at(k, id);
    }
    return RTEST(rb_obj_is_kind_of(v, k));
}

/* The IO behind a socket or file argument, or Qnil for an Integer fd.
 * An SSLSocket answers to_io with its TCP socket, so it is refused first:
 * raw bytes would bypass the encryption. */
static VALUE fastsock_rb__io_of(VALUE v, const char *what)
{
    if (RB_TYPE_P(v, T_FILE))
        return v;
    if (RB_INTEGER_TYPE_P(v))
        return Qnil;
    if (fastsock_rb__is_ssl_socket(v))
        rb_raise(rb_eTypeError,
                 "fastsock: %s is an OpenSSL::SSL::SSLSocket; raw socket I/O would bypass TLS",
                 what);
    VALUE io = rb_check_convert_type(v, T_FILE, "IO", "to_io");
    if (NIL_P(io))
        rb_raise(rb_eTypeError, "fastsock: %s must be an IO or an Integer fd, not %" PRIsVALUE,
                 what, rb_obj_class(v));
    return io;
}

/* The fd of a socket or file argument. Bytes Ruby still holds in the IO's
 * write buffer go out first, as IO#read does before reading. A closed IO
 * raises IOError here. */
static int fastsock_rb__fd_of(VALUE v, const char *what)
{
    VALUE io = fastsock_rb__io_of(v, what);
    if (NIL_P(io))
        return NUM2INT(v);
    rb_io_t *fptr;
    GetOpenFile(io, fptr);
    if (fptr->wbuf.len > 0) {
        rb_io_flush(io);
        GetOpenFile(io, fptr);
    }
    return fptr->fd;
}

/* Bytes Ruby's IO has read ahead (after gets) and not yet handed out: they
 * come before anything the socket still holds, so a receive takes them first. */
static size_t fastsock_rb__buffered(VALUE io)
{
    if (NIL_P(io))
        return 0;
    rb_io_t *fptr;
    GetOpenFile(io, fptr);
    if (fptr->cbuf.len > 0)
        rb_raise(rb_eIOError,
                 "fastsock: the IO holds characters decoded for its internal encoding; read them first");
    return fptr->rbuf.len > 0 ? (size_t)fptr->rbuf.len : 0;
}

/* Moves up to want read-ahead bytes of io into dst, as IO#readpartial would. */
static size_t fastsock_rb__take_buffered(VALUE io, char *dst, size_t want)
{
    if (NIL_P(io) || want == 0)
        return 0;
    rb_io_t *fptr;
    GetOpenFile(io, fptr);
    size_t have = fptr->rbuf.len > 0 ? (size_t)fptr->rbuf.len : 0;
    size_t k = have < want ? have : want;
    if (k == 0)
        return 0;
    memcpy(dst, fptr->rbuf.ptr + fptr->rbuf.off, k);
    fptr->rbuf.off += (int)k;
    fptr->rbuf.len -= (int)k;
    return k;
}

/* Taking read-ahead bytes commits the call, so a non-socket is refused
 * before that, as the core would refuse it before any byte moves. */
static void fastsock_rb__require_socket(int fd, const char *op)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        rb_syserr_fail(errno, op);
    if (!S_ISSOCK(st.st_mode))
        rb_syserr_fail(ENOTSOCK, op);
}

static size_t fastsock_rb__size(VALUE v, const char *what, int nil_is_all)
{
    if (NIL_P(v) && nil_is_all)
        return FASTSOCK_ALL;
    v = rb_to_int(v); /* TypeError for nil, Strings ... */
    if (RB_FIXNUM_P(v)) {
        long l = FIX2LONG(v);
        if (l < 0)
            rb_raise(rb_eArgError, "fastsock: %s must not be negative (%ld)", what, l);
        return (size_t)l;
    }
    if (RTEST(rb_funcall(v, '<', 1, INT2FIX(0))))
        rb_raise(rb_eArgError, "fastsock: %s must not be negative", what);
    /* SIZE_MAX itself is FASTSOCK_ALL; no buffer is that long either. */
    if (RTEST(rb_funcall(v, '>', 1, SIZET2NUM(SIZE_MAX - 1))))
        rb_raise(rb_eArgError, "fastsock: %s is larger than any buffer", what);
    return NUM2SIZET(v);
}

/* recvall's n: a size a String can have. Beyond that, what rb_str_buf_new
 * raises for a size it can't allocate: NoMemoryError, not a RangeError. */
static size_t fastsock_rb__nbytes(VALUE v)
{
    v = rb_to_int(v);
    if (RTEST(rb_funcall(v, '<', 1, INT2FIX(0))))
        rb_raise(rb_eArgError, "fastsock.recvall: n must not be negative");
    if (!RB_FIXNUM_P(v) && RTEST(rb_funcall(v, '>', 1, LONG2NUM(LONG_MAX - 1))))
        rb_raise(rb_eNoMemError, "fastsock.recvall: failed to allocate memory (n = %" PRIsVALUE ")", v);
    return NUM2SIZET(v);
}

/* nil: no limit (-1); 0: never wait; else whole milliseconds, rounded up. */
static int64_t fastsock_rb__timeout_ms(VALUE v)
{
    if (NIL_P(v))
        return -1;
    double t = NUM2DBL(v);
    if (isnan(t) || t < 0)
        rb_raise(rb_eArgError, "fastsock: timeout must be nil or >= 0 seconds");
    if (t == 0)
        return 0;
    double ms = ceil(t * 1000.0);
    if (ms >= (double)(INT64_MAX / 4))
        return -1; /* beyond any deadline a clock can hold: no limit */
    return (int64_t)ms;
}

/* ---- one transfer, GVL released --------------------------------------------- */

typedef enum {
    FASTSOCK_RB_RECVALL,
    FASTSOCK_RB_RECV,
    FASTSOCK_RB_SEND,
    FASTSOCK_RB_SENDALL,
    FASTSOCK_RB_SENDFILE
} fastsock_rb_op;

typedef struct fastsock_rb_call {
    fastsock_rb_op op;
    const char *name;        /* "fastsock.recvall": prefixes every message */
    const char *count_name;  /* what the caller calls the count: n or count */
    int fd;
    char *base;              /* the String's bytes, taken under the lock */
    size_t len;
    size_t offset, count;    /* what is still to move */
    int file;                /* sendfile */
    int64_t file_offset;
    int file_seekable;
    int flags;               /* recv(2) flags */
    int64_t timeout_ms;      /* as given: < 0 none, 0 never wait */
    int64_t deadline_ms;
    fastsock_ctl ctl;
    fastsock_result rc;
    size_t total;            /* moved over all resumptions, buffered bytes included */
    int hook_stopped;
    int advise_fresh;        /* recvall's own new String: fastsock_advise_fresh it first */
} fastsock_rb_call;

static int64_t fastsock_rb__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fastsock_rb__begin(fastsock_rb_call *c, fastsock_rb_op op, const char *name,
                               int fd, const fastsock_ctl *ctl)
{
    memset(c, 0, sizeof *c);
    c->op = op;
    c->name = name;
    c->count_name = "count";
    c->fd = fd;
    c->file = -1;
    c->timeout_ms = ctl->timeout_ms;
    if (c->timeout_ms > 0)
        c->deadline_ms = fastsock_rb__now_ms() + c->timeout_ms;
}

/* Runs without the GVL: no Ruby calls, no allocation of Ruby objects. */
static int fastsock_rb__hook(void *arg)
{
    ((fastsock_rb_call *)arg)->hook_stopped = 1;
    return -EINTR;
}

static void *fastsock_rb__nogvl(void *arg)
{
    fastsock_rb_call *c = arg;
    fastsock_ctl *ctl = &c->ctl;
    switch (c->op) {
    case FASTSOCK_RB_RECVALL:
        if (c->advise_fresh) {
            /* Huge pages and pre-faulting, without the GVL: a fresh 256 MiB
             * String otherwise fills at a tenth of a hot one's speed. Ruby
             * turns huge pages off for the whole process at start-up
             * (prctl, for copy-on-write after fork), which voids the advice:
             * the ban is lifted only while this String's pages fault in. */
            int thp_banned = 0;
#if defined(__linux__) && defined(PR_SET_THP_DISABLE)
            thp_banned = c->count >= ((size_t)2 << 20) &&
                         prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1 &&
                         prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0) == 0;
#endif
            fastsock_advise_fresh(c->base + c->offset, c->count);
#if defined(__linux__) && defined(PR_SET_THP_DISABLE)
            if (thp_banned)
                prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
#endif
            c->advise_fresh = 0;
        }
        c->rc = fastsock_recvall(c->fd, c->base, c->len, c->offset, c->count, ctl);
        fastsock_rb__cycles += fastsock_recvall_cycles();
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
    }
    /* Counted here, not after the return: Ruby may raise a pending
     * interrupt before rb_thread_call_without_gvl returns. */
    c->total += ctl->moved;
    return NULL;
}

/* Runs the core until it finishes or fails for a reason of its own. Ruby's
 * interrupts run in between, with the GVL held, and may leave by a long jump. */
static void fastsock_rb__run(fastsock_rb_call *c)
{
    for (;;) {
        memset(&c->ctl, 0, sizeof c->ctl);
        c->ctl.on_interrupt = fastsock_rb__hook;
        c->ctl.interrupt_arg = c;
        c->ctl.timeout_ms = c->timeout_ms;
        if (c->timeout_ms > 0) {
            int64_t left = c->deadline_ms - fastsock_rb__now_ms();
            if (left <= 0) {
                c->rc = -ETIMEDOUT;
                return;
            }
            c->ctl.timeout_ms = left;
        }
        c->hook_stopped = 0;
        rb_thread_call_without_gvl(fastsock_rb__nogvl, c, RUBY_UBF_IO, NULL);
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
        }
    }
}

/* ---- errors --------------------------------------------------------------- */

static fastsock_result fastsock_rb__check_range(size_t len, size_t offset, size_t count,
                                                size_t *n)
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

static void fastsock_rb__set_transfer(VALUE exc, size_t nbytes, VALUE partial)
{
    if (!rb_obj_is_kind_of(exc, fastsock_rb__mTransfer))
        rb_extend_object(exc, fastsock_rb__mTransfer);
    rb_ivar_set(exc, rb_intern("@nbytes"), SIZET2NUM(nbytes));
    rb_ivar_set(exc, rb_intern("@partial"), partial);
}

/* Raises the error of a failed call: rc < 0, c->total bytes moved, partial
 * the received bytes (recvall) or nil. GVL held, no String locked. */
static void fastsock_rb__raise(const fastsock_rb_call *c, fastsock_result rc, VALUE partial,
                               size_t expected)
{
    VALUE exc, msg;
    int receiving = c->op == FASTSOCK_RB_RECVALL || c->op == FASTSOCK_RB_RECV;
    switch (rc) {
    case FASTSOCK_EOFFSET:
        if (c->op == FASTSOCK_RB_SENDFILE)
            rb_raise(rb_eArgError, "%s: offset must not be negative", c->name);
        rb_raise(rb_eArgError, "%s: offset %zu lies beyond the %zu-byte String", c->name,
                 c->offset, c->len);
    case FASTSOCK_ECOUNT:
        rb_raise(rb_eArgError, "%s: offset %zu + %s %zu lies beyond the %zu-byte String",
                 c->name, c->offset, c->count_name, c->count, c->len);
    case FASTSOCK_EOF:
        msg = rb_sprintf("%s: end of stream after %zu of %zu bytes", c->name, c->total, expected);
        exc = rb_exc_new_str(fastsock_rb__eIncomplete, msg);
        rb_ivar_set(exc, rb_intern("@expected"), SIZET2NUM(expected));
        break;
    case -ETIMEDOUT:
        msg = rb_sprintf("%s: timed out after %zu bytes", c->name, c->total);
        exc = rb_exc_new_str(fastsock_rb__eTimeout, msg);
        break;
    case -EAGAIN: {
        /* What read_nonblock and write_nonblock raise: IO::EAGAINWait* are
         * Errno::EAGAIN with IO::WaitReadable / IO::WaitWritable. */
        VALUE klass = rb_const_get(rb_cIO, rb_intern(receiving ? "EAGAINWaitReadable"
                                                               : "EAGAINWaitWritable"));
        VALUE arg = rb_str_new_cstr(c->name);
        exc = rb_class_new_instance(1, &arg, klass);
        break;
    }
    default:
        exc = rb_syserr_new((int)-rc, c->name);
        break;
    }
    fastsock_rb__set_transfer(exc, c->total, partial);
    rb_exc_raise(exc);
}

/* ---- the String under the lock ------------------------------------------------ */

/* rb_str_locktmp makes every attempt to resize or free the String's bytes
 * raise while the GVL is released; RB_GC_GUARD in the callers keeps the
 * object on the machine stack, which also pins it against compaction. The
 * unlock runs under rb_ensure: Thread#raise and Thread#kill leave by a long
 * jump, and a String left locked could never be written again. */
static VALUE fastsock_rb__unlock(VALUE str)
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
#define FASTSOCK_RB__EMBED_MAX 640

static int fastsock_rb__embedded(VALUE str)
{
    return !RB_FL_TEST_RAW(str, RSTRING_NOEMBED);
}

/* Moves a target's bytes out of the object: capacity beyond any embedded size. */
static void fastsock_rb__unembed(VALUE str)
{
    if (fastsock_rb__embedded(str))
        rb_str_modify_expand(str, FASTSOCK_RB__EMBED_MAX + 1);
}

static VALUE fastsock_rb__lock(VALUE str)
{
    return rb_str_locktmp(str);
}

typedef struct fastsock_rb_recv_job {
    fastsock_rb_call *call;
    VALUE str;
    VALUE io;
    int fresh;               /* recvall's own String: bytes written past its length */
    int single;              /* recv_into */
    size_t n;                /* bytes asked for */
    size_t len0;             /* *_into: the target's bytesize before the call */
    size_t offset0;          /* *_into: where the bytes go */
    size_t end;              /* *_into: offset0 + n, beyond len0 when it grows */
} fastsock_rb_recv_job;

/* Reserves room for end (< LONG_MAX) bytes, in malloc'd memory whatever the
 * size: end beyond the bytesize is the target growing, as IO#read(len,
 * outbuf) grows its outbuf. The bytesize itself stays, so no unwritten byte
 * shows. Raises before any byte moves: NoMemoryError, or RuntimeError for a
 * String another call holds locked. */
static void fastsock_rb__reserve(VALUE str, size_t end)
{
    size_t len = (size_t)RSTRING_LEN(str);
    size_t want = end > len ? end : len;
    if (!fastsock_rb__embedded(str) && rb_str_capacity(str) >= want)
        return;
    if (want <= FASTSOCK_RB__EMBED_MAX)
        want = FASTSOCK_RB__EMBED_MAX + 1; /* out of the object, see above */
    rb_str_modify_expand(str, (long)(want - len));
}

/* rb_ensure's second half for the *_into calls: unlocks the target and gives
 * it its new bytesize, max(len0, offset0 + bytes received), also after an
 * error, an interrupt or Thread#kill. Growth never leaves a gap (offset0 <=
 * len0), so every byte up to that size was either there or written. */
static VALUE fastsock_rb__unlock_written(VALUE arg)
{
    fastsock_rb_recv_job *j = (fastsock_rb_recv_job *)arg;
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

static VALUE fastsock_rb__recv_body(VALUE arg)
{
    fastsock_rb_recv_job *j = (fastsock_rb_recv_job *)arg;
    fastsock_rb_call *c = j->call;
    c->base = RSTRING_PTR(j->str);
    c->len = (size_t)RSTRING_LEN(j->str);
    if (j->fresh)
        c->len = j->n;
    else if (j->end > c->len)
        c->len = j->end; /* reserved by fastsock_rb__reserve, nothing ran since */
    size_t n;
    fastsock_result rc = fastsock_rb__check_range(c->len, c->offset, c->count, &n);
    if (rc < 0) {
        c->rc = rc;
        return Qnil;
    }
    j->n = n;
    c->count = n;
    if (n > 0 && fastsock_rb__buffered(j->io) > 0) {
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
    fastsock_rb__run(c);
    return Qnil;
}

static VALUE fastsock_rb_recvall(VALUE sockv, int fd, size_t n, fastsock_ctl *ctl)
{
    fastsock_rb_call c;
    fastsock_rb__begin(&c, FASTSOCK_RB_RECVALL, "fastsock.recvall", fd, ctl);
    fastsock_rb__cycles = 0;
    VALUE io = fastsock_rb__io_of(sockv, "sock");
    (void)fastsock_rb__buffered(io); /* refuses decoded characters before allocating */
    /* One allocation at the final size, filled in place. */
    VALUE str = rb_str_buf_new((long)n);
    fastsock_rb__unembed(str); /* Ruby >= 3.2 embeds small buffers */
    fastsock_rb_recv_job j = { .call = &c, .str = str, .io = io, .fresh = 1, .n = n };
    c.count = n;
    rb_str_locktmp(str);
    rb_ensure(fastsock_rb__recv_body, (VALUE)&j, fastsock_rb__unlock, str);
    if (c.rc < 0) {
        /* Give back the capacity the missing bytes would have used. */
        rb_str_resize(str, (long)c.total);
        fastsock_rb__raise(&c, c.rc, str, n);
    }
    rb_str_set_len(str, (long)n);
    RB_GC_GUARD(str);
    return str;
}

static fastsock_result fastsock_rb__recv_into(fastsock_rb_op op, const char *name, VALUE sockv,
                                              VALUE strv, int fd, size_t offset, size_t count,
                                              int flags, fastsock_ctl *ctl)
{
    fastsock_rb_call c;
    fastsock_rb__begin(&c, op, name, fd, ctl);
    c.count_name = "n";
    c.offset = offset;
    c.count = count;
    c.flags = flags;
    if (op == FASTSOCK_RB_RECVALL)
        fastsock_rb__cycles = 0;
    VALUE io = fastsock_rb__io_of(sockv, "sock");
    (void)fastsock_rb__buffered(io);
    rb_str_modify(strv); /* FrozenError; a shared String gets its own bytes */
    fastsock_rb_recv_job j = { .call = &c, .str = strv, .io = io,
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
    rb_ensure(fastsock_rb__recv_body, (VALUE)&j, fastsock_rb__unlock_written, (VALUE)&j);
    RB_GC_GUARD(strv);
    if (c.rc < 0)
        fastsock_rb__raise(&c, c.rc, Qnil, j.n);
    if (op == FASTSOCK_RB_RECV && c.rc == 0 && j.n > 0)
        return FASTSOCK_EOF; /* end of stream: nil, as IO#read(n, buf) */
    return op == FASTSOCK_RB_RECV ? c.rc : (fastsock_result)c.total;
}

typedef struct fastsock_rb_send_job {
    fastsock_rb_call *call;
    VALUE str;
    char small[FASTSOCK_RB__EMBED_MAX]; /* an embedded String's bytes, copied */
    int use_small;
} fastsock_rb_send_job;

static VALUE fastsock_rb__send_body(VALUE arg)
{
    fastsock_rb_send_job *j = (fastsock_rb_send_job *)arg;
    fastsock_rb_call *c = j->call;
    c->base = j->use_small ? j->small : RSTRING_PTR(j->str);
    c->len = (size_t)RSTRING_LEN(j->str);
    size_t n;
    fastsock_result rc = fastsock_rb__check_range(c->len, c->offset, c->count, &n);
    if (rc < 0) {
        c->rc = rc;
        return Qnil;
    }
    c->count = n;
    fastsock_rb__run(c);
    return Qnil;
}

static fastsock_result fastsock_rb__send(fastsock_rb_op op, const char *name, VALUE sockv,
                                         VALUE strv, int fd, size_t offset, size_t count,
                                         fastsock_ctl *ctl)
{
    fastsock_rb_call c;
    fastsock_rb__begin(&c, op, name, fd, ctl);
    c.offset = offset;
    c.count = count;
    fastsock_rb_send_job j;
    j.call = &c;
    j.str = strv;
    j.use_small = 0;
    int locked = 0;
    if (fastsock_rb__embedded(strv) && RSTRING_LEN(strv) <= FASTSOCK_RB__EMBED_MAX) {
        /* A few bytes: copied, so neither a lock nor the GC matters. */
        memcpy(j.small, RSTRING_PTR(strv), (size_t)RSTRING_LEN(strv));
        j.use_small = 1;
    } else if (!OBJ_FROZEN(strv)) {
        /* A frozen String's bytes can't change under us. Otherwise lock it;
         * if another thread holds the lock (sending the same String), send
         * a frozen snapshot, which shares the bytes instead of copying them. */
        int state = 0;
        rb_protect(fastsock_rb__lock, strv, &state);
        if (state == 0) {
            locked = 1;
        } else {
            rb_set_errinfo(Qnil);
            j.str = rb_str_new_frozen(strv);
        }
    }
    if (locked)
        rb_ensure(fastsock_rb__send_body, (VALUE)&j, fastsock_rb__unlock, strv);
    else
        fastsock_rb__send_body((VALUE)&j);
    RB_GC_GUARD(strv);
    RB_GC_GUARD(j.str);
    if (c.rc < 0)
        fastsock_rb__raise(&c, c.rc, Qnil, 0);
    return op == FASTSOCK_RB_SEND ? c.rc : (fastsock_result)c.total;
}

typedef struct fastsock_rb_file_job {
    fastsock_rb_call *call;
    VALUE file_io;
    int64_t start;
    int restore_flags;       /* the file's O_NONBLOCK was cleared: put it back */
    int file_flags;
} fastsock_rb_file_job;

static VALUE fastsock_rb__sendfile_body(VALUE arg)
{
    fastsock_rb__run(((fastsock_rb_file_job *)arg)->call);
    return Qnil;
}

/* Leaves the file's position after the data sent, as Python's
 * socket.sendfile does: also after an error or an interrupt. */
static VALUE fastsock_rb__sendfile_position(VALUE arg)
{
    fastsock_rb_file_job *j = (fastsock_rb_file_job *)arg;
    fastsock_rb_call *c = j->call;
    if (j->restore_flags)
        fcntl(c->file, F_SETFL, j->file_flags);
    if (!c->file_seekable)
        return Qnil;
    int64_t pos = j->start + (int64_t)c->total;
    if (NIL_P(j->file_io))
        lseek(c->file, (off_t)pos, SEEK_SET);
    else
        rb_funcall(j->file_io, rb_intern("seek"), 1, LL2NUM(pos)); /* drops its read buffer */
    return Qnil;
}

static fastsock_result fastsock_rb_sendfile(VALUE sockv, VALUE filev, int fd, int file,
                                            int64_t offset, size_t count, fastsock_ctl *ctl)
{
    fastsock_rb_call c;
    fastsock_rb__begin(&c, FASTSOCK_RB_SENDFILE, "fastsock.sendfile", fd, ctl);
    c.file = file;
    c.file_offset = offset;
    c.count = count;
    struct stat st;
    if (fstat(file, &st) < 0)
        fastsock_rb__raise(&c, -errno, Qnil, 0);
    c.file_seekable = S_ISREG(st.st_mode) || S_ISBLK(st.st_mode);
    fastsock_rb_file_job j = { &c, fastsock_rb__io_of(filev, "file"), offset, 0, 0 };
    /* Ruby 3 makes pipes O_NONBLOCK, and the core's read-and-send path reads
     * the file with plain read(): it would fail with EAGAIN whenever the
     * pipe is momentarily empty. Blocking reads are interrupted like the
     * socket calls (the unblocking function's signal, then the hook). */
    if (!c.file_seekable) {
        int fl = fcntl(file, F_GETFL);
        if (fl >= 0 && (fl & O_NONBLOCK) && fcntl(file, F_SETFL, fl & ~O_NONBLOCK) == 0) {
            j.restore_flags = 1;
            j.file_flags = fl;
        }
    }
    rb_ensure(fastsock_rb__sendfile_body, (VALUE)&j, fastsock_rb__sendfile_position, (VALUE)&j);
    if (c.rc < 0)
        fastsock_rb__raise(&c, c.rc, Qnil, 0);
    return (fastsock_result)c.total;
}

static void fastsock_rb__init(void)
{
    VALUE m = rb_path2class("Fastsock");
    fastsock_rb__eIncomplete = rb_const_get(m, rb_intern("IncompleteError"));
    fastsock_rb__eTimeout = rb_const_get(m, rb_intern("TimeoutError"));
    fastsock_rb__mTransfer = rb_const_get(m, rb_intern("TransferError"));
    rb_gc_register_address(&fastsock_rb__eIncomplete);
    rb_gc_register_address(&fastsock_rb__eTimeout);
    rb_gc_register_address(&fastsock_rb__mTransfer);
}
%}

%init %{
    fastsock_rb__init();
%}

/* ---- typemaps, by fastsock.i's parameter names -------------------------------- */

%typemap(in) int SOCK "$1 = fastsock_rb__fd_of($input, \"sock\");"
%typemap(in) int FILE "$1 = fastsock_rb__fd_of($input, \"file\");"

/* Checked here so that a bad buffer is refused before anything else; the
 * action takes the bytes again under the lock (hence its (void)arg2, arg3). */
%typemap(in) (void *BUF, size_t LEN) {
    if (!RB_TYPE_P($input, T_STRING))
        rb_raise(rb_eTypeError, "fastsock: buffer must be a String, not %" PRIsVALUE,
                 rb_obj_class($input));
    rb_str_modify($input);
    $1 = RSTRING_PTR($input);
    $2 = (size_t)RSTRING_LEN($input);
}
%typemap(in) (const void *DATA, size_t LEN) {
    if (!RB_TYPE_P($input, T_STRING))
        rb_raise(rb_eTypeError, "fastsock: data must be a String, not %" PRIsVALUE,
                 rb_obj_class($input));
    $1 = RSTRING_PTR($input);
    $2 = (size_t)RSTRING_LEN($input);
}

%typemap(in) size_t OFFSET "$1 = fastsock_rb__size($input, \"offset\", 0);"
%typemap(in) int64_t OFFSET {
    VALUE off = rb_to_int($input);
    if (RTEST(rb_funcall(off, '<', 1, INT2FIX(0))))
        rb_raise(rb_eArgError, "fastsock: offset must not be negative");
    $1 = (int64_t)NUM2LL(off);
}
/* nil: to the end. */
%typemap(in) size_t COUNT "$1 = fastsock_rb__size($input, \"count\", 1);"

/* recvall's n: a String of that size must be possible. */
%typemap(in) size_t NBYTES "$1 = fastsock_rb__nbytes($input);"

%typemap(in) fastsock_ctl *CTL (fastsock_ctl ctl) {
    memset(&ctl, 0, sizeof ctl);
    ctl.timeout_ms = fastsock_rb__timeout_ms($input);
    $1 = &ctl;
}

/* Errors were raised by the action, with the GVL held; what is left is a count. */
%typemap(out) fastsock_result "$result = SSIZET2NUM($1);"
%typemap(out) fastsock_result fastsock_recv "$result = $1 == FASTSOCK_EOF ? Qnil : SSIZET2NUM($1);"

/* ---- the operations ------------------------------------------------------------ */

%feature("action") fastsock_recvall
  "(void)arg2; (void)arg3; result = fastsock_rb__recv_into(FASTSOCK_RB_RECVALL, \"fastsock.recvall_into\", argv[0], argv[1], arg1, arg4, arg5, 0, arg6);"
%feature("action") fastsock_recv
  "(void)arg2; (void)arg3; result = fastsock_rb__recv_into(FASTSOCK_RB_RECV, \"fastsock.recv_into\", argv[0], argv[1], arg1, arg4, arg5, arg6, arg7);"
%feature("action") fastsock_send
  "(void)arg2; (void)arg3; result = fastsock_rb__send(FASTSOCK_RB_SEND, \"fastsock.send\", argv[0], argv[1], arg1, arg4, arg5, arg6);"
%feature("action") fastsock_sendall
  "(void)arg2; (void)arg3; result = fastsock_rb__send(FASTSOCK_RB_SENDALL, \"fastsock.sendall\", argv[0], argv[1], arg1, arg4, arg5, arg6);"
%feature("action") fastsock_sendfile
  "result = fastsock_rb_sendfile(argv[0], argv[1], arg1, arg2, arg3, arg4, arg5);"
%feature("action") fastsock_recvall_cycles "result = fastsock_rb__cycles;"

%include "fastsock.i"

%rename(recvall) fastsock_rb_recvall;
%feature("action") fastsock_rb_recvall "result = fastsock_rb_recvall(argv[0], arg1, arg2, arg3);"
VALUE fastsock_rb_recvall(int SOCK, size_t NBYTES, fastsock_ctl *CTL);
