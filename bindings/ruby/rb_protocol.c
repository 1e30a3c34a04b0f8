/*
 * What a protocol client or server needs besides bulk bodies (issue 17):
 * Fastsock.sendallv (several Strings as one stream, no join),
 * Fastsock.recvfile (socket to file with splice), Fastsock::Reader (a line
 * up to a delimiter without over-reading, then a body through the same
 * look-ahead), and Fastsock.find / Fastsock.split (byte offsets: Ruby 3.1
 * has no String#byteindex). lib/fastsock.rb gives them their keywords on
 * top of the Native functions and private Reader methods defined here.
 *
 * The blocking ones run through rb_calls.c's loop (GVL released, interrupts
 * between resumptions). Under a Fiber scheduler all three try without
 * waiting and wait through the scheduler in between, as recv_into does
 * (rb_scheduler.c's single; sendallv and recvfile a budget's worth a try).
 */
#include "fastsock_rb.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <ruby/encoding.h>
#include <ruby/io.h>

static VALUE eTooLong = Qnil;
static VALUE eIncomplete = Qnil;
static VALUE eBusy = Qnil;

/* A short String keeps its bytes inside the object, which GC.compact may
 * move while the GVL is released (rb_calls.c says more): such bytes are
 * copied before a transfer. */
static int embedded(VALUE str)
{
    return !RB_FL_TEST_RAW(str, RSTRING_NOEMBED);
}

/* nil: no limit; else > 0 seconds, as Fastsock.recvall takes it. */
static int64_t bulk_timeout_ms(VALUE v)
{
    if (NIL_P(v))
        return -1;
    if (!rb_obj_is_kind_of(v, rb_cNumeric))
        rb_raise(rb_eTypeError, "timeout must be Numeric or nil, not %" PRIsVALUE, rb_obj_class(v));
    if (!RTEST(rb_funcall(v, '>', 1, INT2FIX(0))))
        rb_raise(rb_eArgError, "timeout must be > 0 seconds (or nil)");
    return fastsock_rb__timeout_ms(v);
}

/* ---- sendallv ------------------------------------------------------------- */

/* Also past empty iovecs at the front, so that iovcnt 0 means all sent. */
void fastsock_rb__iov_advance(fastsock_rb_call *c, size_t moved)
{
    while (c->iovcnt > 0 && (moved > 0 || c->iov->iov_len == 0)) {
        if (moved >= c->iov->iov_len) {
            moved -= c->iov->iov_len;
            c->iov++;
            c->iovcnt--;
        } else {
            c->iov->iov_base = (char *)c->iov->iov_base + moved;
            c->iov->iov_len -= moved;
            moved = 0;
        }
    }
}

typedef struct sendv_job {
    fastsock_rb_call *call;
    VALUE pieces;     /* the Strings, in an Array of our own */
    char *locked;     /* which of them this call locked */
    long n;
} sendv_job;

static VALUE lock(VALUE str)
{
    return rb_str_locktmp(str);
}

static VALUE sendv_body(VALUE arg)
{
    fastsock_rb__run(((sendv_job *)arg)->call);
    return Qnil;
}

static VALUE sendv_unlock(VALUE arg)
{
    sendv_job *j = (sendv_job *)arg;
    for (long i = 0; i < j->n; i++)
        if (j->locked[i])
            rb_str_unlocktmp(RARRAY_AREF(j->pieces, i));
    return Qnil;
}

/* The iovecs over the pieces' bytes, from byte `skip` of the stream on. */
static void fill_iov(fastsock_rb_call *c, struct iovec *iov, VALUE pieces, long n,
                     char *scratch, size_t skip)
{
    size_t at = 0;
    for (long i = 0; i < n; i++) {
        VALUE s = RARRAY_AREF(pieces, i);
        size_t len = (size_t)RSTRING_LEN(s);
        if (scratch != NULL && embedded(s)) {
            memcpy(scratch + at, RSTRING_PTR(s), len);
            iov[i].iov_base = scratch + at;
            at += len;
        } else {
            iov[i].iov_base = RSTRING_PTR(s);
        }
        iov[i].iov_len = len;
    }
    c->iov = iov;
    c->iovcnt = (size_t)n;
    fastsock_rb__iov_advance(c, skip);
}

