/*
 * The Python module's hand-written C, shared by swig/python.i's typemaps and
 * the files of bindings/python:
 *   py_args.c    arguments: sockets and fds, timeouts, buffers, sizes, a
 *                def's keyword binding for the METH_FASTCALL functions
 *   py_errors.c  core results -> the socket module's exceptions, with
 *                .nbytes / .partial; IncompleteError
 *   py_calls.c   recvall (a bytes object filled in place), recv_into and
 *                send (METH_FASTCALL), the module's init
 *   py_xfer.c    Receiver and Sender, the progressive transfers for event
 *                loops
 *   py_protocol.c  sendallv, Reader, find, split, split_offsets, TooLongError
 *                (issue 17; recvfile is a SWIG wrapper in swig/python.i)
 */
#ifndef FASTSOCK_PY_H
#define FASTSOCK_PY_H

#ifndef PY_SSIZE_T_CLEAN
#define PY_SSIZE_T_CLEAN
#endif
#include <Python.h>

#include <stddef.h>
#include <stdint.h>

#include "fastsock.h"

/* One call's record: the SOCK typemap declares it, the later typemaps fill
 * it in, the out typemap reads it for the error's message and .nbytes. */
typedef struct fastsock_py_call {
    PyObject *sock;   /* borrowed; NULL when the socket was an int fd */
    size_t len;       /* of the buffer, once converted */
    size_t offset;
    size_t count;     /* FASTSOCK_ALL: to the end */
    fastsock_ctl ctl;
} fastsock_py_call;

#define FASTSOCK_PY_CALL_INIT { NULL, 0, 0, FASTSOCK_ALL, FASTSOCK_CTL_INIT }

/* ---- py_args.c ---------------------------------------------------------------- */

/* Interns names and finds socket.socket; once, at import. */
int fastsock_py_args_init(void);

/* fn names the Python function in messages; "recv..." ones say nbytes/buffer. */
int fastsock_py_is_recv(const char *fn);
/* A socket.socket, anything with fileno(), or an int fd; what names the
 * argument ("sock", "file"). Returns 0 or -1 with an exception set. */
int fastsock_py_fd(PyObject *obj, int *fd, const char *fn, const char *what);
/* fastsock_py_fd for a socket argument: also refuses an ssl.SSLSocket and
 * keeps the object in call->sock (for its timeout). */
int fastsock_py_socket(PyObject *obj, int *fd, fastsock_py_call *call, const char *fn);
/* Nonzero when obj is an ssl.SSLSocket (exception set), -1 on error too. */
int fastsock_py_refuse_tls(PyObject *obj, const char *fn);
/* Seconds (int, float) or None -> milliseconds rounded up; -1 for None. */
int fastsock_py_seconds(PyObject *obj, int64_t *ms);
/* The timeout argument (Ellipsis: the socket's own) and the signal hook. */
int fastsock_py_ctl(PyObject *timeout, fastsock_py_call *call, const char *fn);
/* Any buffer-protocol object, never copied; the caller releases view. */
int fastsock_py_buffer(PyObject *obj, Py_buffer *view, int writable, const char *fn,
                       fastsock_py_call *call);
/* A non-negative int -> size_t; for counts (is_count), None is FASTSOCK_ALL. */
int fastsock_py_size(PyObject *obj, size_t *out, int is_count, const char *fn);
int fastsock_py_file_offset(PyObject *obj, int64_t *out, const char *fn);
int fastsock_py_flags(PyObject *obj, int *out);

/* A def's parameters: npos positional-or-keyword (the first nrequired
 * without a default: "takes 2 positional arguments", or "from 2 to 4" when
 * some have one), then nkwonly keyword-only ones with defaults. */
#define FASTSOCK_PY_MAX_PARAMS 5
typedef struct fastsock_py_params {
    const char *fn;
    Py_ssize_t npos, nrequired, nkwonly;
    const char *names[FASTSOCK_PY_MAX_PARAMS];
    PyObject *keys[FASTSOCK_PY_MAX_PARAMS]; /* names, interned at import */
} fastsock_py_params;

int fastsock_py_intern_params(fastsock_py_params *p);
/* Binds a vectorcall's arguments as the interpreter binds a def's, with its
 * messages; a parameter not given stays NULL (borrowed references). */
int fastsock_py_parse(const fastsock_py_params *p, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames, PyObject **out);
/* Socket, buffer, offset, count (NULL: not given), in the typemaps' order. */
int fastsock_py_range(PyObject *sock, PyObject *buffer, int writable, PyObject *offset,
                      PyObject *count, const char *fn, int *fd, Py_buffer *view,
                      fastsock_py_call *call);

/* ---- py_errors.c ---------------------------------------------------------------- */

int fastsock_py_errors_init(void);
/* OSError(err, strerror(err)), as the subclass the socket module would raise. */
void fastsock_py_set_errno(int err);
/* Sets .nbytes (and .partial unless NULL) on exc, best effort. */
void fastsock_py_annotate(PyObject *exc, size_t moved, PyObject *partial);
/* Raises the Python error for a negative core result; partial: recvall's
 * bytes so far (NULL for the other calls). */
void fastsock_py_raise(fastsock_result rc, const fastsock_py_call *call, const char *fn,
                       PyObject *partial);
/* The same for a call without a record (the progressive objects): moved
 * bytes moved, expected the count asked for (IncompleteError's). */
void fastsock_py_raise_moved(fastsock_result rc, const char *fn, size_t moved, size_t expected,
                             PyObject *partial);
/* The count as an int, or NULL with the error raised. */
PyObject *fastsock_py_result(fastsock_result rc, const fastsock_py_call *call, const char *fn);
/* fastsock.IncompleteError(partial, expected, nbytes), or EOFError before
 * the package registered it. A new reference, or NULL. */
PyObject *fastsock_py_incomplete(PyObject *partial, size_t expected, size_t nbytes);
PyObject *fastsock_py_set_incomplete_error(PyObject *cls);
/* IncompleteError(partial, None) for a line the stream cut short, as
 * asyncio's StreamReader.readuntil raises it. A new reference, or NULL. */
PyObject *fastsock_py_incomplete_line(PyObject *partial);

/* ---- py_calls.c ---------------------------------------------------------------- */

/* A fresh result's size: n >= 0, or -1 with ValueError (negative) or
 * MemoryError (beyond any allocation) set. */
Py_ssize_t fastsock_py_alloc_size(PyObject *n_obj, const char *fn);
/* A fresh result's transfer failed: shrinks bytes in place to call's moved
 * bytes, keeping any pending exception (a signal handler's), and raises rc
 * with it as .partial. Steals bytes. */
void fastsock_py_fresh_failed(PyObject *bytes, fastsock_result rc, const fastsock_py_call *call,
                              const char *fn);
/* Adds defs (ending with a NULL ml_name) to m as functions of the package. */
int fastsock_py_add_functions(PyObject *m, PyMethodDef *defs);
/* Everything above set up; recv_into, send, Receiver and Sender added to m. */
int fastsock_py_init(PyObject *m);

/* ---- py_xfer.c ---------------------------------------------------------------- */

/* Adds Receiver and Sender to m. */
int fastsock_py_xfer_init(PyObject *m);

/* ---- py_protocol.c ------------------------------------------------------------ */

/* Adds sendallv, find, split, split_offsets, Reader and TooLongError to m. */
int fastsock_py_protocol_init(PyObject *m);

#endif
