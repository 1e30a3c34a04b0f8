/*
 * A core result -> the Ruby exception (SPEC.md, "Per-language conventions"
 * and "Nothing lost"): Errno::*, Fastsock::IncompleteError,
 * Fastsock::TimeoutError, IO::EAGAINWait*, ArgumentError, each carrying how
 * much moved (Fastsock::TransferError#nbytes, #partial).
 */
#include "fastsock_rb.h"

#include <errno.h>

/* Defined by lib/fastsock.rb before it loads this extension. */
static VALUE eIncomplete = Qnil;
static VALUE eTimeout = Qnil;
static VALUE mTransfer = Qnil;

void fastsock_rb__errors_init(void)
{
    VALUE m = rb_path2class("Fastsock");
    eIncomplete = rb_const_get(m, rb_intern("IncompleteError"));
    eTimeout = rb_const_get(m, rb_intern("TimeoutError"));
    mTransfer = rb_const_get(m, rb_intern("TransferError"));
    rb_gc_register_address(&eIncomplete);
    rb_gc_register_address(&eTimeout);
    rb_gc_register_address(&mTransfer);
}


void fastsock_rb__set_transfer(VALUE exc, size_t nbytes, VALUE partial)
{
    if (!rb_obj_is_kind_of(exc, mTransfer))
        rb_extend_object(exc, mTransfer);
    rb_ivar_set(exc, rb_intern("@nbytes"), SIZET2NUM(nbytes));
    rb_ivar_set(exc, rb_intern("@partial"), partial);
}

void fastsock_rb__raise(const fastsock_rb_call *c, fastsock_result rc, VALUE partial,
                        size_t expected)
{
    VALUE exc, msg;
    int receiving = c->op == FASTSOCK_RB_RECVALL || c->op == FASTSOCK_RB_RECV;
    switch (fastsock_classify(rc)) {
    case FASTSOCK_KIND_RANGE:
        if (rc == FASTSOCK_EOFFSET) {
            if (c->op == FASTSOCK_RB_SENDFILE)
                rb_raise(rb_eArgError, "%s: offset must not be negative", c->name);
            rb_raise(rb_eArgError, "%s: offset %zu lies beyond the %zu-byte String", c->name,
                     c->offset, c->len);
        }
        rb_raise(rb_eArgError, "%s: offset %zu + %s %zu lies beyond the %zu-byte String",
                 c->name, c->offset, c->count_name, c->count, c->len);
    case FASTSOCK_KIND_CLOSED:
        msg = rb_sprintf("%s: end of stream after %zu of %zu bytes", c->name, c->total, expected);
        exc = rb_exc_new_str(eIncomplete, msg);
        rb_ivar_set(exc, rb_intern("@expected"), SIZET2NUM(expected));
        break;
    case FASTSOCK_KIND_TIMEOUT:
        msg = rb_sprintf("%s: timed out after %zu bytes", c->name, c->total);
        exc = rb_exc_new_str(eTimeout, msg);
        break;
    case FASTSOCK_KIND_WOULDBLOCK: {
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
