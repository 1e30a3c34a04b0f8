/*
 * Fastsock::Receiver and Fastsock::Sender: the core's progressive transfers
 * (fastsock_xfer) as Ruby objects, for loops the program writes itself
 * (IO.select, nio4r). lib/fastsock.rb gives them their public methods
 * (recv_nonblock, send_nonblock, exception: false) on top of the private
 * __init and __step defined here.
 *
 * A step runs with the GVL held and never waits, so no Ruby code runs
 * during one: the Strings need no lock. Between steps the program may do
 * anything, so each step of a receive into the caller's String takes the
 * String's bytes again (after making room, unsharing it) and refuses one
 * that was shortened under the bytes already shown. A fresh String is
 * hidden (rb_obj_hide) until complete: no Ruby code can see its unwritten
 * bytes. The objects mark what they hold (socket, String, file), so the GC
 * keeps them, and pins them, while the transfer runs.
 */
#include "fastsock_rb.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <ruby/encoding.h>
#include <ruby/io.h>

/* ---- what both hold ------------------------------------------------------- */

typedef struct xfer_obj {
    fastsock_xfer x;
    int kind;              /* 0 until __init succeeded, then FASTSOCK_XFER_* */
    VALUE sock;            /* the socket argument: an IO, or an Integer fd */
    int fd;
    size_t budget;         /* 0: the core's FASTSOCK_XFER_BUDGET */
    size_t count;          /* bytes the transfer moves in all */
    size_t moved;          /* bytes moved so far, read-ahead bytes included */
    unsigned long steps;   /* steps that moved data */
    unsigned long cycles;  /* data-moving system calls */
    fastsock_result error; /* what ended it, once it has failed */
    int complete;
    /* Receiver */
    VALUE str;             /* the target */
    int fresh;             /* the Receiver's own String, hidden until complete */
    size_t offset, len0, end; /* caller's String: where the bytes go, its old size */
    VALUE partial;         /* a failed fresh receive: the bytes that came */
    /* Sender */
    VALUE data;            /* a frozen snapshot of the String sent */
    VALUE file;            /* the file argument (IO or Integer), or Qnil */
    int64_t file_start;
} xfer_obj;

static void xfer_mark(void *p)
{
    xfer_obj *o = p;
    /* rb_gc_mark pins as well: a step writes through pointers into them. */
    rb_gc_mark(o->sock);
    rb_gc_mark(o->str);
    rb_gc_mark(o->partial);
    rb_gc_mark(o->data);
    rb_gc_mark(o->file);
}

static void xfer_free(void *p)
{
    xfer_obj *o = p;
    fastsock_xfer_release(&o->x);
    ruby_xfree(o);
}

static size_t xfer_memsize(const void *p)
{
    const xfer_obj *o = p;
    return sizeof *o + o->x.bounce_cap;
}

static const rb_data_type_t xfer_type = {
    .wrap_struct_name = "fastsock_xfer",
    .function = { .dmark = xfer_mark, .dfree = xfer_free, .dsize = xfer_memsize },
    .flags = 0,
};

static VALUE xfer_alloc(VALUE klass)
{
    xfer_obj *o;
    VALUE self = TypedData_Make_Struct(klass, xfer_obj, &xfer_type, o);
    o->sock = o->str = o->partial = o->data = o->file = Qnil;
    o->fd = -1;
    return self;
}

static xfer_obj *get(VALUE self)
{
    xfer_obj *o;
    TypedData_Get_Struct(self, xfer_obj, &xfer_type, o);
    if (o->kind == 0)
        rb_raise(rb_eRuntimeError, "fastsock: %" PRIsVALUE " was not initialized", rb_obj_class(self));
    return o;
}

static const char *name_of(const xfer_obj *o)
{
    return o->kind == FASTSOCK_XFER_RECV ? "Fastsock::Receiver" : "Fastsock::Sender";
}

