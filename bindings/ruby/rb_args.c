/*
 * Arguments: what a socket, a file, a String, a size or a timeout may be,
 * and the errors for what it may not.
 */
#include "fastsock_rb.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include <ruby/io.h>

static int is_ssl_socket(VALUE v)
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

/* An SSLSocket answers to_io with its TCP socket, so it is refused first:
 * raw bytes would bypass the encryption. */
VALUE fastsock_rb__io_of(VALUE v, const char *what)
{
    if (RB_TYPE_P(v, T_FILE))
        return v;
    if (RB_INTEGER_TYPE_P(v))
        return Qnil;
    if (is_ssl_socket(v))
        rb_raise(rb_eTypeError,
                 "fastsock: %s is an OpenSSL::SSL::SSLSocket; raw socket I/O would bypass TLS",
                 what);
    VALUE io = rb_check_convert_type(v, T_FILE, "IO", "to_io");
    if (NIL_P(io))
        rb_raise(rb_eTypeError, "fastsock: %s must be an IO or an Integer fd, not %" PRIsVALUE,
                 what, rb_obj_class(v));
    return io;
}

/* Bytes Ruby still holds in the IO's write buffer go out first, as IO#read
 * does before reading. A closed IO raises IOError here. */
int fastsock_rb__fd_of(VALUE v, const char *what)
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

/* Read-ahead bytes (after gets) come before anything the socket still
 * holds, so a receive takes them first. */
size_t fastsock_rb__buffered(VALUE io)
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

/* As IO#readpartial would hand them out. */
size_t fastsock_rb__take_buffered(VALUE io, char *dst, size_t want)
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
void fastsock_rb__require_socket(int fd, const char *op)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        rb_syserr_fail(errno, op);
    if (!S_ISSOCK(st.st_mode))
        rb_syserr_fail(ENOTSOCK, op);
}

size_t fastsock_rb__size(VALUE v, const char *what, int nil_is_all)
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

/* Beyond what a String can hold: what rb_str_buf_new raises for a size it
 * can't allocate, NoMemoryError, not a RangeError. */
size_t fastsock_rb__nbytes(VALUE v)
{
    v = rb_to_int(v);
    if (RB_FIXNUM_P(v) && FIX2LONG(v) >= 0)
        return (size_t)FIX2LONG(v); /* the common case, without a method call */
    if (RTEST(rb_funcall(v, '<', 1, INT2FIX(0))))
        rb_raise(rb_eArgError, "fastsock.recvall: n must not be negative");
    if (!RB_FIXNUM_P(v) && RTEST(rb_funcall(v, '>', 1, LONG2NUM(LONG_MAX - 1))))
        rb_raise(rb_eNoMemError, "fastsock.recvall: failed to allocate memory (n = %" PRIsVALUE ")", v);
    return NUM2SIZET(v);
}

int64_t fastsock_rb__file_offset(VALUE v)
{
    VALUE off = rb_to_int(v);
    if (RTEST(rb_funcall(off, '<', 1, INT2FIX(0))))
        rb_raise(rb_eArgError, "fastsock: offset must not be negative");
    return (int64_t)NUM2LL(off);
}

int64_t fastsock_rb__timeout_ms(VALUE v)
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

/* Checked in the typemap so that a bad buffer is refused before anything
 * else; the calls take the bytes again under the lock, since converting a
 * later argument (timeout.to_f, count.to_int) can run Ruby code that
 * resizes the String. */
void fastsock_rb__string_arg(VALUE v, const char *what, int writable, void **base, size_t *len)
{
    if (!RB_TYPE_P(v, T_STRING))
        rb_raise(rb_eTypeError, "fastsock: %s must be a String, not %" PRIsVALUE, what,
                 rb_obj_class(v));
    if (writable)
        rb_str_modify(v);
    *base = RSTRING_PTR(v);
    *len = (size_t)RSTRING_LEN(v);
}
