/*
 * Python entry file: Python's typemaps for the language-neutral interface.
 *
 * The extension is fastsock._fastsock; the fastsock package (bindings/python)
 * gives it keyword arguments, docstrings and IncompleteError. Each typemap is
 * one call into the hand-written C of bindings/python (fastsock_py.h says
 * which file holds what). That C is hand-written because SWIG's Python
 * typemaps can't express what the socket module's conventions need: the
 * socket's own timeout and its TLS check, a bytes result allocated at its
 * final size and filled without the GIL, exceptions that carry the bytes
 * moved, and recv_into/send (and recvall/sendall, which try once with
 * the GIL held) as METH_FASTCALL functions (event loops and protocols call
 * them once per message); nor can they express the Receiver and Sender
 * types.
 *
 * Every function's first argument is SOCK, so its typemap declares the one
 * per-call record (`call`, which SWIG names `call1`) that the later typemaps
 * fill in and read.
 *
 * Build with `swig -threads`: every wrapper keeps the GIL (%nothread) except
 * the transfers, which release it once around the whole core call.
 */
%module(package="fastsock") _fastsock

%begin %{
#define PY_SSIZE_T_CLEAN
%}

%{
#include "fastsock_py.h"

#ifndef SWIG_PYTHON_THREADS
#error "fastsock's Python module must be generated with swig -threads: the transfers release the GIL"
#endif
%}

%init %{
    if (fastsock_py_init(m) < 0)
        return NULL;
%}

/* ---- typemaps, by parameter name (see fastsock.i) ------------------------ */

%typemap(in) int SOCK (fastsock_py_call call = FASTSOCK_PY_CALL_INIT) {
    if (fastsock_py_socket($input, &$1, &call, "$symname") < 0)
        SWIG_fail;
}

%typemap(in) int FILE {
    if (fastsock_py_fd($input, &$1, "$symname", "file") < 0)
        SWIG_fail;
}

%typemap(in) (void *BUF, size_t LEN) (Py_buffer view = {0}) {
    if (fastsock_py_buffer($input, &view, 1, "$symname", &call1) < 0)
        SWIG_fail;
    $1 = view.buf;
    $2 = (size_t)view.len;
}
%typemap(freearg) (void *BUF, size_t LEN) {
    PyBuffer_Release(&view$argnum);
}

%typemap(in) (const void *DATA, size_t LEN) (Py_buffer view = {0}) {
    if (fastsock_py_buffer($input, &view, 0, "$symname", &call1) < 0)
        SWIG_fail;
    $1 = view.buf;
    $2 = (size_t)view.len;
}
%typemap(freearg) (const void *DATA, size_t LEN) {
    PyBuffer_Release(&view$argnum);
}

%typemap(in) size_t OFFSET {
    if (fastsock_py_size($input, &$1, 0, "$symname") < 0)
        SWIG_fail;
    call1.offset = $1;
}

%typemap(in) int64_t OFFSET {
    if (fastsock_py_file_offset($input, &$1, "$symname") < 0)
        SWIG_fail;
}

%typemap(in) size_t COUNT {
    if (fastsock_py_size($input, &$1, 1, "$symname") < 0)
        SWIG_fail;
    call1.count = $1;
}

/* The timeout: seconds, None for no limit, Ellipsis for the socket's own. */
%typemap(in) fastsock_ctl *CTL {
    if (fastsock_py_ctl($input, &call1, "$symname") < 0)
        SWIG_fail;
    $1 = &call1.ctl;
}

%typemap(out) fastsock_result {
    $result = fastsock_py_result($1, &call1, "$symname");
    if ($result == NULL)
        SWIG_fail;
}

/* ---- the operations -------------------------------------------------------- */

/* The GIL stays held except across the transfers. */
%nothread;
%thread fastsock_recvall; /* recvall_into */
%thread fastsock_sendfile;
%thread fastsock_recvfile;

/* Written by hand (py_calls.c's fastsock_py_methods). With their parameter lists,
 * these outrank the interface's plain %renames. */
%ignore fastsock_recv(int, void *, size_t, size_t, size_t, int, fastsock_ctl *);
%ignore fastsock_send(int, const void *, size_t, size_t, size_t, fastsock_ctl *);
%ignore fastsock_sendall(int, const void *, size_t, size_t, size_t, fastsock_ctl *);

%include "fastsock.i"

/* recvfile takes the typemaps sendfile takes; declared here, not in the
 * shared fastsock.i, since the other languages bind it their own way. The
 * package's def flushes and positions a file object around it. sendallv,
 * Reader, find and split are hand-written (bindings/python/py_protocol.c):
 * a list of buffers and a type are beyond typemaps. */
%rename(recvfile) fastsock_recvfile;
fastsock_result fastsock_recvfile(int SOCK, int FILE, int64_t OFFSET, size_t COUNT, fastsock_ctl *CTL);


%rename(_set_incomplete_error) fastsock_py_set_incomplete_error;
PyObject *fastsock_py_set_incomplete_error(PyObject *cls);