static VALUE native_sendallv(VALUE mod, VALUE sockv, VALUE list, VALUE timeoutv)
{
    (void)mod;
    int fd = fastsock_rb__fd_of(sockv, "sock");
    VALUE ary = rb_check_array_type(list);
    if (NIL_P(ary))
        rb_raise(rb_eTypeError, "fastsock.sendallv: strings must be an Array of Strings, not %" PRIsVALUE,
                 rb_obj_class(list));
    int64_t timeout_ms = fastsock_rb__timeout_ms(timeoutv);
    /* Every piece converted before any byte moves, into an Array of our
     * own: another thread may change the caller's while the GVL is out. */
    long n = RARRAY_LEN(ary);
    VALUE pieces = rb_ary_new_capa(n);
    size_t total = 0, small = 0;
    for (long i = 0; i < n && i < RARRAY_LEN(ary); i++) {
        VALUE e = RARRAY_AREF(ary, i);
        VALUE s = rb_check_string_type(e);
        if (NIL_P(s))
            rb_raise(rb_eTypeError, "fastsock.sendallv: piece %ld is %" PRIsVALUE ", not a String", i,
                     rb_obj_class(e));
        rb_ary_push(pieces, s);
    }
    n = RARRAY_LEN(pieces);
    for (long i = 0; i < n; i++) {
        VALUE s = RARRAY_AREF(pieces, i);
        total += (size_t)RSTRING_LEN(s);
        if (embedded(s))
            small += (size_t)RSTRING_LEN(s);
    }
    fastsock_rb_call c;
    fastsock_rb__begin(&c, FASTSOCK_RB_SENDALLV, "fastsock.sendallv", fd, timeout_ms);
    c.count = total;
    VALUE iov_tmp, aux_tmp;
    struct iovec *iov = ALLOCV_N(struct iovec, iov_tmp, n ? n : 1);
    /* Headers and small batches: one sendmsg with the GVL held, no lock,
     * no copy (no GC runs during it); the core sends what the socket takes
     * now and never waits. */
    if (total <= ((size_t)64 << 10)) {
        fill_iov(&c, iov, pieces, n, NULL, 0);
        fastsock_ctl now = FASTSOCK_CTL_INIT;
        now.timeout_ms = 0;
        fastsock_result rc = fastsock_sendallv(fd, c.iov, c.iovcnt, &now);
        c.total = now.moved;
        if (rc >= 0) {
            ALLOCV_END(iov_tmp);
            RB_GC_GUARD(pieces);
            return SIZET2NUM(total);
        }
        if (rc != -EAGAIN)
            fastsock_rb__raise(&c, rc, Qnil, total);
    }
    /* The rest with the GVL released: each String locked (a second lock of
     * one, or one another call holds, sends a frozen snapshot that shares
     * its bytes), embedded ones copied out of their objects. */
    char *aux = ALLOCV(aux_tmp, (size_t)n + small + 1);
    char *locked = aux, *scratch = aux + n;
    memset(locked, 0, (size_t)n);
    for (long i = 0; i < n; i++) {
        VALUE s = RARRAY_AREF(pieces, i);
        if (embedded(s) || OBJ_FROZEN(s))
            continue;
        int state = 0;
        rb_protect(lock, s, &state);
        if (state == 0) {
            locked[i] = 1;
        } else {
            rb_set_errinfo(Qnil);
            rb_ary_store(pieces, i, rb_str_new_frozen(s));
        }
    }
    fill_iov(&c, iov, pieces, n, scratch, c.total);
    sendv_job j = { &c, pieces, locked, n };
    rb_ensure(sendv_body, (VALUE)&j, sendv_unlock, (VALUE)&j);
    ALLOCV_END(aux_tmp);
    ALLOCV_END(iov_tmp);
    RB_GC_GUARD(pieces);
    if (c.rc < 0)
        fastsock_rb__raise(&c, c.rc, Qnil, total);
    return SIZET2NUM(c.total);
}

/* ---- recvfile ------------------------------------------------------------- */

typedef struct recvfile_job {
    fastsock_rb_file_job f;
    VALUE sock_io; /* the socket's IO, or Qnil for an Integer fd */
} recvfile_job;

/* Writes p[0, n) where the receive would have: at the offset, or where an
 * appending file or a pipe stands. 0 or a negative errno. */