/* Raises o's error the way the blocking calls raise theirs. */
static void raise_error(const xfer_obj *o, fastsock_result rc)
{
    fastsock_rb_call c;
    memset(&c, 0, sizeof c);
    c.op = o->kind == FASTSOCK_XFER_RECV ? FASTSOCK_RB_RECVALL
         : o->kind == FASTSOCK_XFER_SEND ? FASTSOCK_RB_SENDALL : FASTSOCK_RB_SENDFILE;
    c.name = name_of(o);
    c.count_name = o->kind == FASTSOCK_XFER_RECV ? "n" : "count";
    c.total = o->moved;
    c.offset = o->offset;
    c.count = o->count;
    c.len = o->len0;
    c.scheduler = Qnil;
    fastsock_rb__raise(&c, rc, o->partial, o->count);
}

/* The socket's fd for the next step: IOError once the IO was closed. */
static int sock_fd(const xfer_obj *o)
{
    if (!RB_TYPE_P(o->sock, T_FILE))
        return o->fd;
    rb_io_t *fptr;
    GetOpenFile(o->sock, fptr);
    return fptr->fd;
}

static void set_budget(xfer_obj *o, VALUE budget)
{
    if (NIL_P(budget)) {
        o->budget = 0;
        return;
    }
    size_t b = fastsock_rb__size(budget, "budget", 0);
    if (b == 0)
        rb_raise(rb_eArgError, "fastsock: budget must be positive (or nil for the default)");
    o->budget = b;
}

/* ---- Receiver ------------------------------------------------------------- */

/* __init(sock, n, buf, offset, budget): buf nil is a fresh String of n
 * bytes, else the caller's String, written at offset and grown as
 * recvall_into grows it (n nil: to its end). */
static VALUE receiver_init(VALUE self, VALUE sockv, VALUE nv, VALUE buf, VALUE offv, VALUE budget)
{
    xfer_obj *o;
    TypedData_Get_Struct(self, xfer_obj, &xfer_type, o);
    if (o->kind != 0)
        rb_raise(rb_eRuntimeError, "fastsock: Fastsock::Receiver initialized twice");
    int fd = fastsock_rb__fd_of(sockv, "sock");
    VALUE io = fastsock_rb__io_of(sockv, "sock");
    (void)fastsock_rb__buffered(io); /* refuses decoded characters first */
    set_budget(o, budget);
    size_t n, offset = 0;
    VALUE str;
    if (NIL_P(buf)) {
        n = fastsock_rb__nbytes(nv);
        str = rb_str_buf_new((long)n);
        fastsock_rb__unembed(str);
        rb_obj_hide(str);
        o->fresh = 1;
        o->end = n;
    } else {
        if (!RB_TYPE_P(buf, T_STRING))
            rb_raise(rb_eTypeError, "fastsock: buffer must be a String, not %" PRIsVALUE,
                     rb_obj_class(buf));
        offset = fastsock_rb__size(offv, "offset", 0);
        n = fastsock_rb__size(nv, "n", 1);
        rb_str_modify(buf); /* FrozenError */
        size_t len0 = (size_t)RSTRING_LEN(buf);
        if (offset > len0)
            rb_raise(rb_eArgError, "Fastsock::Receiver: offset %zu lies beyond the %zu-byte String",
                     offset, len0);
        if (n == FASTSOCK_ALL)
            n = len0 - offset;
        if (n >= (size_t)LONG_MAX - offset)
            rb_raise(rb_eNoMemError, "Fastsock::Receiver: failed to allocate memory (offset %zu + n %zu bytes)",
                     offset, n);
        str = buf;
        o->len0 = len0;
        o->end = offset + n;
        fastsock_rb__reserve(str, o->end);
    }
    if (n > 0)
        fastsock_rb__require_socket(fd, "Fastsock::Receiver");
    o->sock = sockv;
    o->fd = fd;
    o->str = str;
    o->offset = offset;
    o->count = n;
    /* Bytes Ruby's IO read ahead come first, as for recvall. */
    o->moved = fastsock_rb__take_buffered(io, RSTRING_PTR(str) + offset, n);
    if (!o->fresh && o->moved > 0 && offset + o->moved > o->len0) {
        rb_str_set_len(str, (long)(offset + o->moved));
        ENC_CODERANGE_CLEAR(str);
    }
    fastsock_xfer_recv_init(&o->x, fd, RSTRING_PTR(str), o->end, offset + o->moved,
                            n - o->moved);
    if (o->fresh)
        o->x.flags |= FASTSOCK_XFER_FRESH;
    o->kind = FASTSOCK_XFER_RECV;
    o->complete = o->moved == n;
    if (o->complete && o->fresh) {
        rb_str_set_len(str, (long)n);
        rb_obj_reveal(str, rb_cString);
        o->fresh = 0;
    }
    return self;
}

