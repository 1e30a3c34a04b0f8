/*
 * Ruby entry file: fastsock/native.so, module Fastsock::Native. lib/fastsock.rb
 * is the public face: it defines the exception classes, then loads this
 * extension, which takes positional arguments in fastsock.i's order.
 *
 * The transfers are hand-written (bindings/ruby/rb_calls.c), because SWIG has
 * no feature for what a Ruby transfer needs: running with the GVL released
 * under an unblocking function (rb_thread_call_without_gvl, as IO.copy_stream
 * does), locking the String for the call and taking its pointer again under
 * the lock (converting a later argument, timeout.to_f or count.to_int, can
 * run Ruby code that resizes it), growing a *_into target as IO#read(len,
 * outbuf) grows its outbuf, and raising only with the GVL held and the
 * String unlocked. So each blocking function's SWIG action is replaced
 * (%feature("action")) by a call that gets the Ruby objects from the
 * wrapper's argv; the typemaps only check and convert (bindings/ruby/rb_args.c).
 */
%module "fastsock::native"

%{
#include "fastsock_rb.h"
%}

%init %{
    fastsock_rb_init();
%}

/* ---- typemaps, by fastsock.i's parameter names -------------------------------- */

%typemap(in) int SOCK "$1 = fastsock_rb__fd_of($input, \"sock\");"
%typemap(in) int FILE "$1 = fastsock_rb__fd_of($input, \"file\");"

/* A bad buffer is refused before anything else; the action takes the bytes
 * again under the lock (hence its (void)arg2, arg3). */
%typemap(in) (void *BUF, size_t LEN) "fastsock_rb__string_arg($input, \"buffer\", 1, &$1, &$2);"
%typemap(in) (const void *DATA, size_t LEN) {
    void *data;
    fastsock_rb__string_arg($input, "data", 0, &data, &$2);
    $1 = data;
}

%typemap(in) size_t OFFSET "$1 = fastsock_rb__size($input, \"offset\", 0);"
%typemap(in) int64_t OFFSET "$1 = fastsock_rb__file_offset($input);"
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
  "(void)arg2; (void)arg3; result = fastsock_rb_recv_into(FASTSOCK_RB_RECVALL, \"fastsock.recvall_into\", argv[0], argv[1], arg1, arg4, arg5, 0, arg6);"
%feature("action") fastsock_recv
  "(void)arg2; (void)arg3; result = fastsock_rb_recv_into(FASTSOCK_RB_RECV, \"fastsock.recv_into\", argv[0], argv[1], arg1, arg4, arg5, arg6, arg7);"
%feature("action") fastsock_send
  "(void)arg2; (void)arg3; result = fastsock_rb_send(FASTSOCK_RB_SEND, \"fastsock.send\", argv[1], arg1, arg4, arg5, arg6);"
%feature("action") fastsock_sendall
  "(void)arg2; (void)arg3; result = fastsock_rb_send(FASTSOCK_RB_SENDALL, \"fastsock.sendall\", argv[1], arg1, arg4, arg5, arg6);"
%feature("action") fastsock_sendfile
  "result = fastsock_rb_sendfile(argv[1], arg1, arg2, arg3, arg4, arg5);"
%feature("action") fastsock_recvall_cycles "result = fastsock_rb_recvall_cycles();"

%include "fastsock.i"

/* recvall allocates the String it returns, so it is Ruby's own. */
%rename(recvall) fastsock_rb_recvall;
%feature("action") fastsock_rb_recvall "result = fastsock_rb_recvall(argv[0], arg1, arg2, arg3);"
VALUE fastsock_rb_recvall(int SOCK, size_t NBYTES, fastsock_ctl *CTL);