static fastsock_result write_file(fastsock_rb_call *c, const char *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = c->file_append ? write(c->file, p + done, n - done)
                                   : pwrite(c->file, p + done, n - done,
                                            (off_t)(c->file_offset + (int64_t)done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        done += (size_t)w;
        c->total += (size_t)w;
    }
    return 0;
}

static VALUE recvfile_body(VALUE arg)
{
    recvfile_job *j = (recvfile_job *)arg;
    fastsock_rb_call *c = j->f.call;
    /* Bytes the socket's IO read ahead (after gets) come first: into the
     * file before anything the socket still holds. */
    size_t ahead = c->count > 0 ? fastsock_rb__buffered(j->sock_io) : 0;
    if (ahead > 0) {
        fastsock_rb__require_socket(c->fd, c->name);
        size_t k = ahead < c->count ? ahead : c->count;
        VALUE tmp;
        char *bytes = ALLOCV(tmp, k);
        fastsock_rb__take_buffered(j->sock_io, bytes, k);
        c->rc = write_file(c, bytes, k);
        ALLOCV_END(tmp);
        if (c->rc < 0)
            return Qnil;
        if (!c->file_append)
            c->file_offset += (int64_t)k;
        c->count -= k;
        if (c->count == 0) {
            c->rc = (fastsock_result)k;
            return Qnil;
        }
    }
    fastsock_rb__run(c);
    return Qnil;
}

static VALUE native_recvfile(VALUE mod, VALUE sockv, VALUE filev, VALUE countv, VALUE offv,
                             VALUE timeoutv)
{
    (void)mod;
    static const char name[] = "fastsock.recvfile";
    int fd = fastsock_rb__fd_of(sockv, "sock");
    VALUE file_io = fastsock_rb__io_of(filev, "file");
    /* fd_of flushes what Ruby holds in the File's write buffer: it goes
     * before the received bytes, as IO#write's own order would have it. */
    int file = fastsock_rb__fd_of(filev, "file");
    size_t count = fastsock_rb__size(countv, "count", 0);
    if (count > (size_t)SSIZE_MAX)
        rb_raise(rb_eArgError, "%s: count %zu is larger than any file", name, count);
    int64_t timeout_ms = fastsock_rb__timeout_ms(timeoutv);
    int fl = fcntl(file, F_GETFL);
    if (fl < 0)
        rb_syserr_fail(errno, name);
    if (!NIL_P(file_io)) {
        rb_io_t *fptr;
        GetOpenFile(file_io, fptr);
        rb_io_check_writable(fptr); /* IOError "not opened for writing" */
    }
    if ((fl & O_ACCMODE) == O_RDONLY)
        rb_raise(rb_eIOError, "%s: the file is not opened for writing", name);
    struct stat st;
    if (fstat(file, &st) < 0)
        rb_syserr_fail(errno, name);
    fastsock_rb_call c;
    fastsock_rb__begin(&c, FASTSOCK_RB_RECVFILE, name, fd, timeout_ms);
    c.file = file;
    c.count = count;
    c.count_name = "count";
    c.file_seekable = S_ISREG(st.st_mode) || S_ISBLK(st.st_mode);
    c.file_append = (fl & O_APPEND) || !c.file_seekable;
    int64_t offset = 0;
    if (NIL_P(offv)) {
        /* The file's position, Ruby's view of it (its read buffer counted). */
        if (!c.file_append) {
            offset = NIL_P(file_io) ? (int64_t)lseek(file, 0, SEEK_CUR)
                                    : (int64_t)NUM2LL(rb_funcall(file_io, rb_intern("pos"), 0));
            if (offset < 0)
                rb_syserr_fail(errno, name);
        }
    } else {
        offset = fastsock_rb__file_offset(offv);
        if (c.file_append && offset != 0)
            rb_raise(rb_eArgError,
                     "%s: offset must be nil: the file is %s, written where it stands", name,
                     c.file_seekable ? "opened for appending" : "not seekable");
    }
    c.file_offset = offset;
    recvfile_job j = { { &c, file_io, offset, 0, 0 }, fastsock_rb__io_of(sockv, "sock") };
    fastsock_rb__file_blocking(&j.f);
    rb_ensure(recvfile_body, (VALUE)&j, fastsock_rb__file_position, (VALUE)&j.f);
    RB_GC_GUARD(file_io);
    if (c.rc < 0)
        fastsock_rb__raise(&c, c.rc, Qnil, count);
    return SIZET2NUM(c.total);
}

/* ---- Fastsock::Reader ----------------------------------------------------- */

typedef struct reader_obj {
    fastsock_reader r;
    VALUE sock; /* the socket argument: an IO, or an Integer fd */
    int fd;
    int busy;   /* a call is in progress (another thread, or a fiber waiting) */
    int ready;
} reader_obj;

static void reader_mark(void *p)
{
    rb_gc_mark(((reader_obj *)p)->sock);
}

static void reader_free(void *p)
{
    reader_obj *o = p;
    fastsock_reader_release(&o->r);
    ruby_xfree(o);
}

static size_t reader_memsize(const void *p)
{
    return sizeof(reader_obj) + ((const reader_obj *)p)->r.cap;
}

static const rb_data_type_t reader_type = {
    .wrap_struct_name = "fastsock_reader",
    .function = { .dmark = reader_mark, .dfree = reader_free, .dsize = reader_memsize },
    .flags = 0,
};

static VALUE reader_alloc(VALUE klass)
{
    reader_obj *o;
    VALUE self = TypedData_Make_Struct(klass, reader_obj, &reader_type, o);
    o->sock = Qnil;
    fastsock_reader_init(&o->r, -1);
    return self;
}

static reader_obj *get_reader(VALUE self)
{
    reader_obj *o;
    TypedData_Get_Struct(self, reader_obj, &reader_type, o);
    if (!o->ready)
        rb_raise(rb_eRuntimeError, "fastsock: Fastsock::Reader was not initialized");
    return o;
}

/* __init(sock): bytes the IO has already read ahead (after gets) become the
 * start of the look-ahead, so none is skipped. */
static VALUE reader_init(VALUE self, VALUE sockv)
{
    reader_obj *o;
    TypedData_Get_Struct(self, reader_obj, &reader_type, o);
    if (o->ready)
        rb_raise(rb_eRuntimeError, "fastsock: Fastsock::Reader initialized twice");
    int fd = fastsock_rb__fd_of(sockv, "sock");
    VALUE io = fastsock_rb__io_of(sockv, "sock");
    size_t ahead = fastsock_rb__buffered(io);
    fastsock_rb__require_socket(fd, "Fastsock::Reader");
    if (ahead > 0) {
        size_t cap = ahead < ((size_t)16 << 10) ? (size_t)16 << 10 : ahead;
        o->r.buf = malloc(cap);
        if (o->r.buf == NULL)
            rb_raise(rb_eNoMemError, "Fastsock::Reader: failed to allocate %zu bytes", cap);
        o->r.cap = cap;
        o->r.end = fastsock_rb__take_buffered(io, (char *)o->r.buf, ahead);
    }
    o->sock = sockv;
    o->fd = fd;
    o->r.fd = fd;
    o->ready = 1;
    return self;
}

/* The socket's fd for this call: IOError once the IO was closed. */
static int reader_fd(reader_obj *o)
{
    if (RB_TYPE_P(o->sock, T_FILE)) {
        rb_io_t *fptr;
        GetOpenFile(o->sock, fptr);
        o->fd = fptr->fd;
    }
    o->r.fd = o->fd;
    return o->fd;
}

static void claim(reader_obj *o, const char *name)
{
    if (o->busy)
        rb_raise(eBusy, "%s: the Reader is in use by another thread or fiber", name);
    o->busy = 1;
}

static VALUE release_claim(VALUE arg)
{
    ((reader_obj *)arg)->busy = 0;
    return Qnil;
}

static VALUE until_body(VALUE arg)
{
    fastsock_rb__run((fastsock_rb_call *)arg);
    return Qnil;
}

typedef struct until_job {
    reader_obj *o;
    fastsock_rb_call *c;
} until_job;

static VALUE until_run(VALUE arg)
{
    until_job *j = (until_job *)arg;
    return rb_ensure(until_body, (VALUE)j->c, release_claim, (VALUE)j->o);
}

/* __readuntil(delim, max, timeout): the line, delimiter included. */
static VALUE reader_readuntil(VALUE self, VALUE delimv, VALUE maxv, VALUE timeoutv)
{
    static const char name[] = "Fastsock::Reader#readuntil";
    reader_obj *o = get_reader(self);
    StringValue(delimv);
    size_t max = fastsock_rb__size(maxv, "max", 0);
    int64_t timeout_ms = bulk_timeout_ms(timeoutv);
    size_t dlen = (size_t)RSTRING_LEN(delimv);
    if (dlen == 0)
        rb_raise(rb_eArgError, "%s: the delimiter must not be empty", name);
    if (max < dlen)
        rb_raise(rb_eArgError, "%s: max %zu is shorter than the %zu-byte delimiter", name, max, dlen);
    /* The delimiter is read without the GVL: a copy of our own. */
    char small[64];
    VALUE tmp = 0;
    char *delim = dlen <= sizeof small ? small : ALLOCV(tmp, dlen);
    memcpy(delim, RSTRING_PTR(delimv), dlen);
    int fd = reader_fd(o);
    fastsock_rb_call c;
    fastsock_rb__begin(&c, FASTSOCK_RB_READUNTIL, name, fd, timeout_ms);
    c.reader = &o->r;
    c.delim = delim;
    c.dlen = dlen;
    c.max = max;
    claim(o, name);
    until_job j = { o, &c };
    until_run((VALUE)&j);
    if (tmp)
        ALLOCV_END(tmp);
    fastsock_result rc = c.rc;
    if (rc >= 0)
        return rb_str_new((const char *)c.line, rc); /* copied before any other call */
    if (rc == FASTSOCK_EOF) {
        VALUE partial = rb_str_new((const char *)c.line, (long)c.total);
        VALUE msg = rb_sprintf("%s: end of stream before the delimiter, after %zu bytes", name,
                               c.total);
        VALUE exc = rb_exc_new_str(eIncomplete, msg);
        rb_ivar_set(exc, rb_intern("@expected"), Qnil);
        fastsock_rb__set_transfer(exc, c.total, partial);
        rb_exc_raise(exc);
    }
    if (rc == FASTSOCK_ETOOLONG) {
        VALUE msg = rb_sprintf("%s: no delimiter within %zu bytes (%zu buffered, nothing consumed)",
                               name, max, fastsock_reader_buffered(&o->r));
        VALUE exc = rb_exc_new_str(eTooLong, msg);
        fastsock_rb__set_transfer(exc, 0, Qnil);
        rb_exc_raise(exc);
    }
    fastsock_rb__raise(&c, rc, Qnil, 0);
}

typedef struct body_job {
    reader_obj *o;
    VALUE buf;           /* Qnil: a fresh String (recvall) */
    size_t n, offset;
    int64_t timeout_ms;
    VALUE result;
} body_job;

static VALUE body_run(VALUE arg)
{
    body_job *j = (body_job *)arg;
    fastsock_ctl ctl = FASTSOCK_CTL_INIT;
    ctl.timeout_ms = j->timeout_ms;
    int fd = reader_fd(j->o);
    if (NIL_P(j->buf))
        j->result = fastsock_rb__reader_recvall(&j->o->r, "Fastsock::Reader#recvall", j->o->sock, fd,
                                                j->n, &ctl);
    else
        j->result = SIZET2NUM((size_t)fastsock_rb__reader_recvall_into(
            &j->o->r, "Fastsock::Reader#recvall_into", j->o->sock, j->buf, fd, j->offset, j->n, &ctl));
    return Qnil;
}

/* __recvall(n, timeout): exactly n bytes, the look-ahead's first. */
static VALUE reader_recvall(VALUE self, VALUE nv, VALUE timeoutv)
{
    reader_obj *o = get_reader(self);
    body_job j = { o, Qnil, fastsock_rb__nbytes(nv), 0, bulk_timeout_ms(timeoutv), Qnil };
    claim(o, "Fastsock::Reader#recvall");
    rb_ensure(body_run, (VALUE)&j, release_claim, (VALUE)o);
    return j.result;
}

/* __recvall_into(buf, n, offset, timeout): as Fastsock.recvall_into. */
static VALUE reader_recvall_into(VALUE self, VALUE buf, VALUE nv, VALUE offv, VALUE timeoutv)
{
    reader_obj *o = get_reader(self);
    if (!RB_TYPE_P(buf, T_STRING))
        rb_raise(rb_eTypeError, "fastsock: buffer must be a String, not %" PRIsVALUE, rb_obj_class(buf));
    body_job j = { o, buf, fastsock_rb__size(nv, "n", 1), fastsock_rb__size(offv, "offset", 0),
                   bulk_timeout_ms(timeoutv), Qnil };
    claim(o, "Fastsock::Reader#recvall_into");
    rb_ensure(body_run, (VALUE)&j, release_claim, (VALUE)o);
    return j.result;
}

static VALUE reader_buffered(VALUE self)
{
    return SIZET2NUM(fastsock_reader_buffered(&get_reader(self)->r));
}

static VALUE reader_socket(VALUE self)
{
    return get_reader(self)->sock;
}

/* ---- find and split ------------------------------------------------------- */

static void search_args(const char *name, VALUE str, VALUE needle, const char *what)
{
    if (!RB_TYPE_P(str, T_STRING))
        rb_raise(rb_eTypeError, "%s: the String to search must be a String, not %" PRIsVALUE, name,
                 rb_obj_class(str));
    if (!RB_TYPE_P(needle, T_STRING))
        rb_raise(rb_eTypeError, "%s: the %s must be a String, not %" PRIsVALUE, name, what,
                 rb_obj_class(needle));
    if (RSTRING_LEN(needle) == 0)
        rb_raise(rb_eArgError, "%s: the %s must not be empty", name, what);
}

/* find(str, needle, from): the byte offset of the first needle at or after
 * from, or nil. */
static VALUE native_find(VALUE mod, VALUE str, VALUE needle, VALUE fromv)
{
    (void)mod;
    search_args("fastsock.find", str, needle, "needle");
    VALUE from = rb_to_int(fromv);
    if (RTEST(rb_funcall(from, '<', 1, INT2FIX(0))))
        rb_raise(rb_eArgError, "fastsock.find: from must not be negative");
    size_t len = (size_t)RSTRING_LEN(str);
    if (!RB_FIXNUM_P(from) || (size_t)FIX2LONG(from) > len)
        return Qnil;
    fastsock_result at = fastsock_find(RSTRING_PTR(str), len, (size_t)FIX2LONG(from),
                                       RSTRING_PTR(needle), (size_t)RSTRING_LEN(needle));
    RB_GC_GUARD(str);
    RB_GC_GUARD(needle);
    return at < 0 ? Qnil : SSIZET2NUM(at);
}

/* split(str, sep, strings): the fields as bytes.split(sep) makes them (n
 * separators, n + 1 fields, empty ones included): a flat Array of
 * [start, end) byte offsets, or Strings that share str's bytes. */
static VALUE native_split(VALUE mod, VALUE str, VALUE sep, VALUE strings)
{
    (void)mod;
    search_args("fastsock.split", str, sep, "separator");
    int as_strings = RTEST(strings);
    size_t slen = (size_t)RSTRING_LEN(sep);
    char small[64];
    VALUE tmp = 0;
    char *s = slen <= sizeof small ? small : ALLOCV(tmp, slen);
    memcpy(s, RSTRING_PTR(sep), slen);
    VALUE out = rb_ary_new();
    size_t at = 0;
    for (;;) {
        /* The pointer again after each push: an allocation may run the GC,
         * and str is pinned only while it sits on this stack. */
        size_t len = (size_t)RSTRING_LEN(str);
        fastsock_result hit = fastsock_find(RSTRING_PTR(str), len, at, s, slen);
        size_t end = hit < 0 ? len : (size_t)hit;
        if (as_strings) {
            rb_ary_push(out, rb_str_subseq(str, (long)at, (long)(end - at)));
        } else {
            rb_ary_push(out, SIZET2NUM(at));
            rb_ary_push(out, SIZET2NUM(end));
        }
        if (hit < 0)
            break;
        at = end + slen;
    }
    if (tmp)
        ALLOCV_END(tmp);
    RB_GC_GUARD(str);
    return out;
}

void fastsock_rb__protocol_init(VALUE mFastsock, VALUE mNative)
{
    eTooLong = rb_const_get(mFastsock, rb_intern("TooLongError"));
    eIncomplete = rb_const_get(mFastsock, rb_intern("IncompleteError"));
    eBusy = rb_const_get(mFastsock, rb_intern("BusyError"));
    rb_gc_register_address(&eTooLong);
    rb_gc_register_address(&eIncomplete);
    rb_gc_register_address(&eBusy);
    rb_define_module_function(mNative, "sendallv", native_sendallv, 3);
    rb_define_module_function(mNative, "recvfile", native_recvfile, 5);
    rb_define_module_function(mNative, "find", native_find, 3);
    rb_define_module_function(mNative, "split", native_split, 3);
    VALUE cReader = rb_define_class_under(mFastsock, "Reader", rb_cObject);
    rb_define_alloc_func(cReader, reader_alloc);
    rb_define_private_method(cReader, "__init", reader_init, 1);
    rb_define_private_method(cReader, "__readuntil", reader_readuntil, 3);
    rb_define_private_method(cReader, "__recvall", reader_recvall, 2);
    rb_define_private_method(cReader, "__recvall_into", reader_recvall_into, 4);
    rb_define_method(cReader, "buffered", reader_buffered, 0);
    rb_define_method(cReader, "socket", reader_socket, 0);
}