/* The caller's String between steps: its bytes again, room for the rest. */
static void retake_target(xfer_obj *o)
{
    VALUE str = o->str;
    size_t shown = o->offset + o->moved > o->len0 ? o->offset + o->moved : o->len0;
    if ((size_t)RSTRING_LEN(str) < shown)
        rb_raise(rb_eRuntimeError,
                 "Fastsock::Receiver: the target String was shortened to %ld bytes during the "
                 "transfer, below the %zu it had shown",
                 RSTRING_LEN(str), shown);
    rb_str_modify(str); /* unshares it (String#dup); FrozenError once frozen */
    fastsock_rb__reserve(str, o->end);
    unsigned flags = o->x.flags;
    fastsock_xfer_recv_init(&o->x, o->fd, RSTRING_PTR(str), o->end, o->offset + o->moved,
                            o->count - o->moved);
    o->x.flags = flags;
}

/* Ends a fresh receive that failed: what came becomes its partial. */
static void fresh_failed(xfer_obj *o)
{
    if (!o->fresh)
        return;
    VALUE str = o->str;
    rb_str_resize(str, (long)o->moved);
    rb_obj_reveal(str, rb_cString);
    o->partial = str;
    o->str = Qnil;
    o->fresh = 0;
}

/* One step: true once complete, false when it wants the socket readable
 * again; raises the transfer's error (again, if asked after the end). */
static VALUE receiver_step(VALUE self)
{
    xfer_obj *o = get(self);
    if (o->complete)
        return Qtrue;
    if (o->error < 0)
        raise_error(o, o->error);
    o->fd = sock_fd(o);
    o->x.fd = o->fd;
    if (!o->fresh)
        retake_target(o);
    o->x.budget = o->budget;
    size_t before = o->x.done;
    unsigned long cycles = o->x.cycles;
    int lifted = o->fresh && !o->x.advise_stopped ? fastsock_rb__thp_lift(o->x.count - o->x.done) : 0;
    fastsock_result rc = fastsock_xfer_step(&o->x);
    fastsock_rb__thp_restore(lifted);
    size_t moved = o->x.done - before;
    o->moved += moved;
    o->cycles += o->x.cycles - cycles;
    if (moved > 0)
        o->steps++;
    if (!o->fresh && o->end > o->len0 && moved > 0) {
        size_t shown = o->offset + o->moved;
        if (shown > (size_t)RSTRING_LEN(o->str))
            rb_str_set_len(o->str, (long)shown);
    }
    if (!o->fresh && moved > 0)
        ENC_CODERANGE_CLEAR(o->str); /* its cached "valid/7-bit" knowledge is stale */
    if (rc < 0 || (o->x.want == 0 && o->x.error < 0)) {
        o->error = rc < 0 ? rc : o->x.error;
        fresh_failed(o);
        raise_error(o, o->error);
    }
    if (o->x.want != 0)
        return Qfalse;
    o->complete = 1;
    if (o->fresh) {
        rb_str_set_len(o->str, (long)o->count);
        rb_obj_reveal(o->str, rb_cString);
        o->fresh = 0;
    } else if (o->end < (size_t)LONG_MAX && o->end > o->len0) {
        /* Gives back the room reserved beyond what is now its size. */
        rb_str_resize(o->str, RSTRING_LEN(o->str));
    }
    return Qtrue;
}

