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
static VALUE eBusy = Qnil;

void fastsock_rb__errors_init(void)
{
    VALUE m = rb_path2class("Fastsock");
    eIncomplete = rb_const_get(m, rb_intern("IncompleteError"));
    eTimeout = rb_const_get(m, rb_intern("TimeoutError"));
    mTransfer = rb_const_get(m, rb_intern("TransferError"));
    eBusy = rb_const_get(m, rb_intern("BusyError"));
    rb_gc_register_address(&eIncomplete);
    rb_gc_register_address(&eTimeout);
    rb_gc_register_address(&mTransfer);
    rb_gc_register_address(&eBusy);
}

VALUE fastsock_rb__sched_timeout_class(VALUE scheduler)
{
    ID async = rb_intern("Async");
    if (rb_const_defined(rb_cObject, async)) {
        VALUE m = rb_const_get(rb_cObject, async);
        ID sched = rb_intern("Scheduler"), timeout = rb_intern("TimeoutError");
        if (rb_const_defined_at(m, sched) && rb_const_defined_at(m, timeout) &&
            RTEST(rb_obj_is_kind_of(scheduler, rb_const_get_at(m, sched))))
            return rb_const_get_at(m, timeout);
    }
    return eTimeout;
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
    int receiving = c->op == FASTSOCK_RB_RECVALL || c->op == FASTSOCK_RB_RECV ||
                    c->op == FASTSOCK_RB_RECVFILE || c->op == FASTSOCK_RB_READUNTIL;
    switch (rc) {
    case FASTSOCK_RB_EJUMP:
        /* Raised in the scheduler's wait, caught there so that the call
         * could clean up: on its way again, carrying the progress. */
        exc = rb_errinfo();
        if (rb_obj_is_kind_of(exc, rb_eException))
            fastsock_rb__set_transfer(exc, c->total, partial);
        rb_jump_tag(c->jump_state);
    case FASTSOCK_RB_EBUSY:
        msg = rb_sprintf("%s: another fiber is receiving on this socket; one stream "
                         "can't be split between two receives", c->name);
        exc = rb_exc_new_str(eBusy, msg);
        fastsock_rb__set_transfer(exc, c->total, partial);
        rb_exc_raise(exc);
    case FASTSOCK_RB_ESCHED:
        msg = rb_sprintf("%s: execution expired (the scheduler ended the wait) after %zu bytes",
                         c->name, c->total);
        exc = rb_exc_new_str(fastsock_rb__sched_timeout_class(c->scheduler), msg);
        fastsock_rb__set_transfer(exc, c->total, partial);
        rb_exc_raise(exc);
    default:
        break;
    }
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