/* The received String once complete (the caller's, for a receive into one),
 * else nil. */
static VALUE receiver_result(VALUE self)
{
    xfer_obj *o = get(self);
    return o->complete ? o->str : Qnil;
}

/* ---- Sender ------------------------------------------------------------------ */

/* __init(sock, src, offset, count, budget): src a String (its range
 * [offset, offset + count)) or a regular file (count bytes from offset). */
static VALUE sender_init(VALUE self, VALUE sockv, VALUE src, VALUE offv, VALUE countv, VALUE budget)
{
    xfer_obj *o;
    TypedData_Get_Struct(self, xfer_obj, &xfer_type, o);
    if (o->kind != 0)
        rb_raise(rb_eRuntimeError, "fastsock: Fastsock::Sender initialized twice");
    int fd = fastsock_rb__fd_of(sockv, "sock");
    set_budget(o, budget);
    size_t count = fastsock_rb__size(countv, "count", 1);
    fastsock_result rc;
    if (RB_TYPE_P(src, T_STRING)) {
        size_t offset = fastsock_rb__size(offv, "offset", 0);
        /* Frozen, the bytes can't change between steps; a snapshot of a
         * String that isn't shares its bytes instead of copying them. */
        VALUE data = OBJ_FROZEN(src) ? src : rb_str_new_frozen(src);
        if (count != 0)
            fastsock_rb__require_socket(fd, "Fastsock::Sender");
        o->kind = FASTSOCK_XFER_SEND;
        o->data = data;
        o->offset = offset;
        o->len0 = (size_t)RSTRING_LEN(data);
        o->count = count;
        rc = fastsock_xfer_send_init(&o->x, fd, RSTRING_PTR(data), (size_t)RSTRING_LEN(data),
                                     offset, count);
    } else {
        int file = fastsock_rb__fd_of(src, "file");
        int64_t offset = fastsock_rb__file_offset(offv);
        o->kind = FASTSOCK_XFER_SENDFILE;
        o->file = src;
        o->file_start = offset;
        rc = fastsock_xfer_sendfile_init(&o->x, fd, file, offset, count);
        if (rc == -ESPIPE) {
            o->kind = 0;
            rb_raise(rb_eArgError, "Fastsock::Sender: the file must be a regular file; a step "
                                   "could block reading a pipe (use Fastsock.sendfile)");
        }
    }
    o->sock = sockv;
    o->fd = fd;
    if (rc < 0) {
        int kind = o->kind;
        o->kind = 0;
        if (rc == FASTSOCK_EOFFSET && kind == FASTSOCK_XFER_SENDFILE)
            rb_raise(rb_eArgError, "Fastsock::Sender: offset must not be negative");
        xfer_obj tmp = *o;
        tmp.kind = kind;
        raise_error(&tmp, rc);
    }
    o->count = o->x.count;
    o->complete = o->x.want == 0;
    return self;
}

/* Leaves a file's position after the data sent, as Fastsock.sendfile does. */
static void file_position(xfer_obj *o)
{
    if (o->kind != FASTSOCK_XFER_SENDFILE)
        return;
    VALUE pos = LL2NUM(o->file_start + (int64_t)o->moved);
    if (RB_TYPE_P(o->file, T_FILE) || rb_respond_to(o->file, rb_intern("seek")))
        rb_funcall(o->file, rb_intern("seek"), 1, pos); /* drops its read buffer */
    else
        lseek(fastsock_rb__fd_of(o->file, "file"), (off_t)(o->file_start + (int64_t)o->moved), SEEK_SET);
}

static VALUE sender_step(VALUE self)
{
    xfer_obj *o = get(self);
    if (o->complete)
        return Qtrue;
    if (o->error < 0)
        raise_error(o, o->error);
    o->x.fd = sock_fd(o);
    o->x.budget = o->budget;
    size_t before = o->x.done;
    unsigned long cycles = o->x.cycles;
    fastsock_result rc = fastsock_xfer_step(&o->x);
    size_t moved = o->x.done - before;
    o->moved += moved;
    o->cycles += o->x.cycles - cycles;
    if (moved > 0)
        o->steps++;
    if (rc < 0 || (o->x.want == 0 && o->x.error < 0)) {
        o->error = rc < 0 ? rc : o->x.error;
        fastsock_xfer_release(&o->x);
        file_position(o);
        raise_error(o, o->error);
    }
    if (o->x.want != 0)
        return Qfalse;
    o->complete = 1;
    fastsock_xfer_release(&o->x);
    file_position(o);
    return Qtrue;
}

/* ---- progress, both ------------------------------------------------------------ */

static VALUE xfer_nbytes(VALUE self) { return SIZET2NUM(get(self)->moved); }
static VALUE xfer_count(VALUE self) { return SIZET2NUM(get(self)->count); }
static VALUE xfer_steps(VALUE self) { return ULONG2NUM(get(self)->steps); }
static VALUE xfer_cycles(VALUE self) { return ULONG2NUM(get(self)->cycles); }
static VALUE xfer_complete(VALUE self) { return get(self)->complete ? Qtrue : Qfalse; }

static VALUE xfer_ended(VALUE self)
{
    xfer_obj *o = get(self);
    return o->complete || o->error < 0 ? Qtrue : Qfalse;
}

static VALUE xfer_budget(VALUE self)
{
    xfer_obj *o = get(self);
    return SIZET2NUM(o->budget ? o->budget : FASTSOCK_XFER_BUDGET);
}

static VALUE xfer_set_budget(VALUE self, VALUE budget)
{
    set_budget(get(self), budget);
    return budget;
}

/* What it waits for before its next step: :read, :write, or nil once ended. */
static VALUE xfer_want(VALUE self)
{
    xfer_obj *o = get(self);
    if (o->complete || o->error < 0)
        return Qnil;
    return ID2SYM(rb_intern(o->kind == FASTSOCK_XFER_RECV ? "read" : "write"));
}

static VALUE xfer_sock(VALUE self) { return get(self)->sock; }

static VALUE receiver_partial(VALUE self)
{
    return get(self)->partial;
}

void fastsock_rb__xfer_init(VALUE mFastsock)
{
    VALUE cReceiver = rb_define_class_under(mFastsock, "Receiver", rb_cObject);
    VALUE cSender = rb_define_class_under(mFastsock, "Sender", rb_cObject);
    VALUE both[] = { cReceiver, cSender };
    rb_define_alloc_func(cReceiver, xfer_alloc);
    rb_define_alloc_func(cSender, xfer_alloc);
    rb_define_private_method(cReceiver, "__init", receiver_init, 5);
    rb_define_private_method(cReceiver, "__step", receiver_step, 0);
    rb_define_method(cReceiver, "result", receiver_result, 0);
    rb_define_method(cReceiver, "partial", receiver_partial, 0);
    rb_define_private_method(cSender, "__init", sender_init, 5);
    rb_define_private_method(cSender, "__step", sender_step, 0);
    for (size_t i = 0; i < 2; i++) {
        rb_define_method(both[i], "nbytes", xfer_nbytes, 0);
        rb_define_method(both[i], "count", xfer_count, 0);
        rb_define_method(both[i], "steps", xfer_steps, 0);
        rb_define_method(both[i], "cycles", xfer_cycles, 0);
        rb_define_method(both[i], "complete?", xfer_complete, 0);
        rb_define_method(both[i], "ended?", xfer_ended, 0);
        rb_define_method(both[i], "budget", xfer_budget, 0);
        rb_define_method(both[i], "budget=", xfer_set_budget, 1);
        rb_define_method(both[i], "want", xfer_want, 0);
        rb_define_method(both[i], "socket", xfer_sock, 0);
    }
}
